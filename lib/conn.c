/*
 * conn: see conn.h. TLS runs over two BIOs: ciphertext read from the socket is written into a memory
 * BIO (rbio) and SSL_read turns it into plaintext in c->in; whatever OpenSSL produces (handshake
 * records, alerts, application data, close_notify) goes through wbio, our own BIO, straight into
 * c->out (a memory BIO there would cost a second copy of every byte sent and zero-fill its buffer),
 * so a failing handshake still sends its alert. libuv owns the socket; OpenSSL never touches the fd.
 *
 * Lifetime: three handles (tcp, timer, kick) are initialised at creation and closed together; the
 * memory is freed when the last close callback ran (and no getaddrinfo is outstanding).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <arpa/inet.h>

#include "lib/conn.h"
#include "lib/tls.h"
#include "lib/trec.h"
#include "lib/util.h"

#define READ_CHUNK     (64u * 1024u)
#define TLS_READ_CHUNK (16u * 1024u) /* one TLS record's plaintext at most */
#define LINGER_MS      2000u /* after our FIN: read and discard so the peer's unread data gets no RST */
#define END_LIMIT_MS   5000u /* the whole flush + linger sequence */
#define CORK_DIRECT    (16u * 1024u) /* corked TLS writes below this are gathered into one record */

static _Thread_local char rx_cipher[READ_CHUNK];

/* Apart from the conn: a server side never dials, and idle server connections are what add up. */
struct cdn_conn_dial {
    uv_connect_t creq;
    uv_getaddrinfo_t gai;
};
static _Atomic uint64_t next_id = 1;

/* ---- wbio: OpenSSL's output appended to c->out ---- */

static int out_bio_write(BIO *b, const char *p, int n)
{
    struct cdn_conn *c = BIO_get_data(b);
    if (n <= 0)
        return 0;
    cdn_buf_append(&c->out, p, (size_t)n);
    return n;
}

static long out_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* nothing is ever pending inside it */
}

static BIO_METHOD *out_method;
static uv_once_t out_method_once = UV_ONCE_INIT;

static void out_method_init(void)
{
    out_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cdn-node conn output");
    CDN_ASSERT(out_method != NULL && BIO_meth_set_write(out_method, out_bio_write) == 1 &&
               BIO_meth_set_ctrl(out_method, out_bio_ctrl) == 1);
}

static const BIO_METHOD *out_bio_method(void)
{
    uv_once(&out_method_once, out_method_init);
    return out_method;
}
/* Every live conn of this thread's loop, so a stopping worker can close detached ones too. */
static _Thread_local struct cdn_conn *live_conns;

static void emit(struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    if (c->closing || c->ending || c->cb == NULL)
        return;
    c->cb(c, ev, status);
}

static void conn_free(struct cdn_conn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        live_conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    SSL_free(c->ssl); /* frees both BIOs */
    if (c->trec != NULL)
        SSL_CTX_free(c->accept_ctx); /* held since the takeover */
    cdn_trec_free(&c->trec);
    cdn_buf_dispose(&c->rx);
    free(c->tls_sni);
    cdn_buf_dispose(&c->in);
    cdn_buf_dispose(&c->out);
    cdn_buf_dispose(&c->wbuf);
    cdn_buf_dispose(&c->plain);
    free(c->connect_host);
    free(c->dial);
    c->magic = 0;
    free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct cdn_conn *c = h->data;
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (--c->open_handles != 0 || c->resolving)
        return;
    conn_free(c);
}

void cdn_conn_close(struct cdn_conn *c)
{
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (c->closing)
        return;
    c->closing = 1;
    if (c->resolving)
        uv_cancel((uv_req_t *)&c->dial->gai);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->kick, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static struct cdn_conn *conn_new(uv_loop_t *loop, SSL_CTX *ctx, size_t in_cap, cdn_conn_cb *cb, void *data)
{
    struct cdn_conn *c = cdn_xcalloc(1, sizeof(*c));
    c->magic = CDN_CONN_MAGIC;
    c->loop = loop;
    c->cb = cb;
    c->data = data;
    c->in_cap = in_cap;
    c->id = next_id++;
    c->next = live_conns;
    if (live_conns != NULL)
        live_conns->prev = c;
    live_conns = c;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->kick);
    c->tcp.data = c->timer.data = c->kick.data = c;
    c->open_handles = 3;
    cdn_buf_init(&c->in);
    cdn_buf_init(&c->out);
    cdn_buf_init(&c->wbuf);
    cdn_buf_init(&c->plain);
    cdn_buf_init(&c->rx);
    if (ctx != NULL) {
        c->tls = 1;
        c->accept_ctx = ctx; /* the SSL holds it until a takeover */
        c->ssl = SSL_new(ctx);
        CDN_ASSERT(c->ssl != NULL);
        c->rbio = BIO_new(BIO_s_mem());
        c->wbio = BIO_new(out_bio_method());
        CDN_ASSERT(c->rbio != NULL && c->wbio != NULL);
        BIO_set_mem_eof_return(c->rbio, -1); /* empty means "retry", not EOF */
        BIO_set_data(c->wbio, c);
        BIO_set_init(c->wbio, 1);
        SSL_set_bio(c->ssl, c->rbio, c->wbio);
    }
    return c;
}

