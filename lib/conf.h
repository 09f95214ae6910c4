/*
 * conf: the node's YAML configuration (libyaml), loaded into an immutable struct cdn_conf.
 * Every problem is reported as "file:line:col: key: message"; loading collects all problems
 * instead of stopping at the first. Relative paths are resolved against the config file's folder.
 */
#ifndef CDN_CONF_H
#define CDN_CONF_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cdn_role_kind { CDN_ROLE_UNSET = 0, CDN_ROLE_EDGE, CDN_ROLE_REGIONAL };
enum cdn_client_auth {
    CDN_CLIENT_AUTH_UNSET = -1, /* not in the file: the role's default applies */
    CDN_CLIENT_AUTH_NONE = 0,
    CDN_CLIENT_AUTH_REQUEST = 1,
    CDN_CLIENT_AUTH_REQUIRE = 2,
};
enum cdn_verify_policy { CDN_VERIFY_ENFORCED = 0, CDN_VERIFY_PERMISSIVE, CDN_VERIFY_DISABLED };
enum cdn_verify_properties { CDN_VERIFY_ALL = 0, CDN_VERIFY_SIGNATURE, CDN_VERIFY_NAME };
enum cdn_crl_check { CDN_CRL_LEAF = 0, CDN_CRL_CHAIN };
enum cdn_crl_expired { CDN_CRL_EXPIRED_REJECT = 0, CDN_CRL_EXPIRED_WARN };
enum cdn_host_sni_policy { CDN_HOST_SNI_ENFORCE = 0, CDN_HOST_SNI_PERMISSIVE }; /* ATS host_sni_policy */
enum cdn_log_level { CDN_LOG_ERROR = 0, CDN_LOG_WARN, CDN_LOG_INFO, CDN_LOG_DEBUG };

/* A sequence of strings (allowed_sans ...). */
struct cdn_conf_strlist {
    char **v;
    size_t n;
};

/* Position of a YAML node, for diagnostics raised after loading (e.g. by a role). */
struct cdn_conf_pos {
    int line, col; /* 1-based; 0 when the key was absent */
};

struct cdn_conf_listener {
    char *name;              /* default "listenerN" (N = index) */
    char *address;           /* IPv4 or IPv6 literal; required */
    int port;                /* 0..65535; 0 = pick a free port (written to --ports-file); required */
    bool tls;                /* default false */
    char *certificate, *key; /* PEM paths; required when tls */
    int client_auth;         /* enum cdn_client_auth; UNSET when absent */
    char *ca_file;           /* CA bundle to verify client certificates */
    int verify_depth;        /* longest client chain accepted (intermediates + 1); default 4 */
    bool send_ca_names;      /* list ca_file's subjects in the CertificateRequest; default true */
    char *crl_file;          /* PEM CRLs checked for client certificates; NULL = no revocation check */
    int crl_check;           /* enum cdn_crl_check: leaf (default) or chain */
    int crl_expired;         /* enum cdn_crl_expired: reject (default) or warn */
    struct cdn_conf_strlist allowed_sans;         /* client certificate pins (lib/pin.h); empty = none */
    struct cdn_conf_strlist allowed_fingerprints; /* SHA-256 of the leaf's DER, validated hex */
    struct cdn_conf_pos pos, client_auth_pos;
};

/* One per-SNI client-certificate rule (the top-level sni: list, ATS sni.yaml key names; lib/sni.h). */
struct cdn_conf_sni_rule {
    char *fqdn;        /* lower-case: "name", "*.suffix" (one or more labels) or "" (no SNI); required */
    int verify_client; /* enum cdn_client_auth: NONE / MODERATE (request) / STRICT (require);
                        * UNSET = the listener's level */
    char *ca_file;     /* verify_client_ca_certs; NULL = the listener's ca_file (and crl_file) */
    char *certificate, *key; /* per-SNI server certificate; NULL = the listener's */
    char *crl_file;          /* NULL = the listener's crl_file when ca_file is inherited, else none */
    struct cdn_conf_strlist allowed_sans; /* both empty = the listener's pins when ca_file is inherited */
    struct cdn_conf_strlist allowed_fingerprints;
    bool log_only;   /* refusals are logged and counted, the client is let through (Akamai "deny disabled") */
    const char *src; /* the file the rule came from (the config or sni_yaml), for messages; borrowed */
    struct cdn_conf_pos pos, ca_file_pos;
};

struct cdn_conf_upstream {
    char *name;    /* upstreams[] profiles only (what "@upstream=NAME" selects); NULL for upstream: */
    char *address; /* optional "host:port": connect here instead of the remap target (a parent) */
    char *client_certificate; /* PEM presented to a TLS upstream */
    char *client_key;
    char *ca_file;     /* CA bundle to verify the upstream; NULL = system default store */
    bool verify;       /* default true: chain and name are checked; false = verify_server_policy DISABLED */
    int verify_policy; /* enum cdn_verify_policy (ATS verify_server_policy); default ENFORCED */
    int verify_properties; /* enum cdn_verify_properties (ATS verify_server_properties); default ALL */
    char *server_name;     /* SNI and name to verify; default the remap target's host */
    char *crl_file;        /* PEM CRLs checked on the upstream's whole chain; NULL = no revocation check */
    struct cdn_conf_pos pos;
};

