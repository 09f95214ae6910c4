/*
 * gen: see gen.h. Building a generation reads every certificate, key, CA bundle and CRL the config
 * names; it runs on the main thread (at start and on reload) while workers keep serving the previous
 * generation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "lib/alog.h"
#include "lib/certcheck.h"
#include "lib/gen.h"
#include "lib/log.h"
#include "lib/sni.h"
#include "lib/tls.h"
#include "lib/util.h"

static int64_t asn1_epoch(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* Registers certificate_expiry_seconds series for every certificate (or CRL) of file. */
static void add_expiry_series(struct cdn_gen *g, const char *kind, const char *file)
{
    if (file == NULL)
        return;
    if (strcmp(kind, "crl") == 0) {
        BIO *bio = BIO_new_file(file, "r");
        X509_CRL *crl;
        while (bio != NULL && (crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
            char issuer[256];
            X509_NAME_oneline(X509_CRL_get_issuer(crl), issuer, sizeof(issuer));
            cdn_stats_extra_add(&g->cert_series, CDN_STAT_certificate_expiry_seconds,
                                (const char *const[]){kind, file, issuer},
                                asn1_epoch(X509_CRL_get0_nextUpdate(crl)), true);
            X509_CRL_free(crl);
        }
        BIO_free(bio);
        ERR_clear_error();
        return;
    }
    char *err = NULL;
    STACK_OF(X509) *sk = cdn_tls_load_certs(file, &err);
    free(err);
    for (int i = 0; sk != NULL && i < sk_X509_num(sk); i++) {
        X509 *x = sk_X509_value(sk, i);
        char subject[256];
        X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
        cdn_stats_extra_add(&g->cert_series, CDN_STAT_certificate_expiry_seconds,
                            (const char *const[]){kind, file, subject}, asn1_epoch(X509_get0_notAfter(x)),
                            true);
    }
    sk_X509_pop_free(sk, X509_free);
}

/* Every certificate the node loads is judged like `cdn-node ca-check` does (lib/certcheck.c): errors
 * in a server or client certificate, or in a CA bundle that decides who may connect, refuse the
 * config; an upstream CA bundle (often the system's, with old roots in it) and everything else only
 * warn. */
static int check_one(const struct cdn_gen *g, enum cdn_certcheck_kind kind, const char *file, bool strict,
                     const struct cdn_conf_pos *pos, const char *what, char **err)
{
    if (file == NULL)
        return 0;
    struct cdn_certcheck_opts o;
    cdn_certcheck_opts_init(&o, kind);
    char *e = NULL, *w = NULL;
    int rc = cdn_certcheck_verify_file(file, &o, &e, &w);
    if (w != NULL)
        cdn_log(CDN_LOG_WARN, "%s:%d:%d: %s:\n%s", g->conf->path, pos->line, pos->col, what, w);
    if (rc != 0 && !strict && e != NULL)
        cdn_log(CDN_LOG_WARN, "%s:%d:%d: %s:\n%s", g->conf->path, pos->line, pos->col, what, e);
    if (rc != 0 && strict)
        *err = cdn_xasprintf("%s:%d:%d: %s:\n%s", g->conf->path, pos->line, pos->col, what,
                             e != NULL ? e : "cannot be read");
    free(e);
    free(w);
    return rc != 0 && strict ? -1 : 0;
}

static int check_material(const struct cdn_gen *g, char **err)
{
    const struct cdn_conf *conf = g->conf;
    for (size_t i = 0; i < conf->nlisteners; i++) {
        const struct cdn_conf_listener *l = &conf->listeners[i];
        if (!l->tls)
            continue;
        if (check_one(g, CDN_CERTCHECK_KIND_SERVER, l->certificate, true, &l->pos, "listener certificate",
                      err) != 0 ||
            check_one(g, CDN_CERTCHECK_KIND_CA, l->ca_file, true, &l->pos, "listener ca_file", err) != 0)
            return -1;
    }
    const struct cdn_conf_upstream *u = &conf->upstream;
    if (check_one(g, CDN_CERTCHECK_KIND_CLIENT, u->client_certificate, true, &u->pos,
                  "upstream client_certificate", err) != 0)
        return -1;
    return check_one(g, CDN_CERTCHECK_KIND_CA, u->ca_file, false, &u->pos, "upstream ca_file", err);
}

/* The client context of every named upstream profile (upstreams:), judged like upstream:'s files. */
static int build_profiles(struct cdn_gen *g, const struct cdn_conf *conf, char **err)
{
    g->profile_ctx = cdn_xcalloc(conf->nupstreams ? conf->nupstreams : 1, sizeof(*g->profile_ctx));
    g->nprofiles = conf->nupstreams;
    for (size_t i = 0; i < conf->nupstreams; i++) {
        const struct cdn_conf_upstream *u = &conf->upstreams[i];
        char *e = NULL, *what = cdn_xasprintf("upstreams[%zu] (%s) client_certificate", i, u->name);
        int rc = check_one(g, CDN_CERTCHECK_KIND_CLIENT, u->client_certificate, true, &u->pos, what, err);
        free(what);
        what = cdn_xasprintf("upstreams[%zu] (%s) ca_file", i, u->name);
        if (rc == 0)
            rc = check_one(g, CDN_CERTCHECK_KIND_CA, u->ca_file, false, &u->pos, what, err);
        free(what);
        if (rc != 0)
            return -1;
        g->profile_ctx[i] = cdn_tls_client_ctx_new(u, &e);
        if (g->profile_ctx[i] == NULL) {
            *err = cdn_xasprintf("%s:%d:%d: upstreams[%zu] (%s): %s", conf->path, u->pos.line, u->pos.col, i,
                                 u->name, e);
            free(e);
            return -1;
        }
        add_expiry_series(g, "client", u->client_certificate);
        add_expiry_series(g, "ca", u->ca_file);
        add_expiry_series(g, "crl", u->crl_file);
    }
    return 0;
}

static bool remap_needs_tls(const struct cdn_remap *r)
{
    for (size_t i = 0; i < r->nrules; i++) {
        if (r->rules[i].to.tls)
            return true;
    }
    return false;
}

static void gen_free(struct cdn_gen *g)
{
    for (size_t i = 0; g->listeners != NULL && i < g->nlisteners; i++)
        SSL_CTX_free(g->listeners[i].ctx);
    SSL_CTX_free(g->upstream_ctx);
    for (size_t i = 0; i < g->nprofiles; i++)
        SSL_CTX_free(g->profile_ctx[i]);
    free(g->profile_ctx);
    free(g->listeners);
    free(g->cache_name);
    free(g->via);
    cdn_stats_extra_dispose(&g->cert_series);
    cdn_alog_free(&g->alog);
    cdn_remap_free(&g->remap);
    cdn_ugroups_free(&g->ugroups);
    cdn_gen_files_free(g->files, g->nfiles);
    cdn_conf_free(&g->conf);
    free(g);
}

static int build(struct cdn_gen *g, char **err)
{
    const struct cdn_conf *conf = g->conf;
    const struct cdn_server_policy *policy = &g->policy;
    g->via = cdn_xstrdup(conf->via != NULL ? conf->via : "cdn-node");
    g->limits.max_head_size = conf->limits.max_header_size;
    g->limits.max_headers = conf->limits.max_headers;
    g->nlisteners = conf->nlisteners + (conf->admin.port >= 0 ? 1 : 0);
    g->listeners = cdn_xcalloc(g->nlisteners > 0 ? g->nlisteners : 1, sizeof(*g->listeners));
    cache_policy_cfg_defaults(&g->cache_policy);
    g->cache_key_rules.ignore_query = conf->cache.ignore_query;
    g->cache_key_rules.ignore_params = conf->cache.ignore_params;
    g->cache_key_rules.nignore_params = conf->cache.nignore_params;
    g->cache_name = conf->cache.name != NULL ? cdn_xstrdup(conf->cache.name)
                                             : cdn_xasprintf("cdn-node-%s", policy->role_name);
    cdn_gen_conf_files(conf, &g->files, &g->nfiles);
    char *ae = NULL;
    if (cdn_alog_compile(conf->log.access_format != NULL ? conf->log.access_format : CDN_ALOG_DEFAULT,
                         &g->alog, &ae) != 0) {
        *err = cdn_xasprintf("%s: log.access_format: %s", conf->path, ae);
        free(ae);
        return -1;
    }
    if (cdn_remap_new(conf, &g->remap, err) != 0)
        return -1;
    g->ugroups = cdn_ugroups_new(conf); /* health starts afresh with each generation (docs/TIERING.md) */
    if (conf->admin.port >= 0) {        /* the last listener; plain, never reachable through remap */
        struct cdn_listener_rt *l = &g->listeners[g->nlisteners - 1];
        g->admin_conf.name = (char *)"admin";
        g->admin_conf.address = conf->admin.address != NULL ? conf->admin.address : (char *)"127.0.0.1";
        g->admin_conf.port = conf->admin.port;
        g->admin_conf.pos = conf->admin.pos;
        l->conf = &g->admin_conf;
        l->admin = true;
        l->client_auth = CDN_CLIENT_AUTH_NONE;
        if (conf->admin.tls) {
            g->admin_conf.tls = true;
            g->admin_conf.certificate = conf->admin.certificate;
            g->admin_conf.key = conf->admin.key;
            g->admin_conf.ca_file = conf->admin.ca_file;
            g->admin_conf.verify_depth = 4;
            g->admin_conf.send_ca_names = true;
            l->client_auth = conf->admin.client_auth;
            char *e = NULL;
            l->ctx = cdn_tls_server_ctx_new(conf->admin.certificate, conf->admin.key, l->client_auth,
                                            conf->admin.ca_file, &e);
            if (l->ctx != NULL && cdn_tls_server_ctx_policy(l->ctx, &g->admin_conf, &e) != 0) {
                SSL_CTX_free(l->ctx);
                l->ctx = NULL;
            }
            if (l->ctx == NULL) {
                *err = cdn_xasprintf("%s:%d:%d: admin: %s", conf->path, conf->admin.pos.line,
                                     conf->admin.pos.col, e);
                free(e);
                return -1;
            }
            add_expiry_series(g, "server", conf->admin.certificate);
            add_expiry_series(g, "ca", conf->admin.ca_file);
        }
    }
    for (size_t i = 0; i < conf->nlisteners; i++) {
        struct cdn_listener_rt *l = &g->listeners[i];
        const struct cdn_conf_listener *lc = &conf->listeners[i];
        l->conf = lc;
        l->client_auth =
            lc->client_auth != CDN_CLIENT_AUTH_UNSET ? lc->client_auth : policy->default_client_auth;
        if (!lc->tls) {
            if (l->client_auth != CDN_CLIENT_AUTH_NONE) {
                *err = cdn_xasprintf("%s:%d:%d: listener %s: client_auth %s needs tls: true", conf->path,
                                     lc->pos.line, lc->pos.col, lc->name,
                                     cdn_conf_client_auth_name(l->client_auth));
                return -1;
            }
            continue;
        }
        char *e = NULL;
        l->ctx = cdn_tls_server_ctx_new(lc->certificate, lc->key, l->client_auth, lc->ca_file, &e);
        if (l->ctx != NULL && (cdn_tls_server_ctx_policy(l->ctx, lc, &e) != 0 ||
                               cdn_sni_attach(l->ctx, conf, lc, l->client_auth, &l->sni, &e) != 0)) {
            SSL_CTX_free(l->ctx);
            l->ctx = NULL;
        }
        if (l->ctx == NULL) {
            *err = cdn_xasprintf("%s:%d:%d: listener %s: %s", conf->path, lc->pos.line, lc->pos.col, lc->name,
                                 e);
            free(e);
            return -1;
        }
    }
    for (size_t i = 0; i < conf->nlisteners; i++) {
        const struct cdn_conf_listener *lc = &conf->listeners[i];
        if (!lc->tls)
            continue;
        add_expiry_series(g, "server", lc->certificate);
        add_expiry_series(g, "ca", lc->ca_file);
        add_expiry_series(g, "crl", lc->crl_file);
    }
    for (size_t i = 0; i < conf->nsni; i++) {
        add_expiry_series(g, "server", conf->sni[i].certificate);
        add_expiry_series(g, "ca", conf->sni[i].ca_file);
        add_expiry_series(g, "crl", conf->sni[i].crl_file);
    }
    if (remap_needs_tls(g->remap) || conf->tunnel.nroutes > 0) { /* tunnel peers use it too */
        add_expiry_series(g, "client", conf->upstream.client_certificate);
        add_expiry_series(g, "ca", conf->upstream.ca_file);
        add_expiry_series(g, "crl", conf->upstream.crl_file);
        char *e = NULL;
        g->upstream_ctx = cdn_tls_client_ctx_new(&conf->upstream, &e);
        if (g->upstream_ctx == NULL) {
            *err = cdn_xasprintf("%s:%d:%d: upstream: %s", conf->path, conf->upstream.pos.line,
                                 conf->upstream.pos.col, e);
            free(e);
            return -1;
        }
    }
    return check_material(g, err) != 0 || build_profiles(g, conf, err) != 0 ? -1 : 0;
}

int cdn_gen_new(struct cdn_conf **conf, const struct cdn_server_policy *policy, struct cdn_gen **out,
                char **err)
{
    struct cdn_gen *g = cdn_xcalloc(1, sizeof(*g));
    atomic_init(&g->refs, 1);
    g->id = 1;
    g->conf = *conf;
    *conf = NULL;
    g->policy = *policy;
    cdn_stats_extra_init(&g->cert_series);
    if (build(g, err) != 0) {
        gen_free(g);
        *out = NULL;
        return -1;
    }
    *out = g;
    return 0;
}

struct cdn_gen *cdn_gen_ref(struct cdn_gen *g)
{
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    return g;
}

void cdn_gen_unref(struct cdn_gen **gp)
{
    struct cdn_gen *g = *gp;
    *gp = NULL;
    if (g != NULL && atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1)
        gen_free(g);
}

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Appends "what" to the list of differences. */
static void differs(char **err, const char *what)
{
    char *prev = *err;
    *err = prev == NULL ? cdn_xasprintf("these settings need a restart: %s", what)
                        : cdn_xasprintf("%s, %s", prev, what);
    free(prev);
}

int cdn_gen_compatible(const struct cdn_gen *cur, const struct cdn_gen *next, char **err)
{
    const struct cdn_conf *a = cur->conf, *b = next->conf;
    *err = NULL;
    if (a->role != b->role)
        differs(err, "role");
    if (a->workers != b->workers)
        differs(err, "workers");
    if (a->nlisteners != b->nlisteners) {
        differs(err, "the number of listeners");
    } else {
        for (size_t i = 0; i < a->nlisteners; i++) {
            const struct cdn_conf_listener *x = &a->listeners[i], *y = &b->listeners[i];
            if (!str_eq(x->name, y->name) || !str_eq(x->address, y->address) || x->port != y->port ||
                x->tls != y->tls) {
                char *w = cdn_xasprintf("listener %s (name, address, port or tls)", x->name);
                differs(err, w);
                free(w);
            }
        }
    }
    if (a->admin.port != b->admin.port || !str_eq(a->admin.address, b->admin.address) ||
        a->admin.tls != b->admin.tls)
        differs(err, "admin.address/port/tls");
    if (!str_eq(a->user, b->user) || !str_eq(a->group, b->group))
        differs(err, "user/group");
    if (!str_eq(a->cache.path, b->cache.path) || a->cache.size != b->cache.size)
        differs(err, "cache.path/size");
    if (!str_eq(a->log.error, b->log.error) || !str_eq(a->log.access, b->log.access) ||
        !str_eq(a->log.tls_failures, b->log.tls_failures))
        differs(err, "log.error/access/tls_failures");
    if (*err != NULL) {
        char *e = *err;
        *err = cdn_xasprintf("%s: %s (the running configuration stays)", b->path, e);
        free(e);
        return -1;
    }
    return 0;
}

static void add_file(char ***files, size_t *n, const char *path)
{
    if (path == NULL || strcmp(path, "-") == 0)
        return;
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*files)[i], path) == 0)
            return;
    }
    *files = cdn_xrealloc(*files, (*n + 1) * sizeof(char *));
    (*files)[(*n)++] = cdn_xstrdup(path);
}

