/*
 * Tests for lib/http1.c: the request and response head parsers and the chunked decoder.
 * Most cases are rows in tables so that one rule is one line; every row is also re-run on every prefix
 * of its input to check that incremental parsing agrees with a one-shot parse.
 */
#include <stdio.h>
#include <string.h>

#include <check.h>

#include "lib/http1.h"
#include "test/unit/suites.h"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Counted string equals C string (NULL matches only NULL). */
static bool seq(const char *p, size_t n, const char *s)
{
    if (s == NULL || p == NULL)
        return s == p;
    return strlen(s) == n && memcmp(p, s, n) == 0;
}

/* Text of a counted string for failure messages (truncated, static buffer). */
static const char *show(const char *p, size_t n)
{
    static char buf[128];

    if (p == NULL)
        return "(null)";
    snprintf(buf, sizeof(buf), "%.*s", (int)(n < 100 ? n : 100), p);
    return buf;
}

/* ------------------------------------------------------------------------------------------------ */
/* Requests that must parse. */

struct req_ok {
    const char *in;
    const char *method;
    const char *path;
    const char *host; /* NULL: none */
    int minor;
    enum cdn_http_body_kind body;
    uint64_t cl;
    bool keep_alive;
    size_t head_len; /* 0: strlen(in) */
};

#define H11 " HTTP/1.1\r\nHost: a.example\r\n"

static const struct req_ok req_ok_cases[] = {
    {"GET /" H11 "\r\n", "GET", "/", "a.example", 1, CDN_HTTP_BODY_NONE, 0, true, 0},
    {"GET /x?y=1 HTTP/1.0\r\n\r\n", "GET", "/x?y=1", NULL, 0, CDN_HTTP_BODY_NONE, 0, false, 0},
    {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET", "/", NULL, 0, CDN_HTTP_BODY_NONE, 0, true, 0},
    {"GET / HTTP/1.0\r\nConnection: Keep-Alive, close\r\n\r\n", "GET", "/", NULL, 0, CDN_HTTP_BODY_NONE, 0,
     false, 0},
    {"GET / HTTP/1.0\r\nHost: h:80\r\n\r\n", "GET", "/", "h:80", 0, CDN_HTTP_BODY_NONE, 0, false, 0},
    {"GET /" H11 "Connection: close\r\n\r\n", "GET", "/", "a.example", 1, CDN_HTTP_BODY_NONE, 0, false, 0},
    {"GET /" H11 "Connection: foo , CLOSE\r\n\r\n", "GET", "/", "a.example", 1, CDN_HTTP_BODY_NONE, 0, false,
     0},
    {"GET /" H11 "Connection: keep-alive\r\n\r\n", "GET", "/", "a.example", 1, CDN_HTTP_BODY_NONE, 0, true,
     0},
    {"POST /u" H11 "Content-Length: 5\r\n\r\n", "POST", "/u", "a.example", 1, CDN_HTTP_BODY_LENGTH, 5, true,
     0},
    {"POST /u" H11 "Content-Length: 0\r\n\r\n", "POST", "/u", "a.example", 1, CDN_HTTP_BODY_LENGTH, 0, true,
     0},
    {"POST /u" H11 "Content-Length: 5, 5\r\n\r\n", "POST", "/u", "a.example", 1, CDN_HTTP_BODY_LENGTH, 5,
     true, 0},
    {"POST /u" H11 "Content-Length: 5\r\ncontent-length: 5\r\n\r\n", "POST", "/u", "a.example", 1,
     CDN_HTTP_BODY_LENGTH, 5, true, 0},
    {"POST /u" H11 "Content-Length: 007\r\n\r\n", "POST", "/u", "a.example", 1, CDN_HTTP_BODY_LENGTH, 7, true,
     0},
    {"POST /u" H11 "Content-Length: 4611686018427387904\r\n\r\n", "POST", "/u", "a.example", 1,
     CDN_HTTP_BODY_LENGTH, (uint64_t)1 << 62, true, 0},
    {"POST /u" H11 "Transfer-Encoding: chunked\r\n\r\n", "POST", "/u", "a.example", 1, CDN_HTTP_BODY_CHUNKED,
     0, true, 0},
    {"POST /u" H11 "transfer-encoding:  Chunked \r\n\r\n", "POST", "/u", "a.example", 1,
     CDN_HTTP_BODY_CHUNKED, 0, true, 0},
    {"HEAD /h" H11 "\r\n", "HEAD", "/h", "a.example", 1, CDN_HTTP_BODY_NONE, 0, true, 0},
    {"M-SEARCH /x" H11 "\r\n", "M-SEARCH", "/x", "a.example", 1, CDN_HTTP_BODY_NONE, 0, true, 0},
    {"GET http://Example.COM:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n", "GET", "/p?q", "Example.COM:8080", 1,
     CDN_HTTP_BODY_NONE, 0, true, 0},
    {"GET HTTPS://a.b HTTP/1.1\r\nHost: a.b\r\n\r\n", "GET", "/", "a.b", 1, CDN_HTTP_BODY_NONE, 0, true, 0},
    {"GET http://[::1]:81//x HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "//x", "[::1]:81", 1, CDN_HTTP_BODY_NONE, 0,
     true, 0},
    {"OPTIONS *" H11 "\r\n", "OPTIONS", "*", "a.example", 1, CDN_HTTP_BODY_NONE, 0, true, 0},
    {"CONNECT a.b:443 HTTP/1.1\r\nHost: a.b:443\r\n\r\n", "CONNECT", "a.b:443", "a.b:443", 1,
     CDN_HTTP_BODY_NONE, 0, true, 0},
    {"\r\n\r\n\r\n\r\nGET /" H11 "\r\n", "GET", "/", "a.example", 1, CDN_HTTP_BODY_NONE, 0, true, 0},
    {"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", "GET", "/", "[::1]:8080", 1, CDN_HTTP_BODY_NONE, 0, true,
     0},
    {"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "GET", "/", "127.0.0.1", 1, CDN_HTTP_BODY_NONE, 0, true, 0},
    {"GET / HTTP/1.1\r\nHost: a%41b_c~d-e\r\n\r\n", "GET", "/", "a%41b_c~d-e", 1, CDN_HTTP_BODY_NONE, 0, true,
     0},
    {"GET / HTTP/1.1\r\nhOsT:\t x.y:65535 \t\r\n\r\n", "GET", "/", "x.y:65535", 1, CDN_HTTP_BODY_NONE, 0,
     true, 0},
    {"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: b\r\n\r\n", "GET", "/a", "a", 1,
     CDN_HTTP_BODY_NONE, 0, true, 28},
    {"GET /" H11 "X: \x80\xff obs\r\nY:\r\nZ: \"q\" ~\r\n\r\n", "GET", "/", "a.example", 1,
     CDN_HTTP_BODY_NONE, 0, true, 0},
    {"PUT /%20/`|^ HTTP/1.1\r\nHost: a\r\n\r\n", "PUT", "/%20/`|^", "a", 1, CDN_HTTP_BODY_NONE, 0, true, 0},
};

START_TEST(test_request_ok)
{
    const struct req_ok *c = &req_ok_cases[_i];
    struct cdn_http_request req;
    size_t len = strlen(c->in), head_len = c->head_len != 0 ? c->head_len : len;
    int rc;

    rc = cdn_http1_parse_request(c->in, len, NULL, &req);
    ck_assert_msg(rc == (int)head_len, "case %d: rc %d, want %zu", _i, rc, head_len);
    ck_assert_msg(seq(req.method, req.method_len, c->method), "case %d: method", _i);
    ck_assert_msg(seq(req.path, req.path_len, c->path), "case %d: path %s", _i, show(req.path, req.path_len));
    ck_assert_msg(seq(req.host, req.host_len, c->host), "case %d: host %s", _i, show(req.host, req.host_len));
    ck_assert_int_eq(req.minor_version, c->minor);
    ck_assert_int_eq(req.body_kind, c->body);
    ck_assert_uint_eq(req.content_length, c->cl);
    ck_assert_msg(req.keep_alive == c->keep_alive, "case %d: keep_alive %d", _i, req.keep_alive);
    ck_assert(!req.expect_continue);
    ck_assert_ptr_eq(req.method, strchr(c->in, c->method[0]));
}
END_TEST

/* ------------------------------------------------------------------------------------------------ */
/* Requests that must fail. */

struct req_bad {
    const char *in;
    size_t len; /* 0: strlen(in) */
    int want;
};

#define EBAD     CDN_HTTP_EBAD
#define EVERSION CDN_HTTP_EVERSION
#define ENOTIMPL CDN_HTTP_ENOTIMPL

static const struct req_bad req_bad_cases[] = {
    /* request line */
    {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET /\tHTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 0, EBAD},
    {" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"G\x80T / HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", 30, EBAD},
    {"GET  HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 0, EVERSION},
    {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 0, EVERSION},
    {"GET / HTTP/0.9\r\n\r\n", 0, EVERSION},
    {"GET / HTTP/9.9\r\n", 0, EVERSION},
    {"GET / http/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.10\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.x\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET / HTTPS/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET /\r\n\r\n", 0, EBAD},
    {"GET /\r\n", 0, EBAD},
    {"GET\r\n", 0, EBAD},
    /* line endings */
    {"GET / HTTP/1.1\nHost: a\n\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a\r\n\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\rHost: a\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a\r\n\r\r", 0, EBAD},
    {"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    /* header syntax */
    {"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a\r\nX(y): b\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 36, EBAD},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: a\x1b[0m\r\n\r\n", 0, EBAD},
    /* Host */
    {"GET / HTTP/1.1\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost:\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a:\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n", 0, EBAD},
    {"GET / HTTP/1.1\r\nHost: a%4\r\n\r\n", 0, EBAD},
    {"GET http://a/ HTTP/1.1\r\nHost: a b\r\n\r\n", 0, EBAD},
    {"GET http://a/ HTTP/1.1\r\n\r\n", 0, EBAD},
    /* request-target forms */
    {"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET a.b:443 HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET http://a?x HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"GET http:/a/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 0, EBAD},
    {"CONNECT a.b HTTP/1.1\r\nHost: a.b\r\n\r\n", 0, EBAD},
    {"CONNECT a.b:443 HTTP/1.1\r\n\r\n", 0, EBAD},
    {"M-SEARCH * HTTP/1.1\r\nHost: a.example\r\n\r\n", 0, EBAD},
    /* Content-Length */
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4611686018427387905\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 0, EBAD},
    /* Transfer-Encoding */
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0, ENOTIMPL},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
     ENOTIMPL},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 0, ENOTIMPL},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 0, ENOTIMPL},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 0, ENOTIMPL},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 0, ENOTIMPL},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
     EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 0, EBAD},
    {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun ked\r\n\r\n", 0, EBAD},
};

