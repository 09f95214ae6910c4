/*
 * evict: SIEVE over a FIFO queue, with an id -> entry table that other threads may read while the
 * owner writes it (see evict.h for the policy and the threading contract).
 *
 * Shape, and why:
 * - The queue is a doubly linked list of entries; `head` is the newest, `tail` the oldest. The hand
 *   moves from older to newer and wraps to the tail, as in the paper.
 * - Entries come from slabs and go back to a free list, never to malloc, until cache_evict_free. A
 *   thread in cache_evict_hit may hold a pointer to an entry the owner just removed: it still points
 *   at a valid entry, and the id check after the load makes a stale hit a no-op (or, if the entry was
 *   already reused, sets one wrong visited bit).
 * - The table is open addressing with linear probing and backward-shift deletion (no tombstones, so
 *   it never needs rehashing for churn, only to grow). Slots are atomic pointers. A deletion fills
 *   the hole with the entry it moves before clearing the next hole, so a reader can miss an entry
 *   only while it is being moved. Growing publishes a new table with a release store and keeps the
 *   old one until cache_evict_free; old tables add up to less than the current one.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "cache/evict.h"
#include "lib/util.h"

#define SLAB_ENTRIES 1024
#define MIN_CAP      64

struct evict_entry {
    _Atomic uint64_t id;       /* read by other threads to confirm a table hit */
    _Atomic bool visited;      /* set by any thread, cleared by the owner's hand */
    uint64_t size;             /* owner only, like the links */
    struct evict_entry *newer; /* towards head; also the free-list link */
    struct evict_entry *older; /* towards tail */
};

struct evict_table {
    size_t mask;
    struct evict_table *retired; /* older tables kept alive for racing readers */
    _Atomic(struct evict_entry *) slots[];
};

struct evict_slab {
    struct evict_slab *next;
    struct evict_entry e[SLAB_ENTRIES];
};

struct cache_evict {
    _Atomic(struct evict_table *) table;
    struct evict_entry *head, *tail, *hand, *free_list;
    struct evict_slab *slabs;
    size_t count;
    uint64_t bytes;
};

/* splitmix64's finaliser: ids may be sequential (the benchmark) or already random (key hashes). */
static size_t home_slot(uint64_t id, size_t mask)
{
    id ^= id >> 30;
    id *= 0xbf58476d1ce4e5b9ull;
    id ^= id >> 27;
    id *= 0x94d049bb133111ebull;
    id ^= id >> 31;
    return (size_t)id & mask;
}

static struct evict_table *table_new(size_t cap)
{
    struct evict_table *t = cdn_xcalloc(1, sizeof(*t) + cap * sizeof(t->slots[0]));
    t->mask = cap - 1;
    for (size_t i = 0; i < cap; i++)
        atomic_init(&t->slots[i], NULL);
    return t;
}

static struct evict_table *owner_table(const struct cache_evict *ev)
{
    return atomic_load_explicit((_Atomic(struct evict_table *) *)&ev->table, memory_order_relaxed);
}

/* Slot index of id in t, or SIZE_MAX. */
static size_t table_find(const struct evict_table *t, uint64_t id)
{
    for (size_t i = home_slot(id, t->mask), n = 0; n <= t->mask; i = (i + 1) & t->mask, n++) {
        struct evict_entry *e = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
        if (e == NULL)
            return SIZE_MAX;
        if (atomic_load_explicit(&e->id, memory_order_relaxed) == id)
            return i;
    }
    return SIZE_MAX;
}

static void table_put(struct evict_table *t, struct evict_entry *e)
{
    uint64_t id = atomic_load_explicit(&e->id, memory_order_relaxed);
    size_t i = home_slot(id, t->mask);
    while (atomic_load_explicit(&t->slots[i], memory_order_relaxed) != NULL)
        i = (i + 1) & t->mask;
    /* release: a reader that sees the pointer sees the entry's id. */
    atomic_store_explicit(&t->slots[i], e, memory_order_release);
}

static void table_delete(struct evict_table *t, size_t hole)
{
    size_t j = hole;
    for (;;) {
        j = (j + 1) & t->mask;
        struct evict_entry *e = atomic_load_explicit(&t->slots[j], memory_order_relaxed);
        if (e == NULL)
            break;
        size_t k = home_slot(atomic_load_explicit(&e->id, memory_order_relaxed), t->mask);
        /* e may move back into the hole unless its home lies cyclically in (hole, j]. */
        if (((j - k) & t->mask) >= ((j - hole) & t->mask)) {
            atomic_store_explicit(&t->slots[hole], e, memory_order_release);
            hole = j;
        }
    }
    atomic_store_explicit(&t->slots[hole], NULL, memory_order_release);
}

static void maybe_grow(struct cache_evict *ev)
{
    struct evict_table *t = owner_table(ev);
    if ((ev->count + 1) * 2 <= t->mask + 1)
        return;
    struct evict_table *nt = table_new((t->mask + 1) * 2);
    for (struct evict_entry *e = ev->head; e != NULL; e = e->older)
        table_put(nt, e);
    nt->retired = t;
    atomic_store_explicit(&ev->table, nt, memory_order_release);
}

