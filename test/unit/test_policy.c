/*
 * Tests for cache/policy.c: one table row per rule, grouped by the RFC section they come from.
 * Header lists are written as "Name: value" lines joined with "\n" (see hdrs()); a name starting with
 * '!' is marked hop-by-hop, as the HTTP/1 parser would. All times are relative to T0, the Date of the
 * RFC 9110 example "Sun, 06 Nov 1994 08:49:37 GMT".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "cache/policy.h"
#include "lib/buf.h"
#include "lib/util.h"
#include "test/unit/suites.h"

#define T0    784111777LL
#define D0    "Sun, 06 Nov 1994 08:49:37 GMT" /* T0 */
#define D10   "Sun, 06 Nov 1994 08:49:47 GMT" /* T0 + 10 */
#define D20   "Sun, 06 Nov 1994 08:49:57 GMT" /* T0 + 20 */
#define D60   "Sun, 06 Nov 1994 08:50:37 GMT" /* T0 + 60 */
#define D100  "Sun, 06 Nov 1994 08:51:17 GMT" /* T0 + 100 */
#define DM60  "Sun, 06 Nov 1994 08:48:37 GMT" /* T0 - 60 */
#define DM2H  "Sun, 06 Nov 1994 06:49:37 GMT" /* T0 - 7200 */
#define DM1D  "Sat, 05 Nov 1994 08:49:37 GMT" /* T0 - 86400 */
#define DM31D "Thu, 06 Oct 1994 08:49:37 GMT" /* T0 - 31 days */

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))
#define MAXH       32

/* Splits spec into header lines pointing into spec (string literals live for the whole test). */
static size_t hdrs(const char *spec, struct cdn_http_header *out)
{
    size_t n = 0;
    const char *p = spec;

    while (p != NULL && *p != '\0') {
        const char *eol = strchr(p, '\n'), *colon;
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        struct cdn_http_header *h = &out[n];

        ck_assert_uint_lt(n, MAXH);
        colon = memchr(p, ':', len);
        ck_assert_ptr_nonnull(colon);
        h->hop_by_hop = p[0] == '!';
        h->name = p + (h->hop_by_hop ? 1 : 0);
        h->name_len = (size_t)(colon - h->name);
        h->value = colon + 1;
        h->value_len = len - (size_t)(colon + 1 - p);
        while (h->value_len > 0 && h->value[0] == ' ') {
            h->value++;
            h->value_len--;
        }
        while (h->value_len > 0 && h->value[h->value_len - 1] == ' ')
            h->value_len--;
        n++;
        p = eol != NULL ? eol + 1 : NULL;
    }
    return n;
}

/* Serialises a header list as "name: value\n" lines into a static buffer, for comparisons. */
static const char *dump(const struct cdn_http_header *h, size_t n)
{
    static char buf[4096];
    size_t off = 0, i;

    buf[0] = '\0';
    for (i = 0; i < n; i++) {
        int w = snprintf(buf + off, sizeof(buf) - off, "%.*s: %.*s\n", (int)h[i].name_len, h[i].name,
                         (int)h[i].value_len, h[i].value);
        ck_assert_int_gt(w, 0);
        off += (size_t)w;
        ck_assert_uint_lt(off, sizeof(buf));
    }
    return buf;
}

/* cdn_buf_data() of a buffer that never allocated is NULL + 0, which UBSan (clang) rejects. */
static const char *bdata(const struct cdn_buf *b)
{
    return b->len > 0 ? cdn_buf_data(b) : "";
}

/* Does the buffer hold exactly the C string want? */
static bool buf_is(const struct cdn_buf *b, const char *want)
{
    return b->len == strlen(want) && memcmp(bdata(b), want, b->len) == 0;
}

static void parse_res(const struct cache_policy_cfg *cfg, int status, const char *spec,
                      struct cdn_http_header *h, struct cache_response_info *res)
{
    size_t n = hdrs(spec, h);

    cache_policy_parse_response(cfg, status, h, n, res);
}

static void parse_req(const char *spec, struct cdn_http_header *h, struct cache_request_info *req)
{
    size_t n = hdrs(spec, h);

    cache_policy_parse_request(h, n, req);
}

/* ------------------------------------------------------------------------------------------------
 * RFC 9110 5.6.7: HTTP-date in all three formats; everything else is invalid (-1).
 */
START_TEST(test_dates)
{
    static const struct {
        const char *in;
        int64_t want;
    } cases[] = {
        {D0, T0},
        {"Sunday, 06-Nov-94 08:49:37 GMT", T0},
        {"Sun Nov  6 08:49:37 1994", T0},
        {"Sun Nov 06 08:49:37 1994", T0},
        {"  " D0 "  ", T0},
        {"sun, 06 nov 1994 08:49:37 gmt", T0},
        {"Thu, 01 Jan 1970 00:00:00 GMT", 0},
        {"Wed, 31 Dec 1969 23:59:59 GMT", 0}, /* before the epoch: clamped, never -1 */
        {"Tue, 29 Feb 2000 12:00:00 GMT", 951825600},
        {"Fri, 31 Dec 9999 23:59:59 GMT", 253402300799LL},
        {"Thursday, 01-Jan-70 00:00:00 GMT", 0},
        {"Saturday, 01-Jan-00 00:00:00 GMT", 946684800}, /* two-digit 00 is 2000 */
        {"Sun, 06 Nov 1994 08:49:60 GMT", T0 + 23},      /* leap second */
        {"", -1},
        {"0", -1},
        {"-1", -1},
        {"Sun, 06 Nov 1994 08:49:37 UTC", -1},
        {"Sun, 6 Nov 1994 08:49:37 GMT", -1},
        {"Sun, 06 Nov 94 08:49:37 GMT", -1},
        {"Sun, 06 Nov 1994 24:00:00 GMT", -1},
        {"Sun, 06 Nov 1994 08:60:00 GMT", -1},
        {"Sun, 32 Nov 1994 08:49:37 GMT", -1},
        {"Thu, 29 Feb 2001 12:00:00 GMT", -1},
        {"Sun, 06 Foo 1994 08:49:37 GMT", -1},
        {"Xyz, 06 Nov 1994 08:49:37 GMT", -1},
        {D0 " x", -1},
        {"Sun,06 Nov 1994 08:49:37 GMT", -1},
        {"Sun Nov 6 08:49:37 1994", -1},
        {"Sunday, 06-Nov-1994 08:49:37 GMT", -1},
        {"Sun, 06 Nov 1994 08:49 GMT", -1},
    };
    char out[32];

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        int64_t got = cache_policy_parse_http_date(cases[i].in, strlen(cases[i].in));
        ck_assert_msg(got == cases[i].want, "%s: got %lld", cases[i].in, (long long)got);
    }
    ck_assert_int_eq(cache_policy_parse_http_date(NULL, 0), -1);
    /* Not NUL-terminated: the length is what counts. */
    ck_assert_int_eq(cache_policy_parse_http_date(D0 "GARBAGE", strlen(D0)), T0);

    ck_assert_uint_eq(cache_policy_format_http_date(T0, out), 29);
    ck_assert_str_eq(out, D0);
    cache_policy_format_http_date(0, out);
    ck_assert_str_eq(out, "Thu, 01 Jan 1970 00:00:00 GMT");
    cache_policy_format_http_date(951825600, out);
    ck_assert_str_eq(out, "Tue, 29 Feb 2000 12:00:00 GMT");
}
END_TEST

/* ------------------------------------------------------------------------------------------------
 * RFC 9111 5.2 + 4.2.1: Cache-Control parsing; case, whitespace, quoting, unknown directives,
 * duplicates (most restrictive) and invalid values.
 */
#define ABS CACHE_CC_ABSENT
#define INV CACHE_CC_INVALID

