/*
 * stats: see stats.h. Everything here is driven by CDN_STATS_TABLE: the meta array mirrors it row
 * by row, and the three renderers (JSON, Prometheus, Markdown) walk that array, so a row added to the
 * table shows up in every output and in the docs check without touching this file. Only the derived
 * ratios name rows explicitly.
 *
 * Text is appended to a cdn_buf; label values and JSON strings may come from files (paths,
 * certificate subjects), so they are escaped for their format and invalid UTF-8 is replaced, which
 * keeps both outputs parseable whatever a certificate holds.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "lib/stats.h"
#include "lib/util.h"

const struct cdn_stat_meta cdn_stats_meta[] = {
#define X(name, kind, family, labels, help) \
    {CDN_STAT_##name, CDN_STAT_KIND_##kind, #name, #family, labels, help},
    CDN_STATS_TABLE(X)
#undef X
};
const size_t cdn_stats_nmeta = sizeof(cdn_stats_meta) / sizeof(cdn_stats_meta[0]);

const uint64_t cdn_stats_bucket_us[] = {
#define B(us, le) us,
    CDN_STATS_BUCKETS(B)
#undef B
};
const char *const cdn_stats_bucket_le[] = {
#define B(us, le) le,
    CDN_STATS_BUCKETS(B)
#undef B
};

const struct cdn_stat_meta *cdn_stats_meta_of(enum cdn_stat id)
{
    for (size_t i = 0; i < cdn_stats_nmeta; i++) {
        if (cdn_stats_meta[i].id == id)
            return &cdn_stats_meta[i];
    }
    return NULL;
}

void cdn_stats_init(struct cdn_stats *s)
{
    memset(s->pad_head_, 0, sizeof(s->pad_head_));
    memset(s->pad_tail_, 0, sizeof(s->pad_tail_));
    for (size_t i = 0; i < CDN_STAT__SLOTS; i++)
        atomic_init(&s->v[i], 0);
}

static uint64_t slot(const struct cdn_stats *s, size_t i)
{
    return atomic_load_explicit(&s->v[i], memory_order_relaxed);
}

static uint64_t hist_count(const struct cdn_stats *s, enum cdn_stat id)
{
    uint64_t n = 0;
    for (size_t i = 0; i <= CDN_STATS_NBUCKETS; i++)
        n += slot(s, (size_t)id + i);
    return n;
}

uint64_t cdn_stats_get(const struct cdn_stats *s, enum cdn_stat id)
{
    const struct cdn_stat_meta *m = cdn_stats_meta_of(id);
    if (m != NULL && m->kind == CDN_STAT_KIND_HISTOGRAM)
        return hist_count(s, id);
    return slot(s, id);
}

void cdn_stats_observe(struct cdn_stats *s, enum cdn_stat id, uint64_t usec)
{
    size_t b = 0;
    while (b < CDN_STATS_NBUCKETS && usec > cdn_stats_bucket_us[b])
        b++; /* b == CDN_STATS_NBUCKETS: the +Inf slot */
    cdn_stats_inc(s, (enum cdn_stat)(id + b));
    cdn_stats_add(s, (enum cdn_stat)(id + CDN_STATS_NBUCKETS + 1), usec);
}

void cdn_stats_response(struct cdn_stats *s, int status)
{
    static const enum cdn_stat by_class[] = {CDN_STAT_responses_1xx, CDN_STAT_responses_2xx,
                                             CDN_STAT_responses_3xx, CDN_STAT_responses_4xx,
                                             CDN_STAT_responses_5xx};
    if (status < 100 || status > 599)
        return;
    cdn_stats_inc(s, by_class[status / 100 - 1]);
}

