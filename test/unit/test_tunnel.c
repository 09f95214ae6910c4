/*
 * tunnel: the relay between two real conns over 127.0.0.1. X (a client) talks to A, the tunnel
 * relays A <-> B, and B is connected to Y (a service): X -> A ~> B -> Y and back. The loop runs to
 * completion under an unref'd watchdog; the fixture fails the test for any handle left open.
 * Streams are checked byte by byte against a pseudo-random pattern.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "lib/conn.h"
#include "lib/tunnel.h"
#include "lib/util.h"
#include "test/unit/suites.h"

#define PAT_LEN     (16u * 1024u * 1024u)
#define IN_CAP      (96u * 1024u)
#define PIECE       (64u * 1024u)
#define WATCHDOG_MS 8000u

static uv_loop_t loop;
static uv_timer_t watchdog;
static unsigned char *pat;

static void walk_open(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        (*(unsigned *)arg)++;
}

static void walk_close(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void setup(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    pat = malloc(PAT_LEN);
    ck_assert_ptr_nonnull(pat);
    uint32_t x = 0x12345678u;
    for (size_t i = 0; i < PAT_LEN; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pat[i] = (unsigned char)x;
    }
}

static void teardown(void)
{
    unsigned open = 0;
    uv_walk(&loop, walk_open, &open);
    ck_assert_msg(open == 0, "%u handle(s) left open", open);
    uv_walk(&loop, walk_close, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    free(pat);
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

/* ---- the world: two listeners, four conns ---- */

struct endpoint { /* X or Y: writes `send` pattern bytes, checks what it receives */
    struct cdn_conn *c;
    size_t send, sent;   /* bytes to write, written */
    bool shut_when_sent; /* half-close once all is written (else end after EOF) */
    bool reply_on_eof;   /* Y: write `reply` bytes only after EOF, then end */
    size_t reply;
    size_t got, mismatch;
    bool eof;
    bool paused;       /* Y: does not read until resumed */
    size_t banner;     /* Y: written at accept, before anything is read */
    size_t shut_after; /* X: half-close once this much arrived (0: never) */
};

static struct world {
    uv_tcp_t lx, ly; /* A is accepted on lx, Y on ly */
    struct endpoint x, y;
    struct cdn_conn *a, *b;
    struct cdn_tunnel t;
    bool b_open, started;
    bool start_on_b_read; /* start only once B has read bytes (left unconsumed, B still reading) */
    bool b_ready;
    uint64_t idle_ms;
    enum cdn_tunnel_result result;
    unsigned results;
    size_t max_b_pending, max_a_pending;
    bool saw_a_paused;
    uv_timer_t resume;
} w;

static void ep_pump(struct endpoint *e)
{
    while (e->sent < e->send && !cdn_conn_congested(e->c)) {
        size_t n = e->send - e->sent < PIECE ? e->send - e->sent : PIECE;
        cdn_conn_write(e->c, pat + e->sent, n);
        e->sent += n;
    }
    if (e->sent == e->send && e->shut_when_sent) {
        e->shut_when_sent = false;
        cdn_conn_shutdown(e->c);
    }
}

static void ep_take(struct endpoint *e)
{
    const unsigned char *d = (const unsigned char *)cdn_buf_data(&e->c->in);
    size_t n = e->c->in.len;
    for (size_t i = 0; i < n && e->mismatch == SIZE_MAX; i++) {
        if (e->got + i >= PAT_LEN || d[i] != pat[e->got + i])
            e->mismatch = e->got + i;
    }
    e->got += n;
    cdn_buf_consume(&e->c->in, n);
    if (e->shut_after > 0 && e->got >= e->shut_after) {
        e->shut_after = 0;
        cdn_conn_shutdown(e->c);
    }
}

static void on_ep(struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    struct endpoint *e = c->data;
    switch (ev) {
    case CDN_CONN_EV_OPEN:
    case CDN_CONN_EV_DRAIN:
        ep_pump(e);
        return;
    case CDN_CONN_EV_READ:
        if (e->paused) {
            cdn_conn_read_stop(c);
            return;
        }
        ep_take(e);
        return;
    case CDN_CONN_EV_EOF:
        e->eof = true;
        if (e->reply_on_eof) {
            cdn_conn_write(c, pat, e->reply);
            e->sent = e->reply;
        }
        cdn_conn_end(c);
        e->c = NULL;
        return;
    case CDN_CONN_EV_ERROR:
    case CDN_CONN_EV_TIMEOUT:
        cdn_conn_close(c);
        e->c = NULL;
        return;
    }
}

