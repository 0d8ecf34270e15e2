/* test_base.c — the shared vocabulary in proxy/base.c: slices, decimal
 * parsing at the uint64 edge, the arena (alignment, big blocks, cleanup order,
 * reuse of the first chunk), bytebuf, and HTTP dates in all three forms.
 */
#include "../../proxy/base.h"
#include "unit.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

static void test_slices(void)
{
    CHECK(slice_equal(SLICE_LITERAL("abc"), slice_from_cstr("abc")));
    CHECK(!slice_equal(SLICE_LITERAL("abc"), SLICE_LITERAL("abd")));
    CHECK(!slice_equal(SLICE_LITERAL("abc"), SLICE_LITERAL("ab")));
    CHECK(slice_equal(slice_make(NULL, 0), SLICE_LITERAL("")));
    CHECK_INT(slice_from_cstr(NULL).len, 0);
    CHECK(slice_equal_nocase(SLICE_LITERAL("Content-LENGTH"), SLICE_LITERAL("content-length")));
    CHECK(!slice_equal_nocase(SLICE_LITERAL("content-lengt"), SLICE_LITERAL("content-length")));
    CHECK(!slice_equal_nocase(SLICE_LITERAL("@"), SLICE_LITERAL("`"))); /* only letters fold */
    CHECK(!slice_equal_nocase(SLICE_LITERAL("["), SLICE_LITERAL("{")));
    CHECK(slice_starts_with(SLICE_LITERAL("/images/a.png"), SLICE_LITERAL("/images/")));
    CHECK(!slice_starts_with(SLICE_LITERAL("/img"), SLICE_LITERAL("/images/")));
    CHECK(slice_starts_with(SLICE_LITERAL("x"), SLICE_LITERAL("")));
    slice_t trimmed = slice_trim_ows(SLICE_LITERAL(" \t a b \t "));
    CHECK(slice_equal(trimmed, SLICE_LITERAL("a b")));
    CHECK_INT(slice_trim_ows(SLICE_LITERAL(" \t ")).len, 0);
    CHECK(slice_equal(slice_trim_ows(SLICE_LITERAL("\r\nx")), SLICE_LITERAL("\r\nx"))); /* OWS is SP/HT only */
}

static void test_slice_parse_u64(void)
{
    uint64_t v = 77;
    CHECK(slice_parse_u64(SLICE_LITERAL("0"), &v));
    CHECK(v == 0);
    CHECK(slice_parse_u64(SLICE_LITERAL("00042"), &v));
    CHECK(v == 42);
    CHECK(slice_parse_u64(SLICE_LITERAL("18446744073709551615"), &v));
    CHECK(v == UINT64_MAX);
    v = 77;
    CHECK(!slice_parse_u64(SLICE_LITERAL("18446744073709551616"), &v));
    CHECK(!slice_parse_u64(SLICE_LITERAL("18446744073709551620"), &v));
    CHECK(!slice_parse_u64(SLICE_LITERAL("99999999999999999999"), &v));
    CHECK(!slice_parse_u64(SLICE_LITERAL("184467440737095516150"), &v));
    CHECK(v == 77); /* untouched on failure */
    CHECK(!slice_parse_u64(SLICE_LITERAL(""), &v));
    CHECK(!slice_parse_u64(SLICE_LITERAL("-1"), &v));
    CHECK(!slice_parse_u64(SLICE_LITERAL("+1"), &v));
    CHECK(!slice_parse_u64(SLICE_LITERAL(" 1"), &v));
    CHECK(!slice_parse_u64(SLICE_LITERAL("1 "), &v));
    CHECK(!slice_parse_u64(SLICE_LITERAL("1a"), &v));
    CHECK(!slice_parse_u64(SLICE_LITERAL("0x1"), &v));
    /* the length bounds the parse, not a NUL */
    CHECK(slice_parse_u64(slice_make("123456", 3), &v));
    CHECK(v == 123);
}

static int cleanup_log[16];
static int cleanup_count;
static struct arena *cleanup_arena;

