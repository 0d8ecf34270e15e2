/* request.c — the request state machine: the whole life of one request, from
 * a parsed head to the last byte queued for the viewer, as DESIGN.md draws it.
 *
 *   RECV → VIEWER_REQUEST → VIEWER_HEADERS → LOOKUP → ORIGIN_REQUEST → FETCH
 *        ⇢ ORIGIN_RESPONSE → STORE → VIEWER_RESPONSE → DELIVER ⇢ DONE
 *                                                          (⇢ = may suspend)
 *   SYNTH (verge's own error answers) → DELIVER
 *
 * Each step is one small function returning RUN_NEXT (run the step it set),
 * RUN_SUSPEND (a callback will set the next step and call request_run) or
 * RUN_STOP. The four trigger steps hand the behavior's edge function to the
 * worker pool and suspend (proxy/request_hooks.c builds the events and
 * applies the results); the cache steps are LOOKUP and STORE. VIEWER_HEADERS
 * adds CloudFront's viewer headers the behavior asks for (proxy/viewer_meta.c
 * decides their values), so the cache key, origin functions and the origin
 * see them and viewer-request functions do not.
 *
 * Invariants:
 *  - A request holds one ref on the generation it started with, so a reload
 *    never changes a request in flight.
 *  - Everything the request points to lives in its arena or is released by
 *    request_finish, which runs exactly once per request (magic cleared).
 *  - The response head is written to the viewer exactly once (DELIVER); an
 *    origin failure after that can only cut the response short.
 * Locking: none; a request belongs to its connection's loop thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "access_log.h"
#include "h2.h"
#include "http_conditional.h"
#include "request.h"
#include "static_origin.h"
#include "tls.h"

enum step_result { RUN_NEXT, RUN_SUSPEND, RUN_STOP };

static const char *const step_names[] = {
#define REQUEST_STEP_NAME(name) #name,
    REQUEST_STEPS(REQUEST_STEP_NAME)
#undef REQUEST_STEP_NAME
};

static void request_run(struct request *request);
static void pump_cache(struct request *request);
static void deliver_origin_body(struct request *request, const char *data, size_t len);

/* ---- small helpers ------------------------------------------------------- */

static uint64_t random_next(struct loop_thread *thread)
{
    /* xorshift128+: request ids need to be unique, not secret. */
    uint64_t s1 = thread->random_state[0];
    const uint64_t s0 = thread->random_state[1];
    thread->random_state[0] = s0;
    s1 ^= s1 << 23;
    thread->random_state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return thread->random_state[1] + s0;
}

static void make_request_id(struct loop_thread *thread, char out[REQUEST_ID_LEN + 1])
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if (thread->random_state[0] == 0 && thread->random_state[1] == 0) {
        if (getrandom(thread->random_state, sizeof thread->random_state, 0) != sizeof thread->random_state)
            thread->random_state[0] = time_now_monotonic_ms() ^ ((uint64_t)thread->index << 32);
        thread->random_state[1] |= 1;
    }
    /* 24 characters of 6 bits: 144 bits from three draws (10 + 10 + 4). */
    uint64_t words[3] = {random_next(thread), random_next(thread), random_next(thread) ^ (++thread->request_counter)};
    for (int i = 0; i < REQUEST_ID_LEN; i++) {
        uint64_t *word = &words[i / 10];
        out[i] = alphabet[*word & 63];
        *word >>= 6;
    }
    out[REQUEST_ID_LEN] = '\0';
}

/* True when a Connection header of `headers` lists `name`: such a header is
 * hop-by-hop for this message (RFC 9110 §7.6.1). */
static bool connection_lists(const struct http_header *headers, size_t count, slice_t name)
{
    for (size_t i = 0; i < count; i++)
        if (headers[i].token == HTTP_TOKEN_CONNECTION && http_list_contains(headers[i].value, name))
            return true;
    return false;
}

static bool is_hop_by_hop(const struct http_header *headers, size_t count, const struct http_header *header)
{
    if (http_token_flags(header->token) & HTTP_TOKEN_FLAG_HOP_BY_HOP)
        return true;
    /* HTTP2-Settings belongs to an h2c Upgrade, which verge never does (RFC 9113 §3.1): never forwarded. */
    return header->token == HTTP_TOKEN_OTHER &&
           (connection_lists(headers, count, header->name) || slice_equal_nocase(header->name, SLICE_LITERAL("HTTP2-Settings")));
}

static void append_header(struct bytebuf *out, slice_t name, slice_t value)
{
    bytebuf_reserve(out, name.len + value.len + 4);
    bytebuf_append_slice(out, name);
    bytebuf_append(out, ": ", 2);
    bytebuf_append_slice(out, value);
    bytebuf_append(out, "\r\n", 2);
}

/* Appends "Name: v1, v2, ..., last" joining every header with `token`, or
 * just "Name: last" when there is none. */
static void append_list_header(struct bytebuf *out, const char *name, const struct http_header *headers, size_t count,
                               enum http_token token, slice_t last)
{
    bytebuf_append(out, name, strlen(name));
    bytebuf_append(out, ": ", 2);
    for (size_t i = 0; i < count; i++)
        if (headers[i].token == token && headers[i].value.len > 0) {
            bytebuf_append_slice(out, headers[i].value);
            bytebuf_append(out, ", ", 2);
        }
    bytebuf_append_slice(out, last);
    bytebuf_append(out, "\r\n", 2);
}

static void response_add_header(struct request *request, const char *name, const char *value)
{
    struct http_header *headers = arena_alloc(&request->arena, sizeof *headers * (request->response_header_count + 1));
    if (request->response_header_count > 0)
        memcpy(headers, request->response_headers, sizeof *headers * request->response_header_count);
    slice_t name_slice = slice_from_cstr(name);
    headers[request->response_header_count] =
        (struct http_header){name_slice, arena_slice_copy(&request->arena, slice_from_cstr(value)), http_token_lookup(name_slice)};
    request->response_headers = headers;
    request->response_header_count++;
}

/* Date and Server, for the answers verge makes: its own errors, static and fixed answers, injected faults. */
static void add_date_and_server(struct request *request)
{
    char date[30];
    time_format_http_date((int64_t)time(NULL), date);
    response_add_header(request, "Date", date);
    response_add_header(request, "Server", "verge");
}

static slice_t find_header(const struct http_header *headers, size_t count, enum http_token token)
{
    for (size_t i = 0; i < count; i++)
        if (headers[i].token == token)
            return headers[i].value;
    return (slice_t){NULL, 0};
}

/* The viewer's TLS connection (an HTTP/2 stream's is its connection's); NULL: plain HTTP. */
static const struct tls_connection *viewer_tls(const struct request *request)
{
    return request->viewer->stream != NULL ? h2_stream_connection_viewer(request->viewer)->tls : request->viewer->tls;
}

/* Copies a parsed head's bytes into the arena and rebases the slices that
 * point into them, so the input buffer can be reused. */
static slice_t rebase(slice_t s, const char *from, size_t len, const char *to)
{
    if (s.ptr >= from && s.ptr <= from + len)
        s.ptr = to + (s.ptr - from);
    return s;
}

static struct http_header *copy_headers(struct arena *arena, const struct http_header *headers, size_t count, const char *from,
                                        size_t len, const char *to)
{
    struct http_header *copy = arena_alloc(arena, sizeof *copy * (count ? count : 1));
    for (size_t i = 0; i < count; i++) {
        copy[i] = headers[i];
        copy[i].name = rebase(headers[i].name, from, len, to);
        copy[i].value = rebase(headers[i].value, from, len, to);
    }
    return copy;
}

/* ---- request lifecycle --------------------------------------------------- */

/* Lets go of the object this request fills, if any: a fill that got its
 * head ends (`complete` false: truncated, its readers are cut short); one
 * that never got a head is abandoned, its waiters look again, and the key is
 * pass-through for `pass_seconds`. */
static void end_fill(struct request *request, bool complete, int64_t pass_seconds)
{
    if (request->cache_fill == NULL)
        return;
    if (request->cache_result == CACHE_RESULT_MISS_STORED)
        cache_object_finish(request->cache_fill, complete);
    else
        cache_object_abandon(request->cache_fill, pass_seconds, (int64_t)time(NULL));
    cache_object_unref(request->cache_fill);
    request->cache_fill = NULL;
}

/* Copies response body bytes into the object this request fills. An object
 * that outgrows max_object_mb stops being filled (its memory is not held for
 * a response that cannot be stored); the viewer is served all the same. */
