/*
 * The Lua runtime of a worker (see gw_lua.h). The VM is created once per
 * worker; lua/moongate/runtime.lua loads the plugins and runs the phases.
 * Each phase of a request runs in its own coroutine, resumed only from the
 * event loop (never from inside llhttp or another library's callback).
 */
#include "gw_lua.h"

#include "gw_config_node.h"
#include "gw_log.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef MOONGATE_LUA_DIR
#define MOONGATE_LUA_DIR "lua"
#endif
#ifndef MOONGATE_PLUGIN_DIR
#define MOONGATE_PLUGIN_DIR "plugins"
#endif

typedef struct gw_lua_timer_s gw_lua_timer_t;

/* Its address, as a light userdata, is runtime.DONE: what a runner yields
 * when a phase or timer ended (a waiting PDK call yields nothing). */
static char gw_lua_done;

struct gw_lua_timer_s {
    ev_timer ev;
    gw_lua_timer_t *next;
    int id;
    bool running; /* a run of it still waits */
};

struct gw_lua_s {
    lua_State *L;
    gw_worker_t *w;
    int runner_ref; /* runtime.runner */
    /* Idle runner coroutines, reused for later phases and timers. */
    lua_State **pool;
    int *pool_refs;
    size_t npool;
    int *route_phases;
    size_t nroutes;
    gw_lua_timer_t *timers;
};

/* Idle runner coroutines kept for reuse. */
#define GW_LUA_POOL 256

/* The worker whose VM this process runs (timers are created from Lua). */
static gw_worker_t *gw_lua_worker;

/* The request whose coroutine is running; read by the PDK (gw_lua_pdk.c). */
gw_req_t *gw_lua_current;

void gw_lua_pdk_link(void);
void gw_lua_pdk_close(void);

/* ---- building the VM ---- */

/* Where the runtime and the bundled plugins are: $MOONGATE_HOME/lua and
 * $MOONGATE_HOME/plugins, else the source tree the binary was built from. */
static void gw_lua_dirs(char *lua_dir, char *plugin_dir, size_t size)
{
    const char *home = getenv("MOONGATE_HOME");
    if (home && *home) {
        snprintf(lua_dir, size, "%s/lua", home);
        snprintf(plugin_dir, size, "%s/plugins", home);
    } else {
        snprintf(lua_dir, size, "%s", MOONGATE_LUA_DIR);
        snprintf(plugin_dir, size, "%s", MOONGATE_PLUGIN_DIR);
    }
}

