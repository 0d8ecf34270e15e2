/* fuzz_chunked.c — libFuzzer target for the in-place chunked decoder.
 *
 * The first two input bytes choose two cut points; the rest is the body.
 * The body is decoded in one shot and again in three pieces (each piece in a
 * buffer of exactly its size, so ASan sees any overrun). Invariants: the
 * decoded length never exceeds the input; both runs agree on the outcome
 * (done / malformed / need more); when not malformed they produce the same
 * payload, and when done the same bytes after the body.
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

struct outcome {
    long result; /* -1, -2, or the number of bytes after the body */
    char *payload;
    size_t payload_len;
    char *rest;
    size_t rest_len;
};

static void decode(const char *input, size_t len, const size_t *cuts, size_t cut_count, struct outcome *out)
{
    struct http1_chunked_decoder decoder;
    http1_chunked_decoder_init(&decoder);
    out->payload = malloc(len + 1);
    out->rest = malloc(len + 1);
    out->payload_len = out->rest_len = 0;
    out->result = -2;
    size_t start = 0;
    for (size_t i = 0; i <= cut_count; i++) {
        size_t stop = i < cut_count ? cuts[i] : len;
        size_t n = stop - start;
        char *piece = malloc(n ? n : 1);
        if (n > 0)
            memcpy(piece, input + start, n);
        size_t decoded = n;
        long r = http1_chunked_decode(&decoder, piece, &decoded);
        FUZZ_ASSERT(r >= -2);
        FUZZ_ASSERT(decoded <= n);
        if (r >= 0) {
            FUZZ_ASSERT((size_t)r <= n - decoded);
            memcpy(out->payload + out->payload_len, piece, decoded);
            out->payload_len += decoded;
            memcpy(out->rest, piece + decoded, (size_t)r);
            out->rest_len = (size_t)r;
            memcpy(out->rest + out->rest_len, input + stop, len - stop);
            out->rest_len += len - stop;
            out->result = (long)out->rest_len;
            free(piece);
            return;
        }
        if (r == -2)
            FUZZ_ASSERT(decoded <= n);
        memcpy(out->payload + out->payload_len, piece, decoded);
        out->payload_len += decoded;
        free(piece);
        out->result = r;
        if (r == -1)
            return;
        start = stop;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const char *input = (const char *)data + 2;
    size_t len = size - 2;
    size_t cuts[2] = {len ? data[0] % (len + 1) : 0, len ? data[1] % (len + 1) : 0};
    if (cuts[0] > cuts[1]) {
        size_t t = cuts[0];
        cuts[0] = cuts[1];
        cuts[1] = t;
    }
    struct outcome once, split;
    decode(input, len, NULL, 0, &once);
    decode(input, len, cuts, 2, &split);
    FUZZ_ASSERT(once.payload_len <= len && split.payload_len <= len);
    FUZZ_ASSERT(once.result == split.result);
    if (once.result != -1) {
        FUZZ_ASSERT(once.payload_len == split.payload_len && memcmp(once.payload, split.payload, once.payload_len) == 0);
    }
    if (once.result >= 0) {
        FUZZ_ASSERT(once.rest_len == split.rest_len && memcmp(once.rest, split.rest, once.rest_len) == 0);
        FUZZ_ASSERT(once.payload_len + once.rest_len <= len);
    }
    free(once.payload);
    free(once.rest);
    free(split.payload);
    free(split.rest);
    return 0;
}