static void tee_to_fill(struct request *request, const void *data, size_t len)
{
    if (request->cache_fill == NULL || request->cache_result != CACHE_RESULT_MISS_STORED)
        return;
    if (!cache_object_append(request->cache_fill, data, len)) {
        end_fill(request, false, 0);
        request->cache_result = CACHE_RESULT_MISS;
    }
}

void request_end_fill(struct request *request)
{
    end_fill(request, false, 0);
}

static void request_init(struct request *request, struct viewer_connection *viewer)
{
    struct arena arena = request->arena;
    struct bytebuf held_body = request->held_body, collected_body = request->collected_body; /* kept between requests */
    memset(request, 0, sizeof *request);
    request->arena = arena;
    request->held_body = held_body;
    request->held_body.len = 0;
    request->collected_body = collected_body;
    request->collected_body.len = 0;
    request->magic = REQUEST_MAGIC;
    request->viewer = viewer;
    request->generation = viewer->thread->generation;
    generation_ref(request->generation);
    request->file_fd = -1;
    request->origin_status = -1;
    request->origin_ms = -1;
    request->started_wall = time_now_wall();
    request->started_us = time_now_monotonic_us();
    make_request_id(viewer->thread, request->id);
    request_trace_begin(request);
}

void request_start(struct viewer_connection *viewer, const struct http1_request *head)
{
    struct request *request = &viewer->request;
    request_init(request, viewer);
    const char *from = viewer->input;
    size_t len = head->head_bytes;
    char *to = arena_alloc(&request->arena, len);
    memcpy(to, from, len);
    request->method = rebase(head->method, from, len, to);
    request->target = rebase(head->target, from, len, to);
    request->path = rebase(head->path, from, len, to);
    request->query = rebase(head->query, from, len, to);
    request->authority = rebase(head->authority, from, len, to);
    request->version_minor = head->version_minor;
    request->headers = copy_headers(&request->arena, head->headers, head->header_count, from, len, to);
    request->header_count = head->header_count;
    request->body_kind = head->body_kind;
    request->body_remaining = head->content_length;
    if (request->body_kind == HTTP1_BODY_LENGTH && request->body_remaining == 0)
        request->body_kind = HTTP1_BODY_NONE;
    if (request->body_kind == HTTP1_BODY_CHUNKED)
        http1_chunked_decoder_init(&request->body_decoder);
    request->body_done = request->body_kind == HTTP1_BODY_NONE;
    request->expect_continue = head->expect_continue;
    request->is_head = slice_equal(request->method, SLICE_LITERAL("HEAD"));
    if (!head->keep_alive)
        viewer->close_after_response = true;
    viewer_consume_input(viewer, len);
    request->step = STEP_RECV;
    request_run(request);
}

void request_start_error(struct viewer_connection *viewer, int status, const char *reason)
{
    struct request *request = &viewer->request;
    request_init(request, viewer);
    request->method = SLICE_LITERAL("-");
    request->target = SLICE_LITERAL("-");
    request->body_kind = HTTP1_BODY_NONE;
    request->body_done = true;
    request->status = status;
    request->error_reason = reason;
    viewer->close_after_response = true;
    request->step = STEP_SYNTH;
    request_run(request);
}

void request_finish(struct request *request)
{
    if (request->magic != REQUEST_MAGIC)
        return;
    request->magic = 0;
    hooks_call_cancel(&request->hook_call);
    if (request->fault_checked)
        ev_timer_stop(request->viewer->thread->loop, &request->fault_timer);
    /* Small buffers stay for the next request, big ones go. */
    if (request->held_body.cap > 64 * 1024)
        bytebuf_free(&request->held_body);
    request->held_body.len = 0;
    if (request->collected_body.cap > 64 * 1024)
        bytebuf_free(&request->collected_body);
    request->collected_body.len = 0;
    if (request->fetch != NULL && request->cache_fill != NULL && request->cache_result == CACHE_RESULT_MISS_STORED)
        request_cache_continue_fill(request);
    if (request->fetch != NULL) {
        origin_fetch_abort(request->fetch);
        request->fetch = NULL;
    }
    if (request->file_fd >= 0) {
        close(request->file_fd);
        request->file_fd = -1;
    }
    cache_wakeup_cancel(request);
    end_fill(request, false, 0); /* a leader that ends early must not leave readers waiting */
    if (request->cache_object != NULL) {
        cache_object_unref(request->cache_object);
        request->cache_object = NULL;
    }
    if (request->cache_stale != NULL) {
        cache_object_unref(request->cache_stale);
        request->cache_stale = NULL;
    }
    if (request->status > 0)
        metrics_count_request(request->status);
    const struct tls_connection *tls = viewer_tls(request);
    struct access_log_entry entry = {
        .time = request->started_wall,
        .request_id = slice_from_cstr(request->id),
        .client_ip = request->viewer->client_ip,
        .protocol = request->viewer->stream != NULL ? "HTTP/2" : "HTTP/1.1",
        .tls_version = tls != NULL ? tls_connection_version(tls) : NULL,
        .tls_cipher = tls != NULL ? tls_connection_cipher(tls) : NULL,
        .method = request->method,
        .uri = request->target,
        .status = request->status,
        .bytes = request->body_bytes_sent,
        .duration_ms = (double)(time_now_monotonic_us() - request->started_us) / 1000.0,
        .behavior = request->behavior ? request->behavior->path_pattern : NULL,
        .origin = request->origin ? request->origin->name : NULL,
        .origin_status = request->origin_status,
        .origin_ms = request->origin_ms,
    };
    access_log_write(&entry);
    request_trace_end(request);
    generation_unref(request->generation);
    request->generation = NULL;
    arena_reset(&request->arena);
}

/* ---- the steps ----------------------------------------------------------- */

static enum step_result step_recv(struct request *request)
{
    const struct config *config = request->generation->config;
    request->behavior = config_match_behavior(config, request->path);
    VERGE_ASSERT(request->behavior != NULL);
    request->origin_index = request->behavior->origin_index;
    request->origin = &config->origins[request->origin_index];
    request->step = STEP_VIEWER_REQUEST;
    return RUN_NEXT;
}

/* Runs the behavior's function at `kind` (request_hooks.c); `next` is the
 * step when the function lets the request go on. */
static enum step_result run_trigger(struct request *request, enum config_trigger_kind kind, enum request_step next)
{
    enum request_step current = request->step;
    request->step = next;
    switch (request_trigger_start(request, kind)) {
    case TRIGGER_SUSPENDED:
        return RUN_SUSPEND;
    case TRIGGER_WAITING_FOR_BODY:
        /* Include Body: the step runs again once enough of the body is here
         * (request_on_viewer_input). */
        request->step = current;
        request->waiting_for_body = true;
        return RUN_SUSPEND;
    default:
        return RUN_NEXT;
    }
}

static enum step_result step_viewer_request(struct request *request)
{
    return run_trigger(request, CONFIG_TRIGGER_VIEWER_REQUEST, STEP_VIEWER_HEADERS);
}

/* Spec §2.3.3: after viewer-request, before the cache key; verge's values
 * replace the viewer's. In dev mode X-Verge-Debug-Country is taken off here
 * (and overrides the country). */
static enum step_result step_viewer_headers(struct request *request)
{
    const struct config *config = request->generation->config;
    request->step = STEP_LOOKUP;
    if (request->behavior->viewer_headers == 0 && !config->dev.debug_headers)
        return RUN_NEXT;
    struct viewer_meta_input input = {
        .wanted = request->behavior->viewer_headers,
        .countries = &config->viewer_countries,
        .client_address = slice_from_cstr(request->viewer->client_ip),
        .tls = viewer_tls(request) != NULL,
        .debug_headers = config->dev.debug_headers,
    };
    struct viewer_meta_output output;
    if (!viewer_meta_add_headers(&request->arena, &input, request->headers, request->header_count, &output)) {
        request->status = 400;
        request->error_reason = VIEWER_DEBUG_COUNTRY_HEADER " must be a country code of two letters, e.g. FR";
        request->step = STEP_SYNTH;
        return RUN_NEXT;
    }
    request->headers = output.headers;
    request->header_count = output.header_count;
    request->viewer_headers = input.wanted;
    request->viewer_sent_headers = output.viewer_sent;
    request->viewer_sent_header_count = output.viewer_sent_count;
    return RUN_NEXT;
}

