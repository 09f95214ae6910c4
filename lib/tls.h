/*
 * tls: building OpenSSL contexts from the config, and naming TLS failures for logs.
 * The per-connection record layer (memory BIOs) lives in conn.c; this module owns policy:
 * TLS 1.2 minimum, no renegotiation, client-certificate levels, upstream verification.
 */
#ifndef CDN_TLS_H
#define CDN_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "lib/conf.h"

/* Server context for a listener. client_auth is the effective level (the role resolved UNSET).
 * ca_file may be NULL only for CDN_CLIENT_AUTH_NONE. Returns NULL with *err naming the file and
 * what is wrong with it (unreadable, not PEM, key does not match, no CA certificates...). */
SSL_CTX *cdn_tls_server_ctx_new(const char *cert, const char *key, int client_auth, const char *ca_file,
                                char **err);

/* Applies a listener's client-certificate policy to a server context made by cdn_tls_server_ctx_new:
 * verify_depth, send_ca_names, CRLs (crl_file, crl_check leaf|chain, crl_expired reject|warn) and the
 * rule that a CA certificate is never accepted as a client's own certificate. 0, or -1 + *err. */
int cdn_tls_server_ctx_policy(SSL_CTX *ctx, const struct cdn_conf_listener *l, char **err);

/* Makes a server context (of a log_only SNI rule) let every client through the handshake: a missing or
 * refused certificate is recorded (cdn_tls_verdict_of) instead of ending the handshake. */
void cdn_tls_server_ctx_log_only(SSL_CTX *ctx);

/* What the client-certificate verification of a server-side connection saw; NULL when the client sent
 * no certificate. Owned by the SSL. */
struct cdn_tls_verdict {
    X509 *offered;          /* the client's leaf, also when it was refused (the session has none then) */
    long refused;           /* log_only: the X509_V_ERR_* that would have refused it; X509_V_OK if none */
    const char *pin_reason; /* a pin mismatch (X509_V_ERR_APPLICATION_VERIFICATION): why; static */
    int alert;              /* the fatal alert the server sent (SSL_AD_*), -1 if none */
};
const struct cdn_tls_verdict *cdn_tls_verdict_of(const SSL *ssl);

/* For a server context's info callback (where, ret as OpenSSL passes them): records a fatal alert the
 * node sends during the handshake in the connection's verdict, for the failure log. */
void cdn_tls_note_alert(const SSL *ssl, int where, int ret);
/* The name of a recorded alert ("certificate required" ...), or "-" for none. */
const char *cdn_tls_alert_name(int alert);
/* Whether ssl runs under a log_only context (its SNI rule has log_only: true). */
bool cdn_tls_log_only(const SSL *ssl);

/* Moves a server-side ssl, inside its ClientHello callback, to ctx (a context made like the listener's,
 * e.g. for one SNI rule) and copies onto the SSL what SSL_set_SSL_CTX does not carry over: verify mode
 * and callback, verify depth and the CA names of the CertificateRequest. sid_ctx (may be NULL) becomes
 * the session id context, so that a session is resumed only under the same policy. */
void cdn_tls_server_switch_ctx(SSL *ssl, SSL_CTX *ctx, const char *sid_ctx);

/* A server connection's TLS 1.3 application traffic secrets (client's and server's, *len bytes each,
 * at most EVP_MAX_MD_SIZE), captured during its handshake for lib/conn's record layer. Copies them
 * and wipes the connection's copy. Returns 0, or CDN_EINVAL when they were not both captured (TLS
 * 1.2, or a context not made by cdn_tls_server_ctx_new). */
int cdn_tls_take_secrets(SSL *ssl, uint8_t *client, uint8_t *server, size_t *len);

/* Client context for upstream connections: presents u->client_certificate when set, verifies the
 * peer against u->ca_file (or the system store) unless u->verify is false. NULL + *err on failure. */
SSL_CTX *cdn_tls_client_ctx_new(const struct cdn_conf_upstream *u, char **err);

/* Whether connections made with u's context must check the peer's name (cdn_tls_client_setup's verify). */
bool cdn_tls_upstream_checks_name(const struct cdn_conf_upstream *u);

/* Prepares ssl for a connection to name: SNI (unless an IP literal) and, when verify is set,
 * the host name or IP the peer certificate must match. Returns 0 or -1. */
int cdn_tls_client_setup(SSL *ssl, const char *name, int verify);

/* Offers the session last seen for key (any string naming the peer: "host|port|name") on a new
 * connection made with a context of cdn_tls_client_ctx_new, and files the sessions it gets under key.
 * SSL_session_reused() after the handshake tells whether it was resumed. */
void cdn_tls_client_resume(SSL *ssl, const char *key);

/* Fills buf with the reason of the last failure on ssl: the verify result when a certificate was
 * rejected, else the drained OpenSSL error queue. Clears the queue. */
void cdn_tls_describe_error(SSL *ssl, char *buf, size_t n);

/* Loads all certificates of a PEM file into a new stack; NULL + *err when there is none. */
STACK_OF(X509) * cdn_tls_load_certs(const char *path, char **err);

#endif
