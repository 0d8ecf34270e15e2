/* worker.c — the edge-function worker process: a hardened process with one LuaJIT state answering framed messages.
 *
 * Single-threaded, one process per worker, one event at a time; the state stays
 * warm between events. worker_main is the whole life of the process:
 *   1. read INIT (memory limit, function file, handler, env);
 *   2. read the function file and every *.lua file below its directory into
 *      memory (bounded: WORKER_SOURCE_MAX_*), because after step 3 the process
 *      can open nothing; `require` is served from these copies;
 *   3. harden (hooks/sandbox.c: descriptors, rlimits, nobody, seccomp), each
 *      step checked, any failure → a line on stderr and _exit(70);
 *   4. create the Lua state and load the function from memory; send READY;
 *   5. answer INVOKE until the channel closes, then _exit(0): no atexit
 *      handlers, no LeakSanitizer pass under seccomp. An event in the
 *      proxy's compact spelling costs C one lua_pcall of a small Lua
 *      trampoline (invoke_lua) that decodes, calls the handler and encodes;
 *      JSON events (tests, tools) take a slower path in C.
 * Inside the VM: a reduced Lua environment (no io, ffi, debug, jit,
 * os.execute/exit/remove/rename/tmpname, package.loadlib, string.dump, no
 * bytecode loading anywhere: load/loadstring accept text only, dofile/loadfile
 * are gone, require only finds the in-memory text modules) and a counting
 * allocator that refuses growth past the memory limit, so a memory bomb becomes
 * a Lua "not enough memory" error, not a bigger process. os.getenv sees only the
 * INIT env; verge.sleep lets a function simulate a slow dependency. Endless
 * loops are the proxy's business (SIGKILL at the deadline): JIT code ignores
 * debug hooks.
 *
 * Invariant: every Lua call that can raise (allocation included) runs under
 * lua_pcall/lua_cpcall, so an error never unwinds past worker_main's loop. JSON
 * decoding raises from inside yajl callbacks; the yajl handle is owned by the C
 * frame outside the protected call and freed there.
 */
#include "worker.h"

#include "event.h"
#include "event_format.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

/* ---- framing ------------------------------------------------------------- */

static bool write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK)
            n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

