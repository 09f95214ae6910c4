/*
 * conn: real connections over 127.0.0.1 inside a loop made per test. Each test runs the loop to
 * completion (every conn closed, the listener closed) under an unref'd watchdog timer; the checked
 * fixture then fails the test for any handle still open, and only after that closes the rest and
 * asserts uv_loop_close() == 0 (STYLE 3.10). Events are counted per side and checked exactly.
 * Byte streams are compared on the fly against one fixed pseudo-random pattern, so a reordered,
 * duplicated or lost chunk shows up as a mismatch offset.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <openssl/err.h>

#include "lib/conn.h"
#include "lib/tls.h"
#include "lib/util.h"
#include "test/unit/fixture.h"
#include "test/unit/suites.h"

#define NEV         6 /* CDN_CONN_EV_OPEN .. CDN_CONN_EV_TIMEOUT */
#define PATTERN_LEN (4u * 1024u * 1024u)
#define WATCHDOG_MS 4000u

/* ---- the loop fixture ---- */

static uv_loop_t loop;
static uv_timer_t watchdog;

struct leak_report {
    unsigned n;
    char names[256];
};

static void walk_open(uv_handle_t *h, void *arg)
{
    struct leak_report *r = arg;
    if (uv_is_closing(h))
        return;
    size_t k = strlen(r->names);
    snprintf(r->names + k, sizeof(r->names) - k, "%s%s", k > 0 ? ", " : "",
             uv_handle_type_name(uv_handle_get_type(h)));
    r->n++;
}