static lua_State *gw_lua_newstate(char *err, size_t errlen)
{
    char lua_dir[1024], plugin_dir[1024], buf[4096];
    gw_lua_dirs(lua_dir, plugin_dir, sizeof lua_dir);
    lua_State *L = luaL_newstate();
    if (!L) {
        snprintf(err, errlen, "cannot create a Lua state");
        return NULL;
    }
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    snprintf(buf, sizeof buf, "%s/?.lua;%s/?/init.lua;%s", lua_dir, lua_dir, lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_pushstring(L, buf);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    lua_pushstring(L, plugin_dir);
    lua_setglobal(L, "MOONGATE_PLUGIN_DIR");
    return L;
}

/* Push a scalar as the value YAML means: booleans and numbers unquoted,
 * everything else (and anything quoted) a string. */
static void gw_lua_push_scalar(lua_State *L, const gw_cnode_t *n)
{
    if (!n->quoted) {
        if (strcmp(n->str, "true") == 0 || strcmp(n->str, "false") == 0) {
            lua_pushboolean(L, n->str[0] == 't');
            return;
        }
        char *end;
        const char *s = n->str;
        bool numeric = n->len > 0 &&
                       (s[0] == '-' || s[0] == '+' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9'));
        for (size_t i = 0; numeric && i < n->len; i++)
            numeric = strchr("0123456789+-.eE", s[i]) != NULL;
        if (numeric) {
            double d = strtod(s, &end);
            if (*end == '\0') {
                lua_pushnumber(L, d);
                return;
            }
        }
    }
    lua_pushlstring(L, n->str, n->len);
}

/*
 * Push node n as a Lua value (null as the lightuserdata NULL, which
 * cjson.null also is), and record lines[path] = its line for every node.
 * path (capacity cap) holds the node's document path; plen is its length.
 */
static void gw_lua_push_node(lua_State *L, const gw_cnode_t *n, char *path, size_t plen, size_t cap,
                             int lines)
{
    luaL_checkstack(L, 8, "config too deep");
    lua_pushlstring(L, path, plen);
    lua_pushinteger(L, n->line);
    lua_rawset(L, lines);
    switch (n->kind) {
    case GW_CNODE_SCALAR:
        gw_lua_push_scalar(L, n);
        break;
    case GW_CNODE_LIST:
        lua_createtable(L, (int)n->nitems, 0);
        for (size_t i = 0; i < n->nitems; i++) {
            int k = snprintf(path + plen, cap - plen, "[%zu]", i);
            size_t len = k > 0 && (size_t)k < cap - plen ? plen + (size_t)k : plen;
            gw_lua_push_node(L, n->items[i], path, len, cap, lines);
            lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    case GW_CNODE_MAP:
        lua_createtable(L, 0, (int)n->npairs);
        for (size_t i = 0; i < n->npairs; i++) {
            const gw_cnode_pair_t *p = &n->pairs[i];
            if (p->key->kind != GW_CNODE_SCALAR)
                continue;
            int k = snprintf(path + plen, cap - plen, "%s%s", plen ? "." : "", p->key->str);
            size_t len = k > 0 && (size_t)k < cap - plen ? plen + (size_t)k : plen;
            gw_lua_push_node(L, p->value, path, len, cap, lines);
            lua_setfield(L, -2, p->key->str);
        }
        break;
    default:
        lua_pushlightuserdata(L, NULL);
        break;
    }
    path[plen] = '\0';
}

/* Push a `plugins` map (or nil) found at document path `prefix`. */
static void gw_lua_push_plugins(lua_State *L, const gw_cnode_t *plugins, const char *prefix,
                                int lines)
{
    char path[GW_CNODE_PATH_MAX];
    if (!plugins) {
        lua_pushnil(L);
        return;
    }
    size_t plen = (size_t)snprintf(path, sizeof path, "%s", prefix);
    gw_lua_push_node(L, plugins, path, plen, sizeof path, lines);
}

static void gw_lua_push_strings(lua_State *L, char **s, size_t n)
{
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, s[i]);
        lua_rawseti(L, -2, (int)i + 1);
    }
}

/*
 * Push the plugin part of cfg as the table runtime.configure takes:
 * { file, plugin_paths, global, routes = { {name, plugins, order} }, lines }.
 */
static void gw_lua_push_spec(lua_State *L, const gw_config_t *cfg)
{
    lua_createtable(L, 0, 6);
    int spec = lua_gettop(L);
    lua_newtable(L);
    int lines = lua_gettop(L);
    lua_pushstring(L, cfg->file);
    lua_setfield(L, spec, "file");
    gw_lua_push_strings(L, cfg->plugin_paths, cfg->nplugin_paths);
    lua_setfield(L, spec, "plugin_paths");
    gw_lua_push_plugins(L, cfg->plugins, "plugins", lines);
    lua_setfield(L, spec, "global");
    lua_createtable(L, (int)cfg->nroutes, 0);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const gw_route_conf_t *r = &cfg->routes[i];
        char prefix[64];
        snprintf(prefix, sizeof prefix, "routes[%zu].plugins", i);
        lua_createtable(L, 0, 3);
        lua_pushstring(L, r->name);
        lua_setfield(L, -2, "name");
        gw_lua_push_plugins(L, r->plugins, prefix, lines);
        lua_setfield(L, -2, "plugins");
        if (r->nplugin_order) {
            gw_lua_push_strings(L, r->plugin_order, r->nplugin_order);
            lua_setfield(L, -2, "order");
        }
        lua_rawseti(L, -2, (int)i + 1);
    }
    lua_setfield(L, spec, "routes");
    if (cfg->consumers) {
        char path[GW_CNODE_PATH_MAX];
        size_t plen = (size_t)snprintf(path, sizeof path, "consumers");
        gw_lua_push_node(L, cfg->consumers, path, plen, sizeof path, lines);
        lua_setfield(L, spec, "consumers");
    }
    lua_pushvalue(L, lines);
    lua_setfield(L, spec, "lines");
    lua_pop(L, 1); /* lines */
}

