/* fuzz_event_result.c — libFuzzer target: arbitrary bytes as a function's
 * result at each of the four triggers, through event_parse_result (JSON,
 * which becomes string.buffer's format first) and event_parse_result_compact
 * (that format as it comes, its header map whole or as changes), both read
 * by one reader, and then event_validate_result against a fixed input event.
 *
 * Nothing may crash, leak or hang; a rejected result must name a rule and a
 * field. An accepted result must not point into the input bytes (the proxy
 * frees them once the parse returns: results live in the arena) and holds no
 * NUL in any string. Header changes that pass validation, merged into the
 * input's map, must pass it as a whole map too (what the proxy relies on when
 * it checks changes only). The input events are parsed once from JSON with
 * event_parse_event.
 */
#include "../../hooks/event.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const input_events[EVENT_TRIGGER_COUNT] = {
    "{\"Records\":[{\"cf\":{\"config\":{\"distributionDomainName\":\"d.example\",\"distributionId\":\"E1\",\"eventType\":"
    "\"viewer-request\",\"requestId\":\"r\"},\"request\":{\"body\":{\"inputTruncated\":false,\"action\":\"read-only\","
    "\"encoding\":\"base64\",\"data\":\"\"},\"clientIp\":\"203.0.113.1\",\"headers\":{\"host\":[{\"key\":\"Host\",\"value\":"
    "\"d.example\"}]},\"method\":\"POST\",\"querystring\":\"\",\"uri\":\"/\"}}}]}",
    "{\"Records\":[{\"cf\":{\"config\":{\"distributionDomainName\":\"d.example\",\"distributionId\":\"E1\",\"eventType\":"
    "\"origin-request\",\"requestId\":\"r\"},\"request\":{\"clientIp\":\"203.0.113.1\",\"headers\":{\"host\":[{\"key\":"
    "\"Host\",\"value\":\"example.org\"}],\"via\":[{\"key\":\"Via\",\"value\":\"2.0 x\"}]},\"method\":\"GET\",\"origin\":"
    "{\"custom\":{\"customHeaders\":{},\"domainName\":\"example.org\",\"keepaliveTimeout\":5,\"path\":\"\",\"port\":443,"
    "\"protocol\":\"https\",\"readTimeout\":30,\"sslProtocols\":[\"TLSv1.2\"]}},\"querystring\":\"\",\"uri\":\"/\"}}}]}",
    "{\"Records\":[{\"cf\":{\"config\":{\"distributionDomainName\":\"d.example\",\"distributionId\":\"E1\",\"eventType\":"
    "\"origin-response\",\"requestId\":\"r\"},\"request\":{\"clientIp\":\"203.0.113.1\",\"headers\":{},\"method\":\"GET\","
    "\"querystring\":\"\",\"uri\":\"/\"},\"response\":{\"headers\":{\"transfer-encoding\":[{\"key\":\"Transfer-Encoding\","
    "\"value\":\"chunked\"}]},\"status\":\"200\",\"statusDescription\":\"OK\"}}}]}",
    "{\"Records\":[{\"cf\":{\"config\":{\"distributionDomainName\":\"d.example\",\"distributionId\":\"E1\",\"eventType\":"
    "\"viewer-response\",\"requestId\":\"r\"},\"request\":{\"clientIp\":\"203.0.113.1\",\"headers\":{},\"method\":\"GET\","
    "\"querystring\":\"\",\"uri\":\"/\"},\"response\":{\"headers\":{},\"status\":\"200\",\"statusDescription\":\"OK\"}}}]}",
};

/* The input events are parsed once; their arena stays reachable (no leak). */
static struct arena input_arena;
static struct event_input inputs[EVENT_TRIGGER_COUNT];
static bool inputs_ready;