static bool method_uses_cache(slice_t method)
{
    return slice_equal(method, SLICE_LITERAL("GET")) || slice_equal(method, SLICE_LITERAL("HEAD"));
}

/* Serves the response from `object` (the request takes over the reference):
 * its status and headers, and its body through pump_cache. Viewer
 * conditionals and ranges are answered here for complete 200 objects. */
static void serve_from_cache(struct request *request, struct cache_object *object, enum cache_result result, int64_t age)
{
    struct cache_object_view view;
    cache_object_view(object, &view);
    cache_object_touch(object);
    request->cache_object = object;
    request->cache_result = result;
    request->cache_age = age;
    request->status = view.status;
    request->reason = (slice_t){NULL, 0};
    request->response_headers = (struct http_header *)view.headers;
    request->response_header_count = view.header_count;
    request->body_source = RESPONSE_BODY_CACHE;
    request->cache_read_offset = 0;
    request->cache_read_end = view.state == CACHE_OBJECT_COMPLETE ? view.body_available
                              : view.content_length >= 0          ? (uint64_t)view.content_length
                                                                  : UINT64_MAX;
    if (view.state == CACHE_OBJECT_COMPLETE && view.status == 200) {
        struct http_conditional_input input = {
            .method = request->method,
            .if_match = find_header(request->headers, request->header_count, HTTP_TOKEN_IF_MATCH),
            .if_unmodified_since = find_header(request->headers, request->header_count, HTTP_TOKEN_IF_UNMODIFIED_SINCE),
            .if_none_match = find_header(request->headers, request->header_count, HTTP_TOKEN_IF_NONE_MATCH),
            .if_modified_since = find_header(request->headers, request->header_count, HTTP_TOKEN_IF_MODIFIED_SINCE),
            .range = find_header(request->headers, request->header_count, HTTP_TOKEN_RANGE),
            .if_range = find_header(request->headers, request->header_count, HTTP_TOKEN_IF_RANGE),
            .etag = find_header(view.headers, view.header_count, HTTP_TOKEN_ETAG),
            .last_modified = -1,
            .size = view.body_available,
        };
        /* The stored Last-Modified matters only to the three date conditions:
         * parsed for them, not on every hit. */
        slice_t last_modified = find_header(view.headers, view.header_count, HTTP_TOKEN_LAST_MODIFIED);
        if (last_modified.len > 0 &&
            (input.if_unmodified_since.len > 0 || input.if_modified_since.len > 0 || input.if_range.len > 0) &&
            !time_parse_http_date(last_modified, &input.last_modified))
            input.last_modified = -1;
        struct http_conditional_result answer;
        http_evaluate_conditionals(&input, &answer);
        request->status = answer.status;
        if (answer.status == 206) {
            request->cache_read_offset = answer.offset;
            request->cache_read_end = answer.offset + answer.length;
        } else if (answer.status != 200) {
            request->cache_read_end = 0; /* 304, 412, 416: no body */
        }
        if (answer.content_range[0] != '\0') {
            /* The stored header array is shared: give this response its own copy. */
            struct http_header *headers = arena_alloc(&request->arena, sizeof *headers * (view.header_count + 1));
            memcpy(headers, view.headers, sizeof *headers * view.header_count);
            request->response_headers = headers;
            response_add_header(request, "Content-Range", answer.content_range);
        }
    }
    switch (result) {
    case CACHE_RESULT_STALE_WHILE_REVALIDATE:
        atomic_fetch_add_explicit(&metrics.cache_stale_while_revalidate, 1, memory_order_relaxed);
        break;
    case CACHE_RESULT_STALE_IF_ERROR:
        atomic_fetch_add_explicit(&metrics.cache_stale_if_error, 1, memory_order_relaxed);
        break;
    case CACHE_RESULT_REFRESH_HIT:
        atomic_fetch_add_explicit(&metrics.cache_refresh_hits, 1, memory_order_relaxed);
        break;
    default:
        atomic_fetch_add_explicit(&metrics.cache_hits, 1, memory_order_relaxed);
        break;
    }
    request->step = STEP_VIEWER_RESPONSE;
}

static void build_origin_request_head(struct request *request, struct bytebuf *out, const struct cache_object_view *revalidate);

static bool has_validators(const struct cache_object_view *view)
{
    return find_header(view->headers, view->header_count, HTTP_TOKEN_ETAG).len > 0 ||
           find_header(view->headers, view->header_count, HTTP_TOKEN_LAST_MODIFIED).len > 0;
}

static enum step_result step_lookup(struct request *request)
{
    const struct cache_settings *settings = &request->behavior->cache;
    if (!settings->enabled || !method_uses_cache(request->method)) {
        request->cache_result = CACHE_RESULT_BYPASS;
        request->step = STEP_ORIGIN_REQUEST;
        return RUN_NEXT;
    }
    request->cache_settings = settings;
    struct cache_object *object = NULL;
    enum cache_lookup_outcome outcome = request_cache_lookup(request, &object);
    int64_t now = (int64_t)time(NULL);
    switch (outcome) {
    case CACHE_LOOKUP_PASS:
        request->cache_result = CACHE_RESULT_BYPASS;
        request->cache_settings = NULL;
        request->step = STEP_ORIGIN_REQUEST;
        return RUN_NEXT;
    case CACHE_LOOKUP_BUSY:
        /* Another request is fetching this key: wait for its head, then look
         * again (request_on_cache_event). */
        if (!request->cache_collapsed) {
            request->cache_collapsed = true;
            atomic_fetch_add_explicit(&metrics.cache_collapsed, 1, memory_order_relaxed);
        }
        cache_wakeup_wait(request, object);
        cache_object_unref(object);
        return RUN_SUSPEND;
    case CACHE_LOOKUP_LEADER:
        if (request->is_head) {
            /* A HEAD answer has no body to store: let a GET fill the key. */
            cache_object_abandon(object, 0, now);
            cache_object_unref(object);
            request->cache_settings = NULL;
        } else {
            request->cache_fill = object;
        }
        request->cache_result = CACHE_RESULT_MISS;
        atomic_fetch_add_explicit(&metrics.cache_misses, 1, memory_order_relaxed);
        request->step = STEP_ORIGIN_REQUEST;
        return RUN_NEXT;
    case CACHE_LOOKUP_HIT:
        break;
    }
    struct cache_object_view view;
    cache_object_view(object, &view);
    int64_t age = cache_current_age(view.initial_age, view.response_time, now);
    enum cache_freshness freshness =
        view.state == CACHE_OBJECT_COMPLETE ? cache_freshness_of(age, view.ttl, view.stale_while_revalidate) : CACHE_FRESH;
    if (freshness == CACHE_FRESH) {
        serve_from_cache(request, object, CACHE_RESULT_HIT, age);
        return RUN_NEXT;
    }
    struct cache_object *busy = NULL;
    struct cache_object *fill = cache_insert_leader(request->cache_hash, request->cache_key, &busy);
    if (freshness == CACHE_STALE_WHILE_REVALIDATE) {
        if (fill != NULL) {
            struct bytebuf head = {0};
            build_origin_request_head(request, &head, &view);
            request_cache_refresh_in_background(request, object, fill, &head);
            bytebuf_free(&head);
        } else if (busy != NULL) {
            cache_object_unref(busy); /* a refresh is already running */
        }
        serve_from_cache(request, object, CACHE_RESULT_STALE_WHILE_REVALIDATE, age);
        return RUN_NEXT;
    }
    if (fill == NULL && busy == NULL) {
        /* Not expected from the store; stay correct: go to the origin, store nothing. */
        cache_object_unref(object);
        request->cache_settings = NULL;
        request->cache_result = CACHE_RESULT_BYPASS;
        request->step = STEP_ORIGIN_REQUEST;
        return RUN_NEXT;
    }
    if (fill == NULL) {
        /* Someone else refreshes this key: wait for it like a collapsed miss. */
        cache_object_unref(object);
        if (!request->cache_collapsed) {
            request->cache_collapsed = true;
            atomic_fetch_add_explicit(&metrics.cache_collapsed, 1, memory_order_relaxed);
        }
        cache_wakeup_wait(request, busy);
        cache_object_unref(busy);
        return RUN_SUSPEND;
    }
    request->cache_fill = fill;
    request->cache_stale = object;
    request->cache_stale_age = age;
    request->cache_revalidating = has_validators(&view);
    request->cache_result = CACHE_RESULT_MISS;
    atomic_fetch_add_explicit(&metrics.cache_misses, 1, memory_order_relaxed);
    request->step = STEP_ORIGIN_REQUEST;
    return RUN_NEXT;
}

