/*
 * sni: see sni.h. The ClientHello callback runs before OpenSSL has looked at the server_name extension
 * (SSL_get_servername is not set yet), so the name is read from the raw extension. Everything it selects
 * is read-only after cdn_sni_attach: workers share the tables.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>

#include "lib/certcheck.h"
#include "lib/log.h"
#include "lib/sni.h"
#include "lib/tls.h"
#include "lib/util.h"

static int ctx_index = -1, ssl_index = -1;
static pthread_once_t index_once = PTHREAD_ONCE_INIT;

static void table_free(struct cdn_sni *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nrules; i++)
        SSL_CTX_free(t->rules[i].ctx);
    free(t->rules);
    free(t->fqdns);
    free(t);
}

static void ctx_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    table_free(ptr);
}

static void index_init(void)
{
    ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, ctx_ex_free);
    ssl_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* ---- matching (pure) ---- */

long cdn_sni_match_index(const char *const *fqdns, size_t n, const char *name, size_t len)
{
    if (name == NULL)
        len = 0;
    if (len > 0 && name[len - 1] == '.')
        len--; /* "example.com." is example.com */
    if (len > 0 && len < 64) {
        /* An address is no server name (RFC 6066 3): a Host of 10.0.0.5 is a client that sends no SNI. */
        char tmp[64];
        unsigned char addr[16];
        memcpy(tmp, name, len);
        tmp[len] = '\0';
        if (inet_pton(AF_INET, tmp, addr) == 1 || inet_pton(AF_INET6, tmp, addr) == 1)
            len = 0;
    }
    long best = -1;
    size_t best_len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *f = fqdns[i];
        size_t flen = strlen(f);
        if (len == 0 || flen == 0) {
            if (len == 0 && flen == 0)
                return (long)i;
            continue;
        }
        if (f[0] == '*' && f[1] == '.') {
            /* "*.example.com": a non-empty prefix, then ".example.com" */
            size_t slen = flen - 1; /* ".example.com" */
            if (len > slen && strncasecmp(name + len - slen, f + 1, slen) == 0 && slen > best_len) {
                best = (long)i;
                best_len = slen;
            }
        } else if (flen == len && strncasecmp(name, f, len) == 0) {
            return (long)i;
        }
    }
    return best;
}

const struct cdn_sni_policy *cdn_sni_match(const struct cdn_sni *t, const char *name, size_t len)
{
    long i = cdn_sni_match_index(t->fqdns, t->nrules, name, len);
    return i >= 0 ? &t->rules[i] : &t->dflt;
}

