/*
 * proxy_int: what lib/proxy.c (the request path) and lib/proxy_cache.c (the HTTP cache layer on it)
 * share: the session and a few helpers. Not for other modules.
 */
#ifndef CDN_PROXY_INT_H
#define CDN_PROXY_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "cache/entry.h"
#include "cache/policy.h"
#include "cache/store.h"
#include "lib/buf.h"
#include "lib/collapse.h"
#include "lib/conn.h"
#include "lib/share.h"
#include "lib/http1.h"
#include "lib/util.h"
#include "lib/server.h"
#include "lib/stats.h"
#include "lib/tunnel.h"
#include "lib/ugroup.h"

/* Per-exchange cache state; zero means "the cache is not involved". */
struct proxy_cache {
    bool active;               /* GET/HEAD with a store: looked up, may be filled */
    bool revalidating;         /* the upstream request carries our validators */
    bool no_store;             /* the request said no-store */
    const char *fwd;           /* Cache-Status fwd reason for a forwarded response */
    struct cdn_buf key;        /* primary cache key */
    struct cdn_buf req;        /* a copy of the request head, re-parsed when its headers are needed */
    uint64_t req_id;           /* names that copy for request_again's memo; 0: none */
    char *target;              /* the upstream path[?query] (after remap) */
    struct cdn_buf validators; /* "If-None-Match: ..\r\n..." lines for the upstream request */
    int64_t req_time;          /* when the request went upstream (RFC 9111 4.2.3 request_time) */
    /* serving a stored body */
    struct cache_hit *hit;
    uint64_t off, end;
    /* filling */
    struct cache_fill *fill;
    struct cdn_buf meta; /* provisional entry (body_size 0) encoded at response-head time */
    uint64_t filled;
    bool fill_paused; /* upstream reads stopped until the store's writer catches up */
    /* collapsed forwarding */
    bool leader;                    /* others may wait for this fetch: finish it exactly once */
    struct cdn_collapse_wait *wait; /* waiting for a leader */
    unsigned lookups;               /* lookups after the leader stored (its commit may lag) */
    bool collapsed;                 /* served thanks to another request's fetch */
    struct cdn_share *share;        /* leader: what it shares (a ref); reader: what it reads (a ref) */
    bool share_reader;              /* s reads share (ST_SHARE_BODY), rather than feeds it */
    bool share_chunked;             /* the reader frames the shared body as chunked */
    uint64_t shared;                /* leader: bytes given to the share */
};

/* A CONNECT's state (lib/proxy_tunnel.c); zero when the request is not a tunnel. */
struct proxy_tunnel {
    struct cdn_tunnel relay;
    bool via_peer; /* edge: the tunnel goes through a peer node (else straight to the service) */
    bool active;   /* counted in tunnels_active */
    uint64_t counted_up, counted_down; /* relayed bytes already added to the stats */
};

/* Parent selection for a rule with "@group=NAME" (lib/ugroup.h); zero/NULL group = not used. */
struct proxy_parents {
    struct cdn_ugroup *group;
    size_t *order;     /* the request's parents, in the order they are tried (CDN_CONF_MAX_PARENTS; made by
                          plan_parents, freed when the session idles: 512 bytes an idle connection would keep) */
    size_t n, pos;     /* pos: the next one to consider */
    size_t cur;        /* the parent of the current attempt; SIZE_MAX = none */
    bool probe;        /* the current attempt is cur's half-open probe (unreported) */
    bool direct;       /* go_direct: the current attempt goes to the remap target */
    unsigned attempts; /* parents tried for this request */
};

#define SESSION_MAGIC 0x73657373u

