/*
 * collapse: collapsed forwarding across all workers. The first request that misses on a key becomes
 * the leader and fetches it; concurrent requests for the same key wait for the leader's outcome
 * instead of going upstream too. The table is process-wide (a mutex; held only for a hash lookup);
 * waiters are woken on their own worker's loop through a callback the caller provides (typically a
 * uv_async_send), so no session is ever touched by another thread.
 */
#ifndef CDN_COLLAPSE_H
#define CDN_COLLAPSE_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/share.h"

enum cdn_collapse_result {
    CDN_COLLAPSE_WAITING = 0,
    CDN_COLLAPSE_STORED, /* the leader stored the response: look the key up again */
    CDN_COLLAPSE_GO,     /* the leader's response was not stored (or failed): fetch it yourself */
    CDN_COLLAPSE_SHARED, /* the leader is storing it: read it from cdn_collapse_wait_share() as it comes */
};

struct cdn_collapse;
struct cdn_collapse_wait;

typedef void cdn_collapse_wake_cb(void *arg);

struct cdn_collapse *cdn_collapse_new(void);
/* Every key must have been finished and every wait left. */
void cdn_collapse_free(struct cdn_collapse **t);

/* Joins key. Returns true when the caller is the leader (it must call cdn_collapse_finish once), or
 * false with *wait set: the caller waits until wake(arg) was called (any thread) and
 * cdn_collapse_result(*wait) is no longer WAITING, then calls cdn_collapse_leave. */
bool cdn_collapse_join(struct cdn_collapse *t, const void *key, size_t klen, cdn_collapse_wake_cb *wake,
                       void *arg, struct cdn_collapse_wait **wait);
/* The leader's outcome: wakes every waiter of key with result (STORED or GO) and forgets the key.
 * Returns the number of waiters woken. */
unsigned cdn_collapse_finish(struct cdn_collapse *t, const void *key, size_t klen,
                             enum cdn_collapse_result result);
enum cdn_collapse_result cdn_collapse_result(const struct cdn_collapse_wait *wait);
/* The leader's response, now arriving, for every waiter present and future (a ref is taken); waiters
 * get SHARED. A join after this returns a wait whose result is SHARED at once. */
void cdn_collapse_share(struct cdn_collapse *t, const void *key, size_t klen, struct cdn_share *sh);
/* The share of a SHARED wait (borrowed: valid until cdn_collapse_leave; take a ref to keep it). */
struct cdn_share *cdn_collapse_wait_share(const struct cdn_collapse_wait *wait);
/* A waiter is done (woken, or gives up); NULLs *wait. Safe whether or not the leader finished. */
void cdn_collapse_leave(struct cdn_collapse_wait **wait);

#endif
