/*
 * pool: see pool.h. A small chained hash of keys; each key holds a LIFO list of idle conns, so the
 * warmest connection is reused first and the cold ones age out through their idle timers.
 */
#include <stdlib.h>
#include <string.h>

#include "lib/pool.h"
#include "lib/util.h"

#define ENTRY_MAGIC 0x706f6f6cu
#define NBUCKETS    64

struct pool_key;

struct pool_entry {
    uint32_t magic;
    struct cdn_pool *pool;
    struct pool_key *key;
    struct cdn_conn *conn;
    struct pool_entry *prev, *next;
};

struct pool_key {
    char *name;
    struct pool_entry *idle; /* most recent first */
    size_t n;
    struct pool_key *next;
};

struct cdn_pool {
    struct pool_key *buckets[NBUCKETS];
    size_t idle;
};

static size_t hash(const char *s)
{
    size_t h = 5381;
    while (*s != '\0')
        h = h * 33 + (unsigned char)*s++;
    return h % NBUCKETS;
}

struct cdn_pool *cdn_pool_new(void)
{
    return cdn_xcalloc(1, sizeof(struct cdn_pool));
}

static struct pool_key *find_key(struct cdn_pool *p, const char *name, bool create)
{
    size_t b = hash(name);
    for (struct pool_key *k = p->buckets[b]; k != NULL; k = k->next) {
        if (strcmp(k->name, name) == 0)
            return k;
    }
    if (!create)
        return NULL;
    struct pool_key *k = cdn_xcalloc(1, sizeof(*k));
    k->name = cdn_xstrdup(name);
    k->next = p->buckets[b];
    p->buckets[b] = k;
    return k;
}

static void unlink_entry(struct cdn_pool *p, struct pool_entry *e)
{
    struct pool_key *k = e->key;
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        k->idle = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    k->n--;
    p->idle--;
}

static void on_idle_event(struct cdn_conn *c, enum cdn_conn_event ev, int status)
{
    struct pool_entry *e = c->data;
    CDN_CHECK_OBJ(e, ENTRY_MAGIC);
    /* an idle upstream conn has nothing to say: whatever happened, it is no longer reusable */
    unlink_entry(e->pool, e);
    e->magic = 0;
    free(e);
    cdn_conn_close(c);
}

void cdn_pool_put(struct cdn_pool *p, const char *key, struct cdn_conn *c, uint64_t idle_ms)
{
    struct pool_key *k = find_key(p, key, true);
    if (k->n >= CDN_POOL_MAX_PER_KEY) {
        cdn_conn_end(c);
        return;
    }
    struct pool_entry *e = cdn_xcalloc(1, sizeof(*e));
    e->pool = p;
    e->magic = ENTRY_MAGIC;
    e->key = k;
    e->conn = c;
    e->next = k->idle;
    if (k->idle != NULL)
        k->idle->prev = e;
    k->idle = e;
    k->n++;
    p->idle++;
    c->cb = on_idle_event;
    c->data = e;
    cdn_conn_set_timeout(c, idle_ms);
    cdn_conn_read_start(c); /* to see the upstream close it */
}

struct cdn_conn *cdn_pool_get(struct cdn_pool *p, const char *key)
{
    struct pool_key *k = find_key(p, key, false);
    if (k == NULL || k->idle == NULL)
        return NULL;
    struct pool_entry *e = k->idle;
    unlink_entry(p, e);
    struct cdn_conn *c = e->conn;
    e->magic = 0;
    free(e);
    c->cb = NULL;
    c->data = NULL;
    cdn_conn_set_timeout(c, 0);
    return c;
}

size_t cdn_pool_idle(const struct cdn_pool *p)
{
    return p->idle;
}

void cdn_pool_free(struct cdn_pool **pp)
{
    struct cdn_pool *p = *pp;
    if (p == NULL)
        return;
    for (size_t b = 0; b < NBUCKETS; b++) {
        struct pool_key *k = p->buckets[b];
        while (k != NULL) {
            struct pool_key *next = k->next;
            while (k->idle != NULL) {
                struct pool_entry *e = k->idle;
                k->idle = e->next;
                cdn_conn_close(e->conn);
                e->magic = 0;
                free(e);
            }
            free(k->name);
            free(k);
            k = next;
        }
    }
    free(p);
    *pp = NULL;
}
