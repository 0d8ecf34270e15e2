/* test_access_log.c — JSON escaping, the line format (keys in order, nulls,
 * number formats), switching files, turning the log off, and that shutdown
 * writes out everything queued. Lines are validated with yajl_tree_parse,
 * which also rejects invalid UTF-8. The function log (the same writer
 * machinery, a tab-separated line format) is checked on its own and running
 * beside the access log. */
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "../../proxy/access_log.h"
#include "unit.h"

static const char *const expected_keys[] = {"time",        "request_id", "client_ip", "protocol",      "tls_version",
                                            "tls_cipher",  "method",     "uri",       "status",        "bytes",
                                            "duration_ms", "behavior",   "origin",    "origin_status", "origin_ms"};

static char temp_dir[64];

static char *read_file(const char *path)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL)
        return NULL;
    struct bytebuf buf = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, file)) > 0)
        bytebuf_append(&buf, chunk, n);
    fclose(file);
    bytebuf_append(&buf, "", 1);
    return buf.data;
}

static char *escape(const char *s, size_t len)
{
    struct bytebuf out = {0};
    access_log_append_json_string(&out, slice_make(s, len));
    bytebuf_append(&out, "", 1);
    return out.data;
}

#define CHECK_ESCAPE(literal, expected)                                                                                            \
    do {                                                                                                                           \
        char *escaped = escape(literal, sizeof(literal) - 1);                                                                      \
        CHECK_STR(escaped, expected);                                                                                              \
        free(escaped);                                                                                                             \
    } while (0)

