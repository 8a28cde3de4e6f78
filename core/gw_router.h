/*
 * The router: compiled once per config generation, off the request path,
 * then matched per request without allocating.
 *
 * Precedence ("most specific wins"), compared in this order:
 *   1. host: exact host > wildcard (longer suffix first) > route without hosts
 *   2. path: exact ("=") > regex ("~", in config order) > longest prefix
 *      > route without paths
 *   3. a route with methods, then one with header matches, beats one without
 *   4. earlier in the config wins a remaining tie
 * A prefix "/users" matches "/users", "/users/" and "/users/x", never "/usersx".
 */
#ifndef GW_ROUTER_H
#define GW_ROUTER_H

#include "gw_config.h"

typedef struct gw_router_s gw_router_t;

/* Returns the value of a request header (first occurrence), or false. */
typedef bool (*gw_header_lookup_fn)(void *ud, gw_str_t name, gw_str_t *value);

typedef struct {
    gw_str_t method; /* e.g. "GET" */
    gw_str_t host;   /* Host header without port; any case */
    gw_str_t path;   /* normalised path (gw_path_normalize), no query */
    gw_header_lookup_fn header;
    void *header_ud;
} gw_route_query_t;

typedef struct {
    const gw_route_conf_t *route;
    size_t strip_len; /* bytes of path to strip when route->strip_path */
} gw_route_match_t;

/*
 * Compile the routes of cfg (which must outlive the router). Returns NULL
 * and writes a message naming the route to err on failure (bad regex).
 */
gw_router_t *gw_router_build(const gw_config_t *cfg, char *err, size_t errlen);

void gw_router_free(gw_router_t *r);

/* Find the best route for q. Returns GW_OK and fills m, or GW_DECLINED. */
int gw_router_match(const gw_router_t *r, const gw_route_query_t *q, gw_route_match_t *m);

#endif
