/* Unit tests for lib/watch (content changes, symlink swaps) and lib/gen (building, references,
 * which changes a reload may make). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "lib/conf.h"
#include "lib/gen.h"
#include "lib/util.h"
#include "lib/watch.h"
#include "test/unit/suites.h"

static char tmpdir[] = "/tmp/cdn-watch-XXXXXX";

static void setup(void)
{
    strcpy(tmpdir, "/tmp/cdn-watch-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char *cmd = cdn_xasprintf("rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
}

static char *put(const char *name, const char *text)
{
    char *path = cdn_xasprintf("%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

START_TEST(content_not_mtime)
{
    char *a = put("a.pem", "one"), *b = put("b.pem", "two");
    char *files[] = {a, b};
    struct cdn_watch *w = cdn_watch_new();
    ck_assert_ptr_null(cdn_watch_scan(w, files, 2)); /* first sighting */
    ck_assert_ptr_null(cdn_watch_scan(w, files, 2));
    free(put("a.pem", "one")); /* rewritten, same bytes: no change */
    ck_assert_ptr_null(cdn_watch_scan(w, files, 2));
    free(put("b.pem", "TWO"));
    const char *c = cdn_watch_scan(w, files, 2);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c, b);
    ck_assert_ptr_null(cdn_watch_scan(w, files, 2)); /* reported once */
    /* gone, then back: both are changes */
    ck_assert_int_eq(unlink(a), 0);
    ck_assert_str_eq(cdn_watch_scan(w, files, 2), a);
    ck_assert_ptr_null(cdn_watch_scan(w, files, 2));
    free(put("a.pem", "one"));
    ck_assert_str_eq(cdn_watch_scan(w, files, 2), a);
    /* a file that stops being watched and comes back later is a first sighting */
    ck_assert_ptr_null(cdn_watch_scan(w, files, 1));
    free(put("b.pem", "three"));
    ck_assert_ptr_null(cdn_watch_scan(w, files, 2));
    cdn_watch_free(&w);
    ck_assert_ptr_null(w);
    free(a);
    free(b);
}
END_TEST

START_TEST(symlink_swap)
{
    char *v1 = cdn_xasprintf("%s/v1", tmpdir), *v2 = cdn_xasprintf("%s/v2", tmpdir);
    ck_assert_int_eq(mkdir(v1, 0700) | mkdir(v2, 0700), 0);
    free(put("v1/tls.crt", "first"));
    free(put("v2/tls.crt", "second"));
    char *live = cdn_xasprintf("%s/live", tmpdir), *tmp = cdn_xasprintf("%s/live.new", tmpdir);
    ck_assert_int_eq(symlink("v1", live), 0);
    char *file = cdn_xasprintf("%s/live/tls.crt", tmpdir);
    struct cdn_watch *w = cdn_watch_new();
    ck_assert_ptr_null(cdn_watch_scan(w, &file, 1));
    /* the Kubernetes/cert-manager way: a new link renamed over the old one */
    ck_assert_int_eq(symlink("v2", tmp), 0);
    ck_assert_int_eq(rename(tmp, live), 0);
    ck_assert_str_eq(cdn_watch_scan(w, &file, 1), file);
    cdn_watch_free(&w);
    free(v1);
    free(v2);
    free(live);
    free(tmp);
    free(file);
}
END_TEST

static const struct cdn_server_policy edge_policy = {.role_name = "edge", .default_client_auth = 0};

static struct cdn_gen *gen_of(const char *yaml)
{
    char *path = put("node.yaml", yaml), *err = NULL;
    struct cdn_conf *conf = NULL;
    ck_assert_msg(cdn_conf_load(path, &conf, &err) == 0, "%s", err);
    struct cdn_gen *g = NULL;
    ck_assert_msg(cdn_gen_new(&conf, &edge_policy, &g, &err) == 0, "%s", err);
    ck_assert_ptr_null(conf); /* the generation owns it */
    free(path);
    return g;
}

#define BASE                                                                                    \
    "role: edge\nworkers: 1\nlisteners:\n  - name: http\n    address: 127.0.0.1\n    port: 0\n" \
    "remap:\n  - map http://a.test/ http://127.0.0.1:9/\n"

