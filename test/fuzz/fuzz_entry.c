/*
 * Fuzz target for cache/entry.c (and, on the same bytes, the header parsers of cache/policy.c). Besides
 * looking for crashes, it checks contracts and aborts when one is broken:
 *  - decoding arbitrary bytes returns 0 or one of the CACHE_ENTRY_E* codes, leaves *out zeroed on
 *    failure, and on success every decoded pointer lies inside the input and re-encoding the decoded
 *    entry gives back exactly the input (the format is canonical);
 *  - an entry built from the input (header lines "name: value" split at '\n', times and sizes from the
 *    first bytes) round-trips through encode/decode unchanged, and every shorter prefix of its record
 *    is ETRUNC;
 *  - the policy functions, fed the same lines as request and response headers, keep their invariants:
 *    lifetimes and ages within [0, 2^31], ttl = lifetime - age, storable <=> no reason, ranges inside
 *    the representation, a secondary key always matches the request it was built from, dates
 *    round-trip through the formatter, Cache-Status output stays printable.
 * Built with clang -fsanitize=fuzzer for fuzzing, or with test/fuzz/replay.c to run the corpus.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/entry.h"
#include "cache/policy.h"
#include "lib/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_LINES 64

#define CHECK(e)     \
    do {             \
        if (!(e))    \
            abort(); \
    } while (0)

static bool inside(const void *p, size_t n, const void *buf, size_t len)
{
    const char *c = p, *b = buf;

    if (n == 0)
        return true;
    return c != NULL && c >= b && n <= len && (size_t)(c - b) <= len - n;
}

/* cdn_buf_data() of a buffer that never allocated is NULL + 0, which UBSan (clang) rejects. */
static const char *bdata(const struct cdn_buf *b)
{
    return b->len > 0 ? cdn_buf_data(b) : "";
}

static bool same_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static uint64_t read_u64(const uint8_t *data, size_t size, size_t off)
{
    uint64_t v = 0;
    size_t i;

    for (i = 0; i < 8 && off + i < size; i++)
        v |= (uint64_t)data[off + i] << (8 * i);
    return v;
}

/* Contract 1: arbitrary bytes through the decoder. */
static void check_decode(const uint8_t *data, size_t size)
{
    static struct cdn_http_header h[CDN_HTTP_MAX_HEADERS];
    struct cache_entry e, again;
    struct cdn_buf b;
    int rc, k;

    rc = cache_entry_decode(data, size, &e);
    if (rc != 0) {
        CHECK(rc == CACHE_ENTRY_EMAGIC || rc == CACHE_ENTRY_EVERSION || rc == CACHE_ENTRY_ETRUNC ||
              rc == CACHE_ENTRY_ECHECKSUM || rc == CACHE_ENTRY_EFORMAT);
        CHECK(e.key == NULL && e.raw_headers == NULL && e.num_headers == 0);
        CHECK(cache_entry_strerror(rc) != NULL);
        return;
    }
    CHECK(e.status >= 200 && e.status <= 599);
    CHECK(inside(e.key, e.key_len, data, size) && inside(e.vary, e.vary_len, data, size) &&
          inside(e.secondary_key, e.secondary_key_len, data, size) &&
          inside(e.raw_headers, e.raw_headers_len, data, size));
    k = cache_entry_headers(&e, h, CDN_HTTP_MAX_HEADERS);
    CHECK(k >= 0 && (size_t)k == e.num_headers);
    for (int i = 0; i < k; i++)
        CHECK(inside(h[i].name, h[i].name_len, data, size) && inside(h[i].value, h[i].value_len, data, size));
    again = e;
    again.headers = h;
    cdn_buf_init(&b);
    CHECK(cache_entry_encode(&again, &b) == 0);
    CHECK(same_bytes(bdata(&b), b.len, (const char *)data, size));
    cdn_buf_dispose(&b);
}

/* Splits the input into "name: value" lines (lines without a colon are skipped). */
static size_t split_lines(const char *s, size_t n, struct cdn_http_header *h)
{
    size_t count = 0, i = 0;

    while (i < n && count < MAX_LINES) {
        const char *line = s + i, *eol = memchr(line, '\n', n - i), *colon;
        size_t len = eol != NULL ? (size_t)(eol - line) : n - i;

        i += len + 1;
        colon = memchr(line, ':', len);
        if (colon == NULL)
            continue;
        h[count].name = line;
        h[count].name_len = (size_t)(colon - line);
        h[count].value = colon + 1;
        h[count].value_len = len - h[count].name_len - 1;
        while (h[count].value_len > 0 && (h[count].value[0] == ' ' || h[count].value[0] == '\t')) {
            h[count].value++;
            h[count].value_len--;
        }
        h[count].hop_by_hop = (line[0] & 1) != 0 && len > 40;
        count++;
    }
    return count;
}

