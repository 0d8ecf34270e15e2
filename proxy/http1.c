/* http1.c — verge's strict HTTP/1.1 parser (RFC 9112 / RFC 9110).
 *
 * What: request and response heads parsed in one pass over the caller's
 * buffer into structs whose slices point into that buffer, plus an in-place,
 * resumable chunked decoder. No allocation, no I/O, no strlen on input.
 *
 * Invariants:
 *  - Heads are reparsed from byte 0 on each call (the parser keeps no state
 *    between calls); the scan is bounded by HTTP1_MAX_HEAD_BYTES, so a
 *    trickled head costs at most O(limit) per call.
 *  - Every slice written lies inside buf[0..len) (or points at a static
 *    string: the "/" path of an absolute-form target without a path).
 *  - Anything that lets two parsers disagree on where a message ends is an
 *    error (see http1.h); errors found before the head is complete are
 *    reported at once, so a peer cannot park a bad head in our buffer.
 *  - The chunked decoder keeps all its state in the decoder struct and
 *    consumes every byte it is given, so input may be split anywhere. Its
 *    write position never passes its read position (decoding only shrinks).
 *
 * Locking: none; everything works on caller-owned memory.
 */
#include "http1.h"
#include "swar.h"

/* Bounds that are not part of the public contract. */
#define HTTP1_MAX_METHOD_BYTES 64       /* longer than any method we could know → 501 (RFC 9112 §3) */
#define HTTP1_MAX_LEADING_EMPTY_LINES 4 /* RFC 9112 §2.2: ignore "at least one" empty line before a request */
#define CHUNK_MAX_LINE_BYTES 4096       /* a chunk-size line with its extensions */
#define CHUNK_MAX_TRAILER_BYTES 16384   /* all trailer lines together */

/* ---- character classes --------------------------------------------------- */

/* tchar (RFC 9110 §5.6.2): "!#$%&'*+-.^_`|~" DIGIT ALPHA */
static const unsigned char token_chars[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1,
    ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1, ['0'] = 1, ['1'] = 1,  ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
    ['7'] = 1, ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1,  ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,  ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1,
    ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1,  ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1,
    ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,  ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1,
    ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,  ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static inline bool is_token_char(char c)
{
    return token_chars[(unsigned char)c] != 0;
}
/* field-vchar / SP / HTAB (RFC 9110 §5.5): everything but CTLs and DEL. */
static inline bool is_value_char(char c)
{
    unsigned char u = (unsigned char)c;
    return (u >= 0x20 && u != 0x7f) || u == '\t';
}
/* What we accept in a request target: VCHAR without '#' (no fragments on the
 * wire) and without obs-text (a target is ASCII; raw UTF-8 would also reach
 * function events that must be valid JSON). */
static inline bool is_target_char(char c)
{
    unsigned char u = (unsigned char)c;
    return u > 0x20 && u < 0x7f && u != '#';
}
static inline bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}
static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}
static inline unsigned char lower(char c)
{
    unsigned char u = (unsigned char)c;
    return (u >= 'A' && u <= 'Z') ? (unsigned char)(u + 32) : u;
}

/* Skips field-value bytes; stops at the first byte that is not one (or end).
 * Eight bytes at a time (swar.h): a word with any byte that needs a closer
 * look is looked at byte by byte. */
static inline const char *skip_value_chars(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t w = load_word(p);
        if (swar_has_less(w, 0x20) | swar_has_byte(w, 0x7f))
            break;
        p += 8;
    }
    while (p < end && is_value_char(*p))
        p++;
    return p;
}

static inline const char *skip_target_chars(const char *p, const char *end)
{
    while (end - p >= 8) {
        uint64_t w = load_word(p);
        if (swar_has_less(w, 0x21) | swar_has_byte(w, 0x7f) | swar_has_byte(w, '#') | (w & SWAR_HIGHS))
            break;
        p += 8;
    }
    while (p < end && is_target_char(*p))
        p++;
    return p;
}

static bool slice_equal_nocase_literal(slice_t s, const char *literal, size_t literal_len)
{
    if (s.len != literal_len)
        return false;
    for (size_t i = 0; i < literal_len; i++)
        if (lower(s.ptr[i]) != (unsigned char)literal[i])
            return false;
    return true;
}
#define SLICE_IS(s, lit) slice_equal_nocase_literal((s), (lit), sizeof(lit) - 1)

/* ---- header tokens ------------------------------------------------------- */

