/* access_log.h — one JSON line per request, written by a background thread so
 * a slow disk never blocks an event loop.
 *
 * Threads format their line into a shared pending buffer under a mutex (held
 * for a memcpy only); the writer thread swaps buffers and writes. When the
 * pending buffer is over its bound (the writer cannot keep up), lines are
 * dropped and counted rather than growing memory without limit.
 */
#ifndef VERGE_ACCESS_LOG_H
#define VERGE_ACCESS_LOG_H

#include "base.h"

struct access_log_entry {
    double time; /* wall-clock seconds when the request started */
    slice_t request_id;
    const char *client_ip;
    slice_t method;
    slice_t uri; /* path + "?query" as received */
    int status;
    uint64_t bytes; /* body bytes sent to the viewer */
    double duration_ms;
    const char *behavior; /* matched path pattern, NULL when none (e.g. a parse error) */
    const char *origin;   /* origin name, NULL when none */
    int origin_status;    /* -1 when there was no origin response */
    double origin_ms;     /* < 0 when there was no origin response */
};

/* Points the log at `path` ("-" = stdout, NULL = off). Starts the writer
 * thread on first use; reopening happens when the path changes (reloads).
 * Returns 0, or -1 with a message in `error` when the file cannot be opened
 * (the previous destination is kept). */
int access_log_configure(const char *path, char *error, size_t error_size);
/* Formats and queues one line (JSON-escaped); never blocks on I/O. */
void access_log_write(const struct access_log_entry *entry);
/* Writes out everything queued and stops the writer thread (at exit). The
 * module is back in its initial state afterwards (configure may start it
 * again). */
void access_log_shutdown(void);

/* Appends `s` as a quoted JSON string: '"', '\\' and control characters are
 * escaped, valid UTF-8 is copied, and each byte that is not part of a valid
 * UTF-8 sequence becomes \u00XX (so the output is always valid JSON). Also
 * used by the admin listener for its JSON answers. */
void access_log_append_json_string(struct bytebuf *out, slice_t s);

#endif
