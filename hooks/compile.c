/* compile.c — compiles an edge function's file at config load, so a syntax
 * error is a config error with its file:line instead of a failure at the
 * first request.
 *
 * Each call uses its own short-lived lua_State (no shared state, any thread
 * may call it) with a counting allocator capped at HOOKS_COMPILE_MAX_BYTES:
 * a pathological file fails with "not enough memory" instead of growing the
 * proxy. The chunk is only loaded (parsed to bytecode), never called, and
 * only text is accepted, like the worker does: bytecode can break out of the
 * VM.
 *
 * LuaJIT shortens chunk names in messages to about 60 bytes, so the chunk is
 * named by a short marker and the marker is replaced by the full path.
 */
#include "compile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

/* "=name" makes LuaJIT print "name:LINE: ..." (not "[string ...]"). */
#define CHUNK_MARKER "function"
#define CHUNK_NAME "=" CHUNK_MARKER

struct counted_memory {
    size_t used, limit;
};

/* lua_Alloc: growth past the limit fails; LuaJIT turns that into a memory
 * error returned by the load. */
static void *counting_alloc(void *user, void *ptr, size_t old_size, size_t new_size)
{
    struct counted_memory *memory = user;
    if (ptr == NULL)
        old_size = 0;
    if (new_size == 0) {
        free(ptr);
        memory->used -= old_size;
        return NULL;
    }
    if (new_size > old_size && memory->used - old_size + new_size > memory->limit)
        return NULL;
    void *p = realloc(ptr, new_size);
    if (p == NULL)
        return NULL;
    memory->used = memory->used - old_size + new_size;
    return p;
}

/* Reads the whole file into a malloc'ed buffer; NULL with `error` set. */
static char *read_whole_file(const char *path, size_t *len_out, char *error, size_t error_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(error, error_size, "%s: cannot read: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 0 || (unsigned long long)st.st_size > HOOKS_COMPILE_MAX_BYTES) {
        snprintf(error, error_size, "%s: %s", path, S_ISREG(st.st_mode) ? "larger than 64 MiB" : "not a regular file");
        close(fd);
        return NULL;
    }
    /* The size may change while reading: read until EOF, within the bound. */
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *data = malloc(cap);
    if (data == NULL) {
        snprintf(error, error_size, "%s: out of memory", path);
        close(fd);
        return NULL;
    }
    for (;;) {
        if (len == cap) {
            if (cap > HOOKS_COMPILE_MAX_BYTES) {
                snprintf(error, error_size, "%s: larger than 64 MiB", path);
                break;
            }
            char *bigger = realloc(data, cap * 2);
            if (bigger == NULL) {
                snprintf(error, error_size, "%s: out of memory", path);
                break;
            }
            data = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, data + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(error, error_size, "%s: cannot read: %s", path, strerror(errno));
            break;
        }
        if (n == 0) {
            close(fd);
            *len_out = len;
            return data;
        }
        len += (size_t)n;
    }
    close(fd);
    free(data);
    return NULL;
}

bool hooks_compile_function(const char *path, char *error, size_t error_size)
{
    return hooks_compile_function_source(path, NULL, NULL, error, error_size);
}

bool hooks_compile_function_source(const char *path, char **source, size_t *source_len, char *error, size_t error_size)
{
    size_t len = 0;
    char *code = read_whole_file(path, &len, error, error_size);
    if (code == NULL)
        return false;
    /* LUA_SIGNATURE starts with ESC; LuaJIT's own bytecode too ("\x1bLJ"). */
    if (len > 0 && code[0] == LUA_SIGNATURE[0]) {
        snprintf(error, error_size, "%s: bytecode is not accepted", path);
        free(code);
        return false;
    }
    struct counted_memory memory = {.limit = HOOKS_COMPILE_MAX_BYTES};
    lua_State *L = lua_newstate(counting_alloc, &memory);
    if (L == NULL) {
        snprintf(error, error_size, "%s: cannot create a Lua state to compile it", path);
        free(code);
        return false;
    }
    bool ok = luaL_loadbufferx(L, code, len, CHUNK_NAME, "t") == 0;
    if (!ok) {
        const char *message = lua_tostring(L, -1);
        if (message == NULL)
            message = "cannot compile";
        const size_t marker_len = strlen(CHUNK_MARKER);
        if (strncmp(message, CHUNK_MARKER ":", marker_len + 1) == 0)
            snprintf(error, error_size, "%s%s", path, message + marker_len); /* keeps ":LINE: ..." */
        else
            snprintf(error, error_size, "%s: %s", path, message);
        /* The message quotes source text ("near '...'"); keep it one line. */
        for (char *c = error; *c != '\0'; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                *c = ' ';
    }
    lua_close(L);
    if (ok && source != NULL) {
        *source = code;
        *source_len = len;
        return true;
    }
    free(code);
    return ok;
}
