/*
 * server: see server.h. Sockets are created and bound in the main thread before any worker starts,
 * so "address in use" or a bad certificate is reported before the node claims to be ready; the
 * ports file is written only after that (tests and `make run` treat it as the readiness signal).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <grp.h>
#include <pwd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "lib/certcheck.h"
#include "lib/collapse.h"
#include "lib/hcheck.h"
#include "lib/log.h"
#include "lib/pool.h"
#include "lib/proxy.h"
#include "lib/proxy_int.h"
#include "lib/server.h"
#include "lib/sni.h"
#include "lib/tls.h"
#include "lib/util.h"
#include "lib/watch.h"

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
    struct cdn_listener_rt *l = &s->gen->listeners[li];
    const char *path = s->gen->conf->path;
    struct sockaddr_storage ss;
    socklen_t len;
    if (make_addr(l->conf->address, l->conf->port, &ss, &len) != 0) {
        *err = cdn_xasprintf("%s:%d:%d: listener %s: bad address %s", path, l->conf->pos.line,
                             l->conf->pos.col, l->conf->name, l->conf->address);
        return -1;
    }
    /* A probe without SO_REUSEPORT fails if anything already listens there (another node included),
     * and resolves port 0 to one port that every worker then shares. */
    int probe = bind_socket(&ss, len, false, false);
    if (probe < 0) {
        *err =
            cdn_xasprintf("%s:%d:%d: listener %s: cannot bind %s:%d: %s", path, l->conf->pos.line,
                          l->conf->pos.col, l->conf->name, l->conf->address, l->conf->port, strerror(-probe));
        return -1;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    getsockname(probe, (struct sockaddr *)&bound, &blen);
    s->ports[li] = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port
                                                    : ((struct sockaddr_in6 *)&bound)->sin6_port);
    close(probe);
    make_addr(l->conf->address, s->ports[li], &ss, &len);
    for (unsigned w = 0; w < s->nworkers; w++) {
        int fd = bind_socket(&ss, len, true, true);
        if (fd < 0) {
            *err =
                cdn_xasprintf("%s:%d:%d: listener %s: cannot listen on %s:%d: %s", path, l->conf->pos.line,
                              l->conf->pos.col, l->conf->name, l->conf->address, s->ports[li], strerror(-fd));
            return -1;
        }
        s->fds[w * s->nlisteners + li] = fd;
    }
    return 0;
}

static void admin_collect(void *ctx, struct cdn_stats *sum, struct cdn_stats_extra *extra);
static bool admin_ready(void *ctx);
static int admin_purge(void *ctx, const char *url, size_t len);
static int admin_reload(void *ctx);

int cdn_server_init(struct cdn_server *s, struct cdn_conf **conf, const struct cdn_server_policy *policy,
                    char **err)
{
    memset(s, 0, sizeof(*s));
    uv_mutex_init(&s->gen_lock);
    s->policy = *policy;
    s->collapse = cdn_collapse_new();
    const struct cdn_conf *c = *conf;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    s->nworkers = c->workers != 0 ? c->workers : (unsigned)(ncpu > 0 ? ncpu : 1);
    s->nlisteners = c->nlisteners + (c->admin.port >= 0 ? 1 : 0);
    s->admin_li = c->admin.port >= 0 ? c->nlisteners : SIZE_MAX;
    s->ports = cdn_xcalloc(s->nlisteners > 0 ? s->nlisteners : 1, sizeof(int));
    s->fds = cdn_xcalloc((size_t)s->nworkers * s->nlisteners + 1, sizeof(int));
    for (size_t i = 0; i < (size_t)s->nworkers * s->nlisteners; i++)
        s->fds[i] = -1;
    if (cdn_gen_new(conf, policy, &s->gen, err) != 0)
        return -1;
    atomic_store(&s->gen_id, s->gen->id);
    s->admin_ops = (struct cdn_admin_ops){.ctx = s,
                                          .role = policy->role_name,
                                          .collect = admin_collect,
                                          .ready = admin_ready,
                                          .purge = s->gen->conf->cache.path != NULL ? admin_purge : NULL,
                                          .reload = admin_reload};
    return 0;
}

struct cdn_gen *cdn_server_gen(struct cdn_server *s)
{
    uv_mutex_lock(&s->gen_lock);
    struct cdn_gen *g = cdn_gen_ref(s->gen);
    uv_mutex_unlock(&s->gen_lock);
    return g;
}

/* ---- admin callbacks: they run on the worker serving the admin request ---- */

