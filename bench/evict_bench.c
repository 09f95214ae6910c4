/*
 * evict_bench: replays Zipf-distributed request traces through cache/evict (SIEVE) and through a
 * plain LRU, and prints the hit ratio of each and their difference as a Markdown table.
 *
 * Not a timed benchmark: it measures policy quality only. Every object has size 1 and the cache
 * holds a fixed number of objects; every request counts (cold misses included); both policies see
 * the same trace. The trace generator (inverse CDF over 100 k ranks, ranks shuffled onto ids, a
 * fixed-seed xoshiro256**) is deterministic, so the numbers are reproducible run to run.
 *
 * Usage: evict-bench [requests [objects]]   (defaults: 1000000 100000)
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cache/evict.h"
#include "lib/util.h"

struct rng {
    uint64_t s[4];
};

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
    uint64_t res = rotl(r->s[1] * 5, 7) * 9, t = r->s[1] << 17;
    r->s[2] ^= r->s[0];
    r->s[3] ^= r->s[1];
    r->s[1] ^= r->s[2];
    r->s[0] ^= r->s[3];
    r->s[2] ^= t;
    r->s[3] = rotl(r->s[3], 45);
    return res;
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        seed += 0x9e3779b97f4a7c15ull;
        uint64_t z = seed;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        r->s[i] = z ^ (z >> 31);
    }
}

/* n requests over `objects` ids; rank k (0-based) has probability proportional to 1/(k+1)^alpha. */
static uint32_t *zipf_trace(double alpha, uint32_t objects, size_t n, uint64_t seed)
{
    double *cdf = cdn_xmalloc(objects * sizeof(*cdf)), sum = 0;
    for (uint32_t k = 0; k < objects; k++)
        cdf[k] = (sum += pow((double)k + 1, -alpha));
    uint32_t *perm = cdn_xmalloc(objects * sizeof(*perm));
    struct rng r;
    rng_seed(&r, seed);
    for (uint32_t k = 0; k < objects; k++)
        perm[k] = k;
    for (uint32_t k = objects - 1; k > 0; k--) {
        uint32_t j = (uint32_t)(rng_next(&r) % (k + 1));
        uint32_t t = perm[k];
        perm[k] = perm[j];
        perm[j] = t;
    }
    uint32_t *trace = cdn_xmalloc(n * sizeof(*trace));
    for (size_t i = 0; i < n; i++) {
        double u = (double)(rng_next(&r) >> 11) / 9007199254740992.0 * sum;
        uint32_t lo = 0, hi = objects - 1;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        trace[i] = perm[lo];
    }
    free(cdf);
    free(perm);
    return trace;
}

/* SIEVE, and with `admit` the store's admission: every request is counted, and a miss in a full cache
 * is only stored if cache_evict_admit says so (as cache_store_admit does once the store is full). */
static double run_sieve(const uint32_t *trace, size_t n, size_t cap, bool admit)
{
    struct cache_evict *ev = cache_evict_new();
    if (admit)
        cache_evict_admission(ev, cap);
    size_t hits = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = trace[i];
        cache_evict_seen(ev, id);
        if (cache_evict_contains(ev, id)) {
            cache_evict_hit(ev, id);
            hits++;
            continue;
        }
        if (cache_evict_count(ev) >= cap) {
            if (!cache_evict_admit(ev, id))
                continue;
            uint64_t victim;
            CDN_ASSERT(cache_evict_one(ev, &victim, NULL) == 0);
        }
        CDN_ASSERT(cache_evict_insert(ev, id, 1) == 0);
    }
    cache_evict_free(&ev);
    return (double)hits / (double)n;
}

/* Plain LRU: a doubly linked list over ids (ids are dense, < objects), most recent at head. */
static double run_lru(const uint32_t *trace, size_t n, size_t cap, uint32_t objects)
{
    const uint32_t none = UINT32_MAX;
    uint32_t *prev = cdn_xmalloc(objects * sizeof(*prev)), *next = cdn_xmalloc(objects * sizeof(*next));
    bool *in = cdn_xcalloc(objects, sizeof(*in));
    uint32_t head = none, tail = none;
    size_t count = 0, hits = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = trace[i];
        if (in[id]) {
            hits++;
            if (id == head)
                continue;
            /* unlink, then push at head */
            next[prev[id]] = next[id];
            if (next[id] != none)
                prev[next[id]] = prev[id];
            else
                tail = prev[id];
        } else {
            if (count == cap) {
                uint32_t v = tail;
                tail = prev[v];
                if (tail != none)
                    next[tail] = none;
                else
                    head = none;
                in[v] = false;
                count--;
            }
            in[id] = true;
            count++;
        }
        prev[id] = none;
        next[id] = head;
        if (head != none)
            prev[head] = id;
        head = id;
        if (tail == none)
            tail = id;
    }
    free(prev);
    free(next);
    free(in);
    return (double)hits / (double)n;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    uint32_t objects = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) : 100000;
    if (n == 0 || objects < 100) {
        fprintf(stderr, "usage: %s [requests [objects >= 100]]\n", argv[0]);
        return 2;
    }
    static const double alphas[] = {0.8, 1.0, 1.2};
    static const unsigned pcts[] = {1, 5, 10};
    printf("SIEVE (cache/evict) vs LRU: %zu requests, %u objects, Zipf; cache size in %% of the objects\n\n",
           n, objects);
    printf(
        "| alpha | cache | SIEVE hit | SIEVE+admission hit | LRU hit | SIEVE - LRU | SIEVE+adm. - LRU |\n");
    printf(
        "|------:|------:|----------:|--------------------:|--------:|------------:|-----------------:|\n");
    for (size_t a = 0; a < sizeof(alphas) / sizeof(alphas[0]); a++) {
        uint32_t *trace = zipf_trace(alphas[a], objects, n, 42 + a);
        for (size_t p = 0; p < sizeof(pcts) / sizeof(pcts[0]); p++) {
            size_t cap = (size_t)objects * pcts[p] / 100;
            double s = run_sieve(trace, n, cap, false), sa = run_sieve(trace, n, cap, true);
            double l = run_lru(trace, n, cap, objects);
            printf("| %5.1f | %4u%% | %8.2f%% | %18.2f%% | %6.2f%% | %+8.2f pp | %+13.2f pp |\n", alphas[a],
                   pcts[p], 100 * s, 100 * sa, 100 * l, 100 * (s - l), 100 * (sa - l));
        }
        free(trace);
    }

    /* make bench case (f): 20000 objects of 16 KiB, alpha 1.0, a 128 MiB edge cache. LRU gets the whole
     * 8192 objects; the store holds fewer (its records and B-tree pages take room too). */
    uint32_t *trace = zipf_trace(1.0, 20000, n, 7);
    double l = run_lru(trace, n, 8192, 20000);
    printf("\nmake bench (f): %zu requests over 20000 objects, alpha 1.0; LRU with 8192 objects: %.2f%%\n\n",
           n, 100 * l);
    printf("| objects | SIEVE hit | SIEVE+admission hit | SIEVE+adm. - LRU(8192) |\n");
    printf("|--------:|----------:|--------------------:|-----------------------:|\n");
    static const size_t caps[] = {6400, 6800, 7200, 7600, 8192};
    for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
        double s = run_sieve(trace, n, caps[c], false), sa = run_sieve(trace, n, caps[c], true);
        printf("| %7zu | %8.2f%% | %18.2f%% | %+19.2f pp |\n", caps[c], 100 * s, 100 * sa, 100 * (sa - l));
    }
    free(trace);
    return 0;
}
