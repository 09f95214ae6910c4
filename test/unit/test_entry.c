/*
 * Tests for cache/entry.c: encode/decode round trips, and that every class of damage is detected with
 * the right error: truncation at every length, every byte flipped, extra bytes, other versions, and
 * records whose CRC is right but whose contents are not (what a buggy or hostile writer could produce).
 */
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "cache/entry.h"
#include "lib/buf.h"
#include "lib/util.h"
#include "test/unit/suites.h"

#define HDR(n, v)                                 \
    {                                             \
        n, sizeof(n) - 1, v, sizeof(v) - 1, false \
    }

static const struct cdn_http_header sample_headers[] = {
    HDR("Content-Type", "text/html; charset=utf-8"),
    HDR("ETag", "\"abc\""),
    HDR("Cache-Control", "max-age=60"),
    HDR("X-Empty", ""),
};

static void sample(struct cache_entry *e)
{
    memset(e, 0, sizeof(*e));
    e->status = 200;
    e->request_time = 1700000000;
    e->response_time = 1700000001;
    e->body_size = 5ULL << 32;
    e->flags = CACHE_ENTRY_F_COMPLETE;
    e->key = "https://example.com/index.html";
    e->key_len = strlen(e->key);
    e->vary = "accept-encoding";
    e->vary_len = strlen(e->vary);
    e->secondary_key = "accept-encoding=4:gzip\n";
    e->secondary_key_len = strlen(e->secondary_key);
    e->headers = sample_headers;
    e->num_headers = sizeof(sample_headers) / sizeof(sample_headers[0]);
}

