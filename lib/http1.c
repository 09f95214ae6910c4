/*
 * http1: strict HTTP/1.1 head parser and chunked decoder (RFC 9110/9112).
 *
 * This code faces the internet and sits in front of other HTTP parsers (the origin's), so it takes the
 * strictest reading of the grammar everywhere two parsers could disagree on where a message ends:
 * CRLF only, no obs-fold, no whitespace before the colon, one framing header (CL or TE, never both on a
 * request), one Host. Anything ambiguous is an error, never a guess.
 *
 * The head parser is restartable by re-parsing from the first byte on every call: heads are small and
 * bounded by max_head_size, so that costs little and keeps no hidden state between calls. Bytes are
 * examined strictly in order and never past max_head_size, so the answer for a prefix is either
 * CDN_HTTP_EAGAIN or the final answer for the whole input (the fuzz target checks this). Errors that more
 * bytes cannot fix are reported as soon as the offending byte is seen.
 *
 * The chunked decoder is a byte-level state machine over struct cdn_http_chunked, so it works for any
 * split of its input and hands out data runs that point into the caller's buffer.
 *
 * No I/O and no allocation here: this file must stay linkable into the fuzz targets on its own.
 */
#include <limits.h>
#include <string.h>

#include "lib/http1.h"

#define DEFAULT_MAX_HEAD_SIZE   32768
#define DEFAULT_MAX_HEADERS     100
#define MAX_LEADING_EMPTY_LINES 4
#define CONTENT_LENGTH_MAX      ((uint64_t)1 << 62)
#define CHUNK_SIZE_MAX          ((uint64_t)1 << 60)
#define CHUNK_SIZE_MAX_DIGITS   16
#define DEFAULT_MAX_LINE        4096
#define DEFAULT_MAX_TRAILER     32768

/* Chunked decoder states (struct cdn_http_chunked.state). */
enum {
    CH_SIZE_START,    /* first hex digit of a chunk-size line */
    CH_SIZE,          /* more hex digits */
    CH_BWS,           /* whitespace seen: only more whitespace or ';' may follow */
    CH_EXT_PRE_NAME,  /* after ';' */
    CH_EXT_NAME,      /* chunk-ext-name */
    CH_EXT_NAME_BWS,  /* whitespace after the name: '=' or ';' must follow */
    CH_EXT_PRE_VAL,   /* after '=' */
    CH_EXT_VAL_TOKEN, /* token value */
    CH_EXT_VAL_Q,     /* inside a quoted-string value */
    CH_EXT_VAL_QESC,  /* after a backslash in a quoted-string */
    CH_EXT_POST_VAL,  /* after the closing quote */
    CH_SIZE_LF,       /* CR of the size line seen */
    CH_DATA,          /* chunk data */
    CH_DATA_CR,       /* CR after chunk data */
    CH_DATA_LF,       /* LF after chunk data */
    CH_TRAILER_START, /* start of a trailer line or of the final empty line */
    CH_TRAILER_NAME,  /* trailer field name */
    CH_TRAILER_VALUE, /* trailer field value */
    CH_TRAILER_LF,    /* CR of a trailer line seen */
    CH_END_LF,        /* CR of the final empty line seen */
    CH_DONE,
    CH_ERROR,
};

/* Byte classes, one table for the loops over every byte of every header: CDN_HTTP1_TCHAR (RFC 9110
 * 5.6.2: ALPHA, DIGIT and !#$%&'*+-.^_`|~) and CDN_HTTP1_FIELD (field-vchar, SP, HTAB). */
const unsigned char cdn_http1_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 3, 2, 3, 3, 3, 3, 3, 2, 2, 3, 3, 2, 3, 3, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2,
    2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 3, 3,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2, 3, 2, 3, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

static inline bool is_tchar(unsigned char c)
{
    return cdn_http1_is_tchar(c);
}