static enum step_result step_origin_request(struct request *request)
{
    return run_trigger(request, CONFIG_TRIGGER_ORIGIN_REQUEST, STEP_FETCH);
}

static void fetch_static(struct request *request)
{
    struct static_request query = {.method = request->method, .path = request->path};
    if (request->cache_fill == NULL) {
        /* A fill asks for the whole file; the viewer's conditionals and range
         * are answered from the stored object, as for url origins. */
        query.if_none_match = find_header(request->headers, request->header_count, HTTP_TOKEN_IF_NONE_MATCH);
        query.if_modified_since = find_header(request->headers, request->header_count, HTTP_TOKEN_IF_MODIFIED_SINCE);
        query.range = find_header(request->headers, request->header_count, HTTP_TOKEN_RANGE);
        query.if_range = find_header(request->headers, request->header_count, HTTP_TOKEN_IF_RANGE);
    }
    struct static_response response;
    uint64_t started = time_now_monotonic_us();
    static_origin_respond(request->origin->static_root, &query, (int64_t)time(NULL), &response);
    request->status = response.status;
    request->origin_status = response.status;
    request->origin_ms = (double)(time_now_monotonic_us() - started) / 1000.0;
    add_date_and_server(request);
    if (response.status >= 400) {
        request->body_source = RESPONSE_BODY_MEMORY;
        request->memory_body = slice_from_cstr(arena_printf(&request->arena, "verge: %s\n", response.reason));
        response_add_header(request, "Content-Type", "text/plain; charset=utf-8");
        if (response.allow_header)
            response_add_header(request, "Allow", "GET, HEAD");
        if (response.content_range[0] != '\0')
            response_add_header(request, "Content-Range", response.content_range);
        return;
    }
    response_add_header(request, "Content-Type", response.content_type);
    response_add_header(request, "Last-Modified", response.last_modified);
    response_add_header(request, "ETag", response.etag);
    response_add_header(request, "Accept-Ranges", "bytes");
    if (response.content_range[0] != '\0')
        response_add_header(request, "Content-Range", response.content_range);
    if (response.status == 304)
        return;
    if (response.body_fd >= 0) {
        request->body_source = RESPONSE_BODY_FILE;
        request->file_fd = response.body_fd;
        request->file_offset = response.body_offset;
        request->file_remaining = response.body_length;
    } else {
        /* HEAD: the length GET would send. */
        response_add_header(request, "Content-Length",
                            arena_printf(&request->arena, "%llu", (unsigned long long)response.body_length));
    }
}

static void on_origin_ready_for_body(void *context);
static void on_origin_head(void *context, const struct http1_response *head, slice_t raw_head);
static void on_origin_body(void *context, const char *data, size_t len);
static void on_origin_end(void *context);
static void on_origin_error(void *context, enum origin_error_kind kind, const char *reason, bool head_received);
static void on_origin_output_drained(void *context);

static void on_origin_flush(void *context)
{
    struct request *request = context;
    /* A head whose body has a known length and has not started yet waits for
     * its first bytes: origins often send the head and the body in separate
     * packets, and one send (one packet) to the viewer is cheaper for both
     * ends. Chunked and close-delimited responses may be streams: flush now. */
    if (request->framing == FRAMING_LENGTH && request->body_bytes_sent == 0 && request->response_content_length > 0)
        return;
    viewer_uncork(request->viewer);
}

static const struct origin_fetch_callbacks origin_callbacks = {
    .on_ready_for_body = on_origin_ready_for_body,
    .on_head = on_origin_head,
    .on_body = on_origin_body,
    .on_flush = on_origin_flush,
    .on_end = on_origin_end,
    .on_error = on_origin_error,
};

static bool method_is_idempotent(slice_t method)
{
    static const slice_t idempotent[] = {SLICE_LITERAL("GET"),   SLICE_LITERAL("HEAD"), SLICE_LITERAL("OPTIONS"),
                                         SLICE_LITERAL("TRACE"), SLICE_LITERAL("PUT"),  SLICE_LITERAL("DELETE")};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(idempotent); i++)
        if (slice_equal(method, idempotent[i]))
            return true;
    return false;
}

/* The request as the origin sees it: origin Host, hop-by-hop headers gone,
 * Via / X-Forwarded-For / X-Amz-Cf-Id added, body framing of our own. */
static void build_origin_request_head(struct request *request, struct bytebuf *out, const struct cache_object_view *revalidate)
{
    /* A fetch that fills the cache asks for the whole object, unconditionally
     * unless it revalidates a stale copy with that copy's validators; the
     * viewer's own conditionals and ranges are answered from the object. */
    bool for_cache = request->cache_fill != NULL || revalidate != NULL;
    const struct config_origin *origin = request->origin;
    bytebuf_append_slice(out, request->method);
    bytebuf_append(out, " ", 1);
    bytebuf_append(out, origin->path_prefix, strlen(origin->path_prefix));
    bytebuf_append_slice(out, request->path);
    if (request->query.len > 0) {
        bytebuf_append(out, "?", 1);
        bytebuf_append_slice(out, request->query);
    }
    bytebuf_append(out, " HTTP/1.1\r\nHost: ", 17);
    if (request->origin_host.len > 0) /* set by an origin-request function */
        bytebuf_append_slice(out, request->origin_host);
    else
        bytebuf_append(out, origin->host_header, strlen(origin->host_header));
    bytebuf_append(out, "\r\n", 2);
    for (size_t i = 0; i < request->header_count; i++) {
        const struct http_header *header = &request->headers[i];
        switch (header->token) {
        case HTTP_TOKEN_HOST:
        case HTTP_TOKEN_EXPECT:
        case HTTP_TOKEN_CONTENT_LENGTH:
        case HTTP_TOKEN_VIA:
        case HTTP_TOKEN_X_FORWARDED_FOR:
        case HTTP_TOKEN_X_AMZ_CF_ID:
            continue;
        case HTTP_TOKEN_IF_NONE_MATCH:
        case HTTP_TOKEN_IF_MODIFIED_SINCE:
        case HTTP_TOKEN_RANGE:
        case HTTP_TOKEN_IF_RANGE:
            if (for_cache)
                continue;
            append_header(out, header->name, header->value);
            break;
        default:
            if (is_hop_by_hop(request->headers, request->header_count, header))
                continue;
            append_header(out, header->name, header->value);
        }
    }
    /* Via names the protocol verge received the request in (RFC 9110 §7.6.3). */
    slice_t via = request->viewer->stream != NULL ? SLICE_LITERAL("2 verge") : SLICE_LITERAL("1.1 verge");
    append_list_header(out, "Via", request->headers, request->header_count, HTTP_TOKEN_VIA, via);
    append_list_header(out, "X-Forwarded-For", request->headers, request->header_count, HTTP_TOKEN_X_FORWARDED_FOR,
                       slice_from_cstr(request->viewer->client_ip));
    append_header(out, SLICE_LITERAL("X-Amz-Cf-Id"), slice_from_cstr(request->id));
    if (revalidate != NULL) {
        slice_t etag = find_header(revalidate->headers, revalidate->header_count, HTTP_TOKEN_ETAG);
        slice_t last_modified = find_header(revalidate->headers, revalidate->header_count, HTTP_TOKEN_LAST_MODIFIED);
        if (etag.len > 0)
            append_header(out, SLICE_LITERAL("If-None-Match"), etag);
        if (last_modified.len > 0)
            append_header(out, SLICE_LITERAL("If-Modified-Since"), last_modified);
    }
    /* Framing: a body Include Body read whole (or a function's replacement)
     * has a known length; otherwise the viewer's framing goes on. */
    request->upload_chunked = false;
    if (request->upload_only)
        bytebuf_appendf(out, "Content-Length: %zu\r\n", request->upload.len);
    else if (request->body_kind == HTTP1_BODY_LENGTH || (request->body_kind == HTTP1_BODY_CHUNKED && request->body_done))
        bytebuf_appendf(out, "Content-Length: %llu\r\n",
                        (unsigned long long)(request->collected_body.len + request->body_remaining));
    else if (request->body_kind == HTTP1_BODY_CHUNKED) {
        bytebuf_append(out, "Transfer-Encoding: chunked\r\n", 28);
        request->upload_chunked = true;
    }
    bytebuf_append(out, "\r\n", 2);
}

/* A fixed-answer origin ("respond"): its status, fields and body, like an
 * origin's answer (cached by its Cache-Control, seen by origin-response). */
