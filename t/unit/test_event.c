/* test_event.c — hooks/event.c and hooks/rules.c: encoding the spec's example
 * events, round trips, result parsing (status forms, missing keys) and one
 * failing and one passing case per validation rule.
 */
#include "../../hooks/event.h"

#include "unit.h"
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <stdlib.h>

static struct arena arena;

/* The spec §1.8 examples, minified. */
static const char viewer_request_event[] =
    "{\"Records\":[{\"cf\":{\"config\":{\"distributionDomainName\":\"d111111abcdef8.cloudfront.net\",\"distributionId\":"
    "\"EDFDVBD6EXAMPLE\",\"eventType\":\"viewer-request\",\"requestId\":\"4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_"
    "1oF26ClkoUSEQ==\"},\"request\":{\"clientIp\":\"203.0.113.178\",\"headers\":{\"host\":[{\"key\":\"Host\",\"value\":"
    "\"d111111abcdef8.cloudfront.net\"}],\"user-agent\":[{\"key\":\"User-Agent\",\"value\":\"curl/7.66.0\"}],\"accept\":[{"
    "\"key\":\"accept\",\"value\":\"*/*\"}]},\"method\":\"GET\",\"querystring\":\"\",\"uri\":\"/\"}}}]}";
static const char viewer_request_body_event[] =
    "{\"Records\":[{\"cf\":{\"config\":{\"distributionDomainName\":\"d111111abcdef8.cloudfront.net\",\"distributionId\":"
    "\"EDFDVBD6EXAMPLE\",\"eventType\":\"viewer-request\",\"requestId\":\"MRVMF7KydIvxMWfJIglgwHQwZsbG2IhRJ07sn9AkKUFSHS9"
    "EXAMPLE==\"},\"request\":{\"body\":{\"inputTruncated\":false,\"action\":\"read-only\",\"encoding\":\"base64\",\"data\":"
    "\"eyJ1c2VybmFtZSI6IkxhbWJkYUBFZGdlIiwiY29tbWVudCI6IlRoaXMgaXMgcmVxdWVzdCBib2R5In0=\"},\"clientIp\":\"2001:0db8:85a3:"
    "0:0:8a2e:0370:7334\",\"headers\":{\"host\":[{\"key\":\"Host\",\"value\":\"d111111abcdef8.cloudfront.net\"}],\"content-"
    "type\":[{\"key\":\"Content-Type\",\"value\":\"application/x-www-form-urlencoded\"}]},\"method\":\"POST\","
    "\"querystring\":\"size=large\",\"uri\":\"/form\"}}}]}";
static const char origin_request_event[] =
    "{\"Records\":[{\"cf\":{\"config\":{\"distributionDomainName\":\"d111111abcdef8.cloudfront.net\",\"distributionId\":"
    "\"EDFDVBD6EXAMPLE\",\"eventType\":\"origin-request\",\"requestId\":\"4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_"
    "1oF26ClkoUSEQ==\"},\"request\":{\"clientIp\":\"203.0.113.178\",\"headers\":{\"x-forwarded-for\":[{\"key\":\"X-"
    "Forwarded-For\",\"value\":\"203.0.113.178\"}],\"user-agent\":[{\"key\":\"User-Agent\",\"value\":\"Amazon "
    "CloudFront\"}],\"via\":[{\"key\":\"Via\",\"value\":\"2.0 2afae0d44e2540f472c0635ab62c232b.cloudfront.net "
    "(CloudFront)\"}],\"host\":[{\"key\":\"Host\",\"value\":\"example.org\"}],\"cache-control\":[{\"key\":\"Cache-"
    "Control\",\"value\":\"no-cache, cf-no-cache\"}]},\"method\":\"GET\",\"origin\":{\"custom\":{\"customHeaders\":{},"
    "\"domainName\":\"example.org\",\"keepaliveTimeout\":5,\"path\":\"\",\"port\":443,\"protocol\":\"https\","
    "\"readTimeout\":30,\"sslProtocols\":[\"TLSv1\",\"TLSv1.1\",\"TLSv1.2\"]}},\"querystring\":\"\",\"uri\":\"/\"}}}]}";
static const char origin_request_s3_event[] =
    "{\"Records\":[{\"cf\":{\"config\":{\"distributionDomainName\":\"d111111abcdef8.cloudfront.net\",\"distributionId\":"
    "\"EDFDVBD6EXAMPLE\",\"eventType\":\"origin-request\",\"requestId\":\"4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_"
    "1oF26ClkoUSEQ==\"},\"request\":{\"clientIp\":\"203.0.113.178\",\"headers\":{\"host\":[{\"key\":\"Host\",\"value\":"
    "\"my-bucket.s3.amazonaws.com\"}],\"x-forwarded-for\":[{\"key\":\"X-Forwarded-For\",\"value\":\"203.0.113.178\"}],"
    "\"user-agent\":[{\"key\":\"User-Agent\",\"value\":\"Amazon CloudFront\"}]},\"method\":\"GET\",\"origin\":{\"s3\":{"
    "\"authMethod\":\"none\",\"customHeaders\":{\"x-origin-verify\":[{\"key\":\"X-Origin-Verify\",\"value\":\"secret\"}]},"
    "\"domainName\":\"my-bucket.s3.amazonaws.com\",\"path\":\"\",\"region\":\"\"}},\"querystring\":\"\",\"uri\":\"/index."
    "html\"}}}]}";
static const char origin_response_event[] =
    "{\"Records\":[{\"cf\":{\"config\":{\"distributionDomainName\":\"d111111abcdef8.cloudfront.net\",\"distributionId\":"
    "\"EDFDVBD6EXAMPLE\",\"eventType\":\"origin-response\",\"requestId\":\"4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_"
    "1oF26ClkoUSEQ==\"},\"request\":{\"clientIp\":\"203.0.113.178\",\"headers\":{\"host\":[{\"key\":\"Host\",\"value\":"
    "\"example.org\"}]},\"method\":\"GET\",\"origin\":{\"custom\":{\"customHeaders\":{},\"domainName\":\"example.org\","
    "\"keepaliveTimeout\":5,\"path\":\"\",\"port\":443,\"protocol\":\"https\",\"readTimeout\":30,\"sslProtocols\":[\"TLSv1"
    "\",\"TLSv1.1\",\"TLSv1.2\"]}},\"querystring\":\"\",\"uri\":\"/\"},\"response\":{\"headers\":{\"date\":[{\"key\":\"Date"
    "\",\"value\":\"Mon, 13 Jan 2020 20:12:38 GMT\"}],\"server\":[{\"key\":\"Server\",\"value\":\"ExampleCustomOriginServer"
    "\"}],\"content-type\":[{\"key\":\"Content-Type\",\"value\":\"text/html; charset=utf-8\"}],\"content-length\":[{\"key\":"
    "\"Content-Length\",\"value\":\"9593\"}]},\"status\":\"200\",\"statusDescription\":\"OK\"}}}]}";
static const char viewer_response_event[] =
    "{\"Records\":[{\"cf\":{\"config\":{\"distributionDomainName\":\"d111111abcdef8.cloudfront.net\",\"distributionId\":"
    "\"EDFDVBD6EXAMPLE\",\"eventType\":\"viewer-response\",\"requestId\":\"4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_"
    "1oF26ClkoUSEQ==\"},\"request\":{\"clientIp\":\"203.0.113.178\",\"headers\":{\"host\":[{\"key\":\"Host\",\"value\":"
    "\"d111111abcdef8.cloudfront.net\"}],\"user-agent\":[{\"key\":\"User-Agent\",\"value\":\"curl/7.66.0\"}],\"accept\":[{"
    "\"key\":\"accept\",\"value\":\"*/*\"}]},\"method\":\"GET\",\"querystring\":\"\",\"uri\":\"/\"},\"response\":{"
    "\"headers\":{\"date\":[{\"key\":\"Date\",\"value\":\"Mon, 13 Jan 2020 20:14:56 GMT\"}],\"server\":[{\"key\":\"Server\","
    "\"value\":\"ExampleCustomOriginServer\"}],\"age\":[{\"key\":\"Age\",\"value\":\"2402\"}],\"content-type\":[{\"key\":"
    "\"Content-Type\",\"value\":\"text/html; charset=utf-8\"}],\"content-length\":[{\"key\":\"Content-Length\",\"value\":"
    "\"9593\"}]},\"status\":\"200\",\"statusDescription\":\"OK\"}}}]}";

static const char *const all_events[] = {viewer_request_event,    viewer_request_body_event, origin_request_event,
                                         origin_request_s3_event, origin_response_event,     viewer_response_event};

static struct event_input parse_input(const char *json)
{
    struct event_input input;
    struct event_error error = {0};
    bool ok = event_parse_event(json, strlen(json), &arena, &input, &error);
    if (!ok)
        fprintf(stderr, "parse_input: %s %s\n", error.field, error.rule);
    VERGE_ASSERT(ok);
    return input;
}

/* Encoding a parsed example gives back exactly the example. */
static void test_encode_examples(void)
{
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(all_events); i++) {
        struct event_input input = parse_input(all_events[i]);
        struct bytebuf out = {0};
        event_encode(&input, &out);
        bytebuf_append(&out, "", 1);
        CHECK_STR(out.data, all_events[i]);
        bytebuf_free(&out);
    }
}