static bool read_all(int fd, void *data, size_t len)
{
    char *p = data;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool worker_message_write(int fd, uint32_t type, const void *payload, size_t len)
{
    if (len > WORKER_MESSAGE_MAX)
        return false;
    uint32_t header[2] = {type, (uint32_t)len};
    return write_all(fd, header, sizeof header) && write_all(fd, payload, len);
}

bool worker_message_read(int fd, uint32_t *type, struct bytebuf *payload)
{
    uint32_t header[2];
    if (!read_all(fd, header, sizeof header))
        return false;
    if (header[1] > WORKER_MESSAGE_MAX)
        return false;
    payload->len = 0;
    bytebuf_reserve(payload, (size_t)header[1] + 1);
    if (!read_all(fd, payload->data, header[1]))
        return false;
    payload->len = header[1];
    payload->data[payload->len] = '\0'; /* convenience for text payloads */
    *type = header[0];
    return true;
}

static size_t string16_size(slice_t s)
{
    return sizeof(uint16_t) + (s.len > UINT16_MAX ? UINT16_MAX : s.len);
}

/* A u16-length-prefixed string (cut at 65535 bytes) at p, with room reserved already. */
static char *put_string16(char *p, slice_t s)
{
    uint16_t len = (uint16_t)(string16_size(s) - sizeof(uint16_t));
    memcpy(p, &len, sizeof len);
    if (len > 0)
        memcpy(p + sizeof len, s.ptr, len);
    return p + sizeof len + len;
}

static void append_string16(struct bytebuf *out, slice_t s)
{
    bytebuf_reserve(out, string16_size(s));
    out->len = (size_t)(put_string16(out->data + out->len, s) - out->data);
}

void worker_invocation_encode(const struct worker_invocation *invocation, struct bytebuf *out)
{
    /* one reserve for the whole payload: the proxy writes one per event */
    bytebuf_reserve(out, sizeof invocation->remaining_ms + sizeof invocation->layout + string16_size(invocation->request_id) +
                             string16_size(invocation->function_name) + string16_size(invocation->function_version) +
                             invocation->event_json.len);
    char *p = out->data + out->len;
    memcpy(p, &invocation->remaining_ms, sizeof invocation->remaining_ms);
    p += sizeof invocation->remaining_ms;
    memcpy(p, &invocation->layout, sizeof invocation->layout);
    p += sizeof invocation->layout;
    p = put_string16(p, invocation->request_id);
    p = put_string16(p, invocation->function_name);
    p = put_string16(p, invocation->function_version);
    if (invocation->event_json.len > 0)
        memcpy(p, invocation->event_json.ptr, invocation->event_json.len);
    out->len = (size_t)(p - out->data) + invocation->event_json.len;
}

void worker_invocation_set_layout(char *payload, const struct event_compact_layout *layout)
{
    memcpy(payload + sizeof(uint32_t), layout, sizeof *layout); /* after remaining_ms */
}

static bool take_string16(const char **p, const char *end, slice_t *out)
{
    uint16_t len;
    if ((size_t)(end - *p) < sizeof len)
        return false;
    memcpy(&len, *p, sizeof len);
    *p += sizeof len;
    if ((size_t)(end - *p) < len)
        return false;
    *out = slice_make(*p, len);
    *p += len;
    return true;
}

static bool invocation_decode(const char *payload, size_t len, struct worker_invocation *out)
{
    const char *p = payload, *end = payload + len;
    if (len < sizeof out->remaining_ms + sizeof out->layout)
        return false;
    memcpy(&out->remaining_ms, p, sizeof out->remaining_ms);
    p += sizeof out->remaining_ms;
    memcpy(&out->layout, p, sizeof out->layout);
    p += sizeof out->layout;
    if (!take_string16(&p, end, &out->request_id) || !take_string16(&p, end, &out->function_name) ||
        !take_string16(&p, end, &out->function_version))
        return false;
    out->event_json = slice_make(p, (size_t)(end - p));
    /* Header maps inside the event, in order, not overlapping; anything
     * else is a broken frame. */
    size_t after = 0;
    for (int i = 0; i < 2; i++) {
        uint32_t at = out->layout.headers[i].at, n = out->layout.headers[i].len;
        if (n == 0)
            continue;
        if (at < after || (size_t)at + n > out->event_json.len)
            return false;
        after = (size_t)at + n;
    }
    return true;
}

bool worker_result_decode(const char *payload, size_t len, struct worker_result *out)
{
    const size_t fixed = 2 + sizeof out->peak_memory_bytes + sizeof out->duration_us;
    if (len < fixed)
        return false;
    if (payload[0] != WORKER_RESULT_OK && payload[0] != WORKER_RESULT_ERROR && payload[0] != WORKER_RESULT_UNSERIALIZABLE)
        return false;
    if (payload[1] != EVENT_HEADERS_WHOLE && (payload[0] != WORKER_RESULT_OK || (payload[1] != EVENT_HEADERS_REQUEST_CHANGES &&
                                                                                 payload[1] != EVENT_HEADERS_RESPONSE_CHANGES)))
        return false;
    out->status = (enum worker_result_status)payload[0];
    out->header_changes = (enum event_header_changes)payload[1];
    memcpy(&out->peak_memory_bytes, payload + 2, sizeof out->peak_memory_bytes);
    memcpy(&out->duration_us, payload + 2 + sizeof out->peak_memory_bytes, sizeof out->duration_us);
    out->body = slice_make(payload + fixed, len - fixed);
    return true;
}

static bool take_u16(const char **p, const char *end, uint16_t *out)
{
    if ((size_t)(end - *p) < sizeof *out)
        return false;
    memcpy(out, *p, sizeof *out);
    *p += sizeof *out;
    return true;
}

void worker_init_encode(const struct worker_init *init, struct bytebuf *out)
{
    bytebuf_append(out, &init->memory_limit_mb, sizeof init->memory_limit_mb);
    append_string16(out, init->function_file);
    append_string16(out, init->handler);
    uint16_t count = init->env_count > UINT16_MAX ? UINT16_MAX : (uint16_t)init->env_count;
    bytebuf_append(out, &count, sizeof count);
    for (size_t i = 0; i < count; i++) {
        append_string16(out, init->env_names[i]);
        append_string16(out, init->env_values[i]);
    }
    uint32_t source_len = (uint32_t)init->source.len;
    bytebuf_append(out, &source_len, sizeof source_len);
    bytebuf_append(out, init->source.ptr, init->source.len);
}

bool worker_init_decode(const char *payload, size_t len, struct worker_init *out, struct arena *arena)
{
    const char *p = payload, *end = payload + len;
    *out = (struct worker_init){0};
    if (len < sizeof out->memory_limit_mb)
        return false;
    memcpy(&out->memory_limit_mb, p, sizeof out->memory_limit_mb);
    p += sizeof out->memory_limit_mb;
    uint16_t count;
    if (!take_string16(&p, end, &out->function_file) || !take_string16(&p, end, &out->handler) || !take_u16(&p, end, &count))
        return false;
    /* Both become C strings and Lua names: empty or NUL-carrying ones are garbage. */
    if (out->function_file.len == 0 || out->handler.len == 0 || memchr(out->function_file.ptr, '\0', out->function_file.len) ||
        memchr(out->handler.ptr, '\0', out->handler.len))
        return false;
    /* Each pair takes at least 4 bytes: a count the payload cannot hold is rejected before allocating. */
    if ((size_t)(end - p) < (size_t)count * 4)
        return false;
    out->env_names = arena_alloc(arena, sizeof(slice_t) * (count ? count : 1));
    out->env_values = arena_alloc(arena, sizeof(slice_t) * (count ? count : 1));
    for (size_t i = 0; i < count; i++)
        if (!take_string16(&p, end, &out->env_names[i]) || !take_string16(&p, end, &out->env_values[i]))
            return false;
    out->env_count = count;
    uint32_t source_len;
    if ((size_t)(end - p) < sizeof source_len)
        return false;
    memcpy(&source_len, p, sizeof source_len);
    p += sizeof source_len;
    if ((size_t)(end - p) != source_len)
        return false;
    out->source = (slice_t){p, source_len};
    return true;
}

bool worker_ready_decode(const char *payload, size_t len, bool *loaded, slice_t *error)
{
    if (len < 1)
        return false;
    if (payload[0] == WORKER_READY_LOADED && len == 1) {
        *loaded = true;
        *error = slice_make(payload + 1, 0);
        return true;
    }
    if (payload[0] == WORKER_READY_LOAD_ERROR) {
        *loaded = false;
        *error = slice_make(payload + 1, len - 1);
        return true;
    }
    return false;
}

/* ---- the worker state ---------------------------------------------------- */

/* One source file read before hardening. */
struct source_file {
    char *relative_path; /* "a/b.lua", relative to the function's directory */
    char *code;
    size_t len;
};

struct source_set {
    char directory[PATH_MAX];      /* the function file's directory, as given (chunk names) */
    char real_directory[PATH_MAX]; /* its realpath, to tell symlinks that leave it */
    struct source_file function;   /* the function file itself */
    struct source_file *files;     /* every *.lua below directory (the function file too) */
    size_t count, capacity;
    size_t total_bytes;
};

/* Header templates. An event's two header maps (the request's and the
 * response's: where they are comes with the INVOKE frame) are what most of
 * its decoding costs, and on cache hits of a hot object they are the same
 * bytes event after event. So the worker keeps, per map, the last
 * TEMPLATE_SLOTS encodings it had to decode (replaced in turn, oldest
 * first, whether or not they still hit) and the tables decoded from them (the
 * templates, in a Lua table only the trampoline holds, never given to a
 * function), decodes the rest of the event with the map replaced by an
 * empty table, and gives the function a deep copy of the template made with
 * table.clone (no hashing, no interning): the same tables it would have
 * decoded. Maps under TEMPLATE_MIN_BYTES (a header or two) and events over
 * TEMPLATE_MAX_EVENT (a body: the copy would cost more than it saves) are
 * decoded in place. A map seen for the first time is decoded into a new
 * template (the oldest slot's). After MISS_STREAK_MAX misses in a row a map
 * is decoded in place for BYPASS_EVENTS events (varied request headers),
 * then tried again. A miss empties its slot's bytes first; the trampoline
 * stores the new template and then says so (invoke_template_stored), which
 * fills them: a decode that fails (out of memory) leaves the slot empty. */
#define TEMPLATE_SLOTS 4
#define TEMPLATE_MIN_BYTES 64
#define TEMPLATE_MAX_EVENT (64 * 1024)
#define TEMPLATE_MAX_RESULT (64 * 1024) /* a larger result (a body) goes whole: its changes would save little */
#define MISS_STREAK_MAX 8
#define BYPASS_EVENTS 64

/* Header changes. A function mostly hands its event's headers back with a
 * header or two added, changed or removed, and the proxy would read and
 * check every header of the map again. So when the result's map (the
 * response's when the result has a status, else the request's) was given to
 * the function as a copy of a template, the worker sends only the headers
 * whose encoding differs from the template's, and each header the template
 * has and the result lacks as an empty list (EVENT_HEADERS_*_CHANGES; the
 * proxy merges them into the event's map). The bytes compared are what
 * string.buffer writes for the result and what it wrote for the template
 * when it was stored: a copy made by table.clone keeps its tables' layout,
 * and so their order, until the function changes them. An entry that only
 * differs in order counts as changed, which costs speed, not correctness. A
 * result whose map is anything but string-keyed values, that changes more
 * than EVENT_HEADER_CHANGES_MAX headers, whose changes would be no smaller
 * than the map, or that is over TEMPLATE_MAX_RESULT goes whole (the last
 * two also bound what the changes buffer holds). */
struct template_header {
    slice_t name;
    slice_t key;   /* the encoding of the map key: a string or a dictionary reference */
    slice_t value; /* the encoding of the list */
    uint64_t seen; /* the last result (templates.results) that still had it (64 bits: never wraps) */
};

struct template_index {
    char *encoding; /* string.buffer's encoding of the template table; NULL: no index */
    struct template_header *headers;
    uint32_t count;
    uint32_t *by_name; /* open addressing on the name's hash: index + 1, 0 empty */
    uint32_t mask;
};

struct header_template_part {
    char *bytes[TEMPLATE_SLOTS]; /* the encoding of the template in Lua slot part * TEMPLATE_SLOTS + i + 1 */
    uint32_t len[TEMPLATE_SLOTS];
    struct template_index index[TEMPLATE_SLOTS];
    unsigned next; /* the slot the next miss replaces */
    unsigned miss_streak, bypass;
    /* this event: 0 no template, else the Lua slot; `miss`: decode it from `blob` first */
    int slot;
    bool miss;
    slice_t blob;
};

struct header_templates {
    struct header_template_part part[2];
    struct bytebuf bare;     /* this event with its templated maps replaced by empty tables */
    struct bytebuf changes;  /* this event's result with its map as changes */
    uint64_t results;        /* results compared so far */
    bool event_has_response; /* this event has a response (a response trigger's) */
};

static void template_index_free(struct template_index *index)
{
    free(index->encoding);
    free(index->headers);
    free(index->by_name);
    *index = (struct template_index){0};
}

/* Decides, for each header map of a compact event, template or not; builds
 * the bare event when one is used. Returns the bytes to decode. */
static slice_t templates_prepare(struct header_templates *t, const struct worker_invocation *inv)
{
    slice_t event = inv->event_json;
    bool any = false;
    t->event_has_response = inv->layout.headers[1].len > 0;
    for (int i = 0; i < 2; i++) {
        struct header_template_part *p = &t->part[i];
        p->slot = 0;
        p->miss = false;
        uint32_t at = inv->layout.headers[i].at, len = inv->layout.headers[i].len;
        if (len < TEMPLATE_MIN_BYTES || event.len > TEMPLATE_MAX_EVENT)
            continue; /* none, or a header or two: decoding them costs no more than a copy */
        if (p->bypass > 0) {
            p->bypass--;
            continue;
        }
        p->blob = slice_make(event.ptr + at, len);
        for (int j = 0; j < TEMPLATE_SLOTS; j++)
            if (p->len[j] == len && p->bytes[j] != NULL && memcmp(p->bytes[j], p->blob.ptr, len) == 0) {
                p->slot = i * TEMPLATE_SLOTS + j + 1;
                p->miss_streak = 0;
                break;
            }
        if (p->slot == 0) {
            if (++p->miss_streak >= MISS_STREAK_MAX) {
                p->miss_streak = 0;
                p->bypass = BYPASS_EVENTS;
                continue;
            }
            unsigned j = p->next;
            p->next = (p->next + 1) % TEMPLATE_SLOTS;
            free(p->bytes[j]); /* emptied now, filled by invoke_template_stored */
            p->bytes[j] = NULL;
            p->len[j] = 0;
            template_index_free(&p->index[j]);
            p->slot = i * TEMPLATE_SLOTS + (int)j + 1;
            p->miss = true;
        }
        any = true;
    }
    if (!any)
        return event;
    /* prefix, an empty table where each templated map was, the rest */
    t->bare.len = 0;
    bytebuf_reserve(&t->bare, event.len);
    size_t from = 0;
    for (int i = 0; i < 2; i++) {
        if (t->part[i].slot == 0)
            continue;
        uint32_t at = inv->layout.headers[i].at;
        bytebuf_append(&t->bare, event.ptr + from, at - from);
        bytebuf_append(&t->bare, &(char){COMPACT_EMPTY_TABLE}, 1);
        from = (size_t)at + inv->layout.headers[i].len;
    }
    bytebuf_append(&t->bare, event.ptr + from, event.len - from);
    return slice_make(t->bare.data, t->bare.len);
}

/* Where the prefix-encoded number at p ends (*out its value); NULL when it
 * does not end before `end`. */
static const unsigned char *walk_u(const unsigned char *p, const unsigned char *end, uint32_t *out)
{
    if (p >= end)
        return NULL;
    uint32_t first = *p++;
    if (first < 0xe0) {
        *out = first;
        return p;
    }
    if (first != 0xff) {
        if (p >= end)
            return NULL;
        *out = (((first & 0x1f) << 8) | *p) + 0xe0;
        return p + 1;
    }
    if (end - p < 4)
        return NULL;
    memcpy(out, p, 4);
    return p + 4;
}

/* Where the value string.buffer wrote at p ends: nil, booleans, numbers,
 * strings, dictionary references and tables; NULL for anything else (a
 * value the proxy refuses anyway), cut short, or nested over
 * EVENT_MAX_JSON_DEPTH. */
static const unsigned char *walk_value(const unsigned char *p, const unsigned char *end, int depth)
{
    if (p >= end || depth > EVENT_MAX_JSON_DEPTH)
        return NULL;
    unsigned tag = *p;
    uint32_t n = 0, pairs = 0;
    if (tag >= COMPACT_STRING) {
        if ((p = walk_u(p, end, &n)) == NULL || (size_t)(end - p) < n - COMPACT_STRING)
            return NULL;
        return p + (n - COMPACT_STRING);
    }
    p++;
    switch (tag) {
    case 0x00: /* nil */
    case COMPACT_FALSE:
    case COMPACT_TRUE:
    case COMPACT_EMPTY_TABLE:
        return p;
    case 0x06: /* int32 */
        return end - p >= 4 ? p + 4 : NULL;
    case COMPACT_NUMBER:
        return end - p >= 8 ? p + 8 : NULL;
    case COMPACT_DICT_KEY:
        return walk_u(p, end, &n);
    case COMPACT_HASH:
    case 0x0a:
    case 0x0b:
    case COMPACT_ARRAY_FROM_1:
    case 0x0d:
        if (tag != COMPACT_HASH && (p = walk_u(p, end, &n)) == NULL)
            return NULL;
        if (tag >= COMPACT_ARRAY_FROM_1 && n > 0)
            n--; /* from index 1: slot 0 is counted, not written */
        if ((tag & 1) && (p = walk_u(p, end, &pairs)) == NULL)
            return NULL;
        for (; n > 0 && p != NULL; n--)
            p = walk_value(p, end, depth + 1);
        for (; pairs > 0 && p != NULL; pairs--)
            if ((p = walk_value(p, end, depth + 1)) != NULL)
                p = walk_value(p, end, depth + 1);
        return p;
    default:
        return NULL;
    }
}

/* A map key: a string or a dictionary reference (a header named like a
 * field of the schema); where it ends, NULL for anything else. */
static const unsigned char *walk_name(const unsigned char *p, const unsigned char *end, slice_t *name)
{
    uint32_t n;
    if (p < end && *p == COMPACT_DICT_KEY) {
        if ((p = walk_u(p + 1, end, &n)) == NULL || n >= EVENT_KEY_COUNT)
            return NULL;
        *name = event_keys[n];
        return p;
    }
    if (p >= end || *p < COMPACT_STRING || (p = walk_u(p, end, &n)) == NULL || (size_t)(end - p) < n - COMPACT_STRING)
        return NULL;
    *name = slice_make((const char *)p, n - COMPACT_STRING);
    return p + name->len;
}

static uint32_t name_hash(slice_t name)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < name.len; i++)
        h = (h ^ (unsigned char)name.ptr[i]) * 16777619u;
    return h;
}

