/*
 * Tests for lib/conf.c: every field of a full file, the defaults, each class of error with its position,
 * relative path resolution, hostile YAML, and the shipped sample configs. Tests write their YAML into one
 * mkdtemp folder per run, removed by the fixture.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "lib/conf.h"
#include "lib/remap.h"
#include "lib/util.h"
#include "test/unit/suites.h"

static char tmpdir[64];

static void setup(void)
{
    strcpy(tmpdir, "/tmp/cdn-test-conf-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void teardown(void)
{
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* tmpdir/name in a static buffer. */
static const char *tmp_path(const char *name)
{
    static char buf[128];
    snprintf(buf, sizeof(buf), "%s/%s", tmpdir, name);
    return buf;
}

/* Writes text to tmpdir/name and returns the path (heap). */
static char *write_file(const char *name, const char *text)
{
    char *path = cdn_xasprintf("%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

static struct cdn_conf *load_ok(const char *yaml)
{
    char *path = write_file("c.yaml", yaml), *err = NULL;
    struct cdn_conf *conf = NULL;
    int rc = cdn_conf_load(path, &conf, &err);
    ck_assert_msg(rc == 0, "unexpected errors:\n%s", err ? err : "(none)");
    ck_assert_ptr_null(err);
    ck_assert_ptr_nonnull(conf);
    ck_assert_str_eq(conf->path, path);
    free(path);
    return conf;
}

/* Loads yaml, which must fail; returns the error text with every line prefixed by the file path removed,
 * so that expectations read "3:5: key: message". */
static char *load_err(const char *yaml)
{
    char *path = write_file("c.yaml", yaml), *err = NULL, *out;
    struct cdn_conf *conf = (struct cdn_conf *)1;
    ck_assert_int_eq(cdn_conf_load(path, &conf, &err), -1);
    ck_assert_ptr_null(conf);
    ck_assert_ptr_nonnull(err);
    size_t plen = strlen(path), o = 0;
    out = cdn_xmalloc(strlen(err) + 3);
    out[o++] = '\n';
    for (const char *line = err; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        ck_assert_msg(n > plen + 1 && strncmp(line, path, plen) == 0 && line[plen] == ':',
                      "line does not start with the path: %.*s", (int)n, line);
        memcpy(out + o, line + plen + 1, n - plen - 1);
        o += n - plen - 1;
        out[o++] = '\n';
        line += n + (nl != NULL);
    }
    out[o] = '\0';
    free(err);
    free(path);
    return out;
}

/* errs comes from load_err; line must be one whole line of it. */
#define ck_assert_line(errs, line) \
    ck_assert_msg(strstr((errs), "\n" line "\n") != NULL, "missing line \"%s\" in:%s", line, (errs))

static size_t count_lines(const char *errs)
{
    size_t n = 0;
    for (const char *p = errs + 1; *p != '\0'; p++)
        n += *p == '\n';
    return n;
}

static const char full_yaml[] = "role: regional\n"
                                "workers: 4\n"
                                "via: my-cdn\n"
                                "listeners:\n"
                                "  - name: public\n"
                                "    address: 127.0.0.1\n"
                                "    port: 9443\n"
                                "    tls: true\n"
                                "    certificate: pki/regional.crt\n"
                                "    key: /abs/regional.key\n"
                                "    client_auth: require\n"
                                "    ca_file: pki/ca.crt\n"
                                "  - address: \"::1\"\n"
                                "    port: 8080\n"
                                "remap:\n"
                                "  - map https://localhost:8443/ https://127.0.0.1:9443/\n"
                                "  - \"map  http://a/img   http://b/static\"\n"
                                "upstream:\n"
                                "  address: \"[::1]:9443\"\n"
                                "  client_certificate: pki/edge-client.crt\n"
                                "  client_key: pki/edge-client.key\n"
                                "  ca_file: pki/ca.crt\n"
                                "  verify: no\n"
                                "  server_name: regional.cdn.test\n"
                                "timeouts:\n"
                                "  handshake: 250ms\n"
                                "  request_header: 2\n"
                                "  keepalive: 2m\n"
                                "  body: 1h\n"
                                "  upstream_connect: 1500ms\n"
                                "  upstream_response: 45s\n"
                                "limits:\n"
                                "  max_header_size: 64KiB\n"
                                "  max_headers: 50\n"
                                "log:\n"
                                "  error: \"-\"\n"
                                "  access: logs/access.log\n"
                                "  level: debug\n";

static const char min_yaml[] = "listeners:\n"
                               "  - address: 0.0.0.0\n"
                               "    port: 0\n";

START_TEST(test_full_config)
{
    struct cdn_conf *c = load_ok(full_yaml);
    char *p;

    ck_assert_int_eq(c->role, CDN_ROLE_REGIONAL);
    ck_assert_int_eq(c->role_pos.line, 1);
    ck_assert_int_eq(c->role_pos.col, 7);
    ck_assert_uint_eq(c->workers, 4);
    ck_assert_str_eq(c->via, "my-cdn");

    ck_assert_uint_eq(c->nlisteners, 2);
    struct cdn_conf_listener *l = &c->listeners[0];
    ck_assert_str_eq(l->name, "public");
    ck_assert_str_eq(l->address, "127.0.0.1");
    ck_assert_int_eq(l->port, 9443);
    ck_assert(l->tls);
    p = cdn_xasprintf("%s/pki/regional.crt", tmpdir);
    ck_assert_str_eq(l->certificate, p);
    free(p);
    ck_assert_str_eq(l->key, "/abs/regional.key");
    ck_assert_int_eq(l->client_auth, CDN_CLIENT_AUTH_REQUIRE);
    p = cdn_xasprintf("%s/pki/ca.crt", tmpdir);
    ck_assert_str_eq(l->ca_file, p);
    free(p);
    ck_assert_int_eq(l->pos.line, 5);
    ck_assert_int_eq(l->pos.col, 5);
    ck_assert_int_eq(l->client_auth_pos.line, 11);
    ck_assert_int_eq(l->client_auth_pos.col, 18);

    l = &c->listeners[1];
    ck_assert_str_eq(l->name, "listener1");
    ck_assert_str_eq(l->address, "::1");
    ck_assert_int_eq(l->port, 8080);
    ck_assert(!l->tls);
    ck_assert_ptr_null(l->certificate);
    ck_assert_ptr_null(l->key);
    ck_assert_ptr_null(l->ca_file);
    ck_assert_int_eq(l->client_auth, CDN_CLIENT_AUTH_UNSET);
    ck_assert_int_eq(l->client_auth_pos.line, 0);
    ck_assert_int_eq(l->pos.line, 13);
    ck_assert_int_eq(l->pos.col, 5);

    ck_assert_uint_eq(c->nremap, 2);
    ck_assert_str_eq(c->remap[0].from, "https://localhost:8443/");
    ck_assert_str_eq(c->remap[0].to, "https://127.0.0.1:9443/");
    ck_assert_int_eq(c->remap[0].pos.line, 16);
    ck_assert_int_eq(c->remap[0].pos.col, 5);
    ck_assert_str_eq(c->remap[1].from, "http://a/img");
    ck_assert_str_eq(c->remap[1].to, "http://b/static");
    ck_assert_int_eq(c->remap[1].pos.line, 17);

    ck_assert_str_eq(c->upstream.address, "[::1]:9443");
    p = cdn_xasprintf("%s/pki/edge-client.crt", tmpdir);
    ck_assert_str_eq(c->upstream.client_certificate, p);
    free(p);
    p = cdn_xasprintf("%s/pki/edge-client.key", tmpdir);
    ck_assert_str_eq(c->upstream.client_key, p);
    free(p);
    p = cdn_xasprintf("%s/pki/ca.crt", tmpdir);
    ck_assert_str_eq(c->upstream.ca_file, p);
    free(p);
    ck_assert(!c->upstream.verify);
    ck_assert_str_eq(c->upstream.server_name, "regional.cdn.test");
    ck_assert_int_eq(c->upstream.pos.line, 19);
    ck_assert_int_eq(c->upstream.pos.col, 3);

    ck_assert_uint_eq(c->timeouts.handshake_ms, 250);
    ck_assert_uint_eq(c->timeouts.request_header_ms, 2000);
    ck_assert_uint_eq(c->timeouts.keepalive_ms, 120000);
    ck_assert_uint_eq(c->timeouts.body_ms, 3600000);
    ck_assert_uint_eq(c->timeouts.upstream_connect_ms, 1500);
    ck_assert_uint_eq(c->timeouts.upstream_response_ms, 45000);
    ck_assert_uint_eq(c->limits.max_header_size, 64 * 1024);
    ck_assert_uint_eq(c->limits.max_headers, 50);

    ck_assert_str_eq(c->log.error, "-");
    p = cdn_xasprintf("%s/logs/access.log", tmpdir);
    ck_assert_str_eq(c->log.access, p);
    free(p);
    ck_assert_int_eq(c->log.level, CDN_LOG_DEBUG);

    cdn_conf_free(&c);
    ck_assert_ptr_null(c);
}
END_TEST

START_TEST(test_defaults)
{
    struct cdn_conf *c = load_ok(min_yaml);

    ck_assert_int_eq(c->role, CDN_ROLE_UNSET);
    ck_assert_int_eq(c->role_pos.line, 0);
    ck_assert_uint_eq(c->workers, 0);
    ck_assert_str_eq(c->via, "cdn-node");
    ck_assert_uint_eq(c->nlisteners, 1);
    ck_assert_str_eq(c->listeners[0].name, "listener0");
    ck_assert_str_eq(c->listeners[0].address, "0.0.0.0");
    ck_assert_int_eq(c->listeners[0].port, 0);
    ck_assert(!c->listeners[0].tls);
    ck_assert_int_eq(c->listeners[0].client_auth, CDN_CLIENT_AUTH_UNSET);
    ck_assert_int_eq(c->listeners[0].pos.line, 2);
    ck_assert_int_eq(c->listeners[0].pos.col, 5);
    ck_assert_uint_eq(c->nremap, 0);
    ck_assert_ptr_null(c->upstream.address);
    ck_assert_ptr_null(c->upstream.client_certificate);
    ck_assert_ptr_null(c->upstream.client_key);
    ck_assert_ptr_null(c->upstream.ca_file);
    ck_assert_ptr_null(c->upstream.server_name);
    ck_assert(c->upstream.verify);
    ck_assert_int_eq(c->upstream.pos.line, 0);
    ck_assert_uint_eq(c->timeouts.handshake_ms, 10000);
    ck_assert_uint_eq(c->timeouts.request_header_ms, 10000);
    ck_assert_uint_eq(c->timeouts.keepalive_ms, 60000);
    ck_assert_uint_eq(c->timeouts.body_ms, 60000);
    ck_assert_uint_eq(c->timeouts.upstream_connect_ms, 5000);
    ck_assert_uint_eq(c->timeouts.upstream_response_ms, 30000);
    ck_assert_uint_eq(c->limits.max_header_size, 32 * 1024);
    ck_assert_uint_eq(c->limits.max_headers, 100);
    ck_assert_ptr_null(c->log.error);
    ck_assert_ptr_null(c->log.access);
    ck_assert_int_eq(c->log.level, CDN_LOG_INFO);
    cdn_conf_free(&c);
}
END_TEST

START_TEST(test_null_values_keep_defaults)
{
    struct cdn_conf *c = load_ok("listeners:\n"
                                 "  - address: 127.0.0.1\n"
                                 "    port: 1\n"
                                 "    name: ~\n"
                                 "remap:\n"
                                 "upstream:\n"
                                 "log:\n"
                                 "  access: null\n"
                                 "timeouts: ~\n");
    ck_assert_str_eq(c->listeners[0].name, "listener0");
    ck_assert_uint_eq(c->nremap, 0);
    ck_assert_ptr_null(c->log.access);
    ck_assert_uint_eq(c->timeouts.keepalive_ms, 60000);
    ck_assert(c->upstream.verify);
    cdn_conf_free(&c);

    char *e = load_err("listeners:\n"
                       "  - address:\n"
                       "    port: 1\n");
    ck_assert_line(e, "2:13: listeners[0].address: a value is required");
    free(e);
}
END_TEST

START_TEST(test_bool_spellings)
{
    static const char *const yes[] = {"true", "True", "YES", "on", "On"}, *const no[] = {"false", "No",
                                                                                         "OFF"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]) + sizeof(no) / sizeof(no[0]); i++) {
        bool want = i < sizeof(yes) / sizeof(yes[0]);
        const char *word = want ? yes[i] : no[i - sizeof(yes) / sizeof(yes[0])];
        char *y = cdn_xasprintf("%s\nupstream:\n  verify: %s\n", min_yaml, word);
        struct cdn_conf *c = load_ok(y);
        ck_assert_msg(c->upstream.verify == want, "%s", word);
        cdn_conf_free(&c);
        free(y);
    }
}
END_TEST

