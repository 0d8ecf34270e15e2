/* request_hooks.c — the trigger steps of the request state machine: the
 * behavior's edge function at viewer-request, origin-request,
 * origin-response and viewer-response (spec §2, §4).
 *
 * A trigger step builds the Lambda@Edge event from the request (and
 * response), hands it to the thread's worker pool and suspends; the pool's
 * callback parses the result, validates it against the event the function
 * saw (hooks/rules.c) and applies it, then resumes the state machine at the
 * step the trigger decided:
 *   - a changed request goes on (viewer-request → VIEWER_HEADERS, origin-request →
 *     FETCH); a generated response goes to DELIVER (viewer-request: not
 *     cached, no viewer-response) or STORE (origin-request: cached);
 *   - a changed response (origin-response) is what gets stored;
 *   - viewer-response changes headers only.
 * Failures answer as CloudFront does: 502 LambdaValidationError, 503
 * LambdaExecutionError (raised, crashed, timed out), 503 LambdaLimitExceeded
 * (throttled) — unless the trigger says "on_error": "continue", when an
 * execution error or timeout lets the request go on unchanged.
 *
 * Invariants: at most one function runs per request at a time
 * (request->hook_call); everything built here lives in the request arena;
 * headers a function never sees (event_header_hidden) stay on the message
 * whatever it returns.
 * Locking: none; a request belongs to its connection's loop thread.
 */
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access_log.h"
#include "request.h"
#include "tls.h"

#define DYNAMIC_ORIGINS_MAX 64

/* ---- request → event -------------------------------------------------------- */

/* event_header_hidden for a header of a message: the answer is the same for
 * every spelling of a well-known name, so it is worked out once per token
 * (0 not yet, 1 shown, 2 hidden; threads may race to store the same value). */
static _Atomic unsigned char hidden_by_token[HTTP_TOKEN__COUNT];

static bool header_hidden(const struct http_header *header)
{
    if (header->token == HTTP_TOKEN_OTHER || (unsigned)header->token >= HTTP_TOKEN__COUNT)
        return event_header_hidden(header->name);
    unsigned char known = atomic_load_explicit(&hidden_by_token[header->token], memory_order_relaxed);
    if (known == 0) {
        known = event_header_hidden(header->name) ? 2 : 1;
        atomic_store_explicit(&hidden_by_token[header->token], known, memory_order_relaxed);
    }
    return known == 2;
}

static void headers_to_event(struct arena *arena, const struct http_header *headers, size_t count, struct event_headers *out,
                             slice_t replace_host)
{
    for (size_t i = 0; i < count; i++) {
        const struct http_header *header = &headers[i];
        if (header_hidden(header))
            continue;
        if (replace_host.len > 0 && header->token == HTTP_TOKEN_HOST)
            continue;
        /* a well-known name's lower-case spelling is the token's: no copy */
        if (header->token != HTTP_TOKEN_OTHER)
            event_headers_add_lower(arena, out, http_token_name(header->token), header->name, header->value);
        else
            event_headers_add_borrowed(arena, out, header->name, header->value);
    }
    if (replace_host.len > 0)
        event_headers_add_borrowed(arena, out, SLICE_LITERAL("Host"), replace_host);
}

void request_origin_to_event(const struct config_origin *origin, struct event_origin *out)
{
    memset(out, 0, sizeof *out);
    out->kind = EVENT_ORIGIN_CUSTOM;
    out->protocol = origin->tls ? SLICE_LITERAL("https") : SLICE_LITERAL("http");
    out->read_timeout = 30;
    out->keepalive_timeout = 5;
    static slice_t ssl_protocols[] = {SLICE_LITERAL("TLSv1.2")};
    out->ssl_protocols = ssl_protocols;
    out->ssl_protocol_count = 1;
    if (origin->kind != ORIGIN_KIND_HTTP) {
        /* A static or fixed-answer origin has no address: functions see its name. */
        out->domain_name = slice_from_cstr(origin->name);
        out->port = 80;
        out->path = SLICE_LITERAL("");
        return;
    }
    out->domain_name = slice_from_cstr(origin->host);
    out->port = origin->port;
    out->path = slice_from_cstr(origin->path_prefix);
    out->read_timeout = origin->read_timeout_ms / 1000 > 0 ? origin->read_timeout_ms / 1000 : 1;
}

