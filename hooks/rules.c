/* rules.c — event_validate_result: the Lambda@Edge §2.6 checklist as tables.
 *
 * field_rules says, per trigger, whether a request/response field may be
 * changed; header_rules says which header names are disallowed, read-only,
 * not addable, or denied in origin.customHeaders, per trigger. The code below
 * only walks the tables and the value checks of spec §1.6, §2.2 and §2.4.
 * Read-only means "same list of values as the input" (add, change and delete
 * all fail, as the live docs say). Pure: the tables are indexed once, at load
 * time (a constructor), and only read afterwards.
 */
#include "../proxy/swar.h"
#include "event.h"
#include "event_format.h"

#include <stdio.h>

#include <openssl/evp.h>

#define VR (1u << EVENT_VIEWER_REQUEST)
#define OR (1u << EVENT_ORIGIN_REQUEST)
#define ORS (1u << EVENT_ORIGIN_RESPONSE)
#define VRS (1u << EVENT_VIEWER_RESPONSE)
#define ALL (VR | OR | ORS | VRS)

/* printf arguments for a header name in an error path, at most 60 bytes. */
#define NAME_ARG(name) (int)((name).len > 60 ? 60 : (name).len), (name).ptr

enum header_rule_kind {
    HEADER_DISALLOWED, /* may never appear in a result */
    HEADER_READ_ONLY,  /* must equal the input */
    HEADER_NO_ADD,     /* may be kept or removed, not added */
    HEADER_NO_CUSTOM,  /* may not be an origin custom header */
};

struct header_rule {
    const char *name; /* lower case */
    size_t len;
    bool prefix; /* it names the headers that start with it ("x-amz-cf-*") */
    enum header_rule_kind kind;
    unsigned triggers;
    const char *rule;
};

#define NAME(text) text, sizeof(text) - 1, false
#define PREFIX(text) text, sizeof(text) - 1, true

