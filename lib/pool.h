/*
 * pool: idle keep-alive upstream connections of one worker, keyed by where they lead
 * ("tls|host|port|name"). A pooled conn is owned by the pool: any event on it (the upstream closed
 * it, sent stray bytes, or the idle timer fired) closes it. Taking one hands ownership back.
 */
#ifndef CDN_POOL_H
#define CDN_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "lib/conn.h"

#define CDN_POOL_MAX_PER_KEY 256 /* idle conns kept per destination; more are closed */

struct cdn_pool;

struct cdn_pool *cdn_pool_new(void);
/* Closes every idle conn and frees the pool; *p becomes NULL. */
void cdn_pool_free(struct cdn_pool **p);
/* Parks c (connected, nothing buffered, no write queued) for at most idle_ms. The pool owns c now. */
void cdn_pool_put(struct cdn_pool *p, const char *key, struct cdn_conn *c, uint64_t idle_ms);
/* The most recently parked conn for key, or NULL. The caller owns it and must set c->cb/c->data. */
struct cdn_conn *cdn_pool_get(struct cdn_pool *p, const char *key);
/* Idle conns parked now (all keys). */
size_t cdn_pool_idle(const struct cdn_pool *p);

#endif
