/*
 * origin: the scripted origin server used by the e2e suite and `make run`.
 *
 * Plain HTTP/1.1 on one libuv loop, with keep-alive and pipelining (requests on a connection are
 * answered one after the other, in order). Every generated body streams with backpressure: pieces of
 * at most 64 KiB are queued only while the socket's write queue is under WQ_HIGH, and reading stops
 * while it is over, so a 1 GiB response or an echoed upload keeps memory flat.
 *
 * Generated bodies share one pattern, so a test can compute the expected bytes by itself:
 * byte i is PATTERN[i % 36], PATTERN = "0123456789abcdefghijklmnopqrstuvwxyz"; the first N bytes are
 *     yes 0123456789abcdefghijklmnopqrstuvwxyz | tr -d '\n' | head -c N
 *
 * Every request whose head parses is appended to --log as "METHOD TARGET" and flushed at once: tests
 * count those lines to prove what reached the origin. A malformed head gets 400 (431/501/505 where
 * the parser says so) with Connection: close, and is not logged. See usage() for the endpoints.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "lib/http1.h"
#include "lib/util.h"

#define PATTERN      "0123456789abcdefghijklmnopqrstuvwxyz"
#define PATTERN_LEN  36
#define PIECE        (64 * 1024)  /* largest body write */
#define WQ_HIGH      (256 * 1024) /* write queue (bytes the kernel has not taken) over this: pause */
#define IN_CAP       (256 * 1024) /* input buffer cap: a head plus pipelined requests or body bytes */
#define MAX_HEAD     (64 * 1024)
#define LINGER_MS    2000 /* after our FIN, read and drop the peer's bytes this long so it sees no RST */
#define MAX_SLOW_MS  600000
#define MAX_BODY_LEN (UINT64_C(1) << 40)
#define CONN_MAGIC   0x0a19e001u

enum framing {
    FR_LENGTH,  /* Content-Length */
    FR_CHUNKED, /* Transfer-Encoding: chunked */
    FR_EOF,     /* neither; the body ends when we close */
    FR_NONE,    /* 204/304: no body and no framing header */
};

enum source {
    SRC_NONE,    /* the whole response was queued with the head */
    SRC_PATTERN, /* gen_total pattern bytes */
    SRC_ECHO,    /* the request body */
    SRC_SLOW,    /* the timer answers */
};

struct conn {
    uint32_t magic;
    struct conn *prev, *next; /* all live connections, closed on SIGTERM */
    uv_tcp_t tcp;
    uv_timer_t timer; /* /slow/MS, then the lingering close */
    uv_shutdown_t shutdown_req;
    unsigned open_handles;
    bool closing, shutting, lingering, reading, peer_eof;

    char *in;
    size_t in_len, in_size;

    /* the request being answered */
    bool active, head_only, http10, close_after;
    enum cdn_http_body_kind body_kind;
    uint64_t body_left;
    bool body_done;
    struct cdn_http_chunked dec;
    char *extra; /* response headers asked for with hdr=, "Name: Value\r\n"... */

    /* its response */
    enum source src;
    enum framing framing;
    bool resp_done;
    uint64_t gen_total, gen_off;
    unsigned chunk_idx;
};

struct wreq {
    uv_write_t req;
    char *heap; /* freed when the write completes */
    char small[24];
};

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sig_term, sig_int;
static struct conn *conns;
static FILE *log_file;
static bool stopping;
static char pattern_buf[PIECE + PATTERN_LEN];
static char crlf[] = "\r\n";
static char last_chunk[] = "0\r\n\r\n";
static const size_t chunk_sizes[] = {1, 7, 4096, 65536};
static const struct cdn_http_limits limits = {MAX_HEAD, CDN_HTTP_MAX_HEADERS};
static struct cdn_http_request parsed; /* single-threaded: one parse at a time */

static void conn_pump(struct conn *c);
static void conn_close(struct conn *c);

static size_t write_queue(struct conn *c)
{
    return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
}

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = req->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    free(w->heap);
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_pump(c);
}

/* Queues bufs[0..n). heap (may be NULL) is freed once written; the bufs must stay valid until then. */
static void send_bufs(struct conn *c, struct wreq *w, uv_buf_t *bufs, unsigned n)
{
    w->req.data = c;
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, n, on_write);
    if (rc < 0) {
        free(w->heap);
        free(w);
        conn_close(c);
    }
}