static const struct {
    const char *name; /* lowercase */
    unsigned char len;
    unsigned flags;
} token_table[HTTP_TOKEN__COUNT] = {
#define T(token, lit, fl) [token] = {lit, sizeof(lit) - 1, fl}
    T(HTTP_TOKEN_OTHER, "", 0),
    T(HTTP_TOKEN_HOST, "host", 0),
    T(HTTP_TOKEN_CONTENT_LENGTH, "content-length", 0),
    T(HTTP_TOKEN_TRANSFER_ENCODING, "transfer-encoding", HTTP_TOKEN_FLAG_HOP_BY_HOP),
    T(HTTP_TOKEN_CONNECTION, "connection", HTTP_TOKEN_FLAG_HOP_BY_HOP),
    T(HTTP_TOKEN_KEEP_ALIVE, "keep-alive", HTTP_TOKEN_FLAG_HOP_BY_HOP),
    T(HTTP_TOKEN_TE, "te", HTTP_TOKEN_FLAG_HOP_BY_HOP),
    T(HTTP_TOKEN_TRAILER, "trailer", HTTP_TOKEN_FLAG_HOP_BY_HOP),
    T(HTTP_TOKEN_UPGRADE, "upgrade", HTTP_TOKEN_FLAG_HOP_BY_HOP),
    T(HTTP_TOKEN_PROXY_CONNECTION, "proxy-connection", HTTP_TOKEN_FLAG_HOP_BY_HOP),
    T(HTTP_TOKEN_PROXY_AUTHENTICATE, "proxy-authenticate", HTTP_TOKEN_FLAG_HOP_BY_HOP),
    T(HTTP_TOKEN_PROXY_AUTHORIZATION, "proxy-authorization", HTTP_TOKEN_FLAG_HOP_BY_HOP),
    T(HTTP_TOKEN_EXPECT, "expect", 0),
    T(HTTP_TOKEN_VIA, "via", 0),
    T(HTTP_TOKEN_X_FORWARDED_FOR, "x-forwarded-for", 0),
    T(HTTP_TOKEN_DATE, "date", 0),
    T(HTTP_TOKEN_SERVER, "server", 0),
    T(HTTP_TOKEN_CONTENT_TYPE, "content-type", 0),
    T(HTTP_TOKEN_ETAG, "etag", 0),
    T(HTTP_TOKEN_LAST_MODIFIED, "last-modified", 0),
    T(HTTP_TOKEN_IF_NONE_MATCH, "if-none-match", 0),
    T(HTTP_TOKEN_IF_MODIFIED_SINCE, "if-modified-since", 0),
    T(HTTP_TOKEN_IF_MATCH, "if-match", 0),
    T(HTTP_TOKEN_IF_UNMODIFIED_SINCE, "if-unmodified-since", 0),
    T(HTTP_TOKEN_IF_RANGE, "if-range", 0),
    T(HTTP_TOKEN_RANGE, "range", 0),
    T(HTTP_TOKEN_CACHE_CONTROL, "cache-control", 0),
    T(HTTP_TOKEN_AUTHORIZATION, "authorization", 0),
    T(HTTP_TOKEN_X_AMZ_CF_ID, "x-amz-cf-id", 0),
    T(HTTP_TOKEN_HTTP2_SETTINGS, "http2-settings", HTTP_TOKEN_FLAG_HOP_BY_HOP),
#undef T
};

enum http_token http_token_lookup(slice_t name)
{
    if (name.len < 2 || name.len > 19)
        return HTTP_TOKEN_OTHER;
    /* Length and first letter pick at most one candidate; one compare confirms. */
    unsigned char first = lower(name.ptr[0]);
    enum http_token candidate = HTTP_TOKEN_OTHER;
    switch (name.len) {
    case 2:
        candidate = first == 't' ? HTTP_TOKEN_TE : HTTP_TOKEN_OTHER;
        break;
    case 3:
        candidate = first == 'v' ? HTTP_TOKEN_VIA : HTTP_TOKEN_OTHER;
        break;
    case 4:
        candidate = first == 'h'   ? HTTP_TOKEN_HOST
                    : first == 'd' ? HTTP_TOKEN_DATE
                    : first == 'e' ? HTTP_TOKEN_ETAG
                                   : HTTP_TOKEN_OTHER;
        break;
    case 5:
        candidate = first == 'r' ? HTTP_TOKEN_RANGE : HTTP_TOKEN_OTHER;
        break;
    case 6:
        candidate = first == 'e' ? HTTP_TOKEN_EXPECT : first == 's' ? HTTP_TOKEN_SERVER : HTTP_TOKEN_OTHER;
        break;
    case 7:
        candidate = first == 't' ? HTTP_TOKEN_TRAILER : first == 'u' ? HTTP_TOKEN_UPGRADE : HTTP_TOKEN_OTHER;
        break;
    case 8:
        if (first == 'i')
            candidate = lower(name.ptr[3]) == 'm' ? HTTP_TOKEN_IF_MATCH : HTTP_TOKEN_IF_RANGE;
        break;
    case 10:
        candidate = first == 'c' ? HTTP_TOKEN_CONNECTION : first == 'k' ? HTTP_TOKEN_KEEP_ALIVE : HTTP_TOKEN_OTHER;
        break;
    case 11:
        candidate = first == 'x' ? HTTP_TOKEN_X_AMZ_CF_ID : HTTP_TOKEN_OTHER;
        break;
    case 12:
        candidate = first == 'c' ? HTTP_TOKEN_CONTENT_TYPE : HTTP_TOKEN_OTHER;
        break;
    case 13:
        switch (first) {
        case 'l':
            candidate = HTTP_TOKEN_LAST_MODIFIED;
            break;
        case 'i':
            candidate = HTTP_TOKEN_IF_NONE_MATCH;
            break;
        case 'c':
            candidate = HTTP_TOKEN_CACHE_CONTROL;
            break;
        case 'a':
            candidate = HTTP_TOKEN_AUTHORIZATION;
            break;
        }
        break;
    case 14:
        candidate = first == 'c' ? HTTP_TOKEN_CONTENT_LENGTH : first == 'h' ? HTTP_TOKEN_HTTP2_SETTINGS : HTTP_TOKEN_OTHER;
        break;
    case 15:
        candidate = first == 'x' ? HTTP_TOKEN_X_FORWARDED_FOR : HTTP_TOKEN_OTHER;
        break;
    case 16:
        candidate = first == 'p' ? HTTP_TOKEN_PROXY_CONNECTION : HTTP_TOKEN_OTHER;
        break;
    case 17:
        candidate = first == 't' ? HTTP_TOKEN_TRANSFER_ENCODING : first == 'i' ? HTTP_TOKEN_IF_MODIFIED_SINCE : HTTP_TOKEN_OTHER;
        break;
    case 18:
        candidate = first == 'p' ? HTTP_TOKEN_PROXY_AUTHENTICATE : HTTP_TOKEN_OTHER;
        break;
    case 19:
        candidate = first == 'p'   ? HTTP_TOKEN_PROXY_AUTHORIZATION
                    : first == 'i' ? HTTP_TOKEN_IF_UNMODIFIED_SINCE
                                   : HTTP_TOKEN_OTHER;
        break;
    }
    if (candidate == HTTP_TOKEN_OTHER)
        return HTTP_TOKEN_OTHER;
    return slice_equal_nocase_literal(name, token_table[candidate].name, token_table[candidate].len) ? candidate : HTTP_TOKEN_OTHER;
}

