/* event_parse.c — reading Lambda@Edge results (and, for tools, events)
 * into the structs of event.h: LuaJIT's serialization format as the workers
 * write it, and JSON converted into that format first.
 *
 * Pure: no I/O, no clock, no global mutable state, so it is thread-safe.
 * Everything a result holds lives in the caller's arena.
 */
#include "event.h"
#include "event_format.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <yajl/yajl_parse.h>

/* A prefix-encoded number appended to a buffer (the JSON converter's writer). */
static void compact_put_u(struct bytebuf *out, uint32_t n)
{
    bytebuf_reserve(out, 5);
    out->len = (size_t)(compact_prefix(out->data + out->len, n) - out->data);
}

/* ---- parsing ------------------------------------------------------------- */

/* One reader for results and events, over LuaJIT's serialization format
 * (what a worker's string.buffer encode writes), in two passes:
 *
 *  1. check_value walks the input once without allocating and accepts only
 *     what pass 2 relies on: known tags, every count and length within the
 *     bytes left, strings without NUL, finite numbers, integral number keys,
 *     dictionary references (event_keys) as keys only and within the list,
 *     tables nested at most EVENT_MAX_JSON_DEPTH deep, nothing after the
 *     root. Anything else is "result is not a table of strings, numbers,
 *     booleans and tables", whatever else is wrong with the result. On the
 *     way it notes where the root object's members start.
 *  2. The bytes are copied into the arena once (the caller's buffer does
 *     not outlive the call) and the parse_* functions read what the schema
 *     names straight into the result, with slices into that copy, without
 *     bounds checks (pass 1 made them). Header maps are read front to back,
 *     each byte once; other members are found by name.
 *
 * The result is read as JSON would hold it (the contract's format; error
 * paths are JSON paths): a table whose keys are exactly 1..n (n > 0) is an
 * array; any other table is an object, its array elements keyed by their
 * index and number keys spelled in decimal; an empty table is accepted where
 * a list is due (Lua cannot tell {} from []). A member's first occurrence
 * counts (a JSON text can repeat a key, and so can bytes made by hand), and
 * members are read in the schema's order, not the input's, so an input with
 * several faults always reports the same one.
 *
 * A table with both parts is read as LuaJIT writes it: both counts first,
 * then the elements, then the pairs.
 *
 * JSON (event_parse_result, event_parse_event: tests and tools) is turned
 * into this format by yajl's callback parser first, with three tags only
 * that path writes, for what a Lua table cannot say: an array (JSON tells
 * [] from {}), an integer as strtoll reads its text, and a number that is
 * not one. The JSON path keeps two quirks of the C-string tree it replaced:
 * a string ends at its first NUL, and nesting may go one level deeper. */

enum {
    COMPACT_NIL = 0x00,
    COMPACT_NULL = 0x03,
    COMPACT_INT = 0x06,
    /* 0x09..0x0d: 0x08 + 1 with a hash part, + 2 with an array part from
     * index 0, + 4 with one from index 1; then the array part's slot count,
     * the hash part's pair count, the elements, the pairs */
    COMPACT_TABLE_LAST = 0x0d,
    COMPACT_JSON_ARRAY = 0x13,   /* element count, elements */
    COMPACT_JSON_INTEGER = 0x14, /* int64 */
    COMPACT_JSON_NUMBER = 0x15,  /* not an integer; its value is never read */
};

/* An object's members the schema names (fields of event_keys, the one list
 * of the schema's names): where each one's value starts, NULL when absent. */
#define MEMBERS_MAX 10
struct members {
    const enum event_key *names;
    size_t count;
    const unsigned char *at[MEMBERS_MAX];
};

static void members_start(struct members *m, const enum event_key *names, size_t count)
{
    VERGE_ASSERT(count <= MEMBERS_MAX);
    m->names = names;
    m->count = count;
    for (size_t n = 0; n < count; n++)
        m->at[n] = NULL;
}

static const unsigned char *read_string(const unsigned char *p, slice_t *out);

/* A pair's key (at `key`: a dictionary reference or a string, checked
 * already): its value (at `value`) is the member of that name, unless an
 * earlier pair was. A reference is matched by its index; a string (JSON
 * results, or a writer without the dictionary) by its text. `names` and
 * `count` are m's, passed along so that a constant table folds into the
 * comparisons. */
static inline void members_note(struct members *m, const enum event_key *names, size_t count, const unsigned char *key,
                                const unsigned char *value)
{
    size_t n = 0;
    if (*key == COMPACT_DICT_KEY) {
        uint32_t index = key[1] < 0xe0 ? key[1] : EVENT_KEY_COUNT; /* every index of the list is one byte */
        while (n < count && (uint32_t)names[n] != index)
            n++;
    } else {
        slice_t text;
        read_string(key, &text);
        while (n < count && !slice_equal(text, event_keys[names[n]]))
            n++;
    }
    if (n < count && m->at[n] == NULL)
        m->at[n] = value;
}

/* ---- pass 1 ------------------------------------------------------------------ */

/* Every function returns where what it checked ends, NULL when that is not
 * well formed. */
struct compact_check {
    const unsigned char *end;
    int max_depth;
    bool json;            /* the JSON path's own tags may appear */
    struct members *root; /* the root object's members to note */
    /* Results seldom hold a 0 byte at all (numbers, nil and long counts are
     * its other sources): only when the input does is each string searched. */
    bool strings_may_hold_nul;
};

static const unsigned char *check_u(const unsigned char *p, const unsigned char *end, uint32_t *out)
{
    if (p >= end)
        return NULL;
    uint32_t first = *p++;
    if (first < 0xe0) {
        *out = first;
    } else if (first != 0xff) {
        if (p >= end)
            return NULL;
        *out = (((first & 0x1f) << 8) | *p++) + 0xe0;
    } else {
        if (end - p < 4)
            return NULL;
        memcpy(out, p, 4);
        p += 4;
    }
    return p;
}

