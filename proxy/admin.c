/* admin.c — the admin listener: a small HTTP/1.1 server on the main thread's
 * libev loop for GET /healthz, GET /metrics, POST /reload and POST /purge.
 *
 * A connection reads into `input`, parses a head with http1_parse_request,
 * reads a Content-Length body (up to ADMIN_MAX_BODY) behind it, and hands the
 * route handler the request and the body bytes. The handler fills an
 * admin_response; the answer is queued in `output` and written. Keep-alive
 * and pipelining work by parsing the next request once the previous answer
 * is fully written.
 *
 * Invariants:
 *  - At most one answer is in flight per connection: input is parsed only
 *    while `output` is empty, and reading stops while it is not, so both
 *    buffers stay bounded (input <= ADMIN_MAX_INPUT).
 *  - A request's slices point into `input`; it is consumed only after its
 *    handler returned.
 *  - After an answer that ends the connection (a parse error, an unusable
 *    body, or Connection: close), the write side is shut down and input is
 *    read and discarded until EOF or ADMIN_LINGER_S ("lingering close"), so
 *    the peer reads the whole answer instead of a reset.
 *  - Every connection has an idle timer; ADMIN_IDLE_TIMEOUT_S without bytes
 *    moving closes it.
 *
 * POST /purge reads a small JSON body with yajl's tree parser, validates all
 * of it first (so a bad entry purges nothing), then calls the store's purge
 * functions synchronously (they take the store's own locks).
 *
 * Locking: none. Everything here runs on the main thread's loop, including
 * server_reload and admin_listener_update/stop.
 */
#include "admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "../cache/store.h"
#include "access_log.h"
#include "http1.h"
#include "metrics.h"

#define ADMIN_MAGIC 0x61646d6eu
#define ADMIN_MAX_BODY (1024 * 1024)
#define ADMIN_MAX_INPUT (HTTP1_MAX_HEAD_BYTES + 1 + ADMIN_MAX_BODY)
#define ADMIN_READ_SIZE (16 * 1024)
#define ADMIN_MAX_CONNECTIONS 64
#define ADMIN_IDLE_TIMEOUT_S 30.0
#define ADMIN_LINGER_S 2.0
#define ADMIN_ACCEPT_PAUSE_S 0.5

struct admin_connection {
    unsigned magic;
    int fd;
    ev_io read_watcher;
    ev_io write_watcher;
    ev_timer idle_timer;
    struct bytebuf input;
    struct bytebuf output;
    bool close_after_output; /* the queued answer is the last one */
    bool lingering;          /* answer written, write side shut: discard input until EOF */
    bool continue_sent;      /* "100 Continue" already sent for the request being read */
    struct admin_connection *prev, *next;
};

static struct {
    bool running;
    struct ev_loop *loop;
    int fd;
    ev_io accept_watcher;
    ev_timer accept_pause; /* accept failed for lack of descriptors: retry later instead of spinning */
    char *address_text;    /* as configured, to notice a change on reload */
    char *token;           /* NULL: no token required */
    struct admin_connection *connections;
    size_t connection_count;
} admin = {.fd = -1};

/* ---- responses ----------------------------------------------------------- */

struct admin_response {
    int status;
    const char *content_type;
    struct bytebuf body;
    char extra_headers[256]; /* whole header lines, each ending in CRLF */
    bool close;              /* close the connection after this answer */
};

typedef void (*admin_handler)(const struct http1_request *request, slice_t body, struct admin_response *response);

static void response_set_text(struct admin_response *response, int status, const char *text)
{
    response->status = status;
    response->content_type = "text/plain";
    response->body.len = 0;
    bytebuf_appendf(&response->body, "%s", text);
}

static void response_set_error(struct admin_response *response, int status, const char *reason)
{
    response->status = status;
    response->content_type = "text/plain";
    response->body.len = 0;
    bytebuf_appendf(&response->body, "verge: %s\n", reason);
}

/* Serialises the answer into conn->output. `request` is NULL when the head
 * could not be parsed. */
static void connection_queue_response(struct admin_connection *conn, const struct http1_request *request,
                                      struct admin_response *response)
{
    bool keep_alive = request != NULL && request->keep_alive && !response->close;
    bool head_only = request != NULL && slice_equal(request->method, SLICE_LITERAL("HEAD"));
    bytebuf_appendf(
        &conn->output, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n%s%s\r\n",
        response->status, http_status_reason(response->status), response->content_type, response->body.len, response->extra_headers,
        !keep_alive                   ? "Connection: close\r\n"
        : request->version_minor == 0 ? "Connection: keep-alive\r\n"
                                      : "");
    if (!head_only)
        bytebuf_append(&conn->output, response->body.data, response->body.len);
    if (!keep_alive)
        conn->close_after_output = true;
}

