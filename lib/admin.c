/*
 * admin: see admin.h. One session per admin connection, all of them on a per-thread list so that a
 * stopping worker can free them (cdn_conn_close_all alone would close the connections but leak the
 * sessions: a closed conn sends its owner no event).
 *
 * Every answer is produced synchronously inside the READ event that completed its request head, so
 * pipelined requests are answered in order by construction: the loop in process() parses, answers
 * and consumes one head at a time, corked, so a burst of requests leaves as few writes. It stops
 * when the head is incomplete, when the connection must close, or when the output is above lib/conn's
 * high-water mark (then reading pauses until the DRAIN event: a client that pipelines requests but
 * never reads cannot make us buffer without bound; the timer closes it).
 *
 * The timer is armed at accept and re-armed after each answered request, never on mere bytes: the
 * TLS handshake plus the first head, and each later head, must complete within timeout_ms, so a
 * client trickling bytes cannot hold a connection longer than that.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/admin.h"
#include "lib/conn.h"
#include "lib/http1.h"
#include "lib/log.h"
#include "lib/util.h"

#define ADMIN_MAGIC  0x61646d6eu
#define ADMIN_IN_CAP (2u * CDN_ADMIN_MAX_HEAD) /* room for a pipelined head behind a full one */

struct admin_session {
    uint32_t magic;
    struct cdn_conn *c;
    struct cdn_admin_ops ops;
    bool open; /* TLS handshake done (or plain): later errors are the client's business */
    struct admin_session *prev, *next;
};

static _Thread_local struct admin_session *sessions;
static _Thread_local size_t nsessions;

static const struct cdn_http_limits admin_limits = {.max_head_size = CDN_ADMIN_MAX_HEAD, .max_headers = 64};

static void session_free(struct admin_session *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    nsessions--;
    s->magic = 0;
    free(s);
}

/* Flushes what was answered, then FIN; the conn frees itself. */
static void session_end(struct admin_session *s)
{
    cdn_conn_end(s->c);
    session_free(s);
}

static void session_close(struct admin_session *s)
{
    cdn_conn_close(s->c);
    session_free(s);
}

/* ---- answers ---- */

struct answer {
    int status;
    const char *ctype; /* NULL = text/plain */
    const char *allow; /* Allow header of a 405 */
    struct cdn_buf body;
};

static void answer_init(struct answer *a, int status)
{
    memset(a, 0, sizeof(*a));
    a->status = status;
    cdn_buf_init(&a->body);
}

static void answer_text(struct answer *a, int status, const char *text)
{
    a->status = status;
    a->ctype = NULL;
    a->body.len = a->body.off = 0;
    cdn_buf_append(&a->body, text, strlen(text));
}

/* "<status> <reason>\n" as text/plain. */
static void answer_status(struct answer *a, int status)
{
    char t[96];
    snprintf(t, sizeof(t), "%d %s\n", status, cdn_http1_reason(status));
    answer_text(a, status, t);
}

/* Writes a's head (and body unless head_only) and disposes of a. */
static void send_answer(struct admin_session *s, struct answer *a, bool head_only, bool keep, int minor)
{
    char date[40];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n%s%s%s%s\r\n",
                     a->status, cdn_http1_reason(a->status), date,
                     a->ctype != NULL ? a->ctype : "text/plain; charset=utf-8", a->body.len,
                     a->allow != NULL ? "Allow: " : "", a->allow != NULL ? a->allow : "",
                     a->allow != NULL ? "\r\n" : "",
                     !keep        ? "Connection: close\r\n"
                     : minor == 0 ? "Connection: keep-alive\r\n"
                                  : "");
    CDN_ASSERT(n > 0 && (size_t)n < sizeof(head));
    cdn_conn_write(s->c, head, (size_t)n);
    if (!head_only && a->body.len > 0)
        cdn_conn_write(s->c, cdn_buf_data(&a->body), a->body.len);
    cdn_buf_dispose(&a->body);
}

/* ---- purge ---- */

static bool url_char_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

/* An absolute http(s) URL with a non-empty authority and no space or control byte. */
static bool purge_url_ok(const char *u, size_t n)
{
    size_t skip;
    if (n >= 7 && cdn_strieq(u, 7, "http://"))
        skip = 7;
    else if (n >= 8 && cdn_strieq(u, 8, "https://"))
        skip = 8;
    else
        return false;
    if (skip == n || u[skip] == '/' || u[skip] == '?' || u[skip] == '#')
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!url_char_ok((unsigned char)u[i]))
            return false;
    }
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The percent-decoded value of query parameter "url" in q[0..n) (heap, NUL-terminated; *len set), or
 * NULL when it is missing, empty or badly encoded. */
