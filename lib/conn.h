/*
 * conn: one TCP connection, plain or TLS (OpenSSL over memory BIOs), client or server side.
 * Presents plaintext to its owner: bytes read are in c->in; bytes written are queued in order
 * with exactly one uv_write in flight. The owner drives it through events delivered only from
 * libuv callbacks (never re-entrantly from an API call), and ends it with cdn_conn_end (flush,
 * close_notify, FIN, short linger) or cdn_conn_close (now). After either, the owner gets no more
 * events and must drop its pointer; the conn frees itself once libuv is done with it.
 */
#ifndef CDN_CONN_H
#define CDN_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "lib/buf.h"

#define CDN_CONN_MAGIC      0x636f6e6eu
#define CDN_CONN_HIGH_WATER (256u * 1024u) /* queued output above this: the producer pauses */
#define CDN_CONN_LOW_WATER  (64u * 1024u)  /* ...and resumes (DRAIN event) below this */

enum cdn_conn_event {
    CDN_CONN_EV_OPEN,    /* TLS handshake done (server), or connected + handshake done (client) */
    CDN_CONN_EV_READ,    /* new plaintext in c->in (may also repeat old data after read_start) */
    CDN_CONN_EV_DRAIN,   /* output dropped below the low-water mark after cdn_conn_congested() */
    CDN_CONN_EV_EOF,     /* peer finished sending; status 0 = clean, else CDN_ECLOSED (no close_notify) */
    CDN_CONN_EV_ERROR,   /* I/O, connect, resolve or TLS failure; status says which */
    CDN_CONN_EV_TIMEOUT, /* the timer set with cdn_conn_set_timeout fired */
};

struct cdn_conn;
typedef void cdn_conn_cb(struct cdn_conn *c, enum cdn_conn_event ev, int status);

struct cdn_conn {
    uint32_t magic;
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_timer_t timer; /* owner's deadline; also the linger cap while ending */
    uv_timer_t kick;  /* zero-delay: delivers READ for buffered data after read_start */
    uv_write_t wreq;
    uv_shutdown_t sreq;
    struct cdn_conn_dial *dial; /* client side only: the connect and resolve requests */
    unsigned open_handles;
    unsigned trim_wbuf : 1; /* free wbuf when the write in flight completes (cdn_conn_trim) */
    unsigned is_client : 1, reading : 1, writing : 1, closing : 1, ending : 1, eof : 1, tls_done : 1,
        want_drain : 1, resolving : 1, connected : 1, shut_sent : 1, sock_eof : 1, tls_eof : 1, sink : 1,
        wshut : 1,
        uv_rd : 1,    /* libuv is reading the socket; may stay on while !reading (see cdn_conn_read_stop) */
        tls : 1,      /* a TLS connection (OpenSSL's record layer, or trec after the takeover) */
        takeover : 1; /* the owner allowed cdn_conn_allow_takeover; cleared once tried */
    int deferred_err;
    uint64_t deadline, timer_due; /* cdn_conn_set_timeout: when it expires (0: none), when c->timer fires */
    int paused_err;               /* a socket error met while paused, reported once reading resumes */
    SSL *ssl;                     /* NULL for plain TCP, and after the takeover */
    BIO *rbio, *wbio;
    struct cdn_trec *trec; /* TLS 1.3 record layer after the takeover (lib/trec) */
    struct cdn_buf rx;     /* trec: ciphertext received, not yet opened */
    SSL_CTX *accept_ctx;   /* server: the listener's context (held once the SSL is freed) */
    char *tls_sni;         /* trec: the server name the client sent, or NULL */
    struct cdn_buf in;     /* plaintext received, owner consumes */
    struct cdn_buf out;    /* bytes queued behind the write in flight */
    struct cdn_buf wbuf;   /* bytes of the write in flight */
    struct cdn_buf plain;  /* TLS plaintext gathered while corked */
    unsigned corked;
    size_t in_cap; /* c->in never grows past this; owner must consume or stop reading */
    cdn_conn_cb *cb;
    void *data;
    uint64_t id;
    char peer[64];             /* "ip:port" */
    char err[256];             /* last TLS/connect failure, for logs */
    long tls_verify;           /* handshake failure: SSL_get_verify_result */
    unsigned long tls_errcode; /* handshake failure: first OpenSSL error */
    char *connect_host;        /* client: what was resolved */
    uint16_t connect_port;
    uint64_t bytes_in, bytes_out; /* plaintext */
    struct cdn_conn *prev, *next; /* this thread's live conns */
};

