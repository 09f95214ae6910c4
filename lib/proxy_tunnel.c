/*
 * proxy_tunnel: CONNECT on the request path (docs/TUNNELS.md), in the shape of ATS's tls_bridge.
 *
 *   edge:     CONNECT host:port -> first tunnel route whose regex matches the whole target -> mTLS conn
 *             to the route's peer (the upstream: block's client certificate, CA and verify policy) ->
 *             CONNECT sent on -> the peer's answer head (read across any number of reads) -> 2xx:
 *             "200" to the client and relay; else the peer's status and reason, and close.
 *   regional: CONNECT host:port on a tunnel listener, from a verified client certificate, to a port
 *             in connect_ports -> resolve (uv_getaddrinfo, off the loop) and connect -> 200 and relay.
 *
 * Once a CONNECT is accepted for forwarding, the session's two conns deliver their events here
 * (on_tunnel) and the session never returns to HTTP: it ends with the tunnel. Every phase has a
 * deadline: timeouts.upstream_connect (connect, resolve, TLS), timeouts.upstream_response (the
 * peer's answer), tunnel.idle_timeout (the relay). The relay itself is lib/tunnel.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "lib/conn.h"
#include "lib/http1.h"
#include "lib/log.h"
#include "lib/proxy_int.h"
#include "lib/tls.h"
#include "lib/tunnel.h"
#include "lib/util.h"

static const char established[] = "HTTP/1.1 200 Connection Established\r\n\r\n";

static void on_tunnel(struct cdn_conn *c, enum cdn_conn_event ev, int status);

/* The client context for peers: the one upstream fetches use (the node's upstream: block). */
static SSL_CTX *peer_ctx(const struct cdn_session *s)
{
    return s->gen->upstream_ctx;
}

static const char *state_name(const struct cdn_session *s)
{
    return s->state == ST_TUNNEL_CONNECT ? "connecting a tunnel"
           : s->state == ST_TUNNEL_RESP  ? "waiting for the peer's answer to CONNECT"
                                         : "relaying a tunnel";
}

/* Adds the bytes relayed since the last call to the stats, so a long tunnel shows up while it runs. */
static void count_bytes(struct cdn_session *s)
{
    struct proxy_tunnel *pt = &s->pt;
    if (pt->relay.a_to_b > pt->counted_up) {
        proxy_count_n(s, CDN_STAT_tunnel_bytes_up, pt->relay.a_to_b - pt->counted_up);
        pt->counted_up = pt->relay.a_to_b;
    }
    if (pt->relay.b_to_a > pt->counted_down) {
        proxy_count_n(s, CDN_STAT_tunnel_bytes_down, pt->relay.b_to_a - pt->counted_down);
        pt->counted_down = pt->relay.b_to_a;
    }
}

/* The access log line of a tunnel that was established: up/down are the bytes relayed each way. */
static void log_tunnel(struct cdn_session *s, const char *end)
{
    if (!cdn_log_access_enabled())
        return;
    const char *tlsv = cdn_conn_tls_version(s->down);
    const char *sni = cdn_conn_sni(s->down);
    cdn_log_access("%s \"CONNECT %s HTTP/1.%d\" %d %llu %llums sni=%s tls=%s up=%s tunnel_up=%llu "
                   "tunnel_down=%llu end=%s",
                   s->down->peer, s->path != NULL ? s->path : "-", s->minor, s->status,
                   (unsigned long long)s->pt.relay.b_to_a, (unsigned long long)(cdn_now_ms() - s->t_start),
                   sni != NULL ? sni : "-", tlsv != NULL ? tlsv : "-", s->up_name != NULL ? s->up_name : "-",
                   (unsigned long long)s->pt.relay.a_to_b, (unsigned long long)s->pt.relay.b_to_a, end);
}

/* Ends the session: gracefully (both conns flush and close) or at once. */
static void tunnel_end(struct cdn_session *s, bool graceful)
{
    if (graceful) {
        /* proxy_session_abort closes only the conns still set; ended ones close themselves */
        cdn_conn_end(s->up);
        cdn_conn_end(s->down);
        s->up = s->down = NULL;
    }
    proxy_session_abort(s);
}

/* A refusal or failure before the tunnel was established: an error response, then close. */
static void tunnel_refuse(struct cdn_session *s, int status, enum cdn_stat id, const char *why)
{
    proxy_count(s, id);
    cdn_log(status >= 500 ? CDN_LOG_WARN : CDN_LOG_INFO, "conn=%llu peer=%s: CONNECT %s: %d: %s",
            (unsigned long long)s->down->id, s->down->peer, s->path, status, why);
    s->keep_alive = false;
    proxy_send_error(s, status, false);
}

