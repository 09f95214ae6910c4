/*
 * Tests for lib/ident.c and the handshake side of pins and log_only (lib/tls.c): which request headers
 * are ours, the headers added after real in-memory handshakes (verified, no certificate, a log_only
 * rule letting a refused certificate through), and that a pin refuses in the handshake with a named
 * reason (the pin_mismatch counter's X509_V_ERR_APPLICATION_VERIFICATION).
 */
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "lib/buf.h"
#include "lib/ident.h"
#include "lib/pin.h"
#include "lib/stats.h"
#include "lib/tls.h"
#include "test/unit/fixture.h"
#include "test/unit/suites.h"

static void make_pki(void)
{
    fixture_pki_make(true);
}

static void remove_pki(void)
{
    fixture_pki_remove();
}

static struct cdn_conf_identity ident_conf(bool chain, bool headers)
{
    struct cdn_conf_identity id = {.client_cert_chain = chain,
                                   .headers = headers,
                                   .subject_header = (char *)"Client-Cert-Subject",
                                   .issuer_header = (char *)"Client-Cert-Issuer",
                                   .sans_header = (char *)"Client-Cert-SANs",
                                   .fingerprint_header = (char *)"X-Edge-Fp",
                                   .status_header = (char *)"Client-Cert-Status"};
    return id;
}

START_TEST(test_owned)
{
    struct cdn_conf_identity id = ident_conf(false, false);
    ck_assert(cdn_ident_is_owned(&id, "Client-Cert", 11));
    ck_assert(cdn_ident_is_owned(&id, "client-cert-chain", 17));
    ck_assert(cdn_ident_is_owned(&id, "x-edge-fp", 9));
    ck_assert(cdn_ident_is_owned(&id, "CLIENT-CERT-STATUS", 18));
    ck_assert(!cdn_ident_is_owned(&id, "Client-Cert-SHA256", 18)); /* renamed: the new name is ours */
    ck_assert(!cdn_ident_is_owned(&id, "Client-Certs", 12));
    ck_assert(!cdn_ident_is_owned(&id, "Client-Cer", 10));
    struct cdn_buf b;
    cdn_buf_init(&b);
    cdn_ident_append(&id, NULL, &b); /* plain HTTP: nothing */
    ck_assert_uint_eq(b.len, 0);
    cdn_buf_dispose(&b);
}
END_TEST

/* A handshake whose server SSL is kept (caller frees); *ok = both sides finished. */
static SSL *handshake(SSL_CTX *sctx, SSL_CTX *cctx, int *ok)
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
    int s_done = 0, c_done = 0, failed = 0;
    char buf[16384];
    for (int round = 0; round < 20 && !failed && !(s_done && c_done); round++) {
        int n, rc;
        if (!c_done) {
            rc = SSL_do_handshake(c);
            if (rc == 1)
                c_done = 1;
            else if (SSL_get_error(c, rc) != SSL_ERROR_WANT_READ)
                failed = 1;
        }
        while ((n = BIO_read(c_out, buf, sizeof(buf))) > 0)
            BIO_write(s_in, buf, n);
        if (!s_done && !failed) {
            rc = SSL_do_handshake(s);
            if (rc == 1)
                s_done = 1;
            else if (SSL_get_error(s, rc) != SSL_ERROR_WANT_READ)
                failed = 1;
        }
        while ((n = BIO_read(s_out, buf, sizeof(buf))) > 0)
            BIO_write(c_in, buf, n);
    }
    SSL_free(c);
    ERR_clear_error();
    *ok = !failed && s_done && c_done;
    return s;
}

static SSL_CTX *server(const struct cdn_conf_listener *l)
{
    char *err = NULL;
    SSL_CTX *ctx = cdn_tls_server_ctx_new(fixture_pki_path("regional.crt"), fixture_pki_path("regional.key"),
                                          l->client_auth, fixture_pki_path("ca.crt"), &err);
    ck_assert_msg(ctx != NULL, "%s", err);
    ck_assert_int_eq(cdn_tls_server_ctx_policy(ctx, l, &err), 0);
    return ctx;
}

static SSL_CTX *client(const char *cert, const char *key)
{
    struct cdn_conf_upstream u = {.client_certificate = (char *)cert,
                                  .client_key = (char *)key,
                                  .ca_file = fixture_pki_path("ca.crt"),
                                  .verify_policy = CDN_VERIFY_DISABLED};
    char *err = NULL;
    SSL_CTX *ctx = cdn_tls_client_ctx_new(&u, &err);
    ck_assert_msg(ctx != NULL, "%s", err);
    return ctx;
}