unsigned http_token_flags(enum http_token token)
{
    if ((unsigned)token >= HTTP_TOKEN__COUNT)
        return 0;
    return token_table[token].flags;
}

slice_t http_token_name(enum http_token token)
{
    if ((unsigned)token >= HTTP_TOKEN__COUNT)
        return (slice_t){"", 0};
    return (slice_t){token_table[token].name, token_table[token].len};
}

/* Walks a comma-separated list: returns the next element (OWS trimmed, may be
 * empty) and advances *rest past it and its comma. */
static slice_t list_next(slice_t *rest)
{
    const char *p = rest->ptr, *end = rest->ptr + rest->len;
    const char *comma = p;
    while (comma < end && *comma != ',')
        comma++;
    slice_t item = slice_trim_ows(slice_make(p, (size_t)(comma - p)));
    if (comma < end)
        comma++;
    *rest = slice_make(comma, (size_t)(end - comma));
    return item;
}

bool http_list_contains(slice_t value, slice_t item)
{
    slice_t rest = value;
    while (rest.len > 0) {
        slice_t element = list_next(&rest);
        if (slice_equal_nocase(element, item))
            return true;
    }
    return false;
}

/* ---- shared head parsing ------------------------------------------------- */

static inline enum http1_result fail(struct http1_error *error, int status, const char *reason)
{
    error->status = status;
    error->reason = reason;
    return HTTP1_ERROR;
}

/* At a CR or LF that ends a line: sets *next past the terminator. CRLF or a
 * bare LF end a line; a CR followed by anything else is a bare CR. */
static inline enum http1_result parse_line_end(const char *p, const char *end, const char **next, struct http1_error *error)
{
    if (*p == '\n') {
        *next = p + 1;
        return HTTP1_DONE;
    }
    if (p + 1 == end)
        return HTTP1_INCOMPLETE;
    if (p[1] != '\n')
        return fail(error, 400, "bare CR");
    *next = p + 2;
    return HTTP1_DONE;
}

/* Parses header lines from p up to and including the empty line. On DONE,
 * *next points just past the head. Statuses are request statuses (the
 * response parser maps them to 502). */
static enum http1_result parse_header_fields(const char *p, const char *end, struct http_header *headers, size_t *count,
                                             const char **next, struct http1_error *error)
{
    size_t n = 0;
    enum http1_result r;
    for (;;) {
        if (p == end)
            return HTTP1_INCOMPLETE;
        if (*p == '\r' || *p == '\n') {
            r = parse_line_end(p, end, next, error);
            if (r == HTTP1_DONE)
                *count = n;
            return r;
        }
        if (is_ows(*p))
            return fail(error, 400, n == 0 ? "whitespace before first header field" : "obs-fold in header");
        if (n == HTTP1_MAX_HEADERS)
            return fail(error, 431, "too many header fields");

        const char *name_start = p;
        while (p < end && is_token_char(*p))
            p++;
        if (p == end)
            return HTTP1_INCOMPLETE;
        if (*p != ':') {
            if (is_ows(*p))
                return fail(error, 400, "whitespace before colon in header");
            if (*p == '\r') {
                if (p + 1 == end)
                    return HTTP1_INCOMPLETE;
                return fail(error, 400, p[1] == '\n' ? "header line without colon" : "bare CR");
            }
            if (*p == '\n')
                return fail(error, 400, "header line without colon");
            return fail(error, 400, "invalid header name");
        }
        if (p == name_start)
            return fail(error, 400, "empty header name");
        slice_t name = slice_make(name_start, (size_t)(p - name_start));
        p++;
        while (p < end && is_ows(*p))
            p++;
        const char *value_start = p;
        p = skip_value_chars(p, end);
        if (p == end)
            return HTTP1_INCOMPLETE;
        if (*p != '\r' && *p != '\n')
            return fail(error, 400, "control character in header value");
        const char *value_end = p;
        r = parse_line_end(p, end, &p, error);
        if (r != HTTP1_DONE)
            return r;
        while (value_end > value_start && is_ows(value_end[-1]))
            value_end--;
        headers[n].name = name;
        headers[n].value = slice_make(value_start, (size_t)(value_end - value_start));
        headers[n].token = http_token_lookup(name);
        n++;
    }
}

/* Host = uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2). Non-empty
 * host; IP-literal in brackets; reg-name/IPv4 from unreserved, pct-encoded
 * and sub-delims; port at most 5 digits and <= 65535. */