static struct event_input *build_event(struct request *request, enum config_trigger_kind kind)
{
    struct arena *arena = &request->arena;
    struct event_input *input = arena_alloc(arena, sizeof *input);
    memset(input, 0, sizeof *input);
    input->trigger = (enum event_trigger)kind;
    slice_t host = request->authority;
    for (size_t i = 0; i < host.len; i++)
        if (host.ptr[i] == ':')
            host.len = i;
    input->config.distribution_domain_name = host.len > 0 ? host : SLICE_LITERAL("verge.local");
    input->config.distribution_id = SLICE_LITERAL("VERGE");
    input->config.request_id = slice_from_cstr(request->id);
    struct event_request *event_request = &input->request;
    event_request->client_ip = slice_from_cstr(request->viewer->client_ip);
    event_request->method = request->method;
    event_request->uri = request->path;
    event_request->querystring = request->query;
    bool origin_trigger = kind == CONFIG_TRIGGER_ORIGIN_REQUEST || kind == CONFIG_TRIGGER_ORIGIN_RESPONSE;
    /* Origin functions see the Host the origin will get (and may change it at origin-request). */
    slice_t origin_host = {NULL, 0};
    if (origin_trigger)
        origin_host = request->origin_host.len > 0                ? request->origin_host
                      : request->origin->kind == ORIGIN_KIND_HTTP ? slice_from_cstr(request->origin->host_header)
                                                                  : (slice_t){NULL, 0};
    const struct http_header *headers = request->headers;
    size_t header_count = request->header_count;
    if (kind == CONFIG_TRIGGER_VIEWER_RESPONSE && (request->viewer_headers != 0 || request->viewer_sent_header_count > 0)) {
        /* Viewer functions see what the viewer sent, not verge's CloudFront-* values (spec §2.3.3). */
        struct http_header *view;
        header_count = viewer_meta_viewer_view(arena, request->viewer_headers, headers, header_count, request->viewer_sent_headers,
                                               request->viewer_sent_header_count, &view);
        headers = view;
    }
    headers_to_event(arena, headers, header_count, &event_request->headers, origin_host);
    if (origin_trigger) {
        event_request->has_origin = true;
        if (request->switched_origin != NULL)
            event_request->origin = *request->switched_origin;
        else
            request_origin_to_event(request->origin, &event_request->origin);
    }
    if (kind == CONFIG_TRIGGER_ORIGIN_RESPONSE || kind == CONFIG_TRIGGER_VIEWER_RESPONSE) {
        struct event_response *response = &input->response;
        response->status = request->status;
        response->status_description =
            request->reason.len > 0 ? request->reason : slice_from_cstr(http_status_reason(request->status));
        response->has_status_description = true;
        headers_to_event(arena, request->response_headers, request->response_header_count, &response->headers, (slice_t){NULL, 0});
    }
    return input;
}

/* ---- result → request / response ------------------------------------------- */

static size_t event_header_values(const struct event_headers *headers)
{
    size_t count = 0;
    for (size_t i = 0; i < headers->count; i++)
        count += headers->items[i].value_count;
    return count;
}

/* Writes every value of `headers` (validated) as message headers at `array`; returns how many. */
static size_t put_event_headers(struct http_header *array, const struct event_headers *headers)
{
    size_t n = 0;
    for (size_t i = 0; i < headers->count; i++) {
        const struct event_header *header = &headers->items[i];
        /* validated: the name is lower case and every key is the name but for case,
         * so one lookup of the name serves them all */
        enum http_token token = header->value_count > 0 ? http_token_lookup(header->name) : HTTP_TOKEN_OTHER;
        for (size_t v = 0; v < header->value_count; v++)
            array[n++] = (struct http_header){.name = header->values[v].key, .value = header->values[v].value, .token = token};
    }
    return n;
}

/* The function's headers, plus the hidden ones of the original message. */
static size_t headers_from_event(struct arena *arena, const struct event_headers *headers, const struct http_header *original,
                                 size_t original_count, struct http_header **out)
{
    /* room for every original header: the hidden ones are found in one pass */
    struct http_header *array = arena_alloc(arena, sizeof *array * (event_header_values(headers) + original_count + 1));
    size_t n = put_event_headers(array, headers);
    for (size_t i = 0; i < original_count; i++)
        if (header_hidden(&original[i]))
            array[n++] = original[i];
    *out = array;
    return n;
}