static char *query_url(const char *q, size_t n, size_t *len)
{
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && q[e] != '&')
            e++;
        if (e - i > 4 && memcmp(q + i, "url=", 4) == 0) {
            char *out = cdn_xmalloc(e - i);
            size_t k = 0;
            for (size_t j = i + 4; j < e; j++) {
                if (q[j] != '%') {
                    out[k++] = q[j];
                    continue;
                }
                int hi = j + 2 < e ? hexval(q[j + 1]) : -1, lo = j + 2 < e ? hexval(q[j + 2]) : -1;
                if (hi < 0 || lo < 0) {
                    free(out);
                    return NULL;
                }
                out[k++] = (char)(hi << 4 | lo);
                j += 2;
            }
            out[k] = '\0';
            *len = k;
            return out;
        }
        i = e + 1;
    }
    return NULL;
}

static void do_purge(struct admin_session *s, struct answer *a, const char *url, size_t len)
{
    if (s->ops.purge == NULL) {
        answer_text(a, 501, "this node has no cache\n");
        return;
    }
    if (!purge_url_ok(url, len)) {
        answer_text(a, 400, "purge needs an absolute http:// or https:// URL\n");
        return;
    }
    char *u = cdn_xstrndup(url, len); /* NUL-terminated for the callback */
    int n = s->ops.purge(s->ops.ctx, u, len);
    a->status = n > 0 ? 200 : n == 0 ? 404 : 500;
    a->ctype = "application/json";
    cdn_buf_append(&a->body, "{\"url\": ", 8);
    cdn_stats_json_str(&a->body, u, len);
    char tail[160];
    int k;
    if (n >= 0) {
        k = snprintf(tail, sizeof(tail), ", \"purged\": %d}\n", n);
    } else {
        k = snprintf(tail, sizeof(tail), ", \"error\": ");
        cdn_buf_append(&a->body, tail, (size_t)k);
        const char *e = cdn_strerror(n);
        cdn_stats_json_str(&a->body, e, strlen(e));
        k = snprintf(tail, sizeof(tail), "}\n");
    }
    cdn_buf_append(&a->body, tail, (size_t)k);
    free(u);
}

/* ---- routing ---- */

static bool method_is(const struct cdn_http_request *r, const char *m)
{
    size_t n = strlen(m);
    return r->method_len == n && memcmp(r->method, m, n) == 0;
}

static void render_stats(struct admin_session *s, struct answer *a, bool prometheus)
{
    struct cdn_stats sum;
    struct cdn_stats_extra x;
    cdn_stats_init(&sum);
    cdn_stats_extra_init(&x);
    s->ops.collect(s->ops.ctx, &sum, &x);
    if (prometheus) {
        a->ctype = "text/plain; version=0.0.4; charset=utf-8";
        cdn_stats_render_prometheus(&sum, &x, s->ops.role, &a->body);
    } else {
        a->ctype = "application/json";
        cdn_stats_render_json(&sum, &x, s->ops.role, &a->body);
    }
    cdn_stats_extra_dispose(&x);
}

/* Answers one parsed request; returns false when the connection must close after it. */
static bool handle(struct admin_session *s, const struct cdn_http_request *req)
{
    struct answer a;
    answer_init(&a, 200);
    bool keep = req->keep_alive, head_only = method_is(req, "HEAD");
    bool get = head_only || method_is(req, "GET");
    size_t plen = 0;
    while (plen < req->path_len && req->path[plen] != '?')
        plen++;
#define PATH_IS(p) (plen == sizeof(p) - 1 && memcmp(req->path, p, plen) == 0)

    if (req->body_kind == CDN_HTTP_BODY_CHUNKED ||
        (req->body_kind == CDN_HTTP_BODY_LENGTH && req->content_length > 0)) {
        answer_status(&a, 413); /* we never read a body: its bytes would be taken for the next head */
        keep = false;
    } else if (method_is(req, "PURGE")) {
        const char *t = req->target;
        size_t n = req->target_len;
        if (n > 1 && t[0] == '/' && t[1] != '/') { /* "PURGE /http://host/path" */
            t++;
            n--;
        }
        do_purge(s, &a, t, n);
    } else if (PATH_IS("/healthz") || PATH_IS("/readyz") || PATH_IS("/stats") || PATH_IS("/metrics")) {
        if (!get) {
            answer_status(&a, 405);
            a.allow = "GET, HEAD";
        } else if (PATH_IS("/healthz")) {
            answer_text(&a, 200, "ok\n");
        } else if (PATH_IS("/readyz")) {
            bool ready = s->ops.ready == NULL || s->ops.ready(s->ops.ctx);
            answer_text(&a, ready ? 200 : 503, ready ? "ready\n" : "not ready\n");
        } else {
            render_stats(s, &a, PATH_IS("/metrics"));
        }
    } else if (PATH_IS("/purge")) {
        size_t ulen = 0;
        char *u = NULL;
        if (!method_is(req, "DELETE")) {
            answer_status(&a, 405);
            a.allow = "DELETE";
        } else if (plen == req->path_len ||
                   (u = query_url(req->path + plen + 1, req->path_len - plen - 1, &ulen)) == NULL) {
            answer_text(&a, 400, "DELETE /purge needs ?url=<percent-encoded absolute URL>\n");
        } else {
            do_purge(s, &a, u, ulen);
        }
        free(u);
    } else if (PATH_IS("/reload") && s->ops.reload != NULL) {
        if (!method_is(req, "POST")) {
            answer_status(&a, 405);
            a.allow = "POST";
        } else if (s->ops.reload(s->ops.ctx) == 0) {
            answer_text(&a, 202, "reload requested\n");
        } else {
            answer_text(&a, 500, "reload refused\n");
        }
    } else {
        answer_status(&a, 404);
    }
#undef PATH_IS
    send_answer(s, &a, head_only, keep, req->minor_version);
    return keep;
}

