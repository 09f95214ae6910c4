/*
 * store: the node's object store on LMDB. It knows nothing about HTTP: an object is a key (any bytes),
 * an opaque metadata blob and a body. Hits are zero-copy (pointers into the memory map); fills are
 * streamed and written by one writer thread that the store owns, so no caller ever blocks on disk.
 *
 * One store per node and per process, shared by every worker thread. Open it after any fork()
 * ([lmdb]: an environment must not be used across fork) and close it after every worker is done.
 *
 * Error convention (STYLE 3.3): functions that can fail return 0 or a negative code: CDN_E* from
 * lib/util.h, negative errno, or an LMDB code (MDB_*, -30799..-30780); cache_store_strerror() knows all
 * three. CACHE_FILL_BUSY is the only positive return and is not an error.
 *
 * Durability contract (LMDB runs with MDB_NOSYNC; a clean close is the only fsync):
 * - Process crash, kill -9, abort, OOM kill: at any moment. Every object whose fill had been committed
 *   by the writer survives; an object whose commit had not been written is absent (as if never
 *   filled); no partial object is ever returned. Chunks of fills that never committed are removed at
 *   the next open. A fill that cache_fill_commit accepted but the writer had not yet written is lost:
 *   "committed" means written by the writer, which cache_store_flush waits for.
 * - Power loss, kernel crash, any reboot without a clean close: the whole cache may be lost, never
 *   served corrupt. The store keeps a small state file next to the LMDB files ("open <boot id>" while
 *   running, written with fsync before the first unsynced write; "clean" after cache_store_close has
 *   synced everything). At open, a store left "open" under a different boot id (Linux:
 *   /proc/sys/kernel/random/boot_id; if unknown, any unclean state) is wiped before LMDB reads it.
 * - A data file that LMDB cannot open, or that makes LMDB fail or crash while it is loaded at open
 *   (checked in a child process first, see cache_store_open), or an incompatible format version:
 *   wiped and rebuilt empty, reported as a warning; the node never crashes on it.
 *   Individual object records that fail our own consistency checks (header, lengths, chunk count and
 *   sizes) are dropped at open; at lookup they are a miss, and a bad chunk at read time is an error.
 * - Not covered: media corruption inside pages that still look valid (LMDB keeps no checksums), and
 *   damage done to the files while the store is open.
 *
 * Threading: every function may be called from any thread unless it says otherwise; a hit or a fill
 * handle is used by one thread at a time (it may move between threads, e.g. across uv loops).
 * Nothing here calls back into the caller except the fill drain callback (see cache_fill_on_drain).
 */
#ifndef CDN_CACHE_STORE_H
#define CDN_CACHE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cache_store;
struct cache_hit;
struct cache_fill;

/* Bodies are stored as chunks of this size under (object id, chunk index), the body's last bytes
 * possibly in its record; a body piece returned by cache_hit_body never crosses a chunk boundary.
 * 256 KiB minus LMDB's page header, so a chunk fills its pages exactly. Part of the on-disk format. */
#define CACHE_STORE_CHUNK_SIZE (256u * 1024u - 16u)
#define CACHE_STORE_KEY_MAX    (64u * 1024u)   /* longest key accepted */
#define CACHE_STORE_META_MAX   (1024u * 1024u) /* longest metadata blob accepted */

/* cache_fill_append accepted the bytes, but the fill has more than fill_inflight bytes waiting for
 * the writer: stop feeding it until cache_fill_busy() is false (see cache_fill_on_drain). */
#define CACHE_FILL_BUSY 1

struct cache_store_opts {
    const char *path;         /* directory; created (mode 0700, with parents) if missing */
    uint64_t size;            /* LMDB map size in bytes: the store never grows past it; >= 1 MiB */
    uint64_t max_object_size; /* bodies larger than this are refused; 0 = size / 8; at most size / 4 */
    uint64_t fill_inflight;   /* per fill: bytes queued to the writer before BUSY; 0 = 1 MiB */
    unsigned high_water_pct;  /* start evicting above this share of size (0: see set_marks, ~97 %) */
    unsigned low_water_pct;   /* ... and evict down to this share; must be < high_water_pct */
    const char *boot_id;      /* tests only: pretend this is the boot id; NULL = ask the kernel */
};

/* Counters; a snapshot taken with relaxed atomic loads (each value exact, the set not atomic). */
struct cache_store_stats {
    uint64_t objects;  /* committed objects in the store */
    uint64_t bytes;    /* their accounted size (pages for chunks + records) */
    uint64_t map_size; /* configured size */
    uint64_t map_used; /* LMDB's high-water mark of pages in the file (never shrinks) */
    uint64_t lookups_hit, lookups_miss;
    uint64_t fills_started, fills_committed;
    uint64_t fills_aborted;   /* by the caller, too large, or failed in the writer */
    uint64_t fills_too_large; /* subset of fills_aborted: over max_object_size */
    uint64_t meta_updates, removes;
    uint64_t evictions, evicted_bytes;
    uint64_t write_errors;          /* writer operations that failed for good (counted per operation) */
    uint64_t read_errors;           /* damaged record or chunk met by a lookup or a body read */
    uint64_t map_full_retries;      /* MDB_MAP_FULL met by the writer and handled by evicting harder */
    uint64_t orphan_chunks_removed; /* at open: chunks of fills that never committed */
    uint64_t not_admitted;          /* cache_store_admit said no */
    uint64_t queued_ops;            /* operations waiting for the writer right now */
};