START_TEST(gen_refs_and_files)
{
    struct cdn_gen *g = gen_of(BASE "watch_files: true\n");
    ck_assert_uint_eq(g->id, 1);
    ck_assert_uint_eq(g->nlisteners, 1);
    ck_assert(g->conf->watch_files);
    ck_assert_uint_eq(g->conf->watch_interval_ms, 1000);
    ck_assert_uint_ge(g->nfiles, 1);
    ck_assert(strstr(g->files[0], "node.yaml") != NULL);
    struct cdn_gen *r = cdn_gen_ref(g);
    ck_assert_ptr_eq(r, g);
    cdn_gen_unref(&r);
    ck_assert_ptr_null(r);
    ck_assert_uint_eq(g->id, 1); /* still alive: one reference left */
    cdn_gen_unref(&g);
    ck_assert_ptr_null(g);
}
END_TEST

START_TEST(gen_compatible)
{
    struct cdn_gen *a = gen_of(BASE "via: one\n");
    struct cdn_gen *same = gen_of(BASE "via: two\ntimeouts:\n  keepalive: 5s\n");
    char *err = NULL;
    ck_assert_int_eq(cdn_gen_compatible(a, same, &err), 0); /* what a reload is for */
    ck_assert_ptr_null(err);
    struct cdn_gen *port =
        gen_of("role: edge\nworkers: 1\nlisteners:\n  - name: http\n    address: 127.0.0.1\n"
               "    port: 8080\nremap:\n  - map http://a.test/ http://127.0.0.1:9/\n");
    ck_assert_int_eq(cdn_gen_compatible(a, port, &err), -1);
    ck_assert_ptr_nonnull(strstr(err, "listener http"));
    ck_assert_ptr_nonnull(strstr(err, "need a restart"));
    free(err);
    struct cdn_gen *more =
        gen_of("role: edge\nworkers: 3\nlisteners:\n  - name: http\n    address: 127.0.0.1\n"
               "    port: 0\nremap:\n  - map http://a.test/ http://127.0.0.1:9/\n");
    ck_assert_int_eq(cdn_gen_compatible(a, more, &err), -1);
    ck_assert_ptr_nonnull(strstr(err, "workers"));
    free(err);
    struct cdn_gen *adm = gen_of(BASE "admin:\n  port: 0\ncache:\n  path: c\n");
    ck_assert_int_eq(cdn_gen_compatible(a, adm, &err), -1);
    ck_assert_ptr_nonnull(strstr(err, "admin"));
    ck_assert_ptr_nonnull(strstr(err, "cache"));
    free(err);
    cdn_gen_unref(&a);
    cdn_gen_unref(&same);
    cdn_gen_unref(&port);
    cdn_gen_unref(&more);
    cdn_gen_unref(&adm);
}
END_TEST

START_TEST(gen_refuses_bad_material)
{
    char *path =
             put("node.yaml", "role: edge\nlisteners:\n  - name: https\n    address: 127.0.0.1\n    port: 0\n"
                              "    tls: true\n    certificate: missing.crt\n    key: missing.key\n"
                              "remap:\n  - map https://a.test/ http://127.0.0.1:9/\n"),
         *err = NULL;
    struct cdn_conf *conf = NULL;
    ck_assert_int_eq(cdn_conf_load(path, &conf, &err), 0);
    struct cdn_gen *g = (struct cdn_gen *)1;
    ck_assert_int_eq(cdn_gen_new(&conf, &edge_policy, &g, &err), -1);
    ck_assert_ptr_null(g);
    ck_assert_ptr_null(conf);
    ck_assert_ptr_nonnull(strstr(err, "listener https"));
    ck_assert_ptr_nonnull(strstr(err, "missing.crt"));
    free(err);
    free(path);
}
END_TEST

Suite *suite_watch(void)
{
    Suite *s = suite_create("watch");
    TCase *tc = tcase_create("watch");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, content_not_mtime);
    tcase_add_test(tc, symlink_swap);
    tcase_add_test(tc, gen_refs_and_files);
    tcase_add_test(tc, gen_compatible);
    tcase_add_test(tc, gen_refuses_bad_material);
    suite_add_tcase(s, tc);
    return s;
}
