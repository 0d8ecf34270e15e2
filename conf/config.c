/* config.c — loads verge's JSON config file into an immutable, refcounted
 * generation (struct config).
 *
 * Three stages, all in config_load_buffer:
 *  1. yajl's callback parser (comments allowed) builds a small JSON tree in a
 *     scratch arena; a syntax error becomes "line L, column C: ...".
 *  2. The tree is walked against config_schema (conf/schema.c), the one
 *     table that declares every key: its JSON path pattern, type, range,
 *     default, doc, and where the value lands in struct config. The walk
 *     visits keys in table order (so origins are known before behaviors
 *     refer to them), applies defaults for absent keys, and records every
 *     problem instead of stopping at the first. Keys that need more than a
 *     type check (addresses, URLs, paths) have a setter in schema.c;
 *     cross-key rules live in per-object "finish" hooks there.
 *  3. On any error the half-built generation is freed and NULL returned.
 *
 * Invariants: every string and array of a generation lives in its own arena
 * (config->arena), so config_unref frees everything at once. A generation is
 * never written after config_load* returns; only the refcount changes, with
 * atomics, so threads share it without locks. The loader itself is
 * single-threaded per call and keeps no global state besides the
 * config_resolve_hosts and config_dev_mode switches.
 */
#include "schema.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_parse.h>

bool config_resolve_hosts = true;
bool config_dev_mode = false;

#define CONFIG_MAX_ERRORS 100
#define CONFIG_MAX_FILE_BYTES (4u << 20)
#define JSON_MAX_DEPTH 64

/* ---- JSON tree ------------------------------------------------------------ */

struct json_builder {
    struct arena *arena;
    /* For the lines of values: yajl's offset is just past the current token. */
    yajl_handle handle;
    const char *text;
    size_t counted_to; /* newlines counted in text[0, counted_to) */
    unsigned line;
    struct json_value *root, *container;
    slice_t pending_key;
    int depth;
    bool too_deep;
};

static unsigned builder_line(struct json_builder *b)
{
    size_t offset = b->handle != NULL ? yajl_get_bytes_consumed(b->handle) : 0;
    for (; b->counted_to < offset; b->counted_to++)
        b->line += b->text[b->counted_to] == '\n';
    return b->line;
}

static struct json_value *json_add(struct json_builder *b, enum json_kind kind)
{
    struct json_value *v = arena_alloc(b->arena, sizeof *v);
    memset(v, 0, sizeof *v);
    v->kind = kind;
    v->line = builder_line(b);
    if (b->container == NULL) {
        b->root = v; /* yajl rejects a second top-level value itself */
        return v;
    }
    v->parent = b->container;
    if (b->container->kind == JSON_OBJECT)
        v->key = b->pending_key;
    if (b->container->last != NULL)
        b->container->last->next = v;
    else
        b->container->first = v;
    b->container->last = v;
    b->container->count++;
    return v;
}

static int json_on_null(void *ctx)
{
    return json_add(ctx, JSON_NULL) != NULL;
}

static int json_on_boolean(void *ctx, int value)
{
    json_add(ctx, JSON_BOOLEAN)->boolean = value != 0;
    return 1;
}

static int json_on_number(void *ctx, const char *s, size_t len)
{
    struct json_builder *b = ctx;
    json_add(b, JSON_NUMBER)->text = arena_slice_copy(b->arena, slice_make(s, len));
    return 1;
}

static int json_on_string(void *ctx, const unsigned char *s, size_t len)
{
    struct json_builder *b = ctx;
    json_add(b, JSON_STRING)->text = arena_slice_copy(b->arena, slice_make((const char *)s, len));
    return 1;
}

static int json_on_map_key(void *ctx, const unsigned char *s, size_t len)
{
    struct json_builder *b = ctx;
    b->pending_key = arena_slice_copy(b->arena, slice_make((const char *)s, len));
    return 1;
}

static int json_open(struct json_builder *b, enum json_kind kind)
{
    if (b->depth >= JSON_MAX_DEPTH) {
        b->too_deep = true;
        return 0;
    }
    b->container = json_add(b, kind);
    b->depth++;
    return 1;
}

static int json_close(struct json_builder *b)
{
    b->container = b->container->parent;
    b->depth--;
    return 1;
}