enum cdn_stat cdn_stats_tls_failure(long verify_result, unsigned long err, bool timed_out)
{
    if (timed_out)
        return CDN_STAT_tls_failed_timeout;
    switch (verify_result) {
    case X509_V_OK:
        break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return CDN_STAT_tls_failed_expired;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return CDN_STAT_tls_failed_not_yet_valid;
    case X509_V_ERR_CERT_REVOKED:
        return CDN_STAT_tls_failed_revoked;
    case X509_V_ERR_INVALID_PURPOSE:
        return CDN_STAT_tls_failed_bad_eku;
    case X509_V_ERR_APPLICATION_VERIFICATION:
        return CDN_STAT_tls_failed_pin_mismatch;
    case X509_V_ERR_EE_KEY_TOO_SMALL:
    case X509_V_ERR_CA_KEY_TOO_SMALL:
    case X509_V_ERR_CA_MD_TOO_WEAK:
        return CDN_STAT_tls_failed_weak_crypto;
    case X509_V_ERR_INVALID_CA:
        return CDN_STAT_tls_failed_ca_as_leaf;
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
        return CDN_STAT_tls_failed_crl;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
        return CDN_STAT_tls_failed_unknown_ca;
    default:
        return CDN_STAT_tls_failed_other;
    }
    if (err == 0 || ERR_GET_LIB(err) != ERR_LIB_SSL)
        return CDN_STAT_tls_failed_other;
    switch (ERR_GET_REASON(err)) {
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return CDN_STAT_tls_failed_no_certificate;
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
        return CDN_STAT_tls_failed_other; /* a verify callback said no without a verify result */
    default:
        return CDN_STAT_tls_failed_protocol;
    }
}

bool cdn_stats_tls_failure_is_cert(enum cdn_stat id)
{
    switch (id) {
    case CDN_STAT_tls_failed_no_certificate:
    case CDN_STAT_tls_failed_unknown_ca:
    case CDN_STAT_tls_failed_expired:
    case CDN_STAT_tls_failed_not_yet_valid:
    case CDN_STAT_tls_failed_revoked:
    case CDN_STAT_tls_failed_bad_eku:
    case CDN_STAT_tls_failed_pin_mismatch:
    case CDN_STAT_tls_failed_weak_crypto:
    case CDN_STAT_tls_failed_ca_as_leaf:
    case CDN_STAT_tls_failed_crl:
        return true;
    default:
        return false;
    }
}

const char *cdn_stats_tls_failure_name(enum cdn_stat id)
{
    switch (id) {
    case CDN_STAT_tls_failed_no_certificate:
        return "no_certificate";
    case CDN_STAT_tls_failed_unknown_ca:
        return "unknown_ca";
    case CDN_STAT_tls_failed_expired:
        return "expired";
    case CDN_STAT_tls_failed_not_yet_valid:
        return "not_yet_valid";
    case CDN_STAT_tls_failed_revoked:
        return "revoked";
    case CDN_STAT_tls_failed_bad_eku:
        return "bad_eku";
    case CDN_STAT_tls_failed_pin_mismatch:
        return "pin_mismatch";
    case CDN_STAT_tls_failed_weak_crypto:
        return "weak_crypto";
    case CDN_STAT_tls_failed_ca_as_leaf:
        return "ca_as_leaf";
    case CDN_STAT_tls_failed_crl:
        return "crl";
    case CDN_STAT_tls_failed_protocol:
        return "protocol";
    case CDN_STAT_tls_failed_timeout:
        return "timeout";
    default:
        return "other";
    }
}

void cdn_stats_accumulate(struct cdn_stats *sum, const struct cdn_stats *block)
{
    for (size_t i = 0; i < CDN_STAT__SLOTS; i++) {
        uint64_t v = atomic_load_explicit(&sum->v[i], memory_order_relaxed) + slot(block, i);
        atomic_store_explicit(&sum->v[i], v, memory_order_relaxed);
    }
}

static double ratio(uint64_t part, uint64_t whole)
{
    return whole == 0 ? 0.0 : (double)part / (double)whole;
}

double cdn_stats_hit_ratio(const struct cdn_stats *s)
{
    uint64_t hits = slot(s, CDN_STAT_cache_hit_fresh) + slot(s, CDN_STAT_cache_hit_stale) +
                    slot(s, CDN_STAT_cache_revalidated) + slot(s, CDN_STAT_cache_collapsed);
    uint64_t all = hits + slot(s, CDN_STAT_cache_miss) + slot(s, CDN_STAT_cache_uncacheable);
    return ratio(hits, all);
}