/* Parses and answers every complete head in c->in. */
static void process(struct admin_session *s)
{
    struct cdn_conn *c = s->c;
    bool end = false;
    cdn_conn_cork(c);
    while (c->in.len > 0) {
        if (cdn_conn_congested(c)) {
            cdn_conn_read_stop(c); /* DRAIN restarts it */
            break;
        }
        struct cdn_http_request req;
        int n = cdn_http1_parse_request(cdn_buf_data(&c->in), c->in.len, &admin_limits, &req);
        if (n == CDN_HTTP_EAGAIN && c->in.len < c->in_cap)
            break;
        if (n <= 0) {
            struct answer a;
            answer_init(&a, 400);
            answer_status(&a, n == CDN_HTTP_EAGAIN ? 431 : n < 0 ? -n : 400);
            send_answer(s, &a, false, false, 1);
            end = true;
            break;
        }
        bool keep = handle(s, &req);
        cdn_buf_consume(&c->in, (size_t)n);
        if (!keep) {
            end = true;
            break;
        }
        cdn_conn_set_timeout(c, s->ops.timeout_ms);
    }
    cdn_conn_uncork(c);
    if (end)
        session_end(s);
}

static void on_conn(struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    struct admin_session *s = c->data;
    CDN_CHECK_OBJ(s, ADMIN_MAGIC);
    switch (ev) {
    case CDN_CONN_EV_OPEN:
        s->open = true;
        break;
    case CDN_CONN_EV_READ:
        s->open = true;
        process(s);
        break;
    case CDN_CONN_EV_DRAIN:
        cdn_conn_read_start(c); /* buffered heads come back as a READ */
        break;
    case CDN_CONN_EV_EOF:
        session_end(s); /* answers already queued still leave; a partial head is dropped */
        break;
    case CDN_CONN_EV_TIMEOUT:
        if (s->open && c->in.len > 0) { /* a head started but did not complete in time */
            struct answer a;
            answer_init(&a, 408);
            answer_status(&a, 408);
            send_answer(s, &a, false, false, 1);
        }
        session_end(s);
        break;
    case CDN_CONN_EV_ERROR:
        if (!s->open) {
            cdn_log(CDN_LOG_INFO, "admin: conn=%llu peer=%s: TLS handshake failed: %s",
                    (unsigned long long)c->id, c->peer, c->err);
            session_end(s); /* flush the alert */
        } else {
            session_close(s);
        }
        break;
    }
}

int cdn_admin_accept(uv_stream_t *listener, SSL_CTX *ctx, const struct cdn_admin_ops *ops)
{
    CDN_ASSERT(ops != NULL && ops->collect != NULL);
    struct admin_session *s = cdn_xcalloc(1, sizeof(*s));
    s->magic = ADMIN_MAGIC;
    s->ops = *ops;
    if (s->ops.timeout_ms == 0)
        s->ops.timeout_ms = CDN_ADMIN_TIMEOUT_MS;
    if (s->ops.role == NULL)
        s->ops.role = "unknown";
    int err = 0;
    s->c = cdn_conn_accept(listener, ctx, ADMIN_IN_CAP, on_conn, s, &err);
    if (s->c == NULL) {
        s->magic = 0;
        free(s);
        return err < 0 ? err : CDN_EINVAL;
    }
    s->open = ctx == NULL;
    s->next = sessions;
    if (sessions != NULL)
        sessions->prev = s;
    sessions = s;
    nsessions++;
    cdn_conn_set_timeout(s->c, s->ops.timeout_ms);
    return 0;
}

void cdn_admin_close_all(void)
{
    while (sessions != NULL)
        session_close(sessions);
}

size_t cdn_admin_count(void)
{
    return nsessions;
}
