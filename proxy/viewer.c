/* viewer.c — HTTP/1.1 connections from viewers, plain or over TLS: accept,
 * read and parse request heads, queue response bytes, keep-alive and
 * pipelining, timeouts, lingering close.
 *
 * Life of a connection: IDLE (waiting for a request head) → IN_REQUEST (the
 * state machine in request.c owns the request) → IDLE again, or CLOSING
 * (write what is queued, shut down the write side, read and discard until
 * EOF or a short deadline, close). Closing with unread input would make the
 * kernel send a reset that can destroy the response the viewer has not read
 * yet — hence the lingering close.
 *
 * Invariants:
 *  - Only one request per connection is in the state machine; bytes of a
 *    pipelined next request stay unparsed in `input`.
 *  - The read watcher stays on across requests (no epoll_ctl per request);
 *    it is off only while the input buffer is full, while the origin side
 *    cannot keep up with a request body (backpressure), after a half-close,
 *    and after a malformed head. A half-close after a complete request still
 *    gets its answer.
 *  - One timer per connection, re-armed by viewer_arm_timer from the state:
 *    header_read_ms for a started head (a TLS handshake counts as one, from
 *    accept), idle_ms between requests and while reading a body, send_ms while
 *    output is pending.
 *  - TLS (proxy/tls.c) sits under the same buffers: `input` holds decrypted
 *    bytes and `output` plaintext not yet taken by OpenSSL; every socket read
 *    and write goes through viewer_receive and viewer_transport_send. Bytes
 *    OpenSSL read ahead do not make the socket readable, so whenever reading
 *    is on and OpenSSL holds some, the read watcher is fed by hand
 *    (viewer_read_buffered_later). A record half sent when the socket filled
 *    up is finished by offering the same bytes again, which `output` and the
 *    body sources (stored objects, static files) do.
 * Locking: none; a connection belongs to one loop thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "h2.h"
#include "request.h"
#include "tls.h"

#define VIEWER_LINGER_SECONDS 2.0
#define VIEWER_ACCEPT_BATCH 64
/* Queued bytes plus a body up to this size go out as one TLS record. */
#define VIEWER_TLS_RECORD_SIZE 16384

static void viewer_on_readable(struct ev_loop *loop, ev_io *watcher, int revents);
static void viewer_on_writable(struct ev_loop *loop, ev_io *watcher, int revents);
static void viewer_on_timer(struct ev_loop *loop, ev_timer *timer, int revents);
static void viewer_process_input(struct viewer_connection *viewer);
static void viewer_flush(struct viewer_connection *viewer);
static bool viewer_choose_h2(struct viewer_connection *viewer);

/* Extra states beyond enum viewer_state, kept private. */
#define VIEWER_LINGERING ((enum viewer_state)(VIEWER_CLOSING + 1))
#define VIEWER_BROKEN ((enum viewer_state)(VIEWER_CLOSING + 2))

static void viewer_close(struct viewer_connection *viewer)
{
    VERGE_CHECK_MAGIC(viewer, VIEWER_CONNECTION_MAGIC);
    struct loop_thread *thread = viewer->thread;
    if (viewer->h2 != NULL)
        h2_connection_free(viewer->h2); /* its streams' requests end here */
    if (viewer->request.magic == REQUEST_MAGIC)
        request_finish(&viewer->request);
    arena_destroy(&viewer->request.arena);
    bytebuf_free(&viewer->request.held_body); /* kept between requests */
    bytebuf_free(&viewer->request.collected_body);
    ev_io_stop(thread->loop, &viewer->read_watcher);
    ev_io_stop(thread->loop, &viewer->write_watcher);
    ev_timer_stop(thread->loop, &viewer->timer);
    tls_connection_free(viewer->tls);
    close(viewer->fd);
    if (viewer->prev != NULL)
        viewer->prev->next = viewer->next;
    else
        thread->connections = viewer->next;
    if (viewer->next != NULL)
        viewer->next->prev = viewer->prev;
    thread->connection_count--;
    atomic_fetch_sub_explicit(&metrics.connections_open, 1, memory_order_relaxed);
    bytebuf_free(&viewer->output);
    free(viewer->input);
    viewer->magic = 0;
    free(viewer);
    if (atomic_load(&server.draining) && thread->connection_count == 0)
        ev_async_send(thread->loop, &thread->wakeup);
}