static bool same_file(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

bool cdn_sni_policy_covers(const struct cdn_sni_policy *conn, bool had_cert,
                           const struct cdn_sni_policy *host)
{
    if (conn == host || host->level == CDN_CLIENT_AUTH_NONE)
        return true;
    int level = conn->log_only ? CDN_CLIENT_AUTH_NONE : conn->level;
    if (had_cert)
        level = CDN_CLIENT_AUTH_REQUIRE; /* a certificate was sent and verified */
    if (host->level > level)
        return false;
    return same_file(conn->ca_file, host->ca_file) && same_file(conn->crl_file, host->crl_file) &&
           (host->pins == NULL || host->pins == conn->pins);
}

const char *cdn_sni_host_name(const char *host, size_t host_len, size_t *len)
{
    if (host_len > 0 && host[0] == '[') {
        const char *end = memchr(host, ']', host_len);
        *len = end != NULL ? (size_t)(end - host - 1) : host_len - 1;
        return host + 1;
    }
    const char *colon = memchr(host, ':', host_len);
    *len = colon != NULL ? (size_t)(colon - host) : host_len;
    return host;
}

static const char *level_name(int level)
{
    return level == CDN_CLIENT_AUTH_REQUIRE   ? "STRICT"
           : level == CDN_CLIENT_AUTH_REQUEST ? "MODERATE"
                                              : "NONE";
}

const char *cdn_sni_rule_name(const struct cdn_sni_policy *p, char *buf, size_t n)
{
    if (p == NULL || p->fqdn == NULL)
        return "-";
    snprintf(buf, n, "'%s'", p->fqdn);
    return buf;
}

/* ---- the handshake ---- */

/* The host_name of a server_name extension (RFC 6066 3). 0 (*name NULL when there is none), or -1 when
 * the extension is malformed. */
static int parse_server_name(const unsigned char *p, size_t len, const char **name, size_t *nlen)
{
    *name = NULL;
    *nlen = 0;
    if (len < 2 || (size_t)((p[0] << 8) | p[1]) != len - 2)
        return -1;
    p += 2;
    len -= 2;
    while (len > 0) {
        if (len < 3)
            return -1;
        unsigned type = p[0];
        size_t l = (size_t)((p[1] << 8) | p[2]);
        if (len - 3 < l)
            return -1;
        if (type == TLSEXT_NAMETYPE_host_name && *name == NULL) {
            if (l == 0 || l > 255 || memchr(p + 3, '\0', l) != NULL)
                return -1;
            *name = (const char *)p + 3;
            *nlen = l;
        }
        p += 3 + l;
        len -= 3 + l;
    }
    return 0;
}

static int client_hello_cb(SSL *ssl, int *al, void *arg)
{
    const struct cdn_sni *t = arg;
    const unsigned char *ext;
    size_t ext_len;
    const char *name = NULL;
    size_t nlen = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &ext_len) == 1 &&
        parse_server_name(ext, ext_len, &name, &nlen) != 0) {
        *al = SSL_AD_DECODE_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    const struct cdn_sni_policy *p = cdn_sni_match(t, name, nlen);
    SSL_set_ex_data(ssl, ssl_index, (void *)p);
    if (p->ctx != NULL)
        cdn_tls_server_switch_ctx(ssl, p->ctx, p->sid_ctx);
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* One line per handshake we refuse with a fatal alert, naming the rule it was refused under. */
static void info_cb(const SSL *ssl, int where, int ret)
{
    cdn_tls_note_alert(ssl, where, ret);
    /* with log.tls_failures the structured line there carries the alert; this one would be a second */
    if (!(where & SSL_CB_WRITE_ALERT) || (ret >> 8) != SSL3_AL_FATAL || SSL_is_init_finished(ssl) ||
        cdn_log_tls_failures_separate())
        return;
    const struct cdn_sni_policy *p = cdn_sni_of(ssl);
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    char rb[300];
    cdn_log(CDN_LOG_INFO, "tls: sni=%s rule=%s verify_client=%s: handshake refused: alert %s",
            sni != NULL ? sni : "-", cdn_sni_rule_name(p, rb, sizeof(rb)),
            p != NULL ? level_name(p->level) : "-", cdn_tls_alert_name(ret & 0xff));
}

const struct cdn_sni_policy *cdn_sni_of(const SSL *ssl)
{
    pthread_once(&index_once, index_init);
    return ssl != NULL ? SSL_get_ex_data(ssl, ssl_index) : NULL;
}

int cdn_sni_check_host(const struct cdn_sni *t, SSL *ssl, const char *host, size_t host_len,
                       unsigned long long conn_id, const char *peer)
{
    bool cert = SSL_get0_peer_certificate(ssl) != NULL;
    return cdn_sni_check_host_policy(t, cdn_sni_of(ssl), cert && SSL_get_verify_result(ssl) == X509_V_OK,
                                     cert, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name), host, host_len,
                                     conn_id, peer);
}