/* A string value or key (*p >= COMPACT_STRING). */
static inline const unsigned char *check_string(struct compact_check *c, const unsigned char *p)
{
    uint32_t n = *p;
    if (n < 0xe0)
        p++;
    else if ((p = check_u(p, c->end, &n)) == NULL || n < COMPACT_STRING)
        return NULL;
    n -= COMPACT_STRING;
    if (n > (size_t)(c->end - p) || (c->strings_may_hold_nul && memchr(p, '\0', n) != NULL))
        return NULL;
    return p + n;
}

/* A hash key: a string, a reference into the dictionary (event_keys; an
 * index past it is malformed, as string.buffer would refuse it), or a number
 * JSON can spell as an integer. */
static const unsigned char *check_key(struct compact_check *c, const unsigned char *p)
{
    if (p >= c->end)
        return NULL;
    if (*p >= COMPACT_STRING)
        return check_string(c, p);
    if (*p == COMPACT_DICT_KEY) {
        uint32_t index;
        p = check_u(p + 1, c->end, &index);
        return p != NULL && index < EVENT_KEY_COUNT ? p : NULL;
    }
    if (*p != COMPACT_NUMBER || c->end - p < 9)
        return NULL;
    double d;
    memcpy(&d, p + 1, sizeof d);
    return d >= -9.0e15 && d <= 9.0e15 && d == (double)(long long)d ? p + 9 : NULL;
}

static const unsigned char *check_value(struct compact_check *c, const unsigned char *p, int depth);

static const unsigned char *check_table(struct compact_check *c, const unsigned char *p, unsigned tag, int depth);

/* A table's element or value: strings and tables without a detour through
 * check_value, which has the rest. */
static inline const unsigned char *check_item(struct compact_check *c, const unsigned char *p, int depth)
{
    if (p < c->end) {
        unsigned tag = *p;
        if (tag >= COMPACT_STRING)
            return check_string(c, p);
        if (tag >= 0x09 && tag <= COMPACT_TABLE_LAST)
            return depth < c->max_depth ? check_table(c, p + 1, tag, depth + 1) : NULL;
    }
    return check_value(c, p, depth);
}

/* A table's body after its tag (depth counts it): the array part's slot
 * count, the hash part's pair count, the elements, the pairs. Every element
 * and pair takes at least one byte each: counts the input cannot hold are
 * refused before anything is read (or, later, allocated). */
static const unsigned char *check_table(struct compact_check *c, const unsigned char *p, unsigned tag, int depth)
{
    uint32_t array_size = 0, pairs = 0;
    if (tag != 0x09 && (p = check_u(p, c->end, &array_size)) == NULL)
        return NULL;
    if ((tag & 1) && (p = check_u(p, c->end, &pairs)) == NULL)
        return NULL;
    bool from_zero = tag == 0x0a || tag == 0x0b;
    uint32_t elements = from_zero ? array_size : (array_size ? array_size - 1 : 0);
    if ((uint64_t)elements + 2 * (uint64_t)pairs > (size_t)(c->end - p))
        return NULL;
    for (uint32_t i = 0; i < elements; i++)
        if ((p = check_item(c, p, depth)) == NULL)
            return NULL;
    bool root = depth == 1 && c->root != NULL;
    for (uint32_t i = 0; i < pairs; i++) {
        const unsigned char *key = p;
        if ((p = check_key(c, p)) == NULL)
            return NULL;
        if (root && *key != COMPACT_NUMBER)
            members_note(c->root, c->root->names, c->root->count, key, p);
        if ((p = check_item(c, p, depth)) == NULL)
            return NULL;
    }
    return p;
}

static const unsigned char *check_json_array(struct compact_check *c, const unsigned char *p, int depth)
{
    uint32_t elements;
    if ((p = check_u(p, c->end, &elements)) == NULL || elements > (size_t)(c->end - p))
        return NULL;
    for (uint32_t i = 0; i < elements; i++)
        if ((p = check_item(c, p, depth)) == NULL)
            return NULL;
    return p;
}

static const unsigned char *check_value(struct compact_check *c, const unsigned char *p, int depth)
{
    if (p >= c->end)
        return NULL;
    unsigned tag = *p;
    if (tag >= COMPACT_STRING)
        return check_string(c, p);
    p++;
    switch (tag) {
    case COMPACT_NIL: /* a hole in an array */
    case COMPACT_FALSE:
    case COMPACT_TRUE:
    case COMPACT_NULL:
    case COMPACT_EMPTY_TABLE:
        return p;
    case COMPACT_INT: /* int32 (dual-number builds) */
        return c->end - p >= 4 ? p + 4 : NULL;
    case COMPACT_NUMBER: {
        if (c->end - p < 8)
            return NULL;
        double d;
        memcpy(&d, p, sizeof d);
        return isfinite(d) ? p + 8 : NULL; /* JSON has no NaN or infinity */
    }
    case 0x09:
    case 0x0a:
    case 0x0b:
    case 0x0c:
    case COMPACT_TABLE_LAST:
        return depth < c->max_depth ? check_table(c, p, tag, depth + 1) : NULL;
    case COMPACT_JSON_ARRAY:
        return c->json && depth < c->max_depth ? check_json_array(c, p, depth + 1) : NULL;
    case COMPACT_JSON_INTEGER:
        return c->json && c->end - p >= 8 ? p + 8 : NULL;
    case COMPACT_JSON_NUMBER:
        return c->json ? p : NULL;
    default: /* light userdata, metatable dictionaries, int64, complex: no JSON for them; a dictionary
              * reference (COMPACT_DICT_KEY) is a key only: string.buffer writes none for a value */
        return NULL;
    }
}

/* ---- pass 2: reading checked bytes ------------------------------------------- */

static const unsigned char *read_u(const unsigned char *p, uint32_t *out)
{
    uint32_t first = *p++;
    if (first < 0xe0) {
        *out = first;
        return p;
    }
    if (first != 0xff) {
        *out = (((first & 0x1f) << 8) | *p) + 0xe0;
        return p + 1;
    }
    memcpy(out, p, 4);
    return p + 4;
}

/* A string's text (*p >= COMPACT_STRING); returns where it ends. */
static const unsigned char *read_string(const unsigned char *p, slice_t *out)
{
    uint32_t n;
    p = read_u(p, &n);
    *out = (slice_t){(const char *)p, n - COMPACT_STRING};
    return p + out->len;
}

