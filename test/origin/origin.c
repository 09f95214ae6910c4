/*
 * origin: the scripted origin server used by the e2e suite and `make run`.
 *
 * Plain HTTP/1.1 on one libuv loop, with keep-alive and pipelining (requests on a connection are
 * answered one after the other, in order). Every generated body streams with backpressure: pieces of
 * at most 64 KiB are queued only while the socket's write queue is under WQ_HIGH, and reading stops
 * while it is over, so a 1 GiB response or an echoed upload keeps memory flat.
 *
 * Generated bodies share one pattern, so a test can compute the expected bytes by itself:
 * byte i is PATTERN[i % 36], PATTERN = "0123456789abcdefghijklmnopqrstuvwxyz"; the first N bytes are
 *     yes 0123456789abcdefghijklmnopqrstuvwxyz | tr -d '\n' | head -c N
 *
 * Every request whose head parses is appended to --log as "METHOD TARGET" and flushed at once: tests
 * count those lines to prove what reached the origin. A conditional request (If-None-Match or
 * If-Modified-Since) gets more words after those two, the last one being "conditional":
 *     GET /files/a inm="0a1b..." ims=Sun,_06_Nov_1994_08:49:37_GMT conditional
 * (values with their blanks turned into '_'). A malformed head gets 400 (431/501/505 where the parser
 * says so) with Connection: close, and is not logged. See usage() for the endpoints.
 *
 * --docroot DIR serves the files of DIR under /files/NAME for the cache tests, with validators: the
 * ETag is the SHA-256 of the content in hex (quoted), Last-Modified the file's mtime. The file is
 * opened and hashed on libuv's thread pool and its body streamed with uv_fs_read, one 64 KiB piece in
 * flight at a time and only while the socket keeps up, so the loop never blocks on the disk. The body
 * comes from the descriptor that was hashed: replace files atomically (write elsewhere, rename) and a
 * response never mixes two versions.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <uv.h>

#include "lib/http1.h"
#include "lib/util.h"

#define PATTERN      "0123456789abcdefghijklmnopqrstuvwxyz"
#define PATTERN_LEN  36
#define PIECE        (64 * 1024)  /* largest body write */
#define WQ_HIGH      (256 * 1024) /* write queue (bytes the kernel has not taken) over this: pause */
#define IN_CAP       (256 * 1024) /* input buffer cap: a head plus pipelined requests or body bytes */
#define MAX_HEAD     (64 * 1024)
#define LINGER_MS    2000 /* after our FIN, read and drop the peer's bytes this long so it sees no RST */
#define MAX_SLOW_MS  600000
#define MAX_BODY_LEN (UINT64_C(1) << 40)
#define CONN_MAGIC   0x0a19e001u

enum framing {
    FR_LENGTH,  /* Content-Length */
    FR_CHUNKED, /* Transfer-Encoding: chunked */
    FR_EOF,     /* neither; the body ends when we close */
    FR_NONE,    /* 204/304: no body and no framing header */
};

enum source {
    SRC_NONE,      /* the whole response was queued with the head */
    SRC_PATTERN,   /* gen_total pattern bytes */
    SRC_ECHO,      /* the request body */
    SRC_SLOW,      /* the timer answers */
    SRC_FILE_OPEN, /* /files/NAME: opened and hashed on the thread pool (file_work) */
    SRC_FILE,      /* /files/NAME: file bytes file_off..file_size, read with uv_fs_read */
};

/* The result of file_work, read by file_done on the loop thread. */
struct file_job {
    char *path;
    int fd;  /* -1 on failure */
    int err; /* errno of the failure */
    uint64_t size;
    int64_t mtime;
    char etag[2 * 32 + 3]; /* "hex" */
};

struct conn {
    uint32_t magic;
    struct conn *prev, *next; /* all live connections, closed on SIGTERM */
    uv_tcp_t tcp;
    uv_timer_t timer; /* /slow/MS, then the lingering close */
    uv_shutdown_t shutdown_req;
    unsigned open_handles;
    unsigned pending_ops; /* thread-pool work and fs reads in flight: the conn lives until they end */
    bool closing, shutting, lingering, reading, peer_eof;

    char *in;
    size_t in_len, in_size;

    /* the request being answered */
    bool active, head_only, http10, close_after;
    enum cdn_http_body_kind body_kind;
    uint64_t body_left;
    bool body_done;
    struct cdn_http_chunked dec;
    char *extra;       /* response headers asked for with hdr=, "Name: Value\r\n"... */
    char *inm, *ims;   /* If-None-Match (all lines, joined with ", ") and If-Modified-Since, or NULL */
    uint64_t delay_ms; /* delay=MS in the query (/vary) */
    char *slow_body;   /* what on_slow answers instead of "slow\n" */

    /* /files/NAME */
    uv_work_t work;
    uv_fs_t fs;
    struct file_job job;
    int fd;
    uint64_t file_off, file_size;
    bool file_reading;
    char *read_buf; /* the piece uv_fs_read fills; handed to the write that sends it */

    /* its response */
    enum source src;
    enum framing framing;
    bool resp_done;
    uint64_t gen_total, gen_off;
    unsigned chunk_idx;
};

