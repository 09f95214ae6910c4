/*
 * conf: loads the node's YAML file into a struct cdn_conf.
 *
 * The file is read whole and turned by libyaml's event parser into a small tree of our own (struct node)
 * that keeps every node's position. The tree is then walked with directive tables (struct conf_cmd,
 * STYLE 3.9): one generic setter per value type, custom handlers for sequences, and a post hook per map
 * for the rules that involve more than one key. Building our own tree rather than using libyaml's
 * document API lets us refuse aliases (a "billion laughs" file expands when a walker follows them) and
 * bound the nesting depth before anything recursive touches it.
 *
 * Loading never stops at the first problem: each one becomes a "file:line:col: key: message" line, sorted
 * by position, so an operator fixes the whole file in one round. Only problems that leave no trustworthy
 * tree (a YAML syntax error, too deep a nesting, a second document) stop before the walk.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "lib/alog.h"
#include "lib/conf.h"
#include "lib/pin.h"
#include "lib/util.h"

#define CONF_MAX_DEPTH     64                  /* the real format needs 3 levels */
#define CONF_MAX_ERRORS    100                 /* more would drown the first, most useful ones */
#define CONF_MAX_FILE_SIZE (16u * 1024 * 1024) /* a config is a few KiB; refuse anything absurd */
#define CONF_MAX_LISTENERS 128
#define CONF_MAX_NAME      64 /* listener names and the Via pseudonym */
#define CONF_MAX_CMDS      48 /* keys in one table (the sni_yaml table names many ATS keys) */
#define CONF_SHOW_MAX      48 /* bytes of a value or key quoted in a message */

enum node_kind { NODE_SCALAR, NODE_MAP, NODE_SEQ, NODE_BAD /* an alias, already reported */ };

struct node {
    enum node_kind kind;
    struct cdn_conf_pos pos;
    char *str; /* scalar text, NUL-terminated; len counts any NUL bytes inside it */
    size_t len;
    bool plain;          /* unquoted, so "~", "null" and "" mean null */
    struct node **items; /* map: key, value, key, value...; sequence: the elements */
    size_t nitems, cap;
};

struct conf_msg {
    struct cdn_conf_pos pos;
    char *line;
};

struct loader {
    const char *file;      /* the config path as given, for messages and for relative paths */
    char **remap_upstream; /* "@upstream=NAME" of each remap rule until resolved; NULL entries = none */
    char **remap_group;    /* "@group=NAME", likewise */
    char *err;             /* the final text; problems found while walking are in msgs until then */
    struct conf_msg msgs[CONF_MAX_ERRORS];
    unsigned nerr; /* may exceed CONF_MAX_ERRORS: only the first ones are kept */
};

enum conf_type {
    CT_STR,    /* char *, optionally checked by cmd->check */
    CT_PATH,   /* char *, resolved against the config file's folder */
    CT_BOOL,   /* bool */
    CT_INT,    /* int in min..max */
    CT_UINT,   /* unsigned in min..max */
    CT_U64,    /* uint64_t in min..max */
    CT_ENUM,   /* int from cmd->enums */
    CT_MSEC,   /* uint64_t milliseconds, > 0 */
    CT_SIZE,   /* uint64_t bytes in min..max */
    CT_MAP,    /* a nested struct at offset, keys from cmd->sub */
    CT_LIST,   /* struct cdn_conf_strlist: a sequence of strings, each checked by cmd->check */
    CT_CUSTOM, /* cmd->handler does everything */
};

#define CMD_REQUIRED 0x1u
#define CMD_POS      0x2u  /* store the value's position at pos_offset */
#define CMD_DASH     0x4u  /* CT_PATH: "-" is kept as is (stdout/stderr) */
#define CMD_SEQ      0x8u  /* a sequence of cmd->sub maps (for cdn_conf_keys) */
#define CMD_NULL     0x10u /* CT_CUSTOM: the handler also runs for a null value */

struct conf_cmd;
typedef void conf_handler(struct loader *ld, const struct conf_cmd *cmd, const struct node *v,
                          const char *key, void *base);
typedef void conf_post(struct loader *ld, const struct node *map, const char *key, void *base,
                       const struct node *const *seen);
typedef bool conf_check(const char *s);

struct conf_enum {
    const char *name;
    int value;
};

struct conf_cmd {
    const char *key;
    enum conf_type type;
    size_t offset;
    unsigned flags;
    uint64_t min, max;             /* CT_INT, CT_UINT, CT_U64, CT_SIZE */
    const struct conf_enum *enums; /* CT_ENUM */
    conf_check *check;             /* CT_STR */
    const char *what;              /* CT_STR, CT_CUSTOM: "expected <what>" */
    const struct conf_cmd *sub;    /* CT_MAP, CMD_SEQ */
    conf_post *post;               /* CT_MAP: cross-key rules, run after the map's keys */
    conf_handler *handler;         /* CT_CUSTOM */
    size_t pos_offset;             /* CMD_POS */
};

static conf_handler set_role, set_listeners, set_remap, set_ignore_params, set_sni, refuse_ats_key,
    set_upstreams, set_ugroups, set_parents;
static conf_post listener_post, upstream_post, admin_post;
static conf_check check_alog, check_token, check_name, check_ip, check_hostport, check_hostname, check_fqdn,
    check_san, check_fingerprint, check_label, check_abs_path;

static const struct conf_enum client_auth_enums[] = {{"none", CDN_CLIENT_AUTH_NONE},
                                                     {"request", CDN_CLIENT_AUTH_REQUEST},
                                                     {"require", CDN_CLIENT_AUTH_REQUIRE},
                                                     {0}};

static const struct conf_enum verify_policy_enums[] = {{"ENFORCED", CDN_VERIFY_ENFORCED},
                                                       {"PERMISSIVE", CDN_VERIFY_PERMISSIVE},
                                                       {"DISABLED", CDN_VERIFY_DISABLED},
                                                       {0}};
static const struct conf_enum verify_properties_enums[] = {
    {"ALL", CDN_VERIFY_ALL}, {"SIGNATURE", CDN_VERIFY_SIGNATURE}, {"NAME", CDN_VERIFY_NAME}, {0}};
static const struct conf_enum crl_check_enums[] = {{"leaf", CDN_CRL_LEAF}, {"chain", CDN_CRL_CHAIN}, {0}};
static const struct conf_enum crl_expired_enums[] = {
    {"reject", CDN_CRL_EXPIRED_REJECT}, {"warn", CDN_CRL_EXPIRED_WARN}, {0}};

static const struct conf_enum verify_client_enums[] = {{"NONE", CDN_CLIENT_AUTH_NONE},
                                                       {"MODERATE", CDN_CLIENT_AUTH_REQUEST},
                                                       {"STRICT", CDN_CLIENT_AUTH_REQUIRE},
                                                       {0}};
static const struct conf_enum host_sni_policy_enums[] = {
    {"enforce", CDN_HOST_SNI_ENFORCE}, {"permissive", CDN_HOST_SNI_PERMISSIVE}, {0}};

static const struct conf_enum log_level_enums[] = {
    {"error", CDN_LOG_ERROR}, {"warn", CDN_LOG_WARN}, {"info", CDN_LOG_INFO}, {"debug", CDN_LOG_DEBUG}, {0}};

#define L(f)     offsetof(struct cdn_conf_listener, f)
#define SAN_WHAT "a subjectAltName value (DNS name, \"*.\" and a domain, URI, email or IP address)"
#define FP_WHAT  "a SHA-256 fingerprint (64 hex digits, ':' between pairs allowed)"
static const struct conf_cmd listener_cmds[] = {
    {.key = "name",
     .type = CT_STR,
     .offset = L(name),
     .check = check_name,
     .what = "a name of letters, digits, '.', '_' or '-' (at most 64)"},
    {.key = "address",
     .type = CT_STR,
     .offset = L(address),
     .flags = CMD_REQUIRED,
     .check = check_ip,
     .what = "an IPv4 or IPv6 address literal (no brackets, no host name)"},
    {.key = "port", .type = CT_INT, .offset = L(port), .flags = CMD_REQUIRED, .min = 0, .max = 65535},
    {.key = "tls", .type = CT_BOOL, .offset = L(tls)},
    {.key = "certificate", .type = CT_PATH, .offset = L(certificate)},
    {.key = "key", .type = CT_PATH, .offset = L(key)},
    {.key = "client_auth",
     .type = CT_ENUM,
     .offset = L(client_auth),
     .enums = client_auth_enums,
     .flags = CMD_POS,
     .pos_offset = L(client_auth_pos)},
    {.key = "ca_file", .type = CT_PATH, .offset = L(ca_file)},
    {.key = "verify_depth", .type = CT_INT, .offset = L(verify_depth), .min = 1, .max = 16},
    {.key = "send_ca_names", .type = CT_BOOL, .offset = L(send_ca_names)},
    {.key = "crl_file", .type = CT_PATH, .offset = L(crl_file)},
    {.key = "crl_check", .type = CT_ENUM, .offset = L(crl_check), .enums = crl_check_enums},
    {.key = "crl_expired", .type = CT_ENUM, .offset = L(crl_expired), .enums = crl_expired_enums},
    {.key = "allowed_sans", .type = CT_LIST, .offset = L(allowed_sans), .check = check_san, .what = SAN_WHAT},
    {.key = "allowed_fingerprints",
     .type = CT_LIST,
     .offset = L(allowed_fingerprints),
     .check = check_fingerprint,
     .what = FP_WHAT},
    {0}};
#undef L

#define SN(f) offsetof(struct cdn_conf_sni_rule, f)
/* The rows an sni: rule and an ATS sni.yaml rule share (the certificate keys have ATS names there). */
#define SNI_RULE_HEAD                                                                              \
    {.key = "fqdn",                                                                                \
     .type = CT_STR,                                                                               \
     .offset = SN(fqdn),                                                                           \
     .flags = CMD_REQUIRED,                                                                        \
     .check = check_fqdn,                                                                          \
     .what = "a host name, \"*.\" and a domain, or '' (clients that send no SNI)"},                \
        {.key = "verify_client",                                                                   \
         .type = CT_ENUM,                                                                          \
         .offset = SN(verify_client),                                                              \
         .enums = verify_client_enums},                                                            \
    {                                                                                              \
        .key = "verify_client_ca_certs", .type = CT_PATH, .offset = SN(ca_file), .flags = CMD_POS, \
        .pos_offset = SN(ca_file_pos)                                                              \
    }
#define SNI_RULE_TAIL                                              \
    {.key = "crl_file", .type = CT_PATH, .offset = SN(crl_file)},  \
        {.key = "allowed_sans",                                    \
         .type = CT_LIST,                                          \
         .offset = SN(allowed_sans),                               \
         .check = check_san,                                       \
         .what = SAN_WHAT},                                        \
        {.key = "allowed_fingerprints",                            \
         .type = CT_LIST,                                          \
         .offset = SN(allowed_fingerprints),                       \
         .check = check_fingerprint,                               \
         .what = FP_WHAT},                                         \
    {                                                              \
        .key = "log_only", .type = CT_BOOL, .offset = SN(log_only) \
    }
static const struct conf_cmd sni_cmds[] = {SNI_RULE_HEAD,
                                           {.key = "certificate", .type = CT_PATH, .offset = SN(certificate)},
                                           {.key = "key", .type = CT_PATH, .offset = SN(key)},
                                           SNI_RULE_TAIL,
                                           {0}};

/* An ATS sni.yaml rule (sni_yaml): ATS's names for what we support, our own keys whose meaning ATS
 * would not contradict, and ATS keys we do not support, refused by name rather than as "unknown". */
#define ATS_REFUSED(k)                                                            \
    {                                                                             \
        .key = k, .type = CT_CUSTOM, .flags = CMD_NULL, .handler = refuse_ats_key \
    }
