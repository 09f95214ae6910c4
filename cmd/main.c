/*
 * cdn-node: entry point. A table of subcommands; each parses its own options.
 *   run            serve as edge or regional
 *   check-config   load and validate a config (TLS material included), exit 0 or 1
 *   ca-check       judge CA bundles (cmd/ca_check.c)
 *   reload         ask a running node to reload (cmd/reload.c)
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/ca_check.h"
#include "cmd/reload.h"
#include "lib/conf.h"
#include "lib/log.h"
#include "lib/server.h"
#include "lib/util.h"
#include "roles/role.h"

#ifndef CDN_VERSION
#define CDN_VERSION "0.0.0"
#endif

struct cmd_opts {
    const char *config;
    const char *role;
    const char *ports_file;
    const char *pid_file;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: cdn-node <command> [options]\n"
               "\n"
               "commands:\n"
               "  run           --config FILE [--role edge|regional] [--ports-file FILE] [--pid-file FILE]\n"
               "                serve; the --role flag wins over the role in the file. SIGHUP\n"
               "                reloads the config and every certificate, SIGTERM drains, SIGUSR1\n"
               "                reopens the logs\n"
               "  reload        --config FILE [--ports-file FILE] [--pid-file FILE] [--timeout SECONDS]\n"
               "                reload a running node: POST /reload to its admin listener and wait\n"
               "                for the verdict (exit 0 reloaded, 1 refused); without a plain admin\n"
               "                listener, send SIGHUP to the pid in --pid-file\n"
               "  check-config  --config FILE [--role edge|regional]\n"
               "                validate the config and its certificates; exit 0 if good, 1 with\n"
               "                file:line:col: message lines otherwise\n"
               "  ca-check      [--warn-days N] [--leaf client|server] FILE...\n"
               "                judge CA bundles (or leaf certificates) the way a truststore does: one\n"
               "                verdict per certificate; exit 0 if no errors, 1 on errors, 2 on bad input\n"
               "  --help        this text\n"
               "  --version     print the version\n"
               "\n"
               "docs: docs/CONFIG.md (every key), docs/ARCHITECTURE.md (how a request flows)\n");
}

static int parse_opts(int argc, char **argv, struct cmd_opts *o)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"role", required_argument, NULL, 'r'},
                                             {"ports-file", required_argument, NULL, 'p'},
                                             {"pid-file", required_argument, NULL, 'P'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:r:p:P:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o->config = optarg;
            break;
        case 'r':
            o->role = optarg;
            break;
        case 'p':
            o->ports_file = optarg;
            break;
        case 'P':
            o->pid_file = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "cdn-node: unexpected argument: %s\n", argv[optind]);
        return -1;
    }
    if (o->config == NULL) {
        fprintf(stderr, "cdn-node: --config FILE is required\n");
        return -1;
    }
    return 0;
}

/* Loads the config, settles the role and runs the role's checks. 0, or -1 + *err (heap: every
 * problem, one per line); *warn (heap or NULL) holds the role's warnings either way. */
static int load_conf(const char *config, const char *role_flag, struct cdn_conf **conf,
                     const struct cdn_role **role, char **err, char **warn)
{
    *warn = NULL;
    if (cdn_conf_load(config, conf, err) != 0)
        return -1;
    if (role_flag != NULL) {
        enum cdn_role_kind k = cdn_conf_role_parse(role_flag);
        if (k == CDN_ROLE_UNSET) {
            *err = cdn_xasprintf("cdn-node: --role %s: expected edge or regional", role_flag);
            goto fail;
        }
        (*conf)->role = k;
    }
    *role = cdn_role_find((*conf)->role);
    if (*role == NULL) {
        *err = cdn_xasprintf("%s: no role: set \"role: edge|regional\" in the file or pass --role", config);
        goto fail;
    }
    if ((*role)->validate(*conf, err, warn) != 0)
        goto fail;
    return 0;
fail:
    cdn_conf_free(conf);
    return -1;
}

/* load_conf for the command line: problems and warnings go to stderr. */
static int load(const struct cmd_opts *o, struct cdn_conf **conf, const struct cdn_role **role)
{
    char *err = NULL, *warn = NULL;
    int rc = load_conf(o->config, o->role, conf, role, &err, &warn);
    if (warn != NULL)
        fprintf(stderr, "%s\n", warn);
    if (err != NULL)
        fprintf(stderr, "%s\n", err);
    free(warn);
    free(err);
    return rc;
}

