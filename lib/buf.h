/*
 * buf: a growable byte buffer with a read offset, used for connection input and output.
 * Data lives at base+off for len bytes; space past it is free for appends.
 */
#ifndef CDN_BUF_H
#define CDN_BUF_H

#include <stddef.h>

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
char *cdn_buf_reserve(struct cdn_buf *b, size_t n);
void cdn_buf_commit(struct cdn_buf *b, size_t n);
void cdn_buf_append(struct cdn_buf *b, const void *p, size_t n);
void cdn_buf_consume(struct cdn_buf *b, size_t n);
/* Free space after the data without moving or growing. */
size_t cdn_buf_tailroom(const struct cdn_buf *b);
/* Moves the data to the front of the allocation. */
void cdn_buf_compact(struct cdn_buf *b);

#endif
