/*
 * tls: context construction. Every failure names the file and what is wrong with it, because an
 * operator reading "SSL_CTX_use_certificate_file failed" learns nothing. Verification of client
 * certificates happens inside the handshake (SSL_VERIFY_FAIL_IF_NO_PEER_CERT for "require"), so a
 * client without a valid certificate never gets to send an HTTP byte.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>

#include "lib/log.h"
#include "lib/pin.h"
#include "lib/tls.h"
#include "lib/util.h"

static const unsigned char session_ctx_id[] = "cdn-node";

static void drain_errors(char *buf, size_t n)
{
    size_t k = 0;
    unsigned long e;
    buf[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof(one));
        if (k < n)
            k += (size_t)snprintf(buf + k, n - k, "%s%s", k > 0 ? "; " : "", one);
    }
    if (k == 0)
        snprintf(buf, n, "unknown TLS error");
}

static char *file_error(const char *what, const char *path)
{
    char detail[512];
    drain_errors(detail, sizeof(detail));
    return cdn_xasprintf("%s %s: %s", what, path, detail);
}

STACK_OF(X509) * cdn_tls_load_certs(const char *path, char **err)
{
    BIO *bio = BIO_new_file(path, "r");
    if (bio == NULL) {
        *err = file_error("cannot read certificate file", path);
        return NULL;
    }
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        sk_X509_push(sk, x);
    ERR_clear_error(); /* the loop ends on "no start line" */
    BIO_free(bio);
    if (sk_X509_num(sk) == 0) {
        sk_X509_free(sk);
        *err = cdn_xasprintf("certificate file %s: no PEM certificate in it", path);
        return NULL;
    }
    return sk;
}

static int common_setup(SSL_CTX *ctx)
{
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx,
                        SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* No SSL_MODE_RELEASE_BUFFERS: it frees and reallocates both 16 KiB record buffers around every
     * record (4 large mallocs per request); cdn_conn_trim frees them once the connection is idle. */
    return 0;
}

static int use_cert_and_key(SSL_CTX *ctx, const char *cert, const char *key, char **err)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        *err = file_error("cannot load certificate", cert);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            *err = cdn_xasprintf("private key %s does not match certificate %s", key, cert);
        } else {
            *err = file_error("cannot load private key", key);
        }
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        *err = cdn_xasprintf("private key %s does not match certificate %s", key, cert);
        return -1;
    }
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    if (leaf != NULL && X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0) {
        *err = cdn_xasprintf("certificate %s has expired", cert);
        return -1;
    }
    return 0;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    static const unsigned char h1[] = "\x08http/1.1";
    if (SSL_select_next_proto((unsigned char **)out, outlen, h1, sizeof(h1) - 1, in, inlen) ==
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    return SSL_TLSEXT_ERR_NOACK; /* no ALPN match: carry on without it, HTTP/1.1 is implied */
}

/* ---- TLS 1.3 traffic secrets, for lib/conn's record layer (lib/trec) ---- */

struct tls_secrets {
    uint8_t client[EVP_MAX_MD_SIZE], server[EVP_MAX_MD_SIZE];
    unsigned client_len, server_len;
};

static int secrets_index = -1;
static pthread_once_t secrets_once = PTHREAD_ONCE_INIT;

static void secrets_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    if (ptr != NULL)
        OPENSSL_cleanse(ptr, sizeof(struct tls_secrets));
    free(ptr);
}

static void secrets_index_init(void)
{
    secrets_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, secrets_ex_free);
}

