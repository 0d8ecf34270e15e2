/* http_conditional.h — a viewer's conditional and range headers evaluated
 * against one representation (RFC 9110 §13 and §14): 304, 412, 206, 416 or
 * the full 200.
 *
 * Pure: no I/O, no clock, no allocation. The static origin answers with it
 * from a file's validators, and the cache from a stored 200 response's
 * headers, so both answer the same request the same way.
 */
#ifndef VERGE_HTTP_CONDITIONAL_H
#define VERGE_HTTP_CONDITIONAL_H

#include "base.h"

/* Request header values as received (empty slice: header absent; a value
 * made only of spaces counts as absent), and the representation's
 * validators and size. */
struct http_conditional_input {
    slice_t method;              /* GET and HEAD get 304 and ranges; other methods only If-Match and friends (412) */
    slice_t if_match;            /* strong comparison; "*" matches */
    slice_t if_unmodified_since; /* only when If-Match is absent */
    slice_t if_none_match;       /* weak comparison; "*" matches */
    slice_t if_modified_since;   /* only when If-None-Match is absent */
    slice_t range;               /* one byte range "bytes=a-b" / "a-" / "-n"; anything else is ignored */
    slice_t if_range;            /* strong ETag or exact Last-Modified date */
    slice_t etag;                /* the representation's ETag, "\"x\"" or "W/\"x\"", empty when it has none */
    int64_t last_modified;       /* the representation's Last-Modified (seconds), -1 when unknown */
    uint64_t size;               /* the full body length */
};

struct http_conditional_result {
    int status;              /* 200, 206, 304, 412 or 416 */
    uint64_t offset, length; /* the body bytes to send: [offset, offset + length); 0, 0 for 304, 412, 416 */
    char content_range[96];  /* 206: "bytes a-b/size"; 416: "bytes *\/size"; else "" */
};

/* Evaluates, in the order of RFC 9110 §13.2.2:
 *  1. If-Match (strong comparison, "*" matches): false → 412.
 *  2. else If-Unmodified-Since (valid date and known Last-Modified):
 *     Last-Modified later than it → 412.
 *  3. If-None-Match (weak comparison, a list with commas inside quoted tags,
 *     "*" matches; a malformed member ends the scan with "no match"): a match
 *     answers 304 to GET and HEAD, 412 to other methods.
 *  4. else, for GET and HEAD, If-Modified-Since (a valid date, known
 *     Last-Modified): Last-Modified not later → 304.
 *  5. For GET and HEAD (HEAD gets the head GET would get), Range when
 *     If-Range is absent or holds (a strong ETag equal to ours — a weak one
 *     never matches — or a date equal to Last-Modified): one byte range →
 *     206; a first byte at or past the end, or a suffix of 0 → 416; several
 *     ranges, an unknown unit or a malformed value → ignored (200). A suffix
 *     range of an empty representation gets the (empty) 200: there is no
 *     byte position to name in Content-Range.
 * `out` is always fully written. */
void http_evaluate_conditionals(const struct http_conditional_input *in, struct http_conditional_result *out);

#endif