static inline bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* field-vchar / SP / HTAB: what a field value or reason phrase may contain. */
static inline bool is_field_char(unsigned char c)
{
    return (cdn_http1_class[c] & CDN_HTTP1_FIELD) != 0;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Case-insensitive ASCII compare of a counted string with a C string. Lengths first: most header
 * names differ in length from the one looked for, and strlen of a literal folds away. */
static inline bool ieq(const char *a, size_t alen, const char *b)
{
    if (strlen(b) != alen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    }
    return true;
}

/* Case-insensitive ASCII compare of two counted strings. */
static bool ieq_n(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t i;

    if (alen != blen)
        return false;
    for (i = 0; i < alen; i++) {
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    }
    return true;
}

static bool eq(const char *a, size_t alen, const char *b)
{
    return strlen(b) == alen && memcmp(a, b, alen) == 0;
}

static void get_limits(const struct cdn_http_limits *lim, size_t *max_head, size_t *max_headers)
{
    *max_head = lim != NULL && lim->max_head_size != 0 ? lim->max_head_size : DEFAULT_MAX_HEAD_SIZE;
    *max_headers = lim != NULL && lim->max_headers != 0 ? lim->max_headers : DEFAULT_MAX_HEADERS;
    /* The head length is returned as an int. */
    if (*max_head > INT_MAX)
        *max_head = INT_MAX;
    if (*max_headers > CDN_HTTP_MAX_HEADERS)
        *max_headers = CDN_HTTP_MAX_HEADERS;
}

/* Expects CRLF at buf[*p]; advances past it. */
static int expect_crlf(const char *buf, size_t end, size_t *p)
{
    if (*p == end)
        return CDN_HTTP_EAGAIN;
    if (buf[*p] != '\r')
        return CDN_HTTP_EBAD;
    if (*p + 1 == end)
        return CDN_HTTP_EAGAIN;
    if (buf[*p + 1] != '\n')
        return CDN_HTTP_EBAD;
    *p += 2;
    return 0;
}

/* "HTTP/" DIGIT "." DIGIT; *major and *minor get the digits. */
static int parse_version(const char *buf, size_t end, size_t *p, int *major, int *minor)
{
    static const char pattern[] = "HTTP/0.0";
    size_t i;

    for (i = 0; i < sizeof(pattern) - 1; i++, (*p)++) {
        if (*p == end)
            return CDN_HTTP_EAGAIN;
        if (pattern[i] == '0') {
            if (!is_digit((unsigned char)buf[*p]))
                return CDN_HTTP_EBAD;
            if (i == 5)
                *major = buf[*p] - '0';
            else
                *minor = buf[*p] - '0';
        } else if (buf[*p] != pattern[i]) {
            return CDN_HTTP_EBAD;
        }
    }
    return 0;
}

/* Up to MAX_LEADING_EMPTY_LINES CRLFs may precede a request line (RFC 9112 2.2). */
static int skip_empty_lines(const char *buf, size_t end, size_t *p)
{
    size_t n = 0;
    int rc;

    while (*p < end && buf[*p] == '\r') {
        if (++n > MAX_LEADING_EMPTY_LINES)
            return CDN_HTTP_EBAD;
        rc = expect_crlf(buf, end, p);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int parse_request_line(const char *buf, size_t end, size_t *p, struct cdn_http_request *req)
{
    size_t start;
    int major = 0, minor = 0, rc;

    start = *p;
    while (*p < end && is_tchar((unsigned char)buf[*p]))
        (*p)++;
    if (*p == end)
        return CDN_HTTP_EAGAIN;
    if (buf[*p] != ' ' || *p == start)
        return CDN_HTTP_EBAD;
    req->method = buf + start;
    req->method_len = *p - start;
    (*p)++;

    /* No CTL, SP or bytes >= 0x7f: that also rules out the HTTP/0.9 "GET /" line. */
    start = *p;
    while (*p < end && (unsigned char)buf[*p] > 0x20 && (unsigned char)buf[*p] < 0x7f)
        (*p)++;
    if (*p == end)
        return CDN_HTTP_EAGAIN;
    if (buf[*p] != ' ' || *p == start)
        return CDN_HTTP_EBAD;
    req->target = buf + start;
    req->target_len = *p - start;
    (*p)++;

    rc = parse_version(buf, end, p, &major, &minor);
    if (rc == 0)
        rc = expect_crlf(buf, end, p);
    if (rc != 0)
        return rc;
    if (major != 1 || minor > 1)
        return CDN_HTTP_EVERSION;
    req->minor_version = minor;
    return 0;
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF; "HTTP/1.1 200" CRLF is tolerated. */
static int parse_status_line(const char *buf, size_t end, size_t *p, struct cdn_http_response *res)
{
    size_t start, i;
    int major = 0, minor = 0, status = 0, rc;

    rc = parse_version(buf, end, p, &major, &minor);
    if (rc != 0)
        return rc;
    if (*p == end)
        return CDN_HTTP_EAGAIN;
    if (buf[*p] != ' ')
        return CDN_HTTP_EBAD;
    (*p)++;
    for (i = 0; i < 3; i++, (*p)++) {
        if (*p == end)
            return CDN_HTTP_EAGAIN;
        if (!is_digit((unsigned char)buf[*p]))
            return CDN_HTTP_EBAD;
        status = status * 10 + (buf[*p] - '0');
    }
    if (*p == end)
        return CDN_HTTP_EAGAIN;
    if (buf[*p] == ' ') {
        (*p)++;
    } else if (buf[*p] != '\r') {
        return CDN_HTTP_EBAD;
    }
    start = *p;
    while (*p < end && buf[*p] != '\r') {
        if (!is_field_char((unsigned char)buf[*p]))
            return CDN_HTTP_EBAD;
        (*p)++;
    }
    res->reason = buf + start;
    res->reason_len = *p - start;
    rc = expect_crlf(buf, end, p);
    if (rc != 0)
        return rc;
    if (major != 1 || minor > 1)
        return CDN_HTTP_EVERSION;
    if (status < 100 || status > 599)
        return CDN_HTTP_EBAD;
    res->minor_version = minor;
    res->status = status;
    return 0;
}

/*
 * Header lines from buf[p] through the empty line. Returns the head length, CDN_HTTP_EAGAIN,
 * CDN_HTTP_EBAD or CDN_HTTP_ETOOBIG (one header more than max_headers).
 */
static int parse_headers(const char *buf, size_t end, size_t p, size_t max_headers,
                         struct cdn_http_header *hdrs, size_t *num_headers)
{
    size_t name, name_len, value, value_end;
    unsigned char c;
    int rc;

    *num_headers = 0;
    for (;;) {
        if (p == end)
            return CDN_HTTP_EAGAIN;
        c = (unsigned char)buf[p];
        if (c == '\r') {
            rc = expect_crlf(buf, end, &p);
            return rc != 0 ? rc : (int)p;
        }
        /* Catches bare LF, obs-fold (SP/HTAB first), an empty name (':' first) and CTLs. */
        if (!is_tchar(c))
            return CDN_HTTP_EBAD;
        if (*num_headers == max_headers)
            return CDN_HTTP_ETOOBIG;

        name = p;
        while (p < end && is_tchar((unsigned char)buf[p]))
            p++;
        if (p == end)
            return CDN_HTTP_EAGAIN;
        /* Whitespace between name and colon is a smuggling vector (RFC 9112 5.1). */
        if (buf[p] != ':')
            return CDN_HTTP_EBAD;
        name_len = p - name;
        p++;

        while (p < end && is_ows((unsigned char)buf[p]))
            p++;
        value = p;
        /* The value runs to CR: find it, then check the bytes in one tight loop (a table lookup each)
         * and trim trailing OWS backwards, instead of two tests and a store per byte. */
        const char *cr = memchr(buf + p, '\r', end - p);
        size_t stop = cr != NULL ? (size_t)(cr - buf) : end;
        for (size_t i = p; i < stop; i++) {
            if (!is_field_char((unsigned char)buf[i]))
                return CDN_HTTP_EBAD;
        }
        p = stop;
        value_end = stop;
        while (value_end > value && is_ows((unsigned char)buf[value_end - 1]))
            value_end--;
        rc = expect_crlf(buf, end, &p);
        if (rc != 0)
            return rc;

        hdrs[*num_headers].name = buf + name;
        hdrs[*num_headers].name_len = name_len;
        hdrs[*num_headers].value = buf + value;
        hdrs[*num_headers].value_len = value_end - value;
        hdrs[*num_headers].hop_by_hop = false;
        (*num_headers)++;
    }
}

/*
 * Iterates the elements of a comma-separated list (RFC 9110 5.6.1), OWS-trimmed; elements may be empty.
 * Start with *pos = 0; returns false when the list is exhausted.
 */
static bool list_next(const char *v, size_t len, size_t *pos, const char **elem, size_t *elem_len)
{
    size_t s, e;

    if (*pos > len)
        return false;
    s = *pos;
    e = s;
    while (e < len && v[e] != ',')
        e++;
    *pos = e + 1;
    while (s < e && is_ows((unsigned char)v[s]))
        s++;
    while (e > s && is_ows((unsigned char)v[e - 1]))
        e--;
    *elem = v + s;
    *elem_len = e - s;
    return true;
}

static bool connection_has_token(const struct cdn_http_header *hdrs, size_t n, const char *tok,
                                 size_t tok_len)
{
    const char *e;
    size_t i, pos, elen;

    for (i = 0; i < n; i++) {
        if (!ieq(hdrs[i].name, hdrs[i].name_len, "connection"))
            continue;
        pos = 0;
        while (list_next(hdrs[i].value, hdrs[i].value_len, &pos, &e, &elen)) {
            if (elen != 0 && ieq_n(e, elen, tok, tok_len))
                return true;
        }
    }
    return false;
}

static bool is_standard_hop_by_hop(const char *name, size_t len)
{
#define HBH(s)           \
    {                    \
        s, sizeof(s) - 1 \
    }
    static const struct {
        const char *s;
        size_t len; /* known here: this runs for every header of every message */
    } names[] = {
        HBH("connection"),
        HBH("keep-alive"),
        HBH("proxy-connection"),
        HBH("te"),
        HBH("trailer"),
        HBH("transfer-encoding"),
        HBH("upgrade"),
        HBH("proxy-authenticate"),
        HBH("proxy-authorization"),
    };
#undef HBH
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (ieq_n(name, len, names[i].s, names[i].len))
            return true;
    }
    return false;
}

/* Marks hop-by-hop headers and derives keep-alive from the version and the Connection tokens. */
static bool connection_semantics(struct cdn_http_header *hdrs, size_t n, int minor_version)
{
    size_t i;
    bool has_close, keep_alive, has_connection = false;

    /* Most messages carry no Connection field: then no name can be listed in one (no n*n scan). */
    for (i = 0; i < n && !has_connection; i++)
        has_connection = ieq(hdrs[i].name, hdrs[i].name_len, "connection");
    for (i = 0; i < n; i++) {
        hdrs[i].hop_by_hop =
            is_standard_hop_by_hop(hdrs[i].name, hdrs[i].name_len) ||
            (has_connection && connection_has_token(hdrs, n, hdrs[i].name, hdrs[i].name_len));
    }
    if (!has_connection)
        return minor_version >= 1;
    has_close = connection_has_token(hdrs, n, "close", 5);
    keep_alive = connection_has_token(hdrs, n, "keep-alive", 10);
    if (has_close)
        return false;
    return minor_version >= 1 || keep_alive;
}

/*
 * Content-Length: 1*DIGIT, possibly as a list of identical values and over several identical fields
 * (RFC 9110 8.6). Returns 0 if absent, 1 if present (*out set), CDN_HTTP_EBAD otherwise.
 */
static int content_length(const struct cdn_http_header *hdrs, size_t n, uint64_t *out)
{
    const char *e;
    size_t i, k, pos, elen;
    uint64_t v;
    bool seen = false;

    *out = 0;
    for (i = 0; i < n; i++) {
        if (!ieq(hdrs[i].name, hdrs[i].name_len, "content-length"))
            continue;
        pos = 0;
        while (list_next(hdrs[i].value, hdrs[i].value_len, &pos, &e, &elen)) {
            if (elen == 0)
                return CDN_HTTP_EBAD;
            v = 0;
            for (k = 0; k < elen; k++) {
                unsigned d;

                if (!is_digit((unsigned char)e[k]))
                    return CDN_HTTP_EBAD;
                d = (unsigned)(e[k] - '0');
                if (v > (CONTENT_LENGTH_MAX - d) / 10)
                    return CDN_HTTP_EBAD;
                v = v * 10 + d;
            }
            if (seen && v != *out)
                return CDN_HTTP_EBAD;
            seen = true;
            *out = v;
        }
    }
    return seen ? 1 : 0;
}

struct te_info {
    bool present;
    size_t codings;    /* number of transfer-codings over all Transfer-Encoding fields */
    size_t chunked;    /* how many of them are "chunked" */
    bool chunked_last; /* the final coding is "chunked" */
};

/*
 * Transfer-Encoding: comma-separated transfer-codings, each a token with optional ";" parameters.
 * Only the syntax is judged here; what the list means differs for requests and responses.
 */
static int transfer_encoding(const struct cdn_http_header *hdrs, size_t n, struct te_info *te)
{
    const char *e;
    size_t i, k, pos, elen;
    bool is_chunked;

    memset(te, 0, sizeof(*te));
    for (i = 0; i < n; i++) {
        if (!ieq(hdrs[i].name, hdrs[i].name_len, "transfer-encoding"))
            continue;
        te->present = true;
        pos = 0;
        while (list_next(hdrs[i].value, hdrs[i].value_len, &pos, &e, &elen)) {
            for (k = 0; k < elen && is_tchar((unsigned char)e[k]); k++)
                ;
            if (k == 0)
                return CDN_HTTP_EBAD;
            is_chunked = k == elen && ieq(e, elen, "chunked");
            if (k < elen) {
                /* Parameters: only OWS ";" may follow the coding name. */
                while (k < elen && is_ows((unsigned char)e[k]))
                    k++;
                if (k == elen || e[k] != ';')
                    return CDN_HTTP_EBAD;
            }
            te->codings++;
            if (is_chunked)
                te->chunked++;
            te->chunked_last = is_chunked;
        }
    }
    return 0;
}

static bool is_regname_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c))
        return true;
    /* unreserved and sub-delims, except ',' which only shows up when two Host values were joined. */
    switch (c) {
    case '-':
    case '.':
    case '_':
    case '~':
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ';':
    case '=':
        return true;
    default:
        return false;
    }
}