/* A checked string key: a string or a dictionary reference (not a number). */
static inline const unsigned char *read_key(const unsigned char *p, slice_t *out)
{
    if (*p != COMPACT_DICT_KEY)
        return read_string(p, out);
    uint32_t index;
    p = read_u(p + 1, &index);
    *out = event_keys[index];
    return p;
}

static const unsigned char *skip_value(const unsigned char *p)
{
    unsigned tag = *p;
    uint32_t n;
    if (tag >= COMPACT_STRING) {
        p = read_u(p, &n);
        return p + (n - COMPACT_STRING);
    }
    p++;
    switch (tag) {
    case COMPACT_INT:
        return p + 4;
    case COMPACT_DICT_KEY: /* only ever a key */
        return read_u(p, &n);
    case COMPACT_NUMBER:
    case COMPACT_JSON_INTEGER:
        return p + 8;
    case COMPACT_JSON_ARRAY:
        for (p = read_u(p, &n); n > 0; n--)
            p = skip_value(p);
        return p;
    case 0x09:
    case 0x0a:
    case 0x0b:
    case 0x0c:
    case COMPACT_TABLE_LAST: {
        uint32_t pairs = 0;
        n = 0;
        if (tag != 0x09) {
            p = read_u(p, &n);
            if (tag >= 0x0c && n > 0)
                n--; /* from index 1: slot 0 is counted, not written */
        }
        if (tag & 1)
            p = read_u(p, &pairs);
        for (; n > 0; n--)
            p = skip_value(p);
        for (; pairs > 0; pairs--)
            p = skip_value(skip_value(p)); /* a key: a string, a dictionary reference or a number */
        return p;
    }
    default:
        return p;
    }
}

static bool string_at(const unsigned char *p, slice_t *out)
{
    if (*p < COMPACT_STRING)
        return false;
    read_string(p, out);
    return true;
}

/* A number that is an integer: int32, a double that is integral (and within
 * ±9e18), or the JSON path's integer. */
static bool integer_at(const unsigned char *p, long long *out)
{
    switch (*p) {
    case COMPACT_INT: {
        int32_t i;
        memcpy(&i, p + 1, 4);
        *out = i;
        return true;
    }
    case COMPACT_NUMBER: {
        double d;
        memcpy(&d, p + 1, 8);
        *out = (long long)(d >= -9.0e18 && d <= 9.0e18 ? d : 0);
        return d >= -9.0e18 && d <= 9.0e18 && d == (double)*out;
    }
    case COMPACT_JSON_INTEGER: {
        int64_t i;
        memcpy(&i, p + 1, 8);
        *out = i;
        return true;
    }
    default:
        return false;
    }
}

/* A table: array elements (keyed 0.. or 1..), then hash pairs. */
struct table {
    const unsigned char *elements;
    const unsigned char *pairs; /* the first pair; NULL without a hash part */
    uint32_t element_count, pair_count;
    bool from_zero;
    bool is_array; /* what JSON calls an array: elements from 1, no pairs */
};

static inline bool table_at(const unsigned char *p, struct table *t)
{
    unsigned tag = *p++;
    t->elements = p;
    t->pairs = NULL;
    t->element_count = t->pair_count = 0;
    t->from_zero = t->is_array = false;
    switch (tag) {
    case COMPACT_EMPTY_TABLE:
        return true;
    case 0x09: /* the usual object: no array part */
        t->pairs = read_u(p, &t->pair_count);
        return true;
    case COMPACT_JSON_ARRAY:
        t->is_array = true;
        t->elements = read_u(p, &t->element_count);
        return true;
    case 0x0a:
    case 0x0b:
    case 0x0c:
    case COMPACT_TABLE_LAST:
        t->from_zero = tag == 0x0a || tag == 0x0b;
        p = read_u(p, &t->element_count);
        if (!t->from_zero && t->element_count > 0)
            t->element_count--;
        if (tag & 1)
            p = read_u(p, &t->pair_count);
        t->elements = p;
        if (tag & 1) {
            for (uint32_t n = t->element_count; n > 0; n--)
                p = skip_value(p);
            t->pairs = p;
        }
        t->is_array = !t->from_zero && t->element_count > 0 && t->pair_count == 0;
        return true;
    default:
        return false;
    }
}

static bool object_at(const unsigned char *p, struct table *t)
{
    return table_at(p, t) && !t->is_array;
}

/* An array, or an empty object (an empty Lua table has no kind). */
static bool list_at(const unsigned char *p, struct table *t)
{
    return table_at(p, t) && (t->is_array || (t->element_count == 0 && t->pair_count == 0));
}

/* The elements of a list_at table. */
static uint32_t list_len(const struct table *list)
{
    return list->is_array ? list->element_count : 0;
}

/* Where a list_at table ends, given where its last element does. */
static const unsigned char *list_end(const struct table *list, const unsigned char *after_elements)
{
    return list->pairs != NULL ? list->pairs : after_elements;
}

/* Finds the members of an object_at table; returns where it ends. */
static inline const unsigned char *members_find(struct members *m, const enum event_key *names, size_t count,
                                                const struct table *object)
{
    members_start(m, names, count);
    const unsigned char *p = object->elements;
    if (object->pairs == NULL) {
        for (uint32_t n = object->element_count; n > 0; n--)
            p = skip_value(p);
        return p;
    }
    p = object->pairs;
    for (uint32_t i = 0; i < object->pair_count; i++) {
        if (*p != COMPACT_NUMBER) {
            const unsigned char *key = p;
            slice_t text;
            p = read_key(p, &text);
            members_note(m, names, count, key, p);
        } else {
            p += 9; /* a number key */
        }
        p = *p >= COMPACT_STRING && *p < 0xe0 ? p + 1 + (*p - COMPACT_STRING) : skip_value(p);
    }
    return p;
}

/* ---- the schema -------------------------------------------------------------- */

struct parser {
    struct arena *arena;
    enum event_trigger trigger;
    struct event_error *error;
};

