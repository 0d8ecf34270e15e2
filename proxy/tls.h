/* tls.h — TLS termination for viewer listeners (OpenSSL 3): certificates
 * loaded and checked with the config, one refcounted server per TLS
 * listener and generation (SNI, ALPN, versions, ciphers, session tickets),
 * and the per-connection wrapper the viewer code reads and writes through.
 *
 * Lifetimes: a tls_certificate belongs to the config that loaded it (freed
 * with its arena). A tls_server is built when the config is loaded, owned by
 * it, and referenced by every connection it accepted, so a reload never pulls
 * certificates from under a handshake. Session-ticket keys are process-wide
 * (tickets stay valid across reloads) and rotate on a schedule.
 */
#ifndef VERGE_TLS_H
#define VERGE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base.h"

struct config_tls;

/* ---- certificates (for conf/) ------------------------------------------------------------- */

struct tls_certificate;

enum tls_certificate_field { TLS_FIELD_CERT, TLS_FIELD_KEY };

/* Reads a PEM certificate chain (leaf first) and a PEM private key and checks
 * that they belong together. Returns NULL with a one-line reason in `error`
 * and the field it is about in `*field` (an unreadable or empty cert file is
 * about `cert`; a missing, unreadable or mismatched key about `key`). */
struct tls_certificate *tls_certificate_load(const char *cert_path, const char *key_path, enum tls_certificate_field *field,
                                             char *error, size_t error_size);
void tls_certificate_free(struct tls_certificate *certificate);

/* ---- servers ------------------------------------------------------------------------------ */

enum tls_min_version { TLS_MIN_VERSION_12, TLS_MIN_VERSION_13 };

struct tls_server;

/* Builds the contexts for one TLS listener from loaded certificates (the
 * first is the default). Returns a server with refcount 1, or NULL with a
 * reason in `error`. */
struct tls_server *tls_server_create(struct tls_certificate *const *certificates, size_t count, enum tls_min_version min_version,
                                     char *error, size_t error_size);
void tls_server_ref(struct tls_server *server);
void tls_server_unref(struct tls_server *server);

/* ---- SNI: which certificate answers a name (pure) ----------------------------------------- */

/* One name a certificate holds: its subjectAltName DNS entries, or its
 * subject CN when it has none. Lowercase; a wildcard keeps its "*.". */
struct tls_name {
    slice_t name;
    size_t certificate_index;
};

/* The certificate for `server_name`: an exact name (ASCII case-insensitive)
 * wins over a wildcard; "*.example.com" covers exactly one label in front of
 * "example.com"; among equals the first listed wins. Returns 0 (the default
 * certificate) when nothing matches or the name is empty. */
size_t tls_select_certificate(const struct tls_name *names, size_t count, slice_t server_name);

/* ---- session-ticket keys (the rotation is pure; the clock is the caller's) ---------------- */

#define TLS_TICKET_KEYS_KEPT 3
#define TLS_TICKET_ROTATE_SECONDS 3600

struct tls_ticket_key {
    unsigned char name[16];
    unsigned char aes_key[32];
    unsigned char hmac_key[32];
    uint64_t created_s;
};

/* keys[0] is the newest: it encrypts new tickets; the others only decrypt. */
struct tls_ticket_keys {
    struct tls_ticket_key keys[TLS_TICKET_KEYS_KEPT];
    size_t count;
};

/* True when keys[0] is missing or at least `rotate_s` old at `now_s`. */
bool tls_ticket_keys_need_rotation(const struct tls_ticket_keys *ring, uint64_t now_s, uint64_t rotate_s);
/* Puts `fresh` in front, dropping the oldest when the ring is full. */
void tls_ticket_keys_push(struct tls_ticket_keys *ring, const struct tls_ticket_key *fresh);
/* The key named `name` if it may still decrypt at `now_s` (younger than
 * TLS_TICKET_KEYS_KEPT rotations), else NULL; `*is_newest` says whether it is keys[0]. */
const struct tls_ticket_key *tls_ticket_keys_find(const struct tls_ticket_keys *ring, const unsigned char name[16], uint64_t now_s,
                                                  uint64_t rotate_s, bool *is_newest);

/* ---- origins (the client side) ------------------------------------------------------------ */

struct tls_client;

