/*
 * share: see share.h. The body is a list of fixed-size blocks that are only ever appended, so a
 * reader's pointer into a filled block never moves; the lock protects the list and the state.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "lib/share.h"
#include "lib/util.h"

#define BLOCK (64u * 1024u)

struct block {
    struct block *next;
    size_t len;
    char data[BLOCK];
};

struct watcher {
    cdn_share_wake_cb *cb;
    void *arg;
    struct watcher *next;
};

struct cdn_share {
    _Atomic int refs;
    pthread_mutex_t lock;
    char *meta;
    size_t mlen;
    bool has_length;
    uint64_t length;
    struct block *first, *last;
    uint64_t total;
    enum cdn_share_state state;
    struct watcher *watchers;
};

struct cdn_share *cdn_share_new(const void *meta, size_t mlen, bool has_length, uint64_t length)
{
    struct cdn_share *sh = cdn_xcalloc(1, sizeof(*sh));
    atomic_init(&sh->refs, 1);
    pthread_mutex_init(&sh->lock, NULL);
    sh->meta = cdn_xmalloc(mlen);
    memcpy(sh->meta, meta, mlen);
    sh->mlen = mlen;
    sh->has_length = has_length;
    sh->length = length;
    sh->state = CDN_SHARE_MORE;
    return sh;
}

struct cdn_share *cdn_share_ref(struct cdn_share *sh)
{
    atomic_fetch_add(&sh->refs, 1);
    return sh;
}

void cdn_share_unref(struct cdn_share **shp)
{
    struct cdn_share *sh = *shp;
    if (sh == NULL)
        return;
    *shp = NULL;
    if (atomic_fetch_sub(&sh->refs, 1) != 1)
        return;
    CDN_ASSERT(sh->watchers == NULL);
    for (struct block *b = sh->first, *next; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    pthread_mutex_destroy(&sh->lock);
    free(sh->meta);
    free(sh);
}

const void *cdn_share_meta(const struct cdn_share *sh, size_t *mlen)
{
    *mlen = sh->mlen;
    return sh->meta;
}

bool cdn_share_length(const struct cdn_share *sh, uint64_t *length)
{
    *length = sh->length;
    return sh->has_length;
}

static void wake_all(struct cdn_share *sh)
{
    for (struct watcher *w = sh->watchers; w != NULL; w = w->next)
        w->cb(w->arg);
}

void cdn_share_append(struct cdn_share *sh, const void *p, size_t n)
{
    const char *s = p;
    pthread_mutex_lock(&sh->lock);
    CDN_ASSERT(sh->state == CDN_SHARE_MORE);
    while (n > 0) {
        if (sh->last == NULL || sh->last->len == BLOCK) {
            struct block *b = cdn_xmalloc(sizeof(*b));
            b->next = NULL;
            b->len = 0;
            if (sh->last != NULL)
                sh->last->next = b;
            else
                sh->first = b;
            sh->last = b;
        }
        size_t k = BLOCK - sh->last->len < n ? BLOCK - sh->last->len : n;
        memcpy(sh->last->data + sh->last->len, s, k);
        sh->last->len += k;
        sh->total += k;
        s += k;
        n -= k;
    }
    wake_all(sh);
    pthread_mutex_unlock(&sh->lock);
}

void cdn_share_end(struct cdn_share *sh, bool ok)
{
    pthread_mutex_lock(&sh->lock);
    if (sh->state == CDN_SHARE_MORE) {
        sh->state = ok ? CDN_SHARE_DONE : CDN_SHARE_FAILED;
        wake_all(sh);
    }
    pthread_mutex_unlock(&sh->lock);
}

void cdn_share_watch(struct cdn_share *sh, cdn_share_wake_cb *cb, void *arg)
{
    pthread_mutex_lock(&sh->lock);
    struct watcher *w;
    for (w = sh->watchers; w != NULL && w->arg != arg; w = w->next)
        ;
    if (w == NULL) {
        w = cdn_xcalloc(1, sizeof(*w));
        w->cb = cb;
        w->arg = arg;
        w->next = sh->watchers;
        sh->watchers = w;
    }
    pthread_mutex_unlock(&sh->lock);
}

void cdn_share_unwatch(struct cdn_share *sh, void *arg)
{
    pthread_mutex_lock(&sh->lock);
    for (struct watcher **pp = &sh->watchers; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->arg == arg) {
            struct watcher *w = *pp;
            *pp = w->next;
            free(w);
            break;
        }
    }
    pthread_mutex_unlock(&sh->lock);
}

size_t cdn_share_read(struct cdn_share *sh, uint64_t off, const void **p, enum cdn_share_state *state)
{
    pthread_mutex_lock(&sh->lock);
    size_t n = 0;
    *p = NULL;
    uint64_t base = 0;
    for (struct block *b = sh->first; b != NULL; b = b->next) {
        if (off < base + b->len) {
            *p = b->data + (off - base);
            n = (size_t)(base + b->len - off);
            break;
        }
        base += b->len;
    }
    *state = sh->state;
    pthread_mutex_unlock(&sh->lock);
    return n;
}
