/*
 * ring: a consistent-hash ring with virtual nodes (ketama style), for parent selection. Each parent
 * gets CDN_RING_POINTS points per unit of weight, placed by hashing "name#i"; a key goes to the first
 * point at or after its own hash. Adding or removing one parent of N moves about 1/N of the keys, and
 * only to or from that parent. Pure: no I/O, no locks; immutable once built.
 */
#ifndef CDN_RING_H
#define CDN_RING_H

#include <stddef.h>
#include <stdint.h>

#define CDN_RING_POINTS 160 /* per unit of weight: enough for a spread within a few percent */

struct cdn_ring;

/* Builds a ring of n parents; names[i] identifies parent i (the same name lands on the same points
 * in every ring, so rings built by different processes agree), weights[i] >= 1. */
struct cdn_ring *cdn_ring_new(const char *const *names, const unsigned *weights, size_t n);
void cdn_ring_free(struct cdn_ring **r);

/* 64-bit hash of a key (FNV-1a with a final mix), the ring's hash function. */
uint64_t cdn_ring_hash(const void *p, size_t n);

/* Fills order[0..k) with the distinct parents in ring order from hash: order[0] is the key's parent,
 * order[1] where it goes when order[0] is out, and so on. Returns k = min(max, number of parents). */
size_t cdn_ring_order(const struct cdn_ring *r, uint64_t hash, size_t *order, size_t max);

#endif