/* The message's own headers with a function's header changes applied, for
 * a map the event built from exactly these headers (all but the hidden
 * ones): each header the function left alone keeps its place and its token,
 * a changed one makes way for its new values (added at the end), a removed
 * one (no values) goes. The same headers headers_from_event makes of the
 * changes merged into the event's map, without building that map. */
static size_t headers_with_changes(struct arena *arena, const struct event_headers *changes, const struct http_header *original,
                                   size_t original_count, struct http_header **out)
{
    struct http_header *array = arena_alloc(arena, sizeof *array * (original_count + event_header_values(changes) + 1));
    size_t n = 0;
    for (size_t i = 0; i < original_count; i++) {
        const struct http_header *header = &original[i];
        bool changed = false;
        for (size_t c = 0; c < changes->count && !changed; c++)
            changed = slice_equal_nocase(header->name, changes->items[c].name);
        if (!changed || header_hidden(header))
            array[n++] = *header;
    }
    n += put_event_headers(array + n, changes);
    *out = array;
    return n;
}

static bool apply_request(struct request *request, enum config_trigger_kind kind, const struct event_request *result)
{
    struct arena *arena = &request->arena;
    /* Include Body "replace": the function's body goes to the origin instead
     * (without Include Body, a returned body is ignored, as CloudFront does). */
    if (request->hook_input->request.has_body && result->has_body && result->body.action == EVENT_BODY_REPLACE) {
        slice_t body = result->body.data;
        if (result->body.encoding == EVENT_BODY_BASE64)
            event_base64_decode(arena, result->body.data, &body); /* validated already */
        request->upload = body;
        request->upload_only = true;
    }
    request->path = result->uri;
    if (result->has_querystring)
        request->query = result->querystring;
    struct http_header *headers;
    /* Changes come here only at viewer-request, whose event map was built
     * from exactly these headers (origin-request's are merged: its Host is
     * the origin's). */
    size_t count = result->headers_are_changes
                       ? headers_with_changes(arena, &result->headers, request->headers, request->header_count, &headers)
                       : headers_from_event(arena, &result->headers, request->headers, request->header_count, &headers);
    if (kind == CONFIG_TRIGGER_ORIGIN_REQUEST) {
        /* Host at origin-request is the origin's: a changed one is sent as is;
         * an unchanged one follows the origin (also a newly chosen one). */
        const struct event_header *input_host = event_headers_find(&request->hook_input->request.headers, SLICE_LITERAL("host"));
        slice_t before = input_host && input_host->value_count ? input_host->values[0].value : (slice_t){NULL, 0};
        size_t kept = 0;
        request->origin_host = (slice_t){NULL, 0};
        for (size_t i = 0; i < count; i++) {
            if (headers[i].token == HTTP_TOKEN_HOST) {
                if (!slice_equal(headers[i].value, before))
                    request->origin_host = headers[i].value;
                continue;
            }
            headers[kept++] = headers[i];
        }
        /* The viewer's own Host stays for the cache key and logs. */
        for (size_t i = 0; i < request->header_count; i++)
            if (request->headers[i].token == HTTP_TOKEN_HOST)
                headers[kept++] = request->headers[i];
        count = kept;
        request->headers = headers;
        request->header_count = count;
        return !result->has_origin || request_switch_origin(request, &result->origin);
    }
    request->headers = headers;
    request->header_count = count;
    return true;
}

static void apply_generated(struct request *request, const struct event_response *response)
{
    request->status = response->status;
    request->reason = response->has_status_description ? response->status_description : (slice_t){NULL, 0};
    request->response_header_count = headers_from_event(&request->arena, &response->headers, NULL, 0, &request->response_headers);
    request->body_source = RESPONSE_BODY_MEMORY;
    request->memory_body = (slice_t){"", 0};
    if (response->has_body) {
        if (response->body_encoding == EVENT_BODY_BASE64)
            event_base64_decode(&request->arena, response->body, &request->memory_body); /* validated already */
        else
            request->memory_body = response->body;
    }
    request->hook_generated = true;
}

/* ---- origins chosen by functions ---------------------------------------------- */

