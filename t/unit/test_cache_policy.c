/* test_cache_policy.c — the cache's pure decisions (cache/policy.h):
 * Cache-Control parsing, CloudFront's TTL table (spec §10.3) over a grid of
 * min/default/max settings against a model written from the spec text,
 * error caching, Authorization, Vary, key building, age with a fake clock,
 * freshness windows and 304 header merging.
 */
#include "../../cache/policy.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>

#define NOW 1700000000 /* Tue, 14 Nov 2023 22:13:20 GMT */
#define NOW_TEXT "Tue, 14 Nov 2023 22:13:20 GMT"
#define DAY 86400
#define YEAR 31536000

#define HEADER(name, value) ((struct http_header){SLICE_LITERAL(name), SLICE_LITERAL(value), HTTP_TOKEN_OTHER})

static struct http_header header_make(const char *name, const char *value)
{
    return (struct http_header){slice_from_cstr(name), slice_from_cstr(value), HTTP_TOKEN_OTHER};
}

static bool buf_is(const struct bytebuf *buf, const char *expected, size_t expected_len)
{
    return buf->len == expected_len && (expected_len == 0 || memcmp(buf->data, expected, expected_len) == 0);
}
#define BUF_IS(buf, literal) buf_is(&(buf), literal, sizeof(literal) - 1)

static bool buf_equal(const struct bytebuf *a, const struct bytebuf *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* ---- Cache-Control ------------------------------------------------------- */

static struct cache_control parse_one(const char *value)
{
    struct http_header header = header_make("Cache-Control", value);
    struct cache_control cc;
    cache_control_parse(&header, 1, &cc);
    return cc;
}

static bool cc_is_empty(const struct cache_control *cc)
{
    return !cc->no_store && !cc->no_cache && !cc->private_ && !cc->public_ && !cc->must_revalidate && !cc->proxy_revalidate &&
           !cc->immutable && cc->max_age == CACHE_DIRECTIVE_ABSENT && cc->s_maxage == CACHE_DIRECTIVE_ABSENT &&
           cc->stale_while_revalidate == CACHE_DIRECTIVE_ABSENT && cc->stale_if_error == CACHE_DIRECTIVE_ABSENT;
}

static void test_cache_control_directives(void)
{
    struct cache_control cc = parse_one("");
    CHECK(cc_is_empty(&cc));
    cc = parse_one("no-store");
    CHECK(cc.no_store && !cc.no_cache && !cc.private_);
    cc = parse_one("no-cache");
    CHECK(cc.no_cache && !cc.no_store);
    cc = parse_one("private");
    CHECK(cc.private_ && !cc.public_);
    cc = parse_one("public");
    CHECK(cc.public_ && !cc.private_);
    cc = parse_one("must-revalidate");
    CHECK(cc.must_revalidate);
    cc = parse_one("proxy-revalidate");
    CHECK(cc.proxy_revalidate);
    cc = parse_one("immutable");
    CHECK(cc.immutable);
    cc = parse_one("max-age=60");
    CHECK_INT(cc.max_age, 60);
    CHECK_INT(cc.s_maxage, CACHE_DIRECTIVE_ABSENT);
    cc = parse_one("s-maxage=30");
    CHECK_INT(cc.s_maxage, 30);
    CHECK_INT(cc.max_age, CACHE_DIRECTIVE_ABSENT);
    cc = parse_one("stale-while-revalidate=15");
    CHECK_INT(cc.stale_while_revalidate, 15);
    cc = parse_one("stale-if-error=600");
    CHECK_INT(cc.stale_if_error, 600);
    cc = parse_one("max-age=0");
    CHECK_INT(cc.max_age, 0);

    cc = parse_one("public, max-age=60, s-maxage=120, stale-while-revalidate=5, stale-if-error=7, must-revalidate, "
                   "proxy-revalidate, immutable, no-cache, no-store, private");
    CHECK(cc.public_ && cc.must_revalidate && cc.proxy_revalidate && cc.immutable && cc.no_cache && cc.no_store && cc.private_);
    CHECK_INT(cc.max_age, 60);
    CHECK_INT(cc.s_maxage, 120);
    CHECK_INT(cc.stale_while_revalidate, 5);
    CHECK_INT(cc.stale_if_error, 7);
}

static void test_cache_control_syntax(void)
{
    /* case of names */
    CHECK_INT(parse_one("MAX-AGE=60").max_age, 60);
    CHECK_INT(parse_one("Max-Age=60").max_age, 60);
    CHECK(parse_one("No-Store").no_store);
    CHECK(parse_one("PRIVATE").private_);
    CHECK_INT(parse_one("S-MaxAge=9").s_maxage, 9);

    /* whitespace and empty elements */
    CHECK_INT(parse_one("  max-age=60  ").max_age, 60);
    CHECK_INT(parse_one("\tmax-age=60\t,\tpublic").max_age, 60);
    CHECK(parse_one("\tmax-age=60\t,\tpublic").public_);
    CHECK_INT(parse_one(",,, ,max-age=5,,").max_age, 5);
    CHECK_INT(parse_one("public,max-age=5").max_age, 5);
    CHECK_INT(parse_one("max-age = 60").max_age, 60); /* lenient around '=' */
    CHECK_INT(parse_one("max-age= 60").max_age, 60);

    /* quoted values */
    CHECK_INT(parse_one("max-age=\"60\"").max_age, 60);
    CHECK_INT(parse_one("s-maxage=\"30\", public").s_maxage, 30);
    CHECK_INT(parse_one("stale-if-error=\"10\"").stale_if_error, 10);
    CHECK_INT(parse_one("max-age=\"60").max_age, 0); /* unterminated: malformed */
    CHECK_INT(parse_one("max-age=\"6 0\"").max_age, 0);

    /* unknown directives, including quoted values with commas and escapes */
    struct cache_control cc = parse_one("foo, bar=baz, community=\"UCI\", max-age=7");
    CHECK_INT(cc.max_age, 7);
    CHECK(!cc.public_ && !cc.no_store);
    cc = parse_one("ext=\"a, max-age=5, no-store\", max-age=9");
    CHECK_INT(cc.max_age, 9);
    CHECK(!cc.no_store);
    cc = parse_one("ext=\"a\\\", max-age=1, no-store\", max-age=2");
    CHECK_INT(cc.max_age, 2);
    CHECK(!cc.no_store);
    cc = parse_one("private=\"Set-Cookie, X-User\", max-age=60");
    CHECK(cc.private_);
    CHECK_INT(cc.max_age, 60);
    CHECK(!cc.no_cache);
    cc = parse_one("no-cache=\"Set-Cookie\"");
    CHECK(cc.no_cache); /* qualified form treated as unqualified */
    cc = parse_one("no-cache=Set-Cookie, s-maxage=3");
    CHECK(cc.no_cache);
    CHECK_INT(cc.s_maxage, 3);
    cc = parse_one("\"max-age=5\", public");
    CHECK_INT(cc.max_age, CACHE_DIRECTIVE_ABSENT); /* a bare quoted string is not a directive */
    CHECK(cc.public_);
    cc = parse_one("=5, max-age=4");
    CHECK_INT(cc.max_age, 4);
    cc = parse_one("max-agex=5");
    CHECK_INT(cc.max_age, CACHE_DIRECTIVE_ABSENT);
    cc = parse_one("xmax-age=5");
    CHECK_INT(cc.max_age, CACHE_DIRECTIVE_ABSENT);
    cc = parse_one("no-storex, publicx");
    CHECK(cc_is_empty(&cc));

    /* malformed delta-seconds: max-age and s-maxage count as 0 (stale), the stale-* ones as absent */
    const char *malformed[] = {"abc", "", "-1", "1.5", "+5", "60x", "0x10", "6 0", "\"\""};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(malformed); i++) {
        char text[64];
        snprintf(text, sizeof text, "max-age=%s", malformed[i]);
        CHECK_INT(parse_one(text).max_age, 0);
        snprintf(text, sizeof text, "s-maxage=%s", malformed[i]);
        CHECK_INT(parse_one(text).s_maxage, 0);
        snprintf(text, sizeof text, "stale-while-revalidate=%s", malformed[i]);
        CHECK_INT(parse_one(text).stale_while_revalidate, CACHE_DIRECTIVE_ABSENT);
        snprintf(text, sizeof text, "stale-if-error=%s", malformed[i]);
        CHECK_INT(parse_one(text).stale_if_error, CACHE_DIRECTIVE_ABSENT);
    }
    CHECK_INT(parse_one("max-age").max_age, 0);
    CHECK_INT(parse_one("s-maxage, public").s_maxage, 0);
    CHECK_INT(parse_one("stale-while-revalidate").stale_while_revalidate, CACHE_DIRECTIVE_ABSENT);

    /* huge values saturate (RFC 9111 §1.2.2: at least 2^31) */
    cc = parse_one("max-age=99999999999999999999999999999");
    CHECK(cc.max_age >= 2147483648LL);
    CHECK(cc.max_age < ((int64_t)1 << 50));
    CHECK_INT(parse_one("max-age=3153600000").max_age, 3153600000LL);
    CHECK_INT(parse_one("max-age=007").max_age, 7);

    /* the first occurrence wins */
    CHECK_INT(parse_one("max-age=10, max-age=20").max_age, 10);
    CHECK_INT(parse_one("max-age=abc, max-age=20").max_age, 0);
    CHECK_INT(parse_one("stale-if-error=x, stale-if-error=5").stale_if_error, CACHE_DIRECTIVE_ABSENT);
}

