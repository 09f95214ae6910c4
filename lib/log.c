/* log: see log.h. Descriptors are process-wide; the level is read without locks (an int). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/util.h"

static int log_level = CDN_LOG_INFO;
static int error_fd = STDERR_FILENO;
static int access_fd = -1;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static int open_one(const char *path, int dflt, int *fd, char **err)
{
    if (path == NULL || strcmp(path, "-") == 0) {
        *fd = dflt;
        return 0;
    }
    int f = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (f < 0) {
        *err = cdn_xasprintf("%s: cannot open log: %s", path, strerror(errno));
        return -1;
    }
    *fd = f;
    return 0;
}

int cdn_log_open(const struct cdn_conf_log *lc, char **err)
{
    int efd, afd = -1;
    if (open_one(lc->error, STDERR_FILENO, &efd, err) != 0)
        return -1;
    if (lc->access != NULL && open_one(lc->access, STDOUT_FILENO, &afd, err) != 0) {
        if (efd > STDERR_FILENO)
            close(efd);
        return -1;
    }
    cdn_log_close();
    error_fd = efd;
    access_fd = afd;
    log_level = lc->level;
    return 0;
}

void cdn_log_close(void)
{
    if (error_fd > STDERR_FILENO)
        close(error_fd);
    if (access_fd > STDERR_FILENO)
        close(access_fd);
    error_fd = STDERR_FILENO;
    access_fd = -1;
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

static void write_line(int fd, char *line, size_t k, size_t cap)
{
    if (k >= cap - 1)
        k = cap - 2; /* truncated: keep the newline */
    line[k++] = '\n';
    ssize_t rc;
    do {
        rc = write(fd, line, k);
    } while (rc < 0 && errno == EINTR);
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
    write_line(error_fd, line, k, sizeof(line));
}

bool cdn_log_access_enabled(void)
{
    return access_fd >= 0;
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
    write_line(access_fd, line, k, sizeof(line));
}
