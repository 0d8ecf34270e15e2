/* event.c — the Lambda@Edge event: header lists, and encoding an event for
 * a function, in the contract's JSON (spec §1.8, keys in the doc's
 * alphabetical order, with yajl_gen) or in LuaJIT's serialization format for
 * the workers, and a parsed result back to JSON (verge invoke). Reading results is event_parse.c; validating them against the
 * §2.6 checklist is rules.c.
 *
 * Pure: no I/O, no clock, no global mutable state, so it is thread-safe. */
#include "event.h"
#include "event_format.h"

#include <stdio.h>
#include <stdlib.h>
#include <yajl/yajl_gen.h>

static const char *const trigger_names[EVENT_TRIGGER_COUNT] = {"viewer-request", "origin-request", "origin-response",
                                                               "viewer-response"};

const char *event_trigger_name(enum event_trigger trigger)
{
    return (unsigned)trigger < EVENT_TRIGGER_COUNT ? trigger_names[trigger] : "unknown";
}

bool event_trigger_is_request(enum event_trigger trigger)
{
    return trigger == EVENT_VIEWER_REQUEST || trigger == EVENT_ORIGIN_REQUEST;
}

bool event_error_set(struct event_error *error, enum event_trigger trigger, const char *rule, const char *fmt, ...)
{
    error->trigger = trigger;
    error->rule = rule;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error->field, sizeof error->field, fmt, ap);
    va_end(ap);
    return false;
}

/* ---- headers ------------------------------------------------------------- */

const struct event_header *event_headers_find(const struct event_headers *headers, slice_t lower_name)
{
    for (size_t i = 0; i < headers->count; i++) {
        slice_t name = headers->items[i].name;
        /* (the first byte before a call to memcmp: names of one length are common) */
        if (name.len == lower_name.len &&
            (name.len == 0 || (name.ptr[0] == lower_name.ptr[0] && memcmp(name.ptr, lower_name.ptr, name.len) == 0)))
            return &headers->items[i];
    }
    return NULL;
}

/* Grows an arena array by one element (old storage stays in the arena). Its
 * capacity follows from the count: `first` (a power of two) up to `first`
 * elements, then the next power of two; a new block only when count reaches
 * it. */
static void *arena_grow_from(struct arena *arena, void *items, size_t count, size_t size, size_t first)
{
    if (count != 0 && (count < first || (count & (count - 1)) != 0))
        return items;
    size_t capacity = count == 0 ? first : count * 2;
    void *grown = arena_alloc(arena, capacity * size);
    if (count != 0)
        memcpy(grown, items, count * size);
    return grown;
}

static void *arena_grow(struct arena *arena, void *items, size_t count, size_t size)
{
    return arena_grow_from(arena, items, count, size, ARENA_GROW_FIRST_HEADERS);
}

static slice_t lower_copy(struct arena *arena, slice_t s)
{
    char *p = arena_alloc(arena, s.len + 1);
    for (size_t i = 0; i < s.len; i++)
        p[i] = (s.ptr[i] >= 'A' && s.ptr[i] <= 'Z') ? (char)(s.ptr[i] + 32) : s.ptr[i];
    return (slice_t){p, s.len};
}

static void headers_add_named(struct arena *arena, struct event_headers *headers, slice_t name, slice_t key, slice_t value)
{
    struct event_header *header = (struct event_header *)event_headers_find(headers, name);
    if (header == NULL) {
        headers->items = arena_grow(arena, headers->items, headers->count, sizeof *headers->items);
        header = &headers->items[headers->count++];
        *header = (struct event_header){.name = name};
    }
    /* most headers have one value */
    header->values = arena_grow_from(arena, header->values, header->value_count, sizeof *header->values, ARENA_GROW_FIRST_VALUES);
    header->values[header->value_count++] = (struct event_header_value){key, value};
}

void event_headers_add(struct arena *arena, struct event_headers *headers, slice_t key, slice_t value)
{
    headers_add_named(arena, headers, lower_copy(arena, key), arena_slice_copy(arena, key), arena_slice_copy(arena, value));
}

