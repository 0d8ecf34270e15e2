/* test_config.c — config loading, validation messages, defaults, path
 * patterns and the generated reference.
 *
 * Most cases load a buffer whose base directory is a temporary tree under
 * /tmp (removed at the end) holding a static root, a plain file and token
 * files. Config texts are written with single quotes for readability and
 * turned into JSON by q(). Error cases check the exact message the user
 * would read. Host names are only "localhost" and numeric addresses, so no
 * test needs DNS.
 */
#include "../../conf/config.h"
#include "unit.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];           /* the temporary tree, as created */
static char real_dir[PATH_MAX]; /* its realpath */

/* ---- fixture and helpers --------------------------------------------------- */

static void write_file(const char *name, const char *content)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    fputs(content, f);
    fclose(f);
}

static void fixture_create(void)
{
    snprintf(dir, sizeof dir, "/tmp/verge-test-config-XXXXXX");
    if (mkdtemp(dir) == NULL || realpath(dir, real_dir) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/public", dir);
    mkdir(path, 0755);
    write_file("file.txt", "not a directory\n");
    write_file("admin.token", "  secret-token\n");
    write_file("empty.token", " \n");
    write_file("spaced.token", "two words\n");
    write_file("fn.lua", "function handler(event, context) return event.Records[1].cf.request end\n");
    write_file("syntax.lua", "local function handler(event)\n  local request = event\n  request.x x\nend\n");
    write_file("bytecode.lua", "\033LJ\002\n");
    write_file("module.lua", "-- a module-style function\nlocal M = {}\nfunction M.handle(event, context)\n"
                             "  local request = event.Records[1].cf.request\n  return request\nend\nreturn M\n");
}

static void fixture_remove(void)
{
    static const char *const files[] = {"file.txt", "admin.token", "empty.token",  "spaced.token", "verge.json",
                                        "fn.lua",   "syntax.lua",  "bytecode.lua", "module.lua"};
    char path[PATH_MAX];
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(files); i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/public", dir);
    rmdir(path);
    rmdir(dir);
}

/* 'single' quotes become "double" quotes; one buffer, so use the result at once. */
static const char *q(const char *text)
{
    static char buf[65536];
    size_t n = strlen(text);
    if (n >= sizeof buf)
        exit(2);
    for (size_t i = 0; i <= n; i++)
        buf[i] = text[i] == '\'' ? '"' : text[i];
    return buf;
}

static struct config *load_text(const char *text, struct config_errors *errors)
{
    return config_load_buffer(text, strlen(text), dir, errors);
}

static bool errors_contain(const struct config_errors *errors, const char *message)
{
    for (size_t i = 0; i < errors->count; i++)
        if (strcmp(errors->messages[i], message) == 0)
            return true;
    return false;
}

static void print_errors(int line, const char *wanted, const struct config_errors *errors)
{
    fprintf(stderr, "  test_config.c:%d wanted: %s\n", line, wanted);
    for (size_t i = 0; i < errors->count; i++)
        fprintf(stderr, "  got: %s\n", errors->messages[i]);
}

/* Loads `text` (already JSON), expects it to fail with `message` among the errors. */
#define EXPECT_ERROR(text, message) expect_error(__LINE__, (text), (message))
static void expect_error(int line, const char *text, const char *message)
{
    struct config_errors errors = {0};
    struct config *config = load_text(text, &errors);
    CHECK(config == NULL);
    bool found = errors_contain(&errors, message);
    if (!found)
        print_errors(line, message, &errors);
    CHECK(found);
    config_unref(config);
    config_errors_free(&errors);
}

/* Like EXPECT_ERROR, for messages that end in a system path or errno text. */
#define EXPECT_ERROR_PREFIX(text, prefix) expect_error_prefix(__LINE__, (text), (prefix))
static void expect_error_prefix(int line, const char *text, const char *prefix)
{
    struct config_errors errors = {0};
    struct config *config = load_text(text, &errors);
    CHECK(config == NULL);
    bool found = false;
    for (size_t i = 0; i < errors.count && !found; i++)
        found = strncmp(errors.messages[i], prefix, strlen(prefix)) == 0;
    if (!found)
        print_errors(line, prefix, &errors);
    CHECK(found);
    config_unref(config);
    config_errors_free(&errors);
}

/* Loads `text` and expects success; prints the errors otherwise. */
#define EXPECT_OK(text) expect_ok(__LINE__, (text))
static struct config *expect_ok(int line, const char *text)
{
    struct config_errors errors = {0};
    struct config *config = load_text(text, &errors);
    CHECK(config != NULL);
    CHECK_INT(errors.count, 0);
    if (config == NULL)
        print_errors(line, "(success)", &errors);
    config_errors_free(&errors);
    return config;
}

static int expected_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 1 ? 1 : cpus > 256 ? 256 : (int)cpus;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)ss)->sin_port)
                                    : ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

#define LISTEN "'listen': [{'address': '127.0.0.1:8080'}]"
#define ORIGINS "'origins': {'app': {'url': 'http://127.0.0.1:9000'}}"
#define BEHAVIORS "'behaviors': [{'path': '*', 'origin': 'app'}]"
#define MINIMAL "{" LISTEN ", " ORIGINS ", " BEHAVIORS "}"
/* MINIMAL with one more top-level member */
#define WITH(extra) "{" LISTEN ", " ORIGINS ", " BEHAVIORS ", " extra "}"
/* a config whose origins are `origins` */
#define WITH_ORIGINS(origins) "{" LISTEN ", 'origins': {" origins "}, " BEHAVIORS "}"

/* MINIMAL whose only behavior has "cache": `cache` */
#define WITH_BEHAVIOR_CACHE(cache) "{" LISTEN ", " ORIGINS ", 'behaviors': [{'path': '*', 'origin': 'app', 'cache': " cache "}]}"

/* What a behavior without "cache" gets: caching on, CloudFront's defaults. */
static void check_default_cache_settings(const struct cache_settings *cache)
{
    CHECK(cache->enabled);
    CHECK_INT(cache->min_ttl, 0);
    CHECK_INT(cache->default_ttl, 86400);
    CHECK_INT(cache->max_ttl, 31536000);
    CHECK_INT(cache->error_ttl, 10);
    CHECK_INT(cache->stale_while_revalidate, 0);
    CHECK_INT(cache->stale_if_error, 0);
    const struct cache_name_list *lists[] = {&cache->query, &cache->headers, &cache->cookies};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(lists); i++) {
        CHECK_INT(lists[i]->mode, CACHE_LIST_NONE);
        CHECK_INT(lists[i]->count, 0);
        CHECK(lists[i]->names == NULL);
    }
}

/* ---- valid configs --------------------------------------------------------- */

static void test_minimal_config_takes_defaults(void)
{
    struct config *config = EXPECT_OK(q(MINIMAL));
    if (config == NULL)
        return;
    CHECK_INT(config->magic, CONFIG_MAGIC);
    CHECK_INT(atomic_load(&config->refcount), 1);
    CHECK(config->source_path == NULL);
    CHECK_INT(config->listen_count, 1);
    CHECK_STR(config->listen[0].address.text, "127.0.0.1:8080");
    CHECK_INT(config->listen[0].address.sockaddr.ss_family, AF_INET);
    CHECK_INT(config->listen[0].address.sockaddr_len, sizeof(struct sockaddr_in));
    CHECK_INT(port_of(&config->listen[0].address.sockaddr), 8080);
    CHECK(config->listen[0].address.is_loopback);
    CHECK_INT(config->threads, expected_threads());

    CHECK_INT(config->origin_count, 1);
    const struct config_origin *app = &config->origins[0];
    CHECK_STR(app->name, "app");
    CHECK_INT(app->kind, ORIGIN_KIND_HTTP);
    CHECK_STR(app->url, "http://127.0.0.1:9000");
    CHECK_STR(app->host, "127.0.0.1");
    CHECK_INT(app->port, 9000);
    CHECK_STR(app->host_header, "127.0.0.1:9000");
    CHECK_STR(app->path_prefix, "");
    CHECK_INT(app->sockaddr.ss_family, AF_INET);
    CHECK_INT(port_of(&app->sockaddr), 9000);
    CHECK_INT(app->connect_timeout_ms, 1000);
    CHECK_INT(app->read_timeout_ms, 30000);
    CHECK_INT(app->max_idle, 32);
    CHECK(app->static_root == NULL);

    CHECK_INT(config->behavior_count, 1);
    CHECK_STR(config->behaviors[0].path_pattern, "*");
    CHECK_INT(config->behaviors[0].origin_index, 0);

    CHECK_STR(config->access_log.path, "-");
    CHECK_STR(config->access_log.format, "json");
    CHECK_STR(config->function_log.path, "-");
    CHECK(!config->admin.enabled);
    CHECK(config->admin.address.text == NULL);
    CHECK(config->admin.token == NULL && config->admin.token_file == NULL);
    CHECK_INT(config->timeouts.header_read_ms, 10000);
    CHECK_INT(config->timeouts.idle_ms, 60000);
    CHECK_INT(config->timeouts.send_ms, 60000);
    CHECK_INT(config->timeouts.drain_ms, 10000);

    CHECK(config->cache.memory_bytes == 256ull << 20);
    CHECK(config->cache.max_object_bytes == 64ull << 20);
    CHECK_INT(config->cache.eviction, 0);
    check_default_cache_settings(&config->behaviors[0].cache);
    config_unref(config);
}

static void test_full_config(void)
{
    struct config *config = EXPECT_OK(q("{\n"
                                        "  'listen': [{'address': '0.0.0.0:8080'}, {'address': '[::1]:8443'}],\n"
                                        "  'threads': 4,\n"
                                        "  'origins': {\n"
                                        "    'app': {'url': 'http://[::1]:8081/base/', 'connect_timeout_ms': 250,\n"
                                        "            'read_timeout_ms': 5000, 'max_idle': 0},\n"
                                        "    'site': {'static': 'public'},\n"
                                        "    'local': {'url': 'http://localhost'}\n"
                                        "  },\n"
                                        "  'behaviors': [\n"
                                        "    {'path': '/api/*', 'origin': 'app'},\n"
                                        "    {'path': '*.html', 'origin': 'local'},\n"
                                        "    {'path': '*', 'origin': 'site'}\n"
                                        "  ],\n"
                                        "  'access_log': {'path': 'logs/access.log', 'format': 'json'},\n"
                                        "  'admin': {'address': '0.0.0.0:9901', 'token_file': 'admin.token'},\n"
                                        "  'timeouts': {'header_read_ms': 1, 'idle_ms': 2, 'send_ms': 3, 'drain_ms': 0}\n"
                                        "}\n"));
    if (config == NULL)
        return;
    char expected[PATH_MAX + 64];
    CHECK_INT(config->listen_count, 2);
    CHECK(!config->listen[0].address.is_loopback);
    CHECK_INT(config->listen[1].address.sockaddr.ss_family, AF_INET6);
    CHECK_INT(port_of(&config->listen[1].address.sockaddr), 8443);
    CHECK(config->listen[1].address.is_loopback);
    CHECK_INT(config->threads, 4);

    CHECK_INT(config->origin_count, 3);
    const struct config_origin *app = &config->origins[0], *site = &config->origins[1], *local = &config->origins[2];
    CHECK_STR(app->name, "app");
    CHECK_STR(app->host, "::1");
    CHECK_INT(app->port, 8081);
    CHECK_STR(app->host_header, "[::1]:8081");
    CHECK_STR(app->path_prefix, "/base");
    CHECK_INT(app->sockaddr.ss_family, AF_INET6);
    CHECK_INT(app->connect_timeout_ms, 250);
    CHECK_INT(app->read_timeout_ms, 5000);
    CHECK_INT(app->max_idle, 0);
    CHECK_STR(site->name, "site");
    CHECK_INT(site->kind, ORIGIN_KIND_STATIC);
    snprintf(expected, sizeof expected, "%s/public", real_dir);
    CHECK_STR(site->static_root, expected);
    CHECK(site->url == NULL);
    CHECK_STR(local->host, "localhost");
    CHECK_INT(local->port, 80);
    CHECK_STR(local->host_header, "localhost");
    CHECK_INT(local->sockaddr.ss_family, AF_INET); /* IPv4 preferred when a name has both */

    CHECK_INT(config->behavior_count, 3);
    CHECK_STR(config->behaviors[0].path_pattern, "/api/*");
    CHECK_INT(config->behaviors[0].origin_index, 0);
    CHECK_INT(config->behaviors[1].origin_index, 2);
    CHECK_INT(config->behaviors[2].origin_index, 1);

    snprintf(expected, sizeof expected, "%s/logs/access.log", dir);
    CHECK_STR(config->access_log.path, expected);
    CHECK(config->admin.enabled);
    CHECK_STR(config->admin.address.text, "0.0.0.0:9901");
    CHECK(!config->admin.address.is_loopback);
    snprintf(expected, sizeof expected, "%s/admin.token", dir);
    CHECK_STR(config->admin.token_file, expected);
    CHECK_STR(config->admin.token, "secret-token");
    CHECK_INT(config->timeouts.header_read_ms, 1);
    CHECK_INT(config->timeouts.idle_ms, 2);
    CHECK_INT(config->timeouts.send_ms, 3);
    CHECK_INT(config->timeouts.drain_ms, 0);
    config_unref(config);
}

static void test_comments_are_accepted(void)
{
    struct config *config = EXPECT_OK(q("// verge config\n"
                                        "{\n"
                                        "  /* where to listen */ " LISTEN ", // trailing comment\n"
                                        "  " ORIGINS ",\n"
                                        "  /* multi\n     line */\n"
                                        "  " BEHAVIORS "\n"
                                        "}\n// end\n"));
    CHECK(config != NULL && config->listen_count == 1);
    config_unref(config);
}

static void test_access_log_false_and_partial_sections(void)
{
    struct config *config = EXPECT_OK(q(WITH("'access_log': false, 'timeouts': {'idle_ms': 5}")));
    if (config != NULL) {
        CHECK(config->access_log.path == NULL);
        CHECK(config->access_log.format == NULL);
        CHECK_INT(config->timeouts.idle_ms, 5);
        CHECK_INT(config->timeouts.header_read_ms, 10000); /* the others keep their defaults */
        CHECK_INT(config->timeouts.drain_ms, 10000);
    }
    config_unref(config);

    config = EXPECT_OK(q(WITH("'access_log': {'path': '/var/log/verge.log'}")));
    if (config != NULL) {
        CHECK_STR(config->access_log.path, "/var/log/verge.log");
        CHECK_STR(config->access_log.format, "json");
    }
    config_unref(config);

    config = EXPECT_OK(q(WITH("'access_log': {'path': '-'}, 'admin': {'address': '127.0.0.1:9901'}")));
    if (config != NULL) {
        CHECK_STR(config->access_log.path, "-");
        CHECK(config->admin.enabled);
        CHECK(config->admin.address.is_loopback);
        CHECK(config->admin.token == NULL);
    }
    config_unref(config);
}

