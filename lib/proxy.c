/*
 * proxy: the request path, one session per downstream connection. States, in order:
 *
 *   HANDSHAKE -> IDLE -> HEAD -> CONNECT -> WAIT_RESP -> RESP_BODY -> IDLE (keep-alive) ...
 *
 * HEAD parses with lib/http1 (pure), CONNECT opens the upstream conn (TLS verified by lib/tls),
 * WAIT_RESP streams the request body up while waiting for the response head, RESP_BODY streams the
 * response body down. Bodies are decoded (length or chunked) and re-framed, never buffered whole:
 * when the receiving conn is congested the sending conn stops reading until a DRAIN event.
 * The request head is copied (method, host, path) before it is consumed from the input buffer,
 * because the parser's pointers die with that buffer space.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "lib/alog.h"
#include "lib/conn.h"
#include "lib/http1.h"
#include "lib/ident.h"
#include "lib/log.h"
#include "lib/pool.h"
#include "lib/proxy.h"
#include "lib/proxy_int.h"
#include "lib/sni.h"
#include "lib/tls.h"
#include "lib/util.h"

static const char *const state_action[] = {
#define X(name, action) action,
    PROXY_STATE_LIST(X)
#undef X
};

static void on_down(struct cdn_conn *c, enum cdn_conn_event ev, int status);
static void on_up(struct cdn_conn *c, enum cdn_conn_event ev, int status);
static void process_request_bytes(struct cdn_session *s);
static bool pump_request_body(struct cdn_session *s);
static void pump_response_body(struct cdn_session *s);

const struct cdn_conf *proxy_conf(const struct cdn_session *s)
{
    return s->gen->conf;
}

bool proxy_stale(const struct cdn_session *s)
{
    return s->w->stopping || s->renewed ||
           s->gen->id != atomic_load_explicit(&s->w->srv->gen_id, memory_order_relaxed);
}

/* A request on a connection accepted before a reload is served under the new generation (remap,
 * upstream, cache and log settings); the connection itself, verified under the old TLS settings, is
 * closed after the response. */
static void renew_gen(struct cdn_session *s)
{
    if (s->down->sink || s->gen->id == atomic_load_explicit(&s->w->srv->gen_id, memory_order_relaxed))
        return;
    struct cdn_gen *g = cdn_server_gen(s->w->srv);
    s->lis = &g->listeners[s->li];
    cdn_gen_unref(&s->gen);
    s->gen = g;
    s->renewed = true;
}

static size_t in_cap(const struct cdn_session *s)
{
    return (size_t)proxy_conf(s)->limits.max_header_size + 64 * 1024;
}

/* RFC 9110 5.6.7 IMF-fixdate, cached per thread per second. */
const char *proxy_http_date(void)
{
    static _Thread_local char buf[40];
    static _Thread_local time_t last;
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof(buf), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = now;
    }
    return buf;
}

static void reset_request(struct cdn_session *s)
{
    free(s->method);
    free(s->host);
    free(s->path);
    free(s->up_name);
    free(s->up_key);
    free(s->user_agent);
    free(s->referer);
    s->method = s->host = s->path = s->up_name = s->up_key = s->user_agent = s->referer = NULL;
    s->cache_result = NULL;
    s->rule = NULL;
    s->up_reused = s->up_keepalive = false;
    if (s->pp.group != NULL && s->pp.cur != SIZE_MAX)
        cdn_ugroup_abandon(s->pp.group, s->pp.cur, s->pp.probe);
    s->pp.group = NULL;
    s->pp.cur = SIZE_MAX;
    s->pp.probe = s->pp.direct = false;
    cdn_buf_dispose(&s->up_head);
    s->req_kind = CDN_HTTP_BODY_NONE;
    s->req_left = 0;
    s->req_done = false;
    s->status = 0;
    s->resp_kind = CDN_HTTP_BODY_NONE;
    s->resp_left = 0;
    s->resp_head_sent = s->resp_chunked_out = s->close_after = false;
    s->resp_bytes = 0;
    s->keep_alive = s->is_head = false;
    s->head_scanned = 0;
    proxy_cache_reset(s);
    proxy_tunnel_reset(s);
}

static void session_free(struct cdn_session *s)
{
    if (s->counted)
        cdn_stats_dec(&s->w->stats, CDN_STAT_connections_active);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        s->w->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    reset_request(s);
    cdn_gen_unref(&s->gen);
    free(s->pp.order);
    free(s->client_subject);
    free(s->client_fp);
    struct cdn_worker *w = s->w;
    s->magic = 0;
    free(s);
    if (w->draining && w->sessions == NULL)
        cdn_server_worker_drained(w);
}

/* Drops both connections now (errors, truncation) and frees the session. */
void proxy_session_abort(struct cdn_session *s)
{
    if (s->up != NULL)
        cdn_conn_close(s->up);
    if (s->down != NULL)
        cdn_conn_close(s->down);
    session_free(s);
}

/* Ends the downstream connection gracefully (queued bytes are flushed first). */
static void session_end(struct cdn_session *s)
{
    if (s->up != NULL)
        cdn_conn_close(s->up);
    cdn_conn_end(s->down);
    session_free(s);
}

void proxy_count_n(struct cdn_session *s, enum cdn_stat id, uint64_t n)
{
    switch (id) { /* the request's cache outcome, for the access log */
    case CDN_STAT_cache_hit_fresh:
        s->cache_result = "hit";
        break;
    case CDN_STAT_cache_hit_stale:
        s->cache_result = "stale";
        break;
    case CDN_STAT_cache_revalidated:
        s->cache_result = "revalidated";
        break;
    case CDN_STAT_cache_collapsed:
        s->cache_result = "collapsed";
        break;
    case CDN_STAT_cache_miss:
        s->cache_result = "miss";
        break;
    case CDN_STAT_cache_uncacheable:
        s->cache_result = "uncacheable";
        break;
    default:
        break;
    }
    if (!s->down->sink) /* background fetches are nobody's request */
        cdn_stats_add(&s->w->stats, id, n);
}

void proxy_count(struct cdn_session *s, enum cdn_stat id)
{
    proxy_count_n(s, id, 1);
}

/* The client certificate's subject and SHA-256, once per connection (for the access log). */
static void client_identity(struct cdn_session *s)
{
    if (s->client_id_done || s->down->ssl == NULL)
        return;
    s->client_id_done = true;
    X509 *x = SSL_get0_peer_certificate(s->down->ssl);
    if (x == NULL)
        return;
    BIO *b = BIO_new(BIO_s_mem());
    if (b != NULL && X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        s->client_subject = cdn_xstrndup(p, (size_t)n);
    }
    BIO_free(b);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (X509_digest(x, EVP_sha256(), md, &n) == 1) {
        s->client_fp = cdn_xmalloc(2 * n + 1);
        for (unsigned i = 0; i < n; i++)
            snprintf(s->client_fp + 2 * i, 3, "%02x", md[i]);
    }
}