void event_headers_add_borrowed(struct arena *arena, struct event_headers *headers, slice_t key, slice_t value)
{
    bool lower = true;
    for (size_t i = 0; i < key.len && lower; i++)
        lower = !(key.ptr[i] >= 'A' && key.ptr[i] <= 'Z');
    headers_add_named(arena, headers, lower ? key : lower_copy(arena, key), key, value);
}

void event_headers_add_lower(struct arena *arena, struct event_headers *headers, slice_t lower_name, slice_t key, slice_t value)
{
    headers_add_named(arena, headers, lower_name, key, value);
}

slice_t event_capitalised_key(struct arena *arena, slice_t name)
{
    char *p = arena_alloc(arena, name.len + 1);
    bool start = true;
    for (size_t i = 0; i < name.len; i++) {
        char c = name.ptr[i];
        if (start && c >= 'a' && c <= 'z')
            c = (char)(c - 32);
        p[i] = c;
        start = c == '-';
    }
    return (slice_t){p, name.len};
}

/* ---- what a result changed ----------------------------------------------------- */

static bool header_lists_equal(const struct event_header *a, const struct event_header *b)
{
    if (a->value_count != b->value_count)
        return false;
    for (size_t i = 0; i < a->value_count; i++)
        if (!slice_equal(a->values[i].value, b->values[i].value) || !slice_equal(a->values[i].key, b->values[i].key))
            return false;
    return true;
}

/* Whole maps: the same names with the same lists (the order of names does
 * not matter: Lua tables have none). Changes: any entry is a change. */
static bool headers_changed(const struct event_headers *input, const struct event_headers *result, bool result_is_changes)
{
    if (result_is_changes)
        return result->count > 0;
    if (input->count != result->count)
        return true;
    for (size_t i = 0; i < result->count; i++) {
        const struct event_header *before = event_headers_find(input, result->items[i].name);
        if (before == NULL || !header_lists_equal(before, &result->items[i]))
            return true;
    }
    return false;
}

static bool origin_changed(const struct event_origin *a, const struct event_origin *b)
{
    return a->kind != b->kind || !slice_equal(a->domain_name, b->domain_name) || !slice_equal(a->path, b->path) ||
           a->port != b->port || !slice_equal(a->protocol, b->protocol) ||
           headers_changed(&a->custom_headers, &b->custom_headers, false);
}

bool event_result_changes_input(const struct event_input *input, const struct event_result *result)
{
    if (event_trigger_is_request(input->trigger)) {
        if (result->kind == EVENT_RESULT_RESPONSE)
            return true;
        const struct event_request *before = &input->request, *after = &result->request;
        return (after->has_method && !slice_equal(before->method, after->method)) || !slice_equal(before->uri, after->uri) ||
               (after->has_querystring && !slice_equal(before->querystring, after->querystring)) ||
               (after->has_body && after->body.action == EVENT_BODY_REPLACE) ||
               (after->has_origin && before->has_origin && origin_changed(&before->origin, &after->origin)) ||
               headers_changed(&before->headers, &after->headers, after->headers_are_changes);
    }
    const struct event_response *before = &input->response, *after = &result->response;
    return before->status != after->status ||
           (after->has_status_description && !slice_equal(before->status_description, after->status_description)) ||
           after->has_body || headers_changed(&before->headers, &after->headers, after->headers_are_changes);
}

/* ---- encoding ------------------------------------------------------------ */

/* One tree, two spellings: JSON (yajl_gen) for the contract's own format,
 * or LuaJIT's serialization format (what string.buffer's decode reads) for
 * the proxy's workers, which turn it into Lua tables in one C call instead
 * of an API call per value. The gen_* functions below walk the tree once
 * for both; they are inlined into each entry point, where the spelling is a
 * constant, so the compact spelling compiles to plain stores into room
 * reserved once for the whole event (compact_bound), with no call per value.
 * Containers in the compact spelling carry their element count as a 5-byte
 * number (0xff + u32), known when they open. */
