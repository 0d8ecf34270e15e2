/* fuzz_http1_request.c — libFuzzer target for http1_parse_request.
 *
 * The input is copied into a buffer of exactly its size so ASan catches any
 * read past the end. Invariants checked on every outcome:
 *  - DONE: head_bytes <= len and <= HTTP1_MAX_HEAD_BYTES, header_count <=
 *    HTTP1_MAX_HEADERS, every slice lies within the input (the "/" path of an
 *    absolute-form target may be static), tokens agree with
 *    http_token_lookup, framing is consistent (chunked never with HTTP/1.0,
 *    never UNTIL_CLOSE), and the head alone parses to the same result while
 *    shorter prefixes are INCOMPLETE.
 *  - ERROR: a status from the documented set and a non-empty reason.
 *  - INCOMPLETE: only while len <= HTTP1_MAX_HEAD_BYTES.
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

static struct http1_request request, again;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (size > 0)
        memcpy(buf, data, size);
    struct http1_error error = {0};
    enum http1_result result = http1_parse_request(buf, size, &request, &error);
    if (result == HTTP1_DONE) {
        FUZZ_ASSERT(request.head_bytes > 0 && request.head_bytes <= size);
        FUZZ_ASSERT(request.head_bytes <= HTTP1_MAX_HEAD_BYTES);
        FUZZ_ASSERT(request.header_count <= HTTP1_MAX_HEADERS);
        FUZZ_ASSERT(request.version_minor == 0 || request.version_minor == 1);
        FUZZ_ASSERT(request.method.len > 0 && slice_within(request.method, buf, request.head_bytes));
        FUZZ_ASSERT(request.target.len > 0 && request.target.len <= HTTP1_MAX_URI_BYTES);
        FUZZ_ASSERT(slice_within(request.target, buf, request.head_bytes));
        FUZZ_ASSERT(slice_within(request.path, buf, request.head_bytes) || slice_equal(request.path, SLICE_LITERAL("/")));
        FUZZ_ASSERT(request.path.len > 0);
        FUZZ_ASSERT(slice_within(request.query, buf, request.head_bytes));
        FUZZ_ASSERT(slice_within(request.authority, buf, request.head_bytes));
        FUZZ_ASSERT(request.version_minor == 0 || request.authority.len > 0);
        FUZZ_ASSERT(!slice_equal(request.method, SLICE_LITERAL("CONNECT")));
        for (size_t i = 0; i < request.header_count; i++) {
            const struct http_header *h = &request.headers[i];
            FUZZ_ASSERT(h->name.len > 0 && slice_within(h->name, buf, request.head_bytes));
            FUZZ_ASSERT(slice_within(h->value, buf, request.head_bytes));
            FUZZ_ASSERT(h->token == http_token_lookup(h->name));
            for (size_t j = 0; j < h->value.len; j++) {
                unsigned char c = (unsigned char)h->value.ptr[j];
                FUZZ_ASSERT(c == '\t' || (c >= 0x20 && c != 0x7f));
            }
            FUZZ_ASSERT(h->value.len == 0 || (h->value.ptr[0] != ' ' && h->value.ptr[0] != '\t'));
        }
        FUZZ_ASSERT(request.body_kind != HTTP1_BODY_UNTIL_CLOSE);
        FUZZ_ASSERT(request.body_kind != HTTP1_BODY_CHUNKED || request.version_minor == 1);
        FUZZ_ASSERT(request.version_minor == 1 || !request.expect_continue);
        /* the head alone gives the same answer; a strict prefix needs more */
        size_t head_bytes = request.head_bytes;
        enum http1_result r = http1_parse_request(buf, head_bytes, &again, &error);
        FUZZ_ASSERT(r == HTTP1_DONE && again.head_bytes == head_bytes && again.header_count == request.header_count);
        FUZZ_ASSERT(again.body_kind == request.body_kind && again.content_length == request.content_length);
        FUZZ_ASSERT(http1_parse_request(buf, head_bytes - 1, &again, &error) == HTTP1_INCOMPLETE);
        FUZZ_ASSERT(http1_parse_request(buf, head_bytes / 2, &again, &error) == HTTP1_INCOMPLETE);
    } else if (result == HTTP1_ERROR) {
        FUZZ_ASSERT(error.status == 400 || error.status == 405 || error.status == 414 || error.status == 431 ||
                    error.status == 501 || error.status == 505);
        FUZZ_ASSERT(error.reason != NULL && error.reason[0] != '\0');
        /* a prefix of a bad input is never a complete head */
        if (size > 0)
            FUZZ_ASSERT(http1_parse_request(buf, size - 1, &again, &error) != HTTP1_DONE);
    } else {
        FUZZ_ASSERT(result == HTTP1_INCOMPLETE);
        FUZZ_ASSERT(size <= HTTP1_MAX_HEAD_BYTES);
    }
    free(buf);
    return 0;
}
