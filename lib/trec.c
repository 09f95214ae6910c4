/*
 * trec: see trec.h. One cipher context per direction is keyed once and reused: per record only the nonce
 * is set, so sealing and opening allocate nothing. The contexts are the provider's own, driven through the
 * functions its dispatch table gives (the public provider API, OSSL_PROVIDER_query_operation): the EVP
 * layer around them cost as much as the AES-GCM of a 1 KiB record (a parameter lookup to learn the IV
 * length at every nonce, another for the tag). Sealed records are written straight into the tail of the
 * output buffer; records are opened in place, or straight into plain's tail when the whole record fits.
 *
 * A client may only send us application data, alerts and KeyUpdate after the handshake, so the handshake
 * reassembly state is the 4-byte header of a KeyUpdate split across records (RFC 8446 5.1 lets a message
 * span records; 4.6.3 forbids anything after a KeyUpdate in its record).
 */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "lib/trec.h"
#include "lib/util.h"

#define MAX_PLAIN      16384u            /* 2^14: the most application data one record carries */
#define MAX_CIPHER     (MAX_PLAIN + 256) /* the longest record body allowed (RFC 8446 5.2) */
#define HDR_LEN        5u
#define TAG_LEN        16u
#define IV_LEN         12u
#define OVERHEAD       (HDR_LEN + 1 + TAG_LEN) /* header, inner content type, tag */
#define SEAL_DIRECT    4096u /* from this size on a record is encrypted from the caller's bytes, uncopied */
#define MAX_SECRET     48u
#define MAX_KEY        32u
#define CT_ALERT       21
#define CT_HANDSHAKE   22
#define CT_APPDATA     23
#define HS_KEY_UPDATE  24
#define AD_CLOSE       0
#define AD_UNEXPECTED  10
#define AD_BAD_MAC     20
#define AD_OVERFLOW    22
#define AD_ILLEGAL     47
#define AD_DECODE      50
#define AD_INTERNAL    80
#define AD_USER_CANCEL 90

static const struct suite {
    uint16_t id;
    uint8_t hash_len, key_len;
    const char *md, *cipher;
} suites[] = {
    {0x1301, 32, 16, "SHA256", "AES-128-GCM"},
    {0x1302, 48, 32, "SHA384", "AES-256-GCM"},
    {0x1303, 32, 32, "SHA256", "ChaCha20-Poly1305"},
};
#define NSUITES (sizeof(suites) / sizeof(suites[0]))

struct cdn_trec {
    void *rctx, *wctx; /* the provider's contexts, keyed; NULL after cdn_trec_trim */
    uint64_t rseq, wseq;
    struct cdn_buf pend; /* opened application data that did not fit the caller's room */
    uint8_t rsecret[MAX_SECRET], wsecret[MAX_SECRET];
    uint8_t rkey[MAX_KEY], wkey[MAX_KEY];
    uint8_t riv[IV_LEN], wiv[IV_LEN];
    uint8_t hs[4]; /* the header of a handshake message split across records */
    uint8_t hslen;
    uint8_t suite;      /* index into suites[] */
    uint8_t fail_alert; /* what failed: the alert we sent, or the peer's (fail_peer) */
    unsigned eof : 1, failed : 1, fail_peer : 1, wdone : 1; /* wdone: close_notify or a fatal alert sent */
};

/* A suite's AEAD as its provider implements it. */
struct aead {
    void *provctx;
    OSSL_FUNC_cipher_newctx_fn *newctx;
    OSSL_FUNC_cipher_freectx_fn *freectx; /* cleanses the key schedule */
    OSSL_FUNC_cipher_encrypt_init_fn *einit;
    OSSL_FUNC_cipher_decrypt_init_fn *dinit;
    OSSL_FUNC_cipher_update_fn *update;
    OSSL_FUNC_cipher_final_fn *final;
    OSSL_FUNC_cipher_get_ctx_params_fn *get_params;
    OSSL_FUNC_cipher_set_ctx_params_fn *set_params;
};

/* Fetched once (the EVP_CIPHER keeps its provider loaded); NULL ciphers[i] or incomplete aeads[i]: the
 * suite is not offered (cdn_trec_new returns NULL and OpenSSL keeps the connection). */
static EVP_CIPHER *ciphers[NSUITES];
static struct aead aeads[NSUITES];
static EVP_KDF *hkdf;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

