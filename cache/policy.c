/* policy.c — the cache's decisions as pure functions (see policy.h for each
 * contract): Cache-Control parsing, store/TTL decisions (RFC 9111 with
 * CloudFront's TTL table, spec §10.3), age and freshness, cache keys, Vary,
 * and 304 header merging.
 *
 * Invariants: no I/O, no clock, no global state, no locks; `now` and the
 * request/response times are arguments. Allocation only in bytebuf appends
 * and short-lived sort arrays freed before returning. Every time value is
 * kept far from int64 overflow: a delta-seconds larger than
 * DELTA_SECONDS_LIMIT saturates there (RFC 9111 §1.2.2 allows any limit at
 * or above 2^31), so ttl + stale windows can always be added.
 *
 * Header names are compared case-insensitively by name, never by the
 * parser's token, so headers built by hand (edge functions, tests) work too.
 */
#include "policy.h"

#include <stdlib.h>

#define DELTA_SECONDS_LIMIT ((int64_t)1 << 40) /* ~35,000 years */
#define VARY_ABSENT_MARK '\x01'

/* ---- small helpers ------------------------------------------------------- */

static bool name_is(slice_t name, const char *lowercase)
{
    return slice_equal_nocase(name, slice_from_cstr(lowercase));
}

static char lower_ascii(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

static void append_lowercase(struct bytebuf *out, slice_t s)
{
    bytebuf_reserve(out, s.len);
    for (size_t i = 0; i < s.len; i++)
        out->data[out->len++] = lower_ascii(s.ptr[i]);
}

static void append_byte(struct bytebuf *out, char c)
{
    bytebuf_append(out, &c, 1);
}

/* Byte-wise order of two slices, shorter first on a common prefix. */
static int slice_compare(slice_t a, slice_t b)
{
    size_t common = a.len < b.len ? a.len : b.len;
    int order = common ? memcmp(a.ptr, b.ptr, common) : 0;
    if (order != 0)
        return order;
    return (a.len > b.len) - (a.len < b.len);
}

static void *checked_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size);
    VERGE_ASSERT(p != NULL); /* out of memory: nothing sensible to do */
    return p;
}

/* The first header named `name`, or NULL. */
static const struct http_header *header_find(const struct http_header *headers, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++)
        if (name_is(headers[i].name, name))
            return &headers[i];
    return NULL;
}

/* delta-seconds (RFC 9111 §1.2.2): 1*DIGIT, saturating at the limit. Returns
 * -1 when `s` is not one. */
static int64_t parse_delta_seconds(slice_t s)
{
    if (s.len == 0)
        return -1;
    int64_t value = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return -1;
        if (value < DELTA_SECONDS_LIMIT)
            value = value * 10 + (s.ptr[i] - '0');
    }
    return value > DELTA_SECONDS_LIMIT ? DELTA_SECONDS_LIMIT : value;
}

/* ---- Cache-Control ------------------------------------------------------- */

struct directive {
    slice_t name;
    slice_t value;  /* without quotes; backslash escapes left as received */
    bool has_value; /* "name=..." */
    bool malformed; /* unterminated quote or junk between the value and the next comma */
};

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Index just past the quoted-string starting at `i` (on its '"'), or `len`
 * when it is unterminated. */
static size_t skip_quoted(slice_t s, size_t i, bool *terminated)
{
    for (i++; i < s.len; i++) {
        if (s.ptr[i] == '\\' && i + 1 < s.len) {
            i++;
        } else if (s.ptr[i] == '"') {
            *terminated = true;
            return i + 1;
        }
    }
    *terminated = false;
    return s.len;
}

/* Reads the next directive of a Cache-Control value from *position. Returns
 * false when none is left. Elements without a name (",,", "=5", a bare quoted
 * string) are skipped; commas inside quoted strings belong to the value. */
