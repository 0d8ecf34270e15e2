/* metrics.h — process-wide counters and histograms, rendered as Prometheus
 * text by the admin listener.
 *
 * Counters are relaxed atomics: any thread may bump them without locks, and a
 * scrape reads a value that is at worst a few increments behind. Per-origin
 * metrics are registered by name and live for the whole process (origins may
 * come and go with reloads; their series stay), so a pointer returned by
 * metrics_origin is valid forever and is cached per config generation.
 */
#ifndef VERGE_METRICS_H
#define VERGE_METRICS_H

#include <stdatomic.h>

#include "base.h"

#define METRICS_LATENCY_BUCKETS 12

enum origin_error_kind {
    ORIGIN_ERROR_REFUSED,
    ORIGIN_ERROR_RESET,
    ORIGIN_ERROR_TIMEOUT,
    ORIGIN_ERROR_MALFORMED,
    ORIGIN_ERROR_TLS, /* an https origin's handshake failed (e.g. its certificate is not trusted) */
    ORIGIN_ERROR__COUNT
};

struct origin_metrics {
    char name[64];
    atomic_ullong requests;
    atomic_ullong errors[ORIGIN_ERROR__COUNT];
    atomic_ullong latency_buckets[METRICS_LATENCY_BUCKETS]; /* cumulative rendering is done at scrape time */
    atomic_ullong latency_count;
    atomic_ullong latency_sum_us;
};

struct metrics {
    atomic_ullong requests_by_class[6]; /* index 1..5 = 1xx..5xx */
    atomic_llong connections_open;
    atomic_ullong connections_total;
    atomic_ullong tls_connections;        /* TLS handshakes completed */
    atomic_ullong tls_handshake_failures; /* a protocol error, or the viewer closed or stalled mid-handshake */
    atomic_ullong tls_sessions_resumed;   /* handshakes that resumed a session (ticket) */
    atomic_ullong http2_connections;      /* connections that speak HTTP/2 (ALPN h2 or the h2c preface) */
    atomic_ullong http2_streams;          /* HTTP/2 requests (streams a client opened) */
    atomic_uint config_generation;
    atomic_ullong reloads_ok;
    atomic_ullong reloads_failed;
    atomic_ullong access_log_dropped;   /* lines the access log writer could not keep up with */
    atomic_ullong function_log_dropped; /* entries (a line, or one print's lines) the function log writer could not keep up with */

    /* The cache (bumped by the request path; objects, bytes and evictions come
     * from cache_stats in cache/store.h). */
    atomic_ullong cache_hits;                   /* served from a stored object (incl. collapsed waiters, stale serves) */
    atomic_ullong cache_misses;                 /* went to the origin for a cacheable request */
    atomic_ullong cache_refresh_hits;           /* a stale object revalidated by a 304 */
    atomic_ullong cache_stale_while_revalidate; /* stale served while one background refresh runs */
    atomic_ullong cache_stale_if_error;         /* stale served because the origin failed */
    atomic_ullong cache_collapsed;              /* requests that waited on another request's fetch */
};

extern struct metrics metrics;

/* One edge function at one trigger (spec §8.2's per-function metrics). Like
 * origins, registered by name for the life of the process. */
enum function_error_kind {
    FUNCTION_ERROR_EXECUTION,  /* raised, failed to load, worker died */
    FUNCTION_ERROR_TIMEOUT,    /* killed at its deadline */
    FUNCTION_ERROR_VALIDATION, /* returned a result that failed validation */
    FUNCTION_ERROR__COUNT
};

struct function_metrics {
    char name[64];
    char trigger[16];
    atomic_ullong invocations; /* events a worker ran (not throttled ones) */
    atomic_ullong errors[FUNCTION_ERROR__COUNT];
    atomic_ullong throttles; /* refused: no concurrency left, or no worker in time */
    atomic_ullong continued; /* errors passed over by "on_error": "continue" */
    atomic_ullong cold_starts;
    atomic_llong concurrent; /* events of this function and trigger in flight or waiting */
    atomic_ullong duration_buckets[METRICS_LATENCY_BUCKETS];
    atomic_ullong duration_count;
    atomic_ullong duration_sum_us;
};

/* Upper bounds (seconds) of the latency histogram buckets, ascending; the
 * implicit last bucket is +Inf. */
extern const double metrics_latency_bounds[METRICS_LATENCY_BUCKETS];

/* Counts one answered viewer request by status class. */
void metrics_count_request(int status);
/* Returns the metrics of the origin called `name`, registering it on first
 * use (takes a lock: call it when a generation is built, not per request). */
struct origin_metrics *metrics_origin(const char *name);
/* Records one origin response time. */
void metrics_observe_origin_latency(struct origin_metrics *origin, double seconds);
/* Returns the metrics of function `name` at `trigger` ("viewer-request"...),
 * registering them on first use (takes a lock: call it when a pool is made,
 * not per event). */
struct function_metrics *metrics_function(const char *name, const char *trigger);
/* Records one invocation's duration. */
void metrics_observe_function_duration(struct function_metrics *function, double seconds);
/* Appends the Prometheus text exposition of everything to `out`. */
void metrics_render(struct bytebuf *out);

#endif
