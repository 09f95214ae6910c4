/*
 * sni: the matcher (exact, wildcard, '', longest wildcard, case, trailing dot), the Host != SNI rule
 * (cdn_sni_policy_covers), Host header parsing, and the sni: / host_sni_policy config keys.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <openssl/err.h>

#include "lib/conf.h"
#include "lib/sni.h"
#include "lib/tls.h"
#include "lib/util.h"
#include "test/unit/suites.h"

static const char *const rules[] = {
    "*.example.com",     /* 0 */
    "www.example.com",   /* 1 */
    "*.a.example.com",   /* 2 */
    "",                  /* 3 */
    "api.a.example.com", /* 4 */
    "other.test",        /* 5 */
};
#define NRULES (sizeof(rules) / sizeof(rules[0]))

static long m(const char *name)
{
    return cdn_sni_match_index(rules, NRULES, name, name != NULL ? strlen(name) : 0);
}

START_TEST(test_exact)
{
    ck_assert_int_eq(m("www.example.com"), 1);
    ck_assert_int_eq(m("other.test"), 5);
    ck_assert_int_eq(m("api.a.example.com"), 4); /* exact beats the longer wildcard */
    ck_assert_int_eq(m("other.test."), 5);       /* one trailing dot is ignored */
    ck_assert_int_eq(m("other.testx"), -1);
    ck_assert_int_eq(m("xother.test"), -1);
}
END_TEST

START_TEST(test_case)
{
    ck_assert_int_eq(m("WWW.Example.COM"), 1);
    ck_assert_int_eq(m("Foo.EXAMPLE.com"), 0);
    ck_assert_int_eq(m("OTHER.TEST"), 5);
}
END_TEST

START_TEST(test_wildcard)
{
    ck_assert_int_eq(m("foo.example.com"), 0);
    ck_assert_int_eq(m("b.c.example.com"), 0); /* one or more labels */
    ck_assert_int_eq(m("example.com"), -1);    /* never the bare domain */
    ck_assert_int_eq(m(".example.com"), -1);   /* an empty label is no label */
    ck_assert_int_eq(m("fooexample.com"), -1);
    ck_assert_int_eq(m("x.a.example.com"), 2); /* the longest wildcard wins */
    ck_assert_int_eq(m("y.x.a.example.com"), 2);
    ck_assert_int_eq(m("a.example.com"), 0); /* *.a.example.com needs a label before a. */
}
END_TEST

START_TEST(test_empty)
{
    ck_assert_int_eq(m(NULL), 3);
    ck_assert_int_eq(cdn_sni_match_index(rules, NRULES, "x", 0), 3);
    ck_assert_int_eq(m("127.0.0.1"), 3); /* an address is no server name */
    ck_assert_int_eq(m("::1"), 3);
    ck_assert_int_eq(m("1.2.3.4.example.com"), 0);
    static const char *const no_empty[] = {"*.example.com"};
    ck_assert_int_eq(cdn_sni_match_index(no_empty, 1, NULL, 0), -1); /* no '' rule: the listener's */
    ck_assert_int_eq(cdn_sni_match_index(no_empty, 1, "nomatch", 7), -1);
    ck_assert_int_eq(cdn_sni_match_index(NULL, 0, "a.example.com", 13), -1);
}
END_TEST

START_TEST(test_order_independent)
{
    /* the result never depends on the order of the rules */
    static const char *const r1[] = {"*.example.com", "*.b.example.com", "a.b.example.com"};
    static const char *const r2[] = {"a.b.example.com", "*.b.example.com", "*.example.com"};
    ck_assert_str_eq(r1[cdn_sni_match_index(r1, 3, "x.b.example.com", 15)], "*.b.example.com");
    ck_assert_str_eq(r2[cdn_sni_match_index(r2, 3, "x.b.example.com", 15)], "*.b.example.com");
    ck_assert_str_eq(r1[cdn_sni_match_index(r1, 3, "a.b.example.com", 15)], "a.b.example.com");
    ck_assert_str_eq(r2[cdn_sni_match_index(r2, 3, "a.b.example.com", 15)], "a.b.example.com");
}
END_TEST

