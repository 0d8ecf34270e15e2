/* test_static_origin.c — static_origin_respond against a real temporary tree.
 *
 * The tree (under /tmp, removed at the end) holds plain files with a fixed
 * mtime, directories with and without index.html, symlinks that stay inside
 * the root and ones that escape it, a FIFO, an empty file and a file dated in
 * the future. Path tests run twice: through openat2 and through the
 * realpath fallback. Permission tests need a non-root identity, so when run
 * as root they fork and drop to nobody (65534).
 */
#include "../../proxy/static_origin.h"
#include "unit.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FILE_MTIME 1700000000 /* Tue, 14 Nov 2023 22:13:20 GMT */
#define NOW 1800000000
#define HELLO "hello world\n"

static char root[4096];

/* ---- fixture ------------------------------------------------------------- */

static void write_file(const char *relative, const char *content, int64_t mtime)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", root, relative);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    fputs(content, f);
    fclose(f);
    struct timespec times[2] = {{.tv_sec = mtime}, {.tv_sec = mtime}};
    if (utimensat(AT_FDCWD, path, times, 0) != 0) {
        perror("utimensat");
        exit(2);
    }
}

static void make_dir(const char *relative, mode_t mode)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", root, relative);
    if (mkdir(path, mode) != 0 || chmod(path, mode) != 0) {
        perror(path);
        exit(2);
    }
}

static void make_symlink(const char *target, const char *relative)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", root, relative);
    if (symlink(target, path) != 0) {
        perror(path);
        exit(2);
    }
}

static void fixture_create(void)
{
    char template[] = "/tmp/verge-static-XXXXXX";
    if (mkdtemp(template) == NULL || realpath(template, root) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    chmod(root, 0755); /* the dropped-privilege child must traverse it */
    write_file("hello.txt", HELLO, FILE_MTIME);
    write_file("index.html", "<h1>root</h1>", FILE_MTIME);
    write_file("a b.txt", "space", FILE_MTIME);
    write_file("style.css", "body{}", FILE_MTIME);
    write_file("empty.bin", "", FILE_MTIME);
    write_file("future.txt", "later", NOW + 1000);
    make_dir("sub", 0755);
    write_file("sub/index.html", "sub index", FILE_MTIME);
    write_file("sub/page.html", "page", FILE_MTIME);
    make_dir("noindex", 0755);
    write_file("noindex/file.txt", "x", FILE_MTIME);
    make_dir("index_dir", 0755);
    make_dir("index_dir/index.html", 0755);
    make_dir("locked", 0700);
    write_file("locked/x.txt", "locked", FILE_MTIME);
    write_file("secret.txt", "secret", FILE_MTIME);
    char path[8192];
    snprintf(path, sizeof path, "%s/secret.txt", root);
    chmod(path, 0000);
    snprintf(path, sizeof path, "%s/fifo", root);
    if (mkfifo(path, 0644) != 0) {
        perror("mkfifo");
        exit(2);
    }
    make_symlink("hello.txt", "link_inside");
    snprintf(path, sizeof path, "%s/hello.txt", root);
    make_symlink(path, "link_abs_inside");
    make_symlink("../hello.txt", "sub/up_link");
    make_symlink("sub", "link_to_sub");
    make_symlink("/etc/passwd", "link_outside");
    make_symlink("/etc", "link_dir_outside");
    make_symlink("../../../../../../etc/passwd", "sub/relative_outside");
}

static void fixture_remove(void)
{
    char command[8300];
    snprintf(command, sizeof command, "rm -rf '%s'", root);
    if (system(command) != 0)
        fprintf(stderr, "could not remove %s\n", root);
}

/* ---- helpers ------------------------------------------------------------- */

static struct static_request request_make(const char *method, const char *path)
{
    struct static_request request = {0};
    request.method = slice_from_cstr(method);
    request.path = slice_from_cstr(path);
    return request;
}

static struct static_response respond(const struct static_request *request)
{
    struct static_response response;
    static_origin_respond(root, request, NOW, &response);
    return response;
}

static struct static_response get(const char *path)
{
    return respond(&(struct static_request){.method = SLICE_LITERAL("GET"), .path = slice_from_cstr(path)});
}

/* Reads the body the caller would send, closes the fd, and compares. */
static bool body_is(struct static_response *response, const char *expected)
{
    if (response->body_fd < 0)
        return false;
    char buffer[256] = {0};
    bool ok =
        response->body_length < sizeof buffer &&
        pread(response->body_fd, buffer, response->body_length, (off_t)response->body_offset) == (ssize_t)response->body_length &&
        response->body_length == strlen(expected) && memcmp(buffer, expected, response->body_length) == 0;
    close(response->body_fd);
    response->body_fd = -1;
    return ok;
}

static void close_body(struct static_response *response)
{
    if (response->body_fd >= 0)
        close(response->body_fd);
    response->body_fd = -1;
}

static int count_open_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    if (dir == NULL)
        return -1;
    int count = 0;
    while (readdir(dir) != NULL)
        count++;
    closedir(dir);
    return count;
}