static bool authority_valid(slice_t s)
{
    const char *p = s.ptr, *end = s.ptr + s.len;
    if (p == end)
        return false;
    if (*p == '[') {
        p++;
        const char *inside = p;
        while (p < end && *p != ']') {
            char c = *p;
            if (!(ascii_hex_value(c) >= 0 || c == ':' || c == '.' || c == 'v' || c == 'V'))
                return false;
            p++;
        }
        if (p == end || p == inside)
            return false;
        p++;
    } else {
        const char *host = p;
        while (p < end && *p != ':') {
            unsigned char c = (unsigned char)*p;
            bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit((char)c) || c == '-' || c == '.' ||
                              c == '_' || c == '~';
            bool sub_delim = c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' || c == '+' ||
                             c == ',' || c == ';' || c == '=';
            if (c == '%') {
                if (end - p < 3 || ascii_hex_value(p[1]) < 0 || ascii_hex_value(p[2]) < 0)
                    return false;
                p += 3;
                continue;
            }
            if (!unreserved && !sub_delim)
                return false;
            p++;
        }
        if (p == host)
            return false;
    }
    if (p == end)
        return true;
    if (*p != ':')
        return false;
    p++;
    if (end - p > 5)
        return false;
    unsigned port = 0;
    for (; p < end; p++) {
        if (!is_digit(*p))
            return false;
        port = port * 10 + (unsigned)(*p - '0');
    }
    return port <= 65535;
}

/* Accumulates Transfer-Encoding header lines (each a list of codings). */
struct transfer_coding_state {
    bool seen;
    bool invalid;      /* an empty element or something that is not a token */
    bool last_chunked; /* the last coding seen so far is chunked */
    unsigned chunked_count;
    bool other_coding; /* some coding other than chunked */
};

static void transfer_coding_add(struct transfer_coding_state *state, slice_t value)
{
    state->seen = true;
    slice_t rest = value;
    if (rest.len == 0)
        state->invalid = true;
    while (rest.len > 0) {
        bool trailing_comma = rest.ptr[rest.len - 1] == ',';
        slice_t coding = list_next(&rest);
        if (coding.len == 0) {
            state->invalid = true;
            continue;
        }
        if (SLICE_IS(coding, "chunked")) {
            state->chunked_count++;
            state->last_chunked = true;
        } else {
            for (size_t i = 0; i < coding.len; i++)
                if (!is_token_char(coding.ptr[i]))
                    state->invalid = true;
            state->other_coding = true;
            state->last_chunked = false;
        }
        /* "chunked," leaves an empty last element that list_next never yields. */
        if (rest.len == 0 && trailing_comma)
            state->invalid = true;
    }
}

/* Checks a Transfer-Encoding that is the framing of a message; status is 400
 * for requests, 502 for responses. */
static enum http1_result transfer_coding_check(const struct transfer_coding_state *state, int status, struct http1_error *error)
{
    if (state->invalid)
        return fail(error, status, "invalid Transfer-Encoding");
    if (!state->last_chunked)
        return fail(error, status, "chunked is not the final transfer coding");
    if (state->chunked_count > 1)
        return fail(error, status, "chunked applied more than once");
    if (state->other_coding)
        return fail(error, status == 400 ? 501 : status, "unsupported transfer coding");
    return HTTP1_DONE;
}

/* ---- requests ------------------------------------------------------------ */

/* Splits an origin-form (or the path part of an absolute-form) at the first '?'. */
static void split_path_query(const char *p, const char *end, slice_t *path, slice_t *query)
{
    const char *q = memchr(p, '?', (size_t)(end - p));
    if (q == NULL) {
        *path = slice_make(p, (size_t)(end - p));
        *query = slice_make(end, 0);
    } else {
        *path = slice_make(p, (size_t)(q - p));
        *query = slice_make(q + 1, (size_t)(end - q - 1));
    }
}

/* Classifies the target and fills path, query and (absolute-form) authority. */
static enum http1_result parse_request_target(struct http1_request *out, bool *absolute_form, struct http1_error *error)
{
    const char *p = out->target.ptr, *end = out->target.ptr + out->target.len;
    *absolute_form = false;
    bool is_options = slice_equal(out->method, SLICE_LITERAL("OPTIONS"));
    if (*p == '/') {
        split_path_query(p, end, &out->path, &out->query);
        return HTTP1_DONE;
    }
    if (out->target.len == 1 && *p == '*') {
        if (!is_options)
            return fail(error, 400, "asterisk-form target without OPTIONS");
        out->path = out->target;
        out->query = slice_make(end, 0);
        return HTTP1_DONE;
    }
    /* absolute-URI: scheme ":" ...; scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
    const char *s = p;
    if (!((lower(*s) >= 'a' && lower(*s) <= 'z')))
        return fail(error, 400, "invalid request target");
    while (s < end && ((lower(*s) >= 'a' && lower(*s) <= 'z') || is_digit(*s) || *s == '+' || *s == '-' || *s == '.'))
        s++;
    if (s == end || *s != ':')
        return fail(error, 400, "invalid request target");
    slice_t scheme = slice_make(p, (size_t)(s - p));
    s++;
    /* "host:port" (authority-form) is only for CONNECT; http URIs have "//". */
    if (end - s < 2 || s[0] != '/' || s[1] != '/')
        return fail(error, 400, "invalid request target");
    if (!SLICE_IS(scheme, "http") && !SLICE_IS(scheme, "https"))
        return fail(error, 400, "unsupported scheme in request target");
    s += 2;
    const char *authority_start = s;
    while (s < end && *s != '/' && *s != '?')
        s++;
    slice_t authority = slice_make(authority_start, (size_t)(s - authority_start));
    if (!authority_valid(authority))
        return fail(error, 400, "invalid authority in request target");
    out->authority = authority;
    if (s == end || *s == '?') {
        out->path = SLICE_LITERAL("/");
        out->query = s == end ? slice_make(end, 0) : slice_make(s + 1, (size_t)(end - s - 1));
    } else {
        split_path_query(s, end, &out->path, &out->query);
    }
    *absolute_form = true;
    return HTTP1_DONE;
}

