/* policy.h — the cache's decisions as pure functions: Cache-Control parsing,
 * whether a response may be stored and for how long (RFC 9111 with
 * CloudFront's TTL model, spec/lambda-edge.md §10.3), age and freshness, the
 * cache key, Vary matching, and 304 header merging.
 *
 * Nothing here does I/O, takes a lock or reads a clock: `now` is an argument
 * (seconds since the epoch). Every function is unit-tested with a fake clock
 * in t/unit/test_cache_policy.c.
 */
#ifndef VERGE_CACHE_POLICY_H
#define VERGE_CACHE_POLICY_H

#include "../proxy/base.h"
#include "../proxy/http1.h"

/* ---- per-behavior settings (filled from the config) --------------------- */

enum cache_list_mode {
    CACHE_LIST_NONE,   /* nothing of this kind in the key */
    CACHE_LIST_ALL,    /* everything */
    CACHE_LIST_ONLY,   /* only the names in `names` */
    CACHE_LIST_EXCEPT, /* everything but the names in `names` */
};

struct cache_name_list {
    enum cache_list_mode mode;
    char **names; /* query and cookie names: case-sensitive; header names: lowercase */
    size_t count;
};

struct cache_settings {
    bool enabled;                          /* false: "cache": false, every request passes */
    int64_t min_ttl, default_ttl, max_ttl; /* seconds */
    int64_t error_ttl;                     /* error caching minimum TTL (§10.3), default 10 */
    int64_t stale_while_revalidate;        /* seconds; behavior default, the response's directive wins; 0 = off */
    int64_t stale_if_error;                /* likewise */
    struct cache_name_list query;          /* key: query parameters (default NONE) */
    struct cache_name_list headers;        /* key: request headers (ONLY or NONE) */
    struct cache_name_list cookies;        /* key: cookies (default NONE) */
};

/* ---- Cache-Control ------------------------------------------------------- */

#define CACHE_DIRECTIVE_ABSENT (-1)

struct cache_control {
    bool no_store, no_cache, private_, public_, must_revalidate, proxy_revalidate, immutable;
    int64_t max_age, s_maxage, stale_while_revalidate, stale_if_error; /* CACHE_DIRECTIVE_ABSENT when absent */
};

/* Parses every Cache-Control header among `headers` (directives are merged
 * across headers; names case-insensitive; quoted values accepted; a
 * malformed delta-seconds makes that directive absent, except that a
 * malformed max-age or s-maxage counts as 0, i.e. stale, per RFC 9111
 * §4.2.1). Also: the first occurrence of a valued directive wins; unknown
 * directives are skipped with their values (commas inside quoted strings do
 * not split); the qualified forms no-cache="..." and private="..." count as
 * unqualified; OWS around '=' is tolerated; huge values saturate (>= 2^31). */
void cache_control_parse(const struct http_header *headers, size_t count, struct cache_control *out);

/* ---- storing and TTL ----------------------------------------------------- */

struct cache_store_decision {
    bool store;                     /* false: pass the response through, do not keep it */
    const char *reason;             /* why not stored, or how the TTL was chosen (for logs and tests) */
    int64_t ttl;                    /* seconds the object is fresh, counted from its age 0 */
    int64_t stale_while_revalidate; /* seconds after ttl during which it may be served while one refresh runs */
    int64_t stale_if_error;         /* seconds after ttl during which it may be served when the origin fails */
};

/* Decides whether a response to `method` (GET or HEAD only; a HEAD response
 * is never stored because it has no body) may be stored and its TTL:
 *  - Statuses: 200, 203, 204, 300, 301, 308, 410 (RFC 9110's heuristically
 *    cacheable list; 206 is never stored by verge) follow the TTL table;
 *    302, 303, 307 likewise but only with explicit freshness (s-maxage,
 *    max-age or Expires); the error codes of §10.3 follow the error rules
 *    below; every other status (1xx, 201, 206, 304, 401, 416, 429, ...) is
 *    never stored.
 *  - not stored: settings disabled; method not GET; status not cacheable;
 *    `Vary: *`; a Set-Cookie header (it would be replayed to every viewer);
 *    no-cache or no-store or private with min_ttl 0; a request
 *    with Authorization unless the response says public, s-maxage or
 *    must-revalidate (RFC 9111 §3.5); no explicit freshness and
 *    default_ttl 0; a TTL of 0 with neither a validator (ETag,
 *    Last-Modified) nor a stale window (it would be refetched in full by
 *    every request anyway).
 *  - TTL: CloudFront's table: no-cache/no-store/private with min_ttl > 0 →
 *    min_ttl (CloudFront stores even no-store then); else s-maxage, then
 *    max-age, then Expires - Date (no Date: `now`; invalid Expires: 0),
 *    clamped to [min_ttl, max_ttl]; else max(default_ttl, min_ttl).
 *  - Error statuses (§10.3 and CloudFront's error-caching page): 404, 414,
 *    500, 501, 502, 503, 504 are always stored; 400, 403, 405, 412, 415 only
 *    with an explicit max-age or s-maxage (Expires is not enough). TTL =
 *    max(error_ttl, min(origin lifetime, max_ttl)), error_ttl when the
 *    origin gives none; min_ttl and default_ttl do not apply. no-store /
 *    no-cache / private prevent storing on 404, 414 and 501 only; the other
 *    error codes ignore them. error_ttl 0 and no longer origin lifetime → not
 *    stored.
 *  - Stale windows: the response's stale-while-revalidate / stale-if-error
 *    directive (0 included) wins over the behavior setting; must-revalidate
 *    or proxy-revalidate make both 0.
 * `request_has_authorization` is whether the viewer request carried
 * Authorization. `reason` is a static string. Pure. */
