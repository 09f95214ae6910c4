/*
 * edge: the customer-facing tier. Customers present no certificate by default; the edge itself
 * presents its client certificate to TLS upstreams (the regionals) and verifies theirs.
 */
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "lib/remap.h"
#include "lib/util.h"
#include "roles/role.h"

static int edge_validate(const struct cdn_conf *conf, char **err, char **warn)
{
    bool tls_upstream = false;
    for (size_t i = 0; i < conf->nremap; i++) {
        size_t n = strlen("https://");
        /* rules with their own profile (@upstream=NAME, or a group's upstream:) do not use upstream: */
        size_t g = conf->remap[i].group;
        tls_upstream |= conf->remap[i].to != NULL && strncasecmp(conf->remap[i].to, "https://", n) == 0 &&
                        conf->remap[i].upstream == 0 && (g == 0 || conf->ugroups[g - 1].profile == 0);
    }
    if (tls_upstream && conf->upstream.client_certificate == NULL)
        cdn_strappendf(warn,
                       "%s:%d:%d: upstream: no client_certificate: a regional with client_auth require will "
                       "refuse this edge",
                       conf->path, conf->upstream.pos.line, conf->upstream.pos.col);
    if (tls_upstream && !conf->upstream.verify)
        cdn_strappendf(warn, "%s:%d:%d: upstream: verify: false: the regional's certificate is not checked",
                       conf->path, conf->upstream.pos.line, conf->upstream.pos.col);
    if (conf->tunnel.nroutes > 0 && conf->upstream.client_certificate == NULL)
        cdn_strappendf(warn,
                       "%s:%d:%d: tunnel.routes: no upstream.client_certificate: a regional accepts CONNECT "
                       "only from verified client certificates",
                       conf->path, conf->tunnel.routes_pos.line, conf->tunnel.routes_pos.col);
    /* an edge never opens a tunnel itself: every CONNECT goes to a peer chosen by a route */
    if (conf->tunnel.nlisteners > 0 && conf->tunnel.nroutes == 0) {
        cdn_strappendf(err,
                       "%s:%d:%d: tunnel: an edge needs tunnel.routes (which peer carries which CONNECT "
                       "target)",
                       conf->path, conf->tunnel.pos.line, conf->tunnel.pos.col);
        return -1;
    }
    return 0;
}

const struct cdn_role cdn_role_edge = {
    .name = "edge",
    .kind = CDN_ROLE_EDGE,
    .default_client_auth = CDN_CLIENT_AUTH_NONE,
    .validate = edge_validate,
};
