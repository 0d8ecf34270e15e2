/* worker.c — the edge-function worker: a sandboxed LuaJIT state answering framed INVOKE messages.
 *
 * Single-threaded, one process per worker, one event at a time; the state stays
 * warm between events. Isolation layers here: a reduced Lua environment (no io,
 * ffi, debug, os.execute/exit/remove/rename/tmpname, package.loadlib, no bytecode
 * loading anywhere: load/loadstring accept text only, dofile/loadfile are gone,
 * require only finds text .lua modules next to the function file) and a counting
 * allocator that refuses growth past the memory limit, so a memory bomb becomes a
 * Lua "not enough memory" error, not a bigger process. Still to come with the
 * exec-based pool: rlimit, seccomp, dropping privileges. Endless loops are the
 * proxy's business (SIGKILL at the deadline): JIT code ignores debug hooks.
 *
 * Invariant: every Lua call that can raise (allocation included) runs under
 * lua_pcall/lua_cpcall, so an error never unwinds past worker_run's loop. JSON
 * decoding raises from inside yajl callbacks; the yajl handle is owned by the C
 * frame outside the protected call and freed there.
 */
#include "worker.h"

#include "event.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

static void append_string16(struct bytebuf *out, slice_t s)
{
    uint16_t len = s.len > UINT16_MAX ? UINT16_MAX : (uint16_t)s.len;
    bytebuf_append(out, &len, sizeof len);
    bytebuf_append(out, s.ptr, len);
}

void worker_invocation_encode(const struct worker_invocation *invocation, struct bytebuf *out)
{
    bytebuf_append(out, &invocation->remaining_ms, sizeof invocation->remaining_ms);
    append_string16(out, invocation->request_id);
    append_string16(out, invocation->function_name);
    append_string16(out, invocation->function_version);
    bytebuf_append_slice(out, invocation->event_json);
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
    if (len < sizeof out->remaining_ms)
        return false;
    memcpy(&out->remaining_ms, p, sizeof out->remaining_ms);
    p += sizeof out->remaining_ms;
    if (!take_string16(&p, end, &out->request_id) || !take_string16(&p, end, &out->function_name) ||
        !take_string16(&p, end, &out->function_version))
        return false;
    out->event_json = slice_make(p, (size_t)(end - p));
    return true;
}

bool worker_result_decode(const char *payload, size_t len, struct worker_result *out)
{
    if (len < 1 + sizeof out->peak_memory_bytes)
        return false;
    if (payload[0] != WORKER_RESULT_OK && payload[0] != WORKER_RESULT_ERROR)
        return false;
    out->status = (enum worker_result_status)payload[0];
    memcpy(&out->peak_memory_bytes, payload + 1, sizeof out->peak_memory_bytes);
    out->body = slice_make(payload + 1 + sizeof out->peak_memory_bytes, len - 1 - sizeof out->peak_memory_bytes);
    return true;
}

/* ---- the worker state ---------------------------------------------------- */

struct worker {
    lua_State *L;
    int channel_fd;
    size_t memory_used, memory_limit, memory_peak;
    int handler_ref;    /* LUA_NOREF when the function failed to load */
    int array_meta_ref; /* metatable marking decoded JSON arrays (so [] stays []) */
    char load_error[2048];
    const char *function_dir; /* for require */
    uint64_t deadline_ms;     /* monotonic */
};

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* lua_Alloc: counts live bytes; growth past the limit fails, which LuaJIT turns
 * into a "not enough memory" error in the running code. Shrinking never fails. */
static void *counting_alloc(void *user, void *ptr, size_t old_size, size_t new_size)
{
    struct worker *w = user;
    if (ptr == NULL)
        old_size = 0;
    if (new_size == 0) {
        free(ptr);
        w->memory_used -= old_size;
        return NULL;
    }
    if (new_size > old_size && w->memory_used - old_size + new_size > w->memory_limit)
        return NULL;
    void *p = realloc(ptr, new_size);
    if (p == NULL)
        return NULL;
    w->memory_used = w->memory_used - old_size + new_size;
    if (w->memory_used > w->memory_peak)
        w->memory_peak = w->memory_used;
    return p;
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
    if (!worker_message_write(worker_of(L)->channel_fd, WORKER_MESSAGE_LOG, line, len))
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

/* os.getenv sees only the function's env (none yet: the config wiring comes with the pool). */
static int sandbox_getenv(lua_State *L)
{
    luaL_checkstring(L, 1);
    lua_pushnil(L);
    return 1;
}

/* package.loaders entry: text .lua modules in the function's directory only. */
/* Pushes the whole contents of `f` as a Lua string and closes it. */
static void push_file_contents(lua_State *L, FILE *f)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        luaL_addlstring(&b, chunk, n);
    fclose(f);
    luaL_pushresult(&b);
}