static void walk_close(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void loop_setup(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
}

static void loop_teardown(void)
{
    struct leak_report r = {0};
    uv_walk(&loop, walk_open, &r);
    ck_assert_msg(r.n == 0, "%u handle(s) left open: %s", r.n, r.names);
    uv_walk(&loop, walk_close, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}

static void on_watchdog(uv_timer_t *t)
{
    ck_abort_msg("watchdog: the loop still runs after %u ms", WATCHDOG_MS);
}

/* Runs the loop until nothing is left to do, with the watchdog armed (unref'd, so it never keeps
 * the loop alive itself), then closes the watchdog so the teardown sees no handle of ours. */
static void run_loop(void)
{
    ck_assert_int_eq(uv_timer_init(&loop, &watchdog), 0);
    ck_assert_int_eq(uv_timer_start(&watchdog, on_watchdog, WATCHDOG_MS, 0), 0);
    uv_unref((uv_handle_t *)&watchdog);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&watchdog, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* ---- the byte pattern ---- */

static unsigned char *pattern;

static void make_pattern(void)
{
    pattern = malloc(PATTERN_LEN);
    ck_assert_ptr_nonnull(pattern);
    uint32_t x = 0x9e3779b9u;
    for (size_t i = 0; i < PATTERN_LEN; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pattern[i] = (unsigned char)x;
    }
}

static void free_pattern(void)
{
    free(pattern);
    pattern = NULL;
}

/* ---- one side of a connection, as the test sees it ---- */

struct peer;
typedef void hook_fn(struct peer *p, enum cdn_conn_event ev, int status);

struct peer {
    struct cdn_conn *c; /* NULL once the test ended or closed it */
    unsigned ev[NEV];
    int status[NEV]; /* of the last event of each kind */
    char err[256];   /* c->err at the last ERROR */
    bool consume;    /* READ takes all of c->in into the stream check */
    size_t got;      /* bytes taken so far */
    size_t mismatch; /* first offset that differs from the pattern, or SIZE_MAX */
    size_t got_at_eof;
    hook_fn *hook; /* test-specific reaction; without one, EOF/ERROR/TIMEOUT close */
};

static void peer_init(struct peer *p, bool consume, hook_fn *hook)
{
    memset(p, 0, sizeof(*p));
    p->consume = consume;
    p->mismatch = SIZE_MAX;
    p->hook = hook;
}

static void take(struct peer *p, size_t n)
{
    const unsigned char *d = (const unsigned char *)cdn_buf_data(&p->c->in);
    if (p->mismatch == SIZE_MAX) {
        if (p->got + n > PATTERN_LEN) {
            p->mismatch = PATTERN_LEN;
        } else {
            for (size_t i = 0; i < n; i++) {
                if (d[i] != pattern[p->got + i]) {
                    p->mismatch = p->got + i;
                    break;
                }
            }
        }
    }
    p->got += n;
    cdn_buf_consume(&p->c->in, n);
}

static void close_peer(struct peer *p)
{
    cdn_conn_close(p->c);
    p->c = NULL;
}

static void end_peer(struct peer *p)
{
    cdn_conn_end(p->c);
    p->c = NULL;
}

static void takeover_check(struct peer *p, enum cdn_conn_event ev);

static void on_event(struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    struct peer *p = c->data;
    ck_assert_ptr_nonnull(p);
    ck_assert_msg(p->c == c, "event %d on a conn the test already let go", (int)ev);
    ck_assert_int_lt((int)ev, NEV);
    p->ev[ev]++;
    p->status[ev] = status;
    if (ev == CDN_CONN_EV_ERROR)
        snprintf(p->err, sizeof(p->err), "%s", c->err);
    takeover_check(p, ev);
    if (ev == CDN_CONN_EV_READ) {
        ck_assert_uint_gt(c->in.len, 0);
        ck_assert_uint_le(c->in.len, c->in_cap);
        if (p->consume)
            take(p, c->in.len);
    }
    if (ev == CDN_CONN_EV_EOF)
        p->got_at_eof = p->got;
    if (p->hook != NULL)
        p->hook(p, ev, status);
    else if (ev == CDN_CONN_EV_EOF || ev == CDN_CONN_EV_ERROR || ev == CDN_CONN_EV_TIMEOUT)
        close_peer(p);
}

/* Exact event counts of one side (READ is checked separately: its number depends on chunking). */
#define expect_events(p, open, drain, eof, error, timeout)                                              \
    do {                                                                                                \
        ck_assert_uint_eq((p)->ev[CDN_CONN_EV_OPEN], (open));                                           \
        ck_assert_uint_eq((p)->ev[CDN_CONN_EV_DRAIN], (drain));                                         \
        ck_assert_uint_eq((p)->ev[CDN_CONN_EV_EOF], (eof));                                             \
        ck_assert_msg((p)->ev[CDN_CONN_EV_ERROR] == (error), "%s: %u ERROR (want %u), last %d: %s", #p, \
                      (p)->ev[CDN_CONN_EV_ERROR], (unsigned)(error), (p)->status[CDN_CONN_EV_ERROR],    \
                      (p)->err);                                                                        \
        ck_assert_uint_eq((p)->ev[CDN_CONN_EV_TIMEOUT], (timeout));                                     \
    } while (0)

#define expect_stream(p, n)                                                                              \
    do {                                                                                                 \
        ck_assert_msg((p)->mismatch == SIZE_MAX, "%s: stream differs at offset %zu", #p, (p)->mismatch); \
        ck_assert_uint_eq((p)->got, (n));                                                                \
    } while (0)

/* ---- the world of one test: a listener, server peers, client peers, spare timers ---- */

struct world {
    uv_tcp_t listener;
    uint16_t port;
    SSL_CTX *server_ctx;
    size_t server_in_cap;
    unsigned expect_accepts, accepted;
    void (*on_accept)(struct peer *p);
    struct peer srv[2], cli[2];
    uv_timer_t t[3];
    bool flag[4];
    bool takeover;     /* servers allow the TLS 1.3 takeover at OPEN (lib/trec) */
    unsigned took;     /* server READ events that came through lib/trec */
    uint64_t t0, mark; /* a time or a length, per test */
};

static struct world W;

static void takeover_check(struct peer *p, enum cdn_conn_event ev)
{
    struct cdn_conn *c = p->c;
    bool server = p == &W.srv[0] || p == &W.srv[1];
    if (ev == CDN_CONN_EV_OPEN && server && W.takeover)
        cdn_conn_allow_takeover(c);
    if (ev == CDN_CONN_EV_READ && server && c->trec != NULL) {
        ck_assert_ptr_null(c->ssl);
        ck_assert_str_eq(cdn_conn_tls_version(c), "TLSv1.3");
        ck_assert_str_eq(cdn_conn_sni(c), "localhost");
        W.took++;
    }
}

static void on_connection(uv_stream_t *l, int status)
{
    ck_assert_int_eq(status, 0);
    ck_assert_uint_lt(W.accepted, W.expect_accepts);
    struct peer *p = &W.srv[W.accepted++];
    int err = 0;
    p->c = cdn_conn_accept(l, W.server_ctx, W.server_in_cap, on_event, p, &err);
    ck_assert_msg(p->c != NULL, "accept: %s", uv_strerror(err));
    if (W.on_accept != NULL)
        W.on_accept(p);
    if (W.accepted == W.expect_accepts)
        uv_close((uv_handle_t *)&W.listener, NULL);
}

/* Listens on 127.0.0.1:0; the listener closes itself after `accepts` connections. */
static void listen_local(SSL_CTX *ctx, size_t in_cap, unsigned accepts)
{
    struct sockaddr_in a;
    ck_assert_int_eq(uv_ip4_addr("127.0.0.1", 0, &a), 0);
    ck_assert_int_eq(uv_tcp_init(&loop, &W.listener), 0);
    ck_assert_int_eq(uv_tcp_bind(&W.listener, (const struct sockaddr *)&a, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)&W.listener, 16, on_connection), 0);
    struct sockaddr_in b;
    int len = sizeof(b);
    ck_assert_int_eq(uv_tcp_getsockname(&W.listener, (struct sockaddr *)&b, &len), 0);
    W.port = ntohs(b.sin_port);
    ck_assert_uint_gt(W.port, 0);
    W.server_ctx = ctx;
    W.server_in_cap = in_cap;
    W.expect_accepts = accepts;
}

static void connect_peer(struct peer *p, SSL_CTX *ctx, const char *tls_name, size_t in_cap)
{
    p->c = cdn_conn_connect(&loop, "127.0.0.1", W.port, ctx, tls_name, true, in_cap, on_event, p);
    ck_assert_ptr_nonnull(p->c);
}

static void after(uv_timer_t *t, uint64_t ms, uv_timer_cb cb)
{
    ck_assert_int_eq(uv_timer_init(&loop, t), 0);
    ck_assert_int_eq(uv_timer_start(t, cb, ms, 0), 0);
}

static void timer_done(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
}

static void world_setup(void)
{
    memset(&W, 0, sizeof(W));
    loop_setup();
}

/* ---- PKI (TLS cases only) ---- */

static void make_pki(void)
{
    make_pattern();
    fixture_pki_make(false);
}

static void remove_pki(void)
{
    fixture_pki_remove();
    free_pattern();
}

static SSL_CTX *server_ctx(int level)
{
    char *err = NULL;
    SSL_CTX *ctx =
        cdn_tls_server_ctx_new(fixture_pki_path("regional.crt"), fixture_pki_path("regional.key"), level,
                               level == CDN_CLIENT_AUTH_NONE ? NULL : fixture_pki_path("ca.crt"), &err);
    ck_assert_msg(ctx != NULL, "server ctx: %s", err != NULL ? err : "?");
    return ctx;
}

static SSL_CTX *client_ctx(bool with_cert)
{
    struct cdn_conf_upstream u = {.ca_file = fixture_pki_path("ca.crt"), .verify = true};
    if (with_cert) {
        u.client_certificate = fixture_pki_path("edge-client.crt");
        u.client_key = fixture_pki_path("edge-client.key");
    }
    char *err = NULL;
    SSL_CTX *ctx = cdn_tls_client_ctx_new(&u, &err);
    ck_assert_msg(ctx != NULL, "client ctx: %s", err != NULL ? err : "?");
    return ctx;
}

/* ==== plain transfer ==== */

static void plain_client_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    ck_assert_int_eq(ev, CDN_CONN_EV_OPEN);
    ck_assert_int_eq(status, 0);
    ck_assert_ptr_null(cdn_conn_tls_version(p->c));
    cdn_conn_write(p->c, pattern, 1024 * 1024);
    ck_assert_uint_eq(p->c->bytes_out, 1024 * 1024);
    end_peer(p); /* flush, FIN */
}

static void plain_server_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev == CDN_CONN_EV_EOF) {
        ck_assert_uint_eq(p->c->bytes_in, 1024 * 1024);
        close_peer(p);
    }
}