/* Whether want is one of the colon-separated names (case-insensitive, as OpenSSL compares them). */
static bool has_name(const char *names, const char *want)
{
    size_t n = strlen(want);
    for (const char *p = names; p != NULL && *p != '\0';) {
        const char *e = strchr(p, ':');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        if (l == n && strncasecmp(p, want, n) == 0)
            return true;
        p = e != NULL ? e + 1 : NULL;
    }
    return false;
}

/* The implementation of ciphers[i] in the provider it was fetched from. */
static void find_aead(size_t i)
{
    const OSSL_PROVIDER *prov = EVP_CIPHER_get0_provider(ciphers[i]);
    int no_store = 0;
    const OSSL_ALGORITHM *algs =
        prov != NULL ? OSSL_PROVIDER_query_operation(prov, OSSL_OP_CIPHER, &no_store) : NULL;
    const OSSL_DISPATCH *d = NULL;
    for (const OSSL_ALGORITHM *a = algs; a != NULL && a->algorithm_names != NULL && d == NULL; a++) {
        if (has_name(a->algorithm_names, suites[i].cipher))
            d = a->implementation;
    }
    struct aead f = {.provctx = prov != NULL ? OSSL_PROVIDER_get0_provider_ctx(prov) : NULL};
    for (; d != NULL && d->function_id != 0; d++) {
        switch (d->function_id) {
        case OSSL_FUNC_CIPHER_NEWCTX:
            f.newctx = OSSL_FUNC_cipher_newctx(d);
            break;
        case OSSL_FUNC_CIPHER_FREECTX:
            f.freectx = OSSL_FUNC_cipher_freectx(d);
            break;
        case OSSL_FUNC_CIPHER_ENCRYPT_INIT:
            f.einit = OSSL_FUNC_cipher_encrypt_init(d);
            break;
        case OSSL_FUNC_CIPHER_DECRYPT_INIT:
            f.dinit = OSSL_FUNC_cipher_decrypt_init(d);
            break;
        case OSSL_FUNC_CIPHER_UPDATE:
            f.update = OSSL_FUNC_cipher_update(d);
            break;
        case OSSL_FUNC_CIPHER_FINAL:
            f.final = OSSL_FUNC_cipher_final(d);
            break;
        case OSSL_FUNC_CIPHER_GET_CTX_PARAMS:
            f.get_params = OSSL_FUNC_cipher_get_ctx_params(d);
            break;
        case OSSL_FUNC_CIPHER_SET_CTX_PARAMS:
            f.set_params = OSSL_FUNC_cipher_set_ctx_params(d);
            break;
        default:
            break;
        }
    }
    if (algs != NULL)
        OSSL_PROVIDER_unquery_operation(prov, OSSL_OP_CIPHER, algs);
    if (f.newctx == NULL || f.freectx == NULL || f.einit == NULL || f.dinit == NULL || f.update == NULL ||
        f.final == NULL || f.get_params == NULL || f.set_params == NULL) {
        EVP_CIPHER_free(ciphers[i]);
        ciphers[i] = NULL;
        return;
    }
    aeads[i] = f;
}

static void fetch_algs(void)
{
    for (size_t i = 0; i < NSUITES; i++) {
        ciphers[i] = EVP_CIPHER_fetch(NULL, suites[i].cipher, NULL);
        if (ciphers[i] != NULL)
            find_aead(i);
    }
    hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
}

static void free_ctx(const struct cdn_trec *r, void **slot)
{
    if (*slot != NULL)
        aeads[r->suite].freectx(*slot);
    *slot = NULL;
}

/* HKDF-Expand-Label(secret, label, "", n) (RFC 8446 7.1). */
static int expand_label(const struct suite *s, const uint8_t *secret, const char *label, uint8_t *dst,
                        size_t n)
{
    uint8_t info[2 + 1 + 6 + 16 + 1];
    size_t ll = strlen(label);
    CDN_ASSERT(ll <= 16);
    info[0] = (uint8_t)(n >> 8);
    info[1] = (uint8_t)n;
    info[2] = (uint8_t)(6 + ll);
    memcpy(info + 3, "tls13 ", 6);
    memcpy(info + 9, label, ll);
    info[9 + ll] = 0; /* empty context */
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)s->md, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, s->hash_len),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, 10 + ll),
        OSSL_PARAM_construct_end(),
    };
    EVP_KDF_CTX *k = EVP_KDF_CTX_new(hkdf);
    int ok = k != NULL && EVP_KDF_derive(k, dst, n, params) == 1;
    EVP_KDF_CTX_free(k);
    return ok ? 0 : -1;
}

