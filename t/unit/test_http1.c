/* test_http1.c — the strict HTTP/1.1 parser: every smuggling defence and limit
 * asserts its status, valid requests of each form, persistence and Expect
 * rules, the response framing table (RFC 9112 §6.3), the chunked decoder at
 * every split point, and the token helpers.
 *
 * Inputs are string literals measured with sizeof, so embedded NULs count.
 * Valid heads are also fed as every strict prefix, which must answer
 * INCOMPLETE (never an error, never DONE): the parser is reentered that way
 * by the server as bytes trickle in.
 */
#include "../../proxy/http1.h"
#include "unit.h"

#include <stdlib.h>

static struct http1_request req;
static struct http1_response resp;
static struct http1_error err;

static bool slice_is(slice_t s, const char *expected)
{
    return s.len == strlen(expected) && (s.len == 0 || memcmp(s.ptr, expected, s.len) == 0);
}
#define CHECK_SLICE(s, expected)                                                                                                   \
    do {                                                                                                                           \
        if (slice_is((s), (expected))) {                                                                                           \
            unit_passed++;                                                                                                         \
        } else {                                                                                                                   \
            unit_failed++;                                                                                                         \
            fprintf(stderr, "FAIL %s: %s:%d: %s == \"%.*s\", expected \"%s\"\n", unit_current, __FILE__, __LINE__, #s,             \
                    (int)(s).len, (s).ptr ? (s).ptr : "", (expected));                                                             \
        }                                                                                                                          \
    } while (0)

