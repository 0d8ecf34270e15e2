/* command_event.c — `verge event TRIGGER --url URL [options]`: prints a
 * Lambda@Edge event for a trigger, to feed `verge invoke` or a function's own
 * tests. It is filled the way request_hooks.c fills events from a request
 * (distribution fields, Host, the custom origin at the origin triggers,
 * Include Body as base64 up to the trigger's limit) and written by the same
 * encoder (hooks/event.c), so it is what a function running in verge gets.
 *
 * Everything lives in one arena for the life of the command; no state.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../hooks/event.h"
#include "commands.h"
#include "http1.h"
#include "request.h"

#define EVENT_BODY_FILE_MAX (64u << 20)

static int usage_error(const char *fmt, const char *detail)
{
    fprintf(stderr, "verge event: ");
    fprintf(stderr, fmt, detail);
    fprintf(stderr, "\nusage: verge event viewer-request|origin-request|origin-response|viewer-response --url URL\n"
                    "         [-H 'Name: value']... [--method M] [--body TEXT|@FILE] [--client-ip IP]\n"
                    "         [--status N] [--response-header 'Name: value']...\n");
    return 2;
}

/* "Name: value" (optional whitespace after the colon) into `headers`. */
static bool add_header_argument(struct arena *arena, struct event_headers *headers, const char *text)
{
    const char *colon = strchr(text, ':');
    if (colon == NULL || colon == text)
        return false;
    for (const char *c = text; c < colon; c++)
        if (*c <= ' ' || *c >= 0x7f)
            return false;
    const char *value = colon + 1;
    while (*value == ' ' || *value == '\t')
        value++;
    event_headers_add(arena, headers, slice_make(text, (size_t)(colon - text)), slice_from_cstr(value));
    return true;
}

struct parsed_url {
    bool https;
    slice_t host, authority, path, query;
    long port;
};

static bool parse_url(const char *url, struct parsed_url *out)
{
    memset(out, 0, sizeof *out);
    const char *rest;
    if (strncasecmp(url, "http://", 7) == 0)
        rest = url + 7;
    else if (strncasecmp(url, "https://", 8) == 0) {
        out->https = true;
        rest = url + 8;
    } else {
        return false;
    }
    size_t authority_len = strcspn(rest, "/?#");
    if (authority_len == 0)
        return false;
    out->authority = slice_make(rest, authority_len);
    const char *colon = memchr(rest, ':', authority_len);
    out->host = slice_make(rest, colon != NULL ? (size_t)(colon - rest) : authority_len);
    out->port = out->https ? 443 : 80;
    if (colon != NULL) {
        char *end;
        errno = 0;
        out->port = strtol(colon + 1, &end, 10);
        if (end != rest + authority_len || out->port < 1 || out->port > 65535 || errno != 0)
            return false;
    }
    if (out->host.len == 0)
        return false;
    const char *path = rest + authority_len;
    size_t path_len = strcspn(path, "?#");
    out->path = path_len > 0 ? slice_make(path, path_len) : SLICE_LITERAL("/");
    if (path[path_len] == '?') {
        const char *query = path + path_len + 1;
        out->query = slice_make(query, strcspn(query, "#"));
    }
    return true;
}

static bool read_body_argument(struct arena *arena, const char *argument, slice_t *out)
{
    if (argument[0] != '@') {
        *out = slice_from_cstr(argument);
        return true;
    }
    FILE *file = fopen(argument + 1, "rb");
    if (file == NULL)
        return false;
    struct bytebuf buf = {0};
    bool ok = bytebuf_read_file(&buf, file, EVENT_BODY_FILE_MAX);
    fclose(file);
    *out = arena_slice_copy(arena, slice_make(buf.data != NULL ? buf.data : "", buf.len));
    bytebuf_free(&buf);
    return ok;
}

