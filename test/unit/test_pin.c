/*
 * Tests for lib/pin.c: fingerprint syntax, SAN value syntax, and cdn_pins_check on certificates made in
 * memory (each SAN type, the one-label wildcard, IP comparison as addresses, fingerprints, both lists).
 */
#include <string.h>

#include <check.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "lib/pin.h"
#include "test/unit/suites.h"

/* A self-signed certificate with subjectAltName san (NULL = none). */
static X509 *make_cert(const char *san)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    ck_assert_ptr_nonnull(key);
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"pin-test", -1, -1, 0);
    X509_set_issuer_name(x, nm);
    if (san != NULL) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
        ck_assert_ptr_nonnull(ext);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    ck_assert_int_gt(X509_sign(x, key, EVP_sha256()), 0);
    EVP_PKEY_free(key);
    return x;
}

START_TEST(test_fingerprint_syntax)
{
    unsigned char fp[CDN_PIN_SHA256_LEN];
    const char *hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
    ck_assert_int_eq(cdn_pin_parse_fingerprint(hex, fp), 0);
    ck_assert_uint_eq(fp[0], 0x00);
    ck_assert_uint_eq(fp[10], 0xaa);
    ck_assert_uint_eq(fp[31], 0xff);
    ck_assert_int_eq(cdn_pin_parse_fingerprint("00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
                                               "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff",
                                               fp),
                     0);
    ck_assert_uint_eq(fp[31], 0xff);
    ck_assert_int_eq(cdn_pin_parse_fingerprint("", fp), -1);
    ck_assert_int_eq(cdn_pin_parse_fingerprint("0011", fp), -1); /* too short */
    ck_assert_int_eq(
        cdn_pin_parse_fingerprint("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00", fp),
        -1); /* long */
    ck_assert_int_eq(
        cdn_pin_parse_fingerprint("g0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", fp),
        -1);
    ck_assert_int_eq(cdn_pin_parse_fingerprint("00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
                                               "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff:",
                                               fp),
                     -1); /* a trailing colon */
    ck_assert_int_eq(
        cdn_pin_parse_fingerprint("0:0112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", fp),
        -1);
}
END_TEST

START_TEST(test_san_syntax)
{
    ck_assert(cdn_pin_valid_san("edge-1.example"));
    ck_assert(cdn_pin_valid_san("*.edges.example"));
    ck_assert(cdn_pin_valid_san("spiffe://cdn/edge/1"));
    ck_assert(cdn_pin_valid_san("ops@example.com"));
    ck_assert(cdn_pin_valid_san("::1"));
    ck_assert(!cdn_pin_valid_san(""));
    ck_assert(!cdn_pin_valid_san(NULL));
    ck_assert(!cdn_pin_valid_san("a b"));
    ck_assert(!cdn_pin_valid_san("*"));
    ck_assert(!cdn_pin_valid_san("*."));
    ck_assert(!cdn_pin_valid_san("a.*.example"));
    ck_assert(!cdn_pin_valid_san("*.*.example"));
    ck_assert(!cdn_pin_valid_san("*x.example"));
}
END_TEST

static const char *check_sans(X509 *x, const char *const *sans, size_t n)
{
    struct cdn_pins p = {.sans = sans, .nsans = n};
    return cdn_pins_check(&p, x);
}

START_TEST(test_sans)
{
    X509 *x = make_cert("DNS:edge-1.edges.example, URI:spiffe://cdn/edge/1, email:Ops@Example.com, "
                        "IP:10.0.0.5, IP:2001:db8::1");
    const char *dns[] = {"EDGE-1.edges.example"}, *wild[] = {"*.edges.example"}, *deep[] = {"*.example"},
               *uri[] = {"spiffe://cdn/edge/1"}, *uri_case[] = {"SPIFFE://cdn/edge/1"},
               *mail[] = {"ops@example.com"}, *ip4[] = {"10.0.0.5"}, *ip6[] = {"2001:0db8:0:0::1"},
               *wrong_ip[] = {"10.0.0.6"}, *none[] = {"other.example", "spiffe://cdn/edge/2"},
               *dns_as_ip[] = {"10.0.0.5.example"};
    ck_assert_ptr_null(check_sans(x, dns, 1));
    ck_assert_ptr_null(check_sans(x, wild, 1));
    ck_assert_str_eq(check_sans(x, deep, 1), "no SAN in allowed_sans"); /* one label only */
    ck_assert_ptr_null(check_sans(x, uri, 1));
    ck_assert_ptr_nonnull(check_sans(x, uri_case, 1)); /* URIs byte for byte */
    ck_assert_ptr_null(check_sans(x, mail, 1));
    ck_assert_ptr_null(check_sans(x, ip4, 1));
    ck_assert_ptr_null(check_sans(x, ip6, 1));
    ck_assert_ptr_nonnull(check_sans(x, wrong_ip, 1));
    ck_assert_ptr_nonnull(check_sans(x, none, 2));
    ck_assert_ptr_nonnull(check_sans(x, dns_as_ip, 1));
    X509_free(x);

    /* no SAN at all, and the CN is never a SAN */
    x = make_cert(NULL);
    const char *cn[] = {"pin-test"};
    ck_assert_str_eq(check_sans(x, cn, 1), "no SAN in allowed_sans");
    X509_free(x);
    ck_assert_ptr_null(cdn_pins_check(NULL, NULL));
}
END_TEST

START_TEST(test_fingerprints)
{
    X509 *x = make_cert("DNS:a.example"), *y = make_cert("DNS:a.example");
    char hex[100], lower[100];
    cdn_pin_fingerprint_hex(x, hex, sizeof(hex));
    ck_assert_uint_eq(strlen(hex), 95);
    size_t k = 0;
    for (const char *p = hex; *p != '\0'; p++) { /* the form sha256sum prints: lower case, no colons */
        if (*p != ':')
            lower[k++] = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
    }
    lower[k] = '\0';
    char *fps1[] = {hex}, *fps2[] = {lower};
    struct cdn_pins *p = cdn_pins_new(NULL, 0, fps1, 1);
    ck_assert_ptr_null(cdn_pins_check(p, x));
    ck_assert_str_eq(cdn_pins_check(p, y), "fingerprint not in allowed_fingerprints");
    cdn_pins_free(p);
    p = cdn_pins_new(NULL, 0, fps2, 1);
    ck_assert_ptr_null(cdn_pins_check(p, x));
    cdn_pins_free(p);
    /* both lists: either may match */
    char *sans[] = {(char *)"b.example"};
    p = cdn_pins_new(sans, 1, fps2, 1);
    ck_assert_ptr_null(cdn_pins_check(p, x));
    ck_assert_str_eq(cdn_pins_check(p, y),
                     "no SAN in allowed_sans and fingerprint not in allowed_fingerprints");
    cdn_pins_free(p);
    ck_assert_ptr_null(cdn_pins_new(NULL, 0, NULL, 0));
    X509_free(x);
    X509_free(y);
}
END_TEST

Suite *suite_pin(void)
{
    Suite *s = suite_create("pin");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_fingerprint_syntax);
    tcase_add_test(tc, test_san_syntax);
    tcase_add_test(tc, test_sans);
    tcase_add_test(tc, test_fingerprints);
    suite_add_tcase(s, tc);
    return s;
}