double cdn_stats_byte_hit_ratio(const struct cdn_stats *s)
{
    uint64_t c = slot(s, CDN_STAT_bytes_from_cache);
    return ratio(c, c + slot(s, CDN_STAT_bytes_from_upstream));
}

/* ---- extras ---- */

/* Number of comma-separated label names of a SERIES row. */
static size_t series_nlabels(const struct cdn_stat_meta *m)
{
    if (m->labels[0] == '\0')
        return 0;
    size_t n = 1;
    for (const char *p = m->labels; *p != '\0'; p++)
        n += *p == ',';
    return n;
}

/* The i-th label name of a SERIES row into buf. */
static const char *series_label(const struct cdn_stat_meta *m, size_t i, char *buf, size_t n)
{
    const char *p = m->labels;
    for (; i > 0; i--)
        p = strchr(p, ',') + 1;
    size_t len = strcspn(p, ",");
    CDN_ASSERT(len < n);
    memcpy(buf, p, len);
    buf[len] = '\0';
    return buf;
}

void cdn_stats_extra_init(struct cdn_stats_extra *x)
{
    memset(x, 0, sizeof(*x));
}

void cdn_stats_extra_dispose(struct cdn_stats_extra *x)
{
    for (size_t i = 0; i < x->nseries; i++) {
        const struct cdn_stat_meta *m = cdn_stats_meta_of(x->series[i].family);
        for (size_t k = 0; k < series_nlabels(m); k++)
            free(x->series[i].values[k]);
        free(x->series[i].values);
    }
    free(x->series);
    free(x->reload_error);
    memset(x, 0, sizeof(*x));
}

void cdn_stats_extra_add(struct cdn_stats_extra *x, enum cdn_stat family, const char *const *values,
                         int64_t value, bool until)
{
    const struct cdn_stat_meta *m = cdn_stats_meta_of(family);
    CDN_ASSERT(m != NULL && CDN_STAT_KIND_IS_SERIES(m->kind));
    if (x->nseries == x->cap) {
        x->cap = x->cap == 0 ? 8 : x->cap * 2;
        x->series = cdn_xrealloc(x->series, x->cap * sizeof(*x->series));
    }
    struct cdn_stats_series *s = &x->series[x->nseries++];
    size_t n = series_nlabels(m);
    s->family = family;
    s->values = cdn_xcalloc(n > 0 ? n : 1, sizeof(char *));
    for (size_t k = 0; k < n; k++)
        s->values[k] = cdn_xstrdup(values[k] != NULL ? values[k] : "");
    s->value = value;
    s->until = until;
}

void cdn_stats_extra_set_reload_error(struct cdn_stats_extra *x, const char *err)
{
    free(x->reload_error);
    x->reload_error = err != NULL ? cdn_xstrdup(err) : NULL;
}

void cdn_stats_extra_copy(struct cdn_stats_extra *dst, const struct cdn_stats_extra *src)
{
    for (size_t i = 0; i < src->nseries; i++) {
        const struct cdn_stats_series *s = &src->series[i];
        cdn_stats_extra_add(dst, s->family, (const char *const *)s->values, s->value, s->until);
    }
    if (src->reload_error != NULL)
        cdn_stats_extra_set_reload_error(dst, src->reload_error);
}

/* True when series i repeats the family and label values of an earlier one: it is not rendered
 * (Prometheus refuses a whole scrape that holds a duplicate series). */
static bool series_dup(const struct cdn_stats_extra *x, size_t i)
{
    const struct cdn_stats_series *s = &x->series[i];
    size_t nl = series_nlabels(cdn_stats_meta_of(s->family));
    for (size_t j = 0; j < i; j++) {
        const struct cdn_stats_series *o = &x->series[j];
        size_t k = 0;
        if (o->family != s->family)
            continue;
        while (k < nl && strcmp(o->values[k], s->values[k]) == 0)
            k++;
        if (k == nl)
            return true;
    }
    return false;
}

static int64_t series_value(const struct cdn_stats_series *s, int64_t now)
{
    return s->until ? s->value - now : s->value;
}