static bool directive_next(slice_t s, size_t *position, struct directive *out)
{
    size_t i = *position;
    for (;;) {
        while (i < s.len && (is_ows(s.ptr[i]) || s.ptr[i] == ','))
            i++;
        if (i >= s.len) {
            *position = i;
            return false;
        }
        size_t name_start = i;
        while (i < s.len && s.ptr[i] != ',' && s.ptr[i] != '=' && s.ptr[i] != '"' && !is_ows(s.ptr[i]))
            i++;
        *out = (struct directive){.name = slice_make(s.ptr + name_start, i - name_start)};
        while (i < s.len && is_ows(s.ptr[i]))
            i++;
        /* Lenient: "max-age = 5" is read as max-age=5 (no harm, and some
         * origins send it). */
        if (i < s.len && s.ptr[i] == '=') {
            i++;
            while (i < s.len && is_ows(s.ptr[i]))
                i++;
            out->has_value = true;
            if (i < s.len && s.ptr[i] == '"') {
                bool terminated;
                size_t end = skip_quoted(s, i, &terminated);
                out->value = slice_make(s.ptr + i + 1, terminated ? end - i - 2 : end - i - 1);
                out->malformed = !terminated;
                i = end;
            } else {
                size_t value_start = i;
                while (i < s.len && s.ptr[i] != ',' && s.ptr[i] != '"' && !is_ows(s.ptr[i]))
                    i++;
                out->value = slice_make(s.ptr + value_start, i - value_start);
            }
        }
        /* Anything left before the next comma is junk; skip it quote-aware. */
        while (i < s.len && s.ptr[i] != ',') {
            if (is_ows(s.ptr[i])) {
                i++;
                continue;
            }
            out->malformed = true;
            if (s.ptr[i] == '"') {
                bool terminated;
                i = skip_quoted(s, i, &terminated);
            } else {
                i++;
            }
        }
        if (out->name.len == 0)
            continue;
        *position = i;
        return true;
    }
}

/* The directive's delta-seconds, -1 when it has none or a malformed one. */
static int64_t directive_seconds(const struct directive *d)
{
    if (!d->has_value || d->malformed)
        return -1;
    return parse_delta_seconds(d->value);
}

void cache_control_parse(const struct http_header *headers, size_t count, struct cache_control *out)
{
    *out = (struct cache_control){
        .max_age = CACHE_DIRECTIVE_ABSENT,
        .s_maxage = CACHE_DIRECTIVE_ABSENT,
        .stale_while_revalidate = CACHE_DIRECTIVE_ABSENT,
        .stale_if_error = CACHE_DIRECTIVE_ABSENT,
    };
    /* The first occurrence of a valued directive wins (RFC 9111 §4.2.1). */
    bool seen_max_age = false, seen_s_maxage = false, seen_swr = false, seen_sie = false;
    for (size_t h = 0; h < count; h++) {
        if (!name_is(headers[h].name, "cache-control"))
            continue;
        slice_t value = headers[h].value;
        size_t position = 0;
        struct directive d;
        while (directive_next(value, &position, &d)) {
            if (name_is(d.name, "no-store")) {
                out->no_store = true;
            } else if (name_is(d.name, "no-cache")) {
                out->no_cache = true; /* also the qualified form: treated as unqualified */
            } else if (name_is(d.name, "private")) {
                out->private_ = true; /* likewise */
            } else if (name_is(d.name, "public")) {
                out->public_ = true;
            } else if (name_is(d.name, "must-revalidate")) {
                out->must_revalidate = true;
            } else if (name_is(d.name, "proxy-revalidate")) {
                out->proxy_revalidate = true;
            } else if (name_is(d.name, "immutable")) {
                out->immutable = true;
            } else if (name_is(d.name, "max-age")) {
                if (!seen_max_age) {
                    int64_t seconds = directive_seconds(&d);
                    out->max_age = seconds < 0 ? 0 : seconds; /* malformed: stale (RFC 9111 §4.2.1) */
                    seen_max_age = true;
                }
            } else if (name_is(d.name, "s-maxage")) {
                if (!seen_s_maxage) {
                    int64_t seconds = directive_seconds(&d);
                    out->s_maxage = seconds < 0 ? 0 : seconds;
                    seen_s_maxage = true;
                }
            } else if (name_is(d.name, "stale-while-revalidate")) {
                if (!seen_swr) {
                    int64_t seconds = directive_seconds(&d);
                    out->stale_while_revalidate = seconds < 0 ? CACHE_DIRECTIVE_ABSENT : seconds;
                    seen_swr = true;
                }
            } else if (name_is(d.name, "stale-if-error")) {
                if (!seen_sie) {
                    int64_t seconds = directive_seconds(&d);
                    out->stale_if_error = seconds < 0 ? CACHE_DIRECTIVE_ABSENT : seconds;
                    seen_sie = true;
                }
            }
            /* unknown directives are ignored (RFC 9111 §5.2.3) */
        }
    }
}

