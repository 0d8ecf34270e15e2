/* http1.h — verge's own strict HTTP/1.1 parser (RFC 9112) and header tokens.
 *
 * The parser is pure: it reads bytes that the caller buffered and fills plain
 * structs whose slices point into those bytes. It never allocates and never
 * does I/O, so it is unit-tested and fuzzed without sockets.
 *
 * Strictness (what a request smuggler would exploit answers 400, and the
 * caller closes the connection):
 *   - Content-Length together with Transfer-Encoding; duplicate or malformed
 *     Content-Length (also "5, 5"); Transfer-Encoding whose last coding is not
 *     chunked, or any coding other than chunked (501 for unknown codings).
 *   - obs-fold (a header line starting with SP/HT), bare CR, bare LF is
 *     accepted only as the line terminator (RFC 9112 §2.2 allows it), NUL or
 *     other CTL bytes in names or values, whitespace before the colon, empty
 *     header names, invalid token characters in names or the method.
 *   - Request target: origin-form ("/..."), absolute-form ("http://h/p"),
 *     asterisk-form only with OPTIONS; CONNECT (authority-form) answers 405.
 *   - HTTP versions other than 1.0 and 1.1 answer 505.
 * Limits: request line + headers > HTTP1_MAX_HEAD_BYTES → 431 (a request line
 * alone that is too long, i.e. a target over HTTP1_MAX_URI_BYTES → 414);
 * more than HTTP1_MAX_HEADERS fields → 431.
 */
#ifndef VERGE_HTTP1_H
#define VERGE_HTTP1_H

#include "base.h"

#define HTTP1_MAX_HEAD_BYTES 20480
#define HTTP1_MAX_URI_BYTES 8192
#define HTTP1_MAX_HEADERS 128

/* ---- header tokens ------------------------------------------------------- */

/* Well-known header names, matched case-insensitively once at parse time. */
enum http_token {
    HTTP_TOKEN_OTHER = 0,
    HTTP_TOKEN_HOST,
    HTTP_TOKEN_CONTENT_LENGTH,
    HTTP_TOKEN_TRANSFER_ENCODING,
    HTTP_TOKEN_CONNECTION,
    HTTP_TOKEN_KEEP_ALIVE,
    HTTP_TOKEN_TE,
    HTTP_TOKEN_TRAILER,
    HTTP_TOKEN_UPGRADE,
    HTTP_TOKEN_PROXY_CONNECTION,
    HTTP_TOKEN_PROXY_AUTHENTICATE,
    HTTP_TOKEN_PROXY_AUTHORIZATION,
    HTTP_TOKEN_EXPECT,
    HTTP_TOKEN_VIA,
    HTTP_TOKEN_X_FORWARDED_FOR,
    HTTP_TOKEN_DATE,
    HTTP_TOKEN_SERVER,
    HTTP_TOKEN_CONTENT_TYPE,
    HTTP_TOKEN_ETAG,
    HTTP_TOKEN_LAST_MODIFIED,
    HTTP_TOKEN_IF_NONE_MATCH,
    HTTP_TOKEN_IF_MODIFIED_SINCE,
    HTTP_TOKEN_IF_MATCH,
    HTTP_TOKEN_IF_UNMODIFIED_SINCE,
    HTTP_TOKEN_IF_RANGE,
    HTTP_TOKEN_RANGE,
    HTTP_TOKEN_CACHE_CONTROL,
    HTTP_TOKEN_AUTHORIZATION,
    HTTP_TOKEN_X_AMZ_CF_ID,
    HTTP_TOKEN_HTTP2_SETTINGS,
    HTTP_TOKEN__COUNT
};

/* Flags carried by a token. */
#define HTTP_TOKEN_FLAG_HOP_BY_HOP 0x1u /* removed when forwarding, both ways (RFC 9110 §7.6.1 + Proxy-*) */

struct http_header {
    slice_t name;
    slice_t value; /* OWS trimmed */
    enum http_token token;
};

/* Returns the token for a header name (case-insensitive), HTTP_TOKEN_OTHER
 * when it is not a well-known name. */
enum http_token http_token_lookup(slice_t name);
/* Returns the HTTP_TOKEN_FLAG_* bits of a token. */
unsigned http_token_flags(enum http_token token);
/* Returns the lower-case name of a token (static; empty for HTTP_TOKEN_OTHER). */
slice_t http_token_name(enum http_token token);
/* Returns true when a comma-separated header value (e.g. Connection) lists
 * the token `item` (case-insensitive, OWS around items ignored). */