/*
 * Call runtime.configure(spec) in L. On success leaves its result (the
 * phases of each route) on the stack and returns GW_OK. Otherwise appends
 * the errors to errs (when given) or writes the first to err, and returns
 * GW_ERROR with nothing left on the stack.
 */
static int gw_lua_configure(lua_State *L, const gw_config_t *cfg, gw_config_errors_t *errs,
                            char *err, size_t errlen)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, "moongate.runtime");
    if (lua_pcall(L, 1, 1, 0) != 0) {
        snprintf(err, errlen, "cannot load the Lua runtime: %s", lua_tostring(L, -1));
        if (errs)
            gw_cnode_add_error(errs, cfg->file, 0, "", err);
        lua_pop(L, 1);
        return GW_ERROR;
    }
    lua_getfield(L, -1, "configure");
    gw_lua_push_spec(L, cfg);
    if (lua_pcall(L, 1, 2, 0) != 0) {
        snprintf(err, errlen, "plugins: %s", lua_tostring(L, -1));
        if (errs)
            gw_cnode_add_error(errs, cfg->file, 0, "", err);
        lua_pop(L, 2);
        return GW_ERROR;
    }
    if (!lua_isnil(L, -2)) {
        lua_pop(L, 1);
        lua_remove(L, -2); /* the runtime module */
        return GW_OK;
    }
    /* nil, { {line=, path=, message=}, ... } */
    size_t n = lua_objlen(L, -1);
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, (int)i);
        lua_getfield(L, -1, "line");
        lua_getfield(L, -2, "path");
        lua_getfield(L, -3, "message");
        const char *path = lua_tostring(L, -2), *msg = lua_tostring(L, -1);
        int line = (int)lua_tointeger(L, -3);
        if (i == 1)
            snprintf(err, errlen, "%s:%d: %s: %s", cfg->file, line, path ? path : "",
                     msg ? msg : "invalid");
        if (errs)
            gw_cnode_add_error(errs, cfg->file, line, path ? path : "", msg ? msg : "invalid");
        lua_pop(L, 4);
    }
    lua_pop(L, 3);
    return GW_ERROR;
}

static bool gw_lua_config_has_plugins(const gw_config_t *cfg)
{
    if (cfg->plugins || cfg->consumers)
        return true;
    for (size_t i = 0; i < cfg->nroutes; i++)
        if (cfg->routes[i].plugins)
            return true;
    return false;
}

int gw_lua_check_config(const gw_config_t *cfg, gw_config_errors_t *errs)
{
    if (!gw_lua_config_has_plugins(cfg))
        return GW_OK;
    char err[1024];
    lua_State *L = gw_lua_newstate(err, sizeof err);
    if (!L) {
        gw_cnode_add_error(errs, cfg->file, 0, "", err);
        return GW_ERROR;
    }
    int rc = gw_lua_configure(L, cfg, errs, err, sizeof err);
    lua_close(L);
    return rc;
}

int gw_lua_init(gw_worker_t *w, char *err, size_t errlen)
{
    const gw_config_t *cfg = w->cfg;
    if (!gw_lua_config_has_plugins(cfg))
        return GW_OK;
    gw_lua_pdk_link();
    lua_State *L = gw_lua_newstate(err, errlen);
    if (!L)
        return GW_ERROR;
    if (gw_lua_configure(L, cfg, NULL, err, errlen) != GW_OK) {
        lua_close(L);
        return GW_ERROR;
    }
    struct gw_lua_s *lua = gw_xcalloc(1, sizeof *lua);
    lua->L = L;
    lua->nroutes = cfg->nroutes;
    lua->route_phases = gw_xcalloc(cfg->nroutes ? cfg->nroutes : 1, sizeof(int));
    for (size_t i = 0; i < cfg->nroutes; i++) {
        lua_rawgeti(L, -1, (int)i + 1);
        lua->route_phases[i] = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushstring(L, "moongate.runtime");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "runner");
    lua->runner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, &gw_lua_done);
    lua_setfield(L, -2, "DONE");
    /* The main thread's stack keeps runtime.ctxs at index 1 for good, for
     * gw_lua_req_release. */
    lua_getfield(L, -1, "ctxs");
    lua_insert(L, 1);
    lua_settop(L, 1);
    lua->pool = gw_xcalloc(GW_LUA_POOL, sizeof *lua->pool);
    lua->pool_refs = gw_xcalloc(GW_LUA_POOL, sizeof *lua->pool_refs);
    lua->w = w;
    w->lua = lua;
    gw_lua_worker = w;
    return GW_OK;
}

