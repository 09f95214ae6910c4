/*
 * proxy_cache: the HTTP cache on the request path (RFC 9111), between the session (lib/proxy.c), the
 * pure rules (cache/policy.c), the record format (cache/entry.c) and the LMDB store (cache/store.c).
 *
 *   request:  key -> lookup -> decide: FRESH/STALE -> serve the stored response (ST_HIT_BODY)
 *                                      REVALIDATE  -> forward with our validators
 *                     miss             -> forward (only-if-cached: 504)
 *   response: 304 to our validators -> freshen the stored meta, serve the stored body
 *             5xx, stale-if-error   -> serve the stored response
 *             storable              -> fill: every body byte on its way down is also appended to the
 *                                      store; the object appears when the body ended cleanly
 *
 * Every response that passed through the cache layer carries our Cache-Status member (RFC 9211),
 * appended to what the upstream tier sent. Stored bodies are written to the client straight from the
 * LMDB map (TLS encrypts from it; nothing is copied to the heap first); the hit's read transaction is
 * held only while that body is being sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/key.h"
#include "lib/log.h"
#include "lib/proxy_int.h"
#include "lib/util.h"

/* Decoded stored response, pointing into the hit's record. */
struct stored {
    struct cache_entry e;
    struct cdn_http_header h[CDN_HTTP_MAX_HEADERS];
    size_t n;
    struct cache_response_info ri;
};

static struct cache_store *store_of(const struct cdn_session *s)
{
    return s->w->srv->store;
}

static bool is_method(const char *m, const char *want)
{
    return strcmp(m, want) == 0;
}

/* The request's headers again, from the copy taken in proxy_cache_request. */
/* The request head parsed again from its copy, remembered for the thread's last copy: a hit asks
 * for it several times. Copies are named by ids never reused, so a memo cannot outlive its copy. */
static _Thread_local uint64_t req_ids;

static const struct cdn_http_request *request_again(struct cdn_session *s)
{
    static _Thread_local struct cdn_http_request req;
    static _Thread_local uint64_t parsed_id;
    if (s->pc.req_id != 0 && s->pc.req_id == parsed_id)
        return &req;
    int rc = cdn_http1_parse_request(cdn_buf_data(&s->pc.req), s->pc.req.len, &s->gen->limits, &req);
    CDN_ASSERT(rc > 0); /* it parsed the first time */
    parsed_id = s->pc.req_id;
    return &req;
}

static int decode_stored(struct cdn_session *s, struct cache_hit *hit, struct stored *st)
{
    size_t mlen, klen;
    const void *meta = cache_hit_meta(hit, &mlen);
    int rc = cache_entry_decode(meta, mlen, &st->e);
    if (rc != 0)
        return rc;
    const void *k = cache_hit_key(hit, &klen);
    if (st->e.key_len != klen || memcmp(st->e.key, k, klen) != 0 ||
        st->e.body_size != cache_hit_body_size(hit) || !(st->e.flags & CACHE_ENTRY_F_COMPLETE))
        return CACHE_ENTRY_EFORMAT;
    int n = cache_entry_headers(&st->e, st->h, CDN_HTTP_MAX_HEADERS);
    if (n < 0)
        return n;
    st->n = (size_t)n;
    cache_policy_parse_response(&s->gen->cache_policy, st->e.status, st->h, st->n, &st->ri);
    return 0;
}

static void cache_status_member(struct cdn_session *s, const struct cache_status *cs,
                                const struct cdn_http_header *h, size_t n, struct cdn_buf *out)
{
    struct cdn_buf *received = &s->w->cs_buf;
    cdn_buf_reset(received);
    for (size_t i = 0; i < n; i++) {
        if (proxy_is_header(&h[i], "cache-status") && h[i].value_len > 0) {
            if (received->len > 0)
                cdn_buf_append(received, ", ", 2);
            cdn_buf_append(received, h[i].value, h[i].value_len);
        }
    }
    proxy_append_str(out, "Cache-Status: ");
    cache_policy_cache_status(cs, cdn_buf_data(received), received->len, out);
    proxy_append_str(out, "\r\n");
}

/* ---- serving a stored response ---- */

static void hit_done(struct cdn_session *s)
{
    cache_hit_release(&s->pc.hit);
    proxy_exchange_done(s);
}

void proxy_cache_hit_continue(struct cdn_session *s)
{
    struct cdn_conn *d = s->down;
    while (s->pc.off < s->pc.end) {
        if (cdn_conn_congested(d)) { /* DRAIN brings us back */
            cdn_conn_set_timeout(d, proxy_conf(s)->timeouts.body_ms);
            return;
        }
        size_t len = 0;
        const char *p = cache_hit_body(s->pc.hit, s->pc.off, &len);
        if (p == NULL) {
            cdn_log(CDN_LOG_ERROR, "conn=%llu: cache: damaged body of %.*s at offset %llu",
                    (unsigned long long)d->id, (int)s->pc.key.len, cdn_buf_data(&s->pc.key),
                    (unsigned long long)s->pc.off);
            proxy_session_abort(s); /* the client sees a truncated body, never wrong bytes */
            return;
        }
        if (len > s->pc.end - s->pc.off)
            len = (size_t)(s->pc.end - s->pc.off);
        cdn_conn_write_direct(d, p, len); /* from LMDB's map to the TLS record, no copy in between */
        s->pc.off += len;
        s->resp_bytes += len;
        proxy_count_n(s, CDN_STAT_bytes_from_cache, len);
    }
    cdn_conn_set_timeout(d, 0);
    hit_done(s);
}

