/*
 * certcheck: vets certificate files the way a CA truststore vets an upload, so that a bad bundle
 * is refused with its reasons when the config loads instead of surfacing later as an "unknown CA"
 * handshake failure on every edge.
 *
 * Why a scanner of our own instead of PEM_read_bio_X509 in a loop (as cdn_tls_load_certs does):
 * OpenSSL stops at the first undecodable block and silently skips text between blocks, so it can
 * neither say *where* a bundle is broken nor notice a paste that lost half a certificate. We split
 * the file into lines, find the BEGIN/END blocks ourselves, and hand each block alone to OpenSSL.
 *
 * The checks run in two passes: the scan collects certificates (and findings about the file), then
 * every certificate is judged knowing the whole file, because "is my issuer here" and "am I a
 * duplicate" need all of them.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "lib/certcheck.h"
#include "lib/util.h"

#define MAX_FILE_BYTES   (16u << 20)
#define DAY              86400
#define MAX_GARBAGE_RUNS 3  /* runs reported one by one; the rest are counted in one more finding */
#define PREVIEW_CHARS    40 /* of a garbage line, quoted in its finding */

static const char *const code_names[CDN_CERTCHECK_NCODES] = {
#define CDN_CERTCHECK_X(id, name) [CDN_CERTCHECK_##id] = name,
    CDN_CERTCHECK_CODE_LIST(CDN_CERTCHECK_X)
#undef CDN_CERTCHECK_X
};

const char *cdn_certcheck_code_name(enum cdn_certcheck_code c)
{
    return (unsigned)c < CDN_CERTCHECK_NCODES ? code_names[c] : "?";
}

const char *cdn_certcheck_severity_name(enum cdn_certcheck_severity s)
{
    switch (s) {
    case CDN_CERTCHECK_SEV_OK:
        return "ok";
    case CDN_CERTCHECK_SEV_WARNING:
        return "warning";
    case CDN_CERTCHECK_SEV_ERROR:
        return "error";
    }
    return "?";
}

const char *cdn_certcheck_kind_name(enum cdn_certcheck_kind k)
{
    switch (k) {
    case CDN_CERTCHECK_KIND_CA:
        return "CA";
    case CDN_CERTCHECK_KIND_CLIENT:
        return "client";
    case CDN_CERTCHECK_KIND_SERVER:
        return "server";
    }
    return "?";
}

void cdn_certcheck_opts_init(struct cdn_certcheck_opts *o, enum cdn_certcheck_kind kind)
{
    o->kind = kind;
    o->warn_days = 30;
    o->now = (int64_t)time(NULL);
}

/* ---- findings ---- */

static char *xvasprintf(const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    CDN_ASSERT(n >= 0);
    char *s = cdn_xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

/* Adds a finding to cert c, or to the file when c is NULL, and keeps the counters and the verdict. */
static void add(struct cdn_certcheck_report *r, struct cdn_certcheck_cert *c, enum cdn_certcheck_severity sev,
                enum cdn_certcheck_code code, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void add(struct cdn_certcheck_report *r, struct cdn_certcheck_cert *c, enum cdn_certcheck_severity sev,
                enum cdn_certcheck_code code, unsigned line, const char *fmt, ...)
{
    CDN_ASSERT(sev == CDN_CERTCHECK_SEV_WARNING || sev == CDN_CERTCHECK_SEV_ERROR);
    struct cdn_certcheck_finding **v = c != NULL ? &c->findings : &r->file_findings;
    size_t *n = c != NULL ? &c->nfindings : &r->nfile_findings;
    *v = cdn_xrealloc(*v, (*n + 1) * sizeof(**v));
    struct cdn_certcheck_finding *f = &(*v)[(*n)++];
    va_list ap;
    va_start(ap, fmt);
    f->msg = xvasprintf(fmt, ap);
    va_end(ap);
    f->severity = sev;
    f->code = code;
    f->line = c != NULL ? 0 : line;
    if (c != NULL && sev > c->verdict)
        c->verdict = sev;
    if (sev == CDN_CERTCHECK_SEV_ERROR)
        r->nerrors++;
    else
        r->nwarnings++;
}

/* The reason OpenSSL gave for the last failure, and an empty queue afterwards. */
static const char *openssl_reason(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, n, "%s", reason != NULL ? reason : "not an X.509 certificate");
    ERR_clear_error();
    return buf;
}

/* ---- time ---- */

static int asn1_to_unix(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        ERR_clear_error();
        return -1;
    }
    *out = (int64_t)timegm(&tm);
    return 0;
}

