/* static_origin.h — answers a request from a directory on disk ("static"
 * origins): path resolution that cannot escape the root, Content-Type by
 * extension, validators and conditionals, single byte ranges.
 *
 * static_origin_respond decides the whole response head and opens the file;
 * the caller streams [body_offset, body_offset + body_length) from body_fd and
 * closes it. It does filesystem I/O (open, fstat) but no socket I/O; `now` is
 * injected so the decisions are unit-tested with a fixed clock.
 */
#ifndef VERGE_STATIC_ORIGIN_H
#define VERGE_STATIC_ORIGIN_H

#include "base.h"

/* The parts of a request a static origin looks at. Absent headers are empty
 * slices. `path` is the raw (still percent-encoded) URL path, no query. */
struct static_request {
    slice_t method;
    slice_t path;
    slice_t if_none_match;
    slice_t if_modified_since;
    slice_t range;
    slice_t if_range;
};

struct static_response {
    int status; /* 200, 206, 304, 400, 403, 404, 405, 416; 500 if the root or a file cannot be opened for an unexpected reason
                   (EMFILE, EIO) */
    const char *reason; /* why, for errors (logged and used as the body), e.g. "path escapes the root" */
    int body_fd;        /* -1 when there is no body to send (HEAD, 304, errors) */
    uint64_t body_offset;
    uint64_t body_length; /* bytes to send; also the Content-Length (for HEAD: what GET would send) */
    uint64_t file_size;
    const char *content_type; /* static string */
    char last_modified[30];   /* IMF-fixdate, "" for errors */
    char etag[64];            /* strong ETag, e.g. "\"5f3a-1c2\"" (size-mtime in hex), "" for errors */
    char content_range[96];   /* for 206: "bytes a-b/size"; for 416: "bytes *\/size"; else "" */
    bool allow_header;        /* 405: send "Allow: GET, HEAD" */
};

/* Resolves `request->path` under `root` (an absolute canonical directory),
 * and fills `out`. GET and HEAD only (405 otherwise). A directory serves its
 * index.html. Percent-decoding happens once; a decoded path containing a NUL,
 * or a ".." segment (also encoded as %2e%2e), answers 404; a resolved path
 * (after symlinks) outside the root answers 403. Never returns an open fd on
 * an error status. */
void static_origin_respond(const char *root, const struct static_request *request, int64_t now, struct static_response *out);

/* The Content-Type for a file name, by extension (case-insensitive);
 * "application/octet-stream" when unknown. */
const char *static_origin_content_type(slice_t file_name);

/* Tests only: when enabled, skip openat2 and use the realpath + prefix-check
 * path that kernels without openat2 (before 5.6) get. */
void static_origin_force_path_fallback(bool enabled);

#endif
