/*
 * ident: see ident.h. Header values are built from certificate fields an attacker with a CA-signed
 * certificate may choose, so every value is forced to visible ASCII (RFC 2253 escaping for names,
 * anything else below 0x20 or above 0x7e replaced) before it goes into a header or a log line.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "lib/ident.h"
#include "lib/log.h"
#include "lib/pin.h"
#include "lib/sni.h"
#include "lib/tls.h"
#include "lib/util.h"

#define IDENT_VALUE_MAX 4096 /* longer subjects or SAN lists are cut: a header, not an archive */

bool cdn_ident_is_owned(const struct cdn_conf_identity *id, const char *name, size_t len)
{
    const char *names[] = {"client-cert",   "client-cert-chain",    id->subject_header, id->issuer_header,
                           id->sans_header, id->fingerprint_header, id->status_header};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (names[i] != NULL && cdn_strieq(name, len, names[i]))
            return true;
    }
    return false;
}

/* Visible ASCII only: a certificate field must not be able to end a header line or a log line. */
static void sanitize(char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            *s = '?';
    }
}

static void name_string(const X509_NAME *nm, char *buf, size_t n)
{
    buf[0] = '\0';
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return;
    if (nm != NULL && X509_NAME_print_ex(bio, nm, 0, XN_FLAG_RFC2253) >= 0) {
        int k = BIO_read(bio, buf, (int)n - 1);
        buf[k > 0 ? k : 0] = '\0';
    }
    BIO_free(bio);
    sanitize(buf);
}

static void sans_string(X509 *x, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = '\0';
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; i < sk_GENERAL_NAME_num(gens) && k + 1 < n; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const char *kind = NULL;
        const ASN1_STRING *v = NULL;
        char ip[64] = "";
        switch (g->type) {
        case GEN_DNS:
            kind = "DNS", v = g->d.dNSName;
            break;
        case GEN_URI:
            kind = "URI", v = g->d.uniformResourceIdentifier;
            break;
        case GEN_EMAIL:
            kind = "email", v = g->d.rfc822Name;
            break;
        case GEN_IPADD: {
            kind = "IP";
            const unsigned char *d = ASN1_STRING_get0_data(g->d.iPAddress);
            int len = ASN1_STRING_length(g->d.iPAddress);
            if (len == 4)
                snprintf(ip, sizeof(ip), "%u.%u.%u.%u", d[0], d[1], d[2], d[3]);
            else if (len == 16)
                for (int j = 0; j < 16; j += 2)
                    snprintf(ip + strlen(ip), sizeof(ip) - strlen(ip), "%s%x", j ? ":" : "",
                             d[j] << 8 | d[j + 1]);
            break;
        }
        default:
            continue;
        }
        if (v != NULL)
            k += (size_t)snprintf(buf + k, n - k, "%s%s:%.*s", k ? ", " : "", kind, ASN1_STRING_length(v),
                                  (const char *)ASN1_STRING_get0_data(v));
        else
            k += (size_t)snprintf(buf + k, n - k, "%s%s:%s", k ? ", " : "", kind, ip);
    }
    GENERAL_NAMES_free(gens);
    if (k >= n)
        buf[n - 1] = '\0';
    sanitize(buf);
}

enum cdn_stat cdn_ident_log_only_reason(SSL *ssl)
{
    if (ssl == NULL || !cdn_tls_log_only(ssl))
        return CDN_STAT__SLOTS;
    const struct cdn_tls_verdict *v = cdn_tls_verdict_of(ssl);
    if (v != NULL && v->refused != X509_V_OK)
        return cdn_stats_tls_failure(v->refused, 0, false);
    /* a resumed session is not verified again; its session keeps the result of the first time */
    if (SSL_session_reused(ssl) && SSL_get0_peer_certificate(ssl) != NULL &&
        SSL_get_verify_result(ssl) != X509_V_OK)
        return cdn_stats_tls_failure(SSL_get_verify_result(ssl), 0, false);
    const struct cdn_sni_policy *p = cdn_sni_of(ssl);
    if (SSL_get0_peer_certificate(ssl) == NULL && p != NULL && p->level == CDN_CLIENT_AUTH_REQUIRE)
        return CDN_STAT_tls_failed_no_certificate;
    return CDN_STAT__SLOTS;
}

