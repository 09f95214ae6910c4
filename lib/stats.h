/*
 * stats: the node's counters (defined in lib/stats_tbl.h), their per-worker blocks, aggregation, and
 * the renderers for /stats (JSON), /metrics (Prometheus text format 0.0.4) and docs/STATS.md.
 *
 * Threading. Each worker thread owns one struct cdn_stats (embedded in its struct cdn_worker) and is
 * the only thread that ever writes it; the main thread owns one more for what it counts (reloads,
 * start time). The hot path takes no lock and does no atomic read-modify-write: cdn_stats_add is a
 * relaxed atomic load and a relaxed atomic store of the writer's own slot, which compiles to a plain
 * load, add and store on x86-64 and aarch64 (no lock prefix, no LL/SC loop). Readers (the admin
 * endpoint, on any worker) sum all blocks with relaxed atomic loads. Relaxed atomics instead of plain
 * uint64_t because a concurrent plain read is a data race in C17 (undefined, and TSan says so) even
 * where the hardware never tears an aligned 64-bit access; relaxed costs nothing more here.
 * What a reader gets: every slot is a value the writer really stored (no torn reads), slots are not a
 * consistent snapshot of each other (a request may show in "requests" but not yet in "responses"),
 * and each slot never goes backwards across scrapes. Histograms stay self-consistent because the
 * count is not stored: it is the sum of the bucket slots, so the +Inf bucket always equals _count.
 * A block carries a cache line of padding on each side, so two workers' blocks never share a line
 * whatever their alignment.
 *
 * Gauges are summed like counters: a gauge that workers inc/dec (connections_active) is the sum of
 * their levels; a gauge that is "set" (reload_last_time_seconds) must be written in one block only.
 * The store's own figures (cache_objects, cache_evictions...) are not counted by workers at all: the
 * admin's collect callback copies them into the sum at render time (cdn_stats_set on the sum).
 */
#ifndef CDN_STATS_H
#define CDN_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/stats_tbl.h"

/* Number of finite histogram buckets; a histogram row takes these slots plus +Inf and the sum. */
#define CDN_STATS_B_COUNT(us, le) +1
#define CDN_STATS_NBUCKETS        (0 CDN_STATS_BUCKETS(CDN_STATS_B_COUNT))

#define CDN_STATS_SLOTS_COUNTER   1
#define CDN_STATS_SLOTS_GAUGE     1
#define CDN_STATS_SLOTS_HISTOGRAM (CDN_STATS_NBUCKETS + 2) /* buckets (not cumulative), +Inf, sum in us */
#define CDN_STATS_SLOTS_RATIO     1                        /* unused: keeps ids unique */
#define CDN_STATS_SLOTS_SERIES    1                        /* unused: keeps ids unique */
#define CDN_STATS_SLOTS_CSERIES   1                        /* unused: keeps ids unique */

/* CDN_STAT_<name> is the index of the row's first slot in struct cdn_stats.v. */
enum cdn_stat {
#define CDN_STATS_X(name, kind, family, labels, help) \
    CDN_STAT_##name, CDN_STAT_##name##_last_ = CDN_STAT_##name + CDN_STATS_SLOTS_##kind - 1,
    CDN_STATS_TABLE(CDN_STATS_X)
#undef CDN_STATS_X
        CDN_STAT__SLOTS
};

enum cdn_stat_kind {
    CDN_STAT_KIND_COUNTER,
    CDN_STAT_KIND_GAUGE,
    CDN_STAT_KIND_HISTOGRAM,
    CDN_STAT_KIND_RATIO,
    CDN_STAT_KIND_SERIES,
    CDN_STAT_KIND_CSERIES, /* a SERIES of counters: rendered as a Prometheus counter */
};

/* A family whose series are registered at run time (SERIES or CSERIES). */
#define CDN_STAT_KIND_IS_SERIES(k) ((k) == CDN_STAT_KIND_SERIES || (k) == CDN_STAT_KIND_CSERIES)

