/*
 * Active health checks: every `interval` seconds, a GET of the configured
 * path to each target of an upstream on the worker's event loop, with a
 * timeout. A 2xx or 3xx answer is a success. After `healthy` consecutive
 * successes a target is marked up, after `unhealthy` consecutive failures it
 * is marked down (gw_balancer_set_up).
 */
#ifndef GW_HEALTH_H
#define GW_HEALTH_H

#include "gw_balancer.h"

struct ev_loop;
typedef struct gw_health_s gw_health_t;

/* Start checking; returns NULL when conf->active.enabled is false. */
gw_health_t *gw_health_start(struct ev_loop *loop, const gw_upstream_conf_t *conf,
                             gw_balancer_t *b);

/* Stop all checks, close their sockets and free h (NULL is fine). */
void gw_health_stop(gw_health_t *h);

#endif