static const struct conf_cmd ats_sni_cmds[] = {
    SNI_RULE_HEAD,
    {.key = "ssl_cert_name", .type = CT_PATH, .offset = SN(certificate)},
    {.key = "ssl_key_name", .type = CT_PATH, .offset = SN(key)},
    SNI_RULE_TAIL,
    ATS_REFUSED("ip_allow"),
    ATS_REFUSED("tunnel_route"),
    ATS_REFUSED("forward_route"),
    ATS_REFUSED("partial_blind_route"),
    ATS_REFUSED("tunnel_alpn"),
    ATS_REFUSED("tunnel_prewarm"),
    ATS_REFUSED("valid_tls_versions_in"),
    ATS_REFUSED("valid_tls_version_min_in"),
    ATS_REFUSED("valid_tls_version_max_in"),
    ATS_REFUSED("host_sni_policy"),
    ATS_REFUSED("http2"),
    ATS_REFUSED("http2_buffer_water_mark"),
    ATS_REFUSED("quic"),
    ATS_REFUSED("client_cert"),
    ATS_REFUSED("client_key"),
    ATS_REFUSED("client_sni_policy"),
    ATS_REFUSED("verify_server_policy"),
    ATS_REFUSED("verify_server_properties"),
    ATS_REFUSED("verify_origin_server"),
    ATS_REFUSED("ssl_ticket_enabled"),
    ATS_REFUSED("ssl_ticket_number"),
    ATS_REFUSED("server_max_early_data"),
    ATS_REFUSED("ssl_ca_name"),
    ATS_REFUSED("ssl_key_dialog"),
    {0}};
#undef ATS_REFUSED
#undef SN

#define U(f) offsetof(struct cdn_conf_upstream, f)
/* a named profile (upstreams[]); upstream: (the node default) has the same keys but the name */
static const struct conf_cmd upstream_profile_cmds[] = {
    {.key = "name",
     .type = CT_STR,
     .offset = U(name),
     .flags = CMD_REQUIRED,
     .check = check_name,
     .what = "a name of letters, digits, '.', '_' or '-' (at most 64)"},
    {.key = "address",
     .type = CT_STR,
     .offset = U(address),
     .check = check_hostport,
     .what = "host:port (an IPv6 address as [::1]:443)"},
    {.key = "client_certificate", .type = CT_PATH, .offset = U(client_certificate)},
    {.key = "client_key", .type = CT_PATH, .offset = U(client_key)},
    {.key = "ca_file", .type = CT_PATH, .offset = U(ca_file)},
    {.key = "crl_file", .type = CT_PATH, .offset = U(crl_file)},
    {.key = "verify", .type = CT_BOOL, .offset = U(verify)},
    {.key = "verify_server_policy",
     .type = CT_ENUM,
     .offset = U(verify_policy),
     .enums = verify_policy_enums},
    {.key = "verify_server_properties",
     .type = CT_ENUM,
     .offset = U(verify_properties),
     .enums = verify_properties_enums},
    {.key = "server_name",
     .type = CT_STR,
     .offset = U(server_name),
     .check = check_hostname,
     .what = "a host name"},
    {0}};
#define upstream_cmds (upstream_profile_cmds + 1)
#undef U

static const struct conf_enum ugroup_policy_enums[] = {{"consistent_hash", CDN_UGROUP_CONSISTENT_HASH},
                                                       {"round_robin", CDN_UGROUP_ROUND_ROBIN},
                                                       {"first_live", CDN_UGROUP_FIRST_LIVE},
                                                       {0}};

#define PA(f) offsetof(struct cdn_conf_parent, f)
static const struct conf_cmd parent_cmds[] = {
    {.key = "address",
     .type = CT_STR,
     .offset = PA(address),
     .flags = CMD_REQUIRED,
     .check = check_hostport,
     .what = "host:port (an IPv6 address as [::1]:443)"},
    {.key = "weight", .type = CT_UINT, .offset = PA(weight), .min = 1, .max = 100},
    {.key = "name",
     .type = CT_STR,
     .offset = PA(name),
     .check = check_label,
     .what = "a name of letters, digits and .:_-[] (at most 64)"},
    {0}};
#undef PA

#define UH(f) offsetof(struct cdn_conf_ugroup_health, f)
static const struct conf_cmd ugroup_health_cmds[] = {
    {.key = "fail_threshold", .type = CT_UINT, .offset = UH(fail_threshold), .min = 1, .max = 1000},
    {.key = "backoff", .type = CT_MSEC, .offset = UH(backoff_ms)},
    {.key = "check_path",
     .type = CT_STR,
     .offset = UH(check_path),
     .check = check_abs_path,
     .what = "a path starting with '/' (printable ASCII, no spaces)"},
    {.key = "check_interval", .type = CT_MSEC, .offset = UH(check_interval_ms), .min = 100},
    {.key = "check_timeout", .type = CT_MSEC, .offset = UH(check_timeout_ms)},
    {0}};
#undef UH

#define UG(f) offsetof(struct cdn_conf_ugroup, f)
static const struct conf_cmd ugroup_cmds[] = {
    {.key = "name",
     .type = CT_STR,
     .offset = UG(name),
     .flags = CMD_REQUIRED,
     .check = check_name,
     .what = "a name of letters, digits, '.', '_' or '-' (at most 64)"},
    {.key = "policy", .type = CT_ENUM, .offset = UG(policy), .enums = ugroup_policy_enums},
    {.key = "parents",
     .type = CT_CUSTOM,
     .handler = set_parents,
     .sub = parent_cmds,
     .flags = CMD_REQUIRED | CMD_SEQ,
     .what = "a sequence of parent maps"},
    {.key = "upstream",
     .type = CT_STR,
     .offset = UG(upstream),
     .check = check_name,
     .what = "the name of a profile in upstreams:",
     .flags = CMD_POS,
     .pos_offset = UG(upstream_pos)},
    {.key = "retries", .type = CT_UINT, .offset = UG(retries), .min = 0, .max = CDN_CONF_MAX_PARENTS - 1},
    {.key = "go_direct", .type = CT_BOOL, .offset = UG(go_direct)},
    {.key = "keepalive", .type = CT_BOOL, .offset = UG(keepalive)},
    {.key = "health", .type = CT_MAP, .offset = UG(health), .sub = ugroup_health_cmds},
    {0}};
#undef UG

#define T(f) offsetof(struct cdn_conf_timeouts, f)
static const struct conf_cmd timeout_cmds[] = {
    {.key = "handshake", .type = CT_MSEC, .offset = T(handshake_ms)},
    {.key = "request_header", .type = CT_MSEC, .offset = T(request_header_ms)},
    {.key = "keepalive", .type = CT_MSEC, .offset = T(keepalive_ms)},
    {.key = "body", .type = CT_MSEC, .offset = T(body_ms)},
    {.key = "upstream_connect", .type = CT_MSEC, .offset = T(upstream_connect_ms)},
    {.key = "upstream_response", .type = CT_MSEC, .offset = T(upstream_response_ms)},
    {.key = "upstream_idle", .type = CT_MSEC, .offset = T(upstream_idle_ms)},
    {.key = "drain", .type = CT_MSEC, .offset = T(drain_ms)},
    {0}};
#undef T

#define LIM(f) offsetof(struct cdn_conf_limits, f)
static const struct conf_cmd limit_cmds[] = {
    {.key = "max_header_size",
     .type = CT_SIZE,
     .offset = LIM(max_header_size),
     .min = 1024,
     .max = 1024 * 1024},
    {.key = "max_headers", .type = CT_U64, .offset = LIM(max_headers), .min = 1, .max = 256},
    {0}};
#undef LIM

#define LOG(f) offsetof(struct cdn_conf_log, f)
static const struct conf_cmd log_cmds[] = {
    {.key = "error", .type = CT_PATH, .offset = LOG(error), .flags = CMD_DASH},
    {.key = "access", .type = CT_PATH, .offset = LOG(access), .flags = CMD_DASH},
    {.key = "access_format",
     .type = CT_STR,
     .offset = LOG(access_format),
     .check = check_alog,
     .what = "text with known $variables (docs/CONFIG.md, log.access_format); $$ for a dollar sign"},
    {.key = "level", .type = CT_ENUM, .offset = LOG(level), .enums = log_level_enums},
    {.key = "tls_failures", .type = CT_PATH, .offset = LOG(tls_failures), .flags = CMD_DASH},
    {0}};
#undef LOG

#define C(f)  offsetof(struct cdn_conf, f)
#define CA(f) offsetof(struct cdn_conf_cache, f)
static const struct conf_cmd cache_cmds[] = {
    {.key = "path", .type = CT_PATH, .offset = CA(path), .flags = CMD_REQUIRED},
    {.key = "size", .type = CT_SIZE, .offset = CA(size), .min = 1024 * 1024, .max = 1ull << 44},
    {.key = "max_object_size", .type = CT_SIZE, .offset = CA(max_object_size), .min = 1, .max = 1ull << 40},
    {.key = "name",
     .type = CT_STR,
     .offset = CA(name),
     .check = check_token,
     .what = "a token (letters, digits and !#$%&'*+-.^_`|~, at most 64)"},
    {.key = "ignore_query", .type = CT_BOOL, .offset = CA(ignore_query)},
    {.key = "ignore_params",
     .type = CT_CUSTOM,
     .handler = set_ignore_params,
     .what = "a sequence of query parameter names"},
    {0}};
#undef CA

#define ID(f) offsetof(struct cdn_conf_identity, f)
#define HEADER_NAME(k, f)                                                                                  \
    {                                                                                                      \
        .key = k, .type = CT_STR, .offset = ID(f), .check = check_token, .what = "a header name (a token)" \
    }
static const struct conf_cmd identity_cmds[] = {
    {.key = "client_cert_chain", .type = CT_BOOL, .offset = ID(client_cert_chain)},
    {.key = "headers", .type = CT_BOOL, .offset = ID(headers)},
    HEADER_NAME("subject_header", subject_header),
    HEADER_NAME("issuer_header", issuer_header),
    HEADER_NAME("sans_header", sans_header),
    HEADER_NAME("fingerprint_header", fingerprint_header),
    HEADER_NAME("status_header", status_header),
    {0}};
#undef HEADER_NAME
#undef ID

#define AD(f) offsetof(struct cdn_conf_admin, f)
static const struct conf_cmd admin_cmds[] = {
    {.key = "address",
     .type = CT_STR,
     .offset = AD(address),
     .check = check_ip,
     .what = "an IPv4 or IPv6 address literal (no brackets, no host name)"},
    {.key = "port", .type = CT_INT, .offset = AD(port), .flags = CMD_REQUIRED, .min = 0, .max = 65535},
    {.key = "tls", .type = CT_BOOL, .offset = AD(tls)},
    {.key = "certificate", .type = CT_PATH, .offset = AD(certificate)},
    {.key = "key", .type = CT_PATH, .offset = AD(key)},
    {.key = "ca_file", .type = CT_PATH, .offset = AD(ca_file)},
    {.key = "client_auth", .type = CT_ENUM, .offset = AD(client_auth), .enums = client_auth_enums},
    {0}};
#undef AD

/* ---- tunnel: (CONNECT tunnels; docs/TUNNELS.md) ---- */

static conf_handler set_tunnel_listeners, set_tunnel_routes, set_connect_ports;

#define TR(f) offsetof(struct cdn_conf_tunnel_route, f)
static const struct conf_cmd tunnel_route_cmds[] = {{.key = "match",
                                                     .type = CT_STR,
                                                     .offset = TR(match),
                                                     .flags = CMD_REQUIRED | CMD_POS,
                                                     .pos_offset = TR(match_pos)},
                                                    {.key = "peer",
                                                     .type = CT_STR,
                                                     .offset = TR(peer),
                                                     .flags = CMD_REQUIRED,
                                                     .check = check_hostport,
                                                     .what = "host:port (an IPv6 address as [::1]:443)"},
                                                    {0}};
