/* watch: see watch.h. Files are small (PEM, YAML), so reading them whole each scan is cheap. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "lib/util.h"
#include "lib/watch.h"

struct watch_file {
    char *path;
    unsigned char md[32]; /* SHA-256 of the content; all zero when unreadable */
    bool seen;            /* part of the latest scan */
};

struct cdn_watch {
    struct watch_file *files;
    size_t n;
    char *changed; /* the last path reported */
};

struct cdn_watch *cdn_watch_new(void)
{
    return cdn_xcalloc(1, sizeof(struct cdn_watch));
}

void cdn_watch_free(struct cdn_watch **wp)
{
    struct cdn_watch *w = *wp;
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n; i++)
        free(w->files[i].path);
    free(w->files);
    free(w->changed);
    free(w);
    *wp = NULL;
}

static void digest(const char *path, unsigned char md[32])
{
    memset(md, 0, 32);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    CDN_ASSERT(c != NULL);
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    char buf[16384];
    size_t k;
    while ((k = fread(buf, 1, sizeof(buf), f)) > 0)
        EVP_DigestUpdate(c, buf, k);
    bool ok = !ferror(f);
    fclose(f);
    unsigned int len = 32;
    EVP_DigestFinal_ex(c, md, &len);
    EVP_MD_CTX_free(c);
    if (!ok)
        memset(md, 0, 32);
    else
        md[0] |= 1; /* never all zero: that means unreadable */
}

const char *cdn_watch_scan(struct cdn_watch *w, char *const *files, size_t n)
{
    const char *changed = NULL;
    for (size_t i = 0; i < w->n; i++)
        w->files[i].seen = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char md[32];
        digest(files[i], md);
        struct watch_file *f = NULL;
        for (size_t j = 0; j < w->n && f == NULL; j++) {
            if (strcmp(w->files[j].path, files[i]) == 0)
                f = &w->files[j];
        }
        if (f == NULL) {
            w->files = cdn_xrealloc(w->files, (w->n + 1) * sizeof(*w->files));
            f = &w->files[w->n++];
            f->path = cdn_xstrdup(files[i]);
            memcpy(f->md, md, sizeof(md));
        } else if (memcmp(f->md, md, sizeof(md)) != 0) {
            memcpy(f->md, md, sizeof(md));
            if (changed == NULL)
                changed = f->path;
        }
        f->seen = true;
    }
    /* forget files no longer watched, so that their return is a first sighting */
    size_t k = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (w->files[i].seen)
            w->files[k++] = w->files[i];
        else if (changed != w->files[i].path)
            free(w->files[i].path);
    }
    w->n = k;
    free(w->changed);
    w->changed = changed != NULL ? cdn_xstrdup(changed) : NULL;
    return w->changed;
}
