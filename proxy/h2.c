/* h2.c — HTTP/2 for viewers with nghttp2: one session per connection, and a
 * viewer_connection per stream so that each request runs through the same
 * state machine (request.c) as an HTTP/1.1 one.
 *
 * A stream's request head is the HTTP/2 fields, validated by nghttp2's
 * RFC 9113 checks (pseudo-headers, connection-specific fields, uppercase
 * names, content-length against DATA), written as an HTTP/1.1 head into the
 * stream's input and parsed there by the HTTP/1.1 parser: one set of request
 * rules. Its body follows in the input as DATA arrives: as is with a
 * content-length, else chunk-framed. The response goes the other way: the
 * head request.c writes is parsed back into :status and fields (hop-by-hop
 * ones dropped), body bytes wait in the stream's output until nghttp2 pulls
 * them into DATA frames.
 *
 * Flow control: no automatic WINDOW_UPDATE; a stream's window reopens by what
 * its request consumed of the input, so a slow origin slows the upload.
 * Frames are written once per loop pass (an ev_prepare), as long as the
 * socket's queue is below PUMP_HIGH_WATERMARK, so a slow viewer pauses the
 * streams' producers through their output watermarks.
 *
 * Lifetimes: a stream is freed when nghttp2 closed it and its request is
 * finished, never inside an nghttp2 callback or a request call: closed
 * streams are reaped in the prepare callback.
 * Locking: none; a connection and its streams belong to one loop thread.
 */
#include "h2.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

#define H2_MAX_CONCURRENT_STREAMS 100
#define H2_MAX_HEADER_LIST_SIZE 16384
#define H2_CONNECTION_WINDOW (1 << 20)
/* Resets a client may cause per second on average (burst 1000), CVE-2023-44487. */
#define H2_RESET_BURST 1000
#define H2_RESET_RATE 33
#define H2_MAX_CONTINUATIONS 8
#define H2_MAX_EMPTY_FRAMES 1000
static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct h2_connection {
    nghttp2_session *session;
    struct viewer_connection *viewer; /* the socket's */
    struct h2_stream *streams;        /* every stream not yet freed */
    size_t stream_count;
    ev_prepare flush_watcher; /* writes frames and reaps streams once per loop pass */
    ev_idle kick;             /* keeps the loop from blocking when a flush stopped with work left */
    bool receiving;           /* inside nghttp2_session_mem_recv: no mem_send now */
    bool goaway_sent;
    bool failed; /* a connection error: close once the GOAWAY is out */
    unsigned empty_frames;
};

struct h2_stream {
    struct viewer_connection viewer; /* the request's viewer: viewer.stream points back here */
    struct h2_connection *connection;
    struct h2_stream *next, *prev;
    int32_t id;
    /* the request head being assembled from HEADERS */
    struct bytebuf fields; /* "name: value\r\n" lines */
    struct bytebuf cookies;
    slice_t method, path, authority; /* copies in the request arena */
    bool has_content_length, has_host;
    size_t header_list_size; /* RFC 9113's measure: name + value + 32 per field */
    size_t input_capacity;   /* of viewer.input, which grows on demand up to VIEWER_INPUT_SIZE */
    bool started;            /* request_start (or _start_error) ran */
    bool body_ends;          /* END_STREAM received */
    bool chunked_input;
    /* flow control: what the input held, what of it was credited back */
    uint64_t framed_total, framed_credited, data_uncredited;
    /* the response */
    bool head_submitted, no_body, data_end, deferred, wants_drained;
    struct bytebuf output;
    size_t output_sent;
    bool request_done;         /* request_finish ran */
    bool reset_after_response; /* the request body was not read: RST_STREAM(NO_ERROR) after the response */
    bool closed;               /* nghttp2 closed the stream */
};

static void h2_schedule(struct h2_connection *connection);
static void stream_release_credit(struct h2_stream *stream);

int h2_preface_match(const char *data, size_t len)
{
    size_t preface_len = sizeof h2_preface - 1;
    size_t n = len < preface_len ? len : preface_len;
    if (memcmp(data, h2_preface, n) != 0)
        return 0;
    return len >= preface_len ? 1 : -1;
}

