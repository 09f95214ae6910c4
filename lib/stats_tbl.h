/*
 * stats_tbl: every counter, gauge and histogram of the node, defined once (STYLE 3.8). This table
 * generates the counter enum and block layout (lib/stats.h), the JSON and Prometheus output and the
 * table in docs/STATS.md (lib/stats.c); test_stats.c checks that the docs match it.
 *
 *   X(name, kind, family, labels, "help")
 *
 * name:   C identifier and JSON key; CDN_STAT_<name> is its id. Unique.
 * kind:   COUNTER   monotonic, Prometheus "cdn_<family>_total"
 *         GAUGE     a level ("set", or inc/dec by its owner); "cdn_<family>"
 *         HISTOGRAM fixed buckets (CDN_STATS_BUCKETS below), observed in microseconds, rendered in
 *                   seconds: "cdn_<family>_bucket{le=...}", "_sum", "_count"
 *         RATIO     derived at render time from other rows (lib/stats.c says how); a gauge
 *         SERIES    a gauge family whose series are registered at run time (struct cdn_stats_extra),
 *                   one per label set; labels lists the label names, comma-separated
 *         CSERIES   the same for counters kept outside the worker blocks (per-parent figures of
 *                   lib/ugroup.c): rendered "cdn_<family>_total" with TYPE counter
 * family: the Prometheus name without the "cdn_" prefix and the "_total" suffix. Rows of one family
 *         are adjacent, share kind and help, and differ by their labels; HELP and TYPE come once.
 * labels: the row's constant labels in exposition syntax (key="value",...), or "" for none. Every
 *         series also carries role="edge|regional", added by the renderer.
 * help:   one line, no '|' (it ends up in a Markdown table) and no newline.
 *
 * Keep related rows together: the docs table follows this order.
 */
#ifndef CDN_STATS_TBL_H
#define CDN_STATS_TBL_H

/* Histogram bucket upper bounds (inclusive): B(microseconds, "le label in seconds"). */
#define CDN_STATS_BUCKETS(B) \
    B(1000, "0.001")         \
    B(2500, "0.0025")        \
    B(5000, "0.005")         \
    B(10000, "0.01")         \
    B(25000, "0.025")        \
    B(50000, "0.05")         \
    B(100000, "0.1")         \
    B(250000, "0.25")        \
    B(500000, "0.5")         \
    B(1000000, "1")          \
    B(2500000, "2.5")        \
    B(5000000, "5")          \
    B(10000000, "10")

#define CDN_STATS_H_RESPONSES "Responses sent to clients on data listeners, by status class"
#define CDN_STATS_H_TLS_FAIL                                                                          \
    "TLS handshakes that failed on data listeners, by reason (no_certificate: a required client "     \
    "certificate was not sent; unknown_ca: its chain does not lead to a trusted CA; bad_eku: not "    \
    "valid for clientAuth; pin_mismatch: refused by allowed_sans/allowed_fingerprints; weak_crypto: " \
    "a key or signature below the OpenSSL security level (RSA under 2048 bits, SHA-1); ca_as_leaf: "  \
    "a CA certificate sent as the client's own; crl: no usable CRL (expired, not yet valid, missing " \
    "for an issuer, bad signature); protocol: no common version or cipher, "                          \
    "or a malformed message)"
#define CDN_STATS_H_CLIENT_CERTS                                                                      \
    "Client certificates on data listeners: verified (handshake completed), refused, or log_only (a " \
    "missing or refused certificate let through by a log_only SNI rule)"
#define CDN_STATS_H_CACHE                                                                         \
    "Requests by cache result; every request the cache handles counts in exactly one: hit_fresh " \
    "(served fresh from the store), hit_stale (served stale: stale-while-revalidate or "          \
    "stale-if-error), revalidated (stored response confirmed by a 304 from upstream), collapsed " \
    "(waited for another request's fill instead of going upstream), miss (not stored: fetched "   \
    "upstream), uncacheable (the request or the response may not be stored: forwarded)"
#define CDN_STATS_H_SERVED "Response body bytes sent to clients, by where they came from"
#define CDN_STATS_H_UP_ERR "Upstream exchanges that failed, by kind (connect includes name resolution)"
#define CDN_STATS_H_UP_TLS \
    "TLS handshakes on new upstream connections: full, or resumed from a session of an earlier one"
#define CDN_STATS_H_RELOADS "Configuration reloads (SIGHUP, cdn-node reload, watched files), by result"

/* CONNECT tunnels */
#define CDN_STATS_H_TUN_BYTES \
    "Bytes relayed through CONNECT tunnels, by direction (up: from the client, down: to the client)"
