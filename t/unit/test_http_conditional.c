/* test_http_conditional.c — http_evaluate_conditionals: If-Match,
 * If-Unmodified-Since, If-None-Match, If-Modified-Since, Range, If-Range,
 * for strong and weak ETags, unknown validators, and every single byte range
 * of small sizes against a straightforward model.
 */
#include "../../proxy/http_conditional.h"
#include "unit.h"

#include <inttypes.h>
#include <stdio.h>

#define LAST_MODIFIED 1700000000 /* Tue, 14 Nov 2023 22:13:20 GMT */
#define LM_TEXT "Tue, 14 Nov 2023 22:13:20 GMT"
#define LM_EARLIER "Tue, 14 Nov 2023 22:13:19 GMT"
#define LM_LATER "Tue, 14 Nov 2023 22:13:21 GMT"
#define ETAG "\"c-6553f100\""

static struct http_conditional_input input_make(const char *method)
{
    return (struct http_conditional_input){
        .method = slice_from_cstr(method),
        .etag = SLICE_LITERAL(ETAG),
        .last_modified = LAST_MODIFIED,
        .size = 12,
    };
}

static struct http_conditional_result evaluate(const struct http_conditional_input *in)
{
    struct http_conditional_result out;
    memset(&out, 0x5a, sizeof out); /* the function must write every field */
    http_evaluate_conditionals(in, &out);
    return out;
}

static int status_with_if_none_match(const char *etag, const char *header)
{
    struct http_conditional_input in = input_make("GET");
    in.etag = slice_from_cstr(etag);
    in.if_none_match = slice_from_cstr(header);
    return evaluate(&in).status;
}

static int status_with_if_match(const char *etag, const char *header)
{
    struct http_conditional_input in = input_make("GET");
    in.etag = slice_from_cstr(etag);
    in.if_match = slice_from_cstr(header);
    return evaluate(&in).status;
}

static void test_no_conditionals(void)
{
    struct http_conditional_input in = input_make("GET");
    struct http_conditional_result out = evaluate(&in);
    CHECK_INT(out.status, 200);
    CHECK_INT(out.offset, 0);
    CHECK_INT(out.length, 12);
    CHECK_STR(out.content_range, "");

    in.if_range = SLICE_LITERAL(ETAG); /* If-Range alone does nothing */
    out = evaluate(&in);
    CHECK_INT(out.status, 200);
    CHECK_INT(out.length, 12);

    in = input_make("GET");
    in.if_none_match = SLICE_LITERAL("   "); /* only spaces: absent */
    in.if_modified_since = SLICE_LITERAL(LM_TEXT);
    CHECK_INT(evaluate(&in).status, 304);
}

static void test_if_none_match(void)
{
    CHECK_INT(status_with_if_none_match(ETAG, ETAG), 304);
    CHECK_INT(status_with_if_none_match(ETAG, "W/" ETAG), 304); /* weak comparison */
    CHECK_INT(status_with_if_none_match("W/" ETAG, ETAG), 304); /* our tag weak (e.g. a compressed copy) */
    CHECK_INT(status_with_if_none_match("W/" ETAG, "W/" ETAG), 304);
    CHECK_INT(status_with_if_none_match(ETAG, "\"x\", W/\"y\"," ETAG), 304);
    CHECK_INT(status_with_if_none_match(ETAG, "  \"a,b\" , " ETAG "  "), 304); /* commas inside a tag */
    CHECK_INT(status_with_if_none_match(ETAG, "\"a," ETAG "\""), 200);         /* our tag inside another one */
    CHECK_INT(status_with_if_none_match(ETAG, "*"), 304);
    CHECK_INT(status_with_if_none_match("", "*"), 304); /* "*": the representation exists */
    CHECK_INT(status_with_if_none_match("", "\"\""), 200);
    CHECK_INT(status_with_if_none_match(ETAG, "\"other\""), 200);
    CHECK_INT(status_with_if_none_match(ETAG, "\"c-6553f10\""), 200);
    CHECK_INT(status_with_if_none_match(ETAG, "c-6553f100"), 200);       /* unquoted: malformed */
    CHECK_INT(status_with_if_none_match(ETAG, "\"c-6553f100"), 200);     /* unterminated */
    CHECK_INT(status_with_if_none_match(ETAG, "x, " ETAG), 200);         /* a malformed member ends the scan */
    CHECK_INT(status_with_if_none_match(ETAG, "w/" ETAG), 200);          /* W/ is case-sensitive */
    CHECK_INT(status_with_if_none_match("garbage", "\"garbage\""), 200); /* our ETag unusable: only "*" matches */
    CHECK_INT(status_with_if_none_match("\"a\"b\"", "\"a\"b\""), 200);   /* malformed ETag of ours */
    CHECK_INT(status_with_if_none_match("\"\"", "\"\""), 304);           /* the empty opaque-tag is valid */
    CHECK_INT(status_with_if_none_match(ETAG, ",,, ," ETAG), 304);       /* empty list elements */
    CHECK_INT(status_with_if_none_match(ETAG, "\t" ETAG "\t"), 304);

    /* If-Modified-Since is ignored when If-None-Match is present */
    struct http_conditional_input in = input_make("GET");
    in.if_none_match = SLICE_LITERAL("\"other\"");
    in.if_modified_since = SLICE_LITERAL(LM_TEXT);
    CHECK_INT(evaluate(&in).status, 200);

    /* HEAD gets the 304 GET gets; other methods get 412 */
    in = input_make("HEAD");
    in.if_none_match = SLICE_LITERAL(ETAG);
    struct http_conditional_result out = evaluate(&in);
    CHECK_INT(out.status, 304);
    CHECK_INT(out.length, 0);
    in.method = SLICE_LITERAL("POST");
    out = evaluate(&in);
    CHECK_INT(out.status, 412);
    CHECK_INT(out.length, 0);
    in.method = SLICE_LITERAL("get"); /* methods are case-sensitive */
    CHECK_INT(evaluate(&in).status, 412);
}