START_TEST(test_unknown_key)
{
    char *e = load_err("listeners:\n"
                       "  - address: 127.0.0.1\n"
                       "    port: 80\n"
                       "    prot: 81\n"
                       "colour: blue\n"
                       "timeouts:\n"
                       "  idle: 5s\n");
    ck_assert_line(e, "4:5: listeners[0].prot: unknown key");
    ck_assert_line(e, "5:1: colour: unknown key");
    ck_assert_line(e, "7:3: timeouts.idle: unknown key");
    ck_assert_uint_eq(count_lines(e), 3);
    free(e);
}
END_TEST

START_TEST(test_wrong_type)
{
    char *e = load_err("workers: abc\n"
                       "via: {a: b}\n"
                       "listeners:\n"
                       "  - address: [127.0.0.1]\n"
                       "    port: x\n"
                       "    tls: maybe\n"
                       "upstream: yes\n"
                       "timeouts:\n"
                       "  - 1s\n"
                       "log:\n"
                       "  error: [a]\n");
    ck_assert_line(e, "1:10: workers: expected an integer 0..256, got \"abc\"");
    ck_assert_line(e,
                   "2:6: via: expected a token (letters, digits and !#$%&'*+-.^_`|~, at most 64), got a map");
    ck_assert_line(
        e, "4:14: listeners[0].address: expected an IPv4 or IPv6 address literal (no brackets, no host "
           "name), got a sequence");
    ck_assert_line(e, "5:11: listeners[0].port: expected an integer 0..65535, got \"x\"");
    ck_assert_line(e,
                   "6:10: listeners[0].tls: expected a boolean (true/false, yes/no, on/off), got \"maybe\"");
    ck_assert_line(e, "7:11: upstream: expected a map, got \"yes\"");
    ck_assert_line(e, "9:3: timeouts: expected a map, got a sequence");
    ck_assert_line(e, "11:10: log.error: expected a file path or \"-\", got a sequence");
    ck_assert_uint_eq(count_lines(e), 8);
    free(e);

    e = load_err("listeners: {address: 1.2.3.4}\n");
    ck_assert_line(e, "1:12: listeners: expected a sequence of listener maps, got a map");
    free(e);
    e = load_err("listeners:\n  - 127.0.0.1:80\n");
    ck_assert_line(e, "2:5: listeners[0]: expected a map, got \"127.0.0.1:80\"");
    free(e);
    e = load_err("{[a]: 1}\n");
    ck_assert_line(e, "1:2: keys must be plain strings, got a sequence");
    free(e);
}
END_TEST

START_TEST(test_missing_required)
{
    char *e = load_err("workers: 1\n");
    ck_assert_line(e, "1:1: listeners: missing required key");
    ck_assert_uint_eq(count_lines(e), 1);
    free(e);

    e = load_err("via: x\n"
                 "listeners:\n"
                 "  - name: a\n"
                 "  - {port: 1}\n");
    ck_assert_line(e, "3:5: listeners[0].address: missing required key");
    ck_assert_line(e, "3:5: listeners[0].port: missing required key");
    ck_assert_line(e, "4:5: listeners[1].address: missing required key");
    ck_assert_uint_eq(count_lines(e), 3);
    free(e);

    e = load_err("listeners: []\n");
    ck_assert_line(e, "1:12: listeners: at least one listener is required");
    free(e);
}
END_TEST

START_TEST(test_duplicate_key)
{
    char *e = load_err("workers: 1\n"
                       "listeners:\n"
                       "  - address: 127.0.0.1\n"
                       "    port: 1\n"
                       "    port: 2\n"
                       "workers: 2\n");
    ck_assert_line(e, "5:5: listeners[0].port: duplicate key (first at 4:5)");
    ck_assert_line(e, "6:1: workers: duplicate key (first at 1:1)");
    ck_assert_uint_eq(count_lines(e), 2);
    free(e);
}
END_TEST

START_TEST(test_bad_enum)
{
    char *e = load_err("role: origin\n"
                       "listeners:\n"
                       "  - address: 127.0.0.1\n"
                       "    port: 1\n"
                       "    tls: true\n"
                       "    certificate: a\n"
                       "    key: b\n"
                       "    ca_file: c\n"
                       "    client_auth: optional\n"
                       "log:\n"
                       "  level: verbose\n");
    ck_assert_line(e, "1:7: role: expected one of edge, regional, got \"origin\"");
    ck_assert_line(
        e, "9:18: listeners[0].client_auth: expected one of none, request, require, got \"optional\"");
    ck_assert_line(e, "11:10: log.level: expected one of error, warn, info, debug, got \"verbose\"");
    ck_assert_uint_eq(count_lines(e), 3);
    free(e);
}
END_TEST