/* uri-host [ ":" port ] (RFC 3986 3.2.2): reg-name or IPv4, or an IPv6 literal in brackets. */
static bool valid_authority(const char *s, size_t len, bool need_port)
{
    size_t i = 0, digits;
    unsigned long port = 0;
    bool colon = false;

    if (len == 0)
        return false;
    if (s[0] == '[') {
        for (i = 1; i < len && s[i] != ']'; i++) {
            if (s[i] == ':')
                colon = true;
            else if (hex_value((unsigned char)s[i]) < 0 && s[i] != '.')
                return false;
        }
        if (i == len || !colon)
            return false;
        i++;
    } else {
        while (i < len && s[i] != ':') {
            if (s[i] == '%') {
                if (i + 2 >= len || hex_value((unsigned char)s[i + 1]) < 0 ||
                    hex_value((unsigned char)s[i + 2]) < 0)
                    return false;
                i += 3;
            } else if (is_regname_char((unsigned char)s[i])) {
                i++;
            } else {
                return false;
            }
        }
        if (i == 0)
            return false;
    }
    if (i == len)
        return !need_port;
    if (s[i] != ':')
        return false;
    for (i++, digits = 0; i < len; i++, digits++) {
        if (!is_digit((unsigned char)s[i]) || digits == 5)
            return false;
        port = port * 10 + (unsigned long)(s[i] - '0');
    }
    return digits > 0 && port <= 65535;
}