static int sandbox_module_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    struct worker *w = worker_of(L);
    char path[4096];
    size_t used = (size_t)snprintf(path, sizeof path, "%s/", w->function_dir);
    for (const char *c = name; *c; c++) {
        char ch = *c;
        if (ch == '.')
            ch = '/';
        else if (!(ch == '_' || ch == '-' || (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))) {
            lua_pushfstring(L, "\n\tmodule name '%s' not allowed", name);
            return 1;
        }
        if (used + 5 >= sizeof path)
            return luaL_error(L, "module name too long");
        path[used++] = ch;
    }
    memcpy(path + used, ".lua", 5);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        lua_pushfstring(L, "\n\tno file '%s'", path);
        return 1;
    }
    push_file_contents(L, f);
    size_t len;
    const char *code = lua_tolstring(L, -1, &len);
    lua_pushfstring(L, "@%s", path);
    if (luaL_loadbufferx(L, code, len, lua_tostring(L, -1), "t") != 0)
        return lua_error(L);
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

/* Message handler: the error plus a traceback. A non-string error value is described. */
static int traceback_handler(lua_State *L)
{
    const char *message = lua_tostring(L, 1);
    if (message == NULL)
        message = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, message, 1);
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

struct invoke_call {
    struct worker *worker;
    const struct worker_invocation *invocation;
    bool function_failed; /* the handler raised: message is its error + traceback */
    struct bytebuf *out;  /* result JSON, or the error text */
};

static void push_slice(lua_State *L, slice_t s)
{
    lua_pushlstring(L, s.ptr, s.len);
}

/* Runs under lua_cpcall: decode, call the handler, encode. */
static int invoke_protected(lua_State *L)
{
    struct invoke_call *call = lua_touserdata(L, 1);
    struct worker *w = call->worker;
    const struct worker_invocation *inv = call->invocation;
    lua_settop(L, 0);
    lua_pushcfunction(L, traceback_handler);           /* 1 */
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->handler_ref); /* 2 */
    json_decode(L, inv->event_json);                   /* 3 */
    lua_createtable(L, 0, 6);                          /* 4: context */
    push_slice(L, inv->request_id);
    lua_setfield(L, -2, "awsRequestId");
    push_slice(L, inv->function_name);
    lua_setfield(L, -2, "functionName");
    push_slice(L, inv->function_version);
    lua_setfield(L, -2, "functionVersion");
    lua_pushfstring(L, "%d", (int)(w->memory_limit / (1024 * 1024)));
    lua_setfield(L, -2, "memoryLimitInMB");
    lua_pushcfunction(L, context_remaining_time);
    lua_setfield(L, -2, "getRemainingTimeInMillis");
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

/* Returns false when the RESULT could not be written (the channel is gone). */
static bool worker_invoke(struct worker *w, const struct worker_invocation *invocation, struct bytebuf *out)
{
    struct bytebuf body = {0};
    uint8_t status = WORKER_RESULT_OK;
    w->deadline_ms = monotonic_ms() + invocation->remaining_ms;
    w->memory_peak = w->memory_used;
    if (w->handler_ref == LUA_NOREF) {
        status = WORKER_RESULT_ERROR;
        bytebuf_append(&body, w->load_error, strlen(w->load_error));
    } else {
        struct invoke_call call = {.worker = w, .invocation = invocation, .out = &body};
        if (lua_cpcall(w->L, invoke_protected, &call) != 0) {
            /* Decode/encode failure or memory exhaustion outside the handler's own pcall. */
            status = WORKER_RESULT_ERROR;
            body.len = 0;
            const char *message = lua_tostring(w->L, -1);
            if (message == NULL)
                message = "worker error";
            bytebuf_append(&body, message, strlen(message));
        } else if (call.function_failed) {
            status = WORKER_RESULT_ERROR;
        }
        lua_settop(w->L, 0);
        /* Garbage of this event (e.g. a memory bomb's tables) must not count against the next. */
        lua_gc(w->L, LUA_GCCOLLECT, 0);
    }
    uint64_t peak = w->memory_peak;
    out->len = 0;
    bytebuf_append(out, &status, 1);
    bytebuf_append(out, &peak, sizeof peak);
    bytebuf_append(out, body.data, body.len);
    bytebuf_free(&body);
    return worker_message_write(w->channel_fd, WORKER_MESSAGE_RESULT, out->data, out->len);
}