static void admin_collect(void *ctx, struct cdn_stats *sum, struct cdn_stats_extra *extra)
{
    struct cdn_server *s = ctx;
    for (unsigned i = 0; i < s->nworkers; i++)
        cdn_stats_accumulate(sum, &s->workers[i].stats);
    cdn_stats_set(sum, CDN_STAT_start_time_seconds, (uint64_t)s->start_time);
    cdn_stats_set(sum, CDN_STAT_log_access_dropped, cdn_log_access_dropped());
    struct cdn_gen *g = cdn_server_gen(s);
    cdn_stats_extra_copy(extra, &g->cert_series);
    cdn_ugroups_stats(g->ugroups, extra); /* per-parent series of the current generation */
    cdn_stats_set(sum, CDN_STAT_generation, g->id);
    cdn_gen_unref(&g);
    uv_mutex_lock(&s->gen_lock);
    cdn_stats_set(sum, CDN_STAT_reloads_ok, s->reloads_ok);
    cdn_stats_set(sum, CDN_STAT_reloads_failed, s->reloads_failed);
    cdn_stats_set(sum, CDN_STAT_reload_last_time_seconds, (uint64_t)s->reload_last_time);
    cdn_stats_set(sum, CDN_STAT_reload_last_success, s->reload_error == NULL ? 1 : 0);
    cdn_stats_extra_set_reload_error(extra, s->reload_error);
    uv_mutex_unlock(&s->gen_lock);
    if (s->store != NULL) {
        struct cache_store_stats st;
        cache_store_stats(s->store, &st);
        cdn_stats_set(sum, CDN_STAT_cache_objects, st.objects);
        cdn_stats_set(sum, CDN_STAT_cache_bytes, st.bytes);
        cdn_stats_set(sum, CDN_STAT_cache_capacity_bytes, st.map_size);
        cdn_stats_set(sum, CDN_STAT_cache_evictions, st.evictions);
        cdn_stats_set(sum, CDN_STAT_cache_not_admitted, st.not_admitted);
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
    struct cdn_gen *g = cdn_server_gen(s);
    const struct cdn_remap_rule *r = cdn_remap_lookup(g->remap, tls, host, host_len, path, path_len);
    if (r != NULL) {
        char *target = cdn_remap_target_path(r, path, path_len);
        cache_key_build(&key, r->to.tls, r->to.host, r->to.port, target, strlen(target), &g->cache_key_rules);
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
        cache_key_build(&key, tls, bare, (uint16_t)port, path, path_len, &g->cache_key_rules);
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
    cdn_gen_unref(&g);
    return removed;
}

/* POST /reload on a worker: the reload itself runs on the main thread (it reads files and builds
 * contexts for a while; workers keep serving). */
static int admin_reload(void *ctx)
{
    struct cdn_server *s = ctx;
    uv_mutex_lock(&s->gen_lock);
    int rc = s->reload_wake != NULL ? uv_async_send(s->reload_wake) : CDN_EINVAL;
    uv_mutex_unlock(&s->gen_lock);
    return rc;
}

int cdn_server_reload(struct cdn_server *s, const char *why)
{
    char *err = NULL;
    struct cdn_conf *conf = NULL;
    struct cdn_server_policy policy;
    struct cdn_gen *g = NULL, *old = NULL;
    int rc = -1;
    if (s->loader == NULL)
        err = cdn_xstrdup("this process cannot reload its configuration");
    else
        rc = s->loader(s->loader_arg, &conf, &policy, &err);
    if (rc == 0 && strcmp(policy.role_name, s->policy.role_name) != 0) {
        err = cdn_xasprintf("%s: the role changed from %s to %s: that needs a restart", conf->path,
                            s->policy.role_name, policy.role_name);
        rc = -1;
    }
    if (rc == 0)
        rc = cdn_gen_new(&conf, &policy, &g, &err);
    cdn_conf_free(&conf);
    if (rc == 0)
        rc = cdn_gen_compatible(s->gen, g, &err);
    uv_mutex_lock(&s->gen_lock);
    s->reload_last_time = (int64_t)time(NULL);
    free(s->reload_error);
    s->reload_error = NULL;
    if (rc == 0) {
        g->id = s->gen->id + 1;
        old = s->gen;
        s->gen = g;
        g = NULL;
        s->reloads_ok++;
        atomic_store(&s->gen_id, s->gen->id);
    } else {
        s->reloads_failed++;
        s->reload_error = cdn_xstrdup(err != NULL ? err : "failed");
    }
    uv_mutex_unlock(&s->gen_lock);
    if (rc == 0) {
        cdn_log_set_level(s->gen->conf->log.level);
        cdn_log(CDN_LOG_INFO,
                "reload (%s): generation %llu in service; connections of generation %llu finish under it",
                why, (unsigned long long)s->gen->id, (unsigned long long)old->id);
        for (unsigned i = 0; s->workers != NULL && i < s->nworkers; i++) {
            atomic_store(&s->workers[i].reloaded, true);
            uv_async_send(&s->workers[i].stop);
        }
    } else {
        cdn_log(CDN_LOG_ERROR, "reload (%s) failed, generation %llu stays in service:\n%s", why,
                (unsigned long long)s->gen->id, err != NULL ? err : "failed");
    }
    cdn_gen_unref(&old);
    cdn_gen_unref(&g);
    free(err);
    return rc;
}

int cdn_server_drop_privileges(struct cdn_server *s, char **err)
{
    const struct cdn_conf *c = s->gen->conf;
    if (c->user == NULL && c->group == NULL)
        return 0;
    struct passwd *pw = NULL;
    gid_t gid = getgid();
    if (c->user != NULL) {
        pw = getpwnam(c->user);
        if (pw == NULL) {
            *err = cdn_xasprintf("%s:%d:%d: user: no such user: %s", c->path, c->user_pos.line,
                                 c->user_pos.col, c->user);
            return -1;
        }
        gid = pw->pw_gid;
    }
    if (c->group != NULL) {
        struct group *gr = getgrnam(c->group);
        if (gr == NULL) {
            *err = cdn_xasprintf("%s: group: no such group: %s", c->path, c->group);
            return -1;
        }
        gid = gr->gr_gid;
    }
    /* groups first: once the uid is gone, so is the right to change them */
    if ((pw != NULL ? initgroups(pw->pw_name, gid) : setgroups(0, NULL)) != 0 || setgid(gid) != 0 ||
        (pw != NULL && setuid(pw->pw_uid) != 0)) {
        *err = cdn_xasprintf("%s: cannot switch to user %s group %s: %s", c->path, c->user ? c->user : "-",
                             c->group ? c->group : "-", strerror(errno));
        return -1;
    }
    if (pw != NULL && pw->pw_uid != 0 && setuid(0) == 0) {
        *err = cdn_xasprintf("%s: privileges could be regained after switching to %s", c->path, c->user);
        return -1;
    }
    cdn_log(CDN_LOG_INFO, "running as uid %u gid %u", (unsigned)getuid(), (unsigned)getgid());
    return 0;
}

int cdn_server_open_cache(struct cdn_server *s, char **err)
{
    const struct cdn_conf_cache *cc = &s->gen->conf->cache;
    if (cc->path == NULL)
        return 0;
    struct cache_store_opts o = {.path = cc->path, .size = cc->size, .max_object_size = cc->max_object_size};
    if (o.max_object_size > o.size / 4) { /* the store refuses more; say so rather than fail */
        o.max_object_size = o.size / 4;
        cdn_log(CDN_LOG_WARN,
                "%s:%d:%d: cache: max_object_size is more than a quarter of size; objects over %llu bytes "
                "pass uncached",
                s->gen->conf->path, cc->pos.line, cc->pos.col, (unsigned long long)o.max_object_size);
    }
    s->max_object_size = o.max_object_size;
    char *msg = NULL;
    int rc = cache_store_open(&o, &s->store, &msg);
    if (rc != 0) {
        *err =
            cdn_xasprintf("%s:%d:%d: cache: cannot open the store at %s: %s", s->gen->conf->path,
                          cc->pos.line, cc->pos.col, cc->path, msg != NULL ? msg : cache_store_strerror(rc));
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
    struct cdn_gen *g = cdn_server_gen(w->srv);
    if (g->listeners[li].admin) {
        cdn_admin_accept(listener, g->listeners[li].ctx, &w->srv->admin_ops); /* SSL refs the ctx */
        cdn_gen_unref(&g);
    } else {
        cdn_proxy_accept(w, g, li, listener); /* takes the reference */
    }
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

#ifdef __GLIBC__
/* One malloc_trim at a time, never while workers stop: two workers whose first calls meet can both run
 * glibc's lazy malloc initialisation (seen once under ASan as an abort at a worker's exit,
 * __malloc_arena_thread_freeres: a->attached_threads > 0). The trim walks every arena anyway. */
static pthread_mutex_t trim_lock = PTHREAD_MUTEX_INITIALIZER;
#endif
#define TRIM_EVERY_MS    1000 /* an idle connection gives its buffers back after 1 to 2 s */
#define TRIM_RELEASE_MIN 64   /* this many trimmed in one tick: return free heap pages to the system */

static void on_trim(uv_timer_t *t)
{
    struct cdn_worker *w = t->data;
    CDN_CHECK_OBJ(w, CDN_WORKER_MAGIC);
#ifdef __GLIBC__
    /* Freed record buffers and fill chunks leave holes malloc keeps mapped; give those pages back
     * when many connections went idle at once, or when a burst of requests has just ended (its
     * clients may have closed rather than idled), not on every tick. */
    uint64_t n = cdn_stats_get(&w->stats, CDN_STAT_requests);
    bool burst_over = n == w->trim_requests && w->trim_busy;
    w->trim_busy = n != w->trim_requests;
    w->trim_requests = n;
    if ((cdn_proxy_trim_idle(w, TRIM_EVERY_MS) >= TRIM_RELEASE_MIN || burst_over) && !w->stopping &&
        pthread_mutex_trylock(&trim_lock) == 0) {
        malloc_trim(0);
        pthread_mutex_unlock(&trim_lock);
    }
#else
    cdn_proxy_trim_idle(w, TRIM_EVERY_MS);
#endif
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
    uv_close((uv_handle_t *)&w->trim_timer, NULL);
}

/* Stops accepting on the request listeners (the admin listener stays up, so /readyz can say 503), ends
 * idle sessions and lets the others finish; cdn_server_worker_drained stops the worker after the last. */
static void worker_drain(struct cdn_worker *w)
{
    if (w->draining || w->stopped)
        return;
    w->draining = w->stopping = true;
    for (size_t i = 0; i < w->srv->nlisteners; i++) {
        if (i != w->srv->admin_li && !uv_is_closing((uv_handle_t *)&w->listeners[i]))
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
    if (atomic_exchange(&w->reloaded, false) && !w->stopped) {
        /* pooled conns of the old generation are keyed by its id and would only idle out */
        cdn_pool_free(&w->pool);
        w->pool = cdn_pool_new();
    }
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
            cdn_log(CDN_LOG_ERROR, "worker %u: listener %zu: %s", w->idx, i, uv_strerror(rc));
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    atomic_fetch_add(&s->workers_done, 1);
    uv_async_send(s->main_wake);
}

int cdn_server_write_ports(const struct cdn_server *s, const char *path)
{
    char *tmp = cdn_xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int rc = -1;
    if (f == NULL)
        goto out;
    for (size_t i = 0; i < s->nlisteners; i++)
        fprintf(f, "%s %d\n", s->gen->listeners[i].conf->name, s->ports[i]);
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
    uv_async_t reload;         /* POST /reload */
    uv_timer_t watch_timer;    /* watch_files */
    struct cdn_watch *watch;   /* content of the current generation's files */
    struct cdn_hcheck *hcheck; /* active health checks of the current generation's groups */
    bool draining;
    bool stopping;
    uint64_t drain_start;
};

static const char *signal_name(int signum)
{
    return signum == SIGTERM   ? "SIGTERM"
           : signum == SIGINT  ? "SIGINT"
           : signum == SIGUSR1 ? "SIGUSR1"
           : signum == SIGHUP  ? "SIGHUP"
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
            (unsigned long long)rs->s->gen->conf->timeouts.drain_ms,
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

static void on_watch(uv_timer_t *t);

/* After a reload attempt: watch the files of the generation now in service. */
static void watch_rearm(struct run_state *rs)
{
    struct cdn_server *s = rs->s;
    bool on = s->gen->conf->watch_files && !rs->draining;
    if (!on) {
        uv_timer_stop(&rs->watch_timer);
        cdn_watch_free(&rs->watch);
        return;
    }
    if (rs->watch == NULL) {
        rs->watch = cdn_watch_new();
        cdn_watch_scan(rs->watch, s->gen->files, s->gen->nfiles);
    }
    uint64_t every = s->gen->conf->watch_interval_ms;
    uv_timer_start(&rs->watch_timer, on_watch, every, every);
}

static void reload(struct run_state *rs, const char *why)
{
    if (rs->draining) {
        cdn_log(CDN_LOG_WARN, "reload (%s) ignored: draining", why);
        return;
    }
    uint64_t before = rs->s->gen->id;
    cdn_server_reload(rs->s, why);
    if (rs->s->gen->id != before) { /* health lives in the generation: its checks follow it */
        cdn_hcheck_stop(&rs->hcheck);
        rs->hcheck = cdn_hcheck_start(rs->loop, rs->s->gen);
    }
    /* a new generation may name other files: record them now, so that only later edits count */
    if (rs->watch != NULL)
        cdn_watch_scan(rs->watch, rs->s->gen->files, rs->s->gen->nfiles);
    watch_rearm(rs);
}

static void on_watch(uv_timer_t *t)
{
    struct run_state *rs = t->data;
    const char *changed = cdn_watch_scan(rs->watch, rs->s->gen->files, rs->s->gen->nfiles);
    if (changed == NULL)
        return;
    char *why = cdn_xasprintf("watch_files: %s changed", changed);
    reload(rs, why);
    free(why);
}

static void on_reload_async(uv_async_t *a)
{
    reload(a->data, "admin POST /reload");
}

static void on_signal(uv_signal_t *sig, int signum)
{
    struct run_state *rs = sig->data;
    struct cdn_server *s = rs->s;
    if (signum == SIGHUP) {
        reload(rs, "SIGHUP");
        return;
    }
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
    watch_rearm(rs);
    rs->drain_start = uv_now(rs->loop);
    atomic_store(&s->ready, false);
    cdn_log(CDN_LOG_INFO,
            "received %s, draining: %llu connections (up to %llums; a second signal stops at once)",
            signal_name(signum), (unsigned long long)connections_active(s),
            (unsigned long long)s->gen->conf->timeouts.drain_ms);
    send_workers(s, CDN_WORKER_DRAIN);
    uv_timer_start(&rs->drain_timer, on_drain_timeout, s->gen->conf->timeouts.drain_ms, 0);
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
    uv_async_init(&main_loop, &rs.reload, on_reload_async);
    rs.reload.data = &rs;
    uv_timer_init(&main_loop, &rs.watch_timer);
    rs.watch_timer.data = &rs;
    uv_signal_t sigs[4];
    static const int signums[4] = {SIGTERM, SIGINT, SIGUSR1, SIGHUP};
    for (size_t i = 0; i < 4; i++) {
        uv_signal_init(&main_loop, &sigs[i]);
        sigs[i].data = &rs;
        uv_signal_start(&sigs[i], on_signal, signums[i]);
    }

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
        uv_timer_init(&w->loop, &w->trim_timer);
        w->trim_timer.data = w;
        uv_timer_start(&w->trim_timer, on_trim, TRIM_EVERY_MS, TRIM_EVERY_MS);
        uv_unref((uv_handle_t *)&w->trim_timer); /* housekeeping never keeps the loop alive */
        w->listeners = cdn_xcalloc(s->nlisteners, sizeof(uv_tcp_t));
        cdn_stats_init(&w->stats);
        w->pool = cdn_pool_new();
        CDN_ASSERT(uv_thread_create(&w->thread, worker_main, w) == 0);
    }
    s->start_time = (int64_t)time(NULL);
    uv_mutex_lock(&s->gen_lock);
    s->reload_wake = &rs.reload;
    uv_mutex_unlock(&s->gen_lock);
    watch_rearm(&rs);
    rs.hcheck = cdn_hcheck_start(&main_loop, s->gen);
    atomic_store(&s->ready, true);
    for (size_t i = 0; i < s->nlisteners; i++) {
        const struct cdn_listener_rt *l = &s->gen->listeners[i];
        cdn_log(CDN_LOG_INFO, "%s: listening on %s:%d (%s%s%s), %u workers", s->policy.role_name,
                l->conf->address, s->ports[i], l->ctx != NULL ? "tls" : "plain",
                l->ctx != NULL ? ", client_auth " : "",
                l->ctx != NULL ? cdn_conf_client_auth_name(l->client_auth) : "", s->nworkers);
    }

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
        cdn_buf_dispose(&w->head_buf);
        cdn_buf_dispose(&w->cs_buf);
        w->magic = 0;
    }
    uv_mutex_lock(&s->gen_lock);
    s->reload_wake = NULL;
    uv_mutex_unlock(&s->gen_lock);
    cdn_hcheck_stop(&rs.hcheck); /* its close callbacks run in the loop below */
    for (size_t i = 0; i < 4; i++)
        uv_close((uv_handle_t *)&sigs[i], NULL);
    uv_close((uv_handle_t *)&rs.reload, NULL);
    uv_close((uv_handle_t *)&rs.watch_timer, NULL);
    cdn_watch_free(&rs.watch);
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
    cache_store_close(&s->store); /* every session (hit, fill) is gone by now */
    cdn_gen_unref(&s->gen);
    free(s->reload_error);
    if (s->ports != NULL) /* init ran */
        uv_mutex_destroy(&s->gen_lock);
    cdn_collapse_free(&s->collapse);
    free(s->ports);
    free(s->fds);
    free(s->workers);
    memset(s, 0, sizeof(*s));
}
