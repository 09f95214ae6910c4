/*
 * server: see server.h. Sockets are created and bound in the main thread before any worker starts,
 * so "address in use" or a bad certificate is reported before the node claims to be ready; the
 * ports file is written only after that (tests and `make run` treat it as the readiness signal).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "lib/certcheck.h"
#include "lib/collapse.h"
#include "lib/log.h"
#include "lib/pool.h"
#include "lib/proxy.h"
#include "lib/proxy_int.h"
#include "lib/server.h"
#include "lib/sni.h"
#include "lib/tls.h"
#include "lib/util.h"

static int make_addr(const char *address, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(address, port, (struct sockaddr_in *)ss) == 0) {
        *len = sizeof(struct sockaddr_in);
        return 0;
    }
    if (uv_ip6_addr(address, port, (struct sockaddr_in6 *)ss) == 0) {
        *len = sizeof(struct sockaddr_in6);
        return 0;
    }
    return -1;
}

static int bind_socket(const struct sockaddr_storage *ss, socklen_t len, bool reuseport, bool do_listen)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        goto fail;
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, len) != 0)
        goto fail;
    if (do_listen && listen(fd, 511) != 0)
        goto fail;
    return fd;
fail : {
    int e = errno;
    close(fd);
    return -e;
}
}

static int bind_listener(struct cdn_server *s, size_t li, char **err)
{
    struct cdn_listener_rt *l = &s->listeners[li];
    struct sockaddr_storage ss;
    socklen_t len;
    if (make_addr(l->conf->address, l->conf->port, &ss, &len) != 0) {
        *err = cdn_xasprintf("%s:%d:%d: listener %s: bad address %s", s->conf->path, l->conf->pos.line,
                             l->conf->pos.col, l->conf->name, l->conf->address);
        return -1;
    }
    /* A probe without SO_REUSEPORT fails if anything already listens there (another node included),
     * and resolves port 0 to one port that every worker then shares. */
    int probe = bind_socket(&ss, len, false, false);
    if (probe < 0) {
        *err =
            cdn_xasprintf("%s:%d:%d: listener %s: cannot bind %s:%d: %s", s->conf->path, l->conf->pos.line,
                          l->conf->pos.col, l->conf->name, l->conf->address, l->conf->port, strerror(-probe));
        return -1;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    getsockname(probe, (struct sockaddr *)&bound, &blen);
    l->port = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                               : ((struct sockaddr_in6 *)&bound)->sin6_port);
    close(probe);
    make_addr(l->conf->address, l->port, &ss, &len);
    for (unsigned w = 0; w < s->nworkers; w++) {
        int fd = bind_socket(&ss, len, true, true);
        if (fd < 0) {
            *err = cdn_xasprintf("%s:%d:%d: listener %s: cannot listen on %s:%d: %s", s->conf->path,
                                 l->conf->pos.line, l->conf->pos.col, l->conf->name, l->conf->address,
                                 l->port, strerror(-fd));
            return -1;
        }
        s->fds[w * s->nlisteners + li] = fd;
    }
    return 0;
}

static void admin_collect(void *ctx, struct cdn_stats *sum, struct cdn_stats_extra *extra);
static bool admin_ready(void *ctx);
static int admin_purge(void *ctx, const char *url, size_t len);