void gw_lua_close(gw_worker_t *w)
{
    if (!w->lua)
        return;
    gw_lua_timers_stop(w);
    gw_lua_pdk_close();
    gw_lua_worker = NULL;
    lua_close(w->lua->L);
    free(w->lua->pool);
    free(w->lua->pool_refs);
    free(w->lua->route_phases);
    free(w->lua);
    w->lua = NULL;
}

int gw_lua_route_phases(const gw_worker_t *w, int route_index)
{
    if (!w->lua || route_index < 0 || (size_t)route_index >= w->lua->nroutes)
        return 0;
    return w->lua->route_phases[route_index];
}

static void gw_lua_timer_task_done(gw_req_t *r);
static void gw_lua_drop_coroutine(gw_req_t *r);

/* ---- running phases ---- */

/* Take an idle runner coroutine (or make one, started up to its first
 * yield); *ref gets its registry reference. NULL if it cannot start. */
static lua_State *gw_lua_runner_get(struct gw_lua_s *lua, int *ref)
{
    if (lua->npool) {
        lua->npool--;
        *ref = lua->pool_refs[lua->npool];
        return lua->pool[lua->npool];
    }
    lua_State *co = lua_newthread(lua->L);
    *ref = luaL_ref(lua->L, LUA_REGISTRYINDEX);
    lua_rawgeti(co, LUA_REGISTRYINDEX, lua->runner_ref);
    if (lua_resume(co, 0) != LUA_YIELD) {
        gw_log_error("cannot start a Lua runner: %s", lua_tostring(co, -1));
        luaL_unref(lua->L, LUA_REGISTRYINDEX, *ref);
        return NULL;
    }
    lua_settop(co, 0);
    return co;
}

/* Forget r's coroutine, and anything it waited on: no wake-up may reach a
 * coroutine that is gone. With reuse, the coroutine (which finished its
 * run and waits for the next) goes back to the pool. */
static void gw_lua_coroutine_done(gw_req_t *r, bool reuse)
{
    struct gw_lua_s *lua = r->w->lua;
    if (reuse && r->lua_co && lua->npool < GW_LUA_POOL) {
        lua_settop(r->lua_co, 0);
        lua->pool[lua->npool] = r->lua_co;
        lua->pool_refs[lua->npool++] = r->lua_co_ref;
        r->lua_co_ref = 0;
    }
    gw_lua_drop_coroutine(r);
}

/* Disarm every wait of r's coroutine and let the VM collect it. */
static void gw_lua_drop_coroutine(gw_req_t *r)
{
    ev_timer_stop(r->w->loop, &r->lua_timer);
    if (r->lua_cancel) {
        r->lua_cancel(r);
        r->lua_cancel = NULL;
    }
    r->lua_waiting = false;
    r->body_waiting = false;
    if (r->lua_co_ref) {
        luaL_unref(r->w->lua->L, LUA_REGISTRYINDEX, r->lua_co_ref);
        r->lua_co_ref = 0;
    }
    r->lua_co = NULL;
}

void gw_lua_req_release(gw_req_t *r)
{
    if (!r->w || !r->w->lua)
        return;
    gw_lua_drop_coroutine(r);
    if (r->lua_ctx) {
        lua_State *L = r->w->lua->L;
        lua_pushnil(L);
        lua_rawseti(L, 1, r->lua_slot);
        r->lua_ctx = false;
    }
    gw_buf_put(&r->w->bufs, r->lua_arena);
    r->lua_arena = NULL;
    r->nhdr_ops = 0; /* the array stays with the request structure */
    free(r->exit_body);
    r->exit_body = NULL;
    free(r->body_copy);
    r->body_copy = NULL;
    r->body_waiting = false;
    gw_buf_put(&r->w->bufs, r->held_in);
    r->held_in = NULL;
    free(r->up_body);
    r->up_body = NULL;
    free(r->direct_host);
    r->direct_host = NULL;
}