static struct template_header *template_index_find(const struct template_index *index, slice_t name)
{
    for (uint32_t i = name_hash(name) & index->mask;; i = (i + 1) & index->mask) {
        uint32_t at = index->by_name[i];
        if (at == 0)
            return NULL;
        struct template_header *header = &index->headers[at - 1];
        if (slice_equal(header->name, name))
            return header;
    }
}

/* Indexes string.buffer's encoding of a template map by name; leaves the
 * index empty (no changes for this template) when the map is not a plain
 * string-keyed table or memory runs out. */
static void template_index_build(struct template_index *index, slice_t encoding)
{
    template_index_free(index);
    const unsigned char *p = (const unsigned char *)encoding.ptr, *end = p + encoding.len;
    uint32_t count = 0;
    if (encoding.len == 0 || (*p != COMPACT_HASH && *p != COMPACT_EMPTY_TABLE) ||
        (*p == COMPACT_HASH && walk_u(p + 1, end, &count) == NULL) || count > encoding.len)
        return;
    uint32_t size = 8;
    while (size < 2 * count)
        size *= 2;
    index->encoding = malloc(encoding.len);
    index->headers = calloc(count ? count : 1, sizeof *index->headers);
    index->by_name = calloc(size, sizeof *index->by_name);
    if (index->encoding == NULL || index->headers == NULL || index->by_name == NULL) {
        template_index_free(index);
        return;
    }
    memcpy(index->encoding, encoding.ptr, encoding.len);
    index->mask = size - 1;
    p = (const unsigned char *)index->encoding;
    end = p + encoding.len;
    p = *p == COMPACT_HASH ? walk_u(p + 1, end, &count) : p + 1;
    for (uint32_t n = 0; n < count; n++) {
        struct template_header *header = &index->headers[n];
        const unsigned char *key = p, *value = walk_name(key, end, &header->name);
        if (value == NULL || (p = walk_value(value, end, 0)) == NULL || template_index_find(index, header->name) != NULL) {
            template_index_free(index);
            return;
        }
        header->key = slice_make((const char *)key, (size_t)(value - key));
        header->value = slice_make((const char *)value, (size_t)(p - value));
        uint32_t i = name_hash(header->name) & index->mask;
        while (index->by_name[i] != 0)
            i = (i + 1) & index->mask;
        index->by_name[i] = n + 1;
        index->count = n + 1;
    }
    if (p != end)
        template_index_free(index);
}

/* The template of Lua slot `slot` was decoded from this event's blob and
 * stored; `encoding` is string.buffer's encoding of it. From now on those
 * bytes find it, and results are compared with it. */
static void templates_stored(struct header_templates *t, int slot, slice_t encoding)
{
    if (slot < 1 || slot > 2 * TEMPLATE_SLOTS)
        return;
    struct header_template_part *p = &t->part[(slot - 1) / TEMPLATE_SLOTS];
    if (!p->miss || p->slot != slot)
        return;
    unsigned j = (unsigned)(slot - 1) % TEMPLATE_SLOTS;
    p->bytes[j] = malloc(p->blob.len);
    if (p->bytes[j] != NULL) {
        memcpy(p->bytes[j], p->blob.ptr, p->blob.len);
        p->len[j] = (uint32_t)p->blob.len;
        template_index_build(&p->index[j], encoding);
    }
    p->miss = false;
}

/* The headers of the result's map (at p, up to end) against `index`: the
 * changed or added ones into `changed` (key and value encodings), each
 * template header still there marked seen (`results`); returns where the
 * map ends, NULL to send the result whole. An unchanged header is found
 * without decoding it: a copy's map lists the template's headers in the
 * template's order (added keys land in between, unless the table had to
 * grow), so the bytes at p are compared with the next template header's key
 * and value as one run, and since the format is self-delimiting, equal
 * bytes are that same header. Otherwise the name is read and looked up, and
 * the bytes compared with that header's value; only a changed or added
 * header's value is walked. */
static const unsigned char *diff_header_map(struct template_index *index, const unsigned char *p, const unsigned char *end,
                                            uint64_t results, slice_t changed[][2], uint32_t *changed_count, uint32_t *kept)
{
    uint32_t pairs = 0, next = 0;
    if (*p == COMPACT_EMPTY_TABLE)
        return p + 1;
    if (*p != COMPACT_HASH || (p = walk_u(p + 1, end, &pairs)) == NULL)
        return NULL;
    for (; pairs > 0; pairs--) {
        if (next < index->count) {
            struct template_header *expected = &index->headers[next];
            size_t run = expected->key.len + expected->value.len;
            if ((size_t)(end - p) >= run && memcmp(p, expected->key.ptr, run) == 0 && expected->seen != results) {
                expected->seen = results;
                ++*kept;
                p += run;
                next++;
                continue;
            }
        }
        slice_t name;
        const unsigned char *key = p, *value = walk_name(p, end, &name);
        if (value == NULL)
            return NULL;
        struct template_header *same = template_index_find(index, name);
        if (same != NULL && same->seen != results) {
            same->seen = results; /* still there: not removed */
            ++*kept;
            next = (uint32_t)(same - index->headers) + 1;
            if ((size_t)(end - value) >= same->value.len && memcmp(value, same->value.ptr, same->value.len) == 0) {
                p = value + same->value.len; /* the same value (self-delimiting) */
                continue;
            }
        }
        if ((p = walk_value(value, end, 0)) == NULL)
            return NULL;
        slice_t encoded = slice_make((const char *)value, (size_t)(p - value));
        if (*changed_count == EVENT_HEADER_CHANGES_MAX)
            return NULL;
        changed[*changed_count][0] = slice_make((const char *)key, (size_t)(value - key));
        changed[(*changed_count)++][1] = encoded;
    }
    return p;
}

/* The result `result` (string.buffer's encoding of what the function
 * returned) with its header map as changes against the template the
 * function was given, in t->changes; false (send it whole) when there is no
 * such template or the result is not one to compare. The map compared is
 * the response's in an event that has one (its result must be a response),
 * else the request's (a generated response, with a status, goes whole). */
static bool templates_result_changes(struct header_templates *t, slice_t result, enum event_header_changes *changes)
{
    bool response = t->event_has_response;
    struct header_template_part *part = &t->part[response ? 1 : 0];
    if (part->slot == 0 || result.len > TEMPLATE_MAX_RESULT)
        return false;
    struct template_index *index = &part->index[(part->slot - 1) % TEMPLATE_SLOTS];
    if (index->encoding == NULL)
        return false;
    const unsigned char *start = (const unsigned char *)result.ptr, *end = start + result.len, *p = start;
    const unsigned char *map = NULL, *map_end = NULL;
    bool has_status = false;
    uint32_t members, changed_count = 0, kept = 0;
    uint64_t results = ++t->results;
    slice_t changed[EVENT_HEADER_CHANGES_MAX][2]; /* key, value */
    if (result.len == 0 || *p != COMPACT_HASH || (p = walk_u(p + 1, end, &members)) == NULL)
        return false;
    for (; members > 0; members--) {
        const unsigned char *key = p;
        if ((p = walk_value(p, end, 0)) == NULL)
            return false;
        if (key[0] == COMPACT_DICT_KEY && key[1] == EVENT_KEY_HEADERS && map == NULL) {
            map = p;
            p = diff_header_map(index, p, end, results, changed, &changed_count, &kept);
            map_end = p;
        } else {
            has_status |= key[0] == COMPACT_DICT_KEY && key[1] == EVENT_KEY_STATUS;
            p = walk_value(p, end, 0);
        }
        if (p == NULL)
            return false;
    }
    uint32_t total = changed_count + (index->count - kept);
    if (p != end || map == NULL || has_status != response || total > EVENT_HEADER_CHANGES_MAX)
        return false;
    size_t changes_bytes = 6;
    for (uint32_t c = 0; c < changed_count; c++)
        changes_bytes += changed[c][0].len + changed[c][1].len;
    for (uint32_t n = 0; n < index->count && kept < index->count; n++)
        if (index->headers[n].seen != results)
            changes_bytes += index->headers[n].key.len + 1;
    if (changes_bytes >= (size_t)(map_end - map))
        return false; /* no smaller than the whole map */
    /* what comes before the map, the changes, the removed headers, what comes after */
    struct bytebuf *out = &t->changes;
    out->len = 0;
    bytebuf_reserve(out, result.len + 16);
    bytebuf_append(out, start, (size_t)(map - start));
    if (total == 0) {
        bytebuf_append(out, &(char){COMPACT_EMPTY_TABLE}, 1);
    } else {
        char head[6] = {COMPACT_HASH};
        bytebuf_append(out, head, (size_t)(compact_prefix(head + 1, total) - head));
    }
    for (uint32_t c = 0; c < changed_count; c++) {
        bytebuf_append_slice(out, changed[c][0]);
        bytebuf_append_slice(out, changed[c][1]);
    }
    for (uint32_t n = 0; n < index->count && kept < index->count; n++)
        if (index->headers[n].seen != results) {
            bytebuf_append_slice(out, index->headers[n].key);
            bytebuf_append(out, &(char){COMPACT_EMPTY_TABLE}, 1);
        }
    bytebuf_append(out, map_end, (size_t)(end - map_end));
    *changes = response ? EVENT_HEADERS_RESPONSE_CHANGES : EVENT_HEADERS_REQUEST_CHANGES;
    return true;
}

struct worker {
    lua_State *L;
    int channel_fd;
    size_t memory_used, memory_limit, memory_peak;
    int handler_ref;                            /* LUA_NOREF when the function failed to load */
    int invoke_ref;                             /* the invoke trampoline (invoke_lua) bound to the handler */
    int traceback_ref;                          /* traceback_handler as a Lua value, made once */
    int context_meta_ref;                       /* the metatable of every event's context (LUA_NOREF: not built yet) */
    const struct worker_invocation *invocation; /* the event being run (invoke_begin reads it) */
    char load_error[2048];
    const struct worker_init *init;
    struct source_set *sources;
    uint64_t deadline_ms;      /* monotonic */
    uint64_t event_started_ms; /* monotonic */
    struct bytebuf out;        /* frames (LOG, RESULT) not yet written: one write per batch of events */
    struct header_templates templates;
};

/* Appends a frame to the worker's pending output. */
static void queue_frame(struct worker *w, uint32_t type, const void *payload, size_t len)
{
    uint32_t header[2] = {type, (uint32_t)len};
    bytebuf_append(&w->out, header, sizeof header);
    bytebuf_append(&w->out, payload, len);
}