static int hex_value(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/*
 * OpenSSL hands out secrets only through the key-log callback (the NSS key log format). We keep the
 * two application traffic secrets in the connection's memory, as OpenSSL itself does, until lib/conn
 * takes them (or the SSL is freed, which wipes them); nothing is ever written anywhere.
 */
static void keylog_cb(const SSL *ssl, const char *line)
{
    static const char cl[] = "CLIENT_TRAFFIC_SECRET_0 ", sl[] = "SERVER_TRAFFIC_SECRET_0 ";
    bool client = strncmp(line, cl, sizeof(cl) - 1) == 0;
    if (!client && strncmp(line, sl, sizeof(sl) - 1) != 0)
        return;
    const char *p = strchr(line + sizeof(cl) - 1, ' '); /* past the client random */
    if (p == NULL)
        return;
    p++;
    size_t hl = strlen(p);
    if (hl == 0 || hl % 2 != 0 || hl / 2 > EVP_MAX_MD_SIZE)
        return;
    struct tls_secrets *t = SSL_get_ex_data(ssl, secrets_index);
    if (t == NULL) {
        t = cdn_xcalloc(1, sizeof(*t));
        if (SSL_set_ex_data((SSL *)ssl, secrets_index, t) != 1) {
            free(t);
            return;
        }
    }
    uint8_t *dst = client ? t->client : t->server;
    for (size_t i = 0; i < hl / 2; i++) {
        int hi = hex_value(p[2 * i]), lo = hex_value(p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return;
        dst[i] = (uint8_t)(hi << 4 | lo);
    }
    *(client ? &t->client_len : &t->server_len) = (unsigned)(hl / 2);
}

int cdn_tls_take_secrets(SSL *ssl, uint8_t *client, uint8_t *server, size_t *len)
{
    pthread_once(&secrets_once, secrets_index_init);
    struct tls_secrets *t = SSL_get_ex_data(ssl, secrets_index);
    if (t == NULL)
        return CDN_EINVAL;
    int rc = CDN_EINVAL;
    if (t->client_len != 0 && t->client_len == t->server_len) {
        memcpy(client, t->client, t->client_len);
        memcpy(server, t->server, t->server_len);
        *len = t->client_len;
        rc = 0;
    }
    SSL_set_ex_data(ssl, secrets_index, NULL);
    OPENSSL_cleanse(t, sizeof(*t));
    free(t);
    return rc;
}

SSL_CTX *cdn_tls_server_ctx_new(const char *cert, const char *key, int client_auth, const char *ca_file,
                                char **err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        *err = file_error("cannot create TLS context for", cert);
        return NULL;
    }
    common_setup(ctx);
    SSL_CTX_set_info_callback(ctx, cdn_tls_note_alert); /* lib/sni.c replaces it with one that also logs */
    SSL_CTX_set_session_id_context(ctx, session_ctx_id, sizeof(session_ctx_id) - 1);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    /* only where a connection can end up without a client certificate, the takeover's condition */
    pthread_once(&secrets_once, secrets_index_init);
    if (client_auth != CDN_CLIENT_AUTH_REQUIRE)
        SSL_CTX_set_keylog_callback(ctx, keylog_cb);
    if (use_cert_and_key(ctx, cert, key, err) != 0)
        goto fail;
    if (client_auth != CDN_CLIENT_AUTH_NONE) {
        if (ca_file == NULL) {
            *err = cdn_xasprintf("client_auth %s needs ca_file", cdn_conf_client_auth_name(client_auth));
            goto fail;
        }
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
            *err = file_error("cannot load client CA file", ca_file);
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
        if (names == NULL) {
            ERR_clear_error();
            *err = cdn_xasprintf("client CA file %s: no certificates in it", ca_file);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        int mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
        if (client_auth == CDN_CLIENT_AUTH_REQUIRE)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx, mode, NULL);
        SSL_CTX_set_verify_depth(ctx, 4);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* Per-context policy read by the verify callback, kept in the SSL_CTX's ex_data as flag bits. */
#define POLICY_CRL_EXPIRED_WARN 0x1u
#define POLICY_PERMISSIVE       0x2u /* client contexts */
#define POLICY_NAME_ONLY        0x4u
#define POLICY_LOG_ONLY         0x8u /* server contexts of a log_only SNI rule */

static int policy_index = -1, pins_index = -1, verdict_index = -1;
static pthread_once_t policy_once = PTHREAD_ONCE_INIT;

static void pins_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    cdn_pins_free(ptr);
}

static void verdict_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    struct cdn_tls_verdict *v = ptr;
    if (v != NULL)
        X509_free(v->offered);
    free(v);
}

static void policy_index_init(void)
{
    policy_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    pins_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, pins_ex_free);
    verdict_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, verdict_ex_free);
}

/* The connection's verdict record, made on first use (only connections that send a certificate). */
static struct cdn_tls_verdict *verdict_of(SSL *ssl)
{
    struct cdn_tls_verdict *v = SSL_get_ex_data(ssl, verdict_index);
    if (v == NULL) {
        v = cdn_xcalloc(1, sizeof(*v));
        v->alert = -1;
        SSL_set_ex_data(ssl, verdict_index, v);
    }
    return v;
}

void cdn_tls_note_alert(const SSL *ssl, int where, int ret)
{
    if (!(where & SSL_CB_WRITE_ALERT) || (ret >> 8) != SSL3_AL_FATAL || SSL_is_init_finished(ssl))
        return;
    pthread_once(&policy_once, policy_index_init);
    struct cdn_tls_verdict *v = verdict_of((SSL *)ssl); /* ex data only: the SSL itself is not changed */
    if (v->alert < 0)
        v->alert = ret & 0xff;
}

