/* pool.c — edge-function worker processes for one event-loop thread.
 *
 * A function_pool holds the workers of one (config generation, function,
 * memory size). A worker is a separate process (`verge worker`, started with
 * posix_spawn: safe from a threaded process, and a fresh address space with
 * nothing of the proxy in it) that runs one event at a time and stays warm.
 * The thread talks to it over a socketpair with the frames of worker.h,
 * non-blocking, from the thread's own loop.
 *
 * Life of an invocation: hooks_invoke counts it against the global limit
 * (workers.max_concurrency; over it → refused at once), then hands it to a
 * worker, or queues it. A worker runs its events one at a time, in order;
 * for a fast function (recent events under FAST_EVENT_US) the pool queues up
 * to PIPELINE_DEPTH events on a worker. Frames are written before the loop
 * blocks (an ev_prepare watcher), one batch in flight per worker: events
 * that come while a worker works on a batch go together when it answers, so
 * a loaded worker takes many events per wakeup instead of a context switch
 * pair per event, and an idle one gets its event at once.
 * START goes to the function log when an event becomes the worker's first,
 * END and REPORT when it is answered; the lines of a loop pass are queued
 * together (before callbacks run, and before the loop blocks). An event's
 * INVOKE frame is built once, in the worker's `pending` buffer (or, while
 * it waits for a worker, in its call), and stays in the worker's buffers
 * until answered: a worker that fails gives the events behind its first
 * back to the pool with copies of their frames. The deadline timer runs
 * for the first event: it kills the worker (SIGKILL: JIT-compiled code
 * ignores debug hooks, so only the kernel can stop a loop), that event
 * fails as a timeout, and the events queued behind it go back to the pool
 * for other workers.
 *
 * Scaling: a pool with no worker starts one when an event comes. Events that
 * wait start a scale timer (every SCALE_TICK_MS): it samples how much CPU
 * the busy workers use or wait for (/proc/<pid>/schedstat) — workers that
 * mostly sleep (a slow dependency) get more workers, one per waiting event, up to
 * SPAWN_BURST per tick; workers that compute get at most as many workers as
 * there are CPUs, because more processes than cores add no throughput.
 * Idle workers exit after workers.idle_timeout_s; a waiting event gives up
 * (throttled) after its function's timeout.
 *
 * Invariants:
 *  - A worker is STARTING (spawned, no READY yet), IDLE, BUSY (1 to
 *    PIPELINE_DEPTH events sent, answered in order) or gone; a call is
 *    waiting (on its pool's queue, wait_timer running), sent (on a worker's
 *    queue) or inactive.
 *  - `in_flight` counts active calls of all threads; each active call adds
 *    one to its function metrics' `concurrent` gauge.
 *  - A cancelled sent call stays on its worker's queue as an empty entry
 *    until the answer or the deadline, without a callback.
 *  - Callbacks run last, after the worker and pool are consistent: a
 *    callback may start the request's next trigger on the same pool.
 *  - Closed workers are reaped: their pids wait on `reap_list` (waitpid
 *    WNOHANG on the housekeeping tick; SIGKILL after REAP_PATIENCE_MS).
 * Locking: none inside a thread; `in_flight` and `worker_total` are atomics.
 */
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../proxy/access_log.h"
#include "worker.h"

#define SCALE_TICK_MS 5
#define SPAWN_BURST 8
#define HOUSEKEEPING_INTERVAL_S 0.25
#define REAP_PATIENCE_MS 2000
#define WORKER_READ_SIZE (64 * 1024)
#define SPARE_INPUT_MAX (4 * WORKER_READ_SIZE) /* a read buffer grown past this (a huge result) is not kept */
#define WORKER_CHANNEL_FD 3
#define PIPELINE_DEPTH 32
#define FAST_EVENT_US 1000

extern char **environ;

static const char *worker_program = "/proc/self/exe";
static atomic_long in_flight;
static atomic_long worker_total;

enum worker_state { WORKER_STARTING, WORKER_IDLE, WORKER_BUSY };

/* One event sent to a worker. */
struct sent_event {
    struct hooks_call *call; /* NULL: cancelled */
    enum event_trigger trigger;
    int timeout_ms;
    char request_id[HOOKS_REQUEST_ID_MAX];
    uint64_t started_us; /* when the worker began it (first entry only) */
    uint32_t frame_len;  /* its INVOKE frame, in the worker's `output` or `pending` until answered */
};

struct worker_process {
    struct function_pool *pool;
    struct worker_process *next;
    struct worker_process *next_flush; /* on owner->flush_list */
    bool flush_queued;
    pid_t pid;
    int fd;
    enum worker_state state;
    ev_io read_watcher, write_watcher;
    ev_timer deadline;
    struct bytebuf input;
    /* The frames of the batch in flight, kept until it is answered (a
     * worker that dies first gives its events back to the pool with them);
     * [0, output_answered) belong to events answered already. */
    struct bytebuf output;
    struct bytebuf pending; /* frames of events not written yet: they become `output` when the last batch is answered */
    size_t output_sent, output_answered;
    struct sent_event queue[PIPELINE_DEPTH]; /* ring: queue_head, queue_count */
    unsigned queue_head, queue_count;
    unsigned unsent;     /* events of the queue whose frames are not written yet */
    unsigned unanswered; /* events written and not answered yet: the batch in flight */
    uint64_t spawned_us, idle_since_us;
    bool deadline_grace_used; /* the first event's deadline waited once for an answer already in the socket */
    double init_ms;           /* spawn → READY; reported once, with the first event */
    bool cold;                /* its first event has not run yet */
    unsigned invocation_number;
    unsigned sampled_invocation; /* the scale timer's CPU sample belongs to this invocation */
    uint64_t sampled_runtime_ns, sampled_at_us;
};

struct function_pool {
    struct hooks_pools *owner;
    struct function_pool *next;
    struct config *config; /* a ref: the function's file, handler and env live in it */
    size_t function_index;
    int memory_mb;
    const struct config_function *function;
    slice_t name; /* the function's */
    char version[16];
    slice_t version_slice;
    struct function_metrics *metrics[EVENT_TRIGGER_COUNT];
    struct worker_process *workers;
    size_t live, starting;
    struct hooks_call *waiting_head, *waiting_tail;
    size_t waiting;
    ev_timer scale_timer;
    bool retiring;
    double recent_event_us; /* moving average of event durations (pipelining when small) */
};

struct reap_entry {
    pid_t pid;
    uint64_t since_ms;
    bool killed;
    bool report; /* it ended on its own (a crash): log how once it is reaped */
};

struct hooks_pools {
    struct ev_loop *loop;
    struct function_pool *pools;
    ev_timer housekeeping;
    ev_prepare flusher;           /* writes queued frames before the loop blocks */
    const struct config *current; /* pools of other configs are retiring */
    struct worker_process *flush_list;
    struct reap_entry *reap_list;
    size_t reap_count, reap_capacity;
    /* Function-log lines of this loop pass, queued at once before callbacks
     * run and before the loop blocks (on_flush): one lock for many lines. */
    struct function_log_batch log;
    struct bytebuf spare_input; /* a read buffer given back after its callbacks: no allocation per read */
};

