/*
 * store: the LMDB object store (API, threading and durability contract in store.h).
 *
 * Layout of the environment (one directory):
 *   data.mdb, lock.mdb  LMDB; named DBs:
 *     "info"     "format" -> FORMAT_STRING (anything else: incompatible, wipe); "tick" -> counter;
 *                "hashkey" -> the 16-byte SipHash key, random, made with the store
 *     "objects"  8-byte SipHash of the key -> record: 32-byte header {magic, klen, mlen, tail length,
 *                id, body size} (native endian) + full key + metadata + the body's tail (tail_len)
 *     "chunks"   {id, chunk index} big-endian (so one object's chunks are adjacent) -> body chunk
 *   state       "open <boot id>" while a process runs the store, "clean" after a clean close
 *   store.lock  flock()ed while open: one process per store
 *
 * Why it is shaped this way:
 * - Readers never wait: a hit is a read transaction (MDB_NOTLS, so a thread may hold many and they
 *   may outlive a loop turn) and pointers go straight into the map. Reset transactions are pooled to
 *   skip LMDB's reader-table lock and a malloc per lookup.
 * - Every write happens on one writer thread fed by a mutex+condvar queue, batched into one write
 *   transaction per wake-up (bounded in bytes). Fills queue each full chunk as soon as it is full, so
 *   memory stays bounded; the object becomes visible in the transaction that writes its record, which
 *   is also the one that writes its last chunk and deletes the chunks of the version it replaces.
 *   Chunks of a fill that never commits are unreachable and are deleted at abort or at next open.
 * - Space: the water marks compare the pages LMDB really holds (`real`, from mdb_stat); victims are
 *   weighed by our per-object estimates (`used`). Before a batch, if its data and the leaf pages it
 *   copies would pass the high-water mark, the writer evicts (SIEVE, cache/evict) down to the
 *   low-water mark in small transactions, then commits a tiny "tick" transaction: LMDB reuses pages
 *   freed by transaction T only from T+2 on, so the batch that follows can use them. If MDB_MAP_FULL
 *   happens anyway (old readers pin freed pages), the batch is aborted and retried after evicting one
 *   band more, then op by op; an op that still fails is dropped and counted, never fatal.
 * - Admission: once the store is full, cache_store_admit lets the proxy skip storing responses for
 *   keys asked for less lately than the last victim (cache/evict's sketch, fed by every lookup).
 * - In-memory side effects of a batch (eviction state, accounting, counters, fill backpressure) are
 *   applied only after its transaction committed, so a retried batch cannot apply them twice.
 * - Durability: MDB_NOSYNC during operation, durable commits only at open and close, and the `state`
 *   file (fsync + rename) to tell a process crash (page cache intact: keep) from a reboot without a
 *   clean close (writes may be torn: wipe before LMDB even reads the file).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lmdb.h>
#include <openssl/rand.h>
#include <uv.h>

#include "cache/evict.h"
#include "cache/store.h"
#include "lib/util.h"

#define STORE_MAGIC 0x53544f52u /* "STOR" */
#define HIT_MAGIC   0x48495421u
#define FILL_MAGIC  0x46494c4cu
#define REC_MAGIC   0x314f4443u /* "CDO1" */
#define REC_HDR     32u
#define HKEY_LEN    8u
#define CKEY_LEN    12u

#define FORMAT_STRING   "cdn-node store format 3, chunk 262128, tail, siphash"
#define MAX_READERS     4096
#define TXN_POOL_MAX    64
#define SPACE_RETRIES   5
#define OPS_PER_BATCH   4096
#define DELETES_PER_TXN 256
#define EVICT_PER_TXN   256
#define BATCH_COW_PAGES 32 /* branch pages, rightmost chunk leaves, freelist and info pages of a batch */

/* Open() asks for a rebuild with this internal code (never returned to callers). */
#define NEED_REBUILD 1

_Static_assert(CACHE_STORE_CHUNK_SIZE == 262128u, "FORMAT_STRING names the chunk size");
/* LMDB's header on the first page of an overflow value (PAGEHDRSZ): a value of k pages minus this
 * fills its pages exactly, which is why chunks are 256 KiB minus it. */
#define OVF_HDR 16u

struct store_counters {
    _Atomic uint64_t objects, bytes, lookups_hit, lookups_miss, fills_started, fills_committed, fills_aborted,
        fills_too_large, meta_updates, removes, evictions, evicted_bytes, write_errors, read_errors,
        map_full_retries, orphan_chunks_removed, not_admitted;
};

struct cache_store {
    uint32_t magic;
    char *path;
    uint64_t map_size, max_object_size, high, low, batch_max, fill_high, fill_low;
    unsigned psize;
    MDB_env *env;
    MDB_dbi dbi_info, dbi_objects, dbi_chunks;
    uint8_t hash_secret[16]; /* SipHash key of this store, kept in "info" */
    int lock_fd;
    char boot_id[64];
    bool dry_run; /* in the probe child: load everything, write nothing */

    uv_mutex_t pool_mu; /* pool of reset read transactions */
    MDB_txn *pool[TXN_POOL_MAX];
    unsigned npool;

    uv_mutex_t mu; /* the writer queue */
    uv_cond_t work_cond, done_cond;
    struct op *qhead, **qtail;
    uint64_t enq_seq, done_seq, nqueued;
    bool stopping;
    uv_thread_t writer;

    struct cache_evict *ev; /* writer thread only, except cache_evict_hit */
    uint64_t used;          /* writer thread only: the sum of our per-object estimates */
    uint64_t real;          /* writer thread only: bytes of the pages the databases held at the last
                               commit (mirrored in st.bytes); what the water marks compare */
    uint64_t extra;         /* writer thread only: room kept free below both marks on top of them,
                               grown by MDB_MAP_FULL, shrunk by batches that fit (see keep_more) */
    _Atomic uint64_t next_id;
    _Atomic long live_hits, live_fills;
    _Atomic bool full; /* pages held near the low-water mark: new objects push others out */
    struct store_counters st;
};

struct cache_hit {
    uint32_t magic;
    struct cache_store *store;
    MDB_txn *txn;
    const uint8_t *key, *meta, *tail;
    size_t klen, mlen, tlen;
    uint64_t id, body_size;
    uint64_t cidx; /* chunk cached in cptr/clen, UINT64_MAX if none */
    const uint8_t *cptr;
    size_t clen;
};

struct cache_fill {
    uint32_t magic;
    struct cache_store *store;
    _Atomic unsigned refs; /* the caller's handle + one per queued op */
    uint64_t id, hkey;
    uint8_t hk[HKEY_LEN];
    char *key;
    size_t klen;
    uint64_t total;   /* body bytes appended */
    uint32_t nchunks; /* full chunks queued so far */
    char *cur;        /* the chunk being filled */
    size_t cur_len;
    int err;                   /* caller side, sticky */
    _Atomic int werr;          /* set by the writer when it failed to write a chunk */
    _Atomic uint64_t inflight; /* chunk bytes queued and not yet written */
    _Atomic bool want_drain;
    uv_mutex_t cb_mu; /* serialises the drain callback with the end of the fill */
    bool ended;
    cache_fill_drain_cb *cb;
    void *cb_data;
    cache_fill_commit_cb *commit_cb; /* writer thread, once the commit was written or failed */
    void *commit_data;
    uint64_t written_cost; /* writer only: accounted bytes of chunks written for this fill */
};

enum op_kind { OP_CHUNK, OP_COMMIT, OP_ABORT, OP_META, OP_REMOVE };

struct op {
    struct op *next;
    enum op_kind kind;
    struct cache_fill *fill; /* CHUNK, COMMIT, ABORT: holds a ref */
    uint8_t hk[HKEY_LEN];    /* COMMIT, META, REMOVE */
    uint32_t idx;            /* CHUNK, COMMIT: index of `data` */
    char *data;              /* CHUNK, COMMIT (last partial chunk, may be NULL): owned */
    size_t len;
    char *key; /* META, REMOVE: owned */
    size_t klen;
    char *meta; /* COMMIT, META: owned */
    size_t mlen;
    /* Effects of the last successful apply, consumed once its transaction committed. */
    bool skipped, old_found, old_damaged;
    uint64_t old_cost, new_cost;
};

struct victim {
    uint64_t hkey, size, cost;
};

/* ---- small helpers ---- */

static void st_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static void set_used(struct cache_store *s, uint64_t used)
{
    s->used = used;
}

/* The marks as they stand now (lowered by s->extra), and the step between them. */
static uint64_t high_mark(const struct cache_store *s)
{
    return s->high > s->extra ? s->high - s->extra : 0;
}

static uint64_t low_mark(const struct cache_store *s)
{
    return s->low > s->extra ? s->low - s->extra : 0;
}

static uint64_t band(const struct cache_store *s)
{
    return s->high - s->low > s->map_size / 64 ? s->high - s->low : s->map_size / 64;
}

/*
 * How much room a transaction needs beyond its data depends on how many records it touches (each
 * delete or insert copies a leaf page, and those copies are only reusable two transactions later)
 * and on how long reads pin freed pages: small objects need far more than large ones. So the room
 * kept free adapts: every MDB_MAP_FULL lowers both marks by a band (up to an eighth of the map), and
 * every batch that fits at once gives back 1/32 of a band (a retry costs less than the objects a
 * needlessly low mark keeps out).
 */
static void keep_more(struct cache_store *s)
{
    s->extra += band(s);
    if (s->extra > s->map_size / 8)
        s->extra = s->map_size / 8;
}

static void keep_less(struct cache_store *s)
{
    uint64_t step = band(s) / 32;
    s->extra = s->extra > step ? s->extra - step : 0;
}

static void set_real(struct cache_store *s, uint64_t real)
{
    s->real = real;
    atomic_store_explicit(&s->st.bytes, real, memory_order_relaxed);
    /* Evictions stop near the low-water mark, a little under it when estimates were generous: full
     * means within one band of it, so that admission does not switch off after every eviction. */
    atomic_store_explicit(&s->full, real + band(s) >= low_mark(s), memory_order_relaxed);
}

/* Bytes of the pages the databases hold in txn (free pages excluded). Our per-object estimates cannot
 * know how full LMDB keeps its leaf pages (sequential keys split pages in half), so room is made by
 * this figure, read from LMDB's own counts, which mdb_stat returns without walking anything. */