START_TEST(test_covers)
{
    struct cdn_sni_policy none = {.fqdn = "open", .level = CDN_CLIENT_AUTH_NONE};
    struct cdn_sni_policy mod = {.fqdn = "mod", .level = CDN_CLIENT_AUTH_REQUEST, .ca_file = "ca.crt"};
    struct cdn_sni_policy strict = {.fqdn = "secure", .level = CDN_CLIENT_AUTH_REQUIRE, .ca_file = "ca.crt"};
    struct cdn_sni_policy strict2 = {.fqdn = "s2", .level = CDN_CLIENT_AUTH_REQUIRE, .ca_file = "ca.crt"};
    struct cdn_sni_policy other = {
        .fqdn = "partner", .level = CDN_CLIENT_AUTH_REQUIRE, .ca_file = "other.crt"};
    struct cdn_sni_policy crl = {
        .fqdn = "crl", .level = CDN_CLIENT_AUTH_REQUIRE, .ca_file = "ca.crt", .crl_file = "x.crl"};

    ck_assert(!cdn_sni_policy_covers(&none, false, &strict));
    ck_assert(!cdn_sni_policy_covers(&none, false, &mod));
    ck_assert(cdn_sni_policy_covers(&strict, true, &none));
    ck_assert(cdn_sni_policy_covers(&strict, true, &strict2)); /* same level, same CA */
    ck_assert(cdn_sni_policy_covers(&strict, true, &mod));
    ck_assert(!cdn_sni_policy_covers(&mod, false, &strict));  /* MODERATE without a certificate */
    ck_assert(cdn_sni_policy_covers(&mod, true, &strict));    /* ... with a verified one */
    ck_assert(!cdn_sni_policy_covers(&strict, true, &other)); /* another CA bundle */
    ck_assert(!cdn_sni_policy_covers(&strict, true, &crl));   /* another CRL */
    ck_assert(cdn_sni_policy_covers(&none, false, &none));

    /* pins: a rule with other pins (or pins at all) than the connection's is stricter */
    int pins_a, pins_b;
    struct cdn_sni_policy pa = strict, pb = strict, lo = strict;
    pa.pins = &pins_a;
    pb.pins = &pins_b;
    ck_assert(!cdn_sni_policy_covers(&strict, true, &pa));
    ck_assert(!cdn_sni_policy_covers(&pb, true, &pa));
    ck_assert(cdn_sni_policy_covers(&pa, true, &strict)); /* pinned may serve unpinned */
    pb.pins = &pins_a;
    ck_assert(cdn_sni_policy_covers(&pb, true, &pa)); /* the same pins (inherited from one place) */
    /* log_only: enforced nothing but what was verified */
    lo.log_only = true;
    ck_assert(!cdn_sni_policy_covers(&lo, false, &strict2));
    ck_assert(cdn_sni_policy_covers(&lo, true, &strict2));
    ck_assert(cdn_sni_policy_covers(&lo, false, &none));
}
END_TEST

START_TEST(test_host_name)
{
    size_t n;
    const char *h = cdn_sni_host_name("secure.example:8443", 19, &n);
    ck_assert_int_eq((int)n, 14);
    ck_assert(strncmp(h, "secure.example", n) == 0);
    h = cdn_sni_host_name("secure.example", 14, &n);
    ck_assert_int_eq((int)n, 14);
    h = cdn_sni_host_name("[::1]:443", 9, &n);
    ck_assert_int_eq((int)n, 3);
    ck_assert(strncmp(h, "::1", n) == 0);
}
END_TEST

static char *write_tmp(const char *yaml)
{
    char *p = cdn_xstrdup("/tmp/cdn-test-sni-XXXXXX");
    int fd = mkstemp(p);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq((int)write(fd, yaml, strlen(yaml)), (int)strlen(yaml));
    close(fd);
    return p;
}

