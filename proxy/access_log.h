/* access_log.h — the two logs written by background threads so a slow disk
 * never blocks an event loop: the access log (one JSON line per request) and
 * the function log (the edge functions' lines).
 *
 * Each log has its own writer thread. Threads format their line into that
 * log's pending buffer under a mutex (held for a memcpy only); the writer
 * thread swaps buffers and writes. When the pending buffer is over its bound
 * (the writer cannot keep up), lines are dropped and counted
 * (metrics.access_log_dropped, metrics.function_log_dropped) rather than
 * growing memory without limit.
 */
#ifndef VERGE_ACCESS_LOG_H
#define VERGE_ACCESS_LOG_H

#include "base.h"

struct access_log_entry {
    double time; /* wall-clock seconds when the request started */
    slice_t request_id;
    const char *client_ip;
    const char *protocol;    /* "HTTP/1.1" */
    const char *tls_version; /* "TLSv1.3"; NULL over plain HTTP */
    const char *tls_cipher;  /* OpenSSL's name of the cipher suite; NULL over plain HTTP */
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

/* function_log: the edge functions' log (spec §8.1 lines and print output).
 * Same lifetime rules as the access log, independent of it.
 *
 * Points the log at `path` ("-" = stdout, NULL = off); errors start with
 * "function_log: ". */
int function_log_configure(const char *path, char *error, size_t error_size);
/* Whether function-log lines are kept (callers skip formatting them when not). */
bool function_log_enabled(void);
/* Queues one line: "<ISO-8601 UTC time with ms>\t<function name>\t<text>\n".
 * CR and LF in the name or text become spaces, so one call is one line.
 * Never blocks on I/O. */
void function_log_write(slice_t function_name, slice_t text);
/* Lines a thread collects to queue them at once (one lock for many): the
 * worker pool's START, END, REPORT and function output lines of a loop pass.
 * Zero-initialised; freed with bytebuf_free(&batch->lines). */
struct function_log_batch {
    struct bytebuf lines;
    size_t entries; /* function_log_batch_add calls: what a drop counts */
};
/* Appends `text` as one line per '\n' in it, all with one time stamp and
 * `prefix` at the start of each (after the name and tab), CR and LF in the
 * name and prefix as spaces; nothing when the log is off. */
void function_log_batch_add(struct function_log_batch *batch, slice_t function_name, slice_t prefix, slice_t text);
/* The same for `count` lines the caller built and vouches for: none holds a
 * CR or LF (the worker pool's START, END and REPORT lines: fixed words,
 * request ids, numbers), so they are neither searched nor scrubbed (checked
 * in debug builds); no prefix. */
void function_log_batch_add_lines(struct function_log_batch *batch, slice_t function_name, const slice_t *lines, size_t count);
/* Queues the batch's lines and empties it (its memory is kept for reuse, up
 * to 256 KiB: a burst of long prints does not pin more on the thread). */
void function_log_batch_queue(struct function_log_batch *batch);
/* Writes out everything queued and stops the function log's writer thread. */
void function_log_shutdown(void);

/* Appends `s` as a quoted JSON string: '"', '\\' and control characters are
 * escaped, valid UTF-8 is copied, and each byte that is not part of a valid
 * UTF-8 sequence becomes \u00XX (so the output is always valid JSON). Also
 * used by the admin listener for its JSON answers. */
void access_log_append_json_string(struct bytebuf *out, slice_t s);

#endif
