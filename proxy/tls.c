/* tls.c — TLS for viewer listeners: certificates (loaded and matched with
 * their keys when the config is read), servers (one SSL_CTX per
 * certificate; SNI switches the connection to the one naming the host),
 * session-ticket keys and the connections the viewer code reads and writes
 * through.
 *
 * Connections use the socket directly (OpenSSL's fd BIO) with read-ahead, so
 * a read is one recv for several records, and partial writes with a moving
 * buffer, so a record half sent when the socket filled up is finished by the
 * next write of the same bytes from wherever the caller keeps them.
 *
 * Ticket keys: one ring for the process, so tickets survive reloads and are
 * valid on every thread. The newest key encrypts; it is replaced every
 * TLS_TICKET_ROTATE_SECONDS (checked when a ticket is issued), and the older
 * ones decrypt until they are TLS_TICKET_KEYS_KEPT rotations old. A ticket
 * made with an older key is accepted and replaced by a fresh one.
 *
 * Locking: the ticket ring has a mutex (held for a copy); servers are
 * immutable after creation and refcounted; a connection belongs to one
 * thread.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "metrics.h"

/* TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3's own are all of that kind). */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"
/* Tickets are accepted at least this long (the key that made them lives longer). */
#define TLS_SESSION_LIFETIME_SECONDS ((TLS_TICKET_KEYS_KEPT - 1) * TLS_TICKET_ROTATE_SECONDS)
#define TLS_CERTIFICATE_NAMES_MAX 1024

struct tls_certificate {
    X509 *leaf;
    STACK_OF(X509) * chain; /* intermediates, in file order */
    EVP_PKEY *key;
    char **names; /* lowercase SAN DNS names, or the CN when there are none */
    size_t name_count;
};

struct tls_server {
    atomic_int refcount;
    SSL_CTX **contexts; /* one per certificate; [0] is the default and the one connections start on */
    size_t context_count;
    struct tls_name *names;
    size_t name_count;
};

struct tls_client {
    atomic_int refcount;
    SSL_CTX *context;
};

struct tls_connection {
    SSL *ssl;
    struct tls_server *server; /* a viewer's connection: the listener's server */
    struct tls_client *client; /* an origin connection: the origin's client context */
    bool handshake_done;
    bool failure_counted;
    char error[192]; /* why the last call failed */
};

/* ---- certificates ------------------------------------------------------------------------- */

static void describe_openssl_error(char *out, size_t size, const char *fallback)
{
    unsigned long code = ERR_peek_last_error();
    if (code == 0) {
        snprintf(out, size, "%s", fallback);
    } else {
        const char *reason = ERR_reason_error_string(code);
        snprintf(out, size, "%s", reason != NULL ? reason : fallback);
    }
    ERR_clear_error();
}

static void add_name(struct tls_certificate *certificate, const unsigned char *data, int len)
{
    if (len <= 0 || memchr(data, '\0', (size_t)len) != NULL || certificate->name_count == TLS_CERTIFICATE_NAMES_MAX)
        return;
    char *name = malloc((size_t)len + 1);
    VERGE_ASSERT(name != NULL);
    for (int i = 0; i < len; i++)
        name[i] = (char)tolower(data[i]);
    name[len] = '\0';
    char **grown = realloc(certificate->names, (certificate->name_count + 1) * sizeof *grown);
    VERGE_ASSERT(grown != NULL);
    certificate->names = grown;
    certificate->names[certificate->name_count++] = name;
}

/* The names a client may ask for: SAN DNS entries; the CN only without them
 * (RFC 6125: a CN is not a name when SANs exist). */