static int derive_keys(struct cdn_trec *r, bool wr)
{
    const struct suite *s = &suites[r->suite];
    free_ctx(r, wr ? &r->wctx : &r->rctx); /* keyed with the old key; recreated on use */
    const uint8_t *secret = wr ? r->wsecret : r->rsecret;
    if (expand_label(s, secret, "key", wr ? r->wkey : r->rkey, s->key_len) != 0 ||
        expand_label(s, secret, "iv", wr ? r->wiv : r->riv, IV_LEN) != 0)
        return -1;
    return 0;
}

/* KeyUpdate (RFC 8446 7.2): secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length). */
static int update_secret(struct cdn_trec *r, bool wr)
{
    const struct suite *s = &suites[r->suite];
    uint8_t *secret = wr ? r->wsecret : r->rsecret;
    uint8_t next[MAX_SECRET];
    int rc = expand_label(s, secret, "traffic upd", next, s->hash_len);
    if (rc == 0)
        memcpy(secret, next, s->hash_len);
    OPENSSL_cleanse(next, sizeof(next));
    if (rc != 0 || derive_keys(r, wr) != 0)
        return -1;
    if (wr)
        r->wseq = 0;
    else
        r->rseq = 0;
    return 0;
}

struct cdn_trec *cdn_trec_new(uint16_t cipher, const uint8_t *read_secret, const uint8_t *write_secret,
                              size_t secret_len, uint64_t read_seq, uint64_t write_seq)
{
    size_t i = 0;
    while (i < NSUITES && suites[i].id != cipher)
        i++;
    if (i == NSUITES || secret_len != suites[i].hash_len || read_secret == NULL || write_secret == NULL)
        return NULL;
    pthread_once(&fetch_once, fetch_algs);
    if (ciphers[i] == NULL || hkdf == NULL)
        return NULL; /* e.g. a FIPS-only provider without ChaCha20 */
    struct cdn_trec *r = cdn_xcalloc(1, sizeof(*r));
    r->suite = (uint8_t)i;
    memcpy(r->rsecret, read_secret, secret_len);
    memcpy(r->wsecret, write_secret, secret_len);
    r->rseq = read_seq;
    r->wseq = write_seq;
    if (derive_keys(r, false) != 0 || derive_keys(r, true) != 0)
        cdn_trec_free(&r);
    return r;
}

void cdn_trec_free(struct cdn_trec **rp)
{
    struct cdn_trec *r = *rp;
    if (r == NULL)
        return;
    free_ctx(r, &r->rctx);
    free_ctx(r, &r->wctx);
    cdn_buf_dispose(&r->pend);
    OPENSSL_cleanse(r, sizeof(*r));
    free(r);
    *rp = NULL;
}

void cdn_trec_trim(struct cdn_trec *r)
{
    free_ctx(r, &r->rctx);
    free_ctx(r, &r->wctx);
}

bool cdn_trec_pending(const struct cdn_trec *r)
{
    return r->pend.len > 0;
}

static void *cipher_ctx(struct cdn_trec *r, bool wr)
{
    const struct aead *f = &aeads[r->suite];
    void **slot = wr ? &r->wctx : &r->rctx;
    if (*slot == NULL) {
        void *c = f->newctx(f->provctx);
        size_t kl = suites[r->suite].key_len;
        if (c != NULL &&
            (wr ? f->einit(c, r->wkey, kl, NULL, 0, NULL) : f->dinit(c, r->rkey, kl, NULL, 0, NULL)) != 1) {
            f->freectx(c);
            c = NULL;
        }
        *slot = c;
    }
    return *slot;
}

/* RFC 8446 5.3: the sequence number, big-endian and left-padded to the IV length, XORed into the IV. */
static void make_nonce(uint8_t nonce[IV_LEN], const uint8_t iv[IV_LEN], uint64_t seq)
{
    memcpy(nonce, iv, IV_LEN);
    for (unsigned i = 0; i < 8; i++)
        nonce[IV_LEN - 1 - i] ^= (uint8_t)(seq >> (8 * i));
}