static void log_access(struct cdn_session *s)
{
    uint64_t ms = cdn_now_ms() - s->t_start;
    if (!s->down->sink) {
        cdn_stats_response(&s->w->stats, s->status);
        cdn_stats_observe(&s->w->stats, CDN_STAT_request_duration_seconds, ms * 1000);
    }
    if (!cdn_log_access_enabled())
        return;
    client_identity(s);
    char status[8], bytes[24], dur[24], conn[24], gen[24];
    snprintf(status, sizeof(status), "%d", s->status);
    snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)s->resp_bytes);
    snprintf(dur, sizeof(dur), "%llu", (unsigned long long)ms);
    snprintf(conn, sizeof(conn), "%llu", (unsigned long long)s->down->id);
    snprintf(gen, sizeof(gen), "%llu", (unsigned long long)s->gen->id);
    const char *v[CDN_ALOG_NVARS] = {0};
    size_t len[CDN_ALOG_NVARS];
    for (size_t i = 0; i < CDN_ALOG_NVARS; i++)
        len[i] = SIZE_MAX;
    v[CDN_ALOG_peer] = s->down->peer;
    v[CDN_ALOG_conn] = conn;
    v[CDN_ALOG_sni] = cdn_conn_sni(s->down);
    v[CDN_ALOG_tls] = cdn_conn_tls_version(s->down);
    v[CDN_ALOG_method] = s->method;
    v[CDN_ALOG_host] = s->host;
    v[CDN_ALOG_path] = s->path;
    v[CDN_ALOG_protocol] = s->minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
    v[CDN_ALOG_status] = status;
    v[CDN_ALOG_bytes] = bytes;
    v[CDN_ALOG_duration_ms] = dur;
    v[CDN_ALOG_cache] = s->cache_result;
    v[CDN_ALOG_upstream] = s->up_name;
    v[CDN_ALOG_client_subject] = s->client_subject;
    v[CDN_ALOG_client_fingerprint] = s->client_fp;
    v[CDN_ALOG_generation] = gen;
    v[CDN_ALOG_user_agent] = s->user_agent;
    v[CDN_ALOG_referer] = s->referer;
    char cert[64];
    v[CDN_ALOG_client_cert_status] = s->down->ssl != NULL ? cdn_ident_status(s->down->ssl, cert, sizeof(cert))
                                     : s->down->tls ? "NONE" /* taken over: no certificate, no verdict */
                                                    : NULL;
    struct cdn_buf line;
    cdn_buf_init(&line);
    cdn_alog_render(s->gen->alog, v, len, &line);
    cdn_log_access("%.*s", (int)line.len, cdn_buf_data(&line));
    cdn_buf_dispose(&line);
}

/* Answers with a locally generated response. The connection is kept only when asked and when
 * nothing of the request is left unread; returns true when the session was ended. */
bool proxy_send_error(struct cdn_session *s, int status, bool keep)
{
    keep = keep && s->keep_alive && s->req_done && !s->client_eof && !proxy_stale(s);
    const char *reason = cdn_http1_reason(status);
    char body[128];
    int blen = snprintf(body, sizeof(body), "%d %s\n", status, reason);
    /* A caching tier says what it did even when it answers with its own error (RFC 9211): it went
     * upstream (fwd) and got no usable response (no fwd-status). */
    char cs[200] = "";
    if (s->w->srv->store != NULL && s->pc.fwd != NULL && status >= 500)
        snprintf(cs, sizeof(cs), "Cache-Status: %s; fwd=%s\r\n", s->gen->cache_name, s->pc.fwd);
    char head[768];
    int hlen = snprintf(head, sizeof(head),
                        "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                        "Cache-Control: no-store\r\n%s%s\r\n",
                        status, reason, proxy_http_date(), blen, cs, keep ? "" : "Connection: close\r\n");
    cdn_conn_write(s->down, head, (size_t)hlen);
    if (!s->is_head)
        cdn_conn_write(s->down, body, (size_t)blen);
    s->status = status;
    s->resp_bytes = s->is_head ? 0 : (uint64_t)blen;
    log_access(s);
    if (s->up != NULL) {
        cdn_conn_close(s->up);
        s->up = NULL;
    }
    if (!keep) {
        session_end(s);
        return true;
    }
    reset_request(s);
    s->state = ST_IDLE;
    s->t_idle = cdn_now_ms();
    cdn_conn_set_timeout(s->down, proxy_conf(s)->timeouts.keepalive_ms);
    cdn_conn_read_start(s->down);
    return false;
}


/* Appends "Via: <received>, 1.<minor> <pseudonym>". */
void proxy_append_via(struct cdn_buf *b, const struct cdn_http_header *h, size_t n, int minor,
                      const char *via)
{
    proxy_append_str(b, "Via: ");
    for (size_t i = 0; i < n; i++) {
        if (cdn_strieq(h[i].name, h[i].name_len, "via") && h[i].value_len > 0) {
            cdn_buf_append(b, h[i].value, h[i].value_len);
            proxy_append_str(b, ", ");
        }
    }
    proxy_append_str(b, "1.");
    cdn_buf_append_i64(b, minor);
    proxy_append_str(b, " ");
    proxy_append_str(b, via);
    proxy_append_str(b, "\r\n");
}


void proxy_append_header(struct cdn_buf *b, const struct cdn_http_header *h)
{
    cdn_buf_append(b, h->name, h->name_len);
    proxy_append_str(b, ": ");
    cdn_buf_append(b, h->value, h->value_len);
    proxy_append_str(b, "\r\n");
}

/* RFC 9440: the certificate the client was verified with, as an sf-binary, for the upstream to know
 * which edge asked. Only after a successful verification; never on a plain or anonymous connection. */
static void append_client_cert(struct cdn_session *s, struct cdn_buf *b)
{
    SSL *ssl = s->down->ssl;
    if (ssl == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
        return;
    X509 *cert = SSL_get0_peer_certificate(ssl);
    if (cert == NULL)
        return;
    unsigned char *der = NULL;
    int n = i2d_X509(cert, &der);
    if (n <= 0)
        return;
    char *b64 = cdn_xmalloc(4 * (((size_t)n + 2) / 3) + 1);
    int k = EVP_EncodeBlock((unsigned char *)b64, der, n);
    proxy_append_str(b, "Client-Cert: :");
    cdn_buf_append(b, b64, (size_t)k);
    proxy_append_str(b, ":\r\n");
    free(b64);
    OPENSSL_free(der);
}

static void build_upstream_head(struct cdn_session *s, const struct cdn_http_request *req,
                                const struct cdn_remap_rule *rule, const char *target)
{
    struct cdn_buf *b = &s->up_head;
    char line[64];
    cdn_buf_append(b, req->method, req->method_len);
    proxy_append_str(b, " ");
    proxy_append_str(b, target);
    proxy_append_str(b, " HTTP/1.1\r\nHost: ");
    bool v6 = strchr(rule->to.host, ':') != NULL;
    if (v6)
        proxy_append_str(b, "[");
    proxy_append_str(b, rule->to.host);
    if (v6)
        proxy_append_str(b, "]");
    if (rule->to.port != (rule->to.tls ? 443 : 80)) {
        snprintf(line, sizeof(line), ":%u", rule->to.port);
        proxy_append_str(b, line);
    }
    proxy_append_str(b, "\r\n");
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct cdn_http_header *h = &req->headers[i];
        if (h->hop_by_hop || proxy_is_header(h, "host") || proxy_is_header(h, "content-length") ||
            proxy_is_header(h, "expect") || proxy_is_header(h, "via"))
            continue;
        /* identity headers are ours to set: whatever a client sends is a spoof (RFC 9440 4) */
        if (cdn_ident_is_owned(&proxy_conf(s)->identity, h->name, h->name_len))
            continue;
        if (s->pc.validators.len > 0 &&
            (proxy_is_header(h, "if-none-match") || proxy_is_header(h, "if-modified-since")))
            continue; /* replaced by the stored response's validators */
        proxy_append_header(b, h);
    }
    proxy_append_via(b, req->headers, req->num_headers, req->minor_version, s->gen->via);
    append_client_cert(s, b);
    if (s->down->ssl != NULL)
        cdn_ident_append(&proxy_conf(s)->identity, s->down->ssl, b);
    else if (s->down->tls)
        cdn_ident_append_none(&proxy_conf(s)->identity, b);
    if (s->pc.validators.len > 0) /* our revalidation of a stored response */
        cdn_buf_append(b, cdn_buf_data(&s->pc.validators), s->pc.validators.len);
    if (req->body_kind == CDN_HTTP_BODY_LENGTH) {
        snprintf(line, sizeof(line), "Content-Length: %llu\r\n", (unsigned long long)req->content_length);
        proxy_append_str(b, line);
    } else if (req->body_kind == CDN_HTTP_BODY_CHUNKED) {
        proxy_append_str(b, "Transfer-Encoding: chunked\r\n");
    }
    proxy_append_str(b, "\r\n"); /* HTTP/1.1 keep-alive: the conn goes back to the worker's pool */
}