static void test_cache_control_headers(void)
{
    struct http_header headers[] = {
        HEADER("Content-Type", "text/plain; max-age=99"),
        HEADER("Cache-Control", "public"),
        HEADER("X-Cache-Control", "no-store"),
        HEADER("cache-control", "max-age=30"),
        HEADER("CACHE-CONTROL", "max-age=40, s-maxage=50"),
        HEADER("Cache-Control", ""),
    };
    struct cache_control cc;
    cache_control_parse(headers, VERGE_ARRAY_SIZE(headers), &cc);
    CHECK(cc.public_);
    CHECK(!cc.no_store);
    CHECK_INT(cc.max_age, 30); /* first occurrence across headers */
    CHECK_INT(cc.s_maxage, 50);

    cache_control_parse(headers, 0, &cc);
    CHECK(cc_is_empty(&cc));
    cache_control_parse(headers, 1, &cc);
    CHECK(cc_is_empty(&cc));
}

/* ---- storing and TTL ----------------------------------------------------- */

static struct cache_settings settings_make(int64_t min_ttl, int64_t default_ttl, int64_t max_ttl)
{
    return (struct cache_settings){
        .enabled = true,
        .min_ttl = min_ttl,
        .default_ttl = default_ttl,
        .max_ttl = max_ttl,
        .error_ttl = 10,
    };
}

static struct cache_store_decision decide_full(const struct cache_settings *settings, const char *method, bool authorization,
                                               int status, const struct http_header *headers, size_t count)
{
    struct cache_store_decision decision;
    memset(&decision, 0x5a, sizeof decision);
    cache_decide_store(settings, slice_from_cstr(method), authorization, status, headers, count, NOW, &decision);
    if (!decision.store) {
        /* a refusal is fully written and says why */
        CHECK(decision.reason != NULL && decision.reason[0] != '\0');
        CHECK_INT(decision.ttl, 0);
    }
    return decision;
}

/* Decides for a GET 200 (or `status`) with up to two response headers
 * ("" name = none). */
static struct cache_store_decision decide(const struct cache_settings *settings, int status, const char *name1, const char *value1,
                                          const char *name2, const char *value2)
{
    struct http_header headers[3];
    size_t count = 0;
    headers[count++] = header_make("Date", NOW_TEXT);
    if (name1[0])
        headers[count++] = header_make(name1, value1);
    if (name2[0])
        headers[count++] = header_make(name2, value2);
    return decide_full(settings, "GET", false, status, headers, count);
}

#define CHECK_STORED(decision_expr, expected_ttl)                                                                                  \
    do {                                                                                                                           \
        struct cache_store_decision stored_decision = (decision_expr);                                                             \
        CHECK(stored_decision.store);                                                                                              \
        CHECK_INT(stored_decision.ttl, expected_ttl);                                                                              \
    } while (0)

#define CHECK_NOT_STORED(decision_expr)                                                                                            \
    do {                                                                                                                           \
        struct cache_store_decision refused_decision = (decision_expr);                                                            \
        CHECK(!refused_decision.store);                                                                                            \
    } while (0)

static void http_date(int64_t t, char out[30])
{
    time_format_http_date(t, out);
}

/* The CloudFront table, row by row, with the documented defaults. */
static void test_ttl_table_rows(void)
{
    struct cache_settings defaults = settings_make(0, DAY, YEAR);
    char expires[30];
    http_date(NOW + 500, expires);

    /* no directive → default_ttl */
    struct cache_store_decision d = decide(&defaults, 200, "", "", "", "");
    CHECK(d.store);
    CHECK_INT(d.ttl, DAY);
    CHECK_STR(d.reason, "default_ttl");
    CHECK_INT(d.stale_while_revalidate, 0);
    CHECK_INT(d.stale_if_error, 0);
    /* a Cache-Control without lifetime is "no directive" too */
    CHECK_STORED(decide(&defaults, 200, "Cache-Control", "public", "", ""), DAY);
    CHECK_STORED(decide(&defaults, 200, "Cache-Control", "immutable, foo=bar", "", ""), DAY);

    /* max-age, clamped to [min, max] */
    d = decide(&defaults, 200, "Cache-Control", "max-age=60", "", "");
    CHECK_INT(d.ttl, 60);
    CHECK_STR(d.reason, "max-age");
    CHECK_STORED(decide(&defaults, 200, "Cache-Control", "max-age=99999999999", "", ""), YEAR);
    /* s-maxage beats max-age, max-age beats Expires */
    d = decide(&defaults, 200, "Cache-Control", "max-age=60, s-maxage=120", "", "");
    CHECK_INT(d.ttl, 120);
    CHECK_STR(d.reason, "s-maxage");
    CHECK_STORED(decide(&defaults, 200, "Cache-Control", "s-maxage=20, max-age=60", "", ""), 20);
    d = decide(&defaults, 200, "Cache-Control", "max-age=60", "Expires", expires);
    CHECK_INT(d.ttl, 60);
    CHECK_STR(d.reason, "max-age");
    d = decide(&defaults, 200, "Expires", expires, "", "");
    CHECK_INT(d.ttl, 500);
    CHECK_STR(d.reason, "Expires");

    /* no-cache / no-store / private: min_ttl 0 → not stored, else min_ttl */
    d = decide(&defaults, 200, "Cache-Control", "no-store", "", "");
    CHECK(!d.store);
    CHECK_STR(d.reason, "no-store with min_ttl 0");
    d = decide(&defaults, 200, "Cache-Control", "no-cache", "", "");
    CHECK(!d.store);
    CHECK_STR(d.reason, "no-cache with min_ttl 0");
    d = decide(&defaults, 200, "Cache-Control", "private, max-age=600", "", "");
    CHECK(!d.store);
    CHECK_STR(d.reason, "private with min_ttl 0");
    struct cache_settings min_60 = settings_make(60, DAY, YEAR);
    d = decide(&min_60, 200, "Cache-Control", "no-store", "", "");
    CHECK(d.store);
    CHECK_INT(d.ttl, 60);
    CHECK_STORED(decide(&min_60, 200, "Cache-Control", "no-cache, max-age=600", "", ""), 60);
    CHECK_STORED(decide(&min_60, 200, "Cache-Control", "private, s-maxage=600", "", ""), 60);
    /* min_ttl raises a small max-age; default_ttl does not apply when the origin says */
    CHECK_STORED(decide(&min_60, 200, "Cache-Control", "max-age=5", "", ""), 60);
    CHECK_STORED(decide(&min_60, 200, "Cache-Control", "max-age=0", "", ""), 60);

    /* default_ttl below min_ttl: min wins (config normally forbids it) */
    struct cache_settings odd = settings_make(100, 50, 1000);
    CHECK_STORED(decide(&odd, 200, "", "", "", ""), 100);

    /* default_ttl 0 and no directive: not stored */
    struct cache_settings no_default = settings_make(0, 0, YEAR);
    d = decide(&no_default, 200, "", "", "", "");
    CHECK(!d.store);
    CHECK_STR(d.reason, "no explicit freshness and default_ttl 0");
    CHECK_STORED(decide(&no_default, 200, "Cache-Control", "max-age=30", "", ""), 30);
    CHECK_STORED(decide(&no_default, 200, "Expires", expires, "", ""), 500);

    /* max_ttl caps max-age, s-maxage and Expires */
    struct cache_settings max_100 = settings_make(0, 50, 100);
    CHECK_STORED(decide(&max_100, 200, "Cache-Control", "max-age=1000", "", ""), 100);
    CHECK_STORED(decide(&max_100, 200, "Cache-Control", "s-maxage=1000", "", ""), 100);
    CHECK_STORED(decide(&max_100, 200, "Expires", expires, "", ""), 100);
    CHECK_STORED(decide(&max_100, 200, "", "", "", ""), 50);

    /* CloudFront's large-min defaulting (done by the config): min = default = max */
    struct cache_settings all_year = settings_make(2 * YEAR, 2 * YEAR, 2 * YEAR);
    CHECK_STORED(decide(&all_year, 200, "Cache-Control", "max-age=5", "", ""), 2 * YEAR);
    CHECK_STORED(decide(&all_year, 200, "", "", "", ""), 2 * YEAR);
    CHECK_STORED(decide(&all_year, 200, "Cache-Control", "no-store", "", ""), 2 * YEAR);
}

