/*
 * Fuzz target for lib/http1.c. Besides looking for crashes, it checks the parsers' contracts and aborts
 * when one is broken:
 *  - every prefix of the input parses to EAGAIN or to the answer for the whole input, and once a prefix
 *    has an answer every longer prefix has the same one (incremental == one-shot);
 *  - once a request head parses, every shorter prefix is EAGAIN;
 *  - parsed fields point into the input and headers are OWS-trimmed;
 *  - the chunked decoder gives the same bytes, answer and consumption for one-shot and random slices, on
 *    the raw input and on the body after a request or response head that announces chunked.
 * Built with clang -fsanitize=fuzzer for fuzzing, or with test/fuzz/replay.c to run the corpus.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The prefix checks are quadratic; beyond this the input is still parsed, just not every prefix. */
#define PREFIX_CHECK_MAX 8192

#define CHECK(e)     \
    do {             \
        if (!(e))    \
            abort(); \
    } while (0)

static bool inside(const char *p, size_t n, const char *buf, size_t len)
{
    return p != NULL && p >= buf && n <= len && p - buf <= (ptrdiff_t)(len - n);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void check_headers(const struct cdn_http_header *h, size_t n, size_t max, const char *buf, size_t len)
{
    size_t i;

    CHECK(n <= max && n <= CDN_HTTP_MAX_HEADERS);
    for (i = 0; i < n; i++) {
        CHECK(h[i].name_len > 0 && inside(h[i].name, h[i].name_len, buf, len));
        CHECK(inside(h[i].value, h[i].value_len, buf, len));
        if (h[i].value_len > 0)
            CHECK(!is_ows(h[i].value[0]) && !is_ows(h[i].value[h[i].value_len - 1]));
        CHECK(memchr(h[i].value, '\r', h[i].value_len) == NULL &&
              memchr(h[i].value, '\n', h[i].value_len) == NULL);
        CHECK(cdn_http1_find_header(h, n, "x-never-sent-by-anyone-\x01") == NULL);
    }
}

static bool same_headers(const struct cdn_http_header *a, const struct cdn_http_header *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (a[i].name != b[i].name || a[i].name_len != b[i].name_len || a[i].value != b[i].value ||
            a[i].value_len != b[i].value_len || a[i].hop_by_hop != b[i].hop_by_hop)
            return false;
    }
    return true;
}

static bool same_request(const struct cdn_http_request *a, const struct cdn_http_request *b)
{
    return a->method == b->method && a->method_len == b->method_len && a->target == b->target &&
           a->target_len == b->target_len && a->path_len == b->path_len &&
           (a->path == b->path || memcmp(a->path, b->path, a->path_len) == 0) && a->host == b->host &&
           a->host_len == b->host_len && a->minor_version == b->minor_version &&
           a->num_headers == b->num_headers && same_headers(a->headers, b->headers, a->num_headers) &&
           a->body_kind == b->body_kind && a->content_length == b->content_length &&
           a->keep_alive == b->keep_alive && a->expect_continue == b->expect_continue;
}

static bool same_response(const struct cdn_http_response *a, const struct cdn_http_response *b)
{
    return a->minor_version == b->minor_version && a->status == b->status && a->reason == b->reason &&
           a->reason_len == b->reason_len && a->num_headers == b->num_headers &&
           same_headers(a->headers, b->headers, a->num_headers) && a->body_kind == b->body_kind &&
           a->content_length == b->content_length && a->keep_alive == b->keep_alive;
}

static bool valid_rc(int rc, size_t len)
{
    switch (rc) {
    case CDN_HTTP_EAGAIN:
    case CDN_HTTP_EBAD:
    case CDN_HTTP_ETOOLONG:
    case CDN_HTTP_ETOOBIG:
    case CDN_HTTP_ENOTIMPL:
    case CDN_HTTP_EVERSION:
        return true;
    default:
        return rc > 0 && (size_t)rc <= len;
    }
}