/* Splits the request-target into its form (RFC 9112 3.2). */
static int request_target(struct cdn_http_request *req)
{
    const char *t = req->target;
    size_t n = req->target_len, skip, a;
    bool connect = eq(req->method, req->method_len, "CONNECT");

    if (connect) {
        /* authority-form, and only for CONNECT */
        if (!valid_authority(t, n, true))
            return CDN_HTTP_EBAD;
        req->host = req->path = t;
        req->host_len = req->path_len = n;
        return 0;
    }
    if (t[0] == '/') {
        req->path = t;
        req->path_len = n;
        return 0;
    }
    if (n == 1 && t[0] == '*') {
        if (!eq(req->method, req->method_len, "OPTIONS"))
            return CDN_HTTP_EBAD;
        req->path = t;
        req->path_len = n;
        return 0;
    }
    if (n >= 7 && ieq(t, 7, "http://"))
        skip = 7;
    else if (n >= 8 && ieq(t, 8, "https://"))
        skip = 8;
    else
        return CDN_HTTP_EBAD;
    for (a = skip; a < n && t[a] != '/' && t[a] != '?' && t[a] != '#'; a++)
        ;
    if (!valid_authority(t + skip, a - skip, false))
        return CDN_HTTP_EBAD;
    /* A query straight after the authority would need a "/" we cannot insert without copying. */
    if (a < n && t[a] != '/')
        return CDN_HTTP_EBAD;
    req->host = t + skip;
    req->host_len = a - skip;
    if (a < n) {
        req->path = t + a;
        req->path_len = n - a;
    } else {
        req->path = "/";
        req->path_len = 1;
    }
    return 0;
}

