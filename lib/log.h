/*
 * log: the error log (levelled) and the access log. Each line is formatted on the stack and
 * written with one write(2) on an O_APPEND descriptor, so lines from worker threads never
 * interleave. Keys and other secrets are never passed here.
 */
#ifndef CDN_LOG_H
#define CDN_LOG_H

#include <stdbool.h>

#include "lib/conf.h"

/* Opens the files named in lc (NULL/"-" error = stderr; access NULL = off, "-" = stdout).
 * Returns 0, or -1 with *err naming the file and the reason. May be called again to reopen. */
int cdn_log_open(const struct cdn_conf_log *lc, char **err);
void cdn_log_close(void);
bool cdn_log_enabled(int level);
void cdn_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool cdn_log_access_enabled(void);
void cdn_log_access(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
