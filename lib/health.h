/*
 * health: the up/down state of one parent, shared by every worker (atomics, no locks).
 *
 * Passive: a parent is marked down after `threshold` consecutive failures (connect refused or timed
 * out, TLS failure, no response head). While down it is skipped until its back-off has passed; then
 * ONE request is let through as a probe (half-open): its success puts the parent back, its failure
 * doubles the back-off (up to 16 times the configured one). Active checks report through the same
 * calls, so both kinds of evidence agree.
 */
#ifndef CDN_HEALTH_H
#define CDN_HEALTH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct cdn_health {
    _Atomic unsigned failures;      /* consecutive */
    _Atomic uint64_t down_until;    /* ms (cdn_now_ms); 0 = up */
    _Atomic uint64_t backoff_ms;    /* current back-off while down */
    _Atomic bool probing;           /* a half-open probe is in flight */
    _Atomic uint64_t state_changes; /* up->down and down->up */
};

struct cdn_health_cfg {
    unsigned threshold; /* consecutive failures that take a parent down; >= 1 */
    uint64_t backoff_ms;
};

void cdn_health_init(struct cdn_health *h);

/* Whether a request may go to the parent now. When it is down and its back-off has passed, the first
 * caller becomes the probe (*probe set true) and the others keep skipping it. */
bool cdn_health_usable(struct cdn_health *h, uint64_t now, bool *probe);
bool cdn_health_is_up(const struct cdn_health *h);

/* Outcome of a request (or an active check). probe: the caller was the probe. Returns true when the
 * parent's state changed (for a log line). */
bool cdn_health_success(struct cdn_health *h, bool probe);
bool cdn_health_failure(struct cdn_health *h, const struct cdn_health_cfg *cfg, uint64_t now, bool probe);

#endif
