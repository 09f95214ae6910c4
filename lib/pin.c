/*
 * pin: see pin.h. Pure apart from reading the certificate: no SSL, no I/O, so the matching rules are
 * unit-tested on certificates made in memory.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "lib/pin.h"
#include "lib/util.h"

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int cdn_pin_parse_fingerprint(const char *s, unsigned char out[CDN_PIN_SHA256_LEN])
{
    size_t n = 0;
    while (*s != '\0') {
        if (n == CDN_PIN_SHA256_LEN)
            return -1;
        int hi = hexval((unsigned char)s[0]), lo = hi >= 0 ? hexval((unsigned char)s[1]) : -1;
        if (lo < 0)
            return -1;
        out[n++] = (unsigned char)(hi << 4 | lo);
        s += 2;
        if (*s == ':' && n < CDN_PIN_SHA256_LEN && s[1] != '\0')
            s++;
    }
    return n == CDN_PIN_SHA256_LEN ? 0 : -1;
}

bool cdn_pin_valid_san(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return false;
        if (*p == '*' && !(p == s && p[1] == '.' && p[2] != '\0' && strchr(p + 2, '*') == NULL))
            return false;
    }
    return true;
}

struct cdn_pins *cdn_pins_new(char *const *sans, size_t nsans, char *const *fps, size_t nfps)
{
    if (nsans == 0 && nfps == 0)
        return NULL;
    struct cdn_pins *p = cdn_xcalloc(1, sizeof(*p));
    p->sans = (const char *const *)sans;
    p->nsans = nsans;
    p->fps = cdn_xcalloc(nfps ? nfps : 1, sizeof(*p->fps));
    for (size_t i = 0; i < nfps; i++) {
        if (cdn_pin_parse_fingerprint(fps[i], p->fps[p->nfps]) == 0)
            p->nfps++;
    }
    return p;
}

void cdn_pins_free(struct cdn_pins *p)
{
    if (p == NULL)
        return;
    free(p->fps);
    free(p);
}

/* DNS: exact (case-insensitive) or "*.rest": exactly one non-empty label before ".rest". */
static bool dns_match(const char *pat, const char *name, size_t len)
{
    size_t plen = strlen(pat);
    if (pat[0] == '*' && pat[1] == '.') {
        const char *dot = memchr(name, '.', len);
        if (dot == NULL || dot == name)
            return false;
        size_t rest = len - (size_t)(dot - name);
        return rest == plen - 1 && strncasecmp(dot, pat + 1, rest) == 0;
    }
    return plen == len && strncasecmp(pat, name, len) == 0;
}

static bool ip_match(const char *pat, const unsigned char *ip, int len)
{
    unsigned char a[16];
    if (len == 4 && inet_pton(AF_INET, pat, a) == 1)
        return memcmp(a, ip, 4) == 0;
    if (len == 16 && inet_pton(AF_INET6, pat, a) == 1)
        return memcmp(a, ip, 16) == 0;
    return false;
}

static bool san_match(const struct cdn_pins *p, X509 *leaf)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    bool found = false;
    for (int i = 0; !found && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const unsigned char *d;
        int len;
        for (size_t k = 0; !found && k < p->nsans; k++) {
            const char *pat = p->sans[k];
            switch (g->type) {
            case GEN_DNS:
                d = ASN1_STRING_get0_data(g->d.dNSName);
                len = ASN1_STRING_length(g->d.dNSName);
                found = memchr(d, '\0', (size_t)len) == NULL && dns_match(pat, (const char *)d, (size_t)len);
                break;
            case GEN_URI:
                d = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
                len = ASN1_STRING_length(g->d.uniformResourceIdentifier);
                found = strlen(pat) == (size_t)len && memcmp(pat, d, (size_t)len) == 0;
                break;
            case GEN_EMAIL:
                d = ASN1_STRING_get0_data(g->d.rfc822Name);
                len = ASN1_STRING_length(g->d.rfc822Name);
                found = strlen(pat) == (size_t)len && strncasecmp(pat, (const char *)d, (size_t)len) == 0;
                break;
            case GEN_IPADD:
                found =
                    ip_match(pat, ASN1_STRING_get0_data(g->d.iPAddress), ASN1_STRING_length(g->d.iPAddress));
                break;
            default:
                break;
            }
        }
    }
    GENERAL_NAMES_free(gens);
    return found;
}

static bool fp_match(const struct cdn_pins *p, X509 *leaf)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (X509_digest(leaf, EVP_sha256(), md, &mdlen) != 1 || mdlen != CDN_PIN_SHA256_LEN)
        return false;
    for (size_t i = 0; i < p->nfps; i++) {
        if (memcmp(p->fps[i], md, CDN_PIN_SHA256_LEN) == 0)
            return true;
    }
    return false;
}

const char *cdn_pins_check(const struct cdn_pins *p, X509 *leaf)
{
    if (p == NULL)
        return NULL;
    if (leaf == NULL)
        return "no certificate";
    if ((p->nsans > 0 && san_match(p, leaf)) || (p->nfps > 0 && fp_match(p, leaf)))
        return NULL;
    if (p->nsans > 0 && p->nfps > 0)
        return "no SAN in allowed_sans and fingerprint not in allowed_fingerprints";
    return p->nsans > 0 ? "no SAN in allowed_sans" : "fingerprint not in allowed_fingerprints";
}

void cdn_pin_fingerprint_hex(X509 *leaf, char *buf, size_t n)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t k = 0;
    buf[0] = '\0';
    if (leaf == NULL || X509_digest(leaf, EVP_sha256(), md, &mdlen) != 1)
        return;
    for (unsigned i = 0; i < mdlen && k + 3 < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%02X", i > 0 ? ":" : "", md[i]);
}