static void send_upstream_request(struct cdn_session *s)
{
    s->pc.req_time = (int64_t)time(NULL);
    s->t_upstream = cdn_now_ms();
    proxy_count(s, CDN_STAT_upstream_requests);
    if (s->pp.group != NULL && s->pp.cur != SIZE_MAX)
        atomic_fetch_add_explicit(&s->pp.group->parents[s->pp.cur].requests, 1, memory_order_relaxed);
    cdn_conn_write(s->up, cdn_buf_data(&s->up_head), s->up_head.len);
    s->state = ST_WAIT_RESP;
    cdn_conn_set_timeout(s->up, proxy_conf(s)->timeouts.upstream_response_ms);
    if (!s->req_done && pump_request_body(s) && !s->req_done && !cdn_conn_congested(s->up))
        cdn_conn_read_start(s->down);
}

/* Takes an idle pooled conn to the rule's upstream when there is one (use_pool), else connects. The
 * upstream is the current parent of the rule's group (s->pp), else upstream.address, else the remap
 * target itself; the TLS name sent and verified is the target's (or the profile's server_name). */
static void start_upstream(struct cdn_session *s, bool use_pool)
{
    const struct cdn_remap_rule *rule = s->rule;
    const struct cdn_conf_upstream *uc = cdn_remap_upstream(proxy_conf(s), rule); /* the rule's profile */
    size_t prof = cdn_remap_profile(proxy_conf(s), rule);
    SSL_CTX *up_ctx = prof > 0 ? s->gen->profile_ctx[prof - 1] : s->gen->upstream_ctx;
    const char *host = rule->to.host;
    uint16_t port = rule->to.port;
    char *ovr_host = NULL;
    struct cdn_ugroup_parent *parent = NULL;
    char via[48] = "";
    if (s->pp.group != NULL) { /* a group's parent, or go_direct to the target */
        if (!s->pp.direct) {
            parent = &s->pp.group->parents[s->pp.cur];
            host = parent->host;
            port = parent->port;
            snprintf(via, sizeof(via), "g%zu.%zu", rule->group, s->pp.cur);
        }
    } else if (uc->address != NULL) { /* a parent: connect there, still verify the target's name */
        const char *colon = strrchr(uc->address, ':');
        const char *h = uc->address;
        size_t hl = (size_t)(colon - h);
        if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
            h++;
            hl -= 2;
        }
        ovr_host = cdn_xstrndup(h, hl);
        host = ovr_host;
        port = (uint16_t)atoi(colon + 1);
    }
    const char *tls_name = uc->server_name != NULL ? uc->server_name : rule->to.host;
    /* the generation, the profile and the group's parent are part of the key: a conn made with one
     * client certificate never serves another, and per-parent counters stay right. Built without
     * printf and kept when a keep-alive client asks the same upstream again (the usual case). */
    struct cdn_buf *k = &s->w->cs_buf;
    cdn_buf_reset(k);
    cdn_buf_append_u64(k, s->gen->id);
    proxy_append_str(k, rule->to.tls ? "|s|" : "|p|");
    proxy_append_str(k, host);
    proxy_append_str(k, "|");
    cdn_buf_append_u64(k, port);
    proxy_append_str(k, "|");
    proxy_append_str(k, rule->to.tls ? tls_name : "");
    proxy_append_str(k, "|");
    cdn_buf_append_u64(k, prof);
    proxy_append_str(k, "|");
    proxy_append_str(k, via);
    if (s->up_key == NULL || strlen(s->up_key) != k->len || memcmp(s->up_key, cdn_buf_data(k), k->len) != 0) {
        free(s->up_key);
        s->up_key = cdn_xstrndup(cdn_buf_data(k), k->len);
        cdn_buf_reset(k);
        proxy_append_str(k, host);
        proxy_append_str(k, ":");
        cdn_buf_append_u64(k, port);
        free(s->up_name);
        s->up_name = cdn_xstrndup(cdn_buf_data(k), k->len);
    }
    if (s->pp.group != NULL && !s->pp.group->conf->keepalive)
        use_pool = false; /* keepalive: false: a new connection per request */
    s->up = use_pool ? cdn_pool_get(s->w->pool, s->up_key) : NULL;
    s->up_reused = s->up != NULL;
    if (s->up != NULL) {
        proxy_count(s, CDN_STAT_upstream_conns_reused);
        if (parent != NULL)
            atomic_fetch_add_explicit(&parent->conns_reused, 1, memory_order_relaxed);
        s->up->cb = on_up;
        s->up->data = s;
        send_upstream_request(s);
    } else {
        proxy_count(s, CDN_STAT_upstream_conns_opened);
        if (parent != NULL)
            atomic_fetch_add_explicit(&parent->conns_opened, 1, memory_order_relaxed);
        s->up = cdn_conn_connect(&s->w->loop, host, port, rule->to.tls ? up_ctx : NULL, tls_name,
                                 cdn_tls_upstream_checks_name(uc), in_cap(s), on_up, s);
        cdn_conn_set_timeout(s->up, proxy_conf(s)->timeouts.upstream_connect_ms);
        s->state = ST_CONNECT;
    }
    free(ovr_host);
}

/* Picks the next parent of the request's group for an attempt (s->pp.cur), or the remap target when
 * none is left and the group may go direct. false: nothing left to try. */