struct cdn_conf_remap_rule {
    char *from, *to; /* URLs from "map FROM TO" */
    size_t upstream; /* "@upstream=NAME": 1 + its index in cdn_conf.upstreams; 0 = the node's upstream: */
    size_t group;    /* "@group=NAME": 1 + its index in cdn_conf.ugroups; 0 = none (never with upstream) */
    struct cdn_conf_pos pos;
};

/* Parent selection of an upstream group (docs/TIERING.md). */
enum cdn_ugroup_policy { CDN_UGROUP_CONSISTENT_HASH = 0, CDN_UGROUP_ROUND_ROBIN, CDN_UGROUP_FIRST_LIVE };

#define CDN_CONF_MAX_PARENTS 64 /* per group */

struct cdn_conf_parent {
    char *address;   /* "host:port"; required */
    unsigned weight; /* share on the hash ring; default 1 */
    char *name;      /* stats label and ring identity; default the address */
    struct cdn_conf_pos pos;
};

struct cdn_conf_ugroup_health {
    unsigned fail_threshold;    /* consecutive failures that take a parent out; default 3 */
    uint64_t backoff_ms;        /* first wait before a probe of a parent that is out; default 10s */
    char *check_path;           /* active check "GET check_path"; NULL = passive health only */
    uint64_t check_interval_ms; /* default 5s */
    uint64_t check_timeout_ms;  /* connect + response head of one check; default 2s */
};

/* One upstream_groups: entry: parents a remap rule's requests go to ("@group=NAME"). */
struct cdn_conf_ugroup {
    char *name; /* required, unique */
    int policy; /* enum cdn_ugroup_policy */
    struct cdn_conf_parent *parents;
    size_t nparents;
    char *upstream;   /* outbound TLS profile name from upstreams:; NULL = the node's upstream: */
    size_t profile;   /* resolved: 1 + index in cdn_conf.upstreams; 0 = upstream: */
    unsigned retries; /* further parents tried after the first; default 2 */
    bool go_direct;   /* every parent out or failed: connect to the remap target itself */
    bool keepalive;   /* default true: pool connections to the parents; false = one per request */
    struct cdn_conf_ugroup_health health;
    struct cdn_conf_pos pos, upstream_pos;
};

struct cdn_conf_timeouts {
    uint64_t handshake_ms;         /* TLS handshake on accept; default 10s */
    uint64_t request_header_ms;    /* first byte to complete request head; default 10s */
    uint64_t keepalive_ms;         /* idle between requests; default 60s */
    uint64_t body_ms;              /* idle while a body is in flight, either direction; default 60s */
    uint64_t upstream_connect_ms;  /* TCP connect + TLS handshake to the upstream; default 5s */
    uint64_t upstream_response_ms; /* request sent to response head received; default 30s */
    uint64_t upstream_idle_ms;     /* an idle pooled upstream connection is closed after this; default 30s */
    uint64_t drain_ms;             /* SIGTERM/SIGINT: in-flight exchanges get this long; default 30s */
};

struct cdn_conf_limits {
    uint64_t max_header_size; /* default 32KiB */
    uint64_t max_headers;     /* default 100, at most 256 */
};

struct cdn_conf_log {
    char *error;         /* path, or NULL/"-" for stderr */
    char *access;        /* path, or NULL for no access log, "-" for stdout */
    char *access_format; /* lib/alog.h syntax; NULL = CDN_ALOG_DEFAULT */
    int level;           /* enum cdn_log_level; default info */
    char *tls_failures;  /* path of the refused-handshake log; NULL = those lines go to the error log */
};

/* Identity headers to the upstream (lib/ident.h). Every name here, Client-Cert and Client-Cert-Chain
 * are removed from client requests whether or not anything is added. */
struct cdn_conf_identity {
    bool client_cert_chain; /* add RFC 9440 Client-Cert-Chain; default false */
    bool headers;           /* add the five headers below; default false */
    char *subject_header, *issuer_header, *sans_header, *fingerprint_header, *status_header;
};

struct cdn_conf_admin {
    char *address; /* NULL = no admin listener; else an IP literal (default 127.0.0.1 when port is set) */
    int port;      /* -1 = no admin listener; 0 = pick a free port (written to --ports-file as "admin") */
    bool tls;      /* HTTPS with certificate/key; client certificates per client_auth (default require) */
    char *certificate, *key, *ca_file;
    int client_auth; /* enum cdn_client_auth; UNSET = require when tls */
    struct cdn_conf_pos pos;
};