#define PROXY_STATE_LIST(X)                                                \
    X(HANDSHAKE, "TLS handshaking")                                        \
    X(IDLE, "waiting for a request")                                       \
    X(HEAD, "reading the request head")                                    \
    X(CONNECT, "connecting upstream")                                      \
    X(WAIT_RESP, "waiting for the upstream response")                      \
    X(RESP_BODY, "sending the response body")                              \
    X(HIT_BODY, "sending a stored response")                               \
    X(COLLAPSED, "waiting for another request's fetch of the same object") \
    X(SHARE_BODY, "sending another request's response as it arrives")      \
    X(TUNNEL_CONNECT, "connecting a tunnel")                               \
    X(TUNNEL_RESP, "waiting for the peer's answer to CONNECT")             \
    X(TUNNEL, "relaying a tunnel")

enum sess_state {
#define X(name, action) ST_##name,
    PROXY_STATE_LIST(X)
#undef X
};

struct cdn_session {
    uint32_t magic;
    struct cdn_worker *w;
    struct cdn_gen *gen;               /* the configuration the connection was accepted under (a ref) */
    const struct cdn_listener_rt *lis; /* in gen */
    size_t li;                         /* lis's index */
    bool renewed;                      /* moved to a newer generation: close after this exchange */
    struct cdn_session *prev, *next;
    struct cdn_conn *down, *up;
    enum sess_state state;
    uint64_t t_start;
    uint64_t t_idle; /* when it became idle (ms); 0 = busy, or idle and already trimmed */
    bool client_eof;
    bool counted;        /* in connections_active */
    uint64_t t_upstream; /* when the request went upstream (ms), for the latency histogram */
    size_t head_scanned; /* bytes of a partial head already known to hold no line end */

    /* the request in flight (copied out of the input buffer) */
    char *method, *host, *path;
    int minor;
    bool keep_alive, is_head;
    enum cdn_http_body_kind req_kind;
    uint64_t req_left;
    struct cdn_http_chunked req_dec;
    bool req_done;
    struct cdn_buf up_head; /* request head, kept until the response head came (for a retry) */
    char *up_name;          /* "host:port" of the upstream, for logs */
    char *up_key;           /* pool key: "tls|host|port|name" */
    const struct cdn_remap_rule *rule;
    bool up_reused;    /* s->up came from the pool: the upstream may have closed it meanwhile */
    bool up_keepalive; /* the response allows reusing the upstream conn */

    struct proxy_cache pc; /* the cache's part of the exchange (proxy_cache.c) */

    struct proxy_tunnel pt; /* a CONNECT's part (proxy_tunnel.c) */

    struct proxy_parents pp; /* the parent of an upstream group (proxy.c) */

    /* the response in flight */
    int status;
    enum cdn_http_body_kind resp_kind;
    uint64_t resp_left;
    struct cdn_http_chunked resp_dec;
    bool resp_head_sent, resp_chunked_out, close_after;
    uint64_t resp_bytes;

    /* for the access log */
    const char *cache_result;   /* the request's cache outcome ("hit", "miss"...); NULL = none */
    char *user_agent, *referer; /* copied from the request head when the format uses them */
    bool client_id_done;        /* client_subject and client_fp were looked up */
    bool takeover_counted;      /* the connection's TLS takeover is in tls_takeovers */
    const struct cdn_sni_policy *down_policy; /* the client connection's SNI rule, kept from its handshake */
    char *client_subject, *client_fp;         /* of the connection's client certificate; NULL = none */
};


/* lib/proxy.c */
const struct cdn_conf *proxy_conf(const struct cdn_session *s);
/* No more keep-alive (nor pooling): the worker stops, or a reload made the session's generation old. */
bool proxy_stale(const struct cdn_session *s);
const char *proxy_http_date(void);
/* Inline so that the length of a literal folds away: heads are built from dozens of them. */
static inline void proxy_append_str(struct cdn_buf *b, const char *p)
{
    cdn_buf_append(b, p, strlen(p));
}
void proxy_append_header(struct cdn_buf *b, const struct cdn_http_header *h);
void proxy_append_via(struct cdn_buf *b, const struct cdn_http_header *h, size_t n, int minor,
                      const char *via);
