/* dev_watch.h — `verge dev`'s watch on the files a config generation is made
 * of: the config file and, for each edge function, every Lua file below the
 * function file's directory (the modules `require` can load, which workers
 * read from there).
 */
#ifndef VERGE_DEV_WATCH_H
#define VERGE_DEV_WATCH_H

#include <ev.h>
#include <stdbool.h>

#include "../conf/config.h"

struct dev_watch;

/* Called on the loop once the watched files have been quiet for the debounce
 * time after a change, with the paths that changed (the first
 * DEV_WATCH_CHANGES_MAX; deleted ones included), valid during the call. */
#define DEV_WATCH_CHANGES_MAX 16
typedef void (*dev_watch_callback)(void *context, const char *const *changed, size_t count);

/* Watches `config_path` and the Lua files of `config`'s functions with
 * inotify on `loop` (the main thread's). Changes to editor swap and backup
 * files (".x.swp", "x~", "#x#", ".#x", vim's "4913") are ignored, and a file is
 * taken as changed when it is closed after writing or moved into place, not
 * while it is being written. Returns NULL with a message in `error` when
 * inotify is unavailable. */
struct dev_watch *dev_watch_start(struct ev_loop *loop, const char *config_path, const struct config *config, int debounce_ms,
                                  dev_watch_callback callback, void *context, char *error, size_t error_size);
/* Watches the directories of `config` (a new generation may have moved or
 * added functions); directories no longer needed stay watched (harmless). */
void dev_watch_update(struct dev_watch *watch, const struct config *config);
/* How many directories are watched. */
size_t dev_watch_directory_count(const struct dev_watch *watch);
/* Whether a changed file named `name` (no directory) in a watched directory
 * matters: the config file's own name there, or a Lua file in a function's
 * tree, and not an editor's swap or backup file. Pure. */
bool dev_watch_name_matters(const char *name, bool in_config_directory, const char *config_name, bool in_function_tree);
void dev_watch_stop(struct dev_watch *watch);

#endif