/* ---- storing and TTL ----------------------------------------------------- */

enum status_class {
    STATUS_NOT_STORED,       /* never stored */
    STATUS_HEURISTIC,        /* stored with explicit freshness or default_ttl (RFC 9110 §15.1 list, 206 excluded) */
    STATUS_EXPLICIT_ONLY,    /* stored only with explicit freshness (other redirects) */
    STATUS_ERROR_ALWAYS,     /* §10.3: always cached, error_ttl minimum */
    STATUS_ERROR_WITH_MAXAGE /* §10.3: cached only with max-age or s-maxage */
};

static enum status_class status_class_of(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 300:
    case 301:
    case 308:
    case 410:
        return STATUS_HEURISTIC;
    case 302:
    case 303:
    case 307:
        return STATUS_EXPLICIT_ONLY;
    case 404:
    case 414:
    case 500:
    case 501:
    case 502:
    case 503:
    case 504:
        return STATUS_ERROR_ALWAYS;
    case 400:
    case 403:
    case 405:
    case 412:
    case 415:
        return STATUS_ERROR_WITH_MAXAGE;
    default:
        return STATUS_NOT_STORED;
    }
}

static bool vary_has_star(const struct http_header *headers, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (name_is(headers[i].name, "vary") && http_list_contains(headers[i].value, SLICE_LITERAL("*")))
            return true;
    return false;
}

/* Expires - Date (RFC 9111 §4.2.1), never negative; an invalid Expires
 * (e.g. "0") is already expired (§5.3); no usable Date means "received
 * now". Returns -1 when there is no Expires header. */
static int64_t expires_lifetime(const struct http_header *headers, size_t count, int64_t now)
{
    const struct http_header *expires = header_find(headers, count, "expires");
    if (expires == NULL)
        return -1;
    int64_t expires_at;
    if (!time_parse_http_date(slice_trim_ows(expires->value), &expires_at))
        return 0;
    const struct http_header *date = header_find(headers, count, "date");
    int64_t date_value;
    if (date == NULL || !time_parse_http_date(slice_trim_ows(date->value), &date_value))
        date_value = now;
    int64_t lifetime = expires_at - date_value;
    if (lifetime < 0)
        return 0;
    return lifetime > DELTA_SECONDS_LIMIT ? DELTA_SECONDS_LIMIT : lifetime;
}

static int64_t clamp_ttl(int64_t ttl, int64_t min_ttl, int64_t max_ttl)
{
    if (ttl > max_ttl)
        ttl = max_ttl;
    if (ttl < min_ttl)
        ttl = min_ttl; /* min_ttl wins over a (misconfigured) smaller max_ttl */
    return ttl < 0 ? 0 : ttl;
}

static void refuse(struct cache_store_decision *out, const char *reason)
{
    *out = (struct cache_store_decision){.store = false, .reason = reason};
}

void cache_decide_store(const struct cache_settings *settings, slice_t method, bool request_has_authorization, int status,
                        const struct http_header *response_headers, size_t response_header_count, int64_t now,
                        struct cache_store_decision *out)
{
    if (!settings->enabled) {
        refuse(out, "caching disabled for this behavior");
        return;
    }
    if (slice_equal(method, SLICE_LITERAL("HEAD"))) {
        refuse(out, "HEAD response has no body");
        return;
    }
    if (!slice_equal(method, SLICE_LITERAL("GET"))) {
        refuse(out, "method is not GET");
        return;
    }
    enum status_class class = status_class_of(status);
    if (class == STATUS_NOT_STORED) {
        refuse(out, "status not cacheable");
        return;
    }
    if (vary_has_star(response_headers, response_header_count)) {
        refuse(out, "Vary: *");
        return;
    }
    for (size_t i = 0; i < response_header_count; i++)
        if (slice_equal_nocase(response_headers[i].name, SLICE_LITERAL("Set-Cookie"))) {
            /* A stored Set-Cookie would be replayed to every viewer (one
             * user's session to all): never stored, as nginx and Varnish do. */
            refuse(out, "response sets a cookie");
            return;
        }