static int status_with_if_modified_since(const char *method, int64_t last_modified, const char *header)
{
    struct http_conditional_input in = input_make(method);
    in.last_modified = last_modified;
    in.if_modified_since = slice_from_cstr(header);
    return evaluate(&in).status;
}

static void test_if_modified_since(void)
{
    CHECK_INT(status_with_if_modified_since("GET", LAST_MODIFIED, LM_TEXT), 304);
    CHECK_INT(status_with_if_modified_since("GET", LAST_MODIFIED, "  " LM_TEXT " "), 304);
    CHECK_INT(status_with_if_modified_since("GET", LAST_MODIFIED, LM_LATER), 304);
    CHECK_INT(status_with_if_modified_since("GET", LAST_MODIFIED, LM_EARLIER), 200);
    CHECK_INT(status_with_if_modified_since("GET", LAST_MODIFIED, "Tuesday, 14-Nov-23 22:13:20 GMT"), 304);
    CHECK_INT(status_with_if_modified_since("GET", LAST_MODIFIED, "Tue Nov 14 22:13:20 2023"), 304);
    CHECK_INT(status_with_if_modified_since("GET", LAST_MODIFIED, "yesterday"), 200);
    CHECK_INT(status_with_if_modified_since("GET", LAST_MODIFIED, "0"), 200);
    CHECK_INT(status_with_if_modified_since("HEAD", LAST_MODIFIED, LM_TEXT), 304);
    CHECK_INT(status_with_if_modified_since("POST", LAST_MODIFIED, LM_TEXT), 200); /* GET and HEAD only */
    CHECK_INT(status_with_if_modified_since("GET", -1, LM_TEXT), 200);             /* no Last-Modified: full answer */
    CHECK_INT(status_with_if_modified_since("GET", -1, "Thu, 01 Jan 2099 00:00:00 GMT"), 200);
}

static void test_if_match(void)
{
    CHECK_INT(status_with_if_match(ETAG, ETAG), 200);
    CHECK_INT(status_with_if_match(ETAG, "\"x\", " ETAG), 200);
    CHECK_INT(status_with_if_match(ETAG, "*"), 200);
    CHECK_INT(status_with_if_match("", "*"), 200);
    CHECK_INT(status_with_if_match(ETAG, "\"x\""), 412);
    CHECK_INT(status_with_if_match(ETAG, "W/" ETAG), 412); /* strong comparison */
    CHECK_INT(status_with_if_match("W/" ETAG, ETAG), 412); /* a weak tag of ours never matches strongly */
    CHECK_INT(status_with_if_match("W/" ETAG, "W/" ETAG), 412);
    CHECK_INT(status_with_if_match("", ETAG), 412); /* no ETag: nothing matches */
    CHECK_INT(status_with_if_match(ETAG, "garbage"), 412);

    /* If-Match passes, then If-None-Match decides */
    struct http_conditional_input in = input_make("GET");
    in.if_match = SLICE_LITERAL(ETAG);
    in.if_none_match = SLICE_LITERAL(ETAG);
    CHECK_INT(evaluate(&in).status, 304);
    /* a failing If-Match wins over everything after it */
    in.if_match = SLICE_LITERAL("\"x\"");
    in.range = SLICE_LITERAL("bytes=0-1");
    struct http_conditional_result out = evaluate(&in);
    CHECK_INT(out.status, 412);
    CHECK_INT(out.length, 0);
    CHECK_STR(out.content_range, "");
    /* it applies to every method */
    in = input_make("PUT");
    in.if_match = SLICE_LITERAL("\"x\"");
    CHECK_INT(evaluate(&in).status, 412);
}