/* Parses "HTTP/d.d" at p followed by the line end; sets *minor. Request and
 * response lines share it; `unsupported` is the status for a well-formed
 * version other than 1.0/1.1, `garbage` for anything else. */
static enum http1_result parse_version(const char *p, const char *end, int *minor, const char **next, int unsupported, int garbage,
                                       struct http1_error *error)
{
    static const char pattern[] = "HTTP/1.1"; /* digits at 5 and 7 are checked as digits */
    size_t avail = (size_t)(end - p);
    for (size_t i = 0; i < 8 && i < avail; i++) {
        bool ok = (i == 5 || i == 7) ? is_digit(p[i]) : p[i] == pattern[i];
        if (!ok)
            return fail(error, garbage, "invalid HTTP version");
    }
    if (avail < 8)
        return HTTP1_INCOMPLETE;
    *minor = p[7] - '0';
    *next = p + 8;
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        return fail(error, unsupported, "HTTP version not supported");
    return HTTP1_DONE;
}

static enum http1_result request_parse_head(const char *buf, const char *end, struct http1_request *out, struct http1_error *error)
{
    const char *p = buf;
    enum http1_result r;

    /* RFC 9112 §2.2: tolerate a few empty lines before the request line
     * (clients that send an extra CRLF after a body). */
    for (int empty_lines = 0; p < end && (*p == '\r' || *p == '\n'); empty_lines++) {
        if (empty_lines == HTTP1_MAX_LEADING_EMPTY_LINES)
            return fail(error, 400, "too many empty lines before request line");
        r = parse_line_end(p, end, &p, error);
        if (r != HTTP1_DONE)
            return r;
    }

    /* method SP */
    const char *method_start = p;
    while (p < end && is_token_char(*p))
        p++;
    if (p - method_start > HTTP1_MAX_METHOD_BYTES)
        return fail(error, 501, "method too long");
    if (p == end)
        return HTTP1_INCOMPLETE;
    if (*p != ' ')
        return fail(error, 400, "invalid character in method");
    if (p == method_start)
        return fail(error, 400, "missing method");
    out->method = slice_make(method_start, (size_t)(p - method_start));
    p++;

    /* request-target SP */
    const char *target_start = p;
    p = skip_target_chars(p, end);
    if (p - target_start > HTTP1_MAX_URI_BYTES)
        return fail(error, 414, "request target too long");
    if (p == end)
        return HTTP1_INCOMPLETE;
    if (*p != ' ') {
        if (*p == '\r' && p + 1 < end && p[1] != '\n')
            return fail(error, 400, "bare CR");
        if (*p == '\r' || *p == '\n')
            return fail(error, 400, p == target_start ? "missing request target" : "missing HTTP version");
        if (*p == '#')
            return fail(error, 400, "fragment in request target");
        return fail(error, 400, p == target_start ? "extra space in request line" : "invalid character in request target");
    }
    if (p == target_start)
        return fail(error, 400, "extra space in request line");
    out->target = slice_make(target_start, (size_t)(p - target_start));
    p++;

    /* HTTP-version line-end */
    const char *version_end;
    r = parse_version(p, end, &out->version_minor, &version_end, 505, 400, error);
    if (r == HTTP1_ERROR && error->status == 505) {
        /* "HTTP/2.0 garbage" is garbage, not an unsupported version. */
        if (version_end == end)
            return HTTP1_INCOMPLETE;
        if (*version_end != '\r' && *version_end != '\n')
            return fail(error, 400, "invalid HTTP version");
        return HTTP1_ERROR;
    }
    if (r != HTTP1_DONE)
        return r;
    p = version_end;
    if (p == end)
        return HTTP1_INCOMPLETE;
    if (*p != '\r' && *p != '\n')
        return fail(error, 400, *p == ' ' ? "trailing space in request line" : "invalid HTTP version");
    r = parse_line_end(p, end, &p, error);
    if (r != HTTP1_DONE)
        return r;

    if (slice_equal(out->method, SLICE_LITERAL("CONNECT")))
        return fail(error, 405, "CONNECT is not supported");

    bool absolute_form;
    r = parse_request_target(out, &absolute_form, error);
    if (r != HTTP1_DONE)
        return r;

    const char *head_end;
    r = parse_header_fields(p, end, out->headers, &out->header_count, &head_end, error);
    if (r != HTTP1_DONE)
        return r;
    out->head_bytes = (size_t)(head_end - buf);

