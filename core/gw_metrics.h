/*
 * Prometheus metrics in shared memory. The master maps one region before
 * forking; each worker owns one area of it and writes its counters and
 * gauges there with plain stores (one writer per area, no locks, no
 * atomics). The master sums the areas when it renders the text exposition
 * format 0.0.4.
 *
 * Route and upstream names get slots in a name table that is also in
 * shared memory. A name keeps its slot for the life of the master, so
 * counters continue across reloads; series of names that left the config
 * keep being reported with their last values. Names that do not fit
 * (more than GW_METRICS_MAX_ROUTES / GW_METRICS_MAX_UPSTREAMS, or longer
 * than GW_METRICS_NAME_MAX - 1 bytes) share the "other" slot, reported with
 * the label value "other"; a route or upstream literally named "other" is
 * counted in that slot too.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include "gw_config.h"

#define GW_METRICS_MAX_ROUTES    256
#define GW_METRICS_MAX_UPSTREAMS 128
#define GW_METRICS_NAME_MAX      256

/* The shared slots for names that did not get their own. */
#define GW_METRICS_ROUTE_OTHER    GW_METRICS_MAX_ROUTES
#define GW_METRICS_UPSTREAM_OTHER GW_METRICS_MAX_UPSTREAMS

/* route_slot for a request that matched no route: label route="". */
#define GW_METRICS_NO_ROUTE (-1)

/* Master, once, before any fork: map the region. GW_OK or GW_ERROR. */
int gw_metrics_init(int max_workers);

/* Master, at exit: unmap the region (workers keep their own mapping). */
void gw_metrics_free(void);

/*
 * Master, at every (re)load, before forking the workers of that config:
 * give every route and upstream name of cfg a slot. Names already known
 * keep theirs.
 */
void gw_metrics_register(const gw_config_t *cfg);

/*
 * Any process: the slot of a registered name, else the "other" slot.
 * A linear scan: resolve once per config generation, not per request.
 */
int gw_metrics_route_slot(const char *name);
int gw_metrics_upstream_slot(const char *name);

/*
 * Worker, right after fork: select area worker_index (0..max_workers-1).
 * Counters of the area are cumulative and keep the counts of a previous
 * worker with that index; its gauges are reset to 0. An index out of range
 * turns the hot-path calls below into no-ops.
 */
void gw_metrics_set_worker(int worker_index);

/* Master, when a worker died: reset the gauges of its area to 0. */
void gw_metrics_reset_gauges(int worker_index);

/* Master: the value of the moongate_workers gauge. */
void gw_metrics_set_workers(int n);

/*
 * Hot path, in a worker after gw_metrics_set_worker: plain increments, no
 * allocation. Out-of-range slots count in the "other" slot; a status
 * outside 100..599 and a NaN latency are ignored.
 */
void gw_metrics_request(int route_slot, int status);
void gw_metrics_upstream_latency(int upstream_slot, double seconds);
void gw_metrics_active_connections(int delta);
void gw_metrics_open_tunnels(int delta);
void gw_metrics_idle_connections(int upstream_slot, int delta);

/*
 * Master: render every series into a malloc'd, NUL-terminated buffer that
 * the caller frees. Returns its length (without the NUL).
 */
size_t gw_metrics_render(char **out);

#endif