static char *head_of(const struct cdn_conf_identity *id, SSL *s)
{
    struct cdn_buf b;
    cdn_buf_init(&b);
    cdn_ident_append(id, s, &b);
    cdn_buf_append(&b, "", 1);
    char *out = strdup(cdn_buf_data(&b));
    cdn_buf_dispose(&b);
    return out;
}

START_TEST(test_headers_after_handshake)
{
    struct cdn_conf_listener l = {
        .client_auth = CDN_CLIENT_AUTH_REQUEST, .verify_depth = 4, .send_ca_names = true};
    SSL_CTX *sctx = server(&l);
    SSL_CTX *edge = client(fixture_pki_path("edge-client.crt"), fixture_pki_path("edge-client.key"));
    SSL_CTX *anon = client(NULL, NULL);
    struct cdn_conf_identity on = ident_conf(true, true), off = ident_conf(false, false);
    int ok;
    char st[64];

    SSL *s = handshake(sctx, edge, &ok);
    ck_assert(ok);
    ck_assert_str_eq(cdn_ident_status(s, st, sizeof(st)), "SUCCESS");
    char *h = head_of(&on, s);
    ck_assert_msg(strstr(h, "Client-Cert-Status: SUCCESS\r\n") != NULL, "%s", h);
    ck_assert_msg(strstr(h, "Client-Cert-Subject: CN=edge-1") != NULL, "%s", h);
    ck_assert_msg(strstr(h, "Client-Cert-Issuer: CN=") != NULL, "%s", h);
    ck_assert_msg(strstr(h, "Client-Cert-Chain: :") != NULL, "%s", h); /* the CA (the leaf is Client-Cert) */
    char fp[100], want[120];
    cdn_pin_fingerprint_hex(SSL_get0_peer_certificate(s), fp, sizeof(fp));
    snprintf(want, sizeof(want), "X-Edge-Fp: %s\r\n", fp);
    ck_assert_msg(strstr(h, want) != NULL, "%s", h);
    ck_assert_ptr_null(strstr(h, "Client-Cert-SANs")); /* edge-client.crt has none */
    free(h);
    h = head_of(&off, s);
    ck_assert_str_eq(h, ""); /* off by default */
    free(h);
    ck_assert_int_eq(cdn_ident_log_only_reason(s), CDN_STAT__SLOTS);
    SSL_free(s);

    s = handshake(sctx, anon, &ok);
    ck_assert(ok);
    ck_assert_str_eq(cdn_ident_status(s, st, sizeof(st)), "NONE");
    h = head_of(&on, s);
    ck_assert_str_eq(h, "Client-Cert-Status: NONE\r\n");
    free(h);
    SSL_free(s);
    SSL_CTX_free(sctx);
    SSL_CTX_free(edge);
    SSL_CTX_free(anon);
}
END_TEST

START_TEST(test_pins_in_handshake)
{
    /* edge-client.crt has no SAN: a SAN pin refuses it, its own fingerprint lets it in */
    char *sans[] = {(char *)"edge-1.example"};
    struct cdn_conf_listener l = {.client_auth = CDN_CLIENT_AUTH_REQUIRE,
                                  .verify_depth = 4,
                                  .send_ca_names = true,
                                  .allowed_sans = {sans, 1}};
    SSL_CTX *sctx = server(&l);
    SSL_CTX *edge = client(fixture_pki_path("edge-client.crt"), fixture_pki_path("edge-client.key"));
    int ok;
    SSL *s = handshake(sctx, edge, &ok);
    ck_assert(!ok);
    ck_assert_int_eq(SSL_get_verify_result(s), X509_V_ERR_APPLICATION_VERIFICATION);
    ck_assert_int_eq(cdn_stats_tls_failure(SSL_get_verify_result(s), 0, false),
                     CDN_STAT_tls_failed_pin_mismatch);
    char why[200];
    cdn_tls_describe_error(s, why, sizeof(why));
    ck_assert_str_eq(why, "pin mismatch: no SAN in allowed_sans");
    ck_assert_str_eq(cdn_tls_alert_name(cdn_tls_verdict_of(s)->alert), "handshake failure"); /* recorded */
    const struct cdn_tls_verdict *v = cdn_tls_verdict_of(s);
    ck_assert_ptr_nonnull(v);
    ck_assert_ptr_nonnull(v->offered); /* for the failure log, though the session has no peer */
    ck_assert_ptr_null(SSL_get0_peer_certificate(s));
    char fp[100];
    cdn_pin_fingerprint_hex(v->offered, fp, sizeof(fp));
    SSL_free(s);
    SSL_CTX_free(sctx);

    char *fps[] = {fp};
    struct cdn_conf_listener l2 = {.client_auth = CDN_CLIENT_AUTH_REQUIRE,
                                   .verify_depth = 4,
                                   .send_ca_names = true,
                                   .allowed_fingerprints = {fps, 1}};
    sctx = server(&l2);
    s = handshake(sctx, edge, &ok);
    ck_assert(ok);
    ck_assert_int_eq(SSL_get_verify_result(s), X509_V_OK);
    SSL_free(s);
    SSL_CTX_free(sctx);
    SSL_CTX_free(edge);

    /* pins where no certificate is asked for would pin nothing: refused */
    struct cdn_conf_listener l3 = l2;
    l3.client_auth = CDN_CLIENT_AUTH_NONE;
    char *err = NULL;
    sctx = cdn_tls_server_ctx_new(fixture_pki_path("regional.crt"), fixture_pki_path("regional.key"),
                                  CDN_CLIENT_AUTH_NONE, NULL, &err);
    ck_assert_ptr_nonnull(sctx);
    ck_assert_int_eq(cdn_tls_server_ctx_policy(sctx, &l3, &err), -1);
    ck_assert_str_eq(err, "allowed_sans/allowed_fingerprints need client_auth request or require");
    free(err);
    SSL_CTX_free(sctx);
}
END_TEST

