/* access_log.c — the JSON access log and the function log: event-loop threads
 * format one line and queue it; one writer thread per log writes its queue out.
 *
 * Both logs are a struct log_writer with the same machinery; only the line
 * format, the names in messages and the drop counter differ.
 *
 * Data flow: a producer formats into a private buffer, then appends it to
 * `pending` under the writer's `lock` (a memcpy). The writer thread swaps
 * `pending` with its own `writing` buffer under the lock and writes outside
 * it, so producers never wait for the disk. It writes when 100 ms have passed
 * since the first queued line, or earlier when 64 KiB are queued, on a
 * destination change or at shutdown.
 *
 * Invariants (per log_writer):
 *  - `pending` never exceeds LOG_MAX_PENDING; lines that do not fit are
 *    dropped and counted (metrics.access_log_dropped or
 *    metrics.function_log_dropped), and the writer logs a warning at most once
 *    per second while that happens.
 *  - Lines queued before configure switches files go to the old file, lines
 *    queued after go to the new one: configure records the pending offset at
 *    which the switch happens, and the writer applies the queued switches in
 *    order.
 *  - writer_fd is touched only by the writer thread, and by shutdown after
 *    joining it. stdout (fd 1) is never closed.
 *  - configure and shutdown are called from one thread (the main thread).
 *
 * Locking: each writer's `lock` guards everything in its `shared`; the writer
 * waits on its `wake` (CLOCK_MONOTONIC) and producers signal it only when the
 * queue becomes non-empty or crosses the flush size, so a busy server signals
 * rarely. The two logs share no lock.
 */
#include "access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"

#define LOG_MAX_PENDING (8u * 1024 * 1024)
#define LOG_FLUSH_BYTES (64u * 1024)
#define LOG_FLUSH_INTERVAL_MS 100
#define LOG_WARN_INTERVAL_MS 1000
#define LOG_MAX_SWITCHES 8
/* A burst leaves big buffers behind; the writer gives back anything above this. */
#define LOG_KEEP_CAPACITY (256u * 1024)
/* "2026-11-28T05:35:48.884Z" */
#define FUNCTION_LOG_TIME_LEN 24

struct log_writer {
    const char *name;       /* "access log": for messages */
    const char *config_key; /* "access_log.path": prefixes configure's errors */
    atomic_ullong *dropped; /* the metrics counter for dropped lines */

    pthread_mutex_t lock;
    pthread_cond_t wake; /* initialised once, by wake_init */

    struct {
        atomic_bool enabled; /* producers queue lines only when a destination is set */
        bool stopping;       /* shutdown asked the writer to finish */
        struct bytebuf pending;
        uint64_t pending_since_ms; /* monotonic time the queue became non-empty */
        /* Destination switches not yet applied by the writer, in order: the
         * bytes of pending before switches[i].offset go to the destination in
         * force before switch i. */
        struct destination_switch {
            size_t offset;
            int fd; /* -1: off */
        } switches[LOG_MAX_SWITCHES];
        size_t switch_count;
        uint64_t dropped_unreported;
    } shared;

    /* Main-thread state. */
    bool writer_running;
    pthread_t writer_thread;
    char *current_path;
    bool configured;

    /* Writer-thread state. */
    int writer_fd;
    uint64_t last_warning_ms;
};

static struct log_writer access_writer = {
    .name = "access log",
    .config_key = "access_log.path",
    .dropped = &metrics.access_log_dropped,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .writer_fd = -1,
};
static struct log_writer function_writer = {
    .name = "function log",
    .config_key = "function_log",
    .dropped = &metrics.function_log_dropped,
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .writer_fd = -1,
};

static pthread_once_t wake_once = PTHREAD_ONCE_INIT;

static void cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attributes);
    pthread_condattr_destroy(&attributes);
}

static void wake_init(void)
{
    cond_init_monotonic(&access_writer.wake);
    cond_init_monotonic(&function_writer.wake);
}

static void close_destination(int fd)
{
    if (fd > STDERR_FILENO)
        close(fd);
}

/* ---- formatting ---------------------------------------------------------- */