#define LISTENER                                                                                        \
    "listeners:\n  - address: 127.0.0.1\n    port: 0\n    tls: true\n    certificate: c.crt\n    key: " \
    "c.key\n"

START_TEST(test_conf_ok)
{
    char *p = write_tmp(LISTENER "sni:\n"
                                 "  - fqdn: Open.Example\n"
                                 "    verify_client: NONE\n"
                                 "  - fqdn: '*.partner.example'\n"
                                 "    verify_client: STRICT\n"
                                 "    verify_client_ca_certs: /pki/other-ca.crt\n"
                                 "    crl_file: other.crl\n"
                                 "    certificate: p.crt\n"
                                 "    key: p.key\n"
                                 "  - fqdn: ''\n"
                                 "    verify_client: MODERATE\n"
                                 "  - fqdn: inherit.example\n"
                                 "host_sni_policy: permissive\n");
    struct cdn_conf *c = NULL;
    char *err = NULL;
    ck_assert_msg(cdn_conf_load(p, &c, &err) == 0, "%s", err);
    ck_assert_int_eq((int)c->nsni, 4);
    ck_assert_str_eq(c->sni[0].fqdn, "open.example");
    ck_assert_int_eq(c->sni[0].verify_client, CDN_CLIENT_AUTH_NONE);
    ck_assert_str_eq(c->sni[1].fqdn, "*.partner.example");
    ck_assert_int_eq(c->sni[1].verify_client, CDN_CLIENT_AUTH_REQUIRE);
    ck_assert_str_eq(c->sni[1].ca_file, "/pki/other-ca.crt");
    ck_assert_ptr_nonnull(strstr(c->sni[1].crl_file, "/other.crl")); /* relative to the config */
    ck_assert_ptr_nonnull(c->sni[1].certificate);
    ck_assert_str_eq(c->sni[2].fqdn, "");
    ck_assert_int_eq(c->sni[2].verify_client, CDN_CLIENT_AUTH_REQUEST);
    ck_assert_int_eq(c->sni[3].verify_client, CDN_CLIENT_AUTH_UNSET);
    ck_assert_int_eq(c->host_sni_policy, CDN_HOST_SNI_PERMISSIVE);
    cdn_conf_free(&c);
    unlink(p);
    free(p);
}
END_TEST

START_TEST(test_conf_default_policy)
{
    char *p = write_tmp(LISTENER);
    struct cdn_conf *c = NULL;
    char *err = NULL;
    ck_assert_msg(cdn_conf_load(p, &c, &err) == 0, "%s", err);
    ck_assert_int_eq((int)c->nsni, 0);
    ck_assert_int_eq(c->host_sni_policy, CDN_HOST_SNI_ENFORCE);
    cdn_conf_free(&c);
    unlink(p);
    free(p);
}
END_TEST

START_TEST(test_conf_errors)
{
    char *p = write_tmp(LISTENER "sni:\n"
                                 "  - fqdn: 'a.*.example'\n"   /* 8 */
                                 "  - fqdn: x.example\n"       /* 9 */
                                 "    verify_client: strict\n" /* 10 */
                                 "  - fqdn: X.Example\n"       /* 11 */
                                 "  - verify_client: NONE\n"   /* 12 */
                                 "  - fqdn: k.example\n"       /* 13 */
                                 "    certificate: k.crt\n"    /* 14 */
                                 "  - fqdn: '*'\n"             /* 15 */
                                 "host_sni_policy: off\n");    /* 16 */
    struct cdn_conf *c = NULL;
    char *err = NULL;
    ck_assert_int_eq(cdn_conf_load(p, &c, &err), -1);
    ck_assert_ptr_nonnull(strstr(err, ":8:11: sni[0].fqdn: expected a host name"));
    ck_assert_ptr_nonnull(
        strstr(err, ":10:20: sni[1].verify_client: expected one of NONE, MODERATE, STRICT"));
    ck_assert_ptr_nonnull(strstr(err, "sni[2].fqdn: duplicate fqdn \"x.example\" (also sni[1]"));
    ck_assert_ptr_nonnull(strstr(err, "sni[3].fqdn: missing required key"));
    ck_assert_ptr_nonnull(strstr(err, "sni[4].key: certificate and key go together"));
    ck_assert_ptr_nonnull(strstr(err, ":15:11: sni[5].fqdn: expected"));
    ck_assert_ptr_nonnull(strstr(err, ":16:18: host_sni_policy: expected one of enforce, permissive"));
    free(err);
    unlink(p);
    free(p);
}
END_TEST