int cdn_sni_check_host_policy(const struct cdn_sni *t, const struct cdn_sni_policy *conn, bool verified,
                              bool cert, const char *sni, const char *host, size_t host_len,
                              unsigned long long conn_id, const char *peer)
{
    if (t == NULL || conn == NULL || host == NULL)
        return 0;
    size_t nlen;
    const char *name = cdn_sni_host_name(host, host_len, &nlen);
    const struct cdn_sni_policy *hp = cdn_sni_match(t, name, nlen);
    if (nlen == 0 || cdn_sni_policy_covers(conn, verified, hp))
        return 0;
    char cb[300], hb[300];
    bool enforce = t->host_sni_policy == CDN_HOST_SNI_ENFORCE;
    cdn_log(
        CDN_LOG_INFO,
        "conn=%llu peer=%s sni=%s rule=%s: Host %.*s maps to rule %s (verify_client=%s), stricter than the "
        "connection's (verify_client=%s%s): %s",
        conn_id, peer != NULL ? peer : "-", sni != NULL ? sni : "-", cdn_sni_rule_name(conn, cb, sizeof(cb)),
        (int)(nlen > 255 ? 255 : nlen), name, cdn_sni_rule_name(hp, hb, sizeof(hb)), level_name(hp->level),
        level_name(conn->level), cert ? ", certificate sent" : ", no certificate",
        enforce ? "421 Misdirected Request" : "allowed (host_sni_policy: permissive)");
    return enforce ? 421 : 0;
}

static const char *rule_src(const struct cdn_conf_sni_rule *r, const struct cdn_conf *conf)
{
    return r->src != NULL ? r->src : conf->path != NULL ? conf->path : "-";
}

/* Judges a rule's own file like the listener's (lib/certcheck.h): errors refuse the config, warnings
 * are logged. */
static int check_file(enum cdn_certcheck_kind kind, const char *file, size_t i,
                      const struct cdn_conf_sni_rule *r, const struct cdn_conf *conf, const char *what,
                      char **err)
{
    if (file == NULL)
        return 0;
    struct cdn_certcheck_opts o;
    cdn_certcheck_opts_init(&o, kind);
    char *e = NULL, *w = NULL;
    int rc = cdn_certcheck_verify_file(file, &o, &e, &w);
    if (w != NULL)
        cdn_log(CDN_LOG_WARN, "sni[%zu] (fqdn '%s') at %s:%d:%d: %s:\n%s", i, r->fqdn, rule_src(r, conf),
                r->pos.line, r->pos.col, what, w);
    if (rc != 0)
        *err = cdn_xasprintf("sni[%zu] (fqdn '%s') at %s:%d:%d: %s:\n%s", i, r->fqdn, rule_src(r, conf),
                             r->pos.line, r->pos.col, what, e != NULL ? e : "cannot be read");
    free(e);
    free(w);
    return rc != 0 ? -1 : 0;
}

static void fill_policy(struct cdn_sni_policy *p, int level, const struct cdn_conf_listener *l,
                        const void *pins)
{
    p->level = level;
    p->ca_file = level != CDN_CLIENT_AUTH_NONE ? l->ca_file : NULL;
    p->crl_file = level != CDN_CLIENT_AUTH_NONE ? l->crl_file : NULL;
    p->pins = level != CDN_CLIENT_AUTH_NONE ? pins : NULL;
}

static bool has_pins(const struct cdn_conf_strlist *sans, const struct cdn_conf_strlist *fps)
{
    return sans->n > 0 || fps->n > 0;
}

