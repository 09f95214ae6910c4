/* log: see log.h. Descriptors are process-wide; the level is read without locks (an int). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

static _Atomic int log_level = CDN_LOG_INFO;
static int error_fd = STDERR_FILENO;
static int access_fd = -1;
static int tls_fd = -1;                           /* log.tls_failures; -1 = those lines go to the error log */
static char *error_path, *access_path, *tls_path; /* for reopen; NULL = a standard stream (not reopened) */

/* the access log queue (see log.h) */
static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cv = PTHREAD_COND_INITIALIZER;
static char *q_buf;
static size_t q_len;
static bool q_stop;
static bool writer_on;
static pthread_t writer;
static _Atomic uint64_t dropped;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static int open_path(const char *path, int *fd, char **err)
{
    int f = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (f < 0) {
        *err = cdn_xasprintf("%s: cannot open log: %s", path, strerror(errno));
        return -1;
    }
    *fd = f;
    return 0;
}

static int open_one(const char *path, int dflt, int *fd, char **err)
{
    if (path == NULL || strcmp(path, "-") == 0) {
        *fd = dflt;
        return 0;
    }
    return open_path(path, fd, err);
}

static char *path_of(const char *path)
{
    return path == NULL || strcmp(path, "-") == 0 ? NULL : cdn_xstrdup(path);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t rc = write(fd, p, n);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return; /* nowhere to report it */
        p += rc;
        n -= (size_t)rc;
    }
}

/* The writer's spare buffer. A file-scope pointer rather than a local: a child forked meanwhile (the
 * store's file check) has no writer thread, and memcheck would call the buffer lost there. */
static char *volatile writer_spare; /* volatile: never read, so the stores would be optimised away */

static void *writer_main(void *arg)
{
    char *mine = writer_spare = cdn_xmalloc(CDN_LOG_ACCESS_QUEUE);
    uint64_t reported = 0;
    time_t last_report = 0;
    pthread_mutex_lock(&q_mu);
    for (;;) {
        while (q_len == 0 && !q_stop)
            pthread_cond_wait(&q_cv, &q_mu);
        if (q_len == 0)
            break; /* stopping, and everything is written */
        char *full = q_buf;
        size_t n = q_len;
        q_buf = mine;
        q_len = 0;
        mine = writer_spare = full;
        pthread_mutex_unlock(&q_mu);
        write_all(access_fd, mine, n);
        uint64_t d = atomic_load(&dropped);
        time_t now = time(NULL);
        if (d != reported && (now - last_report >= 10 || q_stop)) {
            cdn_log(CDN_LOG_WARN, "access log: %llu lines dropped since start (the queue was full)",
                    (unsigned long long)d);
            reported = d;
            last_report = now;
        }
        pthread_mutex_lock(&q_mu);
    }
    pthread_mutex_unlock(&q_mu);
    free(mine);
    writer_spare = NULL;
    return NULL;
}

static void writer_stop(void)
{
    if (!writer_on)
        return;
    pthread_mutex_lock(&q_mu);
    q_stop = true;
    pthread_cond_signal(&q_cv);
    pthread_mutex_unlock(&q_mu);
    pthread_join(writer, NULL);
    writer_on = false;
    q_stop = false;
    free(q_buf);
    q_buf = NULL;
    q_len = 0;
}

int cdn_log_open(const struct cdn_conf_log *lc, char **err)
{
    int efd, afd = -1, tfd = -1;
    if (open_one(lc->error, STDERR_FILENO, &efd, err) != 0)
        return -1;
    if ((lc->access != NULL && open_one(lc->access, STDOUT_FILENO, &afd, err) != 0) ||
        (lc->tls_failures != NULL && open_one(lc->tls_failures, STDOUT_FILENO, &tfd, err) != 0)) {
        if (efd > STDERR_FILENO)
            close(efd);
        if (afd > STDERR_FILENO)
            close(afd);
        return -1;
    }
    cdn_log_close();
    error_fd = efd;
    access_fd = afd;
    tls_fd = tfd;
    error_path = path_of(lc->error);
    access_path = lc->access != NULL ? path_of(lc->access) : NULL;
    tls_path = lc->tls_failures != NULL ? path_of(lc->tls_failures) : NULL;
    log_level = lc->level;
    if (access_fd >= 0) {
        q_buf = cdn_xmalloc(CDN_LOG_ACCESS_QUEUE);
        q_len = 0;
        writer_on = pthread_create(&writer, NULL, writer_main, NULL) == 0;
        if (!writer_on) {
            free(q_buf);
            q_buf = NULL; /* cdn_log_access writes directly */
        }
    }
    return 0;
}