static void viewer_arm_timer(struct viewer_connection *viewer)
{
    struct ev_loop *loop = viewer->thread->loop;
    const struct config *config = viewer->thread->generation->config;
    double after;
    if (viewer->state == VIEWER_BROKEN)
        after = 0.;
    else if (viewer->state == VIEWER_LINGERING)
        return; /* armed once when lingering starts */
    else if (viewer_output_pending(viewer) > 0 || ev_is_active(&viewer->write_watcher))
        after = config->timeouts.send_ms / 1000.0;
    else if (viewer->h2 != NULL)
        after = config->timeouts.idle_ms / 1000.0; /* no frame for this long: see h2_connection_on_idle */
    else if (viewer->state == VIEWER_IDLE && viewer->input_len == 0 &&
             (viewer->tls == NULL || tls_connection_handshake_done(viewer->tls)))
        after = config->timeouts.idle_ms / 1000.0;
    else if (viewer->state == VIEWER_IDLE) {
        uint64_t elapsed = time_now_monotonic_ms() - viewer->head_started_ms;
        uint64_t limit = (uint64_t)config->timeouts.header_read_ms;
        after = elapsed >= limit ? 0.001 : (double)(limit - elapsed) / 1000.0;
    } else if (viewer->state == VIEWER_IN_REQUEST && viewer->request.body_pump_started && !viewer->request.body_done &&
               !viewer->reading_paused)
        after = config->timeouts.idle_ms / 1000.0;
    else {
        ev_timer_stop(loop, &viewer->timer);
        return;
    }
    ev_timer_stop(loop, &viewer->timer);
    ev_timer_set(&viewer->timer, after, 0.);
    ev_timer_start(loop, &viewer->timer);
}

/* ---- accept -------------------------------------------------------------- */

/* The TLS server the current generation has for the listener's address
 * (certificates follow reloads), or the one it started with when a reload
 * dropped that address or its TLS. */
static struct tls_server *viewer_listener_tls(const struct listener *listener)
{
    if (listener->tls == NULL)
        return NULL;
    const struct config *config = listener->thread->generation->config;
    for (size_t i = 0; i < config->listen_count; i++)
        if (config->listen[i].tls.server != NULL && strcmp(config->listen[i].address.text, listener->address) == 0)
            return config->listen[i].tls.server;
    return listener->tls;
}

void viewer_accept(struct ev_loop *loop, ev_io *watcher, int revents)
{
    struct listener *listener = watcher->data;
    struct loop_thread *thread = listener->thread;
    loop_thread_refresh_generation(thread);
    for (int i = 0; i < VIEWER_ACCEPT_BATCH; i++) {
        struct sockaddr_storage address;
        socklen_t address_len = sizeof address;
        int fd = accept4(watcher->fd, (struct sockaddr *)&address, &address_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_warn("accept failed: %s", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct tls_server *tls_server = viewer_listener_tls(listener);
        struct tls_connection *tls = NULL;
        if (tls_server != NULL && (tls = tls_connection_create(tls_server, fd)) == NULL) {
            log_warn("cannot start TLS on an accepted connection (out of memory?)");
            close(fd);
            continue;
        }
        struct viewer_connection *viewer = calloc(1, sizeof *viewer);
        VERGE_ASSERT(viewer != NULL);
        viewer->magic = VIEWER_CONNECTION_MAGIC;
        viewer->fd = fd;
        viewer->thread = thread;
        viewer->tls = tls;
        viewer->h2c = listener->h2c;
        if (tls != NULL)
            viewer->head_started_ms = time_now_monotonic_ms(); /* the handshake is part of the head's time */
        viewer->input = malloc(VIEWER_INPUT_SIZE);
        VERGE_ASSERT(viewer->input != NULL);
        arena_init(&viewer->request.arena);
        if (address.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&address)->sin_addr, viewer->client_ip, sizeof viewer->client_ip);
        else if (address.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&address)->sin6_addr, viewer->client_ip, sizeof viewer->client_ip);
        else
            strcpy(viewer->client_ip, "unknown");
        ev_io_init(&viewer->read_watcher, viewer_on_readable, fd, EV_READ);
        ev_io_init(&viewer->write_watcher, viewer_on_writable, fd, EV_WRITE);
        ev_init(&viewer->timer, viewer_on_timer);
        viewer->read_watcher.data = viewer->write_watcher.data = viewer->timer.data = viewer;
        viewer->next = thread->connections;
        if (thread->connections != NULL)
            thread->connections->prev = viewer;
        thread->connections = viewer;
        thread->connection_count++;
        atomic_fetch_add_explicit(&metrics.connections_open, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&metrics.connections_total, 1, memory_order_relaxed);
        ev_io_start(loop, &viewer->read_watcher);
        viewer_arm_timer(viewer);
    }
}