static struct h2_stream *stream_of(struct viewer_connection *viewer)
{
    return viewer->stream;
}

struct viewer_connection *h2_stream_connection_viewer(const struct viewer_connection *stream)
{
    return stream->stream->connection->viewer;
}

/* ---- streams: create, credit, free -------------------------------------------------------- */

static struct h2_stream *stream_create(struct h2_connection *connection, int32_t id)
{
    struct h2_stream *stream = calloc(1, sizeof *stream);
    VERGE_ASSERT(stream != NULL);
    struct viewer_connection *viewer = &stream->viewer;
    struct viewer_connection *socket_viewer = connection->viewer;
    viewer->magic = VIEWER_CONNECTION_MAGIC;
    viewer->fd = -1;
    viewer->thread = socket_viewer->thread;
    viewer->stream = stream;
    viewer->state = VIEWER_IDLE;
    memcpy(viewer->client_ip, socket_viewer->client_ip, sizeof viewer->client_ip);
    /* The input grows to VIEWER_INPUT_SIZE only when a body comes (most streams are GETs). */
    arena_init(&viewer->request.arena);
    stream->connection = connection;
    stream->id = id;
    atomic_fetch_add_explicit(&metrics.http2_streams, 1, memory_order_relaxed);
    stream->next = connection->streams;
    if (connection->streams != NULL)
        connection->streams->prev = stream;
    connection->streams = stream;
    connection->stream_count++;
    return stream;
}

static void stream_free(struct h2_stream *stream)
{
    struct h2_connection *connection = stream->connection;
    struct viewer_connection *viewer = &stream->viewer;
    stream_release_credit(stream);
    if (viewer->request.magic == REQUEST_MAGIC)
        request_finish(&viewer->request);
    arena_destroy(&viewer->request.arena);
    bytebuf_free(&viewer->request.held_body);
    bytebuf_free(&viewer->request.collected_body);
    bytebuf_free(&stream->fields);
    bytebuf_free(&stream->cookies);
    bytebuf_free(&stream->output);
    free(viewer->input);
    if (stream->prev != NULL)
        stream->prev->next = stream->next;
    else
        connection->streams = stream->next;
    if (stream->next != NULL)
        stream->next->prev = stream->prev;
    connection->stream_count--;
    if (connection->session != NULL && !stream->closed)
        nghttp2_session_set_stream_user_data(connection->session, stream->id, NULL);
    viewer->magic = 0;
    free(stream);
}

/* Gives the client back the window its request consumed of the input. DATA
 * bytes are counted, the chunk framing around them is not: when the input
 * is empty everything received is credited. */
static void stream_credit(struct h2_stream *stream)
{
    if (stream->data_uncredited == 0)
        return;
    if (stream->closed || stream->request_done) {
        /* Nobody reads the rest: the connection's window must not shrink for it. */
        nghttp2_session_consume_connection(stream->connection->session, (size_t)stream->data_uncredited);
        stream->data_uncredited = 0;
        return;
    }
    uint64_t in_buffer = stream->viewer.input_len;
    uint64_t consumed = stream->framed_total - in_buffer - stream->framed_credited;
    uint64_t credit =
        in_buffer == 0 ? stream->data_uncredited : (consumed < stream->data_uncredited ? consumed : stream->data_uncredited);
    stream->framed_credited += consumed;
    if (credit == 0)
        return;
    stream->data_uncredited -= credit;
    nghttp2_session_consume(stream->connection->session, stream->id, (size_t)credit);
}

/* Before a stream goes: what it held of the connection's window comes back. */
static void stream_release_credit(struct h2_stream *stream)
{
    if (stream->data_uncredited > 0 && stream->connection->session != NULL)
        nghttp2_session_consume_connection(stream->connection->session, (size_t)stream->data_uncredited);
    stream->data_uncredited = 0;
}

