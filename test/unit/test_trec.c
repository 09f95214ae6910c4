/*
 * trec: checked against OpenSSL itself. A real TLS 1.3 handshake runs between a client and a server SSL over
 * memory BIOs (one per suite); the server's traffic secrets come from its keylog callback, the server SSL is
 * freed, and trec takes over against the OpenSSL client, which keeps its own record layer. Cases OpenSSL will
 * not produce (malformed KeyUpdates, padding, odd alerts) are sealed by a small independent record writer
 * here (EVP_PKEY HKDF and the legacy EVP ciphers, not trec's code path).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "lib/buf.h"
#include "lib/trec.h"
#include "lib/util.h"
#include "test/unit/suites.h"

#define NTICKETS 2

static const struct tsuite {
    uint16_t id;
    const char *name;
    size_t hash_len, key_len;
    const EVP_MD *(*md)(void);
    const EVP_CIPHER *(*cipher)(void);
} tsuites[] = {
    {0x1301, "TLS_AES_128_GCM_SHA256", 32, 16, EVP_sha256, EVP_aes_128_gcm},
    {0x1302, "TLS_AES_256_GCM_SHA384", 48, 32, EVP_sha384, EVP_aes_256_gcm},
    {0x1303, "TLS_CHACHA20_POLY1305_SHA256", 32, 32, EVP_sha256, EVP_chacha20_poly1305},
};

/* ---- an independent record writer/reader for crafted records ---- */

static void t_expand(const struct tsuite *ts, const uint8_t *secret, const char *label, uint8_t *dst,
                     size_t n)
{
    uint8_t info[64];
    size_t ll = strlen(label);
    info[0] = (uint8_t)(n >> 8);
    info[1] = (uint8_t)n;
    info[2] = (uint8_t)(6 + ll);
    memcpy(info + 3, "tls13 ", 6);
    memcpy(info + 9, label, ll);
    info[9 + ll] = 0;
    EVP_PKEY_CTX *k = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(EVP_PKEY_derive_init(k), 1);
    ck_assert_int_eq(EVP_PKEY_CTX_set_hkdf_mode(k, EVP_PKEY_HKDEF_MODE_EXPAND_ONLY), 1);
    ck_assert_int_eq(EVP_PKEY_CTX_set_hkdf_md(k, ts->md()), 1);
    ck_assert_int_eq(EVP_PKEY_CTX_set1_hkdf_key(k, secret, (int)ts->hash_len), 1);
    ck_assert_int_eq(EVP_PKEY_CTX_add1_hkdf_info(k, info, (int)(10 + ll)), 1);
    size_t len = n;
    ck_assert_int_eq(EVP_PKEY_derive(k, dst, &len), 1);
    ck_assert_uint_eq(len, n);
    EVP_PKEY_CTX_free(k);
}

static void t_next_secret(const struct tsuite *ts, uint8_t *secret)
{
    uint8_t next[48];
    t_expand(ts, secret, "traffic upd", next, ts->hash_len);
    memcpy(secret, next, ts->hash_len);
}

/* AEAD over one record; enc: seals body[0..n) (tag appended); else opens n bytes (tag included). 1 = ok. */
static int t_aead(const struct tsuite *ts, const uint8_t *secret, uint64_t seq, const uint8_t hdr[5],
                  uint8_t *body, size_t n, int enc)
{
    uint8_t key[32], iv[12];
    t_expand(ts, secret, "key", key, ts->key_len);
    t_expand(ts, secret, "iv", iv, 12);
    for (int i = 0; i < 8; i++)
        iv[11 - i] ^= (uint8_t)(seq >> (8 * i));
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l, ok = EVP_CipherInit_ex(c, ts->cipher(), NULL, key, iv, enc) == 1 &&
                EVP_CipherUpdate(c, NULL, &l, hdr, 5) == 1;
    size_t m = enc ? n : n - 16;
    if (!enc)
        ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, body + m) == 1;
    ok = ok && EVP_CipherUpdate(c, body, &l, body, (int)m) == 1 && EVP_CipherFinal_ex(c, body + m, &l) == 1;
    if (enc)
        ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, body + m) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok;
}

/* Appends a record sealing the inner plaintext p[0..n) (content, type byte, padding) as it is. */
static void craft_inner(const struct tsuite *ts, const uint8_t *secret, uint64_t seq, const void *p, size_t n,
                        struct cdn_buf *wire)
{
    size_t len = n + 16;
    uint8_t *rec = calloc(1, 5 + len);
    rec[0] = 0x17;
    rec[1] = rec[2] = 3;
    rec[3] = (uint8_t)(len >> 8);
    rec[4] = (uint8_t)len;
    if (n > 0)
        memcpy(rec + 5, p, n);
    ck_assert(t_aead(ts, secret, seq, rec, rec + 5, n, 1));
    cdn_buf_append(wire, rec, 5 + len);
    free(rec);
}

