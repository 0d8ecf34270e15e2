/* main.c — verge's entry point: the command line, start-up, the event-loop
 * threads, config generations (reload) and the drain on SIGTERM.
 *
 * Threads: the main thread runs the default libev loop with the signal
 * watchers and the admin listener; N loop threads each run their own loop with
 * their own SO_REUSEPORT listener sockets and connections. Signals are blocked
 * in loop threads so they always reach the main thread.
 *
 * Generations: server.generation is the current one, swapped under
 * server.generation_lock by server_reload (main thread only). Loop threads
 * notice a new generation through server.generation_number and take a ref;
 * each request holds its own ref until it ends.
 *
 * Drain: SIGTERM/SIGINT set server.draining and wake every loop thread, which
 * closes its listeners and idle connections; the thread's loop ends when its
 * last connection is gone. After timeouts.drain_ms the main thread forces the
 * rest closed. Exit status 0 either way.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../cache/store.h"
#include "../hooks/compile.h"
#include "../hooks/pool.h"
#include "../hooks/worker.h"
#include "access_log.h"
#include "admin.h"
#include "commands.h"
#include "dev_watch.h"
#include "request.h"
#include "server.h"
#include "tls.h"

#define VERGE_VERSION "0.1.0"
/* verge dev reloads once the watched files were quiet this long after a change. */
#define DEV_RELOAD_DEBOUNCE_MS 100

struct server server;

static struct ev_loop *main_loop;
static ev_async threads_finished_async;
static atomic_int threads_running;
static atomic_bool force_close;
static ev_timer drain_deadline;
static struct dev_watch *dev_watch;

/* Under verge dev, stdout carries the request traces, which hold what the
 * access and function logs would print there (a file still gets them). */
static const char *log_destination(const char *path)
{
    return config_dev_mode && path != NULL && strcmp(path, "-") == 0 ? NULL : path;
}

/* ---- generations --------------------------------------------------------- */

static struct generation *generation_create(struct config *config, unsigned number)
{
    struct generation *generation = calloc(1, sizeof *generation);
    VERGE_ASSERT(generation != NULL);
    generation->config = config;
    generation->number = number;
    config->generation = number;
    atomic_init(&generation->refcount, 1);
    generation->origin_metrics = calloc(config->origin_count ? config->origin_count : 1, sizeof *generation->origin_metrics);
    VERGE_ASSERT(generation->origin_metrics != NULL);
    for (size_t i = 0; i < config->origin_count; i++)
        generation->origin_metrics[i] = metrics_origin(config->origins[i].name);
    return generation;
}

void generation_ref(struct generation *generation)
{
    atomic_fetch_add_explicit(&generation->refcount, 1, memory_order_relaxed);
}

void generation_unref(struct generation *generation)
{
    if (atomic_fetch_sub_explicit(&generation->refcount, 1, memory_order_acq_rel) != 1)
        return;
    config_unref(generation->config);
    free(generation->origin_metrics);
    free(generation);
}

struct generation *server_acquire_generation(void)
{
    pthread_mutex_lock(&server.generation_lock);
    struct generation *generation = server.generation;
    generation_ref(generation);
    pthread_mutex_unlock(&server.generation_lock);
    return generation;
}

void loop_thread_refresh_generation(struct loop_thread *thread)
{
    if (thread->generation != NULL &&
        thread->generation->number == atomic_load_explicit(&server.generation_number, memory_order_acquire))
        return;
    struct generation *fresh = server_acquire_generation();
    if (thread->generation != NULL)
        generation_unref(thread->generation);
    thread->generation = fresh;
    /* Function workers of older generations finish their events and go. */
    hooks_pools_retire(thread->hooks, fresh->config);
}

static void print_config_errors(const char *prefix, const struct config_errors *errors)
{
    for (size_t i = 0; i < errors->count; i++) {
        if (prefix != NULL)
            log_error("%s%s", prefix, errors->messages[i]);
        else
            fprintf(stderr, "%s\n", errors->messages[i]);
    }
}