/* ---- writing ---- */

#define TLS_RECORD_MAX 16384 /* plaintext bytes of one TLS record */

/* SSL_get_error needs an empty error queue before the call it judges. Emptying it is costly
 * (ERR_clear_error wipes every slot), and it is nearly always empty already: look first. */
static inline void err_reset(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

static void start_write(struct cdn_conn *c);
static void finish_end(struct cdn_conn *c);
static void send_fin(struct cdn_conn *c);

static void on_write(uv_write_t *req, int status)
{
    struct cdn_conn *c = req->data;
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    c->writing = 0;
    cdn_buf_consume(&c->wbuf, c->wbuf.len);
    if (c->trim_wbuf) { /* cdn_conn_trim ran while this write was in flight */
        c->trim_wbuf = 0;
        if (c->out.len == 0)
            cdn_buf_dispose(&c->wbuf);
    }
    if (c->closing)
        return;
    if (status < 0) {
        if (c->ending) {
            cdn_conn_close(c);
            return;
        }
        snprintf(c->err, sizeof(c->err), "write: %s", uv_strerror(status));
        emit(c, CDN_CONN_EV_ERROR, status);
        return;
    }
    start_write(c);
    if (c->ending) {
        if (!c->writing)
            finish_end(c);
        return;
    }
    if (c->wshut && !c->writing)
        send_fin(c);
    if (c->want_drain && cdn_conn_pending(c) < CDN_CONN_LOW_WATER) {
        c->want_drain = 0;
        emit(c, CDN_CONN_EV_DRAIN, 0);
    }
}

static void start_write(struct cdn_conn *c)
{
    if (c->writing || c->out.len == 0 || c->closing || !c->connected)
        return;
    /* Most answers fit the socket buffer: write them now. A uv_write that completes still costs an
     * epoll_ctl (libuv re-arms the socket when it drops POLLOUT), one per response. Errors and
     * EAGAIN fall through to uv_write, which reports or waits as before. An owner waiting for DRAIN
     * gets it from on_write, so then the write goes through uv_write too. */
    if (!c->want_drain) {
        uv_buf_t now = uv_buf_init(cdn_buf_data(&c->out), (unsigned)c->out.len);
        int k = uv_try_write((uv_stream_t *)&c->tcp, &now, 1);
        if (k > 0) {
            cdn_buf_consume(&c->out, (size_t)k);
            if (c->out.len == 0)
                return;
        }
    }
    struct cdn_buf tmp = c->wbuf;
    c->wbuf = c->out;
    c->out = tmp;
    uv_buf_t b = uv_buf_init(cdn_buf_data(&c->wbuf), (unsigned)c->wbuf.len);
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        /* report from a callback, never from inside the caller's write */
        snprintf(c->err, sizeof(c->err), "write: %s", uv_strerror(rc));
        cdn_buf_consume(&c->wbuf, c->wbuf.len);
        cdn_conn_close(c);
        return;
    }
    c->writing = 1;
}


static void tls_takeover(struct cdn_conn *c);

/* Encrypts plaintext into records (they land in c->out through wbio); the caller starts the write. */
static void tls_write(struct cdn_conn *c, const char *s, size_t n)
{
    if (c->takeover)
        tls_takeover(c);
    if (c->trec != NULL) {
        if (cdn_trec_seal(c->trec, s, n, &c->out) != 0)
            snprintf(c->err, sizeof(c->err), "TLS record layer: cannot seal"); /* the read side reports */
        return;
    }
    if (c->ssl == NULL || c->deferred_err != 0)
        return; /* a failed takeover: the deferred error closes the connection */
    while (n > 0) {
        int chunk = n > (1u << 30) ? 1 << 30 : (int)n;
        err_reset();
        int k = SSL_write(c->ssl, s, chunk);
        if (k <= 0) {
            cdn_tls_describe_error(c->ssl, c->err, sizeof(c->err));
            return; /* the read side reports the failure */
        }
        s += k;
        n -= (size_t)k;
    }
}

void cdn_conn_write(struct cdn_conn *c, const void *p, size_t n)
{
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (c->closing || c->ending || c->wshut || n == 0)
        return;
    c->bytes_out += n;
    if (c->sink)
        return;
    if (!c->tls) {
        cdn_buf_append(&c->out, p, n);
    } else if (!c->tls_done || (c->corked && n < CORK_DIRECT)) {
        /* before the handshake there is no record layer yet: queue until OPEN */
        cdn_buf_append(&c->plain, p, n); /* becomes one record with its neighbours at uncork */
    } else {
        if (c->plain.len > 0) { /* keep the order */
            tls_write(c, cdn_buf_data(&c->plain), c->plain.len);
            cdn_buf_consume(&c->plain, c->plain.len);
        }
        tls_write(c, p, n);
    }
    if (!c->corked)
        start_write(c);
}

