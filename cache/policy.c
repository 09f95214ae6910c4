/*
 * policy: RFC 9111 decisions for a shared cache, as pure functions (see policy.h for the contract and
 * docs/CACHING.md for the rules in operator terms).
 *
 * Why it is shaped this way: the proxy and the store must never disagree about what is cacheable, and
 * the rules are full of edge cases (duplicate directives, invalid dates, targeted fields that replace
 * Cache-Control). Keeping every rule here, with no I/O and no clock, lets each one be a table row in
 * test/unit/test_policy.c. Parsers are tolerant where RFC 9111 asks for tolerance (Cache-Control) and
 * strict where the spec is a Structured Field (CDN-Cache-Control, RFC 9213 2.1). Whenever input is
 * ambiguous we pick the interpretation that serves less from cache, never more.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cache/policy.h"
#include "lib/util.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define VARY_MAX_NAMES 64

/* RFC 8941 sf-integer range, for Cache-Status ttl. */
#define SF_INT_MAX 999999999999999LL

#define SF_DICT_MAX_MEMBERS 64

/* ---------------------------------------------------------------- small helpers */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_tchar(char c)
{
    return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool ieq_n(const char *a, size_t an, const char *b, size_t bn)
{
    size_t i;

    if (an != bn)
        return false;
    for (i = 0; i < an; i++) {
        if (lower(a[i]) != lower(b[i]))
            return false;
    }
    return true;
}

static bool name_is(const struct cdn_http_header *h, const char *name)
{
    return cdn_strieq(h->name, h->name_len, name);
}

static bool method_is(const char *m, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(m, want, n) == 0;
}

static void trim(const char **p, size_t *n)
{
    while (*n > 0 && is_ows((*p)[0])) {
        (*p)++;
        (*n)--;
    }
    while (*n > 0 && is_ows((*p)[*n - 1]))
        (*n)--;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;

    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_sub(int64_t a, int64_t b)
{
    int64_t r;

    if (__builtin_sub_overflow(a, b, &r))
        return b < 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* 1*DIGIT as delta-seconds, saturating at CACHE_DELTA_MAX (RFC 9111 1.2.2). -1 if not all digits. */
static int64_t parse_delta(const char *p, size_t n)
{
    int64_t v = 0;
    size_t i;

    if (n == 0)
        return -1;
    for (i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return -1;
        if (v < CACHE_DELTA_MAX)
            v = v * 10 + (p[i] - '0');
    }
    return v > CACHE_DELTA_MAX ? CACHE_DELTA_MAX : v;
}

/* Iterates comma-separated list elements of v[0..n) (commas inside quoted strings do not split).
 * *pos is the cursor; elements come out trimmed and may be empty. Returns false at the end. */
static bool list_next(const char *v, size_t n, size_t *pos, const char **e, size_t *elen)
{
    size_t i = *pos, s;
    bool quoted = false;

    if (i > n)
        return false;
    s = i;
    while (i < n && (quoted || v[i] != ',')) {
        if (v[i] == '"')
            quoted = !quoted;
        else if (quoted && v[i] == '\\' && i + 1 < n)
            i++;
        i++;
    }
    *e = v + s;
    *elen = i - s;
    trim(e, elen);
    *pos = i + 1;
    return true;
}

static const struct cache_policy_cfg default_cfg = CACHE_POLICY_CFG_DEFAULT;

void cache_policy_cfg_defaults(struct cache_policy_cfg *cfg)
{
    *cfg = default_cfg;
}

/* ---------------------------------------------------------------- dates (RFC 9110 5.6.7) */

static const char *const wday_short[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const wday_long[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                        "Friday", "Saturday", "Sunday"};
static const char *const month_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

struct cursor {
    const char *s;
    size_t n, i;
};

static bool cur_lit(struct cursor *c, const char *lit)
{
    size_t k = strlen(lit);

    if (c->n - c->i < k || !ieq_n(c->s + c->i, k, lit, k))
        return false;
    c->i += k;
    return true;
}

static bool cur_digits(struct cursor *c, size_t k, int *out)
{
    int v = 0;
    size_t j;

    if (c->n - c->i < k)
        return false;
    for (j = 0; j < k; j++) {
        if (!is_digit(c->s[c->i + j]))
            return false;
        v = v * 10 + (c->s[c->i + j] - '0');
    }
    c->i += k;
    *out = v;
    return true;
}

/* Matches one of names[0..count) exactly (case-insensitive); returns its index or -1. */
static int cur_name(struct cursor *c, const char *const *names, size_t count)
{
    size_t j;

    for (j = 0; j < count; j++) {
        if (cur_lit(c, names[j]))
            return (int)j;
    }
    return -1;
}

static bool cur_time(struct cursor *c, int *h, int *m, int *s)
{
    return cur_digits(c, 2, h) && cur_lit(c, ":") && cur_digits(c, 2, m) && cur_lit(c, ":") &&
           cur_digits(c, 2, s);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    return m == 2 && leap ? 29 : days[m - 1];
}

/* Index of the 3 letters at p in names (exact case, as IMF-fixdate writes them), or -1. */
static int name3(const char *p, const char *const *names, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (memcmp(p, names[i], 3) == 0)
            return (int)i;
    }
    return -1;
}

static bool two_digits(const char *p, int *v)
{
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
        return false;
    *v = (p[0] - '0') * 10 + (p[1] - '0');
    return true;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" at fixed positions: what nearly every Date, Expires and
 * Last-Modified holds, read on every hit. -1 sends anything else to the general parser. */
static int64_t parse_imf_fixdate(const char *s, size_t n)
{
    int day, mon, y1, y2, hh, mm, ss;
    if (n != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
        s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4) != 0 ||
        name3(s, wday_short, ARRAY_LEN(wday_short)) < 0 ||
        (mon = name3(s + 8, month_names, ARRAY_LEN(month_names)) + 1) == 0 || !two_digits(s + 5, &day) ||
        !two_digits(s + 12, &y1) || !two_digits(s + 14, &y2) || !two_digits(s + 17, &hh) ||
        !two_digits(s + 20, &mm) || !two_digits(s + 23, &ss))
        return -1;
    int year = y1 * 100 + y2;
    if (day < 1 || day > days_in_month(year, mon) || hh > 23 || mm > 59 || ss > 60)
        return -1;
    int64_t t = days_from_civil(year, mon, day) * 86400 + hh * 3600 + mm * 60 + ss;
    return t < 0 ? 0 : t;
}

int64_t cache_policy_parse_http_date(const char *s, size_t n)
{
    struct cursor c;
    int year, mon, day, hh, mm, ss, wd;
    int64_t t;

    if (s == NULL)
        return -1;
    trim(&s, &n);
    if ((t = parse_imf_fixdate(s, n)) >= 0)
        return t;
    c.s = s;
    c.n = n;
    c.i = 0;
    wd = cur_name(&c, wday_long, ARRAY_LEN(wday_long));
    if (wd >= 0) {
        /* rfc850-date = day-name-l "," SP date2 SP time-of-day SP GMT; date2 = day "-" month "-" 2DIGIT */
        if (!cur_lit(&c, ", ") || !cur_digits(&c, 2, &day) || !cur_lit(&c, "-"))
            return -1;
        mon = cur_name(&c, month_names, ARRAY_LEN(month_names)) + 1;
        if (mon == 0 || !cur_lit(&c, "-") || !cur_digits(&c, 2, &year) || !cur_lit(&c, " ") ||
            !cur_time(&c, &hh, &mm, &ss) || !cur_lit(&c, " GMT"))
            return -1;
        year += year < 70 ? 2000 : 1900;
    } else {
        wd = cur_name(&c, wday_short, ARRAY_LEN(wday_short));
        if (wd < 0)
            return -1;
        if (cur_lit(&c, ", ")) {
            /* IMF-fixdate = day-name "," SP day SP month SP year SP time-of-day SP GMT */
            if (!cur_digits(&c, 2, &day) || !cur_lit(&c, " "))
                return -1;
            mon = cur_name(&c, month_names, ARRAY_LEN(month_names)) + 1;
            if (mon == 0 || !cur_lit(&c, " ") || !cur_digits(&c, 4, &year) || !cur_lit(&c, " ") ||
                !cur_time(&c, &hh, &mm, &ss) || !cur_lit(&c, " GMT"))
                return -1;
        } else if (cur_lit(&c, " ")) {
            /* asctime-date = day-name SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP time-of-day SP year */
            mon = cur_name(&c, month_names, ARRAY_LEN(month_names)) + 1;
            if (mon == 0 || !cur_lit(&c, " "))
                return -1;
            if (cur_lit(&c, " ")) {
                if (!cur_digits(&c, 1, &day))
                    return -1;
            } else if (!cur_digits(&c, 2, &day)) {
                return -1;
            }
            if (!cur_lit(&c, " ") || !cur_time(&c, &hh, &mm, &ss) || !cur_lit(&c, " ") ||
                !cur_digits(&c, 4, &year))
                return -1;
        } else {
            return -1;
        }
    }
    if (c.i != c.n)
        return -1;
    if (day < 1 || day > days_in_month(year, mon) || hh > 23 || mm > 59 || ss > 60)
        return -1;
    t = days_from_civil(year, mon, day) * 86400 + hh * 3600 + mm * 60 + ss;
    return t < 0 ? 0 : t;
}

size_t cache_policy_format_http_date(int64_t t, char *out)
{
    int64_t days, z, era, doe, yoe, y, doy, mp, d, m, secs;

    if (t < 0)
        t = 0;
    days = t / 86400;
    secs = t % 86400;
    /* civil_from_days */
    z = days + 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    if (y > 9999)
        y = 9999;
    /* 1970-01-01 was a Thursday (index 3 in wday_short). */
    snprintf(out, 30, "%s, %02d %s %04d %02d:%02d:%02d GMT", wday_short[(days + 3) % 7], (int)d,
             month_names[m - 1], (int)y, (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
    return strlen(out);
}

/* ---------------------------------------------------------------- Cache-Control */

enum dv_kind {
    DV_NONE,   /* no value (or sf Boolean true) */
    DV_TOKEN,  /* token (classic) / sf-token */
    DV_STRING, /* quoted-string / sf-string: p/n is the raw text between the quotes */
    DV_INT,    /* sf-integer (num) */
    DV_FALSE,  /* sf Boolean false: the directive is off */
    DV_OTHER,  /* malformed (classic) or another sf type */
};

struct dval {
    enum dv_kind kind;
    const char *p;
    size_t n;
    int64_t num;
};

static int64_t delta_of(const struct dval *v, bool sf)
{
    int64_t d;

    if (sf)
        return v->kind == DV_INT && v->num >= 0 ? min64(v->num, CACHE_DELTA_MAX) : CACHE_CC_INVALID;
    if (v->kind != DV_TOKEN && v->kind != DV_STRING)
        return CACHE_CC_INVALID;
    d = parse_delta(v->p, v->n);
    return d < 0 ? CACHE_CC_INVALID : d;
}

/* Response max-age / s-maxage: a second, different value makes the directive invalid (stale). */
static void merge_strict(int64_t *field, int64_t v)
{
    if (*field == CACHE_CC_ABSENT)
        *field = v;
    else if (*field != v)
        *field = CACHE_CC_INVALID;
}

/* Windows (swr, sie, max-stale): the smallest valid value; invalid values are ignored. */
static void merge_min_valid(int64_t *field, int64_t v)
{
    if (v < 0)
        return;
    *field = *field == CACHE_CC_ABSENT ? v : min64(*field, v);
}

static void add_fields(struct cache_cc *cc, struct cache_cc_fields *arr, size_t *num, const struct dval *v)
{
    if (v->kind != DV_STRING && v->kind != DV_TOKEN)
        return;
    if (*num == CACHE_CC_MAX_FIELD_LISTS) {
        cc->flags |= CACHE_CC_FIELDS_OVERFLOW;
        return;
    }
    arr[*num].p = v->p;
    arr[*num].n = v->n;
    (*num)++;
}

static void apply_directive(struct cache_cc *cc, const char *name, size_t nlen, const struct dval *v,
                            bool is_request, bool sf)
{
#define IS(s) ieq_n(name, nlen, s, sizeof(s) - 1)
    int64_t d;

    cc->count++;
    if (v->kind == DV_FALSE)
        return;
    if (IS("no-store")) {
        cc->flags |= CACHE_CC_NO_STORE;
    } else if (IS("no-cache")) {
        cc->flags |= CACHE_CC_NO_CACHE;
        if (!is_request)
            add_fields(cc, cc->no_cache_fields, &cc->num_no_cache_fields, v);
    } else if (IS("no-transform")) {
        cc->flags |= CACHE_CC_NO_TRANSFORM;
    } else if (IS("max-age")) {
        d = delta_of(v, sf);
        if (!is_request) {
            merge_strict(&cc->max_age, d);
        } else {
            /* Invalid request max-age: the most restrictive reading is "revalidate". */
            d = d < 0 ? 0 : d;
            cc->max_age = cc->max_age == CACHE_CC_ABSENT ? d : min64(cc->max_age, d);
        }
    } else if (IS("stale-if-error")) {
        merge_min_valid(&cc->stale_if_error, delta_of(v, sf));
    } else if (is_request) {
        if (IS("max-stale")) {
            if (v->kind == DV_NONE)
                cc->flags |= CACHE_CC_MAX_STALE_ANY;
            else
                merge_min_valid(&cc->max_stale, delta_of(v, sf));
        } else if (IS("min-fresh")) {
            d = delta_of(v, sf);
            d = d < 0 ? CACHE_DELTA_MAX : d;
            cc->min_fresh = max64(cc->min_fresh, d);
        } else if (IS("only-if-cached")) {
            cc->flags |= CACHE_CC_ONLY_IF_CACHED;
        }
    } else if (IS("private")) {
        cc->flags |= CACHE_CC_PRIVATE;
        add_fields(cc, cc->private_fields, &cc->num_private_fields, v);
    } else if (IS("public")) {
        /* Permissive: only the plain form counts. */
        if (v->kind == DV_NONE)
            cc->flags |= CACHE_CC_PUBLIC;
    } else if (IS("must-revalidate")) {
        cc->flags |= CACHE_CC_MUST_REVALIDATE;
    } else if (IS("proxy-revalidate")) {
        cc->flags |= CACHE_CC_PROXY_REVALIDATE;
    } else if (IS("must-understand")) {
        cc->flags |= CACHE_CC_MUST_UNDERSTAND;
    } else if (IS("immutable")) {
        if (v->kind == DV_NONE)
            cc->flags |= CACHE_CC_IMMUTABLE;
    } else if (IS("s-maxage")) {
        merge_strict(&cc->s_maxage, delta_of(v, sf));
    } else if (IS("stale-while-revalidate")) {
        merge_min_valid(&cc->stale_while_revalidate, delta_of(v, sf));
    }
#undef IS
}

static void cc_init(struct cache_cc *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age = CACHE_CC_ABSENT;
    cc->s_maxage = CACHE_CC_ABSENT;
    cc->stale_while_revalidate = CACHE_CC_ABSENT;
    cc->stale_if_error = CACHE_CC_ABSENT;
    cc->max_stale = CACHE_CC_ABSENT;
    cc->min_fresh = CACHE_CC_ABSENT;
}

/* Skips to the next comma outside a quoted string (or the end). */
static size_t skip_to_comma(const char *s, size_t n, size_t i)
{
    bool quoted = false;

    while (i < n && (quoted || s[i] != ',')) {
        if (s[i] == '"')
            quoted = !quoted;
        else if (quoted && s[i] == '\\')
            i++;
        i++;
    }
    return i;
}

/* One Cache-Control line: #( token [ "=" ( token / quoted-string ) ] ), tolerant of BWS around "=". */
static void parse_cc_line(const char *s, size_t n, bool is_request, struct cache_cc *cc)
{
    size_t i = 0, ns, nlen;
    struct dval v;

    while (i < n) {
        while (i < n && (is_ows(s[i]) || s[i] == ','))
            i++;
        if (i >= n)
            break;
        ns = i;
        while (i < n && is_tchar(s[i]))
            i++;
        nlen = i - ns;
        if (nlen == 0) {
            i = skip_to_comma(s, n, i);
            continue;
        }
        memset(&v, 0, sizeof(v));
        v.kind = DV_NONE;
        while (i < n && is_ows(s[i]))
            i++;
        if (i < n && s[i] == '=') {
            i++;
            while (i < n && is_ows(s[i]))
                i++;
            if (i < n && s[i] == '"') {
                size_t vs = ++i;

                while (i < n && s[i] != '"')
                    i += s[i] == '\\' ? 2 : 1;
                if (i >= n) {
                    v.kind = DV_OTHER; /* unterminated */
                    i = n;
                } else {
                    v.kind = DV_STRING;
                    v.p = s + vs;
                    v.n = i - vs;
                    i++;
                }
            } else {
                size_t vs = i;

                while (i < n && is_tchar(s[i]))
                    i++;
                v.kind = i > vs ? DV_TOKEN : DV_OTHER;
                v.p = s + vs;
                v.n = i - vs;
            }
        }
        while (i < n && is_ows(s[i]))
            i++;
        if (i < n && s[i] != ',') {
            v.kind = DV_OTHER;
            i = skip_to_comma(s, n, i);
        }
        apply_directive(cc, s + ns, nlen, &v, is_request, false);
    }
}

void cache_policy_parse_cc(const struct cdn_http_header *h, size_t n, bool is_request, struct cache_cc *cc)
{
    size_t i;

    cc_init(cc);
    for (i = 0; i < n; i++) {
        if (name_is(&h[i], "cache-control"))
            parse_cc_line(h[i].value, h[i].value_len, is_request, cc);
    }
}

/* ---------------------------------------------------------------- Structured Field Dictionary (RFC 8941) */

struct sf_member {
    const char *key;
    size_t key_len;
    struct dval v;
};

static bool is_lcalpha(char c)
{
    return c >= 'a' && c <= 'z';
}

static bool sf_key(struct cursor *c, const char **k, size_t *klen)
{
    size_t s = c->i;

    if (c->i >= c->n || !(is_lcalpha(c->s[c->i]) || c->s[c->i] == '*'))
        return false;
    c->i++;
    while (c->i < c->n) {
        char ch = c->s[c->i];

        if (!(is_lcalpha(ch) || is_digit(ch) || ch == '_' || ch == '-' || ch == '.' || ch == '*'))
            break;
        c->i++;
    }
    *k = c->s + s;
    *klen = c->i - s;
    return true;
}

static bool sf_bare_item(struct cursor *c, struct dval *v)
{
    const char *s = c->s;
    size_t n = c->n, st;

    memset(v, 0, sizeof(*v));
    if (c->i >= n)
        return false;
    if (s[c->i] == '-' || is_digit(s[c->i])) {
        bool neg = s[c->i] == '-';
        size_t digits = 0, frac = 0;
        int64_t num = 0;

        if (neg)
            c->i++;
        while (c->i < n && is_digit(s[c->i])) {
            if (++digits > 15)
                return false;
            num = num * 10 + (s[c->i] - '0');
            c->i++;
        }
        if (digits == 0)
            return false;
        if (c->i < n && s[c->i] == '.') {
            if (digits > 12)
                return false;
            c->i++;
            while (c->i < n && is_digit(s[c->i])) {
                if (++frac > 3)
                    return false;
                c->i++;
            }
            if (frac == 0)
                return false;
            v->kind = DV_OTHER; /* sf-decimal */
            return true;
        }
        v->kind = DV_INT;
        v->num = neg ? -num : num;
        return true;
    }
    if (s[c->i] == '"') {
        st = ++c->i;
        for (;;) {
            if (c->i >= n)
                return false;
            if (s[c->i] == '\\') {
                if (c->i + 1 >= n || (s[c->i + 1] != '"' && s[c->i + 1] != '\\'))
                    return false;
                c->i += 2;
                continue;
            }
            if (s[c->i] == '"')
                break;
            if ((unsigned char)s[c->i] < 0x20 || (unsigned char)s[c->i] > 0x7e)
                return false;
            c->i++;
        }
        v->kind = DV_STRING;
        v->p = s + st;
        v->n = c->i - st;
        c->i++;
        return true;
    }
    if (is_alpha(s[c->i]) || s[c->i] == '*') {
        st = c->i++;
        while (c->i < n && (is_tchar(s[c->i]) || s[c->i] == ':' || s[c->i] == '/'))
            c->i++;
        v->kind = DV_TOKEN;
        v->p = s + st;
        v->n = c->i - st;
        return true;
    }
    if (s[c->i] == ':') {
        c->i++;
        while (c->i < n && s[c->i] != ':') {
            char ch = s[c->i];

            if (!(is_alpha(ch) || is_digit(ch) || ch == '+' || ch == '/' || ch == '='))
                return false;
            c->i++;
        }
        if (c->i >= n)
            return false;
        c->i++;
        v->kind = DV_OTHER;
        return true;
    }
    if (s[c->i] == '?') {
        if (c->i + 1 >= n || (s[c->i + 1] != '0' && s[c->i + 1] != '1'))
            return false;
        v->kind = s[c->i + 1] == '1' ? DV_NONE : DV_FALSE;
        c->i += 2;
        return true;
    }
    return false;
}

static bool sf_params(struct cursor *c)
{
    const char *k;
    size_t klen;
    struct dval v;

    while (c->i < c->n && c->s[c->i] == ';') {
        c->i++;
        while (c->i < c->n && c->s[c->i] == ' ')
            c->i++;
        if (!sf_key(c, &k, &klen))
            return false;
        if (c->i < c->n && c->s[c->i] == '=') {
            c->i++;
            if (!sf_bare_item(c, &v))
                return false;
        }
    }
    return true;
}

static bool sf_inner_list(struct cursor *c)
{
    struct dval v;

    c->i++; /* "(" */
    for (;;) {
        while (c->i < c->n && c->s[c->i] == ' ')
            c->i++;
        if (c->i >= c->n)
            return false;
        if (c->s[c->i] == ')') {
            c->i++;
            return sf_params(c);
        }
        if (!sf_bare_item(c, &v) || !sf_params(c))
            return false;
        if (c->i >= c->n || (c->s[c->i] != ' ' && c->s[c->i] != ')'))
            return false;
    }
}

/* Parses one field line as a Dictionary, appending members. False on any syntax error. */
static bool sf_dict(const char *s, size_t n, struct sf_member *m, size_t max, size_t *count)
{
    struct cursor c = {s, n, 0};

    while (c.i < n && c.s[c.i] == ' ')
        c.i++;
    while (n > c.i && c.s[n - 1] == ' ')
        n--;
    c.n = n;
    if (c.i == n)
        return true;
    for (;;) {
        struct sf_member mem;

        if (!sf_key(&c, &mem.key, &mem.key_len))
            return false;
        memset(&mem.v, 0, sizeof(mem.v));
        mem.v.kind = DV_NONE;
        if (c.i < n && c.s[c.i] == '=') {
            c.i++;
            if (c.i < n && c.s[c.i] == '(') {
                if (!sf_inner_list(&c))
                    return false;
                mem.v.kind = DV_OTHER;
            } else if (!sf_bare_item(&c, &mem.v) || !sf_params(&c)) {
                return false;
            }
        } else if (!sf_params(&c)) {
            return false;
        }
        if (*count == max)
            return false;
        m[(*count)++] = mem;
        while (c.i < n && is_ows(c.s[c.i]))
            c.i++;
        if (c.i == n)
            return true;
        if (c.s[c.i] != ',')
            return false;
        c.i++;
        while (c.i < n && is_ows(c.s[c.i]))
            c.i++;
        if (c.i == n)
            return false; /* trailing comma */
    }
}

bool cache_policy_parse_targeted(const struct cdn_http_header *h, size_t n, const char *name,
                                 struct cache_cc *cc)
{
    struct sf_member m[SF_DICT_MAX_MEMBERS];
    size_t count = 0, i, j;

    cc_init(cc);
    for (i = 0; i < n; i++) {
        if (!name_is(&h[i], name) || h[i].value_len == 0)
            continue;
        if (!sf_dict(h[i].value, h[i].value_len, m, ARRAY_LEN(m), &count))
            return false;
    }
    if (count == 0)
        return false;
    for (i = 0; i < count; i++) {
        bool later = false;

        /* RFC 8941 4.2.2: for duplicate keys, the last one wins. */
        for (j = i + 1; j < count && !later; j++)
            later = m[j].key_len == m[i].key_len && memcmp(m[j].key, m[i].key, m[i].key_len) == 0;
        if (!later)
            apply_directive(cc, m[i].key, m[i].key_len, &m[i].v, false, true);
    }
    return true;
}

/* ---------------------------------------------------------------- request / response summaries */

void cache_policy_parse_request(const struct cdn_http_header *h, size_t n, struct cache_request_info *out)
{
    bool has_cc = false;
    size_t i, pos;
    const char *e;
    size_t elen;

    memset(out, 0, sizeof(*out));
    cache_policy_parse_cc(h, n, true, &out->cc);
    for (i = 0; i < n; i++) {
        if (name_is(&h[i], "cache-control"))
            has_cc = true;
        else if (name_is(&h[i], "authorization"))
            out->has_authorization = true;
    }
    if (has_cc)
        return;
    /* RFC 9111 5.4: Pragma: no-cache counts only when Cache-Control is absent. */
    for (i = 0; i < n; i++) {
        if (!name_is(&h[i], "pragma"))
            continue;
        pos = 0;
        while (list_next(h[i].value, h[i].value_len, &pos, &e, &elen)) {
            if (ieq_n(e, elen, "no-cache", 8))
                out->cc.flags |= CACHE_CC_NO_CACHE;
        }
    }
}

/* entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text */
static bool etag_valid(const char *p, size_t n)
{
    size_t i = 0;

    if (n >= 2 && p[0] == 'W' && p[1] == '/')
        i = 2;
    if (n - i < 2 || p[i] != '"' || p[n - 1] != '"')
        return false;
    for (i = i + 1; i < n - 1; i++) {
        unsigned char ch = (unsigned char)p[i];

        if (ch == '"' || ch < 0x21 || ch == 0x7f)
            return false;
    }
    return true;
}

static bool etag_weak(const char *p, size_t n)
{
    return n >= 2 && p[0] == 'W' && p[1] == '/';
}

/* Weak comparison (RFC 9110 8.8.3.2): opaque-tags equal, W/ ignored. */
static bool etag_weak_eq(const char *a, size_t an, const char *b, size_t bn)
{
    if (etag_weak(a, an)) {
        a += 2;
        an -= 2;
    }
    if (etag_weak(b, bn)) {
        b += 2;
        bn -= 2;
    }
    return an == bn && memcmp(a, b, an) == 0;
}

/* Collects the Vary names (lowercase-insensitively de-duplicated, sorted). -1: "*" or unusable. */
static int vary_collect(const struct cdn_http_header *h, size_t n, struct cache_str *names, size_t *count,
                        bool *present)
{
    size_t i, j, k, pos;
    const char *e;
    size_t elen;

    *count = 0;
    *present = false;
    for (i = 0; i < n; i++) {
        if (!name_is(&h[i], "vary"))
            continue;
        pos = 0;
        while (list_next(h[i].value, h[i].value_len, &pos, &e, &elen)) {
            bool dup = false;

            if (elen == 0)
                continue;
            *present = true;
            if (elen == 1 && e[0] == '*')
                return -1;
            for (j = 0; j < elen; j++) {
                if (!is_tchar(e[j]))
                    return -1;
            }
            for (j = 0; j < *count && !dup; j++)
                dup = ieq_n(names[j].p, names[j].n, e, elen);
            if (dup)
                continue;
            if (*count == VARY_MAX_NAMES)
                return -1;
            names[(*count)++] = (struct cache_str){e, elen};
        }
    }
    /* Insertion sort by lowercase bytes, then length. */
    for (i = 1; i < *count; i++) {
        struct cache_str x = names[i];

        for (j = i; j > 0; j--) {
            const struct cache_str *y = &names[j - 1];
            size_t m = x.n < y->n ? x.n : y->n;
            int d = 0;

            for (k = 0; k < m && d == 0; k++)
                d = (unsigned char)lower(y->p[k]) - (unsigned char)lower(x.p[k]);
            if (d < 0 || (d == 0 && y->n <= x.n))
                break;
            names[j] = names[j - 1];
        }
        names[j] = x;
    }
    return 0;
}

static const char *const target_default = "CDN-Cache-Control";

void cache_policy_parse_response(const struct cache_policy_cfg *cfg, int status,
                                 const struct cdn_http_header *h, size_t n, struct cache_response_info *out)
{
    struct cache_str names[VARY_MAX_NAMES];
    struct cache_cc tcc;
    size_t i, count, pos;
    bool seen_date = false, seen_lm = false, seen_age = false, seen_etag = false;
    const char *e;
    size_t elen;

    if (cfg == NULL)
        cfg = &default_cfg;
    memset(out, 0, sizeof(*out));
    out->status = status;
    out->date = -1;
    out->last_modified = -1;
    cache_policy_parse_cc(h, n, false, &out->cc);

    /* RFC 9213 2.2: the first valid, non-empty field of the target list replaces Cache-Control and
     * Expires. */
    if (cfg->targeted_cc != NULL && cfg->targeted_cc[0] != '\0' &&
        !cdn_strieq(cfg->targeted_cc, strlen(cfg->targeted_cc), target_default) &&
        cache_policy_parse_targeted(h, n, cfg->targeted_cc, &tcc)) {
        out->cc = tcc;
        out->targeted = true;
    } else if (cache_policy_parse_targeted(h, n, target_default, &tcc)) {
        out->cc = tcc;
        out->targeted = true;
    }

    for (i = 0; i < n; i++) {
        const struct cdn_http_header *x = &h[i];

        if (name_is(x, "date") && !seen_date) {
            seen_date = true;
            out->date = cache_policy_parse_http_date(x->value, x->value_len);
            if (out->date >= 0)
                out->date_raw = (struct cache_str){x->value, x->value_len};
        } else if (name_is(x, "expires") && !out->targeted) {
            /* RFC 9111 5.3: an invalid date (e.g. "0") is in the past; differing duplicates: stale. */
            int64_t t = cache_policy_parse_http_date(x->value, x->value_len);

            t = t < 0 ? 0 : t;
            if (out->has_expires && out->expires != t)
                t = 0;
            out->expires = t;
            out->has_expires = true;
        } else if (name_is(x, "last-modified") && !seen_lm) {
            seen_lm = true;
            out->last_modified = cache_policy_parse_http_date(x->value, x->value_len);
            if (out->last_modified >= 0)
                out->last_modified_raw = (struct cache_str){x->value, x->value_len};
        } else if (name_is(x, "age") && !seen_age) {
            /* RFC 9111 5.1: use the first member; if it is invalid, ignore the field. */
            int64_t a;

            seen_age = true;
            pos = 0;
            if (list_next(x->value, x->value_len, &pos, &e, &elen)) {
                a = parse_delta(e, elen);
                out->age = a < 0 ? 0 : a;
            }
        } else if (name_is(x, "etag") && !seen_etag) {
            seen_etag = true;
            if (etag_valid(x->value, x->value_len))
                out->etag = (struct cache_str){x->value, x->value_len};
        }
    }
    out->vary_unmatchable = vary_collect(h, n, names, &count, &out->has_vary) != 0;
    if (out->vary_unmatchable)
        out->has_vary = true;
}

/* ---------------------------------------------------------------- storing (RFC 9111 3) */

bool cache_policy_status_heuristic(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 206:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
        return true;
    default:
        return false;
    }
}

/* Statuses whose caching behaviour we fully implement: the RFC 9110 final codes except 206 and 304
 * (we never store partial content or a 304), 305 and 306 (deprecated / unused). */
static bool status_understood(int st)
{
    return (st >= 200 && st <= 205) || (st >= 300 && st <= 303) || st == 307 || st == 308 ||
           (st >= 400 && st <= 417) || st == 421 || st == 422 || st == 426 || (st >= 500 && st <= 505);
}

bool cache_policy_is_storable(const char *method, size_t method_len, const struct cache_request_info *req,
                              const struct cache_response_info *res, const char **reason)
{
    const struct cache_cc *cc = &res->cc;
    int st = res->status;
    const char *why = NULL;
    bool understood = status_understood(st);

    if (!method_is(method, method_len, "GET"))
        why = "method";
    else if (st < 200 || st == 206 || st == 304 || ((cc->flags & CACHE_CC_MUST_UNDERSTAND) && !understood))
        why = "status";
    else if ((req->cc.flags & CACHE_CC_NO_STORE) ||
             ((cc->flags & CACHE_CC_NO_STORE) && !((cc->flags & CACHE_CC_MUST_UNDERSTAND) && understood)))
        why = "no-store";
    else if (cc->flags & CACHE_CC_PRIVATE)
        why = "private";
    else if (req->has_authorization &&
             !((cc->flags & (CACHE_CC_PUBLIC | CACHE_CC_MUST_REVALIDATE)) || cc->s_maxage != CACHE_CC_ABSENT))
        why = "auth";
    else if (res->vary_unmatchable)
        why = "vary-star";
    else if (cc->flags & CACHE_CC_FIELDS_OVERFLOW)
        why = "cc-fields";
    else if (!((cc->flags & CACHE_CC_PUBLIC) || res->has_expires || cc->max_age != CACHE_CC_ABSENT ||
               cc->s_maxage != CACHE_CC_ABSENT || cache_policy_status_heuristic(st)))
        why = "no-freshness";
    if (reason != NULL)
        *reason = why;
    return why == NULL;
}

/* ---------------------------------------------------------------- freshness and age (RFC 9111 4.2) */

static int64_t date_value(const struct cache_response_info *res, int64_t response_time)
{
    return res->date >= 0 ? res->date : response_time;
}

int64_t cache_policy_freshness_lifetime(const struct cache_policy_cfg *cfg,
                                        const struct cache_response_info *res, int64_t response_time)
{
    const struct cache_cc *cc = &res->cc;
    int64_t d, h;
    double f;

    if (cfg == NULL)
        cfg = &default_cfg;
    if (cc->s_maxage != CACHE_CC_ABSENT)
        return cc->s_maxage < 0 ? 0 : cc->s_maxage;
    if (cc->max_age != CACHE_CC_ABSENT)
        return cc->max_age < 0 ? 0 : cc->max_age;
    if (res->has_expires)
        return min64(max64(0, sat_sub(res->expires, date_value(res, response_time))), CACHE_DELTA_MAX);
    /* RFC 9111 4.2.2: heuristics only without explicit expiry, for heuristically cacheable statuses
     * or public responses. */
    if (!cache_policy_status_heuristic(res->status) && !(cc->flags & CACHE_CC_PUBLIC))
        return 0;
    if (res->last_modified < 0)
        return 0;
    d = sat_sub(date_value(res, response_time), res->last_modified);
    if (d <= 0 || cfg->heuristic_fraction <= 0)
        return 0;
    f = (double)d * cfg->heuristic_fraction;
    h = f >= (double)CACHE_DELTA_MAX ? CACHE_DELTA_MAX : (int64_t)f;
    return min64(h, max64(0, cfg->heuristic_max));
}

int64_t cache_policy_current_age(const struct cache_response_info *res, int64_t request_time,
                                 int64_t response_time, int64_t now)
{
    int64_t apparent_age, response_delay, corrected_age_value, corrected_initial_age, resident_time, age;

    apparent_age = max64(0, sat_sub(response_time, date_value(res, response_time)));
    response_delay = max64(0, sat_sub(response_time, request_time));
    corrected_age_value = sat_add(res->age, response_delay);
    corrected_initial_age = max64(apparent_age, corrected_age_value);
    resident_time = max64(0, sat_sub(now, response_time));
    age = sat_add(corrected_initial_age, resident_time);
    return min64(age, CACHE_DELTA_MAX);
}

int64_t cache_policy_age_value(int64_t current_age)
{
    return current_age < 0 ? 0 : min64(current_age, CACHE_DELTA_MAX);
}

/* RFC 9111 4.2.4: these directives forbid serving the response stale (s-maxage carries
 * proxy-revalidate for a shared cache, 5.2.2.10). */
static bool stale_forbidden(const struct cache_cc *cc)
{
    return (cc->flags & (CACHE_CC_NO_CACHE | CACHE_CC_MUST_REVALIDATE | CACHE_CC_PROXY_REVALIDATE)) ||
           cc->s_maxage != CACHE_CC_ABSENT;
}

static bool max_stale_allows(const struct cache_cc *rcc, int64_t staleness)
{
    if (rcc->max_stale != CACHE_CC_ABSENT)
        return staleness <= rcc->max_stale;
    return (rcc->flags & CACHE_CC_MAX_STALE_ANY) != 0;
}

static enum cache_use decided(struct cache_decision *out, enum cache_use use, const char *why)
{
    out->use = use;
    out->why = why;
    return use;
}

enum cache_use cache_policy_decide(const struct cache_policy_cfg *cfg, const struct cache_response_info *res,
                                   int64_t request_time, int64_t response_time,
                                   const struct cache_request_info *req, int64_t now,
                                   struct cache_decision *out)
{
    const struct cache_cc *cc = &res->cc, *rcc = &req->cc;
    int64_t staleness;

    out->lifetime = cache_policy_freshness_lifetime(cfg, res, response_time);
    out->age = cache_policy_current_age(res, request_time, response_time, now);
    out->ttl = out->lifetime - out->age;
    if (cc->flags & CACHE_CC_NO_CACHE)
        return decided(out, CACHE_USE_REVALIDATE, "no-cache");
    if (rcc->flags & CACHE_CC_NO_CACHE)
        return decided(out, CACHE_USE_REVALIDATE, "request-no-cache");
    if (rcc->max_age != CACHE_CC_ABSENT && out->age > rcc->max_age)
        return decided(out, CACHE_USE_REVALIDATE, "request-max-age");
    if (out->ttl > 0) {
        if (rcc->min_fresh != CACHE_CC_ABSENT && out->ttl < rcc->min_fresh)
            return decided(out, CACHE_USE_REVALIDATE, "min-fresh");
        return decided(out, CACHE_USE_FRESH, "fresh");
    }
    if (stale_forbidden(cc))
        return decided(out, CACHE_USE_REVALIDATE, "must-revalidate");
    staleness = -out->ttl;
    if (cc->stale_while_revalidate > 0 && staleness <= cc->stale_while_revalidate)
        return decided(out, CACHE_USE_STALE_REVALIDATE, "stale-while-revalidate");
    if (max_stale_allows(rcc, staleness))
        return decided(out, CACHE_USE_STALE, "max-stale");
    return decided(out, CACHE_USE_REVALIDATE, "stale");
}

bool cache_policy_stale_if_error_ok(const struct cache_response_info *res,
                                    const struct cache_request_info *req, const struct cache_decision *d,
                                    int upstream_status)
{
    const struct cache_cc *cc = &res->cc, *rcc = &req->cc;
    int64_t staleness = -d->ttl;

    /* RFC 5861 4: an error is a 500, 502, 503 or 504, or no response at all. */
    if (upstream_status != 0 && upstream_status != 500 && upstream_status != 502 && upstream_status != 503 &&
        upstream_status != 504)
        return false;
    if (cc->flags & CACHE_CC_NO_CACHE)
        return false;
    if (d->ttl > 0)
        return true;
    if (stale_forbidden(cc))
        return false;
    if (cc->stale_if_error > 0 && staleness <= cc->stale_if_error)
        return true;
    if (rcc->stale_if_error > 0 && staleness <= rcc->stale_if_error)
        return true;
    return max_stale_allows(rcc, staleness);
}

/* ---------------------------------------------------------------- validation */

size_t cache_policy_validators(const struct cache_response_info *res, struct cdn_http_header out[2])
{
    size_t k = 0;
    const struct cache_str *ims = res->last_modified_raw.p != NULL ? &res->last_modified_raw : &res->date_raw;

    if (res->etag.p != NULL)
        out[k++] = (struct cdn_http_header){"If-None-Match", 13, res->etag.p, res->etag.n, false};
    if (ims->p != NULL)
        out[k++] = (struct cdn_http_header){"If-Modified-Since", 17, ims->p, ims->n, false};
    return k;
}

/* If-None-Match evaluation for one line: 1 = some member matched, 0 = none did, -1 = malformed. */
static int inm_line_matches(const char *v, size_t n, const struct cache_response_info *res)
{
    size_t pos = 0;
    const char *e;
    size_t elen;
    int any = 0;

    while (list_next(v, n, &pos, &e, &elen)) {
        if (elen == 0)
            continue;
        if (elen == 1 && e[0] == '*') {
            any = 1;
            continue;
        }
        if (!etag_valid(e, elen))
            return -1;
        if (res->etag.p != NULL && etag_weak_eq(e, elen, res->etag.p, res->etag.n))
            any = 1;
    }
    return any;
}

bool cache_policy_not_modified(const char *method, size_t method_len, const struct cdn_http_header *req_h,
                               size_t req_n, const struct cache_response_info *res, int64_t response_time)
{
    const struct cdn_http_header *ims = NULL;
    bool has_inm = false, inm_match = false;
    size_t i, ims_count = 0;
    int64_t t, lm;
    int r;

    if (!method_is(method, method_len, "GET") && !method_is(method, method_len, "HEAD"))
        return false;
    if (res->status != 200)
        return false;
    for (i = 0; i < req_n; i++) {
        if (name_is(&req_h[i], "if-none-match")) {
            has_inm = true;
            r = inm_line_matches(req_h[i].value, req_h[i].value_len, res);
            if (r < 0)
                return false;
            inm_match = inm_match || r == 1;
        } else if (name_is(&req_h[i], "if-modified-since")) {
            ims = &req_h[i];
            ims_count++;
        }
    }
    if (has_inm)
        return inm_match;
    /* RFC 9110 13.1.3: ignore it unless it is exactly one valid HTTP-date. */
    if (ims == NULL || ims_count != 1)
        return false;
    t = cache_policy_parse_http_date(ims->value, ims->value_len);
    if (t < 0)
        return false;
    lm = res->last_modified >= 0 ? res->last_modified : date_value(res, response_time);
    return lm <= t;
}

/* ---------------------------------------------------------------- stored header fields (RFC 9111 3.1) */

static bool in_field_list(const char *list, size_t n, const char *name, size_t name_len)
{
    size_t pos = 0;
    const char *e;
    size_t elen;

    while (list_next(list, n, &pos, &e, &elen)) {
        if (ieq_n(e, elen, name, name_len))
            return true;
    }
    return false;
}

static bool named_in_connection(const struct cdn_http_header *h, size_t n, const struct cdn_http_header *x)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (name_is(&h[i], "connection") && in_field_list(h[i].value, h[i].value_len, x->name, x->name_len))
            return true;
    }
    return false;
}

/* Header lines a cache must not store or forward (RFC 9110 7.6.1, RFC 9111 3.1). */
static bool hop_or_proxy(const struct cdn_http_header *h, size_t n, const struct cdn_http_header *x)
{
    static const char *const names[] = {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-authentication-info",
    };
    size_t i;

    if (x->hop_by_hop)
        return true;
    for (i = 0; i < ARRAY_LEN(names); i++) {
        if (name_is(x, names[i]))
            return true;
    }
    return named_in_connection(h, n, x);
}

static bool named_by_cc(const struct cache_cc *cc, const struct cdn_http_header *x)
{
    size_t i;

    if (cc == NULL)
        return false;
    for (i = 0; i < cc->num_no_cache_fields; i++) {
        if (in_field_list(cc->no_cache_fields[i].p, cc->no_cache_fields[i].n, x->name, x->name_len))
            return true;
    }
    for (i = 0; i < cc->num_private_fields; i++) {
        if (in_field_list(cc->private_fields[i].p, cc->private_fields[i].n, x->name, x->name_len))
            return true;
    }
    return false;
}

size_t cache_policy_filter_headers(const struct cdn_http_header *h, size_t n, const struct cache_cc *cc,
                                   struct cdn_http_header *out)
{
    size_t i, k = 0;

    CDN_ASSERT(n == 0 || out != h);
    for (i = 0; i < n; i++) {
        if (!hop_or_proxy(h, n, &h[i]) && !named_by_cc(cc, &h[i]))
            out[k++] = h[i];
    }
    return k;
}

/* May this 304 line update the stored response (RFC 9111 3.2)? */
static bool updatable(const struct cdn_http_header *upd, size_t nu, const struct cdn_http_header *x)
{
    return !hop_or_proxy(upd, nu, x) && !name_is(x, "content-length") && !name_is(x, "content-range");
}

static bool has_updating_line(const struct cdn_http_header *upd, size_t nu, const struct cdn_http_header *x)
{
    size_t i;

    for (i = 0; i < nu; i++) {
        if (ieq_n(upd[i].name, upd[i].name_len, x->name, x->name_len) && updatable(upd, nu, &upd[i]))
            return true;
    }
    return false;
}

int cache_policy_merge_304(const struct cdn_http_header *stored, size_t ns, const struct cdn_http_header *upd,
                           size_t nu, struct cdn_http_header *out, size_t max)
{
    size_t i, k = 0;

    for (i = 0; i < ns; i++) {
        const struct cdn_http_header *x = &stored[i];

        if (has_updating_line(upd, nu, x))
            continue;
        /* The age clock restarts with the validation; an old Age or Date would make it lie. */
        if (name_is(x, "age") || name_is(x, "date"))
            continue;
        if (k == max)
            return CDN_ELIMIT;
        out[k++] = *x;
    }
    for (i = 0; i < nu; i++) {
        if (!updatable(upd, nu, &upd[i]))
            continue;
        if (k == max)
            return CDN_ELIMIT;
        out[k++] = upd[i];
    }
    return (int)k;
}

/* ---------------------------------------------------------------- invalidation (RFC 9111 4.4) */

/* The path of a Location/Content-Location value if it names the same authority, else false. */
static bool same_origin_path(const char *v, size_t n, const char *host, size_t host_len,
                             struct cache_str *out)
{
    const char *hash, *auth;
    size_t alen, i;

    trim(&v, &n);
    hash = memchr(v, '#', n);
    if (hash != NULL)
        n = (size_t)(hash - v);
    if (n == 0)
        return false;
    if (v[0] == '/' && (n == 1 || v[1] != '/')) {
        *out = (struct cache_str){v, n};
        return true;
    }
    if (n >= 7 && ieq_n(v, 7, "http://", 7)) {
        v += 5;
        n -= 5;
    } else if (n >= 8 && ieq_n(v, 8, "https://", 8)) {
        v += 6;
        n -= 6;
    }
    if (n < 2 || v[0] != '/' || v[1] != '/')
        return false;
    auth = v + 2;
    for (i = 2; i < n && v[i] != '/' && v[i] != '?'; i++)
        ;
    alen = (size_t)(v + i - auth);
    if (alen == 0 || !ieq_n(auth, alen, host, host_len))
        return false;
    if (i == n) {
        *out = (struct cache_str){"/", 1};
        return true;
    }
    if (v[i] != '/')
        return false; /* "http://host?q": the path would have to be synthesised */
    *out = (struct cache_str){v + i, n - i};
    return true;
}

size_t cache_policy_invalidations(const char *method, size_t method_len, const char *host, size_t host_len,
                                  const char *path, size_t path_len, int status,
                                  const struct cdn_http_header *res_h, size_t res_n,
                                  struct cache_str out[CACHE_INVALIDATE_MAX])
{
    static const char *const loc_names[] = {"location", "content-location"};
    size_t k = 0, j, l;
    struct cache_str p;

    if (method_is(method, method_len, "GET") || method_is(method, method_len, "HEAD") ||
        method_is(method, method_len, "OPTIONS") || method_is(method, method_len, "TRACE"))
        return 0;
    if (status < 200 || status > 399)
        return 0;
    out[k++] = (struct cache_str){path, path_len};
    for (l = 0; l < ARRAY_LEN(loc_names); l++) {
        const struct cdn_http_header *x = cdn_http1_find_header(res_h, res_n, loc_names[l]);
        bool dup = false;

        if (x == NULL || host == NULL || !same_origin_path(x->value, x->value_len, host, host_len, &p))
            continue;
        for (j = 0; j < k && !dup; j++)
            dup = out[j].n == p.n && memcmp(out[j].p, p.p, p.n) == 0;
        if (!dup && k < CACHE_INVALIDATE_MAX)
            out[k++] = p;
    }
    return k;
}

/* ---------------------------------------------------------------- Vary (RFC 9111 4.1) */

bool cache_policy_vary_names(const struct cdn_http_header *h, size_t n, struct cdn_buf *out)
{
    struct cache_str names[VARY_MAX_NAMES];
    size_t count, i, j;
    bool present;
    char *dst;

    if (vary_collect(h, n, names, &count, &present) != 0)
        return false;
    for (i = 0; i < count; i++) {
        dst = cdn_buf_reserve(out, names[i].n + 1);
        if (i > 0)
            *dst++ = ',';
        for (j = 0; j < names[i].n; j++)
            dst[j] = lower(names[i].p[j]);
        cdn_buf_commit(out, names[i].n + (i > 0 ? 1 : 0));
    }
    return true;
}

/* The normalised combined value of field `name` in the request (see cache_policy_vary_key). Writes it
 * to dst if dst is not NULL; returns its length, or -1 when the field is absent. */
static int64_t norm_value(const struct cdn_http_header *h, size_t n, const char *name, size_t name_len,
                          char *dst)
{
    int64_t len = -1;
    size_t i, pos;
    const char *e;
    size_t elen;

    for (i = 0; i < n; i++) {
        if (!ieq_n(h[i].name, h[i].name_len, name, name_len))
            continue;
        if (len < 0)
            len = 0;
        pos = 0;
        while (list_next(h[i].value, h[i].value_len, &pos, &e, &elen)) {
            if (elen == 0)
                continue;
            if (len > 0) {
                if (dst != NULL)
                    dst[len] = ',';
                len++;
            }
            if (dst != NULL)
                memcpy(dst + len, e, elen);
            len += (int64_t)elen;
        }
    }
    return len;
}

void cache_policy_vary_key(const char *names, size_t names_len, const struct cdn_http_header *req_h,
                           size_t req_n, struct cdn_buf *out)
{
    size_t pos = 0;
    const char *e;
    size_t elen;
    int64_t vlen;
    char num[24];
    int nl;

    if (names_len == 0)
        return;
    while (list_next(names, names_len, &pos, &e, &elen)) {
        if (elen == 0)
            continue;
        cdn_buf_append(out, e, elen);
        vlen = norm_value(req_h, req_n, e, elen, NULL);
        if (vlen < 0) {
            cdn_buf_append(out, "!\n", 2);
            continue;
        }
        nl = snprintf(num, sizeof(num), "=%" PRId64 ":", vlen);
        cdn_buf_append(out, num, (size_t)nl);
        norm_value(req_h, req_n, e, elen, cdn_buf_reserve(out, (size_t)vlen + 1));
        cdn_buf_commit(out, (size_t)vlen);
        cdn_buf_append(out, "\n", 1);
    }
}

bool cache_policy_vary_match(const char *names, size_t names_len, const struct cdn_http_header *req_h,
                             size_t req_n, const char *key, size_t key_len)
{
    struct cdn_buf b;
    bool eq;

    cdn_buf_init(&b);
    cache_policy_vary_key(names, names_len, req_h, req_n, &b);
    eq = b.len == key_len && (key_len == 0 || memcmp(cdn_buf_data(&b), key, key_len) == 0);
    cdn_buf_dispose(&b);
    return eq;
}

/* ---------------------------------------------------------------- ranges (RFC 9110 14) */

/* 1*DIGIT as u64, saturating. Advances *i; false if no digit. */
static bool parse_u64(const char *s, size_t n, size_t *i, uint64_t *out)
{
    uint64_t v = 0;
    size_t st = *i;

    while (*i < n && is_digit(s[*i])) {
        unsigned d = (unsigned)(s[*i] - '0');

        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
        (*i)++;
    }
    *out = v;
    return *i > st;
}

enum cache_range cache_policy_parse_range(const char *v, size_t n, uint64_t size, uint64_t *first,
                                          uint64_t *last)
{
    size_t i = 6;
    uint64_t a, b;
    bool has_b;

    if (v == NULL)
        return CACHE_RANGE_NONE;
    trim(&v, &n);
    if (n < 6 || !ieq_n(v, 6, "bytes=", 6))
        return CACHE_RANGE_NONE;
    if (i < n && v[i] == '-') {
        i++;
        if (!parse_u64(v, n, &i, &b))
            return CACHE_RANGE_NONE;
        while (i < n && is_ows(v[i]))
            i++;
        if (i != n || size == 0)
            return CACHE_RANGE_NONE;
        if (b == 0)
            return CACHE_RANGE_UNSATISFIABLE;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return CACHE_RANGE_PARTIAL;
    }
    if (!parse_u64(v, n, &i, &a) || i >= n || v[i] != '-')
        return CACHE_RANGE_NONE;
    i++;
    has_b = parse_u64(v, n, &i, &b);
    while (i < n && is_ows(v[i]))
        i++;
    if (i != n || size == 0 || (has_b && b < a))
        return CACHE_RANGE_NONE;
    if (a >= size)
        return CACHE_RANGE_UNSATISFIABLE;
    *first = a;
    *last = !has_b || b >= size ? size - 1 : b;
    return CACHE_RANGE_PARTIAL;
}

/* RFC 9110 13.1.5: is the If-Range condition true for the stored response? */
static bool if_range_true(const char *v, size_t n, const struct cache_response_info *res)
{
    int64_t t;

    trim(&v, &n);
    if (n > 0 && (v[0] == '"' || etag_weak(v, n))) {
        /* Strong comparison: both tags strong and identical. */
        return etag_valid(v, n) && !etag_weak(v, n) && res->etag.p != NULL &&
               !etag_weak(res->etag.p, res->etag.n) && res->etag.n == n && memcmp(res->etag.p, v, n) == 0;
    }
    t = cache_policy_parse_http_date(v, n);
    return t >= 0 && res->last_modified >= 0 && t == res->last_modified;
}

enum cache_range cache_policy_range(const char *method, size_t method_len,
                                    const struct cdn_http_header *req_h, size_t req_n,
                                    const struct cache_response_info *res, uint64_t size, uint64_t *first,
                                    uint64_t *last)
{
    const struct cdn_http_header *range = NULL, *ifr = NULL;
    size_t i, nrange = 0;

    if (!method_is(method, method_len, "GET") || res->status != 200)
        return CACHE_RANGE_NONE;
    for (i = 0; i < req_n; i++) {
        if (name_is(&req_h[i], "range")) {
            range = &req_h[i];
            nrange++;
        } else if (name_is(&req_h[i], "if-range") && ifr == NULL) {
            ifr = &req_h[i];
        }
    }
    if (range == NULL || nrange != 1)
        return CACHE_RANGE_NONE;
    if (ifr != NULL && !if_range_true(ifr->value, ifr->value_len, res))
        return CACHE_RANGE_NONE;
    return cache_policy_parse_range(range->value, range->value_len, size, first, last);
}

size_t cache_policy_content_range(enum cache_range r, uint64_t first, uint64_t last, uint64_t size, char *out,
                                  size_t cap)
{
    int len;

    if (r == CACHE_RANGE_PARTIAL)
        len = snprintf(out, cap, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first, last, size);
    else if (r == CACHE_RANGE_UNSATISFIABLE)
        len = snprintf(out, cap, "bytes */%" PRIu64, size);
    else
        return 0;
    return len < 0 ? 0 : (size_t)len;
}

/* ---------------------------------------------------------------- Cache-Status (RFC 9211) */

static bool is_sf_token(const char *s)
{
    size_t i;

    if (s[0] == '\0' || !(is_alpha(s[0]) || s[0] == '*'))
        return false;
    for (i = 1; s[i] != '\0'; i++) {
        if (!(is_tchar(s[i]) || s[i] == ':' || s[i] == '/'))
            return false;
    }
    return true;
}

static void append_str(struct cdn_buf *out, const char *s)
{
    cdn_buf_append(out, s, strlen(s));
}

/* sf-string: printable ASCII; '"' and '\' escaped; anything else becomes '?'. */
static void append_sf_string(struct cdn_buf *out, const char *s)
{
    size_t i;

    cdn_buf_append(out, "\"", 1);
    for (i = 0; s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};

            cdn_buf_append(out, esc, 2);
        } else if (c < 0x20 || c > 0x7e) {
            cdn_buf_append(out, "?", 1);
        } else {
            cdn_buf_append(out, &s[i], 1);
        }
    }
    cdn_buf_append(out, "\"", 1);
}

