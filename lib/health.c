/* health: see health.h. Races between workers only decide who counts a transition, never its
 * outcome: the state is a compare-and-swap on down_until. */
#include "lib/health.h"

void cdn_health_init(struct cdn_health *h)
{
    atomic_init(&h->failures, 0);
    atomic_init(&h->down_until, 0);
    atomic_init(&h->backoff_ms, 0);
    atomic_init(&h->probing, false);
    atomic_init(&h->state_changes, 0);
}

bool cdn_health_is_up(const struct cdn_health *h)
{
    return atomic_load(&h->down_until) == 0;
}

bool cdn_health_usable(struct cdn_health *h, uint64_t now, bool *probe)
{
    *probe = false;
    uint64_t until = atomic_load(&h->down_until);
    if (until == 0)
        return true;
    if (now < until)
        return false;
    bool expected = false;
    if (!atomic_compare_exchange_strong(&h->probing, &expected, true))
        return false; /* someone else probes */
    *probe = true;
    return true;
}

bool cdn_health_success(struct cdn_health *h, bool probe)
{
    atomic_store(&h->failures, 0);
    if (probe)
        atomic_store(&h->probing, false);
    uint64_t until = atomic_load(&h->down_until);
    if (until != 0 && atomic_compare_exchange_strong(&h->down_until, &until, 0)) {
        atomic_store(&h->backoff_ms, 0);
        atomic_fetch_add(&h->state_changes, 1);
        return true;
    }
    return false;
}

bool cdn_health_failure(struct cdn_health *h, const struct cdn_health_cfg *cfg, uint64_t now, bool probe)
{
    unsigned n = atomic_fetch_add(&h->failures, 1) + 1;
    uint64_t until = atomic_load(&h->down_until);
    if (until != 0) {
        if (probe) { /* the probe failed: wait longer before the next one */
            uint64_t b = atomic_load(&h->backoff_ms) * 2, max = cfg->backoff_ms * 16;
            b = b > max ? max : b < cfg->backoff_ms ? cfg->backoff_ms : b;
            atomic_store(&h->backoff_ms, b);
            /* a CAS: if a request in flight succeeded meanwhile, the parent is up and stays up */
            atomic_compare_exchange_strong(&h->down_until, &until, now + b);
            atomic_store(&h->probing, false);
        }
        return false;
    }
    if (n < (cfg->threshold > 0 ? cfg->threshold : 1))
        return false;
    uint64_t zero = 0, next = now + cfg->backoff_ms;
    if (next == 0)
        next = 1;
    if (!atomic_compare_exchange_strong(&h->down_until, &zero, next))
        return false;
    atomic_store(&h->backoff_ms, cfg->backoff_ms);
    atomic_fetch_add(&h->state_changes, 1);
    return true;
}