static void dispatch(struct function_pool *pool);
static void worker_close(struct worker_process *worker, bool kill_it);
static struct worker_process *worker_with_room(struct function_pool *pool);

void hooks_set_worker_program(const char *path)
{
    worker_program = path;
}

long hooks_worker_count(void)
{
    return atomic_load_explicit(&worker_total, memory_order_relaxed);
}

/* ---- the function log ---------------------------------------------------- */

static void log_text(const struct function_pool *pool, slice_t prefix, slice_t text)
{
    function_log_batch_add(&pool->owner->log, pool->name, prefix, text);
}

/* START, END and REPORT: lines this file builds, without CR or LF. */
static void log_report_lines(const struct function_pool *pool, const slice_t *lines, size_t count)
{
    function_log_batch_add_lines(&pool->owner->log, pool->name, lines, count);
}

/* Queues the lines collected so far (before anything else may log: a
 * callback, the loop blocking). */
static void log_flush(struct hooks_pools *pools)
{
    if (pools->log.entries > 0)
        function_log_batch_queue(&pools->log);
}

static void log_line(const struct function_pool *pool, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void log_line(const struct function_pool *pool, const char *fmt, ...)
{
    if (!function_log_enabled())
        return;
    char text[1024];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof text ? (size_t)n : sizeof text - 1;
    log_text(pool, (slice_t){NULL, 0}, (slice_t){text, len});
}

/* Line builders for the per-invocation lines (the callers size their buffers:
 * request ids, versions and numbers are short). */
static char *put_text(char *p, const char *text)
{
    size_t n = strlen(text);
    memcpy(p, text, n);
    return p + n;
}

static char *put_slice(char *p, slice_t s)
{
    memcpy(p, s.ptr, s.len);
    return p + s.len;
}

#define put_literal(p, literal) (memcpy((p), (literal), sizeof(literal) - 1), (p) + sizeof(literal) - 1)

/* "12.34": milliseconds with two decimals, rounded, as Lambda prints them. */
static char *put_milliseconds(char *p, double ms)
{
    uint64_t hundredths = ms > 0 ? (uint64_t)(ms * 100.0 + 0.5) : 0;
    p = put_decimal(p, hundredths / 100);
    *p++ = '.';
    *p++ = (char)('0' + hundredths / 10 % 10);
    *p++ = (char)('0' + hundredths % 10);
    return p;
}

/* A multi-line text (an error and its traceback) as one log line per line,
 * each starting "<request id>\t<level>\t". */
static void log_lines(const struct function_pool *pool, const char *request_id, const char *level, slice_t text)
{
    if (!function_log_enabled())
        return;
    char prefix[96], *p = prefix; /* request ids are under 64 bytes (HOOKS_REQUEST_ID_MAX), levels short */
    p = put_text(p, request_id);
    *p++ = '\t';
    p = put_text(p, level);
    *p++ = '\t';
    log_text(pool, (slice_t){prefix, (size_t)(p - prefix)}, text);
}

/* ---- the reap list ------------------------------------------------------- */

static void describe_status(int status, char *out, size_t size)
{
    if (WIFSIGNALED(status))
        snprintf(out, size, "the worker was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(out, size, "the worker exited with status %d", WEXITSTATUS(status));
}

static void reap_add(struct hooks_pools *pools, pid_t pid, bool killed, bool report)
{
    if (pools->reap_count == pools->reap_capacity) {
        pools->reap_capacity = pools->reap_capacity ? pools->reap_capacity * 2 : 16;
        pools->reap_list = realloc(pools->reap_list, pools->reap_capacity * sizeof *pools->reap_list);
        VERGE_ASSERT(pools->reap_list != NULL);
    }
    pools->reap_list[pools->reap_count++] = (struct reap_entry){pid, time_now_monotonic_ms(), killed, report};
}

static void reap_poll(struct hooks_pools *pools)
{
    uint64_t now = time_now_monotonic_ms();
    size_t kept = 0;
    for (size_t i = 0; i < pools->reap_count; i++) {
        struct reap_entry *entry = &pools->reap_list[i];
        int status = 0;
        pid_t done = waitpid(entry->pid, &status, WNOHANG);
        if (done == entry->pid && entry->report) {
            char how[128];
            describe_status(status, how, sizeof how);
            log_warn("function worker %d ended: %s", (int)entry->pid, how);
        }
        if (done == entry->pid || (done < 0 && errno == ECHILD))
            continue;
        if (!entry->killed && now - entry->since_ms > REAP_PATIENCE_MS) {
            kill(entry->pid, SIGKILL); /* it did not exit on EOF */
            entry->killed = true;
        }
        pools->reap_list[kept++] = *entry;
    }
    pools->reap_count = kept;
}

/* How a worker that closed its channel ended, when the kernel already knows.
 * The channel closes a moment before the process becomes a zombie: when it
 * is not one yet, the loop does not wait for it; the housekeeping tick reaps
 * it and logs how it ended. */
static void describe_exit(pid_t pid, struct hooks_pools *pools, char *out, size_t size)
{
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
        describe_status(status, out, size);
        return;
    }
    snprintf(out, size, "the worker closed its channel (pid %d; how it ended follows in the log)", (int)pid);
    reap_add(pools, pid, false, true);
}

/* ---- channel I/O ----------------------------------------------------------- */

static void output_reset(struct worker_process *worker)
{
    worker->output.len = 0;
    worker->output_sent = 0;
    worker->output_answered = 0;
}

/* Writes what the socket takes; the rest waits for the write watcher. A
 * broken channel shows up as EOF on the read side, which fails the events. */
static void flush_output(struct worker_process *worker)
{
    struct ev_loop *loop = worker->pool->owner->loop;
    while (worker->output_sent < worker->output.len) {
        ssize_t n = send(worker->fd, worker->output.data + worker->output_sent, worker->output.len - worker->output_sent,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev_io_start(loop, &worker->write_watcher);
                return;
            }
            break; /* EOF follows on the read side */
        }
        worker->output_sent += (size_t)n;
    }
    /* All written. A batch's frames stay until it is answered. */
    if (worker->unanswered == 0)
        output_reset(worker);
    ev_io_stop(loop, &worker->write_watcher);
}

/* Asks for a flush of the worker's pending frames: they go out before the
 * loop next blocks, once the batch in flight is answered. */
static void queue_flush(struct worker_process *worker)
{
    if (!worker->flush_queued) {
        struct hooks_pools *owner = worker->pool->owner;
        worker->flush_queued = true;
        worker->next_flush = owner->flush_list;
        owner->flush_list = worker;
    }
}