START_TEST(test_cc_response)
{
    static const struct {
        const char *spec;
        unsigned flags;
        int64_t max_age, s_maxage, swr, sie;
        size_t nc_fields, priv_fields;
    } cases[] = {
        {"Cache-Control: max-age=60", 0, 60, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: MAX-AGE=60", 0, 60, ABS, ABS, ABS, 0, 0},
        {"Cache-Control:  max-age = 60 ", 0, 60, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: max-age=\"60\"", 0, 60, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: max-age=60, max-age=60", 0, 60, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: max-age=60, max-age=120", 0, INV, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: max-age=abc", 0, INV, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: max-age", 0, INV, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: max-age=-1", 0, INV, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: max-age=60 junk", 0, INV, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: max-age=\"6\"0", 0, INV, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: max-age=99999999999999999999", 0, CACHE_DELTA_MAX, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: no-cache=\"Set-Cookie, X-Foo\", max-age=10", CACHE_CC_NO_CACHE, 10, ABS, ABS, ABS, 1,
         0},
        {"Cache-Control: no-cache=Set-Cookie", CACHE_CC_NO_CACHE, ABS, ABS, ABS, ABS, 1, 0},
        {"Cache-Control: private=\"set-cookie\"", CACHE_CC_PRIVATE, ABS, ABS, ABS, ABS, 0, 1},
        {"Cache-Control: foo=\"a,b\", public", CACHE_CC_PUBLIC, ABS, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: foo=\"a\\\"b,\", max-age=5", 0, 5, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: public=yes", 0, ABS, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: no-store,no-cache,must-revalidate,proxy-revalidate,must-understand,immutable,"
         "no-transform",
         CACHE_CC_NO_STORE | CACHE_CC_NO_CACHE | CACHE_CC_MUST_REVALIDATE | CACHE_CC_PROXY_REVALIDATE |
             CACHE_CC_MUST_UNDERSTAND | CACHE_CC_IMMUTABLE | CACHE_CC_NO_TRANSFORM,
         ABS, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: stale-while-revalidate=30, stale-if-error=600", 0, ABS, ABS, 30, 600, 0, 0},
        {"Cache-Control: stale-while-revalidate=30, stale-while-revalidate=10", 0, ABS, ABS, 10, ABS, 0, 0},
        {"Cache-Control: stale-while-revalidate=x, stale-if-error", 0, ABS, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: ,,, max-age=1 ,,", 0, 1, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: s-maxage=5, max-age=1", 0, 1, 5, ABS, ABS, 0, 0},
        {"Cache-Control: s-maxage=5, s-maxage=6", 0, ABS, INV, ABS, ABS, 0, 0},
        {"Cache-Control: max-age=60\ncache-control: no-cache", CACHE_CC_NO_CACHE, 60, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: =5, max-age=7", 0, 7, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: max-age=5, only-if-cached, max-stale", 0, 5, ABS, ABS, ABS, 0, 0},
        {"Cache-Control: no-cache=\"a\",no-cache=\"b\",no-cache=\"c\",no-cache=\"d\",no-cache=\"e\"",
         CACHE_CC_NO_CACHE | CACHE_CC_FIELDS_OVERFLOW, ABS, ABS, ABS, ABS, 4, 0},
        {"Pragma: no-cache", 0, ABS, ABS, ABS, ABS, 0, 0}, /* Pragma is a request thing */
    };
    struct cdn_http_header h[MAXH];
    struct cache_cc cc;

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        size_t n = hdrs(cases[i].spec, h);

        cache_policy_parse_cc(h, n, false, &cc);
        ck_assert_msg(cc.flags == cases[i].flags, "%s: flags %x", cases[i].spec, cc.flags);
        ck_assert_msg(cc.max_age == cases[i].max_age, "%s: max-age %lld", cases[i].spec,
                      (long long)cc.max_age);
        ck_assert_msg(cc.s_maxage == cases[i].s_maxage, "%s: s-maxage", cases[i].spec);
        ck_assert_msg(cc.stale_while_revalidate == cases[i].swr, "%s: swr", cases[i].spec);
        ck_assert_msg(cc.stale_if_error == cases[i].sie, "%s: sie", cases[i].spec);
        ck_assert_msg(cc.num_no_cache_fields == cases[i].nc_fields, "%s: no-cache fields", cases[i].spec);
        ck_assert_msg(cc.num_private_fields == cases[i].priv_fields, "%s: private fields", cases[i].spec);
    }
    /* The field list points into the header value, between the quotes. */
    hdrs("Cache-Control: no-cache=\"Set-Cookie, X-Foo\"", h);
    cache_policy_parse_cc(h, 1, false, &cc);
    ck_assert_uint_eq(cc.no_cache_fields[0].n, strlen("Set-Cookie, X-Foo"));
    ck_assert_int_eq(memcmp(cc.no_cache_fields[0].p, "Set-Cookie, X-Foo", cc.no_cache_fields[0].n), 0);
}
END_TEST

/* RFC 9111 5.2.1 (request directives) and 5.4 (Pragma). */
START_TEST(test_cc_request)
{
    static const struct {
        const char *spec;
        unsigned flags;
        int64_t max_age, max_stale, min_fresh, sie;
        bool auth;
    } cases[] = {
        {"Cache-Control: max-age=0", 0, 0, ABS, ABS, ABS, false},
        {"Cache-Control: max-age=10, max-age=5", 0, 5, ABS, ABS, ABS, false},
        {"Cache-Control: max-age=x", 0, 0, ABS, ABS, ABS, false},
        {"Cache-Control: max-stale", CACHE_CC_MAX_STALE_ANY, ABS, ABS, ABS, ABS, false},
        {"Cache-Control: max-stale=30", 0, ABS, 30, ABS, ABS, false},
        {"Cache-Control: max-stale=30, max-stale=10", 0, ABS, 10, ABS, ABS, false},
        {"Cache-Control: max-stale=x", 0, ABS, ABS, ABS, ABS, false},
        {"Cache-Control: min-fresh=10, min-fresh=20", 0, ABS, ABS, 20, ABS, false},
        {"Cache-Control: min-fresh=x", 0, ABS, ABS, CACHE_DELTA_MAX, ABS, false},
        {"Cache-Control: only-if-cached", CACHE_CC_ONLY_IF_CACHED, ABS, ABS, ABS, ABS, false},
        {"Cache-Control: no-cache", CACHE_CC_NO_CACHE, ABS, ABS, ABS, ABS, false},
        {"Cache-Control: no-store", CACHE_CC_NO_STORE, ABS, ABS, ABS, ABS, false},
        {"Cache-Control: stale-if-error=60", 0, ABS, ABS, ABS, 60, false},
        {"Cache-Control: private, public, s-maxage=5", 0, ABS, ABS, ABS, ABS, false}, /* response-only */
        {"Pragma: no-cache", CACHE_CC_NO_CACHE, ABS, ABS, ABS, ABS, false},
        {"Pragma: foo, No-Cache", CACHE_CC_NO_CACHE, ABS, ABS, ABS, ABS, false},
        {"Pragma: no-cache\nCache-Control: max-age=5", 0, 5, ABS, ABS, ABS, false},
        {"Authorization: Basic eDp5", 0, ABS, ABS, ABS, ABS, true},
    };
    struct cdn_http_header h[MAXH];
    struct cache_request_info req;

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        parse_req(cases[i].spec, h, &req);
        ck_assert_msg(req.cc.flags == cases[i].flags, "%s: flags %x", cases[i].spec, req.cc.flags);
        ck_assert_msg(req.cc.max_age == cases[i].max_age, "%s: max-age", cases[i].spec);
        ck_assert_msg(req.cc.max_stale == cases[i].max_stale, "%s: max-stale", cases[i].spec);
        ck_assert_msg(req.cc.min_fresh == cases[i].min_fresh, "%s: min-fresh", cases[i].spec);
        ck_assert_msg(req.cc.stale_if_error == cases[i].sie, "%s: sie", cases[i].spec);
        ck_assert_msg(req.has_authorization == cases[i].auth, "%s: auth", cases[i].spec);
    }
}
END_TEST

/* ------------------------------------------------------------------------------------------------
 * RFC 9213 2.1-2.2: a valid, non-empty targeted field replaces Cache-Control and Expires; it is a
 * Structured Field Dictionary, so parse errors make it ignored, and the last duplicate key wins.
 */
