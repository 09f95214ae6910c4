/*
 * certcheck: judges PEM certificate files before the node trusts or presents them, the way a CA
 * truststore (Akamai's) vets an uploaded bundle. Two uses: CA bundles (`ca_file`: every certificate
 * must be a usable CA) and the leaf certificate files the node presents (`certificate`,
 * `client_certificate`: a leaf first, then the chain sent with it).
 *
 * Pure apart from reading the file: OpenSSL X509 APIs only, no sockets, no loop, no global state.
 * The clock is a parameter, so tests and expiry metrics judge against the same `now`. Problems with
 * the content are never a failure of the call: they are findings in the report, each an error (the
 * file must not be used) or a warning (usable, but an operator should act). `ca-check` prints them;
 * the config loader refuses a file with errors and logs the warnings.
 */
#ifndef CDN_CERTCHECK_H
#define CDN_CERTCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

/* What a file is checked as. */
enum cdn_certcheck_kind {
    CDN_CERTCHECK_KIND_CA,     /* a CA bundle: every certificate must be a CA */
    CDN_CERTCHECK_KIND_CLIENT, /* a client certificate: leaf (clientAuth) first, then its chain */
    CDN_CERTCHECK_KIND_SERVER, /* a server certificate: leaf (serverAuth) first, then its chain */
};

/* Ordered: a verdict is the worst severity of its findings. Also bits for the format masks. */
enum cdn_certcheck_severity {
    CDN_CERTCHECK_SEV_OK = 0,
    CDN_CERTCHECK_SEV_WARNING = 1,
    CDN_CERTCHECK_SEV_ERROR = 2,
};

/* What a finding is about, with a stable short name (for counters and log keys). One table, so
 * the enum and the names cannot drift apart. */
#define CDN_CERTCHECK_CODE_LIST(X)                                                                     \
    X(GARBAGE, "garbage")                       /* text outside PEM blocks (OpenSSL skips it) */       \
    X(BAD_PEM, "bad-pem")                       /* unterminated block, bad base64, not X.509 DER */    \
    X(OTHER_PEM, "other-pem")                   /* a PEM block that is not a certificate */            \
    X(PRIVATE_KEY, "private-key")               /* key material inside a certificate file */           \
    X(NO_CERT, "no-certificate")                /* the file holds no certificate at all */             \
    X(VERSION, "not-v3")                        /* not X.509 v3 (so no extensions) */                  \
    X(NOT_CA, "not-ca")                         /* CA bundle entry without basicConstraints CA:TRUE */ \
    X(KEY_USAGE, "key-usage")                   /* keyUsage present but lacks what the use needs */    \
    X(NOT_YET_VALID, "not-yet-valid")           /* notBefore is in the future */                       \
    X(EXPIRED, "expired")                       /* notAfter is in the past */                          \
    X(EXPIRES_SOON, "expires-soon")             /* notAfter is closer than warn_days */                \
    X(BAD_SELF_SIGNATURE, "bad-self-signature") /* issuer == subject but the signature fails */        \
    X(ISSUER_MISSING, "issuer-missing")         /* intermediate whose issuer is not in the file */     \
    X(WEAK_SIGNATURE, "weak-signature")         /* MD5, SHA-1, SHA-224 or an unknown algorithm */      \
    X(WEAK_KEY, "weak-key")                     /* RSA/DSA < 2048 bits, EC < 256 bits, unknown */      \
    X(DUPLICATE, "duplicate")                   /* the same certificate twice in one file */           \
    X(LEAF_IS_CA, "leaf-is-ca")                 /* a leaf with basicConstraints CA:TRUE */             \
    X(EKU, "eku")                               /* leaf EKU without clientAuth / serverAuth */         \
    X(CHAIN_ORDER, "chain-order")               /* leaf file: cert N+1 does not issue cert N */

enum cdn_certcheck_code {
#define CDN_CERTCHECK_X(id, name) CDN_CERTCHECK_##id,
    CDN_CERTCHECK_CODE_LIST(CDN_CERTCHECK_X)
#undef CDN_CERTCHECK_X
        CDN_CERTCHECK_NCODES
};

struct cdn_certcheck_finding {
    enum cdn_certcheck_severity severity; /* WARNING or ERROR, never OK */
    enum cdn_certcheck_code code;
    unsigned line; /* 1-based line in the file for findings about the file itself; 0 on a certificate */
    char *msg;     /* "expired 2025-01-01 (12 days ago)": no prefix, no newline; owned by the report */
};

