/* schema.h — private to conf/: what config.c (the loader: JSON tree, walk,
 * messages) and schema.c (the key table, its setters and the reference)
 * share. Nothing outside conf/ includes this.
 */
#ifndef VERGE_CONF_SCHEMA_H
#define VERGE_CONF_SCHEMA_H

#include "config.h"

/* ---- the parsed document (config.c builds it in the loader's scratch arena) ---- */

enum json_kind { JSON_NULL, JSON_BOOLEAN, JSON_NUMBER, JSON_STRING, JSON_OBJECT, JSON_ARRAY };

struct json_value {
    enum json_kind kind;
    bool boolean;
    slice_t text; /* JSON_STRING: decoded contents; JSON_NUMBER: as written. NUL-terminated. */
    slice_t key;  /* the member name when the parent is an object */
    struct json_value *parent, *first, *last, *next;
    size_t count;  /* children of an object or array */
    unsigned line; /* 1-based line of the file where the value (or its member name) is */
};

const struct json_value *config_json_member(const struct json_value *object, const char *name);

/* ---- one load in progress ---- */

struct loader {
    struct config *config;
    struct config_errors *errors;
    struct arena scratch; /* the JSON tree, paths and message pieces; freed when loading ends */
    const char *base_dir; /* absolute */
    size_t error_count;
};

/* Records one message (printf-style), up to a cap after which a single
 * "too many errors" note is added. */
void config_load_error(struct loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* User text rendered for a message: JSON-style quotes and escapes, shortened. */
char *config_quote_text(struct loader *L, slice_t s);
/* "\"two\"", "2.5", "null", "an object", ... for "got ..." */
const char *config_describe_value(struct loader *L, const struct json_value *v);
/* "<path>: expected <what key accepts>, got <v>" */
struct schema_key;
void config_error_expected(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *v);
/* [A-Za-z0-9_-]: origin names */
bool config_is_name_char(unsigned char c);

/* ---- the key table ---- */

enum schema_type {
    SCHEMA_OBJECT,
    SCHEMA_ARRAY, /* of objects */
    SCHEMA_MAP,
    SCHEMA_STRING,
    SCHEMA_INTEGER,
    SCHEMA_BOOLEAN,
    SCHEMA_ENUM,
    /* Cache-key selections. The walk checks nothing and hands the raw value to
     * the key's setter, which parses and reports. */
    SCHEMA_NAME_LIST,  /* "none" | "all" | ["a", ...] | {"except": ["a", ...]}; max: names per list */
    SCHEMA_NAME_ARRAY, /* ["a", ...] only; max: names per list */
    /* Values of more than one shape (a function name or an object) or maps of
     * strings: the walk hands the raw value to the key's setter; `expected`
     * is what the messages and the reference's type column say. */
    SCHEMA_CUSTOM,
};

enum {
    KEY_REQUIRED = 1 << 0,
    KEY_FALSE_DISABLES = 1 << 1, /* an object that may be written as `false` to turn the feature off */
    KEY_INT64 = 1 << 2,          /* an integer stored as int64_t (or uint64_t) instead of int */
};

struct schema_key;
/* `target` is the struct the key's object maps to: struct config at the top
 * level and in plain sub-objects, the element struct inside arrays and maps. */
typedef void (*schema_setter)(struct loader *L, const struct schema_key *key, const char *path, const struct json_value *value,
                              char *target);
typedef void (*schema_finisher)(struct loader *L, const char *path, const struct json_value *value, char *target);

struct schema_key {
    /* "timeouts.idle_ms"; "[]" is any array element, ".*" any member of a map */
    const char *pattern;
    enum schema_type type;
    unsigned flags;
    long long min, max;            /* integers: the value; arrays and maps: the number of entries */
    long long unit;                /* integers: stored multiplied by this (MiB keys store bytes); 0 means 1 */
    const char *const *values;     /* enums, NULL-terminated */
    const char *default_value;     /* as JSON text without quotes: "1000", "-" */
    int (*default_function)(void); /* a default computed at load time */
    const char *default_doc;       /* the default column of the reference when not default_value */
    const char *expected;          /* strings: what is accepted, for messages and the reference */
    const char *doc;               /* one line, for the reference */
    size_t offset;                 /* scalars: where the value is stored in target; arrays/maps: the element pointer */
    schema_setter set;             /* strings and enums that need more than storing (replaces the plain store); name lists */
    schema_finisher finish;        /* objects and arrays: cross-key checks once the members are walked */
    size_t element_size;           /* arrays and maps of objects: the element struct, */
    size_t count_offset;           /* where the entry count goes (a size_t in target), */
    size_t name_offset;            /* maps: where an element's name goes (a char * in the element) */
};

#define FIELD(type, target, key) ((type *)((target) + (key)->offset))

extern const struct schema_key config_schema[];
extern const size_t config_schema_count;

#endif
