/*
 * Load balancing over an upstream's targets, per worker: smooth weighted
 * round robin (as nginx), least connections, consistent hashing (ketama-like
 * ring, stable when a target is added or removed) and EWMA latency
 * (peak-EWMA with power of two choices). Also keeps each target's health:
 * passive (down for `down_for` seconds after `failures` consecutive
 * failures) and active (set by gw_health). A target that is down is never
 * picked while another target is up; when all are down, the balancer still
 * picks one (fail open), as nginx does.
 */
#ifndef GW_BALANCER_H
#define GW_BALANCER_H

#include "gw_config.h"

typedef struct gw_balancer_s gw_balancer_t;

/* Create the balancer for conf (which must outlive it). Never NULL. */
gw_balancer_t *gw_balancer_new(const gw_upstream_conf_t *conf);

void gw_balancer_free(gw_balancer_t *b);

/*
 * Pick a target index. `key` is the hash key (used by the hash policy only:
 * the header or cookie value, or the client address; an empty key falls
 * back to round robin). `tried` is a bitmap of targets already tried for
 * this request (bit i set = skip target i unless nothing else is left), or
 * 0. `now` is gw_now(). Returns an index, or -1 when there are no targets.
 */
int gw_balancer_pick(gw_balancer_t *b, gw_str_t key, uint64_t tried, double now);

/* A connection (request) to target i starts / ends: least_conn bookkeeping. */
void gw_balancer_acquire(gw_balancer_t *b, int i);
void gw_balancer_release(gw_balancer_t *b, int i);

/* Record the outcome of a request to target i; latency in seconds (ewma). */
void gw_balancer_report(gw_balancer_t *b, int i, bool ok, double latency, double now);

/* Active health result: mark target i up or down. */
void gw_balancer_set_up(gw_balancer_t *b, int i, bool up);

/* Whether target i can be picked now (not passively or actively down). */
bool gw_balancer_is_up(const gw_balancer_t *b, int i, double now);

size_t gw_balancer_ntargets(const gw_balancer_t *b);

#endif