START_TEST(test_bad_duration_size)
{
    char *e = load_err("listeners: [{address: 127.0.0.1, port: 1}]\n"
                       "timeouts:\n"
                       "  handshake: 10x\n"
                       "  keepalive: 0\n"
                       "  body: -1s\n"
                       "  upstream_connect: 1.5s\n"
                       "limits:\n"
                       "  max_header_size: 2MiB\n"
                       "  max_headers: 257\n");
    ck_assert_line(e,
                   "3:14: timeouts.handshake: expected a duration > 0 such as 250ms, 10s or 2m, got \"10x\"");
    ck_assert_line(e,
                   "4:14: timeouts.keepalive: expected a duration > 0 such as 250ms, 10s or 2m, got \"0\"");
    ck_assert_line(e, "5:9: timeouts.body: expected a duration > 0 such as 250ms, 10s or 2m, got \"-1s\"");
    ck_assert_line(e,
                   "6:21: timeouts.upstream_connect: expected a duration > 0 such as 250ms, 10s or 2m, got "
                   "\"1.5s\"");
    ck_assert_line(e,
                   "8:20: limits.max_header_size: expected a size 1KiB..1MiB (bytes, or with KiB/MiB), got "
                   "\"2MiB\"");
    ck_assert_line(e, "9:16: limits.max_headers: expected an integer 1..256, got \"257\"");
    ck_assert_uint_eq(count_lines(e), 6);
    free(e);

    e = load_err(
        "listeners: [{address: 127.0.0.1, port: 1}]\nlimits: {max_header_size: 512, max_headers: 0}\n");
    ck_assert_line(e,
                   "2:27: limits.max_header_size: expected a size 1KiB..1MiB (bytes, or with KiB/MiB), got "
                   "\"512\"");
    ck_assert_line(e, "2:45: limits.max_headers: expected an integer 1..256, got \"0\"");
    free(e);

    struct cdn_conf *c = load_ok("listeners: [{address: 127.0.0.1, port: 1}]\n"
                                 "limits: {max_header_size: 1048576, max_headers: 256}\n"
                                 "timeouts: {handshake: 1ms, keepalive: 1d}\n");
    ck_assert_uint_eq(c->limits.max_header_size, 1048576);
    ck_assert_uint_eq(c->limits.max_headers, 256);
    ck_assert_uint_eq(c->timeouts.handshake_ms, 1);
    ck_assert_uint_eq(c->timeouts.keepalive_ms, 86400000);
    cdn_conf_free(&c);
}
END_TEST

START_TEST(test_port_range)
{
    char *e = load_err("workers: 257\n"
                       "listeners:\n"
                       "  - {address: 127.0.0.1, port: 65536}\n"
                       "  - {address: 127.0.0.1, port: -1}\n"
                       "  - {address: 127.0.0.1, port: 99999999999999999999999}\n");
    ck_assert_line(e, "1:10: workers: expected an integer 0..256, got \"257\"");
    ck_assert_line(e, "3:32: listeners[0].port: expected an integer 0..65535, got \"65536\"");
    ck_assert_line(e, "4:32: listeners[1].port: expected an integer 0..65535, got \"-1\"");
    ck_assert_line(e,
                   "5:32: listeners[2].port: expected an integer 0..65535, got \"99999999999999999999999\"");
    free(e);

    struct cdn_conf *c = load_ok("workers: 256\nlisteners: [{address: 127.0.0.1, port: 65535}]\n");
    ck_assert_uint_eq(c->workers, 256);
    ck_assert_int_eq(c->listeners[0].port, 65535);
    cdn_conf_free(&c);
}
END_TEST

START_TEST(test_tls_rules)
{
    char *e = load_err("listeners:\n"
                       "  - address: 127.0.0.1\n"
                       "    port: 1\n"
                       "    tls: true\n"
                       "  - address: 127.0.0.1\n"
                       "    port: 2\n"
                       "    certificate: a.crt\n"
                       "    key: a.key\n"
                       "    ca_file: ca.crt\n"
                       "    client_auth: require\n"
                       "  - address: 127.0.0.1\n"
                       "    port: 3\n"
                       "    tls: on\n"
                       "    certificate: a.crt\n"
                       "    key: a.key\n"
                       "    client_auth: request\n");
    ck_assert_line(e, "2:5: listeners[0].certificate: missing required key (tls is true)");
    ck_assert_line(e, "2:5: listeners[0].key: missing required key (tls is true)");
    ck_assert_line(e, "7:18: listeners[1].certificate: only allowed with tls: true");
    ck_assert_line(e, "8:10: listeners[1].key: only allowed with tls: true");
    ck_assert_line(e, "9:14: listeners[1].ca_file: only allowed with tls: true");
    ck_assert_line(e, "10:18: listeners[1].client_auth: require needs tls: true");
    ck_assert_line(
        e, "16:18: listeners[2].client_auth: client certificates need ca_file (the CA that issues them)");
    ck_assert_uint_eq(count_lines(e), 7);
    free(e);

    /* client_auth: none is fine anywhere. */
    struct cdn_conf *c = load_ok("listeners: [{address: 127.0.0.1, port: 1, client_auth: none}]\n");
    ck_assert_int_eq(c->listeners[0].client_auth, CDN_CLIENT_AUTH_NONE);
    cdn_conf_free(&c);
}
END_TEST

START_TEST(test_listener_names_and_addresses)
{
    char *e = load_err("listeners:\n"
                       "  - {name: a, address: 127.0.0.1, port: 1}\n"
                       "  - {name: a, address: localhost, port: 2}\n"
                       "  - {name: listener3, address: \"[::1]\", port: 3}\n"
                       "  - {address: 10.0.0.1, port: 4}\n"
                       "  - {name: \"bad name\", address: 10.0.0.1, port: 5}\n");
    ck_assert_line(e, "3:12: listeners[1].name: duplicate listener name \"a\" (also listeners[0] at 2:12)");
    ck_assert_line(e, "3:24: listeners[1].address: expected an IPv4 or IPv6 address literal (no brackets, no "
                      "host name), got \"localhost\"");
    ck_assert_line(e, "4:32: listeners[2].address: expected an IPv4 or IPv6 address literal (no brackets, no "
                      "host name), got \"[::1]\"");
    ck_assert_line(
        e, "5:5: listeners[3].name: duplicate listener name \"listener3\" (also listeners[2] at 4:12)");
    ck_assert_line(
        e, "6:12: listeners[4].name: expected a name of letters, digits, '.', '_' or '-' (at most 64), "
           "got \"bad name\"");
    ck_assert_uint_eq(count_lines(e), 5);
    free(e);
}
END_TEST

START_TEST(test_upstream_rules)
{
    char *e = load_err("listeners: [{address: 127.0.0.1, port: 1}]\n"
                       "upstream:\n"
                       "  address: regional\n"
                       "  client_certificate: c.crt\n"
                       "  server_name: \"a b\"\n");
    ck_assert_line(
        e, "3:12: upstream.address: expected host:port (an IPv6 address as [::1]:443), got \"regional\"");
    ck_assert_line(e, "3:3: upstream.client_key: missing required key (client_certificate is given)");
    ck_assert_line(e, "5:16: upstream.server_name: expected a host name, got \"a b\"");
    ck_assert_uint_eq(count_lines(e), 3);
    free(e);

    static const char *const bad[] = {"h:0",     "h:65536",   "h:",   ":80",   "[::1]",
                                      "[::1]80", "[nope]:80", "h:8x", "::1:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *y = cdn_xasprintf("%s\nupstream: {address: \"%s\"}\n", min_yaml, bad[i]);
        e = load_err(y);
        ck_assert_msg(strstr(e, "upstream.address: expected host:port") != NULL, "%s: %s", bad[i], e);
        free(e);
        free(y);
    }
    static const char *const good[] = {"regional.cdn.test:9443", "127.0.0.1:1", "[::1]:443",
                                       "[2001:db8::1]:65535"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char *y = cdn_xasprintf("%s\nupstream: {address: \"%s\", client_key: k}\n", min_yaml, good[i]);
        e = load_err(y);
        ck_assert_line(e, "5:11: upstream.client_certificate: missing required key (client_key is given)");
        ck_assert_uint_eq(count_lines(e), 1);
        free(e);
        free(y);
    }
}
END_TEST

START_TEST(test_remap_syntax)
{
    char *e = load_err("listeners: [{address: 127.0.0.1, port: 1}]\n"
                       "remap:\n"
                       "  - map http://a/\n"
                       "  - redirect http://a/ http://b/\n"
                       "  - map http://a/ http://b/ extra\n"
                       "  - [map, a, b]\n"
                       "  -\n"
                       "  - map http://c/ http://d/\n");
    ck_assert_line(
        e, "3:5: remap[0]: expected \"map FROM TO [@upstream=NAME | @group=NAME]\", got \"map http://a/\"");
    ck_assert_line(e, "4:5: remap[1]: unsupported rule type \"redirect\" (only \"map\" is supported)");
    ck_assert_line(
        e, "5:5: remap[2]: unknown option \"extra\" (the options are @upstream=NAME and @group=NAME)");
    ck_assert_line(e, "6:5: remap[3]: expected a string \"map FROM TO\", got a sequence");
    ck_assert_line(e, "7:4: remap[4]: expected a string \"map FROM TO\", got an empty value");
    ck_assert_uint_eq(count_lines(e), 5);
    free(e);

    e = load_err("listeners: [{address: 127.0.0.1, port: 1}]\nremap: map a b\n");
    ck_assert_line(e, "2:8: remap: expected a sequence of \"map FROM TO\" strings, got \"map a b\"");
    free(e);
}
END_TEST