/* "function_log": a path (relative to the config's directory), "-", or false. */
static void test_function_log(void)
{
    struct config *config = EXPECT_OK(q(WITH("'function_log': 'logs/functions.log'")));
    if (config != NULL) {
        char expected[PATH_MAX + 32];
        snprintf(expected, sizeof expected, "%s/logs/functions.log", dir);
        CHECK_STR(config->function_log.path, expected);
        CHECK_STR(config->access_log.path, "-"); /* independent of the access log */
    }
    config_unref(config);

    config = EXPECT_OK(q(WITH("'function_log': '/var/log/verge-functions.log', 'access_log': false")));
    if (config != NULL) {
        CHECK_STR(config->function_log.path, "/var/log/verge-functions.log");
        CHECK(config->access_log.path == NULL);
    }
    config_unref(config);

    config = EXPECT_OK(q(WITH("'function_log': false")));
    if (config != NULL) {
        CHECK(config->function_log.path == NULL);
        CHECK_STR(config->access_log.path, "-");
    }
    config_unref(config);

    config = EXPECT_OK(q(WITH("'function_log': '-'")));
    if (config != NULL)
        CHECK_STR(config->function_log.path, "-");
    config_unref(config);

    EXPECT_ERROR(q(WITH("'function_log': true")), "function_log: expected a file path, \"-\" or false, got true");
    EXPECT_ERROR(q(WITH("'function_log': ''")), "function_log: expected a file path, \"-\" or false, got \"\"");
    EXPECT_ERROR(q(WITH("'function_log': 3")), "function_log: expected a file path, \"-\" or false, got 3");
    EXPECT_ERROR(q(WITH("'function_log': {'path': '-'}")), "function_log: expected a file path, \"-\" or false, got an object");
    EXPECT_ERROR(q(WITH("'function_log': 'a\\u0000b'")), "function_log: expected a file path, \"-\" or false, got \"a\\u0000b\"");
}

static void test_url_forms(void)
{
    static const struct {
        const char *url, *host, *host_header, *prefix;
        unsigned port;
    } cases[] = {
        {"http://127.0.0.1", "127.0.0.1", "127.0.0.1", "", 80},
        {"http://127.0.0.1/", "127.0.0.1", "127.0.0.1", "", 80},
        {"HTTP://127.0.0.1:80/a/b//", "127.0.0.1", "127.0.0.1", "/a/b", 80},
        {"http://127.0.0.1:8080/prefix", "127.0.0.1", "127.0.0.1:8080", "/prefix", 8080},
        {"http://[::1]", "::1", "[::1]", "", 80},
        {"http://localhost:65535", "localhost", "localhost:65535", "", 65535},
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(cases); i++) {
        char text[512];
        snprintf(text, sizeof text, WITH_ORIGINS("'app': {'url': '%s'}"), cases[i].url);
        struct config *config = EXPECT_OK(q(text));
        if (config == NULL)
            continue;
        CHECK_STR(config->origins[0].url, cases[i].url);
        CHECK_STR(config->origins[0].host, cases[i].host);
        CHECK_STR(config->origins[0].host_header, cases[i].host_header);
        CHECK_STR(config->origins[0].path_prefix, cases[i].prefix);
        CHECK_INT(config->origins[0].port, cases[i].port);
        CHECK_INT(port_of(&config->origins[0].sockaddr), cases[i].port);
        config_unref(config);
    }
}

static void test_addresses(void)
{
    static const struct {
        const char *address;
        bool loopback;
        int family;
    } valid[] = {
        {"127.0.0.1:1", true, AF_INET},
        {"127.9.8.7:80", true, AF_INET},
        {"0.0.0.0:65535", false, AF_INET},
        {"192.168.1.1:8080", false, AF_INET},
        {"[::1]:8080", true, AF_INET6},
        {"[::]:8080", false, AF_INET6},
        {"[::ffff:127.0.0.1]:80", true, AF_INET6},
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(valid); i++) {
        char text[512];
        snprintf(text, sizeof text, "{'listen': [{'address': '%s'}], " ORIGINS ", " BEHAVIORS "}", valid[i].address);
        struct config *config = EXPECT_OK(q(text));
        if (config == NULL)
            continue;
        CHECK_STR(config->listen[0].address.text, valid[i].address);
        CHECK_INT(config->listen[0].address.is_loopback, valid[i].loopback);
        CHECK_INT(config->listen[0].address.sockaddr.ss_family, valid[i].family);
        config_unref(config);
    }
}

/* ---- errors ------------------------------------------------------------------- */

static void test_unknown_keys(void)
{
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1:9000', 'conect_timeout_ms': 5}")),
                 "origins.app.conect_timeout_ms: unknown key (known: url, static, respond, faults, connect_timeout_ms, "
                 "read_timeout_ms, ca_file, tls_verify, max_idle)");
    EXPECT_ERROR(q(WITH("'thread': 2")), "thread: unknown key (known: listen, threads, origins, functions, viewer_countries, "
                                         "behaviors, access_log, function_log, admin, timeouts, cache, workers, dev)");
    EXPECT_ERROR(q(WITH("'timeouts': {'idle': 2}")),
                 "timeouts.idle: unknown key (known: header_read_ms, idle_ms, send_ms, drain_ms)");
    EXPECT_ERROR(q("{'listen': [{'address': '127.0.0.1:80', 'port': 1}], " ORIGINS ", " BEHAVIORS "}"),
                 "listen[0].port: unknown key (known: address, h2c, tls)");
    EXPECT_ERROR(q(WITH("'a.b c': 1")), "\"a.b c\": unknown key (known: listen, threads, origins, functions, viewer_countries, "
                                        "behaviors, access_log, function_log, admin, timeouts, cache, workers, dev)");
}

static void test_wrong_types(void)
{
    EXPECT_ERROR(q(WITH("'threads': 'two'")), "threads: expected an integer from 1 to 256, got \"two\"");
    EXPECT_ERROR(q(WITH("'threads': 2.5")), "threads: expected an integer from 1 to 256, got 2.5");
    EXPECT_ERROR(q(WITH("'threads': 1e2")), "threads: expected an integer from 1 to 256, got 1e2");
    EXPECT_ERROR(q(WITH("'threads': null")), "threads: expected an integer from 1 to 256, got null");
    EXPECT_ERROR(q(WITH("'threads': [1]")), "threads: expected an integer from 1 to 256, got an array");
    EXPECT_ERROR(q("{'listen': {'address': '127.0.0.1:80'}, " ORIGINS ", " BEHAVIORS "}"),
                 "listen: expected an array, got an object");
    EXPECT_ERROR(q("{" LISTEN ", 'origins': [], " BEHAVIORS "}"), "origins: expected an object, got an array");
    EXPECT_ERROR(q("{" LISTEN ", " ORIGINS ", 'behaviors': [{'path': 5, 'origin': 'app'}]}"),
                 "behaviors[0].path: expected a path pattern, got 5");
    EXPECT_ERROR(q("{" LISTEN ", " ORIGINS ", 'behaviors': ['*']}"), "behaviors[0]: expected an object, got \"*\"");
    EXPECT_ERROR(q(WITH("'access_log': true")), "access_log: expected an object or false, got true");
    EXPECT_ERROR(q(WITH("'access_log': {'format': 'text'}")), "access_log.format: expected \"json\", got \"text\"");
    EXPECT_ERROR(q(WITH("'access_log': {'path': ''}")), "access_log.path: expected a file path or \"-\", got \"\"");
    EXPECT_ERROR(q(WITH("'admin': false")), "admin: expected an object, got false");
    EXPECT_ERROR(q("[1, 2]"), "top level: expected an object, got an array");
    EXPECT_ERROR(q(WITH("'access_log': {'path': 'a\\u0000b'}")),
                 "access_log.path: expected a file path or \"-\", got \"a\\u0000b\"");
    EXPECT_ERROR(q(WITH("'threads': 'a very long string that goes on and on and on and on and on and on and on and on and "
                        "on'")),
                 "threads: expected an integer from 1 to 256, got \"a very long string that goes on and on and on and on "
                 "and on and on and on and on...\"");
}

static void test_out_of_range(void)
{
    EXPECT_ERROR(q(WITH("'threads': 0")), "threads: expected an integer from 1 to 256, got 0");
    EXPECT_ERROR(q(WITH("'threads': 257")), "threads: expected an integer from 1 to 256, got 257");
    EXPECT_ERROR(q(WITH("'threads': -1")), "threads: expected an integer from 1 to 256, got -1");
    EXPECT_ERROR(q(WITH("'threads': 99999999999999999999999")),
                 "threads: expected an integer from 1 to 256, got 99999999999999999999999");
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1', 'connect_timeout_ms': 0}")),
                 "origins.app.connect_timeout_ms: expected an integer from 1 to 600000, got 0");
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1', 'max_idle': -1}")),
                 "origins.app.max_idle: expected an integer from 0 to 10000, got -1");
    EXPECT_ERROR(q(WITH("'timeouts': {'drain_ms': 3600001}")),
                 "timeouts.drain_ms: expected an integer from 0 to 3600000, got 3600001");
    EXPECT_ERROR(q("{'listen': [], " ORIGINS ", " BEHAVIORS "}"), "listen: expected from 1 to 64 entries, got 0");
    EXPECT_ERROR(q("{" LISTEN ", 'origins': {}, " BEHAVIORS "}"), "origins: expected from 1 to 1024 entries, got 0");
    EXPECT_ERROR(q("{" LISTEN ", " ORIGINS ", 'behaviors': []}"), "behaviors: expected from 1 to 1024 entries, got 0");
}

static void test_missing_required(void)
{
    struct config_errors errors = {0};
    CHECK(load_text("{}", &errors) == NULL);
    CHECK_INT(errors.count, 3);
    CHECK(errors_contain(&errors, "listen: required key is missing"));
    CHECK(errors_contain(&errors, "origins: required key is missing"));
    CHECK(errors_contain(&errors, "behaviors: required key is missing"));
    config_errors_free(&errors);

    EXPECT_ERROR(q("{'listen': [{}], " ORIGINS ", " BEHAVIORS "}"), "listen[0].address: required key is missing");
    EXPECT_ERROR(q("{" LISTEN ", " ORIGINS ", 'behaviors': [{'path': '*'}]}"), "behaviors[0].origin: required key is missing");
    EXPECT_ERROR(q("{" LISTEN ", " ORIGINS ", 'behaviors': [{'origin': 'app'}]}"), "behaviors[0].path: required key is missing");
    EXPECT_ERROR(q(WITH("'admin': {'token_file': 'admin.token'}")), "admin.address: required key is missing");
}

static void test_unknown_origin(void)
{
    EXPECT_ERROR(
        q("{" LISTEN ", 'origins': {'app': {'url': 'http://127.0.0.1'}, 'site': {'static': 'public'}},"
          " 'behaviors': [{'path': '/a', 'origin': 'app'}, {'path': '/b', 'origin': 'ap'}, {'path': '*', 'origin': 'site'}]}"),
        "behaviors[1].origin: unknown origin \"ap\" (known: app, site)");

    /* An invalid origins section is reported once, not again by every behavior. */
    struct config_errors errors = {0};
    CHECK(load_text(q("{" LISTEN ", 'origins': 5, " BEHAVIORS "}"), &errors) == NULL);
    CHECK_INT(errors.count, 1);
    CHECK(errors_contain(&errors, "origins: expected an object, got 5"));
    config_errors_free(&errors);
}

static void test_last_behavior_must_be_star(void)
{
    EXPECT_ERROR(q("{" LISTEN ", " ORIGINS ", 'behaviors': [{'path': '/api/*', 'origin': 'app'}]}"),
                 "behaviors[0].path: expected \"*\" for the last behavior (the default), got \"/api/*\"");
    EXPECT_ERROR(q("{" LISTEN ", " ORIGINS ", 'behaviors': [{'path': '*', 'origin': 'app'}, {'path': '/*', 'origin': 'app'}]}"),
                 "behaviors[1].path: expected \"*\" for the last behavior (the default), got \"/*\"");
}

static void test_behavior_paths(void)
{
    char long_path[300];
    memset(long_path, 'a', 256);
    long_path[256] = '\0';
    char text[1024];
    snprintf(text, sizeof text,
             "{" LISTEN ", " ORIGINS ", 'behaviors': [{'path': '%s', 'origin': 'app'}, {'path': '*', 'origin': 'app'}]}",
             long_path);
    EXPECT_ERROR(q(text), "behaviors[0].path: expected a path pattern of 1 to 255 characters, got 256 characters");
    EXPECT_ERROR(q("{" LISTEN ", " ORIGINS ", 'behaviors': [{'path': '/a b', 'origin': 'app'}, {'path': '*', 'origin': 'app'}]}"),
                 "behaviors[0].path: expected a path pattern of A-Z a-z 0-9 _ - . * $ / ~ \" ' @ : + & ?, got \"/a b\" "
                 "(\" \" is not allowed)");
    EXPECT_ERROR(q("{" LISTEN ", " ORIGINS ", 'behaviors': [{'path': '', 'origin': 'app'}, {'path': '*', 'origin': 'app'}]}"),
                 "behaviors[0].path: expected a path pattern of 1 to 255 characters, got 0 characters");
    long_path[255] = '\0';
    snprintf(text, sizeof text,
             "{" LISTEN ", " ORIGINS ", 'behaviors': [{'path': '%s', 'origin': 'app'}, {'path': '*', 'origin': 'app'}]}",
             long_path);
    struct config *config = EXPECT_OK(q(text));
    config_unref(config);
    /* every allowed punctuation character (the quote is escaped in JSON) */
    config = EXPECT_OK(
        "{\"listen\": [{\"address\": \"127.0.0.1:8080\"}], \"origins\": {\"app\": {\"url\": \"http://127.0.0.1\"}},"
        " \"behaviors\": [{\"path\": \"/aZ09_-.*$~\\\"'@:+&?\", \"origin\": \"app\"}, {\"path\": \"*\", \"origin\": \"app\"}]}");
    if (config != NULL)
        CHECK_STR(config->behaviors[0].path_pattern, "/aZ09_-.*$~\"'@:+&?");
    config_unref(config);
}