static uint64_t map_used(const struct cache_store *s, MDB_txn *txn)
{
    const MDB_dbi dbis[] = {0 /* the freelist's own pages */, 1 /* main */, s->dbi_info, s->dbi_objects,
                            s->dbi_chunks};
    uint64_t pages = 0;
    for (size_t i = 0; i < sizeof(dbis) / sizeof(dbis[0]); i++) {
        MDB_stat st;
        if (mdb_stat(txn, dbis[i], &st) == 0)
            pages += (uint64_t)st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    }
    return pages * s->psize;
}

/* Commits a write transaction and, if that worked, records what the databases now hold. */
static int commit_measured(struct cache_store *s, MDB_txn *txn)
{
    uint64_t real = map_used(s, txn);
    int rc = mdb_txn_commit(txn);
    if (rc == 0)
        set_real(s, real);
    return rc;
}

static bool is_mdb_err(int rc)
{
    return rc >= MDB_KEYEXIST && rc <= MDB_LAST_ERRCODE;
}

static bool is_space_err(int rc)
{
    return rc == MDB_MAP_FULL || rc == MDB_TXN_FULL;
}

static uint64_t hkey_id(const uint8_t hk[HKEY_LEN])
{
    uint64_t v;
    memcpy(&v, hk, sizeof(v));
    return v;
}

static void id_to_hk(uint64_t id, uint8_t hk[HKEY_LEN])
{
    memcpy(hk, &id, HKEY_LEN);
}

static uint64_t le64(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
#endif
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND           \
    do {                   \
        v0 += v1;          \
        v1 = ROTL(v1, 13); \
        v1 ^= v0;          \
        v0 = ROTL(v0, 32); \
        v2 += v3;          \
        v3 = ROTL(v3, 16); \
        v3 ^= v2;          \
        v0 += v3;          \
        v3 = ROTL(v3, 21); \
        v3 ^= v0;          \
        v2 += v1;          \
        v1 = ROTL(v1, 17); \
        v1 ^= v2;          \
        v2 = ROTL(v2, 32); \
    } while (0)

/* SipHash-2-4 (Aumasson and Bernstein) of p[0..n) under key k. */
static uint64_t siphash24(const uint8_t k[16], const uint8_t *p, size_t n)
{
    uint64_t k0 = le64(k), k1 = le64(k + 8);
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    uint64_t last = (uint64_t)n << 56;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t m = le64(p);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t i = 0; i < n; i++)
        last |= (uint64_t)p[i] << (8 * i);
    v3 ^= last;
    SIPROUND;
    SIPROUND;
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* The 8-byte LMDB key of a cache key: SipHash under a random key of this store, so nobody outside can
 * make two URLs share a slot (the full key is compared anyway), at a fraction of SHA-256's cost. */
static void hash_key(const struct cache_store *s, const void *key, size_t klen, uint8_t hk[HKEY_LEN])
{
    uint64_t h = siphash24(s->hash_secret, key, klen);
    memcpy(hk, &h, HKEY_LEN);
}

static void chunk_key(uint8_t out[CKEY_LEN], uint64_t id, uint32_t idx)
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(id >> (56 - 8 * i));
    for (int i = 0; i < 4; i++)
        out[8 + i] = (uint8_t)(idx >> (24 - 8 * i));
}

static uint64_t chunk_key_id(const uint8_t *k)
{
    uint64_t id = 0;
    for (int i = 0; i < 8; i++)
        id = id << 8 | k[i];
    return id;
}

static uint32_t chunk_key_idx(const uint8_t *k)
{
    return (uint32_t)k[8] << 24 | (uint32_t)k[9] << 16 | (uint32_t)k[10] << 8 | k[11];
}

static uint64_t nchunks_of(uint64_t body)
{
    return (body + CACHE_STORE_CHUNK_SIZE - 1) / CACHE_STORE_CHUNK_SIZE;
}

/* Bytes of map a key/value pair occupies. LMDB puts a value on overflow pages of its own once the
 * node is bigger than about half a page; smaller nodes share leaf pages that are 50-100% full. */
static uint64_t val_cost(const struct cache_store *s, size_t klen, size_t vlen)
{
    size_t node = 8 + klen + vlen;
    if (node <= s->psize / 2 - 16)
        return (node + 2) * 3 / 2;
    return ((16 + (uint64_t)vlen + s->psize - 1) / s->psize) * s->psize + (8 + klen + 8) * 3 / 2;
}

/* Map bytes of an object whose record is reclen bytes (tail included) and whose chunks hold cbytes. */
static uint64_t object_cost(const struct cache_store *s, uint64_t cbytes, size_t reclen)
{
    uint64_t full = cbytes / CACHE_STORE_CHUNK_SIZE, rem = cbytes % CACHE_STORE_CHUNK_SIZE;
    uint64_t c = val_cost(s, HKEY_LEN, reclen) + full * val_cost(s, CKEY_LEN, CACHE_STORE_CHUNK_SIZE);
    if (rem != 0)
        c += val_cost(s, CKEY_LEN, rem);
    return c;
}

/*
 * How many of a body's last `len` bytes (what follows its full chunks) go into the record instead of
 * a chunk: all of them when they fit beside a reclen-byte record in a shared leaf page; otherwise the
 * bytes past the chunk's last whole page when those fit, so that the chunk fills its pages exactly;
 * otherwise none. So a 16 KiB body takes 4 pages, not 5, and a 1 KiB body no chunk at all.
 */
static size_t tail_len(const struct cache_store *s, uint64_t len, size_t reclen)
{
    size_t max = s->psize / 2 - 16 - 8 - HKEY_LEN; /* as val_cost: larger values get overflow pages */
    if (reclen >= max)
        return 0;
    size_t room = max - reclen;
    if (len <= room)
        return (size_t)len;
    size_t t = (size_t)((len + OVF_HDR) % s->psize);
    return t <= room ? t : 0;
}

/* ---- records ---- */

struct rec {
    uint64_t id, body;
    uint32_t klen, mlen, tlen; /* tlen: the body's last bytes, kept in the record (see tail_len) */
    const uint8_t *key, *meta, *tail;
    size_t len;
};

static bool rec_parse(const MDB_val *v, struct rec *r)
{
    if (v->mv_size < REC_HDR)
        return false;
    const uint8_t *p = v->mv_data;
    uint32_t magic;
    memcpy(&magic, p, 4);
    memcpy(&r->klen, p + 4, 4);
    memcpy(&r->mlen, p + 8, 4);
    memcpy(&r->tlen, p + 12, 4);
    memcpy(&r->id, p + 16, 8);
    memcpy(&r->body, p + 24, 8);
    if (magic != REC_MAGIC || r->klen == 0 || r->klen > CACHE_STORE_KEY_MAX || r->mlen > CACHE_STORE_META_MAX)
        return false;
    if (r->tlen > r->body || r->tlen > CACHE_STORE_CHUNK_SIZE ||
        (uint64_t)REC_HDR + r->klen + r->mlen + r->tlen != v->mv_size)
        return false;
    r->key = p + REC_HDR;
    r->meta = r->key + r->klen;
    r->tail = r->meta + r->mlen;
    r->len = v->mv_size;
    return true;
}

static int rec_put(struct cache_store *s, MDB_txn *txn, const uint8_t hk[HKEY_LEN], uint64_t id,
                   uint64_t body, const void *key, size_t klen, const void *meta, size_t mlen,
                   const void *tail, size_t tlen)
{
    MDB_val k = {HKEY_LEN, (void *)hk}, v = {REC_HDR + klen + mlen + tlen, NULL};
    int rc = mdb_put(txn, s->dbi_objects, &k, &v, MDB_RESERVE);
    if (rc != 0)
        return rc;
    uint8_t *p = v.mv_data;
    uint32_t magic = REC_MAGIC, k32 = (uint32_t)klen, m32 = (uint32_t)mlen, t32 = (uint32_t)tlen;
    memcpy(p, &magic, 4);
    memcpy(p + 4, &k32, 4);
    memcpy(p + 8, &m32, 4);
    memcpy(p + 12, &t32, 4);
    memcpy(p + 16, &id, 8);
    memcpy(p + 24, &body, 8);
    memcpy(p + REC_HDR, key, klen);
    if (mlen > 0)
        memcpy(p + REC_HDR + klen, meta, mlen);
    if (tlen > 0)
        memcpy(p + REC_HDR + klen + mlen, tail, tlen);
    return 0;
}

/* Record of hk in txn: 0 and *r, MDB_NOTFOUND, CDN_EPROTO if it is damaged, or an LMDB error. */
static int rec_get(struct cache_store *s, MDB_txn *txn, const uint8_t hk[HKEY_LEN], struct rec *r)
{
    MDB_val k = {HKEY_LEN, (void *)hk}, v;
    int rc = mdb_get(txn, s->dbi_objects, &k, &v);
    if (rc != 0)
        return rc;
    return rec_parse(&v, r) ? 0 : CDN_EPROTO;
}

static int put_chunk(struct cache_store *s, MDB_txn *txn, uint64_t id, uint32_t idx, const void *p, size_t n)
{
    uint8_t ck[CKEY_LEN];
    chunk_key(ck, id, idx);
    MDB_val k = {CKEY_LEN, ck}, v = {n, (void *)p};
    return mdb_put(txn, s->dbi_chunks, &k, &v, 0);
}

/* Deletes every chunk of object id. */
static int delete_chunks(struct cache_store *s, MDB_txn *txn, uint64_t id)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->dbi_chunks, &c);
    if (rc != 0)
        return rc;
    for (;;) {
        /* Seek again after each delete: simpler than trusting the cursor position after a delete. */
        uint8_t ck[CKEY_LEN];
        chunk_key(ck, id, 0);
        MDB_val k = {CKEY_LEN, ck}, v;
        rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            break;
        }
        if (rc != 0)
            break;
        if (k.mv_size != CKEY_LEN || chunk_key_id(k.mv_data) != id)
            break;
        if ((rc = mdb_cursor_del(c, 0)) != 0)
            break;
    }
    mdb_cursor_close(c);
    return rc;
}