void cache_decide_store(const struct cache_settings *settings, slice_t method, bool request_has_authorization, int status,
                        const struct http_header *response_headers, size_t response_header_count, int64_t now,
                        struct cache_store_decision *out);

/* ---- age and freshness (RFC 9111 §4.2.3) --------------------------------- */

/* The corrected initial age of a response received at `response_time` for a
 * request sent at `request_time`, from its Date and Age headers. */
int64_t cache_initial_age(const struct http_header *headers, size_t count, int64_t request_time, int64_t response_time);

/* current_age = initial_age + (now - response_time); a clock that stepped
 * back (now < response_time) adds nothing, so it is never below
 * initial_age nor negative. */
int64_t cache_current_age(int64_t initial_age, int64_t response_time, int64_t now);

enum cache_freshness {
    CACHE_FRESH,
    CACHE_STALE_WHILE_REVALIDATE, /* stale, but inside the stale-while-revalidate window */
    CACHE_STALE,                  /* stale: revalidate or refetch (stale-if-error may still apply) */
};

/* FRESH while current_age < ttl; STALE_WHILE_REVALIDATE while
 * current_age < ttl + stale_while_revalidate; STALE after. */
enum cache_freshness cache_freshness_of(int64_t current_age, int64_t ttl, int64_t stale_while_revalidate);

/* True when an object of this age may be served because the origin failed
 * (connect error, timeout, 5xx): current_age < ttl + stale_if_error (a fresh
 * object always may). */
bool cache_may_serve_stale_on_error(int64_t current_age, int64_t ttl, int64_t stale_if_error);

/* ---- the cache key ------------------------------------------------------- */

/* Appends the canonical cache key to `out`:
 *   <method class> NUL <host lowercase> NUL <path> NUL <query part> NUL <header part> NUL <cookie part>
 * where the method class is "G" for GET and HEAD (HEAD is answered from a GET
 * entry) and the method itself otherwise; the query part is the parameters
 * selected by settings->query, sorted by name then value, joined with '&'
 * (as received, not decoded; empty parameters dropped; "a" sorts before
 * "a=" before "a=1"); the header part "name:value\n" for each selected
 * header present (lowercase names, in the order of the list; several headers
 * of a name joined with ", "; a present but empty header still gives
 * "name:\n"); the cookie part the selected "name=value" cookies of every
 * Cookie header, sorted by name then value, joined with "; ". Query and
 * cookie names are matched case-sensitively, header names not. The host is
 * lowercased, the path kept byte for byte. What the key leaves out is still
 * forwarded to the origin: the key never changes the request. */
void cache_build_key(const struct cache_settings *settings, slice_t method, slice_t host, slice_t path, slice_t query,
                     const struct http_header *request_headers, size_t request_header_count, struct bytebuf *out);
/* A key cache_build_key made, as people write it (traces, `verge dev`):
 * "[METHOD ]host/path[?query][ headers{name:value, ...}][ cookies{...}]",
 * bytes outside visible ASCII (and `"`, `\`) as \xHH. Pure. */
void cache_key_describe(slice_t key, struct bytebuf *out);

/* ---- Vary ---------------------------------------------------------------- */

/* Returns false for `Vary: *` (never stored). Otherwise appends to `names`
 * the lowercase, sorted, de-duplicated header names of every Vary header,
 * each followed by '\n' (empty when there is no Vary). */
bool cache_vary_names(const struct http_header *response_headers, size_t count, struct bytebuf *names);

/* Appends the request's values for the Vary `names` (as produced by
 * cache_vary_names): for each name "value\n" (several headers of that name
 * joined with ", ", OWS-trimmed; an absent header is "\x01\n", distinct
 * from an empty one). Two requests select the same variant when their
 * signatures are byte-equal. */
void cache_vary_signature(slice_t names, const struct http_header *request_headers, size_t count, struct bytebuf *out);

/* ---- revalidation -------------------------------------------------------- */

/* The headers of a stored response updated by a 304 (RFC 9111 §3.2): every
 * header the 304 carries replaces the stored ones of that name, except
 * Content-Length, Content-Encoding, Transfer-Encoding, Content-Range and the
 * hop-by-hop ones (including those the 304's Connection header names),
 * which are dropped from the 304; the rest are kept. Order: the kept stored
 * headers, then the 304's. The result's slices point into the two inputs;
 * `out` needs room for stored_count + not_modified_count entries. Returns the
 * number written. */
size_t cache_merge_not_modified(const struct http_header *stored, size_t stored_count, const struct http_header *not_modified,
                                size_t not_modified_count, struct http_header *out);

#endif