/* ---- loading the function ------------------------------------------------ */

struct load_call {
    struct worker *worker;
    const char *file;
    const char *handler;
};

/* Runs under lua_cpcall. Errors raised here become the worker's load error. */
static int load_protected(lua_State *L)
{
    struct load_call *call = lua_touserdata(L, 1);
    struct worker *w = call->worker;
    lua_settop(L, 0);
    sandbox_open(L);
    /* The decoded-array metatable, keyed by an address only this file knows. */
    lua_pushlightuserdata(L, (void *)&counting_alloc);
    lua_newtable(L);
    lua_rawset(L, LUA_REGISTRYINDEX);

    lua_pushcfunction(L, traceback_handler);
    lua_pushfstring(L, "@%s", call->file);
    FILE *f = fopen(call->file, "rb");
    if (f == NULL)
        return luaL_error(L, "cannot open %s: %s", call->file, strerror(errno));
    push_file_contents(L, f);
    size_t len;
    const char *code = lua_tolstring(L, -1, &len);
    if (luaL_loadbufferx(L, code, len, lua_tostring(L, 2), "t") != 0)
        return lua_error(L);
    if (lua_pcall(L, 0, 1, 1) != 0)
        return lua_error(L);
    if (lua_istable(L, -1))
        lua_getfield(L, -1, call->handler);
    else
        lua_pushnil(L);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        lua_getglobal(L, call->handler);
    }
    if (!lua_isfunction(L, -1))
        return luaL_error(L, "%s: handler '%s' is not a function (neither a global nor a field of the returned table)", call->file,
                          call->handler);
    w->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static void file_directory(const char *file, char *out, size_t size)
{
    const char *slash = strrchr(file, '/');
    if (slash == NULL)
        snprintf(out, size, ".");
    else
        snprintf(out, size, "%.*s", (int)(slash - file), file);
}

int worker_run(int channel_fd, const struct worker_options *options)
{
    struct worker w = {.channel_fd = channel_fd, .memory_limit = options->memory_limit_bytes, .handler_ref = LUA_NOREF};
    char directory[4096];
    file_directory(options->function_file, directory, sizeof directory);
    w.function_dir = directory;
    w.L = lua_newstate(counting_alloc, &w);
    if (w.L == NULL)
        return 3;
    struct load_call load = {.worker = &w, .file = options->function_file, .handler = options->handler};
    if (lua_cpcall(w.L, load_protected, &load) != 0) {
        const char *message = lua_tostring(w.L, -1);
        snprintf(w.load_error, sizeof w.load_error, "%s", message ? message : "cannot load function");
        w.handler_ref = LUA_NOREF;
    }
    lua_settop(w.L, 0);
    lua_gc(w.L, LUA_GCCOLLECT, 0);

    struct bytebuf message = {0}, out = {0};
    int exit_status = 0;
    for (;;) {
        uint32_t type;
        if (!worker_message_read(channel_fd, &type, &message))
            break; /* closed: the proxy is done with us */
        if (type != WORKER_MESSAGE_INVOKE) {
            exit_status = 2;
            break;
        }
        struct worker_invocation invocation;
        if (!invocation_decode(message.data, message.len, &invocation)) {
            exit_status = 2;
            break;
        }
        if (!worker_invoke(&w, &invocation, &out))
            break;
    }
    bytebuf_free(&message);
    bytebuf_free(&out);
    lua_close(w.L);
    return exit_status;
}

/* ---- test launcher ------------------------------------------------------- */

bool worker_spawn(const char *function_file, const char *handler, size_t memory_limit_bytes, int *channel_fd, pid_t *pid)
{
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
        /* Keep only the channel and stderr (diagnostics until the exec-based pool decides). */
        unsigned keep_low = fds[1] < 2 ? (unsigned)fds[1] : 2, keep_high = fds[1] < 2 ? 2 : (unsigned)fds[1];
        if (keep_low > 0)
            close_range(0, keep_low - 1, 0);
        if (keep_high > keep_low + 1)
            close_range(keep_low + 1, keep_high - 1, 0);
        close_range(keep_high + 1, ~0u, 0);
        signal(SIGPIPE, SIG_IGN);
        struct worker_options options = {function_file, handler, memory_limit_bytes};
        _exit(worker_run(fds[1], &options));
    }
    close(fds[1]);
    *channel_fd = fds[0];
    *pid = child;
    return true;
}
