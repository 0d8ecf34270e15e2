/* origin_client.c — HTTP/1.1 to origins: per-thread keep-alive pools, one
 * fetch (request + response) at a time per connection, streamed both ways.
 *
 * A fetch owns its connection from origin_fetch_start until it ends; then the
 * connection goes back to its pool (idle, watched for EOF) or is closed. The
 * caller hears about the fetch only through callbacks, always from the event
 * loop, never from inside origin_fetch_start.
 *
 * Invariants:
 *  - A connection is either idle in exactly one pool (fetch == NULL) or leased
 *    to exactly one fetch. Idle connections have their read watcher on, to
 *    notice an origin that closes them.
 *  - Callbacks may re-enter (origin_fetch_abort, _pause_reading, _send_body).
 *    While a callback runs, `callback_depth` > 0 and an abort only marks the
 *    fetch; it is freed when the outermost callback returns.
 *  - A connection is reused only when the response ended cleanly at its framed
 *    end with no extra bytes, the origin allows keep-alive, and the whole
 *    request body was written.
 *  - Retry: only a `retryable` fetch, only when the connection was reused from
 *    the pool and failed before any response byte, only once, and always on a
 *    new connection.
 *  - https origins: the TLS handshake runs between the TCP connect and the
 *    request (FETCH_HANDSHAKE, under connect_timeout_ms). Pools are keyed by
 *    the address and, for https, by the host the certificate must name and
 *    the verification settings, so a connection is only reused for an origin
 *    it was verified for. Bytes OpenSSL read ahead never make the socket
 *    readable: the read watcher is fed by hand while they wait.
 * Locking: none; all of this belongs to one loop thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server.h"
#include "tls.h"

#define ORIGIN_CONNECTION_MAGIC 0x6f636f6eu
#define ORIGIN_FETCH_MAGIC 0x6f666368u
#define ORIGIN_IDLE_TIMEOUT_S 30.0
#define ORIGIN_READ_BUFFER (PUMP_READ_SIZE + HTTP1_MAX_HEAD_BYTES)

struct origin_connection {
    unsigned magic;
    int fd;
    struct loop_thread *thread;
    struct origin_pool *pool;
    ev_io read_watcher;
    ev_io write_watcher;
    ev_timer timer;
    struct origin_connection *idle_next, *idle_prev;
    struct origin_fetch *fetch; /* NULL while idle */
    bool connected;
    bool reused;                /* came from the pool for the current fetch */
    struct tls_connection *tls; /* https origins, from the end of the TCP connect */
    bool tls_read_wants_write;  /* a TLS read waits for the socket to take bytes */
    char *input;                /* ORIGIN_READ_BUFFER bytes, lent to the fetch that holds the connection */
};

struct origin_pool {
    struct origin_pool *next;
    struct sockaddr_storage address;
    socklen_t address_len;
    char *tls_identity; /* https: "host verify ca_file"; NULL for http */
    struct origin_connection *idle_head;
    size_t idle_count;
};

enum fetch_state { FETCH_CONNECTING, FETCH_HANDSHAKE, FETCH_WAITING_HEAD, FETCH_BODY, FETCH_DONE };

struct origin_fetch {
    unsigned magic;
    struct loop_thread *thread;
    struct origin_fetch_params params;
    struct origin_fetch_callbacks callbacks;
    void *context;
    struct origin_connection *connection;
    enum fetch_state state;
    struct bytebuf output; /* head + framed body bytes to write */
    size_t output_sent;
    size_t head_len;    /* the head is kept at the front until the first response byte, for a retry */
    bool body_complete; /* the caller called origin_fetch_end_body (or has_body is false) */
    char *input;        /* the connection's buffer while one is attached */
    size_t input_len;
    bool any_response_byte;
    bool retried;
    bool paused;
    bool aborted;
    bool write_failed;
    int callback_depth;
    enum http1_body_kind body_kind;
    uint64_t body_remaining;
    bool response_keep_alive;
    struct http1_chunked_decoder chunked;
    uint64_t started_us;
    void (*on_output_drained)(void *context);
    ev_timer deferred_failure; /* reports a failure from the loop, never from inside origin_fetch_start */
};

static void connection_close(struct origin_connection *connection);
static void fetch_connect(struct origin_fetch *fetch);
static void fetch_on_readable(struct origin_fetch *fetch);
static void fetch_flush_output(struct origin_fetch *fetch, bool notify_drained);
static void fetch_on_ready(struct origin_fetch *fetch);