static void test_bad_addresses(void)
{
    static const char *const bad[] = {
        "localhost:80", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "[::1]8080",    "::1:8080",        "[::1]:",
        "1.2.3:80",     "[zz]:80",   ":80",         "127.0.0.1:+80",   "127.0.0.1:8 ", "[fe80::1%lo]:80", "1.2.3.4:080000",
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(bad); i++) {
        char text[512], message[256];
        snprintf(text, sizeof text, "{'listen': [{'address': '%s'}], " ORIGINS ", " BEHAVIORS "}", bad[i]);
        snprintf(message, sizeof message, "listen[0].address: expected \"IPv4:port\" or \"[IPv6]:port\", got \"%s\"", bad[i]);
        EXPECT_ERROR(q(text), message);
    }
    EXPECT_ERROR(q("{'listen': [{'address': '127.0.0.1:80'}, {'address': '127.0.0.1:80'}], " ORIGINS ", " BEHAVIORS "}"),
                 "listen[1].address: \"127.0.0.1:80\" is already listed at listen[0].address");
}

static void test_admin_rules(void)
{
    EXPECT_ERROR(q(WITH("'admin': {'address': '0.0.0.0:9901'}")),
                 "admin.address: \"0.0.0.0:9901\" is not a loopback address; set admin.token_file to expose the admin listener");
    EXPECT_ERROR(q(WITH("'admin': {'address': '[::]:9901'}")),
                 "admin.address: \"[::]:9901\" is not a loopback address; set admin.token_file to expose the admin listener");
    EXPECT_ERROR(q(WITH("'admin': {'address': '127.0.0.1:8080'}")), "admin.address: \"127.0.0.1:8080\" is also listen[0].address");
    EXPECT_ERROR(q(WITH("'admin': {'address': 'localhost:9901'}")),
                 "admin.address: expected \"IPv4:port\" or \"[IPv6]:port\", got \"localhost:9901\"");

    char message[PATH_MAX + 256];
    snprintf(message, sizeof message, "admin.token_file: cannot read \"%s/missing.token\": No such file or directory", dir);
    EXPECT_ERROR(q(WITH("'admin': {'address': '0.0.0.0:9901', 'token_file': 'missing.token'}")), message);
    snprintf(message, sizeof message, "admin.token_file: expected a file holding a token, got an empty file \"%s/empty.token\"",
             dir);
    EXPECT_ERROR(q(WITH("'admin': {'address': '0.0.0.0:9901', 'token_file': 'empty.token'}")), message);
    snprintf(message, sizeof message, "admin.token_file: expected a regular file, got \"%s/public\"", dir);
    EXPECT_ERROR(q(WITH("'admin': {'address': '0.0.0.0:9901', 'token_file': 'public'}")), message);
    snprintf(message, sizeof message,
             "admin.token_file: expected a token of visible ASCII characters, got other bytes in \"%s/spaced.token\"", dir);
    EXPECT_ERROR(q(WITH("'admin': {'address': '0.0.0.0:9901', 'token_file': 'spaced.token'}")), message);

    /* an absolute token_file is used as is */
    char text[PATH_MAX + 512];
    snprintf(text, sizeof text, WITH("'admin': {'address': '[::1]:9901', 'token_file': '%s/admin.token'}"), real_dir);
    struct config *config = EXPECT_OK(q(text));
    if (config != NULL) {
        CHECK_STR(config->admin.token, "secret-token");
        CHECK(config->admin.address.is_loopback);
    }
    config_unref(config);
}

static void test_static_origins(void)
{
    char message[PATH_MAX + 256];
    snprintf(message, sizeof message,
             "origins.site.static: expected an existing directory, got \"%s/missing\" (No such file or directory)", dir);
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1'}, 'site': {'static': 'missing'}")), message);
    snprintf(message, sizeof message, "origins.site.static: expected a directory, got \"%s/file.txt\" (not a directory)", dir);
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1'}, 'site': {'static': 'file.txt'}")), message);
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1'}, 'site': {'static': 'public', 'max_idle': 3}")),
                 "origins.site.max_idle: only meaningful with url; this origin is static");
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1'}, 'site': {'static': ''}")),
                 "origins.site.static: expected a directory path, got \"\"");

    /* relative paths climb from the config directory; the root is stored canonical */
    struct config *config = EXPECT_OK(q(WITH_ORIGINS("'app': {'static': './public/../public/'}")));
    if (config != NULL) {
        char expected[PATH_MAX + 16];
        snprintf(expected, sizeof expected, "%s/public", real_dir);
        CHECK_STR(config->origins[0].static_root, expected);
        CHECK_INT(config->origins[0].kind, ORIGIN_KIND_STATIC);
    }
    config_unref(config);
    config = EXPECT_OK(q(WITH_ORIGINS("'app': {'static': '/'}")));
    if (config != NULL)
        CHECK_STR(config->origins[0].static_root, "/");
    config_unref(config);
}

static void test_origin_kinds(void)
{
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1', 'static': 'public'}")),
                 "origins.app: expected exactly one of url, static or respond, got two");
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'max_idle': 2}")),
                 "origins.app: expected exactly one of url, static or respond, got none");
    struct config *mock = EXPECT_OK(q(WITH_ORIGINS(
        "'app': {'respond': {'status': 404, 'headers': {'Cache-Control': 'max-age=60', 'X-Mock': 'yes'}, 'body': 'gone'}}")));
    if (mock != NULL) {
        CHECK_INT(mock->origins[0].kind, ORIGIN_KIND_RESPOND);
        CHECK_INT(mock->origins[0].respond_status, 404);
        CHECK_INT(mock->origins[0].respond_header_count, 2);
        CHECK_STR(mock->origins[0].respond_header_names[1], "X-Mock");
        CHECK_STR(mock->origins[0].respond_header_values[1], "yes");
        CHECK_STR(mock->origins[0].respond_body, "gone");
    }
    config_unref(mock);
    mock = EXPECT_OK(q(WITH_ORIGINS("'app': {'respond': {}}")));
    if (mock != NULL) {
        CHECK_INT(mock->origins[0].respond_status, 200);
        CHECK_STR(mock->origins[0].respond_body, "");
    }
    config_unref(mock);
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'respond': {'status': 700}}")),
                 "origins.app.respond.status: expected an integer from 200 to 599, got 700");
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'respond': {'headers': {'X-A': 'a\\r\\nB: b'}}}")),
                 "origins.app.respond.headers.X-A: expected a string without CR, LF or NUL, got \"a\\u000d\\u000aB: b\"");
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'respond': {'headers': {'Content-Length': '5'}}}")),
                 "origins.app.respond.headers.Content-Length: verge frames the body itself; remove this header");
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'respond': {'headers': {'bad name': 'x'}}}")),
                 "origins.app.respond.headers: \"bad name\" is not a header name");
    struct config *faulty = EXPECT_OK(q(WITH_ORIGINS(
        "'app': {'url': 'http://127.0.0.1:9', 'faults': {'latency_ms': 200, 'error_rate': 0.25, 'reset_rate': 0.5}}")));
    if (faulty != NULL) {
        const struct config_faults *f = &faulty->origins[0].faults;
        CHECK(config_faults_active(f));
        CHECK_INT(f->latency_ms, 200);
        CHECK_INT(f->error_status, 503);
        CHECK_INT(config_fault_pick(f, 0.0), CONFIG_FAULT_ERROR);
        CHECK_INT(config_fault_pick(f, 0.2499), CONFIG_FAULT_ERROR);
        CHECK_INT(config_fault_pick(f, 0.25), CONFIG_FAULT_RESET);
        CHECK_INT(config_fault_pick(f, 0.7499), CONFIG_FAULT_RESET);
        CHECK_INT(config_fault_pick(f, 0.75), CONFIG_FAULT_NONE);
        CHECK_INT(config_fault_pick(f, 0.9999), CONFIG_FAULT_NONE);
    }
    config_unref(faulty);
    faulty = EXPECT_OK(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1:9'}")));
    if (faulty != NULL) {
        CHECK(!config_faults_active(&faulty->origins[0].faults));
        CHECK_INT(config_fault_pick(&faulty->origins[0].faults, 0.0), CONFIG_FAULT_NONE);
    }
    config_unref(faulty);
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1:9', 'faults': {'error_rate': 1.5}}")),
                 "origins.app.faults.error_rate: expected a number from 0 to 1, got 1.5");
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1:9', 'faults': {'reset_rate': '0.5'}}")),
                 "origins.app.faults.reset_rate: expected a number from 0 to 1, got \"0.5\"");
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1:9', 'faults': {'error_rate': '0'}}")),
                 "origins.app.faults.error_rate: expected a number from 0 to 1, got \"0\"");
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1:9', 'faults': {'error_rate': 0.6, 'reset_rate': 0.6}}")),
                 "origins.app.faults: error_rate + reset_rate is more than 1");
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1:9', 'faults': {'error_status': 200}}")),
                 "origins.app.faults.error_status: expected an integer from 400 to 599, got 200");
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'respond': {}, 'max_idle': 2}")),
                 "origins.app.max_idle: only meaningful with url; this origin is a fixed answer (respond)");
    struct config *https = EXPECT_OK(q(WITH_ORIGINS("'app': {'url': 'https://127.0.0.1/v1/'}")));
    if (https != NULL) {
        CHECK(https->origins[0].tls && https->origins[0].tls_verify && https->origins[0].tls_client != NULL);
        CHECK_INT(https->origins[0].port, 443);
        CHECK_STR(https->origins[0].host_header, "127.0.0.1");
        CHECK_STR(https->origins[0].path_prefix, "/v1");
        CHECK(https->origins[0].ca_file == NULL);
    }
    config_unref(https);
    https = EXPECT_OK(q(WITH_ORIGINS("'app': {'url': 'https://127.0.0.1:8443', 'tls_verify': false}")));
    if (https != NULL) {
        CHECK(https->origins[0].tls && !https->origins[0].tls_verify);
        CHECK_STR(https->origins[0].host_header, "127.0.0.1:8443");
    }
    config_unref(https);
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1', 'tls_verify': false}")),
                 "origins.app.tls_verify: only meaningful with an https url");
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'static': '.', 'ca_file': 'ca.pem'}")),
                 "origins.app.ca_file: only meaningful with url; this origin is static");
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'https://127.0.0.1', 'ca_file': '/nonexistent/ca.pem'}")),
                 "origins.app.ca_file: cannot read \"/nonexistent/ca.pem\": No such file or directory");
    EXPECT_ERROR(q(WITH_ORIGINS("'my app': {'url': 'http://127.0.0.1'}")),
                 "origins: expected names of letters, digits, '_' or '-', got \"my app\"");
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://127.0.0.1'}, 'app': {'url': 'http://127.0.0.2'}")),
                 "origins.app: duplicate key");
    EXPECT_ERROR(q(WITH("'threads': 2, 'threads': 3")), "threads: duplicate key");

    static const char *const bad_urls[] = {
        "ftp://127.0.0.1", "http://",       "http:/127.0.0.1", "http://a b",   "http://127.0.0.1:0", "http://h:65536",
        "http://u@h",      "http://h/?q=1", "http://h/#f",     "http://[::1",  "http://[::1]x",      "http://[nope]:80",
        "http://h:",       "http://h:1:2",  "http://h_x",      "127.0.0.1:80", "http://h/\\u00e9",
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(bad_urls); i++) {
        char text[512], message[512];
        snprintf(text, sizeof text, WITH_ORIGINS("'app': {'url': '%s'}"), bad_urls[i]);
        const char *shown = strcmp(bad_urls[i], "http://h/\\u00e9") == 0 ? "http://h/\xc3\xa9" : bad_urls[i];
        snprintf(message, sizeof message, "origins.app.url: expected \"http[s]://host[:port][/prefix]\", got \"%s\"", shown);
        EXPECT_ERROR(q(text), message);
    }
}

static void test_host_resolution_switch(void)
{
    config_resolve_hosts = false;
    EXPECT_ERROR(q(WITH_ORIGINS("'app': {'url': 'http://example.invalid:8080'}")),
                 "origins.app.url: cannot resolve \"example.invalid\": host name resolution is disabled "
                 "(config_resolve_hosts is false); use a numeric address");
    struct config *config = EXPECT_OK(q(WITH_ORIGINS("'app': {'url': 'http://[::1]:81'}")));
    config_unref(config);
    config_resolve_hosts = true;
}

static void test_parse_errors_have_positions(void)
{
    EXPECT_ERROR("{\n  \"threads\": 2,\n  oops\n}", "line 3, column 3: invalid JSON: lexical error: invalid char in json text");
    EXPECT_ERROR("", "line 1, column 1: invalid JSON: parse error: premature EOF");
    EXPECT_ERROR("{\"threads\": 2", "line 1, column 14: invalid JSON: parse error: premature EOF");
    EXPECT_ERROR("// c\n{\"a\": 1} x", "line 2, column 10: invalid JSON: parse error: trailing garbage");
    EXPECT_ERROR("{\"a\" 1}",
                 "line 1, column 6: invalid JSON: parse error: object key and value must be separated by a colon (':')");
    EXPECT_ERROR("{\"a\": \"\xff\"}", "line 1, column 8: invalid JSON: lexical error: invalid bytes in UTF8 string");

    char deep[200];
    memset(deep, '[', 100);
    deep[100] = '\0';
    struct config_errors errors = {0};
    CHECK(load_text(deep, &errors) == NULL);
    CHECK_INT(errors.count, 1);
    CHECK(errors.count == 1 && strstr(errors.messages[0], "invalid JSON: nested deeper than 64 levels") != NULL);
    config_errors_free(&errors);
}

static void test_all_errors_are_collected(void)
{
    struct config_errors errors = {0};
    CHECK(load_text(q("{'listen': [{'address': 'nope'}], 'threads': 0, 'origins': {'app': {'url': 'ftp://x'}},"
                      " 'behaviors': [{'path': '/x', 'origin': 'ap'}], 'extra': 1}"),
                    &errors) == NULL);
    CHECK_INT(errors.count, 6);
    CHECK(errors_contain(&errors, "listen[0].address: expected \"IPv4:port\" or \"[IPv6]:port\", got \"nope\""));
    CHECK(errors_contain(&errors, "threads: expected an integer from 1 to 256, got 0"));
    CHECK(errors_contain(&errors, "origins.app.url: expected \"http[s]://host[:port][/prefix]\", got \"ftp://x\""));
    CHECK(errors_contain(&errors, "behaviors[0].origin: unknown origin \"ap\" (known: app)"));
    CHECK(errors_contain(&errors, "behaviors[0].path: expected \"*\" for the last behavior (the default), got \"/x\""));
    CHECK(errors_contain(&errors, "extra: unknown key (known: listen, threads, origins, functions, viewer_countries, "
                                  "behaviors, access_log, function_log, admin, timeouts, cache, workers, dev)"));
    config_errors_free(&errors);

    /* the list is capped, with a note */
    struct bytebuf text = {0};
    bytebuf_appendf(&text, "{");
    for (int i = 0; i < 150; i++)
        bytebuf_appendf(&text, "\"k%d\": 1, ", i);
    bytebuf_appendf(&text, "\"threads\": 1}");
    CHECK(config_load_buffer(text.data, text.len, dir, &errors) == NULL);
    CHECK_INT(errors.count, 101);
    CHECK(errors.count == 101 && strcmp(errors.messages[100], "too many errors; only the first 100 are shown") == 0);
    config_errors_free(&errors);
    bytebuf_free(&text);
}