const char *cdn_tls_alert_name(int alert)
{
    if (alert < 0)
        return "-";
    /* certificate_required (116, TLS 1.3) is newer than OpenSSL 3.0's name table */
    return alert == 116 ? "certificate required" : SSL_alert_desc_string_long(alert);
}


const struct cdn_tls_verdict *cdn_tls_verdict_of(const SSL *ssl)
{
    pthread_once(&policy_once, policy_index_init);
    return ssl != NULL ? SSL_get_ex_data(ssl, verdict_index) : NULL;
}

bool cdn_tls_log_only(const SSL *ssl)
{
    pthread_once(&policy_once, policy_index_init);
    uintptr_t flags = ssl != NULL ? (uintptr_t)SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), policy_index) : 0;
    return (flags & POLICY_LOG_ONLY) != 0;
}

/* Runs for every certificate of a client's chain, inside the handshake. Adds what OpenSSL does not
 * check by itself: a CA certificate is never accepted as the client's own (leaf) certificate; the pins
 * (allowed_sans / allowed_fingerprints) of the context; an expired CRL is only a warning when the
 * operator chose crl_expired: warn; and under log_only, every refusal is recorded and let through. */
static int verify_client_cb(int ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    if (ssl == NULL)
        return ok;
    SSL_CTX *sctx = SSL_get_SSL_CTX(ssl);
    uintptr_t flags = (uintptr_t)SSL_CTX_get_ex_data(sctx, policy_index);
    struct cdn_tls_verdict *v = verdict_of(ssl);
    if (v->offered == NULL && X509_STORE_CTX_get0_cert(x) != NULL) {
        v->offered = X509_STORE_CTX_get0_cert(x); /* for the failure log: the session has no peer yet */
        X509_up_ref(v->offered);
    }
    int err = X509_STORE_CTX_get_error(x);
    if (!ok && err == X509_V_ERR_CRL_HAS_EXPIRED && (flags & POLICY_CRL_EXPIRED_WARN)) {
        cdn_log(CDN_LOG_WARN, "tls: accepting a client certificate checked against an expired CRL "
                              "(crl_expired: warn); refresh the CRL");
        X509_STORE_CTX_set_error(x, X509_V_OK);
        return 1;
    }
    if (ok && X509_STORE_CTX_get_error_depth(x) == 0) {
        X509 *leaf = X509_STORE_CTX_get_current_cert(x);
        const char *why;
        if (X509_check_ca(leaf) > 0) {
            X509_STORE_CTX_set_error(x, X509_V_ERR_INVALID_CA); /* a CA presented as a client certificate */
            ok = 0;
        } else if ((why = cdn_pins_check(SSL_CTX_get_ex_data(sctx, pins_index), leaf)) != NULL) {
            v->pin_reason = why;
            X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
            ok = 0;
        }
    }
    if (!ok && (flags & POLICY_LOG_ONLY)) {
        if (v->refused == X509_V_OK)
            v->refused = X509_STORE_CTX_get_error(x);
        /* the first refusal is the one reported, now and in the session (resumptions read it there) */
        X509_STORE_CTX_set_error(x, (int)v->refused);
        return 1;
    }
    return ok;
}

/* Upstream certificates under verify_server_policy PERMISSIVE (every failure is let through; the
 * verify result still records it, and the caller logs and counts it) or properties NAME (only a
 * name mismatch fails; the chain is not trusted for anything else). */
static int verify_server_cb(int ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    uintptr_t flags = ssl != NULL ? (uintptr_t)SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), policy_index) : 0;
    if (ok)
        return 1;
    if (flags & POLICY_PERMISSIVE)
        return 1;
    int err = X509_STORE_CTX_get_error(x);
    if ((flags & POLICY_NAME_ONLY) && err != X509_V_ERR_HOSTNAME_MISMATCH &&
        err != X509_V_ERR_IP_ADDRESS_MISMATCH)
        return 1;
    return 0;
}

bool cdn_tls_upstream_checks_name(const struct cdn_conf_upstream *u)
{
    return u->verify_policy != CDN_VERIFY_DISABLED && u->verify_properties != CDN_VERIFY_SIGNATURE;
}

void cdn_tls_server_ctx_log_only(SSL_CTX *ctx)
{
    pthread_once(&policy_once, policy_index_init);
    uintptr_t flags = (uintptr_t)SSL_CTX_get_ex_data(ctx, policy_index) | POLICY_LOG_ONLY;
    SSL_CTX_set_ex_data(ctx, policy_index, (void *)flags);
    /* a missing certificate is judged after the handshake (cdn_tls_verdict_of's caller) */
    SSL_CTX_set_verify(ctx, SSL_CTX_get_verify_mode(ctx) & ~SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       SSL_CTX_get_verify_callback(ctx));
}

