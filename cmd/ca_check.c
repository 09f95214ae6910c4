/*
 * ca-check: judges CA bundles (or, with --leaf, the certificates the node presents) before they
 * go into a config, with the same checks the config loader runs. Output is for people and grep:
 * one verdict line per certificate (OK / WARN / ERROR), lines for problems that belong to the file
 * (garbage, broken blocks) in file order, then one summary line. The exit status is for scripts:
 * 0 no error, 1 an error somewhere, 2 the command could not judge (usage, unreadable file).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/ca_check.h"
#include "lib/certcheck.h"

#define MAX_WARN_DAYS 36500

static void usage(FILE *f)
{
    fprintf(f, "usage: cdn-node ca-check [--warn-days N] [--leaf client|server] FILE...\n"
               "  checks every PEM certificate of each FILE as a CA bundle entry (or, with --leaf, the\n"
               "  first one as a client/server leaf and the rest as its chain); --warn-days (default 30)\n"
               "  is how close an expiry must be to warn. Exit 0: no errors, 1: errors, 2: usage or\n"
               "  unreadable file. docs/MTLS.md lists every check.\n");
}

static const char *verdict_word(enum cdn_certcheck_severity s)
{
    return s == CDN_CERTCHECK_SEV_ERROR ? "ERROR" : s == CDN_CERTCHECK_SEV_WARNING ? "WARN" : "OK";
}

static const char *cert_role(const struct cdn_certcheck_cert *c)
{
    if (c->leaf)
        return "leaf";
    if (!c->is_ca)
        return "non-CA";
    return c->self_signed ? "root" : "intermediate";
}

/* "FILE: cert N: VERDICT (role SUBJECT, SHA-256 FP, notAfter DATE)[: sev: msg; sev: msg...]" */
static void print_cert(const struct cdn_certcheck_report *r, const struct cdn_certcheck_cert *c)
{
    char date[40] = "?";
    time_t t = (time_t)c->not_after;
    struct tm tm;
    if (gmtime_r(&t, &tm) != NULL)
        strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S UTC", &tm);
    printf("%s: cert %u: %s (%s %s, SHA-256 %s, notAfter %s)", r->path, c->index, verdict_word(c->verdict),
           cert_role(c), c->subject, c->fingerprint, date);
    for (size_t k = 0; k < c->nfindings; k++)
        printf("%s %s: %s", k == 0 ? ":" : ";", cdn_certcheck_severity_name(c->findings[k].severity),
               c->findings[k].msg);
    putchar('\n');
}

static void print_file_finding(const struct cdn_certcheck_report *r, const struct cdn_certcheck_finding *f)
{
    char *line = cdn_certcheck_format_finding(r, NULL, f);
    puts(line);
    free(line);
}

struct totals {
    unsigned files, unreadable, certs, ok, warn, error, nerrors, nwarnings;
};

static void report_file(const struct cdn_certcheck_report *r, struct totals *t)
{
    size_t j = 0;
    for (size_t i = 0; i < r->ncerts; i++) {
        const struct cdn_certcheck_cert *c = &r->certs[i];
        for (; j < r->nfile_findings && r->file_findings[j].line != 0 && r->file_findings[j].line < c->line;
             j++)
            print_file_finding(r, &r->file_findings[j]);
        print_cert(r, c);
        t->certs++;
        if (c->verdict == CDN_CERTCHECK_SEV_ERROR)
            t->error++;
        else if (c->verdict == CDN_CERTCHECK_SEV_WARNING)
            t->warn++;
        else
            t->ok++;
    }
    for (; j < r->nfile_findings; j++)
        print_file_finding(r, &r->file_findings[j]);
    t->nerrors += r->nerrors;
    t->nwarnings += r->nwarnings;
}

static int parse_opts(int argc, char **argv, struct cdn_certcheck_opts *o)
{
    static const struct option longopts[] = {{"warn-days", required_argument, NULL, 'w'},
                                             {"leaf", required_argument, NULL, 'l'},
                                             {"help", no_argument, NULL, 'h'},
                                             {0, 0, 0, 0}};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "w:l:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'w': {
            char *end = NULL;
            unsigned long d = strtoul(optarg, &end, 10);
            if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' || d > MAX_WARN_DAYS) {
                fprintf(stderr, "cdn-node ca-check: --warn-days %s: expected a number of days (0-%d)\n",
                        optarg, MAX_WARN_DAYS);
                return -1;
            }
            o->warn_days = (unsigned)d;
            break;
        }
        case 'l':
            if (strcmp(optarg, "client") == 0) {
                o->kind = CDN_CERTCHECK_KIND_CLIENT;
            } else if (strcmp(optarg, "server") == 0) {
                o->kind = CDN_CERTCHECK_KIND_SERVER;
            } else {
                fprintf(stderr, "cdn-node ca-check: --leaf %s: expected client or server\n", optarg);
                return -1;
            }
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "cdn-node ca-check: no FILE given\n");
        usage(stderr);
        return -1;
    }
    return 0;
}

int cmd_ca_check(int argc, char **argv)
{
    struct cdn_certcheck_opts o;
    cdn_certcheck_opts_init(&o, CDN_CERTCHECK_KIND_CA);
    int rc = parse_opts(argc, argv, &o);
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    struct totals t = {0};
    for (int i = optind; i < argc; i++) {
        struct cdn_certcheck_report *r = NULL;
        char *err = NULL;
        t.files++;
        if (cdn_certcheck_file(argv[i], &o, &r, &err) != 0) {
            fflush(stdout); /* keep stderr lines in place relative to the verdicts */
            fprintf(stderr, "cdn-node ca-check: %s\n", err);
            free(err);
            t.unreadable++;
            continue;
        }
        report_file(r, &t);
        cdn_certcheck_report_free(&r);
    }
    static const char *const as[] = {[CDN_CERTCHECK_KIND_CA] = "CA bundle",
                                     [CDN_CERTCHECK_KIND_CLIENT] = "client certificate",
                                     [CDN_CERTCHECK_KIND_SERVER] = "server certificate"};
    printf("summary: %u file%s checked as %s%s, %u certificate%s: %u OK, %u WARN, %u ERROR; %u error%s, %u "
           "warning%s",
           t.files, t.files == 1 ? "" : "s", as[o.kind], t.files == 1 ? "" : "s", t.certs,
           t.certs == 1 ? "" : "s", t.ok, t.warn, t.error, t.nerrors, t.nerrors == 1 ? "" : "s", t.nwarnings,
           t.nwarnings == 1 ? "" : "s");
    if (t.unreadable > 0)
        printf("; %u unreadable", t.unreadable);
    putchar('\n');
    if (t.unreadable > 0)
        return 2;
    return t.nerrors > 0 ? 1 : 0;
}
