/*
 * Tests for cache/store.c: round trips (bytes equal, pointers into the LMDB map), invisibility of
 * uncommitted fills, MVCC for replaced objects, remove, meta updates, restart persistence, size
 * limits, eviction under a small map, corrupt / old-format / unclean-reboot stores, kill -9 in the
 * middle of fills, backpressure, and readers on several threads while the writer commits.
 * Each test gets its own mkdtemp directory, removed by the fixture.
 */
#include <ftw.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <lmdb.h>
#include <uv.h>

#include "cache/store.h"
#include "lib/util.h"
#include "test/unit/suites.h"

#define KiB   1024u
#define MiB   (1024u * 1024u)
#define CHUNK CACHE_STORE_CHUNK_SIZE

/* For hot loops: a passing ck_assert costs Check a checkpoint write; this costs a branch. */
#define REQUIRE(e)                                      \
    do {                                                \
        if (!(e))                                       \
            ck_abort_msg("requirement failed: %s", #e); \
    } while (0)

static char tmpdir[64];

static void setup(void)
{
    strcpy(tmpdir, "/tmp/cdn-test-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static struct cache_store *open_opts(const struct cache_store_opts *o, char **warn)
{
    struct cache_store *s = NULL;
    char *msg = NULL;
    int rc = cache_store_open(o, &s, &msg);
    ck_assert_msg(rc == 0, "open: %d %s", rc, msg ? msg : "");
    ck_assert_ptr_nonnull(s);
    if (warn != NULL)
        *warn = msg;
    else {
        ck_assert_msg(msg == NULL, "unexpected warning: %s", msg);
    }
    return s;
}

static struct cache_store *open_store(uint64_t size)
{
    struct cache_store_opts o = {.path = tmpdir, .size = size};
    return open_opts(&o, NULL);
}

/* Deterministic bytes for (seed, offset), so any piece of a body can be checked on its own. */
static uint8_t body_byte(uint64_t seed, uint64_t off)
{
    uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ull + (off / 8) * 0xbf58476d1ce4e5b9ull;
    x ^= x >> 31;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 29;
    return (uint8_t)(x >> (8 * (off % 8)));
}

static void fill_body(uint8_t *p, uint64_t seed, uint64_t off, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = body_byte(seed, off + i);
}

/* Streams body (seed, size) in pieces of `piece` bytes and commits with meta. Returns commit's rc. */
static int put_object(struct cache_store *s, const char *key, uint64_t seed, uint64_t size, const char *meta,
                      size_t piece)
{
    struct cache_fill *f = NULL;
    ck_assert_int_eq(cache_store_fill_begin(s, key, strlen(key), &f), 0);
    uint8_t *buf = cdn_xmalloc(piece);
    for (uint64_t off = 0; off < size; off += piece) {
        size_t n = size - off < piece ? (size_t)(size - off) : piece;
        fill_body(buf, seed, off, n);
        int rc = cache_fill_append(f, buf, n);
        if (rc < 0) {
            free(buf);
            cache_fill_abort(&f);
            return rc;
        }
    }
    free(buf);
    return cache_fill_commit(&f, meta, strlen(meta));
}

/* The [start, end) ranges where data.mdb is mapped in this process. */
static bool in_map(const void *p)
{
    char *want = cdn_xasprintf("%s/data.mdb", tmpdir);
    FILE *fp = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(fp);
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof(line), fp) != NULL) {
        unsigned long lo, hi;
        char *path = strchr(line, '/');
        if (path == NULL || sscanf(line, "%lx-%lx", &lo, &hi) != 2)
            continue;
        path[strcspn(path, "\n")] = '\0';
        if (strcmp(path, want) == 0 && (uintptr_t)p >= lo && (uintptr_t)p < hi)
            found = true;
    }
    fclose(fp);
    free(want);
    return found;
}

/* Looks key up and checks meta and every byte of the body; returns false on a miss. */
static bool check_object(struct cache_store *s, const char *key, uint64_t seed, uint64_t size,
                         const char *meta)
{
    struct cache_hit *h = NULL;
    REQUIRE(cache_store_lookup(s, key, strlen(key), &h) == 0);
    if (h == NULL)
        return false;
    size_t mlen, klen;
    const void *m = cache_hit_meta(h, &mlen);
    ck_assert_uint_eq(mlen, strlen(meta));
    ck_assert(memcmp(m, meta, mlen) == 0);
    const void *k = cache_hit_key(h, &klen);
    ck_assert_uint_eq(klen, strlen(key));
    ck_assert(memcmp(k, key, klen) == 0);
    ck_assert_uint_eq(cache_hit_body_size(h), size);
    uint64_t off = 0;
    while (off < size) {
        size_t n;
        const uint8_t *p = cache_hit_body(h, off, &n);
        REQUIRE(p != NULL && n >= 1);
        /* A piece never crosses a chunk boundary and never passes the end. */
        REQUIRE(off % CHUNK + n <= CHUNK);
        REQUIRE(off + n <= size);
        for (size_t i = 0; i < n; i++)
            if (p[i] != body_byte(seed, off + i))
                ck_abort_msg("%s: byte %llu differs", key, (unsigned long long)(off + i));
        off += n;
    }
    size_t n = 99;
    ck_assert_ptr_null(cache_hit_body(h, size, &n));
    ck_assert_uint_eq(n, 0);
    cache_hit_release(&h);
    ck_assert_ptr_null(h);
    return true;
}

static bool present(struct cache_store *s, const char *key)
{
    struct cache_hit *h = NULL;
    REQUIRE(cache_store_lookup(s, key, strlen(key), &h) == 0);
    bool hit = h != NULL;
    cache_hit_release(&h);
    return hit;
}

static struct cache_store_stats stats(struct cache_store *s)
{
    struct cache_store_stats st;
    cache_store_stats(s, &st);
    return st;
}

START_TEST(round_trip_small)
{
    struct cache_store *s = open_store(16 * MiB);
    ck_assert_int_eq(put_object(s, "GET http://a/small", 1, 100, "meta-1", 7), 0);
    ck_assert_int_eq(put_object(s, "GET http://a/empty", 2, 0, "", 1), 0);
    cache_store_flush(s);
    ck_assert(check_object(s, "GET http://a/small", 1, 100, "meta-1"));
    ck_assert(check_object(s, "GET http://a/empty", 2, 0, ""));
    ck_assert(!present(s, "GET http://a/other"));

    /* Zero-copy: meta and body point into the mapping of data.mdb. */
    struct cache_hit *h = NULL;
    ck_assert_int_eq(cache_store_lookup(s, "GET http://a/small", 18, &h), 0);
    ck_assert_ptr_nonnull(h);
    size_t mlen, blen;
    ck_assert(in_map(cache_hit_meta(h, &mlen)));
    ck_assert(in_map(cache_hit_body(h, 10, &blen)));
    ck_assert_uint_eq(blen, 90);
    cache_hit_release(&h);
    cache_hit_release(&h); /* NULL is fine */

    struct cache_store_stats st = stats(s);
    ck_assert_uint_eq(st.objects, 2);
    ck_assert_uint_eq(st.fills_committed, 2);
    ck_assert_uint_eq(st.lookups_hit, 3);
    ck_assert_uint_eq(st.lookups_miss, 1);
    ck_assert_uint_eq(st.write_errors, 0);
    ck_assert_uint_gt(st.bytes, 100);

    /* Bad arguments. */
    struct cache_fill *f = NULL;
    ck_assert_int_eq(cache_store_fill_begin(s, "", 0, &f), CDN_EINVAL);
    ck_assert_int_eq(cache_store_lookup(s, "", 0, &h), CDN_EINVAL);
    ck_assert_str_eq(cache_store_strerror(MDB_MAP_FULL), mdb_strerror(MDB_MAP_FULL));
    ck_assert_str_eq(cache_store_strerror(CDN_ELIMIT), "limit exceeded");
    cache_store_close(&s);
    ck_assert_ptr_null(s);
}
END_TEST

START_TEST(round_trip_multi_chunk)
{
    struct cache_store *s = open_store(64 * MiB);
    uint64_t size = 3 * CHUNK + 12345;
    /* Odd piece sizes so appends straddle chunk boundaries; a long key (> LMDB's 511-byte limit). */
    char key[2000];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    ck_assert_int_eq(put_object(s, key, 7, size, "multi", 70001), 0);
    ck_assert_int_eq(put_object(s, "exact", 8, 2 * CHUNK, "two", CHUNK), 0);
    cache_store_flush(s);
    ck_assert(check_object(s, key, 7, size, "multi"));
    ck_assert(check_object(s, "exact", 8, 2 * CHUNK, "two"));

    struct cache_hit *h = NULL;
    ck_assert_int_eq(cache_store_lookup(s, key, strlen(key), &h), 0);
    size_t n;
    const void *p = cache_hit_body(h, 0, &n);
    ck_assert_uint_eq(n, CHUNK);
    ck_assert(in_map(p));
    p = cache_hit_body(h, CHUNK + 100, &n);
    ck_assert_uint_eq(n, CHUNK - 100);
    ck_assert(in_map(p));
    p = cache_hit_body(h, 3 * CHUNK, &n);
    ck_assert_uint_eq(n, 12345);
    ck_assert(in_map(p));
    cache_hit_release(&h);
    cache_store_close(&s);
}
END_TEST

START_TEST(uncommitted_and_aborted_are_misses)
{
    struct cache_store *s = open_store(64 * MiB);
    ck_assert_int_eq(put_object(s, "old", 1, 1000, "v1", 1000), 0);
    cache_store_flush(s);

    /* A fill whose chunks are already written is invisible, and does not hide the old version. */
    struct cache_fill *f = NULL, *g = NULL;
    ck_assert_int_eq(cache_store_fill_begin(s, "new", 3, &f), 0);
    ck_assert_int_eq(cache_store_fill_begin(s, "old", 3, &g), 0);
    uint8_t *buf = cdn_xmalloc(3 * CHUNK);
    fill_body(buf, 9, 0, 3 * CHUNK);
    ck_assert_int_ge(cache_fill_append(f, buf, 3 * CHUNK), 0);
    ck_assert_int_ge(cache_fill_append(g, buf, 3 * CHUNK), 0);
    cache_store_flush(s);
    ck_assert(!present(s, "new"));
    ck_assert(check_object(s, "old", 1, 1000, "v1"));

    cache_fill_abort(&f);
    cache_fill_abort(&g);
    cache_fill_abort(&g); /* NULL is fine */
    ck_assert_ptr_null(f);
    cache_store_flush(s);
    ck_assert(!present(s, "new"));
    ck_assert(check_object(s, "old", 1, 1000, "v1"));

    /* Abort before any chunk was queued. */
    ck_assert_int_eq(cache_store_fill_begin(s, "tiny", 4, &f), 0);
    ck_assert_int_eq(cache_fill_append(f, "abc", 3), 0);
    cache_fill_abort(&f);
    cache_store_flush(s);
    ck_assert(!present(s, "tiny"));

    struct cache_store_stats st = stats(s);
    ck_assert_uint_eq(st.fills_started, 4);
    ck_assert_uint_eq(st.fills_committed, 1);
    ck_assert_uint_eq(st.fills_aborted, 3);
    ck_assert_uint_eq(st.objects, 1);
    free(buf);
    cache_store_close(&s);

    /* The aborted chunks are gone: nothing is left for the next open to clean up. */
    s = open_store(64 * MiB);
    ck_assert_uint_eq(stats(s).orphan_chunks_removed, 0);
    cache_store_close(&s);
}
END_TEST

START_TEST(replace_keeps_old_readers)
{
    struct cache_store *s = open_store(64 * MiB);
    ck_assert_int_eq(put_object(s, "k", 1, 2 * CHUNK + 5, "v1", 65536), 0);
    cache_store_flush(s);
    struct cache_hit *old = NULL;
    ck_assert_int_eq(cache_store_lookup(s, "k", 1, &old), 0);
    ck_assert_ptr_nonnull(old);
    uint64_t old_id = cache_hit_id(old);

    ck_assert_int_eq(put_object(s, "k", 2, CHUNK + 77, "v2", 65536), 0);
    cache_store_flush(s);
    ck_assert(check_object(s, "k", 2, CHUNK + 77, "v2"));

    /* The old hit still sees v1 entirely, including chunks deleted by the replacement. */
    size_t mlen;
    ck_assert(memcmp(cache_hit_meta(old, &mlen), "v1", 2) == 0);
    ck_assert_uint_eq(cache_hit_body_size(old), 2 * CHUNK + 5);
    for (uint64_t off = 0; off < 2 * CHUNK + 5;) {
        size_t n;
        const uint8_t *p = cache_hit_body(old, off, &n);
        ck_assert_ptr_nonnull(p);
        for (size_t i = 0; i < n; i++)
            REQUIRE(p[i] == body_byte(1, off + i));
        off += n;
    }
    struct cache_hit *now = NULL;
    ck_assert_int_eq(cache_store_lookup(s, "k", 1, &now), 0);
    ck_assert_uint_ne(cache_hit_id(now), old_id);
    cache_hit_release(&now);
    cache_hit_release(&old);

    struct cache_store_stats st = stats(s);
    ck_assert_uint_eq(st.objects, 1);
    ck_assert_uint_eq(st.read_errors, 0);
    cache_store_close(&s);

    /* The replaced version's chunks were deleted with it. */
    s = open_store(64 * MiB);
    ck_assert_uint_eq(stats(s).orphan_chunks_removed, 0);
    ck_assert(check_object(s, "k", 2, CHUNK + 77, "v2"));
    cache_store_close(&s);
}
END_TEST

START_TEST(remove_object)
{
    struct cache_store *s = open_store(16 * MiB);
    ck_assert_int_eq(put_object(s, "a", 1, CHUNK + 1, "m", 4096), 0);
    ck_assert_int_eq(put_object(s, "b", 2, 10, "m", 4096), 0);
    cache_store_flush(s);
    struct cache_hit *h = NULL;
    ck_assert_int_eq(cache_store_lookup(s, "a", 1, &h), 0);
    ck_assert_int_eq(cache_store_remove(s, "a", 1), 0);
    ck_assert_int_eq(cache_store_remove(s, "missing", 7), 0);
    ck_assert_int_eq(cache_store_remove(s, "", 0), CDN_EINVAL);
    cache_store_flush(s);
    ck_assert(!present(s, "a"));
    ck_assert(present(s, "b"));
    /* Purged, but an open hit keeps its copy. */
    size_t n;
    ck_assert_ptr_nonnull(cache_hit_body(h, CHUNK, &n));
    ck_assert_uint_eq(n, 1);
    cache_hit_release(&h);
    struct cache_store_stats st = stats(s);
    ck_assert_uint_eq(st.removes, 1);
    ck_assert_uint_eq(st.objects, 1);
    cache_store_close(&s);
}
END_TEST

START_TEST(update_meta)
{
    struct cache_store *s = open_store(16 * MiB);
    ck_assert_int_eq(put_object(s, "a", 5, 3000, "etag=1", 512), 0);
    cache_store_flush(s);
    struct cache_hit *before = NULL;
    ck_assert_int_eq(cache_store_lookup(s, "a", 1, &before), 0);
    const char *fresh = "etag=1; date=now; a longer metadata blob after a 304";
    ck_assert_int_eq(cache_store_update_meta(s, "a", 1, fresh, strlen(fresh)), 0);
    ck_assert_int_eq(cache_store_update_meta(s, "nope", 4, "x", 1), 0);
    cache_store_flush(s);
    ck_assert(check_object(s, "a", 5, 3000, fresh));
    ck_assert(!present(s, "nope"));
    size_t mlen;
    const void *m = cache_hit_meta(before, &mlen);
    ck_assert_uint_eq(mlen, 6);
    ck_assert(memcmp(m, "etag=1", 6) == 0);
    cache_hit_release(&before);
    ck_assert_uint_eq(stats(s).meta_updates, 1);
    cache_store_close(&s);

    s = open_store(16 * MiB);
    ck_assert(check_object(s, "a", 5, 3000, fresh));
    cache_store_close(&s);
}
END_TEST

START_TEST(reopen_keeps_objects)
{
    struct cache_store *s = open_store(32 * MiB);
    char key[32];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "obj-%d", i);
        ck_assert_int_eq(put_object(s, key, (uint64_t)i, (uint64_t)i * 40000, key, 30000), 0);
    }
    cache_store_flush(s);
    uint64_t bytes = stats(s).bytes;
    cache_store_close(&s);

    s = open_store(32 * MiB);
    struct cache_store_stats st = stats(s);
    ck_assert_uint_eq(st.objects, 20);
    ck_assert_uint_eq(st.bytes, bytes);
    ck_assert_uint_eq(st.orphan_chunks_removed, 0);
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "obj-%d", i);
        ck_assert(check_object(s, key, (uint64_t)i, (uint64_t)i * 40000, key));
    }
    /* New fills after a restart get fresh ids and replace old objects normally. */
    ck_assert_int_eq(put_object(s, "obj-3", 99, 5, "again", 5), 0);
    cache_store_flush(s);
    ck_assert(check_object(s, "obj-3", 99, 5, "again"));
    ck_assert_uint_eq(stats(s).objects, 20);
    cache_store_close(&s);
}
END_TEST