/* A model built in C → JSON → model gives the same values. */
static void test_encode_round_trip(void)
{
    struct event_input input = {.trigger = EVENT_ORIGIN_RESPONSE};
    input.config.distribution_domain_name = SLICE_LITERAL("d.example");
    input.config.distribution_id = SLICE_LITERAL("E1");
    input.config.request_id = SLICE_LITERAL("req==");
    input.request.client_ip = SLICE_LITERAL("::1");
    input.request.method = SLICE_LITERAL("GET");
    input.request.uri = SLICE_LITERAL("/a\"b\\c");
    input.request.querystring = SLICE_LITERAL("x=1&y=\xc3\xa9");
    event_headers_add(&arena, &input.request.headers, SLICE_LITERAL("Set-Cookie"), SLICE_LITERAL("a=1"));
    event_headers_add(&arena, &input.request.headers, SLICE_LITERAL("set-cookie"), SLICE_LITERAL("b=2"));
    input.request.has_origin = true;
    input.request.origin = (struct event_origin){
        .kind = EVENT_ORIGIN_S3, .domain_name = SLICE_LITERAL("b.s3.amazonaws.com"), .auth_method = SLICE_LITERAL("none")};
    input.response.status = 404;
    input.response.status_description = SLICE_LITERAL("Not Found");
    event_headers_add(&arena, &input.response.headers, SLICE_LITERAL("Age"), SLICE_LITERAL("3"));
    struct bytebuf out = {0};
    event_encode(&input, &out);
    struct event_input back = {0};
    struct event_error error = {0};
    CHECK(event_parse_event(out.data, out.len, &arena, &back, &error));
    CHECK_INT(back.trigger, EVENT_ORIGIN_RESPONSE);
    CHECK(slice_equal(back.config.request_id, input.config.request_id));
    CHECK(slice_equal(back.request.uri, input.request.uri));
    CHECK(slice_equal(back.request.querystring, input.request.querystring));
    CHECK_INT(back.request.headers.count, 1);
    CHECK_INT(back.request.headers.items[0].value_count, 2);
    CHECK(slice_equal(back.request.headers.items[0].name, SLICE_LITERAL("set-cookie")));
    CHECK(slice_equal(back.request.headers.items[0].values[1].value, SLICE_LITERAL("b=2")));
    CHECK(slice_equal(back.request.headers.items[0].values[0].key, SLICE_LITERAL("Set-Cookie")));
    CHECK(back.request.has_origin && back.request.origin.kind == EVENT_ORIGIN_S3);
    CHECK(slice_equal(back.request.origin.domain_name, input.request.origin.domain_name));
    CHECK_INT(back.response.status, 404);
    CHECK(slice_equal(back.response.status_description, SLICE_LITERAL("Not Found")));
    /* a second encode of the parsed model is byte-identical */
    struct bytebuf again = {0};
    event_encode(&back, &again);
    CHECK(again.len == out.len && memcmp(again.data, out.data, out.len) == 0);
    bytebuf_free(&out);
    bytebuf_free(&again);
    /* the trigger decides what is emitted: no origin or response at viewer-request */
    input.trigger = EVENT_VIEWER_REQUEST;
    struct bytebuf viewer = {0};
    event_encode(&input, &viewer);
    bytebuf_append(&viewer, "", 1);
    CHECK(strstr(viewer.data, "\"origin\"") == NULL && strstr(viewer.data, "\"response\"") == NULL);
    bytebuf_free(&viewer);
}

static void test_parse_result_forms(void)
{
    struct event_result result;
    struct event_error error = {0};
    const char *s = "{\"status\":\"302\",\"headers\":{\"location\":[{\"value\":\"/x\"}],\"x-a-b\":[{\"value\":\"1\"}]}}";
    CHECK(event_parse_result(EVENT_VIEWER_REQUEST, s, strlen(s), &arena, &result, &error));
    CHECK_INT(result.kind, EVENT_RESULT_RESPONSE);
    CHECK_INT(result.response.status, 302);
    CHECK(slice_equal(result.response.headers.items[0].values[0].key, SLICE_LITERAL("Location")));
    CHECK(slice_equal(result.response.headers.items[1].values[0].key, SLICE_LITERAL("X-A-B")));
    s = "{\"status\":301}";
    CHECK(event_parse_result(EVENT_ORIGIN_REQUEST, s, strlen(s), &arena, &result, &error));
    CHECK_INT(result.response.status, 301);
    s = "{\"status\":\"3o1\"}";
    CHECK(!event_parse_result(EVENT_ORIGIN_REQUEST, s, strlen(s), &arena, &result, &error));
    CHECK_STR(error.field, "response.status");
    s = "{\"status\":true}";
    CHECK(!event_parse_result(EVENT_ORIGIN_REQUEST, s, strlen(s), &arena, &result, &error));
    s = "{\"uri\":\"/\",\"headers\":{}}";
    CHECK(event_parse_result(EVENT_ORIGIN_REQUEST, s, strlen(s), &arena, &result, &error));
    CHECK_INT(result.kind, EVENT_RESULT_REQUEST);
    CHECK(!result.request.has_querystring);
    CHECK(!event_parse_result(EVENT_ORIGIN_RESPONSE, s, strlen(s), &arena, &result, &error));
    CHECK_STR(error.rule, "response object required");
    s = "{\"headers\":{}}";
    CHECK(!event_parse_result(EVENT_VIEWER_REQUEST, s, strlen(s), &arena, &result, &error));
    CHECK_STR(error.field, "request.uri");
    CHECK_STR(error.rule, "required field missing");
    s = "{\"uri\":\"/\",\"headers\":{\"a\":[{\"key\":\"A\",\"value\":1}]}}";
    CHECK(!event_parse_result(EVENT_VIEWER_REQUEST, s, strlen(s), &arena, &result, &error));
    CHECK_STR(error.field, "request.headers[\"a\"][0].value");
    CHECK_STR(error.rule, "header value must be a string");
    s = "not json";
    CHECK(!event_parse_result(EVENT_VIEWER_REQUEST, s, strlen(s), &arena, &result, &error));
    CHECK_STR(error.rule, "JSON output is not parsable");
    s = "[1]";
    CHECK(!event_parse_result(EVENT_VIEWER_REQUEST, s, strlen(s), &arena, &result, &error));
    CHECK_STR(error.rule, "JSON output must be an object");
    char deep[200];
    memset(deep, '[', sizeof deep);
    CHECK(!event_parse_result(EVENT_VIEWER_REQUEST, deep, sizeof deep, &arena, &result, &error));
    s = "{\"uri\":\"/\",\"headers\":{},\"body\":{\"action\":\"append\"}}";
    CHECK(!event_parse_result(EVENT_VIEWER_REQUEST, s, strlen(s), &arena, &result, &error));
    CHECK_STR(error.rule, "action must be read-only or replace");
    s = "{\"uri\":\"/\",\"headers\":{},\"body\":{\"action\":\"replace\",\"encoding\":\"hex\"}}";
    CHECK(!event_parse_result(EVENT_VIEWER_REQUEST, s, strlen(s), &arena, &result, &error));
    CHECK_STR(error.rule, "encoding must be text or base64");
    s = "{\"uri\":\"/\",\"headers\":{},\"origin\":{\"custom\":{},\"s3\":{}}}";
    CHECK(!event_parse_result(EVENT_ORIGIN_REQUEST, s, strlen(s), &arena, &result, &error));
    CHECK_STR(error.rule, "origin must have exactly one of custom or s3");
}

/* Parses `result` at input's trigger and validates it: NULL when valid, else the rule. */
static const char *check_result(const char *input_json, const char *result_json, char *field_out)
{
    struct event_input input = parse_input(input_json);
    struct event_result result;
    struct event_error error = {0};
    if (!event_parse_result(input.trigger, result_json, strlen(result_json), &arena, &result, &error)) {
        fprintf(stderr, "unexpected parse failure: %s: %s\n", error.field, error.rule);
        return "PARSE";
    }
    if (event_validate_result(&input, &result, &error))
        return NULL;
    CHECK_INT(error.trigger, input.trigger);
    if (field_out)
        strcpy(field_out, error.field);
    return error.rule;
}

#define VALID(event, json) CHECK(check_result(event, json, NULL) == NULL)
#define INVALID(event, json, rule, field)                                                                                          \
    do {                                                                                                                           \
        char f[160] = "";                                                                                                          \
        const char *r = check_result(event, json, f);                                                                              \
        CHECK_STR(r, rule);                                                                                                        \
        CHECK_STR(f, field);                                                                                                       \
    } while (0)

#define VR_HOST "\"host\":[{\"key\":\"Host\",\"value\":\"d111111abcdef8.cloudfront.net\"}]"
#define OR_KEEP "\"via\":[{\"key\":\"Via\",\"value\":\"2.0 2afae0d44e2540f472c0635ab62c232b.cloudfront.net (CloudFront)\"}]"
#define OR_ORIGIN                                                                                                                  \
    "\"origin\":{\"custom\":{\"customHeaders\":{},\"domainName\":\"example.org\",\"keepaliveTimeout\":5,\"path\":\"\","            \
    "\"port\":443,\"protocol\":\"https\",\"readTimeout\":30,\"sslProtocols\":[\"TLSv1.2\"]}}"

/* event_encode_result(trigger, parse(json)) as a C string in the arena; NULL when json does not parse. */
static const char *result_json(enum event_trigger trigger, const char *json)
{
    struct event_result result;
    struct event_error error = {0};
    if (!event_parse_result(trigger, json, strlen(json), &arena, &result, &error)) {
        fprintf(stderr, "result_json: %s: %s\n", error.field, error.rule);
        return NULL;
    }
    struct bytebuf out = {0};
    event_encode_result(trigger, &result, &out);
    const char *text = arena_strndup(&arena, out.data, out.len);
    bytebuf_free(&out);
    return text;
}

/* A result goes back to JSON as verge read it: keys filled in, status a
 * string, fields the function left out left out, the event's key order. */