static void fetch_respond(struct request *request)
{
    const struct config_origin *origin = request->origin;
    request->status = origin->respond_status;
    request->origin_status = origin->respond_status;
    request->origin_ms = 0;
    request->origin_request_time = (int64_t)time(NULL);
    add_date_and_server(request);
    for (size_t i = 0; i < origin->respond_header_count; i++)
        response_add_header(request, origin->respond_header_names[i], origin->respond_header_values[i]);
    if (request->status == 204 || request->status == 304)
        return;
    if (request->is_head) {
        /* HEAD: the length GET would send. */
        response_add_header(request, "Content-Length", arena_printf(&request->arena, "%zu", strlen(origin->respond_body)));
        return;
    }
    request->body_source = RESPONSE_BODY_MEMORY;
    request->memory_body = slice_from_cstr(origin->respond_body);
}

/* origins.*.faults.error_rate: the answer an origin in trouble would give. */
static void fetch_injected_error(struct request *request)
{
    request->status = request->origin->faults.error_status;
    request->origin_status = request->status;
    request->origin_ms = request->origin->faults.latency_ms;
    request->origin_request_time = (int64_t)time(NULL);
    add_date_and_server(request);
    response_add_header(request, "Content-Type", "text/plain; charset=utf-8");
    response_add_header(request, "X-Verge-Fault", "error_rate");
    if (request->is_head)
        return;
    request->body_source = RESPONSE_BODY_MEMORY;
    request->memory_body = slice_from_cstr(
        arena_printf(&request->arena, "verge: injected fault (origins.%s.faults.error_rate)\n", request->origin->name));
}

static void on_origin_error(void *context, enum origin_error_kind kind, const char *reason, bool head_received);

static void on_fault_timer(struct ev_loop *loop, ev_timer *timer, int revents)
{
    struct request *request = timer->data;
    if (request->fault == CONFIG_FAULT_RESET) {
        struct origin_metrics *counted =
            request->origin_metrics ? request->origin_metrics : request->generation->origin_metrics[request->origin_index];
        atomic_fetch_add_explicit(&counted->errors[ORIGIN_ERROR_RESET], 1, memory_order_relaxed);
        on_origin_error(request, ORIGIN_ERROR_RESET, "origin connection reset (injected: faults.reset_rate)", false);
        return;
    }
    request_run(request); /* FETCH again, now past the latency */
}

static enum step_result step_fetch(struct request *request)
{
    const struct config_faults *faults = &request->origin->faults;
    if (!request->fault_checked && config_faults_active(faults)) {
        request->fault_checked = true;
        double random = (double)(random_next(request->viewer->thread) >> 11) / 9007199254740992.0; /* [0, 1) */
        request->fault = config_fault_pick(faults, random);
        ev_timer_init(&request->fault_timer, on_fault_timer, faults->latency_ms / 1000.0, 0.);
        request->fault_timer.data = request;
        ev_timer_start(request->viewer->thread->loop, &request->fault_timer);
        return RUN_SUSPEND;
    }
    if (request->fault == CONFIG_FAULT_ERROR) {
        fetch_injected_error(request);
        request->step = STEP_ORIGIN_RESPONSE;
        return RUN_NEXT;
    }
    if (request->origin->kind == ORIGIN_KIND_STATIC || request->origin->kind == ORIGIN_KIND_RESPOND) {
        if (request->origin->kind == ORIGIN_KIND_STATIC)
            fetch_static(request);
        else
            fetch_respond(request);
        request->step = STEP_ORIGIN_RESPONSE;
        return RUN_NEXT;
    }
    struct bytebuf *head = &request->viewer->thread->scratch; /* copied by the fetch: no malloc per request */
    head->len = 0;
    struct cache_object_view stale;
    if (request->cache_revalidating)
        cache_object_view(request->cache_stale, &stale);
    build_origin_request_head(request, head, request->cache_revalidating ? &stale : NULL);
    request->origin_request_time = (int64_t)time(NULL);
    struct origin_fetch_params params = {
        .origin = request->origin,
        .metrics = request->origin_metrics ? request->origin_metrics : request->generation->origin_metrics[request->origin_index],
        .method = request->method,
        .request_head = head,
        .has_body = request->body_kind != HTTP1_BODY_NONE || request->upload_only,
        .retryable = request->body_kind == HTTP1_BODY_NONE && !request->upload_only && method_is_idempotent(request->method),
    };
    request->fetch = origin_fetch_start(request->viewer->thread, &params, &origin_callbacks, request);
    if (params.has_body)
        origin_fetch_set_drain_callback(request->fetch, on_origin_output_drained);
    request->step = STEP_ORIGIN_RESPONSE; /* set by on_origin_head; SYNTH on errors */
    return RUN_SUSPEND;
}

static enum step_result step_origin_response(struct request *request)
{
    return run_trigger(request, CONFIG_TRIGGER_ORIGIN_RESPONSE, STEP_STORE);
}

/* The response's headers as stored: hop-by-hop ones removed. */
static size_t storable_headers(struct request *request, struct http_header **out)
{
    struct http_header *kept = arena_alloc(&request->arena, sizeof *kept * (request->response_header_count + 1));
    size_t count = 0;
    for (size_t i = 0; i < request->response_header_count; i++)
        if (!is_hop_by_hop(request->response_headers, request->response_header_count, &request->response_headers[i]))
            kept[count++] = request->response_headers[i];
    *out = kept;
    return count;
}

/* The origin's answer is replaced by a stored object (a 304 refresh or
 * stale-if-error): its body is dropped and delivery waits for its end, so
 * the origin connection goes back to the pool. */
static enum step_result absorb_origin_answer(struct request *request, struct cache_object *object, enum cache_result result,
                                             int64_t age)
{
    end_fill(request, false, 0);
    request->response_header_count = 0;
    serve_from_cache(request, object, result, age);
    request->origin_answer_absorbed = true;
    if (request->fetch == NULL)
        return RUN_NEXT;
    request->deliver_after_origin_end = true;
    return RUN_SUSPEND;
}

static enum step_result step_store(struct request *request)
{
    request->step = STEP_VIEWER_RESPONSE;
    if (request->cache_fill == NULL)
        return RUN_NEXT;
    int64_t now = (int64_t)time(NULL);
    struct http_header *headers;
    size_t count = storable_headers(request, &headers);
    bool has_authorization = find_header(request->headers, request->header_count, HTTP_TOKEN_AUTHORIZATION).len > 0;
    int64_t content_length = request->body_source == RESPONSE_BODY_FILE     ? (int64_t)request->file_remaining
                             : request->body_source == RESPONSE_BODY_MEMORY ? (int64_t)request->memory_body.len
                             : request->framing == FRAMING_LENGTH           ? (int64_t)request->response_content_length
                                                                            : -1;
    struct object_head_source source = {
        .settings = request->cache_settings,
        .method = request->method,
        .has_authorization = has_authorization,
        .status = request->status,
        .headers = headers,
        .header_count = count,
        .content_length = content_length,
        .request_headers = request->headers,
        .request_header_count = request->header_count,
        .path = request->path,
        .request_time = request->origin_request_time ? request->origin_request_time : now,
    };
    struct cache_object_head head;
    const char *reason;
    if (request->cache_stale != NULL) {
        struct cache_object_view stale;
        cache_object_view(request->cache_stale, &stale);
        if (request->status == 304 && request->cache_revalidating) {
            source.revalidated = &stale;
            source.has_authorization = false; /* the stored response was already judged */
            if (cache_object_head_build(&request->arena, &source, now, &head, &reason)) {
                struct cache_object *fresh = cache_object_refresh(request->cache_stale, &head);
                return absorb_origin_answer(request, fresh, CACHE_RESULT_REFRESH_HIT, head.initial_age);
            }
            source.revalidated = NULL;
            source.has_authorization = has_authorization;
        }
        if (request->status >= 500 && cache_may_serve_stale_on_error(request->cache_stale_age, stale.ttl, stale.stale_if_error)) {
            struct cache_object *stale_object = request->cache_stale;
            request->cache_stale = NULL;
            return absorb_origin_answer(request, stale_object, CACHE_RESULT_STALE_IF_ERROR, request->cache_stale_age);
        }
    }
    const struct config *config = request->generation->config;
    uint64_t max_object =
        config->cache.max_object_bytes < config->cache.memory_bytes ? config->cache.max_object_bytes : config->cache.memory_bytes;
    if (content_length >= 0 && (uint64_t)content_length > max_object) {
        log_debug("request %s: not stored: %lld bytes is over the largest object kept", request->id, (long long)content_length);
        end_fill(request, false, 10); /* objects over max_object_mb pass through */
        return RUN_NEXT;
    }
    if (!cache_object_head_build(&request->arena, &source, now, &head, &reason)) {
        log_debug("request %s: not stored: %s", request->id, reason);
        /* Hit-for-pass, so the next burst for this key is not serialized; not
         * when the refusal came from this request's own Authorization. */
        end_fill(request, false, has_authorization ? 0 : 10);
        return RUN_NEXT;
    }
    cache_object_set_head(request->cache_fill, &head);
    request->cache_result = CACHE_RESULT_MISS_STORED;
    return RUN_NEXT;
}