void cdn_conn_write_direct(struct cdn_conn *c, const void *p, size_t n)
{
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (!c->tls || !c->tls_done || c->sink || c->closing || c->ending || c->wshut || n == 0) {
        cdn_conn_write(c, p, n);
        return;
    }
    c->bytes_out += n;
    if (c->plain.len > 0 && c->plain.len + n <= TLS_RECORD_MAX) {
        /* A head and a small body make one record: a record costs more than copying 16 KiB. */
        cdn_buf_append(&c->plain, p, n);
        if (c->corked)
            return; /* uncork encrypts it */
        tls_write(c, cdn_buf_data(&c->plain), c->plain.len);
        cdn_buf_consume(&c->plain, c->plain.len);
        start_write(c);
        return;
    }
    if (c->plain.len > 0) { /* keep the order */
        tls_write(c, cdn_buf_data(&c->plain), c->plain.len);
        cdn_buf_consume(&c->plain, c->plain.len);
    }
    tls_write(c, p, n); /* encrypted straight from p: the plaintext is never copied */
    if (!c->corked)
        start_write(c);
}

void cdn_conn_cork(struct cdn_conn *c)
{
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    c->corked++;
}

void cdn_conn_uncork(struct cdn_conn *c)
{
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    CDN_ASSERT(c->corked > 0);
    if (--c->corked > 0 || c->closing || c->ending)
        return;
    if (c->plain.len > 0) {
        tls_write(c, cdn_buf_data(&c->plain), c->plain.len);
        cdn_buf_consume(&c->plain, c->plain.len);
    }
    start_write(c);
}

void cdn_conn_trim(struct cdn_conn *c)
{
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (c->takeover)
        tls_takeover(c); /* first: its probe passes through c->out */
    if (c->in.len == 0)
        cdn_buf_dispose(&c->in);
    if (c->plain.len == 0)
        cdn_buf_dispose(&c->plain);
    if (c->out.len == 0)
        cdn_buf_dispose(&c->out);
    if (!c->writing)
        cdn_buf_dispose(&c->wbuf);
    else
        c->trim_wbuf = 1;
    if (c->trec != NULL) {
        if (c->rx.len == 0)
            cdn_buf_dispose(&c->rx);
        cdn_trec_trim(c->trec);
    }
    if (c->ssl != NULL && c->tls_done)
        SSL_free_buffers(c->ssl); /* the record buffers, if empty; the next record allocates again */
    /* a memory BIO keeps the largest buffer it ever held: a fresh one costs nothing while idle */
    if (c->ssl != NULL && c->tls_done && BIO_ctrl_pending(c->rbio) == 0) {
        BIO *r = BIO_new(BIO_s_mem());
        if (r == NULL)
            return;
        BIO_set_mem_eof_return(r, -1);
        SSL_set0_rbio(c->ssl, r); /* frees the old one */
        c->rbio = r;
    }
}

size_t cdn_conn_pending(const struct cdn_conn *c)
{
    return c->out.len + c->wbuf.len + c->plain.len;
}

bool cdn_conn_congested(struct cdn_conn *c)
{
    if (c->sink)
        return false;
    if (cdn_conn_pending(c) <= CDN_CONN_HIGH_WATER)
        return false;
    c->want_drain = 1;
    return true;
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* The socket's read interest, changed only when it must: every change is an epoll_ctl. */
static int sock_read_on(struct cdn_conn *c)
{
    if (c->uv_rd)
        return 0;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc == 0)
        c->uv_rd = 1;
    return rc;
}

static void sock_read_off(struct cdn_conn *c)
{
    if (!c->uv_rd)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->uv_rd = 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct cdn_conn *c = h->data;
    if (c->tls || c->ending) {
        *buf = uv_buf_init(rx_cipher, sizeof(rx_cipher));
        return;
    }
    size_t room = c->in_cap > c->in.len ? c->in_cap - c->in.len : 0;
    if (room > READ_CHUNK)
        room = READ_CHUNK;
    if (room == 0) {
        *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS: the owner ignored the cap */
        return;
    }
    *buf = uv_buf_init(cdn_buf_reserve(&c->in, room), (unsigned)room);
}

/* Decrypts buffered records into c->in until it is full or OpenSSL needs more input.
 * Returns 1 if plaintext was added, 0 if not, or a negative error (EOF is reported via *eof). */
static int trec_pump(struct cdn_conn *c, bool *eof)
{
    int added = 0;
    while (c->in.len < c->in_cap) {
        int k =
            cdn_trec_open(c->trec, &c->rx, &c->in, c->in_cap - c->in.len, &c->out, c->err, sizeof(c->err));
        if (k == CDN_TREC_EOF) {
            *eof = true;
            break;
        }
        if (k < 0) {
            start_write(c); /* the alert */
            return CDN_ETLS;
        }
        if (k == 0)
            break;
        c->bytes_in += (size_t)k;
        added = 1;
    }
    start_write(c); /* a KeyUpdate answer */
    return added;
}