/* Appends a record of inner type `type` with content p[0..n) and `pad` zero bytes of padding. */
static void craft(const struct tsuite *ts, const uint8_t *secret, uint64_t seq, uint8_t type, const void *p,
                  size_t n, size_t pad, struct cdn_buf *wire)
{
    uint8_t *inner = calloc(1, n + 1 + pad);
    if (n > 0)
        memcpy(inner, p, n);
    inner[n] = type;
    craft_inner(ts, secret, seq, inner, n + 1 + pad, wire);
    free(inner);
}

/* Opens the first record of wire (what trec sent); *type and content[0..*n); consumes it. */
static void uncraft(const struct tsuite *ts, const uint8_t *secret, uint64_t seq, struct cdn_buf *wire,
                    uint8_t *type, uint8_t *content, size_t *n)
{
    ck_assert_uint_ge(wire->len, 5 + 17);
    uint8_t *h = (uint8_t *)cdn_buf_data(wire);
    ck_assert_uint_eq(h[0], 0x17);
    size_t len = (size_t)h[3] << 8 | h[4];
    ck_assert_uint_ge(wire->len, 5 + len);
    ck_assert_msg(t_aead(ts, secret, seq, h, h + 5, len, 0), "record does not open at seq %llu",
                  (unsigned long long)seq);
    size_t m = len - 16;
    while (m > 0 && h[5 + m - 1] == 0)
        m--;
    ck_assert_uint_gt(m, 0);
    *type = h[5 + m - 1];
    *n = m - 1;
    memcpy(content, h + 5, m - 1);
    cdn_buf_consume(wire, 5 + len);
}

/* ---- a real handshake ---- */

struct sess {
    const struct tsuite *ts;
    SSL_CTX *sctx, *cctx;
    SSL *c;
    BIO *c_in, *c_out;
    struct cdn_trec *r;
    uint8_t rsec[48], wsec[48]; /* client / server application traffic secret 0 */
    uint64_t wseq;              /* the server's next write sequence number after the handshake */
    struct cdn_buf wire, plain, out, got;
    char err[128];
};

static struct {
    uint8_t client[48], server[48];
    size_t clen, slen;
} klog;

static size_t unhex(const char *hex, uint8_t *dst, size_t cap)
{
    size_t n = 0;
    while (hex[0] != '\0' && hex[1] != '\0' && n < cap) {
        unsigned v;
        ck_assert_int_eq(sscanf(hex, "%2x", &v), 1);
        dst[n++] = (uint8_t)v;
        hex += 2;
    }
    return n;
}

static void keylog_cb(const SSL *ssl, const char *line)
{
    (void)ssl;
    const char *hex = strrchr(line, ' ');
    if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0)
        klog.clen = unhex(hex + 1, klog.client, sizeof(klog.client));
    else if (strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0)
        klog.slen = unhex(hex + 1, klog.server, sizeof(klog.server));
}

static void bio_to_buf(BIO *b, struct cdn_buf *w)
{
    char tmp[4096];
    int n;
    while ((n = BIO_read(b, tmp, sizeof(tmp))) > 0)
        cdn_buf_append(w, tmp, (size_t)n);
}

static void buf_to_bio(struct cdn_buf *w, BIO *b)
{
    if (w->len == 0)
        return;
    ck_assert_int_eq(BIO_write(b, cdn_buf_data(w), (int)w->len), (int)w->len);
    cdn_buf_consume(w, w->len);
}

/* Record headers in p[0..n), which must hold whole records. */
static int count_records(const uint8_t *p, size_t n)
{
    int recs = 0;
    size_t i = 0;
    while (i + 5 <= n) {
        i += 5 + ((size_t)p[i + 3] << 8 | p[i + 4]);
        recs++;
    }
    ck_assert_uint_eq(i, n);
    return recs;
}

static void make_cert(EVP_PKEY **keyp, X509 **certp)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    ck_assert_ptr_nonnull(key);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"trec.test", -1, -1, 0);
    X509_set_issuer_name(x, name);
    ck_assert_int_gt(X509_sign(x, key, EVP_sha256()), 0);
    *keyp = key;
    *certp = x;
}