static const struct header_rule header_rules[] = {
    /* §2.3.1 disallowed, every trigger */
    {NAME("connection"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("expect"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("keep-alive"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("proxy-authenticate"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("proxy-authorization"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("proxy-connection"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("trailer"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("upgrade"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-accel-buffering"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-accel-charset"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-accel-limit-rate"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-accel-redirect"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {PREFIX("x-amz-cf-"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-amzn-auth"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-amzn-cf-billing"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-amzn-cf-id"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-amzn-cf-xff"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-amzn-errortype"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-amzn-fle-profile"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-amzn-header-count"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-amzn-header-order"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-amzn-lambda-integration-tag"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-amzn-requestid"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-cache"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {PREFIX("x-edge-"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-forwarded-proto"), HEADER_DISALLOWED, ALL, "disallowed header"},
    {NAME("x-real-ip"), HEADER_DISALLOWED, ALL, "disallowed header"},
    /* §2.3.2 read-only, per trigger */
    {NAME("content-length"), HEADER_READ_ONLY, VR | OR, "read-only header"},
    {NAME("host"), HEADER_READ_ONLY, VR, "read-only header"},
    {NAME("transfer-encoding"), HEADER_READ_ONLY, ALL, "read-only header"},
    {NAME("via"), HEADER_READ_ONLY, ALL, "read-only header"},
    {NAME("accept-encoding"), HEADER_READ_ONLY, OR, "read-only header"},
    {NAME("if-modified-since"), HEADER_READ_ONLY, OR, "read-only header"},
    {NAME("if-none-match"), HEADER_READ_ONLY, OR, "read-only header"},
    {NAME("if-range"), HEADER_READ_ONLY, OR, "read-only header"},
    {NAME("if-unmodified-since"), HEADER_READ_ONLY, OR, "read-only header"},
    {NAME("warning"), HEADER_READ_ONLY, VRS, "read-only header"},
    /* §2.3.3 */
    {NAME("cloudfront-viewer-country"), HEADER_NO_ADD, VR, "header may not be added at viewer-request"},
    /* §2.3.4 origin custom-header denylist (triggers unused) */
    {NAME("cache-control"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("connection"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("content-length"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("cookie"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("host"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("if-match"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("if-modified-since"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("if-none-match"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("if-range"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("if-unmodified-since"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("max-forwards"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("pragma"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("proxy-authorization"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("proxy-connection"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("range"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("request-range"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("te"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("trailer"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("transfer-encoding"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("upgrade"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("via"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {PREFIX("x-amz-"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {PREFIX("x-edge-"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
    {NAME("x-real-ip"), HEADER_NO_CUSTOM, 0, "header not allowed in customHeaders"},
};

/* Which result fields each trigger may change (spec §1.3, §1.7, §2.1). A field
 * not writable must equal the input when the function returns it. */
enum field_id {
    FIELD_CLIENT_IP,
    FIELD_METHOD,
    FIELD_URI,
    FIELD_QUERYSTRING,
    FIELD_BODY,
    FIELD_ORIGIN,
    FIELD_STATUS,
    FIELD_RESPONSE_BODY
};

struct field_rule {
    enum field_id field;
    const char *path;
    unsigned writable;
};

static const struct field_rule field_rules[] = {
    {FIELD_CLIENT_IP, "request.clientIp", 0},    {FIELD_METHOD, "request.method", 0},
    {FIELD_URI, "request.uri", VR | OR},         {FIELD_QUERYSTRING, "request.querystring", VR | OR},
    {FIELD_BODY, "request.body", VR | OR},       {FIELD_ORIGIN, "request.origin", OR},
    {FIELD_STATUS, "response.status", ORS}, /* generated responses set it freely */
    {FIELD_RESPONSE_BODY, "response.body", ORS},
};

static bool field_writable(enum event_trigger trigger, enum field_id field)
{
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(field_rules); i++)
        if (field_rules[i].field == field)
            return (field_rules[i].writable & (1u << trigger)) != 0;
    return false;
}

/* `name` is lower case. */
static inline bool rule_matches(const struct header_rule *rule, slice_t name)
{
    return (rule->prefix ? name.len >= rule->len : name.len == rule->len) && memcmp(name.ptr, rule->name, rule->len) == 0;
}

static bool headers_equal(const struct event_header *a, const struct event_header *b)
{
    size_t a_count = a ? a->value_count : 0, b_count = b ? b->value_count : 0;
    if (a_count != b_count)
        return false;
    for (size_t i = 0; i < a_count; i++)
        if (!slice_equal(a->values[i].value, b->values[i].value))
            return false;
    return true;
}

static inline bool word_has_line_break(uint64_t w)
{
    return (swar_has_less(w, 1) | swar_has_byte(w, '\n') | swar_has_byte(w, '\r')) != 0;
}

static bool has_line_break(slice_t s)
{
    if (s.len >= 8) {
        /* whole words, the last one overlapping its predecessor */
        for (size_t i = 0; i + 8 < s.len; i += 8)
            if (word_has_line_break(load_word(s.ptr + i)))
                return true;
        return word_has_line_break(load_word(s.ptr + s.len - 8));
    }
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '\r' || c == '\n' || c == '\0')
            return true;
    }
    return false;
}

/* ---- the tables, indexed (built once, at load time) ----------------------- */

/* What a byte may be in a result header name. */
enum { NAME_BYTE_BAD, NAME_BYTE_OK, NAME_BYTE_UPPER };

/* Rules by the first letter of their name (all lower case), in table order:
 * a header is checked only against the rules it could match. */
struct rule_bucket {
    unsigned char rules[32];
    size_t count;
};

/* The checks of a header map: at one trigger (0-3), or as origin custom headers. */
#define RULE_MODE_CUSTOM EVENT_TRIGGER_COUNT

static struct {
    unsigned char name_byte[256];
    /* name rules (no read-only ones) that apply in each mode */
    struct rule_bucket by_letter[EVENT_TRIGGER_COUNT + 1][26];
    struct rule_bucket hidden_by_letter[26];           /* the disallowed names: event_header_hidden */
    struct rule_bucket read_only[EVENT_TRIGGER_COUNT]; /* the read-only rules of each trigger, in table order */
} rule_index;

static void bucket_add(struct rule_bucket *bucket, size_t rule)
{
    VERGE_ASSERT(bucket->count < VERGE_ARRAY_SIZE(bucket->rules) && rule < 256);
    bucket->rules[bucket->count++] = (unsigned char)rule;
}

__attribute__((constructor)) static void rules_index_build(void)
{
    for (unsigned c = 0; c < 256; c++) {
        bool token = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
                     (c != '\0' && strchr("!#$%&'*+-.^_`|~", (int)c) != NULL);
        rule_index.name_byte[c] = !token ? NAME_BYTE_BAD : c >= 'A' && c <= 'Z' ? NAME_BYTE_UPPER : NAME_BYTE_OK;
    }
    for (size_t r = 0; r < VERGE_ARRAY_SIZE(header_rules); r++) {
        const struct header_rule *rule = &header_rules[r];
        unsigned char first = (unsigned char)rule->name[0];
        VERGE_ASSERT(first >= 'a' && first <= 'z');
        if (rule->kind == HEADER_DISALLOWED)
            bucket_add(&rule_index.hidden_by_letter[first - 'a'], r);
        for (int mode = 0; mode <= RULE_MODE_CUSTOM; mode++) {
            if (rule->kind == HEADER_READ_ONLY) {
                if (mode != RULE_MODE_CUSTOM && (rule->triggers & (1u << mode)) != 0)
                    bucket_add(&rule_index.read_only[mode], r);
                continue;
            }
            bool applies = mode == RULE_MODE_CUSTOM ? rule->kind == HEADER_NO_CUSTOM || rule->kind == HEADER_DISALLOWED
                                                    : rule->kind != HEADER_NO_CUSTOM && (rule->triggers & (1u << mode)) != 0;
            if (applies)
                bucket_add(&rule_index.by_letter[mode][first - 'a'], r);
        }
    }
}

/* ---- header maps ------------------------------------------------------------ */

/* Eight bytes of a key against the name's: the ASCII upper-case letters of
 * the key get 0x20 (bytes with the high bit set stay, and differ from the
 * name's, which is ASCII). */
static inline bool word_matches(uint64_t key, uint64_t name)
{
    uint64_t ascii = key & ~SWAR_HIGHS;
    uint64_t upper = swar_at_least(ascii, 'A') & swar_at_most(ascii, 'Z') & ~key;
    return (key | upper >> 2) == name;
}

/* `key` equals `name` but for case; name is a lower-case token already. */
static bool key_matches(slice_t key, slice_t name)
{
    if (key.len != name.len)
        return false;
    if (key.len >= 8) {
        /* whole words, the last one overlapping its predecessor */
        for (size_t i = 0; i + 8 < key.len; i += 8)
            if (!word_matches(load_word(key.ptr + i), load_word(name.ptr + i)))
                return false;
        return word_matches(load_word(key.ptr + key.len - 8), load_word(name.ptr + key.len - 8));
    }
    for (size_t i = 0; i < key.len; i++) {
        unsigned char k = (unsigned char)key.ptr[i], n = (unsigned char)name.ptr[i];
        if (k != n && !(k >= 'A' && k <= 'Z' && k + 32 == n))
            return false;
    }
    return true;
}

/* Whether all eight bytes are a-z, 0-9 or '-'. */
static inline bool usual_word(uint64_t w)
{
    if ((w & SWAR_HIGHS) != 0)
        return false;
    uint64_t usual = (swar_at_least(w, 'a') & swar_at_most(w, 'z')) | (swar_at_least(w, '0') & swar_at_most(w, '9')) |
                     swar_zero_bytes(w ^ (SWAR_ONES * '-'));
    return usual == SWAR_HIGHS;
}

/* The first byte of `name` that is not a lower-case token character, or name.len. */
static size_t name_check_end(slice_t name)
{
    /* Words of the usual characters (a-z, 0-9, '-') pass whole, the last one
     * overlapping its predecessor; anything else is looked at byte by byte. */
    if (name.len >= 8) {
        size_t i = 0;
        for (; i + 8 < name.len && usual_word(load_word(name.ptr + i)); i += 8)
            ;
        if (i + 8 >= name.len && usual_word(load_word(name.ptr + name.len - 8)))
            return name.len;
    }
    for (size_t i = 0; i < name.len; i++)
        if (rule_index.name_byte[(unsigned char)name.ptr[i]] != NAME_BYTE_OK)
            return i;
    return name.len;
}

/* Shape of every header: lower-case token name, key equal to it but for case,
 * value without line breaks; then the per-trigger rules: read-only headers
 * in table order, then each header against the name rules in table order.
 * `input` is the same header map as the function saw it (NULL for a
 * generated response). `changes`: `headers` holds only the headers whose
 * entries differ from the input's, a removed one as an empty list (which
 * the rules read as absent, as they read an empty list in a whole map):
 * each header left out is one of the input's, unchanged, which passes every
 * check, so checking the changes gives the whole map's verdict, and reports
 * the same first fault (changes come in the map's order). */
static bool check_headers(enum event_trigger trigger, const char *path, const struct event_headers *headers,
                          const struct event_headers *input, bool custom, bool changes, struct event_error *error)
{
    for (size_t i = 0; i < headers->count; i++) {
        const struct event_header *header = &headers->items[i];
        slice_t name = header->name;
        if (name.len == 0)
            return event_error_set(error, trigger, "header name must not be empty", "%s[\"\"]", path);
        size_t bad = name_check_end(name);
        if (bad < name.len) {
            if (rule_index.name_byte[(unsigned char)name.ptr[bad]] == NAME_BYTE_BAD)
                return event_error_set(error, trigger, "header name must be a token", "%s[\"%.*s\"]", path, NAME_ARG(name));
            return event_error_set(error, trigger, "header name must be lower case", "%s[\"%.*s\"]", path, NAME_ARG(name));
        }
        for (size_t j = 0; j < header->value_count; j++) {
            if (!key_matches(header->values[j].key, name))
                return event_error_set(error, trigger, "header key must match the name", "%s[\"%.*s\"][%zu].key", path,
                                       NAME_ARG(name), j);
            if (has_line_break(header->values[j].value))
                return event_error_set(error, trigger, "header value must not contain CR, LF or NUL", "%s[\"%.*s\"][%zu].value",
                                       path, NAME_ARG(name), j);
        }
    }
    /* Read-only headers: a handful per trigger, each compared as a whole. */
    if (input != NULL && !custom) {
        const struct rule_bucket *read_only = &rule_index.read_only[trigger];
        for (size_t r = 0; r < read_only->count; r++) {
            const struct header_rule *rule = &header_rules[read_only->rules[r]];
            slice_t rule_name = {rule->name, rule->len};
            const struct event_header *returned = event_headers_find(headers, rule_name);
            if (changes && returned == NULL)
                continue; /* left as it was */
            if (!headers_equal(returned, event_headers_find(input, rule_name)))
                return event_error_set(error, trigger, rule->rule, "%s[\"%s\"]", path, rule->name);
        }
    }
    /* Name rules: each header against the rules of its mode that start with its letter. */
    const struct rule_bucket *by_letter = rule_index.by_letter[custom ? RULE_MODE_CUSTOM : trigger];
    for (size_t i = 0; i < headers->count; i++) {
        const struct event_header *header = &headers->items[i];
        unsigned char first = (unsigned char)header->name.ptr[0];
        if (header->value_count == 0 || first < 'a' || first > 'z')
            continue;
        const struct rule_bucket *bucket = &by_letter[first - 'a'];
        for (size_t b = 0; b < bucket->count; b++) {
            const struct header_rule *rule = &header_rules[bucket->rules[b]];
            if (!rule_matches(rule, header->name))
                continue;
            if (rule->kind == HEADER_NO_ADD && (input == NULL || event_headers_find(input, header->name) != NULL))
                continue;
            return event_error_set(error, trigger, rule->rule, "%s[\"%.*s\"]", path, NAME_ARG(header->name));
        }
    }
    return true;
}

/* Length of the decoded data, or -1 when not canonical padded base64. */
static long long base64_decoded_length(slice_t s)
{
    if (s.len % 4 != 0)
        return -1;
    size_t padding = 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
        if (c == '=') {
            if (i + 2 < s.len)
                return -1;
            padding++;
        } else if (!alpha || padding > 0) {
            return -1;
        }
    }
    return (long long)(s.len / 4 * 3 - padding);
}

/* The character rules apply to a created or updated uri/querystring only:
 * unchanged values are forwarded as the viewer sent them (spec §1.3). */
static bool check_uri_and_querystring(enum event_trigger trigger, const struct event_request *request,
                                      const struct event_request *input, struct event_error *error)
{
    slice_t uri = request->uri, qs = request->has_querystring ? request->querystring : input->querystring;
    if (uri.len == 0 || uri.ptr[0] != '/')
        return event_error_set(error, trigger, "uri must start with '/'", "request.uri");
    if (!slice_equal(uri, input->uri))
        for (size_t i = 0; i < uri.len; i++)
            if ((unsigned char)uri.ptr[i] <= 0x20 || uri.ptr[i] == 0x7f)
                return event_error_set(error, trigger, "uri must not contain spaces or control characters", "request.uri");
    if (!slice_equal(qs, input->querystring))
        for (size_t i = 0; i < qs.len; i++)
            if ((unsigned char)qs.ptr[i] <= 0x20 || qs.ptr[i] == 0x7f || qs.ptr[i] == '#')
                return event_error_set(error, trigger, "querystring must not contain spaces, control characters or '#'",
                                       "request.querystring");
    if (uri.len + (qs.len ? qs.len + 1 : 0) >= EVENT_URI_LIMIT)
        return event_error_set(error, trigger, "uri and querystring must be shorter than 8192 characters", "request.uri");
    return true;
}

/* Whether the request a result stands for has a value for the header
 * `name`: an empty list is no value, and headers that are changes leave the
 * input's other headers in place. */
static bool request_has_header(const struct event_request *request, const struct event_headers *input_headers, slice_t name)
{
    const struct event_header *header = event_headers_find(&request->headers, name);
    if (header == NULL && request->headers_are_changes)
        header = event_headers_find(input_headers, name);
    return header != NULL && header->value_count > 0;
}

static bool check_origin(enum event_trigger trigger, const struct event_request *request, const struct event_headers *input_headers,
                         struct event_error *error)
{
    const struct event_origin *origin = &request->origin;
    bool custom = origin->kind == EVENT_ORIGIN_CUSTOM;
    const char *path = custom ? "request.origin.custom" : "request.origin.s3";
    slice_t domain = origin->domain_name;
    if (domain.len == 0)
        return event_error_set(error, trigger, "domainName must not be empty", "%s.domainName", path);
    if (custom) {
        if (domain.len > 253)
            return event_error_set(error, trigger, "domainName must be at most 253 characters", "%s.domainName", path);
        for (size_t i = 0; i < domain.len; i++) {
            char c = domain.ptr[i];
            if (c == ':')
                return event_error_set(error, trigger, "domainName must be a DNS name, not an IP address", "%s.domainName", path);
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'))
                return event_error_set(error, trigger, "domainName must be a DNS name", "%s.domainName", path);
        }
        /* An IPv4 address passes (CloudFront wants a name): local origins are what verge's users test against. */
    } else {
        if (domain.len > 128)
            return event_error_set(error, trigger, "domainName must be at most 128 characters", "%s.domainName", path);
        for (size_t i = 0; i < domain.len; i++) {
            char c = domain.ptr[i];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
                return event_error_set(error, trigger, "domainName must be a lower-case bucket DNS name", "%s.domainName", path);
        }
    }
    slice_t origin_path = origin->path;
    if (origin_path.len > 0 && (origin_path.ptr[0] != '/' || origin_path.ptr[origin_path.len - 1] == '/'))
        return event_error_set(error, trigger, "path must start with '/' and not end with '/'", "%s.path", path);
    for (size_t i = 0; i < origin_path.len; i++)
        if ((unsigned char)origin_path.ptr[i] <= 0x20 || origin_path.ptr[i] == 0x7f)
            return event_error_set(error, trigger, "path must be URL-encoded", "%s.path", path);
    if (custom) {
        if (origin_path.len > 255)
            return event_error_set(error, trigger, "path must be at most 255 characters", "%s.path", path);
        if (origin->port != 80 && origin->port != 443 && (origin->port < 1024 || origin->port > 65535))
            return event_error_set(error, trigger, "port must be 80, 443 or 1024-65535", "%s.port", path);
        if (!slice_equal(origin->protocol, SLICE_LITERAL("http")) && !slice_equal(origin->protocol, SLICE_LITERAL("https")))
            return event_error_set(error, trigger, "protocol must be http or https", "%s.protocol", path);
        if (origin->read_timeout < 4 || origin->read_timeout > 60)
            return event_error_set(error, trigger, "readTimeout must be 4-60", "%s.readTimeout", path);
        if (origin->keepalive_timeout < 1 || origin->keepalive_timeout > 60)
            return event_error_set(error, trigger, "keepaliveTimeout must be 1-60", "%s.keepaliveTimeout", path);
        for (size_t i = 0; i < origin->ssl_protocol_count; i++) {
            slice_t p = origin->ssl_protocols[i];
            if (!slice_equal(p, SLICE_LITERAL("TLSv1.2")) && !slice_equal(p, SLICE_LITERAL("TLSv1.1")) &&
                !slice_equal(p, SLICE_LITERAL("TLSv1")) && !slice_equal(p, SLICE_LITERAL("SSLv3")))
                return event_error_set(error, trigger, "sslProtocols entries must be TLSv1.2, TLSv1.1, TLSv1 or SSLv3",
                                       "%s.sslProtocols[%zu]", path, i);
        }
    } else {
        bool oai = slice_equal(origin->auth_method, SLICE_LITERAL("origin-access-identity"));
        if (!oai && !slice_equal(origin->auth_method, SLICE_LITERAL("none")))
            return event_error_set(error, trigger, "authMethod must be origin-access-identity or none", "%s.authMethod", path);
        if (oai && origin->region.len == 0)
            return event_error_set(error, trigger, "region is required with origin-access-identity", "%s.region", path);
    }
    char headers_path[64];
    snprintf(headers_path, sizeof headers_path, "%s.customHeaders", path);
    if (!check_headers(trigger, headers_path, &origin->custom_headers, NULL, true, false, error))
        return false;
    size_t total = 0;
    for (size_t i = 0; i < origin->custom_headers.count; i++) {
        const struct event_header *header = &origin->custom_headers.items[i];
        if (header->name.len > 256)
            return event_error_set(error, trigger, "custom header name exceeds 256 characters", "%s[\"%.*s\"]", headers_path,
                                   NAME_ARG(header->name));
        for (size_t j = 0; j < header->value_count; j++) {
            if (header->values[j].value.len > 1783)
                return event_error_set(error, trigger, "custom header value exceeds 1783 characters", "%s[\"%.*s\"][%zu].value",
                                       headers_path, NAME_ARG(header->name), j);
            total += header->name.len + header->values[j].value.len;
        }
        if (total > 10240)
            return event_error_set(error, trigger, "custom headers exceed 10240 characters", "%s", headers_path);
        if (request_has_header(request, input_headers, header->name))
            return event_error_set(error, trigger, "custom header also present in request.headers", "%s[\"%.*s\"]", headers_path,
                                   NAME_ARG(header->name));
    }
    return true;
}

static bool headers_same(const struct event_headers *a, const struct event_headers *b)
{
    if (a->count != b->count)
        return false;
    for (size_t i = 0; i < a->count; i++) {
        const struct event_header *other = event_headers_find(b, a->items[i].name);
        if (other == NULL || !headers_equal(&a->items[i], other))
            return false;
    }
    return true;
}

static bool origins_equal(const struct event_origin *a, const struct event_origin *b)
{
    if (a->kind != b->kind || !slice_equal(a->domain_name, b->domain_name) || !slice_equal(a->path, b->path) ||
        !headers_same(&a->custom_headers, &b->custom_headers))
        return false;
    if (a->kind == EVENT_ORIGIN_S3)
        return slice_equal(a->auth_method, b->auth_method) && slice_equal(a->region, b->region);
    if (a->port != b->port || !slice_equal(a->protocol, b->protocol) || a->read_timeout != b->read_timeout ||
        a->keepalive_timeout != b->keepalive_timeout || a->ssl_protocol_count != b->ssl_protocol_count)
        return false;
    for (size_t i = 0; i < a->ssl_protocol_count; i++)
        if (!slice_equal(a->ssl_protocols[i], b->ssl_protocols[i]))
            return false;
    return true;
}

static bool check_request(const struct event_input *input, const struct event_request *request, struct event_error *error)
{
    enum event_trigger trigger = input->trigger;
    const struct event_request *in = &input->request;
    if (request->has_client_ip && !field_writable(trigger, FIELD_CLIENT_IP) && !slice_equal(request->client_ip, in->client_ip))
        return event_error_set(error, trigger, "read-only field changed", "request.clientIp");
    if (request->has_method && !field_writable(trigger, FIELD_METHOD) && !slice_equal(request->method, in->method))
        return event_error_set(error, trigger, "read-only field changed", "request.method");
    if (!field_writable(trigger, FIELD_URI) && !slice_equal(request->uri, in->uri))
        return event_error_set(error, trigger, "read-only field changed", "request.uri");
    if (request->has_querystring && !field_writable(trigger, FIELD_QUERYSTRING) &&
        !slice_equal(request->querystring, in->querystring))
        return event_error_set(error, trigger, "read-only field changed", "request.querystring");
    if (!check_uri_and_querystring(trigger, request, in, error))
        return false;
    if (!check_headers(trigger, "request.headers", &request->headers, &in->headers, false, request->headers_are_changes, error))
        return false;
    if (request->has_body) {
        if (!field_writable(trigger, FIELD_BODY))
            return event_error_set(error, trigger, "body not allowed at this trigger", "request.body");
        const struct event_request_body *body = &request->body;
        if (body->action == EVENT_BODY_REPLACE) {
            size_t limit = trigger == EVENT_VIEWER_REQUEST ? EVENT_VIEWER_BODY_LIMIT : EVENT_ORIGIN_BODY_LIMIT;
            long long size = (long long)body->data.len;
            if (body->encoding == EVENT_BODY_BASE64 && (size = base64_decoded_length(body->data)) < 0)
                return event_error_set(error, trigger, "body data must be valid base64", "request.body.data");
            if ((unsigned long long)size > limit)
                return event_error_set(error, trigger, trigger == EVENT_VIEWER_REQUEST ? "body exceeds 40 KB" : "body exceeds 1 MB",
                                       "request.body.data");
        }
    }
    if (request->has_origin) {
        if (!field_writable(trigger, FIELD_ORIGIN))
            return event_error_set(error, trigger, "origin not allowed at this trigger", "request.origin");
        /* An origin handed back unchanged is the configured one: it is not the
         * function's choice, so CloudFront's limits on chosen origins do not apply. */
        if (!(in->has_origin && origins_equal(&request->origin, &in->origin)) &&
            !check_origin(trigger, request, &in->headers, error))
            return false;
    } else if (field_writable(trigger, FIELD_ORIGIN) && in->has_origin) {
        return event_error_set(error, trigger, "required field missing", "request.origin");
    }
    return true;
}

static bool check_response(const struct event_input *input, const struct event_response *response, struct event_error *error)
{
    enum event_trigger trigger = input->trigger;
    bool generated = event_trigger_is_request(trigger);
    if (response->status < 200 || response->status > 599)
        return event_error_set(error, trigger, "status must be 200-599", "response.status");
    if (!generated && !field_writable(trigger, FIELD_STATUS) && response->status != input->response.status)
        return event_error_set(error, trigger, "status may not change at viewer-response", "response.status");
    if (response->has_status_description && has_line_break(response->status_description))
        return event_error_set(error, trigger, "statusDescription must not contain CR, LF or NUL", "response.statusDescription");
    if (!check_headers(trigger, "response.headers", &response->headers, generated ? NULL : &input->response.headers, false,
                       response->headers_are_changes, error))
        return false;
    size_t body_size = 0;
    if (response->has_body) {
        if (!generated && !field_writable(trigger, FIELD_RESPONSE_BODY))
            return event_error_set(error, trigger, "body may not change at viewer-response", "response.body");
        body_size = response->body.len;
        if (response->body_encoding == EVENT_BODY_BASE64) {
            long long decoded = base64_decoded_length(response->body);
            if (decoded < 0)
                return event_error_set(error, trigger, "body must be valid base64", "response.body");
            body_size = (size_t)decoded;
        }
    }
    if (trigger == EVENT_VIEWER_REQUEST && response->status == 204 && body_size > 0)
        return event_error_set(error, trigger, "204 response must not have a body", "response.body");
    if (generated) {
        size_t size = body_size, limit = trigger == EVENT_VIEWER_REQUEST ? EVENT_VIEWER_BODY_LIMIT : EVENT_ORIGIN_BODY_LIMIT;
        for (size_t i = 0; i < response->headers.count; i++)
            for (size_t j = 0; j < response->headers.items[i].value_count; j++)
                size += response->headers.items[i].values[j].key.len + response->headers.items[i].values[j].value.len + 4;
        if (size > limit)
            return event_error_set(error, trigger,
                                   trigger == EVENT_VIEWER_REQUEST ? "generated response exceeds 40 KB"
                                                                   : "generated response exceeds 1 MB",
                                   "response");
    }
    return true;
}

bool event_validate_result(const struct event_input *input, const struct event_result *result, struct event_error *error)
{
    enum event_trigger trigger = input->trigger;
    if (result->kind == EVENT_RESULT_REQUEST) {
        if (!event_trigger_is_request(trigger))
            return event_error_set(error, trigger, "response object required", "response");
        return check_request(input, &result->request, error);
    }
    return check_response(input, &result->response, error);
}

/* The input's headers with `changes` applied (see event.h); the changes
 * are at most EVENT_HEADER_CHANGES_MAX (the parser refuses more), so each
 * input header is looked up among them directly. */
static struct event_headers merge_header_changes(const struct event_headers *input, const struct event_headers *changes,
                                                 struct arena *arena)
{
    VERGE_ASSERT(changes->count <= EVENT_HEADER_CHANGES_MAX);
    struct event_headers merged = {0};
    size_t most = input->count + changes->count;
    if (most == 0)
        return merged;
    merged.items = arena_alloc(arena, arena_grow_capacity(most, ARENA_GROW_FIRST_HEADERS) * sizeof *merged.items);
    uint32_t used = 0; /* changes that replaced an input header */
    for (size_t i = 0; i < input->count; i++) {
        const struct event_header *header = &input->items[i];
        for (size_t c = 0; c < changes->count; c++)
            if (slice_equal(changes->items[c].name, header->name)) {
                header = &changes->items[c];
                used |= 1u << c;
                break;
            }
        if (header->value_count > 0)
            merged.items[merged.count++] = *header;
    }
    for (size_t c = 0; c < changes->count; c++)
        if (!(used & (1u << c)) && changes->items[c].value_count > 0)
            merged.items[merged.count++] = changes->items[c];
    return merged;
}

void event_result_merge_header_changes(const struct event_input *input, struct event_result *result, struct arena *arena)
{
    if (result->kind == EVENT_RESULT_REQUEST && result->request.headers_are_changes) {
        result->request.headers = merge_header_changes(&input->request.headers, &result->request.headers, arena);
        result->request.headers_are_changes = false;
    } else if (result->kind == EVENT_RESULT_RESPONSE && result->response.headers_are_changes) {
        result->response.headers = merge_header_changes(&input->response.headers, &result->response.headers, arena);
        result->response.headers_are_changes = false;
    }
}

bool event_header_hidden(slice_t name)
{
    if (name.len == 0)
        return false; /* no length bound: a prefix rule ("x-amz-cf-") hides names of any length */
    unsigned char first = (unsigned char)(name.ptr[0] | 0x20);
    if (first < 'a' || first > 'z')
        return false;
    const struct rule_bucket *bucket = &rule_index.hidden_by_letter[first - 'a'];
    for (size_t b = 0; b < bucket->count; b++) {
        const struct header_rule *rule = &header_rules[bucket->rules[b]];
        if (rule->prefix ? name.len < rule->len : name.len != rule->len)
            continue;
        /* the rule's name is lower case: a byte matches it as is or as its upper-case letter */
        size_t i = 0;
        for (; i < rule->len; i++) {
            unsigned char c = (unsigned char)name.ptr[i], r = (unsigned char)rule->name[i];
            if (c != r && !(c >= 'A' && c <= 'Z' && c + 32 == r))
                break;
        }
        if (i == rule->len)
            return true;
    }
    return false;
}

slice_t event_base64_encode(struct arena *arena, slice_t data)
{
    char *out = arena_alloc(arena, 4 * ((data.len + 2) / 3) + 1);
    int n = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)data.ptr, (int)data.len);
    return (slice_t){out, n > 0 ? (size_t)n : 0};
}

bool event_base64_decode(struct arena *arena, slice_t text, slice_t *out)
{
    long long decoded = base64_decoded_length(text);
    if (decoded < 0)
        return false;
    char *bytes = arena_alloc(arena, (size_t)(text.len / 4 * 3 + 1));
    if (text.len > 0 && EVP_DecodeBlock((unsigned char *)bytes, (const unsigned char *)text.ptr, (int)text.len) < 0)
        return false;
    *out = (slice_t){bytes, (size_t)decoded};
    return true;
}