/* Sends the stored response of hit (taking it) as the answer to the current request. d is the
 * freshness decision; fwd, when set, says it was served after going upstream (revalidated or stale
 * on error) and fwd_status what the upstream answered. */
static void serve_stored(struct cdn_session *s, struct cache_hit *hit, struct stored *st,
                         const struct cache_decision *d, const char *fwd, int fwd_status)
{
    const struct cdn_http_request *req = request_again(s);
    uint64_t size = st->e.body_size, first = 0, last = size == 0 ? 0 : size - 1;
    proxy_count(s, fwd != NULL ? (fwd_status == 304 ? CDN_STAT_cache_revalidated : CDN_STAT_cache_hit_stale)
                   : s->pc.collapsed ? CDN_STAT_cache_collapsed
                   : d->ttl > 0      ? CDN_STAT_cache_hit_fresh
                                     : CDN_STAT_cache_hit_stale);
    int status = st->e.status;
    enum cache_range range = CACHE_RANGE_NONE;
    if (cache_policy_not_modified(req->method, req->method_len, req->headers, req->num_headers, &st->ri,
                                  st->e.response_time)) {
        status = 304;
    } else {
        range = cache_policy_range(req->method, req->method_len, req->headers, req->num_headers, &st->ri,
                                   size, &first, &last);
        if (range == CACHE_RANGE_PARTIAL)
            status = 206;
        else if (range == CACHE_RANGE_UNSATISFIABLE)
            status = 416;
    }

    struct cdn_buf *b = &s->w->head_buf; /* the worker's scratch: no allocation per hit */
    cdn_buf_reset(b);
    char line[160];
    proxy_append_str(b, "HTTP/1.1 ");
    cdn_buf_append_u64(b, (uint64_t)status);
    proxy_append_str(b, " ");
    proxy_append_str(b, cdn_http1_reason(status));
    proxy_append_str(b, "\r\n");
    for (size_t i = 0; i < st->n; i++) {
        const struct cdn_http_header *h = &st->h[i];
        if (proxy_is_header(h, "age") || proxy_is_header(h, "content-length") || proxy_is_header(h, "via") ||
            proxy_is_header(h, "cache-status") || proxy_is_header(h, "content-range"))
            continue;
        if (status == 416 && proxy_is_header(h, "content-type"))
            continue;
        proxy_append_header(b, h);
    }
    proxy_append_str(b, "Age: ");
    cdn_buf_append_i64(b, cache_policy_age_value(d->age));
    proxy_append_str(b, "\r\n");
    proxy_append_via(b, st->h, st->n, 1, s->gen->via);
    struct cache_status cs = {.cache = s->gen->cache_name,
                              .hit = fwd == NULL,
                              .collapsed = s->pc.collapsed,
                              .fwd = fwd,
                              .fwd_status = fwd_status,
                              .has_ttl = true,
                              .ttl = d->ttl};
    cache_status_member(s, &cs, st->h, st->n, b);
    if (status == 206 || status == 416) {
        size_t k = cache_policy_content_range(range, first, last, size, line, sizeof(line));
        proxy_append_str(b, "Content-Range: ");
        cdn_buf_append(b, line, k);
        proxy_append_str(b, "\r\n");
    }
    uint64_t body = status == 206 ? last - first + 1 : status == 304 || status == 416 ? 0 : size;
    if (status != 304) {
        proxy_append_str(b, "Content-Length: ");
        cdn_buf_append_u64(b, body);
        proxy_append_str(b, "\r\n");
    }
    proxy_append_connection(s, b);
    cdn_conn_write(s->down, cdn_buf_data(b), b->len);

    s->status = status;
    s->resp_head_sent = true;
    if (s->is_head || body == 0) {
        cache_hit_release(&hit);
        proxy_exchange_done(s);
        return;
    }
    s->pc.hit = hit;
    s->pc.off = status == 206 ? first : 0;
    s->pc.end = s->pc.off + body;
    s->state = ST_HIT_BODY;
    proxy_cache_hit_continue(s);
}

/* Looks key up and decodes it. Returns the hit (caller releases) or NULL; a damaged record is
 * removed so that the next fill replaces it. */
static struct cache_hit *lookup(struct cdn_session *s, struct stored *st)
{
    struct cache_hit *hit = NULL;
    int rc = cache_store_lookup(store_of(s), cdn_buf_data(&s->pc.key), s->pc.key.len, &hit);
    if (rc != 0 || hit == NULL)
        return NULL;
    rc = decode_stored(s, hit, st);
    if (rc != 0) {
        cdn_log(CDN_LOG_WARN, "cache: dropping unreadable object %.*s: %s", (int)s->pc.key.len,
                cdn_buf_data(&s->pc.key), cache_entry_strerror(rc));
        cache_hit_release(&hit);
        cache_store_remove(store_of(s), cdn_buf_data(&s->pc.key), s->pc.key.len);
        return NULL;
    }
    return hit;
}

/* ---- collapsed forwarding ---- */

static void lead_done(struct cdn_session *s, enum cdn_collapse_result result)
{
    if (!s->pc.leader)
        return;
    s->pc.leader = false;
    cdn_collapse_finish(s->w->srv->collapse, cdn_buf_data(&s->pc.key), s->pc.key.len, result);
}