static void send_copy(struct conn *c, const char *p, size_t n)
{
    struct wreq *w = cdn_xcalloc(1, sizeof(*w));
    w->heap = cdn_xmalloc(n ? n : 1);
    memcpy(w->heap, p, n);
    uv_buf_t b = uv_buf_init(w->heap, (unsigned)n);
    send_bufs(c, w, &b, 1);
}

/* One chunk: size line + data + CRLF. data is copied unless it is static (the pattern). */
static void send_chunk(struct conn *c, const char *data, size_t n, bool copy)
{
    struct wreq *w = cdn_xcalloc(1, sizeof(*w));
    int hl = snprintf(w->small, sizeof(w->small), "%zx\r\n", n);
    char *p = (char *)data;
    if (copy) {
        w->heap = cdn_xmalloc(n);
        memcpy(w->heap, data, n);
        p = w->heap;
    }
    uv_buf_t b[3] = {uv_buf_init(w->small, (unsigned)hl), uv_buf_init(p, (unsigned)n), uv_buf_init(crlf, 2)};
    send_bufs(c, w, b, 3);
}

static void send_static(struct conn *c, char *p, size_t n)
{
    struct wreq *w = cdn_xcalloc(1, sizeof(*w));
    uv_buf_t b = uv_buf_init(p, (unsigned)n);
    send_bufs(c, w, &b, 1);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    if (--c->open_handles != 0)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c->in);
    free(c->extra);
    c->magic = 0;
    free(c);
}

/* Idempotent. Pending writes complete with UV_ECANCELED before the handles' close callbacks. */
static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_linger_timeout(uv_timer_t *t)
{
    struct conn *c = t->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char drop[PIECE];
    struct conn *c = h->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    if (c->lingering) {
        *buf = uv_buf_init(drop, sizeof(drop));
        return;
    }
    if (c->in_size - c->in_len < 16384 && c->in_size < IN_CAP) {
        c->in_size = c->in_size * 2 < IN_CAP ? c->in_size * 2 : IN_CAP;
        c->in = cdn_xrealloc(c->in, c->in_size);
    }
    if (c->in_len == c->in_size) {
        *buf = uv_buf_init(NULL, 0); /* UV_ENOBUFS: reading should have been stopped */
        return;
    }
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_size - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    if (c->closing || nread == 0)
        return;
    if (c->lingering) {
        if (nread < 0)
            conn_close(c);
        return;
    }
    if (nread < 0) {
        if (nread != UV_EOF) {
            conn_close(c);
            return;
        }
        c->peer_eof = true;
        uv_read_stop(s);
        c->reading = false;
        conn_pump(c);
        return;
    }
    c->in_len += (size_t)nread;
    conn_pump(c);
}

/* Reads while there is room for input and the peer is reading our output; always while lingering. */
static void update_reading(struct conn *c)
{
    if (c->closing)
        return;
    bool want =
        !c->peer_eof && (c->lingering || (!c->shutting && c->in_len < IN_CAP && write_queue(c) < WQ_HIGH));
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            conn_close(c);
            return;
        }
        c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    if (c->closing)
        return;
    if (status < 0 || c->peer_eof) {
        conn_close(c);
        return;
    }
    /* Closing with unread input would send an RST, and the peer could lose the response it has not
     * read yet: drop whatever it still sends until it closes, or LINGER_MS. */
    c->lingering = true;
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, on_linger_timeout, LINGER_MS, 0);
    update_reading(c);
}

/* FIN once every queued write is out, then linger. */
static void conn_shutdown(struct conn *c)
{
    if (c->closing || c->shutting)
        return;
    c->shutting = true;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        conn_close(c);
}