const char *cdn_ident_status(SSL *ssl, char *buf, size_t n)
{
    enum cdn_stat r = cdn_ident_log_only_reason(ssl);
    if (r != CDN_STAT__SLOTS)
        snprintf(buf, n, "FAILED:%s", cdn_stats_tls_failure_name(r));
    else if (ssl != NULL && SSL_get0_peer_certificate(ssl) != NULL && SSL_get_verify_result(ssl) == X509_V_OK)
        snprintf(buf, n, "SUCCESS");
    else
        snprintf(buf, n, "NONE");
    return buf;
}

static void append_header(struct cdn_buf *b, const char *name, const char *value)
{
    cdn_buf_append(b, name, strlen(name));
    cdn_buf_append(b, ": ", 2);
    cdn_buf_append(b, value, strlen(value));
    cdn_buf_append(b, "\r\n", 2);
}

/* A resumed session was not verified again, so OpenSSL has no verified chain for it: build it again
 * from the leaf, what the client sent and the context's trust store. NULL if that fails now. */
static STACK_OF(X509) * rebuild_chain(SSL *ssl, X509 *leaf)
{
    STACK_OF(X509) *chain = NULL;
    X509_STORE_CTX *x = X509_STORE_CTX_new();
    if (x != NULL &&
        X509_STORE_CTX_init(x, SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl)), leaf,
                            SSL_get_peer_cert_chain(ssl)) == 1 &&
        X509_verify_cert(x) == 1)
        chain = X509_STORE_CTX_get1_chain(x);
    X509_STORE_CTX_free(x);
    ERR_clear_error();
    return chain;
}

/* RFC 9440 2.3: the chain the leaf was verified with, leaf excluded, each as an sf-binary. */
static void append_chain(SSL *ssl, X509 *leaf, struct cdn_buf *b)
{
    STACK_OF(X509) *owned = NULL, *chain = SSL_get0_verified_chain(ssl);
    if (chain == NULL)
        chain = owned = rebuild_chain(ssl, leaf);
    if (chain != NULL && sk_X509_num(chain) >= 2) {
        cdn_buf_append(b, "Client-Cert-Chain: ", 19);
        for (int i = 1; i < sk_X509_num(chain); i++) { /* 0 is the leaf */
            unsigned char *der = NULL;
            int n = i2d_X509(sk_X509_value(chain, i), &der);
            if (n <= 0)
                continue;
            char *b64 = cdn_xmalloc(4 * (((size_t)n + 2) / 3) + 1);
            int k = EVP_EncodeBlock((unsigned char *)b64, der, n);
            if (i > 1)
                cdn_buf_append(b, ", ", 2);
            cdn_buf_append(b, ":", 1);
            cdn_buf_append(b, b64, (size_t)k);
            cdn_buf_append(b, ":", 1);
            free(b64);
            OPENSSL_free(der);
        }
        cdn_buf_append(b, "\r\n", 2);
    }
    sk_X509_pop_free(owned, X509_free);
}

void cdn_ident_append_none(const struct cdn_conf_identity *id, struct cdn_buf *b)
{
    if (id->headers)
        append_header(b, id->status_header, "NONE");
}