START_TEST(plain_transfer_then_eof)
{
    listen_local(NULL, 64 * 1024, 1);
    peer_init(&W.srv[0], true, plain_server_hook);
    peer_init(&W.cli[0], true, plain_client_hook);
    connect_peer(&W.cli[0], NULL, NULL, 64 * 1024);
    run_loop();
    ck_assert_uint_eq(W.accepted, 1);
    expect_events(&W.cli[0], 1, 0, 0, 0, 0);
    ck_assert_uint_eq(W.cli[0].ev[CDN_CONN_EV_READ], 0);
    expect_events(&W.srv[0], 0, 0, 1, 0, 0); /* plain servers get no OPEN */
    ck_assert_int_eq(W.srv[0].status[CDN_CONN_EV_EOF], 0);
    ck_assert_uint_ge(W.srv[0].ev[CDN_CONN_EV_READ], 1);
    expect_stream(&W.srv[0], 1024 * 1024);
    ck_assert_uint_eq(W.srv[0].got_at_eof, 1024 * 1024);
}
END_TEST

/* ==== TLS with a client certificate, data both ways ==== */

#define MTLS_REQ  (200u * 1024u)
#define MTLS_RESP (300u * 1024u)

static void mtls_client_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev == CDN_CONN_EV_OPEN) {
        ck_assert_ptr_nonnull(cdn_conn_tls_version(p->c));
        cdn_conn_write(p->c, pattern, MTLS_REQ);
    } else if (ev == CDN_CONN_EV_READ) {
        ck_assert_uint_le(p->got, MTLS_RESP);
        if (p->got == MTLS_RESP)
            end_peer(p); /* close_notify + FIN */
    } else {
        close_peer(p);
    }
}

static void mtls_server_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev == CDN_CONN_EV_OPEN) {
        const char *v = cdn_conn_tls_version(p->c);
        ck_assert_ptr_nonnull(v);
        ck_assert_msg(strncmp(v, "TLSv1.", 6) == 0, "version %s", v);
        ck_assert_ptr_nonnull(cdn_conn_sni(p->c));
        ck_assert_str_eq(cdn_conn_sni(p->c), "localhost");
    } else if (ev == CDN_CONN_EV_READ) {
        ck_assert_uint_le(p->got, MTLS_REQ);
        if (p->got == MTLS_REQ)
            cdn_conn_write(p->c, pattern, MTLS_RESP);
    } else {
        close_peer(p);
    }
}

static void run_backpressure(SSL_CTX *s, SSL_CTX *c);
static void run_all_before_eof(SSL_CTX *s, SSL_CTX *c, bool paused);
static void run_cork(SSL_CTX *s, SSL_CTX *c);
static void run_paused_in_open(SSL_CTX *s, SSL_CTX *c);

static void run_all_before_eof_paused(SSL_CTX *s, SSL_CTX *c)
{
    run_all_before_eof(s, c, true);
}

/* Runs a TLS case with the server's connections allowed to move to lib/trec at OPEN (no client
 * certificate); with `reads`, the server must have read through lib/trec. */
static void with_takeover(void (*run)(SSL_CTX *, SSL_CTX *), bool reads)
{
    SSL_CTX *s = server_ctx(CDN_CLIENT_AUTH_NONE), *c = client_ctx(false);
    W.takeover = true;
    run(s, c);
    if (reads)
        ck_assert_uint_gt(W.took, 0);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}

static void run_mutual(SSL_CTX *s, SSL_CTX *c)
{
    listen_local(s, 64 * 1024, 1);
    peer_init(&W.srv[0], true, mtls_server_hook);
    peer_init(&W.cli[0], true, mtls_client_hook);
    connect_peer(&W.cli[0], c, "localhost", 64 * 1024);
    run_loop();
    expect_events(&W.cli[0], 1, 0, 0, 0, 0);
    expect_stream(&W.cli[0], MTLS_RESP);
    expect_events(&W.srv[0], 1, 0, 1, 0, 0);
    ck_assert_int_eq(W.srv[0].status[CDN_CONN_EV_EOF], 0); /* close_notify arrived */
    expect_stream(&W.srv[0], MTLS_REQ);
}

/* The server's TLS moves to lib/trec after the handshake: the same streams, both ways, with its
 * close_notify and the peer's, against OpenSSL on the other side. */
START_TEST(tls_takeover_data_both_ways)
{
    with_takeover(run_mutual, true);
}
END_TEST

START_TEST(tls_takeover_backpressure)
{
    with_takeover(run_backpressure, true);
}
END_TEST

START_TEST(tls_takeover_all_bytes_before_eof)
{
    /* the server writes 1 MiB and ends at OPEN: the takeover happens in that write */
    with_takeover(run_all_before_eof_paused, false);
    ck_assert_ptr_null(W.srv[0].c);
}
END_TEST

