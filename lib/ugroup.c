/*
 * ugroup: see ugroup.h. Everything here is read-mostly and shared by the workers: the ring and the
 * parents' addresses are immutable once built; health and counters are atomics, so selection takes
 * no lock. Counters are relaxed: /stats wants totals, not a consistent snapshot.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/ugroup.h"
#include "lib/util.h"

static void parent_init(struct cdn_ugroup_parent *p, const struct cdn_conf_parent *c)
{
    p->conf = c;
    /* the loader checked "host:port" ("[v6]:port" for IPv6) */
    const char *colon = strrchr(c->address, ':');
    const char *h = c->address;
    size_t hl = (size_t)(colon - h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    p->host = cdn_xstrndup(h, hl);
    p->port = (uint16_t)atoi(colon + 1);
    cdn_health_init(&p->health);
    atomic_init(&p->check_streak, 0);
    atomic_init(&p->requests, 0);
    atomic_init(&p->failures, 0);
    atomic_init(&p->conns_opened, 0);
    atomic_init(&p->conns_reused, 0);
    atomic_init(&p->tls_full, 0);
    atomic_init(&p->tls_resumed, 0);
}

struct cdn_ugroups *cdn_ugroups_new(const struct cdn_conf *conf)
{
    struct cdn_ugroups *gs = cdn_xcalloc(1, sizeof(*gs));
    gs->v = cdn_xcalloc(conf->nugroups ? conf->nugroups : 1, sizeof(*gs->v));
    gs->n = conf->nugroups;
    for (size_t i = 0; i < gs->n; i++) {
        struct cdn_ugroup *g = &gs->v[i];
        const struct cdn_conf_ugroup *c = &conf->ugroups[i];
        g->conf = c;
        g->nparents = c->nparents;
        g->parents = cdn_xcalloc(c->nparents ? c->nparents : 1, sizeof(*g->parents));
        for (size_t j = 0; j < c->nparents; j++)
            parent_init(&g->parents[j], &c->parents[j]);
        atomic_init(&g->rr, 0);
        g->hcfg.threshold = c->health.fail_threshold;
        g->hcfg.backoff_ms = c->health.backoff_ms;
        if (c->policy == CDN_UGROUP_CONSISTENT_HASH && c->nparents > 0) {
            const char **names = cdn_xcalloc(c->nparents, sizeof(*names));
            unsigned *weights = cdn_xcalloc(c->nparents, sizeof(*weights));
            for (size_t j = 0; j < c->nparents; j++) {
                names[j] = c->parents[j].name;
                weights[j] = c->parents[j].weight;
            }
            g->ring = cdn_ring_new((const char *const *)names, weights, c->nparents);
            free(names);
            free(weights);
        }
    }
    return gs;
}

void cdn_ugroups_free(struct cdn_ugroups **gsp)
{
    struct cdn_ugroups *gs = *gsp;
    *gsp = NULL;
    if (gs == NULL)
        return;
    for (size_t i = 0; i < gs->n; i++) {
        struct cdn_ugroup *g = &gs->v[i];
        for (size_t j = 0; j < g->nparents; j++)
            free(g->parents[j].host);
        free(g->parents);
        cdn_ring_free(&g->ring);
    }
    free(gs->v);
    free(gs);
}

size_t cdn_ugroup_order(struct cdn_ugroup *g, const void *key, size_t len, size_t *order, size_t max)
{
    size_t n = g->nparents < max ? g->nparents : max;
    if (n == 0)
        return 0;
    switch (g->conf->policy) {
    case CDN_UGROUP_CONSISTENT_HASH:
        if (g->ring != NULL)
            return cdn_ring_order(g->ring, cdn_ring_hash(key, len), order, max);
        break;
    case CDN_UGROUP_ROUND_ROBIN: {
        uint64_t start = atomic_fetch_add_explicit(&g->rr, 1, memory_order_relaxed);
        for (size_t i = 0; i < n; i++)
            order[i] = (size_t)((start + i) % g->nparents);
        return n;
    }
    default:
        break;
    }
    for (size_t i = 0; i < n; i++) /* first_live: the config's order */
        order[i] = i;
    return n;
}

size_t cdn_ugroup_next(struct cdn_ugroup *g, const size_t *order, size_t n, size_t *pos, uint64_t now,
                       bool *probe)
{
    *probe = false;
    while (*pos < n) {
        size_t p = order[(*pos)++];
        if (p < g->nparents && cdn_health_usable(&g->parents[p].health, now, probe))
            return p;
    }
    return SIZE_MAX;
}

