/* http_conditional.c — evaluates If-Match, If-Unmodified-Since,
 * If-None-Match, If-Modified-Since, Range and If-Range against one
 * representation's ETag, Last-Modified and size.
 *
 * Extracted from the static origin so the cache answers a stored object's
 * conditionals byte for byte like the static origin answers a file's.
 * Lenient where a full 200 is a correct answer (RFC 9110 §14.2: a server may
 * ignore Range): anything malformed means "no match" / "ignored", never an
 * error status. No state, no allocation, thread-safe.
 */
#include "http_conditional.h"

#include <inttypes.h>
#include <stdio.h>

/* Splits an entity-tag "W/\"x\"" or "\"x\"" into its weakness and its
 * opaque-tag (quotes included). False when `etag` is not one. */
static bool etag_split(slice_t etag, bool *weak, slice_t *opaque)
{
    etag = slice_trim_ows(etag);
    *weak = etag.len >= 2 && etag.ptr[0] == 'W' && etag.ptr[1] == '/';
    if (*weak) {
        etag.ptr += 2;
        etag.len -= 2;
    }
    if (etag.len < 2 || etag.ptr[0] != '"' || etag.ptr[etag.len - 1] != '"' || memchr(etag.ptr + 1, '"', etag.len - 2) != NULL)
        return false;
    *opaque = etag;
    return true;
}

/* Scans an If-Match / If-None-Match list for a member equal to `ours`:
 * weak comparison (RFC 9110 §8.8.3.2) ignores W/ on both sides, strong
 * comparison needs both strong. "*" matches (the representation exists). A
 * malformed member stops the scan with "no match"; commas inside a quoted
 * tag belong to the tag. */
static bool etag_list_matches(slice_t header, slice_t ours, bool strong)
{
    bool ours_weak = false;
    slice_t ours_opaque = {0};
    bool ours_valid = etag_split(ours, &ours_weak, &ours_opaque);
    size_t i = 0;
    for (;;) {
        while (i < header.len && (header.ptr[i] == ' ' || header.ptr[i] == '\t' || header.ptr[i] == ','))
            i++;
        if (i >= header.len)
            return false;
        if (header.ptr[i] == '*')
            return true;
        bool member_weak = header.len - i >= 2 && header.ptr[i] == 'W' && header.ptr[i + 1] == '/';
        if (member_weak)
            i += 2;
        if (i >= header.len || header.ptr[i] != '"')
            return false;
        size_t close = i + 1;
        while (close < header.len && header.ptr[close] != '"')
            close++;
        if (close >= header.len)
            return false;
        slice_t member = slice_make(header.ptr + i, close + 1 - i);
        if (ours_valid && slice_equal(member, ours_opaque) && (!strong || (!member_weak && !ours_weak)))
            return true;
        i = close + 1;
    }
}

/* If-Range (RFC 9110 §13.1.5): an entity-tag must match strongly (a weak tag
 * never does); a date must equal Last-Modified exactly. */
static bool if_range_allows_range(slice_t header, slice_t etag, int64_t last_modified)
{
    header = slice_trim_ows(header);
    if (header.len == 0)
        return true;
    if (header.ptr[0] == '"') {
        bool ours_weak;
        slice_t ours_opaque;
        return etag_split(etag, &ours_weak, &ours_opaque) && !ours_weak && slice_equal(header, ours_opaque);
    }
    if (header.len >= 2 && header.ptr[0] == 'W' && header.ptr[1] == '/')
        return false;
    int64_t date;
    return last_modified >= 0 && time_parse_http_date(header, &date) && date == last_modified;
}

enum range_outcome { RANGE_IGNORED, RANGE_SATISFIABLE, RANGE_UNSATISFIABLE };

/* Parses a single byte range against `size`. Multiple ranges and malformed
 * values are ignored (the full 200 is always a valid answer to Range). */