/* ---- pools --------------------------------------------------------------- */

static struct origin_pool *pool_for(struct loop_thread *thread, const struct config_origin *origin)
{
    const char *identity = origin->pool_identity; /* made once, at load */
    for (struct origin_pool *pool = thread->origin_pools; pool != NULL; pool = pool->next)
        if (pool->address_len == origin->sockaddr_len && memcmp(&pool->address, &origin->sockaddr, origin->sockaddr_len) == 0 &&
            (pool->tls_identity == NULL ? identity == NULL : identity != NULL && strcmp(pool->tls_identity, identity) == 0))
            return pool;
    struct origin_pool *pool = calloc(1, sizeof *pool);
    VERGE_ASSERT(pool != NULL);
    memcpy(&pool->address, &origin->sockaddr, origin->sockaddr_len);
    pool->address_len = origin->sockaddr_len;
    if (identity != NULL) { /* the pool outlives the generation that named it */
        pool->tls_identity = strdup(identity);
        VERGE_ASSERT(pool->tls_identity != NULL);
    }
    pool->next = thread->origin_pools;
    thread->origin_pools = pool;
    return pool;
}

static void pool_unlink_idle(struct origin_connection *connection)
{
    struct origin_pool *pool = connection->pool;
    if (connection->idle_prev != NULL)
        connection->idle_prev->idle_next = connection->idle_next;
    else
        pool->idle_head = connection->idle_next;
    if (connection->idle_next != NULL)
        connection->idle_next->idle_prev = connection->idle_prev;
    connection->idle_next = connection->idle_prev = NULL;
    pool->idle_count--;
}

static void pool_release(struct origin_connection *connection, int max_idle)
{
    struct origin_pool *pool = connection->pool;
    struct ev_loop *loop = connection->thread->loop;
    connection->fetch = NULL;
    ev_io_stop(loop, &connection->write_watcher);
    ev_timer_stop(loop, &connection->timer);
    /* Bytes read ahead after the response's end cannot belong to a next one. */
    bool stray_bytes = connection->tls != NULL && tls_connection_has_buffered_input(connection->tls);
    if ((int)pool->idle_count >= max_idle || atomic_load(&server.draining) || stray_bytes) {
        connection_close(connection);
        return;
    }
    /* The read watcher stays on while idle (no epoll_ctl per request): the
     * readable callback closes an idle connection the origin closed. */
    ev_io_start(loop, &connection->read_watcher);
    ev_timer_set(&connection->timer, ORIGIN_IDLE_TIMEOUT_S, 0.);
    ev_timer_start(loop, &connection->timer);
    connection->idle_prev = NULL;
    connection->idle_next = pool->idle_head;
    if (pool->idle_head != NULL)
        pool->idle_head->idle_prev = connection;
    pool->idle_head = connection;
    pool->idle_count++;
}

void origin_pools_close_idle(struct loop_thread *thread)
{
    for (struct origin_pool *pool = thread->origin_pools; pool != NULL; pool = pool->next)
        while (pool->idle_head != NULL) {
            struct origin_connection *connection = pool->idle_head;
            pool_unlink_idle(connection);
            connection_close(connection);
        }
}

void origin_pools_destroy(struct loop_thread *thread)
{
    origin_pools_close_idle(thread);
    while (thread->origin_pools != NULL) {
        struct origin_pool *next = thread->origin_pools->next;
        free(thread->origin_pools->tls_identity);
        free(thread->origin_pools);
        thread->origin_pools = next;
    }
}

/* ---- connections --------------------------------------------------------- */

static void connection_on_readable(struct ev_loop *loop, ev_io *watcher, int revents);
static void connection_on_writable(struct ev_loop *loop, ev_io *watcher, int revents);
static void connection_on_timeout(struct ev_loop *loop, ev_timer *timer, int revents);

static void connection_close(struct origin_connection *connection)
{
    VERGE_CHECK_MAGIC(connection, ORIGIN_CONNECTION_MAGIC);
    struct ev_loop *loop = connection->thread->loop;
    ev_io_stop(loop, &connection->read_watcher);
    ev_io_stop(loop, &connection->write_watcher);
    ev_timer_stop(loop, &connection->timer);
    tls_connection_free(connection->tls);
    close(connection->fd);
    free(connection->input);
    connection->magic = 0;
    free(connection);
}

/* Returns a connection whose connect() is under way or done, or NULL with
 * errno set when the socket could not even be created. */