START_TEST(too_large_is_refused)
{
    struct cache_store_opts o = {.path = tmpdir, .size = 16 * MiB, .max_object_size = 1 * MiB};
    struct cache_store *s = open_opts(&o, NULL);
    ck_assert_int_eq(put_object(s, "fits", 1, 1 * MiB, "m", 100000), 0);
    struct cache_fill *f = NULL;
    ck_assert_int_eq(cache_store_fill_begin(s, "big", 3, &f), 0);
    uint8_t *buf = cdn_xcalloc(1, 1 * MiB);
    ck_assert_int_ge(cache_fill_append(f, buf, 1 * MiB), 0);
    ck_assert_int_eq(cache_fill_append(f, buf, 1), CDN_ELIMIT);
    ck_assert_int_eq(cache_fill_append(f, buf, 1), CDN_ELIMIT); /* sticky */
    ck_assert_int_eq(cache_fill_commit(&f, "m", 1), CDN_ELIMIT);
    ck_assert_ptr_null(f);
    /* Oversized metadata is refused too. */
    ck_assert_int_eq(cache_store_fill_begin(s, "meta", 4, &f), 0);
    ck_assert_int_eq(cache_fill_commit(&f, buf, CACHE_STORE_META_MAX + 1), CDN_ELIMIT);
    ck_assert_int_eq(cache_store_update_meta(s, "fits", 4, buf, CACHE_STORE_META_MAX + 1), CDN_ELIMIT);
    free(buf);
    cache_store_flush(s);
    ck_assert(check_object(s, "fits", 1, 1 * MiB, "m"));
    ck_assert(!present(s, "big"));
    ck_assert(!present(s, "meta"));
    struct cache_store_stats st = stats(s);
    ck_assert_uint_eq(st.fills_too_large, 1);
    ck_assert_uint_eq(st.fills_aborted, 2);
    cache_store_close(&s);

    /* Options: a max_object_size above a quarter of the map, a tiny map, inverted water marks. */
    struct cache_store_opts bad[] = {
        {.path = tmpdir, .size = 16 * MiB, .max_object_size = 5 * MiB},
        {.path = tmpdir, .size = 1000},
        {.path = tmpdir, .size = 16 * MiB, .high_water_pct = 50, .low_water_pct = 60},
        {.path = NULL, .size = 16 * MiB},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *msg = NULL;
        ck_assert_int_eq(cache_store_open(&bad[i], &s, &msg), CDN_EINVAL);
        ck_assert_ptr_null(s);
        ck_assert_ptr_nonnull(msg);
        free(msg);
    }
}
END_TEST