/* ---- the socket, plain or TLS ------------------------------------------------ */

/* Like send(2): bytes taken, or -1 with errno (EAGAIN when the socket is full). */
static ssize_t viewer_transport_send(struct viewer_connection *viewer, const void *data, size_t len, int flags)
{
    if (viewer->tls == NULL)
        return send(viewer->fd, data, len, MSG_NOSIGNAL | flags);
    return tls_connection_send(viewer->tls, data, len);
}

/* Like recv(2): bytes read, 0 at the viewer's close, or -1 with errno. */
static ssize_t viewer_receive(struct viewer_connection *viewer, void *buf, size_t len)
{
    if (viewer->tls == NULL)
        return recv(viewer->fd, buf, len, 0);
    bool wants_write = false;
    ssize_t n = tls_connection_recv(viewer->tls, buf, len, &wants_write);
    if (wants_write) {
        viewer->tls_read_wants_write = true;
        ev_io_start(viewer->thread->loop, &viewer->write_watcher);
    }
    return n;
}

/* Reading is on and OpenSSL holds decrypted-to-be bytes the socket will not
 * announce: run the read callback again from the loop. */
static void viewer_read_buffered_later(struct viewer_connection *viewer)
{
    if (viewer->tls != NULL && ev_is_active(&viewer->read_watcher) && tls_connection_has_buffered_input(viewer->tls))
        ev_feed_event(viewer->thread->loop, &viewer->read_watcher, EV_READ);
}

/* ---- output -------------------------------------------------------------- */

size_t viewer_output_pending(const struct viewer_connection *viewer)
{
    if (viewer->stream != NULL)
        return h2_stream_output_pending(viewer);
    return viewer->output.len - viewer->output_sent;
}

bool viewer_is_broken(const struct viewer_connection *viewer)
{
    return viewer->state == VIEWER_BROKEN;
}

static void viewer_mark_broken(struct viewer_connection *viewer)
{
    /* Closing here could free the request under the caller's feet; close
     * from the loop instead. */
    viewer->state = VIEWER_BROKEN;
    ev_io_stop(viewer->thread->loop, &viewer->read_watcher);
    ev_io_stop(viewer->thread->loop, &viewer->write_watcher);
    viewer->output.len = viewer->output_sent = 0;
    viewer_arm_timer(viewer);
}

