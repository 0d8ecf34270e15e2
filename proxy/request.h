/* request.h — the viewer connection and the request it carries, shared by
 * proxy/viewer.c (socket I/O, parsing, timers, keep-alive) and
 * proxy/request.c (the request state machine and the body pumps).
 *
 * A viewer connection carries at most one request at a time; pipelined
 * requests wait, unparsed, in its input buffer until the response before them
 * is fully queued. The request lives inside the connection and its memory in
 * the request arena, reset between requests.
 */
#ifndef VERGE_REQUEST_H
#define VERGE_REQUEST_H

#include "../cache/policy.h"
#include "../cache/store.h"
#include "../hooks/pool.h"
#include "server.h"

#include <sys/uio.h>

#define VIEWER_CONNECTION_MAGIC 0x7669636eu
#define REQUEST_MAGIC 0x72657175u
#define VIEWER_INPUT_SIZE (HTTP1_MAX_HEAD_BYTES + PUMP_READ_SIZE)
#define REQUEST_ID_LEN 24

/* The steps of DESIGN.md's request path, in order. */
#define REQUEST_STEPS(X)                                                                                                           \
    X(RECV)                                                                                                                        \
    X(VIEWER_REQUEST)                                                                                                              \
    X(VIEWER_HEADERS)                                                                                                              \
    X(LOOKUP)                                                                                                                      \
    X(ORIGIN_REQUEST)                                                                                                              \
    X(FETCH)                                                                                                                       \
    X(ORIGIN_RESPONSE)                                                                                                             \
    X(STORE)                                                                                                                       \
    X(VIEWER_RESPONSE)                                                                                                             \
    X(SYNTH)                                                                                                                       \
    X(DELIVER)                                                                                                                     \
    X(DONE)

enum request_step {
#define REQUEST_STEP_ENUM(name) STEP_##name,
    REQUEST_STEPS(REQUEST_STEP_ENUM)
#undef REQUEST_STEP_ENUM
};

enum response_body_source {
    RESPONSE_BODY_NONE,
    RESPONSE_BODY_MEMORY,
    RESPONSE_BODY_ORIGIN,
    RESPONSE_BODY_FILE,
    RESPONSE_BODY_CACHE
};

/* How the cache took part in a response (X-Cache, Cache-Status, metrics). */
enum cache_result {
    CACHE_RESULT_BYPASS,      /* caching off for the behavior, a method other than GET/HEAD, or hit-for-pass */
    CACHE_RESULT_MISS,        /* went to the origin; the answer was not stored */
    CACHE_RESULT_MISS_STORED, /* went to the origin; the answer is being stored */
    CACHE_RESULT_HIT,         /* served from a stored object (also a collapsed waiter) */
    CACHE_RESULT_REFRESH_HIT, /* a stale object revalidated by a 304 */
    CACHE_RESULT_STALE_WHILE_REVALIDATE,
    CACHE_RESULT_STALE_IF_ERROR,
};

struct request;

/* A request's registration on a cache object. The store calls notify from
 * whichever thread changed the object; the wakeup is queued to the request's
 * own loop thread and handled there. */
struct cache_wakeup {
    struct cache_waiter waiter;
    struct loop_thread *thread;
    struct request *request;
    struct cache_object *object; /* registered on; NULL when not waiting */
    bool queued;                 /* on thread->cache_wakeups (guarded by its lock) */
    struct cache_wakeup *queue_next, *queue_prev;
};
enum response_framing { FRAMING_NONE, FRAMING_LENGTH, FRAMING_CHUNKED, FRAMING_UNTIL_CLOSE };

struct request {
    unsigned magic;
    struct viewer_connection *viewer;
    struct arena arena;
    struct generation *generation;
    enum request_step step;
    char id[REQUEST_ID_LEN + 1];
    double started_wall;
    uint64_t started_us; /* monotonic */

    /* What the viewer sent (copied into the arena). */
    slice_t method, target, path, query;
    int version_minor;
    struct http_header *headers;
    size_t header_count;
    enum http1_body_kind body_kind;
    uint64_t body_remaining; /* HTTP1_BODY_LENGTH: bytes still to read */
    struct http1_chunked_decoder body_decoder;
    bool body_done; /* the whole request body was read from the viewer */
    bool body_pump_started;
    bool expect_continue;
    bool is_head;

    /* CloudFront's viewer headers (VIEWER_HEADERS): which verge added, and the
     * viewer's own copies it took off (viewer-response events show those). */
    unsigned viewer_headers;
    struct http_header *viewer_sent_headers;
    size_t viewer_sent_header_count;

