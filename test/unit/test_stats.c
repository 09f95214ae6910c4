/*
 * stats: the table's invariants (names, families, labels, slots), lock-free blocks and their sum,
 * histograms, derived ratios, and the three outputs: JSON checked by a small strict parser written
 * here, Prometheus checked line by line against the 0.0.4 text format rules (HELP/TYPE once per
 * family and before its samples, _total on counters, the role label first on every sample, escaped
 * label values, cumulative buckets ending in +Inf == _count), and docs/STATS.md compared with the
 * generator's table (the tests run from the repository root).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include "lib/stats.h"
#include "lib/util.h"
#include "test/unit/suites.h"

/* ---- helpers ---- */

static char *render(int which, const struct cdn_stats *sum, const struct cdn_stats_extra *x, const char *role)
{
    struct cdn_buf b;
    cdn_buf_init(&b);
    if (which == 0)
        cdn_stats_render_json(sum, x, role, &b);
    else if (which == 1)
        cdn_stats_render_prometheus(sum, x, role, &b);
    else
        cdn_stats_doc(&b);
    char *s = cdn_xstrndup(cdn_buf_data(&b), b.len);
    cdn_buf_dispose(&b);
    return s;
}

static bool is_ident(const char *s, bool colon)
{
    if (!(isalpha((unsigned char)*s) || *s == '_' || (colon && *s == ':')))
        return false;
    for (s++; *s != '\0'; s++) {
        if (!(isalnum((unsigned char)*s) || *s == '_' || (colon && *s == ':')))
            return false;
    }
    return true;
}

/* ---- a strict JSON checker (RFC 8259) ---- */

struct jp {
    const char *p, *end;
    int depth;
};

static void jws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool jvalue(struct jp *j);

static bool jstring(struct jp *j)
{
    if (j->p >= j->end || *j->p != '"')
        return false;
    for (j->p++; j->p < j->end; j->p++) {
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            j->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            j->p++;
            if (j->p >= j->end)
                return false;
            if (*j->p == 'u') {
                for (int i = 0; i < 4; i++) {
                    j->p++;
                    if (j->p >= j->end || !isxdigit((unsigned char)*j->p))
                        return false;
                }
            } else if (strchr("\"\\/bfnrt", *j->p) == NULL) {
                return false;
            }
        }
    }
    return false;
}

static bool jnumber(struct jp *j)
{
    const char *s = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p >= j->end || !isdigit((unsigned char)*j->p))
        return false;
    if (*j->p == '0')
        j->p++;
    else
        while (j->p < j->end && isdigit((unsigned char)*j->p))
            j->p++;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || !isdigit((unsigned char)*j->p))
            return false;
        while (j->p < j->end && isdigit((unsigned char)*j->p))
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (j->p >= j->end || !isdigit((unsigned char)*j->p))
            return false;
        while (j->p < j->end && isdigit((unsigned char)*j->p))
            j->p++;
    }
    return j->p > s;
}

static bool jlit(struct jp *j, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
        return false;
    j->p += n;
    return true;
}

static bool jcontainer(struct jp *j, char open, char close)
{
    if (++j->depth > 32)
        return false;
    j->p++; /* open */
    jws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        j->depth--;
        return true;
    }
    for (;;) {
        jws(j);
        if (open == '{') {
            if (!jstring(j))
                return false;
            jws(j);
            if (j->p >= j->end || *j->p != ':')
                return false;
            j->p++;
        }
        if (!jvalue(j))
            return false;
        jws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == close) {
            j->p++;
            j->depth--;
            return true;
        }
        return false;
    }
}

static bool jvalue(struct jp *j)
{
    jws(j);
    if (j->p >= j->end)
        return false;
    switch (*j->p) {
    case '{':
        return jcontainer(j, '{', '}');
    case '[':
        return jcontainer(j, '[', ']');
    case '"':
        return jstring(j);
    case 't':
        return jlit(j, "true");
    case 'f':
        return jlit(j, "false");
    case 'n':
        return jlit(j, "null");
    default:
        return jnumber(j);
    }
}

/* Valid UTF-8 and exactly one JSON value (with surrounding whitespace). */
static bool json_valid(const char *s)
{
    struct jp j = {s, s + strlen(s), 0};
    if (!jvalue(&j))
        return false;
    jws(&j);
    return j.p == j.end;
}

/* ---- a strict Prometheus text format 0.0.4 checker ---- */

#define PROM_MAX_FAMILIES 128

struct prom {
    char err[512];
    char families[PROM_MAX_FAMILIES][96]; /* every HELP/TYPE name seen, in order */
    char types[PROM_MAX_FAMILIES][16];
    bool helped[PROM_MAX_FAMILIES];
    size_t nfamilies;
    int cur; /* family whose samples may follow, or -1 */
    /* histogram state of the current family (one label set: role only) */
    double last_le, last_bucket;
    bool inf_seen;
    double inf_value;
    size_t nsamples;
};

static int prom_family(struct prom *P, const char *name)
{
    for (size_t i = 0; i < P->nfamilies; i++) {
        if (strcmp(P->families[i], name) == 0)
            return (int)i;
    }
    return -1;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Parses {name="value",...}; stores the role and le values; returns the byte after '}' or NULL. */
static const char *prom_labels(struct prom *P, const char *p, char *role, size_t rn, char *le, size_t ln)
{
    role[0] = le[0] = '\0';
    if (*p != '{') {
        snprintf(P->err, sizeof(P->err), "no label set");
        return NULL;
    }
    p++;
    for (int i = 0;; i++) {
        char name[64];
        size_t k = 0;
        while (isalnum((unsigned char)*p) || *p == '_') {
            if (k + 1 < sizeof(name))
                name[k++] = *p;
            p++;
        }
        name[k] = '\0';
        if (!is_ident(name, false) || strncmp(name, "__", 2) == 0 || p[0] != '=' || p[1] != '"') {
            snprintf(P->err, sizeof(P->err), "bad label name near '%.20s'", p);
            return NULL;
        }
        if (i == 0 && strcmp(name, "role") != 0) {
            snprintf(P->err, sizeof(P->err), "first label is %s, not role", name);
            return NULL;
        }
        if (i > 0 && strcmp(name, "role") == 0) {
            snprintf(P->err, sizeof(P->err), "role label twice");
            return NULL;
        }
        p += 2;
        char val[512];
        size_t v = 0;
        while (*p != '"') {
            char c = *p;
            if (c == '\0' || c == '\n') {
                snprintf(P->err, sizeof(P->err), "unterminated label value");
                return NULL;
            }
            if (c == '\\') {
                p++;
                if (*p == 'n')
                    c = '\n';
                else if (*p == '\\' || *p == '"')
                    c = *p;
                else {
                    snprintf(P->err, sizeof(P->err), "bad escape \\%c", *p);
                    return NULL;
                }
            }
            if (v + 1 < sizeof(val))
                val[v++] = c;
            p++;
        }
        val[v] = '\0';
        p++;
        if (strcmp(name, "role") == 0)
            snprintf(role, rn, "%.*s", (int)(rn - 1), val);
        if (strcmp(name, "le") == 0)
            snprintf(le, ln, "%.*s", (int)(ln - 1), val);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '}')
            return p + 1;
        snprintf(P->err, sizeof(P->err), "expected , or } near '%.20s'", p);
        return NULL;
    }
}