static int tls_pump(struct cdn_conn *c, bool *eof)
{
    if (c->takeover)
        tls_takeover(c);
    if (c->trec != NULL)
        return trec_pump(c, eof);
    if (c->ssl == NULL || c->deferred_err != 0)
        return CDN_ETLS; /* a failed takeover */
    int added = 0;
    while (c->in.len < c->in_cap) {
        size_t room = c->in_cap - c->in.len;
        /* a record holds at most 16 KiB, and never more plaintext than the ciphertext waiting: a
         * small request does not make an idle connection hold a large buffer */
        size_t want = BIO_ctrl_pending(c->rbio) + (size_t)SSL_pending(c->ssl);
        want = want < 1024 ? 1024 : want > TLS_READ_CHUNK ? TLS_READ_CHUNK : want;
        if (room > want)
            room = want;
        char *p = cdn_buf_reserve(&c->in, room);
        err_reset();
        int k = SSL_read(c->ssl, p, (int)room);
        if (k > 0) {
            cdn_buf_commit(&c->in, (size_t)k);
            c->bytes_in += (size_t)k;
            added = 1;
            if (BIO_ctrl_pending(c->rbio) == 0 && !SSL_has_pending(c->ssl))
                break; /* nothing left to decrypt: spare the call that would say WANT_READ */
            continue;
        }
        int e = SSL_get_error(c->ssl, k);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            *eof = true;
            break;
        }
        cdn_tls_describe_error(c->ssl, c->err, sizeof(c->err));
        start_write(c);
        return CDN_ETLS;
    }
    start_write(c);
    return added;
}

static void deliver_eof(struct cdn_conn *c, int status)
{
    c->eof = 1;
    sock_read_off(c);
    c->reading = 0;
    emit(c, CDN_CONN_EV_EOF, status);
}

/* Ciphertext or decrypted records still buffered inside the TLS layer. */
static bool tls_has_pending(const struct cdn_conn *c)
{
    if (c->trec != NULL) { /* a part of a record is not pending: OpenSSL too takes it in and waits */
        const unsigned char *p = (const unsigned char *)cdn_buf_data(&c->rx);
        return cdn_trec_pending(c->trec) || (c->rx.len >= 5 && c->rx.len >= 5 + ((size_t)p[3] << 8 | p[4]));
    }
    return c->ssl != NULL && c->tls_done && (BIO_ctrl_pending(c->rbio) > 0 || SSL_pending(c->ssl) > 0);
}

/* Hands buffered plaintext to the owner, decrypting more whenever the owner made room, and reports
 * EOF only once nothing is left inside the TLS layer (a full c->in must not hide the last bytes). */
static void deliver(struct cdn_conn *c)
{
    for (;;) {
        if (c->tls && c->tls_done && !c->tls_eof) {
            bool eof = false;
            int rc = tls_pump(c, &eof);
            if (rc < 0) {
                emit(c, CDN_CONN_EV_ERROR, rc);
                return;
            }
            if (eof)
                c->tls_eof = 1;
        }
        if (c->in.len > 0) {
            emit(c, CDN_CONN_EV_READ, 0);
            if (c->closing || c->ending || !c->reading)
                return;
        }
        if (c->tls_eof || !tls_has_pending(c) || c->in.len >= c->in_cap)
            break;
    }
    if (c->eof || c->closing || c->ending)
        return;
    if (c->tls_eof)
        deliver_eof(c, 0);
    else if (c->sock_eof && !tls_has_pending(c))
        deliver_eof(c, c->tls ? CDN_ECLOSED : 0); /* TLS without close_notify: a truncation */
}

