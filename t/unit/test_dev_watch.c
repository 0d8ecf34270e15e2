/* test_dev_watch.c — proxy/dev_watch.c: which file names matter, and the
 * watch itself on a real libev loop over a temporary tree: a save, a
 * write-and-rename, a module in a subdirectory and in a directory made after
 * the start, the config file, editor swap and backup files (ignored), other
 * files (ignored), files still open for writing (only their close counts),
 * a burst of saves (one callback) and a delete. Every loop run is bounded by
 * a timer.
 */
#include "../../proxy/dev_watch.h"
#include "unit.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64] = "/tmp/verge-dev-watch-XXXXXX";
static struct ev_loop *loop;

struct seen {
    int calls;
    char paths[DEV_WATCH_CHANGES_MAX][512];
    size_t count;
};

static void on_change(void *context, const char *const *changed, size_t count)
{
    struct seen *seen = context;
    seen->calls++;
    seen->count = count;
    for (size_t i = 0; i < count; i++)
        snprintf(seen->paths[i], sizeof seen->paths[i], "%s", changed[i]);
}

static bool seen_path(const struct seen *seen, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    for (size_t i = 0; i < seen->count; i++)
        if (strcmp(seen->paths[i], path) == 0)
            return true;
    return false;
}

static void on_timeout(struct ev_loop *l, ev_timer *timer, int revents)
{
    ev_break(l, EVBREAK_ONE);
}

/* Runs the loop for `ms` (the watch's debounce is 50 ms). */
static void run_for(int ms)
{
    ev_timer timer;
    ev_timer_init(&timer, on_timeout, ms / 1000.0, 0);
    ev_timer_start(loop, &timer);
    ev_run(loop, 0);
    ev_timer_stop(loop, &timer);
}