static int64_t render_now(const struct cdn_stats_extra *x)
{
    return x != NULL && x->now != 0 ? x->now : (int64_t)time(NULL);
}

/* ---- text helpers ---- */

static void put(struct cdn_buf *b, const char *s)
{
    cdn_buf_append(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void putf(struct cdn_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    CDN_ASSERT(n >= 0);
    char *p = cdn_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    cdn_buf_commit(b, (size_t)n);
}

/* Length of the valid UTF-8 sequence at p[0..n), or 0 if it is not one (overlong, surrogate, above
 * U+10FFFF, truncated). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned cp = c & (0x7fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

void cdn_stats_json_str(struct cdn_buf *out, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    put(out, "\"");
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            cdn_buf_append(out, e, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            putf(out, "\\u%04x", c);
            i++;
        } else {
            size_t k = utf8_seq(p + i, n - i);
            if (k == 0) {
                put(out, REPLACEMENT);
                i++;
            } else {
                cdn_buf_append(out, p + i, k);
                i += k;
            }
        }
    }
    put(out, "\"");
}

/* A Prometheus label value: \ " and newline escaped, invalid UTF-8 replaced. */
static void prom_label_value(struct cdn_buf *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c == '\\' || c == '"') {
            char e[2] = {'\\', (char)c};
            cdn_buf_append(out, e, 2);
            i++;
        } else if (c == '\n') {
            put(out, "\\n");
            i++;
        } else {
            size_t k = utf8_seq(p + i, n - i);
            if (k == 0) {
                put(out, REPLACEMENT);
                i++;
            } else {
                cdn_buf_append(out, p + i, k);
                i += k;
            }
        }
    }
}

/* HELP text: \ and newline escaped. */
static void prom_help(struct cdn_buf *out, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            put(out, "\\\\");
        else if (*s == '\n')
            put(out, "\\n");
        else
            cdn_buf_append(out, s, 1);
    }
}

/* Seconds from microseconds, exactly: "12.000345". */
static void put_seconds(struct cdn_buf *out, uint64_t usec)
{
    putf(out, "%llu.%06llu", (unsigned long long)(usec / 1000000u), (unsigned long long)(usec % 1000000u));
}

static void put_ratio(struct cdn_buf *out, double r)
{
    putf(out, "%.6g", r);
}

static double ratio_of(const struct cdn_stats *sum, enum cdn_stat id)
{
    switch (id) {
    case CDN_STAT_cache_hit_ratio:
        return cdn_stats_hit_ratio(sum);
    case CDN_STAT_cache_byte_hit_ratio:
        return cdn_stats_byte_hit_ratio(sum);
    default:
        CDN_ASSERT(!"a RATIO row without a formula in ratio_of()");
        return 0.0;
    }
}

/* ---- JSON ---- */

static void json_histogram(struct cdn_buf *out, const struct cdn_stats *sum, enum cdn_stat id)
{
    uint64_t count = hist_count(sum, id), cum = 0;
    putf(out, "{\"count\": %llu, \"sum\": ", (unsigned long long)count);
    put_seconds(out, slot(sum, (size_t)id + CDN_STATS_NBUCKETS + 1));
    put(out, ", \"buckets\": {");
    for (size_t b = 0; b < CDN_STATS_NBUCKETS; b++) {
        cum += slot(sum, (size_t)id + b);
        putf(out, "\"%s\": %llu, ", cdn_stats_bucket_le[b], (unsigned long long)cum);
    }
    putf(out, "\"+Inf\": %llu}}", (unsigned long long)count);
}

static void json_series(struct cdn_buf *out, const struct cdn_stat_meta *m, const struct cdn_stats_extra *x,
                        int64_t now)
{
    size_t nl = series_nlabels(m);
    bool first = true;
    put(out, "[");
    for (size_t i = 0; x != NULL && i < x->nseries; i++) {
        const struct cdn_stats_series *s = &x->series[i];
        if (s->family != m->id || series_dup(x, i))
            continue;
        put(out, first ? "\n    {" : ",\n    {");
        first = false;
        for (size_t k = 0; k < nl; k++) {
            char name[64];
            series_label(m, k, name, sizeof(name));
            putf(out, "\"%s\": ", name);
            cdn_stats_json_str(out, s->values[k], strlen(s->values[k]));
            put(out, ", ");
        }
        putf(out, "\"value\": %lld}", (long long)series_value(s, now));
    }
    put(out, first ? "]" : "\n  ]");
}

