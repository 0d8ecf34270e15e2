/* request_cache.c — the cache's side of the request path: the cache key of a
 * request, wakeups from cache objects delivered to the request's own thread,
 * the head of an object to store, and background refreshes
 * (stale-while-revalidate) that no viewer waits for.
 *
 * The decisions (what is storable, TTLs, freshness) are cache/policy.c's; the
 * objects are cache/store.c's; the state machine that uses all of this is
 * request.c's. This file is the plumbing between them.
 *
 * Wakeups: the store calls cache_wakeup_notify from the thread that changed
 * an object, holding that object's lock. It only queues the wakeup on the
 * request's thread (under thread->cache_wakeup_lock) and pokes that thread's
 * ev_async; the thread then calls request_on_cache_event. A request cancels
 * its wakeup (unwait + dequeue) before it ends, so a queued wakeup never
 * outlives its request. Lock order: object lock → cache_wakeup_lock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "request.h"

/* ---- wakeups ------------------------------------------------------------- */

static void cache_wakeup_notify(struct cache_waiter *waiter)
{
    struct cache_wakeup *wakeup = waiter->context;
    struct loop_thread *thread = wakeup->thread;
    pthread_mutex_lock(&thread->cache_wakeup_lock);
    bool was_queued = wakeup->queued;
    if (!was_queued) {
        wakeup->queued = true;
        wakeup->queue_prev = NULL;
        wakeup->queue_next = thread->cache_wakeups;
        if (thread->cache_wakeups != NULL)
            thread->cache_wakeups->queue_prev = wakeup;
        thread->cache_wakeups = wakeup;
    }
    pthread_mutex_unlock(&thread->cache_wakeup_lock);
    if (!was_queued)
        ev_async_send(thread->loop, &thread->cache_async);
}

static void dequeue_locked(struct loop_thread *thread, struct cache_wakeup *wakeup)
{
    if (!wakeup->queued)
        return;
    if (wakeup->queue_prev != NULL)
        wakeup->queue_prev->queue_next = wakeup->queue_next;
    else
        thread->cache_wakeups = wakeup->queue_next;
    if (wakeup->queue_next != NULL)
        wakeup->queue_next->queue_prev = wakeup->queue_prev;
    wakeup->queue_next = wakeup->queue_prev = NULL;
    wakeup->queued = false;
}

static void on_cache_async(struct ev_loop *loop, ev_async *watcher, int revents)
{
    struct loop_thread *thread = watcher->data;
    for (;;) {
        pthread_mutex_lock(&thread->cache_wakeup_lock);
        struct cache_wakeup *wakeup = thread->cache_wakeups;
        if (wakeup != NULL)
            dequeue_locked(thread, wakeup);
        pthread_mutex_unlock(&thread->cache_wakeup_lock);
        if (wakeup == NULL)
            return;
        /* The request is alive: it dequeues itself before it ends, and only
         * this thread ends it. */
        request_on_cache_event(wakeup->request);
    }
}

void request_cache_thread_init(struct loop_thread *thread)
{
    pthread_mutex_init(&thread->cache_wakeup_lock, NULL);
    thread->cache_wakeups = NULL;
    ev_async_init(&thread->cache_async, on_cache_async);
    thread->cache_async.data = thread;
    ev_async_start(thread->loop, &thread->cache_async);
}

void cache_wakeup_wait(struct request *request, struct cache_object *object)
{
    struct cache_wakeup *wakeup = &request->wakeup;
    if (wakeup->object == object)
        return;
    cache_wakeup_cancel(request);
    wakeup->thread = request->viewer->thread;
    wakeup->request = request;
    wakeup->waiter.notify = cache_wakeup_notify;
    wakeup->waiter.context = wakeup;
    wakeup->object = object;
    cache_object_ref(object);
    cache_object_wait(object, &wakeup->waiter);
}

void cache_wakeup_cancel(struct request *request)
{
    struct cache_wakeup *wakeup = &request->wakeup;
    if (wakeup->object == NULL)
        return;
    cache_object_unwait(wakeup->object, &wakeup->waiter);
    struct loop_thread *thread = wakeup->thread;
    pthread_mutex_lock(&thread->cache_wakeup_lock);
    dequeue_locked(thread, wakeup);
    pthread_mutex_unlock(&thread->cache_wakeup_lock);
    cache_object_unref(wakeup->object);
    wakeup->object = NULL;
}

/* ---- key and object heads ------------------------------------------------ */

static void request_signature_of(slice_t names, void *context, struct bytebuf *out)
{
    const struct request *request = context;
    cache_vary_signature(names, request->headers, request->header_count, out);
}