#undef TR

#define TU(f) offsetof(struct cdn_conf_tunnel, f)
static const struct conf_cmd tunnel_cmds[] = {
    {.key = "listeners",
     .type = CT_CUSTOM,
     .handler = set_tunnel_listeners,
     .flags = CMD_POS,
     .pos_offset = TU(listeners_pos),
     .what = "a sequence of listener names"},
    {.key = "routes",
     .type = CT_CUSTOM,
     .handler = set_tunnel_routes,
     .sub = tunnel_route_cmds,
     .flags = CMD_SEQ | CMD_POS,
     .pos_offset = TU(routes_pos),
     .what = "a sequence of {match: REGEX, peer: host:port} maps"},
    {.key = "connect_ports",
     .type = CT_CUSTOM,
     .handler = set_connect_ports,
     .what = "a non-empty sequence of ports 1..65535"},
    {.key = "idle_timeout", .type = CT_MSEC, .offset = TU(idle_timeout_ms)},
    {0}};
#undef TU

static const struct conf_cmd top_cmds[] = {
    {.key = "role",
     .type = CT_CUSTOM,
     .handler = set_role,
     .what = "one of edge, regional",
     .flags = CMD_POS,
     .pos_offset = C(role_pos)},
    {.key = "workers", .type = CT_UINT, .offset = C(workers), .min = 0, .max = 256},
    {.key = "via",
     .type = CT_STR,
     .offset = C(via),
     .check = check_token,
     .what = "a token (letters, digits and !#$%&'*+-.^_`|~, at most 64)"},
    {.key = "listeners",
     .type = CT_CUSTOM,
     .handler = set_listeners,
     .sub = listener_cmds,
     .flags = CMD_REQUIRED | CMD_SEQ,
     .what = "a sequence of listener maps"},
    {.key = "sni",
     .type = CT_CUSTOM,
     .handler = set_sni,
     .sub = sni_cmds,
     .flags = CMD_SEQ,
     .what = "a sequence of SNI rule maps"},
    {.key = "host_sni_policy", .type = CT_ENUM, .offset = C(host_sni_policy), .enums = host_sni_policy_enums},
    {.key = "watch_files", .type = CT_BOOL, .offset = C(watch_files)},
    {.key = "watch_interval", .type = CT_MSEC, .offset = C(watch_interval_ms), .min = 100, .max = 3600000},
    {.key = "user",
     .type = CT_STR,
     .offset = C(user),
     .check = check_name,
     .what = "a user name",
     .flags = CMD_POS,
     .pos_offset = C(user_pos)},
    {.key = "group", .type = CT_STR, .offset = C(group), .check = check_name, .what = "a group name"},
    {.key = "sni_yaml",
     .type = CT_PATH,
     .offset = C(sni_yaml),
     .flags = CMD_POS,
     .pos_offset = C(sni_yaml_pos)},
    {.key = "identity", .type = CT_MAP, .offset = C(identity), .sub = identity_cmds},
    {.key = "remap",
     .type = CT_CUSTOM,
     .handler = set_remap,
     .what = "a sequence of \"map FROM TO\" strings"},
    {.key = "upstream",
     .type = CT_MAP,
     .offset = C(upstream),
     .sub = upstream_cmds,
     .post = upstream_post,
     .flags = CMD_POS,
     .pos_offset = C(upstream.pos)},
    {.key = "upstreams",
     .type = CT_CUSTOM,
     .handler = set_upstreams,
     .sub = upstream_profile_cmds,
     .flags = CMD_SEQ,
     .what = "a sequence of upstream profile maps"},
    {.key = "upstream_groups",
     .type = CT_CUSTOM,
     .handler = set_ugroups,
     .sub = ugroup_cmds,
     .flags = CMD_SEQ,
     .what = "a sequence of upstream group maps"},
    {.key = "timeouts", .type = CT_MAP, .offset = C(timeouts), .sub = timeout_cmds},
    {.key = "limits", .type = CT_MAP, .offset = C(limits), .sub = limit_cmds},
    {.key = "log", .type = CT_MAP, .offset = C(log), .sub = log_cmds},
    {.key = "admin",
     .type = CT_MAP,
     .offset = C(admin),
     .sub = admin_cmds,
     .post = admin_post,
     .flags = CMD_POS,
     .pos_offset = C(admin.pos)},
    {.key = "cache",
     .type = CT_MAP,
     .offset = C(cache),
     .sub = cache_cmds,
     .flags = CMD_POS,
     .pos_offset = C(cache.pos)},
    {.key = "tunnel",
     .type = CT_MAP,
     .offset = C(tunnel),
     .sub = tunnel_cmds,
     .flags = CMD_POS,
     .pos_offset = C(tunnel.pos)},
    {0}};
#undef C

/* ---- messages ---- */

__attribute__((format(printf, 1, 0))) static char *vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    CDN_ASSERT(n >= 0);
    char *s = cdn_xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

/* Appends one "file:line:col: key: message" line; key may be NULL (syntax errors). */
/* Records one "file:line:col: key: message" line; key may be NULL (syntax errors). */
__attribute__((format(printf, 4, 5))) static void conf_err(struct loader *ld, struct cdn_conf_pos pos,
                                                           const char *key, const char *fmt, ...)
{
    if (ld->nerr++ >= CONF_MAX_ERRORS)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *msg = vformat(fmt, ap);
    va_end(ap);
    struct conf_msg *m = &ld->msgs[ld->nerr - 1];
    m->pos = pos;
    if (pos.line > 0)
        m->line = cdn_xasprintf("%s:%d:%d: %s%s%s", ld->file, pos.line, pos.col, key ? key : "",
                                key ? ": " : "", msg);
    else
        m->line = cdn_xasprintf("%s: %s%s%s", ld->file, key ? key : "", key ? ": " : "", msg);
    free(msg);
}

/* Joins the recorded problems into ld->err in file order: checks that span several keys run after the
 * keys themselves, and the reader should not have to sort that out. Insertion sort keeps equal positions
 * in the order they were found. */
static void conf_err_finish(struct loader *ld)
{
    size_t n = ld->nerr < CONF_MAX_ERRORS ? ld->nerr : CONF_MAX_ERRORS;
    for (size_t i = 1; i < n; i++) {
        struct conf_msg m = ld->msgs[i];
        size_t j = i;
        while (j > 0 && (ld->msgs[j - 1].pos.line > m.pos.line ||
                         (ld->msgs[j - 1].pos.line == m.pos.line && ld->msgs[j - 1].pos.col > m.pos.col))) {
            ld->msgs[j] = ld->msgs[j - 1];
            j--;
        }
        ld->msgs[j] = m;
    }
    for (size_t i = 0; i < n; i++) {
        cdn_strappendf(&ld->err, "%s", ld->msgs[i].line);
        free(ld->msgs[i].line);
    }
    if (ld->nerr > CONF_MAX_ERRORS)
        cdn_strappendf(&ld->err, "%s: too many errors, stopped reporting after %d", ld->file,
                       CONF_MAX_ERRORS);
    ld->nerr = 0;
}

/* Copies at most CONF_SHOW_MAX bytes of s into out (size >= 4 * CONF_SHOW_MAX + 8), escaping what a
 * terminal should not see, so that a hostile value cannot forge extra lines in the error text. */
static void show_bytes(char *out, const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && i < CONF_SHOW_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            o += (size_t)sprintf(out + o, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            o += (size_t)sprintf(out + o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    if (len > CONF_SHOW_MAX)
        o += (size_t)sprintf(out + o, "...");
    out[o] = '\0';
}

struct shown {
    char s[4 * CONF_SHOW_MAX + 16];
};

static bool is_null(const struct node *n)
{
    if (n->kind != NODE_SCALAR || !n->plain)
        return false;
    return n->len == 0 || strcmp(n->str, "~") == 0 || strcmp(n->str, "null") == 0 ||
           strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0;
}

/* What a node is, for "got ..." in messages. */
static const char *describe(const struct node *n, struct shown *buf)
{
    if (n->kind == NODE_MAP)
        return "a map";
    if (n->kind == NODE_SEQ)
        return "a sequence";
    if (n->kind == NODE_BAD)
        return "an alias";
    if (is_null(n))
        return "an empty value";
    char tmp[4 * CONF_SHOW_MAX + 8];
    show_bytes(tmp, n->str, n->len);
    snprintf(buf->s, sizeof(buf->s), "\"%s\"", tmp);
    return buf->s;
}

static struct cdn_conf_pos mark_pos(yaml_mark_t m)
{
    struct cdn_conf_pos p = {(int)m.line + 1, (int)m.column + 1};
    return p;
}

/* ---- the tree ---- */

static struct node *node_new(enum node_kind kind, yaml_mark_t mark)
{
    struct node *n = cdn_xcalloc(1, sizeof(*n));
    n->kind = kind;
    n->pos = mark_pos(mark);
    return n;
}

/* Recursion is bounded by CONF_MAX_DEPTH, enforced while the tree is built. */
static void node_free(struct node *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->nitems; i++)
        node_free(n->items[i]);
    free(n->items);
    free(n->str);
    free(n);
}

static void node_add(struct node *parent, struct node *child)
{
    if (parent->nitems == parent->cap) {
        parent->cap = parent->cap ? parent->cap * 2 : 8;
        parent->items = cdn_xrealloc(parent->items, parent->cap * sizeof(*parent->items));
    }
    parent->items[parent->nitems++] = child;
}

static void syntax_error(struct loader *ld, const yaml_parser_t *p, const char *buf, size_t len)
{
    const char *problem = p->problem ? p->problem : "out of memory";
    struct cdn_conf_pos pos;
    if (p->error == YAML_READER_ERROR) {
        /* The reader reports a byte offset, not a mark. */
        pos.line = 1;
        pos.col = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) {
            if (buf[i] == '\n') {
                pos.line++;
                pos.col = 1;
            } else {
                pos.col++;
            }
        }
        conf_err(ld, pos, NULL, "invalid input: %s", problem);
        return;
    }
    pos = mark_pos(p->problem_mark);
    if (p->context != NULL)
        conf_err(ld, pos, NULL, "YAML syntax error: %s (%s at %d:%d)", problem, p->context,
                 (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
    else
        conf_err(ld, pos, NULL, "YAML syntax error: %s", problem);
}

/* Builds the tree of the single document in buf. Returns 0 (*root may be NULL for an empty file), or -1
 * after reporting a problem that makes the rest of the file meaningless. Aliases are reported, replaced
 * by NODE_BAD, and parsing goes on. */
static int parse_tree(struct loader *ld, const char *buf, size_t len, struct node **root)
{
    yaml_parser_t parser;
    struct node *stack[CONF_MAX_DEPTH];
    size_t depth = 0;
    int ndocs = 0, ret = -1;

    *root = NULL;
    if (!yaml_parser_initialize(&parser))
        cdn_panic(__FILE__, __LINE__, __func__, "out of memory (yaml_parser_initialize)");
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    for (;;) {
        yaml_event_t ev;
        struct node *n = NULL;
        bool open = false, stop = false;

        if (!yaml_parser_parse(&parser, &ev)) {
            syntax_error(ld, &parser, buf, len);
            goto out;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            ret = 0;
            stop = true;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++ndocs > 1) {
                conf_err(ld, mark_pos(ev.start_mark), NULL, "only one YAML document is allowed per file");
                stop = true;
            }
            break;
        case YAML_SCALAR_EVENT:
            n = node_new(NODE_SCALAR, ev.start_mark);
            n->str = cdn_xstrndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
            n->len = ev.data.scalar.length;
            n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            break;
        case YAML_ALIAS_EVENT: {
            struct shown sh;
            const char *a = (const char *)ev.data.alias.anchor;
            show_bytes(sh.s, a, strlen(a));
            conf_err(ld, mark_pos(ev.start_mark), NULL, "aliases (*%s) are not supported; repeat the value",
                     sh.s);
            n = node_new(NODE_BAD, ev.start_mark);
            break;
        }
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            n = node_new(ev.type == YAML_MAPPING_START_EVENT ? NODE_MAP : NODE_SEQ, ev.start_mark);
            open = true;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0)
                depth--;
            break;
        default:
            break;
        }
        if (n != NULL) {
            if (depth > 0)
                node_add(stack[depth - 1], n);
            else if (*root == NULL)
                *root = n;
            else
                node_free(n); /* cannot happen with one document; never trust that blindly */
            if (open) {
                if (depth == CONF_MAX_DEPTH) {
                    conf_err(ld, n->pos, NULL, "nested deeper than %d levels", CONF_MAX_DEPTH);
                    stop = true;
                } else {
                    stack[depth++] = n;
                }
            }
        }
        yaml_event_delete(&ev);
        if (stop)
            break;
    }
out:
    yaml_parser_delete(&parser);
    if (ret != 0) {
        node_free(*root);
        *root = NULL;
    }
    return ret;
}