static void test_ttl_expires(void)
{
    struct cache_settings settings = settings_make(0, DAY, YEAR);
    char date_text[30], expires_text[30];

    /* Expires - Date uses the origin's Date, not our clock */
    http_date(NOW - 1000, date_text);
    http_date(NOW - 400, expires_text);
    struct http_header headers[] = {header_make("Date", date_text), header_make("Expires", expires_text)};
    struct cache_store_decision d = decide_full(&settings, "GET", false, 200, headers, 2);
    CHECK(d.store);
    CHECK_INT(d.ttl, 600);

    /* no Date: received now */
    http_date(NOW + 300, expires_text);
    struct http_header no_date[] = {header_make("Expires", expires_text)};
    d = decide_full(&settings, "GET", false, 200, no_date, 1);
    CHECK_INT(d.ttl, 300);
    /* an invalid Date counts as absent */
    struct http_header bad_date[] = {header_make("Date", "yesterday"), header_make("Expires", expires_text)};
    d = decide_full(&settings, "GET", false, 200, bad_date, 2);
    CHECK_INT(d.ttl, 300);

    /* in the past, or invalid ("0"): already expired → ttl 0; stored only with a validator */
    http_date(NOW - 5, expires_text);
    CHECK_NOT_STORED(decide(&settings, 200, "Expires", expires_text, "", ""));
    CHECK_NOT_STORED(decide(&settings, 200, "Expires", "0", "", ""));
    CHECK_NOT_STORED(decide(&settings, 200, "Expires", "-1", "", ""));
    CHECK_NOT_STORED(decide(&settings, 200, "Expires", "", "", ""));
    CHECK_STORED(decide(&settings, 200, "Expires", "0", "ETag", "\"v1\""), 0);
    CHECK_STORED(decide(&settings, 200, "Expires", "0", "Last-Modified", NOW_TEXT), 0);
    /* min_ttl lifts it */
    struct cache_settings min_30 = settings_make(30, DAY, YEAR);
    CHECK_STORED(decide(&min_30, 200, "Expires", "0", "", ""), 30);
    /* Expires in other date forms */
    CHECK_STORED(decide(&settings, 200, "Expires", "Tue Nov 14 22:23:20 2023", "", ""), 600);
    CHECK_STORED(decide(&settings, 200, "Expires", "Tuesday, 14-Nov-23 22:23:20 GMT", "", ""), 600);
    /* max-age (even malformed → 0) hides Expires */
    http_date(NOW + 300, expires_text);
    CHECK_NOT_STORED(decide(&settings, 200, "Cache-Control", "max-age=abc", "Expires", expires_text));
}

/* The spec §10.3 algorithm, written again independently of policy.c. */
struct model_response {
    const char *cache_control; /* NULL: none */
    int64_t expires_in;        /* -1: no Expires */
};

static bool model_decide(int64_t min_ttl, int64_t default_ttl, int64_t max_ttl, const struct model_response *r, int64_t *ttl)
{
    const char *cc = r->cache_control ? r->cache_control : "";
    bool restrictive = strstr(cc, "no-cache") || strstr(cc, "no-store") || strstr(cc, "private");
    if (restrictive) {
        *ttl = min_ttl;
        return min_ttl > 0;
    }
    int64_t origin = -1;
    const char *s_maxage = strstr(cc, "s-maxage=");
    const char *max_age = strstr(cc, "max-age=");
    if (s_maxage)
        origin = atoll(s_maxage + 9);
    else if (max_age)
        origin = atoll(max_age + 8);
    else if (r->expires_in >= 0)
        origin = r->expires_in;
    if (origin >= 0) {
        int64_t t = origin;
        if (t > max_ttl)
            t = max_ttl;
        if (t < min_ttl)
            t = min_ttl;
        *ttl = t;
        return t > 0; /* the test responses carry no validator */
    }
    *ttl = default_ttl > min_ttl ? default_ttl : min_ttl;
    return *ttl > 0;
}

static void test_ttl_table_grid(void)
{
    static const int64_t values[] = {0, 1, 5, 60, 100, 3600, DAY, 100000, YEAR, 2 * YEAR, 3153600000LL};
    static const struct model_response responses[] = {
        {NULL, -1},
        {"max-age=0", -1},
        {"max-age=3", -1},
        {"max-age=60", -1},
        {"max-age=150", -1},
        {"max-age=86400", -1},
        {"max-age=1000000", -1},
        {"max-age=40000000", -1},
        {"max-age=9999999999", -1},
        {"s-maxage=0", -1},
        {"s-maxage=60", -1},
        {"s-maxage=200000", -1},
        {"max-age=10, s-maxage=90", -1},
        {"s-maxage=90, max-age=10", -1},
        {NULL, 0},
        {NULL, 45},
        {NULL, 7200},
        {NULL, 50000000},
        {"max-age=30", 7200},
        {"public", 45},
        {"public", -1},
        {"no-cache", -1},
        {"no-store", -1},
        {"private", -1},
        {"no-cache, max-age=600", -1},
        {"no-store, s-maxage=600", 600},
        {"private, max-age=600", 600},
        {"public, no-cache", -1},
    };
    int combos = 0;
    for (size_t a = 0; a < VERGE_ARRAY_SIZE(values); a++) {
        for (size_t b = a; b < VERGE_ARRAY_SIZE(values); b++) {
            for (size_t c = b; c < VERGE_ARRAY_SIZE(values); c++) {
                struct cache_settings settings = settings_make(values[a], values[b], values[c]);
                for (size_t r = 0; r < VERGE_ARRAY_SIZE(responses); r++) {
                    struct http_header headers[3];
                    size_t count = 0;
                    char expires_text[30];
                    headers[count++] = header_make("Date", NOW_TEXT);
                    if (responses[r].cache_control)
                        headers[count++] = header_make("Cache-Control", responses[r].cache_control);
                    if (responses[r].expires_in >= 0) {
                        http_date(NOW + responses[r].expires_in, expires_text);
                        headers[count++] = header_make("Expires", expires_text);
                    }
                    int64_t expected_ttl = 0;
                    bool expected_store = model_decide(values[a], values[b], values[c], &responses[r], &expected_ttl);
                    struct cache_store_decision d = decide_full(&settings, "GET", false, 200, headers, count);
                    CHECK_INT(d.store, expected_store);
                    if (expected_store)
                        CHECK_INT(d.ttl, expected_ttl);
                    if (d.store != expected_store || (expected_store && d.ttl != expected_ttl))
                        fprintf(stderr, "  settings %lld/%lld/%lld response \"%s\" expires %lld\n", (long long)values[a],
                                (long long)values[b], (long long)values[c],
                                responses[r].cache_control ? responses[r].cache_control : "", (long long)responses[r].expires_in);
                    combos++;
                }
            }
        }
    }
    CHECK(combos > 5000);
}

static void test_statuses(void)
{
    struct cache_settings settings = settings_make(0, DAY, YEAR);
    /* heuristically cacheable: default_ttl */
    const int heuristic[] = {200, 203, 204, 300, 301, 308, 410};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(heuristic); i++) {
        CHECK_STORED(decide(&settings, heuristic[i], "", "", "", ""), DAY);
        CHECK_STORED(decide(&settings, heuristic[i], "Cache-Control", "max-age=77", "", ""), 77);
    }
    /* other redirects: only with explicit freshness */
    const int explicit_only[] = {302, 303, 307};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(explicit_only); i++) {
        struct cache_store_decision d = decide(&settings, explicit_only[i], "", "", "", "");
        CHECK(!d.store);
        CHECK_STR(d.reason, "status stored only with explicit freshness");
        CHECK_STORED(decide(&settings, explicit_only[i], "Cache-Control", "max-age=77", "", ""), 77);
        CHECK_STORED(decide(&settings, explicit_only[i], "Expires", "Tue, 14 Nov 2023 22:14:20 GMT", "", ""), 60);
        CHECK_NOT_STORED(decide(&settings, explicit_only[i], "Cache-Control", "public", "", ""));
    }
    /* never stored, whatever the headers say */
    const int never[] = {100, 101, 201, 202, 205, 206, 304, 305, 401, 402, 406, 407, 408, 409, 411,
                         413, 416, 417, 421, 422, 429, 431, 451, 505, 511, 599, 0,   -1,  999};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(never); i++) {
        struct cache_store_decision d = decide(&settings, never[i], "Cache-Control", "public, max-age=600", "", "");
        CHECK(!d.store);
        CHECK_STR(d.reason, "status not cacheable");
        struct cache_settings min_ttl = settings_make(60, DAY, YEAR);
        CHECK_NOT_STORED(decide(&min_ttl, never[i], "", "", "", ""));
    }
}