/* Seals one record of n <= MAX_PLAIN bytes of content type `type` into dst (n + OVERHEAD bytes). */
static int seal_record(struct cdn_trec *r, uint8_t type, const uint8_t *p, size_t n, uint8_t *dst)
{
    const struct aead *f = &aeads[r->suite];
    void *c = cipher_ctx(r, true);
    if (c == NULL || r->wseq == UINT64_MAX) /* the sequence number must not wrap (5.3) */
        return -1;
    uint8_t nonce[IV_LEN];
    make_nonce(nonce, r->wiv, r->wseq);
    size_t len = n + 1 + TAG_LEN;
    dst[0] = CT_APPDATA;
    dst[1] = 3;
    dst[2] = 3;
    dst[3] = (uint8_t)(len >> 8);
    dst[4] = (uint8_t)len;
    uint8_t *ct = dst + HDR_LEN;
    size_t l;
    OSSL_PARAM tag[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, ct + n + 1, TAG_LEN),
                        OSSL_PARAM_construct_end()};
    /* the update's outsize is what it may write (0 and NULL out: additional data) */
    if (f->einit(c, NULL, 0, nonce, IV_LEN, NULL) != 1 || f->update(c, NULL, &l, HDR_LEN, dst, HDR_LEN) != 1)
        return -1;
    if (n >= SEAL_DIRECT) {
        /* large: encrypted straight from p (a body from the LMDB map is never copied in the clear), then
         * the type byte in an update of its own */
        if (f->update(c, ct, &l, n, p, n) != 1 || f->update(c, ct + n, &l, 1, &type, 1) != 1)
            return -1;
    } else {
        /* small: copied and encrypted in place with the type byte in one update, cheaper than a second
         * update for one byte */
        if (n > 0)
            memcpy(ct, p, n);
        ct[n] = type;
        if (f->update(c, ct, &l, n + 1, ct, n + 1) != 1)
            return -1;
    }
    if (f->final(c, ct + n + 1, &l, 0) != 1 || f->get_params(c, tag) != 1)
        return -1;
    r->wseq++;
    return 0;
}

static int seal_one(struct cdn_trec *r, uint8_t type, const uint8_t *p, size_t n, struct cdn_buf *out)
{
    uint8_t *dst = (uint8_t *)cdn_buf_reserve(out, n + OVERHEAD);
    if (seal_record(r, type, p, n, dst) != 0)
        return -1;
    cdn_buf_commit(out, n + OVERHEAD);
    return 0;
}

int cdn_trec_seal(struct cdn_trec *r, const void *p, size_t n, struct cdn_buf *out)
{
    if (r == NULL || out == NULL || (p == NULL && n > 0) || n > SIZE_MAX / 2)
        return CDN_EINVAL;
    if (r->wdone)
        return CDN_ETLS;
    if (n == 0)
        return 0;
    /* one reserve for the whole batch; each record is committed once sealed, so a failure leaves out
     * holding exactly the records whose sequence numbers were used */
    size_t recs = (n + MAX_PLAIN - 1) / MAX_PLAIN;
    uint8_t *dst = (uint8_t *)cdn_buf_reserve(out, n + recs * OVERHEAD);
    const uint8_t *src = p;
    while (n > 0) {
        size_t k = n < MAX_PLAIN ? n : MAX_PLAIN;
        if (seal_record(r, CT_APPDATA, src, k, dst) != 0)
            return CDN_ETLS;
        cdn_buf_commit(out, k + OVERHEAD);
        dst += k + OVERHEAD;
        src += k;
        n -= k;
    }
    return 0;
}

int cdn_trec_close_notify(struct cdn_trec *r, struct cdn_buf *out)
{
    static const uint8_t alert[2] = {1, AD_CLOSE};
    if (r == NULL || out == NULL)
        return CDN_EINVAL;
    if (r->wdone)
        return CDN_ETLS;
    r->wdone = 1;
    return seal_one(r, CT_ALERT, alert, sizeof(alert), out) == 0 ? 0 : CDN_ETLS;
}

static const char *alert_name(uint8_t a)
{
    switch (a) {
    case AD_UNEXPECTED:
        return "unexpected_message";
    case AD_BAD_MAC:
        return "bad_record_mac";
    case AD_OVERFLOW:
        return "record_overflow";
    case AD_ILLEGAL:
        return "illegal_parameter";
    case AD_DECODE:
        return "decode_error";
    case AD_INTERNAL:
        return "internal_error";
    default:
        return NULL;
    }
}