START_TEST(test_targeted)
{
    static const struct cache_policy_cfg example = {0.1, 86400, "Example-Cache-Control"};
    static const struct {
        const struct cache_policy_cfg *cfg;
        const char *spec;
        bool targeted;
        unsigned flags;
        int64_t max_age, s_maxage, swr;
        bool has_expires;
    } cases[] = {
        {NULL, "Cache-Control: max-age=60\nCDN-Cache-Control: max-age=600", true, 0, 600, ABS, ABS, false},
        {NULL, "Cache-Control: no-store\nCDN-Cache-Control: none", true, 0, ABS, ABS, ABS, false},
        {NULL, "Cache-Control: max-age=60\nCDN-Cache-Control: Max-Age=600", false, 0, 60, ABS, ABS, false},
        {NULL, "Cache-Control: max-age=60\nCDN-Cache-Control: ", false, 0, 60, ABS, ABS, false},
        {NULL, "Cache-Control: max-age=60\nCDN-Cache-Control: max-age=600,", false, 0, 60, ABS, ABS, false},
        {NULL, "CDN-Cache-Control: max-age=1.5", true, 0, INV, ABS, ABS, false},
        {NULL, "CDN-Cache-Control: max-age=\"60\"", true, 0, INV, ABS, ABS, false},
        {NULL, "CDN-Cache-Control: max-age=-5", true, 0, INV, ABS, ABS, false},
        {NULL, "CDN-Cache-Control: max-age=60, max-age=120", true, 0, 120, ABS, ABS, false},
        {NULL, "CDN-Cache-Control: no-store=?0, max-age=5", true, 0, 5, ABS, ABS, false},
        {NULL, "CDN-Cache-Control: no-store, no-store=?0", true, 0, ABS, ABS, ABS, false},
        {NULL, "CDN-Cache-Control: private=\"set-cookie\"", true, CACHE_CC_PRIVATE, ABS, ABS, ABS, false},
        {NULL, "CDN-Cache-Control: max-age=60;foo=bar, s-maxage=(1 2)", true, 0, 60, INV, ABS, false},
        {NULL, "CDN-Cache-Control: max-age=60, x=:AAEC:, y=?1, z=tok/en", true, 0, 60, ABS, ABS, false},
        {NULL, "CDN-Cache-Control: max-age=60 x", false, 0, ABS, ABS, ABS, false},
        {NULL, "CDN-Cache-Control: max-age=\"unterminated", false, 0, ABS, ABS, ABS, false},
        {NULL, "Expires: " D60 "\nCDN-Cache-Control: s-maxage=10", true, 0, ABS, 10, ABS, false},
        {NULL, "Expires: " D60 "\nCDN-Cache-Control: max-age=60 x", false, 0, ABS, ABS, ABS, true},
        {NULL, "CDN-Cache-Control: max-age=60\nCDN-Cache-Control: stale-while-revalidate=30", true, 0, 60,
         ABS, 30, false},
        {&example, "Example-Cache-Control: max-age=5\nCDN-Cache-Control: max-age=600", true, 0, 5, ABS, ABS,
         false},
        {NULL, "Example-Cache-Control: max-age=5\nCDN-Cache-Control: max-age=600", true, 0, 600, ABS, ABS,
         false},
        {&example, "Example-Cache-Control: bad(\nCDN-Cache-Control: max-age=600", true, 0, 600, ABS, ABS,
         false},
        {&example, "Example-Cache-Control: max-age=5\nCache-Control: max-age=7", true, 0, 5, ABS, ABS, false},
    };
    struct cdn_http_header h[MAXH];
    struct cache_response_info res;

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        parse_res(cases[i].cfg, 200, cases[i].spec, h, &res);
        ck_assert_msg(res.targeted == cases[i].targeted, "%s: targeted", cases[i].spec);
        ck_assert_msg(res.cc.flags == cases[i].flags, "%s: flags %x", cases[i].spec, res.cc.flags);
        ck_assert_msg(res.cc.max_age == cases[i].max_age, "%s: max-age %lld", cases[i].spec,
                      (long long)res.cc.max_age);
        ck_assert_msg(res.cc.s_maxage == cases[i].s_maxage, "%s: s-maxage", cases[i].spec);
        ck_assert_msg(res.cc.stale_while_revalidate == cases[i].swr, "%s: swr", cases[i].spec);
        ck_assert_msg(res.has_expires == cases[i].has_expires, "%s: expires", cases[i].spec);
    }
}
END_TEST

/* ------------------------------------------------------------------------------------------------
 * RFC 9111 3 (+ 3.5, 5.2.2.3, 4.1): may the response be stored? NULL = yes, else the reason.
 */
START_TEST(test_storable)
{
    static const struct {
        const char *method;
        int status;
        const char *req, *res;
        const char *why;
    } cases[] = {
        {"GET", 200, "", "", NULL}, /* heuristically cacheable */
        {"HEAD", 200, "", "Cache-Control: max-age=60", "method"},
        {"POST", 200, "", "Cache-Control: max-age=60", "method"},
        {"get", 200, "", "Cache-Control: max-age=60", "method"},
        {"GET", 100, "", "Cache-Control: max-age=60", "status"},
        {"GET", 206, "", "Cache-Control: max-age=60", "status"},
        {"GET", 304, "", "Cache-Control: max-age=60", "status"},
        {"GET", 302, "", "", "no-freshness"},
        {"GET", 302, "", "Cache-Control: max-age=60", NULL},
        {"GET", 302, "", "Cache-Control: public", NULL},
        {"GET", 307, "", "", "no-freshness"},
        {"GET", 500, "", "", "no-freshness"},
        {"GET", 500, "", "Expires: " D60, NULL},
        {"GET", 500, "", "Expires: 0", NULL}, /* stored, but already stale */
        {"GET", 503, "", "Cache-Control: s-maxage=5", NULL},
        {"GET", 599, "", "Cache-Control: max-age=60", NULL},
        {"GET", 599, "", "Cache-Control: max-age=60, must-understand", "status"},
        {"GET", 203, "", "", NULL},
        {"GET", 204, "", "", NULL},
        {"GET", 300, "", "", NULL},
        {"GET", 301, "", "", NULL},
        {"GET", 308, "", "", NULL},
        {"GET", 404, "", "", NULL},
        {"GET", 405, "", "", NULL},
        {"GET", 410, "", "", NULL},
        {"GET", 414, "", "", NULL},
        {"GET", 501, "", "", NULL},
        {"GET", 200, "", "Cache-Control: no-store", "no-store"},
        {"GET", 200, "", "Cache-Control: no-store, must-understand", NULL},
        {"GET", 200, "Cache-Control: no-store", "Cache-Control: max-age=60", "no-store"},
        {"GET", 200, "", "Cache-Control: private", "private"},
        {"GET", 200, "", "Cache-Control: private=\"x-user\", max-age=60", "private"},
        {"GET", 200, "Authorization: Basic eDp5", "Cache-Control: max-age=60", "auth"},
        {"GET", 200, "Authorization: Basic eDp5", "Cache-Control: max-age=60, public", NULL},
        {"GET", 200, "Authorization: Basic eDp5", "Cache-Control: s-maxage=60", NULL},
        {"GET", 200, "Authorization: Basic eDp5", "Cache-Control: max-age=60, must-revalidate", NULL},
        {"GET", 200, "", "Vary: *", "vary-star"},
        {"GET", 200, "", "Vary: Accept, *", "vary-star"},
        {"GET", 200, "", "Vary: Accept\nVary: *", "vary-star"},
        {"GET", 200, "", "Vary: a b", "vary-star"},
        {"GET", 200, "", "Vary: Accept-Encoding", NULL},
        {"GET", 200, "", "Cache-Control: no-cache", NULL}, /* stored, revalidated on every use */
        {"GET", 200, "", "Cache-Control: max-age=60\nCDN-Cache-Control: no-store", "no-store"},
        {"GET", 200, "", "Cache-Control: no-store\nCDN-Cache-Control: max-age=60", NULL},
        {"GET", 302, "", "Cache-Control: no-store\nCDN-Cache-Control: none", "no-freshness"},
        {"GET", 302, "", "Expires: " D60 "\nCDN-Cache-Control: none", "no-freshness"},
        {"GET", 200, "",
         "Cache-Control: no-cache=\"a\",no-cache=\"b\",no-cache=\"c\",no-cache=\"d\",no-cache=\"e\"",
         "cc-fields"},
    };
    struct cdn_http_header rq[MAXH], rs[MAXH];
    struct cache_request_info req;
    struct cache_response_info res;
    const char *why;

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        bool ok;

        parse_req(cases[i].req, rq, &req);
        parse_res(NULL, cases[i].status, cases[i].res, rs, &res);
        why = "untouched";
        ok = cache_policy_is_storable(cases[i].method, strlen(cases[i].method), &req, &res, &why);
        ck_assert_msg(ok == (cases[i].why == NULL), "%s %d [%s]: storable=%d (%s)", cases[i].method,
                      cases[i].status, cases[i].res, ok, why ? why : "-");
        if (cases[i].why == NULL)
            ck_assert_ptr_null(why);
        else
            ck_assert_str_eq(why, cases[i].why);
    }
    /* reason may be NULL */
    parse_res(NULL, 200, "", rs, &res);
    ck_assert(cache_policy_is_storable("GET", 3, &req, &res, NULL));
}
END_TEST

/* ------------------------------------------------------------------------------------------------
 * RFC 9111 4.2.1 (explicit lifetime, precedence, invalid Expires) and 4.2.2 (heuristics).
 */