static enum step_result step_viewer_response(struct request *request)
{
    /* Not for an origin answer (or a stored one) of 400 and up, spec §4; a
     * response an origin-request function generated always gets it. */
    int origin_status = request->origin_status >= 0 ? request->origin_status : request->status;
    if (!request->hook_generated_at_origin && origin_status >= 400) {
        request->step = STEP_DELIVER;
        return RUN_NEXT;
    }
    return run_trigger(request, CONFIG_TRIGGER_VIEWER_RESPONSE, STEP_DELIVER);
}

static enum step_result step_synth(struct request *request)
{
    if (request->status == 0)
        request->status = 502;
    add_date_and_server(request);
    response_add_header(request, "Content-Type", "text/plain; charset=utf-8");
    request->body_source = RESPONSE_BODY_MEMORY;
    request->memory_body = slice_from_cstr(arena_printf(
        &request->arena, "verge: %s\n", request->error_reason ? request->error_reason : http_status_reason(request->status)));
    request->step = STEP_DELIVER;
    return RUN_NEXT;
}

/* Chunked framing for a body of unknown length: HTTP/1.1 viewers. HTTP/1.0
 * ones read until the close; an HTTP/2 stream ends with its last DATA frame
 * (UNTIL_CLOSE there means "until the stream ends"). */
static bool viewer_takes_chunked(const struct request *request)
{
    return request->version_minor >= 1 && request->viewer->stream == NULL;
}

static void decide_framing(struct request *request)
{
    if (request->is_head || request->status == 204 || request->status == 304 || request->status < 200) {
        request->framing = FRAMING_NONE;
        return;
    }
    switch (request->body_source) {
    case RESPONSE_BODY_NONE:
        request->framing = FRAMING_LENGTH;
        request->response_content_length = 0;
        break;
    case RESPONSE_BODY_MEMORY:
        request->framing = FRAMING_LENGTH;
        request->response_content_length = request->memory_body.len;
        break;
    case RESPONSE_BODY_FILE:
        request->framing = FRAMING_LENGTH;
        request->response_content_length = request->file_remaining;
        break;
    case RESPONSE_BODY_ORIGIN:
        /* on_origin_head refines this from the origin's framing. */
        request->framing = viewer_takes_chunked(request) ? FRAMING_CHUNKED : FRAMING_UNTIL_CLOSE;
        break;
    case RESPONSE_BODY_CACHE:
        if (request->cache_read_end != UINT64_MAX) {
            request->framing = FRAMING_LENGTH;
            request->response_content_length = request->cache_read_end - request->cache_read_offset;
        } else {
            request->framing = viewer_takes_chunked(request) ? FRAMING_CHUNKED : FRAMING_UNTIL_CLOSE;
        }
        break;
    }
}

/* X-Cache (CloudFront's vocabulary), Cache-Status (RFC 9211) and Age. */
static void append_cache_headers(struct request *request, struct bytebuf *out)
{
    const char *x_cache, *cache_status;
    switch (request->cache_result) {
    case CACHE_RESULT_HIT:
        x_cache = "Hit";
        cache_status = "verge; hit";
        break;
    case CACHE_RESULT_STALE_WHILE_REVALIDATE:
        x_cache = "Hit";
        cache_status = "verge; hit; fwd=stale";
        break;
    case CACHE_RESULT_STALE_IF_ERROR:
        x_cache = "Hit";
        cache_status = "verge; hit; fwd=stale; detail=stale-if-error";
        break;
    case CACHE_RESULT_REFRESH_HIT:
        x_cache = "RefreshHit";
        cache_status = "verge; fwd=stale; fwd-status=304";
        break;
    case CACHE_RESULT_MISS_STORED:
        x_cache = "Miss";
        cache_status = "verge; fwd=miss; stored";
        break;
    case CACHE_RESULT_MISS:
        x_cache = "Miss";
        cache_status = "verge; fwd=miss";
        break;
    default:
        x_cache = "Miss";
        cache_status = "verge; fwd=bypass";
        break;
    }
    if (request->status >= 400 && request->body_source != RESPONSE_BODY_CACHE)
        x_cache = "Error";
    if (request->lambda_error != NULL)
        x_cache = request->lambda_error;
    else if (request->hook_generated && request->body_source != RESPONSE_BODY_CACHE)
        x_cache = "LambdaGeneratedResponse";
    bytebuf_append(out, "X-Cache: ", 9);
    bytebuf_append_cstr(out, x_cache);
    bytebuf_append(out, " from verge\r\nCache-Status: ", 27);
    bytebuf_append_cstr(out, cache_status);
    bytebuf_append(out, "\r\n", 2);
    if (request->body_source == RESPONSE_BODY_CACHE) {
        bytebuf_append(out, "Age: ", 5);
        bytebuf_append_decimal(out, request->cache_age > 0 ? (uint64_t)request->cache_age : 0);
        bytebuf_append(out, "\r\n", 2);
    }
}

static void write_response_head(struct request *request)
{
    struct viewer_connection *viewer = request->viewer;
    struct bytebuf *out = &viewer->thread->scratch;
    out->len = 0;
    if (request->framing == FRAMING_UNTIL_CLOSE)
        viewer->close_after_response = true;
    bytebuf_append(out, "HTTP/1.1 ", 9);
    bytebuf_append_decimal(out, request->status > 0 ? (uint64_t)request->status : 0); /* 100..999 wherever it was set */
    bytebuf_append(out, " ", 1);
    if (request->reason.len > 0)
        bytebuf_append_slice(out, request->reason);
    else
        bytebuf_append_cstr(out, http_status_reason(request->status));
    bytebuf_append(out, "\r\n", 2);
    const struct http_header *headers = request->response_headers;
    size_t count = request->response_header_count;
    for (size_t i = 0; i < count; i++) {
        const struct http_header *header = &headers[i];
        if (header->token == HTTP_TOKEN_VIA || header->token == HTTP_TOKEN_X_AMZ_CF_ID)
            continue;
        if (request->body_source == RESPONSE_BODY_CACHE && slice_equal_nocase(header->name, SLICE_LITERAL("Age")))
            continue; /* replaced by the age of the stored object */
        if (header->token == HTTP_TOKEN_CONTENT_LENGTH && request->framing != FRAMING_NONE)
            continue;
        if (is_hop_by_hop(headers, count, header))
            continue;
        append_header(out, header->name, header->value);
    }
    append_list_header(out, "Via", headers, count, HTTP_TOKEN_VIA, SLICE_LITERAL("1.1 verge"));
    append_header(out, SLICE_LITERAL("X-Amz-Cf-Id"), slice_from_cstr(request->id));
    append_cache_headers(request, out);
    request_trace_append_header(request, out);
    if (request->framing == FRAMING_LENGTH) {
        bytebuf_append(out, "Content-Length: ", 16);
        bytebuf_append_decimal(out, (uint64_t)request->response_content_length);
        bytebuf_append(out, "\r\n", 2);
    } else if (request->framing == FRAMING_CHUNKED)
        bytebuf_append(out, "Transfer-Encoding: chunked\r\n", 28);
    if (viewer->close_after_response)
        bytebuf_append(out, "Connection: close\r\n", 19);
    else if (request->version_minor == 0)
        bytebuf_append(out, "Connection: keep-alive\r\n", 24);
    bytebuf_append(out, "\r\n", 2);
    request->head_sent = true;
    viewer_write(viewer, out->data, out->len);
}