static void test_encode_result(void)
{
    /* a request with only the required fields; an omitted key is capitalised */
    CHECK_STR(result_json(EVENT_VIEWER_REQUEST, "{\"uri\":\"/a\",\"headers\":{\"x-a-b\":[{\"value\":\"1\"}]}}"),
              "{\"headers\":{\"x-a-b\":[{\"key\":\"X-A-B\",\"value\":\"1\"}]},\"uri\":\"/a\"}");
    /* every request field, in the event's order, and a body at a request trigger */
    const char *full = "{\"uri\":\"/u\",\"querystring\":\"q=1\",\"method\":\"POST\",\"clientIp\":\"::1\","
                       "\"headers\":{\"a\":[{\"key\":\"A\",\"value\":\"1\"},{\"key\":\"a\",\"value\":\"2\"}]},"
                       "\"body\":{\"action\":\"replace\",\"encoding\":\"text\",\"data\":\"hi\"}}";
    CHECK_STR(result_json(EVENT_VIEWER_REQUEST, full),
              "{\"body\":{\"inputTruncated\":false,\"action\":\"replace\",\"encoding\":\"text\",\"data\":\"hi\"},"
              "\"clientIp\":\"::1\",\"headers\":{\"a\":[{\"key\":\"A\",\"value\":\"1\"},{\"key\":\"a\",\"value\":"
              "\"2\"}]},\"method\":\"POST\",\"querystring\":\"q=1\",\"uri\":\"/u\"}");
    /* the origin at an origin trigger */
    CHECK_STR(result_json(EVENT_ORIGIN_REQUEST, "{\"uri\":\"/\",\"headers\":{}," OR_ORIGIN "}"),
              "{\"headers\":{}," OR_ORIGIN ",\"uri\":\"/\"}");
    /* a generated response: a number status becomes a string, bodyEncoding defaults to text */
    CHECK_STR(result_json(EVENT_VIEWER_REQUEST, "{\"status\":302,\"headers\":{\"location\":[{\"value\":\"/x\"}]},"
                                                "\"body\":\"moved\"}"),
              "{\"body\":\"moved\",\"bodyEncoding\":\"text\",\"headers\":{\"location\":[{\"key\":\"Location\","
              "\"value\":\"/x\"}]},\"status\":\"302\"}");
    CHECK_STR(result_json(EVENT_ORIGIN_REQUEST, "{\"status\":\"200\",\"body\":\"aGk=\",\"bodyEncoding\":\"base64\"}"),
              "{\"body\":\"aGk=\",\"bodyEncoding\":\"base64\",\"headers\":{},\"status\":\"200\"}");
    /* a response at a response trigger, with its description */
    CHECK_STR(result_json(EVENT_ORIGIN_RESPONSE, "{\"statusDescription\":\"Gone\",\"status\":\"410\",\"headers\":{}}"),
              "{\"headers\":{},\"status\":\"410\",\"statusDescription\":\"Gone\"}");
    /* what the encoder writes parses back to the same JSON */
    const char *again = result_json(EVENT_VIEWER_REQUEST, full);
    CHECK(again != NULL && strcmp(result_json(EVENT_VIEWER_REQUEST, again), again) == 0);
    /* header changes merged into the whole map (what verge invoke prints) */
    struct event_input input = parse_input(viewer_response_event);
    struct event_result result;
    struct event_error error = {0};
    const char *changes = "{\"status\":\"200\",\"headers\":{\"age\":[],\"x-new\":[{\"value\":\"1\"}]}}";
    CHECK(event_parse_result(EVENT_VIEWER_RESPONSE, changes, strlen(changes), &arena, &result, &error));
    result.response.headers_are_changes = true;
    event_result_merge_header_changes(&input, &result, &arena);
    struct bytebuf out = {0};
    event_encode_result(EVENT_VIEWER_RESPONSE, &result, &out);
    bytebuf_append(&out, "", 1);
    CHECK(strstr(out.data, "\"age\"") == NULL && strstr(out.data, "\"date\":[{\"key\":\"Date\"") != NULL &&
          strstr(out.data, "\"x-new\":[{\"key\":\"X-New\",\"value\":\"1\"}]") != NULL);
    bytebuf_free(&out);
}

static void test_validate_headers(void)
{
    const char *vr = viewer_request_event;
    VALID(vr, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"x-new\":[{\"value\":\"1\"}]}}");
    INVALID(vr, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"connection\":[{\"value\":\"close\"}]}}", "disallowed header",
            "request.headers[\"connection\"]");
    INVALID(vr, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"x-amz-cf-pop\":[{\"value\":\"x\"}]}}", "disallowed header",
            "request.headers[\"x-amz-cf-pop\"]");
    INVALID(vr, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"x-edge-foo\":[{\"value\":\"x\"}]}}", "disallowed header",
            "request.headers[\"x-edge-foo\"]");
    /* read-only: change, delete, add */
    INVALID(vr, "{\"uri\":\"/\",\"headers\":{\"host\":[{\"value\":\"evil\"}]}}", "read-only header", "request.headers[\"host\"]");
    INVALID(vr, "{\"uri\":\"/\",\"headers\":{}}", "read-only header", "request.headers[\"host\"]");
    INVALID(vr, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"via\":[{\"value\":\"x\"}]}}", "read-only header",
            "request.headers[\"via\"]");
    /* host is writable at origin-request, via is not */
    const char *orq = origin_request_event;
    VALID(orq, "{\"uri\":\"/\",\"headers\":{" OR_KEEP ",\"host\":[{\"value\":\"other.example\"}]}," OR_ORIGIN "}");
    INVALID(orq, "{\"uri\":\"/\",\"headers\":{}," OR_ORIGIN "}", "read-only header", "request.headers[\"via\"]");
    INVALID(orq, "{\"uri\":\"/\",\"headers\":{" OR_KEEP ",\"if-none-match\":[{\"value\":\"x\"}]}," OR_ORIGIN "}",
            "read-only header", "request.headers[\"if-none-match\"]");
    /* CloudFront-Viewer-Country may not be added at viewer-request */
    INVALID(vr, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"cloudfront-viewer-country\":[{\"value\":\"US\"}]}}",
            "header may not be added at viewer-request", "request.headers[\"cloudfront-viewer-country\"]");
    VALID(orq, "{\"uri\":\"/\",\"headers\":{" OR_KEEP ",\"cloudfront-viewer-country\":[{\"value\":\"US\"}]}," OR_ORIGIN "}");
    /* shape */
    INVALID(vr, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"X-Up\":[{\"value\":\"1\"}]}}", "header name must be lower case",
            "request.headers[\"X-Up\"]");
    INVALID(vr, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"x-a\":[{\"key\":\"X-B\",\"value\":\"1\"}]}}",
            "header key must match the name", "request.headers[\"x-a\"][0].key");
    VALID(vr, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"x-a\":[{\"key\":\"x-A\",\"value\":\"1\"}]}}");
    INVALID(vr, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"x a\":[{\"value\":\"1\"}]}}", "header name must be a token",
            "request.headers[\"x a\"]");
    INVALID(vr, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"x-a\":[{\"value\":\"1\\r\\nx: y\"}]}}",
            "header value must not contain CR, LF or NUL", "request.headers[\"x-a\"][0].value");
    /* response headers */
    const char *ors = origin_response_event;
    VALID(ors, "{\"status\":\"200\",\"headers\":{\"x-new\":[{\"value\":\"1\"}]}}");
    INVALID(ors, "{\"status\":\"200\",\"headers\":{\"transfer-encoding\":[{\"value\":\"chunked\"}]}}", "read-only header",
            "response.headers[\"transfer-encoding\"]");
    INVALID(ors, "{\"status\":\"200\",\"headers\":{\"x-cache\":[{\"value\":\"HIT\"}]}}", "disallowed header",
            "response.headers[\"x-cache\"]");
    const char *vrs = viewer_response_event;
    VALID(vrs, "{\"status\":\"200\",\"headers\":{\"x-new\":[{\"value\":\"1\"}]}}");
    INVALID(vrs, "{\"status\":\"200\",\"headers\":{\"warning\":[{\"value\":\"199 x\"}]}}", "read-only header",
            "response.headers[\"warning\"]");
    INVALID(vrs, "{\"status\":\"200\",\"headers\":{\"via\":[{\"value\":\"1.1 x\"}]}}", "read-only header",
            "response.headers[\"via\"]");
}

/* Headers the proxy keeps out of events: exact names and prefixes in any
 * case, and a prefix matches names of any length (a long X-Amz-Cf-* name left
 * in the event would come back and fail validation as a disallowed header). */
static void test_header_hidden(void)
{
    CHECK(event_header_hidden(SLICE_LITERAL("connection")));
    CHECK(event_header_hidden(SLICE_LITERAL("Keep-Alive")));
    CHECK(event_header_hidden(SLICE_LITERAL("X-Amz-Cf-Pop")));
    CHECK(event_header_hidden(SLICE_LITERAL("x-edge-location")));
    CHECK(!event_header_hidden(SLICE_LITERAL("x-amz-cf")));    /* shorter than the prefix */
    CHECK(!event_header_hidden(SLICE_LITERAL("connections"))); /* an exact name, not a prefix */
    CHECK(!event_header_hidden(SLICE_LITERAL("x-custom-header")));
    CHECK(!event_header_hidden(SLICE_LITERAL("")));
    char name[200];
    for (size_t len = 60; len < sizeof name; len++) {
        memcpy(name, "X-Amz-Cf-", 9);
        memset(name + 9, 'y', len - 9);
        CHECK(event_header_hidden((slice_t){name, len}));
        memcpy(name, "X-Amy-Cf-", 9);
        CHECK(!event_header_hidden((slice_t){name, len}));
    }
}

/* Header names, keys and values of 8 bytes and more are checked a word at a
 * time: the byte that breaks a rule at the start, inside and at the end of a
 * word, and in the last (overlapping) word. */
static void test_validate_long_headers(void)
{
    const char *vr = viewer_request_event;
    static const size_t positions[] = {0, 7, 8, 15, 16, 22};
    for (size_t i = 0; i < sizeof positions / sizeof positions[0]; i++) {
        size_t at = positions[i];
        char name[24], result[256], field[64];
        memset(name, 'a', 23);
        name[23] = '\0';
        /* an upper-case name: refused */
        name[at] = 'A';
        snprintf(result, sizeof result, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"%s\":[{\"value\":\"1\"}]}}", name);
        snprintf(field, sizeof field, "request.headers[\"%s\"]", name);
        INVALID(vr, result, "header name must be lower case", field);
        /* the same as its key: accepted; a key that differs in one letter: refused */
        name[at] = 'a';
        char key[24];
        memcpy(key, name, sizeof key);
        key[at] = 'A';
        snprintf(result, sizeof result, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"%s\":[{\"key\":\"%s\",\"value\":\"1\"}]}}", name,
                 key);
        VALID(vr, result);
        key[at] = 'b';
        snprintf(result, sizeof result, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"%s\":[{\"key\":\"%s\",\"value\":\"1\"}]}}", name,
                 key);
        snprintf(field, sizeof field, "request.headers[\"%s\"][0].key", name);
        INVALID(vr, result, "header key must match the name", field);
        /* a value with a CR at that position: refused; without: accepted */
        char value[32];
        memset(value, 'v', 23);
        value[23] = '\0';
        snprintf(result, sizeof result, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"%s\":[{\"value\":\"%s\"}]}}", name, value);
        VALID(vr, result);
        memcpy(value + at, "\\r", 2); /* JSON \r: one CR byte at `at` once parsed */
        memset(value + at + 2, 'v', 23 - at - 1);
        value[24] = '\0';
        snprintf(result, sizeof result, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"%s\":[{\"value\":\"%s\"}]}}", name, value);
        snprintf(field, sizeof field, "request.headers[\"%s\"][0].value", name);
        INVALID(vr, result, "header value must not contain CR, LF or NUL", field);
    }
}