static void test_error_caching(void)
{
    struct cache_settings settings = settings_make(0, DAY, YEAR);
    struct cache_settings min_ttl = settings_make(300, DAY, YEAR);
    struct cache_settings max_100 = settings_make(0, 50, 100);
    struct cache_settings error_ttl_0 = settings_make(0, DAY, YEAR);
    error_ttl_0.error_ttl = 0;
    struct cache_settings error_ttl_30 = settings_make(0, DAY, YEAR);
    error_ttl_30.error_ttl = 30;
    char expires[30];
    http_date(NOW + 200, expires);

    /* always cached: 404, 414, 500, 501, 502, 503, 504 */
    const int always[] = {404, 414, 500, 501, 502, 503, 504};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(always); i++) {
        int status = always[i];
        struct cache_store_decision d = decide(&settings, status, "", "", "", "");
        CHECK(d.store);
        CHECK_INT(d.ttl, 10);
        CHECK_STR(d.reason, "error_ttl");
        CHECK_STORED(decide(&error_ttl_30, status, "", "", "", ""), 30);
        CHECK_STORED(decide(&min_ttl, status, "", "", "", ""), 10); /* min_ttl/default_ttl do not apply to errors */
        d = decide(&error_ttl_0, status, "", "", "", "");
        CHECK(!d.store);
        CHECK_STR(d.reason, "error_ttl 0");
        /* an explicit lifetime counts when longer than error_ttl, capped by max_ttl */
        d = decide(&settings, status, "Cache-Control", "max-age=60", "", "");
        CHECK_INT(d.ttl, 60);
        CHECK_STR(d.reason, "max-age");
        CHECK_STORED(decide(&settings, status, "Cache-Control", "s-maxage=90, max-age=5", "", ""), 90);
        CHECK_STORED(decide(&settings, status, "Cache-Control", "max-age=5", "", ""), 10);
        CHECK_STORED(decide(&settings, status, "Cache-Control", "max-age=0", "", ""), 10);
        CHECK_STORED(decide(&settings, status, "Expires", expires, "", ""), 200);
        CHECK_STORED(decide(&max_100, status, "Cache-Control", "max-age=1000", "", ""), 100);
        CHECK_STORED(decide(&error_ttl_0, status, "Cache-Control", "max-age=60", "", ""), 60);
        CHECK_NOT_STORED(decide(&error_ttl_0, status, "Cache-Control", "max-age=0", "", ""));
        /* no-store/no-cache/private: 404, 414, 501 not stored; the 5xx ones ignore them */
        bool honours = status == 404 || status == 414 || status == 501;
        const char *restrictive[] = {"no-store", "no-cache", "private", "private, max-age=60"};
        for (size_t r = 0; r < VERGE_ARRAY_SIZE(restrictive); r++) {
            d = decide(&settings, status, "Cache-Control", restrictive[r], "", "");
            CHECK_INT(d.store, !honours);
            if (!honours)
                CHECK_INT(d.ttl, strstr(restrictive[r], "max-age") ? 60 : 10);
            d = decide(&min_ttl, status, "Cache-Control", restrictive[r], "", "");
            CHECK_INT(d.store, !honours);
        }
    }

    /* cached only with max-age or s-maxage: 400, 403, 405, 412, 415 */
    const int with_max_age[] = {400, 403, 405, 412, 415};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(with_max_age); i++) {
        int status = with_max_age[i];
        struct cache_store_decision d = decide(&settings, status, "", "", "", "");
        CHECK(!d.store);
        CHECK_STR(d.reason, "error status stored only with max-age or s-maxage");
        CHECK_NOT_STORED(decide(&settings, status, "Expires", expires, "", "")); /* Expires is not enough */
        CHECK_NOT_STORED(decide(&settings, status, "Cache-Control", "public", "", ""));
        CHECK_NOT_STORED(decide(&min_ttl, status, "", "", "", ""));
        CHECK_STORED(decide(&settings, status, "Cache-Control", "max-age=60", "", ""), 60);
        CHECK_STORED(decide(&settings, status, "Cache-Control", "s-maxage=70", "", ""), 70);
        CHECK_STORED(decide(&settings, status, "Cache-Control", "max-age=3", "", ""), 10);
        CHECK_STORED(decide(&settings, status, "Cache-Control", "max-age=0", "", ""), 10);
        CHECK_STORED(decide(&error_ttl_30, status, "Cache-Control", "max-age=3", "", ""), 30);
        CHECK_STORED(decide(&max_100, status, "Cache-Control", "max-age=1000", "", ""), 100);
        CHECK_STORED(decide(&settings, status, "Cache-Control", "max-age=60", "Expires", expires), 60);
        CHECK_STORED(decide(&settings, status, "Cache-Control", "no-store, max-age=60", "", ""), 60);
        CHECK_NOT_STORED(decide(&error_ttl_0, status, "Cache-Control", "max-age=0", "", ""));
    }

    /* errors still obey Vary: * and Authorization */
    CHECK_NOT_STORED(decide(&settings, 404, "Vary", "*", "", ""));
    struct http_header headers[] = {HEADER("Date", NOW_TEXT)};
    CHECK_NOT_STORED(decide_full(&settings, "GET", true, 503, headers, 1));
}

static void test_methods_and_switches(void)
{
    struct cache_settings settings = settings_make(0, DAY, YEAR);
    struct http_header headers[] = {HEADER("Cache-Control", "public, max-age=60")};
    CHECK_STORED(decide_full(&settings, "GET", false, 200, headers, 1), 60);
    struct cache_store_decision d = decide_full(&settings, "HEAD", false, 200, headers, 1);
    CHECK(!d.store);
    CHECK_STR(d.reason, "HEAD response has no body");
    const char *others[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get", "Get", ""};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(others); i++) {
        d = decide_full(&settings, others[i], false, 200, headers, 1);
        CHECK(!d.store);
        CHECK_STR(d.reason, "method is not GET");
    }
    struct cache_settings disabled = settings;
    disabled.enabled = false;
    d = decide_full(&disabled, "GET", false, 200, headers, 1);
    CHECK(!d.store);
    CHECK_STR(d.reason, "caching disabled for this behavior");
}

static void test_authorization(void)
{
    struct cache_settings settings = settings_make(0, DAY, YEAR);
    struct {
        const char *cache_control;
        bool stored;
        int64_t ttl;
    } cases[] = {
        {NULL, false, 0},
        {"max-age=60", false, 0},
        {"no-cache", false, 0},
        {"public", true, DAY},
        {"public, max-age=60", true, 60},
        {"s-maxage=30", true, 30},
        {"max-age=60, s-maxage=0", false, 0}, /* allowed, but stale on arrival with no validator */
        {"must-revalidate", true, DAY},
        {"must-revalidate, max-age=60", true, 60},
        {"proxy-revalidate, max-age=60", false, 0},
        {"public, private", false, 0},
        {"PUBLIC", true, DAY},
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(cases); i++) {
        struct http_header headers[2] = {HEADER("Date", NOW_TEXT)};
        size_t count = 1;
        if (cases[i].cache_control)
            headers[count++] = header_make("Cache-Control", cases[i].cache_control);
        struct cache_store_decision d = decide_full(&settings, "GET", true, 200, headers, count);
        CHECK_INT(d.store, cases[i].stored);
        if (cases[i].stored)
            CHECK_INT(d.ttl, cases[i].ttl);
        /* without Authorization the same responses are judged on their own */
        d = decide_full(&settings, "GET", false, 200, headers, count);
        if (cases[i].cache_control == NULL || strcmp(cases[i].cache_control, "max-age=60") == 0)
            CHECK(d.store);
    }
    struct http_header plain[] = {HEADER("Date", NOW_TEXT)};
    struct cache_store_decision d = decide_full(&settings, "GET", true, 200, plain, 1);
    CHECK_STR(d.reason, "request has Authorization");
}

static void test_set_cookie_is_never_stored(void)
{
    struct cache_settings settings = settings_make(0, DAY, YEAR);
    struct http_header headers[] = {HEADER("Date", NOW_TEXT), HEADER("Cache-Control", "public, max-age=600"),
                                    HEADER("set-cookie", "session=secret")};
    struct cache_store_decision d = decide_full(&settings, "GET", false, 200, headers, 3);
    CHECK(!d.store);
    CHECK_STR(d.reason, "response sets a cookie");
    d = decide_full(&settings, "GET", false, 200, headers, 2);
    CHECK(d.store);
}

static void test_vary_star_and_stale_windows(void)
{
    struct cache_settings settings = settings_make(0, DAY, YEAR);
    struct cache_store_decision d = decide(&settings, 200, "Vary", "*", "", "");
    CHECK(!d.store);
    CHECK_STR(d.reason, "Vary: *");
    CHECK_NOT_STORED(decide(&settings, 200, "Vary", "Accept-Encoding, *", "", ""));
    CHECK_NOT_STORED(decide(&settings, 200, "Vary", "accept", "Vary", " * "));
    CHECK_STORED(decide(&settings, 200, "Vary", "Accept-Encoding", "", ""), DAY);
    CHECK_STORED(decide(&settings, 200, "Vary", "x-star*", "", ""), DAY);

    /* stale windows: the directive wins over the behavior setting */
    struct cache_settings stale = settings_make(0, DAY, YEAR);
    stale.stale_while_revalidate = 30;
    stale.stale_if_error = 300;
    d = decide(&stale, 200, "", "", "", "");
    CHECK_INT(d.stale_while_revalidate, 30);
    CHECK_INT(d.stale_if_error, 300);
    d = decide(&stale, 200, "Cache-Control", "max-age=60, stale-while-revalidate=5, stale-if-error=7", "", "");
    CHECK_INT(d.stale_while_revalidate, 5);
    CHECK_INT(d.stale_if_error, 7);
    d = decide(&stale, 200, "Cache-Control", "max-age=60, stale-while-revalidate=0, stale-if-error=0", "", "");
    CHECK_INT(d.stale_while_revalidate, 0);
    CHECK_INT(d.stale_if_error, 0);
    d = decide(&stale, 200, "Cache-Control", "max-age=60, stale-while-revalidate=x", "", "");
    CHECK_INT(d.stale_while_revalidate, 30); /* malformed: absent */
    d = decide(&settings, 200, "Cache-Control", "max-age=60, stale-while-revalidate=15", "", "");
    CHECK_INT(d.stale_while_revalidate, 15);
    CHECK_INT(d.stale_if_error, 0);
    /* must-revalidate and proxy-revalidate forbid serving stale */
    d = decide(&stale, 200, "Cache-Control", "max-age=60, must-revalidate, stale-while-revalidate=5", "", "");
    CHECK_INT(d.stale_while_revalidate, 0);
    CHECK_INT(d.stale_if_error, 0);
    d = decide(&stale, 200, "Cache-Control", "max-age=60, proxy-revalidate", "", "");
    CHECK_INT(d.stale_while_revalidate, 0);
    CHECK_INT(d.stale_if_error, 0);

    /* stale on arrival: kept only with a validator or a stale window */
    d = decide(&settings, 200, "Cache-Control", "max-age=0", "", "");
    CHECK(!d.store);
    CHECK_STR(d.reason, "stale on arrival and no validator");
    CHECK_STORED(decide(&settings, 200, "Cache-Control", "max-age=0", "ETag", "\"a\""), 0);
    CHECK_STORED(decide(&settings, 200, "Cache-Control", "max-age=0", "Last-Modified", NOW_TEXT), 0);
    d = decide(&settings, 200, "Cache-Control", "max-age=0, stale-while-revalidate=30", "", "");
    CHECK(d.store);
    CHECK_INT(d.ttl, 0);
    CHECK_INT(d.stale_while_revalidate, 30);
    CHECK_STORED(decide(&stale, 200, "Cache-Control", "max-age=0", "", ""), 0);
}

