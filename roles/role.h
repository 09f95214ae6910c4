/*
 * role: what differs between the tiers, and nothing else. The core (lib/) is told the result
 * through struct cdn_server_policy; a role only adds defaults and config rules.
 */
#ifndef CDN_ROLE_H
#define CDN_ROLE_H

#include "lib/conf.h"
#include "lib/server.h"

struct cdn_role {
    const char *name;
    enum cdn_role_kind kind;
    int default_client_auth; /* for listeners that do not set client_auth */
    /* Role-specific checks on a loaded config. Appends one "file:line:col: message" line per
     * problem to *err (returning -1) and per doubtful setting to *warn (still returning 0). */
    int (*validate)(const struct cdn_conf *conf, char **err, char **warn);
};

extern const struct cdn_role cdn_role_edge;
extern const struct cdn_role cdn_role_regional;

/* NULL for CDN_ROLE_UNSET. */
const struct cdn_role *cdn_role_find(enum cdn_role_kind kind);
void cdn_role_policy(const struct cdn_role *role, struct cdn_server_policy *out);

#endif
