/*
 * remap: ATS-style "map FROM TO" rules. A request whose scheme, host, port and path prefix match
 * FROM is sent to TO with the prefix replaced. No match means 404: never an open proxy.
 */
#ifndef CDN_REMAP_H
#define CDN_REMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/conf.h"

struct cdn_url {
    bool tls;      /* scheme https */
    char *host;    /* lower-cased; IPv6 literal without brackets */
    uint16_t port; /* explicit, or 80/443 from the scheme */
    char *path;    /* starts with '/'; "/" when absent */
};

/* Parses an absolute http:// or https:// URL without userinfo, query or fragment. 0 or -1 (+*err). */
int cdn_url_parse(const char *s, struct cdn_url *u, char **err);
void cdn_url_dispose(struct cdn_url *u);

struct cdn_remap_rule {
    struct cdn_url from, to;
    size_t upstream; /* 0: the node's upstream:; N: conf->upstreams[N - 1] ("@upstream=NAME") */
    size_t group;    /* 0: none; N: conf->ugroups[N - 1] ("@group=NAME"), whose profile then applies */
    struct cdn_conf_pos pos;
};

struct cdn_remap {
    struct cdn_remap_rule *rules;
    size_t nrules;
};

/* Builds the rule set. Errors name "file:line:col: remap: ..." for each bad rule; returns -1 then. */
int cdn_remap_new(const struct cdn_conf *conf, struct cdn_remap **out, char **err);
void cdn_remap_free(struct cdn_remap **r);

/* The profile index (0 = upstream:, N = upstreams[N - 1]) a rule's requests go out with: its group's
 * upstream: key, else its "@upstream=NAME". */
static inline size_t cdn_remap_profile(const struct cdn_conf *conf, const struct cdn_remap_rule *rule)
{
    return rule->group > 0 ? conf->ugroups[rule->group - 1].profile : rule->upstream;
}

/* The upstream settings a rule's requests go out with (see cdn_remap_profile). */
static inline const struct cdn_conf_upstream *cdn_remap_upstream(const struct cdn_conf *conf,
                                                                 const struct cdn_remap_rule *rule)
{
    size_t p = cdn_remap_profile(conf, rule);
    return p > 0 ? &conf->upstreams[p - 1] : &conf->upstream;
}

/* Finds the rule for a request. host is the Host header value (may carry ":port"; the port defaults
 * from tls). Host compare is case-insensitive; the path prefix compare is exact. Among matching
 * rules the longest FROM path wins; on equal length the first in the file. NULL when none matches. */
const struct cdn_remap_rule *cdn_remap_lookup(const struct cdn_remap *r, bool tls, const char *host,
                                              size_t host_len, const char *path, size_t path_len);

/* Writes the upstream path (rule->to.path + path without rule->from.path) into a fresh heap string. */
char *cdn_remap_target_path(const struct cdn_remap_rule *rule, const char *path, size_t path_len);

#endif