static void record_cleanup(void *data)
{
    if (cleanup_count < 16)
        cleanup_log[cleanup_count++] = (int)(intptr_t)data;
}
static void cleanup_that_registers(void *data)
{
    record_cleanup(data);
    arena_add_cleanup(cleanup_arena, record_cleanup, (void *)(intptr_t)99);
}

static void test_arena(void)
{
    struct arena arena;
    arena_init(&arena);
    CHECK_INT(arena.bytes_allocated, 0);
    /* alignment and zeroing */
    for (size_t size = 0; size < 100; size += 7) {
        unsigned char *p = arena_alloc(&arena, size);
        CHECK(((uintptr_t)p & 15) == 0);
        bool zero = true;
        for (size_t i = 0; i < size; i++)
            zero = zero && p[i] == 0;
        CHECK(zero);
        memset(p, 0xab, size);
    }
    /* a big block gets its own chunk, and small allocations keep working */
    char *big = arena_alloc(&arena, 100000);
    CHECK(big != NULL && ((uintptr_t)big & 15) == 0);
    memset(big, 1, 100000);
    char *small = arena_alloc(&arena, 8);
    CHECK(small != NULL && small[0] == 0);
    CHECK(arena.bytes_allocated >= 100000);
    /* many allocations across chunks do not overlap */
    char *blocks[500];
    for (int i = 0; i < 500; i++) {
        blocks[i] = arena_alloc(&arena, 48);
        memset(blocks[i], i & 0xff, 48);
    }
    bool intact = true;
    for (int i = 0; i < 500; i++)
        for (int j = 0; j < 48; j++)
            intact = intact && (unsigned char)blocks[i][j] == (i & 0xff);
    CHECK(intact);

    char *dup = arena_strndup(&arena, "hello world", 5);
    CHECK_STR(dup, "hello");
    slice_t copy = arena_slice_copy(&arena, SLICE_LITERAL("slice"));
    CHECK(slice_equal(copy, SLICE_LITERAL("slice")));
    CHECK(copy.ptr[copy.len] == '\0');
    CHECK_STR(arena_printf(&arena, "%d-%s", 42, "x"), "42-x");
    char longer[6000];
    memset(longer, 'z', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    CHECK_STR(arena_printf(&arena, "%s", longer), longer);

    /* cleanups run in reverse order of registration, on reset */
    cleanup_count = 0;
    cleanup_arena = &arena;
    arena_add_cleanup(&arena, record_cleanup, (void *)(intptr_t)1);
    arena_add_cleanup(&arena, cleanup_that_registers, (void *)(intptr_t)2);
    arena_add_cleanup(&arena, record_cleanup, (void *)(intptr_t)3);
    CHECK_INT(cleanup_count, 0);
    arena_reset(&arena);
    CHECK_INT(cleanup_count, 4);
    CHECK_INT(cleanup_log[0], 3);
    CHECK_INT(cleanup_log[1], 2);
    CHECK_INT(cleanup_log[2], 99); /* registered during cleanup: runs too */
    CHECK_INT(cleanup_log[3], 1);
    CHECK_INT(arena.bytes_allocated, 0);
    CHECK(arena.cleanups == NULL);

    /* after reset the arena is usable again and cleanups do not rerun */
    char *again = arena_alloc(&arena, 16);
    CHECK(again != NULL && again[0] == 0);
    arena_reset(&arena);
    CHECK_INT(cleanup_count, 4);

    /* destroy runs pending cleanups */
    arena_add_cleanup(&arena, record_cleanup, (void *)(intptr_t)7);
    arena_destroy(&arena);
    CHECK_INT(cleanup_count, 5);
    CHECK_INT(cleanup_log[4], 7);
    CHECK(arena.chunks == NULL);

    /* a never-used arena can be reset and destroyed */
    struct arena empty;
    arena_init(&empty);
    arena_reset(&empty);
    arena_destroy(&empty);
    CHECK(empty.chunks == NULL);
}

/* Chunks a reset gives back are reused by other arenas of the thread, zeroed
 * and without overlap; a thread's spare chunks are freed when it ends (the
 * ASan build's leak check would report them otherwise). */
static void *arena_spare_round(void *unused)
{
    (void)unused;
    struct arena first, second;
    arena_init(&first);
    arena_init(&second);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 400; i++) /* ~20 chunks: most go to the spare list on reset */
            memset(arena_alloc(&first, 200), 0xee, 200);
        unsigned spare_before = arena_thread_spare_chunks();
        arena_reset(&first);
        unsigned spare_after_reset = arena_thread_spare_chunks();
        CHECK(spare_after_reset > spare_before);
        char *blocks[400];
        bool zero = true;
        for (int i = 0; i < 400; i++) {
            blocks[i] = arena_alloc(&second, 200);
            for (int j = 0; j < 200; j++)
                zero = zero && blocks[i][j] == 0;
            memset(blocks[i], i & 0xff, 200);
        }
        bool intact = true;
        for (int i = 0; i < 400; i++)
            for (int j = 0; j < 200; j++)
                intact = intact && (unsigned char)blocks[i][j] == (i & 0xff);
        CHECK(zero);
        CHECK(intact);
        CHECK(arena_thread_spare_chunks() < spare_after_reset); /* the second arena took its chunks from the list */
        arena_reset(&second);
    }
    arena_destroy(&first);
    arena_destroy(&second);
    return NULL;
}

