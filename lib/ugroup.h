/*
 * ugroup: the runtime of the config's upstream_groups: (docs/TIERING.md), built once per generation
 * and shared by every worker. A group knows its parents, orders them for a request by its policy
 * (consistent_hash on the cache key, round_robin, first_live), skips those its health (lib/health.h)
 * says are out, and keeps per-parent counters with relaxed atomics for /stats.
 *
 * Selection is a walk: cdn_ugroup_order gives every parent in the order this request would try them,
 * cdn_ugroup_next hands out the next usable one, and the caller reports each attempt's outcome with
 * cdn_ugroup_success / cdn_ugroup_failure, which log a line when the parent's state changes.
 */
#ifndef CDN_UGROUP_H
#define CDN_UGROUP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/conf.h"
#include "lib/health.h"
#include "lib/ring.h"
#include "lib/stats.h"

struct cdn_ugroup_parent {
    const struct cdn_conf_parent *conf; /* borrowed from the generation's config */
    char *host;                         /* from conf->address; an IPv6 literal without brackets */
    uint16_t port;
    struct cdn_health health;
    _Atomic unsigned check_streak; /* active checks failed in a row (written by lib/hcheck) */
    _Atomic uint64_t requests, failures, conns_opened, conns_reused, tls_full, tls_resumed;
};

struct cdn_ugroup {
    const struct cdn_conf_ugroup *conf; /* borrowed */
    struct cdn_ugroup_parent *parents;
    size_t nparents;
    struct cdn_ring *ring; /* consistent_hash only */
    _Atomic uint64_t rr;   /* round_robin: the next request's first parent */
    struct cdn_health_cfg hcfg;
};

struct cdn_ugroups {
    struct cdn_ugroup *v; /* one per conf->ugroups[], same order */
    size_t n;
};

/* Builds the groups of conf (which must outlive them). Never fails on a config that loaded. */
struct cdn_ugroups *cdn_ugroups_new(const struct cdn_conf *conf);
void cdn_ugroups_free(struct cdn_ugroups **gs);

/* Every parent of g in the order a request tries them: order[0..n) (n = min(max, g->nparents)).
 * key/len: the request's cache key (or scheme+host+path) for consistent_hash; ignored by the others.
 * round_robin advances the group's counter (one step per call). */
size_t cdn_ugroup_order(struct cdn_ugroup *g, const void *key, size_t len, size_t *order, size_t max);

/* The next parent from order[*pos..n) that health lets through now; advances *pos past it (and past
 * the skipped ones). *probe: the caller was made the half-open probe of a parent that is out, and
 * must report the outcome. SIZE_MAX when none is left. */
size_t cdn_ugroup_next(struct cdn_ugroup *g, const size_t *order, size_t n, size_t *pos, uint64_t now,
                       bool *probe);

#define CDN_UGROUP_NONE   SIZE_MAX       /* nothing left to try: the request fails */
#define CDN_UGROUP_DIRECT (SIZE_MAX - 1) /* go_direct: connect to the remap target itself */

/* The next attempt of a request that already tried `attempts` parents: the next usable parent (as
 * cdn_ugroup_next) while the group's retries allow one more, else CDN_UGROUP_DIRECT when the group may
 * go direct, else CDN_UGROUP_NONE. */
size_t cdn_ugroup_pick(struct cdn_ugroup *g, const size_t *order, size_t n, size_t *pos, unsigned attempts,
                       uint64_t now, bool *probe);

/* An attempt's outcome on parent p. why: for the log line on a state change. */
void cdn_ugroup_success(struct cdn_ugroup *g, size_t p, bool probe);
void cdn_ugroup_failure(struct cdn_ugroup *g, size_t p, bool probe, uint64_t now, const char *why);
/* The outcome of an active check of parent p. Checks keep their own streak of failures: at
 * fail_threshold in a row the parent is out whatever requests say meanwhile (a parent may serve
 * requests and still ask to be drained through its health path), and while the streak lasts a
 * request's success does not put it back (a probe's counts as a failed probe). A passing check puts
 * the parent back at once. */
void cdn_ugroup_check(struct cdn_ugroup *g, size_t p, bool ok, uint64_t now, const char *why);
/* An attempt that ended with no verdict (the client went away): a probe lets the next request probe. */
void cdn_ugroup_abandon(struct cdn_ugroup *g, size_t p, bool probe);

/* Registers the per-parent series (lib/stats_tbl.h parent_*) of every group into x. */
void cdn_ugroups_stats(const struct cdn_ugroups *gs, struct cdn_stats_extra *x);

#endif