static int status_with_if_unmodified_since(int64_t last_modified, const char *header, const char *if_match)
{
    struct http_conditional_input in = input_make("GET");
    in.last_modified = last_modified;
    in.if_unmodified_since = slice_from_cstr(header);
    in.if_match = slice_from_cstr(if_match);
    return evaluate(&in).status;
}

static void test_if_unmodified_since(void)
{
    CHECK_INT(status_with_if_unmodified_since(LAST_MODIFIED, LM_TEXT, ""), 200);
    CHECK_INT(status_with_if_unmodified_since(LAST_MODIFIED, LM_LATER, ""), 200);
    CHECK_INT(status_with_if_unmodified_since(LAST_MODIFIED, LM_EARLIER, ""), 412);
    CHECK_INT(status_with_if_unmodified_since(LAST_MODIFIED, "garbage", ""), 200);    /* invalid date: ignored */
    CHECK_INT(status_with_if_unmodified_since(-1, LM_EARLIER, ""), 200);              /* no Last-Modified: ignored */
    CHECK_INT(status_with_if_unmodified_since(LAST_MODIFIED, LM_EARLIER, ETAG), 200); /* If-Match present: ignored */
    CHECK_INT(status_with_if_unmodified_since(LAST_MODIFIED, LM_EARLIER, "\"x\""), 412);
}

static struct http_conditional_result ranged(const char *method, uint64_t size, const char *range, const char *if_range)
{
    struct http_conditional_input in = input_make(method);
    in.size = size;
    in.range = slice_from_cstr(range);
    in.if_range = slice_from_cstr(if_range);
    return evaluate(&in);
}

#define CHECK_RANGE(range_literal, expected_offset, expected_length, expected_content_range)                                       \
    do {                                                                                                                           \
        struct http_conditional_result range_result = ranged("GET", 12, range_literal, "");                                        \
        CHECK_INT(range_result.status, 206);                                                                                       \
        CHECK_INT(range_result.offset, expected_offset);                                                                           \
        CHECK_INT(range_result.length, expected_length);                                                                           \
        CHECK_STR(range_result.content_range, expected_content_range);                                                             \
    } while (0)

#define CHECK_RANGE_IGNORED(range_literal)                                                                                         \
    do {                                                                                                                           \
        struct http_conditional_result range_result = ranged("GET", 12, range_literal, "");                                        \
        CHECK_INT(range_result.status, 200);                                                                                       \
        CHECK_INT(range_result.offset, 0);                                                                                         \
        CHECK_INT(range_result.length, 12);                                                                                        \
        CHECK_STR(range_result.content_range, "");                                                                                 \
    } while (0)