static bool next_parent(struct cdn_session *s)
{
    struct proxy_parents *pp = &s->pp;
    const struct cdn_conf_ugroup *gc = pp->group->conf;
    pp->cur = SIZE_MAX;
    pp->probe = false;
    if (pp->direct)
        return false; /* the target itself was the last resort */
    size_t p = cdn_ugroup_pick(pp->group, pp->order, pp->n, &pp->pos, pp->attempts, cdn_now_ms(), &pp->probe);
    if (p == CDN_UGROUP_DIRECT) {
        cdn_log(CDN_LOG_WARN, "conn=%llu: upstream group %s: %s; going direct to %s:%u",
                (unsigned long long)s->down->id, gc->name,
                pp->attempts > 0 ? "no further parent to try" : "no parent in service", s->rule->to.host,
                s->rule->to.port);
        pp->direct = true;
        return true;
    }
    if (p != CDN_UGROUP_NONE) {
        pp->cur = p;
        pp->attempts++;
        return true;
    }
    if (pp->attempts == 0) /* no attempt made: say why the request fails at once */
        cdn_log(CDN_LOG_WARN, "conn=%llu peer=%s: upstream group %s: no parent in service (all %zu out); 502",
                (unsigned long long)s->down->id, s->down->peer, gc->name, pp->group->nparents);
    return false;
}

/* The request's parent order, from its cache key when it has one, else from scheme, host and path. */
static void plan_parents(struct cdn_session *s)
{
    struct proxy_parents *pp = &s->pp;
    pp->group = &s->gen->ugroups->v[s->rule->group - 1];
    pp->pos = pp->attempts = 0;
    pp->cur = SIZE_MAX;
    pp->probe = pp->direct = false;
    if (pp->order == NULL)
        pp->order = cdn_xmalloc(CDN_CONF_MAX_PARENTS * sizeof(*pp->order));
    if (s->pc.key.len > 0) {
        pp->n = cdn_ugroup_order(pp->group, cdn_buf_data(&s->pc.key), s->pc.key.len, pp->order,
                                 CDN_CONF_MAX_PARENTS);
        return;
    }
    char *k = cdn_xasprintf("%s://%s%s", s->lis->ctx != NULL ? "https" : "http",
                            s->host != NULL ? s->host : "", s->path != NULL ? s->path : "/");
    pp->n = cdn_ugroup_order(pp->group, k, strlen(k), pp->order, CDN_CONF_MAX_PARENTS);
    free(k);
}

static void handle_request(struct cdn_session *s, const struct cdn_http_request *req, size_t head_len)
{
    renew_gen(s);
    proxy_count(s, CDN_STAT_requests);
    s->method = cdn_xstrndup(req->method, req->method_len);
    s->host = req->host != NULL ? cdn_xstrndup(req->host, req->host_len) : NULL;
    s->path = cdn_xstrndup(req->path, req->path_len);
    if (cdn_log_access_enabled()) {
        bool ua = cdn_alog_uses(s->gen->alog, CDN_ALOG_user_agent),
             ref = cdn_alog_uses(s->gen->alog, CDN_ALOG_referer);
        for (size_t i = 0; (ua || ref) && i < req->num_headers; i++) {
            const struct cdn_http_header *h = &req->headers[i];
            if (ua && s->user_agent == NULL && proxy_is_header(h, "user-agent"))
                s->user_agent = cdn_xstrndup(h->value, h->value_len);
            else if (ref && s->referer == NULL && proxy_is_header(h, "referer"))
                s->referer = cdn_xstrndup(h->value, h->value_len);
        }
    }
    s->minor = req->minor_version;
    s->keep_alive = req->keep_alive;
    s->is_head = cdn_strieq(req->method, req->method_len, "HEAD");
    s->req_kind = req->body_kind;
    s->req_left = req->content_length;
    s->req_done = req->body_kind == CDN_HTTP_BODY_NONE ||
                  (req->body_kind == CDN_HTTP_BODY_LENGTH && req->content_length == 0);
    cdn_http1_chunked_init(&s->req_dec);

    if (cdn_strieq(req->method, req->method_len, "CONNECT") && proxy_tunnel_request(s, req, head_len))
        return; /* a tunnel listener: lib/proxy_tunnel.c took it */
    /* tunnels and TRACE are not served here */
    if (cdn_strieq(req->method, req->method_len, "CONNECT") ||
        cdn_strieq(req->method, req->method_len, "TRACE")) {
        cdn_buf_consume(&s->down->in, head_len);
        proxy_send_error(s, 405, true);
        return;
    }
    const struct cdn_remap_rule *rule = cdn_remap_lookup(s->gen->remap, s->lis->ctx != NULL, req->host,
                                                         req->host_len, req->path, req->path_len);
    if (rule == NULL) {
        cdn_buf_consume(&s->down->in, head_len);
        proxy_send_error(s, 404, true); /* never an open proxy */
        return;
    }
    /* Host != SNI: a Host whose SNI rule asks more than the connection was verified under */
    if (s->lis->sni != NULL && s->down->tls &&
        (s->down->ssl != NULL
             ? cdn_sni_check_host(s->lis->sni, s->down->ssl, req->host, req->host_len,
                                  (unsigned long long)s->down->id, s->down->peer)
             : cdn_sni_check_host_policy(s->lis->sni, s->down_policy, false, false, cdn_conn_sni(s->down),
                                         req->host, req->host_len, (unsigned long long)s->down->id,
                                         s->down->peer)) == 421) {
        cdn_buf_consume(&s->down->in, head_len);
        proxy_send_error(s, 421, true);
        return;
    }
    s->rule = rule;
    /* Consuming only moves the buffer's offset: the bytes (and req's pointers into them) stay
     * untouched until the next read, which cannot happen before this handler returns. */
    const char *head = cdn_buf_data(&s->down->in);
    cdn_buf_consume(&s->down->in, head_len);
    char *target = cdn_remap_target_path(rule, req->path, req->path_len);
    bool answered = proxy_cache_request(s, req, head, head_len, target);
    if (!answered)
        proxy_forward(s, req, target);
    free(target);
}

void proxy_forward(struct cdn_session *s, const struct cdn_http_request *req, const char *target)
{
    build_upstream_head(s, req, s->rule, target);
    if (req->expect_continue && !s->req_done) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        cdn_conn_write(s->down, cont, sizeof(cont) - 1);
    }
    /* the body waits in the socket until the upstream is open; pipelined requests wait too */
    cdn_conn_read_stop(s->down);
    cdn_conn_set_timeout(s->down, 0);
    if (s->rule->group > 0) {
        plan_parents(s);
        if (!next_parent(s)) {
            proxy_count(s, CDN_STAT_upstream_errors_connect);
            if (!proxy_cache_upstream_error(s)) /* stale-if-error still applies */
                proxy_send_error(s, 502, true);
            return;
        }
    }
    start_upstream(s, true);
}

