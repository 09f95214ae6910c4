/*
 * hcheck: see hcheck.h. One timer per checked parent; a check is one cdn_conn (lib/conn.c) with one
 * deadline covering connect, handshake and response head. The set is freed once every timer's close
 * callback ran, so a stop never races a callback.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/conn.h"
#include "lib/hcheck.h"
#include "lib/http1.h"
#include "lib/log.h"
#include "lib/tls.h"
#include "lib/util.h"

#define PROBE_MAGIC  0x68636b70u
#define CHECK_IN_CAP (64 * 1024) /* a response head; the body is never read */

struct probe {
    uint32_t magic;
    struct cdn_hcheck *hc;
    struct cdn_ugroup *g;
    size_t p;
    uv_timer_t timer;
    struct cdn_conn *conn; /* the check in flight; NULL between checks */
    SSL_CTX *ctx;          /* NULL = plain HTTP (the rule's target is http://) */
    const char *name;      /* Host, SNI and verified name; borrowed from the generation */
    bool verify_name;
};

struct cdn_hcheck {
    struct cdn_gen *gen; /* a reference */
    struct probe *probes;
    size_t n;
    size_t open; /* timers not yet closed */
};

static void check_done(struct probe *pr, bool ok, const char *why)
{
    cdn_conn_close(pr->conn);
    pr->conn = NULL;
    if (!ok)
        cdn_log(CDN_LOG_DEBUG, "upstream group %s: health check of %s failed: %s", pr->g->conf->name,
                pr->g->parents[pr->p].conf->name, why);
    cdn_ugroup_check(pr->g, pr->p, ok, cdn_now_ms(), why);
}

static void on_check(struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    struct probe *pr = c->data;
    CDN_CHECK_OBJ(pr, PROBE_MAGIC);
    char why[320];
    switch (ev) {
    case CDN_CONN_EV_OPEN: {
        char *req = cdn_xasprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: cdn-node-health-check\r\n"
                                  "Connection: close\r\n\r\n",
                                  pr->g->conf->health.check_path, pr->name);
        cdn_conn_write(c, req, strlen(req));
        free(req);
        return;
    }
    case CDN_CONN_EV_READ: {
        static const struct cdn_http_limits lim = {.max_head_size = CHECK_IN_CAP - 1, .max_headers = 100};
        static _Thread_local struct cdn_http_response res;
        int rc = cdn_http1_parse_response(cdn_buf_data(&c->in), c->in.len, &lim, false, &res);
        if (rc == CDN_HTTP_EAGAIN && c->in.len < CHECK_IN_CAP - 1)
            return;
        if (rc < 0) {
            check_done(pr, false, "malformed response head");
        } else if (res.status >= 200 && res.status < 300) {
            check_done(pr, true, NULL);
        } else {
            snprintf(why, sizeof(why), "status %d", res.status);
            check_done(pr, false, why);
        }
        return;
    }
    case CDN_CONN_EV_DRAIN:
        return;
    case CDN_CONN_EV_EOF:
        check_done(pr, false, "closed before a response head");
        return;
    case CDN_CONN_EV_ERROR:
        snprintf(why, sizeof(why), "%s", c->err[0] != '\0' ? c->err : cdn_strerror(status));
        check_done(pr, false, why);
        return;
    case CDN_CONN_EV_TIMEOUT:
        check_done(pr, false, "timed out (check_timeout)");
        return;
    }
}

static void on_tick(uv_timer_t *t)
{
    struct probe *pr = t->data;
    CDN_CHECK_OBJ(pr, PROBE_MAGIC);
    if (pr->conn != NULL)
        return; /* the previous check is still within its check_timeout */
    const struct cdn_ugroup_parent *pa = &pr->g->parents[pr->p];
    pr->conn = cdn_conn_connect(t->loop, pa->host, pa->port, pr->ctx, pr->name, pr->verify_name, CHECK_IN_CAP,
                                on_check, pr);
    cdn_conn_set_timeout(pr->conn, pr->g->conf->health.check_timeout_ms);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct probe *pr = h->data;
    CDN_CHECK_OBJ(pr, PROBE_MAGIC);
    struct cdn_hcheck *hc = pr->hc;
    pr->magic = 0;
    if (--hc->open > 0)
        return;
    cdn_gen_unref(&hc->gen);
    free(hc->probes);
    free(hc);
}

/* The first rule that uses group gi (1-based), for the scheme and TLS name of its checks. */
static const struct cdn_remap_rule *rule_of(const struct cdn_gen *gen, size_t gi)
{
    for (size_t i = 0; i < gen->remap->nrules; i++) {
        if (gen->remap->rules[i].group == gi)
            return &gen->remap->rules[i];
    }
    return NULL;
}

struct cdn_hcheck *cdn_hcheck_start(uv_loop_t *loop, struct cdn_gen *gen)
{
    const struct cdn_conf *conf = gen->conf;
    size_t n = 0;
    for (size_t i = 0; i < gen->ugroups->n; i++) {
        if (conf->ugroups[i].health.check_path != NULL && rule_of(gen, i + 1) != NULL)
            n += gen->ugroups->v[i].nparents;
    }
    if (n == 0)
        return NULL; /* a group no rule uses has nobody to serve: nothing to check */
    struct cdn_hcheck *hc = cdn_xcalloc(1, sizeof(*hc));
    hc->gen = cdn_gen_ref(gen);
    hc->probes = cdn_xcalloc(n, sizeof(*hc->probes));
    for (size_t i = 0; i < gen->ugroups->n; i++) {
        const struct cdn_conf_ugroup *gc = &conf->ugroups[i];
        const struct cdn_remap_rule *rule = rule_of(gen, i + 1);
        if (gc->health.check_path == NULL || rule == NULL)
            continue;
        const struct cdn_conf_upstream *uc =
            gc->profile > 0 ? &conf->upstreams[gc->profile - 1] : &conf->upstream;
        SSL_CTX *ctx = gc->profile > 0 ? gen->profile_ctx[gc->profile - 1] : gen->upstream_ctx;
        for (size_t j = 0; j < gen->ugroups->v[i].nparents; j++) {
            struct probe *pr = &hc->probes[hc->n++];
            pr->magic = PROBE_MAGIC;
            pr->hc = hc;
            pr->g = &gen->ugroups->v[i];
            pr->p = j;
            pr->ctx = rule->to.tls ? ctx : NULL;
            pr->name = uc->server_name != NULL ? uc->server_name : rule->to.host;
            pr->verify_name = cdn_tls_upstream_checks_name(uc);
            uv_timer_init(loop, &pr->timer);
            pr->timer.data = pr;
            hc->open++;
            /* the first round soon, spread a little so parents are not all dialled at once */
            uv_timer_start(&pr->timer, on_tick, 100 + 10 * (uint64_t)j, gc->health.check_interval_ms);
        }
    }
    cdn_log(CDN_LOG_INFO, "health checks: %zu parents, generation %llu", hc->n, (unsigned long long)gen->id);
    return hc;
}

void cdn_hcheck_stop(struct cdn_hcheck **hp)
{
    struct cdn_hcheck *hc = *hp;
    *hp = NULL;
    if (hc == NULL)
        return;
    for (size_t i = 0; i < hc->n; i++) {
        struct probe *pr = &hc->probes[i];
        if (pr->conn != NULL) {
            cdn_conn_close(pr->conn); /* no verdict: the check was cut short */
            pr->conn = NULL;
        }
        uv_timer_stop(&pr->timer);
        uv_close((uv_handle_t *)&pr->timer, on_timer_closed);
    }
}