void cdn_stats_render_json(const struct cdn_stats *sum, const struct cdn_stats_extra *extra, const char *role,
                           struct cdn_buf *out)
{
    int64_t now = render_now(extra);
    put(out, "{\n");
    if (role != NULL) {
        put(out, "  \"role\": ");
        cdn_stats_json_str(out, role, strlen(role));
        put(out, ",\n");
    }
    putf(out, "  \"time\": %lld", (long long)now);
    for (size_t i = 0; i < cdn_stats_nmeta; i++) {
        const struct cdn_stat_meta *m = &cdn_stats_meta[i];
        putf(out, ",\n  \"%s\": ", m->name);
        switch (m->kind) {
        case CDN_STAT_KIND_COUNTER:
            putf(out, "%llu", (unsigned long long)slot(sum, m->id));
            break;
        case CDN_STAT_KIND_GAUGE:
            putf(out, "%lld", (long long)(int64_t)slot(sum, m->id));
            break;
        case CDN_STAT_KIND_HISTOGRAM:
            json_histogram(out, sum, m->id);
            break;
        case CDN_STAT_KIND_RATIO:
            put_ratio(out, ratio_of(sum, m->id));
            break;
        case CDN_STAT_KIND_SERIES:
        case CDN_STAT_KIND_CSERIES:
            json_series(out, m, extra, now);
            break;
        }
    }
    put(out, ",\n  \"reload_last_error\": ");
    if (extra != NULL && extra->reload_error != NULL)
        cdn_stats_json_str(out, extra->reload_error, strlen(extra->reload_error));
    else
        put(out, "null");
    put(out, "\n}\n");
}

/* ---- Prometheus ---- */

static const char *prom_type(enum cdn_stat_kind k)
{
    switch (k) {
    case CDN_STAT_KIND_COUNTER:
    case CDN_STAT_KIND_CSERIES:
        return "counter";
    case CDN_STAT_KIND_HISTOGRAM:
        return "histogram";
    default:
        return "gauge";
    }
}

/* "cdn_<family>[_total]" */
static void prom_name(struct cdn_buf *out, const struct cdn_stat_meta *m)
{
    bool counter = m->kind == CDN_STAT_KIND_COUNTER || m->kind == CDN_STAT_KIND_CSERIES;
    putf(out, "cdn_%s%s", m->family, counter ? "_total" : "");
}

/* "{role="...",<labels>}" */
static void prom_labels(struct cdn_buf *out, const char *role, const char *labels, const char *le)
{
    put(out, "{role=\"");
    prom_label_value(out, role);
    put(out, "\"");
    if (labels != NULL && labels[0] != '\0') {
        put(out, ",");
        put(out, labels);
    }
    if (le != NULL)
        putf(out, ",le=\"%s\"", le);
    put(out, "}");
}

static void prom_histogram(struct cdn_buf *out, const struct cdn_stats *sum, const struct cdn_stat_meta *m,
                           const char *role)
{
    uint64_t count = hist_count(sum, m->id), cum = 0;
    for (size_t b = 0; b <= CDN_STATS_NBUCKETS; b++) {
        cum += slot(sum, (size_t)m->id + b);
        putf(out, "cdn_%s_bucket", m->family);
        prom_labels(out, role, m->labels, b < CDN_STATS_NBUCKETS ? cdn_stats_bucket_le[b] : "+Inf");
        putf(out, " %llu\n", (unsigned long long)cum);
    }
    putf(out, "cdn_%s_sum", m->family);
    prom_labels(out, role, m->labels, NULL);
    put(out, " ");
    put_seconds(out, slot(sum, (size_t)m->id + CDN_STATS_NBUCKETS + 1));
    putf(out, "\ncdn_%s_count", m->family);
    prom_labels(out, role, m->labels, NULL);
    putf(out, " %llu\n", (unsigned long long)count);
}