size_t cdn_ugroup_pick(struct cdn_ugroup *g, const size_t *order, size_t n, size_t *pos, unsigned attempts,
                       uint64_t now, bool *probe)
{
    *probe = false;
    if (attempts <= g->conf->retries) {
        size_t p = cdn_ugroup_next(g, order, n, pos, now, probe);
        if (p != SIZE_MAX)
            return p;
    }
    return g->conf->go_direct ? CDN_UGROUP_DIRECT : CDN_UGROUP_NONE;
}

void cdn_ugroup_success(struct cdn_ugroup *g, size_t p, bool probe)
{
    struct cdn_ugroup_parent *pp = &g->parents[p];
    if (atomic_load(&pp->check_streak) >= g->hcfg.threshold) {
        /* its checks say out: an answered request does not put it back, a probe waits longer */
        if (probe)
            cdn_health_failure(&pp->health, &g->hcfg, cdn_now_ms(), true);
        return;
    }
    if (cdn_health_success(&pp->health, probe))
        cdn_log(CDN_LOG_WARN, "upstream group %s: parent %s (%s) is up again: %s", g->conf->name,
                pp->conf->name, pp->conf->address, probe ? "probe succeeded" : "request or check succeeded");
}

void cdn_ugroup_failure(struct cdn_ugroup *g, size_t p, bool probe, uint64_t now, const char *why)
{
    struct cdn_ugroup_parent *pp = &g->parents[p];
    atomic_fetch_add_explicit(&pp->failures, 1, memory_order_relaxed);
    if (cdn_health_failure(&pp->health, &g->hcfg, now, probe))
        cdn_log(CDN_LOG_WARN,
                "upstream group %s: parent %s (%s) is down after %u consecutive failures (last: %s); "
                "probing again in %llu ms",
                g->conf->name, pp->conf->name, pp->conf->address, g->hcfg.threshold, why,
                (unsigned long long)g->hcfg.backoff_ms);
}

void cdn_ugroup_check(struct cdn_ugroup *g, size_t p, bool ok, uint64_t now, const char *why)
{
    struct cdn_ugroup_parent *pp = &g->parents[p];
    if (ok) {
        atomic_store(&pp->check_streak, 0);
        cdn_ugroup_success(g, p, false);
        return;
    }
    unsigned n = atomic_fetch_add(&pp->check_streak, 1) + 1;
    atomic_fetch_add_explicit(&pp->failures, 1, memory_order_relaxed);
    if (n < g->hcfg.threshold)
        return;
    struct cdn_health_cfg at_once = g->hcfg;
    at_once.threshold = 1; /* the streak was counted here */
    if (cdn_health_failure(&pp->health, &at_once, now, false))
        cdn_log(
            CDN_LOG_WARN,
            "upstream group %s: parent %s (%s) is down after %u failed health checks in a row (last: %s); "
            "checking again every %llu ms",
            g->conf->name, pp->conf->name, pp->conf->address, n, why,
            (unsigned long long)g->conf->health.check_interval_ms);
}

void cdn_ugroup_abandon(struct cdn_ugroup *g, size_t p, bool probe)
{
    if (probe) /* lib/health.h has no verdict for "nobody knows": just let another request probe */
        atomic_store(&g->parents[p].health.probing, false);
}

static void add(struct cdn_stats_extra *x, enum cdn_stat fam, const char *group, const char *parent,
                const char *kind, uint64_t v)
{
    const char *vals[3] = {group, parent, kind};
    cdn_stats_extra_add(x, fam, vals, (int64_t)v, false);
}

void cdn_ugroups_stats(const struct cdn_ugroups *gs, struct cdn_stats_extra *x)
{
    for (size_t i = 0; gs != NULL && i < gs->n; i++) {
        const struct cdn_ugroup *g = &gs->v[i];
        for (size_t j = 0; j < g->nparents; j++) {
            const struct cdn_ugroup_parent *p = &g->parents[j];
            const char *gn = g->conf->name, *pn = p->conf->name;
#define LD(f) atomic_load_explicit(&p->f, memory_order_relaxed)
            add(x, CDN_STAT_parent_requests, gn, pn, NULL, LD(requests));
            add(x, CDN_STAT_parent_failures, gn, pn, NULL, LD(failures));
            add(x, CDN_STAT_parent_state_changes, gn, pn, NULL, LD(health.state_changes));
            add(x, CDN_STAT_parent_up, gn, pn, NULL, cdn_health_is_up(&p->health) ? 1 : 0);
            add(x, CDN_STAT_parent_connections, gn, pn, "opened", LD(conns_opened));
            add(x, CDN_STAT_parent_connections, gn, pn, "reused", LD(conns_reused));
            add(x, CDN_STAT_parent_tls_handshakes, gn, pn, "full", LD(tls_full));
            add(x, CDN_STAT_parent_tls_handshakes, gn, pn, "resumed", LD(tls_resumed));
#undef LD
        }
    }
}