static bool storable_line(const struct cdn_http_header *x)
{
    size_t i;

    if (x->name_len == 0)
        return false;
    for (i = 0; i < x->name_len; i++) {
        unsigned char c = (unsigned char)x->name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL)))
            return false;
    }
    return memchr(x->value, '\r', x->value_len) == NULL && memchr(x->value, '\0', x->value_len) == NULL;
}

/* Contract 2: an entry made from the input round-trips. */
static void check_round_trip(const uint8_t *data, size_t size, const struct cdn_http_header *lines, size_t n)
{
    static struct cdn_http_header keep[MAX_LINES], back[CDN_HTTP_MAX_HEADERS];
    struct cache_entry e, d;
    struct cdn_buf b;
    size_t k = 0, i, len, third = size / 3;
    uint8_t *copy;

    for (i = 0; i < n; i++) {
        if (storable_line(&lines[i]))
            keep[k++] = lines[i];
    }
    memset(&e, 0, sizeof(e));
    e.status = 200 + (size > 0 ? data[0] : 0) % 400;
    e.request_time = (int64_t)read_u64(data, size, 1);
    e.response_time = (int64_t)read_u64(data, size, 9);
    e.body_size = read_u64(data, size, 17);
    e.flags = size > 25 ? data[25] & CACHE_ENTRY_F_ALL : 0;
    e.key = (const char *)data;
    e.key_len = third;
    e.vary = (const char *)data + third;
    e.vary_len = third / 2;
    e.secondary_key = (const char *)data + 2 * third;
    e.secondary_key_len = size - 2 * third;
    e.headers = keep;
    e.num_headers = k;

    cdn_buf_init(&b);
    CHECK(cache_entry_encode(&e, &b) == 0);
    len = b.len;
    /* An exact-size heap copy so that the sanitizer sees reads past the end. */
    copy = malloc(len);
    CHECK(copy != NULL);
    memcpy(copy, bdata(&b), len);
    cdn_buf_dispose(&b);
    CHECK(cache_entry_decode(copy, len, &d) == 0);
    CHECK(d.status == e.status && d.request_time == e.request_time && d.response_time == e.response_time &&
          d.body_size == e.body_size && d.flags == e.flags && d.num_headers == k);
    CHECK(same_bytes(d.key, d.key_len, e.key, e.key_len) &&
          same_bytes(d.vary, d.vary_len, e.vary, e.vary_len) &&
          same_bytes(d.secondary_key, d.secondary_key_len, e.secondary_key, e.secondary_key_len));
    CHECK(cache_entry_headers(&d, back, CDN_HTTP_MAX_HEADERS) == (int)k);
    for (i = 0; i < k; i++) {
        CHECK(same_bytes(back[i].name, back[i].name_len, keep[i].name, keep[i].name_len));
        CHECK(same_bytes(back[i].value, back[i].value_len, keep[i].value, keep[i].value_len));
    }
    /* Prefixes (a sample of them for big records): always ETRUNC. */
    for (i = 0; i < len; i += 1 + len / 256)
        CHECK(cache_entry_decode(copy, i, &d) == CACHE_ENTRY_ETRUNC);
    /* One flipped byte past the version: ETRUNC, EFORMAT or ECHECKSUM, never success. */
    if (len > 6 && size > 0) {
        size_t at = 6 + data[size - 1] * 7919u % (len - 6);
        int rc;

        copy[at] ^= 0x5a;
        rc = cache_entry_decode(copy, len, &d);
        CHECK(rc == CACHE_ENTRY_ETRUNC || rc == CACHE_ENTRY_EFORMAT || rc == CACHE_ENTRY_ECHECKSUM);
    }
    free(copy);
}

static bool printable(const char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] > 0x7e)
            return false;
    }
    return true;
}