/* One row of the table. */
struct cdn_stat_meta {
    enum cdn_stat id;
    enum cdn_stat_kind kind;
    const char *name, *family, *labels, *help;
};

extern const struct cdn_stat_meta cdn_stats_meta[]; /* in table order */
extern const size_t cdn_stats_nmeta;
/* Histogram bucket bounds in microseconds and their "le" labels, CDN_STATS_NBUCKETS each. */
extern const uint64_t cdn_stats_bucket_us[];
extern const char *const cdn_stats_bucket_le[];

/* The row whose id is id, or NULL if id is not a row's first slot. */
const struct cdn_stat_meta *cdn_stats_meta_of(enum cdn_stat id);

/* One writer's block. Zero-initialised memory (calloc, a static) is a valid empty block. */
struct cdn_stats {
    char pad_head_[64];
    _Atomic uint64_t v[CDN_STAT__SLOTS];
    char pad_tail_[64];
};

/* Empties a block (before the first use when it is not zeroed memory, or for a fresh sum). Not while
 * another thread may read or write it. */
void cdn_stats_init(struct cdn_stats *s);

/* ---- hot path: only the thread that owns s ---- */

static inline void cdn_stats_add(struct cdn_stats *s, enum cdn_stat id, uint64_t n)
{
    uint64_t v = atomic_load_explicit(&s->v[id], memory_order_relaxed);
    atomic_store_explicit(&s->v[id], v + n, memory_order_relaxed);
}

static inline void cdn_stats_inc(struct cdn_stats *s, enum cdn_stat id)
{
    cdn_stats_add(s, id, 1);
}

/* Gauges only. The owner's level may dip below zero only transiently in a sum, never in a block. */
static inline void cdn_stats_dec(struct cdn_stats *s, enum cdn_stat id)
{
    cdn_stats_add(s, id, UINT64_MAX); /* -1, modulo 2^64 */
}

static inline void cdn_stats_set(struct cdn_stats *s, enum cdn_stat id, uint64_t v)
{
    atomic_store_explicit(&s->v[id], v, memory_order_relaxed);
}

/* Any thread. For a histogram id: the number of observations. */
uint64_t cdn_stats_get(const struct cdn_stats *s, enum cdn_stat id);

/* Records one observation of usec microseconds in histogram id (a HISTOGRAM row). */
void cdn_stats_observe(struct cdn_stats *s, enum cdn_stat id, uint64_t usec);

/* Counts a response in responses_<class>; statuses outside 100..599 are not counted. */
void cdn_stats_response(struct cdn_stats *s, int status);

/* The tls_failed_* id for a failed server-side handshake: timed_out wins; then the peer
 * certificate's verify result (SSL_get_verify_result; X509_V_OK when there was none to check) maps
 * expired, not yet valid, revoked, bad purpose and unknown issuer/untrusted/self-signed; then err
 * (the first ERR_peek_error() of the failure; 0 if none) maps "peer did not return a certificate"
 * to no_certificate and other SSL-library errors to protocol; anything else is other. A pin mismatch
 * is X509_V_ERR_APPLICATION_VERIFICATION (lib/tls.c sets it, nothing else does on a server). */
enum cdn_stat cdn_stats_tls_failure(long verify_result, unsigned long err, bool timed_out);

/* Whether id is a tls_failed_* reason about the client's certificate (counted as refused too). */
bool cdn_stats_tls_failure_is_cert(enum cdn_stat id);

/* The label of a tls_failed_* id ("pin_mismatch"...), for log lines. */
const char *cdn_stats_tls_failure_name(enum cdn_stat id);

/* ---- aggregation and derived values: any thread ---- */

/* sum += block, slot by slot (relaxed loads of block; sum must be private to the caller). */
void cdn_stats_accumulate(struct cdn_stats *sum, const struct cdn_stats *block);