static bool prom_float(const char *s, double *out)
{
    if (strcmp(s, "+Inf") == 0) {
        *out = INFINITY;
        return true;
    }
    if (strcmp(s, "-Inf") == 0) {
        *out = -INFINITY;
        return true;
    }
    if (strcmp(s, "NaN") == 0) {
        *out = NAN;
        return true;
    }
    char *end;
    *out = strtod(s, &end);
    return end != s && *end == '\0';
}

/* Ends the histogram checks of the current family. */
static bool prom_close_family(struct prom *P)
{
    if (P->cur < 0 || strcmp(P->types[P->cur], "histogram") != 0)
        return true;
    if (!P->inf_seen) {
        char fam[96];
        memcpy(fam, P->families[P->cur], sizeof(fam));
        snprintf(P->err, sizeof(P->err), "%s: no +Inf bucket", fam);
        return false;
    }
    return true;
}

static bool prom_sample(struct prom *P, const char *line, const char *want_role)
{
    char name[128];
    size_t k = 0;
    const char *p = line;
    while (isalnum((unsigned char)*p) || *p == '_' || *p == ':') {
        if (k + 1 < sizeof(name))
            name[k++] = *p;
        p++;
    }
    name[k] = '\0';
    if (!is_ident(name, true)) {
        snprintf(P->err, sizeof(P->err), "bad metric name in '%.100s'", line);
        return false;
    }
    if (P->cur < 0) {
        snprintf(P->err, sizeof(P->err), "%s: sample before any TYPE", name);
        return false;
    }
    char fam[96], type[16];
    memcpy(fam, P->families[P->cur], sizeof(fam));
    memcpy(type, P->types[P->cur], sizeof(type));
    bool hist = strcmp(type, "histogram") == 0;
    char suffix[16] = "";
    if (hist) {
        size_t fl = strlen(fam);
        if (strncmp(name, fam, fl) != 0 ||
            (strcmp(name + fl, "_bucket") != 0 && strcmp(name + fl, "_sum") != 0 &&
             strcmp(name + fl, "_count") != 0)) {
            snprintf(P->err, sizeof(P->err), "%s: not a sample of histogram %s", name, fam);
            return false;
        }
        snprintf(suffix, sizeof(suffix), "%s", name + fl);
    } else if (strcmp(name, fam) != 0) {
        snprintf(P->err, sizeof(P->err), "%s: sample outside its family (current %s)", name, fam);
        return false;
    }
    char role[128], le[64];
    p = prom_labels(P, p, role, sizeof(role), le, sizeof(le));
    if (p == NULL)
        return false;
    if (strcmp(role, want_role) != 0) {
        snprintf(P->err, sizeof(P->err), "%s: role \"%s\", want \"%s\"", name, role, want_role);
        return false;
    }
    if (*p != ' ') {
        snprintf(P->err, sizeof(P->err), "%s: no space before the value", name);
        return false;
    }
    double v;
    if (!prom_float(p + 1, &v)) {
        snprintf(P->err, sizeof(P->err), "%s: bad value '%.40s'", name, p + 1);
        return false;
    }
    P->nsamples++;
    if (!hist)
        return true;
    if (strcmp(suffix, "_bucket") == 0) {
        double b;
        if (le[0] == '\0' || !prom_float(le, &b) || P->inf_seen || b <= P->last_le || v < P->last_bucket) {
            snprintf(P->err, sizeof(P->err), "%s: bucket le=%s out of order or not cumulative", name, le);
            return false;
        }
        P->last_le = b;
        P->last_bucket = v;
        if (isinf(b)) {
            P->inf_seen = true;
            P->inf_value = v;
        }
    } else {
        if (!P->inf_seen) {
            snprintf(P->err, sizeof(P->err), "%s before the +Inf bucket", name);
            return false;
        }
        if (strcmp(suffix, "_count") == 0 && v != P->inf_value) {
            snprintf(P->err, sizeof(P->err), "%s = %g but +Inf bucket = %g", name, v, P->inf_value);
            return false;
        }
    }
    return true;
}

