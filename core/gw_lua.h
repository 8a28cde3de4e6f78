/*
 * The Lua runtime of a worker: one LuaJIT VM, the plugins of the config
 * loaded into it, and the phases of a request run in coroutines resumed
 * from the event loop. A PDK call that waits (moongate.sleep, ...) yields;
 * its completion resumes the coroutine. A route without plugins never
 * enters Lua.
 *
 * Phases, in order: access (each plugin's rewrite, then each plugin's
 * access), header_filter (the upstream response head, before it is sent),
 * body_filter (each piece of the response body on its way to the client),
 * log (after the response was sent; it never delays the client).
 */
#ifndef GW_LUA_H
#define GW_LUA_H

#include "gw_worker.h"

enum {
    GW_LUA_ACCESS = 1,        /* rewrite + access */
    GW_LUA_HEADER_FILTER = 2, /* response head */
    GW_LUA_BODY_FILTER = 4,   /* a piece of the response body */
    GW_LUA_LOG = 8,           /* after the response */
    GW_LUA_TIMER = 16,        /* a moongate.timer callback, outside any request */
};

/*
 * Start the runtime of a worker for w->cfg: create the VM, load the
 * plugins and validate their settings. GW_OK, or GW_ERROR with a message.
 */
int gw_lua_init(gw_worker_t *w, char *err, size_t errlen);

void gw_lua_close(gw_worker_t *w);

/* The phases (GW_LUA_* bits) that have plugins on a route. */
int gw_lua_route_phases(const gw_worker_t *w, int route_index);

/*
 * Run `phase` of request r. Returns GW_OK when the phase completed and the
 * request goes on, GW_AGAIN when it waits (gw_lua continues it later, then
 * calls gw_conn_access_done / gw_proxy_header_filter_done /
 * gw_conn_task_done), or GW_DONE when the request was answered here
 * (moongate.response.exit, or a 500 after a plugin error).
 */
int gw_lua_run(gw_req_t *r, int phase);

/* The coroutine of r waited and can go on, with nvalues on its stack
 * (called by the PDK from an event-loop callback). */
void gw_lua_wakeup(gw_req_t *r, int nvalues);

/* The request whose coroutine is running, for the PDK. */
extern gw_req_t *gw_lua_current;

/*
 * Timers (moongate.timer): schedule the Lua timer `id` after `delay`
 * seconds, then every `interval` seconds when interval > 0. Each firing
 * runs runtime.run_timer(id) in a new coroutine, skipped while the previous
 * run of the same timer still waits. GW_OK or GW_ERROR (no worker).
 */
int gw_lua_timer_start(int id, double delay, double interval);
void gw_lua_timer_cancel(int id);
/* Stop every timer (worker shutdown); runs in progress finish. */
void gw_lua_timers_stop(gw_worker_t *w);

/* Release the request's Lua state: cancel a wait, drop its coroutine. */
void gw_lua_req_release(gw_req_t *r);

/*
 * Validate the plugin settings of cfg in a fresh VM (for `moongate check`,
 * start-up and reload): every problem is appended to errs as
 * file:line: path: message. Returns GW_OK when there was none.
 */
int gw_lua_check_config(const gw_config_t *cfg, gw_config_errors_t *errs);

#endif