    struct cache_control cc;
    cache_control_parse(response_headers, response_header_count, &cc);
    if (request_has_authorization && !cc.public_ && cc.s_maxage == CACHE_DIRECTIVE_ABSENT && !cc.must_revalidate) {
        refuse(out, "request has Authorization");
        return;
    }

    /* The origin's explicit lifetime: s-maxage, then max-age, then Expires. */
    int64_t origin_ttl = -1;
    const char *origin_source = NULL;
    if (cc.s_maxage != CACHE_DIRECTIVE_ABSENT) {
        origin_ttl = cc.s_maxage;
        origin_source = "s-maxage";
    } else if (cc.max_age != CACHE_DIRECTIVE_ABSENT) {
        origin_ttl = cc.max_age;
        origin_source = "max-age";
    } else if (class != STATUS_ERROR_WITH_MAXAGE) {
        origin_ttl = expires_lifetime(response_headers, response_header_count, now);
        origin_source = "Expires";
    }
    bool restrictive = cc.no_store || cc.no_cache || cc.private_;

    int64_t ttl;
    const char *reason;
    if (class == STATUS_ERROR_ALWAYS || class == STATUS_ERROR_WITH_MAXAGE) {
        /* CloudFront error caching: the origin's lifetime (capped by
         * max_ttl) but at least error_ttl; no-store/no-cache/private only
         * count on 404, 414 and 501. */
        if (class == STATUS_ERROR_WITH_MAXAGE && origin_ttl < 0) {
            refuse(out, "error status stored only with max-age or s-maxage");
            return;
        }
        if (restrictive && (status == 404 || status == 414 || status == 501)) {
            refuse(out, "no-store/no-cache/private on an error status");
            return;
        }
        ttl = settings->error_ttl < 0 ? 0 : settings->error_ttl;
        reason = "error_ttl";
        if (origin_ttl >= 0) {
            int64_t capped = origin_ttl > settings->max_ttl ? settings->max_ttl : origin_ttl;
            if (capped > ttl) {
                ttl = capped;
                reason = origin_source;
            }
        }
        if (ttl <= 0) {
            refuse(out, "error_ttl 0");
            return;
        }
    } else if (class == STATUS_EXPLICIT_ONLY && origin_ttl < 0) {
        refuse(out, "status stored only with explicit freshness");
        return;
    } else if (restrictive) {
        if (settings->min_ttl <= 0) {
            refuse(out, cc.no_store   ? "no-store with min_ttl 0"
                        : cc.private_ ? "private with min_ttl 0"
                                      : "no-cache with min_ttl 0");
            return;
        }
        ttl = settings->min_ttl;
        reason = "min_ttl (no-store/no-cache/private)";
    } else if (origin_ttl >= 0) {
        ttl = clamp_ttl(origin_ttl, settings->min_ttl, settings->max_ttl);
        reason = origin_source;
    } else {
        ttl = settings->default_ttl > settings->min_ttl ? settings->default_ttl : settings->min_ttl;
        if (ttl <= 0) {
            refuse(out, "no explicit freshness and default_ttl 0");
            return;
        }
        reason = "default_ttl";
    }

    /* Serving stale: the response's directive wins over the behavior
     * setting; must-revalidate / proxy-revalidate forbid it (RFC 9111
     * §5.2.2.2, §5.2.2.8). */
    int64_t stale_while_revalidate = 0, stale_if_error = 0;
    if (!cc.must_revalidate && !cc.proxy_revalidate) {
        stale_while_revalidate =
            cc.stale_while_revalidate != CACHE_DIRECTIVE_ABSENT ? cc.stale_while_revalidate : settings->stale_while_revalidate;
        stale_if_error = cc.stale_if_error != CACHE_DIRECTIVE_ABSENT ? cc.stale_if_error : settings->stale_if_error;
    }
    stale_while_revalidate = clamp_ttl(stale_while_revalidate, 0, DELTA_SECONDS_LIMIT);
    stale_if_error = clamp_ttl(stale_if_error, 0, DELTA_SECONDS_LIMIT);