/* Checks the whole exposition; 0 or -1 with P->err. */
static int prom_check(struct prom *P, const char *text, const char *want_role)
{
    memset(P, 0, sizeof(*P));
    P->cur = -1;
    const char *p = text;
    if (*p == '\0' || text[strlen(text) - 1] != '\n') {
        snprintf(P->err, sizeof(P->err), "empty or no final newline");
        return -1;
    }
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        char line[2048];
        size_t n = (size_t)(nl - p);
        ck_assert_uint_lt(n, sizeof(line));
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0) {
            bool help = line[2] == 'H';
            char name[96];
            const char *sp = strchr(line + 7, ' ');
            if (sp == NULL || (size_t)(sp - (line + 7)) >= sizeof(name)) {
                snprintf(P->err, sizeof(P->err), "bad line '%.100s'", line);
                return -1;
            }
            memcpy(name, line + 7, (size_t)(sp - (line + 7)));
            name[sp - (line + 7)] = '\0';
            if (!is_ident(name, true) || strncmp(name, "cdn_", 4) != 0) {
                snprintf(P->err, sizeof(P->err), "bad family name '%s'", name);
                return -1;
            }
            int f = prom_family(P, name);
            if (help) {
                if (f >= 0) {
                    snprintf(P->err, sizeof(P->err), "%s: second HELP", name);
                    return -1;
                }
                if (!prom_close_family(P))
                    return -1;
                ck_assert_uint_lt(P->nfamilies, PROM_MAX_FAMILIES);
                f = (int)P->nfamilies++;
                snprintf(P->families[f], sizeof(P->families[f]), "%s", name);
                P->helped[f] = true;
                P->cur = -1; /* samples only after TYPE */
                for (const char *h = sp + 1; *h != '\0'; h++) {
                    if (*h == '\\' && h[1] != '\\' && h[1] != 'n') {
                        snprintf(P->err, sizeof(P->err), "%s: bad escape in HELP", name);
                        return -1;
                    }
                    if (*h == '\\')
                        h++;
                }
            } else {
                if (f < 0 || f != (int)P->nfamilies - 1 || P->types[f][0] != '\0') {
                    snprintf(P->err, sizeof(P->err), "%s: TYPE without HELP right before, or twice", name);
                    return -1;
                }
                const char *t = sp + 1;
                if (strcmp(t, "counter") != 0 && strcmp(t, "gauge") != 0 && strcmp(t, "histogram") != 0) {
                    snprintf(P->err, sizeof(P->err), "%s: type '%s'", name, t);
                    return -1;
                }
                if ((strcmp(t, "counter") == 0) != ends_with(name, "_total")) {
                    snprintf(P->err, sizeof(P->err), "%s: counters and only counters end in _total", name);
                    return -1;
                }
                snprintf(P->types[f], sizeof(P->types[f]), "%s", t);
                P->cur = f;
                P->last_le = -INFINITY;
                P->last_bucket = 0;
                P->inf_seen = false;
            }
            continue;
        }
        if (line[0] == '#' || line[0] == '\0') {
            snprintf(P->err, sizeof(P->err), "unexpected line '%.100s'", line);
            return -1;
        }
        if (!prom_sample(P, line, want_role))
            return -1;
    }
    return prom_close_family(P) ? 0 : -1;
}

/* ==== the table ==== */

START_TEST(table_consistency)
{
    size_t slots = 0;
    ck_assert_uint_gt(cdn_stats_nmeta, 0);
    for (size_t i = 0; i < cdn_stats_nmeta; i++) {
        const struct cdn_stat_meta *m = &cdn_stats_meta[i];
        ck_assert_msg(is_ident(m->name, false), "name %s", m->name);
        ck_assert_msg(is_ident(m->family, false), "family %s", m->family);
        ck_assert_msg(m->help != NULL && m->help[0] != '\0', "%s: empty help", m->name);
        ck_assert_msg(strpbrk(m->help, "|\n\\") == NULL, "%s: help has | newline or backslash", m->name);
        ck_assert_msg(!ends_with(m->family, "_total") && !ends_with(m->family, "_bucket") &&
                          !ends_with(m->family, "_sum") && !ends_with(m->family, "_count"),
                      "%s: family has a reserved suffix", m->name);
        /* ids: each row starts where the previous one ended */
        ck_assert_msg((size_t)m->id == slots, "%s: id %d, want %zu", m->name, (int)m->id, slots);
        ck_assert_ptr_eq(cdn_stats_meta_of(m->id), m);
        slots += m->kind == CDN_STAT_KIND_HISTOGRAM ? CDN_STATS_SLOTS_HISTOGRAM : 1;
        for (size_t j = 0; j < i; j++) {
            ck_assert_msg(strcmp(cdn_stats_meta[j].name, m->name) != 0, "duplicate name %s", m->name);
            bool same_family = strcmp(cdn_stats_meta[j].family, m->family) == 0;
            if (same_family) {
                ck_assert_msg(j == i - 1 || strcmp(cdn_stats_meta[j + 1].family, m->family) == 0,
                              "family %s is not contiguous", m->family);
                ck_assert_msg(strcmp(cdn_stats_meta[j].labels, m->labels) != 0, "%s: same labels as %s",
                              m->name, cdn_stats_meta[j].name);
            }
            /* a family name must not collide with another family's generated sample names */
            char other[128];
            snprintf(other, sizeof(other), "%s_total", cdn_stats_meta[j].family);
            ck_assert_msg(strcmp(other, m->family) != 0, "%s collides with %s", m->family, other);
        }
        if (i > 0 && strcmp(cdn_stats_meta[i - 1].family, m->family) == 0) {
            ck_assert_msg(cdn_stats_meta[i - 1].kind == m->kind, "%s: kind differs within its family",
                          m->name);
            ck_assert_msg(strcmp(cdn_stats_meta[i - 1].help, m->help) == 0, "%s: help differs within family",
                          m->name);
            ck_assert_msg(m->kind == CDN_STAT_KIND_COUNTER || m->kind == CDN_STAT_KIND_GAUGE,
                          "%s: only counters and gauges share a family", m->name);
            ck_assert_msg(m->labels[0] != '\0', "%s: a shared family needs labels", m->name);
        }
        /* labels: key="value",... for constant labels; k1,k2 for series */
        const char *p = m->labels;
        while (*p != '\0') {
            char key[64];
            size_t k = 0;
            while (isalnum((unsigned char)*p) || *p == '_')
                key[k++] = *p++;
            key[k] = '\0';
            ck_assert_msg(is_ident(key, false), "%s: bad label name in '%s'", m->name, m->labels);
            ck_assert_msg(strcmp(key, "role") != 0 && strcmp(key, "le") != 0 && strcmp(key, "value") != 0,
                          "%s: label %s is reserved", m->name, key);
            if (!CDN_STAT_KIND_IS_SERIES(m->kind)) {
                ck_assert_msg(p[0] == '=' && p[1] == '"', "%s: labels '%s'", m->name, m->labels);
                p += 2;
                while (*p != '"') {
                    ck_assert_msg(*p != '\0' && *p != '\\', "%s: labels '%s'", m->name, m->labels);
                    p++;
                }
                p++;
            }
            if (*p == ',')
                p++;
            else
                ck_assert_msg(*p == '\0', "%s: labels '%s'", m->name, m->labels);
        }
        if (CDN_STAT_KIND_IS_SERIES(m->kind))
            ck_assert_msg(m->labels[0] != '\0', "%s: a series family needs label names", m->name);
    }
    ck_assert_uint_eq(slots, CDN_STAT__SLOTS);
    ck_assert_ptr_null(cdn_stats_meta_of(CDN_STAT_request_duration_seconds + 1));
    /* buckets: increasing, and each label is the bound in seconds */
    for (size_t b = 0; b < CDN_STATS_NBUCKETS; b++) {
        if (b > 0)
            ck_assert_uint_gt(cdn_stats_bucket_us[b], cdn_stats_bucket_us[b - 1]);
        double s = strtod(cdn_stats_bucket_le[b], NULL);
        ck_assert_msg(fabs(s * 1e6 - (double)cdn_stats_bucket_us[b]) < 0.5, "bucket %s",
                      cdn_stats_bucket_le[b]);
    }
    ck_assert_uint_eq(cdn_stats_bucket_us[0], 1000);
    ck_assert_uint_eq(cdn_stats_bucket_us[CDN_STATS_NBUCKETS - 1], 10000000);
}
END_TEST