START_TEST(tls_mutual_data_both_ways)
{
    SSL_CTX *s = server_ctx(CDN_CLIENT_AUTH_REQUIRE), *c = client_ctx(true);
    run_mutual(s, c);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}
END_TEST

/* ==== TLS failures ==== */

static void refuse_server_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    ck_assert_int_eq(ev, CDN_CONN_EV_ERROR);
    end_peer(p); /* lets the alert out before the FIN */
}

static void refuse_client_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev != CDN_CONN_EV_OPEN) /* TLS 1.3: the client finishes before the server judged it */
        close_peer(p);
}

START_TEST(tls_require_refuses_client_without_cert)
{
    SSL_CTX *s = server_ctx(CDN_CLIENT_AUTH_REQUIRE), *c = client_ctx(false);
    listen_local(s, 64 * 1024, 1);
    peer_init(&W.srv[0], true, refuse_server_hook);
    peer_init(&W.cli[0], true, refuse_client_hook);
    connect_peer(&W.cli[0], c, "localhost", 64 * 1024);
    run_loop();
    expect_events(&W.srv[0], 0, 0, 0, 1, 0);
    ck_assert_int_eq(W.srv[0].status[CDN_CONN_EV_ERROR], CDN_ETLS);
    ck_assert_msg(strstr(W.srv[0].err, "certificate") != NULL, "server err: %s", W.srv[0].err);
    ck_assert_uint_eq(W.srv[0].ev[CDN_CONN_EV_READ], 0);
    struct peer *cl = &W.cli[0];
    ck_assert_uint_eq(cl->ev[CDN_CONN_EV_ERROR] + cl->ev[CDN_CONN_EV_EOF], 1);
    ck_assert_uint_le(cl->ev[CDN_CONN_EV_OPEN], 1);
    ck_assert_uint_eq(cl->ev[CDN_CONN_EV_READ], 0);
    if (cl->ev[CDN_CONN_EV_ERROR] == 1)
        ck_assert_int_lt(cl->status[CDN_CONN_EV_ERROR], 0);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}
END_TEST

START_TEST(tls_client_rejects_wrong_name)
{
    SSL_CTX *s = server_ctx(CDN_CLIENT_AUTH_NONE), *c = client_ctx(false);
    listen_local(s, 64 * 1024, 1);
    peer_init(&W.srv[0], true, NULL);
    peer_init(&W.cli[0], true, NULL);
    connect_peer(&W.cli[0], c, "wrong.example", 64 * 1024);
    run_loop();
    expect_events(&W.cli[0], 0, 0, 0, 1, 0);
    ck_assert_int_eq(W.cli[0].status[CDN_CONN_EV_ERROR], CDN_EVERIFY);
    ck_assert_msg(strstr(W.cli[0].err, "certificate verify failed") != NULL, "client err: %s", W.cli[0].err);
    /* the server saw the alert (CDN_ETLS) or the close during its handshake (CDN_ECLOSED) */
    expect_events(&W.srv[0], 0, 0, 0, 1, 0);
    ck_assert_msg(W.srv[0].status[CDN_CONN_EV_ERROR] == CDN_ETLS ||
                      W.srv[0].status[CDN_CONN_EV_ERROR] == CDN_ECLOSED,
                  "server status %d", W.srv[0].status[CDN_CONN_EV_ERROR]);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}
END_TEST

static void bad_name_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    ck_assert_msg(W.flag[0], "ERROR delivered inside cdn_conn_connect");
    close_peer(p);
}

START_TEST(tls_bad_name_reported_from_callback)
{
    SSL_CTX *c = client_ctx(false);
    W.port = 9; /* never connected: the name is refused first */
    peer_init(&W.cli[0], true, bad_name_hook);
    connect_peer(&W.cli[0], c, "", 64 * 1024);
    W.flag[0] = true;
    run_loop();
    expect_events(&W.cli[0], 0, 0, 0, 1, 0);
    ck_assert_int_eq(W.cli[0].status[CDN_CONN_EV_ERROR], CDN_ETLS);
    SSL_CTX_free(c);
}
END_TEST

/* ==== backpressure: a paused reader makes the writer congested; resuming drains it ==== */

#define BP_LEN (4u * 1024u * 1024u)

static void bp_resume(uv_timer_t *t)
{
    ck_assert_uint_eq(W.cli[0].got, 0); /* nothing was read while paused */
    ck_assert_ptr_nonnull(W.srv[0].c);
    ck_assert(cdn_conn_pending(W.srv[0].c) > CDN_CONN_HIGH_WATER); /* still stuck */
    W.flag[0] = true;
    cdn_conn_read_start(W.cli[0].c);
    timer_done(t);
}

static void bp_accept(struct peer *p)
{
    /* a small send buffer: the kernel cannot swallow the 4 MiB while the reader is paused */
    int v = 64 * 1024;
    ck_assert_int_eq(uv_send_buffer_size((uv_handle_t *)&p->c->tcp, &v), 0);
}

static void bp_server_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev == CDN_CONN_EV_OPEN)
        return;
    if (ev == CDN_CONN_EV_READ) {
        ck_assert_uint_le(p->got, 2);
        if (p->got < 2)
            return;
        cdn_conn_write(p->c, pattern, BP_LEN);
        ck_assert_uint_ge(cdn_conn_pending(p->c), BP_LEN / 2); /* the kernel took a little at once */
        ck_assert(cdn_conn_congested(p->c));
        after(&W.t[0], 30, bp_resume);
    } else if (ev == CDN_CONN_EV_DRAIN) {
        ck_assert_msg(W.flag[0], "DRAIN before the reader resumed");
        ck_assert_uint_lt(cdn_conn_pending(p->c), CDN_CONN_LOW_WATER);
        ck_assert(!cdn_conn_congested(p->c));
        end_peer(p);
    } else {
        close_peer(p);
    }
}