START_TEST(tail_in_record_round_trips)
{
    /* Sizes around page and chunk boundaries: whatever part of the body goes into the record, every
     * byte reads back, survives a metadata update and a reopen, and a 16 KiB body takes 4 pages. */
    static const uint64_t sizes[] = {0,     1,         1000,  1500,      2000,          3000,
                                     4080,  4081,      5000,  16383,     16384,         16385,
                                     65536, CHUNK - 1, CHUNK, CHUNK + 1, CHUNK + 16384, 2 * CHUNK + 5000};
    const size_t n = sizeof(sizes) / sizeof(sizes[0]);
    struct cache_store *s = open_store(64 * MiB);
    char key[32];
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "t-%zu", i);
        ck_assert_int_eq(put_object(s, key, 7 + i, sizes[i], "m", 777), 0);
    }
    cache_store_flush(s);
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "t-%zu", i);
        ck_assert_msg(check_object(s, key, 7 + i, sizes[i], "m"), "size %llu", (unsigned long long)sizes[i]);
        ck_assert_int_eq(cache_store_update_meta(s, key, strlen(key), "longer meta", 11), 0);
    }
    cache_store_flush(s);
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "t-%zu", i);
        ck_assert(check_object(s, key, 7 + i, sizes[i], "longer meta"));
    }
    cache_store_close(&s);
    s = open_store(64 * MiB);
    ck_assert_uint_eq(stats(s).objects, n);
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "t-%zu", i);
        ck_assert(check_object(s, key, 7 + i, sizes[i], "longer meta"));
    }
    uint64_t before = stats(s).bytes;
    for (int i = 0; i < 64; i++) {
        snprintf(key, sizeof(key), "sixteen-%d", i);
        ck_assert_int_eq(put_object(s, key, 99, 16 * KiB, "m", 4096), 0);
    }
    cache_store_flush(s);
    uint64_t per = (stats(s).bytes - before) / 64;
    ck_assert_msg(per < 17 * KiB, "a 16 KiB object takes %llu bytes of map", (unsigned long long)per);
    cache_store_close(&s);
}
END_TEST