void cdn_ident_append(const struct cdn_conf_identity *id, SSL *ssl, struct cdn_buf *b)
{
    if (ssl == NULL)
        return;
    char status[64];
    cdn_ident_status(ssl, status, sizeof(status));
    bool failed = strncmp(status, "FAILED:", 7) == 0;
    if (id->headers || failed)
        append_header(b, id->status_header, status);
    X509 *x = SSL_get0_peer_certificate(ssl);
    if (x == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
        return; /* nothing about a certificate that was not verified */
    if (id->client_cert_chain)
        append_chain(ssl, x, b);
    if (!id->headers)
        return;
    char *v = cdn_xmalloc(IDENT_VALUE_MAX);
    name_string(X509_get_subject_name(x), v, IDENT_VALUE_MAX);
    append_header(b, id->subject_header, v);
    name_string(X509_get_issuer_name(x), v, IDENT_VALUE_MAX);
    append_header(b, id->issuer_header, v);
    sans_string(x, v, IDENT_VALUE_MAX);
    if (v[0] != '\0')
        append_header(b, id->sans_header, v);
    cdn_pin_fingerprint_hex(x, v, IDENT_VALUE_MAX);
    append_header(b, id->fingerprint_header, v);
    free(v);
}

static const char *level_name(int level)
{
    return level == CDN_CLIENT_AUTH_REQUIRE   ? "require"
           : level == CDN_CLIENT_AUTH_REQUEST ? "request"
                                              : "none";
}

/* The common part of both lines; what is the verdict ("TLS handshake failed", ...). */
static void log_line(SSL *ssl, unsigned long long conn_id, const char *peer, int level, const char *what,
                     enum cdn_stat reason, const char *detail)
{
    const struct cdn_tls_verdict *v = cdn_tls_verdict_of(ssl);
    X509 *x = SSL_get0_peer_certificate(ssl);
    if (x == NULL && v != NULL)
        x = v->offered;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    char rule[300], subject[512] = "-", fp[100] = "-", d[512];
    snprintf(d, sizeof(d), "%s", detail != NULL ? detail : "-");
    for (char *p = d; *p != '\0'; p++) {
        if (*p == '"')
            *p = '\'';
    }
    sanitize(d);
    if (x != NULL) {
        name_string(X509_get_subject_name(x), subject, sizeof(subject));
        for (char *p = subject; *p != '\0'; p++) {
            if (*p == '"')
                *p = '\'';
        }
        cdn_pin_fingerprint_hex(x, fp, sizeof(fp));
    }
    char sn[300];
    snprintf(sn, sizeof(sn), "%s", sni != NULL ? sni : "-");
    sanitize(sn);
    cdn_log_tls_failure("conn=%llu peer=%s sni=%s rule=%s client_auth=%s: %s: reason=%s alert=\"%s\" "
                        "detail=\"%s\" subject=\"%s\" sha256=%s",
                        conn_id, peer != NULL ? peer : "-", sn,
                        cdn_sni_rule_name(cdn_sni_of(ssl), rule, sizeof(rule)), level_name(level), what,
                        cdn_stats_tls_failure_name(reason), cdn_tls_alert_name(v != NULL ? v->alert : -1), d,
                        subject, fp);
}

bool cdn_ident_handshake_done(struct cdn_stats *st, SSL *ssl, unsigned long long conn_id, const char *peer)
{
    enum cdn_stat r = cdn_ident_log_only_reason(ssl);
    if (r == CDN_STAT__SLOTS)
        return false;
    cdn_stats_inc(st, CDN_STAT_client_certs_log_only);
    const struct cdn_sni_policy *p = cdn_sni_of(ssl);
    const struct cdn_tls_verdict *v = cdn_tls_verdict_of(ssl);
    char detail[300];
    long vr = v != NULL && v->refused != X509_V_OK ? v->refused : SSL_get_verify_result(ssl);
    if (vr == X509_V_ERR_APPLICATION_VERIFICATION && v != NULL && v->pin_reason != NULL)
        snprintf(detail, sizeof(detail), "pin mismatch: %s", v->pin_reason);
    else if (vr != X509_V_OK && SSL_get0_peer_certificate(ssl) != NULL)
        snprintf(detail, sizeof(detail), "certificate verify failed: %s%s", X509_verify_cert_error_string(vr),
                 SSL_session_reused(ssl) ? " (resumed session)" : "");
    else
        snprintf(detail, sizeof(detail), "no certificate");
    log_line(ssl, conn_id, peer, p != NULL ? p->level : CDN_CLIENT_AUTH_REQUIRE,
             "TLS handshake let through (log_only)", r, detail);
    return true;
}

void cdn_ident_log_refused(SSL *ssl, unsigned long long conn_id, const char *peer, int level,
                           enum cdn_stat reason, const char *detail)
{
    log_line(ssl, conn_id, peer, level, "TLS handshake failed", reason, detail);
}