static void bp_client_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev == CDN_CONN_EV_OPEN) {
        cdn_conn_read_stop(p->c);
        int v = 64 * 1024;
        ck_assert_int_eq(uv_recv_buffer_size((uv_handle_t *)&p->c->tcp, &v), 0);
        cdn_conn_write(p->c, pattern, 2);
    } else if (ev == CDN_CONN_EV_READ) {
        ck_assert(W.flag[0]);
    } else {
        close_peer(p);
    }
}

static void run_backpressure(SSL_CTX *s, SSL_CTX *c)
{
    listen_local(s, 64 * 1024, 1);
    W.on_accept = bp_accept;
    peer_init(&W.srv[0], true, bp_server_hook);
    peer_init(&W.cli[0], true, bp_client_hook);
    connect_peer(&W.cli[0], c, "localhost", 64 * 1024);
    run_loop();
    expect_events(&W.srv[0], s != NULL ? 1 : 0, 1, 0, 0, 0);
    expect_stream(&W.srv[0], 2);
    expect_events(&W.cli[0], 1, 0, 1, 0, 0);
    ck_assert_int_eq(W.cli[0].status[CDN_CONN_EV_EOF], 0);
    expect_stream(&W.cli[0], BP_LEN);
    ck_assert_uint_eq(W.cli[0].got_at_eof, BP_LEN);
}

START_TEST(plain_backpressure)
{
    run_backpressure(NULL, NULL);
}
END_TEST

START_TEST(tls_backpressure)
{
    SSL_CTX *s = server_ctx(CDN_CLIENT_AUTH_NONE), *c = client_ctx(false);
    run_backpressure(s, c);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}
END_TEST

/* ==== every byte before EOF with a small in_cap (regression: EOF while ciphertext was buffered) ==== */

#define BIG_LEN (1024u * 1024u)

static void big_resume(uv_timer_t *t)
{
    cdn_conn_read_start(W.cli[0].c);
    timer_done(t);
}

static void big_server_send(struct peer *p)
{
    cdn_conn_write(p->c, pattern, BIG_LEN);
    end_peer(p); /* close_notify (TLS) + FIN right behind the data */
}

static void big_accept(struct peer *p)
{
    if (W.server_ctx == NULL)
        big_server_send(p);
}

static void big_server_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev == CDN_CONN_EV_OPEN)
        big_server_send(p);
    else
        close_peer(p);
}

static void big_client_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev == CDN_CONN_EV_OPEN) {
        if (W.flag[1]) { /* paused: the data, close_notify and FIN pile up in the kernel */
            cdn_conn_read_stop(p->c);
            after(&W.t[0], 30, big_resume);
        }
    } else if (ev != CDN_CONN_EV_READ) {
        close_peer(p);
    }
}

static void run_all_before_eof(SSL_CTX *s, SSL_CTX *c, bool paused)
{
    listen_local(s, 64 * 1024, 1);
    W.on_accept = big_accept;
    W.flag[1] = paused;
    peer_init(&W.srv[0], true, big_server_hook);
    peer_init(&W.cli[0], true, big_client_hook);
    connect_peer(&W.cli[0], c, "localhost", 16 * 1024);
    run_loop();
    ck_assert_msg(W.cli[0].got_at_eof == BIG_LEN, "EOF after %zu of %u bytes", W.cli[0].got_at_eof, BIG_LEN);
    expect_events(&W.cli[0], 1, 0, 1, 0, 0);
    ck_assert_int_eq(W.cli[0].status[CDN_CONN_EV_EOF], 0);
    expect_stream(&W.cli[0], BIG_LEN);
    ck_assert_uint_ge(W.cli[0].ev[CDN_CONN_EV_READ], BIG_LEN / (16 * 1024));
    expect_events(&W.srv[0], s != NULL ? 1 : 0, 0, 0, 0, 0);
}

START_TEST(plain_small_in_cap_all_bytes_before_eof)
{
    run_all_before_eof(NULL, NULL, false);
}
END_TEST

START_TEST(tls_small_in_cap_all_bytes_before_eof)
{
    SSL_CTX *s = server_ctx(CDN_CLIENT_AUTH_NONE), *c = client_ctx(false);
    run_all_before_eof(s, c, false);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}
END_TEST

START_TEST(tls_small_in_cap_all_bytes_before_eof_paused)
{
    SSL_CTX *s = server_ctx(CDN_CLIENT_AUTH_NONE), *c = client_ctx(false);
    run_all_before_eof(s, c, true);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}
END_TEST

/* ==== read_start after read_stop delivers buffered data from a callback ==== */

static size_t rs_total;

static void rs_restart(uv_timer_t *t)
{
    struct peer *p = &W.srv[0];
    W.flag[0] = true; /* inside read_start */
    cdn_conn_read_start(p->c);
    W.flag[0] = false;
    W.flag[1] = true; /* read_start returned */
    timer_done(t);
}

static void rs_server_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev == CDN_CONN_EV_OPEN)
        return;
    if (ev != CDN_CONN_EV_READ) {
        close_peer(p);
        return;
    }
    ck_assert_msg(!W.flag[0], "READ delivered re-entrantly inside cdn_conn_read_start");
    if (p->ev[CDN_CONN_EV_READ] == 1) {
        /* keep the data, pause, resume later from a timer */
        W.mark = p->c->in.len;
        ck_assert_mem_eq(cdn_buf_data(&p->c->in), pattern, p->c->in.len);
        cdn_conn_read_stop(p->c);
        after(&W.t[0], 10, rs_restart);
        return;
    }
    if (p->ev[CDN_CONN_EV_READ] == 2) {
        ck_assert_msg(W.flag[1], "READ before read_start returned");
        ck_assert_uint_ge(p->c->in.len, W.mark); /* the kept bytes are still there, first */
    }
    take(p, p->c->in.len);
    if (p->got == rs_total)
        end_peer(p);
}