/* ---- routes -------------------------------------------------------------- */

static void handle_healthz(const struct http1_request *request, slice_t body, struct admin_response *response)
{
    response_set_text(response, 200, "ok\n");
}

static void handle_metrics(const struct http1_request *request, slice_t body, struct admin_response *response)
{
    response->status = 200;
    response->content_type = "text/plain; version=0.0.4; charset=utf-8";
    metrics_render(&response->body);
}

static void handle_reload(const struct http1_request *request, slice_t body, struct admin_response *response)
{
    struct config_errors errors = {0};
    unsigned generation = 0;
    response->content_type = "application/json";
    if (server_reload(&errors, &generation) == 0) {
        response->status = 200;
        bytebuf_appendf(&response->body, "{\"ok\":true,\"generation\":%u}\n", generation);
    } else {
        response->status = 422;
        bytebuf_append(&response->body, "{\"ok\":false,\"errors\":[", 22);
        for (size_t i = 0; i < errors.count; i++) {
            if (i > 0)
                bytebuf_append(&response->body, ",", 1);
            access_log_append_json_string(&response->body, slice_from_cstr(errors.messages[i]));
        }
        bytebuf_append(&response->body, "]}\n", 3);
    }
    config_errors_free(&errors);
}

/* ---- purge --------------------------------------------------------------- */

#define PURGE_PATH_MAX 4000     /* characters in one path, as CloudFront allows */
#define PURGE_JSON_MAX_DEPTH 16 /* the body needs 2; yajl_tree_free recurses, so deep input is refused first */
#define PURGE_SHOWN_MAX 80      /* bytes of user text quoted back in an error */
#define PURGE_USAGE "{\"paths\": [\"/a\", \"/img/*\"]}, {\"tags\": [\"t\"]} or {\"all\": true}"

static void response_set_json_error(struct admin_response *response, const char *message)
{
    response->status = 400;
    response->content_type = "application/json";
    response->body.len = 0;
    bytebuf_append(&response->body, "{\"error\":", 9);
    access_log_append_json_string(&response->body, slice_from_cstr(message));
    bytebuf_append(&response->body, "}\n", 2);
}

/* Scans the body as JSON text for what yajl_tree cannot be trusted with:
 * nesting deeper than `max_depth` (its free recurses) and a \u0000 escape
 * (its strings are C strings, so one would silently cut a path short).
 * Returns NULL when neither occurs, else the reason. */
