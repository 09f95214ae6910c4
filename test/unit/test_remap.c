/*
 * Tests for lib/remap.c: rule URL parsing, building a rule set from a conf (with positioned errors), the
 * lookup precedence, and the upstream path. Request bytes are passed with lengths and without a
 * terminating NUL, as the HTTP parser hands them over.
 */
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "lib/remap.h"
#include "lib/util.h"
#include "test/unit/suites.h"

START_TEST(test_url_parse_good)
{
    static const struct {
        const char *in;
        bool tls;
        const char *host;
        unsigned port;
        const char *path;
    } cases[] = {
        {"http://example.com", false, "example.com", 80, "/"},
        {"https://example.com/", true, "example.com", 443, "/"},
        {"HTTPS://Example.COM:8443/A/b", true, "example.com", 8443, "/A/b"},
        {"Http://127.0.0.1:8080/img", false, "127.0.0.1", 8080, "/img"},
        {"https://[::1]:9443/", true, "::1", 9443, "/"},
        {"http://[2001:DB8:0:0::1]/x/", false, "2001:db8::1", 80, "/x/"},
        {"http://example.com.:81/", false, "example.com", 81, "/"},
        {"http://a_b-c.d:65535/%7Euser/a;b=c", false, "a_b-c.d", 65535, "/%7Euser/a;b=c"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cdn_url u;
        char *err = (char *)"untouched";
        ck_assert_msg(cdn_url_parse(cases[i].in, &u, &err) == 0, "%s: %s", cases[i].in, err);
        ck_assert_ptr_null(err);
        ck_assert_msg(u.tls == cases[i].tls, "%s", cases[i].in);
        ck_assert_str_eq(u.host, cases[i].host);
        ck_assert_uint_eq(u.port, cases[i].port);
        ck_assert_str_eq(u.path, cases[i].path);
        cdn_url_dispose(&u);
        ck_assert_ptr_null(u.host);
        ck_assert_ptr_null(u.path);
    }
}
END_TEST

START_TEST(test_url_parse_bad)
{
    static const struct {
        const char *in, *err;
    } cases[] = {
        {"ftp://example.com/", "the scheme must be http:// or https://"},
        {"example.com/", "the scheme must be http:// or https://"},
        {"//example.com/", "the scheme must be http:// or https://"},
        {"http:/example.com/", "the scheme must be http:// or https://"},
        {"http://user@example.com/", "userinfo (user@) is not allowed"},
        {"http://user:pw@example.com/", "userinfo (user@) is not allowed"},
        {"http://example.com/?a=b", "a query (?) or fragment (#) is not allowed"},
        {"http://example.com/#top", "a query (?) or fragment (#) is not allowed"},
        {"http://example.com?", "a query (?) or fragment (#) is not allowed"},
        {"http://example.com:0/", "the port must be 1..65535"},
        {"http://example.com:65536/", "the port must be 1..65535"},
        {"http://example.com:/", "the port must be 1..65535"},
        {"http://example.com:8o/", "the port must be 1..65535"},
        {"http://example.com:-1/", "the port must be 1..65535"},
        {"http:///", "the host is empty"},
        {"http://:80/", "the host is empty"},
        {"http://", "the host is empty"},
        {"http://a..b/", "the host has an empty label"},
        {"http://.a/", "the host has an empty label"},
        {"http://exa mple.com/",
         "bad character in the host (allowed: letters, digits, '-', '.', '_', or [IPv6])"},
        {"http://ex%41.com/",
         "bad character in the host (allowed: letters, digits, '-', '.', '_', or [IPv6])"},
        {"http://[::1/", "bad IPv6 literal (expected [address])"},
        {"http://[1.2.3.4]/", "bad IPv6 literal (expected [address])"},
        {"http://[::1%25eth0]/", "bad IPv6 literal (expected [address])"},
        {"http://[::1]x/", "unexpected text after ']' (expected :port or /)"},
        {"http://[::1]:0/", "the port must be 1..65535"},
        {"http://a/b c", "the path must be printable ASCII without spaces"},
        {"http://a/b\tc", "the path must be printable ASCII without spaces"},
        {"http://a/\xc3\xa9", "the path must be printable ASCII without spaces"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cdn_url u;
        char *err = NULL;
        ck_assert_msg(cdn_url_parse(cases[i].in, &u, &err) == -1, "%s parsed", cases[i].in);
        ck_assert_ptr_nonnull(err);
        ck_assert_msg(strcmp(err, cases[i].err) == 0, "%s: got \"%s\"", cases[i].in, err);
        ck_assert_ptr_null(u.host);
        ck_assert_ptr_null(u.path);
        free(err);
    }

    /* A host of 253 bytes is fine, 254 is not. */
    char long_url[400];
    strcpy(long_url, "http://");
    memset(long_url + 7, 'a', 253);
    strcpy(long_url + 7 + 253, "/");
    struct cdn_url u;
    char *err = NULL;
    ck_assert_int_eq(cdn_url_parse(long_url, &u, &err), 0);
    cdn_url_dispose(&u);
    memset(long_url + 7, 'a', 254);
    strcpy(long_url + 7 + 254, "/");
    ck_assert_int_eq(cdn_url_parse(long_url, &u, &err), -1);
    ck_assert_str_eq(err, "the host is longer than 253 bytes");
    free(err);
}
END_TEST

/* Holds a conf built in memory, as the loader would leave it. */
struct fake_conf {
    struct cdn_conf conf;
    struct cdn_conf_remap_rule rules[16];
};

static void fake_init(struct fake_conf *fc, const char *const *rules, size_t n)
{
    memset(fc, 0, sizeof(*fc));
    ck_assert_uint_le(n, 16);
    fc->conf.path = (char *)"etc/test.yaml";
    fc->conf.remap = fc->rules;
    fc->conf.nremap = n;
    for (size_t i = 0; i < n; i++) {
        fc->rules[i].from = (char *)rules[2 * i];
        fc->rules[i].to = (char *)rules[2 * i + 1];
        fc->rules[i].pos.line = (int)i + 10;
        fc->rules[i].pos.col = 5;
    }
}

static struct cdn_remap *remap_ok(const char *const *rules, size_t n)
{
    struct fake_conf fc;
    struct cdn_remap *r = NULL;
    char *err = NULL;
    fake_init(&fc, rules, n);
    ck_assert_msg(cdn_remap_new(&fc.conf, &r, &err) == 0, "%s", err);
    ck_assert_ptr_null(err);
    ck_assert_uint_eq(r->nrules, n);
    return r;
}

START_TEST(test_remap_new_errors)
{
    static const char *const rules[] = {
        "http://a/",        "http://b/",     /* fine */
        "ftp://a/",         "http://b/",     /* bad FROM */
        "http://a/",        "http://b/?x=1", /* bad TO */
        "http://u@a:99999", "nope",          /* only the FROM error is reported for a rule */
    };
    struct fake_conf fc;
    struct cdn_remap *r = (struct cdn_remap *)1;
    char *err = NULL;
    fake_init(&fc, rules, 4);
    ck_assert_int_eq(cdn_remap_new(&fc.conf, &r, &err), -1);
    ck_assert_ptr_null(r);
    ck_assert_str_eq(
        err, "etc/test.yaml:11:5: remap[1]: FROM \"ftp://a/\": the scheme must be http:// or https://\n"
             "etc/test.yaml:12:5: remap[2]: TO \"http://b/?x=1\": a query (?) or fragment (#) is not "
             "allowed\n"
             "etc/test.yaml:13:5: remap[3]: FROM \"http://u@a:99999\": userinfo (user@) is not allowed");
    free(err);

    /* No rules is a valid, empty set: every lookup misses. */
    fake_init(&fc, NULL, 0);
    ck_assert_int_eq(cdn_remap_new(&fc.conf, &r, &err), 0);
    ck_assert_uint_eq(r->nrules, 0);
    ck_assert_ptr_null(cdn_remap_lookup(r, false, "a", 1, "/", 1));
    cdn_remap_free(&r);
    ck_assert_ptr_null(r);
    cdn_remap_free(&r);
    cdn_remap_free(NULL);
}
END_TEST

/* Looks up with host and path copied into buffers followed by junk, so that reading past the lengths shows.
 */
static const struct cdn_remap_rule *lookup(const struct cdn_remap *r, bool tls, const char *host,
                                           const char *path)
{
    size_t hl = strlen(host), pl = strlen(path);
    char *h = cdn_xmalloc(hl + 8), *p = cdn_xmalloc(pl + 8);
    memcpy(h, host, hl);
    memcpy(h + hl, ":1/x.~#", 8);
    memcpy(p, path, pl);
    memcpy(p + pl, "/more\0\0", 8);
    const struct cdn_remap_rule *rule = cdn_remap_lookup(r, tls, h, hl, p, pl);
    free(h);
    free(p);
    return rule;
}

static int rule_index(const struct cdn_remap *r, const struct cdn_remap_rule *rule)
{
    return rule == NULL ? -1 : (int)(rule - r->rules);
}

START_TEST(test_lookup_precedence)
{
    static const char *const rules[] = {
        "http://example.com/",           "http://o/root/",   /* 0 */
        "http://example.com/img",        "http://o/img-a/",  /* 1 */
        "http://example.com/img/large/", "http://o/large/",  /* 2 */
        "http://example.com/img",        "http://o/img-b/",  /* 3: same FROM as 1, never wins */
        "https://example.com/",          "http://o/secure/", /* 4 */
        "http://example.com:8080/",      "http://o/8080/",   /* 5 */
        "https://[::1]:8443/",           "http://o/v6/",     /* 6 */
        "http://other.test/only/",       "http://o/only/",   /* 7 */
    };
    struct cdn_remap *r = remap_ok(rules, 8);

    /* Longest FROM path wins; equal FROMs go to the first. */
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com", "/")), 0);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com", "/index.html")), 0);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com", "/img")), 1);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com", "/img/a.png")), 1);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com", "/img?w=10")), 1);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com", "/img/large/a.png")), 2);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com", "/img/large")), 1);

    /* Segment boundary: "/img" is not a prefix of "/images". */
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com", "/images/a.png")), 0);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com", "/img.png")), 0);

    /* The path compare is exact (case-sensitive). */
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com", "/IMG/a.png")), 0);

    /* Scheme must match; port defaults from the scheme. */
    ck_assert_int_eq(rule_index(r, lookup(r, true, "example.com", "/img")), 4);
    ck_assert_int_eq(rule_index(r, lookup(r, true, "example.com:443", "/")), 4);
    ck_assert_int_eq(rule_index(r, lookup(r, true, "example.com:80", "/")), -1);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com:80", "/")), 0);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com:", "/")), 0);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com:8080", "/img")), 5);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com:8081", "/")), -1);

    /* Host: case-insensitive, trailing dot ignored. */
    ck_assert_int_eq(rule_index(r, lookup(r, false, "EXAMPLE.Com", "/img")), 1);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com.", "/img")), 1);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com.:8080", "/")), 5);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "www.example.com", "/")), -1);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.co", "/")), -1);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com..", "/")), -1);

    /* IPv6 literals compare as addresses. */
    ck_assert_int_eq(rule_index(r, lookup(r, true, "[::1]:8443", "/x")), 6);
    ck_assert_int_eq(rule_index(r, lookup(r, true, "[0:0::0:1]:8443", "/x")), 6);
    ck_assert_int_eq(rule_index(r, lookup(r, true, "[::1]", "/x")), -1);
    ck_assert_int_eq(rule_index(r, lookup(r, true, "::1:8443", "/x")), -1);
    ck_assert_int_eq(rule_index(r, lookup(r, true, "[::1]8443", "/x")), -1);
    ck_assert_int_eq(rule_index(r, lookup(r, true, "[::1", "/x")), -1);

    /* No rule for the path: no match, never a fallback to another host. */
    ck_assert_int_eq(rule_index(r, lookup(r, false, "other.test", "/")), -1);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "other.test", "/only")), -1);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "other.test", "/only/x")), 7);

    /* Malformed input misses instead of matching. */
    ck_assert_int_eq(rule_index(r, lookup(r, false, "", "/")), -1);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com:0", "/")), -1);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com:99999", "/")), -1);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com:80:80", "/")), -1);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com", "")), -1);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "example.com", "*")), -1);
    ck_assert_ptr_null(cdn_remap_lookup(r, false, NULL, 0, "/", 1));
    ck_assert_ptr_null(cdn_remap_lookup(NULL, false, "example.com", 11, "/", 1));

    cdn_remap_free(&r);
}
END_TEST