static const char *fmt_date(int64_t t, char *buf, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL || strftime(buf, n, "%Y-%m-%d", &tm) == 0)
        snprintf(buf, n, "@%lld", (long long)t);
    return buf;
}

/* A duration for people: "12 days", "5 hours", "3 minutes", "40 seconds", rounded to nearest. */
static const char *fmt_span(int64_t secs, char *buf, size_t n)
{
    if (secs < 0)
        secs = -secs;
    static const struct {
        int64_t unit;
        const char *name;
    } units[] = {{DAY, "day"}, {3600, "hour"}, {60, "minute"}, {1, "second"}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        /* switch unit at 2 of it, so that 36 hours stay 36 hours and not "2 days" */
        if (secs >= 2 * units[i].unit || units[i].unit == 1) {
            long long k = (long long)((secs + units[i].unit / 2) / units[i].unit);
            snprintf(buf, n, "%lld %s%s", k, units[i].name, k == 1 ? "" : "s");
            break;
        }
    }
    return buf;
}

/* ---- certificate facts ---- */

static char *name_str(const X509_NAME *name)
{
    BIO *b = BIO_new(BIO_s_mem());
    CDN_ASSERT(b != NULL);
    /* RFC 2253 escapes control characters, so a hostile subject cannot forge a log line */
    X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    char *s = n > 0 ? cdn_xstrndup(p, (size_t)n) : cdn_xstrdup("(empty)");
    BIO_free(b);
    return s;
}

/* True when issuer's name is subject's issuer name and issuer's key verifies subject's signature. */
static bool signs(X509 *issuer, X509 *subject)
{
    if (X509_NAME_cmp(X509_get_subject_name(issuer), X509_get_issuer_name(subject)) != 0)
        return false;
    EVP_PKEY *pk = X509_get0_pubkey(issuer);
    bool ok = pk != NULL && X509_verify(subject, pk) == 1;
    ERR_clear_error();
    return ok;
}

/* basicConstraints: 1 CA:TRUE, 0 CA:FALSE, -1 absent, -2 present but undecodable or repeated. */
static int basic_constraints(X509 *x)
{
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    ERR_clear_error();
    if (bc == NULL)
        return crit == -1 ? -1 : -2;
    int ca = bc->ca ? 1 : 0;
    BASIC_CONSTRAINTS_free(bc);
    return ca;
}

static void fill_facts(struct cdn_certcheck_report *r, struct cdn_certcheck_cert *c,
                       const struct cdn_certcheck_opts *o)
{
    X509 *x = c->x509;
    c->subject = name_str(X509_get_subject_name(x));
    c->issuer = name_str(X509_get_issuer_name(x));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    CDN_ASSERT(X509_digest(x, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32);
    size_t k = 0;
    for (unsigned i = 0; i < mdlen; i++)
        k += (size_t)snprintf(c->fingerprint + k, sizeof(c->fingerprint) - k, "%s%02X", i > 0 ? ":" : "",
                              md[i]);
    if (asn1_to_unix(X509_get0_notBefore(x), &c->not_before) != 0 ||
        asn1_to_unix(X509_get0_notAfter(x), &c->not_after) != 0) {
        c->not_before = c->not_after = 0;
        add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_BAD_PEM, 0, "validity dates do not decode");
    }
    c->expires_in = c->not_after - o->now;
    c->is_ca = basic_constraints(x) == 1;
    c->self_signed = X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0 && signs(x, x);
}

/* ---- checks ---- */

static void check_validity(struct cdn_certcheck_report *r, struct cdn_certcheck_cert *c,
                           const struct cdn_certcheck_opts *o)
{
    char date[32], span[32];
    if (c->not_before == 0 && c->not_after == 0)
        return; /* undecodable, already reported */
    if (c->not_before > o->now)
        add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_NOT_YET_VALID, 0, "not valid until %s (in %s)",
            fmt_date(c->not_before, date, sizeof(date)),
            fmt_span(c->not_before - o->now, span, sizeof(span)));
    if (c->not_after < o->now)
        add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_EXPIRED, 0, "expired %s (%s ago)",
            fmt_date(c->not_after, date, sizeof(date)), fmt_span(o->now - c->not_after, span, sizeof(span)));
    else if (o->warn_days > 0 && c->expires_in < (int64_t)o->warn_days * DAY)
        add(r, c, CDN_CERTCHECK_SEV_WARNING, CDN_CERTCHECK_EXPIRES_SOON, 0,
            "expires %s (in %s; warning at %u days)", fmt_date(c->not_after, date, sizeof(date)),
            fmt_span(c->expires_in, span, sizeof(span)), o->warn_days);
}