static void parse_inputs(void)
{
    arena_init(&input_arena);
    for (int t = 0; t < EVENT_TRIGGER_COUNT; t++) {
        struct event_error error = {0};
        if (!event_parse_event(input_events[t], strlen(input_events[t]), &input_arena, &inputs[t], &error) ||
            inputs[t].trigger != (enum event_trigger)t)
            abort();
    }
    inputs_ready = true;
}

/* The checks every accepted string passes: outside the input, no NUL. */
static void check_slice(slice_t s, const uint8_t *data, size_t size)
{
    if (s.len == 0)
        return;
    const uint8_t *p = (const uint8_t *)s.ptr;
    if ((p >= data && p < data + size) || memchr(s.ptr, '\0', s.len) != NULL)
        abort();
}

static void check_headers(const struct event_headers *headers, const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < headers->count; i++) {
        check_slice(headers->items[i].name, data, size);
        for (size_t j = 0; j < headers->items[i].value_count; j++) {
            check_slice(headers->items[i].values[j].key, data, size);
            check_slice(headers->items[i].values[j].value, data, size);
        }
    }
}

static void check_result_slices(const struct event_result *result, const uint8_t *data, size_t size)
{
    if (result->kind == EVENT_RESULT_RESPONSE) {
        const struct event_response *response = &result->response;
        check_slice(response->status_description, data, size);
        check_slice(response->body, data, size);
        check_headers(&response->headers, data, size);
        return;
    }
    const struct event_request *request = &result->request;
    slice_t fields[] = {request->client_ip, request->method, request->uri, request->querystring, request->body.data};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        check_slice(fields[i], data, size);
    check_headers(&request->headers, data, size);
    if (request->has_origin) {
        const struct event_origin *origin = &request->origin;
        slice_t origin_fields[] = {origin->domain_name, origin->path, origin->protocol, origin->auth_method, origin->region};
        for (size_t i = 0; i < sizeof origin_fields / sizeof *origin_fields; i++)
            check_slice(origin_fields[i], data, size);
        for (size_t i = 0; i < origin->ssl_protocol_count; i++)
            check_slice(origin->ssl_protocols[i], data, size);
        check_headers(&origin->custom_headers, data, size);
    }
}

/* Parses `data` as a result at every trigger (JSON, or compact with its
 * headers sent as `changes`) and validates what parses; any rejection must
 * name a rule and a field. */
static void check_every_trigger(bool json, enum event_header_changes changes, const uint8_t *data, size_t size, struct arena *arena)
{
    for (int t = 0; t < EVENT_TRIGGER_COUNT; t++) {
        struct event_result result;
        struct event_error error = {0};
        bool parsed =
            json ? event_parse_result((enum event_trigger)t, (const char *)data, size, arena, &result, &error)
                 : event_parse_result_compact((enum event_trigger)t, (const char *)data, size, changes, arena, &result, &error);
        if (!parsed) {
            if (error.rule == NULL || error.field[0] == '\0')
                abort();
            continue;
        }
        check_result_slices(&result, data, size);
        error = (struct event_error){0};
        if (!event_validate_result(&inputs[t], &result, &error)) {
            if (error.rule == NULL || error.field[0] == '\0')
                abort();
            continue;
        }
        event_result_merge_header_changes(&inputs[t], &result, arena);
        if (result.request.headers_are_changes || result.response.headers_are_changes ||
            !event_validate_result(&inputs[t], &result, &error))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!inputs_ready)
        parse_inputs();
    struct arena arena;
    arena_init(&arena);
    check_every_trigger(true, EVENT_HEADERS_WHOLE, data, size, &arena);
    /* The same bytes as a worker's compact (string.buffer) answer. */
    check_every_trigger(false, EVENT_HEADERS_WHOLE, data, size, &arena);
    check_every_trigger(false, EVENT_HEADERS_REQUEST_CHANGES, data, size, &arena);
    check_every_trigger(false, EVENT_HEADERS_RESPONSE_CHANGES, data, size, &arena);
    arena_destroy(&arena);
    return 0;
}