START_TEST(small_objects_do_not_fill_the_map)
{
    /* Many 1 KiB objects with 1 KiB of metadata: LMDB's leaf pages hold them at well under 100 %,
     * which an estimate per object cannot see. Eviction goes by the pages really held, so the map
     * never fills and no write fails. */
    struct cache_store_opts o = {.path = tmpdir, .size = 4 * MiB, .max_object_size = 1 * MiB};
    struct cache_store *s = open_opts(&o, NULL);
    char meta[1024], key[32];
    memset(meta, 'h', sizeof(meta) - 1);
    meta[sizeof(meta) - 1] = '\0';
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "small-%d", i);
        ck_assert_int_eq(put_object(s, key, (uint64_t)i, 1024 + (uint64_t)(i % 3) * 1500, meta, 4096), 0);
        if (i % 50 == 49)
            cache_store_flush(s);
    }
    cache_store_flush(s);
    struct cache_store_stats st = stats(s);
    ck_assert_uint_eq(st.write_errors, 0);
    ck_assert_uint_eq(st.map_full_retries, 0);
    ck_assert_uint_gt(st.evictions, 0);
    ck_assert_uint_le(st.bytes, 4 * MiB * 90 / 100);
    ck_assert(check_object(s, "small-19999", 19999, 1024 + (19999 % 3) * 1500, meta));
    cache_store_close(&s);
}
END_TEST