static void test_arena_spare_chunks(void)
{
    arena_spare_round(NULL);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, arena_spare_round, NULL) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
}

static void test_bytebuf(void)
{
    struct bytebuf buf = {0};
    bytebuf_append(&buf, "hello", 5);
    bytebuf_append(&buf, NULL, 0);
    bytebuf_append_slice(&buf, SLICE_LITERAL(" world"));
    CHECK_INT(buf.len, 11);
    CHECK(memcmp(buf.data, "hello world", 11) == 0);
    bytebuf_appendf(&buf, " %d%s", 42, "!");
    CHECK_INT(buf.len, 15);
    CHECK(memcmp(buf.data, "hello world 42!", 15) == 0);
    CHECK(buf.cap >= buf.len);
    bytebuf_consume(&buf, 6);
    CHECK_INT(buf.len, 9);
    CHECK(memcmp(buf.data, "world 42!", 9) == 0);
    bytebuf_consume(&buf, 9);
    CHECK_INT(buf.len, 0);
    /* growth across many appends keeps the content */
    for (int i = 0; i < 10000; i++)
        bytebuf_appendf(&buf, "%04d", i % 10000);
    CHECK_INT(buf.len, 40000);
    CHECK(memcmp(buf.data + 4 * 1234, "1234", 4) == 0);
    CHECK(memcmp(buf.data + 4 * 9999, "9999", 4) == 0);
    bytebuf_reserve(&buf, 100000);
    CHECK(buf.cap - buf.len >= 100000);
    bytebuf_free(&buf);
    CHECK(buf.data == NULL && buf.len == 0 && buf.cap == 0);
    /* decimal and C-string appends (response heads without printf) */
    bytebuf_append_decimal(&buf, 0);
    bytebuf_append_cstr(&buf, " ");
    bytebuf_append_decimal(&buf, 9);
    bytebuf_append_cstr(&buf, ",");
    bytebuf_append_decimal(&buf, 10);
    bytebuf_append_cstr(&buf, ",");
    bytebuf_append_decimal(&buf, 200);
    bytebuf_append_cstr(&buf, ",");
    bytebuf_append_decimal(&buf, UINT64_MAX);
    bytebuf_append_cstr(&buf, "");
    CHECK_INT(buf.len, 31);
    CHECK(memcmp(buf.data, "0 9,10,200,18446744073709551615", 31) == 0);
    bytebuf_free(&buf);
}