static bool flush_frames(struct worker *w)
{
    bool ok = write_all(w->channel_fd, w->out.data, w->out.len);
    w->out.len = 0;
    return ok;
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Small blocks (most of what an event allocates: strings, tables, their
 * parts, and the event and result strings of a typical event, ~1.3 KB) come
 * from per-size free lists carved from 64 KiB slabs, so an event costs no
 * malloc/free pair per Lua object; larger ones go to malloc. The lists are
 * per process (a worker is single-threaded) and never shrink: they hold at
 * most the peak the memory limit allowed. */
#define SMALL_BLOCK_GRAIN 16
#define SMALL_BLOCK_MAX 2048
#define SLAB_BYTES (64 * 1024)

struct small_free_block {
    struct small_free_block *next;
};

static struct small_free_block *small_free[SMALL_BLOCK_MAX / SMALL_BLOCK_GRAIN + 1];
static char *slab_next, *slab_end;

static size_t small_class(size_t size)
{
    return (size + SMALL_BLOCK_GRAIN - 1) / SMALL_BLOCK_GRAIN;
}

/* A new slab, and the first block from it (the rest of the old slab is left unused). */
static __attribute__((noinline)) void *small_alloc_from_new_slab(size_t bytes)
{
    slab_next = malloc(SLAB_BYTES);
    if (slab_next == NULL)
        return NULL;
    slab_end = slab_next + SLAB_BYTES;
    void *p = slab_next;
    slab_next += bytes;
    return p;
}

static inline void *small_alloc(size_t size)
{
    size_t class = small_class(size);
    struct small_free_block *block = small_free[class];
    if (block != NULL) {
        small_free[class] = block->next;
        return block;
    }
    size_t bytes = class * SMALL_BLOCK_GRAIN;
    if (slab_next == NULL || (size_t)(slab_end - slab_next) < bytes)
        return small_alloc_from_new_slab(bytes);
    void *p = slab_next;
    slab_next += bytes;
    return p;
}

static inline void small_free_block(void *ptr, size_t size)
{
    struct small_free_block *block = ptr;
    size_t class = small_class(size);
    block->next = small_free[class];
    small_free[class] = block;
}

/* counting_alloc's cases other than a new small block and a freed one:
 * resizing, and blocks over SMALL_BLOCK_MAX. ptr == NULL has old_size 0. */
static __attribute__((noinline)) void *counting_realloc(struct worker *w, void *ptr, size_t old_size, size_t new_size)
{
    if (new_size == 0) {
        free(ptr); /* only large blocks come here */
        w->memory_used -= old_size;
        return NULL;
    }
    if (new_size > old_size && w->memory_used - old_size + new_size > w->memory_limit)
        return NULL;
    void *p;
    bool old_small = ptr != NULL && old_size <= SMALL_BLOCK_MAX, new_small = new_size <= SMALL_BLOCK_MAX;
    if (old_small && new_small && small_class(old_size) == small_class(new_size)) {
        p = ptr;
    } else if (!old_small && !new_small) {
        p = realloc(ptr, new_size);
        if (p == NULL && new_size > old_size)
            return NULL;
        if (p == NULL)
            p = ptr; /* a shrink must not fail: keep the larger block */
    } else {
        p = new_small ? small_alloc(new_size) : malloc(new_size);
        if (p == NULL && (ptr == NULL || new_size > old_size))
            return NULL;
        if (p == NULL) {
            /* A shrink must not fail: the old block stays, and is from now on
             * what LuaJIT says it is (a block of new_size; when freed it joins
             * that size's free list, which it is large enough for). */
            p = ptr;
        } else if (ptr != NULL) {
            memcpy(p, ptr, old_size < new_size ? old_size : new_size);
            if (old_small)
                small_free_block(ptr, old_size);
            else
                free(ptr);
        }
    }
    w->memory_used = w->memory_used - old_size + new_size;
    if (w->memory_used > w->memory_peak)
        w->memory_peak = w->memory_used;
    return p;
}

/* lua_Alloc: counts live bytes; growth past the limit fails, which LuaJIT turns
 * into a "not enough memory" error in the running code. Shrinking never fails.
 * The two calls an event makes by the hundred, a new small block and a freed
 * one, are handled here in a few instructions; the rest in counting_realloc. */
static void *counting_alloc(void *user, void *ptr, size_t old_size, size_t new_size)
{
    struct worker *w = user;
    if (ptr == NULL) {
        if (new_size == 0)
            return NULL;
        if (new_size <= SMALL_BLOCK_MAX) {
            size_t used = w->memory_used + new_size;
            if (used > w->memory_limit)
                return NULL;
            void *p = small_alloc(new_size);
            if (p == NULL)
                return NULL;
            w->memory_used = used;
            if (used > w->memory_peak)
                w->memory_peak = used;
            return p;
        }
        return counting_realloc(w, NULL, 0, new_size);
    }
    if (new_size == 0 && old_size <= SMALL_BLOCK_MAX) {
        small_free_block(ptr, old_size);
        w->memory_used -= old_size;
        return NULL;
    }
    return counting_realloc(w, ptr, old_size, new_size);
}

static struct worker *worker_of(lua_State *L)
{
    void *user;
    lua_getallocf(L, &user);
    return user;
}

/* ---- sandboxed library functions ----------------------------------------- */

static int sandbox_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_getglobal(L, "tostring");
    for (int i = 1; i <= n; i++) {
        lua_pushvalue(L, -1);
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        if (!lua_isstring(L, -1))
            return luaL_error(L, "'tostring' must return a string to 'print'");
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_addvalue(&b); /* pops the string; tostring stays below */
    }
    luaL_pushresult(&b);
    size_t len;
    const char *line = lua_tolstring(L, -1, &len);
    if (len > WORKER_MESSAGE_MAX)
        len = WORKER_MESSAGE_MAX; /* a log line is not worth killing the invocation */
    /* Log lines go with the event's result (one write), unless the event
     * runs long: then at once, so a function stuck later still shows them. */
    struct worker *w = worker_of(L);
    queue_frame(w, WORKER_MESSAGE_LOG, line, len);
    if ((w->out.len > 64 * 1024 || monotonic_ms() - w->event_started_ms > 50) && !flush_frames(w))
        return luaL_error(L, "function log closed");
    return 0;
}

/* load/loadstring for text chunks only (bytecode can break out of the VM). */
static int sandbox_load(lua_State *L)
{
    size_t len;
    const char *code = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, code);
    if (luaL_loadbufferx(L, code, len, name, "t") != 0) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    return 1;
}

/* The registry key of the env table (name → value from INIT). */
static const char env_registry_key = 'e';

/* os.getenv sees only the function's env from INIT, never the process environment. */
static int sandbox_getenv(lua_State *L)
{
    luaL_checkstring(L, 1);
    lua_pushlightuserdata(L, (void *)&env_registry_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 1);
    lua_rawget(L, -2); /* nil when absent */
    return 1;
}

/* verge.sleep(milliseconds): for functions that simulate a slow dependency.
 * The proxy's deadline still applies (SIGKILL), so a long sleep only costs
 * this invocation. */
static int verge_sleep(lua_State *L)
{
    lua_Number ms = luaL_checknumber(L, 1);
    if (!(ms >= 0))
        return luaL_argerror(L, 1, "milliseconds must be a number >= 0");
    if (ms > 86400e3)
        ms = 86400e3;
    struct timespec left = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(fmod(ms, 1000) * 1e6)};
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
    return 0;
}

/* package.loaders entry: text .lua modules read from the function's directory
 * before hardening. Module names are dot-separated components of
 * [A-Za-z0-9_-]; "a.b" is a/b.lua below the function's directory. */
static int sandbox_module_searcher(lua_State *L)
{
    size_t name_len;
    const char *name = luaL_checklstring(L, 1, &name_len);
    struct worker *w = worker_of(L);
    char path[512];
    if (name_len + 5 > sizeof path)
        return luaL_error(L, "module name too long");
    size_t used = 0;
    bool component_empty = true;
    for (size_t i = 0; i < name_len; i++) {
        char ch = name[i];
        if (ch == '.') {
            if (component_empty)
                break;
            ch = '/';
            component_empty = true;
        } else if (ch == '_' || ch == '-' || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
            component_empty = false;
        } else {
            component_empty = true;
            break;
        }
        path[used++] = ch;
    }
    if (used != name_len || component_empty) {
        lua_pushfstring(L, "\n\tmodule name '%s' not allowed (dot-separated names of letters, digits, '_' and '-')", name);
        return 1;
    }
    memcpy(path + used, ".lua", 5);
    const struct source_set *sources = w->sources;
    for (size_t i = 0; i < sources->count; i++) {
        const struct source_file *file = &sources->files[i];
        if (strcmp(file->relative_path, path) != 0)
            continue;
        lua_pushfstring(L, "@%s/%s", sources->directory, path);
        if (luaL_loadbufferx(L, file->code, file->len, lua_tostring(L, -1), "t") != 0)
            return lua_error(L);
        return 1;
    }
    lua_pushfstring(L, "\n\tno file '%s/%s'", sources->directory, path);
    return 1;
}

static void open_library(lua_State *L, const char *name, lua_CFunction open)
{
    lua_pushcfunction(L, open);
    lua_pushstring(L, name);
    lua_call(L, 1, 0);
}

static void set_field_nil(lua_State *L, const char *table, const char *field)
{
    lua_getglobal(L, table);
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        lua_setfield(L, -2, field);
    }
    lua_pop(L, 1);
}

