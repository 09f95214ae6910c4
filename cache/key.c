/* key: see key.h. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "cache/key.h"

static bool ignored(const char *name, size_t n, const struct cache_key_rules *r)
{
    for (size_t i = 0; i < r->nignore_params; i++) {
        if (strlen(r->ignore_params[i]) == n && memcmp(r->ignore_params[i], name, n) == 0)
            return true;
    }
    return false;
}

void cache_key_build(struct cdn_buf *out, bool tls, const char *host, uint16_t port, const char *path,
                     size_t path_len, const struct cache_key_rules *rules)
{
    const char *scheme = tls ? "https://" : "http://";
    cdn_buf_append(out, scheme, strlen(scheme));
    bool v6 = strchr(host, ':') != NULL;
    if (v6)
        cdn_buf_append(out, "[", 1);
    size_t hlen = strlen(host);
    char *d = cdn_buf_reserve(out, hlen);
    for (size_t i = 0; i < hlen; i++) {
        unsigned char c = (unsigned char)host[i];
        d[i] = (char)(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
    }
    cdn_buf_commit(out, hlen);
    cdn_buf_append(out, v6 ? "]:" : ":", v6 ? 2 : 1);
    cdn_buf_append_u64(out, port);

    const char *frag = memchr(path, '#', path_len);
    if (frag != NULL)
        path_len = (size_t)(frag - path);
    const char *q = memchr(path, '?', path_len);
    if (q == NULL) {
        cdn_buf_append(out, path, path_len);
        return;
    }
    cdn_buf_append(out, path, (size_t)(q - path));
    if (rules == NULL || (!rules->ignore_query && rules->nignore_params == 0)) {
        cdn_buf_append(out, q, path_len - (size_t)(q - path));
        return;
    }
    if (rules->ignore_query)
        return;
    const char *p = q + 1, *end = path + path_len;
    bool first = true;
    while (p <= end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        size_t nlen = (size_t)((eq != NULL ? eq : e) - p);
        if (e > p && !ignored(p, nlen, rules)) {
            cdn_buf_append(out, first ? "?" : "&", 1);
            cdn_buf_append(out, p, (size_t)(e - p));
            first = false;
        }
        if (amp == NULL)
            break;
        p = amp + 1;
    }
}
