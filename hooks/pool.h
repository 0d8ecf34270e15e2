/* pool.h — the edge-function worker pool of one event-loop thread: spawning
 * worker processes, handing them events, deadlines, kill and respawn,
 * scaling out and in, the global concurrency limit, and the function log's
 * START / END / REPORT lines.
 *
 * Each loop thread owns its pools (one per config generation, function and
 * memory size) and talks to its workers over their channels from its own
 * libev loop, so an invocation never crosses threads. What threads share:
 * the concurrency counter (an atomic: events in flight or waiting, all
 * functions together) and the metrics.
 */
#ifndef VERGE_HOOKS_POOL_H
#define VERGE_HOOKS_POOL_H

#include <ev.h>

#include "../conf/config.h"
#include "../proxy/metrics.h"
#include "event.h"

struct hooks_pools;
struct function_pool;
struct worker_process;

enum hooks_outcome_kind {
    HOOKS_OK,             /* result_json holds what the function returned */
    HOOKS_FUNCTION_ERROR, /* the function raised (or failed to load): error holds file:line + traceback */
    HOOKS_UNSERIALIZABLE, /* it returned something that cannot be encoded: error says what (a validation error) */
    HOOKS_TIMEOUT,        /* killed at its deadline */
    HOOKS_WORKER_DIED,    /* the worker crashed or exited during the event */
    HOOKS_THROTTLED,      /* waited for a worker past the function's timeout */
};

struct hooks_outcome {
    enum hooks_outcome_kind kind;
    slice_t result_json;                      /* HOOKS_OK; valid during the callback only */
    enum event_header_changes header_changes; /* HOOKS_OK: how the worker sent the result's headers */
    const char *error;                        /* the other kinds: what happened, for the log */
    double duration_ms;                       /* from dispatch to the worker until the answer */
    uint64_t peak_memory_bytes;               /* the Lua heap's peak during the event, as the worker measured it; 0 when
                                                 the worker gave no answer (timeout, crash, throttle) */
};

typedef void (*hooks_done_callback)(void *context, const struct hooks_outcome *outcome);

/* Room for a request id in the log lines, NUL included: verge's own are 24
 * characters, CloudFront's 56 (an event from AWS given to verge invoke);
 * longer ones are cut. */
#define HOOKS_REQUEST_ID_MAX 64

/* One invocation, embedded in its caller (a request). Opaque. */
struct hooks_call {
    struct function_pool *pool;
    struct worker_process *worker; /* while it runs */
    struct hooks_call *next_waiting;
    ev_timer wait_timer; /* while it waits for a worker */
    hooks_done_callback done;
    void *context;
    struct bytebuf frame; /* the INVOKE frame, kept until a worker takes it */
    char request_id[HOOKS_REQUEST_ID_MAX];
    enum event_trigger trigger;
    int timeout_ms;
    struct bytebuf *log_capture; /* hooks_invocation.log_capture */
    bool active;                 /* between hooks_invoke and done/cancel */
    bool finished;               /* answered and counted; its callback is about to run */
};

struct hooks_invocation {
    struct config *config; /* the generation the request runs on */
    size_t function_index;
    enum event_trigger trigger;
    int timeout_ms, memory_mb; /* effective at this trigger */
    slice_t request_id;
    const struct event_input *event; /* encoded (compact) straight into the frame sent to the worker */
    /* Optional (verge dev, verge invoke): the function's own log lines of this
     * event — its prints as "INFO\t<text>\n", its error and a timeout as
     * "ERROR\t<text>\n" — are appended here too, whether the function log is
     * on or not. Must stay valid until the callback ran or the call was
     * cancelled. */
    struct bytebuf *log_capture;
};

/* The program the pool starts as "<path> worker" with the channel on fd 3
 * (process-wide; main sets /proc/self/exe). */
void hooks_set_worker_program(const char *path);

struct hooks_pools *hooks_pools_create(struct ev_loop *loop);
/* Kills every worker of the thread and frees the pools; calls in flight are
 * dropped without their callback (their requests are gone already). */
void hooks_pools_destroy(struct hooks_pools *pools);
/* A new generation is current: pools of other configs take no new workers
 * and go away when their last event is done. */
void hooks_pools_retire(struct hooks_pools *pools, const struct config *current);

/* Starts an invocation; `done` is called later, from the loop, exactly once
 * unless the call is cancelled. Returns false when no concurrency is left
 * (workers.max_concurrency events in flight or waiting): the caller answers
 * 503 LambdaLimitExceeded; nothing is pending then. */
bool hooks_invoke(struct hooks_pools *pools, const struct hooks_invocation *invocation, struct hooks_call *call,
                  hooks_done_callback done, void *context);
/* The caller no longer wants the outcome (its viewer left). A running event
 * still runs to its end or deadline on its worker. Safe on an idle call. */
void hooks_call_cancel(struct hooks_call *call);

/* The verdict on an answer, as serving applies it: a HOOKS_OK outcome's
 * result parsed (with the worker's header changes) and validated against
 * `input`, the event the function saw; true with `result` filled when it is
 * valid. A HOOKS_UNSERIALIZABLE outcome fails with field "$" and the
 * outcome's error as the rule (valid as long as the outcome). Memory from
 * `arena`. Other kinds are not results: the caller handles them first. */
bool hooks_outcome_read_result(const struct hooks_outcome *outcome, const struct event_input *input, struct arena *arena,
                               struct event_result *result, struct event_error *error);

/* Queues the function-log line of a result that failed validation, after
 * the event's REPORT: "<request id>\tERROR\tValidation error: <field>: <rule>". */
void hooks_log_validation_error(slice_t function_name, slice_t request_id, const char *field, const char *rule);

/* The metrics of the function and trigger of a call hooks_invoke accepted
 * (valid after its callback ran, until the call is reused). */
struct function_metrics *hooks_call_metrics(const struct hooks_call *call);

/* Live worker processes, all threads. */
long hooks_worker_count(void);

#endif
