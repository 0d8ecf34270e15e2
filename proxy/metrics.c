/* metrics.c — process-wide counters and the per-origin registry, rendered as
 * Prometheus text (exposition format 0.0.4) for GET /metrics.
 *
 * Invariants:
 *  - Every counter is a relaxed atomic; writers never lock. A scrape sees each
 *    value at worst a few increments behind, and series may be momentarily
 *    inconsistent with each other (a request counted before its latency).
 *  - The origin registry is a fixed array that only grows: a slot, once
 *    published, is never moved or freed, so struct origin_metrics pointers are
 *    valid for the life of the process.
 *  - Histogram buckets are stored non-cumulatively (one increment per
 *    observation); rendering sums them and clamps the +Inf bucket to at least
 *    the last finite one so a racing scrape still looks monotonic.
 *  - The cache's object count, bytes and evictions are not kept here: they are
 *    read from the store's own counters (cache_stats, cache/store.h).
 *
 * Locking: registry_lock serialises registration (lookup + append). A slot is
 * filled completely before registry_count is bumped with release order, and
 * rendering reads registry_count with acquire order, so a renderer never sees
 * a half-initialised slot and needs no lock.
 */
#include "metrics.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../cache/store.h"
#include "../hooks/pool.h"

#define METRICS_MAX_ORIGINS 1024

struct metrics metrics;