static void tls_on_cipher(struct cdn_conn *c, const char *p, size_t n)
{
    if (n > 0 && BIO_write(c->rbio, p, (int)n) != (int)n) {
        snprintf(c->err, sizeof(c->err), "out of memory buffering TLS input");
        emit(c, CDN_CONN_EV_ERROR, CDN_ENOMEM);
        return;
    }
    if (!c->tls_done) {
        ERR_clear_error();
        int rc = SSL_do_handshake(c->ssl);
        start_write(c);
        if (rc != 1) {
            int e = SSL_get_error(c->ssl, rc);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            c->tls_verify = SSL_get_verify_result(c->ssl);
            c->tls_errcode = ERR_peek_error();
            cdn_tls_describe_error(c->ssl, c->err, sizeof(c->err));
            emit(c, CDN_CONN_EV_ERROR,
                 c->is_client && SSL_get_verify_result(c->ssl) != X509_V_OK ? CDN_EVERIFY : CDN_ETLS);
            return;
        }
        c->tls_done = 1;
        if (c->plain.len > 0 && !c->corked) { /* written before OPEN */
            tls_write(c, cdn_buf_data(&c->plain), c->plain.len);
            cdn_buf_consume(&c->plain, c->plain.len);
            start_write(c);
        }
        emit(c, CDN_CONN_EV_OPEN, 0);
        if (c->closing || c->ending || !c->reading)
            return;
    }
    deliver(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct cdn_conn *c = s->data;
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (c->closing || nread == 0)
        return;
    if (c->ending) { /* lingering: discard until EOF */
        if (nread < 0)
            cdn_conn_close(c);
        return;
    }
    if (!c->reading && (!c->tls || c->tls_done)) { /* paused lazily: keep what came, stop */
        sock_read_off(c);
        if (nread == UV_ENOBUFS)
            return; /* c->in is full: the owner consumes before it reads again */
        if (nread == UV_EOF)
            c->sock_eof = 1;
        else if (nread < 0)
            c->paused_err = (int)nread;
        else if (c->trec != NULL)
            cdn_buf_append(&c->rx, buf->base, (size_t)nread);
        else if (c->ssl != NULL && BIO_write(c->rbio, buf->base, (int)nread) != (int)nread)
            c->paused_err = CDN_ENOMEM;
        else if (!c->tls) {
            cdn_buf_commit(&c->in, (size_t)nread);
            c->bytes_in += (size_t)nread;
        }
        return;
    }
    if (nread < 0) {
        sock_read_off(c);
        if (nread == UV_EOF) {
            c->sock_eof = 1;
            if (c->ssl != NULL && !c->tls_done) {
                snprintf(c->err, sizeof(c->err), "peer closed during the TLS handshake");
                emit(c, CDN_CONN_EV_ERROR, CDN_ECLOSED);
                return;
            }
            deliver(c);
            return;
        }
        snprintf(c->err, sizeof(c->err), "read: %s", uv_strerror((int)nread));
        c->reading = 0;
        emit(c, CDN_CONN_EV_ERROR, (int)nread);
        return;
    }
    if (c->trec != NULL) {
        cdn_buf_append(&c->rx, buf->base, (size_t)nread);
        deliver(c);
        return;
    }
    if (c->ssl != NULL) {
        tls_on_cipher(c, buf->base, (size_t)nread);
        return;
    }
    if (c->tls) { /* a failed takeover: its deferred error comes */
        sock_read_off(c);
        return;
    }
    cdn_buf_commit(&c->in, (size_t)nread);
    c->bytes_in += (size_t)nread;
    deliver(c);
}

static void on_kick(uv_timer_t *t)
{
    struct cdn_conn *c = t->data;
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (c->deferred_err != 0) {
        emit(c, CDN_CONN_EV_ERROR, c->deferred_err);
        return;
    }
    if (c->reading && c->paused_err != 0) {
        snprintf(c->err, sizeof(c->err), "read: %s", uv_strerror(c->paused_err));
        c->reading = 0;
        emit(c, CDN_CONN_EV_ERROR, c->paused_err);
        return;
    }
    if (c->reading)
        deliver(c);
}

/* Failures found inside an API call are reported from a callback, never re-entrantly. */
static void defer_error(struct cdn_conn *c, int err)
{
    c->deferred_err = err;
    uv_timer_start(&c->kick, on_kick, 0, 0);
}

void cdn_conn_read_start(struct cdn_conn *c)
{
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (c->reading || c->closing || c->ending || c->eof || !c->connected)
        return;
    if (!c->sock_eof && c->paused_err == 0 && sock_read_on(c) < 0)
        return; /* the socket is gone; the pending write or the timer reports it */
    c->reading = 1;
    /* buffered plaintext, records left in the TLS layer, or an EOF or error seen while paused */
    if (c->in.len > 0 || tls_has_pending(c) || c->sock_eof || c->tls_eof || c->paused_err != 0)
        uv_timer_start(&c->kick, on_kick, 0, 0);
}

void cdn_conn_read_stop(struct cdn_conn *c)
{
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (!c->reading || c->ending)
        return;
    /* The socket stays in epoll: a client that waits for the answer sends nothing meanwhile, so
     * pausing costs no epoll_ctl; bytes that do come are kept and reading really stops (on_read). */
    uv_timer_stop(&c->kick);
    c->reading = 0;
}

static void on_timer(uv_timer_t *t)
{
    struct cdn_conn *c = t->data;
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (c->ending) {
        cdn_conn_close(c);
        return;
    }
    if (c->deadline == 0)
        return; /* disarmed after the timer was set */
    uint64_t now = uv_now(c->tcp.loop);
    if (c->deadline > now) { /* pushed back since: wait for the rest */
        uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
        c->timer_due = c->deadline;
        return;
    }
    c->deadline = 0;
    emit(c, CDN_CONN_EV_TIMEOUT, CDN_ETIMEOUT);
}

/* Lazy: a phase's timeout is usually set again or cleared long before it fires, so the timer is only
 * moved when the new deadline is earlier than when it fires; on_timer re-arms for the rest. Two
 * timer-heap updates per request are saved. */
void cdn_conn_set_timeout(struct cdn_conn *c, uint64_t ms)
{
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (c->closing || c->ending)
        return;
    if (ms == 0) {
        c->deadline = 0;
        return;
    }
    c->deadline = uv_now(c->tcp.loop) + ms;
    if (uv_is_active((uv_handle_t *)&c->timer) && c->timer_due <= c->deadline)
        return;
    uv_timer_start(&c->timer, on_timer, ms, 0);
    c->timer_due = c->deadline;
}

/* ---- graceful end: flush, close_notify, FIN, linger ---- */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct cdn_conn *c = req->data;
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (c->closing)
        return;
    if (status < 0 || c->eof) {
        cdn_conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
    if (!c->reading && sock_read_on(c) == 0)
        c->reading = 1;
}

static void finish_end(struct cdn_conn *c)
{
    if (c->closing)
        return;
    if (c->shut_sent) { /* half-closed before: nothing left to send */
        if (c->eof) {
            cdn_conn_close(c);
            return;
        }
        uv_timer_start(&c->timer, on_timer, LINGER_MS, 0);
        if (!c->reading && sock_read_on(c) == 0)
            c->reading = 1;
        return;
    }
    c->shut_sent = 1;
    c->sreq.data = c;
    if (!c->connected || uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        cdn_conn_close(c);
}

void cdn_conn_end(struct cdn_conn *c)
{
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (c->closing || c->ending)
        return;
    if (!c->connected || c->sink) {
        cdn_conn_close(c);
        return;
    }
    if (c->plain.len > 0) { /* corked bytes go out before close_notify */
        tls_write(c, cdn_buf_data(&c->plain), c->plain.len);
        cdn_buf_consume(&c->plain, c->plain.len);
    }
    if (c->trec != NULL)
        cdn_trec_close_notify(c->trec, &c->out);
    else if (c->ssl != NULL && c->tls_done) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
    start_write(c);
    c->ending = 1;
    uv_timer_stop(&c->kick);
    uv_timer_start(&c->timer, on_timer, END_LIMIT_MS, 0);
    sock_read_off(c);
    c->reading = 0;
    if (!c->writing)
        finish_end(c);
}

static void on_half_shutdown(uv_shutdown_t *req, int status)
{
    struct cdn_conn *c = req->data;
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (c->closing || c->ending || status >= 0)
        return;
    snprintf(c->err, sizeof(c->err), "shutdown: %s", uv_strerror(status));
    emit(c, CDN_CONN_EV_ERROR, status);
}

/* The FIN of a half-close, once nothing is queued. */
static void send_fin(struct cdn_conn *c)
{
    if (c->shut_sent || c->closing || c->ending || c->sink || !c->connected)
        return;
    c->shut_sent = 1;
    c->sreq.data = c;
    int rc = uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_half_shutdown);
    if (rc < 0) {
        snprintf(c->err, sizeof(c->err), "shutdown: %s", uv_strerror(rc));
        defer_error(c, rc);
    }
}

void cdn_conn_shutdown(struct cdn_conn *c)
{
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (c->closing || c->ending || c->wshut)
        return;
    if (c->plain.len > 0) { /* corked bytes go out before close_notify */
        tls_write(c, cdn_buf_data(&c->plain), c->plain.len);
        cdn_buf_consume(&c->plain, c->plain.len);
    }
    if (c->trec != NULL) {
        cdn_trec_close_notify(c->trec, &c->out); /* the peer may go on sending (TLS 1.3 half-close) */
    } else if (c->ssl != NULL && c->tls_done) {
        ERR_clear_error();
        SSL_shutdown(c->ssl); /* close_notify only: the peer may go on sending (TLS 1.3 half-close) */
        ERR_clear_error();
    }
    c->wshut = 1;
    start_write(c);
    if (!c->writing)
        send_fin(c);
}

/* ---- server side ---- */

static void format_peer(struct cdn_conn *c)
{
    struct sockaddr_storage ss = {.ss_family = AF_UNSPEC};
    int len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            uv_ip4_name(a, ip, sizeof(ip));
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, ip, sizeof(ip));
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(c->peer, sizeof(c->peer), ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
}

struct cdn_conn *cdn_conn_accept(uv_stream_t *listener, SSL_CTX *ctx, size_t in_cap, cdn_conn_cb *cb,
                                 void *data, int *err)
{
    struct cdn_conn *c = conn_new(listener->loop, ctx, in_cap, cb, data);
    int rc = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (rc < 0) {
        *err = rc;
        cdn_conn_close(c);
        return NULL;
    }
    c->connected = 1;
    uv_tcp_nodelay(&c->tcp, 1);
    format_peer(c);
    if (c->ssl != NULL)
        SSL_set_accept_state(c->ssl);
    rc = sock_read_on(c);
    if (rc < 0) {
        *err = rc;
        cdn_conn_close(c);
        return NULL;
    }
    c->reading = 1;
    return c;
}

/* ---- client side ---- */

static void on_connect(uv_connect_t *req, int status)
{
    struct cdn_conn *c = req->data;
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (c->closing)
        return;
    if (status < 0) {
        snprintf(c->err, sizeof(c->err), "connect to %s: %s", c->peer, uv_strerror(status));
        emit(c, CDN_CONN_EV_ERROR, status);
        return;
    }
    c->connected = 1;
    uv_tcp_nodelay(&c->tcp, 1);
    if (sock_read_on(c) == 0)
        c->reading = 1;
    start_write(c); /* bytes written while connecting */
    if (c->ssl == NULL) {
        emit(c, CDN_CONN_EV_OPEN, 0);
        return;
    }
    SSL_set_connect_state(c->ssl);
    tls_on_cipher(c, NULL, 0); /* sends the ClientHello */
}

static void connect_addr(struct cdn_conn *c, const struct sockaddr *sa)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof(ip));
    else
        uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof(ip));
    snprintf(c->peer, sizeof(c->peer), sa->sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, c->connect_port);
    c->dial->creq.data = c;
    int rc = uv_tcp_connect(&c->dial->creq, &c->tcp, sa, on_connect);
    if (rc < 0) {
        snprintf(c->err, sizeof(c->err), "connect to %s: %s", c->peer, uv_strerror(rc));
        defer_error(c, rc);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct cdn_conn *c = req->data;
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    c->resolving = 0;
    if (c->closing) {
        uv_freeaddrinfo(res);
        if (c->open_handles == 0) /* all close callbacks already ran */
            conn_free(c);
        return;
    }
    if (status < 0 || res == NULL) {
        snprintf(c->err, sizeof(c->err), "resolve %s: %s", c->connect_host, uv_strerror(status));
        uv_freeaddrinfo(res);
        emit(c, CDN_CONN_EV_ERROR, status < 0 ? status : UV_EAI_NONAME);
        return;
    }
    struct sockaddr_storage ss;
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    uv_freeaddrinfo(res);
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons(c->connect_port);
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(c->connect_port);
    connect_addr(c, (struct sockaddr *)&ss);
}

