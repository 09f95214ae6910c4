/* SIEVE policy: hand-made sequences with known eviction orders, removal, table growth, a trace
 * sanity check (scan resistance, Zipf hit ratio) and hits from other threads while the owner churns. */
#include <stdatomic.h>
#include <stdlib.h>

#include <unistd.h>

#include <check.h>
#include <uv.h>

#include "cache/evict.h"
#include "lib/util.h"
#include "test/unit/suites.h"

/* For hot loops: a passing ck_assert costs Check a checkpoint write; this costs a branch. */
#define REQUIRE(e)                                      \
    do {                                                \
        if (!(e))                                       \
            ck_abort_msg("requirement failed: %s", #e); \
    } while (0)

static uint64_t victim(struct cache_evict *ev)
{
    uint64_t id = 0, size = 0;
    REQUIRE(cache_evict_one(ev, &id, &size) == 0);
    return id;
}

static struct cache_evict *with_ids(int n)
{
    struct cache_evict *ev = cache_evict_new();
    for (int i = 1; i <= n; i++)
        ck_assert_int_eq(cache_evict_insert(ev, (uint64_t)i, 10), 0);
    return ev;
}

START_TEST(fifo_without_hits)
{
    struct cache_evict *ev = with_ids(4);
    ck_assert_uint_eq(cache_evict_count(ev), 4);
    ck_assert_uint_eq(cache_evict_bytes(ev), 40);
    for (uint64_t want = 1; want <= 4; want++)
        ck_assert_uint_eq(victim(ev), want);
    uint64_t id;
    ck_assert_int_eq(cache_evict_one(ev, &id, NULL), CDN_EINVAL);
    ck_assert_uint_eq(cache_evict_count(ev), 0);
    ck_assert_uint_eq(cache_evict_bytes(ev), 0);
    cache_evict_free(&ev);
    ck_assert_ptr_null(ev);
}
END_TEST

START_TEST(visited_survive_one_pass)
{
    /* queue, oldest first: 1 2 3 4; 1 and 3 visited. The hand clears 1, evicts 2, stays at 3; clears
     * 3, evicts 4, wraps to the tail and now evicts 1 (its bit was cleared), then 3. */
    struct cache_evict *ev = with_ids(4);
    cache_evict_hit(ev, 1);
    cache_evict_hit(ev, 3);
    cache_evict_hit(ev, 99); /* absent: no-op */
    ck_assert_uint_eq(victim(ev), 2);
    ck_assert_uint_eq(victim(ev), 4);
    ck_assert_uint_eq(victim(ev), 1);
    ck_assert_uint_eq(victim(ev), 3);
    cache_evict_free(&ev);
}
END_TEST

START_TEST(hand_keeps_its_place)
{
    /* 1 2 3, 1 visited: evict 2, hand on 3. Insert 4 (newest): the hand reaches it after 3, and
     * only then wraps to 1. An LRU would have evicted 3 then 1 then 4. */
    struct cache_evict *ev = with_ids(3);
    cache_evict_hit(ev, 1);
    ck_assert_uint_eq(victim(ev), 2);
    ck_assert_int_eq(cache_evict_insert(ev, 4, 10), 0);
    ck_assert_uint_eq(victim(ev), 3);
    ck_assert_uint_eq(victim(ev), 4);
    ck_assert_uint_eq(victim(ev), 1);
    cache_evict_free(&ev);
}
END_TEST

START_TEST(all_visited_evicts_after_full_turn)
{
    struct cache_evict *ev = with_ids(3);
    for (uint64_t i = 1; i <= 3; i++)
        cache_evict_hit(ev, i);
    /* Every bit is cleared on the first turn, then the oldest goes. */
    ck_assert_uint_eq(victim(ev), 1);
    ck_assert_uint_eq(victim(ev), 2);
    cache_evict_free(&ev);
}
END_TEST

START_TEST(remove_and_duplicates)
{
    struct cache_evict *ev = with_ids(5);
    ck_assert_int_eq(cache_evict_insert(ev, 3, 10), CDN_EINVAL);
    ck_assert(cache_evict_remove(ev, 3));
    ck_assert(!cache_evict_remove(ev, 3));
    ck_assert(!cache_evict_contains(ev, 3));
    ck_assert_uint_eq(cache_evict_count(ev), 4);
    ck_assert_uint_eq(cache_evict_bytes(ev), 40);
    /* queue 1 2 4 5; 1 visited: evict 2, hand on 4. Removing 4 moves the hand to 5. */
    cache_evict_hit(ev, 1);
    ck_assert_uint_eq(victim(ev), 2);
    ck_assert(cache_evict_remove(ev, 4));
    ck_assert_uint_eq(victim(ev), 5);
    ck_assert_uint_eq(victim(ev), 1);
    ck_assert_uint_eq(cache_evict_count(ev), 0);
    /* Ids can come back after removal, and sizes are reported back. */
    ck_assert_int_eq(cache_evict_insert(ev, 3, 77), 0);
    uint64_t id, size;
    ck_assert_int_eq(cache_evict_one(ev, &id, &size), 0);
    ck_assert_uint_eq(id, 3);
    ck_assert_uint_eq(size, 77);
    cache_evict_free(&ev);
}
END_TEST

START_TEST(growth_and_churn)
{
    struct cache_evict *ev = cache_evict_new();
    enum { N = 100000 };
    for (uint64_t i = 0; i < N; i++)
        REQUIRE(cache_evict_insert(ev, i * 0x9e3779b97f4a7c15ull, 1) == 0);
    for (uint64_t i = 0; i < N; i += 2)
        REQUIRE(cache_evict_remove(ev, i * 0x9e3779b97f4a7c15ull));
    for (uint64_t i = 0; i < N; i++)
        REQUIRE(cache_evict_contains(ev, i * 0x9e3779b97f4a7c15ull) == (i % 2 == 1));
    ck_assert_uint_eq(cache_evict_count(ev), N / 2);
    /* No hits: pure FIFO over the survivors, in insertion order. */
    for (uint64_t i = 1; i < N; i += 2)
        REQUIRE(victim(ev) == i * 0x9e3779b97f4a7c15ull);
    ck_assert_uint_eq(cache_evict_count(ev), 0);
    cache_evict_free(&ev);
}
END_TEST

/* A cache of `cap` unit-size objects driven by the policy; returns hits. */
struct sim {
    struct cache_evict *ev;
    size_t cap;
};

static bool sim_access(struct sim *s, uint64_t id)
{
    if (cache_evict_contains(s->ev, id)) {
        cache_evict_hit(s->ev, id);
        return true;
    }
    if (cache_evict_count(s->ev) >= s->cap) {
        uint64_t v;
        REQUIRE(cache_evict_one(s->ev, &v, NULL) == 0);
    }
    REQUIRE(cache_evict_insert(s->ev, id, 1) == 0);
    return false;
}

START_TEST(scan_resistance)
{
    /* 20 hot objects requested over and over, interleaved with a one-time scan of 5000 objects,
     * in a cache of 100: the hot set stays (LRU would keep losing it to the scan). */
    struct sim s = {cache_evict_new(), 100};
    for (uint64_t id = 0; id < 20; id++)
        sim_access(&s, id);
    for (uint64_t id = 0; id < 20; id++)
        sim_access(&s, id);
    unsigned hot_hits = 0, hot_reqs = 0;
    for (uint64_t scan = 1000; scan < 6000; scan++) {
        sim_access(&s, scan);
        uint64_t hot = scan % 20;
        hot_reqs++;
        hot_hits += sim_access(&s, hot);
    }
    ck_assert_msg(hot_hits == hot_reqs, "hot hits %u of %u", hot_hits, hot_reqs);
    cache_evict_free(&s.ev);
}
END_TEST

START_TEST(zipf_trace_sanity)
{
    /* Zipf(1.0) over 10k objects, cache of 10%: SIEVE's hit ratio must be positive, below the best
     * static cache (the 1000 most popular objects), and not far from it (the NSDI paper reports
     * SIEVE close to or better than LRU here, which itself gets about 80% of the optimum). */
    enum { N = 10000, REQS = 200000, CAP = 1000 };
    double *cdf = cdn_xmalloc(N * sizeof(*cdf)), sum = 0;
    for (int i = 0; i < N; i++)
        cdf[i] = (sum += 1.0 / (i + 1));
    double top = cdf[CAP - 1] / sum;
    uint64_t x = 88172645463325252ull;
    struct sim s = {cache_evict_new(), CAP};
    unsigned hits = 0;
    for (int r = 0; r < REQS; r++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double u = (double)(x >> 11) / 9007199254740992.0 * sum;
        int lo = 0, hi = N - 1;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        hits += sim_access(&s, (uint64_t)lo);
    }
    double ratio = (double)hits / REQS;
    ck_assert_msg(ratio < top && ratio > 0.8 * top, "SIEVE hit ratio %.3f, static optimum %.3f", ratio, top);
    ck_assert_uint_eq(cache_evict_count(s.ev), CAP);
    cache_evict_free(&s.ev);
    free(cdf);
}
END_TEST

struct hitter {
    struct cache_evict *ev;
    atomic_bool *stop;
    _Atomic unsigned long calls;
};

static void hitter_main(void *arg)
{
    struct hitter *h = arg;
    uint64_t x = 0x2545f4914f6cdd1dull ^ (uintptr_t)h;
    while (!atomic_load(h->stop)) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        cache_evict_seen(h->ev, x % 5000);
        cache_evict_hit(h->ev, x % 5000);
        (void)cache_evict_admit(h->ev, x % 5000);
        atomic_fetch_add_explicit(&h->calls, 1, memory_order_relaxed);
    }
}