void viewer_write(struct viewer_connection *viewer, const void *data, size_t len)
{
    if (viewer->stream != NULL) {
        h2_stream_write(viewer, data, len);
        return;
    }
    if (viewer->state == VIEWER_BROKEN || len == 0)
        return;
    if (viewer->corked) {
        bytebuf_append(&viewer->output, data, len);
        return;
    }
    if (viewer_output_pending(viewer) == 0 && !ev_is_active(&viewer->write_watcher)) {
        /* Fast path: nothing queued, so try the socket first and copy only
         * what it does not take. */
        viewer->output.len = viewer->output_sent = 0;
        ssize_t n = viewer_transport_send(viewer, data, len, 0);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            viewer_mark_broken(viewer);
            return;
        }
        if (n > 0) {
            data = (const char *)data + n;
            len -= (size_t)n;
        }
        if (len == 0)
            return;
    }
    bytebuf_append(&viewer->output, data, len);
    if (!ev_is_active(&viewer->write_watcher)) {
        ev_io_start(viewer->thread->loop, &viewer->write_watcher);
        viewer_arm_timer(viewer);
    }
}

/* Sends queued output until done or the socket is full. Returns false when
 * the connection broke. */
static bool viewer_send_queued(struct viewer_connection *viewer, int flags)
{
    while (viewer_output_pending(viewer) > 0) {
        ssize_t n = viewer_transport_send(viewer, viewer->output.data + viewer->output_sent, viewer_output_pending(viewer), flags);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return true;
            viewer_mark_broken(viewer);
            return false;
        }
        viewer->output_sent += (size_t)n;
    }
    return true;
}

/* Over TLS: sends what is queued, then the pieces one after the other. A
 * small body joins the queued head so both go in one record. */
static size_t viewer_tls_send_pieces(struct viewer_connection *viewer, const struct iovec *body, int count)
{
    size_t offered = 0;
    for (int i = 0; i < count; i++)
        offered += body[i].iov_len;
    size_t pending = viewer_output_pending(viewer);
    if (pending > 0 && pending + offered <= VIEWER_TLS_RECORD_SIZE) {
        for (int i = 0; i < count; i++)
            bytebuf_append(&viewer->output, body[i].iov_base, body[i].iov_len);
        viewer->corked = false;
        if (!viewer_send_queued(viewer, 0))
            return 0;
        if (viewer_output_pending(viewer) == 0) {
            viewer->output.len = viewer->output_sent = 0;
        } else {
            ev_io_start(viewer->thread->loop, &viewer->write_watcher);
            viewer_arm_timer(viewer);
        }
        return offered; /* queued or sent: either way taken */
    }
    viewer->corked = false;
    if (!viewer_send_queued(viewer, 0))
        return 0;
    size_t sent = 0;
    bool full = viewer_output_pending(viewer) > 0;
    if (!full) {
        viewer->output.len = viewer->output_sent = 0;
        for (int i = 0; i < count && !full; i++) {
            ssize_t n = viewer_transport_send(viewer, body[i].iov_base, body[i].iov_len, 0);
            if (n < 0 && errno != EAGAIN) {
                viewer_mark_broken(viewer);
                return 0;
            }
            sent += n > 0 ? (size_t)n : 0;
            full = n < (ssize_t)body[i].iov_len;
        }
    }
    if (full) {
        ev_io_start(viewer->thread->loop, &viewer->write_watcher);
        viewer_arm_timer(viewer);
    }
    return sent;
}

size_t viewer_send_vectored(struct viewer_connection *viewer, const struct iovec *body, int count)
{
    if (viewer->stream != NULL)
        return h2_stream_send_vectored(viewer, body, count);
    if (viewer->state == VIEWER_BROKEN || ev_is_active(&viewer->write_watcher))
        return 0; /* the socket is full: the drained callback asks again */
    if (count > VIEWER_MAX_IOV)
        count = VIEWER_MAX_IOV;
    if (viewer->tls != NULL)
        return viewer_tls_send_pieces(viewer, body, count);
    /* One sendmsg for what is queued (typically a corked head) and the body
     * pieces, which are never copied: what the socket does not take now is
     * offered again when it drains. */
    struct iovec iov[VIEWER_MAX_IOV + 1];
    size_t pending = viewer_output_pending(viewer);
    int used = 0;
    if (pending > 0)
        iov[used++] = (struct iovec){viewer->output.data + viewer->output_sent, pending};
    size_t offered = 0;
    for (int i = 0; i < count && i < VIEWER_MAX_IOV; i++) {
        iov[used++] = body[i];
        offered += body[i].iov_len;
    }
    struct msghdr message = {.msg_iov = iov, .msg_iovlen = (size_t)used};
    ssize_t n;
    do
        n = sendmsg(viewer->fd, &message, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno != EAGAIN) {
            viewer_mark_broken(viewer);
            return 0;
        }
        n = 0;
    }
    viewer->corked = false;
    size_t sent = (size_t)n;
    if (sent < pending) {
        viewer->output_sent += sent;
        sent = 0;
    } else {
        viewer->output.len = viewer->output_sent = 0;
        sent -= pending;
    }
    if (sent < offered || viewer_output_pending(viewer) > 0) {
        ev_io_start(viewer->thread->loop, &viewer->write_watcher);
        viewer_arm_timer(viewer);
    }
    return sent;
}

