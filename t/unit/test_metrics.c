/* test_metrics.c — counters, histogram bucket placement, label escaping and
 * the shape of the Prometheus text exposition, including the cache's series
 * (some of them read from the store's cache_stats). Metrics are process
 * globals, so the tests use distinct origin names and check the values they
 * caused. */
#include <stdlib.h>

#include "../../cache/store.h"
#include "../../proxy/metrics.h"
#include "unit.h"

static char *render(void)
{
    struct bytebuf out = {0};
    metrics_render(&out);
    bytebuf_append(&out, "", 1);
    return out.data;
}

/* True when `text` has a line that is exactly `line`. */
static bool has_line(const char *text, const char *line)
{
    size_t length = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[length] == '\n')
            return true;
    return false;
}

static void test_request_classes(void)
{
    metrics_count_request(200);
    metrics_count_request(204);
    metrics_count_request(301);
    metrics_count_request(404);
    metrics_count_request(503);
    metrics_count_request(101);
    metrics_count_request(99);  /* not a status: ignored */
    metrics_count_request(600); /* ignored */
    metrics_count_request(-1);  /* ignored */
    char *text = render();
    CHECK(has_line(text, "# TYPE verge_requests_total counter"));
    CHECK(has_line(text, "verge_requests_total{status_class=\"1xx\"} 1"));
    CHECK(has_line(text, "verge_requests_total{status_class=\"2xx\"} 2"));
    CHECK(has_line(text, "verge_requests_total{status_class=\"3xx\"} 1"));
    CHECK(has_line(text, "verge_requests_total{status_class=\"4xx\"} 1"));
    CHECK(has_line(text, "verge_requests_total{status_class=\"5xx\"} 1"));
    free(text);
}

static void test_gauges_and_reloads(void)
{
    atomic_fetch_add(&metrics.connections_open, 3);
    atomic_fetch_sub(&metrics.connections_open, 1);
    atomic_fetch_add(&metrics.connections_total, 7);
    atomic_store(&metrics.config_generation, 4);
    atomic_fetch_add(&metrics.reloads_ok, 3);
    atomic_fetch_add(&metrics.reloads_failed, 2);
    char *text = render();
    CHECK(has_line(text, "# TYPE verge_connections_open gauge"));
    CHECK(has_line(text, "verge_connections_open 2"));
    CHECK(has_line(text, "verge_connections_total 7"));
    CHECK(has_line(text, "# TYPE verge_config_generation gauge"));
    CHECK(has_line(text, "verge_config_generation 4"));
    CHECK(has_line(text, "verge_config_reloads_total{result=\"ok\"} 3"));
    CHECK(has_line(text, "verge_config_reloads_total{result=\"error\"} 2"));
    free(text);
}

static void test_origin_registry(void)
{
    struct origin_metrics *app = metrics_origin("app");
    CHECK(app != NULL);
    CHECK(metrics_origin("app") == app);
    CHECK(metrics_origin("site") != app);
    CHECK_STR(app->name, "app");

    /* Names longer than the slot are truncated consistently. */
    char long_name[200];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    struct origin_metrics *long_origin = metrics_origin(long_name);
    CHECK(metrics_origin(long_name) == long_origin);
    CHECK_INT(strlen(long_origin->name), sizeof long_origin->name - 1);

    atomic_fetch_add(&app->requests, 5);
    atomic_fetch_add(&app->errors[ORIGIN_ERROR_TIMEOUT], 2);
    atomic_fetch_add(&app->errors[ORIGIN_ERROR_REFUSED], 1);
    char *text = render();
    CHECK(has_line(text, "# TYPE verge_origin_requests_total counter"));
    CHECK(has_line(text, "verge_origin_requests_total{origin=\"app\"} 5"));
    CHECK(has_line(text, "verge_origin_requests_total{origin=\"site\"} 0"));
    CHECK(has_line(text, "verge_origin_errors_total{origin=\"app\",kind=\"refused\"} 1"));
    CHECK(has_line(text, "verge_origin_errors_total{origin=\"app\",kind=\"reset\"} 0"));
    CHECK(has_line(text, "verge_origin_errors_total{origin=\"app\",kind=\"timeout\"} 2"));
    CHECK(has_line(text, "verge_origin_errors_total{origin=\"app\",kind=\"malformed\"} 0"));
    free(text);
}