START_TEST(test_request_bad)
{
    const struct req_bad *c = &req_bad_cases[_i];
    struct cdn_http_request req;
    size_t len = c->len != 0 ? c->len : strlen(c->in);
    int rc;

    rc = cdn_http1_parse_request(c->in, len, NULL, &req);
    ck_assert_msg(rc == c->want, "case %d (%s): rc %d, want %d", _i, show(c->in, len), rc, c->want);
}
END_TEST

/* Every prefix gives EAGAIN or the final answer, and the final answer never changes once given. */
static void check_request_prefixes(const char *in, size_t len, const struct cdn_http_limits *lim)
{
    struct cdn_http_request full, part;
    int want, rc;
    size_t k;
    bool decided = false;

    want = cdn_http1_parse_request(in, len, lim, &full);
    for (k = 0; k <= len; k++) {
        rc = cdn_http1_parse_request(in, k, lim, &part);
        if (decided)
            ck_assert_msg(rc == want, "%s: prefix %zu gives %d after the answer %d", show(in, len), k, rc,
                          want);
        ck_assert_msg(rc == CDN_HTTP_EAGAIN || rc == want, "%s: prefix %zu gives %d, whole %d", show(in, len),
                      k, rc, want);
        if (want > 0)
            ck_assert_msg((rc == want) == (k >= (size_t)want), "prefix %zu rc %d", k, rc);
        if (rc == want && want > 0) {
            ck_assert_ptr_eq(part.method, full.method);
            ck_assert_ptr_eq(part.path, full.path);
            ck_assert_ptr_eq(part.host, full.host);
            ck_assert_uint_eq(part.host_len, full.host_len);
            ck_assert_uint_eq(part.num_headers, full.num_headers);
            ck_assert_int_eq(part.body_kind, full.body_kind);
            ck_assert_uint_eq(part.content_length, full.content_length);
            ck_assert_int_eq(part.keep_alive, full.keep_alive);
        }
        if (rc != CDN_HTTP_EAGAIN)
            decided = true;
    }
}

