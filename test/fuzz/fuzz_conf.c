/*
 * Fuzz target for the config loader (lib/conf.c) and the remap rules built from what it loads.
 * cdn_conf_load only takes a path, so each input goes through a temporary file. A loaded config is also
 * turned into a remap rule set, so that URL parsing sees whatever the loader lets through.
 * Built with clang -fsanitize=fuzzer,address (`make fuzz`), or with test/fuzz/replay.c over the corpus.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/conf.h"
#include "lib/remap.h"
#include "lib/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[4096];
    struct cdn_conf *conf = NULL;
    struct cdn_remap *remap = NULL;
    char *err = NULL;
    FILE *f;

    if (path[0] == '\0') {
        const char *tmp = getenv("TMPDIR");
        snprintf(path, sizeof(path), "%s/cdn-fuzz-conf-%ld.yaml", tmp != NULL && tmp[0] == '/' ? tmp : "/tmp",
                 (long)getpid());
    }
    f = fopen(path, "wb");
    CDN_ASSERT(f != NULL);
    CDN_ASSERT(fwrite(data, 1, size, f) == size);
    CDN_ASSERT(fclose(f) == 0);

    if (cdn_conf_load(path, &conf, &err) == 0) {
        CDN_ASSERT(err == NULL && conf != NULL);
        if (cdn_remap_new(conf, &remap, &err) == 0) {
            /* Every rule must at least match a request for its own FROM. */
            for (size_t i = 0; i < remap->nrules; i++) {
                const struct cdn_remap_rule *r = &remap->rules[i], *hit;
                char *host = strchr(r->from.host, ':') != NULL
                                 ? cdn_xasprintf("[%s]:%u", r->from.host, (unsigned)r->from.port)
                                 : cdn_xasprintf("%s:%u", r->from.host, (unsigned)r->from.port);
                hit = cdn_remap_lookup(remap, r->from.tls, host, strlen(host), r->from.path,
                                       strlen(r->from.path));
                CDN_ASSERT(hit != NULL);
                free(cdn_remap_target_path(hit, r->from.path, strlen(r->from.path)));
                free(host);
            }
        }
    } else {
        CDN_ASSERT(err != NULL && conf == NULL);
    }
    free(err);
    cdn_remap_free(&remap);
    cdn_conf_free(&conf);
    unlink(path);
    return 0;
}