static struct origin_connection *connection_open(struct loop_thread *thread, struct origin_pool *pool)
{
    int fd = socket(pool->address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct origin_connection *connection = calloc(1, sizeof *connection);
    VERGE_ASSERT(connection != NULL);
    connection->magic = ORIGIN_CONNECTION_MAGIC;
    connection->fd = fd;
    connection->thread = thread;
    connection->pool = pool;
    connection->input = malloc(ORIGIN_READ_BUFFER);
    VERGE_ASSERT(connection->input != NULL);
    ev_io_init(&connection->read_watcher, connection_on_readable, fd, EV_READ);
    ev_io_init(&connection->write_watcher, connection_on_writable, fd, EV_WRITE);
    ev_init(&connection->timer, connection_on_timeout);
    connection->read_watcher.data = connection->write_watcher.data = connection->timer.data = connection;
    if (connect(fd, (struct sockaddr *)&pool->address, pool->address_len) == 0)
        connection->connected = true;
    else if (errno != EINPROGRESS) {
        int saved = errno;
        close(fd);
        free(connection->input);
        connection->magic = 0;
        free(connection);
        errno = saved;
        return NULL;
    }
    return connection;
}

/* Like send(2) and recv(2), plain or through the connection's TLS. */
static ssize_t connection_send(struct origin_connection *connection, const void *data, size_t len)
{
    if (connection->tls == NULL)
        return send(connection->fd, data, len, MSG_NOSIGNAL);
    return tls_connection_send(connection->tls, data, len);
}

static ssize_t connection_receive(struct origin_connection *connection, void *buf, size_t len)
{
    if (connection->tls == NULL)
        return recv(connection->fd, buf, len, 0);
    bool wants_write = false;
    ssize_t n = tls_connection_recv(connection->tls, buf, len, &wants_write);
    if (wants_write) {
        connection->tls_read_wants_write = true;
        ev_io_start(connection->thread->loop, &connection->write_watcher);
    }
    return n;
}

/* Reading is on and OpenSSL holds bytes the socket will not announce. */
static void connection_read_buffered_later(struct origin_connection *connection)
{
    if (connection->tls != NULL && ev_is_active(&connection->read_watcher) && tls_connection_has_buffered_input(connection->tls))
        ev_feed_event(connection->thread->loop, &connection->read_watcher, EV_READ);
}

static struct origin_connection *pool_acquire(struct loop_thread *thread, struct origin_pool *pool)
{
    struct origin_connection *connection = pool->idle_head;
    if (connection == NULL)
        return NULL;
    pool_unlink_idle(connection);
    ev_timer_stop(thread->loop, &connection->timer);
    connection->reused = true;
    return connection;
}

/* ---- fetch lifecycle ----------------------------------------------------- */

static void fetch_free(struct origin_fetch *fetch)
{
    ev_timer_stop(fetch->thread->loop, &fetch->deferred_failure);
    bytebuf_free(&fetch->output);
    fetch->magic = 0;
    free(fetch);
}

/* Detaches and closes the connection (not reusable). */
static void fetch_drop_connection(struct origin_fetch *fetch)
{
    if (fetch->connection != NULL) {
        fetch->connection->fetch = NULL;
        connection_close(fetch->connection);
        fetch->connection = NULL;
    }
}

static void fetch_fail(struct origin_fetch *fetch, enum origin_error_kind kind, const char *reason)
{
    bool head_received = fetch->state == FETCH_BODY;
    fetch_drop_connection(fetch);
    fetch->state = FETCH_DONE;
    if (fetch->params.metrics != NULL)
        atomic_fetch_add_explicit(&fetch->params.metrics->errors[kind], 1, memory_order_relaxed);
    fetch->callback_depth++;
    if (!fetch->aborted)
        fetch->callbacks.on_error(fetch->context, kind, reason, head_received);
    fetch->callback_depth--;
    fetch_free(fetch);
}

static void fetch_finish(struct origin_fetch *fetch, bool clean_end)
{
    struct origin_connection *connection = fetch->connection;
    fetch->connection = NULL;
    fetch->state = FETCH_DONE;
    if (connection != NULL) {
        bool reusable = clean_end && fetch->response_keep_alive && fetch->body_complete && !fetch->write_failed &&
                        fetch->output_sent == fetch->output.len;
        if (reusable)
            pool_release(connection, fetch->params.origin->max_idle);
        else
            connection_close(connection);
    }
    fetch->callback_depth++;
    if (!fetch->aborted)
        fetch->callbacks.on_end(fetch->context);
    fetch->callback_depth--;
    fetch_free(fetch);
}

/* Called after a callback returned: frees a fetch aborted during it. Returns
 * true when the fetch is gone. */
static bool fetch_gone_after_callback(struct origin_fetch *fetch)
{
    if (fetch->aborted && fetch->callback_depth == 0) {
        fetch_drop_connection(fetch);
        fetch_free(fetch);
        return true;
    }
    return fetch->aborted;
}

static bool fetch_try_retry(struct origin_fetch *fetch)
{
    if (!fetch->params.retryable || fetch->retried || fetch->any_response_byte || fetch->connection == NULL ||
        !fetch->connection->reused)
        return false;
    fetch->retried = true;
    fetch_drop_connection(fetch);
    fetch->output_sent = 0;
    fetch->output.len = fetch->head_len;
    log_debug("origin %s: reused connection closed before responding, retrying on a new connection", fetch->params.origin->name);
    fetch_connect(fetch);
    return true;
}

struct origin_fetch *origin_fetch_start(struct loop_thread *thread, const struct origin_fetch_params *params,
                                        const struct origin_fetch_callbacks *callbacks, void *context)
{
    struct origin_fetch *fetch = calloc(1, sizeof *fetch);
    VERGE_ASSERT(fetch != NULL);
    fetch->magic = ORIGIN_FETCH_MAGIC;
    fetch->thread = thread;
    fetch->params = *params;
    fetch->params.request_head = NULL;
    fetch->callbacks = *callbacks;
    fetch->context = context;
    fetch->body_complete = !params->has_body;
    bytebuf_append(&fetch->output, params->request_head->data, params->request_head->len);
    fetch->head_len = fetch->output.len;
    fetch->started_us = time_now_monotonic_us();
    if (params->metrics != NULL)
        atomic_fetch_add_explicit(&params->metrics->requests, 1, memory_order_relaxed);
    fetch_connect(fetch);
    return fetch;
}

static void fetch_fail_soon_cb(struct ev_loop *loop, ev_timer *timer, int revents)
{
    fetch_fail(timer->data, ORIGIN_ERROR_REFUSED, "origin connection refused");
}

static void fetch_connect(struct origin_fetch *fetch)
{
    struct loop_thread *thread = fetch->thread;
    struct origin_pool *pool = pool_for(thread, fetch->params.origin);
    struct origin_connection *connection = fetch->retried ? NULL : pool_acquire(thread, pool);
    if (connection == NULL)
        connection = connection_open(thread, pool);
    if (connection == NULL) {
        /* Report from the loop, never from inside origin_fetch_start. */
        log_warn("origin %s: cannot connect: %s", fetch->params.origin->name, strerror(errno));
        ev_timer_init(&fetch->deferred_failure, fetch_fail_soon_cb, 0., 0.);
        fetch->deferred_failure.data = fetch;
        ev_timer_start(thread->loop, &fetch->deferred_failure);
        return;
    }
    fetch->connection = connection;
    connection->fetch = fetch;
    fetch->input = connection->input;
    fetch->input_len = 0;
    fetch->state = FETCH_CONNECTING;
    /* A pooled connection is ready; a new one connects (and, for https, shakes
     * hands) from the loop, so no callback runs inside origin_fetch_start. */
    if (connection->connected && (connection->tls != NULL || !fetch->params.origin->tls)) {
        fetch_on_ready(fetch);
    } else {
        ev_timer_set(&connection->timer, fetch->params.origin->connect_timeout_ms / 1000.0, 0.);
        ev_timer_start(thread->loop, &connection->timer);
        ev_io_start(thread->loop, &connection->write_watcher);
    }
}

/* The connection can take the request: TCP is up and, for https, the handshake is done. */
static void fetch_on_ready(struct origin_fetch *fetch)
{
    struct origin_connection *connection = fetch->connection;
    struct ev_loop *loop = fetch->thread->loop;
    fetch->state = FETCH_WAITING_HEAD;
    ev_timer_stop(loop, &connection->timer);
    ev_timer_set(&connection->timer, 0., fetch->params.origin->read_timeout_ms / 1000.0);
    ev_timer_again(loop, &connection->timer);
    ev_io_start(loop, &connection->read_watcher);
    if (fetch->params.has_body)
        ev_io_start(loop, &connection->write_watcher); /* on_ready_for_body runs from the loop */
    else
        fetch_flush_output(fetch, false); /* the socket is writable: no wait for the loop */
}

/* Drives the https handshake; returns false when it failed (the fetch is gone). */
static bool fetch_handshake_step(struct origin_fetch *fetch)
{
    struct origin_connection *connection = fetch->connection;
    struct ev_loop *loop = fetch->thread->loop;
    switch (tls_connection_handshake(connection->tls)) {
    case TLS_IO_OK:
        ev_io_stop(loop, &connection->write_watcher);
        fetch_on_ready(fetch);
        return true;
    case TLS_IO_WANT_READ:
        ev_io_stop(loop, &connection->write_watcher);
        ev_io_start(loop, &connection->read_watcher);
        return true;
    case TLS_IO_WANT_WRITE:
        ev_io_start(loop, &connection->write_watcher);
        return true;
    default:
        log_warn("origin %s: TLS handshake with %s failed: %s", fetch->params.origin->name, fetch->params.origin->host,
                 tls_connection_error(connection->tls));
        fetch_fail(fetch, ORIGIN_ERROR_TLS, "origin TLS handshake failed");
        return false;
    }
}

/* ---- I/O ----------------------------------------------------------------- */

static void connection_on_timeout(struct ev_loop *loop, ev_timer *timer, int revents)
{
    struct origin_connection *connection = timer->data;
    struct origin_fetch *fetch = connection->fetch;
    if (fetch == NULL) { /* idle in the pool for too long */
        pool_unlink_idle(connection);
        connection_close(connection);
        return;
    }
    VERGE_CHECK_MAGIC(fetch, ORIGIN_FETCH_MAGIC);
    if (fetch->state == FETCH_CONNECTING)
        fetch_fail(fetch, ORIGIN_ERROR_TIMEOUT, "origin connect timeout");
    else if (fetch->state == FETCH_HANDSHAKE)
        fetch_fail(fetch, ORIGIN_ERROR_TIMEOUT, "origin TLS handshake timeout");
    else
        fetch_fail(fetch, ORIGIN_ERROR_TIMEOUT, "origin read timeout");
}

/* Returns false when the connect failed (the fetch is gone). For https the
 * handshake starts: the fetch is in FETCH_HANDSHAKE (or already ready). */
static bool fetch_on_connected(struct origin_fetch *fetch)
{
    struct origin_connection *connection = fetch->connection;
    struct ev_loop *loop = fetch->thread->loop;
    int error = 0;
    socklen_t len = sizeof error;
    if (getsockopt(connection->fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0)
        error = errno;
    if (error != 0) {
        log_warn("origin %s: connect failed: %s", fetch->params.origin->name, strerror(error));
        if (error == ETIMEDOUT)
            fetch_fail(fetch, ORIGIN_ERROR_TIMEOUT, "origin connect timeout");
        else if (error == ECONNREFUSED)
            fetch_fail(fetch, ORIGIN_ERROR_REFUSED, "origin connection refused");
        else
            fetch_fail(fetch, ORIGIN_ERROR_REFUSED, "origin connection failed");
        return false;
    }
    connection->connected = true;
    if (fetch->params.origin->tls) {
        /* The connect timer runs on: connect_timeout_ms covers the handshake too. */
        connection->tls =
            tls_client_connection_create(fetch->params.origin->tls_client, connection->fd, fetch->params.origin->host);
        if (connection->tls == NULL) {
            log_warn("origin %s: cannot start TLS (out of memory?)", fetch->params.origin->name);
            fetch_fail(fetch, ORIGIN_ERROR_TLS, "origin TLS handshake failed");
            return false;
        }
        fetch->state = FETCH_HANDSHAKE;
        return fetch_handshake_step(fetch);
    }
    fetch->state = FETCH_WAITING_HEAD;
    ev_timer_stop(loop, &connection->timer);
    ev_timer_set(&connection->timer, 0., fetch->params.origin->read_timeout_ms / 1000.0);
    ev_timer_again(loop, &connection->timer);
    ev_io_start(loop, &connection->read_watcher);
    return true;
}

static void connection_on_writable(struct ev_loop *loop, ev_io *watcher, int revents)
{
    struct origin_connection *connection = watcher->data;
    struct origin_fetch *fetch = connection->fetch;
    VERGE_CHECK_MAGIC(fetch, ORIGIN_FETCH_MAGIC);
    if (connection->tls_read_wants_write) {
        connection->tls_read_wants_write = false;
        if (ev_is_active(&connection->read_watcher)) /* not while reading is paused for backpressure */
            ev_feed_event(loop, &connection->read_watcher, EV_READ);
    }
    if (fetch->state == FETCH_HANDSHAKE) {
        fetch_handshake_step(fetch);
        return;
    }
    if (fetch->state == FETCH_CONNECTING) {
        if (!fetch_on_connected(fetch) || fetch->params.origin->tls)
            return; /* failed, or the handshake goes on (fetch_on_ready takes over) */
        if (fetch->params.has_body) {
            fetch->callback_depth++;
            fetch->callbacks.on_ready_for_body(fetch->context);
            fetch->callback_depth--;
            if (fetch_gone_after_callback(fetch))
                return;
        }
    } else if (fetch->params.has_body && fetch->output_sent == 0 && !fetch->body_complete && fetch->output.len == fetch->head_len) {
        /* A connection reused from the pool: the body may start now. */
        fetch->callback_depth++;
        fetch->callbacks.on_ready_for_body(fetch->context);
        fetch->callback_depth--;
        if (fetch_gone_after_callback(fetch))
            return;
    }
    fetch_flush_output(fetch, true);
}

/* Writes queued output. `notify_drained` is false when the caller itself is
 * queueing body bytes, so the drain callback never re-enters it. */
static void fetch_flush_output(struct origin_fetch *fetch, bool notify_drained)
{
    struct origin_connection *connection = fetch->connection;
    if (connection == NULL || fetch->state == FETCH_CONNECTING || fetch->state == FETCH_HANDSHAKE || fetch->write_failed)
        return;
    struct ev_loop *loop = fetch->thread->loop;
    while (fetch->output_sent < fetch->output.len) {
        ssize_t n = connection_send(connection, fetch->output.data + fetch->output_sent, fetch->output.len - fetch->output_sent);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                ev_io_start(loop, &connection->write_watcher);
                return;
            }
            ev_io_stop(loop, &connection->write_watcher);
            if (fetch->state == FETCH_WAITING_HEAD && !fetch->any_response_byte) {
                if (fetch_try_retry(fetch))
                    return;
            }
            /* The origin may still have answered (e.g. an early error); let
             * the read side decide. Nothing more will be written. */
            fetch->write_failed = true;
            return;
        }
        fetch->output_sent += (size_t)n;
        if (fetch->state != FETCH_BODY)
            ev_timer_again(loop, &connection->timer);
    }
    ev_io_stop(loop, &connection->write_watcher);
    /* Keep the head for a possible retry until the first response byte. */
    if (fetch->any_response_byte || !fetch->params.retryable) {
        fetch->output.len = 0;
        fetch->output_sent = 0;
        fetch->head_len = 0;
    }
    if (notify_drained && fetch->on_output_drained != NULL && !fetch->body_complete) {
        fetch->callback_depth++;
        fetch->on_output_drained(fetch->context);
        fetch->callback_depth--;
        fetch_gone_after_callback(fetch);
    }
}