/* ==== blocks and their sum ==== */

START_TEST(inc_add_aggregate)
{
    struct cdn_stats *w = calloc(3, sizeof(*w)); /* zeroed memory is an empty block */
    ck_assert_ptr_nonnull(w);
    cdn_stats_init(&w[2]);
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k <= i; k++)
            cdn_stats_inc(&w[i], CDN_STAT_requests);
        cdn_stats_add(&w[i], CDN_STAT_bytes_from_cache, 1000u * (unsigned)(i + 1));
        cdn_stats_inc(&w[i], CDN_STAT_connections_active);
        cdn_stats_inc(&w[i], CDN_STAT_connections_active);
    }
    cdn_stats_dec(&w[1], CDN_STAT_connections_active);
    cdn_stats_set(&w[0], CDN_STAT_reload_last_time_seconds, 1700000000u);
    cdn_stats_response(&w[0], 200);
    cdn_stats_response(&w[1], 204);
    cdn_stats_response(&w[1], 304);
    cdn_stats_response(&w[2], 101);
    cdn_stats_response(&w[2], 404);
    cdn_stats_response(&w[2], 503);
    cdn_stats_response(&w[2], 599);
    cdn_stats_response(&w[2], 99);  /* not counted */
    cdn_stats_response(&w[2], 600); /* not counted */
    cdn_stats_observe(&w[0], CDN_STAT_request_duration_seconds, 500);
    cdn_stats_observe(&w[1], CDN_STAT_request_duration_seconds, 1500);
    cdn_stats_observe(&w[2], CDN_STAT_request_duration_seconds, 60000000);
    ck_assert_uint_eq(cdn_stats_get(&w[1], CDN_STAT_connections_active), 1);

    struct cdn_stats sum;
    cdn_stats_init(&sum);
    for (int i = 0; i < 3; i++)
        cdn_stats_accumulate(&sum, &w[i]);
    ck_assert_uint_eq(cdn_stats_get(&sum, CDN_STAT_requests), 6);
    ck_assert_uint_eq(cdn_stats_get(&sum, CDN_STAT_bytes_from_cache), 6000);
    ck_assert_uint_eq(cdn_stats_get(&sum, CDN_STAT_connections_active), 5);
    ck_assert_uint_eq(cdn_stats_get(&sum, CDN_STAT_reload_last_time_seconds), 1700000000u);
    ck_assert_uint_eq(cdn_stats_get(&sum, CDN_STAT_responses_1xx), 1);
    ck_assert_uint_eq(cdn_stats_get(&sum, CDN_STAT_responses_2xx), 2);
    ck_assert_uint_eq(cdn_stats_get(&sum, CDN_STAT_responses_3xx), 1);
    ck_assert_uint_eq(cdn_stats_get(&sum, CDN_STAT_responses_4xx), 1);
    ck_assert_uint_eq(cdn_stats_get(&sum, CDN_STAT_responses_5xx), 2);
    ck_assert_uint_eq(cdn_stats_get(&sum, CDN_STAT_request_duration_seconds), 3);
    ck_assert_uint_eq(cdn_stats_get(&sum, CDN_STAT_upstream_response_seconds), 0);
    ck_assert_uint_eq(cdn_stats_get(&sum, CDN_STAT_cache_miss), 0);
    /* summing again adds again: the sum is the caller's to empty */
    cdn_stats_accumulate(&sum, &w[0]);
    ck_assert_uint_eq(cdn_stats_get(&sum, CDN_STAT_requests), 7);
    /* a decrement in a block below zero still sums right (modulo 2^64) */
    struct cdn_stats a, b, s2;
    cdn_stats_init(&a);
    cdn_stats_init(&b);
    cdn_stats_init(&s2);
    cdn_stats_dec(&a, CDN_STAT_connections_active);
    cdn_stats_add(&b, CDN_STAT_connections_active, 3);
    cdn_stats_accumulate(&s2, &a);
    cdn_stats_accumulate(&s2, &b);
    ck_assert_uint_eq(cdn_stats_get(&s2, CDN_STAT_connections_active), 2);
    free(w);
}
END_TEST