#define CHECK_ERROR(path_literal, expected_status, expected_reason)                                                                \
    do {                                                                                                                           \
        struct static_response error_response = get(path_literal);                                                                 \
        CHECK_INT(error_response.status, expected_status);                                                                         \
        CHECK_STR(error_response.reason, expected_reason);                                                                         \
        CHECK_INT(error_response.body_fd, -1);                                                                                     \
        CHECK_STR(error_response.etag, "");                                                                                        \
        CHECK_STR(error_response.last_modified, "");                                                                               \
        close_body(&error_response);                                                                                               \
    } while (0)

#define CHECK_BODY(path_literal, expected_body)                                                                                    \
    do {                                                                                                                           \
        struct static_response ok_response = get(path_literal);                                                                    \
        CHECK_INT(ok_response.status, 200);                                                                                        \
        CHECK(body_is(&ok_response, expected_body));                                                                               \
    } while (0)

/* ---- tests --------------------------------------------------------------- */

static void test_content_types(void)
{
    static const struct {
        const char *name, *type;
    } cases[] = {
        {"a.html", "text/html; charset=utf-8"},
        {"a.htm", "text/html; charset=utf-8"},
        {"a.css", "text/css; charset=utf-8"},
        {"a.js", "text/javascript; charset=utf-8"},
        {"a.mjs", "text/javascript; charset=utf-8"},
        {"a.json", "application/json"},
        {"a.txt", "text/plain; charset=utf-8"},
        {"a.xml", "text/xml; charset=utf-8"},
        {"a.svg", "image/svg+xml"},
        {"a.png", "image/png"},
        {"a.jpg", "image/jpeg"},
        {"a.jpeg", "image/jpeg"},
        {"a.gif", "image/gif"},
        {"a.webp", "image/webp"},
        {"a.avif", "image/avif"},
        {"a.ico", "image/x-icon"},
        {"a.woff", "font/woff"},
        {"a.woff2", "font/woff2"},
        {"a.ttf", "font/ttf"},
        {"a.otf", "font/otf"},
        {"a.pdf", "application/pdf"},
        {"a.wasm", "application/wasm"},
        {"a.mp4", "video/mp4"},
        {"a.webm", "video/webm"},
        {"a.mp3", "audio/mpeg"},
        {"a.js.map", "application/json"},
        {"a.csv", "text/csv; charset=utf-8"},
        {"README.md", "text/markdown; charset=utf-8"},
        {"PHOTO.PNG", "image/png"},
        {"x/y/Index.HTML", "text/html; charset=utf-8"},
        {"noext", "application/octet-stream"},
        {"dir.d/noext", "application/octet-stream"},
        {"trailingdot.", "application/octet-stream"},
        {"a.tar.gz", "application/octet-stream"},
        {"a.exe", "application/octet-stream"},
        {"", "application/octet-stream"},
    };
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(cases); i++) {
        const char *type = static_origin_content_type(slice_from_cstr(cases[i].name));
        if (strcmp(type, cases[i].type) != 0)
            fprintf(stderr, "  content type of \"%s\"\n", cases[i].name);
        CHECK_STR(type, cases[i].type);
    }
    struct static_response response = get("/style.css");
    CHECK_STR(response.content_type, "text/css; charset=utf-8");
    close_body(&response);
    response = get("/sub/");
    CHECK_STR(response.content_type, "text/html; charset=utf-8");
    close_body(&response);
}