enum cache_lookup_outcome request_cache_lookup(struct request *request, struct cache_object **object)
{
    if (request->cache_key.len == 0) {
        struct bytebuf *key = &request->viewer->thread->scratch; /* no malloc per request */
        key->len = 0;
        cache_build_key(request->cache_settings, request->method, request->authority, request->path, request->query,
                        request->headers, request->header_count, key);
        request->cache_key = arena_slice_copy(&request->arena, slice_make(key->data, key->len));
        cache_key_hash(request->cache_key, request->cache_hash);
    }
    return cache_lookup(request->cache_hash, request->cache_key, request_signature_of, request, (int64_t)time(NULL), object);
}

bool cache_object_head_build(struct arena *arena, const struct object_head_source *source, int64_t now,
                             struct cache_object_head *head, const char **reason)
{
    const struct http_header *headers = source->headers;
    size_t count = source->header_count;
    int status = source->status;
    int64_t content_length = source->content_length;
    const struct cache_object_view *stale = source->revalidated;
    if (stale != NULL) {
        /* A 304: the stored headers updated by it (RFC 9111 §3.2), the stored body. */
        struct http_header *merged = arena_alloc(arena, sizeof *merged * (stale->header_count + count + 1));
        count = cache_merge_not_modified(stale->headers, stale->header_count, headers, count, merged);
        headers = merged;
        status = stale->status;
        content_length = (int64_t)stale->body_available;
    }
    struct cache_store_decision decision;
    cache_decide_store(source->settings, source->method, source->has_authorization, status, headers, count, now, &decision);
    *reason = decision.reason;
    if (!decision.store)
        return false;
    struct bytebuf names = {0};
    if (!cache_vary_names(headers, count, &names)) {
        bytebuf_free(&names);
        *reason = "Vary: *";
        return false;
    }
    slice_t signature;
    if (source->request_headers != NULL) {
        struct bytebuf computed = {0};
        cache_vary_signature(slice_make(names.data, names.len), source->request_headers, source->request_header_count, &computed);
        signature = arena_slice_copy(arena, slice_make(computed.data, computed.len));
        bytebuf_free(&computed);
    } else {
        signature = source->variant->vary_signature; /* no viewer request: the variant being refreshed */
    }
    *head = (struct cache_object_head){
        .status = status,
        .headers = headers,
        .header_count = count,
        .vary_names = arena_slice_copy(arena, slice_make(names.data, names.len)),
        .vary_signature = signature,
        .path = source->path,
        .request_time = source->request_time,
        .response_time = now,
        .initial_age = cache_initial_age(headers, count, source->request_time, now),
        .ttl = decision.ttl,
        .stale_while_revalidate = decision.stale_while_revalidate,
        .stale_if_error = decision.stale_if_error,
        .content_length = content_length,
    };
    bytebuf_free(&names);
    return true;
}

/* ---- background refresh (stale-while-revalidate) ------------------------- */

/* A fill no viewer waits for — a stale-while-revalidate refresh, or a fill
 * whose viewer left before it ended: it holds the generation (for the origin and
 * the behavior's settings), the BUSY object it fills and the stale object it
 * revalidates. It lives until its fetch ends. */
struct background_refresh {
    struct arena arena;
    struct generation *generation;
    const struct cache_settings *settings;
    struct cache_object *fill;
    struct cache_object *stale;
    struct origin_fetch *fetch;
    bool storing;       /* a 200 is being stored into `fill` */
    bool fill_finished; /* `fill` was finished early (too big to keep) */
    int64_t request_time;
    slice_t path;
    struct loop_thread *thread;
    struct background_refresh *next, *prev; /* thread->background_fills */
};

static void background_link(struct background_refresh *refresh, struct loop_thread *thread)
{
    refresh->thread = thread;
    refresh->prev = NULL;
    refresh->next = thread->background_fills;
    if (thread->background_fills != NULL)
        thread->background_fills->prev = refresh;
    thread->background_fills = refresh;
}

static void background_refresh_end(struct background_refresh *refresh, bool fill_complete)
{
    if (refresh->prev != NULL)
        refresh->prev->next = refresh->next;
    else
        refresh->thread->background_fills = refresh->next;
    if (refresh->next != NULL)
        refresh->next->prev = refresh->prev;
    if (refresh->storing)
        cache_object_finish(refresh->fill, fill_complete);
    else if (!refresh->fill_finished)
        cache_object_abandon(refresh->fill, 0, (int64_t)time(NULL));
    cache_object_unref(refresh->fill);
    if (refresh->stale != NULL)
        cache_object_unref(refresh->stale);
    generation_unref(refresh->generation);
    arena_destroy(&refresh->arena);
    free(refresh);
}

static void background_on_ready_for_body(void *context) {}