/* A client context for one https origin: TLS 1.2 or 1.3, ALPN http/1.1,
 * verifying the origin's chain against `ca_file` (NULL: the system trust
 * store) unless `verify` is false. Refcount 1, or NULL with a reason. */
struct tls_client *tls_client_create(const char *ca_file, bool verify, char *error, size_t error_size);
/* The client for https origins without ca_file and for those edge functions
 * choose: the system trust store (OpenSSL's default paths; SSL_CERT_FILE /
 * SSL_CERT_DIR override them), verification on. Made once, kept for the
 * process; NULL (logged) if it cannot be set up. Returned without a new
 * reference: holders that outlive a config take one (tls_client_ref). */
struct tls_client *tls_client_default(void);
void tls_client_ref(struct tls_client *client);
void tls_client_unref(struct tls_client *client);

/* ---- connections -------------------------------------------------------------------------- */

struct tls_connection;

enum tls_io {
    TLS_IO_OK,         /* `*done` bytes moved (reads: > 0) */
    TLS_IO_WANT_READ,  /* nothing now: wait for the socket to be readable */
    TLS_IO_WANT_WRITE, /* nothing now: wait for the socket to be writable, then call again */
    TLS_IO_CLOSED,     /* reads: the viewer closed (close_notify or EOF) */
    TLS_IO_ERROR,      /* a protocol or socket error: close the connection */
};

/* Starts a server-side TLS connection on the accepted, non-blocking `fd`
 * (the handshake runs inside the first reads). Takes a ref on `server`. */
struct tls_connection *tls_connection_create(struct tls_server *server, int fd);
/* Starts a client connection on the connected, non-blocking `fd` to `host`:
 * SNI carries `host` unless it is an IP literal, and verification checks
 * that the certificate names it (a DNS name or an IP address). Takes a ref
 * on `client`. Drive it with tls_connection_handshake. */
struct tls_connection *tls_client_connection_create(struct tls_client *client, int fd, const char *host);
/* Runs the handshake on: TLS_IO_OK once it is done; on TLS_IO_ERROR,
 * tls_connection_error says why ("certificate verify failed: self-signed
 * certificate", an OpenSSL reason, or the socket's error). */
enum tls_io tls_connection_handshake(struct tls_connection *connection);
const char *tls_connection_error(const struct tls_connection *connection);
/* Viewer connections: counts an abandoned handshake (see metrics). Frees everything; the caller closes fd. */
void tls_connection_free(struct tls_connection *connection);
/* Decrypted bytes into buf, as many records as are there (a server drives
 * its handshake here). TLS_IO_OK with `*done` > 0, or why there are none. */
enum tls_io tls_connection_read(struct tls_connection *connection, void *buf, size_t len, size_t *done);
/* Encrypts and sends up to `len` bytes, record by record, like send(2):
 * TLS_IO_OK with `*done` taken (maybe fewer than `len`: the socket is full),
 * or TLS_IO_WANT_WRITE when it took nothing. A record may be left half sent:
 * the next call must offer the same bytes again (from the same position in
 * the stream; the buffer may move). */
enum tls_io tls_connection_write(struct tls_connection *connection, const void *buf, size_t len, size_t *done);
/* Whether bytes already read from the socket wait inside OpenSSL: the socket
 * will not signal readable for them. */
/* The same in the shape of send(2) and recv(2), for code written around
 * them: send returns bytes taken or -1 with errno EAGAIN (the socket is
 * full) or EPIPE; recv returns bytes, 0 at the peer's close, or -1 with errno
 * EAGAIN (wait until readable, or writable when it set `*wants_write`) or
 * ECONNRESET. */
ssize_t tls_connection_send(struct tls_connection *connection, const void *data, size_t len);
ssize_t tls_connection_recv(struct tls_connection *connection, void *buf, size_t len, bool *wants_write);
bool tls_connection_has_buffered_input(const struct tls_connection *connection);
bool tls_connection_handshake_done(const struct tls_connection *connection);
/* Sends close_notify if the socket takes it now; never waits. */
void tls_connection_shutdown(struct tls_connection *connection);
/* Whether ALPN chose HTTP/2. */
bool tls_connection_alpn_is_h2(const struct tls_connection *connection);
/* "TLSv1.3", and the cipher's name as OpenSSL spells it ("TLS_AES_128_GCM_SHA256"). */
const char *tls_connection_version(const struct tls_connection *connection);
const char *tls_connection_cipher(const struct tls_connection *connection);

#endif