/* Said at every start and reload, so it cannot be forgotten in a config that ships. */
static void warn_unverified_origins(const struct config *config)
{
    for (size_t i = 0; i < config->origin_count; i++)
        if (config->origins[i].tls && !config->origins[i].tls_verify)
            log_warn("origins.%s.tls_verify is false: %s's certificate is not checked (for local testing only)",
                     config->origins[i].name, config->origins[i].url);
}

int server_reload(struct config_errors *errors, unsigned *generation_number)
{
    struct config *config = config_load(server.config_path, errors);
    unsigned current = atomic_load(&server.generation_number);
    if (config == NULL) {
        char prefix[96];
        snprintf(prefix, sizeof prefix, "config reload failed, keeping generation %u: ", current);
        if (!config_dev_mode) /* verge dev prints them its own way */
            print_config_errors(prefix, errors);
        atomic_fetch_add(&metrics.reloads_failed, 1);
        return -1;
    }
    warn_unverified_origins(config);
    const struct config *old = server.generation->config;
    bool listen_changed = config->listen_count != old->listen_count;
    for (size_t i = 0; !listen_changed && i < config->listen_count; i++)
        listen_changed = strcmp(config->listen[i].address.text, old->listen[i].address.text) != 0 ||
                         (config->listen[i].tls.server != NULL) != (old->listen[i].tls.server != NULL);
    if (listen_changed)
        log_warn("config reload: listen addresses (or which of them have TLS) changed; this takes effect at the next restart");
    if (config->threads != old->threads)
        log_warn("config reload: threads changed from %d to %d; this takes effect at the next restart", old->threads,
                 config->threads);
    char error[256];
    if (access_log_configure(log_destination(config->access_log.path), error, sizeof error) != 0)
        log_error("config reload: access log: %s (keeping the previous destination)", error);
    if (function_log_configure(log_destination(config->function_log.path), error, sizeof error) != 0)
        log_error("config reload: function log: %s (keeping the previous destination)", error);
    /* The cache survives: only its limits follow the new generation. */
    cache_store_configure(config->cache.memory_bytes, config->cache.max_object_bytes,
                          config->cache.eviction == 1 ? CACHE_EVICTION_LRU : CACHE_EVICTION_SIEVE);
    struct generation *fresh = generation_create(config, current + 1);
    pthread_mutex_lock(&server.generation_lock);
    struct generation *previous = server.generation;
    server.generation = fresh;
    atomic_store_explicit(&server.generation_number, fresh->number, memory_order_release);
    pthread_mutex_unlock(&server.generation_lock);
    generation_unref(previous);
    atomic_store(&metrics.config_generation, fresh->number);
    atomic_fetch_add(&metrics.reloads_ok, 1);
    if (fresh->config->admin.enabled)
        admin_listener_update(fresh->config);
    if (!config_dev_mode) /* verge dev says "reloaded in N ms" instead */
        log_info("config generation %u loaded from %s", fresh->number, server.config_path);
    for (size_t i = 0; i < server.thread_count; i++)
        ev_async_send(server.threads[i].loop, &server.threads[i].wakeup);
    *generation_number = fresh->number;
    return 0;
}

/* ---- listeners ----------------------------------------------------------- */