static void stream_reserve_input(struct h2_stream *stream, size_t len)
{
    struct viewer_connection *viewer = &stream->viewer;
    if (viewer->input_len + len <= stream->input_capacity)
        return;
    size_t capacity = viewer->input_len + len < 4096 ? 4096 : VIEWER_INPUT_SIZE;
    if (capacity < viewer->input_len + len)
        capacity = viewer->input_len + len;
    viewer->input = realloc(viewer->input, capacity);
    VERGE_ASSERT(viewer->input != NULL);
    stream->input_capacity = capacity;
}

static bool stream_append_input(struct h2_stream *stream, const void *data, size_t len)
{
    struct viewer_connection *viewer = &stream->viewer;
    if (len > VIEWER_INPUT_SIZE - viewer->input_len)
        return false;
    stream_reserve_input(stream, len);
    memcpy(viewer->input + viewer->input_len, data, len);
    viewer->input_len += len;
    stream->framed_total += len;
    return true;
}

/* ---- request heads ------------------------------------------------------------------------ */

static void stream_start_request(struct h2_stream *stream)
{
    struct viewer_connection *viewer = &stream->viewer;
    struct bytebuf head = {0};
    bytebuf_append_slice(&head, stream->method);
    bytebuf_append(&head, " ", 1);
    bytebuf_append_slice(&head, stream->path.len > 0 ? stream->path : SLICE_LITERAL("/"));
    bytebuf_append(&head, " HTTP/1.1\r\n", 11);
    if (!stream->has_host && stream->authority.len > 0) {
        bytebuf_append(&head, "host: ", 6);
        bytebuf_append_slice(&head, stream->authority);
        bytebuf_append(&head, "\r\n", 2);
    }
    bytebuf_append(&head, stream->fields.data, stream->fields.len);
    if (stream->cookies.len > 0) {
        bytebuf_append(&head, "cookie: ", 8);
        bytebuf_append(&head, stream->cookies.data, stream->cookies.len);
        bytebuf_append(&head, "\r\n", 2);
    }
    stream->chunked_input = !stream->body_ends && !stream->has_content_length;
    if (stream->chunked_input)
        bytebuf_append(&head, "transfer-encoding: chunked\r\n", 28);
    bytebuf_append(&head, "\r\n", 2);
    stream->started = true;
    viewer->state = VIEWER_IN_REQUEST;
    loop_thread_refresh_generation(viewer->thread);
    if (head.len > VIEWER_INPUT_SIZE - PUMP_READ_SIZE) {
        bytebuf_free(&head);
        request_start_error(viewer, 431, "request header fields too large");
        return;
    }
    stream_reserve_input(stream, head.len);
    memcpy(viewer->input, head.data, head.len);
    viewer->input_len = head.len;
    stream->framed_total = head.len;
    stream->framed_credited = head.len;
    bytebuf_free(&head);
    struct http1_request parsed;
    struct http1_error error;
    enum http1_result result = http1_parse_request(viewer->input, viewer->input_len, &parsed, &error);
    if (result != HTTP1_DONE) {
        viewer->input_len = 0;
        request_start_error(viewer, result == HTTP1_ERROR ? error.status : 400,
                            result == HTTP1_ERROR ? error.reason : "incomplete request head");
        return;
    }
    request_start(viewer, &parsed);
}

/* ---- nghttp2 callbacks: requests ---------------------------------------------------------- */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct h2_connection *connection = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (connection->goaway_sent) {
        /* Draining: the client may retry it on another connection. */
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    struct h2_stream *stream = stream_create(connection, frame->hd.stream_id);
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, stream);
    return 0;
}