static void process_request_bytes(struct cdn_session *s)
{
    struct cdn_conn *d = s->down;
    if (d->in.len == 0)
        return;
    if (s->state == ST_IDLE) {
        s->state = ST_HEAD;
        s->t_start = cdn_now_ms();
        cdn_conn_set_timeout(d, proxy_conf(s)->timeouts.request_header_ms);
    }
    /* Re-parse only when a line was completed (or the limit reached): a client trickling one byte
     * at a time must not make us re-scan the whole head for every byte. */
    size_t max_head = (size_t)proxy_conf(s)->limits.max_header_size;
    if (d->in.len < max_head && s->head_scanned < d->in.len &&
        memchr(cdn_buf_data(&d->in) + s->head_scanned, '\n', d->in.len - s->head_scanned) == NULL &&
        !s->client_eof) {
        s->head_scanned = d->in.len;
        return;
    }
    s->head_scanned = d->in.len;
    static _Thread_local struct cdn_http_request req; /* 10 KiB: kept off the stack */
    int rc = cdn_http1_parse_request(cdn_buf_data(&d->in), d->in.len, &s->gen->limits, &req);
    if (rc == CDN_HTTP_EAGAIN) {
        if (s->client_eof) /* the head will never complete */
            proxy_session_abort(s);
        return;
    }
    if (rc < 0) {
        cdn_log(CDN_LOG_INFO, "conn=%llu peer=%s: bad request (%d) while %s", (unsigned long long)d->id,
                d->peer, -rc, state_action[s->state]);
        s->keep_alive = false;
        proxy_send_error(s, -rc, false);
        return;
    }
    handle_request(s, &req, (size_t)rc);
}

/* ---- request body: down -> up ---- */

static void write_chunk(struct cdn_conn *c, const char *p, size_t n)
{
    char hdr[24];
    int k = snprintf(hdr, sizeof(hdr), "%zx\r\n", n);
    cdn_conn_write(c, hdr, (size_t)k);
    cdn_conn_write(c, p, n);
    cdn_conn_write(c, "\r\n", 2);
}

static void request_body_done(struct cdn_session *s)
{
    s->req_done = true;
    cdn_conn_read_stop(s->down); /* pipelined requests wait for this response */
    cdn_conn_set_timeout(s->down, 0);
}

/* Returns false when the session was freed. */
static bool pump_request_body(struct cdn_session *s)
{
    struct cdn_conn *d = s->down;
    while (!s->req_done && d->in.len > 0) {
        if (cdn_conn_congested(s->up)) {
            cdn_conn_read_stop(d); /* resumed by the upstream's DRAIN */
            return true;
        }
        const char *p = cdn_buf_data(&d->in);
        if (s->req_kind == CDN_HTTP_BODY_LENGTH) {
            size_t n = d->in.len < s->req_left ? d->in.len : (size_t)s->req_left;
            cdn_conn_write(s->up, p, n);
            cdn_buf_consume(&d->in, n);
            s->req_left -= n;
            if (s->req_left == 0) {
                request_body_done(s);
                return true;
            }
            continue;
        }
        size_t used = 0, dlen = 0;
        const char *data = NULL;
        int rc = cdn_http1_chunked_decode(&s->req_dec, p, d->in.len, &used, &data, &dlen);
        if (rc == 0)
            write_chunk(s->up, data, dlen);
        cdn_buf_consume(&d->in, used);
        if (rc == 1) {
            cdn_conn_write(s->up, "0\r\n\r\n", 5);
            request_body_done(s);
            return true;
        }
        if (rc == CDN_HTTP_EAGAIN)
            break;
        if (rc < 0) {
            cdn_log(CDN_LOG_INFO, "conn=%llu peer=%s: bad chunked request body", (unsigned long long)d->id,
                    d->peer);
            s->keep_alive = false;
            if (!s->resp_head_sent)
                proxy_send_error(s, 400, false);
            else
                proxy_session_abort(s);
            return false;
        }
    }
    if (!s->req_done)
        cdn_conn_set_timeout(d, proxy_conf(s)->timeouts.body_ms);
    return true;
}

/* ---- response: up -> down ---- */

/* cache_status: our Cache-Status line (the received members included), or empty. */
static void build_response_head(struct cdn_session *s, const struct cdn_http_response *res,
                                const struct cdn_buf *cache_status, struct cdn_buf *b)
{
    const char *reason = cdn_http1_reason(res->status);
    proxy_append_str(b, "HTTP/1.1 ");
    cdn_buf_append_i64(b, res->status);
    proxy_append_str(b, " ");
    if (res->reason_len > 0)
        cdn_buf_append(b, res->reason, res->reason_len);
    else
        proxy_append_str(b, reason);
    proxy_append_str(b, "\r\n");
    bool has_date = false;
    for (size_t i = 0; i < res->num_headers; i++) {
        const struct cdn_http_header *h = &res->headers[i];
        if (h->hop_by_hop || proxy_is_header(h, "via"))
            continue;
        if (cache_status->len > 0 && proxy_is_header(h, "cache-status"))
            continue; /* merged into ours */
        if (proxy_is_header(h, "content-length") && res->body_kind != CDN_HTTP_BODY_NONE)
            continue;
        has_date |= proxy_is_header(h, "date");
        proxy_append_header(b, h);
    }
    if (!has_date) { /* RFC 9110 6.6.1: a forwarder with a clock adds the missing Date */
        proxy_append_str(b, "Date: ");
        proxy_append_str(b, proxy_http_date());
        proxy_append_str(b, "\r\n");
    }
    proxy_append_via(b, res->headers, res->num_headers, res->minor_version, s->gen->via);
    s->close_after = false;
    if (res->body_kind == CDN_HTTP_BODY_LENGTH) {
        proxy_append_str(b, "Content-Length: ");
        cdn_buf_append_u64(b, res->content_length);
        proxy_append_str(b, "\r\n");
    } else if (res->body_kind == CDN_HTTP_BODY_CHUNKED || res->body_kind == CDN_HTTP_BODY_EOF) {
        if (s->minor >= 1) {
            proxy_append_str(b, "Transfer-Encoding: chunked\r\n");
            s->resp_chunked_out = true;
        } else {
            s->close_after = true; /* an HTTP/1.0 client learns the end from the close */
        }
    }
    if (cache_status->len > 0)
        cdn_buf_append(b, cdn_buf_data(cache_status), cache_status->len);
    proxy_append_connection(s, b);
}

void proxy_append_connection(struct cdn_session *s, struct cdn_buf *b)
{
    s->close_after = s->close_after || !s->keep_alive || s->client_eof || proxy_stale(s);
    if (s->close_after)
        proxy_append_str(b, "Connection: close\r\n");
    else if (s->minor == 0)
        proxy_append_str(b, "Connection: keep-alive\r\n");
    proxy_append_str(b, "\r\n");
}

static void finish_response(struct cdn_session *s, bool up_clean)
{
    if (s->resp_chunked_out)
        cdn_conn_write(s->down, "0\r\n\r\n", 5);
    if (up_clean && s->up_keepalive && s->req_done && s->up->in.len == 0 && cdn_conn_pending(s->up) == 0 &&
        !proxy_stale(s))
        cdn_pool_put(s->w->pool, s->up_key, s->up, proxy_conf(s)->timeouts.upstream_idle_ms);
    else if (up_clean)
        cdn_conn_end(s->up);
    else
        cdn_conn_close(s->up);
    s->up = NULL;
    proxy_cache_response_done(s, true); /* every caller saw the body's end */
    proxy_exchange_done(s);
}

