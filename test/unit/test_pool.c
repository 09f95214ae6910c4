/*
 * pool: idle keep-alive conns parked under keys, driven with real connections over 127.0.0.1 inside
 * a loop made per test. The same strict fixture as test_conn.c: the teardown fails the test for any
 * handle still open before it closes the rest and asserts uv_loop_close() == 0. A conn the pool
 * closes must therefore really be gone when the loop ends (and ASan checks it was freed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "lib/conn.h"
#include "lib/pool.h"
#include "lib/tls.h"
#include "lib/util.h"
#include "test/unit/fixture.h"
#include "test/unit/suites.h"

#define NEV         6 /* CDN_CONN_EV_OPEN .. CDN_CONN_EV_TIMEOUT */
#define WATCHDOG_MS 4000u
#define LONG_IDLE   10000u /* an idle timeout no test waits for */

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

static void on_watchdog(uv_timer_t *t)
{
    ck_abort_msg("watchdog: the loop still runs after %u ms", WATCHDOG_MS);
}

static void run_loop(void)
{
    ck_assert_int_eq(uv_timer_init(&loop, &watchdog), 0);
    ck_assert_int_eq(uv_timer_start(&watchdog, on_watchdog, WATCHDOG_MS, 0), 0);
    uv_unref((uv_handle_t *)&watchdog);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&watchdog, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* ---- peers ---- */

struct peer {
    struct cdn_conn *c; /* clients: kept while pooled, for identity checks only */
    unsigned ev[NEV];
    int status[NEV];
    uint64_t t_eof;
};

struct world {
    uv_tcp_t listener;
    uint16_t port;
    SSL_CTX *server_ctx;
    unsigned n, accepted, opened, server_eofs;
    struct peer *srv, *cli;
    struct cdn_pool *pool;
    void (*ready)(void);                /* every client OPEN and every accept seen */
    void (*server_eof)(struct peer *p); /* optional, after the server side closed */
    uv_timer_t t[3];
    uint64_t t0;
    unsigned polls;
};

static struct world W;

static void close_peer(struct peer *p)
{
    cdn_conn_close(p->c);
    p->c = NULL;
}

static void maybe_ready(void)
{
    if (W.opened == W.n && W.accepted == W.n && W.ready != NULL) {
        void (*f)(void) = W.ready;
        W.ready = NULL;
        f();
    }
}

static void on_server_event(struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    struct peer *p = c->data;
    ck_assert(p->c == c);
    p->ev[ev]++;
    p->status[ev] = status;
    if (ev == CDN_CONN_EV_OPEN)
        return;
    ck_assert_msg(ev == CDN_CONN_EV_EOF, "server event %d status %d: %s", (int)ev, status, c->err);
    p->t_eof = uv_now(&loop);
    W.server_eofs++;
    close_peer(p);
    if (W.server_eof != NULL)
        W.server_eof(p);
}

/* Clients before they are pooled, and after the test took them back. */
static void on_client_event(struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    struct peer *p = c->data;
    ck_assert(p->c == c);
    p->ev[ev]++;
    p->status[ev] = status;
    ck_assert_msg(ev == CDN_CONN_EV_OPEN, "client event %d status %d: %s", (int)ev, status, c->err);
    W.opened++;
    maybe_ready();
}

static void on_connection(uv_stream_t *l, int status)
{
    ck_assert_int_eq(status, 0);
    ck_assert_uint_lt(W.accepted, W.n);
    struct peer *p = &W.srv[W.accepted++];
    int err = 0;
    p->c = cdn_conn_accept(l, W.server_ctx, 64 * 1024, on_server_event, p, &err);
    ck_assert_msg(p->c != NULL, "accept: %s", uv_strerror(err));
    if (W.accepted == W.n)
        uv_close((uv_handle_t *)&W.listener, NULL);
    maybe_ready();
}

/* n connections to a listener on 127.0.0.1:0; ready() runs once all are up on both sides. */
static void start(unsigned n, SSL_CTX *sctx, SSL_CTX *cctx, void (*ready)(void))
{
    W.n = n;
    W.srv = calloc(n, sizeof(*W.srv));
    W.cli = calloc(n, sizeof(*W.cli));
    ck_assert(W.srv != NULL && W.cli != NULL);
    W.server_ctx = sctx;
    W.ready = ready;
    W.pool = cdn_pool_new();
    struct sockaddr_in a;
    ck_assert_int_eq(uv_ip4_addr("127.0.0.1", 0, &a), 0);
    ck_assert_int_eq(uv_tcp_init(&loop, &W.listener), 0);
    ck_assert_int_eq(uv_tcp_bind(&W.listener, (const struct sockaddr *)&a, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)&W.listener, 511, on_connection), 0);
    struct sockaddr_in b;
    int len = sizeof(b);
    ck_assert_int_eq(uv_tcp_getsockname(&W.listener, (struct sockaddr *)&b, &len), 0);
    W.port = ntohs(b.sin_port);
    for (unsigned i = 0; i < n; i++) {
        W.cli[i].c = cdn_conn_connect(&loop, "127.0.0.1", W.port, cctx, "localhost", true, 64 * 1024,
                                      on_client_event, &W.cli[i]);
        ck_assert_ptr_nonnull(W.cli[i].c);
    }
}