/* Deletes the object stored under hk (record and chunks) if rec says which id it has. */
static int delete_object(struct cache_store *s, MDB_txn *txn, const uint8_t hk[HKEY_LEN], const struct rec *r)
{
    MDB_val k = {HKEY_LEN, (void *)hk};
    int rc = mdb_del(txn, s->dbi_objects, &k, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    return r != NULL ? delete_chunks(s, txn, r->id) : 0;
}

/* ---- read transaction pool ---- */

static MDB_txn *txn_get(struct cache_store *s, int *rcp)
{
    MDB_txn *txn = NULL;
    uv_mutex_lock(&s->pool_mu);
    if (s->npool > 0)
        txn = s->pool[--s->npool];
    uv_mutex_unlock(&s->pool_mu);
    int rc;
    if (txn != NULL) {
        if ((rc = mdb_txn_renew(txn)) == 0)
            return txn;
        mdb_txn_abort(txn);
    }
    txn = NULL;
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    *rcp = rc;
    return rc == 0 ? txn : NULL;
}

static void txn_put(struct cache_store *s, MDB_txn *txn)
{
    mdb_txn_reset(txn);
    uv_mutex_lock(&s->pool_mu);
    if (s->npool < TXN_POOL_MAX) {
        s->pool[s->npool++] = txn;
        txn = NULL;
    }
    uv_mutex_unlock(&s->pool_mu);
    if (txn != NULL)
        mdb_txn_abort(txn);
}

/* ---- the writer queue ---- */

static struct op *op_new(enum op_kind kind)
{
    struct op *op = cdn_xcalloc(1, sizeof(*op));
    op->kind = kind;
    return op;
}

static void fill_unref(struct cache_fill *f)
{
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    uv_mutex_destroy(&f->cb_mu);
    free(f->cur);
    free(f->key);
    f->magic = 0;
    free(f);
}

static void op_free(struct op *op)
{
    if (op->fill != NULL)
        fill_unref(op->fill);
    free(op->data);
    free(op->key);
    free(op->meta);
    free(op);
}

static void enqueue(struct cache_store *s, struct op *op)
{
    op->next = NULL;
    uv_mutex_lock(&s->mu);
    CDN_ASSERT(!s->stopping);
    *s->qtail = op;
    s->qtail = &op->next;
    s->enq_seq++;
    s->nqueued++;
    uv_cond_signal(&s->work_cond);
    uv_mutex_unlock(&s->mu);
}

/* What an op weighs against batch_max: its bytes, and a page for each record it writes or deletes,
 * as op_need counts (so that a batch of small objects does not copy thousands of leaf pages). */
static uint64_t op_bytes(const struct cache_store *s, const struct op *op)
{
    return 64 + op->len + op->mlen + op->klen + (op->kind == OP_CHUNK ? 0 : s->psize);
}

/* Upper bound of the map bytes an op adds, for making room before its batch. Ops that write or
 * delete a record also copy the leaf page it sits in (records are scattered by their hash, so each
 * such op may copy a different leaf); chunks of new objects go to the rightmost leaf, counted once
 * per batch in BATCH_COW_PAGES. */
static uint64_t op_need(const struct cache_store *s, const struct op *op)
{
    switch (op->kind) {
    case OP_CHUNK:
        return val_cost(s, CKEY_LEN, op->len);
    case OP_COMMIT:
        return (op->len > 0 ? val_cost(s, CKEY_LEN, op->len) : 0) +
               val_cost(s, HKEY_LEN, REC_HDR + op->fill->klen + op->mlen) + s->psize;
    case OP_META:
        return val_cost(s, HKEY_LEN, REC_HDR + op->klen + op->mlen) + s->psize;
    case OP_REMOVE:
        return s->psize;
    default:
        return 0;
    }
}

/* ---- writer: applying ops inside a write transaction (no in-memory side effects here) ---- */

static int apply_commit(struct cache_store *s, MDB_txn *txn, struct op *op)
{
    struct cache_fill *f = op->fill;
    if (atomic_load(&f->werr) != 0) {
        op->skipped = true;
        return delete_chunks(s, txn, f->id);
    }
    int rc;
    size_t reclen = REC_HDR + f->klen + op->mlen;
    size_t tlen = tail_len(s, op->len, reclen);
    if (op->len > tlen && (rc = put_chunk(s, txn, f->id, op->idx, op->data, op->len - tlen)) != 0)
        return rc;
    struct rec old;
    rc = rec_get(s, txn, f->hk, &old);
    if (rc == 0) {
        op->old_found = true;
        op->old_cost = object_cost(s, old.body - old.tlen, old.len);
        uint64_t old_id = old.id; /* old is invalid once we write the key again */
        if ((rc = delete_chunks(s, txn, old_id)) != 0)
            return rc;
    } else if (rc == CDN_EPROTO) {
        op->old_damaged = true; /* its chunks are orphans; the next open drops them */
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    }
    op->new_cost = object_cost(s, f->total - tlen, reclen + tlen);
    return rec_put(s, txn, f->hk, f->id, f->total, f->key, f->klen, op->meta, op->mlen,
                   op->data + op->len - tlen, tlen);
}

static int apply_meta(struct cache_store *s, MDB_txn *txn, struct op *op)
{
    struct rec old;
    int rc = rec_get(s, txn, op->hk, &old);
    if (rc == MDB_NOTFOUND || rc == CDN_EPROTO ||
        (rc == 0 && (old.klen != op->klen || memcmp(old.key, op->key, op->klen) != 0))) {
        op->skipped = true;
        return 0;
    }
    if (rc != 0)
        return rc;
    uint64_t id = old.id, body = old.body;
    /* The tail is copied out first: the new record may be written over the old one's page. */
    uint8_t tail[CACHE_STORE_CHUNK_SIZE > 4096 ? 4096 : CACHE_STORE_CHUNK_SIZE];
    size_t tlen = old.tlen;
    if (tlen > sizeof(tail))
        return CDN_EPROTO;
    memcpy(tail, old.tail, tlen);
    op->old_found = true;
    op->old_cost = object_cost(s, body - tlen, old.len);
    op->new_cost = object_cost(s, body - tlen, REC_HDR + op->klen + op->mlen + tlen);
    return rec_put(s, txn, op->hk, id, body, op->key, op->klen, op->meta, op->mlen, tail, tlen);
}

static int apply_remove(struct cache_store *s, MDB_txn *txn, struct op *op)
{
    struct rec old;
    int rc = rec_get(s, txn, op->hk, &old);
    if (rc == MDB_NOTFOUND || rc == CDN_EPROTO ||
        (rc == 0 && (old.klen != op->klen || memcmp(old.key, op->key, op->klen) != 0))) {
        op->skipped = true;
        return 0;
    }
    if (rc != 0)
        return rc;
    op->old_found = true;
    op->old_cost = object_cost(s, old.body - old.tlen, old.len);
    return delete_object(s, txn, op->hk, &old);
}

static int apply_op(struct cache_store *s, MDB_txn *txn, struct op *op)
{
    op->skipped = op->old_found = op->old_damaged = false;
    op->old_cost = op->new_cost = 0;
    switch (op->kind) {
    case OP_CHUNK:
        if (atomic_load(&op->fill->werr) != 0) {
            op->skipped = true; /* an earlier chunk failed: the fill is dead */
            return 0;
        }
        return put_chunk(s, txn, op->fill->id, op->idx, op->data, op->len);
    case OP_COMMIT:
        return apply_commit(s, txn, op);
    case OP_ABORT:
        return delete_chunks(s, txn, op->fill->id);
    case OP_META:
        return apply_meta(s, txn, op);
    case OP_REMOVE:
        return apply_remove(s, txn, op);
    }
    return CDN_EINVAL;
}

/* Applies ops [first, stop) in one write transaction. */
static int txn_apply(struct cache_store *s, struct op *first, struct op *stop)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0)
        return rc;
    for (struct op *op = first; op != stop; op = op->next) {
        if ((rc = apply_op(s, txn, op)) != 0) {
            mdb_txn_abort(txn);
            return rc;
        }
    }
    return commit_measured(s, txn);
}

/* ---- writer: effects after a commit ---- */

static void fill_drained(struct cache_store *s, struct cache_fill *f, size_t n)
{
    uint64_t left = atomic_fetch_sub(&f->inflight, n) - n;
    /* seq_cst pairs with cache_fill_append: it sets want_drain, then re-reads inflight. */
    if (left > s->fill_low || !atomic_exchange(&f->want_drain, false))
        return;
    uv_mutex_lock(&f->cb_mu);
    if (!f->ended && f->cb != NULL)
        f->cb(f, f->cb_data);
    uv_mutex_unlock(&f->cb_mu);
}

static void object_gone(struct cache_store *s, const uint8_t hk[HKEY_LEN], uint64_t cost)
{
    cache_evict_remove(s->ev, hkey_id(hk));
    set_used(s, s->used >= cost ? s->used - cost : 0);
    atomic_fetch_sub(&s->st.objects, 1);
}

static void op_done(struct cache_store *s, struct op *op)
{
    struct cache_fill *f = op->fill;
    switch (op->kind) {
    case OP_CHUNK:
        if (!op->skipped) {
            uint64_t c = val_cost(s, CKEY_LEN, op->len);
            f->written_cost += c;
            set_used(s, s->used + c);
        }
        fill_drained(s, f, op->len);
        break;
    case OP_COMMIT:
        if (op->skipped) {
            set_used(s, s->used >= f->written_cost ? s->used - f->written_cost : 0);
            st_add(&s->st.fills_aborted, 1);
            if (f->commit_cb != NULL)
                f->commit_cb(f->commit_data, false);
            break;
        }
        if (op->old_found) {
            object_gone(s, f->hk, op->old_cost);
        } else if (op->old_damaged) {
            st_add(&s->st.read_errors, 1);
            if (cache_evict_remove(s->ev, f->hkey)) /* it was valid once; its cost is unknown now */
                atomic_fetch_sub(&s->st.objects, 1);
        }
        set_used(s, s->used - f->written_cost + op->new_cost);
        CDN_ASSERT(cache_evict_insert(s->ev, f->hkey, op->new_cost) == 0);
        atomic_fetch_add(&s->st.objects, 1);
        st_add(&s->st.fills_committed, 1);
        if (f->commit_cb != NULL)
            f->commit_cb(f->commit_data, true);
        break;
    case OP_ABORT:
        set_used(s, s->used >= f->written_cost ? s->used - f->written_cost : 0);
        break;
    case OP_META:
        if (op->old_found) {
            set_used(s, s->used - op->old_cost + op->new_cost);
            st_add(&s->st.meta_updates, 1);
        }
        break;
    case OP_REMOVE:
        if (op->old_found) {
            object_gone(s, op->hk, op->old_cost);
            st_add(&s->st.removes, 1);
        }
        break;
    }
}