/* The members of a request, a response, and a result (either of them). */
enum {
    M_CLIENT_IP,
    M_METHOD,
    M_URI,
    M_QUERYSTRING,
    M_HEADERS,
    M_BODY,
    M_ORIGIN,
    M_STATUS,
    M_STATUS_DESCRIPTION,
    M_BODY_ENCODING,
    MESSAGE_MEMBERS
};
static const enum event_key message_members[MESSAGE_MEMBERS] = {[M_CLIENT_IP] = EVENT_KEY_CLIENT_IP,
                                                                [M_METHOD] = EVENT_KEY_METHOD,
                                                                [M_URI] = EVENT_KEY_URI,
                                                                [M_QUERYSTRING] = EVENT_KEY_QUERYSTRING,
                                                                [M_HEADERS] = EVENT_KEY_HEADERS,
                                                                [M_BODY] = EVENT_KEY_BODY,
                                                                [M_ORIGIN] = EVENT_KEY_ORIGIN,
                                                                [M_STATUS] = EVENT_KEY_STATUS,
                                                                [M_STATUS_DESCRIPTION] = EVENT_KEY_STATUS_DESCRIPTION,
                                                                [M_BODY_ENCODING] = EVENT_KEY_BODY_ENCODING};

enum { E_KEY, E_VALUE, ENTRY_MEMBERS };
static const enum event_key entry_members[ENTRY_MEMBERS] = {[E_KEY] = EVENT_KEY_KEY, [E_VALUE] = EVENT_KEY_VALUE};

enum { B_INPUT_TRUNCATED, B_ACTION, B_ENCODING, B_DATA, BODY_MEMBERS };
static const enum event_key body_members[BODY_MEMBERS] = {[B_INPUT_TRUNCATED] = EVENT_KEY_INPUT_TRUNCATED,
                                                          [B_ACTION] = EVENT_KEY_ACTION,
                                                          [B_ENCODING] = EVENT_KEY_ENCODING,
                                                          [B_DATA] = EVENT_KEY_DATA};

enum { O_CUSTOM, O_S3, ORIGIN_KINDS };
static const enum event_key origin_kinds[ORIGIN_KINDS] = {[O_CUSTOM] = EVENT_KEY_CUSTOM, [O_S3] = EVENT_KEY_S3};

enum {
    O_CUSTOM_HEADERS,
    O_DOMAIN_NAME,
    O_PATH,
    O_PORT,
    O_PROTOCOL,
    O_READ_TIMEOUT,
    O_KEEPALIVE_TIMEOUT,
    O_SSL_PROTOCOLS,
    O_AUTH_METHOD,
    O_REGION,
    ORIGIN_MEMBERS
};
static const enum event_key origin_members[ORIGIN_MEMBERS] = {[O_CUSTOM_HEADERS] = EVENT_KEY_CUSTOM_HEADERS,
                                                              [O_DOMAIN_NAME] = EVENT_KEY_DOMAIN_NAME,
                                                              [O_PATH] = EVENT_KEY_PATH,
                                                              [O_PORT] = EVENT_KEY_PORT,
                                                              [O_PROTOCOL] = EVENT_KEY_PROTOCOL,
                                                              [O_READ_TIMEOUT] = EVENT_KEY_READ_TIMEOUT,
                                                              [O_KEEPALIVE_TIMEOUT] = EVENT_KEY_KEEPALIVE_TIMEOUT,
                                                              [O_SSL_PROTOCOLS] = EVENT_KEY_SSL_PROTOCOLS,
                                                              [O_AUTH_METHOD] = EVENT_KEY_AUTH_METHOD,
                                                              [O_REGION] = EVENT_KEY_REGION};

/* printf arguments for a header name in an error path, at most 60 bytes. */
#define NAME_ARG(name) (int)((name).len > 60 ? 60 : (name).len), (name).ptr

/* A string member: false (with error) when present but not a string, or
 * absent and required. *present tells which. The path is "object.member". */
static bool get_string(struct parser *p, const struct members *m, int member, const char *object, bool required, slice_t *out,
                       bool *present)
{
    const unsigned char *at = m->at[member];
    if (present)
        *present = at != NULL;
    if (at == NULL)
        return required ? event_error_set(p->error, p->trigger, "required field missing", "%s.%s", object,
                                          event_keys[m->names[member]].ptr)
                        : true;
    if (!string_at(at, out))
        return event_error_set(p->error, p->trigger, "must be a string", "%s.%s", object, event_keys[m->names[member]].ptr);
    return true;
}

static bool get_integer(struct parser *p, const struct members *m, int member, const char *object, int64_t *out)
{
    const unsigned char *at = m->at[member];
    long long n;
    if (at == NULL)
        return event_error_set(p->error, p->trigger, "required field missing", "%s.%s", object, event_keys[m->names[member]].ptr);
    if (!integer_at(at, &n))
        return event_error_set(p->error, p->trigger, "must be an integer", "%s.%s", object, event_keys[m->names[member]].ptr);
    *out = n;
    return true;
}

/* One occurrence {key, value}; *end is set to where the entry ends. */
static bool parse_header_entry(struct parser *p, const unsigned char *at, const char *path, slice_t name, uint32_t index,
                               struct event_header_value *out, const unsigned char **end)
{
    struct table entry;
    if (!object_at(at, &entry))
        return event_error_set(p->error, p->trigger, "header entry must be an object", "%s[\"%.*s\"][%u]", path, NAME_ARG(name),
                               index);
    struct members m;
    *end = members_find(&m, entry_members, ENTRY_MEMBERS, &entry);
    if (m.at[E_VALUE] == NULL || !string_at(m.at[E_VALUE], &out->value))
        return event_error_set(p->error, p->trigger, "header value must be a string", "%s[\"%.*s\"][%u].value", path,
                               NAME_ARG(name), index);
    if (m.at[E_KEY] == NULL)
        out->key = event_capitalised_key(p->arena, name);
    else if (!string_at(m.at[E_KEY], &out->key))
        return event_error_set(p->error, p->trigger, "header key must be a string", "%s[\"%.*s\"][%u].key", path, NAME_ARG(name),
                               index);
    return true;
}