START_TEST(test_syntax_error)
{
    char *e = load_err("listeners:\n"
                       "  - address: [1\n"
                       "    port: 2\n");
    ck_assert_line(
        e, "3:9: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence at "
           "2:14)");
    ck_assert_uint_eq(count_lines(e), 1);
    free(e);

    e = load_err("role: edge\n"
                 "listeners:\n"
                 "  - address: 1.2.3.4\n"
                 "   port: 2\n");
    ck_assert_line(e, "4:4: YAML syntax error: did not find expected '-' indicator (while parsing a block "
                      "collection at 3:3)");
    free(e);

    e = load_err("via: \"unterminated\n");
    ck_assert_line(
        e, "2:1: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar at "
           "1:6)");
    free(e);

    e = load_err("via: x\nworkers: \x01\n");
    ck_assert_line(e, "2:10: invalid input: control characters are not allowed");
    free(e);

    e = load_err("via: x\n---\nvia: y\n");
    ck_assert_line(e, "2:1: only one YAML document is allowed per file");
    free(e);
}
END_TEST

START_TEST(test_empty_and_not_a_map)
{
    char *e = load_err("");
    ck_assert_line(e, "1:1: the file is empty; expected a map of settings (see docs/CONFIG.md)");
    free(e);
    e = load_err("# only a comment\n\n");
    ck_assert_line(e, "1:1: the file is empty; expected a map of settings (see docs/CONFIG.md)");
    free(e);
    e = load_err("---\n...\n");
    ck_assert_line(e, "1:1: the file is empty; expected a map of settings (see docs/CONFIG.md)");
    free(e);
    e = load_err("- a\n- b\n");
    ck_assert_line(e, "1:1: the top level must be a map of settings, got a sequence");
    free(e);
    e = load_err("just a string\n");
    ck_assert_line(e, "1:1: the top level must be a map of settings, got \"just a string\"");
    free(e);
}
END_TEST

START_TEST(test_cannot_open)
{
    char *path = cdn_xasprintf("%s/absent.yaml", tmpdir), *err = NULL, *want;
    struct cdn_conf *c = NULL;
    ck_assert_int_eq(cdn_conf_load(path, &c, &err), -1);
    ck_assert_ptr_null(c);
    want = cdn_xasprintf("%s: cannot open: No such file or directory", path);
    ck_assert_str_eq(err, want);
    free(want);
    free(err);
    err = NULL;
    ck_assert_int_eq(cdn_conf_load(tmpdir, &c, &err), -1);
    want = cdn_xasprintf("%s: cannot read: Is a directory", tmpdir);
    ck_assert_str_eq(err, want);
    free(want);
    free(err);
    free(path);
}
END_TEST

START_TEST(test_multiple_errors)
{
    char *e = load_err("role: both\n"
                       "workers: many\n"
                       "listeners:\n"
                       "  - address: 1.2.3.4\n"
                       "    port: http\n"
                       "    extra: 1\n"
                       "log:\n"
                       "  level: loud\n");
    ck_assert_uint_eq(count_lines(e), 5);
    /* In file order. */
    const char *a = strstr(e, "\n1:7: role:"), *b = strstr(e, "\n2:10: workers:"),
               *c = strstr(e, "\n5:11: listeners"), *d = strstr(e, "\n6:5: listeners[0].extra"),
               *f = strstr(e, "\n8:10: log.level");
    ck_assert(a && b && c && d && f);
    ck_assert(a < b && b < c && c < d && d < f);
    free(e);

    /* A flood of problems is cut off with a note rather than growing without bound. */
    char *y = cdn_xstrdup("listeners: [{address: 127.0.0.1, port: 1}]\n");
    for (int i = 0; i < 150; i++) {
        char *n = cdn_xasprintf("%sk%d: 1\n", y, i);
        free(y);
        y = n;
    }
    e = load_err(y);
    ck_assert_uint_eq(count_lines(e), 101);
    ck_assert_ptr_nonnull(strstr(e, "\n too many errors, stopped reporting after 100\n"));
    free(e);
    free(y);
}
END_TEST

START_TEST(test_relative_paths)
{
    char *sub = cdn_xasprintf("%s/etc", tmpdir), *path = cdn_xasprintf("%s/etc/node.yaml", tmpdir),
         *err = NULL, *p;
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("listeners:\n"
          "  - {address: 127.0.0.1, port: 1, tls: true, certificate: pki/x.crt, key: ../x.key,"
          " ca_file: /etc/ssl/ca.pem}\n"
          "upstream: {client_certificate: c.crt, client_key: ./c.key, ca_file: /ca.crt}\n"
          "log: {error: err.log, access: \"-\"}\n",
          f);
    fclose(f);
    struct cdn_conf *c = NULL;
    ck_assert_msg(cdn_conf_load(path, &c, &err) == 0, "%s", err);
    p = cdn_xasprintf("%s/etc/pki/x.crt", tmpdir);
    ck_assert_str_eq(c->listeners[0].certificate, p);
    free(p);
    p = cdn_xasprintf("%s/etc/../x.key", tmpdir);
    ck_assert_str_eq(c->listeners[0].key, p);
    free(p);
    ck_assert_str_eq(c->listeners[0].ca_file, "/etc/ssl/ca.pem");
    p = cdn_xasprintf("%s/etc/c.crt", tmpdir);
    ck_assert_str_eq(c->upstream.client_certificate, p);
    free(p);
    p = cdn_xasprintf("%s/etc/./c.key", tmpdir);
    ck_assert_str_eq(c->upstream.client_key, p);
    free(p);
    ck_assert_str_eq(c->upstream.ca_file, "/ca.crt");
    p = cdn_xasprintf("%s/etc/err.log", tmpdir);
    ck_assert_str_eq(c->log.error, p);
    free(p);
    ck_assert_str_eq(c->log.access, "-");
    cdn_conf_free(&c);

    /* A config named without a folder keeps relative paths as they are (relative to the cwd, its folder). */
    char *cwd = getcwd(NULL, 0);
    ck_assert_ptr_nonnull(cwd);
    ck_assert_int_eq(chdir(sub), 0);
    ck_assert_msg(cdn_conf_load("node.yaml", &c, &err) == 0, "%s", err);
    ck_assert_str_eq(c->path, "node.yaml");
    ck_assert_str_eq(c->listeners[0].certificate, "pki/x.crt");
    ck_assert_str_eq(c->log.error, "err.log");
    cdn_conf_free(&c);
    ck_assert_int_eq(chdir(cwd), 0);
    free(cwd);
    free(sub);
    free(path);
}
END_TEST