/* A leader's fill was handed to the store; the store's writer finishes the collapse entry. */
struct lead_note {
    struct cdn_collapse *table;
    size_t klen;
    char key[];
};

static void on_leader_commit(void *data, bool stored)
{
    struct lead_note *note = data; /* writer thread: the collapse table is thread-safe */
    cdn_collapse_finish(note->table, note->key, note->klen, stored ? CDN_COLLAPSE_STORED : CDN_COLLAPSE_GO);
    free(note);
}

static void wake_worker(void *arg)
{
    struct cdn_worker *w = arg; /* any thread: only signal the worker's loop */
    uv_async_send(&w->collapse_async);
}

/* Only plain GETs share a fetch: a conditional, ranged, authorised or no-cache request wants an
 * answer of its own from upstream. */
static bool collapsible(const struct cdn_http_request *req, const struct cache_request_info *creq)
{
    static const char *const own[] = {
        "range", "if-none-match", "if-modified-since", "if-range", "if-match", "if-unmodified-since", NULL};
    if (!cdn_strieq(req->method, req->method_len, "GET") || creq->has_authorization ||
        (creq->cc.flags & (CACHE_CC_NO_CACHE | CACHE_CC_NO_STORE)))
        return false;
    for (size_t i = 0; own[i] != NULL; i++) {
        if (cdn_http1_find_header(req->headers, req->num_headers, own[i]) != NULL)
            return false;
    }
    return true;
}

#define SHARE_MAX_FACTOR   4  /* a shared body may use this many max_object_size of memory */
#define COLLAPSE_LOOKUPS   50 /* after STORED, how often to look again for the leader's commit */
#define COLLAPSE_LOOKUP_MS 4

static void collapse_forward(struct cdn_session *s)
{
    s->pc.fwd = s->pc.fwd != NULL ? s->pc.fwd : "uri-miss";
    proxy_forward(s, request_again(s), s->pc.target);
}

/* The leader stored the object: serve it as a hit, or forward if it is not (yet) usable. */
static void collapse_lookup(struct cdn_session *s)
{
    static _Thread_local struct stored st;
    const struct cdn_http_request *req = request_again(s);
    struct cache_hit *hit = lookup(s, &st);
    if (hit != NULL && (st.e.vary_len == 0 ||
                        cache_policy_vary_match(st.e.vary, st.e.vary_len, req->headers, req->num_headers,
                                                st.e.secondary_key, st.e.secondary_key_len))) {
        struct cache_request_info creq;
        cache_policy_parse_request(req->headers, req->num_headers, &creq);
        struct cache_decision d;
        enum cache_use use = cache_policy_decide(&s->gen->cache_policy, &st.ri, st.e.request_time,
                                                 st.e.response_time, &creq, (int64_t)time(NULL), &d);
        if (use == CACHE_USE_FRESH || use == CACHE_USE_STALE) {
            s->pc.collapsed = true;
            serve_stored(s, hit, &st, &d, NULL, 0);
            return;
        }
    }
    cache_hit_release(&hit);
    if (hit == NULL && s->pc.lookups++ < COLLAPSE_LOOKUPS) { /* the store's writer may lag a little */
        cdn_conn_set_timeout(s->down, COLLAPSE_LOOKUP_MS);
        return;
    }
    collapse_forward(s);
}

static void serve_shared(struct cdn_session *s);

static void collapse_woken(struct cdn_session *s)
{
    enum cdn_collapse_result r = cdn_collapse_result(s->pc.wait);
    if (r == CDN_COLLAPSE_SHARED)
        s->pc.share = cdn_share_ref(cdn_collapse_wait_share(s->pc.wait));
    cdn_collapse_leave(&s->pc.wait);
    if (r == CDN_COLLAPSE_SHARED)
        serve_shared(s);
    else if (r == CDN_COLLAPSE_STORED)
        collapse_lookup(s);
    else
        collapse_forward(s);
}

/* ---- read-while-writer: a waiter relays the leader's response as it arrives ---- */

static void on_share_wake(void *arg)
{
    struct cdn_session *s = arg; /* any thread, under the share's lock: s->w is immutable */
    uv_async_send(&s->w->collapse_async);
}

static void share_end_reader(struct cdn_session *s)
{
    cdn_share_unwatch(s->pc.share, s);
    cdn_share_unref(&s->pc.share);
    s->pc.share_reader = false;
}

void proxy_cache_share_continue(struct cdn_session *s)
{
    struct cdn_conn *d = s->down;
    for (;;) {
        if (cdn_conn_congested(d)) { /* DRAIN brings us back */
            cdn_conn_set_timeout(d, proxy_conf(s)->timeouts.body_ms);
            return;
        }
        const void *p;
        enum cdn_share_state st;
        size_t n = cdn_share_read(s->pc.share, s->pc.off, &p, &st);
        if (n > 0) {
            if (s->pc.share_chunked) {
                char hdr[24];
                int k = snprintf(hdr, sizeof(hdr), "%zx\r\n", n);
                cdn_conn_write(d, hdr, (size_t)k);
                cdn_conn_write(d, p, n);
                cdn_conn_write(d, "\r\n", 2);
            } else {
                cdn_conn_write(d, p, n);
            }
            s->pc.off += n;
            s->resp_bytes += n;
            proxy_count_n(s, CDN_STAT_bytes_from_cache, n);
            continue;
        }
        if (st == CDN_SHARE_MORE) { /* the leader's next bytes wake us */
            cdn_conn_set_timeout(d, proxy_conf(s)->timeouts.body_ms);
            return;
        }
        share_end_reader(s);
        if (st == CDN_SHARE_FAILED) {
            proxy_session_abort(s); /* a truncated body, never a false end */
            return;
        }
        if (s->pc.share_chunked)
            cdn_conn_write(d, "0\r\n\r\n", 5);
        cdn_conn_set_timeout(d, 0);
        proxy_exchange_done(s);
        return;
    }
}