/* ---- cache ---------------------------------------------------------------------- */

static void test_cache_settings(void)
{
    struct config *config =
        EXPECT_OK(q("{" LISTEN ", " ORIGINS ", 'cache': {'memory_mb': 1024, 'max_object_mb': 8, 'eviction': 'lru'},\n"
                    " 'behaviors': [\n"
                    "  {'path': '/a/*', 'origin': 'app', 'cache': {'min_ttl': 5, 'default_ttl': 60, 'max_ttl': 3600,\n"
                    "   'error_ttl': 0, 'stale_while_revalidate': 30, 'stale_if_error': 86400,\n"
                    "   'key': {'query': ['page', 'lang'], 'headers': ['Accept-Language', 'X-DEVICE'],\n"
                    "           'cookies': {'except': ['tracking', 'ab']}}}},\n"
                    "  {'path': '/b/*', 'origin': 'app', 'cache': false},\n"
                    "  {'path': '/c/*', 'origin': 'app', 'cache': {}},\n"
                    "  {'path': '/d/*', 'origin': 'app', 'cache': {'key': {'query': 'all', 'cookies': 'all', 'headers': []}}},\n"
                    "  {'path': '/e/*', 'origin': 'app', 'cache': {'key': {'query': {'except': ['utm_source']},\n"
                    "                                                       'cookies': ['session'], 'headers': ['a']}}},\n"
                    "  {'path': '/f/*', 'origin': 'app', 'cache': {'key': {'query': [], 'cookies': {'except': []}}}},\n"
                    "  {'path': '*', 'origin': 'app', 'cache': {'key': {'query': 'none', 'cookies': 'none'}}}]}"));
    if (config == NULL)
        return;
    CHECK(config->cache.memory_bytes == 1024ull << 20);
    CHECK(config->cache.max_object_bytes == 8ull << 20);
    CHECK_INT(config->cache.eviction, 1);

    const struct cache_settings *a = &config->behaviors[0].cache;
    CHECK(a->enabled);
    CHECK_INT(a->min_ttl, 5);
    CHECK_INT(a->default_ttl, 60);
    CHECK_INT(a->max_ttl, 3600);
    CHECK_INT(a->error_ttl, 0);
    CHECK_INT(a->stale_while_revalidate, 30);
    CHECK_INT(a->stale_if_error, 86400);
    CHECK_INT(a->query.mode, CACHE_LIST_ONLY);
    CHECK_INT(a->query.count, 2);
    if (a->query.count == 2) {
        CHECK_STR(a->query.names[0], "page"); /* as written: the key builder sorts */
        CHECK_STR(a->query.names[1], "lang");
    }
    CHECK_INT(a->headers.mode, CACHE_LIST_ONLY);
    CHECK_INT(a->headers.count, 2);
    if (a->headers.count == 2) {
        CHECK_STR(a->headers.names[0], "accept-language");
        CHECK_STR(a->headers.names[1], "x-device");
    }
    CHECK_INT(a->cookies.mode, CACHE_LIST_EXCEPT);
    CHECK_INT(a->cookies.count, 2);
    if (a->cookies.count == 2) {
        CHECK_STR(a->cookies.names[0], "tracking");
        CHECK_STR(a->cookies.names[1], "ab");
    }

    const struct cache_settings *off = &config->behaviors[1].cache;
    CHECK(!off->enabled);
    CHECK_INT(off->default_ttl, 0);
    CHECK_INT(off->max_ttl, 0);

    check_default_cache_settings(&config->behaviors[2].cache); /* {} */

    const struct cache_settings *d = &config->behaviors[3].cache;
    CHECK_INT(d->query.mode, CACHE_LIST_ALL);
    CHECK_INT(d->cookies.mode, CACHE_LIST_ALL);
    CHECK_INT(d->headers.mode, CACHE_LIST_NONE);
    CHECK_INT(d->headers.count, 0);
    CHECK_INT(d->default_ttl, 86400);

    const struct cache_settings *e = &config->behaviors[4].cache;
    CHECK_INT(e->query.mode, CACHE_LIST_EXCEPT);
    CHECK_INT(e->query.count, 1);
    if (e->query.count == 1)
        CHECK_STR(e->query.names[0], "utm_source");
    CHECK_INT(e->cookies.mode, CACHE_LIST_ONLY);
    CHECK(e->cookies.count == 1 && strcmp(e->cookies.names[0], "session") == 0);
    CHECK(e->headers.count == 1 && strcmp(e->headers.names[0], "a") == 0);

    const struct cache_settings *f = &config->behaviors[5].cache;
    CHECK_INT(f->query.mode, CACHE_LIST_NONE);  /* no names: nothing */
    CHECK_INT(f->cookies.mode, CACHE_LIST_ALL); /* all but nothing */
    check_default_cache_settings(&config->behaviors[6].cache);
    config_unref(config);

    /* names that are fine: every tchar in a header name, the limit of 10 */
    config = EXPECT_OK(q(WITH_BEHAVIOR_CACHE("{'key': {'headers': ['!#$%&*+-.^_`|~Az09'], 'cookies': ['__Host-id'],"
                                             " 'query': ['a[]', 'b%20c', '~x']}}")));
    if (config != NULL) {
        CHECK_STR(config->behaviors[0].cache.headers.names[0], "!#$%&*+-.^_`|~az09");
        CHECK_STR(config->behaviors[0].cache.query.names[1], "b%20c");
    }
    config_unref(config);
    config = EXPECT_OK(q(WITH_BEHAVIOR_CACHE("{'key': {'headers': ['h1','h2','h3','h4','h5','h6','h7','h8','h9','h10']}}")));
    if (config != NULL)
        CHECK_INT(config->behaviors[0].cache.headers.count, 10);
    config_unref(config);
}

static void test_cache_memory_sizes(void)
{
    /* an absent max_object_mb follows a smaller memory_mb */
    struct config *config = EXPECT_OK(q(WITH("'cache': {'memory_mb': 16}")));
    if (config != NULL) {
        CHECK(config->cache.memory_bytes == 16ull << 20);
        CHECK(config->cache.max_object_bytes == 16ull << 20);
        CHECK_INT(config->cache.eviction, 0);
    }
    config_unref(config);
    config = EXPECT_OK(q(WITH("'cache': {'memory_mb': 1048576, 'max_object_mb': 65536, 'eviction': 'sieve'}")));
    if (config != NULL) {
        CHECK(config->cache.memory_bytes == 1ull << 40);
        CHECK(config->cache.max_object_bytes == 1ull << 36);
    }
    config_unref(config);
    config = EXPECT_OK(q(WITH("'cache': {'memory_mb': 1, 'max_object_mb': 1}")));
    if (config != NULL)
        CHECK(config->cache.memory_bytes == 1u << 20 && config->cache.max_object_bytes == 1u << 20);
    config_unref(config);

    EXPECT_ERROR(q(WITH("'cache': {'memory_mb': 16, 'max_object_mb': 32}")),
                 "cache.max_object_mb: expected at most memory_mb (16), got 32");
    EXPECT_ERROR(q(WITH("'cache': {'memory_mb': 0}")), "cache.memory_mb: expected an integer from 1 to 1048576, got 0");
    EXPECT_ERROR(q(WITH("'cache': {'memory_mb': 1048577}")), "cache.memory_mb: expected an integer from 1 to 1048576, got 1048577");
    EXPECT_ERROR(q(WITH("'cache': {'memory_mb': 1.5}")), "cache.memory_mb: expected an integer from 1 to 1048576, got 1.5");
    EXPECT_ERROR(q(WITH("'cache': {'max_object_mb': 0}")), "cache.max_object_mb: expected an integer from 1 to 65536, got 0");
    EXPECT_ERROR(q(WITH("'cache': {'max_object_mb': 65537}")),
                 "cache.max_object_mb: expected an integer from 1 to 65536, got 65537");
    EXPECT_ERROR(q(WITH("'cache': {'eviction': 'lfu'}")), "cache.eviction: expected one of \"sieve\", \"lru\", got \"lfu\"");
    EXPECT_ERROR(q(WITH("'cache': {'eviction': 'LRU'}")), "cache.eviction: expected one of \"sieve\", \"lru\", got \"LRU\"");
    EXPECT_ERROR(q(WITH("'cache': false")), "cache: expected an object, got false");
    EXPECT_ERROR(q(WITH("'cache': {'size': 1}")), "cache.size: unknown key (known: memory_mb, max_object_mb, eviction)");

    /* an invalid memory_mb is reported once, not again against max_object_mb */
    struct config_errors errors = {0};
    CHECK(load_text(q(WITH("'cache': {'memory_mb': 'lots', 'max_object_mb': 32}")), &errors) == NULL);
    CHECK_INT(errors.count, 1);
    config_errors_free(&errors);
}

/* CloudFront's rules: a min_ttl over 86400 raises an absent default_ttl to
 * it; a min_ttl or default_ttl over 31536000 raises an absent max_ttl to
 * default_ttl; then min_ttl <= default_ttl <= max_ttl must hold. */
static void test_cloudfront_ttl_defaulting(void)
{
    static const struct {
        const char *cache;
        long long min, default_ttl, max;
    } valid[] = {
        {"{}", 0, 86400, 31536000},
        {"{'min_ttl': 86400}", 86400, 86400, 31536000},
        {"{'min_ttl': 100000}", 100000, 100000, 31536000},
        {"{'min_ttl': 31536000}", 31536000, 31536000, 31536000},
        {"{'min_ttl': 40000000}", 40000000, 40000000, 40000000},
        {"{'min_ttl': 3153600000}", 3153600000LL, 3153600000LL, 3153600000LL},
        {"{'default_ttl': 40000000}", 0, 40000000, 40000000},
        {"{'min_ttl': 50000000, 'default_ttl': 60000000}", 50000000, 60000000, 60000000},
        {"{'min_ttl': 100000, 'max_ttl': 200000}", 100000, 100000, 200000},
        {"{'default_ttl': 5}", 0, 5, 31536000},
        {"{'default_ttl': 0}", 0, 0, 31536000},
        {"{'min_ttl': 0, 'default_ttl': 0, 'max_ttl': 0}", 0, 0, 0},
        {"{'min_ttl': 5, 'default_ttl': 10, 'max_ttl': 20}", 5, 10, 20},
        {"{'min_ttl': 7, 'default_ttl': 7, 'max_ttl': 7}", 7, 7, 7},
        {"{'max_ttl': 86400}", 0, 86400, 86400},
        {"{'default_ttl': 60, 'max_ttl': 60}", 0, 60, 60},
        {"{'min_ttl': 40000000, 'max_ttl': 50000000}", 40000000, 40000000, 50000000},
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(valid); i++) {
        char text[512];
        snprintf(text, sizeof text, WITH_BEHAVIOR_CACHE("%s"), valid[i].cache);
        struct config *config = EXPECT_OK(q(text));
        if (config == NULL)
            continue;
        const struct cache_settings *cache = &config->behaviors[0].cache;
        if (cache->min_ttl != valid[i].min || cache->default_ttl != valid[i].default_ttl || cache->max_ttl != valid[i].max)
            fprintf(stderr, "  %s: got %lld/%lld/%lld\n", valid[i].cache, (long long)cache->min_ttl, (long long)cache->default_ttl,
                    (long long)cache->max_ttl);
        CHECK(cache->min_ttl == valid[i].min);
        CHECK(cache->default_ttl == valid[i].default_ttl);
        CHECK(cache->max_ttl == valid[i].max);
        config_unref(config);
    }

    static const struct {
        const char *cache, *message;
    } invalid[] = {
        {"{'min_ttl': 100, 'default_ttl': 50}", "behaviors[0].cache.default_ttl: expected at least min_ttl (100), got 50"},
        {"{'min_ttl': 100, 'default_ttl': 50, 'max_ttl': 200}",
         "behaviors[0].cache.default_ttl: expected at least min_ttl (100), got 50"},
        {"{'min_ttl': 100, 'max_ttl': 50}", "behaviors[0].cache.max_ttl: expected at least min_ttl (100), got 50"},
        {"{'min_ttl': 200000, 'max_ttl': 100000}", "behaviors[0].cache.max_ttl: expected at least min_ttl (200000), got 100000"},
        {"{'default_ttl': 100, 'max_ttl': 50}", "behaviors[0].cache.max_ttl: expected at least default_ttl (100), got 50"},
        {"{'max_ttl': 3600}",
         "behaviors[0].cache.max_ttl: expected at least default_ttl (86400 when not set; set default_ttl too), got 3600"},
        {"{'default_ttl': 40000000, 'max_ttl': 31536000}",
         "behaviors[0].cache.max_ttl: expected at least default_ttl (40000000), got 31536000"},
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(invalid); i++) {
        char text[512];
        snprintf(text, sizeof text, WITH_BEHAVIOR_CACHE("%s"), invalid[i].cache);
        struct config_errors errors = {0};
        CHECK(load_text(q(text), &errors) == NULL);
        CHECK_INT(errors.count, 1); /* one mistake, one message */
        bool found = errors_contain(&errors, invalid[i].message);
        if (!found)
            print_errors(__LINE__, invalid[i].message, &errors);
        CHECK(found);
        config_errors_free(&errors);
    }

    /* an invalid TTL is reported once, not again by the ordering check */
    static const char *const reported_once[] = {
        "{'min_ttl': 100, 'default_ttl': 'x'}",
        "{'min_ttl': 100, 'default_ttl': -5}",
        "{'min_ttl': 100, 'max_ttl': 1.5}",
        "{'min_ttl': 99999999999, 'max_ttl': 10}",
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(reported_once); i++) {
        char text[512];
        snprintf(text, sizeof text, WITH_BEHAVIOR_CACHE("%s"), reported_once[i]);
        struct config_errors errors = {0};
        CHECK(load_text(q(text), &errors) == NULL);
        CHECK_INT(errors.count, 1);
        config_errors_free(&errors);
    }
}

