/* role: lookup shared by both roles. */
#include "roles/role.h"

const struct cdn_role *cdn_role_find(enum cdn_role_kind kind)
{
    switch (kind) {
    case CDN_ROLE_EDGE:
        return &cdn_role_edge;
    case CDN_ROLE_REGIONAL:
        return &cdn_role_regional;
    default:
        return NULL;
    }
}

void cdn_role_policy(const struct cdn_role *role, struct cdn_server_policy *out)
{
    out->role_name = role->name;
    out->default_client_auth = role->default_client_auth;
}