START_TEST(test_freshness_lifetime)
{
    static const struct cache_policy_cfg small = {0.5, 100, NULL};
    static const struct {
        const struct cache_policy_cfg *cfg;
        int status;
        const char *spec;
        int64_t response_time; /* relative to T0 */
        int64_t want;
    } cases[] = {
        {NULL, 200, "Cache-Control: s-maxage=100, max-age=10", 0, 100},
        {NULL, 200, "Date: " D0 "\nCache-Control: max-age=10\nExpires: " D60, 0, 10},
        {NULL, 200, "Date: " D0 "\nExpires: " D60, 0, 60},
        {NULL, 200, "Expires: " D60, 30, 30}, /* no Date: the receive time stands in */
        {NULL, 200, "Date: " D0 "\nExpires: 0", 0, 0},
        {NULL, 200, "Date: " D0 "\nExpires: garbage", 0, 0},
        {NULL, 200, "Date: " D0 "\nExpires: " DM60, 0, 0},
        {NULL, 200, "Date: " D0 "\nExpires: " D60 "\nExpires: " D100, 0, 0},
        {NULL, 200, "Date: " D0 "\nExpires: " D60 "\nExpires: " D60, 0, 60},
        {NULL, 200, "Date: " D0 "\nCache-Control: max-age=abc\nExpires: " D60, 0, 0},
        {NULL, 200, "Cache-Control: s-maxage=x, max-age=60", 0, 0},
        {NULL, 200, "Cache-Control: max-age=60, max-age=70", 0, 0},
        {NULL, 200, "Date: " D0 "\nLast-Modified: " DM2H, 0, 720},
        {NULL, 200, "Date: " D0 "\nLast-Modified: " DM1D, 0, 8640},
        {NULL, 200, "Date: " D0 "\nLast-Modified: " DM31D, 0, 86400}, /* capped */
        {NULL, 302, "Date: " D0 "\nLast-Modified: " DM2H, 0, 0},
        {NULL, 302, "Date: " D0 "\nLast-Modified: " DM2H "\nCache-Control: public", 0, 720},
        {NULL, 200, "Date: " D0, 0, 0},
        {NULL, 200, "Date: " D0 "\nLast-Modified: " D60, 0, 0},
        {NULL, 200, "Last-Modified: " DM2H, 0, 720},
        {NULL, 200, "Date: " D0 "\nLast-Modified: garbage", 0, 0},
        {NULL, 200, "Date: " D0 "\nLast-Modified: " DM2H "\nCache-Control: max-age=5", 0, 5},
        {NULL, 200, "Date: " D0 "\nLast-Modified: " DM2H "\nExpires: 0", 0, 0}, /* explicit beats heuristic */
        {&small, 200, "Date: " D0 "\nLast-Modified: " DM2H, 0, 100},
        {NULL, 200, "Cache-Control: max-age=60\nCDN-Cache-Control: max-age=600", 0, 600},
        {NULL, 200, "Date: " D0 "\nExpires: " D60 "\nLast-Modified: " DM2H "\nCDN-Cache-Control: none", 0,
         720},
        {NULL, 200, "Cache-Control: max-age=99999999999", 0, CACHE_DELTA_MAX},
    };
    struct cdn_http_header h[MAXH];
    struct cache_response_info res;

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        int64_t got;

        parse_res(NULL, cases[i].status, cases[i].spec, h, &res);
        got = cache_policy_freshness_lifetime(cases[i].cfg, &res, T0 + cases[i].response_time);
        ck_assert_msg(got == cases[i].want, "%s: lifetime %lld", cases[i].spec, (long long)got);
    }
}
END_TEST

/* ------------------------------------------------------------------------------------------------
 * RFC 9111 4.2.3 (age arithmetic) and 5.1 (Age field: first member, invalid ignored, 2^31 cap).
 */
START_TEST(test_current_age)
{
    static const struct {
        const char *spec;
        int64_t req, resp, now; /* relative to T0 */
        int64_t want;
    } cases[] = {
        {"Date: " D0, 0, 0, 0, 0},
        {"Date: " D0, 0, 0, 100, 100},
        {"Date: " DM60, 0, 0, 0, 60},   /* apparent age */
        {"Date: " DM60, 0, 0, 40, 100}, /* + resident time */
        {"Date: " D0 "\nAge: 30", 0, 0, 0, 30},
        {"Date: " D0 "\nAge: 30", -5, 0, 0, 35}, /* corrected_age_value adds the response delay */
        {"Date: " DM60 "\nAge: 30", -5, 0, 0, 60},
        {"Date: " D100, 0, 0, 0, 0},            /* Date in the future: apparent age 0 */
        {"Date: " D0 "\nAge: abc", 0, 0, 0, 0}, /* invalid: ignored */
        {"Date: " D0 "\nAge: -5", 0, 0, 0, 0},
        {"Date: " D0 "\nAge: 10, 20", 0, 0, 0, 10},
        {"Date: " D0 "\nAge: 10\nAge: 20", 0, 0, 0, 10},
        {"Date: " D0 "\nAge: 99999999999", 0, 0, 0, CACHE_DELTA_MAX},
        {"Date: " D0 "\nAge: 2147483000", 0, 0, 10000, CACHE_DELTA_MAX},
        {"", 0, 0, 10, 10}, /* no Date: the receive time */
        {"Date: garbage", 0, 0, 10, 10},
        {"Date: " D0, 0, 50, 20, 50}, /* now before response_time: resident time 0 */
        {"Date: " D0, 10, 0, 0, 0},
    };
    struct cdn_http_header h[MAXH];
    struct cache_response_info res;

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        int64_t got;

        parse_res(NULL, 200, cases[i].spec, h, &res);
        got = cache_policy_current_age(&res, T0 + cases[i].req, T0 + cases[i].resp, T0 + cases[i].now);
        ck_assert_msg(got == cases[i].want, "%s (%lld/%lld/%lld): age %lld", cases[i].spec,
                      (long long)cases[i].req, (long long)cases[i].resp, (long long)cases[i].now,
                      (long long)got);
    }
    /* RFC 9111 5.1: the Age value sent. */
    ck_assert_int_eq(cache_policy_age_value(-5), 0);
    ck_assert_int_eq(cache_policy_age_value(10), 10);
    ck_assert_int_eq(cache_policy_age_value(1LL << 40), 2147483648LL);
}
END_TEST

/* ------------------------------------------------------------------------------------------------
 * RFC 9111 4 + 4.2.4 + 5.2.1 + 5.2.2.2/8/10, RFC 5861 3: how a stored response may be used.
 * Stored: Date T0, requested and received at T0; `age` is `now - T0`.
 */