static void connection_on_readable(struct ev_loop *loop, ev_io *watcher, int revents)
{
    struct origin_connection *connection = watcher->data;
    struct origin_fetch *fetch = connection->fetch;
    if (fetch == NULL) {
        /* An idle connection has nothing to say: readable means EOF, a reset
         * or a stray byte, and in each case it cannot be reused. Over TLS it
         * may also be a late session ticket, which OpenSSL takes in. */
        if (connection->tls != NULL) {
            char byte;
            size_t got;
            if (tls_connection_read(connection->tls, &byte, 1, &got) == TLS_IO_WANT_READ)
                return;
        }
        pool_unlink_idle(connection);
        connection_close(connection);
        return;
    }
    VERGE_CHECK_MAGIC(fetch, ORIGIN_FETCH_MAGIC);
    if (fetch->state == FETCH_HANDSHAKE)
        fetch_handshake_step(fetch);
    else
        fetch_on_readable(fetch);
}

/* Delivers body bytes from the input buffer; returns false when the fetch
 * ended (finished, failed or aborted) and must not be touched. */
static bool fetch_deliver_body(struct origin_fetch *fetch)
{
    if (fetch->input_len == 0 && fetch->body_kind != HTTP1_BODY_NONE)
        return true;
    size_t deliver = 0;
    bool ended = false, extra_bytes = false;
    switch (fetch->body_kind) {
    case HTTP1_BODY_NONE:
        ended = true;
        extra_bytes = fetch->input_len > 0;
        break;
    case HTTP1_BODY_LENGTH:
        deliver = fetch->input_len < fetch->body_remaining ? fetch->input_len : (size_t)fetch->body_remaining;
        fetch->body_remaining -= deliver;
        ended = fetch->body_remaining == 0;
        extra_bytes = fetch->input_len > deliver;
        break;
    case HTTP1_BODY_CHUNKED: {
        size_t len = fetch->input_len;
        long result = http1_chunked_decode(&fetch->chunked, fetch->input, &len);
        if (result == -1) {
            if (len > 0) {
                fetch->callback_depth++;
                fetch->callbacks.on_body(fetch->context, fetch->input, len);
                fetch->callback_depth--;
                if (fetch_gone_after_callback(fetch))
                    return false;
            }
            fetch_fail(fetch, ORIGIN_ERROR_MALFORMED, "origin sent a malformed response (bad chunked encoding)");
            return false;
        }
        deliver = len;
        ended = result >= 0;
        extra_bytes = result > 0;
        break;
    }
    case HTTP1_BODY_UNTIL_CLOSE:
        deliver = fetch->input_len;
        break;
    }
    if (deliver > 0) {
        fetch->callback_depth++;
        fetch->callbacks.on_body(fetch->context, fetch->input, deliver);
        fetch->callback_depth--;
        if (fetch_gone_after_callback(fetch))
            return false;
    }
    fetch->input_len = 0;
    if (ended) {
        fetch_finish(fetch, !extra_bytes);
        return false;
    }
    return true;
}

