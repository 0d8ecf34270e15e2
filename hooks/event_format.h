/* event_format.h — internals shared by event.c (encoding, header lists) and
 * event_parse.c (reading results): LuaJIT's serialization tags and its
 * prefix-encoded numbers, the growth rule of header arrays, and the key a
 * header entry gets when a function leaves it out. Not for other modules,
 * but for worker.c's header templates, which write one tag into events.
 */
#ifndef VERGE_HOOKS_EVENT_FORMAT_H
#define VERGE_HOOKS_EVENT_FORMAT_H

#include "../proxy/base.h"

#include <string.h>

/* LuaJIT serialization tags (its string.buffer format) the encoder writes;
 * event_parse.c reads these and a few more. */
enum {
    COMPACT_FALSE = 0x01,
    COMPACT_TRUE = 0x02,
    COMPACT_NUMBER = 0x07,
    COMPACT_EMPTY_TABLE = 0x08, /* also what a worker puts where a templated header map was */
    COMPACT_HASH = 0x09,
    COMPACT_ARRAY_FROM_1 = 0x0c,
    COMPACT_DICT_KEY = 0x0f, /* a string of the dictionary (event_keys): index as a prefix-encoded number */
    COMPACT_STRING = 0x20,
};

/* LuaJIT's prefix-encoded number (1, 2 or 5 bytes) at p; returns the end. */
static inline __attribute__((always_inline)) char *compact_prefix(char *p, uint32_t n)
{
    if (n < 0xe0) {
        *p++ = (char)n;
    } else if (n < 0x1fe0) {
        *p++ = (char)(0xe0 | (((n - 0xe0) >> 8) & 0x1f));
        *p++ = (char)((n - 0xe0) & 0xff);
    } else {
        *p++ = (char)0xff;
        memcpy(p, &n, 4);
        p += 4;
    }
    return p;
}

#define ARENA_GROW_FIRST_HEADERS 4 /* header maps and other lists */
#define ARENA_GROW_FIRST_VALUES 1  /* most headers have one value */

/* The capacity event.c's array growth assumes an array of `count` items has:
 * `first` at least, else the next power of two. Arrays the result reader
 * builds are allocated with it so they can still be grown there. */
static inline size_t arena_grow_capacity(size_t count, size_t first)
{
    size_t capacity = first;
    while (capacity < count)
        capacity *= 2;
    return capacity;
}

/* `content-type` → `Content-Type` (spec §1.4: the key of an entry that has none). */
slice_t event_capitalised_key(struct arena *arena, slice_t name);

#endif