    /* Semantics of the fields that decide framing, routing and persistence. */
    size_t host_count = 0;
    bool content_length_seen = false;
    bool connection_close = false, connection_keep_alive = false;
    struct transfer_coding_state transfer_coding = {0};
    slice_t host = {NULL, 0};
    for (size_t i = 0; i < out->header_count; i++) {
        const struct http_header *h = &out->headers[i];
        switch (h->token) {
        case HTTP_TOKEN_HOST:
            if (++host_count > 1)
                return fail(error, 400, "multiple Host");
            if (h->value.len == 0)
                return fail(error, 400, "empty Host");
            if (!authority_valid(h->value))
                return fail(error, 400, "invalid Host");
            host = h->value;
            break;
        case HTTP_TOKEN_CONTENT_LENGTH:
            if (content_length_seen || memchr(h->value.ptr, ',', h->value.len) != NULL)
                return fail(error, 400, "duplicate Content-Length");
            if (!slice_parse_u64(h->value, &out->content_length))
                return fail(error, 400, "invalid Content-Length");
            content_length_seen = true;
            break;
        case HTTP_TOKEN_TRANSFER_ENCODING:
            transfer_coding_add(&transfer_coding, h->value);
            break;
        case HTTP_TOKEN_CONNECTION:
            if (http_list_contains(h->value, SLICE_LITERAL("close")))
                connection_close = true;
            if (http_list_contains(h->value, SLICE_LITERAL("keep-alive")))
                connection_keep_alive = true;
            break;
        case HTTP_TOKEN_EXPECT:
            /* RFC 9110 §10.1.1: ignore 100-continue from HTTP/1.0 clients. */
            if (out->version_minor == 1 && SLICE_IS(h->value, "100-continue"))
                out->expect_continue = true;
            break;
        default:
            break;
        }
    }
    if (out->version_minor == 1 && host_count == 0)
        return fail(error, 400, "missing Host");
    if (!absolute_form)
        out->authority = host;

    if (transfer_coding.seen) {
        if (content_length_seen)
            return fail(error, 400, "Content-Length and Transfer-Encoding together");
        if (out->version_minor == 0)
            return fail(error, 400, "Transfer-Encoding in HTTP/1.0 request");
        r = transfer_coding_check(&transfer_coding, 400, error);
        if (r != HTTP1_DONE)
            return r;
        out->body_kind = HTTP1_BODY_CHUNKED;
    } else if (content_length_seen) {
        out->body_kind = HTTP1_BODY_LENGTH;
    } else {
        out->body_kind = HTTP1_BODY_NONE;
    }
    out->keep_alive = out->version_minor == 1 ? !connection_close : (connection_keep_alive && !connection_close);
    return HTTP1_DONE;
}

enum http1_result http1_parse_request(const char *buf, size_t len, struct http1_request *out, struct http1_error *error)
{
    out->method = out->target = out->path = out->query = out->authority = slice_make(buf, 0);
    out->version_minor = 1;
    out->header_count = 0;
    out->head_bytes = 0;
    out->body_kind = HTTP1_BODY_NONE;
    out->content_length = 0;
    out->keep_alive = false;
    out->expect_continue = false;
    if (len == 0)
        return HTTP1_INCOMPLETE;
    /* The scan never looks past the head limit: a head that is complete
     * within it is fine, anything longer is 431 however it continues. */
    size_t scan_len = len > HTTP1_MAX_HEAD_BYTES ? HTTP1_MAX_HEAD_BYTES : len;
    enum http1_result r = request_parse_head(buf, buf + scan_len, out, error);
    if (r == HTTP1_INCOMPLETE && len > HTTP1_MAX_HEAD_BYTES)
        return fail(error, 431, "request head too large");
    return r;
}

/* ---- responses ----------------------------------------------------------- */

static enum http1_result response_parse_head(const char *buf, const char *end, slice_t request_method, struct http1_response *out,
                                             struct http1_error *error)
{
    const char *p = buf;
    enum http1_result r = parse_version(p, end, &out->version_minor, &p, 502, 502, error);
    if (r != HTTP1_DONE)
        return r;
    /* SP 3DIGIT */
    size_t avail = (size_t)(end - p);
    for (size_t i = 0; i < 4 && i < avail; i++)
        if (i == 0 ? p[0] != ' ' : !is_digit(p[i]))
            return fail(error, 502, "invalid status line");
    if (avail < 5) /* the status and the byte after it */
        return HTTP1_INCOMPLETE;
    out->status = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
    if (out->status < 100 || out->status > 599)
        return fail(error, 502, "invalid status code");
    p += 4;
    /* [SP reason-phrase] line-end; a missing SP before an empty reason is tolerated. */
    const char *reason_start = p;
    if (*p == ' ') {
        p++;
        reason_start = p;
        p = skip_value_chars(p, end);
        if (p == end)
            return HTTP1_INCOMPLETE;
    }
    if (*p != '\r' && *p != '\n')
        return fail(error, 502, "invalid status line");
    out->reason = slice_make(reason_start, (size_t)(p - reason_start));
    r = parse_line_end(p, end, &p, error);
    if (r != HTTP1_DONE)
        return r;

    const char *head_end;
    r = parse_header_fields(p, end, out->headers, &out->header_count, &head_end, error);
    if (r != HTTP1_DONE)
        return r;
    out->head_bytes = (size_t)(head_end - buf);

    bool content_length_seen = false;
    bool connection_close = false, connection_keep_alive = false;
    struct transfer_coding_state transfer_coding = {0};
    for (size_t i = 0; i < out->header_count; i++) {
        const struct http_header *h = &out->headers[i];
        switch (h->token) {
        case HTTP_TOKEN_CONTENT_LENGTH: {
            /* RFC 9110 §8.6: identical repeated values (as lines or as a
             * list) may be taken as one; anything else is unrecoverable. */
            slice_t rest = h->value;
            if (rest.len == 0)
                return fail(error, 502, "invalid Content-Length");
            while (rest.len > 0) {
                bool trailing_comma = rest.ptr[rest.len - 1] == ',';
                uint64_t value;
                if (!slice_parse_u64(list_next(&rest), &value) || (rest.len == 0 && trailing_comma))
                    return fail(error, 502, "invalid Content-Length");
                if (content_length_seen && value != out->content_length)
                    return fail(error, 502, "differing Content-Length values");
                out->content_length = value;
                content_length_seen = true;
            }
            break;
        }
        case HTTP_TOKEN_TRANSFER_ENCODING:
            transfer_coding_add(&transfer_coding, h->value);
            break;
        case HTTP_TOKEN_CONNECTION:
            if (http_list_contains(h->value, SLICE_LITERAL("close")))
                connection_close = true;
            if (http_list_contains(h->value, SLICE_LITERAL("keep-alive")))
                connection_keep_alive = true;
            break;
        default:
            break;
        }
    }
    out->keep_alive = out->version_minor == 1 ? !connection_close : (connection_keep_alive && !connection_close);