START_TEST(test_request_incremental_ok)
{
    const struct req_ok *c = &req_ok_cases[_i];

    check_request_prefixes(c->in, strlen(c->in), NULL);
}
END_TEST

START_TEST(test_request_incremental_bad)
{
    const struct req_bad *c = &req_bad_cases[_i];

    check_request_prefixes(c->in, c->len != 0 ? c->len : strlen(c->in), NULL);
}
END_TEST

/* Errors that more bytes cannot fix are reported at once. */
START_TEST(test_request_early_errors)
{
    static const struct {
        const char *in;
        size_t len;
        int want;
    } cases[] = {
        {"G(", 0, EBAD},
        {"GET  ", 0, EBAD},
        {"GET /\x01", 0, EBAD},
        {"GET / h", 0, EBAD},
        {"GET / HTTP/1.1\n", 0, EBAD},
        {"GET / HTTP/1.1\r\nHost: a\n", 0, EBAD},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: \0", 30, EBAD},
        {"GET / HTTP/1.1\r\nHost: a\r\n ", 0, EBAD},
        {"GET / HTTP/1.1\r\nHost ", 0, EBAD},
        {"GET / HTTP/3.0\r\n", 0, EVERSION},
        {"GET foo HTTP/1.1\r\n", 0, EBAD},
        {"\r\n\r\n\r\n\r\n\r\n", 0, EBAD},
        {"GET / HTTP/1.1\r\nHost: a\r\nX: 1", 0, CDN_HTTP_EAGAIN},
        {"GET / HTTP/1.1\r\nHost: a\r\n\r", 0, CDN_HTTP_EAGAIN},
        {"", 0, CDN_HTTP_EAGAIN},
        {"\r\n", 0, CDN_HTTP_EAGAIN},
    };
    struct cdn_http_request req;
    size_t i, len;
    int rc;

    for (i = 0; i < LEN(cases); i++) {
        len = cases[i].len != 0 ? cases[i].len : strlen(cases[i].in);
        rc = cdn_http1_parse_request(cases[i].in, len, NULL, &req);
        ck_assert_msg(rc == cases[i].want, "case %zu: rc %d, want %d", i, rc, cases[i].want);
    }
}
END_TEST

START_TEST(test_request_pipelined)
{
    static const char in[] = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                             "GET /b HTTP/1.1\r\nHost: b\r\n\r\n";
    struct cdn_http_request req;
    int rc;

    rc = cdn_http1_parse_request(in, sizeof(in) - 1, NULL, &req);
    ck_assert_int_eq(rc, 48);
    ck_assert_int_eq(req.body_kind, CDN_HTTP_BODY_LENGTH);
    ck_assert_uint_eq(req.content_length, 3);
    rc = cdn_http1_parse_request(in + 48 + 3, sizeof(in) - 1 - 51, NULL, &req);
    ck_assert_int_eq(rc, (int)(sizeof(in) - 1 - 51));
    ck_assert(seq(req.path, req.path_len, "/b"));
    ck_assert(seq(req.host, req.host_len, "b"));
}
END_TEST

START_TEST(test_request_headers)
{
    static const char in[] = "GET /p HTTP/1.1\r\n"
                             "Host: a\r\n"
                             "X-Spaces: \t v  a l \t \r\n"
                             "Empty:\r\n"
                             "Connection: close, X-Drop ,  Keep-Alive\r\n"
                             "X-Drop: 1\r\n"
                             "x-drop: 2\r\n"
                             "Keep-Alive: timeout=5\r\n"
                             "TE: trailers\r\n"
                             "Upgrade: h2c\r\n"
                             "Trailer: X\r\n"
                             "Proxy-Connection: x\r\n"
                             "Proxy-Authorization: x\r\n"
                             "Proxy-Authenticate: x\r\n"
                             "Expect: 100-Continue\r\n"
                             "X-Keep: y\r\n"
                             "\r\n";
    static const struct {
        const char *name;
        const char *value;
        bool hop;
    } want[] = {
        {"Host", "a", false},
        {"X-Spaces", "v  a l", false},
        {"Empty", "", false},
        {"Connection", "close, X-Drop ,  Keep-Alive", true},
        {"X-Drop", "1", true},
        {"x-drop", "2", true},
        {"Keep-Alive", "timeout=5", true},
        {"TE", "trailers", true},
        {"Upgrade", "h2c", true},
        {"Trailer", "X", true},
        {"Proxy-Connection", "x", true},
        {"Proxy-Authorization", "x", true},
        {"Proxy-Authenticate", "x", true},
        {"Expect", "100-Continue", false},
        {"X-Keep", "y", false},
    };
    struct cdn_http_request req;
    const struct cdn_http_header *h;
    size_t i;

    ck_assert_int_eq(cdn_http1_parse_request(in, sizeof(in) - 1, NULL, &req), (int)(sizeof(in) - 1));
    ck_assert_uint_eq(req.num_headers, LEN(want));
    for (i = 0; i < LEN(want); i++) {
        h = &req.headers[i];
        ck_assert_msg(seq(h->name, h->name_len, want[i].name), "header %zu name", i);
        ck_assert_msg(seq(h->value, h->value_len, want[i].value), "header %zu value '%s'", i,
                      show(h->value, h->value_len));
        ck_assert_msg(h->hop_by_hop == want[i].hop, "header %zu hop_by_hop", i);
    }
    ck_assert(req.expect_continue);
    ck_assert(!req.keep_alive);

    h = cdn_http1_find_header(req.headers, req.num_headers, "X-DROP");
    ck_assert_ptr_eq(h, &req.headers[4]);
    h = cdn_http1_find_header(req.headers, req.num_headers, "host");
    ck_assert_ptr_eq(h, &req.headers[0]);
    ck_assert_ptr_null(cdn_http1_find_header(req.headers, req.num_headers, "X-Dro"));
    ck_assert_ptr_null(cdn_http1_find_header(req.headers, req.num_headers, "X-Dropp"));
    ck_assert_ptr_null(cdn_http1_find_header(req.headers, 0, "Host"));
}
END_TEST