/* Answers s with the head of the response the leader is receiving, then relays its body. */
static void serve_shared(struct cdn_session *s)
{
    s->pc.share_reader = true;
    static _Thread_local struct cdn_http_header h[CDN_HTTP_MAX_HEADERS];
    size_t mlen;
    const void *meta = cdn_share_meta(s->pc.share, &mlen);
    struct cache_entry e;
    int n = cache_entry_decode(meta, mlen, &e);
    if (n == 0)
        n = cache_entry_headers(&e, h, CDN_HTTP_MAX_HEADERS);
    CDN_ASSERT(n >= 0); /* we encoded it ourselves */
    const struct cdn_http_request *req = request_again(s);
    if (e.vary_len > 0 && !cache_policy_vary_match(e.vary, e.vary_len, req->headers, req->num_headers,
                                                   e.secondary_key, e.secondary_key_len)) {
        share_end_reader(s); /* another variant: this one needs its own fetch */
        collapse_forward(s);
        return;
    }
    proxy_count(s, CDN_STAT_cache_collapsed);
    struct cdn_buf b;
    cdn_buf_init(&b);
    char line[160];
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", e.status, cdn_http1_reason(e.status));
    proxy_append_str(&b, line);
    for (int i = 0; i < n; i++) {
        if (proxy_is_header(&h[i], "age") || proxy_is_header(&h[i], "content-length") ||
            proxy_is_header(&h[i], "via") || proxy_is_header(&h[i], "cache-status"))
            continue;
        proxy_append_header(&b, &h[i]);
    }
    proxy_append_via(&b, h, (size_t)n, 1, s->gen->via);
    struct cache_status cs = {
        .cache = s->gen->cache_name, .fwd = "uri-miss", .fwd_status = e.status, .collapsed = true};
    cache_status_member(s, &cs, h, (size_t)n, &b);
    uint64_t length;
    if (cdn_share_length(s->pc.share, &length)) {
        snprintf(line, sizeof(line), "Content-Length: %llu\r\n", (unsigned long long)length);
        proxy_append_str(&b, line);
    } else if (s->minor >= 1) {
        proxy_append_str(&b, "Transfer-Encoding: chunked\r\n");
        s->pc.share_chunked = true;
    } else {
        s->close_after = true;
    }
    proxy_append_connection(s, &b);
    cdn_conn_write(s->down, cdn_buf_data(&b), b.len);
    cdn_buf_dispose(&b);
    s->status = e.status;
    s->resp_head_sent = true;
    s->state = ST_SHARE_BODY;
    s->pc.off = 0;
    cdn_share_watch(s->pc.share, on_share_wake, s);
    proxy_cache_share_continue(s);
}

void proxy_cache_on_collapse_wake(struct cdn_worker *w)
{
    for (struct cdn_session *s = w->sessions, *next; s != NULL; s = next) {
        next = s->next; /* s may end here, never another session */
        if (s->state == ST_COLLAPSED && s->pc.wait != NULL &&
            cdn_collapse_result(s->pc.wait) != CDN_COLLAPSE_WAITING)
            collapse_woken(s);
        else if (s->state == ST_SHARE_BODY)
            proxy_cache_share_continue(s);
    }
}

void proxy_cache_collapse_timeout(struct cdn_session *s)
{
    if (s->pc.wait != NULL) { /* the leader takes too long: fetch it ourselves */
        cdn_collapse_leave(&s->pc.wait);
        collapse_forward(s);
        return;
    }
    collapse_lookup(s);
}

static void invalidate(struct cdn_session *s, const struct cdn_http_response *res)
{
    const struct cdn_remap_rule *r = s->rule;
    const struct cdn_http_request *req = request_again(s);
    char host[320];
    if (r->to.port == (r->to.tls ? 443 : 80))
        snprintf(host, sizeof(host), "%s", r->to.host);
    else
        snprintf(host, sizeof(host), strchr(r->to.host, ':') != NULL ? "[%s]:%u" : "%s:%u", r->to.host,
                 r->to.port);
    struct cache_str paths[CACHE_INVALIDATE_MAX];
    size_t n =
        cache_policy_invalidations(req->method, req->method_len, host, strlen(host), s->pc.target,
                                   strlen(s->pc.target), res->status, res->headers, res->num_headers, paths);
    const struct cdn_server *srv = s->w->srv;
    for (size_t i = 0; i < n; i++) {
        struct cdn_buf key;
        cdn_buf_init(&key);
        cache_key_build(&key, r->to.tls, r->to.host, r->to.port, paths[i].p, paths[i].n,
                        &s->gen->cache_key_rules);
        cache_store_remove(srv->store, cdn_buf_data(&key), key.len);
        cdn_buf_dispose(&key);
    }
}

/* stale-while-revalidate: a background session revalidates the stored response of s's key, unless
 * a fetch of that key is already under way (the collapse table knows). */