static int json_on_start_map(void *ctx)
{
    return json_open(ctx, JSON_OBJECT);
}
static int json_on_start_array(void *ctx)
{
    return json_open(ctx, JSON_ARRAY);
}
static int json_on_end(void *ctx)
{
    return json_close(ctx);
}

static const yajl_callbacks json_callbacks = {
    .yajl_null = json_on_null,
    .yajl_boolean = json_on_boolean,
    .yajl_number = json_on_number,
    .yajl_string = json_on_string,
    .yajl_start_map = json_on_start_map,
    .yajl_map_key = json_on_map_key,
    .yajl_end_map = json_on_end,
    .yajl_start_array = json_on_start_array,
    .yajl_end_array = json_on_end,
};

const struct json_value *config_json_member(const struct json_value *object, const char *name)
{
    for (const struct json_value *m = object->first; m != NULL; m = m->next)
        if (slice_equal(m->key, slice_from_cstr(name)))
            return m;
    return NULL;
}

/* ---- loader state and messages --------------------------------------------- */

static void errors_append(struct config_errors *errors, char *message)
{
    char **grown = realloc(errors->messages, (errors->count + 1) * sizeof *grown);
    if (grown == NULL)
        abort();
    errors->messages = grown;
    errors->messages[errors->count++] = message;
}