/* An origin an origin-request function named that is not in the config: kept
 * per thread (so its connections are pooled), at most DYNAMIC_ORIGINS_MAX,
 * for the life of the thread. */
struct dynamic_origin {
    struct dynamic_origin *next;
    struct config_origin origin;
    struct origin_metrics *metrics;
};

static bool same_origin(const struct config_origin *origin, bool tls, slice_t domain, int64_t port, slice_t path)
{
    return origin->kind == ORIGIN_KIND_HTTP && origin->tls == tls && slice_equal_nocase(slice_from_cstr(origin->host), domain) &&
           origin->port == port && slice_equal(slice_from_cstr(origin->path_prefix), path);
}

static slice_t path_without_trailing_slash(slice_t path)
{
    while (path.len > 0 && path.ptr[path.len - 1] == '/')
        path.len--;
    return path;
}

bool request_switch_origin(struct request *request, const struct event_origin *origin)
{
    struct arena *arena = &request->arena;
    /* Custom headers go to the origin with the request. */
    const struct event_headers *custom = &origin->custom_headers;
    if (custom->count > 0) {
        size_t extra = 0;
        for (size_t i = 0; i < custom->count; i++)
            extra += custom->items[i].value_count;
        struct http_header *headers = arena_alloc(arena, sizeof *headers * (request->header_count + extra + 1));
        memcpy(headers, request->headers, sizeof *headers * request->header_count);
        size_t n = request->header_count;
        for (size_t i = 0; i < custom->count; i++)
            for (size_t v = 0; v < custom->items[i].value_count; v++) {
                const struct event_header_value *value = &custom->items[i].values[v];
                headers[n++] =
                    (struct http_header){.name = value->key, .value = value->value, .token = http_token_lookup(value->key)};
            }
        request->headers = headers;
        request->header_count = n;
    }
    if (origin->kind == EVENT_ORIGIN_S3) {
        log_warn("request %s: an origin-request function chose an S3 origin, which verge does not reach", request->id);
        return false;
    }
    bool tls = slice_equal(origin->protocol, SLICE_LITERAL("https"));
    if (!tls && !slice_equal(origin->protocol, SLICE_LITERAL("http"))) {
        log_warn("request %s: an origin-request function chose protocol " SLICE_FMT "; verge reaches origins over http and https",
                 request->id, SLICE_ARG(origin->protocol));
        return false;
    }
    slice_t path = path_without_trailing_slash(origin->path);
    struct event_origin *kept = arena_alloc(arena, sizeof *kept);
    *kept = *origin;
    if (same_origin(request->origin, tls, origin->domain_name, origin->port, path) ||
        (request->origin->kind != ORIGIN_KIND_HTTP && slice_equal(origin->domain_name, slice_from_cstr(request->origin->name))))
        return true; /* unchanged */
    request->switched_origin = kept;
    const struct config *config = request->generation->config;
    for (size_t i = 0; i < config->origin_count; i++)
        if (same_origin(&config->origins[i], tls, origin->domain_name, origin->port, path)) {
            request->origin_index = i;
            request->origin = &config->origins[i];
            request->origin_metrics = NULL;
            return true;
        }
    struct loop_thread *thread = request->viewer->thread;
    size_t known = 0;
    for (struct dynamic_origin *d = thread->dynamic_origins; d != NULL; d = d->next, known++)
        if (same_origin(&d->origin, tls, origin->domain_name, origin->port, path)) {
            request->origin = &d->origin;
            request->origin_metrics = d->metrics;
            return true;
        }
    if (known >= DYNAMIC_ORIGINS_MAX) {
        log_warn("request %s: functions chose more than %d origins not in the config; refusing " SLICE_FMT, request->id,
                 DYNAMIC_ORIGINS_MAX, SLICE_ARG(origin->domain_name));
        return false;
    }
    char host[256], port[8];
    snprintf(host, sizeof host, SLICE_FMT, SLICE_ARG(origin->domain_name));
    snprintf(port, sizeof port, "%d", (int)origin->port);
    /* Names resolve with the system resolver, once per thread (this blocks
     * the thread for the lookup; addresses do not). */
    struct tls_client *tls_client = tls ? tls_client_default() : NULL;
    if (tls && tls_client == NULL)
        return false; /* logged once by tls_client_default */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *found = NULL;
    int resolved = getaddrinfo(host, port, &hints, &found);
    if (resolved != 0 || found == NULL) {
        log_warn("request %s: the origin an origin-request function chose, %s:%s, does not resolve: %s", request->id, host, port,
                 gai_strerror(resolved));
        return false;
    }
    struct dynamic_origin *d = calloc(1, sizeof *d);
    VERGE_ASSERT(d != NULL);
    char name[300];
    snprintf(name, sizeof name, "function:%s%s:%s", tls ? "https:" : "", host, port);
    d->origin.name = strdup(name);
    d->origin.kind = ORIGIN_KIND_HTTP;
    d->origin.url = strdup(name);
    d->origin.host = strdup(host);
    d->origin.port = (uint16_t)origin->port;
    d->origin.tls = tls;
    d->origin.tls_verify = tls;
    d->origin.tls_client = tls_client;                                 /* process-wide: outlives every thread */
    if (tls && asprintf(&d->origin.pool_identity, "%s 1 -", host) < 0) /* the same shape as the config's */
        VERGE_ASSERT(!"out of memory");
    char host_header[300];
    if (origin->port == (tls ? 443 : 80))
        snprintf(host_header, sizeof host_header, "%s", host);
    else
        snprintf(host_header, sizeof host_header, "%s:%s", host, port);
    d->origin.host_header = strdup(host_header);
    d->origin.path_prefix = strndup(path.ptr ? path.ptr : "", path.len);
    memcpy(&d->origin.sockaddr, found->ai_addr, found->ai_addrlen);
    d->origin.sockaddr_len = found->ai_addrlen;
    freeaddrinfo(found);
    d->origin.connect_timeout_ms = request->origin->kind == ORIGIN_KIND_HTTP ? request->origin->connect_timeout_ms : 10000;
    d->origin.read_timeout_ms = (int)(origin->read_timeout > 0 ? origin->read_timeout * 1000 : 30000);
    d->origin.max_idle = 16;
    VERGE_ASSERT(d->origin.name && d->origin.url && d->origin.host && d->origin.host_header && d->origin.path_prefix);
    d->metrics = metrics_origin(d->origin.name);
    d->next = thread->dynamic_origins;
    thread->dynamic_origins = d;
    request->origin = &d->origin;
    request->origin_metrics = d->metrics;
    log_info("origin %s added for edge functions on thread %u", d->origin.name, thread->index);
    return true;
}