START_TEST(test_request_expect)
{
    static const struct {
        const char *in;
        bool want;
    } cases[] = {
        {"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", true},
        {"POST / HTTP/1.1\r\nHost: a\r\nexpect:  100-CONTINUE \r\nContent-Length: 1\r\n\r\n", true},
        {"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continued\r\nContent-Length: 1\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", false},
        {"POST / HTTP/1.1\r\nHost: a\r\nX-Expect: 100-continue\r\n\r\n", false},
    };
    struct cdn_http_request req;
    size_t i;

    for (i = 0; i < LEN(cases); i++) {
        ck_assert_int_gt(cdn_http1_parse_request(cases[i].in, strlen(cases[i].in), NULL, &req), 0);
        ck_assert_msg(req.expect_continue == cases[i].want, "case %zu", i);
    }
}
END_TEST

/* Builds "GET /<pad> HTTP/1.1\r\nHost: a\r\n" + n headers + "\r\n" into buf; returns its length. */
static size_t build_request(char *buf, size_t cap, size_t path_pad, size_t n_headers, bool finish)
{
    size_t len = 0, i;

    len += (size_t)snprintf(buf + len, cap - len, "GET /");
    for (i = 0; i < path_pad && len < cap; i++)
        buf[len++] = 'p';
    len += (size_t)snprintf(buf + len, cap - len, " HTTP/1.1\r\nHost: a\r\n");
    for (i = 1; i < n_headers; i++)
        len += (size_t)snprintf(buf + len, cap - len, "X-%zu: v\r\n", i);
    if (finish)
        len += (size_t)snprintf(buf + len, cap - len, "\r\n");
    ck_assert_uint_lt(len, cap);
    return len;
}

START_TEST(test_request_limits)
{
    static char buf[200000];
    struct cdn_http_request req;
    struct cdn_http_limits lim = {64, 3};
    size_t len;

    /* A head of exactly max_head_size fits; one byte more is 431. */
    len = build_request(buf, sizeof(buf), 0, 1, true);
    lim.max_head_size = len;
    ck_assert_int_eq(cdn_http1_parse_request(buf, len, &lim, &req), (int)len);
    lim.max_head_size = len - 1;
    ck_assert_int_eq(cdn_http1_parse_request(buf, len, &lim, &req), CDN_HTTP_ETOOBIG);
    ck_assert_int_eq(cdn_http1_parse_request(buf, len - 1, &lim, &req), CDN_HTTP_ETOOBIG);
    ck_assert_int_eq(cdn_http1_parse_request(buf, len - 2, &lim, &req), CDN_HTTP_EAGAIN);

    /* The request line does not fit: 414, complete or not. */
    lim.max_head_size = 64;
    len = build_request(buf, sizeof(buf), 100, 1, true);
    ck_assert_int_eq(cdn_http1_parse_request(buf, len, &lim, &req), CDN_HTTP_ETOOLONG);
    ck_assert_int_eq(cdn_http1_parse_request(buf, 64, &lim, &req), CDN_HTTP_ETOOLONG);
    ck_assert_int_eq(cdn_http1_parse_request(buf, 63, &lim, &req), CDN_HTTP_EAGAIN);
    /* ... but a syntax error inside the limit still wins. */
    buf[10] = '\x01';
    ck_assert_int_eq(cdn_http1_parse_request(buf, len, &lim, &req), CDN_HTTP_EBAD);

    /* Request line fits, headers do not: 431 even before the head is complete. */
    lim.max_headers = 100;
    len = build_request(buf, sizeof(buf), 0, 10, false);
    ck_assert_int_eq(cdn_http1_parse_request(buf, len, &lim, &req), CDN_HTTP_ETOOBIG);

    /* max_headers */
    lim.max_head_size = 4096;
    lim.max_headers = 3;
    len = build_request(buf, sizeof(buf), 0, 3, true);
    ck_assert_int_eq(cdn_http1_parse_request(buf, len, &lim, &req), (int)len);
    ck_assert_uint_eq(req.num_headers, 3);
    len = build_request(buf, sizeof(buf), 0, 4, true);
    ck_assert_int_eq(cdn_http1_parse_request(buf, len, &lim, &req), CDN_HTTP_ETOOBIG);
    len = build_request(buf, sizeof(buf), 0, 4, false);
    ck_assert_int_eq(cdn_http1_parse_request(buf, len - 3, &lim, &req), CDN_HTTP_ETOOBIG);

    /* Defaults (NULL and zeroes): 32768 bytes, 100 headers. */
    len = build_request(buf, sizeof(buf), 0, 100, true);
    ck_assert_int_eq(cdn_http1_parse_request(buf, len, NULL, &req), (int)len);
    len = build_request(buf, sizeof(buf), 0, 101, true);
    ck_assert_int_eq(cdn_http1_parse_request(buf, len, NULL, &req), CDN_HTTP_ETOOBIG);
    lim.max_head_size = 0;
    lim.max_headers = 0;
    ck_assert_int_eq(cdn_http1_parse_request(buf, len, &lim, &req), CDN_HTTP_ETOOBIG);
    len = build_request(buf, sizeof(buf), 32768, 1, true);
    ck_assert_int_eq(cdn_http1_parse_request(buf, len, NULL, &req), CDN_HTTP_ETOOLONG);
    len = build_request(buf, sizeof(buf), 32000, 1, true);
    ck_assert_int_eq(cdn_http1_parse_request(buf, len, NULL, &req), (int)len);
    len = build_request(buf, sizeof(buf), 100, 3000, false);
    ck_assert_int_eq(cdn_http1_parse_request(buf, len, NULL, &req), CDN_HTTP_ETOOBIG);

    /* max_headers is clamped to CDN_HTTP_MAX_HEADERS. */
    lim.max_head_size = sizeof(buf);
    lim.max_headers = 100000;
    len = build_request(buf, sizeof(buf), 0, CDN_HTTP_MAX_HEADERS, true);
    ck_assert_int_eq(cdn_http1_parse_request(buf, len, &lim, &req), (int)len);
    ck_assert_uint_eq(req.num_headers, CDN_HTTP_MAX_HEADERS);
    len = build_request(buf, sizeof(buf), 0, CDN_HTTP_MAX_HEADERS + 1, true);
    ck_assert_int_eq(cdn_http1_parse_request(buf, len, &lim, &req), CDN_HTTP_ETOOBIG);
}
END_TEST