struct cdn_conf_cache {
    char *path;               /* LMDB store directory; NULL = no cache on this node */
    uint64_t size;            /* store size in bytes; default 1GiB */
    uint64_t max_object_size; /* larger responses pass through uncached; default 64MiB */
    char *name;               /* Cache-Status member name; NULL = "cdn-node-<role>" */
    bool ignore_query;        /* cache key without the query string */
    char **ignore_params;     /* query parameters left out of the cache key */
    size_t nignore_params;
    struct cdn_conf_pos pos;
};

/* One CONNECT route of an edge (ATS tls_bridge: a destination regex and the peer that carries it). */
struct cdn_conf_tunnel_route {
    char *match; /* POSIX extended regex, case-insensitive, matched against the whole "host:port" */
    regex_t re;  /* compiled match; valid when compiled */
    bool compiled;
    char *peer;      /* "host:port" of the peer node (a regional); required */
    char *peer_host; /* peer without the port (IPv6 without brackets) */
    int peer_port;
    struct cdn_conf_pos pos, match_pos;
};

/* CONNECT tunnels (docs/TUNNELS.md). Off unless listeners names at least one listener. */
struct cdn_conf_tunnel {
    char **listeners; /* names of the listeners that accept CONNECT */
    size_t nlisteners;
    struct cdn_conf_tunnel_route *routes; /* edge: tried in order, the first match wins */
    size_t nroutes;
    int *connect_ports; /* regional: ports a tunnel may reach; none given = {443} */
    size_t nconnect_ports;
    uint64_t idle_timeout_ms; /* no byte either way for this long closes a tunnel; default 5m */
    struct cdn_conf_pos pos, listeners_pos, routes_pos;
};

struct cdn_conf {
    char *path;
    enum cdn_role_kind role;
    struct cdn_conf_pos role_pos;
    unsigned workers; /* 0 = number of cores */
    struct cdn_conf_listener *listeners;
    size_t nlisteners;
    struct cdn_conf_remap_rule *remap;
    size_t nremap;
    struct cdn_conf_upstream upstream;   /* the node default for TLS upstreams */
    struct cdn_conf_upstream *upstreams; /* named profiles, chosen per remap rule */
    size_t nupstreams;
    struct cdn_conf_ugroup *ugroups; /* upstream_groups: */
    size_t nugroups;
    struct cdn_conf_timeouts timeouts;
    struct cdn_conf_limits limits;
    struct cdn_conf_log log;
    struct cdn_conf_cache cache;
    struct cdn_conf_admin admin;
    char *via;                     /* pseudonym in Via headers; default "cdn-node" */
    struct cdn_conf_sni_rule *sni; /* per-SNI rules, applied to every TLS listener (lib/sni.h) */
    size_t nsni;
    int host_sni_policy;        /* enum cdn_host_sni_policy; default enforce (421 for Host != SNI) */
    bool watch_files;           /* reload when the content of the config or a file it names changes */
    uint64_t watch_interval_ms; /* how often watched files are read; default 1s */
    char *user, *group;         /* privileges dropped to after binding; NULL = stay */
    struct cdn_conf_pos user_pos;
    char *sni_yaml; /* an ATS sni.yaml whose rules follow the inline sni: ones; NULL = none */
    struct cdn_conf_pos sni_yaml_pos;
    struct cdn_conf_identity identity;
    struct cdn_conf_tunnel tunnel;
};

/* Loads and validates path. On success returns 0 and *out (free with cdn_conf_free).
 * On failure returns -1 and *err: one line per problem, "file:line:col: message", heap (caller frees). */
int cdn_conf_load(const char *path, struct cdn_conf **out, char **err);
void cdn_conf_free(struct cdn_conf **conf);

/* "edge" -> CDN_ROLE_EDGE ...; CDN_ROLE_UNSET for anything else. */
enum cdn_role_kind cdn_conf_role_parse(const char *s);
const char *cdn_conf_role_name(enum cdn_role_kind r);
const char *cdn_conf_client_auth_name(int level);

/* Tunnels: is the listener named name one that accepts CONNECT? Is port a port tunnels may reach?
 * Which route (first match) does target "host:port" take; NULL = none. */
bool cdn_conf_tunnel_listener(const struct cdn_conf *conf, const char *name);
bool cdn_conf_tunnel_port_allowed(const struct cdn_conf *conf, int port);
const struct cdn_conf_tunnel_route *cdn_conf_tunnel_route(const struct cdn_conf *conf, const char *target);

/* Calls cb once for every key the loader accepts, as a path such as "listeners[].port" or "timeouts.body",
 * parents before children. The path is valid only during the call. Lets a test check that docs/CONFIG.md
 * documents every key (STYLE 3.9). */
typedef void cdn_conf_key_cb(const char *path, void *arg);
void cdn_conf_keys(cdn_conf_key_cb *cb, void *arg);

#endif
