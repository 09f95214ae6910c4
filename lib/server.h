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
#include "lib/gen.h"
#include "lib/http1.h"
#include "lib/remap.h"

#define CDN_WORKER_MAGIC 0x776f726bu

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
    uv_tcp_t *listeners;             /* one per cdn_listener_rt */
    struct cdn_session *sessions;    /* every live session, for shutdown */
    struct cdn_pool *pool;           /* idle keep-alive upstream conns */
    uv_async_t fill_async;           /* the store's writer drained a busy fill of this worker */
    uv_async_t collapse_async;       /* a leader finished a fetch some session here waits for */
    uv_timer_t trim_timer;           /* frees the buffers of idle keep-alive connections */
    uint64_t trim_requests;          /* requests counted at the last trim tick */
    bool trim_busy;                  /* requests came during the last tick */
    struct cdn_stats stats;          /* this worker's counters: written by its thread only */
    struct cdn_buf head_buf, cs_buf; /* scratch for building response heads: reused, never shrunk */
    _Atomic int cmd;                 /* CDN_WORKER_RUN/DRAIN/STOP, set by the main thread, then `stop` sent */
    _Atomic bool reloaded;           /* set by a reload, then `stop` sent: drop idle pooled conns */
    bool stopping;                   /* no keep-alive, no pooling: set when draining or stopping */
    bool draining;                   /* listeners closed; stops by itself when the last session is gone */
    bool stopped;                    /* everything closed; the loop ends */
};

enum { CDN_WORKER_RUN = 0, CDN_WORKER_DRAIN = 1, CDN_WORKER_STOP = 2 };

/* Loads the config again for a reload (the file and --role the node started with; the role's checks
 * run): 0 + *conf and *policy, or -1 + *err (heap). Set by the command that runs the server. */
typedef int cdn_server_loader(void *arg, struct cdn_conf **conf, struct cdn_server_policy *policy,
                              char **err);

struct cdn_server {
    struct cdn_server_policy policy; /* the role: never changes */
    struct cdn_gen *gen;             /* the generation new connections get; swapped by a reload */
    uv_mutex_t gen_lock;             /* guards gen (workers take references) and the reload fields */
    _Atomic uint64_t gen_id;         /* gen->id, readable without the lock */
    size_t nlisteners;               /* fixed at start: gen->nlisteners of every generation */
    size_t admin_li;                 /* index of the admin listener; SIZE_MAX = none */
    int *ports;                      /* the port each listener actually bound */
    unsigned nworkers;
    struct cdn_worker *workers;
    int *fds; /* nworkers * nlisteners bound + listening sockets, handed to the workers */
    /* the HTTP cache; store NULL = this node does not cache */
    struct cache_store *store;
    uint64_t max_object_size;      /* what the store accepts (cache.max_object_size, at most size / 4) */
    struct cdn_collapse *collapse; /* in-flight fetches, for collapsed forwarding */
    struct cdn_admin_ops admin_ops;
    _Atomic bool ready; /* listeners up and not stopping (/readyz) */
    int64_t start_time;
    uv_async_t *main_wake;         /* the main thread's: a worker's loop has ended */
    uv_async_t *reload_wake;       /* the main thread's: the admin asked for a reload */
    _Atomic unsigned workers_done; /* workers whose loop has ended */
    /* reloads (guarded by gen_lock) */
    cdn_server_loader *loader;
    void *loader_arg;
    uint64_t reloads_ok, reloads_failed;
    int64_t reload_last_time;
    char *reload_error; /* why the last attempt failed; NULL when it did not */
};

/* Builds everything that can fail before serving except sockets: TLS contexts (each error names
 * the file and the listener) and remap rules. Returns 0, or -1 with *err (heap). check-config
 * stops here. */
int cdn_server_init(struct cdn_server *s, struct cdn_conf **conf, const struct cdn_server_policy *policy,
                    char **err);
/* A new reference to the current generation (any thread); drop it with cdn_gen_unref. */
struct cdn_gen *cdn_server_gen(struct cdn_server *s);
/* Reloads now (main thread, or before cdn_server_run): loads the config with s->loader, builds a
 * generation and swaps it in when it is compatible (cdn_gen_compatible). why goes to the log. 0, or
 * -1 when the running generation stays (the reason is logged and kept for /stats). */
int cdn_server_reload(struct cdn_server *s, const char *why);
/* Switches to the config's user and group (after binding and opening files). 0, or -1 + *err. */
int cdn_server_drop_privileges(struct cdn_server *s, char **err);
/* Opens the cache store when the config has one (blocking; at startup). 0, or -1 + *err. A store that
 * was found damaged and rebuilt is logged as a warning, not an error. */
int cdn_server_open_cache(struct cdn_server *s, char **err);
/* Binds every listener once per worker ("address in use" is reported here). 0 or -1 + *err. */
int cdn_server_bind(struct cdn_server *s, char **err);
/* Writes "NAME PORT" per listener to path (atomically: a temporary file renamed). Call it after
 * cdn_server_bind: the sockets listen already, so a client may connect as soon as it reads the file
 * (it is the readiness signal of tests and `make run`). 0, or -1 (logged). */
int cdn_server_write_ports(const struct cdn_server *s, const char *path);
/* Starts the workers and blocks until SIGTERM or
 * SIGINT has stopped them. The first SIGTERM/SIGINT drains: listeners close (/readyz turns 503), idle
 * connections close at once, exchanges in flight finish with Connection: close; then the workers stop,
 * or after timeouts.drain whatever is left is closed. A second SIGTERM/SIGINT stops at once. SIGUSR1
 * reopens the log files; SIGHUP reloads (cdn_server_reload), so do POST /reload and watch_files. Returns 0.
 */
int cdn_server_run(struct cdn_server *s, const char *ports_file); /* ports_file: removed at exit */
/* Worker thread: the last session of a draining worker is gone (called by lib/proxy.c). */
void cdn_server_worker_drained(struct cdn_worker *w);
void cdn_server_dispose(struct cdn_server *s);

#endif