void config_load_error(struct loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void config_load_error(struct loader *L, const char *fmt, ...)
{
    L->error_count++;
    if (L->error_count > CONFIG_MAX_ERRORS) {
        if (L->error_count == CONFIG_MAX_ERRORS + 1) {
            char *message = NULL;
            if (asprintf(&message, "too many errors; only the first %d are shown", CONFIG_MAX_ERRORS) < 0)
                abort();
            errors_append(L->errors, message);
        }
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    char *message = NULL;
    if (vasprintf(&message, fmt, ap) < 0)
        abort();
    va_end(ap);
    errors_append(L->errors, message);
}

void config_errors_free(struct config_errors *errors)
{
    if (errors == NULL)
        return;
    for (size_t i = 0; i < errors->count; i++)
        free(errors->messages[i]);
    free(errors->messages);
    errors->messages = NULL;
    errors->count = 0;
}

/* A JSON-style quoted rendering of user text for messages: escapes quotes,
 * backslashes and control characters, and shortens long text. */
char *config_quote_text(struct loader *L, slice_t s)
{
    enum { SHOWN_MAX = 80 };
    struct bytebuf buf = {0};
    bool shortened = s.len > SHOWN_MAX;
    size_t n = shortened ? SHOWN_MAX : s.len;
    while (shortened && n > 0 && ((unsigned char)s.ptr[n] & 0xc0) == 0x80)
        n--; /* do not cut a UTF-8 sequence in half */
    bytebuf_append(&buf, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\')
            bytebuf_appendf(&buf, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            bytebuf_appendf(&buf, "\\u%04x", c);
        else
            bytebuf_append(&buf, &s.ptr[i], 1);
    }
    bytebuf_append(&buf, shortened ? "...\"" : "\"", shortened ? 4 : 1);
    char *quoted = arena_strndup(&L->scratch, buf.data, buf.len);
    bytebuf_free(&buf);
    return quoted;
}

const char *config_describe_value(struct loader *L, const struct json_value *v)
{
    switch (v->kind) {
    case JSON_NULL:
        return "null";
    case JSON_BOOLEAN:
        return v->boolean ? "true" : "false";
    case JSON_NUMBER:
        return v->text.ptr;
    case JSON_STRING:
        return config_quote_text(L, v->text);
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    }
    return "?";
}

bool config_is_name_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

static bool is_simple_name(slice_t s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (!config_is_name_char((unsigned char)s.ptr[i]))
            return false;
    return true;
}

/* JSON paths as users write them: origins.app.url, behaviors[1].origin.
 * A key that is not a plain name is quoted: origins."my app". */
static const char *path_child(struct loader *L, const char *parent, slice_t key)
{
    const char *shown =
        is_simple_name(key) && key.len <= 80 ? arena_strndup(&L->scratch, key.ptr, key.len) : config_quote_text(L, key);
    return parent[0] == '\0' ? shown : arena_printf(&L->scratch, "%s.%s", parent, shown);
}

static const char *path_index(struct loader *L, const char *parent, size_t index)
{
    return arena_printf(&L->scratch, "%s[%zu]", parent, index);
}

static const char *shown_path(const char *path)
{
    return path[0] != '\0' ? path : "top level";
}

/* ---- reading the key table --------------------------------------------------- */

/* The last component of `row` when it is a direct member of object `parent`,
 * else NULL. "listen[]" and "origins.*" are elements, not members. */
static const char *schema_member_name(const struct schema_key *parent, const struct schema_key *row)
{
    size_t n = strlen(parent->pattern);
    const char *name = row->pattern;
    if (n > 0) {
        if (strncmp(name, parent->pattern, n) != 0 || name[n] != '.')
            return NULL;
        name += n + 1;
    }
    if (name[0] == '\0' || strcmp(name, "*") == 0 || strpbrk(name, ".[") != NULL)
        return NULL;
    return name;
}

static const struct schema_key *schema_element(const struct schema_key *container)
{
    const char *suffix = container->type == SCHEMA_MAP ? ".*" : "[]";
    size_t n = strlen(container->pattern);
    for (size_t i = 0; i < config_schema_count; i++)
        if (strncmp(config_schema[i].pattern, container->pattern, n) == 0 && strcmp(config_schema[i].pattern + n, suffix) == 0)
            return &config_schema[i];
    VERGE_ASSERT(!"array or map without an element row");
    return NULL;
}

static const char *describe_expected(struct loader *L, const struct schema_key *key)
{
    switch (key->type) {
    case SCHEMA_INTEGER:
        return arena_printf(&L->scratch, "an integer from %lld to %lld", key->min, key->max);
    case SCHEMA_STRING:
        return key->expected != NULL ? key->expected : "a string";
    case SCHEMA_BOOLEAN:
        return "true or false";
    case SCHEMA_ENUM: {
        struct bytebuf buf = {0};
        bytebuf_appendf(&buf, "%s", key->values[1] == NULL ? "" : "one of ");
        for (size_t i = 0; key->values[i] != NULL; i++)
            bytebuf_appendf(&buf, "%s\"%s\"", i > 0 ? ", " : "", key->values[i]);
        char *text = arena_strndup(&L->scratch, buf.data, buf.len);
        bytebuf_free(&buf);
        return text;
    }
    case SCHEMA_OBJECT:
        return key->flags & KEY_FALSE_DISABLES ? "an object or false" : "an object";
    case SCHEMA_ARRAY:
        return "an array";
    case SCHEMA_MAP:
        return "an object";
    case SCHEMA_NAME_LIST:
        return "\"none\", \"all\", an array of names or {\"except\": [names]}";
    case SCHEMA_NAME_ARRAY:
        return "an array of names";
    case SCHEMA_CUSTOM:
        return key->expected;
    }
    return "?";
}

void config_error_expected(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v)
{
    config_load_error(L, "%s: expected %s, got %s", shown_path(path), describe_expected(L, key), config_describe_value(L, v));
}

/* ---- the walk ------------------------------------------------------------------- */

static void walk_value(struct loader *L, const struct schema_key *key, const struct json_value *v, const char *path, char *target);

static bool parse_integer(const char *text, long long *out)
{
    const char *digits = text[0] == '-' ? text + 1 : text;
    if (digits[0] == '\0')
        return false;
    for (const char *c = digits; *c != '\0'; c++)
        if (*c < '0' || *c > '9')
            return false;
    errno = 0;
    *out = strtoll(text, NULL, 10); /* on overflow: LLONG_MIN/MAX, which no range admits */
    return true;
}

/* An absent key takes its default. An absent object is read as `{}` (its keys
 * take their defaults and its finisher runs), unless it has required keys:
 * then it is an optional section (admin) and stays off. */
static void apply_default(struct loader *L, const struct schema_key *key, const char *path, char *target)
{
    if (key->type == SCHEMA_OBJECT) {
        for (size_t i = 0; i < config_schema_count; i++)
            if (schema_member_name(key, &config_schema[i]) != NULL && (config_schema[i].flags & KEY_REQUIRED))
                return;
        const struct json_value empty = {.kind = JSON_OBJECT};
        walk_value(L, key, &empty, path, target);
        return;
    }
    char number[24];
    struct json_value v = {.kind = JSON_STRING};
    if (key->default_function != NULL) {
        snprintf(number, sizeof number, "%d", key->default_function());
        v.kind = JSON_NUMBER;
        v.text = slice_from_cstr(number);
    } else if (key->default_value != NULL) {
        v.text = slice_from_cstr(key->default_value);
        if (key->type == SCHEMA_INTEGER)
            v.kind = JSON_NUMBER;
        if (key->type == SCHEMA_BOOLEAN)
            v = (struct json_value){.kind = JSON_BOOLEAN, .boolean = strcmp(key->default_value, "true") == 0};
    } else {
        return;
    }
    walk_value(L, key, &v, path, target); /* defaults pass the same checks as written values */
}

static void walk_object(struct loader *L, const struct schema_key *key, const struct json_value *v, const char *path, char *target)
{
    for (size_t i = 0; i < config_schema_count; i++) {
        const char *name = schema_member_name(key, &config_schema[i]);
        if (name == NULL)
            continue;
        const char *child_path = path_child(L, path, slice_from_cstr(name));
        const struct json_value *found = NULL;
        for (const struct json_value *m = v->first; m != NULL; m = m->next) {
            if (!slice_equal(m->key, slice_from_cstr(name)))
                continue;
            if (found != NULL)
                config_load_error(L, "%s: duplicate key", child_path);
            else
                found = m;
        }
        if (found != NULL)
            walk_value(L, &config_schema[i], found, child_path, target);
        else if (config_schema[i].flags & KEY_REQUIRED)
            config_load_error(L, "%s: required key is missing", child_path);
        else
            apply_default(L, &config_schema[i], child_path, target);
    }

    const char *known = NULL;
    for (const struct json_value *m = v->first; m != NULL; m = m->next) {
        bool is_known = false;
        for (size_t i = 0; i < config_schema_count && !is_known; i++) {
            const char *name = schema_member_name(key, &config_schema[i]);
            is_known = name != NULL && slice_equal(m->key, slice_from_cstr(name));
        }
        if (is_known)
            continue;
        if (known == NULL) {
            struct bytebuf buf = {0};
            for (size_t i = 0; i < config_schema_count; i++) {
                const char *name = schema_member_name(key, &config_schema[i]);
                if (name != NULL)
                    bytebuf_appendf(&buf, "%s%s", buf.len > 0 ? ", " : "", name);
            }
            known = arena_strndup(&L->scratch, buf.data, buf.len);
            bytebuf_free(&buf);
        }
        config_load_error(L, "%s: unknown key (known: %s)", path_child(L, path, m->key), known);
    }

    if (key->finish != NULL)
        key->finish(L, path, v, target);
}

/* Arrays and maps of objects: allocates the element structs, then walks each. */
static void walk_container(struct loader *L, const struct schema_key *key, const struct json_value *v, const char *path,
                           char *target)
{
    bool is_map = key->type == SCHEMA_MAP;
    if (v->kind != (is_map ? JSON_OBJECT : JSON_ARRAY)) {
        config_error_expected(L, key, path, v);
        return;
    }
    if ((long long)v->count < key->min || (long long)v->count > key->max) {
        config_load_error(L, "%s: expected from %lld to %lld entries, got %zu", shown_path(path), key->min, key->max, v->count);
        return;
    }
    char *elements = arena_alloc(&L->config->arena, v->count * key->element_size);
    *FIELD(void *, target, key) = elements;
    *(size_t *)(target + key->count_offset) = v->count;

    if (is_map) {
        /* Names first, so every element can be referred to even if it is invalid. */
        size_t i = 0;
        for (const struct json_value *m = v->first; m != NULL; m = m->next, i++) {
            if (!is_simple_name(m->key))
                config_load_error(L, "%s: expected names of letters, digits, '_' or '-', got %s", path,
                                  config_quote_text(L, m->key));
            for (const struct json_value *earlier = v->first; earlier != m; earlier = earlier->next)
                if (slice_equal(earlier->key, m->key)) {
                    config_load_error(L, "%s: duplicate key", path_child(L, path, m->key));
                    break;
                }
            *(char **)(elements + i * key->element_size + key->name_offset) =
                arena_strndup(&L->config->arena, m->key.ptr, m->key.len);
        }
    }

    const struct schema_key *element = schema_element(key);
    size_t i = 0;
    for (const struct json_value *item = v->first; item != NULL; item = item->next, i++) {
        const char *item_path = is_map ? path_child(L, path, item->key) : path_index(L, path, i);
        walk_value(L, element, item, item_path, elements + i * key->element_size);
    }
    if (key->finish != NULL)
        key->finish(L, path, v, target);
}

static void walk_value(struct loader *L, const struct schema_key *key, const struct json_value *v, const char *path, char *target)
{
    switch (key->type) {
    case SCHEMA_OBJECT:
        if (v->kind == JSON_BOOLEAN && !v->boolean && (key->flags & KEY_FALSE_DISABLES))
            return; /* turned off: its fields stay NULL/zero */
        if (v->kind != JSON_OBJECT) {
            config_error_expected(L, key, path, v);
            return;
        }
        walk_object(L, key, v, path, target);
        return;
    case SCHEMA_ARRAY:
    case SCHEMA_MAP:
        walk_container(L, key, v, path, target);
        return;
    case SCHEMA_INTEGER: {
        long long n;
        if (v->kind != JSON_NUMBER || !parse_integer(v->text.ptr, &n) || n < key->min || n > key->max) {
            config_error_expected(L, key, path, v);
            return;
        }
        long long stored;
        bool overflow = __builtin_mul_overflow(n, key->unit != 0 ? key->unit : 1, &stored);
        VERGE_ASSERT(!overflow); /* the table's ranges keep min..max * unit within 64 bits */
        if (key->flags & KEY_INT64)
            *FIELD(int64_t, target, key) = stored;
        else
            *FIELD(int, target, key) = (int)stored;
        return;
    }
    case SCHEMA_NAME_LIST:
    case SCHEMA_NAME_ARRAY:
    case SCHEMA_CUSTOM:
        VERGE_ASSERT(key->set != NULL);
        key->set(L, key, path, v, target);
        return;
    case SCHEMA_BOOLEAN:
        if (v->kind != JSON_BOOLEAN) {
            config_error_expected(L, key, path, v);
            return;
        }
        *FIELD(bool, target, key) = v->boolean;
        return;
    case SCHEMA_ENUM:
    case SCHEMA_STRING: {
        /* Strings become C strings: an embedded NUL would silently cut them. */
        bool ok = v->kind == JSON_STRING && memchr(v->text.ptr, '\0', v->text.len) == NULL;
        if (ok && key->type == SCHEMA_ENUM) {
            ok = false;
            for (size_t i = 0; key->values[i] != NULL && !ok; i++)
                ok = strcmp(key->values[i], v->text.ptr) == 0;
        }
        if (!ok) {
            config_error_expected(L, key, path, v);
            return;
        }
        if (key->set != NULL)
            key->set(L, key, path, v, target);
        else
            *FIELD(char *, target, key) = arena_strndup(&L->config->arena, v->text.ptr, v->text.len);
        return;
    }
    }
}

/* ---- loading ------------------------------------------------------------------------------ */

static struct json_value *parse_json(struct loader *L, const char *text, size_t len)
{
    struct json_builder builder = {.arena = &L->scratch, .text = text, .line = 1};
    yajl_handle handle = yajl_alloc(&json_callbacks, NULL, &builder);
    if (handle == NULL)
        abort();
    builder.handle = handle;
    yajl_config(handle, yajl_allow_comments, 1);
    yajl_status status = yajl_parse(handle, (const unsigned char *)text, len);
    /* yajl reports the bytes consumed up to and including the offending byte;
     * a failure in complete_parse (premature end) is at the end. */
    size_t offset = len;
    if (status == yajl_status_ok) {
        status = yajl_complete_parse(handle);
    } else {
        size_t consumed = yajl_get_bytes_consumed(handle);
        offset = consumed > 0 ? consumed - 1 : 0;
    }
    if (status != yajl_status_ok) {
        size_t line = 1, line_start = 0;
        for (size_t i = 0; i < offset && i < len; i++)
            if (text[i] == '\n') {
                line++;
                line_start = i + 1;
            }
        char reason[160];
        if (builder.too_deep) {
            snprintf(reason, sizeof reason, "nested deeper than %d levels", JSON_MAX_DEPTH);
        } else {
            unsigned char *message = yajl_get_error(handle, 0, NULL, 0);
            snprintf(reason, sizeof reason, "%s", message != NULL ? (const char *)message : "syntax error");
            yajl_free_error(handle, message);
            size_t n = strlen(reason);
            while (n > 0 && (reason[n - 1] == '\n' || reason[n - 1] == '.' || reason[n - 1] == ' '))
                reason[--n] = '\0';
        }
        config_load_error(L, "line %zu, column %zu: invalid JSON: %s", line, offset - line_start + 1, reason);
        yajl_free(handle);
        return NULL;
    }
    yajl_free(handle);
    return builder.root;
}

unsigned config_locate_line(const char *text, size_t len, const char *json_path)
{
    struct config_errors errors = {0};
    struct loader L = {.errors = &errors};
    arena_init(&L.scratch);
    const struct json_value *v = parse_json(&L, text, len);
    unsigned line = 0;
    const char *p = json_path;
    while (v != NULL) {
        line = v->line;
        const struct json_value *next = NULL;
        if (*p == '.')
            p++;
        if (*p == '[' && v->kind == JSON_ARRAY) {
            char *end = NULL;
            unsigned long index = strtoul(p + 1, &end, 10);
            if (end == p + 1 || *end != ']')
                break;
            next = v->first;
            for (unsigned long i = 0; next != NULL && i < index; i++)
                next = next->next;
            p = end + 1;
        } else if (*p != '\0' && *p != '[' && v->kind == JSON_OBJECT) {
            size_t n = strcspn(p, ".[");
            for (next = v->first; next != NULL; next = next->next)
                if (slice_equal(next->key, (slice_t){p, n}))
                    break;
            p += n;
        }
        v = next;
    }
    arena_destroy(&L.scratch);
    config_errors_free(&errors);
    return line;
}

static char *absolute_path(const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    char *cwd = getcwd(NULL, 0);
    if (cwd == NULL)
        return NULL;
    char *joined = NULL;
    if (asprintf(&joined, "%s/%s", cwd, path) < 0)
        joined = NULL;
    free(cwd);
    return joined;
}

static void config_destroy(struct config *config)
{
    config->magic = 0;
    arena_destroy(&config->arena);
    free(config);
}

struct config *config_load_buffer(const char *text, size_t len, const char *base_dir, struct config_errors *errors)
{
    VERGE_ASSERT(errors != NULL);
    struct config *config = calloc(1, sizeof *config);
    if (config == NULL)
        abort();
    config->magic = CONFIG_MAGIC;
    atomic_init(&config->refcount, 1);
    config->generation = 1;
    arena_init(&config->arena);

    struct loader L = {.config = config, .errors = errors};
    arena_init(&L.scratch);
    char *absolute_base = absolute_path(base_dir != NULL ? base_dir : ".");
    if (absolute_base == NULL) {
        config_load_error(&L, "cannot find the current directory: %s", strerror(errno));
    } else {
        L.base_dir = arena_strndup(&L.scratch, absolute_base, strlen(absolute_base));
        free(absolute_base);
        struct json_value *root = parse_json(&L, text, len);
        if (root != NULL)
            walk_value(&L, &config_schema[0], root, "", (char *)config);
    }
    arena_destroy(&L.scratch);
    if (L.error_count > 0) {
        config_destroy(config);
        return NULL;
    }
    return config;
}

struct config *config_load(const char *path, struct config_errors *errors)
{
    VERGE_ASSERT(errors != NULL && path != NULL);
    char *message = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (asprintf(&message, "cannot read config file \"%s\": %s", path, strerror(errno)) < 0)
            abort();
    } else if (!S_ISREG(st.st_mode) || (size_t)st.st_size > CONFIG_MAX_FILE_BYTES) {
        if (asprintf(&message, "cannot read config file \"%s\": %s", path,
                     S_ISREG(st.st_mode) ? "larger than 4 MiB" : "not a regular file") < 0)
            abort();
    }
    if (message != NULL) {
        if (fd >= 0)
            close(fd);
        errors_append(errors, message);
        return NULL;
    }

    struct bytebuf text = {0};
    bytebuf_reserve(&text, (size_t)st.st_size + 1);
    for (;;) {
        char chunk[65536];
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (asprintf(&message, "cannot read config file \"%s\": %s", path, strerror(errno)) < 0)
                abort();
            break;
        }
        if (n == 0)
            break;
        bytebuf_append(&text, chunk, (size_t)n);
        if (text.len > CONFIG_MAX_FILE_BYTES) {
            if (asprintf(&message, "cannot read config file \"%s\": larger than 4 MiB", path) < 0)
                abort();
            break;
        }
    }
    close(fd);

    struct config *config = NULL;
    /* Keep the path as given (made absolute), not its realpath: a reload must
     * follow a symlink that was re-pointed since (e.g. a Kubernetes ConfigMap). */
    char *source = absolute_path(path);
    if (message == NULL && source == NULL && asprintf(&message, "cannot find the current directory: %s", strerror(errno)) < 0)
        abort();
    if (message != NULL) {
        errors_append(errors, message);
    } else {
        char *slash = strrchr(source, '/');
        char *base_dir = slash == source ? strdup("/") : strndup(source, (size_t)(slash - source));
        if (base_dir == NULL)
            abort();
        config = config_load_buffer(text.data != NULL ? text.data : "", text.len, base_dir, errors);
        free(base_dir);
        if (config != NULL)
            config->source_path = arena_strndup(&config->arena, source, strlen(source));
    }
    free(source);
    bytebuf_free(&text);
    return config;
}

enum config_fault config_fault_pick(const struct config_faults *faults, double random)
{
    if (random < faults->error_rate)
        return CONFIG_FAULT_ERROR;
    if (random < faults->error_rate + faults->reset_rate)
        return CONFIG_FAULT_RESET;
    return CONFIG_FAULT_NONE;
}

bool config_faults_active(const struct config_faults *faults)
{
    return faults->latency_ms > 0 || faults->error_rate > 0 || faults->reset_rate > 0;
}

void config_function_limits(const struct config_function *function, enum config_trigger_kind kind, int *timeout_ms, int *memory_mb)
{
    bool is_viewer = kind == CONFIG_TRIGGER_VIEWER_REQUEST || kind == CONFIG_TRIGGER_VIEWER_RESPONSE;
    *timeout_ms = function->timeout_ms;
    *memory_mb = function->memory_mb;
    if (function->relaxed)
        return;
    int timeout_cap = is_viewer ? CONFIG_VIEWER_TIMEOUT_MS_MAX : CONFIG_ORIGIN_TIMEOUT_MS_MAX;
    if (*timeout_ms > timeout_cap)
        *timeout_ms = timeout_cap;
    if (is_viewer && *memory_mb > CONFIG_VIEWER_MEMORY_MB_MAX)
        *memory_mb = CONFIG_VIEWER_MEMORY_MB_MAX;
}

void config_ref(struct config *config)
{
    VERGE_CHECK_MAGIC(config, CONFIG_MAGIC);
    atomic_fetch_add_explicit(&config->refcount, 1, memory_order_relaxed);
}

void config_unref(struct config *config)
{
    if (config == NULL)
        return;
    VERGE_CHECK_MAGIC(config, CONFIG_MAGIC);
    /* acq_rel: the thread that frees must see every other thread's last use. */
    int before = atomic_fetch_sub_explicit(&config->refcount, 1, memory_order_acq_rel);
    VERGE_ASSERT(before > 0);
    if (before == 1)
        config_destroy(config);
}

/* ---- behaviors ------------------------------------------------------------------------------ */

bool config_path_pattern_match(slice_t pattern, slice_t path)
{
    if (pattern.len > 0 && pattern.ptr[0] == '/')
        pattern = slice_make(pattern.ptr + 1, pattern.len - 1);
    if (path.len > 0 && path.ptr[0] == '/')
        path = slice_make(path.ptr + 1, path.len - 1);
    /* Iterative wildcard match: on a mismatch, retry from the last '*' with
     * it swallowing one more character. Only the last '*' matters (earlier
     * ones can only have matched less), so this is O(len(pattern) * len(path))
     * at worst and never recurses. */
    size_t p = 0, s = 0, star = SIZE_MAX, star_s = 0;
    while (s < path.len) {
        if (p < pattern.len && pattern.ptr[p] == '*') {
            star = p++;
            star_s = s;
        } else if (p < pattern.len && (pattern.ptr[p] == '?' || pattern.ptr[p] == path.ptr[s])) {
            p++;
            s++;
        } else if (star != SIZE_MAX) {
            p = star + 1;
            s = ++star_s;
        } else {
            return false;
        }
    }
    while (p < pattern.len && pattern.ptr[p] == '*')
        p++;
    return p == pattern.len;
}

const struct config_behavior *config_match_behavior(const struct config *config, slice_t path)
{
    VERGE_CHECK_MAGIC(config, CONFIG_MAGIC);
    for (size_t i = 0; i < config->behavior_count; i++)
        if (config_path_pattern_match(slice_from_cstr(config->behaviors[i].path_pattern), path))
            return &config->behaviors[i];
    return NULL;
}