/* Adds the CRLs of path to ctx's store and turns revocation checking on (every certificate of the chain
 * when chain, else the leaf). 0, or -1 + *err. */
static int load_crls(SSL_CTX *ctx, const char *path, bool chain, char **err)
{
    BIO *bio = BIO_new_file(path, "r");
    if (bio == NULL) {
        *err = file_error("cannot read CRL file", path);
        return -1;
    }
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    X509_CRL *crl;
    int n = 0;
    while ((crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
        X509_STORE_add_crl(store, crl);
        X509_CRL_free(crl);
        n++;
    }
    ERR_clear_error();
    BIO_free(bio);
    if (n == 0) {
        *err = cdn_xasprintf("CRL file %s: no PEM CRL in it", path);
        return -1;
    }
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | (chain ? X509_V_FLAG_CRL_CHECK_ALL : 0));
    return 0;
}

int cdn_tls_server_ctx_policy(SSL_CTX *ctx, const struct cdn_conf_listener *l, char **err)
{
    pthread_once(&policy_once, policy_index_init);
    uintptr_t flags = l->crl_expired == CDN_CRL_EXPIRED_WARN ? POLICY_CRL_EXPIRED_WARN : 0;
    SSL_CTX_set_ex_data(ctx, policy_index, (void *)flags);
    if (SSL_CTX_get_verify_mode(ctx) == SSL_VERIFY_NONE) {
        if (l->allowed_sans.n > 0 || l->allowed_fingerprints.n > 0) {
            /* e.g. client_auth left to the edge role's default, none: the pins would pin nothing */
            *err = cdn_xasprintf("allowed_sans/allowed_fingerprints need client_auth request or require");
            return -1;
        }
        return 0;
    }
    struct cdn_pins *pins = cdn_pins_new(l->allowed_sans.v, l->allowed_sans.n, l->allowed_fingerprints.v,
                                         l->allowed_fingerprints.n);
    if (pins != NULL)
        SSL_CTX_set_ex_data(ctx, pins_index, pins); /* freed with ctx */
    SSL_CTX_set_verify(ctx, SSL_CTX_get_verify_mode(ctx), verify_client_cb);
    SSL_CTX_set_verify_depth(ctx, l->verify_depth);
    if (!l->send_ca_names)
        SSL_CTX_set_client_CA_list(ctx, sk_X509_NAME_new_null());
    if (l->crl_file == NULL)
        return 0;
    return load_crls(ctx, l->crl_file, l->crl_check == CDN_CRL_CHAIN, err);
}

void cdn_tls_server_switch_ctx(SSL *ssl, SSL_CTX *ctx, const char *sid_ctx)
{
    if (SSL_get_SSL_CTX(ssl) != ctx)
        SSL_set_SSL_CTX(ssl, ctx);
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
    SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx));
    const STACK_OF(X509_NAME) *names = SSL_CTX_get_client_CA_list(ctx);
    STACK_OF(X509_NAME) *copy = names != NULL ? SSL_dup_CA_list(names) : sk_X509_NAME_new_null();
    if (copy != NULL)
        SSL_set_client_CA_list(ssl, copy);
    if (sid_ctx != NULL)
        SSL_set_session_id_context(ssl, (const unsigned char *)sid_ctx, (unsigned int)strlen(sid_ctx));
}

/* ---- upstream session resumption ----
 * A client context keeps the latest session per peer ("host|port|name") so that a new connection to a
 * parent resumes (TLS 1.3 ticket or 1.2 session) instead of a full handshake. The cache hangs off the
 * context (ex_data), so a reload, which builds a new context, starts afresh: a session is never
 * resumed under other client credentials. Workers share it under a mutex (taken per new connection). */

#define SESS_MAX 64 /* peers remembered per context */

struct sess_cache {
    pthread_mutex_t mu;
    struct {
        char *key;
        SSL_SESSION *sess;
    } e[SESS_MAX];
    size_t n, next; /* next: slot replaced when full (round robin) */
};

static int sess_cache_index = -1, sess_key_index = -1;
static pthread_once_t sess_once = PTHREAD_ONCE_INIT;

static void sess_cache_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    struct sess_cache *c = ptr;
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].key);
        SSL_SESSION_free(c->e[i].sess);
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static void sess_key_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    free(ptr);
}

static void sess_once_init(void)
{
    sess_cache_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sess_cache_free);
    sess_key_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, sess_key_free);
}