static void pump_file(struct request *request)
{
    struct viewer_connection *viewer = request->viewer;
    char buffer[PUMP_READ_SIZE];
    while (request->file_remaining > 0 && viewer_output_pending(viewer) < PUMP_HIGH_WATERMARK) {
        size_t want = request->file_remaining < sizeof buffer ? (size_t)request->file_remaining : sizeof buffer;
        ssize_t n = pread(request->file_fd, buffer, want, (off_t)request->file_offset);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            log_warn("static origin %s: read failed after %llu bytes (file changed?)", request->origin->name,
                     (unsigned long long)request->body_bytes_sent);
            viewer_abort(viewer);
            return;
        }
        request->file_offset += (uint64_t)n;
        request->file_remaining -= (uint64_t)n;
        request->body_bytes_sent += (uint64_t)n;
        tee_to_fill(request, buffer, (size_t)n);
        viewer_write(viewer, buffer, (size_t)n);
        viewer_uncork(viewer); /* the head went out with the first chunk */
    }
    if (request->file_remaining == 0) {
        request->response_complete = true;
        request->step = STEP_DONE;
        request_run(request);
    }
}

/* Streams the stored object's body to the viewer, from cache_read_offset to
 * cache_read_end (UINT64_MAX: until the fill completes). While the object
 * still fills, the request waits on it and resumes from request_on_cache_event;
 * while the viewer is slow, from request_on_output_drained. */
static void pump_cache(struct request *request)
{
    struct viewer_connection *viewer = request->viewer;
    for (;;) {
        if (request->framing == FRAMING_CHUNKED) {
            /* Unknown length (the object still fills): frame what is there. */
            while (request->cache_read_offset < request->cache_read_end && viewer_output_pending(viewer) < PUMP_HIGH_WATERMARK) {
                struct cache_body_piece bytes = cache_object_piece_at(request->cache_object, request->cache_read_offset);
                if (bytes.len == 0)
                    break;
                char size_line[24];
                int line = snprintf(size_line, sizeof size_line, "%zx\r\n", bytes.len);
                viewer_write(viewer, size_line, (size_t)line);
                viewer_write(viewer, bytes.data, bytes.len);
                viewer_write(viewer, "\r\n", 2);
                request->cache_read_offset += bytes.len;
                request->body_bytes_sent += bytes.len;
            }
        } else {
            /* Known length: the stored chunks go to the socket as they are —
             * file-backed ones with sendfile, small heap ones gathered into
             * one sendmsg. */
            for (;;) {
                struct cache_body_piece piece = cache_object_piece_at(request->cache_object, request->cache_read_offset);
                uint64_t left = request->cache_read_end - request->cache_read_offset;
                if (piece.len > left)
                    piece.len = (size_t)left;
                if (piece.len == 0)
                    break; /* nothing more stored yet */
                size_t offered, sent;
                /* TLS must encrypt in user space: it reads the segments' mapping (piece.data) instead. */
                bool file_pieces = viewer->tls == NULL && viewer->stream == NULL;
                if (piece.fd >= 0 && file_pieces) {
                    /* Chunks that follow each other in the same segment go in one call. */
                    offered = piece.len;
                    while (offered < PUMP_HIGH_WATERMARK && request->cache_read_offset + offered < request->cache_read_end) {
                        struct cache_body_piece next =
                            cache_object_piece_at(request->cache_object, request->cache_read_offset + offered);
                        if (next.fd != piece.fd || next.file_offset != piece.file_offset + offered || next.len == 0)
                            break;
                        uint64_t room = request->cache_read_end - request->cache_read_offset - offered;
                        offered += next.len < room ? next.len : (size_t)room;
                    }
                    sent = viewer_sendfile(viewer, piece.fd, piece.file_offset, offered);
                } else {
                    struct iovec pieces[VIEWER_MAX_IOV];
                    int count = 0;
                    uint64_t offset = request->cache_read_offset;
                    offered = 0;
                    while (piece.len > 0 && (piece.fd < 0 || !file_pieces) && count < VIEWER_MAX_IOV &&
                           offered < PUMP_HIGH_WATERMARK) {
                        pieces[count++] = (struct iovec){(void *)piece.data, piece.len};
                        offset += piece.len;
                        offered += piece.len;
                        if (offset >= request->cache_read_end)
                            break;
                        piece = cache_object_piece_at(request->cache_object, offset);
                        if (piece.len > request->cache_read_end - offset)
                            piece.len = (size_t)(request->cache_read_end - offset);
                    }
                    sent = viewer_send_vectored(viewer, pieces, count);
                }
                request->cache_read_offset += sent;
                request->body_bytes_sent += sent;
                if (sent < offered)
                    return; /* the socket is full (or broke): request_on_output_drained resumes */
            }
        }
        viewer_uncork(viewer);
        if (request->cache_read_offset >= request->cache_read_end)
            break; /* all sent */
        if (viewer_output_pending(viewer) >= PUMP_HIGH_WATERMARK)
            return; /* request_on_output_drained resumes */
        struct cache_object_view view;
        cache_object_view(request->cache_object, &view);
        if (view.body_available > request->cache_read_offset)
            continue;
        if (view.state == CACHE_OBJECT_COMPLETE && !view.body_truncated) {
            request->cache_read_end = request->cache_read_offset;
            break;
        }
        if (view.body_truncated || view.state == CACHE_OBJECT_ABANDONED || view.state == CACHE_OBJECT_COMPLETE) {
            log_warn("request %s: the cached object's fill ended early; cutting the response short", request->id);
            viewer_abort(viewer);
            return;
        }
        /* Wait for more bytes; look once more after registering so an append
         * between the view and the registration is not missed. */
        cache_wakeup_wait(request, request->cache_object);
        cache_object_view(request->cache_object, &view);
        if (view.body_available > request->cache_read_offset || view.state != CACHE_OBJECT_FILLING)
            continue;
        return;
    }
    cache_wakeup_cancel(request);
    if (request->framing == FRAMING_CHUNKED)
        viewer_write(viewer, "0\r\n\r\n", 5);
    request->response_complete = true;
    request->step = STEP_DONE;
    request_run(request);
}

void request_on_cache_event(struct request *request)
{
    if (request->magic != REQUEST_MAGIC)
        return;
    if (request->step == STEP_LOOKUP) {
        /* The object this request waited on got its head (or was given up):
         * look again. */
        cache_wakeup_cancel(request);
        request_run(request);
    } else if (request->body_source == RESPONSE_BODY_CACHE && request->head_sent && !request->response_complete) {
        pump_cache(request);
    }
}

static enum step_result step_deliver(struct request *request)
{
    if (request->body_source != RESPONSE_BODY_ORIGIN) {
        decide_framing(request);
        viewer_cork(request->viewer); /* head and body in one send */
    }
    write_response_head(request);
    if (request->framing == FRAMING_NONE) {
        request->response_complete = request->body_source != RESPONSE_BODY_ORIGIN;
    } else {
        switch (request->body_source) {
        case RESPONSE_BODY_NONE:
            request->response_complete = true;
            break;
        case RESPONSE_BODY_MEMORY:
            tee_to_fill(request, request->memory_body.ptr, request->memory_body.len);
            viewer_write(request->viewer, request->memory_body.ptr, request->memory_body.len);
            request->body_bytes_sent += request->memory_body.len;
            request->response_complete = true;
            break;
        case RESPONSE_BODY_FILE:
            request->step = STEP_DONE; /* pump_file moves on when the file is sent */
            pump_file(request);
            return RUN_SUSPEND;
        case RESPONSE_BODY_ORIGIN:
            break;
        case RESPONSE_BODY_CACHE:
            request->step = STEP_DONE; /* pump_cache moves on when the body is sent */
            pump_cache(request);
            return RUN_SUSPEND;
        }
    }
    if (request->body_source == RESPONSE_BODY_ORIGIN) {
        /* Bytes that came while a response trigger ran go out after the head. */
        if (request->held_body.len > 0) {
            deliver_origin_body(request, request->held_body.data, request->held_body.len);
            request->held_body.len = 0;
        }
        if (request->origin_body_ended || request->fetch == NULL) {
            end_fill(request, true, 0);
            if (request->framing == FRAMING_CHUNKED)
                viewer_write(request->viewer, "0\r\n\r\n", 5);
            viewer_uncork(request->viewer);
            request->response_complete = true;
        } else if (request->origin_paused && viewer_output_pending(request->viewer) <= PUMP_HIGH_WATERMARK) {
            request->origin_paused = false;
            origin_fetch_pause_reading(request->fetch, false);
        }
    }
    if (request->body_source != RESPONSE_BODY_ORIGIN)
        viewer_uncork(request->viewer);
    if (!request->response_complete)
        return RUN_SUSPEND; /* on_origin_body / on_origin_end carry on */
    request->step = STEP_DONE;
    return RUN_NEXT;
}