static void record(bool ok, int line, const char *what, const char *input, size_t len, enum http1_result r)
{
    if (ok) {
        unit_passed++;
        return;
    }
    unit_failed++;
    fprintf(stderr, "FAIL %s: line %d: %s; input \"", unit_current, line, what);
    for (size_t i = 0; i < len && i < 200; i++) {
        unsigned char c = (unsigned char)input[i];
        if (c == '\r')
            fputs("\\r", stderr);
        else if (c == '\n')
            fputs("\\n", stderr);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fprintf(stderr, "%s\" gave result %d status %d (%s)\n", len > 200 ? "..." : "", (int)r, r == HTTP1_ERROR ? err.status : 0,
            r == HTTP1_ERROR && err.reason ? err.reason : "");
}

/* ---- request helpers ------------------------------------------------------ */

static void request_expect_error(const char *input, size_t len, int status, int line)
{
    memset(&err, 0, sizeof err);
    enum http1_result r = http1_parse_request(input, len, &req, &err);
    record(r == HTTP1_ERROR && err.status == status && err.reason != NULL && err.reason[0] != '\0', line, "expected error", input,
           len, r);
    if (r == HTTP1_ERROR && err.status != status)
        fprintf(stderr, "     wanted status %d\n", status);
}
#define REQUEST_ERROR(lit, status) request_expect_error((lit), sizeof(lit) - 1, (status), __LINE__)

/* Expects the error reason too (the exact text is part of what we log). */
static void request_expect_reason(const char *input, size_t len, int status, const char *reason, int line)
{
    request_expect_error(input, len, status, line);
    if (err.reason != NULL && strcmp(err.reason, reason) != 0) {
        unit_failed++;
        fprintf(stderr, "FAIL %s: line %d: reason \"%s\", expected \"%s\"\n", unit_current, line, err.reason, reason);
    }
}
#define REQUEST_REASON(lit, status, reason) request_expect_reason((lit), sizeof(lit) - 1, (status), (reason), __LINE__)

/* Parses a complete head; every strict prefix must be INCOMPLETE. */
static bool request_expect_done(const char *input, size_t len, int line)
{
    for (size_t prefix = 0; prefix < len; prefix++) {
        enum http1_result r = http1_parse_request(input, prefix, &req, &err);
        if (r != HTTP1_INCOMPLETE) {
            /* A head followed by body bytes is DONE on shorter prefixes too. */
            if (r == HTTP1_DONE && req.head_bytes <= prefix)
                break;
            record(false, line, "prefix not INCOMPLETE", input, prefix, r);
            return false;
        }
    }
    memset(&err, 0, sizeof err);
    enum http1_result r = http1_parse_request(input, len, &req, &err);
    record(r == HTTP1_DONE, line, "expected DONE", input, len, r);
    return r == HTTP1_DONE;
}
#define REQUEST_DONE(lit) request_expect_done((lit), sizeof(lit) - 1, __LINE__)

/* ---- response helpers ----------------------------------------------------- */

static void response_expect_error(const char *input, size_t len, const char *method, const char *reason, int line)
{
    memset(&err, 0, sizeof err);
    enum http1_result r = http1_parse_response(input, len, slice_from_cstr(method), &resp, &err);
    record(r == HTTP1_ERROR && err.status == 502 && err.reason != NULL, line, "expected 502", input, len, r);
    if (reason != NULL && err.reason != NULL && strcmp(err.reason, reason) != 0) {
        unit_failed++;
        fprintf(stderr, "FAIL %s: line %d: reason \"%s\", expected \"%s\"\n", unit_current, line, err.reason, reason);
    }
}
#define RESPONSE_ERROR(lit, reason) response_expect_error((lit), sizeof(lit) - 1, "GET", (reason), __LINE__)

static bool response_expect_done(const char *input, size_t len, const char *method, int line)
{
    for (size_t prefix = 0; prefix < len; prefix++) {
        enum http1_result r = http1_parse_response(input, prefix, slice_from_cstr(method), &resp, &err);
        if (r != HTTP1_INCOMPLETE) {
            if (r == HTTP1_DONE && resp.head_bytes <= prefix)
                break;
            record(false, line, "prefix not INCOMPLETE", input, prefix, r);
            return false;
        }
    }
    enum http1_result r = http1_parse_response(input, len, slice_from_cstr(method), &resp, &err);
    record(r == HTTP1_DONE, line, "expected DONE", input, len, r);
    return r == HTTP1_DONE;
}
#define RESPONSE_DONE(lit, method) response_expect_done((lit), sizeof(lit) - 1, (method), __LINE__)

/* ---- valid requests ------------------------------------------------------- */

static void test_request_origin_form(void)
{
    static const char text[] = "GET /a/b.html?x=1&y=2 HTTP/1.1\r\n"
                               "Host: example.com\r\n"
                               "User-Agent: test/1.0\r\n"
                               "Accept:   */*   \r\n"
                               "X-Empty:\r\n"
                               "X-Tab:\tv\ta\t\r\n"
                               "\r\n";
    if (!REQUEST_DONE(text))
        return;
    CHECK_SLICE(req.method, "GET");
    CHECK_SLICE(req.target, "/a/b.html?x=1&y=2");
    CHECK_SLICE(req.path, "/a/b.html");
    CHECK_SLICE(req.query, "x=1&y=2");
    CHECK_SLICE(req.authority, "example.com");
    CHECK_INT(req.version_minor, 1);
    CHECK_INT(req.header_count, 5);
    CHECK_SLICE(req.headers[0].name, "Host");
    CHECK_INT(req.headers[0].token, HTTP_TOKEN_HOST);
    CHECK_SLICE(req.headers[1].name, "User-Agent");
    CHECK_INT(req.headers[1].token, HTTP_TOKEN_OTHER);
    CHECK_SLICE(req.headers[1].value, "test/1.0");
    CHECK_SLICE(req.headers[2].value, "*/*");
    CHECK_SLICE(req.headers[3].value, "");
    CHECK_SLICE(req.headers[4].value, "v\ta");
    CHECK_INT(req.head_bytes, sizeof text - 1);
    CHECK_INT(req.body_kind, HTTP1_BODY_NONE);
    CHECK(req.keep_alive);
    CHECK(!req.expect_continue);
    /* every slice points into the input */
    for (size_t i = 0; i < req.header_count; i++) {
        CHECK(req.headers[i].name.ptr >= text && req.headers[i].name.ptr + req.headers[i].name.len <= text + sizeof text);
        CHECK(req.headers[i].value.ptr >= text && req.headers[i].value.ptr + req.headers[i].value.len <= text + sizeof text);
    }
}

static void test_request_no_query_and_empty_query(void)
{
    if (REQUEST_DONE("GET / HTTP/1.1\r\nHost: h\r\n\r\n")) {
        CHECK_SLICE(req.path, "/");
        CHECK_SLICE(req.query, "");
    }
    if (REQUEST_DONE("GET /p? HTTP/1.1\r\nHost: h\r\n\r\n")) {
        CHECK_SLICE(req.path, "/p");
        CHECK_SLICE(req.query, "");
    }
    if (REQUEST_DONE("GET /p?a?b HTTP/1.1\r\nHost: h\r\n\r\n")) { /* split at the first '?' */
        CHECK_SLICE(req.path, "/p");
        CHECK_SLICE(req.query, "a?b");
    }
    if (REQUEST_DONE("DELETE /%7Efoo%20bar HTTP/1.1\r\nHost: h\r\n\r\n")) {
        CHECK_SLICE(req.method, "DELETE");
        CHECK_SLICE(req.path, "/%7Efoo%20bar");
    }
    /* unknown but well-formed methods are the server's business */
    if (REQUEST_DONE("PURGE /x HTTP/1.1\r\nHost: h\r\n\r\n"))
        CHECK_SLICE(req.method, "PURGE");
}

static void test_request_bare_lf_and_leading_empty_lines(void)
{
    if (REQUEST_DONE("GET /lf HTTP/1.1\nHost: h\nX: y\n\n")) {
        CHECK_SLICE(req.path, "/lf");
        CHECK_INT(req.header_count, 2);
        CHECK_SLICE(req.headers[1].value, "y");
    }
    if (REQUEST_DONE("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\n")) /* mixed */
        CHECK_INT(req.head_bytes, sizeof("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\n") - 1);
    if (REQUEST_DONE("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")) {
        CHECK_SLICE(req.method, "GET");
        CHECK_INT(req.head_bytes, sizeof("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n") - 1); /* includes the skipped lines */
    }
    REQUEST_DONE("\n\r\n\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"); /* four: accepted */
    REQUEST_REASON("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "too many empty lines before request line");
    REQUEST_REASON("\r\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "bare CR");
}

static void test_request_absolute_form(void)
{
    if (REQUEST_DONE("GET http://example.com:8080/p/q?x=y HTTP/1.1\r\nHost: ignored.example\r\n\r\n")) {
        CHECK_SLICE(req.target, "http://example.com:8080/p/q?x=y");
        CHECK_SLICE(req.authority, "example.com:8080");
        CHECK_SLICE(req.path, "/p/q");
        CHECK_SLICE(req.query, "x=y");
    }
    if (REQUEST_DONE("GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n")) {
        CHECK_SLICE(req.authority, "example.com");
        CHECK_SLICE(req.path, "/");
        CHECK_SLICE(req.query, "");
    }
    if (REQUEST_DONE("GET http://example.com?a=b HTTP/1.1\r\nHost: example.com\r\n\r\n")) {
        CHECK_SLICE(req.path, "/");
        CHECK_SLICE(req.query, "a=b");
    }
    if (REQUEST_DONE("GET HTTPS://[::1]:443/x HTTP/1.1\r\nHost: h\r\n\r\n")) {
        CHECK_SLICE(req.authority, "[::1]:443");
        CHECK_SLICE(req.path, "/x");
    }
    /* HTTP/1.0 absolute-form without Host */
    if (REQUEST_DONE("GET http://h10.example/ HTTP/1.0\r\n\r\n"))
        CHECK_SLICE(req.authority, "h10.example");
    /* Host still required for 1.1, still at most one, still valid */
    REQUEST_REASON("GET http://example.com/ HTTP/1.1\r\n\r\n", 400, "missing Host");
    REQUEST_REASON("GET http://example.com/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "multiple Host");
    REQUEST_ERROR("GET http://example.com/ HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    /* bad absolute forms */
    REQUEST_REASON("GET ftp://example.com/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, "unsupported scheme in request target");
    REQUEST_REASON("GET file:///etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n", 400, "unsupported scheme in request target");
    REQUEST_ERROR("GET http:/example.com/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REQUEST_ERROR("GET http:example.com HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REQUEST_REASON("GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid authority in request target");
    REQUEST_REASON("GET http:// HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid authority in request target");
    REQUEST_REASON("GET http://user:pw@example.com/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid authority in request target");
    REQUEST_ERROR("GET http://example.com:8o/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REQUEST_ERROR("GET http://:80/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REQUEST_ERROR("GET http://[::1/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

static void test_request_asterisk_and_connect(void)
{
    if (REQUEST_DONE("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")) {
        CHECK_SLICE(req.target, "*");
        CHECK_SLICE(req.path, "*");
        CHECK_SLICE(req.query, "");
    }
    REQUEST_REASON("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400, "asterisk-form target without OPTIONS");
    REQUEST_ERROR("options * HTTP/1.1\r\nHost: h\r\n\r\n", 400); /* methods are case-sensitive */
    REQUEST_ERROR("OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    REQUEST_REASON("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405, "CONNECT is not supported");
    REQUEST_ERROR("CONNECT example.com:443 HTTP/1.1\r\n", 405); /* known once the request line is */
    REQUEST_REASON("GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid request target");
    REQUEST_REASON("GET example.com/x HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid request target");
    REQUEST_REASON("GET ?x HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid request target");
}

static void test_request_bodies(void)
{
    static const char cl[] = "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world";
    if (REQUEST_DONE(cl)) {
        CHECK_INT(req.body_kind, HTTP1_BODY_LENGTH);
        CHECK_INT(req.content_length, 11);
        CHECK_INT(req.head_bytes, sizeof cl - 1 - 11);
    }
    if (REQUEST_DONE("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")) {
        CHECK_INT(req.body_kind, HTTP1_BODY_LENGTH);
        CHECK_INT(req.content_length, 0);
    }
    if (REQUEST_DONE("POST / HTTP/1.1\r\nHost: h\r\ncontent-length:  007 \r\n\r\n"))
        CHECK_INT(req.content_length, 7);
    if (REQUEST_DONE("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n"))
        CHECK(req.content_length == UINT64_MAX);
    if (REQUEST_DONE("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")) {
        CHECK_INT(req.body_kind, HTTP1_BODY_CHUNKED);
        CHECK_INT(req.head_bytes, sizeof("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") - 1);
    }
    if (REQUEST_DONE("POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: \t CHUNKED \t\r\n\r\n"))
        CHECK_INT(req.body_kind, HTTP1_BODY_CHUNKED);
    if (REQUEST_DONE("POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc"))
        CHECK_INT(req.body_kind, HTTP1_BODY_LENGTH);
}

static void test_request_keep_alive(void)
{
    if (REQUEST_DONE("GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
        CHECK(req.keep_alive);
    if (REQUEST_DONE("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"))
        CHECK(!req.keep_alive);
    if (REQUEST_DONE("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n"))
        CHECK(!req.keep_alive);
    if (REQUEST_DONE("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"))
        CHECK(!req.keep_alive);
    if (REQUEST_DONE("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n"))
        CHECK(req.keep_alive);
    if (REQUEST_DONE("GET / HTTP/1.0\r\n\r\n")) {
        CHECK(!req.keep_alive);
        CHECK_INT(req.version_minor, 0);
        CHECK_SLICE(req.authority, "");
    }
    if (REQUEST_DONE("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: h\r\n\r\n")) {
        CHECK(req.keep_alive);
        CHECK_SLICE(req.authority, "h");
    }
    if (REQUEST_DONE("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"))
        CHECK(!req.keep_alive);
}

static void test_request_expect(void)
{
    if (REQUEST_DONE("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"))
        CHECK(req.expect_continue);
    if (REQUEST_DONE("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nexpect:  100-Continue \r\n\r\n"))
        CHECK(req.expect_continue);
    if (REQUEST_DONE("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 200-ok\r\n\r\n"))
        CHECK(!req.expect_continue);
    if (REQUEST_DONE("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continuex\r\n\r\n"))
        CHECK(!req.expect_continue);
    /* RFC 9110 §10.1.1: a server ignores 100-continue from HTTP/1.0 */
    if (REQUEST_DONE("PUT / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"))
        CHECK(!req.expect_continue);
}

static void test_request_header_values(void)
{
    /* obs-text is allowed in values, as are SP and HTAB */
    if (REQUEST_DONE("GET / HTTP/1.1\r\nHost: h\r\nX-Utf8: caf\xc3\xa9 \x80\xff\r\n\r\n"))
        CHECK_SLICE(req.headers[1].value, "caf\xc3\xa9 \x80\xff");
    /* all tchars in a name */
    if (REQUEST_DONE("GET / HTTP/1.1\r\nHost: h\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n"))
        CHECK_SLICE(req.headers[1].name, "!#$%&'*+-.^_`|~09azAZ");
    /* a long value crossing many 8-byte words */
    if (REQUEST_DONE("GET / HTTP/1.1\r\nHost: h\r\nCookie: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=b\r\n\r\n"))
        CHECK_INT(req.headers[1].value.len, 62);
    /* a CTL after many clean bytes is still caught (word-at-a-time scan) */
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nCookie: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\x01zzzzzzzzzzzzzzzz\r\n\r\n", 400,
                   "control character in header value");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nCookie: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\x7fzzzzzzzzzzzzzzzz\r\n\r\n", 400,
                   "control character in header value");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nCookie: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\rzzzzzzzzzzzzzzzz\r\n\r\n", 400,
                   "bare CR");
}

/* ---- request errors ------------------------------------------------------- */

static void test_request_smuggling_framing(void)
{
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                   "Content-Length and Transfer-Encoding together");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400,
                   "Content-Length and Transfer-Encoding together");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400, "duplicate Content-Length");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n", 400, "duplicate Content-Length");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", 400, "duplicate Content-Length");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,\r\n\r\n", 400, "duplicate Content-Length");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", 400, "invalid Content-Length");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400, "invalid Content-Length");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 400, "invalid Content-Length");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n", 400, "invalid Content-Length");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", 400, "invalid Content-Length");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 400, "invalid Content-Length");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n", 400, "invalid Content-Length");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400, "invalid Content-Length");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\x0b\r\n\r\n", 400, "control character in header value");

    /* Transfer-Encoding */
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "unsupported transfer coding");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501,
                   "unsupported transfer coding");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400,
                   "chunked is not the final transfer coding");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
                   "chunked is not the final transfer coding");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
                   "chunked is not the final transfer coding");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", 400,
                   "chunked is not the final transfer coding");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400,
                   "chunked applied more than once");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                   "chunked applied more than once");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked,\r\n\r\n", 400, "invalid Transfer-Encoding");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,chunked\r\n\r\n", 400, "invalid Transfer-Encoding");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked , \r\n\r\n", 400, "invalid Transfer-Encoding");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", 400, "invalid Transfer-Encoding");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 400, "invalid Transfer-Encoding");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 400, "invalid Transfer-Encoding");
    REQUEST_ERROR("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", 400);
    REQUEST_ERROR("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunk\r\n\r\n", 400);
    REQUEST_ERROR("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\x00\r\n\r\n", 400);
    REQUEST_ERROR("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \x0b"
                  "chunked\r\n\r\n",
                  400);
    REQUEST_REASON("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "Transfer-Encoding in HTTP/1.0 request");
    /* a space or tab before the colon must not hide a Transfer-Encoding */
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", 400, "whitespace before colon in header");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding\t: chunked\r\n\r\n", 400, "whitespace before colon in header");
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\n", 400, "whitespace before colon in header");
    /* folded Transfer-Encoding */
    REQUEST_REASON("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 400, "obs-fold in header");
}