/* ---- real handshakes over memory BIOs: the ClientHello callback and the context switch ---- */

static char pki[256];

static const char *pk(const char *name)
{
    static char buf[32][320];
    static int i;
    i = (i + 1) % 32; /* enough for every path one test holds */
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", pki, name);
    return buf[i];
}

/* Handshake with SNI name (NULL = none); 1 when both sides finished. *rule = the fqdn of the policy the
 * server selected ("-" for the listener's own). */
static int handshake(SSL_CTX *sctx, SSL_CTX *cctx, const char *name, const char **rule)
{
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    BIO *s_in = BIO_new(BIO_s_mem()), *s_out = BIO_new(BIO_s_mem());
    BIO *c_in = BIO_new(BIO_s_mem()), *c_out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(s_in, -1);
    BIO_set_mem_eof_return(c_in, -1);
    SSL_set_bio(s, s_in, s_out);
    SSL_set_bio(c, c_in, c_out);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    if (name != NULL)
        ck_assert_int_eq(cdn_tls_client_setup(c, name, 0), 0);
    int s_done = 0, c_done = 0, failed = 0;
    char buf[16384];
    for (int round = 0; round < 20 && !failed && !(s_done && c_done); round++) {
        if (!c_done) {
            int rc = SSL_do_handshake(c);
            if (rc == 1)
                c_done = 1;
            else if (SSL_get_error(c, rc) != SSL_ERROR_WANT_READ)
                failed = 1;
        }
        int n;
        while ((n = BIO_read(c_out, buf, sizeof(buf))) > 0)
            BIO_write(s_in, buf, n);
        if (!s_done && !failed) {
            int rc = SSL_do_handshake(s);
            if (rc == 1)
                s_done = 1;
            else if (SSL_get_error(s, rc) != SSL_ERROR_WANT_READ)
                failed = 1;
        }
        while ((n = BIO_read(s_out, buf, sizeof(buf))) > 0)
            BIO_write(c_in, buf, n);
    }
    const struct cdn_sni_policy *p = cdn_sni_of(s);
    *rule = p == NULL ? "(none)" : p->fqdn != NULL ? p->fqdn : "-";
    SSL_free(s);
    SSL_free(c);
    ERR_clear_error();
    return !failed && s_done && c_done;
}

static SSL_CTX *client(const char *cert, const char *key)
{
    struct cdn_conf_upstream u = {.client_certificate = (char *)cert,
                                  .client_key = (char *)key,
                                  .ca_file = (char *)pk("ca.crt"),
                                  .verify = true};
    char *err = NULL;
    SSL_CTX *ctx = cdn_tls_client_ctx_new(&u, &err);
    ck_assert_msg(ctx != NULL, "client ctx: %s", err != NULL ? err : "?");
    return ctx;
}

