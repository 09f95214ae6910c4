/*
 * certcheck: every verdict of the truststore checks, on certificates made at test time with the
 * openssl command line (`openssl ca`, because only it sets arbitrary notBefore/notAfter dates in
 * OpenSSL 3.0) into a mkdtemp folder, once for the whole case.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <check.h>
#include <openssl/err.h>

#include "lib/certcheck.h"
#include "lib/util.h"
#include "test/unit/suites.h"

static char dir[256];

static char *path(const char *name)
{
    static char buf[4][320];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
    return buf[i];
}

/* Runs a shell command in dir; its output goes to dir/gen.log, which a failure points at. */
static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[2048], full[2400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    snprintf(full, sizeof(full), "cd '%s' && { %s ; } >>gen.log 2>&1", dir, cmd);
    ck_assert_msg(system(full) == 0, "failed: %s (see %s/gen.log)", cmd, dir);
}

static char *slurp(const char *name)
{
    FILE *f = fopen(path(name), "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path(name));
    char *buf = cdn_xmalloc(1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void spit(const char *name, const char *text)
{
    FILE *f = fopen(path(name), "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static unsigned count_lines(const char *s)
{
    unsigned n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* YYYYMMDDHHMMSSZ, `days` from now (negative: in the past) */
static const char *when(int days, char *buf, size_t n)
{
    time_t t = time(NULL) + (time_t)days * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y%m%d%H%M%SZ", &tm);
    return buf;
}

static const char ca_cnf[] = "[ca]\n"
                             "default_ca = tca\n"
                             "[tca]\n"
                             "database = ./index.txt\n"
                             "new_certs_dir = ./new\n"
                             "serial = ./serial\n"
                             "policy = pol\n"
                             "default_md = sha256\n"
                             "unique_subject = no\n"
                             "email_in_dn = no\n"
                             "[pol]\n"
                             "commonName = supplied\n"
                             "[v3_ca]\n"
                             "basicConstraints = critical,CA:TRUE\n"
                             "keyUsage = critical,keyCertSign,cRLSign\n"
                             "subjectKeyIdentifier = hash\n"
                             "authorityKeyIdentifier = keyid:always\n"
                             "[v3_ca_noku]\n"
                             "basicConstraints = critical,CA:TRUE\n"
                             "keyUsage = critical,digitalSignature\n"
                             "[v3_noca]\n"
                             "basicConstraints = critical,CA:FALSE\n"
                             "keyUsage = critical,digitalSignature\n"
                             "[v3_client]\n"
                             "basicConstraints = critical,CA:FALSE\n"
                             "keyUsage = critical,digitalSignature\n"
                             "extendedKeyUsage = clientAuth\n"
                             "[v3_server]\n"
                             "basicConstraints = critical,CA:FALSE\n"
                             "keyUsage = critical,digitalSignature\n"
                             "extendedKeyUsage = serverAuth\n"
                             "[v3_leaf_ca]\n"
                             "basicConstraints = critical,CA:TRUE\n"
                             "keyUsage = critical,digitalSignature,keyCertSign\n"
                             "extendedKeyUsage = clientAuth\n";

/* key: "ec" (P-256), "ec224", "rsa2048", "rsa1024". issuer NULL: self-signed. */
static void mkcert(const char *name, const char *key, const char *issuer, const char *ext, const char *md,
                   int from_days, int to_days)
{
    char a[32], b[32], keyopt[96], sign[128];
    if (strcmp(key, "ec") == 0)
        snprintf(keyopt, sizeof(keyopt), "-algorithm EC -pkeyopt ec_paramgen_curve:P-256");
    else if (strcmp(key, "ec224") == 0)
        snprintf(keyopt, sizeof(keyopt), "-algorithm EC -pkeyopt ec_paramgen_curve:P-224");
    else
        snprintf(keyopt, sizeof(keyopt), "-algorithm RSA -pkeyopt rsa_keygen_bits:%s", key + 3);
    if (issuer == NULL)
        snprintf(sign, sizeof(sign), "-selfsign -keyfile %s.key", name);
    else
        snprintf(sign, sizeof(sign), "-cert %s.crt -keyfile %s.key", issuer, issuer);
    sh("openssl genpkey %s -out %s.key", keyopt, name);
    sh("openssl req -new -key %s.key -subj '/CN=test %s' -out %s.csr", name, name, name);
    sh("openssl ca -batch -config ca.cnf -notext -md %s -startdate %s -enddate %s -extensions %s %s -in "
       "%s.csr "
       "-out %s.crt",
       md, when(from_days, a, sizeof(a)), when(to_days, b, sizeof(b)), ext, sign, name, name);
}

static void make_certs(void)
{
    snprintf(dir, sizeof(dir), "/tmp/cdn-test-certcheck-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    spit("ca.cnf", ca_cnf);
    sh("mkdir new && : >index.txt && echo 01 >serial");
    mkcert("root", "ec", NULL, "v3_ca", "sha256", -1, 3650);
    mkcert("inter", "ec", "root", "v3_ca", "sha256", -1, 1825);
    mkcert("expired", "ec", NULL, "v3_ca", "sha256", -400, -12);
    mkcert("future", "ec", NULL, "v3_ca", "sha256", 5, 400);
    mkcert("nonca", "ec", "root", "v3_noca", "sha256", -1, 365);
    mkcert("rsaroot", "rsa2048", NULL, "v3_ca", "sha256", -1, 3650);
    mkcert("sha1inter", "rsa2048", "rsaroot", "v3_ca", "sha1", -1, 365);
    mkcert("sha1root", "rsa2048", NULL, "v3_ca", "sha1", -1, 3650);
    mkcert("rsa1024", "rsa1024", NULL, "v3_ca", "sha256", -1, 3650);
    mkcert("ec224", "ec224", NULL, "v3_ca", "sha256", -1, 3650);
    mkcert("soon", "ec", NULL, "v3_ca", "sha256", -1, 10);
    mkcert("noku", "ec", NULL, "v3_ca_noku", "sha256", -1, 365);
    mkcert("leafca", "ec", "root", "v3_leaf_ca", "sha256", -1, 365);
    mkcert("server", "ec", "root", "v3_server", "sha256", -1, 365);
    mkcert("client", "ec", "root", "v3_client", "sha256", -1, 365);
    sh("cat root.crt inter.crt >good.pem && cat root.crt inter.crt root.crt >dup.pem");
    sh("cat rsaroot.crt sha1inter.crt >sha1.pem && cat client.crt root.crt >client-chain.pem");
    sh("cat root.crt root.key >withkey.pem && openssl x509 -in root.crt -outform der -out root.der");
    sh("openssl x509 -in root.crt -noout -fingerprint -sha256 | sed 's/^.*=//' >root.fp && : >empty.pem");
}

static void remove_certs(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static struct cdn_certcheck_report *check_as(const char *name, enum cdn_certcheck_kind kind,
                                             unsigned warn_days)
{
    struct cdn_certcheck_opts o;
    cdn_certcheck_opts_init(&o, kind);
    o.warn_days = warn_days;
    struct cdn_certcheck_report *r = NULL;
    char *err = NULL;
    int rc = cdn_certcheck_file(path(name), &o, &r, &err);
    ck_assert_msg(rc == 0, "%s: %s", name, err != NULL ? err : "?");
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(ERR_peek_error(), 0); /* the queue is left empty */
    return r;
}

static struct cdn_certcheck_report *check(const char *name)
{
    return check_as(name, CDN_CERTCHECK_KIND_CA, 30);
}

/* The finding with code on c (or on the file when c is NULL), or NULL. */
static const struct cdn_certcheck_finding *finding(const struct cdn_certcheck_report *r,
                                                   const struct cdn_certcheck_cert *c,
                                                   enum cdn_certcheck_code code)
{
    const struct cdn_certcheck_finding *v = c != NULL ? c->findings : r->file_findings;
    size_t n = c != NULL ? c->nfindings : r->nfile_findings;
    for (size_t i = 0; i < n; i++)
        if (v[i].code == code)
            return &v[i];
    return NULL;
}

/* Asserts that c has a finding with this code and severity and returns it. */
static const struct cdn_certcheck_finding *must(const struct cdn_certcheck_report *r,
                                                const struct cdn_certcheck_cert *c,
                                                enum cdn_certcheck_code code, enum cdn_certcheck_severity sev)
{
    const struct cdn_certcheck_finding *f = finding(r, c, code);
    char *all = cdn_certcheck_format(r, CDN_CERTCHECK_MASK_ERRORS | CDN_CERTCHECK_MASK_WARNINGS);
    ck_assert_msg(f != NULL, "%s: no %s finding; findings:\n%s", r->path, cdn_certcheck_code_name(code),
                  all != NULL ? all : "(none)");
    ck_assert_msg(f->severity == sev, "%s: %s is a %s", r->path, f->msg,
                  cdn_certcheck_severity_name(f->severity));
    free(all);
    return f;
}

static void assert_clean(const struct cdn_certcheck_report *r)
{
    char *all = cdn_certcheck_format(r, CDN_CERTCHECK_MASK_ERRORS | CDN_CERTCHECK_MASK_WARNINGS);
    ck_assert_msg(all == NULL, "%s: expected no findings, got:\n%s", r->path, all);
    ck_assert_uint_eq(r->nerrors, 0);
    ck_assert_uint_eq(r->nwarnings, 0);
    for (size_t i = 0; i < r->ncerts; i++)
        ck_assert_int_eq(r->certs[i].verdict, CDN_CERTCHECK_SEV_OK);
}

START_TEST(good_root_and_intermediate)
{
    struct cdn_certcheck_report *r = check("good.pem");
    ck_assert_uint_eq(r->ncerts, 2);
    assert_clean(r);
    const struct cdn_certcheck_cert *root = &r->certs[0], *inter = &r->certs[1];
    ck_assert_uint_eq(root->index, 1);
    ck_assert_uint_eq(root->line, 1);
    ck_assert_uint_eq(inter->index, 2);
    ck_assert(root->self_signed && root->is_ca);
    ck_assert(!inter->self_signed && inter->is_ca);
    ck_assert_str_eq(root->subject, "CN=test root");
    ck_assert_str_eq(inter->issuer, "CN=test root");
    /* the fingerprint is the one openssl prints */
    char *fp = slurp("root.fp");
    fp[strcspn(fp, "\n")] = '\0';
    ck_assert_str_eq(root->fingerprint, fp);
    free(fp);
    /* seconds until notAfter: 3650 days, give or take the seconds the test took */
    int64_t want = (int64_t)3650 * 86400;
    ck_assert_msg(root->expires_in > want - 3600 && root->expires_in <= want, "%lld",
                  (long long)root->expires_in);
    ck_assert_int_eq(cdn_certcheck_min_expires_in(r), inter->expires_in);
    cdn_certcheck_report_free(&r);
    ck_assert_ptr_null(r);
}
END_TEST

START_TEST(intermediate_without_its_root_warns)
{
    struct cdn_certcheck_report *r = check("inter.crt");
    const struct cdn_certcheck_finding *f =
        must(r, &r->certs[0], CDN_CERTCHECK_ISSUER_MISSING, CDN_CERTCHECK_SEV_WARNING);
    ck_assert_msg(strstr(f->msg, "CN=test root") != NULL, "%s", f->msg);
    ck_assert_uint_eq(r->nerrors, 0);
    ck_assert_int_eq(r->certs[0].verdict, CDN_CERTCHECK_SEV_WARNING);
    cdn_certcheck_report_free(&r);
}
END_TEST

START_TEST(expired_ca_is_an_error)
{
    struct cdn_certcheck_report *r = check("expired.crt");
    const struct cdn_certcheck_cert *c = &r->certs[0];
    const struct cdn_certcheck_finding *f = must(r, c, CDN_CERTCHECK_EXPIRED, CDN_CERTCHECK_SEV_ERROR);
    char date[64];
    time_t t = (time_t)c->not_after;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "expired %Y-%m-%d (12 days ago)", &tm);
    ck_assert_str_eq(f->msg, date);
    ck_assert(c->expires_in < -11 * 86400);
    ck_assert_int_eq(cdn_certcheck_min_expires_in(r), c->expires_in);
    ck_assert_int_eq(c->verdict, CDN_CERTCHECK_SEV_ERROR);
    ck_assert_uint_eq(r->nerrors, 1);
    cdn_certcheck_report_free(&r);
}
END_TEST

START_TEST(not_yet_valid_ca_is_an_error)
{
    struct cdn_certcheck_report *r = check("future.crt");
    const struct cdn_certcheck_finding *f =
        must(r, &r->certs[0], CDN_CERTCHECK_NOT_YET_VALID, CDN_CERTCHECK_SEV_ERROR);
    ck_assert_msg(strstr(f->msg, "not valid until ") == f->msg && strstr(f->msg, "(in 5 days)") != NULL, "%s",
                  f->msg);
    ck_assert_ptr_null(finding(r, &r->certs[0], CDN_CERTCHECK_EXPIRED));
    cdn_certcheck_report_free(&r);
}
END_TEST

START_TEST(non_ca_in_a_bundle_is_an_error)
{
    struct cdn_certcheck_report *r = check("nonca.crt");
    const struct cdn_certcheck_finding *f =
        must(r, &r->certs[0], CDN_CERTCHECK_NOT_CA, CDN_CERTCHECK_SEV_ERROR);
    ck_assert_msg(strstr(f->msg, "CA:FALSE") != NULL, "%s", f->msg);
    ck_assert(!r->certs[0].is_ca);
    cdn_certcheck_report_free(&r);
    /* keyUsage present without keyCertSign: CA:TRUE is not enough */
    r = check("noku.crt");
    must(r, &r->certs[0], CDN_CERTCHECK_KEY_USAGE, CDN_CERTCHECK_SEV_ERROR);
    cdn_certcheck_report_free(&r);
}
END_TEST

START_TEST(sha1_intermediate_is_an_error_sha1_root_a_warning)
{
    struct cdn_certcheck_report *r = check("sha1.pem");
    ck_assert_uint_eq(r->ncerts, 2);
    ck_assert_int_eq(r->certs[0].verdict, CDN_CERTCHECK_SEV_OK);
    const struct cdn_certcheck_finding *f =
        must(r, &r->certs[1], CDN_CERTCHECK_WEAK_SIGNATURE, CDN_CERTCHECK_SEV_ERROR);
    ck_assert_msg(strstr(f->msg, "sha1WithRSAEncryption") != NULL && strstr(f->msg, "SHA-1") != NULL, "%s",
                  f->msg);
    ck_assert_uint_eq(r->nerrors, 1);
    cdn_certcheck_report_free(&r);

    r = check("sha1root.crt");
    must(r, &r->certs[0], CDN_CERTCHECK_WEAK_SIGNATURE, CDN_CERTCHECK_SEV_WARNING);
    ck_assert(r->certs[0].self_signed);
    ck_assert_uint_eq(r->nerrors, 0);
    cdn_certcheck_report_free(&r);
}
END_TEST

START_TEST(small_keys_are_errors)
{
    struct cdn_certcheck_report *r = check("rsa1024.crt");
    const struct cdn_certcheck_finding *f =
        must(r, &r->certs[0], CDN_CERTCHECK_WEAK_KEY, CDN_CERTCHECK_SEV_ERROR);
    ck_assert_msg(strstr(f->msg, "RSA key of 1024 bits") != NULL, "%s", f->msg);
    cdn_certcheck_report_free(&r);
    r = check("ec224.crt");
    f = must(r, &r->certs[0], CDN_CERTCHECK_WEAK_KEY, CDN_CERTCHECK_SEV_ERROR);
    ck_assert_msg(strstr(f->msg, "224 bits") != NULL, "%s", f->msg);
    cdn_certcheck_report_free(&r);
    /* RSA 2048 is fine */
    r = check("rsaroot.crt");
    assert_clean(r);
    cdn_certcheck_report_free(&r);
}
END_TEST

START_TEST(ec_p256_ca_is_good)
{
    struct cdn_certcheck_report *r = check("root.crt");
    ck_assert_uint_eq(r->ncerts, 1);
    assert_clean(r);
    cdn_certcheck_report_free(&r);
}
END_TEST

START_TEST(garbage_and_broken_blocks_are_located)
{
    char *root = slurp("root.crt"), *inter = slurp("inter.crt");
    unsigned root_lines = count_lines(root), inter_lines = count_lines(inter);
    char *text =
        cdn_xasprintf("%s\r\nsome notes\nmore notes\n\n%s"
                      "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
                      "-----BEGIN CERTIFICATE-----\nMIIB\n",
                      root, inter);
    spit("garbage.pem", text);
    struct cdn_certcheck_report *r = check("garbage.pem");
    ck_assert_uint_eq(r->ncerts, 2);
    ck_assert_uint_eq(r->certs[1].line, root_lines + 5);
    ck_assert_int_eq(r->certs[0].verdict, CDN_CERTCHECK_SEV_OK);
    ck_assert_int_eq(r->certs[1].verdict, CDN_CERTCHECK_SEV_OK);
    ck_assert_uint_eq(r->nfile_findings, 3);
    /* the notes: a warning, at their first line, quoting it */
    const struct cdn_certcheck_finding *f = &r->file_findings[0];
    ck_assert_int_eq(f->code, CDN_CERTCHECK_GARBAGE);
    ck_assert_int_eq(f->severity, CDN_CERTCHECK_SEV_WARNING);
    ck_assert_uint_eq(f->line, root_lines + 2);
    ck_assert_msg(strstr(f->msg, "\"some notes\"") != NULL, "%s", f->msg);
    /* a block that is base64 but not a certificate, and one cut short: errors at their BEGIN lines */
    unsigned bad = root_lines + 5 + inter_lines;
    ck_assert_int_eq(r->file_findings[1].code, CDN_CERTCHECK_BAD_PEM);
    ck_assert_int_eq(r->file_findings[1].severity, CDN_CERTCHECK_SEV_ERROR);
    ck_assert_uint_eq(r->file_findings[1].line, bad);
    ck_assert_int_eq(r->file_findings[2].code, CDN_CERTCHECK_BAD_PEM);
    ck_assert_uint_eq(r->file_findings[2].line, bad + 3);
    ck_assert_msg(strstr(r->file_findings[2].msg, "no END line") != NULL, "%s", r->file_findings[2].msg);
    ck_assert_uint_eq(r->nerrors, 2);
    /* formatted in file order with the position */
    char *lines = cdn_certcheck_format(r, CDN_CERTCHECK_MASK_ERRORS | CDN_CERTCHECK_MASK_WARNINGS);
    char want[512];
    snprintf(want, sizeof(want), "%s: line %u: warning: text outside PEM blocks, ignored (lines %u-%u)",
             path("garbage.pem"), root_lines + 2, root_lines + 2, root_lines + 3);
    ck_assert_msg(strncmp(lines, want, strlen(want)) == 0, "got:\n%s\nwant: %s", lines, want);
    ck_assert_uint_eq(count_lines(lines), 2);
    cdn_certcheck_report_free(&r);
    free(lines);
    free(text);
    free(root);
    free(inter);
}
END_TEST

START_TEST(duplicate_is_a_warning)
{
    struct cdn_certcheck_report *r = check("dup.pem");
    ck_assert_uint_eq(r->ncerts, 3);
    const struct cdn_certcheck_finding *f =
        must(r, &r->certs[2], CDN_CERTCHECK_DUPLICATE, CDN_CERTCHECK_SEV_WARNING);
    ck_assert_msg(strstr(f->msg, "duplicate of cert 1 (line 1)") != NULL, "%s", f->msg);
    ck_assert_uint_eq(r->certs[2].nfindings, 1);
    ck_assert_uint_eq(r->nerrors, 0);
    ck_assert_uint_eq(r->nwarnings, 1);
    cdn_certcheck_report_free(&r);
}
END_TEST

START_TEST(expiring_soon_is_a_warning_with_a_threshold)
{
    struct cdn_certcheck_report *r = check("soon.crt");
    const struct cdn_certcheck_finding *f =
        must(r, &r->certs[0], CDN_CERTCHECK_EXPIRES_SOON, CDN_CERTCHECK_SEV_WARNING);
    ck_assert_msg(strstr(f->msg, "(in 10 days; warning at 30 days)") != NULL, "%s", f->msg);
    ck_assert_uint_eq(r->nerrors, 0);
    cdn_certcheck_report_free(&r);
    r = check_as("soon.crt", CDN_CERTCHECK_KIND_CA, 5);
    assert_clean(r);
    cdn_certcheck_report_free(&r);
    r = check_as("soon.crt", CDN_CERTCHECK_KIND_CA, 0);
    assert_clean(r);
    cdn_certcheck_report_free(&r);
}
END_TEST

START_TEST(leaf_with_ca_true_is_an_error)
{
    struct cdn_certcheck_report *r = check_as("leafca.crt", CDN_CERTCHECK_KIND_CLIENT, 30);
    ck_assert(r->certs[0].leaf);
    must(r, &r->certs[0], CDN_CERTCHECK_LEAF_IS_CA, CDN_CERTCHECK_SEV_ERROR);
    cdn_certcheck_report_free(&r);
}
END_TEST

START_TEST(server_only_leaf_as_client_is_an_error)
{
    struct cdn_certcheck_report *r = check_as("server.crt", CDN_CERTCHECK_KIND_CLIENT, 30);
    const struct cdn_certcheck_finding *f = must(r, &r->certs[0], CDN_CERTCHECK_EKU, CDN_CERTCHECK_SEV_ERROR);
    ck_assert_msg(strstr(f->msg, "clientAuth") != NULL, "%s", f->msg);
    cdn_certcheck_report_free(&r);
    r = check_as("server.crt", CDN_CERTCHECK_KIND_SERVER, 30);
    assert_clean(r);
    cdn_certcheck_report_free(&r);
    /* and a leaf in a CA bundle is not a CA */
    r = check("server.crt");
    must(r, &r->certs[0], CDN_CERTCHECK_NOT_CA, CDN_CERTCHECK_SEV_ERROR);
    cdn_certcheck_report_free(&r);
}
END_TEST

START_TEST(client_leaf_as_client_is_ok)
{
    struct cdn_certcheck_report *r = check_as("client.crt", CDN_CERTCHECK_KIND_CLIENT, 30);
    ck_assert_uint_eq(r->ncerts, 1);
    assert_clean(r);
    cdn_certcheck_report_free(&r);
    /* with its chain after it: the chain is judged as CAs, the missing root is no warning */
    r = check_as("client-chain.pem", CDN_CERTCHECK_KIND_CLIENT, 30);
    ck_assert_uint_eq(r->ncerts, 2);
    ck_assert(r->certs[0].leaf && !r->certs[1].leaf);
    assert_clean(r);
    cdn_certcheck_report_free(&r);
    /* the wrong way round: the root is taken as the leaf, the client as its "issuer" */
    sh("cat root.crt client.crt >reversed.pem");
    r = check_as("reversed.pem", CDN_CERTCHECK_KIND_CLIENT, 30);
    must(r, &r->certs[0], CDN_CERTCHECK_LEAF_IS_CA, CDN_CERTCHECK_SEV_ERROR);
    must(r, &r->certs[1], CDN_CERTCHECK_CHAIN_ORDER, CDN_CERTCHECK_SEV_WARNING);
    cdn_certcheck_report_free(&r);
}
END_TEST

START_TEST(format_and_verify_file)
{
    struct cdn_certcheck_report *r = check("expired.crt");
    char *lines = cdn_certcheck_format(r, CDN_CERTCHECK_MASK_ERRORS);
    char want[512];
    snprintf(want, sizeof(want), "%s: cert 1 (subject CN=test expired, SHA-256 %s): error: expired ",
             path("expired.crt"), r->certs[0].fingerprint);
    ck_assert_msg(strncmp(lines, want, strlen(want)) == 0, "got: %s\nwant: %s", lines, want);
    ck_assert_ptr_null(strchr(lines, '\n'));
    ck_assert_ptr_null(cdn_certcheck_format(r, CDN_CERTCHECK_MASK_WARNINGS));
    free(lines);
    cdn_certcheck_report_free(&r);

    struct cdn_certcheck_opts o;
    cdn_certcheck_opts_init(&o, CDN_CERTCHECK_KIND_CA);
    char *err = NULL, *warn = NULL;
    ck_assert_int_eq(cdn_certcheck_verify_file(path("soon.crt"), &o, &err, &warn), 0);
    ck_assert_ptr_null(err);
    ck_assert_msg(warn != NULL && strstr(warn, "warning: expires ") != NULL, "%s",
                  warn != NULL ? warn : "NULL");
    free(warn);
    warn = NULL;
    ck_assert_int_eq(cdn_certcheck_verify_file(path("rsa1024.crt"), &o, &err, &warn), -1);
    ck_assert_msg(err != NULL && strstr(err, "error: RSA key of 1024 bits") != NULL, "%s",
                  err != NULL ? err : "");
    ck_assert_ptr_null(warn);
    free(err);
    err = NULL;
    ck_assert_int_eq(cdn_certcheck_verify_file(path("missing.pem"), &o, &err, &warn), -1);
    ck_assert_msg(err != NULL && strstr(err, "missing.pem") != NULL, "%s", err != NULL ? err : "");
    free(err);
    ck_assert_str_eq(cdn_certcheck_code_name(CDN_CERTCHECK_EXPIRED), "expired");
    ck_assert_str_eq(cdn_certcheck_code_name(CDN_CERTCHECK_CHAIN_ORDER), "chain-order");
}
END_TEST

START_TEST(files_without_certificates)
{
    struct cdn_certcheck_opts o;
    cdn_certcheck_opts_init(&o, CDN_CERTCHECK_KIND_CA);
    struct cdn_certcheck_report *r = NULL;
    char *err = NULL;
    ck_assert_int_eq(cdn_certcheck_file(path("missing.pem"), &o, &r, &err), -1);
    ck_assert_ptr_null(r);
    ck_assert_msg(strstr(err, "cannot read") != NULL, "%s", err);
    free(err);
    err = NULL;
    ck_assert_int_eq(cdn_certcheck_file(dir, &o, &r, &err), -1); /* a directory */
    free(err);

    r = check("empty.pem");
    ck_assert_uint_eq(r->ncerts, 0);
    must(r, NULL, CDN_CERTCHECK_NO_CERT, CDN_CERTCHECK_SEV_ERROR);
    ck_assert_int_eq(cdn_certcheck_min_expires_in(r), INT64_MAX);
    cdn_certcheck_report_free(&r);

    r = check("root.der");
    const struct cdn_certcheck_finding *f = must(r, NULL, CDN_CERTCHECK_NO_CERT, CDN_CERTCHECK_SEV_ERROR);
    ck_assert_msg(strstr(f->msg, "DER") != NULL, "%s", f->msg);
    ck_assert_uint_eq(r->nfile_findings, 1);
    cdn_certcheck_report_free(&r);

    /* a key in a CA bundle is an error; next to a leaf, only ignored */
    r = check("withkey.pem");
    ck_assert_uint_eq(r->ncerts, 1);
    must(r, NULL, CDN_CERTCHECK_PRIVATE_KEY, CDN_CERTCHECK_SEV_ERROR);
    cdn_certcheck_report_free(&r);
    r = check_as("withkey.pem", CDN_CERTCHECK_KIND_SERVER, 30);
    must(r, NULL, CDN_CERTCHECK_PRIVATE_KEY, CDN_CERTCHECK_SEV_WARNING);
    cdn_certcheck_report_free(&r);

    /* in memory, with a name of the caller's choosing */
    r = cdn_certcheck_mem("inline", "hello\n", 6, &o);
    f = must(r, NULL, CDN_CERTCHECK_NO_CERT, CDN_CERTCHECK_SEV_ERROR);
    char *line = cdn_certcheck_format_finding(r, NULL, f);
    ck_assert_str_eq(line, "inline: error: no PEM certificate in it");
    free(line);
    cdn_certcheck_report_free(&r);
}
END_TEST

Suite *suite_certcheck(void)
{
    Suite *s = suite_create("certcheck");
    TCase *tc = tcase_create("truststore");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, make_certs, remove_certs);
    tcase_add_test(tc, good_root_and_intermediate);
    tcase_add_test(tc, intermediate_without_its_root_warns);
    tcase_add_test(tc, expired_ca_is_an_error);
    tcase_add_test(tc, not_yet_valid_ca_is_an_error);
    tcase_add_test(tc, non_ca_in_a_bundle_is_an_error);
    tcase_add_test(tc, sha1_intermediate_is_an_error_sha1_root_a_warning);
    tcase_add_test(tc, small_keys_are_errors);
    tcase_add_test(tc, ec_p256_ca_is_good);
    tcase_add_test(tc, garbage_and_broken_blocks_are_located);
    tcase_add_test(tc, duplicate_is_a_warning);
    tcase_add_test(tc, expiring_soon_is_a_warning_with_a_threshold);
    tcase_add_test(tc, leaf_with_ca_true_is_an_error);
    tcase_add_test(tc, server_only_leaf_as_client_is_an_error);
    tcase_add_test(tc, client_leaf_as_client_is_ok);
    tcase_add_test(tc, format_and_verify_file);
    tcase_add_test(tc, files_without_certificates);
    suite_add_tcase(s, tc);
    return s;
}