static void on_flush(struct ev_loop *loop, ev_prepare *watcher, int revents)
{
    (void)loop, (void)revents;
    struct hooks_pools *pools = watcher->data;
    log_flush(pools);
    while (pools->flush_list != NULL) {
        struct worker_process *worker = pools->flush_list;
        pools->flush_list = worker->next_flush;
        worker->flush_queued = false;
        /* One batch in flight per worker: new events wait until the worker
         * answered the last batch, then go together. An idle worker gets an
         * event at once; a loaded one takes many per wakeup. */
        if (worker->unanswered > 0 || ev_is_active(&worker->write_watcher) || worker->pending.len == 0)
            continue;
        /* Exactly the pending events become the batch in flight (the
         * buffers trade places when nothing else waits to be written). */
        if (worker->output.len == 0) {
            struct bytebuf spare = worker->output;
            worker->output = worker->pending;
            worker->pending = spare;
            worker->output_sent = 0;
            worker->output_answered = 0;
        } else {
            /* (what is there was answered or is no event's: not needed again) */
            worker->output_answered = worker->output.len;
            bytebuf_append(&worker->output, worker->pending.data, worker->pending.len);
        }
        worker->pending.len = 0;
        worker->unanswered += worker->unsent;
        worker->unsent = 0;
        flush_output(worker);
    }
}

static void on_worker_writable(struct ev_loop *loop, ev_io *watcher, int revents)
{
    (void)loop, (void)revents;
    flush_output(watcher->data);
}

/* ---- the events on a worker ------------------------------------------------- */

static struct sent_event *first_event(struct worker_process *worker)
{
    return worker->queue_count > 0 ? &worker->queue[worker->queue_head] : NULL;
}

/* Copies a line of the first event into its call's capture, if it asked for
 * one (and was not cancelled). */
static void capture_text(struct worker_process *worker, const char *level, slice_t text)
{
    const struct sent_event *event = first_event(worker);
    if (event == NULL || event->call == NULL || event->call->log_capture == NULL)
        return;
    struct bytebuf *out = event->call->log_capture;
    while (text.len > 0 && (text.ptr[text.len - 1] == '\n' || text.ptr[text.len - 1] == '\r'))
        text.len--;
    bytebuf_appendf(out, "%s\t", level);
    bytebuf_append(out, text.ptr, text.len);
    bytebuf_append(out, "\n", 1);
}

/* The first event is under way: START line, deadline. */
static void begin_first(struct worker_process *worker, uint64_t now)
{
    struct function_pool *pool = worker->pool;
    struct sent_event *event = first_event(worker);
    event->started_us = now;
    worker->deadline_grace_used = false;
    worker->invocation_number++;
    if (worker->cold)
        atomic_fetch_add_explicit(&pool->metrics[event->trigger]->cold_starts, 1, memory_order_relaxed);
    if (function_log_enabled()) {
        char text[128], *p = text;
        p = put_literal(p, "START RequestId: ");
        p = put_text(p, event->request_id);
        p = put_literal(p, " Version: ");
        p = put_slice(p, pool->version_slice);
        log_report_lines(pool, &(slice_t){text, (size_t)(p - text)}, 1);
    }
    /* One heap adjustment whether the timer runs or not (ev_timer_again). */
    worker->deadline.repeat = event->timeout_ms / 1000.0;
    ev_timer_again(pool->owner->loop, &worker->deadline);
}

/* Puts `call` on the worker's queue; its frame (frame_len bytes) is the
 * last one in the worker's `pending`. */
static void queue_event(struct worker_process *worker, struct hooks_call *call, uint32_t frame_len)
{
    VERGE_ASSERT(worker->queue_count < PIPELINE_DEPTH);
    struct sent_event *event = &worker->queue[(worker->queue_head + worker->queue_count) % PIPELINE_DEPTH];
    event->call = call;
    event->trigger = call->trigger;
    event->timeout_ms = call->timeout_ms;
    memcpy(event->request_id, call->request_id, sizeof event->request_id);
    event->frame_len = frame_len;
    call->worker = worker;
    worker->queue_count++;
    worker->state = WORKER_BUSY;
    worker->unsent++;
    queue_flush(worker);
    if (worker->queue_count == 1)
        begin_first(worker, time_now_monotonic_us());
}

/* Sends a call that waited (its frame is in call->frame) to `worker`. */
static void send_event(struct worker_process *worker, struct hooks_call *call)
{
    bytebuf_append(&worker->pending, call->frame.data, call->frame.len);
    uint32_t frame_len = (uint32_t)call->frame.len;
    bytebuf_free(&call->frame);
    queue_event(worker, call, frame_len);
}

/* Logs END and REPORT of the first event and counts it; removes it from
 * the queue and returns its call (NULL when cancelled) for the caller to
 * deliver once everything else is done. The next event, if any, begins. */
static struct hooks_call *finish_first(struct worker_process *worker, const struct hooks_outcome *outcome, uint64_t now)
{
    struct function_pool *pool = worker->pool;
    struct sent_event *event = first_event(worker);
    struct function_metrics *counters = pool->metrics[event->trigger];
    double duration_ms = outcome->duration_ms;
    if (function_log_enabled()) {
        /* END and REPORT in one go (Lambda bills at least 1 ms), built without
         * printf: a busy function writes these lines thousands of times a second. */
        unsigned long long used_mb = (outcome->peak_memory_bytes + 1024 * 1024 - 1) / (1024 * 1024);
        double billed = ceil(duration_ms) < 1 ? 1 : ceil(duration_ms);
        char text[512], *p = text;
        size_t id_len = strlen(event->request_id);
        p = put_literal(p, "END RequestId: ");
        p = put_slice(p, (slice_t){event->request_id, id_len});
        slice_t lines[2] = {{text, (size_t)(p - text)}, {p, 0}};
        p = put_literal(p, "REPORT RequestId: ");
        p = put_slice(p, (slice_t){event->request_id, id_len});
        p = put_literal(p, "\tDuration: ");
        p = put_milliseconds(p, duration_ms);
        p = put_literal(p, " ms\tBilled Duration: ");
        p = put_decimal(p, (uint64_t)billed);
        p = put_literal(p, " ms\tMemory Size: ");
        p = put_decimal(p, (uint64_t)pool->memory_mb);
        p = put_literal(p, " MB\tMax Memory Used: ");
        p = put_decimal(p, used_mb);
        p = put_literal(p, " MB\t");
        if (worker->cold) {
            p = put_literal(p, "Init Duration: ");
            p = put_milliseconds(p, worker->init_ms);
            p = put_literal(p, " ms\t");
        }
        lines[1].len = (size_t)(p - lines[1].ptr);
        log_report_lines(pool, lines, 2);
    }
    worker->cold = false;
    atomic_fetch_add_explicit(&counters->invocations, 1, memory_order_relaxed);
    metrics_observe_function_duration(counters, duration_ms / 1000.0);
    if (outcome->kind == HOOKS_TIMEOUT)
        atomic_fetch_add_explicit(&counters->errors[FUNCTION_ERROR_TIMEOUT], 1, memory_order_relaxed);
    else if (outcome->kind == HOOKS_UNSERIALIZABLE)
        atomic_fetch_add_explicit(&counters->errors[FUNCTION_ERROR_VALIDATION], 1, memory_order_relaxed);
    else if (outcome->kind != HOOKS_OK)
        atomic_fetch_add_explicit(&counters->errors[FUNCTION_ERROR_EXECUTION], 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&counters->concurrent, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&in_flight, 1, memory_order_relaxed);
    pool->recent_event_us = pool->recent_event_us * 0.875 + duration_ms * 1000.0 * 0.125;

