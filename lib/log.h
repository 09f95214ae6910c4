/*
 * log: the error log (levelled) and the access log.
 *
 * Error log: each line is formatted on the stack and written with one write(2) on an O_APPEND
 * descriptor, so lines from worker threads never interleave. Error lines are rare (warnings,
 * failures), so they are written directly.
 *
 * Access log: one line per request, so it must never block an event loop on a slow disk. Workers
 * format the line on the stack and append it to a process-wide bounded queue (1 MiB of text) under a
 * short mutex; one writer thread empties the queue with one write(2) per batch. When the queue is
 * full (the disk cannot keep up) the line is dropped and counted (cdn_log_access_dropped); the writer
 * reports drops in the error log. cdn_log_close flushes what is queued.
 *
 * Reopen (SIGUSR1, for logrotate): cdn_log_reopen opens each configured path again and dup2()s the new
 * file onto the old descriptor number, so a thread writing at that moment writes to the old or the new
 * file, never to a closed descriptor. Keys and other secrets are never passed here.
 */
#ifndef CDN_LOG_H
#define CDN_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/conf.h"

/* Capacity of the access log queue, in bytes of formatted lines. */
#define CDN_LOG_ACCESS_QUEUE (1024 * 1024)

/* Opens the files named in lc (NULL/"-" error = stderr; access NULL = off, "-" = stdout) and starts
 * the access log writer. Returns 0, or -1 with *err naming the file and the reason. May be called
 * again to reopen. */
int cdn_log_open(const struct cdn_conf_log *lc, char **err);
/* Reopens the configured files in place (after a rename by logrotate). Returns 0, or -1 with *err
 * (heap) naming the file that could not be opened; that file keeps its old descriptor. */
int cdn_log_reopen(char **err);
/* Flushes the access log queue, stops the writer and closes the files. */
void cdn_log_close(void);
bool cdn_log_enabled(int level);
/* Changes the level of the error log (a reload). */
void cdn_log_set_level(int level);
void cdn_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool cdn_log_access_enabled(void);
void cdn_log_access(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* One refused-handshake line (lib/ident.h formats it): to log.tls_failures when configured (one write per
 * line, reopened with the others), else to the error log at level info. */
void cdn_log_tls_failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Whether those lines go to their own file (log.tls_failures). */
bool cdn_log_tls_failures_separate(void);
/* Access log lines dropped because the queue was full, since start. */
uint64_t cdn_log_access_dropped(void);

#endif