static const char *purge_body_refusal(slice_t body, int max_depth)
{
    int depth = 0;
    bool in_string = false, escaped = false;
    for (size_t i = 0; i < body.len; i++) {
        char c = body.ptr[i];
        if (c == '\0')
            return "invalid JSON: a NUL byte";
        if (in_string) {
            if (escaped) {
                escaped = false;
                if (c == 'u' && i + 4 < body.len && memcmp(body.ptr + i + 1, "0000", 4) == 0)
                    return "strings must not contain \\u0000";
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return "invalid JSON: nested too deeply";
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return NULL;
}

/* User text quoted and shortened for a message (never cutting a UTF-8
 * sequence; yajl has checked the encoding). The message is JSON-escaped when
 * it is sent. */
static void quote_user_text(const char *text, char *out, size_t out_size)
{
    size_t len = strlen(text), shown = len;
    if (shown > PURGE_SHOWN_MAX) {
        shown = PURGE_SHOWN_MAX;
        while (shown > 0 && ((unsigned char)text[shown] & 0xc0) == 0x80)
            shown--;
    }
    snprintf(out, out_size, "\"%.*s%s\"", (int)shown, text, shown < len ? "..." : "");
}

/* A value described for "got ...". */
static void describe_json_value(yajl_val value, char *out, size_t out_size)
{
    if (YAJL_IS_STRING(value)) {
        quote_user_text(YAJL_GET_STRING(value), out, out_size);
    } else {
        snprintf(out, out_size, "%s",
                 YAJL_IS_NUMBER(value)   ? "a number"
                 : YAJL_IS_OBJECT(value) ? "an object"
                 : YAJL_IS_ARRAY(value)  ? "an array"
                 : YAJL_IS_TRUE(value)   ? "true"
                 : YAJL_IS_FALSE(value)  ? "false"
                                         : "null");
    }
}

/* CloudFront invalidation paths: start with '/', '*' only as the last
 * character, no query string (every query string of a path goes anyway).
 * Writes the reason into `error` and returns false when invalid. */
static bool purge_path_is_valid(yajl_val value, size_t index, char *error, size_t error_size)
{
    char shown[PURGE_SHOWN_MAX + 16];
    describe_json_value(value, shown, sizeof shown);
    if (!YAJL_IS_STRING(value)) {
        snprintf(error, error_size, "paths[%zu]: expected a string, got %s", index, shown);
        return false;
    }
    const char *path = YAJL_GET_STRING(value);
    size_t len = strlen(path);
    const char *star = strchr(path, '*');
    if (path[0] != '/')
        snprintf(error, error_size, "paths[%zu]: expected a path starting with '/', got %s", index, shown);
    else if (len > PURGE_PATH_MAX)
        snprintf(error, error_size, "paths[%zu]: expected at most %d characters, got %zu", index, PURGE_PATH_MAX, len);
    else if (star != NULL && star != path + len - 1)
        snprintf(error, error_size, "paths[%zu]: '*' is only allowed as the last character, got %s", index, shown);
    else if (strpbrk(path, "?#") != NULL)
        snprintf(error, error_size,
                 "paths[%zu]: expected a path without '?' or '#' (every query string of a path is purged), got %s", index, shown);
    else {
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)path[i] <= 0x20 || path[i] == 0x7f) {
                snprintf(error, error_size,
                         "paths[%zu]: expected no spaces or control characters (percent-encode them as in the URL), got %s", index,
                         shown);
                return false;
            }
        return true;
    }
    return false;
}

/* Tags come from Surrogate-Key / Cache-Tag, where spaces and commas separate
 * them: a tag holding one could never match. */
static bool purge_tag_is_valid(yajl_val value, size_t index, char *error, size_t error_size)
{
    char shown[PURGE_SHOWN_MAX + 16];
    describe_json_value(value, shown, sizeof shown);
    if (!YAJL_IS_STRING(value) || YAJL_GET_STRING(value)[0] == '\0') {
        snprintf(error, error_size, "tags[%zu]: expected a non-empty string, got %s", index, shown);
        return false;
    }
    for (const char *c = YAJL_GET_STRING(value); *c != '\0'; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f || *c == ' ' || *c == ',') {
            snprintf(error, error_size,
                     "tags[%zu]: expected a tag without spaces, commas or control characters (they separate tags in "
                     "Surrogate-Key and Cache-Tag), got %s",
                     index, shown);
            return false;
        }
    return true;
}

struct purge_request {
    yajl_val paths, tags; /* arrays, or NULL */
    bool all;
};

/* Checks the whole document; returns false with the message in `error`. */
static bool purge_request_read(yajl_val root, struct purge_request *out, char *error, size_t error_size)
{
    *out = (struct purge_request){0};
    if (!YAJL_IS_OBJECT(root)) {
        snprintf(error, error_size, "expected a JSON object: %s", PURGE_USAGE);
        return false;
    }
    size_t count = root->u.object.len;
    if (count == 0) {
        snprintf(error, error_size, "nothing to purge: expected %s", PURGE_USAGE);
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        const char *key = root->u.object.keys[i];
        yajl_val value = root->u.object.values[i];
        char shown[PURGE_SHOWN_MAX + 16], key_shown[PURGE_SHOWN_MAX + 16];
        describe_json_value(value, shown, sizeof shown);
        quote_user_text(key, key_shown, sizeof key_shown);
        for (size_t j = 0; j < i; j++)
            if (strcmp(root->u.object.keys[j], key) == 0) {
                snprintf(error, error_size, "duplicate key %s", key_shown);
                return false;
            }
        if (strcmp(key, "paths") == 0 || strcmp(key, "tags") == 0) {
            bool is_paths = key[0] == 'p';
            if (!YAJL_IS_ARRAY(value)) {
                snprintf(error, error_size, "%s: expected an array of strings, got %s", key, shown);
                return false;
            }
            for (size_t n = 0; n < value->u.array.len; n++) {
                bool ok = is_paths ? purge_path_is_valid(value->u.array.values[n], n, error, error_size)
                                   : purge_tag_is_valid(value->u.array.values[n], n, error, error_size);
                if (!ok)
                    return false;
            }
            *(is_paths ? &out->paths : &out->tags) = value;
        } else if (strcmp(key, "all") == 0) {
            if (!YAJL_IS_TRUE(value) && !YAJL_IS_FALSE(value)) {
                snprintf(error, error_size, "all: expected true or false, got %s", shown);
                return false;
            }
            out->all = YAJL_IS_TRUE(value);
        } else {
            snprintf(error, error_size, "unknown key %s (known: paths, tags, all)", key_shown);
            return false;
        }
    }
    return true;
}

/* POST /purge: {"paths": [...]}, {"tags": [...]}, {"all": true}, or several
 * of them; answers {"purged": N}, the sum of what each removed. */
static void handle_purge(const struct http1_request *request, slice_t body, struct admin_response *response)
{
    char error[512];
    if (body.len == 0) {
        snprintf(error, sizeof error, "expected a JSON body: %s", PURGE_USAGE);
        response_set_json_error(response, error);
        return;
    }
    const char *refusal = purge_body_refusal(body, PURGE_JSON_MAX_DEPTH);
    if (refusal != NULL) {
        response_set_json_error(response, refusal);
        return;
    }
    char *text = malloc(body.len + 1);
    VERGE_ASSERT(text != NULL);
    memcpy(text, body.ptr, body.len);
    text[body.len] = '\0';
    char parse_error[256] = "";
    yajl_val root = yajl_tree_parse(text, parse_error, sizeof parse_error);
    free(text);
    if (root == NULL) {
        parse_error[strcspn(parse_error, "\n")] = '\0'; /* yajl adds a multi-line pointer to the spot */
        size_t n = strlen(parse_error);
        while (n > 0 && (parse_error[n - 1] == ' ' || parse_error[n - 1] == '.'))
            parse_error[--n] = '\0';
        snprintf(error, sizeof error, "invalid JSON: %s", parse_error[0] != '\0' ? parse_error : "syntax error");
        response_set_json_error(response, error);
        return;
    }
    struct purge_request purge;
    if (!purge_request_read(root, &purge, error, sizeof error)) {
        yajl_tree_free(root);
        response_set_json_error(response, error);
        return;
    }

    size_t purged = 0, path_count = 0, tag_count = 0;
    if (purge.paths != NULL) {
        path_count = purge.paths->u.array.len;
        for (size_t i = 0; i < path_count; i++)
            purged += cache_purge_path(slice_from_cstr(YAJL_GET_STRING(purge.paths->u.array.values[i])));
    }
    if (purge.tags != NULL) {
        tag_count = purge.tags->u.array.len;
        for (size_t i = 0; i < tag_count; i++)
            purged += cache_purge_tag(slice_from_cstr(YAJL_GET_STRING(purge.tags->u.array.values[i])));
    }
    if (purge.all)
        purged += cache_purge_all();
    yajl_tree_free(root);

    log_info("admin: purged %zu objects (%zu paths, %zu tags%s)", purged, path_count, tag_count, purge.all ? ", all" : "");
    response->status = 200;
    response->content_type = "application/json";
    bytebuf_appendf(&response->body, "{\"purged\":%zu}\n", purged);
}

static const struct admin_route {
    const char *path;
    const char *method; /* a GET route also answers HEAD */
    admin_handler handler;
} admin_routes[] = {
    {"/healthz", "GET", handle_healthz},
    {"/metrics", "GET", handle_metrics},
    {"/reload", "POST", handle_reload},
    {"/purge", "POST", handle_purge},
};

/* "Authorization: Bearer <token>", exactly one such header, token compared in
 * constant time (its length is not secret). */
static bool request_is_authorized(const struct http1_request *request)
{
    if (admin.token == NULL)
        return true;
    slice_t credentials = {NULL, 0};
    size_t found = 0;
    for (size_t i = 0; i < request->header_count; i++) {
        if (request->headers[i].token == HTTP_TOKEN_AUTHORIZATION) {
            credentials = request->headers[i].value;
            found++;
        }
    }
    const slice_t scheme = SLICE_LITERAL("Bearer ");
    size_t token_length = strlen(admin.token);
    if (found != 1 || credentials.len != scheme.len + token_length)
        return false;
    if (!slice_equal_nocase(slice_make(credentials.ptr, scheme.len), scheme))
        return false;
    return CRYPTO_memcmp(credentials.ptr + scheme.len, admin.token, token_length) == 0;
}

static void dispatch_request(const struct http1_request *request, slice_t body, struct admin_response *response)
{
    if (!request_is_authorized(request)) {
        response_set_error(response, 401, "unauthorized");
        snprintf(response->extra_headers, sizeof response->extra_headers, "WWW-Authenticate: Bearer realm=\"verge-admin\"\r\n");
        return;
    }
    bool path_known = false;
    char allow[64] = "";
    for (size_t i = 0; i < VERGE_ARRAY_SIZE(admin_routes); i++) {
        const struct admin_route *route = &admin_routes[i];
        if (!slice_equal(request->path, slice_from_cstr(route->path)))
            continue;
        path_known = true;
        bool is_get = strcmp(route->method, "GET") == 0;
        if (slice_equal(request->method, slice_from_cstr(route->method)) ||
            (is_get && slice_equal(request->method, SLICE_LITERAL("HEAD")))) {
            route->handler(request, body, response);
            return;
        }
        size_t used = strlen(allow);
        snprintf(allow + used, sizeof allow - used, "%s%s", used > 0 ? ", " : "", is_get ? "GET, HEAD" : route->method);
    }
    if (!path_known) {
        response_set_error(response, 404, "not found");
        return;
    }
    response_set_error(response, 405, "method not allowed");
    snprintf(response->extra_headers, sizeof response->extra_headers, "Allow: %s\r\n", allow);
}

/* ---- connections --------------------------------------------------------- */

static void connection_close(struct admin_connection *conn)
{
    VERGE_CHECK_MAGIC(conn, ADMIN_MAGIC);
    ev_io_stop(admin.loop, &conn->read_watcher);
    ev_io_stop(admin.loop, &conn->write_watcher);
    ev_timer_stop(admin.loop, &conn->idle_timer);
    close(conn->fd);
    bytebuf_free(&conn->input);
    bytebuf_free(&conn->output);
    if (conn->prev != NULL)
        conn->prev->next = conn->next;
    else
        admin.connections = conn->next;
    if (conn->next != NULL)
        conn->next->prev = conn->prev;
    admin.connection_count--;
    conn->magic = 0;
    free(conn);
}

static void connection_start_lingering(struct admin_connection *conn)
{
    shutdown(conn->fd, SHUT_WR);
    conn->lingering = true;
    conn->input.len = 0;
    ev_io_stop(admin.loop, &conn->write_watcher);
    ev_io_start(admin.loop, &conn->read_watcher);
    conn->idle_timer.repeat = ADMIN_LINGER_S;
    ev_timer_again(admin.loop, &conn->idle_timer);
}

/* Writes what is queued. Returns false when the connection was closed. */
static bool connection_flush(struct admin_connection *conn)
{
    while (conn->output.len > 0) {
        ssize_t n = send(conn->fd, conn->output.data, conn->output.len, MSG_NOSIGNAL);
        if (n > 0) {
            bytebuf_consume(&conn->output, (size_t)n);
            ev_timer_again(admin.loop, &conn->idle_timer);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_stop(admin.loop, &conn->read_watcher);
            ev_io_start(admin.loop, &conn->write_watcher);
            return true;
        } else {
            connection_close(conn);
            return false;
        }
    }
    ev_io_stop(admin.loop, &conn->write_watcher);
    if (conn->close_after_output) {
        connection_start_lingering(conn);
        return true;
    }
    ev_io_start(admin.loop, &conn->read_watcher);
    return true;
}

/* Parses the next request in `input` and queues its answer (or a
 * "100 Continue"). Returns false when nothing was queued because more input
 * is needed. */
static bool connection_answer_next(struct admin_connection *conn)
{
    struct http1_request request;
    struct http1_error error = {0, NULL};
    struct admin_response response = {.status = 500, .content_type = "text/plain"};
    enum http1_result result = http1_parse_request(conn->input.data, conn->input.len, &request, &error);
    if (result == HTTP1_INCOMPLETE && conn->input.len > HTTP1_MAX_HEAD_BYTES) {
        /* The parser promises this itself; do not rely on it for a bound. */
        result = HTTP1_ERROR;
        error = (struct http1_error){431, "request head too large"};
    }
    if (result == HTTP1_INCOMPLETE)
        return false;
    if (result == HTTP1_ERROR) {
        response_set_error(&response, error.status ? error.status : 400, error.reason ? error.reason : "malformed request");
        response.close = true;
        connection_queue_response(conn, NULL, &response);
        bytebuf_free(&response.body);
        return true;
    }

    slice_t body = {NULL, 0};
    size_t consumed = request.head_bytes;
    if (request.body_kind == HTTP1_BODY_CHUNKED) {
        response_set_error(&response, 411, "the admin API needs a Content-Length request body");
        response.close = true;
    } else if (request.body_kind == HTTP1_BODY_LENGTH && request.content_length > ADMIN_MAX_BODY) {
        response_set_error(&response, 413, "request body over 1 MiB");
        response.close = true;
    } else if (request.body_kind == HTTP1_BODY_LENGTH) {
        if (conn->input.len - request.head_bytes < request.content_length) {
            if (!request.expect_continue || conn->continue_sent)
                return false; /* wait for the rest of the body */
            conn->continue_sent = true;
            bytebuf_append(&conn->output, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            return true;
        }
        body = slice_make(conn->input.data + request.head_bytes, (size_t)request.content_length);
        consumed += (size_t)request.content_length;
    }
    if (!response.close)
        dispatch_request(&request, body, &response);
    connection_queue_response(conn, &request, &response);
    bytebuf_free(&response.body);
    /* After a close the rest of the input is discarded anyway (and an
     * unread body means nothing). */
    if (!response.close)
        bytebuf_consume(&conn->input, consumed);
    conn->continue_sent = false;
    return true;
}

/* Answers requests from `input` one at a time, writing each answer before
 * parsing the next, until input runs out, the socket is full, or the
 * connection ends. */
static void connection_serve(struct admin_connection *conn)
{
    for (;;) {
        if (conn->output.len > 0 || conn->close_after_output) {
            if (!connection_flush(conn) || conn->output.len > 0 || conn->lingering)
                return;
        }
        if (conn->input.len == 0 || !connection_answer_next(conn))
            return;
    }
}

static void on_connection_readable(struct ev_loop *loop, ev_io *watcher, int revents)
{
    struct admin_connection *conn = watcher->data;
    VERGE_CHECK_MAGIC(conn, ADMIN_MAGIC);
    if (conn->lingering) {
        char discard[4096];
        ssize_t n = recv(conn->fd, discard, sizeof discard, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            connection_close(conn);
        return;
    }
    size_t room = ADMIN_MAX_INPUT - conn->input.len;
    if (room == 0) {
        /* Cannot happen: a full buffer always holds a complete request or an
         * error. Stop reading rather than spin. */
        ev_io_stop(loop, &conn->read_watcher);
        return;
    }
    if (room > ADMIN_READ_SIZE)
        room = ADMIN_READ_SIZE;
    bytebuf_reserve(&conn->input, room);
    ssize_t n = recv(conn->fd, conn->input.data + conn->input.len, room, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        connection_close(conn);
        return;
    }
    conn->input.len += (size_t)n;
    ev_timer_again(loop, &conn->idle_timer);
    connection_serve(conn);
}

static void on_connection_writable(struct ev_loop *loop, ev_io *watcher, int revents)
{
    struct admin_connection *conn = watcher->data;
    VERGE_CHECK_MAGIC(conn, ADMIN_MAGIC);
    /* Goes on with pipelined requests that arrived while we were writing. */
    connection_serve(conn);
}

static void on_connection_idle(struct ev_loop *loop, ev_timer *timer, int revents)
{
    struct admin_connection *conn = timer->data;
    VERGE_CHECK_MAGIC(conn, ADMIN_MAGIC);
    connection_close(conn);
}

static void connection_open(int fd)
{
    struct admin_connection *conn = calloc(1, sizeof *conn);
    if (conn == NULL) {
        close(fd);
        return;
    }
    conn->magic = ADMIN_MAGIC;
    conn->fd = fd;
    ev_io_init(&conn->read_watcher, on_connection_readable, fd, EV_READ);
    ev_io_init(&conn->write_watcher, on_connection_writable, fd, EV_WRITE);
    ev_init(&conn->idle_timer, on_connection_idle);
    conn->idle_timer.repeat = ADMIN_IDLE_TIMEOUT_S;
    conn->read_watcher.data = conn->write_watcher.data = conn->idle_timer.data = conn;
    conn->next = admin.connections;
    if (admin.connections != NULL)
        admin.connections->prev = conn;
    admin.connections = conn;
    admin.connection_count++;
    ev_io_start(admin.loop, &conn->read_watcher);
    ev_timer_again(admin.loop, &conn->idle_timer);
}

/* ---- listener ------------------------------------------------------------ */

static void on_accept_pause_over(struct ev_loop *loop, ev_timer *timer, int revents)
{
    ev_io_start(loop, &admin.accept_watcher);
}

static void on_accept(struct ev_loop *loop, ev_io *watcher, int revents)
{
    for (int i = 0; i < 16; i++) {
        int fd = accept4(admin.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warn("admin: cannot accept a connection: %s; pausing for %.1f s", strerror(errno), ADMIN_ACCEPT_PAUSE_S);
                ev_io_stop(loop, &admin.accept_watcher);
                ev_timer_set(&admin.accept_pause, ADMIN_ACCEPT_PAUSE_S, 0);
                ev_timer_start(loop, &admin.accept_pause);
            }
            return;
        }
        if (admin.connection_count >= ADMIN_MAX_CONNECTIONS) {
            close(fd);
            continue;
        }
        connection_open(fd);
    }
}

static void format_bound_address(int fd, const char *fallback, char *out, size_t out_size)
{
    struct sockaddr_storage bound;
    socklen_t bound_length = sizeof bound;
    char host[INET6_ADDRSTRLEN];
    snprintf(out, out_size, "%s", fallback);
    if (getsockname(fd, (struct sockaddr *)&bound, &bound_length) != 0)
        return;
    if (bound.ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)&bound;
        if (inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host) != NULL)
            snprintf(out, out_size, "%s:%u", host, ntohs(v4->sin_port));
    } else if (bound.ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&bound;
        if (inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host) != NULL)
            snprintf(out, out_size, "[%s]:%u", host, ntohs(v6->sin6_port));
    }
}