static void test_validate_request_fields(void)
{
    const char *vr = viewer_request_event;
    VALID(vr,
          "{\"clientIp\":\"203.0.113.178\",\"method\":\"GET\",\"uri\":\"/x\",\"querystring\":\"a=1\",\"headers\":{" VR_HOST "}}");
    INVALID(vr, "{\"clientIp\":\"1.2.3.4\",\"uri\":\"/\",\"headers\":{" VR_HOST "}}", "read-only field changed",
            "request.clientIp");
    INVALID(vr, "{\"method\":\"POST\",\"uri\":\"/\",\"headers\":{" VR_HOST "}}", "read-only field changed", "request.method");
    INVALID(vr, "{\"uri\":\"x\",\"headers\":{" VR_HOST "}}", "uri must start with '/'", "request.uri");
    INVALID(vr, "{\"uri\":\"/a b\",\"headers\":{" VR_HOST "}}", "uri must not contain spaces or control characters", "request.uri");
    INVALID(vr, "{\"uri\":\"/\",\"querystring\":\"a b\",\"headers\":{" VR_HOST "}}",
            "querystring must not contain spaces, control characters or '#'", "request.querystring");
    INVALID(vr, "{\"uri\":\"/\",\"querystring\":\"a#b\",\"headers\":{" VR_HOST "}}",
            "querystring must not contain spaces, control characters or '#'", "request.querystring");
    /* uri + '?' + qs < 8192 */
    static char json[10000];
    char uri[8200];
    memset(uri, 'a', sizeof uri);
    uri[0] = '/';
    snprintf(json, sizeof json, "{\"uri\":\"%.8189s\",\"querystring\":\"q\",\"headers\":{" VR_HOST "}}", uri);
    VALID(vr, json); /* 8189 + 2 = 8191 */
    snprintf(json, sizeof json, "{\"uri\":\"%.8190s\",\"querystring\":\"q\",\"headers\":{" VR_HOST "}}", uri);
    INVALID(vr, json, "uri and querystring must be shorter than 8192 characters", "request.uri");
}

static void test_validate_request_body(void)
{
    const char *vr = viewer_request_body_event;
#define VRB_HEADERS                                                                                                                \
    "\"headers\":{" VR_HOST ",\"content-type\":[{\"key\":\"Content-Type\",\"value\":\"application/x-www-form-urlencoded\"}]}"
    VALID(vr, "{\"uri\":\"/form\"," VRB_HEADERS ",\"body\":{\"action\":\"replace\",\"encoding\":\"text\",\"data\":\"x\"}}");
    VALID(vr, "{\"uri\":\"/form\"," VRB_HEADERS ",\"body\":{\"action\":\"replace\",\"encoding\":\"base64\",\"data\":\"aGk=\"}}");
    INVALID(vr, "{\"uri\":\"/form\"," VRB_HEADERS ",\"body\":{\"action\":\"replace\",\"encoding\":\"base64\",\"data\":\"a*k=\"}}",
            "body data must be valid base64", "request.body.data");
    /* read-only ignores the data */
    VALID(vr, "{\"uri\":\"/form\"," VRB_HEADERS ",\"body\":{\"action\":\"read-only\",\"encoding\":\"base64\",\"data\":\"!\"}}");
    size_t n = EVENT_VIEWER_BODY_LIMIT;
    char *json = malloc(2 * n + 400);
    char *data = malloc(2 * n);
    memset(data, 'x', 2 * n - 1);
    data[2 * n - 1] = '\0';
    sprintf(json, "{\"uri\":\"/form\"," VRB_HEADERS ",\"body\":{\"action\":\"replace\",\"encoding\":\"text\",\"data\":\"%.*s\"}}",
            (int)n, data);
    VALID(vr, json);
    sprintf(json, "{\"uri\":\"/form\"," VRB_HEADERS ",\"body\":{\"action\":\"replace\",\"encoding\":\"text\",\"data\":\"%.*s\"}}",
            (int)n + 1, data);
    INVALID(vr, json, "body exceeds 40 KB", "request.body.data");
    /* base64: 40 KB decoded = 54616 chars with padding ("xxxx" decodes to 3 bytes; 40960 = 3*13653 + 1) */
    size_t groups = 13653;
    sprintf(json,
            "{\"uri\":\"/form\"," VRB_HEADERS ",\"body\":{\"action\":\"replace\",\"encoding\":\"base64\",\"data\":\"%.*sxA==\"}}",
            (int)(groups * 4), data);
    VALID(vr, json);
    sprintf(json,
            "{\"uri\":\"/form\"," VRB_HEADERS ",\"body\":{\"action\":\"replace\",\"encoding\":\"base64\",\"data\":\"%.*sxxA=\"}}",
            (int)(groups * 4), data);
    INVALID(vr, json, "body exceeds 40 KB", "request.body.data");
    free(json);
    free(data);
    /* body at a response trigger is a structure error (parse), origin at viewer-request is a rule */
    INVALID(viewer_request_event, "{\"uri\":\"/\",\"headers\":{" VR_HOST "}," OR_ORIGIN "}", "origin not allowed at this trigger",
            "request.origin");
}

static void test_validate_origin(void)
{
    const char *orq = origin_request_event;
#define ORIGIN_CUSTOM(fields) "{\"uri\":\"/\",\"headers\":{" OR_KEEP "},\"origin\":{\"custom\":{" fields "}}}"
#define GOOD_CUSTOM                                                                                                                \
    "\"domainName\":\"new.example\",\"path\":\"/"                                                                                  \
    "p\",\"port\":443,\"protocol\":\"https\",\"readTimeout\":30,\"keepaliveTimeout\":5,\"sslProtocols\":[\"TLSv1.2\"]"
    VALID(orq, ORIGIN_CUSTOM(GOOD_CUSTOM));
    VALID(orq, ORIGIN_CUSTOM(GOOD_CUSTOM ",\"customHeaders\":{\"x-k\":[{\"value\":\"v\"}]}"));
    INVALID(orq, "{\"uri\":\"/\",\"headers\":{" OR_KEEP "}}", "required field missing", "request.origin");
    INVALID(orq,
            ORIGIN_CUSTOM("\"domainName\":\"\",\"port\":443,\"protocol\":\"https\",\"readTimeout\":30,\"keepaliveTimeout\":5,"
                          "\"sslProtocols\":[]"),
            "domainName must not be empty", "request.origin.custom.domainName");
    INVALID(orq,
            ORIGIN_CUSTOM("\"domainName\":\"::1\",\"port\":443,\"protocol\":\"https\",\"readTimeout\":30,\"keepaliveTimeout\":"
                          "5,\"sslProtocols\":[]"),
            "domainName must be a DNS name, not an IP address", "request.origin.custom.domainName");
    INVALID(orq,
            ORIGIN_CUSTOM("\"domainName\":\"a:80\",\"port\":443,\"protocol\":\"https\",\"readTimeout\":30,\"keepaliveTimeout\":5,"
                          "\"sslProtocols\":[]"),
            "domainName must be a DNS name, not an IP address", "request.origin.custom.domainName");
    INVALID(orq,
            ORIGIN_CUSTOM("\"domainName\":\"a\",\"path\":\"/p/"
                          "\",\"port\":443,\"protocol\":\"https\",\"readTimeout\":30,\"keepaliveTimeout\":5,\"sslProtocols\":[]"),
            "path must start with '/' and not end with '/'", "request.origin.custom.path");
    INVALID(orq,
            ORIGIN_CUSTOM("\"domainName\":\"a\",\"port\":1023,\"protocol\":\"https\",\"readTimeout\":30,\"keepaliveTimeout\":5,"
                          "\"sslProtocols\":[]"),
            "port must be 80, 443 or 1024-65535", "request.origin.custom.port");
    VALID(orq, ORIGIN_CUSTOM("\"domainName\":\"a\",\"port\":1024,\"protocol\":\"http\",\"readTimeout\":4,\"keepaliveTimeout\":60,"
                             "\"sslProtocols\":[]"));
    INVALID(
        orq,
        ORIGIN_CUSTOM(
            "\"domainName\":\"a\",\"port\":80,\"protocol\":\"ftp\",\"readTimeout\":30,\"keepaliveTimeout\":5,\"sslProtocols\":[]"),
        "protocol must be http or https", "request.origin.custom.protocol");
    INVALID(
        orq,
        ORIGIN_CUSTOM(
            "\"domainName\":\"a\",\"port\":80,\"protocol\":\"http\",\"readTimeout\":3,\"keepaliveTimeout\":5,\"sslProtocols\":[]"),
        "readTimeout must be 4-60", "request.origin.custom.readTimeout");
    INVALID(orq,
            ORIGIN_CUSTOM("\"domainName\":\"a\",\"port\":80,\"protocol\":\"http\",\"readTimeout\":30,\"keepaliveTimeout\":61,"
                          "\"sslProtocols\":[]"),
            "keepaliveTimeout must be 1-60", "request.origin.custom.keepaliveTimeout");
    INVALID(orq,
            ORIGIN_CUSTOM("\"domainName\":\"a\",\"port\":80,\"protocol\":\"http\",\"readTimeout\":30,\"keepaliveTimeout\":5,"
                          "\"sslProtocols\":[\"TLSv1.3\"]"),
            "sslProtocols entries must be TLSv1.2, TLSv1.1, TLSv1 or SSLv3", "request.origin.custom.sslProtocols[0]");
    INVALID(orq, ORIGIN_CUSTOM(GOOD_CUSTOM ",\"customHeaders\":{\"cookie\":[{\"value\":\"v\"}]}"),
            "header not allowed in customHeaders", "request.origin.custom.customHeaders[\"cookie\"]");
    INVALID(orq, ORIGIN_CUSTOM(GOOD_CUSTOM ",\"customHeaders\":{\"x-amz-date\":[{\"value\":\"v\"}]}"),
            "header not allowed in customHeaders", "request.origin.custom.customHeaders[\"x-amz-date\"]");
    INVALID(orq, ORIGIN_CUSTOM(GOOD_CUSTOM ",\"customHeaders\":{\"via\":[{\"value\":\"v\"}]}"),
            "header not allowed in customHeaders", "request.origin.custom.customHeaders[\"via\"]");
    INVALID(orq, ORIGIN_CUSTOM(GOOD_CUSTOM ",\"customHeaders\":{\"x-forwarded-proto\":[{\"value\":\"v\"}]}"), "disallowed header",
            "request.origin.custom.customHeaders[\"x-forwarded-proto\"]");
    INVALID(orq,
            "{\"uri\":\"/\",\"headers\":{" OR_KEEP ",\"x-k\":[{\"value\":\"1\"}]},\"origin\":{\"custom\":{" GOOD_CUSTOM
            ",\"customHeaders\":{\"x-k\":[{\"value\":\"v\"}]}}}}",
            "custom header also present in request.headers", "request.origin.custom.customHeaders[\"x-k\"]");
#define ORIGIN_S3(fields) "{\"uri\":\"/\",\"headers\":{" OR_KEEP "},\"origin\":{\"s3\":{" fields "}}}"
    VALID(orq, ORIGIN_S3("\"domainName\":\"b.s3.amazonaws.com\",\"authMethod\":\"none\",\"path\":\"\",\"region\":\"\""));
    VALID(orq,
          ORIGIN_S3("\"domainName\":\"b.s3.amazonaws.com\",\"authMethod\":\"origin-access-identity\",\"region\":\"eu-west-1\""));
    INVALID(orq, ORIGIN_S3("\"domainName\":\"b.s3.amazonaws.com\",\"authMethod\":\"origin-access-identity\",\"region\":\"\""),
            "region is required with origin-access-identity", "request.origin.s3.region");
    INVALID(orq, ORIGIN_S3("\"domainName\":\"b.s3.amazonaws.com\",\"authMethod\":\"sigv4\""),
            "authMethod must be origin-access-identity or none", "request.origin.s3.authMethod");
    INVALID(orq, ORIGIN_S3("\"domainName\":\"B.s3.amazonaws.com\",\"authMethod\":\"none\""),
            "domainName must be a lower-case bucket DNS name", "request.origin.s3.domainName");
    /* the S3 example is itself valid when returned unchanged */
    VALID(origin_request_s3_event,
          "{\"uri\":\"/"
          "\",\"headers\":{},\"origin\":{\"s3\":{\"domainName\":\"my-bucket.s3.amazonaws.com\",\"authMethod\":\"none\"}}}");
}