static int request_semantics(struct cdn_http_request *req)
{
    const struct cdn_http_header *host = NULL;
    struct te_info te;
    uint64_t cl;
    size_t i;
    int has_cl, rc;

    for (i = 0; i < req->num_headers; i++) {
        const struct cdn_http_header *h = &req->headers[i];

        if (ieq(h->name, h->name_len, "host")) {
            if (host != NULL)
                return CDN_HTTP_EBAD;
            host = h;
            if (!valid_authority(h->value, h->value_len, false))
                return CDN_HTTP_EBAD;
        } else if (ieq(h->name, h->name_len, "expect")) {
            if (ieq(h->value, h->value_len, "100-continue"))
                req->expect_continue = true;
        }
    }
    if (host == NULL && req->minor_version >= 1)
        return CDN_HTTP_EBAD;
    /* An absolute-form or authority-form target wins over the Host header (RFC 9112 3.2.2). */
    if (host != NULL && req->host == NULL) {
        req->host = host->value;
        req->host_len = host->value_len;
    }

    has_cl = content_length(req->headers, req->num_headers, &cl);
    if (has_cl < 0)
        return has_cl;
    rc = transfer_encoding(req->headers, req->num_headers, &te);
    if (rc < 0)
        return rc;
    if (te.present) {
        /* TE on 1.0 or next to CL: someone on the path may frame the body differently (RFC 9112 6.1). */
        if (req->minor_version == 0 || has_cl)
            return CDN_HTTP_EBAD;
        if (te.chunked > 1 || (te.chunked == 1 && !te.chunked_last))
            return CDN_HTTP_EBAD;
        if (te.chunked == 0 || te.codings > 1)
            return CDN_HTTP_ENOTIMPL;
        req->body_kind = CDN_HTTP_BODY_CHUNKED;
    } else if (has_cl) {
        req->body_kind = CDN_HTTP_BODY_LENGTH;
        req->content_length = cl;
    }

    req->keep_alive = connection_semantics(req->headers, req->num_headers, req->minor_version);
    return 0;
}