static char *duplicate_or_null(const char *s)
{
    if (s == NULL)
        return NULL;
    char *copy = strdup(s);
    VERGE_ASSERT(copy != NULL);
    return copy;
}

static void free_token(void)
{
    if (admin.token != NULL) {
        OPENSSL_cleanse(admin.token, strlen(admin.token));
        free(admin.token);
        admin.token = NULL;
    }
}

int admin_listener_start(struct ev_loop *loop, const struct config *config)
{
    VERGE_ASSERT(!admin.running);
    if (!config->admin.enabled)
        return 0;
    const struct config_address *address = &config->admin.address;
    int fd = socket(address->sockaddr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        log_error("admin: cannot create a socket for %s: %s", address->text, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (address->sockaddr.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&address->sockaddr, address->sockaddr_len) != 0 || listen(fd, 64) != 0) {
        log_error("admin: cannot listen on %s: %s", address->text, strerror(errno));
        close(fd);
        return -1;
    }
    admin.loop = loop;
    admin.fd = fd;
    admin.running = true;
    admin.address_text = duplicate_or_null(address->text);
    admin.token = duplicate_or_null(config->admin.token);
    ev_io_init(&admin.accept_watcher, on_accept, fd, EV_READ);
    ev_init(&admin.accept_pause, on_accept_pause_over);
    ev_io_start(loop, &admin.accept_watcher);
    char bound[INET6_ADDRSTRLEN + 16];
    format_bound_address(fd, address->text, bound, sizeof bound);
    log_info("admin listening on %s", bound);
    return 0;
}

void admin_listener_update(const struct config *config)
{
    if (!admin.running) {
        if (config->admin.enabled)
            log_warn("admin.address: the admin listener starts only with the server; restart to enable it");
        return;
    }
    if (!config->admin.enabled)
        log_warn("admin: disabling the admin listener needs a restart; it keeps serving on %s", admin.address_text);
    else if (admin.address_text == NULL || strcmp(config->admin.address.text, admin.address_text) != 0)
        log_warn("admin.address: changing it needs a restart; still serving on %s", admin.address_text);
    free_token();
    admin.token = duplicate_or_null(config->admin.token);
}

void admin_listener_stop(void)
{
    if (!admin.running)
        return;
    ev_io_stop(admin.loop, &admin.accept_watcher);
    ev_timer_stop(admin.loop, &admin.accept_pause);
    close(admin.fd);
    admin.fd = -1;
    while (admin.connections != NULL)
        connection_close(admin.connections);
    free_token();
    free(admin.address_text);
    admin.address_text = NULL;
    admin.running = false;
}
