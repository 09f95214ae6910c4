/* log: the access log queue delivers every line (from several threads) by cdn_log_close, and
 * cdn_log_reopen moves both logs to new files after a rename (logrotate). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>

#include <check.h>

#include "lib/log.h"
#include "lib/util.h"
#include "test/unit/suites.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return cdn_xstrdup("");
    char *buf = cdn_xmalloc(4 << 20);
    size_t n = fread(buf, 1, (4 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

static void *access_writer(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = 0; i < 500; i++)
        cdn_log_access("thread %d line %d", t, i);
    return NULL;
}

START_TEST(access_lines_all_written)
{
    char dir[] = "/tmp/cdn-log-test.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *acc = cdn_xasprintf("%s/access.log", dir), *errp = cdn_xasprintf("%s/error.log", dir);
    struct cdn_conf_log lc = {.error = errp, .access = acc, .level = CDN_LOG_INFO};
    char *err = NULL;
    ck_assert_int_eq(cdn_log_open(&lc, &err), 0);
    ck_assert(cdn_log_access_enabled());
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, access_writer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    cdn_log_close(); /* flushes the queue */
    ck_assert_uint_eq(cdn_log_access_dropped(), 0);
    char *s = slurp(acc);
    ck_assert_uint_eq(count_lines(s), 2000);
    ck_assert_ptr_nonnull(strstr(s, " thread 3 line 499\n"));
    free(s);
    unlink(acc);
    unlink(errp);
    rmdir(dir);
    free(acc);
    free(errp);
}
END_TEST

struct drain_arg {
    int fd;
    size_t bytes, lines;
};

static void *fifo_drain(void *arg)
{
    struct drain_arg *d = arg;
    char buf[65536];
    ssize_t k;
    while ((k = read(d->fd, buf, sizeof(buf))) != 0) {
        if (k < 0) {
            usleep(1000); /* non-blocking and empty: the writer has not written yet */
            continue;
        }
        for (ssize_t j = 0; j < k; j++)
            d->lines += buf[j] == '\n';
        d->bytes += (size_t)k;
    }
    return NULL;
}

/* A disk that does not keep up (here: a pipe nobody reads): the queue fills, further lines are dropped
 * and counted, and the caller never blocks; every line is either delivered or counted. */
START_TEST(access_lines_dropped_when_writer_stalls)
{
    char dir[] = "/tmp/cdn-log-test.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *fifo = cdn_xasprintf("%s/access.fifo", dir), *errp = cdn_xasprintf("%s/error.log", dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    struct drain_arg d = {
        .fd = open(fifo, O_RDONLY | O_NONBLOCK)}; /* a reader, so that open for writing succeeds */
    ck_assert_int_ge(d.fd, 0);
    struct cdn_conf_log lc = {.error = errp, .access = fifo, .level = CDN_LOG_INFO};
    char *err = NULL;
    ck_assert_int_eq(cdn_log_open(&lc, &err), 0);
    uint64_t before = cdn_log_access_dropped();
    char pad[200];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    const int n = 20000; /* about 4.5 MiB: more than the pipe and the queue hold */
    for (int i = 0; i < n; i++)
        cdn_log_access("line %d %s", i, pad);
    uint64_t dropped = cdn_log_access_dropped() - before;
    ck_assert_uint_gt(dropped, 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, fifo_drain, &d), 0);
    cdn_log_close(); /* flushes what was queued, into the reader */
    pthread_join(th, NULL);
    close(d.fd);
    ck_assert_uint_eq(d.lines + dropped, (uint64_t)n);
    unlink(fifo);
    unlink(errp);
    rmdir(dir);
    free(fifo);
    free(errp);
}
END_TEST

/* waits up to 2 s for path to contain needle (the writer thread is asynchronous) */
static bool eventually_has(const char *path, const char *needle)
{
    for (int i = 0; i < 200; i++) {
        char *s = slurp(path);
        bool ok = strstr(s, needle) != NULL;
        free(s);
        if (ok)
            return true;
        usleep(10000);
    }
    return false;
}

