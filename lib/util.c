/*
 * util: process-wide helpers with no state. Allocation failure is fatal (a CDN node that cannot
 * allocate a few bytes cannot answer correctly either); input parsing never is.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "lib/util.h"

void cdn_panic(const char *file, int line, const char *func, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "cdn-node: fatal: %s:%d: %s: ", file, line, func);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void *cdn_xmalloc(size_t n)
{
    void *p = malloc(n == 0 ? 1 : n);
    if (p == NULL)
        cdn_panic(__FILE__, __LINE__, __func__, "out of memory (%zu bytes)", n);
    return p;
}

void *cdn_xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n == 0 ? 1 : n, sz == 0 ? 1 : sz);
    if (p == NULL)
        cdn_panic(__FILE__, __LINE__, __func__, "out of memory (%zu x %zu bytes)", n, sz);
    return p;
}

void *cdn_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n == 0 ? 1 : n);
    if (q == NULL)
        cdn_panic(__FILE__, __LINE__, __func__, "out of memory (%zu bytes)", n);
    return q;
}

char *cdn_xstrdup(const char *s)
{
    return cdn_xstrndup(s, strlen(s));
}

char *cdn_xstrndup(const char *s, size_t n)
{
    char *p = cdn_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static char *xvasprintf(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    CDN_ASSERT(n >= 0);
    char *p = cdn_xmalloc((size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *cdn_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = xvasprintf(fmt, ap);
    va_end(ap);
    return p;
}

void cdn_strappendf(char **buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = xvasprintf(fmt, ap);
    va_end(ap);
    size_t old = *buf != NULL ? strlen(*buf) : 0, add = strlen(line);
    bool nl = old > 0 && (*buf)[old - 1] != '\n';
    *buf = cdn_xrealloc(*buf, old + nl + add + 1);
    if (nl)
        (*buf)[old++] = '\n';
    memcpy(*buf + old, line, add + 1);
    free(line);
}

/* Parses "<digits><unit>" where unit is looked up in units[]; a bare number uses bare_mult. */
struct unit {
    const char *name;
    uint64_t mult;
};

static int parse_with_units(const char *s, const struct unit *units, uint64_t bare_mult, uint64_t *out)
{
    if (s == NULL || !isdigit((unsigned char)*s))
        return -1;
    uint64_t v = 0;
    while (isdigit((unsigned char)*s)) {
        unsigned d = (unsigned)(*s++ - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    uint64_t mult = 0;
    if (*s == '\0') {
        mult = bare_mult;
    } else {
        for (const struct unit *u = units; u->name != NULL; u++) {
            if (strcmp(s, u->name) == 0) {
                mult = u->mult;
                break;
            }
        }
        if (mult == 0)
            return -1;
    }
    if (v != 0 && mult > UINT64_MAX / v)
        return -1;
    *out = v * mult;
    return 0;
}

int cdn_parse_duration_ms(const char *s, uint64_t *out_ms)
{
    static const struct unit units[] = {{"ms", 1},      {"s", 1000},     {"m", 60000},
                                        {"h", 3600000}, {"d", 86400000}, {NULL, 0}};
    return parse_with_units(s, units, 1000, out_ms);
}

int cdn_parse_size(const char *s, uint64_t *out)
{
    static const struct unit units[] = {{"B", 1},
                                        {"KiB", 1024ull},
                                        {"MiB", 1024ull * 1024},
                                        {"GiB", 1024ull * 1024 * 1024},
                                        {"TiB", 1024ull * 1024 * 1024 * 1024},
                                        {"KB", 1000ull},
                                        {"MB", 1000ull * 1000},
                                        {"GB", 1000ull * 1000 * 1000},
                                        {"TB", 1000ull * 1000 * 1000 * 1000},
                                        {"k", 1024ull},
                                        {"K", 1024ull},
                                        {"M", 1024ull * 1024},
                                        {"G", 1024ull * 1024 * 1024},
                                        {NULL, 0}};
    return parse_with_units(s, units, 1, out);
}

const char *cdn_strerror(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case CDN_ENOMEM:
        return "out of memory";
    case CDN_EINVAL:
        return "invalid argument";
    case CDN_ETIMEOUT:
        return "timed out";
    case CDN_ETLS:
        return "TLS error";
    case CDN_EPROTO:
        return "protocol error";
    case CDN_ELIMIT:
        return "limit exceeded";
    case CDN_ECLOSED:
        return "connection closed";
    case CDN_EVERIFY:
        return "certificate verification failed";
    default:
        break;
    }
    if (err > 0)
        return strerror(err);
    return uv_strerror(err);
}

uint64_t cdn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