/* ---- value checks ---- */

static bool is_tchar(unsigned char c)
{
    return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool check_token(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CONF_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!is_tchar((unsigned char)s[i]))
            return false;
    }
    return true;
}

static bool check_alog(const char *s)
{
    struct cdn_alog *a = NULL;
    char *err = NULL;
    int rc = cdn_alog_compile(s, &a, &err);
    cdn_alog_free(&a);
    free(err);
    return rc == 0;
}

static bool check_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CONF_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

/* A parent's label: it ends up in stats labels and log lines, so a small alphabet. */
static bool check_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CONF_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && strchr(".:_-[]", c) == NULL)
            return false;
    }
    return true;
}

/* A request target for a health check: it goes on the request line as is. */
static bool check_abs_path(const char *s)
{
    if (s[0] != '/' || strlen(s) > 1024)
        return false;
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    }
    return true;
}

static bool check_ip(const char *s)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1;
}

/* A DNS name (letters, digits, '-', '_', '.') or an IPv4 literal: both use the same characters. */
static bool check_dns_name(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '-' && c != '_')
            return false;
    }
    return true;
}

static bool check_hostname(const char *s)
{
    return check_dns_name(s, strlen(s));
}

/* An SNI rule's fqdn: '' (no SNI), a DNS name, or "*." and a DNS name (the left-most label only). */
static bool check_fqdn(const char *s)
{
    if (s[0] == '\0')
        return true;
    if (s[0] == '*' && s[1] == '.')
        s += 2;
    size_t n = strlen(s);
    return check_dns_name(s, n) && s[0] != '.' && s[n - 1] != '.' && strstr(s, "..") == NULL;
}

static bool check_san(const char *s)
{
    return cdn_pin_valid_san(s);
}

static bool check_fingerprint(const char *s)
{
    unsigned char fp[CDN_PIN_SHA256_LEN];
    return cdn_pin_parse_fingerprint(s, fp) == 0;
}

static bool check_hostport(const char *s)
{
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        char v6[64];
        unsigned char addr[16];
        if (end == NULL || (size_t)(end - s - 1) >= sizeof(v6))
            return false;
        memcpy(v6, s + 1, (size_t)(end - s - 1));
        v6[end - s - 1] = '\0';
        if (inet_pton(AF_INET6, v6, addr) != 1 || end[1] != ':')
            return false;
        colon = end + 1;
    } else {
        colon = strchr(s, ':');
        if (colon == NULL || !check_dns_name(s, (size_t)(colon - s)))
            return false;
    }
    const char *p = colon + 1;
    unsigned port = 0;
    if (*p == '\0')
        return false;
    for (; *p != '\0'; p++) {
        if (!isdigit((unsigned char)*p) || (port = port * 10 + (unsigned)(*p - '0')) > 65535)
            return false;
    }
    return port > 0;
}

static bool parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!isdigit((unsigned char)*s))
        return false;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return *s == '\0';
}

/* YAML 1.1 and 1.2 spellings, any case. */
static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static void format_size(char *out, size_t size, uint64_t v)
{
    if (v >= 1024 * 1024 && v % (1024 * 1024) == 0)
        snprintf(out, size, "%lluMiB", (unsigned long long)(v / (1024 * 1024)));
    else if (v >= 1024 && v % 1024 == 0)
        snprintf(out, size, "%lluKiB", (unsigned long long)(v / 1024));
    else
        snprintf(out, size, "%llu", (unsigned long long)v);
}

/* The "expected ..." half of a message, the same whether the value had the wrong shape or a bad text. */
static const char *expect(const struct conf_cmd *cmd, char *buf, size_t size)
{
    char lo[32], hi[32];
    size_t o = 0;
    switch (cmd->type) {
    case CT_BOOL:
        return "a boolean (true/false, yes/no, on/off)";
    case CT_INT:
    case CT_UINT:
    case CT_U64:
        snprintf(buf, size, "an integer %llu..%llu", (unsigned long long)cmd->min,
                 (unsigned long long)cmd->max);
        return buf;
    case CT_SIZE:
        format_size(lo, sizeof(lo), cmd->min);
        format_size(hi, sizeof(hi), cmd->max);
        snprintf(buf, size, "a size %s..%s (bytes, or with KiB/MiB)", lo, hi);
        return buf;
    case CT_MSEC:
        return "a duration > 0 such as 250ms, 10s or 2m";
    case CT_ENUM:
        o = (size_t)snprintf(buf, size, "one of");
        for (const struct conf_enum *e = cmd->enums; e->name != NULL && o < size; e++)
            o += (size_t)snprintf(buf + o, size - o, "%s %s", e == cmd->enums ? "" : ",", e->name);
        return buf;
    case CT_MAP:
        return "a map";
    case CT_PATH:
        return (cmd->flags & CMD_DASH) ? "a file path or \"-\"" : "a file path";
    case CT_STR:
    case CT_LIST:
    case CT_CUSTOM:
        break;
    }
    return cmd->what ? cmd->what : "a string";
}

/* ---- the walker ---- */

static char *resolve_path(const struct loader *ld, const char *p)
{
    const char *slash = strrchr(ld->file, '/');
    if (p[0] == '/' || slash == NULL)
        return cdn_xstrdup(p);
    if (slash == ld->file)
        return cdn_xasprintf("/%s", p);
    return cdn_xasprintf("%.*s/%s", (int)(slash - ld->file), ld->file, p);
}

static char *key_join(const char *path, const struct node *k)
{
    struct shown sh;
    show_bytes(sh.s, k->str, k->len);
    return path[0] != '\0' ? cdn_xasprintf("%s.%s", path, sh.s) : cdn_xstrdup(sh.s);
}

/* Errors about one key of the map at path; the key need not be present. */
static void sub_err(struct loader *ld, struct cdn_conf_pos pos, const char *path, const char *sub,
                    const char *msg)
{
    char *key = cdn_xasprintf("%s.%s", path, sub);
    conf_err(ld, pos, key, "%s", msg);
    free(key);
}

static void walk_map(struct loader *ld, const struct node *map, const char *path, const struct conf_cmd *cmds,
                     void *base, const struct node **seen);

/* A sequence of non-empty strings, each passing cmd->check; every bad element is reported. */
static void set_list(struct loader *ld, const struct conf_cmd *cmd, const struct node *v, const char *key,
                     struct cdn_conf_strlist *out)
{
    struct shown sh;
    if (v->kind != NODE_SEQ) {
        conf_err(ld, v->pos, key, "expected a sequence, each %s; got %s", cmd->what, describe(v, &sh));
        return;
    }
    out->v = cdn_xcalloc(v->nitems ? v->nitems : 1, sizeof(char *));
    for (size_t i = 0; i < v->nitems; i++) {
        const struct node *e = v->items[i];
        if (e->kind == NODE_BAD)
            continue;
        if (e->kind != NODE_SCALAR || is_null(e) || memchr(e->str, '\0', e->len) != NULL ||
            (cmd->check != NULL && !cmd->check(e->str))) {
            char *ikey = cdn_xasprintf("%s[%zu]", key, i);
            conf_err(ld, e->pos, ikey, "expected %s, got %s", cmd->what, describe(e, &sh));
            free(ikey);
            continue;
        }
        out->v[out->n++] = cdn_xstrdup(e->str);
    }
}

