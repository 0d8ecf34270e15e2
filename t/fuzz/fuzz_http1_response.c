/* fuzz_http1_response.c — libFuzzer target for http1_parse_response.
 *
 * The first input byte picks the request method (HEAD when odd, GET when
 * even); the rest is the response, copied into a buffer of exactly its size.
 * Invariants: on DONE the slices lie within the input, head_bytes <= len and
 * <= HTTP1_MAX_HEAD_BYTES, the status is 100..599, the framing matches
 * RFC 9112 §6.3 (no body for HEAD/1xx/204/304, UNTIL_CLOSE never keeps the
 * connection), and the head alone parses the same; every ERROR is a 502.
 */
#include "../../proxy/http1.h"

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(cond)                                                                                                          \
    do {                                                                                                                           \
        if (!(cond)) {                                                                                                             \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);                                          \
            abort();                                                                                                               \
        }                                                                                                                          \
    } while (0)

static bool slice_within(slice_t s, const char *buf, size_t len)
{
    if (s.len == 0)
        return true;
    return s.ptr >= buf && s.ptr <= buf + len && s.len <= (size_t)(buf + len - s.ptr);
}

static struct http1_response response, again;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    slice_t method = (data[0] & 1) ? SLICE_LITERAL("HEAD") : SLICE_LITERAL("GET");
    size--;
    char *buf = malloc(size ? size : 1);
    if (size > 0)
        memcpy(buf, data + 1, size);
    struct http1_error error = {0};
    enum http1_result result = http1_parse_response(buf, size, method, &response, &error);
    if (result == HTTP1_DONE) {
        FUZZ_ASSERT(response.head_bytes > 0 && response.head_bytes <= size && response.head_bytes <= HTTP1_MAX_HEAD_BYTES);
        FUZZ_ASSERT(response.status >= 100 && response.status <= 599);
        FUZZ_ASSERT(response.version_minor == 0 || response.version_minor == 1);
        FUZZ_ASSERT(response.header_count <= HTTP1_MAX_HEADERS);
        FUZZ_ASSERT(slice_within(response.reason, buf, response.head_bytes));
        for (size_t i = 0; i < response.header_count; i++) {
            FUZZ_ASSERT(response.headers[i].name.len > 0 && slice_within(response.headers[i].name, buf, response.head_bytes));
            FUZZ_ASSERT(slice_within(response.headers[i].value, buf, response.head_bytes));
            FUZZ_ASSERT(response.headers[i].token == http_token_lookup(response.headers[i].name));
        }
        bool no_body = (data[0] & 1) || response.status < 200 || response.status == 204 || response.status == 304;
        FUZZ_ASSERT(!no_body || response.body_kind == HTTP1_BODY_NONE);
        FUZZ_ASSERT(no_body || response.body_kind != HTTP1_BODY_NONE);
        FUZZ_ASSERT(response.body_kind != HTTP1_BODY_UNTIL_CLOSE || !response.keep_alive);
        FUZZ_ASSERT(response.body_kind != HTTP1_BODY_CHUNKED || response.version_minor == 1);
        size_t head_bytes = response.head_bytes;
        enum http1_result r = http1_parse_response(buf, head_bytes, method, &again, &error);
        FUZZ_ASSERT(r == HTTP1_DONE && again.head_bytes == head_bytes && again.status == response.status);
        FUZZ_ASSERT(again.body_kind == response.body_kind && again.keep_alive == response.keep_alive);
        FUZZ_ASSERT(http1_parse_response(buf, head_bytes - 1, method, &again, &error) == HTTP1_INCOMPLETE);
    } else if (result == HTTP1_ERROR) {
        FUZZ_ASSERT(error.status == 502);
        FUZZ_ASSERT(error.reason != NULL && error.reason[0] != '\0');
    } else {
        FUZZ_ASSERT(result == HTTP1_INCOMPLETE && size <= HTTP1_MAX_HEAD_BYTES);
    }
    free(buf);
    return 0;
}