START_TEST(small_then_large_objects)
{
    /* A store full of small objects (the cold misses of bench case d), then 16 KiB ones (case f): every
     * eviction frees little and copies a leaf page, so the room kept free must follow what the
     * transactions really need. No write may fail. */
    struct cache_store_opts o = {.path = tmpdir, .size = 64 * MiB, .max_object_size = 4 * MiB};
    struct cache_store *s = open_opts(&o, NULL);
    char meta[400], key[32];
    memset(meta, 'h', sizeof(meta) - 1);
    meta[sizeof(meta) - 1] = '\0';
    int i = 0;
    for (; i < 60000; i++) {
        snprintf(key, sizeof(key), "https://x/small-%d", i);
        ck_assert_int_eq(put_object(s, key, (uint64_t)i, 1000, meta, 4096), 0);
        if (i % 100 == 99)
            cache_store_flush(s);
    }
    cache_store_flush(s);
    ck_assert_uint_gt(stats(s).evictions, 0);
    for (; i < 66000; i++) {
        snprintf(key, sizeof(key), "https://x/large-%d", i);
        ck_assert_int_eq(put_object(s, key, (uint64_t)i, 16384, meta, 16384), 0);
        if (i % 20 == 19)
            cache_store_flush(s);
    }
    cache_store_flush(s);
    struct cache_store_stats st = stats(s);
    ck_assert_msg(st.write_errors == 0, "%llu write errors, %llu retries",
                  (unsigned long long)st.write_errors, (unsigned long long)st.map_full_retries);
    ck_assert_uint_le(st.map_used, 64 * MiB);
    cache_store_close(&s);
}
END_TEST

START_TEST(eviction_under_small_map)
{
    /* 4 MiB map, 40 MiB of objects of 16-400 KiB, plus three small hot objects requested after every
     * insert: the writer evicts on its own, never fails a write, and SIEVE keeps the hot ones. */
    struct cache_store_opts o = {.path = tmpdir, .size = 4 * MiB, .max_object_size = 1 * MiB};
    struct cache_store *s = open_opts(&o, NULL);
    static const char *hot[] = {"hot-0", "hot-1", "hot-2"};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(put_object(s, hot[i], 100 + (uint64_t)i, 20 * KiB, "hot", 8192), 0);
    uint64_t total = 0, x = 12345;
    int n = 0;
    char key[32];
    while (total < 40 * MiB) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t size = 16 * KiB + (x >> 33) % (384 * KiB);
        snprintf(key, sizeof(key), "cold-%d", n);
        ck_assert_int_eq(put_object(s, key, (uint64_t)n, size, "cold", 50000), 0);
        total += size;
        n++;
        cache_store_flush(s);
        for (int i = 0; i < 3; i++)
            ck_assert(present(s, hot[i]));
    }
    struct cache_store_stats st = stats(s);
    ck_assert_uint_eq(st.write_errors, 0);
    ck_assert_uint_gt(st.evictions, 0);
    ck_assert_uint_eq(st.fills_committed, (uint64_t)n + 3);
    ck_assert_uint_eq(st.objects + st.evictions, (uint64_t)n + 3);
    ck_assert_uint_le(st.bytes, 4 * MiB * 90 / 100); /* the high-water mark, in pages really held */
    ck_assert_uint_le(st.map_used, 4 * MiB);
    for (int i = 0; i < 3; i++)
        ck_assert(check_object(s, hot[i], 100 + (uint64_t)i, 20 * KiB, "hot"));
    snprintf(key, sizeof(key), "cold-%d", n - 1);
    ck_assert(present(s, key)); /* the newest */
    ck_assert(!present(s, "cold-0"));
    cache_store_close(&s);

    /* The policy is rebuilt at open from what survived. */
    s = open_opts(&o, NULL);
    struct cache_store_stats st2 = stats(s);
    ck_assert_uint_eq(st2.objects, st.objects);
    ck_assert_uint_eq(st2.bytes, st.bytes);
    cache_store_close(&s);
}
END_TEST

START_TEST(admission_when_full)
{
    /* While the store has room every response is worth storing; once it is full, a key asked for once
     * is refused over victims that were asked for once too, and admitted at its second lookup. */
    struct cache_store_opts o = {.path = tmpdir, .size = 4 * MiB, .max_object_size = 1 * MiB};
    struct cache_store *s = open_opts(&o, NULL);
    ck_assert(present(s, "new") == false);
    ck_assert(cache_store_admit(s, "new", 3)); /* empty store */
    char key[32];
    int n = 0;
    while (stats(s).evictions == 0) {
        snprintf(key, sizeof(key), "o-%d", n);
        ck_assert(!present(s, key)); /* a miss, as the proxy would look it up first */
        ck_assert(cache_store_admit(s, key, strlen(key)));
        ck_assert_int_eq(put_object(s, key, (uint64_t)n, 100 * KiB, "m", 65536), 0);
        cache_store_flush(s);
        ck_assert(present(s, key)); /* each one asked for twice, as the victims will be */
        n++;
        ck_assert_int_lt(n, 100);
    }
    ck_assert(!present(s, "cold"));
    ck_assert(!cache_store_admit(s, "cold", 4));
    ck_assert_uint_eq(stats(s).not_admitted, 1);
    ck_assert(!present(s, "cold"));
    ck_assert(!cache_store_admit(s, "cold", 4)); /* 2 against 2 */
    ck_assert(!present(s, "cold"));
    ck_assert(cache_store_admit(s, "cold", 4));
    ck_assert_uint_eq(stats(s).not_admitted, 2);
    cache_store_close(&s);
}
END_TEST

START_TEST(map_full_is_absorbed)
{
    /* Aggressive water marks leave LMDB no headroom, and a long-lived reader pins freed pages: the
     * writer must meet MDB_MAP_FULL and survive it (retry, or drop the op and count it). */
    struct cache_store_opts o = {.path = tmpdir,
                                 .size = 2 * MiB,
                                 .max_object_size = 512 * KiB,
                                 .high_water_pct = 95,
                                 .low_water_pct = 94};
    struct cache_store *s = open_opts(&o, NULL);
    ck_assert_int_eq(put_object(s, "pin", 1, 1000, "m", 1000), 0);
    cache_store_flush(s);
    struct cache_hit *pin = NULL;
    ck_assert_int_eq(cache_store_lookup(s, "pin", 3, &pin), 0);
    char key[32];
    for (int i = 0; i < 60; i++) {
        snprintf(key, sizeof(key), "o-%d", i);
        put_object(s, key, (uint64_t)i, 200 * KiB, "m", 65536);
    }
    cache_store_flush(s);
    struct cache_store_stats st = stats(s);
    ck_assert_uint_gt(st.map_full_retries + st.write_errors, 0);
    cache_hit_release(&pin);
    /* Once the reader is gone, space comes back. */
    for (int i = 60; i < 80; i++) {
        snprintf(key, sizeof(key), "o-%d", i);
        put_object(s, key, (uint64_t)i, 100 * KiB, "m", 65536);
        cache_store_flush(s);
    }
    ck_assert(check_object(s, "o-79", 79, 100 * KiB, "m"));
    cache_store_close(&s);
    s = open_opts(&o, NULL);
    cache_store_close(&s);
}
END_TEST