static void prom_series(struct cdn_buf *out, const struct cdn_stat_meta *m, const struct cdn_stats_extra *x,
                        const char *role, int64_t now)
{
    size_t nl = series_nlabels(m);
    for (size_t i = 0; x != NULL && i < x->nseries; i++) {
        const struct cdn_stats_series *s = &x->series[i];
        if (s->family != m->id || series_dup(x, i))
            continue;
        prom_name(out, m);
        put(out, "{role=\"");
        prom_label_value(out, role);
        put(out, "\"");
        for (size_t k = 0; k < nl; k++) {
            char name[64];
            putf(out, ",%s=\"", series_label(m, k, name, sizeof(name)));
            prom_label_value(out, s->values[k]);
            put(out, "\"");
        }
        putf(out, "} %lld\n", (long long)series_value(s, now));
    }
}

void cdn_stats_render_prometheus(const struct cdn_stats *sum, const struct cdn_stats_extra *extra,
                                 const char *role, struct cdn_buf *out)
{
    int64_t now = render_now(extra);
    if (role == NULL)
        role = "unknown";
    for (size_t i = 0; i < cdn_stats_nmeta; i++) {
        const struct cdn_stat_meta *m = &cdn_stats_meta[i];
        if (i == 0 || strcmp(cdn_stats_meta[i - 1].family, m->family) != 0) {
            put(out, "# HELP ");
            prom_name(out, m);
            put(out, " ");
            prom_help(out, m->help);
            put(out, "\n# TYPE ");
            prom_name(out, m);
            putf(out, " %s\n", prom_type(m->kind));
        }
        switch (m->kind) {
        case CDN_STAT_KIND_COUNTER:
        case CDN_STAT_KIND_GAUGE:
        case CDN_STAT_KIND_RATIO:
            prom_name(out, m);
            prom_labels(out, role, m->labels, NULL);
            if (m->kind == CDN_STAT_KIND_COUNTER)
                putf(out, " %llu\n", (unsigned long long)slot(sum, m->id));
            else if (m->kind == CDN_STAT_KIND_GAUGE)
                putf(out, " %lld\n", (long long)(int64_t)slot(sum, m->id));
            else {
                put(out, " ");
                put_ratio(out, ratio_of(sum, m->id));
                put(out, "\n");
            }
            break;
        case CDN_STAT_KIND_HISTOGRAM:
            prom_histogram(out, sum, m, role);
            break;
        case CDN_STAT_KIND_SERIES:
        case CDN_STAT_KIND_CSERIES:
            prom_series(out, m, extra, role, now);
            break;
        }
    }
}

/* ---- docs ---- */

void cdn_stats_doc(struct cdn_buf *out)
{
    put(out, "| JSON key | Prometheus series | type | meaning |\n");
    put(out, "|---|---|---|---|\n");
    for (size_t i = 0; i < cdn_stats_nmeta; i++) {
        const struct cdn_stat_meta *m = &cdn_stats_meta[i];
        putf(out, "| `%s` | `", m->name);
        prom_name(out, m);
        switch (m->kind) {
        case CDN_STAT_KIND_HISTOGRAM:
            put(out, "_bucket{le}`, `_sum`, `_count` | histogram");
            break;
        case CDN_STAT_KIND_SERIES:
        case CDN_STAT_KIND_CSERIES:
            putf(out, "{%s}` | %s, one series each", m->labels, prom_type(m->kind));
            break;
        case CDN_STAT_KIND_RATIO:
            put(out, "` | gauge, derived");
            break;
        default:
            if (m->labels[0] != '\0')
                putf(out, "{%s}", m->labels);
            putf(out, "` | %s", prom_type(m->kind));
            break;
        }
        bool same = i > 0 && strcmp(cdn_stats_meta[i - 1].family, m->family) == 0;
        putf(out, " | %s |\n", same ? "(as above)" : m->help);
    }
}