/* Length of the valid UTF-8 sequence starting at s[0] (a byte >= 0x80), or 0
 * when it is not one (RFC 3629: no overlong forms, no surrogates, <= U+10FFFF). */
static size_t utf8_sequence_length(const unsigned char *s, size_t available)
{
    unsigned char lead = s[0];
    size_t length;
    unsigned char second_min = 0x80, second_max = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
        length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
        length = 3;
        if (lead == 0xE0)
            second_min = 0xA0;
        else if (lead == 0xED)
            second_max = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
        length = 4;
        if (lead == 0xF0)
            second_min = 0x90;
        else if (lead == 0xF4)
            second_max = 0x8F;
    } else {
        return 0;
    }
    if (available < length || s[1] < second_min || s[1] > second_max)
        return 0;
    for (size_t i = 2; i < length; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return length;
}

void access_log_append_json_string(struct bytebuf *out, slice_t s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s.ptr;
    bytebuf_reserve(out, s.len + 2);
    bytebuf_append(out, "\"", 1);
    size_t i = 0;
    while (i < s.len) {
        /* Copy the longest run that needs no escaping in one go. */
        size_t run = i;
        while (run < s.len && p[run] >= 0x20 && p[run] < 0x7F && p[run] != '"' && p[run] != '\\')
            run++;
        bytebuf_append(out, p + i, run - i);
        i = run;
        if (i == s.len)
            break;
        unsigned char c = p[i];
        const char *escape = NULL;
        switch (c) {
        case '"':
            escape = "\\\"";
            break;
        case '\\':
            escape = "\\\\";
            break;
        case '\n':
            escape = "\\n";
            break;
        case '\r':
            escape = "\\r";
            break;
        case '\t':
            escape = "\\t";
            break;
        case '\b':
            escape = "\\b";
            break;
        case '\f':
            escape = "\\f";
            break;
        default:
            break;
        }
        if (escape != NULL) {
            bytebuf_append(out, escape, 2);
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t length = utf8_sequence_length(p + i, s.len - i);
            if (length > 0) {
                bytebuf_append(out, p + i, length);
                i += length;
                continue;
            }
        }
        /* Other control characters, DEL, and bytes that are not valid UTF-8. */
        char unicode_escape[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
        bytebuf_append(out, unicode_escape, sizeof unicode_escape);
        i++;
    }
    bytebuf_append(out, "\"", 1);
}

static void append_json_cstring_or_null(struct bytebuf *out, const char *s)
{
    if (s == NULL)
        bytebuf_append(out, "null", 4);
    else
        access_log_append_json_string(out, slice_from_cstr(s));
}

/* "2026-11-28T05:35:48.884Z" (24 bytes, unquoted) into out. The part up to
 * the seconds is cached per thread for the last second (busy logs write
 * thousands of lines a second); the milliseconds are written each time. */
static void format_iso8601_time(char out[24], double time)
{
    if (!isfinite(time) || time < 0 || time > 1e13)
        time = 0;
    /* Rounded to the millisecond: 1795831200.123 is 1795831200.12299990654 as
     * a double and must still print .123. */
    int64_t total_ms = (int64_t)floor(time * 1000.0 + 0.5);
    /* The date and time up to the second, formatted once per second per thread. */
    static _Thread_local time_t cached_second = -1;
    static _Thread_local char cached[19];
    time_t seconds = (time_t)(total_ms / 1000);
    if (seconds != cached_second) {
        struct tm tm;
        gmtime_r(&seconds, &tm);
        char text[80]; /* room for any int values (quiets -Wformat-truncation) */
        snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec);
        memcpy(cached, text, 19);
        cached_second = seconds;
    }
    memcpy(out, cached, 19);
    int ms = (int)(total_ms % 1000);
    out[19] = '.';
    out[20] = (char)('0' + ms / 100);
    out[21] = (char)('0' + ms / 10 % 10);
    out[22] = (char)('0' + ms % 10);
    out[23] = 'Z';
}

static void append_iso8601_time(struct bytebuf *out, double time)
{
    char text[24];
    format_iso8601_time(text, time);
    bytebuf_append(out, text, sizeof text);
}