static void maybe_start(void)
{
    if (w.started || w.a == NULL || !w.b_open || (w.start_on_b_read && !w.b_ready))
        return;
    w.started = true;
    cdn_tunnel_start(&w.t, w.a, w.b, w.idle_ms);
}

static void on_side(struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    if (c == w.b && ev == CDN_CONN_EV_OPEN) {
        w.b_open = true;
        if (!w.start_on_b_read)
            maybe_start();
        return;
    }
    if (!w.started) {
        if (c == w.b && ev == CDN_CONN_EV_READ && w.start_on_b_read) {
            w.b_ready = true;
            maybe_start(); /* as the edge does when the peer's 200 and the service's first bytes came together
                            */
            return;
        }
        if (ev == CDN_CONN_EV_READ)
            cdn_conn_read_stop(c); /* kept until the tunnel starts */
        else
            ck_abort_msg("event %d before the tunnel started", (int)ev);
        return;
    }
    enum cdn_tunnel_result r = cdn_tunnel_event(&w.t, c, ev, status);
    if (cdn_conn_pending(w.b) > w.max_b_pending)
        w.max_b_pending = cdn_conn_pending(w.b);
    if (cdn_conn_pending(w.a) > w.max_a_pending)
        w.max_a_pending = cdn_conn_pending(w.a);
    if (r == CDN_TUNNEL_GOING)
        return;
    w.result = r;
    w.results++;
    if (r == CDN_TUNNEL_DONE) {
        cdn_conn_end(w.a);
        cdn_conn_end(w.b);
    } else {
        cdn_conn_close(w.a);
        cdn_conn_close(w.b);
    }
    w.a = w.b = NULL;
}

static void on_conn_x(uv_stream_t *l, int status)
{
    int err = 0;
    ck_assert_int_eq(status, 0);
    w.a = cdn_conn_accept(l, NULL, IN_CAP, on_side, NULL, &err);
    ck_assert_ptr_nonnull(w.a);
    uv_close((uv_handle_t *)&w.lx, NULL); /* one connection per test */
    maybe_start();
}

static void on_conn_y(uv_stream_t *l, int status)
{
    int err = 0;
    ck_assert_int_eq(status, 0);
    w.y.c = cdn_conn_accept(l, NULL, IN_CAP, on_ep, &w.y, &err);
    ck_assert_ptr_nonnull(w.y.c);
    if (w.y.paused)
        cdn_conn_read_stop(w.y.c);
    if (w.y.banner > 0)
        cdn_conn_write(w.y.c, pat, w.y.banner);
    uv_close((uv_handle_t *)&w.ly, NULL);
}

static int listen_on(uv_tcp_t *t, uv_connection_cb cb)
{
    struct sockaddr_in a;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_ip4_addr("127.0.0.1", 0, &a);
    ck_assert_int_eq(uv_tcp_init(&loop, t), 0);
    ck_assert_int_eq(uv_tcp_bind(t, (struct sockaddr *)&a, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)t, 16, cb), 0);
    ck_assert_int_eq(uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len), 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void world_start(uint64_t idle_ms)
{
    memset(&w, 0, sizeof(w));
    w.idle_ms = idle_ms;
    w.x.mismatch = w.y.mismatch = SIZE_MAX;
}

static void world_connect(void)
{
    int px = listen_on(&w.lx, on_conn_x), py = listen_on(&w.ly, on_conn_y);
    w.b = cdn_conn_connect(&loop, "127.0.0.1", (uint16_t)py, NULL, NULL, false, IN_CAP, on_side, NULL);
    w.x.c = cdn_conn_connect(&loop, "127.0.0.1", (uint16_t)px, NULL, NULL, false, IN_CAP, on_ep, &w.x);
}

/* X sends 4 MiB and half-closes; Y answers 1 MiB only after it saw EOF (so the answer travels
 * while X's direction is already shut); X receives it all, then EOF, and the tunnel is DONE. */
START_TEST(half_close_both_ways)
{
    world_start(5000);
    w.x.send = 4u << 20;
    w.x.shut_when_sent = true;
    w.y.reply_on_eof = true;
    w.y.reply = 1u << 20;
    world_connect();
    run_loop();
    ck_assert_uint_eq(w.results, 1);
    ck_assert_int_eq(w.result, CDN_TUNNEL_DONE);
    ck_assert_uint_eq(w.y.got, 4u << 20);
    ck_assert_uint_eq(w.y.mismatch, SIZE_MAX);
    ck_assert(w.y.eof);
    ck_assert_uint_eq(w.x.got, 1u << 20);
    ck_assert_uint_eq(w.x.mismatch, SIZE_MAX);
    ck_assert(w.x.eof);
    ck_assert_uint_eq(w.t.a_to_b, 4u << 20);
    ck_assert_uint_eq(w.t.b_to_a, 1u << 20);
    ck_assert(!w.t.truncated);
}
END_TEST