static void test_request_line_syntax(void)
{
    REQUEST_REASON("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "extra space in request line");
    REQUEST_REASON("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid HTTP version");
    REQUEST_REASON("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400, "trailing space in request line");
    REQUEST_REASON(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "missing method");
    REQUEST_REASON("\tGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid character in method");
    REQUEST_REASON("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid character in method");
    REQUEST_REASON("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid character in method");
    REQUEST_REASON("GET /\tHTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid character in request target");
    REQUEST_REASON("GET /\r\nHost: h\r\n\r\n", 400, "missing HTTP version"); /* HTTP/0.9 */
    REQUEST_REASON("GET \r\n\r\n", 400, "missing request target");
    REQUEST_REASON("GET / http/1.1\r\nHost: h\r\n\r\n", 400, "invalid HTTP version");
    REQUEST_REASON("GET / HTTP/1.1x\r\nHost: h\r\n\r\n", 400, "invalid HTTP version");
    REQUEST_REASON("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400, "invalid HTTP version");
    REQUEST_REASON("GET / HTTP/11\r\nHost: h\r\n\r\n", 400, "invalid HTTP version");
    REQUEST_REASON("GET / HTTP/1\r\nHost: h\r\n\r\n", 400, "invalid HTTP version");
    REQUEST_REASON("GET / HTTP/2.0 x\r\nHost: h\r\n\r\n", 400, "invalid HTTP version");
    REQUEST_REASON("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "HTTP version not supported");
    REQUEST_REASON("GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505, "HTTP version not supported");
    REQUEST_REASON("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505, "HTTP version not supported");
    REQUEST_REASON("GET / HTTP/3.0\n\n", 505, "HTTP version not supported");
    REQUEST_REASON("GET / HTTP/1.1\rX\nHost: h\r\n\r\n", 400, "bare CR");
    REQUEST_REASON("GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n", 400, "bare CR");
    REQUEST_REASON("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", 400, "fragment in request target");
    REQUEST_REASON("GET /a\x00 HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid character in request target");
    REQUEST_REASON("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid character in request target");
    REQUEST_REASON("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid character in request target");
    REQUEST_REASON("GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\x01"
                   "bbbbbbbbbbbbbbbb HTTP/1.1\r\nHost: h\r\n\r\n",
                   400, "invalid character in request target");
    REQUEST_REASON("\x00GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "invalid character in method");
    REQUEST_ERROR("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400); /* a TLS ClientHello on the plain port */
    REQUEST_ERROR("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505);             /* the HTTP/2 preface */
    /* errors are reported as soon as they are seen, before the head is complete */
    REQUEST_ERROR("GET  /", 400);
    REQUEST_ERROR("GET / HTTX", 400);
    REQUEST_ERROR("GET / HTTP/1.1\r\nHost: h\r\nBad Name: x", 400);
    REQUEST_ERROR("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01", 400);
}

static void test_request_header_syntax(void)
{
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n X-B: 2\r\n\r\n", 400, "obs-fold in header");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\tcontinued\r\n\r\n", 400, "obs-fold in header");
    REQUEST_REASON("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400, "whitespace before first header field");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400, "bare CR");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\r\n\r\n", 400, "bare CR");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nX\rY: a\r\n\r\n", 400, "bare CR");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\n\rX\r\n", 400, "bare CR");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nX: a\x00"
                   "b\r\n\r\n",
                   400, "control character in header value");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nX: a\x1f\r\n\r\n", 400, "control character in header value");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", 400, "control character in header value");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nX\x00Y: a\r\n\r\n", 400, "invalid header name");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nX(Y): a\r\n\r\n", 400, "invalid header name");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nX@Y: a\r\n\r\n", 400, "invalid header name");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nX\x80Y: a\r\n\r\n", 400, "invalid header name");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n", 400, "empty header name");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400, "header line without colon");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: h\r\nNoColon\n\n", 400, "header line without colon");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400, "whitespace before colon in header");
}

static void test_request_host(void)
{
    REQUEST_REASON("GET / HTTP/1.1\r\n\r\n", 400, "missing Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nX-Host: h\r\n\r\n", 400, "missing Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, "multiple Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n", 400, "multiple Host");
    REQUEST_REASON("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, "multiple Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost:\r\n\r\n", 400, "empty Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: a?b\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: a#b\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: a%4\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: []\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: [g::1]\r\n\r\n", 400, "invalid Host");
    REQUEST_REASON("GET / HTTP/1.1\r\nHost: caf\xc3\xa9.example\r\n\r\n", 400, "invalid Host");
    static const char *const valid[] = {"example.com", "EXAMPLE.com:8080",      "127.0.0.1", "127.0.0.1:1",         "[::1]",
                                        "[::1]:443",   "[2001:db8::a:b]:65535", "a-b_c~d.e", "xn--caf-dma.example", "a%41b",
                                        "host:"};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(valid); i++) {
        char text[256];
        int n = snprintf(text, sizeof text, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", valid[i]);
        memset(&err, 0, sizeof err);
        enum http1_result r = http1_parse_request(text, (size_t)n, &req, &err);
        record(r == HTTP1_DONE, __LINE__, "valid Host rejected", text, (size_t)n, r);
        if (r == HTTP1_DONE)
            CHECK_SLICE(req.authority, valid[i]);
    }
}

/* ---- limits --------------------------------------------------------------- */

static char big[HTTP1_MAX_HEAD_BYTES * 2];

static void test_request_limits_headers(void)
{
    /* exactly HTTP1_MAX_HEADERS fields: fine; one more: 431 */
    size_t n = (size_t)snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 1; i < HTTP1_MAX_HEADERS; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "X-%d: v\r\n", i);
    size_t before_end = n;
    n += (size_t)snprintf(big + n, sizeof big - n, "\r\n");
    memset(&err, 0, sizeof err);
    enum http1_result r = http1_parse_request(big, n, &req, &err);
    CHECK_INT(r, HTTP1_DONE);
    CHECK_INT(req.header_count, HTTP1_MAX_HEADERS);
    n = before_end + (size_t)snprintf(big + before_end, sizeof big - before_end, "X-last: v\r\n\r\n");
    r = http1_parse_request(big, n, &req, &err);
    CHECK_INT(r, HTTP1_ERROR);
    CHECK_INT(err.status, 431);
    CHECK_STR(err.reason, "too many header fields");
    /* reported before the head is complete */
    r = http1_parse_request(big, before_end + 3, &req, &err);
    CHECK_INT(r, HTTP1_ERROR);
    CHECK_INT(err.status, 431);
}

/* Builds "GET / HTTP/1.1\r\nHost: h\r\nX: vvv…\r\n\r\n" of exactly `total` bytes. */
static size_t build_head_of_size(size_t total)
{
    static const char prefix[] = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
    size_t fixed = sizeof prefix - 1 + 4;
    memcpy(big, prefix, sizeof prefix - 1);
    memset(big + sizeof prefix - 1, 'v', total - fixed);
    memcpy(big + total - 4, "\r\n\r\n", 4);
    return total;
}

static void test_request_limits_head_size(void)
{
    size_t n = build_head_of_size(HTTP1_MAX_HEAD_BYTES);
    enum http1_result r = http1_parse_request(big, n, &req, &err);
    CHECK_INT(r, HTTP1_DONE);
    CHECK_INT(req.head_bytes, HTTP1_MAX_HEAD_BYTES);
    /* with body bytes behind it, still fine */
    memcpy(big + n, "BODY", 4);
    r = http1_parse_request(big, n + 4, &req, &err);
    CHECK_INT(r, HTTP1_DONE);
    CHECK_INT(req.head_bytes, HTTP1_MAX_HEAD_BYTES);

    n = build_head_of_size(HTTP1_MAX_HEAD_BYTES + 1);
    r = http1_parse_request(big, n, &req, &err);
    CHECK_INT(r, HTTP1_ERROR);
    CHECK_INT(err.status, 431);
    /* incomplete: at the limit still INCOMPLETE, one byte over is 431 */
    r = http1_parse_request(big, HTTP1_MAX_HEAD_BYTES, &req, &err);
    CHECK_INT(r, HTTP1_INCOMPLETE);
    r = http1_parse_request(big, HTTP1_MAX_HEAD_BYTES + 1, &req, &err);
    CHECK_INT(r, HTTP1_ERROR);
    CHECK_INT(err.status, 431);
    CHECK_STR(err.reason, "request head too large");
    /* many small headers also add up */
    n = (size_t)snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "X-%d: %0200d\r\n", i, 0);
    n += (size_t)snprintf(big + n, sizeof big - n, "\r\n");
    r = http1_parse_request(big, n, &req, &err);
    CHECK_INT(r, HTTP1_ERROR);
    CHECK_INT(err.status, 431);
}

static void test_request_limits_uri(void)
{
    /* a target of exactly HTTP1_MAX_URI_BYTES is fine */
    size_t n = 0;
    memcpy(big, "GET /", 5);
    n = 5;
    memset(big + n, 'a', HTTP1_MAX_URI_BYTES - 1);
    n += HTTP1_MAX_URI_BYTES - 1;
    n += (size_t)snprintf(big + n, sizeof big - n, " HTTP/1.1\r\nHost: h\r\n\r\n");
    enum http1_result r = http1_parse_request(big, n, &req, &err);
    CHECK_INT(r, HTTP1_DONE);
    CHECK_INT(req.target.len, HTTP1_MAX_URI_BYTES);
    /* one more byte: 414, whether or not the line is complete */
    n = 5;
    memset(big + n, 'a', HTTP1_MAX_URI_BYTES);
    n += HTTP1_MAX_URI_BYTES;
    size_t incomplete = n;
    n += (size_t)snprintf(big + n, sizeof big - n, " HTTP/1.1\r\nHost: h\r\n\r\n");
    r = http1_parse_request(big, n, &req, &err);
    CHECK_INT(r, HTTP1_ERROR);
    CHECK_INT(err.status, 414);
    CHECK_STR(err.reason, "request target too long");
    r = http1_parse_request(big, incomplete, &req, &err);
    CHECK_INT(r, HTTP1_ERROR);
    CHECK_INT(err.status, 414);
    r = http1_parse_request(big, incomplete - 1, &req, &err);
    CHECK_INT(r, HTTP1_INCOMPLETE);
    /* a long query counts too (it is part of the target) */
    n = (size_t)snprintf(big, sizeof big, "GET /?q=");
    memset(big + n, 'b', HTTP1_MAX_URI_BYTES);
    n += HTTP1_MAX_URI_BYTES;
    r = http1_parse_request(big, n, &req, &err);
    CHECK_INT(r, HTTP1_ERROR);
    CHECK_INT(err.status, 414);
    /* method length */
    memset(big, 'M', 65);
    r = http1_parse_request(big, 65, &req, &err);
    CHECK_INT(r, HTTP1_ERROR);
    CHECK_INT(err.status, 501);
    CHECK_STR(err.reason, "method too long");
    n = 64;
    memset(big, 'M', n);
    n += (size_t)snprintf(big + n, sizeof big - n, " / HTTP/1.1\r\nHost: h\r\n\r\n");
    r = http1_parse_request(big, n, &req, &err);
    CHECK_INT(r, HTTP1_DONE);
    CHECK_INT(req.method.len, 64);
}

static void test_request_incomplete(void)
{
    static const char *const partial[] = {"",
                                          "G",
                                          "GET",
                                          "GET ",
                                          "GET /",
                                          "GET / ",
                                          "GET / H",
                                          "GET / HTTP/1.",
                                          "GET / HTTP/1.1",
                                          "GET / HTTP/1.1\r",
                                          "GET / HTTP/1.1\r\n",
                                          "GET / HTTP/1.1\r\nHost",
                                          "GET / HTTP/1.1\r\nHost:",
                                          "GET / HTTP/1.1\r\nHost: h",
                                          "GET / HTTP/1.1\r\nHost: h\r",
                                          "GET / HTTP/1.1\r\nHost: h\r\n",
                                          "GET / HTTP/1.1\r\nHost: h\r\n\r",
                                          "\r",
                                          "\r\n",
                                          "\n\n"};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(partial); i++) {
        enum http1_result r = http1_parse_request(partial[i], strlen(partial[i]), &req, &err);
        record(r == HTTP1_INCOMPLETE, __LINE__, "expected INCOMPLETE", partial[i], strlen(partial[i]), r);
    }
    /* NULL buffer with zero length */
    CHECK_INT(http1_parse_request(NULL, 0, &req, &err), HTTP1_INCOMPLETE);
    /* pipelined requests: the first is parsed, head_bytes points at the second */
    static const char two[] = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    CHECK_INT(http1_parse_request(two, sizeof two - 1, &req, &err), HTTP1_DONE);
    CHECK_SLICE(req.path, "/1");
    size_t first = req.head_bytes;
    CHECK_INT(http1_parse_request(two + first, sizeof two - 1 - first, &req, &err), HTTP1_DONE);
    CHECK_SLICE(req.path, "/2");
}