static void describe(const struct cdn_trec *r, char *err, size_t errlen)
{
    if (err == NULL || errlen == 0)
        return;
    const char *name = alert_name(r->fail_alert);
    if (r->fail_peer)
        snprintf(err, errlen, "TLS record: peer sent alert %u%s%s", r->fail_alert, name != NULL ? " " : "",
                 name != NULL ? name : "");
    else
        snprintf(err, errlen, "TLS record: %s", name != NULL ? name : "failure");
}

/* Ends the connection: the fatal alert (sealed: it is post-handshake) goes to out. */
static int fail(struct cdn_trec *r, uint8_t alert, struct cdn_buf *out, char *err, size_t errlen)
{
    uint8_t a[2] = {2, alert};
    if (!r->wdone)
        (void)seal_one(r, CT_ALERT, a, sizeof(a), out); /* best effort: we fail either way */
    r->wdone = 1;
    r->failed = 1;
    r->fail_alert = alert;
    describe(r, err, errlen);
    return CDN_ETLS;
}

/* Opens the record body ct (len bytes, tag last) into dst (len - TAG_LEN bytes; may be ct itself).
 * -1: authentication failed; -2: no cipher context. */
static int open_record(struct cdn_trec *r, const uint8_t *hdr, uint8_t *ct, size_t len, uint8_t *dst)
{
    const struct aead *f = &aeads[r->suite];
    void *c = cipher_ctx(r, false);
    if (c == NULL || r->rseq == UINT64_MAX)
        return -2;
    uint8_t nonce[IV_LEN];
    make_nonce(nonce, r->riv, r->rseq);
    size_t n = len - TAG_LEN;
    size_t l;
    OSSL_PARAM tag[] = {OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, ct + n, TAG_LEN),
                        OSSL_PARAM_construct_end()};
    if (f->dinit(c, NULL, 0, nonce, IV_LEN, NULL) != 1)
        return -2;
    if (f->update(c, NULL, &l, HDR_LEN, hdr, HDR_LEN) != 1 ||
        (n > 0 && f->update(c, dst, &l, n, ct, n) != 1) || f->set_params(c, tag) != 1 ||
        f->final(c, dst + n, &l, 0) != 1)
        return -1;
    r->rseq++;
    return 0;
}

/* Handshake content after the handshake: only KeyUpdate is allowed from a client (4.6.3). Returns 0 or an
 * alert to fail with. *answered: our own KeyUpdate already went out during this cdn_trec_open call. */
static uint8_t on_handshake(struct cdn_trec *r, const uint8_t *p, size_t n, struct cdn_buf *out,
                            bool *answered)
{
    size_t i = 0;
    if (n == 0)
        return AD_UNEXPECTED; /* zero-length handshake fragments are forbidden (5.1) */
    while (i < n) {
        while (r->hslen < 4 && i < n)
            r->hs[r->hslen++] = p[i++];
        if (r->hs[0] != HS_KEY_UPDATE)
            return AD_UNEXPECTED;
        if (r->hslen < 4)
            return 0;
        if (r->hs[1] != 0 || r->hs[2] != 0 || r->hs[3] != 1)
            return AD_DECODE;
        if (i == n)
            return 0; /* the body comes in the next record */
        uint8_t req = p[i++];
        r->hslen = 0;
        if (req > 1)
            return AD_ILLEGAL;
        if (i != n)
            return AD_UNEXPECTED; /* a key change must end its record (5.1) */
        if (update_secret(r, false) != 0)
            return AD_INTERNAL;
        if (req == 1 && !*answered && !r->wdone) {
            /* our KeyUpdate goes out under the current write keys; then we switch */
            static const uint8_t ku[5] = {HS_KEY_UPDATE, 0, 0, 1, 0};
            if (seal_one(r, CT_HANDSHAKE, ku, sizeof(ku), out) != 0 || update_secret(r, true) != 0)
                return AD_INTERNAL;
            *answered = true;
        }
    }
    return 0;
}