void proxy_exchange_done(struct cdn_session *s)
{
    log_access(s);
    /* not proxy_stale(): a reload during this response must not close a connection whose response
     * promised keep-alive (the client would send its next request into a closing socket); the next
     * request moves to the new generation and its response says Connection: close */
    if (s->close_after || !s->req_done || s->client_eof || s->w->stopping) {
        session_end(s);
        return;
    }
    reset_request(s);
    s->state = ST_IDLE;
    s->t_idle = cdn_now_ms();
    cdn_conn_set_timeout(s->down, proxy_conf(s)->timeouts.keepalive_ms);
    cdn_conn_read_start(s->down); /* delivers READ at once if a pipelined request is buffered */
}

void proxy_release_upstream(struct cdn_session *s)
{
    bool reusable = s->up_keepalive && s->req_done && s->resp_kind == CDN_HTTP_BODY_NONE &&
                    s->up->in.len == 0 && cdn_conn_pending(s->up) == 0 && !proxy_stale(s);
    if (reusable)
        cdn_pool_put(s->w->pool, s->up_key, s->up, proxy_conf(s)->timeouts.upstream_idle_ms);
    else
        cdn_conn_close(s->up);
    s->up = NULL;
}

/* Methods a request may be sent again with (RFC 9110 9.2.2). */
static bool idempotent(const char *method)
{
    static const char *const m[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"};
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        if (strcmp(method, m[i]) == 0)
            return true;
    }
    return false;
}

/* The attempt on the group's current parent failed before a response head: marks the parent's health
 * when the failure is its (connect, TLS, no head in time, a broken head), and tries the next parent
 * when that is safe: always before the request was sent, afterwards only for an idempotent request
 * with no body and no response byte. true: a new attempt is under way. */
static bool parent_failed(struct cdn_session *s, const char *why)
{
    struct proxy_parents *pp = &s->pp;
    if (s->resp_head_sent || (s->state != ST_CONNECT && s->state != ST_WAIT_RESP))
        return false;
    if (pp->cur != SIZE_MAX) {
        cdn_ugroup_failure(pp->group, pp->cur, pp->probe, cdn_now_ms(), why);
        pp->probe = false;
    }
    /* while connecting, nothing was sent: a body still waits in the client's socket */
    if (s->state == ST_WAIT_RESP && (s->method == NULL || !idempotent(s->method) ||
                                     s->req_kind != CDN_HTTP_BODY_NONE || s->up == NULL || s->up->in.len > 0))
        return false;
    const char *from = pp->direct            ? "the target"
                       : pp->cur != SIZE_MAX ? pp->group->parents[pp->cur].conf->name
                                             : "-";
    if (!next_parent(s))
        return false;
    cdn_log(CDN_LOG_WARN, "conn=%llu peer=%s: upstream group %s: %s failed (%s) while %s; trying %s",
            (unsigned long long)s->down->id, s->down->peer, pp->group->conf->name, from, why,
            state_action[s->state],
            pp->direct ? "the target directly" : pp->group->parents[pp->cur].conf->name);
    if (s->up != NULL) {
        cdn_conn_close(s->up);
        s->up = NULL;
    }
    start_upstream(s, true);
    return true;
}

static void upstream_failed(struct cdn_session *s, int status, enum cdn_stat kind, const char *why)
{
    /* A pooled conn the upstream closed while we reused it: nothing of the response came and the
     * request had no body, so sending it again on a new connection is safe (RFC 9112 9.3.1). */
    if (s->up_reused && s->state == ST_WAIT_RESP && s->up->in.len == 0 && s->req_kind == CDN_HTTP_BODY_NONE &&
        status == 502) {
        cdn_log(CDN_LOG_DEBUG, "conn=%llu: reused upstream conn to %s failed (%s); retrying on a new one",
                (unsigned long long)s->down->id, s->up_name, why);
        cdn_conn_close(s->up);
        s->up = NULL;
        start_upstream(s, false);
        return;
    }
    proxy_count(s, kind);
    if (s->pp.group != NULL && parent_failed(s, why))
        return; /* retried on the next parent (or direct) */
    cdn_log(CDN_LOG_WARN, "conn=%llu peer=%s: upstream %s: %s while %s", (unsigned long long)s->down->id,
            s->down->peer, s->up_name != NULL ? s->up_name : "-", why, state_action[s->state]);
    if (s->up != NULL) {
        cdn_conn_close(s->up);
        s->up = NULL;
    }
    if (s->resp_head_sent) {
        proxy_session_abort(s); /* the client sees a truncated body, never a false end */
        return;
    }
    if (proxy_cache_upstream_error(s))
        return; /* stale-if-error */
    proxy_send_error(s, status, true);
}

static void read_response_head(struct cdn_session *s)
{
    struct cdn_conn *u = s->up;
    static _Thread_local struct cdn_http_response res;
    for (;;) {
        int rc = cdn_http1_parse_response(cdn_buf_data(&u->in), u->in.len, &s->gen->limits, s->is_head, &res);
        if (rc == CDN_HTTP_EAGAIN)
            return;
        if (rc < 0) {
            upstream_failed(s, 502, CDN_STAT_upstream_errors_protocol, "malformed response head");
            return;
        }
        if (res.status == 101) {
            upstream_failed(s, 502, CDN_STAT_upstream_errors_protocol, "unexpected 101 Switching Protocols");
            return;
        }
        if (res.status < 200) { /* interim: 100-continue was answered by us already */
            cdn_buf_consume(&u->in, (size_t)rc);
            continue;
        }
        s->status = res.status;
        if (s->pp.group != NULL && s->pp.cur != SIZE_MAX) { /* a response, even a 5xx: the parent is alive */
            cdn_ugroup_success(s->pp.group, s->pp.cur, s->pp.probe);
            s->pp.probe = false;
        }
        if (!s->down->sink)
            cdn_stats_observe(&s->w->stats, CDN_STAT_upstream_response_seconds,
                              (cdn_now_ms() - s->t_upstream) * 1000);
        s->up_keepalive = res.keep_alive && (s->pp.group == NULL || s->pp.group->conf->keepalive);
        cdn_buf_dispose(&s->up_head);
        s->resp_kind = res.body_kind;
        s->resp_left = res.content_length;
        cdn_http1_chunked_init(&s->resp_dec);
        /* as in handle_request: res keeps pointing at intact bytes until this handler returns */
        cdn_buf_consume(&u->in, (size_t)rc);
        struct cdn_buf head, cs;
        cdn_buf_init(&head);
        cdn_buf_init(&cs);
        if (proxy_cache_response(s, &res, &cs)) {
            cdn_buf_dispose(&cs);
            return; /* answered from the cache (304 freshening, stale-if-error) */
        }
        build_response_head(s, &res, &cs, &head);
        cdn_buf_dispose(&cs);
        cdn_conn_write(s->down, cdn_buf_data(&head), head.len);
        cdn_buf_dispose(&head);
        s->resp_head_sent = true;
        s->state = ST_RESP_BODY;
        cdn_conn_set_timeout(u, proxy_conf(s)->timeouts.body_ms);
        if (s->resp_kind == CDN_HTTP_BODY_NONE ||
            (s->resp_kind == CDN_HTTP_BODY_LENGTH && s->resp_left == 0)) {
            finish_response(s, true);
            return;
        }
        pump_response_body(s);
        return;
    }
}