static void write_file(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    VERGE_ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void test_names(void)
{
    CHECK(dev_watch_name_matters("verge.json", true, "verge.json", false));
    CHECK(!dev_watch_name_matters("verge.json", false, "verge.json", true));
    CHECK(!dev_watch_name_matters("other.json", true, "verge.json", true));
    CHECK(dev_watch_name_matters("auth.lua", false, "verge.json", true));
    CHECK(!dev_watch_name_matters("auth.lua", true, "verge.json", false));
    CHECK(!dev_watch_name_matters(".auth.lua.swp", false, "verge.json", true));
    CHECK(!dev_watch_name_matters("auth.lua~", false, "verge.json", true));
    CHECK(!dev_watch_name_matters("#auth.lua#", false, "verge.json", true));
    CHECK(!dev_watch_name_matters(".#auth.lua", false, "verge.json", true));
    CHECK(!dev_watch_name_matters("4913", true, "4913", true));
    CHECK(!dev_watch_name_matters("auth.lua.tmp", false, "verge.json", true));
    CHECK(!dev_watch_name_matters("auth.swp", false, "verge.json", true));
    CHECK(!dev_watch_name_matters("", true, "verge.json", true));
}

static void test_watch(void)
{
    VERGE_ASSERT(mkdtemp(dir) != NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/lib", dir);
    VERGE_ASSERT(mkdir(path, 0700) == 0);
    write_file("fn.lua", "function handler(e) return e.Records[1].cf.request end\n");
    write_file("lib/mod.lua", "return {}\n");
    const char *text = "{\"listen\": [{\"address\": \"127.0.0.1:8080\"}], \"origins\": {\"app\": {\"url\": "
                       "\"http://127.0.0.1:9000\"}}, \"functions\": {\"f\": {\"code\": \"fn.lua\"}}, \"behaviors\": "
                       "[{\"path\": \"*\", \"origin\": \"app\"}]}";
    write_file("verge.json", text);
    struct config_errors errors = {0};
    struct config *config = config_load_buffer(text, strlen(text), dir, &errors);
    VERGE_ASSERT(config != NULL);

    loop = ev_loop_new(EVFLAG_AUTO);
    struct seen seen = {0};
    char error[256] = "";
    snprintf(path, sizeof path, "%s/verge.json", dir);
    struct dev_watch *watch = dev_watch_start(loop, path, config, 50, on_change, &seen, error, sizeof error);
    CHECK(watch != NULL);
    if (watch == NULL) {
        fprintf(stderr, "dev_watch_start: %s\n", error);
        return;
    }
    CHECK_INT(dev_watch_directory_count(watch), 2); /* the directory (config and function) and lib */

    /* a save */
    write_file("fn.lua", "function handler(e) return e.Records[1].cf.request end -- 2\n");
    run_for(300);
    CHECK_INT(seen.calls, 1);
    CHECK(seen.count == 1 && seen_path(&seen, "fn.lua"));

    /* editor swap and backup files, other files: nothing */
    write_file(".fn.lua.swp", "x");
    write_file("fn.lua~", "x");
    write_file("4913", "");
    write_file("notes.txt", "x");
    write_file("other.json", "{}");
    write_file("lib/.#mod.lua", "x");
    run_for(300);
    CHECK_INT(seen.calls, 1);

    /* written elsewhere, renamed into place (sed -i, most editors) */
    write_file("fn.lua.tmp", "function handler(e) return e.Records[1].cf.request end -- 3\n");
    char from[512], to[512];
    snprintf(from, sizeof from, "%s/fn.lua.tmp", dir);
    snprintf(to, sizeof to, "%s/fn.lua", dir);
    CHECK(rename(from, to) == 0);
    run_for(300);
    CHECK_INT(seen.calls, 2);
    CHECK(seen.count == 1 && seen_path(&seen, "fn.lua"));

    /* a module below the function's directory; the config file */
    write_file("lib/mod.lua", "return {x = 1}\n");
    run_for(300);
    CHECK_INT(seen.calls, 3);
    CHECK(seen_path(&seen, "lib/mod.lua"));
    write_file("verge.json", text);
    run_for(300);
    CHECK_INT(seen.calls, 4);
    CHECK(seen_path(&seen, "verge.json"));

    /* a directory made after the start is watched too */
    snprintf(path, sizeof path, "%s/lib2", dir);
    CHECK(mkdir(path, 0700) == 0);
    run_for(100);
    CHECK_INT(seen.calls, 4);
    write_file("lib2/new.lua", "return {}\n");
    run_for(300);
    CHECK_INT(seen.calls, 5);
    CHECK(seen_path(&seen, "lib2/new.lua"));

    /* a file still being written (a new one, and the function file rewritten in place) counts
     * only once it is closed, whatever the debounce */
    snprintf(path, sizeof path, "%s/lib/half.lua", dir);
    FILE *half = fopen(path, "w");
    VERGE_ASSERT(half != NULL);
    fputs("return {", half);
    fflush(half);
    snprintf(path, sizeof path, "%s/fn.lua", dir);
    FILE *rewritten = fopen(path, "w");
    VERGE_ASSERT(rewritten != NULL);
    fputs("function handler(e)", rewritten);
    fflush(rewritten);
    run_for(300);
    CHECK_INT(seen.calls, 5);
    fputs(" done = true }\n", half);
    fclose(half);
    fputs(" return e.Records[1].cf.request end\n", rewritten);
    fclose(rewritten);
    run_for(300);
    CHECK_INT(seen.calls, 6);
    CHECK(seen.count == 2 && seen_path(&seen, "lib/half.lua") && seen_path(&seen, "fn.lua"));

    /* a burst of saves within the debounce: one callback naming each file once */
    write_file("fn.lua", "function handler(e) return e.Records[1].cf.request end -- 4\n");
    write_file("lib/mod.lua", "return {x = 2}\n");
    write_file("fn.lua", "function handler(e) return e.Records[1].cf.request end -- 5\n");
    run_for(300);
    CHECK_INT(seen.calls, 7);
    CHECK_INT(seen.count, 2);
    CHECK(seen_path(&seen, "fn.lua") && seen_path(&seen, "lib/mod.lua"));

    /* a deleted module counts */
    snprintf(path, sizeof path, "%s/lib2/new.lua", dir);
    CHECK(unlink(path) == 0);
    run_for(300);
    CHECK_INT(seen.calls, 8);

    dev_watch_stop(watch);
    config_unref(config);
    ev_loop_destroy(loop);
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", dir);
    CHECK(system(command) == 0);
}

int main(void)
{
    UNIT_RUN(test_names);
    UNIT_RUN(test_watch);
    return unit_summary();
}