static struct evict_entry *entry_alloc(struct cache_evict *ev)
{
    if (ev->free_list == NULL) {
        struct evict_slab *s = cdn_xcalloc(1, sizeof(*s));
        s->next = ev->slabs;
        ev->slabs = s;
        for (size_t i = 0; i < SLAB_ENTRIES; i++) {
            atomic_init(&s->e[i].id, 0);
            atomic_init(&s->e[i].visited, false);
            s->e[i].newer = ev->free_list;
            ev->free_list = &s->e[i];
        }
    }
    struct evict_entry *e = ev->free_list;
    ev->free_list = e->newer;
    return e;
}

static void unlink_entry(struct cache_evict *ev, struct evict_entry *e)
{
    if (ev->hand == e)
        ev->hand = e->newer;
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        ev->head = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        ev->tail = e->newer;
    ev->count--;
    ev->bytes -= e->size;
    e->older = NULL;
    e->newer = ev->free_list;
    ev->free_list = e;
}

struct cache_evict *cache_evict_new(void)
{
    struct cache_evict *ev = cdn_xcalloc(1, sizeof(*ev));
    atomic_init(&ev->table, table_new(MIN_CAP));
    return ev;
}

void cache_evict_free(struct cache_evict **evp)
{
    struct cache_evict *ev = *evp;
    if (ev == NULL)
        return;
    *evp = NULL;
    for (struct evict_table *t = owner_table(ev), *next; t != NULL; t = next) {
        next = t->retired;
        free(t);
    }
    for (struct evict_slab *s = ev->slabs, *next; s != NULL; s = next) {
        next = s->next;
        free(s);
    }
    free(ev);
}

int cache_evict_insert(struct cache_evict *ev, uint64_t id, uint64_t size)
{
    if (table_find(owner_table(ev), id) != SIZE_MAX)
        return CDN_EINVAL;
    maybe_grow(ev);
    struct evict_entry *e = entry_alloc(ev);
    atomic_store_explicit(&e->id, id, memory_order_relaxed);
    atomic_store_explicit(&e->visited, false, memory_order_relaxed);
    e->size = size;
    e->newer = NULL;
    e->older = ev->head;
    if (ev->head != NULL)
        ev->head->newer = e;
    else
        ev->tail = e;
    ev->head = e;
    ev->count++;
    ev->bytes += size;
    table_put(owner_table(ev), e);
    return 0;
}

void cache_evict_hit(struct cache_evict *ev, uint64_t id)
{
    struct evict_table *t = atomic_load_explicit(&ev->table, memory_order_acquire);
    for (size_t i = home_slot(id, t->mask), n = 0; n <= t->mask; i = (i + 1) & t->mask, n++) {
        struct evict_entry *e = atomic_load_explicit(&t->slots[i], memory_order_acquire);
        if (e == NULL)
            return;
        if (atomic_load_explicit(&e->id, memory_order_relaxed) == id) {
            /* A plain load first keeps hot entries' cache lines shared between threads. */
            if (!atomic_load_explicit(&e->visited, memory_order_relaxed))
                atomic_store_explicit(&e->visited, true, memory_order_relaxed);
            return;
        }
    }
}

bool cache_evict_remove(struct cache_evict *ev, uint64_t id)
{
    struct evict_table *t = owner_table(ev);
    size_t i = table_find(t, id);
    if (i == SIZE_MAX)
        return false;
    struct evict_entry *e = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
    table_delete(t, i);
    unlink_entry(ev, e);
    return true;
}

int cache_evict_one(struct cache_evict *ev, uint64_t *id, uint64_t *size)
{
    if (ev->count == 0)
        return CDN_EINVAL;
    struct evict_entry *e = ev->hand != NULL ? ev->hand : ev->tail;
    /* Hits keep setting bits while we walk; after two full turns take whatever the hand is on. */
    for (size_t steps = 0; steps < 2 * ev->count; steps++) {
        if (!atomic_exchange_explicit(&e->visited, false, memory_order_relaxed))
            break;
        e = e->newer != NULL ? e->newer : ev->tail;
    }
    uint64_t victim = atomic_load_explicit(&e->id, memory_order_relaxed);
    struct evict_table *t = owner_table(ev);
    size_t i = table_find(t, victim);
    CDN_ASSERT(i != SIZE_MAX);
    table_delete(t, i);
    *id = victim;
    if (size != NULL)
        *size = e->size;
    ev->hand = e;
    unlink_entry(ev, e); /* moves the hand on to e->newer */
    return 0;
}

bool cache_evict_contains(const struct cache_evict *ev, uint64_t id)
{
    return table_find(owner_table(ev), id) != SIZE_MAX;
}

size_t cache_evict_count(const struct cache_evict *ev)
{
    return ev->count;
}

uint64_t cache_evict_bytes(const struct cache_evict *ev)
{
    return ev->bytes;
}
