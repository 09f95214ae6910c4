/* Unit tests for lib/ring: spread, minimal movement when parents come and go, weights, failover order. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/ring.h"
#include "test/unit/suites.h"

#define NKEYS 30000

static size_t primary(const struct cdn_ring *r, int key)
{
    char k[64];
    int n = snprintf(k, sizeof(k), "https://cdn.test/object/%d", key);
    size_t order[1];
    ck_assert_uint_eq(cdn_ring_order(r, cdn_ring_hash(k, (size_t)n), order, 1), 1);
    return order[0];
}

START_TEST(spread_is_even)
{
    const char *names[] = {"10.0.0.1:443", "10.0.0.2:443", "10.0.0.3:443"};
    unsigned w[] = {1, 1, 1};
    struct cdn_ring *r = cdn_ring_new(names, w, 3);
    size_t count[3] = {0};
    for (int i = 0; i < NKEYS; i++)
        count[primary(r, i)]++;
    for (int p = 0; p < 3; p++)
        ck_assert_msg(count[p] > NKEYS / 3 * 85 / 100 && count[p] < NKEYS / 3 * 115 / 100,
                      "parent %d has %zu of %d keys", p, count[p], NKEYS);
    cdn_ring_free(&r);
    ck_assert_ptr_null(r);
}
END_TEST

START_TEST(adding_a_parent_moves_a_quarter_to_it)
{
    const char *names[] = {"r1", "r2", "r3", "r4"};
    unsigned w[] = {1, 1, 1, 1};
    struct cdn_ring *three = cdn_ring_new(names, w, 3), *four = cdn_ring_new(names, w, 4);
    size_t moved = 0;
    for (int i = 0; i < NKEYS; i++) {
        size_t a = primary(three, i), b = primary(four, i);
        if (a != b) {
            ck_assert_uint_eq(b, 3); /* a key only ever moves to the new parent */
            moved++;
        }
    }
    double f = (double)moved / NKEYS;
    ck_assert_msg(f > 0.19 && f < 0.31, "moved %.3f of the keys, want about 0.25", f);
    cdn_ring_free(&three);
    cdn_ring_free(&four);
}
END_TEST

START_TEST(removing_a_parent_moves_only_its_keys)
{
    const char *all[] = {"r1", "r2", "r3"}, *without2[] = {"r1", "r3"};
    unsigned w[] = {1, 1, 1};
    struct cdn_ring *a = cdn_ring_new(all, w, 3), *b = cdn_ring_new(without2, w, 2);
    for (int i = 0; i < NKEYS; i++) {
        size_t pa = primary(a, i), pb = primary(b, i);
        const char *na = all[pa], *nb = without2[pb];
        if (pa != 1)
            ck_assert_str_eq(na, nb); /* keys of r1 and r3 stay where they were */
        /* and r2's keys go where the full ring's failover order says */
        if (pa == 1) {
            char k[64];
            int n = snprintf(k, sizeof(k), "https://cdn.test/object/%d", i);
            size_t order[3];
            ck_assert_uint_eq(cdn_ring_order(a, cdn_ring_hash(k, (size_t)n), order, 3), 3);
            ck_assert_str_eq(all[order[1]], nb);
        }
    }
    cdn_ring_free(&a);
    cdn_ring_free(&b);
}
END_TEST

START_TEST(weights)
{
    const char *names[] = {"big", "small"};
    unsigned w[] = {3, 1};
    struct cdn_ring *r = cdn_ring_new(names, w, 2);
    size_t big = 0;
    for (int i = 0; i < NKEYS; i++)
        big += primary(r, i) == 0;
    double f = (double)big / NKEYS;
    ck_assert_msg(f > 0.68 && f < 0.82, "weight 3 of 4 got %.3f", f);
    cdn_ring_free(&r);
}
END_TEST

START_TEST(order_and_agreement)
{
    const char *names[] = {"a", "b", "c", "d", "e"}, *shuffled[] = {"d", "b", "e", "a", "c"};
    unsigned w[] = {1, 1, 1, 1, 1};
    struct cdn_ring *r = cdn_ring_new(names, w, 5), *s = cdn_ring_new(shuffled, w, 5);
    for (int i = 0; i < 1000; i++) {
        uint64_t h = cdn_ring_hash(&i, sizeof(i));
        size_t o[8], p[8];
        ck_assert_uint_eq(cdn_ring_order(r, h, o, 8), 5); /* every parent once */
        ck_assert_uint_eq(cdn_ring_order(s, h, p, 8), 5);
        unsigned seen = 0;
        for (int k = 0; k < 5; k++) {
            ck_assert(!(seen & (1u << o[k])));
            seen |= 1u << o[k];
            ck_assert_str_eq(names[o[k]], shuffled[p[k]]); /* the order of the config does not matter */
        }
        ck_assert_uint_eq(cdn_ring_order(r, h, o, 2), 2);
    }
    struct cdn_ring *empty = cdn_ring_new(NULL, NULL, 0);
    size_t o[1];
    ck_assert_uint_eq(cdn_ring_order(empty, 42, o, 1), 0);
    cdn_ring_free(&empty);
    cdn_ring_free(&r);
    cdn_ring_free(&s);
}
END_TEST

Suite *suite_ring(void)
{
    Suite *s = suite_create("ring");
    TCase *tc = tcase_create("ring");
    tcase_add_test(tc, spread_is_even);
    tcase_add_test(tc, adding_a_parent_moves_a_quarter_to_it);
    tcase_add_test(tc, removing_a_parent_moves_only_its_keys);
    tcase_add_test(tc, weights);
    tcase_add_test(tc, order_and_agreement);
    suite_add_tcase(s, tc);
    return s;
}