struct wreq {
    uv_write_t req;
    char *heap; /* freed when the write completes */
    char small[24];
};

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sig_term, sig_int;
static struct conn *conns;
static FILE *log_file;
static bool stopping;
static const char *docroot;
static char pattern_buf[PIECE + PATTERN_LEN];
static char crlf[] = "\r\n";
static char last_chunk[] = "0\r\n\r\n";
static const size_t chunk_sizes[] = {1, 7, 4096, 65536};
static const struct cdn_http_limits limits = {MAX_HEAD, CDN_HTTP_MAX_HEADERS};
static struct cdn_http_request parsed; /* single-threaded: one parse at a time */

static void conn_pump(struct conn *c);
static void conn_close(struct conn *c);

static size_t write_queue(struct conn *c)
{
    return uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
}

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct conn *c = req->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    free(w->heap);
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_pump(c);
}

/* Queues bufs[0..n). heap (may be NULL) is freed once written; the bufs must stay valid until then. */
static void send_bufs(struct conn *c, struct wreq *w, uv_buf_t *bufs, unsigned n)
{
    w->req.data = c;
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, n, on_write);
    if (rc < 0) {
        free(w->heap);
        free(w);
        conn_close(c);
    }
}

static void send_copy(struct conn *c, const char *p, size_t n)
{
    struct wreq *w = cdn_xcalloc(1, sizeof(*w));
    w->heap = cdn_xmalloc(n ? n : 1);
    memcpy(w->heap, p, n);
    uv_buf_t b = uv_buf_init(w->heap, (unsigned)n);
    send_bufs(c, w, &b, 1);
}

/* One chunk: size line + data + CRLF. data is copied unless it is static (the pattern). */
static void send_chunk(struct conn *c, const char *data, size_t n, bool copy)
{
    struct wreq *w = cdn_xcalloc(1, sizeof(*w));
    int hl = snprintf(w->small, sizeof(w->small), "%zx\r\n", n);
    char *p = (char *)data;
    if (copy) {
        w->heap = cdn_xmalloc(n);
        memcpy(w->heap, data, n);
        p = w->heap;
    }
    uv_buf_t b[3] = {uv_buf_init(w->small, (unsigned)hl), uv_buf_init(p, (unsigned)n), uv_buf_init(crlf, 2)};
    send_bufs(c, w, b, 3);
}

static void send_static(struct conn *c, char *p, size_t n)
{
    struct wreq *w = cdn_xcalloc(1, sizeof(*w));
    uv_buf_t b = uv_buf_init(p, (unsigned)n);
    send_bufs(c, w, &b, 1);
}

/* Frees a closing conn once its handles are closed and no thread-pool or fs request uses it. */
static void conn_maybe_free(struct conn *c)
{
    if (!c->closing || c->open_handles != 0 || c->pending_ops != 0)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->read_buf);
    free(c->slow_body);
    free(c->inm);
    free(c->ims);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c->in);
    free(c->extra);
    c->magic = 0;
    free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    c->open_handles--;
    conn_maybe_free(c);
}

/* Idempotent. Pending writes complete with UV_ECANCELED before the handles' close callbacks. */
static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_linger_timeout(uv_timer_t *t)
{
    struct conn *c = t->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    conn_close(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char drop[PIECE];
    struct conn *c = h->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    if (c->lingering) {
        *buf = uv_buf_init(drop, sizeof(drop));
        return;
    }
    if (c->in_size - c->in_len < 16384 && c->in_size < IN_CAP) {
        c->in_size = c->in_size * 2 < IN_CAP ? c->in_size * 2 : IN_CAP;
        c->in = cdn_xrealloc(c->in, c->in_size);
    }
    if (c->in_len == c->in_size) {
        *buf = uv_buf_init(NULL, 0); /* UV_ENOBUFS: reading should have been stopped */
        return;
    }
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(c->in_size - c->in_len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    if (c->closing || nread == 0)
        return;
    if (c->lingering) {
        if (nread < 0)
            conn_close(c);
        return;
    }
    if (nread < 0) {
        if (nread != UV_EOF) {
            conn_close(c);
            return;
        }
        c->peer_eof = true;
        uv_read_stop(s);
        c->reading = false;
        conn_pump(c);
        return;
    }
    c->in_len += (size_t)nread;
    conn_pump(c);
}

/* Reads while there is room for input and the peer is reading our output; always while lingering. */
static void update_reading(struct conn *c)
{
    if (c->closing)
        return;
    bool want =
        !c->peer_eof && (c->lingering || (!c->shutting && c->in_len < IN_CAP && write_queue(c) < WQ_HIGH));
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
            conn_close(c);
            return;
        }
        c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    if (c->closing)
        return;
    if (status < 0 || c->peer_eof) {
        conn_close(c);
        return;
    }
    /* Closing with unread input would send an RST, and the peer could lose the response it has not
     * read yet: drop whatever it still sends until it closes, or LINGER_MS. */
    c->lingering = true;
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, on_linger_timeout, LINGER_MS, 0);
    update_reading(c);
}

/* FIN once every queued write is out, then linger. */
static void conn_shutdown(struct conn *c)
{
    if (c->closing || c->shutting)
        return;
    c->shutting = true;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        conn_close(c);
}