static void append_token_or_string(struct cdn_buf *out, const char *s)
{
    if (is_sf_token(s))
        append_str(out, s);
    else
        append_sf_string(out, s);
}

void cache_policy_cache_status(const struct cache_status *cs, const char *received, size_t received_len,
                               struct cdn_buf *out)
{
    int64_t ttl;

    CDN_ASSERT(cs->cache != NULL);
    if (received != NULL) {
        trim(&received, &received_len);
        if (received_len > 0) {
            cdn_buf_append(out, received, received_len);
            cdn_buf_append(out, ", ", 2);
        }
    }
    append_token_or_string(out, cs->cache);
    if (cs->hit) {
        append_str(out, "; hit");
    } else if (cs->fwd != NULL) {
        append_str(out, "; fwd=");
        append_token_or_string(out, cs->fwd);
    }
    if (cs->fwd_status != 0) {
        append_str(out, "; fwd-status=");
        cdn_buf_append_i64(out, cs->fwd_status);
    }
    if (cs->stored)
        append_str(out, "; stored");
    if (cs->collapsed)
        append_str(out, "; collapsed");
    if (cs->has_ttl) {
        ttl = cs->ttl > SF_INT_MAX ? SF_INT_MAX : cs->ttl < -SF_INT_MAX ? -SF_INT_MAX : cs->ttl;
        append_str(out, "; ttl=");
        cdn_buf_append_i64(out, ttl);
    }
    if (cs->key != NULL) {
        append_str(out, "; key=");
        append_sf_string(out, cs->key);
    }
    if (cs->detail != NULL) {
        append_str(out, "; detail=");
        append_token_or_string(out, cs->detail);
    }
}