    /* Stale on arrival with nothing to revalidate with and no stale window:
     * every later request would refetch it in full, so keeping it only costs
     * memory. */
    if (ttl == 0 && stale_while_revalidate == 0 && stale_if_error == 0 &&
        header_find(response_headers, response_header_count, "etag") == NULL &&
        header_find(response_headers, response_header_count, "last-modified") == NULL) {
        refuse(out, "stale on arrival and no validator");
        return;
    }

    *out = (struct cache_store_decision){
        .store = true,
        .reason = reason,
        .ttl = ttl,
        .stale_while_revalidate = stale_while_revalidate,
        .stale_if_error = stale_if_error,
    };
}

/* ---- age and freshness --------------------------------------------------- */

int64_t cache_initial_age(const struct http_header *headers, size_t count, int64_t request_time, int64_t response_time)
{
    int64_t age_value = 0;
    const struct http_header *age = header_find(headers, count, "age");
    if (age != NULL) {
        int64_t parsed = parse_delta_seconds(slice_trim_ows(age->value));
        if (parsed > 0)
            age_value = parsed; /* an invalid Age is ignored */
    }
    int64_t apparent_age = 0;
    const struct http_header *date = header_find(headers, count, "date");
    int64_t date_value;
    if (date != NULL && time_parse_http_date(slice_trim_ows(date->value), &date_value) && response_time > date_value)
        apparent_age = response_time - date_value;
    int64_t response_delay = response_time > request_time ? response_time - request_time : 0;
    int64_t corrected_age_value = age_value + response_delay;
    int64_t initial_age = apparent_age > corrected_age_value ? apparent_age : corrected_age_value;
    return initial_age > DELTA_SECONDS_LIMIT ? DELTA_SECONDS_LIMIT : initial_age;
}

int64_t cache_current_age(int64_t initial_age, int64_t response_time, int64_t now)
{
    int64_t resident_time = now > response_time ? now - response_time : 0; /* a clock stepping back never makes it younger */
    int64_t age = (initial_age > 0 ? initial_age : 0) + resident_time;
    return age;
}

enum cache_freshness cache_freshness_of(int64_t current_age, int64_t ttl, int64_t stale_while_revalidate)
{
    if (current_age < ttl)
        return CACHE_FRESH;
    if (stale_while_revalidate > 0 && current_age < ttl + stale_while_revalidate)
        return CACHE_STALE_WHILE_REVALIDATE;
    return CACHE_STALE;
}

bool cache_may_serve_stale_on_error(int64_t current_age, int64_t ttl, int64_t stale_if_error)
{
    if (current_age < ttl)
        return true; /* still fresh: always servable */
    return stale_if_error > 0 && current_age < ttl + stale_if_error;
}

/* ---- the cache key ------------------------------------------------------- */

static bool list_has_name(const struct cache_name_list *list, slice_t name, bool case_insensitive)
{
    for (size_t i = 0; i < list->count; i++) {
        slice_t listed = slice_from_cstr(list->names[i]);
        if (case_insensitive ? slice_equal_nocase(listed, name) : slice_equal(listed, name))
            return true;
    }
    return false;
}

static bool list_selects(const struct cache_name_list *list, slice_t name, bool case_insensitive)
{
    switch (list->mode) {
    case CACHE_LIST_NONE:
        return false;
    case CACHE_LIST_ALL:
        return true;
    case CACHE_LIST_ONLY:
        return list_has_name(list, name, case_insensitive);
    case CACHE_LIST_EXCEPT:
        return !list_has_name(list, name, case_insensitive);
    }
    return false;
}

/* One "name=value" element of a query string or Cookie header. */
struct pair {
    slice_t raw; /* as received, OWS-trimmed */
    slice_t name;
    slice_t value;
    bool has_value;
};

static struct pair pair_split(slice_t raw)
{
    struct pair p = {.raw = raw, .name = raw};
    const char *equals = memchr(raw.ptr, '=', raw.len);
    if (equals != NULL) {
        p.name = slice_make(raw.ptr, (size_t)(equals - raw.ptr));
        p.value = slice_make(equals + 1, raw.len - p.name.len - 1);
        p.has_value = true;
    }
    return p;
}