static inline bool proxy_is_header(const struct cdn_http_header *h, const char *name)
{
    return cdn_strieq(h->name, h->name_len, name); /* inline: the name is nearly always a literal */
}
/* Connection/keep-alive trailer of a response head we build; sets s->close_after. */
void proxy_append_connection(struct cdn_session *s, struct cdn_buf *b);
/* The worker's counters; background fetches are not counted. */
void proxy_count(struct cdn_session *s, enum cdn_stat id);
void proxy_count_n(struct cdn_session *s, enum cdn_stat id, uint64_t n);
/* Answers with a locally generated status; returns true when the session was ended. */
bool proxy_send_error(struct cdn_session *s, int status, bool keep);
void proxy_session_abort(struct cdn_session *s);
/* Gives s->up back to the pool (a bodiless, reusable response) or closes it; s->up becomes NULL. */
void proxy_release_upstream(struct cdn_session *s);
/* A session whose "client" is a sink conn, for fetches nobody waits on (background revalidation).
 * The caller fills in the request fields and calls proxy_forward. */
struct cdn_session *proxy_session_background(const struct cdn_session *parent);
/* Sends the request upstream (builds the head from req, the remap rule and target). */
void proxy_forward(struct cdn_session *s, const struct cdn_http_request *req, const char *target);
/* The downstream response is complete: log it, then keep the connection for the next request or end it. */
void proxy_exchange_done(struct cdn_session *s);

/* lib/proxy_cache.c: each returns true when it answered the request itself (the session may be gone). */
/* After remap: looks the request up; serves a usable stored response, or prepares a miss/revalidation. */
bool proxy_cache_request(struct cdn_session *s, const struct cdn_http_request *req, const char *head,
                         size_t head_len, const char *target);
/* A final response head arrived from upstream; handles 304 freshening and stale-if-error, else decides
 * whether to fill and appends our Cache-Status member into *cache_status (the whole header line). */
bool proxy_cache_response(struct cdn_session *s, const struct cdn_http_response *res,
                          struct cdn_buf *cache_status);
/* A connect or response failure before any response byte: serve stale if stale-if-error allows. */
bool proxy_cache_upstream_error(struct cdn_session *s);
/* Response body bytes (decoded) on their way down: tee them into the fill. */
void proxy_cache_body(struct cdn_session *s, const char *p, size_t n);
/* True while the fill asks the upstream to pause. */
bool proxy_cache_fill_busy(struct cdn_session *s);
/* The upstream response ended (complete or not). */
void proxy_cache_response_done(struct cdn_session *s, bool complete);
/* DRAIN while a stored body is being sent. */
void proxy_cache_hit_continue(struct cdn_session *s);
/* DRAIN (or more data) while another request's response is being relayed. */
void proxy_cache_share_continue(struct cdn_session *s);
/* Releases hit and fill (aborting an unfinished fill). */
void proxy_cache_reset(struct cdn_session *s);
/* Worker hook: the store's writer drained a busy fill. */
void proxy_cache_on_fill_drain(struct cdn_worker *w);
/* Worker hook: a leader finished; wake this worker's waiting sessions. */
void proxy_cache_on_collapse_wake(struct cdn_worker *w);
/* The down conn's timer fired while waiting for a leader. */
void proxy_cache_collapse_timeout(struct cdn_session *s);

/* lib/proxy_tunnel.c */
/* A CONNECT head (not yet consumed from s->down->in): refuses it or starts the tunnel, and returns true;
 * returns false when this listener has no tunnels (the caller answers 405). From then on the session's
 * conns deliver their events to proxy_tunnel.c, and the session ends there. */
bool proxy_tunnel_request(struct cdn_session *s, const struct cdn_http_request *req, size_t head_len);
/* Releases the tunnel's part of the session (reset_request). */
void proxy_tunnel_reset(struct cdn_session *s);

#endif
