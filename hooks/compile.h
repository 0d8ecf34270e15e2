/* compile.h — checks an edge function's Lua file at config load: it must be
 * Lua text that LuaJIT compiles. Nothing is run, so this is safe to call from
 * the proxy's main thread on an untrusted file.
 */
#ifndef VERGE_HOOKS_COMPILE_H
#define VERGE_HOOKS_COMPILE_H

#include <stdbool.h>
#include <stddef.h>

/* Limits of one compile: the file's size and the Lua state's memory. */
#define HOOKS_COMPILE_MAX_BYTES (64u * 1024 * 1024)

/* Reads the file at `path` and compiles it as a Lua text chunk in a fresh
 * lua_State whose allocator refuses more than HOOKS_COMPILE_MAX_BYTES,
 * without running it. Returns true when it compiles; otherwise false with
 * one line in `error`: "<path>:<line>: <message>" for a syntax error (e.g.
 * "/srv/auth.lua:3: '=' expected near 'x'"), "<path>: <message>" when the
 * file cannot be read, is too large, is bytecode ("bytecode is not
 * accepted") or needs too much memory to compile. */
bool hooks_compile_function(const char *path, char *error, size_t error_size);
/* The same, and on success hands over the file's text (malloc'd, the
 * caller frees it): a config generation keeps the code it checked, so
 * workers it starts later run that code even if the file changed since. */
bool hooks_compile_function_source(const char *path, char **source, size_t *source_len, char *error, size_t error_size);

#endif