static void test_methods(void)
{
    const char *methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "get", "GETX", ""};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(methods); i++) {
        struct static_request request = request_make(methods[i], "/hello.txt");
        struct static_response response = respond(&request);
        CHECK_INT(response.status, 405);
        CHECK(response.allow_header);
        CHECK_INT(response.body_fd, -1);
        CHECK(response.reason != NULL && response.reason[0] != '\0');
    }
    struct static_response response = get("/hello.txt");
    CHECK(!response.allow_header);
    close_body(&response);
}

static void test_paths(void)
{
    /* served */
    CHECK_BODY("/hello.txt", HELLO);
    CHECK_BODY("//hello.txt", HELLO);
    CHECK_BODY("/./hello.txt", HELLO);
    CHECK_BODY("/sub/./page.html", "page");
    CHECK_BODY("/sub/%2e/page.html", "page");
    CHECK_BODY("/sub%2Fpage.html", "page"); /* %2F decodes to a separator */
    CHECK_BODY("/sub%2fpage.html", "page");
    CHECK_BODY("/a%20b.txt", "space");
    CHECK_BODY("/hello%2etxt", HELLO);
    CHECK_BODY("/%68ello.txt", HELLO);

    /* bad encodings */
    CHECK_ERROR("/%zz", 400, "invalid percent-encoding in path");
    CHECK_ERROR("/%4", 400, "invalid percent-encoding in path");
    CHECK_ERROR("/hello.txt%", 400, "invalid percent-encoding in path");
    CHECK_ERROR("/%g0", 400, "invalid percent-encoding in path");
    CHECK_ERROR("", 400, "path must start with /");
    CHECK_ERROR("hello.txt", 400, "path must start with /");
    CHECK_ERROR("/%00", 404, "path contains NUL");
    CHECK_ERROR("/hello.txt%00.html", 404, "path contains NUL");
    CHECK_ERROR("/%2500", 404, "not found"); /* decoded once: a file named "%00" */

    /* dot-dot in every spelling */
    CHECK_ERROR("/../etc/passwd", 404, "path contains ..");
    CHECK_ERROR("/sub/../hello.txt", 404, "path contains ..");
    CHECK_ERROR("/..", 404, "path contains ..");
    CHECK_ERROR("/sub/..", 404, "path contains ..");
    CHECK_ERROR("/%2e%2e/etc/passwd", 404, "path contains ..");
    CHECK_ERROR("/%2E%2E%2Fetc%2Fpasswd", 404, "path contains ..");
    CHECK_ERROR("/.%2e/hello.txt", 404, "path contains ..");
    CHECK_ERROR("/sub%2F..%2Fhello.txt", 404, "path contains ..");
    CHECK_ERROR("/..%2f", 404, "path contains ..");
    CHECK_ERROR("/.../", 404, "not found");                 /* "..." is an ordinary name */
    CHECK_ERROR("/%252e%252e/hello.txt", 404, "not found"); /* double encoding is decoded once only */

    /* missing, not regular, directories */
    CHECK_ERROR("/nope", 404, "not found");
    CHECK_ERROR("/hello.txt/more", 404, "not found");
    CHECK_ERROR("/noindex", 404, "directory has no index.html");
    CHECK_ERROR("/noindex/", 404, "directory has no index.html");
    CHECK_ERROR("/index_dir/", 404, "not a regular file");
    CHECK_ERROR("/fifo", 404, "not a regular file");
    CHECK_BODY("/noindex/file.txt", "x");
    CHECK_BODY("/", "<h1>root</h1>");
    CHECK_BODY("/sub", "sub index"); /* no redirect: the index is served as is */
    CHECK_BODY("/sub/", "sub index");
    CHECK_BODY("/sub//", "sub index");

    /* symlinks */
    CHECK_BODY("/link_inside", HELLO);
    CHECK_BODY("/link_abs_inside", HELLO);
    CHECK_BODY("/sub/up_link", HELLO);
    CHECK_BODY("/link_to_sub/page.html", "page");
    CHECK_BODY("/link_to_sub/", "sub index");
    CHECK_ERROR("/link_outside", 403, "path escapes the root");
    CHECK_ERROR("/link_dir_outside/passwd", 403, "path escapes the root");
    CHECK_ERROR("/link_dir_outside", 403, "path escapes the root");
    CHECK_ERROR("/sub/relative_outside", 403, "path escapes the root");
}