/* What a log line names: "route NAME", or "timer" for a timer task. */
static const char *gw_lua_where(const gw_req_t *r, char *buf, size_t size)
{
    if (!r->match.route)
        return "timer";
    snprintf(buf, size, "route %s", r->match.route->name);
    return buf;
}

static const char *gw_lua_phase_name(int phase)
{
    return phase == GW_LUA_ACCESS          ? "access"
           : phase == GW_LUA_HEADER_FILTER ? "header_filter"
           : phase == GW_LUA_BODY_FILTER   ? "body_filter"
           : phase == GW_LUA_LOG           ? "log"
                                           : "timer";
}

/*
 * Resume r's coroutine with nargs values on its stack. Returns GW_AGAIN
 * while it waits, GW_OK when the phase ended normally, GW_DONE when it
 * ended with moongate.response.exit, GW_ERROR after a plugin error (logged).
 * A runner that finished goes back to the pool.
 */
static int gw_lua_resume(gw_req_t *r, int nargs)
{
    char where[160];
    lua_State *co = r->lua_co;
    gw_req_t *prev = gw_lua_current;
    gw_lua_current = r;
    int rc = lua_resume(co, nargs);
    gw_lua_current = prev;
    if (rc != LUA_YIELD) {
        gw_log_error("%s: Lua error in %s (request %s): %s", gw_lua_where(r, where, sizeof where),
                     gw_lua_phase_name(r->lua_phase), r->request_id,
                     lua_isstring(co, -1) ? lua_tostring(co, -1) : "(runner ended)");
        gw_lua_coroutine_done(r, false);
        return GW_ERROR;
    }
    if (r->lua_waiting)
        return GW_AGAIN;
    if (lua_gettop(co) < 1 || lua_touserdata(co, 1) != &gw_lua_done) {
        gw_log_error("%s: plugin yielded outside a PDK call in %s (request %s)",
                     gw_lua_where(r, where, sizeof where), gw_lua_phase_name(r->lua_phase),
                     r->request_id);
        gw_lua_coroutine_done(r, false);
        return GW_ERROR;
    }
    /* DONE, what, message */
    int result = GW_OK;
    if (lua_gettop(co) >= 2 && lua_isstring(co, 2)) {
        if (strcmp(lua_tostring(co, 2), "exit") == 0) {
            result = GW_DONE;
        } else {
            gw_log_error("%s: %s (request %s)", gw_lua_where(r, where, sizeof where),
                         lua_gettop(co) >= 3 ? lua_tostring(co, 3) : lua_tostring(co, 2),
                         r->request_id);
            result = GW_ERROR;
        }
    }
    gw_lua_coroutine_done(r, true);
    return result;
}

/* Turn a finished phase's result into what the request does next. Returns
 * GW_OK (go on), GW_DONE (answered) or GW_AGAIN. */
static int gw_lua_finish(gw_req_t *r, int rc)
{
    char where[160];
    if (rc == GW_AGAIN || rc == GW_OK)
        return rc;
    if (r->lua_phase == GW_LUA_LOG || r->lua_phase == GW_LUA_TIMER)
        return GW_OK;
    if (rc == GW_DONE && r->lua_phase == GW_LUA_ACCESS) {
        gw_conn_exit(r);
        return GW_DONE;
    }
    if (rc == GW_DONE)
        gw_log_error("%s: moongate.response.exit is only allowed in rewrite and access "
                     "(request %s)",
                     gw_lua_where(r, where, sizeof where), r->request_id);
    if (r->lua_phase == GW_LUA_BODY_FILTER && r->head_to_client)
        gw_log_warn("%s: body_filter failed after the response head was sent: closing the "
                    "client connection (request %s)",
                    gw_lua_where(r, where, sizeof where), r->request_id);
    gw_conn_error(r->c, 500, "internal error");
    return GW_DONE;
}

int gw_lua_run(gw_req_t *r, int phase)
{
    r->lua_phase = phase;
    r->lua_ctx = true;
    lua_State *co = gw_lua_runner_get(r->w->lua, &r->lua_co_ref);
    if (!co)
        return gw_lua_finish(r, GW_ERROR);
    r->lua_co = co;
    lua_pushinteger(co, r->match.route->index);
    lua_pushinteger(co, phase);
    lua_pushinteger(co, r->lua_slot);
    return gw_lua_finish(r, gw_lua_resume(r, 3));
}