/* An op that could not be written even alone after evicting harder. */
static void op_failed(struct cache_store *s, struct op *op, int rc)
{
    st_add(&s->st.write_errors, 1);
    struct cache_fill *f = op->fill;
    int zero = 0;
    switch (op->kind) {
    case OP_CHUNK:
        /* negative, as every fill call returns errors: an errno from LMDB (EIO, ENOSPC) is positive */
        atomic_compare_exchange_strong(&f->werr, &zero, rc > 0 ? -rc : rc);
        fill_drained(s, f, op->len);
        break;
    case OP_COMMIT:
    case OP_ABORT: {
        /* Best effort; if even deleting fails, the chunks stay as orphans until the next open. */
        MDB_txn *txn;
        if (mdb_txn_begin(s->env, NULL, 0, &txn) == 0) {
            if (delete_chunks(s, txn, f->id) == 0)
                mdb_txn_commit(txn);
            else
                mdb_txn_abort(txn);
        }
        set_used(s, s->used >= f->written_cost ? s->used - f->written_cost : 0);
        if (op->kind == OP_COMMIT) {
            st_add(&s->st.fills_aborted, 1);
            if (f->commit_cb != NULL)
                f->commit_cb(f->commit_data, false);
        }
        break;
    }
    case OP_META:
    case OP_REMOVE:
        break;
    }
}

/* ---- eviction ---- */

/*
 * Makes sure `need` more bytes fit under the high-water mark, evicting down to the low-water mark
 * (lower when need is more than the band between the marks; a further band lower per `level`
 * when retrying after MDB_MAP_FULL).
 * The marks apply to the pages really held (s->real); victims are counted by their estimated
 * cost, so the target is turned into estimate units by the ratio of the two.
 * Writer thread (or open(), before the writer starts).
 */
static int make_room(struct cache_store *s, uint64_t need, int level)
{
    uint64_t high = high_mark(s), low = low_mark(s);
    if (level == 0 && s->real + need <= high)
        return 0;
    /* Down to the low-water mark, or further if the batch needs more than the band between the marks
     * (its leaf copies are freed again when it commits, so they are not taken below the low mark). */
    uint64_t target = high > need ? high - need : 0;
    if (target > low)
        target = low;
    /* After MDB_MAP_FULL (pages freed lately still pinned, or more leaf copies than counted): one band
     * more per retry (a fixed share of the map would throw away a thousand objects at once). */
    uint64_t cut = (uint64_t)level * band(s);
    target = target > cut ? target - cut : 0;
    if (s->real <= target || cache_evict_count(s->ev) == 0)
        return 0;
    if (s->real > 0 && s->used > 0)
        target = (uint64_t)((double)target * ((double)s->used / (double)s->real));
    if (s->used <= target)
        target = s->used - s->used / 8; /* estimates say all is gone already: evict an eighth anyway */

    /* Small transactions: every delete copies a leaf page or two (victims are scattered over the key
     * space), so one big eviction transaction would need more free pages than a nearly full map has.
     * A transaction gets at most a quarter of the free pages' worth of victims, and half as many
     * again after MDB_MAP_FULL (pages that open reads pin are not free), down to one. */
    struct victim v[EVICT_PER_TXN];
    uint64_t avail = s->map_size > s->real ? (s->map_size - s->real) / s->psize / 4 : 0;
    size_t per_txn = avail < 1 ? 1 : avail > EVICT_PER_TXN ? EVICT_PER_TXN : (size_t)avail;
    MDB_txn *txn;
    int rc = 0;
    while (s->used > target && cache_evict_count(s->ev) > 0) {
        if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
            return rc;
        size_t nv = 0;
        uint64_t used = s->used, freed = 0;
        while (used > target && nv < per_txn) {
            struct victim x;
            if (cache_evict_one(s->ev, &x.hkey, &x.size) != 0)
                break;
            v[nv++] = x;
            uint8_t hk[HKEY_LEN];
            id_to_hk(x.hkey, hk);
            struct rec r;
            rc = rec_get(s, txn, hk, &r);
            if (rc == 0) {
                x.cost = object_cost(s, r.body - r.tlen, r.len);
                rc = delete_object(s, txn, hk, &r);
            } else if (rc == MDB_NOTFOUND || rc == CDN_EPROTO) {
                x.cost = x.size; /* trust the policy's size */
                rc = delete_object(s, txn, hk, NULL);
            }
            if (rc != 0)
                break;
            v[nv - 1].cost = x.cost;
            used = used > x.cost ? used - x.cost : 0;
            freed += x.cost;
        }
        if (rc == 0)
            rc = commit_measured(s, txn);
        else
            mdb_txn_abort(txn);
        if (rc != 0) {
            for (size_t i = 0; i < nv; i++)
                cache_evict_insert(s->ev, v[i].hkey, v[i].size);
            if (!is_space_err(rc) || per_txn == 1)
                break;
            per_txn /= 2;
            rc = 0;
            continue;
        }
        set_used(s, s->used > freed ? s->used - freed : 0);
        atomic_fetch_sub(&s->st.objects, nv);
        st_add(&s->st.evictions, nv);
        st_add(&s->st.evicted_bytes, freed);
    }

    /* One more transaction so that the pages just freed are reusable by the next one. */
    if (mdb_txn_begin(s->env, NULL, 0, &txn) == 0) {
        uint64_t tick = atomic_load(&s->st.evictions);
        MDB_val k = {4, (void *)"tick"}, d = {sizeof(tick), &tick};
        if (mdb_put(txn, s->dbi_info, &k, &d, 0) == 0)
            mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    return rc;
}

/* ---- the writer thread ---- */

static void run_batch(struct cache_store *s, struct op *ops)
{
    uint64_t need = (uint64_t)BATCH_COW_PAGES * s->psize;
    for (struct op *op = ops; op != NULL; op = op->next)
        need += op_need(s, op);
    make_room(s, need, 0);
    int rc = 0;
    for (int attempt = 0; attempt <= SPACE_RETRIES; attempt++) {
        if ((rc = txn_apply(s, ops, NULL)) == 0) {
            for (struct op *op = ops; op != NULL; op = op->next)
                op_done(s, op);
            if (attempt == 0)
                keep_less(s);
            return;
        }
        if (!is_space_err(rc))
            break;
        st_add(&s->st.map_full_retries, 1);
        keep_more(s);
        make_room(s, need, attempt + 1);
    }
    if (ops->next == NULL) {
        op_failed(s, ops, rc);
        return;
    }
    /* Something in the batch does not fit or is broken: isolate it. */
    for (struct op *op = ops; op != NULL; op = op->next) {
        for (int attempt = 0; attempt <= SPACE_RETRIES; attempt++) {
            if ((rc = txn_apply(s, op, op->next)) == 0 || !is_space_err(rc))
                break;
            st_add(&s->st.map_full_retries, 1);
            keep_more(s);
            make_room(s, op_need(s, op), attempt + 1);
        }
        if (rc == 0)
            op_done(s, op);
        else
            op_failed(s, op, rc);
    }
}

static void writer_main(void *arg)
{
    struct cache_store *s = arg;
    uv_mutex_lock(&s->mu);
    for (;;) {
        while (s->qhead == NULL && !s->stopping)
            uv_cond_wait(&s->work_cond, &s->mu);
        if (s->qhead == NULL)
            break;
        struct op *first = s->qhead, *last = first;
        uint64_t bytes = op_bytes(s, first), n = 1;
        while (last->next != NULL && n < OPS_PER_BATCH && bytes + op_bytes(s, last->next) <= s->batch_max) {
            last = last->next;
            bytes += op_bytes(s, last);
            n++;
        }
        s->qhead = last->next;
        if (s->qhead == NULL)
            s->qtail = &s->qhead;
        last->next = NULL;
        s->nqueued -= n;
        uv_mutex_unlock(&s->mu);

        run_batch(s, first);
        for (struct op *op = first, *next; op != NULL; op = next) {
            next = op->next;
            op_free(op);
        }

        uv_mutex_lock(&s->mu);
        s->done_seq += n;
        uv_cond_broadcast(&s->done_cond);
    }
    uv_mutex_unlock(&s->mu);
}

/* ---- open: files, state, scan ---- */

static int mkdir_p(const char *path)
{
    char *p = cdn_xstrdup(path);
    int rc = 0;
    for (char *q = p + 1;; q++) {
        if (*q != '/' && *q != '\0')
            continue;
        char c = *q;
        *q = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            rc = -errno;
            break;
        }
        *q = c;
        if (c == '\0')
            break;
    }
    free(p);
    if (rc == 0) {
        struct stat sb;
        if (stat(path, &sb) != 0)
            rc = -errno;
        else if (!S_ISDIR(sb.st_mode))
            rc = -ENOTDIR;
    }
    return rc;
}

static char *path_join(const struct cache_store *s, const char *name)
{
    return cdn_xasprintf("%s/%s", s->path, name);
}

static void read_boot_id(struct cache_store *s, const char *override)
{
    s->boot_id[0] = '\0';
    if (override != NULL) {
        snprintf(s->boot_id, sizeof(s->boot_id), "%s", override);
        return;
    }
    FILE *fp = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (fp == NULL)
        return;
    if (fgets(s->boot_id, sizeof(s->boot_id), fp) == NULL)
        s->boot_id[0] = '\0';
    fclose(fp);
    s->boot_id[strcspn(s->boot_id, "\n ")] = '\0';
}