static void test_ranges(void)
{
    CHECK_RANGE("bytes=0-4", 0, 5, "bytes 0-4/12");
    CHECK_RANGE("bytes=6-", 6, 6, "bytes 6-11/12");
    CHECK_RANGE("bytes=-3", 9, 3, "bytes 9-11/12");
    CHECK_RANGE("bytes=-12", 0, 12, "bytes 0-11/12");
    CHECK_RANGE("bytes=-100", 0, 12, "bytes 0-11/12");
    CHECK_RANGE("bytes=5-100", 5, 7, "bytes 5-11/12");
    CHECK_RANGE("bytes=11-11", 11, 1, "bytes 11-11/12");
    CHECK_RANGE("bytes=0-18446744073709551615", 0, 12, "bytes 0-11/12");
    CHECK_RANGE("BYTES=0-1", 0, 2, "bytes 0-1/12");
    CHECK_RANGE("Bytes=0-1", 0, 2, "bytes 0-1/12");
    CHECK_RANGE(" bytes=1-2 ", 1, 2, "bytes 1-2/12");
    CHECK_RANGE("bytes= 1-2", 1, 2, "bytes 1-2/12");

    CHECK_RANGE_IGNORED("bytes=0-1,3-4");
    CHECK_RANGE_IGNORED("bytes=0-1, 3-4");
    CHECK_RANGE_IGNORED("bytes=0-1,");
    CHECK_RANGE_IGNORED("bytes=5-2");
    CHECK_RANGE_IGNORED("bytes=abc");
    CHECK_RANGE_IGNORED("bytes=");
    CHECK_RANGE_IGNORED("bytes=-");
    CHECK_RANGE_IGNORED("bytes=1-2-3");
    CHECK_RANGE_IGNORED("bytes=+1-2");
    CHECK_RANGE_IGNORED("bytes=0 - 4");
    CHECK_RANGE_IGNORED("bytes=0-99999999999999999999999");
    CHECK_RANGE_IGNORED("bytes=-99999999999999999999999");
    CHECK_RANGE_IGNORED("items=0-1");
    CHECK_RANGE_IGNORED("bytes 0-1");
    CHECK_RANGE_IGNORED("bytes");
    CHECK_RANGE_IGNORED("   ");

    struct http_conditional_result out = ranged("GET", 12, "bytes=12-", "");
    CHECK_INT(out.status, 416);
    CHECK_INT(out.length, 0);
    CHECK_STR(out.content_range, "bytes */12");
    out = ranged("GET", 12, "bytes=100-200", "");
    CHECK_INT(out.status, 416);
    out = ranged("GET", 12, "bytes=-0", "");
    CHECK_INT(out.status, 416);
    CHECK_STR(out.content_range, "bytes */12");

    /* empty representation: a-/a-b unsatisfiable, a suffix gets the empty 200 */
    out = ranged("GET", 0, "bytes=0-", "");
    CHECK_INT(out.status, 416);
    CHECK_STR(out.content_range, "bytes */0");
    out = ranged("GET", 0, "bytes=0-0", "");
    CHECK_INT(out.status, 416);
    out = ranged("GET", 0, "bytes=-0", "");
    CHECK_INT(out.status, 416);
    out = ranged("GET", 0, "bytes=-5", "");
    CHECK_INT(out.status, 200);
    CHECK_INT(out.length, 0);
    CHECK_STR(out.content_range, "");

    /* sizes past 4 GiB */
    uint64_t big = (uint64_t)1 << 40;
    out = ranged("GET", big, "bytes=1099511627000-", "");
    CHECK_INT(out.status, 206);
    CHECK_INT(out.offset, 1099511627000LL);
    CHECK_INT(out.length, 776);
    CHECK_STR(out.content_range, "bytes 1099511627000-1099511627775/1099511627776");
    out = ranged("GET", big, "bytes=-1", "");
    CHECK_STR(out.content_range, "bytes 1099511627775-1099511627775/1099511627776");

    /* HEAD answers what GET would; other methods ignore Range */
    out = ranged("HEAD", 12, "bytes=0-4", "");
    CHECK_INT(out.status, 206);
    CHECK_INT(out.length, 5);
    CHECK_STR(out.content_range, "bytes 0-4/12");
    out = ranged("HEAD", 12, "bytes=50-", "");
    CHECK_INT(out.status, 416);
    out = ranged("POST", 12, "bytes=0-4", "");
    CHECK_INT(out.status, 200);
    CHECK_INT(out.length, 12);
    out = ranged("POST", 12, "bytes=50-", "");
    CHECK_INT(out.status, 200);

    /* a 304 wins over Range */
    struct http_conditional_input in = input_make("GET");
    in.if_none_match = SLICE_LITERAL(ETAG);
    in.range = SLICE_LITERAL("bytes=0-1");
    out = evaluate(&in);
    CHECK_INT(out.status, 304);
    CHECK_STR(out.content_range, "");
    CHECK_INT(out.length, 0);
    /* a failed If-None-Match lets the range through */
    in.if_none_match = SLICE_LITERAL("\"other\"");
    out = evaluate(&in);
    CHECK_INT(out.status, 206);
    CHECK_STR(out.content_range, "bytes 0-1/12");
}

/* Every "bytes=a-b", "bytes=a-" and "bytes=-n" for small sizes against a
 * model written from RFC 9110 §14.1.2 (plus the empty-suffix rule). */