/* The peer answered, but not 2xx: its status and reason go to the client, with a short body. */
static void pass_peer_status(struct cdn_session *s, const struct cdn_http_response *res)
{
    char reason[128];
    size_t rl = res->reason_len < sizeof(reason) - 1 ? res->reason_len : sizeof(reason) - 1;
    memcpy(reason, res->reason, rl);
    reason[rl] = '\0';
    if (rl == 0)
        snprintf(reason, sizeof(reason), "%s", cdn_http1_reason(res->status));
    proxy_count(s, CDN_STAT_tunnel_failed_peer);
    cdn_log(CDN_LOG_INFO, "conn=%llu peer=%s: CONNECT %s: peer %s answered %d %s",
            (unsigned long long)s->down->id, s->down->peer, s->path, s->up_name, res->status, reason);
    char body[256];
    int blen = snprintf(body, sizeof(body), "%d %s (from tunnel peer %s)\n", res->status, reason, s->up_name);
    if (blen >= (int)sizeof(body)) /* a long peer name: the body is cut, never overread */
        blen = (int)sizeof(body) - 1;
    char head[512]; /* the reason is at most 127 bytes: this always fits */
    int hlen = snprintf(head, sizeof(head),
                        "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                        "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                        res->status, reason, proxy_http_date(), blen);
    CDN_ASSERT(hlen > 0 && hlen < (int)sizeof(head));
    cdn_conn_write(s->down, head, (size_t)hlen);
    cdn_conn_write(s->down, body, (size_t)blen);
    s->status = res->status;
    if (!s->down->sink)
        cdn_stats_response(&s->w->stats, res->status);
    log_tunnel(s, "peer-refused");
    cdn_conn_close(s->up);
    s->up = NULL;
    cdn_conn_end(s->down);
    s->down = NULL;
    proxy_session_abort(s);
}

/* Both ends are open: tell the client and relay. */
static void establish(struct cdn_session *s)
{
    cdn_conn_write(s->down, established, sizeof(established) - 1);
    s->status = 200;
    cdn_stats_response(&s->w->stats, 200);
    proxy_count(s, CDN_STAT_tunnels);
    cdn_stats_inc(&s->w->stats, CDN_STAT_tunnels_active);
    s->pt.active = true;
    s->state = ST_TUNNEL;
    cdn_tunnel_start(&s->pt.relay, s->down, s->up, proxy_conf(s)->tunnel.idle_timeout_ms);
}

/* Failures of the conn to the peer or service before the tunnel was established. */
static void connect_failed(struct cdn_session *s, struct cdn_conn *u, int status)
{
    char why[320];
    snprintf(why, sizeof(why), "%s: %s while %s", s->up_name,
             u->err[0] != '\0' ? u->err : cdn_strerror(status), state_name(s));
    cdn_conn_close(s->up);
    s->up = NULL;
    /* uv_getaddrinfo's errors are the UV_EAI_* range */
    bool resolve = status <= UV_EAI_ADDRFAMILY && status >= UV_EAI_PROTOCOL;
    tunnel_refuse(s, 502, resolve ? CDN_STAT_tunnel_failed_resolve : CDN_STAT_tunnel_failed_connect, why);
}

static void read_peer_answer(struct cdn_session *s)
{
    struct cdn_conn *u = s->up;
    static _Thread_local struct cdn_http_response res;
    for (;;) {
        int rc = cdn_http1_parse_response(cdn_buf_data(&u->in), u->in.len, &s->gen->limits, false, &res);
        if (rc == CDN_HTTP_EAGAIN)
            return; /* the head is split over reads: wait for more */
        char why[160];
        if (rc < 0 || res.status == 101) {
            snprintf(why, sizeof(why), "peer %s: malformed answer to CONNECT", s->up_name);
            cdn_conn_close(s->up);
            s->up = NULL;
            tunnel_refuse(s, 502, CDN_STAT_tunnel_failed_peer, why);
            return;
        }
        if (res.status < 200) { /* interim */
            cdn_buf_consume(&u->in, (size_t)rc);
            continue;
        }
        if (res.status >= 300) {
            pass_peer_status(s, &res);
            return;
        }
        /* 2xx (RFC 9110 9.3.6): what follows the head is the service's first bytes, relayed as such */
        cdn_buf_consume(&u->in, (size_t)rc);
        establish(s);
        return;
    }
}