int cdn_http1_parse_request(const char *buf, size_t len, const struct cdn_http_limits *lim,
                            struct cdn_http_request *req)
{
    size_t max_head, max_headers, end, p = 0;
    int rc;

    get_limits(lim, &max_head, &max_headers);
    /* Never look past the limit: then a prefix gives either EAGAIN or the final answer. */
    end = len < max_head ? len : max_head;

    req->method = req->target = req->path = req->host = NULL;
    req->method_len = req->target_len = req->path_len = req->host_len = 0;
    req->minor_version = 0;
    req->num_headers = 0;
    req->body_kind = CDN_HTTP_BODY_NONE;
    req->content_length = 0;
    req->keep_alive = false;
    req->expect_continue = false;

    rc = skip_empty_lines(buf, end, &p);
    if (rc == 0)
        rc = parse_request_line(buf, end, &p, req);
    if (rc == CDN_HTTP_EAGAIN) {
        /* An incomplete line that already fills the limit can never fit. */
        if (len >= max_head)
            rc = CDN_HTTP_ETOOLONG;
        goto out;
    }
    if (rc < 0)
        goto out;
    rc = request_target(req);
    if (rc < 0)
        goto out;

    rc = parse_headers(buf, end, p, max_headers, req->headers, &req->num_headers);
    if (rc == CDN_HTTP_EAGAIN && len >= max_head)
        rc = CDN_HTTP_ETOOBIG;
    if (rc < 0)
        goto out;
    p = (size_t)rc;

    rc = request_semantics(req);
    if (rc == 0)
        rc = (int)p;
out:
    return rc;
}

static int response_semantics(struct cdn_http_response *res, bool is_head_request)
{
    struct te_info te;
    uint64_t cl;
    int has_cl, rc;
    bool no_body;

    res->keep_alive = connection_semantics(res->headers, res->num_headers, res->minor_version);

    has_cl = content_length(res->headers, res->num_headers, &cl);
    if (has_cl < 0)
        return has_cl;
    rc = transfer_encoding(res->headers, res->num_headers, &te);
    if (rc < 0)
        return rc;
    if (te.present) {
        /* RFC 9112 6.1: TE on a 1.0 message means faulty framing. */
        if (res->minor_version == 0 || te.chunked > 1)
            return CDN_HTTP_EBAD;
        /* RFC 9112 6.3: both at once "ought to be handled as an error": it is how responses are
         * split and caches poisoned, so an upstream that sends it gets no benefit of the doubt (502) */
        if (has_cl)
            return CDN_HTTP_EBAD;
    }

    no_body = is_head_request || (res->status >= 100 && res->status < 200) || res->status == 204 ||
              res->status == 304;
    if (no_body) {
        res->body_kind = CDN_HTTP_BODY_NONE;
    } else if (te.present && te.chunked_last) {
        res->body_kind = CDN_HTTP_BODY_CHUNKED;
    } else if (te.present) {
        res->body_kind = CDN_HTTP_BODY_EOF;
        res->keep_alive = false;
    } else if (has_cl) {
        res->body_kind = CDN_HTTP_BODY_LENGTH;
        res->content_length = cl;
    } else {
        res->body_kind = CDN_HTTP_BODY_EOF;
        res->keep_alive = false;
    }
    return 0;
}