/* name → [{key, value}, ...]: one event_header per name (a repeated name is
 * an error), occurrences in order, a missing key derived from the name. The
 * map is read front to back once: each list ends where the next key starts. */
static bool parse_headers(struct parser *p, const unsigned char *at, const char *path, struct event_headers *out)
{
    *out = (struct event_headers){0};
    struct table map;
    if (at == NULL)
        return event_error_set(p->error, p->trigger, "required field missing", "%s", path);
    if (!object_at(at, &map))
        return event_error_set(p->error, p->trigger, "must be an object", "%s", path);
    size_t count = (size_t)map.element_count + map.pair_count;
    if (count == 0)
        return true;
    out->items = arena_alloc(p->arena, arena_grow_capacity(count, ARENA_GROW_FIRST_HEADERS) * sizeof *out->items);
    /* Most headers have one value: theirs come from one block. */
    struct event_header_value *single_values = arena_alloc(p->arena, count * sizeof *single_values);
    const unsigned char *q = map.elements;
    uint64_t seen = 0;
    for (size_t i = 0; i < count; i++) {
        slice_t name;
        if (i < map.element_count) {
            name = slice_from_cstr(arena_printf(p->arena, "%zu", map.from_zero ? i : i + 1));
        } else {
            if (i == map.element_count)
                q = map.pairs;
            if (*q != COMPACT_NUMBER) {
                q = read_key(q, &name); /* a header named like a field ("origin") comes back as a reference */
            } else {
                double d; /* integral: pass 1 */
                memcpy(&d, q + 1, sizeof d);
                name = slice_from_cstr(arena_printf(p->arena, "%lld", (long long)d));
                q += 9;
            }
        }
        struct table list;
        if (!list_at(q, &list))
            return event_error_set(p->error, p->trigger, "header must be an array of {key, value}", "%s[\"%.*s\"]", path,
                                   NAME_ARG(name));
        /* Names seen so far, one bit per (length, last byte): most names hit no
         * bit of those before them and need no comparison. */
        uint64_t bit = (uint64_t)1 << ((name.len * 7 + (name.len ? (unsigned char)name.ptr[name.len - 1] : 0)) & 63);
        if (seen & bit)
            for (size_t k = 0; k < out->count; k++)
                if (slice_equal(out->items[k].name, name))
                    return event_error_set(p->error, p->trigger, "duplicate header name", "%s[\"%.*s\"]", path, NAME_ARG(name));
        seen |= bit;
        /* an empty list still names the header (it means "no value"); keep it */
        struct event_header *header = &out->items[out->count++];
        *header = (struct event_header){.name = name};
        uint32_t values = list_len(&list);
        if (values == 1)
            header->values = &single_values[i];
        else if (values > 1)
            header->values = arena_alloc(p->arena, arena_grow_capacity(values, ARENA_GROW_FIRST_VALUES) * sizeof *header->values);
        const unsigned char *entry_at = list.elements;
        for (uint32_t j = 0; j < values; j++, header->value_count++)
            if (!parse_header_entry(p, entry_at, path, name, j, &header->values[j], &entry_at))
                return false;
        q = list_end(&list, entry_at);
    }
    return true;
}

static bool parse_body_encoding(struct parser *p, const unsigned char *at, const char *path, enum event_body_encoding *out)
{
    slice_t s;
    if (!string_at(at, &s))
        return event_error_set(p->error, p->trigger, "must be a string", "%s", path);
    if (slice_equal(s, SLICE_LITERAL("base64")))
        *out = EVENT_BODY_BASE64;
    else if (slice_equal(s, SLICE_LITERAL("text")))
        *out = EVENT_BODY_TEXT;
    else
        return event_error_set(p->error, p->trigger, "encoding must be text or base64", "%s", path);
    return true;
}

static bool parse_request_body(struct parser *p, const unsigned char *at, struct event_request_body *out)
{
    struct table body;
    if (!object_at(at, &body))
        return event_error_set(p->error, p->trigger, "must be an object", "request.body");
    *out = (struct event_request_body){.action = EVENT_BODY_READ_ONLY, .encoding = EVENT_BODY_BASE64};
    struct members m;
    members_find(&m, body_members, BODY_MEMBERS, &body);
    const unsigned char *truncated = m.at[B_INPUT_TRUNCATED];
    if (truncated != NULL) {
        if (*truncated != COMPACT_TRUE && *truncated != COMPACT_FALSE)
            return event_error_set(p->error, p->trigger, "must be a boolean", "request.body.inputTruncated");
        out->input_truncated = *truncated == COMPACT_TRUE;
    }
    if (m.at[B_ACTION] != NULL) {
        slice_t action;
        if (!string_at(m.at[B_ACTION], &action))
            return event_error_set(p->error, p->trigger, "must be a string", "request.body.action");
        if (slice_equal(action, SLICE_LITERAL("read-only")))
            out->action = EVENT_BODY_READ_ONLY;
        else if (slice_equal(action, SLICE_LITERAL("replace")))
            out->action = EVENT_BODY_REPLACE;
        else
            return event_error_set(p->error, p->trigger, "action must be read-only or replace", "request.body.action");
    }
    if (m.at[B_ENCODING] != NULL && !parse_body_encoding(p, m.at[B_ENCODING], "request.body.encoding", &out->encoding))
        return false;
    return get_string(p, &m, B_DATA, "request.body", false, &out->data, NULL);
}

