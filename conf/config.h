/* config.h — verge's configuration: one JSON file (comments allowed), read
 * with yajl, validated against one table of keys (conf/schema.c), turned into
 * an immutable, refcounted generation.
 *
 * Lifetime: config_load returns a generation with refcount 1. Threads that
 * serve requests take a reference per request (config_ref) so a request
 * finishes on the generation it started with; config_unref frees the last.
 * A generation is never modified after config_load returns, so it is read
 * without locks.
 */
#ifndef VERGE_CONFIG_H
#define VERGE_CONFIG_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "../cache/policy.h"
#include "../proxy/base.h"
#include "../proxy/viewer_meta.h"

#define CONFIG_MAGIC 0x636f6e66u

struct config_address {
    char *text; /* as written, e.g. "127.0.0.1:8080" or "[::1]:8080" */
    struct sockaddr_storage sockaddr;
    socklen_t sockaddr_len;
    bool is_loopback;
};

struct tls_certificate;
struct tls_server;
struct tls_client;

struct config_certificate {
    char *cert_path; /* absolute */
    char *key_path;
    struct tls_certificate *loaded; /* read and matched at load; freed with the config */
};

struct config_tls {
    struct config_certificate *certificates;
    size_t certificate_count;
    int min_version;           /* enum tls_min_version: 0 TLSv1.2, 1 TLSv1.3 */
    struct tls_server *server; /* built at load from the certificates; owned by the config; NULL: no TLS */
};

struct config_listen {
    struct config_address address;
    struct config_tls tls;
    bool h2c; /* HTTP/2 with prior knowledge besides HTTP/1.1 (no Upgrade) */
};

enum origin_kind { ORIGIN_KIND_HTTP, ORIGIN_KIND_STATIC, ORIGIN_KIND_RESPOND };

/* Faults injected in front of an origin (local testing of failover,
 * stale-if-error and error pages). All zero: none. */
struct config_faults {
    int latency_ms;    /* added before every fetch */
    double error_rate; /* share of requests answered with error_status instead of the origin's answer */
    int error_status;
    double reset_rate; /* share of requests whose origin connection "resets" (502, or stale-if-error) */
};

enum config_fault { CONFIG_FAULT_NONE, CONFIG_FAULT_ERROR, CONFIG_FAULT_RESET };

/* Which fault a request gets, for `random` uniform in [0, 1): an error below
 * error_rate, a reset below error_rate + reset_rate, else none. Pure. */
enum config_fault config_fault_pick(const struct config_faults *faults, double random);
/* Whether the origin has any fault configured. */
bool config_faults_active(const struct config_faults *faults);

struct config_origin {
    char *name;
    enum origin_kind kind;
    /* ORIGIN_KIND_HTTP */
    char *url;  /* as written */
    char *host; /* host part of the URL (for Host: and connect) */
    uint16_t port;
    char *host_header;                /* "host" or "host:port" when the port is not the default */
    char *path_prefix;                /* path part of the URL without a trailing '/', "" when none */
    struct sockaddr_storage sockaddr; /* resolved at load time */
    socklen_t sockaddr_len;
    int connect_timeout_ms;
    int read_timeout_ms;
    int max_idle;                  /* idle keep-alive connections kept per thread */
    bool tls;                      /* an https:// url */
    char *ca_file;                 /* https: absolute path of the trust anchors; NULL: the system store */
    bool tls_verify;               /* https: check the origin's certificate (default true) */
    struct tls_client *tls_client; /* https: built at load; owned by the config */
    char *pool_identity;           /* https: "host verify ca_file": connections are shared only within it; NULL for http */
    /* ORIGIN_KIND_STATIC */
    char *static_root; /* absolute, canonical path (realpath) of the directory */
    /* ORIGIN_KIND_RESPOND: a fixed answer (a mock origin for local work) */
    int respond_status;
    char **respond_header_names, **respond_header_values;
    size_t respond_header_count;
    char *respond_body;          /* NUL-terminated; may be empty */
    struct config_faults faults; /* any kind of origin */
};

/* An edge function (issue 4). Not used by the proxy yet. */
struct config_function {
    char *name;
    char *code_path; /* absolute; a readable regular file that LuaJIT compiled at load time */
    char *handler;   /* a Lua identifier or dotted field name, default "handler" */
    char *source;    /* the code_path's text when it was checked (NUL-terminated) */
    size_t source_len;
    int memory_mb;  /* as configured: 128..10240 */
    int timeout_ms; /* as configured: 1..900000 */
    bool relaxed;   /* "limits": "relaxed": Lambda@Edge's per-trigger quotas do not cap it */
    char **env_names, **env_values;
    size_t env_count;
};

/* The four triggers, the order of config_behavior.triggers. */
enum config_trigger_kind {
    CONFIG_TRIGGER_VIEWER_REQUEST,
    CONFIG_TRIGGER_ORIGIN_REQUEST,
    CONFIG_TRIGGER_ORIGIN_RESPONSE,
    CONFIG_TRIGGER_VIEWER_RESPONSE,
    CONFIG_TRIGGER_COUNT
};

/* Lambda@Edge's quotas at a trigger (spec §3.1), applied unless relaxed. */
#define CONFIG_VIEWER_TIMEOUT_MS_MAX 5000
#define CONFIG_ORIGIN_TIMEOUT_MS_MAX 30000
#define CONFIG_VIEWER_MEMORY_MB_MAX 128

/* The limits `function` runs with at trigger `kind`: its timeout_ms and
 * memory_mb, capped by the trigger's Lambda@Edge quota unless it is relaxed
 * (what config_trigger.timeout_ms and memory_mb hold). Pure. */
void config_function_limits(const struct config_function *function, enum config_trigger_kind kind, int *timeout_ms, int *memory_mb);