int command_event(int argc, char **argv)
{
    if (argc < 1)
        return usage_error("%s", "a trigger is needed");
    int trigger = -1;
    for (int t = 0; t < EVENT_TRIGGER_COUNT; t++)
        if (strcmp(argv[0], event_trigger_name((enum event_trigger)t)) == 0)
            trigger = t;
    if (trigger < 0)
        return usage_error("unknown trigger \"%s\"", argv[0]);
    bool request_trigger = event_trigger_is_request((enum event_trigger)trigger);

    struct arena arena;
    arena_init(&arena);
    struct event_input input = {.trigger = (enum event_trigger)trigger};
    struct event_headers extra_headers = {0}, response_headers = {0};
    const char *url = NULL, *body = NULL, *status_text = NULL;
    input.request.method = SLICE_LITERAL("GET");
    input.request.client_ip = SLICE_LITERAL("127.0.0.1");
    int status = 2;
    for (int i = 1; i < argc; i++) {
        const char *option = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (value == NULL) {
            usage_error("%s needs a value", option);
            goto done;
        }
        i++;
        if (strcmp(option, "--url") == 0)
            url = value;
        else if (strcmp(option, "-H") == 0 || strcmp(option, "--header") == 0) {
            if (!add_header_argument(&arena, &extra_headers, value)) {
                usage_error("expected -H 'Name: value', got \"%s\"", value);
                goto done;
            }
        } else if (strcmp(option, "--method") == 0)
            input.request.method = slice_from_cstr(value);
        else if (strcmp(option, "--body") == 0)
            body = value;
        else if (strcmp(option, "--client-ip") == 0)
            input.request.client_ip = slice_from_cstr(value);
        else if (strcmp(option, "--status") == 0)
            status_text = value;
        else if (strcmp(option, "--response-header") == 0) {
            if (!add_header_argument(&arena, &response_headers, value)) {
                usage_error("expected --response-header 'Name: value', got \"%s\"", value);
                goto done;
            }
        } else {
            usage_error("unknown option \"%s\"", option);
            goto done;
        }
    }
    struct parsed_url parsed;
    if (url == NULL) {
        usage_error("%s", "--url is needed");
        goto done;
    }
    if (!parse_url(url, &parsed)) {
        usage_error("expected --url http[s]://host[:port][/path][?query], got \"%s\"", url);
        goto done;
    }
    if (body != NULL && !request_trigger) {
        usage_error("--body goes with the request triggers (Include Body), not %s", argv[0]);
        goto done;
    }
    if ((status_text != NULL || response_headers.count > 0) && request_trigger) {
        usage_error("--status and --response-header go with the response triggers, not %s", argv[0]);
        goto done;
    }

    input.config.distribution_domain_name = parsed.host;
    input.config.distribution_id = SLICE_LITERAL("VERGE");
    input.config.request_id = SLICE_LITERAL("verge-event-000000000000");
    input.request.uri = parsed.path;
    input.request.querystring = parsed.query;
    /* As the proxy: Host first (the URL's authority), then the viewer's headers. */
    if (event_headers_find(&extra_headers, SLICE_LITERAL("host")) == NULL)
        event_headers_add(&arena, &input.request.headers, SLICE_LITERAL("Host"), parsed.authority);
    for (size_t h = 0; h < extra_headers.count; h++)
        for (size_t v = 0; v < extra_headers.items[h].value_count; v++)
            event_headers_add(&arena, &input.request.headers, extra_headers.items[h].values[v].key,
                              extra_headers.items[h].values[v].value);
    if (trigger == EVENT_ORIGIN_REQUEST || trigger == EVENT_ORIGIN_RESPONSE) {
        /* The URL as a configured origin, shown the way the proxy shows one. */
        struct config_origin origin = {
            .kind = ORIGIN_KIND_HTTP,
            .host = arena_strndup(&arena, parsed.host.ptr, parsed.host.len),
            .port = (uint16_t)parsed.port,
            .tls = parsed.https,
            .path_prefix = "",
            .read_timeout_ms = 30000,
        };
        input.request.has_origin = true;
        request_origin_to_event(&origin, &input.request.origin);
    }
    if (body != NULL) {
        slice_t data;
        if (!read_body_argument(&arena, body, &data)) {
            usage_error("cannot read the body file \"%s\"", body + 1);
            goto done;
        }
        size_t limit = trigger == EVENT_VIEWER_REQUEST ? EVENT_VIEWER_BODY_LIMIT : EVENT_ORIGIN_BODY_LIMIT;
        input.request.has_body = true;
        input.request.body.input_truncated = data.len > limit;
        if (data.len > limit)
            data.len = limit;
        input.request.body.action = EVENT_BODY_READ_ONLY;
        input.request.body.encoding = EVENT_BODY_BASE64;
        input.request.body.data = event_base64_encode(&arena, data);
    }
    if (!request_trigger) {
        long code = 200;
        if (status_text != NULL) {
            char *end;
            code = strtol(status_text, &end, 10);
            if (*status_text == '\0' || *end != '\0' || code < 100 || code > 599) {
                usage_error("expected --status 100..599, got \"%s\"", status_text);
                goto done;
            }
        }
        input.response.status = (int)code;
        input.response.status_description = slice_from_cstr(http_status_reason((int)code));
        input.response.has_status_description = true;
        input.response.headers = response_headers;
    }
    struct bytebuf out = {0};
    event_encode(&input, &out);
    bytebuf_append(&out, "\n", 1);
    fwrite(out.data, 1, out.len, stdout);
    bytebuf_free(&out);
    status = 0;
done:
    arena_destroy(&arena);
    return status;
}
