/* event.h — the Lambda@Edge event and result, as plain C data (spec §1–§2).
 *
 * Pure module: no I/O, no clock, no Lua. All memory of a parsed or built
 * event lives in a caller's arena; slices point into that arena (or into the
 * caller's buffers for events it built itself).
 *
 * Choices where the spec says "unverified" (spec §1, §2, Appendix A):
 *  - `status` may be a JSON string of digits or an integer number (lenient).
 *  - A header entry's `key` may be omitted: it becomes the map name with each
 *    hyphen-separated part capitalised (`x-foo-bar` → `X-Foo-Bar`). A `key`
 *    that differs from the map name other than by case is a validation error,
 *    and so is a map name that is not lower case.
 *  - A header value may be a string only (no arrays of strings).
 *  - Request-body sizes over the limit (text 40 KB / 1 MB, base64 decoding to
 *    more than that) are a validation error, not a silent truncation: a user
 *    would rather see the 502 than a truncated upload reach the origin.
 *  - viewer-response may not set a body (rejected, "body not allowed").
 *  - A request object returned by a response trigger, or a response object
 *    without `status`, is a structure error.
 *  - At origin-request/viewer-request a returned object with `status` is a
 *    generated response; anything else must be a request.
 *  - In a returned request, `clientIp` and `method` may be omitted (they are
 *    read-only; if present they must equal the input), `querystring` may be
 *    omitted (unchanged); `uri` and `headers` are required.
 *  - uri may not contain spaces or control characters (they would break the
 *    origin request line); header values and statusDescription may not
 *    contain CR, LF or NUL (header injection).
 *  - A generated response's size is Σ(key + ": " + value + CRLF) + decoded body.
 *  - A returned response without `headers` has none: at origin-response that
 *    deletes read-only Transfer-Encoding/Via and fails validation. A missing
 *    `statusDescription` (has_status_description false) keeps the input's.
 *  - A request body returned although Include Body is off is validated like
 *    any other; the caller ignores it (CloudFront exposes none to change).
 *  - KB = 1024 bytes, MB = 1024 KB.
 *  - A custom origin's domainName may be an IPv4 address (CloudFront wants a
 *    DNS name; verge's users point functions at local origins). IPv6
 *    literals are refused (no brackets in the field).
 *  - Switching S3 → S3 with a different OAI cannot be checked here (we have no
 *    OAI identity): not validated.
 */
#ifndef VERGE_HOOKS_EVENT_H
#define VERGE_HOOKS_EVENT_H

#include "../proxy/base.h"

enum event_trigger {
    EVENT_VIEWER_REQUEST,
    EVENT_ORIGIN_REQUEST,
    EVENT_ORIGIN_RESPONSE,
    EVENT_VIEWER_RESPONSE,
};
#define EVENT_TRIGGER_COUNT 4

/* "viewer-request" etc. */
const char *event_trigger_name(enum event_trigger trigger);
bool event_trigger_is_request(enum event_trigger trigger);

/* One occurrence of a header: `key` is the name as on the wire. */
struct event_header_value {
    slice_t key;
    slice_t value;
};

/* All occurrences of one header: `name` is the lower-case map key. */
struct event_header {
    slice_t name;
    struct event_header_value *values;
    size_t value_count;
};

struct event_headers {
    struct event_header *items;
    size_t count;
};

enum event_body_action { EVENT_BODY_READ_ONLY, EVENT_BODY_REPLACE };
enum event_body_encoding { EVENT_BODY_BASE64, EVENT_BODY_TEXT };

struct event_request_body {
    bool input_truncated;
    enum event_body_action action;
    enum event_body_encoding encoding;
    slice_t data;
};

enum event_origin_kind { EVENT_ORIGIN_CUSTOM, EVENT_ORIGIN_S3 };

struct event_origin {
    enum event_origin_kind kind;
    slice_t domain_name;
    slice_t path;
    struct event_headers custom_headers;
    /* custom only */
    int64_t port;
    slice_t protocol;
    int64_t read_timeout;
    int64_t keepalive_timeout;
    slice_t *ssl_protocols;
    size_t ssl_protocol_count;
    /* s3 only */
    slice_t auth_method;
    slice_t region;
};

struct event_request {
    slice_t client_ip;
    slice_t method;
    slice_t uri;
    slice_t querystring;
    struct event_headers headers;
    bool has_body;
    struct event_request_body body;
    bool has_origin;
    struct event_origin origin;
    /* Only for parsed results: which optional fields the function returned;
     * whether `headers` holds changes only (enum event_header_changes). */
    bool has_client_ip, has_method, has_querystring;
    bool headers_are_changes;
};

struct event_response {
    int status;
    slice_t status_description;
    bool has_status_description;
    struct event_headers headers;
    bool has_body;
    slice_t body;
    enum event_body_encoding body_encoding;
    bool headers_are_changes; /* parsed results only: see event_request */
};

struct event_config {
    slice_t distribution_domain_name;
    slice_t distribution_id;
    slice_t request_id;
};

