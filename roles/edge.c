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
        /* rules with their own profile (@upstream=NAME) do not use upstream: */
        tls_upstream |= conf->remap[i].to != NULL && strncasecmp(conf->remap[i].to, "https://", n) == 0 &&
                        conf->remap[i].upstream == 0;
    }
    if (tls_upstream && conf->upstream.client_certificate == NULL)
        cdn_strappendf(warn,
                       "%s:%d:%d: upstream: no client_certificate: a regional with client_auth require will "
                       "refuse this edge",
                       conf->path, conf->upstream.pos.line, conf->upstream.pos.col);
    if (tls_upstream && !conf->upstream.verify)
        cdn_strappendf(warn, "%s:%d:%d: upstream: verify: false: the regional's certificate is not checked",
                       conf->path, conf->upstream.pos.line, conf->upstream.pos.col);
    return 0;
}

const struct cdn_role cdn_role_edge = {
    .name = "edge",
    .kind = CDN_ROLE_EDGE,
    .default_client_auth = CDN_CLIENT_AUTH_NONE,
    .validate = edge_validate,
};