/* relied_on is false only for a self-signed root: nobody checks a trust anchor's own signature,
 * so a weak one there is a warning (replace it), not a reason to refuse the bundle. */
static void check_signature(struct cdn_certcheck_report *r, struct cdn_certcheck_cert *c, bool relied_on)
{
    int mdnid = NID_undef, secbits = -1;
    uint32_t flags = 0;
    const char *alg = OBJ_nid2ln(X509_get_signature_nid(c->x509));
    enum cdn_certcheck_severity sev = relied_on ? CDN_CERTCHECK_SEV_ERROR : CDN_CERTCHECK_SEV_WARNING;
    if (alg == NULL)
        alg = "?";
    if (X509_get_signature_info(c->x509, &mdnid, NULL, &secbits, &flags) != 1) {
        ERR_clear_error();
        add(r, c, sev, CDN_CERTCHECK_WEAK_SIGNATURE, 0, "unknown signature algorithm %s", alg);
        return;
    }
    if (secbits >= 128) /* SHA-256 and up, Ed25519, Ed448 */
        return;
    const char *digest = mdnid == NID_sha1 ? "SHA-1" : mdnid == NID_md5 ? "MD5" : OBJ_nid2sn(mdnid);
    if (digest == NULL)
        digest = "?";
    if (relied_on)
        add(r, c, sev, CDN_CERTCHECK_WEAK_SIGNATURE, 0, "signed with %s (%s): SHA-256 or better is required",
            alg, digest);
    else
        add(r, c, sev, CDN_CERTCHECK_WEAK_SIGNATURE, 0,
            "self-signed with %s (%s): a root's own signature is not relied on, but replace it", alg, digest);
}

static void check_key(struct cdn_certcheck_report *r, struct cdn_certcheck_cert *c)
{
    EVP_PKEY *pk = X509_get0_pubkey(c->x509);
    if (pk == NULL) {
        ERR_clear_error();
        add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_WEAK_KEY, 0, "public key does not decode");
        return;
    }
    int bits = EVP_PKEY_get_bits(pk), id = EVP_PKEY_get_base_id(pk);
    switch (id) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
        if (bits < 2048)
            add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_WEAK_KEY, 0,
                "RSA key of %d bits: at least 2048 are required", bits);
        break;
    case EVP_PKEY_EC:
        if (bits < 256) {
            char curve[64] = "an unnamed curve";
            if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, curve, sizeof(curve), NULL) !=
                1)
                ERR_clear_error();
            add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_WEAK_KEY, 0,
                "EC key on %s (%d bits): curves of at least 256 bits are required", curve, bits);
        }
        break;
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448:
        break;
    case EVP_PKEY_DSA:
        add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_WEAK_KEY, 0,
            "DSA key (%d bits): DSA certificates are not accepted (no TLS 1.3 support)", bits);
        break;
    default: {
        const char *name = OBJ_nid2sn(id);
        add(r, c, CDN_CERTCHECK_SEV_WARNING, CDN_CERTCHECK_WEAK_KEY, 0, "unusual key type %s (%d bits)",
            name != NULL ? name : "?", bits);
        break;
    }
    }
}

/* What a certificate must be to sign others: v3, CA:TRUE, keyCertSign when keyUsage is present. */
static void check_ca(struct cdn_certcheck_report *r, struct cdn_certcheck_cert *c)
{
    X509 *x = c->x509;
    long v = X509_get_version(x);
    if (v != X509_VERSION_3)
        add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_VERSION, 0,
            "X.509 v%ld: a CA certificate must be v3 with basicConstraints CA:TRUE", v + 1);
    int bc = basic_constraints(x);
    switch (bc) {
    case 1:
        break;
    case 0:
        add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_NOT_CA, 0,
            "basicConstraints CA:FALSE: not a CA certificate");
        break;
    case -1:
        if (v == X509_VERSION_3) /* a v1/v2 certificate was already told why */
            add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_NOT_CA, 0,
                "no basicConstraints extension: not a CA certificate");
        break;
    default:
        add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_NOT_CA, 0,
            "basicConstraints is repeated or does not decode");
        break;
    }
    /* only for a CA: on anything else "not a CA" already says it all */
    if (bc == 1 && (X509_get_extension_flags(x) & EXFLAG_KUSAGE) &&
        !(X509_get_key_usage(x) & KU_KEY_CERT_SIGN))
        add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_KEY_USAGE, 0,
            "keyUsage without keyCertSign: it cannot sign certificates");
}