static void write_garbage(const char *name, long off, size_t len)
{
    char *p = cdn_xasprintf("%s/%s", tmpdir, name);
    FILE *fp = fopen(p, "r+b");
    ck_assert_ptr_nonnull(fp);
    if (len == 0) {
        fseek(fp, 0, SEEK_END);
        len = (size_t)(ftell(fp) - off); /* to the end of the file */
    }
    fseek(fp, off, SEEK_SET);
    uint64_t x = 0x1234567;
    for (size_t i = 0; i < len; i++) {
        x = x * 6364136223846793005ull + 1;
        fputc((int)(x >> 56), fp);
    }
    fclose(fp);
    free(p);
}

static void expect_rebuilt(const char *why)
{
    char *warn = NULL;
    struct cache_store_opts o = {.path = tmpdir, .size = 16 * MiB};
    struct cache_store *s = open_opts(&o, &warn);
    ck_assert_ptr_nonnull(warn);
    ck_assert_msg(strstr(warn, "rebuilt") != NULL && strstr(warn, why) != NULL, "warning: %s", warn);
    free(warn);
    ck_assert_uint_eq(stats(s).objects, 0);
    ck_assert(!present(s, "a"));
    /* ...and is fully usable again. */
    ck_assert_int_eq(put_object(s, "a", 2, CHUNK + 3, "new", 4096), 0);
    cache_store_flush(s);
    ck_assert(check_object(s, "a", 2, CHUNK + 3, "new"));
    cache_store_close(&s);
    /* A rebuilt store is a normal store on the next open. */
    s = open_store(16 * MiB);
    ck_assert(check_object(s, "a", 2, CHUNK + 3, "new"));
    cache_store_close(&s);
}

static void store_one(void)
{
    struct cache_store *s = open_store(16 * MiB);
    ck_assert_int_eq(put_object(s, "a", 1, 2 * CHUNK, "m", 4096), 0);
    cache_store_close(&s);
}

START_TEST(corrupt_file_is_rebuilt)
{
    store_one();
    write_garbage("data.mdb", 0, 0);
    expect_rebuilt("cannot open");
}
END_TEST

START_TEST(corrupt_meta_pages_are_rebuilt)
{
    store_one();
    write_garbage("data.mdb", 0, 8192);
    expect_rebuilt("cannot open");
}
END_TEST

START_TEST(corrupt_tree_pages_are_rebuilt)
{
    /* Meta pages intact, every other page garbage: LMDB opens, then trips over the tree. */
    store_one();
    write_garbage("data.mdb", 8192, 0);
    expect_rebuilt("rebuilt");
}
END_TEST

START_TEST(old_version_is_rebuilt)
{
    store_one();
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 4), 0);
    ck_assert_int_eq(mdb_env_set_mapsize(env, 16 * MiB), 0);
    ck_assert_int_eq(mdb_env_open(env, tmpdir, 0, 0600), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, "info", 0, &dbi), 0);
    MDB_val k = {6, (void *)"format"}, v = {23, (void *)"cdn-node store format 0"};
    ck_assert_int_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    expect_rebuilt("incompatible format \"cdn-node store format 0\"");
}
END_TEST

START_TEST(missing_state_is_rebuilt)
{
    store_one();
    char *p = cdn_xasprintf("%s/state", tmpdir);
    ck_assert_int_eq(unlink(p), 0);
    free(p);
    expect_rebuilt("state file missing");
}
END_TEST

START_TEST(busy_store_is_refused)
{
    struct cache_store *s = open_store(16 * MiB);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Another process: flock() on store.lock is held by the parent. */
        struct cache_store *t = NULL;
        char *msg = NULL;
        struct cache_store_opts o = {.path = tmpdir, .size = 16 * MiB};
        int rc = cache_store_open(&o, &t, &msg);
        _exit(rc == -EBUSY && msg != NULL && strstr(msg, "another process") != NULL ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cache_store_close(&s);
}
END_TEST

/* Child of the crash tests: fills objects "c-<i>" (seed i, size from i) forever, or until it kills
 * itself in the middle of a fill whose chunks are already on disk. Writes a byte to ready_fd (if not
 * -1) once its first object is written. Never returns. */
static void crash_child(const char *boot, int first, bool self_kill, int ready_fd)
{
    struct cache_store_opts o = {.path = tmpdir, .size = 64 * MiB, .boot_id = boot};
    struct cache_store *s = NULL;
    char *msg = NULL;
    if (cache_store_open(&o, &s, &msg) != 0)
        _exit(2);
    free(msg);
    char key[32], meta[64];
    uint8_t *buf = cdn_xmalloc(CHUNK);
    for (int i = first;; i++) {
        uint64_t size = (uint64_t)(i % 7) * 150000 + (uint64_t)i % 1000;
        snprintf(key, sizeof(key), "c-%d", i);
        snprintf(meta, sizeof(meta), "seed=%d size=%llu", i, (unsigned long long)size);
        struct cache_fill *f = NULL;
        cache_store_fill_begin(s, key, strlen(key), &f);
        for (uint64_t off = 0; off < size; off += 100000) {
            size_t n = size - off < 100000 ? (size_t)(size - off) : 100000;
            fill_body(buf, (uint64_t)i, off, n);
            if (cache_fill_append(f, buf, n) < 0)
                _exit(3);
        }
        if (self_kill && i == first + 10) {
            cache_store_flush(s); /* the chunks of this fill are written, its commit never will be */
            raise(SIGKILL);
        }
        cache_fill_commit(&f, meta, strlen(meta));
        if (self_kill && i % 3 == 0)
            cache_store_flush(s);
        if (ready_fd >= 0 && i == first) {
            cache_store_flush(s);
            if (write(ready_fd, "r", 1) != 1)
                _exit(4);
        }
    }
}

/* Reopens after a crash and checks that every object found is complete and correct. */
static int verify_after_crash(const char *boot, int upto, int *found)
{
    struct cache_store_opts o = {.path = tmpdir, .size = 64 * MiB, .boot_id = boot};
    struct cache_store *s = open_opts(&o, NULL);
    char key[32], meta[64];
    *found = 0;
    for (int i = 0; i < upto; i++) {
        uint64_t size = (uint64_t)(i % 7) * 150000 + (uint64_t)i % 1000;
        snprintf(key, sizeof(key), "c-%d", i);
        snprintf(meta, sizeof(meta), "seed=%d size=%llu", i, (unsigned long long)size);
        *found += check_object(s, key, (uint64_t)i, size, meta);
    }
    int orphans = (int)stats(s).orphan_chunks_removed;
    ck_assert_uint_eq(stats(s).read_errors, 0);
    cache_store_close(&s);
    return orphans;
}

START_TEST(kill_mid_fill)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        crash_child("boot-A", 0, true, -1);
    int status, found;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);
    /* c-0..c-9 committed (some flushed, the rest queued before the flush of c-10); c-10 is half done. */
    int orphans = verify_after_crash("boot-A", 11, &found);
    ck_assert_int_eq(found, 10);
    ck_assert_int_ge(orphans, 1);
    /* Orphans are gone for good. */
    ck_assert_int_eq(verify_after_crash("boot-A", 11, &found), 0);
    ck_assert_int_eq(found, 10);
}
END_TEST