/* Runs under lua_cpcall: builds the reduced global environment. */
static int sandbox_open(lua_State *L)
{
    open_library(L, "", luaopen_base);
    open_library(L, LUA_TABLIBNAME, luaopen_table);
    open_library(L, LUA_STRLIBNAME, luaopen_string);
    open_library(L, LUA_MATHLIBNAME, luaopen_math);
    open_library(L, LUA_OSLIBNAME, luaopen_os);
    open_library(L, LUA_LOADLIBNAME, luaopen_package);
    open_library(L, LUA_BITLIBNAME, luaopen_bit);

    static const char *const removed_globals[] = {"dofile", "loadfile", "load", "loadstring", "gcinfo", "module"};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(removed_globals); i++) {
        lua_pushnil(L);
        lua_setglobal(L, removed_globals[i]);
    }
    lua_pushcfunction(L, sandbox_load);
    lua_setglobal(L, "load");
    lua_pushcfunction(L, sandbox_load);
    lua_setglobal(L, "loadstring");
    lua_pushcfunction(L, sandbox_print);
    lua_setglobal(L, "print");

    static const char *const removed_os[] = {"execute", "exit", "remove", "rename", "tmpname", "setlocale"};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(removed_os); i++)
        set_field_nil(L, "os", removed_os[i]);
    lua_getglobal(L, "os");
    lua_pushcfunction(L, sandbox_getenv);
    lua_setfield(L, -2, "getenv");
    lua_pop(L, 1);
    set_field_nil(L, "string", "dump");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, verge_sleep);
    lua_setfield(L, -2, "sleep");
    lua_setglobal(L, "verge");

    /* package: no C loaders, no loadlib, nothing preloaded (ffi/jit are never opened). */
    lua_getglobal(L, "package");
    lua_pushnil(L);
    lua_setfield(L, -2, "loadlib");
    lua_pushnil(L);
    lua_setfield(L, -2, "seeall");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "path");
    lua_newtable(L);
    lua_setfield(L, -2, "preload");
    lua_getfield(L, -1, "loaders");
    lua_rawgeti(L, -1, 1); /* the preload searcher */
    lua_newtable(L);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    lua_pushcfunction(L, sandbox_module_searcher);
    lua_rawseti(L, -2, 2);
    lua_setfield(L, -3, "loaders");
    lua_pop(L, 2);
    /* Drop the libraries that luaopen_package registered in package.loaded under names we removed. */
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
    lua_pushnil(L);
    lua_setfield(L, -2, "ffi");
    lua_pushnil(L);
    lua_setfield(L, -2, "jit");
    lua_pushnil(L);
    lua_setfield(L, -2, "debug");
    lua_pushnil(L);
    lua_setfield(L, -2, "io");
    lua_pop(L, 1);
    return 0;
}

/* Message handler: the error plus a traceback. A non-string error value is
 * described. The bottom frame is the worker's own entry (the invoke
 * trampoline, or the C function a lua_cpcall runs), never function code:
 * it is left out. */
static int traceback_handler(lua_State *L)
{
    const char *message = lua_tostring(L, 1);
    if (message == NULL)
        message = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, message, 1);
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    const char *last = text + len;
    while (last > text && last[-1] != '\n')
        last--;
    if (last > text && last[0] == '\t')
        lua_pushlstring(L, text, (size_t)(last - 1 - text));
    return 1;
}

/* ---- JSON → Lua (yajl parser callbacks) ---------------------------------- */

/* Stack discipline while parsing: every open container is a table on the Lua
 * stack; inside an object the pending key sits above its table. A finished
 * value is stored into the container below it (or left alone at the top). */
struct decode_state {
    lua_State *L;
    int depth;
    bool is_array[EVENT_MAX_JSON_DEPTH + 1];
    int next_index[EVENT_MAX_JSON_DEPTH + 1];
};

static int decode_place(struct decode_state *d)
{
    lua_State *L = d->L;
    if (d->depth == 0)
        return 1;
    if (d->is_array[d->depth])
        lua_rawseti(L, -2, ++d->next_index[d->depth]);
    else
        lua_rawset(L, -3);
    return 1;
}

static int decode_null(void *ctx)
{
    struct decode_state *d = ctx;
    /* nil cannot live in a table: an object member disappears, an array slot stays a hole. */
    if (d->depth == 0)
        lua_pushnil(d->L);
    else if (d->is_array[d->depth])
        d->next_index[d->depth]++;
    else
        lua_pop(d->L, 1);
    return 1;
}

static int decode_boolean(void *ctx, int value)
{
    struct decode_state *d = ctx;
    lua_pushboolean(d->L, value);
    return decode_place(d);
}

static int decode_number(void *ctx, const char *text, size_t len)
{
    struct decode_state *d = ctx;
    char buf[64];
    if (len >= sizeof buf)
        return 0;
    memcpy(buf, text, len);
    buf[len] = '\0';
    lua_pushnumber(d->L, strtod(buf, NULL));
    return decode_place(d);
}

static int decode_string(void *ctx, const unsigned char *text, size_t len)
{
    struct decode_state *d = ctx;
    lua_pushlstring(d->L, (const char *)text, len);
    return decode_place(d);
}

static int decode_open(struct decode_state *d, bool is_array)
{
    if (d->depth >= EVENT_MAX_JSON_DEPTH)
        return 0;
    luaL_checkstack(d->L, 4, "event JSON too deep");
    lua_newtable(d->L);
    if (is_array) {
        lua_pushlightuserdata(d->L, (void *)&counting_alloc);
        lua_rawget(d->L, LUA_REGISTRYINDEX);
        lua_setmetatable(d->L, -2);
    }
    d->depth++;
    d->is_array[d->depth] = is_array;
    d->next_index[d->depth] = 0;
    return 1;
}

static int decode_start_map(void *ctx)
{
    return decode_open(ctx, false);
}
static int decode_start_array(void *ctx)
{
    return decode_open(ctx, true);
}

static int decode_map_key(void *ctx, const unsigned char *key, size_t len)
{
    struct decode_state *d = ctx;
    lua_pushlstring(d->L, (const char *)key, len);
    return 1;
}

static int decode_close(void *ctx)
{
    struct decode_state *d = ctx;
    d->depth--;
    return decode_place(d);
}

static const yajl_callbacks decode_callbacks = {
    .yajl_null = decode_null,
    .yajl_boolean = decode_boolean,
    .yajl_number = decode_number,
    .yajl_string = decode_string,
    .yajl_start_map = decode_start_map,
    .yajl_map_key = decode_map_key,
    .yajl_end_map = decode_close,
    .yajl_start_array = decode_start_array,
    .yajl_end_array = decode_close,
};

/* yajl handles live in userdata with __gc, so a Lua error unwinding past them frees them. */
static int yajl_handle_gc(lua_State *L)
{
    yajl_handle *slot = lua_touserdata(L, 1);
    if (*slot)
        yajl_free(*slot);
    *slot = NULL;
    return 0;
}

static int yajl_gen_gc(lua_State *L)
{
    yajl_gen *slot = lua_touserdata(L, 1);
    if (*slot)
        yajl_gen_free(*slot);
    *slot = NULL;
    return 0;
}

static void *new_guarded_slot(lua_State *L, lua_CFunction gc)
{
    void **slot = lua_newuserdata(L, sizeof(void *));
    *slot = NULL;
    lua_newtable(L);
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    return slot;
}

/* Pushes the decoded value of json; raises on malformed JSON. */
static void json_decode(lua_State *L, slice_t json)
{
    struct decode_state d = {.L = L};
    yajl_handle *slot = new_guarded_slot(L, yajl_handle_gc);
    int guard = lua_gettop(L);
    *slot = yajl_alloc(&decode_callbacks, NULL, &d);
    if (*slot == NULL)
        luaL_error(L, "not enough memory");
    yajl_status status = yajl_parse(*slot, (const unsigned char *)json.ptr, json.len);
    if (status == yajl_status_ok)
        status = yajl_complete_parse(*slot);
    if (status != yajl_status_ok || lua_gettop(L) != guard + 1)
        luaL_error(L, "invalid event JSON");
    yajl_free(*slot);
    *slot = NULL;
    lua_remove(L, guard);
}

/* ---- Lua → JSON (yajl_gen) ----------------------------------------------- */

static bool number_is_integer(lua_Number n)
{
    return n >= -9007199254740992.0 && n <= 9007199254740992.0 && n == floor(n);
}

static void encode_number(lua_State *L, yajl_gen gen, lua_Number n)
{
    if (!isfinite(n))
        luaL_error(L, "result: cannot encode a non-finite number");
    if (number_is_integer(n)) {
        yajl_gen_integer(gen, (long long)n);
        return;
    }
    char buf[40];
    int len = snprintf(buf, sizeof buf, "%.17g", n);
    yajl_gen_number(gen, buf, (size_t)len);
}

/* A table is a JSON array when it carries the decoded-array metatable or its
 * keys are exactly 1..n (n > 0). An empty plain table is an object. */
static bool table_is_array(lua_State *L, int index)
{
    if (lua_getmetatable(L, index)) {
        lua_pushlightuserdata(L, (void *)&counting_alloc);
        lua_rawget(L, LUA_REGISTRYINDEX);
        bool marked = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (marked)
            return true;
    }
    size_t n = lua_objlen(L, index), keys = 0;
    if (n == 0)
        return false;
    lua_pushnil(L);
    while (lua_next(L, index) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TNUMBER) {
            lua_pop(L, 1);
            return false;
        }
        lua_Number k = lua_tonumber(L, -1);
        if (k < 1 || k > (lua_Number)n || k != floor(k)) {
            lua_pop(L, 1);
            return false;
        }
        keys++;
    }
    return keys == n;
}

static void encode_value(lua_State *L, yajl_gen gen, int index, int depth)
{
    if (depth > EVENT_MAX_JSON_DEPTH)
        luaL_error(L, "result: nested too deeply (or a cycle)");
    luaL_checkstack(L, 6, "result nested too deeply");
    switch (lua_type(L, index)) {
    case LUA_TNIL:
        yajl_gen_null(gen);
        return;
    case LUA_TBOOLEAN:
        yajl_gen_bool(gen, lua_toboolean(L, index));
        return;
    case LUA_TNUMBER:
        encode_number(L, gen, lua_tonumber(L, index));
        return;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, index, &len);
        if (yajl_gen_string(gen, (const unsigned char *)s, len) != yajl_gen_status_ok)
            luaL_error(L, "result: string is not valid UTF-8");
        return;
    }
    case LUA_TTABLE:
        break;
    default:
        luaL_error(L, "result: cannot encode a %s value", luaL_typename(L, index));
    }
    if (table_is_array(L, index)) {
        size_t n = lua_objlen(L, index);
        yajl_gen_array_open(gen);
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, index, (int)i);
            encode_value(L, gen, lua_gettop(L), depth + 1);
            lua_pop(L, 1);
        }
        yajl_gen_array_close(gen);
        return;
    }
    yajl_gen_map_open(gen);
    lua_pushnil(L);
    while (lua_next(L, index) != 0) {
        int key_type = lua_type(L, -2);
        if (key_type == LUA_TSTRING) {
            size_t len;
            const char *key = lua_tolstring(L, -2, &len);
            if (yajl_gen_string(gen, (const unsigned char *)key, len) != yajl_gen_status_ok)
                luaL_error(L, "result: key is not valid UTF-8");
        } else if (key_type == LUA_TNUMBER) {
            /* Formatted by hand: lua_tolstring would change the key under lua_next. */
            char buf[40];
            lua_Number k = lua_tonumber(L, -2);
            int len =
                number_is_integer(k) ? snprintf(buf, sizeof buf, "%lld", (long long)k) : snprintf(buf, sizeof buf, "%.17g", k);
            yajl_gen_string(gen, (const unsigned char *)buf, (size_t)len);
        } else {
            luaL_error(L, "result: cannot encode a %s key", luaL_typename(L, -2));
        }
        encode_value(L, gen, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
    }
    yajl_gen_map_close(gen);
}