static void consume(struct conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

static void send_head(struct conn *c, int status, const char *ctype, enum framing fr, uint64_t len)
{
    char framing_line[64] = "";
    if (fr == FR_LENGTH)
        snprintf(framing_line, sizeof(framing_line), "Content-Length: %" PRIu64 "\r\n", len);
    else if (fr == FR_CHUNKED)
        snprintf(framing_line, sizeof(framing_line), "Transfer-Encoding: chunked\r\n");
    else if (fr == FR_EOF)
        c->close_after = true;
    c->framing = fr;
    const char *conn_line = c->close_after ? "Connection: close\r\n"
                            : c->http10    ? "Connection: keep-alive\r\n"
                                           : "";
    struct wreq *w = cdn_xcalloc(1, sizeof(*w));
    w->heap = cdn_xasprintf("HTTP/1.1 %d %s\r\nServer: cdn-test-origin\r\n%s%s%s%s%s%s\r\n", status,
                            cdn_http1_reason(status), ctype ? "Content-Type: " : "", ctype ? ctype : "",
                            ctype ? "\r\n" : "", framing_line, conn_line, c->extra ? c->extra : "");
    uv_buf_t b = uv_buf_init(w->heap, (unsigned)strlen(w->heap));
    send_bufs(c, w, &b, 1);
}

/* A complete response whose body is known now. */
static void send_fixed(struct conn *c, int status, const char *body, size_t len)
{
    bool no_body = status == 204 || status == 304;
    send_head(c, status, no_body ? NULL : "text/plain", no_body ? FR_NONE : FR_LENGTH, len);
    if (!no_body && !c->head_only && len > 0)
        send_copy(c, body, len);
    c->src = SRC_NONE;
    c->resp_done = true;
}

/* Answers status, then closes: the connection's framing can no longer be trusted. */
static void send_error(struct conn *c, int status)
{
    char body[64];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, cdn_http1_reason(status));
    uv_timer_stop(&c->timer);
    free(c->extra);
    c->extra = NULL;
    c->active = true;
    c->head_only = false;
    c->close_after = true;
    c->body_done = true;
    send_fixed(c, status, body, (size_t)n);
    conn_shutdown(c);
}

static void on_slow(uv_timer_t *t)
{
    struct conn *c = t->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    if (c->closing || c->src != SRC_SLOW)
        return;
    if (c->slow_body != NULL)
        send_fixed(c, 200, c->slow_body, strlen(c->slow_body));
    else
        send_fixed(c, 200, "slow\n", 5);
    conn_pump(c);
}

static void echo_data(struct conn *c, const char *p, size_t n)
{
    if (n == 0)
        return;
    if (c->framing == FR_CHUNKED)
        send_chunk(c, p, n, true);
    else
        send_copy(c, p, n);
}

static bool parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 19)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* Adds one "hdr=Name:Value" parameter (value %XX-decoded) to c->extra. Invalid ones are dropped. */
static void add_query_header(struct conn *c, const char *v, size_t n)
{
    char *d = cdn_xmalloc(n + 1);
    size_t dl = 0;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (v[i] == '%' && i + 2 < n && (hi = hexval(v[i + 1])) >= 0 && (lo = hexval(v[i + 2])) >= 0) {
            d[dl++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            d[dl++] = v[i];
        }
    }
    d[dl] = '\0';
    char *colon = memchr(d, ':', dl);
    bool ok = colon != NULL && colon != d;
    for (char *p = d; ok && p < colon; p++)
        ok = is_tchar((unsigned char)*p);
    char *val = ok ? colon + 1 : d;
    while (ok && (*val == ' ' || *val == '\t'))
        val++;
    for (char *p = val; ok && *p; p++)
        ok = (unsigned char)*p >= 0x20 ? *p != 0x7f : *p == '\t';
    if (ok && strlen(d) == dl) {
        char *line = cdn_xasprintf("%s%.*s: %s\r\n", c->extra ? c->extra : "", (int)(colon - d), d, val);
        free(c->extra);
        c->extra = line;
    }
    free(d);
}

static void parse_query(struct conn *c, const char *q, size_t n)
{
    while (n > 0) {
        const char *amp = memchr(q, '&', n);
        size_t len = amp ? (size_t)(amp - q) : n;
        if (len > 4 && memcmp(q, "hdr=", 4) == 0)
            add_query_header(c, q + 4, len - 4);
        else if (len > 6 && memcmp(q, "delay=", 6) == 0 &&
                 !parse_u64(q + 6, len - 6, MAX_SLOW_MS, &c->delay_ms))
            c->delay_ms = 0;
        if (amp == NULL)
            break;
        n -= len + 1;
        q = amp + 1;
    }
}

static bool path_is(const char *path, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(path, want, n) == 0;
}

/* If path starts with prefix, points *rest at what follows. */
static bool path_prefix(const char *path, size_t n, const char *prefix, const char **rest, size_t *rest_len)
{
    size_t pl = strlen(prefix);
    if (n < pl || memcmp(path, prefix, pl) != 0)
        return false;
    *rest = path + pl;
    *rest_len = n - pl;
    return true;
}

static void start_pattern(struct conn *c, enum framing fr, uint64_t n)
{
    send_head(c, 200, "application/octet-stream", fr, n);
    if (c->head_only) {
        c->resp_done = true;
        return;
    }
    c->src = SRC_PATTERN;
    c->gen_total = n;
}

