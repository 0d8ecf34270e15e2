/* h2.h — HTTP/2 for viewers (nghttp2): a connection's session, and its
 * streams, each a viewer_connection of its own that carries one request
 * through the same state machine (request.c) as HTTP/1.1.
 *
 * viewer.c calls the connection side (input, output drained, timers, drain,
 * close) for a viewer whose `h2` is set, and forwards the viewer_* calls
 * request.c makes on a stream (a viewer whose `stream` is set) to the
 * h2_stream_* functions below.
 */
#ifndef VERGE_H2_H
#define VERGE_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

struct viewer_connection;
struct h2_connection;
struct h2_stream;

/* The client connection preface (RFC 9113 §3.4) as a prefix test: 1 when
 * `data` starts with the whole preface, 0 when it cannot be one, -1 when it
 * is a shorter prefix of it (wait for more). Pure. */
int h2_preface_match(const char *data, size_t len);

/* ---- the connection (viewer.c) ------------------------------------------------------------ */

/* Turns `viewer` (a fresh connection: TLS with ALPN h2, or h2c prior
 * knowledge) into an HTTP/2 connection and queues the server's SETTINGS. */
void h2_connection_start(struct viewer_connection *viewer);
/* Feeds viewer->input to the session (all of it is consumed). Returns false
 * when the connection must close (a connection error: GOAWAY is queued). */
bool h2_connection_on_input(struct viewer_connection *viewer);
/* The socket's output went below the low watermark: more frames may go. */
void h2_connection_on_output_drained(struct viewer_connection *viewer);
/* Streams whose requests are still running. */
size_t h2_connection_active_streams(const struct h2_connection *connection);
/* Whether the connection has nothing more to do (no stream, no frame to send). */
bool h2_connection_finished(const struct h2_connection *connection);
/* No frame arrived for timeouts.idle_ms. Streams whose requests wait for
 * body bytes from the viewer are reset; returns true when streams remain
 * (they wait on origins: keep the connection), false when it may close. */
bool h2_connection_on_idle(struct viewer_connection *viewer);
/* Drain or reload: GOAWAY (no new streams); the connection closes when its streams are done. */
void h2_connection_drain(struct viewer_connection *viewer);
/* Ends every stream (their requests are finished) and frees the session. */
void h2_connection_free(struct h2_connection *connection);

/* ---- streams (viewer_* on a stream) ------------------------------------------------------- */

/* The connection a stream belongs to (the socket's viewer). */
struct viewer_connection *h2_stream_connection_viewer(const struct viewer_connection *stream);
void h2_stream_write(struct viewer_connection *stream, const void *data, size_t len);
size_t h2_stream_output_pending(const struct viewer_connection *stream);
size_t h2_stream_send_vectored(struct viewer_connection *stream, const struct iovec *body, int count);
void h2_stream_set_reading(struct viewer_connection *stream, bool reading);
void h2_stream_consume_input(struct viewer_connection *stream, size_t n);
void h2_stream_request_finished(struct viewer_connection *stream);
void h2_stream_abort(struct viewer_connection *stream);

#endif