/* ---- responses ------------------------------------------------------------ */

static void test_response_basic(void)
{
    static const char text[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    if (RESPONSE_DONE(text, "GET")) {
        CHECK_INT(resp.status, 200);
        CHECK_SLICE(resp.reason, "OK");
        CHECK_INT(resp.version_minor, 1);
        CHECK_INT(resp.header_count, 2);
        CHECK_INT(resp.headers[0].token, HTTP_TOKEN_CONTENT_TYPE);
        CHECK_INT(resp.head_bytes, sizeof text - 1 - 5);
        CHECK_INT(resp.body_kind, HTTP1_BODY_LENGTH);
        CHECK_INT(resp.content_length, 5);
        CHECK(resp.keep_alive);
    }
    if (RESPONSE_DONE("HTTP/1.1 404 Not Found Here\r\nContent-Length: 0\r\n\r\n", "GET")) {
        CHECK_INT(resp.status, 404);
        CHECK_SLICE(resp.reason, "Not Found Here");
    }
    if (RESPONSE_DONE("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", "GET"))
        CHECK_SLICE(resp.reason, "");
    if (RESPONSE_DONE("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET"))
        CHECK_SLICE(resp.reason, "");
    if (RESPONSE_DONE("HTTP/1.1 599 x\tcaf\xc3\xa9\nContent-Length: 0\n\n", "GET")) {
        CHECK_INT(resp.status, 599);
        CHECK_SLICE(resp.reason, "x\tcaf\xc3\xa9");
    }
    if (RESPONSE_DONE("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", "GET")) {
        CHECK_INT(resp.status, 100);
        CHECK_INT(resp.body_kind, HTTP1_BODY_NONE);
        CHECK_INT(resp.head_bytes, sizeof("HTTP/1.1 100 Continue\r\n\r\n") - 1);
    }
}

static void test_response_framing_table(void)
{
    struct {
        const char *head;
        const char *method;
        enum http1_body_kind kind;
        uint64_t length;
        bool keep_alive;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "GET", HTTP1_BODY_LENGTH, 10, true},
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD", HTTP1_BODY_NONE, 10, true},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD", HTTP1_BODY_NONE, 0, true},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", HTTP1_BODY_CHUNKED, 0, true},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked \r\n\r\n", "POST", HTTP1_BODY_CHUNKED, 0, true},
        {"HTTP/1.1 200 OK\r\n\r\n", "GET", HTTP1_BODY_UNTIL_CLOSE, 0, false},
        {"HTTP/1.1 200 OK\r\n\r\n", "HEAD", HTTP1_BODY_NONE, 0, true},
        {"HTTP/1.1 100 Continue\r\n\r\n", "GET", HTTP1_BODY_NONE, 0, true},
        {"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", "GET", HTTP1_BODY_NONE, 0, true},
        {"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", "GET", HTTP1_BODY_NONE, 0, true},
        {"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", "GET", HTTP1_BODY_NONE, 10, true},
        {"HTTP/1.1 204 No Content\r\n\r\n", "GET", HTTP1_BODY_NONE, 0, true},
        {"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET", HTTP1_BODY_NONE, 10, true},
        {"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", HTTP1_BODY_NONE, 0, true},
        {"HTTP/1.1 205 Reset\r\nContent-Length: 0\r\n\r\n", "GET", HTTP1_BODY_LENGTH, 0, true},
        {"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n", "GET", HTTP1_BODY_LENGTH, 7, true},
        {"HTTP/1.1 200 OK\r\nContent-Length: 7, 7,7\r\n\r\n", "GET", HTTP1_BODY_LENGTH, 7, true},
        {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n", "GET", HTTP1_BODY_LENGTH, 3, false},
        {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: foo, Close\r\n\r\n", "GET", HTTP1_BODY_LENGTH, 3, false},
        {"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", "GET", HTTP1_BODY_LENGTH, 3, false},
        {"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n", "GET", HTTP1_BODY_LENGTH, 3, true},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", "GET", HTTP1_BODY_UNTIL_CLOSE, 0, false},
        {"HTTP/1.0 200 OK\r\n\r\n", "GET", HTTP1_BODY_UNTIL_CLOSE, 0, false},
        {"HTTP/1.0 304 Not Modified\r\n\r\n", "GET", HTTP1_BODY_NONE, 0, false},
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "get", HTTP1_BODY_LENGTH, 0, true}, /* "get" is not HEAD */
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(cases); i++) {
        size_t len = strlen(cases[i].head);
        memset(&err, 0, sizeof err);
        enum http1_result r = http1_parse_response(cases[i].head, len, slice_from_cstr(cases[i].method), &resp, &err);
        record(r == HTTP1_DONE, __LINE__, "framing case not DONE", cases[i].head, len, r);
        if (r != HTTP1_DONE)
            continue;
        bool ok = resp.body_kind == cases[i].kind && resp.keep_alive == cases[i].keep_alive && resp.head_bytes == len &&
                  (cases[i].kind != HTTP1_BODY_LENGTH || resp.content_length == cases[i].length);
        record(ok, __LINE__, "framing case mismatch", cases[i].head, len, r);
        if (!ok)
            fprintf(stderr, "     case %zu (%s): kind %d keep_alive %d length %llu\n", i, cases[i].method, resp.body_kind,
                    resp.keep_alive, (unsigned long long)resp.content_length);
    }
}