static void test_paths_openat2(void)
{
    static_origin_force_path_fallback(false);
    test_paths();
}

static void test_paths_realpath_fallback(void)
{
    static_origin_force_path_fallback(true);
    test_paths();
    static_origin_force_path_fallback(false);
}

/* Returns the number of failed checks in this process. */
static int permission_checks(void)
{
    int failed_before = unit_failed;
    CHECK_ERROR("/secret.txt", 403, "permission denied");
    CHECK_ERROR("/locked/x.txt", 403, "permission denied");
    CHECK_ERROR("/locked/", 403, "permission denied");
    static_origin_force_path_fallback(true);
    CHECK_ERROR("/secret.txt", 403, "permission denied");
    CHECK_ERROR("/locked/x.txt", 403, "permission denied");
    static_origin_force_path_fallback(false);
    CHECK_BODY("/hello.txt", HELLO);
    return unit_failed - failed_before;
}

static void test_permissions(void)
{
    if (geteuid() != 0) {
        permission_checks();
        return;
    }
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(100);
        _exit(permission_checks() == 0 ? 0 : 1);
    }
    int wait_status = 0;
    CHECK(child > 0 && waitpid(child, &wait_status, 0) == child);
    CHECK(WIFEXITED(wait_status));
    CHECK_INT(WEXITSTATUS(wait_status), 0);
}

static void test_validators(void)
{
    struct static_response response = get("/hello.txt");
    CHECK_INT(response.status, 200);
    CHECK_STR(response.reason, "OK");
    CHECK_STR(response.content_type, "text/plain; charset=utf-8");
    CHECK_STR(response.etag, "\"c-6553f100\"");
    CHECK_STR(response.last_modified, "Tue, 14 Nov 2023 22:13:20 GMT");
    CHECK_STR(response.content_range, "");
    CHECK_INT(response.file_size, 12);
    CHECK_INT(response.body_offset, 0);
    CHECK_INT(response.body_length, 12);
    close_body(&response);

    /* mtime in the future: Last-Modified clamped to now, ETag keeps the mtime */
    char now_text[30];
    time_format_http_date(NOW, now_text);
    response = get("/future.txt");
    CHECK_INT(response.status, 200);
    CHECK_STR(response.last_modified, now_text);
    char expected_etag[64];
    snprintf(expected_etag, sizeof expected_etag, "\"5-%llx\"", (unsigned long long)(NOW + 1000));
    CHECK_STR(response.etag, expected_etag);
    close_body(&response);

    response = get("/empty.bin");
    CHECK_INT(response.status, 200);
    CHECK_INT(response.body_length, 0);
    CHECK_STR(response.etag, "\"0-6553f100\"");
    close_body(&response);
}

static struct static_response conditional(const char *method, const char *path, const char *if_none_match,
                                          const char *if_modified_since)
{
    struct static_request request = request_make(method, path);
    request.if_none_match = slice_from_cstr(if_none_match);
    request.if_modified_since = slice_from_cstr(if_modified_since);
    return respond(&request);
}

#define CHECK_CONDITIONAL(inm, ims, expected_status)                                                                               \
    do {                                                                                                                           \
        struct static_response conditional_response = conditional("GET", "/hello.txt", inm, ims);                                  \
        CHECK_INT(conditional_response.status, expected_status);                                                                   \
        if (expected_status == 304) {                                                                                              \
            CHECK_INT(conditional_response.body_fd, -1);                                                                           \
            CHECK_INT(conditional_response.body_length, 0);                                                                        \
            CHECK_STR(conditional_response.etag, "\"c-6553f100\"");                                                                \
            CHECK_STR(conditional_response.last_modified, "Tue, 14 Nov 2023 22:13:20 GMT");                                        \
        } else {                                                                                                                   \
            CHECK(conditional_response.body_fd >= 0);                                                                              \
        }                                                                                                                          \
        close_body(&conditional_response);                                                                                         \
    } while (0)