/* Name, then "no value" before any value, then value. */
static int pair_compare(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    int order = slice_compare(x->name, y->name);
    if (order != 0)
        return order;
    if (x->has_value != y->has_value)
        return x->has_value ? 1 : -1;
    return slice_compare(x->value, y->value);
}

/* Splits `s` on `separator`, keeps the non-empty elements `list` selects,
 * sorts them and appends their raw text joined with `joiner`. */
static void append_selected_pairs(struct bytebuf *out, const struct cache_name_list *list, const slice_t *sources,
                                  size_t source_count, char separator, bool trim, const char *joiner)
{
    if (list->mode == CACHE_LIST_NONE)
        return;
    size_t capacity = 0;
    for (size_t s = 0; s < source_count; s++) {
        capacity++;
        for (size_t i = 0; i < sources[s].len; i++)
            capacity += sources[s].ptr[i] == separator;
    }
    struct pair *pairs = checked_calloc(capacity, sizeof *pairs);
    size_t count = 0;
    for (size_t s = 0; s < source_count; s++) {
        slice_t rest = sources[s];
        while (rest.len > 0) {
            const char *cut = memchr(rest.ptr, separator, rest.len);
            size_t element_len = cut ? (size_t)(cut - rest.ptr) : rest.len;
            slice_t element = slice_make(rest.ptr, element_len);
            rest = cut ? slice_make(cut + 1, rest.len - element_len - 1) : slice_make(rest.ptr + rest.len, 0);
            if (trim)
                element = slice_trim_ows(element);
            if (element.len == 0)
                continue;
            struct pair p = pair_split(element);
            if (trim) {
                p.name = slice_trim_ows(p.name);
                p.value = slice_trim_ows(p.value);
            }
            if (list_selects(list, p.name, false))
                pairs[count++] = p;
        }
    }
    qsort(pairs, count, sizeof *pairs, pair_compare);
    for (size_t i = 0; i < count; i++) {
        if (i > 0)
            bytebuf_append(out, joiner, strlen(joiner));
        bytebuf_append_slice(out, pairs[i].raw);
    }
    free(pairs);
}

/* "name:value\n" with every header of that name joined by ", ". */
static void append_header_line(struct bytebuf *out, slice_t name, const struct http_header *headers, size_t count)
{
    bool found = false;
    for (size_t i = 0; i < count; i++) {
        if (!slice_equal_nocase(headers[i].name, name))
            continue;
        if (!found) {
            append_lowercase(out, name);
            append_byte(out, ':');
        } else {
            bytebuf_append(out, ", ", 2);
        }
        bytebuf_append_slice(out, slice_trim_ows(headers[i].value));
        found = true;
    }
    if (found)
        append_byte(out, '\n');
}

struct header_ref {
    slice_t name;
    size_t index;
};