static void refresh_in_background(struct cdn_session *s, const struct stored *st)
{
    struct cdn_collapse_wait *wait;
    if (!cdn_collapse_join(s->w->srv->collapse, cdn_buf_data(&s->pc.key), s->pc.key.len, wake_worker, s->w,
                           &wait)) {
        cdn_collapse_leave(&wait);
        return;
    }
    struct cdn_session *b = proxy_session_background(s);
    b->method = cdn_xstrdup(s->method);
    b->host = s->host != NULL ? cdn_xstrdup(s->host) : NULL;
    b->path = cdn_xstrdup(s->path);
    b->minor = 1;
    b->keep_alive = false;
    b->req_done = true;
    b->rule = s->rule;
    b->pc.active = true;
    b->pc.leader = true;
    b->pc.fwd = "stale";
    cdn_buf_append(&b->pc.key, cdn_buf_data(&s->pc.key), s->pc.key.len);
    cdn_buf_append(&b->pc.req, cdn_buf_data(&s->pc.req), s->pc.req.len);
    b->pc.target = cdn_xstrdup(s->pc.target);
    struct cdn_http_header v[2];
    size_t nv = cache_policy_validators(&st->ri, v);
    for (size_t i = 0; i < nv; i++)
        proxy_append_header(&b->pc.validators, &v[i]);
    b->pc.revalidating = nv > 0;
    proxy_forward(b, request_again(b), b->pc.target);
}

bool proxy_cache_request(struct cdn_session *s, const struct cdn_http_request *req, const char *head,
                         size_t head_len, const char *target)
{
    const struct cdn_server *srv = s->w->srv;
    if (srv->store == NULL)
        return false;
    bool get = is_method(s->method, "GET"), is_head = is_method(s->method, "HEAD");
    /* every method's head is kept: an unsafe one may invalidate what its response names */
    cdn_buf_append(&s->pc.req, head, head_len);
    s->pc.req_id = ++req_ids;
    s->pc.target = cdn_xstrdup(target);
    if (!get && !is_head) {
        s->pc.fwd = "method";
        return false;
    }
    s->pc.active = true;
    cache_key_build(&s->pc.key, s->rule->to.tls, s->rule->to.host, s->rule->to.port, target, strlen(target),
                    &s->gen->cache_key_rules);
    struct cache_request_info creq;
    cache_policy_parse_request(req->headers, req->num_headers, &creq);
    s->pc.no_store = (creq.cc.flags & CACHE_CC_NO_STORE) != 0;

    static _Thread_local struct stored st;
    struct cache_hit *hit = lookup(s, &st);
    if (hit == NULL) {
        s->pc.fwd = "uri-miss";
    } else if (st.e.vary_len > 0 &&
               !cache_policy_vary_match(st.e.vary, st.e.vary_len, req->headers, req->num_headers,
                                        st.e.secondary_key, st.e.secondary_key_len)) {
        s->pc.fwd = "vary-miss"; /* one variant per URL: the response replaces it */
        cache_hit_release(&hit);
    } else {
        struct cache_decision d;
        enum cache_use use = cache_policy_decide(&s->gen->cache_policy, &st.ri, st.e.request_time,
                                                 st.e.response_time, &creq, (int64_t)time(NULL), &d);
        if (cdn_log_enabled(CDN_LOG_DEBUG))
            cdn_log(CDN_LOG_DEBUG, "cache: %.*s: %s (age %lld, lifetime %lld)", (int)s->pc.key.len,
                    cdn_buf_data(&s->pc.key), d.why, (long long)d.age, (long long)d.lifetime);
        if (use == CACHE_USE_FRESH || use == CACHE_USE_STALE) {
            serve_stored(s, hit, &st, &d, NULL, 0);
            return true;
        }
        if (use == CACHE_USE_STALE_REVALIDATE && get) { /* RFC 5861 3: stale now, fresh soon */
            refresh_in_background(s, &st);
            serve_stored(s, hit, &st, &d, NULL, 0);
            return true;
        }
        struct cdn_http_header v[2];
        size_t nv = cache_policy_validators(&st.ri, v);
        for (size_t i = 0; i < nv; i++)
            proxy_append_header(&s->pc.validators, &v[i]);
        s->pc.revalidating = nv > 0;
        /* RFC 9211 2.2: "request" when a fresh enough response was there but the request's own
         * directives forbade it, "stale" when the stored response itself needs validation */
        bool by_request = d.ttl > 0 || strcmp(d.why, "request-no-cache") == 0 ||
                          strcmp(d.why, "request-max-age") == 0 || strcmp(d.why, "min-fresh") == 0;
        s->pc.fwd = by_request && strcmp(d.why, "no-cache") != 0 ? "request" : "stale";
        cache_hit_release(&hit);
    }
    if (creq.cc.flags & CACHE_CC_ONLY_IF_CACHED) { /* RFC 9111 5.2.1.7 */
        s->pc.active = false;
        s->pc.fwd = NULL; /* nothing was forwarded */
        proxy_send_error(s, 504, true);
        return true;
    }
    if (collapsible(req, &creq)) {
        struct cdn_collapse_wait *wait;
        if (cdn_collapse_join(srv->collapse, cdn_buf_data(&s->pc.key), s->pc.key.len, wake_worker, s->w,
                              &wait)) {
            s->pc.leader = true;
            return false;
        }
        s->pc.wait = wait;
        s->state = ST_COLLAPSED;
        if (cdn_collapse_result(wait) == CDN_COLLAPSE_SHARED) { /* the body is already on its way */
            collapse_woken(s);
            return true;
        }
        cdn_conn_set_timeout(s->down, proxy_conf(s)->timeouts.upstream_response_ms);
        return true;
    }
    return false;
}