void request_hooks_thread_destroy(struct loop_thread *thread)
{
    while (thread->dynamic_origins != NULL) {
        struct dynamic_origin *d = thread->dynamic_origins;
        thread->dynamic_origins = d->next;
        free(d->origin.name);
        free(d->origin.url);
        free(d->origin.host);
        free(d->origin.host_header);
        free(d->origin.path_prefix);
        free(d->origin.pool_identity);
        free(d);
    }
}

/* ---- outcomes -------------------------------------------------------------------- */

static void fail_with(struct request *request, int status, const char *x_cache, const char *body)
{
    if (request->fetch != NULL) {
        origin_fetch_abort(request->fetch);
        request->fetch = NULL;
    }
    request_end_fill(request);
    request->status = status;
    request->reason = (slice_t){NULL, 0};
    request->lambda_error = x_cache;
    request->error_reason = body;
    request->response_header_count = 0;
    request->held_body.len = 0;
    request->step = STEP_SYNTH;
}

static void on_function_done(void *context, const struct hooks_outcome *outcome)
{
    struct request *request = context;
    VERGE_CHECK_MAGIC(request, REQUEST_MAGIC);
    enum config_trigger_kind kind = request->hook_trigger;
    const struct config_trigger *trigger = &request->behavior->triggers[kind];
    const char *function = request->generation->config->functions[trigger->function_index].name;
    const char *trigger_name = event_trigger_name((enum event_trigger)kind);

    if (outcome->kind == HOOKS_THROTTLED) {
        request_trace_trigger(request, kind, "throttled", -1, outcome->error);
        fail_with(request, 503, "LambdaLimitExceeded",
                  arena_printf(&request->arena, "function %s (%s) throttled: %s", function, trigger_name, outcome->error));
        request_resume(request);
        return;
    }
    if (outcome->kind != HOOKS_OK && outcome->kind != HOOKS_UNSERIALIZABLE) {
        log_warn("request %s: function %s (%s) failed: %s%s", request->id, function, trigger_name, outcome->error,
                 trigger->continue_on_error ? "; continuing as configured (on_error: continue)" : "");
        if (request->trace != NULL)
            request_trace_trigger(request, kind, "error", outcome->duration_ms,
                                  trigger->continue_on_error
                                      ? arena_printf(&request->arena, "went on (on_error: continue): %s", outcome->error)
                                      : outcome->error);
        if (trigger->continue_on_error) {
            struct function_metrics *counters = hooks_call_metrics(&request->hook_call);
            atomic_fetch_add_explicit(&counters->continued, 1, memory_order_relaxed);
            request_resume(request); /* the step after the trigger, already set */
            return;
        }
        fail_with(request, 503, "LambdaExecutionError",
                  arena_printf(&request->arena, "function %s (%s) failed: %s", function, trigger_name,
                               outcome->kind == HOOKS_TIMEOUT ? "timed out" : "execution error"));
        request_resume(request);
        return;
    }
    struct event_result result;
    struct event_error error;
    if (!hooks_outcome_read_result(outcome, request->hook_input, &request->arena, &result, &error)) {
        if (request->trace != NULL)
            request_trace_trigger(request, kind, "invalid", outcome->duration_ms,
                                  arena_printf(&request->arena, "%s: %s", error.field, error.rule));
        log_warn("request %s: function %s (%s) returned an invalid result: %s: %s", request->id, function, trigger_name,
                 error.field, error.rule);
        if (outcome->kind == HOOKS_OK) {
            /* (an unserializable result was logged and counted by the pool, which saw it first) */
            hooks_log_validation_error(slice_from_cstr(function), slice_from_cstr(request->id), error.field, error.rule);
            struct function_metrics *counters = hooks_call_metrics(&request->hook_call);
            atomic_fetch_add_explicit(&counters->errors[FUNCTION_ERROR_VALIDATION], 1, memory_order_relaxed);
        }
        fail_with(request, 502, "LambdaValidationError",
                  arena_printf(&request->arena, "function %s (%s) returned an invalid result: %s: %s", function, trigger_name,
                               error.field, error.rule));
        request_resume(request);
        return;
    }
    /* Header changes to a response, or to the request at viewer-request
     * (those maps were built from exactly the message's headers), are
     * applied to the message's headers directly; origin-request's are
     * merged into the event's map first (its Host is the origin's). */
    bool response_changes = result.kind == EVENT_RESULT_RESPONSE && result.response.headers_are_changes;
    if (request->trace != NULL)
        request_trace_trigger(request, kind,
                              event_trigger_is_request((enum event_trigger)kind) && result.kind == EVENT_RESULT_RESPONSE
                                  ? "generated"
                              : event_result_changes_input(request->hook_input, &result) ? "modified"
                                                                                         : "continue",
                              outcome->duration_ms, NULL);
    if (kind == CONFIG_TRIGGER_ORIGIN_REQUEST)
        event_result_merge_header_changes(request->hook_input, &result, &request->arena);
    switch (kind) {
    case CONFIG_TRIGGER_VIEWER_REQUEST:
    case CONFIG_TRIGGER_ORIGIN_REQUEST:
        if (result.kind == EVENT_RESULT_RESPONSE) {
            apply_generated(request, &result.response);
            if (kind == CONFIG_TRIGGER_VIEWER_REQUEST) {
                request->cache_result = CACHE_RESULT_BYPASS;
                request->step = STEP_DELIVER; /* not cached; no other trigger runs */
            } else {
                request->hook_generated_at_origin = true;
                request->step = STEP_STORE; /* cached; viewer-response runs */
            }
        } else if (!apply_request(request, kind, &result.request)) {
            /* A valid origin verge cannot use (https, S3, no address): counted and logged like a validation error. */
            hooks_log_validation_error(slice_from_cstr(function), slice_from_cstr(request->id), "request.origin",
                                       "an origin verge cannot reach");
            atomic_fetch_add_explicit(&hooks_call_metrics(&request->hook_call)->errors[FUNCTION_ERROR_VALIDATION], 1,
                                      memory_order_relaxed);
            fail_with(
                request, 502, "LambdaValidationError",
                arena_printf(&request->arena, "function %s (%s) returned an origin verge cannot reach", function, trigger_name));
        }
        break;
    case CONFIG_TRIGGER_ORIGIN_RESPONSE:
    case CONFIG_TRIGGER_VIEWER_RESPONSE: {
        const struct event_response *response = &result.response;
        request->status = response->status;
        if (response->has_status_description)
            request->reason = response->status_description;
        if (response_changes)
            request->response_header_count = headers_with_changes(&request->arena, &response->headers, request->response_headers,
                                                                  request->response_header_count, &request->response_headers);
        else
            request->response_header_count = headers_from_event(&request->arena, &response->headers, request->response_headers,
                                                                request->response_header_count, &request->response_headers);
        if (kind == CONFIG_TRIGGER_ORIGIN_RESPONSE && response->has_body) {
            /* The function's body replaces the origin's, whose rest is dropped. */
            slice_t body = response->body;
            if (response->body_encoding == EVENT_BODY_BASE64)
                event_base64_decode(&request->arena, response->body, &body);
            request_replace_origin_body(request, body);
        }
        break;
    }
    default:
        break;
    }
    request_resume(request);
}