    /* RFC 9112 §6.3, in its order. */
    if (transfer_coding.seen && content_length_seen)
        return fail(error, 502, "Content-Length and Transfer-Encoding together");
    bool head = slice_equal(request_method, SLICE_LITERAL("HEAD"));
    if (head || out->status < 200 || out->status == 204 || out->status == 304) {
        out->body_kind = HTTP1_BODY_NONE;
    } else if (transfer_coding.seen) {
        if (out->version_minor == 0)
            return fail(error, 502, "Transfer-Encoding in HTTP/1.0 response");
        /* We can only undo chunked: a body under any other transfer coding
         * could not be forwarded without it (nginx answers 502 too). */
        r = transfer_coding_check(&transfer_coding, 502, error);
        if (r != HTTP1_DONE)
            return r;
        out->body_kind = HTTP1_BODY_CHUNKED;
    } else if (content_length_seen) {
        out->body_kind = HTTP1_BODY_LENGTH;
    } else {
        out->body_kind = HTTP1_BODY_UNTIL_CLOSE;
        out->keep_alive = false;
    }
    return HTTP1_DONE;
}

enum http1_result http1_parse_response(const char *buf, size_t len, slice_t request_method, struct http1_response *out,
                                       struct http1_error *error)
{
    out->status = 0;
    out->reason = slice_make(buf, 0);
    out->version_minor = 1;
    out->header_count = 0;
    out->head_bytes = 0;
    out->body_kind = HTTP1_BODY_NONE;
    out->content_length = 0;
    out->keep_alive = false;
    if (len == 0)
        return HTTP1_INCOMPLETE;
    size_t scan_len = len > HTTP1_MAX_HEAD_BYTES ? HTTP1_MAX_HEAD_BYTES : len;
    enum http1_result r = response_parse_head(buf, buf + scan_len, request_method, out, error);
    if (r == HTTP1_INCOMPLETE && len > HTTP1_MAX_HEAD_BYTES)
        return fail(error, 502, "response head too large");
    if (r == HTTP1_ERROR)
        error->status = 502; /* whatever was wrong, the origin failed us */
    return r;
}

/* ---- chunked transfer coding --------------------------------------------- */

/* chunked-body = *chunk last-chunk trailer-section CRLF (RFC 9112 §7.1)
 * chunk-size [ chunk-ext ] CRLF, chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ) */
enum chunk_state {
    CHUNK_SIZE_START = 0, /* first hex digit of a chunk size */
    CHUNK_SIZE,           /* more hex digits, BWS, ';' or line end */
    CHUNK_SIZE_BWS,       /* BWS that must be followed by ';' */
    CHUNK_EXT_NAME_START, /* BWS, then the first tchar of an extension name */
    CHUNK_EXT_NAME,       /* tchar, '=', ';', BWS or line end */
    CHUNK_EXT_NAME_BWS,   /* BWS, then '=' or ';' */
    CHUNK_EXT_VALUE_START,
    CHUNK_EXT_VALUE_TOKEN,
    CHUNK_EXT_QUOTED,
    CHUNK_EXT_QUOTED_ESCAPE,
    CHUNK_EXT_AFTER_QUOTED,
    CHUNK_SIZE_LF, /* CR seen at the end of a size line */
    CHUNK_DATA,
    CHUNK_DATA_CR, /* CRLF (or LF) after the data */
    CHUNK_DATA_LF,
    CHUNK_TRAILER_START, /* start of a trailer line or of the final empty line */
    CHUNK_TRAILER_NAME,
    CHUNK_TRAILER_VALUE,
    CHUNK_TRAILER_LF,
    CHUNK_END_LF,
    CHUNK_DONE,
    CHUNK_ERROR,
};

void http1_chunked_decoder_init(struct http1_chunked_decoder *decoder)
{
    memset(decoder, 0, sizeof *decoder);
}

/* The size line ended: data follows, or the trailer section for size 0. */
static inline int chunk_size_line_done(struct http1_chunked_decoder *decoder)
{
    decoder->line_bytes = 0;
    return decoder->chunk_remaining == 0 ? CHUNK_TRAILER_START : CHUNK_DATA;
}

