/* request_trace.c — the trace of one request for local work: what `verge dev`
 * prints when a request ends, and the X-Verge-Trace response header (under
 * `verge dev`, or with "dev": {"trace_header": true}).
 *
 * A trace records what the request did that the access log does not show:
 * each trigger's function, its outcome (continue, modified, generated, error,
 * invalid, throttled) and duration, and the function's own log lines (its
 * prints and errors, captured by the worker pool for this event). The cache
 * result and key and the origin's status and time are the request's own
 * fields, read when the trace is written.
 *
 * Invariants: request->trace is NULL when tracing is off, so a request that
 * is not traced pays one pointer test per trigger and per head. The trace
 * lives in the request arena; its log buffer is heap memory freed by
 * request_trace_end, which request_finish calls once.
 * Locking: none; a request belongs to its loop thread. The printed block is
 * one write(2) to stdout, so blocks of concurrent requests do not interleave.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "request.h"

#define TRACE_TRIGGERS_MAX 8

struct request_trace_trigger {
    enum config_trigger_kind kind;
    const char *function;
    const char *outcome;
    const char *detail;      /* why it failed; NULL when it did not */
    double duration_ms;      /* -1: it never ran (throttled) */
    size_t log_from, log_to; /* its lines in request_trace.logs */
};

struct request_trace {
    struct request_trace_trigger triggers[TRACE_TRIGGERS_MAX];
    size_t trigger_count;
    size_t log_from; /* where the running trigger's lines start */
    struct bytebuf logs;
};

void request_trace_begin(struct request *request)
{
    request->trace = NULL;
    if (!config_dev_mode && !request->generation->config->dev.trace_header)
        return;
    request->trace = arena_alloc(&request->arena, sizeof *request->trace);
    memset(request->trace, 0, sizeof *request->trace);
}

struct bytebuf *request_trace_log_capture(struct request *request)
{
    if (request->trace == NULL)
        return NULL;
    request->trace->log_from = request->trace->logs.len;
    return &request->trace->logs;
}

void request_trace_trigger(struct request *request, enum config_trigger_kind kind, const char *outcome, double duration_ms,
                           const char *detail)
{
    struct request_trace *trace = request->trace;
    if (trace == NULL || trace->trigger_count == TRACE_TRIGGERS_MAX)
        return;
    const struct config *config = request->generation->config;
    struct request_trace_trigger *entry = &trace->triggers[trace->trigger_count++];
    entry->kind = kind;
    entry->function = config->functions[request->behavior->triggers[kind].function_index].name;
    entry->outcome = outcome;
    entry->duration_ms = duration_ms;
    /* Its first line: a traceback follows in the function's own lines. */
    entry->detail = detail != NULL ? arena_strndup(&request->arena, detail, strcspn(detail, "\r\n")) : NULL;
    entry->log_from = trace->log_from; /* set when the trigger began (request_trace_log_capture) */
    entry->log_to = trace->logs.len;
}

/* ---- formatting ------------------------------------------------------------ */

/* Tokens (no spaces or commas: they go into a header too). */
static const char *cache_result_name(const struct request *request)
{
    switch (request->cache_result) {
    case CACHE_RESULT_HIT:
        return "hit";
    case CACHE_RESULT_REFRESH_HIT:
        return "refresh-hit";
    case CACHE_RESULT_STALE_WHILE_REVALIDATE:
        return "stale-while-revalidate";
    case CACHE_RESULT_STALE_IF_ERROR:
        return "stale-if-error";
    case CACHE_RESULT_MISS_STORED:
        return "miss-stored";
    case CACHE_RESULT_MISS:
        return "miss";
    default:
        return "bypass";
    }
}

static void append_trigger_summary(struct bytebuf *out, const struct request_trace_trigger *entry)
{
    bytebuf_appendf(out, "%s=%s %s", event_trigger_name((enum event_trigger)entry->kind), entry->function, entry->outcome);
    if (entry->duration_ms >= 0)
        bytebuf_appendf(out, " %.2fms", entry->duration_ms);
}

void request_trace_append_header(const struct request *request, struct bytebuf *out)
{
    const struct request_trace *trace = request->trace;
    if (trace == NULL)
        return;
    bytebuf_append_cstr(out, "X-Verge-Trace: id=");
    bytebuf_append_cstr(out, request->id);
    size_t next = 0;
    /* In the order they ran; the cache and origin come after the request triggers. */
    for (; next < trace->trigger_count && event_trigger_is_request((enum event_trigger)trace->triggers[next].kind); next++) {
        bytebuf_append(out, "; ", 2);
        append_trigger_summary(out, &trace->triggers[next]);
    }
    if (request->cache_key.len > 0) {
        bytebuf_appendf(out, "; cache=%s; key=\"", cache_result_name(request));
        cache_key_describe(request->cache_key, out);
        bytebuf_append(out, "\"", 1);
    } else {
        bytebuf_appendf(out, "; cache=%s", cache_result_name(request));
    }
    if (request->origin_status > 0 && request->origin != NULL)
        bytebuf_appendf(out, "; origin=%s %d %.2fms", request->origin->name, request->origin_status,
                        request->origin_ms >= 0 ? request->origin_ms : 0.0);
    for (; next < trace->trigger_count; next++) {
        bytebuf_append(out, "; ", 2);
        append_trigger_summary(out, &trace->triggers[next]);
    }
    bytebuf_append(out, "\r\n", 2);
}

