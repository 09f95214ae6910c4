/*
 * tunnel: see tunnel.h. The relay is a pure function of the conns' events: no handles, no memory of
 * its own, so the session that drives it needs no extra lifetime rules and the worker's shutdown
 * (which closes every conn) leaves nothing behind.
 */
#include <stddef.h>

#include "lib/tunnel.h"
#include "lib/util.h"

/* Moves src's buffered input to dst until dst is congested; then src waits for dst's DRAIN. */
static void pump(struct cdn_conn *src, struct cdn_conn *dst, uint64_t *count)
{
    while (src->in.len > 0) {
        if (cdn_conn_congested(dst)) {
            cdn_conn_read_stop(src);
            return;
        }
        size_t n = src->in.len;
        cdn_conn_write_direct(dst, cdn_buf_data(&src->in), n);
        cdn_buf_consume(&src->in, n);
        *count += n;
    }
}

/* src finished sending: once its last bytes are queued on dst, half-close dst. */
static void propagate_eof(struct cdn_conn *src, bool src_eof, struct cdn_conn *dst, bool *dst_shut)
{
    if (src_eof && !*dst_shut && src->in.len == 0) {
        *dst_shut = true;
        cdn_conn_shutdown(dst);
    }
}

static enum cdn_tunnel_result step(struct cdn_tunnel *t)
{
    pump(t->a, t->b, &t->a_to_b);
    pump(t->b, t->a, &t->b_to_a);
    propagate_eof(t->a, t->a_eof, t->b, &t->b_shut);
    propagate_eof(t->b, t->b_eof, t->a, &t->a_shut);
    if (t->a_eof && t->b_eof && t->a_shut && t->b_shut)
        return CDN_TUNNEL_DONE;
    cdn_conn_set_timeout(t->a, t->idle_ms);
    return CDN_TUNNEL_GOING;
}

void cdn_tunnel_start(struct cdn_tunnel *t, struct cdn_conn *a, struct cdn_conn *b, uint64_t idle_ms)
{
    *t = (struct cdn_tunnel){.magic = CDN_TUNNEL_MAGIC, .a = a, .b = b, .idle_ms = idle_ms};
    cdn_conn_set_timeout(b, 0);
    cdn_conn_set_timeout(a, idle_ms);
    /* A (re)start of reading delivers READ for bytes already buffered, from a callback rather than from
     * inside this call. A side that is reading already would not: it may hold bytes that came with the
     * answer head (a service that speaks first), and no new read may ever come to deliver them. */
    cdn_conn_read_stop(a);
    cdn_conn_read_stop(b);
    cdn_conn_read_start(a);
    cdn_conn_read_start(b);
}

enum cdn_tunnel_result cdn_tunnel_event(struct cdn_tunnel *t, struct cdn_conn *c, enum cdn_conn_event ev,
                                        int status)
{
    CDN_CHECK_OBJ(t, CDN_TUNNEL_MAGIC);
    CDN_ASSERT(c == t->a || c == t->b);
    struct cdn_conn *other = c == t->a ? t->b : t->a;
    switch (ev) {
    case CDN_CONN_EV_OPEN:
        return CDN_TUNNEL_GOING; /* both were open already */
    case CDN_CONN_EV_READ:
        return step(t);
    case CDN_CONN_EV_DRAIN:
        /* c can take more: let the side feeding it read again (delivers its buffered bytes too) */
        if (!(other == t->a ? t->a_eof : t->b_eof))
            cdn_conn_read_start(other);
        return step(t);
    case CDN_CONN_EV_EOF:
        if (status != 0)
            t->truncated = true;
        if (c == t->a)
            t->a_eof = true;
        else
            t->b_eof = true;
        return step(t);
    case CDN_CONN_EV_ERROR:
        t->why = c->err[0] != '\0' ? c->err : "I/O error";
        return CDN_TUNNEL_FAILED;
    case CDN_CONN_EV_TIMEOUT:
        t->why = "idle timeout";
        return CDN_TUNNEL_IDLE;
    }
    return CDN_TUNNEL_FAILED;
}