static void test_validate_responses(void)
{
    const char *vr = viewer_request_event, *orq = origin_request_event, *ors = origin_response_event, *vrs = viewer_response_event;
    VALID(vr, "{\"status\":\"200\",\"body\":\"hi\"}");
    VALID(vr, "{\"status\":599}");
    INVALID(vr, "{\"status\":\"199\"}", "status must be 200-599", "response.status");
    INVALID(vr, "{\"status\":600}", "status must be 200-599", "response.status");
    INVALID(vr, "{\"status\":\"204\",\"body\":\"x\"}", "204 response must not have a body", "response.body");
    VALID(vr, "{\"status\":\"204\"}");
    VALID(orq, "{\"status\":\"204\",\"body\":\"x\"}"); /* the 204 rule is viewer-request's */
    INVALID(vr, "{\"status\":\"200\",\"body\":\"***\",\"bodyEncoding\":\"base64\"}", "body must be valid base64", "response.body");
    VALID(vr, "{\"status\":\"200\",\"body\":\"aGk=\",\"bodyEncoding\":\"base64\"}");
    INVALID(vr, "{\"status\":\"200\",\"statusDescription\":\"OK\\r\\nX: y\"}", "statusDescription must not contain CR, LF or NUL",
            "response.statusDescription");
    INVALID(vr, "{\"status\":\"200\",\"headers\":{\"upgrade\":[{\"value\":\"h2c\"}]}}", "disallowed header",
            "response.headers[\"upgrade\"]");
    /* generated responses may set otherwise read-only headers: there is no input response */
    VALID(vr, "{\"status\":\"200\",\"headers\":{\"via\":[{\"value\":\"x\"}]}}");
    /* size: headers (key + value + 4) + body, at the boundary */
    size_t limit = EVENT_VIEWER_BODY_LIMIT;
    size_t header_size = strlen("X-A") + strlen("b") + 4;
    char *json = malloc(EVENT_ORIGIN_BODY_LIMIT + 400);
    char *body = malloc(EVENT_ORIGIN_BODY_LIMIT + 2);
    memset(body, 'z', EVENT_ORIGIN_BODY_LIMIT + 1);
    body[EVENT_ORIGIN_BODY_LIMIT + 1] = '\0';
    sprintf(json, "{\"status\":200,\"headers\":{\"x-a\":[{\"value\":\"b\"}]},\"body\":\"%.*s\"}", (int)(limit - header_size), body);
    VALID(vr, json);
    sprintf(json, "{\"status\":200,\"headers\":{\"x-a\":[{\"value\":\"b\"}]},\"body\":\"%.*s\"}", (int)(limit - header_size + 1),
            body);
    INVALID(vr, json, "generated response exceeds 40 KB", "response");
    VALID(orq, json);
    sprintf(json, "{\"status\":200,\"body\":\"%.*s\"}", (int)EVENT_ORIGIN_BODY_LIMIT, body);
    VALID(orq, json);
    sprintf(json, "{\"status\":200,\"body\":\"%.*s\"}", (int)EVENT_ORIGIN_BODY_LIMIT + 1, body);
    INVALID(orq, json, "generated response exceeds 1 MB", "response");
    free(json);
    free(body);
#define ORS_KEEP "\"headers\":{\"content-length\":[{\"value\":\"9593\"}]}"
    VALID(ors, "{\"status\":\"404\",\"statusDescription\":\"Not Found\",\"body\":\"gone\"," ORS_KEEP "}");
    INVALID(ors, "{\"status\":\"100\"}", "status must be 200-599", "response.status");
    VALID(vrs, "{\"status\":\"200\",\"headers\":{}}");
    VALID(vrs, "{\"status\":200,\"headers\":{}}");
    INVALID(vrs, "{\"status\":\"201\",\"headers\":{}}", "status may not change at viewer-response", "response.status");
    INVALID(vrs, "{\"status\":\"200\",\"body\":\"x\"}", "body may not change at viewer-response", "response.body");
}

/* Rules not reached by the cases above: domain and path limits, empty and
 * duplicate header names, origin-request body limit, and results a parser
 * never produces for a trigger (built by hand). */
static void test_validate_remaining(void)
{
    const char *orq = origin_request_event;
    static char json[4096];
    char name[300];
    memset(name, 'a', sizeof name);
    snprintf(json, sizeof json,
             ORIGIN_CUSTOM("\"domainName\":\"%.253s\","
                           "\"port\":443,\"protocol\":\"https\",\"readTimeout\":30,\"keepaliveTimeout\":5,\"sslProtocols\":[]"),
             name);
    VALID(orq, json);
    snprintf(json, sizeof json,
             ORIGIN_CUSTOM("\"domainName\":\"%.254s\","
                           "\"port\":443,\"protocol\":\"https\",\"readTimeout\":30,\"keepaliveTimeout\":5,\"sslProtocols\":[]"),
             name);
    INVALID(orq, json, "domainName must be at most 253 characters", "request.origin.custom.domainName");
    INVALID(orq,
            ORIGIN_CUSTOM("\"domainName\":\"a/"
                          "b\",\"port\":443,\"protocol\":\"https\",\"readTimeout\":30,\"keepaliveTimeout\":5,\"sslProtocols\":[]"),
            "domainName must be a DNS name", "request.origin.custom.domainName");
    snprintf(
        json, sizeof json,
        ORIGIN_CUSTOM("\"domainName\":\"a\",\"path\":\"/"
                      "%.254s\",\"port\":443,\"protocol\":\"https\",\"readTimeout\":30,\"keepaliveTimeout\":5,\"sslProtocols\":[]"),
        name);
    VALID(orq, json);
    snprintf(
        json, sizeof json,
        ORIGIN_CUSTOM("\"domainName\":\"a\",\"path\":\"/"
                      "%.255s\",\"port\":443,\"protocol\":\"https\",\"readTimeout\":30,\"keepaliveTimeout\":5,\"sslProtocols\":[]"),
        name);
    INVALID(orq, json, "path must be at most 255 characters", "request.origin.custom.path");
    INVALID(orq,
            ORIGIN_CUSTOM("\"domainName\":\"a\",\"path\":\"/a "
                          "b\",\"port\":443,\"protocol\":\"https\",\"readTimeout\":30,\"keepaliveTimeout\":5,\"sslProtocols\":[]"),
            "path must be URL-encoded", "request.origin.custom.path");
    snprintf(json, sizeof json, ORIGIN_S3("\"domainName\":\"%.128s\",\"authMethod\":\"none\""), name);
    VALID(orq, json);
    snprintf(json, sizeof json, ORIGIN_S3("\"domainName\":\"%.129s\",\"authMethod\":\"none\""), name);
    INVALID(orq, json, "domainName must be at most 128 characters", "request.origin.s3.domainName");
    INVALID(viewer_request_event, "{\"uri\":\"/\",\"headers\":{" VR_HOST ",\"\":[{\"value\":\"1\"}]}}",
            "header name must not be empty", "request.headers[\"\"]");

    /* origin-request body limit is 1 MB */
    size_t n = EVENT_ORIGIN_BODY_LIMIT;
    char *big = malloc(n + 600);
    char *data = malloc(n + 2);
    memset(data, 'x', n + 1);
    data[n + 1] = '\0';
    sprintf(big,
            "{\"uri\":\"/\",\"headers\":{" OR_KEEP "}," OR_ORIGIN
            ",\"body\":{\"action\":\"replace\",\"encoding\":\"text\",\"data\":\"%.*s\"}}",
            (int)n, data);
    VALID(orq, big);
    sprintf(big,
            "{\"uri\":\"/\",\"headers\":{" OR_KEEP "}," OR_ORIGIN
            ",\"body\":{\"action\":\"replace\",\"encoding\":\"text\",\"data\":\"%.*s\"}}",
            (int)n + 1, data);
    INVALID(orq, big, "body exceeds 1 MB", "request.body.data");
    free(big);
    free(data);

    /* duplicate map names are a parse error */
    struct event_result result;
    struct event_error error = {0};
    const char *s = "{\"uri\":\"/\",\"headers\":{\"a\":[{\"value\":\"1\"}],\"a\":[{\"value\":\"2\"}]}}";
    CHECK(!event_parse_result(EVENT_VIEWER_REQUEST, s, strlen(s), &arena, &result, &error));
    CHECK_STR(error.rule, "duplicate header name");

    /* hand-built results the parser would not produce for these triggers */
    struct event_input input = parse_input(origin_response_event);
    result = (struct event_result){.kind = EVENT_RESULT_REQUEST};
    result.request = input.request;
    CHECK(!event_validate_result(&input, &result, &error));
    CHECK_STR(error.rule, "response object required");
    input = parse_input(viewer_request_event);
    result.request = input.request;
    CHECK(event_validate_result(&input, &result, &error));
    result.request.has_origin = true;
    result.request.origin = parse_input(origin_request_event).request.origin;
    CHECK(!event_validate_result(&input, &result, &error));
    CHECK_STR(error.rule, "origin not allowed at this trigger");
    CHECK_STR(event_trigger_name(EVENT_VIEWER_RESPONSE), "viewer-response");

    /* an unchanged uri/querystring is forwarded as received, even with a space */
    struct event_input spaced = parse_input(viewer_request_event);
    spaced.request.uri = SLICE_LITERAL("/a b");
    spaced.request.querystring = SLICE_LITERAL("q=a b");
    struct event_result same = {.kind = EVENT_RESULT_REQUEST, .request = spaced.request};
    same.request.has_querystring = true;
    CHECK(event_validate_result(&spaced, &same, &error));
    same.request.querystring = SLICE_LITERAL("q=a  b");
    CHECK(!event_validate_result(&spaced, &same, &error));
    /* a generated viewer-request response may carry CloudFront-Viewer-Country */
    VALID(viewer_request_event, "{\"status\":200,\"headers\":{\"cloudfront-viewer-country\":[{\"value\":\"US\"}]}}");

    /* origin custom header quotas: name 256, value 1783, total 10240 */
    static char custom[16384];
    char value[2000];
    memset(value, 'v', sizeof value);
    snprintf(custom, sizeof custom, ORIGIN_CUSTOM(GOOD_CUSTOM ",\"customHeaders\":{\"x-%.254s\":[{\"value\":\"%.1783s\"}]}"), name,
             value);
    VALID(orq, custom);
    snprintf(custom, sizeof custom, ORIGIN_CUSTOM(GOOD_CUSTOM ",\"customHeaders\":{\"x-%.255s\":[{\"value\":\"v\"}]}"), name);
    INVALID(orq, custom, "custom header name exceeds 256 characters",
            "request.origin.custom.customHeaders[\"x-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]");
    snprintf(custom, sizeof custom, ORIGIN_CUSTOM(GOOD_CUSTOM ",\"customHeaders\":{\"x-a\":[{\"value\":\"%.1784s\"}]}"), value);
    INVALID(orq, custom, "custom header value exceeds 1783 characters", "request.origin.custom.customHeaders[\"x-a\"][0].value");
    /* 6 values of 1700 + name 3 each = 10218 ≤ 10240; a 7th would pass the total */
    char values[16000] = "";
    for (int i = 0; i < 6; i++)
        snprintf(values + strlen(values), sizeof values - strlen(values), "%s{\"value\":\"%.1700s\"}", i ? "," : "", value);
    snprintf(custom, sizeof custom, ORIGIN_CUSTOM(GOOD_CUSTOM ",\"customHeaders\":{\"x-a\":[%s]}"), values);
    VALID(orq, custom);
    snprintf(values + strlen(values), sizeof values - strlen(values), ",{\"value\":\"%.1700s\"}", value);
    snprintf(custom, sizeof custom, ORIGIN_CUSTOM(GOOD_CUSTOM ",\"customHeaders\":{\"x-a\":[%s]}"), values);
    INVALID(orq, custom, "custom headers exceed 10240 characters", "request.origin.custom.customHeaders");
}