/* ---- /files/NAME (--docroot) and /vary ---- */

/* IMF-fixdate (RFC 9110 5.6.7) of t into out (at least 30 bytes). */
static void http_date(int64_t t, char *out, size_t cap)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    snprintf(out, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Parses an IMF-fixdate (the only form we send); -1 if s is not one. Written here rather than taken
 * from cache/policy.c so that the origin does not share the node's date bugs. */
static int64_t parse_http_date(const char *s)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    static const char days[] = "SunMonTueWedThuFriSat";
    char wd[5], mon[4], tail[4];
    int d, y, h, mi, sec, n = 0;
    /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (strlen(s) != 29 ||
        sscanf(s, "%4s %2d %3s %4d %2d:%2d:%2d %3s%n", wd, &d, mon, &y, &h, &mi, &sec, tail, &n) != 8 ||
        n != 29 || strlen(wd) != 4 || wd[3] != ',')
        return -1;
    wd[3] = '\0';
    const char *m = strstr(months, mon), *w = strstr(days, wd);
    if (m == NULL || strlen(mon) != 3 || (m - months) % 3 != 0 || w == NULL || (w - days) % 3 != 0 ||
        strcmp(tail, "GMT") != 0 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970)
        return -1;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = (int)((m - months) / 3),
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    return (int64_t)timegm(&tm);
}

/* If-None-Match against our strong ETag, with the weak comparison of RFC 9110 8.8.3.2: "*" or any
 * listed entity-tag whose opaque-tag equals ours, W/ or not. A malformed list stops at the error. */
static bool inm_matches(const char *v, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = v;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            return false;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        if (*p != '"')
            return false;
        const char *end = strchr(p + 1, '"');
        if (end == NULL)
            return false;
        if ((size_t)(end + 1 - p) == elen && memcmp(p, etag, elen) == 0)
            return true;
        p = end + 1;
    }
}

/* Copies a header value with its blanks turned into '_' (for the one-line log). */
static char *log_word(const char *v)
{
    char *w = cdn_xstrdup(v);
    for (char *p = w; *p; p++) {
        if (*p == ' ' || *p == '\t')
            *p = '_';
    }
    return w;
}