#define CDN_STATS_H_TUN_REFUSED                                                                     \
    "CONNECT requests refused, by reason (disabled: the listener has no tunnels, 405; bad_target: " \
    "not host:port, 400; no_route: no tunnel route matches, 403; port: not in connect_ports, 403; " \
    "no_certificate: the connection carries no verified client certificate, 403)"
#define CDN_STATS_H_TUN_FAILED                                                                        \
    "CONNECT requests that could not be carried, by reason (resolve: the name did not resolve, 502; " \
    "connect: the peer or service was unreachable or its TLS failed, 502; timeout: connecting or "    \
    "the peer's answer took too long, 504; peer: the peer refused or answered garbage)"

#define CDN_STATS_TABLE(X)                                                                                   \
    /* requests and responses */                                                                             \
    X(requests, COUNTER, requests, "", "Request heads received on data listeners")                           \
    X(responses_1xx, COUNTER, responses, "class=\"1xx\"", CDN_STATS_H_RESPONSES)                             \
    X(responses_2xx, COUNTER, responses, "class=\"2xx\"", CDN_STATS_H_RESPONSES)                             \
    X(responses_3xx, COUNTER, responses, "class=\"3xx\"", CDN_STATS_H_RESPONSES)                             \
    X(responses_4xx, COUNTER, responses, "class=\"4xx\"", CDN_STATS_H_RESPONSES)                             \
    X(responses_5xx, COUNTER, responses, "class=\"5xx\"", CDN_STATS_H_RESPONSES)                             \
    X(request_duration_seconds, HISTOGRAM, request_duration_seconds, "",                                     \
      "Time from the first byte of a request head to the last byte of its response queued for the client")   \
    /* client connections */                                                                                 \
    X(connections, COUNTER, connections, "", "Connections accepted on data listeners")                       \
    X(connections_active, GAUGE, connections_active, "", "Connections open on data listeners now")           \
    /* TLS on data listeners */                                                                              \
    X(tls_handshakes, COUNTER, tls_handshakes, "", "TLS handshakes completed on data listeners")             \
    X(tls_takeovers, COUNTER, tls_takeovers, "",                                                             \
      "Client TLS 1.3 connections moved to cdn-node's own record layer after the handshake, OpenSSL's "      \
      "state freed (counted at their first request)")                                                        \
    X(tls_failed_no_certificate, COUNTER, tls_handshake_failures, "reason=\"no_certificate\"",               \
      CDN_STATS_H_TLS_FAIL)                                                                                  \
    X(tls_failed_unknown_ca, COUNTER, tls_handshake_failures, "reason=\"unknown_ca\"", CDN_STATS_H_TLS_FAIL) \
    X(tls_failed_expired, COUNTER, tls_handshake_failures, "reason=\"expired\"", CDN_STATS_H_TLS_FAIL)       \
    X(tls_failed_not_yet_valid, COUNTER, tls_handshake_failures, "reason=\"not_yet_valid\"",                 \
      CDN_STATS_H_TLS_FAIL)                                                                                  \
    X(tls_failed_revoked, COUNTER, tls_handshake_failures, "reason=\"revoked\"", CDN_STATS_H_TLS_FAIL)       \
    X(tls_failed_bad_eku, COUNTER, tls_handshake_failures, "reason=\"bad_eku\"", CDN_STATS_H_TLS_FAIL)       \
    X(tls_failed_pin_mismatch, COUNTER, tls_handshake_failures, "reason=\"pin_mismatch\"",                   \
      CDN_STATS_H_TLS_FAIL)                                                                                  \
    X(tls_failed_weak_crypto, COUNTER, tls_handshake_failures, "reason=\"weak_crypto\"",                     \
      CDN_STATS_H_TLS_FAIL)                                                                                  \
    X(tls_failed_ca_as_leaf, COUNTER, tls_handshake_failures, "reason=\"ca_as_leaf\"", CDN_STATS_H_TLS_FAIL) \
    X(tls_failed_crl, COUNTER, tls_handshake_failures, "reason=\"crl\"", CDN_STATS_H_TLS_FAIL)               \
    X(tls_failed_protocol, COUNTER, tls_handshake_failures, "reason=\"protocol\"", CDN_STATS_H_TLS_FAIL)     \
    X(tls_failed_timeout, COUNTER, tls_handshake_failures, "reason=\"timeout\"", CDN_STATS_H_TLS_FAIL)       \
    X(tls_failed_other, COUNTER, tls_handshake_failures, "reason=\"other\"", CDN_STATS_H_TLS_FAIL)           \
    X(client_certs_verified, COUNTER, client_certificates, "result=\"verified\"", CDN_STATS_H_CLIENT_CERTS)  \
    X(client_certs_refused, COUNTER, client_certificates, "result=\"refused\"", CDN_STATS_H_CLIENT_CERTS)    \
    X(client_certs_log_only, COUNTER, client_certificates, "result=\"log_only\"", CDN_STATS_H_CLIENT_CERTS)  \
    /* the HTTP cache, per request */                                                                        \
    X(cache_hit_fresh, COUNTER, cache_requests, "result=\"hit_fresh\"", CDN_STATS_H_CACHE)                   \
    X(cache_hit_stale, COUNTER, cache_requests, "result=\"hit_stale\"", CDN_STATS_H_CACHE)                   \
    X(cache_revalidated, COUNTER, cache_requests, "result=\"revalidated\"", CDN_STATS_H_CACHE)               \
    X(cache_collapsed, COUNTER, cache_requests, "result=\"collapsed\"", CDN_STATS_H_CACHE)                   \
    X(cache_miss, COUNTER, cache_requests, "result=\"miss\"", CDN_STATS_H_CACHE)                             \
    X(cache_uncacheable, COUNTER, cache_requests, "result=\"uncacheable\"", CDN_STATS_H_CACHE)               \
    X(cache_hit_ratio, RATIO, cache_hit_ratio, "",                                                           \
      "Share of cache requests answered from the store: (hit_fresh + hit_stale + "                           \
      "revalidated + collapsed) / all six cache results; 0 before the first")                                \
    X(bytes_from_cache, COUNTER, served_bytes, "source=\"cache\"", CDN_STATS_H_SERVED)                       \
    X(bytes_from_upstream, COUNTER, served_bytes, "source=\"upstream\"", CDN_STATS_H_SERVED)                 \
    X(cache_byte_hit_ratio, RATIO, cache_byte_hit_ratio, "",                                                 \
      "Share of response body bytes sent from the store: cache / (cache + upstream); 0 before the first")    \
    /* the cache store, reported by the store itself when the stats are rendered */                          \
    X(cache_objects, GAUGE, cache_objects, "", "Objects in the cache store")                                 \
    X(cache_bytes, GAUGE, cache_bytes, "",                                                                   \
      "Bytes of the pages the cache store's databases hold (kept under about 97 % of capacity)")             \
    X(cache_capacity_bytes, GAUGE, cache_capacity_bytes, "", "Configured size of the cache store")           \
    X(cache_evictions, COUNTER, cache_evictions, "", "Objects evicted from the cache store to make room")    \
    X(cache_not_admitted, COUNTER, cache_not_admitted, "",                                                   \
      "Misses not stored: the store was full and the object was asked for less lately than the last victim") \
    X(cache_store_errors, COUNTER, cache_store_errors, "",                                                   \
      "Cache store operations that failed (writes that failed for good, damaged records met when reading)")  \
    /* upstream (origin or parent) */                                                                        \
    X(upstream_requests, COUNTER, upstream_requests, "", "Requests sent upstream (origin or parent tier)")   \
    X(upstream_errors_connect, COUNTER, upstream_errors, "kind=\"connect\"", CDN_STATS_H_UP_ERR)             \
    X(upstream_errors_tls, COUNTER, upstream_errors, "kind=\"tls\"", CDN_STATS_H_UP_ERR)                     \
    X(upstream_errors_timeout, COUNTER, upstream_errors, "kind=\"timeout\"", CDN_STATS_H_UP_ERR)             \
    X(upstream_errors_protocol, COUNTER, upstream_errors, "kind=\"protocol\"", CDN_STATS_H_UP_ERR)           \
    X(upstream_conns_opened, COUNTER, upstream_connections_opened, "", "Upstream connections opened")        \
    X(upstream_tls_full, COUNTER, upstream_tls_handshakes, "kind=\"full\"", CDN_STATS_H_UP_TLS)              \
    X(upstream_tls_resumed, COUNTER, upstream_tls_handshakes, "kind=\"resumed\"", CDN_STATS_H_UP_TLS)        \
    X(upstream_conns_reused, COUNTER, upstream_connections_reused, "",                                       \
      "Upstream requests sent on a kept-alive connection from the pool")                                     \
    X(upstream_response_seconds, HISTOGRAM, upstream_response_seconds, "",                                   \
      "Time from the start of an upstream request (connect included) to its response head")                  \
    /* parents of upstream groups (lib/ugroup.c, docs/TIERING.md) */                                         \
    X(parent_requests, CSERIES, upstream_parent_requests, "group,parent",                                    \
      "Requests sent to a parent of an upstream group (every attempt, retries included)")                    \
    X(parent_failures, CSERIES, upstream_parent_failures, "group,parent",                                    \
      "Failed attempts on a parent: connect refused or timed out, TLS failure, no response head in time, "   \
      "failed active check (a 5xx response is not one)")                                                     \
    X(parent_state_changes, CSERIES, upstream_parent_state_changes, "group,parent",                          \
      "Times a parent was taken out of service (up to down) or put back (down to up)")                       \
    X(parent_up, SERIES, upstream_parent_up, "group,parent",                                                 \
      "1 while a parent is in service, 0 while it is out (until its back-off passes and a probe succeeds)")  \
    X(parent_connections, CSERIES, upstream_parent_connections, "group,parent,kind",                         \
      "Connections used for requests to a parent: kind opened (new) or reused (from the pool)")              \
    X(parent_tls_handshakes, CSERIES, upstream_parent_tls_handshakes, "group,parent,kind",                   \
      "TLS handshakes on new connections to a parent: kind full or resumed")                                 \
    /* CONNECT tunnels (docs/TUNNELS.md) */                                                                  \
    X(tunnels, COUNTER, tunnels, "", "CONNECT tunnels established (answered 200, relaying)")                 \
    X(tunnels_active, GAUGE, tunnels_active, "", "CONNECT tunnels relaying now")                             \
    X(tunnel_bytes_up, COUNTER, tunnel_bytes, "direction=\"up\"", CDN_STATS_H_TUN_BYTES)                     \
    X(tunnel_bytes_down, COUNTER, tunnel_bytes, "direction=\"down\"", CDN_STATS_H_TUN_BYTES)                 \
    X(tunnel_refused_disabled, COUNTER, tunnel_refusals, "reason=\"disabled\"", CDN_STATS_H_TUN_REFUSED)     \
    X(tunnel_refused_bad_target, COUNTER, tunnel_refusals, "reason=\"bad_target\"", CDN_STATS_H_TUN_REFUSED) \
    X(tunnel_refused_no_route, COUNTER, tunnel_refusals, "reason=\"no_route\"", CDN_STATS_H_TUN_REFUSED)     \
    X(tunnel_refused_port, COUNTER, tunnel_refusals, "reason=\"port\"", CDN_STATS_H_TUN_REFUSED)             \
    X(tunnel_refused_no_certificate, COUNTER, tunnel_refusals, "reason=\"no_certificate\"",                  \
      CDN_STATS_H_TUN_REFUSED)                                                                               \
    X(tunnel_failed_resolve, COUNTER, tunnel_failures, "reason=\"resolve\"", CDN_STATS_H_TUN_FAILED)         \
    X(tunnel_failed_connect, COUNTER, tunnel_failures, "reason=\"connect\"", CDN_STATS_H_TUN_FAILED)         \
    X(tunnel_failed_timeout, COUNTER, tunnel_failures, "reason=\"timeout\"", CDN_STATS_H_TUN_FAILED)         \
    X(tunnel_failed_peer, COUNTER, tunnel_failures, "reason=\"peer\"", CDN_STATS_H_TUN_FAILED)               \
    /* certificates */                                                                                       \
    X(certificate_expiry_seconds, SERIES, certificate_expiry_seconds, "kind,file,subject",                   \
      "Seconds until a loaded certificate expires (kind server, client or ca) or a "                         \
      "loaded CRL's next update (kind crl); negative once past")                                             \
    /* reloads and process */                                                                                \
    X(reloads_ok, COUNTER, reloads, "result=\"ok\"", CDN_STATS_H_RELOADS)                                    \
    X(reloads_failed, COUNTER, reloads, "result=\"failed\"", CDN_STATS_H_RELOADS)                            \
    X(reload_last_time_seconds, GAUGE, reload_last_time_seconds, "",                                         \
      "Unix time of the last reload attempt; 0 if none since the start")                                     \
    X(reload_last_success, GAUGE, reload_last_success, "",                                                   \
      "1 if the last reload attempt succeeded or none was made; 0 if it failed (the previous configuration " \
      "keeps running)")                                                                                      \
    X(generation, GAUGE, config_generation, "",                                                              \
      "Configuration generation new connections use: 1 at start, +1 per successful reload")                  \
    X(log_access_dropped, COUNTER, access_log_lines_dropped, "",                                             \
      "Access log lines dropped because the log writer fell behind (the event loop never waits for it)")     \
    X(start_time_seconds, GAUGE, start_time_seconds, "", "Unix time the process started")

#endif