/* What the certificate the node (or an edge) presents must be for its side of the handshake.
 * The rules are OpenSSL's own purpose checks, so what passes here passes the peer's verify. */
static void check_leaf(struct cdn_certcheck_report *r, struct cdn_certcheck_cert *c,
                       enum cdn_certcheck_kind kind)
{
    X509 *x = c->x509;
    bool client = kind == CDN_CERTCHECK_KIND_CLIENT;
    const char *use = client ? "client" : "server";
    if (c->is_ca)
        add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_LEAF_IS_CA, 0,
            "basicConstraints CA:TRUE: a CA certificate is refused as a %s certificate", use);
    uint32_t flags = X509_get_extension_flags(x);
    if (flags & EXFLAG_XKUSAGE) {
        uint32_t want = client ? XKU_SSL_CLIENT : XKU_SSL_SERVER;
        if (!(X509_get_extended_key_usage(x) & want))
            add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_EKU, 0,
                "extendedKeyUsage lacks %s: peers refuse it as a %s certificate",
                client ? "clientAuth" : "serverAuth", use);
    }
    if (flags & EXFLAG_KUSAGE) {
        uint32_t need = KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT | (client ? 0 : KU_KEY_ENCIPHERMENT);
        if (!(X509_get_key_usage(x) & need))
            add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_KEY_USAGE, 0,
                "keyUsage allows neither digitalSignature nor %s: unusable for TLS",
                client ? "keyAgreement" : "keyEncipherment/keyAgreement");
    }
}

static void judge(struct cdn_certcheck_report *r, const struct cdn_certcheck_opts *o)
{
    bool leaf_file = o->kind != CDN_CERTCHECK_KIND_CA;
    for (size_t i = 0; i < r->ncerts; i++)
        fill_facts(r, &r->certs[i], o);
    for (size_t i = 0; i < r->ncerts; i++) {
        struct cdn_certcheck_cert *c = &r->certs[i];
        size_t dup = i;
        for (size_t j = 0; j < i && dup == i; j++)
            if (strcmp(r->certs[j].fingerprint, c->fingerprint) == 0)
                dup = j;
        if (dup != i) {
            /* everything else about it is already said on the first copy */
            add(r, c, CDN_CERTCHECK_SEV_WARNING, CDN_CERTCHECK_DUPLICATE, 0, "duplicate of cert %u (line %u)",
                r->certs[dup].index, r->certs[dup].line);
            continue;
        }
        if (X509_get_extension_flags(c->x509) & EXFLAG_INVALID)
            add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_BAD_PEM, 0,
                "its extensions are malformed (OpenSSL refuses it in verification)");
        c->leaf = leaf_file && i == 0;
        if (c->leaf)
            check_leaf(r, c, o->kind);
        else
            check_ca(r, c);
        check_validity(r, c, o);
        if (!c->leaf && !c->self_signed) {
            bool found = false;
            for (size_t j = 0; j < r->ncerts && !found; j++)
                found = j != i && signs(r->certs[j].x509, c->x509);
            if (!found && X509_NAME_cmp(X509_get_subject_name(c->x509), X509_get_issuer_name(c->x509)) == 0)
                add(r, c, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_BAD_SELF_SIGNATURE, 0,
                    "issuer equals subject, but its own key does not verify its signature");
            else if (!found && !leaf_file) /* a leaf file's chain ends below the root, by design */
                add(r, c, CDN_CERTCHECK_SEV_WARNING, CDN_CERTCHECK_ISSUER_MISSING, 0,
                    "issuer %s is not in this bundle (an intermediate is trusted only with its root)",
                    c->issuer);
        }
        check_signature(r, c, !c->self_signed);
        check_key(r, c);
        if (leaf_file && i > 0 && !signs(c->x509, r->certs[i - 1].x509))
            add(r, c, CDN_CERTCHECK_SEV_WARNING, CDN_CERTCHECK_CHAIN_ORDER, 0,
                "does not issue cert %u: a certificate file lists the leaf, then each issuer in turn",
                r->certs[i - 1].index);
    }
}