static void send_body(struct cdn_session *s, const char *p, size_t n)
{
    proxy_cache_body(s, p, n);
    proxy_count_n(s, CDN_STAT_bytes_from_upstream, n);
    if (s->resp_chunked_out)
        write_chunk(s->down, p, n);
    else
        cdn_conn_write(s->down, p, n);
    s->resp_bytes += n;
}

static void pump_response_body(struct cdn_session *s)
{
    struct cdn_conn *u = s->up;
    while (u->in.len > 0) {
        if (cdn_conn_congested(s->down)) {
            cdn_conn_read_stop(u); /* resumed by the client's DRAIN */
            return;
        }
        if (proxy_cache_fill_busy(s)) {
            cdn_conn_read_stop(u); /* resumed by proxy_cache_on_fill_drain */
            return;
        }
        const char *p = cdn_buf_data(&u->in);
        if (s->resp_kind == CDN_HTTP_BODY_EOF) {
            size_t n = u->in.len;
            send_body(s, p, n);
            cdn_buf_consume(&u->in, n);
            continue;
        }
        if (s->resp_kind == CDN_HTTP_BODY_LENGTH) {
            size_t n = u->in.len < s->resp_left ? u->in.len : (size_t)s->resp_left;
            send_body(s, p, n);
            cdn_buf_consume(&u->in, n);
            s->resp_left -= n;
            if (s->resp_left == 0) {
                finish_response(s, u->in.len == 0);
                return;
            }
            continue;
        }
        size_t used = 0, dlen = 0;
        const char *data = NULL;
        int rc = cdn_http1_chunked_decode(&s->resp_dec, p, u->in.len, &used, &data, &dlen);
        if (rc == 0)
            send_body(s, data, dlen);
        cdn_buf_consume(&u->in, used);
        if (rc == 1) {
            finish_response(s, u->in.len == 0);
            return;
        }
        if (rc == CDN_HTTP_EAGAIN)
            break;
        if (rc < 0) {
            upstream_failed(s, 502, CDN_STAT_upstream_errors_protocol, "malformed chunked body");
            return;
        }
    }
    cdn_conn_set_timeout(u, proxy_conf(s)->timeouts.body_ms);
}

/* ---- events ---- */