/* The compact spelling against LuaJIT's own string.buffer: the event decodes
 * into the tables the JSON would give, and what buffer.encode writes for a
 * result parses like the JSON result. */
static const char *lua_run(lua_State *L, const char *code, slice_t argument, size_t *len)
{
    lua_settop(L, 0);
    if (luaL_loadstring(L, code) != 0)
        return NULL;
    lua_pushlstring(L, argument.ptr, argument.len);
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
        return NULL;
    }
    return lua_tolstring(L, -1, len);
}

/* The global `dict`: event_keys as a Lua list, what a worker hands string.buffer. */
static void set_dict(lua_State *L)
{
    lua_createtable(L, EVENT_KEY_COUNT, 0);
    for (int i = 0; i < EVENT_KEY_COUNT; i++) {
        lua_pushlstring(L, event_keys[i].ptr, event_keys[i].len);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "dict");
}

static void test_compact_spelling(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    set_dict(L);
    struct event_input input = {.trigger = EVENT_ORIGIN_REQUEST};
    input.config.distribution_domain_name = SLICE_LITERAL("d.example");
    input.config.distribution_id = SLICE_LITERAL("E1");
    input.config.request_id = SLICE_LITERAL("req==");
    input.request.client_ip = SLICE_LITERAL("203.0.113.9");
    input.request.method = SLICE_LITERAL("POST");
    input.request.uri = SLICE_LITERAL("/a\"b");
    input.request.querystring = SLICE_LITERAL("");
    event_headers_add(&arena, &input.request.headers, SLICE_LITERAL("Set-Cookie"), SLICE_LITERAL("a=1"));
    event_headers_add(&arena, &input.request.headers, SLICE_LITERAL("set-cookie"), SLICE_LITERAL("b=2"));
    char long_value[400];
    memset(long_value, 'v', sizeof long_value);
    event_headers_add(&arena, &input.request.headers, SLICE_LITERAL("X-Long"), (slice_t){long_value, sizeof long_value});
    input.request.has_body = true;
    input.request.body =
        (struct event_request_body){.action = EVENT_BODY_READ_ONLY, .encoding = EVENT_BODY_BASE64, .data = SLICE_LITERAL("aGk=")};
    input.request.has_origin = true;
    input.request.origin = (struct event_origin){.kind = EVENT_ORIGIN_CUSTOM,
                                                 .domain_name = SLICE_LITERAL("o.example"),
                                                 .port = 8080,
                                                 .protocol = SLICE_LITERAL("http"),
                                                 .path = SLICE_LITERAL(""),
                                                 .read_timeout = 30,
                                                 .keepalive_timeout = 5};
    struct bytebuf compact = {0};
    struct event_compact_layout layout;
    event_encode_compact(&input, &compact, &layout);
    /* The schema's keys are dictionary references: {Records = ...} starts 0x09, its count, 0x0f 0 */
    CHECK(compact.len > 8 && memcmp(compact.data + 6, "\x0f\x00", 2) == 0);
    size_t len = 0;
    /* The layout: the request's header map, whole, on its own (not the
     * origin's customHeaders); no response at origin-request. */
    CHECK_INT(layout.headers[1].len, 0);
    CHECK(layout.headers[0].len > 400 && (size_t)layout.headers[0].at + layout.headers[0].len < compact.len);
    const char *map = lua_run(L,
                              "local h = require('string.buffer').new({dict = dict}):set(...):decode()\n"
                              "local n = 0 for _ in pairs(h) do n = n + 1 end\n"
                              "return n .. '|' .. h['set-cookie'][2].value .. '|' .. #h['x-long'][1].value",
                              (slice_t){compact.data + layout.headers[0].at, layout.headers[0].len}, &len);
    CHECK(map != NULL);
    if (map != NULL)
        CHECK_STR(map, "2|b=2|400");
    /* Without the dictionary string.buffer refuses the event: the keys are references. */
    CHECK(lua_run(L, "return require('string.buffer').decode(...)", (slice_t){compact.data, compact.len}, &len) == NULL);
    const char *seen = lua_run(L,
                               "local e = require('string.buffer').new({dict = dict}):set(...):decode()\n"
                               "local cf = e.Records[1].cf\n"
                               "local r = cf.request\n"
                               "return table.concat({#e.Records, cf.config.eventType, cf.config.requestId, r.method, r.uri, "
                               "r.headers['set-cookie'][2].value, r.headers['set-cookie'][1].key, #r.headers['x-long'][1].value, "
                               "tostring(r.body.inputTruncated), r.body.data, r.origin.custom.port, "
                               "tostring(next(r.origin.custom.customHeaders)), #r.origin.custom.sslProtocols}, '|')",
                               (slice_t){compact.data, compact.len}, &len);
    CHECK(seen != NULL);
    if (seen != NULL)
        CHECK_STR(seen, "1|origin-request|req==|POST|/a\"b|b=2|Set-Cookie|400|false|aGk=|8080|nil|0");
    /* A result written by a buffer with the dictionary, as a worker does: the
     * schema's keys come back as references, also as header names ("origin"). */
    const char *encoded = lua_run(L,
                                  "local buffer = require('string.buffer')\n"
                                  "local r = buffer.new({dict = dict}):set(...):decode().Records[1].cf.request\n"
                                  "r.headers['x-new'] = {{key = 'X-New', value = 'yes'}}\n"
                                  "r.headers['x-empty'] = {}\n"
                                  "r.headers['origin'] = {{value = 'https://o.example'}}\n"
                                  "r.uri = '/changed'\n"
                                  "return buffer.new({dict = dict}):encode(r):tostring()",
                                  (slice_t){compact.data, compact.len}, &len);
    /* field names went back as references, not spelled out */
    CHECK(encoded != NULL && memmem(encoded, len, "querystring", 11) == NULL && memmem(encoded, len, "clientIp", 8) == NULL);
    struct event_result result;
    struct event_error error = {0};
    CHECK(encoded != NULL &&
          event_parse_result_compact(EVENT_ORIGIN_REQUEST, encoded, len, EVENT_HEADERS_WHOLE, &arena, &result, &error));
    CHECK_INT(result.kind, EVENT_RESULT_REQUEST);
    CHECK(slice_equal(result.request.uri, SLICE_LITERAL("/changed")));
    const struct event_header *added = event_headers_find(&result.request.headers, SLICE_LITERAL("x-new"));
    CHECK(added != NULL && added->value_count == 1 && slice_equal(added->values[0].value, SLICE_LITERAL("yes")));
    const struct event_header *empty = event_headers_find(&result.request.headers, SLICE_LITERAL("x-empty"));
    CHECK(empty != NULL && empty->value_count == 0);
    CHECK(result.request.has_origin && result.request.origin.port == 8080);
    const struct event_header *origin = event_headers_find(&result.request.headers, SLICE_LITERAL("origin"));
    CHECK(origin != NULL && origin->value_count == 1 && slice_equal(origin->values[0].key, SLICE_LITERAL("Origin")) &&
          slice_equal(origin->values[0].value, SLICE_LITERAL("https://o.example")));
    /* A generated response with a numeric status; then malformed inputs. */
    encoded = lua_run(L, "return require('string.buffer').encode({status = 302, headers = {location = {{value = '/x'}}}})",
                      (slice_t){"", 0}, &len);
    CHECK(encoded != NULL &&
          event_parse_result_compact(EVENT_VIEWER_REQUEST, encoded, len, EVENT_HEADERS_WHOLE, &arena, &result, &error));
    CHECK_INT(result.response.status, 302);
    char copy[256];
    size_t copy_len = len < sizeof copy ? len : sizeof copy;
    memcpy(copy, encoded != NULL ? encoded : "", copy_len);
    int accepted = 0;
    for (size_t cut = 0; cut < copy_len; cut++)
        accepted += event_parse_result_compact(EVENT_VIEWER_REQUEST, copy, cut, EVENT_HEADERS_WHOLE, &arena, &result, &error);
    CHECK_INT(accepted, 0);
    static const char huge_count[] = "\x09\xff\xff\xff\xff\x7f";
    CHECK(!event_parse_result_compact(EVENT_VIEWER_REQUEST, huge_count, sizeof huge_count - 1, EVENT_HEADERS_WHOLE, &arena, &result,
                                      &error));
    static const char nul_in_string[] = "\x09\x01\x23uri\x23/\x00x";
    CHECK(!event_parse_result_compact(EVENT_VIEWER_REQUEST, nul_in_string, sizeof nul_in_string - 1, EVENT_HEADERS_WHOLE, &arena,
                                      &result, &error));
    CHECK(error.rule != NULL && error.field[0] != '\0');
    bytebuf_free(&compact);
    lua_close(L);
}