static void strlist_free(struct cdn_conf_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void set_value(struct loader *ld, const struct conf_cmd *cmd, const struct node *v, const char *key,
                      void *base)
{
    char *field = (char *)base + cmd->offset, ebuf[160];
    struct shown sh;
    uint64_t u = 0;
    bool b;

    if (cmd->flags & CMD_POS)
        *(struct cdn_conf_pos *)((char *)base + cmd->pos_offset) = v->pos;
    if (cmd->type == CT_CUSTOM) {
        cmd->handler(ld, cmd, v, key, base);
        return;
    }
    if (cmd->type == CT_MAP) {
        const struct node *seen[CONF_MAX_CMDS] = {0};
        if (v->kind != NODE_MAP) {
            conf_err(ld, v->pos, key, "expected a map, got %s", describe(v, &sh));
            return;
        }
        walk_map(ld, v, key, cmd->sub, field, seen);
        if (cmd->post != NULL)
            cmd->post(ld, v, key, field, seen);
        return;
    }
    if (cmd->type == CT_LIST) {
        set_list(ld, cmd, v, key, (struct cdn_conf_strlist *)(void *)field);
        return;
    }
    if (v->kind != NODE_SCALAR || memchr(v->str, '\0', v->len) != NULL)
        goto bad;

    switch (cmd->type) {
    case CT_STR:
        if (cmd->check != NULL && !cmd->check(v->str))
            goto bad;
        *(char **)field = cdn_xstrdup(v->str);
        break;
    case CT_PATH:
        if (v->len == 0)
            goto bad;
        if ((cmd->flags & CMD_DASH) && strcmp(v->str, "-") == 0)
            *(char **)field = cdn_xstrdup(v->str);
        else
            *(char **)field = resolve_path(ld, v->str);
        break;
    case CT_BOOL:
        if (parse_bool(v->str, &b) != 0)
            goto bad;
        *(bool *)field = b;
        break;
    case CT_INT:
    case CT_UINT:
    case CT_U64:
        if (!parse_uint(v->str, &u) || u < cmd->min || u > cmd->max)
            goto bad;
        if (cmd->type == CT_INT)
            *(int *)field = (int)u;
        else if (cmd->type == CT_UINT)
            *(unsigned *)field = (unsigned)u;
        else
            *(uint64_t *)field = u;
        break;
    case CT_ENUM: {
        const struct conf_enum *e = cmd->enums;
        while (e->name != NULL && strcmp(e->name, v->str) != 0)
            e++;
        if (e->name == NULL)
            goto bad;
        *(int *)field = e->value;
        break;
    }
    case CT_MSEC:
        if (cdn_parse_duration_ms(v->str, &u) != 0 || u == 0)
            goto bad;
        *(uint64_t *)field = u;
        break;
    case CT_SIZE:
        if (cdn_parse_size(v->str, &u) != 0 || u < cmd->min || u > cmd->max)
            goto bad;
        *(uint64_t *)field = u;
        break;
    case CT_MAP:
    case CT_LIST:
    case CT_CUSTOM:
        break;
    }
    return;
bad:
    if (v->kind == NODE_SCALAR && memchr(v->str, '\0', v->len) != NULL)
        conf_err(ld, v->pos, key, "expected %s, got a value with a NUL byte",
                 expect(cmd, ebuf, sizeof(ebuf)));
    else
        conf_err(ld, v->pos, key, "expected %s, got %s", expect(cmd, ebuf, sizeof(ebuf)), describe(v, &sh));
}

/* Applies every key of map through cmds. seen[i] receives the value node of cmds[i] (NULL when absent or
 * null) for post hooks. A null value leaves the default in place. */
static void walk_map(struct loader *ld, const struct node *map, const char *path, const struct conf_cmd *cmds,
                     void *base, const struct node **seen)
{
    struct cdn_conf_pos first[CONF_MAX_CMDS] = {0};
    size_t ncmds = 0;

    while (cmds[ncmds].key != NULL)
        ncmds++;
    CDN_ASSERT(ncmds <= CONF_MAX_CMDS);
    for (size_t i = 0; i + 1 < map->nitems; i += 2) {
        const struct node *k = map->items[i], *v = map->items[i + 1];
        struct shown sh;
        char *key;
        size_t c;

        if (k->kind == NODE_BAD)
            continue;
        if (k->kind != NODE_SCALAR) {
            conf_err(ld, k->pos, path[0] ? path : NULL, "keys must be plain strings, got %s",
                     describe(k, &sh));
            continue;
        }
        key = key_join(path, k);
        for (c = 0; c < ncmds; c++) {
            if (strlen(cmds[c].key) == k->len && memcmp(cmds[c].key, k->str, k->len) == 0)
                break;
        }
        if (c == ncmds) {
            conf_err(ld, k->pos, key, "unknown key");
        } else if (first[c].line != 0) {
            conf_err(ld, k->pos, key, "duplicate key (first at %d:%d)", first[c].line, first[c].col);
        } else {
            first[c] = k->pos;
            if (is_null(v) && (cmds[c].flags & CMD_NULL)) {
                set_value(ld, &cmds[c], v, key, base);
            } else if (is_null(v)) {
                if (cmds[c].flags & CMD_REQUIRED)
                    conf_err(ld, v->pos, key, "a value is required");
            } else if (v->kind != NODE_BAD) {
                seen[c] = v;
                set_value(ld, &cmds[c], v, key, base);
            }
        }
        free(key);
    }
    for (size_t c = 0; c < ncmds; c++) {
        if ((cmds[c].flags & CMD_REQUIRED) && first[c].line == 0) {
            if (path[0] != '\0')
                sub_err(ld, map->pos, path, cmds[c].key, "missing required key");
            else
                conf_err(ld, map->pos, cmds[c].key, "missing required key");
        }
    }
}

static const struct node *seen_get(const struct conf_cmd *cmds, const struct node *const *seen,
                                   const char *key)
{
    for (size_t c = 0; cmds[c].key != NULL; c++) {
        if (strcmp(cmds[c].key, key) == 0)
            return seen[c];
    }
    CDN_ASSERT(!"key not in table");
    return NULL;
}

/* ---- handlers for the keys that are more than one value ---- */

static void set_role(struct loader *ld, const struct conf_cmd *cmd, const struct node *v, const char *key,
                     void *base)
{
    struct cdn_conf *conf = base;
    struct shown sh;
    enum cdn_role_kind r = CDN_ROLE_UNSET;
    if (v->kind == NODE_SCALAR && memchr(v->str, '\0', v->len) == NULL)
        r = cdn_conf_role_parse(v->str);
    if (r == CDN_ROLE_UNSET)
        conf_err(ld, v->pos, key, "expected %s, got %s", cmd->what, describe(v, &sh));
    else
        conf->role = r;
}

static void listener_post(struct loader *ld, const struct node *map, const char *key, void *base,
                          const struct node *const *seen)
{
    struct cdn_conf_listener *l = base;
    static const char *const tls_only[] = {
        "certificate", "key",       "ca_file",     "verify_depth", "send_ca_names",
        "crl_file",    "crl_check", "crl_expired", "allowed_sans", "allowed_fingerprints"};

    if (l->tls) {
        /* A present but invalid value was reported already. */
        if (seen_get(listener_cmds, seen, "certificate") == NULL)
            sub_err(ld, map->pos, key, "certificate", "missing required key (tls is true)");
        if (seen_get(listener_cmds, seen, "key") == NULL)
            sub_err(ld, map->pos, key, "key", "missing required key (tls is true)");
    } else {
        for (size_t i = 0; i < sizeof(tls_only) / sizeof(tls_only[0]); i++) {
            const struct node *v = seen_get(listener_cmds, seen, tls_only[i]);
            if (v != NULL)
                sub_err(ld, v->pos, key, tls_only[i], "only allowed with tls: true");
        }
    }
    if (l->client_auth == CDN_CLIENT_AUTH_REQUEST || l->client_auth == CDN_CLIENT_AUTH_REQUIRE) {
        if (!l->tls)
            sub_err(ld, l->client_auth_pos, key, "client_auth",
                    l->client_auth == CDN_CLIENT_AUTH_REQUIRE ? "require needs tls: true"
                                                              : "request needs tls: true");
        else if (seen_get(listener_cmds, seen, "ca_file") == NULL)
            sub_err(ld, l->client_auth_pos, key, "client_auth",
                    "client certificates need ca_file (the CA that issues them)");
    }
    if (l->client_auth == CDN_CLIENT_AUTH_NONE && l->tls) {
        const struct node *pv = seen_get(listener_cmds, seen, "allowed_sans");
        if (pv == NULL)
            pv = seen_get(listener_cmds, seen, "allowed_fingerprints");
        if (pv != NULL)
            conf_err(ld, pv->pos, key,
                     "allowed_sans/allowed_fingerprints pin client certificates; "
                     "client_auth none asks for none");
    }
}

static void set_listeners(struct loader *ld, const struct conf_cmd *cmd, const struct node *v,
                          const char *key, void *base)
{
    struct cdn_conf *conf = base;
    struct cdn_conf_pos name_pos[CONF_MAX_LISTENERS];
    struct shown sh;

    if (v->kind != NODE_SEQ) {
        conf_err(ld, v->pos, key, "expected %s, got %s", cmd->what, describe(v, &sh));
        return;
    }
    if (v->nitems == 0) {
        conf_err(ld, v->pos, key, "at least one listener is required");
        return;
    }
    if (v->nitems > CONF_MAX_LISTENERS) {
        conf_err(ld, v->pos, key, "too many listeners (%zu, at most %d)", v->nitems, CONF_MAX_LISTENERS);
        return;
    }
    conf->listeners = cdn_xcalloc(v->nitems, sizeof(*conf->listeners));
    conf->nlisteners = v->nitems;
    for (size_t i = 0; i < v->nitems; i++) {
        struct cdn_conf_listener *l = &conf->listeners[i];
        const struct node *e = v->items[i], *seen[CONF_MAX_CMDS] = {0};
        char *ikey = cdn_xasprintf("%s[%zu]", key, i);

        l->client_auth = CDN_CLIENT_AUTH_UNSET;
        l->verify_depth = 4;
        l->send_ca_names = true;
        l->pos = e->pos;
        if (e->kind == NODE_MAP) {
            walk_map(ld, e, ikey, cmd->sub, l, seen);
            listener_post(ld, e, ikey, l, seen);
        } else if (e->kind != NODE_BAD) {
            conf_err(ld, e->pos, ikey, "expected a map, got %s", describe(e, &sh));
        }
        name_pos[i] = l->pos;
        if (l->name == NULL)
            l->name = cdn_xasprintf("listener%zu", i);
        else
            name_pos[i] = seen_get(cmd->sub, seen, "name")->pos;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(conf->listeners[j].name, l->name) == 0) {
                char *nkey = cdn_xasprintf("%s.name", ikey);
                conf_err(ld, name_pos[i], nkey, "duplicate listener name \"%s\" (also %s[%zu] at %d:%d)",
                         l->name, key, j, name_pos[j].line, name_pos[j].col);
                free(nkey);
                break;
            }
        }
        free(ikey);
    }
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Splits s into at most max words in place; returns the word count (max + 1 when there are more). */
static size_t split_words(char *s, char **words, size_t max)
{
    size_t n = 0;
    for (;;) {
        while (is_space(*s))
            s++;
        if (*s == '\0')
            return n;
        if (n == max)
            return n + 1;
        words[n++] = s;
        while (*s != '\0' && !is_space(*s))
            s++;
        if (*s != '\0')
            *s++ = '\0';
    }
}

static void set_ignore_params(struct loader *ld, const struct conf_cmd *cmd, const struct node *v,
                              const char *key, void *base)
{
    struct cdn_conf_cache *cc = base;
    struct shown sh;

    if (v->kind != NODE_SEQ) {
        conf_err(ld, v->pos, key, "expected %s, got %s", cmd->what, describe(v, &sh));
        return;
    }
    cc->ignore_params = cdn_xcalloc(v->nitems, sizeof(char *));
    for (size_t i = 0; i < v->nitems; i++) {
        const struct node *e = v->items[i];
        if (e->kind == NODE_BAD)
            continue;
        if (e->kind != NODE_SCALAR || is_null(e) || e->len == 0 || strpbrk(e->str, "&=#? \t") != NULL ||
            memchr(e->str, '\0', e->len) != NULL) {
            char *ikey = cdn_xasprintf("%s[%zu]", key, i);
            conf_err(ld, e->pos, ikey, "expected a query parameter name, got %s", describe(e, &sh));
            free(ikey);
            continue;
        }
        cc->ignore_params[cc->nignore_params++] = cdn_xstrdup(e->str);
    }
}

static void set_remap(struct loader *ld, const struct conf_cmd *cmd, const struct node *v, const char *key,
                      void *base)
{
    struct cdn_conf *conf = base;
    struct shown sh;

    if (v->kind != NODE_SEQ) {
        conf_err(ld, v->pos, key, "expected %s, got %s", cmd->what, describe(v, &sh));
        return;
    }
    conf->remap = cdn_xcalloc(v->nitems, sizeof(*conf->remap));
    conf->nremap = v->nitems;
    ld->remap_upstream = cdn_xcalloc(v->nitems ? v->nitems : 1, sizeof(char *));
    ld->remap_group = cdn_xcalloc(v->nitems ? v->nitems : 1, sizeof(char *));
    for (size_t i = 0; i < v->nitems; i++) {
        const struct node *e = v->items[i];
        char *ikey = cdn_xasprintf("%s[%zu]", key, i), *copy = NULL, *w[5];
        size_t n;

        conf->remap[i].pos = e->pos;
        if (e->kind == NODE_BAD)
            goto next;
        if (e->kind != NODE_SCALAR || is_null(e) || memchr(e->str, '\0', e->len) != NULL) {
            conf_err(ld, e->pos, ikey, "expected a string \"map FROM TO\", got %s", describe(e, &sh));
            goto next;
        }
        copy = cdn_xstrdup(e->str);
        n = split_words(copy, w, 5);
        char *up = NULL, *grp = NULL;
        bool bad_opt = false;
        for (size_t k = 3; k < n && k < 5 && !bad_opt; k++) {
            if (strncmp(w[k], "@upstream=", 10) == 0 && w[k][10] != '\0' && up == NULL)
                up = w[k] + 10;
            else if (strncmp(w[k], "@group=", 7) == 0 && w[k][7] != '\0' && grp == NULL)
                grp = w[k] + 7;
            else {
                show_bytes(sh.s, w[k], strlen(w[k]));
                conf_err(ld, e->pos, ikey,
                         "unknown option \"%s\" (the options are @upstream=NAME and @group=NAME)", sh.s);
                bad_opt = true;
            }
        }
        if (n >= 1 && strcmp(w[0], "map") != 0) {
            show_bytes(sh.s, w[0], strlen(w[0]));
            conf_err(ld, e->pos, ikey, "unsupported rule type \"%s\" (only \"map\" is supported)", sh.s);
        } else if (bad_opt) {
            /* reported above */
        } else if (n < 3 || n > (up != NULL && grp != NULL ? 5u : 4u)) {
            conf_err(ld, e->pos, ikey, "expected \"map FROM TO [@upstream=NAME | @group=NAME]\", got %s",
                     describe(e, &sh));
        } else if (up != NULL && grp != NULL) {
            /* a group names its own TLS profile (its upstream: key); two sources would be ambiguous */
            conf_err(ld, e->pos, ikey,
                     "give @upstream=NAME or @group=NAME, not both (a group's profile is its upstream: key)");
        } else {
            conf->remap[i].from = cdn_xstrdup(w[1]);
            conf->remap[i].to = cdn_xstrdup(w[2]);
            if (up != NULL)
                ld->remap_upstream[i] = cdn_xstrdup(up);
            if (grp != NULL)
                ld->remap_group[i] = cdn_xstrdup(grp);
        }
    next:
        free(copy);
        free(ikey);
    }
}

