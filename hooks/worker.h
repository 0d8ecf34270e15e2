/* worker.h — the edge-function worker process: one LuaJIT state, one event at a time.
 *
 * Not yet wired into the proxy. The proxy side (pool, deadlines) will talk to
 * a worker over one stream socket with framed messages:
 *
 *   header: u32 type, u32 payload length (host byte order: both ends are the
 *           same binary on the same machine), then the payload.
 *
 *   WORKER_MESSAGE_INVOKE (proxy → worker), payload:
 *     u32 remaining_ms, then three u16-length-prefixed strings (awsRequestId,
 *     functionName, functionVersion), then the event JSON (rest of payload).
 *   WORKER_MESSAGE_RESULT (worker → proxy), payload:
 *     u8 status (WORKER_RESULT_OK / WORKER_RESULT_ERROR), u64 peak Lua memory
 *     in bytes during the invocation, then the result JSON (ok) or the error
 *     text "file:line: message\nstack traceback:..." (error).
 *   WORKER_MESSAGE_LOG (worker → proxy), payload: one line of `print` output.
 *     Zero or more LOG messages precede the RESULT of an invocation.
 */
#ifndef VERGE_HOOKS_WORKER_H
#define VERGE_HOOKS_WORKER_H

#include <sys/types.h>

#include "../proxy/base.h"

enum worker_message_type {
    WORKER_MESSAGE_INVOKE = 1,
    WORKER_MESSAGE_RESULT = 2,
    WORKER_MESSAGE_LOG = 3,
};

enum worker_result_status { WORKER_RESULT_OK = 0, WORKER_RESULT_ERROR = 1 };

/* Largest payload either side accepts (an event with a 1 MB base64 body fits). */
#define WORKER_MESSAGE_MAX (8u * 1024u * 1024u)

struct worker_options {
    const char *function_file;
    const char *handler;
    size_t memory_limit_bytes;
};

/* The body of a worker process: loads the function and answers INVOKE
 * messages on channel_fd until the channel closes. Returns the process exit
 * status (0 on a clean close). A function that fails to load answers every
 * invocation with its load error. */
int worker_run(int channel_fd, const struct worker_options *options);

/* Test launcher (the design moves to exec of the verge binary): socketpair +
 * fork; the child closes every descriptor but its channel end and stderr,
 * then runs worker_run and _exits. */
bool worker_spawn(const char *function_file, const char *handler, size_t memory_limit_bytes, int *channel_fd, pid_t *pid);

/* Framing. Both block; they retry on EINTR. read returns false on EOF, error
 * or a payload over WORKER_MESSAGE_MAX; the payload replaces buf's contents. */
bool worker_message_write(int fd, uint32_t type, const void *payload, size_t len);
bool worker_message_read(int fd, uint32_t *type, struct bytebuf *payload);

struct worker_invocation {
    uint32_t remaining_ms;
    slice_t request_id;
    slice_t function_name;
    slice_t function_version;
    slice_t event_json;
};

/* Appends an INVOKE payload to out. */
void worker_invocation_encode(const struct worker_invocation *invocation, struct bytebuf *out);

struct worker_result {
    enum worker_result_status status;
    uint64_t peak_memory_bytes;
    slice_t body; /* JSON or error text; points into the payload */
};

bool worker_result_decode(const char *payload, size_t len, struct worker_result *out);

#endif