static void relay_event(struct cdn_session *s, struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    enum cdn_tunnel_result r = cdn_tunnel_event(&s->pt.relay, c, ev, status);
    count_bytes(s);
    switch (r) {
    case CDN_TUNNEL_GOING:
        return;
    case CDN_TUNNEL_DONE:
        log_tunnel(s, s->pt.relay.truncated ? "eof-no-close-notify" : "eof");
        tunnel_end(s, true);
        return;
    case CDN_TUNNEL_IDLE:
        cdn_log(CDN_LOG_INFO, "conn=%llu peer=%s: tunnel to %s idle for %llums: closed",
                (unsigned long long)s->down->id, s->down->peer, s->path,
                (unsigned long long)s->pt.relay.idle_ms);
        log_tunnel(s, "idle-timeout");
        tunnel_end(s, false);
        return;
    case CDN_TUNNEL_FAILED:
        cdn_log(CDN_LOG_INFO, "conn=%llu peer=%s: tunnel to %s: %s side: %s", (unsigned long long)s->down->id,
                s->down->peer, s->path, c == s->down ? "client" : "peer", s->pt.relay.why);
        log_tunnel(s, c == s->down ? "client-error" : "peer-error");
        tunnel_end(s, false);
        return;
    }
}

static void tunnel_event(struct cdn_session *s, struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    if (s->state == ST_TUNNEL) {
        relay_event(s, c, ev, status);
        return;
    }
    if (c == s->down) {
        /* reading is stopped until the tunnel opens: only a failure can come from the client */
        if (ev == CDN_CONN_EV_ERROR || ev == CDN_CONN_EV_EOF) {
            cdn_log(CDN_LOG_DEBUG, "conn=%llu peer=%s: client gone while %s", (unsigned long long)c->id,
                    c->peer, state_name(s));
            proxy_session_abort(s);
        }
        return;
    }
    const struct cdn_conf *conf = proxy_conf(s);
    char line[1024]; /* two targets of at most 263 bytes, the Via pseudonym (64) and the rest */
    switch (ev) {
    case CDN_CONN_EV_OPEN:
        if (!s->pt.via_peer) {
            establish(s);
            return;
        }
        if (c->ssl != NULL && conf->upstream.verify_policy == CDN_VERIFY_PERMISSIVE &&
            SSL_get_verify_result(c->ssl) != X509_V_OK) /* as for upstream fetches: let through, say so */
            cdn_log(CDN_LOG_WARN,
                    "tunnel peer %s: certificate not verified (%s); connecting anyway (verify_server_policy: "
                    "PERMISSIVE)",
                    s->up_name, X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
        /* authority-form, as the client sent it; Via lets a misrouted loop be seen in the logs */
        snprintf(line, sizeof(line), "CONNECT %s HTTP/1.1\r\nHost: %s\r\nVia: 1.%d %s\r\n\r\n", s->path,
                 s->path, s->minor, s->gen->via);
        cdn_conn_write(c, line, strlen(line));
        s->state = ST_TUNNEL_RESP;
        cdn_conn_set_timeout(c, conf->timeouts.upstream_response_ms);
        return;
    case CDN_CONN_EV_READ:
        if (s->state == ST_TUNNEL_RESP)
            read_peer_answer(s);
        else
            cdn_conn_read_stop(c);
        return;
    case CDN_CONN_EV_DRAIN:
        return;
    case CDN_CONN_EV_EOF:
        snprintf(line, sizeof(line), "%s closed before answering CONNECT", s->up_name);
        cdn_conn_close(s->up);
        s->up = NULL;
        tunnel_refuse(s, 502, CDN_STAT_tunnel_failed_peer, line);
        return;
    case CDN_CONN_EV_ERROR:
        connect_failed(s, c, status);
        return;
    case CDN_CONN_EV_TIMEOUT:
        snprintf(line, sizeof(line), "%s: timed out while %s", s->up_name, state_name(s));
        cdn_conn_close(s->up);
        s->up = NULL;
        tunnel_refuse(s, 504, CDN_STAT_tunnel_failed_timeout, line);
        return;
    }
}

/* Writes made while handling one event leave together, as in lib/proxy.c. */
static void on_tunnel(struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    struct cdn_session *s = c->data;
    CDN_CHECK_OBJ(s, SESSION_MAGIC);
    struct cdn_conn *d = s->down, *u = s->up;
    cdn_conn_cork(d);
    if (u != NULL)
        cdn_conn_cork(u);
    tunnel_event(s, c, ev, status);
    if (u != NULL)
        cdn_conn_uncork(u);
    cdn_conn_uncork(d);
}

/* Splits an authority-form target; false when it is not one we can connect to. */
static bool split_target(const char *t, char *host, size_t hostsize, int *port)
{
    const char *colon = strrchr(t, ':');
    if (colon == NULL || colon == t)
        return false;
    const char *h = t;
    size_t hl = (size_t)(colon - t);
    if (h[0] == '[') {
        if (hl < 3 || h[hl - 1] != ']')
            return false;
        h++;
        hl -= 2;
    }
    if (hl >= hostsize || memchr(h, '%', hl) != NULL) /* no percent-encoded names */
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || p < 1 || p > 65535)
        return false;
    *port = (int)p;
    return true;
}

