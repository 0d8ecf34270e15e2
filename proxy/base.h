/* base.h — the small shared vocabulary of verge: slices, the request arena,
 * assertions and logging.
 *
 * Everything here is plain C with no dependency beyond libc, so every module
 * (proxy/, conf/, cache/, hooks/) and every unit test can include it.
 *
 * Contracts:
 *  - A slice is a view: it never owns memory and is not NUL-terminated.
 *  - An arena hands out memory that lives until arena_reset/arena_destroy;
 *    cleanup callbacks run in reverse order of registration at that point.
 *    An arena is used by one thread at a time (no locking).
 *  - VERGE_ASSERT is for impossible states only; runtime errors are return
 *    codes with messages.
 */
#ifndef VERGE_BASE_H
#define VERGE_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- assertions ---------------------------------------------------------- */

void verge_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define VERGE_ASSERT(expr) ((expr) ? (void)0 : verge_assert_fail(#expr, __FILE__, __LINE__))
#define VERGE_CHECK_MAGIC(object, expected) VERGE_ASSERT((object) != NULL && (object)->magic == (expected))
#define VERGE_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- slices -------------------------------------------------------------- */

typedef struct {
    const char *ptr;
    size_t len;
} slice_t;

#define SLICE_LITERAL(s) ((slice_t){(s), sizeof(s) - 1})
#define SLICE_FMT "%.*s"
#define SLICE_ARG(s) (int)(s).len, (s).ptr

static inline slice_t slice_from_cstr(const char *s)
{
    return (slice_t){s, s ? strlen(s) : 0};
}
static inline slice_t slice_make(const char *p, size_t n)
{
    return (slice_t){p, n};
}
static inline bool slice_equal(slice_t a, slice_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}
/* ASCII case-insensitive comparison, for header names and tokens. */
bool slice_equal_nocase(slice_t a, slice_t b);
bool slice_starts_with(slice_t s, slice_t prefix);
/* Removes leading and trailing spaces and horizontal tabs (HTTP OWS). */
slice_t slice_trim_ows(slice_t s);
/* Parses a non-empty run of decimal digits that fits in uint64_t. Returns false
 * on anything else (signs, spaces, overflow). */
bool slice_parse_u64(slice_t s, uint64_t *out);

/* The value of a hexadecimal digit, -1 for any other character. */
static inline int ascii_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* ---- arena --------------------------------------------------------------- */

struct arena_chunk;
struct arena_cleanup;

struct arena {
    struct arena_chunk *chunks;
    struct arena_cleanup *cleanups;
    size_t bytes_allocated; /* payload bytes handed out since the last reset */
};

void arena_init(struct arena *arena);
/* Returns zeroed memory aligned for any type; aborts on out-of-memory (an arena
 * allocation failing means the process is out of memory). */
void *arena_alloc(struct arena *arena, size_t size);
char *arena_strndup(struct arena *arena, const char *s, size_t n);
slice_t arena_slice_copy(struct arena *arena, slice_t s);
char *arena_printf(struct arena *arena, const char *fmt, ...) __attribute__((format(printf, 2, 3), nonnull(2)));
/* Registers fn(data) to run on reset/destroy (reverse order). */
void arena_add_cleanup(struct arena *arena, void (*fn)(void *data), void *data);
/* Runs cleanups and gives back all chunks but the first, which is kept for
 * reuse. Standard-size chunks given back (by reset, and destroy through it)
 * go to a list of the calling thread's, up to 64, which its arenas take new
 * chunks from first; the list is freed when the thread ends. */
void arena_reset(struct arena *arena);
void arena_destroy(struct arena *arena);
/* How many spare chunks the calling thread holds (tests). */
unsigned arena_thread_spare_chunks(void);

/* ---- growable byte buffer (heap) ----------------------------------------- */

struct bytebuf {
    char *data;
    size_t len;
    size_t cap;
};

/* Room for `extra` more bytes; growing aborts when memory runs out. Inline:
 * a response head alone is a few dozen appends, and the call cost more than
 * the copy. bytebuf_grow is the slow path. */
void bytebuf_grow(struct bytebuf *buf, size_t extra);
static inline void bytebuf_reserve(struct bytebuf *buf, size_t extra)
{
    if (buf->cap - buf->len < extra)
        bytebuf_grow(buf, extra);
}
static inline void bytebuf_append(struct bytebuf *buf, const void *data, size_t n)
{
    if (n == 0)
        return;
    bytebuf_reserve(buf, n);
    memcpy(buf->data + buf->len, data, n);
    buf->len += n;
}
static inline void bytebuf_append_slice(struct bytebuf *buf, slice_t s)
{
    bytebuf_append(buf, s.ptr, s.len);
}
void bytebuf_appendf(struct bytebuf *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends a C string / an unsigned number in decimal (hot paths: no printf). */
void bytebuf_append_cstr(struct bytebuf *buf, const char *s);
void bytebuf_append_decimal(struct bytebuf *buf, uint64_t value);
/* Appends what `file` holds up to its end, but stops reading once more than
 * `limit` bytes came (so a length over `limit` tells the caller it was too
 * big). False on a read error (errno tells which). */
bool bytebuf_read_file(struct bytebuf *buf, FILE *file, size_t limit);
/* Appends `text` for a terminal or a header value: visible ASCII as it is,
 * any other byte (and `"`, `\`) as \xHH. */
void bytebuf_append_visible(struct bytebuf *buf, slice_t text);

/* Writes `value` in decimal at p (at most 20 bytes, no NUL); returns the end. */
char *put_decimal(char *p, uint64_t value);
/* Removes the first n bytes. */
void bytebuf_consume(struct bytebuf *buf, size_t n);
void bytebuf_free(struct bytebuf *buf);

/* ---- logging (stderr, one line per message) ------------------------------ */

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
extern enum log_level log_threshold;
void log_message(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_message(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_message(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_message(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_message(LOG_ERROR, __VA_ARGS__)

/* ---- time ---------------------------------------------------------------- */

/* Wall-clock seconds since the epoch, as a double, and monotonic milliseconds. */
double time_now_wall(void);
uint64_t time_now_monotonic_ms(void);
uint64_t time_now_monotonic_us(void);
/* Writes an IMF-fixdate (RFC 9110 §5.6.7) for t into out (at least 30 bytes). */
void time_format_http_date(int64_t t, char out[30]);
/* Parses IMF-fixdate (and, per RFC 9110, the obsolete RFC 850 and asctime
 * forms). Returns false when s is not a date. */
bool time_parse_http_date(slice_t s, int64_t *out);

#endif