static bool storable_size(const struct cdn_session *s, const struct cdn_http_response *res)
{
    return res->body_kind != CDN_HTTP_BODY_LENGTH ||
           (res->content_length <= s->gen->conf->cache.max_object_size &&
            res->content_length <= s->w->srv->max_object_size);
}

static void on_fill_drain(struct cache_fill *fill, void *data)
{
    struct cdn_worker *w = data; /* writer thread: only signal the worker's loop */
    uv_async_send(&w->fill_async);
}

void proxy_cache_on_fill_drain(struct cdn_worker *w)
{
    for (struct cdn_session *s = w->sessions; s != NULL; s = s->next) {
        if (s->pc.fill_paused && s->pc.fill != NULL && !cache_fill_busy(s->pc.fill)) {
            s->pc.fill_paused = false;
            if (s->up != NULL && !cdn_conn_congested(s->down))
                cdn_conn_read_start(s->up);
        }
    }
}

/* Begins a fill for res: records the entry (body size to come) now, while res's headers exist. */
static bool start_fill(struct cdn_session *s, const struct cdn_http_request *req,
                       const struct cdn_http_response *res, const struct cache_response_info *ri)
{
    struct cdn_buf vary, skey;
    cdn_buf_init(&vary);
    cdn_buf_init(&skey);
    bool ok = cache_policy_vary_names(res->headers, res->num_headers, &vary);
    if (ok && vary.len > 0)
        cache_policy_vary_key(cdn_buf_data(&vary), vary.len, req->headers, req->num_headers, &skey);
    static _Thread_local struct cdn_http_header kept[CDN_HTTP_MAX_HEADERS];
    size_t nk = cache_policy_filter_headers(res->headers, res->num_headers, &ri->cc, kept);
    struct cache_entry e = {.status = res->status,
                            .request_time = s->pc.req_time,
                            .response_time = (int64_t)time(NULL),
                            .body_size = 0,
                            .flags = CACHE_ENTRY_F_COMPLETE,
                            .key = cdn_buf_data(&s->pc.key),
                            .key_len = s->pc.key.len,
                            .vary = vary.len > 0 ? cdn_buf_data(&vary) : "",
                            .vary_len = vary.len,
                            .secondary_key = skey.len > 0 ? cdn_buf_data(&skey) : "",
                            .secondary_key_len = skey.len,
                            .headers = kept,
                            .num_headers = nk};
    cdn_buf_init(&s->pc.meta);
    if (ok)
        ok = cache_entry_encode(&e, &s->pc.meta) == 0;
    if (ok)
        ok = cache_store_fill_begin(store_of(s), cdn_buf_data(&s->pc.key), s->pc.key.len, &s->pc.fill) == 0;
    if (ok)
        cache_fill_on_drain(s->pc.fill, on_fill_drain, s->w);
    else
        cdn_buf_dispose(&s->pc.meta);
    if (ok && s->pc.leader) { /* waiters read it while it arrives */
        s->pc.share = cdn_share_new(cdn_buf_data(&s->pc.meta), s->pc.meta.len,
                                    res->body_kind == CDN_HTTP_BODY_LENGTH, res->content_length);
        cdn_collapse_share(s->w->srv->collapse, cdn_buf_data(&s->pc.key), s->pc.key.len, s->pc.share);
    }
    cdn_buf_dispose(&vary);
    cdn_buf_dispose(&skey);
    s->pc.filled = 0;
    return ok;
}