/* Handshake with suite si; trec takes over with read seq 0 and the server's write seq plus seq_skew. */
static void sess_open(struct sess *s, int si, int seq_skew)
{
    memset(s, 0, sizeof(*s));
    memset(&klog, 0, sizeof(klog));
    s->ts = &tsuites[si];
    EVP_PKEY *key;
    X509 *cert;
    make_cert(&key, &cert);
    s->sctx = SSL_CTX_new(TLS_server_method());
    s->cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX *both[2] = {s->sctx, s->cctx};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(SSL_CTX_set_min_proto_version(both[i], TLS1_3_VERSION), 1);
        ck_assert_int_eq(SSL_CTX_set_ciphersuites(both[i], s->ts->name), 1);
    }
    ck_assert_int_eq(SSL_CTX_use_certificate(s->sctx, cert), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey(s->sctx, key), 1);
    ck_assert_int_eq(SSL_CTX_set_num_tickets(s->sctx, NTICKETS), 1);
    SSL_CTX_set_keylog_callback(s->sctx, keylog_cb);
    X509_free(cert);
    EVP_PKEY_free(key);

    SSL *srv = SSL_new(s->sctx);
    BIO *s_in = BIO_new(BIO_s_mem()), *s_out = BIO_new(BIO_s_mem());
    s->c = SSL_new(s->cctx);
    s->c_in = BIO_new(BIO_s_mem());
    s->c_out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(s_in, -1);
    BIO_set_mem_eof_return(s->c_in, -1);
    SSL_set_bio(srv, s_in, s_out);
    SSL_set_bio(s->c, s->c_in, s->c_out);
    SSL_set_accept_state(srv);
    SSL_set_connect_state(s->c);
    int c_done = 0, s_done = 0, tickets = -1;
    struct cdn_buf w;
    cdn_buf_init(&w);
    for (int round = 0; round < 10 && !(c_done && s_done); round++) {
        if (!c_done) {
            int rc = SSL_do_handshake(s->c);
            if (rc == 1)
                c_done = 1;
            else
                ck_assert_int_eq(SSL_get_error(s->c, rc), SSL_ERROR_WANT_READ);
        }
        bio_to_buf(s->c_out, &w);
        buf_to_bio(&w, s_in);
        if (!s_done) {
            int rc = SSL_do_handshake(srv);
            if (rc == 1) {
                s_done = 1;
                /* what the server wrote on finishing: its NewSessionTickets, each a record under the
                 * server application key, so they are the write sequence numbers already used */
                bio_to_buf(s_out, &w);
                tickets = count_records((const uint8_t *)cdn_buf_data(&w), w.len);
                buf_to_bio(&w, s->c_in);
            } else {
                ck_assert_int_eq(SSL_get_error(srv, rc), SSL_ERROR_WANT_READ);
            }
        }
        bio_to_buf(s_out, &w);
        buf_to_bio(&w, s->c_in);
    }
    ck_assert(c_done && s_done);
    ck_assert_int_eq(tickets, NTICKETS);
    char tmp[1];
    ck_assert_int_eq(SSL_read(s->c, tmp, 1), -1); /* takes in the tickets */
    ck_assert_int_eq(SSL_get_error(s->c, -1), SSL_ERROR_WANT_READ);
    ck_assert_int_eq(SSL_version(s->c), TLS1_3_VERSION);
    uint16_t id = SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(srv));
    ck_assert_uint_eq(id, s->ts->id);
    ck_assert_uint_eq(klog.clen, s->ts->hash_len);
    ck_assert_uint_eq(klog.slen, s->ts->hash_len);
    memcpy(s->rsec, klog.client, klog.clen);
    memcpy(s->wsec, klog.server, klog.slen);
    s->wseq = (uint64_t)tickets;
    SSL_free(srv);
    cdn_buf_dispose(&w);
    s->r = cdn_trec_new(id, s->rsec, s->wsec, s->ts->hash_len, 0, (uint64_t)(tickets + seq_skew));
    ck_assert_ptr_nonnull(s->r);
}

static void sess_close(struct sess *s)
{
    cdn_trec_free(&s->r);
    ck_assert_ptr_null(s->r);
    SSL_free(s->c);
    SSL_CTX_free(s->sctx);
    SSL_CTX_free(s->cctx);
    cdn_buf_dispose(&s->wire);
    cdn_buf_dispose(&s->plain);
    cdn_buf_dispose(&s->out);
    cdn_buf_dispose(&s->got);
    ERR_clear_error();
}

/* The client writes p (one record per SSL_write of up to 16 KiB); its records go to s->wire. */
static void client_send(struct sess *s, const void *p, size_t n)
{
    ck_assert_int_eq(SSL_write(s->c, p, (int)n), (int)n);
    bio_to_buf(s->c_out, &s->wire);
}

/* The client takes s->out and reads all it can into s->got; returns SSL_get_error of the last SSL_read. */
static int client_recv(struct sess *s)
{
    buf_to_bio(&s->out, s->c_in);
    char tmp[16384];
    for (;;) {
        int n = SSL_read(s->c, tmp, sizeof(tmp));
        if (n <= 0)
            return SSL_get_error(s->c, n);
        cdn_buf_append(&s->got, tmp, (size_t)n);
    }
}

static int sopen(struct sess *s, size_t room)
{
    return cdn_trec_open(s->r, &s->wire, &s->plain, room, &s->out, s->err, sizeof(s->err));
}