START_TEST(hits_from_other_threads)
{
    /* The owner inserts, evicts, removes and grows the table while four threads hit at random (and
     * count lookups in the admission sketch, which ages under them); under ASan this checks that a
     * racing hit never touches freed memory. */
    struct cache_evict *ev = cache_evict_new();
    cache_evict_admission(ev, 100);
    atomic_bool stop;
    atomic_init(&stop, false);
    struct hitter h[4];
    uv_thread_t t[4];
    for (int i = 0; i < 4; i++) {
        h[i].ev = ev;
        h[i].stop = &stop;
        atomic_init(&h[i].calls, 0);
        ck_assert_int_eq(uv_thread_create(&t[i], hitter_main, &h[i]), 0);
    }
    /* on a loaded machine the threads may start late: let every one of them hit before the owner works */
    for (int waited = 0; waited < 5000; waited++) {
        bool all = true;
        for (int i = 0; i < 4; i++)
            all = all && atomic_load(&h[i].calls) > 0;
        if (all)
            break;
        usleep(1000);
    }
    uint64_t next = 0;
    for (int round = 0; round < 200000; round++) {
        if (cache_evict_count(ev) < 3000)
            cache_evict_insert(ev, next++ % 5000, 1);
        else if (round % 3 == 0)
            cache_evict_remove(ev, (uint64_t)round % 5000);
        else {
            uint64_t id;
            REQUIRE(cache_evict_one(ev, &id, NULL) == 0);
        }
    }
    atomic_store(&stop, true);
    unsigned long calls = 0;
    for (int i = 0; i < 4; i++) {
        uv_thread_join(&t[i]);
        calls += atomic_load(&h[i].calls);
    }
    ck_assert_uint_gt(calls, 0);
    size_t n = cache_evict_count(ev);
    for (size_t i = 0; i < n; i++) {
        uint64_t id;
        REQUIRE(cache_evict_one(ev, &id, NULL) == 0);
    }
    ck_assert_uint_eq(cache_evict_bytes(ev), 0);
    cache_evict_free(&ev);
}
END_TEST