struct tree_writer {
    yajl_gen gen; /* NULL: compact */
    char *p;      /* compact: where the next byte goes */
    /* compact: where request.headers and response.headers begin and end
     * (event_compact_layout), NULL when not written */
    char *headers_start[2], *headers_end[2];
};

#define ENCODE_INLINE static inline __attribute__((always_inline))

const slice_t event_keys[EVENT_KEY_COUNT] = {
    [EVENT_KEY_RECORDS] = SLICE_LITERAL("Records"),
    [EVENT_KEY_CF] = SLICE_LITERAL("cf"),
    [EVENT_KEY_CONFIG] = SLICE_LITERAL("config"),
    [EVENT_KEY_DISTRIBUTION_DOMAIN_NAME] = SLICE_LITERAL("distributionDomainName"),
    [EVENT_KEY_DISTRIBUTION_ID] = SLICE_LITERAL("distributionId"),
    [EVENT_KEY_EVENT_TYPE] = SLICE_LITERAL("eventType"),
    [EVENT_KEY_REQUEST_ID] = SLICE_LITERAL("requestId"),
    [EVENT_KEY_REQUEST] = SLICE_LITERAL("request"),
    [EVENT_KEY_RESPONSE] = SLICE_LITERAL("response"),
    [EVENT_KEY_CLIENT_IP] = SLICE_LITERAL("clientIp"),
    [EVENT_KEY_HEADERS] = SLICE_LITERAL("headers"),
    [EVENT_KEY_METHOD] = SLICE_LITERAL("method"),
    [EVENT_KEY_ORIGIN] = SLICE_LITERAL("origin"),
    [EVENT_KEY_QUERYSTRING] = SLICE_LITERAL("querystring"),
    [EVENT_KEY_URI] = SLICE_LITERAL("uri"),
    [EVENT_KEY_KEY] = SLICE_LITERAL("key"),
    [EVENT_KEY_VALUE] = SLICE_LITERAL("value"),
    [EVENT_KEY_BODY] = SLICE_LITERAL("body"),
    [EVENT_KEY_INPUT_TRUNCATED] = SLICE_LITERAL("inputTruncated"),
    [EVENT_KEY_ACTION] = SLICE_LITERAL("action"),
    [EVENT_KEY_ENCODING] = SLICE_LITERAL("encoding"),
    [EVENT_KEY_DATA] = SLICE_LITERAL("data"),
    [EVENT_KEY_STATUS] = SLICE_LITERAL("status"),
    [EVENT_KEY_STATUS_DESCRIPTION] = SLICE_LITERAL("statusDescription"),
    [EVENT_KEY_BODY_ENCODING] = SLICE_LITERAL("bodyEncoding"),
    [EVENT_KEY_CUSTOM] = SLICE_LITERAL("custom"),
    [EVENT_KEY_S3] = SLICE_LITERAL("s3"),
    [EVENT_KEY_CUSTOM_HEADERS] = SLICE_LITERAL("customHeaders"),
    [EVENT_KEY_DOMAIN_NAME] = SLICE_LITERAL("domainName"),
    [EVENT_KEY_KEEPALIVE_TIMEOUT] = SLICE_LITERAL("keepaliveTimeout"),
    [EVENT_KEY_PATH] = SLICE_LITERAL("path"),
    [EVENT_KEY_PORT] = SLICE_LITERAL("port"),
    [EVENT_KEY_PROTOCOL] = SLICE_LITERAL("protocol"),
    [EVENT_KEY_READ_TIMEOUT] = SLICE_LITERAL("readTimeout"),
    [EVENT_KEY_SSL_PROTOCOLS] = SLICE_LITERAL("sslProtocols"),
    [EVENT_KEY_AUTH_METHOD] = SLICE_LITERAL("authMethod"),
    [EVENT_KEY_REGION] = SLICE_LITERAL("region"),
};
/* An index is then one byte on the wire (prefix-encoded numbers below 0xe0). */
_Static_assert(EVENT_KEY_COUNT < 0xe0, "dictionary indices are single bytes");

/* Most bytes a string of `len` takes: its prefix-encoded tag (at most 5) and the text. */
#define COMPACT_STRING_BOUND(len) ((size_t)(len) + 5)