/* Writes the state file durably: tmp file, fsync, rename, fsync of the directory. */
static int write_state(struct cache_store *s, const char *text)
{
    char *tmp = path_join(s, "state.tmp"), *dst = path_join(s, "state");
    int rc = 0, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    size_t n = strlen(text);
    if (write(fd, text, n) != (ssize_t)n || fsync(fd) != 0)
        rc = errno != 0 ? -errno : CDN_EINVAL;
    close(fd);
    if (rc == 0 && rename(tmp, dst) != 0)
        rc = -errno;
    if (rc == 0 && (fd = open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        fsync(fd);
        close(fd);
    }
out:
    free(tmp);
    free(dst);
    return rc;
}

/* Reason to wipe before opening LMDB (heap string), or NULL when the data may be trusted. */
static char *check_state(struct cache_store *s)
{
    char *data = path_join(s, "data.mdb"), *state = path_join(s, "state"), *why = NULL;
    struct stat sb;
    if (stat(data, &sb) != 0)
        goto out; /* nothing to trust or distrust */
    char buf[128] = "";
    FILE *fp = fopen(state, "re");
    if (fp == NULL) {
        why = cdn_xstrdup("state file missing");
        goto out;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    if (strcmp(buf, "clean\n") == 0)
        goto out;
    if (strncmp(buf, "open ", 5) == 0) {
        buf[strcspn(buf, "\n")] = '\0';
        if (s->boot_id[0] != '\0' && strcmp(buf + 5, s->boot_id) == 0)
            goto out; /* a process crash: the page cache had every committed write */
        why = cdn_xstrdup("not closed cleanly before a reboot (writes may be torn)");
        goto out;
    }
    why = cdn_xstrdup("state file unreadable");
out:
    free(data);
    free(state);
    return why;
}

static void wipe_files(struct cache_store *s)
{
    static const char *const names[] = {"data.mdb", "lock.mdb", "state"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *p = path_join(s, names[i]);
        unlink(p);
        free(p);
    }
}

static void env_close(struct cache_store *s)
{
    if (s->env != NULL)
        mdb_env_close(s->env);
    s->env = NULL;
}

/* Errors from mdb_env_open that say nothing about the file's contents (permissions, resources, disk
 * trouble): wiping would not help, so they are returned instead. */
static bool open_error_means_damage(int rc)
{
    switch (rc) {
    case EACCES:
    case EPERM:
    case EROFS:
    case ENOMEM:
    case ENOSPC:
    case EMFILE:
    case ENFILE:
    case EAGAIN:
    case EBUSY:
    case EIO:
        return false;
    default:
        return true;
    }
}

/*
 * LMDB maps the whole file and faults (SIGBUS) on a page past its end. Pages that a transaction
 * allocated and freed again are never written, so a healthy file may legitimately end before
 * last_pgno; only a damaged one has live pages there. Extending it (sparse) turns a fault into
 * pages of zeros, which LMDB reports as MDB_CORRUPTED, which we handle.
 */
static int extend_data_file(struct cache_store *s, const MDB_envinfo *info)
{
    char *data = path_join(s, "data.mdb");
    int rc = 0, fd = open(data, O_RDWR | O_CLOEXEC);
    free(data);
    if (fd < 0)
        return -errno;
    struct stat sb;
    off_t want = (off_t)(((uint64_t)info->me_last_pgno + 1) * s->psize);
    if (fstat(fd, &sb) != 0 || (sb.st_size < want && ftruncate(fd, want) != 0))
        rc = -errno;
    close(fd);
    return rc;
}

struct scan_obj {
    uint64_t id, hkey, body, cost; /* body: the bytes in chunks (the tail is in the record) */
    uint64_t chunks, bytes;
    bool bad;
};

static int cmp_scan_id(const void *a, const void *b)
{
    const struct scan_obj *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static struct scan_obj *find_obj(struct scan_obj *objs, size_t n, uint64_t id)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (objs[mid].id < id)
            lo = mid + 1;
        else if (objs[mid].id > id)
            hi = mid;
        else
            return &objs[mid];
    }
    return NULL;
}

struct scan {
    struct scan_obj *objs;
    size_t nobjs, cap;
    uint64_t *drop_ids; /* chunk ids to delete (orphans, damaged objects) */
    size_t ndrop, dcap;
    uint64_t *drop_keys; /* records to delete: damaged */
    size_t nkeys, kcap;
    uint64_t orphan_chunks, max_id;
};

static void push_u64(uint64_t **a, size_t *n, size_t *cap, uint64_t v)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *a = cdn_xrealloc(*a, *cap * sizeof(**a));
    }
    (*a)[(*n)++] = v;
}

static int scan_objects(struct cache_store *s, MDB_txn *txn, struct scan *sc)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->dbi_objects, &c);
    if (rc != 0)
        return rc;
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        struct rec r;
        if (k.mv_size != HKEY_LEN || !rec_parse(&v, &r)) {
            if (k.mv_size != HKEY_LEN) {
                rc = MDB_CORRUPTED; /* not something we wrote */
                break;
            }
            push_u64(&sc->drop_keys, &sc->nkeys, &sc->kcap, hkey_id(k.mv_data));
            continue;
        }
        if (sc->nobjs == sc->cap) {
            sc->cap = sc->cap ? sc->cap * 2 : 256;
            sc->objs = cdn_xrealloc(sc->objs, sc->cap * sizeof(*sc->objs));
        }
        sc->objs[sc->nobjs++] = (struct scan_obj){.id = r.id,
                                                  .hkey = hkey_id(k.mv_data),
                                                  .body = r.body - r.tlen,
                                                  .cost = object_cost(s, r.body - r.tlen, r.len)};
        if (r.id > sc->max_id)
            sc->max_id = r.id;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int scan_chunks(struct cache_store *s, MDB_txn *txn, struct scan *sc)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->dbi_chunks, &c);
    if (rc != 0)
        return rc;
    MDB_val k, v;
    uint64_t cur = 0;
    bool have = false;
    struct scan_obj *o = NULL;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != CKEY_LEN) {
            rc = MDB_CORRUPTED;
            break;
        }
        uint64_t id = chunk_key_id(k.mv_data);
        uint32_t idx = chunk_key_idx(k.mv_data);
        if (id > sc->max_id)
            sc->max_id = id;
        if (!have || id != cur) {
            have = true;
            cur = id;
            o = find_obj(sc->objs, sc->nobjs, id);
            if (o == NULL)
                push_u64(&sc->drop_ids, &sc->ndrop, &sc->dcap, id);
        }
        if (o == NULL) {
            sc->orphan_chunks++;
            continue;
        }
        /* Chunks must be 0, 1, 2... with full sizes except the last. */
        uint64_t want = o->body - (uint64_t)idx * CACHE_STORE_CHUNK_SIZE;
        if (want > CACHE_STORE_CHUNK_SIZE)
            want = CACHE_STORE_CHUNK_SIZE;
        if (idx != o->chunks || (uint64_t)idx * CACHE_STORE_CHUNK_SIZE >= o->body || v.mv_size != want)
            o->bad = true;
        o->chunks++;
        o->bytes += v.mv_size;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Deletes up to DELETES_PER_TXN of the damaged records and orphan chunk sets, from *i / *j on. */
static int cleanup_some(struct cache_store *s, MDB_txn *txn, const struct scan *sc, size_t *i, size_t *j)
{
    int rc = 0;
    for (size_t n = 0; rc == 0 && n < DELETES_PER_TXN && (*i < sc->nkeys || *j < sc->ndrop); n++) {
        if (*i < sc->nkeys) {
            uint8_t hk[HKEY_LEN];
            id_to_hk(sc->drop_keys[(*i)++], hk);
            rc = delete_object(s, txn, hk, NULL);
        } else {
            rc = delete_chunks(s, txn, sc->drop_ids[(*j)++]);
        }
    }
    return rc;
}