/* ---- age and freshness --------------------------------------------------- */

static void test_age(void)
{
    char date_text[30];
    /* nothing: age 0 */
    CHECK_INT(cache_initial_age(NULL, 0, NOW, NOW), 0);
    /* the request took 3 s */
    CHECK_INT(cache_initial_age(NULL, 0, NOW - 3, NOW), 3);
    /* a clock stepping back during the request */
    CHECK_INT(cache_initial_age(NULL, 0, NOW + 3, NOW), 0);

    /* apparent age from Date */
    http_date(NOW - 5, date_text);
    struct http_header date_only[] = {header_make("Date", date_text)};
    CHECK_INT(cache_initial_age(date_only, 1, NOW, NOW), 5);
    CHECK_INT(cache_initial_age(date_only, 1, NOW - 8, NOW), 8); /* response delay larger */
    /* a Date in the future (origin clock ahead) adds nothing */
    http_date(NOW + 100, date_text);
    struct http_header future[] = {header_make("Date", date_text)};
    CHECK_INT(cache_initial_age(future, 1, NOW, NOW), 0);

    /* Age from an upstream cache, plus the response delay */
    struct http_header age[] = {HEADER("Age", "30"), HEADER("Date", NOW_TEXT)};
    CHECK_INT(cache_initial_age(age, 2, NOW - 2, NOW), 32);
    /* apparent age wins when larger */
    http_date(NOW - 100, date_text);
    struct http_header both[] = {HEADER("Age", "30"), header_make("Date", date_text)};
    CHECK_INT(cache_initial_age(both, 2, NOW, NOW), 100);
    /* invalid Age values are ignored */
    const char *invalid[] = {"abc", "-5", "1.5", "", "+3", "3 s"};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(invalid); i++) {
        struct http_header bad[] = {header_make("Age", invalid[i])};
        CHECK_INT(cache_initial_age(bad, 1, NOW, NOW), 0);
    }
    struct http_header spaced[] = {HEADER("age", " 7 ")};
    CHECK_INT(cache_initial_age(spaced, 1, NOW, NOW), 7);
    struct http_header huge[] = {HEADER("Age", "99999999999999999999999999")};
    int64_t huge_age = cache_initial_age(huge, 1, NOW, NOW);
    CHECK(huge_age >= 2147483648LL && huge_age < ((int64_t)1 << 50));
    /* an invalid Date is ignored */
    struct http_header bad_date[] = {HEADER("Date", "soon"), HEADER("Age", "4")};
    CHECK_INT(cache_initial_age(bad_date, 2, NOW, NOW), 4);

    /* current age with a fake clock */
    CHECK_INT(cache_current_age(5, NOW, NOW), 5);
    CHECK_INT(cache_current_age(5, NOW, NOW + 10), 15);
    CHECK_INT(cache_current_age(0, NOW, NOW + 3600), 3600);
    CHECK_INT(cache_current_age(5, NOW, NOW - 10), 5); /* clock stepped back: never younger, never negative */
    CHECK_INT(cache_current_age(-3, NOW, NOW - 10), 0);
}

static void test_freshness_windows(void)
{
    CHECK_INT(cache_freshness_of(0, 60, 0), CACHE_FRESH);
    CHECK_INT(cache_freshness_of(59, 60, 0), CACHE_FRESH);
    CHECK_INT(cache_freshness_of(60, 60, 0), CACHE_STALE);
    CHECK_INT(cache_freshness_of(59, 60, 30), CACHE_FRESH);
    CHECK_INT(cache_freshness_of(60, 60, 30), CACHE_STALE_WHILE_REVALIDATE);
    CHECK_INT(cache_freshness_of(89, 60, 30), CACHE_STALE_WHILE_REVALIDATE);
    CHECK_INT(cache_freshness_of(90, 60, 30), CACHE_STALE);
    CHECK_INT(cache_freshness_of(0, 0, 0), CACHE_STALE);
    CHECK_INT(cache_freshness_of(0, 0, 10), CACHE_STALE_WHILE_REVALIDATE);
    CHECK_INT(cache_freshness_of(10, 0, 10), CACHE_STALE);

    CHECK(cache_may_serve_stale_on_error(30, 60, 100));
    CHECK(cache_may_serve_stale_on_error(60, 60, 100));
    CHECK(cache_may_serve_stale_on_error(159, 60, 100));
    CHECK(!cache_may_serve_stale_on_error(160, 60, 100));
    CHECK(!cache_may_serve_stale_on_error(60, 60, 0));
    CHECK(cache_may_serve_stale_on_error(59, 60, 0)); /* still fresh */

    /* a whole life on a fake clock: stored at t0 with Age 10 from upstream,
     * max-age 60, stale-while-revalidate 20, stale-if-error 100 */
    struct cache_settings settings = settings_make(0, DAY, YEAR);
    int64_t t0 = NOW;
    struct http_header response[] = {
        HEADER("Date", NOW_TEXT),
        HEADER("Age", "10"),
        HEADER("Cache-Control", "max-age=60, stale-while-revalidate=20, stale-if-error=100"),
    };
    struct cache_store_decision d;
    cache_decide_store(&settings, SLICE_LITERAL("GET"), false, 200, response, 3, t0, &d);
    CHECK(d.store);
    int64_t initial = cache_initial_age(response, 3, t0 - 1, t0);
    CHECK_INT(initial, 11);
    struct {
        int64_t at;
        enum cache_freshness freshness;
        bool on_error;
        int64_t age;
    } timeline[] = {
        {t0, CACHE_FRESH, true, 11},
        {t0 + 48, CACHE_FRESH, true, 59},
        {t0 + 49, CACHE_STALE_WHILE_REVALIDATE, true, 60},
        {t0 + 68, CACHE_STALE_WHILE_REVALIDATE, true, 79},
        {t0 + 69, CACHE_STALE, true, 80},
        {t0 + 148, CACHE_STALE, true, 159},
        {t0 + 149, CACHE_STALE, false, 160},
        {t0 - 50, CACHE_FRESH, true, 11},
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(timeline); i++) {
        int64_t age = cache_current_age(initial, t0, timeline[i].at);
        CHECK_INT(age, timeline[i].age);
        CHECK_INT(cache_freshness_of(age, d.ttl, d.stale_while_revalidate), timeline[i].freshness);
        CHECK_INT(cache_may_serve_stale_on_error(age, d.ttl, d.stale_if_error), timeline[i].on_error);
    }
}

/* ---- Vary ---------------------------------------------------------------- */

static bool vary_names_of(const struct http_header *headers, size_t count, struct bytebuf *names)
{
    names->len = 0;
    return cache_vary_names(headers, count, names);
}

static void test_vary_names(void)
{
    struct bytebuf names = {0};
    CHECK(vary_names_of(NULL, 0, &names));
    CHECK(BUF_IS(names, ""));

    struct http_header one[] = {HEADER("Vary", "Accept-Encoding")};
    CHECK(vary_names_of(one, 1, &names));
    CHECK(BUF_IS(names, "accept-encoding\n"));

    struct http_header list[] = {HEADER("Content-Type", "x"), HEADER("vary", " User-Agent ,Accept-Language,, accept-encoding ,")};
    CHECK(vary_names_of(list, 2, &names));
    CHECK(BUF_IS(names, "accept-encoding\naccept-language\nuser-agent\n"));

    struct http_header several[] = {HEADER("Vary", "Origin, ACCEPT"), HEADER("VARY", "accept, Cookie"), HEADER("Vary", "origin")};
    CHECK(vary_names_of(several, 3, &names));
    CHECK(BUF_IS(names, "accept\ncookie\norigin\n"));

    struct http_header empty[] = {HEADER("Vary", ""), HEADER("Vary", " , ")};
    CHECK(vary_names_of(empty, 2, &names));
    CHECK(BUF_IS(names, ""));

    /* "*" anywhere: false, nothing appended */
    struct http_header star[] = {HEADER("Vary", "*")};
    CHECK(!vary_names_of(star, 1, &names));
    CHECK(BUF_IS(names, ""));
    struct http_header star_late[] = {HEADER("Vary", "Accept"), HEADER("Vary", "Origin, * ")};
    CHECK(!vary_names_of(star_late, 2, &names));
    CHECK(BUF_IS(names, ""));

    /* appends after what is there */
    bytebuf_append(&names, "x\n", 2);
    CHECK(cache_vary_names(one, 1, &names));
    CHECK(BUF_IS(names, "x\naccept-encoding\n"));

    /* the same set in any order and case gives the same names */
    struct bytebuf other = {0};
    struct http_header order_a[] = {HEADER("Vary", "B, a, C")};
    struct http_header order_b[] = {HEADER("Vary", "c"), HEADER("Vary", "A,b")};
    vary_names_of(order_a, 1, &names);
    vary_names_of(order_b, 2, &other);
    CHECK(buf_equal(&names, &other));
    bytebuf_free(&names);
    bytebuf_free(&other);
}