/* A container's tag and its element count (always the 5-byte form). */
ENCODE_INLINE void compact_container(struct tree_writer *w, unsigned char tag, uint32_t count)
{
    w->p[0] = (char)tag;
    w->p[1] = (char)0xff;
    memcpy(w->p + 2, &count, 4);
    w->p += 6;
}

/* A string: tag + length as LuaJIT's prefix-encoded number, then the text. */
ENCODE_INLINE void compact_text(struct tree_writer *w, const char *s, size_t len)
{
    char *p = compact_prefix(w->p, (uint32_t)len + COMPACT_STRING);
    if (len > 0)
        memcpy(p, s, len);
    w->p = p + len;
}

/* `count`: the pairs the map will hold (compact only). */
ENCODE_INLINE void w_map_open(struct tree_writer *w, uint32_t count)
{
    if (w->gen)
        yajl_gen_map_open(w->gen);
    else
        compact_container(w, COMPACT_HASH, count);
}

ENCODE_INLINE void w_map_close(struct tree_writer *w)
{
    if (w->gen)
        yajl_gen_map_close(w->gen);
}

/* `count`: the elements the array will hold (compact only; a 1-based array counts slot 0 too). */
ENCODE_INLINE void w_array_open(struct tree_writer *w, size_t count)
{
    if (w->gen)
        yajl_gen_array_open(w->gen);
    else
        compact_container(w, COMPACT_ARRAY_FROM_1, (uint32_t)count + 1);
}

ENCODE_INLINE void w_array_close(struct tree_writer *w)
{
    if (w->gen)
        yajl_gen_array_close(w->gen);
}

ENCODE_INLINE void w_string(struct tree_writer *w, const char *s, size_t len)
{
    if (w->gen)
        yajl_gen_string(w->gen, (const unsigned char *)s, len);
    else
        compact_text(w, s, len);
}

ENCODE_INLINE void w_integer(struct tree_writer *w, long long n)
{
    if (w->gen) {
        yajl_gen_integer(w->gen, n);
        return;
    }
    double d = (double)n; /* Lua numbers are doubles */
    *w->p++ = COMPACT_NUMBER;
    memcpy(w->p, &d, sizeof d);
    w->p += sizeof d;
}

ENCODE_INLINE void w_bool(struct tree_writer *w, bool value)
{
    if (w->gen)
        yajl_gen_bool(w->gen, value);
    else
        *w->p++ = value ? COMPACT_TRUE : COMPACT_FALSE;
}

ENCODE_INLINE void gen_slice(struct tree_writer *gen, slice_t s)
{
    w_string(gen, s.len ? s.ptr : "", s.len);
}

/* A literal value: its length is a constant, so the compact copy is a few stores. */
#define gen_literal(gen, literal) w_string((gen), (literal), sizeof(literal) - 1)

/* A field name of the schema: two bytes in the compact spelling, a
 * reference into the dictionary (event_keys). */
ENCODE_INLINE void gen_key(struct tree_writer *w, enum event_key key)
{
    if (w->gen) {
        yajl_gen_string(w->gen, (const unsigned char *)event_keys[key].ptr, event_keys[key].len);
        return;
    }
    w->p[0] = (char)COMPACT_DICT_KEY;
    w->p[1] = (char)key;
    w->p += 2;
}

ENCODE_INLINE void gen_headers(struct tree_writer *gen, const struct event_headers *headers)
{
    w_map_open(gen, (uint32_t)headers->count);
    for (size_t i = 0; i < headers->count; i++) {
        const struct event_header *header = &headers->items[i];
        gen_slice(gen, header->name);
        w_array_open(gen, header->value_count);
        for (size_t j = 0; j < header->value_count; j++) {
            w_map_open(gen, 2);
            gen_key(gen, EVENT_KEY_KEY);
            gen_slice(gen, header->values[j].key);
            gen_key(gen, EVENT_KEY_VALUE);
            gen_slice(gen, header->values[j].value);
            w_map_close(gen);
        }
        w_array_close(gen);
    }
    w_map_close(gen);
}