    struct hooks_call *call = event->call;
    if (call != NULL) {
        call->worker = NULL;
        call->finished = true; /* a cancel from here to its callback only drops the callback */
    }
    event->call = NULL;
    worker->queue_head = (worker->queue_head + 1) % PIPELINE_DEPTH;
    worker->queue_count--;
    if (worker->queue_count > 0) {
        begin_first(worker, now); /* restarts the deadline */
    } else {
        ev_timer_stop(pool->owner->loop, &worker->deadline);
        worker->state = WORKER_IDLE;
        worker->idle_since_us = now;
    }
    return call;
}

static void deliver(struct hooks_call *call, const struct hooks_outcome *outcome)
{
    if (call == NULL || !call->active)
        return; /* cancelled: nobody waits for it */
    /* this event's log lines come before any its caller writes */
    log_flush(call->pool->owner);
    call->active = false;
    call->worker = NULL;
    call->done(call->context, outcome);
}

/* ---- the waiting queue ---------------------------------------------------- */

/* Puts a call on its pool's waiting queue (first, for an event given back by
 * a failed worker; else last) and starts its wait timer. */
static void waiting_add(struct function_pool *pool, struct hooks_call *call, bool first)
{
    call->worker = NULL;
    call->next_waiting = NULL;
    if (first) {
        call->next_waiting = pool->waiting_head;
        pool->waiting_head = call;
        if (pool->waiting_tail == NULL)
            pool->waiting_tail = call;
    } else {
        if (pool->waiting_tail != NULL)
            pool->waiting_tail->next_waiting = call;
        else
            pool->waiting_head = call;
        pool->waiting_tail = call;
    }
    pool->waiting++;
    ev_timer_set(&call->wait_timer, call->timeout_ms / 1000.0, 0);
    ev_timer_start(pool->owner->loop, &call->wait_timer);
}

/* Takes a call off its pool's waiting queue (it is on it) and stops its timer. */
static void waiting_remove(struct function_pool *pool, struct hooks_call *call)
{
    for (struct hooks_call **link = &pool->waiting_head, *previous = NULL; *link != NULL;
         previous = *link, link = &(*link)->next_waiting)
        if (*link == call) {
            *link = call->next_waiting;
            if (pool->waiting_tail == call)
                pool->waiting_tail = previous;
            break;
        }
    pool->waiting--;
    ev_timer_stop(pool->owner->loop, &call->wait_timer);
}

/* A call leaves the waiting queue without running: its frame goes and it
 * no longer counts as in flight. */
static void waiting_abandon(struct function_pool *pool, struct hooks_call *call)
{
    waiting_remove(pool, call);
    bytebuf_free(&call->frame);
    atomic_fetch_sub_explicit(&pool->metrics[call->trigger]->concurrent, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&in_flight, 1, memory_order_relaxed);
}

/* The worker failed (deadline, crash, protocol error): its first event
 * fails with it, the events behind it (not begun) go back to the pool, the
 * worker goes, and the caller of the failed event hears about it last. */
static void worker_fail(struct worker_process *worker, enum hooks_outcome_kind kind, const char *error)
{
    struct function_pool *pool = worker->pool;
    struct hooks_call *call = NULL;
    struct hooks_outcome outcome = {.kind = kind, .error = error};
    bool had_event = worker->queue_count > 0;
    if (had_event) {
        struct sent_event *event = first_event(worker);
        outcome.duration_ms = (double)(time_now_monotonic_us() - event->started_us) / 1000.0;
        ev_timer_stop(pool->owner->loop, &worker->deadline);
        unsigned behind = worker->queue_count - 1;
        /* The queue's frames, in its order: the batch in flight (what of
         * `output` is not answered), then `pending`. */
        size_t in_output = worker->output.len - worker->output_answered;
        size_t frame_at[PIPELINE_DEPTH];
        size_t offset = 0;
        for (unsigned i = 0; i <= behind; i++) {
            frame_at[i] = offset;
            offset += worker->queue[(worker->queue_head + i) % PIPELINE_DEPTH].frame_len;
        }
        VERGE_ASSERT(worker->output_answered <= worker->output.len && offset == in_output + worker->pending.len);
        worker->queue_count = 1; /* finish_first must not begin the next one on this worker */
        call = finish_first(worker, &outcome, time_now_monotonic_us());
        /* Back to the pool with a copy of their frames, newest first so the
         * oldest ends up in front. */
        for (unsigned i = behind; i > 0; i--) {
            struct sent_event *queued = &worker->queue[(worker->queue_head + i - 1) % PIPELINE_DEPTH];
            if (queued->call != NULL) {
                const char *frame = frame_at[i] < in_output ? worker->output.data + worker->output_answered + frame_at[i]
                                                            : worker->pending.data + (frame_at[i] - in_output);
                queued->call->frame = (struct bytebuf){0};
                bytebuf_append(&queued->call->frame, frame, queued->frame_len);
                waiting_add(pool, queued->call, true);
            } else {
                /* Cancelled and never begun: it leaves the count here. */
                atomic_fetch_sub_explicit(&pool->metrics[queued->trigger]->concurrent, 1, memory_order_relaxed);
                atomic_fetch_sub_explicit(&in_flight, 1, memory_order_relaxed);
            }
            queued->call = NULL;
        }
        worker->queue_count = 0;
    }
    worker_close(worker, true);
    dispatch(pool);
    if (had_event)
        deliver(call, &outcome);
}

static void on_deadline(struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void)loop, (void)revents;
    struct worker_process *worker = (struct worker_process *)((char *)timer - offsetof(struct worker_process, deadline));
    ev_timer_stop(loop, timer); /* begin_first arms it as a repeating timer (ev_timer_again) */
    /* The answer may be in the socket already (this timer and the read came
     * due in the same loop pass): read it first, once, before killing. */
    int unread = 0;
    if (!worker->deadline_grace_used && ioctl(worker->fd, FIONREAD, &unread) == 0 && unread > 0) {
        worker->deadline_grace_used = true;
        ev_timer_set(&worker->deadline, 0.001, 0);
        ev_timer_start(loop, &worker->deadline);
        return;
    }
    struct sent_event *event = first_event(worker);
    double duration_ms = (double)(time_now_monotonic_us() - event->started_us) / 1000.0;
    /* The timer counts from the loop's cached time, which may be a little
     * before the event began: the event gets its whole timeout. */
    if (duration_ms < event->timeout_ms) {
        ev_timer_set(&worker->deadline, (event->timeout_ms - duration_ms) / 1000.0 + 0.0001, 0);
        ev_timer_start(loop, &worker->deadline);
        return;
    }
    log_line(worker->pool, "%s\tTask timed out after %.2f seconds", event->request_id, duration_ms / 1000.0);
    char timed_out[64];
    int timed_out_len = snprintf(timed_out, sizeof timed_out, "Task timed out after %.2f seconds", duration_ms / 1000.0);
    capture_text(worker, "ERROR", (slice_t){timed_out, (size_t)timed_out_len});
    char error[96];
    snprintf(error, sizeof error, "the function timed out after %.0f ms (killed)", duration_ms);
    worker_fail(worker, HOOKS_TIMEOUT, error);
}