/* The conn carries a client certificate that the handshake verified. */
static bool client_verified(const struct cdn_session *s)
{
    SSL *ssl = s->down->ssl;
    return ssl != NULL && SSL_get0_peer_certificate(ssl) != NULL && SSL_get_verify_result(ssl) == X509_V_OK;
}

bool proxy_tunnel_request(struct cdn_session *s, const struct cdn_http_request *req, size_t head_len)
{
    const struct cdn_conf *conf = proxy_conf(s);
    if (!cdn_conf_tunnel_listener(conf, s->lis->conf->name)) {
        proxy_count(s, CDN_STAT_tunnel_refused_disabled);
        return false;
    }
    cdn_buf_consume(&s->down->in, head_len);
    /* the target is the whole authority: keep it once (s->path) for the logs */
    free(s->host);
    s->host = NULL;
    char host[256];
    int port = 0;
    if (!s->req_done || !split_target(s->path, host, sizeof(host), &port)) {
        tunnel_refuse(s, 400, CDN_STAT_tunnel_refused_bad_target,
                      !s->req_done ? "a CONNECT with a body" : "target is not host:port");
        return true;
    }
    const struct cdn_conf_tunnel_route *route = NULL;
    if (conf->role == CDN_ROLE_EDGE) {
        route = cdn_conf_tunnel_route(conf, s->path);
        if (route == NULL) {
            tunnel_refuse(s, 403, CDN_STAT_tunnel_refused_no_route, "no tunnel route matches");
            return true;
        }
    } else {
        if (!client_verified(s)) {
            tunnel_refuse(s, 403, CDN_STAT_tunnel_refused_no_certificate,
                          "the connection has no verified client certificate");
            return true;
        }
        if (!cdn_conf_tunnel_port_allowed(conf, port)) {
            tunnel_refuse(s, 403, CDN_STAT_tunnel_refused_port, "port not in tunnel.connect_ports");
            return true;
        }
    }
    /* From here on the session is a tunnel: the client's bytes wait in the socket until it opens. */
    cdn_conn_read_stop(s->down);
    cdn_conn_set_timeout(s->down, 0);
    s->down->cb = on_tunnel;
    size_t in_cap = (size_t)conf->limits.max_header_size + 64 * 1024;
    if (route != NULL) {
        const struct cdn_conf_upstream *uc = &conf->upstream;
        s->pt.via_peer = true;
        s->up_name = cdn_xstrdup(route->peer);
        s->up = cdn_conn_connect(&s->w->loop, route->peer_host, (uint16_t)route->peer_port, peer_ctx(s),
                                 uc->server_name != NULL ? uc->server_name : route->peer_host,
                                 cdn_tls_upstream_checks_name(uc), in_cap, on_tunnel, s);
    } else {
        s->up_name = cdn_xasprintf("%s", s->path);
        s->up = cdn_conn_connect(&s->w->loop, host, (uint16_t)port, NULL, NULL, false, in_cap, on_tunnel, s);
    }
    cdn_conn_set_timeout(s->up, conf->timeouts.upstream_connect_ms);
    s->state = ST_TUNNEL_CONNECT;
    return true;
}

void proxy_tunnel_reset(struct cdn_session *s)
{
    if (s->pt.active)
        cdn_stats_dec(&s->w->stats, CDN_STAT_tunnels_active);
    memset(&s->pt, 0, sizeof(s->pt));
}