const double metrics_latency_bounds[METRICS_LATENCY_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

static const char *const origin_error_kind_names[ORIGIN_ERROR__COUNT] = {
    [ORIGIN_ERROR_REFUSED] = "refused",     [ORIGIN_ERROR_RESET] = "reset", [ORIGIN_ERROR_TIMEOUT] = "timeout",
    [ORIGIN_ERROR_MALFORMED] = "malformed", [ORIGIN_ERROR_TLS] = "tls",
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct origin_metrics registry[METRICS_MAX_ORIGINS];
static atomic_size_t registry_count;
/* Shared by every origin registered after the registry filled up, so callers
 * always get a usable pointer; its series are rendered under this name. */
static struct origin_metrics registry_overflow = {.name = "_overflow"};
static atomic_bool registry_overflow_used;

void metrics_count_request(int status)
{
    int status_class = status / 100;
    if (status_class < 1 || status_class > 5)
        return;
    atomic_fetch_add_explicit(&metrics.requests_by_class[status_class], 1, memory_order_relaxed);
}

struct origin_metrics *metrics_origin(const char *name)
{
    struct origin_metrics *found = NULL;
    pthread_mutex_lock(&registry_lock);
    size_t count = atomic_load_explicit(&registry_count, memory_order_relaxed);
    for (size_t i = 0; i < count; i++) {
        /* Names longer than the slot are compared truncated, as they are stored. */
        if (strncmp(registry[i].name, name, sizeof registry[i].name - 1) == 0) {
            found = &registry[i];
            break;
        }
    }
    if (found == NULL && count < METRICS_MAX_ORIGINS) {
        found = &registry[count];
        snprintf(found->name, sizeof found->name, "%s", name);
        atomic_store_explicit(&registry_count, count + 1, memory_order_release);
    }
    pthread_mutex_unlock(&registry_lock);
    if (found == NULL) {
        if (!atomic_exchange(&registry_overflow_used, true))
            log_warn("metrics: more than %d origins; the rest are counted as \"_overflow\"", METRICS_MAX_ORIGINS);
        found = &registry_overflow;
    }
    return found;
}

/* One observation into a histogram of metrics_latency_bounds buckets. */
static void observe_latency(atomic_ullong *buckets, atomic_ullong *sum_us, atomic_ullong *count, double seconds)
{
    if (!(seconds >= 0)) /* also catches NaN */
        seconds = 0;
    for (size_t i = 0; i < METRICS_LATENCY_BUCKETS; i++) {
        if (seconds <= metrics_latency_bounds[i]) {
            atomic_fetch_add_explicit(&buckets[i], 1, memory_order_relaxed);
            break;
        }
    }
    /* Observations above the last bound only show in _count (the +Inf bucket). */
    double micros = seconds * 1e6 + 0.5;
    unsigned long long micros_rounded = micros < 1.8e19 ? (unsigned long long)micros : 0;
    atomic_fetch_add_explicit(sum_us, micros_rounded, memory_order_relaxed);
    atomic_fetch_add_explicit(count, 1, memory_order_relaxed);
}

void metrics_observe_origin_latency(struct origin_metrics *origin, double seconds)
{
    observe_latency(origin->latency_buckets, &origin->latency_sum_us, &origin->latency_count, seconds);
}

/* Functions: the same grow-only registry scheme as origins. */
#define METRICS_MAX_FUNCTIONS 1024
static struct function_metrics function_registry[METRICS_MAX_FUNCTIONS];
static atomic_size_t function_registry_count;
static struct function_metrics function_overflow = {.name = "_overflow", .trigger = "_overflow"};
static atomic_bool function_overflow_used;

struct function_metrics *metrics_function(const char *name, const char *trigger)
{
    struct function_metrics *found = NULL;
    pthread_mutex_lock(&registry_lock);
    size_t count = atomic_load_explicit(&function_registry_count, memory_order_relaxed);
    for (size_t i = 0; i < count && found == NULL; i++)
        if (strcmp(function_registry[i].name, name) == 0 && strcmp(function_registry[i].trigger, trigger) == 0)
            found = &function_registry[i];
    if (found == NULL && count < METRICS_MAX_FUNCTIONS) {
        found = &function_registry[count];
        snprintf(found->name, sizeof found->name, "%s", name);
        snprintf(found->trigger, sizeof found->trigger, "%s", trigger);
        atomic_store_explicit(&function_registry_count, count + 1, memory_order_release);
    }
    if (found == NULL) {
        if (!atomic_exchange(&function_overflow_used, true))
            log_warn("metrics: more than %d function/trigger pairs; the rest are counted as \"_overflow\"", METRICS_MAX_FUNCTIONS);
        found = &function_overflow;
    }
    pthread_mutex_unlock(&registry_lock);
    return found;
}

void metrics_observe_function_duration(struct function_metrics *function, double seconds)
{
    observe_latency(function->duration_buckets, &function->duration_sum_us, &function->duration_count, seconds);
}

/* ---- rendering ----------------------------------------------------------- */

static unsigned long long load(const atomic_ullong *value)
{
    return atomic_load_explicit(value, memory_order_relaxed);
}

/* Label values escape backslash, double quote and newline (exposition format
 * 0.0.4); everything else, including UTF-8, is written as is. */
static void append_label_value(struct bytebuf *out, const char *value)
{
    for (const char *p = value; *p != '\0'; p++) {
        switch (*p) {
        case '\\':
            bytebuf_append(out, "\\\\", 2);
            break;
        case '"':
            bytebuf_append(out, "\\\"", 2);
            break;
        case '\n':
            bytebuf_append(out, "\\n", 2);
            break;
        default:
            bytebuf_append(out, p, 1);
        }
    }
}

static void append_header(struct bytebuf *out, const char *name, const char *type, const char *help)
{
    bytebuf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One series of a histogram: `metric`_bucket for each bound and +Inf, _sum
 * and _count, each with `labels` (the label list, without braces). */
static void render_histogram(struct bytebuf *out, const char *metric, slice_t labels, const atomic_ullong *buckets,
                             const atomic_ullong *sum_us, const atomic_ullong *count)
{
    unsigned long long cumulative = 0;
    for (size_t b = 0; b < METRICS_LATENCY_BUCKETS; b++) {
        cumulative += load(&buckets[b]);
        bytebuf_appendf(out, "%s_bucket{" SLICE_FMT ",le=\"%g\"} %llu\n", metric, SLICE_ARG(labels), metrics_latency_bounds[b],
                        cumulative);
    }
    /* Observations above the last bound only show in the count. */
    unsigned long long count_value = load(count);
    if (count_value < cumulative)
        count_value = cumulative;
    bytebuf_appendf(out, "%s_bucket{" SLICE_FMT ",le=\"+Inf\"} %llu\n", metric, SLICE_ARG(labels), count_value);
    bytebuf_appendf(out, "%s_sum{" SLICE_FMT "} %.6f\n", metric, SLICE_ARG(labels), (double)load(sum_us) / 1e6);
    bytebuf_appendf(out, "%s_count{" SLICE_FMT "} %llu\n", metric, SLICE_ARG(labels), count_value);
}

static void append_origin_sample(struct bytebuf *out, const char *metric, const struct origin_metrics *origin)
{
    bytebuf_appendf(out, "%s{origin=\"", metric);
    append_label_value(out, origin->name);
    bytebuf_append(out, "\"", 1);
}

static void render_origins(struct bytebuf *out, const struct origin_metrics *const *origins, size_t count)
{
    append_header(out, "verge_origin_requests_total", "counter", "Requests sent to each origin.");
    for (size_t i = 0; i < count; i++) {
        append_origin_sample(out, "verge_origin_requests_total", origins[i]);
        bytebuf_appendf(out, "} %llu\n", load(&origins[i]->requests));
    }

    append_header(out, "verge_origin_errors_total", "counter", "Failed origin fetches, by kind of failure.");
    for (size_t i = 0; i < count; i++) {
        for (int kind = 0; kind < ORIGIN_ERROR__COUNT; kind++) {
            append_origin_sample(out, "verge_origin_errors_total", origins[i]);
            bytebuf_appendf(out, ",kind=\"%s\"} %llu\n", origin_error_kind_names[kind], load(&origins[i]->errors[kind]));
        }
    }

    append_header(out, "verge_origin_duration_seconds", "histogram",
                  "Time from sending a request to an origin until its response head arrived.");
    struct bytebuf labels = {0};
    for (size_t i = 0; i < count; i++) {
        labels.len = 0;
        append_origin_sample(&labels, "", origins[i]);
        render_histogram(out, "verge_origin_duration_seconds", (slice_t){labels.data + 1, labels.len - 1},
                         origins[i]->latency_buckets, &origins[i]->latency_sum_us, &origins[i]->latency_count);
    }
    bytebuf_free(&labels);
}

static const char *const function_error_kind_names[FUNCTION_ERROR__COUNT] = {
    [FUNCTION_ERROR_EXECUTION] = "execution",
    [FUNCTION_ERROR_TIMEOUT] = "timeout",
    [FUNCTION_ERROR_VALIDATION] = "validation",
};

static void append_function_sample(struct bytebuf *out, const char *metric, const struct function_metrics *function)
{
    bytebuf_appendf(out, "%s{function=\"", metric);
    append_label_value(out, function->name);
    bytebuf_appendf(out, "\",trigger=\"%s\"", function->trigger);
}

static void render_functions(struct bytebuf *out)
{
    size_t count = atomic_load_explicit(&function_registry_count, memory_order_acquire);
    const struct function_metrics *functions[METRICS_MAX_FUNCTIONS + 1];
    for (size_t i = 0; i < count; i++)
        functions[i] = &function_registry[i];
    if (atomic_load(&function_overflow_used))
        functions[count++] = &function_overflow;
    static const struct {
        const char *name, *type, *help;
        size_t offset;
    } counters[] = {
        {"verge_function_invocations_total", "counter", "Events an edge function ran (throttled ones excluded).",
         offsetof(struct function_metrics, invocations)},
        {"verge_function_throttles_total", "counter",
         "Events refused: workers.max_concurrency reached, or no worker free within the function's timeout.",
         offsetof(struct function_metrics, throttles)},
        {"verge_function_continued_total", "counter", "Errors passed over because the trigger says \"on_error\": \"continue\".",
         offsetof(struct function_metrics, continued)},
        {"verge_function_cold_starts_total", "counter", "Events that waited for a new worker to start.",
         offsetof(struct function_metrics, cold_starts)},
    };
    for (size_t c = 0; c < VERGE_ARRAY_SIZE(counters); c++) {
        append_header(out, counters[c].name, counters[c].type, counters[c].help);
        for (size_t i = 0; i < count; i++) {
            append_function_sample(out, counters[c].name, functions[i]);
            bytebuf_appendf(out, "} %llu\n", load((const atomic_ullong *)((const char *)functions[i] + counters[c].offset)));
        }
    }
    append_header(out, "verge_function_errors_total", "counter",
                  "Failed events, by kind (503 execution and timeout, 502 validation).");
    for (size_t i = 0; i < count; i++)
        for (int kind = 0; kind < FUNCTION_ERROR__COUNT; kind++) {
            append_function_sample(out, "verge_function_errors_total", functions[i]);
            bytebuf_appendf(out, ",kind=\"%s\"} %llu\n", function_error_kind_names[kind], load(&functions[i]->errors[kind]));
        }
    append_header(out, "verge_function_concurrent_executions", "gauge", "Events in flight or waiting for a worker.");
    for (size_t i = 0; i < count; i++) {
        append_function_sample(out, "verge_function_concurrent_executions", functions[i]);
        bytebuf_appendf(out, "} %lld\n", atomic_load_explicit(&functions[i]->concurrent, memory_order_relaxed));
    }
    append_header(out, "verge_function_duration_seconds", "histogram",
                  "How long the function ran, by the worker's clock (what REPORT says), timeouts and crashes by the proxy's.");
    struct bytebuf labels = {0};
    for (size_t i = 0; i < count; i++) {
        labels.len = 0;
        append_function_sample(&labels, "", functions[i]);
        render_histogram(out, "verge_function_duration_seconds", (slice_t){labels.data + 1, labels.len - 1},
                         functions[i]->duration_buckets, &functions[i]->duration_sum_us, &functions[i]->duration_count);
    }
    bytebuf_free(&labels);
}

static void render_counter(struct bytebuf *out, const char *name, const char *help, unsigned long long value)
{
    append_header(out, name, "counter", help);
    bytebuf_appendf(out, "%s %llu\n", name, value);
}

static void render_cache(struct bytebuf *out)
{
    render_counter(out, "verge_cache_hits_total",
                   "Requests served from a stored object (collapsed waits and stale serves included).", load(&metrics.cache_hits));
    render_counter(out, "verge_cache_misses_total", "Cacheable requests that went to the origin.", load(&metrics.cache_misses));
    render_counter(out, "verge_cache_refresh_hits_total", "Stale objects revalidated by the origin with a 304.",
                   load(&metrics.cache_refresh_hits));
    append_header(out, "verge_cache_stale_served_total", "counter", "Stale objects served, by reason.");
    bytebuf_appendf(out, "verge_cache_stale_served_total{reason=\"while_revalidate\"} %llu\n",
                    load(&metrics.cache_stale_while_revalidate));
    bytebuf_appendf(out, "verge_cache_stale_served_total{reason=\"if_error\"} %llu\n", load(&metrics.cache_stale_if_error));
    render_counter(out, "verge_cache_collapsed_total",
                   "Requests that waited on another request's origin fetch instead of making one.", load(&metrics.cache_collapsed));
    render_counter(out, "verge_cache_evictions_total", "Objects evicted to stay within cache.memory_mb.",
                   load(&cache_stats.evictions));
    append_header(out, "verge_cache_objects", "gauge", "Objects in the cache.");
    bytebuf_appendf(out, "verge_cache_objects %llu\n", load(&cache_stats.objects));
    append_header(out, "verge_cache_bytes", "gauge", "Bytes held by cached objects (heads and bodies).");
    bytebuf_appendf(out, "verge_cache_bytes %llu\n", load(&cache_stats.bytes));
    render_counter(out, "verge_cache_purged_total", "Objects removed by POST /purge.", load(&cache_stats.purged));
}

void metrics_render(struct bytebuf *out)
{
    append_header(out, "verge_requests_total", "counter", "Viewer requests answered, by status class.");
    for (int status_class = 1; status_class <= 5; status_class++)
        bytebuf_appendf(out, "verge_requests_total{status_class=\"%dxx\"} %llu\n", status_class,
                        load(&metrics.requests_by_class[status_class]));

    size_t count = atomic_load_explicit(&registry_count, memory_order_acquire);
    const struct origin_metrics *origins[METRICS_MAX_ORIGINS + 1];
    for (size_t i = 0; i < count; i++)
        origins[i] = &registry[i];
    if (atomic_load(&registry_overflow_used))
        origins[count++] = &registry_overflow;
    render_origins(out, origins, count);

    append_header(out, "verge_connections_open", "gauge", "Viewer connections currently open.");
    bytebuf_appendf(out, "verge_connections_open %lld\n", atomic_load_explicit(&metrics.connections_open, memory_order_relaxed));
    append_header(out, "verge_connections_total", "counter", "Viewer connections accepted.");
    bytebuf_appendf(out, "verge_connections_total %llu\n", load(&metrics.connections_total));
    append_header(out, "verge_tls_connections_total", "counter", "TLS handshakes completed with viewers.");
    bytebuf_appendf(out, "verge_tls_connections_total %llu\n", load(&metrics.tls_connections));
    append_header(out, "verge_tls_handshake_failures_total", "counter",
                  "TLS handshakes that failed: a protocol error, or the viewer closed or stalled mid-handshake.");
    bytebuf_appendf(out, "verge_tls_handshake_failures_total %llu\n", load(&metrics.tls_handshake_failures));
    append_header(out, "verge_tls_sessions_resumed_total", "counter", "TLS handshakes that resumed a session with a ticket.");
    bytebuf_appendf(out, "verge_tls_sessions_resumed_total %llu\n", load(&metrics.tls_sessions_resumed));
    append_header(out, "verge_connections_by_protocol_total", "counter", "Viewer connections by the protocol they spoke.");
    unsigned long long http2 = load(&metrics.http2_connections), all = load(&metrics.connections_total);
    bytebuf_appendf(out, "verge_connections_by_protocol_total{protocol=\"HTTP/1.1\"} %llu\n", all > http2 ? all - http2 : 0);
    bytebuf_appendf(out, "verge_connections_by_protocol_total{protocol=\"HTTP/2\"} %llu\n", http2);
    append_header(out, "verge_http2_streams_total", "counter", "HTTP/2 streams viewers opened (one request each).");
    bytebuf_appendf(out, "verge_http2_streams_total %llu\n", load(&metrics.http2_streams));
    append_header(out, "verge_config_generation", "gauge", "Number of the config generation being served.");
    bytebuf_appendf(out, "verge_config_generation %u\n", atomic_load_explicit(&metrics.config_generation, memory_order_relaxed));
    append_header(out, "verge_config_reloads_total", "counter", "Config reloads (SIGHUP or POST /reload), by result.");
    bytebuf_appendf(out, "verge_config_reloads_total{result=\"ok\"} %llu\n", load(&metrics.reloads_ok));
    bytebuf_appendf(out, "verge_config_reloads_total{result=\"error\"} %llu\n", load(&metrics.reloads_failed));
    append_header(out, "verge_access_log_dropped_total", "counter",
                  "Access log lines dropped because the writer could not keep up.");
    bytebuf_appendf(out, "verge_access_log_dropped_total %llu\n", load(&metrics.access_log_dropped));
    render_cache(out);
    render_functions(out);
    append_header(out, "verge_function_workers", "gauge", "Edge-function worker processes alive (starting, idle or busy).");
    bytebuf_appendf(out, "verge_function_workers %ld\n", hooks_worker_count());
    append_header(out, "verge_function_log_dropped_total", "counter",
                  "Function log entries (a line, or the lines of one print) dropped because the writer could not keep up.");
    bytebuf_appendf(out, "verge_function_log_dropped_total %llu\n", load(&metrics.function_log_dropped));
}