    /* Routing. */
    const struct config_behavior *behavior;
    const struct config_origin *origin;
    size_t origin_index;

    /* The response on its way to the viewer. */
    int status;
    slice_t reason;
    struct http_header *response_headers;
    size_t response_header_count;
    enum response_body_source body_source;
    slice_t memory_body;
    int file_fd;
    uint64_t file_offset, file_remaining;
    enum response_framing framing;
    uint64_t response_content_length;
    bool head_sent;
    bool response_complete; /* every byte of the response is queued */
    uint64_t body_bytes_sent;
    const char *error_reason; /* for verge-generated errors */

    /* The origin exchange. */
    struct origin_fetch *fetch;
    bool origin_paused;
    int origin_status;
    double origin_ms;
    int64_t origin_request_time; /* wall seconds when the fetch started (for Age) */
    /* origins.*.faults: decided once per request at FETCH; the timer holds the latency */
    bool fault_checked;
    enum config_fault fault;
    ev_timer fault_timer;

    /* The cache. */
    slice_t authority;                           /* the viewer's Host */
    const struct cache_settings *cache_settings; /* NULL: this request bypasses the cache */
    slice_t cache_key;
    unsigned char cache_hash[CACHE_KEY_HASH_LEN];
    enum cache_result cache_result;
    struct cache_object *cache_object; /* the stored object the response comes from */
    struct cache_object *cache_fill;   /* the BUSY object this request leads: filled or abandoned */
    struct cache_object *cache_stale;  /* a stale variant being revalidated (stale-if-error fallback) */
    bool cache_revalidating;           /* the origin request carries conditionals from cache_stale */
    bool origin_answer_absorbed;       /* a 304 refresh or stale-if-error: the origin's body is not delivered */
    bool deliver_after_origin_end;     /* resume at DELIVER once the absorbed origin answer has ended */
    uint64_t cache_read_offset;
    uint64_t cache_read_end; /* UINT64_MAX: until the object's fill completes */
    int64_t cache_age;       /* Age of the served object */
    int64_t cache_stale_age; /* current age of cache_stale at lookup */
    bool cache_collapsed;    /* counted once as a collapsed wait */
    struct cache_wakeup wakeup;

    /* Edge functions (request_hooks.c). */
    struct hooks_call hook_call;
    enum config_trigger_kind hook_trigger;
    struct event_input *hook_input;        /* the event the running function saw */
    bool hook_generated;                   /* the response was generated by a viewer- or origin-request function */
    bool hook_generated_at_origin;         /* ... by an origin-request function (stored; viewer-response runs) */
    const char *lambda_error;              /* X-Cache value of a function failure (LambdaValidationError, ...) */
    slice_t origin_host;                   /* Host an origin-request function set for the origin */
    struct event_origin *switched_origin;  /* the origin an origin-request function chose, as it gave it */
    struct origin_metrics *origin_metrics; /* for an origin not in the config; NULL: the generation's */
    struct bytebuf held_body;              /* origin body bytes that came while a response trigger ran */
    bool origin_body_ended;                /* the origin body ended before the head went out */
    /* Include Body: the request body read ahead for a function. */
    struct bytebuf collected_body; /* decoded bytes read from the viewer so far (sent to the origin first) */
    bool waiting_for_body;         /* a trigger step waits for collect_limit bytes or the end */
    size_t collect_limit;
    slice_t upload;      /* a function's replacement body (upload_only) */
    bool upload_only;    /* the origin gets `upload`, not the viewer's body */
    bool upload_sent;    /* collected_body/upload went to the origin */
    bool upload_chunked; /* the origin request is chunked (the viewer's chunked body streams on) */
    bool continue_sent;  /* "100 Continue" went to the viewer */

    struct request_trace *trace; /* request_trace.c; NULL when not tracing */
};

enum viewer_state { VIEWER_IDLE, VIEWER_IN_REQUEST, VIEWER_CLOSING };

