/*
 * buf: a growable byte buffer with a read offset, used for connection input and output.
 * Data lives at base+off for len bytes; space past it is free for appends.
 */
#ifndef CDN_BUF_H
#define CDN_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct cdn_buf {
    char *base;
    size_t off, len, cap;
};

void cdn_buf_init(struct cdn_buf *b);
void cdn_buf_dispose(struct cdn_buf *b);
/* The data; never NULL (an empty, never-allocated buffer gives a pointer to an empty string). */
static inline char *cdn_buf_data(const struct cdn_buf *b)
{
    static char empty[1];
    return b->base != NULL ? b->base + b->off : empty;
}
/* Makes room for at least n bytes after the data (moving data to the front or growing) and
 * returns the tail pointer; commit what was written with cdn_buf_commit. */
char *cdn_buf_reserve_slow(struct cdn_buf *b, size_t n);
static inline char *cdn_buf_reserve(struct cdn_buf *b, size_t n)
{
    /* inline fast path: headers are built from dozens of small appends per response */
    if (b->cap - b->off - b->len >= n)
        return b->base + b->off + b->len;
    return cdn_buf_reserve_slow(b, n);
}
void cdn_buf_commit(struct cdn_buf *b, size_t n);
/* Empties b and keeps its memory (per-thread scratch buffers reused for every response). */
static inline void cdn_buf_reset(struct cdn_buf *b)
{
    b->off = b->len = 0;
}
static inline void cdn_buf_append(struct cdn_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    memcpy(cdn_buf_reserve(b, n), p, n);
    b->len += n;
}
void cdn_buf_consume(struct cdn_buf *b, size_t n);
/* Decimal text of v (no printf on the hot path: header values like Content-Length and Age). */
void cdn_buf_append_u64(struct cdn_buf *b, uint64_t v);
void cdn_buf_append_i64(struct cdn_buf *b, int64_t v);
/* Free space after the data without moving or growing. */
size_t cdn_buf_tailroom(const struct cdn_buf *b);
/* Moves the data to the front of the allocation. */
void cdn_buf_compact(struct cdn_buf *b);

#endif
