/*
 * key: the primary cache key of a request, "<scheme>://<host>:<port><path>[?<query>]", built from
 * the remapped (upstream) URL so that every public name mapped to one origin shares its objects, as
 * ATS does. Pure code.
 */
#ifndef CDN_CACHE_KEY_H
#define CDN_CACHE_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

struct cache_key_rules {
    bool ignore_query;          /* drop the whole query */
    char *const *ignore_params; /* query parameters (exact names) left out; the others keep their order */
    size_t nignore_params;
};

/* Appends the key to out (not NUL-terminated; out->len is its length). host is lower-cased; the port
 * is always written; path[0..path_len) is the path with its query, as sent upstream. A fragment
 * (never sent by a conforming client) is dropped. */
void cache_key_build(struct cdn_buf *out, bool tls, const char *host, uint16_t port, const char *path,
                     size_t path_len, const struct cache_key_rules *rules);

#endif