size_t viewer_sendfile(struct viewer_connection *viewer, int fd, uint64_t offset, size_t len)
{
    if (viewer->state == VIEWER_BROKEN || ev_is_active(&viewer->write_watcher))
        return 0;
    /* TLS viewers and HTTP/2 streams get stored bodies as memory pieces (request.c pump_cache). */
    VERGE_ASSERT(viewer->tls == NULL && viewer->stream == NULL);
    /* What is queued (a corked head) goes first, marked as not the end so
     * the kernel may put it in one packet with the file bytes. */
    if (!viewer_send_queued(viewer, MSG_MORE))
        return 0;
    viewer->corked = false;
    size_t sent = 0;
    if (viewer_output_pending(viewer) == 0) {
        viewer->output.len = viewer->output_sent = 0;
        off_t file_offset = (off_t)offset;
        ssize_t n;
        do
            n = sendfile(viewer->fd, fd, &file_offset, len);
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno != EAGAIN) {
            viewer_mark_broken(viewer);
            return 0;
        }
        sent = n > 0 ? (size_t)n : 0;
    }
    if (sent < len) {
        ev_io_start(viewer->thread->loop, &viewer->write_watcher);
        viewer_arm_timer(viewer);
    }
    return sent;
}

void viewer_cork(struct viewer_connection *viewer)
{
    if (viewer->stream == NULL) /* a stream's frames go out once per loop pass anyway */
        viewer->corked = true;
}

void viewer_uncork(struct viewer_connection *viewer)
{
    if (!viewer->corked)
        return;
    viewer->corked = false;
    if (viewer->state == VIEWER_BROKEN || viewer_output_pending(viewer) == 0 || ev_is_active(&viewer->write_watcher))
        return;
    if (!viewer_send_queued(viewer, 0))
        return;
    if (viewer_output_pending(viewer) == 0) {
        viewer->output.len = viewer->output_sent = 0;
        return;
    }
    ev_io_start(viewer->thread->loop, &viewer->write_watcher);
    viewer_arm_timer(viewer);
}

static void viewer_start_lingering(struct viewer_connection *viewer)
{
    if (viewer->tls != NULL)
        tls_connection_shutdown(viewer->tls); /* close_notify: the viewer can tell the response is whole */
    shutdown(viewer->fd, SHUT_WR);
    viewer->state = VIEWER_LINGERING;
    ev_io_start(viewer->thread->loop, &viewer->read_watcher);
    ev_timer_stop(viewer->thread->loop, &viewer->timer);
    ev_timer_set(&viewer->timer, VIEWER_LINGER_SECONDS, 0.);
    ev_timer_start(viewer->thread->loop, &viewer->timer);
}

