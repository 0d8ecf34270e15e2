/* static_origin.c — answers GET/HEAD from a directory on disk.
 *
 * Order of decisions (each step may end the request):
 *   method (405) → percent-decode once (400 bad escape, 404 NUL) → split on
 *   '/' after decoding, so %2F is a separator and "%2e%2e" is a ".." segment
 *   (404) → open beneath the root (403 escape/permission, 404 missing or not a
 *   regular file) → directory: its index.html, with or without a trailing
 *   slash, never a listing → validators → If-None-Match / If-Modified-Since
 *   (304) → Range / If-Range (206, 416, or 200 when ignored); the last two
 *   steps are http_conditional.c, which the cache shares.
 *
 * Confinement: the file is opened with openat2(RESOLVE_BENEATH) relative to an
 * O_PATH fd of the root, so the kernel refuses any resolution (symlink or
 * otherwise) that leaves the root, with no check-then-open race. Because
 * RESOLVE_BENEATH also refuses absolute symlinks, even ones whose target lies
 * inside the root, an EXDEV answer is re-checked with realpath(); when the
 * canonical path is inside the root, that canonical path is opened again with
 * RESOLVE_NO_SYMLINKS so a symlink swapped in meanwhile cannot widen access.
 * Kernels without openat2 (ENOSYS, remembered) and seccomp filters answering
 * EPERM use realpath + prefix check + open(O_NOFOLLOW); there an intermediate
 * directory swapped for a symlink between the two calls is a residual race.
 *
 * Files are opened O_NONBLOCK so a FIFO in the root cannot block the worker
 * (as nginx does); the flag is cleared again once fstat says regular file.
 *
 * Invariant: every return path with status other than 200/206 leaves
 * out->body_fd == -1 and has closed whatever it opened; HEAD likewise.
 * No global state but the "openat2 is missing" flag (atomic, thread-safe).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "static_origin.h"

#include "http_conditional.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
#define INDEX_NAME "index.html"
#define ERROR_CONTENT_TYPE "text/plain; charset=utf-8"

static atomic_bool openat2_missing;
static atomic_bool openat2_disabled_for_tests;

void static_origin_force_path_fallback(bool enabled)
{
    atomic_store(&openat2_disabled_for_tests, enabled);
}

/* ---- content types ------------------------------------------------------- */

struct content_type_entry {
    const char *extension;
    const char *content_type;
};

static const struct content_type_entry content_types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"xml", "text/xml; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"pdf", "application/pdf"},
    {"wasm", "application/wasm"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
};

const char *static_origin_content_type(slice_t file_name)
{
    /* Only the last path component counts: "a.d/file" has no extension. */
    size_t start = file_name.len;
    while (start > 0 && file_name.ptr[start - 1] != '/')
        start--;
    size_t dot = file_name.len;
    while (dot > start && file_name.ptr[dot - 1] != '.')
        dot--;
    if (dot == start)
        return "application/octet-stream";
    slice_t extension = slice_make(file_name.ptr + dot, file_name.len - dot);
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(content_types); i++)
        if (slice_equal_nocase(extension, slice_from_cstr(content_types[i].extension)))
            return content_types[i].content_type;
    return "application/octet-stream";
}

/* ---- path handling ------------------------------------------------------- */

