/* ring: see ring.h. Points are sorted once; a lookup is a binary search and a short walk. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/ring.h"
#include "lib/util.h"

struct ring_point {
    uint64_t at;
    size_t parent;
};

struct cdn_ring {
    struct ring_point *points;
    size_t npoints, nparents;
};

uint64_t cdn_ring_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    /* splitmix64 finaliser: FNV alone clusters similar short keys ("name#1", "name#2") */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

static int cmp_point(const void *a, const void *b)
{
    const struct ring_point *x = a, *y = b;
    if (x->at != y->at)
        return x->at < y->at ? -1 : 1;
    return x->parent < y->parent ? -1 : x->parent > y->parent; /* deterministic on a collision */
}

struct cdn_ring *cdn_ring_new(const char *const *names, const unsigned *weights, size_t n)
{
    struct cdn_ring *r = cdn_xcalloc(1, sizeof(*r));
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += (size_t)(weights[i] > 0 ? weights[i] : 1) * CDN_RING_POINTS;
    r->points = cdn_xcalloc(total > 0 ? total : 1, sizeof(*r->points));
    r->nparents = n;
    for (size_t i = 0; i < n; i++) {
        size_t pts = (size_t)(weights[i] > 0 ? weights[i] : 1) * CDN_RING_POINTS;
        for (size_t k = 0; k < pts; k++) {
            char buf[512];
            int len = snprintf(buf, sizeof(buf), "%s#%zu", names[i], k);
            r->points[r->npoints++] = (struct ring_point){
                .at = cdn_ring_hash(buf, (size_t)len < sizeof(buf) ? (size_t)len : sizeof(buf) - 1),
                .parent = i};
        }
    }
    qsort(r->points, r->npoints, sizeof(*r->points), cmp_point);
    return r;
}

void cdn_ring_free(struct cdn_ring **rp)
{
    struct cdn_ring *r = *rp;
    if (r == NULL)
        return;
    free(r->points);
    free(r);
    *rp = NULL;
}

size_t cdn_ring_order(const struct cdn_ring *r, uint64_t hash, size_t *order, size_t max)
{
    if (r->npoints == 0 || max == 0)
        return 0;
    size_t lo = 0, hi = r->npoints; /* first point with at >= hash */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->points[mid].at < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t want = max < r->nparents ? max : r->nparents, k = 0;
    for (size_t i = 0; i < r->npoints && k < want; i++) {
        size_t p = r->points[(lo + i) % r->npoints].parent;
        bool seen = false;
        for (size_t j = 0; j < k && !seen; j++)
            seen = order[j] == p;
        if (!seen)
            order[k++] = p;
    }
    return k;
}