static void test_conditionals(void)
{
    const char *lm = "Tue, 14 Nov 2023 22:13:20 GMT";
    CHECK_CONDITIONAL("\"c-6553f100\"", "", 304);
    CHECK_CONDITIONAL("W/\"c-6553f100\"", "", 304); /* weak comparison */
    CHECK_CONDITIONAL("\"x\", W/\"y\",\"c-6553f100\"", "", 304);
    CHECK_CONDITIONAL("  \"a,b\" , \"c-6553f100\"  ", "", 304); /* commas inside a tag */
    CHECK_CONDITIONAL("*", "", 304);
    CHECK_CONDITIONAL("\"other\"", "", 200);
    CHECK_CONDITIONAL("\"c-6553f10\"", "", 200);
    CHECK_CONDITIONAL("c-6553f100", "", 200);                      /* unquoted: malformed, no match */
    CHECK_CONDITIONAL("\"c-6553f100", "", 200);                    /* unterminated */
    CHECK_CONDITIONAL("\"other\"", lm, 200);                       /* If-Modified-Since ignored when If-None-Match present */
    CHECK_CONDITIONAL("", lm, 304);                                /* equal */
    CHECK_CONDITIONAL("", "Wed, 15 Nov 2023 00:00:00 GMT", 304);   /* later */
    CHECK_CONDITIONAL("", "Tue, 14 Nov 2023 22:13:19 GMT", 200);   /* earlier */
    CHECK_CONDITIONAL("", "Tuesday, 14-Nov-23 22:13:20 GMT", 304); /* RFC 850 form */
    CHECK_CONDITIONAL("", "Tue Nov 14 22:13:20 2023", 304);        /* asctime form */
    CHECK_CONDITIONAL("", "yesterday", 200);

    struct static_response response = conditional("HEAD", "/hello.txt", "\"c-6553f100\"", "");
    CHECK_INT(response.status, 304);
    CHECK_INT(response.body_fd, -1);

    /* the clamped Last-Modified is what If-Modified-Since compares with */
    char now_text[30];
    time_format_http_date(NOW, now_text);
    response = conditional("GET", "/future.txt", "", now_text);
    CHECK_INT(response.status, 304);
    CHECK_STR(response.last_modified, now_text);
    close_body(&response);

    /* a 304 wins over Range */
    struct static_request request = request_make("GET", "/hello.txt");
    request.if_none_match = SLICE_LITERAL("\"c-6553f100\"");
    request.range = SLICE_LITERAL("bytes=0-1");
    response = respond(&request);
    CHECK_INT(response.status, 304);
    CHECK_STR(response.content_range, "");
    CHECK_INT(response.body_fd, -1);
}

static struct static_response ranged(const char *method, const char *path, const char *range, const char *if_range)
{
    struct static_request request = request_make(method, path);
    request.range = slice_from_cstr(range);
    request.if_range = slice_from_cstr(if_range);
    return respond(&request);
}

#define CHECK_RANGE(range_literal, expected_range, expected_body)                                                                  \
    do {                                                                                                                           \
        struct static_response range_response = ranged("GET", "/hello.txt", range_literal, "");                                    \
        CHECK_INT(range_response.status, 206);                                                                                     \
        CHECK_STR(range_response.reason, "Partial Content");                                                                       \
        CHECK_STR(range_response.content_range, expected_range);                                                                   \
        CHECK_INT(range_response.file_size, 12);                                                                                   \
        CHECK(body_is(&range_response, expected_body));                                                                            \
    } while (0)

#define CHECK_RANGE_IGNORED(range_literal)                                                                                         \
    do {                                                                                                                           \
        struct static_response range_response = ranged("GET", "/hello.txt", range_literal, "");                                    \
        CHECK_INT(range_response.status, 200);                                                                                     \
        CHECK_STR(range_response.content_range, "");                                                                               \
        CHECK(body_is(&range_response, HELLO));                                                                                    \
    } while (0)

#define CHECK_UNSATISFIABLE(path_literal, range_literal, expected_range)                                                           \
    do {                                                                                                                           \
        struct static_response range_response = ranged("GET", path_literal, range_literal, "");                                    \
        CHECK_INT(range_response.status, 416);                                                                                     \
        CHECK_STR(range_response.content_range, expected_range);                                                                   \
        CHECK_INT(range_response.body_fd, -1);                                                                                     \
        CHECK_INT(range_response.body_length, 0);                                                                                  \
    } while (0)