static void test_cache_errors(void)
{
#define CACHE_ERROR(cache, message) EXPECT_ERROR(q(WITH_BEHAVIOR_CACHE(cache)), message)
    CACHE_ERROR("true", "behaviors[0].cache: expected an object or false, got true");
    CACHE_ERROR("null", "behaviors[0].cache: expected an object or false, got null");
    CACHE_ERROR("'on'", "behaviors[0].cache: expected an object or false, got \"on\"");
    CACHE_ERROR("{'ttl': 5}", "behaviors[0].cache.ttl: unknown key (known: min_ttl, default_ttl, max_ttl, error_ttl, "
                              "stale_while_revalidate, stale_if_error, key)");
    CACHE_ERROR("{'min_ttl': -1}", "behaviors[0].cache.min_ttl: expected an integer from 0 to 3153600000, got -1");
    CACHE_ERROR("{'max_ttl': 3153600001}", "behaviors[0].cache.max_ttl: expected an integer from 0 to 3153600000, got 3153600001");
    CACHE_ERROR("{'default_ttl': '60'}", "behaviors[0].cache.default_ttl: expected an integer from 0 to 3153600000, got \"60\"");
    CACHE_ERROR("{'error_ttl': 1e3}", "behaviors[0].cache.error_ttl: expected an integer from 0 to 3153600000, got 1e3");
    CACHE_ERROR("{'stale_while_revalidate': true}",
                "behaviors[0].cache.stale_while_revalidate: expected an integer from 0 to 3153600000, got true");
    CACHE_ERROR("{'stale_if_error': -3}", "behaviors[0].cache.stale_if_error: expected an integer from 0 to 3153600000, got -3");
    CACHE_ERROR("{'key': false}", "behaviors[0].cache.key: expected an object, got false");
    CACHE_ERROR("{'key': {'querystring': 'all'}}",
                "behaviors[0].cache.key.querystring: unknown key (known: query, headers, cookies)");
    CACHE_ERROR("{'min_ttl': 1, 'min_ttl': 2}", "behaviors[0].cache.min_ttl: duplicate key");

    /* query */
    const char *list_expected = "expected \"none\", \"all\", an array of names or {\"except\": [names]}";
    char message[512];
    snprintf(message, sizeof message, "behaviors[0].cache.key.query: %s, got \"some\"", list_expected);
    CACHE_ERROR("{'key': {'query': 'some'}}", message);
    snprintf(message, sizeof message, "behaviors[0].cache.key.query: %s, got \"None\"", list_expected);
    CACHE_ERROR("{'key': {'query': 'None'}}", message);
    snprintf(message, sizeof message, "behaviors[0].cache.key.query: %s, got 5", list_expected);
    CACHE_ERROR("{'key': {'query': 5}}", message);
    snprintf(message, sizeof message, "behaviors[0].cache.key.cookies: %s, got true", list_expected);
    CACHE_ERROR("{'key': {'cookies': true}}", message);
    CACHE_ERROR("{'key': {'query': ['a=b']}}", "behaviors[0].cache.key.query[0]: expected a query parameter name (visible ASCII "
                                               "but '&', '=' and '#'), got \"a=b\"");
    CACHE_ERROR("{'key': {'query': ['ok', '']}}", "behaviors[0].cache.key.query[1]: expected a query parameter name (visible ASCII "
                                                  "but '&', '=' and '#'), got \"\"");
    CACHE_ERROR("{'key': {'query': ['a b']}}", "behaviors[0].cache.key.query[0]: expected a query parameter name (visible ASCII "
                                               "but '&', '=' and '#'), got \"a b\"");
    CACHE_ERROR("{'key': {'query': ['a&b']}}", "behaviors[0].cache.key.query[0]: expected a query parameter name (visible ASCII "
                                               "but '&', '=' and '#'), got \"a&b\"");
    CACHE_ERROR("{'key': {'query': ['x#']}}", "behaviors[0].cache.key.query[0]: expected a query parameter name (visible ASCII "
                                              "but '&', '=' and '#'), got \"x#\"");
    CACHE_ERROR("{'key': {'query': [7]}}", "behaviors[0].cache.key.query[0]: expected a query parameter name (visible ASCII "
                                           "but '&', '=' and '#'), got 7");
    CACHE_ERROR("{'key': {'query': ['\\u00e9']}}", "behaviors[0].cache.key.query[0]: expected a query parameter name (visible "
                                                   "ASCII but '&', '=' and '#'), got \"\xc3\xa9\"");
    CACHE_ERROR("{'key': {'query': ['a', 'b', 'a']}}", "behaviors[0].cache.key.query[2]: \"a\" is listed twice");
    struct config *config = EXPECT_OK(q(WITH_BEHAVIOR_CACHE("{'key': {'query': ['a', 'A'], 'cookies': ['s', 'S']}}")));
    config_unref(config); /* query and cookie names are case-sensitive: not duplicates */
    CACHE_ERROR("{'key': {'query': ['1','2','3','4','5','6','7','8','9','10','11']}}",
                "behaviors[0].cache.key.query: expected at most 10 names (CloudFront's limit), got 11");
    CACHE_ERROR("{'key': {'query': {'except': 'utm_source'}}}",
                "behaviors[0].cache.key.query.except: expected an array of names, got \"utm_source\"");
    CACHE_ERROR("{'key': {'query': {'only': ['a']}}}", "behaviors[0].cache.key.query.only: unknown key (known: except)");
    CACHE_ERROR("{'key': {'query': {'only': ['a']}}}", "behaviors[0].cache.key.query.except: required key is missing");
    CACHE_ERROR("{'key': {'query': {'a b': 1, 'except': []}}}",
                "behaviors[0].cache.key.query.\"a b\": unknown key (known: except)");
    CACHE_ERROR("{'key': {'query': {}}}", "behaviors[0].cache.key.query.except: required key is missing");
    CACHE_ERROR("{'key': {'query': {'except': [], 'except': []}}}", "behaviors[0].cache.key.query.except: duplicate key");
    CACHE_ERROR("{'key': {'query': {'except': ['a=']}}}", "behaviors[0].cache.key.query.except[0]: expected a query parameter name "
                                                          "(visible ASCII but '&', '=' and '#'), got \"a=\"");

    /* headers */
    CACHE_ERROR("{'key': {'headers': 'all'}}", "behaviors[0].cache.key.headers: expected an array of names, got \"all\"");
    CACHE_ERROR("{'key': {'headers': {'except': ['a']}}}",
                "behaviors[0].cache.key.headers: expected an array of names, got an object");
    CACHE_ERROR("{'key': {'headers': ['Accept', 'accept']}}", "behaviors[0].cache.key.headers[1]: \"accept\" is listed twice");
    CACHE_ERROR("{'key': {'headers': ['a b']}}",
                "behaviors[0].cache.key.headers[0]: expected a header name (letters, digits and !#$%&'*+-.^_`|~), got \"a b\"");
    CACHE_ERROR("{'key': {'headers': ['x-a:']}}",
                "behaviors[0].cache.key.headers[0]: expected a header name (letters, digits and !#$%&'*+-.^_`|~), got \"x-a:\"");
    CACHE_ERROR("{'key': {'headers': ['']}}",
                "behaviors[0].cache.key.headers[0]: expected a header name (letters, digits and !#$%&'*+-.^_`|~), got \"\"");
    CACHE_ERROR("{'key': {'headers': ['a\\u0000b']}}", "behaviors[0].cache.key.headers[0]: expected a header name (letters, digits "
                                                       "and !#$%&'*+-.^_`|~), got \"a\\u0000b\"");
    CACHE_ERROR("{'key': {'headers': ['h1','h2','h3','h4','h5','h6','h7','h8','h9','h10','h11']}}",
                "behaviors[0].cache.key.headers: expected at most 10 names (CloudFront's limit), got 11");

    /* cookies */
    CACHE_ERROR("{'key': {'cookies': ['a;b']}}",
                "behaviors[0].cache.key.cookies[0]: expected a cookie name (letters, digits and !#$%&'*+-.^_`|~), got \"a;b\"");
    CACHE_ERROR("{'key': {'cookies': ['a=b']}}",
                "behaviors[0].cache.key.cookies[0]: expected a cookie name (letters, digits and !#$%&'*+-.^_`|~), got \"a=b\"");
    CACHE_ERROR("{'key': {'cookies': {'except': ['s', 's']}}}", "behaviors[0].cache.key.cookies.except[1]: \"s\" is listed twice");
    CACHE_ERROR("{'key': {'cookies': {'except': ['1','2','3','4','5','6','7','8','9','10','11']}}}",
                "behaviors[0].cache.key.cookies.except: expected at most 10 names (CloudFront's limit), got 11");
#undef CACHE_ERROR

    /* the path names the right behavior, and every problem is reported */
    struct config_errors errors = {0};
    CHECK(load_text(q("{" LISTEN ", " ORIGINS ", 'behaviors': [{'path': '/a', 'origin': 'app', 'cache': {'min_ttl': -1}},"
                      " {'path': '*', 'origin': 'app', 'cache': {'key': {'headers': ['a b'], 'cookies': 'x'}}}]}"),
                    &errors) == NULL);
    CHECK_INT(errors.count, 3);
    CHECK(errors_contain(&errors, "behaviors[0].cache.min_ttl: expected an integer from 0 to 3153600000, got -1"));
    CHECK(errors_contain(&errors, "behaviors[1].cache.key.headers[0]: expected a header name (letters, digits and "
                                  "!#$%&'*+-.^_`|~), got \"a b\""));
    config_errors_free(&errors);
}

/* ---- files ---------------------------------------------------------------------- */

static void test_load_from_file(void)
{
    write_file("verge.json", "{\n  // relative paths are relative to this file\n"
                             "  \"listen\": [{\"address\": \"127.0.0.1:8080\"}],\n"
                             "  \"origins\": {\"site\": {\"static\": \"public\"}},\n"
                             "  \"behaviors\": [{\"path\": \"*\", \"origin\": \"site\"}],\n"
                             "  \"access_log\": {\"path\": \"access.log\"},\n"
                             "  \"admin\": {\"address\": \"127.0.0.1:9901\", \"token_file\": \"admin.token\"}\n}\n");
    char path[PATH_MAX + 32], expected[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/verge.json", dir);
    struct config_errors errors = {0};
    struct config *config = config_load(path, &errors);
    CHECK(config != NULL);
    if (config != NULL) {
        CHECK_STR(config->source_path, path);
        snprintf(expected, sizeof expected, "%s/public", real_dir);
        CHECK_STR(config->origins[0].static_root, expected);
        snprintf(expected, sizeof expected, "%s/access.log", dir);
        CHECK_STR(config->access_log.path, expected);
        CHECK_STR(config->admin.token, "secret-token");
    }
    config_unref(config);

    /* a relative config path is made absolute against the working directory */
    char cwd[PATH_MAX];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(dir) == 0);
    config = config_load("verge.json", &errors);
    CHECK(config != NULL);
    if (config != NULL) {
        char here[PATH_MAX];
        CHECK(getcwd(here, sizeof here) != NULL);
        snprintf(expected, sizeof expected, "%s/verge.json", here);
        CHECK_STR(config->source_path, expected);
        snprintf(expected, sizeof expected, "%s/public", real_dir);
        CHECK_STR(config->origins[0].static_root, expected);
    }
    config_unref(config);
    CHECK(chdir(cwd) == 0);
    CHECK_INT(errors.count, 0);

    CHECK(config_load("/nonexistent/verge.json", &errors) == NULL);
    CHECK(errors_contain(&errors, "cannot read config file \"/nonexistent/verge.json\": No such file or directory"));
    config_errors_free(&errors);
    CHECK(config_load(dir, &errors) == NULL);
    CHECK_INT(errors.count, 1);
    config_errors_free(&errors);

    write_file("verge.json", "{\n  \"listen\": [{\"address\": \"127.0.0.1:8080\"}],\n  \"threads\": \"2\"\n}\n");
    CHECK(config_load(path, &errors) == NULL);
    CHECK(errors_contain(&errors, "threads: expected an integer from 1 to 256, got \"2\""));
    config_errors_free(&errors);
}

/* The shipped example must stay valid: it is what users copy. */
static void test_example_config_loads(void)
{
    const char *path = "conf/verge.example.json";
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        path = "../conf/verge.example.json";
        f = fopen(path, "r");
    }
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fclose(f);
    struct config_errors errors = {0};
    /* loaded from its place in the repository: its static root is the demo site */
    struct config *config = config_load(path, &errors);
    CHECK(config != NULL);
    for (size_t i = 0; i < errors.count; i++)
        fprintf(stderr, "  example: %s\n", errors.messages[i]);
    if (config != NULL) {
        CHECK(config->admin.enabled);
        CHECK(config->origin_count >= 2);
        CHECK(config->behavior_count >= 2);
        /* it writes out the defaults */
        CHECK(config->cache.memory_bytes == 256ull << 20);
        CHECK(config->cache.max_object_bytes == 64ull << 20);
        CHECK_INT(config->cache.eviction, 0);
        check_default_cache_settings(&config->behaviors[config->behavior_count - 1].cache);
        CHECK_INT(config->viewer_countries.range_count, 2);
        CHECK_INT(config->behaviors[0].viewer_headers,
                  VIEWER_HEADER_COUNTRY | VIEWER_HEADER_IS_MOBILE | VIEWER_HEADER_FORWARDED_PROTO);
        CHECK(!config->dev.debug_headers);
    }
    config_unref(config);
    config_errors_free(&errors);
}

/* ---- lifetime ------------------------------------------------------------------ */

static void test_refcount(void)
{
    struct config *config = EXPECT_OK(q(MINIMAL));
    if (config == NULL)
        return;
    config_ref(config);
    config_ref(config);
    CHECK_INT(atomic_load(&config->refcount), 3);
    config_unref(config);
    config_unref(config);
    CHECK_INT(atomic_load(&config->refcount), 1);
    config_unref(config); /* frees; ASan reports a leak or a double free */
    config_unref(NULL);
}

/* ---- path patterns and behaviors -------------------------------------------------- */

