/* worker.h — the edge-function worker process: one LuaJIT state, one event at a time.
 *
 * The proxy starts a worker by spawning its own binary as `verge worker` with
 * one end of a SOCK_STREAM socketpair on fd 3; main() calls worker_main(3).
 * Both ends talk in framed messages:
 *
 *   header: u32 type, u32 payload length (host byte order: both ends are the
 *           same binary on the same machine), then the payload.
 *
 *   WORKER_MESSAGE_INIT (proxy → worker, exactly once, first), payload:
 *     u32 memory_limit_mb, u16-length-prefixed function_file (absolute path),
 *     u16-prefixed handler, u16 env_count, then env_count pairs of
 *     u16-prefixed strings (name, value), then u32 source length and the
 *     function's source (0: read function_file). Nothing may follow.
 *   WORKER_MESSAGE_READY (worker → proxy, exactly once, after INIT), payload:
 *     u8 status (0 = function loaded, 1 = load error), then when status is 1
 *     the error text ("file:line: message" or a message naming the bound that
 *     was exceeded). A worker whose function failed to load still answers
 *     every INVOKE with that text as an ERROR result.
 *   WORKER_MESSAGE_INVOKE (proxy → worker), payload:
 *     u32 remaining_ms, the event's layout (struct event_compact_layout: four
 *     u32, all 0 for a JSON event), then three u16-length-prefixed strings
 *     (awsRequestId, functionName, functionVersion), then the event (rest of
 *     payload): compact (string.buffer's format) or JSON.
 *   WORKER_MESSAGE_RESULT (worker → proxy), payload:
 *     u8 status (WORKER_RESULT_OK / WORKER_RESULT_ERROR /
 *     WORKER_RESULT_UNSERIALIZABLE), u8 how the result's headers are sent
 *     (enum event_header_changes; 0 but for an ok compact result), u64 peak
 *     Lua memory in bytes during the
 *     invocation, u32 the invocation's duration in microseconds as the worker
 *     measured it, then the result (ok: in the event's spelling, compact for a
 *     compact event, JSON for a JSON one), the error text "file:line:
 *     message\nstack traceback:..." (error) or the serializer's message
 *     (unserializable).
 *   WORKER_MESSAGE_LOG (worker → proxy), payload: one line of `print` output.
 *     Zero or more LOG messages precede the RESULT of an invocation.
 *
 * Worker exit statuses: 0 = channel closed (normal), 2 = protocol error (bad
 * or unexpected frame), 70 = a hardening step failed (a line on stderr says
 * which), a signal = killed (by the proxy at a deadline, or by seccomp for a
 * foreign-architecture syscall).
 */
#ifndef VERGE_HOOKS_WORKER_H
#define VERGE_HOOKS_WORKER_H

#include <sys/types.h>

#include "../proxy/base.h"
#include "event.h"

enum worker_message_type {
    WORKER_MESSAGE_INVOKE = 1,
    WORKER_MESSAGE_RESULT = 2,
    WORKER_MESSAGE_LOG = 3,
    WORKER_MESSAGE_INIT = 4,
    WORKER_MESSAGE_READY = 5,
};

enum worker_ready_status { WORKER_READY_LOADED = 0, WORKER_READY_LOAD_ERROR = 1 };

enum worker_result_status {
    WORKER_RESULT_OK = 0,
    WORKER_RESULT_ERROR = 1,          /* the function raised, failed to load, or ran out of memory */
    WORKER_RESULT_UNSERIALIZABLE = 2, /* it returned something that cannot be sent back (a function value...) */
};

/* Largest payload either side accepts (an event with a 1 MB base64 body fits). */
#define WORKER_MESSAGE_MAX (8u * 1024u * 1024u)

/* Bounds on what a worker reads from the function's directory before it
 * hardens (every *.lua file below it is loaded into memory for `require`). */
#define WORKER_SOURCE_MAX_DEPTH 8
#define WORKER_SOURCE_MAX_FILES 1000
#define WORKER_SOURCE_MAX_BYTES (64u * 1024u * 1024u)

struct worker_init {
    uint32_t memory_limit_mb;
    slice_t function_file; /* absolute path */
    slice_t handler;
    size_t env_count;
    slice_t *env_names, *env_values;
    /* The function file's text as the config generation checked it; empty:
     * read function_file. Modules next to it are read from disk at start. */
    slice_t source;
};

/* Appends an INIT payload to out. Strings longer than 65535 bytes and more
 * than 65535 env entries are truncated: the config validates far smaller. */
void worker_init_encode(const struct worker_init *init, struct bytebuf *out);

/* Decodes an INIT payload. The slices point into payload; the env arrays are
 * allocated from arena. False on a truncated payload, trailing bytes or an
 * empty function_file/handler. */
bool worker_init_decode(const char *payload, size_t len, struct worker_init *out, struct arena *arena);

/* Decodes a READY payload; error points into payload (empty when loaded). */
bool worker_ready_decode(const char *payload, size_t len, bool *loaded, slice_t *error);

/* The worker process entry point: reads INIT from channel_fd, loads the
 * function's sources into memory, hardens the process (closes every other
 * descriptor, rlimits, drops root to nobody, no_new_privs + seccomp), builds
 * the Lua state from memory, sends READY and answers INVOKE messages until
 * the channel closes. Never returns: it ends with _exit (status above). */
int worker_main(int channel_fd) __attribute__((noreturn));

/* hooks/sandbox.c: closes every descriptor but channel_fd (and stderr in
 * sanitizer builds), sets the rlimits, drops root to nobody/nogroup and
 * installs the seccomp allowlist; each step verified, any failure _exit(70).
 * Irreversible: the process can open nothing afterwards. */
void worker_harden(int channel_fd, uint32_t memory_limit_mb);

/* Test launcher (the proxy's pool spawns the binary instead): socketpair +
 * fork, the child moves its end to fd 3 and runs worker_main(3); the parent
 * sends INIT and waits up to timeout_ms for READY. On success *loaded and
 * load_error (replaced; empty when loaded) describe READY. On failure the
 * child is killed and reaped and nothing is left open. */
bool worker_spawn(const struct worker_init *init, int timeout_ms, int *channel_fd, pid_t *pid, bool *loaded,
                  struct bytebuf *load_error);

/* Framing. Both block; they retry on EINTR. read returns false on EOF, error
 * or a payload over WORKER_MESSAGE_MAX; the payload replaces buf's contents. */
bool worker_message_write(int fd, uint32_t type, const void *payload, size_t len);
bool worker_message_read(int fd, uint32_t *type, struct bytebuf *payload);

struct worker_invocation {
    uint32_t remaining_ms;
    struct event_compact_layout layout; /* where the compact event's header maps are; zero: not known */
    slice_t request_id;
    slice_t function_name;
    slice_t function_version;
    slice_t event_json;
};

/* Appends an INVOKE payload to out. */
void worker_invocation_encode(const struct worker_invocation *invocation, struct bytebuf *out);

/* Writes `layout` into an INVOKE payload encoded already (`payload` is its
 * first byte): the proxy encodes the event after the payload's fields, so it
 * knows the layout only then. */
void worker_invocation_set_layout(char *payload, const struct event_compact_layout *layout);

struct worker_result {
    enum worker_result_status status;
    enum event_header_changes header_changes;
    uint64_t peak_memory_bytes;
    uint32_t duration_us; /* measured by the worker: the function's own time, not the queueing around it */
    slice_t body;         /* JSON or error text; points into the payload */
};

bool worker_result_decode(const char *payload, size_t len, struct worker_result *out);

#endif