/* A worker that ended while starting, with events waiting and nothing else
 * coming for them: the oldest fails (503) instead of respawning in a loop. */
static void fail_oldest_waiting(struct function_pool *pool, const char *error)
{
    struct hooks_call *call = pool->waiting_head;
    waiting_abandon(pool, call);
    atomic_fetch_add_explicit(&pool->metrics[call->trigger]->errors[FUNCTION_ERROR_EXECUTION], 1, memory_order_relaxed);
    struct hooks_outcome outcome = {.kind = HOOKS_WORKER_DIED, .error = error};
    deliver(call, &outcome);
}

/* ---- reading from a worker ---------------------------------------------------- */

struct completion {
    struct hooks_call *call;
    struct hooks_outcome outcome;
    char *error_text; /* owned */
};

static void on_worker_readable(struct ev_loop *loop, ev_io *watcher, int revents)
{
    (void)loop, (void)revents;
    struct worker_process *worker = watcher->data;
    struct function_pool *pool = worker->pool;
    bytebuf_reserve(&worker->input, WORKER_READ_SIZE);
    ssize_t n = recv(worker->fd, worker->input.data + worker->input.len, WORKER_READ_SIZE, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        char how[128];
        describe_exit(worker->pid, pool->owner, how, sizeof how);
        worker->pid = -1; /* reaped, or queued for reaping by describe_exit */
        if (worker->queue_count > 0) {
            log_line(pool, "RequestId: %s Error: Runtime exited with error: %s", first_event(worker)->request_id, how);
            worker_fail(worker, HOOKS_WORKER_DIED, how);
            return;
        }
        bool starting = worker->state == WORKER_STARTING;
        log_warn("function %s: a worker ended while %s: %s", pool->function->name, starting ? "starting" : "idle", how);
        worker_close(worker, false);
        if (starting && pool->waiting > 0 && pool->starting == 0 && worker_with_room(pool) == NULL)
            fail_oldest_waiting(pool, how);
        dispatch(pool);
        return;
    }
    worker->input.len += (size_t)n;

    /* Every complete frame now; callbacks after the loop (they may start
     * more work on this pool), with the frames kept alive until then. */
    struct completion done[PIPELINE_DEPTH];
    size_t done_count = 0;
    const char *protocol_error = NULL;
    size_t offset = 0;
    uint64_t now = time_now_monotonic_us();
    while (worker->input.len - offset >= 8 && protocol_error == NULL) {
        uint32_t header[2];
        memcpy(header, worker->input.data + offset, sizeof header);
        if (header[1] > WORKER_MESSAGE_MAX) {
            protocol_error = "an oversized frame";
            break;
        }
        if (worker->input.len - offset - 8 < header[1])
            break;
        const char *payload = worker->input.data + offset + 8;
        size_t len = header[1];
        offset += 8 + (size_t)len;
        switch (header[0]) {
        case WORKER_MESSAGE_READY: {
            bool loaded = false;
            slice_t error = {NULL, 0};
            if (worker->state != WORKER_STARTING || !worker_ready_decode(payload, len, &loaded, &error)) {
                protocol_error = "a bad READY";
                break;
            }
            worker->init_ms = (double)(now - worker->spawned_us) / 1000.0;
            if (!loaded) {
                log_warn("function %s: cannot load %s: " SLICE_FMT, pool->function->name, pool->function->code_path,
                         SLICE_ARG(error));
                log_lines(pool, "INIT", "ERROR", error);
            }
            pool->starting--;
            worker->state = WORKER_IDLE;
            worker->idle_since_us = now;
            break;
        }
        case WORKER_MESSAGE_LOG:
            if (worker->queue_count > 0) {
                log_lines(pool, first_event(worker)->request_id, "INFO", (slice_t){payload, len});
                capture_text(worker, "INFO", (slice_t){payload, len});
            }
            break;
        case WORKER_MESSAGE_RESULT: {
            struct worker_result result;
            /* Only events written to it can be answered (a RESULT for one still
             * unsent would put the frame accounting out of step). */
            if (worker->unanswered == 0 || done_count == PIPELINE_DEPTH || !worker_result_decode(payload, len, &result)) {
                protocol_error = "a RESULT for no event";
                break;
            }
            struct completion *completion = &done[done_count++];
            memset(completion, 0, sizeof *completion);
            /* The function's own time (what REPORT says and what pipelining is
             * judged on), not the time the answer waited for this loop. */
            completion->outcome.duration_ms = result.duration_us / 1000.0;
            completion->outcome.peak_memory_bytes = result.peak_memory_bytes;
            if (result.status == WORKER_RESULT_OK) {
                completion->outcome.kind = HOOKS_OK;
                completion->outcome.result_json = result.body;
                completion->outcome.header_changes = result.header_changes;
            } else {
                completion->outcome.kind =
                    result.status == WORKER_RESULT_UNSERIALIZABLE ? HOOKS_UNSERIALIZABLE : HOOKS_FUNCTION_ERROR;
                log_lines(pool, first_event(worker)->request_id, "ERROR", result.body);
                capture_text(worker, "ERROR", result.body);
                completion->error_text = strndup(result.body.ptr, result.body.len);
                completion->outcome.error = completion->error_text ? completion->error_text : "the function raised an error";
            }
            uint32_t frame_len = first_event(worker)->frame_len;
            completion->call = finish_first(worker, &completion->outcome, now);
            worker->unanswered--;
            worker->output_answered += frame_len;
            if (worker->unanswered == 0 && worker->output_sent == worker->output.len)
                output_reset(worker);
            break;
        }
        default:
            protocol_error = "an unknown frame type";
        }
    }
    /* The batch is answered: the events queued meanwhile go now. */
    if (protocol_error == NULL && worker->unanswered == 0 && worker->unsent > 0 && !worker->flush_queued)
        queue_flush(worker);
    /* The frames stay readable for the callbacks; the worker keeps the rest
     * (in the thread's spare buffer, when it has one). */
    struct bytebuf frames = worker->input;
    worker->input = pool->owner->spare_input;
    worker->input.len = 0;
    pool->owner->spare_input = (struct bytebuf){0};
    bytebuf_append(&worker->input, frames.data + offset, frames.len - offset);
    struct hooks_pools *owner = pool->owner; /* outlives the callbacks (the worker may not) */

    if (protocol_error != NULL) {
        log_warn("function %s: worker %d sent %s; killing it", pool->function->name, (int)worker->pid, protocol_error);
        worker_fail(worker, HOOKS_WORKER_DIED, "the worker broke the channel protocol");
    } else if (pool->retiring && worker->state == WORKER_IDLE && pool->waiting == 0) {
        worker_close(worker, false);
    } else {
        dispatch(pool);
    }
    for (size_t i = 0; i < done_count; i++) {
        deliver(done[i].call, &done[i].outcome);
        free(done[i].error_text);
    }
    if (owner->spare_input.data == NULL && frames.cap <= SPARE_INPUT_MAX) {
        frames.len = 0;
        owner->spare_input = frames;
    } else {
        bytebuf_free(&frames);
    }
}