static void up_event(struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    struct cdn_session *s = c->data;
    CDN_CHECK_OBJ(s, SESSION_MAGIC);
    char why[320];
    switch (ev) {
    case CDN_CONN_EV_OPEN:
        if (c->ssl != NULL)
            proxy_count(s, SSL_session_reused(c->ssl) ? CDN_STAT_upstream_tls_resumed
                                                      : CDN_STAT_upstream_tls_full);
        if (c->ssl != NULL && s->pp.group != NULL && s->pp.cur != SIZE_MAX) {
            struct cdn_ugroup_parent *p = &s->pp.group->parents[s->pp.cur];
            atomic_fetch_add_explicit(SSL_session_reused(c->ssl) ? &p->tls_resumed : &p->tls_full, 1,
                                      memory_order_relaxed);
        }
        if (c->ssl != NULL &&
            cdn_remap_upstream(proxy_conf(s), s->rule)->verify_policy == CDN_VERIFY_PERMISSIVE &&
            SSL_get_verify_result(c->ssl) != X509_V_OK) { /* PERMISSIVE let it through */
            proxy_count(s, CDN_STAT_upstream_errors_tls);
            cdn_log(CDN_LOG_WARN,
                    "upstream %s: certificate not verified (%s); connecting anyway (verify_server_policy: "
                    "PERMISSIVE)",
                    s->up_name, X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
        }
        send_upstream_request(s);
        return;
    case CDN_CONN_EV_READ:
        if (s->state == ST_WAIT_RESP)
            read_response_head(s);
        else if (s->state == ST_RESP_BODY)
            pump_response_body(s);
        return;
    case CDN_CONN_EV_DRAIN:
        if (!s->req_done)
            cdn_conn_read_start(s->down);
        return;
    case CDN_CONN_EV_EOF:
        if (s->state == ST_RESP_BODY && s->resp_kind == CDN_HTTP_BODY_EOF) {
            finish_response(s, false);
            return;
        }
        upstream_failed(s, 502, CDN_STAT_upstream_errors_protocol,
                        s->state == ST_RESP_BODY ? "closed before the end of the body"
                                                 : "closed before sending a response");
        return;
    case CDN_CONN_EV_ERROR:
        snprintf(why, sizeof(why), "%s", c->err[0] != '\0' ? c->err : cdn_strerror(status));
        upstream_failed(s, 502,
                        status == CDN_ETLS || status == CDN_EVERIFY ? CDN_STAT_upstream_errors_tls
                        : s->state == ST_CONNECT                    ? CDN_STAT_upstream_errors_connect
                                                                    : CDN_STAT_upstream_errors_protocol,
                        why);
        return;
    case CDN_CONN_EV_TIMEOUT:
        upstream_failed(s, 504, CDN_STAT_upstream_errors_timeout,
                        s->state == ST_CONNECT ? "connect timed out" : "timed out");
        return;
    }
}

/* The client-certificate level in force on c: the SNI rule's when one matched, else the listener's. */
static int client_auth_of(const struct cdn_session *s, const struct cdn_conn *c)
{
    const struct cdn_sni_policy *p = c->ssl != NULL ? cdn_sni_of(c->ssl) : NULL;
    return p != NULL ? p->level : s->lis->client_auth;
}

static void count_tls_failure(struct cdn_session *s, enum cdn_stat id)
{
    cdn_stats_inc(&s->w->stats, id);
    if (cdn_stats_tls_failure_is_cert(id) && client_auth_of(s, s->down) != CDN_CLIENT_AUTH_NONE)
        cdn_stats_inc(&s->w->stats, CDN_STAT_client_certs_refused);
}

static void down_event(struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    struct cdn_session *s = c->data;
    CDN_CHECK_OBJ(s, SESSION_MAGIC);
    switch (ev) {
    case CDN_CONN_EV_OPEN:
        s->state = ST_IDLE;
        s->t_idle = cdn_now_ms();
        cdn_stats_inc(&s->w->stats, CDN_STAT_tls_handshakes);
        if (!cdn_ident_handshake_done(&s->w->stats, c->ssl, (unsigned long long)c->id, c->peer) &&
            client_auth_of(s, c) != CDN_CLIENT_AUTH_NONE && SSL_get0_peer_certificate(c->ssl) != NULL)
            cdn_stats_inc(&s->w->stats, CDN_STAT_client_certs_verified);
        cdn_conn_set_timeout(c, proxy_conf(s)->timeouts.request_header_ms);
        /* Nothing below needs the SSL object again when no certificate came and no log-only rule
         * let a failure through: lib/conn may free it (about 14 KiB a connection). */
        if (c->ssl != NULL && SSL_get0_peer_certificate(c->ssl) == NULL &&
            cdn_ident_log_only_reason(c->ssl) == CDN_STAT__SLOTS) {
            s->down_policy = cdn_sni_of(c->ssl);
            cdn_conn_allow_takeover(c);
        }
        return;
    case CDN_CONN_EV_READ:
        if (c->trec != NULL && !s->takeover_counted) {
            s->takeover_counted = true;
            cdn_stats_inc(&s->w->stats, CDN_STAT_tls_takeovers);
        }
        if (s->state == ST_IDLE || s->state == ST_HEAD)
            process_request_bytes(s);
        else if (!s->req_done && s->up != NULL && s->state != ST_CONNECT)
            pump_request_body(s);
        else
            cdn_conn_read_stop(c);
        return;
    case CDN_CONN_EV_DRAIN:
        if (s->state == ST_HIT_BODY)
            proxy_cache_hit_continue(s);
        else if (s->state == ST_SHARE_BODY)
            proxy_cache_share_continue(s);
        else if (s->up != NULL && s->state == ST_RESP_BODY && !s->pc.fill_paused)
            cdn_conn_read_start(s->up);
        return;
    case CDN_CONN_EV_EOF:
        s->client_eof = true;
        if ((s->state == ST_HEAD || s->state == ST_IDLE) && c->in.len > 0) {
            process_request_bytes(s); /* a complete head may still be buffered */
            return;
        }
        /* The client is gone (TLS clients do not half-close): stop the exchange, as nginx does
         * by default, rather than keep the upstream busy for nobody. */
        proxy_session_abort(s);
        return;
    case CDN_CONN_EV_ERROR:
        if (s->state == ST_HANDSHAKE) {
            enum cdn_stat why = cdn_stats_tls_failure(c->tls_verify, c->tls_errcode, false);
            count_tls_failure(s, why);
            cdn_ident_log_refused(c->ssl, (unsigned long long)c->id, c->peer, client_auth_of(s, c), why,
                                  c->err);
        } else
            cdn_log(CDN_LOG_DEBUG, "conn=%llu peer=%s: %s while %s", (unsigned long long)c->id, c->peer,
                    c->err[0] != '\0' ? c->err : cdn_strerror(status), state_action[s->state]);
        if (s->state == ST_HANDSHAKE)
            session_end(s); /* flush the alert */
        else
            proxy_session_abort(s);
        return;
    case CDN_CONN_EV_TIMEOUT:
        if (s->state == ST_HANDSHAKE)
            count_tls_failure(s, CDN_STAT_tls_failed_timeout);
        if (s->state == ST_COLLAPSED) {
            proxy_cache_collapse_timeout(s);
        } else if (s->state == ST_HEAD) {
            s->keep_alive = false;
            proxy_send_error(s, 408, false);
        } else if (s->state == ST_IDLE) {
            session_end(s);
        } else {
            cdn_log(CDN_LOG_INFO, "conn=%llu peer=%s: timed out while %s", (unsigned long long)c->id, c->peer,
                    s->state >= ST_CONNECT && !s->req_done ? "reading the request body"
                                                           : state_action[s->state]);
            proxy_session_abort(s);
        }
        return;
    }
}

/* Writes made while handling one event leave together (fewer records and syscalls). Both conns
 * stay allocated until their close callbacks, so uncorking after the session ended is safe. */
static void corked(cdn_conn_cb *fn, struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    struct cdn_session *s = c->data;
    CDN_CHECK_OBJ(s, SESSION_MAGIC);
    struct cdn_conn *d = s->down, *u = s->up;
    cdn_conn_cork(d);
    if (u != NULL)
        cdn_conn_cork(u);
    fn(c, ev, status);
    if (u != NULL)
        cdn_conn_uncork(u);
    cdn_conn_uncork(d);
}

static void on_up(struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    corked(up_event, c, ev, status);
}

static void on_down(struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    corked(down_event, c, ev, status);
}

void cdn_proxy_accept(struct cdn_worker *w, struct cdn_gen *gen, size_t li, uv_stream_t *listener)
{
    const struct cdn_listener_rt *l = &gen->listeners[li];
    struct cdn_session *s = cdn_xcalloc(1, sizeof(*s));
    s->magic = SESSION_MAGIC;
    s->w = w;
    s->gen = gen;
    s->li = li;
    s->lis = l;
    s->pp.cur = SIZE_MAX;
    cdn_buf_init(&s->up_head);
    int err = 0;
    s->down = cdn_conn_accept(listener, l->ctx, in_cap(s), on_down, s, &err);
    if (s->down == NULL) {
        cdn_log(CDN_LOG_WARN, "accept: %s", uv_strerror(err));
        cdn_gen_unref(&s->gen);
        s->magic = 0;
        free(s);
        return;
    }
    s->next = w->sessions;
    if (w->sessions != NULL)
        w->sessions->prev = s;
    w->sessions = s;
    s->t_start = cdn_now_ms();
    cdn_stats_inc(&w->stats, CDN_STAT_connections);
    cdn_stats_inc(&w->stats, CDN_STAT_connections_active);
    s->counted = true;
    if (l->ctx != NULL) {
        s->state = ST_HANDSHAKE;
        cdn_conn_set_timeout(s->down, gen->conf->timeouts.handshake_ms);
    } else {
        s->state = ST_IDLE;
        cdn_conn_set_timeout(s->down, gen->conf->timeouts.request_header_ms);
    }
}

struct cdn_session *proxy_session_background(const struct cdn_session *parent)
{
    struct cdn_worker *w = parent->w;
    struct cdn_session *s = cdn_xcalloc(1, sizeof(*s));
    s->magic = SESSION_MAGIC;
    s->w = w;
    s->gen = cdn_gen_ref(parent->gen);
    s->li = parent->li;
    s->lis = parent->lis;
    s->pp.cur = SIZE_MAX;
    cdn_buf_init(&s->up_head);
    s->down = cdn_conn_sink(&w->loop, on_down, s);
    s->next = w->sessions;
    if (w->sessions != NULL)
        w->sessions->prev = s;
    w->sessions = s;
    s->t_start = cdn_now_ms();
    s->state = ST_IDLE;
    return s;
}

size_t cdn_proxy_trim_idle(struct cdn_worker *w, uint64_t idle_ms)
{
    uint64_t now = cdn_now_ms();
    size_t n = 0;
    for (struct cdn_session *s = w->sessions; s != NULL; s = s->next) {
        if (s->state == ST_IDLE && !s->down->sink && s->t_idle != 0 && now - s->t_idle >= idle_ms) {
            cdn_conn_trim(s->down);
            free(s->pp.order);
            s->pp.order = NULL;
            s->t_idle = 0; /* trimmed; the next exchange sets it again */
            n++;
        }
    }
    return n;
}

size_t cdn_proxy_drain(struct cdn_worker *w)
{
    size_t left = 0;
    struct cdn_session *next;
    for (struct cdn_session *s = w->sessions; s != NULL; s = next) {
        next = s->next;
        if (!s->down->sink && (s->state == ST_IDLE || s->state == ST_HANDSHAKE))
            session_end(s); /* nothing of a request is in progress */
        else
            left++;
    }
    if (w->sessions == NULL)
        cdn_server_worker_drained(w);
    return left;
}

void cdn_proxy_shutdown(struct cdn_worker *w)
{
    while (w->sessions != NULL)
        proxy_session_abort(w->sessions);
    cdn_pool_free(&w->pool);
    cdn_conn_close_all();
}