static slice_t copy_to_arena(struct h2_stream *stream, const uint8_t *data, size_t len)
{
    return arena_slice_copy(&stream->viewer.request.arena, slice_make((const char *)data, len));
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t name_len,
                     const uint8_t *value, size_t value_len, uint8_t flags, void *user_data)
{
    struct h2_stream *stream = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (stream == NULL || stream->started)
        return 0; /* trailers: not forwarded */
    /* SETTINGS_MAX_HEADER_LIST_SIZE is advice to the client; this enforces it (an HPACK bomb ends here). */
    stream->header_list_size += name_len + value_len + 32;
    if (stream->header_list_size > H2_MAX_HEADER_LIST_SIZE)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM; the block is still decoded, not kept */
    slice_t field = slice_make((const char *)name, name_len);
    if (name_len > 0 && name[0] == ':') {
        if (slice_equal(field, SLICE_LITERAL(":method")))
            stream->method = copy_to_arena(stream, value, value_len);
        else if (slice_equal(field, SLICE_LITERAL(":path")))
            stream->path = copy_to_arena(stream, value, value_len);
        else if (slice_equal(field, SLICE_LITERAL(":authority")))
            stream->authority = copy_to_arena(stream, value, value_len);
        return 0; /* :scheme is checked by nghttp2 and not needed further */
    }
    if (slice_equal(field, SLICE_LITERAL("cookie"))) {
        /* RFC 9113 §8.2.3: crumbs are joined for HTTP/1.1. */
        if (stream->cookies.len > 0)
            bytebuf_append(&stream->cookies, "; ", 2);
        bytebuf_append(&stream->cookies, value, value_len);
        return 0;
    }
    if (slice_equal(field, SLICE_LITERAL("host")))
        stream->has_host = true;
    if (slice_equal(field, SLICE_LITERAL("content-length")))
        stream->has_content_length = true;
    bytebuf_append(&stream->fields, name, name_len);
    bytebuf_append(&stream->fields, ": ", 2);
    bytebuf_append(&stream->fields, value, value_len);
    bytebuf_append(&stream->fields, "\r\n", 2);
    return 0;
}

/* The body ended: the chunked input gets its last chunk; the request hears of it. */
static void stream_end_body(struct h2_stream *stream)
{
    if (stream->body_ends)
        return;
    stream->body_ends = true;
    if (!stream->started)
        return;
    if (stream->chunked_input && !stream_append_input(stream, "0\r\n\r\n", 5)) {
        nghttp2_submit_rst_stream(stream->connection->session, NGHTTP2_FLAG_NONE, stream->id, NGHTTP2_ENHANCE_YOUR_CALM);
        return;
    }
    if (stream->viewer.state == VIEWER_IN_REQUEST && stream->viewer.request.magic == REQUEST_MAGIC)
        request_on_viewer_input(&stream->viewer.request);
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct h2_connection *connection = user_data;
    if (frame->hd.type == NGHTTP2_DATA && frame->hd.length == 0 && !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        ++connection->empty_frames > H2_MAX_EMPTY_FRAMES) {
        /* Empty DATA frames cost work and carry nothing (a flood). */
        log_debug("%s: HTTP/2 empty DATA frame flood", connection->viewer->client_ip);
        connection->failed = true;
        nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM);
        return 0;
    }
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    struct h2_stream *stream = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (stream == NULL)
        return 0;
    bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        stream->body_ends = end_stream;
        stream_start_request(stream);
        h2_schedule(connection);
        return 0;
    }
    if (end_stream)
        stream_end_body(stream);
    h2_schedule(connection);
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                              void *user_data)
{
    struct h2_stream *stream = nghttp2_session_get_stream_user_data(session, stream_id);
    if (stream == NULL || !stream->started || stream->viewer.request.magic != REQUEST_MAGIC) {
        /* Nobody reads it: it must not hold the connection's window. */
        nghttp2_session_consume_connection(session, len);
        return 0;
    }
    char size_line[24];
    int line = stream->chunked_input ? snprintf(size_line, sizeof size_line, "%zx\r\n", len) : 0;
    size_t needed = (size_t)line + len + (stream->chunked_input ? 2 : 0);
    if (needed > VIEWER_INPUT_SIZE - stream->viewer.input_len) {
        /* More than the window allows can only come with tiny frames' framing: abuse. */
        nghttp2_session_consume_connection(session, len);
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_ENHANCE_YOUR_CALM);
        return 0;
    }
    if (line > 0)
        stream_append_input(stream, size_line, (size_t)line);
    stream_append_input(stream, data, len);
    if (stream->chunked_input)
        stream_append_input(stream, "\r\n", 2);
    stream->data_uncredited += len;
    if (stream->viewer.state == VIEWER_IN_REQUEST)
        request_on_viewer_input(&stream->viewer.request);
    h2_schedule(stream->connection);
    return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct h2_stream *stream = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (stream != NULL && stream->reset_after_response && !stream->body_ends)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
{
    struct h2_stream *stream = nghttp2_session_get_stream_user_data(session, stream_id);
    if (stream == NULL)
        return 0;
    stream->closed = true;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    h2_schedule(stream->connection); /* reaped there: the request may be on the stack */
    return 0;
}

