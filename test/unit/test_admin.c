/*
 * admin: the admin handler on a real loop. Each test binds a listener to 127.0.0.1:0 whose connection
 * callback is cdn_admin_accept, and runs a scripted client in a second thread with plain blocking
 * sockets (or blocking OpenSSL for the mTLS cases). The client only records what it got; every
 * assertion runs in the test's own thread after the loop ended and the client was joined, because
 * Check's assertions must not fire from another thread. When the client is done it wakes the loop
 * (uv_async_send), which closes the listener; the loop then ends once every admin connection has
 * closed by itself. The checked fixture fails the test for any handle left open (uv_walk), and only
 * then closes the rest and asserts uv_loop_close() == 0 (STYLE 3.10).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <check.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "lib/admin.h"
#include "lib/conf.h"
#include "lib/tls.h"
#include "lib/util.h"
#include "test/unit/fixture.h"
#include "test/unit/suites.h"

#define WATCHDOG_MS 8000u
#define MAX_RESP    512

/* ---- the loop fixture ---- */

static uv_loop_t loop;
static uv_timer_t watchdog;
static uv_tcp_t listener;
static uv_async_t done_async;
static int port;
static SSL_CTX *server_tls; /* NULL = plain */
static struct cdn_admin_ops ops;
static bool close_all_on_done;
static unsigned accepted, accept_errors;

/* what the callbacks saw (loop thread; read after the loop ended) */
static unsigned collect_calls, ready_calls, reload_calls;
static atomic_bool ready_flag;
static char purged[8][256];
static unsigned npurged;
static int purge_ret[8];
static int reload_ret;

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

static void on_collect(void *ctx, struct cdn_stats *sum, struct cdn_stats_extra *extra)
{
    ck_assert_ptr_eq(ctx, &loop);
    collect_calls++;
    ck_assert_uint_eq(cdn_stats_get(sum, CDN_STAT_requests), 0); /* handed over empty */
    ck_assert_uint_eq(extra->nseries, 0);
    cdn_stats_set(sum, CDN_STAT_requests, 42);
    cdn_stats_set(sum, CDN_STAT_cache_hit_fresh, 3);
    cdn_stats_set(sum, CDN_STAT_cache_miss, 1);
    cdn_stats_extra_add(extra, CDN_STAT_certificate_expiry_seconds,
                        (const char *[]){"server", "/etc/cdn/edge.crt", "CN=edge"}, 86400, false);
}

static bool on_ready(void *ctx)
{
    ready_calls++;
    return atomic_load(&ready_flag);
}

static int on_purge(void *ctx, const char *url, size_t len)
{
    ck_assert_uint_eq(strlen(url), len); /* NUL-terminated as promised */
    ck_assert_uint_lt(npurged, 8);
    snprintf(purged[npurged], sizeof(purged[npurged]), "%s", url);
    return purge_ret[npurged++];
}

static int on_reload(void *ctx)
{
    reload_calls++;
    return reload_ret;
}

static void on_listen(uv_stream_t *l, int status)
{
    ck_assert_int_eq(status, 0);
    if (cdn_admin_accept(l, server_tls, &ops) == 0)
        accepted++;
    else
        accept_errors++;
}

static void on_done(uv_async_t *a)
{
    if (close_all_on_done) {
        ck_assert_uint_gt(cdn_admin_count(), 0);
        cdn_admin_close_all();
        ck_assert_uint_eq(cdn_admin_count(), 0);
    }
    uv_close((uv_handle_t *)&listener, NULL);
    uv_close((uv_handle_t *)&done_async, NULL);
}

static void on_watchdog(uv_timer_t *t)
{
    ck_abort_msg("watchdog: the loop still runs after %u ms (%zu admin conns)", WATCHDOG_MS,
                 cdn_admin_count());
}

