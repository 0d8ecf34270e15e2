/* event.c — Lambda@Edge event encoding, result parsing and validation.
 *
 * Encoding writes the JSON a function receives (spec §1.8, keys in the doc's
 * alphabetical order) with yajl_gen. Parsing builds yajl_tree's node type in
 * the caller's arena with yajl's callback parser (no allocation per node,
 * nesting deeper than EVENT_MAX_JSON_DEPTH refused while parsing). Parsing checks shape only; event_validate_result
 * applies the §2.6 checklist from two tables: which fields each trigger may
 * change (field_rules) and which headers are disallowed / read-only /
 * not-addable / denied in customHeaders (header_rules).
 *
 * Pure: no I/O, no clock, no global mutable state, so it is thread-safe.
 */
#include "event.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

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
    for (size_t i = 0; i < headers->count; i++)
        if (slice_equal(headers->items[i].name, lower_name))
            return &headers->items[i];
    return NULL;
}

/* Grows an arena array by one element (old storage stays in the arena). */
static void *arena_grow(struct arena *arena, void *items, size_t count, size_t size)
{
    /* capacity is the next power of two; a new block only when count hits it */
    if (count != 0 && (count & (count - 1)) != 0)
        return items;
    size_t capacity = count == 0 ? 4 : count * 2;
    void *grown = arena_alloc(arena, capacity * size);
    if (count != 0)
        memcpy(grown, items, count * size);
    return grown;
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
    header->values = arena_grow(arena, header->values, header->value_count, sizeof *header->values);
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

/* `content-type` → `Content-Type` (spec §1.4, missing key). */
static slice_t capitalised_key(struct arena *arena, slice_t name)
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

/* ---- encoding ------------------------------------------------------------ */

/* One tree, two spellings: JSON (yajl_gen) for the contract's own format,
 * or LuaJIT's serialization format (what string.buffer's decode reads) for
 * the proxy's workers, which turn it into Lua tables in one C call instead
 * of an API call per value. Containers in the compact spelling get a 5-byte
 * count that is patched when they close. */
struct tree_writer {
    yajl_gen gen; /* NULL: compact */
    struct bytebuf *out;
    int depth;
    struct open_container {
        size_t count_at; /* offset of the u32 after 0xff */
        uint32_t count;
        bool is_array;
        bool expect_key;
    } open[EVENT_MAX_JSON_DEPTH + 1];
};

/* LuaJIT serialization tags (its string.buffer format). */
enum {
    COMPACT_FALSE = 0x01,
    COMPACT_TRUE = 0x02,
    COMPACT_NUMBER = 0x07,
    COMPACT_HASH = 0x09,
    COMPACT_ARRAY_FROM_1 = 0x0c,
    COMPACT_STRING = 0x20,
};

/* Its prefix-encoded unsigned number. */
static void compact_put_u(struct bytebuf *out, uint32_t n)
{
    unsigned char bytes[5];
    size_t len;
    if (n < 0xe0) {
        bytes[0] = (unsigned char)n;
        len = 1;
    } else if (n < 0x1fe0) {
        bytes[0] = (unsigned char)(0xe0 | (((n - 0xe0) >> 8) & 0x1f));
        bytes[1] = (unsigned char)((n - 0xe0) & 0xff);
        len = 2;
    } else {
        bytes[0] = 0xff;
        memcpy(bytes + 1, &n, 4);
        len = 5;
    }
    bytebuf_append(out, bytes, len);
}

/* A value (or key) is written into the open container: count it. */
static void compact_item(struct tree_writer *w)
{
    if (w->depth == 0)
        return;
    struct open_container *c = &w->open[w->depth];
    if (c->is_array) {
        c->count++;
    } else {
        if (c->expect_key)
            c->count++;
        c->expect_key = !c->expect_key;
    }
}

static void compact_open(struct tree_writer *w, bool is_array)
{
    compact_item(w);
    VERGE_ASSERT(w->depth < EVENT_MAX_JSON_DEPTH);
    unsigned char head[2] = {is_array ? COMPACT_ARRAY_FROM_1 : COMPACT_HASH, 0xff};
    bytebuf_append(w->out, head, 2);
    struct open_container *c = &w->open[++w->depth];
    *c = (struct open_container){.count_at = w->out->len, .is_array = is_array, .expect_key = true};
    uint32_t zero = 0;
    bytebuf_append(w->out, &zero, 4);
}

static void compact_close(struct tree_writer *w)
{
    struct open_container *c = &w->open[w->depth--];
    uint32_t count = c->is_array ? c->count + 1 : c->count; /* a 1-based array counts slot 0 */
    memcpy(w->out->data + c->count_at, &count, 4);
}

static void w_map_open(struct tree_writer *w)
{
    if (w->gen)
        yajl_gen_map_open(w->gen);
    else
        compact_open(w, false);
}

static void w_map_close(struct tree_writer *w)
{
    if (w->gen)
        yajl_gen_map_close(w->gen);
    else
        compact_close(w);
}

static void w_array_open(struct tree_writer *w)
{
    if (w->gen)
        yajl_gen_array_open(w->gen);
    else
        compact_open(w, true);
}

static void w_array_close(struct tree_writer *w)
{
    if (w->gen)
        yajl_gen_array_close(w->gen);
    else
        compact_close(w);
}

static void w_string(struct tree_writer *w, const char *s, size_t len)
{
    if (w->gen) {
        yajl_gen_string(w->gen, (const unsigned char *)s, len);
        return;
    }
    compact_item(w);
    uint32_t n = (uint32_t)len + COMPACT_STRING;
    if (n < 0xe0) {
        /* The common case in one reserve: tag+length byte and the text. */
        bytebuf_reserve(w->out, len + 1);
        w->out->data[w->out->len++] = (char)n;
        memcpy(w->out->data + w->out->len, s, len);
        w->out->len += len;
        return;
    }
    compact_put_u(w->out, n);
    bytebuf_append(w->out, s, len);
}

static void w_integer(struct tree_writer *w, long long n)
{
    if (w->gen) {
        yajl_gen_integer(w->gen, n);
        return;
    }
    compact_item(w);
    double d = (double)n; /* Lua numbers are doubles */
    unsigned char tag = COMPACT_NUMBER;
    bytebuf_append(w->out, &tag, 1);
    bytebuf_append(w->out, &d, sizeof d);
}

static void w_bool(struct tree_writer *w, bool value)
{
    if (w->gen) {
        yajl_gen_bool(w->gen, value);
        return;
    }
    compact_item(w);
    unsigned char tag = value ? COMPACT_TRUE : COMPACT_FALSE;
    bytebuf_append(w->out, &tag, 1);
}

static void gen_slice(struct tree_writer *gen, slice_t s)
{
    w_string(gen, s.len ? s.ptr : "", s.len);
}

static void gen_key(struct tree_writer *gen, const char *key)
{
    w_string(gen, key, strlen(key));
}

static void gen_headers(struct tree_writer *gen, const struct event_headers *headers)
{
    w_map_open(gen);
    for (size_t i = 0; i < headers->count; i++) {
        const struct event_header *header = &headers->items[i];
        gen_slice(gen, header->name);
        w_array_open(gen);
        for (size_t j = 0; j < header->value_count; j++) {
            w_map_open(gen);
            gen_key(gen, "key");
            gen_slice(gen, header->values[j].key);
            gen_key(gen, "value");
            gen_slice(gen, header->values[j].value);
            w_map_close(gen);
        }
        w_array_close(gen);
    }
    w_map_close(gen);
}

static void gen_origin(struct tree_writer *gen, const struct event_origin *origin)
{
    w_map_open(gen);
    if (origin->kind == EVENT_ORIGIN_CUSTOM) {
        gen_key(gen, "custom");
        w_map_open(gen);
        gen_key(gen, "customHeaders");
        gen_headers(gen, &origin->custom_headers);
        gen_key(gen, "domainName");
        gen_slice(gen, origin->domain_name);
        gen_key(gen, "keepaliveTimeout");
        w_integer(gen, origin->keepalive_timeout);
        gen_key(gen, "path");
        gen_slice(gen, origin->path);
        gen_key(gen, "port");
        w_integer(gen, origin->port);
        gen_key(gen, "protocol");
        gen_slice(gen, origin->protocol);
        gen_key(gen, "readTimeout");
        w_integer(gen, origin->read_timeout);
        gen_key(gen, "sslProtocols");
        w_array_open(gen);
        for (size_t i = 0; i < origin->ssl_protocol_count; i++)
            gen_slice(gen, origin->ssl_protocols[i]);
        w_array_close(gen);
        w_map_close(gen);
    } else {
        gen_key(gen, "s3");
        w_map_open(gen);
        gen_key(gen, "authMethod");
        gen_slice(gen, origin->auth_method);
        gen_key(gen, "customHeaders");
        gen_headers(gen, &origin->custom_headers);
        gen_key(gen, "domainName");
        gen_slice(gen, origin->domain_name);
        gen_key(gen, "path");
        gen_slice(gen, origin->path);
        gen_key(gen, "region");
        gen_slice(gen, origin->region);
        w_map_close(gen);
    }
    w_map_close(gen);
}

static void gen_request(struct tree_writer *gen, enum event_trigger trigger, const struct event_request *request)
{
    w_map_open(gen);
    if (request->has_body && event_trigger_is_request(trigger)) {
        const struct event_request_body *body = &request->body;
        gen_key(gen, "body");
        w_map_open(gen);
        gen_key(gen, "inputTruncated");
        w_bool(gen, body->input_truncated);
        gen_key(gen, "action");
        gen_key(gen, body->action == EVENT_BODY_REPLACE ? "replace" : "read-only");
        gen_key(gen, "encoding");
        gen_key(gen, body->encoding == EVENT_BODY_TEXT ? "text" : "base64");
        gen_key(gen, "data");
        gen_slice(gen, body->data);
        w_map_close(gen);
    }
    gen_key(gen, "clientIp");
    gen_slice(gen, request->client_ip);
    gen_key(gen, "headers");
    gen_headers(gen, &request->headers);
    gen_key(gen, "method");
    gen_slice(gen, request->method);
    if (request->has_origin && (trigger == EVENT_ORIGIN_REQUEST || trigger == EVENT_ORIGIN_RESPONSE)) {
        gen_key(gen, "origin");
        gen_origin(gen, &request->origin);
    }
    gen_key(gen, "querystring");
    gen_slice(gen, request->querystring);
    gen_key(gen, "uri");
    gen_slice(gen, request->uri);
    w_map_close(gen);
}

static void gen_response(struct tree_writer *gen, const struct event_response *response)
{
    char status[16];
    snprintf(status, sizeof status, "%d", response->status);
    w_map_open(gen);
    gen_key(gen, "headers");
    gen_headers(gen, &response->headers);
    gen_key(gen, "status");
    gen_key(gen, status);
    gen_key(gen, "statusDescription");
    gen_slice(gen, response->status_description);
    w_map_close(gen);
}

static void encode_input(struct tree_writer *gen, const struct event_input *input)
{
    w_map_open(gen);
    gen_key(gen, "Records");
    w_array_open(gen);
    w_map_open(gen);
    gen_key(gen, "cf");
    w_map_open(gen);
    gen_key(gen, "config");
    w_map_open(gen);
    gen_key(gen, "distributionDomainName");
    gen_slice(gen, input->config.distribution_domain_name);
    gen_key(gen, "distributionId");
    gen_slice(gen, input->config.distribution_id);
    gen_key(gen, "eventType");
    gen_key(gen, event_trigger_name(input->trigger));
    gen_key(gen, "requestId");
    gen_slice(gen, input->config.request_id);
    w_map_close(gen);
    gen_key(gen, "request");
    gen_request(gen, input->trigger, &input->request);
    if (!event_trigger_is_request(input->trigger)) {
        gen_key(gen, "response");
        gen_response(gen, &input->response);
    }
    w_map_close(gen);
    w_map_close(gen);
    w_array_close(gen);
    w_map_close(gen);
}

void event_encode(const struct event_input *input, struct bytebuf *out)
{
    struct tree_writer writer = {.gen = yajl_gen_alloc(NULL), .out = out};
    VERGE_ASSERT(writer.gen != NULL);
    encode_input(&writer, input);
    const unsigned char *text;
    size_t len;
    VERGE_ASSERT(yajl_gen_get_buf(writer.gen, &text, &len) == yajl_gen_status_ok);
    bytebuf_append(out, text, len);
    yajl_gen_free(writer.gen);
}

void event_encode_compact(const struct event_input *input, struct bytebuf *out)
{
    bytebuf_reserve(out, 1024);
    struct tree_writer writer = {.gen = NULL, .out = out};
    encode_input(&writer, input);
}

/* ---- parsing ------------------------------------------------------------- */

/* Parser state: the arena, the trigger (for errors) and the error slot. */
struct parser {
    struct arena *arena;
    enum event_trigger trigger;
    struct event_error *error;
};

/* A JSON array, or an empty object (an empty Lua table has no kind). */
static bool is_list(yajl_val v)
{
    return YAJL_IS_ARRAY(v) || (YAJL_IS_OBJECT(v) && v->u.object.len == 0);
}

/* The length of an is_list value (the union's array and object layouts differ). */
static size_t list_len(yajl_val v)
{
    return YAJL_IS_ARRAY(v) ? v->u.array.len : 0;
}

static yajl_val object_get(yajl_val object, const char *key)
{
    for (size_t i = 0; i < object->u.object.len; i++)
        if (strcmp(object->u.object.keys[i], key) == 0)
            return object->u.object.values[i];
    return NULL;
}

/* Tree strings already live in the caller's arena (both trees are built
 * there): results point at them, no second copy. */
static slice_t string_of(yajl_val v)
{
    return slice_from_cstr(v->u.string);
}

/* Fetches a string member: false (with error) when present but not a string,
 * or absent and required. *present tells which. */
static bool get_string(struct parser *p, yajl_val object, const char *key, const char *path, bool required, slice_t *out,
                       bool *present)
{
    yajl_val v = object_get(object, key);
    if (present)
        *present = v != NULL;
    if (v == NULL)
        return required ? event_error_set(p->error, p->trigger, "required field missing", "%s.%s", path, key) : true;
    if (!YAJL_IS_STRING(v))
        return event_error_set(p->error, p->trigger, "must be a string", "%s.%s", path, key);
    *out = string_of(v);
    return true;
}

static bool get_integer(struct parser *p, yajl_val object, const char *key, const char *path, int64_t *out)
{
    yajl_val v = object_get(object, key);
    if (v == NULL)
        return event_error_set(p->error, p->trigger, "required field missing", "%s.%s", path, key);
    if (!YAJL_IS_INTEGER(v))
        return event_error_set(p->error, p->trigger, "must be an integer", "%s.%s", path, key);
    *out = v->u.number.i;
    return true;
}

static bool parse_headers(struct parser *p, yajl_val v, const char *path, struct event_headers *out)
{
    *out = (struct event_headers){0};
    if (v == NULL)
        return event_error_set(p->error, p->trigger, "required field missing", "%s", path);
    if (!YAJL_IS_OBJECT(v))
        return event_error_set(p->error, p->trigger, "must be an object", "%s", path);
    for (size_t i = 0; i < v->u.object.len; i++) {
        const char *name_text = v->u.object.keys[i];
        yajl_val list = v->u.object.values[i];
        slice_t name = arena_slice_copy(p->arena, slice_from_cstr(name_text));
        if (!is_list(list))
            return event_error_set(p->error, p->trigger, "header must be an array of {key, value}", "%s[\"%.60s\"]", path,
                                   name_text);
        if (event_headers_find(out, name) != NULL)
            return event_error_set(p->error, p->trigger, "duplicate header name", "%s[\"%.60s\"]", path, name_text);
        /* an empty list still names the header (it means "no value"); keep it */
        if (list_len(list) == 0) {
            out->items = arena_grow(p->arena, out->items, out->count, sizeof *out->items);
            out->items[out->count++] = (struct event_header){.name = name};
        }
        for (size_t j = 0; j < list_len(list); j++) {
            yajl_val entry = list->u.array.values[j];
            if (!YAJL_IS_OBJECT(entry))
                return event_error_set(p->error, p->trigger, "header entry must be an object", "%s[\"%.60s\"][%zu]", path,
                                       name_text, j);
            yajl_val key = object_get(entry, "key"), value = object_get(entry, "value");
            if (value == NULL || !YAJL_IS_STRING(value))
                return event_error_set(p->error, p->trigger, "header value must be a string", "%s[\"%.60s\"][%zu].value", path,
                                       name_text, j);
            if (key != NULL && !YAJL_IS_STRING(key))
                return event_error_set(p->error, p->trigger, "header key must be a string", "%s[\"%.60s\"][%zu].key", path,
                                       name_text, j);
            slice_t key_slice = key ? string_of(key) : capitalised_key(p->arena, name);
            headers_add_named(p->arena, out, name, key_slice, string_of(value));
        }
    }
    return true;
}

static bool parse_body_encoding(struct parser *p, yajl_val v, const char *path, enum event_body_encoding *out)
{
    if (!YAJL_IS_STRING(v))
        return event_error_set(p->error, p->trigger, "must be a string", "%s", path);
    if (strcmp(v->u.string, "base64") == 0)
        *out = EVENT_BODY_BASE64;
    else if (strcmp(v->u.string, "text") == 0)
        *out = EVENT_BODY_TEXT;
    else
        return event_error_set(p->error, p->trigger, "encoding must be text or base64", "%s", path);
    return true;
}

static bool parse_request_body(struct parser *p, yajl_val v, struct event_request_body *out)
{
    if (!YAJL_IS_OBJECT(v))
        return event_error_set(p->error, p->trigger, "must be an object", "request.body");
    *out = (struct event_request_body){.action = EVENT_BODY_READ_ONLY, .encoding = EVENT_BODY_BASE64};
    yajl_val truncated = object_get(v, "inputTruncated");
    if (truncated != NULL) {
        if (!YAJL_IS_TRUE(truncated) && !YAJL_IS_FALSE(truncated))
            return event_error_set(p->error, p->trigger, "must be a boolean", "request.body.inputTruncated");
        out->input_truncated = YAJL_IS_TRUE(truncated);
    }
    yajl_val action = object_get(v, "action");
    if (action != NULL) {
        if (!YAJL_IS_STRING(action))
            return event_error_set(p->error, p->trigger, "must be a string", "request.body.action");
        if (strcmp(action->u.string, "read-only") == 0)
            out->action = EVENT_BODY_READ_ONLY;
        else if (strcmp(action->u.string, "replace") == 0)
            out->action = EVENT_BODY_REPLACE;
        else
            return event_error_set(p->error, p->trigger, "action must be read-only or replace", "request.body.action");
    }
    yajl_val encoding = object_get(v, "encoding");
    if (encoding != NULL && !parse_body_encoding(p, encoding, "request.body.encoding", &out->encoding))
        return false;
    return get_string(p, v, "data", "request.body", false, &out->data, NULL);
}

static bool parse_origin(struct parser *p, yajl_val v, struct event_origin *out)
{
    *out = (struct event_origin){0};
    if (!YAJL_IS_OBJECT(v))
        return event_error_set(p->error, p->trigger, "must be an object", "request.origin");
    yajl_val custom = object_get(v, "custom"), s3 = object_get(v, "s3");
    if ((custom != NULL) == (s3 != NULL) || v->u.object.len != 1)
        return event_error_set(p->error, p->trigger, "origin must have exactly one of custom or s3", "request.origin");
    yajl_val o = custom ? custom : s3;
    const char *path = custom ? "request.origin.custom" : "request.origin.s3";
    char headers_path[64];
    snprintf(headers_path, sizeof headers_path, "%s.customHeaders", path);
    if (!YAJL_IS_OBJECT(o))
        return event_error_set(p->error, p->trigger, "must be an object", "%s", path);
    out->kind = custom ? EVENT_ORIGIN_CUSTOM : EVENT_ORIGIN_S3;
    yajl_val custom_headers = object_get(o, "customHeaders");
    if (custom_headers != NULL && !parse_headers(p, custom_headers, headers_path, &out->custom_headers))
        return false;
    if (!get_string(p, o, "domainName", path, true, &out->domain_name, NULL) ||
        !get_string(p, o, "path", path, false, &out->path, NULL))
        return false;
    if (out->kind == EVENT_ORIGIN_S3)
        return get_string(p, o, "authMethod", path, false, &out->auth_method, NULL) &&
               get_string(p, o, "region", path, false, &out->region, NULL);
    if (!get_integer(p, o, "port", path, &out->port) || !get_string(p, o, "protocol", path, true, &out->protocol, NULL) ||
        !get_integer(p, o, "readTimeout", path, &out->read_timeout) ||
        !get_integer(p, o, "keepaliveTimeout", path, &out->keepalive_timeout))
        return false;
    yajl_val ssl = object_get(o, "sslProtocols");
    if (ssl == NULL)
        return event_error_set(p->error, p->trigger, "required field missing", "%s.sslProtocols", path);
    if (!is_list(ssl))
        return event_error_set(p->error, p->trigger, "must be an array of strings", "%s.sslProtocols", path);
    out->ssl_protocols = arena_alloc(p->arena, (list_len(ssl) + 1) * sizeof *out->ssl_protocols);
    for (size_t i = 0; i < list_len(ssl); i++) {
        if (!YAJL_IS_STRING(ssl->u.array.values[i]))
            return event_error_set(p->error, p->trigger, "must be a string", "%s.sslProtocols[%zu]", path, i);
        out->ssl_protocols[out->ssl_protocol_count++] = string_of(ssl->u.array.values[i]);
    }
    return true;
}

static bool parse_request(struct parser *p, yajl_val v, struct event_request *out)
{
    *out = (struct event_request){0};
    if (!YAJL_IS_OBJECT(v))
        return event_error_set(p->error, p->trigger, "must be an object", "request");
    if (!get_string(p, v, "clientIp", "request", false, &out->client_ip, &out->has_client_ip) ||
        !get_string(p, v, "method", "request", false, &out->method, &out->has_method) ||
        !get_string(p, v, "uri", "request", true, &out->uri, NULL) ||
        !get_string(p, v, "querystring", "request", false, &out->querystring, &out->has_querystring) ||
        !parse_headers(p, object_get(v, "headers"), "request.headers", &out->headers))
        return false;
    yajl_val body = object_get(v, "body");
    if (body != NULL) {
        out->has_body = true;
        if (!parse_request_body(p, body, &out->body))
            return false;
    }
    yajl_val origin = object_get(v, "origin");
    if (origin != NULL) {
        out->has_origin = true;
        if (!parse_origin(p, origin, &out->origin))
            return false;
    }
    return true;
}

/* `status` as "302" or 302 (spec §2.2: string documented, number accepted). */
static bool parse_status(struct parser *p, yajl_val v, int *out)
{
    if (v == NULL)
        return event_error_set(p->error, p->trigger, "required field missing", "response.status");
    if (YAJL_IS_INTEGER(v)) {
        long long n = v->u.number.i;
        *out = n < 0 ? -1 : n > 99999 ? 99999 : (int)n;
        return true;
    }
    uint64_t n;
    if (YAJL_IS_STRING(v) && slice_parse_u64(slice_from_cstr(v->u.string), &n)) {
        *out = n > 99999 ? 99999 : (int)n;
        return true;
    }
    return event_error_set(p->error, p->trigger, "status must be an integer or a string of digits", "response.status");
}

static bool parse_response(struct parser *p, yajl_val v, struct event_response *out)
{
    *out = (struct event_response){.body_encoding = EVENT_BODY_TEXT};
    if (!YAJL_IS_OBJECT(v))
        return event_error_set(p->error, p->trigger, "must be an object", "response");
    if (!parse_status(p, object_get(v, "status"), &out->status) ||
        !get_string(p, v, "statusDescription", "response", false, &out->status_description, &out->has_status_description))
        return false;
    yajl_val headers = object_get(v, "headers");
    if (headers != NULL && !parse_headers(p, headers, "response.headers", &out->headers))
        return false;
    if (!get_string(p, v, "body", "response", false, &out->body, &out->has_body))
        return false;
    yajl_val encoding = object_get(v, "bodyEncoding");
    return encoding == NULL || parse_body_encoding(p, encoding, "response.bodyEncoding", &out->body_encoding);
}

/* ---- a yajl_val tree in an arena ------------------------------------------ */

/* yajl's callback parser building yajl_tree's node type in the caller's
 * arena: no allocation per node and nothing to free (results are parsed
 * once per function call, on the request path). Containers gather their
 * children on a scratch vector and get arena arrays when they close. */
struct tree_entry {
    const char *key; /* NULL inside arrays */
    yajl_val value;
};

struct tree_builder {
    struct arena *arena;
    yajl_val open[EVENT_MAX_JSON_DEPTH + 2];
    size_t first_child[EVENT_MAX_JSON_DEPTH + 2];
    int depth;
    const char *pending_key;
    struct tree_entry *entries;
    size_t entry_count, entry_capacity;
    struct tree_entry inline_entries[64];
    yajl_val root;
};

static int tree_add(struct tree_builder *b, yajl_val value)
{
    if (b->depth == 0) {
        b->root = value;
        return 1;
    }
    if (b->entry_count == b->entry_capacity) {
        size_t capacity = b->entry_capacity * 2;
        struct tree_entry *grown = malloc(capacity * sizeof *grown);
        VERGE_ASSERT(grown != NULL);
        memcpy(grown, b->entries, b->entry_count * sizeof *grown);
        if (b->entries != b->inline_entries)
            free(b->entries);
        b->entries = grown;
        b->entry_capacity = capacity;
    }
    b->entries[b->entry_count++] = (struct tree_entry){b->pending_key, value};
    b->pending_key = NULL;
    return 1;
}

static yajl_val tree_node(struct tree_builder *b, yajl_type type)
{
    yajl_val v = arena_alloc(b->arena, sizeof *v);
    memset(v, 0, sizeof *v);
    v->type = type;
    return v;
}

static int tree_null(void *ctx)
{
    return tree_add(ctx, tree_node(ctx, yajl_t_null));
}

static int tree_boolean(void *ctx, int value)
{
    return tree_add(ctx, tree_node(ctx, value ? yajl_t_true : yajl_t_false));
}

static int tree_number(void *ctx, const char *text, size_t len)
{
    struct tree_builder *b = ctx;
    yajl_val v = tree_node(b, yajl_t_number);
    v->u.number.r = arena_strndup(b->arena, text, len);
    /* As yajl_tree: integer when strtoll takes it whole, double when strtod does. */
    char *end;
    errno = 0;
    v->u.number.i = strtoll(v->u.number.r, &end, 10);
    if (errno == 0 && *end == '\0')
        v->u.number.flags |= YAJL_NUMBER_INT_VALID;
    errno = 0;
    v->u.number.d = strtod(v->u.number.r, &end);
    if (errno == 0 && *end == '\0')
        v->u.number.flags |= YAJL_NUMBER_DOUBLE_VALID;
    return tree_add(b, v);
}

static int tree_string(void *ctx, const unsigned char *text, size_t len)
{
    struct tree_builder *b = ctx;
    yajl_val v = tree_node(b, yajl_t_string);
    v->u.string = arena_strndup(b->arena, (const char *)text, len);
    return tree_add(b, v);
}

static int tree_open(struct tree_builder *b, yajl_type type)
{
    if (b->depth > EVENT_MAX_JSON_DEPTH)
        return 0;
    yajl_val v = tree_node(b, type);
    const char *key = b->pending_key;
    /* The container is placed in its parent when it closes; remember its key. */
    b->open[++b->depth] = v;
    b->first_child[b->depth] = b->entry_count;
    b->pending_key = NULL;
    v->u.object.keys = (const char **)key; /* parked here until close */
    return 1;
}

static int tree_start_map(void *ctx)
{
    return tree_open(ctx, yajl_t_object);
}

static int tree_start_array(void *ctx)
{
    return tree_open(ctx, yajl_t_array);
}

static int tree_map_key(void *ctx, const unsigned char *key, size_t len)
{
    struct tree_builder *b = ctx;
    b->pending_key = arena_strndup(b->arena, (const char *)key, len);
    return 1;
}

static int tree_close(void *ctx)
{
    struct tree_builder *b = ctx;
    yajl_val v = b->open[b->depth];
    const char *key = (const char *)v->u.object.keys;
    size_t first = b->first_child[b->depth], count = b->entry_count - first;
    yajl_val *values = arena_alloc(b->arena, sizeof *values * (count ? count : 1));
    for (size_t i = 0; i < count; i++)
        values[i] = b->entries[first + i].value;
    if (v->type == yajl_t_object) {
        const char **keys = arena_alloc(b->arena, sizeof *keys * (count ? count : 1));
        for (size_t i = 0; i < count; i++)
            keys[i] = b->entries[first + i].key;
        v->u.object.keys = keys;
        v->u.object.values = values;
        v->u.object.len = count;
    } else {
        v->u.array.values = values;
        v->u.array.len = count;
    }
    b->entry_count = first;
    b->depth--;
    b->pending_key = key;
    return tree_add(b, v);
}

static const yajl_callbacks tree_callbacks = {
    .yajl_null = tree_null,
    .yajl_boolean = tree_boolean,
    .yajl_number = tree_number,
    .yajl_string = tree_string,
    .yajl_start_map = tree_start_map,
    .yajl_map_key = tree_map_key,
    .yajl_end_map = tree_close,
    .yajl_start_array = tree_start_array,
    .yajl_end_array = tree_close,
};

static yajl_val json_parse(enum event_trigger trigger, const char *json, size_t len, struct arena *arena, struct event_error *error)
{
    struct tree_builder builder = {.arena = arena};
    builder.entries = builder.inline_entries;
    builder.entry_capacity = VERGE_ARRAY_SIZE(builder.inline_entries);
    yajl_handle handle = yajl_alloc(&tree_callbacks, NULL, &builder);
    VERGE_ASSERT(handle != NULL);
    bool parsed =
        yajl_parse(handle, (const unsigned char *)json, len) == yajl_status_ok && yajl_complete_parse(handle) == yajl_status_ok;
    yajl_free(handle);
    if (builder.entries != builder.inline_entries)
        free(builder.entries);
    yajl_val root = parsed ? builder.root : NULL;
    if (root == NULL) {
        event_error_set(error, trigger, "JSON output is not parsable", "$");
        return NULL;
    }
    if (!YAJL_IS_OBJECT(root)) {
        event_error_set(error, trigger, "JSON output must be an object", "$");
        return NULL;
    }
    return root;
}

/* ---- the compact spelling, read back ---------------------------------------- */

/* Reads what LuaJIT's string.buffer encode wrote for a function's result
 * into the same yajl_val tree the JSON path builds: a table with only
 * array elements 1..n becomes an array, any other table an object (number
 * keys spelled as JSON would), nil a null. Anything a JSON encoder would
 * refuse (functions never get here: encode refuses them) or that JSON
 * cannot hold — other key types, cdata, light userdata — and any malformed
 * or truncated input make the result unparsable. Strings may not hold NUL
 * (fields become C strings). The input comes from a function: every count
 * is checked against the bytes left before anything is allocated. */
struct compact_reader {
    struct arena *arena;
    const unsigned char *p, *end;
    int depth;
};

static bool compact_get_u(struct compact_reader *r, uint32_t *out)
{
    if (r->p >= r->end)
        return false;
    uint32_t first = *r->p++;
    if (first < 0xe0) {
        *out = first;
    } else if (first != 0xff) {
        if (r->p >= r->end)
            return false;
        *out = (((first & 0x1f) << 8) | *r->p++) + 0xe0;
    } else {
        if (r->end - r->p < 4)
            return false;
        memcpy(out, r->p, 4);
        r->p += 4;
    }
    return true;
}

static yajl_val compact_value(struct compact_reader *r);

static char *compact_string(struct compact_reader *r, uint32_t len)
{
    if ((size_t)(r->end - r->p) < len || memchr(r->p, '\0', len) != NULL)
        return NULL;
    char *text = arena_strndup(r->arena, (const char *)r->p, len);
    r->p += len;
    return text;
}

/* A hash key as JSON spells it: strings as they are, integral numbers in decimal. */
static const char *compact_key(struct compact_reader *r)
{
    if (r->p >= r->end)
        return NULL;
    if (*r->p >= COMPACT_STRING) {
        uint32_t n;
        if (!compact_get_u(r, &n) || n < COMPACT_STRING)
            return NULL;
        return compact_string(r, n - COMPACT_STRING);
    }
    if (*r->p == COMPACT_NUMBER && r->end - r->p >= 9) {
        double d;
        memcpy(&d, r->p + 1, sizeof d);
        r->p += 9;
        if (!(d >= -9.0e15 && d <= 9.0e15) || d != (double)(long long)d)
            return NULL;
        return arena_printf(r->arena, "%lld", (long long)d);
    }
    return NULL;
}

static yajl_val compact_node(struct compact_reader *r, yajl_type type)
{
    yajl_val v = arena_alloc(r->arena, sizeof *v);
    memset(v, 0, sizeof *v);
    v->type = type;
    return v;
}

static yajl_val compact_table(struct compact_reader *r, unsigned tag)
{
    uint32_t array_size = 0, hash_size = 0;
    bool has_array = tag >= 0x0a && tag != 0x0e, from_zero = tag == 0x0a || tag == 0x0b;
    bool has_hash = tag == 0x09 || tag == 0x0b || tag == 0x0d;
    if (has_array && !compact_get_u(r, &array_size))
        return NULL;
    uint32_t elements = has_array ? (from_zero ? array_size : (array_size ? array_size - 1 : 0)) : 0;
    /* Every element and pair takes at least one byte each: no allocation for a count the input cannot hold. */
    if (elements > (size_t)(r->end - r->p))
        return NULL;
    yajl_val *values = arena_alloc(r->arena, sizeof *values * (elements + 1));
    for (uint32_t i = 0; i < elements; i++)
        if ((values[i] = compact_value(r)) == NULL)
            return NULL;
    if (has_hash && !compact_get_u(r, &hash_size))
        return NULL;
    if (hash_size > (size_t)(r->end - r->p) / 2)
        return NULL;
    if (hash_size == 0 && !from_zero && elements > 0) {
        yajl_val array = compact_node(r, yajl_t_array);
        array->u.array.values = values;
        array->u.array.len = elements;
        return array;
    }
    /* An object: array elements under their index, then the hash pairs. */
    yajl_val object = compact_node(r, yajl_t_object);
    size_t total = (size_t)elements + hash_size;
    const char **keys = arena_alloc(r->arena, sizeof *keys * (total + 1));
    yajl_val *all = arena_alloc(r->arena, sizeof *all * (total + 1));
    for (uint32_t i = 0; i < elements; i++) {
        keys[i] = arena_printf(r->arena, "%u", from_zero ? i : i + 1);
        all[i] = values[i];
    }
    for (uint32_t i = 0; i < hash_size; i++) {
        const char *key = compact_key(r);
        if (key == NULL || (all[elements + i] = compact_value(r)) == NULL)
            return NULL;
        keys[elements + i] = key;
    }
    object->u.object.keys = keys;
    object->u.object.values = all;
    object->u.object.len = total;
    return object;
}

static yajl_val compact_value(struct compact_reader *r)
{
    if (r->p >= r->end)
        return NULL;
    unsigned tag = *r->p;
    if (tag >= COMPACT_STRING) {
        uint32_t n;
        if (!compact_get_u(r, &n) || n < COMPACT_STRING)
            return NULL;
        char *text = compact_string(r, n - COMPACT_STRING);
        if (text == NULL)
            return NULL;
        yajl_val v = compact_node(r, yajl_t_string);
        v->u.string = text;
        return v;
    }
    r->p++;
    switch (tag) {
    case 0x00: /* nil (a hole in an array) */
    case 0x03: /* null */
        return compact_node(r, yajl_t_null);
    case COMPACT_FALSE:
        return compact_node(r, yajl_t_false);
    case COMPACT_TRUE:
        return compact_node(r, yajl_t_true);
    case 0x06: { /* int32 (dual-number builds) */
        if (r->end - r->p < 4)
            return NULL;
        int32_t i;
        memcpy(&i, r->p, 4);
        r->p += 4;
        yajl_val v = compact_node(r, yajl_t_number);
        v->u.number.i = i;
        v->u.number.d = i;
        v->u.number.flags = YAJL_NUMBER_INT_VALID | YAJL_NUMBER_DOUBLE_VALID;
        return v;
    }
    case COMPACT_NUMBER: {
        if (r->end - r->p < 8)
            return NULL;
        double d;
        memcpy(&d, r->p, 8);
        r->p += 8;
        if (d != d || d == HUGE_VAL || d == -HUGE_VAL)
            return NULL; /* JSON has no NaN or infinity */
        yajl_val v = compact_node(r, yajl_t_number);
        v->u.number.d = d;
        v->u.number.flags = YAJL_NUMBER_DOUBLE_VALID;
        if (d >= -9.0e18 && d <= 9.0e18 && d == (double)(long long)d) {
            v->u.number.i = (long long)d;
            v->u.number.flags |= YAJL_NUMBER_INT_VALID;
        } /* u.number.r (the JSON text) stays NULL: nothing reads it */
        return v;
    }
    case 0x08: /* {} */
        return compact_node(r, yajl_t_object);
    case 0x09:
    case 0x0a:
    case 0x0b:
    case 0x0c:
    case 0x0d: {
        if (r->depth >= EVENT_MAX_JSON_DEPTH)
            return NULL;
        r->depth++;
        yajl_val v = compact_table(r, tag);
        r->depth--;
        return v;
    }
    default: /* light userdata, metatable dictionaries, int64, complex: no JSON for them */
        return NULL;
    }
}

static bool parse_result_root(enum event_trigger trigger, yajl_val root, struct arena *arena, struct event_result *out,
                              struct event_error *error)
{
    struct parser p = {arena, trigger, error};
    if (object_get(root, "status") != NULL) {
        out->kind = EVENT_RESULT_RESPONSE;
        return parse_response(&p, root, &out->response);
    }
    if (event_trigger_is_request(trigger)) {
        out->kind = EVENT_RESULT_REQUEST;
        return parse_request(&p, root, &out->request);
    }
    return event_error_set(error, trigger, "response object required", "response");
}

bool event_parse_result(enum event_trigger trigger, const char *json, size_t len, struct arena *arena, struct event_result *out,
                        struct event_error *error)
{
    *out = (struct event_result){0};
    yajl_val root = json_parse(trigger, json, len, arena, error);
    return root != NULL && parse_result_root(trigger, root, arena, out, error);
}

bool event_parse_result_compact(enum event_trigger trigger, const char *data, size_t len, struct arena *arena,
                                struct event_result *out, struct event_error *error)
{
    *out = (struct event_result){0};
    struct compact_reader reader = {arena, (const unsigned char *)data, (const unsigned char *)data + len, 0};
    yajl_val root = compact_value(&reader);
    if (root == NULL || reader.p != reader.end)
        return event_error_set(error, trigger, "result is not a table of strings, numbers, booleans and tables", "$");
    if (!YAJL_IS_OBJECT(root))
        return event_error_set(error, trigger, "JSON output must be an object", "$");
    return parse_result_root(trigger, root, arena, out, error);
}

bool event_parse_event(const char *json, size_t len, struct arena *arena, struct event_input *out, struct event_error *error)
{
    *out = (struct event_input){0};
    yajl_val root = json_parse(EVENT_VIEWER_REQUEST, json, len, arena, error);
    if (root == NULL)
        return false;
    struct parser p = {arena, EVENT_VIEWER_REQUEST, error};
    bool ok = false;
    yajl_val records = object_get(root, "Records");
    yajl_val record = YAJL_IS_ARRAY(records) && records->u.array.len == 1 ? records->u.array.values[0] : NULL;
    yajl_val cf = YAJL_IS_OBJECT(record) ? object_get(record, "cf") : NULL;
    yajl_val config = YAJL_IS_OBJECT(cf) ? object_get(cf, "config") : NULL;
    if (!YAJL_IS_OBJECT(config)) {
        event_error_set(error, p.trigger, "required field missing", "Records[0].cf.config");
        goto done;
    }
    slice_t event_type = {0};
    if (!get_string(&p, config, "eventType", "config", true, &event_type, NULL))
        goto done;
    int trigger = -1;
    for (int i = 0; i < EVENT_TRIGGER_COUNT; i++)
        if (slice_equal(event_type, slice_from_cstr(trigger_names[i])))
            trigger = i;
    if (trigger < 0) {
        event_error_set(error, p.trigger, "unknown event type", "config.eventType");
        goto done;
    }
    out->trigger = p.trigger = (enum event_trigger)trigger;
    if (!get_string(&p, config, "distributionDomainName", "config", true, &out->config.distribution_domain_name, NULL) ||
        !get_string(&p, config, "distributionId", "config", true, &out->config.distribution_id, NULL) ||
        !get_string(&p, config, "requestId", "config", true, &out->config.request_id, NULL) ||
        !parse_request(&p, object_get(cf, "request"), &out->request))
        goto done;
    if (!event_trigger_is_request(out->trigger) && !parse_response(&p, object_get(cf, "response"), &out->response))
        goto done;
    ok = true;
done:
    return ok;
}