static void format_entry(struct bytebuf *line, const struct access_log_entry *entry)
{
    bytebuf_append(line, "{\"time\":\"", 9);
    append_iso8601_time(line, entry->time);
    bytebuf_append(line, "\",\"request_id\":", 15);
    access_log_append_json_string(line, entry->request_id);
    bytebuf_append(line, ",\"client_ip\":", 13);
    append_json_cstring_or_null(line, entry->client_ip);
    bytebuf_append(line, ",\"protocol\":", 12);
    append_json_cstring_or_null(line, entry->protocol);
    bytebuf_append(line, ",\"tls_version\":", 15);
    append_json_cstring_or_null(line, entry->tls_version);
    bytebuf_append(line, ",\"tls_cipher\":", 14);
    append_json_cstring_or_null(line, entry->tls_cipher);
    bytebuf_append(line, ",\"method\":", 10);
    access_log_append_json_string(line, entry->method);
    bytebuf_append(line, ",\"uri\":", 7);
    access_log_append_json_string(line, entry->uri);
    double duration_ms = isfinite(entry->duration_ms) && entry->duration_ms > 0 ? entry->duration_ms : 0;
    bytebuf_appendf(line, ",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.3f", entry->status, (unsigned long long)entry->bytes,
                    duration_ms);
    bytebuf_append(line, ",\"behavior\":", 12);
    append_json_cstring_or_null(line, entry->behavior);
    bytebuf_append(line, ",\"origin\":", 10);
    append_json_cstring_or_null(line, entry->origin);
    if (entry->origin_status >= 0)
        bytebuf_appendf(line, ",\"origin_status\":%d", entry->origin_status);
    else
        bytebuf_append(line, ",\"origin_status\":null", 21);
    if (entry->origin_ms >= 0 && isfinite(entry->origin_ms))
        bytebuf_appendf(line, ",\"origin_ms\":%.3f}\n", entry->origin_ms);
    else
        bytebuf_append(line, ",\"origin_ms\":null}\n", 19);
}

/* ---- queueing ------------------------------------------------------------ */

/* Whether lines would be queued now. Racy (no lock): it only keeps the common
 * "logging off" case free of formatting work; log_writer_queue checks again
 * under the lock. */
static bool log_writer_enabled(struct log_writer *w)
{
    return atomic_load_explicit(&w->shared.enabled, memory_order_relaxed);
}

/* Queues `len` bytes of whole lines; `entries` is what the drop counter
 * counts when they do not fit (one per line, or per multi-line entry). */
static void log_writer_queue(struct log_writer *w, const char *data, size_t len, size_t entries)
{
    bool signal = false;
    pthread_mutex_lock(&w->lock);
    if (!atomic_load_explicit(&w->shared.enabled, memory_order_relaxed)) {
        /* Switched off meanwhile: nothing to do. */
    } else if (w->shared.pending.len + len > LOG_MAX_PENDING) {
        w->shared.dropped_unreported += entries;
        atomic_fetch_add_explicit(w->dropped, entries, memory_order_relaxed);
        signal = true; /* the writer reports drops */
    } else {
        size_t before = w->shared.pending.len;
        if (before == 0)
            w->shared.pending_since_ms = time_now_monotonic_ms();
        bytebuf_append(&w->shared.pending, data, len);
        signal = before == 0 || (before < LOG_FLUSH_BYTES && w->shared.pending.len >= LOG_FLUSH_BYTES);
    }
    if (signal)
        pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

void access_log_write(const struct access_log_entry *entry)
{
    if (!log_writer_enabled(&access_writer))
        return;
    struct bytebuf line = {0};
    bytebuf_reserve(&line, 512);
    format_entry(&line, entry);
    log_writer_queue(&access_writer, line.data, line.len, 1);
    bytebuf_free(&line);
}

bool function_log_enabled(void)
{
    return log_writer_enabled(&function_writer);
}

/* Whether s holds a CR or LF. They are rare: long texts are searched with
 * memchr, short ones (names, request ids) byte by byte. */
static bool has_line_break(const char *s, size_t len)
{
    if (len >= 32)
        return memchr(s, '\n', len) != NULL || memchr(s, '\r', len) != NULL;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '\n' || s[i] == '\r')
            return true;
    return false;
}