struct viewer_connection {
    unsigned magic;
    int fd;
    struct loop_thread *thread;
    struct viewer_connection *prev, *next;
    ev_io read_watcher;
    ev_io write_watcher;
    ev_timer timer;
    enum viewer_state state;
    char client_ip[48];
    char *input;
    size_t input_len;
    uint64_t head_started_ms; /* when the first byte of the pending head arrived; 0 when none */
    struct bytebuf output;
    size_t output_sent;
    bool reading_paused; /* request body backpressure */
    bool close_after_response;
    bool processing;            /* inside viewer_process_input: do not recurse */
    bool corked;                /* viewer_write only queues; viewer_uncork sends (one send per batch) */
    struct tls_connection *tls; /* NULL on plain-HTTP listeners */
    struct h2_connection *h2;   /* an HTTP/2 connection: the socket carries frames (proxy/h2.c) */
    struct h2_stream *stream;   /* an HTTP/2 stream: this viewer is one request of a connection (no socket) */
    bool h2c;                   /* accepted on a listener with "h2c": true (prior knowledge allowed) */
    bool protocol_chosen;       /* HTTP/1.1 or HTTP/2 was decided (ALPN or the h2c preface) */
    bool tls_read_wants_write;  /* a TLS read (handshake) waits for the socket to take its bytes */
    struct request request;
};

/* ---- viewer.c, for request.c ---------------------------------------------- */

/* Queues bytes for the viewer and writes what the socket takes now. */
void viewer_write(struct viewer_connection *viewer, const void *data, size_t len);
size_t viewer_output_pending(const struct viewer_connection *viewer);
#define VIEWER_MAX_IOV 16
/* Sends what is queued and then the body pieces in one sendmsg, uncorking.
 * Returns how many body bytes the socket took; the rest is NOT kept: when the
 * socket drains, request_on_output_drained asks for it again. Stored objects
 * go out this way, without a copy. */
size_t viewer_send_vectored(struct viewer_connection *viewer, const struct iovec *body, int count);
/* The same for `len` bytes of a file at `offset`, sent with sendfile(2) (the
 * kernel passes the pages by reference). */
size_t viewer_sendfile(struct viewer_connection *viewer, int fd, uint64_t offset, size_t len);
/* While corked, viewer_write only queues; uncorking sends what was queued. */
void viewer_cork(struct viewer_connection *viewer);
void viewer_uncork(struct viewer_connection *viewer);
/* Stops/resumes reading request body bytes (backpressure from the origin). */
void viewer_set_reading(struct viewer_connection *viewer, bool reading);
/* The request has queued its whole response; the connection moves on to the
 * next request (or closes) once that is written. */
void viewer_request_finished(struct viewer_connection *viewer);
/* Closes the connection at once (e.g. the origin failed mid-body, so the
 * response can only be cut short). The request is finished first. */
void viewer_abort(struct viewer_connection *viewer);
/* Drops the first n bytes of viewer->input (a parsed head, consumed body). */
void viewer_consume_input(struct viewer_connection *viewer, size_t n);

/* ---- viewer.c, for h2.c ----------------------------------------------------- */

/* Whether the connection broke (it closes from the loop). */
bool viewer_is_broken(const struct viewer_connection *viewer);
/* After h2.c wrote frames: closes a connection that is done, re-arms its timer. */
void viewer_h2_settled(struct viewer_connection *viewer);

/* ---- request.c, for viewer.c ---------------------------------------------- */

/* Starts the state machine for a parsed request head (its slices point into
 * the viewer's input buffer; they are copied). */
void request_start(struct viewer_connection *viewer, const struct http1_request *head);
/* Answers a request that could not be parsed (400/414/431/...), then close. */
void request_start_error(struct viewer_connection *viewer, int status, const char *reason);
/* New bytes are in viewer->input while the request is reading its body. */
void request_on_viewer_input(struct request *request);
/* The viewer's output went below the low watermark. */
void request_on_output_drained(struct request *request);
/* Releases everything the request holds (fetch, file, generation) and writes
 * the access log line; called once per request, also on aborts. */
void request_finish(struct request *request);

/* ---- request.c, for request_hooks.c --------------------------------------- */

/* Runs the state machine from request->step (after a function answered). */
void request_resume(struct request *request);
/* Gives up the object this request fills (a function failed). */
void request_end_fill(struct request *request);
/* Include Body: moves request body bytes from the viewer's input into
 * request->collected_body; *enough when `limit` bytes are there or the body
 * ended. False on a malformed chunked body. */
bool request_collect_body(struct request *request, size_t limit, bool *enough);
/* request_body.c: sends what is there of the request body to the origin
 * (the read-ahead or replacement first), with backpressure both ways. */
void request_pump_body(struct request *request);
/* An origin-response function replaced the body: the origin's is dropped. */
void request_replace_origin_body(struct request *request, slice_t body);

/* ---- request_hooks.c, for request.c ----------------------------------------- */