#define CONF_MAX_SNI 1024

/* Appends the rules of the sequence v (an sni: list of our config, or of an ATS sni.yaml with its key
 * names) to conf->sni; fqdns are unique over both. */
static void add_sni_rules(struct loader *ld, const struct conf_cmd *cmd, const struct node *v,
                          const char *key, struct cdn_conf *conf, const struct conf_cmd *cmds)
{
    struct shown sh;

    if (v->kind != NODE_SEQ) {
        conf_err(ld, v->pos, key, "expected %s, got %s", cmd->what, describe(v, &sh));
        return;
    }
    if (conf->nsni + v->nitems > CONF_MAX_SNI) {
        conf_err(ld, v->pos, key, "too many rules (%zu, at most %d)", conf->nsni + v->nitems, CONF_MAX_SNI);
        return;
    }
    size_t base = conf->nsni;
    const char *src = ld->file == conf->sni_yaml ? conf->sni_yaml : conf->path; /* owned by conf */
    conf->sni = cdn_xrealloc(conf->sni, (base + v->nitems + 1) * sizeof(*conf->sni));
    memset(conf->sni + base, 0, (v->nitems + 1) * sizeof(*conf->sni));
    conf->nsni = base + v->nitems;
    for (size_t i = 0; i < v->nitems; i++) {
        struct cdn_conf_sni_rule *r = &conf->sni[base + i];
        const struct node *e = v->items[i], *seen[CONF_MAX_CMDS] = {0};
        char *ikey = cdn_xasprintf("%s[%zu]", key, i);

        r->verify_client = CDN_CLIENT_AUTH_UNSET;
        r->pos = e->pos;
        r->src = src;
        if (e->kind == NODE_MAP) {
            walk_map(ld, e, ikey, cmds, r, seen);
            if ((r->certificate == NULL) != (r->key == NULL)) {
                bool ats = cmds == ats_sni_cmds;
                sub_err(ld, e->pos, ikey,
                        r->certificate == NULL ? (ats ? "ssl_cert_name" : "certificate")
                                               : (ats ? "ssl_key_name" : "key"),
                        ats ? "ssl_cert_name and ssl_key_name go together"
                            : "certificate and key go together");
            }
        } else if (e->kind != NODE_BAD) {
            conf_err(ld, e->pos, ikey, "expected a map, got %s", describe(e, &sh));
        }
        if (r->fqdn != NULL) {
            for (char *p = r->fqdn; *p != '\0'; p++)
                *p = (char)tolower((unsigned char)*p);
            for (size_t j = 0; j < base + i; j++) {
                if (conf->sni[j].fqdn != NULL && strcmp(conf->sni[j].fqdn, r->fqdn) == 0) {
                    char *fkey = cdn_xasprintf("%s.fqdn", ikey);
                    if (conf->sni[j].src == src)
                        conf_err(ld, seen_get(cmds, seen, "fqdn")->pos, fkey,
                                 "duplicate fqdn \"%s\" (also %s[%zu] at %d:%d)", r->fqdn, key, j - base,
                                 conf->sni[j].pos.line, conf->sni[j].pos.col);
                    else
                        conf_err(ld, seen_get(cmds, seen, "fqdn")->pos, fkey,
                                 "duplicate fqdn \"%s\" (also at %s:%d:%d)", r->fqdn, conf->sni[j].src,
                                 conf->sni[j].pos.line, conf->sni[j].pos.col);
                    free(fkey);
                    break;
                }
            }
        }
        free(ikey);
    }
}

static void admin_post(struct loader *ld, const struct node *map, const char *key, void *base,
                       const struct node *const *seen)
{
    struct cdn_conf_admin *a = base;
    if (!a->tls) {
        if (a->certificate != NULL || a->key != NULL || a->ca_file != NULL ||
            seen_get(admin_cmds, seen, "client_auth") != NULL)
            sub_err(ld, map->pos, key, "tls", "certificate, key, ca_file and client_auth need tls: true");
        return;
    }
    if (a->certificate == NULL)
        sub_err(ld, map->pos, key, "certificate", "missing required key (tls is true)");
    if (a->key == NULL)
        sub_err(ld, map->pos, key, "key", "missing required key (tls is true)");
    if (a->client_auth == CDN_CLIENT_AUTH_UNSET)
        a->client_auth = CDN_CLIENT_AUTH_REQUIRE; /* the admin can purge and reload: prove who you are */
    if (a->client_auth != CDN_CLIENT_AUTH_NONE && a->ca_file == NULL)
        sub_err(ld, map->pos, key, "ca_file", "missing required key (client_auth is not none)");
}

static void set_sni(struct loader *ld, const struct conf_cmd *cmd, const struct node *v, const char *key,
                    void *base)
{
    add_sni_rules(ld, cmd, v, key, base, cmd->sub);
}

static void set_ats_sni(struct loader *ld, const struct conf_cmd *cmd, const struct node *v, const char *key,
                        void *base)
{
    add_sni_rules(ld, cmd, v, key, base, ats_sni_cmds);
}

static void refuse_ats_key(struct loader *ld, const struct conf_cmd *cmd, const struct node *v,
                           const char *key, void *base)
{
    conf_err(ld, v->pos, key, "ATS sni.yaml key \"%s\" is not supported by cdn-node (see docs/MTLS.md)",
             cmd->key);
}

/* The cross-key rules of an upstream map (upstream: or one upstreams[] profile, per cmds). */
static void upstream_check(struct loader *ld, const struct node *map, const char *key,
                           struct cdn_conf_upstream *u, const struct conf_cmd *cmds,
                           const struct node *const *seen)
{
    if (u->client_certificate != NULL && seen_get(cmds, seen, "client_key") == NULL)
        sub_err(ld, map->pos, key, "client_key", "missing required key (client_certificate is given)");
    if (u->client_key != NULL && seen_get(cmds, seen, "client_certificate") == NULL)
        sub_err(ld, map->pos, key, "client_certificate", "missing required key (client_key is given)");
    const struct node *pv = seen_get(cmds, seen, "verify_server_policy");
    if (pv != NULL && seen_get(cmds, seen, "verify") != NULL)
        sub_err(ld, pv->pos, key, "verify_server_policy",
                "give either verify or verify_server_policy, not both");
    else if (!u->verify)
        u->verify_policy = CDN_VERIFY_DISABLED;
    u->verify = u->verify_policy != CDN_VERIFY_DISABLED;
}

static void set_tunnel_listeners(struct loader *ld, const struct conf_cmd *cmd, const struct node *v,
                                 const char *key, void *base)
{
    struct cdn_conf_tunnel *t = base;
    struct shown sh;

    if (v->kind != NODE_SEQ) {
        conf_err(ld, v->pos, key, "expected %s, got %s", cmd->what, describe(v, &sh));
        return;
    }
    t->listeners = cdn_xcalloc(v->nitems ? v->nitems : 1, sizeof(char *));
    for (size_t i = 0; i < v->nitems; i++) {
        const struct node *e = v->items[i];
        if (e->kind == NODE_BAD)
            continue;
        if (e->kind != NODE_SCALAR || is_null(e) || memchr(e->str, '\0', e->len) != NULL ||
            !check_name(e->str)) {
            char *ikey = cdn_xasprintf("%s[%zu]", key, i);
            conf_err(ld, e->pos, ikey, "expected a listener name, got %s", describe(e, &sh));
            free(ikey);
            continue;
        }
        t->listeners[t->nlisteners++] = cdn_xstrdup(e->str);
    }
}

/* Splits "host:port" (checked by check_hostport) into its parts; IPv6 loses its brackets. */
static void split_hostport(const char *hp, char **host, int *port)
{
    const char *colon = strrchr(hp, ':');
    size_t hl = (size_t)(colon - hp);
    if (hl >= 2 && hp[0] == '[' && hp[hl - 1] == ']') {
        hp++;
        hl -= 2;
    }
    *host = cdn_xstrndup(hp, hl);
    *port = atoi(colon + 1);
}

static void set_tunnel_routes(struct loader *ld, const struct conf_cmd *cmd, const struct node *v,
                              const char *key, void *base)
{
    struct cdn_conf_tunnel *t = base;
    struct shown sh;

    if (v->kind != NODE_SEQ) {
        conf_err(ld, v->pos, key, "expected %s, got %s", cmd->what, describe(v, &sh));
        return;
    }
    t->routes = cdn_xcalloc(v->nitems ? v->nitems : 1, sizeof(*t->routes));
    t->nroutes = v->nitems;
    for (size_t i = 0; i < v->nitems; i++) {
        struct cdn_conf_tunnel_route *r = &t->routes[i];
        const struct node *e = v->items[i], *seen[CONF_MAX_CMDS] = {0};
        char *ikey = cdn_xasprintf("%s[%zu]", key, i);

        r->pos = e->pos;
        if (e->kind == NODE_MAP)
            walk_map(ld, e, ikey, cmd->sub, r, seen);
        else if (e->kind != NODE_BAD)
            conf_err(ld, e->pos, ikey, "expected a map, got %s", describe(e, &sh));
        if (r->match != NULL) {
            /* Anchoring is done at match time (the match must span the whole target), not by wrapping
             * the text in ^(...)$, which a stray ')' in the pattern could escape. */
            int rc = regcomp(&r->re, r->match, REG_EXTENDED | REG_ICASE);
            if (rc != 0) {
                char ebuf[160];
                regerror(rc, &r->re, ebuf, sizeof(ebuf));
                char *mkey = cdn_xasprintf("%s.match", ikey);
                conf_err(ld, r->match_pos, mkey, "bad regular expression: %s", ebuf);
                free(mkey);
            } else {
                r->compiled = true;
            }
        }
        if (r->peer != NULL)
            split_hostport(r->peer, &r->peer_host, &r->peer_port);
        free(ikey);
    }
}

static void set_connect_ports(struct loader *ld, const struct conf_cmd *cmd, const struct node *v,
                              const char *key, void *base)
{
    struct cdn_conf_tunnel *t = base;
    struct shown sh;

    if (v->kind != NODE_SEQ || v->nitems == 0) {
        conf_err(ld, v->pos, key, "expected %s, got %s", cmd->what, describe(v, &sh));
        return;
    }
    t->connect_ports = cdn_xcalloc(v->nitems, sizeof(int));
    for (size_t i = 0; i < v->nitems; i++) {
        const struct node *e = v->items[i];
        uint64_t u = 0;
        if (e->kind == NODE_BAD)
            continue;
        if (e->kind != NODE_SCALAR || memchr(e->str, '\0', e->len) != NULL || !parse_uint(e->str, &u) ||
            u < 1 || u > 65535) {
            char *ikey = cdn_xasprintf("%s[%zu]", key, i);
            conf_err(ld, e->pos, ikey, "expected a port 1..65535, got %s", describe(e, &sh));
            free(ikey);
            continue;
        }
        t->connect_ports[t->nconnect_ports++] = (int)u;
    }
}