void cdn_gen_conf_files(const struct cdn_conf *conf, char ***files, size_t *n)
{
    *files = NULL;
    *n = 0;
    add_file(files, n, conf->path);
    for (size_t i = 0; i < conf->nlisteners; i++) {
        const struct cdn_conf_listener *l = &conf->listeners[i];
        if (!l->tls)
            continue;
        add_file(files, n, l->certificate);
        add_file(files, n, l->key);
        add_file(files, n, l->ca_file);
        add_file(files, n, l->crl_file);
    }
    for (size_t i = 0; i < conf->nsni; i++) {
        const struct cdn_conf_sni_rule *r = &conf->sni[i];
        add_file(files, n, r->certificate);
        add_file(files, n, r->key);
        add_file(files, n, r->ca_file);
        add_file(files, n, r->crl_file);
    }
    if (conf->admin.tls) {
        add_file(files, n, conf->admin.certificate);
        add_file(files, n, conf->admin.key);
        add_file(files, n, conf->admin.ca_file);
    }
    add_file(files, n, conf->sni_yaml);
    add_file(files, n, conf->upstream.client_certificate);
    add_file(files, n, conf->upstream.client_key);
    add_file(files, n, conf->upstream.ca_file);
    add_file(files, n, conf->upstream.crl_file);
    for (size_t i = 0; i < conf->nupstreams; i++) {
        const struct cdn_conf_upstream *u = &conf->upstreams[i];
        add_file(files, n, u->client_certificate);
        add_file(files, n, u->client_key);
        add_file(files, n, u->ca_file);
        add_file(files, n, u->crl_file);
    }
}

void cdn_gen_files_free(char **files, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(files[i]);
    free(files);
}