/* What every line of one function-log text starts with: "<time>\t<name>\t<prefix>". */
struct line_start {
    char time[FUNCTION_LOG_TIME_LEN];
    slice_t name, prefix;
    bool scrub_name, scrub_prefix; /* they hold CR or LF */
};

static void line_start_init(struct line_start *start, slice_t function_name, slice_t prefix)
{
    format_iso8601_time(start->time, time_now_wall());
    start->name = function_name;
    start->prefix = prefix;
    start->scrub_name = has_line_break(function_name.ptr, function_name.len);
    start->scrub_prefix = has_line_break(prefix.ptr, prefix.len);
}

static size_t line_size(const struct line_start *start, size_t text_len)
{
    return sizeof start->time + start->name.len + start->prefix.len + 3 + text_len;
}

/* Copies s to p, CR and LF as spaces when `scrub`. */
static char *put_text(char *p, slice_t s, bool scrub)
{
    if (s.len == 0)
        return p;
    memcpy(p, s.ptr, s.len);
    for (size_t i = 0; scrub && i < s.len; i++)
        if (p[i] == '\n' || p[i] == '\r')
            p[i] = ' ';
    return p + s.len;
}

/* Writes one line at p (line_size bytes at most); returns its end. CR and
 * LF in `text` become spaces when `scrub_text`. */
static char *line_write(char *p, const struct line_start *start, slice_t text, bool scrub_text)
{
    memcpy(p, start->time, sizeof start->time);
    p += sizeof start->time;
    *p++ = '\t';
    p = put_text(p, start->name, start->scrub_name);
    *p++ = '\t';
    p = put_text(p, start->prefix, start->scrub_prefix);
    p = put_text(p, text, scrub_text);
    *p++ = '\n';
    return p;
}

/* The end of the line that starts at `line`: the next '\n', or `end`. */
static const char *line_end(const char *line, const char *end)
{
    const char *found = line < end ? memchr(line, '\n', (size_t)(end - line)) : NULL;
    return found != NULL ? found : end;
}

/* One line; short ones are built on the stack. */
void function_log_write(slice_t function_name, slice_t text)
{
    if (!log_writer_enabled(&function_writer))
        return;
    struct line_start start;
    line_start_init(&start, function_name, (slice_t){NULL, 0});
    size_t need = line_size(&start, text.len);
    char stack[1024];
    char *buffer = need <= sizeof stack ? stack : malloc(need);
    VERGE_ASSERT(buffer != NULL);
    char *end = line_write(buffer, &start, text, has_line_break(text.ptr, text.len));
    log_writer_queue(&function_writer, buffer, (size_t)(end - buffer), 1);
    if (buffer != stack)
        free(buffer);
}

void function_log_batch_add(struct function_log_batch *batch, slice_t function_name, slice_t prefix, slice_t text)
{
    if (!log_writer_enabled(&function_writer))
        return;
    struct line_start start;
    line_start_init(&start, function_name, prefix);
    for (const char *line = text.ptr, *end = text.ptr + text.len;; line++) {
        const char *stop = line_end(line, end);
        bytebuf_reserve(&batch->lines, line_size(&start, (size_t)(stop - line)));
        slice_t one = {line, (size_t)(stop - line)};
        char *p = line_write(batch->lines.data + batch->lines.len, &start, one, has_line_break(one.ptr, one.len));
        batch->lines.len = (size_t)(p - batch->lines.data);
        if ((line = stop) == end)
            break;
    }
    batch->entries++;
}

void function_log_batch_add_lines(struct function_log_batch *batch, slice_t function_name, const slice_t *lines, size_t count)
{
    if (!log_writer_enabled(&function_writer))
        return;
    struct line_start start;
    line_start_init(&start, function_name, (slice_t){NULL, 0});
    for (size_t i = 0; i < count; i++) {
#ifndef NDEBUG
        VERGE_ASSERT(!has_line_break(lines[i].ptr, lines[i].len));
#endif
        bytebuf_reserve(&batch->lines, line_size(&start, lines[i].len));
        char *p = line_write(batch->lines.data + batch->lines.len, &start, lines[i], false);
        batch->lines.len = (size_t)(p - batch->lines.data);
    }
    batch->entries++;
}

