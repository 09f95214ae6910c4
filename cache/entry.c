/*
 * entry: encoding and decoding of the cache entry metadata record (format in entry.h).
 *
 * Why it is shaped this way: the record is read back from disk, possibly after a crash, a disk error
 * or a downgrade, and its headers are written straight into client responses. So decoding trusts
 * nothing: the magic and version come first (a clear error for a foreign or newer record), then the
 * length (truncation), then a CRC over everything (bit rot), and only then the fields, each bounded by
 * the record length and validated as encode would have validated it. Decoding is zero-copy because the
 * store reads it inside a short LMDB read transaction and copies only what it keeps.
 */
#include <pthread.h>
#include <string.h>

#include "cache/entry.h"
#include "lib/util.h"

/* ---------------------------------------------------------------- CRC-32C */

/* Every hit checks its record, so this is on the hot path: CRC-32C (Castagnoli), which x86-64 CPUs
 * with SSE4.2 compute in hardware (8 bytes per instruction); elsewhere slice-by-8 tables. */
static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static bool crc_hw;

#if defined(__x86_64__) && defined(__GNUC__)
#include <nmmintrin.h>
#define CRC_HW 1
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const unsigned char *b, size_t n)
{
    uint64_t c = crc;
    for (; n >= 8; b += 8, n -= 8) {
        uint64_t v;
        memcpy(&v, b, 8);
        c = _mm_crc32_u64(c, v);
    }
    uint32_t c32 = (uint32_t)c;
    while (n-- > 0)
        c32 = _mm_crc32_u8(c32, *b++);
    return c32;
}
#endif

static void crc_init(void)
{
#ifdef CRC_HW
    crc_hw = __builtin_cpu_supports("sse4.2");
#endif
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 8; t++)
            crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xffu];
    }
}

uint32_t cache_entry_crc32(uint32_t crc, const void *p, size_t n)
{
    const unsigned char *b = p;
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
#ifdef CRC_HW
    if (crc_hw)
        return ~crc32c_hw(crc, b, n);
#endif
    while (n >= 8) {
        uint32_t lo =
            crc ^ ((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
        uint32_t hi = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
        crc = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^
              crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^
              crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
        b += 8;
        n -= 8;
    }
    while (n-- > 0)
        crc = (crc >> 8) ^ crc_tab[0][(crc ^ *b++) & 0xffu];
    return ~crc;
}

/* ---------------------------------------------------------------- little-endian helpers */

static void put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_u32(unsigned char *p, uint32_t v)
{
    put_u16(p, (uint16_t)v);
    put_u16(p + 2, (uint16_t)(v >> 16));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint16_t get_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)get_u16(p) | ((uint32_t)get_u16(p + 2) << 16);
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | ((uint64_t)get_u32(p + 4) << 32);
}

/* ---------------------------------------------------------------- validation shared by both directions */


static bool name_ok(const char *p, size_t n)
{
    size_t i;

    if (n == 0)
        return false;
    for (i = 0; i < n; i++) {
        if (!cdn_http1_is_tchar((unsigned char)p[i]))
            return false;
    }
    return true;
}

static bool value_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) { /* one pass: values are short, three memchr calls cost more */
        unsigned char c = (unsigned char)p[i];
        if (c == '\r' || c == '\n' || c == '\0')
            return false;
    }
    return true;
}

/* ---------------------------------------------------------------- encode */

static void put_str(unsigned char **w, const char *s, size_t n)
{
    put_u32(*w, (uint32_t)n);
    *w += 4;
    if (n > 0)
        memcpy(*w, s, n);
    *w += n;
}

int cache_entry_encode(const struct cache_entry *e, struct cdn_buf *out)
{
    size_t total = CACHE_ENTRY_MIN_SIZE, i;
    unsigned char *start, *w;

    if (e->status < 200 || e->status > 599 || (e->flags & ~(uint32_t)CACHE_ENTRY_F_ALL) != 0 ||
        e->num_headers > CDN_HTTP_MAX_HEADERS || (e->num_headers > 0 && e->headers == NULL))
        return CDN_EINVAL;
    if (e->key_len > UINT32_MAX || e->vary_len > UINT32_MAX || e->secondary_key_len > UINT32_MAX)
        return CDN_EINVAL;
    total += e->key_len + e->vary_len + e->secondary_key_len;
    for (i = 0; i < e->num_headers; i++) {
        const struct cdn_http_header *h = &e->headers[i];

        if (h->name_len > UINT32_MAX || h->value_len > UINT32_MAX || !name_ok(h->name, h->name_len) ||
            !value_ok(h->value, h->value_len))
            return CDN_EINVAL;
        total += 8 + h->name_len + h->value_len;
    }
    if (total > UINT32_MAX)
        return CDN_EINVAL;

    start = (unsigned char *)cdn_buf_reserve(out, total);
    w = start;
    memcpy(w, CACHE_ENTRY_MAGIC, 4);
    put_u16(w + 4, CACHE_ENTRY_VERSION);
    put_u16(w + 6, 0);
    put_u32(w + 8, (uint32_t)total);
    put_u16(w + 12, (uint16_t)e->status);
    put_u16(w + 14, 0);
    put_u64(w + 16, (uint64_t)e->request_time);
    put_u64(w + 24, (uint64_t)e->response_time);
    put_u64(w + 32, e->body_size);
    put_u32(w + 40, e->flags);
    put_u32(w + 44, (uint32_t)e->num_headers);
    w += CACHE_ENTRY_FIXED_SIZE;
    put_str(&w, e->key, e->key_len);
    put_str(&w, e->vary, e->vary_len);
    put_str(&w, e->secondary_key, e->secondary_key_len);
    for (i = 0; i < e->num_headers; i++) {
        put_str(&w, e->headers[i].name, e->headers[i].name_len);
        put_str(&w, e->headers[i].value, e->headers[i].value_len);
    }
    put_u32(w, cache_entry_crc32(0, start, (size_t)(w - start)));
    w += 4;
    CDN_ASSERT((size_t)(w - start) == total);
    cdn_buf_commit(out, total);
    return 0;
}

