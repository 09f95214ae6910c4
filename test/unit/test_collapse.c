/* collapse + share: the collapsed-forwarding table and the read-while-writer buffer, single-threaded
 * (the wake callbacks only count). */
#include <string.h>

#include <check.h>

#include "lib/collapse.h"
#include "lib/share.h"
#include "test/unit/suites.h"

static int wakes;

static void on_wake(void *arg)
{
    (void)arg;
    wakes++;
}

START_TEST(test_leader_and_waiters)
{
    struct cdn_collapse *t = cdn_collapse_new();
    struct cdn_collapse_wait *w1, *w2, *w3, *lw;
    wakes = 0;
    ck_assert(cdn_collapse_join(t, "k", 1, on_wake, NULL, &lw)); /* leader */
    ck_assert_ptr_null(lw);
    ck_assert(!cdn_collapse_join(t, "k", 1, on_wake, NULL, &w1));
    ck_assert(!cdn_collapse_join(t, "k", 1, on_wake, NULL, &w2));
    ck_assert(cdn_collapse_join(t, "other", 5, on_wake, NULL, &w3)); /* keys do not mix */
    ck_assert_int_eq(cdn_collapse_result(w1), CDN_COLLAPSE_WAITING);
    cdn_collapse_leave(&w2); /* gave up: must not be woken */
    ck_assert_ptr_null(w2);
    ck_assert_uint_eq(cdn_collapse_finish(t, "k", 1, CDN_COLLAPSE_STORED), 1);
    ck_assert_int_eq(wakes, 1);
    ck_assert_int_eq(cdn_collapse_result(w1), CDN_COLLAPSE_STORED);
    cdn_collapse_leave(&w1);
    ck_assert(cdn_collapse_join(t, "k", 1, on_wake, NULL, &lw)); /* finished: a new leader */
    ck_assert_uint_eq(cdn_collapse_finish(t, "k", 1, CDN_COLLAPSE_GO), 0);
    ck_assert_uint_eq(cdn_collapse_finish(t, "other", 5, CDN_COLLAPSE_GO), 0);
    cdn_collapse_free(&t);
}
END_TEST

START_TEST(test_shared_read_while_writer)
{
    struct cdn_collapse *t = cdn_collapse_new();
    struct cdn_collapse_wait *lw, *early, *late;
    wakes = 0;
    ck_assert(cdn_collapse_join(t, "k", 1, on_wake, NULL, &lw));
    ck_assert(!cdn_collapse_join(t, "k", 1, on_wake, NULL, &early));
    struct cdn_share *sh = cdn_share_new("meta", 4, false, 0);
    cdn_collapse_share(t, "k", 1, sh);
    ck_assert_int_eq(wakes, 1);
    ck_assert_int_eq(cdn_collapse_result(early), CDN_COLLAPSE_SHARED);
    ck_assert_ptr_eq(cdn_collapse_wait_share(early), sh);
    ck_assert(!cdn_collapse_join(t, "k", 1, on_wake, NULL, &late)); /* joins after sharing: SHARED at once */
    ck_assert_int_eq(cdn_collapse_result(late), CDN_COLLAPSE_SHARED);

    struct cdn_share *r = cdn_share_ref(cdn_collapse_wait_share(early));
    cdn_collapse_leave(&early);
    cdn_collapse_leave(&late);
    int reader;
    cdn_share_watch(r, on_wake, &reader);
    const void *p;
    enum cdn_share_state st;
    ck_assert_uint_eq(cdn_share_read(r, 0, &p, &st), 0);
    ck_assert_int_eq(st, CDN_SHARE_MORE);
    static char big[200000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 7);
    wakes = 0;
    cdn_share_append(sh, big, 100);
    cdn_share_append(sh, big + 100, sizeof(big) - 100);
    ck_assert_int_eq(wakes, 2);
    uint64_t off = 0;
    size_t n;
    while ((n = cdn_share_read(r, off, &p, &st)) > 0) { /* pieces end at block boundaries */
        ck_assert(memcmp(p, big + off, n) == 0);
        off += n;
    }
    ck_assert_uint_eq(off, sizeof(big));
    ck_assert_int_eq(st, CDN_SHARE_MORE);
    cdn_share_end(sh, true);
    ck_assert_uint_eq(cdn_share_read(r, off, &p, &st), 0);
    ck_assert_int_eq(st, CDN_SHARE_DONE);
    size_t mlen;
    ck_assert(memcmp(cdn_share_meta(r, &mlen), "meta", 4) == 0 && mlen == 4);
    cdn_share_unwatch(r, &reader);
    cdn_share_unref(&r);
    cdn_collapse_finish(t, "k", 1, CDN_COLLAPSE_STORED);
    cdn_share_unref(&sh);
    cdn_collapse_free(&t);
}
END_TEST

START_TEST(test_share_failure)
{
    struct cdn_share *sh = cdn_share_new("m", 1, true, 10);
    uint64_t len;
    ck_assert(cdn_share_length(sh, &len) && len == 10);
    cdn_share_append(sh, "abc", 3);
    cdn_share_end(sh, false);
    cdn_share_end(sh, true); /* the first end wins */
    const void *p;
    enum cdn_share_state st;
    ck_assert_uint_eq(cdn_share_read(sh, 0, &p, &st), 3);
    ck_assert_int_eq(st, CDN_SHARE_FAILED);
    cdn_share_unref(&sh);
    ck_assert_ptr_null(sh);
}
END_TEST

Suite *suite_collapse(void)
{
    Suite *s = suite_create("collapse");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_leader_and_waiters);
    tcase_add_test(tc, test_shared_read_while_writer);
    tcase_add_test(tc, test_share_failure);
    suite_add_tcase(s, tc);
    return s;
}