static size_t take_pending(struct cdn_trec *r, struct cdn_buf *plain, size_t room)
{
    size_t k = r->pend.len < room ? r->pend.len : room;
    cdn_buf_append(plain, cdn_buf_data(&r->pend), k);
    cdn_buf_consume(&r->pend, k);
    if (r->pend.len == 0)
        cdn_buf_dispose(&r->pend); /* up to 16 KiB held per connection otherwise */
    return k;
}

int cdn_trec_open(struct cdn_trec *r, struct cdn_buf *in, struct cdn_buf *plain, size_t room,
                  struct cdn_buf *out, char *err, size_t errlen)
{
    if (r == NULL || in == NULL || plain == NULL || out == NULL)
        return CDN_EINVAL;
    if (r->failed) {
        describe(r, err, errlen);
        return CDN_ETLS;
    }
    if (r->eof) {
        cdn_buf_consume(in, in->len); /* nothing after close_notify counts (6.1) */
        return CDN_TREC_EOF;
    }
    if (room > INT_MAX)
        room = INT_MAX;
    size_t got = 0;
    if (r->pend.len > 0) {
        got = take_pending(r, plain, room);
        if (r->pend.len > 0)
            return (int)got;
    }
    bool answered = false;
    while (got < room && in->len >= HDR_LEN) {
        uint8_t *h = (uint8_t *)cdn_buf_data(in);
        size_t len = (size_t)h[3] << 8 | h[4];
        if (h[0] != CT_APPDATA) /* also change_cipher_spec: only allowed during the handshake */
            return fail(r, AD_UNEXPECTED, out, err, errlen);
        if (h[1] != 3 || h[2] != 3)
            return fail(r, AD_DECODE, out, err, errlen); /* as OpenSSL does */
        if (len > MAX_CIPHER)
            return fail(r, AD_OVERFLOW, out, err, errlen);
        if (in->len < HDR_LEN + len)
            break;
        if (len < TAG_LEN)
            return fail(r, AD_BAD_MAC, out, err, errlen);
        size_t n = len - TAG_LEN;
        /* the common case: the whole record fits, so open it straight into plain (one copy less) */
        uint8_t *body = h + HDR_LEN,
                *pt = n > 0 && room - got >= n ? (uint8_t *)cdn_buf_reserve(plain, n) : body;
        int rc = open_record(r, h, body, len, pt);
        if (rc != 0)
            return fail(r, rc == -1 ? AD_BAD_MAC : AD_INTERNAL, out, err, errlen);
        while (n > 0 && pt[n - 1] == 0) /* padding */
            n--;
        if (n == 0)
            return fail(r, AD_UNEXPECTED, out, err, errlen);
        uint8_t type = pt[--n];
        /* content over 2^14; padding is bounded by MAX_CIPHER only (RFC 8446 5.4 would count it too, but
         * OpenSSL accepts it, and so do we) */
        if (n > MAX_PLAIN)
            return fail(r, AD_OVERFLOW, out, err, errlen);
        if (type != CT_HANDSHAKE && r->hslen > 0)
            return fail(r, AD_UNEXPECTED, out, err, errlen); /* a handshake message was interrupted */
        if (type == CT_APPDATA) {
            size_t k = room - got < n ? room - got : n;
            if (pt == body) {
                cdn_buf_append(plain, pt, k);
                cdn_buf_append(&r->pend, pt + k, n - k);
            } else {
                cdn_buf_commit(plain, n);
            }
            got += k;
        } else if (type == CT_ALERT) {
            if (n != 2)
                return fail(r, AD_DECODE, out, err, errlen);
            if (pt[1] == AD_CLOSE) {
                r->eof = 1;
                cdn_buf_consume(in, in->len);
                return got > 0 ? (int)got : CDN_TREC_EOF;
            }
            if (pt[1] != AD_USER_CANCEL || pt[0] != 1) {
                /* fatal by definition in TLS 1.3 (6.2); nothing is sent back */
                r->failed = r->fail_peer = r->wdone = 1;
                r->fail_alert = pt[1];
                describe(r, err, errlen);
                return CDN_ETLS;
            }
        } else if (type == CT_HANDSHAKE) {
            uint8_t alert = on_handshake(r, pt, n, out, &answered);
            if (alert != 0)
                return fail(r, alert, out, err, errlen);
        } else {
            return fail(r, AD_UNEXPECTED, out, err, errlen);
        }
        cdn_buf_consume(in, HDR_LEN + len);
    }
    return (int)got;
}