/* ---- responses ---------------------------------------------------------------------------- */

static ssize_t read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *data_flags,
                         nghttp2_data_source *source, void *user_data)
{
    struct h2_stream *stream = source->ptr;
    size_t pending = stream->output.len - stream->output_sent;
    size_t n = pending < length ? pending : length;
    if (n > 0)
        memcpy(buf, stream->output.data + stream->output_sent, n);
    stream->output_sent += n;
    if (stream->output_sent == stream->output.len) {
        stream->output.len = stream->output_sent = 0;
    } else if (stream->output_sent > PUMP_HIGH_WATERMARK) {
        bytebuf_consume(&stream->output, stream->output_sent);
        stream->output_sent = 0;
    }
    if (n > 0 && stream->output.len - stream->output_sent < PUMP_LOW_WATERMARK)
        stream->wants_drained = true;
    if (stream->output.len == stream->output_sent && stream->data_end) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    if (n == 0) {
        stream->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static bool is_connection_specific(slice_t name)
{
    static const slice_t names[] = {SLICE_LITERAL("connection"), SLICE_LITERAL("keep-alive"), SLICE_LITERAL("proxy-connection"),
                                    SLICE_LITERAL("transfer-encoding"), SLICE_LITERAL("upgrade")};
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(names); i++)
        if (slice_equal_nocase(name, names[i]))
            return true;
    return false;
}

/* The first bytes request.c writes are an HTTP/1.1 head: it becomes HEADERS. */
static size_t stream_submit_head(struct h2_stream *stream, const char *data, size_t len)
{
    struct request *request = &stream->viewer.request;
    struct http1_response head;
    struct http1_error error = {0};
    slice_t method = request->magic == REQUEST_MAGIC && request->method.len > 0 ? request->method : SLICE_LITERAL("GET");
    if (http1_parse_response(data, len, method, &head, &error) != HTTP1_DONE) {
        log_error("HTTP/2 stream %d: the response head did not parse (%s)", stream->id,
                  error.reason != NULL ? error.reason : "incomplete");
        nghttp2_submit_rst_stream(stream->connection->session, NGHTTP2_FLAG_NONE, stream->id, NGHTTP2_INTERNAL_ERROR);
        stream->head_submitted = true;
        stream->no_body = true;
        return len;
    }
    struct arena *arena = &request->arena;
    nghttp2_nv *fields = arena_alloc(arena, sizeof *fields * (head.header_count + 1));
    char *status = arena_printf(arena, "%d", head.status);
    size_t n = 0;
    fields[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, strlen(status), NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < head.header_count; i++) {
        const struct http_header *header = &head.headers[i];
        if (is_connection_specific(header->name))
            continue;
        char *name = arena_alloc(arena, header->name.len);
        for (size_t c = 0; c < header->name.len; c++)
            name[c] =
                (char)((header->name.ptr[c] >= 'A' && header->name.ptr[c] <= 'Z') ? header->name.ptr[c] + 32 : header->name.ptr[c]);
        fields[n++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)header->value.ptr, header->name.len, header->value.len,
                                   NGHTTP2_NV_FLAG_NONE}; /* copied: the arena may be reset before they are sent */
    }
    if (head.status < 200) {
        /* An interim response (100 Continue): HEADERS without END_STREAM, the final head follows. */
        nghttp2_submit_headers(stream->connection->session, NGHTTP2_FLAG_NONE, stream->id, NULL, fields, n, NULL);
        return head.head_bytes;
    }
    stream->head_submitted = true;
    stream->no_body = head.body_kind == HTTP1_BODY_NONE;
    nghttp2_data_provider provider = {.source.ptr = stream, .read_callback = read_body};
    int rv = nghttp2_submit_response(stream->connection->session, stream->id, fields, n, stream->no_body ? NULL : &provider);
    if (rv != 0)
        log_warn("HTTP/2 stream %d: cannot submit the response: %s", stream->id, nghttp2_strerror(rv));
    return head.head_bytes;
}