/*
 * Opens (creating it if needed) the store at opts->path, rebuilds the eviction state from the
 * metadata, removes orphan chunks, evicts if the store is over its high-water mark (e.g. after the
 * size was lowered) and starts the writer thread. Blocking (a scan of the metadata): call it at
 * startup, not from a loop callback.
 *
 * When a data file exists, open first loads it in a short-lived child process (fork(), a dry run
 * that writes nothing), because LMDB may abort() or fault on a damaged file instead of returning an
 * error; only if the child succeeds does this process load it. Prefer calling it before starting
 * other threads. The child is reaped with waitpid() on its own pid; with SIGCHLD set to SIG_IGN the
 * check is skipped.
 *
 * On success returns 0 and sets *out. *msg is then NULL, or a warning to log: the store was found
 * unusable (corrupt, incompatible version, unclean reboot...) and was wiped and rebuilt empty, or
 * damaged objects were dropped. On failure returns a negative code (CDN_EINVAL for bad options,
 * -EBUSY when another process has the store open, another negative errno or an LMDB code otherwise)
 * and sets *msg to the reason. The caller frees *msg in both cases.
 */
int cache_store_open(const struct cache_store_opts *opts, struct cache_store **out, char **msg);

/*
 * Writes everything queued, stops and joins the writer, syncs the data to disk, marks the store
 * clean (so it survives a reboot) and closes it; NULLs *store (NULL is fine). Blocking. Every hit
 * must have been released and every fill committed or aborted before: both are asserted.
 */
void cache_store_close(struct cache_store **store);

/* Blocks until every operation queued before the call (chunks, commits, aborts, meta updates,
 * removals) has been written or has failed. For tests and shutdown; not for loop callbacks. */
void cache_store_flush(struct cache_store *store);

/* Fills *out with the current counters. Cheap (atomics and one mdb_env_info). */
void cache_store_stats(struct cache_store *store, struct cache_store_stats *out);

/* Text for any code this module returns: LMDB codes, then cdn_strerror(). Static string. */
const char *cache_store_strerror(int err);

/*
 * Lookup. Hashes key[0..klen) (SHA-256, first 64 bits as the LMDB key; the full key is kept in the
 * record, so a hash collision is a miss, never a wrong object) and looks for a committed object.
 *
 * Returns 0 and sets *hit on a hit; returns 0 and sets *hit to NULL on a miss; returns a negative
 * code (and *hit = NULL) when the lookup itself failed, e.g. MDB_READERS_FULL when too many hits are
 * open; treat that as a miss you should not fill. A hit marks the object as used for eviction
 * (one atomic store, no lock).
 *
 * A hit owns an LMDB read transaction: every pointer it returns stays valid and unchanged until
 * cache_hit_release, even if the object is replaced, removed or evicted meanwhile (MVCC). While it
 * is open, the pages it sees cannot be reused, so eviction cannot give their space back: release
 * hits as soon as the body is sent. A hit may live across loop turns (it is not tied to a thread)
 * but should not outlive the response; at most about 4000 hits can be open at once per process.
 */
int cache_store_lookup(struct cache_store *store, const void *key, size_t klen, struct cache_hit **hit);

/* Metadata blob of the hit; *len receives its length. Points into the map (read-only, no alignment
 * guarantee); valid until cache_hit_release. */
const void *cache_hit_meta(const struct cache_hit *hit, size_t *len);

/* The full key stored with the object (equal to the looked-up key). Same validity as the meta. */
const void *cache_hit_key(const struct cache_hit *hit, size_t *len);

uint64_t cache_hit_body_size(const struct cache_hit *hit);

/* Unique id of this version of the object (a new fill of the same key gets a new id). A streamer
 * that must release its hit between turns can look the key up again and compare ids to know it
 * still reads the same bytes. Ids are unique within a process run only. */
uint64_t cache_hit_id(const struct cache_hit *hit);

/*
 * The contiguous piece of the body that starts at offset off: returns a pointer into the map and
 * sets *len to its length (>= 1; the piece ends at the next chunk boundary or at the end of the body).
 * Returns NULL with *len = 0 when off >= body size, or when the chunk is missing or damaged (counted
 * in read_errors; abort the response then). Valid until cache_hit_release; read-only.
 */
const void *cache_hit_body(struct cache_hit *hit, uint64_t off, size_t *len);

/* Ends the read transaction, frees the hit and NULLs *hit (NULL is fine). Any thread. Every pointer
 * obtained from the hit becomes invalid. */
void cache_hit_release(struct cache_hit **hit);