/* The server's reload loader: the same file and --role as at start; warnings go to the log. */
static int reload_loader(void *arg, struct cdn_conf **conf, struct cdn_server_policy *policy, char **err)
{
    const struct cmd_opts *o = arg;
    const struct cdn_role *role = NULL;
    char *warn = NULL;
    int rc = load_conf(o->config, o->role, conf, &role, err, &warn);
    if (warn != NULL)
        cdn_log(CDN_LOG_WARN, "%s", warn);
    free(warn);
    if (rc == 0)
        cdn_role_policy(role, policy);
    return rc;
}

static int write_pid_file(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0) {
        cdn_log(CDN_LOG_ERROR, "cannot write pid file %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int cmd_check_config(int argc, char **argv)
{
    struct cmd_opts o = {0};
    if (parse_opts(argc, argv, &o) != 0)
        return 2;
    struct cdn_conf *conf = NULL;
    const struct cdn_role *role = NULL;
    if (load(&o, &conf, &role) != 0)
        return 1;
    struct cdn_server_policy policy;
    cdn_role_policy(role, &policy);
    struct cdn_server srv;
    char *err = NULL;
    size_t nlisteners = conf->nlisteners, nremap = conf->nremap;
    int rc = cdn_server_init(&srv, &conf, &policy, &err);
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
        free(err);
    } else {
        printf("%s: ok (role %s, %zu listeners, %zu remap rules)\n", o.config, role->name, nlisteners,
               nremap);
    }
    cdn_server_dispose(&srv);
    return rc == 0 ? 0 : 1;
}

static int cmd_run(int argc, char **argv)
{
    struct cmd_opts o = {0};
    if (parse_opts(argc, argv, &o) != 0)
        return 2;
    struct cdn_conf *conf = NULL;
    const struct cdn_role *role = NULL;
    if (load(&o, &conf, &role) != 0)
        return 1;
    char *err = NULL;
    if (cdn_log_open(&conf->log, &err) != 0) {
        fprintf(stderr, "%s\n", err);
        free(err);
        cdn_conf_free(&conf);
        return 1;
    }
    struct cdn_server_policy policy;
    cdn_role_policy(role, &policy);
    struct cdn_server srv;
    int rc = cdn_server_init(&srv, &conf, &policy, &err);
    srv.loader = reload_loader;
    srv.loader_arg = &o;
    if (rc == 0)
        rc = cdn_server_open_cache(&srv, &err);
    if (rc == 0)
        rc = cdn_server_bind(&srv, &err);
    if (rc == 0 && o.ports_file != NULL && cdn_server_write_ports(&srv, o.ports_file) != 0)
        rc = -1, err = cdn_xasprintf("cannot write ports file %s", o.ports_file);
    if (rc == 0 && o.pid_file != NULL && write_pid_file(o.pid_file) != 0)
        rc = -1, err = cdn_xasprintf("cannot write pid file %s: %s", o.pid_file, strerror(errno));
    if (rc == 0)
        rc = cdn_server_drop_privileges(&srv, &err);
    if (rc != 0) {
        cdn_log(CDN_LOG_ERROR, "%s", err);
        fprintf(stderr, "%s\n", err);
        free(err);
    } else {
        cdn_log(CDN_LOG_INFO, "cdn-node %s starting as %s (config %s)", CDN_VERSION, role->name, o.config);
        rc = cdn_server_run(&srv, o.ports_file);
        cdn_log(CDN_LOG_INFO, "stopped");
    }
    cdn_server_dispose(&srv);
    if (o.pid_file != NULL && rc == 0)
        unlink(o.pid_file);
    cdn_log_close();
    cdn_conf_free(&conf);
    return rc == 0 ? 0 : 1;
}

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} commands[] = {
    {"run", cmd_run},
    {"check-config", cmd_check_config},
    {"ca-check", cmd_ca_check},
    {"reload", cmd_reload},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("cdn-node %s\n", CDN_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "cdn-node: unknown command: %s\n", argv[1]);
    usage(stderr);
    return 2;
}