static void test_path_pattern_match(void)
{
    static const struct {
        const char *pattern, *path;
        bool matches;
    } cases[] = {
        /* CloudFront's examples */
        {"images/*.jpg", "/images/a/b.jpg", true},
        {"images/*.jpg", "/images/a.jpg", true},
        {"/images/*.jpg", "images/a.jpg", true},
        {"/images/*.jpg", "/images/.jpg", true},
        {"images/*.jpg", "/images/a.png", false},
        {"images/*.jpg", "/images/a.jpg.gz", false},
        {"*.jpg", "/a/b/c.jpg", true},
        {"*.jpg", "/a/b/c.JPG", false},
        {"/api/*", "/api/v1/users", true},
        {"/api/*", "/api", false},
        {"/api/*", "/api/", true},
        {"/api*", "/api", true},
        {"/api*", "/apis/x", true},
        /* case-sensitive */
        {"/Images/*", "/images/a", false},
        {"/images/*", "/IMAGES/a", false},
        /* '?' is exactly one character, '/' included */
        {"?", "/a", true},
        {"?", "/", false},
        {"?", "/ab", false},
        {"a?c", "/abc", true},
        {"a?c", "/a/c", true},
        {"a?c", "/ac", false},
        {"/file-?.txt", "/file-1.txt", true},
        {"/file-?.txt", "/file-10.txt", false},
        {"/?"
         "?/*",
         "/ab/c", true}, /* split: "??/" is a trigraph */
        {"/?"
         "?/*",
         "/a/c", false},
        /* leading slash optional on both sides */
        {"/a", "a", true},
        {"a", "/a", true},
        {"/a", "/a", true},
        {"a", "a", true},
        {"/", "", true},
        {"", "/", true},
        {"", "", true},
        /* '*' alone and mixes */
        {"*", "/", true},
        {"*", "", true},
        {"*", "/anything/at/all?not=query", true},
        {"**", "/x", true},
        {"*/x", "/a/b/x", true},
        {"*a*b*c", "/xaybzc", true},
        {"*a*b*c", "/xaybz", false},
        {"a*", "/b", false},
        {"abc", "/abcd", false},
        {"abcd", "/abc", false},
        {"*?", "/", false},
        {"*?", "/a", true},
        {"a*a*a*b", "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false},
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(cases); i++) {
        bool matches = config_path_pattern_match(slice_from_cstr(cases[i].pattern), slice_from_cstr(cases[i].path));
        if (matches != cases[i].matches)
            fprintf(stderr, "  pattern \"%s\" path \"%s\": got %d\n", cases[i].pattern, cases[i].path, matches);
        CHECK(matches == cases[i].matches);
    }

    /* no exponential blow-up: a long path against a many-star pattern */
    static char long_path[200001];
    memset(long_path, 'a', sizeof long_path - 1);
    uint64_t start = time_now_monotonic_ms();
    CHECK(!config_path_pattern_match(SLICE_LITERAL("*a*a*a*a*a*a*a*a*a*a*b"), slice_from_cstr(long_path)));
    CHECK(config_path_pattern_match(SLICE_LITERAL("*a*a*a*a*a*a*a*a*a*a*"), slice_from_cstr(long_path)));
    CHECK(time_now_monotonic_ms() - start < 2000);
}

static void test_first_matching_behavior_wins(void)
{
    struct config *config =
        EXPECT_OK(q("{" LISTEN ", 'origins': {'app': {'url': 'http://127.0.0.1'}, 'site': {'static': 'public'}},"
                    " 'behaviors': [{'path': '/api/*', 'origin': 'app'},"
                    " {'path': '/api/special', 'origin': 'site'},"
                    " {'path': '*.jpg', 'origin': 'site'},"
                    " {'path': '*', 'origin': 'app'}]}"));
    if (config == NULL)
        return;
    CHECK(config_match_behavior(config, SLICE_LITERAL("/api/special")) == &config->behaviors[0]);
    CHECK(config_match_behavior(config, SLICE_LITERAL("/api/x.jpg")) == &config->behaviors[0]);
    CHECK(config_match_behavior(config, SLICE_LITERAL("/img/a.jpg")) == &config->behaviors[2]);
    CHECK(config_match_behavior(config, SLICE_LITERAL("/img/a.png")) == &config->behaviors[3]);
    CHECK(config_match_behavior(config, SLICE_LITERAL("/")) == &config->behaviors[3]);
    CHECK(config_match_behavior(config, SLICE_LITERAL("")) == &config->behaviors[3]);
    CHECK_STR(config->origins[config_match_behavior(config, SLICE_LITERAL("/img/a.jpg"))->origin_index].name, "site");
    config_unref(config);
}

/* ---- reference ------------------------------------------------------------------- */

static void test_reference(void)
{
    struct bytebuf out = {0};
    config_write_reference(&out);
    bytebuf_append(&out, "", 1);
    CHECK(strncmp(out.data, "| key | type | default | range / values | description |\n| --- | --- | --- | --- | --- |\n", 88) == 0);
    CHECK(strstr(out.data, "\n| `threads` | integer | number of online CPUs | 1 to 256 | ") != NULL);
    CHECK(strstr(out.data, "\n| `origins.*.connect_timeout_ms` | integer | 1000 | 1 to 600000 | ") != NULL);
    CHECK(strstr(out.data, "\n| `listen` | array of objects | required | 1 to 64 entries | ") != NULL);
    CHECK(strstr(out.data, "\n| `access_log.format` | string enum | `\"json\"` | `\"json\"` | ") != NULL);
    CHECK(strstr(out.data, "\n| `access_log` | object or `false` | ") != NULL);
    CHECK(strstr(out.data, "\n| `function_log` | a file path, \"-\" or false | `\"-\"` |  | ") != NULL);
    CHECK(strstr(out.data, "\n| `cache.memory_mb` | integer | 256 | 1 to 1048576 | ") != NULL);
    CHECK(strstr(out.data, "\n| `cache.eviction` | string enum | `\"sieve\"` | `\"sieve\"`, `\"lru\"` | ") != NULL);
    CHECK(strstr(out.data, "\n| `behaviors[].cache` | object or `false` | caching on, with the defaults of its keys |  | ") !=
          NULL);
    CHECK(strstr(out.data, "\n| `behaviors[].cache.min_ttl` | integer | 0 | 0 to 3153600000 | ") != NULL);
    CHECK(strstr(out.data, "\n| `behaviors[].cache.default_ttl` | integer | 86400, or `min_ttl` when that is larger | ") != NULL);
    CHECK(strstr(out.data, "\n| `behaviors[].cache.key.query` | `\"none\"`, `\"all\"`, array of names or `{\"except\": "
                           "[names]}` | `\"none\"` | at most 10 names | ") != NULL);
    CHECK(strstr(out.data, "\n| `behaviors[].cache.key.headers` | array of names | `[]` | at most 10 names | ") != NULL);
    static const char *const keys[] = {
        "listen",
        "listen[].address",
        "threads",
        "origins",
        "origins.*.url",
        "origins.*.static",
        "origins.*.read_timeout_ms",
        "origins.*.max_idle",
        "behaviors",
        "behaviors[].path",
        "behaviors[].origin",
        "access_log.path",
        "admin",
        "admin.address",
        "admin.token_file",
        "timeouts",
        "timeouts.header_read_ms",
        "timeouts.idle_ms",
        "timeouts.send_ms",
        "timeouts.drain_ms",
        "behaviors[].cache.max_ttl",
        "behaviors[].cache.error_ttl",
        "behaviors[].cache.stale_while_revalidate",
        "behaviors[].cache.stale_if_error",
        "behaviors[].cache.key",
        "behaviors[].cache.key.cookies",
        "cache",
        "cache.max_object_mb",
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(keys); i++) {
        char needle[128];
        snprintf(needle, sizeof needle, "\n| `%s` |", keys[i]);
        CHECK(strstr(out.data, needle) != NULL);
    }
    /* every row has 5 cells: 6 unescaped pipes */
    size_t lines = 0;
    for (const char *line = out.data; *line != '\0'; line = strchr(line, '\n') + 1, lines++) {
        int pipes = 0;
        for (const char *c = line; *c != '\n'; c++)
            pipes += *c == '|' && (c == line || c[-1] != '\\');
        CHECK_INT(pipes, 6);
    }
    CHECK(lines > 20);

    struct bytebuf document = {0};
    bytebuf_appendf(&document, "# verge\n\n## Configuration\n\n");
    bytebuf_append(&document, out.data, out.len - 1);
    bytebuf_appendf(&document, "\nMore text.\n");
    CHECK(config_reference_embedded_in(slice_make(document.data, document.len)));
    CHECK(!config_reference_embedded_in(slice_make(document.data, 60)));
    CHECK(!config_reference_embedded_in(SLICE_LITERAL("")));
    bytebuf_free(&document);
    bytebuf_free(&out);
}

/* ---- edge functions, triggers, workers ------------------------------------------- */

/* MINIMAL plus "functions": {functions} and one behavior with "triggers": {triggers} */
#define WITH_FUNCTIONS(functions, triggers)                                                                                        \
    "{" LISTEN ", " ORIGINS ", 'functions': {" functions "}, 'behaviors': [{'path': '*', 'origin': 'app', 'triggers': {" triggers  \
    "}}]}"
#define FN_A "'a': {'code': 'fn.lua'}"
#define FN_AB FN_A ", 'b': {'code': 'fn.lua', 'timeout_ms': 60000, 'memory_mb': 1024}"

static void expect_ok_and_free(int line, const char *text)
{
    config_unref(expect_ok(line, text));
}

static void test_function_defaults(void)
{
    struct config *config = EXPECT_OK(q(MINIMAL));
    if (config == NULL)
        return;
    CHECK_INT(config->function_count, 0);
    CHECK_INT(config->workers.max_concurrency, 1000);
    CHECK_INT(config->workers.idle_timeout_s, 60);
    for (size_t t = 0; t < CONFIG_TRIGGER_COUNT; t++)
        CHECK(!config->behaviors[0].triggers[t].set);
    config_unref(config);

    config = EXPECT_OK(q(WITH_FUNCTIONS(FN_A, "")));
    if (config == NULL)
        return;
    CHECK_INT(config->function_count, 1);
    const struct config_function *f = &config->functions[0];
    CHECK_STR(f->name, "a");
    char expected[PATH_MAX + 16];
    snprintf(expected, sizeof expected, "%s/fn.lua", real_dir);
    char *real = realpath(f->code_path, NULL);
    CHECK(real != NULL && strcmp(real, expected) == 0);
    free(real);
    CHECK(f->code_path[0] == '/');
    CHECK_STR(f->handler, "handler");
    CHECK_INT(f->memory_mb, 128);
    CHECK_INT(f->timeout_ms, 3000);
    CHECK(!f->relaxed);
    CHECK_INT(f->env_count, 0);
    config_unref(config);

    expect_ok_and_free(__LINE__, q("{" LISTEN ", " ORIGINS ", 'functions': {}, " BEHAVIORS "}"));
    /* Compiled at load, never run: a module-style file passes. */
    expect_ok_and_free(__LINE__, q(WITH_FUNCTIONS("'m': {'code': 'module.lua', 'handler': 'handle'}", "'viewer-request': 'm'")));
}

static void test_function_keys(void)
{
    struct config *config = EXPECT_OK(
        q(WITH_FUNCTIONS("'f': {'code': 'fn.lua', 'handler': 'app.handlers._go1', 'memory_mb': 10240, 'timeout_ms': 900000, "
                         "'env': {'REALM': 'x', '_b2': ''}, 'limits': 'relaxed'}, 'g': {'code': 'fn.lua', 'memory_mb': 128, "
                         "'timeout_ms': 1, 'limits': 'lambda'}",
                         "")));
    if (config == NULL)
        return;
    CHECK_INT(config->function_count, 2);
    const struct config_function *f = &config->functions[0];
    CHECK_STR(f->handler, "app.handlers._go1");
    CHECK_INT(f->memory_mb, 10240);
    CHECK_INT(f->timeout_ms, 900000);
    CHECK(f->relaxed);
    CHECK_INT(f->env_count, 2);
    if (f->env_count == 2) {
        CHECK_STR(f->env_names[0], "REALM");
        CHECK_STR(f->env_values[0], "x");
        CHECK_STR(f->env_names[1], "_b2");
        CHECK_STR(f->env_values[1], "");
    }
    CHECK_STR(config->functions[1].name, "g");
    CHECK_INT(config->functions[1].timeout_ms, 1);
    CHECK(!config->functions[1].relaxed);
    config_unref(config);

    /* 64 env entries are fine, 65 are not */
    char text[8192], env[4096];
    size_t used = 0;
    for (int i = 0; i < 65; i++)
        used += (size_t)snprintf(env + used, sizeof env - used, "%s'V%d': 'x'", i > 0 ? ", " : "", i);
    snprintf(text, sizeof text, WITH_FUNCTIONS("'f': {'code': 'fn.lua', 'env': {%s}}", ""), env);
    EXPECT_ERROR(q(text), "functions.f.env: expected at most 64 entries, got 65");
    *strrchr(env, ',') = '\0';
    snprintf(text, sizeof text, WITH_FUNCTIONS("'f': {'code': 'fn.lua', 'env': {%s}}", ""), env);
    expect_ok_and_free(__LINE__, q(text));

    config = EXPECT_OK(q(WITH("'workers': {'max_concurrency': 100000, 'idle_timeout_s': 86400}")));
    if (config != NULL) {
        CHECK_INT(config->workers.max_concurrency, 100000);
        CHECK_INT(config->workers.idle_timeout_s, 86400);
        config_unref(config);
    }
}

static void test_function_errors(void)
{
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {}", "")), "functions.f.code: required key is missing");
    EXPECT_ERROR_PREFIX(q(WITH_FUNCTIONS("'f': {'code': 'nope.lua'}", "")), "functions.f.code: cannot read \"");
    EXPECT_ERROR_PREFIX(q(WITH_FUNCTIONS("'f': {'code': 'public'}", "")), "functions.f.code: expected a regular file, got \"");
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {'code': ''}", "")), "functions.f.code: expected a file path, got \"\"");
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {'code': 3}", "")), "functions.f.code: expected a file path, got 3");
    /* The file must compile: a syntax error is reported on the key with the file's line. */
    char compile_message[PATH_MAX + 128];
    snprintf(compile_message, sizeof compile_message, "functions.f.code: %s/syntax.lua:3: '=' expected near 'x'", dir);
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {'code': 'syntax.lua'}", "")), compile_message);
    snprintf(compile_message, sizeof compile_message, "functions.f.code: %s/bytecode.lua: bytecode is not accepted", dir);
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {'code': 'bytecode.lua'}", "")), compile_message);
    /* Each function is checked: the good one passes, the bad one is named. */
    snprintf(compile_message, sizeof compile_message, "functions.bad.code: %s/syntax.lua:3: '=' expected near 'x'", dir);
    {
        struct config_errors errors = {0};
        const char *text = q(WITH_FUNCTIONS("'good': {'code': 'fn.lua'}, 'bad': {'code': 'syntax.lua'}", ""));
        struct config *config = load_text(text, &errors);
        CHECK(config == NULL);
        CHECK_INT(errors.count, 1);
        CHECK(errors_contain(&errors, compile_message));
        if (errors.count != 1 || !errors_contain(&errors, compile_message))
            print_errors(__LINE__, compile_message, &errors);
        config_unref(config);
        config_errors_free(&errors);
    }
    static const char *const bad_handlers[] = {"\"\"", "\"1a\"", "\"a.\"", "\".a\"", "\"a..b\"", "\"a-b\"", "\"a b\"", "3"};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(bad_handlers); i++) {
        char text[1024], message[256];
        snprintf(text, sizeof text, WITH_FUNCTIONS("'f': {'code': 'fn.lua', 'handler': %s}", ""), bad_handlers[i]);
        snprintf(message, sizeof message,
                 "functions.f.handler: expected a Lua name or dotted field name (e.g. \"handler\", \"app.handle\"), got %s",
                 bad_handlers[i]);
        EXPECT_ERROR(q(text), message);
    }
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {'code': 'fn.lua', 'memory_mb': 127}", "")),
                 "functions.f.memory_mb: expected an integer from 128 to 10240, got 127");
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {'code': 'fn.lua', 'memory_mb': 10241}", "")),
                 "functions.f.memory_mb: expected an integer from 128 to 10240, got 10241");
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {'code': 'fn.lua', 'timeout_ms': 0}", "")),
                 "functions.f.timeout_ms: expected an integer from 1 to 900000, got 0");
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {'code': 'fn.lua', 'timeout_ms': 900001}", "")),
                 "functions.f.timeout_ms: expected an integer from 1 to 900000, got 900001");
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {'code': 'fn.lua', 'limits': 'none'}", "")),
                 "functions.f.limits: expected one of \"lambda\", \"relaxed\", got \"none\"");
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {'code': 'fn.lua', 'env': []}", "")),
                 "functions.f.env: expected object of strings, got an array");
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {'code': 'fn.lua', 'env': {'A': 1}}", "")), "functions.f.env.A: expected a string, got 1");
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {'code': 'fn.lua', 'env': {'1A': 'x'}}", "")),
                 "functions.f.env: expected names matching [A-Za-z_][A-Za-z0-9_]*, got \"1A\"");
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {'code': 'fn.lua', 'env': {'A-B': 'x'}}", "")),
                 "functions.f.env: expected names matching [A-Za-z_][A-Za-z0-9_]*, got \"A-B\"");
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {'code': 'fn.lua', 'env': {'A': 'x', 'A': 'y'}}", "")), "functions.f.env.A: duplicate key");
    EXPECT_ERROR(q(WITH_FUNCTIONS("'f': {'code': 'fn.lua', 'timeout': 1}", "")),
                 "functions.f.timeout: unknown key (known: code, handler, memory_mb, timeout_ms, env, limits)");
    EXPECT_ERROR(q(WITH_FUNCTIONS("'a b': {'code': 'fn.lua'}", "")),
                 "functions: expected names of letters, digits, '_' or '-', got \"a b\"");
    EXPECT_ERROR(q("{" LISTEN ", " ORIGINS ", 'functions': [], " BEHAVIORS "}"), "functions: expected an object, got an array");
    EXPECT_ERROR(q(WITH("'workers': {'max_concurrency': 0}")),
                 "workers.max_concurrency: expected an integer from 1 to 100000, got 0");
    EXPECT_ERROR(q(WITH("'workers': {'max_concurrency': 100001}")),
                 "workers.max_concurrency: expected an integer from 1 to 100000, got 100001");
    EXPECT_ERROR(q(WITH("'workers': {'idle_timeout_s': 0}")), "workers.idle_timeout_s: expected an integer from 1 to 86400, got 0");
    EXPECT_ERROR(q(WITH("'workers': {'idle_timeout_s': 86401}")),
                 "workers.idle_timeout_s: expected an integer from 1 to 86400, got 86401");
    EXPECT_ERROR(q(WITH("'workers': {'threads': 1}")), "workers.threads: unknown key (known: max_concurrency, idle_timeout_s)");
}

