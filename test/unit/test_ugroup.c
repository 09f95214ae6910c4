/* Unit tests for lib/ugroup: parent order per policy, health skipping, retries and go_direct, the
 * per-parent series. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/conf.h"
#include "lib/ugroup.h"
#include "test/unit/suites.h"

/* A config with one group of n parents "p0".."p<n-1>" at 10.0.0.<i>:443. */
static struct cdn_conf *conf_of(size_t n, int policy, unsigned retries, bool go_direct)
{
    struct cdn_conf *c = calloc(1, sizeof(*c));
    c->ugroups = calloc(1, sizeof(*c->ugroups));
    c->nugroups = 1;
    struct cdn_conf_ugroup *g = &c->ugroups[0];
    g->name = strdup("g");
    g->policy = policy;
    g->retries = retries;
    g->go_direct = go_direct;
    g->health.fail_threshold = 2;
    g->health.backoff_ms = 1000;
    g->parents = calloc(n, sizeof(*g->parents));
    g->nparents = n;
    for (size_t i = 0; i < n; i++) {
        char b[32];
        snprintf(b, sizeof(b), "10.0.0.%zu:443", i);
        g->parents[i].address = strdup(b);
        snprintf(b, sizeof(b), "p%zu", i);
        g->parents[i].name = strdup(b);
        g->parents[i].weight = 1;
    }
    return c;
}

static void conf_done(struct cdn_conf *c)
{
    struct cdn_conf_ugroup *g = &c->ugroups[0];
    for (size_t i = 0; i < g->nparents; i++) {
        free(g->parents[i].address);
        free(g->parents[i].name);
    }
    free(g->parents);
    free(g->name);
    free(c->ugroups);
    free(c);
}

START_TEST(parents_parsed)
{
    struct cdn_conf *c = conf_of(2, CDN_UGROUP_FIRST_LIVE, 2, false);
    free(c->ugroups[0].parents[1].address);
    c->ugroups[0].parents[1].address = strdup("[::1]:8443");
    struct cdn_ugroups *gs = cdn_ugroups_new(c);
    ck_assert_uint_eq(gs->n, 1);
    ck_assert_str_eq(gs->v[0].parents[0].host, "10.0.0.0");
    ck_assert_uint_eq(gs->v[0].parents[0].port, 443);
    ck_assert_str_eq(gs->v[0].parents[1].host, "::1");
    ck_assert_uint_eq(gs->v[0].parents[1].port, 8443);
    ck_assert_ptr_null(gs->v[0].ring);
    cdn_ugroups_free(&gs);
    ck_assert_ptr_null(gs);
    conf_done(c);
}
END_TEST

START_TEST(first_live_and_round_robin)
{
    struct cdn_conf *c = conf_of(3, CDN_UGROUP_FIRST_LIVE, 2, false);
    struct cdn_ugroups *gs = cdn_ugroups_new(c);
    size_t o[8];
    ck_assert_uint_eq(cdn_ugroup_order(&gs->v[0], "k", 1, o, 8), 3);
    ck_assert(o[0] == 0 && o[1] == 1 && o[2] == 2);
    ck_assert_uint_eq(cdn_ugroup_order(&gs->v[0], "k", 1, o, 2), 2); /* bounded by max */
    cdn_ugroups_free(&gs);
    c->ugroups[0].policy = CDN_UGROUP_ROUND_ROBIN;
    gs = cdn_ugroups_new(c);
    unsigned first[3] = {0};
    for (int i = 0; i < 30; i++) {
        ck_assert_uint_eq(cdn_ugroup_order(&gs->v[0], "k", 1, o, 8), 3);
        ck_assert_uint_eq(o[1], (o[0] + 1) % 3); /* then the others, in turn */
        ck_assert_uint_eq(o[2], (o[0] + 2) % 3);
        first[o[0]]++;
    }
    ck_assert(first[0] == 10 && first[1] == 10 && first[2] == 10);
    cdn_ugroups_free(&gs);
    conf_done(c);
}
END_TEST

START_TEST(consistent_hash_is_stable_and_spread)
{
    struct cdn_conf *c = conf_of(3, CDN_UGROUP_CONSISTENT_HASH, 2, false);
    struct cdn_ugroups *gs = cdn_ugroups_new(c);
    ck_assert_ptr_nonnull(gs->v[0].ring);
    unsigned count[3] = {0};
    for (int i = 0; i < 3000; i++) {
        char k[48];
        snprintf(k, sizeof(k), "https://cdn.test/obj/%d", i);
        size_t o[8], o2[8];
        ck_assert_uint_eq(cdn_ugroup_order(&gs->v[0], k, strlen(k), o, 8), 3);
        ck_assert_uint_eq(cdn_ugroup_order(&gs->v[0], k, strlen(k), o2, 8), 3);
        ck_assert(memcmp(o, o2, sizeof(size_t) * 3) == 0); /* the same key, the same order */
        ck_assert(o[0] != o[1] && o[1] != o[2] && o[0] != o[2]);
        count[o[0]]++;
    }
    for (int p = 0; p < 3; p++)
        ck_assert_msg(count[p] > 800 && count[p] < 1200, "parent %d has %u of 3000 keys", p, count[p]);
    cdn_ugroups_free(&gs);
    conf_done(c);
}
END_TEST

