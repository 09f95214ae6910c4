/*
 * util: allocation that aborts on OOM, always-on assertions, object magic checks,
 * and the small parsers (durations, sizes) that config and CLI share.
 */
#ifndef CDN_UTIL_H
#define CDN_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>
#include <string.h>

/* Our own error codes live in -20000..-20999 so they never collide with UV_E* (-errno). */
#define CDN_ENOMEM   (-20001)
#define CDN_EINVAL   (-20002)
#define CDN_ETIMEOUT (-20003)
#define CDN_ETLS     (-20004)
#define CDN_EPROTO   (-20005)
#define CDN_ELIMIT   (-20006)
#define CDN_ECLOSED  (-20007)
#define CDN_EVERIFY  (-20008)

noreturn void cdn_panic(const char *file, int line, const char *func, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Always compiled in: invariants, never peer or config input. */
#define CDN_ASSERT(e)                                                            \
    do {                                                                         \
        if (!(e))                                                                \
            cdn_panic(__FILE__, __LINE__, __func__, "assertion failed: %s", #e); \
    } while (0)

#define CDN_CHECK_OBJ(p, m)            \
    do {                               \
        CDN_ASSERT((p) != NULL);       \
        CDN_ASSERT((p)->magic == (m)); \
    } while (0)

void *cdn_xmalloc(size_t n);
void *cdn_xcalloc(size_t n, size_t sz);
void *cdn_xrealloc(void *p, size_t n);
char *cdn_xstrdup(const char *s);
char *cdn_xstrndup(const char *s, size_t n);
/* printf into a fresh heap string; the caller frees it. */
char *cdn_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Appends a formatted line to *buf (heap, may be NULL); used to collect several errors. */
void cdn_strappendf(char **buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "250ms", "10s", "5m", "1h", "1d"; a bare number means seconds. 0 on success, -1 on bad input. */
int cdn_parse_duration_ms(const char *s, uint64_t *out_ms);
/* "123", "64KiB", "10MiB", "2GiB", "1KB" (1000), "5MB"... 0 on success, -1 on bad input or overflow. */
int cdn_parse_size(const char *s, uint64_t *out);

/* Case-insensitive ASCII compare of a counted string with a C string. */
/* a[0..alen) equals the C string b, ASCII case folded. Inline so that strlen of a literal b folds
 * away: header names are compared this way several times per request. */
static inline bool cdn_strieq(const char *a, size_t alen, const char *b)
{
    if (strlen(b) != alen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x != y && (x | 0x20) != (y | 0x20))
            return false;
        if (x != y && ((x | 0x20) < 'a' || (x | 0x20) > 'z'))
            return false;
    }
    return true;
}

/* Text for any error code: ours, UV_* or (positive) errno. */
const char *cdn_strerror(int err);

uint64_t cdn_now_ms(void);

#endif