/* Parses the response head; returns false when the fetch ended. */
static bool fetch_on_head(struct origin_fetch *fetch)
{
    for (;;) {
        struct http1_response response;
        struct http1_error error;
        enum http1_result result = http1_parse_response(fetch->input, fetch->input_len, fetch->params.method, &response, &error);
        if (result == HTTP1_INCOMPLETE) {
            if (fetch->input_len >= HTTP1_MAX_HEAD_BYTES) {
                fetch_fail(fetch, ORIGIN_ERROR_MALFORMED, "origin sent a malformed response (head too large)");
                return false;
            }
            return true;
        }
        if (result == HTTP1_ERROR) {
            log_warn("origin %s: malformed response: %s", fetch->params.origin->name, error.reason);
            char message[200]; /* callbacks copy what they keep */
            snprintf(message, sizeof message, "origin sent a malformed response (%s)", error.reason);
            fetch_fail(fetch, ORIGIN_ERROR_MALFORMED, message);
            return false;
        }
        if (response.status < 200) {
            if (response.status == 101) {
                fetch_fail(fetch, ORIGIN_ERROR_MALFORMED, "origin sent a malformed response (unexpected 101)");
                return false;
            }
            memmove(fetch->input, fetch->input + response.head_bytes, fetch->input_len - response.head_bytes);
            fetch->input_len -= response.head_bytes;
            continue; /* interim response: skip it */
        }
        if (fetch->params.metrics != NULL)
            metrics_observe_origin_latency(fetch->params.metrics, (double)(time_now_monotonic_us() - fetch->started_us) / 1e6);
        fetch->state = FETCH_BODY;
        fetch->body_kind = response.body_kind;
        fetch->body_remaining = response.content_length;
        fetch->response_keep_alive = response.keep_alive;
        if (response.body_kind == HTTP1_BODY_CHUNKED)
            http1_chunked_decoder_init(&fetch->chunked);
        if (response.body_kind == HTTP1_BODY_LENGTH && response.content_length == 0)
            fetch->body_kind = HTTP1_BODY_NONE;
        size_t head_bytes = response.head_bytes;
        fetch->callback_depth++;
        fetch->callbacks.on_head(fetch->context, &response, slice_make(fetch->input, head_bytes));
        fetch->callback_depth--;
        if (fetch_gone_after_callback(fetch))
            return false;
        memmove(fetch->input, fetch->input + head_bytes, fetch->input_len - head_bytes);
        fetch->input_len -= head_bytes;
        if (fetch->body_kind == HTTP1_BODY_NONE || fetch->input_len > 0)
            return fetch_deliver_body(fetch);
        return true;
    }
}