START_TEST(health_skips_and_probe)
{
    struct cdn_conf *c = conf_of(3, CDN_UGROUP_FIRST_LIVE, 2, false);
    struct cdn_ugroups *gs = cdn_ugroups_new(c);
    struct cdn_ugroup *g = &gs->v[0];
    size_t o[8], n = cdn_ugroup_order(g, "k", 1, o, 8), pos = 0;
    bool probe;
    /* two failures (threshold 2) take p0 out */
    cdn_ugroup_failure(g, 0, false, 100, "connect refused");
    ck_assert(cdn_health_is_up(&g->parents[0].health));
    cdn_ugroup_failure(g, 0, false, 100, "connect refused");
    ck_assert(!cdn_health_is_up(&g->parents[0].health));
    ck_assert_uint_eq(atomic_load(&g->parents[0].failures), 2);
    ck_assert_uint_eq(cdn_ugroup_next(g, o, n, &pos, 200, &probe), 1);
    ck_assert(!probe);
    ck_assert_uint_eq(pos, 2);
    ck_assert_uint_eq(cdn_ugroup_next(g, o, n, &pos, 200, &probe), 2);
    ck_assert_uint_eq(cdn_ugroup_next(g, o, n, &pos, 200, &probe), SIZE_MAX);
    /* after the back-off one request probes p0; the others still skip it */
    pos = 0;
    ck_assert_uint_eq(cdn_ugroup_next(g, o, n, &pos, 1100, &probe), 0);
    ck_assert(probe);
    bool probe2;
    size_t pos2 = 0;
    ck_assert_uint_eq(cdn_ugroup_next(g, o, n, &pos2, 1100, &probe2), 1);
    ck_assert(!probe2);
    /* the probe went away without a verdict: the next request probes */
    cdn_ugroup_abandon(g, 0, true);
    pos2 = 0;
    ck_assert_uint_eq(cdn_ugroup_next(g, o, n, &pos2, 1100, &probe2), 0);
    ck_assert(probe2);
    cdn_ugroup_success(g, 0, true);
    ck_assert(cdn_health_is_up(&g->parents[0].health));
    ck_assert_uint_eq(atomic_load(&g->parents[0].health.state_changes), 2);
    cdn_ugroups_free(&gs);
    conf_done(c);
}
END_TEST

START_TEST(active_checks)
{
    struct cdn_conf *c = conf_of(2, CDN_UGROUP_FIRST_LIVE, 2, false);
    c->ugroups[0].health.fail_threshold = 3;
    c->ugroups[0].health.check_interval_ms = 500;
    struct cdn_ugroups *gs = cdn_ugroups_new(c);
    struct cdn_ugroup *g = &gs->v[0];
    struct cdn_ugroup_parent *p0 = &g->parents[0];
    /* failed checks with successful requests in between: the checks' streak still takes it out */
    cdn_ugroup_check(g, 0, false, 100, "status 503");
    cdn_ugroup_success(g, 0, false);
    cdn_ugroup_check(g, 0, false, 200, "status 503");
    cdn_ugroup_success(g, 0, false);
    ck_assert(cdn_health_is_up(&p0->health));
    cdn_ugroup_check(g, 0, false, 300, "status 503");
    ck_assert(!cdn_health_is_up(&p0->health));
    ck_assert_uint_eq(atomic_load(&p0->failures), 3);
    /* a request that was in flight answers: still out; so after a probe that succeeds */
    cdn_ugroup_success(g, 0, false);
    ck_assert(!cdn_health_is_up(&p0->health));
    size_t o[2] = {0, 1}, pos = 0;
    bool probe;
    ck_assert_uint_eq(cdn_ugroup_next(g, o, 2, &pos, 300 + 1000, &probe), 0); /* back-off passed */
    ck_assert(probe);
    cdn_ugroup_success(g, 0, true);
    ck_assert(!cdn_health_is_up(&p0->health));
    pos = 0; /* the failed probe doubled the wait and freed the probe slot */
    ck_assert_uint_eq(cdn_ugroup_next(g, o, 2, &pos, 1300 + 1500, &probe), 1);
    ck_assert_uint_eq(atomic_load(&p0->health.state_changes), 1);
    /* a passing check puts it back at once, and requests count again */
    cdn_ugroup_check(g, 0, true, 2000, NULL);
    ck_assert(cdn_health_is_up(&p0->health));
    ck_assert_uint_eq(atomic_load(&p0->health.state_changes), 2);
    ck_assert_uint_eq(atomic_load(&p0->check_streak), 0);
    cdn_ugroups_free(&gs);
    conf_done(c);
}
END_TEST