static void viewer_flush(struct viewer_connection *viewer)
{
    if (!viewer_send_queued(viewer, 0))
        return;
    size_t pending = viewer_output_pending(viewer);
    if (pending == 0) {
        viewer->output.len = viewer->output_sent = 0;
        ev_io_stop(viewer->thread->loop, &viewer->write_watcher);
        if (viewer->state == VIEWER_CLOSING) {
            viewer_start_lingering(viewer);
            return;
        }
    } else if (viewer->output_sent > PUMP_HIGH_WATERMARK) {
        bytebuf_consume(&viewer->output, viewer->output_sent);
        viewer->output_sent = 0;
    }
    if (pending < PUMP_LOW_WATERMARK && viewer->state == VIEWER_IN_REQUEST)
        request_on_output_drained(&viewer->request);
    if (pending < PUMP_LOW_WATERMARK && viewer->h2 != NULL && viewer->magic == VIEWER_CONNECTION_MAGIC)
        h2_connection_on_output_drained(viewer);
    if (viewer->magic == VIEWER_CONNECTION_MAGIC && viewer->state != VIEWER_BROKEN)
        viewer_arm_timer(viewer);
}

static void viewer_on_writable(struct ev_loop *loop, ev_io *watcher, int revents)
{
    struct viewer_connection *viewer = watcher->data;
    VERGE_CHECK_MAGIC(viewer, VIEWER_CONNECTION_MAGIC);
    if (viewer->tls_read_wants_write) {
        viewer->tls_read_wants_write = false;
        if (ev_is_active(&viewer->read_watcher)) /* not while reading is paused on purpose */
            ev_feed_event(loop, &viewer->read_watcher, EV_READ);
    }
    viewer_flush(viewer);
}

/* ---- input --------------------------------------------------------------- */

void viewer_set_reading(struct viewer_connection *viewer, bool reading)
{
    if (viewer->stream != NULL) {
        h2_stream_set_reading(viewer, reading);
        return;
    }
    if (viewer->state == VIEWER_BROKEN)
        return;
    viewer->reading_paused = !reading;
    if (reading) {
        ev_io_start(viewer->thread->loop, &viewer->read_watcher);
        viewer_read_buffered_later(viewer);
    } else
        ev_io_stop(viewer->thread->loop, &viewer->read_watcher);
    viewer_arm_timer(viewer);
}

static void viewer_on_readable(struct ev_loop *loop, ev_io *watcher, int revents)
{
    struct viewer_connection *viewer = watcher->data;
    VERGE_CHECK_MAGIC(viewer, VIEWER_CONNECTION_MAGIC);
    if (viewer->state == VIEWER_LINGERING) {
        char discard[4096];
        ssize_t n = recv(viewer->fd, discard, sizeof discard, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            viewer_close(viewer);
        return;
    }
    if (viewer->input_len == VIEWER_INPUT_SIZE) {
        /* Full: the request is not consuming (pipelined bytes wait). */
        ev_io_stop(loop, &viewer->read_watcher);
        return;
    }
    bool handshake_was_done = viewer->tls == NULL || tls_connection_handshake_done(viewer->tls);
    ssize_t n = viewer_receive(viewer, viewer->input + viewer->input_len, VIEWER_INPUT_SIZE - viewer->input_len);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            if (!handshake_was_done && tls_connection_handshake_done(viewer->tls)) {
                viewer_choose_h2(viewer); /* an h2 server speaks first: its SETTINGS */
                viewer_arm_timer(viewer); /* from the handshake's deadline to idle_ms */
            }
            return;
        }
        viewer_close(viewer);
        return;
    }
    if (n == 0) {
        if (viewer->h2 != NULL && h2_connection_active_streams(viewer->h2) > 0) {
            /* A half-close: the streams in flight are still answered, then the connection closes. */
            ev_io_stop(loop, &viewer->read_watcher);
            h2_connection_drain(viewer);
            return;
        }
        struct request *request = &viewer->request;
        if (viewer->state == VIEWER_IN_REQUEST && request->magic == REQUEST_MAGIC &&
            (request->body_kind == HTTP1_BODY_NONE || request->body_done)) {
            /* A half-close after a complete request: answer it, then close. */
            ev_io_stop(loop, &viewer->read_watcher);
            viewer->close_after_response = true;
            return;
        }
        /* Closed between requests or in the middle of a request body. */
        viewer_close(viewer);
        return;
    }
    if (viewer->input_len == 0 && viewer->state == VIEWER_IDLE)
        viewer->head_started_ms = time_now_monotonic_ms();
    viewer->input_len += (size_t)n;
    if (viewer->state == VIEWER_IDLE)
        viewer_process_input(viewer);
    else if (viewer->state == VIEWER_IN_REQUEST) {
        request_on_viewer_input(&viewer->request);
        if (viewer->magic == VIEWER_CONNECTION_MAGIC && viewer->state != VIEWER_BROKEN)
            viewer_arm_timer(viewer);
    }
    if (viewer->magic == VIEWER_CONNECTION_MAGIC && viewer->state != VIEWER_BROKEN)
        viewer_read_buffered_later(viewer);
}