/* Called by the PDK when what a coroutine waited for is there (the values
 * it returns are on its stack): resume it, and when the phase ends, let the
 * request go on. */
void gw_lua_wakeup(gw_req_t *r, int nvalues)
{
    if (!r->lua_co)
        return; /* the coroutine ended meanwhile */
    r->lua_waiting = false;
    int rc = gw_lua_finish(r, gw_lua_resume(r, nvalues));
    if (rc == GW_AGAIN)
        return;
    switch (r->lua_phase) {
    case GW_LUA_ACCESS:
        gw_conn_access_done(r, rc);
        break;
    case GW_LUA_HEADER_FILTER:
        gw_proxy_header_filter_done(r, rc);
        break;
    case GW_LUA_BODY_FILTER:
        gw_proxy_body_filter_done(r, rc);
        break;
    case GW_LUA_TIMER:
        gw_lua_timer_task_done(r);
        break;
    default:
        gw_conn_task_done(r);
        break;
    }
}

/* ---- timers ---- */

static gw_lua_timer_t *gw_lua_timer_find(struct gw_lua_s *lua, int id, gw_lua_timer_t ***link)
{
    for (gw_lua_timer_t **p = &lua->timers; *p; p = &(*p)->next)
        if ((*p)->id == id) {
            *link = p;
            return *p;
        }
    return NULL;
}

/* A timer task finished: its timer may fire again; a one-shot timer (or a
 * cancelled one) is dropped. */
static void gw_lua_timer_task_done(gw_req_t *r)
{
    struct gw_lua_s *lua = r->w->lua;
    gw_lua_timer_t **link;
    gw_lua_timer_t *t = lua ? gw_lua_timer_find(lua, r->timer_id, &link) : NULL;
    if (t) {
        t->running = false;
        if (!ev_is_active(&t->ev)) {
            *link = t->next;
            free(t);
        }
    }
    gw_conn_task_done(r);
}

static void gw_lua_timer_cb(struct ev_loop *loop, ev_timer *ev, int revents)
{
    gw_lua_timer_t *t = ev->data;
    gw_worker_t *w = gw_lua_worker;
    if (!w || w->stopping || t->running)
        return;
    t->running = true;
    gw_req_t *r = gw_conn_task_new(w);
    r->timer_id = t->id;
    r->lua_phase = GW_LUA_TIMER;
    lua_State *co = gw_lua_runner_get(w->lua, &r->lua_co_ref);
    if (!co) {
        gw_lua_timer_task_done(r);
        return;
    }
    r->lua_co = co;
    lua_pushinteger(co, t->id);
    lua_pushinteger(co, GW_LUA_TIMER);
    if (gw_lua_finish(r, gw_lua_resume(r, 2)) != GW_AGAIN)
        gw_lua_timer_task_done(r);
}

int gw_lua_timer_start(int id, double delay, double interval)
{
    gw_worker_t *w = gw_lua_worker;
    if (!w || !w->lua || w->stopping)
        return GW_ERROR;
    gw_lua_timer_t *t = gw_xcalloc(1, sizeof *t);
    t->id = id;
    ev_timer_init(&t->ev, gw_lua_timer_cb, delay, interval > 0 ? interval : 0.);
    t->ev.data = t;
    ev_timer_start(w->loop, &t->ev);
    t->next = w->lua->timers;
    w->lua->timers = t;
    return GW_OK;
}

void gw_lua_timer_cancel(int id)
{
    gw_worker_t *w = gw_lua_worker;
    gw_lua_timer_t **link;
    gw_lua_timer_t *t = w && w->lua ? gw_lua_timer_find(w->lua, id, &link) : NULL;
    if (!t)
        return;
    ev_timer_stop(w->loop, &t->ev);
    if (!t->running) {
        *link = t->next;
        free(t);
    }
}

void gw_lua_timers_stop(gw_worker_t *w)
{
    if (!w->lua)
        return;
    gw_lua_timer_t **p = &w->lua->timers;
    while (*p) {
        gw_lua_timer_t *t = *p;
        ev_timer_stop(w->loop, &t->ev);
        if (t->running) {
            p = &t->next; /* dropped when its run ends */
            continue;
        }
        *p = t->next;
        free(t);
    }
}
