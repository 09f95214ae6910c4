/*
 * regional: the tier next to the origin. Its listeners are the security boundary: they must be
 * TLS and, unless the operator says otherwise, require a client certificate verified in the
 * handshake, so a customer who learns the address is refused before sending one HTTP byte.
 */
#include <stddef.h>

#include "lib/util.h"
#include "roles/role.h"

static int regional_validate(const struct cdn_conf *conf, char **err, char **warn)
{
    int rc = 0;
    for (size_t i = 0; i < conf->nlisteners; i++) {
        const struct cdn_conf_listener *l = &conf->listeners[i];
        int level = l->client_auth != CDN_CLIENT_AUTH_UNSET ? l->client_auth : CDN_CLIENT_AUTH_REQUIRE;
        if (!l->tls) {
            cdn_strappendf(err,
                           "%s:%d:%d: listeners[%zu]: a regional listener must use tls: true (mTLS is the "
                           "boundary between the tiers)",
                           conf->path, l->pos.line, l->pos.col, i);
            rc = -1;
            continue;
        }
        if (level != CDN_CLIENT_AUTH_NONE && l->ca_file == NULL) {
            cdn_strappendf(err,
                           "%s:%d:%d: listeners[%zu]: client_auth %s%s needs ca_file (the CA that signs edge "
                           "certificates)",
                           conf->path, l->pos.line, l->pos.col, i, cdn_conf_client_auth_name(level),
                           l->client_auth == CDN_CLIENT_AUTH_UNSET ? " (the regional default)" : "");
            rc = -1;
        }
        if (level != CDN_CLIENT_AUTH_REQUIRE)
            cdn_strappendf(warn,
                           "%s:%d:%d: listeners[%zu]: client_auth %s: clients without an edge certificate "
                           "can reach this regional",
                           conf->path, l->client_auth_pos.line, l->client_auth_pos.col, i,
                           cdn_conf_client_auth_name(level));
        /* a tunnel from the regional is a raw circuit into its network: only for verified edges */
        if (level == CDN_CLIENT_AUTH_NONE && cdn_conf_tunnel_listener(conf, l->name)) {
            cdn_strappendf(err,
                           "%s:%d:%d: listeners[%zu]: tunnel.listeners names \"%s\", which has client_auth "
                           "none; a regional accepts CONNECT only from verified client certificates",
                           conf->path, l->pos.line, l->pos.col, i, l->name);
            rc = -1;
        }
    }
    if (conf->tunnel.nroutes > 0) {
        cdn_strappendf(err,
                       "%s:%d:%d: tunnel.routes: a regional connects to the service itself; routes are for "
                       "the edge",
                       conf->path, conf->tunnel.routes_pos.line, conf->tunnel.routes_pos.col);
        rc = -1;
    }
    return rc;
}

const struct cdn_role cdn_role_regional = {
    .name = "regional",
    .kind = CDN_ROLE_REGIONAL,
    .default_client_auth = CDN_CLIENT_AUTH_REQUIRE,
    .validate = regional_validate,
};
