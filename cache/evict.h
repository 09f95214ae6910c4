/*
 * evict: the cache's eviction policy, SIEVE (Zhang et al., "SIEVE is Simpler than LRU", NSDI'24).
 *
 * Why SIEVE and not S3-FIFO or LRU: a hit only sets a "visited" bit and never moves anything, so hits
 * need no lock and no write to shared list pointers; that matters here because hits come from every
 * worker thread while the store's single writer thread owns the queue. Objects stay in insertion
 * (FIFO) order; a hand walks from the oldest towards the newest, clearing visited bits and evicting
 * the first unvisited object. New objects that are never requested again are evicted on the first
 * pass (scan resistance), and objects requested at least once per hand pass survive. S3-FIFO gets
 * similar hit ratios but needs three queues and a ghost set, so more state to rebuild at startup;
 * SIEVE's whole state is one queue that the store rebuilds from its metadata in id order.
 *
 * This module is pure data structure: no LMDB, no I/O. Ids are opaque 64-bit values chosen by the
 * caller (the store uses the object's key hash). Sizes are carried so that the caller can account
 * for bytes; SIEVE itself does not weigh objects by size.
 *
 * Threading: one thread at a time (the owner; for the store, its writer thread) may call every
 * function except cache_evict_hit. cache_evict_hit may be called from any thread at any time,
 * concurrently with the owner, without a lock: it looks the id up in an open-addressing table that is
 * read with atomic loads and sets an atomic bit. Entries and tables are never returned to malloc
 * before cache_evict_free, so a racing hit always touches valid memory; the price of the race is
 * at most a lost or misattributed visited bit, which only makes the policy slightly less precise.
 */
#ifndef CDN_CACHE_EVICT_H
#define CDN_CACHE_EVICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache_evict;

/* A new empty policy. Never fails (allocation failure is fatal). Free with cache_evict_free. */
struct cache_evict *cache_evict_new(void);

/* Frees the policy and NULLs *ev. No other thread may be in cache_evict_hit any more. NULL is fine. */
void cache_evict_free(struct cache_evict **ev);

/* Adds id at the newest end of the queue with its visited bit clear. Owner thread only.
 * Returns 0, or CDN_EINVAL if id is already present (nothing changes then). */
int cache_evict_insert(struct cache_evict *ev, uint64_t id, uint64_t size);

/* Marks id as visited if it is present; a no-op otherwise. Any thread, lock-free, never blocks. */
void cache_evict_hit(struct cache_evict *ev, uint64_t id);

/* Removes id (purge, replacement). Owner thread only. Returns true if it was present. */
bool cache_evict_remove(struct cache_evict *ev, uint64_t id);

/* Chooses the next victim, removes it from the policy and stores its id and size (size may be NULL).
 * Owner thread only. Returns 0, or CDN_EINVAL when the policy is empty. */
int cache_evict_one(struct cache_evict *ev, uint64_t *id, uint64_t *size);

/*
 * Admission (the idea of TinyLFU, Einziger et al., "TinyLFU: A Highly Efficient Cache Admission
 * Policy", 2017): when the cache is full, a new object is only worth storing if it has been asked for
 * more often lately than what it would push out. Lookups of every id, present or not, are counted in
 * a count-min sketch of one-byte counters, halved every 10 * expected lookups so that it follows
 * what is popular now; each victim leaves its estimate behind, and a newcomer is admitted when its
 * own estimate is higher. So once the cache is full, an object asked for once is not stored while
 * what it would replace was asked for as often; its second request stores it ("cache on second hit"
 * under pressure only). On a Zipf workload this keeps the one-hit wonders out and lets a SIEVE
 * cache beat LRU with fewer objects (bench-evict). Whether the cache is full is the caller's call.
 *
 * cache_evict_admission enables it, sized for about `expected` objects (owner thread, before any
 * other call; later calls do nothing). Without it, cache_evict_seen does nothing and
 * cache_evict_admit always says yes. cache_evict_seen and cache_evict_admit may be called from any
 * thread, like cache_evict_hit.
 */
void cache_evict_admission(struct cache_evict *ev, size_t expected);
void cache_evict_seen(struct cache_evict *ev, uint64_t id);
bool cache_evict_admit(const struct cache_evict *ev, uint64_t id);

/* Owner thread only. */
bool cache_evict_contains(const struct cache_evict *ev, uint64_t id);
size_t cache_evict_count(const struct cache_evict *ev);
/* Sum of the sizes of the entries present. */
uint64_t cache_evict_bytes(const struct cache_evict *ev);

#endif