/* ---- one invocation ------------------------------------------------------ */

static int context_remaining_time(lua_State *L)
{
    uint64_t now = monotonic_ms(), deadline = worker_of(L)->deadline_ms;
    lua_pushnumber(L, deadline > now ? (lua_Number)(deadline - now) : 0);
    return 1;
}

static void push_slice(lua_State *L, slice_t s)
{
    lua_pushlstring(L, s.ptr, s.len);
}

/* Pushes the metatable of every context. What stays the same for this
 * worker (name, version, memory, the remaining-time function) is built once,
 * from the first event, and reached through __index; each event gets its own
 * table with its request id. */
static void push_context_meta(lua_State *L, struct worker *w, const struct worker_invocation *inv)
{
    if (w->context_meta_ref == LUA_NOREF) {
        lua_createtable(L, 0, 1);
        lua_createtable(L, 0, 4);
        push_slice(L, inv->function_name);
        lua_setfield(L, -2, "functionName");
        push_slice(L, inv->function_version);
        lua_setfield(L, -2, "functionVersion");
        lua_pushfstring(L, "%d", (int)(w->memory_limit / (1024 * 1024)));
        lua_setfield(L, -2, "memoryLimitInMB");
        lua_pushcfunction(L, context_remaining_time);
        lua_setfield(L, -2, "getRemainingTimeInMillis");
        lua_setfield(L, -2, "__index");
        w->context_meta_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->context_meta_ref);
}

/* The per-event path for compact events (all the proxy sends), in Lua: C
 * enters the VM once per event with a plain lua_pcall (traceback_handler as
 * the message handler) and this does decode → context → handler → encode as
 * Lua code, calling string.buffer's fast functions directly. Compiled at
 * load before the function's chunk runs, from values captured then (the
 * chunk may replace globals such as pcall), with an empty environment; kept
 * in the registry and on the worker's stack, where no function code reaches
 * it. Returns the encoded result, or nil and the serializer's message when
 * the result cannot be encoded (a function value, a cycle: an invalid result,
 * not a failed function). Everything else (the handler raised, out of memory
 * while decoding or inside the handler) is raised to the C side. The encode
 * runs under pcall called from Lua: the serializer then reports its message
 * without a source position, as it did when C called it.
 *
 * Both directions use string.buffer objects made with the schema's field
 * names as their dictionary (event_keys, the proxy's list: tag 0x0f +
 * index on the wire), so those keys are neither hashed nor interned per
 * event. Two objects, made once: one only ever set() to the event (a
 * reference to the string, no copy), one only ever reset() and encoded into
 * (its space is kept, up to 256 KiB: it counts against the function's
 * memory); set() on a buffer frees its space, so one object for both would
 * allocate anew per event. `call` holds the handler in a table so that a
 * traceback names it by where it is defined. A template is stored in a
 * table made with table.new with room for 4 more headers than it has, so
 * that a copy a function adds a header or two to does not grow, keeps its
 * headers in the template's order, and its result is compared with the
 * template's bytes header by header without a lookup ("Header changes"). */
static const char invoke_lua[] = "local begin, stored, new, dict, pcall, setmetatable, clone, next, new_table = ...\n"
                                 "local decoder, encoder = new({dict = dict}), new({dict = dict})\n"
                                 "local set, decode = decoder.set, decoder.decode\n"
                                 "local reset, encode, get, free = encoder.reset, encoder.encode, encoder.get, encoder.free\n"
                                 "local templates = {}\n"
                                 "local function copy(t)\n" /* name -> list -> {key, value}: each level cloned */
                                 "  local c = clone(t)\n"
                                 "  for name, list in next, c do\n"
                                 "    local l = clone(list)\n"
                                 "    for i, entry in next, l do l[i] = clone(entry) end\n"
                                 "    c[name] = l\n"
                                 "  end\n"
                                 "  return c\n"
                                 "end\n"
                                 "local function headers(slot, blob)\n"
                                 "  if blob then\n"
                                 "    local decoded, count = decode(set(decoder, blob)), 0\n"
                                 "    for _ in next, decoded do count = count + 1 end\n"
                                 "    local t = new_table(0, count + 4)\n"
                                 "    for name, list in next, decoded do t[name] = list end\n"
                                 "    templates[slot] = t\n"
                                 "    stored(slot, get(encode(reset(encoder), t)))\n"
                                 "  end\n"
                                 "  return copy(templates[slot])\n"
                                 "end\n"
                                 "return function(handler)\n"
                                 "  local call = {handler}\n"
                                 "  return function()\n"
                                 "    local event, request_id, context_meta, slot1, blob1, slot2, blob2 = begin()\n"
                                 "    local context = setmetatable({awsRequestId = request_id}, context_meta)\n"
                                 "    event = decode(set(decoder, event))\n"
                                 "    if slot1 then event.Records[1].cf.request.headers = headers(slot1, blob1) end\n"
                                 "    if slot2 then event.Records[1].cf.response.headers = headers(slot2, blob2) end\n"
                                 "    local result = call[1](event, context)\n"
                                 "    local ok, message = pcall(encode, reset(encoder), result)\n"
                                 "    if not ok then return nil, message end\n"
                                 "    local encoded = get(encoder)\n"
                                 "    if #encoded > 262144 then free(encoder) end\n"
                                 "    return encoded\n"
                                 "  end\n"
                                 "end\n";
#define INVOKE_CHUNK_NAME "=[verge invoke]"

/* Called by the trampoline: the event, its request id and the context
 * metatable, made into Lua values here, where an allocation failure is an
 * ordinary Lua error and not a panic. */
static int invoke_begin(lua_State *L)
{
    struct worker *w = worker_of(L);
    const struct worker_invocation *inv = w->invocation;
    push_slice(L, templates_prepare(&w->templates, inv));
    push_slice(L, inv->request_id);
    push_context_meta(L, w, inv);
    for (int i = 0; i < 2; i++) {
        const struct header_template_part *part = &w->templates.part[i];
        if (part->slot == 0) {
            lua_pushnil(L);
            lua_pushnil(L);
        } else {
            lua_pushinteger(L, part->slot);
            if (part->miss)
                push_slice(L, part->blob);
            else
                lua_pushnil(L);
        }
    }
    return 7;
}

/* Called by the trampoline once it stored a template decoded from this event. */
static int invoke_template_stored(lua_State *L)
{
    size_t len = 0;
    const char *encoding = lua_tolstring(L, 2, &len);
    templates_stored(&worker_of(L)->templates, (int)lua_tointeger(L, 1), slice_make(encoding, encoding ? len : 0));
    return 0;
}

/* The worker's Lua stack between events: these two, nothing else. */
enum { STACK_TRACEBACK = 1, STACK_INVOKE = 2 };

struct invoke_call {
    struct worker *worker;
    const struct worker_invocation *invocation;
    bool function_failed; /* the handler raised: message is its error + traceback */
    struct bytebuf *out;  /* result JSON, or the error text */
};

/* Runs under lua_cpcall: the JSON path (tests and tools): decode, call the
 * handler, encode, all from C. */
static int invoke_json_protected(lua_State *L)
{
    struct invoke_call *call = lua_touserdata(L, 1);
    struct worker *w = call->worker;
    const struct worker_invocation *inv = call->invocation;
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->traceback_ref); /* 1 */
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->handler_ref);   /* 2 */
    json_decode(L, inv->event_json);                     /* 3 */
    lua_createtable(L, 0, 1);                            /* 4: context */
    push_slice(L, inv->request_id);
    lua_setfield(L, -2, "awsRequestId");
    push_context_meta(L, w, inv);
    lua_setmetatable(L, -2);
    if (lua_pcall(L, 2, 1, 1) != 0) {
        call->function_failed = true;
        size_t len;
        const char *message = lua_tolstring(L, -1, &len);
        if (message == NULL)
            message = "(error object is not a string)", len = strlen(message);
        bytebuf_append(call->out, message, len);
        return 0;
    }
    yajl_gen *slot = new_guarded_slot(L, yajl_gen_gc);
    *slot = yajl_gen_alloc(NULL);
    if (*slot == NULL)
        return luaL_error(L, "not enough memory");
    yajl_gen_config(*slot, yajl_gen_validate_utf8, 1);
    encode_value(L, *slot, 2, 0);
    const unsigned char *json;
    size_t len;
    yajl_gen_get_buf(*slot, &json, &len);
    bytebuf_append(call->out, json, len);
    return 0;
}

/* Queues a RESULT frame. Nothing over a frame's bound goes out: a huge
 * result is an invalid one (502, the proxy would refuse its size anyway), a
 * huge error text is cut. Either way the channel stays in step. */
static void queue_result(struct worker *w, uint8_t status, uint8_t header_changes, uint64_t peak, uint32_t duration_us,
                         slice_t body)
{
    const size_t fixed = 2 + sizeof peak + sizeof duration_us;
    char message[128];
    if (body.len + fixed > WORKER_MESSAGE_MAX) {
        if (status == WORKER_RESULT_OK) {
            int n = snprintf(message, sizeof message, "result too large: %zu bytes (a worker sends at most %u)", body.len,
                             (unsigned)(WORKER_MESSAGE_MAX - fixed));
            status = WORKER_RESULT_UNSERIALIZABLE;
            header_changes = EVENT_HEADERS_WHOLE;
            body = slice_make(message, (size_t)n);
        } else {
            body.len = 64 * 1024;
        }
    }
    uint32_t header[2] = {WORKER_MESSAGE_RESULT, (uint32_t)(fixed + body.len)};
    bytebuf_reserve(&w->out, sizeof header + fixed + body.len);
    bytebuf_append(&w->out, header, sizeof header);
    bytebuf_append(&w->out, &status, 1);
    bytebuf_append(&w->out, &header_changes, 1);
    bytebuf_append(&w->out, &peak, sizeof peak);
    bytebuf_append(&w->out, &duration_us, sizeof duration_us);
    bytebuf_append(&w->out, body.ptr, body.len);
}

/* Runs one event and queues its RESULT (after the LOG lines it printed).
 * Returns false when the output could not be written (the channel is gone). */
