/* base.c — slices, the request arena, byte buffers, logging and HTTP dates.
 *
 * The arena is a list of chunks (4 KiB by default, bigger when one request
 * asks for more); the first chunk survives arena_reset so a keep-alive
 * connection reuses it for its next request without touching malloc. Further
 * standard chunks go back to a small per-thread spare list (at most
 * ARENA_SPARE_CHUNKS, freed when the thread ends), so a request that needs a
 * few chunks (an edge function's event and result) does not pay malloc and
 * free for each of them.
 * Logging writes one whole line per write(2) so lines from several threads
 * never interleave.
 */

#include "base.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

void verge_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "verge: assertion failed: %s at %s:%d\n", expr, file, line);
    abort();
}

/* ---- slices -------------------------------------------------------------- */

static inline unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

bool slice_equal_nocase(slice_t a, slice_t b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++)
        if (ascii_lower((unsigned char)a.ptr[i]) != ascii_lower((unsigned char)b.ptr[i]))
            return false;
    return true;
}

bool slice_starts_with(slice_t s, slice_t prefix)
{
    return s.len >= prefix.len && memcmp(s.ptr, prefix.ptr, prefix.len) == 0;
}

slice_t slice_trim_ows(slice_t s)
{
    while (s.len > 0 && (s.ptr[0] == ' ' || s.ptr[0] == '\t')) {
        s.ptr++;
        s.len--;
    }
    while (s.len > 0 && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
        s.len--;
    return s;
}

bool slice_parse_u64(slice_t s, uint64_t *out)
{
    if (s.len == 0)
        return false;
    uint64_t value = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c < '0' || c > '9')
            return false;
        if (value > (UINT64_MAX - (c - '0')) / 10)
            return false;
        value = value * 10 + (c - '0');
    }
    *out = value;
    return true;
}

/* ---- arena --------------------------------------------------------------- */

#define ARENA_CHUNK_SIZE 4096
#define ARENA_ALIGN 16