/* ---- spawning and closing ------------------------------------------------ */

/* The environment a worker process gets: only the sanitizer settings (so
 * test builds report from workers too); a function sees its configured env
 * through os.getenv, never the proxy's. */
static char **worker_environment(void)
{
    static char *kept[8];
    static atomic_bool built;
    if (!atomic_load(&built)) {
        size_t n = 0;
        for (char **e = environ; *e != NULL && n + 1 < VERGE_ARRAY_SIZE(kept); e++)
            if (strncmp(*e, "ASAN_OPTIONS=", 13) == 0 || strncmp(*e, "UBSAN_OPTIONS=", 14) == 0 ||
                strncmp(*e, "LSAN_OPTIONS=", 13) == 0)
                kept[n] = *e, n++;
        kept[n] = NULL;
        atomic_store(&built, true); /* two threads may both build it: the same pointers either way */
    }
    return kept;
}

static struct worker_process *spawn_worker(struct function_pool *pool)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        log_error("function %s: socketpair: %s", pool->function->name, strerror(errno));
        return NULL;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], WORKER_CHANNEL_FD);
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &all);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
    char *argv[] = {"verge", "worker", NULL};
    pid_t pid;
    int spawn_error;
    if (fds[1] == WORKER_CHANNEL_FD)
        spawn_error = EBADF; /* dup2 onto itself would keep close-on-exec set; fd 3 is the listener's in practice */
    else
        spawn_error = posix_spawn(&pid, worker_program, &actions, &attributes, argv, worker_environment());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    close(fds[1]);
    if (spawn_error != 0) {
        log_error("function %s: cannot start a worker (%s): %s", pool->function->name, worker_program, strerror(spawn_error));
        close(fds[0]);
        return NULL;
    }
    struct worker_process *worker = calloc(1, sizeof *worker);
    VERGE_ASSERT(worker != NULL);
    worker->pool = pool;
    worker->pid = pid;
    worker->fd = fds[0];
    worker->state = WORKER_STARTING;
    worker->cold = true;
    worker->spawned_us = time_now_monotonic_us();
    ev_io_init(&worker->read_watcher, on_worker_readable, worker->fd, EV_READ);
    worker->read_watcher.data = worker;
    ev_io_init(&worker->write_watcher, on_worker_writable, worker->fd, EV_WRITE);
    worker->write_watcher.data = worker;
    ev_timer_init(&worker->deadline, on_deadline, 0, 0);
    ev_io_start(pool->owner->loop, &worker->read_watcher);

    const struct config_function *function = pool->function;
    slice_t *names = calloc(function->env_count + 1, sizeof *names);
    slice_t *values = calloc(function->env_count + 1, sizeof *values);
    VERGE_ASSERT(names != NULL && values != NULL);
    for (size_t i = 0; i < function->env_count; i++) {
        names[i] = slice_from_cstr(function->env_names[i]);
        values[i] = slice_from_cstr(function->env_values[i]);
    }
    struct worker_init init = {
        .memory_limit_mb = (uint32_t)pool->memory_mb,
        .function_file = slice_from_cstr(function->code_path),
        .handler = slice_from_cstr(function->handler),
        .env_count = function->env_count,
        .env_names = names,
        .env_values = values,
        .source = {function->source, function->source_len},
    };
    struct bytebuf payload = {0};
    worker_init_encode(&init, &payload);
    uint32_t header[2] = {WORKER_MESSAGE_INIT, (uint32_t)payload.len};
    bytebuf_append(&worker->output, header, sizeof header);
    bytebuf_append(&worker->output, payload.data, payload.len);
    bytebuf_free(&payload);
    free(names);
    free(values);

    worker->next = pool->workers;
    pool->workers = worker;
    pool->live++;
    pool->starting++;
    atomic_fetch_add_explicit(&worker_total, 1, memory_order_relaxed);
    flush_output(worker);
    return worker;
}

/* Takes the worker off its pool and frees it; the process exits on EOF (or
 * is killed) and is reaped later. Its event queue must be empty. */
static void worker_close(struct worker_process *worker, bool kill_it)
{
    VERGE_ASSERT(worker->queue_count == 0);
    struct function_pool *pool = worker->pool;
    struct hooks_pools *owner = pool->owner;
    for (struct worker_process **link = &pool->workers; *link != NULL; link = &(*link)->next)
        if (*link == worker) {
            *link = worker->next;
            break;
        }
    if (worker->flush_queued)
        for (struct worker_process **link = &owner->flush_list; *link != NULL; link = &(*link)->next_flush)
            if (*link == worker) {
                *link = worker->next_flush;
                break;
            }
    pool->live--;
    if (worker->state == WORKER_STARTING)
        pool->starting--;
    atomic_fetch_sub_explicit(&worker_total, 1, memory_order_relaxed);
    ev_io_stop(owner->loop, &worker->read_watcher);
    ev_io_stop(owner->loop, &worker->write_watcher);
    ev_timer_stop(owner->loop, &worker->deadline);
    if (worker->fd >= 0)
        close(worker->fd);
    if (worker->pid > 0) {
        if (kill_it)
            kill(worker->pid, SIGKILL);
        reap_add(owner, worker->pid, kill_it, false);
    }
    free(worker->input.data);
    free(worker->output.data);
    free(worker->pending.data);
    free(worker);
}

/* ---- dispatching and scaling --------------------------------------------- */

/* The worker the next event should go to: an idle one, else (fast
 * functions only) the least loaded one with room in its pipeline. */
static struct worker_process *worker_with_room(struct function_pool *pool)
{
    bool pipelined = pool->recent_event_us < FAST_EVENT_US;
    struct worker_process *best = NULL;
    for (struct worker_process *worker = pool->workers; worker != NULL; worker = worker->next) {
        if (worker->state == WORKER_IDLE)
            return worker;
        if (pipelined && worker->state == WORKER_BUSY && worker->queue_count < PIPELINE_DEPTH &&
            (best == NULL || worker->queue_count < best->queue_count))
            best = worker;
    }
    return best;
}

static void on_scale_tick(struct ev_loop *loop, ev_timer *timer, int revents);

/* Hands waiting events to workers with room; makes sure a pool with waiting
 * events has a worker coming or a scale timer running. */
static void dispatch(struct function_pool *pool)
{
    while (pool->waiting > 0) {
        struct worker_process *worker = worker_with_room(pool);
        if (worker == NULL)
            break;
        struct hooks_call *call = pool->waiting_head;
        waiting_remove(pool, call);
        send_event(worker, call);
    }
    if (pool->waiting == 0) {
        ev_timer_stop(pool->owner->loop, &pool->scale_timer);
        return;
    }
    if (pool->live == 0)
        spawn_worker(pool); /* also for a retiring pool: a request of its generation still needs it */
    if (!ev_is_active(&pool->scale_timer))
        ev_timer_start(pool->owner->loop, &pool->scale_timer);
}

/* Time the process ran on a CPU plus the time it waited for one, in ns (the
 * first two fields of /proc/<pid>/schedstat): a worker that waits for a
 * CPU is as busy as one that computes — more workers would not help it. */