static bool worker_invoke(struct worker *w, const struct worker_invocation *invocation)
{
    lua_State *L = w->L;
    uint8_t status = WORKER_RESULT_OK;
    slice_t body;
    struct bytebuf json_body = {0};
    struct timespec started;
    clock_gettime(CLOCK_MONOTONIC, &started);
    w->event_started_ms = (uint64_t)started.tv_sec * 1000u + (uint64_t)started.tv_nsec / 1000000u;
    w->deadline_ms = w->event_started_ms + invocation->remaining_ms;
    w->memory_peak = w->memory_used;
    /* The proxy sends events in string.buffer's format (its first byte is a
     * table tag, below 0x20); tests and tools may send JSON. */
    bool compact = invocation->event_json.len > 0 && (unsigned char)invocation->event_json.ptr[0] < 0x20;
    if (w->handler_ref == LUA_NOREF) {
        status = WORKER_RESULT_ERROR;
        body = slice_from_cstr(w->load_error);
    } else if (compact) {
        w->invocation = invocation;
        lua_pushvalue(L, STACK_INVOKE);
        int called = lua_pcall(L, 0, 2, STACK_TRACEBACK);
        w->invocation = NULL;
        /* The body stays a string on the stack (alive) until it is queued. */
        if (called == 0 && lua_type(L, -2) == LUA_TSTRING) {
            body.ptr = lua_tolstring(L, -2, &body.len);
        } else if (lua_type(L, -1) == LUA_TSTRING) {
            body.ptr = lua_tolstring(L, -1, &body.len);
            /* Out of memory is an execution error like any other, also when
             * the serializer ran out; anything else the serializer refused
             * is an invalid result. */
            if (called != 0 || slice_equal(body, SLICE_LITERAL("not enough memory")))
                status = WORKER_RESULT_ERROR;
            else
                status = WORKER_RESULT_UNSERIALIZABLE;
        } else {
            status = called != 0 ? WORKER_RESULT_ERROR : WORKER_RESULT_UNSERIALIZABLE;
            body = SLICE_LITERAL("(error object is not a string)");
        }
    } else {
        struct invoke_call call = {.worker = w, .invocation = invocation, .out = &json_body};
        if (lua_cpcall(L, invoke_json_protected, &call) != 0) {
            /* Decode/encode failure or memory exhaustion outside the handler's own pcall. */
            status = WORKER_RESULT_ERROR;
            json_body.len = 0;
            const char *message = lua_tostring(L, -1);
            if (message == NULL)
                message = "worker error";
            bytebuf_append(&json_body, message, strlen(message));
        } else if (call.function_failed) {
            status = WORKER_RESULT_ERROR;
        }
        lua_settop(L, STACK_INVOKE);
        body = slice_make(json_body.data, json_body.len);
    }
    /* Garbage of this event (e.g. a memory bomb's tables) must not count
     * against the next: a full collection when a quarter of the limit is in
     * use. Below that the incremental collector keeps up, and a full
     * collection per event would cost more than a small function. */
    if (w->handler_ref != LUA_NOREF && w->memory_used > w->memory_limit / 4)
        lua_gc(L, LUA_GCCOLLECT, 0);
    struct timespec ended;
    clock_gettime(CLOCK_MONOTONIC, &ended);
    int64_t elapsed_us = (int64_t)(ended.tv_sec - started.tv_sec) * 1000000 + (ended.tv_nsec - started.tv_nsec) / 1000;
    uint32_t duration_us = elapsed_us < 0 ? 0 : elapsed_us > UINT32_MAX ? UINT32_MAX : (uint32_t)elapsed_us;
    enum event_header_changes changes = EVENT_HEADERS_WHOLE;
    if (status == WORKER_RESULT_OK && compact && templates_result_changes(&w->templates, body, &changes))
        body = slice_make(w->templates.changes.data, w->templates.changes.len);
    queue_result(w, status, (uint8_t)changes, w->memory_peak, duration_us, body);
    if (w->handler_ref != LUA_NOREF)
        lua_settop(L, STACK_INVOKE);
    bytebuf_free(&json_body);
    return w->out.len < 256 * 1024 || flush_frames(w);
}

/* ---- reading the function's sources (before hardening) ------------------ */

static bool source_error(char *error, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static bool source_error(char *error, size_t size, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(error, size, fmt, args);
    va_end(args);
    return false;
}

/* Reads a regular file whole, within what is left of WORKER_SOURCE_MAX_BYTES. */
static bool source_read(struct source_set *set, const char *path, int open_flags, struct source_file *out, char *error,
                        size_t error_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | open_flags);
    if (fd < 0)
        return source_error(error, error_size, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return source_error(error, error_size, "%s: not a regular file", path);
    }
    size_t budget = WORKER_SOURCE_MAX_BYTES - set->total_bytes;
    if ((uint64_t)st.st_size > budget) {
        close(fd);
        return source_error(error, error_size, "%s: the function's sources exceed %u MiB in all (limit)", path,
                            WORKER_SOURCE_MAX_BYTES / (1024u * 1024u));
    }
    /* One byte more than the size seen, so a file that grows meanwhile is caught. */
    size_t capacity = (size_t)st.st_size + 1, len = 0;
    char *code = malloc(capacity);
    VERGE_ASSERT(code != NULL);
    for (;;) {
        ssize_t n = read(fd, code + len, capacity - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int saved = errno;
            close(fd);
            free(code);
            return source_error(error, error_size, "cannot read %s: %s", path, strerror(saved));
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == capacity) {
            close(fd);
            free(code);
            return source_error(error, error_size, "%s changed while being read", path);
        }
    }
    close(fd);
    set->total_bytes += len;
    out->code = code;
    out->len = len;
    return true;
}

static bool source_add(struct source_set *set, const char *relative_path, const char *path, int open_flags, char *error,
                       size_t error_size)
{
    if (set->count >= WORKER_SOURCE_MAX_FILES)
        return source_error(error, error_size, "%s: more than %d .lua files below the function's directory (limit)", set->directory,
                            WORKER_SOURCE_MAX_FILES);
    if (set->count == set->capacity) {
        set->capacity = set->capacity ? set->capacity * 2 : 32;
        set->files = realloc(set->files, set->capacity * sizeof *set->files);
        VERGE_ASSERT(set->files != NULL);
    }
    struct source_file *file = &set->files[set->count];
    if (!source_read(set, path, open_flags, file, error, error_size))
        return false;
    file->relative_path = strdup(relative_path);
    VERGE_ASSERT(file->relative_path != NULL);
    set->count++;
    return true;
}

static bool name_is_lua_file(const char *name)
{
    size_t len = strlen(name);
    return len > 4 && strcmp(name + len - 4, ".lua") == 0;
}

/* Walks directory/relative (depth levels below the function's directory).
 * Dot entries are skipped: no module name can reach them. A symlink counts
 * when it resolves to a regular file inside the directory; symlinks that
 * leave it, and symlinked directories (loops), are skipped. */
