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

/* The admission sketch: SKETCH_ROWS rows of one-byte saturating counters (count-min). */
#define SKETCH_ROWS 4
#define SEEN_BATCH  16 /* lookups a thread counts on its own before adding them to `seen` */

struct cache_evict {
    _Atomic(struct evict_table *) table;
    struct evict_entry *head, *tail, *hand, *free_list;
    struct evict_slab *slabs;
    size_t count;
    uint64_t bytes;
    /* Admission, when enabled: counters and the lookups since the last halving are shared by all
     * threads (relaxed; a lost increment only blurs an estimate); admit_min is the estimate of the
     * last victim, written by the owner. */
    _Atomic uint8_t *sketch; /* SKETCH_ROWS * (sketch_mask + 1) counters, NULL when disabled */
    size_t sketch_mask;
    uint64_t period; /* lookups between two halvings */
    _Atomic uint64_t seen;
    _Atomic uint32_t admit_min;
};

static uint64_t mix64(uint64_t id)
{
    id ^= id >> 30;
    id *= 0xbf58476d1ce4e5b9ull;
    id ^= id >> 27;
    id *= 0x94d049bb133111ebull;
    id ^= id >> 31;
    return id;
}

/* splitmix64's finaliser: ids may be sequential (the benchmark) or already random (key hashes). */
static size_t home_slot(uint64_t id, size_t mask)
{
    return (size_t)mix64(id) & mask;
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
    free((void *)ev->sketch);
    free(ev);
}

/* ---- admission ---- */

void cache_evict_admission(struct cache_evict *ev, size_t expected)
{
    if (ev->sketch != NULL || expected == 0)
        return;
    /* 8 counters a row per expected object, so that cold ids rarely share all their counters with hot
     * ones; at most 4 Mi a row (16 MiB, for stores of some 500 GiB and more; halving it takes a few
     * ms of one worker every 10 * expected lookups). */
    size_t width = 2048;
    while (width < 8 * expected && width < ((size_t)1 << 22))
        width <<= 1;
    ev->sketch = cdn_xcalloc(SKETCH_ROWS * width, sizeof(ev->sketch[0]));
    for (size_t i = 0; i < SKETCH_ROWS * width; i++)
        atomic_init(&ev->sketch[i], 0);
    ev->sketch_mask = width - 1;
    ev->period = 10 * (uint64_t)(expected < 1024 ? 1024 : expected);
    atomic_init(&ev->seen, 0);
    atomic_init(&ev->admit_min, 0);
}

/* Counter i of row r for id: double hashing (Kirsch and Mitzenmacher) over two mixes of the id. */
static size_t sketch_slot(const struct cache_evict *ev, uint64_t h1, uint64_t h2, unsigned r)
{
    return r * (ev->sketch_mask + 1) + ((size_t)(h1 + r * h2) & ev->sketch_mask);
}

static unsigned sketch_estimate(const struct cache_evict *ev, uint64_t id)
{
    uint64_t h1 = mix64(id), h2 = mix64(h1) | 1;
    unsigned est = 255;
    for (unsigned r = 0; r < SKETCH_ROWS; r++) {
        unsigned c = atomic_load_explicit(&ev->sketch[sketch_slot(ev, h1, h2, r)], memory_order_relaxed);
        if (c < est)
            est = c;
    }
    return est;
}

/* Halves every counter so that the sketch follows what is popular now (TinyLFU's reset). */
static void sketch_age(struct cache_evict *ev)
{
    for (size_t i = 0; i < SKETCH_ROWS * (ev->sketch_mask + 1); i++) {
        uint8_t c = atomic_load_explicit(&ev->sketch[i], memory_order_relaxed);
        if (c != 0)
            atomic_store_explicit(&ev->sketch[i], (uint8_t)(c >> 1), memory_order_relaxed);
    }
}

void cache_evict_seen(struct cache_evict *ev, uint64_t id)
{
    if (ev->sketch == NULL)
        return;
    uint64_t h1 = mix64(id), h2 = mix64(h1) | 1;
    for (unsigned r = 0; r < SKETCH_ROWS; r++) {
        _Atomic uint8_t *c = &ev->sketch[sketch_slot(ev, h1, h2, r)];
        uint8_t v = atomic_load_explicit(c, memory_order_relaxed);
        if (v < 255)
            atomic_store_explicit(c, (uint8_t)(v + 1), memory_order_relaxed);
    }
    /* Lookups are added to the shared count SEEN_BATCH at a time, so that workers do not write one
     * cache line on every hit; the thread whose batch completes a period ages the sketch, the others
     * go on counting. */
    static _Thread_local unsigned local;
    if (++local < SEEN_BATCH)
        return;
    local = 0;
    uint64_t before = atomic_fetch_add_explicit(&ev->seen, SEEN_BATCH, memory_order_relaxed);
    if (before < ev->period && before + SEEN_BATCH >= ev->period) {
        sketch_age(ev);
        atomic_store_explicit(&ev->seen, 0, memory_order_relaxed);
    }
}

bool cache_evict_admit(const struct cache_evict *ev, uint64_t id)
{
    if (ev->sketch == NULL)
        return true;
    return sketch_estimate(ev, id) > atomic_load_explicit(&ev->admit_min, memory_order_relaxed);
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
    if (ev->sketch != NULL)
        atomic_store_explicit(&ev->admit_min, sketch_estimate(ev, victim), memory_order_relaxed);
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