static enum range_outcome parse_range(slice_t header, uint64_t size, uint64_t *first, uint64_t *last)
{
    header = slice_trim_ows(header);
    slice_t unit = SLICE_LITERAL("bytes=");
    if (header.len < unit.len || !slice_equal_nocase(slice_make(header.ptr, unit.len), unit))
        return RANGE_IGNORED;
    slice_t spec = slice_trim_ows(slice_make(header.ptr + unit.len, header.len - unit.len));
    if (spec.len == 0 || memchr(spec.ptr, ',', spec.len) != NULL)
        return RANGE_IGNORED;
    const char *dash = memchr(spec.ptr, '-', spec.len);
    if (dash == NULL)
        return RANGE_IGNORED;
    slice_t first_text = slice_make(spec.ptr, (size_t)(dash - spec.ptr));
    slice_t last_text = slice_make(dash + 1, spec.len - first_text.len - 1);

    if (first_text.len == 0) { /* suffix: "-n" */
        uint64_t suffix;
        if (!slice_parse_u64(last_text, &suffix))
            return RANGE_IGNORED;
        if (suffix == 0)
            return RANGE_UNSATISFIABLE;
        /* A zero-length representation has no byte position to name in
         * Content-Range, so the suffix range is answered with the (empty)
         * full 200. */
        if (size == 0)
            return RANGE_IGNORED;
        *first = suffix >= size ? 0 : size - suffix;
        *last = size - 1;
        return RANGE_SATISFIABLE;
    }
    uint64_t start, end = UINT64_MAX;
    if (!slice_parse_u64(first_text, &start))
        return RANGE_IGNORED;
    if (last_text.len > 0 && (!slice_parse_u64(last_text, &end) || end < start))
        return RANGE_IGNORED;
    if (start >= size)
        return RANGE_UNSATISFIABLE;
    *first = start;
    *last = end >= size ? size - 1 : end;
    return RANGE_SATISFIABLE;
}

static void answer_without_body(struct http_conditional_result *out, int status)
{
    out->status = status;
    out->offset = 0;
    out->length = 0;
}

void http_evaluate_conditionals(const struct http_conditional_input *in, struct http_conditional_result *out)
{
    out->status = 200;
    out->offset = 0;
    out->length = in->size;
    out->content_range[0] = '\0';

    bool get_or_head = slice_equal(in->method, SLICE_LITERAL("GET")) || slice_equal(in->method, SLICE_LITERAL("HEAD"));
    slice_t if_match = slice_trim_ows(in->if_match);
    slice_t if_unmodified_since = slice_trim_ows(in->if_unmodified_since);
    slice_t if_none_match = slice_trim_ows(in->if_none_match);
    slice_t if_modified_since = slice_trim_ows(in->if_modified_since);

    /* Steps 1 and 2: the preconditions that protect against lost updates. */
    if (if_match.len > 0) {
        if (!etag_list_matches(if_match, in->etag, true)) {
            answer_without_body(out, 412);
            return;
        }
    } else if (if_unmodified_since.len > 0 && in->last_modified >= 0) {
        int64_t since;
        if (time_parse_http_date(if_unmodified_since, &since) && in->last_modified > since) {
            answer_without_body(out, 412);
            return;
        }
    }

    /* Steps 3 and 4: If-None-Match, else If-Modified-Since. */
    bool not_modified = false;
    if (if_none_match.len > 0) {
        if (etag_list_matches(if_none_match, in->etag, false)) {
            answer_without_body(out, get_or_head ? 304 : 412);
            return;
        }
    } else if (get_or_head && if_modified_since.len > 0 && in->last_modified >= 0) {
        int64_t since;
        if (time_parse_http_date(if_modified_since, &since) && in->last_modified <= since)
            not_modified = true;
    }
    if (not_modified) {
        answer_without_body(out, 304);
        return;
    }

    /* Step 5: Range, guarded by If-Range. */
    if (!get_or_head || slice_trim_ows(in->range).len == 0 || !if_range_allows_range(in->if_range, in->etag, in->last_modified))
        return;
    uint64_t first = 0, last = 0;
    switch (parse_range(in->range, in->size, &first, &last)) {
    case RANGE_IGNORED:
        break;
    case RANGE_SATISFIABLE:
        out->status = 206;
        out->offset = first;
        out->length = last - first + 1;
        snprintf(out->content_range, sizeof out->content_range, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first, last, in->size);
        break;
    case RANGE_UNSATISFIABLE:
        answer_without_body(out, 416);
        snprintf(out->content_range, sizeof out->content_range, "bytes */%" PRIu64, in->size);
        break;
    }
}
