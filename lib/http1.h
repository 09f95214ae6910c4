/*
 * http1: strict, incremental HTTP/1.1 message head parser and chunked decoder (RFC 9110/9112).
 * Pure code: no I/O, no allocation. Parsed fields point into the caller's buffer and stay valid
 * only as long as that buffer is unchanged. Parsing is restartable: call again with more bytes
 * (the whole head so far, from its first byte) until it stops returning CDN_HTTP_EAGAIN.
 */
#ifndef CDN_HTTP1_H
#define CDN_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Return codes: >0 = length of the complete head (through the empty line); the rest are <=0.
 * The error codes are minus the HTTP status a server should answer with (then close). */
#define CDN_HTTP_EAGAIN   (-1)   /* head incomplete: read more */
#define CDN_HTTP_EBAD     (-400) /* malformed */
#define CDN_HTTP_ETOOLONG (-414) /* request line longer than the head limit allows */
#define CDN_HTTP_ETOOBIG  (-431) /* head larger than max_head_size, or more than max_headers */
#define CDN_HTTP_ENOTIMPL (-501) /* transfer coding other than chunked */
#define CDN_HTTP_EVERSION (-505) /* HTTP version other than 1.0/1.1 */

#define CDN_HTTP_MAX_HEADERS 256 /* hard cap on the array; limits.max_headers may be lower */

struct cdn_http_limits {
    size_t max_head_size; /* whole head incl. request/status line; default 32768 */
    size_t max_headers;   /* default 100, never above CDN_HTTP_MAX_HEADERS */
};

struct cdn_http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading/trailing OWS stripped */
    size_t value_len;
    bool hop_by_hop; /* standard hop-by-hop header, or named in a Connection header */
};

enum cdn_http_body_kind {
    CDN_HTTP_BODY_NONE,    /* no body (no CL/TE on a request; HEAD/1xx/204/304 responses) */
    CDN_HTTP_BODY_LENGTH,  /* content_length bytes */
    CDN_HTTP_BODY_CHUNKED, /* chunked transfer coding */
    CDN_HTTP_BODY_EOF,     /* responses only: body runs until the connection closes */
};

struct cdn_http_request {
    const char *method;
    size_t method_len;
    const char *target; /* request-target as sent */
    size_t target_len;
    const char
        *path; /* origin-form path[?query]; for absolute-form the part after the authority ("/" if empty) */
    size_t path_len;
    const char *host; /* Host header value, or the authority of an absolute-form target (RFC 9112 3.2.2) */
    size_t host_len;
    int minor_version; /* 0 or 1 */
    struct cdn_http_header headers[CDN_HTTP_MAX_HEADERS];
    size_t num_headers;
    enum cdn_http_body_kind body_kind; /* NONE, LENGTH or CHUNKED */
    uint64_t content_length;
    bool keep_alive;      /* by version and Connection: close/keep-alive */
    bool expect_continue; /* Expect: 100-continue */
};

struct cdn_http_response {
    int minor_version;
    int status;
    const char *reason;
    size_t reason_len;
    struct cdn_http_header headers[CDN_HTTP_MAX_HEADERS];
    size_t num_headers;
    enum cdn_http_body_kind body_kind;
    uint64_t content_length;
    bool keep_alive;
};

/* Parses a request head from buf[0..len). Returns the head length, CDN_HTTP_EAGAIN, or an error.
 * Rejects (RFC 9112 sec. 2-7, 11): bare CR or bare LF line endings, obs-fold, whitespace before the colon,
 * non-token methods and header names, CTL/NUL in target or values, missing or repeated Host on 1.1,
 * differing Content-Length values, Content-Length with anything but digits, CL together with TE,
 * TE on HTTP/1.0, chunked not last (400) and codings other than chunked (501). Leading empty lines
 * before the request line are skipped (RFC 9112 2.2). */
int cdn_http1_parse_request(const char *buf, size_t len, const struct cdn_http_limits *lim,
                            struct cdn_http_request *req);

/* Parses a response head. is_head_request: the response answers HEAD (then body_kind is NONE).
 * 1xx, 204 and 304 have no body; otherwise TE chunked, else Content-Length, else EOF. */
int cdn_http1_parse_response(const char *buf, size_t len, const struct cdn_http_limits *lim,
                             bool is_head_request, struct cdn_http_response *res);

/* First header with that name (case-insensitive), or NULL. */
const struct cdn_http_header *cdn_http1_find_header(const struct cdn_http_header *h, size_t n,
                                                    const char *name);

/* Chunked decoder: a state machine that yields data runs pointing into the input, never copying. */
struct cdn_http_chunked {
    int state;
    uint64_t remaining;  /* bytes left in the current chunk */
    size_t line_len;     /* bytes of the current size/extension or trailer line */
    size_t trailer_size; /* total trailer bytes so far */
    size_t max_line;     /* limit for a size/extension or trailer line; default 4096 */
    size_t max_trailer;  /* limit for all trailers; default 32768 */
};

void cdn_http1_chunked_init(struct cdn_http_chunked *d);

/* Decodes buf[0..len). Sets *consumed to the bytes used. Returns:
 *  0: a data run was found: *data and *data_len point into buf (data_len > 0); call again with buf+*consumed;
 *  CDN_HTTP_EAGAIN: all input used, need more;
 *  1: the message ended (last-chunk and trailers, discarded); bytes past *consumed belong to the next
 * message; CDN_HTTP_EBAD: malformed (bad hex, size overflow, missing CRLF, bare LF, line too long). */
int cdn_http1_chunked_decode(struct cdn_http_chunked *d, const char *buf, size_t len, size_t *consumed,
                             const char **data, size_t *data_len);

/* Reason phrase for a status code ("OK", "Bad Gateway", ...); "Unknown" if none. */
const char *cdn_http1_reason(int status);

/* Byte classes of header syntax (lib/http1.c): header names are checked byte by byte. */
#define CDN_HTTP1_TCHAR 1 /* tchar, RFC 9110 5.6.2 */
#define CDN_HTTP1_FIELD 2 /* field-vchar, SP, HTAB */
extern const unsigned char cdn_http1_class[256];
static inline bool cdn_http1_is_tchar(unsigned char c)
{
    return (cdn_http1_class[c] & CDN_HTTP1_TCHAR) != 0;
}

#endif