static void rs_client_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev == CDN_CONN_EV_OPEN)
        cdn_conn_write(p->c, pattern, rs_total);
    else
        close_peer(p);
}

static void run_read_restart(SSL_CTX *s, SSL_CTX *c, size_t total, size_t server_in_cap)
{
    rs_total = total;
    listen_local(s, server_in_cap, 1);
    peer_init(&W.srv[0], false, rs_server_hook);
    peer_init(&W.cli[0], true, rs_client_hook);
    connect_peer(&W.cli[0], c, "localhost", 64 * 1024);
    run_loop();
    ck_assert(W.flag[1]);
    ck_assert_uint_ge(W.srv[0].ev[CDN_CONN_EV_READ], 2);
    expect_stream(&W.srv[0], total);
    expect_events(&W.srv[0], s != NULL ? 1 : 0, 0, 0, 0, 0);
    expect_events(&W.cli[0], 1, 0, 1, 0, 0);
    ck_assert_int_eq(W.cli[0].status[CDN_CONN_EV_EOF], 0);
}

START_TEST(plain_read_start_redelivers_from_callback)
{
    run_read_restart(NULL, NULL, 10, 64 * 1024);
    ck_assert_uint_eq(W.srv[0].ev[CDN_CONN_EV_READ], 2); /* the kept 10 bytes, once more */
}
END_TEST

START_TEST(tls_read_start_redelivers_from_callback)
{
    /* 64 KiB through a 16 KiB in_cap: most of it waits inside the TLS layer while paused */
    SSL_CTX *s = server_ctx(CDN_CLIENT_AUTH_NONE), *c = client_ctx(false);
    run_read_restart(s, c, 64 * 1024, 16 * 1024);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}
END_TEST

/* ==== the owner's timer ==== */

static void to_check_still_once(uv_timer_t *t)
{
    ck_assert_uint_eq(W.cli[0].ev[CDN_CONN_EV_TIMEOUT], 1); /* disarmed: nothing more */
    close_peer(&W.cli[0]);
    timer_done(t);
}

static void to_disarm(uv_timer_t *t)
{
    cdn_conn_set_timeout(W.cli[0].c, 0); /* 20 ms into a 50 ms timeout */
    after(&W.t[2], 100, to_check_still_once);
    timer_done(t);
}

static void to_one_shot(uv_timer_t *t)
{
    ck_assert_uint_eq(W.cli[0].ev[CDN_CONN_EV_TIMEOUT], 1); /* it did not repeat */
    cdn_conn_set_timeout(W.cli[0].c, 50);
    uv_timer_stop(t);
    uv_timer_start(t, to_disarm, 20, 0);
}

static void to_rearm(uv_timer_t *t)
{
    ck_assert_uint_eq(W.cli[0].ev[CDN_CONN_EV_TIMEOUT], 0);
    cdn_conn_set_timeout(W.cli[0].c, 50); /* 30 ms in: the deadline moves to >= 80 ms */
    timer_done(t);
}

static void to_client_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev == CDN_CONN_EV_OPEN) {
        W.t0 = uv_now(&loop);
        cdn_conn_set_timeout(p->c, 50);
        after(&W.t[0], 30, to_rearm);
    } else if (ev == CDN_CONN_EV_TIMEOUT) {
        ck_assert_int_eq(status, CDN_ETIMEOUT);
        W.mark = uv_now(&loop) - W.t0;
        after(&W.t[1], 100, to_one_shot);
    } else {
        close_peer(p);
    }
}

START_TEST(timeout_fires_once_rearm_resets_zero_disarms)
{
    listen_local(NULL, 64 * 1024, 1);
    peer_init(&W.srv[0], true, NULL);
    peer_init(&W.cli[0], true, to_client_hook);
    connect_peer(&W.cli[0], NULL, NULL, 64 * 1024);
    run_loop();
    expect_events(&W.cli[0], 1, 0, 0, 0, 1);
    ck_assert_msg(W.mark >= 80, "TIMEOUT after %llu ms; the re-arm at 30 ms should have moved it",
                  (unsigned long long)W.mark);
    expect_events(&W.srv[0], 0, 0, 1, 0, 0);
}
END_TEST

/* The timer is lazy (it moves only for an earlier deadline): a shorter timeout set later must still
 * fire on time, and a cleared one never. */
static void to_shorten(uv_timer_t *t)
{
    cdn_conn_set_timeout(W.cli[0].c, 0); /* cleared ... */
    cdn_conn_set_timeout(W.cli[0].c, 1000);
    cdn_conn_set_timeout(W.cli[0].c, 30); /* ... then 20 + 30 ms: well before the first 400 */
    timer_done(t);
}

static void to_short_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev == CDN_CONN_EV_OPEN) {
        W.t0 = uv_now(&loop);
        cdn_conn_set_timeout(p->c, 400);
        after(&W.t[0], 20, to_shorten);
    } else if (ev == CDN_CONN_EV_TIMEOUT) {
        W.mark = uv_now(&loop) - W.t0;
        close_peer(p);
    } else {
        close_peer(p);
    }
}

START_TEST(timeout_shortened_fires_early)
{
    listen_local(NULL, 64 * 1024, 1);
    peer_init(&W.srv[0], true, NULL);
    peer_init(&W.cli[0], true, to_short_hook);
    connect_peer(&W.cli[0], NULL, NULL, 64 * 1024);
    run_loop();
    ck_assert_uint_eq(W.cli[0].ev[CDN_CONN_EV_TIMEOUT], 1);
    ck_assert_msg(W.mark >= 45 && W.mark < 300, "TIMEOUT after %llu ms, want about 50",
                  (unsigned long long)W.mark);
}
END_TEST