START_TEST(test_decide)
{
    static const struct {
        const char *res, *req;
        int64_t age;
        enum cache_use use;
        const char *why;
    } cases[] = {
        {"Cache-Control: max-age=60", "", 10, CACHE_USE_FRESH, "fresh"},
        {"Cache-Control: max-age=60", "", 59, CACHE_USE_FRESH, "fresh"},
        {"Cache-Control: max-age=60", "", 60, CACHE_USE_REVALIDATE, "stale"},
        {"Cache-Control: max-age=60, no-cache", "", 10, CACHE_USE_REVALIDATE, "no-cache"},
        {"Cache-Control: max-age=60, no-cache=\"set-cookie\"", "", 10, CACHE_USE_REVALIDATE, "no-cache"},
        {"Cache-Control: max-age=60", "Cache-Control: no-cache", 10, CACHE_USE_REVALIDATE,
         "request-no-cache"},
        {"Cache-Control: max-age=60", "Pragma: no-cache", 10, CACHE_USE_REVALIDATE, "request-no-cache"},
        {"Cache-Control: max-age=60", "Cache-Control: max-age=5", 10, CACHE_USE_REVALIDATE,
         "request-max-age"},
        {"Cache-Control: max-age=60", "Cache-Control: max-age=10", 10, CACHE_USE_FRESH, "fresh"},
        {"Cache-Control: max-age=60", "Cache-Control: max-age=0", 0, CACHE_USE_FRESH, "fresh"},
        {"Cache-Control: max-age=60", "Cache-Control: min-fresh=20", 50, CACHE_USE_REVALIDATE, "min-fresh"},
        {"Cache-Control: max-age=60", "Cache-Control: min-fresh=5", 50, CACHE_USE_FRESH, "fresh"},
        {"Cache-Control: max-age=60", "Cache-Control: max-stale", 1000, CACHE_USE_STALE, "max-stale"},
        {"Cache-Control: max-age=60", "Cache-Control: max-stale=30", 80, CACHE_USE_STALE, "max-stale"},
        {"Cache-Control: max-age=60", "Cache-Control: max-stale=30", 90, CACHE_USE_STALE, "max-stale"},
        {"Cache-Control: max-age=60", "Cache-Control: max-stale=30", 100, CACHE_USE_REVALIDATE, "stale"},
        {"Cache-Control: max-age=60, must-revalidate", "Cache-Control: max-stale", 80, CACHE_USE_REVALIDATE,
         "must-revalidate"},
        {"Cache-Control: max-age=60, proxy-revalidate", "Cache-Control: max-stale", 80, CACHE_USE_REVALIDATE,
         "must-revalidate"},
        {"Cache-Control: s-maxage=60", "Cache-Control: max-stale", 80, CACHE_USE_REVALIDATE,
         "must-revalidate"},
        {"Cache-Control: max-age=60, stale-while-revalidate=30", "", 80, CACHE_USE_STALE_REVALIDATE,
         "stale-while-revalidate"},
        {"Cache-Control: max-age=60, stale-while-revalidate=30", "", 90, CACHE_USE_STALE_REVALIDATE,
         "stale-while-revalidate"},
        {"Cache-Control: max-age=60, stale-while-revalidate=30", "", 91, CACHE_USE_REVALIDATE, "stale"},
        {"Cache-Control: max-age=60, stale-while-revalidate=30", "Cache-Control: no-cache", 80,
         CACHE_USE_REVALIDATE, "request-no-cache"},
        {"Cache-Control: max-age=60, stale-while-revalidate=30, must-revalidate", "", 80,
         CACHE_USE_REVALIDATE, "must-revalidate"},
        {"Cache-Control: s-maxage=60, stale-while-revalidate=30", "", 80, CACHE_USE_REVALIDATE,
         "must-revalidate"},
        {"Cache-Control: max-age=60, stale-while-revalidate=30", "Cache-Control: max-stale", 80,
         CACHE_USE_STALE_REVALIDATE, "stale-while-revalidate"},
        {"Cache-Control: max-age=60, stale-while-revalidate=30", "Cache-Control: max-stale", 500,
         CACHE_USE_STALE, "max-stale"},
        {"Cache-Control: max-age=60, stale-while-revalidate=0", "", 60, CACHE_USE_REVALIDATE, "stale"},
        {"Cache-Control: max-age=600\nCDN-Cache-Control: max-age=10", "", 20, CACHE_USE_REVALIDATE, "stale"},
        {"Cache-Control: no-cache\nCDN-Cache-Control: max-age=600", "", 20, CACHE_USE_FRESH, "fresh"},
        {"Cache-Control: max-age=600\nCDN-Cache-Control: max-age=60, stale-while-revalidate=60", "", 100,
         CACHE_USE_STALE_REVALIDATE, "stale-while-revalidate"},
        {"Cache-Control: max-age=abc", "", 0, CACHE_USE_REVALIDATE, "stale"},
        {"Cache-Control: max-age=60", "Cache-Control: only-if-cached", 100, CACHE_USE_REVALIDATE, "stale"},
    };
    struct cdn_http_header rq[MAXH], rs[MAXH];
    struct cache_request_info req;
    struct cache_response_info res;
    struct cache_decision d;

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        enum cache_use use;

        parse_req(cases[i].req, rq, &req);
        parse_res(NULL, 200, cases[i].res, rs, &res);
        use = cache_policy_decide(NULL, &res, T0, T0, &req, T0 + cases[i].age, &d);
        ck_assert_msg(use == cases[i].use && d.use == use, "%s | %s | age %lld: use %d (%s)", cases[i].res,
                      cases[i].req, (long long)cases[i].age, use, d.why);
        ck_assert_msg(strcmp(d.why, cases[i].why) == 0, "%s | %s: why %s", cases[i].res, cases[i].req, d.why);
        ck_assert_int_eq(d.age, cases[i].age);
        ck_assert_int_eq(d.ttl, d.lifetime - d.age);
    }
    /* The ttl reported for Cache-Status. */
    parse_req("", rq, &req);
    parse_res(NULL, 200, "Date: " D0 "\nCache-Control: max-age=60", rs, &res);
    cache_policy_decide(NULL, &res, T0, T0, &req, T0 + 20, &d);
    ck_assert_int_eq(d.lifetime, 60);
    ck_assert_int_eq(d.ttl, 40);
    cache_policy_decide(NULL, &res, T0, T0, &req, T0 + 100, &d);
    ck_assert_int_eq(d.ttl, -40);
}
END_TEST

/* RFC 5861 4 + RFC 9111 4.2.4: serving stale on errors. Stored at T0 with `age` = now - T0. */
START_TEST(test_stale_if_error)
{
    static const struct {
        const char *res, *req;
        int64_t age;
        int status;
        bool ok;
    } cases[] = {
        {"Cache-Control: max-age=60, stale-if-error=300", "", 100, 503, true},
        {"Cache-Control: max-age=60, stale-if-error=300", "", 100, 500, true},
        {"Cache-Control: max-age=60, stale-if-error=300", "", 100, 502, true},
        {"Cache-Control: max-age=60, stale-if-error=300", "", 100, 504, true},
        {"Cache-Control: max-age=60, stale-if-error=300", "", 100, 0, true}, /* connection failure */
        {"Cache-Control: max-age=60, stale-if-error=300", "", 100, 404, false},
        {"Cache-Control: max-age=60, stale-if-error=300", "", 100, 501, false},
        {"Cache-Control: max-age=60, stale-if-error=300", "", 360, 503, true},
        {"Cache-Control: max-age=60, stale-if-error=300", "", 361, 503, false},
        {"Cache-Control: max-age=60", "Cache-Control: stale-if-error=60", 100, 503, true},
        {"Cache-Control: max-age=60", "Cache-Control: stale-if-error=30", 100, 503, false},
        {"Cache-Control: max-age=60", "", 100, 503, false},
        {"Cache-Control: max-age=60", "Cache-Control: max-stale", 100, 503, true},
        {"Cache-Control: max-age=60, stale-if-error=300, must-revalidate", "", 100, 503, false},
        {"Cache-Control: max-age=60, stale-if-error=300, proxy-revalidate", "", 100, 503, false},
        {"Cache-Control: s-maxage=60, stale-if-error=300", "", 100, 503, false},
        {"Cache-Control: s-maxage=60", "Cache-Control: stale-if-error=300", 100, 503, false},
        {"Cache-Control: max-age=60, no-cache", "", 10, 503, false},
        {"Cache-Control: max-age=60", "", 10, 502, true}, /* still fresh */
        {"Cache-Control: max-age=60", "Cache-Control: no-cache", 10, 0, true},
        {"Cache-Control: max-age=60, stale-if-error=0", "", 60, 503, false},
        {"Cache-Control: max-age=600\nCDN-Cache-Control: max-age=60, stale-if-error=100", "", 100, 503, true},
    };
    struct cdn_http_header rq[MAXH], rs[MAXH];
    struct cache_request_info req;
    struct cache_response_info res;
    struct cache_decision d;

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        parse_req(cases[i].req, rq, &req);
        parse_res(NULL, 200, cases[i].res, rs, &res);
        cache_policy_decide(NULL, &res, T0, T0, &req, T0 + cases[i].age, &d);
        ck_assert_msg(cache_policy_stale_if_error_ok(&res, &req, &d, cases[i].status) == cases[i].ok,
                      "%s | %s | age %lld status %d", cases[i].res, cases[i].req, (long long)cases[i].age,
                      cases[i].status);
    }
}
END_TEST

/* ------------------------------------------------------------------------------------------------
 * RFC 9111 4.1: Vary names, secondary keys and matching.
 */
START_TEST(test_vary_names)
{
    static const struct {
        const char *spec;
        bool ok;
        const char *names;
    } cases[] = {
        {"Vary: Accept-Encoding", true, "accept-encoding"},
        {"Vary: accept-language, Accept-Encoding", true, "accept-encoding,accept-language"},
        {"Vary: Accept-Encoding\nVary: Accept-Language, accept-encoding", true,
         "accept-encoding,accept-language"},
        {"Vary: b, a, ab, A", true, "a,ab,b"},
        {"", true, ""},
        {"Vary: ,", true, ""},
        {"Vary: *", false, NULL},
        {"Vary: Accept, *", false, NULL},
        {"Vary: a b", false, NULL},
        {"Vary: a;b", false, NULL},
    };
    struct cdn_http_header h[MAXH];
    struct cdn_buf b;

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        size_t n = hdrs(cases[i].spec, h);
        bool ok;

        cdn_buf_init(&b);
        ok = cache_policy_vary_names(h, n, &b);
        ck_assert_msg(ok == cases[i].ok, "%s", cases[i].spec);
        if (ok) {
            ck_assert_msg(buf_is(&b, cases[i].names), "%s: got '%.*s'", cases[i].spec, (int)b.len, bdata(&b));
        }
        cdn_buf_dispose(&b);
    }
}
END_TEST

