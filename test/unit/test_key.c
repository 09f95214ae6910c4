#include <string.h>

#include <check.h>

#include "cache/key.h"
#include "test/unit/suites.h"

static void check(bool tls, const char *host, unsigned port, const char *path,
                  const struct cache_key_rules *r, const char *want)
{
    struct cdn_buf b;
    cdn_buf_init(&b);
    cache_key_build(&b, tls, host, (uint16_t)port, path, strlen(path), r);
    ck_assert_msg(b.len == strlen(want) && memcmp(cdn_buf_data(&b), want, b.len) == 0, "key %.*s, want %s",
                  (int)b.len, cdn_buf_data(&b), want);
    cdn_buf_dispose(&b);
}

START_TEST(test_keys)
{
    check(true, "Example.COM", 443, "/a/b?x=1", NULL, "https://example.com:443/a/b?x=1");
    check(false, "10.0.0.1", 8080, "/", NULL, "http://10.0.0.1:8080/");
    check(false, "::1", 80, "/p", NULL, "http://[::1]:80/p");
    check(false, "h", 80, "/p#frag", NULL, "http://h:80/p");
    struct cache_key_rules noq = {.ignore_query = true};
    check(false, "h", 80, "/p?a=1&b=2", &noq, "http://h:80/p");
    char p1[] = "utm_source", p2[] = "fbclid";
    char *params[] = {p1, p2};
    struct cache_key_rules some = {.ignore_params = params, .nignore_params = 2};
    check(false, "h", 80, "/p?utm_source=x&a=1&fbclid=3&b=2", &some, "http://h:80/p?a=1&b=2");
    check(false, "h", 80, "/p?utm_source=x", &some, "http://h:80/p");
    check(false, "h", 80, "/p?utm_sourcex=1&&a", &some, "http://h:80/p?utm_sourcex=1&a");
    check(false, "h", 80, "/p?a=1", &some, "http://h:80/p?a=1");
}
END_TEST

Suite *suite_key(void)
{
    Suite *s = suite_create("key");
    TCase *tc = tcase_create("build");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_keys);
    suite_add_tcase(s, tc);
    return s;
}