START_TEST(reopen_after_rename)
{
    char dir[] = "/tmp/cdn-log-test.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *acc = cdn_xasprintf("%s/access.log", dir), *errp = cdn_xasprintf("%s/error.log", dir);
    char *acc1 = cdn_xasprintf("%s.1", acc), *err1 = cdn_xasprintf("%s.1", errp);
    struct cdn_conf_log lc = {.error = errp, .access = acc, .level = CDN_LOG_INFO};
    char *err = NULL;
    ck_assert_int_eq(cdn_log_open(&lc, &err), 0);
    cdn_log_access("before-rotation");
    cdn_log(CDN_LOG_INFO, "error-before");
    ck_assert(eventually_has(acc, "before-rotation"));
    ck_assert_int_eq(rename(acc, acc1), 0);
    ck_assert_int_eq(rename(errp, err1), 0);
    ck_assert_int_eq(cdn_log_reopen(&err), 0);
    ck_assert_int_eq(access(acc, F_OK), 0); /* created at once */
    cdn_log_access("after-rotation");
    cdn_log(CDN_LOG_INFO, "error-after");
    cdn_log_close();
    char *a = slurp(acc), *a1 = slurp(acc1), *e = slurp(errp), *e1 = slurp(err1);
    ck_assert_ptr_nonnull(strstr(a, "after-rotation"));
    ck_assert_ptr_null(strstr(a, "before-rotation"));
    ck_assert_ptr_nonnull(strstr(a1, "before-rotation"));
    ck_assert_ptr_null(strstr(a1, "after-rotation"));
    ck_assert_ptr_nonnull(strstr(e, "error-after"));
    ck_assert_ptr_null(strstr(e, "error-before"));
    ck_assert_ptr_nonnull(strstr(e1, "error-before"));
    free(a);
    free(a1);
    free(e);
    free(e1);

    /* a path that cannot be reopened: an error naming it, and the old file stays in use */
    ck_assert_int_eq(cdn_log_open(&lc, &err), 0);
    unlink(acc);
    unlink(acc1);
    unlink(errp);
    unlink(err1);
    ck_assert_int_eq(rmdir(dir), 0);
    ck_assert_int_eq(cdn_log_reopen(&err), -1);
    ck_assert_ptr_nonnull(strstr(err, "access.log"));
    free(err);
    cdn_log_access("still works");
    cdn_log_close();
    free(acc);
    free(acc1);
    free(errp);
    free(err1);
}
END_TEST

START_TEST(tls_failures_file)
{
    char dir[] = "/tmp/cdn-log-test.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *errp = cdn_xasprintf("%s/error.log", dir), *tls = cdn_xasprintf("%s/tls.log", dir);
    char *tls1 = cdn_xasprintf("%s.1", tls);
    char *err = NULL;

    /* without the key: the lines go to the error log */
    struct cdn_conf_log lc = {.error = errp, .level = CDN_LOG_INFO};
    ck_assert_int_eq(cdn_log_open(&lc, &err), 0);
    ck_assert(!cdn_log_tls_failures_separate());
    cdn_log_tls_failure("conn=%d reason=%s", 1, "unknown_ca");
    cdn_log_close();
    char *e = slurp(errp);
    ck_assert_ptr_nonnull(strstr(e, "[info] conn=1 reason=unknown_ca\n"));
    free(e);

    /* with it: only there, one line each, and reopened after a rename */
    lc.tls_failures = tls;
    ck_assert_int_eq(cdn_log_open(&lc, &err), 0);
    ck_assert(cdn_log_tls_failures_separate());
    cdn_log_tls_failure("conn=%d reason=%s", 2, "revoked");
    ck_assert_int_eq(rename(tls, tls1), 0);
    ck_assert_int_eq(cdn_log_reopen(&err), 0);
    cdn_log_tls_failure("conn=%d reason=%s", 3, "expired");
    cdn_log_close();
    char *t = slurp(tls), *t1 = slurp(tls1);
    e = slurp(errp);
    ck_assert_ptr_null(strstr(e, "conn=2"));
    ck_assert_ptr_nonnull(strstr(t1, "Z conn=2 reason=revoked\n")); /* "<time> line" */
    ck_assert_uint_eq(count_lines(t1), 1);
    ck_assert_ptr_nonnull(strstr(t, "Z conn=3 reason=expired\n"));
    ck_assert_uint_eq(count_lines(t), 1);
    free(t);
    free(t1);
    free(e);

    /* a TLS-failure log that cannot be opened refuses the whole set */
    lc.tls_failures = (char *)"/nonexistent-dir/tls.log";
    ck_assert_int_eq(cdn_log_open(&lc, &err), -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent-dir/tls.log"));
    free(err);
    unlink(tls);
    unlink(tls1);
    unlink(errp);
    ck_assert_int_eq(rmdir(dir), 0);
    free(errp);
    free(tls);
    free(tls1);
}
END_TEST

Suite *suite_log(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, access_lines_all_written);
    tcase_add_test(tc, reopen_after_rename);
    tcase_add_test(tc, access_lines_dropped_when_writer_stalls);
    tcase_add_test(tc, tls_failures_file);
    suite_add_tcase(s, tc);
    return s;
}