static void stream_resume(struct h2_stream *stream)
{
    if (stream->deferred && !stream->closed) {
        stream->deferred = false;
        nghttp2_session_resume_data(stream->connection->session, stream->id);
    }
    h2_schedule(stream->connection);
}

void h2_stream_write(struct viewer_connection *viewer, const void *data, size_t len)
{
    struct h2_stream *stream = stream_of(viewer);
    if (stream->closed || len == 0)
        return;
    if (!stream->head_submitted) {
        size_t used = stream_submit_head(stream, data, len);
        data = (const char *)data + used;
        len -= used;
    }
    if (len > 0 && !stream->no_body)
        bytebuf_append(&stream->output, data, len);
    stream_resume(stream);
}

size_t h2_stream_output_pending(const struct viewer_connection *viewer)
{
    const struct h2_stream *stream = viewer->stream;
    return stream->output.len - stream->output_sent;
}

size_t h2_stream_send_vectored(struct viewer_connection *viewer, const struct iovec *body, int count)
{
    struct h2_stream *stream = stream_of(viewer);
    size_t taken = 0;
    for (int i = 0; i < count && h2_stream_output_pending(viewer) < PUMP_HIGH_WATERMARK; i++) {
        h2_stream_write(viewer, body[i].iov_base, body[i].iov_len);
        taken += body[i].iov_len;
    }
    if (stream->closed)
        return 0;
    return taken;
}

void h2_stream_set_reading(struct viewer_connection *viewer, bool reading)
{
    struct h2_stream *stream = stream_of(viewer);
    viewer->reading_paused = !reading;
    h2_schedule(stream->connection); /* credits what was consumed */
}

void h2_stream_consume_input(struct viewer_connection *viewer, size_t n)
{
    VERGE_ASSERT(n <= viewer->input_len);
    memmove(viewer->input, viewer->input + n, viewer->input_len - n);
    viewer->input_len -= n;
    h2_schedule(stream_of(viewer)->connection);
}

void h2_stream_request_finished(struct viewer_connection *viewer)
{
    struct h2_stream *stream = stream_of(viewer);
    /* Answered before the request body was read: once the response has gone
     * out whole, RST_STREAM(NO_ERROR) tells the client to stop sending
     * (RFC 9113 §8.1; see on_frame_send). */
    stream->reset_after_response = viewer->request.body_kind != HTTP1_BODY_NONE && !viewer->request.body_done;
    request_finish(&viewer->request);
    stream->request_done = true;
    viewer->state = VIEWER_CLOSING;
    if (!stream->head_submitted && !stream->closed) /* cannot happen: every request writes a head */
        nghttp2_submit_rst_stream(stream->connection->session, NGHTTP2_FLAG_NONE, stream->id, NGHTTP2_INTERNAL_ERROR);
    stream->data_end = true;
    stream_resume(stream);
}

void h2_stream_abort(struct viewer_connection *viewer)
{
    struct h2_stream *stream = stream_of(viewer);
    request_finish(&viewer->request);
    stream->request_done = true;
    viewer->state = VIEWER_CLOSING;
    if (!stream->closed)
        nghttp2_submit_rst_stream(stream->connection->session, NGHTTP2_FLAG_NONE, stream->id, NGHTTP2_INTERNAL_ERROR);
    h2_schedule(stream->connection);
}

/* ---- the connection ----------------------------------------------------------------------- */

/* Once per loop pass: credit windows, write frames while the socket keeps up,
 * tell producers their output drained, free finished streams. */
/* Returns true when work is left that no socket event will bring back (the
 * round limit was reached while producers kept refilling). */