static void on_resume(uv_timer_t *t)
{
    /* Y has not read for a while: the tunnel must have stopped reading from A rather than buffer */
    ck_assert(w.a != NULL);
    w.saw_a_paused = !w.a->reading;
    w.y.paused = false;
    cdn_conn_read_start(w.y.c);
    uv_close((uv_handle_t *)t, NULL);
}

/* Y does not read for 300 ms while X pushes 16 MiB: B's queue stays near the high-water mark and
 * A stops reading; once Y reads, everything arrives intact. */
START_TEST(backpressure_bounds_buffering)
{
    world_start(5000);
    w.x.send = PAT_LEN;
    w.x.shut_when_sent = true;
    w.y.paused = true;
    world_connect();
    ck_assert_int_eq(uv_timer_init(&loop, &w.resume), 0);
    ck_assert_int_eq(uv_timer_start(&w.resume, on_resume, 300, 0), 0);
    run_loop();
    ck_assert(w.saw_a_paused);
    ck_assert_uint_le(w.max_b_pending, CDN_CONN_HIGH_WATER + IN_CAP);
    ck_assert_uint_eq(w.y.got, PAT_LEN);
    ck_assert_uint_eq(w.y.mismatch, SIZE_MAX);
    ck_assert_int_eq(w.result, CDN_TUNNEL_DONE);
}
END_TEST

static void on_y_quiet(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, NULL);
}

/* Nothing moves: after idle_ms the tunnel says IDLE (once), and both sides are closed. */
START_TEST(idle_timeout)
{
    world_start(150);
    world_connect();
    uint64_t t0 = uv_now(&loop);
    ck_assert_int_eq(uv_timer_init(&loop, &w.resume), 0);
    ck_assert_int_eq(uv_timer_start(&w.resume, on_y_quiet, 10, 0), 0);
    run_loop();
    ck_assert_uint_eq(w.results, 1);
    ck_assert_int_eq(w.result, CDN_TUNNEL_IDLE);
    ck_assert_uint_ge(uv_now(&loop) - t0, 150);
    ck_assert_str_eq(w.t.why, "idle timeout");
}
END_TEST

/* Bytes X sent before the tunnel started (pipelined after a CONNECT) are relayed first. */
START_TEST(buffered_bytes_relayed_first)
{
    world_start(5000);
    w.x.send = 1000;
    w.x.shut_when_sent = true;
    w.y.reply_on_eof = true;
    w.y.reply = 10;
    world_connect();
    run_loop();
    ck_assert_int_eq(w.result, CDN_TUNNEL_DONE);
    ck_assert_uint_eq(w.y.got, 1000);
    ck_assert_uint_eq(w.y.mismatch, SIZE_MAX);
    ck_assert_uint_eq(w.x.got, 10);
}
END_TEST

/* Y speaks first, and the tunnel starts while B is reading with Y's bytes still in its buffer (the
edge's case when the service's first bytes come with the peer's 200): they must reach X without any
further read on B. X half-closes once it has them. */
START_TEST(bytes_buffered_on_a_reading_side)
{
    world_start(5000);
    w.start_on_b_read = true;
    w.y.banner = 1000;
    w.x.shut_after = 1000;
    world_connect();
    run_loop();
    ck_assert_int_eq(w.result, CDN_TUNNEL_DONE);
    ck_assert_uint_eq(w.x.got, 1000);
    ck_assert_uint_eq(w.x.mismatch, SIZE_MAX);
    ck_assert(w.y.eof);
}
END_TEST

Suite *suite_tunnel(void)
{
    Suite *s = suite_create("tunnel");
    TCase *tc = tcase_create("relay");
    tcase_set_timeout(tc, 20);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, half_close_both_ways);
    tcase_add_test(tc, backpressure_bounds_buffering);
    tcase_add_test(tc, idle_timeout);
    tcase_add_test(tc, buffered_bytes_relayed_first);
    tcase_add_test(tc, bytes_buffered_on_a_reading_side);
    suite_add_tcase(s, tc);
    return s;
}