static void test_ranges(void)
{
    CHECK_RANGE("bytes=0-4", "bytes 0-4/12", "hello");
    CHECK_RANGE("bytes=6-", "bytes 6-11/12", "world\n");
    CHECK_RANGE("bytes=-3", "bytes 9-11/12", "ld\n");
    CHECK_RANGE("bytes=-12", "bytes 0-11/12", HELLO);
    CHECK_RANGE("bytes=-100", "bytes 0-11/12", HELLO);
    CHECK_RANGE("bytes=5-100", "bytes 5-11/12", " world\n");
    CHECK_RANGE("bytes=11-11", "bytes 11-11/12", "\n");
    CHECK_RANGE("bytes=0-0", "bytes 0-0/12", "h");
    CHECK_RANGE("bytes=0-18446744073709551615", "bytes 0-11/12", HELLO);
    CHECK_RANGE("BYTES=0-1", "bytes 0-1/12", "he"); /* the unit is case-insensitive */
    CHECK_RANGE(" bytes=1-2 ", "bytes 1-2/12", "el");

    CHECK_UNSATISFIABLE("/hello.txt", "bytes=12-", "bytes */12");
    CHECK_UNSATISFIABLE("/hello.txt", "bytes=12-20", "bytes */12");
    CHECK_UNSATISFIABLE("/hello.txt", "bytes=100-200", "bytes */12");
    CHECK_UNSATISFIABLE("/hello.txt", "bytes=-0", "bytes */12");

    CHECK_RANGE_IGNORED("bytes=0-1,3-4"); /* multiple ranges: full 200 */
    CHECK_RANGE_IGNORED("bytes=0-1, 3-4");
    CHECK_RANGE_IGNORED("bytes=0-1,");
    CHECK_RANGE_IGNORED("bytes=5-2");
    CHECK_RANGE_IGNORED("bytes=abc");
    CHECK_RANGE_IGNORED("bytes=");
    CHECK_RANGE_IGNORED("bytes=-");
    CHECK_RANGE_IGNORED("bytes=1-2-3");
    CHECK_RANGE_IGNORED("bytes=+1-2");
    CHECK_RANGE_IGNORED("bytes=0 - 4");
    CHECK_RANGE_IGNORED("bytes=0-99999999999999999999999");
    CHECK_RANGE_IGNORED("items=0-1");
    CHECK_RANGE_IGNORED("bytes 0-1");

    /* zero-byte file: a-/a-b are unsatisfiable, a suffix gets the empty 200 */
    CHECK_UNSATISFIABLE("/empty.bin", "bytes=0-", "bytes */0");
    CHECK_UNSATISFIABLE("/empty.bin", "bytes=0-0", "bytes */0");
    CHECK_UNSATISFIABLE("/empty.bin", "bytes=-0", "bytes */0");
    struct static_response response = ranged("GET", "/empty.bin", "bytes=-5", "");
    CHECK_INT(response.status, 200);
    CHECK_INT(response.body_length, 0);
    CHECK_STR(response.content_range, "");
    close_body(&response);

    /* a directory's index takes ranges too */
    response = ranged("GET", "/sub/", "bytes=0-2", "");
    CHECK_INT(response.status, 206);
    CHECK(body_is(&response, "sub"));
}

#define CHECK_IF_RANGE(if_range_literal, expected_status)                                                                          \
    do {                                                                                                                           \
        struct static_response if_range_response = ranged("GET", "/hello.txt", "bytes=0-4", if_range_literal);                     \
        CHECK_INT(if_range_response.status, expected_status);                                                                      \
        CHECK(body_is(&if_range_response, expected_status == 206 ? "hello" : HELLO));                                              \
    } while (0)

static void test_if_range(void)
{
    CHECK_IF_RANGE("\"c-6553f100\"", 206);
    CHECK_IF_RANGE(" \"c-6553f100\" ", 206);
    CHECK_IF_RANGE("\"other\"", 200);
    CHECK_IF_RANGE("W/\"c-6553f100\"", 200); /* strong comparison: weak never matches */
    CHECK_IF_RANGE("Tue, 14 Nov 2023 22:13:20 GMT", 206);
    CHECK_IF_RANGE("Tue, 14 Nov 2023 22:13:21 GMT", 200); /* exact match only */
    CHECK_IF_RANGE("Tue, 14 Nov 2023 22:13:19 GMT", 200);
    CHECK_IF_RANGE("garbage", 200);

    /* If-Range without Range does nothing */
    struct static_response response = ranged("GET", "/hello.txt", "", "\"other\"");
    CHECK_INT(response.status, 200);
    CHECK(body_is(&response, HELLO));

    /* a failing If-Range also hides an unsatisfiable range */
    response = ranged("GET", "/hello.txt", "bytes=100-", "\"other\"");
    CHECK_INT(response.status, 200);
    CHECK(body_is(&response, HELLO));
}

