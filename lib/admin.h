/*
 * admin: the admin listener's HTTP/1.1 handler, on top of lib/conn (plain, or TLS with the SSL_CTX the
 * caller built, typically requiring client certificates). It runs on the worker loops like the data
 * listeners: the server binds the admin address once per worker and calls cdn_admin_accept from its
 * connection callback. Requests (a body is refused):
 *
 *   GET|HEAD /stats                    200 JSON (cdn_stats_render_json)
 *   GET|HEAD /metrics                  200 Prometheus text, Content-Type: text/plain; version=0.0.4
 *   GET|HEAD /healthz                  200 "ok"
 *   GET|HEAD /readyz                   200 "ready", or 503 "not ready" (ops->ready false: starting, draining)
 *   PURGE <absolute-url>               ops->purge: 200 {"url":..,"purged":n} when n > 0, 404 when n == 0,
 *   PURGE /<absolute-url>                500 when n < 0, 501 without ops->purge, 400 when not an http(s) URL
 *   DELETE /purge?url=<pct-encoded>    (same; the url parameter is percent-decoded, '+' is kept as is)
 *   POST /reload                       ops->reload: 202 when requested, 500 when refused, 404 without it
 *   a known path, another method       405 with Allow
 *   anything else                      404
 *   malformed, head over 8 KiB, body   400 / 431 / 413, then the connection is closed
 *
 * The query string is ignored for /stats, /metrics, /healthz and /readyz. Keep-alive and pipelining
 * are supported; responses leave in request order. Limits per connection: the head must arrive
 * within timeout_ms (10 s) of the accept or of the previous response, and an idle connection is
 * closed after the same time; a client that stops reading is paused at lib/conn's high-water mark and
 * closed when the timer fires. No request is ever answered from another thread.
 */
#ifndef CDN_ADMIN_H
#define CDN_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "lib/stats.h"

#define CDN_ADMIN_MAX_HEAD   (8u * 1024u)
#define CDN_ADMIN_TIMEOUT_MS 10000u

/* What the admin handler asks the server. Copied at accept: the struct itself may be temporary, but
 * ctx, role and whatever the callbacks use must outlive every admin connection (close them first with
 * cdn_admin_close_all). Every callback runs on the loop thread that accepted the connection, inside
 * a libuv callback, synchronously; none may re-enter the admin module. */
struct cdn_admin_ops {
    void *ctx;
    const char *role;    /* role label value: "edge" or "regional" */
    uint64_t timeout_ms; /* 0 = CDN_ADMIN_TIMEOUT_MS */
    /* Fills sum (already empty: cdn_stats_init) and extra (already initialised; the admin disposes of
     * it): typically cdn_stats_accumulate of every worker's block and the main block, cdn_stats_set of
     * the store's gauges, and cdn_stats_extra_copy of the certificate series. Required. */
    void (*collect)(void *ctx, struct cdn_stats *sum, struct cdn_stats_extra *extra);
    /* True when the node takes traffic (listeners and cache up, not draining). NULL = always ready. */
    bool (*ready)(void *ctx);
    /* Removes what is cached for url[0..len) (an absolute http or https URL, NUL-terminated too).
     * Returns the number of objects removed (0: nothing was there) or a negative error code. NULL =
     * this node has no cache (501). */
    int (*purge)(void *ctx, const char *url, size_t len);
    /* Asks for a configuration reload (it may complete later, on the main thread); 0 = accepted,
     * negative = refused. NULL = no /reload endpoint. */
    int (*reload)(void *ctx);
};

/* Accepts a pending connection on listener (call it from the listener's connection callback, on the
 * loop's thread) and serves it. ctx NULL = plain HTTP; otherwise TLS with that context (its verify
 * mode decides whether client certificates are required). Returns 0, or the negative libuv error of
 * the accept (nothing to clean up). */
int cdn_admin_accept(uv_stream_t *listener, SSL_CTX *ctx, const struct cdn_admin_ops *ops);

/* Closes every admin connection of the calling thread's loop at once and frees their state (worker
 * shutdown; call it before cdn_conn_close_all, which would close the connections but not free the
 * admin's state). The loop must then run for the close callbacks. */
void cdn_admin_close_all(void);

/* Admin connections open on the calling thread's loop. */
size_t cdn_admin_count(void);

#endif