struct cdn_conn *cdn_conn_connect(uv_loop_t *loop, const char *host, uint16_t port, SSL_CTX *ctx,
                                  const char *tls_name, bool verify, size_t in_cap, cdn_conn_cb *cb,
                                  void *data)
{
    struct cdn_conn *c = conn_new(loop, ctx, in_cap, cb, data);
    c->is_client = 1;
    c->dial = cdn_xcalloc(1, sizeof(*c->dial));
    c->connect_host = cdn_xstrdup(host);
    c->connect_port = port;
    snprintf(c->peer, sizeof(c->peer), "%s:%u", host, port);
    if (c->ssl != NULL && cdn_tls_client_setup(c->ssl, tls_name != NULL ? tls_name : host, verify) != 0) {
        snprintf(c->err, sizeof(c->err), "cannot set TLS name %s", tls_name != NULL ? tls_name : host);
        defer_error(c, CDN_ETLS);
        return c;
    }
    if (c->ssl != NULL) {
        char key[320];
        snprintf(key, sizeof(key), "%s|%u|%s", host, port, tls_name != NULL ? tls_name : host);
        cdn_tls_client_resume(c->ssl, key);
    }
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    if (uv_ip4_addr(host, port, &a4) == 0) {
        connect_addr(c, (struct sockaddr *)&a4);
    } else if (uv_ip6_addr(host, port, &a6) == 0) {
        connect_addr(c, (struct sockaddr *)&a6);
    } else {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        c->dial->gai.data = c;
        int rc = uv_getaddrinfo(loop, &c->dial->gai, on_resolved, host, NULL, &hints);
        if (rc < 0) {
            snprintf(c->err, sizeof(c->err), "resolve %s: %s", host, uv_strerror(rc));
            defer_error(c, rc);
        } else {
            c->resolving = 1;
        }
    }
    return c;
}