/* Encodes the sample into a fresh heap copy of exactly the record's size (so ASan sees overreads). */
static unsigned char *encode_sample(size_t *n)
{
    struct cache_entry e;
    struct cdn_buf b;
    unsigned char *p;

    sample(&e);
    cdn_buf_init(&b);
    ck_assert_int_eq(cache_entry_encode(&e, &b), 0);
    *n = b.len;
    p = malloc(b.len);
    ck_assert_ptr_nonnull(p);
    memcpy(p, cdn_buf_data(&b), b.len);
    cdn_buf_dispose(&b);
    return p;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* After editing a record in a test: make its CRC right again. */
static void fix_crc(unsigned char *p, size_t n)
{
    put_u32(p + n - 4, cache_entry_crc32(0, p, n - 4));
}

static bool str_eq(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

START_TEST(test_round_trip)
{
    struct cache_entry in, out;
    struct cdn_http_header h[CDN_HTTP_MAX_HEADERS];
    unsigned char *p;
    size_t n, i;
    int k;

    sample(&in);
    p = encode_sample(&n);
    ck_assert_int_eq(cache_entry_decode(p, n, &out), 0);
    ck_assert_int_eq(out.status, 200);
    ck_assert_int_eq(out.request_time, in.request_time);
    ck_assert_int_eq(out.response_time, in.response_time);
    ck_assert(out.body_size == in.body_size);
    ck_assert_uint_eq(out.flags, CACHE_ENTRY_F_COMPLETE);
    ck_assert(str_eq(out.key, out.key_len, in.key, in.key_len));
    ck_assert(str_eq(out.vary, out.vary_len, in.vary, in.vary_len));
    ck_assert(str_eq(out.secondary_key, out.secondary_key_len, in.secondary_key, in.secondary_key_len));
    ck_assert_ptr_null(out.headers);
    ck_assert_uint_eq(out.num_headers, in.num_headers);
    /* Zero-copy: the decoded strings live inside the record. */
    ck_assert((const unsigned char *)out.key >= p && (const unsigned char *)out.key < p + n);
    k = cache_entry_headers(&out, h, CDN_HTTP_MAX_HEADERS);
    ck_assert_int_eq(k, (int)in.num_headers);
    for (i = 0; i < in.num_headers; i++) {
        ck_assert(str_eq(h[i].name, h[i].name_len, in.headers[i].name, in.headers[i].name_len));
        ck_assert(str_eq(h[i].value, h[i].value_len, in.headers[i].value, in.headers[i].value_len));
        ck_assert(!h[i].hop_by_hop);
        ck_assert((const unsigned char *)h[i].name >= p && (const unsigned char *)h[i].name < p + n);
    }
    ck_assert_int_eq(cache_entry_headers(&out, h, in.num_headers - 1), CDN_ELIMIT);
    free(p);
}
END_TEST

START_TEST(test_minimal_and_negative_times)
{
    struct cache_entry in, out;
    struct cdn_buf b;

    memset(&in, 0, sizeof(in));
    in.status = 599;
    in.request_time = -5;
    in.response_time = INT64_MIN;
    cdn_buf_init(&b);
    cdn_buf_append(&b, "xyz", 3); /* encode appends; existing bytes stay */
    ck_assert_int_eq(cache_entry_encode(&in, &b), 0);
    ck_assert_uint_eq(b.len, 3 + CACHE_ENTRY_MIN_SIZE);
    ck_assert_int_eq(memcmp(cdn_buf_data(&b), "xyz", 3), 0);
    ck_assert_int_eq(cache_entry_decode(cdn_buf_data(&b) + 3, b.len - 3, &out), 0);
    ck_assert_int_eq(out.status, 599);
    ck_assert_int_eq(out.request_time, -5);
    ck_assert(out.response_time == INT64_MIN);
    ck_assert_uint_eq(out.key_len + out.vary_len + out.secondary_key_len + out.num_headers, 0);
    cdn_buf_dispose(&b);
}
END_TEST

START_TEST(test_encode_rejects)
{
    static const struct cdn_http_header bad_name[] = {HDR("Bad Name", "x")};
    static const struct cdn_http_header empty_name[] = {{"", 0, "x", 1, false}};
    static const struct cdn_http_header crlf[] = {HDR("X-A", "a\r\nX-Injected: 1")};
    static const struct cdn_http_header nul[] = {{"X-A", 3, "a\0b", 3, false}};
    static struct cdn_http_header many[CDN_HTTP_MAX_HEADERS + 1];
    struct cache_entry e;
    struct cdn_buf b;
    size_t i;

    for (i = 0; i < CDN_HTTP_MAX_HEADERS + 1; i++)
        many[i] = (struct cdn_http_header)HDR("X", "y");
    cdn_buf_init(&b);
    sample(&e);
    e.status = 199;
    ck_assert_int_eq(cache_entry_encode(&e, &b), CDN_EINVAL);
    e.status = 600;
    ck_assert_int_eq(cache_entry_encode(&e, &b), CDN_EINVAL);
    sample(&e);
    e.flags = 0x80;
    ck_assert_int_eq(cache_entry_encode(&e, &b), CDN_EINVAL);
    sample(&e);
    e.headers = bad_name;
    e.num_headers = 1;
    ck_assert_int_eq(cache_entry_encode(&e, &b), CDN_EINVAL);
    e.headers = empty_name;
    ck_assert_int_eq(cache_entry_encode(&e, &b), CDN_EINVAL);
    e.headers = crlf;
    ck_assert_int_eq(cache_entry_encode(&e, &b), CDN_EINVAL);
    e.headers = nul;
    ck_assert_int_eq(cache_entry_encode(&e, &b), CDN_EINVAL);
    e.headers = many;
    e.num_headers = CDN_HTTP_MAX_HEADERS + 1;
    ck_assert_int_eq(cache_entry_encode(&e, &b), CDN_EINVAL);
    e.num_headers = CDN_HTTP_MAX_HEADERS;
    ck_assert_uint_eq(b.len, 0); /* nothing appended by the failures */
    ck_assert_int_eq(cache_entry_encode(&e, &b), 0);
    cdn_buf_dispose(&b);
}
END_TEST

START_TEST(test_truncated_at_every_length)
{
    struct cache_entry out;
    unsigned char *p, *q;
    size_t n, len;

    p = encode_sample(&n);
    for (len = 0; len < n; len++) {
        /* An exact-size copy so that any read past len is an ASan error. */
        q = malloc(len != 0 ? len : 1);
        ck_assert_ptr_nonnull(q);
        memcpy(q, p, len);
        ck_assert_msg(cache_entry_decode(q, len, &out) == CACHE_ENTRY_ETRUNC, "length %zu", len);
        ck_assert_ptr_null(out.key);
        free(q);
    }
    free(p);
}
END_TEST

START_TEST(test_trailing_bytes)
{
    struct cache_entry out;
    unsigned char *p, *q;
    size_t n;

    p = encode_sample(&n);
    q = malloc(n + 1);
    ck_assert_ptr_nonnull(q);
    memcpy(q, p, n);
    q[n] = 0;
    ck_assert_int_eq(cache_entry_decode(q, n + 1, &out), CACHE_ENTRY_EFORMAT);
    free(q);
    free(p);
}
END_TEST

/* Every byte flipped, and every single bit flipped: always an error, and the right one. */
START_TEST(test_flipped_bytes)
{
    struct cache_entry out;
    unsigned char *p;
    size_t n, i;
    int bit, rc, want;

    p = encode_sample(&n);
    for (i = 0; i < n; i++) {
        for (bit = -1; bit < 8; bit++) {
            unsigned char mask = bit < 0 ? 0xff : (unsigned char)(1u << bit);

            p[i] ^= mask;
            rc = cache_entry_decode(p, n, &out);
            if (i < 4)
                want = CACHE_ENTRY_EMAGIC;
            else if (i < 6)
                want = CACHE_ENTRY_EVERSION;
            else if (i >= 8 && i < 12)
                want = rc == CACHE_ENTRY_ETRUNC ? CACHE_ENTRY_ETRUNC : CACHE_ENTRY_EFORMAT;
            else
                want = CACHE_ENTRY_ECHECKSUM;
            ck_assert_msg(rc == want, "byte %zu mask %02x: %d", i, mask, rc);
            p[i] ^= mask;
        }
    }
    ck_assert_int_eq(cache_entry_decode(p, n, &out), 0);
    free(p);
}
END_TEST

START_TEST(test_version_mismatch)
{
    struct cache_entry out;
    unsigned char *p;
    size_t n;

    p = encode_sample(&n);
    p[4] = CACHE_ENTRY_VERSION + 1; /* a newer format, with a correct CRC */
    fix_crc(p, n);
    ck_assert_int_eq(cache_entry_decode(p, n, &out), CACHE_ENTRY_EVERSION);
    p[4] = 0;
    fix_crc(p, n);
    ck_assert_int_eq(cache_entry_decode(p, n, &out), CACHE_ENTRY_EVERSION);
    p[4] = 1;
    p[5] = 1; /* 257 */
    ck_assert_int_eq(cache_entry_decode(p, n, &out), CACHE_ENTRY_EVERSION);
    free(p);
    ck_assert_int_eq(cache_entry_decode("CDNX\x01\x00", 6, &out), CACHE_ENTRY_EMAGIC);
    ck_assert_int_eq(cache_entry_decode("GET / HTTP/1.1\r\n", 16, &out), CACHE_ENTRY_EMAGIC);
}
END_TEST

/* The CRC is right, the content is not: EFORMAT. Offsets follow the layout in entry.h. */
START_TEST(test_bad_content_with_good_crc)
{
    static const struct {
        size_t off;
        unsigned char val;
        const char *what;
    } edits[] = {
        {6, 1, "reserved after version"},
        {14, 1, "reserved after status"},
        {12, 99, "status 99"},
        {13, 0x03, "status 968"},
        {40, 0x02, "unknown flag"},
        {41, 0x01, "unknown flag (high)"},
        {44, 0xff, "too many headers"},
        {44, 3, "fewer headers than present"},
        {44, 5, "more headers than present"},
        {50, 0x01, "key length past the end"},
        {51, 0x80, "key length huge"},
    };
    struct cache_entry out;
    unsigned char *p;
    size_t n, i, name_off;

    for (i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
        p = encode_sample(&n);
        p[edits[i].off] = edits[i].val;
        fix_crc(p, n);
        ck_assert_msg(cache_entry_decode(p, n, &out) == CACHE_ENTRY_EFORMAT, "%s", edits[i].what);
        ck_assert_ptr_null(out.key);
        free(p);
    }
    /* A header name with a space, and a value with a CR, written by a broken encoder. */
    p = encode_sample(&n);
    name_off = (size_t)((unsigned char *)memmem(p, n, "Content-Type", 12) - p);
    p[name_off + 7] = ' ';
    fix_crc(p, n);
    ck_assert_int_eq(cache_entry_decode(p, n, &out), CACHE_ENTRY_EFORMAT);
    free(p);
    p = encode_sample(&n);
    name_off = (size_t)((unsigned char *)memmem(p, n, "max-age=60", 10) - p);
    p[name_off + 3] = '\r';
    fix_crc(p, n);
    ck_assert_int_eq(cache_entry_decode(p, n, &out), CACHE_ENTRY_EFORMAT);
    free(p);
    /* A record length below the minimum. */
    p = encode_sample(&n);
    put_u32(p + 8, CACHE_ENTRY_MIN_SIZE - 1);
    ck_assert_int_eq(cache_entry_decode(p, n, &out), CACHE_ENTRY_EFORMAT);
    free(p);
}
END_TEST

START_TEST(test_crc_and_strerror)
{
    ck_assert_uint_eq(cache_entry_crc32(0, "123456789", 9), 0xE3069283u);
    ck_assert_uint_eq(cache_entry_crc32(0, "", 0), 0);
    /* Incremental use gives the same result. */
    ck_assert_uint_eq(cache_entry_crc32(cache_entry_crc32(0, "1234", 4), "56789", 5), 0xE3069283u);
    ck_assert_str_eq(cache_entry_strerror(CACHE_ENTRY_EMAGIC), "not a cache entry (bad magic)");
    ck_assert_str_eq(cache_entry_strerror(CACHE_ENTRY_EVERSION), "unsupported cache entry version");
    ck_assert_str_eq(cache_entry_strerror(CACHE_ENTRY_ETRUNC), "truncated cache entry");
    ck_assert_str_eq(cache_entry_strerror(CACHE_ENTRY_ECHECKSUM), "cache entry checksum mismatch");
    ck_assert_str_eq(cache_entry_strerror(CACHE_ENTRY_EFORMAT), "malformed cache entry");
    ck_assert_str_eq(cache_entry_strerror(CDN_EINVAL), cdn_strerror(CDN_EINVAL));
}
END_TEST

Suite *suite_entry(void)
{
    Suite *s = suite_create("entry");
    TCase *tc = tcase_create("format");

    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_minimal_and_negative_times);
    tcase_add_test(tc, test_encode_rejects);
    tcase_add_test(tc, test_truncated_at_every_length);
    tcase_add_test(tc, test_trailing_bytes);
    tcase_add_test(tc, test_flipped_bytes);
    tcase_add_test(tc, test_version_mismatch);
    tcase_add_test(tc, test_bad_content_with_good_crc);
    tcase_add_test(tc, test_crc_and_strerror);
    suite_add_tcase(s, tc);
    return s;
}