START_TEST(test_lookup_tie_first)
{
    static const char *const rules[] = {
        "http://a/x/", "http://first/",  /* 0 */
        "http://A/x/", "http://second/", /* 1: same after normalisation */
        "http://a/",   "http://root/",   /* 2 */
    };
    struct cdn_remap *r = remap_ok(rules, 3);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "a", "/x/1")), 0);
    ck_assert_int_eq(rule_index(r, lookup(r, false, "a", "/y")), 2);
    cdn_remap_free(&r);
}
END_TEST

START_TEST(test_target_path)
{
    static const struct {
        const char *from, *to, *path, *want;
    } cases[] = {
        {"http://a/", "http://b/x/", "/foo?q=1", "/x/foo?q=1"},
        {"http://a/", "http://b/x/", "/", "/x/"},
        {"http://a/", "http://b/", "/foo/bar", "/foo/bar"},
        {"http://a/", "http://b", "/foo", "/foo"},
        {"http://a/img", "http://b/static", "/img/1.png", "/static/1.png"},
        {"http://a/img", "http://b/static", "/img", "/static"},
        {"http://a/img", "http://b/static", "/img?v=2", "/static?v=2"},
        {"http://a/img", "http://b/static/", "/img/1.png", "/static/1.png"},
        {"http://a/img", "http://b/", "/img/1.png", "/1.png"},
        {"http://a/img", "http://b/", "/img", "/"},
        {"http://a/img/", "http://b/static", "/img/1.png", "/static/1.png"},
        {"http://a/img/", "http://b/static", "/img/", "/static"},
        {"http://a/img/", "http://b/static/", "/img/a/b", "/static/a/b"},
        {"http://a/", "http://b/x", "/foo", "/x/foo"},
        {"http://a/", "http://b/x", "/?q", "/x?q"},
        {"http://a/a", "http://b/b", "/a//c", "/b//c"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const rules[] = {cases[i].from, cases[i].to};
        struct cdn_remap *r = remap_ok(rules, 1);
        size_t pl = strlen(cases[i].path);
        char *p = cdn_xmalloc(pl + 4);
        memcpy(p, cases[i].path, pl);
        memcpy(p + pl, "zzz", 4); /* not part of the path */
        ck_assert_ptr_eq(cdn_remap_lookup(r, false, "a", 1, p, pl), &r->rules[0]);
        char *got = cdn_remap_target_path(&r->rules[0], p, pl);
        ck_assert_msg(strcmp(got, cases[i].want) == 0, "map %s %s: %s -> \"%s\", want \"%s\"", cases[i].from,
                      cases[i].to, cases[i].path, got, cases[i].want);
        free(got);
        free(p);
        cdn_remap_free(&r);
    }
}
END_TEST

Suite *suite_remap(void)
{
    Suite *s = suite_create("remap");
    TCase *tc = tcase_create("remap");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_url_parse_good);
    tcase_add_test(tc, test_url_parse_bad);
    tcase_add_test(tc, test_remap_new_errors);
    tcase_add_test(tc, test_lookup_precedence);
    tcase_add_test(tc, test_lookup_tie_first);
    tcase_add_test(tc, test_target_path);
    suite_add_tcase(s, tc);
    return s;
}