void cdn_conn_close_all(void)
{
    for (struct cdn_conn *c = live_conns; c != NULL; c = c->next)
        cdn_conn_close(c);
}

struct cdn_conn *cdn_conn_sink(uv_loop_t *loop, cdn_conn_cb *cb, void *data)
{
    struct cdn_conn *c = conn_new(loop, NULL, 0, cb, data);
    c->sink = 1;
    snprintf(c->peer, sizeof(c->peer), "background");
    return c;
}

const char *cdn_conn_tls_version(const struct cdn_conn *c)
{
    if (c->trec != NULL)
        return "TLSv1.3";
    return c->ssl != NULL && c->tls_done ? SSL_get_version(c->ssl) : NULL;
}

const char *cdn_conn_sni(const struct cdn_conn *c)
{
    if (c->trec != NULL)
        return c->tls_sni;
    return c->ssl != NULL ? SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
}

void cdn_conn_allow_takeover(struct cdn_conn *c)
{
    CDN_CHECK_OBJ(c, CDN_CONN_MAGIC);
    if (c->ssl != NULL && c->tls_done && !c->is_client && SSL_version(c->ssl) == TLS1_3_VERSION)
        c->takeover = 1;
}

/* ---- TLS 1.3 takeover (see cdn_conn_allow_takeover) ---- */