static void read_names(struct tls_certificate *certificate)
{
    GENERAL_NAMES *alt_names = X509_get_ext_d2i(certificate->leaf, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; alt_names != NULL && i < sk_GENERAL_NAME_num(alt_names); i++) {
        const GENERAL_NAME *entry = sk_GENERAL_NAME_value(alt_names, i);
        if (entry->type == GEN_DNS)
            add_name(certificate, ASN1_STRING_get0_data(entry->d.dNSName), ASN1_STRING_length(entry->d.dNSName));
    }
    GENERAL_NAMES_free(alt_names);
    if (certificate->name_count > 0)
        return;
    X509_NAME *subject = X509_get_subject_name(certificate->leaf);
    int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (index < 0)
        return;
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)));
    if (len > 0)
        add_name(certificate, utf8, len);
    OPENSSL_free(utf8);
}

/* An encrypted key fails to load instead of OpenSSL asking for a passphrase on the terminal. */
static int refuse_passphrase(char *buf, int size, int rwflag, void *userdata)
{
    return -1;
}

void tls_certificate_free(struct tls_certificate *certificate)
{
    if (certificate == NULL)
        return;
    X509_free(certificate->leaf);
    sk_X509_pop_free(certificate->chain, X509_free);
    EVP_PKEY_free(certificate->key);
    for (size_t i = 0; i < certificate->name_count; i++)
        free(certificate->names[i]);
    free(certificate->names);
    free(certificate);
}

struct tls_certificate *tls_certificate_load(const char *cert_path, const char *key_path, enum tls_certificate_field *field,
                                             char *error, size_t error_size)
{
    ERR_clear_error();
    struct tls_certificate *certificate = calloc(1, sizeof *certificate);
    VERGE_ASSERT(certificate != NULL);
    certificate->chain = sk_X509_new_null();
    VERGE_ASSERT(certificate->chain != NULL);

    *field = TLS_FIELD_CERT;
    FILE *file = fopen(cert_path, "r");
    if (file == NULL) {
        snprintf(error, error_size, "cannot read \"%s\": %s", cert_path, strerror(errno));
        goto fail;
    }
    certificate->leaf = PEM_read_X509(file, NULL, NULL, NULL);
    for (X509 *next; certificate->leaf != NULL && (next = PEM_read_X509(file, NULL, NULL, NULL)) != NULL;)
        sk_X509_push(certificate->chain, next);
    fclose(file);
    ERR_clear_error(); /* the end of the file reads as "no start line" */
    if (certificate->leaf == NULL) {
        snprintf(error, error_size, "no PEM certificate in \"%s\"", cert_path);
        goto fail;
    }

    *field = TLS_FIELD_KEY;
    file = fopen(key_path, "r");
    if (file == NULL) {
        snprintf(error, error_size, "cannot read \"%s\": %s", key_path, strerror(errno));
        goto fail;
    }
    certificate->key = PEM_read_PrivateKey(file, NULL, refuse_passphrase, NULL);
    fclose(file);
    if (certificate->key == NULL) {
        ERR_clear_error();
        snprintf(error, error_size, "no PEM private key (or an encrypted one) in \"%s\"", key_path);
        goto fail;
    }
    if (X509_check_private_key(certificate->leaf, certificate->key) != 1) {
        ERR_clear_error();
        snprintf(error, error_size, "the key in \"%s\" does not match the certificate in \"%s\"", key_path, cert_path);
        goto fail;
    }
    read_names(certificate);
    return certificate;
fail:
    tls_certificate_free(certificate);
    return NULL;
}

/* ---- SNI ---------------------------------------------------------------------------------- */

static bool names_equal(slice_t a, slice_t b)
{
    return a.len == b.len && strncasecmp(a.ptr, b.ptr, a.len) == 0;
}

size_t tls_select_certificate(const struct tls_name *names, size_t count, slice_t server_name)
{
    if (server_name.len == 0)
        return 0;
    for (size_t i = 0; i < count; i++)
        if (names_equal(names[i].name, server_name))
            return names[i].certificate_index;
    const char *dot = memchr(server_name.ptr, '.', server_name.len);
    if (dot == NULL || dot == server_name.ptr)
        return 0;
    slice_t parent = {dot + 1, server_name.len - (size_t)(dot + 1 - server_name.ptr)};
    for (size_t i = 0; i < count; i++) {
        slice_t name = names[i].name;
        if (name.len > 2 && name.ptr[0] == '*' && name.ptr[1] == '.' && names_equal(slice_make(name.ptr + 2, name.len - 2), parent))
            return names[i].certificate_index;
    }
    return 0;
}