static void test_response_errors(void)
{
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "differing Content-Length values");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", "differing Content-Length values");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nContent-Length: 5,\r\n\r\n", "invalid Content-Length");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nContent-Length: ,5\r\n\r\n", "invalid Content-Length");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "invalid Content-Length");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", "invalid Content-Length");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n", "invalid Content-Length");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                   "Content-Length and Transfer-Encoding together");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "unsupported transfer coding");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "chunked is not the final transfer coding");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", "chunked applied more than once");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n", "invalid Transfer-Encoding");
    RESPONSE_ERROR("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding in HTTP/1.0 response");
    /* status line */
    RESPONSE_ERROR("HTTP/1.1 099 Low\r\n\r\n", "invalid status code");
    RESPONSE_ERROR("HTTP/1.1 600 High\r\n\r\n", "invalid status code");
    RESPONSE_ERROR("HTTP/1.1 20 OK\r\n\r\n", "invalid status line");
    RESPONSE_ERROR("HTTP/1.1 2000 OK\r\n\r\n", "invalid status line");
    RESPONSE_ERROR("HTTP/1.1  200 OK\r\n\r\n", "invalid status line");
    RESPONSE_ERROR("HTTP/1.1 2x0 OK\r\n\r\n", "invalid status line");
    RESPONSE_ERROR("HTTP/1.1 200 O\x01K\r\n\r\n", "invalid status line");
    RESPONSE_ERROR("HTTP/1.1 200 OK\rX\r\n\r\n", "bare CR");
    RESPONSE_ERROR("HTTP/1.1\r\n\r\n", "invalid status line");
    RESPONSE_ERROR("HTTP/2 200 OK\r\n\r\n", "invalid HTTP version");
    RESPONSE_ERROR("HTTP/2.0 200 OK\r\n\r\n", "HTTP version not supported");
    RESPONSE_ERROR("http/1.1 200 OK\r\n\r\n", "invalid HTTP version");
    RESPONSE_ERROR("ICY 200 OK\r\n\r\n", "invalid HTTP version");
    RESPONSE_ERROR("\r\nHTTP/1.1 200 OK\r\n\r\n", "invalid HTTP version");
    /* headers: same strictness as requests, answered with 502 */
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", "obs-fold in header");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nX : a\r\n\r\n", "whitespace before colon in header");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n", "control character in header value");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "bare CR");
    RESPONSE_ERROR("HTTP/1.1 200 OK\r\n: a\r\n\r\n", "empty header name");
    /* limits */
    size_t n = (size_t)snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i <= HTTP1_MAX_HEADERS; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "X-%d: v\r\n", i);
    n += (size_t)snprintf(big + n, sizeof big - n, "\r\n");
    response_expect_error(big, n, "GET", "too many header fields", __LINE__);
    n = (size_t)snprintf(big, sizeof big, "HTTP/1.1 200 OK\r\nX: ");
    memset(big + n, 'v', HTTP1_MAX_HEAD_BYTES);
    n += HTTP1_MAX_HEAD_BYTES;
    response_expect_error(big, n, "GET", "response head too large", __LINE__);
    CHECK_INT(http1_parse_response(big, HTTP1_MAX_HEAD_BYTES, SLICE_LITERAL("GET"), &resp, &err), HTTP1_INCOMPLETE);
}

static void test_response_incomplete(void)
{
    static const char *const partial[] = {"",
                                          "H",
                                          "HTTP/1.",
                                          "HTTP/1.1",
                                          "HTTP/1.1 ",
                                          "HTTP/1.1 2",
                                          "HTTP/1.1 200",
                                          "HTTP/1.1 200 ",
                                          "HTTP/1.1 200 OK",
                                          "HTTP/1.1 200 OK\r",
                                          "HTTP/1.1 200 OK\r\n",
                                          "HTTP/1.1 200 OK\r\nA: b\r\n",
                                          "HTTP/1.1 200 OK\r\nA: b\r\n\r"};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(partial); i++) {
        enum http1_result r = http1_parse_response(partial[i], strlen(partial[i]), SLICE_LITERAL("GET"), &resp, &err);
        record(r == HTTP1_INCOMPLETE, __LINE__, "expected INCOMPLETE", partial[i], strlen(partial[i]), r);
    }
}