/* Contract 3: policy invariants on hostile headers. */
static void check_policy(const uint8_t *data, size_t size, const struct cdn_http_header *h, size_t n)
{
    static const struct cache_policy_cfg cfg = {0.25, 3600, "X-Cache-Control"};
    static const int statuses[] = {200, 206, 302, 404, 500, 599};
    static struct cdn_http_header out[2 * MAX_LINES];
    struct cache_request_info req;
    struct cache_response_info res;
    struct cache_decision d;
    struct cache_str inv[CACHE_INVALIDATE_MAX];
    struct cdn_http_header val[2];
    struct cdn_buf names, key, cs;
    int64_t base = (int64_t)(read_u64(data, size, 0) % 4000000000ULL), t, life, age;
    uint64_t first, last, sz = size > 0 ? data[0] * 37u : 0;
    const char *why;
    size_t i, k;
    int m;

    cache_policy_parse_request(h, n, &req);
    for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        cache_policy_parse_response(i % 2 ? &cfg : NULL, statuses[i], h, n, &res);
        why = NULL;
        CHECK(cache_policy_is_storable("GET", 3, &req, &res, &why) == (why == NULL));
        life = cache_policy_freshness_lifetime(&cfg, &res, base);
        CHECK(life >= 0 && life <= CACHE_DELTA_MAX);
        age = cache_policy_current_age(&res, base - 3, base, base + (int64_t)(size % 1000));
        CHECK(age >= 0 && age <= CACHE_DELTA_MAX);
        m = (int)cache_policy_decide(NULL, &res, base - 3, base, &req, base + (int64_t)size, &d);
        CHECK(m >= CACHE_USE_FRESH && m <= CACHE_USE_REVALIDATE && d.why != NULL);
        CHECK(d.ttl == d.lifetime - d.age);
        (void)cache_policy_stale_if_error_ok(&res, &req, &d, size % 2 ? 503 : 0);
        k = cache_policy_validators(&res, val);
        CHECK(k <= 2);
        (void)cache_policy_not_modified("GET", 3, h, n, &res, base);
        if (cache_policy_range("GET", 3, h, n, &res, sz, &first, &last) == CACHE_RANGE_PARTIAL)
            CHECK(first <= last && last < sz);
    }
    k = cache_policy_filter_headers(h, n, &res.cc, out);
    CHECK(k <= n);
    m = cache_policy_merge_304(h, n, h, n, out, 2 * MAX_LINES);
    CHECK(m >= 0 && (size_t)m <= 2 * n);
    k = cache_policy_invalidations("POST", 4, "example.com", 11, "/", 1, 201, h, n, inv);
    CHECK(k >= 1 && k <= CACHE_INVALIDATE_MAX);

    cdn_buf_init(&names);
    cdn_buf_init(&key);
    if (cache_policy_vary_names(h, n, &names)) {
        cache_policy_vary_key(bdata(&names), names.len, h, n, &key);
        CHECK(cache_policy_vary_match(bdata(&names), names.len, h, n, bdata(&key), key.len));
    }
    /* Vary names taken from the input itself, against the same lines as a request. */
    cdn_buf_dispose(&key);
    cdn_buf_init(&key);
    if (n > 0) {
        cache_policy_vary_key(h[0].value, h[0].value_len, h, n, &key);
        CHECK(cache_policy_vary_match(h[0].value, h[0].value_len, h, n, bdata(&key), key.len));
    }
    cdn_buf_dispose(&names);
    cdn_buf_dispose(&key);

    for (i = 0; i < n; i++) {
        char buf[32], *detail;
        struct cache_status st = {"edge", false, "miss", 200, true, false, true, (int64_t)i - 5, NULL, NULL};

        t = cache_policy_parse_http_date(h[i].value, h[i].value_len);
        if (t >= 0) {
            cache_policy_format_http_date(t, buf);
            CHECK(cache_policy_parse_http_date(buf, strlen(buf)) == t);
        }
        if (cache_policy_parse_range(h[i].value, h[i].value_len, sz, &first, &last) == CACHE_RANGE_PARTIAL)
            CHECK(first <= last && last < sz);
        detail = malloc(h[i].value_len + 1);
        CHECK(detail != NULL);
        memcpy(detail, h[i].value, h[i].value_len);
        detail[h[i].value_len] = '\0';
        st.detail = detail;
        st.key = detail;
        cdn_buf_init(&cs);
        cache_policy_cache_status(&st, NULL, 0, &cs);
        CHECK(printable(bdata(&cs), cs.len));
        cdn_buf_dispose(&cs);
        free(detail);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cdn_http_header lines[MAX_LINES];
    size_t n;

    check_decode(data, size);
    n = split_lines((const char *)data, size, lines);
    check_round_trip(data, size, lines, n);
    check_policy(data, size, lines, n);
    return 0;
}