/* Deletes damaged records and chunks of orphans / damaged objects, a few per transaction. */
static int scan_cleanup(struct cache_store *s, const struct scan *sc)
{
    size_t i = 0, j = 0;
    int rc = 0;
    while (rc == 0 && (i < sc->nkeys || j < sc->ndrop)) {
        MDB_txn *txn;
        if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
            break;
        if ((rc = cleanup_some(s, txn, sc, &i, &j)) == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    return rc;
}

/* Marks objects whose chunks do not add up as damaged: record and chunks will be dropped. */
static void find_damaged(struct scan *sc)
{
    for (size_t i = 0; i < sc->nobjs; i++) {
        struct scan_obj *o = &sc->objs[i];
        if (!o->bad && o->chunks == nchunks_of(o->body) && o->bytes == o->body)
            continue;
        o->bad = true;
        push_u64(&sc->drop_keys, &sc->nkeys, &sc->kcap, o->hkey);
        push_u64(&sc->drop_ids, &sc->ndrop, &sc->dcap, o->id);
    }
}

/* Opens the environment and loads it. Returns 0, NEED_REBUILD with *why set, or an error with *why. */
static int env_load(struct cache_store *s, char **why, char **warn)
{
    struct scan sc = {0};
    MDB_txn *txn = NULL;
    int rc;
    if ((rc = mdb_env_create(&s->env)) != 0 || (rc = mdb_env_set_mapsize(s->env, s->map_size)) != 0 ||
        (rc = mdb_env_set_maxreaders(s->env, MAX_READERS)) != 0 ||
        (rc = mdb_env_set_maxdbs(s->env, 4)) != 0) {
        *why = cdn_xasprintf("mdb_env_create: %s", mdb_strerror(rc));
        goto fail;
    }
    rc = mdb_env_open(s->env, s->path, MDB_NOTLS, 0600);
    if (rc != 0) {
        *why = cdn_xasprintf("cannot open LMDB environment: %s", mdb_strerror(rc));
        rc = open_error_means_damage(rc) ? NEED_REBUILD : (rc > 0 ? -rc : rc);
        goto fail;
    }
    int dead = 0;
    mdb_reader_check(s->env, &dead);

    MDB_envinfo info;
    MDB_stat mst;
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &mst);
    s->psize = mst.ms_psize;
    if ((rc = extend_data_file(s, &info)) != 0) {
        *why = cdn_xasprintf("data.mdb: %s", cdn_strerror(rc));
        goto fail;
    }

    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0 ||
        (rc = mdb_dbi_open(txn, "info", MDB_CREATE, &s->dbi_info)) != 0 ||
        (rc = mdb_dbi_open(txn, "objects", MDB_CREATE, &s->dbi_objects)) != 0 ||
        (rc = mdb_dbi_open(txn, "chunks", MDB_CREATE, &s->dbi_chunks)) != 0) {
        *why = cdn_xasprintf("cannot open databases: %s", mdb_strerror(rc));
        rc = NEED_REBUILD;
        goto fail;
    }
    MDB_val fk = {6, (void *)"format"}, fv;
    rc = mdb_get(txn, s->dbi_info, &fk, &fv);
    if (rc == 0) {
        if (fv.mv_size != strlen(FORMAT_STRING) || memcmp(fv.mv_data, FORMAT_STRING, fv.mv_size) != 0) {
            *why = cdn_xasprintf("incompatible format \"%.*s\" (this build: \"%s\")",
                                 (int)(fv.mv_size > 80 ? 80 : fv.mv_size), (const char *)fv.mv_data,
                                 FORMAT_STRING);
            rc = NEED_REBUILD;
            goto fail;
        }
    } else if (rc == MDB_NOTFOUND) {
        MDB_stat o, c;
        if ((rc = mdb_stat(txn, s->dbi_objects, &o)) != 0 || (rc = mdb_stat(txn, s->dbi_chunks, &c)) != 0 ||
            o.ms_entries + c.ms_entries != 0) {
            *why = cdn_xstrdup("no format record");
            rc = NEED_REBUILD;
            goto fail;
        }
        fv = (MDB_val){strlen(FORMAT_STRING), (void *)FORMAT_STRING};
        if ((rc = mdb_put(txn, s->dbi_info, &fk, &fv, 0)) != 0) {
            *why = cdn_xasprintf("cannot write format record: %s", mdb_strerror(rc));
            goto fail;
        }
    } else {
        *why = cdn_xasprintf("cannot read format record: %s", mdb_strerror(rc));
        rc = NEED_REBUILD;
        goto fail;
    }
    MDB_val hkk = {7, (void *)"hashkey"}, hkv;
    rc = mdb_get(txn, s->dbi_info, &hkk, &hkv);
    if (rc == 0 && hkv.mv_size == sizeof(s->hash_secret)) {
        memcpy(s->hash_secret, hkv.mv_data, sizeof(s->hash_secret));
    } else if (rc == MDB_NOTFOUND) {
        MDB_stat o;
        if ((rc = mdb_stat(txn, s->dbi_objects, &o)) != 0 || o.ms_entries != 0) {
            *why = cdn_xstrdup("no hash key record");
            rc = NEED_REBUILD;
            goto fail;
        }
        if (RAND_bytes(s->hash_secret, (int)sizeof(s->hash_secret)) != 1) {
            *why = cdn_xstrdup("no random bytes for the hash key");
            rc = CDN_ETLS;
            goto fail;
        }
        hkv = (MDB_val){sizeof(s->hash_secret), s->hash_secret};
        if ((rc = mdb_put(txn, s->dbi_info, &hkk, &hkv, 0)) != 0) {
            *why = cdn_xasprintf("cannot write hash key record: %s", mdb_strerror(rc));
            goto fail;
        }
    } else {
        *why = rc == 0 ? cdn_xstrdup("bad hash key record")
                       : cdn_xasprintf("cannot read hash key record: %s", mdb_strerror(rc));
        rc = NEED_REBUILD;
        goto fail;
    }
    if ((rc = scan_objects(s, txn, &sc)) == 0) {
        if (sc.nobjs > 1)
            qsort(sc.objs, sc.nobjs, sizeof(*sc.objs), cmp_scan_id);
        rc = scan_chunks(s, txn, &sc);
    }
    if (rc != 0) {
        *why = cdn_xasprintf("scan failed: %s", mdb_strerror(rc));
        rc = NEED_REBUILD;
        goto fail;
    }
    find_damaged(&sc);
    if (s->dry_run) {
        /* The probe: exercise the deletes in the scan transaction (its DBI handles die with it). */
        size_t i = 0, j = 0;
        if ((rc = cleanup_some(s, txn, &sc, &i, &j)) != 0) {
            *why = cdn_xasprintf("cannot delete orphans: %s", mdb_strerror(rc));
            rc = NEED_REBUILD;
        }
        goto fail; /* aborts txn */
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc != 0) {
        *why = cdn_xasprintf("cannot commit: %s", mdb_strerror(rc));
        goto fail;
    }
    if (sc.nkeys > 0)
        cdn_strappendf(warn, "cache store %s: dropped %zu damaged object(s)", s->path, sc.nkeys);
    if ((rc = scan_cleanup(s, &sc)) != 0) {
        *why = cdn_xasprintf("cannot delete orphans: %s", mdb_strerror(rc));
        rc = NEED_REBUILD;
        goto fail;
    }
    atomic_store(&s->st.orphan_chunks_removed, sc.orphan_chunks);

    /* Ids were handed out in fill order: re-inserting in id order restores the FIFO. */
    uint64_t used = 0, nobj = 0;
    for (size_t i = 0; i < sc.nobjs; i++) {
        struct scan_obj *o = &sc.objs[i];
        if (o->bad)
            continue;
        if (cache_evict_insert(s->ev, o->hkey, o->cost) == 0) {
            used += o->cost;
            nobj++;
        }
    }
    set_used(s, used);
    MDB_txn *rt;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &rt) == 0) {
        set_real(s, map_used(s, rt));
        mdb_txn_abort(rt);
    }
    atomic_store(&s->st.objects, nobj);
    atomic_store(&s->next_id, sc.max_id + 1);
    rc = 0;
fail:
    if (txn != NULL)
        mdb_txn_abort(txn);
    free(sc.objs);
    free(sc.drop_ids);
    free(sc.drop_keys);
    if (rc != 0)
        env_close(s);
    return rc;
}

/*
 * LMDB trusts its file: garbage in a tree page can make it abort() (its own assertions) or fault
 * instead of returning MDB_CORRUPTED. So before the real load, a child process does the same load
 * as a dry run (every write transaction aborted). If the child dies, fails or hangs, the file is
 * unsafe and gets wiped; if it succeeds, the real load walks the same pages (we hold store.lock, so
 * the file cannot change in between). Returns 0, or NEED_REBUILD with *why.
 */