enum { PROBE_LEN = 5 + 1 + 1 + 16 }; /* header, 'x', inner content type, tag */

/* Which sequence number OpenSSL's next record would carry: after its Finished it sent 0, 1 or more
 * session tickets, and it does not say how many. So it seals a one-byte probe that is never sent,
 * and the probe opened with the server's own secret tells; our first record takes its number. */
static bool probe_seq(struct cdn_conn *c, uint16_t suite, const uint8_t *cs, const uint8_t *ss, size_t len,
                      uint64_t *seq)
{
    size_t mark = c->out.len;
    err_reset();
    if (SSL_write(c->ssl, "x", 1) != 1 || c->out.len - mark < PROBE_LEN)
        return false;
    const char *p = cdn_buf_data(&c->out) + c->out.len - PROBE_LEN; /* the last record appended */
    bool found = false;
    if (memcmp(p, "\x17\x03\x03\x00\x12", 5) == 0) {
        struct cdn_buf in, plain, junk;
        cdn_buf_init(&in);
        cdn_buf_init(&plain);
        cdn_buf_init(&junk);
        uint64_t first = (uint64_t)SSL_get_num_tickets(c->ssl);
        for (uint64_t i = 0; i <= 16 && !found; i++) {
            uint64_t k = i == 0 ? first : i - 1; /* the number of tickets first: nearly always right */
            struct cdn_trec *t = cdn_trec_new(suite, ss, cs, len, k, 0);
            if (t == NULL)
                break;
            cdn_buf_reset(&in);
            cdn_buf_reset(&plain);
            cdn_buf_append(&in, p, PROBE_LEN);
            found = cdn_trec_open(t, &in, &plain, 16, &junk, NULL, 0) == 1 && cdn_buf_data(&plain)[0] == 'x';
            cdn_trec_free(&t);
            if (found)
                *seq = k;
        }
        cdn_buf_dispose(&in);
        cdn_buf_dispose(&plain);
        cdn_buf_dispose(&junk);
    }
    c->out.len -= PROBE_LEN;
    return found;
}

static void tls_takeover(struct cdn_conn *c)
{
    c->takeover = 0;
    SSL *ssl = c->ssl;
    if (ssl == NULL || !c->tls_done || c->tls_eof || c->closing || c->ending || SSL_pending(ssl) > 0 ||
        SSL_has_pending(ssl))
        return;
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
    uint16_t suite = cipher != NULL ? SSL_CIPHER_get_protocol_id(cipher) : 0;
    uint8_t cs[EVP_MAX_MD_SIZE], ss[EVP_MAX_MD_SIZE];
    size_t len = 0;
    if (cdn_tls_take_secrets(ssl, cs, ss, &len) != 0)
        return;
    struct cdn_trec *rec = cdn_trec_new(suite, cs, ss, len, 0, 0);
    uint64_t wseq = 0;
    if (rec != NULL && !probe_seq(c, suite, cs, ss, len, &wseq)) {
        /* OpenSSL's sequence number moved past a record nobody will see: this connection is lost */
        cdn_trec_free(&rec);
        snprintf(c->err, sizeof(c->err), "TLS record layer takeover failed");
        defer_error(c, CDN_ETLS);
        OPENSSL_cleanse(cs, sizeof(cs));
        OPENSSL_cleanse(ss, sizeof(ss));
        return;
    }
    if (rec != NULL) {
        cdn_trec_free(&rec);
        rec = cdn_trec_new(suite, cs, ss, len, 0, wseq); /* read: nothing was read since the handshake */
    }
    OPENSSL_cleanse(cs, sizeof(cs));
    OPENSSL_cleanse(ss, sizeof(ss));
    if (rec == NULL)
        return;                           /* a suite lib/trec does not know: OpenSSL stays */
    size_t n = BIO_ctrl_pending(c->rbio); /* ciphertext OpenSSL has not read */
    if (n > 0) {
        int k = BIO_read(c->rbio, cdn_buf_reserve(&c->rx, n), (int)n);
        if (k > 0)
            cdn_buf_commit(&c->rx, (size_t)k);
    }
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    c->tls_sni = sni != NULL ? cdn_xstrdup(sni) : NULL;
    SSL_CTX_up_ref(c->accept_ctx);
    SSL_free(ssl);
    c->ssl = NULL;
    c->rbio = c->wbio = NULL;
    c->trec = rec;
}
