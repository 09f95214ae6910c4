/*
 * Fuzz target for the certificate-policy matchers: the SNI rule matcher (lib/sni.c), the pin syntax
 * checks (lib/pin.c) and, on the same bytes, the access log formatter (lib/alog.c). Input: lines;
 * the first is the name to match, the others are fqdn patterns (lower-cased like the config loader
 * does). Contracts checked (abort when broken):
 *  - the match is -1 or a valid index; an exact (case-insensitive, one trailing dot ignored) pattern
 *    wins whenever there is one; a wildcard result really covers the name with at least one label in
 *    front, and no longer matching wildcard exists; the result does not depend on the name's case;
 *  - a fingerprint that parses formats back to hex that parses to the same bytes;
 *  - a format that compiles renders lines without CR, LF or other control bytes, whatever the values.
 * Built with clang -fsanitize=fuzzer for fuzzing, or with test/fuzz/replay.c to run the corpus.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/alog.h"
#include "lib/buf.h"
#include "lib/pin.h"
#include "lib/sni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(e)     \
    do {             \
        if (!(e))    \
            abort(); \
    } while (0)

#define MAX_PATTERNS 32

static bool is_ip(const char *s, size_t n)
{
    /* the matcher treats an address as "no SNI"; keep the oracle simple by skipping those names */
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]) && s[i] != '.' && s[i] != ':' && !isxdigit((unsigned char)s[i]))
            return false;
    }
    return n > 0;
}

static void check_match(char **pats, size_t np, const char *name, size_t len)
{
    const char *const *f = (const char *const *)pats;
    long r = cdn_sni_match_index(f, np, name, len);
    CHECK(r >= -1 && r < (long)np);
    size_t n = len > 0 && name[len - 1] == '.' ? len - 1 : len;
    if (n == 0 || is_ip(name, n))
        return;
    bool exact = false;
    size_t best = 0;
    for (size_t i = 0; i < np; i++) {
        size_t pl = strlen(pats[i]);
        if (pl == n && strncasecmp(pats[i], name, n) == 0)
            exact = true;
        if (pl >= 2 && pats[i][0] == '*' && pats[i][1] == '.' && n > pl - 1 &&
            strncasecmp(name + n - (pl - 1), pats[i] + 1, pl - 1) == 0 && pl - 1 > best)
            best = pl - 1;
    }
    if (exact) {
        CHECK(r >= 0 && strlen(pats[r]) == n && strncasecmp(pats[r], name, n) == 0);
    } else if (best > 0) {
        CHECK(r >= 0 && pats[r][0] == '*' && strlen(pats[r]) - 1 == best);
    } else {
        CHECK(r == -1 || pats[r][0] == '\0');
    }
    char up[256];
    if (n < sizeof(up)) {
        for (size_t i = 0; i < len; i++)
            up[i] = (char)toupper((unsigned char)name[i]);
        CHECK(cdn_sni_match_index(f, np, up, len) == r);
    }
}

static void check_pins(const char *s)
{
    unsigned char fp[CDN_PIN_SHA256_LEN], again[CDN_PIN_SHA256_LEN];
    (void)cdn_pin_valid_san(s);
    if (cdn_pin_parse_fingerprint(s, fp) == 0) {
        char hex[3 * CDN_PIN_SHA256_LEN + 1];
        for (size_t i = 0; i < CDN_PIN_SHA256_LEN; i++)
            snprintf(hex + 3 * i, 4, "%02X%s", fp[i], i + 1 < CDN_PIN_SHA256_LEN ? ":" : "");
        CHECK(cdn_pin_parse_fingerprint(hex, again) == 0 && memcmp(fp, again, sizeof(fp)) == 0);
    }
}

static void check_alog(const char *fmt, const char *value, size_t vlen)
{
    struct cdn_alog *a = NULL;
    char *err = NULL;
    if (cdn_alog_compile(fmt, &a, &err) != 0) {
        CHECK(err != NULL && a == NULL);
        free(err);
        return;
    }
    const char *v[CDN_ALOG_NVARS];
    size_t len[CDN_ALOG_NVARS];
    for (size_t i = 0; i < CDN_ALOG_NVARS; i++) {
        v[i] = i % 3 == 2 ? NULL : value;
        len[i] = vlen;
    }
    struct cdn_buf b;
    cdn_buf_init(&b);
    cdn_alog_render(a, v, len, &b);
    const char *p = cdn_buf_data(&b);
    /* literal text of the format may hold anything the config does; values never add control bytes */
    size_t fmt_ctl = 0, out_ctl = 0;
    for (const char *q = fmt; *q != '\0'; q++)
        fmt_ctl += (unsigned char)*q < 0x20 || *q == 0x7f;
    for (size_t i = 0; i < b.len; i++)
        out_ctl += (unsigned char)p[i] < 0x20 || p[i] == 0x7f;
    CHECK(out_ctl <= fmt_ctl);
    cdn_buf_dispose(&b);
    cdn_alog_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *pats[MAX_PATTERNS];
    size_t np = 0;
    char *line = buf, *name = NULL;
    size_t name_len = 0;
    while (line != NULL) {
        char *nl = memchr(line, '\n', (size_t)(buf + size - line));
        size_t n = nl != NULL ? (size_t)(nl - line) : strlen(line);
        if (nl != NULL)
            *nl = '\0';
        if (name == NULL) {
            name = line;
            name_len = strnlen(line, n);
        } else if (np < MAX_PATTERNS) {
            for (size_t i = 0; i < n; i++)
                line[i] = (char)tolower((unsigned char)line[i]);
            pats[np++] = line;
        }
        line = nl != NULL ? nl + 1 : NULL;
    }
    if (name != NULL) {
        check_match(pats, np, name, name_len);
        check_pins(name);
        check_alog(name, np > 0 ? pats[0] : "", np > 0 ? strlen(pats[0]) : 0);
    }
    free(buf);
    return 0;
}