long http1_chunked_decode(struct http1_chunked_decoder *decoder, char *buf, size_t *len)
{
    const char *in = buf, *in_end = buf + *len;
    char *out = buf;
    int state = decoder->state;

    if (state == CHUNK_ERROR)
        return -1;
    while (in < in_end && state != CHUNK_DONE) {
        if (state == CHUNK_DATA) {
            size_t avail = (size_t)(in_end - in);
            size_t n = decoder->chunk_remaining < avail ? (size_t)decoder->chunk_remaining : avail;
            if (out != in)
                memmove(out, in, n);
            out += n;
            in += n;
            decoder->chunk_remaining -= n;
            if (decoder->chunk_remaining == 0)
                state = CHUNK_DATA_CR;
            continue;
        }
        char c = *in++;
        if (state <= CHUNK_SIZE_LF) {
            if (++decoder->line_bytes > CHUNK_MAX_LINE_BYTES)
                goto error;
        } else if (state >= CHUNK_TRAILER_START) {
            if (++decoder->trailer_bytes > CHUNK_MAX_TRAILER_BYTES)
                goto error;
        }
        switch (state) {
        case CHUNK_SIZE_START:
        case CHUNK_SIZE: {
            int digit = ascii_hex_value(c);
            if (digit >= 0) {
                if (decoder->chunk_remaining >> 59) /* the next digit would pass 2^63 - 1 */
                    goto error;
                decoder->chunk_remaining = decoder->chunk_remaining * 16 + (unsigned)digit;
                state = CHUNK_SIZE;
            } else if (state == CHUNK_SIZE_START) {
                goto error;
            } else if (is_ows(c)) {
                state = CHUNK_SIZE_BWS;
            } else if (c == ';') {
                state = CHUNK_EXT_NAME_START;
            } else if (c == '\r') {
                state = CHUNK_SIZE_LF;
            } else if (c == '\n') {
                state = chunk_size_line_done(decoder);
            } else {
                goto error;
            }
            break;
        }
        case CHUNK_SIZE_BWS:
            if (c == ';')
                state = CHUNK_EXT_NAME_START;
            else if (!is_ows(c))
                goto error;
            break;
        case CHUNK_EXT_NAME_START:
            if (is_token_char(c))
                state = CHUNK_EXT_NAME;
            else if (!is_ows(c))
                goto error;
            break;
        case CHUNK_EXT_NAME:
        case CHUNK_EXT_VALUE_TOKEN:
        case CHUNK_EXT_AFTER_QUOTED:
            if (is_token_char(c) && state != CHUNK_EXT_AFTER_QUOTED)
                break;
            if (c == '=' && state == CHUNK_EXT_NAME)
                state = CHUNK_EXT_VALUE_START;
            else if (c == ';')
                state = CHUNK_EXT_NAME_START;
            else if (is_ows(c))
                state = state == CHUNK_EXT_NAME ? CHUNK_EXT_NAME_BWS : CHUNK_SIZE_BWS;
            else if (c == '\r')
                state = CHUNK_SIZE_LF;
            else if (c == '\n')
                state = chunk_size_line_done(decoder);
            else
                goto error;
            break;
        case CHUNK_EXT_NAME_BWS:
            if (c == '=')
                state = CHUNK_EXT_VALUE_START;
            else if (c == ';')
                state = CHUNK_EXT_NAME_START;
            else if (!is_ows(c))
                goto error;
            break;
        case CHUNK_EXT_VALUE_START:
            if (c == '"')
                state = CHUNK_EXT_QUOTED;
            else if (is_token_char(c))
                state = CHUNK_EXT_VALUE_TOKEN;
            else if (!is_ows(c))
                goto error;
            break;
        case CHUNK_EXT_QUOTED:
            /* qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text */
            if (c == '"')
                state = CHUNK_EXT_AFTER_QUOTED;
            else if (c == '\\')
                state = CHUNK_EXT_QUOTED_ESCAPE;
            else if (!is_value_char(c))
                goto error;
            break;
        case CHUNK_EXT_QUOTED_ESCAPE:
            if (!is_value_char(c))
                goto error;
            state = CHUNK_EXT_QUOTED;
            break;
        case CHUNK_SIZE_LF:
            if (c != '\n')
                goto error;
            state = chunk_size_line_done(decoder);
            break;
        case CHUNK_DATA_CR:
            if (c == '\r')
                state = CHUNK_DATA_LF;
            else if (c == '\n')
                state = CHUNK_SIZE_START;
            else
                goto error;
            break;
        case CHUNK_DATA_LF:
            if (c != '\n')
                goto error;
            state = CHUNK_SIZE_START;
            break;
        case CHUNK_TRAILER_START:
            if (c == '\r')
                state = CHUNK_END_LF;
            else if (c == '\n')
                state = CHUNK_DONE;
            else if (is_token_char(c))
                state = CHUNK_TRAILER_NAME;
            else
                goto error; /* obs-fold, whitespace or a CTL */
            break;
        case CHUNK_TRAILER_NAME:
            if (c == ':')
                state = CHUNK_TRAILER_VALUE;
            else if (!is_token_char(c))
                goto error;
            break;
        case CHUNK_TRAILER_VALUE:
            if (c == '\r')
                state = CHUNK_TRAILER_LF;
            else if (c == '\n')
                state = CHUNK_TRAILER_START;
            else if (!is_value_char(c))
                goto error;
            break;
        case CHUNK_TRAILER_LF:
            if (c != '\n')
                goto error;
            state = CHUNK_TRAILER_START;
            break;
        case CHUNK_END_LF:
            if (c != '\n')
                goto error;
            state = CHUNK_DONE;
            break;
        default:
            goto error;
        }
    }
    decoder->state = state;
    if (state == CHUNK_DONE) {
        size_t rest = (size_t)(in_end - in);
        if (out != in && rest > 0)
            memmove(out, in, rest);
        *len = (size_t)(out - buf);
        return (long)rest;
    }
    *len = (size_t)(out - buf);
    return -2;

error:
    decoder->state = CHUNK_ERROR;
    *len = (size_t)(out - buf);
    return -1;
}

const char *http_status_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}