static void signature_of(const char *names, const struct http_header *headers, size_t count, struct bytebuf *out)
{
    out->len = 0;
    cache_vary_signature(slice_from_cstr(names), headers, count, out);
}

static void test_vary_signature(void)
{
    struct bytebuf a = {0}, b = {0};
    const char *names = "accept-encoding\naccept-language\n";

    struct http_header gzip_en[] = {HEADER("Accept-Encoding", "gzip"), HEADER("Accept-Language", "en")};
    signature_of(names, gzip_en, 2, &a);
    CHECK(BUF_IS(a, "gzip\nen\n"));

    /* absent vs empty */
    struct http_header absent[] = {HEADER("Accept-Encoding", "gzip")};
    signature_of(names, absent, 1, &a);
    CHECK(BUF_IS(a, "gzip\n\x01\n"));
    struct http_header empty[] = {HEADER("Accept-Encoding", "gzip"), HEADER("Accept-Language", "")};
    signature_of(names, empty, 2, &b);
    CHECK(BUF_IS(b, "gzip\n\n"));
    CHECK(!buf_equal(&a, &b));

    /* several headers of one name joined with ", ", in request order */
    struct http_header multiple[] = {HEADER("accept-language", "en"), HEADER("Accept-Encoding", "gzip"),
                                     HEADER("ACCEPT-LANGUAGE", " fr ")};
    signature_of(names, multiple, 3, &a);
    CHECK(BUF_IS(a, "gzip\nen, fr\n"));
    struct http_header joined[] = {HEADER("Accept-Language", "en, fr"), HEADER("Accept-Encoding", "gzip")};
    signature_of(names, joined, 2, &b);
    CHECK(buf_equal(&a, &b)); /* same field value either way (RFC 9110 §5.3) */

    /* names match case-insensitively, values exactly (after OWS trim) */
    struct http_header cased[] = {HEADER("ACCEPT-ENCODING", "  gzip\t"), HEADER("accept-language", "en")};
    signature_of(names, cased, 2, &b);
    signature_of(names, gzip_en, 2, &a);
    CHECK(buf_equal(&a, &b));
    struct http_header other_value[] = {HEADER("Accept-Encoding", "GZIP"), HEADER("Accept-Language", "en")};
    signature_of(names, other_value, 2, &b);
    CHECK(!buf_equal(&a, &b));

    /* unrelated headers do not matter; no names: empty signature */
    struct http_header with_noise[] = {HEADER("Cookie", "a=1"), HEADER("Accept-Language", "en"), HEADER("User-Agent", "x"),
                                       HEADER("Accept-Encoding", "gzip")};
    signature_of(names, with_noise, 4, &b);
    CHECK(buf_equal(&a, &b));
    signature_of("", gzip_en, 2, &b);
    CHECK(BUF_IS(b, ""));
    signature_of("accept-encoding\n", NULL, 0, &b);
    CHECK(BUF_IS(b, "\x01\n"));

    /* end to end: names from a response, signatures from two requests */
    struct http_header response[] = {HEADER("Vary", "Accept-Encoding")};
    struct bytebuf vary = {0};
    CHECK(cache_vary_names(response, 1, &vary));
    struct http_header request_1[] = {HEADER("Accept-Encoding", "br"), HEADER("Accept-Language", "en")};
    struct http_header request_2[] = {HEADER("Accept-Encoding", "br"), HEADER("Accept-Language", "de")};
    a.len = b.len = 0;
    cache_vary_signature(slice_make(vary.data, vary.len), request_1, 2, &a);
    cache_vary_signature(slice_make(vary.data, vary.len), request_2, 2, &b);
    CHECK(buf_equal(&a, &b));
    bytebuf_free(&vary);
    bytebuf_free(&a);
    bytebuf_free(&b);
}

/* ---- the cache key ------------------------------------------------------- */

static char *names_none[] = {NULL};

static struct cache_settings key_settings(void)
{
    struct cache_settings settings = settings_make(0, DAY, YEAR);
    settings.query = (struct cache_name_list){CACHE_LIST_NONE, names_none, 0};
    settings.headers = (struct cache_name_list){CACHE_LIST_NONE, names_none, 0};
    settings.cookies = (struct cache_name_list){CACHE_LIST_NONE, names_none, 0};
    return settings;
}

static void key_of(const struct cache_settings *settings, const char *method, const char *host, const char *path, const char *query,
                   const struct http_header *headers, size_t count, struct bytebuf *out)
{
    out->len = 0;
    cache_build_key(settings, slice_from_cstr(method), slice_from_cstr(host), slice_from_cstr(path), slice_from_cstr(query),
                    headers, count, out);
}

static void test_key_default(void)
{
    struct cache_settings settings = key_settings();
    struct bytebuf key = {0}, other = {0};
    struct http_header headers[] = {HEADER("Accept-Language", "en"), HEADER("Cookie", "session=1")};

    key_of(&settings, "GET", "example.com", "/img/a.png", "", NULL, 0, &key);
    CHECK(BUF_IS(key, "G\0example.com\0/img/a.png\0\0\0"));
    /* the host is lowercased, the path kept as is */
    key_of(&settings, "GET", "Example.COM", "/img/a.png", "", NULL, 0, &other);
    CHECK(buf_equal(&key, &other));
    key_of(&settings, "GET", "example.com", "/IMG/a.png", "", NULL, 0, &other);
    CHECK(!buf_equal(&key, &other));
    key_of(&settings, "GET", "example.com", "/img/a%2Epng", "", NULL, 0, &other);
    CHECK(!buf_equal(&key, &other));
    key_of(&settings, "GET", "example.com:8080", "/img/a.png", "", NULL, 0, &other);
    CHECK(!buf_equal(&key, &other));
    key_of(&settings, "GET", "example.org", "/img/a.png", "", NULL, 0, &other);
    CHECK(!buf_equal(&key, &other));
    /* query, headers and cookies are not in the default key */
    key_of(&settings, "GET", "example.com", "/img/a.png", "v=2&utm_source=x", headers, 2, &other);
    CHECK(buf_equal(&key, &other));
    /* HEAD shares GET's key; other methods are keyed apart */
    key_of(&settings, "HEAD", "example.com", "/img/a.png", "", NULL, 0, &other);
    CHECK(buf_equal(&key, &other));
    key_of(&settings, "OPTIONS", "example.com", "/img/a.png", "", NULL, 0, &other);
    CHECK(BUF_IS(other, "OPTIONS\0example.com\0/img/a.png\0\0\0"));
    key_of(&settings, "POST", "example.com", "/img/a.png", "", NULL, 0, &other);
    CHECK(BUF_IS(other, "POST\0example.com\0/img/a.png\0\0\0"));
    key_of(&settings, "get", "example.com", "/img/a.png", "", NULL, 0, &other);
    CHECK(!buf_equal(&key, &other));
    /* the fields cannot run into each other */
    key_of(&settings, "GET", "a.com", "/b", "", NULL, 0, &key);
    key_of(&settings, "GET", "a.com/", "b", "", NULL, 0, &other);
    CHECK(!buf_equal(&key, &other));
    /* appends after what is there */
    bytebuf_append(&key, "prefix", 6);
    size_t before = key.len;
    cache_build_key(&settings, SLICE_LITERAL("GET"), SLICE_LITERAL("h"), SLICE_LITERAL("/"), SLICE_LITERAL(""), NULL, 0, &key);
    CHECK(key.len == before + sizeof("G\0h\0/\0\0\0") - 1);
    bytebuf_free(&key);
    bytebuf_free(&other);
}