/* ---------------------------------------------------------------- decode */

/* Reads a u32-length-prefixed string at *off within [0, end). False if it does not fit. */
static bool get_str(const unsigned char *p, size_t end, size_t *off, const char **s, size_t *n)
{
    uint32_t len;

    if (end - *off < 4)
        return false;
    len = get_u32(p + *off);
    *off += 4;
    if (end - *off < len)
        return false;
    *s = (const char *)(p + *off);
    *n = len;
    *off += len;
    return true;
}

int cache_entry_decode(const void *data, size_t n, struct cache_entry *out)
{
    const unsigned char *p = data;
    size_t off, end, i, hstart;
    uint32_t record_len, nh;
    const char *s;
    size_t sl;

    memset(out, 0, sizeof(*out));
    if (n < 4)
        return CACHE_ENTRY_ETRUNC;
    if (memcmp(p, CACHE_ENTRY_MAGIC, 4) != 0)
        return CACHE_ENTRY_EMAGIC;
    if (n < 6)
        return CACHE_ENTRY_ETRUNC;
    if (get_u16(p + 4) != CACHE_ENTRY_VERSION)
        return CACHE_ENTRY_EVERSION;
    if (n < 12)
        return CACHE_ENTRY_ETRUNC;
    record_len = get_u32(p + 8);
    if (record_len < CACHE_ENTRY_MIN_SIZE)
        return CACHE_ENTRY_EFORMAT;
    if (n < record_len)
        return CACHE_ENTRY_ETRUNC;
    if (n > record_len)
        return CACHE_ENTRY_EFORMAT;
    end = record_len - 4;
    if (cache_entry_crc32(0, p, end) != get_u32(p + end))
        return CACHE_ENTRY_ECHECKSUM;

    /* From here on the bytes are what an encoder wrote; check them anyway (bugs, hostile writers). */
    if (get_u16(p + 6) != 0 || get_u16(p + 14) != 0)
        return CACHE_ENTRY_EFORMAT;
    out->status = get_u16(p + 12);
    out->request_time = (int64_t)get_u64(p + 16);
    out->response_time = (int64_t)get_u64(p + 24);
    out->body_size = get_u64(p + 32);
    out->flags = get_u32(p + 40);
    nh = get_u32(p + 44);
    if (out->status < 200 || out->status > 599 || (out->flags & ~(uint32_t)CACHE_ENTRY_F_ALL) != 0 ||
        nh > CDN_HTTP_MAX_HEADERS)
        goto bad;
    off = CACHE_ENTRY_FIXED_SIZE;
    if (!get_str(p, end, &off, &out->key, &out->key_len) ||
        !get_str(p, end, &off, &out->vary, &out->vary_len) ||
        !get_str(p, end, &off, &out->secondary_key, &out->secondary_key_len))
        goto bad;
    hstart = off;
    for (i = 0; i < nh; i++) {
        if (!get_str(p, end, &off, &s, &sl) || !name_ok(s, sl))
            goto bad;
        if (!get_str(p, end, &off, &s, &sl) || !value_ok(s, sl))
            goto bad;
    }
    if (off != end)
        goto bad;
    out->num_headers = nh;
    out->raw_headers = (const char *)(p + hstart);
    out->raw_headers_len = end - hstart;
    return 0;
bad:
    memset(out, 0, sizeof(*out));
    return CACHE_ENTRY_EFORMAT;
}

int cache_entry_headers(const struct cache_entry *e, struct cdn_http_header *out, size_t max)
{
    const unsigned char *p = (const unsigned char *)e->raw_headers;
    size_t off = 0, i;

    if (e->num_headers > max)
        return CDN_ELIMIT;
    for (i = 0; i < e->num_headers; i++) {
        /* decode validated the layout; the assert guards against a hand-made struct. */
        bool ok = get_str(p, e->raw_headers_len, &off, &out[i].name, &out[i].name_len) &&
                  get_str(p, e->raw_headers_len, &off, &out[i].value, &out[i].value_len);

        CDN_ASSERT(ok);
        out[i].hop_by_hop = false;
    }
    return (int)e->num_headers;
}

const char *cache_entry_strerror(int err)
{
    switch (err) {
    case CACHE_ENTRY_EMAGIC:
        return "not a cache entry (bad magic)";
    case CACHE_ENTRY_EVERSION:
        return "unsupported cache entry version";
    case CACHE_ENTRY_ETRUNC:
        return "truncated cache entry";
    case CACHE_ENTRY_ECHECKSUM:
        return "cache entry checksum mismatch";
    case CACHE_ENTRY_EFORMAT:
        return "malformed cache entry";
    default:
        return cdn_strerror(err);
    }
}