/*
 * Fill: streams a new version of key into the store. The object stays invisible until the writer
 * has written its commit; then it replaces any previous object under the same key in the same
 * transaction (readers holding the old one keep it until they release it).
 *
 * cache_store_fill_begin returns 0 and sets *fill, or CDN_EINVAL (key empty or longer than
 * CACHE_STORE_KEY_MAX). Never blocks. The caller owns the fill and must end it with exactly one of
 * cache_fill_commit or cache_fill_abort, before cache_store_close.
 *
 * Operations are applied in the order they are queued, store-wide: a remove queued before a fill's
 * commit does not affect that fill; a remove queued after it removes the new object.
 */
int cache_store_fill_begin(struct cache_store *store, const void *key, size_t klen, struct cache_fill **fill);

/*
 * Whether a response for key, not in the store, is worth storing: always while the store has room;
 * once it is full (near its low-water mark), only if key was looked up more often lately than the last
 * object evicted (admission, cache/evict.h). Counted in not_admitted when it says no. Any thread,
 * never blocks. Advisory: cache_store_fill_begin does not ask it.
 */
bool cache_store_admit(struct cache_store *store, const void *key, size_t klen);

/*
 * Copies p[0..n) into the fill (the caller keeps p). Full chunks are queued to the writer at once, so
 * memory per fill stays near fill_inflight plus one chunk plus what a single call hands in.
 * Returns:
 *   0                all bytes taken;
 *   CACHE_FILL_BUSY  all bytes taken, but too much is waiting for the writer: stop calling append
 *                    until cache_fill_busy() is false; the drain callback tells when;
 *   CDN_ELIMIT       the body would exceed max_object_size; nothing more will be stored;
 *   another negative the writer failed this fill (LMDB code) or it already failed before.
 * After a negative return the caller must cache_fill_abort and pass the response through uncached.
 * Never blocks.
 */
int cache_fill_append(struct cache_fill *fill, const void *p, size_t n);

/* True while the bytes queued to the writer for this fill are above the resume mark (a quarter of
 * fill_inflight). Lock-free; any thread. */
bool cache_fill_busy(const struct cache_fill *fill);

/*
 * Drain notification for CACHE_FILL_BUSY. cb(fill, data) runs on the store's writer thread, at most
 * once per BUSY return, when the queue has drained below the resume mark; it may also run spuriously,
 * so re-check cache_fill_busy(). It runs under a lock of the fill: it must be quick and must not call
 * any cache_* function; it should only signal the owning loop, e.g. uv_async_send(). It never runs
 * after cache_fill_commit or cache_fill_abort has returned. Set it before the first append; cb may
 * be NULL (then poll cache_fill_busy(), e.g. from a timer).
 *
 * Typical libuv use: on CACHE_FILL_BUSY, uv_read_stop() the upstream (or keep reading for the client
 * and cache_fill_abort if you would rather not slow it down); in the uv_async callback on the
 * worker's loop, uv_read_start() again for each paused exchange whose fill is no longer busy.
 */
typedef void cache_fill_drain_cb(struct cache_fill *fill, void *data);
void cache_fill_on_drain(struct cache_fill *fill, cache_fill_drain_cb *cb, void *data);

/*
 * Commit notification: when cache_fill_commit returned 0, cb(data, stored) runs exactly once on the
 * writer thread after the commit was written (stored true: the object is now visible to lookups) or
 * failed (stored false). Same rules as the drain callback: quick, no cache_* calls, only signal. Set it
 * before cache_fill_commit; not called when the fill is aborted or commit returns an error.
 */
typedef void cache_fill_commit_cb(void *data, bool stored);
void cache_fill_on_commit(struct cache_fill *fill, cache_fill_commit_cb *cb, void *data);

/*
 * Ends the fill successfully: queues its last chunk and meta[0..mlen) (copied) to the writer, which
 * makes the object visible atomically. Frees the caller's handle and NULLs *fill in all cases.
 * Returns 0 when queued (the write itself can still fail later: see write_errors), or the fill's
 * error (see append) or CDN_ELIMIT (mlen > CACHE_STORE_META_MAX), in which case it was aborted.
 * Never blocks.
 */
int cache_fill_commit(struct cache_fill **fill, const void *meta, size_t mlen);

/* Drops the fill; chunks already written are deleted by the writer. NULLs *fill (NULL is fine).
 * Never blocks. */
void cache_fill_abort(struct cache_fill **fill);

/*
 * Replaces the metadata of the object stored under key (freshening after a 304), keeping its body
 * and its place in the eviction queue. Asynchronous: the writer applies it in queue order; readers
 * see the new meta on their next lookup. A missing key is a no-op. meta is copied.
 * Returns 0, or CDN_EINVAL / CDN_ELIMIT for a bad key or meta length. Never blocks.
 */
int cache_store_update_meta(struct cache_store *store, const void *key, size_t klen, const void *meta,
                            size_t mlen);

/* Removes the object stored under key (purge, invalidation). Asynchronous, in queue order; open hits
 * keep their copy. A missing key is a no-op. Returns 0 or CDN_EINVAL. Never blocks. */
int cache_store_remove(struct cache_store *store, const void *key, size_t klen);

#endif