static void test_key_query(void)
{
    struct cache_settings settings = key_settings();
    struct bytebuf key = {0}, other = {0};

    settings.query.mode = CACHE_LIST_ALL;
    key_of(&settings, "GET", "h", "/p", "b=2&a=1", NULL, 0, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0a=1&b=2\0\0"));
    key_of(&settings, "GET", "h", "/p", "a=1&b=2", NULL, 0, &other);
    CHECK(buf_equal(&key, &other));
    /* same name: sorted by value; "no value" before "empty value" before values */
    key_of(&settings, "GET", "h", "/p", "a=2&a=1&a&a=", NULL, 0, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0a&a=&a=1&a=2\0\0"));
    /* sorted by name, not by raw text: "a" < "a-b" although '=' > '-' */
    key_of(&settings, "GET", "h", "/p", "a-b=1&a=2", NULL, 0, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0a=2&a-b=1\0\0"));
    /* empty parameters dropped; names case-sensitive, byte order; values as received */
    key_of(&settings, "GET", "h", "/p", "&&b=%41&&A=1&a=1&", NULL, 0, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0A=1&a=1&b=%41\0\0"));
    key_of(&settings, "GET", "h", "/p", "b=A", NULL, 0, &other);
    CHECK(!BUF_IS(other, "G\0h\0/p\0b=%41\0\0")); /* not decoded */
    /* no query vs empty query */
    key_of(&settings, "GET", "h", "/p", "", NULL, 0, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0\0\0"));
    key_of(&settings, "GET", "h", "/p", "&", NULL, 0, &other);
    CHECK(buf_equal(&key, &other));
    /* every permutation of four parameters gives one key */
    const char *parts[] = {"x=1", "y=2", "z=3", "x=0"};
    key_of(&settings, "GET", "h", "/p", "x=0&x=1&y=2&z=3", NULL, 0, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0x=0&x=1&y=2&z=3\0\0"));
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < 4; l++) {
                    if (i == j || i == k || i == l || j == k || j == l || k == l)
                        continue;
                    char query[64];
                    snprintf(query, sizeof query, "%s&%s&%s&%s", parts[i], parts[j], parts[k], parts[l]);
                    key_of(&settings, "GET", "h", "/p", query, NULL, 0, &other);
                    CHECK(buf_equal(&key, &other));
                }

    /* only the listed names (case-sensitive) */
    char *only[] = {"a", "c"};
    settings.query = (struct cache_name_list){CACHE_LIST_ONLY, only, 2};
    key_of(&settings, "GET", "h", "/p", "c=3&b=2&a=1&utm=x&A=9&cc=1", NULL, 0, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0a=1&c=3\0\0"));
    key_of(&settings, "GET", "h", "/p", "b=2", NULL, 0, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0\0\0"));

    /* all except the listed names */
    char *except[] = {"utm_source", "utm_medium"};
    settings.query = (struct cache_name_list){CACHE_LIST_EXCEPT, except, 2};
    key_of(&settings, "GET", "h", "/p", "utm_source=x&id=5&utm_medium=y&UTM_SOURCE=z", NULL, 0, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0UTM_SOURCE=z&id=5\0\0"));
    bytebuf_free(&key);
    bytebuf_free(&other);
}

static void test_key_headers(void)
{
    struct cache_settings settings = key_settings();
    struct bytebuf key = {0}, other = {0};
    char *names[] = {"x-device", "accept-language"};
    settings.headers = (struct cache_name_list){CACHE_LIST_ONLY, names, 2};

    struct http_header headers[] = {HEADER("Accept-Language", "en"), HEADER("X-Device", "mobile"), HEADER("User-Agent", "x")};
    key_of(&settings, "GET", "h", "/p", "", headers, 3, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0\0x-device:mobile\naccept-language:en\n\0"));
    /* absent headers leave no line; empty ones do */
    key_of(&settings, "GET", "h", "/p", "", headers, 1, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0\0accept-language:en\n\0"));
    struct http_header empty[] = {HEADER("accept-language", "")};
    key_of(&settings, "GET", "h", "/p", "", empty, 1, &other);
    CHECK(BUF_IS(other, "G\0h\0/p\0\0accept-language:\n\0"));
    key_of(&settings, "GET", "h", "/p", "", NULL, 0, &key);
    CHECK(!buf_equal(&key, &other));
    /* several headers joined; names case-insensitive; values trimmed */
    struct http_header several[] = {HEADER("ACCEPT-LANGUAGE", " en "), HEADER("accept-language", "fr")};
    key_of(&settings, "GET", "h", "/p", "", several, 2, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0\0accept-language:en, fr\n\0"));
    /* a name listed in another case or twice is keyed once */
    char *mixed[] = {"Accept-Language", "accept-language"};
    struct cache_settings mixed_settings = key_settings();
    mixed_settings.headers = (struct cache_name_list){CACHE_LIST_ONLY, mixed, 2};
    key_of(&mixed_settings, "GET", "h", "/p", "", several, 2, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0\0accept-language:en, fr\n\0"));

    /* ALL / EXCEPT (not offered by CloudFront, still well defined): sorted names */
    struct cache_settings all = key_settings();
    all.headers.mode = CACHE_LIST_ALL;
    struct http_header unsorted[] = {HEADER("X-B", "2"), HEADER("x-a", "1"), HEADER("X-A", "3")};
    key_of(&all, "GET", "h", "/p", "", unsorted, 3, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0\0x-a:1, 3\nx-b:2\n\0"));
    char *except[] = {"x-b"};
    all.headers = (struct cache_name_list){CACHE_LIST_EXCEPT, except, 1};
    key_of(&all, "GET", "h", "/p", "", unsorted, 3, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0\0x-a:1, 3\n\0"));
    bytebuf_free(&key);
    bytebuf_free(&other);
}

static void test_key_cookies(void)
{
    struct cache_settings settings = key_settings();
    struct bytebuf key = {0}, other = {0};
    struct http_header cookies[] = {HEADER("Cookie", "theme=dark; session=abc;lang=en"), HEADER("cookie", " b=2 ;; a=1")};

    key_of(&settings, "GET", "h", "/p", "", cookies, 2, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0\0\0"));

    settings.cookies.mode = CACHE_LIST_ALL;
    key_of(&settings, "GET", "h", "/p", "", cookies, 2, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0\0\0a=1; b=2; lang=en; session=abc; theme=dark"));
    struct http_header reordered[] = {HEADER("Cookie", "a=1; b=2; lang=en; session=abc; theme=dark")};
    key_of(&settings, "GET", "h", "/p", "", reordered, 1, &other);
    CHECK(buf_equal(&key, &other));

    char *only[] = {"session", "lang"};
    settings.cookies = (struct cache_name_list){CACHE_LIST_ONLY, only, 2};
    key_of(&settings, "GET", "h", "/p", "", cookies, 2, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0\0\0lang=en; session=abc"));
    struct http_header cased[] = {HEADER("Cookie", "SESSION=x; Lang=y")};
    key_of(&settings, "GET", "h", "/p", "", cased, 1, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0\0\0")); /* cookie names are case-sensitive */

    char *except[] = {"theme"};
    settings.cookies = (struct cache_name_list){CACHE_LIST_EXCEPT, except, 1};
    key_of(&settings, "GET", "h", "/p", "", cookies, 2, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0\0\0a=1; b=2; lang=en; session=abc"));

    /* whitespace around '=' and a cookie without '=' */
    settings.cookies.mode = CACHE_LIST_ALL;
    struct http_header odd[] = {HEADER("Cookie", "flag; a = 1")};
    key_of(&settings, "GET", "h", "/p", "", odd, 1, &key);
    CHECK(BUF_IS(key, "G\0h\0/p\0\0\0a = 1; flag"));
    bytebuf_free(&key);
    bytebuf_free(&other);
}

/* A key never changes with parameters outside the selection. */
static void test_key_invariance(void)
{
    char *query_names[] = {"id"};
    char *header_names[] = {"accept-language"};
    char *cookie_names[] = {"session"};
    struct cache_settings settings = key_settings();
    settings.query = (struct cache_name_list){CACHE_LIST_ONLY, query_names, 1};
    settings.headers = (struct cache_name_list){CACHE_LIST_ONLY, header_names, 1};
    settings.cookies = (struct cache_name_list){CACHE_LIST_ONLY, cookie_names, 1};

    struct bytebuf base = {0}, key = {0};
    struct http_header base_headers[] = {HEADER("Accept-Language", "en"), HEADER("Cookie", "session=s1")};
    key_of(&settings, "GET", "h", "/p", "id=7", base_headers, 2, &base);
    CHECK(BUF_IS(base, "G\0h\0/p\0id=7\0accept-language:en\n\0session=s1"));

    const char *extra_queries[] = {"id=7&utm_source=a", "utm_source=b&id=7", "id=7&&x", "z=1&id=7&y=2", "ID=1&id=7", "id=7&idx=3"};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(extra_queries); i++) {
        key_of(&settings, "GET", "h", "/p", extra_queries[i], base_headers, 2, &key);
        CHECK(buf_equal(&base, &key));
    }
    const char *extra_cookies[] = {"session=s1; theme=dark", "a=1; session=s1", "session=s1;x", "SESSION=other; session=s1"};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(extra_cookies); i++) {
        struct http_header headers[] = {HEADER("User-Agent", "curl"), HEADER("Accept-Language", "en"),
                                        header_make("Cookie", extra_cookies[i]), HEADER("Authorization", "Bearer x"),
                                        HEADER("Accept-Encoding", "gzip")};
        key_of(&settings, "GET", "h", "/p", "id=7", headers, 5, &key);
        CHECK(buf_equal(&base, &key));
        key_of(&settings, "HEAD", "H", "/p", "x=1&id=7", headers, 5, &key);
        CHECK(buf_equal(&base, &key));
    }
    /* and it does change with what is selected */
    key_of(&settings, "GET", "h", "/p", "id=8", base_headers, 2, &key);
    CHECK(!buf_equal(&base, &key));
    struct http_header other_language[] = {HEADER("Accept-Language", "fr"), HEADER("Cookie", "session=s1")};
    key_of(&settings, "GET", "h", "/p", "id=7", other_language, 2, &key);
    CHECK(!buf_equal(&base, &key));
    struct http_header other_session[] = {HEADER("Accept-Language", "en"), HEADER("Cookie", "session=s2")};
    key_of(&settings, "GET", "h", "/p", "id=7", other_session, 2, &key);
    CHECK(!buf_equal(&base, &key));
    bytebuf_free(&base);
    bytebuf_free(&key);
}

/* ---- 304 merge ----------------------------------------------------------- */

static const struct http_header *find_merged(const struct http_header *merged, size_t count, const char *name, size_t nth)
{
    for (size_t i = 0; i < count; i++)
        if (slice_equal_nocase(merged[i].name, slice_from_cstr(name)) && nth-- == 0)
            return &merged[i];
    return NULL;
}

static int count_merged(const struct http_header *merged, size_t count, const char *name)
{
    int n = 0;
    for (size_t i = 0; i < count; i++)
        n += slice_equal_nocase(merged[i].name, slice_from_cstr(name));
    return n;
}

static bool merged_value_is(const struct http_header *merged, size_t count, const char *name, const char *value)
{
    const struct http_header *h = find_merged(merged, count, name, 0);
    return h != NULL && slice_equal(h->value, slice_from_cstr(value));
}

static void test_merge_not_modified(void)
{
    struct http_header stored[] = {
        HEADER("Content-Type", "text/html"),
        HEADER("ETag", "\"v1\""),
        HEADER("Cache-Control", "max-age=60"),
        HEADER("Content-Length", "100"),
        HEADER("Date", "Tue, 14 Nov 2023 22:00:00 GMT"),
        HEADER("Link", "</a.css>; rel=preload"),
        HEADER("Link", "</b.js>; rel=preload"),
        HEADER("Content-Encoding", "gzip"),
        HEADER("X-Origin", "kept"),
    };
    struct http_header not_modified[] = {
        HEADER("etag", "\"v2\""),
        HEADER("Cache-Control", "max-age=120"),
        HEADER("Date", NOW_TEXT),
        HEADER("Content-Length", "0"),
        HEADER("Content-Encoding", "br"),
        HEADER("Transfer-Encoding", "chunked"),
        HEADER("Content-Range", "bytes 0-1/2"),
        HEADER("Connection", "close, X-Hop"),
        HEADER("X-Hop", "1"),
        HEADER("Keep-Alive", "timeout=5"),
        HEADER("LINK", "</c.css>; rel=preload"),
        HEADER("X-New", "added"),
    };
    struct http_header merged[VERGE_ARRAY_SIZE(stored) + VERGE_ARRAY_SIZE(not_modified)];
    size_t n = cache_merge_not_modified(stored, VERGE_ARRAY_SIZE(stored), not_modified, VERGE_ARRAY_SIZE(not_modified), merged);
    CHECK_INT(n, 9);
    CHECK(merged_value_is(merged, n, "Content-Type", "text/html"));
    CHECK(merged_value_is(merged, n, "ETag", "\"v2\""));
    CHECK_INT(count_merged(merged, n, "ETag"), 1);
    CHECK(merged_value_is(merged, n, "Cache-Control", "max-age=120"));
    CHECK_INT(count_merged(merged, n, "Cache-Control"), 1);
    CHECK(merged_value_is(merged, n, "Date", NOW_TEXT));
    CHECK(merged_value_is(merged, n, "Content-Length", "100"));
    CHECK_INT(count_merged(merged, n, "Content-Length"), 1);
    CHECK(merged_value_is(merged, n, "Content-Encoding", "gzip"));
    CHECK_INT(count_merged(merged, n, "Content-Encoding"), 1);
    CHECK_INT(count_merged(merged, n, "Transfer-Encoding"), 0);
    CHECK_INT(count_merged(merged, n, "Content-Range"), 0);
    CHECK_INT(count_merged(merged, n, "Connection"), 0);
    CHECK_INT(count_merged(merged, n, "Keep-Alive"), 0);
    CHECK_INT(count_merged(merged, n, "X-Hop"), 0);
    CHECK_INT(count_merged(merged, n, "Link"), 1); /* every stored Link replaced by the 304's one */
    CHECK(merged_value_is(merged, n, "Link", "</c.css>; rel=preload"));
    CHECK(merged_value_is(merged, n, "X-Origin", "kept"));
    CHECK(merged_value_is(merged, n, "X-New", "added"));
    /* the slices point into the inputs */
    const struct http_header *etag = find_merged(merged, n, "etag", 0);
    CHECK(etag != NULL && etag->value.ptr == not_modified[0].value.ptr);
    const struct http_header *type = find_merged(merged, n, "content-type", 0);
    CHECK(type != NULL && type->value.ptr == stored[0].value.ptr);
    /* stored order first, then the 304's new fields */
    CHECK(slice_equal(merged[0].name, SLICE_LITERAL("Content-Type")));

    /* an empty 304 changes nothing; an empty store takes the 304's fields */
    n = cache_merge_not_modified(stored, VERGE_ARRAY_SIZE(stored), NULL, 0, merged);
    CHECK_INT(n, VERGE_ARRAY_SIZE(stored));
    for (size_t i = 0; i < n; i++)
        CHECK(merged[i].value.ptr == stored[i].value.ptr);
    struct http_header simple[] = {HEADER("ETag", "\"v3\""), HEADER("Connection", "keep-alive")};
    n = cache_merge_not_modified(NULL, 0, simple, 2, merged);
    CHECK_INT(n, 1);
    CHECK(merged_value_is(merged, n, "ETag", "\"v3\""));

    /* a 304 that repeats a header several times replaces with all of them */
    struct http_header stored_2[] = {HEADER("Set-Cookie", "a=1"), HEADER("Vary", "Accept")};
    struct http_header repeat[] = {HEADER("Vary", "Accept"), HEADER("Vary", "Origin")};
    n = cache_merge_not_modified(stored_2, 2, repeat, 2, merged);
    CHECK_INT(n, 3);
    CHECK_INT(count_merged(merged, n, "Vary"), 2);
    CHECK(merged_value_is(merged, n, "Set-Cookie", "a=1"));
}

static const char *described(struct bytebuf *out, const char *key, size_t len)
{
    out->len = 0;
    cache_key_describe(slice_make(key, len), out);
    bytebuf_append(out, "", 1);
    return out->data;
}

#define DESCRIBED(out, literal) described(out, literal, sizeof(literal) - 1)

static void test_key_describe(void)
{
    struct bytebuf out = {0}, key = {0};
    CHECK_STR(DESCRIBED(&out, "G\0example.com\0/img/a.png\0\0\0"), "example.com/img/a.png");
    CHECK_STR(DESCRIBED(&out, "POST\0h\0/p\0a=1&b=2\0\0"), "POST h/p?a=1&b=2");
    CHECK_STR(DESCRIBED(&out, "G\0h\0/p\0\0accept-language:en\nx-a:\n\0"), "h/p headers{accept-language:en, x-a:}");
    CHECK_STR(DESCRIBED(&out, "G\0h\0/p\0\0\0a=1; b=2"), "h/p cookies{a=1; b=2}");
    /* bytes a terminal or a header must not get */
    CHECK_STR(DESCRIBED(&out, "G\0h\0/\x01\xff\"\\\0\0\0"), "h/\\x01\\xff\\x22\\x5c");
    /* not a key: shown escaped as it is */
    CHECK_STR(DESCRIBED(&out, "plain\nx"), "plain\\x0ax");
    /* what cache_build_key writes reads back */
    struct cache_settings settings = key_settings();
    settings.query.mode = CACHE_LIST_ALL;
    key_of(&settings, "GET", "Example.com", "/a", "z=1&a=2", NULL, 0, &key);
    out.len = 0;
    cache_key_describe(slice_make(key.data, key.len), &out);
    bytebuf_append(&out, "", 1);
    CHECK_STR(out.data, "example.com/a?a=2&z=1");
    bytebuf_free(&out);
    bytebuf_free(&key);
}

int main(void)
{
    UNIT_RUN(test_cache_control_directives);
    UNIT_RUN(test_cache_control_syntax);
    UNIT_RUN(test_cache_control_headers);
    UNIT_RUN(test_ttl_table_rows);
    UNIT_RUN(test_ttl_expires);
    UNIT_RUN(test_ttl_table_grid);
    UNIT_RUN(test_statuses);
    UNIT_RUN(test_error_caching);
    UNIT_RUN(test_methods_and_switches);
    UNIT_RUN(test_authorization);
    UNIT_RUN(test_set_cookie_is_never_stored);
    UNIT_RUN(test_vary_star_and_stale_windows);
    UNIT_RUN(test_age);
    UNIT_RUN(test_freshness_windows);
    UNIT_RUN(test_vary_names);
    UNIT_RUN(test_vary_signature);
    UNIT_RUN(test_key_default);
    UNIT_RUN(test_key_query);
    UNIT_RUN(test_key_headers);
    UNIT_RUN(test_key_cookies);
    UNIT_RUN(test_key_invariance);
    UNIT_RUN(test_merge_not_modified);
    UNIT_RUN(test_key_describe);
    return unit_summary();
}