/* ---- PEM scanning ---- */

/* "-----BEGIN LABEL-----" -> label (NUL-terminated into lab); false when the line is not one. */
static bool pem_begin(const char *p, size_t n, char *lab, size_t labn)
{
    static const char pre[] = "-----BEGIN ", post[] = "-----";
    size_t a = sizeof(pre) - 1, b = sizeof(post) - 1;
    if (n <= a + b || memcmp(p, pre, a) != 0 || memcmp(p + n - b, post, b) != 0 || n - a - b >= labn)
        return false;
    memcpy(lab, p + a, n - a - b);
    lab[n - a - b] = '\0';
    return true;
}

static bool pem_end(const char *p, size_t n)
{
    return n >= 9 && memcmp(p, "-----END ", 9) == 0;
}

static bool pem_end_of(const char *p, size_t n, const char *lab)
{
    size_t l = strlen(lab);
    return n == 9 + l + 5 && pem_end(p, n) && memcmp(p + 9, lab, l) == 0 &&
           memcmp(p + 9 + l, "-----", 5) == 0;
}

static bool is_cert_label(const char *lab)
{
    return strcmp(lab, "CERTIFICATE") == 0 || strcmp(lab, "X509 CERTIFICATE") == 0 ||
           strcmp(lab, "TRUSTED CERTIFICATE") == 0;
}

struct garbage {
    unsigned first, last; /* lines of the current run; first == 0 when none is open */
    unsigned runs;        /* runs seen so far */
    unsigned more_line;   /* first line of the first run not reported on its own */
    unsigned more_runs;
    char preview[PREVIEW_CHARS + 1];
};

static void garbage_line(struct garbage *g, unsigned line, const char *p, size_t n)
{
    if (g->first == 0) {
        g->first = line;
        size_t k = 0;
        for (size_t i = 0; i < n && k < PREVIEW_CHARS; i++)
            g->preview[k++] = (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"') ? p[i] : '?';
        g->preview[k] = '\0';
    }
    g->last = line;
}

static void garbage_flush(struct cdn_certcheck_report *r, struct garbage *g)
{
    if (g->first == 0)
        return;
    if (g->runs++ < MAX_GARBAGE_RUNS) {
        if (g->last > g->first)
            add(r, NULL, CDN_CERTCHECK_SEV_WARNING, CDN_CERTCHECK_GARBAGE, g->first,
                "text outside PEM blocks, ignored (lines %u-%u): \"%s\"", g->first, g->last, g->preview);
        else
            add(r, NULL, CDN_CERTCHECK_SEV_WARNING, CDN_CERTCHECK_GARBAGE, g->first,
                "text outside PEM blocks, ignored: \"%s\"", g->preview);
    } else {
        if (g->more_runs++ == 0)
            g->more_line = g->first;
    }
    g->first = g->last = 0;
}

static void decode_block(struct cdn_certcheck_report *r, const struct cdn_certcheck_opts *o, const char *lab,
                         unsigned line, const char *p, size_t n)
{
    if (strstr(lab, "PRIVATE KEY") != NULL) {
        if (o->kind == CDN_CERTCHECK_KIND_CA)
            add(r, NULL, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_PRIVATE_KEY, line,
                "%s block in a CA bundle: remove it, and treat the key as exposed", lab);
        else
            add(r, NULL, CDN_CERTCHECK_SEV_WARNING, CDN_CERTCHECK_PRIVATE_KEY, line,
                "%s block ignored: keys belong in the key file", lab);
        return;
    }
    if (!is_cert_label(lab)) {
        add(r, NULL, CDN_CERTCHECK_SEV_WARNING, CDN_CERTCHECK_OTHER_PEM, line, "%s block ignored", lab);
        return;
    }
    BIO *b = BIO_new_mem_buf(p, (int)n);
    CDN_ASSERT(b != NULL);
    X509 *x = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL);
    BIO_free(b);
    if (x == NULL) {
        char why[160];
        add(r, NULL, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_BAD_PEM, line, "%s block does not decode: %s",
            lab, openssl_reason(why, sizeof(why)));
        return;
    }
    r->certs = cdn_xrealloc(r->certs, (r->ncerts + 1) * sizeof(*r->certs));
    struct cdn_certcheck_cert *c = &r->certs[r->ncerts++];
    memset(c, 0, sizeof(*c));
    c->index = (unsigned)r->ncerts;
    c->line = line;
    c->x509 = x;
}