void function_log_batch_queue(struct function_log_batch *batch)
{
    if (batch->lines.len > 0)
        log_writer_queue(&function_writer, batch->lines.data, batch->lines.len, batch->entries);
    batch->lines.len = 0;
    batch->entries = 0;
    if (batch->lines.cap > LOG_KEEP_CAPACITY)
        bytebuf_free(&batch->lines); /* a burst of long prints: do not keep its room on the loop thread */
}

/* ---- writer thread ------------------------------------------------------- */

static bool warning_allowed(struct log_writer *w, uint64_t now_ms)
{
    if (w->last_warning_ms != 0 && now_ms < w->last_warning_ms + LOG_WARN_INTERVAL_MS)
        return false;
    w->last_warning_ms = now_ms;
    return true;
}

/* Writes all of data to the writer's fd; on error the rest is lost (and said
 * so, at most once per second). A non-blocking stdout is waited for rather
 * than dropped. */
static void write_all(struct log_writer *w, const char *data, size_t len)
{
    int fd = w->writer_fd;
    if (fd < 0 || len == 0)
        return;
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd poll_fd = {.fd = fd, .events = POLLOUT};
            if (poll(&poll_fd, 1, 1000) <= 0) {
                if (warning_allowed(w, time_now_monotonic_ms()))
                    log_warn("%s: destination not writable for 1 s; %zu bytes lost", w->name, len);
                return;
            }
        } else {
            if (warning_allowed(w, time_now_monotonic_ms()))
                log_error("%s: write failed: %s; %zu bytes lost", w->name, n < 0 ? strerror(errno) : "wrote nothing", len);
            return;
        }
    }
}

static void wait_until(struct log_writer *w, uint64_t deadline_ms)
{
    struct timespec deadline = {.tv_sec = (time_t)(deadline_ms / 1000), .tv_nsec = (long)(deadline_ms % 1000) * 1000000};
    pthread_cond_timedwait(&w->wake, &w->lock, &deadline);
}

static void *writer_main(void *argument)
{
    struct log_writer *w = argument;
    struct bytebuf writing = {0};
    pthread_mutex_lock(&w->lock);
    for (;;) {
        /* Wait until there is something due: a flush, a switch, a stop, or a
         * drop report. */
        for (;;) {
            uint64_t now = time_now_monotonic_ms();
            bool report_due = w->shared.dropped_unreported > 0 && now >= w->last_warning_ms + LOG_WARN_INTERVAL_MS;
            bool flush_due = w->shared.stopping || w->shared.switch_count > 0 || w->shared.pending.len >= LOG_FLUSH_BYTES ||
                             (w->shared.pending.len > 0 && now >= w->shared.pending_since_ms + LOG_FLUSH_INTERVAL_MS);
            if (flush_due || report_due)
                break;
            uint64_t deadline = UINT64_MAX;
            if (w->shared.pending.len > 0)
                deadline = w->shared.pending_since_ms + LOG_FLUSH_INTERVAL_MS;
            if (w->shared.dropped_unreported > 0 && w->last_warning_ms + LOG_WARN_INTERVAL_MS < deadline)
                deadline = w->last_warning_ms + LOG_WARN_INTERVAL_MS;
            if (deadline == UINT64_MAX)
                pthread_cond_wait(&w->wake, &w->lock);
            else
                wait_until(w, deadline);
        }

        struct bytebuf swap = writing;
        writing = w->shared.pending;
        w->shared.pending = swap;
        struct destination_switch switches[LOG_MAX_SWITCHES];
        size_t switch_count = w->shared.switch_count;
        memcpy(switches, w->shared.switches, switch_count * sizeof switches[0]);
        w->shared.switch_count = 0;
        uint64_t now = time_now_monotonic_ms();
        uint64_t dropped = 0;
        if (w->shared.dropped_unreported > 0 && (w->shared.stopping || now >= w->last_warning_ms + LOG_WARN_INTERVAL_MS)) {
            dropped = w->shared.dropped_unreported;
            w->shared.dropped_unreported = 0;
        }
        pthread_mutex_unlock(&w->lock);

        size_t written = 0;
        for (size_t i = 0; i < switch_count; i++) {
            VERGE_ASSERT(switches[i].offset >= written && switches[i].offset <= writing.len);
            write_all(w, writing.data + written, switches[i].offset - written);
            written = switches[i].offset;
            close_destination(w->writer_fd);
            w->writer_fd = switches[i].fd;
        }
        write_all(w, writing.data + written, writing.len - written);
        writing.len = 0;
        if (writing.cap > LOG_KEEP_CAPACITY)
            bytebuf_free(&writing);
        if (dropped > 0) {
            w->last_warning_ms = now;
            log_warn("%s: dropped %llu entries (the writer cannot keep up)", w->name, (unsigned long long)dropped);
        }

        pthread_mutex_lock(&w->lock);
        if (w->shared.stopping && w->shared.pending.len == 0 && w->shared.switch_count == 0 && w->shared.dropped_unreported == 0)
            break;
    }
    pthread_mutex_unlock(&w->lock);
    bytebuf_free(&writing);
    return NULL;
}