struct config_trigger {
    bool set;
    size_t function_index; /* into config.functions */
    bool include_body;     /* only viewer-request and origin-request */
    bool continue_on_error;
    int timeout_ms, memory_mb; /* effective: the function's, capped by the trigger's quota unless relaxed */
};

struct config_behavior {
    char *path_pattern;  /* as written */
    size_t origin_index; /* into config.origins */
    struct config_trigger triggers[CONFIG_TRIGGER_COUNT];
    /* CloudFront's viewer headers verge adds (VIEWER_HEADER_* bits): those
     * viewer_headers lists and those the cache key's headers name. */
    unsigned viewer_headers;
    /* "cache": false leaves it zeroed (enabled false); absent, it holds the
     * defaults with enabled true. TTLs already follow CloudFront's defaulting
     * (min_ttl <= default_ttl <= max_ttl holds). Name lists live in the
     * config arena; header names are lowercase. */
    struct cache_settings cache;
};

struct config {
    unsigned magic;
    atomic_int refcount;
    struct arena arena;  /* owns every string and array below; freed by the last config_unref */
    unsigned generation; /* 1 for the first load, +1 for each successful reload (set by the caller) */
    char *source_path;

    struct config_listen *listen;
    size_t listen_count;
    int threads;

    struct config_origin *origins;
    size_t origin_count;
    struct config_behavior *behaviors;
    size_t behavior_count;
    struct config_function *functions;
    size_t function_count;
    /* viewer_countries: client networks → country, sorted for lookups */
    struct viewer_country_table viewer_countries;

    struct {
        int max_concurrency; /* events in flight or waiting, all functions together */
        int idle_timeout_s;  /* an idle worker exits after this */
    } workers;

    struct {
        char *path;   /* "-" is stdout; NULL when access logging is off ("access_log": false) */
        char *format; /* "json" */
    } access_log;

    struct {
        char *path; /* the edge functions' log: "-" is stdout; NULL when off ("function_log": false) */
    } function_log;

    struct {
        bool enabled;
        struct config_address address;
        char *token_file; /* NULL when not set */
        char *token;      /* contents of token_file, trimmed; NULL when not set */
    } admin;

    struct {
        int header_read_ms; /* whole request head must arrive within this (slowloris) */
        int idle_ms;        /* keep-alive idle, and inactivity while reading a request body */
        int send_ms;        /* inactivity while writing to a viewer */
        int drain_ms;       /* SIGTERM: how long in-flight requests may take */
    } timeouts;

    struct {
        uint64_t memory_bytes;     /* cache.memory_mb in bytes: heads + bodies of stored objects */
        uint64_t max_object_bytes; /* cache.max_object_mb in bytes: bigger responses pass through */
        int eviction;              /* 0 sieve, 1 lru (enum cache_eviction_policy's order) */
    } cache;

    struct {
        bool trace_header;  /* X-Verge-Trace on responses (always under verge dev) */
        bool debug_headers; /* X-Verge-Debug-Country overrides CloudFront-Viewer-Country (set by verge dev) */
    } dev;
};

/* Collected validation messages. Each message names the key by its JSON
 * path and says what was expected, e.g.
 *   behaviors[1].origin: unknown origin "ap" (known: app, site) */
struct config_errors {
    char **messages;
    size_t count;
};

void config_errors_free(struct config_errors *errors);

/* Reads, parses and validates the file at `path`. Returns a new generation
 * (refcount 1), or NULL with at least one message in `errors`. Relative
 * paths in the file (static roots, token files, log paths, function code) are resolved
 * against the directory holding the file. Origin hosts are resolved here. */
struct config *config_load(const char *path, struct config_errors *errors);

/* Whether origin hosts are resolved with DNS at load (default true). When
 * false, only numeric hosts are accepted (a name is an error), so loading
 * never blocks on the network: the fuzzer sets it. Set it before loading,
 * from one thread; it is not synchronised. */
extern bool config_resolve_hosts;

/* Whether this process is `verge dev` (default false). When true, the keys
 * documented as "on under verge dev" default to true instead of false:
 * dev.debug_headers (a value written in the file still wins); the proxy also
 * reads it for its dev behaviour (request traces, X-Verge-Trace, logs). Set
 * it before the first load, from one thread; it is not written again. */
extern bool config_dev_mode;

/* The same, from a buffer; `base_dir` resolves relative paths. */
struct config *config_load_buffer(const char *text, size_t len, const char *base_dir, struct config_errors *errors);

/* The line of `text` (a config file) where the value at `json_path` is — the
 * path as error messages name keys: "behaviors[0].origin", "origins.app.url" —
 * or of the deepest part of the path that exists (a missing key: its object).
 * 0 when the text is not JSON. Pure; verge dev uses it to link errors. */
unsigned config_locate_line(const char *text, size_t len, const char *json_path);
void config_ref(struct config *config);
void config_unref(struct config *config);

/* Returns the first behavior whose pattern matches `path` (the URL path, no
 * query). Never NULL for a valid config, whose last behavior is "*". */
const struct config_behavior *config_match_behavior(const struct config *config, slice_t path);

/* CloudFront path-pattern match: '*' any run of characters (including '/'),
 * '?' exactly one character, case-sensitive, leading '/' optional on either
 * side. Pure. */
bool config_path_pattern_match(slice_t pattern, slice_t path);

/* Writes the config reference (Markdown table generated from the key table:
 * key, type, default, range, description) to `out`. */
void config_write_reference(struct bytebuf *out);

/* True when `document` (e.g. README.md) contains the table exactly as
 * config_write_reference writes it, so a test can check the docs are current. */
bool config_reference_embedded_in(slice_t document);

#endif