ENCODE_INLINE void gen_origin(struct tree_writer *gen, const struct event_origin *origin)
{
    w_map_open(gen, 1);
    if (origin->kind == EVENT_ORIGIN_CUSTOM) {
        gen_key(gen, EVENT_KEY_CUSTOM);
        w_map_open(gen, 8);
        gen_key(gen, EVENT_KEY_CUSTOM_HEADERS);
        gen_headers(gen, &origin->custom_headers);
        gen_key(gen, EVENT_KEY_DOMAIN_NAME);
        gen_slice(gen, origin->domain_name);
        gen_key(gen, EVENT_KEY_KEEPALIVE_TIMEOUT);
        w_integer(gen, origin->keepalive_timeout);
        gen_key(gen, EVENT_KEY_PATH);
        gen_slice(gen, origin->path);
        gen_key(gen, EVENT_KEY_PORT);
        w_integer(gen, origin->port);
        gen_key(gen, EVENT_KEY_PROTOCOL);
        gen_slice(gen, origin->protocol);
        gen_key(gen, EVENT_KEY_READ_TIMEOUT);
        w_integer(gen, origin->read_timeout);
        gen_key(gen, EVENT_KEY_SSL_PROTOCOLS);
        w_array_open(gen, origin->ssl_protocol_count);
        for (size_t i = 0; i < origin->ssl_protocol_count; i++)
            gen_slice(gen, origin->ssl_protocols[i]);
        w_array_close(gen);
        w_map_close(gen);
    } else {
        gen_key(gen, EVENT_KEY_S3);
        w_map_open(gen, 5);
        gen_key(gen, EVENT_KEY_AUTH_METHOD);
        gen_slice(gen, origin->auth_method);
        gen_key(gen, EVENT_KEY_CUSTOM_HEADERS);
        gen_headers(gen, &origin->custom_headers);
        gen_key(gen, EVENT_KEY_DOMAIN_NAME);
        gen_slice(gen, origin->domain_name);
        gen_key(gen, EVENT_KEY_PATH);
        gen_slice(gen, origin->path);
        gen_key(gen, EVENT_KEY_REGION);
        gen_slice(gen, origin->region);
        w_map_close(gen);
    }
    w_map_close(gen);
}

/* `result`: a parsed result (JSON only), whose optional fields are written
 * only when it has them; an event's request always has them. */
ENCODE_INLINE void gen_request(struct tree_writer *gen, enum event_trigger trigger, const struct event_request *request,
                               bool result)
{
    bool body = request->has_body && event_trigger_is_request(trigger);
    bool origin = request->has_origin && (trigger == EVENT_ORIGIN_REQUEST || trigger == EVENT_ORIGIN_RESPONSE);
    bool client_ip = !result || request->has_client_ip;
    bool method = !result || request->has_method;
    bool querystring = !result || request->has_querystring;
    w_map_open(gen, 2 + client_ip + method + querystring + body + origin);
    if (body) {
        gen_key(gen, EVENT_KEY_BODY);
        w_map_open(gen, 4);
        gen_key(gen, EVENT_KEY_INPUT_TRUNCATED);
        w_bool(gen, request->body.input_truncated);
        gen_key(gen, EVENT_KEY_ACTION);
        if (request->body.action == EVENT_BODY_REPLACE)
            gen_literal(gen, "replace");
        else
            gen_literal(gen, "read-only");
        gen_key(gen, EVENT_KEY_ENCODING);
        if (request->body.encoding == EVENT_BODY_TEXT)
            gen_literal(gen, "text");
        else
            gen_literal(gen, "base64");
        gen_key(gen, EVENT_KEY_DATA);
        gen_slice(gen, request->body.data);
        w_map_close(gen);
    }
    if (client_ip) {
        gen_key(gen, EVENT_KEY_CLIENT_IP);
        gen_slice(gen, request->client_ip);
    }
    gen_key(gen, EVENT_KEY_HEADERS);
    gen->headers_start[0] = gen->p;
    gen_headers(gen, &request->headers);
    gen->headers_end[0] = gen->p;
    if (method) {
        gen_key(gen, EVENT_KEY_METHOD);
        gen_slice(gen, request->method);
    }
    if (origin) {
        gen_key(gen, EVENT_KEY_ORIGIN);
        gen_origin(gen, &request->origin);
    }
    if (querystring) {
        gen_key(gen, EVENT_KEY_QUERYSTRING);
        gen_slice(gen, request->querystring);
    }
    gen_key(gen, EVENT_KEY_URI);
    gen_slice(gen, request->uri);
    w_map_close(gen);
}