struct arena_chunk {
    struct arena_chunk *next;
    size_t size; /* usable bytes in data */
    size_t used;
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

struct arena_cleanup {
    struct arena_cleanup *next;
    void (*fn)(void *data);
    void *data;
};

void arena_init(struct arena *arena)
{
    memset(arena, 0, sizeof *arena);
}

#define ARENA_SPARE_CHUNKS 64

/* This thread's spare standard chunks. The key only gets the thread-exit
 * destructor called (pthread runs it for a non-NULL value); the destructor
 * frees the list, still reachable from the ending thread's storage. */
static _Thread_local struct arena_chunk *spare_chunks;
static _Thread_local unsigned spare_chunk_count;
static _Thread_local bool spare_chunks_registered;
static pthread_key_t spare_chunks_key;
static pthread_once_t spare_chunks_key_once = PTHREAD_ONCE_INIT;

static void spare_chunks_free(void *unused)
{
    (void)unused;
    while (spare_chunks != NULL) {
        struct arena_chunk *next = spare_chunks->next;
        free(spare_chunks);
        spare_chunks = next;
    }
    spare_chunk_count = 0;
    spare_chunks_registered = false; /* a chunk given back after this (a later destructor) registers again */
}

unsigned arena_thread_spare_chunks(void)
{
    return spare_chunk_count;
}

static void spare_chunks_key_create(void)
{
    pthread_key_create(&spare_chunks_key, spare_chunks_free);
}

static void arena_release_chunk(struct arena_chunk *chunk)
{
    if (chunk->size != ARENA_CHUNK_SIZE || spare_chunk_count >= ARENA_SPARE_CHUNKS) {
        free(chunk);
        return;
    }
    if (!spare_chunks_registered) {
        pthread_once(&spare_chunks_key_once, spare_chunks_key_create);
        pthread_setspecific(spare_chunks_key, &spare_chunks);
        spare_chunks_registered = true;
    }
    chunk->next = spare_chunks;
    spare_chunks = chunk;
    spare_chunk_count++;
}

static struct arena_chunk *arena_new_chunk(size_t size)
{
    if (size == ARENA_CHUNK_SIZE && spare_chunks != NULL) {
        struct arena_chunk *chunk = spare_chunks;
        spare_chunks = chunk->next;
        spare_chunk_count--;
        chunk->next = NULL;
        chunk->used = 0;
        return chunk;
    }
    struct arena_chunk *chunk = malloc(sizeof *chunk + size);
    if (chunk == NULL) {
        fprintf(stderr, "verge: out of memory allocating %zu bytes\n", size);
        abort();
    }
    chunk->next = NULL;
    chunk->size = size;
    chunk->used = 0;
    return chunk;
}

void *arena_alloc(struct arena *arena, size_t size)
{
    size_t rounded = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (rounded == 0)
        rounded = ARENA_ALIGN;
    struct arena_chunk *chunk = arena->chunks;
    if (chunk == NULL || chunk->size - chunk->used < rounded) {
        if (rounded > ARENA_CHUNK_SIZE / 4) {
            /* A large block gets a chunk of its own, linked behind the current
             * one so the current chunk's free space stays usable. */
            struct arena_chunk *big = arena_new_chunk(rounded);
            big->used = rounded;
            if (chunk != NULL) {
                big->next = chunk->next;
                chunk->next = big;
            } else {
                arena->chunks = big;
            }
            arena->bytes_allocated += rounded;
            memset(big->data, 0, rounded);
            return big->data;
        }
        chunk = arena_new_chunk(ARENA_CHUNK_SIZE);
        chunk->next = arena->chunks;
        arena->chunks = chunk;
    }
    void *p = chunk->data + chunk->used;
    chunk->used += rounded;
    arena->bytes_allocated += rounded;
    memset(p, 0, rounded);
    return p;
}

char *arena_strndup(struct arena *arena, const char *s, size_t n)
{
    char *p = arena_alloc(arena, n + 1);
    if (n > 0)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

slice_t arena_slice_copy(struct arena *arena, slice_t s)
{
    return (slice_t){arena_strndup(arena, s.ptr, s.len), s.len};
}

char *arena_printf(struct arena *arena, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *p = arena_alloc(arena, (size_t)n + 1);
    if ((size_t)n < sizeof small) {
        memcpy(p, small, (size_t)n + 1);
        return p;
    }
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void arena_add_cleanup(struct arena *arena, void (*fn)(void *data), void *data)
{
    struct arena_cleanup *cleanup = arena_alloc(arena, sizeof *cleanup);
    cleanup->fn = fn;
    cleanup->data = data;
    cleanup->next = arena->cleanups;
    arena->cleanups = cleanup;
}

static void arena_run_cleanups(struct arena *arena)
{
    /* A cleanup may register another cleanup; loop until none are left. */
    while (arena->cleanups != NULL) {
        struct arena_cleanup *cleanup = arena->cleanups;
        arena->cleanups = cleanup->next;
        cleanup->fn(cleanup->data);
    }
}

void arena_reset(struct arena *arena)
{
    arena_run_cleanups(arena);
    struct arena_chunk *keep = NULL;
    struct arena_chunk *chunk = arena->chunks;
    while (chunk != NULL) {
        struct arena_chunk *next = chunk->next;
        if (keep == NULL && chunk->size == ARENA_CHUNK_SIZE) {
            keep = chunk;
            keep->next = NULL;
            keep->used = 0;
        } else {
            arena_release_chunk(chunk);
        }
        chunk = next;
    }
    arena->chunks = keep;
    arena->bytes_allocated = 0;
}

void arena_destroy(struct arena *arena)
{
    arena_reset(arena);
    free(arena->chunks);
    arena->chunks = NULL;
}

/* ---- bytebuf ------------------------------------------------------------- */

void bytebuf_grow(struct bytebuf *buf, size_t extra)
{
    if (buf->cap - buf->len >= extra)
        return;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap - buf->len < extra)
        cap *= 2;
    char *data = realloc(buf->data, cap);
    if (data == NULL) {
        fprintf(stderr, "verge: out of memory growing a buffer to %zu bytes\n", cap);
        abort();
    }
    buf->data = data;
    buf->cap = cap;
}

void bytebuf_append_cstr(struct bytebuf *buf, const char *s)
{
    bytebuf_append(buf, s, strlen(s));
}

char *put_decimal(char *p, uint64_t value)
{
    char digits[20];
    size_t n = sizeof digits;
    do {
        digits[--n] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    memcpy(p, digits + n, sizeof digits - n);
    return p + (sizeof digits - n);
}

void bytebuf_append_decimal(struct bytebuf *buf, uint64_t value)
{
    bytebuf_reserve(buf, 20);
    buf->len = (size_t)(put_decimal(buf->data + buf->len, value) - buf->data);
}

bool bytebuf_read_file(struct bytebuf *buf, FILE *file, size_t limit)
{
    size_t start = buf->len;
    char chunk[65536];
    size_t n;
    while (buf->len - start <= limit && (n = fread(chunk, 1, sizeof chunk, file)) > 0)
        bytebuf_append(buf, chunk, n);
    return !ferror(file);
}

void bytebuf_append_visible(struct bytebuf *buf, slice_t text)
{
    for (size_t i = 0; i < text.len; i++) {
        unsigned char c = (unsigned char)text.ptr[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            bytebuf_append(buf, (const char *)&c, 1);
        else
            bytebuf_appendf(buf, "\\x%02x", c);
    }
}

void bytebuf_appendf(struct bytebuf *buf, const char *fmt, ...)
{
    bytebuf_reserve(buf, 128);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf->data + buf->len, buf->cap - buf->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= buf->cap - buf->len) {
        bytebuf_reserve(buf, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(buf->data + buf->len, buf->cap - buf->len, fmt, ap);
        va_end(ap);
    }
    buf->len += (size_t)n;
}

void bytebuf_consume(struct bytebuf *buf, size_t n)
{
    VERGE_ASSERT(n <= buf->len);
    memmove(buf->data, buf->data + n, buf->len - n);
    buf->len -= n;
}

void bytebuf_free(struct bytebuf *buf)
{
    free(buf->data);
    memset(buf, 0, sizeof *buf);
}

/* ---- logging ------------------------------------------------------------- */

enum log_level log_threshold = LOG_INFO;

void log_message(enum log_level level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < log_threshold)
        return;
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ verge %s: ", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, len);
    (void)ignored;
}

/* ---- time ---------------------------------------------------------------- */

double time_now_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t time_now_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t time_now_monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static const char *const weekday_names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const month_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void time_format_http_date(int64_t t, char out[30])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    snprintf(out, 30, "%s, %02d %s %04d %02d:%02d:%02d GMT", weekday_names[tm.tm_wday], tm.tm_mday, month_names[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int month_index(const char *p)
{
    for (int i = 0; i < 12; i++)
        if (memcmp(p, month_names[i], 3) == 0)
            return i;
    return -1;
}

/* Days from 1970-01-01 to the given date (proleptic Gregorian, month 1-12);
 * a day past the month's end counts on into the next, as timegm does. */
static int64_t days_from_civil(int64_t year, int month, int day)
{
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

/* The checks and arithmetic of every form (month 0-11). */
static bool date_value(int year, int month, int day, int hour, int minute, int second, int64_t *out)
{
    if (month < 0 || day < 1 || day > 31 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 60 ||
        year < 1970)
        return false;
    *out = days_from_civil(year, month + 1, day) * 86400 + hour * 3600 + minute * 60 + second;
    return true;
}

bool time_parse_http_date(slice_t s, int64_t *out)
{
    char text[64];
    if (s.len == 0 || s.len >= sizeof text)
        return false;
    memcpy(text, s.ptr, s.len);
    text[s.len] = '\0';
    int day = 0, year = 0, hour = 0, minute = 0, second = 0;
    char weekday[16], month[4];
    int consumed = 0;
    /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
    if (sscanf(text, "%3s, %2d %3s %4d %2d:%2d:%2d GMT%n", weekday, &day, month, &year, &hour, &minute, &second, &consumed) == 7 &&
        (size_t)consumed == s.len) {
    } else if (sscanf(text, "%15[A-Za-z], %2d-%3s-%2d %2d:%2d:%2d GMT%n", weekday, &day, month, &year, &hour, &minute, &second,
                      &consumed) == 7 &&
               (size_t)consumed == s.len) {
        /* RFC 850's two-digit year, with a fixed pivot: 00-69 are 20xx. (RFC
         * 9110's rule, a year more than 50 years ahead is the past century,
         * moves the pivot every year; no server still sends this form.) */
        year += (year < 70) ? 2000 : 1900;
    } else if (sscanf(text, "%3s %3s %2d %2d:%2d:%2d %4d%n", weekday, month, &day, &hour, &minute, &second, &year, &consumed) ==
                   7 &&
               (size_t)consumed == s.len) {
        /* asctime */
    } else {
        return false;
    }
    return date_value(year, month_index(month), day, hour, minute, second, out);
}