static int open_listener(const struct config_address *address)
{
    int fd = socket(address->sockaddr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&address->sockaddr, address->sockaddr_len) != 0 || listen(fd, 4096) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static void loop_thread_close_listeners(struct loop_thread *thread)
{
    for (size_t i = 0; i < thread->listener_count; i++) {
        if (thread->listeners[i].fd < 0)
            continue;
        ev_io_stop(thread->loop, &thread->listeners[i].watcher);
        close(thread->listeners[i].fd);
        thread->listeners[i].fd = -1;
        tls_server_unref(thread->listeners[i].tls);
        thread->listeners[i].tls = NULL;
    }
}

/* ---- loop threads -------------------------------------------------------- */

static void loop_thread_on_wakeup(struct ev_loop *loop, ev_async *watcher, int revents)
{
    struct loop_thread *thread = watcher->data;
    /* A reload: take the new generation now (old function workers go even
     * when no request comes). */
    unsigned before = thread->generation != NULL ? thread->generation->number : 0;
    loop_thread_refresh_generation(thread);
    if (!atomic_load(&server.draining)) {
        if (thread->generation->number != before)
            viewer_reload_thread(thread);
        return;
    }
    loop_thread_close_listeners(thread);
    origin_pools_close_idle(thread);
    if (atomic_load(&force_close))
        viewer_close_all(thread);
    else
        viewer_drain_thread(thread);
    if (thread->connection_count == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void *loop_thread_main(void *argument)
{
    struct loop_thread *thread = argument;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    ev_run(thread->loop, 0);
    viewer_close_all(thread);
    hooks_pools_destroy(thread->hooks);
    thread->hooks = NULL;
    request_cache_thread_destroy(thread);
    request_hooks_thread_destroy(thread);
    origin_pools_destroy(thread);
    atomic_fetch_sub(&threads_running, 1);
    ev_async_send(main_loop, &threads_finished_async);
    return NULL;
}

static int loop_thread_setup(struct loop_thread *thread, unsigned index, const struct config *config)
{
    thread->index = index;
    thread->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    if (thread->loop == NULL) {
        log_error("cannot create an event loop");
        return -1;
    }
    ev_async_init(&thread->wakeup, loop_thread_on_wakeup);
    thread->wakeup.data = thread;
    ev_async_start(thread->loop, &thread->wakeup);
    request_cache_thread_init(thread);
    thread->hooks = hooks_pools_create(thread->loop);
    thread->listener_count = config->listen_count;
    thread->listeners = calloc(config->listen_count, sizeof *thread->listeners);
    VERGE_ASSERT(thread->listeners != NULL);
    for (size_t i = 0; i < config->listen_count; i++) {
        struct listener *listener = &thread->listeners[i];
        listener->fd = -1;
        int fd = open_listener(&config->listen[i].address);
        if (fd < 0) {
            log_error("listen[%zu].address: cannot listen on %s: %s", i, config->listen[i].address.text, strerror(errno));
            return -1;
        }
        listener->fd = fd;
        listener->thread = thread;
        snprintf(listener->address, sizeof listener->address, "%s", config->listen[i].address.text);
        listener->tls = config->listen[i].tls.server;
        listener->h2c = config->listen[i].h2c;
        if (listener->tls != NULL)
            tls_server_ref(listener->tls);
        ev_io_init(&listener->watcher, viewer_accept, fd, EV_READ);
        listener->watcher.data = listener;
        ev_io_start(thread->loop, &listener->watcher);
    }
    thread->generation = server_acquire_generation();
    return 0;
}

/* ---- signals and drain --------------------------------------------------- */

static void on_sighup(struct ev_loop *loop, ev_signal *watcher, int revents)
{
    struct config_errors errors = {0};
    unsigned number;
    log_info("SIGHUP: reloading %s", server.config_path);
    server_reload(&errors, &number);
    config_errors_free(&errors);
}

static void on_drain_deadline(struct ev_loop *loop, ev_timer *timer, int revents)
{
    log_warn("drain deadline reached; closing the remaining connections");
    atomic_store(&force_close, true);
    for (size_t i = 0; i < server.thread_count; i++)
        ev_async_send(server.threads[i].loop, &server.threads[i].wakeup);
}

static void on_sigterm(struct ev_loop *loop, ev_signal *watcher, int revents)
{
    if (atomic_exchange(&server.draining, true)) {
        log_warn("second stop signal: closing everything now");
        on_drain_deadline(loop, NULL, 0);
        return;
    }
    int drain_ms = server.generation->config->timeouts.drain_ms;
    log_info("%s: draining (up to %d ms)", watcher->signum == SIGINT ? "SIGINT" : "SIGTERM", drain_ms);
    for (size_t i = 0; i < server.thread_count; i++)
        ev_async_send(server.threads[i].loop, &server.threads[i].wakeup);
    ev_timer_init(&drain_deadline, on_drain_deadline, drain_ms / 1000.0, 0.);
    ev_timer_start(loop, &drain_deadline);
}

static void on_threads_finished(struct ev_loop *loop, ev_async *watcher, int revents)
{
    if (atomic_load(&threads_running) == 0)
        ev_break(loop, EVBREAK_ALL);
}

/* ---- verge dev ------------------------------------------------------------- */

/* The config file's text, to find the lines of errors (NULL when it cannot
 * be read; at most 4 MiB, the config load's own limit). */
static char *read_small_file(const char *path, size_t *len)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL)
        return NULL;
    struct bytebuf text = {0};
    bytebuf_read_file(&text, file, 4u << 20);
    fclose(file);
    *len = text.len;
    return text.data;
}

/* A config error as editors link it: "FILE:LINE:COLUMN: ..." for a JSON
 * syntax error (config_load says "line L, column C: ..."), "FILE:LINE: ..."
 * for the others, which start with their key's JSON path (a function's
 * compile error carries its own "file.lua:LINE:" after that). */
static void print_dev_error(const char *config_path, slice_t config_text, const char *message)
{
    unsigned long line = 0, column = 0;
    int consumed = 0;
    if (sscanf(message, "line %lu, column %lu: %n", &line, &column, &consumed) == 2 && consumed > 0) {
        fprintf(stderr, "  %s:%lu:%lu: %s\n", config_path, line, column, message + consumed);
        return;
    }
    size_t path_len = strspn(message, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.[]*");
    if (path_len > 0 && path_len < 256 && message[path_len] == ':' && config_text.len > 0) {
        char json_path[256];
        memcpy(json_path, message, path_len);
        json_path[path_len] = '\0';
        line = config_locate_line(config_text.ptr, config_text.len, json_path);
    }
    if (line > 0)
        fprintf(stderr, "  %s:%lu: %s\n", config_path, line, message);
    else
        fprintf(stderr, "  %s: %s\n", config_path, message);
}

/* The Lua files among `changed` that exist and do not compile: a module
 * is no part of a config load, but a worker that requires a broken one
 * fails the events that need it, so verge dev says so before reloading. */
static bool changed_lua_compiles(const char *const *changed, size_t count, char *error, size_t error_size)
{
    for (size_t i = 0; i < count; i++) {
        size_t len = strlen(changed[i]);
        if (len < 4 || strcmp(changed[i] + len - 4, ".lua") != 0 || access(changed[i], F_OK) != 0)
            continue;
        if (!hooks_compile_function(changed[i], error, error_size))
            return false;
    }
    return true;
}

static void on_dev_change(void *context, const char *const *changed, size_t count)
{
    (void)context;
    uint64_t started = time_now_monotonic_us();
    unsigned current = atomic_load(&server.generation_number);
    char what[PATH_MAX + 32];
    snprintf(what, sizeof what, "%s%s", count > 0 ? changed[0] : "a file", count > 1 ? " (and others)" : "");
    char error[1024];
    if (!changed_lua_compiles(changed, count, error, sizeof error)) {
        fprintf(stderr, "verge dev: %s changed; reload failed, generation %u keeps serving:\n  %s\n", what, current, error);
        return;
    }
    struct config_errors errors = {0};
    unsigned number = 0;
    if (server_reload(&errors, &number) != 0) {
        fprintf(stderr, "verge dev: %s changed; reload failed, generation %u keeps serving:\n", what, current);
        size_t text_len = 0;
        char *text = read_small_file(server.config_path, &text_len);
        for (size_t i = 0; i < errors.count; i++)
            print_dev_error(server.config_path, (slice_t){text, text != NULL ? text_len : 0}, errors.messages[i]);
        free(text);
    } else {
        dev_watch_update(dev_watch, server.generation->config);
        fprintf(stderr, "verge dev: %s changed; reloaded in %.1f ms (generation %u)\n", what,
                (double)(time_now_monotonic_us() - started) / 1000.0, number);
    }
    config_errors_free(&errors);
}

/* ---- commands ------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out, "usage: verge -c FILE            serve with the config FILE\n"
                 "       verge dev -c FILE        serve FILE for local work: reload on changes to it and to the\n"
                 "                                functions' Lua files, print a trace of every request, X-Verge-Trace\n"
                 "       verge check -c FILE      validate FILE, print the problems, exit 0 (valid) or 1\n"
                 "       verge config-reference   print the config reference (Markdown)\n"
                 "       verge event TRIGGER --url URL [-H 'Name: value']... [--method M] [--body TEXT|@FILE]\n"
                 "                  [--client-ip IP] [--status N] [--response-header 'Name: value']...\n"
                 "                                print a Lambda@Edge event for TRIGGER, as verge builds it\n"
                 "       verge invoke FILE.lua --event FILE|- [--trigger TRIGGER] [--json]\n"
                 "       verge invoke -c FILE --function NAME --event FILE|- [--trigger TRIGGER] [--json]\n"
                 "                                run a function once on an event in a real worker and judge its\n"
                 "                                result as serving does; exit 0 valid, 1 the function failed,\n"
                 "                                2 validation failed, 3 bad arguments or input\n"
                 "       verge --version\n"
                 "environment: VERGE_LOG_LEVEL=debug|info|warn|error (default info)\n");
}

/* Loads the config for a command; prints every problem when it is invalid. */
static struct config *load_config_or_report(const char *path)
{
    struct config_errors errors = {0};
    struct config *config = config_load(path, &errors);
    if (config == NULL)
        print_config_errors(NULL, &errors);
    config_errors_free(&errors);
    return config;
}

static int command_check(const char *path)
{
    struct config *config = load_config_or_report(path);
    if (config == NULL)
        return 1;
    printf("%s: ok\n", path);
    config_unref(config);
    return 0;
}

static int command_serve(const char *path, bool dev)
{
    config_dev_mode = dev; /* traces, X-Verge-Trace, dev.debug_headers on by default at every load */
    struct config *config = load_config_or_report(path);
    if (config == NULL)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    server.config_path = path;
    pthread_mutex_init(&server.generation_lock, NULL);
    warn_unverified_origins(config);
    server.generation = generation_create(config, 1);
    atomic_store(&server.generation_number, 1);
    atomic_store(&metrics.config_generation, 1);
    char error[256];
    if (access_log_configure(log_destination(config->access_log.path), error, sizeof error) != 0) {
        log_error("access_log.path: %s", error);
        return 1;
    }
    if (function_log_configure(log_destination(config->function_log.path), error, sizeof error) != 0) {
        log_error("function_log: %s", error);
        return 1;
    }

    cache_store_configure(config->cache.memory_bytes, config->cache.max_object_bytes,
                          config->cache.eviction == 1 ? CACHE_EVICTION_LRU : CACHE_EVICTION_SIEVE);
    main_loop = EV_DEFAULT;
    /* Watching before the listeners open: a change made once the port answers is seen. */
    if (dev) {
        dev_watch = dev_watch_start(main_loop, path, config, DEV_RELOAD_DEBOUNCE_MS, on_dev_change, NULL, error, sizeof error);
        if (dev_watch == NULL)
            log_warn("verge dev: %s; changes will not reload", error);
        for (size_t i = 0; i < config->listen_count; i++)
            fprintf(stderr, "verge dev: serving %s://%s (generation 1)\n", config->listen[i].tls.server != NULL ? "https" : "http",
                    config->listen[i].address.text);
        fprintf(stderr,
                "verge dev: watching %s and the Lua files of %zu function(s) (%zu directories); a trace of every "
                "request follows on stdout; responses carry X-Verge-Trace\n",
                path, config->function_count, dev_watch != NULL ? dev_watch_directory_count(dev_watch) : 0);
    }
    server.thread_count = (size_t)config->threads;
    server.threads = calloc(server.thread_count, sizeof *server.threads);
    VERGE_ASSERT(server.threads != NULL);
    for (size_t i = 0; i < server.thread_count; i++)
        if (loop_thread_setup(&server.threads[i], (unsigned)i, config) != 0)
            return 1;
    for (size_t i = 0; i < config->listen_count; i++)
        log_info("listening on %s%s (%d threads)", config->listen[i].address.text,
                 config->listen[i].tls.server != NULL ? " (TLS)" : "", config->threads);
    if (config->admin.enabled) {
        if (admin_listener_start(main_loop, config) != 0)
            return 1;
    }

    ev_signal sighup, sigterm, sigint;
    ev_signal_init(&sighup, on_sighup, SIGHUP);
    ev_signal_init(&sigterm, on_sigterm, SIGTERM);
    ev_signal_init(&sigint, on_sigterm, SIGINT);
    ev_signal_start(main_loop, &sighup);
    ev_signal_start(main_loop, &sigterm);
    ev_signal_start(main_loop, &sigint);
    ev_async_init(&threads_finished_async, on_threads_finished);
    ev_async_start(main_loop, &threads_finished_async);

    atomic_store(&threads_running, (int)server.thread_count);
    for (size_t i = 0; i < server.thread_count; i++)
        if (pthread_create(&server.threads[i].thread, NULL, loop_thread_main, &server.threads[i]) != 0) {
            log_error("cannot start thread %zu: %s", i, strerror(errno));
            return 1;
        }
    ev_run(main_loop, 0);
    dev_watch_stop(dev_watch);
    dev_watch = NULL;

    for (size_t i = 0; i < server.thread_count; i++) {
        pthread_join(server.threads[i].thread, NULL);
        struct loop_thread *thread = &server.threads[i];
        loop_thread_close_listeners(thread);
        if (thread->generation != NULL)
            generation_unref(thread->generation);
        bytebuf_free(&thread->scratch);
        free(thread->listeners);
        ev_loop_destroy(thread->loop);
    }
    free(server.threads);
    if (server.generation->config->admin.enabled)
        admin_listener_stop();
    generation_unref(server.generation);
    log_info("drained; exiting");
    access_log_shutdown();
    function_log_shutdown();
    return 0;
}

int main(int argc, char **argv)
{
    const char *level = getenv("VERGE_LOG_LEVEL");
    if (level != NULL) {
        if (strcmp(level, "debug") == 0)
            log_threshold = LOG_DEBUG;
        else if (strcmp(level, "warn") == 0)
            log_threshold = LOG_WARN;
        else if (strcmp(level, "error") == 0)
            log_threshold = LOG_ERROR;
    }
    /* An edge-function worker: spawned by the pool with its channel on fd 3. */
    if (argc == 2 && strcmp(argv[1], "worker") == 0)
        return worker_main(3);
    if (argc >= 2 && strcmp(argv[1], "event") == 0)
        return command_event(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "invoke") == 0)
        return command_invoke(argc - 2, argv + 2);
    const char *command = "serve";
    const char *config_path = NULL;
    int i = 1;
    if (i < argc && argv[i][0] != '-') {
        command = argv[i];
        i++;
    }
    for (; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            config_path = argv[++i];
        else if (strcmp(argv[i], "--version") == 0) {
            printf("verge %s\n", VERGE_VERSION);
            return 0;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "verge: unknown argument \"%s\"\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (strcmp(command, "config-reference") == 0) {
        struct bytebuf out = {0};
        config_write_reference(&out);
        fwrite(out.data, 1, out.len, stdout);
        bytebuf_free(&out);
        return 0;
    }
    if (strcmp(command, "check") != 0 && strcmp(command, "serve") != 0 && strcmp(command, "dev") != 0) {
        fprintf(stderr, "verge: unknown command \"%s\"\n", command);
        usage(stderr);
        return 2;
    }
    if (config_path == NULL) {
        fprintf(stderr, "verge: %s needs -c FILE\n", command);
        usage(stderr);
        return 2;
    }
    if (strcmp(command, "check") == 0)
        return command_check(config_path);
    return command_serve(config_path, strcmp(command, "dev") == 0);
}