enum trigger_start request_trigger_start(struct request *request, enum config_trigger_kind kind)
{
    const struct config_trigger *trigger = &request->behavior->triggers[kind];
    if (!trigger->set)
        return TRIGGER_NONE;
    struct config *config = request->generation->config;
    bool include_body = trigger->include_body && event_trigger_is_request((enum event_trigger)kind);
    size_t body_limit = kind == CONFIG_TRIGGER_VIEWER_REQUEST ? EVENT_VIEWER_BODY_LIMIT : EVENT_ORIGIN_BODY_LIMIT;
    if (include_body && !request->upload_only && request->body_kind != HTTP1_BODY_NONE) {
        bool enough = false;
        if (!request_collect_body(request, body_limit, &enough)) {
            log_info("request %s: malformed chunked request body", request->id);
            request->viewer->close_after_response = true;
            request->status = 400;
            request->error_reason = "malformed chunked request body";
            request->step = STEP_SYNTH;
            return TRIGGER_DECIDED;
        }
        if (!enough) {
            request->collect_limit = body_limit;
            return TRIGGER_WAITING_FOR_BODY;
        }
    }
    struct event_input *input = build_event(request, kind);
    if (include_body) {
        /* Always base64 on input; at most the trigger's limit (spec §1.5). */
        struct event_request_body *body = &input->request.body;
        slice_t data =
            request->upload_only ? request->upload : (slice_t){request->collected_body.data, request->collected_body.len};
        body->input_truncated = !request->upload_only && (!request->body_done || data.len > body_limit);
        if (data.len > body_limit)
            data.len = body_limit;
        body->action = EVENT_BODY_READ_ONLY;
        body->encoding = EVENT_BODY_BASE64;
        body->data = event_base64_encode(&request->arena, data);
        input->request.has_body = true;
    }
    request->hook_input = input;
    request->hook_trigger = kind;
    struct hooks_invocation invocation = {
        .config = config,
        .function_index = trigger->function_index,
        .trigger = (enum event_trigger)kind,
        .timeout_ms = trigger->timeout_ms,
        .memory_mb = trigger->memory_mb,
        .request_id = slice_from_cstr(request->id),
        .event = input,
        .log_capture = request_trace_log_capture(request),
    };
    if (!hooks_invoke(request->viewer->thread->hooks, &invocation, &request->hook_call, on_function_done, request)) {
        const char *function = config->functions[trigger->function_index].name;
        log_warn("request %s: function %s (%s) throttled: %d events in flight or waiting (workers.max_concurrency)", request->id,
                 function, event_trigger_name((enum event_trigger)kind), config->workers.max_concurrency);
        request_trace_trigger(request, kind, "throttled", -1, "workers.max_concurrency reached");
        fail_with(request, 503, "LambdaLimitExceeded",
                  arena_printf(&request->arena, "function %s (%s) throttled: workers.max_concurrency reached", function,
                               event_trigger_name((enum event_trigger)kind)));
        return TRIGGER_DECIDED;
    }
    return TRIGGER_SUSPENDED;
}
