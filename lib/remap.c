/*
 * remap: the "map FROM TO" rules that decide where a request goes, and the URL parser they use.
 *
 * The rule set is small and read-only after cdn_remap_new, so a lookup is a linear scan that keeps the
 * longest matching FROM path: simple to reason about, and the precedence is exactly what docs/CONFIG.md
 * says. Hosts are normalised once when the rules are built (lower case, no trailing dot, IPv6 in the
 * canonical inet_ntop form) so that a lookup only normalises the request's Host header and compares bytes.
 * This file is a pure parser: no I/O, and request bytes are always used with their lengths.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/remap.h"
#include "lib/util.h"

#define HOST_MAX 253 /* a DNS name without its trailing dot */

static bool is_reg_name_char(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_';
}

/* Canonical text of an IPv6 literal given without brackets; false when it is not one. */
static bool ipv6_canon(const char *s, size_t n, char *out, size_t outsize)
{
    char tmp[INET6_ADDRSTRLEN];
    unsigned char addr[16];
    if (n == 0 || n >= sizeof(tmp))
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return inet_pton(AF_INET6, tmp, addr) == 1 && inet_ntop(AF_INET6, addr, out, (socklen_t)outsize) != NULL;
}

/* Parses "1".."65535"; an empty string is not a port. */
static bool parse_port(const char *s, size_t n, uint16_t *out)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

int cdn_url_parse(const char *s, struct cdn_url *u, char **err)
{
    const char *p = s, *auth, *auth_end, *host, *host_end, *port = NULL;
    char v6[INET6_ADDRSTRLEN];
    int ret = -1;

    memset(u, 0, sizeof(*u));
    *err = NULL;
    if (strncasecmp(p, "https://", 8) == 0) {
        u->tls = true;
        p += 8;
    } else if (strncasecmp(p, "http://", 7) == 0) {
        p += 7;
    } else {
        *err = cdn_xstrdup("the scheme must be http:// or https://");
        goto out;
    }
    if (strpbrk(p, "?#") != NULL) {
        *err = cdn_xstrdup("a query (?) or fragment (#) is not allowed");
        goto out;
    }
    auth = p;
    auth_end = auth + strcspn(auth, "/");
    if (memchr(auth, '@', (size_t)(auth_end - auth)) != NULL) {
        *err = cdn_xstrdup("userinfo (user@) is not allowed");
        goto out;
    }
    if (auth[0] == '[') {
        host = auth + 1;
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (host_end == NULL || !ipv6_canon(host, (size_t)(host_end - host), v6, sizeof(v6))) {
            *err = cdn_xstrdup("bad IPv6 literal (expected [address])");
            goto out;
        }
        if (host_end + 1 < auth_end && host_end[1] != ':') {
            *err = cdn_xstrdup("unexpected text after ']' (expected :port or /)");
            goto out;
        }
        port = host_end + 1 < auth_end ? host_end + 2 : NULL;
        u->host = cdn_xstrdup(v6);
    } else {
        host = auth;
        host_end = memchr(auth, ':', (size_t)(auth_end - auth));
        if (host_end != NULL)
            port = host_end + 1;
        else
            host_end = auth_end;
        size_t n = (size_t)(host_end - host);
        if (n > 1 && host[n - 1] == '.')
            n--; /* "example.com." names the same host */
        if (n == 0) {
            *err = cdn_xstrdup("the host is empty");
            goto out;
        }
        if (host[0] == '.' || memmem(host, n, "..", 2) != NULL) {
            *err = cdn_xstrdup("the host has an empty label");
            goto out;
        }
        if (n > HOST_MAX) {
            *err = cdn_xstrdup("the host is longer than 253 bytes");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            if (!is_reg_name_char((unsigned char)host[i])) {
                *err = cdn_xstrdup(
                    "bad character in the host (allowed: letters, digits, '-', '.', '_', or [IPv6])");
                goto out;
            }
        }
        u->host = cdn_xstrndup(host, n);
        for (char *c = u->host; *c != '\0'; c++)
            *c = (char)tolower((unsigned char)*c);
    }
    if (port != NULL) {
        if (!parse_port(port, (size_t)(auth_end - port), &u->port)) {
            *err = cdn_xstrdup("the port must be 1..65535");
            goto out;
        }
    } else {
        u->port = u->tls ? 443 : 80;
    }
    if (*auth_end == '\0') {
        u->path = cdn_xstrdup("/");
    } else {
        for (const char *c = auth_end; *c != '\0'; c++) {
            if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
                *err = cdn_xstrdup("the path must be printable ASCII without spaces");
                goto out;
            }
        }
        u->path = cdn_xstrdup(auth_end);
    }
    ret = 0;
out:
    if (ret != 0)
        cdn_url_dispose(u);
    return ret;
}

void cdn_url_dispose(struct cdn_url *u)
{
    if (u == NULL)
        return;
    free(u->host);
    free(u->path);
    memset(u, 0, sizeof(*u));
}