static void background_on_head(void *context, const struct http1_response *response, slice_t raw_head)
{
    struct background_refresh *refresh = context;
    int64_t now = (int64_t)time(NULL);
    struct http_header *kept = arena_alloc(&refresh->arena, sizeof *kept * (response->header_count + 1));
    size_t count = 0;
    for (size_t i = 0; i < response->header_count; i++) {
        if (http_token_flags(response->headers[i].token) & HTTP_TOKEN_FLAG_HOP_BY_HOP)
            continue;
        kept[count].token = response->headers[i].token;
        kept[count].name = arena_slice_copy(&refresh->arena, response->headers[i].name);
        kept[count].value = arena_slice_copy(&refresh->arena, response->headers[i].value);
        count++;
    }
    if (response->status != 304 && response->status != 200)
        return; /* the fill is abandoned at the end; the stale object stays until purged or evicted */
    struct cache_object_view stale;
    cache_object_view(refresh->stale, &stale);
    struct object_head_source source = {
        .settings = refresh->settings,
        .method = SLICE_LITERAL("GET"),
        .status = response->status,
        .headers = kept,
        .header_count = count,
        .content_length = response->body_kind == HTTP1_BODY_LENGTH ? (int64_t)response->content_length : -1,
        .revalidated = response->status == 304 ? &stale : NULL,
        .variant = &stale, /* no viewer request to take a Vary signature from */
        .path = refresh->path,
        .request_time = refresh->request_time,
    };
    struct cache_object_head head;
    const char *reason;
    if (!cache_object_head_build(&refresh->arena, &source, now, &head, &reason))
        return;
    if (response->status == 304) {
        cache_object_unref(cache_object_refresh(refresh->stale, &head));
    } else {
        cache_object_set_head(refresh->fill, &head);
        refresh->storing = true;
    }
}

static void background_on_body(void *context, const char *data, size_t len)
{
    struct background_refresh *refresh = context;
    if (refresh->storing && !cache_object_append(refresh->fill, data, len)) {
        cache_object_finish(refresh->fill, false);
        refresh->storing = false;
        refresh->fill_finished = true;
    }
}

static void background_on_end(void *context)
{
    background_refresh_end(context, true);
}

static void background_on_error(void *context, enum origin_error_kind kind, const char *reason, bool head_received)
{
    log_warn("background refresh: %s", reason);
    background_refresh_end(context, false);
}

static const struct origin_fetch_callbacks background_callbacks = {
    .on_ready_for_body = background_on_ready_for_body,
    .on_head = background_on_head,
    .on_body = background_on_body,
    .on_end = background_on_end,
    .on_error = background_on_error,
};

void request_cache_refresh_in_background(struct request *request, struct cache_object *stale, struct cache_object *fill,
                                         const struct bytebuf *conditional_head)
{
    struct background_refresh *refresh = calloc(1, sizeof *refresh);
    VERGE_ASSERT(refresh != NULL);
    arena_init(&refresh->arena);
    refresh->generation = request->generation;
    generation_ref(refresh->generation);
    refresh->settings = request->cache_settings;
    refresh->fill = fill;
    refresh->stale = stale;
    cache_object_ref(stale);
    refresh->request_time = (int64_t)time(NULL);
    refresh->path = arena_slice_copy(&refresh->arena, request->path);
    background_link(refresh, request->viewer->thread);
    struct origin_fetch_params params = {
        .origin = request->origin,
        .metrics = request->generation->origin_metrics[request->origin_index],
        .method = SLICE_LITERAL("GET"),
        .request_head = conditional_head,
        .has_body = false,
        .retryable = true,
    };
    refresh->fetch = origin_fetch_start(request->viewer->thread, &params, &background_callbacks, refresh);
}

void request_cache_continue_fill(struct request *request)
{
    struct background_refresh *fill = calloc(1, sizeof *fill);
    VERGE_ASSERT(fill != NULL);
    arena_init(&fill->arena);
    fill->generation = request->generation;
    generation_ref(fill->generation);
    fill->settings = request->cache_settings;
    fill->fill = request->cache_fill; /* the request's reference passes */
    fill->storing = true;
    fill->fetch = request->fetch;
    background_link(fill, request->viewer->thread);
    request->cache_fill = NULL;
    request->fetch = NULL;
    origin_fetch_rebind(fill->fetch, &background_callbacks, fill);
    origin_fetch_pause_reading(fill->fetch, false); /* no viewer to wait for any more */
}

void request_cache_thread_destroy(struct loop_thread *thread)
{
    /* The loop stopped with fills still running (drain deadline): end them
     * as incomplete, so waiters and memory are released. */
    while (thread->background_fills != NULL) {
        struct background_refresh *refresh = thread->background_fills;
        origin_fetch_abort(refresh->fetch);
        background_refresh_end(refresh, false);
    }
}