static void test_json_escaping(void)
{
    CHECK_ESCAPE("", "\"\"");
    CHECK_ESCAPE("plain /path?q=1", "\"plain /path?q=1\"");
    CHECK_ESCAPE("a\"b\\c", "\"a\\\"b\\\\c\"");
    CHECK_ESCAPE("\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\"");
    CHECK_ESCAPE("\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"");
    CHECK_ESCAPE("nul\0byte", "\"nul\\u0000byte\"");
    /* Valid UTF-8 is copied. */
    CHECK_ESCAPE("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    /* Invalid UTF-8: each offending byte becomes \u00XX. */
    CHECK_ESCAPE("\xff", "\"\\u00ff\"");
    CHECK_ESCAPE("\xc3", "\"\\u00c3\"");                                  /* truncated at the end */
    CHECK_ESCAPE("\xc3x", "\"\\u00c3x\"");                                /* bad continuation */
    CHECK_ESCAPE("\xc0\xaf", "\"\\u00c0\\u00af\"");                       /* overlong '/' */
    CHECK_ESCAPE("\xe0\x80\xaf", "\"\\u00e0\\u0080\\u00af\"");            /* overlong 3-byte */
    CHECK_ESCAPE("\xed\xa0\x80", "\"\\u00ed\\u00a0\\u0080\"");            /* UTF-16 surrogate */
    CHECK_ESCAPE("\xf4\x90\x80\x80", "\"\\u00f4\\u0090\\u0080\\u0080\""); /* above U+10FFFF */
    CHECK_ESCAPE("\xf0\x9f\x98", "\"\\u00f0\\u009f\\u0098\"");            /* truncated 4-byte */
    CHECK_ESCAPE("a\x80"
                 "b",
                 "\"a\\u0080b\""); /* lone continuation */
}

static struct access_log_entry sample_entry(void)
{
    return (struct access_log_entry){
        .time = 1795831200.123, /* 2026-11-28T02:00:00.123Z */
        .request_id = SLICE_LITERAL("req-1"),
        .client_ip = "127.0.0.1",
        .protocol = "HTTP/1.1",
        .tls_version = "TLSv1.3",
        .tls_cipher = "TLS_AES_128_GCM_SHA256",
        .method = SLICE_LITERAL("GET"),
        .uri = SLICE_LITERAL("/index.html?a=1"),
        .status = 200,
        .bytes = 1234,
        .duration_ms = 12.3456,
        .behavior = "/static/*",
        .origin = "site",
        .origin_status = 200,
        .origin_ms = 3.5,
    };
}

/* Parses one line and checks it is an object with exactly the expected keys
 * in order. Returns the tree (to free with yajl_tree_free) or NULL. */
static yajl_val parse_line(const char *line)
{
    char error[256];
    yajl_val tree = yajl_tree_parse(line, error, sizeof error);
    if (tree == NULL) {
        fprintf(stderr, "not JSON (%s): %s\n", error, line);
        CHECK(tree != NULL);
        return NULL;
    }
    CHECK(YAJL_IS_OBJECT(tree));
    if (!YAJL_IS_OBJECT(tree)) {
        yajl_tree_free(tree);
        return NULL;
    }
    CHECK_INT(tree->u.object.len, VERGE_ARRAY_SIZE(expected_keys));
    for (size_t i = 0; i < tree->u.object.len && i < VERGE_ARRAY_SIZE(expected_keys); i++)
        CHECK_STR(tree->u.object.keys[i], expected_keys[i]);
    return tree;
}

static yajl_val field(yajl_val tree, const char *key)
{
    const char *path[] = {key, NULL};
    return yajl_tree_get(tree, path, yajl_t_any);
}

/* Splits text into lines in place; returns the count (at most max). */
static size_t split_lines(char *text, char **lines, size_t max)
{
    size_t count = 0;
    for (char *p = text; *p != '\0' && count < max;) {
        char *end = strchr(p, '\n');
        CHECK(end != NULL); /* every line is terminated */
        if (end == NULL)
            break;
        *end = '\0';
        lines[count++] = p;
        p = end + 1;
    }
    return count;
}

static void test_lines_in_file(void)
{
    char path[128], error[256] = "";
    snprintf(path, sizeof path, "%s/access.log", temp_dir);
    CHECK_INT(access_log_configure(path, error, sizeof error), 0);
    /* A path that cannot be opened fails and keeps the current file. */
    char bad_path[160];
    snprintf(bad_path, sizeof bad_path, "%s/missing-dir/x.log", temp_dir);
    CHECK_INT(access_log_configure(bad_path, error, sizeof error), -1);
    CHECK(strstr(error, "access_log.path") != NULL && strstr(error, "missing-dir") != NULL);

    struct access_log_entry entry = sample_entry();
    access_log_write(&entry);

    /* Nasty strings everywhere a string goes; no origin response. */
    static const char nasty_uri[] = "/a\"b\\c\n\r\t\x01\x7f/\xff\xfe/caf\xc3\xa9/\xc3/\xed\xa0\x80?q=\"'<>&\0z";
    struct access_log_entry nasty = {
        .time = 0.9996, /* rounds up to the next second */
        .request_id = SLICE_LITERAL("id\"\\"),
        .client_ip = NULL,
        .method = SLICE_LITERAL("G\xc0T"),
        .uri = slice_make(nasty_uri, sizeof nasty_uri - 1),
        .status = 400,
        .bytes = 0,
        .duration_ms = 0.0004,
        .behavior = NULL,
        .origin = NULL,
        .origin_status = -1,
        .origin_ms = -1,
    };
    access_log_write(&nasty);

    enum { MANY = 5000 };
    for (int i = 0; i < MANY; i++) {
        struct access_log_entry numbered = sample_entry();
        char id[32];
        snprintf(id, sizeof id, "many-%d", i);
        numbered.request_id = slice_from_cstr(id);
        /* a millisecond apart (0.2 ms past each, clear of rounding), over 5 seconds */
        numbered.time = 1795831200.0 + i * 0.001 + 0.0002;
        access_log_write(&numbered);
    }
    access_log_shutdown();

    char *text = read_file(path);
    CHECK(text != NULL);
    if (text == NULL)
        return;
    /* The first line, byte for byte. */
    const char *first_expected =
        "{\"time\":\"2026-11-28T02:00:00.123Z\",\"request_id\":\"req-1\",\"client_ip\":\"127.0.0.1\",\"protocol\":\"HTTP/1.1\","
        "\"tls_version\":\"TLSv1.3\",\"tls_cipher\":\"TLS_AES_128_GCM_SHA256\",\"method\":\"GET\","
        "\"uri\":\"/index.html?a=1\",\"status\":200,\"bytes\":1234,\"duration_ms\":12.346,\"behavior\":\"/static/*\","
        "\"origin\":\"site\",\"origin_status\":200,\"origin_ms\":3.500}\n";
    CHECK(strncmp(text, first_expected, strlen(first_expected)) == 0);

    static char *lines[MANY + 10];
    size_t count = split_lines(text, lines, VERGE_ARRAY_SIZE(lines));
    CHECK_INT(count, MANY + 2);
    for (size_t i = 0; i < count; i++) {
        yajl_val tree = parse_line(lines[i]);
        if (tree == NULL)
            continue;
        if (i == 1) {
            CHECK_STR(YAJL_GET_STRING(field(tree, "time")), "1970-01-01T00:00:01.000Z");
            CHECK_STR(YAJL_GET_STRING(field(tree, "request_id")), "id\"\\");
            CHECK(YAJL_IS_NULL(field(tree, "client_ip")));
            /* Invalid bytes come back as the code points U+0080..U+00FF. */
            CHECK_STR(YAJL_GET_STRING(field(tree, "method")), "G\xc3\x80T");
            const char *uri = YAJL_GET_STRING(field(tree, "uri"));
            /* (yajl's string ends at the escaped NUL.) */
            CHECK_STR(uri, "/a\"b\\c\n\r\t\x01\x7f/\xc3\xbf\xc3\xbe/caf\xc3\xa9/\xc3\x83/\xc3\xad\xc2\xa0\xc2\x80?q=\"'<>&");
            CHECK(YAJL_IS_INTEGER(field(tree, "status")) && YAJL_GET_INTEGER(field(tree, "status")) == 400);
            CHECK(YAJL_IS_NULL(field(tree, "behavior")));
            CHECK(YAJL_IS_NULL(field(tree, "origin")));
            CHECK(YAJL_IS_NULL(field(tree, "origin_status")));
            CHECK(YAJL_IS_NULL(field(tree, "origin_ms")));
            CHECK(strstr(lines[i], "\"duration_ms\":0.000,") != NULL);
        }
        if (i >= 2) {
            char id[32];
            snprintf(id, sizeof id, "many-%zu", i - 2);
            CHECK_STR(YAJL_GET_STRING(field(tree, "request_id")), id);
            char time[64]; /* the cached second and the milliseconds, across second boundaries */
            snprintf(time, sizeof time, "2026-11-28T02:00:%02zu.%03zuZ", (i - 2) / 1000, (i - 2) % 1000);
            CHECK_STR(YAJL_GET_STRING(field(tree, "time")), time);
        }
        yajl_tree_free(tree);
    }
    free(text);
    unlink(path);
}

/* Lines written before a switch stay in the old file; after it go to the new
 * one; with the log off nothing is written. */
static void test_switch_files_and_off(void)
{
    char first[128], second[128], error[256] = "";
    snprintf(first, sizeof first, "%s/first.log", temp_dir);
    snprintf(second, sizeof second, "%s/second.log", temp_dir);
    struct access_log_entry entry = sample_entry();

    CHECK_INT(access_log_configure(first, error, sizeof error), 0);
    entry.request_id = SLICE_LITERAL("to-first");
    access_log_write(&entry);
    CHECK_INT(access_log_configure(first, error, sizeof error), 0); /* same path: no-op */
    CHECK_INT(access_log_configure(second, error, sizeof error), 0);
    entry.request_id = SLICE_LITERAL("to-second");
    access_log_write(&entry);
    CHECK_INT(access_log_configure(NULL, error, sizeof error), 0);
    entry.request_id = SLICE_LITERAL("to-nowhere");
    access_log_write(&entry);
    access_log_shutdown();

    char *first_text = read_file(first);
    char *second_text = read_file(second);
    CHECK(first_text != NULL && second_text != NULL);
    if (first_text != NULL && second_text != NULL) {
        CHECK(strstr(first_text, "\"to-first\"") != NULL);
        CHECK(strstr(first_text, "\"to-second\"") == NULL);
        CHECK(strstr(second_text, "\"to-second\"") != NULL);
        CHECK(strstr(second_text, "\"to-first\"") == NULL);
        CHECK(strstr(first_text, "to-nowhere") == NULL && strstr(second_text, "to-nowhere") == NULL);
        char *lines[4];
        CHECK_INT(split_lines(first_text, lines, 4), 1);
        CHECK_INT(split_lines(second_text, lines, 4), 1);
    }
    free(first_text);
    free(second_text);
    unlink(first);
    unlink(second);
}

/* Many switches in a row (more than the writer's queue of switches, likely
 * before the writer runs once) lose no line. */
static void test_many_switches(void)
{
    char paths[3][128], error[256] = "";
    for (int i = 0; i < 3; i++)
        snprintf(paths[i], sizeof paths[i], "%s/switch-%d.log", temp_dir, i);
    enum { SWITCHES = 20 };
    for (int i = 0; i < SWITCHES; i++) {
        CHECK_INT(access_log_configure(paths[i % 3], error, sizeof error), 0);
        struct access_log_entry entry = sample_entry();
        char id[32];
        snprintf(id, sizeof id, "switch-%d", i);
        entry.request_id = slice_from_cstr(id);
        access_log_write(&entry);
    }
    access_log_shutdown();
    size_t total = 0;
    for (int i = 0; i < 3; i++) {
        char *text = read_file(paths[i]);
        CHECK(text != NULL);
        if (text == NULL)
            continue;
        char *lines[SWITCHES + 1];
        size_t count = split_lines(text, lines, SWITCHES + 1);
        for (size_t j = 0; j < count; j++) {
            yajl_val tree = parse_line(lines[j]);
            yajl_tree_free(tree);
        }
        total += count;
        free(text);
        unlink(paths[i]);
    }
    CHECK_INT(total, SWITCHES);
}

/* The writer flushes on its own within ~100 ms, without shutdown. */
static void test_background_flush(void)
{
    char path[128], error[256] = "";
    snprintf(path, sizeof path, "%s/flush.log", temp_dir);
    CHECK_INT(access_log_configure(path, error, sizeof error), 0);
    struct access_log_entry entry = sample_entry();
    access_log_write(&entry);
    bool appeared = false;
    for (int i = 0; i < 200 && !appeared; i++) { /* up to 2 s */
        usleep(10 * 1000);
        char *text = read_file(path);
        appeared = text != NULL && strchr(text, '\n') != NULL;
        free(text);
    }
    CHECK(appeared);
    access_log_shutdown();
    unlink(path);
}

/* ---- the function log ---------------------------------------------------- */

/* "2026-11-28T02:00:00.123Z": digits where digits go, the separators, and
 * within a few seconds of `now`. */
static bool is_recent_iso8601_ms(const char *text, size_t len, time_t now)
{
    static const char pattern[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (len != sizeof pattern - 1)
        return false;
    for (size_t i = 0; i < len; i++)
        if (pattern[i] == 'd' ? !(text[i] >= '0' && text[i] <= '9') : text[i] != pattern[i])
            return false;
    struct tm tm = {0};
    if (strptime(text, "%Y-%m-%dT%H:%M:%S", &tm) == NULL)
        return false;
    time_t when = timegm(&tm);
    return when >= now - 5 && when <= now + 5;
}

/* Checks one function-log line: "<time>\t<name>\t<text>" (newline removed). */
static void check_function_line(const char *line, const char *name, const char *text, time_t now)
{
    const char *tab = strchr(line, '\t');
    CHECK(tab != NULL);
    if (tab == NULL)
        return;
    CHECK(is_recent_iso8601_ms(line, (size_t)(tab - line), now));
    const char *rest = tab + 1;
    size_t name_len = strlen(name);
    CHECK(strncmp(rest, name, name_len) == 0 && rest[name_len] == '\t');
    if (strncmp(rest, name, name_len) == 0 && rest[name_len] == '\t')
        CHECK_STR(rest + name_len + 1, text);
}

static void test_function_log_lines(void)
{
    char path[128], error[256] = "";
    snprintf(path, sizeof path, "%s/functions.log", temp_dir);
    char bad_path[160];
    snprintf(bad_path, sizeof bad_path, "%s/missing-dir/f.log", temp_dir);
    CHECK_INT(function_log_configure(bad_path, error, sizeof error), -1);
    CHECK(strncmp(error, "function_log: ", 14) == 0 && strstr(error, "missing-dir") != NULL);
    CHECK_INT(function_log_configure(path, error, sizeof error), 0);

    time_t now = time(NULL);
    function_log_write(SLICE_LITERAL("auth"), SLICE_LITERAL("hello from auth"));
    /* CR and LF become spaces; tabs and other bytes are kept as they are. */
    function_log_write(SLICE_LITERAL("auth"), SLICE_LITERAL("two\nlines\r\nand\ta tab"));
    function_log_write(SLICE_LITERAL("rewrite"), SLICE_LITERAL(""));
    function_log_write(SLICE_LITERAL("rewrite"), SLICE_LITERAL("REPORT RequestId: 1\tDuration: 4.16 ms\tMemory Size: 128 MB\t"));
    enum { MANY = 3000 };
    for (int i = 0; i < MANY; i++) {
        char text[32];
        snprintf(text, sizeof text, "many-%d", i);
        function_log_write(SLICE_LITERAL("loop"), slice_from_cstr(text));
    }
    function_log_shutdown();

    char *text = read_file(path);
    CHECK(text != NULL);
    if (text == NULL)
        return;
    static char *lines[MANY + 10];
    size_t count = split_lines(text, lines, VERGE_ARRAY_SIZE(lines));
    CHECK_INT(count, MANY + 4);
    if (count == MANY + 4) {
        check_function_line(lines[0], "auth", "hello from auth", now);
        check_function_line(lines[1], "auth", "two lines  and\ta tab", now);
        check_function_line(lines[2], "rewrite", "", now);
        check_function_line(lines[3], "rewrite", "REPORT RequestId: 1\tDuration: 4.16 ms\tMemory Size: 128 MB\t", now);
        for (int i = 0; i < MANY; i++) {
            char expected[32];
            snprintf(expected, sizeof expected, "many-%d", i);
            check_function_line(lines[4 + i], "loop", expected, now);
        }
    }
    free(text);
    unlink(path);
}

/* A batch (the worker pool's way): lines collected with a prefix, queued at
 * once in order, among lines written directly; nothing is kept while off. */
static void test_function_log_batch(void)
{
    char path[128], error[256] = "";
    snprintf(path, sizeof path, "%s/batch.log", temp_dir);
    struct function_log_batch batch = {0};
    function_log_batch_add(&batch, SLICE_LITERAL("fn"), SLICE_LITERAL("r1\tINFO\t"), SLICE_LITERAL("dropped: the log is off"));
    CHECK_INT(batch.lines.len, 0);
    CHECK_INT(batch.entries, 0);
    CHECK_INT(function_log_configure(path, error, sizeof error), 0);

    time_t now = time(NULL);
    function_log_write(SLICE_LITERAL("fn"), SLICE_LITERAL("before"));
    function_log_batch_add(&batch, SLICE_LITERAL("fn"), (slice_t){NULL, 0}, SLICE_LITERAL("START RequestId: r1 Version: 1"));
    /* one line per '\n'; CR (and LF in the name or prefix) become spaces */
    function_log_batch_add(&batch, SLICE_LITERAL("fn"), SLICE_LITERAL("r1\tINFO\t"), SLICE_LITERAL("one\ntwo\r\n"));
    function_log_batch_add(&batch, SLICE_LITERAL("f\nn"), SLICE_LITERAL("r\r1\t"), SLICE_LITERAL("x"));
    char long_text[100];
    memset(long_text, 'y', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    long_text[40] = '\r';
    function_log_batch_add(&batch, SLICE_LITERAL("fn"), (slice_t){NULL, 0}, slice_from_cstr(long_text));
    /* lines the caller built: one each, one time stamp, the name still scrubbed */
    slice_t report[] = {SLICE_LITERAL("END RequestId: r1"), SLICE_LITERAL("REPORT RequestId: r1\tDuration: 1.00 ms\t")};
    function_log_batch_add_lines(&batch, SLICE_LITERAL("f\rn"), report, 2);
    CHECK_INT(batch.entries, 5);
    function_log_batch_queue(&batch);
    CHECK_INT(batch.lines.len, 0);
    CHECK_INT(batch.entries, 0);
    CHECK(batch.lines.cap > 0); /* kept for the next pass */
    function_log_write(SLICE_LITERAL("fn"), SLICE_LITERAL("after"));
    function_log_batch_queue(&batch); /* empty: nothing */
    /* A batch that grew past 256 KiB gives its room back once queued. */
    static char big_text[300 * 1024];
    memset(big_text, 'z', sizeof big_text - 1);
    function_log_batch_add(&batch, SLICE_LITERAL("fn"), (slice_t){NULL, 0}, slice_from_cstr(big_text));
    function_log_batch_queue(&batch);
    CHECK(batch.lines.cap == 0 && batch.lines.data == NULL);
    function_log_shutdown();
    bytebuf_free(&batch.lines);

    char *text = read_file(path);
    CHECK(text != NULL);
    if (text == NULL)
        return;
    char *lines[16];
    size_t count = split_lines(text, lines, VERGE_ARRAY_SIZE(lines));
    CHECK_INT(count, 11);
    if (count == 11) {
        long_text[40] = ' ';
        check_function_line(lines[0], "fn", "before", now);
        check_function_line(lines[1], "fn", "START RequestId: r1 Version: 1", now);
        check_function_line(lines[2], "fn", "r1\tINFO\tone", now);
        check_function_line(lines[3], "fn", "r1\tINFO\ttwo ", now);
        check_function_line(lines[4], "fn", "r1\tINFO\t", now);
        check_function_line(lines[5], "f n", "r 1\tx", now);
        check_function_line(lines[6], "fn", long_text, now);
        check_function_line(lines[7], "f n", "END RequestId: r1", now);
        check_function_line(lines[8], "f n", "REPORT RequestId: r1\tDuration: 1.00 ms\t", now);
        CHECK(strncmp(lines[7], lines[8], 24) == 0); /* one time stamp */
        check_function_line(lines[9], "fn", "after", now);
        CHECK(strlen(lines[10]) > sizeof big_text - 1 && strstr(lines[10], "\tfn\tzzz") != NULL);
    }
    free(text);
    unlink(path);
}

/* Both logs at once, each to its own file, lines interleaved from several
 * threads: every line lands in its own log, none in the other. */
struct both_logs_thread {
    int index;
};

enum { BOTH_THREADS = 4, BOTH_LINES = 500 };

static void *write_both_logs(void *argument)
{
    struct both_logs_thread *thread = argument;
    for (int i = 0; i < BOTH_LINES; i++) {
        char id[48];
        snprintf(id, sizeof id, "t%d-line-%d", thread->index, i);
        struct access_log_entry entry = sample_entry();
        entry.request_id = slice_from_cstr(id);
        access_log_write(&entry);
        function_log_write(SLICE_LITERAL("fn"), slice_from_cstr(id));
    }
    return NULL;
}

static void test_both_logs_at_once(void)
{
    char access_path[128], function_path[128], error[256] = "";
    snprintf(access_path, sizeof access_path, "%s/both-access.log", temp_dir);
    snprintf(function_path, sizeof function_path, "%s/both-functions.log", temp_dir);
    CHECK_INT(access_log_configure(access_path, error, sizeof error), 0);
    CHECK_INT(function_log_configure(function_path, error, sizeof error), 0);

    pthread_t threads[BOTH_THREADS];
    struct both_logs_thread arguments[BOTH_THREADS];
    for (int i = 0; i < BOTH_THREADS; i++) {
        arguments[i].index = i;
        CHECK_INT(pthread_create(&threads[i], NULL, write_both_logs, &arguments[i]), 0);
    }
    for (int i = 0; i < BOTH_THREADS; i++)
        pthread_join(threads[i], NULL);
    /* Shutting one down leaves the other running. */
    access_log_shutdown();
    function_log_write(SLICE_LITERAL("fn"), SLICE_LITERAL("after the access log stopped"));
    function_log_shutdown();

    char *access_text = read_file(access_path);
    char *function_text = read_file(function_path);
    CHECK(access_text != NULL && function_text != NULL);
    if (access_text != NULL && function_text != NULL) {
        CHECK(strstr(access_text, "\tfn\t") == NULL);
        CHECK(strstr(function_text, "{\"time\"") == NULL);
        static char *lines[BOTH_THREADS * BOTH_LINES + 10];
        size_t access_count = split_lines(access_text, lines, VERGE_ARRAY_SIZE(lines));
        CHECK_INT(access_count, BOTH_THREADS * BOTH_LINES);
        for (size_t i = 0; i < access_count; i++)
            yajl_tree_free(parse_line(lines[i]));
        size_t function_count = split_lines(function_text, lines, VERGE_ARRAY_SIZE(lines));
        CHECK_INT(function_count, BOTH_THREADS * BOTH_LINES + 1);
        /* Each thread's lines are in its order. */
        int next[BOTH_THREADS] = {0};
        bool in_order = true;
        for (size_t i = 0; i + 1 < function_count; i++) {
            int thread = -1, line = -1;
            const char *id = strstr(lines[i], "\tfn\t");
            if (id == NULL || sscanf(id, "\tfn\tt%d-line-%d", &thread, &line) != 2 || thread < 0 || thread >= BOTH_THREADS ||
                line != next[thread]) {
                in_order = false;
                break;
            }
            next[thread]++;
        }
        CHECK(in_order);
        if (function_count > 0)
            CHECK(strstr(lines[function_count - 1], "\tfn\tafter the access log stopped") != NULL);
    }
    free(access_text);
    free(function_text);
    unlink(access_path);
    unlink(function_path);
}

/* A reconfigure switches files (lines before it stay in the old one); off
 * writes nothing; the access log is not affected. */
static void test_function_log_switch(void)
{
    char first[128], second[128], access_path[128], error[256] = "";
    snprintf(first, sizeof first, "%s/functions-1.log", temp_dir);
    snprintf(second, sizeof second, "%s/functions-2.log", temp_dir);
    snprintf(access_path, sizeof access_path, "%s/beside.log", temp_dir);
    CHECK_INT(access_log_configure(access_path, error, sizeof error), 0);

    CHECK_INT(function_log_configure(first, error, sizeof error), 0);
    function_log_write(SLICE_LITERAL("f"), SLICE_LITERAL("to-first"));
    CHECK_INT(function_log_configure(first, error, sizeof error), 0); /* same path: no-op */
    CHECK_INT(function_log_configure(second, error, sizeof error), 0);
    function_log_write(SLICE_LITERAL("f"), SLICE_LITERAL("to-second"));
    struct access_log_entry entry = sample_entry();
    entry.request_id = SLICE_LITERAL("access-line");
    access_log_write(&entry);
    CHECK_INT(function_log_configure(NULL, error, sizeof error), 0);
    function_log_write(SLICE_LITERAL("f"), SLICE_LITERAL("to-nowhere"));
    /* Back on after off: the same file again, appended to. */
    CHECK_INT(function_log_configure(first, error, sizeof error), 0);
    function_log_write(SLICE_LITERAL("f"), SLICE_LITERAL("to-first-again"));
    function_log_shutdown();
    access_log_shutdown();

    char *first_text = read_file(first);
    char *second_text = read_file(second);
    char *access_text = read_file(access_path);
    CHECK(first_text != NULL && second_text != NULL && access_text != NULL);
    if (first_text != NULL && second_text != NULL && access_text != NULL) {
        CHECK(strstr(first_text, "\tf\tto-first\n") != NULL);
        CHECK(strstr(first_text, "\tf\tto-first-again\n") != NULL);
        CHECK(strstr(first_text, "to-second") == NULL);
        CHECK(strstr(second_text, "\tf\tto-second\n") != NULL);
        CHECK(strstr(second_text, "to-first") == NULL);
        CHECK(strstr(first_text, "to-nowhere") == NULL && strstr(second_text, "to-nowhere") == NULL);
        char *lines[4];
        CHECK_INT(split_lines(first_text, lines, 4), 2);
        CHECK_INT(split_lines(second_text, lines, 4), 1);
        CHECK(strstr(access_text, "\"access-line\"") != NULL);
        CHECK_INT(split_lines(access_text, lines, 4), 1);
    }
    free(first_text);
    free(second_text);
    free(access_text);
    unlink(first);
    unlink(second);
    unlink(access_path);
}

int main(void)
{
    snprintf(temp_dir, sizeof temp_dir, "/tmp/verge-test-access-log-XXXXXX");
    if (mkdtemp(temp_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    UNIT_RUN(test_json_escaping);
    UNIT_RUN(test_lines_in_file);
    UNIT_RUN(test_switch_files_and_off);
    UNIT_RUN(test_many_switches);
    UNIT_RUN(test_background_flush);
    UNIT_RUN(test_function_log_lines);
    UNIT_RUN(test_function_log_batch);
    UNIT_RUN(test_both_logs_at_once);
    UNIT_RUN(test_function_log_switch);
    rmdir(temp_dir);
    return unit_summary();
}