/* Rules across keys, once the whole file is read: named listeners exist, and routes have somewhere to
 * be used. Which tier may route and which needs client certificates is the roles' to say. */
static void tunnel_check(struct loader *ld, struct cdn_conf *conf)
{
    struct cdn_conf_tunnel *t = &conf->tunnel;
    if (t->idle_timeout_ms == 0)
        t->idle_timeout_ms = 300000;
    for (size_t i = 0; i < t->nlisteners; i++) {
        size_t j = 0;
        while (j < conf->nlisteners && strcmp(conf->listeners[j].name, t->listeners[i]) != 0)
            j++;
        if (j == conf->nlisteners) {
            char *ikey = cdn_xasprintf("tunnel.listeners[%zu]", i);
            conf_err(ld, t->listeners_pos, ikey, "no listener is named \"%s\"", t->listeners[i]);
            free(ikey);
        }
    }
    if (t->nroutes > 0 && t->nlisteners == 0)
        conf_err(ld, t->routes_pos, "tunnel.routes",
                 "routes need tunnel.listeners (the listeners that accept CONNECT)");
}

static void tunnel_conf_free(struct cdn_conf_tunnel *t)
{
    for (size_t i = 0; i < t->nlisteners; i++)
        free(t->listeners[i]);
    free(t->listeners);
    for (size_t i = 0; i < t->nroutes; i++) {
        struct cdn_conf_tunnel_route *r = &t->routes[i];
        if (r->compiled)
            regfree(&r->re);
        free(r->match);
        free(r->peer);
        free(r->peer_host);
    }
    free(t->routes);
    free(t->connect_ports);
}

bool cdn_conf_tunnel_listener(const struct cdn_conf *conf, const char *name)
{
    for (size_t i = 0; i < conf->tunnel.nlisteners; i++) {
        if (strcmp(conf->tunnel.listeners[i], name) == 0)
            return true;
    }
    return false;
}

bool cdn_conf_tunnel_port_allowed(const struct cdn_conf *conf, int port)
{
    if (conf->tunnel.nconnect_ports == 0)
        return port == 443;
    for (size_t i = 0; i < conf->tunnel.nconnect_ports; i++) {
        if (conf->tunnel.connect_ports[i] == port)
            return true;
    }
    return false;
}

const struct cdn_conf_tunnel_route *cdn_conf_tunnel_route(const struct cdn_conf *conf, const char *target)
{
    size_t len = strlen(target);
    for (size_t i = 0; i < conf->tunnel.nroutes; i++) {
        const struct cdn_conf_tunnel_route *r = &conf->tunnel.routes[i];
        regmatch_t m[1];
        /* POSIX matching is leftmost-longest: a match of the whole target, if any, is the one found */
        if (r->compiled && regexec(&r->re, target, 1, m, 0) == 0 && m[0].rm_so == 0 &&
            (size_t)m[0].rm_eo == len)
            return r;
    }
    return NULL;
}

static void upstream_post(struct loader *ld, const struct node *map, const char *key, void *base,
                          const struct node *const *seen)
{
    upstream_check(ld, map, key, base, upstream_cmds, seen);
}

#define CONF_MAX_UPSTREAMS 256

static void set_upstreams(struct loader *ld, const struct conf_cmd *cmd, const struct node *v,
                          const char *key, void *base)
{
    struct cdn_conf *conf = base;
    struct shown sh;
    if (v->kind != NODE_SEQ) {
        conf_err(ld, v->pos, key, "expected %s, got %s", cmd->what, describe(v, &sh));
        return;
    }
    if (v->nitems > CONF_MAX_UPSTREAMS) {
        conf_err(ld, v->pos, key, "too many profiles (%zu, at most %d)", v->nitems, CONF_MAX_UPSTREAMS);
        return;
    }
    conf->upstreams = cdn_xcalloc(v->nitems ? v->nitems : 1, sizeof(*conf->upstreams));
    conf->nupstreams = v->nitems;
    for (size_t i = 0; i < v->nitems; i++) {
        struct cdn_conf_upstream *u = &conf->upstreams[i];
        const struct node *e = v->items[i], *seen[CONF_MAX_CMDS] = {0};
        char *ikey = cdn_xasprintf("%s[%zu]", key, i);
        u->verify = true;
        u->pos = e->pos;
        if (e->kind == NODE_MAP) {
            walk_map(ld, e, ikey, cmd->sub, u, seen);
            upstream_check(ld, e, ikey, u, cmd->sub, seen);
        } else if (e->kind != NODE_BAD) {
            conf_err(ld, e->pos, ikey, "expected a map, got %s", describe(e, &sh));
        }
        for (size_t j = 0; u->name != NULL && j < i; j++) {
            if (conf->upstreams[j].name != NULL && strcmp(conf->upstreams[j].name, u->name) == 0) {
                char *nkey = cdn_xasprintf("%s.name", ikey);
                conf_err(ld, seen_get(cmd->sub, seen, "name")->pos, nkey,
                         "duplicate upstream name \"%s\" (also %s[%zu] at %d:%d)", u->name, key, j,
                         conf->upstreams[j].pos.line, conf->upstreams[j].pos.col);
                free(nkey);
                break;
            }
        }
        free(ikey);
    }
}

#define CONF_MAX_UGROUPS 64

static void set_parents(struct loader *ld, const struct conf_cmd *cmd, const struct node *v, const char *key,
                        void *base)
{
    struct cdn_conf_ugroup *g = base;
    struct shown sh;
    if (v->kind != NODE_SEQ || v->nitems == 0) {
        conf_err(ld, v->pos, key, "expected %s (at least one), got %s", cmd->what, describe(v, &sh));
        return;
    }
    if (v->nitems > CDN_CONF_MAX_PARENTS) {
        conf_err(ld, v->pos, key, "too many parents (%zu, at most %d)", v->nitems, CDN_CONF_MAX_PARENTS);
        return;
    }
    g->parents = cdn_xcalloc(v->nitems, sizeof(*g->parents));
    g->nparents = v->nitems;
    for (size_t i = 0; i < v->nitems; i++) {
        struct cdn_conf_parent *p = &g->parents[i];
        const struct node *e = v->items[i], *seen[CONF_MAX_CMDS] = {0};
        char *ikey = cdn_xasprintf("%s[%zu]", key, i);
        p->weight = 1;
        p->pos = e->pos;
        if (e->kind == NODE_MAP)
            walk_map(ld, e, ikey, cmd->sub, p, seen);
        else if (e->kind != NODE_BAD)
            conf_err(ld, e->pos, ikey, "expected a map, got %s", describe(e, &sh));
        if (p->name == NULL && p->address != NULL)
            p->name = cdn_xstrdup(p->address);
        for (size_t j = 0; p->name != NULL && j < i; j++) {
            if (g->parents[j].name != NULL && strcmp(g->parents[j].name, p->name) == 0) {
                /* the name places a parent on the ring and labels its stats: it must be unique */
                conf_err(ld, e->pos, ikey, "duplicate parent \"%s\" (also %s[%zu] at %d:%d)", p->name, key, j,
                         g->parents[j].pos.line, g->parents[j].pos.col);
                break;
            }
        }
        free(ikey);
    }
}

static void set_ugroups(struct loader *ld, const struct conf_cmd *cmd, const struct node *v, const char *key,
                        void *base)
{
    struct cdn_conf *conf = base;
    struct shown sh;
    if (v->kind != NODE_SEQ) {
        conf_err(ld, v->pos, key, "expected %s, got %s", cmd->what, describe(v, &sh));
        return;
    }
    if (v->nitems > CONF_MAX_UGROUPS) {
        conf_err(ld, v->pos, key, "too many groups (%zu, at most %d)", v->nitems, CONF_MAX_UGROUPS);
        return;
    }
    conf->ugroups = cdn_xcalloc(v->nitems ? v->nitems : 1, sizeof(*conf->ugroups));
    conf->nugroups = v->nitems;
    for (size_t i = 0; i < v->nitems; i++) {
        struct cdn_conf_ugroup *g = &conf->ugroups[i];
        const struct node *e = v->items[i], *seen[CONF_MAX_CMDS] = {0};
        char *ikey = cdn_xasprintf("%s[%zu]", key, i);
        g->policy = CDN_UGROUP_CONSISTENT_HASH;
        g->retries = 2;
        g->keepalive = true;
        g->health.fail_threshold = 3;
        g->health.backoff_ms = 10000;
        g->health.check_interval_ms = 5000;
        g->health.check_timeout_ms = 2000;
        g->pos = e->pos;
        if (e->kind == NODE_MAP)
            walk_map(ld, e, ikey, cmd->sub, g, seen);
        else if (e->kind != NODE_BAD)
            conf_err(ld, e->pos, ikey, "expected a map, got %s", describe(e, &sh));
        for (size_t j = 0; g->name != NULL && j < i; j++) {
            if (conf->ugroups[j].name != NULL && strcmp(conf->ugroups[j].name, g->name) == 0) {
                char *nkey = cdn_xasprintf("%s.name", ikey);
                conf_err(ld, seen_get(cmd->sub, seen, "name")->pos, nkey,
                         "duplicate group name \"%s\" (also %s[%zu] at %d:%d)", g->name, key, j,
                         conf->ugroups[j].pos.line, conf->ugroups[j].pos.col);
                free(nkey);
                break;
            }
        }
        free(ikey);
    }
}

/* After the walk: each group's upstream: names a profile, each "@group=NAME" a group. */
static void resolve_groups(struct loader *ld, struct cdn_conf *conf, char **names)
{
    struct shown sh;
    for (size_t i = 0; i < conf->nugroups; i++) {
        struct cdn_conf_ugroup *g = &conf->ugroups[i];
        if (g->upstream == NULL)
            continue;
        size_t j = 0;
        while (j < conf->nupstreams &&
               (conf->upstreams[j].name == NULL || strcmp(conf->upstreams[j].name, g->upstream) != 0))
            j++;
        if (j < conf->nupstreams) {
            g->profile = j + 1;
        } else {
            char *ikey = cdn_xasprintf("upstream_groups[%zu].upstream", i);
            show_bytes(sh.s, g->upstream, strlen(g->upstream));
            conf_err(ld, g->upstream_pos, ikey, "no such profile \"%s\" in upstreams:%s", sh.s,
                     conf->nupstreams == 0 ? " (there is no upstreams: list)" : "");
            free(ikey);
        }
    }
    for (size_t i = 0; names != NULL && i < conf->nremap; i++) {
        if (names[i] == NULL)
            continue;
        size_t j = 0;
        while (j < conf->nugroups &&
               (conf->ugroups[j].name == NULL || strcmp(conf->ugroups[j].name, names[i]) != 0))
            j++;
        if (j < conf->nugroups) {
            conf->remap[i].group = j + 1;
        } else {
            char *ikey = cdn_xasprintf("remap[%zu]", i);
            show_bytes(sh.s, names[i], strlen(names[i]));
            conf_err(ld, conf->remap[i].pos, ikey, "@group=%s: no such group in upstream_groups:%s", sh.s,
                     conf->nugroups == 0 ? " (there is no upstream_groups: list)" : "");
            free(ikey);
        }
    }
}

