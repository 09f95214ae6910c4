#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "lib/util.h"
#include "test/unit/suites.h"

START_TEST(durations)
{
    static const struct {
        const char *in;
        int rc;
        uint64_t ms;
    } cases[] = {
        {"10", 0, 10000},   {"250ms", 0, 250},
        {"10s", 0, 10000},  {"2m", 0, 120000},
        {"1h", 0, 3600000}, {"1d", 0, 86400000},
        {"0", 0, 0},        {"", -1, 0},
        {"s", -1, 0},       {"10x", -1, 0},
        {"-1s", -1, 0},     {"1.5s", -1, 0},
        {" 1s", -1, 0},     {"99999999999999999999", -1, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 12345;
        int rc = cdn_parse_duration_ms(cases[i].in, &v);
        ck_assert_msg(rc == cases[i].rc, "case %s: rc %d", cases[i].in, rc);
        if (rc == 0)
            ck_assert_uint_eq(v, cases[i].ms);
    }
}
END_TEST

START_TEST(sizes)
{
    uint64_t v;
    ck_assert_int_eq(cdn_parse_size("123", &v), 0);
    ck_assert_uint_eq(v, 123);
    ck_assert_int_eq(cdn_parse_size("32KiB", &v), 0);
    ck_assert_uint_eq(v, 32768);
    ck_assert_int_eq(cdn_parse_size("10GiB", &v), 0);
    ck_assert_uint_eq(v, 10ull << 30);
    ck_assert_int_eq(cdn_parse_size("5MB", &v), 0);
    ck_assert_uint_eq(v, 5000000);
    ck_assert_int_eq(cdn_parse_size("5 MB", &v), -1);
    ck_assert_int_eq(cdn_parse_size("MB", &v), -1);
    ck_assert_int_eq(cdn_parse_size("99999999999TiB", &v), -1);
}
END_TEST

START_TEST(strings)
{
    ck_assert(cdn_strieq("HoSt", 4, "host"));
    ck_assert(!cdn_strieq("Host", 4, "hosts"));
    ck_assert(!cdn_strieq("Hosx", 4, "host"));
    char *b = NULL;
    cdn_strappendf(&b, "a:%d", 1);
    cdn_strappendf(&b, "b:%s", "x");
    ck_assert_str_eq(b, "a:1\nb:x");
    free(b);
    char *s = cdn_xasprintf("%s-%03d", "v", 7);
    ck_assert_str_eq(s, "v-007");
    free(s);
    ck_assert_str_eq(cdn_strerror(CDN_ETIMEOUT), "timed out");
    ck_assert(strlen(cdn_strerror(-2)) > 0);
}
END_TEST

Suite *suite_util(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, durations);
    tcase_add_test(tc, sizes);
    tcase_add_test(tc, strings);
    suite_add_tcase(s, tc);
    return s;
}