static void consume(struct conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

static void send_head(struct conn *c, int status, const char *ctype, enum framing fr, uint64_t len)
{
    char framing_line[64] = "";
    if (fr == FR_LENGTH)
        snprintf(framing_line, sizeof(framing_line), "Content-Length: %" PRIu64 "\r\n", len);
    else if (fr == FR_CHUNKED)
        snprintf(framing_line, sizeof(framing_line), "Transfer-Encoding: chunked\r\n");
    else if (fr == FR_EOF)
        c->close_after = true;
    c->framing = fr;
    const char *conn_line = c->close_after ? "Connection: close\r\n"
                            : c->http10    ? "Connection: keep-alive\r\n"
                                           : "";
    struct wreq *w = cdn_xcalloc(1, sizeof(*w));
    w->heap = cdn_xasprintf("HTTP/1.1 %d %s\r\nServer: cdn-test-origin\r\n%s%s%s%s%s%s\r\n", status,
                            cdn_http1_reason(status), ctype ? "Content-Type: " : "", ctype ? ctype : "",
                            ctype ? "\r\n" : "", framing_line, conn_line, c->extra ? c->extra : "");
    uv_buf_t b = uv_buf_init(w->heap, (unsigned)strlen(w->heap));
    send_bufs(c, w, &b, 1);
}

/* A complete response whose body is known now. */
static void send_fixed(struct conn *c, int status, const char *body, size_t len)
{
    bool no_body = status == 204 || status == 304;
    send_head(c, status, no_body ? NULL : "text/plain", no_body ? FR_NONE : FR_LENGTH, len);
    if (!no_body && !c->head_only && len > 0)
        send_copy(c, body, len);
    c->src = SRC_NONE;
    c->resp_done = true;
}

/* Answers status, then closes: the connection's framing can no longer be trusted. */
static void send_error(struct conn *c, int status)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, cdn_http1_reason(status));
    uv_timer_stop(&c->timer);
    free(c->extra);
    c->extra = NULL;
    c->active = true;
    c->head_only = false;
    c->close_after = true;
    c->body_done = true;
    send_fixed(c, status, body, (size_t)n);
    conn_shutdown(c);
}

static void on_slow(uv_timer_t *t)
{
    struct conn *c = t->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    if (c->closing || c->src != SRC_SLOW)
        return;
    send_fixed(c, 200, "slow\n", 5);
    conn_pump(c);
}

static void echo_data(struct conn *c, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (c->framing == FR_CHUNKED)
        send_chunk(c, p, n, true);
    else
        send_copy(c, p, n);
}

static bool parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 19)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* Adds one "hdr=Name:Value" parameter (value %XX-decoded) to c->extra. Invalid ones are dropped. */
static void add_query_header(struct conn *c, const char *v, size_t n)
{
    char *d = cdn_xmalloc(n + 1);
    size_t dl = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (v[i] == '%' && i + 2 < n && (hi = hexval(v[i + 1])) >= 0 && (lo = hexval(v[i + 2])) >= 0) {
            d[dl++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            d[dl++] = v[i];
        }
    }
    d[dl] = '\0';
    char *colon = memchr(d, ':', dl);
    bool ok = colon != NULL && colon != d;
    for (char *p = d; ok && p < colon; p++)
        ok = is_tchar((unsigned char)*p);
    char *val = ok ? colon + 1 : d;
    while (ok && (*val == ' ' || *val == '\t'))
        val++;
    for (char *p = val; ok && *p; p++)
        ok = (unsigned char)*p >= 0x20 ? *p != 0x7f : *p == '\t';
    if (ok && strlen(d) == dl) {
        char *line = cdn_xasprintf("%s%.*s: %s\r\n", c->extra ? c->extra : "", (int)(colon - d), d, val);
        free(c->extra);
        c->extra = line;
    }
    free(d);
}

static void parse_query(struct conn *c, const char *q, size_t n)
{
    while (n > 0) {
        const char *amp = memchr(q, '&', n);
        size_t len = amp ? (size_t)(amp - q) : n;
        if (len > 4 && memcmp(q, "hdr=", 4) == 0)
            add_query_header(c, q + 4, len - 4);
        if (amp == NULL)
            break;
        n -= len + 1;
        q = amp + 1;
    }
}

static bool path_is(const char *path, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(path, want, n) == 0;
}

/* If path starts with prefix, points *rest at what follows. */
static bool path_prefix(const char *path, size_t n, const char *prefix, const char **rest, size_t *rest_len)
{
    size_t pl = strlen(prefix);
    if (n < pl || memcmp(path, prefix, pl) != 0)
        return false;
    *rest = path + pl;
    *rest_len = n - pl;
    return true;
}