/* ==== connect failures ==== */

START_TEST(connect_refused)
{
    /* a port that was just free: bind, learn it, close */
    listen_local(NULL, 64 * 1024, 1);
    uv_close((uv_handle_t *)&W.listener, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    peer_init(&W.cli[0], true, NULL);
    connect_peer(&W.cli[0], NULL, NULL, 64 * 1024);
    run_loop();
    expect_events(&W.cli[0], 0, 0, 0, 1, 0);
    ck_assert_int_eq(W.cli[0].status[CDN_CONN_EV_ERROR], UV_ECONNREFUSED);
    ck_assert_msg(strstr(W.cli[0].err, "connect to 127.0.0.1:") != NULL, "err: %s", W.cli[0].err);
}
END_TEST

START_TEST(connect_unresolvable)
{
    peer_init(&W.cli[0], true, NULL);
    W.cli[0].c =
        cdn_conn_connect(&loop, "nonexistent.invalid", 80, NULL, NULL, true, 4096, on_event, &W.cli[0]);
    ck_assert_ptr_nonnull(W.cli[0].c);
    run_loop();
    expect_events(&W.cli[0], 0, 0, 0, 1, 0);
    ck_assert_int_lt(W.cli[0].status[CDN_CONN_EV_ERROR], 0);
    ck_assert_msg(strstr(W.cli[0].err, "nonexistent.invalid") != NULL, "err: %s", W.cli[0].err);
}
END_TEST

START_TEST(close_while_resolving)
{
    peer_init(&W.cli[0], true, NULL);
    W.cli[0].c =
        cdn_conn_connect(&loop, "nonexistent.invalid", 80, NULL, NULL, true, 4096, on_event, &W.cli[0]);
    close_peer(&W.cli[0]);
    run_loop();
    expect_events(&W.cli[0], 0, 0, 0, 0, 0);
}
END_TEST

/* ==== cork ==== */

static void cork_client_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev != CDN_CONN_EV_OPEN) {
        close_peer(p);
        return;
    }
    /* small pieces around a large one; the order must survive the gathering */
    size_t off = 0;
    cdn_conn_cork(p->c);
    for (int i = 0; i < 50; i++, off += 7)
        cdn_conn_write(p->c, pattern + off, 7);
    cdn_conn_write(p->c, pattern + off, 40000);
    off += 40000;
    for (int i = 0; i < 50; i++, off += 13)
        cdn_conn_write(p->c, pattern + off, 13);
    ck_assert_uint_ge(cdn_conn_pending(p->c), off); /* all of it still queued */
    if (p->c->ssl == NULL)
        ck_assert(!p->c->writing); /* nothing left while corked (TLS may still send its Finished) */
    cdn_conn_uncork(p->c);
    ck_assert(p->c->writing || cdn_conn_pending(p->c) == 0); /* in flight, or written at once */
    W.mark = off;
    end_peer(p);
}

static void cork_server_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev != CDN_CONN_EV_OPEN && ev != CDN_CONN_EV_READ)
        close_peer(p);
}

static void run_cork(SSL_CTX *s, SSL_CTX *c)
{
    listen_local(s, 64 * 1024, 1);
    peer_init(&W.srv[0], true, cork_server_hook);
    peer_init(&W.cli[0], true, cork_client_hook);
    connect_peer(&W.cli[0], c, "localhost", 64 * 1024);
    run_loop();
    expect_events(&W.cli[0], 1, 0, 0, 0, 0);
    expect_events(&W.srv[0], s != NULL ? 1 : 0, 0, 1, 0, 0);
    ck_assert_int_eq(W.srv[0].status[CDN_CONN_EV_EOF], 0);
    expect_stream(&W.srv[0], W.mark);
}

START_TEST(plain_cork_keeps_order)
{
    run_cork(NULL, NULL);
}
END_TEST

START_TEST(tls_cork_keeps_order)
{
    SSL_CTX *s = server_ctx(CDN_CLIENT_AUTH_NONE), *c = client_ctx(false);
    run_cork(s, c);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}
END_TEST

/* ==== a TLS server that pauses in OPEN still gets what came with (or after) the handshake ==== */

#define EARLY_LEN (32u * 1024u)

static void pause_resume(uv_timer_t *t)
{
    ck_assert_uint_eq(W.srv[0].ev[CDN_CONN_EV_READ], 0); /* paused means no READ */
    W.flag[0] = true;
    cdn_conn_read_start(W.srv[0].c);
    timer_done(t);
}

static void pause_server_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev == CDN_CONN_EV_OPEN) {
        cdn_conn_read_stop(p->c);
        after(&W.t[0], 20, pause_resume);
    } else if (ev == CDN_CONN_EV_READ) {
        ck_assert(W.flag[0]);
        if (p->got == EARLY_LEN)
            end_peer(p);
    } else {
        close_peer(p);
    }
}

static void pause_client_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev == CDN_CONN_EV_OPEN)
        cdn_conn_write(p->c, pattern, EARLY_LEN); /* right behind the client's Finished */
    else
        close_peer(p);
}

/* The client's data came right behind its Finished while the server was paused: OpenSSL left those
 * records unread, and the takeover must carry them over. */
START_TEST(tls_takeover_paused_in_open_keeps_data)
{
    with_takeover(run_paused_in_open, true);
}
END_TEST

START_TEST(tls_takeover_cork_keeps_order)
{
    with_takeover(run_cork, false);
}
END_TEST