static void test_http_dates(void)
{
    char text[30];
    time_format_http_date(784111777, text);
    CHECK_STR(text, "Sun, 06 Nov 1994 08:49:37 GMT");
    time_format_http_date(0, text);
    CHECK_STR(text, "Thu, 01 Jan 1970 00:00:00 GMT");
    time_format_http_date(951782400, text); /* leap day */
    CHECK_STR(text, "Tue, 29 Feb 2000 00:00:00 GMT");

    int64_t t = 0;
    CHECK(time_parse_http_date(SLICE_LITERAL("Sun, 06 Nov 1994 08:49:37 GMT"), &t));
    CHECK_INT(t, 784111777);
    CHECK(time_parse_http_date(SLICE_LITERAL("Sunday, 06-Nov-94 08:49:37 GMT"), &t)); /* RFC 850 */
    CHECK_INT(t, 784111777);
    CHECK(time_parse_http_date(SLICE_LITERAL("Sun Nov  6 08:49:37 1994"), &t)); /* asctime */
    CHECK_INT(t, 784111777);
    CHECK(time_parse_http_date(SLICE_LITERAL("Thursday, 01-Jan-15 00:00:00 GMT"), &t)); /* two-digit year < 70 */
    CHECK_INT(t, 1420070400);

    /* round trip over a spread of times */
    bool round_trip = true;
    for (int64_t when = 0; when < 4102444800; when += 86399 * 37 + 13) {
        time_format_http_date(when, text);
        int64_t back = -1;
        if (!time_parse_http_date(slice_from_cstr(text), &back) || back != when) {
            round_trip = false;
            fprintf(stderr, "round trip failed for %lld: %s -> %lld\n", (long long)when, text, (long long)back);
            break;
        }
    }
    CHECK(round_trip);

    /* not dates */
    static const char *const bad[] = {"",
                                      "yesterday",
                                      "Sun, 06 Nov 1994 08:49:37",
                                      "Sun, 06 Nov 1994 08:49:37 GMT trailing",
                                      "Sun, 06 Foo 1994 08:49:37 GMT",
                                      "Sun, 32 Nov 1994 08:49:37 GMT",
                                      "Sun, 06 Nov 1994 24:49:37 GMT",
                                      "Sun, 06 Nov 1994 08:60:37 GMT",
                                      "Sun, 06 Nov 1969 08:49:37 GMT",
                                      "0",
                                      "Sun, 06 Nov 1994 08:49:37 GMT with a very long tail that exceeds the buffer size"};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(bad); i++) {
        bool parsed = time_parse_http_date(slice_from_cstr(bad[i]), &t);
        if (parsed)
            fprintf(stderr, "parsed a non-date: \"%s\"\n", bad[i]);
        CHECK(!parsed);
    }
    /* the slice length bounds the parse */
    CHECK(time_parse_http_date(slice_make("Sun, 06 Nov 1994 08:49:37 GMTxyz", 29), &t));
    CHECK_INT(t, 784111777);

    /* Each form, well-formed, in the looser spellings the scanf patterns let
     * through, and not dates; -1: rejected. */
    static const struct {
        const char *text;
        long long expected;
    } forms[] = {
        /* IMF-fixdate */
        {"Thu, 01 Jan 1970 00:00:00 GMT", 0},
        {"Tue, 29 Feb 2000 00:00:00 GMT", 951782400},
        {"Sat, 31 Dec 2016 23:59:60 GMT", 1483228800}, /* a leap second counts on */
        {"Mon, 31 Feb 2000 00:00:00 GMT", 951955200},  /* day 31 of February is 2 March, as timegm has it */
        {"Xyz, 06 Nov 1994 08:49:37 GMT", 784111777},  /* the weekday is not checked */
        {"Fri, 31 Dec 9999 23:59:59 GMT", 253402300799},
        {"Sun, 6 Nov 1994 08:49:37 GMT", 784111777},
        {" Sun, 06 Nov 1994 08:49:37 GMT", 784111777},
        {"Sun,  06 Nov 1994 08:49:37 GMT", 784111777},
        {"Sun, 06 Nov 1994 8:49:37 GMT", 784111777},
        {"Sun, +6 Nov 1994 08:49:37 GMT", 784111777},
        {"Sun, 06 nov 1994 08:49:37 GMT", -1},
        {"Sun, 06 Nov 1994 08:49:37 UTC", -1},
        {"Sun, 06 Nov 1994 08:49:37 gmt", -1},
        {"Sun, 00 Nov 1994 08:49:37 GMT", -1},
        {"Sun, 06 Nov 1994 23:59:61 GMT", -1},
        {"Sun, 06 Nov 1994 24:00:00 GMT", -1},
        {"Sun, 06 Nov 1969 23:59:59 GMT", -1},
        {"Sun 06 Nov 1994 08:49:37 GMT", -1},
        {"Sun, 06 Nov 1994 08:49:37 GMT ", -1},
        {"Sun, 06 Nov 94 08:49:37 GMT", -1},
        {"Sun, 06 Nov 1994 08:49 GMT", -1},
        {"Sun, 06 Nov 1994 08:4x:37 GMT", -1},
        {"Sun, 06 Nov 1994 -1:49:37 GMT", -1}, /* scanf reads a sign: negative fields are refused */
        {"Sun, 06 Nov 1994 08:-1:37 GMT", -1},
        {"Sun, 06 Nov 1994 08:49:-1 GMT", -1},
        {"Sunday, 06-Nov-94 -8:49:37 GMT", -1},
        /* RFC 850 */
        {"Friday, 31-Dec-99 23:59:59 GMT", 946684799},
        {"Thursday, 01-Jan-70 00:00:00 GMT", 0},
        {"Wednesday, 31-Dec-69 23:59:59 GMT", 3155759999}, /* 2069 */
        {"Abcdefghijklmno, 06-Nov-94 08:49:37 GMT", 784111777},
        {"Sun, 06-Nov-94 08:49:37 GMT", 784111777},
        {"Sunday,06-Nov-94 08:49:37 GMT", 784111777},
        {"Abcdefghijklmnop, 06-Nov-94 08:49:37 GMT", -1}, /* a weekday of more than 15 letters */
        {"Sunday, 06-Nov-1994 08:49:37 GMT", -1},
        {"Sunday, 06 Nov 94 08:49:37 GMT", -1},
        {"Sunday, 06-Nov-94 08:49:37 UTC", -1},
        {"Sunday, 32-Nov-94 08:49:37 GMT", -1},
        {"Sunday, 06-Nov-94 08:60:37 GMT", -1},
        {" Sunday, 06-Nov-94 08:49:37 GMT", -1},
        {"Sunday, 06-Nov-9x 08:49:37 GMT", -1},
        /* asctime */
        {"Sun Nov 06 08:49:37 1994", 784111777},
        {"Thu Jan  1 00:00:00 1970", 0},
        {"Sun Nov  6 08:49:60 1994", 784111800},
        {"Sun Nov 6 08:49:37 1994", 784111777},
        {"Sun Nov  6  08:49:37 1994", 784111777},
        {"Sun Nov  6 08:49:37 94", -1},
        {"Sun Nov  6 08:49:37 1994 GMT", -1},
        {"Sun Nov  6 08:49:37", -1},
        {"Sun Foo  6 08:49:37 1994", -1},
        {"Sun Nov 32 08:49:37 1994", -1},
        {"Sun Nov  6 08:49:61 1994", -1},
        {"Wed Dec 31 23:59:59 1969", -1},
        {"Sun Nov  6 08:49:37 19940", -1},
        {"Sun Nov  x 08:49:37 1994", -1},
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(forms); i++) {
        t = -1;
        bool parsed = time_parse_http_date(slice_from_cstr(forms[i].text), &t);
        long long got = parsed ? (long long)t : -1;
        if (got != forms[i].expected)
            fprintf(stderr, "\"%s\": expected %lld, got %lld\n", forms[i].text, forms[i].expected, got);
        CHECK(got == forms[i].expected);
    }
}

int main(void)
{
    UNIT_RUN(test_slices);
    UNIT_RUN(test_slice_parse_u64);
    UNIT_RUN(test_arena);
    UNIT_RUN(test_arena_spare_chunks);
    UNIT_RUN(test_bytebuf);
    UNIT_RUN(test_http_dates);
    return unit_summary();
}
