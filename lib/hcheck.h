/*
 * hcheck: active health checks of upstream groups (upstream_groups[].health.check_path). Every
 * check_interval each parent of such a group gets "GET check_path" over the group's TLS profile (the
 * same mTLS as requests; Host and SNI = the TLS name requests use); a 2xx answer within check_timeout
 * is a success, anything else a failure, reported through lib/ugroup (lib/health.h), so active and
 * passive evidence share one state: a parent that fails fail_threshold checks in a row is taken out
 * (requests that succeed meanwhile do not reset the checks' streak), and stays out while its checks
 * keep failing; one that passes a check while out is put back.
 *
 * Runs on the main thread's loop (lib/server.c), one set per generation: a reload stops the old set
 * and starts one for the new generation (whose health starts afresh).
 */
#ifndef CDN_HCHECK_H
#define CDN_HCHECK_H

#include <uv.h>

#include "lib/gen.h"

struct cdn_hcheck;

/* Starts the checks of every group of gen that has a check_path, on loop; takes a reference on gen.
 * NULL when there is none to run. */
struct cdn_hcheck *cdn_hcheck_start(uv_loop_t *loop, struct cdn_gen *gen);
/* Stops the checks (a check in flight is dropped without a verdict). Memory and the gen reference
 * are released from close callbacks: the loop must run afterwards. *h becomes NULL; NULL is fine. */
void cdn_hcheck_stop(struct cdn_hcheck **h);

#endif