START_TEST(test_handshakes)
{
    snprintf(pki, sizeof(pki), "/tmp/cdn-test-sni-pki-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(pki));
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "sh scripts/pki.sh --test %s >/dev/null 2>&1", pki);
    ck_assert_int_eq(system(cmd), 0);

    struct cdn_conf_listener lc = {.name = (char *)"https",
                                   .tls = true,
                                   .certificate = (char *)pk("regional.crt"),
                                   .key = (char *)pk("regional.key"),
                                   .client_auth = CDN_CLIENT_AUTH_REQUIRE,
                                   .ca_file = (char *)pk("ca.crt"),
                                   .verify_depth = 4,
                                   .send_ca_names = true};
    struct cdn_conf_sni_rule rules_[] = {
        {.fqdn = (char *)"open.example", .verify_client = CDN_CLIENT_AUTH_NONE},
        {.fqdn = (char *)"secure.example", .verify_client = CDN_CLIENT_AUTH_REQUIRE},
        {.fqdn = (char *)"*.partner.example",
         .verify_client = CDN_CLIENT_AUTH_REQUIRE,
         .ca_file = (char *)pk("other-ca.crt")},
        {.fqdn = (char *)"", .verify_client = CDN_CLIENT_AUTH_NONE},
        {.fqdn = (char *)"*.example", .verify_client = CDN_CLIENT_AUTH_REQUEST},
    };
    struct cdn_conf conf = {.sni = rules_, .nsni = 5};
    char *err = NULL;
    SSL_CTX *sctx = cdn_tls_server_ctx_new(lc.certificate, lc.key, lc.client_auth, lc.ca_file, &err);
    ck_assert_msg(sctx != NULL, "%s", err);
    ck_assert_int_eq(cdn_tls_server_ctx_policy(sctx, &lc, &err), 0);
    const struct cdn_sni *t = NULL;
    ck_assert_msg(cdn_sni_attach(sctx, &conf, &lc, CDN_CLIENT_AUTH_REQUIRE, &t, &err) == 0, "%s", err);
    ck_assert_ptr_nonnull(t);

    SSL_CTX *anon = client(NULL, NULL), *edge = client(pk("edge-client.crt"), pk("edge-client.key")),
            *other = client(pk("other-client.crt"), pk("other-client.key"));
    const char *rule;
    ck_assert_int_eq(handshake(sctx, anon, "open.example", &rule), 1);
    ck_assert_str_eq(rule, "open.example");
    ck_assert_int_eq(handshake(sctx, anon, "SECURE.example", &rule), 0);
    ck_assert_str_eq(rule, "secure.example");
    ck_assert_int_eq(handshake(sctx, edge, "secure.example", &rule), 1);
    ck_assert_int_eq(handshake(sctx, edge, "a.partner.example", &rule), 0); /* the rule's own CA */
    ck_assert_str_eq(rule, "*.partner.example");
    ck_assert_int_eq(handshake(sctx, other, "a.partner.example", &rule), 1);
    ck_assert_int_eq(handshake(sctx, anon, "x.y.example", &rule), 1); /* MODERATE, no certificate */
    ck_assert_str_eq(rule, "*.example");
    ck_assert_int_eq(handshake(sctx, other, "x.y.example", &rule), 0); /* MODERATE, a bad one */
    ck_assert_int_eq(handshake(sctx, anon, NULL, &rule), 1);           /* no SNI: '' */
    ck_assert_str_eq(rule, "");
    ck_assert_int_eq(handshake(sctx, anon, "other.test", &rule), 0); /* the listener's require */
    ck_assert_str_eq(rule, "-");
    ck_assert_int_eq(handshake(sctx, edge, "other.test", &rule), 1);

    /* a STRICT rule without any CA is refused when the listener has none either */
    struct cdn_conf_listener lnone = lc;
    lnone.ca_file = NULL;
    lnone.client_auth = CDN_CLIENT_AUTH_NONE;
    SSL_CTX *nctx = cdn_tls_server_ctx_new(lc.certificate, lc.key, CDN_CLIENT_AUTH_NONE, NULL, &err);
    ck_assert_msg(nctx != NULL, "%s", err);
    ck_assert_int_eq(cdn_sni_attach(nctx, &conf, &lnone, CDN_CLIENT_AUTH_NONE, &t, &err), -1);
    ck_assert_ptr_nonnull(strstr(err, "sni[1] (fqdn 'secure.example')"));
    free(err);
    SSL_CTX_free(nctx);

    /* pins: a rule's own, else the listener's when it keeps the listener's CA; log_only on a rule */
    char *lsans[] = {(char *)"edge-1.example"}, *rsans[] = {(char *)"edge-2.example"};
    struct cdn_conf_listener lp = lc;
    lp.allowed_sans = (struct cdn_conf_strlist){lsans, 1};
    struct cdn_conf_sni_rule prules[] = {
        {.fqdn = (char *)"own.example", .verify_client = CDN_CLIENT_AUTH_REQUIRE, .allowed_sans = {rsans, 1}},
        {.fqdn = (char *)"inherit.example", .verify_client = CDN_CLIENT_AUTH_REQUIRE, .log_only = true},
        {.fqdn = (char *)"partner.example",
         .verify_client = CDN_CLIENT_AUTH_REQUIRE,
         .ca_file = (char *)pk("other-ca.crt")},
        {.fqdn = (char *)"open.example", .verify_client = CDN_CLIENT_AUTH_NONE},
    };
    struct cdn_conf pconf = {.sni = prules, .nsni = 4};
    SSL_CTX *pctx = cdn_tls_server_ctx_new(lp.certificate, lp.key, lp.client_auth, lp.ca_file, &err);
    ck_assert_int_eq(cdn_tls_server_ctx_policy(pctx, &lp, &err), 0);
    ck_assert_msg(cdn_sni_attach(pctx, &pconf, &lp, CDN_CLIENT_AUTH_REQUIRE, &t, &err) == 0, "%s", err);
    ck_assert_ptr_eq(t->rules[0].pins, &prules[0]);
    ck_assert_ptr_eq(t->rules[1].pins, &lp);
    ck_assert(t->rules[1].log_only);
    ck_assert_ptr_null(t->rules[2].pins); /* its own CA: the listener's pins name other certificates */
    ck_assert_ptr_null(t->rules[3].pins);
    ck_assert_ptr_eq(t->dflt.pins, &lp);
    /* edge-client.crt has no SAN: refused under the pinned rules, not under partner's (other CA) */
    ck_assert_int_eq(handshake(pctx, edge, "own.example", &rule), 0);
    ck_assert_int_eq(handshake(pctx, edge, "inherit.example", &rule), 1); /* log_only lets it through */
    ck_assert_int_eq(handshake(pctx, other, "partner.example", &rule), 1);
    ck_assert_int_eq(handshake(pctx, edge, "plain.example", &rule), 0); /* the listener's pins */
    SSL_CTX_free(pctx);
    prules[3].log_only = true; /* log_only where nothing is asked for */
    pctx = cdn_tls_server_ctx_new(lp.certificate, lp.key, lp.client_auth, lp.ca_file, &err);
    ck_assert_int_eq(cdn_tls_server_ctx_policy(pctx, &lp, &err), 0);
    ck_assert_int_eq(cdn_sni_attach(pctx, &pconf, &lp, CDN_CLIENT_AUTH_REQUIRE, &t, &err), -1);
    ck_assert_ptr_nonnull(strstr(err, "sni[3] (fqdn 'open.example')"));
    ck_assert_ptr_nonnull(strstr(err, "log_only needs verify_client MODERATE or STRICT"));
    free(err);
    SSL_CTX_free(pctx);

    SSL_CTX_free(anon);
    SSL_CTX_free(edge);
    SSL_CTX_free(other);
    SSL_CTX_free(sctx); /* frees the table and the rules' contexts */
    snprintf(cmd, sizeof(cmd), "rm -rf %s", pki);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

Suite *suite_sni(void)
{
    Suite *s = suite_create("sni");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_exact);
    tcase_add_test(tc, test_case);
    tcase_add_test(tc, test_wildcard);
    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_order_independent);
    tcase_add_test(tc, test_covers);
    tcase_add_test(tc, test_host_name);
    tcase_add_test(tc, test_conf_ok);
    tcase_add_test(tc, test_conf_default_policy);
    tcase_add_test(tc, test_conf_errors);
    suite_add_tcase(s, tc);
    TCase *hs = tcase_create("handshake");
    tcase_set_timeout(hs, 60);
    tcase_add_test(hs, test_handshakes);
    suite_add_tcase(s, hs);
    return s;
}
