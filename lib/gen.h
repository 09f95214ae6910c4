/*
 * gen: one generation of the node's configuration, and everything built from it: the config itself,
 * every listener's TLS context (with its per-SNI rules), the upstream client context, remap rules and
 * the certificate-expiry series. A reload builds a new generation next to the running one and swaps it
 * in (lib/server.c); each connection holds a reference to the generation it was accepted under and
 * keeps it until it ends, so in-flight exchanges never see their settings change under them.
 *
 * Generations are immutable once built and reference counted (atomically: a session on a worker may
 * drop the last reference while the main thread swaps in the next one).
 */
#ifndef CDN_GEN_H
#define CDN_GEN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "cache/key.h"
#include "cache/policy.h"
#include "lib/conf.h"
#include "lib/http1.h"
#include "lib/remap.h"
#include "lib/stats.h"
#include "lib/ugroup.h"

/* What differs between the tiers, as far as the core needs to know (the role module decides it). */
struct cdn_server_policy {
    const char *role_name;
    int default_client_auth; /* applied to listeners whose client_auth is UNSET */
};

struct cdn_listener_rt {
    const struct cdn_conf_listener *conf;
    SSL_CTX *ctx;              /* NULL = plain HTTP */
    int client_auth;           /* effective level */
    bool admin;                /* the admin listener (lib/admin.c), not the request path */
    const struct cdn_sni *sni; /* per-SNI rules (lib/sni.h), owned by ctx; NULL = none */
};

struct cdn_gen {
    _Atomic unsigned refs;
    uint64_t id; /* 1 for the config the node started with, +1 per successful reload */
    struct cdn_conf *conf;
    struct cdn_server_policy policy;
    struct cdn_remap *remap;
    SSL_CTX *upstream_ctx; /* client context for TLS upstreams; NULL when no rule needs one */
    SSL_CTX **profile_ctx; /* one per conf->upstreams[] profile (remap "@upstream=NAME") */
    size_t nprofiles;
    struct cdn_ugroups *ugroups; /* upstream_groups: (lib/ugroup.h): parents, their health and counters */
    struct cdn_listener_rt *listeners; /* the config's listeners, then the admin listener if any */
    size_t nlisteners;
    struct cdn_conf_listener admin_conf; /* synthesised from conf->admin */
    struct cdn_http_limits limits;
    char *via; /* pseudonym for Via headers */
    struct cache_policy_cfg cache_policy;
    struct cache_key_rules cache_key_rules; /* borrows conf's parameter list */
    char *cache_name;                       /* Cache-Status member name */
    struct cdn_alog *alog;                  /* access log line format */
    struct cdn_stats_extra cert_series;     /* expiry of every certificate and CRL loaded */
    char **files; /* every file the generation read (config, PEMs), for watch_files */
    size_t nfiles;
};

/* Builds a generation from conf, taking ownership of it (*conf becomes NULL, also on failure).
 * Everything that can fail before serving, but sockets: TLS contexts (each error names the file and
 * the listener), remap rules, the certificate checks of `cdn-node ca-check`. 0 + *out (one reference),
 * or -1 + *err (heap). */
int cdn_gen_new(struct cdn_conf **conf, const struct cdn_server_policy *policy, struct cdn_gen **out,
                char **err);
struct cdn_gen *cdn_gen_ref(struct cdn_gen *g);
/* Drops a reference; the last one frees the generation. *g becomes NULL. */
void cdn_gen_unref(struct cdn_gen **g);

/* Whether next may replace cur without a restart: the same listeners (name, address, port, tls), the
 * same admin listener, workers, cache store and log files. 0, or -1 + *err listing what differs. */
int cdn_gen_compatible(const struct cdn_gen *cur, const struct cdn_gen *next, char **err);

/* Every file conf names that a generation reads (the config file first), for watch_files. The list
 * and its strings are heap; free with cdn_gen_files_free. */
void cdn_gen_conf_files(const struct cdn_conf *conf, char ***files, size_t *n);
void cdn_gen_files_free(char **files, size_t n);

#endif