/* What a function receives. `response` only at the response triggers;
 * request.origin only at the origin triggers; request.body only at the
 * request triggers (Include Body). */
struct event_input {
    enum event_trigger trigger;
    struct event_config config;
    struct event_request request;
    struct event_response response;
};

enum event_result_kind {
    EVENT_RESULT_REQUEST,  /* continue with this request (request triggers) */
    EVENT_RESULT_RESPONSE, /* generated (request triggers) or modified response */
};

struct event_result {
    enum event_result_kind kind;
    struct event_request request;
    struct event_response response;
};

/* A parse or validation failure, function-independent: trigger, JSON path
 * of the field (`response.headers["via"]`) and a short static rule. */
struct event_error {
    enum event_trigger trigger;
    char field[160];
    const char *rule;
};

/* Header helpers (linear; events hold few headers). */
const struct event_header *event_headers_find(const struct event_headers *headers, slice_t lower_name);
/* Appends an occurrence (creating the header if needed); name is copied lower-cased, key and value are copied. */
void event_headers_add(struct arena *arena, struct event_headers *headers, slice_t key, slice_t value);
/* The same without copying key and value (they must outlive the headers):
 * the proxy builds events from memory its request holds anyway. */
void event_headers_add_borrowed(struct arena *arena, struct event_headers *headers, slice_t key, slice_t value);
/* The same with the map name known already (`lower_name` is `key` lower-cased;
 * it must outlive the headers too): the proxy has it for well-known headers. */
void event_headers_add_lower(struct arena *arena, struct event_headers *headers, slice_t lower_name, slice_t key, slice_t value);

/* Writes the event JSON (Records[0].cf...) for input->trigger into out (appended). */
void event_encode(const struct event_input *input, struct bytebuf *out);

/* Writes a parsed result as JSON (appended), in the contract's shape and
 * event_encode's key order: a request object (clientIp, headers, method,
 * querystring, uri; body at the request triggers and origin at the origin
 * triggers) or a response object (body, bodyEncoding, headers, status,
 * statusDescription). It is the result as verge read it: header keys the
 * function left out filled in, `status` as a string of digits, bodyEncoding
 * "text" when a body came without one. Optional fields the result does not
 * have (the has_* flags) are left out. Header maps are written as they are:
 * a result whose headers are changes is merged first
 * (event_result_merge_header_changes). */
void event_encode_result(enum event_trigger trigger, const struct event_result *result, struct bytebuf *out);

/* Where event_encode_compact wrote the two header maps a worker may build
 * from a cached copy (hooks/worker.c, "Header templates"): [0] the
 * request's headers, [1] the response's; offsets from the event's first
 * byte, each map's whole encoding (its table tag to its last value). len 0:
 * not in this event (no response at the request triggers). */
struct event_compact_layout {
    struct {
        uint32_t at, len;
    } headers[2];
};

/* The same event in LuaJIT's serialization format (string.buffer), which
 * workers decode into Lua tables in one call: how the proxy sends events.
 * The schema's field names are written as references into event_keys (the
 * format's string dictionary, tag 0x0f + index), which a worker's
 * buffer.new({dict = event_keys}) decodes to the same interned strings
 * every time instead of hashing and interning each key anew. */
void event_encode_compact(const struct event_input *input, struct bytebuf *out, struct event_compact_layout *layout);

/* The string dictionary of the compact format: every field name the event
 * schema has (what the encoder writes and the result reader knows), never
 * user data such as header names. The position is the index on the wire, so
 * the proxy and its workers (the same binary) use this one list; the worker
 * hands it to string.buffer as its `dict` option, in this order, and its
 * results come back with these keys as references too. */
enum event_key {
    EVENT_KEY_RECORDS,
    EVENT_KEY_CF,
    EVENT_KEY_CONFIG,
    EVENT_KEY_DISTRIBUTION_DOMAIN_NAME,
    EVENT_KEY_DISTRIBUTION_ID,
    EVENT_KEY_EVENT_TYPE,
    EVENT_KEY_REQUEST_ID,
    EVENT_KEY_REQUEST,
    EVENT_KEY_RESPONSE,
    EVENT_KEY_CLIENT_IP,
    EVENT_KEY_HEADERS,
    EVENT_KEY_METHOD,
    EVENT_KEY_ORIGIN,
    EVENT_KEY_QUERYSTRING,
    EVENT_KEY_URI,
    EVENT_KEY_KEY,
    EVENT_KEY_VALUE,
    EVENT_KEY_BODY,
    EVENT_KEY_INPUT_TRUNCATED,
    EVENT_KEY_ACTION,
    EVENT_KEY_ENCODING,
    EVENT_KEY_DATA,
    EVENT_KEY_STATUS,
    EVENT_KEY_STATUS_DESCRIPTION,
    EVENT_KEY_BODY_ENCODING,
    EVENT_KEY_CUSTOM,
    EVENT_KEY_S3,
    EVENT_KEY_CUSTOM_HEADERS,
    EVENT_KEY_DOMAIN_NAME,
    EVENT_KEY_KEEPALIVE_TIMEOUT,
    EVENT_KEY_PATH,
    EVENT_KEY_PORT,
    EVENT_KEY_PROTOCOL,
    EVENT_KEY_READ_TIMEOUT,
    EVENT_KEY_SSL_PROTOCOLS,
    EVENT_KEY_AUTH_METHOD,
    EVENT_KEY_REGION,
    EVENT_KEY_COUNT
};
extern const slice_t event_keys[EVENT_KEY_COUNT];