enum trigger_start {
    TRIGGER_NONE,             /* no function at this trigger: go on */
    TRIGGER_SUSPENDED,        /* a function runs; its answer sets the step and resumes */
    TRIGGER_DECIDED,          /* decided at once (throttled): request->step is set */
    TRIGGER_WAITING_FOR_BODY, /* Include Body: collect_limit is set; run the step again when the body is here */
};
/* Runs the behavior's function at `kind`, if any. request->step must already
 * hold the step that follows when the function lets the request go on. */
enum trigger_start request_trigger_start(struct request *request, enum config_trigger_kind kind);
/* Points the request at the origin an origin-request function returned
 * (a configured one when it matches, else one made for it). False when it
 * cannot be used (an https origin: not supported yet; a name that does not
 * resolve). */
bool request_switch_origin(struct request *request, const struct event_origin *origin);
/* An origin as the origin triggers' events show it (request.origin.custom):
 * its host, port, path and protocol, verge's timeouts. Also `verge event`. */
void request_origin_to_event(const struct config_origin *origin, struct event_origin *out);
/* Frees what the thread keeps for function-chosen origins (at exit). */
void request_hooks_thread_destroy(struct loop_thread *thread);

/* ---- request_trace.c, for request.c and request_hooks.c ---------------------- */

/* Starts the request's trace when tracing is on (verge dev, or the
 * generation's dev.trace_header); leaves request->trace NULL otherwise. */
void request_trace_begin(struct request *request);
/* Where the pool should copy the function log lines of the trigger about to
 * run (hooks_invocation.log_capture); NULL when not tracing. */
struct bytebuf *request_trace_log_capture(struct request *request);
/* Records a trigger that ran (or was throttled: duration_ms -1): its
 * outcome ("continue", "modified", "generated", "error", "invalid",
 * "throttled"), and `detail` (copied) when it failed. No-op when not tracing. */
void request_trace_trigger(struct request *request, enum config_trigger_kind kind, const char *outcome, double duration_ms,
                           const char *detail);
/* Appends the "X-Verge-Trace: ...\r\n" header line when tracing: the id,
 * the triggers in the order they ran, the cache result and key, the origin. */
void request_trace_append_header(const struct request *request, struct bytebuf *out);
/* Under verge dev, prints the request's trace block to stdout; frees the
 * trace. Called once, from request_finish. */
void request_trace_end(struct request *request);

/* ---- request_cache.c, for request.c --------------------------------------- */

/* The cache key of the request (built once) and cache_lookup for it. */
enum cache_lookup_outcome request_cache_lookup(struct request *request, struct cache_object **object);
/* Registers the request on `object` (replacing an earlier registration): each
 * change of the object calls request_on_cache_event on the request's thread. */
void cache_wakeup_wait(struct request *request, struct cache_object *object);
void cache_wakeup_cancel(struct request *request);
/* request.c: an object the request waits on changed. */
void request_on_cache_event(struct request *request);
/* What a stored object's head is made from. */
struct object_head_source {
    const struct cache_settings *settings;
    slice_t method;
    bool has_authorization;            /* the viewer request carried Authorization */
    int status;                        /* the origin's */
    const struct http_header *headers; /* the origin's, hop-by-hop removed */
    size_t header_count;
    int64_t content_length; /* -1 when unknown */
    /* Non-NULL when `status` is a 304 revalidating this stale object: its
     * headers are updated by the 304 (RFC 9111 §3.2) and its body kept. */
    const struct cache_object_view *revalidated;
    /* The Vary signature comes from these request headers, or, when they are
     * NULL (a refresh no viewer asked for), from `variant`. */
    const struct http_header *request_headers;
    size_t request_header_count;
    const struct cache_object_view *variant;
    slice_t path;
    int64_t request_time; /* when the origin request went out */
};

/* Decides whether the response may be stored (cache_decide_store) and fills
 * `head` (memory from `arena`). Returns false with `reason` when it may not. */
bool cache_object_head_build(struct arena *arena, const struct object_head_source *source, int64_t now,
                             struct cache_object_head *head, const char **reason);
/* The viewer of a request that fills a stored object left: the fetch goes on
 * without it, so the object completes for the requests that wait on it (and
 * for later ones). Takes request->fetch and request->cache_fill. */
void request_cache_continue_fill(struct request *request);
/* Revalidates `stale` at the origin without a viewer, filling `fill` (the
 * BUSY slot from cache_insert_leader; ownership of its reference passes). */
void request_cache_refresh_in_background(struct request *request, struct cache_object *stale, struct cache_object *fill,
                                         const struct bytebuf *conditional_head);

#endif