START_TEST(test_log_only)
{
    char *sans[] = {(char *)"edge-1.example"};
    struct cdn_conf_listener l = {
        .client_auth = CDN_CLIENT_AUTH_REQUIRE, .verify_depth = 4, .send_ca_names = true};
    SSL_CTX *sctx = server(&l);
    cdn_tls_server_ctx_log_only(sctx);
    SSL_CTX *other = client(fixture_pki_path("other-client.crt"), fixture_pki_path("other-client.key"));
    SSL_CTX *anon = client(NULL, NULL);
    SSL_CTX *edge = client(fixture_pki_path("edge-client.crt"), fixture_pki_path("edge-client.key"));
    struct cdn_conf_identity off = ident_conf(false, false);
    int ok;
    char st[64];

    SSL *s = handshake(sctx, other, &ok);
    ck_assert(ok); /* let through */
    ck_assert_ptr_nonnull(cdn_tls_verdict_of(s));
    ck_assert(cdn_tls_log_only(s));
    ck_assert_int_eq(cdn_ident_log_only_reason(s), CDN_STAT_tls_failed_unknown_ca);
    ck_assert_str_eq(cdn_ident_status(s, st, sizeof(st)), "FAILED:unknown_ca");
    char *h = head_of(&off, s); /* marked even with the headers off, and nothing about the certificate */
    ck_assert_str_eq(h, "Client-Cert-Status: FAILED:unknown_ca\r\n");
    free(h);
    struct cdn_stats st_ = {0};
    ck_assert(cdn_ident_handshake_done(&st_, s, 1, "127.0.0.1:1"));
    ck_assert_uint_eq(st_.v[CDN_STAT_client_certs_log_only], 1);
    SSL_free(s);

    /* STRICT under log_only: a missing certificate is a refusal let through too (the ex data of the
     * rule's policy is not here: no SNI table, so only a refused certificate counts) */
    s = handshake(sctx, anon, &ok);
    ck_assert(ok);
    ck_assert_str_eq(cdn_ident_status(s, st, sizeof(st)), "NONE");
    SSL_free(s);

    s = handshake(sctx, edge, &ok);
    ck_assert(ok);
    ck_assert_str_eq(cdn_ident_status(s, st, sizeof(st)), "SUCCESS");
    ck_assert_int_eq(cdn_ident_log_only_reason(s), CDN_STAT__SLOTS);
    SSL_free(s);
    SSL_CTX_free(sctx);

    /* a pin mismatch under log_only */
    struct cdn_conf_listener lp = l;
    lp.allowed_sans = (struct cdn_conf_strlist){sans, 1};
    sctx = server(&lp);
    cdn_tls_server_ctx_log_only(sctx);
    s = handshake(sctx, edge, &ok);
    ck_assert(ok);
    ck_assert_str_eq(cdn_ident_status(s, st, sizeof(st)), "FAILED:pin_mismatch");
    SSL_free(s);
    SSL_CTX_free(sctx);
    SSL_CTX_free(other);
    SSL_CTX_free(anon);
    SSL_CTX_free(edge);
}
END_TEST

Suite *suite_ident(void)
{
    Suite *s = suite_create("ident");
    TCase *tc = tcase_create("core");
    tcase_add_unchecked_fixture(tc, make_pki, remove_pki);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_owned);
    tcase_add_test(tc, test_headers_after_handshake);
    tcase_add_test(tc, test_pins_in_handshake);
    tcase_add_test(tc, test_log_only);
    suite_add_tcase(s, tc);
    return s;
}