START_TEST(retries_and_go_direct)
{
    struct cdn_conf *c = conf_of(3, CDN_UGROUP_FIRST_LIVE, 1, false);
    struct cdn_ugroups *gs = cdn_ugroups_new(c);
    struct cdn_ugroup *g = &gs->v[0];
    size_t o[8], n = cdn_ugroup_order(g, "k", 1, o, 8), pos = 0;
    bool probe;
    /* retries 1: two attempts, then nothing */
    ck_assert_uint_eq(cdn_ugroup_pick(g, o, n, &pos, 0, 0, &probe), 0);
    ck_assert_uint_eq(cdn_ugroup_pick(g, o, n, &pos, 1, 0, &probe), 1);
    ck_assert_uint_eq(cdn_ugroup_pick(g, o, n, &pos, 2, 0, &probe), CDN_UGROUP_NONE);
    /* every parent out: none at once, or direct when the group may go direct */
    for (size_t p = 0; p < 3; p++) {
        cdn_ugroup_failure(g, p, false, 0, "x");
        cdn_ugroup_failure(g, p, false, 0, "x");
    }
    pos = 0;
    ck_assert_uint_eq(cdn_ugroup_pick(g, o, n, &pos, 0, 10, &probe), CDN_UGROUP_NONE);
    cdn_ugroups_free(&gs);
    c->ugroups[0].go_direct = true;
    gs = cdn_ugroups_new(c);
    g = &gs->v[0];
    pos = 0;
    ck_assert_uint_eq(cdn_ugroup_pick(g, o, n, &pos, 0, 10, &probe), 0); /* fresh health: all up */
    for (size_t p = 0; p < 3; p++) {
        cdn_ugroup_failure(g, p, false, 0, "x");
        cdn_ugroup_failure(g, p, false, 0, "x");
    }
    pos = 0;
    ck_assert_uint_eq(cdn_ugroup_pick(g, o, n, &pos, 0, 10, &probe), CDN_UGROUP_DIRECT);
    pos = 0; /* retries used up: direct too */
    ck_assert_uint_eq(cdn_ugroup_pick(g, o, n, &pos, 2, 5000, &probe), CDN_UGROUP_DIRECT);
    cdn_ugroups_free(&gs);
    conf_done(c);
}
END_TEST

START_TEST(series)
{
    struct cdn_conf *c = conf_of(2, CDN_UGROUP_FIRST_LIVE, 2, false);
    struct cdn_ugroups *gs = cdn_ugroups_new(c);
    atomic_store(&gs->v[0].parents[1].requests, 5);
    atomic_store(&gs->v[0].parents[1].tls_resumed, 4);
    cdn_ugroup_failure(&gs->v[0], 1, false, 0, "x");
    cdn_ugroup_failure(&gs->v[0], 1, false, 0, "x");
    struct cdn_stats_extra x;
    cdn_stats_extra_init(&x);
    cdn_ugroups_stats(gs, &x);
    ck_assert_uint_eq(x.nseries, 2 * 8);
    bool req = false, up = false, res = false;
    for (size_t i = 0; i < x.nseries; i++) {
        const struct cdn_stats_series *s = &x.series[i];
        if (strcmp(s->values[1], "p1") != 0)
            continue;
        ck_assert_str_eq(s->values[0], "g");
        if (s->family == CDN_STAT_parent_requests)
            req = s->value == 5;
        if (s->family == CDN_STAT_parent_up)
            up = s->value == 0;
        if (s->family == CDN_STAT_parent_tls_handshakes && strcmp(s->values[2], "resumed") == 0)
            res = s->value == 4;
    }
    ck_assert(req && up && res);
    cdn_stats_extra_dispose(&x);
    cdn_ugroups_free(&gs);
    conf_done(c);
}
END_TEST

Suite *suite_ugroup(void)
{
    Suite *s = suite_create("ugroup");
    TCase *tc = tcase_create("select");
    tcase_add_test(tc, parents_parsed);
    tcase_add_test(tc, first_live_and_round_robin);
    tcase_add_test(tc, consistent_hash_is_stable_and_spread);
    tcase_add_test(tc, health_skips_and_probe);
    tcase_add_test(tc, active_checks);
    tcase_add_test(tc, retries_and_go_direct);
    tcase_add_test(tc, series);
    suite_add_tcase(s, tc);
    return s;
}
