/*
 * alog: the access log line format (log.access_format), compiled once at config load and rendered per
 * request. A format is text with variables, nginx style: "$name" or "${name}" (for a name followed by
 * letters, "${duration_ms}ms"); "$$" is a dollar sign. Unknown variables are refused when the format
 * is compiled. A value that is absent renders as "-"; bytes outside printable ASCII, '"' and '\' are
 * written as \xHH, so a field can never forge another field or a line (nginx's escape=default).
 */
#ifndef CDN_ALOG_H
#define CDN_ALOG_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

#define CDN_ALOG_VARS(X)                                                                                    \
    X(peer, "client address:port")                                                                          \
    X(conn, "connection id (also in error log lines)")                                                      \
    X(sni, "server name the client sent in its TLS ClientHello")                                            \
    X(tls, "TLS version of the client connection")                                                          \
    X(method, "request method")                                                                             \
    X(host, "Host header")                                                                                  \
    X(path, "request target (path and query) as received")                                                  \
    X(protocol, "HTTP/1.1 or HTTP/1.0")                                                                     \
    X(status, "response status")                                                                            \
    X(bytes, "response body bytes sent")                                                                    \
    X(duration_ms, "milliseconds from the request's first byte to its last response byte")                  \
    X(cache, "cache outcome: hit, stale, revalidated, collapsed, miss, uncacheable or - (no cache)")        \
    X(upstream, "host:port the request was forwarded to, - when answered here")                             \
    X(client_subject, "subject of the verified client certificate (RFC 2253)")                              \
    X(client_fingerprint, "SHA-256 of the client certificate (hex)")                                        \
    X(client_cert_status, "SUCCESS, NONE, or FAILED:reason (a log_only rule let a refused client through)") \
    X(generation, "configuration generation the connection was accepted under")                             \
    X(user_agent, "User-Agent header")                                                                      \
    X(referer, "Referer header")

enum cdn_alog_var {
#define X(name, doc) CDN_ALOG_##name,
    CDN_ALOG_VARS(X)
#undef X
        CDN_ALOG_NVARS
};

/* The default format: every field the operations guide promises. */
#define CDN_ALOG_DEFAULT                                                                                  \
    "$peer \"$method $path $protocol\" $status $bytes ${duration_ms}ms cache=$cache host=$host sni=$sni " \
    "tls=$tls up=$upstream client=\"$client_subject\" client_sha256=$client_fingerprint "                 \
    "cert=$client_cert_status"

struct cdn_alog;

/* Compiles fmt. 0 + *out, or -1 + *err (heap) naming the unknown variable or the bad syntax. */
int cdn_alog_compile(const char *fmt, struct cdn_alog **out, char **err);
void cdn_alog_free(struct cdn_alog **a);

/* Appends the line (no newline) to out. v[i] (length len[i], or strlen when len[i] is SIZE_MAX) is
 * the value of variable i; NULL = absent. */
void cdn_alog_render(const struct cdn_alog *a, const char *const v[CDN_ALOG_NVARS],
                     const size_t len[CDN_ALOG_NVARS], struct cdn_buf *out);

/* Whether the format refers to variable i (skip computing what it does not show). */
bool cdn_alog_uses(const struct cdn_alog *a, enum cdn_alog_var i);

/* Name and description of variable i (for docs and tests). */
const char *cdn_alog_var_name(enum cdn_alog_var i);
const char *cdn_alog_var_doc(enum cdn_alog_var i);

#endif