static void test_triggers(void)
{
    struct config *config =
        EXPECT_OK(q(WITH_FUNCTIONS(FN_AB, "'viewer-request': 'a', 'origin-request': {'function': 'b', 'include_body': true}, "
                                          "'origin-response': {'function': 'a', 'on_error': 'continue'}, "
                                          "'viewer-response': {'function': 'b', 'on_error': 'fail', 'include_body': false}")));
    if (config == NULL)
        return;
    const struct config_trigger *t = config->behaviors[0].triggers;
    CHECK(t[CONFIG_TRIGGER_VIEWER_REQUEST].set);
    CHECK_INT(t[CONFIG_TRIGGER_VIEWER_REQUEST].function_index, 0);
    CHECK(!t[CONFIG_TRIGGER_VIEWER_REQUEST].include_body);
    CHECK(!t[CONFIG_TRIGGER_VIEWER_REQUEST].continue_on_error);
    CHECK(t[CONFIG_TRIGGER_ORIGIN_REQUEST].set);
    CHECK_INT(t[CONFIG_TRIGGER_ORIGIN_REQUEST].function_index, 1);
    CHECK(t[CONFIG_TRIGGER_ORIGIN_REQUEST].include_body);
    CHECK(!t[CONFIG_TRIGGER_ORIGIN_REQUEST].continue_on_error);
    CHECK(t[CONFIG_TRIGGER_ORIGIN_RESPONSE].set);
    CHECK_INT(t[CONFIG_TRIGGER_ORIGIN_RESPONSE].function_index, 0);
    CHECK(t[CONFIG_TRIGGER_ORIGIN_RESPONSE].continue_on_error);
    CHECK(t[CONFIG_TRIGGER_VIEWER_RESPONSE].set);
    CHECK_INT(t[CONFIG_TRIGGER_VIEWER_RESPONSE].function_index, 1);
    CHECK(!t[CONFIG_TRIGGER_VIEWER_RESPONSE].continue_on_error);
    config_unref(config);

    /* only the triggers written are set */
    config = EXPECT_OK(q(WITH_FUNCTIONS(FN_A, "'origin-response': 'a'")));
    if (config != NULL) {
        CHECK(!config->behaviors[0].triggers[CONFIG_TRIGGER_VIEWER_REQUEST].set);
        CHECK(config->behaviors[0].triggers[CONFIG_TRIGGER_ORIGIN_RESPONSE].set);
        CHECK(!config->behaviors[0].triggers[CONFIG_TRIGGER_VIEWER_RESPONSE].set);
        config_unref(config);
    }
}

static void test_trigger_errors(void)
{
    EXPECT_ERROR(q(WITH_FUNCTIONS(FN_AB, "'viewer-request': 'x'")),
                 "behaviors[0].triggers.viewer-request: unknown function \"x\" (known: a, b)");
    EXPECT_ERROR(q(WITH_FUNCTIONS(FN_AB, "'origin-request': {'function': 'x'}")),
                 "behaviors[0].triggers.origin-request.function: unknown function \"x\" (known: a, b)");
    EXPECT_ERROR(q("{" LISTEN ", " ORIGINS ", 'behaviors': [{'path': '*', 'origin': 'app', 'triggers': {'viewer-request': 'x'}}]}"),
                 "behaviors[0].triggers.viewer-request: unknown function \"x\" (known: none)");
    EXPECT_ERROR(q(WITH_FUNCTIONS(FN_A, "'viewer-request': 3")),
                 "behaviors[0].triggers.viewer-request: expected a function name or {\"function\": name, \"include_body\": "
                 "bool, \"on_error\": \"fail\" or \"continue\"}, got 3");
    EXPECT_ERROR(q(WITH_FUNCTIONS(FN_A, "'viewer-request': {}")),
                 "behaviors[0].triggers.viewer-request.function: required key is missing");
    EXPECT_ERROR(q(WITH_FUNCTIONS(FN_A, "'viewer-request': {'function': 1}")),
                 "behaviors[0].triggers.viewer-request.function: expected a function name, got 1");
    EXPECT_ERROR(q(WITH_FUNCTIONS(FN_A, "'origin-response': {'function': 'a', 'include_body': true}")),
                 "behaviors[0].triggers.origin-response.include_body: only valid for viewer-request and origin-request, not "
                 "origin-response");
    EXPECT_ERROR(q(WITH_FUNCTIONS(FN_A, "'viewer-response': {'function': 'a', 'include_body': true}")),
                 "behaviors[0].triggers.viewer-response.include_body: only valid for viewer-request and origin-request, not "
                 "viewer-response");
    EXPECT_ERROR(q(WITH_FUNCTIONS(FN_A, "'viewer-request': {'function': 'a', 'include_body': 'yes'}")),
                 "behaviors[0].triggers.viewer-request.include_body: expected true or false, got \"yes\"");
    EXPECT_ERROR(q(WITH_FUNCTIONS(FN_A, "'viewer-request': {'function': 'a', 'on_error': 'ignore'}")),
                 "behaviors[0].triggers.viewer-request.on_error: expected one of \"fail\", \"continue\", got \"ignore\"");
    EXPECT_ERROR(q(WITH_FUNCTIONS(FN_A, "'viewer-request': {'function': 'a', 'body': true}")),
                 "behaviors[0].triggers.viewer-request.body: unknown key (known: function, include_body, on_error)");
    EXPECT_ERROR(q(WITH_FUNCTIONS(FN_A, "'viewer-request': {'function': 'a', 'function': 'a'}")),
                 "behaviors[0].triggers.viewer-request.function: duplicate key");
    EXPECT_ERROR(q(WITH_FUNCTIONS(FN_A, "'request': 'a'")),
                 "behaviors[0].triggers.request: unknown key (known: viewer-request, origin-request, origin-response, "
                 "viewer-response)");
    EXPECT_ERROR(q(WITH_FUNCTIONS(FN_A, "'viewer-request': 'a', 'viewer-request': 'a'")),
                 "behaviors[0].triggers.viewer-request: duplicate key");
    EXPECT_ERROR(
        q("{" LISTEN ", " ORIGINS ", 'functions': {" FN_A "}, 'behaviors': [{'path': '*', 'origin': 'app', 'triggers': []}]}"),
        "behaviors[0].triggers: expected an object, got an array");
}

/* Lambda@Edge's quotas (spec §3.1) cap the effective limits unless relaxed. */
static void test_trigger_limits_are_capped(void)
{
    struct config *config =
        EXPECT_OK(q(WITH_FUNCTIONS("'big': {'code': 'fn.lua', 'timeout_ms': 60000, 'memory_mb': 1024}, "
                                   "'mid': {'code': 'fn.lua', 'timeout_ms': 10000, 'memory_mb': 256}",
                                   "'viewer-request': 'big', 'origin-request': 'big', 'origin-response': 'mid', "
                                   "'viewer-response': 'mid'")));
    if (config == NULL)
        return;
    const struct config_trigger *t = config->behaviors[0].triggers;
    CHECK_INT(t[CONFIG_TRIGGER_VIEWER_REQUEST].timeout_ms, 5000);
    CHECK_INT(t[CONFIG_TRIGGER_VIEWER_REQUEST].memory_mb, 128);
    CHECK_INT(t[CONFIG_TRIGGER_ORIGIN_REQUEST].timeout_ms, 30000);
    CHECK_INT(t[CONFIG_TRIGGER_ORIGIN_REQUEST].memory_mb, 1024);
    CHECK_INT(t[CONFIG_TRIGGER_ORIGIN_RESPONSE].timeout_ms, 10000);
    CHECK_INT(t[CONFIG_TRIGGER_ORIGIN_RESPONSE].memory_mb, 256);
    CHECK_INT(t[CONFIG_TRIGGER_VIEWER_RESPONSE].timeout_ms, 5000);
    CHECK_INT(t[CONFIG_TRIGGER_VIEWER_RESPONSE].memory_mb, 128);
    /* the configured values stay as written */
    CHECK_INT(config->functions[0].timeout_ms, 60000);
    CHECK_INT(config->functions[0].memory_mb, 1024);
    config_unref(config);

    config = EXPECT_OK(q(WITH_FUNCTIONS("'small': {'code': 'fn.lua', 'timeout_ms': 100}, "
                                        "'free': {'code': 'fn.lua', 'timeout_ms': 60000, 'memory_mb': 1024, 'limits': 'relaxed'}",
                                        "'viewer-request': 'free', 'origin-request': 'free', 'viewer-response': 'small'")));
    if (config == NULL)
        return;
    t = config->behaviors[0].triggers;
    CHECK_INT(t[CONFIG_TRIGGER_VIEWER_REQUEST].timeout_ms, 60000);
    CHECK_INT(t[CONFIG_TRIGGER_VIEWER_REQUEST].memory_mb, 1024);
    CHECK_INT(t[CONFIG_TRIGGER_ORIGIN_REQUEST].timeout_ms, 60000);
    CHECK_INT(t[CONFIG_TRIGGER_VIEWER_RESPONSE].timeout_ms, 100);
    CHECK_INT(t[CONFIG_TRIGGER_VIEWER_RESPONSE].memory_mb, 128);
    config_unref(config);

    /* config_function_limits (what `verge invoke` uses for a trigger no behavior names) */
    struct config_function big = {.timeout_ms = 60000, .memory_mb = 1024};
    int timeout_ms, memory_mb;
    config_function_limits(&big, CONFIG_TRIGGER_VIEWER_RESPONSE, &timeout_ms, &memory_mb);
    CHECK_INT(timeout_ms, 5000);
    CHECK_INT(memory_mb, 128);
    config_function_limits(&big, CONFIG_TRIGGER_ORIGIN_RESPONSE, &timeout_ms, &memory_mb);
    CHECK_INT(timeout_ms, 30000);
    CHECK_INT(memory_mb, 1024);
    big.relaxed = true;
    config_function_limits(&big, CONFIG_TRIGGER_VIEWER_REQUEST, &timeout_ms, &memory_mb);
    CHECK_INT(timeout_ms, 60000);
    CHECK_INT(memory_mb, 1024);
}

