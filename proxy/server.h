/* server.h — the serving side of verge: event-loop threads, viewer
 * connections, the request state machine and the origin client.
 *
 * Ownership in one picture:
 *   loop_thread ──owns──► viewer_connection (list) ──embeds──► request (one at a time)
 *        │                                                     │ holds a ref on its generation
 *        └──owns──► origin_pool (per origin address) ◄──lease── origin_connection (while fetching)
 * Everything a thread owns is touched only by that thread. What threads share:
 * the current generation (refcounted, swapped under server.generation_lock),
 * metrics (atomics), the access log (its own lock).
 */
#ifndef VERGE_SERVER_H
#define VERGE_SERVER_H

#include <ev.h>
#include <pthread.h>

#include "../conf/config.h"
#include "base.h"
#include "http1.h"
#include "metrics.h"

/* ---- generations --------------------------------------------------------- */

/* The server's view of one config generation: the immutable config plus the
 * per-origin runtime pieces resolved once when it was loaded. */
struct generation {
    struct config *config;
    struct origin_metrics **origin_metrics; /* [config->origin_count] */
    atomic_int refcount;
    unsigned number;
};

void generation_ref(struct generation *generation);
void generation_unref(struct generation *generation);

/* ---- threads ------------------------------------------------------------- */

struct viewer_connection;
struct origin_pool;
struct cache_wakeup;
struct background_refresh;

struct loop_thread {
    unsigned index;
    pthread_t thread;
    struct ev_loop *loop;
    ev_async wakeup; /* "look at server.draining / the generation" */
    struct listener {
        int fd;
        ev_io watcher; /* data: the listener */
        struct loop_thread *thread;
        char address[80];       /* listen[].address as written when it was opened */
        struct tls_server *tls; /* a ref on the server it started with; NULL: plain HTTP */
        bool h2c;               /* HTTP/2 with prior knowledge (plain listeners) */
    } * listeners;
    size_t listener_count;
    struct viewer_connection *connections; /* intrusive doubly-linked list */
    size_t connection_count;
    struct origin_pool *origin_pools; /* singly-linked, few entries */
    struct generation *generation;    /* this thread's cached ref on the current generation */
    uint64_t request_counter;
    uint64_t random_state[2];           /* for request ids */
    struct bytebuf scratch;             /* cache keys, origin request heads, response heads: built here one at a time */
    pthread_mutex_t cache_wakeup_lock;  /* guards cache_wakeups: other threads append */
    struct cache_wakeup *cache_wakeups; /* cache objects that changed for this thread's requests */
    ev_async cache_async;
    struct background_refresh *background_fills; /* fills no viewer waits for (request_cache.c) */
    struct hooks_pools *hooks;                   /* edge-function workers of this thread (hooks/pool.c) */
    struct dynamic_origin *dynamic_origins;      /* origins edge functions chose (request_hooks.c) */
};

struct server {
    const char *config_path;
    pthread_mutex_t generation_lock;
    struct generation *generation; /* current; guarded by generation_lock */
    atomic_uint generation_number; /* read without the lock to notice a change */
    atomic_bool draining;
    struct loop_thread *threads;
    size_t thread_count;
};

extern struct server server;

/* Returns a new ref on the current generation (takes the lock briefly). */
struct generation *server_acquire_generation(void);
/* Refreshes thread->generation when a reload happened; cheap when not. */
void loop_thread_refresh_generation(struct loop_thread *thread);

/* ---- viewer connections (proxy/viewer.c) --------------------------------- */

/* Accept callback for a listener; creates a viewer_connection. */
void viewer_accept(struct ev_loop *loop, ev_io *watcher, int revents);
/* Drain: closes idle connections now and makes busy ones close after their
 * current response. */
void viewer_drain_thread(struct loop_thread *thread);
/* A new generation: HTTP/2 connections get a graceful GOAWAY (their streams
 * finish; clients reconnect to the new settings and certificates). */