START_TEST(test_request_limits_incremental)
{
    static char buf[4096];
    struct cdn_http_limits lim = {64, 3};
    size_t len;

    len = build_request(buf, sizeof(buf), 100, 1, true);
    check_request_prefixes(buf, len, &lim);
    len = build_request(buf, sizeof(buf), 0, 10, true);
    check_request_prefixes(buf, len, &lim);
    lim.max_head_size = 1000;
    check_request_prefixes(buf, len, &lim);
    lim.max_headers = 10;
    check_request_prefixes(buf, len, &lim);
}
END_TEST

/* ------------------------------------------------------------------------------------------------ */
/* Responses. */

struct res_case {
    const char *in;
    bool is_head;
    int want; /* 0: strlen(in) */
    int status;
    int minor;
    enum cdn_http_body_kind body;
    uint64_t cl;
    bool keep_alive;
    const char *reason;
};

static const struct res_case res_cases[] = {
    {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false, 0, 200, 1, CDN_HTTP_BODY_LENGTH, 3, true, "OK"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n", false, 0, 200, 1,
     CDN_HTTP_BODY_LENGTH, 3, true, "OK"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, 0, 200, 1, CDN_HTTP_BODY_CHUNKED, 0,
     true, "OK"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, 0, 200, 1, CDN_HTTP_BODY_CHUNKED,
     0, true, "OK"},
    /* both framings: how responses are split (RFC 9112 6.3 "ought to be handled as an error") */
    {"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n", false, EBAD, 0, 0, 0, 0,
     false, NULL},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, 0, 200, 1, CDN_HTTP_BODY_EOF, 0, false,
     "OK"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", false, 0, 200, 1, CDN_HTTP_BODY_EOF, 0,
     false, "OK"},
    {"HTTP/1.1 200 OK\r\n\r\n", false, 0, 200, 1, CDN_HTTP_BODY_EOF, 0, false, "OK"},
    {"HTTP/1.1 204 No Content\r\n\r\n", false, 0, 204, 1, CDN_HTTP_BODY_NONE, 0, true, "No Content"},
    {"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n", false, 0, 304, 1, CDN_HTTP_BODY_NONE, 0,
     true, "Not Modified"},
    {"HTTP/1.1 100 Continue\r\n\r\n", false, 0, 100, 1, CDN_HTTP_BODY_NONE, 0, true, "Continue"},
    {"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false, 0, 103, 1, CDN_HTTP_BODY_NONE, 0, true,
     "Early Hints"},
    {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n", false, 0, 101, 1,
     CDN_HTTP_BODY_NONE, 0, true, "Switching Protocols"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true, 0, 200, 1, CDN_HTTP_BODY_NONE, 0, true, "OK"},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, 0, 200, 1, CDN_HTTP_BODY_NONE, 0, true,
     "OK"},
    {"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false, 0, 200, 0, CDN_HTTP_BODY_LENGTH, 1, false, "OK"},
    {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", false, 0, 200, 0,
     CDN_HTTP_BODY_LENGTH, 1, true, "OK"},
    {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", false, 0, 200, 1,
     CDN_HTTP_BODY_LENGTH, 1, false, "OK"},
    {"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, 0, 200, 1, CDN_HTTP_BODY_LENGTH, 0, true, ""},
    {"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", false, 0, 200, 1, CDN_HTTP_BODY_LENGTH, 0, true, ""},
    {"HTTP/1.1 404 Not  Found \xe2\x9c\x97\r\nContent-Length: 0\r\n\r\n", false, 0, 404, 1,
     CDN_HTTP_BODY_LENGTH, 0, true, "Not  Found \xe2\x9c\x97"},
    {"HTTP/1.1 599 Whatever\r\nContent-Length: 0\r\n\r\n", false, 0, 599, 1, CDN_HTTP_BODY_LENGTH, 0, true,
     "Whatever"},
    {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\n", false, 38, 200, 1,
     CDN_HTTP_BODY_LENGTH, 2, true, "OK"},
    /* errors */
    {"HTTP/1.1 099 Low\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.1 600 High\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.1 20 OK\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.1 2000 OK\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.1  200 OK\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.1\t200 OK\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.1 2x0 OK\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/2.0 200 OK\r\n\r\n", false, EVERSION, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.2 200 OK\r\n\r\n", false, EVERSION, 0, 0, 0, 0, false, NULL},
    {"http/1.1 200 OK\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"ICY 200 OK\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"\r\nHTTP/1.1 200 OK\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.1 200 OK\n\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.1 200 OK\r\nX: y\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.1 200 O\x01K\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false, EBAD, 0, 0, 0, 0, false,
     NULL},
    {"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.1 304 Not Modified\r\nContent-Length: 1, 2\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.1 200 OK\r\nX : a\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n", false, EBAD, 0, 0, 0, 0, false, NULL},
};

START_TEST(test_response)
{
    const struct res_case *c = &res_cases[_i];
    struct cdn_http_response res, part;
    size_t len = strlen(c->in), k;
    int want = c->want != 0 ? c->want : (int)len, rc;
    bool decided = false;

    rc = cdn_http1_parse_response(c->in, len, NULL, c->is_head, &res);
    ck_assert_msg(rc == want, "case %d (%s): rc %d, want %d", _i, c->in, rc, want);
    if (want > 0) {
        ck_assert_int_eq(res.status, c->status);
        ck_assert_int_eq(res.minor_version, c->minor);
        ck_assert_msg(res.body_kind == c->body, "case %d: body %d", _i, res.body_kind);
        ck_assert_uint_eq(res.content_length, c->cl);
        ck_assert_msg(res.keep_alive == c->keep_alive, "case %d: keep_alive", _i);
        ck_assert_msg(seq(res.reason, res.reason_len, c->reason), "case %d: reason '%s'", _i,
                      show(res.reason, res.reason_len));
    }
    for (k = 0; k <= len; k++) {
        rc = cdn_http1_parse_response(c->in, k, NULL, c->is_head, &part);
        ck_assert_msg(rc == want || (rc == CDN_HTTP_EAGAIN && !decided), "case %d prefix %zu: %d", _i, k, rc);
        if (want > 0)
            ck_assert_msg((rc == want) == (k >= (size_t)want), "case %d prefix %zu: %d", _i, k, rc);
        decided = decided || rc != CDN_HTTP_EAGAIN;
    }
}
END_TEST

START_TEST(test_response_limits)
{
    static const char in[] =
        "HTTP/1.1 200 A very long reason phrase that goes past the limit of the head\r\n\r\n";
    static const char two[] = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n";
    struct cdn_http_limits lim = {32, 1};
    struct cdn_http_response res;

    /* No 414 for responses: a long status line is just a big head. */
    ck_assert_int_eq(cdn_http1_parse_response(in, sizeof(in) - 1, &lim, false, &res), CDN_HTTP_ETOOBIG);
    ck_assert_int_eq(cdn_http1_parse_response(in, 32, &lim, false, &res), CDN_HTTP_ETOOBIG);
    ck_assert_int_eq(cdn_http1_parse_response(in, 31, &lim, false, &res), CDN_HTTP_EAGAIN);
    ck_assert_int_eq(cdn_http1_parse_response(two, sizeof(two) - 1, &lim, false, &res), CDN_HTTP_ETOOBIG);
    lim.max_headers = 2;
    ck_assert_int_eq(cdn_http1_parse_response(two, sizeof(two) - 1, &lim, false, &res), (int)sizeof(two) - 1);
    ck_assert_int_eq(cdn_http1_parse_response(two, sizeof(two) - 1, NULL, false, &res), (int)sizeof(two) - 1);
    ck_assert_uint_eq(res.num_headers, 2);
    ck_assert(seq(res.headers[1].name, res.headers[1].name_len, "B"));
    ck_assert(seq(res.headers[1].value, res.headers[1].value_len, "2"));
}
END_TEST

START_TEST(test_response_hop_by_hop)
{
    static const char in[] = "HTTP/1.1 200 OK\r\nConnection: x-a\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n"
                             "Cache-Control: max-age=1\r\n\r\n";
    struct cdn_http_response res;

    ck_assert_int_eq(cdn_http1_parse_response(in, sizeof(in) - 1, NULL, false, &res), (int)sizeof(in) - 1);
    ck_assert_uint_eq(res.num_headers, 4);
    ck_assert(res.headers[0].hop_by_hop);
    ck_assert(res.headers[1].hop_by_hop);
    ck_assert(res.headers[2].hop_by_hop);
    ck_assert(!res.headers[3].hop_by_hop);
    ck_assert(res.keep_alive);
}
END_TEST

/* ------------------------------------------------------------------------------------------------ */
/* Chunked decoder. */

struct chunk_case {
    const char *in;
    size_t len; /* 0: strlen(in) */
    int want;   /* final result: 1 (end) or EBAD or EAGAIN */
    const char *data;
    size_t consumed; /* 0: all of it */
};

static const struct chunk_case chunk_cases[] = {
    {"5\r\nhello\r\n0\r\n\r\n", 0, 1, "hello", 0},
    {"0\r\n\r\n", 0, 1, "", 0},
    {"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", 0, 1, "abcdefg", 0},
    {"A\r\n0123456789\r\na\r\n9876543210\r\n0\r\n\r\n", 0, 1, "01234567899876543210", 0},
    {"0005\r\nhello\r\n000\r\n\r\n", 0, 1, "hello", 0},
    {"0000000000000005\r\nhello\r\n0\r\n\r\n", 0, 1, "hello", 0},
    {"5;ext=1\r\nhello\r\n0;last\r\n\r\n", 0, 1, "hello", 0},
    {"5 ; a = b ;c;d=\"q\\\"x; \"\r\nhello\r\n0\t;e\r\n\r\n", 0, 1, "hello", 0},
    {"5;a=\"\x80\"\r\nhello\r\n0\r\n\r\n", 0, 1, "hello", 0},
    {"5\r\nhello\r\n0\r\nX-T: 1\r\nY:\r\nZ: a b\t\r\n\r\n", 0, 1, "hello", 0},
    {"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 0, 1, "hello", 15},
    {"2\r\n\r\n\r\n0\r\n\r\n", 0, 1, "\r\n", 0},
    {"5\r\nhel", 0, CDN_HTTP_EAGAIN, "hel", 0},
    {"5\r\nhello\r\n0\r\nX: 1\r\n", 0, CDN_HTTP_EAGAIN, "hello", 0},
    {"1\r\n\0\r\n0\r\n\r\n", 11, 1, NULL, 0}, /* data may contain NUL; checked by length below */
    /* errors */
    {"x\r\n", 0, EBAD, "", 0},
    {"\r\n", 0, EBAD, "", 0},
    {" 5\r\nhello\r\n0\r\n\r\n", 0, EBAD, "", 0},
    {"0x5\r\nhello\r\n0\r\n\r\n", 0, EBAD, "", 0},
    {"-5\r\n", 0, EBAD, "", 0},
    {"+5\r\n", 0, EBAD, "", 0},
    {"5 \r\nhello\r\n0\r\n\r\n", 0, EBAD, "", 0},
    {"5\nhello\r\n0\r\n\r\n", 0, EBAD, "", 0},
    {"5\rhello\r\n0\r\n\r\n", 0, EBAD, "", 0},
    {"5\r\nhelloX\r\n0\r\n\r\n", 0, EBAD, "hello", 0},
    {"5\r\nhello\n0\r\n\r\n", 0, EBAD, "hello", 0},
    {"5\r\nhello\rX0\r\n\r\n", 0, EBAD, "hello", 0},
    {"5\r\nhello\r\n0\r\n\n", 0, EBAD, "hello", 0},
    {"5\r\nhello\r\n0\n\r\n", 0, EBAD, "hello", 0},
    {"00000000000000005\r\nhello\r\n0\r\n\r\n", 0, EBAD, "", 0},
    {"1000000000000001\r\n", 0, EBAD, "", 0},
    {"FFFFFFFFFFFFFFFF\r\n", 0, EBAD, "", 0},
    {"5;\r\nhello\r\n0\r\n\r\n", 0, EBAD, "", 0},
    {"5;=x\r\nhello\r\n0\r\n\r\n", 0, EBAD, "", 0},
    {"5;a=\r\nhello\r\n0\r\n\r\n", 0, EBAD, "", 0},
    {"5;a \r\nhello\r\n0\r\n\r\n", 0, EBAD, "", 0},
    {"5;a=b \r\nhello\r\n0\r\n\r\n", 0, EBAD, "", 0},
    {"5;a=\"x\r\nhello\r\n0\r\n\r\n", 0, EBAD, "", 0},
    {"5;a=\"x\"y\r\nhello\r\n0\r\n\r\n", 0, EBAD, "", 0},
    {"5;a\x01\r\nhello\r\n0\r\n\r\n", 0, EBAD, "", 0},
    {"5;a=b\nhello\r\n0\r\n\r\n", 0, EBAD, "", 0},
    {"5\r\nhello\r\n0\r\nX : 1\r\n\r\n", 0, EBAD, "hello", 0},
    {"5\r\nhello\r\n0\r\n X: 1\r\n\r\n", 0, EBAD, "hello", 0},
    {"5\r\nhello\r\n0\r\nX: a\nb\r\n\r\n", 0, EBAD, "hello", 0},
    {"5\r\nhello\r\n0\r\nX\r\n\r\n", 0, EBAD, "hello", 0},
    {"5\r\nhello\r\n0\r\n: 1\r\n\r\n", 0, EBAD, "hello", 0},
    {"5\r\nhello\r\n0\r\nX: \0\r\n\r\n", 21, EBAD, "hello", 0},
    {"5\r\nhello\r\n0\r\nX: 1\r\r\n\r\n", 0, EBAD, "hello", 0},
};

/*
 * Feeds in[0..len) to a fresh decoder in slices of `step` bytes (0: all at once), collecting the data into
 * out. Returns the final result; *consumed_total gets the bytes used.
 */
static int decode_all(struct cdn_http_chunked *d, const char *in, size_t len, size_t step, char *out,
                      size_t *out_len, size_t *consumed_total)
{
    size_t off = 0, slice_end, consumed, dlen;
    const char *data;
    int rc = CDN_HTTP_EAGAIN;

    *out_len = 0;
    while (off < len) {
        slice_end = step == 0 || len - off < step ? len : off + step;
        for (;;) {
            rc = cdn_http1_chunked_decode(d, in + off, slice_end - off, &consumed, &data, &dlen);
            ck_assert_uint_le(consumed, slice_end - off);
            off += consumed;
            if (rc != 0)
                break;
            ck_assert_uint_gt(dlen, 0);
            ck_assert(data >= in && data + dlen <= in + len);
            memcpy(out + *out_len, data, dlen);
            *out_len += dlen;
        }
        if (rc == CDN_HTTP_EAGAIN) {
            ck_assert_uint_eq(off, slice_end);
            continue;
        }
        break;
    }
    *consumed_total = off;
    return rc;
}

START_TEST(test_chunked)
{
    const struct chunk_case *c = &chunk_cases[_i];
    size_t len = c->len != 0 ? c->len : strlen(c->in), step, out_len, consumed, one_len, one_consumed;
    char out[256], one[256];
    struct cdn_http_chunked d;
    int rc, one_rc;

    cdn_http1_chunked_init(&d);
    one_rc = decode_all(&d, c->in, len, 0, one, &one_len, &one_consumed);
    ck_assert_msg(one_rc == c->want, "case %d: rc %d, want %d", _i, one_rc, c->want);
    if (c->data != NULL)
        ck_assert_msg(seq(one, one_len, c->data), "case %d: data '%s'", _i, show(one, one_len));
    else
        ck_assert_msg(one_len == 1 && one[0] == '\0', "case %d", _i);
    if (c->want == 1)
        ck_assert_uint_eq(one_consumed, c->consumed != 0 ? c->consumed : len);

    /* Byte by byte and every other slice size give the same bytes and the same answer. */
    for (step = 1; step <= len; step++) {
        cdn_http1_chunked_init(&d);
        rc = decode_all(&d, c->in, len, step, out, &out_len, &consumed);
        ck_assert_msg(rc == one_rc, "case %d step %zu: rc %d", _i, step, rc);
        ck_assert_msg(out_len == one_len && memcmp(out, one, out_len) == 0, "case %d step %zu: data", _i,
                      step);
        ck_assert_msg(consumed == one_consumed, "case %d step %zu: consumed %zu", _i, step, consumed);
    }
}
END_TEST

START_TEST(test_chunked_sticky)
{
    struct cdn_http_chunked d;
    size_t consumed, dlen;
    const char *data;

    cdn_http1_chunked_init(&d);
    ck_assert_int_eq(cdn_http1_chunked_decode(&d, "0\r\n\r\nX", 6, &consumed, &data, &dlen), 1);
    ck_assert_uint_eq(consumed, 5);
    ck_assert_int_eq(cdn_http1_chunked_decode(&d, "X", 1, &consumed, &data, &dlen), 1);
    ck_assert_uint_eq(consumed, 0);

    cdn_http1_chunked_init(&d);
    ck_assert_int_eq(cdn_http1_chunked_decode(&d, "z", 1, &consumed, &data, &dlen), CDN_HTTP_EBAD);
    ck_assert_int_eq(cdn_http1_chunked_decode(&d, "0\r\n\r\n", 5, &consumed, &data, &dlen), CDN_HTTP_EBAD);

    cdn_http1_chunked_init(&d);
    ck_assert_int_eq(cdn_http1_chunked_decode(&d, "", 0, &consumed, &data, &dlen), CDN_HTTP_EAGAIN);
    ck_assert_uint_eq(consumed, 0);
    ck_assert_int_eq(cdn_http1_chunked_decode(&d, "3\r\nab", 5, &consumed, &data, &dlen), 0);
    ck_assert_uint_eq(consumed, 5);
    ck_assert_uint_eq(dlen, 2);
    ck_assert_uint_eq(d.remaining, 1);
    ck_assert_int_eq(cdn_http1_chunked_decode(&d, "", 0, &consumed, &data, &dlen), CDN_HTTP_EAGAIN);
    ck_assert_ptr_null(data);
    ck_assert_uint_eq(dlen, 0);

    /* The largest size is accepted (the caller enforces its own body limit). */
    cdn_http1_chunked_init(&d);
    ck_assert_int_eq(cdn_http1_chunked_decode(&d, "1000000000000000\r\nx", 19, &consumed, &data, &dlen), 0);
    ck_assert_uint_eq(d.remaining, ((uint64_t)1 << 60) - 1);
}
END_TEST

START_TEST(test_chunked_limits)
{
    static const struct {
        const char *in;
        size_t max_line;
        size_t max_trailer;
        int want;
    } cases[] = {
        {"5;abcd\r\nhello\r\n0\r\n\r\n", 8, 0, 1},  {"5;abcde\r\nhello\r\n0\r\n\r\n", 8, 0, EBAD},
        {"5\r\nhello\r\n0;abcd\r\n\r\n", 8, 0, 1},  {"5\r\nhello\r\n0;abcde\r\n\r\n", 8, 0, EBAD},
        {"0\r\nX: 1234\r\n\r\n", 9, 0, 1},          {"0\r\nX: 12345\r\n\r\n", 9, 0, EBAD},
        {"0\r\nX: 1\r\nY: 2\r\n\r\n", 0, 14, 1},    {"0\r\nX: 1\r\nY: 23\r\n\r\n", 0, 14, EBAD},
        {"0\r\nX: 1\r\nY: 2\r\n\r\n", 0, 13, EBAD},
    };
    static char big[8192];
    struct cdn_http_chunked d;
    size_t i, step, out_len, consumed;
    char out[64];
    int rc;

    for (i = 0; i < LEN(cases); i++) {
        for (step = 0; step <= 3; step++) {
            cdn_http1_chunked_init(&d);
            if (cases[i].max_line != 0)
                d.max_line = cases[i].max_line;
            if (cases[i].max_trailer != 0)
                d.max_trailer = cases[i].max_trailer;
            rc = decode_all(&d, cases[i].in, strlen(cases[i].in), step, out, &out_len, &consumed);
            ck_assert_msg(rc == cases[i].want, "case %zu step %zu: rc %d", i, step, rc);
        }
    }

    /* Default line limit 4096: a 5000-byte extension fails. */
    memcpy(big, "1;x=", 4);
    memset(big + 4, 'a', 5000);
    memcpy(big + 5004, "\r\nz\r\n0\r\n\r\n", 10);
    cdn_http1_chunked_init(&d);
    ck_assert_int_eq(decode_all(&d, big, 5014, 0, out, &out_len, &consumed), EBAD);
    /* Default trailer limit 32768: fine at 4000 bytes, several lines of 4000 add up. */
    cdn_http1_chunked_init(&d);
    for (i = 0; i < 9; i++) {
        size_t got;
        const char *data;

        if (i == 0) {
            rc = cdn_http1_chunked_decode(&d, "0\r\n", 3, &got, &data, &out_len);
            ck_assert_int_eq(rc, CDN_HTTP_EAGAIN);
        }
        memset(big, 'v', 4000);
        memcpy(big, "X: ", 3);
        memcpy(big + 3998, "\r\n", 2);
        rc = cdn_http1_chunked_decode(&d, big, 4000, &got, &data, &out_len);
        ck_assert_int_eq(rc, i < 8 ? CDN_HTTP_EAGAIN : CDN_HTTP_EBAD);
    }
}
END_TEST

/* ------------------------------------------------------------------------------------------------ */

START_TEST(test_reason)
{
    static const int codes[] = {100, 101, 200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303,
                                304, 305, 306, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407,
                                408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 421, 422,
                                425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505};
    size_t i;

    for (i = 0; i < LEN(codes); i++)
        ck_assert_msg(strcmp(cdn_http1_reason(codes[i]), "Unknown") != 0, "status %d", codes[i]);
    ck_assert_str_eq(cdn_http1_reason(200), "OK");
    ck_assert_str_eq(cdn_http1_reason(404), "Not Found");
    ck_assert_str_eq(cdn_http1_reason(431), "Request Header Fields Too Large");
    ck_assert_str_eq(cdn_http1_reason(502), "Bad Gateway");
    ck_assert_str_eq(cdn_http1_reason(0), "Unknown");
    ck_assert_str_eq(cdn_http1_reason(299), "Unknown");
    ck_assert_str_eq(cdn_http1_reason(-400), "Unknown");
    /* Every error code maps to a phrase for its status. */
    ck_assert_str_eq(cdn_http1_reason(-CDN_HTTP_EBAD), "Bad Request");
    ck_assert_str_eq(cdn_http1_reason(-CDN_HTTP_ETOOLONG), "URI Too Long");
    ck_assert_str_eq(cdn_http1_reason(-CDN_HTTP_ENOTIMPL), "Not Implemented");
    ck_assert_str_eq(cdn_http1_reason(-CDN_HTTP_EVERSION), "HTTP Version Not Supported");
}
END_TEST

Suite *suite_http1(void)
{
    Suite *s = suite_create("http1");
    TCase *tc;

    tc = tcase_create("request");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_request_ok, 0, (int)LEN(req_ok_cases));
    tcase_add_loop_test(tc, test_request_bad, 0, (int)LEN(req_bad_cases));
    tcase_add_loop_test(tc, test_request_incremental_ok, 0, (int)LEN(req_ok_cases));
    tcase_add_loop_test(tc, test_request_incremental_bad, 0, (int)LEN(req_bad_cases));
    tcase_add_test(tc, test_request_early_errors);
    tcase_add_test(tc, test_request_pipelined);
    tcase_add_test(tc, test_request_headers);
    tcase_add_test(tc, test_request_expect);
    tcase_add_test(tc, test_request_limits);
    tcase_add_test(tc, test_request_limits_incremental);
    suite_add_tcase(s, tc);

    tc = tcase_create("response");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_response, 0, (int)LEN(res_cases));
    tcase_add_test(tc, test_response_limits);
    tcase_add_test(tc, test_response_hop_by_hop);
    suite_add_tcase(s, tc);

    tc = tcase_create("chunked");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_chunked, 0, (int)LEN(chunk_cases));
    tcase_add_test(tc, test_chunked_sticky);
    tcase_add_test(tc, test_chunked_limits);
    suite_add_tcase(s, tc);

    tc = tcase_create("misc");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_reason);
    suite_add_tcase(s, tc);
    return s;
}