bool http_list_contains(slice_t value, slice_t item);

/* The standard reason phrase of a status code (RFC 9110 §15), "Unknown" for
 * codes it does not know. */
const char *http_status_reason(int status);

/* ---- parse results ------------------------------------------------------- */

enum http1_result {
    HTTP1_DONE = 0,   /* a complete head was parsed */
    HTTP1_INCOMPLETE, /* need more bytes; nothing is wrong so far */
    HTTP1_ERROR,      /* malformed: see the error struct */
};

struct http1_error {
    int status;         /* HTTP status to answer the peer with: 400, 405, 414, 431, 501, 505 */
    const char *reason; /* static string naming what was wrong, e.g. "Content-Length and Transfer-Encoding together" */
};

enum http1_body_kind {
    HTTP1_BODY_NONE,        /* no body follows the head */
    HTTP1_BODY_LENGTH,      /* exactly content_length bytes follow */
    HTTP1_BODY_CHUNKED,     /* chunked transfer coding follows */
    HTTP1_BODY_UNTIL_CLOSE, /* responses only: the body runs until the connection closes */
};

struct http1_request {
    slice_t method;
    slice_t target;    /* as sent */
    slice_t path;      /* target up to '?' (for absolute-form: the path part, "/" when empty) */
    slice_t query;     /* after '?', without it; empty when absent */
    slice_t authority; /* Host header value, or the authority of an absolute-form target */
    int version_minor; /* 0 or 1 */
    struct http_header headers[HTTP1_MAX_HEADERS];
    size_t header_count;
    size_t head_bytes; /* request line + headers + final CRLF, and empty lines skipped before it */
    enum http1_body_kind body_kind;
    uint64_t content_length;
    bool keep_alive;      /* from version and Connection */
    bool expect_continue; /* Expect: 100-continue */
};

struct http1_response {
    int status;
    slice_t reason;
    int version_minor;
    struct http_header headers[HTTP1_MAX_HEADERS];
    size_t header_count;
    size_t head_bytes;
    enum http1_body_kind body_kind;
    uint64_t content_length;
    bool keep_alive; /* the origin connection may be reused after this response */
};

/* Parses a request head from buf[0..len). On HTTP1_DONE, `out` is filled and
 * out->head_bytes bytes were used. Requires a Host header for HTTP/1.1
 * (400 otherwise), at most one Host. HTTP1_INCOMPLETE with len already over
 * the limits becomes HTTP1_ERROR (431/414), so callers may buffer at most
 * HTTP1_MAX_HEAD_BYTES + 1 bytes. */
enum http1_result http1_parse_request(const char *buf, size_t len, struct http1_request *out, struct http1_error *error);

/* Parses a response head (from an origin). `request_method` decides framing
 * for HEAD; 1xx, 204 and 304 have no body. 1xx responses are returned as
 * parsed heads (status < 200) so the caller can skip them. Lenient only where
 * RFC 9112 allows a recipient to be (e.g. an empty reason phrase). */
enum http1_result http1_parse_response(const char *buf, size_t len, slice_t request_method, struct http1_response *out,
                                       struct http1_error *error);

/* ---- chunked transfer coding --------------------------------------------- */

struct http1_chunked_decoder {
    int state;                /* private */
    uint64_t chunk_remaining; /* private */
    size_t line_bytes;        /* private: bytes of the current size/trailer line, bounded */
    size_t trailer_bytes;     /* private: total trailer bytes, bounded */
};

void http1_chunked_decoder_init(struct http1_chunked_decoder *decoder);

/* Decodes chunked data in place. On entry buf[0..*len) holds raw bytes. On
 * return buf[0..*len) holds the decoded payload bytes found so far. Returns:
 *   > = 0 : the final chunk and trailers were read; the value is the number of
 *           bytes after the end of the chunked body that are still in the
 *           input (they were moved to right after the decoded payload:
 *           buf[*len .. *len + value)).
 *   -1    : malformed (bad chunk size, bad extension, missing CRLF, a size
 *           that overflows, over-long lines or trailers).
 *   -2    : need more bytes (all input consumed). */
long http1_chunked_decode(struct http1_chunked_decoder *decoder, char *buf, size_t *len);

#endif
