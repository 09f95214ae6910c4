/*
 * proxy: the request path. A session is one downstream connection: it reads request heads,
 * finds the remap rule, opens the upstream connection, and streams the request body up and the
 * response body down with backpressure in both directions. See docs/ARCHITECTURE.md.
 */
#ifndef CDN_PROXY_H
#define CDN_PROXY_H

#include <stdint.h>

#include <uv.h>

#include "lib/server.h"

/* Called by the worker for each connection ready on listener li of gen; the session takes over the
 * caller's reference to gen. */
void cdn_proxy_accept(struct cdn_worker *w, struct cdn_gen *gen, size_t li, uv_stream_t *listener);
/* The worker starts draining (w->draining and w->stopping are set): ends every session that has no
 * request in progress (idle keep-alive, still handshaking, waiting for a first request) at once. The
 * others end after their response (keep-alive is off); when the last one is gone the proxy calls
 * cdn_server_worker_drained. Returns the number of sessions left in flight. */
size_t cdn_proxy_drain(struct cdn_worker *w);
/* Frees the buffers of sessions idle (keep-alive, or waiting for a first request) for idle_ms or
 * more, once per idle period: busy connections keep theirs, idle ones cost little (lib/conn.h). */
size_t cdn_proxy_trim_idle(struct cdn_worker *w, uint64_t idle_ms); /* how many it trimmed */
/* Closes every session and connection of the worker (it is stopping). */
void cdn_proxy_shutdown(struct cdn_worker *w);

#endif