static void test_dev_keys_and_error_lines(void)
{
    struct config_errors errors = {0};
    struct config *config = load_text("{\"listen\": [{\"address\": \"127.0.0.1:8080\"}], \"origins\": {\"app\": {\"url\": "
                                      "\"http://127.0.0.1:9000\"}}, \"behaviors\": [{\"path\": \"*\", \"origin\": \"app\"}]}",
                                      &errors);
    CHECK(config != NULL && !config->dev.trace_header);
    config_unref(config);
    config = load_text("{\"listen\": [{\"address\": \"127.0.0.1:8080\"}], \"origins\": {\"app\": {\"url\": "
                       "\"http://127.0.0.1:9000\"}}, \"behaviors\": [{\"path\": \"*\", \"origin\": \"app\"}], "
                       "\"dev\": {\"trace_header\": true}}",
                       &errors);
    CHECK(config != NULL && config->dev.trace_header);
    config_unref(config);
    CHECK(load_text("{\"dev\": {\"trace_header\": 1}}", &errors) == NULL);
    CHECK(errors_contain(&errors, "dev.trace_header: expected true or false, got 1"));
    config_errors_free(&errors);

    /* The lines errors name, as verge dev links them. */
    const char *text = "{\n"
                       "  \"listen\": [{\"address\": \"127.0.0.1:8080\"}],\n"
                       "  \"origins\": {\n"
                       "    \"app\": {\"url\": \"http://x\",\n"
                       "            \"faults\": {\"latency_ms\": 5}}\n"
                       "  },\n"
                       "  // a comment\n"
                       "  \"behaviors\": [\n"
                       "    {\"path\": \"/a\", \"origin\": \"app\"},\n"
                       "    {\"path\": \"*\",\n"
                       "     \"origin\": \"nope\"}\n"
                       "  ]\n"
                       "}\n";
    size_t len = strlen(text);
    CHECK_INT(config_locate_line(text, len, "listen"), 2);
    CHECK_INT(config_locate_line(text, len, "listen[0].address"), 2);
    CHECK_INT(config_locate_line(text, len, "origins.app.url"), 4);
    CHECK_INT(config_locate_line(text, len, "origins.app.faults.latency_ms"), 5);
    CHECK_INT(config_locate_line(text, len, "behaviors[1].origin"), 11);
    CHECK_INT(config_locate_line(text, len, "behaviors[0]"), 9);
    /* a missing key: where its object is */
    CHECK_INT(config_locate_line(text, len, "behaviors[1].cache.key"), 10);
    CHECK_INT(config_locate_line(text, len, "behaviors[7]"), 8);
    CHECK_INT(config_locate_line(text, len, "nothing"), 1);
    CHECK_INT(config_locate_line(text, len, "behaviors[x]"), 8);
    CHECK_INT(config_locate_line("{,", 2, "listen"), 0);
}

/* ---- viewer metadata -------------------------------------------------------------------- */

/* MINIMAL whose only behavior has `behavior_extra` members, plus top-level `extra` members. */
#define WITH_VIEWER(behavior_extra, extra)                                                                                         \
    "{" LISTEN ", " ORIGINS ", 'behaviors': [{'path': '*', 'origin': 'app'" behavior_extra "}]" extra "}"

static const char *country_of(const struct config *config, const char *address_text)
{
    struct viewer_address address;
    CHECK(viewer_meta_parse_address(slice_from_cstr(address_text), &address));
    const char *country = viewer_meta_lookup_country(&config->viewer_countries, &address);
    return country != NULL ? country : "(none)";
}

static void test_viewer_countries(void)
{
    struct config *config = EXPECT_OK(q(MINIMAL));
    if (config != NULL) {
        CHECK_INT(config->viewer_countries.range_count, 0);
        CHECK_INT(config->behaviors[0].viewer_headers, 0);
        CHECK(!config->dev.debug_headers);
        config_unref(config);
    }
    config = EXPECT_OK(q(WITH("'viewer_countries': {'203.0.113.0/24': 'FR', '203.0.113.128/25': 'BE', "
                              "'2001:db8::/32': 'DE', '127.0.0.0/8': 'JP', '::1/128': 'NL', '0.0.0.0/0': 'US'}")));
    if (config != NULL) {
        CHECK_INT(config->viewer_countries.range_count, 6);
        CHECK_STR(country_of(config, "203.0.113.9"), "FR");
        CHECK_STR(country_of(config, "203.0.113.129"), "BE");
        CHECK_STR(country_of(config, "2001:db8::7"), "DE");
        CHECK_STR(country_of(config, "127.0.0.1"), "JP");
        CHECK_STR(country_of(config, "::1"), "NL");
        CHECK_STR(country_of(config, "198.51.100.1"), "US");
        CHECK_STR(country_of(config, "2001:db9::1"), "(none)");
        config_unref(config);
    }
    config = EXPECT_OK(q(WITH("'viewer_countries': {}")));
    if (config != NULL) {
        CHECK_INT(config->viewer_countries.range_count, 0);
        config_unref(config);
    }

    EXPECT_ERROR(q(WITH("'viewer_countries': [{'cidr': '10.0.0.0/8', 'country': 'US'}]")),
                 "viewer_countries: expected an object of \"address/length\": \"country\", got an array");
    EXPECT_ERROR(q(WITH("'viewer_countries': {'10.0.0.0': 'US'}")),
                 "viewer_countries.\"10.0.0.0\": expected an IPv4 or IPv6 network written \"address/length\" (e.g. "
                 "\"203.0.113.0/24\", \"2001:db8::/32\")");
    EXPECT_ERROR(q(WITH("'viewer_countries': {'example.com/8': 'US'}")),
                 "viewer_countries.\"example.com/8\": expected an IPv4 or IPv6 network written \"address/length\" (e.g. "
                 "\"203.0.113.0/24\", \"2001:db8::/32\")");
    EXPECT_ERROR(q(WITH("'viewer_countries': {'10.0.0.0/33': 'US'}")),
                 "viewer_countries.\"10.0.0.0/33\": expected a prefix length from 0 to 32 for an IPv4 network");
    EXPECT_ERROR(q(WITH("'viewer_countries': {'2001:db8::/200': 'US'}")),
                 "viewer_countries.\"2001:db8::/200\": expected a prefix length from 0 to 128 for an IPv6 network");
    EXPECT_ERROR(q(WITH("'viewer_countries': {'203.0.113.7/24': 'FR'}")),
                 "viewer_countries.\"203.0.113.7/24\": the address has bits set after the /24 prefix; write the network "
                 "\"203.0.113.0/24\"");
    EXPECT_ERROR(q(WITH("'viewer_countries': {'2001:db8::1/32': 'DE'}")),
                 "viewer_countries.\"2001:db8::1/32\": the address has bits set after the /32 prefix; write the network "
                 "\"2001:db8::/32\"");
    EXPECT_ERROR(q(WITH("'viewer_countries': {'::ffff:10.0.0.0/104': 'US'}")),
                 "viewer_countries.\"::ffff:10.0.0.0/104\": an IPv4-mapped network; write it as IPv4 (\"a.b.c.d/length\"): "
                 "such clients are looked up as IPv4");
    EXPECT_ERROR(q(WITH("'viewer_countries': {'10.0.0.0/8': 'us'}")),
                 "viewer_countries.\"10.0.0.0/8\": expected a country code of two upper-case letters (ISO 3166-1 alpha-2, e.g. "
                 "\"FR\"), got \"us\"");
    EXPECT_ERROR(q(WITH("'viewer_countries': {'10.0.0.0/8': 'USA'}")),
                 "viewer_countries.\"10.0.0.0/8\": expected a country code of two upper-case letters (ISO 3166-1 alpha-2, e.g. "
                 "\"FR\"), got \"USA\"");
    EXPECT_ERROR(q(WITH("'viewer_countries': {'10.0.0.0/8': 1}")),
                 "viewer_countries.\"10.0.0.0/8\": expected a country code of two upper-case letters (ISO 3166-1 alpha-2, e.g. "
                 "\"FR\"), got 1");
    EXPECT_ERROR(q(WITH("'viewer_countries': {'2001:db8::/32': 'DE', '2001:0db8:0::/32': 'AT'}")),
                 "viewer_countries.\"2001:0db8:0::/32\": the same network as viewer_countries.\"2001:db8::/32\"");
    EXPECT_ERROR(q(WITH("'viewer_countries': {'10.0.0.0/8': 'US', '10.0.0.0/8': 'US'}")),
                 "viewer_countries.\"10.0.0.0/8\": the same network as viewer_countries.\"10.0.0.0/8\"");
    /* every bad entry is reported */
    struct config_errors errors = {0};
    CHECK(load_text(q(WITH("'viewer_countries': {'1.2.3.4/8': 'US', 'x': 'FR', '10.0.0.0/8': 'fr'}")), &errors) == NULL);
    CHECK_INT(errors.count, 3);
    config_errors_free(&errors);
}

static void test_viewer_headers(void)
{
    struct config *config =
        EXPECT_OK(q(WITH_VIEWER(", 'viewer_headers': ['CloudFront-Viewer-Country', 'cloudfront-is-mobile-viewer', "
                                "'CLOUDFRONT-FORWARDED-PROTO']",
                                "")));
    if (config != NULL) {
        CHECK_INT(config->behaviors[0].viewer_headers,
                  VIEWER_HEADER_COUNTRY | VIEWER_HEADER_IS_MOBILE | VIEWER_HEADER_FORWARDED_PROTO);
        config_unref(config);
    }
    config = EXPECT_OK(q(WITH_VIEWER(", 'viewer_headers': []", "")));
    if (config != NULL) {
        CHECK_INT(config->behaviors[0].viewer_headers, 0);
        config_unref(config);
    }
    /* a viewer header in the cache key is one the behavior asks for */
    config = EXPECT_OK(q(WITH_VIEWER(", 'viewer_headers': ['CloudFront-Is-Tablet-Viewer'], "
                                     "'cache': {'key': {'headers': ['Accept', 'CloudFront-Viewer-Country']}}",
                                     "")));
    if (config != NULL) {
        CHECK_INT(config->behaviors[0].viewer_headers, VIEWER_HEADER_COUNTRY | VIEWER_HEADER_IS_TABLET);
        config_unref(config);
    }
    config = EXPECT_OK(q(WITH_VIEWER(", 'cache': {'key': {'headers': ['cloudfront-is-smarttv-viewer']}}", "")));
    if (config != NULL) {
        CHECK_INT(config->behaviors[0].viewer_headers, VIEWER_HEADER_IS_SMARTTV);
        config_unref(config);
    }

    EXPECT_ERROR(q(WITH_VIEWER(", 'viewer_headers': ['CloudFront-Viewer-City']", "")),
                 "behaviors[0].viewer_headers[0]: expected one of CloudFront-Forwarded-Proto, CloudFront-Is-Desktop-Viewer, "
                 "CloudFront-Is-Mobile-Viewer, CloudFront-Is-SmartTV-Viewer, CloudFront-Is-Tablet-Viewer, "
                 "CloudFront-Viewer-Country, got \"CloudFront-Viewer-City\"");
    EXPECT_ERROR(q(WITH_VIEWER(", 'viewer_headers': ['CloudFront-Viewer-Country', 7]", "")),
                 "behaviors[0].viewer_headers[1]: expected one of CloudFront-Forwarded-Proto, CloudFront-Is-Desktop-Viewer, "
                 "CloudFront-Is-Mobile-Viewer, CloudFront-Is-SmartTV-Viewer, CloudFront-Is-Tablet-Viewer, "
                 "CloudFront-Viewer-Country, got 7");
    EXPECT_ERROR(q(WITH_VIEWER(", 'viewer_headers': ['CloudFront-Viewer-Country', 'cloudfront-viewer-country']", "")),
                 "behaviors[0].viewer_headers[1]: \"cloudfront-viewer-country\" is listed twice");
    EXPECT_ERROR(q(WITH_VIEWER(", 'viewer_headers': 'CloudFront-Viewer-Country'", "")),
                 "behaviors[0].viewer_headers: expected an array of CloudFront viewer header names, got "
                 "\"CloudFront-Viewer-Country\"");
    EXPECT_ERROR(q(WITH_VIEWER(", 'viewer_header': []", "")),
                 "behaviors[0].viewer_header: unknown key (known: path, origin, viewer_headers, cache, triggers)");
}

static void test_dev_switches(void)
{
    struct config *config = EXPECT_OK(q(WITH("'dev': {'debug_headers': true}")));
    if (config != NULL) {
        CHECK(config->dev.debug_headers);
        config_unref(config);
    }
    config = EXPECT_OK(q(WITH("'dev': {}")));
    if (config != NULL) {
        CHECK(!config->dev.debug_headers);
        config_unref(config);
    }
    EXPECT_ERROR(q(WITH("'dev': {'debug_headers': 'yes'}")), "dev.debug_headers: expected true or false, got \"yes\"");
    EXPECT_ERROR(q(WITH("'dev': {'debug': true}")), "dev.debug: unknown key (known: trace_header, debug_headers)");
    /* verge dev: on unless the file says otherwise */
    config_dev_mode = true;
    config = EXPECT_OK(q(MINIMAL));
    if (config != NULL) {
        CHECK(config->dev.debug_headers);
        config_unref(config);
    }
    config = EXPECT_OK(q(WITH("'dev': {'debug_headers': false}")));
    if (config != NULL) {
        CHECK(!config->dev.debug_headers);
        config_unref(config);
    }
    config_dev_mode = false;
}

int main(void)
{
    fixture_create();
    UNIT_RUN(test_dev_keys_and_error_lines);
    UNIT_RUN(test_minimal_config_takes_defaults);
    UNIT_RUN(test_full_config);
    UNIT_RUN(test_comments_are_accepted);
    UNIT_RUN(test_access_log_false_and_partial_sections);
    UNIT_RUN(test_function_log);
    UNIT_RUN(test_url_forms);
    UNIT_RUN(test_addresses);
    UNIT_RUN(test_unknown_keys);
    UNIT_RUN(test_wrong_types);
    UNIT_RUN(test_out_of_range);
    UNIT_RUN(test_missing_required);
    UNIT_RUN(test_unknown_origin);
    UNIT_RUN(test_last_behavior_must_be_star);
    UNIT_RUN(test_behavior_paths);
    UNIT_RUN(test_bad_addresses);
    UNIT_RUN(test_admin_rules);
    UNIT_RUN(test_static_origins);
    UNIT_RUN(test_origin_kinds);
    UNIT_RUN(test_host_resolution_switch);
    UNIT_RUN(test_parse_errors_have_positions);
    UNIT_RUN(test_all_errors_are_collected);
    UNIT_RUN(test_cache_settings);
    UNIT_RUN(test_cache_memory_sizes);
    UNIT_RUN(test_cloudfront_ttl_defaulting);
    UNIT_RUN(test_cache_errors);
    UNIT_RUN(test_load_from_file);
    UNIT_RUN(test_example_config_loads);
    UNIT_RUN(test_refcount);
    UNIT_RUN(test_path_pattern_match);
    UNIT_RUN(test_first_matching_behavior_wins);
    UNIT_RUN(test_reference);
    UNIT_RUN(test_function_defaults);
    UNIT_RUN(test_function_keys);
    UNIT_RUN(test_function_errors);
    UNIT_RUN(test_triggers);
    UNIT_RUN(test_trigger_errors);
    UNIT_RUN(test_trigger_limits_are_capped);
    UNIT_RUN(test_viewer_countries);
    UNIT_RUN(test_viewer_headers);
    UNIT_RUN(test_dev_switches);
    fixture_remove();
    return unit_summary();
}