static void fetch_on_readable(struct origin_fetch *fetch)
{
    struct origin_connection *connection = fetch->connection;
    struct ev_loop *loop = fetch->thread->loop;
    size_t room = ORIGIN_READ_BUFFER - fetch->input_len;
    if (fetch->state == FETCH_BODY && room > PUMP_READ_SIZE)
        room = PUMP_READ_SIZE;
    ssize_t n = connection_receive(connection, fetch->input + fetch->input_len, room);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        if (fetch_try_retry(fetch))
            return;
        fetch_fail(fetch, ORIGIN_ERROR_RESET, "origin connection reset");
        return;
    }
    if (n == 0) {
        if (fetch->state == FETCH_BODY && fetch->body_kind == HTTP1_BODY_UNTIL_CLOSE) {
            fetch->response_keep_alive = false;
            fetch_finish(fetch, true);
            return;
        }
        if (fetch_try_retry(fetch))
            return;
        if (fetch->state == FETCH_WAITING_HEAD && fetch->input_len > 0)
            fetch_fail(fetch, ORIGIN_ERROR_MALFORMED, "origin sent a malformed response (incomplete head)");
        else
            fetch_fail(fetch, ORIGIN_ERROR_RESET, "origin connection reset");
        return;
    }
    fetch->any_response_byte = true;
    fetch->input_len += (size_t)n;
    /* Fed now, run after these callbacks; a pause or a close in them stops
     * the watcher, which drops the fed event. */
    if (!fetch->paused)
        connection_read_buffered_later(connection);
    if (!fetch->paused)
        ev_timer_again(loop, &connection->timer);
    bool was_waiting = fetch->state == FETCH_WAITING_HEAD;
    bool alive = was_waiting ? fetch_on_head(fetch) : fetch_deliver_body(fetch);
    if (alive && fetch->state == FETCH_BODY && fetch->callbacks.on_flush != NULL) {
        fetch->callback_depth++;
        fetch->callbacks.on_flush(fetch->context);
        fetch->callback_depth--;
        fetch_gone_after_callback(fetch);
    }
}

