/* schema.c — every config key, declared once in config_schema: its JSON
 * path, type, range, default, one-line doc and where its value lands in
 * struct config; plus the setters for keys that need more than a type check
 * (addresses, URLs, directories, token files, cache-key name lists, edge
 * function files, env maps and triggers), the finishers that check rules
 * spanning several keys (CloudFront's TTL defaulting among them), and the
 * Markdown reference generated from the table.
 *
 * The walk that applies the table is in config.c. Table order is the order of
 * the reference and of the walk: origins and functions come before behaviors
 * (a behavior names an origin, its triggers name functions and take their
 * limits) and listen before admin (they must not collide).
 * Everything here runs inside one config_load call; no shared state besides
 * reading config_resolve_hosts.
 */
#include "schema.h"

#include "../hooks/compile.h"
#include "../proxy/tls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN_MAX_BYTES 4096
#define PATH_PATTERN_MAX 255
#define PATH_PATTERN_CHARS "A-Z a-z 0-9 _ - . * $ / ~ \" ' @ : + & ?"

static int default_thread_count(void);
static void set_address(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_origin_url(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_static_root(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_path_pattern(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_behavior_origin(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_file_path(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_path_or_false(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_token_file(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void finish_listen(struct loader *, const char *, const struct json_value *, char *);
static void set_certificate_path(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void finish_certificate(struct loader *, const char *, const struct json_value *, char *);
static void finish_listen_tls(struct loader *, const char *, const struct json_value *, char *);
static void finish_origin(struct loader *, const char *, const struct json_value *, char *);
static void finish_behaviors(struct loader *, const char *, const struct json_value *, char *);
static void finish_admin(struct loader *, const char *, const struct json_value *, char *);
static void set_enum_index(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_query_names(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_header_names(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_cookie_names(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void finish_behavior_cache(struct loader *, const char *, const struct json_value *, char *);
static void finish_cache(struct loader *, const char *, const struct json_value *, char *);
static void set_function_code(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_function_handler(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_function_env(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_respond_headers(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_rate(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void finish_faults(struct loader *, const char *, const struct json_value *, char *);
static void set_function_limits(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_trigger(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_viewer_countries(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void set_viewer_headers(struct loader *, const struct schema_key *, const char *, const struct json_value *, char *);
static void finish_behavior(struct loader *, const char *, const struct json_value *, char *);
static void finish_dev(struct loader *, const char *, const struct json_value *, char *);

static const char *const access_log_formats[] = {"json", NULL};
/* Same order as enum tls_min_version: the index is what is stored. */
static const char *const tls_min_versions[] = {"TLSv1.2", "TLSv1.3", NULL};
static const char *const function_limits[] = {"lambda", "relaxed", NULL};
#define FUNCTION_ENV_MAX 64
#define RESPOND_HEADERS_MAX 64
#define FUNCTION_HANDLER_MAX 255
#define TRIGGER_EXPECTED "a function name or {\"function\": name, \"include_body\": bool, \"on_error\": \"fail\" or \"continue\"}"
#define TRIGGER_ROW(trigger_name, kind, what)                                                                                      \
    {                                                                                                                              \
        .pattern = "behaviors[].triggers." trigger_name, .type = SCHEMA_CUSTOM, .expected = TRIGGER_EXPECTED,                      \
        .default_doc = "none", .set = set_trigger, .offset = offsetof(struct config_behavior, triggers[kind]), .doc = what         \
    }
/* Same order as enum cache_eviction_policy: the index is what is stored. */
static const char *const cache_evictions[] = {"sieve", "lru", NULL};

#define VIEWER_COUNTRIES_MAX 100000
#define VIEWER_HEADER_NAMES                                                                                                        \
    "`CloudFront-Viewer-Country`, `CloudFront-Is-Desktop-Viewer`, `CloudFront-Is-Mobile-Viewer`, "                                 \
    "`CloudFront-Is-SmartTV-Viewer`, `CloudFront-Is-Tablet-Viewer`, `CloudFront-Forwarded-Proto`"

/* CloudFront's TTL defaults and its limit for a TTL (100 years). */
#define CACHE_DEFAULT_TTL 86400
#define CACHE_MAX_TTL 31536000
#define CACHE_TTL_LIMIT 3153600000LL
/* CloudFront's quota of names in one query string, header or cookie list. */
#define CACHE_KEY_NAMES_MAX 10
#define MIB (1LL << 20)
#define CACHE_MEMORY_MB_MAX 1048576 /* 1 TiB */
#define CACHE_OBJECT_MB_MAX 65536

#define ADDRESS_EXPECTED "\"IPv4:port\" or \"[IPv6]:port\""

/* Every key, once. Order matters twice: it is the order of the reference
 * and of the walk (origins and functions before behaviors, listen before
 * admin). */
const struct schema_key config_schema[] = {
    {.pattern = "", .type = SCHEMA_OBJECT, .doc = "the whole file"},

    {.pattern = "listen",
     .type = SCHEMA_ARRAY,
     .flags = KEY_REQUIRED,
     .min = 1,
     .max = 64,
     .offset = offsetof(struct config, listen),
     .count_offset = offsetof(struct config, listen_count),
     .element_size = sizeof(struct config_listen),
     .finish = finish_listen,
     .doc = "Addresses the viewer listener binds (every thread binds each one with SO_REUSEPORT)."},
    {.pattern = "listen[]", .type = SCHEMA_OBJECT, .doc = "One listen address."},
    {.pattern = "listen[].address",
     .type = SCHEMA_STRING,
     .flags = KEY_REQUIRED,
     .expected = ADDRESS_EXPECTED,
     .offset = offsetof(struct config_listen, address),
     .set = set_address,
     .doc = "Numeric address and port to bind, e.g. `0.0.0.0:8080` or `[::]:8080`."},
    {.pattern = "listen[].h2c",
     .type = SCHEMA_BOOLEAN,
     .default_value = "false",
     .offset = offsetof(struct config_listen, h2c),
     .doc = "Also serve HTTP/2 over cleartext to clients that start with its preface (prior knowledge; no `Upgrade: h2c`). "
            "TLS listeners offer HTTP/2 by ALPN."},
    {.pattern = "listen[].tls",
     .type = SCHEMA_OBJECT,
     .finish = finish_listen_tls,
     .default_doc = "none (plain HTTP)",
     .doc = "HTTPS on this address: certificates (SNI picks one; the first is the default), session tickets, ALPN h2 and http/1.1. "
            "Changing whether a listener has TLS takes effect at the next restart; its certificates reload."},
    {.pattern = "listen[].tls.certificates",
     .type = SCHEMA_ARRAY,
     .flags = KEY_REQUIRED,
     .min = 1,
     .max = 64,
     .offset = offsetof(struct config_listen, tls.certificates),
     .count_offset = offsetof(struct config_listen, tls.certificate_count),
     .element_size = sizeof(struct config_certificate),
     .doc = "Certificates with their keys. A viewer's SNI name picks the one whose subjectAltName DNS names (or CN, "
            "without SANs) match: exact names before wildcards (`*.example.com`, one label); none matching: the first."},
    {.pattern = "listen[].tls.certificates[]",
     .type = SCHEMA_OBJECT,
     .finish = finish_certificate,
     .doc = "One certificate: read and checked against its key at load and reload."},
    {.pattern = "listen[].tls.certificates[].cert",
     .type = SCHEMA_STRING,
     .flags = KEY_REQUIRED,
     .expected = "a file path",
     .offset = offsetof(struct config_certificate, cert_path),
     .set = set_certificate_path,
     .doc = "PEM file: the certificate, then its intermediates (relative to the config file's directory)."},
    {.pattern = "listen[].tls.certificates[].key",
     .type = SCHEMA_STRING,
     .flags = KEY_REQUIRED,
     .expected = "a file path",
     .offset = offsetof(struct config_certificate, key_path),
     .set = set_certificate_path,
     .doc = "PEM file: the certificate's private key, unencrypted (relative to the config file's directory)."},
    {.pattern = "listen[].tls.min_version",
     .type = SCHEMA_ENUM,
     .values = tls_min_versions,
     .default_value = "TLSv1.2",
     .offset = offsetof(struct config_listen, tls.min_version),
     .set = set_enum_index,
     .doc = "Oldest TLS version accepted: `TLSv1.2` (with ECDHE and AEAD suites only) or `TLSv1.3`."},

    {.pattern = "threads",
     .type = SCHEMA_INTEGER,
     .min = 1,
     .max = 256,
     .default_function = default_thread_count,
     .default_doc = "number of online CPUs",
     .offset = offsetof(struct config, threads),
     .doc = "Event-loop threads; each owns its connections."},

    {.pattern = "origins",
     .type = SCHEMA_MAP,
     .flags = KEY_REQUIRED,
     .min = 1,
     .max = 1024,
     .offset = offsetof(struct config, origins),
     .count_offset = offsetof(struct config, origin_count),
     .element_size = sizeof(struct config_origin),
     .name_offset = offsetof(struct config_origin, name),
     .doc = "Origins by name (letters, digits, `_`, `-`); behaviors refer to them by that name."},
    {.pattern = "origins.*",
     .type = SCHEMA_OBJECT,
     .finish = finish_origin,
     .doc = "One origin: exactly one of `url` (an HTTP server), `static` (a directory) or `respond` (a fixed answer)."},
    {.pattern = "origins.*.url",
     .type = SCHEMA_STRING,
     .expected = "\"http[s]://host[:port][/prefix]\"",
     .set = set_origin_url,
     .doc = "HTTP or HTTPS origin; the host is resolved once, at load. The prefix is prepended to request paths. "
            "HTTPS sends the host as SNI and checks that the certificate names it."},
    {.pattern = "origins.*.static",
     .type = SCHEMA_STRING,
     .expected = "a directory path",
     .set = set_static_root,
     .offset = offsetof(struct config_origin, static_root),
     .doc = "Serve files from this directory (relative to the config file's directory)."},
    {.pattern = "origins.*.respond",
     .type = SCHEMA_OBJECT,
     .default_doc = "none",
     .doc = "A mock origin for local work: every request gets this answer (through the cache and the triggers like any "
            "origin's)."},
    {.pattern = "origins.*.respond.status",
     .type = SCHEMA_INTEGER,
     .min = 200,
     .max = 599,
     .default_value = "200",
     .offset = offsetof(struct config_origin, respond_status),
     .doc = "Status of the answer."},
    {.pattern = "origins.*.respond.headers",
     .type = SCHEMA_CUSTOM,
     .max = RESPOND_HEADERS_MAX,
     .expected = "object of strings",
     .default_doc = "`{}`",
     .set = set_respond_headers,
     .doc = "Header fields of the answer (at most 64; not the framing ones: `Content-Length`, `Transfer-Encoding`, "
            "`Connection`). `Date` and `Server` are added."},
    {.pattern = "origins.*.respond.body",
     .type = SCHEMA_STRING,
     .default_value = "",
     .offset = offsetof(struct config_origin, respond_body),
     .doc = "Body of the answer (text)."},
    {.pattern = "origins.*.faults",
     .type = SCHEMA_OBJECT,
     .finish = finish_faults,
     .default_doc = "none",
     .doc = "Faults injected in front of this origin, for trying failover, stale-if-error and error pages locally."},
    {.pattern = "origins.*.faults.latency_ms",
     .type = SCHEMA_INTEGER,
     .min = 0,
     .max = 600000,
     .default_value = "0",
     .offset = offsetof(struct config_origin, faults.latency_ms),
     .doc = "Added before every fetch from this origin."},
    {.pattern = "origins.*.faults.error_rate",
     .type = SCHEMA_CUSTOM,
     .expected = "a number from 0 to 1",
     .default_doc = "0",
     .offset = offsetof(struct config_origin, faults.error_rate),
     .set = set_rate,
     .doc = "Share of requests answered with `error_status` instead of the origin's answer (as if the origin had sent it)."},
    {.pattern = "origins.*.faults.error_status",
     .type = SCHEMA_INTEGER,
     .min = 400,
     .max = 599,
     .default_value = "503",
     .offset = offsetof(struct config_origin, faults.error_status),
     .doc = "Status of those answers."},
    {.pattern = "origins.*.faults.reset_rate",
     .type = SCHEMA_CUSTOM,
     .expected = "a number from 0 to 1",
     .default_doc = "0",
     .offset = offsetof(struct config_origin, faults.reset_rate),
     .set = set_rate,
     .doc = "Share of requests whose origin connection resets before an answer (502, or a stale object with stale-if-error)."},
    {.pattern = "origins.*.connect_timeout_ms",
     .type = SCHEMA_INTEGER,
     .min = 1,
     .max = 600000,
     .default_value = "1000",
     .offset = offsetof(struct config_origin, connect_timeout_ms),
     .doc = "Time allowed to connect to a `url` origin."},
    {.pattern = "origins.*.read_timeout_ms",
     .type = SCHEMA_INTEGER,
     .min = 1,
     .max = 3600000,
     .default_value = "30000",
     .offset = offsetof(struct config_origin, read_timeout_ms),
     .doc = "Longest wait for the next bytes of a `url` origin's response."},
    {.pattern = "origins.*.ca_file",
     .type = SCHEMA_STRING,
     .expected = "a file path",
     .offset = offsetof(struct config_origin, ca_file),
     .set = set_certificate_path,
     .default_doc = "the system trust store",
     .doc = "`https` origins: PEM file of the certificates that may vouch for the origin's (relative to the config "
            "file's directory)."},
    {.pattern = "origins.*.tls_verify",
     .type = SCHEMA_BOOLEAN,
     .default_value = "true",
     .offset = offsetof(struct config_origin, tls_verify),
     .doc = "`https` origins: check the origin's certificate chain and name. `false` is for local testing and "
            "logs a warning at start and reload."},
    {.pattern = "origins.*.max_idle",
     .type = SCHEMA_INTEGER,
     .min = 0,
     .max = 10000,
     .default_value = "32",
     .offset = offsetof(struct config_origin, max_idle),
     .doc = "Idle keep-alive connections to a `url` origin kept per thread."},

    {.pattern = "functions",
     .type = SCHEMA_MAP,
     .min = 0,
     .max = 1024,
     .offset = offsetof(struct config, functions),
     .count_offset = offsetof(struct config, function_count),
     .element_size = sizeof(struct config_function),
     .name_offset = offsetof(struct config_function, name),
     .default_doc = "none",
     .doc = "Edge functions (Lua) by name (letters, digits, `_`, `-`); behaviors' triggers refer to them by that name."},
    {.pattern = "functions.*", .type = SCHEMA_OBJECT, .doc = "One edge function."},
    {.pattern = "functions.*.code",
     .type = SCHEMA_STRING,
     .flags = KEY_REQUIRED,
     .expected = "a file path",
     .set = set_function_code,
     .offset = offsetof(struct config_function, code_path),
     .doc = "The Lua file (relative to the config file's directory); it must be a readable regular file of Lua text that "
            "compiles (checked at load and reload; bytecode is refused)."},
    {.pattern = "functions.*.handler",
     .type = SCHEMA_STRING,
     .default_value = "handler",
     .expected = "a Lua name or dotted field name (e.g. \"handler\", \"app.handle\")",
     .set = set_function_handler,
     .offset = offsetof(struct config_function, handler),
     .doc = "The global the chunk defines, or the field of the table it returns, called as `handler(event, context)`."},
    {.pattern = "functions.*.memory_mb",
     .type = SCHEMA_INTEGER,
     .min = 128,
     .max = 10240,
     .default_value = "128",
     .offset = offsetof(struct config_function, memory_mb),
     .doc = "Memory limit in MB; viewer triggers cap it at 128 unless `limits` is `relaxed`."},
    {.pattern = "functions.*.timeout_ms",
     .type = SCHEMA_INTEGER,
     .min = 1,
     .max = 900000,
     .default_value = "3000",
     .offset = offsetof(struct config_function, timeout_ms),
     .doc = "Time limit per invocation; capped at 5000 at viewer triggers and 30000 at origin triggers unless `limits` is "
            "`relaxed`."},
    {.pattern = "functions.*.env",
     .type = SCHEMA_CUSTOM,
     .max = FUNCTION_ENV_MAX,
     .expected = "object of strings",
     .default_doc = "`{}`",
     .set = set_function_env,
     .doc = "Environment the function sees with `os.getenv` (and nothing else); names match `[A-Za-z_][A-Za-z0-9_]*`, at "
            "most 64."},
    {.pattern = "functions.*.limits",
     .type = SCHEMA_ENUM,
     .values = function_limits,
     .default_value = "lambda",
     .set = set_function_limits,
     .offset = offsetof(struct config_function, relaxed),
     .doc = "`lambda`: Lambda@Edge's per-trigger quotas cap `timeout_ms` and `memory_mb`; `relaxed`: they apply as written."},

    {.pattern = "viewer_countries",
     .type = SCHEMA_CUSTOM,
     .max = VIEWER_COUNTRIES_MAX,
     .expected = "an object of \"address/length\": \"country\"",
     .default_doc = "`{}`",
     .set = set_viewer_countries,
     .doc = "Client networks and their countries, for `CloudFront-Viewer-Country`, e.g. `{\"203.0.113.0/24\": \"FR\", "
            "\"2001:db8::/32\": \"DE\"}`: IPv4 or IPv6 networks (host bits zero) to ISO 3166-1 codes of two upper-case "
            "letters. The longest matching network wins; a client none matches gets no header."},

    {.pattern = "behaviors",
     .type = SCHEMA_ARRAY,
     .flags = KEY_REQUIRED,
     .min = 1,
     .max = 1024,
     .offset = offsetof(struct config, behaviors),
     .count_offset = offsetof(struct config, behavior_count),
     .element_size = sizeof(struct config_behavior),
     .finish = finish_behaviors,
     .doc = "Cache behaviors in order; a request takes the first whose path matches. The last path must be `*`."},
    {.pattern = "behaviors[]", .type = SCHEMA_OBJECT, .finish = finish_behavior, .doc = "One cache behavior."},
    {.pattern = "behaviors[].path",
     .type = SCHEMA_STRING,
     .flags = KEY_REQUIRED,
     .expected = "a path pattern",
     .offset = offsetof(struct config_behavior, path_pattern),
     .set = set_path_pattern,
     .doc = "CloudFront path pattern: `*` any run of characters, `?` one character, case-sensitive; at most "
            "255 characters from `" PATH_PATTERN_CHARS "`."},
    {.pattern = "behaviors[].origin",
     .type = SCHEMA_STRING,
     .flags = KEY_REQUIRED,
     .expected = "an origin name",
     .offset = offsetof(struct config_behavior, origin_index),
     .set = set_behavior_origin,
     .doc = "Name of the origin (a key of `origins`) that serves matching requests."},
    {.pattern = "behaviors[].viewer_headers",
     .type = SCHEMA_CUSTOM,
     .expected = "an array of CloudFront viewer header names",
     .default_doc = "`[]`",
     .set = set_viewer_headers,
     .offset = offsetof(struct config_behavior, viewer_headers),
     .doc = "CloudFront's viewer headers verge adds to matching requests after viewer-request, before the cache lookup, "
            "replacing the viewer's copies: any of " VIEWER_HEADER_NAMES " (names are case-insensitive). The country "
            "comes from `viewer_countries`, the device flags (`true`/`false`) from the User-Agent, the protocol from the "
            "viewer's connection. Those named in `cache.key.headers` are added too."},
    {.pattern = "behaviors[].cache",
     .type = SCHEMA_OBJECT,
     .flags = KEY_FALSE_DISABLES,
     .finish = finish_behavior_cache,
     .default_doc = "caching on, with the defaults of its keys",
     .doc = "How matching responses are cached (RFC 9111 with CloudFront's TTL rules); `false`: never cached, every request "
            "goes to the origin."},
    {.pattern = "behaviors[].cache.min_ttl",
     .type = SCHEMA_INTEGER,
     .flags = KEY_INT64,
     .min = 0,
     .max = CACHE_TTL_LIMIT,
     .default_value = "0",
     .offset = offsetof(struct config_behavior, cache.min_ttl),
     .doc = "Least seconds a response is kept, even when its Cache-Control says less (or no-cache, no-store, private)."},
    {.pattern = "behaviors[].cache.default_ttl",
     .type = SCHEMA_INTEGER,
     .flags = KEY_INT64,
     .min = 0,
     .max = CACHE_TTL_LIMIT,
     .default_value = "86400",
     .default_doc = "86400, or `min_ttl` when that is larger",
     .offset = offsetof(struct config_behavior, cache.default_ttl),
     .doc = "Seconds a response is kept when it has no max-age, s-maxage or Expires; 0 stores only those that have one."},
    {.pattern = "behaviors[].cache.max_ttl",
     .type = SCHEMA_INTEGER,
     .flags = KEY_INT64,
     .min = 0,
     .max = CACHE_TTL_LIMIT,
     .default_value = "31536000",
     .default_doc = "31536000, or `default_ttl` when `min_ttl` or `default_ttl` is larger",
     .offset = offsetof(struct config_behavior, cache.max_ttl),
     .doc = "Most seconds a response is kept, whatever its Cache-Control or Expires says. `min_ttl` <= `default_ttl` <= "
            "`max_ttl`."},
    {.pattern = "behaviors[].cache.error_ttl",
     .type = SCHEMA_INTEGER,
     .flags = KEY_INT64,
     .min = 0,
     .max = CACHE_TTL_LIMIT,
     .default_value = "10",
     .offset = offsetof(struct config_behavior, cache.error_ttl),
     .doc = "Seconds an error response (404, 414, 500, 501, 502, 503, 504) is kept when it has no max-age or s-maxage."},
    {.pattern = "behaviors[].cache.stale_while_revalidate",
     .type = SCHEMA_INTEGER,
     .flags = KEY_INT64,
     .min = 0,
     .max = CACHE_TTL_LIMIT,
     .default_value = "0",
     .offset = offsetof(struct config_behavior, cache.stale_while_revalidate),
     .doc = "Seconds after expiry during which a stale object is served while one background request refreshes it (a "
            "response's own directive wins); 0: off."},
    {.pattern = "behaviors[].cache.stale_if_error",
     .type = SCHEMA_INTEGER,
     .flags = KEY_INT64,
     .min = 0,
     .max = CACHE_TTL_LIMIT,
     .default_value = "0",
     .offset = offsetof(struct config_behavior, cache.stale_if_error),
     .doc = "Seconds after expiry during which a stale object is served when the origin fails or answers 5xx (a "
            "response's own directive wins); 0: off."},
    {.pattern = "behaviors[].cache.key",
     .type = SCHEMA_OBJECT,
     .default_doc = "host + path",
     .doc = "What the cache key holds besides the viewer's Host and the URL path. The request sent to the origin is the same "
            "whatever the key holds."},
    {.pattern = "behaviors[].cache.key.query",
     .type = SCHEMA_NAME_LIST,
     .max = CACHE_KEY_NAMES_MAX,
     .default_value = "none",
     .set = set_query_names,
     .offset = offsetof(struct config_behavior, cache.query),
     .doc = "Query parameters in the key (sorted, as received): none, all, the listed names, or all but the listed names."},
    {.pattern = "behaviors[].cache.key.headers",
     .type = SCHEMA_NAME_ARRAY,
     .max = CACHE_KEY_NAMES_MAX,
     .default_doc = "`[]`",
     .set = set_header_names,
     .offset = offsetof(struct config_behavior, cache.headers),
     .doc = "Request headers whose values are in the key (names are case-insensitive)."},
    {.pattern = "behaviors[].cache.key.cookies",
     .type = SCHEMA_NAME_LIST,
     .max = CACHE_KEY_NAMES_MAX,
     .default_value = "none",
     .set = set_cookie_names,
     .offset = offsetof(struct config_behavior, cache.cookies),
     .doc = "Cookies in the key: none, all, the listed names, or all but the listed names."},

    {.pattern = "behaviors[].triggers",
     .type = SCHEMA_OBJECT,
     .default_doc = "none",
     .doc = "Edge functions run for matching requests, by trigger. Origin triggers run only on a cache miss or refresh."},
    TRIGGER_ROW("viewer-request", CONFIG_TRIGGER_VIEWER_REQUEST,
                "Runs on every viewer request, before the cache. `include_body` is allowed; at most 5000 ms and 128 MB unless "
                "relaxed."),
    TRIGGER_ROW("origin-request", CONFIG_TRIGGER_ORIGIN_REQUEST,
                "Runs before a request goes to the origin. `include_body` is allowed; at most 30000 ms unless relaxed."),
    TRIGGER_ROW("origin-response", CONFIG_TRIGGER_ORIGIN_RESPONSE,
                "Runs on the origin's response, before it is cached; at most 30000 ms unless relaxed."),
    TRIGGER_ROW("viewer-response", CONFIG_TRIGGER_VIEWER_RESPONSE,
                "Runs on every response before it goes to the viewer; at most 5000 ms and 128 MB unless relaxed."),

    {.pattern = "access_log",
     .type = SCHEMA_OBJECT,
     .flags = KEY_FALSE_DISABLES,
     .default_doc = "`{\"path\": \"-\", \"format\": \"json\"}`",
     .doc = "Access log; `false` turns it off."},
    {.pattern = "access_log.path",
     .type = SCHEMA_STRING,
     .default_value = "-",
     .expected = "a file path or \"-\"",
     .offset = offsetof(struct config, access_log.path),
     .set = set_file_path,
     .doc = "File to append to (relative to the config file's directory); `-` is standard output."},
    {.pattern = "access_log.format",
     .type = SCHEMA_ENUM,
     .values = access_log_formats,
     .default_value = "json",
     .offset = offsetof(struct config, access_log.format),
     .doc = "Line format: one JSON object per request."},

    {.pattern = "function_log",
     .type = SCHEMA_CUSTOM,
     .default_value = "-",
     .expected = "a file path, \"-\" or false",
     .offset = offsetof(struct config, function_log.path),
     .set = set_path_or_false,
     .doc = "Edge functions' log (their `print` output and the platform lines), one tab-separated line each: "
            "file to append to (relative to the config file's directory), `-` for standard output, `false` for off."},

    {.pattern = "admin",
     .type = SCHEMA_OBJECT,
     .finish = finish_admin,
     .default_doc = "none (no admin listener)",
     .doc = "Admin listener (health, metrics, reload, purge). Absent: no admin listener."},
    {.pattern = "admin.address",
     .type = SCHEMA_STRING,
     .flags = KEY_REQUIRED,
     .expected = ADDRESS_EXPECTED,
     .offset = offsetof(struct config, admin.address),
     .set = set_address,
     .doc = "Address to bind; must be loopback (127.0.0.0/8, ::1) unless `token_file` is set."},
    {.pattern = "admin.token_file",
     .type = SCHEMA_STRING,
     .expected = "a file path",
     .set = set_token_file,
     .offset = offsetof(struct config, admin.token_file),
     .doc = "File holding the bearer token admin requests must carry (trimmed; visible ASCII, at most 4096 bytes)."},

    {.pattern = "timeouts",
     .type = SCHEMA_OBJECT,
     .default_doc = "the defaults of its keys",
     .doc = "Viewer-side timeouts and the shutdown drain."},
    {.pattern = "timeouts.header_read_ms",
     .type = SCHEMA_INTEGER,
     .min = 1,
     .max = 600000,
     .default_value = "10000",
     .offset = offsetof(struct config, timeouts.header_read_ms),
     .doc = "The whole request head must arrive within this (slowloris defence)."},
    {.pattern = "timeouts.idle_ms",
     .type = SCHEMA_INTEGER,
     .min = 1,
     .max = 3600000,
     .default_value = "60000",
     .offset = offsetof(struct config, timeouts.idle_ms),
     .doc = "Keep-alive idle time, and inactivity allowed while reading a request body."},
    {.pattern = "timeouts.send_ms",
     .type = SCHEMA_INTEGER,
     .min = 1,
     .max = 3600000,
     .default_value = "60000",
     .offset = offsetof(struct config, timeouts.send_ms),
     .doc = "Inactivity allowed while writing to a viewer."},
    {.pattern = "timeouts.drain_ms",
     .type = SCHEMA_INTEGER,
     .min = 0,
     .max = 3600000,
     .default_value = "10000",
     .offset = offsetof(struct config, timeouts.drain_ms),
     .doc = "On SIGTERM, how long in-flight requests may take before the process exits."},

    {.pattern = "cache",
     .type = SCHEMA_OBJECT,
     .finish = finish_cache,
     .default_doc = "the defaults of its keys",
     .doc = "The in-memory cache shared by all threads. It survives reloads; new sizes apply at the reload."},
    {.pattern = "cache.memory_mb",
     .type = SCHEMA_INTEGER,
     .flags = KEY_INT64,
     .min = 1,
     .max = CACHE_MEMORY_MB_MAX,
     .unit = MIB,
     .default_value = "256",
     .offset = offsetof(struct config, cache.memory_bytes),
     .doc = "Memory for stored objects (heads and bodies), in MiB; objects are evicted to stay within it."},
    {.pattern = "cache.max_object_mb",
     .type = SCHEMA_INTEGER,
     .flags = KEY_INT64,
     .min = 1,
     .max = CACHE_OBJECT_MB_MAX,
     .unit = MIB,
     .default_value = "64",
     .default_doc = "64, or `memory_mb` when that is smaller",
     .offset = offsetof(struct config, cache.max_object_bytes),
     .doc = "Largest response stored, in MiB (at most `memory_mb`); bigger ones pass through uncached."},
    {.pattern = "cache.eviction",
     .type = SCHEMA_ENUM,
     .values = cache_evictions,
     .default_value = "sieve",
     .set = set_enum_index,
     .offset = offsetof(struct config, cache.eviction),
     .doc = "Which object goes when memory is short: `sieve` (scan-resistant) or `lru` (least recently used)."},

    {.pattern = "workers",
     .type = SCHEMA_OBJECT,
     .default_doc = "the defaults of its keys",
     .doc = "The processes that run edge functions."},
    {.pattern = "workers.max_concurrency",
     .type = SCHEMA_INTEGER,
     .min = 1,
     .max = 100000,
     .default_value = "1000",
     .offset = offsetof(struct config, workers.max_concurrency),
     .doc = "Function events in flight or waiting, all functions together; past it an event is throttled (503)."},
    {.pattern = "workers.idle_timeout_s",
     .type = SCHEMA_INTEGER,
     .min = 1,
     .max = 86400,
     .default_value = "60",
     .offset = offsetof(struct config, workers.idle_timeout_s),
     .doc = "An idle worker process exits after this many seconds."},

    {.pattern = "dev",
     .type = SCHEMA_OBJECT,
     .finish = finish_dev,
     .default_doc = "the defaults of its keys",
     .doc = "Switches for local development, on under `verge dev`; keep them off in production."},
    {.pattern = "dev.trace_header",
     .type = SCHEMA_BOOLEAN,
     .default_value = "false",
     .default_doc = "`false` (always on under `verge dev`)",
     .offset = offsetof(struct config, dev.trace_header),
     .doc = "Add `X-Verge-Trace` to every response: the request id, each trigger's function, outcome and duration, the "
            "cache result and key, the origin, its status and time. It shows internals."},
    {.pattern = "dev.debug_headers",
     .type = SCHEMA_BOOLEAN,
     .default_value = "false",
     .default_doc = "`false` (`true` under `verge dev`)",
     .offset = offsetof(struct config, dev.debug_headers),
     .doc = "A viewer's `X-Verge-Debug-Country: FR` replaces the country verge finds for `CloudFront-Viewer-Country` "
            "(two letters; anything else answers 400), and the header is never forwarded."},
};

const size_t config_schema_count = VERGE_ARRAY_SIZE(config_schema);

/* ---- setters: keys whose value needs more than a type check ------------------------ */

static int default_thread_count(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 1 ? 1 : cpus > 256 ? 256 : (int)cpus;
}

static bool parse_port(const char *s, size_t len, uint16_t *port)
{
    if (len == 0 || len > 5)
        return false;
    unsigned value = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        value = value * 10 + (unsigned)(s[i] - '0');
    }
    if (value < 1 || value > 65535)
        return false;
    *port = (uint16_t)value;
    return true;
}

/* "a.b.c.d:port" or "[v6]:port", numeric only: listeners bind what is written. */
static bool parse_address(const char *text, struct config_address *out)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port_text, *host_start = text;
    size_t host_len;
    bool is_ipv6 = text[0] == '[';
    if (is_ipv6) {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return false;
        host_start = text + 1;
        host_len = (size_t)(close - host_start);
        port_text = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL)
            return false;
        host_len = (size_t)(colon - text);
        port_text = colon + 1;
    }
    if (host_len == 0 || host_len >= sizeof host)
        return false;
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    uint16_t port;
    if (!parse_port(port_text, strlen(port_text), &port))
        return false;

    memset(&out->sockaddr, 0, sizeof out->sockaddr);
    if (is_ipv6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->sockaddr;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return false;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        out->sockaddr_len = sizeof *sin6;
        out->is_loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) ||
                           (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && sin6->sin6_addr.s6_addr[12] == 127);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->sockaddr;
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return false;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        out->sockaddr_len = sizeof *sin;
        out->is_loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    }
    return true;
}

static void set_address(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v, char *target)
{
    struct config_address *address = FIELD(struct config_address, target, key);
    if (!parse_address(v->text.ptr, address)) {
        config_error_expected(L, key, path, v);
        return;
    }
    address->text = arena_strndup(&L->config->arena, v->text.ptr, v->text.len);
}

static bool same_address(const struct config_address *a, const struct config_address *b)
{
    return a->text != NULL && b->text != NULL && a->sockaddr_len == b->sockaddr_len &&
           memcmp(&a->sockaddr, &b->sockaddr, a->sockaddr_len) == 0;
}

/* Resolves the host of a URL origin. Names with both families prefer IPv4:
 * "localhost" often lists ::1 first while local origins listen on 127.0.0.1. */
static void resolve_origin(struct loader *L, const char *path, struct config_origin *origin)
{
    char port[8];
    snprintf(port, sizeof port, "%u", origin->port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | (config_resolve_hosts ? 0 : AI_NUMERICHOST)};
    struct addrinfo *results = NULL;
    int rc = getaddrinfo(origin->host, port, &hints, &results);
    if (rc != 0) {
        const char *reason = rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc);
        if (!config_resolve_hosts && rc == EAI_NONAME)
            reason = "host name resolution is disabled (config_resolve_hosts is false); use a numeric address";
        config_load_error(L, "%s: cannot resolve %s: %s", path, config_quote_text(L, slice_from_cstr(origin->host)), reason);
        return;
    }
    const struct addrinfo *chosen = results;
    for (const struct addrinfo *ai = results; ai != NULL; ai = ai->ai_next)
        if (ai->ai_family == AF_INET) {
            chosen = ai;
            break;
        }
    memcpy(&origin->sockaddr, chosen->ai_addr, chosen->ai_addrlen);
    origin->sockaddr_len = chosen->ai_addrlen;
    freeaddrinfo(results);
}

static bool is_host_char(unsigned char c)
{
    return (config_is_name_char(c) && c != '_') || c == '.';
}

/* http://host[:port][/prefix]: host is a name, an IPv4 address or [IPv6]. */
static bool parse_origin_url(struct loader *L, const char *url, struct config_origin *origin)
{
    for (const char *c = url; *c != '\0'; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || strchr("?#@\\", *c) != NULL)
            return false; /* no query, fragment, userinfo, spaces or raw non-ASCII */
    origin->tls = strncasecmp(url, "https://", 8) == 0;
    if (!origin->tls && strncasecmp(url, "http://", 7) != 0)
        return false;
    const char *authority = url + (origin->tls ? 8 : 7);
    size_t authority_len = strcspn(authority, "/");
    const char *authority_end = authority + authority_len;
    const char *host = authority, *port_text = NULL;
    size_t host_len;
    bool is_ipv6 = authority[0] == '[';
    if (is_ipv6) {
        const char *close = memchr(authority, ']', authority_len);
        if (close == NULL)
            return false;
        host = authority + 1;
        host_len = (size_t)(close - host);
        if (close + 1 < authority_end) {
            if (close[1] != ':')
                return false;
            port_text = close + 2;
        }
        char literal[INET6_ADDRSTRLEN + 1];
        struct in6_addr scratch;
        if (host_len == 0 || host_len >= sizeof literal)
            return false;
        memcpy(literal, host, host_len);
        literal[host_len] = '\0';
        if (inet_pton(AF_INET6, literal, &scratch) != 1)
            return false;
    } else {
        const char *colon = memchr(authority, ':', authority_len);
        host_len = colon != NULL ? (size_t)(colon - authority) : authority_len;
        if (colon != NULL)
            port_text = colon + 1;
        if (host_len == 0 || host_len > 253)
            return false;
        for (size_t i = 0; i < host_len; i++)
            if (!is_host_char((unsigned char)host[i]))
                return false;
    }
    uint16_t default_port = origin->tls ? 443 : 80;
    origin->port = default_port;
    if (port_text != NULL && !parse_port(port_text, (size_t)(authority_end - port_text), &origin->port))
        return false;

    size_t prefix_len = strlen(authority_end);
    while (prefix_len > 0 && authority_end[prefix_len - 1] == '/')
        prefix_len--;
    struct arena *arena = &L->config->arena;
    origin->host = arena_strndup(arena, host, host_len);
    origin->path_prefix = arena_strndup(arena, authority_end, prefix_len);
    const char *open = is_ipv6 ? "[" : "", *close = is_ipv6 ? "]" : "";
    origin->host_header = origin->port == default_port ? arena_printf(arena, "%s%s%s", open, origin->host, close)
                                                       : arena_printf(arena, "%s%s%s:%u", open, origin->host, close, origin->port);
    origin->url = arena_strndup(arena, url, strlen(url));
    return true;
}

static void set_origin_url(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                           char *target)
{
    struct config_origin *origin = (struct config_origin *)target;
    if (!parse_origin_url(L, v->text.ptr, origin)) {
        config_error_expected(L, key, path, v);
        return;
    }
    resolve_origin(L, path, origin);
}

/* Relative paths in the file are relative to the file's directory. */
static char *resolve_relative(struct loader *L, const char *file_path)
{
    if (file_path[0] == '/')
        return arena_strndup(&L->scratch, file_path, strlen(file_path));
    return arena_printf(&L->scratch, "%s%s%s", L->base_dir, strcmp(L->base_dir, "/") == 0 ? "" : "/", file_path);
}

static void set_static_root(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                            char *target)
{
    if (v->text.len == 0) {
        config_error_expected(L, key, path, v);
        return;
    }
    const char *joined = resolve_relative(L, v->text.ptr);
    char *real = realpath(joined, NULL);
    if (real == NULL) {
        config_load_error(L, "%s: expected an existing directory, got %s (%s)", path, config_quote_text(L, slice_from_cstr(joined)),
                          strerror(errno));
        return;
    }
    struct stat st;
    if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
        config_load_error(L, "%s: expected a directory, got %s (not a directory)", path,
                          config_quote_text(L, slice_from_cstr(joined)));
    else
        *FIELD(char *, target, key) = arena_strndup(&L->config->arena, real, strlen(real));
    free(real);
}

static void set_file_path(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                          char *target)
{
    if (v->text.len == 0) {
        config_error_expected(L, key, path, v);
        return;
    }
    const char *resolved = strcmp(v->text.ptr, "-") == 0 ? "-" : resolve_relative(L, v->text.ptr);
    *FIELD(char *, target, key) = arena_strndup(&L->config->arena, resolved, strlen(resolved));
}

/* A log path, or false for off (the field stays NULL). */
static void set_certificate_path(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                                 char *target)
{
    if (v->text.len == 0) {
        config_error_expected(L, key, path, v);
        return;
    }
    const char *resolved = resolve_relative(L, v->text.ptr);
    *FIELD(char *, target, key) = arena_strndup(&L->config->arena, resolved, strlen(resolved));
}

static void set_path_or_false(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                              char *target)
{
    if (v->kind == JSON_BOOLEAN && !v->boolean)
        return;
    if (v->kind != JSON_STRING || memchr(v->text.ptr, '\0', v->text.len) != NULL) {
        config_error_expected(L, key, path, v);
        return;
    }
    set_file_path(L, key, path, v, target);
}

static void set_path_pattern(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                             char *target)
{
    static const char allowed[] = "_-.*$/~\"'@:+&?";
    if (v->text.len == 0 || v->text.len > PATH_PATTERN_MAX) {
        config_load_error(L, "%s: expected a path pattern of 1 to %d characters, got %zu characters", path, PATH_PATTERN_MAX,
                          v->text.len);
        return;
    }
    for (size_t i = 0; i < v->text.len; i++) {
        unsigned char c = (unsigned char)v->text.ptr[i];
        if (!config_is_name_char(c) && strchr(allowed, c) == NULL) {
            config_load_error(L, "%s: expected a path pattern of " PATH_PATTERN_CHARS ", got %s (%s is not allowed)", path,
                              config_describe_value(L, v), config_quote_text(L, slice_make((const char *)&v->text.ptr[i], 1)));
            return;
        }
    }
    *FIELD(char *, target, key) = arena_strndup(&L->config->arena, v->text.ptr, v->text.len);
}

static void set_behavior_origin(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                                char *target)
{
    const struct config *config = L->config;
    if (config->origin_count == 0)
        return; /* origins is missing or invalid, which is already reported */
    for (size_t i = 0; i < config->origin_count; i++)
        if (strcmp(config->origins[i].name, v->text.ptr) == 0) {
            *FIELD(size_t, target, key) = i;
            return;
        }
    struct bytebuf known = {0};
    for (size_t i = 0; i < config->origin_count; i++)
        bytebuf_appendf(&known, "%s%s", i > 0 ? ", " : "", config->origins[i].name);
    config_load_error(L, "%s: unknown origin %s (known: %.*s)", path, config_describe_value(L, v), (int)known.len,
                      known.data ? known.data : "");
    bytebuf_free(&known);
}

/* The token is read now, so a reload with an unreadable token file fails
 * instead of silently locking the admin API. */
static void set_token_file(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                           char *target)
{
    if (v->text.len == 0) {
        config_error_expected(L, key, path, v);
        return;
    }
    const char *file = resolve_relative(L, v->text.ptr);
    const char *shown = config_quote_text(L, slice_from_cstr(file));
    /* O_NONBLOCK: a FIFO must not hang the loader; it is refused below anyway. */
    int fd = open(file, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        config_load_error(L, "%s: cannot read %s: %s", path, shown, strerror(errno));
        return;
    }
    char buf[TOKEN_MAX_BYTES + 1];
    size_t len = 0;
    struct stat st;
    bool is_regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    int read_errno = 0;
    while (is_regular && len < sizeof buf) {
        ssize_t n = read(fd, buf + len, sizeof buf - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            read_errno = errno;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (!is_regular) {
        config_load_error(L, "%s: expected a regular file, got %s", path, shown);
        return;
    }
    if (read_errno != 0) {
        config_load_error(L, "%s: cannot read %s: %s", path, shown, strerror(read_errno));
        return;
    }
    if (len > TOKEN_MAX_BYTES) {
        config_load_error(L, "%s: expected a token file of at most %d bytes, got a larger file %s", path, TOKEN_MAX_BYTES, shown);
        return;
    }
    size_t start = 0;
    while (start < len && strchr(" \t\r\n", buf[start]) != NULL && buf[start] != '\0')
        start++;
    while (len > start && strchr(" \t\r\n", buf[len - 1]) != NULL && buf[len - 1] != '\0')
        len--;
    if (len == start) {
        config_load_error(L, "%s: expected a file holding a token, got an empty file %s", path, shown);
        return;
    }
    for (size_t i = start; i < len; i++)
        if ((unsigned char)buf[i] <= 0x20 || (unsigned char)buf[i] >= 0x7f) {
            config_load_error(L, "%s: expected a token of visible ASCII characters, got other bytes in %s", path, shown);
            return;
        }
    L->config->admin.token_file = arena_strndup(&L->config->arena, file, strlen(file));
    L->config->admin.token = arena_strndup(&L->config->arena, buf + start, len - start);
    explicit_bzero(buf, sizeof buf);
}

/* An enum stored as the index of its value in key->values. */
static void set_enum_index(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                           char *target)
{
    for (int i = 0; key->values[i] != NULL; i++)
        if (strcmp(key->values[i], v->text.ptr) == 0) {
            *FIELD(int, target, key) = i;
            return;
        }
    VERGE_ASSERT(!"the walk accepted a value the enum does not have");
}

/* ---- cache-key name lists ---- */

enum key_name_kind { KEY_NAME_QUERY, KEY_NAME_HEADER, KEY_NAME_COOKIE };

static const char *const key_name_expected[] = {
    [KEY_NAME_QUERY] = "a query parameter name (visible ASCII but '&', '=' and '#')",
    [KEY_NAME_HEADER] = "a header name (letters, digits and !#$%&'*+-.^_`|~)",
    [KEY_NAME_COOKIE] = "a cookie name (letters, digits and !#$%&'*+-.^_`|~)",
};

/* tchar (RFC 9110 §5.6.2): header names and cookie names (RFC 6265's token). */
static bool is_token_char(unsigned char c)
{
    return c != '\0' && (config_is_name_char(c) || strchr("!#$%&'*+.^`|~", c) != NULL);
}

/* Names that could never match are refused here rather than silently never
 * matching: query names are compared as received, so they cannot hold the
 * separators. */
static bool is_valid_key_name(enum key_name_kind kind, slice_t name)
{
    if (name.len == 0)
        return false;
    for (size_t i = 0; i < name.len; i++) {
        unsigned char c = (unsigned char)name.ptr[i];
        bool ok = kind == KEY_NAME_QUERY ? c > 0x20 && c < 0x7f && strchr("&=#", c) == NULL : is_token_char(c);
        if (!ok)
            return false;
    }
    return true;
}

/* Fills `list` (mode ONLY, or NONE when the array is empty; the caller may
 * change the mode) from a JSON array of names at `path`. Header names are
 * stored lowercase; duplicates are errors (case-insensitive for headers). */
static void read_key_names(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *array,
                           enum key_name_kind kind, struct cache_name_list *list)
{
    if ((long long)array->count > key->max) {
        config_load_error(L, "%s: expected at most %lld names (CloudFront's limit), got %zu", path, key->max, array->count);
        return;
    }
    struct arena *arena = &L->config->arena;
    char **names = array->count > 0 ? arena_alloc(arena, array->count * sizeof *names) : NULL;
    size_t count = 0, index = 0;
    bool ok = true;
    for (const struct json_value *item = array->first; item != NULL; item = item->next, index++) {
        const char *item_path = arena_printf(&L->scratch, "%s[%zu]", path, index);
        if (item->kind != JSON_STRING || memchr(item->text.ptr, '\0', item->text.len) != NULL ||
            !is_valid_key_name(kind, item->text)) {
            config_load_error(L, "%s: expected %s, got %s", item_path, key_name_expected[kind], config_describe_value(L, item));
            ok = false;
            continue;
        }
        char *name = arena_strndup(arena, item->text.ptr, item->text.len);
        if (kind == KEY_NAME_HEADER)
            for (char *c = name; *c != '\0'; c++)
                *c = (char)tolower((unsigned char)*c);
        for (size_t earlier = 0; earlier < count; earlier++)
            if (strcmp(names[earlier], name) == 0) {
                config_load_error(L, "%s: %s is listed twice", item_path, config_describe_value(L, item));
                ok = false;
                break;
            }
        names[count++] = name;
    }
    if (!ok)
        return;
    list->mode = count > 0 ? CACHE_LIST_ONLY : CACHE_LIST_NONE;
    list->names = names;
    list->count = count;
}

/* A member name as config.c's paths show it: plain names as they are, others quoted. */
static const char *member_name_shown(struct loader *L, slice_t name)
{
    bool plain = name.len > 0 && name.len <= 80;
    for (size_t i = 0; i < name.len && plain; i++)
        plain = config_is_name_char((unsigned char)name.ptr[i]);
    return plain ? arena_strndup(&L->scratch, name.ptr, name.len) : config_quote_text(L, name);
}

/* "none" | "all" | ["a", ...] | {"except": ["a", ...]} */
static void set_name_list(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                          char *target, enum key_name_kind kind)
{
    struct cache_name_list *list = FIELD(struct cache_name_list, target, key);
    if (v->kind == JSON_STRING && strcmp(v->text.ptr, "none") == 0 && v->text.len == 4) {
        *list = (struct cache_name_list){.mode = CACHE_LIST_NONE};
    } else if (v->kind == JSON_STRING && strcmp(v->text.ptr, "all") == 0 && v->text.len == 3) {
        *list = (struct cache_name_list){.mode = CACHE_LIST_ALL};
    } else if (v->kind == JSON_ARRAY) {
        read_key_names(L, key, path, v, kind, list);
    } else if (v->kind == JSON_OBJECT) {
        const struct json_value *except = NULL;
        for (const struct json_value *m = v->first; m != NULL; m = m->next) {
            if (!slice_equal(m->key, SLICE_LITERAL("except")))
                config_load_error(L, "%s.%s: unknown key (known: except)", path, member_name_shown(L, m->key));
            else if (except != NULL)
                config_load_error(L, "%s.except: duplicate key", path);
            else
                except = m;
        }
        if (except == NULL) {
            config_load_error(L, "%s.except: required key is missing", path);
            return;
        }
        const char *except_path = arena_printf(&L->scratch, "%s.except", path);
        if (except->kind != JSON_ARRAY) {
            config_load_error(L, "%s: expected an array of names, got %s", except_path, config_describe_value(L, except));
            return;
        }
        read_key_names(L, key, except_path, except, kind, list);
        if (list->mode == CACHE_LIST_ONLY)
            list->mode = CACHE_LIST_EXCEPT;
        else if (except->count == 0)
            list->mode = CACHE_LIST_ALL; /* all but nothing */
    } else {
        config_error_expected(L, key, path, v);
    }
}

static void set_query_names(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                            char *target)
{
    set_name_list(L, key, path, v, target, KEY_NAME_QUERY);
}

static void set_cookie_names(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                             char *target)
{
    set_name_list(L, key, path, v, target, KEY_NAME_COOKIE);
}

static void set_header_names(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                             char *target)
{
    if (v->kind != JSON_ARRAY) {
        config_error_expected(L, key, path, v);
        return;
    }
    read_key_names(L, key, path, v, KEY_NAME_HEADER, FIELD(struct cache_name_list, target, key));
}

/* ---- edge functions and triggers ----------------------------------------------------- */

/* Opened and compiled now (not only stat'ed) so a reload with an unreadable
 * file or a syntax error fails, with the error's file:line, instead of
 * failing every invocation later. */
static void set_function_code(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                              char *target)
{
    if (v->text.len == 0) {
        config_error_expected(L, key, path, v);
        return;
    }
    const char *file = resolve_relative(L, v->text.ptr);
    char compile_error[1024];
    char *source = NULL;
    size_t source_len = 0;
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        config_load_error(L, "%s: cannot read %s: %s", path, config_quote_text(L, slice_from_cstr(file)), strerror(errno));
    else if (!S_ISREG(st.st_mode))
        config_load_error(L, "%s: expected a regular file, got %s (not a regular file)", path,
                          config_quote_text(L, slice_from_cstr(file)));
    else if (!hooks_compile_function_source(file, &source, &source_len, compile_error, sizeof compile_error))
        config_load_error(L, "%s: %s", path, compile_error);
    else {
        *FIELD(char *, target, key) = arena_strndup(&L->config->arena, file, strlen(file));
        /* The checked code is what this generation's workers run. */
        struct config_function *function = (struct config_function *)target;
        function->source = arena_alloc(&L->config->arena, source_len + 1);
        memcpy(function->source, source, source_len);
        function->source[source_len] = '\0';
        function->source_len = source_len;
        free(source);
    }
    if (fd >= 0)
        close(fd);
}

static bool is_lua_name_start(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_lua_name_char(unsigned char c)
{
    return is_lua_name_start(c) || (c >= '0' && c <= '9');
}

/* "name" or "a.b.c": each part a Lua identifier. */
static void set_function_handler(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                                 char *target)
{
    bool ok = v->text.len > 0 && v->text.len <= FUNCTION_HANDLER_MAX;
    bool part_start = true;
    for (size_t i = 0; i < v->text.len && ok; i++) {
        unsigned char c = (unsigned char)v->text.ptr[i];
        if (c == '.' && !part_start)
            part_start = true;
        else if (part_start ? is_lua_name_start(c) : is_lua_name_char(c))
            part_start = false;
        else
            ok = false;
    }
    if (!ok || part_start) {
        config_error_expected(L, key, path, v);
        return;
    }
    *FIELD(char *, target, key) = arena_strndup(&L->config->arena, v->text.ptr, v->text.len);
}

static void set_function_limits(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                                char *target)
{
    (void)L, (void)path;
    *FIELD(bool, target, key) = strcmp(v->text.ptr, "relaxed") == 0;
}

static bool is_env_name(slice_t name)
{
    if (name.len == 0 || !is_lua_name_start((unsigned char)name.ptr[0]))
        return false;
    for (size_t i = 1; i < name.len; i++)
        if (!is_lua_name_char((unsigned char)name.ptr[i]))
            return false;
    return true;
}

/* A share: a JSON number from 0 to 1, stored as a double (absent: 0, the
 * zeroed element). */
static void set_rate(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v, char *target)
{
    char *end = NULL;
    double rate = v->kind == JSON_NUMBER ? strtod(v->text.ptr, &end) : -1;
    if (end == NULL || *end != '\0' || !(rate >= 0 && rate <= 1)) {
        config_error_expected(L, key, path, v);
        return;
    }
    *FIELD(double, target, key) = rate;
}

static void finish_faults(struct loader *L, const char *path, const struct json_value *v, char *target)
{
    const struct config_origin *origin = (const struct config_origin *)target;
    if (origin->faults.error_rate + origin->faults.reset_rate > 1)
        config_load_error(L, "%s: error_rate + reset_rate is more than 1", path);
}

/* An object of at most key->max members (maps of strings); reports otherwise. */
static bool is_bounded_object(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v)
{
    if (v->kind != JSON_OBJECT) {
        config_error_expected(L, key, path, v);
        return false;
    }
    if ((long long)v->count > key->max) {
        config_load_error(L, "%s: expected at most %lld entries, got %zu", path, key->max, v->count);
        return false;
    }
    return true;
}

/* origins.*.respond.headers: names are tokens, values have no CR, LF or NUL
 * (they go out as they are); the framing is verge's. */
static void set_respond_headers(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                                char *target)
{
    struct config_origin *origin = (struct config_origin *)target;
    if (!is_bounded_object(L, key, path, v))
        return;
    struct arena *arena = &L->config->arena;
    origin->respond_header_names = arena_alloc(arena, (v->count ? v->count : 1) * sizeof(char *));
    origin->respond_header_values = arena_alloc(arena, (v->count ? v->count : 1) * sizeof(char *));
    static const char *const framing[] = {"content-length", "transfer-encoding", "connection"};
    for (const struct json_value *m = v->first; m != NULL; m = m->next) {
        const char *name = arena_strndup(&L->scratch, m->key.ptr, m->key.len);
        bool token = m->key.len > 0;
        for (size_t i = 0; i < m->key.len && token; i++)
            token = isalnum((unsigned char)m->key.ptr[i]) ||
                    (m->key.ptr[i] != '\0' && strchr("!#$%&'*+-.^_`|~", m->key.ptr[i]) != NULL);
        if (!token) {
            config_load_error(L, "%s: %s is not a header name", path, config_quote_text(L, m->key));
            continue;
        }
        bool is_framing = false;
        for (size_t i = 0; i < VERGE_ARRAY_SIZE(framing); i++)
            is_framing = is_framing || strcasecmp(name, framing[i]) == 0;
        if (is_framing) {
            config_load_error(L, "%s.%s: verge frames the body itself; remove this header", path, name);
            continue;
        }
        if (m->kind != JSON_STRING || memchr(m->text.ptr, '\r', m->text.len) != NULL ||
            memchr(m->text.ptr, '\n', m->text.len) != NULL || memchr(m->text.ptr, '\0', m->text.len) != NULL) {
            config_load_error(L, "%s.%s: expected a string without CR, LF or NUL, got %s", path, name, config_describe_value(L, m));
            continue;
        }
        size_t i = origin->respond_header_count++;
        origin->respond_header_names[i] = arena_strndup(arena, m->key.ptr, m->key.len);
        origin->respond_header_values[i] = arena_strndup(arena, m->text.ptr, m->text.len);
    }
}

/* { "NAME": "value", ... } into the function's parallel env arrays. */
static void set_function_env(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                             char *target)
{
    struct config_function *function = (struct config_function *)target;
    if (!is_bounded_object(L, key, path, v))
        return;
    if (v->count == 0)
        return;
    struct arena *arena = &L->config->arena;
    char **names = arena_alloc(arena, v->count * sizeof *names);
    char **values = arena_alloc(arena, v->count * sizeof *values);
    size_t count = 0;
    bool ok = true;
    for (const struct json_value *m = v->first; m != NULL; m = m->next) {
        const char *member_path = arena_printf(&L->scratch, "%s.%s", path, member_name_shown(L, m->key));
        if (!is_env_name(m->key)) {
            config_load_error(L, "%s: expected names matching [A-Za-z_][A-Za-z0-9_]*, got %s", path, config_quote_text(L, m->key));
            ok = false;
            continue;
        }
        bool duplicate = false;
        for (size_t earlier = 0; earlier < count && !duplicate; earlier++)
            duplicate = strlen(names[earlier]) == m->key.len && memcmp(names[earlier], m->key.ptr, m->key.len) == 0;
        if (duplicate) {
            config_load_error(L, "%s: duplicate key", member_path);
            ok = false;
            continue;
        }
        if (m->kind != JSON_STRING || memchr(m->text.ptr, '\0', m->text.len) != NULL) {
            config_load_error(L, "%s: expected a string, got %s", member_path, config_describe_value(L, m));
            ok = false;
            continue;
        }
        names[count] = arena_strndup(arena, m->key.ptr, m->key.len);
        values[count++] = arena_strndup(arena, m->text.ptr, m->text.len);
    }
    if (!ok)
        return;
    function->env_names = names;
    function->env_values = values;
    function->env_count = count;
}

static const char *const trigger_names[CONFIG_TRIGGER_COUNT] = {"viewer-request", "origin-request", "origin-response",
                                                                "viewer-response"};

/* Finds the function named `name`; reports at `path` when there is none. */
static bool find_function(struct loader *L, const char *path, const struct json_value *name, size_t *index)
{
    const struct config *config = L->config;
    for (size_t i = 0; i < config->function_count; i++)
        if (config->functions[i].name != NULL && strcmp(config->functions[i].name, name->text.ptr) == 0) {
            *index = i;
            return true;
        }
    struct bytebuf known = {0};
    for (size_t i = 0; i < config->function_count; i++)
        bytebuf_appendf(&known, "%s%s", i > 0 ? ", " : "", config->functions[i].name);
    config_load_error(L, "%s: unknown function %s (known: %s)", path, config_describe_value(L, name),
                      known.len > 0 ? arena_strndup(&L->scratch, known.data, known.len) : "none");
    bytebuf_free(&known);
    return false;
}

/* "name" | {"function": "name", "include_body": bool, "on_error": "fail"|"continue"}.
 * Functions come before behaviors in the table, so they are known here and
 * the effective limits (spec §3.1) are computed now. */
static void set_trigger(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v, char *target)
{
    struct config_trigger *trigger = FIELD(struct config_trigger, target, key);
    size_t kind = (key->offset - offsetof(struct config_behavior, triggers)) / sizeof(struct config_trigger);
    VERGE_ASSERT(kind < CONFIG_TRIGGER_COUNT);
    bool is_request = kind == CONFIG_TRIGGER_VIEWER_REQUEST || kind == CONFIG_TRIGGER_ORIGIN_REQUEST;
    struct config_trigger parsed = {.set = true};
    const struct json_value *name = NULL;
    const char *name_path = path;
    bool ok = true;
    if (v->kind == JSON_STRING && memchr(v->text.ptr, '\0', v->text.len) == NULL) {
        name = v;
    } else if (v->kind == JSON_OBJECT) {
        const struct json_value *include_body = NULL, *on_error = NULL;
        for (const struct json_value *m = v->first; m != NULL; m = m->next) {
            const char *member_path = arena_printf(&L->scratch, "%s.%s", path, member_name_shown(L, m->key));
            const struct json_value **slot = slice_equal(m->key, SLICE_LITERAL("function"))       ? &name
                                             : slice_equal(m->key, SLICE_LITERAL("include_body")) ? &include_body
                                             : slice_equal(m->key, SLICE_LITERAL("on_error"))     ? &on_error
                                                                                                  : NULL;
            if (slot == NULL) {
                config_load_error(L, "%s: unknown key (known: function, include_body, on_error)", member_path);
                ok = false;
            } else if (*slot != NULL) {
                config_load_error(L, "%s: duplicate key", member_path);
                ok = false;
            } else {
                *slot = m;
            }
        }
        name_path = arena_printf(&L->scratch, "%s.function", path);
        if (name == NULL) {
            config_load_error(L, "%s: required key is missing", name_path);
            ok = false;
        } else if (name->kind != JSON_STRING || memchr(name->text.ptr, '\0', name->text.len) != NULL) {
            config_load_error(L, "%s: expected a function name, got %s", name_path, config_describe_value(L, name));
            ok = false;
        }
        if (include_body != NULL) {
            if (include_body->kind != JSON_BOOLEAN) {
                config_load_error(L, "%s.include_body: expected true or false, got %s", path,
                                  config_describe_value(L, include_body));
                ok = false;
            } else if (include_body->boolean && !is_request) {
                config_load_error(L, "%s.include_body: only valid for viewer-request and origin-request, not %s", path,
                                  trigger_names[kind]);
                ok = false;
            } else {
                parsed.include_body = include_body->boolean;
            }
        }
        if (on_error != NULL) {
            bool is_fail = on_error->kind == JSON_STRING && slice_equal(on_error->text, SLICE_LITERAL("fail"));
            bool is_continue = on_error->kind == JSON_STRING && slice_equal(on_error->text, SLICE_LITERAL("continue"));
            if (!is_fail && !is_continue) {
                config_load_error(L, "%s.on_error: expected one of \"fail\", \"continue\", got %s", path,
                                  config_describe_value(L, on_error));
                ok = false;
            }
            parsed.continue_on_error = is_continue;
        }
    } else {
        config_error_expected(L, key, path, v);
        return;
    }
    if (!ok || !find_function(L, name_path, name, &parsed.function_index))
        return;
    config_function_limits(&L->config->functions[parsed.function_index], (enum config_trigger_kind)kind, &parsed.timeout_ms,
                           &parsed.memory_mb);
    *trigger = parsed;
}

/* ---- viewer metadata ----------------------------------------------------------------- */

static bool is_country_code(slice_t s)
{
    return s.len == 2 && s.ptr[0] >= 'A' && s.ptr[0] <= 'Z' && s.ptr[1] >= 'A' && s.ptr[1] <= 'Z';
}

/* {"203.0.113.0/24": "FR", ...} into the sorted table lookups use. */
static void set_viewer_countries(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                                 char *target)
{
    struct config *config = (struct config *)target;
    if (!is_bounded_object(L, key, path, v) || v->count == 0)
        return;
    struct viewer_country_range *ranges = arena_alloc(&L->config->arena, v->count * sizeof *ranges);
    const char **member_paths = arena_alloc(&L->scratch, v->count * sizeof *member_paths);
    size_t count = 0, index = 0;
    bool ok = true;
    for (const struct json_value *m = v->first; m != NULL; m = m->next, index++) {
        const char *member_path = arena_printf(&L->scratch, "%s.%s", path, member_name_shown(L, m->key));
        member_paths[index] = member_path;
        struct viewer_country_range *range = &ranges[count];
        enum viewer_network_error error = viewer_meta_parse_network(m->key, &range->network);
        char network[64];
        switch (error) {
        case VIEWER_NETWORK_OK:
            break;
        case VIEWER_NETWORK_SYNTAX:
            config_load_error(L,
                              "%s: expected an IPv4 or IPv6 network written \"address/length\" (e.g. \"203.0.113.0/24\", "
                              "\"2001:db8::/32\")",
                              member_path);
            break;
        case VIEWER_NETWORK_LENGTH:
            config_load_error(L, "%s: expected a prefix length from 0 to %d for an %s network", member_path,
                              range->network.address.ipv4 ? 32 : 128, range->network.address.ipv4 ? "IPv4" : "IPv6");
            break;
        case VIEWER_NETWORK_HOST_BITS:
            viewer_meta_format_network(&range->network, network);
            config_load_error(L, "%s: the address has bits set after the /%u prefix; write the network \"%s\"", member_path,
                              range->network.prefix_length, network);
            break;
        case VIEWER_NETWORK_IPV4_MAPPED:
            config_load_error(L,
                              "%s: an IPv4-mapped network; write it as IPv4 (\"a.b.c.d/length\"): such clients are looked "
                              "up as IPv4",
                              member_path);
            break;
        }
        if (m->kind != JSON_STRING || !is_country_code(m->text)) {
            config_load_error(L, "%s: expected a country code of two upper-case letters (ISO 3166-1 alpha-2, e.g. \"FR\"), got %s",
                              member_path, config_describe_value(L, m));
            ok = false;
            continue;
        }
        if (error != VIEWER_NETWORK_OK) {
            ok = false;
            continue;
        }
        memcpy(range->country, m->text.ptr, 2);
        range->country[2] = '\0';
        range->index = index;
        count++;
    }
    if (!ok)
        return;
    struct viewer_country_table table;
    viewer_meta_build_table(&L->config->arena, ranges, count, &table);
    for (size_t i = 1; i < count; i++) {
        const struct viewer_network *a = &ranges[i - 1].network, *b = &ranges[i].network;
        if (a->address.ipv4 == b->address.ipv4 && a->prefix_length == b->prefix_length &&
            memcmp(a->address.bytes, b->address.bytes, sizeof a->address.bytes) == 0) {
            config_load_error(L, "%s: the same network as %s", member_paths[ranges[i].index], member_paths[ranges[i - 1].index]);
            ok = false;
        }
    }
    if (ok)
        config->viewer_countries = table;
}

/* ["CloudFront-Viewer-Country", ...] into VIEWER_HEADER_* bits. */
static void set_viewer_headers(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v,
                               char *target)
{
    if (v->kind != JSON_ARRAY) {
        config_error_expected(L, key, path, v);
        return;
    }
    unsigned bits = 0;
    size_t index = 0;
    bool ok = true;
    for (const struct json_value *item = v->first; item != NULL; item = item->next, index++) {
        unsigned bit = item->kind == JSON_STRING ? viewer_meta_header_bit(item->text) : 0;
        if (bit == 0) {
            struct bytebuf names = {0};
            for (unsigned i = 0; i < VIEWER_HEADER_COUNT; i++)
                bytebuf_appendf(&names, "%s%s", i > 0 ? ", " : "", viewer_meta_header_name(i));
            config_load_error(L, "%s[%zu]: expected one of %.*s, got %s", path, index, (int)names.len, names.data,
                              config_describe_value(L, item));
            bytebuf_free(&names);
            ok = false;
        } else if (bits & bit) {
            config_load_error(L, "%s[%zu]: %s is listed twice", path, index, config_describe_value(L, item));
            ok = false;
        }
        bits |= bit;
    }
    if (ok)
        *FIELD(unsigned, target, key) = bits;
}

/* ---- finishers: rules across keys ------------------------------------------------------ */

static void finish_listen(struct loader *L, const char *path, const struct json_value *v, char *target)
{
    const struct config *config = L->config;
    for (size_t i = 1; i < config->listen_count; i++)
        for (size_t j = 0; j < i; j++)
            if (same_address(&config->listen[i].address, &config->listen[j].address)) {
                config_load_error(L, "%s[%zu].address: %s is already listed at %s[%zu].address", path, i,
                                  config_quote_text(L, slice_from_cstr(config->listen[i].address.text)), path, j);
                break;
            }
}

static void free_certificate(void *certificate)
{
    tls_certificate_free(certificate);
}

static void free_tls_server(void *server)
{
    tls_server_unref(server);
}

static void free_tls_client(void *client)
{
    tls_client_unref(client);
}

/* Reads the pair now, so `verge check` and a reload report a bad file or a
 * mismatched key instead of the listener failing later. */
static void finish_certificate(struct loader *L, const char *path, const struct json_value *v, char *target)
{
    struct config_certificate *certificate = (struct config_certificate *)target;
    if (certificate->cert_path == NULL || certificate->key_path == NULL)
        return; /* already reported */
    char error[512];
    enum tls_certificate_field field;
    certificate->loaded = tls_certificate_load(certificate->cert_path, certificate->key_path, &field, error, sizeof error);
    if (certificate->loaded == NULL) {
        config_load_error(L, "%s.%s: %s", path, field == TLS_FIELD_CERT ? "cert" : "key", error);
        return;
    }
    arena_add_cleanup(&L->config->arena, free_certificate, certificate->loaded);
}

static void finish_listen_tls(struct loader *L, const char *path, const struct json_value *v, char *target)
{
    struct config_tls *tls = &((struct config_listen *)target)->tls;
    if (tls->certificate_count == 0)
        return; /* already reported */
    struct tls_certificate **loaded = arena_alloc(&L->scratch, tls->certificate_count * sizeof *loaded);
    for (size_t i = 0; i < tls->certificate_count; i++) {
        loaded[i] = tls->certificates[i].loaded;
        if (loaded[i] == NULL)
            return; /* already reported */
    }
    char error[256];
    tls->server = tls_server_create(loaded, tls->certificate_count, (enum tls_min_version)tls->min_version, error, sizeof error);
    if (tls->server == NULL) {
        config_load_error(L, "%s.certificates: %s", path, error);
        return;
    }
    arena_add_cleanup(&L->config->arena, free_tls_server, tls->server);
}

static void finish_origin(struct loader *L, const char *path, const struct json_value *v, char *target)
{
    struct config_origin *origin = (struct config_origin *)target;
    bool has_url = config_json_member(v, "url") != NULL, has_static = config_json_member(v, "static") != NULL;
    bool has_respond = config_json_member(v, "respond") != NULL;
    int kinds = has_url + has_static + has_respond;
    if (kinds != 1) {
        static const char *const counts[] = {"none", "", "two", "all three"};
        config_load_error(L, "%s: expected exactly one of url, static or respond, got %s", path, counts[kinds]);
        return;
    }
    origin->kind = has_url ? ORIGIN_KIND_HTTP : has_static ? ORIGIN_KIND_STATIC : ORIGIN_KIND_RESPOND;
    if (has_url && !origin->tls) {
        static const char *const https_only[] = {"ca_file", "tls_verify"};
        for (size_t i = 0; i < VERGE_ARRAY_SIZE(https_only); i++)
            if (config_json_member(v, https_only[i]) != NULL)
                config_load_error(L, "%s.%s: only meaningful with an https url", path, https_only[i]);
        return;
    }
    if (has_url) {
        if (origin->host == NULL || (config_json_member(v, "ca_file") != NULL && origin->ca_file == NULL))
            return; /* already reported */
        char error[512] = "";
        if (origin->tls_verify && origin->ca_file == NULL) {
            /* The system trust store is read once per process, not per origin and reload. */
            origin->tls_client = tls_client_default();
            snprintf(error, sizeof error, "the system trust store cannot be loaded (see the log); set ca_file");
            if (origin->tls_client != NULL)
                tls_client_ref(origin->tls_client);
        } else {
            origin->tls_client =
                tls_client_create(origin->tls_verify ? origin->ca_file : NULL, origin->tls_verify, error, sizeof error);
        }
        if (origin->tls_client == NULL) {
            config_load_error(L, "%s.%s: %s", path, origin->ca_file != NULL ? "ca_file" : "url", error);
            return;
        }
        arena_add_cleanup(&L->config->arena, free_tls_client, origin->tls_client);
        origin->pool_identity = arena_printf(&L->config->arena, "%s %d %s", origin->host, origin->tls_verify,
                                             origin->ca_file != NULL ? origin->ca_file : "-");
        return;
    }
    static const char *const url_only[] = {"connect_timeout_ms", "read_timeout_ms", "max_idle", "ca_file", "tls_verify"};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(url_only); i++)
        if (config_json_member(v, url_only[i]) != NULL)
            config_load_error(L, "%s.%s: only meaningful with url; this origin is %s", path, url_only[i],
                              has_static ? "static" : "a fixed answer (respond)");
}

static void finish_behaviors(struct loader *L, const char *path, const struct json_value *v, char *target)
{
    const struct config *config = L->config;
    const struct config_behavior *last = &config->behaviors[config->behavior_count - 1];
    if (last->path_pattern != NULL && strcmp(last->path_pattern, "*") != 0)
        config_load_error(L, "%s[%zu].path: expected \"*\" for the last behavior (the default), got %s", path,
                          config->behavior_count - 1, config_quote_text(L, slice_from_cstr(last->path_pattern)));
}

static void finish_admin(struct loader *L, const char *path, const struct json_value *v, char *target)
{
    struct config *config = L->config;
    config->admin.enabled = true;
    const struct config_address *address = &config->admin.address;
    if (address->text == NULL)
        return; /* invalid, already reported */
    if (!address->is_loopback && config_json_member(v, "token_file") == NULL)
        config_load_error(L, "%s.address: %s is not a loopback address; set %s.token_file to expose the admin listener", path,
                          config_quote_text(L, slice_from_cstr(address->text)), path);
    for (size_t i = 0; i < config->listen_count; i++)
        if (same_address(address, &config->listen[i].address))
            config_load_error(L, "%s.address: %s is also listen[%zu].address", path,
                              config_quote_text(L, slice_from_cstr(address->text)), i);
}

/* True when `object` has member `name` and it is an integer within the
 * key's range, i.e. the walk stored it. Cross-key checks skip members that
 * were already reported, so one mistake makes one message. */
static bool member_was_stored(const struct json_value *object, const char *name, long long min, long long max)
{
    const struct json_value *m = config_json_member(object, name);
    if (m == NULL || m->kind != JSON_NUMBER || m->text.len == 0 || m->text.len > 19)
        return false;
    for (size_t i = 0; i < m->text.len; i++)
        if (m->text.ptr[i] < '0' || m->text.ptr[i] > '9')
            return false;
    long long n = strtoll(m->text.ptr, NULL, 10);
    return n >= min && n <= max;
}

/* CloudFront's TTL defaulting, then min_ttl <= default_ttl <= max_ttl. */
static void finish_behavior_cache(struct loader *L, const char *path, const struct json_value *v, char *target)
{
    struct cache_settings *cache = &((struct config_behavior *)target)->cache;
    cache->enabled = true;
    static const char *const ttl_names[] = {"min_ttl", "default_ttl", "max_ttl"};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(ttl_names); i++)
        if (config_json_member(v, ttl_names[i]) != NULL && !member_was_stored(v, ttl_names[i], 0, CACHE_TTL_LIMIT))
            return; /* already reported */
    bool has_default = config_json_member(v, "default_ttl") != NULL, has_max = config_json_member(v, "max_ttl") != NULL;
    if (!has_default && cache->min_ttl > CACHE_DEFAULT_TTL)
        cache->default_ttl = cache->min_ttl;
    if (!has_max && (cache->min_ttl > CACHE_MAX_TTL || cache->default_ttl > CACHE_MAX_TTL))
        cache->max_ttl = cache->default_ttl;

    long long min = cache->min_ttl, default_ttl = cache->default_ttl, max = cache->max_ttl;
    if (default_ttl < min) /* only when default_ttl is written */
        config_load_error(L, "%s.default_ttl: expected at least min_ttl (%lld), got %lld", path, min, default_ttl);
    else if (max < min) /* from here on only when max_ttl is written */
        config_load_error(L, "%s.max_ttl: expected at least min_ttl (%lld), got %lld", path, min, max);
    else if (max < default_ttl && has_default)
        config_load_error(L, "%s.max_ttl: expected at least default_ttl (%lld), got %lld", path, default_ttl, max);
    else if (max < default_ttl)
        config_load_error(L, "%s.max_ttl: expected at least default_ttl (%lld when not set; set default_ttl too), got %lld", path,
                          default_ttl, max);
}

/* An absent max_object_mb follows a smaller memory_mb; a written one must fit. */
static void finish_cache(struct loader *L, const char *path, const struct json_value *v, char *target)
{
    struct config *config = (struct config *)target;
    if (config_json_member(v, "memory_mb") != NULL && !member_was_stored(v, "memory_mb", 1, CACHE_MEMORY_MB_MAX))
        return;
    if (config_json_member(v, "max_object_mb") == NULL) {
        if (config->cache.max_object_bytes > config->cache.memory_bytes)
            config->cache.max_object_bytes = config->cache.memory_bytes;
    } else if (member_was_stored(v, "max_object_mb", 1, CACHE_OBJECT_MB_MAX) &&
               config->cache.max_object_bytes > config->cache.memory_bytes) {
        config_load_error(L, "%s.max_object_mb: expected at most memory_mb (%llu), got %llu", path,
                          (unsigned long long)(config->cache.memory_bytes / MIB),
                          (unsigned long long)(config->cache.max_object_bytes / MIB));
    }
}

/* A viewer header in the cache key is one the behavior asks for (as a
 * CloudFront cache policy's headers go to the origin): keyed on verge's
 * value, never on what the viewer sent. */
static void finish_behavior(struct loader *L, const char *path, const struct json_value *v, char *target)
{
    struct config_behavior *behavior = (struct config_behavior *)target;
    const struct cache_name_list *key_headers = &behavior->cache.headers;
    for (size_t i = 0; i < key_headers->count; i++)
        behavior->viewer_headers |= viewer_meta_header_bit(slice_from_cstr(key_headers->names[i]));
}

/* Under verge dev the switches default to on; a value in the file wins. */
static void finish_dev(struct loader *L, const char *path, const struct json_value *v, char *target)
{
    struct config *config = (struct config *)target;
    if (config_dev_mode && config_json_member(v, "debug_headers") == NULL)
        config->dev.debug_headers = true;
}

/* ---- reference --------------------------------------------------------------------------------- */

static void append_cell(struct bytebuf *out, const char *text)
{
    bytebuf_append(out, " ", 1);
    for (const char *c = text; *c != '\0'; c++) {
        if (*c == '|')
            bytebuf_append(out, "\\", 1);
        bytebuf_append(out, c, 1);
    }
    bytebuf_append(out, " |", 2);
}

void config_write_reference(struct bytebuf *out)
{
    static const char *const type_names[] = {
        [SCHEMA_OBJECT] = "object",
        [SCHEMA_ARRAY] = "array of objects",
        [SCHEMA_MAP] = "object of objects",
        [SCHEMA_STRING] = "string",
        [SCHEMA_INTEGER] = "integer",
        [SCHEMA_BOOLEAN] = "boolean",
        [SCHEMA_ENUM] = "string enum",
        [SCHEMA_NAME_LIST] = "`\"none\"`, `\"all\"`, array of names or `{\"except\": [names]}`",
        [SCHEMA_NAME_ARRAY] = "array of names",
        [SCHEMA_CUSTOM] = NULL, /* key->expected */
    };
    bytebuf_appendf(out, "| key | type | default | range / values | description |\n");
    bytebuf_appendf(out, "| --- | --- | --- | --- | --- |\n");
    for (size_t i = 0; i < config_schema_count; i++) {
        const struct schema_key *key = &config_schema[i];
        if (key->pattern[0] == '\0')
            continue;
        char cell[512];
        bytebuf_append(out, "|", 1);
        snprintf(cell, sizeof cell, "`%s`", key->pattern);
        append_cell(out, cell);
        append_cell(out, key->type == SCHEMA_OBJECT && (key->flags & KEY_FALSE_DISABLES) ? "object or `false`"
                         : key->type == SCHEMA_CUSTOM                                    ? key->expected
                                                                                         : type_names[key->type]);
        if (key->flags & KEY_REQUIRED)
            snprintf(cell, sizeof cell, "required");
        else if (key->default_doc != NULL)
            snprintf(cell, sizeof cell, "%s", key->default_doc);
        else if (key->default_value != NULL && key->type == SCHEMA_INTEGER)
            snprintf(cell, sizeof cell, "%s", key->default_value);
        else if (key->default_value != NULL)
            snprintf(cell, sizeof cell, "`\"%s\"`", key->default_value);
        else if (key->type == SCHEMA_OBJECT)
            cell[0] = '\0'; /* an array element or map entry: nothing to default */
        else
            snprintf(cell, sizeof cell, "none");
        append_cell(out, cell);
        cell[0] = '\0';
        if (key->type == SCHEMA_INTEGER) {
            snprintf(cell, sizeof cell, "%lld to %lld", key->min, key->max);
        } else if (key->type == SCHEMA_ARRAY || key->type == SCHEMA_MAP) {
            snprintf(cell, sizeof cell, "%lld to %lld entries", key->min, key->max);
        } else if (key->type == SCHEMA_CUSTOM) {
            if (key->max > 0)
                snprintf(cell, sizeof cell, "at most %lld entries", key->max);
        } else if (key->type == SCHEMA_NAME_LIST || key->type == SCHEMA_NAME_ARRAY) {
            snprintf(cell, sizeof cell, "at most %lld names", key->max);
        } else if (key->type == SCHEMA_ENUM) {
            size_t used = 0;
            for (size_t v = 0; key->values[v] != NULL && used < sizeof cell; v++)
                used += (size_t)snprintf(cell + used, sizeof cell - used, "%s`\"%s\"`", v > 0 ? ", " : "", key->values[v]);
        } else if (key->expected != NULL) {
            snprintf(cell, sizeof cell, "%s", key->expected);
        }
        append_cell(out, cell);
        append_cell(out, key->doc);
        bytebuf_append(out, "\n", 1);
    }
}

bool config_reference_embedded_in(slice_t document)
{
    struct bytebuf reference = {0};
    config_write_reference(&reference);
    bool found = memmem(document.ptr, document.len, reference.data, reference.len) != NULL;
    bytebuf_free(&reference);
    return found;
}