START_TEST(test_vary_key)
{
    static const struct {
        const char *names, *req, *key;
    } cases[] = {
        {"accept-encoding", "Accept-Encoding: gzip", "accept-encoding=4:gzip\n"},
        {"accept-encoding", "", "accept-encoding!\n"},
        {"accept-encoding", "Accept-Encoding:", "accept-encoding=0:\n"},
        {"accept-encoding", "Accept-Encoding: gzip\naccept-encoding: br", "accept-encoding=7:gzip,br\n"},
        {"accept-encoding", "Accept-Encoding: gzip ,  br", "accept-encoding=7:gzip,br\n"},
        {"accept-encoding", "Accept-Encoding: gzip,,br,", "accept-encoding=7:gzip,br\n"},
        {"a,b", "A: x", "a=1:x\nb!\n"},
        {"x-q", "X-Q: \"a, b\" , c", "x-q=8:\"a, b\",c\n"},
        {"", "Accept-Encoding: gzip", ""},
    };
    struct cdn_http_header h[MAXH];
    struct cdn_buf b;

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        size_t n = hdrs(cases[i].req, h);

        cdn_buf_init(&b);
        cache_policy_vary_key(cases[i].names, strlen(cases[i].names), h, n, &b);
        ck_assert_msg(buf_is(&b, cases[i].key), "%s | %s: got '%.*s'", cases[i].names, cases[i].req,
                      (int)b.len, bdata(&b));
        cdn_buf_dispose(&b);
    }
}
END_TEST

/* Matching: the stored request (whose key is kept) against a presented request. */
START_TEST(test_vary_match)
{
    static const struct {
        const char *names, *stored_req, *req;
        bool match;
    } cases[] = {
        {"accept-encoding", "Accept-Encoding: gzip", "accept-encoding:   gzip ", true},
        {"accept-encoding", "Accept-Encoding: gzip", "Accept-Encoding: GZIP", false}, /* values keep case */
        {"accept-encoding", "Accept-Encoding: gzip", "", false},
        {"accept-encoding", "", "", true},
        {"accept-encoding", "Accept-Encoding:", "", false}, /* empty is not absent */
        {"accept-encoding", "Accept-Encoding:", "Accept-Encoding:", true},
        {"accept-encoding", "Accept-Encoding: gzip, br", "Accept-Encoding: gzip\nAccept-Encoding: br", true},
        {"accept-encoding", "Accept-Encoding: gzip, br", "Accept-Encoding: br, gzip", false},
        {"accept-encoding", "Accept-Encoding: gzip", "Accept-Encoding: gzip\nAccept-Language: de", true},
        {"accept-encoding,accept-language", "Accept-Encoding: gzip\nAccept-Language: de",
         "Accept-Language: de\nAccept-Encoding: gzip", true},
        {"accept-encoding,accept-language", "Accept-Encoding: gzip\nAccept-Language: de",
         "Accept-Language: fr\nAccept-Encoding: gzip", false},
        {"", "Accept-Encoding: gzip", "Accept-Encoding: br", true},
    };
    struct cdn_http_header sh[MAXH], h[MAXH];
    struct cdn_buf key;

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        size_t sn = hdrs(cases[i].stored_req, sh), n = hdrs(cases[i].req, h);

        cdn_buf_init(&key);
        cache_policy_vary_key(cases[i].names, strlen(cases[i].names), sh, sn, &key);
        ck_assert_msg(cache_policy_vary_match(cases[i].names, strlen(cases[i].names), h, n, bdata(&key),
                                              key.len) == cases[i].match,
                      "%s: [%s] vs [%s]", cases[i].names, cases[i].stored_req, cases[i].req);
        cdn_buf_dispose(&key);
    }
}
END_TEST

/* ------------------------------------------------------------------------------------------------
 * RFC 9111 3.1: what is not stored; 4.3.4 + 3.2: freshening with a 304.
 */
START_TEST(test_filter_headers)
{
    struct cdn_http_header h[MAXH], out[MAXH];
    struct cache_response_info res;
    size_t n, k;

    n = hdrs("Connection: close, X-Foo\n"
             "X-Foo: 1\n"
             "Keep-Alive: timeout=5\n"
             "Proxy-Authenticate: Basic\n"
             "Proxy-Authentication-Info: x\n"
             "Set-Cookie: a=1\n"
             "Cache-Control: max-age=60, no-cache=\"Set-Cookie\"\n"
             "Content-Type: text/plain\n"
             "!X-Custom-Hop: 1\n"
             "Upgrade: h2c\n"
             "Trailer: X\n"
             "Transfer-Encoding: chunked\n"
             "TE: trailers\n"
             "ETag: \"a\"",
             h);
    cache_policy_parse_response(NULL, 200, h, n, &res);
    k = cache_policy_filter_headers(h, n, &res.cc, out);
    ck_assert_str_eq(dump(out, k), "Cache-Control: max-age=60, no-cache=\"Set-Cookie\"\n"
                                   "Content-Type: text/plain\n"
                                   "ETag: \"a\"\n");
    /* Without directives only the hop-by-hop and proxy lines go. */
    k = cache_policy_filter_headers(h, n, NULL, out);
    ck_assert_uint_eq(k, 4);
    ck_assert_str_eq(dump(out, 1), "Set-Cookie: a=1\n");
    /* private="x" names fields too (for completeness; such a response is never stored). */
    n = hdrs("Cache-Control: private=\"x-user, x-id\"\nX-User: u\nX-Id: 1\nX-Other: 2", h);
    cache_policy_parse_response(NULL, 200, h, n, &res);
    k = cache_policy_filter_headers(h, n, &res.cc, out);
    ck_assert_str_eq(dump(out, k), "Cache-Control: private=\"x-user, x-id\"\nX-Other: 2\n");
}
END_TEST

START_TEST(test_merge_304)
{
    static const struct {
        const char *stored, *upd, *want;
    } cases[] = {
        {"Date: " D0
         "\nCache-Control: max-age=60\nETag: \"a\"\nContent-Length: 100\nContent-Type: text/plain\n"
         "Age: 5\nX-Old: 1",
         "Date: " D100 "\nCache-Control: max-age=120\nETag: \"a\"\nContent-Length: 0\nConnection: x-hop\n"
         "X-Hop: 1\nTransfer-Encoding: chunked\nKeep-Alive: timeout=5",
         "Content-Length: 100\nContent-Type: text/plain\nX-Old: 1\nDate: " D100
         "\nCache-Control: max-age=120\nETag: \"a\"\n"},
        {"Set-Cookie: a\nX-A: 1\nSet-Cookie: b", "set-cookie: c", "X-A: 1\nset-cookie: c\n"},
        {"Date: " D0 "\nAge: 10\nX-A: 1", "ETag: \"b\"",
         "X-A: 1\nETag: \"b\"\n"}, /* no Date/Age in the 304 */
        {"Date: " D0 "\nX-A: 1", "Age: 3\nDate: " D10, "X-A: 1\nAge: 3\nDate: " D10 "\n"},
        {"Content-Range: bytes 0-1/2\nX-A: 1", "Content-Range: bytes 0-9/10\n!X-B: 1",
         "Content-Range: bytes 0-1/2\n"
         "X-A: 1\n"},
        {"X-A: 1", "", "X-A: 1\n"},
        {"", "Cache-Control: max-age=5", "Cache-Control: max-age=5\n"},
    };
    struct cdn_http_header s[MAXH], u[MAXH], out[MAXH];
    int k;

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        size_t ns = hdrs(cases[i].stored, s), nu = hdrs(cases[i].upd, u);

        k = cache_policy_merge_304(s, ns, u, nu, out, MAXH);
        ck_assert_int_ge(k, 0);
        ck_assert_str_eq(dump(out, (size_t)k), cases[i].want);
    }
    /* Output limit. */
    {
        size_t ns = hdrs("X-A: 1\nX-B: 2", s), nu = hdrs("X-C: 3", u);

        ck_assert_int_eq(cache_policy_merge_304(s, ns, u, nu, out, 2), CDN_ELIMIT);
        ck_assert_int_eq(cache_policy_merge_304(s, ns, u, nu, out, 3), 3);
    }
}
END_TEST

/* ------------------------------------------------------------------------------------------------
 * RFC 9111 4.4: invalidation after unsafe methods. Request to example.com, path /a.
 */
