/* dev_watch.c — the file watch behind `verge dev`'s hot reload.
 *
 * One inotify descriptor on the main loop watches directories, not files:
 * editors replace files (write a temporary, rename it over the original), and
 * a watch on the old inode would go quiet after the first save. The watched
 * directories are the config file's and every directory of each function's
 * tree (the function file's directory and those below it, as deep as workers
 * look for modules), new subdirectories of a tree included as they appear.
 *
 * A change counts when a file is closed after writing, moved into place or
 * deleted — never on each write, so a half-written file does not start a
 * reload — and only for the names that make a generation (the config file,
 * Lua files in a function tree), never for editor swap and backup files. The
 * callback runs once the directory has been quiet for the debounce time, so a
 * save that touches several files (or an editor's write-rename-delete dance)
 * is one reload.
 *
 * Invariants: directories[i].descriptor is unique; flags only grow (a
 * directory that stops mattering stays watched, which costs nothing).
 * Locking: none; the main thread's loop owns the watch.
 */
#include "dev_watch.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"

#define WATCH_DIRECTORIES_MAX 512
#define WATCH_TREE_DEPTH_MAX 8

struct watched_directory {
    int descriptor;
    char *path;
    bool config_directory; /* holds the config file */
    bool function_tree;    /* in a function's tree: its Lua files matter */
};

struct dev_watch {
    struct ev_loop *loop;
    int fd;
    ev_io readable;
    ev_timer quiet;
    double debounce_s;
    char *config_directory;
    char *config_name;
    struct watched_directory *directories;
    size_t directory_count;
    dev_watch_callback callback;
    void *context;
    char changed[DEV_WATCH_CHANGES_MAX][PATH_MAX]; /* the files that changed since the last callback */
    size_t changed_count;
    bool warned_full;
};

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), m = strlen(suffix);
    return n >= m && strcmp(name + n - m, suffix) == 0;
}

bool dev_watch_name_matters(const char *name, bool in_config_directory, const char *config_name, bool in_function_tree)
{
    size_t len = strlen(name);
    if (len == 0 || name[0] == '.' || name[len - 1] == '~' || (name[0] == '#' && name[len - 1] == '#') ||
        strcmp(name, "4913") == 0 || has_suffix(name, ".swp") || has_suffix(name, ".swx") || has_suffix(name, ".tmp"))
        return false;
    if (in_config_directory && strcmp(name, config_name) == 0)
        return true;
    return in_function_tree && has_suffix(name, ".lua");
}

static struct watched_directory *directory_by_descriptor(struct dev_watch *watch, int descriptor)
{
    for (size_t i = 0; i < watch->directory_count; i++)
        if (watch->directories[i].descriptor == descriptor)
            return &watch->directories[i];
    return NULL;
}

/* Adds (or marks) a watch on `path`; false when it cannot be watched. */
static bool watch_directory(struct dev_watch *watch, const char *path, bool config_directory, bool function_tree)
{
    int descriptor =
        inotify_add_watch(watch->fd, path, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_ONLYDIR);
    if (descriptor < 0) {
        log_warn("verge dev: cannot watch %s: %s", path, strerror(errno));
        return false;
    }
    struct watched_directory *known = directory_by_descriptor(watch, descriptor);
    if (known == NULL) {
        if (watch->directory_count == WATCH_DIRECTORIES_MAX) {
            inotify_rm_watch(watch->fd, descriptor);
            if (!watch->warned_full)
                log_warn("verge dev: watching the first %d directories only", WATCH_DIRECTORIES_MAX);
            watch->warned_full = true;
            return false;
        }
        known = &watch->directories[watch->directory_count++];
        *known = (struct watched_directory){.descriptor = descriptor, .path = strdup(path)};
        VERGE_ASSERT(known->path != NULL);
    }
    known->config_directory |= config_directory;
    known->function_tree |= function_tree;
    return true;
}

/* A function's tree: its directory and the directories below it (hidden
 * ones skipped, as the worker skips them). */
static void watch_tree(struct dev_watch *watch, const char *path, int depth)
{
    if (!watch_directory(watch, path, false, true) || depth >= WATCH_TREE_DEPTH_MAX)
        return;
    DIR *dir = opendir(path);
    if (dir == NULL)
        return;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        char child[PATH_MAX];
        if (snprintf(child, sizeof child, "%s/%s", path, entry->d_name) >= (int)sizeof child)
            continue;
        struct stat st;
        if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode))
            watch_tree(watch, child, depth + 1);
    }
    closedir(dir);
}

