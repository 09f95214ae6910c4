/*
 * Replay driver shared by every fuzz target: links against one fuzz_<target>.c and feeds it each file
 * named on the command line, or every regular file in each directory named there. This lets `make check`
 * run the committed corpora with gcc and the sanitizers, without libFuzzer.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads the whole file and runs the target on it. 0 on success, -1 if the file cannot be read. */
static int replay_file(const char *path)
{
    FILE *f = NULL;
    uint8_t *data = NULL;
    struct stat st;
    size_t size, got;
    int rc = -1;

    f = fopen(path, "rb");
    if (f == NULL || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        goto out;
    }
    size = (size_t)st.st_size;
    /* An exact-size copy, so ASan catches reads even one byte past the input. */
    data = malloc(size != 0 ? size : 1);
    if (data == NULL) {
        fprintf(stderr, "replay: %s: out of memory\n", path);
        goto out;
    }
    got = fread(data, 1, size, f);
    if (got != size) {
        fprintf(stderr, "replay: %s: short read\n", path);
        goto out;
    }
    LLVMFuzzerTestOneInput(data, size);
    rc = 0;
out:
    free(data);
    if (f != NULL)
        fclose(f);
    return rc;
}

/* Replays every regular file directly in dir; *count is increased per file. */
static int replay_dir(const char *dir, size_t *count)
{
    DIR *d;
    struct dirent *e;
    struct stat st;
    char path[4096];
    int rc = 0;

    d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path)) {
            fprintf(stderr, "replay: %s/%s: path too long\n", dir, e->d_name);
            rc = -1;
            continue;
        }
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (replay_file(path) != 0) {
            rc = -1;
            continue;
        }
        (*count)++;
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    struct stat st;
    size_t count = 0;
    int i, failed = 0;

    for (i = 1; i < argc; i++) {
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            failed = 1;
        } else if (S_ISDIR(st.st_mode)) {
            if (replay_dir(argv[i], &count) != 0)
                failed = 1;
        } else if (replay_file(argv[i]) == 0) {
            count++;
        } else {
            failed = 1;
        }
    }
    printf("replayed %zu files\n", count);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