static void start_pattern(struct conn *c, enum framing fr, uint64_t n)
{
    send_head(c, 200, "application/octet-stream", fr, n);
    if (c->head_only) {
        c->resp_done = true;
        return;
    }
    c->src = SRC_PATTERN;
    c->gen_total = n;
}

static void route(struct conn *c, const struct cdn_http_request *r, size_t head_len, const char *path,
                  size_t plen)
{
    const char *rest;
    size_t rl;
    uint64_t v;

    if (path_prefix(path, plen, "/bytes/", &rest, &rl)) {
        if (!parse_u64(rest, rl, MAX_BODY_LEN, &v))
            send_fixed(c, 400, "bad length\n", 11);
        else
            start_pattern(c, FR_LENGTH, v);
    } else if (path_prefix(path, plen, "/chunked/", &rest, &rl)) {
        if (!parse_u64(rest, rl, MAX_BODY_LEN, &v))
            send_fixed(c, 400, "bad length\n", 11);
        else
            start_pattern(c, c->http10 ? FR_EOF : FR_CHUNKED, v);
    } else if (path_prefix(path, plen, "/eof/", &rest, &rl)) {
        if (!parse_u64(rest, rl, MAX_BODY_LEN, &v))
            send_fixed(c, 400, "bad length\n", 11);
        else
            start_pattern(c, FR_EOF, v);
    } else if (path_prefix(path, plen, "/status/", &rest, &rl)) {
        if (!parse_u64(rest, rl, 599, &v) || rl != 3 || v < 200) {
            send_fixed(c, 400, "bad status\n", 11);
        } else {
            char body[64];
            int n = snprintf(body, sizeof(body), "%d %s\n", (int)v, cdn_http1_reason((int)v));
            send_fixed(c, (int)v, body, (size_t)n);
        }
    } else if (path_is(path, plen, "/headers")) {
        /* request line + header lines as received, without the empty line */
        size_t start = (size_t)(r->method - c->in);
        send_fixed(c, 200, r->method, head_len - 2 - start);
    } else if (path_is(path, plen, "/echo")) {
        if (r->body_kind == CDN_HTTP_BODY_CHUNKED)
            send_head(c, 200, "application/octet-stream", FR_CHUNKED, 0);
        else
            send_head(c, 200, "application/octet-stream", FR_LENGTH, c->body_left);
        if (c->head_only || c->body_done)
            c->resp_done = true;
        else
            c->src = SRC_ECHO;
    } else if (path_prefix(path, plen, "/slow/", &rest, &rl)) {
        if (!parse_u64(rest, rl, MAX_SLOW_MS, &v)) {
            send_fixed(c, 400, "bad delay\n", 10);
        } else {
            c->src = SRC_SLOW;
            uv_timer_start(&c->timer, on_slow, v, 0);
        }
    } else {
        char *body = cdn_xasprintf("origin: %.*s\n", (int)r->target_len, r->target);
        send_fixed(c, 200, body, strlen(body));
        free(body);
    }
}

static void start_request(struct conn *c, const struct cdn_http_request *r, size_t head_len)
{
    static char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

    if (log_file != NULL) {
        fprintf(log_file, "%.*s %.*s\n", (int)r->method_len, r->method, (int)r->target_len, r->target);
        fflush(log_file);
    }
    c->active = true;
    c->head_only = r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;
    c->http10 = r->minor_version == 0;
    c->close_after = !r->keep_alive;
    c->body_kind = r->body_kind;
    c->body_left = r->body_kind == CDN_HTTP_BODY_LENGTH ? r->content_length : 0;
    c->body_done =
        r->body_kind == CDN_HTTP_BODY_NONE || (r->body_kind == CDN_HTTP_BODY_LENGTH && c->body_left == 0);
    cdn_http1_chunked_init(&c->dec);
    c->src = SRC_NONE;
    c->resp_done = false;
    c->gen_total = c->gen_off = 0;
    c->chunk_idx = 0;

    const char *path = r->path;
    size_t plen = r->path_len;
    const char *q = memchr(path, '?', plen);
    if (q != NULL) {
        parse_query(c, q + 1, plen - (size_t)(q + 1 - path));
        plen = (size_t)(q - path);
    }
    if (r->expect_continue && !c->body_done && !c->http10)
        send_static(c, continue_line, sizeof(continue_line) - 1);
    route(c, r, head_len, path, plen);
}