/* Server side: accepts a pending connection from listener. ctx NULL = plain. Reading starts at once;
 * TLS connections deliver OPEN after the handshake, plain ones deliver READ directly. */
struct cdn_conn *cdn_conn_accept(uv_stream_t *listener, SSL_CTX *ctx, size_t in_cap, cdn_conn_cb *cb,
                                 void *data, int *err);

/* Client side: resolves host (literal or name, without blocking), connects to port, runs the TLS
 * handshake when ctx is set (SNI and verification against tls_name), then delivers OPEN or ERROR.
 * The owner should set a timeout covering the whole sequence. */
struct cdn_conn *cdn_conn_connect(uv_loop_t *loop, const char *host, uint16_t port, SSL_CTX *ctx,
                                  const char *tls_name, bool verify, size_t in_cap, cdn_conn_cb *cb,
                                  void *data);

void cdn_conn_write(struct cdn_conn *c, const void *p, size_t n);
/* Between cork and uncork (nestable), writes are gathered: plain writes leave in one uv_write, TLS
 * writes become as few records as possible. The proxy corks around each event it handles. */
void cdn_conn_cork(struct cdn_conn *c);
void cdn_conn_uncork(struct cdn_conn *c);
/* Like cdn_conn_write, but on a TLS conn the bytes are encrypted straight from p (never gathered
 * into a heap buffer, even when corked): for bodies served from the cache's memory map. */
void cdn_conn_write_direct(struct cdn_conn *c, const void *p, size_t n);
/* Bytes queued or in flight. */
size_t cdn_conn_pending(const struct cdn_conn *c);
/* True when pending is above the high-water mark; then a DRAIN event follows once below low water. */
bool cdn_conn_congested(struct cdn_conn *c);
void cdn_conn_read_start(struct cdn_conn *c);
void cdn_conn_read_stop(struct cdn_conn *c);
/* (Re)arms the owner's timer; 0 disarms it. */
void cdn_conn_set_timeout(struct cdn_conn *c, uint64_t ms);
void cdn_conn_end(struct cdn_conn *c);
void cdn_conn_close(struct cdn_conn *c);
/* Half-close (tunnels): once the queued bytes are out, sends TLS close_notify (when TLS) and a TCP
 * FIN; reading and events go on, later writes are dropped. The owner still ends the conn with
 * cdn_conn_end or cdn_conn_close; an end after both directions finished closes at once. */
void cdn_conn_shutdown(struct cdn_conn *c);

/* A conn with no socket that swallows what is written to it and never reads: the "client" of a
 * background fetch (stale-while-revalidate), so the request path needs no special case. */
struct cdn_conn *cdn_conn_sink(uv_loop_t *loop, cdn_conn_cb *cb, void *data);

/* Frees the buffers of an idle conn (nothing buffered either way): an idle keep-alive connection
 * then costs its structs and OpenSSL's SSL object only. They come back on the next read or write. */
void cdn_conn_trim(struct cdn_conn *c);

/* Closes every conn of the calling thread's loop (worker shutdown). */
void cdn_conn_close_all(void);

/* TLS details for logs (NULL when plain or not negotiated). */
const char *cdn_conn_tls_version(const struct cdn_conn *c);
const char *cdn_conn_sni(const struct cdn_conn *c);

/*
 * Server side, from the OPEN event, when the owner will not need c->ssl again (no client
 * certificate to report, no log-only verdict): at the first read, write or trim that follows, a TLS
 * 1.3 connection moves its application data to our own record layer (lib/trec) and frees OpenSSL's
 * state, about 14 KiB of the 16 an idle connection would keep. c->ssl is NULL from then on;
 * cdn_conn_tls_version and cdn_conn_sni keep answering, and the listener's SSL_CTX stays alive as
 * long as the conn (owners may hold pointers into its ex_data, such as the SNI rule). TLS 1.2, a
 * cipher suite lib/trec does not know, or secrets that were not captured leave OpenSSL in charge.
 */
void cdn_conn_allow_takeover(struct cdn_conn *c);

#endif
