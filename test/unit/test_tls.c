/*
 * tls: context policy, checked with real handshakes between two SSL objects over memory BIOs
 * (no sockets). Certificates come from scripts/pki.sh, made once into a temp folder.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <openssl/err.h>

#include "lib/tls.h"
#include "lib/util.h"
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

/* Runs a handshake between a client and a server SSL, moving bytes between their BIOs.
 * Returns 1 when both sides finished, 0 when either failed. */
static int handshake(SSL_CTX *sctx, SSL_CTX *cctx, const char *name, long *client_verify, char *server_err,
                     size_t errlen)
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
    ck_assert_int_eq(cdn_tls_client_setup(c, name, 1), 0);
    int s_done = 0, c_done = 0, failed = 0;
    char buf[16384];
    server_err[0] = '\0';
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
            if (rc == 1) {
                s_done = 1;
            } else if (SSL_get_error(s, rc) != SSL_ERROR_WANT_READ) {
                cdn_tls_describe_error(s, server_err, errlen);
                failed = 1;
            }
        }
        while ((n = BIO_read(s_out, buf, sizeof(buf))) > 0)
            BIO_write(c_in, buf, n);
        /* TLS 1.3: the client finishes before the server judged its certificate; read once more */
        if (c_done && s_done) {
            char tmp[1];
            SSL_read(c, tmp, 1);
        }
    }
    if (c_done && !s_done && !failed) {
        int rc = SSL_do_handshake(s);
        if (rc != 1) {
            cdn_tls_describe_error(s, server_err, errlen);
            failed = 1;
        }
    }
    *client_verify = SSL_get_verify_result(c);
    SSL_free(s);
    SSL_free(c);
    ERR_clear_error();
    return !failed && s_done && c_done;
}

static SSL_CTX *server_ctx(int level)
{
    char *err = NULL;
    SSL_CTX *ctx = cdn_tls_server_ctx_new(fixture_pki_path("regional.crt"), fixture_pki_path("regional.key"),
                                          level, fixture_pki_path("ca.crt"), &err);
    ck_assert_msg(ctx != NULL, "server ctx: %s", err != NULL ? err : "?");
    return ctx;
}

static SSL_CTX *client_ctx(const char *cert, const char *key, const char *ca)
{
    struct cdn_conf_upstream u = {
        .client_certificate = (char *)cert, .client_key = (char *)key, .ca_file = (char *)ca, .verify = true};
    char *err = NULL;
    SSL_CTX *ctx = cdn_tls_client_ctx_new(&u, &err);
    ck_assert_msg(ctx != NULL, "client ctx: %s", err != NULL ? err : "?");
    return ctx;
}

START_TEST(require_refuses_missing_and_foreign_certs)
{
    SSL_CTX *s = server_ctx(CDN_CLIENT_AUTH_REQUIRE);
    long v;
    char err[512];
    SSL_CTX *anon = client_ctx(NULL, NULL, fixture_pki_path("ca.crt"));
    ck_assert_int_eq(handshake(s, anon, "127.0.0.1", &v, err, sizeof(err)), 0);
    ck_assert_msg(strstr(err, "certificate") != NULL, "reason: %s", err);
    SSL_CTX *other = client_ctx(fixture_pki_path("other-client.crt"), fixture_pki_path("other-client.key"),
                                fixture_pki_path("ca.crt"));
    ck_assert_int_eq(handshake(s, other, "127.0.0.1", &v, err, sizeof(err)), 0);
    ck_assert_msg(strstr(err, "certificate verify failed") != NULL, "reason: %s", err);
    SSL_CTX *edge = client_ctx(fixture_pki_path("edge-client.crt"), fixture_pki_path("edge-client.key"),
                               fixture_pki_path("ca.crt"));
    ck_assert_int_eq(handshake(s, edge, "127.0.0.1", &v, err, sizeof(err)), 1);
    ck_assert_int_eq(v, X509_V_OK);
    SSL_CTX_free(anon);
    SSL_CTX_free(other);
    SSL_CTX_free(edge);
    SSL_CTX_free(s);
}
END_TEST