/* Thread pool: open, stat and hash the file. Touches only c->job. */
static void file_work(uv_work_t *req)
{
    struct conn *c = req->data;
    struct file_job *j = &c->job;
    j->fd = open(j->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (j->fd < 0) {
        j->err = errno;
        return;
    }
    struct stat st;
    if (fstat(j->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        j->err = errno;
        if (j->err == 0)
            j->err = ENOENT; /* not a regular file: as good as absent */
        close(j->fd);
        j->fd = -1;
        return;
    }
    j->size = (uint64_t)st.st_size;
    j->mtime = (int64_t)st.st_mtim.tv_sec;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    CDN_ASSERT(md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1);
    static _Thread_local char buf[PIECE];
    uint64_t off = 0;
    while (off < j->size) {
        ssize_t n = pread(j->fd, buf, sizeof(buf), (off_t)off);
        if (n <= 0) {
            j->err = n < 0 ? errno : EIO; /* shrank while we read it */
            break;
        }
        EVP_DigestUpdate(md, buf, (size_t)n);
        off += (uint64_t)n;
    }
    unsigned char dig[32];
    unsigned dlen = 0;
    EVP_DigestFinal_ex(md, dig, &dlen);
    EVP_MD_CTX_free(md);
    if (j->err != 0) {
        close(j->fd);
        j->fd = -1;
        return;
    }
    char *e = j->etag;
    *e++ = '"';
    for (unsigned i = 0; i < dlen; i++)
        e += sprintf(e, "%02x", dig[i]);
    *e++ = '"';
    *e = '\0';
}

static void file_done(uv_work_t *req, int status)
{
    struct conn *c = req->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    c->pending_ops--;
    free(c->job.path);
    c->job.path = NULL;
    c->fd = c->job.fd;
    if (c->closing) {
        conn_maybe_free(c); /* closes the fd */
        return;
    }
    if (c->fd < 0) {
        int st = c->job.err == ENOENT || c->job.err == ENOTDIR || c->job.err == EISDIR || c->job.err == ELOOP
                     ? 404
                 : c->job.err == EACCES ? 403
                                        : 500;
        char body[128];
        int n = snprintf(body, sizeof(body), "%d %s: %s\n", st, cdn_http1_reason(st), strerror(c->job.err));
        send_fixed(c, st, body, (size_t)n);
        conn_pump(c);
        return;
    }
    char date[40], lm[40];
    http_date((int64_t)time(NULL), date, sizeof(date));
    http_date(c->job.mtime, lm, sizeof(lm));
    char *hdrs = cdn_xasprintf("Date: %s\r\nETag: %s\r\nLast-Modified: %s\r\n%s", date, c->job.etag, lm,
                               c->extra != NULL ? c->extra : "");
    free(c->extra);
    c->extra = hdrs;
    /* RFC 9110 13.2.2: If-None-Match, else If-Modified-Since */
    bool not_modified = false;
    if (c->inm != NULL) {
        not_modified = inm_matches(c->inm, c->job.etag);
    } else if (c->ims != NULL) {
        int64_t t = parse_http_date(c->ims);
        not_modified = t >= 0 && c->job.mtime <= t;
    }
    if (not_modified) {
        send_head(c, 304, NULL, FR_NONE, 0);
        c->src = SRC_NONE;
        c->resp_done = true;
    } else {
        send_head(c, 200, "application/octet-stream", FR_LENGTH, c->job.size);
        if (c->head_only || c->job.size == 0) {
            c->src = SRC_NONE;
            c->resp_done = true;
        } else {
            c->src = SRC_FILE;
            c->file_off = 0;
            c->file_size = c->job.size;
        }
    }
    if (c->resp_done) {
        close(c->fd);
        c->fd = -1;
    }
    conn_pump(c);
}

static void on_file_read(uv_fs_t *req)
{
    struct conn *c = req->data;
    CDN_CHECK_OBJ(c, CONN_MAGIC);
    c->pending_ops--;
    c->file_reading = false;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    if (c->closing) {
        free(c->read_buf);
        c->read_buf = NULL;
        conn_maybe_free(c);
        return;
    }
    if (n <= 0) { /* the file shrank: the response cannot be completed */
        fprintf(stderr, "origin: reading a file at offset %" PRIu64 ": %s\n", c->file_off,
                n < 0 ? uv_strerror((int)n) : "unexpected end of file");
        free(c->read_buf);
        c->read_buf = NULL;
        conn_close(c);
        return;
    }
    struct wreq *wr = cdn_xcalloc(1, sizeof(*wr));
    wr->heap = c->read_buf;
    c->read_buf = NULL;
    uv_buf_t b = uv_buf_init(wr->heap, (unsigned)n);
    c->file_off += (uint64_t)n;
    send_bufs(c, wr, &b, 1);
    if (!c->closing)
        conn_pump(c);
}

/* Queues the next file piece while the peer keeps up; one read in flight. */
static void file_step(struct conn *c)
{
    if (c->src != SRC_FILE || c->closing || c->file_reading || write_queue(c) >= WQ_HIGH)
        return;
    if (c->file_off >= c->file_size) {
        close(c->fd);
        c->fd = -1;
        c->src = SRC_NONE;
        c->resp_done = true;
        return;
    }
    uint64_t left = c->file_size - c->file_off;
    size_t n = left < PIECE ? (size_t)left : PIECE;
    c->read_buf = cdn_xmalloc(n);
    uv_buf_t b = uv_buf_init(c->read_buf, (unsigned)n);
    c->fs.data = c;
    int rc = uv_fs_read(loop, &c->fs, c->fd, &b, 1, (int64_t)c->file_off, on_file_read);
    if (rc < 0) {
        free(c->read_buf);
        c->read_buf = NULL;
        conn_close(c);
        return;
    }
    c->file_reading = true;
    c->pending_ops++;
}

/* GET/HEAD /files/NAME: NAME must be a plain file name of DIR (no '/', no "..", no leading '.'). */
static void start_file(struct conn *c, const struct cdn_http_request *r, const char *name, size_t n)
{
    bool ok = docroot != NULL && n > 0 && name[0] != '.';
    for (size_t i = 0; ok && i < n; i++)
        ok = name[i] != '/' && name[i] != '\\' && (unsigned char)name[i] > 0x20 && name[i] != 0x7f;
    if (ok && n >= 2 && memmem(name, n, "..", 2) != NULL)
        ok = false;
    if (!ok) {
        send_fixed(c, docroot == NULL ? 404 : 400, docroot == NULL ? "no --docroot\n" : "bad file name\n",
                   docroot == NULL ? 13 : 14);
        return;
    }
    bool get = r->method_len == 3 && memcmp(r->method, "GET", 3) == 0;
    if (!get && !c->head_only) {
        add_query_header(c, "Allow:GET,%20HEAD", 17);
        send_fixed(c, 405, "GET or HEAD\n", 12);
        return;
    }
    c->job = (struct file_job){.path = cdn_xasprintf("%s/%.*s", docroot, (int)n, name), .fd = -1};
    c->work.data = c;
    c->src = SRC_FILE_OPEN;
    CDN_ASSERT(uv_queue_work(loop, &c->work, file_work, file_done) == 0);
    c->pending_ops++;
}

/* /vary: 200, Vary: Accept-Language, body = the request's Accept-Language value (its lines joined
 * with ", ") and "\n", or "(none)\n" without one. */
static void send_vary(struct conn *c, const struct cdn_http_request *r)
{
    char *body = NULL;
    for (size_t i = 0; i < r->num_headers; i++) {
        const struct cdn_http_header *h = &r->headers[i];
        if (!cdn_strieq(h->name, h->name_len, "accept-language"))
            continue;
        char *b = cdn_xasprintf("%s%s%.*s", body != NULL ? body : "", body != NULL ? ", " : "",
                                (int)h->value_len, h->value);
        free(body);
        body = b;
    }
    char *full = cdn_xasprintf("%s\n", body != NULL ? body : "(none)");
    free(body);
    char date[40];
    http_date((int64_t)time(NULL), date, sizeof(date));
    char *hdrs =
        cdn_xasprintf("Date: %s\r\nVary: Accept-Language\r\n%s", date, c->extra != NULL ? c->extra : "");
    free(c->extra);
    c->extra = hdrs;
    if (c->delay_ms > 0) { /* answered by on_slow */
        free(c->slow_body);
        c->slow_body = full;
        c->src = SRC_SLOW;
        uv_timer_start(&c->timer, on_slow, c->delay_ms, 0);
        return;
    }
    send_fixed(c, 200, full, strlen(full));
    free(full);
}

static void route(struct conn *c, const struct cdn_http_request *r, size_t head_len, const char *path,
                  size_t plen)
{
    const char *rest;
    size_t rl;
    uint64_t v;

    if (path_prefix(path, plen, "/bytes/", &rest, &rl)) {
        if (!parse_u64(rest, rl, MAX_BODY_LEN, &v))
            send_fixed(c, 400, "bad length\n", 11);
        else
            start_pattern(c, FR_LENGTH, v);
    } else if (path_prefix(path, plen, "/chunked/", &rest, &rl)) {
        if (!parse_u64(rest, rl, MAX_BODY_LEN, &v))
            send_fixed(c, 400, "bad length\n", 11);
        else
            start_pattern(c, c->http10 ? FR_EOF : FR_CHUNKED, v);
    } else if (path_prefix(path, plen, "/eof/", &rest, &rl)) {
        if (!parse_u64(rest, rl, MAX_BODY_LEN, &v))
            send_fixed(c, 400, "bad length\n", 11);
        else
            start_pattern(c, FR_EOF, v);
    } else if (path_prefix(path, plen, "/files/", &rest, &rl)) {
        start_file(c, r, rest, rl);
    } else if (path_is(path, plen, "/vary")) {
        send_vary(c, r);
    } else if (path_prefix(path, plen, "/status/", &rest, &rl)) {
        if (!parse_u64(rest, rl, 599, &v) || rl != 3 || v < 200) {
            send_fixed(c, 400, "bad status\n", 11);
        } else {
            char body[64];
            int n = snprintf(body, sizeof(body), "%d %s\n", (int)v, cdn_http1_reason((int)v));
            send_fixed(c, (int)v, body, (size_t)n);
        }
    } else if (path_is(path, plen, "/headers")) {
        /* request line + header lines as received, without the empty line */
        size_t start = (size_t)(r->method - c->in);
        send_fixed(c, 200, r->method, head_len - 2 - start);
    } else if (path_is(path, plen, "/echo")) {
        if (r->body_kind == CDN_HTTP_BODY_CHUNKED)
            send_head(c, 200, "application/octet-stream", FR_CHUNKED, 0);
        else
            send_head(c, 200, "application/octet-stream", FR_LENGTH, c->body_left);
        if (c->head_only || c->body_done)
            c->resp_done = true;
        else
            c->src = SRC_ECHO;
    } else if (path_prefix(path, plen, "/slow/", &rest, &rl)) {
        if (!parse_u64(rest, rl, MAX_SLOW_MS, &v)) {
            send_fixed(c, 400, "bad delay\n", 10);
        } else {
            c->src = SRC_SLOW;
            uv_timer_start(&c->timer, on_slow, v, 0);
        }
    } else {
        char *body = cdn_xasprintf("origin: %.*s\n", (int)r->target_len, r->target);
        send_fixed(c, 200, body, strlen(body));
        free(body);
    }
}

static void start_request(struct conn *c, const struct cdn_http_request *r, size_t head_len)
{
    static char continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

    free(c->inm);
    free(c->ims);
    c->inm = c->ims = NULL;
    for (size_t i = 0; i < r->num_headers; i++) {
        const struct cdn_http_header *h = &r->headers[i];
        if (cdn_strieq(h->name, h->name_len, "if-none-match")) {
            char *v = cdn_xasprintf("%s%s%.*s", c->inm != NULL ? c->inm : "", c->inm != NULL ? ", " : "",
                                    (int)h->value_len, h->value);
            free(c->inm);
            c->inm = v;
        } else if (cdn_strieq(h->name, h->name_len, "if-modified-since") && c->ims == NULL) {
            c->ims = cdn_xstrndup(h->value, h->value_len);
        }
    }
    if (log_file != NULL) {
        char *inm = c->inm != NULL ? log_word(c->inm) : NULL, *ims = c->ims != NULL ? log_word(c->ims) : NULL;
        fprintf(log_file, "%.*s %.*s%s%s%s%s%s\n", (int)r->method_len, r->method, (int)r->target_len,
                r->target, inm != NULL ? " inm=" : "", inm != NULL ? inm : "", ims != NULL ? " ims=" : "",
                ims != NULL ? ims : "", inm != NULL || ims != NULL ? " conditional" : "");
        fflush(log_file);
        free(inm);
        free(ims);
    }
    c->active = true;
    c->head_only = r->method_len == 4 && memcmp(r->method, "HEAD", 4) == 0;
    c->http10 = r->minor_version == 0;
    c->close_after = !r->keep_alive;
    c->body_kind = r->body_kind;
    c->body_left = r->body_kind == CDN_HTTP_BODY_LENGTH ? r->content_length : 0;
    c->body_done =
        r->body_kind == CDN_HTTP_BODY_NONE || (r->body_kind == CDN_HTTP_BODY_LENGTH && c->body_left == 0);
    cdn_http1_chunked_init(&c->dec);
    c->src = SRC_NONE;
    c->resp_done = false;
    c->gen_total = c->gen_off = 0;
    c->chunk_idx = 0;

    const char *path = r->path;
    size_t plen = r->path_len;
    const char *q = memchr(path, '?', plen);
    if (q != NULL) {
        parse_query(c, q + 1, plen - (size_t)(q + 1 - path));
        plen = (size_t)(q - path);
    }
    if (r->expect_continue && !c->body_done && !c->http10)
        send_static(c, continue_line, sizeof(continue_line) - 1);
    route(c, r, head_len, path, plen);
}

static void request_reset(struct conn *c)
{
    c->active = false;
    c->src = SRC_NONE;
    free(c->extra);
    c->extra = NULL;
    free(c->inm);
    free(c->ims);
    c->inm = c->ims = NULL;
    free(c->slow_body);
    c->slow_body = NULL;
    c->delay_ms = 0;
}

/* Consumes request body bytes: echoed when the response is the echo, dropped otherwise.
 * Returns false when the connection was given up. */
static bool body_step(struct conn *c)
{
    while (!c->body_done && c->in_len > 0 && !c->closing) {
        bool echo = c->src == SRC_ECHO;
        if (echo && write_queue(c) >= WQ_HIGH)
            return true;
        if (c->body_kind == CDN_HTTP_BODY_LENGTH) {
            size_t n = c->in_len < c->body_left ? c->in_len : (size_t)c->body_left;
            if (echo)
                echo_data(c, c->in, n);
            consume(c, n);
            c->body_left -= n;
            c->body_done = c->body_left == 0;
            continue;
        }
        size_t used = 0, dlen = 0;
        const char *data = NULL;
        int rc = cdn_http1_chunked_decode(&c->dec, c->in, c->in_len, &used, &data, &dlen);
        if (rc == CDN_HTTP_EBAD || (rc < 0 && rc != CDN_HTTP_EAGAIN)) {
            if (c->src == SRC_SLOW)
                send_error(c, 400); /* nothing of the response is out yet */
            else
                conn_close(c);
            return false;
        }
        if (rc == 0 && echo)
            echo_data(c, data, dlen);
        consume(c, used);
        if (rc == 1)
            c->body_done = true;
        if (rc == CDN_HTTP_EAGAIN)
            break;
    }
    if (c->body_done && c->src == SRC_ECHO) {
        if (c->framing == FR_CHUNKED)
            send_static(c, last_chunk, sizeof(last_chunk) - 1);
        c->src = SRC_NONE;
        c->resp_done = true;
    }
    return true;
}

/* Queues pattern pieces while the peer keeps up. */
static void resp_step(struct conn *c)
{
    file_step(c);
    while (c->src == SRC_PATTERN && !c->closing && write_queue(c) < WQ_HIGH) {
        uint64_t left = c->gen_total - c->gen_off;
        if (left == 0) {
            if (c->framing == FR_CHUNKED)
                send_static(c, last_chunk, sizeof(last_chunk) - 1);
            c->src = SRC_NONE;
            c->resp_done = true;
            break;
        }
        size_t n = c->framing == FR_CHUNKED ? chunk_sizes[c->chunk_idx++ % 4] : PIECE;
        if (n > left)
            n = (size_t)left;
        char *p = pattern_buf + c->gen_off % PATTERN_LEN;
        if (c->framing == FR_CHUNKED)
            send_chunk(c, p, n, false);
        else
            send_static(c, p, n);
        c->gen_off += n;
    }
}

/* Drives the connection: parse the next request, move body bytes, produce response bytes, and
 * go on to the next pipelined request once both directions of the current one are done. */
static void conn_pump(struct conn *c)
{
    while (!c->closing && !c->shutting) {
        if (!c->active) {
            if (c->in_len == 0) {
                if (c->peer_eof)
                    conn_shutdown(c);
                break;
            }
            int rc = cdn_http1_parse_request(c->in, c->in_len, &limits, &parsed);
            if (rc == CDN_HTTP_EAGAIN) {
                if (c->peer_eof)
                    conn_shutdown(c);
                else if (c->in_len >= IN_CAP)
                    send_error(c, 431);
                break;
            }
            if (rc < 0) {
                send_error(c, -rc);
                break;
            }
            start_request(c, &parsed, (size_t)rc);
            consume(c, (size_t)rc);
        }
        if (c->closing || !body_step(c))
            break;
        resp_step(c);
        if (c->closing)
            break;
        if (!c->body_done && c->peer_eof && c->in_len == 0) {
            conn_close(c); /* the request body was cut short */
            break;
        }
        if (!c->resp_done)
            break;
        if (c->close_after) {
            conn_shutdown(c);
            break;
        }
        if (!c->body_done)
            break;
        request_reset(c);
    }
    update_reading(c);
}

static void on_connection(uv_stream_t *s, int status)
{
    if (status < 0 || stopping)
        return;
    struct conn *c = cdn_xcalloc(1, sizeof(*c));
    c->magic = CONN_MAGIC;
    uv_tcp_init(loop, &c->tcp);
    uv_timer_init(loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->fd = -1;
    c->next = conns;
    if (conns != NULL)
        conns->prev = c;
    conns = c;
    c->in_size = 16384;
    c->in = cdn_xmalloc(c->in_size);
    if (uv_accept(s, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    update_reading(c);
}

static void on_signal(uv_signal_t *h, int signum)
{
    if (stopping)
        return;
    stopping = true;
    uv_close((uv_handle_t *)&server, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    for (struct conn *c = conns; c != NULL; c = c->next)
        conn_close(c);
}

static int write_ports_file(const char *path, int port)
{
    char *tmp = cdn_xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int rc = -1;
    if (f != NULL) {
        bool ok = fprintf(f, "http %d\n", port) > 0;
        if (fclose(f) == 0 && ok && rename(tmp, path) == 0)
            rc = 0;
    }
    if (rc < 0)
        fprintf(stderr, "origin: %s: %s\n", path, strerror(errno));
    free(tmp);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: origin [--address 127.0.0.1] [--port N] [--ports-file FILE] [--log FILE]\n"
            "              [--docroot DIR]\n"
            "Test origin (plain HTTP/1.1). Body pattern: byte i = \"" PATTERN "\"[i %% 36].\n"
            "  /bytes/N      200, N pattern bytes, Content-Length\n"
            "  /chunked/N    200, N pattern bytes, chunked (chunk sizes 1, 7, 4096, 65536 cycling)\n"
            "  /eof/N        200, N pattern bytes, no length, Connection: close\n"
            "  /status/NNN   that status (200..599), short body (none for 204/304)\n"
            "  /headers      200, body = the request line and header lines as received\n"
            "  /echo         200, body = the request body (Content-Length in, Content-Length out;\n"
            "                chunked in, chunked out)\n"
            "  /slow/MS      200 \"slow\\n\" after MS milliseconds\n"
            "  /files/NAME   GET/HEAD only: the file DIR/NAME of --docroot DIR (a plain name: no '/',\n"
            "                no \"..\", no leading '.'), with Date, ETag: \"<sha256 of the content, hex>\"\n"
            "                and Last-Modified (its mtime); 304 (same headers, no body) when\n"
            "                If-None-Match matches (weak comparison, lists, *) or, without\n"
            "                If-None-Match, when If-Modified-Since >= the mtime; 404 if absent\n"
            "  /vary         200, Vary: Accept-Language, body = the request's Accept-Language and\n"
            "                \"\\n\" (\"(none)\\n\" without one); ?delay=MS answers MS ms late\n"
            "  anything else 200 \"origin: TARGET\\n\"\n"
            "  ?hdr=Name:Value (repeatable, %%XX-decoded, '+' stays '+') adds a response header to any\n"
            "                of them; names must be tokens, values printable.\n"
            "Each request is logged to --log as \"METHOD TARGET\"; a conditional one (If-None-Match or\n"
            "If-Modified-Since) as \"METHOD TARGET [inm=V] [ims=V] conditional\", blanks in V as '_'.\n"
            "--port 0 picks a free port; the ports file then gets \"http PORT\".\n");
}

int main(int argc, char **argv)
{
    const char *address = "127.0.0.1", *ports_file = NULL, *log_path = NULL;
    int port = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        uint64_t p;
        if (strcmp(a, "--address") == 0) {
            address = v;
        } else if (strcmp(a, "--port") == 0 && parse_u64(v, strlen(v), 65535, &p)) {
            port = (int)p;
        } else if (strcmp(a, "--ports-file") == 0) {
            ports_file = v;
        } else if (strcmp(a, "--log") == 0) {
            log_path = v;
        } else if (strcmp(a, "--docroot") == 0) {
            docroot = v;
        } else {
            usage(stderr);
            return 2;
        }
    }

    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof(pattern_buf); i++)
        pattern_buf[i] = PATTERN[i % PATTERN_LEN];
    if (log_path != NULL && (log_file = fopen(log_path, "a")) == NULL) {
        fprintf(stderr, "origin: %s: %s\n", log_path, strerror(errno));
        return 1;
    }

    loop = uv_default_loop();
    struct sockaddr_storage ss;
    int rc = uv_ip4_addr(address, port, (struct sockaddr_in *)&ss);
    if (rc < 0)
        rc = uv_ip6_addr(address, port, (struct sockaddr_in6 *)&ss);
    if (rc < 0) {
        fprintf(stderr, "origin: bad address %s\n", address);
        return 1;
    }
    uv_tcp_init(loop, &server);
    rc = uv_tcp_bind(&server, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, 512, on_connection);
    if (rc < 0) {
        fprintf(stderr, "origin: listen on %s port %d: %s\n", address, port, uv_strerror(rc));
        return 1;
    }
    int namelen = sizeof(ss);
    uv_tcp_getsockname(&server, (struct sockaddr *)&ss, &namelen);
    int bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    if (ports_file != NULL && write_ports_file(ports_file, bound) < 0)
        return 1;
    fprintf(stderr, "origin: listening on %s:%d\n", address, bound);

    uv_run(loop, UV_RUN_DEFAULT);
    rc = uv_loop_close(loop);
    if (log_file != NULL)
        fclose(log_file);
    if (rc != 0) {
        fprintf(stderr, "origin: loop not empty at exit: %s\n", uv_strerror(rc));
        return 1;
    }
    return 0;
}