/* ---- chunked decoder ------------------------------------------------------ */

struct decode_result {
    long result; /* -1, -2, or the bytes after the body over all pieces */
    char payload[4096];
    size_t payload_len;
    char rest[256]; /* bytes after the body, as returned */
    size_t rest_len;
};

/* Feeds input in pieces (cut points in ascending order) as a caller would:
 * each piece in a fresh scratch buffer, decoded payload appended. */
static void decode_pieces(const char *input, size_t len, const size_t *cuts, size_t cut_count, struct decode_result *out)
{
    struct http1_chunked_decoder decoder;
    http1_chunked_decoder_init(&decoder);
    memset(out, 0, sizeof *out);
    out->result = -2;
    size_t start = 0;
    for (size_t i = 0; i <= cut_count; i++) {
        size_t stop = i < cut_count ? cuts[i] : len;
        static char scratch[65536];
        size_t n = stop - start;
        VERGE_ASSERT(n <= sizeof scratch);
        memcpy(scratch, input + start, n);
        size_t decoded = n;
        long r = http1_chunked_decode(&decoder, scratch, &decoded);
        if (r != -1 && decoded > n) { /* never grows */
            out->result = -3;
            return;
        }
        if (r != -1) {
            memcpy(out->payload + out->payload_len, scratch, decoded);
            out->payload_len += decoded;
        }
        out->result = r;
        if (r >= 0) {
            memcpy(out->rest, scratch + decoded, (size_t)r);
            out->rest_len = (size_t)r;
            /* what did not fit in this piece is also after the body */
            memcpy(out->rest + out->rest_len, input + stop, len - stop);
            out->rest_len += len - stop;
            out->result = (long)out->rest_len; /* as if fed in one piece */
            return;
        }
        if (r == -1)
            return;
        start = stop;
    }
}

static void decode_once(const char *input, size_t len, struct decode_result *out)
{
    decode_pieces(input, len, NULL, 0, out);
}

static bool decode_result_equal(const struct decode_result *a, const struct decode_result *b)
{
    if (a->result != b->result)
        return false;
    if (a->result == -1)
        return true; /* the payload before the error may differ by where the cut was */
    return a->payload_len == b->payload_len && memcmp(a->payload, b->payload, a->payload_len) == 0 &&
           (a->result < 0 || (a->rest_len == b->rest_len && memcmp(a->rest, b->rest, a->rest_len) == 0));
}

/* One shot, every two-piece split, byte by byte and random splits agree. */
static void check_decode_splits(const char *input, size_t len, int line)
{
    struct decode_result once, other;
    decode_once(input, len, &once);
    for (size_t cut = 0; cut <= len; cut++) {
        decode_pieces(input, len, &cut, 1, &other);
        record(decode_result_equal(&once, &other), line, "two-piece split differs", input, len, HTTP1_DONE);
        if (!decode_result_equal(&once, &other)) {
            fprintf(stderr, "     cut at %zu: %ld vs %ld\n", cut, once.result, other.result);
            return;
        }
    }
    size_t cuts[1024];
    size_t count = 0;
    for (size_t i = 1; i < len && count < VERGE_ARRAY_SIZE(cuts); i++)
        cuts[count++] = i;
    decode_pieces(input, len, cuts, count, &other);
    record(decode_result_equal(&once, &other), line, "byte-by-byte differs", input, len, HTTP1_DONE);
    unsigned seed = 12345;
    for (int round = 0; round < 50; round++) {
        count = 0;
        for (size_t i = 1; i < len && count < VERGE_ARRAY_SIZE(cuts); i++) {
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 16) % 5 == 0)
                cuts[count++] = i;
        }
        decode_pieces(input, len, cuts, count, &other);
        record(decode_result_equal(&once, &other), line, "random split differs", input, len, HTTP1_DONE);
    }
}

static void chunked_expect(const char *input, size_t len, const char *payload, const char *rest, int line)
{
    struct decode_result result;
    decode_once(input, len, &result);
    bool ok = result.result >= 0 && result.payload_len == strlen(payload) &&
              memcmp(result.payload, payload, result.payload_len) == 0 && result.rest_len == strlen(rest) &&
              memcmp(result.rest, rest, result.rest_len) == 0;
    record(ok, line, "chunked decode mismatch", input, len, HTTP1_DONE);
    if (!ok)
        fprintf(stderr, "     result %ld payload \"%.*s\" rest \"%.*s\"\n", result.result, (int)result.payload_len, result.payload,
                (int)result.rest_len, result.rest);
    check_decode_splits(input, len, line);
}
#define CHUNKED_OK(lit, payload, rest) chunked_expect((lit), sizeof(lit) - 1, (payload), (rest), __LINE__)

static void chunked_expect_error(const char *input, size_t len, int line)
{
    struct decode_result result;
    decode_once(input, len, &result);
    record(result.result == -1, line, "chunked should fail", input, len, HTTP1_ERROR);
    if (result.result != -1)
        fprintf(stderr, "     result %ld\n", result.result);
    check_decode_splits(input, len, line);
}
#define CHUNKED_ERROR(lit) chunked_expect_error((lit), sizeof(lit) - 1, __LINE__)

static void test_chunked_valid(void)
{
    CHUNKED_OK("5\r\nhello\r\n0\r\n\r\n", "hello", "");
    CHUNKED_OK("0\r\n\r\n", "", "");
    CHUNKED_OK("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT", "hello world", "NEXT");
    CHUNKED_OK("5\nhello\n0\n\n", "hello", ""); /* bare LF */
    CHUNKED_OK("a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n", "0123456789abcdefghij", "");
    CHUNKED_OK("000005\r\nhello\r\n000\r\n\r\n", "hello", ""); /* leading zeros */
    CHUNKED_OK("5;a\r\nhello\r\n0\r\n\r\n", "hello", "");
    CHUNKED_OK("5;a=b\r\nhello\r\n0;last\r\n\r\n", "hello", "");
    CHUNKED_OK("5 ;a=b\r\nhello\r\n0\r\n\r\n", "hello", "");                   /* BWS before ';' */
    CHUNKED_OK("5\t; a = b ; c ;d=\"q\"\r\nhello\r\n0\r\n\r\n", "hello", "");  /* BWS around ';' and '=' */
    CHUNKED_OK("5;a=\"x \\\" \\\\ y;z=\"\r\nhello\r\n0\r\n\r\n", "hello", ""); /* quoted-pair, ';' inside quotes */
    CHUNKED_OK("5;a=\"\"\r\nhello\r\n0\r\n\r\n", "hello", "");
    CHUNKED_OK("5;a=\"caf\xc3\xa9\"\r\nhello\r\n0\r\n\r\n", "hello", "");
    CHUNKED_OK("5;a=\"x\";b\r\nhello\r\n0\r\n\r\n", "hello", "");
    CHUNKED_OK("5;a=\"x\" ;b\r\nhello\r\n0\r\n\r\n", "hello", "");
    CHUNKED_OK("5\r\nhello\r\n0\r\nTrailer-A: x\r\nTrailer-B:\r\nC: \t v\xff \r\n\r\n", "hello", "");
    CHUNKED_OK("5\r\nhello\r\n0\nT: x\n\nrest", "hello", "rest");
    CHUNKED_OK("3\r\n\r\n\r\r\n0\r\n\r\n", "\r\n\r", "");                 /* data is opaque */
    CHUNKED_OK("5\r\nhello\r\n0\r\n\r\n0\r\n\r\n", "hello", "0\r\n\r\n"); /* a second body is not ours */
}