static void scan(struct cdn_certcheck_report *r, const char *data, size_t len,
                 const struct cdn_certcheck_opts *o)
{
    struct garbage g = {0};
    char lab[64] = "", next_lab[64];
    bool in_block = false;
    unsigned line = 0, block_line = 0;
    size_t block_start = 0;
    for (size_t pos = 0; pos < len;) {
        const char *p = data + pos;
        const char *nl = memchr(p, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - p) : len - pos, next = pos + n + (nl != NULL);
        line++;
        while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (in_block) {
            if (pem_end_of(p, n, lab)) {
                decode_block(r, o, lab, block_line, data + block_start, next - block_start);
                in_block = false;
            } else if (pem_begin(p, n, next_lab, sizeof(next_lab))) {
                add(r, NULL, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_BAD_PEM, block_line,
                    "BEGIN %s has no END line before the next BEGIN (line %u)", lab, line);
                memcpy(lab, next_lab, sizeof(lab));
                block_line = line;
                block_start = pos;
            } else if (pem_end(p, n)) {
                add(r, NULL, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_BAD_PEM, block_line,
                    "BEGIN %s is closed by a different END line (line %u)", lab, line);
                in_block = false;
            }
        } else if (pem_begin(p, n, lab, sizeof(lab))) {
            garbage_flush(r, &g);
            in_block = true;
            block_line = line;
            block_start = pos;
        } else {
            size_t k = 0;
            while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'))
                k++;
            if (k < n)
                garbage_line(&g, line, p, n);
        }
        pos = next;
    }
    if (in_block)
        add(r, NULL, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_BAD_PEM, block_line,
            "BEGIN %s has no END line (truncated file?)", lab);
    garbage_flush(r, &g);
    if (g.more_runs > 0)
        add(r, NULL, CDN_CERTCHECK_SEV_WARNING, CDN_CERTCHECK_GARBAGE, g.more_line,
            "%u more runs of text outside PEM blocks, ignored", g.more_runs);
}

/* File findings in line order (stable), those without a line last: the scan reports a block's
 * problems when it ends and garbage when the next block begins, so they can arrive out of order. */
static void sort_file_findings(struct cdn_certcheck_report *r)
{
    for (size_t i = 1; i < r->nfile_findings; i++) {
        struct cdn_certcheck_finding f = r->file_findings[i];
        unsigned key = f.line != 0 ? f.line : ~0u;
        size_t j = i;
        while (j > 0 && (r->file_findings[j - 1].line != 0 ? r->file_findings[j - 1].line : ~0u) > key) {
            r->file_findings[j] = r->file_findings[j - 1];
            j--;
        }
        r->file_findings[j] = f;
    }
}

struct cdn_certcheck_report *cdn_certcheck_mem(const char *name, const char *data, size_t len,
                                               const struct cdn_certcheck_opts *o)
{
    struct cdn_certcheck_report *r = cdn_xcalloc(1, sizeof(*r));
    r->path = cdn_xstrdup(name);
    r->kind = o->kind;
    static const char begin[] = "-----BEGIN ";
    if (len == 0) {
        add(r, NULL, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_NO_CERT, 0, "empty file: no certificate in it");
    } else if (memmem(data, len, begin, sizeof(begin) - 1) == NULL) {
        /* no block at all: one finding, not a garbage report per line of a binary file */
        if ((unsigned char)data[0] == 0x30)
            add(r, NULL, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_NO_CERT, 0,
                "no PEM certificate: the file looks DER-encoded (convert it with openssl x509 -inform der)");
        else
            add(r, NULL, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_NO_CERT, 0, "no PEM certificate in it");
    } else {
        scan(r, data, len, o);
        if (r->ncerts == 0)
            add(r, NULL, CDN_CERTCHECK_SEV_ERROR, CDN_CERTCHECK_NO_CERT, 0, "no usable certificate in it");
    }
    judge(r, o);
    sort_file_findings(r);
    ERR_clear_error();
    return r;
}