struct cdn_certcheck_cert {
    unsigned index;       /* 1-based position among the file's certificates */
    unsigned line;        /* line of its -----BEGIN marker */
    X509 *x509;           /* owned by the report; X509_up_ref it to keep it longer */
    char *subject;        /* RFC 2253 ("CN=edge-1,O=Example"), control characters escaped */
    char *issuer;         /* same form */
    char fingerprint[96]; /* SHA-256 of the DER, "AB:CD:..." */
    int64_t not_before;   /* Unix seconds, UTC */
    int64_t not_after;    /* Unix seconds, UTC */
    int64_t expires_in;   /* not_after - now: seconds left, negative once expired (expiry metrics) */
    bool is_ca;           /* basicConstraints CA:TRUE */
    bool self_signed;     /* issuer == subject and its own key verifies its signature */
    bool leaf;            /* checked as the leaf (first certificate of a CLIENT/SERVER file) */
    enum cdn_certcheck_severity verdict; /* worst of findings[], OK when there is none */
    struct cdn_certcheck_finding *findings;
    size_t nfindings;
};

struct cdn_certcheck_report {
    char *path; /* the name given to cdn_certcheck_file/_mem, used as the line prefix */
    enum cdn_certcheck_kind kind;
    struct cdn_certcheck_cert *certs; /* in file order */
    size_t ncerts;
    struct cdn_certcheck_finding *file_findings; /* not about one certificate: garbage, bad blocks... */
    size_t nfile_findings;
    unsigned nerrors, nwarnings; /* over every finding, certificates and file */
};

struct cdn_certcheck_opts {
    enum cdn_certcheck_kind kind;
    unsigned warn_days; /* warn when notAfter is fewer than this many days away; 0 turns it off */
    int64_t now;        /* the clock, Unix seconds */
};

/* Defaults: the given kind, warn_days 30, now = time(NULL). */
void cdn_certcheck_opts_init(struct cdn_certcheck_opts *o, enum cdn_certcheck_kind kind);

/* Reads and judges the PEM file at path. Returns 0 and a new report in *out (free it with
 * cdn_certcheck_report_free), or -1 with *err (heap, caller frees) when the file cannot be read at
 * all: missing, unreadable, a directory, larger than 16 MiB. Everything wrong with the content,
 * an empty file included, is a finding, never -1. */
int cdn_certcheck_file(const char *path, const struct cdn_certcheck_opts *o,
                       struct cdn_certcheck_report **out, char **err);

/* Judges len bytes of PEM text; name is what the lines call the file. Never NULL. The data is not
 * kept. Drains the OpenSSL error queue it used. */
struct cdn_certcheck_report *cdn_certcheck_mem(const char *name, const char *data, size_t len,
                                               const struct cdn_certcheck_opts *o);

/* Frees the report with its certificates and findings; NULLs *r. NULL is fine. */
void cdn_certcheck_report_free(struct cdn_certcheck_report **r);

/* One finding as a line (heap, no newline; caller frees):
 *   "FILE: cert N (subject CN=x, SHA-256 AB:CD:...): error: expired 2025-01-01 (12 days ago)"
 *   "FILE: line L: warning: text outside PEM blocks"              (cert NULL, f->line set)
 * cert is the certificate f belongs to, NULL for a file finding. */
char *cdn_certcheck_format_finding(const struct cdn_certcheck_report *r,
                                   const struct cdn_certcheck_cert *cert,
                                   const struct cdn_certcheck_finding *f);

/* Every finding of r whose severity bit is in mask (1 << CDN_CERTCHECK_SEV_WARNING, 1 <<
 * CDN_CERTCHECK_SEV_ERROR, or both), ordered by position in the file, one line each as above,
 * joined by '\n' without a trailing one. NULL when none matched; otherwise the caller frees. */
#define CDN_CERTCHECK_MASK_WARNINGS (1u << CDN_CERTCHECK_SEV_WARNING)
#define CDN_CERTCHECK_MASK_ERRORS   (1u << CDN_CERTCHECK_SEV_ERROR)
char *cdn_certcheck_format(const struct cdn_certcheck_report *r, unsigned mask);

/* For the config loader: judges path and splits the outcome. Returns 0 when there is no error,
 * -1 when the file is unreadable or has errors; *err then holds the lines (as cdn_certcheck_format).
 * Warning lines go to *warn whatever the result. Both are appended with cdn_strappendf (so they may
 * already hold text) and the caller frees them. */
int cdn_certcheck_verify_file(const char *path, const struct cdn_certcheck_opts *o, char **err, char **warn);

/* The fewest seconds until a certificate of r expires (negative when one has), for an expiry
 * gauge. INT64_MAX when r holds no certificate. */
int64_t cdn_certcheck_min_expires_in(const struct cdn_certcheck_report *r);

/* "ok" / "warning" / "error". */
const char *cdn_certcheck_severity_name(enum cdn_certcheck_severity s);
/* The short name from CDN_CERTCHECK_CODE_LIST ("expired", "weak-key"...). */
const char *cdn_certcheck_code_name(enum cdn_certcheck_code c);
/* "CA", "client" or "server". */
const char *cdn_certcheck_kind_name(enum cdn_certcheck_kind k);

#endif