static const char not_well_formed[] = "result is not a table of strings, numbers, booleans and tables";

/* Parses compact bytes at viewer-request: true when accepted; on rejection
 * error holds the field and rule. */
static bool parse_compact(const char *data, size_t len, struct event_result *result, struct event_error *error)
{
    *error = (struct event_error){0};
    return event_parse_result_compact(EVENT_VIEWER_REQUEST, data, len, EVENT_HEADERS_WHOLE, &arena, result, error);
}

static bool parse_json(const char *json, struct event_result *result, struct event_error *error)
{
    *error = (struct event_error){0};
    return event_parse_result(EVENT_VIEWER_REQUEST, json, strlen(json), &arena, result, error);
}

/* Every proper prefix of `data` is refused as not well formed. */
static void check_prefixes_refused(const char *data, size_t len)
{
    struct event_result result;
    struct event_error error;
    for (size_t cut = 0; cut < len; cut++) {
        char *copy = malloc(cut + 1); /* exactly cut bytes for ASan to guard */
        memcpy(copy, data, cut);
        bool accepted = parse_compact(copy, cut, &result, &error);
        CHECK(!accepted);
        if (!accepted)
            CHECK_STR(error.rule, not_well_formed);
        free(copy);
    }
}

/* What the schema does not name is skipped but must be well formed; keys
 * repeat; number keys and array parts name headers; nesting and values the
 * JSON path tells apart; results outlive the bytes they were read from. */
static void test_result_reader(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    struct event_result result;
    struct event_error error;
    size_t len = 0;

    /* Unknown members with every kind string.buffer writes: skipped. */
    const char *encoded =
        lua_run(L,
                "return require('string.buffer').encode({uri = '/k', headers = {}, [1] = 'an element', extra = {"
                "s = 'str', f = false, t = true, n = 1.5, i = 7, z = {}, holes = {1, nil, 3}, zero = {[0] = 'a', 'b'}, "
                "mixed = {1, 2, k = 'v'}, [5] = 'number key', [-2] = {}, long = string.rep('x', 300), "
                "deep = {{{{x = {}}}}}}})",
                (slice_t){"", 0}, &len);
    CHECK(encoded != NULL);
    char *kinds = malloc(len);
    memcpy(kinds, encoded, len);
    CHECK(parse_compact(kinds, len, &result, &error));
    CHECK(slice_equal(result.request.uri, SLICE_LITERAL("/k")) && result.request.headers.count == 0);
    check_prefixes_refused(kinds, len);
    /* ... and the bytes a Lua table does not make: nil, null, int32. */
    static const char hand_made[] = "\x09\x04"
                                    "\x23uri\x21/"
                                    "\x27headers\x08"
                                    "\x21h\x0c\x04\x00\x03\x06\x01\x00\x00\x00"
                                    "\x21k\x07\x00\x00\x00\x00\x00\x00\x04\x40";
    CHECK(parse_compact(hand_made, sizeof hand_made - 1, &result, &error));
    check_prefixes_refused(hand_made, sizeof hand_made - 1);

    /* Not well formed anywhere beats any field's fault: a string cut short,
     * a NaN, a NUL in a string or a key, an unsupported tag. */
    static const char bad_uri[] = "\x09\x03\x23uri\x07\x00\x00\x00\x00\x00\x00\x14\x40\x27headers\x08\x23zzz\x23zzz";
    CHECK(!parse_compact(bad_uri, sizeof bad_uri - 1, &result, &error));
    CHECK_STR(error.field, "request.uri");
    CHECK_STR(error.rule, "must be a string");
    static const char truncated_extra[] = "\x09\x03\x23uri\x07\x00\x00\x00\x00\x00\x00\x14\x40\x27headers\x08\x23zzz\x2azz";
    CHECK(!parse_compact(truncated_extra, sizeof truncated_extra - 1, &result, &error));
    CHECK_STR(error.field, "$");
    CHECK_STR(error.rule, not_well_formed);
    static const char nan_extra[] = "\x09\x03\x23uri\x21/\x27headers\x08\x23zzz\x07\x00\x00\x00\x00\x00\x00\xf8\x7f";
    CHECK(!parse_compact(nan_extra, sizeof nan_extra - 1, &result, &error));
    CHECK_STR(error.rule, not_well_formed);
    static const char nul_in_key[] = "\x09\x03\x23uri\x21/\x27headers\x08\x23z\x00z\x02";
    CHECK(!parse_compact(nul_in_key, sizeof nul_in_key - 1, &result, &error));
    CHECK_STR(error.rule, not_well_formed);
    static const char int64_extra[] = "\x09\x03\x23uri\x21/\x27headers\x08\x23zzz\x10\x01\x00\x00\x00\x00\x00\x00\x00";
    CHECK(!parse_compact(int64_extra, sizeof int64_extra - 1, &result, &error));
    CHECK_STR(error.rule, not_well_formed);

    /* Dictionary references (0x0f + index into event_keys) wherever a key may
     * be, also as a header name; plain string keys beside them. */
    const char dict_keys[] = {0x09, 0x02, 0x0f, EVENT_KEY_URI, 0x21, '/', 0x0f, EVENT_KEY_HEADERS, 0x09, 0x02,
                              /* "origin": [{key = "Origin", value = "o"}] */
                              0x0f, EVENT_KEY_ORIGIN, 0x0c, 0x02, 0x09, 0x02, 0x0f, EVENT_KEY_KEY, 0x26, 'O', 'r', 'i', 'g', 'i',
                              'n', 0x0f, EVENT_KEY_VALUE, 0x21, 'o',
                              /* "x-a": [{value = "v"}] */
                              0x23, 'x', '-', 'a', 0x0c, 0x02, 0x09, 0x01, 0x25, 'v', 'a', 'l', 'u', 'e', 0x21, 'v'};
    CHECK(parse_compact(dict_keys, sizeof dict_keys, &result, &error));
    CHECK(slice_equal(result.request.uri, SLICE_LITERAL("/")) && result.request.headers.count == 2);
    const struct event_header *origin = event_headers_find(&result.request.headers, SLICE_LITERAL("origin"));
    CHECK(origin != NULL && origin->value_count == 1 && slice_equal(origin->values[0].key, SLICE_LITERAL("Origin")) &&
          slice_equal(origin->values[0].value, SLICE_LITERAL("o")));
    const struct event_header *xa = event_headers_find(&result.request.headers, SLICE_LITERAL("x-a"));
    CHECK(xa != NULL && xa->value_count == 1 && slice_equal(xa->values[0].value, SLICE_LITERAL("v")));
    check_prefixes_refused(dict_keys, sizeof dict_keys);
    /* An index past the list (one byte, two bytes), or a reference where a
     * value or an element is due (string.buffer writes them for keys only):
     * not well formed. */
    const char dict_past[] = {0x09, 0x02, 0x0f, EVENT_KEY_URI, 0x21, '/', 0x0f, EVENT_KEY_COUNT, 0x08};
    const char dict_past_long[] = {0x09, 0x02, 0x0f, EVENT_KEY_URI, 0x21, '/', 0x0f, (char)0xe0, 0x00, 0x08};
    const char dict_value[] = {0x09, 0x02, 0x0f, EVENT_KEY_URI, 0x0f, EVENT_KEY_URI, 0x0f, EVENT_KEY_HEADERS, 0x08};
    const char dict_element[] = {0x09, 0x02, 0x0f, EVENT_KEY_URI, 0x21, '/', 0x23, 'z', 'z', 'z', 0x0c, 0x02, 0x0f, 0x00};
    const struct {
        const char *data;
        size_t len;
    } dict_bad[] = {{dict_past, sizeof dict_past},
                    {dict_past_long, sizeof dict_past_long},
                    {dict_value, sizeof dict_value},
                    {dict_element, sizeof dict_element}};
    for (size_t i = 0; i < sizeof dict_bad / sizeof dict_bad[0]; i++) {
        CHECK(!parse_compact(dict_bad[i].data, dict_bad[i].len, &result, &error));
        CHECK_STR(error.field, "$");
        CHECK_STR(error.rule, not_well_formed);
    }
    /* The JSON path's own tags are not LuaJIT's: refused in compact input. */
    static const char json_tag[] = "\x09\x03\x23uri\x21/\x27headers\x08\x23zzz\x15";
    CHECK(!parse_compact(json_tag, sizeof json_tag - 1, &result, &error));
    CHECK_STR(error.rule, not_well_formed);

    /* A repeated key: its first occurrence counts, in JSON and in bytes. */
    CHECK(parse_json("{\"uri\":\"/a\",\"uri\":5,\"headers\":{}}", &result, &error));
    CHECK(slice_equal(result.request.uri, SLICE_LITERAL("/a")));
    CHECK(!parse_json("{\"uri\":5,\"uri\":\"/a\",\"headers\":{}}", &result, &error));
    CHECK_STR(error.field, "request.uri");
    static const char repeated[] = "\x09\x03\x23uri\x22/a\x23uri\x01\x27headers\x08";
    CHECK(parse_compact(repeated, sizeof repeated - 1, &result, &error));
    CHECK(slice_equal(result.request.uri, SLICE_LITERAL("/a")));
    CHECK(parse_json("{\"status\":204,\"status\":\"x\",\"headers\":{\"a\":[{\"value\":\"1\",\"value\":2}]}}", &result, &error));
    CHECK_INT(result.response.status, 204);
    CHECK(slice_equal(result.response.headers.items[0].values[0].value, SLICE_LITERAL("1")));

    /* Number keys and array parts name headers in decimal; 5 and "5" are the same name. */
    encoded = lua_run(L,
                      "return require('string.buffer').encode({uri = '/', headers = {{{value = 'one'}}, [7] = {{value = 'seven'}},"
                      " x = {{value = 'x'}}}})",
                      (slice_t){"", 0}, &len);
    CHECK(encoded != NULL && parse_compact(encoded, len, &result, &error));
    const struct event_header *one = event_headers_find(&result.request.headers, SLICE_LITERAL("1"));
    const struct event_header *seven = event_headers_find(&result.request.headers, SLICE_LITERAL("7"));
    CHECK(result.request.headers.count == 3 && one != NULL && seven != NULL);
    CHECK(one != NULL && slice_equal(one->values[0].value, SLICE_LITERAL("one")) &&
          slice_equal(one->values[0].key, SLICE_LITERAL("1")));
    encoded =
        lua_run(L, "return require('string.buffer').encode({uri = '/', headers = {[5] = {}, ['5'] = {}}})", (slice_t){"", 0}, &len);
    CHECK(encoded != NULL && !parse_compact(encoded, len, &result, &error));
    CHECK_STR(error.rule, "duplicate header name");
    CHECK_STR(error.field, "request.headers[\"5\"]");
    /* A list of headers is not a map of them. */
    encoded =
        lua_run(L, "return require('string.buffer').encode({uri = '/', headers = {{{value = 'one'}}}})", (slice_t){"", 0}, &len);
    CHECK(encoded != NULL && !parse_compact(encoded, len, &result, &error));
    CHECK_STR(error.rule, "must be an object");

    /* JSON tells [] from {} and 302 from 302.0; a Lua table and number cannot. */
    CHECK(!parse_json("{\"uri\":\"/\",\"headers\":[]}", &result, &error));
    CHECK_STR(error.rule, "must be an object");
    CHECK(parse_json("{\"uri\":\"/\",\"headers\":{\"a\":{}}}", &result, &error));
    CHECK(result.request.headers.count == 1 && result.request.headers.items[0].value_count == 0);
    CHECK(!parse_json("{\"status\":302.0}", &result, &error));
    CHECK_STR(error.field, "response.status");
    encoded = lua_run(L, "return require('string.buffer').encode({status = 302.0, headers = {}})", (slice_t){"", 0}, &len);
    CHECK(encoded != NULL && parse_compact(encoded, len, &result, &error));
    CHECK_INT(result.response.status, 302);

    /* Nesting: 64 tables deep and an empty table below them, not 65. */
    char deep[64 * 4 + 2];
    size_t n = 0;
    for (int level = 0; level < 64; level++, n += 4)
        memcpy(deep + n, "\x09\x01\x21x", 4);
    deep[n] = '\x08';
    CHECK(!parse_compact(deep, n + 1, &result, &error));
    CHECK_STR(error.field, "request.uri");        /* well formed: the schema's fault */
    memcpy(deep + n - 4, "\x09\x01\x21x\x09", 5); /* the empty table becomes a 65th */
    CHECK(!parse_compact(deep, n + 1, &result, &error));
    CHECK_STR(error.rule, not_well_formed);
    /* JSON has always allowed one level more (the tree parser's count). */
    char json_deep[65 * 5 + 2 + 65 + 1];
    n = 0;
    for (int level = 0; level < 65; level++, n += 5)
        memcpy(json_deep + n, "{\"x\":", 5);
    json_deep[n++] = '1';
    memset(json_deep + n, '}', 65);
    json_deep[n + 65] = '\0';
    CHECK(!parse_json(json_deep, &result, &error));
    CHECK_STR(error.field, "request.uri");
    memcpy(json_deep, "[[[[[", 5);
    CHECK(!parse_json(json_deep, &result, &error));
    CHECK_STR(error.rule, "JSON output is not parsable");

    /* The result lives in the arena, not in the caller's bytes. */
    encoded =
        lua_run(L, "return require('string.buffer').encode({uri = '/kept', headers = {['x-a'] = {{key = 'X-A', value = 'v'}}}})",
                (slice_t){"", 0}, &len);
    char *bytes = malloc(len);
    memcpy(bytes, encoded, len);
    CHECK(parse_compact(bytes, len, &result, &error));
    memset(bytes, 0xff, len);
    free(bytes);
    CHECK(slice_equal(result.request.uri, SLICE_LITERAL("/kept")));
    CHECK(slice_equal(result.request.headers.items[0].name, SLICE_LITERAL("x-a")));
    CHECK(slice_equal(result.request.headers.items[0].values[0].key, SLICE_LITERAL("X-A")));
    CHECK(slice_equal(result.request.headers.items[0].values[0].value, SLICE_LITERAL("v")));
    /* Parsed headers can still be added to. */
    event_headers_add(&arena, &result.request.headers, SLICE_LITERAL("X-A"), SLICE_LITERAL("w"));
    event_headers_add(&arena, &result.request.headers, SLICE_LITERAL("X-B"), SLICE_LITERAL("b"));
    CHECK(result.request.headers.count == 2 && result.request.headers.items[0].value_count == 2);

    free(kinds);
    lua_close(L);
}