static int reopen_one(const char *path, int fd, char **err)
{
    if (path == NULL || fd < 0)
        return 0;
    int nfd;
    if (open_path(path, &nfd, err) != 0)
        return -1;
    int rc = dup2(nfd, fd) < 0 ? -1 : 0;
    if (rc != 0)
        *err = cdn_xasprintf("%s: cannot reopen log: %s", path, strerror(errno));
    close(nfd);
    return rc;
}

int cdn_log_reopen(char **err)
{
    const char *paths[] = {error_path, access_path, tls_path};
    const int fds[] = {error_fd, access_fd, tls_fd};
    char *all = NULL;
    for (size_t i = 0; i < 3; i++) {
        char *e = NULL;
        if (reopen_one(paths[i], fds[i], &e) != 0) {
            cdn_strappendf(&all, "%s%s", all != NULL ? "; " : "", e);
            free(e);
        }
    }
    if (all == NULL)
        return 0;
    *err = all;
    return -1;
}

void cdn_log_close(void)
{
    writer_stop();
    if (error_fd > STDERR_FILENO)
        close(error_fd);
    if (access_fd > STDERR_FILENO)
        close(access_fd);
    if (tls_fd > STDERR_FILENO)
        close(tls_fd);
    error_fd = STDERR_FILENO;
    access_fd = -1;
    tls_fd = -1;
    free(error_path);
    free(access_path);
    free(tls_path);
    error_path = access_path = tls_path = NULL;
}

void cdn_log_set_level(int level)
{
    log_level = level;
}

bool cdn_log_enabled(int level)
{
    return level <= log_level;
}

static size_t format_time(char *buf, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    k += (size_t)snprintf(buf + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000);
    return k;
}

/* Terminates line (k bytes) with a newline, truncating it to cap; returns the new length. */
static size_t end_line(char *line, size_t k, size_t cap)
{
    if (k >= cap - 1)
        k = cap - 2; /* truncated: keep the newline */
    line[k++] = '\n';
    return k;
}

void cdn_log(int level, const char *fmt, ...)
{
    if (!cdn_log_enabled(level))
        return;
    char line[2048];
    size_t k = format_time(line, sizeof(line));
    k += (size_t)snprintf(line + k, sizeof(line) - k, " [%s] ", level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + k, sizeof(line) - k, fmt, ap);
    va_end(ap);
    k = n < 0 ? k : k + (size_t)n;
    k = end_line(line, k, sizeof(line));
    write_all(error_fd, line, k);
}

bool cdn_log_access_enabled(void)
{
    return access_fd >= 0;
}

uint64_t cdn_log_access_dropped(void)
{
    return atomic_load(&dropped);
}

void cdn_log_access(const char *fmt, ...)
{
    if (access_fd < 0)
        return;
    char line[4096];
    size_t k = format_time(line, sizeof(line));
    line[k++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + k, sizeof(line) - k, fmt, ap);
    va_end(ap);
    k = n < 0 ? k : k + (size_t)n;
    k = end_line(line, k, sizeof(line));
    if (!writer_on) {
        write_all(access_fd, line, k);
        return;
    }
    pthread_mutex_lock(&q_mu);
    if (q_len + k > CDN_LOG_ACCESS_QUEUE) {
        atomic_fetch_add(&dropped, 1);
    } else {
        memcpy(q_buf + q_len, line, k);
        if (q_len == 0)
            pthread_cond_signal(&q_cv);
        q_len += k;
    }
    pthread_mutex_unlock(&q_mu);
}

bool cdn_log_tls_failures_separate(void)
{
    return tls_fd >= 0;
}

void cdn_log_tls_failure(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    if (tls_fd < 0) {
        char msg[1800];
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        cdn_log(CDN_LOG_INFO, "%s", msg);
        return;
    }
    size_t k = format_time(line, sizeof(line));
    line[k++] = ' ';
    int n = vsnprintf(line + k, sizeof(line) - k, fmt, ap);
    va_end(ap);
    k = n < 0 ? k : k + (size_t)n;
    k = end_line(line, k, sizeof(line));
    write_all(tls_fd, line, k); /* rare (refused handshakes): written directly, like the error log */
}
