/*
 * watch: notices when the content of a set of files changes (watch_files). Content, not mtime: a
 * certificate rewritten with the same mtime, or swapped in by an atomic rename or a symlink flip (as
 * cert-manager and Vault agents do) is noticed; a touch that changes nothing is not. Each scan reads
 * every file through its path (following symlinks) and compares SHA-256 digests with the last scan.
 */
#ifndef CDN_WATCH_H
#define CDN_WATCH_H

#include <stddef.h>

struct cdn_watch;

struct cdn_watch *cdn_watch_new(void);
void cdn_watch_free(struct cdn_watch **w);

/* Reads files[0..n). A file seen for the first time is recorded, not reported; a file that could not
 * be read counts as a content of its own (its disappearance and return are changes). Returns the first
 * file whose content differs from the previous scan (the digests of every file are updated in any
 * case; the string lives until the next call), or NULL when nothing changed. */
const char *cdn_watch_scan(struct cdn_watch *w, char *const *files, size_t n);

#endif