/* OpenSSL hands over a new session (after the handshake, or when a TLS 1.3 ticket arrives). */
static int sess_new_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct sess_cache *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), sess_cache_index);
    const char *key = SSL_get_ex_data(ssl, sess_key_index);
    if (c == NULL || key == NULL || !SSL_SESSION_is_resumable(sess))
        return 0;
    pthread_mutex_lock(&c->mu);
    size_t i = 0;
    while (i < c->n && strcmp(c->e[i].key, key) != 0)
        i++;
    if (i == c->n) {
        if (c->n < SESS_MAX) {
            c->n++;
        } else {
            i = c->next;
            c->next = (c->next + 1) % SESS_MAX;
            free(c->e[i].key);
            SSL_SESSION_free(c->e[i].sess);
        }
        c->e[i].key = cdn_xstrdup(key);
    } else {
        SSL_SESSION_free(c->e[i].sess);
    }
    c->e[i].sess = sess; /* the reference OpenSSL gave us (return 1) */
    pthread_mutex_unlock(&c->mu);
    return 1;
}

static void sess_cache_attach(SSL_CTX *ctx)
{
    pthread_once(&sess_once, sess_once_init);
    struct sess_cache *c = cdn_xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    SSL_CTX_set_ex_data(ctx, sess_cache_index, c);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, sess_new_cb);
}

void cdn_tls_client_resume(SSL *ssl, const char *key)
{
    pthread_once(&sess_once, sess_once_init);
    struct sess_cache *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), sess_cache_index);
    if (c == NULL)
        return;
    SSL_set_ex_data(ssl, sess_key_index, cdn_xstrdup(key));
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->e[i].key, key) == 0) {
            /* a copy: OpenSSL marks the session of a connection freed without close_notify as not
             * resumable, which must not spoil it for every other connection */
            SSL_SESSION *dup = SSL_SESSION_dup(c->e[i].sess);
            if (dup != NULL) {
                SSL_set_session(ssl, dup); /* takes its own reference */
                SSL_SESSION_free(dup);
            }
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

SSL_CTX *cdn_tls_client_ctx_new(const struct cdn_conf_upstream *u, char **err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        *err = file_error("cannot create TLS context for", "upstream");
        return NULL;
    }
    common_setup(ctx);
    static const unsigned char h1[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, h1, sizeof(h1) - 1);
    if (u->client_certificate != NULL &&
        use_cert_and_key(ctx, u->client_certificate, u->client_key, err) != 0)
        goto fail;
    if (u->ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, u->ca_file, NULL) != 1) {
            *err = file_error("cannot load upstream CA file", u->ca_file);
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        *err = file_error("cannot load the system CA store for", "upstream");
        goto fail;
    }
    /* the upstream's whole chain: a revoked intermediate is as bad as a revoked leaf */
    if (u->crl_file != NULL && load_crls(ctx, u->crl_file, true, err) != 0)
        goto fail;
    pthread_once(&policy_once, policy_index_init);
    uintptr_t flags = (u->verify_policy == CDN_VERIFY_PERMISSIVE ? POLICY_PERMISSIVE : 0) |
                      (u->verify_properties == CDN_VERIFY_NAME ? POLICY_NAME_ONLY : 0);
    SSL_CTX_set_ex_data(ctx, policy_index, (void *)flags);
    SSL_CTX_set_verify(ctx, u->verify_policy == CDN_VERIFY_DISABLED ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
                       flags != 0 ? verify_server_cb : NULL);
    SSL_CTX_set_verify_depth(ctx, 8);
    sess_cache_attach(ctx);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int cdn_tls_client_setup(SSL *ssl, const char *name, int verify)
{
    unsigned char tmp[16];
    bool is_ip = inet_pton(AF_INET, name, tmp) == 1 || inet_pton(AF_INET6, name, tmp) == 1;
    if (!is_ip && SSL_set_tlsext_host_name(ssl, name) != 1)
        return -1;
    if (!verify)
        return 0;
    if (is_ip)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1 ? 0 : -1;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set1_host(ssl, name) == 1 ? 0 : -1;
}

void cdn_tls_describe_error(SSL *ssl, char *buf, size_t n)
{
    long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
    const struct cdn_tls_verdict *v = cdn_tls_verdict_of(ssl);
    if (vr == X509_V_ERR_APPLICATION_VERIFICATION && v != NULL && v->pin_reason != NULL) {
        ERR_clear_error();
        snprintf(buf, n, "pin mismatch: %s", v->pin_reason);
        return;
    }
    if (vr != X509_V_OK) {
        ERR_clear_error();
        snprintf(buf, n, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
        return;
    }
    drain_errors(buf, n);
}