static bool source_scan(struct source_set *set, const char *relative, int depth, char *error, size_t error_size)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s%s%s", set->directory, relative[0] ? "/" : "", relative) >= sizeof path)
        return source_error(error, error_size, "%s/%s: path too long", set->directory, relative);
    DIR *dir = opendir(path);
    if (dir == NULL)
        return source_error(error, error_size, "cannot open directory %s: %s", path, strerror(errno));
    bool ok = true;
    struct dirent *entry;
    while (ok && (errno = 0, entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        char child_relative[PATH_MAX], child_path[PATH_MAX];
        if ((size_t)snprintf(child_relative, sizeof child_relative, "%s%s%s", relative, relative[0] ? "/" : "", entry->d_name) >=
                sizeof child_relative ||
            (size_t)snprintf(child_path, sizeof child_path, "%s/%s", set->directory, child_relative) >= sizeof child_path) {
            ok = source_error(error, error_size, "%s/%s: path too long", path, entry->d_name);
            break;
        }
        struct stat st;
        if (fstatat(dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            ok = source_error(error, error_size, "cannot stat %s: %s", child_path, strerror(errno));
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            if (depth + 1 > WORKER_SOURCE_MAX_DEPTH)
                ok = source_error(error, error_size,
                                  "%s: directories nested more than %d levels below the function's directory (limit)", child_path,
                                  WORKER_SOURCE_MAX_DEPTH);
            else
                ok = source_scan(set, child_relative, depth + 1, error, error_size);
        } else if (S_ISREG(st.st_mode) && name_is_lua_file(entry->d_name)) {
            ok = source_add(set, child_relative, child_path, O_NOFOLLOW, error, error_size);
        } else if (S_ISLNK(st.st_mode) && name_is_lua_file(entry->d_name)) {
            char resolved[PATH_MAX];
            size_t base_len = strlen(set->real_directory);
            struct stat target;
            if (realpath(child_path, resolved) != NULL && strncmp(resolved, set->real_directory, base_len) == 0 &&
                (resolved[base_len] == '/' || (base_len == 1 && set->real_directory[0] == '/')) && stat(resolved, &target) == 0 &&
                S_ISREG(target.st_mode))
                ok = source_add(set, child_relative, resolved, 0, error, error_size);
        }
    }
    if (ok && errno != 0)
        ok = source_error(error, error_size, "cannot read directory %s: %s", path, strerror(errno));
    closedir(dir);
    return ok;
}

/* Reads the function file and every *.lua file below its directory. */
static bool sources_load(struct source_set *set, const char *function_file, char *error, size_t error_size)
{
    if (function_file[0] != '/')
        return source_error(error, error_size, "%s: the function file must be an absolute path", function_file);
    const char *slash = strrchr(function_file, '/');
    size_t dir_len = (size_t)(slash - function_file);
    if (dir_len >= sizeof set->directory)
        return source_error(error, error_size, "%s: path too long", function_file);
    memcpy(set->directory, function_file, dir_len);
    set->directory[dir_len] = '\0';
    if (realpath(dir_len ? set->directory : "/", set->real_directory) == NULL)
        return source_error(error, error_size, "cannot open %s: %s", function_file, strerror(errno));
    if (!source_read(set, function_file, 0, &set->function, error, error_size))
        return false;
    return source_scan(set, "", 0, error, error_size);
}

/* ---- loading the function (after hardening, from memory) ----------------- */

/* Runs under lua_cpcall. Errors raised here become the worker's load error. */
static int load_protected(lua_State *L)
{
    struct worker *w = lua_touserdata(L, 1);
    const struct worker_init *init = w->init;
    lua_settop(L, 0);
    sandbox_open(L);
    /* The invoke trampoline, made before the function's chunk can touch a
     * global: it captures string.buffer's serializer (which reads the
     * proxy's compact events and writes the results back, never handed to
     * the function), pcall and setmetatable now. 1: binds it to the handler. */
    if (luaL_loadbuffer(L, invoke_lua, sizeof invoke_lua - 1, INVOKE_CHUNK_NAME) != 0)
        return lua_error(L);
    lua_newtable(L);
    lua_setfenv(L, -2); /* no globals: everything it uses is captured */
    lua_pushcfunction(L, invoke_begin);
    lua_pushcfunction(L, invoke_template_stored);
    lua_pushcfunction(L, luaopen_string_buffer);
    lua_call(L, 0, 1);
    lua_getfield(L, -1, "new");
    lua_remove(L, -2);
    lua_createtable(L, EVENT_KEY_COUNT, 0); /* the dictionary, in event_keys' order */
    for (int i = 0; i < EVENT_KEY_COUNT; i++) {
        push_slice(L, event_keys[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_getglobal(L, "pcall");
    lua_getglobal(L, "setmetatable");
    /* table.clone (LuaJIT 2.1, OpenResty's), registered by the table library
     * as a preload; the sandbox's package.preload is a new, empty table. */
    lua_getfield(L, LUA_REGISTRYINDEX, "_PRELOAD");
    lua_getfield(L, -1, "table.clone");
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1))
        return luaL_error(L, "this LuaJIT has no table.clone");
    lua_call(L, 0, 1);
    lua_getglobal(L, "next");
    lua_getfield(L, LUA_REGISTRYINDEX, "_PRELOAD"); /* table.new, likewise */
    lua_getfield(L, -1, "table.new");
    lua_remove(L, -2);
    if (!lua_isfunction(L, -1))
        return luaL_error(L, "this LuaJIT has no table.new");
    lua_call(L, 0, 1);
    lua_call(L, 9, 1);
    lua_pushcfunction(L, traceback_handler);
    w->traceback_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    /* The decoded-array metatable, keyed by an address only this file knows. */
    lua_pushlightuserdata(L, (void *)&counting_alloc);
    lua_newtable(L);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, (void *)&env_registry_key);
    lua_createtable(L, 0, (int)init->env_count);
    for (size_t i = 0; i < init->env_count; i++) {
        push_slice(L, init->env_names[i]);
        push_slice(L, init->env_values[i]);
        lua_rawset(L, -3);
    }
    lua_rawset(L, LUA_REGISTRYINDEX);

    lua_rawgeti(L, LUA_REGISTRYINDEX, w->traceback_ref); /* 2 */
    lua_pushliteral(L, "@");
    push_slice(L, init->function_file);
    lua_concat(L, 2); /* 3: the chunk name */
    const struct source_file *function = &w->sources->function;
    if (luaL_loadbufferx(L, function->code, function->len, lua_tostring(L, 3), "t") != 0)
        return lua_error(L);
    if (lua_pcall(L, 0, 1, 2) != 0)
        return lua_error(L);
    push_slice(L, init->handler); /* 5 */
    /* "a.b.c" walks fields: first from the table the chunk returned, then
     * from the globals. */
    for (int from = 0; from < 2; from++) {
        if (from == 0 && !lua_istable(L, 4))
            continue;
        lua_pushvalue(L, from == 0 ? 4 : LUA_GLOBALSINDEX);
        const char *name = init->handler.ptr, *end = name + init->handler.len;
        while (name < end && lua_istable(L, -1)) {
            const char *dot = memchr(name, '.', (size_t)(end - name));
            size_t part = dot ? (size_t)(dot - name) : (size_t)(end - name);
            lua_pushlstring(L, name, part);
            lua_gettable(L, -2);
            lua_remove(L, -2);
            name += part + (dot ? 1 : 0);
            if (dot == NULL)
                break;
        }
        if (lua_isfunction(L, -1))
            break;
        lua_pop(L, 1);
        if (from == 1)
            lua_pushnil(L);
    }
    if (!lua_isfunction(L, -1))
        return luaL_error(L, "%s: handler '%s' is not a function (neither a global nor a field of the returned table)",
                          lua_tostring(L, 3) + 1, lua_tostring(L, 5));
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_call(L, 1, 1);
    w->invoke_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    w->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* ---- the process --------------------------------------------------------- */

static void send_ready(struct worker *w)
{
    struct bytebuf ready = {0};
    uint8_t status = w->handler_ref == LUA_NOREF ? WORKER_READY_LOAD_ERROR : WORKER_READY_LOADED;
    bytebuf_append(&ready, &status, 1);
    if (status == WORKER_READY_LOAD_ERROR)
        bytebuf_append(&ready, w->load_error, strlen(w->load_error));
    if (!worker_message_write(w->channel_fd, WORKER_MESSAGE_READY, ready.data, ready.len))
        _exit(0); /* the proxy is gone */
    bytebuf_free(&ready);
}

int worker_main(int channel_fd)
{
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_NAME, "verge-worker", 0, 0, 0); /* exec'd as /proc/self/exe: name it for ps and top */
    struct bytebuf init_payload = {0};
    uint32_t type;
    if (!worker_message_read(channel_fd, &type, &init_payload))
        _exit(0); /* closed before INIT: the proxy changed its mind */
    struct arena arena;
    arena_init(&arena);
    struct worker_init init;
    if (type != WORKER_MESSAGE_INIT || !worker_init_decode(init_payload.data, init_payload.len, &init, &arena)) {
        fprintf(stderr, "verge worker: the first message is not a valid INIT\n");
        _exit(2);
    }
    /* Both live until _exit: the Lua state points at them. */
    struct source_set sources = {0};
    struct worker w = {.channel_fd = channel_fd,
                       .handler_ref = LUA_NOREF,
                       .invoke_ref = LUA_NOREF,
                       .traceback_ref = LUA_NOREF,
                       .context_meta_ref = LUA_NOREF,
                       .init = &init,
                       .sources = &sources};
    w.memory_limit = (size_t)init.memory_limit_mb * 1024 * 1024;
    char *function_file = arena_strndup(&arena, init.function_file.ptr, init.function_file.len);
    bool sources_ok = sources_load(&sources, function_file, w.load_error, sizeof w.load_error);
    if (sources_ok && init.source.len > 0) {
        /* The code the config generation checked, not whatever the file holds now. */
        sources.function.code = arena_strndup(&arena, init.source.ptr, init.source.len);
        sources.function.len = init.source.len;
    }
    if (sources_ok && init.memory_limit_mb == 0)
        sources_ok = source_error(w.load_error, sizeof w.load_error, "%s: memory limit of 0 MB", function_file);
    tzset(); /* os.date: /etc/localtime cannot be opened later */

    worker_harden(channel_fd, init.memory_limit_mb);

    if (sources_ok) {
        w.L = lua_newstate(counting_alloc, &w);
        if (w.L == NULL) {
            snprintf(w.load_error, sizeof w.load_error, "%s: cannot create the Lua state", function_file);
        } else if (lua_cpcall(w.L, load_protected, &w) != 0) {
            const char *message = lua_tostring(w.L, -1);
            snprintf(w.load_error, sizeof w.load_error, "%s", message ? message : "cannot load function");
            w.handler_ref = LUA_NOREF;
        }
        if (w.L != NULL) {
            lua_settop(w.L, 0);
            lua_gc(w.L, LUA_GCCOLLECT, 0);
        }
        if (w.handler_ref != LUA_NOREF) {
            /* The stack between events (pushing existing values allocates nothing). */
            lua_rawgeti(w.L, LUA_REGISTRYINDEX, w.traceback_ref); /* STACK_TRACEBACK */
            lua_rawgeti(w.L, LUA_REGISTRYINDEX, w.invoke_ref);    /* STACK_INVOKE */
        }
    }
    send_ready(&w);

    /* The proxy may send several events at once (a fast function's events
     * are pipelined): each read takes what is there, the events run one
     * after the other, and their results go back in one write before the
     * next read blocks. */
    struct bytebuf input = {0};
    int exit_status = 0;
    for (;;) {
        bytebuf_reserve(&input, 64 * 1024);
        ssize_t n = read(channel_fd, input.data + input.len, 64 * 1024);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* closed: the proxy is done with us */
        input.len += (size_t)n;
        size_t offset = 0;
        while (input.len - offset >= 8 && exit_status == 0) {
            uint32_t header[2];
            memcpy(header, input.data + offset, sizeof header);
            if (header[1] > WORKER_MESSAGE_MAX) {
                exit_status = 2;
                break;
            }
            if (input.len - offset - 8 < header[1])
                break;
            struct worker_invocation invocation;
            if (header[0] != WORKER_MESSAGE_INVOKE || !invocation_decode(input.data + offset + 8, header[1], &invocation)) {
                exit_status = 2;
                break;
            }
            offset += 8 + (size_t)header[1];
            if (!worker_invoke(&w, &invocation))
                _exit(0);
        }
        bytebuf_consume(&input, offset);
        if (exit_status != 0 || !flush_frames(&w))
            break;
    }
    _exit(exit_status);
}

/* ---- test launcher ------------------------------------------------------- */

static bool wait_readable(int fd, uint64_t deadline_ms)
{
    for (;;) {
        uint64_t now = monotonic_ms();
        if (now >= deadline_ms)
            return false;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, (int)(deadline_ms - now));
        if (n > 0)
            return true;
        if (n < 0 && errno != EINTR)
            return false;
    }
}

bool worker_spawn(const struct worker_init *init, int timeout_ms, int *channel_fd, pid_t *pid, bool *loaded,
                  struct bytebuf *load_error)
{
    enum { worker_channel_fd = 3 }; /* where the proxy puts it for `verge worker` */
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        return false;
    pid_t child = fork();
    if (child < 0) {
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    if (child == 0) {
        if (fds[1] != worker_channel_fd && dup2(fds[1], worker_channel_fd) != worker_channel_fd)
            _exit(70);
        worker_main(worker_channel_fd);
    }
    close(fds[1]);
    uint64_t deadline = monotonic_ms() + (uint64_t)timeout_ms;
    struct bytebuf message = {0};
    worker_init_encode(init, &message);
    bool ok = worker_message_write(fds[0], WORKER_MESSAGE_INIT, message.data, message.len);
    uint32_t type;
    slice_t error;
    ok = ok && wait_readable(fds[0], deadline) && worker_message_read(fds[0], &type, &message) && type == WORKER_MESSAGE_READY &&
         worker_ready_decode(message.data, message.len, loaded, &error);
    if (ok) {
        load_error->len = 0;
        bytebuf_append_slice(load_error, error);
        bytebuf_append(load_error, "", 1);
        load_error->len--;
    }
    bytebuf_free(&message);
    if (!ok) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        close(fds[0]);
        return false;
    }
    *channel_fd = fds[0];
    *pid = child;
    return true;
}