/* The status as decimal text (it is a string in the event). */
static size_t status_text(int status, char out[24])
{
    char *p = out;
    if (status < 0)
        *p++ = '-';
    p = put_decimal(p, status < 0 ? 0u - (unsigned)status : (unsigned)status);
    return (size_t)(p - out);
}

/* `result`: as for gen_request (a body and bodyEncoding when it has a
 * body; statusDescription only when it has one). */
ENCODE_INLINE void gen_response(struct tree_writer *gen, const struct event_response *response, bool result)
{
    char status[24];
    size_t status_len = status_text(response->status, status);
    bool body = result && response->has_body;
    bool status_description = !result || response->has_status_description;
    w_map_open(gen, 2 + 2 * body + status_description);
    if (body) {
        gen_key(gen, EVENT_KEY_BODY);
        gen_slice(gen, response->body);
        gen_key(gen, EVENT_KEY_BODY_ENCODING);
        if (response->body_encoding == EVENT_BODY_BASE64)
            gen_literal(gen, "base64");
        else
            gen_literal(gen, "text");
    }
    gen_key(gen, EVENT_KEY_HEADERS);
    gen->headers_start[1] = gen->p;
    gen_headers(gen, &response->headers);
    gen->headers_end[1] = gen->p;
    gen_key(gen, EVENT_KEY_STATUS);
    w_string(gen, status, status_len);
    if (status_description) {
        gen_key(gen, EVENT_KEY_STATUS_DESCRIPTION);
        gen_slice(gen, response->status_description);
    }
    w_map_close(gen);
}

ENCODE_INLINE void encode_input(struct tree_writer *gen, const struct event_input *input)
{
    bool response = !event_trigger_is_request(input->trigger);
    w_map_open(gen, 1);
    gen_key(gen, EVENT_KEY_RECORDS);
    w_array_open(gen, 1);
    w_map_open(gen, 1);
    gen_key(gen, EVENT_KEY_CF);
    w_map_open(gen, 2 + response);
    gen_key(gen, EVENT_KEY_CONFIG);
    w_map_open(gen, 4);
    gen_key(gen, EVENT_KEY_DISTRIBUTION_DOMAIN_NAME);
    gen_slice(gen, input->config.distribution_domain_name);
    gen_key(gen, EVENT_KEY_DISTRIBUTION_ID);
    gen_slice(gen, input->config.distribution_id);
    gen_key(gen, EVENT_KEY_EVENT_TYPE);
    const char *event_type = event_trigger_name(input->trigger);
    w_string(gen, event_type, strlen(event_type));
    gen_key(gen, EVENT_KEY_REQUEST_ID);
    gen_slice(gen, input->config.request_id);
    w_map_close(gen);
    gen_key(gen, EVENT_KEY_REQUEST);
    gen_request(gen, input->trigger, &input->request, false);
    if (response) {
        gen_key(gen, EVENT_KEY_RESPONSE);
        gen_response(gen, &input->response, false);
    }
    w_map_close(gen);
    w_map_close(gen);
    w_array_close(gen);
    w_map_close(gen);
}

void event_encode(const struct event_input *input, struct bytebuf *out)
{
    struct tree_writer writer = {.gen = yajl_gen_alloc(NULL)};
    VERGE_ASSERT(writer.gen != NULL);
    encode_input(&writer, input);
    const unsigned char *text;
    size_t len;
    VERGE_ASSERT(yajl_gen_get_buf(writer.gen, &text, &len) == yajl_gen_status_ok);
    bytebuf_append(out, text, len);
    yajl_gen_free(writer.gen);
}