START_TEST(test_hostile_yaml)
{
    /* Aliases are refused (and not followed); anchors alone are harmless. */
    char *e = load_err("via: &v x\n"
                       "listeners: &l [{address: 127.0.0.1, port: 1}]\n"
                       "workers: *v\n"
                       "remap: *l\n");
    ck_assert_line(e, "3:10: aliases (*v) are not supported; repeat the value");
    ck_assert_line(e, "4:8: aliases (*l) are not supported; repeat the value");
    ck_assert_uint_eq(count_lines(e), 2);
    free(e);

    /* Billion laughs: reported, not expanded. */
    e = load_err("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                 "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                 "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                 "d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n");
    ck_assert_ptr_nonnull(strstr(e, "\n2:8: aliases (*a) are not supported"));
    free(e);

    /* Deep nesting stops at a bound instead of exhausting the stack. */
    size_t depth = 100000;
    char *y = cdn_xmalloc(2 * depth + 16), *p = y;
    p += sprintf(p, "via: ");
    memset(p, '[', depth);
    p += depth;
    memset(p, ']', depth);
    p += depth;
    strcpy(p, "\n");
    e = load_err(y);
    ck_assert_line(e, "1:69: nested deeper than 64 levels");
    free(e);
    free(y);

    /* A huge scalar is quoted, shortened, in the message. */
    y = cdn_xmalloc(1024 * 1024 + 64);
    p = y + sprintf(y, "workers: ");
    memset(p, '7', 1024 * 1024);
    strcpy(p + 1024 * 1024, "\n");
    e = load_err(y);
    ck_assert_line(e, "1:10: workers: expected an integer 0..256, got "
                      "\"777777777777777777777777777777777777777777777777...\"");
    free(e);
    free(y);

    /* Tags are ignored; NUL bytes and control characters never reach a string or a message raw. */
    e = load_err("via: !!str \"a\\0b\"\n"
                 "listeners: [{address: 127.0.0.1, port: !!int 1, name: \"x\\ny\"}]\n"
                 "\"bad\\u0007key\": 1\n");
    ck_assert_line(
        e, "1:6: via: expected a token (letters, digits and !#$%&'*+-.^_`|~, at most 64), got a value "
           "with a NUL byte");
    ck_assert_line(
        e, "2:55: listeners[0].name: expected a name of letters, digits, '.', '_' or '-' (at most 64), "
           "got \"x\\x0ay\"");
    ck_assert_line(e, "3:1: bad\\x07key: unknown key");
    ck_assert_uint_eq(count_lines(e), 3);
    free(e);
}
END_TEST

static void check_sample(const char *path, enum cdn_role_kind role, int port, const char *pki_file)
{
    struct cdn_conf *c = NULL;
    struct cdn_remap *r = NULL;
    char *err = NULL;

    ck_assert_msg(access(path, R_OK) == 0, "%s must exist (tests run from the repository root)", path);
    ck_assert_msg(cdn_conf_load(path, &c, &err) == 0, "%s", err);
    ck_assert_int_eq(c->role, role);
    ck_assert_uint_ge(c->nlisteners, 1);
    ck_assert_str_eq(c->listeners[0].address, "127.0.0.1");
    ck_assert_int_eq(c->listeners[0].port, port);
    ck_assert(c->listeners[0].tls);
    ck_assert_str_eq(c->listeners[0].certificate, pki_file);
    ck_assert_str_eq(c->log.error, "-");
    ck_assert_uint_eq(c->nremap, 2);
    ck_assert_msg(cdn_remap_new(c, &r, &err) == 0, "%s", err);
    ck_assert_uint_eq(r->nrules, 2);
    cdn_remap_free(&r);
    cdn_conf_free(&c);
}

START_TEST(test_sample_configs)
{
    check_sample("etc/edge.yaml", CDN_ROLE_EDGE, 8443, "etc/pki/edge.crt");
    check_sample("etc/regional.yaml", CDN_ROLE_REGIONAL, 9443, "etc/pki/regional.crt");

    struct cdn_conf *c = NULL;
    char *err = NULL;
    ck_assert_int_eq(cdn_conf_load("etc/edge.yaml", &c, &err), 0);
    ck_assert_str_eq(c->upstream.client_certificate, "etc/pki/edge-client.crt");
    ck_assert_str_eq(c->upstream.client_key, "etc/pki/edge-client.key");
    ck_assert_str_eq(c->upstream.ca_file, "etc/pki/ca.crt");
    ck_assert(c->upstream.verify);
    ck_assert_str_eq(c->log.access, "etc/access-edge.log");
    cdn_conf_free(&c);
    ck_assert_int_eq(cdn_conf_load("etc/regional.yaml", &c, &err), 0);
    ck_assert_int_eq(c->listeners[0].client_auth, CDN_CLIENT_AUTH_REQUIRE);
    ck_assert_str_eq(c->listeners[0].ca_file, "etc/pki/ca.crt");
    ck_assert_str_eq(c->log.access, "etc/access-regional.log");
    cdn_conf_free(&c);
}
END_TEST

struct doc_check {
    const char *doc;
    size_t nkeys;
    char *missing;
};

static void on_key(const char *path, void *arg)
{
    struct doc_check *dc = arg;
    char *quoted = cdn_xasprintf("`%s`", path);
    dc->nkeys++;
    if (strstr(dc->doc, quoted) == NULL)
        cdn_strappendf(&dc->missing, "%s", path);
    free(quoted);
}

START_TEST(test_docs_cover_every_key)
{
    FILE *f = fopen("docs/CONFIG.md", "r");
    ck_assert_msg(f != NULL, "docs/CONFIG.md must exist (tests run from the repository root)");
    char *doc = cdn_xmalloc(1024 * 1024);
    size_t n = fread(doc, 1, 1024 * 1024 - 1, f);
    fclose(f);
    doc[n] = '\0';
    struct doc_check dc = {doc, 0, NULL};
    cdn_conf_keys(on_key, &dc);
    ck_assert_uint_ge(dc.nkeys, 40); /* the walk reached every table, cache included */
    ck_assert_msg(dc.missing == NULL, "keys not documented in docs/CONFIG.md:\n%s", dc.missing);
    free(doc);
}
END_TEST


#define TLS_LISTENER             \
    "role: regional\n"           \
    "listeners:\n"               \
    "  - address: 127.0.0.1\n"   \
    "    port: 0\n"              \
    "    tls: true\n"            \
    "    certificate: r.crt\n"   \
    "    key: r.key\n"           \
    "    client_auth: require\n" \
    "    ca_file: ca.crt\n"

#define FP64 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

START_TEST(test_pins_and_log_only)
{
    struct cdn_conf *c =
        load_ok(TLS_LISTENER "    allowed_sans: [edge-1.example, '*.edges.example', 'spiffe://cdn/e']\n"
                             "    allowed_fingerprints:\n"
                             "      - " FP64 "\n"
                             "sni:\n"
                             "  - fqdn: a.example\n"
                             "    verify_client: STRICT\n"
                             "    allowed_fingerprints: ['00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
                             "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF']\n"
                             "    log_only: true\n");
    ck_assert_uint_eq(c->listeners[0].allowed_sans.n, 3);
    ck_assert_str_eq(c->listeners[0].allowed_sans.v[1], "*.edges.example");
    ck_assert_uint_eq(c->listeners[0].allowed_fingerprints.n, 1);
    ck_assert_uint_eq(c->sni[0].allowed_fingerprints.n, 1);
    ck_assert(c->sni[0].log_only);
    ck_assert_uint_eq(c->sni[0].allowed_sans.n, 0);
    cdn_conf_free(&c);

    char *errs = load_err(TLS_LISTENER "    allowed_sans: [ok.example, 'a b', '*']\n"
                                       "    allowed_fingerprints: [abcd, " FP64 "]\n"
                                       "sni:\n"
                                       "  - fqdn: a.example\n"
                                       "    allowed_sans: one.example\n"
                                       "    log_only: maybe\n");
    ck_assert_line(errs, "10:32: listeners[0].allowed_sans[1]: expected a subjectAltName value "
                         "(DNS name, \"*.\" and a domain, URI, email or IP address), got \"a b\"");
    ck_assert_line(errs, "10:39: listeners[0].allowed_sans[2]: expected a subjectAltName value "
                         "(DNS name, \"*.\" and a domain, URI, email or IP address), got \"*\"");
    ck_assert_line(errs, "11:28: listeners[0].allowed_fingerprints[0]: expected a SHA-256 "
                         "fingerprint (64 hex digits, ':' between pairs allowed), got \"abcd\"");
    ck_assert_line(errs,
                   "14:19: sni[0].allowed_sans: expected a sequence, each a subjectAltName value (DNS name, "
                   "\"*.\" and a domain, URI, email or IP address); got \"one.example\"");
    ck_assert_line(errs,
                   "15:15: sni[0].log_only: expected a boolean (true/false, yes/no, on/off), got \"maybe\"");
    ck_assert_uint_eq(count_lines(errs), 5);
    free(errs);

    errs = load_err("role: edge\n"
                    "listeners:\n"
                    "  - address: 127.0.0.1\n"
                    "    port: 0\n"
                    "    allowed_sans: [a.example]\n"
                    "  - address: 127.0.0.1\n"
                    "    port: 1\n"
                    "    tls: true\n"
                    "    certificate: r.crt\n"
                    "    key: r.key\n"
                    "    client_auth: none\n"
                    "    allowed_fingerprints: [" FP64 "]\n");
    ck_assert_line(errs, "5:19: listeners[0].allowed_sans: only allowed with tls: true");
    ck_assert_line(errs, "12:27: listeners[1]: allowed_sans/allowed_fingerprints pin client certificates; "
                         "client_auth none asks for none");
    free(errs);
}
END_TEST

START_TEST(test_identity_and_tls_log)
{
    struct cdn_conf *c = load_ok(TLS_LISTENER);
    ck_assert(!c->identity.client_cert_chain);
    ck_assert(!c->identity.headers);
    ck_assert_str_eq(c->identity.subject_header, "Client-Cert-Subject");
    ck_assert_str_eq(c->identity.issuer_header, "Client-Cert-Issuer");
    ck_assert_str_eq(c->identity.sans_header, "Client-Cert-SANs");
    ck_assert_str_eq(c->identity.fingerprint_header, "Client-Cert-SHA256");
    ck_assert_str_eq(c->identity.status_header, "Client-Cert-Status");
    ck_assert_ptr_null(c->log.tls_failures);
    cdn_conf_free(&c);
    c = load_ok(TLS_LISTENER "identity:\n"
                             "  client_cert_chain: true\n"
                             "  headers: true\n"
                             "  fingerprint_header: X-Edge-Fingerprint\n"
                             "log:\n"
                             "  tls_failures: logs/tls.log\n");
    ck_assert(c->identity.client_cert_chain);
    ck_assert(c->identity.headers);
    ck_assert_str_eq(c->identity.fingerprint_header, "X-Edge-Fingerprint");
    ck_assert_str_eq(c->identity.status_header, "Client-Cert-Status");
    ck_assert_ptr_nonnull(strstr(c->log.tls_failures, "/logs/tls.log"));
    cdn_conf_free(&c);
    char *errs = load_err(TLS_LISTENER "identity:\n"
                                       "  subject_header: 'Bad Header'\n"
                                       "  chain: true\n");
    ck_assert_line(errs,
                   "11:19: identity.subject_header: expected a header name (a token), got \"Bad Header\"");
    ck_assert_line(errs, "12:3: identity.chain: unknown key");
    free(errs);
}
END_TEST

START_TEST(test_sni_yaml)
{
    mkdir(tmp_path("ats"), 0700);
    char *ats = write_file("ats/sni.yaml", "sni:\n"
                                           "  - fqdn: edge.example\n"
                                           "    verify_client: STRICT\n"
                                           "    verify_client_ca_certs: edges-ca.pem\n"
                                           "    ssl_cert_name: edge.pem\n"
                                           "    ssl_key_name: /keys/edge.key\n"
                                           "  - fqdn: '*.Health.example'\n"
                                           "    verify_client: NONE\n");
    struct cdn_conf *c = load_ok(TLS_LISTENER "sni_yaml: ats/sni.yaml\n"
                                              "sni:\n"
                                              "  - fqdn: inline.example\n"
                                              "    verify_client: MODERATE\n");
    ck_assert_uint_eq(c->nsni, 3);
    ck_assert_str_eq(c->sni[0].fqdn, "inline.example"); /* inline rules first, whatever the key order */
    ck_assert_str_eq(c->sni[1].fqdn, "edge.example");
    ck_assert_int_eq(c->sni[1].verify_client, CDN_CLIENT_AUTH_REQUIRE);
    char *want = cdn_xasprintf("%s/ats/edges-ca.pem", tmpdir); /* relative to the sni.yaml's folder */
    ck_assert_str_eq(c->sni[1].ca_file, want);
    free(want);
    want = cdn_xasprintf("%s/ats/edge.pem", tmpdir);
    ck_assert_str_eq(c->sni[1].certificate, want);
    free(want);
    ck_assert_str_eq(c->sni[1].key, "/keys/edge.key");
    ck_assert_str_eq(c->sni[1].src, ats);
    ck_assert_str_eq(c->sni[2].fqdn, "*.health.example");
    ck_assert_str_eq(c->sni[0].src, c->path);
    cdn_conf_free(&c);

    /* unsupported ATS keys by name, at their position in the sni.yaml; a duplicate across files */
    free(ats);
    ats = write_file("ats/sni.yaml", "sni:\n"
                                     "  - fqdn: inline.example\n"
                                     "    tunnel_route: origin:443\n"
                                     "  - fqdn: b.example\n"
                                     "    http2: off\n"
                                     "    valid_tls_versions_in: [TLSv1_2]\n"
                                     "    host_sni_policy: PERMISSIVE\n"
                                     "    ssl_cert_name: b.pem\n"
                                     "    frobnicate: 1\n"
                                     "    ip_allow:\n");
    char *path = write_file("c.yaml", TLS_LISTENER "sni_yaml: ats/sni.yaml\n"
                                                   "sni:\n"
                                                   "  - fqdn: inline.example\n");
    char *err = NULL;
    ck_assert_int_eq(cdn_conf_load(path, &c, &err), -1);
    char *line = cdn_xasprintf("%s:3:19: sni[0].tunnel_route: ATS sni.yaml key \"tunnel_route\" is not "
                               "supported by cdn-node (see docs/MTLS.md)",
                               ats);
    ck_assert_msg(strstr(err, line) != NULL, "%s", err);
    free(line);
    line =
        cdn_xasprintf("%s:2:11: sni[0].fqdn: duplicate fqdn \"inline.example\" (also at %s:12:5)", ats, path);
    ck_assert_msg(strstr(err, line) != NULL, "%s", err);
    free(line);
    const char *names[] = {"http2", "valid_tls_versions_in", "host_sni_policy"};
    for (size_t i = 0; i < 3; i++) {
        line = cdn_xasprintf("sni[1].%s: ATS sni.yaml key \"%s\" is not supported", names[i], names[i]);
        ck_assert_msg(strstr(err, line) != NULL, "%s", err);
        free(line);
    }
    line = cdn_xasprintf("%s:4:5: sni[1].ssl_key_name: ssl_cert_name and ssl_key_name go together", ats);
    ck_assert_msg(strstr(err, line) != NULL, "%s", err);
    free(line);
    line = cdn_xasprintf("%s:9:5: sni[1].frobnicate: unknown key", ats);
    ck_assert_msg(strstr(err, line) != NULL, "%s", err);
    free(line);
    line = cdn_xasprintf("%s:10:14: sni[1].ip_allow: ATS sni.yaml key \"ip_allow\" is not supported", ats);
    ck_assert_msg(strstr(err, line) != NULL, "a refused key without a value: %s", err);
    free(line);
    free(err);

    /* a missing file, and a file that is not an sni.yaml */
    free(path);
    path = write_file("c.yaml", TLS_LISTENER "sni_yaml: nowhere.yaml\n");
    ck_assert_int_eq(cdn_conf_load(path, &c, &err), -1);
    line = cdn_xasprintf("%s:10:11: sni_yaml: %s/nowhere.yaml: cannot open: No such file or directory", path,
                         tmpdir);
    ck_assert_msg(strstr(err, line) != NULL, "%s", err);
    free(line);
    free(err);
    free(ats);
    ats = write_file("ats/sni.yaml", "- fqdn: a\n");
    free(path);
    path = write_file("c.yaml", TLS_LISTENER "sni_yaml: ats/sni.yaml\n");
    ck_assert_int_eq(cdn_conf_load(path, &c, &err), -1);
    line = cdn_xasprintf("%s:1:1: an ATS sni.yaml is a map with an \"sni\" sequence, got a sequence", ats);
    ck_assert_msg(strstr(err, line) != NULL, "%s", err);
    free(line);
    free(err);
    free(path);
    free(ats);
}
END_TEST

START_TEST(test_upstream_profiles)
{
    struct cdn_conf *c = load_ok("listeners: [{address: 127.0.0.1, port: 1}]\n"
                                 "remap:\n"
                                 "  - map http://a/ https://b/ @upstream=p2\n"
                                 "  - map http://c/ https://d/\n"
                                 "  - map http://e/ https://f/ @upstream=p1\n"
                                 "upstream:\n"
                                 "  crl_file: default.crl\n"
                                 "upstreams:\n"
                                 "  - name: p1\n"
                                 "    client_certificate: p1.crt\n"
                                 "    client_key: p1.key\n"
                                 "    verify: false\n"
                                 "  - name: p2\n"
                                 "    crl_file: /crl/p2.crl\n"
                                 "    verify_server_policy: PERMISSIVE\n"
                                 "    server_name: origin.example\n");
    ck_assert_uint_eq(c->nupstreams, 2);
    ck_assert_str_eq(c->upstreams[0].name, "p1");
    ck_assert_ptr_nonnull(strstr(c->upstreams[0].client_certificate, "/p1.crt"));
    ck_assert_int_eq(c->upstreams[0].verify_policy, CDN_VERIFY_DISABLED);
    ck_assert(!c->upstreams[0].verify);
    ck_assert_str_eq(c->upstreams[1].crl_file, "/crl/p2.crl");
    ck_assert_int_eq(c->upstreams[1].verify_policy, CDN_VERIFY_PERMISSIVE);
    ck_assert(c->upstreams[1].verify);
    ck_assert_ptr_nonnull(strstr(c->upstream.crl_file, "/default.crl"));
    ck_assert_ptr_null(c->upstream.name);
    ck_assert_uint_eq(c->remap[0].upstream, 2); /* 1 + index */
    ck_assert_uint_eq(c->remap[1].upstream, 0); /* upstream: */
    ck_assert_uint_eq(c->remap[2].upstream, 1);
    struct cdn_remap *r = NULL;
    char *err = NULL;
    ck_assert_msg(cdn_remap_new(c, &r, &err) == 0, "%s", err);
    ck_assert_ptr_eq(cdn_remap_upstream(c, &r->rules[0]), &c->upstreams[1]);
    ck_assert_ptr_eq(cdn_remap_upstream(c, &r->rules[1]), &c->upstream);
    cdn_remap_free(&r);
    cdn_conf_free(&c);

    char *e = load_err("listeners: [{address: 127.0.0.1, port: 1}]\n"
                       "remap:\n"
                       "  - map http://a/ https://b/ @upstream=nope\n"
                       "  - map http://a/ https://b/ @upstream=\n"
                       "upstreams:\n"
                       "  - name: p1\n"
                       "    client_certificate: p1.crt\n"
                       "  - name: p1\n"
                       "  - crl_file: x.crl\n"
                       "upstream:\n"
                       "  name: default\n");
    ck_assert_line(e, "3:5: remap[0]: @upstream=nope: no such profile in upstreams:");
    ck_assert_line(
        e, "4:5: remap[1]: unknown option \"@upstream=\" (the options are @upstream=NAME and @group=NAME)");
    ck_assert_line(e, "6:5: upstreams[0].client_key: missing required key (client_certificate is given)");
    ck_assert_line(e, "8:11: upstreams[1].name: duplicate upstream name \"p1\" (also upstreams[0] at 6:5)");
    ck_assert_line(e, "9:5: upstreams[2].name: missing required key");
    ck_assert_line(e, "11:3: upstream.name: unknown key");
    ck_assert_uint_eq(count_lines(e), 6);
    free(e);
    e = load_err("listeners: [{address: 127.0.0.1, port: 1}]\n"
                 "remap:\n"
                 "  - map http://a/ https://b/ @upstream=p\n");
    ck_assert_line(e,
                   "3:5: remap[0]: @upstream=p: no such profile in upstreams: (there is no upstreams: list)");
    free(e);
}
END_TEST

START_TEST(test_upstream_groups)
{
    struct cdn_conf *c = load_ok("listeners: [{address: 127.0.0.1, port: 1}]\n"
                                 "remap:\n"
                                 "  - map http://a/ https://b/ @group=g2\n"
                                 "  - map http://c/ https://d/\n"
                                 "upstreams: [{name: p}]\n"
                                 "upstream_groups:\n"
                                 "  - name: g1\n"
                                 "    parents: [{address: 10.0.0.1:443}]\n"
                                 "  - name: g2\n"
                                 "    policy: first_live\n"
                                 "    upstream: p\n"
                                 "    retries: 0\n"
                                 "    go_direct: true\n"
                                 "    keepalive: false\n"
                                 "    parents:\n"
                                 "      - {address: \"[::1]:8443\", weight: 3, name: r1}\n"
                                 "      - address: r2.example:443\n"
                                 "    health: {fail_threshold: 1, backoff: 2s, check_path: /healthz,\n"
                                 "             check_interval: 1s, check_timeout: 500ms}\n");
    ck_assert_uint_eq(c->nugroups, 2);
    const struct cdn_conf_ugroup *g = &c->ugroups[0];
    ck_assert_int_eq(g->policy, CDN_UGROUP_CONSISTENT_HASH); /* defaults */
    ck_assert_uint_eq(g->retries, 2);
    ck_assert(!g->go_direct);
    ck_assert(g->keepalive);
    ck_assert_uint_eq(g->profile, 0);
    ck_assert_uint_eq(g->health.fail_threshold, 3);
    ck_assert_uint_eq(g->health.backoff_ms, 10000);
    ck_assert_ptr_null(g->health.check_path);
    ck_assert_uint_eq(g->health.check_interval_ms, 5000);
    ck_assert_uint_eq(g->health.check_timeout_ms, 2000);
    ck_assert_uint_eq(g->parents[0].weight, 1);
    ck_assert_str_eq(g->parents[0].name, "10.0.0.1:443"); /* the address by default */
    g = &c->ugroups[1];
    ck_assert_int_eq(g->policy, CDN_UGROUP_FIRST_LIVE);
    ck_assert_uint_eq(g->profile, 1);
    ck_assert_uint_eq(g->retries, 0);
    ck_assert(g->go_direct);
    ck_assert(!g->keepalive);
    ck_assert_uint_eq(g->nparents, 2);
    ck_assert_str_eq(g->parents[0].name, "r1");
    ck_assert_uint_eq(g->parents[0].weight, 3);
    ck_assert_str_eq(g->parents[1].address, "r2.example:443");
    ck_assert_uint_eq(g->health.fail_threshold, 1);
    ck_assert_uint_eq(g->health.backoff_ms, 2000);
    ck_assert_str_eq(g->health.check_path, "/healthz");
    ck_assert_uint_eq(g->health.check_interval_ms, 1000);
    ck_assert_uint_eq(g->health.check_timeout_ms, 500);
    ck_assert_uint_eq(c->remap[0].group, 2);
    ck_assert_uint_eq(c->remap[1].group, 0);
    struct cdn_remap *r = NULL;
    char *err = NULL;
    ck_assert_int_eq(cdn_remap_new(c, &r, &err), 0);
    ck_assert_uint_eq(r->rules[0].group, 2);
    ck_assert_uint_eq(cdn_remap_profile(c, &r->rules[0]), 1); /* the group's profile */
    ck_assert_ptr_eq(cdn_remap_upstream(c, &r->rules[0]), &c->upstreams[0]);
    ck_assert_ptr_eq(cdn_remap_upstream(c, &r->rules[1]), &c->upstream);
    cdn_remap_free(&r);
    cdn_conf_free(&c);

    char *e =
        load_err("listeners: [{address: 127.0.0.1, port: 1}]\n"
                 "remap:\n"
                 "  - map http://a/ https://b/ @group=nope\n"
                 "  - map http://a/ https://b/ @group=g @upstream=p\n"
                 "upstream_groups:\n"
                 "  - name: g\n"
                 "    policy: random\n"
                 "    upstream: missing\n"
                 "    parents: [{address: nohost}, {address: 1.2.3.4:5, weight: 0}, {address: 1.2.3.4:5}]\n"
                 "  - name: g\n"
                 "    parents: []\n"
                 "    health: {check_path: healthz}\n"
                 "  - parents: [{name: x}]\n");
    ck_assert_line(e, "3:5: remap[0]: @group=nope: no such group in upstream_groups:");
    ck_assert_line(e, "4:5: remap[1]: give @upstream=NAME or @group=NAME, not both (a group's profile is its "
                      "upstream: key)");
    ck_assert_msg(strstr(e, "7:13: upstream_groups[0].policy: expected one of consistent_hash") != NULL, "%s",
                  e);
    ck_assert_line(
        e, "8:15: upstream_groups[0].upstream: no such profile \"missing\" in upstreams: (there is no "
           "upstreams: list)");
    ck_assert_msg(strstr(e, "9:25: upstream_groups[0].parents[0].address: expected host:port") != NULL, "%s",
                  e);
    ck_assert_msg(strstr(e, "upstream_groups[0].parents[1].weight: expected") != NULL, "%s", e);
    ck_assert_msg(strstr(e, "upstream_groups[0].parents[2]: duplicate parent \"1.2.3.4:5\"") != NULL, "%s",
                  e);
    ck_assert_msg(strstr(e, "10:11: upstream_groups[1].name: duplicate group name \"g\"") != NULL, "%s", e);
    ck_assert_msg(
        strstr(e, "11:14: upstream_groups[1].parents: expected a sequence of parent maps (at least one)") !=
            NULL,
        "%s", e);
    ck_assert_msg(strstr(e, "upstream_groups[1].health.check_path: expected a path starting with '/'") !=
                      NULL,
                  "%s", e);
    ck_assert_msg(strstr(e, "upstream_groups[2].name: missing required key") != NULL, "%s", e);
    ck_assert_msg(strstr(e, "upstream_groups[2].parents[0].address: missing required key") != NULL, "%s", e);
    free(e);
}
END_TEST

START_TEST(test_cache_block)
{
    struct cdn_conf *c = load_ok(min_yaml);
    ck_assert_ptr_null(c->cache.path); /* no cache unless configured */
    ck_assert_uint_eq(c->cache.size, 1ull << 30);
    ck_assert_uint_eq(c->cache.max_object_size, 64ull << 20);
    cdn_conf_free(&c);
    c = load_ok("listeners: [{address: 127.0.0.1, port: 0}]\n"
                "cache:\n"
                "  path: store\n"
                "  size: 2GiB\n"
                "  max_object_size: 1MiB\n"
                "  name: edge-fra1\n"
                "  ignore_query: yes\n"
                "  ignore_params: [utm_source, utm_medium]\n");
    char *want = cdn_xasprintf("%s/store", tmpdir);
    ck_assert_str_eq(c->cache.path, want);
    free(want);
    ck_assert_uint_eq(c->cache.size, 2ull << 30);
    ck_assert_uint_eq(c->cache.max_object_size, 1ull << 20);
    ck_assert_str_eq(c->cache.name, "edge-fra1");
    ck_assert(c->cache.ignore_query);
    ck_assert_uint_eq(c->cache.nignore_params, 2);
    ck_assert_str_eq(c->cache.ignore_params[1], "utm_medium");
    cdn_conf_free(&c);
    char *errs = load_err("listeners: [{address: 127.0.0.1, port: 0}]\n"
                          "cache:\n"
                          "  size: 10\n"
                          "  ignore_params: [\"a=b\"]\n");
    ck_assert_line(errs, "3:3: cache.path: missing required key");
    ck_assert_msg(strstr(errs, "3:9: cache.size:") != NULL, "%s", errs);
    ck_assert_msg(strstr(errs, "4:19: cache.ignore_params[0]: expected a query parameter name") != NULL, "%s",
                  errs);
    free(errs);
}
END_TEST

START_TEST(test_names_and_free)
{
    ck_assert_int_eq(cdn_conf_role_parse("edge"), CDN_ROLE_EDGE);
    ck_assert_int_eq(cdn_conf_role_parse("regional"), CDN_ROLE_REGIONAL);
    ck_assert_int_eq(cdn_conf_role_parse("Edge"), CDN_ROLE_UNSET);
    ck_assert_int_eq(cdn_conf_role_parse(""), CDN_ROLE_UNSET);
    ck_assert_int_eq(cdn_conf_role_parse(NULL), CDN_ROLE_UNSET);
    ck_assert_str_eq(cdn_conf_role_name(CDN_ROLE_EDGE), "edge");
    ck_assert_str_eq(cdn_conf_role_name(CDN_ROLE_REGIONAL), "regional");
    ck_assert_str_eq(cdn_conf_role_name(CDN_ROLE_UNSET), "unset");
    ck_assert_str_eq(cdn_conf_client_auth_name(CDN_CLIENT_AUTH_UNSET), "unset");
    ck_assert_str_eq(cdn_conf_client_auth_name(CDN_CLIENT_AUTH_NONE), "none");
    ck_assert_str_eq(cdn_conf_client_auth_name(CDN_CLIENT_AUTH_REQUEST), "request");
    ck_assert_str_eq(cdn_conf_client_auth_name(CDN_CLIENT_AUTH_REQUIRE), "require");
    ck_assert_str_eq(cdn_conf_client_auth_name(7), "invalid");

    struct cdn_conf *c = NULL;
    cdn_conf_free(NULL);
    cdn_conf_free(&c);
    ck_assert_ptr_null(c);
}
END_TEST

/* tunnel: routes compile with their position, match the whole target only, ports default to 443 */
START_TEST(test_tunnel_block)
{
    struct cdn_conf *c = load_ok(min_yaml);
    ck_assert_uint_eq(c->tunnel.nlisteners, 0);
    ck_assert(!cdn_conf_tunnel_listener(c, "listener0")); /* off unless configured */
    ck_assert(cdn_conf_tunnel_port_allowed(c, 443));
    ck_assert(!cdn_conf_tunnel_port_allowed(c, 8443));
    ck_assert_uint_eq(c->tunnel.idle_timeout_ms, 300000);
    cdn_conf_free(&c);

    c = load_ok("listeners:\n"
                "  - {name: proxy, address: 127.0.0.1, port: 0}\n"
                "tunnel:\n"
                "  listeners: [proxy]\n"
                "  routes:\n"
                "    - {match: '.*[.]svc[.]test:443', peer: 'regional.test:4443'}\n"
                "    - {match: 'a)|(b)', peer: '[::1]:8443'}\n"
                "    - {match: 'DB[0-9]+\\.svc\\.test:(5432|6432)', peer: '10.0.0.2:443'}\n"
                "  connect_ports: [443, 8443]\n"
                "  idle_timeout: 90s\n");
    ck_assert(cdn_conf_tunnel_listener(c, "proxy"));
    ck_assert(!cdn_conf_tunnel_listener(c, "other"));
    ck_assert_uint_eq(c->tunnel.nroutes, 3);
    ck_assert_str_eq(c->tunnel.routes[0].peer_host, "regional.test");
    ck_assert_int_eq(c->tunnel.routes[0].peer_port, 4443);
    ck_assert_str_eq(c->tunnel.routes[1].peer_host, "::1");
    ck_assert_int_eq(c->tunnel.routes[1].peer_port, 8443);
    ck_assert_ptr_eq(cdn_conf_tunnel_route(c, "www.svc.test:443"), &c->tunnel.routes[0]);
    ck_assert_ptr_eq(cdn_conf_tunnel_route(c, "WWW.SVC.TEST:443"),
                     &c->tunnel.routes[0]); /* names: any case */
    /* anchored: a match inside the target is not a match of the target */
    ck_assert_ptr_null(cdn_conf_tunnel_route(c, "www.svc.test:4431"));
    ck_assert_ptr_null(cdn_conf_tunnel_route(c, "www.svc.test:443.evil"));
    /* "a)|(b)" has a literal ')' in glibc's ERE: it must still match only the whole target */
    ck_assert_ptr_eq(cdn_conf_tunnel_route(c, "a)"), &c->tunnel.routes[1]);
    ck_assert_ptr_null(cdn_conf_tunnel_route(c, "a)xyz"));
    ck_assert_ptr_eq(cdn_conf_tunnel_route(c, "db7.svc.test:6432"), &c->tunnel.routes[2]); /* order: 3rd */
    ck_assert_ptr_null(cdn_conf_tunnel_route(c, "db7.svc.test:7432"));
    ck_assert(cdn_conf_tunnel_port_allowed(c, 8443));
    ck_assert(!cdn_conf_tunnel_port_allowed(c, 22));
    ck_assert_uint_eq(c->tunnel.idle_timeout_ms, 90000);
    cdn_conf_free(&c);

    char *e = load_err("listeners:\n"
                       "  - {name: proxy, address: 127.0.0.1, port: 0}\n"
                       "tunnel:\n"
                       "  listeners: [proxy, nope]\n"
                       "  routes:\n"
                       "    - {match: '(unclosed', peer: 'r.test:443'}\n"
                       "    - {match: 'x', peer: 'no-port'}\n"
                       "    - {peer: 'r.test:443'}\n"
                       "  connect_ports: [0, 443, http]\n");
    ck_assert_line(e, "4:14: tunnel.listeners[1]: no listener is named \"nope\"");
    ck_assert_line(e, "6:15: tunnel.routes[0].match: bad regular expression: Unmatched ( or \\(");
    ck_assert_line(e, "7:26: tunnel.routes[1].peer: expected host:port (an IPv6 address as [::1]:443), got "
                      "\"no-port\"");
    ck_assert_line(e, "8:7: tunnel.routes[2].match: missing required key");
    ck_assert_line(e, "9:19: tunnel.connect_ports[0]: expected a port 1..65535, got \"0\"");
    ck_assert_line(e, "9:27: tunnel.connect_ports[2]: expected a port 1..65535, got \"http\"");
    ck_assert_uint_eq(count_lines(e), 6);
    free(e);

    e = load_err("listeners: [{address: 127.0.0.1, port: 0}]\n"
                 "tunnel:\n"
                 "  routes: [{match: 'x:1', peer: 'r.test:443'}]\n"
                 "  connect_ports: []\n");
    ck_assert_line(e,
                   "3:11: tunnel.routes: routes need tunnel.listeners (the listeners that accept CONNECT)");
    ck_assert_line(e, "4:18: tunnel.connect_ports: expected a non-empty sequence of ports 1..65535, got a "
                      "sequence");
    free(e);
}
END_TEST

Suite *suite_conf(void)
{
    Suite *s = suite_create("conf");
    TCase *tc = tcase_create("load");
    /* Unchecked: the folder is made once in the runner and removed even when a test fails. */
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_full_config);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_null_values_keep_defaults);
    tcase_add_test(tc, test_bool_spellings);
    tcase_add_test(tc, test_unknown_key);
    tcase_add_test(tc, test_wrong_type);
    tcase_add_test(tc, test_missing_required);
    tcase_add_test(tc, test_duplicate_key);
    tcase_add_test(tc, test_bad_enum);
    tcase_add_test(tc, test_bad_duration_size);
    tcase_add_test(tc, test_port_range);
    tcase_add_test(tc, test_tls_rules);
    tcase_add_test(tc, test_listener_names_and_addresses);
    tcase_add_test(tc, test_upstream_rules);
    tcase_add_test(tc, test_remap_syntax);
    tcase_add_test(tc, test_syntax_error);
    tcase_add_test(tc, test_empty_and_not_a_map);
    tcase_add_test(tc, test_cannot_open);
    tcase_add_test(tc, test_multiple_errors);
    tcase_add_test(tc, test_relative_paths);
    tcase_add_test(tc, test_hostile_yaml);
    tcase_add_test(tc, test_sample_configs);
    tcase_add_test(tc, test_docs_cover_every_key);
    tcase_add_test(tc, test_names_and_free);
    tcase_add_test(tc, test_cache_block);
    tcase_add_test(tc, test_pins_and_log_only);
    tcase_add_test(tc, test_identity_and_tls_log);
    tcase_add_test(tc, test_sni_yaml);
    tcase_add_test(tc, test_upstream_profiles);
    tcase_add_test(tc, test_upstream_groups);
    tcase_add_test(tc, test_tunnel_block);
    suite_add_tcase(s, tc);
    return s;
}