/* The function's lines of one trigger, indented under it. */
static void append_log_lines(struct bytebuf *out, const struct request_trace *trace, const struct request_trace_trigger *entry)
{
    const char *p = trace->logs.data + entry->log_from, *end = trace->logs.data + entry->log_to;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        bytebuf_append_cstr(out, "      | ");
        const char *tab = memchr(p, '\t', (size_t)(eol - p)); /* "LEVEL\ttext" */
        if (tab != NULL) {
            bytebuf_append(out, p, (size_t)(tab - p));
            bytebuf_append(out, "  ", 2);
            p = tab + 1;
        }
        bytebuf_append(out, p, (size_t)(eol - p));
        bytebuf_append(out, "\n", 1);
        p = eol + 1;
    }
}

static void append_trigger_line(struct bytebuf *out, const struct request_trace *trace, const struct request_trace_trigger *entry)
{
    bytebuf_appendf(out, "  %-16s %-12s %-10s", event_trigger_name((enum event_trigger)entry->kind), entry->function,
                    entry->outcome);
    if (entry->duration_ms >= 0)
        bytebuf_appendf(out, " %7.2f ms", entry->duration_ms);
    if (entry->detail != NULL) {
        bytebuf_append_cstr(out, "  ");
        bytebuf_append_cstr(out, entry->detail);
    }
    bytebuf_append(out, "\n", 1);
    append_log_lines(out, trace, entry);
}

/* The block `verge dev` prints:
 *   GET /path → 200 in 4.21 ms  (id, behavior)
 *     viewer-request   auth   continue   0.41 ms
 *       | INFO  a line the function printed
 *     cache            miss, stored   key "localhost/path"
 *     origin           app   200   3.10 ms
 *     viewer-response  ...                                   */
static void write_block(const struct request *request, const struct request_trace *trace)
{
    struct bytebuf out = {0};
    double total_ms = (double)(time_now_monotonic_us() - request->started_us) / 1000.0;
    bytebuf_append_slice(&out, request->method);
    bytebuf_append(&out, " ", 1);
    bytebuf_append_visible(&out, request->target);
    bytebuf_appendf(&out, " -> %d in %.2f ms  [id %s", request->status, total_ms, request->id);
    if (request->behavior != NULL)
        bytebuf_appendf(&out, ", behavior %s", request->behavior->path_pattern);
    bytebuf_append_cstr(&out, "]\n");
    size_t next = 0;
    for (; next < trace->trigger_count && event_trigger_is_request((enum event_trigger)trace->triggers[next].kind); next++)
        append_trigger_line(&out, trace, &trace->triggers[next]);
    if (request->viewer_headers != 0) {
        /* What VIEWER_HEADERS added (the behavior's viewer_headers) */
        bytebuf_appendf(&out, "  %-16s", "viewer headers");
        const char *separator = " ";
        for (size_t i = 0; i < request->header_count; i++) {
            slice_t name = request->headers[i].name;
            if (name.len > 11 && slice_equal_nocase((slice_t){name.ptr, 11}, SLICE_LITERAL("cloudfront-"))) {
                bytebuf_append_cstr(&out, separator);
                bytebuf_append_visible(&out, name);
                bytebuf_append(&out, ": ", 2);
                bytebuf_append_visible(&out, request->headers[i].value);
                separator = ", ";
            }
        }
        bytebuf_append(&out, "\n", 1);
    }
    if (request->behavior != NULL) {
        bytebuf_appendf(&out, "  %-16s %s", "cache", cache_result_name(request));
        if (request->cache_key.len > 0) {
            bytebuf_append_cstr(&out, "  key \"");
            cache_key_describe(request->cache_key, &out);
            bytebuf_append(&out, "\"", 1);
        }
        bytebuf_append(&out, "\n", 1);
    }
    if (request->origin_status > 0 && request->origin != NULL)
        bytebuf_appendf(&out, "  %-16s %-12s %-10d %7.2f ms\n", "origin", request->origin->name, request->origin_status,
                        request->origin_ms >= 0 ? request->origin_ms : 0.0);
    else if (request->error_reason != NULL && request->status >= 500)
        bytebuf_appendf(&out, "  %-16s %s\n", "error", request->error_reason);
    for (; next < trace->trigger_count; next++)
        append_trigger_line(&out, trace, &trace->triggers[next]);
    size_t written = 0;
    while (written < out.len) {
        ssize_t n = write(STDOUT_FILENO, out.data + written, out.len - written);
        if (n <= 0)
            break;
        written += (size_t)n;
    }
    bytebuf_free(&out);
}

void request_trace_end(struct request *request)
{
    struct request_trace *trace = request->trace;
    if (trace == NULL)
        return;
    if (config_dev_mode && request->status > 0)
        write_block(request, trace);
    bytebuf_free(&trace->logs);
    request->trace = NULL;
}