static void test_head(void)
{
    struct static_response get_response = get("/hello.txt");
    struct static_request request = request_make("HEAD", "/hello.txt");
    struct static_response head_response = respond(&request);
    CHECK_INT(head_response.status, 200);
    CHECK_INT(head_response.body_fd, -1);
    CHECK_INT(head_response.body_length, get_response.body_length);
    CHECK_INT(head_response.file_size, get_response.file_size);
    CHECK_STR(head_response.etag, get_response.etag);
    CHECK_STR(head_response.last_modified, get_response.last_modified);
    CHECK_STR(head_response.content_type, get_response.content_type);
    close_body(&get_response);

    head_response = ranged("HEAD", "/hello.txt", "bytes=0-4", "");
    CHECK_INT(head_response.status, 206);
    CHECK_INT(head_response.body_fd, -1);
    CHECK_INT(head_response.body_offset, 0);
    CHECK_INT(head_response.body_length, 5);
    CHECK_STR(head_response.content_range, "bytes 0-4/12");

    head_response = ranged("HEAD", "/hello.txt", "bytes=50-", "");
    CHECK_INT(head_response.status, 416);
    CHECK_INT(head_response.body_fd, -1);

    request = request_make("HEAD", "/nope");
    head_response = respond(&request);
    CHECK_INT(head_response.status, 404);
    CHECK_INT(head_response.body_fd, -1);

    request = request_make("HEAD", "/sub");
    head_response = respond(&request);
    CHECK_INT(head_response.status, 200);
    CHECK_INT(head_response.body_length, 9);
    CHECK_INT(head_response.body_fd, -1);
}

static void test_no_fd_leak(void)
{
    static const char *paths[] = {"/hello.txt",    "/nope",
                                  "/link_outside", "/link_dir_outside/passwd",
                                  "/noindex/",     "/index_dir/",
                                  "/fifo",         "/%2e%2e/x",
                                  "/%00",          "/%zz",
                                  "/sub",          "/secret.txt",
                                  "/empty.bin",    "/link_abs_inside",
                                  "/hello.txt/x",  "/sub/relative_outside"};
    static const char *ranges[] = {"", "bytes=0-1", "bytes=100-", "bytes=0-1,2-3"};
    static const char *methods[] = {"GET", "HEAD", "POST"};
    int before = count_open_fds();
    CHECK(before > 0);
    for (int fallback = 0; fallback < 2; fallback++) {
        static_origin_force_path_fallback(fallback == 1);
        for (int round = 0; round < 50; round++)
            for (size_t p = 0; p < VERGE_ARRAY_SIZE(paths); p++)
                for (size_t r = 0; r < VERGE_ARRAY_SIZE(ranges); r++)
                    for (size_t m = 0; m < VERGE_ARRAY_SIZE(methods); m++) {
                        struct static_request request = request_make(methods[m], paths[p]);
                        request.range = slice_from_cstr(ranges[r]);
                        request.if_none_match = slice_from_cstr(round % 2 ? "\"c-6553f100\"" : "");
                        struct static_response response = respond(&request);
                        bool has_body = response.status == 200 || response.status == 206;
                        if (!(has_body && methods[m][0] == 'G'))
                            CHECK_INT(response.body_fd, -1);
                        close_body(&response);
                    }
    }
    static_origin_force_path_fallback(false);
    CHECK_INT(count_open_fds(), before);
}

int main(void)
{
    log_threshold = LOG_ERROR;
    fixture_create();
    UNIT_RUN(test_content_types);
    UNIT_RUN(test_methods);
    UNIT_RUN(test_paths_openat2);
    UNIT_RUN(test_paths_realpath_fallback);
    UNIT_RUN(test_permissions);
    UNIT_RUN(test_validators);
    UNIT_RUN(test_conditionals);
    UNIT_RUN(test_ranges);
    UNIT_RUN(test_if_range);
    UNIT_RUN(test_head);
    UNIT_RUN(test_no_fd_leak);
    fixture_remove();
    return unit_summary();
}