START_TEST(histogram_buckets)
{
    struct cdn_stats s;
    cdn_stats_init(&s);
    const enum cdn_stat h = CDN_STAT_upstream_response_seconds;
    cdn_stats_observe(&s, h, 0);        /* le 0.001 */
    cdn_stats_observe(&s, h, 1000);     /* le 0.001: bounds are inclusive */
    cdn_stats_observe(&s, h, 1001);     /* le 0.0025 */
    cdn_stats_observe(&s, h, 10000000); /* le 10 */
    cdn_stats_observe(&s, h, 10000001); /* +Inf only */
    ck_assert_uint_eq(cdn_stats_get(&s, h), 5);
    ck_assert_uint_eq(cdn_stats_get(&s, (enum cdn_stat)(h + 0)), 5); /* get() on the id = count */
    ck_assert_uint_eq(atomic_load(&s.v[h + 0]), 2);
    ck_assert_uint_eq(atomic_load(&s.v[h + 1]), 1);
    ck_assert_uint_eq(atomic_load(&s.v[h + CDN_STATS_NBUCKETS - 1]), 1);
    ck_assert_uint_eq(atomic_load(&s.v[h + CDN_STATS_NBUCKETS]), 1);
    ck_assert_uint_eq(atomic_load(&s.v[h + CDN_STATS_NBUCKETS + 1]), 20002002);

    char *p = render(1, &s, NULL, "edge");
    ck_assert_ptr_nonnull(strstr(p, "cdn_upstream_response_seconds_bucket{role=\"edge\",le=\"0.001\"} 2\n"
                                    "cdn_upstream_response_seconds_bucket{role=\"edge\",le=\"0.0025\"} 3\n"
                                    "cdn_upstream_response_seconds_bucket{role=\"edge\",le=\"0.005\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(p, "cdn_upstream_response_seconds_bucket{role=\"edge\",le=\"10\"} 4\n"
                                    "cdn_upstream_response_seconds_bucket{role=\"edge\",le=\"+Inf\"} 5\n"
                                    "cdn_upstream_response_seconds_sum{role=\"edge\"} 20.002002\n"
                                    "cdn_upstream_response_seconds_count{role=\"edge\"} 5\n"));
    free(p);
    char *j = render(0, &s, NULL, "edge");
    ck_assert_ptr_nonnull(strstr(j, "\"upstream_response_seconds\": {\"count\": 5, \"sum\": 20.002002, "
                                    "\"buckets\": {\"0.001\": 2, \"0.0025\": 3, \"0.005\": 3, "));
    ck_assert_ptr_nonnull(strstr(j, "\"10\": 4, \"+Inf\": 5}}"));
    free(j);
}
END_TEST

START_TEST(hit_ratios)
{
    struct cdn_stats s;
    cdn_stats_init(&s);
    ck_assert(cdn_stats_hit_ratio(&s) == 0.0); /* no division by zero */
    ck_assert(cdn_stats_byte_hit_ratio(&s) == 0.0);
    char *p = render(1, &s, NULL, "edge");
    ck_assert_ptr_nonnull(strstr(p, "\ncdn_cache_hit_ratio{role=\"edge\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(p, "\ncdn_cache_byte_hit_ratio{role=\"edge\"} 0\n"));
    free(p);

    cdn_stats_add(&s, CDN_STAT_cache_miss, 1);
    ck_assert(cdn_stats_hit_ratio(&s) == 0.0);
    cdn_stats_add(&s, CDN_STAT_cache_hit_fresh, 3);
    ck_assert(cdn_stats_hit_ratio(&s) == 0.75);
    cdn_stats_add(&s, CDN_STAT_cache_hit_stale, 1);
    cdn_stats_add(&s, CDN_STAT_cache_revalidated, 1);
    cdn_stats_add(&s, CDN_STAT_cache_collapsed, 1);
    cdn_stats_add(&s, CDN_STAT_cache_uncacheable, 3); /* 6 hits of 10 */
    ck_assert(cdn_stats_hit_ratio(&s) == 0.6);
    cdn_stats_add(&s, CDN_STAT_bytes_from_upstream, 3000);
    ck_assert(cdn_stats_byte_hit_ratio(&s) == 0.0);
    cdn_stats_add(&s, CDN_STAT_bytes_from_cache, 1000);
    ck_assert(cdn_stats_byte_hit_ratio(&s) == 0.25);
    cdn_stats_add(&s, CDN_STAT_requests, 7); /* not part of either ratio */
    ck_assert(cdn_stats_hit_ratio(&s) == 0.6);

    p = render(1, &s, NULL, "edge");
    ck_assert_ptr_nonnull(strstr(p, "\ncdn_cache_hit_ratio{role=\"edge\"} 0.6\n"));
    ck_assert_ptr_nonnull(strstr(p, "\ncdn_cache_byte_hit_ratio{role=\"edge\"} 0.25\n"));
    free(p);
    char *j = render(0, &s, NULL, "edge");
    ck_assert_ptr_nonnull(strstr(j, "\"cache_hit_ratio\": 0.6,"));
    ck_assert_ptr_nonnull(strstr(j, "\"cache_byte_hit_ratio\": 0.25,"));
    free(j);

    cdn_stats_init(&s);
    cdn_stats_add(&s, CDN_STAT_cache_hit_fresh, 1);
    cdn_stats_add(&s, CDN_STAT_cache_miss, 2);
    p = render(1, &s, NULL, "edge");
    ck_assert_ptr_nonnull(strstr(p, "\ncdn_cache_hit_ratio{role=\"edge\"} 0.333333\n"));
    free(p);
}
END_TEST

/* ==== JSON ==== */

START_TEST(json_output)
{
    struct cdn_stats s;
    cdn_stats_init(&s);
    cdn_stats_add(&s, CDN_STAT_requests, 5);
    cdn_stats_add(&s, CDN_STAT_responses_2xx, 3);
    cdn_stats_add(&s, CDN_STAT_connections_active, 2);
    cdn_stats_observe(&s, CDN_STAT_request_duration_seconds, 1234);
    struct cdn_stats_extra x;
    cdn_stats_extra_init(&x);
    x.now = 1000;
    cdn_stats_extra_add(&x, CDN_STAT_certificate_expiry_seconds,
                        (const char *[]){"server", "/etc/cdn/a \"b\".pem", "CN=x\\y\nz"}, 4600, true);
    cdn_stats_extra_add(&x, CDN_STAT_certificate_expiry_seconds,
                        (const char *[]){"ca", "/etc/cdn/ca.pem", "CN=caf\xc3\xa9 \xff\xfe bad"}, 400, true);
    cdn_stats_extra_set_reload_error(&x, "conf.yaml:3:1: \"listeners\": bad\ttab");

    char *j = render(0, &s, &x, "edge");
    ck_assert_msg(json_valid(j), "invalid JSON:\n%s", j);
    ck_assert_ptr_nonnull(strstr(j, "{\n  \"role\": \"edge\",\n  \"time\": 1000,\n  \"requests\": 5,\n"));
    ck_assert_ptr_nonnull(strstr(j, "\n  \"responses_2xx\": 3,\n"));
    ck_assert_ptr_nonnull(strstr(j, "\n  \"connections_active\": 2,\n"));
    ck_assert_ptr_nonnull(strstr(j, "\n  \"cache_miss\": 0,\n"));
    ck_assert_ptr_nonnull(strstr(j, "\"request_duration_seconds\": {\"count\": 1, \"sum\": 0.001234, "
                                    "\"buckets\": {\"0.001\": 0, \"0.0025\": 1, "));
    ck_assert_ptr_nonnull(
        strstr(j, "\"certificate_expiry_seconds\": [\n"
                  "    {\"kind\": \"server\", \"file\": \"/etc/cdn/a \\\"b\\\".pem\", "
                  "\"subject\": \"CN=x\\\\y\\u000az\", \"value\": 3600},\n"
                  "    {\"kind\": \"ca\", \"file\": \"/etc/cdn/ca.pem\", "
                  "\"subject\": \"CN=caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd bad\", \"value\": -600}\n"
                  "  ],\n"));
    ck_assert_ptr_nonnull(
        strstr(j, "\"reload_last_error\": \"conf.yaml:3:1: \\\"listeners\\\": bad\\u0009tab\"\n}\n"));
    /* every row appears as a key */
    for (size_t i = 0; i < cdn_stats_nmeta; i++) {
        char key[96];
        snprintf(key, sizeof(key), "\n  \"%s\": ", cdn_stats_meta[i].name);
        ck_assert_msg(strstr(j, key) != NULL, "no %s in the JSON", cdn_stats_meta[i].name);
    }
    free(j);

    /* without extra and role */
    j = render(0, &s, NULL, NULL);
    ck_assert_msg(json_valid(j), "invalid JSON:\n%s", j);
    ck_assert_ptr_null(strstr(j, "\"role\""));
    ck_assert_ptr_nonnull(strstr(j, "\"certificate_expiry_seconds\": [],\n"));
    ck_assert_ptr_nonnull(strstr(j, "\"reload_last_error\": null\n}\n"));
    free(j);

    /* the checker itself rejects what it should */
    ck_assert(!json_valid("{\"a\": 1,}"));
    ck_assert(!json_valid("{\"a\" 1}"));
    ck_assert(!json_valid("[1, 2"));
    ck_assert(!json_valid("\"a\nb\""));
    ck_assert(!json_valid("01"));
    ck_assert(!json_valid("{} {}"));
    ck_assert(json_valid(" {\"a\": [1.5e3, -0, \"\\u00e9\", true, null]} \n"));
    cdn_stats_extra_dispose(&x);
}
END_TEST

START_TEST(json_string_escaping)
{
    struct cdn_buf b;
    cdn_buf_init(&b);
    /* quote, backslash, controls, DEL, valid 2/3/4-byte UTF-8, then invalid: lone continuation,
     * overlong "/", surrogate, above U+10FFFF, truncated sequence at the end */
    static const char in[] = "q\"b\\c\x01\x1f\x7f"
                             "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                             "\x80|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe2\x82";
    cdn_stats_json_str(&b, in, sizeof(in) - 1);
    static const char want[] = "\"q\\\"b\\\\c\\u0001\\u001f\\u007f"
                               "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                               "\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                               "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\"";
    ck_assert_uint_eq(b.len, sizeof(want) - 1);
    ck_assert(memcmp(cdn_buf_data(&b), want, b.len) == 0);
    cdn_buf_dispose(&b);
}
END_TEST

/* ==== Prometheus ==== */

START_TEST(prometheus_format)
{
    struct cdn_stats s;
    cdn_stats_init(&s);
    cdn_stats_add(&s, CDN_STAT_requests, 5);
    cdn_stats_add(&s, CDN_STAT_responses_2xx, 3);
    cdn_stats_add(&s, CDN_STAT_responses_5xx, 1);
    cdn_stats_add(&s, CDN_STAT_cache_objects, 12);
    cdn_stats_dec(&s, CDN_STAT_connections_active); /* a gauge renders signed */
    for (uint64_t us = 100; us < 20000000; us = us * 3 + 7)
        cdn_stats_observe(&s, CDN_STAT_request_duration_seconds, us);
    struct cdn_stats_extra x;
    cdn_stats_extra_init(&x);
    x.now = 5000;
    cdn_stats_extra_add(&x, CDN_STAT_certificate_expiry_seconds,
                        (const char *[]){"client", "/c \"q\".pem", "CN=a\\b\nc"}, 6000, true);
    cdn_stats_extra_add(&x, CDN_STAT_certificate_expiry_seconds,
                        (const char *[]){"crl", "/crl.pem", "CN=\xff"}, 77, false);
    cdn_stats_extra_add(&x, CDN_STAT_parent_requests, (const char *[]){"g1", "r1:443"}, 7, false);
    cdn_stats_extra_add(&x, CDN_STAT_parent_connections, (const char *[]){"g1", "r1:443", "reused"}, 9,
                        false);

    char *p = render(1, &s, &x, "edge");
    struct prom P;
    ck_assert_msg(prom_check(&P, p, "edge") == 0, "%s\n---\n%s", P.err, p);
    /* one family per distinct table family, in table order */
    size_t nfam = 0;
    for (size_t i = 0; i < cdn_stats_nmeta; i++) {
        const struct cdn_stat_meta *m = &cdn_stats_meta[i];
        if (i > 0 && strcmp(cdn_stats_meta[i - 1].family, m->family) == 0)
            continue;
        char name[128];
        bool counter = m->kind == CDN_STAT_KIND_COUNTER || m->kind == CDN_STAT_KIND_CSERIES;
        snprintf(name, sizeof(name), "cdn_%s%s", m->family, counter ? "_total" : "");
        ck_assert_msg(nfam < P.nfamilies && strcmp(P.families[nfam], name) == 0, "family %zu: want %s", nfam,
                      name);
        nfam++;
    }
    ck_assert_uint_eq(nfam, P.nfamilies);

    /* a CSERIES family is a counter: _total and TYPE counter, one sample per registered series */
    ck_assert_ptr_nonnull(
        strstr(p, "# TYPE cdn_upstream_parent_requests_total counter\n"
                  "cdn_upstream_parent_requests_total{role=\"edge\",group=\"g1\",parent=\"r1:443\"} 7\n"));
    ck_assert_ptr_nonnull(
        strstr(p, "# TYPE cdn_upstream_parent_connections_total counter\n"
                  "cdn_upstream_parent_connections_total{role=\"edge\",group=\"g1\",parent=\"r1:443\","
                  "kind=\"reused\"} 9\n"));
    ck_assert_ptr_nonnull(strstr(p, "# TYPE cdn_upstream_parent_up gauge\n"));
    ck_assert_ptr_nonnull(strstr(p, "# HELP cdn_requests_total Request heads received on data listeners\n"
                                    "# TYPE cdn_requests_total counter\n"
                                    "cdn_requests_total{role=\"edge\"} 5\n"));
    ck_assert_ptr_nonnull(strstr(p, "# TYPE cdn_responses_total counter\n"
                                    "cdn_responses_total{role=\"edge\",class=\"1xx\"} 0\n"
                                    "cdn_responses_total{role=\"edge\",class=\"2xx\"} 3\n"
                                    "cdn_responses_total{role=\"edge\",class=\"3xx\"} 0\n"
                                    "cdn_responses_total{role=\"edge\",class=\"4xx\"} 0\n"
                                    "cdn_responses_total{role=\"edge\",class=\"5xx\"} 1\n# HELP "));
    ck_assert_ptr_nonnull(strstr(p, "# TYPE cdn_connections_active gauge\n"
                                    "cdn_connections_active{role=\"edge\"} -1\n"));
    ck_assert_ptr_nonnull(strstr(p, "# TYPE cdn_cache_objects gauge\ncdn_cache_objects{role=\"edge\"} 12\n"));
    ck_assert_ptr_nonnull(strstr(p, "# TYPE cdn_request_duration_seconds histogram\n"
                                    "cdn_request_duration_seconds_bucket{role=\"edge\",le=\"0.001\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(p, "# TYPE cdn_certificate_expiry_seconds gauge\n"
                                    "cdn_certificate_expiry_seconds{role=\"edge\",kind=\"client\","
                                    "file=\"/c \\\"q\\\".pem\",subject=\"CN=a\\\\b\\nc\"} 1000\n"
                                    "cdn_certificate_expiry_seconds{role=\"edge\",kind=\"crl\","
                                    "file=\"/crl.pem\",subject=\"CN=\xef\xbf\xbd\"} 77\n"));
    free(p);

    /* the role label is escaped too; without extra there is no series sample, HELP/TYPE stay */
    p = render(1, &s, NULL, "a\"b\\c\nd");
    ck_assert_msg(prom_check(&P, p, "a\"b\\c\nd") == 0, "%s", P.err);
    ck_assert_ptr_nonnull(strstr(p, "cdn_requests_total{role=\"a\\\"b\\\\c\\nd\"} 5\n"));
    ck_assert_ptr_nonnull(strstr(p, "# TYPE cdn_certificate_expiry_seconds gauge\n# HELP "));
    free(p);
    p = render(1, &s, NULL, NULL);
    ck_assert_msg(prom_check(&P, p, "unknown") == 0, "%s", P.err);
    free(p);

    /* the checker itself catches what it should */
    ck_assert_int_eq(
        prom_check(&P,
                   "# HELP cdn_a_total x\n# TYPE cdn_a_total counter\ncdn_a_total{role=\"e\"} 1\n"
                   "# HELP cdn_a_total x\n",
                   "e"),
        -1);
    ck_assert_int_eq(prom_check(&P, "# HELP cdn_a x\n# TYPE cdn_a counter\ncdn_a{role=\"e\"} 1\n", "e"), -1);
    ck_assert_int_eq(prom_check(&P, "# HELP cdn_a x\n# TYPE cdn_a gauge\ncdn_a{x=\"1\",role=\"e\"} 1\n", "e"),
                     -1);
    ck_assert_int_eq(prom_check(&P, "# HELP cdn_a x\n# TYPE cdn_a gauge\ncdn_a{role=\"e\\t\"} 1\n", "e"), -1);
    ck_assert_int_eq(
        prom_check(&P,
                   "# HELP cdn_h x\n# TYPE cdn_h histogram\ncdn_h_bucket{role=\"e\",le=\"1\"} 2\n"
                   "cdn_h_bucket{role=\"e\",le=\"+Inf\"} 3\ncdn_h_sum{role=\"e\"} 1\n"
                   "cdn_h_count{role=\"e\"} 4\n",
                   "e"),
        -1);
    ck_assert_int_eq(
        prom_check(&P,
                   "# HELP cdn_h x\n# TYPE cdn_h histogram\ncdn_h_bucket{role=\"e\",le=\"1\"} 2\n"
                   "cdn_h_bucket{role=\"e\",le=\"2\"} 1\n",
                   "e"),
        -1);
    cdn_stats_extra_dispose(&x);
}
END_TEST

/* ==== extras ==== */

START_TEST(extra_series)
{
    struct cdn_stats_extra reg, scrape;
    cdn_stats_extra_init(&reg);
    for (int i = 0; i < 20; i++) { /* grows past the first allocation */
        char file[32];
        snprintf(file, sizeof(file), "/f%d.pem", i);
        cdn_stats_extra_add(&reg, CDN_STAT_certificate_expiry_seconds, (const char *[]){"server", file, NULL},
                            100 + i, i % 2 == 0);
    }
    cdn_stats_extra_set_reload_error(&reg, "first");
    cdn_stats_extra_set_reload_error(&reg, "second");
    ck_assert_uint_eq(reg.nseries, 20);
    ck_assert_str_eq(reg.series[3].values[1], "/f3.pem");
    ck_assert_str_eq(reg.series[3].values[2], ""); /* NULL value = empty */

    cdn_stats_extra_init(&scrape);
    scrape.now = 50;
    cdn_stats_extra_copy(&scrape, &reg);
    cdn_stats_extra_dispose(&reg); /* the copy owns its own strings */
    ck_assert_ptr_null(reg.series);
    ck_assert_uint_eq(scrape.nseries, 20);
    ck_assert_str_eq(scrape.reload_error, "second");
    ck_assert_int_eq(scrape.now, 50);

    struct cdn_stats s;
    cdn_stats_init(&s);
    char *p = render(1, &s, &scrape, "regional");
    ck_assert_ptr_nonnull(strstr(p, ",file=\"/f0.pem\",subject=\"\"} 50\n")); /* until: 100 - 50 */
    ck_assert_ptr_nonnull(strstr(p, ",file=\"/f1.pem\",subject=\"\"} 101\n"));
    free(p);
    /* a repeated label set is rendered once, the first one */
    cdn_stats_extra_add(&scrape, CDN_STAT_certificate_expiry_seconds,
                        (const char *[]){"server", "/f1.pem", ""}, 999, false);
    p = render(1, &s, &scrape, "regional");
    ck_assert_ptr_null(strstr(p, "} 999\n"));
    free(p);
    p = render(0, &s, &scrape, "regional");
    ck_assert_ptr_null(strstr(p, "\"value\": 999}"));
    free(p);
    cdn_stats_extra_set_reload_error(&scrape, NULL);
    ck_assert_ptr_null(scrape.reload_error);
    cdn_stats_extra_dispose(&scrape);
}
END_TEST

START_TEST(tls_failure_reasons)
{
    unsigned long no_cert = ERR_PACK(ERR_LIB_SSL, 0, SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE);
    unsigned long proto = ERR_PACK(ERR_LIB_SSL, 0, SSL_R_UNSUPPORTED_PROTOCOL);
    unsigned long vfail = ERR_PACK(ERR_LIB_SSL, 0, SSL_R_CERTIFICATE_VERIFY_FAILED);
    ck_assert_int_eq(cdn_stats_tls_failure(X509_V_OK, no_cert, true), CDN_STAT_tls_failed_timeout);
    ck_assert_int_eq(cdn_stats_tls_failure(X509_V_OK, no_cert, false), CDN_STAT_tls_failed_no_certificate);
    ck_assert_int_eq(cdn_stats_tls_failure(X509_V_OK, proto, false), CDN_STAT_tls_failed_protocol);
    ck_assert_int_eq(cdn_stats_tls_failure(X509_V_OK, vfail, false), CDN_STAT_tls_failed_other);
    ck_assert_int_eq(cdn_stats_tls_failure(X509_V_OK, 0, false), CDN_STAT_tls_failed_other);
    ck_assert_int_eq(cdn_stats_tls_failure(X509_V_OK, ERR_PACK(ERR_LIB_X509, 0, 1), false),
                     CDN_STAT_tls_failed_other);
    ck_assert_int_eq(cdn_stats_tls_failure(X509_V_ERR_CERT_HAS_EXPIRED, vfail, false),
                     CDN_STAT_tls_failed_expired);
    ck_assert_int_eq(cdn_stats_tls_failure(X509_V_ERR_CERT_NOT_YET_VALID, vfail, false),
                     CDN_STAT_tls_failed_not_yet_valid);
    ck_assert_int_eq(cdn_stats_tls_failure(X509_V_ERR_CERT_REVOKED, vfail, false),
                     CDN_STAT_tls_failed_revoked);
    ck_assert_int_eq(cdn_stats_tls_failure(X509_V_ERR_INVALID_PURPOSE, vfail, false),
                     CDN_STAT_tls_failed_bad_eku);
    ck_assert_int_eq(cdn_stats_tls_failure(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, vfail, false),
                     CDN_STAT_tls_failed_unknown_ca);
    ck_assert_int_eq(cdn_stats_tls_failure(X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, vfail, false),
                     CDN_STAT_tls_failed_unknown_ca);
    ck_assert_int_eq(cdn_stats_tls_failure(X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, vfail, false),
                     CDN_STAT_tls_failed_unknown_ca);
    ck_assert_int_eq(cdn_stats_tls_failure(X509_V_ERR_OUT_OF_MEM, vfail, false), CDN_STAT_tls_failed_other);
}
END_TEST

/* ==== docs/STATS.md ==== */

#define DOC_BEGIN "<!-- BEGIN generated by cdn_stats_doc() -->\n"
#define DOC_END   "<!-- END generated -->"

START_TEST(docs_complete)
{
    FILE *f = fopen("docs/STATS.md", "rb");
    ck_assert_msg(f != NULL, "docs/STATS.md not found (run the tests from the repository root)");
    static char doc[256 * 1024];
    size_t n = fread(doc, 1, sizeof(doc) - 1, f);
    fclose(f);
    doc[n] = '\0';

    char *table = render(2, NULL, NULL, NULL);
    const char *b = strstr(doc, DOC_BEGIN), *e = b != NULL ? strstr(b, DOC_END) : NULL;
    bool same = b != NULL && e != NULL && (size_t)(e - b - strlen(DOC_BEGIN)) == strlen(table) &&
                memcmp(b + strlen(DOC_BEGIN), table, strlen(table)) == 0;
    if (!same) {
        FILE *o = fopen("build/STATS.table.md", "w");
        if (o != NULL) {
            fputs(table, o);
            fclose(o);
        }
    }
    ck_assert_msg(same,
                  "docs/STATS.md: the table between the markers differs from cdn_stats_doc(); the current "
                  "table was written to build/STATS.table.md");
    /* and, said plainly: every row's JSON key and Prometheus name is in the docs */
    for (size_t i = 0; i < cdn_stats_nmeta; i++) {
        const struct cdn_stat_meta *m = &cdn_stats_meta[i];
        char key[96], prom[128];
        snprintf(key, sizeof(key), "`%s`", m->name);
        snprintf(prom, sizeof(prom), "`cdn_%s%s", m->family,
                 m->kind == CDN_STAT_KIND_COUNTER ? "_total" : "");
        ck_assert_msg(strstr(doc, key) != NULL, "docs/STATS.md lacks %s", key);
        ck_assert_msg(strstr(doc, prom) != NULL, "docs/STATS.md lacks %s", prom);
    }
    ck_assert_ptr_nonnull(strstr(doc, "reload_last_error"));
    free(table);
}
END_TEST

Suite *suite_stats(void)
{
    Suite *s = suite_create("stats");
    TCase *t = tcase_create("table");
    tcase_add_test(t, table_consistency);
    tcase_add_test(t, inc_add_aggregate);
    tcase_add_test(t, histogram_buckets);
    tcase_add_test(t, hit_ratios);
    tcase_add_test(t, tls_failure_reasons);
    suite_add_tcase(s, t);
    TCase *o = tcase_create("output");
    tcase_add_test(o, json_output);
    tcase_add_test(o, json_string_escaping);
    tcase_add_test(o, prometheus_format);
    tcase_add_test(o, extra_series);
    tcase_add_test(o, docs_complete);
    suite_add_tcase(s, o);
    return s;
}