/* Decodes %XX once. Returns 0, or the error status with *reason set. */
static int percent_decode(slice_t raw, char *out, size_t out_size, size_t *out_len, const char **reason)
{
    size_t n = 0;
    for (size_t i = 0; i < raw.len; i++) {
        char c = raw.ptr[i];
        if (c == '%') {
            int high = i + 2 < raw.len ? ascii_hex_value(raw.ptr[i + 1]) : -1;
            int low = i + 2 < raw.len ? ascii_hex_value(raw.ptr[i + 2]) : -1;
            if (high < 0 || low < 0) {
                *reason = "invalid percent-encoding in path";
                return 400;
            }
            c = (char)(high * 16 + low);
            i += 2;
        }
        if (c == '\0') {
            *reason = "path contains NUL";
            return 404;
        }
        if (n + 1 >= out_size) {
            *reason = "path too long";
            return 404;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    *out_len = n;
    return 0;
}

/* Rebuilds the decoded path as "seg/seg/seg" (no leading slash; "" for the
 * root), dropping empty and "." segments and refusing "..". */
static int normalize_segments(const char *decoded, size_t decoded_len, char *out, size_t out_size, const char **reason)
{
    size_t n = 0;
    size_t i = 0;
    while (i < decoded_len) {
        size_t start = i;
        while (i < decoded_len && decoded[i] != '/')
            i++;
        size_t segment_len = i - start;
        i++; /* the '/' (or one past the end) */
        if (segment_len == 0 || (segment_len == 1 && decoded[start] == '.'))
            continue;
        if (segment_len == 2 && decoded[start] == '.' && decoded[start + 1] == '.') {
            *reason = "path contains ..";
            return 404;
        }
        if (n + (n > 0) + segment_len + 1 > out_size) {
            *reason = "path too long";
            return 404;
        }
        if (n > 0)
            out[n++] = '/';
        memcpy(out + n, decoded + start, segment_len);
        n += segment_len;
    }
    out[n] = '\0';
    return 0;
}

/* ---- opening beneath the root -------------------------------------------- */

static int openat2_beneath(int root_fd, const char *relative, uint64_t resolve)
{
#ifdef SYS_openat2
    struct open_how how = {.flags = OPEN_FLAGS, .resolve = resolve};
    return (int)syscall(SYS_openat2, root_fd, relative, &how, sizeof how);
#else
    (void)root_fd;
    (void)relative;
    (void)resolve;
    errno = ENOSYS;
    return -1;
#endif
}

/* When `path` is `root` or below it, returns the remainder without its
 * leading '/' ("" for the root itself); NULL otherwise. */
static const char *path_below_root(const char *root, const char *path)
{
    size_t root_len = strlen(root);
    if (root_len == 1 && root[0] == '/')
        return path + 1;
    if (strncmp(path, root, root_len) != 0)
        return NULL;
    if (path[root_len] == '\0')
        return path + root_len;
    if (path[root_len] == '/')
        return path + root_len + 1;
    return NULL;
}

/* Canonicalizes root/relative and opens it only if it lies inside the root.
 * On failure returns -1 with errno; EXDEV means "escapes the root". */
static int open_by_realpath(const char *root, const char *relative, int root_fd, bool use_openat2)
{
    char full[PATH_MAX * 2];
    char canonical_root[PATH_MAX];
    char canonical[PATH_MAX];
    if ((size_t)snprintf(full, sizeof full, "%s/%s", root, relative) >= sizeof full) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (realpath(root, canonical_root) == NULL || realpath(full, canonical) == NULL)
        return -1;
    const char *below = path_below_root(canonical_root, canonical);
    if (below == NULL) {
        errno = EXDEV;
        return -1;
    }
    int fd;
    if (use_openat2)
        fd = openat2_beneath(root_fd, below[0] ? below : ".", RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
    else
        fd = open(canonical, OPEN_FLAGS | O_NOFOLLOW);
    /* A symlink where realpath saw none: something changed under us; refuse. */
    if (fd < 0 && (errno == ELOOP || errno == EXDEV))
        errno = EXDEV;
    return fd;
}

static int open_under_root(int root_fd, const char *root, const char *relative)
{
    bool try_openat2 = root_fd >= 0 && !atomic_load(&openat2_missing) && !atomic_load(&openat2_disabled_for_tests);
    if (try_openat2) {
        int fd = openat2_beneath(root_fd, relative[0] ? relative : ".", RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
        if (fd >= 0)
            return fd;
        if (errno == EXDEV)
            return open_by_realpath(root, relative, root_fd, true);
        if (errno == ENOSYS)
            atomic_store(&openat2_missing, true);
        else if (errno != EPERM) /* EPERM: maybe a seccomp filter; the fallback gives the real answer */
            return -1;
    }
    return open_by_realpath(root, relative, -1, false);
}

/* ---- response helpers ---------------------------------------------------- */

static void respond_error(struct static_response *out, int status, const char *reason)
{
    out->status = status;
    out->reason = reason;
    out->body_fd = -1;
    out->body_offset = 0;
    out->body_length = 0;
    out->file_size = 0;
    out->content_type = ERROR_CONTENT_TYPE;
    out->last_modified[0] = '\0';
    out->etag[0] = '\0';
    out->content_range[0] = '\0';
}

static void respond_open_errno(struct static_response *out, int error, const char *root, const char *relative)
{
    switch (error) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
        respond_error(out, 404, "not found");
        break;
    case EXDEV:
        respond_error(out, 403, "path escapes the root");
        break;
    case EACCES:
    case EPERM:
        respond_error(out, 403, "permission denied");
        break;
    case ELOOP:
        respond_error(out, 404, "too many levels of symbolic links");
        break;
    case ENXIO: /* a socket file, or a device without a driver */
        respond_error(out, 404, "not a regular file");
        break;
    default:
        log_warn("static origin: cannot open \"%s/%s\": %s", root, relative, strerror(error));
        respond_error(out, 500, "cannot open the file");
        break;
    }
}

/* ---- the request --------------------------------------------------------- */

/* Opens the regular file for `relative` (a directory's index.html), or fills
 * an error response and returns -1. */
static int open_regular_file(int root_fd, const char *root, char *relative, size_t relative_size, struct stat *st,
                             struct static_response *out)
{
    int fd = open_under_root(root_fd, root, relative);
    if (fd < 0) {
        respond_open_errno(out, errno, root, relative);
        return -1;
    }
    if (fstat(fd, st) != 0) {
        int error = errno;
        close(fd);
        respond_open_errno(out, error, root, relative);
        return -1;
    }
    if (S_ISDIR(st->st_mode)) {
        close(fd);
        size_t len = strlen(relative);
        if (len + 1 + sizeof INDEX_NAME > relative_size) {
            respond_error(out, 404, "path too long");
            return -1;
        }
        if (len > 0)
            relative[len++] = '/';
        memcpy(relative + len, INDEX_NAME, sizeof INDEX_NAME);
        fd = open_under_root(root_fd, root, relative);
        if (fd < 0) {
            if (errno == ENOENT)
                respond_error(out, 404, "directory has no index.html");
            else
                respond_open_errno(out, errno, root, relative);
            return -1;
        }
        if (fstat(fd, st) != 0) {
            int error = errno;
            close(fd);
            respond_open_errno(out, error, root, relative);
            return -1;
        }
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        respond_error(out, 404, "not a regular file");
        return -1;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0)
        (void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return fd;
}

void static_origin_respond(const char *root, const struct static_request *request, int64_t now, struct static_response *out)
{
    memset(out, 0, sizeof *out);
    respond_error(out, 500, "internal error");

    bool is_head = slice_equal(request->method, SLICE_LITERAL("HEAD"));
    if (!is_head && !slice_equal(request->method, SLICE_LITERAL("GET"))) {
        respond_error(out, 405, "method not allowed");
        out->allow_header = true;
        return;
    }
    if (request->path.len == 0 || request->path.ptr[0] != '/') {
        respond_error(out, 400, "path must start with /");
        return;
    }

    char decoded[PATH_MAX];
    size_t decoded_len = 0;
    const char *reason = NULL;
    int status = percent_decode(request->path, decoded, sizeof decoded, &decoded_len, &reason);
    if (status != 0) {
        respond_error(out, status, reason);
        return;
    }
    char relative[PATH_MAX + sizeof "/" INDEX_NAME];
    status = normalize_segments(decoded, decoded_len, relative, PATH_MAX, &reason);
    if (status != 0) {
        respond_error(out, status, reason);
        return;
    }

    int root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0) {
        log_warn("static origin: cannot open root \"%s\": %s", root, strerror(errno));
        respond_error(out, 500, "cannot open the root directory");
        return;
    }
    struct stat st;
    int fd = open_regular_file(root_fd, root, relative, sizeof relative, &st, out);
    close(root_fd);
    if (fd < 0)
        return;

    /* Validators. A Last-Modified in the future (clock skew, touch -d) would
     * make caches treat the file as fresh-forever-ish and If-Modified-Since
     * never match, so it is clamped to now; the ETag keeps the real mtime. */
    uint64_t size = (uint64_t)st.st_size;
    int64_t mtime = (int64_t)st.st_mtim.tv_sec;
    int64_t last_modified = mtime > now ? now : mtime;
    out->reason = "OK";
    out->status = 200;
    out->file_size = size;
    out->content_type = static_origin_content_type(slice_from_cstr(relative));
    time_format_http_date(last_modified, out->last_modified);
    snprintf(out->etag, sizeof out->etag, "\"%" PRIx64 "-%" PRIx64 "\"", size, (uint64_t)mtime);
    out->body_fd = fd;
    out->body_offset = 0;
    out->body_length = size;

    /* Conditionals and ranges (RFC 9110 §13.2.2, §14): shared with the cache. */
    struct http_conditional_input conditional = {
        .method = request->method,
        .if_none_match = request->if_none_match,
        .if_modified_since = request->if_modified_since,
        .range = request->range,
        .if_range = request->if_range,
        .etag = slice_from_cstr(out->etag),
        .last_modified = last_modified,
        .size = size,
    };
    struct http_conditional_result decision;
    http_evaluate_conditionals(&conditional, &decision);
    out->status = decision.status;
    out->body_offset = decision.offset;
    out->body_length = decision.length;
    memcpy(out->content_range, decision.content_range, sizeof out->content_range);
    switch (decision.status) {
    case 206:
        out->reason = "Partial Content";
        break;
    case 304:
        out->reason = "Not Modified";
        break;
    case 412:
        out->reason = "precondition failed";
        out->content_type = ERROR_CONTENT_TYPE;
        break;
    case 416:
        out->reason = "range not satisfiable";
        out->content_type = ERROR_CONTENT_TYPE; /* describes the reason body, not the file */
        break;
    default:
        break;
    }

    if (is_head || (out->status != 200 && out->status != 206)) {
        close(out->body_fd);
        out->body_fd = -1;
    }
}