static bool h2_flush(struct h2_connection *connection)
{
    bool drained_any = false;
    struct viewer_connection *viewer = connection->viewer;
    /* Frames come out of nghttp2 one by one: queue them all, then one send
     * (over TLS: full records instead of one per frame). */
    viewer_cork(viewer);
    for (int round = 0; round < 8; round++) {
        for (struct h2_stream *stream = connection->streams; stream != NULL; stream = stream->next)
            stream_credit(stream);
        while (viewer_output_pending(viewer) < PUMP_HIGH_WATERMARK) {
            const uint8_t *frames;
            ssize_t n = nghttp2_session_mem_send(connection->session, &frames);
            if (n < 0) {
                log_warn("%s: HTTP/2 session error: %s", viewer->client_ip, nghttp2_strerror((int)n));
                connection->failed = true;
                break;
            }
            if (n == 0)
                break;
            viewer_write(viewer, frames, (size_t)n);
            if (viewer_is_broken(viewer)) {
                viewer_uncork(viewer);
                return false;
            }
        }
        drained_any = false;
        for (struct h2_stream *stream = connection->streams; stream != NULL; stream = stream->next) {
            if (!stream->wants_drained)
                continue;
            stream->wants_drained = false;
            if (!stream->request_done && stream->viewer.state == VIEWER_IN_REQUEST &&
                stream->viewer.request.magic == REQUEST_MAGIC) {
                request_on_output_drained(&stream->viewer.request);
                drained_any = true;
            }
        }
        if (!drained_any)
            break;
    }
    viewer_uncork(viewer);
    for (struct h2_stream *stream = connection->streams, *next; stream != NULL; stream = next) {
        next = stream->next;
        if (stream->closed) /* a request still running (the viewer reset the stream) ends in stream_free */
            stream_free(stream);
    }
    return drained_any; /* the last round still refilled: go on without waiting for the socket */
}

static void on_prepare(struct ev_loop *loop, ev_prepare *watcher, int revents)
{
    struct h2_connection *connection = watcher->data;
    ev_prepare_stop(loop, watcher);
    bool more = h2_flush(connection);
    struct viewer_connection *viewer = connection->viewer;
    if (viewer_is_broken(viewer))
        return;
    if (more)
        ev_idle_start(loop, &connection->kick); /* the loop must not block before the next flush */
    bool done = connection->failed || (connection->goaway_sent && connection->stream_count == 0);
    if (done && !nghttp2_session_want_write(connection->session)) /* the GOAWAY is handed over too */
        viewer->close_after_response = true;
    viewer_h2_settled(viewer);
}

static void on_kick(struct ev_loop *loop, ev_idle *watcher, int revents)
{
    struct h2_connection *connection = watcher->data;
    ev_idle_stop(loop, watcher);
    h2_schedule(connection);
}

static void h2_schedule(struct h2_connection *connection)
{
    if (!ev_is_active(&connection->flush_watcher))
        ev_prepare_start(connection->viewer->thread->loop, &connection->flush_watcher);
}

void h2_connection_start(struct viewer_connection *viewer)
{
    struct h2_connection *connection = calloc(1, sizeof *connection);
    VERGE_ASSERT(connection != NULL);
    connection->viewer = viewer;
    viewer->h2 = connection;
    atomic_fetch_add_explicit(&metrics.http2_connections, 1, memory_order_relaxed);
    ev_prepare_init(&connection->flush_watcher, on_prepare);
    connection->flush_watcher.data = connection;
    ev_idle_init(&connection->kick, on_kick);
    connection->kick.data = connection;

    nghttp2_session_callbacks *callbacks;
    VERGE_ASSERT(nghttp2_session_callbacks_new(&callbacks) == 0);
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
    nghttp2_option *options;
    VERGE_ASSERT(nghttp2_option_new(&options) == 0);
    nghttp2_option_set_no_auto_window_update(options, 1);
    nghttp2_option_set_max_send_header_block_length(options, 64 * 1024);
    nghttp2_option_set_max_outbound_ack(options, 1000);
    nghttp2_option_set_max_settings(options, 32);
    nghttp2_option_set_stream_reset_rate_limit(options, H2_RESET_BURST, H2_RESET_RATE);
    nghttp2_option_set_max_continuations(options, H2_MAX_CONTINUATIONS);
    VERGE_ASSERT(nghttp2_session_server_new2(&connection->session, callbacks, connection, options) == 0);
    nghttp2_option_del(options);
    nghttp2_session_callbacks_del(callbacks);

    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_CONCURRENT_STREAMS},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_MAX_HEADER_LIST_SIZE},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    nghttp2_submit_settings(connection->session, NGHTTP2_FLAG_NONE, settings, VERGE_ARRAY_SIZE(settings));
    nghttp2_session_set_local_window_size(connection->session, NGHTTP2_FLAG_NONE, 0, H2_CONNECTION_WINDOW);
    h2_schedule(connection);
}