/* After the walk (upstreams: may follow remap:): every "@upstream=NAME" names a profile. */
static void resolve_remap_upstreams(struct loader *ld, struct cdn_conf *conf, char **names)
{
    for (size_t i = 0; i < conf->nremap; i++) {
        if (names[i] == NULL)
            continue;
        size_t j = 0;
        while (j < conf->nupstreams &&
               (conf->upstreams[j].name == NULL || strcmp(conf->upstreams[j].name, names[i]) != 0))
            j++;
        if (j < conf->nupstreams) {
            conf->remap[i].upstream = j + 1;
        } else {
            char *ikey = cdn_xasprintf("remap[%zu]", i);
            struct shown sh;
            show_bytes(sh.s, names[i], strlen(names[i]));
            conf_err(ld, conf->remap[i].pos, ikey, "@upstream=%s: no such profile in upstreams:%s", sh.s,
                     conf->nupstreams == 0 ? " (there is no upstreams: list)" : "");
            free(ikey);
        }
    }
}

/* ---- loading ---- */

static int read_file(struct loader *ld, char **out, size_t *outlen);

static const struct conf_cmd ats_top_cmds[] = {{.key = "sni",
                                                .type = CT_CUSTOM,
                                                .flags = CMD_REQUIRED,
                                                .what = "a sequence of SNI rule maps",
                                                .handler = set_ats_sni},
                                               {0}};

/* Reads the ATS sni.yaml named by conf->sni_yaml and appends its rules. Its messages carry its own
 * name and positions, and its relative paths are resolved against its own folder (ld->file is swapped
 * for the duration). */
static void load_sni_yaml(struct loader *ld, struct cdn_conf *conf)
{
    const char *main_file = ld->file;
    char *buf = NULL;
    size_t len = 0;
    struct node *root = NULL;
    struct shown sh;

    ld->file = conf->sni_yaml;
    if (read_file(ld, &buf, &len) != 0) {
        /* read_file wrote into ld->err; make it a positioned message of the main file instead */
        char *why = ld->err;
        ld->err = NULL;
        ld->file = main_file;
        conf_err(ld, conf->sni_yaml_pos, "sni_yaml", "%s", why);
        free(why);
        return;
    }
    if (parse_tree(ld, buf, len, &root) == 0) {
        if (root == NULL || is_null(root) || root->kind != NODE_MAP) {
            struct cdn_conf_pos pos = {1, 1};
            conf_err(ld, root != NULL ? root->pos : pos, NULL,
                     "an ATS sni.yaml is a map with an \"sni\" sequence, got %s",
                     root != NULL ? describe(root, &sh) : "an empty file");
        } else {
            const struct node *seen[CONF_MAX_CMDS] = {0};
            walk_map(ld, root, "", ats_top_cmds, conf, seen);
        }
    }
    node_free(root);
    free(buf);
    ld->file = main_file;
}

static int read_file(struct loader *ld, char **out, size_t *outlen)
{
    FILE *f = fopen(ld->file, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int ret = -1;

    if (f == NULL) {
        cdn_strappendf(&ld->err, "%s: cannot open: %s", ld->file, strerror(errno));
        goto out;
    }
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            buf = cdn_xrealloc(buf, cap + 1);
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len > CONF_MAX_FILE_SIZE) {
            cdn_strappendf(&ld->err, "%s: cannot load: larger than %u bytes", ld->file, CONF_MAX_FILE_SIZE);
            goto out;
        }
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        cdn_strappendf(&ld->err, "%s: cannot read: %s", ld->file, strerror(errno));
        goto out;
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    buf = NULL;
    ret = 0;
out:
    if (f != NULL)
        fclose(f);
    free(buf);
    return ret;
}

int cdn_conf_load(const char *path, struct cdn_conf **out, char **err)
{
    struct loader ld = {.file = path};
    struct cdn_conf *conf = NULL;
    struct node *root = NULL;
    const struct node *seen[CONF_MAX_CMDS] = {0};
    struct shown sh;
    char *buf = NULL;
    size_t len = 0;
    int ret = -1;

    CDN_ASSERT(path != NULL && out != NULL && err != NULL);
    *out = NULL;
    *err = NULL;
    if (read_file(&ld, &buf, &len) != 0)
        goto out;
    if (parse_tree(&ld, buf, len, &root) != 0)
        goto out;
    if (root == NULL || is_null(root)) {
        struct cdn_conf_pos pos = {1, 1};
        conf_err(&ld, pos, NULL, "the file is empty; expected a map of settings (see docs/CONFIG.md)");
        goto out;
    }
    if (root->kind != NODE_MAP) {
        conf_err(&ld, root->pos, NULL, "the top level must be a map of settings, got %s",
                 describe(root, &sh));
        goto out;
    }

    conf = cdn_xcalloc(1, sizeof(*conf));
    conf->path = cdn_xstrdup(path);
    conf->role = CDN_ROLE_UNSET;
    conf->upstream.verify = true;
    conf->timeouts.handshake_ms = 10000;
    conf->timeouts.request_header_ms = 10000;
    conf->timeouts.keepalive_ms = 60000;
    conf->timeouts.body_ms = 60000;
    conf->timeouts.upstream_connect_ms = 5000;
    conf->timeouts.upstream_response_ms = 30000;
    conf->timeouts.upstream_idle_ms = 30000;
    conf->timeouts.drain_ms = 30000;
    conf->admin.port = -1;
    conf->admin.client_auth = CDN_CLIENT_AUTH_UNSET;
    conf->watch_interval_ms = 1000;
    conf->cache.size = 1ull << 30;
    conf->cache.max_object_size = 64ull << 20;
    conf->limits.max_header_size = 32 * 1024;
    conf->limits.max_headers = 100;
    conf->log.level = CDN_LOG_INFO;
    walk_map(&ld, root, "", top_cmds, conf, seen);
    tunnel_check(&ld, conf);
    if (conf->sni_yaml != NULL)
        load_sni_yaml(&ld, conf); /* after the inline rules, whatever the key order */
    if (ld.remap_upstream != NULL)
        resolve_remap_upstreams(&ld, conf, ld.remap_upstream);
    resolve_groups(&ld, conf, ld.remap_group);
    if (conf->via == NULL)
        conf->via = cdn_xstrdup("cdn-node");
    struct cdn_conf_identity *id = &conf->identity;
    if (id->subject_header == NULL)
        id->subject_header = cdn_xstrdup("Client-Cert-Subject");
    if (id->issuer_header == NULL)
        id->issuer_header = cdn_xstrdup("Client-Cert-Issuer");
    if (id->sans_header == NULL)
        id->sans_header = cdn_xstrdup("Client-Cert-SANs");
    if (id->fingerprint_header == NULL)
        id->fingerprint_header = cdn_xstrdup("Client-Cert-SHA256");
    if (id->status_header == NULL)
        id->status_header = cdn_xstrdup("Client-Cert-Status");
    if (ld.nerr == 0)
        ret = 0;
out:
    node_free(root);
    free(buf);
    for (size_t i = 0; ld.remap_upstream != NULL && conf != NULL && i < conf->nremap; i++)
        free(ld.remap_upstream[i]);
    free(ld.remap_upstream);
    for (size_t i = 0; ld.remap_group != NULL && conf != NULL && i < conf->nremap; i++)
        free(ld.remap_group[i]);
    free(ld.remap_group);
    if (ret == 0) {
        *out = conf;
    } else {
        cdn_conf_free(&conf);
        conf_err_finish(&ld);
        *err = ld.err;
        ld.err = NULL;
    }
    free(ld.err);
    return ret;
}

static void upstream_free(struct cdn_conf_upstream *u)
{
    free(u->name);
    free(u->address);
    free(u->client_certificate);
    free(u->client_key);
    free(u->ca_file);
    free(u->crl_file);
    free(u->server_name);
}

void cdn_conf_free(struct cdn_conf **confp)
{
    if (confp == NULL || *confp == NULL)
        return;
    struct cdn_conf *conf = *confp;
    for (size_t i = 0; i < conf->nlisteners; i++) {
        struct cdn_conf_listener *l = &conf->listeners[i];
        free(l->name);
        free(l->address);
        free(l->certificate);
        free(l->key);
        free(l->ca_file);
        free(l->crl_file);
        strlist_free(&l->allowed_sans);
        strlist_free(&l->allowed_fingerprints);
    }
    free(conf->listeners);
    for (size_t i = 0; i < conf->nremap; i++) {
        free(conf->remap[i].from);
        free(conf->remap[i].to);
    }
    free(conf->remap);
    free(conf->admin.address);
    free(conf->admin.certificate);
    free(conf->admin.key);
    free(conf->admin.ca_file);
    free(conf->user);
    free(conf->group);
    free(conf->cache.path);
    free(conf->cache.name);
    for (size_t i = 0; i < conf->cache.nignore_params; i++)
        free(conf->cache.ignore_params[i]);
    free(conf->cache.ignore_params);
    upstream_free(&conf->upstream);
    for (size_t i = 0; i < conf->nupstreams; i++)
        upstream_free(&conf->upstreams[i]);
    free(conf->upstreams);
    for (size_t i = 0; i < conf->nugroups; i++) {
        struct cdn_conf_ugroup *g = &conf->ugroups[i];
        for (size_t j = 0; j < g->nparents; j++) {
            free(g->parents[j].address);
            free(g->parents[j].name);
        }
        free(g->parents);
        free(g->name);
        free(g->upstream);
        free(g->health.check_path);
    }
    free(conf->ugroups);
    free(conf->log.error);
    free(conf->log.access);
    free(conf->log.access_format);
    for (size_t i = 0; i < conf->nsni; i++) {
        free(conf->sni[i].fqdn);
        free(conf->sni[i].ca_file);
        free(conf->sni[i].certificate);
        free(conf->sni[i].key);
        free(conf->sni[i].crl_file);
        strlist_free(&conf->sni[i].allowed_sans);
        strlist_free(&conf->sni[i].allowed_fingerprints);
    }
    free(conf->sni_yaml);
    free(conf->log.tls_failures);
    free(conf->identity.subject_header);
    free(conf->identity.issuer_header);
    free(conf->identity.sans_header);
    free(conf->identity.fingerprint_header);
    free(conf->identity.status_header);
    free(conf->sni);
    tunnel_conf_free(&conf->tunnel);
    free(conf->via);
    free(conf->path);
    free(conf);
    *confp = NULL;
}

enum cdn_role_kind cdn_conf_role_parse(const char *s)
{
    if (s == NULL)
        return CDN_ROLE_UNSET;
    if (strcmp(s, "edge") == 0)
        return CDN_ROLE_EDGE;
    if (strcmp(s, "regional") == 0)
        return CDN_ROLE_REGIONAL;
    return CDN_ROLE_UNSET;
}

const char *cdn_conf_role_name(enum cdn_role_kind r)
{
    switch (r) {
    case CDN_ROLE_UNSET:
        return "unset";
    case CDN_ROLE_EDGE:
        return "edge";
    case CDN_ROLE_REGIONAL:
        return "regional";
    }
    return "invalid";
}

const char *cdn_conf_client_auth_name(int level)
{
    switch (level) {
    case CDN_CLIENT_AUTH_UNSET:
        return "unset";
    case CDN_CLIENT_AUTH_NONE:
        return "none";
    case CDN_CLIENT_AUTH_REQUEST:
        return "request";
    case CDN_CLIENT_AUTH_REQUIRE:
        return "require";
    default:
        return "invalid";
    }
}

static void keys_walk(const struct conf_cmd *cmds, const char *prefix, cdn_conf_key_cb *cb, void *arg)
{
    for (const struct conf_cmd *c = cmds; c->key != NULL; c++) {
        char *k = prefix ? cdn_xasprintf("%s.%s", prefix, c->key) : cdn_xstrdup(c->key);
        cb(k, arg);
        if (c->sub != NULL) {
            char *p = (c->flags & CMD_SEQ) ? cdn_xasprintf("%s[]", k) : cdn_xstrdup(k);
            keys_walk(c->sub, p, cb, arg);
            free(p);
        }
        free(k);
    }
}

void cdn_conf_keys(cdn_conf_key_cb *cb, void *arg)
{
    keys_walk(top_cmds, NULL, cb, arg);
}