/* Whether a result changes what the function got, for traces. */
static bool changes(const char *input_json, const char *result_json)
{
    struct event_input input = parse_input(input_json);
    struct event_result result;
    struct event_error error = {0};
    VERGE_ASSERT(event_parse_result(input.trigger, result_json, strlen(result_json), &arena, &result, &error));
    return event_result_changes_input(&input, &result);
}

#define VR_HEADERS                                                                                                                 \
    "\"headers\":{\"host\":[{\"key\":\"Host\",\"value\":\"d111111abcdef8.cloudfront.net\"}],\"user-agent\":[{\"key\":"             \
    "\"User-Agent\",\"value\":\"curl/7.66.0\"}],\"accept\":[{\"key\":\"accept\",\"value\":\"*/*\"}]}"

static void test_result_changes_input(void)
{
    const char *vr = viewer_request_event, *vres = viewer_response_event;
    /* the request as it came, whole or with its optional fields left out, headers in another order */
    CHECK(!changes(vr, "{\"clientIp\":\"203.0.113.178\",\"method\":\"GET\",\"querystring\":\"\",\"uri\":\"/\"," VR_HEADERS "}"));
    CHECK(!changes(vr, "{\"uri\":\"/\"," VR_HEADERS "}"));
    CHECK(!changes(vr, "{\"uri\":\"/\",\"headers\":{\"accept\":[{\"key\":\"accept\",\"value\":\"*/*\"}],\"host\":[{\"key\":"
                       "\"Host\",\"value\":\"d111111abcdef8.cloudfront.net\"}],\"user-agent\":[{\"key\":\"User-Agent\","
                       "\"value\":\"curl/7.66.0\"}]}}"));
    CHECK(changes(vr, "{\"uri\":\"/other\"," VR_HEADERS "}"));
    CHECK(changes(vr, "{\"uri\":\"/\",\"querystring\":\"a=1\"," VR_HEADERS "}"));
    CHECK(changes(vr, "{\"uri\":\"/\",\"method\":\"POST\"," VR_HEADERS "}"));
    /* a header added, removed, its value or its key spelling changed */
    CHECK(changes(vr, "{\"uri\":\"/\",\"headers\":{\"host\":[{\"key\":\"Host\",\"value\":\"d111111abcdef8.cloudfront.net\"}],"
                      "\"user-agent\":[{\"key\":\"User-Agent\",\"value\":\"curl/7.66.0\"}]}}"));
    CHECK(changes(vr, "{\"uri\":\"/\",\"headers\":{\"host\":[{\"key\":\"Host\",\"value\":\"d111111abcdef8.cloudfront.net\"}],"
                      "\"user-agent\":[{\"key\":\"User-Agent\",\"value\":\"curl/7.66.0\"}],\"accept\":[{\"key\":\"Accept\","
                      "\"value\":\"*/*\"}]}}"));
    CHECK(changes(vr, "{\"uri\":\"/\",\"headers\":{\"host\":[{\"key\":\"Host\",\"value\":\"d111111abcdef8.cloudfront.net\"}],"
                      "\"user-agent\":[{\"key\":\"User-Agent\",\"value\":\"curl/7.66.0\"}],\"accept\":[{\"key\":\"accept\","
                      "\"value\":\"*/*\"}],\"x-new\":[{\"key\":\"X-New\",\"value\":\"1\"}]}}"));
    /* a generated response */
    CHECK(changes(vr, "{\"status\":\"200\"}"));
    /* responses */
    const char *same = "{\"status\":\"200\",\"statusDescription\":\"OK\",\"headers\":{\"date\":[{\"key\":\"Date\",\"value\":"
                       "\"Mon, 13 Jan 2020 20:14:56 GMT\"}],\"server\":[{\"key\":\"Server\",\"value\":\"ExampleCustomOriginServer"
                       "\"}],\"age\":[{\"key\":\"Age\",\"value\":\"2402\"}],\"content-type\":[{\"key\":\"Content-Type\",\"value"
                       "\":\"text/html; charset=utf-8\"}],\"content-length\":[{\"key\":\"Content-Length\",\"value\":\"9593\"}]}}";
    CHECK(!changes(vres, same));
    CHECK(changes(vres, "{\"status\":\"404\",\"headers\":{\"date\":[{\"key\":\"Date\",\"value\":"
                        "\"Mon, 13 Jan 2020 20:14:56 GMT\"}],\"server\":[{\"key\":\"Server\",\"value\":"
                        "\"ExampleCustomOriginServer\"}],\"age\":[{\"key\":\"Age\",\"value\":\"2402\"}],\"content-type\":[{"
                        "\"key\":\"Content-Type\",\"value\":\"text/html; charset=utf-8\"}],\"content-length\":[{\"key\":"
                        "\"Content-Length\",\"value\":\"9593\"}]}}"));
    CHECK(changes(vres, "{\"status\":\"200\",\"statusDescription\":\"Fine\",\"headers\":{\"date\":[{\"key\":\"Date\",\"value\":"
                        "\"Mon, 13 Jan 2020 20:14:56 GMT\"}],\"server\":[{\"key\":\"Server\",\"value\":"
                        "\"ExampleCustomOriginServer\"}],\"age\":[{\"key\":\"Age\",\"value\":\"2402\"}],\"content-type\":[{"
                        "\"key\":\"Content-Type\",\"value\":\"text/html; charset=utf-8\"}],\"content-length\":[{\"key\":"
                        "\"Content-Length\",\"value\":\"9593\"}]}}"));
    CHECK(changes(vres, "{\"status\":\"200\",\"headers\":{}}"));
}

int main(void)
{
    arena_init(&arena);
    UNIT_RUN(test_result_changes_input);
    UNIT_RUN(test_compact_spelling);
    UNIT_RUN(test_result_reader);
    UNIT_RUN(test_encode_examples);
    UNIT_RUN(test_encode_round_trip);
    UNIT_RUN(test_parse_result_forms);
    UNIT_RUN(test_encode_result);
    UNIT_RUN(test_validate_headers);
    UNIT_RUN(test_header_hidden);
    UNIT_RUN(test_validate_long_headers);
    UNIT_RUN(test_validate_request_fields);
    UNIT_RUN(test_validate_request_body);
    UNIT_RUN(test_validate_origin);
    UNIT_RUN(test_validate_responses);
    UNIT_RUN(test_validate_remaining);
    arena_destroy(&arena);
    return unit_summary();
}