static int header_ref_compare(const void *a, const void *b)
{
    const struct header_ref *x = a, *y = b;
    size_t common = x->name.len < y->name.len ? x->name.len : y->name.len;
    for (size_t i = 0; i < common; i++) {
        char cx = lower_ascii(x->name.ptr[i]), cy = lower_ascii(y->name.ptr[i]);
        if (cx != cy)
            return (unsigned char)cx < (unsigned char)cy ? -1 : 1;
    }
    if (x->name.len != y->name.len)
        return x->name.len < y->name.len ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

static void append_selected_headers(struct bytebuf *out, const struct cache_name_list *list, const struct http_header *headers,
                                    size_t count)
{
    if (list->mode == CACHE_LIST_NONE)
        return;
    if (list->mode == CACHE_LIST_ONLY) {
        for (size_t i = 0; i < list->count; i++) {
            slice_t name = slice_from_cstr(list->names[i]);
            bool listed_before = false; /* a name listed twice is keyed once */
            for (size_t j = 0; j < i; j++)
                listed_before |= slice_equal_nocase(slice_from_cstr(list->names[j]), name);
            if (!listed_before)
                append_header_line(out, name, headers, count);
        }
        return;
    }
    /* ALL / EXCEPT (not offered by CloudFront cache policies, kept general):
     * every selected name once, sorted. */
    struct header_ref *refs = checked_calloc(count, sizeof *refs);
    size_t selected = 0;
    for (size_t i = 0; i < count; i++)
        if (list_selects(list, headers[i].name, true))
            refs[selected++] = (struct header_ref){headers[i].name, i};
    qsort(refs, selected, sizeof *refs, header_ref_compare);
    for (size_t i = 0; i < selected; i++)
        if (i == 0 || !slice_equal_nocase(refs[i].name, refs[i - 1].name))
            append_header_line(out, refs[i].name, headers, count);
    free(refs);
}

void cache_build_key(const struct cache_settings *settings, slice_t method, slice_t host, slice_t path, slice_t query,
                     const struct http_header *request_headers, size_t request_header_count, struct bytebuf *out)
{
    if (slice_equal(method, SLICE_LITERAL("GET")) || slice_equal(method, SLICE_LITERAL("HEAD")))
        append_byte(out, 'G');
    else
        bytebuf_append_slice(out, method);
    append_byte(out, '\0');
    append_lowercase(out, host);
    append_byte(out, '\0');
    bytebuf_append_slice(out, path);
    append_byte(out, '\0');
    append_selected_pairs(out, &settings->query, &query, 1, '&', false, "&");
    append_byte(out, '\0');
    append_selected_headers(out, &settings->headers, request_headers, request_header_count);
    append_byte(out, '\0');
    if (settings->cookies.mode != CACHE_LIST_NONE) {
        size_t cookie_headers = 0;
        for (size_t i = 0; i < request_header_count; i++)
            cookie_headers += name_is(request_headers[i].name, "cookie");
        slice_t *sources = checked_calloc(cookie_headers, sizeof *sources);
        size_t n = 0;
        for (size_t i = 0; i < request_header_count; i++)
            if (name_is(request_headers[i].name, "cookie"))
                sources[n++] = request_headers[i].value;
        append_selected_pairs(out, &settings->cookies, sources, n, ';', true, "; ");
        free(sources);
    }
}

/* ---- Vary ---------------------------------------------------------------- */

static int slice_compare_qsort(const void *a, const void *b)
{
    return slice_compare(*(const slice_t *)a, *(const slice_t *)b);
}

bool cache_vary_names(const struct http_header *response_headers, size_t count, struct bytebuf *names)
{
    if (vary_has_star(response_headers, count))
        return false;
    /* Lowercase every element into a scratch buffer, then sort slices of it. */
    struct bytebuf scratch = {0};
    size_t elements = 0;
    for (size_t i = 0; i < count; i++) {
        if (!name_is(response_headers[i].name, "vary"))
            continue;
        slice_t rest = response_headers[i].value;
        while (rest.len > 0) {
            const char *comma = memchr(rest.ptr, ',', rest.len);
            size_t element_len = comma ? (size_t)(comma - rest.ptr) : rest.len;
            slice_t element = slice_trim_ows(slice_make(rest.ptr, element_len));
            rest = comma ? slice_make(comma + 1, rest.len - element_len - 1) : slice_make(rest.ptr + rest.len, 0);
            if (element.len == 0)
                continue;
            append_lowercase(&scratch, element);
            append_byte(&scratch, '\n');
            elements++;
        }
    }
    if (elements == 0) {
        bytebuf_free(&scratch);
        return true;
    }
    slice_t *sorted = checked_calloc(elements, sizeof *sorted);
    size_t n = 0, start = 0;
    for (size_t i = 0; i < scratch.len; i++) {
        if (scratch.data[i] == '\n') {
            sorted[n++] = slice_make(scratch.data + start, i - start);
            start = i + 1;
        }
    }
    qsort(sorted, n, sizeof *sorted, slice_compare_qsort);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && slice_equal(sorted[i], sorted[i - 1]))
            continue;
        bytebuf_append_slice(names, sorted[i]);
        append_byte(names, '\n');
    }
    free(sorted);
    bytebuf_free(&scratch);
    return true;
}