static void run_paused_in_open(SSL_CTX *s, SSL_CTX *c)
{
    listen_local(s, 64 * 1024, 1);
    peer_init(&W.srv[0], true, pause_server_hook);
    peer_init(&W.cli[0], true, pause_client_hook);
    connect_peer(&W.cli[0], c, "localhost", 64 * 1024);
    run_loop();
    expect_events(&W.srv[0], 1, 0, 0, 0, 0);
    expect_stream(&W.srv[0], EARLY_LEN);
    expect_events(&W.cli[0], 1, 0, 1, 0, 0);
    ck_assert_int_eq(W.cli[0].status[CDN_CONN_EV_EOF], 0);
}

START_TEST(tls_server_paused_in_open_keeps_data)
{
    SSL_CTX *s = server_ctx(CDN_CLIENT_AUTH_NONE), *c = client_ctx(false);
    run_paused_in_open(s, c);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}
END_TEST

/* ==== bytes written before OPEN ====
 * A client conn accepts writes while it connects: plain bytes are sent once connected, TLS bytes
 * are kept as plaintext and encrypted once the handshake is done (this was a bug: they stayed
 * queued, or SSL_write failed with "uninitialized" and they were lost). */

#define EARLY_MSG 10u

static void early_deadline(uv_timer_t *t)
{
    struct peer *cl = &W.cli[0];
    ck_assert_msg(W.srv[0].got == EARLY_MSG,
                  "bytes written before OPEN never arrived: server got %zu of %u; client pending %zu, "
                  "bytes_out %llu, err \"%s\"",
                  W.srv[0].got, EARLY_MSG, cdn_conn_pending(cl->c), (unsigned long long)cl->c->bytes_out,
                  cl->c->err);
    timer_done(t);
}

static void early_server_hook(struct peer *p, enum cdn_conn_event ev, int status)
{
    if (ev == CDN_CONN_EV_READ && p->got == EARLY_MSG)
        end_peer(p);
    else if (ev != CDN_CONN_EV_OPEN && ev != CDN_CONN_EV_READ)
        close_peer(p);
}

static void run_write_before_open(SSL_CTX *s, SSL_CTX *c)
{
    listen_local(s, 64 * 1024, 1);
    peer_init(&W.srv[0], true, early_server_hook);
    peer_init(&W.cli[0], true, NULL);
    connect_peer(&W.cli[0], c, "localhost", 64 * 1024);
    cdn_conn_write(W.cli[0].c, pattern, EARLY_MSG);
    after(&W.t[0], 300, early_deadline);
    run_loop();
    expect_stream(&W.srv[0], EARLY_MSG);
    expect_events(&W.cli[0], 1, 0, 1, 0, 0);
}

START_TEST(plain_write_before_open_is_sent)
{
    run_write_before_open(NULL, NULL);
}
END_TEST

START_TEST(tls_write_before_open_is_sent)
{
    SSL_CTX *s = server_ctx(CDN_CLIENT_AUTH_NONE), *c = client_ctx(false);
    run_write_before_open(s, c);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}
END_TEST

Suite *suite_conn(void)
{
    Suite *s = suite_create("conn");

    TCase *plain = tcase_create("plain");
    tcase_set_timeout(plain, 10);
    tcase_add_unchecked_fixture(plain, make_pattern, free_pattern);
    tcase_add_checked_fixture(plain, world_setup, loop_teardown);
    tcase_add_test(plain, plain_transfer_then_eof);
    tcase_add_test(plain, plain_backpressure);
    tcase_add_test(plain, plain_small_in_cap_all_bytes_before_eof);
    tcase_add_test(plain, plain_read_start_redelivers_from_callback);
    tcase_add_test(plain, plain_cork_keeps_order);
    tcase_add_test(plain, timeout_fires_once_rearm_resets_zero_disarms);
    tcase_add_test(plain, timeout_shortened_fires_early);
    tcase_add_test(plain, connect_refused);
    tcase_add_test(plain, connect_unresolvable);
    tcase_add_test(plain, close_while_resolving);
    suite_add_tcase(s, plain);

    TCase *tls = tcase_create("tls");
    tcase_set_timeout(tls, 10);
    tcase_add_unchecked_fixture(tls, make_pki, remove_pki);
    tcase_add_checked_fixture(tls, world_setup, loop_teardown);
    tcase_add_test(tls, tls_mutual_data_both_ways);
    tcase_add_test(tls, tls_require_refuses_client_without_cert);
    tcase_add_test(tls, tls_client_rejects_wrong_name);
    tcase_add_test(tls, tls_bad_name_reported_from_callback);
    tcase_add_test(tls, tls_backpressure);
    tcase_add_test(tls, tls_small_in_cap_all_bytes_before_eof);
    tcase_add_test(tls, tls_small_in_cap_all_bytes_before_eof_paused);
    tcase_add_test(tls, tls_read_start_redelivers_from_callback);
    tcase_add_test(tls, tls_cork_keeps_order);
    tcase_add_test(tls, tls_server_paused_in_open_keeps_data);
    tcase_add_test(tls, tls_takeover_data_both_ways);
    tcase_add_test(tls, tls_takeover_backpressure);
    tcase_add_test(tls, tls_takeover_all_bytes_before_eof);
    tcase_add_test(tls, tls_takeover_paused_in_open_keeps_data);
    tcase_add_test(tls, tls_takeover_cork_keeps_order);
    suite_add_tcase(s, tls);

    TCase *bug = tcase_create("write_before_open");
    tcase_set_timeout(bug, 10);
    tcase_add_unchecked_fixture(bug, make_pki, remove_pki);
    tcase_add_checked_fixture(bug, world_setup, loop_teardown);
    tcase_add_test(bug, plain_write_before_open_is_sent);
    tcase_add_test(bug, tls_write_before_open_is_sent);
    suite_add_tcase(s, bug);
    return s;
}