static int on_server_name(SSL *ssl, int *alert, void *argument)
{
    const struct tls_server *server = argument;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    size_t index = tls_select_certificate(server->names, server->name_count, slice_from_cstr(name));
    if (index != 0)
        SSL_set_SSL_CTX(ssl, server->contexts[index]);
    return SSL_TLSEXT_ERR_OK;
}

/* h2 when the client offers it, else http/1.1; a client offering neither gets no ALPN. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *out_len, const unsigned char *in, unsigned in_len,
                   void *argument)
{
    static const unsigned char supported[] = "\x02h2\x08http/1.1";
    unsigned char *selected;
    if (SSL_select_next_proto(&selected, out_len, supported, sizeof supported - 1, in, in_len) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

/* ---- ticket keys -------------------------------------------------------------------------- */

bool tls_ticket_keys_need_rotation(const struct tls_ticket_keys *ring, uint64_t now_s, uint64_t rotate_s)
{
    return ring->count == 0 || now_s - ring->keys[0].created_s >= rotate_s || now_s < ring->keys[0].created_s;
}

void tls_ticket_keys_push(struct tls_ticket_keys *ring, const struct tls_ticket_key *fresh)
{
    size_t keep = ring->count < TLS_TICKET_KEYS_KEPT ? ring->count : TLS_TICKET_KEYS_KEPT - 1;
    memmove(&ring->keys[1], &ring->keys[0], keep * sizeof ring->keys[0]);
    ring->keys[0] = *fresh;
    ring->count = keep + 1;
}

const struct tls_ticket_key *tls_ticket_keys_find(const struct tls_ticket_keys *ring, const unsigned char name[16], uint64_t now_s,
                                                  uint64_t rotate_s, bool *is_newest)
{
    for (size_t i = 0; i < ring->count; i++) {
        if (memcmp(ring->keys[i].name, name, sizeof ring->keys[i].name) != 0)
            continue;
        if (now_s - ring->keys[i].created_s >= rotate_s * TLS_TICKET_KEYS_KEPT)
            return NULL;
        *is_newest = i == 0;
        return &ring->keys[i];
    }
    return NULL;
}

static pthread_mutex_t ticket_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tls_ticket_keys ticket_ring;

static bool set_ticket_keys(const struct tls_ticket_key *key, const unsigned char *iv, EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac,
                            int encrypt)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)key->hmac_key, sizeof key->hmac_key),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(mac, params) != 1)
        return false;
    if (encrypt)
        return EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, key->aes_key, iv) == 1;
    return EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, key->aes_key, iv) == 1;
}

/* OpenSSL's ticket callback: 1 use this key, 2 (decrypting) valid but issue a
 * fresh ticket, 0 unknown key (full handshake), -1 failure. */
static int on_ticket_key(SSL *ssl, unsigned char name[16], unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX *cipher,
                         EVP_MAC_CTX *mac, int encrypt)
{
    uint64_t now_s = time_now_monotonic_ms() / 1000;
    struct tls_ticket_key key;
    bool is_newest = true;
    pthread_mutex_lock(&ticket_lock);
    if (encrypt) {
        if (tls_ticket_keys_need_rotation(&ticket_ring, now_s, TLS_TICKET_ROTATE_SECONDS)) {
            struct tls_ticket_key fresh = {.created_s = now_s};
            if (RAND_bytes(fresh.name, sizeof fresh.name) != 1 || RAND_bytes(fresh.aes_key, sizeof fresh.aes_key) != 1 ||
                RAND_bytes(fresh.hmac_key, sizeof fresh.hmac_key) != 1) {
                pthread_mutex_unlock(&ticket_lock);
                return -1;
            }
            tls_ticket_keys_push(&ticket_ring, &fresh);
        }
        key = ticket_ring.keys[0];
    } else {
        const struct tls_ticket_key *found = tls_ticket_keys_find(&ticket_ring, name, now_s, TLS_TICKET_ROTATE_SECONDS, &is_newest);
        if (found == NULL) {
            pthread_mutex_unlock(&ticket_lock);
            return 0;
        }
        key = *found;
    }
    pthread_mutex_unlock(&ticket_lock);

    if (encrypt) {
        memcpy(name, key.name, sizeof key.name);
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1)
            return -1;
    }
    bool ok = set_ticket_keys(&key, iv, cipher, mac, encrypt);
    OPENSSL_cleanse(&key, sizeof key);
    if (!ok)
        return -1;
    return encrypt || is_newest ? 1 : 2;
}