bool h2_connection_on_input(struct viewer_connection *viewer)
{
    struct h2_connection *connection = viewer->h2;
    connection->receiving = true;
    ssize_t n = nghttp2_session_mem_recv(connection->session, (const uint8_t *)viewer->input, viewer->input_len);
    connection->receiving = false;
    viewer->input_len = 0;
    if (n < 0) {
        log_debug("%s: HTTP/2 connection error: %s", viewer->client_ip, nghttp2_strerror((int)n));
        connection->failed = true;
        /* GOAWAY with why (nghttp2 queues none for some of these): floods get ENHANCE_YOUR_CALM. */
        bool flood = n == NGHTTP2_ERR_FLOODED || n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS;
        nghttp2_session_terminate_session(connection->session, flood ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
    }
    h2_schedule(connection);
    return !connection->failed;
}

void h2_connection_on_output_drained(struct viewer_connection *viewer)
{
    h2_schedule(viewer->h2);
}

size_t h2_connection_active_streams(const struct h2_connection *connection)
{
    return connection->stream_count;
}

bool h2_connection_finished(const struct h2_connection *connection)
{
    return connection->stream_count == 0 && !nghttp2_session_want_write(connection->session);
}

bool h2_connection_on_idle(struct viewer_connection *viewer)
{
    struct h2_connection *connection = viewer->h2;
    if (viewer_output_pending(viewer) > 0)
        return false; /* send_ms passed while the viewer read nothing: close */
    size_t waiting_on_origins = 0, reset = 0;
    for (struct h2_stream *stream = connection->streams; stream != NULL; stream = stream->next) {
        if (stream->closed || stream->request_done)
            continue;
        const struct request *request = &stream->viewer.request;
        bool running = request->magic == REQUEST_MAGIC;
        bool head_incomplete = !stream->started;
        bool body_stalled =
            running && request->body_pump_started && !request->body_done && !stream->body_ends && !stream->viewer.reading_paused;
        bool window_closed = h2_stream_output_pending(&stream->viewer) > 0 &&
                             (nghttp2_session_get_stream_remote_window_size(connection->session, stream->id) <= 0 ||
                              nghttp2_session_get_remote_window_size(connection->session) <= 0);
        if (head_incomplete || body_stalled || window_closed) {
            log_debug("%s: HTTP/2 stream %d waited on the viewer for too long (%s)", viewer->client_ip, stream->id,
                      head_incomplete ? "header block"
                      : body_stalled  ? "request body"
                                      : "flow-control window");
            h2_stream_abort(&stream->viewer);
            reset++;
        } else {
            waiting_on_origins++;
        }
    }
    h2_schedule(connection);
    return waiting_on_origins > 0 || reset > 0; /* the resets go out first; the next idle period closes */
}

void h2_connection_drain(struct viewer_connection *viewer)
{
    struct h2_connection *connection = viewer->h2;
    if (!connection->goaway_sent) {
        connection->goaway_sent = true;
        nghttp2_submit_goaway(connection->session, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(connection->session),
                              NGHTTP2_NO_ERROR, NULL, 0);
    }
    h2_schedule(connection);
}

void h2_connection_free(struct h2_connection *connection)
{
    ev_prepare_stop(connection->viewer->thread->loop, &connection->flush_watcher);
    ev_idle_stop(connection->viewer->thread->loop, &connection->kick);
    while (connection->streams != NULL) {
        struct h2_stream *stream = connection->streams;
        stream->closed = true;
        stream_free(stream);
    }
    nghttp2_session_del(connection->session);
    free(connection);
}
