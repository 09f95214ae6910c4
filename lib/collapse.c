/*
 * collapse: see collapse.h. A wait is shared by the table (until finish) and its waiter (until leave),
 * hence the two-count refcount; the result is an atomic the waiter reads on its own thread.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/collapse.h"
#include "lib/util.h"

#define NBUCKETS 256

struct entry;

struct cdn_collapse_wait {
    _Atomic int result;
    _Atomic int refs;
    cdn_collapse_wake_cb *wake;
    void *arg;
    struct cdn_collapse *table;
    struct entry *entry;     /* NULL once finished; under table->lock */
    struct cdn_share *share; /* SHARED: a ref */
    struct cdn_collapse_wait *next;
};

struct entry {
    char *key;
    size_t klen;
    struct cdn_share *share; /* a ref, once the leader shares its response */
    struct cdn_collapse_wait *waiters;
    struct entry *next;
};

struct cdn_collapse {
    pthread_mutex_t lock;
    struct entry *buckets[NBUCKETS];
};

static size_t hash(const void *key, size_t n)
{
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return (size_t)(h % NBUCKETS);
}

struct cdn_collapse *cdn_collapse_new(void)
{
    struct cdn_collapse *t = cdn_xcalloc(1, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
    return t;
}

void cdn_collapse_free(struct cdn_collapse **tp)
{
    struct cdn_collapse *t = *tp;
    if (t == NULL)
        return;
    for (size_t i = 0; i < NBUCKETS; i++) {
        for (struct entry *e = t->buckets[i]; e != NULL; e = e->next) /* names the culprit */
            fprintf(stderr, "cdn-node: collapse entry left at exit: %.*s\n", (int)e->klen, e->key);
        CDN_ASSERT(t->buckets[i] == NULL);
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
    *tp = NULL;
}

static struct entry **find(struct cdn_collapse *t, const void *key, size_t klen)
{
    struct entry **pp = &t->buckets[hash(key, klen)];
    while (*pp != NULL && !((*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0))
        pp = &(*pp)->next;
    return pp;
}

static void unref(struct cdn_collapse_wait *w)
{
    if (atomic_fetch_sub(&w->refs, 1) == 1) {
        cdn_share_unref(&w->share);
        free(w);
    }
}

bool cdn_collapse_join(struct cdn_collapse *t, const void *key, size_t klen, cdn_collapse_wake_cb *wake,
                       void *arg, struct cdn_collapse_wait **wait)
{
    pthread_mutex_lock(&t->lock);
    struct entry **pp = find(t, key, klen);
    if (*pp == NULL) {
        struct entry *e = cdn_xcalloc(1, sizeof(*e));
        e->key = cdn_xmalloc(klen);
        memcpy(e->key, key, klen);
        e->klen = klen;
        *pp = e;
        pthread_mutex_unlock(&t->lock);
        *wait = NULL;
        return true;
    }
    struct cdn_collapse_wait *w = cdn_xcalloc(1, sizeof(*w));
    atomic_init(&w->result, CDN_COLLAPSE_WAITING);
    atomic_init(&w->refs, 2);
    w->wake = wake;
    w->arg = arg;
    w->table = t;
    w->entry = *pp;
    if ((*pp)->share != NULL) { /* late: read what has come so far */
        w->share = cdn_share_ref((*pp)->share);
        atomic_store(&w->result, CDN_COLLAPSE_SHARED);
    }
    w->next = (*pp)->waiters;
    (*pp)->waiters = w;
    pthread_mutex_unlock(&t->lock);
    *wait = w;
    return false;
}

unsigned cdn_collapse_finish(struct cdn_collapse *t, const void *key, size_t klen,
                             enum cdn_collapse_result result)
{
    /* Waking under the lock means that once cdn_collapse_leave returned, no wake for that waiter can
     * still be on its way (its worker may close the handle the wake callback signals). */
    pthread_mutex_lock(&t->lock);
    struct entry **pp = find(t, key, klen), *e = *pp;
    CDN_ASSERT(e != NULL);
    *pp = e->next;
    unsigned n = 0;
    for (struct cdn_collapse_wait *w = e->waiters, *next; w != NULL; w = next) {
        next = w->next;
        w->entry = NULL;
        if (w->share == NULL) { /* a SHARED waiter reads the share to its end */
            atomic_store(&w->result, (int)result);
            w->wake(w->arg);
        }
        unref(w);
        n++;
    }
    pthread_mutex_unlock(&t->lock);
    cdn_share_unref(&e->share);
    free(e->key);
    free(e);
    return n;
}

void cdn_collapse_share(struct cdn_collapse *t, const void *key, size_t klen, struct cdn_share *sh)
{
    pthread_mutex_lock(&t->lock);
    struct entry *e = *find(t, key, klen);
    CDN_ASSERT(e != NULL && e->share == NULL);
    e->share = cdn_share_ref(sh);
    for (struct cdn_collapse_wait *w = e->waiters; w != NULL; w = w->next) {
        if (w->share == NULL) {
            w->share = cdn_share_ref(sh);
            atomic_store(&w->result, CDN_COLLAPSE_SHARED);
            w->wake(w->arg);
        }
    }
    pthread_mutex_unlock(&t->lock);
}

struct cdn_share *cdn_collapse_wait_share(const struct cdn_collapse_wait *w)
{
    return w->share;
}

enum cdn_collapse_result cdn_collapse_result(const struct cdn_collapse_wait *w)
{
    return (enum cdn_collapse_result)atomic_load(&w->result);
}

void cdn_collapse_leave(struct cdn_collapse_wait **wp)
{
    struct cdn_collapse_wait *w = *wp;
    if (w == NULL)
        return;
    *wp = NULL;
    pthread_mutex_lock(&w->table->lock);
    if (w->entry != NULL) { /* still waiting: the leader must not wake us any more */
        struct cdn_collapse_wait **pp = &w->entry->waiters;
        while (*pp != w)
            pp = &(*pp)->next;
        *pp = w->next;
        w->entry = NULL;
        unref(w); /* the table's reference */
    }
    pthread_mutex_unlock(&w->table->lock);
    unref(w);
}