/* HTTP/2 by ALPN (once the handshake is done) or by the h2c preface. Returns
 * true when the input belongs to HTTP/2 (or must wait to tell). */
static bool viewer_choose_h2(struct viewer_connection *viewer)
{
    if (viewer->h2 != NULL)
        return true;
    if (viewer->protocol_chosen)
        return false;
    if (viewer->tls != NULL) {
        if (!tls_connection_handshake_done(viewer->tls))
            return false;
        viewer->protocol_chosen = true;
        if (!tls_connection_alpn_is_h2(viewer->tls))
            return false;
    } else {
        if (!viewer->h2c) {
            viewer->protocol_chosen = true;
            return false;
        }
        if (viewer->input_len == 0)
            return false;
        int preface = h2_preface_match(viewer->input, viewer->input_len);
        if (preface < 0)
            return true; /* wait for the rest of the preface */
        viewer->protocol_chosen = true;
        if (preface == 0)
            return false;
    }
    h2_connection_start(viewer);
    return true;
}

static void viewer_process_input(struct viewer_connection *viewer)
{
    if (viewer->processing)
        return;
    if (viewer_choose_h2(viewer)) {
        if (viewer->h2 != NULL && viewer->input_len > 0)
            h2_connection_on_input(viewer);
        viewer_arm_timer(viewer);
        return;
    }
    viewer->processing = true;
    while (viewer->state == VIEWER_IDLE && viewer->input_len > 0) {
        if (viewer->head_started_ms == 0)
            viewer->head_started_ms = time_now_monotonic_ms();
        struct http1_request head;
        struct http1_error error;
        enum http1_result result = http1_parse_request(viewer->input, viewer->input_len, &head, &error);
        if (result == HTTP1_INCOMPLETE)
            break;
        viewer->head_started_ms = 0;
        viewer->state = VIEWER_IN_REQUEST;
        /* The read watcher stays on during the request (no epoll_ctl per
         * request): pipelined bytes are buffered, not parsed, until it ends. */
        loop_thread_refresh_generation(viewer->thread);
        if (result == HTTP1_ERROR) {
            ev_io_stop(viewer->thread->loop, &viewer->read_watcher);
            viewer->input_len = 0; /* nothing after a malformed head can be trusted */
            request_start_error(viewer, error.status, error.reason);
        } else {
            request_start(viewer, &head);
        }
    }
    viewer->processing = false;
    if (viewer->state == VIEWER_IDLE) {
        if (viewer->input_len < VIEWER_INPUT_SIZE) {
            ev_io_start(viewer->thread->loop, &viewer->read_watcher);
            viewer_read_buffered_later(viewer);
        }
        viewer_arm_timer(viewer);
    }
}

/* Drops the first n input bytes (a parsed head, consumed body bytes). */
void viewer_consume_input(struct viewer_connection *viewer, size_t n)
{
    if (viewer->stream != NULL) {
        h2_stream_consume_input(viewer, n);
        return;
    }
    VERGE_ASSERT(n <= viewer->input_len);
    memmove(viewer->input, viewer->input + n, viewer->input_len - n);
    viewer->input_len -= n;
}

/* ---- request boundaries -------------------------------------------------- */