START_TEST(kill_at_random_moments)
{
    /* Each round: a child fills objects non-stop; once it has written its first one, it is killed
     * after a delay that differs per round, landing anywhere in a fill, a batch or a commit. */
    int next = 0, total_found = 0;
    for (int round = 0; round < 4; round++) {
        int ready[2];
        ck_assert_int_eq(pipe(ready), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(ready[0]);
            crash_child("boot-A", next, false, ready[1]);
        }
        close(ready[1]);
        char c;
        ck_assert_int_eq(read(ready[0], &c, 1), 1);
        close(ready[0]);
        struct timespec ts = {0, (7 + 31 * round) * 1000000L};
        nanosleep(&ts, NULL);
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        int status, found;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status), "child exited with %d before the kill", WEXITSTATUS(status));
        /* Check every key the child could have reached (it never gets near 5000 in that time). */
        verify_after_crash("boot-A", next + 5000, &found);
        ck_assert_int_ge(found, 1);
        total_found += found;
        next += 5000;
    }
    ck_assert_int_ge(total_found, 4);
}
END_TEST

START_TEST(unclean_reboot_wipes)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        crash_child("boot-A", 0, true, -1);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    /* Same files, another boot: the unsynced writes may be torn on disk, so nothing is trusted. */
    char *warn = NULL;
    struct cache_store_opts o = {.path = tmpdir, .size = 64 * MiB, .boot_id = "boot-B"};
    struct cache_store *s = open_opts(&o, &warn);
    ck_assert_ptr_nonnull(warn);
    ck_assert_msg(strstr(warn, "reboot") != NULL, "%s", warn);
    free(warn);
    ck_assert_uint_eq(stats(s).objects, 0);
    ck_assert_int_eq(put_object(s, "a", 1, 1000, "m", 1000), 0);
    cache_store_close(&s);

    /* After a clean close, a reboot keeps everything. */
    o.boot_id = "boot-C";
    s = open_opts(&o, NULL);
    ck_assert(check_object(s, "a", 1, 1000, "m"));
    cache_store_close(&s);
}
END_TEST

static atomic_int drains;

/* Runs on the writer thread: only count (a failing ck_assert here would not reach Check). */
static void on_drain(struct cache_fill *f, void *data)
{
    if (data == &drains)
        atomic_fetch_add(&drains, 1);
}

/* A helper process that holds LMDB's write lock on the store until told to let go: the store's
 * writer then blocks in mdb_txn_begin, which makes its queue grow deterministically. */
static pid_t stall_writer(int *release_fd)
{
    int ready[2], release[2];
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(release), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        MDB_env *env;
        MDB_txn *txn;
        char c = 'x';
        if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 4) != 0 ||
            mdb_env_set_maxreaders(env, 4096) != 0 || mdb_env_open(env, tmpdir, MDB_NOTLS, 0600) != 0 ||
            mdb_txn_begin(env, NULL, 0, &txn) != 0)
            _exit(1);
        if (write(ready[1], &c, 1) != 1 || read(release[0], &c, 1) < 0)
            _exit(1);
        mdb_txn_abort(txn);
        _exit(0);
    }
    char c;
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    close(ready[0]);
    close(ready[1]);
    close(release[0]);
    *release_fd = release[1];
    return pid;
}

START_TEST(backpressure)
{
    struct cache_store_opts o = {
        .path = tmpdir, .size = 256 * MiB, .max_object_size = 64 * MiB, .fill_inflight = 2 * CHUNK};
    struct cache_store *s = open_opts(&o, NULL);
    struct cache_fill *f = NULL;
    ck_assert_int_eq(cache_store_fill_begin(s, "big", 3, &f), 0);
    cache_fill_on_drain(f, on_drain, &drains);
    uint8_t *buf = cdn_xmalloc(CHUNK);
    uint64_t off = 0;
    int release, status, rc = 0;
    pid_t pid = stall_writer(&release);

    /* The writer is stuck: two chunks queued make the fill busy, and nothing drains. */
    for (int i = 0; i < 4 && rc != CACHE_FILL_BUSY; i++) {
        fill_body(buf, 3, off, CHUNK);
        rc = cache_fill_append(f, buf, CHUNK);
        ck_assert_int_ge(rc, 0);
        off += CHUNK;
    }
    ck_assert_int_eq(rc, CACHE_FILL_BUSY);
    ck_assert_uint_eq(off, 2 * CHUNK);
    ck_assert(cache_fill_busy(f));
    usleep(50000);
    ck_assert(cache_fill_busy(f));
    ck_assert_int_eq(atomic_load(&drains), 0);

    /* Let the writer go: the queue drains below the resume mark and the callback says so. */
    ck_assert_int_eq(write(release, "x", 1), 1);
    close(release);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    for (int i = 0; i < 5000 && (atomic_load(&drains) == 0 || cache_fill_busy(f)); i++)
        usleep(1000);
    ck_assert_int_eq(atomic_load(&drains), 1);
    ck_assert(!cache_fill_busy(f));

    /* More data after the pause; then the whole body reads back. */
    for (int i = 0; i < 3; i++) {
        fill_body(buf, 3, off, CHUNK);
        ck_assert_int_ge(cache_fill_append(f, buf, CHUNK), 0);
        off += CHUNK;
    }
    ck_assert_int_eq(cache_fill_commit(&f, "m", 1), 0);
    cache_store_flush(s);
    ck_assert(check_object(s, "big", 3, off, "m"));
    free(buf);
    cache_store_close(&s);
}
END_TEST

