/*
 * ident: what the node tells about a client certificate, to the origin and in the failure log.
 *
 * To the origin (identity: in the config): RFC 9440 Client-Cert-Chain, and headers with the subject,
 * issuer, SANs, SHA-256 fingerprint and verification status of the client's certificate. Every one of
 * those names, Client-Cert and Client-Cert-Chain are ours: a client's own copies are always dropped, so
 * an origin can trust them (RFC 9440 4).
 *
 * Verification status: "SUCCESS" (verified), "NONE" (no certificate, and none was required), or
 * "FAILED:<reason>" when a log_only SNI rule let a refused client through (reason as in the
 * tls_handshake_failures counter: no_certificate, unknown_ca, pin_mismatch...). A FAILED status is
 * always sent, even with identity.headers off: log_only exists so that the origin can see it.
 *
 * Failure log: one structured line per refused handshake (and per log_only let-through): peer, SNI,
 * rule, level, reason, detail, and the subject and fingerprint of the certificate when one was sent.
 * Never key material.
 */
#ifndef CDN_IDENT_H
#define CDN_IDENT_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "lib/buf.h"
#include "lib/conf.h"
#include "lib/stats.h"

/* Whether a request header called name (len bytes) is one the node sets itself and so must drop from
 * a client's request: Client-Cert, Client-Cert-Chain and every header name in id. */
bool cdn_ident_is_owned(const struct cdn_conf_identity *id, const char *name, size_t len);

/* The tls_failed_* reason a log_only rule let through on the finished handshake ssl; CDN_STAT__SLOTS
 * when there is none (verified, or no certificate where none is required, or not a log_only rule). */
enum cdn_stat cdn_ident_log_only_reason(SSL *ssl);

/* "SUCCESS", "NONE" or "FAILED:<reason>" for the finished handshake ssl, into buf. */
const char *cdn_ident_status(SSL *ssl, char *buf, size_t n);

/* Appends to b (an upstream request head) the identity headers of the downstream ssl (NULL: plain,
 * nothing is added) as id asks. Client-Cert itself is lib/proxy.c's (always added when verified). */
void cdn_ident_append(const struct cdn_conf_identity *id, SSL *ssl, struct cdn_buf *b);
/* What cdn_ident_append adds for a TLS connection that sent no certificate and had no log-only
 * verdict (its SSL may be gone: lib/conn takeover): the status header, NONE, when headers are on. */
void cdn_ident_append_none(const struct cdn_conf_identity *id, struct cdn_buf *b);

/* At the end of a successful handshake: when a log_only rule let a refusal through, counts it
 * (client_certs_log_only) and writes the failure line marked log_only. Returns whether it did. */
bool cdn_ident_handshake_done(struct cdn_stats *st, SSL *ssl, unsigned long long conn_id, const char *peer);

/* The failure line of a refused handshake (reason: a tls_failed_* id; detail: the OpenSSL reason). */
void cdn_ident_log_refused(SSL *ssl, unsigned long long conn_id, const char *peer, int level,
                           enum cdn_stat reason, const char *detail);

#endif