/* Parses an event JSON as event_encode writes it (the worker side, and tests). */
bool event_parse_event(const char *json, size_t len, struct arena *arena, struct event_input *out, struct event_error *error);

/* Parses a function's result for `trigger`. Structure only (types, required
 * fields, request vs response); the rules are event_validate_result's. The
 * input is copied into `arena` once and the result's slices point into that
 * copy (not NUL-terminated): the input may be freed when the call returns.
 * event_parse_result_compact reads what a worker's string.buffer encode
 * wrote (how workers answer the proxy); event_parse_result reads JSON (tests
 * and tools) by turning it into that format first, so both apply the same
 * rules and error paths (an empty table or object is accepted where a list is
 * due: Lua cannot tell {} from []), but for what only JSON can say: [] is no
 * object, 1.0 no integer. */
bool event_parse_result(enum event_trigger trigger, const char *json, size_t len, struct arena *arena, struct event_result *out,
                        struct event_error *error);

/* How a worker sent the result's header map (hooks/worker.c, "Header
 * changes"): whole, or as changes against the event's map of the same
 * message — only the headers whose entries differ from the event's, each
 * with its whole new list, and each header the function removed with an
 * empty list. What a function returns is the same either way; the changes
 * spare the proxy reading and checking the headers it left alone. */
enum event_header_changes {
    EVENT_HEADERS_WHOLE = 0,
    EVENT_HEADERS_REQUEST_CHANGES = 1,  /* a request result's headers against the event's request headers */
    EVENT_HEADERS_RESPONSE_CHANGES = 2, /* a response result's headers against the event's response headers */
};
/* At most this many changed or removed headers come as changes; a worker
 * sends a map with more whole. */
#define EVENT_HEADER_CHANGES_MAX 16

/* `changes`: how the worker sent the headers; anything but WHOLE sets
 * headers_are_changes of the request or response read, and is an error when
 * it names the other message or more than EVENT_HEADER_CHANGES_MAX
 * headers (a worker never sends that). */
bool event_parse_result_compact(enum event_trigger trigger, const char *data, size_t len, enum event_header_changes changes,
                                struct arena *arena, struct event_result *out, struct event_error *error);

/* Fills `error` (field formatted from `fmt`) and returns false, so a check
 * can `return event_error_set(...)`. Shared by event.c and rules.c. */
bool event_error_set(struct event_error *error, enum event_trigger trigger, const char *rule, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Whether a valid result differs from what the function was given: a
 * generated response, another uri, method, querystring, origin, a replaced
 * body, other headers (by name, value and key spelling, not by order), or at
 * a response trigger another status, description or a body. Pure; for
 * traces (`verge dev`), not for deciding what to apply. */
bool event_result_changes_input(const struct event_input *input, const struct event_result *result);

/* Checks a parsed result against the input the function saw (spec §2.6).
 * Headers that are changes (headers_are_changes) are checked as changes:
 * the same verdict as for the whole map they stand for. */
bool event_validate_result(const struct event_input *input, const struct event_result *result, struct event_error *error);

/* A validated result whose headers are changes: makes them the whole map —
 * the input's headers in their order, each changed one replaced by its new
 * list (dropped when that is empty), then the added ones — and clears
 * headers_are_changes. Validation checked the changes only: a header the
 * function left as it was passes every rule (hidden names never reach an
 * event, the proxy's parsers refuse malformed ones). No-op otherwise. */
void event_result_merge_header_changes(const struct event_input *input, struct event_result *result, struct arena *arena);

/* True for the headers a function never sees (spec §2.3.1: Connection,
 * X-Amz-Cf-*, ...); the proxy keeps them out of events and keeps them on the
 * message whatever the function returns. Case-insensitive. */
bool event_header_hidden(slice_t name);

/* Base64 (standard alphabet, padded), memory from `arena`. decode returns
 * false on anything but canonical padded base64. */
slice_t event_base64_encode(struct arena *arena, slice_t data);
bool event_base64_decode(struct arena *arena, slice_t text, slice_t *out);

/* Limits (spec §1.5, §2.2, §2.4). */
#define EVENT_VIEWER_BODY_LIMIT (40u * 1024u)
#define EVENT_ORIGIN_BODY_LIMIT (1024u * 1024u)
#define EVENT_URI_LIMIT 8192u
#define EVENT_MAX_JSON_DEPTH 64

#endif