bool proxy_cache_response(struct cdn_session *s, const struct cdn_http_response *res, struct cdn_buf *cs_line)
{
    const struct cdn_server *srv = s->w->srv;
    if (srv->store == NULL)
        return false;
    const struct cdn_http_request *req = request_again(s);
    if (!s->pc.active) {
        if (res->status >= 200 && res->status < 400 && !is_method(s->method, "GET") &&
            !is_method(s->method, "HEAD"))
            invalidate(s, res); /* RFC 9111 4.4 */
        struct cache_status cs = {.cache = s->gen->cache_name, .fwd = s->pc.fwd, .fwd_status = res->status};
        cache_status_member(s, &cs, res->headers, res->num_headers, cs_line);
        proxy_count(s, CDN_STAT_cache_uncacheable);
        return false;
    }
    int64_t now = (int64_t)time(NULL);
    struct cache_request_info creq;
    cache_policy_parse_request(req->headers, req->num_headers, &creq);

    if (s->pc.revalidating && (res->status == 304 || res->status >= 500)) {
        static _Thread_local struct stored st;
        struct cache_hit *hit = lookup(s, &st);
        if (hit != NULL && res->status == 304) {
            /* RFC 9111 4.3.4: freshen the stored headers, restart the age clock, keep the body */
            static _Thread_local struct cdn_http_header merged[CDN_HTTP_MAX_HEADERS];
            int n = cache_policy_merge_304(st.h, st.n, res->headers, res->num_headers, merged,
                                           CDN_HTTP_MAX_HEADERS);
            if (n >= 0) {
                struct cache_entry e = st.e;
                e.headers = merged;
                e.num_headers = (size_t)n;
                e.request_time = s->pc.req_time;
                e.response_time = now;
                struct cdn_buf meta;
                cdn_buf_init(&meta);
                if (cache_entry_encode(&e, &meta) == 0)
                    cache_store_update_meta(store_of(s), cdn_buf_data(&s->pc.key), s->pc.key.len,
                                            cdn_buf_data(&meta), meta.len);
                /* serve what we just stored: re-decode from our own copy */
                cdn_buf_dispose(&meta);
                struct stored *fresh = &st;
                memcpy(fresh->h, merged, (size_t)n * sizeof(merged[0]));
                fresh->n = (size_t)n;
                fresh->e.request_time = e.request_time;
                fresh->e.response_time = e.response_time;
                cache_policy_parse_response(&s->gen->cache_policy, fresh->e.status, fresh->h, fresh->n,
                                            &fresh->ri);
                struct cache_decision d;
                cache_policy_decide(&s->gen->cache_policy, &fresh->ri, e.request_time, e.response_time, &creq,
                                    now, &d);
                proxy_release_upstream(s);
                lead_done(s, CDN_COLLAPSE_STORED);
                serve_stored(s, hit, fresh, &d, s->pc.fwd != NULL ? s->pc.fwd : "stale", 304);
                return true;
            }
        }
        if (hit == NULL && res->status == 304) { /* evicted or purged while we asked */
            cdn_log(CDN_LOG_WARN, "cache: %.*s vanished during its revalidation", (int)s->pc.key.len,
                    cdn_buf_data(&s->pc.key));
            proxy_release_upstream(s);
            proxy_send_error(s, 502, true);
            return true;
        }
        if (hit != NULL && res->status >= 500) {
            struct cache_decision d;
            cache_policy_decide(&s->gen->cache_policy, &st.ri, st.e.request_time, st.e.response_time, &creq,
                                now, &d);
            if (cache_policy_stale_if_error_ok(&st.ri, &creq, &d, res->status)) {
                proxy_release_upstream(s);
                serve_stored(s, hit, &st, &d, "stale", res->status);
                return true;
            }
        }
        cache_hit_release(&hit);
    }

    struct cache_response_info ri;
    cache_policy_parse_response(&s->gen->cache_policy, res->status, res->headers, res->num_headers, &ri);
    const char *why = NULL;
    /* Like nginx and Varnish, and unlike the bare RFC: a Set-Cookie is meant for one client, so a
     * shared cache that replayed it could hand one user's session to everyone. */
    bool cookie = cdn_http1_find_header(res->headers, res->num_headers, "set-cookie") != NULL;
    if (cookie)
        why = "set-cookie";
    /* Also ours: a response that is stale on arrival and has no validator could only ever be fetched
     * again in full (the RFC allows storing it; it would only cost a write per request). Unless it may
     * be served stale (stale-if-error, stale-while-revalidate). */
    bool useless = cache_policy_freshness_lifetime(&s->gen->cache_policy, &ri, now) <= 0 &&
                   ri.etag.p == NULL && ri.last_modified < 0 && ri.cc.stale_if_error <= 0 &&
                   ri.cc.stale_while_revalidate <= 0;
    bool allowed = cache_policy_is_storable(s->method, strlen(s->method), &creq, &ri, &why);
    if (allowed && useless && why == NULL)
        why = "no-freshness";
    bool storable = is_method(s->method, "GET") && !s->pc.no_store && res->status != 304 &&
                    res->status != 206 && !cookie && allowed && !useless && !ri.vary_unmatchable &&
                    storable_size(s, res);
    /* A full store takes a new object only if it is asked for more than what it would evict (cache/evict
     * admission); one it already holds (being revalidated) is replaced in any case. */
    bool admitted = storable && (s->pc.revalidating ||
                                 cache_store_admit(store_of(s), cdn_buf_data(&s->pc.key), s->pc.key.len));
    bool store = admitted && start_fill(s, req, res, &ri);
    if (storable && !admitted)
        why = "not-admitted";
    proxy_count(s, store || (storable && !admitted) ? CDN_STAT_cache_miss : CDN_STAT_cache_uncacheable);
    if (!store)
        lead_done(s, CDN_COLLAPSE_GO); /* the waiters fetch it themselves */
    struct cache_status cs = {.cache = s->gen->cache_name,
                              .fwd = s->pc.fwd,
                              .fwd_status = res->status,
                              .stored = store,
                              .collapsed = s->pc.collapsed};
    if (store) {
        int64_t life = cache_policy_freshness_lifetime(&s->gen->cache_policy, &ri, now);
        int64_t age = cache_policy_current_age(&ri, s->pc.req_time, now, now);
        cs.has_ttl = true;
        cs.ttl = life - age;
    } else if (why != NULL) {
        cs.detail = why;
    }
    cache_status_member(s, &cs, res->headers, res->num_headers, cs_line);
    if (!store && res->status >= 200 && res->status < 300 && s->pc.revalidating)
        cache_store_remove(store_of(s), cdn_buf_data(&s->pc.key), s->pc.key.len); /* no longer storable */
    return false;
}

