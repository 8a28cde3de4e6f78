/*
 * The status listener: a small HTTP/1.1 server on the master's event loop.
 *
 *   GET /health   200 {"status":"ok"}
 *   GET /ready    200 {"status":"ready"}, or 503 {"status":"starting"}
 *   GET /metrics  200 Prometheus text format 0.0.4 (gw_metrics_render)
 *   other paths   404 {"error":"not found"}
 *   other methods 405 {"error":"method not allowed"}, then close
 *
 * A query string is ignored. Keep-alive and pipelining are supported, one
 * response at a time (no new request is parsed while a response is being
 * written). A request with a body, a malformed request (400) or a head over
 * GW_STATUS_HEAD_MAX bytes (431) is answered and the connection closed. A
 * connection that spends more than the timeout (10 s by default) idle,
 * sending one request head or reading one response is closed.
 */
#ifndef GW_STATUS_H
#define GW_STATUS_H

#include "gw_core.h"

#define GW_STATUS_HEAD_MAX  8192
#define GW_STATUS_TIMEOUT   10.0
#define GW_STATUS_MAX_CONNS 256 /* more are accepted and closed at once */

struct ev_loop;
typedef struct gw_status_s gw_status_t;

/* Whether the gateway is ready to serve (e.g. all workers are up). */
typedef bool (*gw_status_ready_fn)(void *ud);

/*
 * Serve on listen_fd (bound, listening, non-blocking; still owned by the
 * caller). ready may be NULL: always ready. Returns NULL when listen_fd < 0.
 */
gw_status_t *gw_status_start(struct ev_loop *loop, int listen_fd, gw_status_ready_fn ready,
                             void *ud);

/* The per-connection timeout for phases that start from now on. */
void gw_status_set_timeout(gw_status_t *s, double seconds);

/* Stop the watchers, close client connections (not listen_fd), free s. */
void gw_status_stop(gw_status_t *s);

#endif
