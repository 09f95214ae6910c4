/* buf: see buf.h. Growth doubles; consumption only moves the offset, compaction happens lazily. */
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/util.h"

void cdn_buf_init(struct cdn_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void cdn_buf_dispose(struct cdn_buf *b)
{
    free(b->base);
    cdn_buf_init(b);
}

void cdn_buf_compact(struct cdn_buf *b)
{
    if (b->off == 0)
        return;
    if (b->len > 0)
        memmove(b->base, b->base + b->off, b->len);
    b->off = 0;
}

size_t cdn_buf_tailroom(const struct cdn_buf *b)
{
    return b->cap - b->off - b->len;
}

char *cdn_buf_reserve_slow(struct cdn_buf *b, size_t n)
{
    if (cdn_buf_tailroom(b) >= n)
        return b->base + b->off + b->len;
    if (b->cap - b->len >= n && b->off > 0) {
        cdn_buf_compact(b);
        return b->base + b->len;
    }
    cdn_buf_compact(b);
    /* Start small: most buffers (cache keys, request copies, heads) hold a few hundred bytes, and
     * allocations this size come from malloc's per-thread cache. */
    size_t cap = b->cap != 0 ? b->cap : 512;
    while (cap - b->len < n) {
        CDN_ASSERT(cap < (SIZE_MAX >> 1));
        cap *= 2;
    }
    b->base = cdn_xrealloc(b->base, cap);
    b->cap = cap;
    return b->base + b->len;
}

void cdn_buf_commit(struct cdn_buf *b, size_t n)
{
    CDN_ASSERT(n <= cdn_buf_tailroom(b));
    b->len += n;
}


void cdn_buf_consume(struct cdn_buf *b, size_t n)
{
    CDN_ASSERT(n <= b->len);
    b->len -= n;
    b->off = b->len == 0 ? 0 : b->off + n;
}

void cdn_buf_append_u64(struct cdn_buf *b, uint64_t v)
{
    char tmp[20], *p = tmp + sizeof(tmp);
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    cdn_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

void cdn_buf_append_i64(struct cdn_buf *b, int64_t v)
{
    if (v < 0) {
        cdn_buf_append(b, "-", 1);
        cdn_buf_append_u64(b, (uint64_t)0 - (uint64_t)v);
        return;
    }
    cdn_buf_append_u64(b, (uint64_t)v);
}