static void test_chunked_binary_and_state(void)
{
    /* NUL bytes in data survive */
    char input[] = "3\r\na\0b\r\n0\r\n\r\n";
    size_t len = sizeof input - 1;
    struct http1_chunked_decoder decoder;
    http1_chunked_decoder_init(&decoder);
    long r = http1_chunked_decode(&decoder, input, &len);
    CHECK_INT(r, 0);
    CHECK_INT(len, 3);
    CHECK(memcmp(input, "a\0b", 3) == 0);

    /* -2 reports the payload so far; the next call continues */
    char part1[] = "5\r\nhel";
    char part2[] = "lo\r\n0\r\n\r\nXY";
    http1_chunked_decoder_init(&decoder);
    len = sizeof part1 - 1;
    CHECK_INT(http1_chunked_decode(&decoder, part1, &len), -2);
    CHECK_INT(len, 3);
    CHECK(memcmp(part1, "hel", 3) == 0);
    len = sizeof part2 - 1;
    CHECK_INT(http1_chunked_decode(&decoder, part2, &len), 2);
    CHECK_INT(len, 2);
    CHECK(memcmp(part2, "loXY", 4) == 0);
    /* once done, everything given later is "after the body" */
    char more[] = "abc";
    len = 3;
    CHECK_INT(http1_chunked_decode(&decoder, more, &len), 3);
    CHECK_INT(len, 0);

    /* empty input: need more */
    http1_chunked_decoder_init(&decoder);
    len = 0;
    CHECK_INT(http1_chunked_decode(&decoder, part1, &len), -2);
    CHECK_INT(len, 0);

    /* once failed, always failed */
    char bad[] = "x\r\n";
    http1_chunked_decoder_init(&decoder);
    len = 3;
    CHECK_INT(http1_chunked_decode(&decoder, bad, &len), -1);
    char good[] = "0\r\n\r\n";
    len = 5;
    CHECK_INT(http1_chunked_decode(&decoder, good, &len), -1);

    /* the largest size is accepted (and waits for data); one more overflows */
    char largest[] = "7fffffffffffffff\r\nabc";
    http1_chunked_decoder_init(&decoder);
    len = sizeof largest - 1;
    CHECK_INT(http1_chunked_decode(&decoder, largest, &len), -2);
    CHECK_INT(len, 3);
    char many_zeros[] = "00000000000000000000000000000000000000001\r\na\r\n0\r\n\r\n";
    http1_chunked_decoder_init(&decoder);
    len = sizeof many_zeros - 1;
    CHECK_INT(http1_chunked_decode(&decoder, many_zeros, &len), 0);
    CHECK_INT(len, 1);

    /* a large payload in many chunks, split at random */
    static char body[200000];
    static char encoded[260000];
    size_t payload_len = 0, encoded_len = 0;
    unsigned seed = 7;
    while (payload_len < 150000) {
        seed = seed * 1103515245u + 12345u;
        size_t chunk = (seed >> 16) % 3000 + 1;
        encoded_len += (size_t)snprintf(encoded + encoded_len, sizeof encoded - encoded_len, "%zx;n=%u\r\n", chunk, seed % 100);
        for (size_t i = 0; i < chunk; i++) {
            char c = (char)((payload_len + i) * 31 % 251);
            body[payload_len + i] = c;
            encoded[encoded_len + i] = c;
        }
        payload_len += chunk;
        encoded_len += chunk;
        memcpy(encoded + encoded_len, "\r\n", 2);
        encoded_len += 2;
    }
    encoded_len += (size_t)snprintf(encoded + encoded_len, sizeof encoded - encoded_len, "0\r\nX-Sum: 1\r\n\r\n");
    static char scratch[260000];
    static char out[200000];
    for (int round = 0; round < 5; round++) {
        http1_chunked_decoder_init(&decoder);
        size_t pos = 0, out_len = 0;
        long result = -2;
        while (pos < encoded_len && result == -2) {
            seed = seed * 1103515245u + 12345u;
            size_t piece = round == 0 ? encoded_len : (seed >> 16) % 5000 + 1;
            if (piece > encoded_len - pos)
                piece = encoded_len - pos;
            memcpy(scratch, encoded + pos, piece);
            size_t n = piece;
            result = http1_chunked_decode(&decoder, scratch, &n);
            memcpy(out + out_len, scratch, n);
            out_len += n;
            pos += piece;
        }
        CHECK_INT(result, 0);
        CHECK_INT(out_len, payload_len);
        CHECK(memcmp(out, body, payload_len) == 0);
    }
}

