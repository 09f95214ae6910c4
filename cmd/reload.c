/*
 * reload: see reload.h. A blocking HTTP/1.1 client of a few lines is enough for the admin listener:
 * one request per connection, the answer read until the server closes.
 */
#include <errno.h>
#include <stdbool.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "cmd/reload.h"
#include "lib/buf.h"
#include "lib/conf.h"
#include "lib/util.h"

/* Sends one request to address:port and reads the whole answer into out. 0 or -1 (errno set). */
static int http_call(const char *address, int port, const char *request, struct cdn_buf *out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, address, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        len = sizeof(*a4);
    } else if (inet_pton(AF_INET6, address, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        len = sizeof(*a6);
    } else {
        errno = EINVAL;
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int rc = -1;
    if (connect(fd, (struct sockaddr *)&ss, len) != 0)
        goto out;
    size_t n = strlen(request), off = 0;
    while (off < n) {
        ssize_t k = write(fd, request + off, n - off);
        if (k <= 0)
            goto out;
        off += (size_t)k;
    }
    char buf[4096];
    ssize_t k;
    while ((k = read(fd, buf, sizeof(buf))) > 0)
        cdn_buf_append(out, buf, (size_t)k);
    rc = k == 0 ? 0 : -1;
out:;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* The status code of an HTTP answer, or 0. */
static int http_status(const struct cdn_buf *b)
{
    const char *p = cdn_buf_data(b);
    if (b->len < 12 || strncmp(p, "HTTP/1.", 7) != 0)
        return 0;
    return atoi(p + 9);
}

/* The integer after "\"key\": " in a /stats answer; -1 when absent. */
static long long json_int(const char *json, const char *key)
{
    char pat[96];
    snprintf(pat, sizeof(pat), "\"%s\": ", key);
    const char *p = strstr(json, pat);
    return p != NULL ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

/* The string value of "reload_last_error" (JSON escapes left as they are), or NULL; heap. */
static char *json_error(const char *json)
{
    const char *p = strstr(json, "\"reload_last_error\": \"");
    if (p == NULL)
        return NULL;
    p += strlen("\"reload_last_error\": \"");
    struct cdn_buf b;
    cdn_buf_init(&b);
    for (; *p != '\0' && *p != '"'; p++) {
        if (*p == '\\' && p[1] == 'n') {
            cdn_buf_append(&b, "\n", 1);
            p++;
        } else if (*p == '\\' && p[1] != '\0') {
            cdn_buf_append(&b, p + 1, 1);
            p++;
        } else {
            cdn_buf_append(&b, p, 1);
        }
    }
    char *s = cdn_xstrndup(cdn_buf_data(&b), b.len);
    cdn_buf_dispose(&b);
    return s;
}

static int stats(const char *address, int port, struct cdn_buf *out)
{
    cdn_buf_consume(out, out->len);
    if (http_call(address, port, "GET /stats HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n", out) != 0)
        return -1;
    cdn_buf_append(out, "", 1); /* NUL for the string searches */
    return http_status(out) == 200 ? 0 : -1;
}

/* The admin port from a ports file ("admin PORT" line), or -1. */
static int port_from_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char name[128];
    int port, found = -1;
    while (fscanf(f, "%127s %d", name, &port) == 2) {
        if (strcmp(name, "admin") == 0)
            found = port;
    }
    fclose(f);
    return found;
}

static int by_signal(const char *pid_file)
{
    FILE *f = fopen(pid_file, "r");
    long pid = 0;
    if (f == NULL || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
        fprintf(stderr, "cdn-node reload: %s: no pid in it%s%s\n", pid_file, f == NULL ? ": " : "",
                f == NULL ? strerror(errno) : "");
        if (f != NULL)
            fclose(f);
        return 1;
    }
    fclose(f);
    if (kill((pid_t)pid, SIGHUP) != 0) {
        fprintf(stderr, "cdn-node reload: SIGHUP to %ld: %s\n", pid, strerror(errno));
        return 1;
    }
    printf("SIGHUP sent to %ld; the verdict is in the node's error log and /stats\n", pid);
    return 0;
}

static int by_admin(const char *address, int port, int timeout_s)
{
    struct cdn_buf b;
    cdn_buf_init(&b);
    int rc = 1;
    if (stats(address, port, &b) != 0) {
        fprintf(stderr, "cdn-node reload: admin listener %s:%d: no answer to GET /stats: %s\n", address, port,
                strerror(errno));
        goto out;
    }
    long long before =
        json_int(cdn_buf_data(&b), "reloads_ok") + json_int(cdn_buf_data(&b), "reloads_failed");
    cdn_buf_consume(&b, b.len);
    if (http_call(address, port,
                  "POST /reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                  &b) != 0 ||
        http_status(&b) != 202) {
        fprintf(stderr, "cdn-node reload: POST /reload to %s:%d was not accepted\n", address, port);
        goto out;
    }
    for (int i = 0; i < timeout_s * 10; i++) {
        struct timespec ts = {.tv_nsec = 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (stats(address, port, &b) != 0)
            continue;
        const char *j = cdn_buf_data(&b);
        if (json_int(j, "reloads_ok") + json_int(j, "reloads_failed") == before)
            continue;
        if (json_int(j, "reload_last_success") == 1) {
            printf("reloaded: generation %lld in service\n", json_int(j, "generation"));
            rc = 0;
        } else {
            char *e = json_error(j);
            fprintf(stderr, "cdn-node reload: refused, the running configuration stays:\n%s\n",
                    e != NULL ? e : "(no reason given)");
            free(e);
        }
        goto out;
    }
    fprintf(stderr, "cdn-node reload: no verdict from %s:%d within %ds\n", address, port, timeout_s);
out:
    cdn_buf_dispose(&b);
    return rc;
}

int cmd_reload(int argc, char **argv)
{
    static const struct option longopts[] = {{"config", required_argument, NULL, 'c'},
                                             {"ports-file", required_argument, NULL, 'p'},
                                             {"pid-file", required_argument, NULL, 'P'},
                                             {"timeout", required_argument, NULL, 't'},
                                             {0, 0, 0, 0}};
    const char *config = NULL, *ports_file = NULL, *pid_file = NULL;
    int timeout_s = 30, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:p:P:t:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            config = optarg;
            break;
        case 'p':
            ports_file = optarg;
            break;
        case 'P':
            pid_file = optarg;
            break;
        case 't':
            timeout_s = atoi(optarg);
            break;
        default:
            return 2;
        }
    }
    if (config == NULL && pid_file == NULL) {
        fprintf(stderr,
                "cdn-node reload: give --config FILE (its admin listener is used) or --pid-file FILE\n");
        return 2;
    }
    if (timeout_s <= 0)
        timeout_s = 30;
    if (config == NULL)
        return by_signal(pid_file);
    struct cdn_conf *conf = NULL;
    char *err = NULL;
    if (cdn_conf_load(config, &conf, &err) != 0) {
        fprintf(stderr, "%s\n", err);
        free(err);
        return 1;
    }
    int port = conf->admin.port;
    bool plain = port >= 0 && !conf->admin.tls;
    char *address = cdn_xstrdup(conf->admin.address != NULL ? conf->admin.address : "127.0.0.1");
    cdn_conf_free(&conf);
    if (plain && port == 0 && ports_file != NULL)
        port = port_from_file(ports_file);
    int rc;
    if (plain && port > 0)
        rc = by_admin(address, port, timeout_s);
    else if (pid_file != NULL)
        rc = by_signal(pid_file);
    else {
        fprintf(stderr, "cdn-node reload: %s has no plain admin listener%s; give --pid-file\n", config,
                port == 0 ? " with a known port (give --ports-file)" : "");
        rc = 2;
    }
    free(address);
    return rc;
}