START_TEST(test_invalidations)
{
    static const struct {
        const char *method;
        int status;
        const char *res;
        const char *want; /* paths joined with " " */
    } cases[] = {
        {"POST", 201, "Location: /b\nContent-Location: https://example.com/c", "/a /b /c"},
        {"GET", 200, "Location: /b", ""},
        {"HEAD", 200, "", ""},
        {"OPTIONS", 200, "", ""},
        {"TRACE", 200, "", ""},
        {"POST", 404, "Location: /b", ""},
        {"POST", 500, "", ""},
        {"POST", 302, "Location: /b", "/a /b"},
        {"POST", 200, "", "/a"},
        {"PUT", 204, "Location: http://other.com/x", "/a"},
        {"DELETE", 200, "Location: b", "/a"},
        {"PATCH", 200, "Location: /a\nContent-Location: /a", "/a"},
        {"POST", 201, "Location: //Example.COM/d#frag", "/a /d"},
        {"POST", 201, "Location: HTTPS://example.com", "/a /"},
        {"POST", 201, "Location: https://example.com:8443/x", "/a"},
        {"POST", 201, "Location: https://example.com?q", "/a"},
        {"POST", 201, "Location: /b?x=1", "/a /b?x=1"},
        {"POST", 201, "Location: ftp://example.com/x", "/a"},
        {"FOO", 200, "", "/a"}, /* unknown methods are unsafe */
        {"get", 200, "", "/a"}, /* methods are case-sensitive */
    };
    struct cdn_http_header h[MAXH];
    struct cache_str out[CACHE_INVALIDATE_MAX];
    char got[256];

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        size_t n = hdrs(cases[i].res, h), k, j, off = 0;

        k = cache_policy_invalidations(cases[i].method, strlen(cases[i].method), "example.com", 11, "/a", 2,
                                       cases[i].status, h, n, out);
        got[0] = '\0';
        for (j = 0; j < k; j++)
            off += (size_t)snprintf(got + off, sizeof(got) - off, "%s%.*s", j ? " " : "", (int)out[j].n,
                                    out[j].p);
        ck_assert_msg(strcmp(got, cases[i].want) == 0, "%s %d [%s]: got '%s'", cases[i].method,
                      cases[i].status, cases[i].res, got);
    }
}
END_TEST

/* ------------------------------------------------------------------------------------------------
 * RFC 9110 14.1-14.4: single byte ranges; 13.1.5: If-Range.
 */
START_TEST(test_parse_range)
{
    static const struct {
        const char *v;
        uint64_t size;
        enum cache_range want;
        uint64_t first, last;
    } cases[] = {
        {"bytes=0-99", 1000, CACHE_RANGE_PARTIAL, 0, 99},
        {"bytes=500-", 1000, CACHE_RANGE_PARTIAL, 500, 999},
        {"bytes=-100", 1000, CACHE_RANGE_PARTIAL, 900, 999},
        {"bytes=-2000", 1000, CACHE_RANGE_PARTIAL, 0, 999},
        {"bytes=900-2000", 1000, CACHE_RANGE_PARTIAL, 900, 999},
        {"bytes=999-999", 1000, CACHE_RANGE_PARTIAL, 999, 999},
        {"BYTES=0-1", 1000, CACHE_RANGE_PARTIAL, 0, 1},
        {" bytes=0-1 ", 1000, CACHE_RANGE_PARTIAL, 0, 1},
        {"bytes=0-99999999999999999999999", 1000, CACHE_RANGE_PARTIAL, 0, 999},
        {"bytes=1000-", 1000, CACHE_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=1000-2000", 1000, CACHE_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=-0", 1000, CACHE_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=99999999999999999999999-", 1000, CACHE_RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=5-1", 1000, CACHE_RANGE_NONE, 0, 0},
        {"bytes=0-1,5-6", 1000, CACHE_RANGE_NONE, 0, 0},
        {"bytes=0-1, 5-6", 1000, CACHE_RANGE_NONE, 0, 0},
        {"items=0-1", 1000, CACHE_RANGE_NONE, 0, 0},
        {"bytes=", 1000, CACHE_RANGE_NONE, 0, 0},
        {"bytes=a-b", 1000, CACHE_RANGE_NONE, 0, 0},
        {"bytes=1", 1000, CACHE_RANGE_NONE, 0, 0},
        {"bytes=-", 1000, CACHE_RANGE_NONE, 0, 0},
        {"bytes= 0-1", 1000, CACHE_RANGE_NONE, 0, 0},
        {"bytes=0-", 0, CACHE_RANGE_NONE, 0, 0},
        {"bytes=-5", 0, CACHE_RANGE_NONE, 0, 0},
    };

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        uint64_t first = 7, last = 7;
        enum cache_range r =
            cache_policy_parse_range(cases[i].v, strlen(cases[i].v), cases[i].size, &first, &last);

        ck_assert_msg(r == cases[i].want, "%s: %d", cases[i].v, r);
        if (r == CACHE_RANGE_PARTIAL)
            ck_assert_msg(first == cases[i].first && last == cases[i].last, "%s: %llu-%llu", cases[i].v,
                          (unsigned long long)first, (unsigned long long)last);
    }
}
END_TEST

START_TEST(test_range_if_range)
{
    static const char *const stored = "ETag: \"v1\"\nLast-Modified: " D0;
    static const struct {
        const char *method;
        int status;
        const char *res, *req;
        enum cache_range want;
    } cases[] = {
        {"GET", 200, stored, "Range: bytes=0-9", CACHE_RANGE_PARTIAL},
        {"GET", 200, stored, "Range: bytes=0-9\nIf-Range: \"v1\"", CACHE_RANGE_PARTIAL},
        {"GET", 200, stored, "Range: bytes=0-9\nIf-Range: \"v2\"", CACHE_RANGE_NONE},
        {"GET", 200, stored, "Range: bytes=0-9\nIf-Range: W/\"v1\"", CACHE_RANGE_NONE},
        {"GET", 200, stored, "Range: bytes=0-9\nIf-Range: " D0, CACHE_RANGE_PARTIAL},
        {"GET", 200, stored, "Range: bytes=0-9\nIf-Range: " D10, CACHE_RANGE_NONE},
        {"GET", 200, stored, "Range: bytes=0-9\nIf-Range: garbage", CACHE_RANGE_NONE},
        {"GET", 200, stored, "Range: bytes=5000-\nIf-Range: \"v1\"", CACHE_RANGE_UNSATISFIABLE},
        {"GET", 200, stored, "If-Range: \"v1\"", CACHE_RANGE_NONE},
        {"GET", 200, stored, "Range: bytes=0-9\nRange: bytes=0-9", CACHE_RANGE_NONE},
        {"HEAD", 200, stored, "Range: bytes=0-9", CACHE_RANGE_NONE},
        {"GET", 404, stored, "Range: bytes=0-9", CACHE_RANGE_NONE},
        {"GET", 200, "ETag: W/\"v1\"", "Range: bytes=0-9\nIf-Range: \"v1\"", CACHE_RANGE_NONE},
        {"GET", 200, "", "Range: bytes=0-9\nIf-Range: " D0, CACHE_RANGE_NONE},
    };
    struct cdn_http_header rq[MAXH], rs[MAXH];
    struct cache_response_info res;
    char cr[64];

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        size_t n = hdrs(cases[i].req, rq);
        uint64_t first, last;

        parse_res(NULL, cases[i].status, cases[i].res, rs, &res);
        ck_assert_msg(cache_policy_range(cases[i].method, strlen(cases[i].method), rq, n, &res, 1000, &first,
                                         &last) == cases[i].want,
                      "%s %d [%s]", cases[i].method, cases[i].status, cases[i].req);
    }
    /* RFC 9110 14.4: Content-Range values. */
    ck_assert_uint_eq(cache_policy_content_range(CACHE_RANGE_PARTIAL, 0, 99, 1000, cr, sizeof(cr)), 15);
    ck_assert_str_eq(cr, "bytes 0-99/1000");
    cache_policy_content_range(CACHE_RANGE_UNSATISFIABLE, 0, 0, 1000, cr, sizeof(cr));
    ck_assert_str_eq(cr, "bytes */1000");
    ck_assert_uint_eq(cache_policy_content_range(CACHE_RANGE_NONE, 0, 0, 1000, cr, sizeof(cr)), 0);
}
END_TEST

/* ------------------------------------------------------------------------------------------------
 * RFC 9111 4.3.1: validators sent upstream; 4.3.2 + RFC 9110 13.2.2: client conditionals (304?).
 */
START_TEST(test_validators)
{
    static const struct {
        const char *res, *want;
    } cases[] = {
        {"ETag: \"v1\"\nLast-Modified: " D0 "\nDate: " D10,
         "If-None-Match: \"v1\"\nIf-Modified-Since: " D0 "\n"},
        {"Last-Modified: " D0, "If-Modified-Since: " D0 "\n"},
        {"Date: " D10, "If-Modified-Since: " D10 "\n"},
        {"ETag: W/\"w\"", "If-None-Match: W/\"w\"\n"},
        {"ETag: v1\nLast-Modified: garbage", ""},
        {"", ""},
    };
    struct cdn_http_header h[MAXH], out[2];
    struct cache_response_info res;

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        size_t k;

        parse_res(NULL, 200, cases[i].res, h, &res);
        k = cache_policy_validators(&res, out);
        ck_assert_str_eq(dump(out, k), cases[i].want);
    }
}
END_TEST