static enum step_result step_done(struct request *request)
{
    /* The whole response went out: a fill fed from a file or memory is complete
     * (an origin-fed fill already ended with the origin's body). */
    end_fill(request, true, 0);
    /* May start the next pipelined request on this same struct: return at once. */
    viewer_request_finished(request->viewer);
    return RUN_STOP;
}

typedef enum step_result (*step_function)(struct request *request);

static const step_function steps[] = {
    [STEP_RECV] = step_recv,
    [STEP_VIEWER_REQUEST] = step_viewer_request,
    [STEP_VIEWER_HEADERS] = step_viewer_headers,
    [STEP_LOOKUP] = step_lookup,
    [STEP_ORIGIN_REQUEST] = step_origin_request,
    [STEP_FETCH] = step_fetch,
    [STEP_ORIGIN_RESPONSE] = step_origin_response,
    [STEP_STORE] = step_store,
    [STEP_VIEWER_RESPONSE] = step_viewer_response,
    [STEP_SYNTH] = step_synth,
    [STEP_DELIVER] = step_deliver,
    [STEP_DONE] = step_done,
};

void request_resume(struct request *request)
{
    request_run(request);
}

void request_replace_origin_body(struct request *request, slice_t body)
{
    if (request->fetch != NULL) {
        origin_fetch_abort(request->fetch); /* its connection cannot be reused mid-body */
        request->fetch = NULL;
    }
    request->held_body.len = 0;
    request->origin_body_ended = false;
    request->body_source = RESPONSE_BODY_MEMORY;
    request->memory_body = body;
}

static void request_run(struct request *request)
{
    for (;;) {
        VERGE_CHECK_MAGIC(request, REQUEST_MAGIC);
        VERGE_ASSERT((size_t)request->step < VERGE_ARRAY_SIZE(steps));
        if (log_threshold <= LOG_DEBUG)
            log_debug("request %s: step %s", request->id, step_names[request->step]);
        enum step_result result = steps[request->step](request);
        if (result != RUN_NEXT)
            return;
    }
}

/* ---- origin callbacks ---------------------------------------------------- */

static void on_origin_ready_for_body(void *context)
{
    struct request *request = context;
    if (request->body_pump_started)
        return;
    request->body_pump_started = true;
    if (request->expect_continue && !request->continue_sent && !request->body_done && request->viewer->input_len == 0 &&
        !request->head_sent) {
        request->continue_sent = true;
        viewer_write(request->viewer, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    request_pump_body(request);
}

static void on_origin_output_drained(void *context)
{
    struct request *request = context;
    if (request->magic == REQUEST_MAGIC && !request->body_done)
        request_pump_body(request);
}

static void on_origin_head(void *context, const struct http1_response *head, slice_t raw_head)
{
    struct request *request = context;
    request->origin_status = head->status;
    request->origin_ms = (double)(time_now_monotonic_us() - request->started_us) / 1000.0;
    request->status = head->status;
    char *to = arena_alloc(&request->arena, raw_head.len);
    memcpy(to, raw_head.ptr, raw_head.len);
    request->reason = rebase(head->reason, raw_head.ptr, raw_head.len, to);
    request->response_headers = copy_headers(&request->arena, head->headers, head->header_count, raw_head.ptr, raw_head.len, to);
    request->response_header_count = head->header_count;
    request->body_source = RESPONSE_BODY_ORIGIN;
    viewer_cork(request->viewer); /* the head waits for the body bytes of this read: one send */
    decide_framing(request);
    if (request->framing != FRAMING_NONE) {
        switch (head->body_kind) {
        case HTTP1_BODY_NONE:
            request->framing = FRAMING_LENGTH;
            request->response_content_length = 0;
            break;
        case HTTP1_BODY_LENGTH:
            request->framing = FRAMING_LENGTH;
            request->response_content_length = head->content_length;
            break;
        case HTTP1_BODY_CHUNKED:
        case HTTP1_BODY_UNTIL_CLOSE:
            request->framing = viewer_takes_chunked(request) ? FRAMING_CHUNKED : FRAMING_UNTIL_CLOSE;
            break;
        }
    }
    request->step = STEP_ORIGIN_RESPONSE;
    request_run(request);
}

/* Origin body bytes after the head: into the stored object and to the viewer. */
static void deliver_origin_body(struct request *request, const char *data, size_t len)
{
    struct viewer_connection *viewer = request->viewer;
    tee_to_fill(request, data, len);
    if (request->framing == FRAMING_NONE)
        return; /* HEAD: an origin that sends a body anyway is ignored */
    if (request->framing == FRAMING_CHUNKED) {
        char size_line[24];
        int n = snprintf(size_line, sizeof size_line, "%zx\r\n", len);
        viewer_write(viewer, size_line, (size_t)n);
        viewer_write(viewer, data, len);
        viewer_write(viewer, "\r\n", 2);
    } else {
        viewer_write(viewer, data, len);
    }
    request->body_bytes_sent += len;
    if (viewer_output_pending(viewer) > PUMP_HIGH_WATERMARK && request->fetch != NULL && !request->origin_paused) {
        request->origin_paused = true;
        origin_fetch_pause_reading(request->fetch, true);
    }
}

static void on_origin_body(void *context, const char *data, size_t len)
{
    struct request *request = context;
    if (request->origin_answer_absorbed)
        return;
    if (!request->head_sent) {
        /* A response trigger runs: hold the bytes (and the origin) until the head is out. */
        bytebuf_append(&request->held_body, data, len);
        if (request->fetch != NULL && !request->origin_paused) {
            request->origin_paused = true;
            origin_fetch_pause_reading(request->fetch, true);
        }
        return;
    }
    deliver_origin_body(request, data, len);
}

static void on_origin_end(void *context)
{
    struct request *request = context;
    request->fetch = NULL;
    if (request->origin_answer_absorbed) {
        if (request->deliver_after_origin_end) {
            request->deliver_after_origin_end = false;
            request_run(request);
        }
        return;
    }
    if (!request->head_sent) {
        /* A response trigger runs: step_deliver ends the body after the head. */
        request->origin_body_ended = true;
        return;
    }
    end_fill(request, true, 0);
    if (request->framing == FRAMING_CHUNKED)
        viewer_write(request->viewer, "0\r\n\r\n", 5);
    viewer_uncork(request->viewer);
    request->response_complete = true;
    request->step = STEP_DONE;
    request_run(request);
}

static void on_origin_error(void *context, enum origin_error_kind kind, const char *reason, bool head_received)
{
    struct request *request = context;
    request->fetch = NULL;
    viewer_uncork(request->viewer);
    log_warn("request %s: origin %s: %s", request->id, request->origin->name, reason);
    if (request->origin_answer_absorbed) {
        /* The origin failed while its (ignored) answer was being drained. */
        if (request->deliver_after_origin_end) {
            request->deliver_after_origin_end = false;
            request_run(request);
        }
        return;
    }
    if (!head_received && request->cache_stale != NULL) {
        struct cache_object_view stale;
        cache_object_view(request->cache_stale, &stale);
        if (cache_may_serve_stale_on_error(request->cache_stale_age, stale.ttl, stale.stale_if_error)) {
            struct cache_object *object = request->cache_stale;
            request->cache_stale = NULL;
            end_fill(request, false, 0);
            serve_from_cache(request, object, CACHE_RESULT_STALE_IF_ERROR, request->cache_stale_age);
            request_run(request);
            return;
        }
    }
    end_fill(request, false, 0);
    if (head_received) {
        viewer_abort(request->viewer);
        return;
    }
    request->status = kind == ORIGIN_ERROR_TIMEOUT ? 504 : 502;
    request->error_reason = arena_strndup(&request->arena, reason, strlen(reason));
    request->step = STEP_SYNTH;
    request_run(request);
}

void request_on_output_drained(struct request *request)
{
    if (request->magic != REQUEST_MAGIC)
        return;
    if (request->origin_paused && request->fetch != NULL) {
        request->origin_paused = false;
        origin_fetch_pause_reading(request->fetch, false);
    }
    if (request->body_source == RESPONSE_BODY_FILE && request->head_sent && !request->response_complete)
        pump_file(request);
    else if (request->body_source == RESPONSE_BODY_CACHE && request->head_sent && !request->response_complete)
        pump_cache(request);
}