static void request_reset(struct conn *c)
{
    c->active = false;
    c->src = SRC_NONE;
    free(c->extra);
    c->extra = NULL;
}

/* Consumes request body bytes: echoed when the response is the echo, dropped otherwise.
 * Returns false when the connection was given up. */
static bool body_step(struct conn *c)
{
    while (!c->body_done && c->in_len > 0 && !c->closing) {
        bool echo = c->src == SRC_ECHO;
        if (echo && write_queue(c) >= WQ_HIGH)
            return true;
        if (c->body_kind == CDN_HTTP_BODY_LENGTH) {
            size_t n = c->in_len < c->body_left ? c->in_len : (size_t)c->body_left;
            if (echo)
                echo_data(c, c->in, n);
            consume(c, n);
            c->body_left -= n;
            c->body_done = c->body_left == 0;
            continue;
        }
        size_t used = 0, dlen = 0;
        const char *data = NULL;
        int rc = cdn_http1_chunked_decode(&c->dec, c->in, c->in_len, &used, &data, &dlen);
        if (rc == CDN_HTTP_EBAD || (rc < 0 && rc != CDN_HTTP_EAGAIN)) {
            if (c->src == SRC_SLOW)
                send_error(c, 400); /* nothing of the response is out yet */
            else
                conn_close(c);
            return false;
        }
        if (rc == 0 && echo)
            echo_data(c, data, dlen);
        consume(c, used);
        if (rc == 1)
            c->body_done = true;
        if (rc == CDN_HTTP_EAGAIN)
            break;
    }
    if (c->body_done && c->src == SRC_ECHO) {
        if (c->framing == FR_CHUNKED)
            send_static(c, last_chunk, sizeof(last_chunk) - 1);
        c->src = SRC_NONE;
        c->resp_done = true;
    }
    return true;
}

/* Queues pattern pieces while the peer keeps up. */
static void resp_step(struct conn *c)
{
    while (c->src == SRC_PATTERN && !c->closing && write_queue(c) < WQ_HIGH) {
        uint64_t left = c->gen_total - c->gen_off;
        if (left == 0) {
            if (c->framing == FR_CHUNKED)
                send_static(c, last_chunk, sizeof(last_chunk) - 1);
            c->src = SRC_NONE;
            c->resp_done = true;
            break;
        }
        size_t n = c->framing == FR_CHUNKED ? chunk_sizes[c->chunk_idx++ % 4] : PIECE;
        if (n > left)
            n = (size_t)left;
        char *p = pattern_buf + c->gen_off % PATTERN_LEN;
        if (c->framing == FR_CHUNKED)
            send_chunk(c, p, n, false);
        else
            send_static(c, p, n);
        c->gen_off += n;
    }
}

/* Drives the connection: parse the next request, move body bytes, produce response bytes, and
 * go on to the next pipelined request once both directions of the current one are done. */
static void conn_pump(struct conn *c)
{
    while (!c->closing && !c->shutting) {
        if (!c->active) {
            if (c->in_len == 0) {
                if (c->peer_eof)
                    conn_shutdown(c);
                break;
            }
            int rc = cdn_http1_parse_request(c->in, c->in_len, &limits, &parsed);
            if (rc == CDN_HTTP_EAGAIN) {
                if (c->peer_eof)
                    conn_shutdown(c);
                else if (c->in_len >= IN_CAP)
                    send_error(c, 431);
                break;
            }
            if (rc < 0) {
                send_error(c, -rc);
                break;
            }
            start_request(c, &parsed, (size_t)rc);
            consume(c, (size_t)rc);
        }
        if (c->closing || !body_step(c))
            break;
        resp_step(c);
        if (c->closing)
            break;
        if (!c->body_done && c->peer_eof && c->in_len == 0) {
            conn_close(c); /* the request body was cut short */
            break;
        }
        if (!c->resp_done)
            break;
        if (c->close_after) {
            conn_shutdown(c);
            break;
        }
        if (!c->body_done)
            break;
        request_reset(c);
    }
    update_reading(c);
}