int cdn_http1_parse_response(const char *buf, size_t len, const struct cdn_http_limits *lim,
                             bool is_head_request, struct cdn_http_response *res)
{
    size_t max_head, max_headers, end, p = 0;
    int rc;

    get_limits(lim, &max_head, &max_headers);
    end = len < max_head ? len : max_head;

    res->minor_version = 0;
    res->status = 0;
    res->reason = NULL;
    res->reason_len = 0;
    res->num_headers = 0;
    res->body_kind = CDN_HTTP_BODY_NONE;
    res->content_length = 0;
    res->keep_alive = false;

    rc = parse_status_line(buf, end, &p, res);
    if (rc == 0)
        rc = parse_headers(buf, end, p, max_headers, res->headers, &res->num_headers);
    if (rc == CDN_HTTP_EAGAIN && len >= max_head)
        rc = CDN_HTTP_ETOOBIG;
    if (rc < 0)
        goto out;
    p = (size_t)rc;

    rc = response_semantics(res, is_head_request);
    if (rc == 0)
        rc = (int)p;
out:
    return rc;
}

const struct cdn_http_header *cdn_http1_find_header(const struct cdn_http_header *h, size_t n,
                                                    const char *name)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (ieq(h[i].name, h[i].name_len, name))
            return &h[i];
    }
    return NULL;
}

void cdn_http1_chunked_init(struct cdn_http_chunked *d)
{
    memset(d, 0, sizeof(*d));
    d->state = CH_SIZE_START;
    d->max_line = DEFAULT_MAX_LINE;
    d->max_trailer = DEFAULT_MAX_TRAILER;
}

/* One byte of a chunk-size line (size, extensions, CR LF). Returns the next state or CH_ERROR. */
static int chunk_line_byte(struct cdn_http_chunked *d, unsigned char c)
{
    int h;

    switch (d->state) {
    case CH_SIZE_START:
        h = hex_value(c);
        if (h < 0)
            return CH_ERROR;
        d->remaining = (uint64_t)h;
        return CH_SIZE;
    case CH_SIZE:
        h = hex_value(c);
        if (h >= 0) {
            /* line_len counts this digit too: only digits so far on this line. */
            if (d->line_len > CHUNK_SIZE_MAX_DIGITS || d->remaining > (CHUNK_SIZE_MAX - (uint64_t)h) / 16)
                return CH_ERROR;
            d->remaining = d->remaining * 16 + (uint64_t)h;
            return CH_SIZE;
        }
        if (is_ows(c))
            return CH_BWS;
        if (c == ';')
            return CH_EXT_PRE_NAME;
        return c == '\r' ? CH_SIZE_LF : CH_ERROR;
    case CH_BWS:
        if (is_ows(c))
            return CH_BWS;
        return c == ';' ? CH_EXT_PRE_NAME : CH_ERROR;
    case CH_EXT_PRE_NAME:
        if (is_ows(c))
            return CH_EXT_PRE_NAME;
        return is_tchar(c) ? CH_EXT_NAME : CH_ERROR;
    case CH_EXT_NAME:
        if (is_tchar(c))
            return CH_EXT_NAME;
        if (is_ows(c))
            return CH_EXT_NAME_BWS;
        if (c == '=')
            return CH_EXT_PRE_VAL;
        if (c == ';')
            return CH_EXT_PRE_NAME;
        return c == '\r' ? CH_SIZE_LF : CH_ERROR;
    case CH_EXT_NAME_BWS:
        if (is_ows(c))
            return CH_EXT_NAME_BWS;
        if (c == '=')
            return CH_EXT_PRE_VAL;
        return c == ';' ? CH_EXT_PRE_NAME : CH_ERROR;
    case CH_EXT_PRE_VAL:
        if (is_ows(c))
            return CH_EXT_PRE_VAL;
        if (c == '"')
            return CH_EXT_VAL_Q;
        return is_tchar(c) ? CH_EXT_VAL_TOKEN : CH_ERROR;
    case CH_EXT_VAL_TOKEN:
        if (is_tchar(c))
            return CH_EXT_VAL_TOKEN;
        if (is_ows(c))
            return CH_BWS;
        if (c == ';')
            return CH_EXT_PRE_NAME;
        return c == '\r' ? CH_SIZE_LF : CH_ERROR;
    case CH_EXT_VAL_Q:
        if (c == '"')
            return CH_EXT_POST_VAL;
        if (c == '\\')
            return CH_EXT_VAL_QESC;
        return is_field_char(c) ? CH_EXT_VAL_Q : CH_ERROR;
    case CH_EXT_VAL_QESC:
        return is_field_char(c) ? CH_EXT_VAL_Q : CH_ERROR;
    case CH_EXT_POST_VAL:
        if (is_ows(c))
            return CH_BWS;
        if (c == ';')
            return CH_EXT_PRE_NAME;
        return c == '\r' ? CH_SIZE_LF : CH_ERROR;
    case CH_SIZE_LF:
        if (c != '\n')
            return CH_ERROR;
        return d->remaining == 0 ? CH_TRAILER_START : CH_DATA;
    default:
        return CH_ERROR;
    }
}