int cdn_sni_attach(SSL_CTX *ctx, const struct cdn_conf *conf, const struct cdn_conf_listener *lc,
                   int client_auth, const struct cdn_sni **out, char **err)
{
    pthread_once(&index_once, index_init);
    *out = NULL;
    if (conf->nsni == 0)
        return 0;
    struct cdn_sni *t = cdn_xcalloc(1, sizeof(*t));
    t->host_sni_policy = conf->host_sni_policy;
    fill_policy(&t->dflt, client_auth, lc,
                has_pins(&lc->allowed_sans, &lc->allowed_fingerprints) ? (const void *)lc : NULL);
    t->rules = cdn_xcalloc(conf->nsni, sizeof(*t->rules));
    t->fqdns = cdn_xcalloc(conf->nsni, sizeof(*t->fqdns));
    for (size_t i = 0; i < conf->nsni; i++) {
        const struct cdn_conf_sni_rule *r = &conf->sni[i];
        struct cdn_sni_policy *p = &t->rules[i];
        p->fqdn = r->fqdn;
        p->index = i;
        t->fqdns[i] = r->fqdn;
        t->nrules = i + 1;
        int level = r->verify_client != CDN_CLIENT_AUTH_UNSET ? r->verify_client : client_auth;
        struct cdn_conf_listener rl = *lc; /* the listener's policy with the rule's files */
        rl.ca_file = r->ca_file != NULL ? r->ca_file : lc->ca_file;
        rl.crl_file = r->crl_file != NULL ? r->crl_file : (r->ca_file != NULL ? NULL : lc->crl_file);
        const void *pins = NULL; /* like the CRL: the rule's, else the listener's with its CA bundle */
        if (has_pins(&r->allowed_sans, &r->allowed_fingerprints)) {
            rl.allowed_sans = r->allowed_sans;
            rl.allowed_fingerprints = r->allowed_fingerprints;
            pins = r;
        } else if (r->ca_file != NULL) {
            rl.allowed_sans = (struct cdn_conf_strlist){0};
            rl.allowed_fingerprints = (struct cdn_conf_strlist){0};
        } else if (has_pins(&lc->allowed_sans, &lc->allowed_fingerprints)) {
            pins = lc;
        }
        if (level == CDN_CLIENT_AUTH_NONE) { /* nothing asked for: nothing to pin */
            rl.allowed_sans = (struct cdn_conf_strlist){0};
            rl.allowed_fingerprints = (struct cdn_conf_strlist){0};
        }
        fill_policy(p, level, &rl, pins);
        p->log_only = r->log_only;
        if (level == CDN_CLIENT_AUTH_NONE &&
            (r->log_only || has_pins(&r->allowed_sans, &r->allowed_fingerprints))) {
            *err =
                cdn_xasprintf("sni[%zu] (fqdn '%s') at %s:%d:%d: %s needs verify_client MODERATE or STRICT",
                              i, r->fqdn, rule_src(r, conf), r->pos.line, r->pos.col,
                              r->log_only ? "log_only" : "allowed_sans/allowed_fingerprints");
            goto fail;
        }
        snprintf(p->sid_ctx, sizeof(p->sid_ctx), "cdn/sni/%zu", i);
        if (level != CDN_CLIENT_AUTH_NONE && rl.ca_file == NULL) {
            *err = cdn_xasprintf(
                "sni[%zu] (fqdn '%s') at %s:%d:%d: verify_client %s needs verify_client_ca_certs "
                "(the listener has no ca_file)",
                i, r->fqdn, rule_src(r, conf), r->pos.line, r->pos.col,
                level == CDN_CLIENT_AUTH_REQUIRE ? "STRICT" : "MODERATE");
            goto fail;
        }
        if (check_file(CDN_CERTCHECK_KIND_CA, r->ca_file, i, r, conf, "verify_client_ca_certs", err) != 0 ||
            check_file(CDN_CERTCHECK_KIND_SERVER, r->certificate, i, r, conf, "certificate", err) != 0)
            goto fail;
        char *e = NULL;
        p->ctx = cdn_tls_server_ctx_new(r->certificate != NULL ? r->certificate : lc->certificate,
                                        r->key != NULL ? r->key : lc->key, level, rl.ca_file, &e);
        if (p->ctx != NULL && cdn_tls_server_ctx_policy(p->ctx, &rl, &e) != 0) {
            SSL_CTX_free(p->ctx);
            p->ctx = NULL;
        }
        if (p->ctx == NULL) {
            *err = cdn_xasprintf("sni[%zu] (fqdn '%s') at %s:%d:%d: %s", i, r->fqdn, rule_src(r, conf),
                                 r->pos.line, r->pos.col, e);
            free(e);
            goto fail;
        }
        if (r->log_only)
            cdn_tls_server_ctx_log_only(p->ctx);
        SSL_CTX_set_info_callback(p->ctx, info_cb);
    }
    SSL_CTX_set_ex_data(ctx, ctx_index, t); /* owned by ctx from here */
    SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, t);
    SSL_CTX_set_info_callback(ctx, info_cb);
    *out = t;
    return 0;
fail:
    table_free(t);
    return -1;
}