/* The test owns c again: events come to on_client_event (which accepts none but OPEN). */
static void take_back(struct peer *p, struct cdn_conn *c)
{
    ck_assert_ptr_eq(c, p->c);
    ck_assert_ptr_null(c->cb);
    ck_assert_ptr_null(c->data);
    c->cb = on_client_event;
    c->data = p;
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
    ck_assert_int_eq(uv_loop_init(&loop), 0);
}

static void world_teardown(void)
{
    struct leak_report r = {0};
    uv_walk(&loop, walk_open, &r);
    ck_assert_msg(r.n == 0, "%u handle(s) left open: %s", r.n, r.names);
    uv_walk(&loop, walk_close, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    ck_assert_ptr_null(W.pool); /* every test frees its pool */
    free(W.srv);
    free(W.cli);
}

static void expect_no_client_events(unsigned i)
{
    for (int ev = 1; ev < NEV; ev++)
        ck_assert_msg(W.cli[i].ev[ev] == 0, "client %u got event %d", i, ev);
    ck_assert_uint_eq(W.cli[i].ev[CDN_CONN_EV_OPEN], 1);
}

/* Polls until the pool is empty, then checks that a get finds nothing, frees the pool and stops. */
static void poll_until_empty(uv_timer_t *t)
{
    W.polls++;
    if (cdn_pool_idle(W.pool) != 0)
        return;
    ck_assert_ptr_null(cdn_pool_get(W.pool, "k"));
    cdn_pool_free(&W.pool);
    timer_done(t);
}

static void start_polling(void)
{
    ck_assert_int_eq(uv_timer_init(&loop, &W.t[2]), 0);
    ck_assert_int_eq(uv_timer_start(&W.t[2], poll_until_empty, 2, 2), 0);
}

/* ==== LIFO per key ==== */

static void lifo_check_idle_timer_off(uv_timer_t *t)
{
    /* taken back before its 30 ms idle timeout: the pool's timer must not fire on it anymore */
    ck_assert_ptr_nonnull(W.cli[0].c);
    ck_assert_uint_eq(W.cli[0].ev[CDN_CONN_EV_TIMEOUT], 0);
    close_peer(&W.cli[0]);
    close_peer(&W.cli[1]);
    cdn_pool_free(&W.pool);
    timer_done(t);
}

static void lifo_ready(void)
{
    struct cdn_pool *p = W.pool;
    struct cdn_conn *c0 = W.cli[0].c, *c1 = W.cli[1].c;
    ck_assert_uint_eq(cdn_pool_idle(p), 0);
    ck_assert_ptr_null(cdn_pool_get(p, "k"));
    cdn_pool_put(p, "k", c0, LONG_IDLE);
    ck_assert_uint_eq(cdn_pool_idle(p), 1);
    cdn_pool_put(p, "k", c1, LONG_IDLE);
    ck_assert_uint_eq(cdn_pool_idle(p), 2);
    ck_assert_ptr_null(cdn_pool_get(p, "other"));
    ck_assert_uint_eq(cdn_pool_idle(p), 2);
    struct cdn_conn *g = cdn_pool_get(p, "k");
    ck_assert_ptr_eq(g, c1); /* the most recent first */
    take_back(&W.cli[1], g);
    ck_assert_uint_eq(cdn_pool_idle(p), 1);
    g = cdn_pool_get(p, "k");
    ck_assert_ptr_eq(g, c0);
    take_back(&W.cli[0], g);
    ck_assert_uint_eq(cdn_pool_idle(p), 0);
    ck_assert_ptr_null(cdn_pool_get(p, "k"));
    /* park again with a short idle timeout and take it back at once */
    cdn_pool_put(p, "k", c0, 30);
    ck_assert_uint_eq(cdn_pool_idle(p), 1);
    g = cdn_pool_get(p, "k");
    ck_assert_ptr_eq(g, c0);
    take_back(&W.cli[0], g);
    after(&W.t[0], 100, lifo_check_idle_timer_off);
}

START_TEST(get_is_lifo_and_counts)
{
    start(2, NULL, NULL, lifo_ready);
    run_loop();
    expect_no_client_events(0);
    expect_no_client_events(1);
    ck_assert_uint_eq(W.server_eofs, 2);
}
END_TEST

/* ==== the upstream closes a pooled conn ==== */

static void peer_close_ready(void)
{
    cdn_pool_put(W.pool, "k", W.cli[0].c, LONG_IDLE);
    ck_assert_uint_eq(cdn_pool_idle(W.pool), 1);
    close_peer(&W.srv[0]);
    ck_assert_uint_eq(cdn_pool_idle(W.pool), 1); /* only once the close is seen */
    start_polling();
}

START_TEST(peer_close_removes_pooled)
{
    start(1, NULL, NULL, peer_close_ready);
    run_loop();
    ck_assert_ptr_null(W.pool);
    ck_assert_uint_ge(W.polls, 1);
    expect_no_client_events(0); /* the pool owned it: the test's callback saw nothing */
}
END_TEST

/* ==== stray bytes from the upstream evict a pooled conn ==== */

static void stray_ready(void)
{
    cdn_pool_put(W.pool, "k", W.cli[0].c, LONG_IDLE);
    cdn_conn_write(W.srv[0].c, "x", 1);
    start_polling();
}

START_TEST(stray_bytes_remove_pooled)
{
    start(1, NULL, NULL, stray_ready);
    run_loop();
    ck_assert_ptr_null(W.pool);
    ck_assert_uint_eq(W.server_eofs, 1); /* the pool closed its side */
    expect_no_client_events(0);
}
END_TEST

/* ==== idle timeout ==== */

static void idle_early(uv_timer_t *t)
{
    ck_assert_uint_eq(cdn_pool_idle(W.pool), 1);
    ck_assert_uint_eq(W.server_eofs, 0);
    timer_done(t);
}

static void idle_late(uv_timer_t *t)
{
    ck_assert_uint_eq(cdn_pool_idle(W.pool), 0);
    ck_assert_ptr_null(cdn_pool_get(W.pool, "k"));
    cdn_pool_free(&W.pool);
    timer_done(t);
}

static void idle_ready(void)
{
    W.t0 = uv_now(&loop);
    cdn_pool_put(W.pool, "k", W.cli[0].c, 50);
    after(&W.t[0], 20, idle_early);
    after(&W.t[1], 150, idle_late);
}

START_TEST(idle_timeout_closes_pooled)
{
    start(1, NULL, NULL, idle_ready);
    run_loop();
    ck_assert_uint_eq(W.server_eofs, 1);
    ck_assert_int_eq(W.srv[0].status[CDN_CONN_EV_EOF], 0);
    ck_assert_uint_ge(W.srv[0].t_eof - W.t0, 50);
    expect_no_client_events(0);
}
END_TEST

/* ==== cdn_pool_free closes what is left ==== */

static void free_ready(void)
{
    cdn_pool_put(W.pool, "a", W.cli[0].c, LONG_IDLE);
    cdn_pool_put(W.pool, "a", W.cli[1].c, LONG_IDLE);
    cdn_pool_put(W.pool, "b", W.cli[2].c, LONG_IDLE);
    ck_assert_uint_eq(cdn_pool_idle(W.pool), 3);
    cdn_pool_free(&W.pool);
    ck_assert_ptr_null(W.pool);
    cdn_pool_free(&W.pool); /* NULL is fine */
}

START_TEST(free_closes_the_rest)
{
    start(3, NULL, NULL, free_ready);
    run_loop();
    ck_assert_uint_eq(W.server_eofs, 3);
    for (unsigned i = 0; i < 3; i++) {
        ck_assert_uint_eq(W.srv[i].ev[CDN_CONN_EV_EOF], 1);
        expect_no_client_events(i);
    }
}
END_TEST

/* ==== keys do not mix (more keys than hash buckets, so some share one) ==== */

#define NKEYS 70

static void keys_ready(void)
{
    char key[64];
    for (unsigned i = 0; i < NKEYS; i++) {
        snprintf(key, sizeof(key), "tls|origin-%u.test|443|origin-%u.test", i, i);
        cdn_pool_put(W.pool, key, W.cli[i].c, LONG_IDLE);
    }
    ck_assert_uint_eq(cdn_pool_idle(W.pool), NKEYS);
    ck_assert_ptr_null(cdn_pool_get(W.pool, "tls|origin-0.test|443|origin-1.test"));
    ck_assert_ptr_null(cdn_pool_get(W.pool, "tls|origin-0.test|443|origin-0.tes"));
    for (unsigned j = 0; j < NKEYS; j++) {
        unsigned i = (j * 37) % NKEYS; /* 37 and 70 are coprime: every key once, out of order */
        snprintf(key, sizeof(key), "tls|origin-%u.test|443|origin-%u.test", i, i);
        struct cdn_conn *c = cdn_pool_get(W.pool, key);
        ck_assert_msg(c == W.cli[i].c, "key %u gave the wrong conn", i);
        take_back(&W.cli[i], c);
        ck_assert_ptr_null(cdn_pool_get(W.pool, key));
        ck_assert_uint_eq(cdn_pool_idle(W.pool), NKEYS - 1 - j);
    }
    for (unsigned i = 0; i < NKEYS; i++)
        close_peer(&W.cli[i]);
    cdn_pool_free(&W.pool);
}

START_TEST(keys_do_not_mix)
{
    start(NKEYS, NULL, NULL, keys_ready);
    run_loop();
    ck_assert_uint_eq(W.server_eofs, NKEYS);
}
END_TEST

/* ==== at most CDN_POOL_MAX_PER_KEY per key; one more is ended ==== */

static void max_server_eof(struct peer *p)
{
    if (W.server_eofs == 1) { /* the one the pool refused */
        ck_assert_uint_eq(cdn_pool_idle(W.pool), CDN_POOL_MAX_PER_KEY);
        cdn_pool_free(&W.pool);
    }
}

static void max_ready(void)
{
    for (unsigned i = 0; i < W.n; i++)
        cdn_pool_put(W.pool, "k", W.cli[i].c, LONG_IDLE);
    ck_assert_uint_eq(cdn_pool_idle(W.pool), CDN_POOL_MAX_PER_KEY);
    W.server_eof = max_server_eof;
}

START_TEST(at_most_max_per_key)
{
    start(CDN_POOL_MAX_PER_KEY + 1, NULL, NULL, max_ready);
    run_loop();
    ck_assert_ptr_null(W.pool);
    ck_assert_uint_eq(W.server_eofs, CDN_POOL_MAX_PER_KEY + 1);
}
END_TEST

/* ==== TLS: post-handshake messages do not evict; close_notify does ==== */

static void make_pki(void)
{
    fixture_pki_make(false);
}

static void remove_pki(void)
{
    fixture_pki_remove();
}

static void tls_settled(uv_timer_t *t)
{
    /* the server's OPEN came and went, with its session tickets: the conn is still parked */
    ck_assert_uint_eq(W.srv[0].ev[CDN_CONN_EV_OPEN], 1);
    ck_assert_uint_eq(cdn_pool_idle(W.pool), 1);
    cdn_conn_end(W.srv[0].c); /* close_notify + FIN */
    W.srv[0].c = NULL;
    start_polling();
    timer_done(t);
}

static void tls_ready(void)
{
    cdn_pool_put(W.pool, "k", W.cli[0].c, LONG_IDLE);
    after(&W.t[0], 100, tls_settled);
}

START_TEST(tls_pooled_survives_tickets_not_close_notify)
{
    char *err = NULL;
    SSL_CTX *s = cdn_tls_server_ctx_new(fixture_pki_path("regional.crt"), fixture_pki_path("regional.key"),
                                        CDN_CLIENT_AUTH_NONE, NULL, &err);
    ck_assert_msg(s != NULL, "%s", err != NULL ? err : "?");
    struct cdn_conf_upstream u = {.ca_file = fixture_pki_path("ca.crt"), .verify = true};
    SSL_CTX *c = cdn_tls_client_ctx_new(&u, &err);
    ck_assert_msg(c != NULL, "%s", err != NULL ? err : "?");
    start(1, s, c, tls_ready);
    run_loop();
    ck_assert_ptr_null(W.pool);
    expect_no_client_events(0);
    SSL_CTX_free(s);
    SSL_CTX_free(c);
}
END_TEST

Suite *suite_pool(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("plain");
    tcase_set_timeout(tc, 10);
    tcase_add_checked_fixture(tc, world_setup, world_teardown);
    tcase_add_test(tc, get_is_lifo_and_counts);
    tcase_add_test(tc, peer_close_removes_pooled);
    tcase_add_test(tc, stray_bytes_remove_pooled);
    tcase_add_test(tc, idle_timeout_closes_pooled);
    tcase_add_test(tc, free_closes_the_rest);
    tcase_add_test(tc, keys_do_not_mix);
    tcase_add_test(tc, at_most_max_per_key);
    suite_add_tcase(s, tc);

    TCase *tls = tcase_create("tls");
    tcase_set_timeout(tls, 10);
    tcase_add_unchecked_fixture(tls, make_pki, remove_pki);
    tcase_add_checked_fixture(tls, world_setup, world_teardown);
    tcase_add_test(tls, tls_pooled_survives_tickets_not_close_notify);
    suite_add_tcase(s, tls);
    return s;
}