/* (hit_fresh + hit_stale + revalidated + collapsed) / all six cache results; 0 when there were none. */
double cdn_stats_hit_ratio(const struct cdn_stats *s);
/* bytes_from_cache / (bytes_from_cache + bytes_from_upstream); 0 when both are 0. */
double cdn_stats_byte_hit_ratio(const struct cdn_stats *s);

/* ---- series registered at run time (SERIES rows) and other render-time extras ---- */

struct cdn_stats_series {
    enum cdn_stat family; /* a SERIES row */
    char **values;        /* one label value per label name of the row, in the row's order (heap) */
    int64_t value;
    bool until; /* value is a Unix time: the rendered value is value - now (seconds left) */
};

struct cdn_stats_extra {
    int64_t now; /* Unix seconds for "until" series; 0 = time(NULL) when rendering */
    struct cdn_stats_series *series;
    size_t nseries, cap;
    char *reload_error; /* why the last reload failed (heap); NULL when it did not */
};

void cdn_stats_extra_init(struct cdn_stats_extra *x);
void cdn_stats_extra_dispose(struct cdn_stats_extra *x);
/* Adds a series to family (a SERIES or CSERIES row; asserted). values holds one string per label name of the
 * row
 * ("kind,file,subject": 3), copied; they may hold any bytes except NUL (escaped when rendered, invalid
 * UTF-8 replaced). until: see struct cdn_stats_series. A series whose label values repeat an earlier
 * one of the same family is kept but not rendered. Example, at certificate load time:
 *     cdn_stats_extra_add(&gen->certs, CDN_STAT_certificate_expiry_seconds,
 *                         (const char *[]){"server", path, subject}, not_after_unix, true); */
void cdn_stats_extra_add(struct cdn_stats_extra *x, enum cdn_stat family, const char *const *values,
                         int64_t value, bool until);
/* Replaces reload_error with a copy of err (NULL clears it). */
void cdn_stats_extra_set_reload_error(struct cdn_stats_extra *x, const char *err);
/* Appends copies of src's series to dst and, when src has one, copies its reload_error; now is not
 * copied. For a collect callback that keeps the registered series in a long-lived set (under its own
 * lock, since a reload may replace it) and hands the admin a copy per scrape. */
void cdn_stats_extra_copy(struct cdn_stats_extra *dst, const struct cdn_stats_extra *src);

/* ---- renderers: append to out ---- */

/* One JSON object: "role" (omitted when role is NULL), "time", then one member per row in table order:
 * counters and gauges as integers, histograms as {"count","sum","buckets":{"<le>":cumulative,...,
 * "+Inf":count}}, ratios as numbers, series as arrays of {"<label>":"<value>",...,"value":n}, and
 * "reload_last_error" (string or null). extra may be NULL. Ends with a newline. */
void cdn_stats_render_json(const struct cdn_stats *sum, const struct cdn_stats_extra *extra, const char *role,
                           struct cdn_buf *out);

/* Prometheus text exposition format 0.0.4: per family one "# HELP" and one "# TYPE" line, then its
 * samples; names "cdn_<family>" (+ "_total" for counters); every sample has role="<role>" first
 * (role NULL = "unknown"); label values escaped (\\, \", \n). extra may be NULL. */
void cdn_stats_render_prometheus(const struct cdn_stats *sum, const struct cdn_stats_extra *extra,
                                 const char *role, struct cdn_buf *out);

/* The Markdown table of docs/STATS.md (between its "generated" markers): one row per table row. */
void cdn_stats_doc(struct cdn_buf *out);

/* Appends s[0..n) as a JSON string literal (quotes included): ", \ and controls escaped, invalid
 * UTF-8 bytes replaced by U+FFFD. Shared with lib/admin. */
void cdn_stats_json_str(struct cdn_buf *out, const char *s, size_t n);

#endif