static int probe(struct cache_store *s, char **why)
{
    char *data = path_join(s, "data.mdb");
    struct stat sb;
    int exists = stat(data, &sb) == 0;
    free(data);
    if (!exists)
        return 0;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return 0; /* cannot check: the real load will do its best */
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return 0;
    }
    if (pid == 0) {
        /* Whatever LMDB or a sanitizer prints about the damage stays out of the node's logs. */
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0)
            dup2(null, STDERR_FILENO);
        char *w = NULL, *warn = NULL;
        s->dry_run = true;
        int rc = env_load(s, &w, &warn);
        if (rc == NEED_REBUILD && w != NULL && write(fds[1], w, strlen(w)) < 0)
            rc = NEED_REBUILD;
        _exit(rc == 0 ? 0 : rc == NEED_REBUILD ? 10 : 11);
    }
    close(fds[1]);
    /* Scanning costs about one pass over the tree pages: allow a minute plus one per GiB. */
    uint64_t deadline = cdn_now_ms() + 60000 + (uint64_t)sb.st_size / (1024 * 1024 * 1024) * 1000;
    int status = 0;
    char buf[512];
    size_t n = 0;
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            status = -1;
            break;
        }
        if (cdn_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            status = -2;
            break;
        }
        if (poll(&pfd, 1, 10) > 0 && n < sizeof(buf) - 1) {
            ssize_t r = read(fds[0], buf + n, sizeof(buf) - 1 - n);
            if (r > 0)
                n += (size_t)r;
        }
    }
    ssize_t r;
    while (n < sizeof(buf) - 1 && (r = read(fds[0], buf + n, sizeof(buf) - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fds[0]);
    if (status == -1)
        return 0;
    if (status == -2) {
        *why = cdn_xstrdup("LMDB hung while checking the data file");
        return NEED_REBUILD;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 10) {
        *why = cdn_xstrdup(n > 0 ? buf : "damaged");
        return NEED_REBUILD;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 11)
        return 0; /* not about the contents (permissions, memory...): the real load reports it */
    if (WIFSIGNALED(status))
        *why = cdn_xasprintf("LMDB crashed checking the data file (signal %d)", WTERMSIG(status));
    else
        *why = cdn_xasprintf("LMDB failed checking the data file (exit %d)", WEXITSTATUS(status));
    return NEED_REBUILD;
}

static void store_free(struct cache_store *s)
{
    for (unsigned i = 0; i < s->npool; i++)
        mdb_txn_abort(s->pool[i]);
    s->npool = 0;
    env_close(s);
    cache_evict_free(&s->ev);
    if (s->lock_fd >= 0)
        close(s->lock_fd); /* releases the flock */
    uv_mutex_destroy(&s->pool_mu);
    uv_mutex_destroy(&s->mu);
    uv_cond_destroy(&s->work_cond);
    uv_cond_destroy(&s->done_cond);
    free(s->path);
    s->magic = 0;
    free(s);
}

static int check_opts(const struct cache_store_opts *o, char **msg)
{
    if (o->path == NULL || o->path[0] == '\0') {
        *msg = cdn_xstrdup("cache store: no path");
        return CDN_EINVAL;
    }
    if (o->size < 1024 * 1024) {
        *msg =
            cdn_xasprintf("cache store %s: size %llu is below 1 MiB", o->path, (unsigned long long)o->size);
        return CDN_EINVAL;
    }
    if (o->max_object_size > o->size / 4) {
        *msg = cdn_xasprintf("cache store %s: max_object_size %llu is above a quarter of size", o->path,
                             (unsigned long long)o->max_object_size);
        return CDN_EINVAL;
    }
    unsigned hi = o->high_water_pct ? o->high_water_pct : 90, lo = o->low_water_pct ? o->low_water_pct : 85;
    if (hi > 95 || lo >= hi) {
        *msg = cdn_xasprintf("cache store %s: need low_water_pct < high_water_pct <= 95", o->path);
        return CDN_EINVAL;
    }
    return 0;
}

/* SIEVE with admission, sized for objects of 16 KiB on average (a guess: a sketch too small for the
 * real count only lets more in, as plain SIEVE would). */
static struct cache_evict *new_policy(const struct cache_store *s)
{
    struct cache_evict *ev = cache_evict_new();
    cache_evict_admission(ev, (size_t)(s->map_size / (16 * 1024)));
    return ev;
}

/*
 * Water marks in bytes of pages really held. Given percentages are used as they are. By default the
 * map keeps free two batches' worth or 3 % of it, whichever is more: room for the leaf pages a batch
 * and its evictions copy, pages that open reads pin, and LMDB's free list (all checked per batch by
 * make_room, so this is only the margin for what estimates miss). Eviction then frees 2 % of the map,
 * at least a batch, at a time. A 128 MiB store holds objects up to about 97 % of its map, a 4 MiB one
 * up to 87 %.
 */
static void set_marks(struct cache_store *s, const struct cache_store_opts *o)
{
    if (o->high_water_pct != 0 || o->low_water_pct != 0) {
        s->high = o->size / 100 * (o->high_water_pct ? o->high_water_pct : 90);
        s->low = o->size / 100 * (o->low_water_pct ? o->low_water_pct : 85);
        return;
    }
    uint64_t keep = o->size / 100 * 3, band = o->size / 50;
    if (keep < 2 * s->batch_max)
        keep = 2 * s->batch_max;
    if (band < s->batch_max)
        band = s->batch_max;
    s->high = o->size > keep ? o->size - keep : 0;
    s->low = s->high > band ? s->high - band : 0;
}

int cache_store_open(const struct cache_store_opts *opts, struct cache_store **out, char **msg)
{
    *out = NULL;
    *msg = NULL;
    int rc = check_opts(opts, msg);
    if (rc != 0)
        return rc;

    struct cache_store *s = cdn_xcalloc(1, sizeof(*s));
    s->magic = STORE_MAGIC;
    s->path = cdn_xstrdup(opts->path);
    s->lock_fd = -1;
    s->map_size = opts->size;
    s->max_object_size = opts->max_object_size ? opts->max_object_size : opts->size / 8;
    s->batch_max = opts->size / 64;
    if (s->batch_max < CACHE_STORE_CHUNK_SIZE)
        s->batch_max = CACHE_STORE_CHUNK_SIZE;
    if (s->batch_max > 16u * 1024 * 1024)
        s->batch_max = 16u * 1024 * 1024;
    set_marks(s, opts);
    s->fill_high = opts->fill_inflight ? opts->fill_inflight : 1024 * 1024;
    s->fill_low = s->fill_high / 4;
    s->qtail = &s->qhead;
    s->ev = new_policy(s);
    CDN_ASSERT(uv_mutex_init(&s->pool_mu) == 0 && uv_mutex_init(&s->mu) == 0);
    CDN_ASSERT(uv_cond_init(&s->work_cond) == 0 && uv_cond_init(&s->done_cond) == 0);
    read_boot_id(s, opts->boot_id);

    char *why = NULL, *warn = NULL;
    if ((rc = mkdir_p(s->path)) != 0) {
        why = cdn_xasprintf("cannot create directory: %s", cdn_strerror(rc));
        goto fail;
    }
    char *lockp = path_join(s, "store.lock");
    s->lock_fd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(lockp);
    if (s->lock_fd < 0 || flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        why = cdn_xasprintf(rc == -EBUSY ? "in use by another process" : "store.lock: %s", cdn_strerror(rc));
        goto fail;
    }

    char *stale = check_state(s);
    if (stale != NULL) {
        cdn_strappendf(&warn, "cache store %s: %s; wiped and rebuilt empty", s->path, stale);
        free(stale);
        wipe_files(s);
    }
    rc = probe(s, &why);
    if (rc == 0)
        rc = env_load(s, &why, &warn);
    if (rc == NEED_REBUILD) {
        cdn_strappendf(&warn, "cache store %s: %s; wiped and rebuilt empty", s->path, why);
        free(why);
        why = NULL;
        cache_evict_free(&s->ev);
        s->ev = new_policy(s);
        wipe_files(s);
        rc = env_load(s, &why, &warn);
        if (rc == NEED_REBUILD)
            rc = MDB_INVALID;
    }
    if (rc != 0)
        goto fail;

    /* From here on writes are unsynced: the state file must say so first. */
    char *st = cdn_xasprintf("open %s\n", s->boot_id);
    rc = write_state(s, st);
    free(st);
    if (rc != 0) {
        why = cdn_xasprintf("cannot write state file: %s", cdn_strerror(rc));
        goto fail;
    }
    mdb_env_set_flags(s->env, MDB_NOSYNC | MDB_NOMETASYNC, 1);
    make_room(s, 0, 0);

    if ((rc = uv_thread_create(&s->writer, writer_main, s)) != 0) {
        why = cdn_xasprintf("cannot start writer thread: %s", cdn_strerror(rc));
        goto fail;
    }
    *out = s;
    *msg = warn;
    return 0;
fail:
    *msg = cdn_xasprintf("cache store %s: %s", s->path, why != NULL ? why : cache_store_strerror(rc));
    if (warn != NULL) {
        cdn_strappendf(&warn, "%s", *msg);
        free(*msg);
        *msg = warn;
    }
    free(why);
    store_free(s);
    return rc < 0 ? rc : CDN_EINVAL;
}

void cache_store_flush(struct cache_store *s)
{
    CDN_CHECK_OBJ(s, STORE_MAGIC);
    uv_mutex_lock(&s->mu);
    uint64_t target = s->enq_seq;
    while (s->done_seq < target)
        uv_cond_wait(&s->done_cond, &s->mu);
    uv_mutex_unlock(&s->mu);
}

void cache_store_close(struct cache_store **sp)
{
    struct cache_store *s = *sp;
    if (s == NULL)
        return;
    *sp = NULL;
    CDN_CHECK_OBJ(s, STORE_MAGIC);
    CDN_ASSERT(atomic_load(&s->live_hits) == 0);
    CDN_ASSERT(atomic_load(&s->live_fills) == 0);
    uv_mutex_lock(&s->mu);
    s->stopping = true;
    uv_cond_signal(&s->work_cond);
    uv_mutex_unlock(&s->mu);
    uv_thread_join(&s->writer);

    /* Sync everything with durable commits back on, and only then say "clean". */
    mdb_env_set_flags(s->env, MDB_NOSYNC | MDB_NOMETASYNC, 0);
    if (mdb_env_sync(s->env, 1) == 0)
        write_state(s, "clean\n");
    store_free(s);
}

void cache_store_stats(struct cache_store *s, struct cache_store_stats *out)
{
    CDN_CHECK_OBJ(s, STORE_MAGIC);
    const struct store_counters *c = &s->st;
    *out = (struct cache_store_stats){
        .objects = atomic_load_explicit(&c->objects, memory_order_relaxed),
        .bytes = atomic_load_explicit(&c->bytes, memory_order_relaxed),
        .map_size = s->map_size,
        .lookups_hit = atomic_load_explicit(&c->lookups_hit, memory_order_relaxed),
        .lookups_miss = atomic_load_explicit(&c->lookups_miss, memory_order_relaxed),
        .fills_started = atomic_load_explicit(&c->fills_started, memory_order_relaxed),
        .fills_committed = atomic_load_explicit(&c->fills_committed, memory_order_relaxed),
        .fills_aborted = atomic_load_explicit(&c->fills_aborted, memory_order_relaxed),
        .fills_too_large = atomic_load_explicit(&c->fills_too_large, memory_order_relaxed),
        .meta_updates = atomic_load_explicit(&c->meta_updates, memory_order_relaxed),
        .removes = atomic_load_explicit(&c->removes, memory_order_relaxed),
        .evictions = atomic_load_explicit(&c->evictions, memory_order_relaxed),
        .evicted_bytes = atomic_load_explicit(&c->evicted_bytes, memory_order_relaxed),
        .write_errors = atomic_load_explicit(&c->write_errors, memory_order_relaxed),
        .read_errors = atomic_load_explicit(&c->read_errors, memory_order_relaxed),
        .map_full_retries = atomic_load_explicit(&c->map_full_retries, memory_order_relaxed),
        .orphan_chunks_removed = atomic_load_explicit(&c->orphan_chunks_removed, memory_order_relaxed),
        .not_admitted = atomic_load_explicit(&c->not_admitted, memory_order_relaxed),
    };
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) == 0)
        out->map_used = ((uint64_t)info.me_last_pgno + 1) * s->psize;
    uv_mutex_lock(&s->mu);
    out->queued_ops = s->nqueued;
    uv_mutex_unlock(&s->mu);
}

const char *cache_store_strerror(int err)
{
    if (is_mdb_err(err))
        return mdb_strerror(err);
    return cdn_strerror(err);
}

/* ---- lookups ---- */

int cache_store_lookup(struct cache_store *s, const void *key, size_t klen, struct cache_hit **hitp)
{
    CDN_CHECK_OBJ(s, STORE_MAGIC);
    *hitp = NULL;
    if (key == NULL || klen == 0 || klen > CACHE_STORE_KEY_MAX)
        return CDN_EINVAL;
    uint8_t hk[HKEY_LEN];
    hash_key(s, key, klen, hk);
    int rc = 0;
    MDB_txn *txn = txn_get(s, &rc);
    if (txn == NULL)
        return rc;
    struct rec r;
    rc = rec_get(s, txn, hk, &r);
    if (rc == 0 && (r.klen != klen || memcmp(r.key, key, klen) != 0))
        rc = MDB_NOTFOUND; /* another key with the same 64-bit hash */
    if (rc != 0) {
        txn_put(s, txn);
        cache_evict_seen(s->ev, hkey_id(hk));
        st_add(&s->st.lookups_miss, 1);
        if (rc == MDB_NOTFOUND)
            return 0;
        st_add(&s->st.read_errors, 1);
        return rc == CDN_EPROTO ? 0 : rc; /* a damaged record is a miss */
    }
    struct cache_hit *h = cdn_xcalloc(1, sizeof(*h));
    h->magic = HIT_MAGIC;
    h->store = s;
    h->txn = txn;
    h->key = r.key;
    h->klen = r.klen;
    h->meta = r.meta;
    h->mlen = r.mlen;
    h->tail = r.tail;
    h->tlen = r.tlen;
    h->id = r.id;
    h->body_size = r.body;
    h->cidx = UINT64_MAX;
    atomic_fetch_add(&s->live_hits, 1);
    st_add(&s->st.lookups_hit, 1);
    cache_evict_seen(s->ev, hkey_id(hk));
    cache_evict_hit(s->ev, hkey_id(hk));
    *hitp = h;
    return 0;
}