/* One byte of the trailer section (trailer fields and the final empty line). */
static int trailer_byte(struct cdn_http_chunked *d, unsigned char c)
{
    switch (d->state) {
    case CH_TRAILER_START:
        if (c == '\r')
            return CH_END_LF;
        /* LF, obs-fold, an empty name and CTLs all land here. */
        return is_tchar(c) ? CH_TRAILER_NAME : CH_ERROR;
    case CH_TRAILER_NAME:
        if (is_tchar(c))
            return CH_TRAILER_NAME;
        return c == ':' ? CH_TRAILER_VALUE : CH_ERROR;
    case CH_TRAILER_VALUE:
        if (c == '\r')
            return CH_TRAILER_LF;
        return is_field_char(c) ? CH_TRAILER_VALUE : CH_ERROR;
    case CH_TRAILER_LF:
        return c == '\n' ? CH_TRAILER_START : CH_ERROR;
    case CH_END_LF:
        return c == '\n' ? CH_DONE : CH_ERROR;
    default:
        return CH_ERROR;
    }
}

int cdn_http1_chunked_decode(struct cdn_http_chunked *d, const char *buf, size_t len, size_t *consumed,
                             const char **data, size_t *data_len)
{
    size_t p = 0, n, max_line, max_trailer;
    int rc = CDN_HTTP_EAGAIN, prev;
    unsigned char c;

    max_line = d->max_line != 0 ? d->max_line : DEFAULT_MAX_LINE;
    max_trailer = d->max_trailer != 0 ? d->max_trailer : DEFAULT_MAX_TRAILER;
    *data = NULL;
    *data_len = 0;

    while (d->state != CH_DONE && d->state != CH_ERROR && p < len) {
        c = (unsigned char)buf[p];
        prev = d->state;
        switch (d->state) {
        case CH_DATA:
            n = len - p;
            if (n > d->remaining)
                n = (size_t)d->remaining;
            *data = buf + p;
            *data_len = n;
            p += n;
            d->remaining -= n;
            if (d->remaining == 0)
                d->state = CH_DATA_CR;
            rc = 0;
            goto out;
        case CH_DATA_CR:
            d->state = c == '\r' ? CH_DATA_LF : CH_ERROR;
            break;
        case CH_DATA_LF:
            d->state = c == '\n' ? CH_SIZE_START : CH_ERROR;
            d->line_len = 0;
            break;
        case CH_TRAILER_START:
        case CH_TRAILER_NAME:
        case CH_TRAILER_VALUE:
        case CH_TRAILER_LF:
        case CH_END_LF:
            if (d->state == CH_TRAILER_START)
                d->line_len = 0;
            d->line_len++;
            d->trailer_size++;
            d->state = trailer_byte(d, c);
            if (d->line_len > max_line || d->trailer_size > max_trailer)
                d->state = CH_ERROR;
            break;
        default:
            d->line_len++;
            d->state = chunk_line_byte(d, c);
            if (d->line_len > max_line)
                d->state = CH_ERROR;
            if (prev == CH_SIZE_LF && d->state == CH_TRAILER_START)
                d->trailer_size = 0;
            break;
        }
        p++;
    }
out:
    if (d->state == CH_ERROR)
        rc = CDN_HTTP_EBAD;
    else if (d->state == CH_DONE)
        rc = 1;
    *consumed = p;
    return rc;
}

const char *cdn_http1_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 102:
        return "Processing";
    case 103:
        return "Early Hints";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 205:
        return "Reset Content";
    case 206:
        return "Partial Content";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 305:
        return "Use Proxy";
    case 306:
        return "Unused";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 407:
        return "Proxy Authentication Required";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 418:
        return "I'm a teapot";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 425:
        return "Too Early";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 451:
        return "Unavailable For Legal Reasons";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}
