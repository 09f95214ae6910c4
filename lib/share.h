/*
 * share: a response being fetched, readable by other requests while it arrives (read-while-writer
 * for collapsed forwarding). The leader appends the body; readers on any worker read from any offset
 * and are woken through their own callback (a uv_async_send) when more arrives. Memory: the whole
 * body stays in memory while the share lives, so only responses that will be stored (bounded by
 * cache.max_object_size) are shared. Refcounted; thread-safe.
 */
#ifndef CDN_SHARE_H
#define CDN_SHARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cdn_share;
typedef void cdn_share_wake_cb(void *arg);

/* meta: the provisional cache entry of the response (cache/entry.c format), copied. length: the body
 * size when the upstream said it (has_length), so readers can send Content-Length. Returns one ref. */
struct cdn_share *cdn_share_new(const void *meta, size_t mlen, bool has_length, uint64_t length);
struct cdn_share *cdn_share_ref(struct cdn_share *sh);
void cdn_share_unref(struct cdn_share **sh);

const void *cdn_share_meta(const struct cdn_share *sh, size_t *mlen);
bool cdn_share_length(const struct cdn_share *sh, uint64_t *length);

/* Leader side. */
void cdn_share_append(struct cdn_share *sh, const void *p, size_t n);
/* The body is complete (ok) or will never be (failed). Wakes every watcher. */
void cdn_share_end(struct cdn_share *sh, bool ok);

/* Reader side. Registers cb(arg) to be called (any thread, under the share's lock: only signal) on
 * every append and at the end; the same arg is registered once. cdn_share_unwatch before arg dies. */
void cdn_share_watch(struct cdn_share *sh, cdn_share_wake_cb *cb, void *arg);
void cdn_share_unwatch(struct cdn_share *sh, void *arg);

enum cdn_share_state { CDN_SHARE_MORE, CDN_SHARE_DONE, CDN_SHARE_FAILED };
/* The bytes available at off: *p and the return value (0 when none yet). *state says whether more
 * may come. The pointer stays valid while the caller holds a ref. */
size_t cdn_share_read(struct cdn_share *sh, uint64_t off, const void **p, enum cdn_share_state *state);

#endif