static void test_ranges_exhaustive(void)
{
    char text[64];
    for (uint64_t size = 0; size <= 12; size++) {
        for (uint64_t a = 0; a <= 15; a++) {
            for (uint64_t b = 0; b <= 15; b++) {
                snprintf(text, sizeof text, "bytes=%" PRIu64 "-%" PRIu64, a, b);
                struct http_conditional_result out = ranged("GET", size, text, "");
                if (b < a) {
                    CHECK_INT(out.status, 200);
                } else if (a >= size) {
                    CHECK_INT(out.status, 416);
                } else {
                    uint64_t last = b >= size ? size - 1 : b;
                    CHECK_INT(out.status, 206);
                    CHECK_INT(out.offset, a);
                    CHECK_INT(out.length, last - a + 1);
                }
            }
            snprintf(text, sizeof text, "bytes=%" PRIu64 "-", a);
            struct http_conditional_result out = ranged("GET", size, text, "");
            CHECK_INT(out.status, a >= size ? 416 : 206);
            if (a < size)
                CHECK_INT(out.length, size - a);
            snprintf(text, sizeof text, "bytes=-%" PRIu64, a);
            out = ranged("GET", size, text, "");
            if (a == 0) {
                CHECK_INT(out.status, 416);
            } else if (size == 0) {
                CHECK_INT(out.status, 200);
            } else {
                uint64_t length = a > size ? size : a;
                CHECK_INT(out.status, 206);
                CHECK_INT(out.offset, size - length);
                CHECK_INT(out.length, length);
            }
        }
    }
}

static int status_with_if_range(const char *etag, int64_t last_modified, const char *range, const char *if_range)
{
    struct http_conditional_input in = input_make("GET");
    in.etag = slice_from_cstr(etag);
    in.last_modified = last_modified;
    in.range = slice_from_cstr(range);
    in.if_range = slice_from_cstr(if_range);
    return evaluate(&in).status;
}

static void test_if_range(void)
{
    CHECK_INT(status_with_if_range(ETAG, LAST_MODIFIED, "bytes=0-4", ETAG), 206);
    CHECK_INT(status_with_if_range(ETAG, LAST_MODIFIED, "bytes=0-4", " " ETAG " "), 206);
    CHECK_INT(status_with_if_range(ETAG, LAST_MODIFIED, "bytes=0-4", "\"other\""), 200);
    CHECK_INT(status_with_if_range(ETAG, LAST_MODIFIED, "bytes=0-4", "W/" ETAG), 200); /* weak never matches */
    CHECK_INT(status_with_if_range("W/" ETAG, LAST_MODIFIED, "bytes=0-4", ETAG), 200); /* nor does a weak tag of ours */
    CHECK_INT(status_with_if_range("W/" ETAG, LAST_MODIFIED, "bytes=0-4", "W/" ETAG), 200);
    CHECK_INT(status_with_if_range("", LAST_MODIFIED, "bytes=0-4", ETAG), 200);
    CHECK_INT(status_with_if_range(ETAG, LAST_MODIFIED, "bytes=0-4", LM_TEXT), 206);
    CHECK_INT(status_with_if_range(ETAG, LAST_MODIFIED, "bytes=0-4", LM_LATER), 200); /* exact match only */
    CHECK_INT(status_with_if_range(ETAG, LAST_MODIFIED, "bytes=0-4", LM_EARLIER), 200);
    CHECK_INT(status_with_if_range(ETAG, -1, "bytes=0-4", LM_TEXT), 200); /* no Last-Modified */
    CHECK_INT(status_with_if_range(ETAG, LAST_MODIFIED, "bytes=0-4", "garbage"), 200);
    /* a failing If-Range also hides an unsatisfiable range */
    CHECK_INT(status_with_if_range(ETAG, LAST_MODIFIED, "bytes=100-", "\"other\""), 200);
    CHECK_INT(status_with_if_range(ETAG, LAST_MODIFIED, "bytes=100-", ETAG), 416);
}

int main(void)
{
    UNIT_RUN(test_no_conditionals);
    UNIT_RUN(test_if_none_match);
    UNIT_RUN(test_if_modified_since);
    UNIT_RUN(test_if_match);
    UNIT_RUN(test_if_unmodified_since);
    UNIT_RUN(test_ranges);
    UNIT_RUN(test_ranges_exhaustive);
    UNIT_RUN(test_if_range);
    return unit_summary();
}