static void test_histogram_buckets(void)
{
    struct origin_metrics *origin = metrics_origin("histogram");
    metrics_observe_origin_latency(origin, 0.0005); /* le 0.001 */
    metrics_observe_origin_latency(origin, 0.001);  /* le 0.001: bounds are inclusive */
    metrics_observe_origin_latency(origin, 0.003);  /* le 0.005 */
    metrics_observe_origin_latency(origin, 0.3);    /* le 0.5 */
    metrics_observe_origin_latency(origin, 5.0);    /* le 5 */
    metrics_observe_origin_latency(origin, 7.0);    /* +Inf only */
    metrics_observe_origin_latency(origin, -1.0);   /* clamped to 0: le 0.001 */
    CHECK_INT(atomic_load(&origin->latency_buckets[0]), 3);
    CHECK_INT(atomic_load(&origin->latency_buckets[2]), 1);
    CHECK_INT(atomic_load(&origin->latency_buckets[8]), 1);
    CHECK_INT(atomic_load(&origin->latency_buckets[11]), 1);
    CHECK_INT(atomic_load(&origin->latency_count), 7);

    char *text = render();
    CHECK(has_line(text, "# TYPE verge_origin_duration_seconds histogram"));
    const char *expected[] = {
        "verge_origin_duration_seconds_bucket{origin=\"histogram\",le=\"0.001\"} 3",
        "verge_origin_duration_seconds_bucket{origin=\"histogram\",le=\"0.0025\"} 3",
        "verge_origin_duration_seconds_bucket{origin=\"histogram\",le=\"0.005\"} 4",
        "verge_origin_duration_seconds_bucket{origin=\"histogram\",le=\"0.01\"} 4",
        "verge_origin_duration_seconds_bucket{origin=\"histogram\",le=\"0.025\"} 4",
        "verge_origin_duration_seconds_bucket{origin=\"histogram\",le=\"0.05\"} 4",
        "verge_origin_duration_seconds_bucket{origin=\"histogram\",le=\"0.1\"} 4",
        "verge_origin_duration_seconds_bucket{origin=\"histogram\",le=\"0.25\"} 4",
        "verge_origin_duration_seconds_bucket{origin=\"histogram\",le=\"0.5\"} 5",
        "verge_origin_duration_seconds_bucket{origin=\"histogram\",le=\"1\"} 5",
        "verge_origin_duration_seconds_bucket{origin=\"histogram\",le=\"2.5\"} 5",
        "verge_origin_duration_seconds_bucket{origin=\"histogram\",le=\"5\"} 6",
        "verge_origin_duration_seconds_bucket{origin=\"histogram\",le=\"+Inf\"} 7",
        "verge_origin_duration_seconds_sum{origin=\"histogram\"} 12.304500",
        "verge_origin_duration_seconds_count{origin=\"histogram\"} 7",
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(expected); i++) {
        bool found = has_line(text, expected[i]);
        if (!found)
            fprintf(stderr, "missing line: %s\n", expected[i]);
        CHECK(found);
    }
    /* Buckets appear in ascending order. */
    const char *previous = text;
    for (size_t i = 0; i < 13; i++) {
        const char *at = strstr(text, expected[i]);
        CHECK(at != NULL && at >= previous);
        if (at != NULL)
            previous = at;
    }
    free(text);
}

static void test_label_escaping(void)
{
    struct origin_metrics *weird = metrics_origin("we\"ird\\na\nme");
    atomic_fetch_add(&weird->requests, 1);
    char *text = render();
    CHECK(has_line(text, "verge_origin_requests_total{origin=\"we\\\"ird\\\\na\\nme\"} 1"));
    /* No raw newline inside a label: every line is a comment or a sample. */
    for (char *line = text; *line != '\0';) {
        char *end = strchr(line, '\n');
        CHECK(end != NULL);
        if (end == NULL)
            break;
        *end = '\0';
        bool is_comment = strncmp(line, "# HELP verge_", 13) == 0 || strncmp(line, "# TYPE verge_", 13) == 0;
        bool is_sample = strncmp(line, "verge_", 6) == 0 && strrchr(line, ' ') != NULL;
        if (!is_comment && !is_sample)
            fprintf(stderr, "bad line: %s\n", line);
        CHECK(is_comment || is_sample);
        line = end + 1;
    }
    free(text);
}