static void test_chunked_invalid(void)
{
    CHUNKED_ERROR("\r\nhello\r\n0\r\n\r\n"); /* empty size */
    CHUNKED_ERROR("\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR(";a\r\nhello\r\n0\r\n\r\n"); /* extension without size */
    CHUNKED_ERROR("x\r\n");
    CHUNKED_ERROR("-1\r\n");
    CHUNKED_ERROR("+5\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("0x5\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR(" 5\r\nhello\r\n0\r\n\r\n"); /* leading space */
    CHUNKED_ERROR("5 \r\nhello\r\n0\r\n\r\n"); /* trailing space without an extension */
    CHUNKED_ERROR("5\t\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5 5\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5\rhello\r\n0\r\n\r\n"); /* bare CR */
    CHUNKED_ERROR("5\r\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5\r\nhello0\r\n\r\n"); /* no CRLF after data */
    CHUNKED_ERROR("5\r\nhelloX\r\n0\r\n\r\n");
    CHUNKED_ERROR("5\r\nhello\rX0\r\n\r\n");
    CHUNKED_ERROR("5\r\nhello\r\r\n0\r\n\r\n");
    CHUNKED_ERROR("5\r\nhello\r\n\r\n0\r\n\r\n"); /* empty line where a size belongs */
    CHUNKED_ERROR("8000000000000000\r\n");        /* 2^63 */
    CHUNKED_ERROR("ffffffffffffffffff\r\n");      /* beyond 2^64 */
    CHUNKED_ERROR("10000000000000000\r\n");       /* 2^64 would wrap to 0 */
    /* extensions */
    CHUNKED_ERROR("5;\r\nhello\r\n0\r\n\r\n"); /* empty name */
    CHUNKED_ERROR("5; \r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;=b\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a=\r\nhello\r\n0\r\n\r\n"); /* empty value */
    CHUNKED_ERROR("5;a= \r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a==b\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a b\r\nhello\r\n0\r\n\r\n"); /* two tokens */
    CHUNKED_ERROR("5;a=b c\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a \r\nhello\r\n0\r\n\r\n"); /* whitespace then line end */
    CHUNKED_ERROR("5;a=b \r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a=\"x\" \r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a=\"x\"y\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a=\"unterminated\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a=\"x\x01\"\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a=\"x\\\x01\"\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a\x01\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a=b\x7f\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a\rb\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a=b\rc\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a=x\"y\"\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a(b)\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a=b;\r\nhello\r\n0\r\n\r\n");
    CHUNKED_ERROR("5;a=\x80\r\nhello\r\n0\r\n\r\n");
    /* trailers */
    CHUNKED_ERROR("0\r\n trailer: x\r\n\r\n"); /* obs-fold / leading whitespace */
    CHUNKED_ERROR("0\r\nT: x\r\n folded\r\n\r\n");
    CHUNKED_ERROR("0\r\nNoColon\r\n\r\n");
    CHUNKED_ERROR("0\r\nT : x\r\n\r\n");
    CHUNKED_ERROR("0\r\n: x\r\n\r\n");
    CHUNKED_ERROR("0\r\nT: a\rb\r\n\r\n");
    CHUNKED_ERROR("0\r\nT: a\x00\r\n\r\n");
    CHUNKED_ERROR("0\r\nT: a\r\n\rX");
    CHUNKED_ERROR("0\r\n\rX");

    /* line and trailer bounds */
    static char long_line[8192];
    size_t n = (size_t)snprintf(long_line, sizeof long_line, "5;a=");
    memset(long_line + n, 'x', 4100);
    n += 4100;
    n += (size_t)snprintf(long_line + n, sizeof long_line - n, "\r\nhello\r\n0\r\n\r\n");
    struct decode_result result;
    decode_once(long_line, n, &result);
    CHECK_INT(result.result, -1);
    memset(long_line, '0', 5000);
    decode_once(long_line, 5000, &result);
    CHECK_INT(result.result, -1);
    /* an extension line just under the bound is fine */
    n = (size_t)snprintf(long_line, sizeof long_line, "5;a=");
    memset(long_line + n, 'x', 4000);
    n += 4000;
    n += (size_t)snprintf(long_line + n, sizeof long_line - n, "\r\nhello\r\n0\r\n\r\n");
    decode_once(long_line, n, &result);
    CHECK_INT(result.result, 0);

    static char trailers[40000];
    n = (size_t)snprintf(trailers, sizeof trailers, "0\r\n");
    for (int i = 0; i < 400; i++)
        n += (size_t)snprintf(trailers + n, sizeof trailers - n, "X-Trailer-%03d: %060d\r\n", i, i);
    n += (size_t)snprintf(trailers + n, sizeof trailers - n, "\r\n");
    struct http1_chunked_decoder decoder;
    http1_chunked_decoder_init(&decoder);
    size_t len = n;
    CHECK_INT(http1_chunked_decode(&decoder, trailers, &len), -1);
    /* a few trailers are fine */
    n = (size_t)snprintf(trailers, sizeof trailers, "0\r\n");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(trailers + n, sizeof trailers - n, "X-Trailer-%03d: %060d\r\n", i, i);
    n += (size_t)snprintf(trailers + n, sizeof trailers - n, "\r\n");
    http1_chunked_decoder_init(&decoder);
    len = n;
    CHECK_INT(http1_chunked_decode(&decoder, trailers, &len), 0);
}

/* ---- tokens and lists ----------------------------------------------------- */

static void test_tokens(void)
{
    static const struct {
        const char *name;
        enum http_token token;
        bool hop_by_hop;
    } names[] = {
        {"Host", HTTP_TOKEN_HOST, false},
        {"Content-Length", HTTP_TOKEN_CONTENT_LENGTH, false},
        {"Transfer-Encoding", HTTP_TOKEN_TRANSFER_ENCODING, true},
        {"Connection", HTTP_TOKEN_CONNECTION, true},
        {"Keep-Alive", HTTP_TOKEN_KEEP_ALIVE, true},
        {"TE", HTTP_TOKEN_TE, true},
        {"Trailer", HTTP_TOKEN_TRAILER, true},
        {"Upgrade", HTTP_TOKEN_UPGRADE, true},
        {"Proxy-Connection", HTTP_TOKEN_PROXY_CONNECTION, true},
        {"Proxy-Authenticate", HTTP_TOKEN_PROXY_AUTHENTICATE, true},
        {"Proxy-Authorization", HTTP_TOKEN_PROXY_AUTHORIZATION, true},
        {"Expect", HTTP_TOKEN_EXPECT, false},
        {"Via", HTTP_TOKEN_VIA, false},
        {"X-Forwarded-For", HTTP_TOKEN_X_FORWARDED_FOR, false},
        {"Date", HTTP_TOKEN_DATE, false},
        {"Server", HTTP_TOKEN_SERVER, false},
        {"Content-Type", HTTP_TOKEN_CONTENT_TYPE, false},
        {"ETag", HTTP_TOKEN_ETAG, false},
        {"Last-Modified", HTTP_TOKEN_LAST_MODIFIED, false},
        {"If-None-Match", HTTP_TOKEN_IF_NONE_MATCH, false},
        {"If-Modified-Since", HTTP_TOKEN_IF_MODIFIED_SINCE, false},
        {"If-Match", HTTP_TOKEN_IF_MATCH, false},
        {"If-Unmodified-Since", HTTP_TOKEN_IF_UNMODIFIED_SINCE, false},
        {"If-Range", HTTP_TOKEN_IF_RANGE, false},
        {"Range", HTTP_TOKEN_RANGE, false},
        {"Cache-Control", HTTP_TOKEN_CACHE_CONTROL, false},
        {"Authorization", HTTP_TOKEN_AUTHORIZATION, false},
        {"X-Amz-Cf-Id", HTTP_TOKEN_X_AMZ_CF_ID, false},
        {"HTTP2-Settings", HTTP_TOKEN_HTTP2_SETTINGS, true},
    };
    CHECK_INT(VERGE_ARRAY_SIZE(names), HTTP_TOKEN__COUNT - 1); /* every token is tested */
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(names); i++) {
        char upper[64], lower_name[64];
        size_t len = strlen(names[i].name);
        for (size_t j = 0; j <= len; j++) {
            char c = names[i].name[j];
            upper[j] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
            lower_name[j] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
        }
        CHECK_INT(http_token_lookup(slice_from_cstr(names[i].name)), names[i].token);
        CHECK_INT(http_token_lookup(slice_from_cstr(upper)), names[i].token);
        CHECK_INT(http_token_lookup(slice_from_cstr(lower_name)), names[i].token);
        CHECK_INT((http_token_flags(names[i].token) & HTTP_TOKEN_FLAG_HOP_BY_HOP) != 0, names[i].hop_by_hop);
        /* one letter off, one longer, one shorter: not the token */
        lower_name[len - 1] = (char)(lower_name[len - 1] == 'x' ? 'y' : 'x');
        CHECK_INT(http_token_lookup(slice_from_cstr(lower_name)), HTTP_TOKEN_OTHER);
        CHECK_INT(http_token_lookup(slice_make(names[i].name, len - 1)), HTTP_TOKEN_OTHER);
        char longer[64];
        snprintf(longer, sizeof longer, "%sx", names[i].name);
        CHECK_INT(http_token_lookup(slice_from_cstr(longer)), HTTP_TOKEN_OTHER);
    }
    CHECK_INT(http_token_lookup(SLICE_LITERAL("")), HTTP_TOKEN_OTHER);
    CHECK_INT(http_token_lookup(SLICE_LITERAL("X")), HTTP_TOKEN_OTHER);
    CHECK_INT(http_token_lookup(SLICE_LITERAL("Hos\x14")), HTTP_TOKEN_OTHER); /* 't' ^ 0x60: case folding is exact */
    CHECK_INT(http_token_lookup(SLICE_LITERAL("Content\rLength")), HTTP_TOKEN_OTHER);
    CHECK_INT(http_token_lookup(SLICE_LITERAL("If-Mxxxx")), HTTP_TOKEN_OTHER);
    CHECK_INT(http_token_lookup(SLICE_LITERAL("X-Custom-Header-Name-Long")), HTTP_TOKEN_OTHER);
    CHECK_INT(http_token_flags(HTTP_TOKEN_OTHER), 0);
    CHECK_INT(http_token_flags(HTTP_TOKEN__COUNT), 0);
}

static void test_list_contains(void)
{
    CHECK(http_list_contains(SLICE_LITERAL("close"), SLICE_LITERAL("close")));
    CHECK(http_list_contains(SLICE_LITERAL("keep-alive, Close"), SLICE_LITERAL("close")));
    CHECK(http_list_contains(SLICE_LITERAL(" \tclose \t"), SLICE_LITERAL("close")));
    CHECK(http_list_contains(SLICE_LITERAL(",,close,,"), SLICE_LITERAL("close")));
    CHECK(http_list_contains(SLICE_LITERAL("a,b , c"), SLICE_LITERAL("C")));
    CHECK(http_list_contains(SLICE_LITERAL("a,b , c"), SLICE_LITERAL("b")));
    CHECK(!http_list_contains(SLICE_LITERAL("closed"), SLICE_LITERAL("close")));
    CHECK(!http_list_contains(SLICE_LITERAL("xclose"), SLICE_LITERAL("close")));
    CHECK(!http_list_contains(SLICE_LITERAL("clo se"), SLICE_LITERAL("close")));
    CHECK(!http_list_contains(SLICE_LITERAL(""), SLICE_LITERAL("close")));
    CHECK(!http_list_contains(SLICE_LITERAL("a,b"), SLICE_LITERAL("a,b")));
    CHECK(!http_list_contains(SLICE_LITERAL("keep-alive"), SLICE_LITERAL("keep")));
    CHECK(!http_list_contains(slice_make(NULL, 0), SLICE_LITERAL("close")));
}

int main(void)
{
    UNIT_RUN(test_request_origin_form);
    UNIT_RUN(test_request_no_query_and_empty_query);
    UNIT_RUN(test_request_bare_lf_and_leading_empty_lines);
    UNIT_RUN(test_request_absolute_form);
    UNIT_RUN(test_request_asterisk_and_connect);
    UNIT_RUN(test_request_bodies);
    UNIT_RUN(test_request_keep_alive);
    UNIT_RUN(test_request_expect);
    UNIT_RUN(test_request_header_values);
    UNIT_RUN(test_request_smuggling_framing);
    UNIT_RUN(test_request_line_syntax);
    UNIT_RUN(test_request_header_syntax);
    UNIT_RUN(test_request_host);
    UNIT_RUN(test_request_limits_headers);
    UNIT_RUN(test_request_limits_head_size);
    UNIT_RUN(test_request_limits_uri);
    UNIT_RUN(test_request_incomplete);
    UNIT_RUN(test_response_basic);
    UNIT_RUN(test_response_framing_table);
    UNIT_RUN(test_response_errors);
    UNIT_RUN(test_response_incomplete);
    UNIT_RUN(test_chunked_valid);
    UNIT_RUN(test_chunked_binary_and_state);
    UNIT_RUN(test_chunked_invalid);
    UNIT_RUN(test_tokens);
    UNIT_RUN(test_list_contains);
    return unit_summary();
}