static bool ssl_error_has(int reason)
{
    unsigned long e;
    bool found = false;
    while ((e = ERR_get_error()) != 0)
        found = found || ERR_GET_REASON(e) == reason;
    return found;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 131 + seed) ^ (i >> 8));
}

/* ---- against OpenSSL ---- */

START_TEST(open_client_records)
{
    struct sess s;
    sess_open(&s, _i, 0);
    client_send(&s, "hello", 5);
    ck_assert_int_eq(sopen(&s, 65536), 5);
    ck_assert_mem_eq(cdn_buf_data(&s.plain), "hello", 5);
    ck_assert_uint_eq(s.wire.len, 0);
    ck_assert_uint_eq(s.out.len, 0);
    cdn_buf_reset(&s.plain);

    /* several records in one buffer */
    client_send(&s, "one", 3);
    client_send(&s, "two", 3);
    client_send(&s, "three", 5);
    ck_assert_int_eq(count_records((const uint8_t *)cdn_buf_data(&s.wire), s.wire.len), 3);
    ck_assert_int_eq(sopen(&s, 65536), 11);
    ck_assert_mem_eq(cdn_buf_data(&s.plain), "onetwothree", 11);
    cdn_buf_reset(&s.plain);

    /* one record arriving a byte at a time */
    uint8_t data[3000];
    fill(data, sizeof(data), 7);
    client_send(&s, data, sizeof(data));
    struct cdn_buf all = s.wire;
    cdn_buf_init(&s.wire);
    for (size_t i = 0; i < all.len; i++) {
        cdn_buf_append(&s.wire, cdn_buf_data(&all) + i, 1);
        int rc = sopen(&s, 65536);
        ck_assert_int_eq(rc, i + 1 < all.len ? 0 : (int)sizeof(data));
    }
    cdn_buf_dispose(&all);
    ck_assert_uint_eq(s.wire.len, 0);
    ck_assert_mem_eq(cdn_buf_data(&s.plain), data, sizeof(data));
    cdn_buf_reset(&s.plain);

    /* room smaller than a record: everything, in order, three bytes at a time */
    client_send(&s, data, 1000);
    client_send(&s, data + 1000, 500);
    size_t calls = 0;
    while (s.plain.len < 1500) {
        int rc = sopen(&s, 3);
        ck_assert_int_eq(rc, 3);
        ck_assert(cdn_trec_pending(s.r) == (s.plain.len < 1500));
        calls++;
    }
    ck_assert_uint_eq(calls, 500);
    ck_assert_int_eq(sopen(&s, 3), 0);
    ck_assert_int_eq(sopen(&s, 0), 0);
    ck_assert_mem_eq(cdn_buf_data(&s.plain), data, 1500);
    ck_assert(!cdn_trec_pending(s.r));
    sess_close(&s);
}
END_TEST

START_TEST(seal_to_client)
{
    struct sess s;
    sess_open(&s, _i, 0);
    static uint8_t data[40000];
    fill(data, sizeof(data), 3);
    const size_t sizes[] = {1, 16384, 40000};
    const int recs[] = {1, 1, 3};
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(cdn_trec_seal(s.r, data, sizes[k], &s.out), 0);
        ck_assert_int_eq(count_records((const uint8_t *)cdn_buf_data(&s.out), s.out.len), recs[k]);
        ck_assert_uint_eq(s.out.len, sizes[k] + (size_t)recs[k] * 22);
        ck_assert_int_eq(client_recv(&s), SSL_ERROR_WANT_READ);
        ck_assert_uint_eq(s.got.len, sizes[k]);
        ck_assert_mem_eq(cdn_buf_data(&s.got), data, sizes[k]);
        cdn_buf_reset(&s.got);
    }
    ck_assert_int_eq(cdn_trec_seal(s.r, data, 0, &s.out), 0);
    ck_assert_uint_eq(s.out.len, 0);
    sess_close(&s);
}
END_TEST

/* The test cannot pass by accident: one sequence number off either way and OpenSSL refuses. */
START_TEST(wrong_sequence_fails)
{
    struct sess s;
    sess_open(&s, _i, 1);
    ck_assert_int_eq(cdn_trec_seal(s.r, "x", 1, &s.out), 0);
    ck_assert_int_eq(client_recv(&s), SSL_ERROR_SSL);
    ck_assert(ssl_error_has(SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC));
    sess_close(&s);

    sess_open(&s, _i, -1);
    ck_assert_int_eq(cdn_trec_seal(s.r, "x", 1, &s.out), 0);
    ck_assert_int_eq(client_recv(&s), SSL_ERROR_SSL);
    sess_close(&s);

    /* and a read sequence of 1 instead of 0 */
    sess_open(&s, _i, 0);
    cdn_trec_free(&s.r);
    s.r = cdn_trec_new(s.ts->id, s.rsec, s.wsec, s.ts->hash_len, 1, s.wseq);
    client_send(&s, "hello", 5);
    ck_assert_int_eq(sopen(&s, 100), CDN_ETLS);
    sess_close(&s);
}
END_TEST