static bool parse_origin(struct parser *p, const unsigned char *at, struct event_origin *out)
{
    *out = (struct event_origin){0};
    struct table origin;
    if (!object_at(at, &origin))
        return event_error_set(p->error, p->trigger, "must be an object", "request.origin");
    struct members kinds;
    members_find(&kinds, origin_kinds, ORIGIN_KINDS, &origin);
    bool custom = kinds.at[O_CUSTOM] != NULL;
    if (custom == (kinds.at[O_S3] != NULL) || (size_t)origin.element_count + origin.pair_count != 1)
        return event_error_set(p->error, p->trigger, "origin must have exactly one of custom or s3", "request.origin");
    const char *path = custom ? "request.origin.custom" : "request.origin.s3";
    char headers_path[64];
    snprintf(headers_path, sizeof headers_path, "%s.customHeaders", path);
    struct table o;
    if (!object_at(custom ? kinds.at[O_CUSTOM] : kinds.at[O_S3], &o))
        return event_error_set(p->error, p->trigger, "must be an object", "%s", path);
    out->kind = custom ? EVENT_ORIGIN_CUSTOM : EVENT_ORIGIN_S3;
    struct members m;
    members_find(&m, origin_members, ORIGIN_MEMBERS, &o);
    if (m.at[O_CUSTOM_HEADERS] != NULL && !parse_headers(p, m.at[O_CUSTOM_HEADERS], headers_path, &out->custom_headers))
        return false;
    if (!get_string(p, &m, O_DOMAIN_NAME, path, true, &out->domain_name, NULL) ||
        !get_string(p, &m, O_PATH, path, false, &out->path, NULL))
        return false;
    if (out->kind == EVENT_ORIGIN_S3)
        return get_string(p, &m, O_AUTH_METHOD, path, false, &out->auth_method, NULL) &&
               get_string(p, &m, O_REGION, path, false, &out->region, NULL);
    if (!get_integer(p, &m, O_PORT, path, &out->port) || !get_string(p, &m, O_PROTOCOL, path, true, &out->protocol, NULL) ||
        !get_integer(p, &m, O_READ_TIMEOUT, path, &out->read_timeout) ||
        !get_integer(p, &m, O_KEEPALIVE_TIMEOUT, path, &out->keepalive_timeout))
        return false;
    struct table ssl;
    if (m.at[O_SSL_PROTOCOLS] == NULL)
        return event_error_set(p->error, p->trigger, "required field missing", "%s.sslProtocols", path);
    if (!list_at(m.at[O_SSL_PROTOCOLS], &ssl))
        return event_error_set(p->error, p->trigger, "must be an array of strings", "%s.sslProtocols", path);
    out->ssl_protocols = arena_alloc(p->arena, ((size_t)list_len(&ssl) + 1) * sizeof *out->ssl_protocols);
    const unsigned char *element = ssl.elements;
    for (uint32_t i = 0; i < list_len(&ssl); i++, element = skip_value(element)) {
        if (!string_at(element, &out->ssl_protocols[i]))
            return event_error_set(p->error, p->trigger, "must be a string", "%s.sslProtocols[%u]", path, i);
        out->ssl_protocol_count++;
    }
    return true;
}

/* A request object's members (found with message_members). */
static bool parse_request_members(struct parser *p, const struct members *m, struct event_request *out)
{
    *out = (struct event_request){0};
    if (!get_string(p, m, M_CLIENT_IP, "request", false, &out->client_ip, &out->has_client_ip) ||
        !get_string(p, m, M_METHOD, "request", false, &out->method, &out->has_method) ||
        !get_string(p, m, M_URI, "request", true, &out->uri, NULL) ||
        !get_string(p, m, M_QUERYSTRING, "request", false, &out->querystring, &out->has_querystring) ||
        !parse_headers(p, m->at[M_HEADERS], "request.headers", &out->headers))
        return false;
    if (m->at[M_BODY] != NULL) {
        out->has_body = true;
        if (!parse_request_body(p, m->at[M_BODY], &out->body))
            return false;
    }
    if (m->at[M_ORIGIN] != NULL) {
        out->has_origin = true;
        if (!parse_origin(p, m->at[M_ORIGIN], &out->origin))
            return false;
    }
    return true;
}

/* `status` as "302" or 302 (spec §2.2: string documented, number accepted). */
static bool parse_status(struct parser *p, const unsigned char *at, int *out)
{
    if (at == NULL)
        return event_error_set(p->error, p->trigger, "required field missing", "response.status");
    long long integer;
    if (integer_at(at, &integer)) {
        *out = integer < 0 ? -1 : integer > 99999 ? 99999 : (int)integer;
        return true;
    }
    slice_t digits;
    uint64_t n;
    if (string_at(at, &digits) && slice_parse_u64(digits, &n)) {
        *out = n > 99999 ? 99999 : (int)n;
        return true;
    }
    return event_error_set(p->error, p->trigger, "status must be an integer or a string of digits", "response.status");
}

/* A response object's members (found with message_members). */
static bool parse_response_members(struct parser *p, const struct members *m, struct event_response *out)
{
    *out = (struct event_response){.body_encoding = EVENT_BODY_TEXT};
    if (!parse_status(p, m->at[M_STATUS], &out->status) ||
        !get_string(p, m, M_STATUS_DESCRIPTION, "response", false, &out->status_description, &out->has_status_description))
        return false;
    if (m->at[M_HEADERS] != NULL && !parse_headers(p, m->at[M_HEADERS], "response.headers", &out->headers))
        return false;
    if (!get_string(p, m, M_BODY, "response", false, &out->body, &out->has_body))
        return false;
    return m->at[M_BODY_ENCODING] == NULL ||
           parse_body_encoding(p, m->at[M_BODY_ENCODING], "response.bodyEncoding", &out->body_encoding);
}

/* Pass 1 over data, then its copy in the arena: where the root starts, or
 * NULL when the bytes are not well formed (error set). `root` (names set by
 * members_start) gets the root object's members, found on the way. */
static const unsigned char *compact_load(struct parser *p, const char *data, size_t len, bool json, struct members *root)
{
    const unsigned char *start = (const unsigned char *)data;
    struct compact_check check = {start + len, json ? EVENT_MAX_JSON_DEPTH + 1 : EVENT_MAX_JSON_DEPTH, json, root,
                                  memchr(data, '\0', len) != NULL};
    if (check_value(&check, start, 0) != check.end) {
        VERGE_ASSERT(!json); /* what json_load writes is always well formed */
        event_error_set(p->error, p->trigger, "result is not a table of strings, numbers, booleans and tables", "$");
        return NULL;
    }
    unsigned char *copy = arena_alloc(p->arena, len);
    memcpy(copy, data, len);
    for (size_t n = 0; n < root->count; n++)
        if (root->at[n] != NULL)
            root->at[n] = copy + (root->at[n] - start);
    return copy;
}