void viewer_h2_settled(struct viewer_connection *viewer)
{
    if (viewer->state == VIEWER_BROKEN || viewer->magic != VIEWER_CONNECTION_MAGIC)
        return;
    if (viewer->close_after_response && viewer->state != VIEWER_CLOSING && viewer->state != VIEWER_LINGERING) {
        viewer->state = VIEWER_CLOSING;
        ev_io_stop(viewer->thread->loop, &viewer->read_watcher);
        if (viewer_output_pending(viewer) == 0) {
            viewer_start_lingering(viewer);
            return;
        }
    }
    viewer_arm_timer(viewer);
}

void viewer_request_finished(struct viewer_connection *viewer)
{
    if (viewer->stream != NULL) {
        h2_stream_request_finished(viewer);
        return;
    }
    struct request *request = &viewer->request;
    if (request->body_kind != HTTP1_BODY_NONE && !request->body_done)
        viewer->close_after_response = true; /* the next request's start is unknown */
    if (atomic_load(&server.draining))
        viewer->close_after_response = true;
    request_finish(request);
    if (viewer->state == VIEWER_BROKEN)
        return;
    viewer->reading_paused = false;
    if (viewer->close_after_response) {
        viewer->state = VIEWER_CLOSING;
        ev_io_stop(viewer->thread->loop, &viewer->read_watcher);
        if (viewer_output_pending(viewer) == 0)
            viewer_start_lingering(viewer);
        else
            viewer_arm_timer(viewer);
        return;
    }
    viewer->state = VIEWER_IDLE;
    if (viewer->input_len > 0)
        viewer->head_started_ms = time_now_monotonic_ms();
    viewer_process_input(viewer);
}

void viewer_abort(struct viewer_connection *viewer)
{
    if (viewer->stream != NULL) {
        h2_stream_abort(viewer);
        return;
    }
    request_finish(&viewer->request);
    viewer_mark_broken(viewer);
}

static void viewer_on_timer(struct ev_loop *loop, ev_timer *timer, int revents)
{
    struct viewer_connection *viewer = timer->data;
    VERGE_CHECK_MAGIC(viewer, VIEWER_CONNECTION_MAGIC);
    if (viewer->h2 != NULL && viewer->state == VIEWER_IDLE && h2_connection_on_idle(viewer)) {
        viewer_arm_timer(viewer); /* streams wait on origins, not on this viewer */
        return;
    }
    switch (viewer->state) {
    case VIEWER_IDLE:
        if (viewer->input_len > 0 && viewer_output_pending(viewer) == 0) {
            log_debug("%s: request head not complete within header_read_ms", viewer->client_ip);
            viewer->state = VIEWER_IN_REQUEST;
            viewer->input_len = 0;
            ev_io_stop(loop, &viewer->read_watcher);
            request_start_error(viewer, 408, "request head timeout");
            return;
        }
        viewer_close(viewer);
        return;
    default:
        /* Send timeout, body read timeout, lingering done, or broken. */
        viewer_close(viewer);
        return;
    }
}

void viewer_drain_thread(struct loop_thread *thread)
{
    struct viewer_connection *viewer = thread->connections;
    while (viewer != NULL) {
        struct viewer_connection *next = viewer->next;
        if (viewer->h2 != NULL)
            h2_connection_drain(viewer); /* GOAWAY; it closes when its streams are done */
        else if (viewer->state == VIEWER_IDLE && viewer->input_len == 0 && viewer_output_pending(viewer) == 0)
            viewer_close(viewer);
        else
            viewer->close_after_response = true;
        viewer = next;
    }
}

void viewer_reload_thread(struct loop_thread *thread)
{
    for (struct viewer_connection *viewer = thread->connections; viewer != NULL; viewer = viewer->next)
        if (viewer->h2 != NULL)
            h2_connection_drain(viewer);
}

/* Closes every connection at once (the drain deadline passed). */
void viewer_close_all(struct loop_thread *thread)
{
    while (thread->connections != NULL)
        viewer_close(thread->connections);
}