int cdn_remap_new(const struct cdn_conf *conf, struct cdn_remap **out, char **err)
{
    struct cdn_remap *r = cdn_xcalloc(1, sizeof(*r));
    char *errs = NULL;
    int ret = -1;

    *out = NULL;
    *err = NULL;
    r->rules = cdn_xcalloc(conf->nremap, sizeof(*r->rules));
    for (size_t i = 0; i < conf->nremap; i++) {
        const struct cdn_conf_remap_rule *cr = &conf->remap[i];
        struct cdn_remap_rule *rule = &r->rules[r->nrules];
        char *e = NULL;

        rule->pos = cr->pos;
        rule->upstream = cr->upstream <= conf->nupstreams ? cr->upstream : 0; /* the loader checked it */
        rule->group = cr->group <= conf->nugroups ? cr->group : 0;
        if (cr->from == NULL || cr->to == NULL) {
            /* Only a conf that failed to load lacks them; be safe anyway. */
            cdn_strappendf(&errs, "%s:%d:%d: remap[%zu]: missing FROM or TO", conf->path, cr->pos.line,
                           cr->pos.col, i);
            continue;
        }
        if (cdn_url_parse(cr->from, &rule->from, &e) != 0) {
            cdn_strappendf(&errs, "%s:%d:%d: remap[%zu]: FROM \"%s\": %s", conf->path, cr->pos.line,
                           cr->pos.col, i, cr->from, e);
            free(e);
            continue;
        }
        if (cdn_url_parse(cr->to, &rule->to, &e) != 0) {
            cdn_strappendf(&errs, "%s:%d:%d: remap[%zu]: TO \"%s\": %s", conf->path, cr->pos.line,
                           cr->pos.col, i, cr->to, e);
            free(e);
            cdn_url_dispose(&rule->from);
            continue;
        }
        r->nrules++;
    }
    if (errs != NULL)
        goto out;
    *out = r;
    r = NULL;
    ret = 0;
out:
    cdn_remap_free(&r);
    *err = errs;
    return ret;
}

void cdn_remap_free(struct cdn_remap **rp)
{
    if (rp == NULL || *rp == NULL)
        return;
    struct cdn_remap *r = *rp;
    for (size_t i = 0; i < r->nrules; i++) {
        cdn_url_dispose(&r->rules[i].from);
        cdn_url_dispose(&r->rules[i].to);
    }
    free(r->rules);
    free(r);
    *rp = NULL;
}

/* Splits a Host header value into a normalised host (written to out, NUL-terminated) and a port. */
static bool host_normalise(const char *h, size_t n, bool tls, char *out, size_t outsize, uint16_t *port)
{
    const char *colon = NULL;
    size_t hn;

    *port = tls ? 443 : 80;
    if (n > 0 && h[0] == '[') {
        const char *end = memchr(h, ']', n);
        if (end == NULL || !ipv6_canon(h + 1, (size_t)(end - h - 1), out, outsize))
            return false;
        if ((size_t)(end + 1 - h) < n) {
            if (end[1] != ':')
                return false;
            colon = end + 1;
        }
    } else {
        colon = memchr(h, ':', n);
        hn = colon != NULL ? (size_t)(colon - h) : n;
        if (hn > 1 && h[hn - 1] == '.')
            hn--;
        if (hn == 0 || hn >= outsize)
            return false;
        for (size_t i = 0; i < hn; i++)
            out[i] = (char)tolower((unsigned char)h[i]);
        out[hn] = '\0';
    }
    if (colon != NULL) {
        size_t pn = n - (size_t)(colon + 1 - h);
        /* RFC 3986: an empty port means the scheme's default. */
        if (pn > 0 && !parse_port(colon + 1, pn, port))
            return false;
    }
    return true;
}

/* A FROM path that ends in '/' is a plain prefix; one that does not ("/img") stops at a segment
 * boundary, so that it matches "/img", "/img/..." and "/img?..." but not "/images". */
static bool path_matches(const char *from, size_t flen, const char *path, size_t plen)
{
    if (plen < flen || memcmp(from, path, flen) != 0)
        return false;
    if (flen == plen || from[flen - 1] == '/')
        return true;
    return path[flen] == '/' || path[flen] == '?';
}

const struct cdn_remap_rule *cdn_remap_lookup(const struct cdn_remap *r, bool tls, const char *host,
                                              size_t host_len, const char *path, size_t path_len)
{
    const struct cdn_remap_rule *best = NULL;
    size_t best_len = 0;
    char h[HOST_MAX + 2];
    uint16_t port;

    if (r == NULL || host == NULL || path == NULL ||
        !host_normalise(host, host_len, tls, h, sizeof(h), &port))
        return NULL;
    for (size_t i = 0; i < r->nrules; i++) {
        const struct cdn_remap_rule *rule = &r->rules[i];
        size_t flen = strlen(rule->from.path);
        if (rule->from.tls != tls || rule->from.port != port || strcmp(rule->from.host, h) != 0)
            continue;
        if (!path_matches(rule->from.path, flen, path, path_len))
            continue;
        if (best == NULL || flen > best_len) {
            best = rule;
            best_len = flen;
        }
    }
    return best;
}

char *cdn_remap_target_path(const struct cdn_remap_rule *rule, const char *path, size_t path_len)
{
    const char *to = rule->to.path, *from = rule->from.path, *rest = path;
    size_t tlen = strlen(to), flen = strlen(from), rlen = path_len;
    const char *sep = "";

    /* A caller passes a path that matched; if it did not, the whole path is kept rather than cut. */
    if (path_len >= flen && memcmp(path, from, flen) == 0) {
        rest = path + flen;
        rlen = path_len - flen;
    }
    if (tlen > 0 && to[tlen - 1] == '/' && rlen > 0 && rest[0] == '/') {
        rest++;
        rlen--;
    } else if (rlen > 0 && rest[0] != '/' && rest[0] != '?' && (tlen == 0 || to[tlen - 1] != '/')) {
        /* "map http://a/img/ http://b/static": "/img/1.png" must become "/static/1.png". */
        sep = "/";
    }
    size_t slen = strlen(sep);
    char *out = cdn_xmalloc(tlen + slen + rlen + 1); /* no printf: this runs for every request */
    memcpy(out, to, tlen);
    memcpy(out + tlen, sep, slen);
    memcpy(out + tlen + slen, rest, rlen);
    out[tlen + slen + rlen] = '\0';
    return out;
}