struct reader {
    struct cache_store *s;
    atomic_bool *stop;
    unsigned long hits, bad;
};

static void reader_main(void *arg)
{
    struct reader *r = arg;
    uint64_t x = 0x9e3779b97f4a7c15ull ^ (uintptr_t)r;
    char key[16];
    while (!atomic_load(r->stop)) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        snprintf(key, sizeof(key), "key-%d", (int)((x >> 33) % 8));
        struct cache_hit *h = NULL;
        if (cache_store_lookup(r->s, key, strlen(key), &h) != 0 || h == NULL)
            continue;
        r->hits++;
        /* meta = "<seed> <size>": the body must match it exactly, whatever the writer does meanwhile. */
        size_t mlen;
        const char *m = cache_hit_meta(h, &mlen);
        char mbuf[64];
        snprintf(mbuf, sizeof(mbuf), "%.*s", (int)mlen, m);
        unsigned long long seed = 0, size = 0;
        if (sscanf(mbuf, "%llu %llu", &seed, &size) != 2 || size != cache_hit_body_size(h)) {
            r->bad++;
            cache_hit_release(&h);
            continue;
        }
        for (uint64_t off = 0; off < cache_hit_body_size(h);) {
            size_t n;
            const uint8_t *p = cache_hit_body(h, off, &n);
            if (p == NULL) {
                r->bad++;
                break;
            }
            /* Spot-check a few bytes per piece: the first, the last and one in the middle. */
            if (p[0] != body_byte(seed, off) || p[n - 1] != body_byte(seed, off + n - 1) ||
                p[n / 2] != body_byte(seed, off + n / 2))
                r->bad++;
            off += n;
        }
        cache_hit_release(&h);
    }
}

START_TEST(concurrent_readers)
{
    /* Readers pin the pages of the versions they hold; under a loaded machine they hold them longer,
     * so the map gets room for that (the file grows only as far as used). */
    struct cache_store *s = open_store(256 * MiB);
    atomic_bool stop;
    atomic_init(&stop, false);
    struct reader r[4];
    uv_thread_t t[4];
    for (int i = 0; i < 4; i++) {
        r[i] = (struct reader){s, &stop, 0, 0};
        ck_assert_int_eq(uv_thread_create(&t[i], reader_main, &r[i]), 0);
    }
    char key[16], meta[64];
    uint64_t x = 7;
    for (int round = 0; round < 200; round++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t seed = (uint64_t)round, size = (x >> 33) % (700 * KiB);
        snprintf(key, sizeof(key), "key-%d", round % 8);
        snprintf(meta, sizeof(meta), "%llu %llu", (unsigned long long)seed, (unsigned long long)size);
        ck_assert_int_eq(put_object(s, key, seed, size, meta, 100000), 0);
        if (round % 10 == 9)
            cache_store_remove(s, key, strlen(key));
        if (round % 4 == 0)
            cache_store_flush(s);
    }
    cache_store_flush(s);
    atomic_store(&stop, true);
    unsigned long hits = 0, bad = 0;
    for (int i = 0; i < 4; i++) {
        uv_thread_join(&t[i]);
        hits += r[i].hits;
        bad += r[i].bad;
    }
    ck_assert_uint_eq(bad, 0);
    ck_assert_uint_gt(hits, 0);
    struct cache_store_stats st = stats(s);
    ck_assert_uint_eq(st.read_errors, 0);
    ck_assert_uint_eq(st.write_errors, 0);
    ck_assert_uint_eq(st.fills_committed, 200);
    cache_store_close(&s);
}
END_TEST

Suite *suite_store(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, round_trip_small);
    tcase_add_test(tc, round_trip_multi_chunk);
    tcase_add_test(tc, uncommitted_and_aborted_are_misses);
    tcase_add_test(tc, replace_keeps_old_readers);
    tcase_add_test(tc, remove_object);
    tcase_add_test(tc, update_meta);
    tcase_add_test(tc, reopen_keeps_objects);
    tcase_add_test(tc, too_large_is_refused);
    tcase_add_test(tc, tail_in_record_round_trips);
    tcase_add_test(tc, small_objects_do_not_fill_the_map);
    tcase_add_test(tc, eviction_under_small_map);
    tcase_add_test(tc, map_full_is_absorbed);
    tcase_add_test(tc, small_then_large_objects);
    tcase_add_test(tc, admission_when_full);
    tcase_add_test(tc, corrupt_file_is_rebuilt);
    tcase_add_test(tc, corrupt_meta_pages_are_rebuilt);
    tcase_add_test(tc, corrupt_tree_pages_are_rebuilt);
    tcase_add_test(tc, old_version_is_rebuilt);
    tcase_add_test(tc, missing_state_is_rebuilt);
    tcase_add_test(tc, busy_store_is_refused);
    tcase_add_test(tc, kill_mid_fill);
    tcase_add_test(tc, kill_at_random_moments);
    tcase_add_test(tc, unclean_reboot_wipes);
    tcase_add_test(tc, backpressure);
    tcase_add_test(tc, concurrent_readers);
    suite_add_tcase(s, tc);
    return s;
}