static bool parse_result_root(struct parser *p, const unsigned char *root_at, const struct members *m, struct event_result *out)
{
    struct table root;
    if (!object_at(root_at, &root))
        return event_error_set(p->error, p->trigger, "JSON output must be an object", "$");
    if (m->at[M_STATUS] != NULL) {
        out->kind = EVENT_RESULT_RESPONSE;
        return parse_response_members(p, m, &out->response);
    }
    if (event_trigger_is_request(p->trigger)) {
        out->kind = EVENT_RESULT_REQUEST;
        return parse_request_members(p, m, &out->request);
    }
    return event_error_set(p->error, p->trigger, "response object required", "response");
}

/* ---- JSON, turned into the same format ---------------------------------------- */

/* yajl's callbacks writing the compact format; containers get a 5-byte count
 * patched when they close. Nesting deeper than EVENT_MAX_JSON_DEPTH + 1
 * levels makes the text unparsable (as it did for the tree parser). */
struct json_writer {
    struct bytebuf *out;
    int depth;
    struct json_container {
        size_t count_at;
        uint32_t count;
        bool is_array;
    } open[EVENT_MAX_JSON_DEPTH + 2];
};

static void json_put(struct json_writer *w, unsigned char tag, const void *payload, size_t len)
{
    bytebuf_append(w->out, &tag, 1);
    if (len > 0)
        bytebuf_append(w->out, payload, len);
}

/* A value in an array counts; in an object its key did. */
static void json_item(struct json_writer *w)
{
    if (w->depth > 0 && w->open[w->depth].is_array)
        w->open[w->depth].count++;
}

static int json_put_string(struct json_writer *w, const unsigned char *text, size_t len)
{
    /* As the C strings of the tree this replaced: a string ends at its first NUL. */
    const unsigned char *nul = memchr(text, '\0', len);
    if (nul != NULL)
        len = (size_t)(nul - text);
    if (len > UINT32_MAX - COMPACT_STRING)
        return 0;
    compact_put_u(w->out, (uint32_t)len + COMPACT_STRING);
    bytebuf_append(w->out, text, len);
    return 1;
}

static int json_null(void *ctx)
{
    json_item(ctx);
    json_put(ctx, COMPACT_NULL, NULL, 0);
    return 1;
}

static int json_boolean(void *ctx, int value)
{
    json_item(ctx);
    json_put(ctx, value ? COMPACT_TRUE : COMPACT_FALSE, NULL, 0);
    return 1;
}

/* An integer when strtoll takes the whole text, as yajl_tree decides. */
static int json_number(void *ctx, const char *text, size_t len)
{
    json_item(ctx);
    char small[64];
    char *copy = len < sizeof small ? small : malloc(len + 1);
    VERGE_ASSERT(copy != NULL);
    memcpy(copy, text, len);
    copy[len] = '\0';
    char *end;
    errno = 0;
    int64_t n = strtoll(copy, &end, 10);
    bool integer = errno == 0 && *end == '\0';
    if (copy != small)
        free(copy);
    if (integer)
        json_put(ctx, COMPACT_JSON_INTEGER, &n, sizeof n);
    else
        json_put(ctx, COMPACT_JSON_NUMBER, NULL, 0);
    return 1;
}

static int json_string(void *ctx, const unsigned char *text, size_t len)
{
    json_item(ctx);
    return json_put_string(ctx, text, len);
}

static int json_open(struct json_writer *w, bool is_array)
{
    if (w->depth > EVENT_MAX_JSON_DEPTH)
        return 0;
    json_item(w);
    unsigned char head[2] = {is_array ? COMPACT_JSON_ARRAY : COMPACT_HASH, 0xff};
    bytebuf_append(w->out, head, 2);
    w->open[++w->depth] = (struct json_container){.count_at = w->out->len, .is_array = is_array};
    uint32_t zero = 0;
    bytebuf_append(w->out, &zero, 4);
    return 1;
}

static int json_start_map(void *ctx)
{
    return json_open(ctx, false);
}

static int json_start_array(void *ctx)
{
    return json_open(ctx, true);
}

static int json_map_key(void *ctx, const unsigned char *key, size_t len)
{
    struct json_writer *w = ctx;
    w->open[w->depth].count++;
    return json_put_string(w, key, len);
}

static int json_close(void *ctx)
{
    struct json_writer *w = ctx;
    struct json_container *c = &w->open[w->depth--];
    memcpy(w->out->data + c->count_at, &c->count, 4);
    return 1;
}

static const yajl_callbacks json_callbacks = {
    .yajl_null = json_null,
    .yajl_boolean = json_boolean,
    .yajl_number = json_number,
    .yajl_string = json_string,
    .yajl_start_map = json_start_map,
    .yajl_map_key = json_map_key,
    .yajl_end_map = json_close,
    .yajl_start_array = json_start_array,
    .yajl_end_array = json_close,
};

/* A JSON text, converted and loaded as compact_load does (error set, with
 * `not_json` as its rule, when it is not JSON). */
static const unsigned char *json_load(struct parser *p, const char *json, size_t len, struct members *root, const char *not_json)
{
    struct bytebuf compact = {0};
    struct json_writer writer = {.out = &compact};
    yajl_handle handle = yajl_alloc(&json_callbacks, NULL, &writer);
    VERGE_ASSERT(handle != NULL);
    bool parsed =
        yajl_parse(handle, (const unsigned char *)json, len) == yajl_status_ok && yajl_complete_parse(handle) == yajl_status_ok;
    yajl_free(handle);
    const unsigned char *loaded = NULL;
    if (parsed && compact.len > 0)
        loaded = compact_load(p, compact.data, compact.len, true, root);
    else
        event_error_set(p->error, p->trigger, not_json, "$");
    bytebuf_free(&compact);
    return loaded;
}

bool event_parse_result(enum event_trigger trigger, const char *json, size_t len, struct arena *arena, struct event_result *out,
                        struct event_error *error)
{
    *out = (struct event_result){0};
    struct parser p = {arena, trigger, error};
    struct members m;
    members_start(&m, message_members, MESSAGE_MEMBERS);
    const unsigned char *root = json_load(&p, json, len, &m, "JSON output is not parsable");
    return root != NULL && parse_result_root(&p, root, &m, out);
}