static bool process_runtime_ns(pid_t pid, uint64_t *out)
{
    char path[64], text[128];
    snprintf(path, sizeof path, "/proc/%d/schedstat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0)
        return false;
    text[n] = '\0';
    char *rest;
    uint64_t running = strtoull(text, &rest, 10);
    *out = running + strtoull(rest, NULL, 10);
    return true;
}

/* CPUs this process may run on (its affinity, e.g. under taskset). */
static long usable_cpus(void)
{
    static long cpus;
    if (cpus == 0) {
        cpu_set_t set;
        long n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
        cpus = n > 0 ? n : 1;
    }
    return cpus;
}

/* True when the worker is really inside an event: not between events with
 * an answer we have not read yet, nor waiting for a frame we have not sent. */
static bool inside_event(struct worker_process *worker)
{
    int unread = 0;
    if (worker->state != WORKER_BUSY || worker->output.len > worker->output_sent)
        return false;
    return ioctl(worker->fd, FIONREAD, &unread) == 0 && unread == 0;
}

static void on_scale_tick(struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void)revents;
    struct function_pool *pool = timer->data;
    if (pool->waiting == 0) {
        ev_timer_stop(loop, timer);
        return;
    }
    if (pool->live == 0) {
        spawn_worker(pool);
        return;
    }
    if (pool->retiring)
        return; /* an old generation's pool serves its last events; it does not grow */
    if (pool->waiting <= pool->starting)
        return; /* enough workers are on their way */
    /* Do the busy workers compute (or wait for a CPU), or do they sleep? A
     * worker is sampled over a whole tick of one event. */
    uint64_t now = time_now_monotonic_us();
    double share_sum = 0;
    int sampled = 0;
    for (struct worker_process *worker = pool->workers; worker != NULL; worker = worker->next) {
        uint64_t runtime;
        if (!inside_event(worker) || !process_runtime_ns(worker->pid, &runtime))
            continue;
        if (worker->sampled_invocation != worker->invocation_number || now <= worker->sampled_at_us) {
            worker->sampled_invocation = worker->invocation_number;
            worker->sampled_runtime_ns = runtime;
            worker->sampled_at_us = now;
            continue;
        }
        share_sum += (double)(runtime - worker->sampled_runtime_ns) / 1000.0 / (double)(now - worker->sampled_at_us);
        sampled++;
    }
    if (sampled == 0)
        return; /* next tick: a first sample was just taken */
    bool computing = share_sum / sampled >= 0.5;
    long limit = computing ? usable_cpus() : pool->config->workers.max_concurrency;
    long want = (long)pool->waiting - (long)pool->starting;
    long room = limit - (long)pool->live;
    long spawn = want < room ? want : room;
    if (spawn > SPAWN_BURST)
        spawn = SPAWN_BURST;
    for (long i = 0; i < spawn; i++)
        if (spawn_worker(pool) == NULL)
            break;
}

/* ---- pools ----------------------------------------------------------------- */

static struct function_pool *pool_for(struct hooks_pools *pools, struct config *config, size_t function_index, int memory_mb)
{
    for (struct function_pool *pool = pools->pools; pool != NULL; pool = pool->next)
        if (pool->config == config && pool->function_index == function_index && pool->memory_mb == memory_mb)
            return pool;
    struct function_pool *pool = calloc(1, sizeof *pool);
    VERGE_ASSERT(pool != NULL);
    pool->owner = pools;
    pool->config = config;
    config_ref(config);
    pool->function_index = function_index;
    pool->memory_mb = memory_mb;
    pool->function = &config->functions[function_index];
    pool->retiring = pools->current != NULL && config != pools->current;
    pool->recent_event_us = FAST_EVENT_US * 4; /* unknown: not pipelined until measured */
    pool->name = slice_from_cstr(pool->function->name);
    snprintf(pool->version, sizeof pool->version, "%u", config->generation);
    pool->version_slice = slice_from_cstr(pool->version);
    for (int trigger = 0; trigger < EVENT_TRIGGER_COUNT; trigger++)
        pool->metrics[trigger] = metrics_function(pool->function->name, event_trigger_name((enum event_trigger)trigger));
    ev_timer_init(&pool->scale_timer, on_scale_tick, SCALE_TICK_MS / 1000.0, SCALE_TICK_MS / 1000.0);
    pool->scale_timer.data = pool;
    pool->next = pools->pools;
    pools->pools = pool;
    return pool;
}

static void pool_free(struct function_pool *pool)
{
    ev_timer_stop(pool->owner->loop, &pool->scale_timer);
    config_unref(pool->config);
    free(pool);
}

static void on_housekeeping(struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void)loop, (void)revents;
    struct hooks_pools *pools = timer->data;
    uint64_t now = time_now_monotonic_us();
    for (struct function_pool **link = &pools->pools; *link != NULL;) {
        struct function_pool *pool = *link;
        uint64_t idle_limit_us = (uint64_t)pool->config->workers.idle_timeout_s * 1000000u;
        for (struct worker_process *worker = pool->workers, *next; worker != NULL; worker = next) {
            next = worker->next;
            if (worker->state == WORKER_IDLE && (pool->retiring || now - worker->idle_since_us >= idle_limit_us))
                worker_close(worker, false);
        }
        if (pool->retiring && pool->live == 0 && pool->waiting == 0) {
            *link = pool->next;
            pool_free(pool);
            continue;
        }
        link = &pool->next;
    }
    reap_poll(pools);
}

struct hooks_pools *hooks_pools_create(struct ev_loop *loop)
{
    struct hooks_pools *pools = calloc(1, sizeof *pools);
    VERGE_ASSERT(pools != NULL);
    pools->loop = loop;
    ev_timer_init(&pools->housekeeping, on_housekeeping, HOUSEKEEPING_INTERVAL_S, HOUSEKEEPING_INTERVAL_S);
    pools->housekeeping.data = pools;
    ev_timer_start(loop, &pools->housekeeping);
    ev_unref(loop); /* housekeeping alone does not keep the loop running */
    ev_prepare_init(&pools->flusher, on_flush);
    pools->flusher.data = pools;
    ev_prepare_start(loop, &pools->flusher);
    ev_unref(loop);
    return pools;
}

void hooks_pools_retire(struct hooks_pools *pools, const struct config *current)
{
    pools->current = current;
    for (struct function_pool *pool = pools->pools; pool != NULL; pool = pool->next) {
        if (pool->config == current || pool->retiring)
            continue;
        pool->retiring = true;
        for (struct worker_process *worker = pool->workers, *next; worker != NULL; worker = next) {
            next = worker->next;
            if (worker->state == WORKER_IDLE)
                worker_close(worker, false);
        }
    }
}