bool proxy_cache_upstream_error(struct cdn_session *s)
{
    if (!s->pc.active || s->w->srv->store == NULL)
        return false;
    static _Thread_local struct stored st;
    struct cache_hit *hit = lookup(s, &st);
    if (hit == NULL)
        return false;
    const struct cdn_http_request *req = request_again(s);
    struct cache_request_info creq;
    cache_policy_parse_request(req->headers, req->num_headers, &creq);
    struct cache_decision d;
    int64_t now = (int64_t)time(NULL);
    cache_policy_decide(&s->gen->cache_policy, &st.ri, st.e.request_time, st.e.response_time, &creq, now, &d);
    bool vary_ok = st.e.vary_len == 0 ||
                   cache_policy_vary_match(st.e.vary, st.e.vary_len, req->headers, req->num_headers,
                                           st.e.secondary_key, st.e.secondary_key_len);
    if (!vary_ok || !cache_policy_stale_if_error_ok(&st.ri, &creq, &d, 502)) {
        cache_hit_release(&hit);
        return false;
    }
    if (s->up != NULL) {
        cdn_conn_close(s->up);
        s->up = NULL;
    }
    serve_stored(s, hit, &st, &d, "stale", 0);
    return true;
}

static void share_close(struct cdn_session *s, bool ok)
{
    if (s->pc.share == NULL || s->pc.share_reader)
        return;
    cdn_share_end(s->pc.share, ok);
    cdn_share_unref(&s->pc.share);
}

void proxy_cache_body(struct cdn_session *s, const char *p, size_t n)
{
    if (s->pc.share != NULL && !s->pc.share_reader) {
        /* A body that turned out too large to store may still be relayed to the waiters, up to a
         * bound on the memory it holds; past it they are cut off (their clients see truncation). */
        s->pc.shared += n;
        if (s->pc.shared > SHARE_MAX_FACTOR * s->gen->conf->cache.max_object_size)
            share_close(s, false);
        else
            cdn_share_append(s->pc.share, p, n);
    }
    if (s->pc.fill == NULL)
        return;
    int rc = cache_fill_append(s->pc.fill, p, n);
    if (rc < 0) {
        cdn_log(CDN_LOG_DEBUG, "cache: not storing %.*s: %s", (int)s->pc.key.len, cdn_buf_data(&s->pc.key),
                cache_store_strerror(rc));
        cache_fill_abort(&s->pc.fill);
        cdn_buf_dispose(&s->pc.meta);
        lead_done(s, CDN_COLLAPSE_GO); /* readers already relaying the share go on */
        return;
    }
    s->pc.filled += n;
    if (rc == CACHE_FILL_BUSY)
        s->pc.fill_paused = true;
}

bool proxy_cache_fill_busy(struct cdn_session *s)
{
    if (s->pc.fill == NULL || !s->pc.fill_paused)
        return false;
    if (!cache_fill_busy(s->pc.fill)) {
        s->pc.fill_paused = false;
        return false;
    }
    return true;
}

void proxy_cache_response_done(struct cdn_session *s, bool complete)
{
    share_close(s, complete);
    if (s->pc.fill == NULL)
        return;
    if (!complete) {
        cache_fill_abort(&s->pc.fill);
        cdn_buf_dispose(&s->pc.meta);
        lead_done(s, CDN_COLLAPSE_GO);
        return;
    }
    struct cache_entry e;
    static _Thread_local struct cdn_http_header h[CDN_HTTP_MAX_HEADERS];
    struct cdn_buf meta;
    cdn_buf_init(&meta);
    int rc = cache_entry_decode(cdn_buf_data(&s->pc.meta), s->pc.meta.len, &e);
    if (rc == 0)
        rc = cache_entry_headers(&e, h, CDN_HTTP_MAX_HEADERS);
    if (rc >= 0) {
        e.headers = h;
        e.num_headers = (size_t)rc;
        e.body_size = s->pc.filled;
        rc = cache_entry_encode(&e, &meta);
    }
    struct lead_note *note = NULL;
    if (rc >= 0 && s->pc.leader) { /* the waiters learn of it once lookups can see it */
        note = cdn_xmalloc(sizeof(*note) + s->pc.key.len);
        note->table = s->w->srv->collapse;
        note->klen = s->pc.key.len;
        memcpy(note->key, cdn_buf_data(&s->pc.key), s->pc.key.len);
        cache_fill_on_commit(s->pc.fill, on_leader_commit, note);
    }
    if (rc >= 0)
        rc = cache_fill_commit(&s->pc.fill, cdn_buf_data(&meta), meta.len);
    else
        cache_fill_abort(&s->pc.fill);
    if (rc < 0)
        cdn_log(CDN_LOG_WARN, "cache: cannot store %.*s: %s", (int)s->pc.key.len, cdn_buf_data(&s->pc.key),
                cache_store_strerror(rc));
    cdn_buf_dispose(&meta);
    cdn_buf_dispose(&s->pc.meta);
    if (rc >= 0 && note != NULL)
        s->pc.leader = false; /* on_leader_commit finishes it */
    else
        free(note);
    lead_done(s, CDN_COLLAPSE_GO);
}

void proxy_cache_reset(struct cdn_session *s)
{
    if (s->pc.share_reader)
        share_end_reader(s);
    share_close(s, false);
    lead_done(s, CDN_COLLAPSE_GO); /* an exchange that ends early still releases its waiters */
    cdn_collapse_leave(&s->pc.wait);
    cache_hit_release(&s->pc.hit);
    cache_fill_abort(&s->pc.fill);
    cdn_buf_dispose(&s->pc.key);
    cdn_buf_dispose(&s->pc.req);
    cdn_buf_dispose(&s->pc.validators);
    cdn_buf_dispose(&s->pc.meta);
    free(s->pc.target);
    memset(&s->pc, 0, sizeof(s->pc));
}