void cache_vary_signature(slice_t names, const struct http_header *request_headers, size_t count, struct bytebuf *out)
{
    size_t start = 0;
    for (size_t i = 0; i <= names.len; i++) {
        if (i < names.len && names.ptr[i] != '\n')
            continue;
        slice_t name = slice_make(names.ptr + start, i - start);
        start = i + 1;
        if (name.len == 0)
            continue;
        bool found = false;
        for (size_t h = 0; h < count; h++) {
            if (!slice_equal_nocase(request_headers[h].name, name))
                continue;
            if (found)
                bytebuf_append(out, ", ", 2);
            bytebuf_append_slice(out, slice_trim_ows(request_headers[h].value));
            found = true;
        }
        if (!found)
            append_byte(out, VARY_ABSENT_MARK);
        append_byte(out, '\n');
    }
}

/* ---- revalidation -------------------------------------------------------- */

/* True for a header of a 304 that must not replace the stored ones. */
static bool header_kept_from_stored(const struct http_header *header, const struct http_header *not_modified,
                                    size_t not_modified_count)
{
    slice_t name = header->name;
    if (name_is(name, "content-length") || name_is(name, "content-encoding") || name_is(name, "transfer-encoding") ||
        name_is(name, "content-range"))
        return true;
    if (http_token_flags(http_token_lookup(name)) & HTTP_TOKEN_FLAG_HOP_BY_HOP)
        return true;
    /* Fields the 304's Connection header names are hop-by-hop too. */
    for (size_t i = 0; i < not_modified_count; i++)
        if (name_is(not_modified[i].name, "connection") && http_list_contains(not_modified[i].value, name))
            return true;
    return false;
}

size_t cache_merge_not_modified(const struct http_header *stored, size_t stored_count, const struct http_header *not_modified,
                                size_t not_modified_count, struct http_header *out)
{
    size_t n = 0;
    for (size_t i = 0; i < stored_count; i++) {
        bool replaced = false;
        if (!header_kept_from_stored(&stored[i], not_modified, not_modified_count)) {
            for (size_t j = 0; j < not_modified_count && !replaced; j++)
                replaced = slice_equal_nocase(not_modified[j].name, stored[i].name);
        }
        if (!replaced)
            out[n++] = stored[i];
    }
    for (size_t j = 0; j < not_modified_count; j++)
        if (!header_kept_from_stored(&not_modified[j], not_modified, not_modified_count))
            out[n++] = not_modified[j];
    return n;
}

/* The cache key (cache_build_key's NUL-separated parts) as people write it:
 * [METHOD ]host/path[?query][ headers{...}][ cookies{...}]. */
void cache_key_describe(slice_t key, struct bytebuf *out)
{
    slice_t parts[6] = {{0}};
    size_t count = 0, start = 0;
    for (size_t i = 0; i <= key.len && count < 6; i++)
        if (i == key.len || key.ptr[i] == '\0') {
            parts[count++] = (slice_t){key.ptr + start, i - start};
            start = i + 1;
        }
    if (count < 3) {
        bytebuf_append_visible(out, key);
        return;
    }
    if (!slice_equal(parts[0], SLICE_LITERAL("G"))) {
        bytebuf_append_visible(out, parts[0]);
        bytebuf_append(out, " ", 1);
    }
    bytebuf_append_visible(out, parts[1]);
    bytebuf_append_visible(out, parts[2]);
    if (parts[3].len > 0) {
        bytebuf_append(out, "?", 1);
        bytebuf_append_visible(out, parts[3]);
    }
    if (parts[4].len > 0) {
        slice_t headers = parts[4];
        if (headers.ptr[headers.len - 1] == '\n')
            headers.len--;
        bytebuf_append_cstr(out, " headers{");
        for (size_t i = 0; i < headers.len; i++) {
            if (headers.ptr[i] == '\n')
                bytebuf_append(out, ", ", 2);
            else
                bytebuf_append_visible(out, (slice_t){headers.ptr + i, 1});
        }
        bytebuf_append(out, "}", 1);
    }
    if (parts[5].len > 0) {
        bytebuf_append_cstr(out, " cookies{");
        bytebuf_append_visible(out, parts[5]);
        bytebuf_append(out, "}", 1);
    }
}
