/*
 * server: the process. Loads TLS contexts and remap rules from the config, binds every listener
 * once per worker with SO_REUSEPORT (so the kernel spreads connections), runs N worker threads each
 * with its own uv_loop, and stops them all on SIGTERM/SIGINT. Workers share only read-only state.
 */
#ifndef CDN_SERVER_H
#define CDN_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "cache/key.h"
#include "cache/policy.h"
#include "cache/store.h"
#include "lib/admin.h"
#include "lib/conf.h"
#include "lib/http1.h"
#include "lib/remap.h"

#define CDN_WORKER_MAGIC 0x776f726bu

/* What differs between the tiers, as far as the core needs to know (the role module decides it). */
struct cdn_server_policy {
    const char *role_name;
    int default_client_auth; /* applied to listeners whose client_auth is UNSET */
};

struct cdn_listener_rt {
    const struct cdn_conf_listener *conf;
    SSL_CTX *ctx;              /* NULL = plain HTTP */
    int client_auth;           /* effective level */
    int port;                  /* the port actually bound */
    bool admin;                /* the admin listener (lib/admin.c), not the request path */
    const struct cdn_sni *sni; /* per-SNI rules (lib/sni.h), owned by ctx; NULL = none */
};

struct cdn_session;
struct cdn_pool;
struct cdn_collapse;

struct cdn_worker {
    uint32_t magic;
    struct cdn_server *srv;
    unsigned idx;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t stop;
    uv_tcp_t *listeners;          /* one per cdn_listener_rt */
    struct cdn_session *sessions; /* every live session, for shutdown */
    struct cdn_pool *pool;        /* idle keep-alive upstream conns */
    uv_async_t fill_async;        /* the store's writer drained a busy fill of this worker */
    uv_async_t collapse_async;    /* a leader finished a fetch some session here waits for */
    struct cdn_stats stats;       /* this worker's counters: written by its thread only */
    _Atomic int cmd;              /* CDN_WORKER_RUN/DRAIN/STOP, set by the main thread, then `stop` sent */
    bool stopping;                /* no keep-alive, no pooling: set when draining or stopping */
    bool draining;                /* listeners closed; stops by itself when the last session is gone */
    bool stopped;                 /* everything closed; the loop ends */
};

enum { CDN_WORKER_RUN = 0, CDN_WORKER_DRAIN = 1, CDN_WORKER_STOP = 2 };

struct cdn_server {
    struct cdn_conf *conf; /* borrowed; outlives the server */
    struct cdn_server_policy policy;
    struct cdn_remap *remap;
    SSL_CTX *upstream_ctx; /* client context for TLS upstreams */
    SSL_CTX **profile_ctx; /* one per conf->upstreams[] profile (remap "@upstream=NAME") */
    size_t nprofiles;
    struct cdn_listener_rt *listeners;
    size_t nlisteners;
    unsigned nworkers;
    struct cdn_worker *workers;
    int *fds; /* nworkers * nlisteners bound + listening sockets, handed to the workers */
    struct cdn_http_limits limits;
    char *via; /* "cdn-node" */
    /* the HTTP cache; store NULL = this node does not cache */
    struct cache_store *store;
    struct cache_policy_cfg cache_policy;
    struct cache_key_rules cache_key_rules;
    char *cache_name;              /* Cache-Status member name */
    struct cdn_collapse *collapse; /* in-flight fetches, for collapsed forwarding */
    /* the admin listener */
    struct cdn_conf_listener admin_conf; /* synthesised from conf->admin */
    struct cdn_admin_ops admin_ops;
    _Atomic bool ready;                 /* listeners up and not stopping (/readyz) */
    struct cdn_stats_extra cert_series; /* expiry of every certificate and CRL loaded; fixed after init */
    int64_t start_time;
    uv_async_t *main_wake;         /* the main thread's: a worker's loop has ended */
    _Atomic unsigned workers_done; /* workers whose loop has ended */
};

/* Builds everything that can fail before serving except sockets: TLS contexts (each error names
 * the file and the listener) and remap rules. Returns 0, or -1 with *err (heap). check-config
 * stops here. */
int cdn_server_init(struct cdn_server *s, struct cdn_conf *conf, const struct cdn_server_policy *policy,
                    char **err);
/* Opens the cache store when the config has one (blocking; at startup). 0, or -1 + *err. A store that
 * was found damaged and rebuilt is logged as a warning, not an error. */
int cdn_server_open_cache(struct cdn_server *s, char **err);
/* Binds every listener once per worker ("address in use" is reported here). 0 or -1 + *err. */
int cdn_server_bind(struct cdn_server *s, char **err);
/* Starts the workers, writes ports_file (may be NULL) once listening, and blocks until SIGTERM or
 * SIGINT has stopped them. The first SIGTERM/SIGINT drains: listeners close (/readyz turns 503), idle
 * connections close at once, exchanges in flight finish with Connection: close; then the workers stop,
 * or after timeouts.drain whatever is left is closed. A second SIGTERM/SIGINT stops at once. SIGUSR1
 * reopens the log files. Returns 0. */
int cdn_server_run(struct cdn_server *s, const char *ports_file);
/* Worker thread: the last session of a draining worker is gone (called by lib/proxy.c). */
void cdn_server_worker_drained(struct cdn_worker *w);
void cdn_server_dispose(struct cdn_server *s);

#endif