/* ---- caller-facing controls ---------------------------------------------- */

void origin_fetch_send_body(struct origin_fetch *fetch, const char *data, size_t len)
{
    VERGE_CHECK_MAGIC(fetch, ORIGIN_FETCH_MAGIC);
    if (fetch->write_failed)
        return;
    if (fetch->output_sent == fetch->output.len && fetch->head_len == 0) {
        fetch->output.len = 0;
        fetch->output_sent = 0;
    }
    bytebuf_append(&fetch->output, data, len);
    fetch_flush_output(fetch, false);
}

void origin_fetch_end_body(struct origin_fetch *fetch)
{
    VERGE_CHECK_MAGIC(fetch, ORIGIN_FETCH_MAGIC);
    fetch->body_complete = true;
}

size_t origin_fetch_pending_output(const struct origin_fetch *fetch)
{
    return fetch->output.len - fetch->output_sent;
}

void origin_fetch_pause_reading(struct origin_fetch *fetch, bool paused)
{
    VERGE_CHECK_MAGIC(fetch, ORIGIN_FETCH_MAGIC);
    if (fetch->paused == paused || fetch->connection == NULL)
        return;
    fetch->paused = paused;
    struct ev_loop *loop = fetch->thread->loop;
    struct origin_connection *connection = fetch->connection;
    if (paused) {
        ev_io_stop(loop, &connection->read_watcher);
        ev_timer_stop(loop, &connection->timer);
    } else if (fetch->state == FETCH_BODY || fetch->state == FETCH_WAITING_HEAD) {
        ev_io_start(loop, &connection->read_watcher);
        ev_timer_again(loop, &connection->timer);
        connection_read_buffered_later(connection);
    }
}

void origin_fetch_rebind(struct origin_fetch *fetch, const struct origin_fetch_callbacks *callbacks, void *context)
{
    VERGE_CHECK_MAGIC(fetch, ORIGIN_FETCH_MAGIC);
    fetch->callbacks = *callbacks;
    fetch->context = context;
    fetch->on_output_drained = NULL;
}

void origin_fetch_set_drain_callback(struct origin_fetch *fetch, void (*on_output_drained)(void *context))
{
    fetch->on_output_drained = on_output_drained;
}

void origin_fetch_abort(struct origin_fetch *fetch)
{
    VERGE_CHECK_MAGIC(fetch, ORIGIN_FETCH_MAGIC);
    fetch->aborted = true;
    if (fetch->callback_depth > 0)
        return; /* freed when the callback returns */
    fetch_drop_connection(fetch);
    fetch_free(fetch);
}