static int64_t asn1_epoch(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* Registers certificate_expiry_seconds series for every certificate (or CRL) of file. */
static void add_expiry_series(struct cdn_server *s, const char *kind, const char *file)
{
    if (file == NULL)
        return;
    if (strcmp(kind, "crl") == 0) {
        BIO *bio = BIO_new_file(file, "r");
        X509_CRL *crl;
        while (bio != NULL && (crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL) {
            char issuer[256];
            X509_NAME_oneline(X509_CRL_get_issuer(crl), issuer, sizeof(issuer));
            cdn_stats_extra_add(&s->cert_series, CDN_STAT_certificate_expiry_seconds,
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
        cdn_stats_extra_add(&s->cert_series, CDN_STAT_certificate_expiry_seconds,
                            (const char *const[]){kind, file, subject}, asn1_epoch(X509_get0_notAfter(x)),
                            true);
    }
    sk_X509_pop_free(sk, X509_free);
}

/* Every certificate the node loads is judged like `cdn-node ca-check` does (lib/certcheck.c): errors
 * in a server or client certificate, or in a CA bundle that decides who may connect, refuse the
 * config; an upstream CA bundle (often the system's, with old roots in it) and everything else only
 * warn. */
static int check_one(const struct cdn_server *s, enum cdn_certcheck_kind kind, const char *file, bool strict,
                     const struct cdn_conf_pos *pos, const char *what, char **err)
{
    if (file == NULL)
        return 0;
    struct cdn_certcheck_opts o;
    cdn_certcheck_opts_init(&o, kind);
    char *e = NULL, *w = NULL;
    int rc = cdn_certcheck_verify_file(file, &o, &e, &w);
    if (w != NULL)
        cdn_log(CDN_LOG_WARN, "%s:%d:%d: %s:\n%s", s->conf->path, pos->line, pos->col, what, w);
    if (rc != 0 && !strict && e != NULL)
        cdn_log(CDN_LOG_WARN, "%s:%d:%d: %s:\n%s", s->conf->path, pos->line, pos->col, what, e);
    if (rc != 0 && strict)
        *err = cdn_xasprintf("%s:%d:%d: %s:\n%s", s->conf->path, pos->line, pos->col, what,
                             e != NULL ? e : "cannot be read");
    free(e);
    free(w);
    return rc != 0 && strict ? -1 : 0;
}

static int check_material(const struct cdn_server *s, char **err)
{
    const struct cdn_conf *conf = s->conf;
    for (size_t i = 0; i < conf->nlisteners; i++) {
        const struct cdn_conf_listener *l = &conf->listeners[i];
        if (!l->tls)
            continue;
        if (check_one(s, CDN_CERTCHECK_KIND_SERVER, l->certificate, true, &l->pos, "listener certificate",
                      err) != 0 ||
            check_one(s, CDN_CERTCHECK_KIND_CA, l->ca_file, true, &l->pos, "listener ca_file", err) != 0)
            return -1;
    }
    const struct cdn_conf_upstream *u = &conf->upstream;
    if (check_one(s, CDN_CERTCHECK_KIND_CLIENT, u->client_certificate, true, &u->pos,
                  "upstream client_certificate", err) != 0)
        return -1;
    return check_one(s, CDN_CERTCHECK_KIND_CA, u->ca_file, false, &u->pos, "upstream ca_file", err);
}

static bool remap_needs_tls(const struct cdn_remap *r)
{
    for (size_t i = 0; i < r->nrules; i++) {
        if (r->rules[i].to.tls)
            return true;
    }
    return false;
}

int cdn_server_init(struct cdn_server *s, struct cdn_conf *conf, const struct cdn_server_policy *policy,
                    char **err)
{
    memset(s, 0, sizeof(*s));
    cdn_stats_extra_init(&s->cert_series);
    s->conf = conf;
    s->policy = *policy;
    s->via = cdn_xstrdup(conf->via != NULL ? conf->via : "cdn-node");
    s->limits.max_head_size = conf->limits.max_header_size;
    s->limits.max_headers = conf->limits.max_headers;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    s->nworkers = conf->workers != 0 ? conf->workers : (unsigned)(ncpu > 0 ? ncpu : 1);
    s->nlisteners = conf->nlisteners + (conf->admin.port >= 0 ? 1 : 0);
    s->listeners = cdn_xcalloc(s->nlisteners, sizeof(*s->listeners));
    s->fds = cdn_xcalloc((size_t)s->nworkers * s->nlisteners, sizeof(int));
    for (size_t i = 0; i < (size_t)s->nworkers * s->nlisteners; i++)
        s->fds[i] = -1;

    cache_policy_cfg_defaults(&s->cache_policy);
    s->cache_key_rules.ignore_query = conf->cache.ignore_query;
    s->cache_key_rules.ignore_params = conf->cache.ignore_params;
    s->cache_key_rules.nignore_params = conf->cache.nignore_params;
    s->collapse = cdn_collapse_new();
    s->admin_ops = (struct cdn_admin_ops){.ctx = s,
                                          .role = policy->role_name,
                                          .collect = admin_collect,
                                          .ready = admin_ready,
                                          .purge = conf->cache.path != NULL ? admin_purge : NULL};
    s->cache_name = conf->cache.name != NULL ? cdn_xstrdup(conf->cache.name)
                                             : cdn_xasprintf("cdn-node-%s", policy->role_name);
    if (cdn_remap_new(conf, &s->remap, err) != 0)
        return -1;
    if (conf->admin.port >= 0) { /* the last listener; plain, never reachable through remap */
        struct cdn_listener_rt *l = &s->listeners[s->nlisteners - 1];
        s->admin_conf.name = (char *)"admin";
        s->admin_conf.address = conf->admin.address != NULL ? conf->admin.address : (char *)"127.0.0.1";
        s->admin_conf.port = conf->admin.port;
        s->admin_conf.pos = conf->admin.pos;
        l->conf = &s->admin_conf;
        l->admin = true;
        l->client_auth = CDN_CLIENT_AUTH_NONE;
    }
    for (size_t i = 0; i < conf->nlisteners; i++) {
        struct cdn_listener_rt *l = &s->listeners[i];
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
        add_expiry_series(s, "server", lc->certificate);
        add_expiry_series(s, "ca", lc->ca_file);
        add_expiry_series(s, "crl", lc->crl_file);
    }
    for (size_t i = 0; i < conf->nsni; i++) {
        add_expiry_series(s, "server", conf->sni[i].certificate);
        add_expiry_series(s, "ca", conf->sni[i].ca_file);
        add_expiry_series(s, "crl", conf->sni[i].crl_file);
    }
    if (remap_needs_tls(s->remap) || conf->tunnel.nroutes > 0) {
        add_expiry_series(s, "client", conf->upstream.client_certificate);
        add_expiry_series(s, "ca", conf->upstream.ca_file);
    }
    if (remap_needs_tls(s->remap) || conf->tunnel.nroutes > 0) { /* tunnel peers use it too */
        char *e = NULL;
        s->upstream_ctx = cdn_tls_client_ctx_new(&conf->upstream, &e);
        if (s->upstream_ctx == NULL) {
            *err = cdn_xasprintf("%s:%d:%d: upstream: %s", conf->path, conf->upstream.pos.line,
                                 conf->upstream.pos.col, e);
            free(e);
            return -1;
        }
    }
    if (check_material(s, err) != 0)
        return -1;
    return 0;
}

/* ---- admin callbacks: they run on the worker serving the admin request ---- */

static void admin_collect(void *ctx, struct cdn_stats *sum, struct cdn_stats_extra *extra)
{
    struct cdn_server *s = ctx;
    for (unsigned i = 0; i < s->nworkers; i++)
        cdn_stats_accumulate(sum, &s->workers[i].stats);
    cdn_stats_set(sum, CDN_STAT_start_time_seconds, (uint64_t)s->start_time);
    cdn_stats_set(sum, CDN_STAT_reload_last_success, 1); /* no reload has failed (none ran yet) */
    cdn_stats_extra_copy(extra, &s->cert_series);
    if (s->store != NULL) {
        struct cache_store_stats st;
        cache_store_stats(s->store, &st);
        cdn_stats_set(sum, CDN_STAT_cache_objects, st.objects);
        cdn_stats_set(sum, CDN_STAT_cache_bytes, st.bytes);
        cdn_stats_set(sum, CDN_STAT_cache_capacity_bytes, st.map_size);
        cdn_stats_set(sum, CDN_STAT_cache_evictions, st.evictions);
        cdn_stats_set(sum, CDN_STAT_cache_store_errors, st.write_errors + st.read_errors);
    }
    extra->now = (int64_t)time(NULL);
}

static bool admin_ready(void *ctx)
{
    struct cdn_server *s = ctx;
    return atomic_load(&s->ready);
}

/* PURGE of a public URL (mapped through remap to its cache key) or of a cache key URL itself. */
static int admin_purge(void *ctx, const char *url, size_t len)
{
    struct cdn_server *s = ctx;
    bool tls;
    size_t skip;
    if (len > 8 && strncasecmp(url, "https://", 8) == 0) {
        tls = true;
        skip = 8;
    } else if (len > 7 && strncasecmp(url, "http://", 7) == 0) {
        tls = false;
        skip = 7;
    } else {
        return CDN_EINVAL;
    }
    const char *host = url + skip, *slash = memchr(host, '/', len - skip);
    size_t host_len = slash != NULL ? (size_t)(slash - host) : len - skip;
    const char *path = slash != NULL ? slash : "/";
    size_t path_len = slash != NULL ? len - (size_t)(slash - url) : 1;
    struct cdn_buf key;
    cdn_buf_init(&key);
    const struct cdn_remap_rule *r = cdn_remap_lookup(s->remap, tls, host, host_len, path, path_len);
    if (r != NULL) {
        char *target = cdn_remap_target_path(r, path, path_len);
        cache_key_build(&key, r->to.tls, r->to.host, r->to.port, target, strlen(target), &s->cache_key_rules);
        free(target);
    } else {
        /* not a public URL of ours: take it as a cache key (an upstream URL) */
        char *h = cdn_xstrndup(host, host_len), *colon = strrchr(h, ':');
        unsigned port = tls ? 443 : 80;
        if (colon != NULL && strchr(colon, ']') == NULL) {
            *colon = '\0';
            port = (unsigned)atoi(colon + 1);
        }
        char *bare = h;
        if (bare[0] == '[') {
            bare++;
            bare[strcspn(bare, "]")] = '\0';
        }
        cache_key_build(&key, tls, bare, (uint16_t)port, path, path_len, &s->cache_key_rules);
        free(h);
    }
    struct cache_hit *hit = NULL;
    int rc = cache_store_lookup(s->store, cdn_buf_data(&key), key.len, &hit);
    int removed = rc == 0 && hit != NULL ? 1 : 0;
    cache_hit_release(&hit);
    if (removed)
        cache_store_remove(s->store, cdn_buf_data(&key), key.len);
    cdn_log(CDN_LOG_INFO, "admin: purge %.*s -> %.*s: %s", (int)len, url, (int)key.len, cdn_buf_data(&key),
            removed ? "removed" : "not cached");
    cdn_buf_dispose(&key);
    return removed;
}

int cdn_server_open_cache(struct cdn_server *s, char **err)
{
    const struct cdn_conf_cache *cc = &s->conf->cache;
    if (cc->path == NULL)
        return 0;
    struct cache_store_opts o = {.path = cc->path, .size = cc->size, .max_object_size = cc->max_object_size};
    if (o.max_object_size > o.size / 4)
        o.max_object_size = o.size / 4; /* the store refuses more; say so rather than fail */
    char *msg = NULL;
    int rc = cache_store_open(&o, &s->store, &msg);
    if (rc != 0) {
        *err = cdn_xasprintf("%s:%d:%d: cache: cannot open the store at %s: %s", s->conf->path, cc->pos.line,
                             cc->pos.col, cc->path, msg != NULL ? msg : cache_store_strerror(rc));
        free(msg);
        return -1;
    }
    if (msg != NULL)
        cdn_log(CDN_LOG_WARN, "cache: %s: %s", cc->path, msg);
    free(msg);
    struct cache_store_stats st;
    cache_store_stats(s->store, &st);
    cdn_log(CDN_LOG_INFO, "cache: %s: %llu objects, %llu bytes, size %llu", cc->path,
            (unsigned long long)st.objects, (unsigned long long)st.bytes, (unsigned long long)cc->size);
    return 0;
}

int cdn_server_bind(struct cdn_server *s, char **err)
{
    for (size_t i = 0; i < s->nlisteners; i++) {
        if (bind_listener(s, i, err) != 0)
            return -1;
    }
    return 0;
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct cdn_worker *w = listener->loop->data;
    CDN_CHECK_OBJ(w, CDN_WORKER_MAGIC);
    if (status < 0) {
        cdn_log(CDN_LOG_WARN, "accept: %s", uv_strerror(status));
        return;
    }
    size_t li = (size_t)((uv_tcp_t *)listener - w->listeners);
    if (w->srv->listeners[li].admin)
        cdn_admin_accept(listener, NULL, &w->srv->admin_ops);
    else
        cdn_proxy_accept(w, &w->srv->listeners[li], listener);
}

static void on_listener_closed(uv_handle_t *h)
{
}

static void on_fill_async(uv_async_t *a)
{
    struct cdn_worker *w = a->data;
    CDN_CHECK_OBJ(w, CDN_WORKER_MAGIC);
    proxy_cache_on_fill_drain(w);
}

static void on_collapse_async(uv_async_t *a)
{
    struct cdn_worker *w = a->data;
    CDN_CHECK_OBJ(w, CDN_WORKER_MAGIC);
    proxy_cache_on_collapse_wake(w);
}

/* Closes everything the worker owns but its `stop` handle (unreferenced; closed by the main thread after
 * the join), so the loop ends once the close callbacks ran. */
static void worker_stop(struct cdn_worker *w)
{
    if (w->stopped)
        return;
    w->stopped = w->stopping = true;
    for (size_t i = 0; i < w->srv->nlisteners; i++) {
        if (!uv_is_closing((uv_handle_t *)&w->listeners[i]))
            uv_close((uv_handle_t *)&w->listeners[i], on_listener_closed);
    }
    cdn_admin_close_all(); /* admin conns have no other owner to close them */
    cdn_proxy_shutdown(w);
    uv_close((uv_handle_t *)&w->fill_async, NULL);
    uv_close((uv_handle_t *)&w->collapse_async, NULL);
}

/* Stops accepting on the request listeners (the admin listener stays up, so /readyz can say 503), ends
 * idle sessions and lets the others finish; cdn_server_worker_drained stops the worker after the last. */
static void worker_drain(struct cdn_worker *w)
{
    if (w->draining || w->stopped)
        return;
    w->draining = w->stopping = true;
    for (size_t i = 0; i < w->srv->nlisteners; i++) {
        if (!w->srv->listeners[i].admin && !uv_is_closing((uv_handle_t *)&w->listeners[i]))
            uv_close((uv_handle_t *)&w->listeners[i], on_listener_closed);
    }
    size_t left = cdn_proxy_drain(w); /* may call cdn_server_worker_drained */
    cdn_log(CDN_LOG_DEBUG, "worker %u: draining, %zu sessions in flight", w->idx, left);
}

void cdn_server_worker_drained(struct cdn_worker *w)
{
    /* Deferred to the loop: this runs inside a session's teardown. */
    int expected = CDN_WORKER_DRAIN;
    atomic_compare_exchange_strong(&w->cmd, &expected, CDN_WORKER_STOP);
    uv_async_send(&w->stop);
}

static void on_stop(uv_async_t *a)
{
    struct cdn_worker *w = a->data;
    CDN_CHECK_OBJ(w, CDN_WORKER_MAGIC);
    int cmd = atomic_load(&w->cmd);
    if (cmd == CDN_WORKER_DRAIN)
        worker_drain(w);
    else if (cmd == CDN_WORKER_STOP)
        worker_stop(w);
}

static void worker_main(void *arg)
{
    struct cdn_worker *w = arg;
    struct cdn_server *s = w->srv;
    for (size_t i = 0; i < s->nlisteners; i++) {
        uv_tcp_t *t = &w->listeners[i];
        uv_tcp_init(&w->loop, t);
        int fd = s->fds[w->idx * s->nlisteners + i];
        int rc = uv_tcp_open(t, fd);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)t, 511, on_connection);
        if (rc == 0)
            s->fds[w->idx * s->nlisteners + i] = -1; /* the handle owns it now */
        else
            cdn_log(CDN_LOG_ERROR, "worker %u: listener %s: %s", w->idx, s->listeners[i].conf->name,
                    uv_strerror(rc));
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    atomic_fetch_add(&s->workers_done, 1);
    uv_async_send(s->main_wake);
}

static int write_ports_file(const struct cdn_server *s, const char *path)
{
    char *tmp = cdn_xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int rc = -1;
    if (f == NULL)
        goto out;
    for (size_t i = 0; i < s->nlisteners; i++)
        fprintf(f, "%s %d\n", s->listeners[i].conf->name, s->listeners[i].port);
    if (fclose(f) != 0)
        goto out;
    rc = rename(tmp, path);
out:
    if (rc != 0)
        cdn_log(CDN_LOG_ERROR, "cannot write ports file %s: %s", path, strerror(errno));
    free(tmp);
    return rc;
}

/* The main thread's state while running (handles' data point here). */
struct run_state {
    struct cdn_server *s;
    uv_loop_t *loop;
    uv_timer_t drain_timer;
    uv_async_t wake;
    bool draining;
    bool stopping;
    uint64_t drain_start;
};

static const char *signal_name(int signum)
{
    return signum == SIGTERM   ? "SIGTERM"
           : signum == SIGINT  ? "SIGINT"
           : signum == SIGUSR1 ? "SIGUSR1"
                               : "a signal";
}

static void send_workers(struct cdn_server *s, int cmd)
{
    for (unsigned i = 0; i < s->nworkers; i++) {
        struct cdn_worker *w = &s->workers[i];
        int cur = atomic_load(&w->cmd);
        while (cur < cmd && !atomic_compare_exchange_weak(&w->cmd, &cur, cmd))
            ;
        uv_async_send(&w->stop);
    }
}

static uint64_t connections_active(const struct cdn_server *s)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < s->nworkers; i++)
        n += cdn_stats_get(&s->workers[i].stats, CDN_STAT_connections_active);
    return n;
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct run_state *rs = t->data;
    rs->stopping = true;
    cdn_log(CDN_LOG_WARN, "drain: timeouts.drain (%llums) expired, closing %llu connections",
            (unsigned long long)rs->s->conf->timeouts.drain_ms,
            (unsigned long long)connections_active(rs->s));
    send_workers(rs->s, CDN_WORKER_STOP);
}

/* A worker's loop ended; when all have, the main loop stops. */
static void on_wake(uv_async_t *a)
{
    struct run_state *rs = a->data;
    if (atomic_load(&rs->s->workers_done) < rs->s->nworkers || !(rs->draining || rs->stopping))
        return;
    if (rs->draining && !rs->stopping)
        cdn_log(CDN_LOG_INFO, "drained in %llums", (unsigned long long)(uv_now(rs->loop) - rs->drain_start));
    uv_stop(rs->loop);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    struct run_state *rs = sig->data;
    struct cdn_server *s = rs->s;
    if (signum == SIGUSR1) {
        char *err = NULL;
        if (cdn_log_reopen(&err) != 0) {
            cdn_log(CDN_LOG_ERROR, "SIGUSR1: %s (the old files stay in use)", err);
            free(err);
        } else {
            cdn_log(CDN_LOG_INFO, "received SIGUSR1, log files reopened");
        }
        return;
    }
    if (rs->draining) {
        if (rs->stopping)
            return;
        rs->stopping = true;
        cdn_log(CDN_LOG_INFO, "received %s while draining, stopping now (closing %llu connections)",
                signal_name(signum), (unsigned long long)connections_active(s));
        send_workers(s, CDN_WORKER_STOP);
        return;
    }
    rs->draining = true;
    rs->drain_start = uv_now(rs->loop);
    atomic_store(&s->ready, false);
    cdn_log(CDN_LOG_INFO,
            "received %s, draining: %llu connections (up to %llums; a second signal stops at once)",
            signal_name(signum), (unsigned long long)connections_active(s),
            (unsigned long long)s->conf->timeouts.drain_ms);
    send_workers(s, CDN_WORKER_DRAIN);
    uv_timer_start(&rs->drain_timer, on_drain_timeout, s->conf->timeouts.drain_ms, 0);
    on_wake(&rs->wake); /* every worker may have ended already */
}

int cdn_server_run(struct cdn_server *s, const char *ports_file)
{
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t main_loop;
    uv_loop_init(&main_loop);
    struct run_state rs = {.s = s, .loop = &main_loop};
    uv_timer_init(&main_loop, &rs.drain_timer);
    rs.drain_timer.data = &rs;
    uv_async_init(&main_loop, &rs.wake, on_wake);
    rs.wake.data = &rs;
    s->main_wake = &rs.wake;
    uv_signal_t sigterm, sigint, sigusr1;
    uv_signal_init(&main_loop, &sigterm);
    uv_signal_init(&main_loop, &sigint);
    uv_signal_init(&main_loop, &sigusr1);
    sigterm.data = sigint.data = sigusr1.data = &rs;
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigusr1, on_signal, SIGUSR1);

    s->workers = cdn_xcalloc(s->nworkers, sizeof(*s->workers));
    for (unsigned i = 0; i < s->nworkers; i++) {
        struct cdn_worker *w = &s->workers[i];
        w->magic = CDN_WORKER_MAGIC;
        w->srv = s;
        w->idx = i;
        uv_loop_init(&w->loop);
        w->loop.data = w;
        uv_async_init(&w->loop, &w->stop, on_stop);
        w->stop.data = w;
        uv_unref((uv_handle_t *)&w->stop); /* open until after the join: the main thread may still send */
        uv_async_init(&w->loop, &w->fill_async, on_fill_async);
        w->fill_async.data = w;
        uv_async_init(&w->loop, &w->collapse_async, on_collapse_async);
        w->collapse_async.data = w;
        w->listeners = cdn_xcalloc(s->nlisteners, sizeof(uv_tcp_t));
        cdn_stats_init(&w->stats);
        w->pool = cdn_pool_new();
        CDN_ASSERT(uv_thread_create(&w->thread, worker_main, w) == 0);
    }
    s->start_time = (int64_t)time(NULL);
    atomic_store(&s->ready, true);
    if (ports_file != NULL)
        write_ports_file(s, ports_file);
    for (size_t i = 0; i < s->nlisteners; i++)
        cdn_log(CDN_LOG_INFO, "%s: listening on %s:%d (%s%s%s), %u workers", s->policy.role_name,
                s->listeners[i].conf->address, s->listeners[i].port,
                s->listeners[i].ctx != NULL ? "tls" : "plain",
                s->listeners[i].ctx != NULL ? ", client_auth " : "",
                s->listeners[i].ctx != NULL ? cdn_conf_client_auth_name(s->listeners[i].client_auth) : "",
                s->nworkers);

    uv_run(&main_loop, UV_RUN_DEFAULT);

    atomic_store(&s->ready, false);
    for (unsigned i = 0; i < s->nworkers; i++) {
        struct cdn_worker *w = &s->workers[i];
        uv_thread_join(&w->thread);
        uv_close((uv_handle_t *)&w->stop, NULL);
        uv_run(&w->loop, UV_RUN_NOWAIT);
        if (uv_loop_close(&w->loop) != 0)
            cdn_log(CDN_LOG_WARN, "worker %u: handles left open at exit", i);
        free(w->listeners);
        w->magic = 0;
    }
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigusr1, NULL);
    uv_close((uv_handle_t *)&rs.drain_timer, NULL);
    uv_close((uv_handle_t *)&rs.wake, NULL);
    s->main_wake = NULL;
    uv_run(&main_loop, UV_RUN_DEFAULT);
    uv_loop_close(&main_loop);
    if (ports_file != NULL)
        unlink(ports_file);
    return 0;
}

void cdn_server_dispose(struct cdn_server *s)
{
    for (size_t i = 0; s->fds != NULL && i < (size_t)s->nworkers * s->nlisteners; i++) {
        if (s->fds[i] >= 0)
            close(s->fds[i]);
    }
    for (size_t i = 0; s->listeners != NULL && i < s->nlisteners; i++)
        SSL_CTX_free(s->listeners[i].ctx);
    SSL_CTX_free(s->upstream_ctx);
    cache_store_close(&s->store); /* every session (hit, fill) is gone by now */
    free(s->cache_name);
    cdn_stats_extra_dispose(&s->cert_series);
    cdn_collapse_free(&s->collapse);
    cdn_remap_free(&s->remap);
    free(s->listeners);
    free(s->fds);
    free(s->workers);
    free(s->via);
    memset(s, 0, sizeof(*s));
}