static void check_request(const char *buf, size_t len, const struct cdn_http_limits *lim, size_t max_headers)
{
    static struct cdn_http_request full, part;
    bool decided = false;
    size_t k;
    int want, rc;

    want = cdn_http1_parse_request(buf, len, lim, &full);
    CHECK(valid_rc(want, len));
    if (want > 0) {
        CHECK(full.method_len > 0 && inside(full.method, full.method_len, buf, len));
        CHECK(full.target_len > 0 && inside(full.target, full.target_len, buf, len));
        CHECK(full.path_len > 0 &&
              (inside(full.path, full.path_len, buf, len) || strcmp(full.path, "/") == 0));
        CHECK(full.host == NULL || (full.host_len > 0 && inside(full.host, full.host_len, buf, len)));
        CHECK(full.minor_version == 1 ? full.host != NULL : full.minor_version == 0);
        CHECK(full.body_kind != CDN_HTTP_BODY_EOF);
        CHECK(full.body_kind == CDN_HTTP_BODY_LENGTH || full.content_length == 0);
        CHECK(full.content_length <= (uint64_t)1 << 62);
        CHECK(full.body_kind != CDN_HTTP_BODY_CHUNKED || full.minor_version == 1);
        CHECK(buf[want - 1] == '\n' && buf[want - 2] == '\r');
        check_headers(full.headers, full.num_headers, max_headers, buf, len);
    }
    if (len > PREFIX_CHECK_MAX)
        return;
    for (k = 0; k <= len; k++) {
        rc = cdn_http1_parse_request(buf, k, lim, &part);
        if (rc == CDN_HTTP_EAGAIN) {
            CHECK(!decided);
            continue;
        }
        decided = true;
        CHECK(rc == want);
        if (want > 0)
            CHECK(k >= (size_t)want && same_request(&part, &full));
    }
    if (want > 0)
        CHECK(cdn_http1_parse_request(buf, (size_t)want - 1, lim, &part) == CDN_HTTP_EAGAIN);
}

static void check_response(const char *buf, size_t len, const struct cdn_http_limits *lim, size_t max_headers,
                           bool is_head)
{
    static struct cdn_http_response full, part;
    bool decided = false;
    size_t k;
    int want, rc;

    want = cdn_http1_parse_response(buf, len, lim, is_head, &full);
    CHECK(valid_rc(want, len) && want != CDN_HTTP_ETOOLONG && want != CDN_HTTP_ENOTIMPL);
    if (want > 0) {
        CHECK(full.status >= 100 && full.status <= 599);
        CHECK(inside(full.reason, full.reason_len, buf, len));
        CHECK(!is_head || full.body_kind == CDN_HTTP_BODY_NONE);
        CHECK(full.body_kind != CDN_HTTP_BODY_EOF || !full.keep_alive);
        CHECK(full.body_kind == CDN_HTTP_BODY_LENGTH || full.content_length == 0);
        check_headers(full.headers, full.num_headers, max_headers, buf, len);
    }
    if (len > PREFIX_CHECK_MAX)
        return;
    for (k = 0; k <= len; k++) {
        rc = cdn_http1_parse_response(buf, k, lim, is_head, &part);
        if (rc == CDN_HTTP_EAGAIN) {
            CHECK(!decided);
            continue;
        }
        decided = true;
        CHECK(rc == want);
        if (want > 0)
            CHECK(k >= (size_t)want && same_response(&part, &full));
    }
}