const void *cache_hit_meta(const struct cache_hit *h, size_t *len)
{
    CDN_CHECK_OBJ(h, HIT_MAGIC);
    *len = h->mlen;
    return h->meta;
}

const void *cache_hit_key(const struct cache_hit *h, size_t *len)
{
    CDN_CHECK_OBJ(h, HIT_MAGIC);
    *len = h->klen;
    return h->key;
}

uint64_t cache_hit_body_size(const struct cache_hit *h)
{
    CDN_CHECK_OBJ(h, HIT_MAGIC);
    return h->body_size;
}

uint64_t cache_hit_id(const struct cache_hit *h)
{
    CDN_CHECK_OBJ(h, HIT_MAGIC);
    return h->id;
}

const void *cache_hit_body(struct cache_hit *h, uint64_t off, size_t *len)
{
    CDN_CHECK_OBJ(h, HIT_MAGIC);
    *len = 0;
    if (off >= h->body_size)
        return NULL;
    uint64_t cbytes = h->body_size - h->tlen;
    if (off >= cbytes) {
        *len = (size_t)(h->body_size - off);
        return h->tail + (off - cbytes);
    }
    uint64_t idx = off / CACHE_STORE_CHUNK_SIZE, in = off % CACHE_STORE_CHUNK_SIZE;
    if (idx != h->cidx) {
        uint8_t ck[CKEY_LEN];
        chunk_key(ck, h->id, (uint32_t)idx);
        MDB_val k = {CKEY_LEN, ck}, v;
        uint64_t want = cbytes - idx * CACHE_STORE_CHUNK_SIZE;
        if (want > CACHE_STORE_CHUNK_SIZE)
            want = CACHE_STORE_CHUNK_SIZE;
        if (mdb_get(h->txn, h->store->dbi_chunks, &k, &v) != 0 || v.mv_size != want) {
            st_add(&h->store->st.read_errors, 1);
            return NULL;
        }
        h->cidx = idx;
        h->cptr = v.mv_data;
        h->clen = v.mv_size;
    }
    *len = h->clen - (size_t)in;
    return h->cptr + in;
}

void cache_hit_release(struct cache_hit **hp)
{
    struct cache_hit *h = *hp;
    if (h == NULL)
        return;
    *hp = NULL;
    CDN_CHECK_OBJ(h, HIT_MAGIC);
    struct cache_store *s = h->store;
    txn_put(s, h->txn);
    atomic_fetch_sub(&s->live_hits, 1);
    h->magic = 0;
    free(h);
}

/* ---- fills ---- */

bool cache_store_admit(struct cache_store *s, const void *key, size_t klen)
{
    CDN_CHECK_OBJ(s, STORE_MAGIC);
    if (!atomic_load_explicit(&s->full, memory_order_relaxed) || key == NULL || klen == 0 ||
        klen > CACHE_STORE_KEY_MAX)
        return true;
    uint8_t hk[HKEY_LEN];
    hash_key(s, key, klen, hk);
    if (cache_evict_admit(s->ev, hkey_id(hk)))
        return true;
    st_add(&s->st.not_admitted, 1);
    return false;
}

int cache_store_fill_begin(struct cache_store *s, const void *key, size_t klen, struct cache_fill **out)
{
    CDN_CHECK_OBJ(s, STORE_MAGIC);
    *out = NULL;
    if (key == NULL || klen == 0 || klen > CACHE_STORE_KEY_MAX)
        return CDN_EINVAL;
    struct cache_fill *f = cdn_xcalloc(1, sizeof(*f));
    f->magic = FILL_MAGIC;
    f->store = s;
    atomic_init(&f->refs, 1);
    f->id = atomic_fetch_add(&s->next_id, 1);
    hash_key(s, key, klen, f->hk);
    f->hkey = hkey_id(f->hk);
    f->key = cdn_xmalloc(klen);
    memcpy(f->key, key, klen);
    f->klen = klen;
    atomic_init(&f->werr, 0);
    atomic_init(&f->inflight, 0);
    atomic_init(&f->want_drain, false);
    CDN_ASSERT(uv_mutex_init(&f->cb_mu) == 0);
    atomic_fetch_add(&s->live_fills, 1);
    st_add(&s->st.fills_started, 1);
    *out = f;
    return 0;
}

void cache_fill_on_commit(struct cache_fill *f, cache_fill_commit_cb *cb, void *data)
{
    CDN_CHECK_OBJ(f, FILL_MAGIC);
    f->commit_cb = cb;
    f->commit_data = data;
}

void cache_fill_on_drain(struct cache_fill *f, cache_fill_drain_cb *cb, void *data)
{
    CDN_CHECK_OBJ(f, FILL_MAGIC);
    uv_mutex_lock(&f->cb_mu);
    f->cb = cb;
    f->cb_data = data;
    uv_mutex_unlock(&f->cb_mu);
}

static void queue_chunk(struct cache_fill *f)
{
    struct op *op = op_new(OP_CHUNK);
    atomic_fetch_add(&f->refs, 1);
    op->fill = f;
    op->idx = f->nchunks++;
    op->data = f->cur;
    op->len = f->cur_len;
    f->cur = NULL;
    f->cur_len = 0;
    atomic_fetch_add(&f->inflight, op->len);
    enqueue(f->store, op);
}

int cache_fill_append(struct cache_fill *f, const void *p, size_t n)
{
    CDN_CHECK_OBJ(f, FILL_MAGIC);
    struct cache_store *s = f->store;
    if (f->err == 0)
        f->err = atomic_load(&f->werr);
    if (f->err != 0)
        return f->err;
    if (n > s->max_object_size - f->total) {
        f->err = CDN_ELIMIT;
        st_add(&s->st.fills_too_large, 1);
        return f->err;
    }
    const char *src = p;
    f->total += n;
    while (n > 0) {
        if (f->cur == NULL)
            f->cur = cdn_xmalloc(CACHE_STORE_CHUNK_SIZE);
        size_t take = CACHE_STORE_CHUNK_SIZE - f->cur_len;
        if (take > n)
            take = n;
        memcpy(f->cur + f->cur_len, src, take);
        f->cur_len += take;
        src += take;
        n -= take;
        if (f->cur_len == CACHE_STORE_CHUNK_SIZE)
            queue_chunk(f);
    }
    if (atomic_load(&f->inflight) < s->fill_high)
        return 0;
    /* Dekker with fill_drained(): announce first, then re-check, so a drain is never missed. */
    atomic_store(&f->want_drain, true);
    return atomic_load(&f->inflight) > s->fill_low ? CACHE_FILL_BUSY : 0;
}

bool cache_fill_busy(const struct cache_fill *f)
{
    CDN_CHECK_OBJ(f, FILL_MAGIC);
    return atomic_load(&((struct cache_fill *)f)->inflight) > f->store->fill_low;
}

/* The caller's side of ending a fill: no drain callback after this. */
static void fill_end(struct cache_fill *f)
{
    uv_mutex_lock(&f->cb_mu);
    f->ended = true;
    uv_mutex_unlock(&f->cb_mu);
    atomic_fetch_sub(&f->store->live_fills, 1);
}

void cache_fill_abort(struct cache_fill **fp)
{
    struct cache_fill *f = *fp;
    if (f == NULL)
        return;
    *fp = NULL;
    CDN_CHECK_OBJ(f, FILL_MAGIC);
    struct cache_store *s = f->store;
    fill_end(f);
    st_add(&s->st.fills_aborted, 1);
    if (f->nchunks > 0) {
        struct op *op = op_new(OP_ABORT);
        atomic_fetch_add(&f->refs, 1);
        op->fill = f;
        enqueue(s, op);
    }
    fill_unref(f);
}

int cache_fill_commit(struct cache_fill **fp, const void *meta, size_t mlen)
{
    struct cache_fill *f = *fp;
    CDN_CHECK_OBJ(f, FILL_MAGIC);
    int rc = f->err != 0 ? f->err : atomic_load(&f->werr);
    if (rc == 0 && mlen > CACHE_STORE_META_MAX)
        rc = CDN_ELIMIT;
    if (rc != 0) {
        cache_fill_abort(fp);
        return rc;
    }
    *fp = NULL;
    fill_end(f);
    struct op *op = op_new(OP_COMMIT);
    atomic_fetch_add(&f->refs, 1);
    op->fill = f;
    op->idx = f->nchunks;
    op->data = f->cur;
    op->len = f->cur_len;
    f->cur = NULL;
    f->cur_len = 0;
    if (mlen > 0) {
        op->meta = cdn_xmalloc(mlen);
        memcpy(op->meta, meta, mlen);
    }
    op->mlen = mlen;
    enqueue(f->store, op);
    fill_unref(f);
    return 0;
}

/* ---- metadata updates and removals ---- */

static struct op *key_op(struct cache_store *s, enum op_kind kind, const void *key, size_t klen)
{
    struct op *op = op_new(kind);
    hash_key(s, key, klen, op->hk);
    op->key = cdn_xmalloc(klen);
    memcpy(op->key, key, klen);
    op->klen = klen;
    return op;
}

int cache_store_update_meta(struct cache_store *s, const void *key, size_t klen, const void *meta,
                            size_t mlen)
{
    CDN_CHECK_OBJ(s, STORE_MAGIC);
    if (key == NULL || klen == 0 || klen > CACHE_STORE_KEY_MAX)
        return CDN_EINVAL;
    if (mlen > CACHE_STORE_META_MAX)
        return CDN_ELIMIT;
    struct op *op = key_op(s, OP_META, key, klen);
    if (mlen > 0) {
        op->meta = cdn_xmalloc(mlen);
        memcpy(op->meta, meta, mlen);
    }
    op->mlen = mlen;
    enqueue(s, op);
    return 0;
}

int cache_store_remove(struct cache_store *s, const void *key, size_t klen)
{
    CDN_CHECK_OBJ(s, STORE_MAGIC);
    if (key == NULL || klen == 0 || klen > CACHE_STORE_KEY_MAX)
        return CDN_EINVAL;
    enqueue(s, key_op(s, OP_REMOVE, key, klen));
    return 0;
}
