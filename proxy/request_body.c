/* request_body.c — the request body, viewer → origin: streamed to the
 * origin fetch with backpressure both ways (chunked framing redone, or the
 * Content-Length kept), or first read ahead for an Include Body function
 * (request_collect_body) and then sent before the rest streams on — or
 * replaced by the function's body.
 *
 * Invariants: body_done means every byte of the viewer's body was read (or,
 * after a replacement, is no longer wanted: the connection then closes after
 * the response); what the origin gets is framed as build_origin_request_head
 * announced (upload_chunked).
 * Locking: none; a request belongs to its connection's loop thread.
 */
#include <stdio.h>
#include <string.h>

#include "request.h"

bool request_collect_body(struct request *request, size_t limit, bool *enough)
{
    struct viewer_connection *viewer = request->viewer;
    if (request->expect_continue && !request->continue_sent && !request->body_done && viewer->input_len == 0) {
        request->continue_sent = true;
        viewer_write(viewer, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    while (!request->body_done && request->collected_body.len < limit && viewer->input_len > 0) {
        if (request->body_kind == HTTP1_BODY_LENGTH) {
            size_t n = viewer->input_len < request->body_remaining ? viewer->input_len : (size_t)request->body_remaining;
            bytebuf_append(&request->collected_body, viewer->input, n);
            request->body_remaining -= n;
            request->body_done = request->body_remaining == 0;
            viewer_consume_input(viewer, n);
        } else {
            size_t len = viewer->input_len;
            long result = http1_chunked_decode(&request->body_decoder, viewer->input, &len);
            if (result == -1)
                return false;
            bytebuf_append(&request->collected_body, viewer->input, len);
            if (result >= 0) {
                request->body_done = true;
                memmove(viewer->input, viewer->input + len, (size_t)result);
                viewer->input_len = (size_t)result;
            } else {
                viewer->input_len = 0;
            }
        }
    }
    *enough = request->body_done || request->collected_body.len >= limit;
    viewer_set_reading(viewer, !*enough);
    return true;
}

/* The viewer's request body is malformed: the origin gets nothing more, the
 * viewer gets a 400 (or a cut response when it already has a head). */
static void fail_request_body(struct request *request)
{
    origin_fetch_abort(request->fetch);
    request->fetch = NULL;
    request->viewer->close_after_response = true;
    if (request->head_sent) {
        viewer_abort(request->viewer);
        return;
    }
    request->status = 400;
    request->error_reason = "malformed chunked request body";
    request->response_header_count = 0;
    request->step = STEP_SYNTH;
    request_resume(request);
}

void request_pump_body(struct request *request)
{
    struct viewer_connection *viewer = request->viewer;
    if (!request->body_pump_started || request->fetch == NULL)
        return;
    if (request->body_kind == HTTP1_BODY_NONE && !request->upload_only)
        return;
    if (!request->upload_sent) {
        /* What Include Body read (or what a function put instead) goes first. */
        request->upload_sent = true;
        slice_t upload =
            request->upload_only ? request->upload : (slice_t){request->collected_body.data, request->collected_body.len};
        if (upload.len > 0 && request->upload_chunked) {
            char size_line[24];
            int n = snprintf(size_line, sizeof size_line, "%zx\r\n", upload.len);
            origin_fetch_send_body(request->fetch, size_line, (size_t)n);
            origin_fetch_send_body(request->fetch, upload.ptr, upload.len);
            origin_fetch_send_body(request->fetch, "\r\n", 2);
        } else if (upload.len > 0) {
            origin_fetch_send_body(request->fetch, upload.ptr, upload.len);
        }
        if (request->upload_only && !request->body_done) {
            /* The rest of the viewer's body is not wanted; this connection ends with the response. */
            viewer->close_after_response = true;
            request->body_done = true;
        }
        if (request->body_done) {
            if (request->upload_chunked)
                origin_fetch_send_body(request->fetch, "0\r\n\r\n", 5);
            origin_fetch_end_body(request->fetch);
            viewer_set_reading(viewer, false);
            return;
        }
    }
    if (request->body_done)
        return;
    while (viewer->input_len > 0 && !request->body_done) {
        if (origin_fetch_pending_output(request->fetch) > PUMP_HIGH_WATERMARK) {
            viewer_set_reading(viewer, false);
            return;
        }
        if (request->body_kind == HTTP1_BODY_LENGTH) {
            size_t n = viewer->input_len < request->body_remaining ? viewer->input_len : (size_t)request->body_remaining;
            request->body_remaining -= n;
            request->body_done = request->body_remaining == 0;
            origin_fetch_send_body(request->fetch, viewer->input, n);
            viewer_consume_input(viewer, n);
        } else {
            size_t len = viewer->input_len;
            long result = http1_chunked_decode(&request->body_decoder, viewer->input, &len);
            if (result == -1) {
                log_info("request %s: malformed chunked request body", request->id);
                fail_request_body(request);
                return;
            }
            if (len > 0) {
                char size_line[24];
                int n = snprintf(size_line, sizeof size_line, "%zx\r\n", len);
                origin_fetch_send_body(request->fetch, size_line, (size_t)n);
                origin_fetch_send_body(request->fetch, viewer->input, len);
                origin_fetch_send_body(request->fetch, "\r\n", 2);
            }
            if (result >= 0) {
                request->body_done = true;
                origin_fetch_send_body(request->fetch, "0\r\n\r\n", 5);
                memmove(viewer->input, viewer->input + len, (size_t)result);
                viewer->input_len = (size_t)result;
            } else {
                viewer->input_len = 0;
            }
        }
        if (request->fetch == NULL)
            return;
    }
    if (request->body_done) {
        origin_fetch_end_body(request->fetch);
        viewer_set_reading(viewer, false);
    } else {
        viewer_set_reading(viewer, origin_fetch_pending_output(request->fetch) <= PUMP_HIGH_WATERMARK);
    }
}

void request_on_viewer_input(struct request *request)
{
    if (request->magic != REQUEST_MAGIC)
        return;
    if (request->waiting_for_body) {
        bool enough = false;
        if (!request_collect_body(request, request->collect_limit, &enough)) {
            request->waiting_for_body = false;
            log_info("request %s: malformed chunked request body", request->id);
            request->viewer->close_after_response = true;
            request->status = 400;
            request->error_reason = "malformed chunked request body";
            request->step = STEP_SYNTH;
            request_resume(request);
            return;
        }
        if (enough) {
            request->waiting_for_body = false;
            request_resume(request); /* the trigger step again, now with the body */
        }
        return;
    }
    if (request->body_pump_started && !request->body_done)
        request_pump_body(request);
    /* Otherwise the bytes wait in the input buffer: the body for the pump
     * once the origin is ready, or the next pipelined request. */
}