START_TEST(request_accepts_missing_rejects_foreign)
{
    SSL_CTX *s = server_ctx(CDN_CLIENT_AUTH_REQUEST);
    long v;
    char err[512];
    SSL_CTX *anon = client_ctx(NULL, NULL, fixture_pki_path("ca.crt"));
    ck_assert_int_eq(handshake(s, anon, "localhost", &v, err, sizeof(err)), 1);
    SSL_CTX *other = client_ctx(fixture_pki_path("other-client.crt"), fixture_pki_path("other-client.key"),
                                fixture_pki_path("ca.crt"));
    ck_assert_int_eq(handshake(s, other, "localhost", &v, err, sizeof(err)), 0);
    SSL_CTX_free(anon);
    SSL_CTX_free(other);
    SSL_CTX_free(s);
}
END_TEST

START_TEST(client_verifies_name_and_chain)
{
    SSL_CTX *s = server_ctx(CDN_CLIENT_AUTH_NONE);
    long v;
    char err[512];
    SSL_CTX *c = client_ctx(NULL, NULL, fixture_pki_path("ca.crt"));
    ck_assert_int_eq(handshake(s, c, "regional.cdn.test", &v, err, sizeof(err)), 1);
    ck_assert_int_eq(handshake(s, c, "other.example", &v, err, sizeof(err)), 0);
    ck_assert_int_eq(v, X509_V_ERR_HOSTNAME_MISMATCH);
    ck_assert_int_eq(handshake(s, c, "127.0.0.2", &v, err, sizeof(err)), 0);
    ck_assert_int_eq(v, X509_V_ERR_IP_ADDRESS_MISMATCH);
    SSL_CTX *foreign = client_ctx(NULL, NULL, fixture_pki_path("other-ca.crt"));
    ck_assert_int_eq(handshake(s, foreign, "localhost", &v, err, sizeof(err)), 0);
    ck_assert(v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY || v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN);
    SSL_CTX_free(c);
    SSL_CTX_free(foreign);
    SSL_CTX_free(s);
}
END_TEST

START_TEST(bad_material_is_named)
{
    char *err = NULL;
    ck_assert_ptr_null(cdn_tls_server_ctx_new(fixture_pki_path("missing.crt"),
                                              fixture_pki_path("regional.key"), 0, NULL, &err));
    ck_assert_msg(strstr(err, "missing.crt") != NULL, "%s", err);
    free(err);
    err = NULL;
    ck_assert_ptr_null(cdn_tls_server_ctx_new(fixture_pki_path("regional.crt"), fixture_pki_path("edge.key"),
                                              0, NULL, &err));
    ck_assert_msg(strstr(err, "does not match") != NULL, "%s", err);
    free(err);
    err = NULL;
    ck_assert_ptr_null(cdn_tls_server_ctx_new(fixture_pki_path("regional.crt"),
                                              fixture_pki_path("regional.key"), CDN_CLIENT_AUTH_REQUIRE, NULL,
                                              &err));
    ck_assert_msg(strstr(err, "ca_file") != NULL, "%s", err);
    free(err);
    err = NULL;
    ck_assert_ptr_null(cdn_tls_server_ctx_new(fixture_pki_path("regional.crt"),
                                              fixture_pki_path("regional.key"), CDN_CLIENT_AUTH_REQUIRE,
                                              fixture_pki_path("regional.key"), &err));
    ck_assert_msg(strstr(err, "regional.key") != NULL, "%s", err);
    free(err);
    ERR_clear_error();
}
END_TEST

Suite *suite_tls(void)
{
    Suite *s = suite_create("tls");
    TCase *tc = tcase_create("policy");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, make_pki, remove_pki);
    tcase_add_test(tc, require_refuses_missing_and_foreign_certs);
    tcase_add_test(tc, request_accepts_missing_rejects_foreign);
    tcase_add_test(tc, client_verifies_name_and_chain);
    tcase_add_test(tc, bad_material_is_named);
    suite_add_tcase(s, tc);
    return s;
}