/* ---- servers ------------------------------------------------------------------------------ */

static SSL_CTX *create_context(struct tls_server *server, const struct tls_certificate *certificate,
                               enum tls_min_version min_version, char *error, size_t error_size)
{
    SSL_CTX *context = SSL_CTX_new(TLS_server_method());
    if (context == NULL) {
        describe_openssl_error(error, error_size, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(context, min_version == TLS_MIN_VERSION_13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(context, 1);
    /* Stateless tickets only: no per-session state on the server. */
    SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_OFF);
    static const unsigned char session_context[] = "verge";
    SSL_CTX_set_session_id_context(context, session_context, sizeof session_context - 1);
    SSL_CTX_set_timeout(context, TLS_SESSION_LIFETIME_SECONDS);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(context, on_ticket_key);
    SSL_CTX_set_tlsext_servername_callback(context, on_server_name);
    SSL_CTX_set_tlsext_servername_arg(context, server);
    SSL_CTX_set_alpn_select_cb(context, on_alpn, NULL);
    bool ok = SSL_CTX_set_cipher_list(context, TLS12_CIPHERS) == 1 && SSL_CTX_use_certificate(context, certificate->leaf) == 1;
    for (int i = 0; ok && i < sk_X509_num(certificate->chain); i++)
        ok = SSL_CTX_add1_chain_cert(context, sk_X509_value(certificate->chain, i)) == 1;
    ok = ok && SSL_CTX_use_PrivateKey(context, certificate->key) == 1 && SSL_CTX_check_private_key(context) == 1;
    if (!ok) {
        describe_openssl_error(error, error_size, "OpenSSL refused the certificate or key");
        SSL_CTX_free(context);
        return NULL;
    }
    return context;
}

struct tls_server *tls_server_create(struct tls_certificate *const *certificates, size_t count, enum tls_min_version min_version,
                                     char *error, size_t error_size)
{
    VERGE_ASSERT(count > 0);
    struct tls_server *server = calloc(1, sizeof *server);
    VERGE_ASSERT(server != NULL);
    atomic_init(&server->refcount, 1);
    server->contexts = calloc(count, sizeof *server->contexts);
    VERGE_ASSERT(server->contexts != NULL);
    size_t name_count = 0;
    for (size_t i = 0; i < count; i++)
        name_count += certificates[i]->name_count;
    server->names = calloc(name_count ? name_count : 1, sizeof *server->names);
    VERGE_ASSERT(server->names != NULL);
    for (size_t i = 0; i < count; i++) {
        for (size_t j = 0; j < certificates[i]->name_count; j++) {
            size_t len = strlen(certificates[i]->names[j]);
            char *copy = malloc(len + 1);
            VERGE_ASSERT(copy != NULL);
            memcpy(copy, certificates[i]->names[j], len + 1);
            server->names[server->name_count++] = (struct tls_name){slice_make(copy, len), i};
        }
    }
    for (size_t i = 0; i < count; i++) {
        server->contexts[i] = create_context(server, certificates[i], min_version, error, error_size);
        if (server->contexts[i] == NULL) {
            tls_server_unref(server);
            return NULL;
        }
        server->context_count++;
    }
    return server;
}

void tls_server_ref(struct tls_server *server)
{
    atomic_fetch_add_explicit(&server->refcount, 1, memory_order_relaxed);
}

void tls_server_unref(struct tls_server *server)
{
    if (server == NULL || atomic_fetch_sub_explicit(&server->refcount, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < server->context_count; i++)
        SSL_CTX_free(server->contexts[i]);
    free(server->contexts);
    for (size_t i = 0; i < server->name_count; i++)
        free((char *)server->names[i].name.ptr);
    free(server->names);
    free(server);
}

/* ---- clients ------------------------------------------------------------------------------ */

struct tls_client *tls_client_create(const char *ca_file, bool verify, char *error, size_t error_size)
{
    ERR_clear_error();
    SSL_CTX *context = SSL_CTX_new(TLS_client_method());
    if (context == NULL) {
        describe_openssl_error(error, error_size, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
    /* Not SSL_OP_IGNORE_UNEXPECTED_EOF: a close without close_notify must not
     * read as the clean end of a response delimited by the close (it would be
     * cached whole). It fails the fetch instead. */
    SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(context, 1);
    static const unsigned char alpn[] = "\x08http/1.1";
    bool ok = SSL_CTX_set_alpn_protos(context, alpn, sizeof alpn - 1) == 0;
    if (verify) {
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, NULL);
        FILE *readable = ca_file != NULL ? fopen(ca_file, "r") : NULL;
        if (ca_file != NULL && readable == NULL) {
            snprintf(error, error_size, "cannot read \"%s\": %s", ca_file, strerror(errno));
            SSL_CTX_free(context);
            return NULL;
        }
        if (readable != NULL)
            fclose(readable);
        if (ca_file != NULL && SSL_CTX_load_verify_locations(context, ca_file, NULL) != 1) {
            char reason[128];
            describe_openssl_error(reason, sizeof reason, "no certificates in it");
            snprintf(error, error_size, "cannot load CA certificates from \"%s\": %s", ca_file, reason);
            SSL_CTX_free(context);
            return NULL;
        }
        ok = ok && (ca_file != NULL || SSL_CTX_set_default_verify_paths(context) == 1);
    } else {
        SSL_CTX_set_verify(context, SSL_VERIFY_NONE, NULL);
    }
    if (!ok) {
        describe_openssl_error(error, error_size, "cannot set up the TLS context");
        SSL_CTX_free(context);
        return NULL;
    }
    struct tls_client *client = calloc(1, sizeof *client);
    VERGE_ASSERT(client != NULL);
    atomic_init(&client->refcount, 1);
    client->context = context;
    return client;
}

static pthread_once_t default_client_once = PTHREAD_ONCE_INIT;
static struct tls_client *default_client;

static void create_default_client(void)
{
    char error[256];
    default_client = tls_client_create(NULL, true, error, sizeof error);
    if (default_client == NULL)
        log_error("TLS: cannot load the system trust store for https origins that functions choose: %s", error);
}

struct tls_client *tls_client_default(void)
{
    pthread_once(&default_client_once, create_default_client);
    return default_client;
}

void tls_client_ref(struct tls_client *client)
{
    atomic_fetch_add_explicit(&client->refcount, 1, memory_order_relaxed);
}

void tls_client_unref(struct tls_client *client)
{
    if (client == NULL || atomic_fetch_sub_explicit(&client->refcount, 1, memory_order_acq_rel) != 1)
        return;
    SSL_CTX_free(client->context);
    free(client);
}

/* ---- connections -------------------------------------------------------------------------- */

static enum tls_io io_result(struct tls_connection *connection, int result);

/* An SSL on `fd` from `context`; NULL (the error queue cleared) when OpenSSL refuses. */
static SSL *ssl_on_socket(SSL_CTX *context, int fd)
{
    ERR_clear_error();
    SSL *ssl = SSL_new(context);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        ERR_clear_error();
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

static struct tls_connection *connection_wrap(SSL *ssl)
{
    struct tls_connection *connection = calloc(1, sizeof *connection);
    VERGE_ASSERT(connection != NULL);
    connection->ssl = ssl;
    return connection;
}

struct tls_connection *tls_connection_create(struct tls_server *server, int fd)
{
    SSL *ssl = ssl_on_socket(server->contexts[0], fd);
    if (ssl == NULL)
        return NULL;
    SSL_set_accept_state(ssl);
    struct tls_connection *connection = connection_wrap(ssl);
    connection->server = server;
    tls_server_ref(server);
    return connection;
}

struct tls_connection *tls_client_connection_create(struct tls_client *client, int fd, const char *host)
{
    SSL *ssl = ssl_on_socket(client->context, fd);
    if (ssl == NULL)
        return NULL;
    SSL_set_connect_state(ssl);
    unsigned char address[16];
    bool is_ip = inet_pton(AF_INET, host, address) == 1 || inet_pton(AF_INET6, host, address) == 1;
    bool ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1
                    : SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS); /* "*.example.com", never "f*.example.com" */
    if (!ok) {
        ERR_clear_error();
        SSL_free(ssl);
        return NULL;
    }
    struct tls_connection *connection = connection_wrap(ssl);
    connection->client = client;
    tls_client_ref(client);
    return connection;
}

enum tls_io tls_connection_handshake(struct tls_connection *connection)
{
    if (connection->handshake_done)
        return TLS_IO_OK;
    ERR_clear_error();
    errno = 0;
    int result = SSL_do_handshake(connection->ssl);
    if (result == 1) {
        connection->handshake_done = true;
        return TLS_IO_OK;
    }
    return io_result(connection, result);
}

const char *tls_connection_error(const struct tls_connection *connection)
{
    return connection->error[0] != '\0' ? connection->error : "unknown error";
}

static void count_failure(struct tls_connection *connection)
{
    if (connection->server == NULL || connection->handshake_done || connection->failure_counted)
        return;
    connection->failure_counted = true;
    atomic_fetch_add_explicit(&metrics.tls_handshake_failures, 1, memory_order_relaxed);
}

void tls_connection_free(struct tls_connection *connection)
{
    if (connection == NULL)
        return;
    /* Closed or timed out mid-handshake: a failure once the viewer sent anything. */
    if (!connection->handshake_done && BIO_number_read(SSL_get_rbio(connection->ssl)) > 0)
        count_failure(connection);
    SSL_free(connection->ssl);
    tls_server_unref(connection->server);
    tls_client_unref(connection->client);
    free(connection);
}

static void note_handshake(struct tls_connection *connection)
{
    if (connection->handshake_done || !SSL_is_init_finished(connection->ssl))
        return;
    connection->handshake_done = true;
    if (connection->server == NULL)
        return;
    atomic_fetch_add_explicit(&metrics.tls_connections, 1, memory_order_relaxed);
    if (SSL_session_reused(connection->ssl))
        atomic_fetch_add_explicit(&metrics.tls_sessions_resumed, 1, memory_order_relaxed);
}

static enum tls_io io_result(struct tls_connection *connection, int result)
{
    int error = SSL_get_error(connection->ssl, result);
    switch (error) {
    case SSL_ERROR_WANT_READ:
        return TLS_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TLS_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return TLS_IO_CLOSED;
    default: {
        bool verifying = connection->client != NULL && (SSL_get_verify_mode(connection->ssl) & SSL_VERIFY_PEER);
        long verify = verifying ? SSL_get_verify_result(connection->ssl) : X509_V_OK;
        if (verify != X509_V_OK) {
            snprintf(connection->error, sizeof connection->error, "certificate verify failed: %s",
                     X509_verify_cert_error_string(verify));
            ERR_clear_error();
        } else if (error == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0) {
            snprintf(connection->error, sizeof connection->error, "%s",
                     result == 0 || errno == 0 ? "connection closed" : strerror(errno));
        } else {
            describe_openssl_error(connection->error, sizeof connection->error, "protocol error");
        }
        if (!connection->handshake_done && connection->server != NULL) {
            log_debug("TLS handshake failed: %s", connection->error);
            count_failure(connection);
        }
        return TLS_IO_ERROR;
    }
    }
}

enum tls_io tls_connection_read(struct tls_connection *connection, void *buf, size_t len, size_t *done)
{
    *done = 0;
    while (*done < len) {
        ERR_clear_error(); /* SSL_get_error reads the queue: it must hold only this call's errors */
        errno = 0;
        size_t want = len - *done > INT32_MAX ? INT32_MAX : len - *done;
        int n = SSL_read(connection->ssl, (char *)buf + *done, (int)want);
        note_handshake(connection);
        if (n <= 0) {
            enum tls_io result = io_result(connection, n);
            /* What was read goes first; a close or an error shows again on the next call. */
            return *done > 0 ? TLS_IO_OK : result;
        }
        *done += (size_t)n;
    }
    return TLS_IO_OK;
}

enum tls_io tls_connection_write(struct tls_connection *connection, const void *buf, size_t len, size_t *done)
{
    *done = 0;
    while (*done < len) {
        ERR_clear_error();
        errno = 0;
        size_t want = len - *done > INT32_MAX ? INT32_MAX : len - *done;
        int n = SSL_write(connection->ssl, (const char *)buf + *done, (int)want);
        if (n <= 0) {
            enum tls_io result = io_result(connection, n);
            if (*done > 0 && result != TLS_IO_ERROR)
                return TLS_IO_OK;
            /* No renegotiation: a write that wants to read can only wait for the socket to drain. */
            return result == TLS_IO_WANT_READ ? TLS_IO_WANT_WRITE : result;
        }
        *done += (size_t)n; /* one record per call (partial writes) */
    }
    return TLS_IO_OK;
}

ssize_t tls_connection_send(struct tls_connection *connection, const void *data, size_t len)
{
    size_t taken;
    enum tls_io result = tls_connection_write(connection, data, len, &taken);
    if (result == TLS_IO_OK)
        return (ssize_t)taken;
    errno = result == TLS_IO_WANT_WRITE ? EAGAIN : EPIPE;
    return -1;
}

ssize_t tls_connection_recv(struct tls_connection *connection, void *buf, size_t len, bool *wants_write)
{
    size_t done;
    switch (tls_connection_read(connection, buf, len, &done)) {
    case TLS_IO_OK:
        return (ssize_t)done;
    case TLS_IO_WANT_WRITE:
        *wants_write = true; /* the handshake or a key update has bytes the socket cannot take yet */
        /* fall through */
    case TLS_IO_WANT_READ:
        errno = EAGAIN;
        return -1;
    case TLS_IO_CLOSED:
        return 0;
    case TLS_IO_ERROR:
        break;
    }
    errno = ECONNRESET;
    return -1;
}

bool tls_connection_has_buffered_input(const struct tls_connection *connection)
{
    return SSL_has_pending(connection->ssl) == 1;
}

bool tls_connection_handshake_done(const struct tls_connection *connection)
{
    return connection->handshake_done;
}

void tls_connection_shutdown(struct tls_connection *connection)
{
    if (!connection->handshake_done)
        return;
    ERR_clear_error();
    SSL_shutdown(connection->ssl);
    ERR_clear_error();
}

bool tls_connection_alpn_is_h2(const struct tls_connection *connection)
{
    const unsigned char *protocol;
    unsigned int len;
    SSL_get0_alpn_selected(connection->ssl, &protocol, &len);
    return len == 2 && memcmp(protocol, "h2", 2) == 0;
}

const char *tls_connection_version(const struct tls_connection *connection)
{
    return SSL_get_version(connection->ssl);
}

const char *tls_connection_cipher(const struct tls_connection *connection)
{
    return SSL_CIPHER_get_name(SSL_get_current_cipher(connection->ssl));
}