bool event_parse_result_compact(enum event_trigger trigger, const char *data, size_t len, enum event_header_changes changes,
                                struct arena *arena, struct event_result *out, struct event_error *error)
{
    *out = (struct event_result){0};
    struct parser p = {arena, trigger, error};
    struct members m;
    members_start(&m, message_members, MESSAGE_MEMBERS);
    const unsigned char *root = compact_load(&p, data, len, false, &m);
    if (root == NULL || !parse_result_root(&p, root, &m, out))
        return false;
    if (changes == EVENT_HEADERS_WHOLE)
        return true;
    /* A worker diffs the map of the message its result is (status or not),
     * against the event's map of that message, which a request trigger's
     * event does not have for a response. */
    bool response = out->kind == EVENT_RESULT_RESPONSE;
    const char *path = response ? "response.headers" : "request.headers";
    if (changes != (response ? EVENT_HEADERS_RESPONSE_CHANGES : EVENT_HEADERS_REQUEST_CHANGES) ||
        (response && event_trigger_is_request(trigger)))
        return event_error_set(error, trigger, "header changes for a map the event does not have", "%s", path);
    struct event_headers *headers = response ? &out->response.headers : &out->request.headers;
    if (headers->count > EVENT_HEADER_CHANGES_MAX)
        return event_error_set(error, trigger, "more header changes than a worker sends", "%s", path);
    if (response)
        out->response.headers_are_changes = true;
    else
        out->request.headers_are_changes = true;
    return true;
}

/* ---- input events (JSON: tools and tests) --------------------------------------- */

enum { R_RECORDS, ROOT_MEMBERS };
static const enum event_key root_members[ROOT_MEMBERS] = {[R_RECORDS] = EVENT_KEY_RECORDS};
enum { R_CF, RECORD_MEMBERS };
static const enum event_key record_members[RECORD_MEMBERS] = {[R_CF] = EVENT_KEY_CF};
enum { CF_CONFIG, CF_REQUEST, CF_RESPONSE, CF_MEMBERS };
static const enum event_key cf_members[CF_MEMBERS] = {
    [CF_CONFIG] = EVENT_KEY_CONFIG, [CF_REQUEST] = EVENT_KEY_REQUEST, [CF_RESPONSE] = EVENT_KEY_RESPONSE};
enum { C_EVENT_TYPE, C_DISTRIBUTION_DOMAIN_NAME, C_DISTRIBUTION_ID, C_REQUEST_ID, CONFIG_MEMBERS };
static const enum event_key config_members[CONFIG_MEMBERS] = {[C_EVENT_TYPE] = EVENT_KEY_EVENT_TYPE,
                                                              [C_DISTRIBUTION_DOMAIN_NAME] = EVENT_KEY_DISTRIBUTION_DOMAIN_NAME,
                                                              [C_DISTRIBUTION_ID] = EVENT_KEY_DISTRIBUTION_ID,
                                                              [C_REQUEST_ID] = EVENT_KEY_REQUEST_ID};

/* The members of the object at `at`; false when there is none (at NULL or no object). */
static bool object_members(const unsigned char *at, const enum event_key *names, size_t count, struct members *m)
{
    struct table object;
    members_start(m, names, count);
    if (at == NULL || !object_at(at, &object))
        return false;
    members_find(m, names, count, &object);
    return true;
}

bool event_parse_event(const char *json, size_t len, struct arena *arena, struct event_input *out, struct event_error *error)
{
    *out = (struct event_input){0};
    struct parser p = {arena, EVENT_VIEWER_REQUEST, error};
    struct members root, record, cf, config, message;
    members_start(&root, root_members, ROOT_MEMBERS);
    const unsigned char *root_at = json_load(&p, json, len, &root, "not a JSON text (empty, cut short or malformed)");
    struct table table;
    if (root_at == NULL)
        return false;
    if (!object_at(root_at, &table))
        return event_error_set(error, p.trigger, "JSON output must be an object", "$");
    const unsigned char *records = root.at[R_RECORDS];
    bool one_record = records != NULL && table_at(records, &table) && table.is_array && table.element_count == 1;
    if (!one_record || !object_members(table.elements, record_members, RECORD_MEMBERS, &record) ||
        !object_members(record.at[R_CF], cf_members, CF_MEMBERS, &cf) ||
        !object_members(cf.at[CF_CONFIG], config_members, CONFIG_MEMBERS, &config))
        return event_error_set(error, p.trigger, "required field missing", "Records[0].cf.config");
    slice_t event_type = {0};
    if (!get_string(&p, &config, C_EVENT_TYPE, "config", true, &event_type, NULL))
        return false;
    int trigger = -1;
    for (int i = 0; i < EVENT_TRIGGER_COUNT; i++)
        if (slice_equal(event_type, slice_from_cstr(event_trigger_name((enum event_trigger)i))))
            trigger = i;
    if (trigger < 0)
        return event_error_set(error, p.trigger, "unknown event type", "config.eventType");
    out->trigger = p.trigger = (enum event_trigger)trigger;
    if (!get_string(&p, &config, C_DISTRIBUTION_DOMAIN_NAME, "config", true, &out->config.distribution_domain_name, NULL) ||
        !get_string(&p, &config, C_DISTRIBUTION_ID, "config", true, &out->config.distribution_id, NULL) ||
        !get_string(&p, &config, C_REQUEST_ID, "config", true, &out->config.request_id, NULL))
        return false;
    if (!object_members(cf.at[CF_REQUEST], message_members, MESSAGE_MEMBERS, &message))
        return event_error_set(error, p.trigger, "must be an object", "request");
    if (!parse_request_members(&p, &message, &out->request))
        return false;
    if (event_trigger_is_request(out->trigger))
        return true;
    if (!object_members(cf.at[CF_RESPONSE], message_members, MESSAGE_MEMBERS, &message))
        return event_error_set(error, p.trigger, "must be an object", "response");
    return parse_response_members(&p, &message, &out->response);
}