void event_encode_result(enum event_trigger trigger, const struct event_result *result, struct bytebuf *out)
{
    struct tree_writer writer = {.gen = yajl_gen_alloc(NULL)};
    VERGE_ASSERT(writer.gen != NULL);
    if (result->kind == EVENT_RESULT_RESPONSE)
        gen_response(&writer, &result->response, true);
    else
        gen_request(&writer, trigger, &result->request, true);
    const unsigned char *text;
    size_t len;
    VERGE_ASSERT(yajl_gen_get_buf(writer.gen, &text, &len) == yajl_gen_status_ok);
    bytebuf_append(out, text, len);
    yajl_gen_free(writer.gen);
}

/* Bytes the fixed part of any event takes at most in the compact spelling:
 * keys (two-byte dictionary references), literal values, container heads and
 * numbers (about 200; the bound leaves room for the schema to grow). */
#define COMPACT_FIXED_BOUND 1024

static size_t compact_headers_bound(const struct event_headers *headers)
{
    size_t n = 0;
    for (size_t i = 0; i < headers->count; i++) {
        const struct event_header *header = &headers->items[i];
        n += COMPACT_STRING_BOUND(header->name.len) + 6;
        /* per value: its map head, the references for "key" and "value", the two strings */
        for (size_t j = 0; j < header->value_count; j++)
            n += 6 + 2 + 2 + COMPACT_STRING_BOUND(header->values[j].key.len) + COMPACT_STRING_BOUND(header->values[j].value.len);
    }
    return n + 6;
}

/* At least the bytes event_encode_compact writes for `input`. */
static size_t compact_bound(const struct event_input *input)
{
    const struct event_request *request = &input->request;
    size_t n = COMPACT_FIXED_BOUND + COMPACT_STRING_BOUND(input->config.distribution_domain_name.len) +
               COMPACT_STRING_BOUND(input->config.distribution_id.len) + COMPACT_STRING_BOUND(input->config.request_id.len) +
               COMPACT_STRING_BOUND(request->client_ip.len) + COMPACT_STRING_BOUND(request->method.len) +
               COMPACT_STRING_BOUND(request->uri.len) + COMPACT_STRING_BOUND(request->querystring.len) +
               compact_headers_bound(&request->headers);
    if (request->has_body)
        n += COMPACT_STRING_BOUND(request->body.data.len);
    if (request->has_origin) {
        const struct event_origin *origin = &request->origin;
        n += COMPACT_STRING_BOUND(origin->domain_name.len) + COMPACT_STRING_BOUND(origin->path.len) +
             COMPACT_STRING_BOUND(origin->protocol.len) + COMPACT_STRING_BOUND(origin->auth_method.len) +
             COMPACT_STRING_BOUND(origin->region.len) + compact_headers_bound(&origin->custom_headers);
        for (size_t i = 0; i < origin->ssl_protocol_count; i++)
            n += COMPACT_STRING_BOUND(origin->ssl_protocols[i].len);
    }
    if (!event_trigger_is_request(input->trigger))
        n += COMPACT_STRING_BOUND(input->response.status_description.len) + compact_headers_bound(&input->response.headers);
    return n;
}

void event_encode_compact(const struct event_input *input, struct bytebuf *out, struct event_compact_layout *layout)
{
    size_t bound = compact_bound(input);
    bytebuf_reserve(out, bound);
    char *start = out->data + out->len;
    struct tree_writer writer = {.gen = NULL, .p = start};
    encode_input(&writer, input);
    size_t written = (size_t)(writer.p - start);
    VERGE_ASSERT(written <= bound);
    out->len += written;
    if (layout != NULL)
        for (int i = 0; i < 2; i++) {
            layout->headers[i].at = writer.headers_start[i] ? (uint32_t)(writer.headers_start[i] - start) : 0;
            layout->headers[i].len = writer.headers_start[i] ? (uint32_t)(writer.headers_end[i] - writer.headers_start[i]) : 0;
        }
}