void hooks_pools_destroy(struct hooks_pools *pools)
{
    if (pools == NULL)
        return;
    ev_ref(pools->loop);
    ev_timer_stop(pools->loop, &pools->housekeeping);
    ev_ref(pools->loop);
    ev_prepare_stop(pools->loop, &pools->flusher);
    while (pools->pools != NULL) {
        struct function_pool *pool = pools->pools;
        pools->pools = pool->next;
        while (pool->waiting_head != NULL) {
            pool->waiting_head->active = false;
            waiting_abandon(pool, pool->waiting_head);
        }
        while (pool->workers != NULL) {
            struct worker_process *worker = pool->workers;
            for (; worker->queue_count > 0; worker->queue_count--) {
                struct sent_event *event = first_event(worker);
                if (event->call != NULL) {
                    event->call->active = false;
                    event->call->worker = NULL;
                }
                atomic_fetch_sub_explicit(&pool->metrics[event->trigger]->concurrent, 1, memory_order_relaxed);
                atomic_fetch_sub_explicit(&in_flight, 1, memory_order_relaxed);
                worker->queue_head = (worker->queue_head + 1) % PIPELINE_DEPTH;
            }
            worker_close(worker, true);
        }
        pool_free(pool);
    }
    /* Every worker got SIGKILL or EOF: wait for them briefly so none is left behind. */
    for (int attempt = 0; attempt < 200 && pools->reap_count > 0; attempt++) {
        reap_poll(pools);
        if (pools->reap_count > 0)
            usleep(5000);
    }
    for (size_t i = 0; i < pools->reap_count; i++)
        kill(pools->reap_list[i].pid, SIGKILL);
    free(pools->reap_list);
    log_flush(pools);
    bytebuf_free(&pools->log.lines);
    bytebuf_free(&pools->spare_input);
    free(pools);
}

/* ---- invoking ---------------------------------------------------------------- */

static void on_wait_expired(struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void)loop, (void)revents;
    struct hooks_call *call = (struct hooks_call *)((char *)timer - offsetof(struct hooks_call, wait_timer));
    struct function_pool *pool = call->pool;
    waiting_abandon(pool, call);
    atomic_fetch_add_explicit(&pool->metrics[call->trigger]->throttles, 1, memory_order_relaxed);
    log_warn("function %s: request %s waited %d ms for a worker; throttled", pool->function->name, call->request_id,
             call->timeout_ms);
    struct hooks_outcome outcome = {.kind = HOOKS_THROTTLED, .error = "no worker became free within the function's timeout"};
    deliver(call, &outcome);
}

/* Appends the INVOKE frame to `out`: header, invocation fields, and the
 * event encoded in place; the header's length is filled in last. Returns
 * the frame's size. */
static uint32_t append_invoke_frame(const struct function_pool *pool, const struct hooks_invocation *invocation,
                                    struct bytebuf *out)
{
    size_t start = out->len;
    uint32_t header[2] = {WORKER_MESSAGE_INVOKE, 0};
    bytebuf_append(out, header, sizeof header);
    struct worker_invocation message = {
        .remaining_ms = (uint32_t)invocation->timeout_ms,
        .request_id = invocation->request_id,
        .function_name = pool->name,
        .function_version = pool->version_slice,
        .event_json = {NULL, 0}, /* the event follows */
    };
    worker_invocation_encode(&message, out);
    event_encode_compact(invocation->event, out, &message.layout);
    worker_invocation_set_layout(out->data + start + sizeof header, &message.layout);
    header[1] = (uint32_t)(out->len - start - sizeof header);
    memcpy(out->data + start, header, sizeof header);
    return (uint32_t)(out->len - start);
}

bool hooks_invoke(struct hooks_pools *pools, const struct hooks_invocation *invocation, struct hooks_call *call,
                  hooks_done_callback done, void *context)
{
    struct config *config = invocation->config;
    struct function_pool *pool = pool_for(pools, config, invocation->function_index, invocation->memory_mb);
    struct function_metrics *counters = pool->metrics[invocation->trigger];
    long limit = config->workers.max_concurrency;
    if (atomic_fetch_add_explicit(&in_flight, 1, memory_order_relaxed) >= limit) {
        atomic_fetch_sub_explicit(&in_flight, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&counters->throttles, 1, memory_order_relaxed);
        return false;
    }
    atomic_fetch_add_explicit(&counters->concurrent, 1, memory_order_relaxed);
    memset(call, 0, sizeof *call);
    call->pool = pool;
    call->done = done;
    call->context = context;
    call->trigger = invocation->trigger;
    call->timeout_ms = invocation->timeout_ms;
    call->log_capture = invocation->log_capture;
    call->active = true;
    ev_timer_init(&call->wait_timer, on_wait_expired, invocation->timeout_ms / 1000.0, 0);
    /* (a C string for the log lines, cut like snprintf would) */
    size_t id_len = invocation->request_id.len < sizeof call->request_id ? invocation->request_id.len : sizeof call->request_id - 1;
    if (id_len > 0)
        memcpy(call->request_id, invocation->request_id.ptr, id_len);
    call->request_id[id_len] = '\0';

    /* The frame is built once, where it is sent from: the worker's pending
     * frames, or the call's own buffer while it waits for a worker. */
    struct worker_process *worker = pool->waiting == 0 ? worker_with_room(pool) : NULL;
    if (worker != NULL) {
        queue_event(worker, call, append_invoke_frame(pool, invocation, &worker->pending));
        return true;
    }
    append_invoke_frame(pool, invocation, &call->frame);
    waiting_add(pool, call, false);
    dispatch(pool);
    return true;
}

bool hooks_outcome_read_result(const struct hooks_outcome *outcome, const struct event_input *input, struct arena *arena,
                               struct event_result *result, struct event_error *error)
{
    if (outcome->kind == HOOKS_UNSERIALIZABLE) {
        *result = (struct event_result){0};
        event_error_set(error, input->trigger, outcome->error, "$");
        return false;
    }
    VERGE_ASSERT(outcome->kind == HOOKS_OK);
    return event_parse_result_compact(input->trigger, outcome->result_json.ptr, outcome->result_json.len, outcome->header_changes,
                                      arena, result, error) &&
           event_validate_result(input, result, error);
}

void hooks_log_validation_error(slice_t function_name, slice_t request_id, const char *field, const char *rule)
{
    if (!function_log_enabled())
        return;
    char text[512];
    int n = snprintf(text, sizeof text, SLICE_FMT "\tERROR\tValidation error: %s: %s", SLICE_ARG(request_id), field, rule);
    if (n > 0)
        function_log_write(function_name, (slice_t){text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1});
}

struct function_metrics *hooks_call_metrics(const struct hooks_call *call)
{
    return call->pool->metrics[call->trigger];
}

void hooks_call_cancel(struct hooks_call *call)
{
    if (!call->active)
        return;
    call->active = false;
    if (call->finished)
        return; /* answered and counted already: its pending callback is dropped */
    struct function_pool *pool = call->pool;
    if (call->worker != NULL) {
        /* Sent: its answer is dropped when it comes. */
        struct worker_process *worker = call->worker;
        for (unsigned i = 0; i < worker->queue_count; i++) {
            struct sent_event *event = &worker->queue[(worker->queue_head + i) % PIPELINE_DEPTH];
            if (event->call == call)
                event->call = NULL;
        }
        call->worker = NULL;
        return;
    }
    waiting_abandon(pool, call);
}