/* xorshift64: slice sizes must be a function of the input so that crashes reproduce. */
static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Decodes in[0..len) in slices of random size (max_slice 0: all at once). Appends the data to out. */
static int decode(const char *in, size_t len, size_t max_slice, uint64_t seed, size_t max_line, char *out,
                  size_t *out_len, size_t *consumed_total)
{
    struct cdn_http_chunked d;
    size_t off = 0, end, consumed, dlen;
    const char *data;
    int rc = CDN_HTTP_EAGAIN;

    cdn_http1_chunked_init(&d);
    if (max_line != 0)
        d.max_line = max_line;
    *out_len = 0;
    while (off < len) {
        end = len;
        if (max_slice != 0) {
            size_t n = (size_t)(next_rand(&seed) % max_slice) + 1;

            if (n < len - off)
                end = off + n;
        }
        for (;;) {
            rc = cdn_http1_chunked_decode(&d, in + off, end - off, &consumed, &data, &dlen);
            CHECK(consumed <= end - off);
            off += consumed;
            if (rc != 0)
                break;
            CHECK(dlen > 0 && inside(data, dlen, in, len));
            memcpy(out + *out_len, data, dlen);
            *out_len += dlen;
        }
        if (rc != CDN_HTTP_EAGAIN)
            break;
        CHECK(off == end);
    }
    CHECK(rc == CDN_HTTP_EAGAIN || rc == 1 || rc == CDN_HTTP_EBAD);
    /* Finished and failed decoders stay that way and take nothing more. */
    if (rc != CDN_HTTP_EAGAIN) {
        CHECK(cdn_http1_chunked_decode(&d, in, len, &consumed, &data, &dlen) == rc &&
              (rc != 1 || consumed == 0));
    }
    *consumed_total = off;
    return rc;
}

static void check_chunked(const char *in, size_t len, uint64_t seed)
{
    char *one = malloc(len + 1), *other = malloc(len + 1);
    size_t one_len, one_consumed, other_len, other_consumed, i;
    static const size_t slices[] = {1, 2, 3, 7, 64};
    int one_rc, rc;

    CHECK(one != NULL && other != NULL);
    one_rc = decode(in, len, 0, seed, 0, one, &one_len, &one_consumed);
    for (i = 0; i < sizeof(slices) / sizeof(slices[0]); i++) {
        rc = decode(in, len, slices[i], seed + i, 0, other, &other_len, &other_consumed);
        CHECK(rc == one_rc && other_len == one_len && other_consumed == one_consumed);
        CHECK(memcmp(one, other, one_len) == 0);
    }
    /* A tight line limit exercises the limit paths; it must agree between slicings too. */
    one_rc = decode(in, len, 0, seed, 16, one, &one_len, &one_consumed);
    rc = decode(in, len, 5, seed, 16, other, &other_len, &other_consumed);
    CHECK(rc == one_rc && other_len == one_len && other_consumed == one_consumed);
    free(one);
    free(other);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    const struct cdn_http_limits small = {128, 4};
    struct cdn_http_request *req = malloc(sizeof(*req));
    struct cdn_http_response *res;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    size_t i;
    int rc;

    CHECK(req != NULL);
    for (i = 0; i < size && i < 64; i++)
        seed = (seed ^ data[i]) * 0x100000001b3ULL;
    if (seed == 0)
        seed = 1;

    check_request(buf, size, NULL, 100);
    check_request(buf, size, &small, small.max_headers);
    check_response(buf, size, NULL, 100, false);
    check_response(buf, size, NULL, 100, true);
    check_response(buf, size, &small, small.max_headers, false);
    check_chunked(buf, size, seed);

    /* A request with a chunked body: decode what follows its head, as the server would. */
    rc = cdn_http1_parse_request(buf, size, NULL, req);
    if (rc > 0 && req->body_kind == CDN_HTTP_BODY_CHUNKED)
        check_chunked(buf + rc, size - (size_t)rc, seed);
    free(req);
    res = malloc(sizeof(*res));
    CHECK(res != NULL);
    rc = cdn_http1_parse_response(buf, size, NULL, false, res);
    if (rc > 0 && res->body_kind == CDN_HTTP_BODY_CHUNKED)
        check_chunked(buf + rc, size - (size_t)rc, seed);
    free(res);
    return 0;
}