void dev_watch_update(struct dev_watch *watch, const struct config *config)
{
    for (size_t i = 0; i < config->function_count; i++) {
        char *directory = strdup(config->functions[i].code_path);
        VERGE_ASSERT(directory != NULL);
        char *slash = strrchr(directory, '/');
        if (slash != NULL && slash != directory)
            *slash = '\0';
        watch_tree(watch, directory, 0);
        free(directory);
    }
}

size_t dev_watch_directory_count(const struct dev_watch *watch)
{
    return watch->directory_count;
}

static void on_quiet(struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void)loop, (void)revents;
    struct dev_watch *watch = timer->data;
    ev_timer_stop(loop, timer);
    const char *changed[DEV_WATCH_CHANGES_MAX];
    for (size_t i = 0; i < watch->changed_count; i++)
        changed[i] = watch->changed[i];
    size_t count = watch->changed_count;
    watch->changed_count = 0;
    /* The strings stay until the next change is read, after the callback. */
    watch->callback(watch->context, changed, count);
}

static void on_readable(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct dev_watch *watch = io->data;
    char buffer[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(watch->fd, buffer, sizeof buffer);
        if (n <= 0)
            return; /* EAGAIN: read everything */
        for (char *p = buffer; p < buffer + n;) {
            const struct inotify_event *event = (const struct inotify_event *)p;
            p += sizeof *event + event->len;
            struct watched_directory *directory = directory_by_descriptor(watch, event->wd);
            if (directory == NULL || event->len == 0)
                continue;
            char path[PATH_MAX];
            if (snprintf(path, sizeof path, "%s/%s", directory->path, event->name) >= (int)sizeof path)
                continue;
            if (event->mask & IN_ISDIR) {
                /* A new directory in a function's tree may hold modules. */
                if (directory->function_tree && (event->mask & (IN_CREATE | IN_MOVED_TO)) && event->name[0] != '.')
                    watch_tree(watch, path, 1);
                continue;
            }
            if (event->mask & IN_CREATE)
                continue; /* a new file is being written: its close comes */
            if (!dev_watch_name_matters(event->name, directory->config_directory, watch->config_name, directory->function_tree))
                continue;
            bool known = false;
            for (size_t i = 0; i < watch->changed_count && !known; i++)
                known = strcmp(watch->changed[i], path) == 0;
            if (!known && watch->changed_count < DEV_WATCH_CHANGES_MAX)
                snprintf(watch->changed[watch->changed_count++], PATH_MAX, "%s", path);
            watch->quiet.repeat = watch->debounce_s;
            ev_timer_again(loop, &watch->quiet);
        }
    }
}

struct dev_watch *dev_watch_start(struct ev_loop *loop, const char *config_path, const struct config *config, int debounce_ms,
                                  dev_watch_callback callback, void *context, char *error, size_t error_size)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
        snprintf(error, error_size, "cannot watch files: inotify: %s", strerror(errno));
        return NULL;
    }
    struct dev_watch *watch = calloc(1, sizeof *watch);
    VERGE_ASSERT(watch != NULL);
    watch->directories = calloc(WATCH_DIRECTORIES_MAX, sizeof *watch->directories);
    VERGE_ASSERT(watch->directories != NULL);
    watch->loop = loop;
    watch->fd = fd;
    watch->debounce_s = debounce_ms / 1000.0;
    watch->callback = callback;
    watch->context = context;
    char *absolute = realpath(config_path, NULL);
    const char *resolved = absolute != NULL ? absolute : config_path;
    const char *slash = strrchr(resolved, '/');
    watch->config_name = strdup(slash != NULL ? slash + 1 : resolved);
    watch->config_directory = slash == NULL       ? strdup(".")
                              : slash == resolved ? strdup("/")
                                                  : strndup(resolved, (size_t)(slash - resolved));
    VERGE_ASSERT(watch->config_name != NULL && watch->config_directory != NULL);
    free(absolute);
    if (!watch_directory(watch, watch->config_directory, true, false)) {
        snprintf(error, error_size, "cannot watch %s", watch->config_directory);
        dev_watch_stop(watch);
        return NULL;
    }
    dev_watch_update(watch, config);
    ev_io_init(&watch->readable, on_readable, fd, EV_READ);
    watch->readable.data = watch;
    ev_io_start(loop, &watch->readable);
    ev_init(&watch->quiet, on_quiet);
    watch->quiet.data = watch;
    return watch;
}

void dev_watch_stop(struct dev_watch *watch)
{
    if (watch == NULL)
        return;
    if (watch->loop != NULL) {
        ev_io_stop(watch->loop, &watch->readable);
        ev_timer_stop(watch->loop, &watch->quiet);
    }
    close(watch->fd);
    for (size_t i = 0; i < watch->directory_count; i++)
        free(watch->directories[i].path);
    free(watch->directories);
    free(watch->config_name);
    free(watch->config_directory);
    free(watch);
}