START_TEST(admission_off_by_default)
{
    struct cache_evict *ev = with_ids(3);
    for (int i = 0; i < 100; i++)
        cache_evict_seen(ev, 1);
    ck_assert_uint_eq(victim(ev), 1);
    ck_assert(cache_evict_admit(ev, 42)); /* never seen, and still in: no admission without the sketch */
    cache_evict_free(&ev);
}
END_TEST

START_TEST(admission_prefers_frequent)
{
    /* Victims asked for 5 times each: a newcomer asked for once is refused, then admitted once it has
     * been asked for more often than the last victim. Ties are refused. */
    struct cache_evict *ev = cache_evict_new();
    cache_evict_admission(ev, 100);
    cache_evict_seen(ev, 999);
    ck_assert(cache_evict_admit(ev, 999)); /* nothing evicted yet: anything asked for goes */
    for (uint64_t id = 1; id <= 10; id++) {
        ck_assert_int_eq(cache_evict_insert(ev, id, 1), 0);
        for (int i = 0; i < 5; i++)
            cache_evict_seen(ev, id);
    }
    ck_assert_uint_eq(victim(ev), 1);
    cache_evict_seen(ev, 1000);
    ck_assert(!cache_evict_admit(ev, 1000));
    for (int i = 0; i < 4; i++)
        cache_evict_seen(ev, 1000);
    ck_assert(!cache_evict_admit(ev, 1000)); /* 5 against 5 */
    cache_evict_seen(ev, 1000);
    ck_assert(cache_evict_admit(ev, 1000));
    cache_evict_free(&ev);
}
END_TEST

START_TEST(admission_forgets)
{
    /* A victim asked for 200 times long ago does not keep newcomers out for ever: after a period of
     * 10 * 1024 lookups every count is halved, and a newcomer asked for 120 times gets in. */
    struct cache_evict *ev = cache_evict_new();
    cache_evict_admission(ev, 100);
    ck_assert_int_eq(cache_evict_insert(ev, 1, 1), 0);
    for (int i = 0; i < 200; i++)
        cache_evict_seen(ev, 1);
    for (int i = 0; i < 120; i++)
        cache_evict_seen(ev, 7);
    for (uint64_t i = 0; i < 10 * 1024; i++)
        cache_evict_seen(ev, 1000000 + i); /* once each: little noise in any counter */
    ck_assert_uint_eq(victim(ev), 1);
    for (int i = 0; i < 120; i++)
        cache_evict_seen(ev, 8);
    ck_assert(!cache_evict_admit(ev, 7)); /* halved to about 60, against about 100 */
    ck_assert(cache_evict_admit(ev, 8));  /* 120 since the halving */
    cache_evict_free(&ev);
}
END_TEST

Suite *suite_evict(void)
{
    Suite *s = suite_create("evict");
    TCase *tc = tcase_create("sieve");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, fifo_without_hits);
    tcase_add_test(tc, visited_survive_one_pass);
    tcase_add_test(tc, hand_keeps_its_place);
    tcase_add_test(tc, all_visited_evicts_after_full_turn);
    tcase_add_test(tc, remove_and_duplicates);
    tcase_add_test(tc, growth_and_churn);
    tcase_add_test(tc, scan_resistance);
    tcase_add_test(tc, admission_off_by_default);
    tcase_add_test(tc, admission_prefers_frequent);
    tcase_add_test(tc, admission_forgets);
    tcase_add_test(tc, zipf_trace_sanity);
    tcase_add_test(tc, hits_from_other_threads);
    suite_add_tcase(s, tc);
    return s;
}