START_TEST(test_not_modified)
{
    static const char *const stored = "ETag: \"v1\"\nLast-Modified: " D0 "\nDate: " D10;
    static const struct {
        const char *method;
        int status;
        const char *res, *req;
        bool want;
    } cases[] = {
        {"GET", 200, stored, "If-None-Match: \"v1\"", true},
        {"GET", 200, stored, "If-None-Match: W/\"v1\"", true}, /* weak comparison */
        {"GET", 200, stored, "If-None-Match: \"v2\", \"v1\"", true},
        {"GET", 200, stored, "If-None-Match: \"v2\"\nIf-None-Match: \"v1\"", true},
        {"GET", 200, stored, "If-None-Match: \"v2\"", false},
        {"GET", 200, stored, "If-None-Match: *", true},
        {"GET", 200, stored, "If-None-Match: \"v2\"\nIf-Modified-Since: " D100, false}, /* IMS ignored */
        {"GET", 200, stored, "If-None-Match: v1", false},                               /* malformed */
        {"GET", 200, stored, "If-Modified-Since: " D0, true},
        {"GET", 200, stored, "If-Modified-Since: " D100, true},
        {"GET", 200, stored, "If-Modified-Since: " DM60, false},
        {"GET", 200, stored, "If-Modified-Since: garbage", false},
        {"GET", 200, stored, "If-Modified-Since: " D0 "\nIf-Modified-Since: " D0, false},
        {"GET", 200, stored, "If-Match: \"nope\"\nIf-Unmodified-Since: " DM60, false}, /* not for caches */
        {"GET", 200, stored, "", false},
        {"HEAD", 200, stored, "If-None-Match: \"v1\"", true},
        {"POST", 200, stored, "If-None-Match: \"v1\"", false},
        {"GET", 404, stored, "If-None-Match: \"v1\"", false},
        {"GET", 200, "Date: " D10, "If-Modified-Since: " D10, true}, /* no Last-Modified: Date */
        {"GET", 200, "Date: " D10, "If-Modified-Since: " D0, false},
        {"GET", 200, "", "If-Modified-Since: " D20, true}, /* no Date: received at T0 + 20 */
        {"GET", 200, "", "If-Modified-Since: " D10, false},
        {"GET", 200, "Last-Modified: " D0, "If-None-Match: \"v1\"", false}, /* no stored ETag */
        {"GET", 200, "Last-Modified: " D0, "If-None-Match: *", true},
    };
    struct cdn_http_header rq[MAXH], rs[MAXH];
    struct cache_response_info res;

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        size_t n = hdrs(cases[i].req, rq);

        parse_res(NULL, cases[i].status, cases[i].res, rs, &res);
        ck_assert_msg(cache_policy_not_modified(cases[i].method, strlen(cases[i].method), rq, n, &res,
                                                T0 + 20) == cases[i].want,
                      "%s %d [%s] [%s]", cases[i].method, cases[i].status, cases[i].res, cases[i].req);
    }
}
END_TEST

/* ------------------------------------------------------------------------------------------------
 * RFC 9211 2: Cache-Status members (sf-list member with parameters), appended after what came in.
 */
START_TEST(test_cache_status)
{
    static const struct {
        struct cache_status cs;
        const char *received, *want;
    } cases[] = {
        {{"edge", true, NULL, 0, false, false, true, 100, NULL, NULL}, NULL, "edge; hit; ttl=100"},
        {{"regional", false, "uri-miss", 200, true, false, true, 300, NULL, NULL},
         NULL,
         "regional; fwd=uri-miss; fwd-status=200; stored; ttl=300"},
        {{"edge", true, NULL, 0, false, false, true, -5, NULL, NULL},
         "regional; fwd=uri-miss; stored",
         "regional; fwd=uri-miss; stored, edge; hit; ttl=-5"},
        {{"edge", false, "miss", 0, false, false, false, 0, NULL, NULL}, "  ", "edge; fwd=miss"},
        {{"my cache", false, "stale", 304, false, true, false, 0, NULL, "no-store"},
         NULL,
         "\"my cache\"; fwd=stale; fwd-status=304; collapsed; detail=no-store"},
        {{"edge", false, "bypass", 0, false, false, false, 0, NULL, "a b"},
         NULL,
         "edge; fwd=bypass; detail=\"a b\""},
        {{"edge", false, "vary-miss", 0, false, false, false, 0, "k\"1\\", NULL},
         NULL,
         "edge; fwd=vary-miss; key=\"k\\\"1\\\\\""},
        {{"edge", true, NULL, 0, false, false, true, 1LL << 60, NULL, NULL},
         NULL,
         "edge; hit; ttl=999999999999999"},
        {{"1edge", true, NULL, 0, false, false, false, 0, NULL, NULL}, NULL, "\"1edge\"; hit"},
        {{"edge", false, "request", 0, false, false, false, 0, NULL, "x\x01y"},
         NULL,
         "edge; fwd=request; detail=\"x?y\""},
        {{"cdn/edge-1:a", true, NULL, 0, false, false, false, 0, NULL, NULL}, NULL, "cdn/edge-1:a; hit"},
    };
    struct cdn_buf b;

    for (size_t i = 0; i < N_ELEMS(cases); i++) {
        const char *r = cases[i].received;

        cdn_buf_init(&b);
        cache_policy_cache_status(&cases[i].cs, r, r != NULL ? strlen(r) : 0, &b);
        ck_assert_msg(buf_is(&b, cases[i].want), "got '%.*s' want '%s'", (int)b.len, bdata(&b),
                      cases[i].want);
        cdn_buf_dispose(&b);
    }
}
END_TEST

/* An end-to-end walk through the documented flow: store, look up, go stale, revalidate with a 304. */
START_TEST(test_flow)
{
    struct cdn_http_header rq[MAXH], rs[MAXH], kept[MAXH], u[MAXH], merged[MAXH], again[MAXH], val[2];
    struct cache_request_info req;
    struct cache_response_info res, res2;
    struct cache_decision d;
    const char *why;
    size_t n, k, nu, k2;
    int m;

    parse_req("Accept-Encoding: gzip", rq, &req);
    n = hdrs("Date: " D0 "\nCache-Control: max-age=60\nETag: \"v1\"\nVary: Accept-Encoding\n"
             "Connection: close\nContent-Length: 5",
             rs);
    cache_policy_parse_response(NULL, 200, rs, n, &res);
    ck_assert(cache_policy_is_storable("GET", 3, &req, &res, &why));
    k = cache_policy_filter_headers(rs, n, &res.cc, kept);
    ck_assert_uint_eq(k, 5);
    ck_assert_int_eq(cache_policy_decide(NULL, &res, T0, T0, &req, T0 + 100, &d), CACHE_USE_REVALIDATE);
    ck_assert_uint_eq(cache_policy_validators(&res, val), 2); /* If-None-Match, If-Modified-Since: Date */
    nu = hdrs("Date: " D100 "\nCache-Control: max-age=300\nETag: \"v1\"", u);
    m = cache_policy_merge_304(kept, k, u, nu, merged, MAXH);
    ck_assert_int_eq(m, 5);
    cache_policy_parse_response(NULL, 200, merged, (size_t)m, &res2);
    k2 = cache_policy_filter_headers(merged, (size_t)m, &res2.cc, again);
    ck_assert_uint_eq(k2, 5);
    /* Re-stored with the validation's times: fresh again. */
    ck_assert_int_eq(cache_policy_decide(NULL, &res2, T0 + 100, T0 + 100, &req, T0 + 110, &d),
                     CACHE_USE_FRESH);
    ck_assert_int_eq(d.ttl, 290);
}
END_TEST

Suite *suite_policy(void)
{
    Suite *s = suite_create("policy");
    TCase *tc = tcase_create("rules");

    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_dates);
    tcase_add_test(tc, test_cc_response);
    tcase_add_test(tc, test_cc_request);
    tcase_add_test(tc, test_targeted);
    tcase_add_test(tc, test_storable);
    tcase_add_test(tc, test_freshness_lifetime);
    tcase_add_test(tc, test_current_age);
    tcase_add_test(tc, test_decide);
    tcase_add_test(tc, test_stale_if_error);
    tcase_add_test(tc, test_vary_names);
    tcase_add_test(tc, test_vary_key);
    tcase_add_test(tc, test_vary_match);
    tcase_add_test(tc, test_filter_headers);
    tcase_add_test(tc, test_merge_304);
    tcase_add_test(tc, test_invalidations);
    tcase_add_test(tc, test_parse_range);
    tcase_add_test(tc, test_range_if_range);
    tcase_add_test(tc, test_validators);
    tcase_add_test(tc, test_not_modified);
    tcase_add_test(tc, test_cache_status);
    tcase_add_test(tc, test_flow);
    suite_add_tcase(s, tc);
    return s;
}