START_TEST(key_update_both_ways)
{
    struct sess s;
    sess_open(&s, _i, 0);
    for (int round = 0; round < 2; round++) {
        ck_assert_int_eq(SSL_key_update(s.c, SSL_KEY_UPDATE_REQUESTED), 1);
        client_send(&s, "after", 5);
        ck_assert_int_eq(count_records((const uint8_t *)cdn_buf_data(&s.wire), s.wire.len), 2);
        ck_assert_int_eq(sopen(&s, 100), 5);
        ck_assert_mem_eq(cdn_buf_data(&s.plain), "after", 5);
        cdn_buf_reset(&s.plain);
        ck_assert_int_eq(count_records((const uint8_t *)cdn_buf_data(&s.out), s.out.len),
                         1); /* our KeyUpdate */
        ck_assert_int_eq(cdn_trec_seal(s.r, "reply", 5, &s.out), 0);
        ck_assert_int_eq(client_recv(&s), SSL_ERROR_WANT_READ);
        ck_assert_uint_eq(s.got.len, 5);
        ck_assert_mem_eq(cdn_buf_data(&s.got), "reply", 5);
        cdn_buf_reset(&s.got);
        client_send(&s, "more", 4);
        ck_assert_int_eq(sopen(&s, 100), 4);
        cdn_buf_reset(&s.plain);
    }
    ck_assert_int_eq(SSL_key_update(s.c, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    client_send(&s, "quiet", 5);
    ck_assert_int_eq(sopen(&s, 100), 5);
    ck_assert_uint_eq(s.out.len, 0);
    ck_assert_int_eq(cdn_trec_seal(s.r, "still", 5, &s.out), 0);
    ck_assert_int_eq(client_recv(&s), SSL_ERROR_WANT_READ);
    ck_assert_mem_eq(cdn_buf_data(&s.got), "still", 5);
    sess_close(&s);
}
END_TEST

START_TEST(close_notify_both_ways)
{
    struct sess s;
    sess_open(&s, _i, 0);
    client_send(&s, "bye", 3);
    ck_assert_int_eq(SSL_shutdown(s.c), 0);
    bio_to_buf(s.c_out, &s.wire);
    ck_assert_int_eq(sopen(&s, 100), 3);            /* the data first, */
    ck_assert_int_eq(sopen(&s, 100), CDN_TREC_EOF); /* then the end, */
    cdn_buf_append(&s.wire, "\x17\x03\x03\x00\x20garbage", 12);
    ck_assert_int_eq(sopen(&s, 100), CDN_TREC_EOF); /* for good */
    ck_assert_uint_eq(s.wire.len, 0);
    ck_assert_uint_eq(s.out.len, 0);
    ck_assert_int_eq(cdn_trec_seal(s.r, "last", 4, &s.out), 0);
    ck_assert_int_eq(cdn_trec_close_notify(s.r, &s.out), 0);
    ck_assert_int_eq(client_recv(&s), SSL_ERROR_ZERO_RETURN);
    ck_assert_mem_eq(cdn_buf_data(&s.got), "last", 4);
    ck_assert_int_eq(cdn_trec_seal(s.r, "late", 4, &s.out), CDN_ETLS);
    ck_assert_int_eq(cdn_trec_close_notify(s.r, &s.out), CDN_ETLS);
    ck_assert_uint_eq(s.out.len, 0);
    sess_close(&s);
}
END_TEST

/* A damaged record is refused and the client is told why, in a record it can open. */
START_TEST(tampering_is_fatal)
{
    struct sess s;
    sess_open(&s, _i, 0);
    client_send(&s, "hello", 5);
    cdn_buf_data(&s.wire)[7] ^= 0x04;
    ck_assert_int_eq(sopen(&s, 100), CDN_ETLS);
    ck_assert_str_eq(s.err, "TLS record: bad_record_mac");
    ck_assert_uint_eq(s.plain.len, 0);
    ck_assert_int_eq(client_recv(&s), SSL_ERROR_SSL);
    ck_assert(ssl_error_has(SSL_R_SSLV3_ALERT_BAD_RECORD_MAC));
    /* the failure sticks, and nothing more is sent */
    cdn_buf_append(&s.wire, "\x17\x03\x03\x00\x01x", 6);
    ck_assert_int_eq(sopen(&s, 100), CDN_ETLS);
    ck_assert_str_eq(s.err, "TLS record: bad_record_mac");
    ck_assert_uint_eq(s.out.len, 0);
    ck_assert_int_eq(cdn_trec_seal(s.r, "x", 1, &s.out), CDN_ETLS);
    sess_close(&s);

    static const struct {
        const char *hdr;
        const char *why;
        int reason;
    } bad[] = {
        {"\x17\x03\x03\x41\x01", "TLS record: record_overflow", SSL_R_TLSV1_ALERT_RECORD_OVERFLOW},
        {"\x16\x03\x03\x00\x20", "TLS record: unexpected_message", SSL_R_SSLV3_ALERT_UNEXPECTED_MESSAGE},
        {"\x14\x03\x03\x00\x01", "TLS record: unexpected_message", SSL_R_SSLV3_ALERT_UNEXPECTED_MESSAGE},
        {"\x15\x03\x03\x00\x02", "TLS record: unexpected_message", SSL_R_SSLV3_ALERT_UNEXPECTED_MESSAGE},
        {"\x17\x03\x01\x00\x20", "TLS record: decode_error", SSL_R_TLSV1_ALERT_DECODE_ERROR},
        {"\x17\x03\x03\x00\x0f", "TLS record: bad_record_mac", SSL_R_SSLV3_ALERT_BAD_RECORD_MAC},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        sess_open(&s, _i, 0);
        cdn_buf_append(&s.wire, bad[k].hdr, 5);
        cdn_buf_append(&s.wire, "0123456789abcdef", 15); /* a whole record for the short one */
        ck_assert_int_eq(sopen(&s, 100), CDN_ETLS);
        ck_assert_str_eq(s.err, bad[k].why);
        ck_assert_int_eq(client_recv(&s), SSL_ERROR_SSL);
        ck_assert_msg(ssl_error_has(bad[k].reason), "case %zu", k);
        sess_close(&s);
    }
}
END_TEST

START_TEST(trim_between_operations)
{
    struct sess s;
    sess_open(&s, _i, 0);
    uint8_t data[20000];
    fill(data, sizeof(data), 11);
    for (int round = 0; round < 3; round++) {
        cdn_trec_trim(s.r);
        client_send(&s, data, 16384);
        cdn_trec_trim(s.r);
        ck_assert_int_eq(sopen(&s, 100), 100); /* leaves most of the record pending */
        cdn_trec_trim(s.r);
        ck_assert(cdn_trec_pending(s.r));
        ck_assert_int_eq(sopen(&s, 65536), 16284);
        ck_assert_mem_eq(cdn_buf_data(&s.plain), data, 16384);
        cdn_buf_reset(&s.plain);
        cdn_trec_trim(s.r);
        ck_assert_int_eq(cdn_trec_seal(s.r, data, sizeof(data), &s.out), 0);
        cdn_trec_trim(s.r);
        ck_assert_int_eq(SSL_key_update(s.c, SSL_KEY_UPDATE_REQUESTED), 1);
        client_send(&s, "k", 1);
        ck_assert_int_eq(sopen(&s, 100), 1);
        cdn_buf_reset(&s.plain);
        cdn_trec_trim(s.r);
        ck_assert_int_eq(cdn_trec_seal(s.r, data, 10, &s.out), 0);
        ck_assert_int_eq(client_recv(&s), SSL_ERROR_WANT_READ);
        ck_assert_uint_eq(s.got.len, sizeof(data) + 10);
        ck_assert_mem_eq(cdn_buf_data(&s.got), data, sizeof(data));
        cdn_buf_reset(&s.got);
    }
    sess_close(&s);
}
END_TEST

/* ---- crafted records ---- */

struct craft {
    const struct tsuite *ts;
    uint8_t rsec[48], wsec[48]; /* the peer writes with rsec */
    uint64_t rseq, wseq;
    struct cdn_trec *r;
    struct cdn_buf wire, plain, out;
    char err[128];
};

static void craft_open(struct craft *c, int si)
{
    memset(c, 0, sizeof(*c));
    c->ts = &tsuites[si];
    fill(c->rsec, sizeof(c->rsec), 1);
    fill(c->wsec, sizeof(c->wsec), 2);
    c->rseq = 5;
    c->wseq = 9;
    c->r = cdn_trec_new(c->ts->id, c->rsec, c->wsec, c->ts->hash_len, c->rseq, c->wseq);
    ck_assert_ptr_nonnull(c->r);
}

static void craft_close(struct craft *c)
{
    cdn_trec_free(&c->r);
    cdn_buf_dispose(&c->wire);
    cdn_buf_dispose(&c->plain);
    cdn_buf_dispose(&c->out);
}

static void peer(struct craft *c, uint8_t type, const void *p, size_t n, size_t pad)
{
    craft(c->ts, c->rsec, c->rseq++, type, p, n, pad, &c->wire);
}

static int copen(struct craft *c)
{
    return cdn_trec_open(c->r, &c->wire, &c->plain, 1u << 20, &c->out, c->err, sizeof(c->err));
}

/* What trec sent: the next record of out, opened with the write secret. */
static void sent(struct craft *c, uint8_t want_type, const void *want, size_t want_len)
{
    uint8_t type, content[64];
    size_t n;
    uncraft(c->ts, c->wsec, c->wseq++, &c->out, &type, content, &n);
    ck_assert_uint_eq(type, want_type);
    ck_assert_uint_eq(n, want_len);
    ck_assert_mem_eq(content, want, n);
}

static void expect_fatal(struct craft *c, uint8_t alert, const char *why)
{
    ck_assert_int_eq(copen(c), CDN_ETLS);
    ck_assert_str_eq(c->err, why);
    uint8_t a[2] = {2, alert};
    sent(c, 21, a, 2);
    ck_assert_uint_eq(c->out.len, 0);
}

START_TEST(padding_and_empty_records)
{
    struct craft c;
    craft_open(&c, _i);
    peer(&c, 23, NULL, 0, 0);
    ck_assert_int_eq(copen(&c), 0);
    ck_assert_uint_eq(c.wire.len, 0);
    peer(&c, 23, "abc", 3, 100);
    peer(&c, 23, NULL, 0, 7);
    peer(&c, 21, "\x01\x5a", 2, 0); /* user_canceled: ignored */
    peer(&c, 23, "def", 3, 0);
    ck_assert_int_eq(copen(&c), 6);
    ck_assert_mem_eq(cdn_buf_data(&c.plain), "abcdef", 6);
    ck_assert_uint_eq(c.out.len, 0);
    /* the largest record: 2^14 bytes, the type byte and 239 bytes of padding (2^14 + 256 sealed) */
    static uint8_t big[16385];
    fill(big, sizeof(big), 5);
    peer(&c, 23, big, 16384, 239);
    ck_assert_int_eq(copen(&c), 16384);
    ck_assert_mem_eq(cdn_buf_data(&c.plain) + 6, big, 16384);
    craft_close(&c);

    craft_open(&c, _i);
    peer(&c, 23, big, 16385, 0);
    expect_fatal(&c, 22, "TLS record: record_overflow");
    craft_close(&c);

    craft_open(&c, _i);
    peer(&c, 0, NULL, 0, 20); /* all zeros: no content type */
    expect_fatal(&c, 10, "TLS record: unexpected_message");
    craft_close(&c);

    craft_open(&c, _i);
    craft_inner(c.ts, c.rsec, c.rseq++, NULL, 0, &c.wire); /* authentic, but not even a type byte */
    expect_fatal(&c, 10, "TLS record: unexpected_message");
    craft_close(&c);

    craft_open(&c, _i);
    peer(&c, 24, "x", 1, 0); /* heartbeat */
    expect_fatal(&c, 10, "TLS record: unexpected_message");
    craft_close(&c);
}
END_TEST

START_TEST(peer_alerts)
{
    struct craft c;
    craft_open(&c, _i);
    peer(&c, 21, "\x02\x28", 2, 0);
    ck_assert_int_eq(copen(&c), CDN_ETLS);
    ck_assert_str_eq(c.err, "TLS record: peer sent alert 40");
    ck_assert_uint_eq(c.out.len, 0);
    ck_assert_int_eq(cdn_trec_close_notify(c.r, &c.out), CDN_ETLS);
    craft_close(&c);

    craft_open(&c, _i);
    peer(&c, 21, "\x02\x5a", 2, 0); /* user_canceled sent as fatal */
    ck_assert_int_eq(copen(&c), CDN_ETLS);
    craft_close(&c);

    craft_open(&c, _i);
    peer(&c, 21, "\x01\x00\x00", 3, 0);
    expect_fatal(&c, 50, "TLS record: decode_error");
    craft_close(&c);
}
END_TEST

START_TEST(key_update_split_across_records)
{
    struct craft c;
    craft_open(&c, _i);
    peer(&c, 22, "\x18\x00", 2, 0);
    ck_assert_int_eq(copen(&c), 0);
    peer(&c, 22, "\x00\x01\x01", 3, 0); /* update_requested */
    ck_assert_int_eq(copen(&c), 0);
    sent(&c, 22, "\x18\x00\x00\x01\x00", 5); /* under the old write key */
    ck_assert_uint_eq(c.out.len, 0);
    t_next_secret(c.ts, c.rsec);
    t_next_secret(c.ts, c.wsec);
    c.rseq = c.wseq = 0;
    peer(&c, 23, "new keys", 8, 0);
    ck_assert_int_eq(copen(&c), 8);
    ck_assert_mem_eq(cdn_buf_data(&c.plain), "new keys", 8);
    ck_assert_int_eq(cdn_trec_seal(c.r, "ok", 2, &c.out), 0);
    sent(&c, 23, "ok", 2);

    /* two requests in one batch: one answer */
    peer(&c, 22, "\x18\x00\x00\x01\x01", 5, 0);
    t_next_secret(c.ts, c.rsec);
    c.rseq = 0;
    peer(&c, 22, "\x18\x00\x00\x01\x01", 5, 3);
    t_next_secret(c.ts, c.rsec);
    c.rseq = 0;
    peer(&c, 23, "z", 1, 0);
    ck_assert_int_eq(copen(&c), 1);
    sent(&c, 22, "\x18\x00\x00\x01\x00", 5);
    ck_assert_uint_eq(c.out.len, 0);
    t_next_secret(c.ts, c.wsec);
    c.wseq = 0;
    ck_assert_int_eq(cdn_trec_close_notify(c.r, &c.out), 0);
    sent(&c, 21, "\x01\x00", 2);
    craft_close(&c);
}
END_TEST

START_TEST(bad_handshake_messages)
{
    static const struct {
        const char *msg;
        size_t len;
        uint8_t alert;
        const char *why;
    } bad[] = {
        {"\x04\x00\x00\x05hello", 9, 10, "TLS record: unexpected_message"}, /* NewSessionTicket */
        {"\x0d\x00\x00\x00", 4, 10, "TLS record: unexpected_message"},      /* CertificateRequest */
        {"\x01", 1, 10, "TLS record: unexpected_message"},                  /* ClientHello */
        {"\x18\x00\x00\x02\x00\x00", 6, 50, "TLS record: decode_error"},
        {"\x18\x00\x00\x01\x02", 5, 47, "TLS record: illegal_parameter"},
        {"\x18\x00\x00\x01\x00\x18", 6, 10, "TLS record: unexpected_message"}, /* not at a record end */
        {"", 0, 10, "TLS record: unexpected_message"},                         /* empty fragment */
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        struct craft c;
        craft_open(&c, _i);
        peer(&c, 22, bad[k].msg, bad[k].len, 0);
        expect_fatal(&c, bad[k].alert, bad[k].why);
        craft_close(&c);
    }
    /* application data inside a split handshake message */
    struct craft c;
    craft_open(&c, _i);
    peer(&c, 22, "\x18\x00", 2, 0);
    peer(&c, 23, "x", 1, 0);
    expect_fatal(&c, 10, "TLS record: unexpected_message");
    craft_close(&c);
}
END_TEST

START_TEST(new_rejects_bad_arguments)
{
    uint8_t sec[48] = {0};
    struct cdn_trec *r = cdn_trec_new(0x1304, sec, sec, 32, 0, 0); /* TLS_AES_128_CCM_SHA256 */
    ck_assert_ptr_null(r);
    ck_assert_ptr_null(cdn_trec_new(0x1301, sec, sec, 48, 0, 0));
    ck_assert_ptr_null(cdn_trec_new(0x1302, sec, sec, 32, 0, 0));
    ck_assert_ptr_null(cdn_trec_new(0x1303, sec, sec, 48, 0, 0));
    ck_assert_ptr_null(cdn_trec_new(0x1301, NULL, sec, 32, 0, 0));
    cdn_trec_free(&r); /* NULL-safe */
    r = cdn_trec_new(0x1302, sec, sec, 48, 0, 0);
    ck_assert_ptr_nonnull(r);
    struct cdn_buf b;
    cdn_buf_init(&b);
    ck_assert_int_eq(cdn_trec_seal(r, NULL, 1, &b), CDN_EINVAL);
    ck_assert_int_eq(cdn_trec_open(r, &b, &b, 1, NULL, NULL, 0), CDN_EINVAL);
    cdn_trec_free(&r);
    ck_assert_ptr_null(r);
}
END_TEST

Suite *suite_trec(void)
{
    Suite *s = suite_create("trec");
    TCase *tc = tcase_create("openssl");
    tcase_set_timeout(tc, 60);
    int n = (int)(sizeof(tsuites) / sizeof(tsuites[0]));
    tcase_add_loop_test(tc, open_client_records, 0, n);
    tcase_add_loop_test(tc, seal_to_client, 0, n);
    tcase_add_loop_test(tc, wrong_sequence_fails, 0, n);
    tcase_add_loop_test(tc, key_update_both_ways, 0, n);
    tcase_add_loop_test(tc, close_notify_both_ways, 0, n);
    tcase_add_loop_test(tc, tampering_is_fatal, 0, n);
    tcase_add_loop_test(tc, trim_between_operations, 0, n);
    suite_add_tcase(s, tc);
    TCase *cr = tcase_create("crafted");
    tcase_set_timeout(cr, 30);
    tcase_add_loop_test(cr, padding_and_empty_records, 0, n);
    tcase_add_loop_test(cr, peer_alerts, 0, n);
    tcase_add_loop_test(cr, key_update_split_across_records, 0, n);
    tcase_add_loop_test(cr, bad_handshake_messages, 0, n);
    tcase_add_test(cr, new_rejects_bad_arguments);
    suite_add_tcase(s, cr);
    return s;
}