/* ---- configuration and lifetime ------------------------------------------ */

static bool same_path(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static int log_writer_configure(struct log_writer *w, const char *path, char *error, size_t error_size)
{
    if (w->configured && same_path(path, w->current_path))
        return 0;
    pthread_once(&wake_once, wake_init);

    int fd = -1;
    if (path != NULL && strcmp(path, "-") == 0) {
        fd = STDOUT_FILENO;
    } else if (path != NULL) {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(error, error_size, "%s: cannot open \"%s\": %s", w->config_key, path, strerror(errno));
            return -1;
        }
    }
    char *path_copy = NULL;
    if (path != NULL && (path_copy = strdup(path)) == NULL) {
        close_destination(fd);
        snprintf(error, error_size, "%s: out of memory", w->config_key);
        return -1;
    }

    if (!w->writer_running && path != NULL) {
        int rc = pthread_create(&w->writer_thread, NULL, writer_main, w);
        if (rc != 0) {
            close_destination(fd);
            free(path_copy);
            snprintf(error, error_size, "%s: cannot start the writer thread: %s", w->name, strerror(rc));
            return -1;
        }
        w->writer_running = true;
    }

    pthread_mutex_lock(&w->lock);
    size_t count = w->shared.switch_count;
    if (count == LOG_MAX_SWITCHES) {
        /* The writer is stuck (e.g. on a blocked stdout pipe) through many
         * reloads: the newest switch replaces the last queued one, whose
         * lines then go to the new destination. */
        count--;
        close_destination(w->shared.switches[count].fd);
    } else {
        w->shared.switches[count].offset = w->shared.pending.len;
    }
    w->shared.switches[count].fd = fd;
    w->shared.switch_count = count + 1;
    atomic_store_explicit(&w->shared.enabled, path != NULL, memory_order_relaxed);
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);

    free(w->current_path);
    w->current_path = path_copy;
    w->configured = true;
    return 0;
}

static void log_writer_shutdown(struct log_writer *w)
{
    if (w->writer_running) {
        pthread_mutex_lock(&w->lock);
        w->shared.stopping = true;
        atomic_store_explicit(&w->shared.enabled, false, memory_order_relaxed);
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->writer_thread, NULL);
        w->writer_running = false;
    }
    /* The writer applied every switch before exiting; without a writer the
     * only possible switch is to "off" (-1). */
    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < w->shared.switch_count; i++)
        close_destination(w->shared.switches[i].fd);
    bytebuf_free(&w->shared.pending);
    memset(&w->shared, 0, sizeof w->shared);
    pthread_mutex_unlock(&w->lock);
    close_destination(w->writer_fd);
    w->writer_fd = -1;
    w->last_warning_ms = 0;
    free(w->current_path);
    w->current_path = NULL;
    w->configured = false;
}

int access_log_configure(const char *path, char *error, size_t error_size)
{
    return log_writer_configure(&access_writer, path, error, error_size);
}

void access_log_shutdown(void)
{
    log_writer_shutdown(&access_writer);
}

int function_log_configure(const char *path, char *error, size_t error_size)
{
    return log_writer_configure(&function_writer, path, error, error_size);
}

void function_log_shutdown(void)
{
    log_writer_shutdown(&function_writer);
}
