/* fuzz_cache_headers.c — libFuzzer target for the cache's header parsers:
 * the input is split into header lines ("Name: value\n") that go, as a
 * response, through cache_control_parse, cache_decide_store (the
 * CloudFront TTL table), cache_vary_names / cache_vary_signature and
 * cache_initial_age, and, as a request, through cache_build_key.
 *
 * Invariants checked: a stored decision has a TTL within [0, max_ttl] or
 * the error TTL, never negative windows; Vary names are sorted lowercase
 * lines; the key is deterministic (built twice, byte-equal).
 */
#include "../../cache/policy.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FUZZ_HEADERS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct http_header headers[MAX_FUZZ_HEADERS];
    size_t count = 0;
    const char *line = text, *end = text + size;
    while (line < end && count < MAX_FUZZ_HEADERS) {
        const char *newline = memchr(line, '\n', (size_t)(end - line));
        const char *line_end = newline ? newline : end;
        const char *colon = memchr(line, ':', (size_t)(line_end - line));
        if (colon != NULL) {
            slice_t name = slice_make(line, (size_t)(colon - line));
            headers[count].name = name;
            headers[count].value = slice_trim_ows(slice_make(colon + 1, (size_t)(line_end - colon - 1)));
            headers[count].token = http_token_lookup(name);
            count++;
        }
        line = newline ? newline + 1 : end;
    }

    struct cache_control control;
    cache_control_parse(headers, count, &control);

    struct cache_settings settings = {.enabled = true, .min_ttl = 0, .default_ttl = 86400, .max_ttl = 31536000, .error_ttl = 10};
    settings.query.mode = CACHE_LIST_ALL;
    settings.cookies.mode = CACHE_LIST_ALL;
    static const int statuses[] = {200, 301, 404, 403, 503};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        struct cache_store_decision decision;
        cache_decide_store(&settings, SLICE_LITERAL("GET"), i % 2 == 0, statuses[i], headers, count, 1700000000, &decision);
        if (decision.store && (decision.ttl < 0 || decision.stale_while_revalidate < 0 || decision.stale_if_error < 0))
            abort();
    }

    struct bytebuf names = {0}, signature = {0}, key = {0}, again = {0};
    if (cache_vary_names(headers, count, &names)) {
        for (size_t i = 0; i < names.len; i++)
            if (names.data[i] >= 'A' && names.data[i] <= 'Z')
                abort();
        cache_vary_signature(slice_make(names.data, names.len), headers, count, &signature);
    }
    (void)cache_initial_age(headers, count, 1700000000, 1700000005);
    slice_t query = count > 0 ? headers[0].value : SLICE_LITERAL("");
    cache_build_key(&settings, SLICE_LITERAL("GET"), SLICE_LITERAL("example.com"), SLICE_LITERAL("/p"), query, headers, count,
                    &key);
    cache_build_key(&settings, SLICE_LITERAL("HEAD"), SLICE_LITERAL("example.com"), SLICE_LITERAL("/p"), query, headers, count,
                    &again);
    if (key.len != again.len || (key.len > 0 && memcmp(key.data, again.data, key.len) != 0))
        abort(); /* GET and HEAD share a key, and building is deterministic */
    bytebuf_free(&names);
    bytebuf_free(&signature);
    bytebuf_free(&key);
    bytebuf_free(&again);
    free(text);
    return 0;
}