static void on_connection(uv_stream_t *s, int status)
{
    if (status < 0 || stopping)
        return;
    struct conn *c = cdn_xcalloc(1, sizeof(*c));
    c->magic = CONN_MAGIC;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->next = conns;
    if (conns != NULL)
        conns->prev = c;
    conns = c;
    c->in_size = 16384;
    c->in = cdn_xmalloc(c->in_size);
    if (uv_accept(s, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    update_reading(c);
}

static void on_signal(uv_signal_t *h, int signum)
{
    if (stopping)
        return;
    stopping = true;
    uv_close((uv_handle_t *)&server, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    for (struct conn *c = conns; c != NULL; c = c->next)
        conn_close(c);
}

static int write_ports_file(const char *path, int port)
{
    char *tmp = cdn_xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int rc = -1;
    if (f != NULL) {
        bool ok = fprintf(f, "http %d\n", port) > 0;
        if (fclose(f) == 0 && ok && rename(tmp, path) == 0)
            rc = 0;
    }
    if (rc < 0)
        fprintf(stderr, "origin: %s: %s\n", path, strerror(errno));
    free(tmp);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: origin [--address 127.0.0.1] [--port N] [--ports-file FILE] [--log FILE]\n"
               "Test origin (plain HTTP/1.1). Body pattern: byte i = \"" PATTERN "\"[i %% 36].\n"
               "  /bytes/N      200, N pattern bytes, Content-Length\n"
               "  /chunked/N    200, N pattern bytes, chunked (chunk sizes 1, 7, 4096, 65536 cycling)\n"
               "  /eof/N        200, N pattern bytes, no length, Connection: close\n"
               "  /status/NNN   that status (200..599), short body (none for 204/304)\n"
               "  /headers      200, body = the request line and header lines as received\n"
               "  /echo         200, body = the request body (Content-Length in, Content-Length out;\n"
               "                chunked in, chunked out)\n"
               "  /slow/MS      200 \"slow\\n\" after MS milliseconds\n"
               "  anything else 200 \"origin: TARGET\\n\"\n"
               "  ?hdr=Name:Value (repeatable, %%XX-decoded, '+' stays '+') adds a response header to any\n"
               "                of them; names must be tokens, values printable.\n"
               "Each request is logged to --log as \"METHOD TARGET\". --port 0 picks a free port; the\n"
               "ports file then gets \"http PORT\".\n");
}

int main(int argc, char **argv)
{
    const char *address = "127.0.0.1", *ports_file = NULL, *log_path = NULL;
    int port = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        uint64_t p;
        if (strcmp(a, "--address") == 0) {
            address = v;
        } else if (strcmp(a, "--port") == 0 && parse_u64(v, strlen(v), 65535, &p)) {
            port = (int)p;
        } else if (strcmp(a, "--ports-file") == 0) {
            ports_file = v;
        } else if (strcmp(a, "--log") == 0) {
            log_path = v;
        } else {
            usage(stderr);
            return 2;
        }
    }

    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof(pattern_buf); i++)
        pattern_buf[i] = PATTERN[i % PATTERN_LEN];
    if (log_path != NULL && (log_file = fopen(log_path, "a")) == NULL) {
        fprintf(stderr, "origin: %s: %s\n", log_path, strerror(errno));
        return 1;
    }

    loop = uv_default_loop();
    struct sockaddr_storage ss;
    int rc = uv_ip4_addr(address, port, (struct sockaddr_in *)&ss);
    if (rc < 0)
        rc = uv_ip6_addr(address, port, (struct sockaddr_in6 *)&ss);
    if (rc < 0) {
        fprintf(stderr, "origin: bad address %s\n", address);
        return 1;
    }
    uv_tcp_init(loop, &server);
    rc = uv_tcp_bind(&server, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, 512, on_connection);
    if (rc < 0) {
        fprintf(stderr, "origin: listen on %s port %d: %s\n", address, port, uv_strerror(rc));
        return 1;
    }
    int namelen = sizeof(ss);
    uv_tcp_getsockname(&server, (struct sockaddr *)&ss, &namelen);
    int bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    if (ports_file != NULL && write_ports_file(ports_file, bound) < 0)
        return 1;
    fprintf(stderr, "origin: listening on %s:%d\n", address, bound);

    uv_run(loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(loop);
    if (log_file != NULL)
        fclose(log_file);
    if (rc != 0) {
        fprintf(stderr, "origin: loop not empty at exit: %s\n", uv_strerror(rc));
        return 1;
    }
    return 0;
}
