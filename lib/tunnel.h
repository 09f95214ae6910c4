/*
 * tunnel: the byte relay behind a CONNECT, between two open conns (a = the client's side, b = the
 * peer's or the service's side). It owns neither conn: the owner keeps receiving both conns' events
 * and hands each to cdn_tunnel_event, which moves bytes and says when the tunnel is over.
 *
 * Backpressure: a side's bytes are written to the other side only while that side is not congested;
 * otherwise the source stops reading until the sink's DRAIN, so a tunnel holds at most about
 * in_cap + CDN_CONN_HIGH_WATER bytes per direction whatever the speeds. Half-close: EOF on one side
 * becomes cdn_conn_shutdown on the other (close_notify + FIN) once its bytes are out, and the other
 * direction keeps flowing. Idle: a's timer is re-armed on every event of either side.
 */
#ifndef CDN_TUNNEL_H
#define CDN_TUNNEL_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/conn.h"

#define CDN_TUNNEL_MAGIC 0x74756e6eu

enum cdn_tunnel_result {
    CDN_TUNNEL_GOING = 0, /* keep feeding events */
    CDN_TUNNEL_DONE,      /* both sides sent EOF and were shut down: end both conns gracefully */
    CDN_TUNNEL_FAILED,    /* an I/O or TLS error on one side: close both */
    CDN_TUNNEL_IDLE,      /* no byte either way for idle_ms: close both */
};

struct cdn_tunnel {
    uint32_t magic;
    struct cdn_conn *a, *b; /* borrowed; valid until the owner ends or closes them */
    uint64_t idle_ms;
    uint64_t a_to_b, b_to_a; /* bytes relayed so far ("up" and "down" seen from the client) */
    bool a_eof, b_eof;       /* that side finished sending */
    bool a_shut, b_shut;     /* that side's write half was shut down */
    bool truncated;          /* a TLS side ended without close_notify */
    const char *why;         /* FAILED: what happened, for the log (points at the conn's err or a literal) */
};

/* Starts relaying: both conns must be open (after OPEN). Bytes already buffered in either conn's
 * input are relayed first (a pipelined request, or a server that speaks first). Arms a's timer. */
void cdn_tunnel_start(struct cdn_tunnel *t, struct cdn_conn *a, struct cdn_conn *b, uint64_t idle_ms);

/* Feeds one event of a or b. Never calls back; returns what the owner must do next. */
enum cdn_tunnel_result cdn_tunnel_event(struct cdn_tunnel *t, struct cdn_conn *c, enum cdn_conn_event ev,
                                        int status);

#endif