static void setup(void)
{
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    server_tls = NULL;
    close_all_on_done = false;
    accepted = accept_errors = collect_calls = ready_calls = reload_calls = npurged = 0;
    memset(purged, 0, sizeof(purged));
    memset(purge_ret, 0, sizeof(purge_ret));
    reload_ret = 0;
    atomic_store(&ready_flag, true);
    memset(&ops, 0, sizeof(ops));
    ops.ctx = &loop;
    ops.role = "edge";
    ops.collect = on_collect;
    ops.ready = on_ready;
    ops.purge = on_purge;
    ops.reload = on_reload;

    ck_assert_int_eq(uv_tcp_init(&loop, &listener), 0);
    struct sockaddr_in a;
    ck_assert_int_eq(uv_ip4_addr("127.0.0.1", 0, &a), 0);
    ck_assert_int_eq(uv_tcp_bind(&listener, (const struct sockaddr *)&a, 0), 0);
    ck_assert_int_eq(uv_listen((uv_stream_t *)&listener, 64, on_listen), 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    ck_assert_int_eq(uv_tcp_getsockname(&listener, (struct sockaddr *)&ss, &len), 0);
    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    ck_assert_int_eq(uv_async_init(&loop, &done_async, on_done), 0);
}

static void teardown(void)
{
    struct leak_report r = {0};
    uv_walk(&loop, walk_open, &r);
    ck_assert_msg(r.n == 0, "%u handle(s) left open: %s", r.n, r.names);
    uv_walk(&loop, walk_close, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    ck_assert_uint_eq(cdn_admin_count(), 0);
    SSL_CTX_free(server_tls);
    server_tls = NULL;
}

/* ---- the client thread ---- */

struct resp {
    int status;
    char head[2048];
    char *body;
    size_t blen;
};

static struct resp R[MAX_RESP];
static int nresp;
static int eofs;         /* connections the server closed after the expected answers */
static char cerr[512];   /* first client-side failure */
static long elapsed_ms;  /* timing tests */
static bool tls_refused; /* the mTLS client without a certificate got no answer */

#define CFAIL(...)                                     \
    do {                                               \
        if (cerr[0] == '\0')                           \
            snprintf(cerr, sizeof(cerr), __VA_ARGS__); \
    } while (0)

struct client {
    int fd;
    SSL *ssl;
    char buf[256 * 1024];
    size_t len;
};

static struct client *client_open(SSL_CTX *ctx)
{
    struct client *c = calloc(1, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        CFAIL("connect: %s", strerror(errno));
    if (ctx != NULL) {
        c->ssl = SSL_new(ctx);
        SSL_set_fd(c->ssl, c->fd);
        SSL_set_tlsext_host_name(c->ssl, "localhost");
        if (SSL_connect(c->ssl) != 1) {
            SSL_free(c->ssl);
            c->ssl = NULL;
            close(c->fd);
            c->fd = -1;
        }
    }
    return c;
}

static void client_close(struct client *c)
{
    if (c->ssl != NULL) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

static void csend(struct client *c, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t k = c->ssl != NULL ? SSL_write(c->ssl, s, (int)n) : send(c->fd, s, n, MSG_NOSIGNAL);
        if (k <= 0)
            return; /* the server may already have closed (431): the answer is what counts */
        s += k;
        n -= (size_t)k;
    }
}

static void csends(struct client *c, const char *s)
{
    csend(c, s, strlen(s));
}

/* Reads more bytes; 0 at EOF, -1 on error or timeout. */
static ssize_t cfill(struct client *c)
{
    if (c->len == sizeof(c->buf))
        return -1;
    ssize_t k = c->ssl != NULL ? SSL_read(c->ssl, c->buf + c->len, (int)(sizeof(c->buf) - c->len))
                               : recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (k > 0)
        c->len += (size_t)k;
    return k < 0 ? -1 : k;
}

/* Reads one response into R[nresp++]; head_req: it answers a HEAD (no body). */
static bool cread(struct client *c, bool head_req)
{
    if (nresp >= MAX_RESP) {
        CFAIL("too many responses");
        return false;
    }
    char *end;
    while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL) {
        if (cfill(c) <= 0) {
            CFAIL("response %d: no complete head (%zu bytes)", nresp, c->len);
            return false;
        }
    }
    struct resp *r = &R[nresp++];
    size_t hl = (size_t)(end - c->buf) + 4;
    if (hl >= sizeof(r->head)) {
        CFAIL("head too long");
        return false;
    }
    memcpy(r->head, c->buf, hl);
    r->head[hl] = '\0';
    if (sscanf(r->head, "HTTP/1.1 %d ", &r->status) != 1)
        CFAIL("bad status line: %.40s", r->head);
    const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
    size_t blen = cl != NULL ? strtoul(cl + 18, NULL, 10) : 0;
    if (cl == NULL)
        CFAIL("response %d: no Content-Length", nresp - 1);
    if (head_req)
        blen = 0;
    while (c->len < hl + blen) {
        if (cfill(c) <= 0) {
            CFAIL("response %d: body cut at %zu of %zu", nresp - 1, c->len - hl, blen);
            return false;
        }
    }
    r->body = malloc(blen + 1);
    memcpy(r->body, c->buf + hl, blen);
    r->body[blen] = '\0';
    r->blen = blen;
    memmove(c->buf, c->buf + hl + blen, c->len - hl - blen);
    c->len -= hl + blen;
    return true;
}

/* The server closes the connection next, sending nothing more. */
static void cexpect_eof(struct client *c)
{
    ssize_t k = cfill(c);
    if (k == 0 || (k < 0 && c->ssl == NULL && errno == ECONNRESET))
        eofs++;
    else
        CFAIL("expected the server to close, got %zd (%zu bytes: %.40s)", k, c->len, c->buf);
}

static void (*client_fn)(void);
static atomic_bool signalled;

/* Wakes the loop to close the listener; once only (the handle is closed after the first). */
static void signal_done(void)
{
    if (!atomic_exchange(&signalled, true))
        uv_async_send(&done_async);
}

static void client_main(void *arg)
{
    client_fn();
    signal_done();
}

/* Runs fn in the client thread against the loop until both are done. */
static void run(void (*fn)(void))
{
    nresp = eofs = 0;
    cerr[0] = '\0';
    atomic_store(&signalled, false);
    client_fn = fn;
    uv_thread_t t;
    ck_assert_int_eq(uv_timer_init(&loop, &watchdog), 0);
    ck_assert_int_eq(uv_timer_start(&watchdog, on_watchdog, WATCHDOG_MS, 0), 0);
    uv_unref((uv_handle_t *)&watchdog);
    ck_assert_int_eq(uv_thread_create(&t, client_main, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(uv_thread_join(&t), 0);
    uv_close((uv_handle_t *)&watchdog, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_msg(cerr[0] == '\0', "client: %s", cerr);
    ck_assert_uint_eq(accept_errors, 0);
}

static void free_resps(void)
{
    for (int i = 0; i < nresp; i++) {
        free(R[i].body);
        R[i].body = NULL;
    }
}

static const char *header(const struct resp *r, const char *name)
{
    static char v[256];
    char pat[64];
    snprintf(pat, sizeof(pat), "\r\n%s: ", name);
    const char *p = strcasestr(r->head, pat);
    if (p == NULL)
        return NULL;
    p += strlen(pat);
    size_t n = strcspn(p, "\r");
    snprintf(v, sizeof(v), "%.*s", (int)n, p);
    return v;
}

#define expect_resp(i, st, body_sub)                                                                        \
    do {                                                                                                    \
        ck_assert_msg((i) < nresp, "only %d responses", nresp);                                             \
        ck_assert_msg(R[i].status == (st), "response %d: status %d, want %d\n%s%s", (i), R[i].status, (st), \
                      R[i].head, R[i].body);                                                                \
        ck_assert_msg(strstr(R[i].body, (body_sub)) != NULL, "response %d: no \"%s\" in\n%s", (i),          \
                      (body_sub), R[i].body);                                                               \
    } while (0)

#define GET(path) "GET " path " HTTP/1.1\r\nHost: admin\r\n\r\n"

/* ==== endpoints ==== */

static void client_endpoints(void)
{
    struct client *c = client_open(NULL);
    csends(c, GET("/healthz"));
    cread(c, false);
    csends(c, GET("/stats"));
    cread(c, false);
    csends(c, GET("/metrics?name[]=x"));
    cread(c, false);
    csends(c, "HEAD /healthz HTTP/1.1\r\nHost: admin\r\n\r\n");
    cread(c, true);
    csends(c, GET("/nope"));
    cread(c, false);
    csends(c, "POST /stats HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n");
    cread(c, false);
    csends(c, GET("/purge"));
    cread(c, false);
    csends(c, "GET http://admin/healthz HTTP/1.1\r\nHost: admin\r\n\r\n");
    cread(c, false);
    client_close(c);
}

START_TEST(endpoints)
{
    run(client_endpoints);
    ck_assert_int_eq(nresp, 8);
    expect_resp(0, 200, "ok\n");
    ck_assert_uint_eq(R[0].blen, 3);
    ck_assert_str_eq(header(&R[0], "Content-Type"), "text/plain; charset=utf-8");
    ck_assert_str_eq(header(&R[0], "Cache-Control"), "no-store");
    ck_assert_ptr_nonnull(header(&R[0], "Date"));
    ck_assert_ptr_null(header(&R[0], "Connection"));

    expect_resp(1, 200, "\n  \"requests\": 42,\n");
    ck_assert_str_eq(header(&R[1], "Content-Type"), "application/json");
    ck_assert_ptr_nonnull(strstr(R[1].body, "\"role\": \"edge\""));
    ck_assert_ptr_nonnull(strstr(R[1].body, "\"cache_hit_ratio\": 0.75,"));
    ck_assert_ptr_nonnull(strstr(R[1].body, "\"file\": \"/etc/cdn/edge.crt\""));

    expect_resp(2, 200, "\ncdn_requests_total{role=\"edge\"} 42\n");
    ck_assert_str_eq(header(&R[2], "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    ck_assert_ptr_nonnull(strstr(R[2].body, "# TYPE cdn_requests_total counter\n"));
    ck_assert_ptr_nonnull(strstr(R[2].body, "cdn_certificate_expiry_seconds{role=\"edge\",kind=\"server\","
                                            "file=\"/etc/cdn/edge.crt\",subject=\"CN=edge\"} 86400\n"));

    ck_assert_int_eq(R[3].status, 200); /* HEAD: the length of the GET body, no body */
    ck_assert_str_eq(header(&R[3], "Content-Length"), "3");
    ck_assert_uint_eq(R[3].blen, 0);

    expect_resp(4, 404, "404 Not Found");
    expect_resp(5, 405, "405");
    ck_assert_str_eq(header(&R[5], "Allow"), "GET, HEAD");
    expect_resp(6, 405, "405");
    ck_assert_str_eq(header(&R[6], "Allow"), "DELETE");
    expect_resp(7, 200, "ok\n"); /* absolute-form target */

    ck_assert_uint_eq(collect_calls, 2);
    ck_assert_uint_eq(accepted, 1);
    free_resps();
}
END_TEST

/* ==== /readyz ==== */

static void client_ready(void)
{
    struct client *c = client_open(NULL);
    csends(c, GET("/readyz"));
    cread(c, false);
    atomic_store(&ready_flag, false); /* e.g. draining */
    csends(c, GET("/readyz"));
    cread(c, false);
    csends(c, GET("/healthz")); /* alive all the same */
    cread(c, false);
    atomic_store(&ready_flag, true);
    csends(c, GET("/readyz?verbose"));
    cread(c, false);
    client_close(c);
}

START_TEST(readyz)
{
    run(client_ready);
    ck_assert_int_eq(nresp, 4);
    expect_resp(0, 200, "ready\n");
    expect_resp(1, 503, "not ready\n");
    expect_resp(2, 200, "ok\n");
    expect_resp(3, 200, "ready\n");
    ck_assert_uint_eq(ready_calls, 3);
    free_resps();
}
END_TEST

START_TEST(readyz_without_callback)
{
    ops.ready = NULL;
    run(client_ready);
    expect_resp(1, 200, "ready\n");
    ck_assert_uint_eq(ready_calls, 0);
    free_resps();
}
END_TEST

/* ==== purge ==== */

static void client_purge(void)
{
    struct client *c = client_open(NULL);
    csends(c, "PURGE http://a.example/x?y=1 HTTP/1.1\r\nHost: a.example\r\n\r\n");
    cread(c, false);
    csends(c, "PURGE /https://b.example/p HTTP/1.1\r\nHost: admin\r\n\r\n");
    cread(c, false);
    csends(c, GET("/purge?x=1&url=http%3A%2F%2Fc.example%2Fa%3Fq%3D%22") "");
    cread(c, false);
    csends(c, "DELETE /purge?url=http%3A%2F%2Fc.example%2Fa%3Fq%3D%22 HTTP/1.1\r\nHost: admin\r\n\r\n");
    cread(c, false);
    csends(c, "DELETE /purge?url=https://d.example/z HTTP/1.1\r\nHost: admin\r\n\r\n");
    cread(c, false);
    /* refused before the callback */
    csends(c, "PURGE /relative/path HTTP/1.1\r\nHost: admin\r\n\r\n");
    cread(c, false);
    csends(c, "DELETE /purge?url=%ZZ HTTP/1.1\r\nHost: admin\r\n\r\n");
    cread(c, false);
    csends(c, "DELETE /purge?url=http%3A%2F%2Fe.example%2Fa%20b HTTP/1.1\r\nHost: admin\r\n\r\n");
    cread(c, false);
    csends(c, "DELETE /purge HTTP/1.1\r\nHost: admin\r\n\r\n");
    cread(c, false);
    csends(c, "DELETE /purge?url=http%3A%2F%2F%2Fpath HTTP/1.1\r\nHost: admin\r\n\r\n");
    cread(c, false);
    client_close(c);
}

START_TEST(purge)
{
    purge_ret[0] = 3;
    purge_ret[1] = 0;
    purge_ret[2] = 1;
    purge_ret[3] = CDN_EINVAL;
    run(client_purge);
    ck_assert_int_eq(nresp, 10);
    expect_resp(0, 200, "{\"url\": \"http://a.example/x?y=1\", \"purged\": 3}\n");
    ck_assert_str_eq(header(&R[0], "Content-Type"), "application/json");
    expect_resp(1, 404, "{\"url\": \"https://b.example/p\", \"purged\": 0}\n");
    expect_resp(2, 405, "405"); /* GET /purge */
    expect_resp(3, 200, "{\"url\": \"http://c.example/a?q=\\\"\", \"purged\": 1}\n");
    expect_resp(4, 500, "{\"url\": \"https://d.example/z\", \"error\": \"");
    expect_resp(5, 400, "absolute");
    expect_resp(6, 400, "url=");
    expect_resp(7, 400, "absolute"); /* decodes to a space */
    expect_resp(8, 400, "url=");
    expect_resp(9, 400, "absolute"); /* no host */
    ck_assert_uint_eq(npurged, 4);
    ck_assert_str_eq(purged[0], "http://a.example/x?y=1");
    ck_assert_str_eq(purged[1], "https://b.example/p");
    ck_assert_str_eq(purged[2], "http://c.example/a?q=\"");
    ck_assert_str_eq(purged[3], "https://d.example/z");
    free_resps();
}
END_TEST

static void client_purge_nocache(void)
{
    struct client *c = client_open(NULL);
    csends(c, "PURGE http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n");
    cread(c, false);
    csends(c, "POST /reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n");
    cread(c, false);
    client_close(c);
}

START_TEST(purge_and_reload_not_configured)
{
    ops.purge = NULL;
    ops.reload = NULL;
    run(client_purge_nocache);
    expect_resp(0, 501, "no cache");
    expect_resp(1, 404, "404");
    ck_assert_uint_eq(npurged, 0);
    ck_assert_uint_eq(reload_calls, 0);
    free_resps();
}
END_TEST

/* ==== reload ==== */

static void client_reload(void)
{
    struct client *c = client_open(NULL);
    csends(c, "POST /reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n");
    cread(c, false);
    csends(c, GET("/reload"));
    cread(c, false);
    client_close(c);
}

START_TEST(reload)
{
    run(client_reload);
    expect_resp(0, 202, "reload requested");
    expect_resp(1, 405, "405");
    ck_assert_str_eq(header(&R[1], "Allow"), "POST");
    ck_assert_uint_eq(reload_calls, 1);
    free_resps();
}
END_TEST

/* ==== malformed requests: answered, then closed ==== */

static void client_bad(void)
{
    static const char *const bad[] = {
        "GET /healthz HTTP/1.1\r\n\r\n",                                     /* no Host on 1.1 */
        "garbage\r\n\r\n",                                                   /* no request line */
        "GET /healthz HTTP/1.1\nHost: a\n\n",                                /* bare LF */
        "GET /healthz HTTP/2.0\r\nHost: a\r\n\r\n",                          /* version */
        "POST /stats HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", /* a body */
        "POST /stats HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct client *c = client_open(NULL);
        csends(c, bad[i]);
        if (cread(c, false))
            cexpect_eof(c);
        client_close(c);
    }
    /* a head over 8 KiB */
    struct client *c = client_open(NULL);
    static char big[12000];
    memset(big, 'a', sizeof(big));
    csends(c, "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: ");
    csend(c, big, sizeof(big));
    csends(c, "\r\n\r\n");
    if (cread(c, false))
        cexpect_eof(c);
    client_close(c);
    /* a request after a good one on the same connection: the good one is answered first */
    c = client_open(NULL);
    csends(c, GET("/healthz") "BAD\r\n\r\n" GET("/healthz"));
    cread(c, false);
    if (cread(c, false))
        cexpect_eof(c);
    client_close(c);
}

START_TEST(bad_requests)
{
    run(client_bad);
    ck_assert_int_eq(nresp, 9);
    ck_assert_int_eq(eofs, 8);
    expect_resp(0, 400, "400 Bad Request");
    expect_resp(1, 400, "400");
    expect_resp(2, 400, "400");
    expect_resp(3, 505, "505");
    expect_resp(4, 413, "413");
    expect_resp(5, 413, "413");
    expect_resp(6, 431, "431");
    expect_resp(7, 200, "ok\n");
    expect_resp(8, 400, "400");
    for (int i = 0; i < nresp; i++) {
        if (R[i].status >= 400)
            ck_assert_str_eq(header(&R[i], "Connection"), "close");
    }
    ck_assert_uint_eq(accepted, 8);
    free_resps();
}
END_TEST

/* ==== keep-alive rules ==== */

static void client_versions(void)
{
    struct client *c = client_open(NULL);
    csends(c, "GET /healthz HTTP/1.0\r\n\r\n");
    if (cread(c, false))
        cexpect_eof(c);
    client_close(c);
    c = client_open(NULL);
    csends(c, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    cread(c, false);
    csends(c, GET("/healthz"));
    cread(c, false);
    csends(c, "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    if (cread(c, false))
        cexpect_eof(c);
    client_close(c);
}

START_TEST(keep_alive)
{
    run(client_versions);
    ck_assert_int_eq(nresp, 4);
    ck_assert_int_eq(eofs, 2);
    expect_resp(0, 200, "ok");
    ck_assert_str_eq(header(&R[0], "Connection"), "close");
    expect_resp(1, 200, "ok");
    ck_assert_str_eq(header(&R[1], "Connection"), "keep-alive");
    expect_resp(2, 200, "ok");
    ck_assert_ptr_null(header(&R[2], "Connection"));
    expect_resp(3, 200, "ok");
    ck_assert_str_eq(header(&R[3], "Connection"), "close");
    free_resps();
}
END_TEST

/* ==== pipelining ==== */

static void client_pipeline(void)
{
    struct client *c = client_open(NULL);
    csends(c, GET("/healthz") GET("/nope") "HEAD /readyz HTTP/1.1\r\nHost: a\r\n\r\n" GET(
                  "/stats") "PURGE http://p.example/1 HTTP/1.1\r\nHost: p.example\r\n\r\n" GET("/readyz"));
    cread(c, false);
    cread(c, false);
    cread(c, true);
    cread(c, false);
    cread(c, false);
    cread(c, false);
    client_close(c);
}

START_TEST(pipelined_in_order)
{
    purge_ret[0] = 2;
    run(client_pipeline);
    ck_assert_int_eq(nresp, 6);
    expect_resp(0, 200, "ok\n");
    expect_resp(1, 404, "404");
    ck_assert_int_eq(R[2].status, 200);
    ck_assert_str_eq(header(&R[2], "Content-Length"), "6"); /* "ready\n" */
    expect_resp(3, 200, "\"requests\": 42");
    expect_resp(4, 200, "\"purged\": 2");
    expect_resp(5, 200, "ready\n");
    free_resps();
}
END_TEST

/* Many pipelined /metrics without reading: the server stops at the high-water mark and resumes on
 * DRAIN; every answer still arrives, complete and in order. */
#define FLOOD 300

static void client_flood(void)
{
    struct client *c = client_open(NULL);
    static char reqs[FLOOD * 64];
    size_t n = 0;
    for (int i = 0; i < FLOOD; i++)
        n += (size_t)snprintf(reqs + n, sizeof(reqs) - n, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n",
                              i % 2 == 0 ? "/metrics" : "/healthz");
    csend(c, reqs, n);
    usleep(200 * 1000); /* let the server fill its queue and pause */
    for (int i = 0; i < FLOOD; i++) {
        if (!cread(c, false))
            break;
        free(R[nresp - 1].body); /* keep the status only */
        R[nresp - 1].body = NULL;
        if (R[nresp - 1].status != 200 || R[nresp - 1].blen < (i % 2 == 0 ? 1000 : 3))
            CFAIL("flood response %d: status %d, %zu bytes", i, R[nresp - 1].status, R[nresp - 1].blen);
    }
    client_close(c);
}

START_TEST(pipelined_flood_backpressure)
{
    run(client_flood);
    ck_assert_int_eq(nresp, FLOOD);
    ck_assert_uint_eq(collect_calls, FLOOD / 2);
}
END_TEST

/* ==== timeouts ==== */

static void client_slow(void)
{
    uint64_t t0 = uv_hrtime();
    struct client *c = client_open(NULL);
    csends(c, "GET /healthz HTTP/1.1\r\nHo"); /* and nothing more */
    if (cread(c, false))                      /* 408 */
        cexpect_eof(c);
    client_close(c);
    elapsed_ms = (long)((uv_hrtime() - t0) / 1000000u);
    /* idle after an answer: closed after the same time, silently */
    c = client_open(NULL);
    csends(c, GET("/healthz"));
    cread(c, false);
    cexpect_eof(c);
    client_close(c);
    /* idle right after the accept: the same */
    c = client_open(NULL);
    cexpect_eof(c);
    client_close(c);
    /* trickling bytes does not extend the deadline */
    t0 = uv_hrtime();
    c = client_open(NULL);
    const char *req = GET("/healthz");
    for (size_t i = 0; i < 30; i++) { /* 30 of 39 bytes over 600 ms: never complete */
        csend(c, req + i, 1);
        usleep(20 * 1000);
    }
    if (cread(c, false)) /* 408 */
        cexpect_eof(c);
    client_close(c);
    uint64_t ms = (uv_hrtime() - t0) / 1000000u;
    if (ms > 1500)
        CFAIL("a trickling client held the connection %llu ms", (unsigned long long)ms);
}

START_TEST(timeouts)
{
    ops.timeout_ms = 300;
    run(client_slow);
    ck_assert_int_eq(nresp, 3);
    ck_assert_int_eq(eofs, 4);
    expect_resp(0, 408, "408");
    ck_assert_str_eq(header(&R[0], "Connection"), "close");
    expect_resp(1, 200, "ok");
    expect_resp(2, 408, "408");
    ck_assert_msg(elapsed_ms >= 250 && elapsed_ms < 3000, "closed after %ld ms", elapsed_ms);
    free_resps();
}
END_TEST

/* ==== worker shutdown: connections still open are closed and freed ==== */

static void client_stays(void)
{
    struct client *a = client_open(NULL), *b = client_open(NULL);
    csends(a, GET("/healthz"));
    cread(a, false);
    csends(b, "GET /healthz HTTP/1.1\r\nHost"); /* mid-head */
    usleep(50 * 1000);
    signal_done(); /* the "worker stops" while both are open */
    cexpect_eof(a);
    cexpect_eof(b);
    client_close(a);
    client_close(b);
}

START_TEST(close_all)
{
    close_all_on_done = true;
    run(client_stays);
    ck_assert_int_eq(nresp, 1);
    ck_assert_int_eq(eofs, 2);
    free_resps();
}
END_TEST

/* ==== TLS with required client certificates ==== */

static SSL_CTX *client_with_cert, *client_without_cert;

static void make_pki(void)
{
    fixture_pki_make(false);
}

static void remove_pki(void)
{
    fixture_pki_remove();
}

static SSL_CTX *test_client_ctx(bool cert)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(SSL_CTX_load_verify_locations(ctx, fixture_pki_path("ca.crt"), NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (cert) {
        ck_assert_int_eq(SSL_CTX_use_certificate_chain_file(ctx, fixture_pki_path("edge-client.crt")), 1);
        ck_assert_int_eq(
            SSL_CTX_use_PrivateKey_file(ctx, fixture_pki_path("edge-client.key"), SSL_FILETYPE_PEM), 1);
    }
    return ctx;
}

static void tls_setup(void)
{
    setup();
    make_pki();
    char *err = NULL;
    server_tls = cdn_tls_server_ctx_new(fixture_pki_path("regional.crt"), fixture_pki_path("regional.key"),
                                        CDN_CLIENT_AUTH_REQUIRE, fixture_pki_path("ca.crt"), &err);
    ck_assert_msg(server_tls != NULL, "server ctx: %s", err != NULL ? err : "?");
    client_with_cert = test_client_ctx(true);
    client_without_cert = test_client_ctx(false);
}

static void tls_teardown(void)
{
    SSL_CTX_free(client_with_cert);
    SSL_CTX_free(client_without_cert);
    remove_pki();
    teardown();
}

static void client_tls(void)
{
    struct client *c = client_open(client_with_cert);
    if (c->ssl == NULL) {
        CFAIL("handshake with a client certificate failed");
    } else {
        csends(c, GET("/healthz") GET("/metrics"));
        cread(c, false);
        cread(c, false);
    }
    client_close(c);
    /* without a certificate: refused in the handshake (TLS 1.3: the alert comes with the first read) */
    c = client_open(client_without_cert);
    tls_refused = true;
    if (c->ssl != NULL) {
        csends(c, GET("/healthz"));
        char b[256];
        int k = SSL_read(c->ssl, b, sizeof(b));
        if (k > 0)
            tls_refused = false;
    }
    client_close(c);
}

START_TEST(mtls)
{
    run(client_tls);
    ck_assert_int_eq(nresp, 2);
    expect_resp(0, 200, "ok\n");
    expect_resp(1, 200, "cdn_requests_total{role=\"edge\"} 42\n");
    ck_assert_msg(tls_refused, "a client without a certificate got an HTTP answer");
    ck_assert_uint_eq(accepted, 2);
    free_resps();
}
END_TEST

Suite *suite_admin(void)
{
    Suite *s = suite_create("admin");
    TCase *t = tcase_create("plain");
    tcase_set_timeout(t, 20);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, endpoints);
    tcase_add_test(t, readyz);
    tcase_add_test(t, readyz_without_callback);
    tcase_add_test(t, purge);
    tcase_add_test(t, purge_and_reload_not_configured);
    tcase_add_test(t, reload);
    tcase_add_test(t, bad_requests);
    tcase_add_test(t, keep_alive);
    tcase_add_test(t, pipelined_in_order);
    tcase_add_test(t, pipelined_flood_backpressure);
    tcase_add_test(t, timeouts);
    tcase_add_test(t, close_all);
    suite_add_tcase(s, t);
    TCase *tls = tcase_create("tls");
    tcase_set_timeout(tls, 30);
    tcase_add_checked_fixture(tls, tls_setup, tls_teardown);
    tcase_add_test(tls, mtls);
    suite_add_tcase(s, tls);
    return s;
}