int cdn_certcheck_file(const char *path, const struct cdn_certcheck_opts *o,
                       struct cdn_certcheck_report **out, char **err)
{
    int rc = -1;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        *err = cdn_xasprintf("cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    for (;;) {
        if (len == cap) {
            if (cap > MAX_FILE_BYTES) {
                *err = cdn_xasprintf("%s: larger than %u MiB, not a certificate file", path,
                                     MAX_FILE_BYTES >> 20);
                goto out;
            }
            cap = cap == 0 ? 16384 : cap * 2;
            buf = cdn_xrealloc(buf, cap);
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (k == 0) {
            if (ferror(f)) {
                *err = cdn_xasprintf("cannot read %s: %s", path, strerror(errno));
                goto out;
            }
            break;
        }
    }
    *out = cdn_certcheck_mem(path, buf != NULL ? buf : "", len, o);
    rc = 0;
out:
    fclose(f);
    free(buf);
    return rc;
}

void cdn_certcheck_report_free(struct cdn_certcheck_report **rp)
{
    struct cdn_certcheck_report *r = *rp;
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->ncerts; i++) {
        struct cdn_certcheck_cert *c = &r->certs[i];
        for (size_t j = 0; j < c->nfindings; j++)
            free(c->findings[j].msg);
        free(c->findings);
        free(c->subject);
        free(c->issuer);
        X509_free(c->x509);
    }
    for (size_t j = 0; j < r->nfile_findings; j++)
        free(r->file_findings[j].msg);
    free(r->file_findings);
    free(r->certs);
    free(r->path);
    free(r);
    *rp = NULL;
}

/* ---- output ---- */

char *cdn_certcheck_format_finding(const struct cdn_certcheck_report *r, const struct cdn_certcheck_cert *c,
                                   const struct cdn_certcheck_finding *f)
{
    const char *sev = cdn_certcheck_severity_name(f->severity);
    if (c != NULL)
        return cdn_xasprintf("%s: cert %u (subject %s, SHA-256 %s): %s: %s", r->path, c->index, c->subject,
                             c->fingerprint, sev, f->msg);
    if (f->line != 0)
        return cdn_xasprintf("%s: line %u: %s: %s", r->path, f->line, sev, f->msg);
    return cdn_xasprintf("%s: %s: %s", r->path, sev, f->msg);
}

static void append_finding(char **out, const struct cdn_certcheck_report *r,
                           const struct cdn_certcheck_cert *c, const struct cdn_certcheck_finding *f,
                           unsigned mask)
{
    if (!(mask & (1u << f->severity)))
        return;
    char *line = cdn_certcheck_format_finding(r, c, f);
    cdn_strappendf(out, "%s", line);
    free(line);
}

char *cdn_certcheck_format(const struct cdn_certcheck_report *r, unsigned mask)
{
    char *out = NULL;
    size_t j = 0;
    for (size_t i = 0; i < r->ncerts; i++) {
        const struct cdn_certcheck_cert *c = &r->certs[i];
        for (; j < r->nfile_findings && r->file_findings[j].line != 0 && r->file_findings[j].line < c->line;
             j++)
            append_finding(&out, r, NULL, &r->file_findings[j], mask);
        for (size_t k = 0; k < c->nfindings; k++)
            append_finding(&out, r, c, &c->findings[k], mask);
    }
    for (; j < r->nfile_findings; j++)
        append_finding(&out, r, NULL, &r->file_findings[j], mask);
    return out;
}

int cdn_certcheck_verify_file(const char *path, const struct cdn_certcheck_opts *o, char **err, char **warn)
{
    struct cdn_certcheck_report *r = NULL;
    char *e = NULL;
    if (cdn_certcheck_file(path, o, &r, &e) != 0) {
        cdn_strappendf(err, "%s", e);
        free(e);
        return -1;
    }
    char *w = cdn_certcheck_format(r, CDN_CERTCHECK_MASK_WARNINGS);
    if (w != NULL)
        cdn_strappendf(warn, "%s", w);
    free(w);
    int rc = 0;
    if (r->nerrors > 0) {
        e = cdn_certcheck_format(r, CDN_CERTCHECK_MASK_ERRORS);
        cdn_strappendf(err, "%s", e);
        free(e);
        rc = -1;
    }
    cdn_certcheck_report_free(&r);
    return rc;
}

int64_t cdn_certcheck_min_expires_in(const struct cdn_certcheck_report *r)
{
    int64_t m = INT64_MAX;
    for (size_t i = 0; i < r->ncerts; i++)
        if (r->certs[i].expires_in < m)
            m = r->certs[i].expires_in;
    return m;
}