void viewer_reload_thread(struct loop_thread *thread);
/* Closes every connection of the thread at once (the drain deadline passed). */
void viewer_close_all(struct loop_thread *thread);

/* ---- origin client (proxy/origin_client.c) ------------------------------- */

struct origin_fetch;

struct origin_fetch_callbacks {
    /* The connection is up and the request head is written (or queued): the
     * request body, if any, may be sent now. */
    void (*on_ready_for_body)(void *context);
    /* A final (>= 200) response head arrived. Slices in `head` point into
     * `raw_head` (the head's bytes in the fetch's buffer), valid only during
     * the call. */
    void (*on_head)(void *context, const struct http1_response *head, slice_t raw_head);
    /* Decoded body bytes (chunked framing removed). */
    void (*on_body)(void *context, const char *data, size_t len);
    /* Called after each read from the origin that delivered a head or body
     * bytes, while the fetch goes on: a good moment to write out what the
     * callbacks queued (one send per batch, not one per callback). */
    void (*on_flush)(void *context);
    /* The body is complete. The fetch is finished and released; do not use it. */
    void (*on_end)(void *context);
    /* The fetch failed; `head_received` says whether on_head already ran. The
     * fetch is released; do not use it. */
    void (*on_error)(void *context, enum origin_error_kind kind, const char *reason, bool head_received);
};

struct origin_fetch_params {
    const struct config_origin *origin;
    struct origin_metrics *metrics;
    slice_t method;
    const struct bytebuf *request_head; /* the whole serialized head, copied by the fetch */
    bool has_body;                      /* the caller will call origin_fetch_send_body / _end_body */
    bool retryable;                     /* idempotent and bodiless: may be retried once on a fresh connection */
};

/* Starts a fetch on a pooled or new connection of `thread`. Never calls a
 * callback before returning (errors are reported from the loop). */
struct origin_fetch *origin_fetch_start(struct loop_thread *thread, const struct origin_fetch_params *params,
                                        const struct origin_fetch_callbacks *callbacks, void *context);
/* Queues request body bytes, already framed for the origin. */
void origin_fetch_send_body(struct origin_fetch *fetch, const char *data, size_t len);
/* Marks the request body complete. */
void origin_fetch_end_body(struct origin_fetch *fetch);
/* Bytes queued for the origin and not yet written (for backpressure). */
size_t origin_fetch_pending_output(const struct origin_fetch *fetch);
/* Stops or resumes reading the response (backpressure from the viewer). */
void origin_fetch_pause_reading(struct origin_fetch *fetch, bool paused);
/* Abandons the fetch (the viewer went away); its connection is closed. No
 * callback runs afterwards. */
void origin_fetch_abort(struct origin_fetch *fetch);
/* Sends the rest of the fetch's callbacks to another receiver (a fill that
 * goes on after its viewer left); takes effect for the next callback. */
void origin_fetch_rebind(struct origin_fetch *fetch, const struct origin_fetch_callbacks *callbacks, void *context);
/* Registered by the viewer side to learn when queued body bytes drained. */
void origin_fetch_set_drain_callback(struct origin_fetch *fetch, void (*on_output_drained)(void *context));
/* Closes every pooled idle connection of the thread (drain, exit). */
void origin_pools_close_idle(struct loop_thread *thread);
void origin_pools_destroy(struct loop_thread *thread);

/* ---- the cache in the request path (proxy/request.c) ---------------------- */

/* Sets up the thread's queue of cache wakeups (before the loop runs). */
void request_cache_thread_init(struct loop_thread *thread);
/* Ends the fills still running on the thread (at exit). */
void request_cache_thread_destroy(struct loop_thread *thread);

/* Buffer thresholds shared by both directions of the body pump. */
#define PUMP_HIGH_WATERMARK (256 * 1024)
#define PUMP_LOW_WATERMARK (64 * 1024)
#define PUMP_READ_SIZE (64 * 1024)

#endif