static void test_cache_counters(void)
{
    char *text = render();
    CHECK(has_line(text, "verge_cache_hits_total 0"));
    CHECK(has_line(text, "verge_cache_objects 0"));
    free(text);

    atomic_fetch_add(&metrics.cache_hits, 11);
    atomic_fetch_add(&metrics.cache_misses, 4);
    atomic_fetch_add(&metrics.cache_refresh_hits, 3);
    atomic_fetch_add(&metrics.cache_stale_while_revalidate, 2);
    atomic_fetch_add(&metrics.cache_stale_if_error, 5);
    atomic_fetch_add(&metrics.cache_collapsed, 99);
    atomic_fetch_add(&cache_stats.purged, 7);
    /* the store's own counters */
    atomic_store(&cache_stats.objects, 12);
    atomic_store(&cache_stats.bytes, 123456789012ull);
    atomic_store(&cache_stats.evictions, 8);
    text = render();
    static const char *const expected[] = {
        "# TYPE verge_cache_hits_total counter",
        "verge_cache_hits_total 11",
        "# TYPE verge_cache_misses_total counter",
        "verge_cache_misses_total 4",
        "# TYPE verge_cache_refresh_hits_total counter",
        "verge_cache_refresh_hits_total 3",
        "# TYPE verge_cache_stale_served_total counter",
        "verge_cache_stale_served_total{reason=\"while_revalidate\"} 2",
        "verge_cache_stale_served_total{reason=\"if_error\"} 5",
        "# TYPE verge_cache_collapsed_total counter",
        "verge_cache_collapsed_total 99",
        "# TYPE verge_cache_evictions_total counter",
        "verge_cache_evictions_total 8",
        "# TYPE verge_cache_objects gauge",
        "verge_cache_objects 12",
        "# TYPE verge_cache_bytes gauge",
        "verge_cache_bytes 123456789012",
        "# TYPE verge_cache_purged_total counter",
        "verge_cache_purged_total 7",
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(expected); i++) {
        bool found = has_line(text, expected[i]);
        if (!found)
            fprintf(stderr, "missing line: %s\n", expected[i]);
        CHECK(found);
    }
    /* each family once: a scraper rejects a repeated HELP/TYPE */
    const char *first = strstr(text, "# TYPE verge_cache_hits_total ");
    CHECK(first != NULL && strstr(first + 1, "# TYPE verge_cache_hits_total ") == NULL);
    free(text);
    atomic_store(&cache_stats.objects, 0);
    atomic_store(&cache_stats.bytes, 0);
    atomic_store(&cache_stats.evictions, 0);
}

static void test_every_family_has_help_and_type(void)
{
    char *text = render();
    const char *families[] = {"verge_requests_total",
                              "verge_origin_requests_total",
                              "verge_origin_errors_total",
                              "verge_origin_duration_seconds",
                              "verge_connections_open",
                              "verge_connections_total",
                              "verge_config_generation",
                              "verge_config_reloads_total",
                              "verge_access_log_dropped_total",
                              "verge_cache_hits_total",
                              "verge_cache_misses_total",
                              "verge_cache_refresh_hits_total",
                              "verge_cache_stale_served_total",
                              "verge_cache_collapsed_total",
                              "verge_cache_evictions_total",
                              "verge_cache_objects",
                              "verge_cache_bytes",
                              "verge_cache_purged_total"};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(families); i++) {
        char help[128], type[128];
        snprintf(help, sizeof help, "\n# HELP %s ", families[i]);
        snprintf(type, sizeof type, "\n# TYPE %s ", families[i]);
        CHECK(strstr(text, help) != NULL || strncmp(text, help + 1, strlen(help + 1)) == 0);
        CHECK(strstr(text, type) != NULL);
    }
    free(text);
}

int main(void)
{
    UNIT_RUN(test_request_classes);
    UNIT_RUN(test_gauges_and_reloads);
    UNIT_RUN(test_origin_registry);
    UNIT_RUN(test_histogram_buckets);
    UNIT_RUN(test_label_escaping);
    UNIT_RUN(test_cache_counters);
    UNIT_RUN(test_every_family_has_help_and_type);
    return unit_summary();
}
