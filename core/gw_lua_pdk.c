/*
 * The C side of the PDK: small functions the Lua PDK (lua/moongate/)
 * calls through the LuaJIT FFI. They act on the request whose coroutine is
 * running (gw_lua_current), never yield, and report with GW_OK, GW_AGAIN
 * (the Lua wrapper yields until gw_lua_wakeup resumes it), GW_DECLINED or
 * GW_ERROR with a message in the caller's buffer.
 */
#include "gw_http.h"
#include "gw_httpc.h"
#include "gw_redis.h"
#include "gw_log.h"
#include "gw_lua.h"
#include "gw_net.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define GW_PDK __attribute__((visibility("default"), used))

/* Referenced by gw_lua.c so that the linker keeps this file, whose
 * functions only Lua calls. */
void gw_lua_pdk_tls_link(void);

void gw_lua_pdk_link(void)
{
    gw_lua_pdk_tls_link();
}

/* The worker's HTTP and Redis clients, made on first use. */
static gw_httpc_t *gw_pdk_httpc;
static gw_redis_t *gw_pdk_redis;

/* Free what the PDK made for the worker (its VM is closing). */
void gw_lua_pdk_close(void)
{
    gw_httpc_free(gw_pdk_httpc);
    gw_pdk_httpc = NULL;
    gw_redis_free(gw_pdk_redis);
    gw_pdk_redis = NULL;
}

static int gw_pdk_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int gw_pdk_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return GW_ERROR;
}

static const char *const gw_pdk_phase_names[] = {
    "", "access", "header_filter", "", "body_filter", "", "", "", "log", "", "", "", "", "",
    "", "",       "timer"};

GW_PDK int gw_pdk_phase(void)
{
    return gw_lua_current ? gw_lua_current->lua_phase : 0;
}

GW_PDK const char *gw_pdk_phase_name(void)
{
    int p = gw_pdk_phase();
    return p > 0 && p < (int)GW_ARRAY_LEN(gw_pdk_phase_names) ? gw_pdk_phase_names[p] : "init";
}

/* ---- the client request ---- */

GW_PDK const char *gw_pdk_request_id(void)
{
    return gw_lua_current ? gw_lua_current->request_id : NULL;
}

GW_PDK const char *gw_pdk_route_name(void)
{
    return gw_lua_current && gw_lua_current->match.route ? gw_lua_current->match.route->name : NULL;
}

static const char *gw_pdk_str(gw_str_t s, size_t *len)
{
    *len = s.len;
    return s.p;
}

GW_PDK const char *gw_pdk_req_method(size_t *len)
{
    return gw_pdk_str(gw_lua_current->method, len);
}

GW_PDK const char *gw_pdk_req_path(size_t *len)
{
    return gw_pdk_str((gw_str_t){gw_lua_current->path, gw_lua_current->path_len}, len);
}

GW_PDK const char *gw_pdk_req_target(size_t *len)
{
    return gw_pdk_str(gw_lua_current->url, len);
}

GW_PDK const char *gw_pdk_req_query(size_t *len)
{
    if (!gw_lua_current->has_query) {
        *len = 0;
        return NULL;
    }
    return gw_pdk_str(gw_lua_current->query, len);
}

GW_PDK const char *gw_pdk_req_host(size_t *len)
{
    return gw_pdk_str(gw_lua_current->host, len);
}

GW_PDK int gw_pdk_req_http_version(void)
{
    return gw_lua_current->parser.http_major * 10 + gw_lua_current->parser.http_minor;
}

GW_PDK int gw_pdk_req_client_ip(char *buf, size_t size)
{
    return (int)gw_net_ntop((const struct sockaddr_storage *)&gw_lua_current->peer, buf, size);
}

/* When the request started, in seconds since the epoch. */
GW_PDK double gw_pdk_req_start_time(void)
{
    gw_req_t *r = gw_lua_current;
    return gw_wall_now() - (ev_now(r->w->loop) - r->t_start);
}

/* Bytes read from the client (see gw_req_bytes_received), as a Lua number. */
GW_PDK double gw_pdk_req_bytes_received(void)
{
    return (double)gw_req_bytes_received(gw_lua_current);
}

GW_PDK int gw_pdk_req_header_count(void)
{
    return (int)gw_lua_current->nheaders;
}

/* Header i (0-based) of the client request. */
GW_PDK int gw_pdk_req_header(int i, gw_str_t *name, gw_str_t *value)
{
    gw_req_t *r = gw_lua_current;
    if (i < 0 || (size_t)i >= r->nheaders)
        return GW_DECLINED;
    *name = r->headers[i].name;
    *value = r->headers[i].value;
    return GW_OK;
}

/* The most a plugin can read of a request body at once. */
#define GW_PDK_BODY_MAX ((size_t)64 * 1024 * 1024)

/* The whole request body (rewrite and access; decoded). GW_OK with *p
 * and *len, GW_AGAIN when the Lua side must yield until it has arrived,
 * GW_DECLINED when it is longer than max, GW_ERROR with a message. */
GW_PDK int gw_pdk_req_body(size_t max, const char **p, size_t *len, char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (r->lua_phase != GW_LUA_ACCESS || !r->c)
        return gw_pdk_fail(err, errlen, "not allowed in %s: only in rewrite or access",
                           gw_pdk_phase_name());
    int64_t limit = r->body_limit;
    if (limit > 0 && (uint64_t)limit < max)
        max = (size_t)limit;
    if (max > GW_PDK_BODY_MAX)
        max = GW_PDK_BODY_MAX;
    int rc = gw_conn_request_body(r, max, p, len);
    if (rc == GW_AGAIN)
        r->lua_waiting = true;
    else if (rc == GW_ERROR)
        gw_pdk_fail(err, errlen, "the client connection failed");
    return rc;
}

/* ---- header changes ---- */

/* Copy len bytes into the request's arena; NULL when it is full. */
static const char *gw_pdk_keep(gw_req_t *r, const char *s, size_t len)
{
    if (!r->lua_arena)
        r->lua_arena = gw_buf_get(&r->w->bufs);
    gw_buf_t *a = r->lua_arena;
    if (gw_buf_room(a) < len)
        return NULL;
    char *p = a->data + a->end;
    memcpy(p, s, len);
    a->end += len;
    return p;
}

static const char *const gw_pdk_side_phase[] = {"rewrite or access", "header_filter",
                                                "rewrite or access"};

/*
 * Record a header change: side GW_SIDE_UPSTREAM (the request sent
 * upstream; rewrite and access), GW_SIDE_RESPONSE (the response; header
 * filter) or GW_SIDE_EXIT (headers of moongate.response.exit), op
 * GW_HDR_SET, GW_HDR_ADD or GW_HDR_CLEAR.
 */
GW_PDK int gw_pdk_header_op(int side, int op, const char *name, size_t nlen, const char *value,
                            size_t vlen, char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    int want = side == GW_SIDE_RESPONSE ? GW_LUA_HEADER_FILTER : GW_LUA_ACCESS;
    if (side < 0 || side > GW_SIDE_EXIT || op < 0 || op > GW_HDR_CLEAR)
        return gw_pdk_fail(err, errlen, "bad header operation");
    if (r->lua_phase != want)
        return gw_pdk_fail(err, errlen, "not allowed in %s: only in %s", gw_pdk_phase_name(),
                           gw_pdk_side_phase[side]);
    gw_str_t n = {name, nlen}, v = {value, vlen};
    if (!gw_http_is_token(n))
        return gw_pdk_fail(err, errlen, "invalid header name");
    if (op != GW_HDR_CLEAR && !gw_http_valid_value(v))
        return gw_pdk_fail(err, errlen, "invalid header value for %.*s", (int)nlen, name);
    if (gw_str_caseeq_lit(n, "content-length") || gw_str_caseeq_lit(n, "transfer-encoding") ||
        gw_http_is_hop_by_hop(n))
        return gw_pdk_fail(err, errlen, "%.*s is managed by the gateway", (int)nlen, name);
    if (!r->hdr_ops)
        r->hdr_ops = gw_xmalloc(GW_MAX_HDR_OPS * sizeof(gw_hdr_op_t));
    if (r->nhdr_ops == GW_MAX_HDR_OPS)
        return gw_pdk_fail(err, errlen, "too many header changes");
    const char *kn = gw_pdk_keep(r, name, nlen);
    const char *kv = op == GW_HDR_CLEAR ? "" : gw_pdk_keep(r, value, vlen);
    if (!kn || !kv)
        return gw_pdk_fail(err, errlen, "header changes too large");
    gw_hdr_op_t *o = &r->hdr_ops[r->nhdr_ops++];
    o->name = (gw_str_t){kn, nlen};
    o->value = (gw_str_t){kv, op == GW_HDR_CLEAR ? 0 : vlen};
    o->op = (uint8_t)op;
    o->side = (uint8_t)side;
    return GW_OK;
}

GW_PDK int gw_pdk_upstream_set_path(const char *path, size_t len, char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (r->lua_phase != GW_LUA_ACCESS)
        return gw_pdk_fail(err, errlen, "not allowed in %s: only in rewrite or access",
                           gw_pdk_phase_name());
    if (len == 0 || path[0] != '/')
        return gw_pdk_fail(err, errlen, "the path must start with /");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)path[i];
        if (ch <= 0x20 || ch == 0x7f || ch == '?' || ch == '#')
            return gw_pdk_fail(err, errlen, "invalid character in path (byte %zu)", i);
    }
    const char *kept = gw_pdk_keep(r, path, len);
    if (!kept)
        return gw_pdk_fail(err, errlen, "path too long");
    r->up_path = (gw_str_t){kept, len};
    return GW_OK;
}

/* Send the request upstream with this query string (without "?"; empty
 * for none). */
GW_PDK int gw_pdk_upstream_set_query(const char *q, size_t len, char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (r->lua_phase != GW_LUA_ACCESS)
        return gw_pdk_fail(err, errlen, "not allowed in %s: only in rewrite or access",
                           gw_pdk_phase_name());
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)q[i];
        if (ch <= 0x20 || ch == 0x7f || ch == '#')
            return gw_pdk_fail(err, errlen, "invalid character in query (byte %zu)", i);
    }
    const char *kept = len ? gw_pdk_keep(r, q, len) : "";
    if (!kept)
        return gw_pdk_fail(err, errlen, "query too long");
    r->up_query = (gw_str_t){kept, len};
    r->up_query_set = true;
    return GW_OK;
}

/* Send the request upstream with this method (a token, e.g. "POST"). */
GW_PDK int gw_pdk_upstream_set_method(const char *m, size_t len, char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (r->lua_phase != GW_LUA_ACCESS)
        return gw_pdk_fail(err, errlen, "not allowed in %s: only in rewrite or access",
                           gw_pdk_phase_name());
    if (!gw_http_is_token((gw_str_t){m, len}) || len > 32 ||
        (len == 7 && memcmp(m, "CONNECT", 7) == 0))
        return gw_pdk_fail(err, errlen, "invalid method");
    bool head = len == 4 && memcmp(m, "HEAD", 4) == 0;
    if (head != (r->parser.method == HTTP_HEAD))
        return gw_pdk_fail(err, errlen, "cannot change a request to or from HEAD");
    const char *kept = gw_pdk_keep(r, m, len);
    if (!kept)
        return gw_pdk_fail(err, errlen, "out of room");
    r->up_method = (gw_str_t){kept, len};
    return GW_OK;
}

/* Proxy the request to the upstream `name` instead of the route's. */
GW_PDK int gw_pdk_upstream_set_upstream(const char *name, size_t len, char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (r->lua_phase != GW_LUA_ACCESS)
        return gw_pdk_fail(err, errlen, "not allowed in %s: only in rewrite or access",
                           gw_pdk_phase_name());
    const gw_config_t *cfg = r->w->cfg;
    for (size_t i = 0; i < cfg->nupstreams; i++)
        if (strlen(cfg->upstreams[i].name) == len &&
            memcmp(cfg->upstreams[i].name, name, len) == 0) {
            r->up_index = (int)i + 1;
            return GW_OK;
        }
    return gw_pdk_fail(err, errlen, "no upstream named %.*s", (int)len, name);
}

/* Per-request timeouts in seconds; 0 keeps the upstream's. */
GW_PDK int gw_pdk_upstream_set_timeouts(double connect, double send, double read, char *err,
                                        size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (r->lua_phase != GW_LUA_ACCESS)
        return gw_pdk_fail(err, errlen, "not allowed in %s: only in rewrite or access",
                           gw_pdk_phase_name());
    if (!(connect >= 0) || !(send >= 0) || !(read >= 0))
        return gw_pdk_fail(err, errlen, "timeouts must be numbers of seconds >= 0");
    r->to_connect = connect;
    r->to_send = send;
    r->to_read = read;
    return GW_OK;
}

/* How many other targets to try when connecting fails (0 to 100). */
GW_PDK int gw_pdk_upstream_set_retries(int retries, char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (r->lua_phase != GW_LUA_ACCESS)
        return gw_pdk_fail(err, errlen, "not allowed in %s: only in rewrite or access",
                           gw_pdk_phase_name());
    if (retries < 0 || retries > 100)
        return gw_pdk_fail(err, errlen, "retries must be 0 to 100");
    r->retries = retries;
    r->retries_set = true;
    return GW_OK;
}

/* Send `len` bytes upstream as the request body instead of the client's
 * (which is still read, and dropped). */
GW_PDK int gw_pdk_upstream_set_body(const char *p, size_t len, char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (r->lua_phase != GW_LUA_ACCESS)
        return gw_pdk_fail(err, errlen, "not allowed in %s: only in rewrite or access",
                           gw_pdk_phase_name());
    if (r->parser.method == HTTP_HEAD)
        return gw_pdk_fail(err, errlen, "a HEAD request has no body");
    char *copy = gw_xmalloc(len ? len : 1);
    memcpy(copy, p, len);
    free(r->up_body);
    r->up_body = copy;
    r->up_body_len = len;
    r->up_body_set = true;
    return GW_OK;
}

/* Send the request to host:port instead of a target of the upstream. */
GW_PDK int gw_pdk_upstream_set_target(const char *host, size_t len, int port, char *err,
                                      size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (r->lua_phase != GW_LUA_ACCESS)
        return gw_pdk_fail(err, errlen, "not allowed in %s: only in rewrite or access",
                           gw_pdk_phase_name());
    if (port < 1 || port > 65535)
        return gw_pdk_fail(err, errlen, "port must be an integer from 1 to 65535");
    /* A name or an IPv4 address (what a Host header may hold, without a
     * port), or an IPv6 address without brackets. */
    bool ipv6 = memchr(host, ':', len) != NULL;
    bool ok = len > 0 && len <= 64 && (ipv6 || gw_http_valid_host((gw_str_t){host, len}));
    for (size_t i = 0; ok && ipv6 && i < len; i++)
        ok = host[i] == ':' || host[i] == '.' || (host[i] >= '0' && host[i] <= '9') ||
             (gw_lower(host[i]) >= 'a' && gw_lower(host[i]) <= 'f');
    if (!ok || host[0] == '[')
        return gw_pdk_fail(err, errlen, "invalid host");
    free(r->direct_host);
    r->direct_host = gw_xstrndup(host, len);
    r->direct_port = (uint16_t)port;
    return GW_OK;
}

/* ---- the response ---- */

/* Record the answer moongate.response.exit gives (access phase only). */
GW_PDK int gw_pdk_exit(int status, const char *body, size_t len, char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (r->lua_phase != GW_LUA_ACCESS)
        return gw_pdk_fail(err, errlen, "not allowed in %s: only in rewrite or access",
                           gw_pdk_phase_name());
    if (status < 200 || status > 599)
        return gw_pdk_fail(err, errlen, "invalid status %d (200 to 599)", status);
    free(r->exit_body);
    r->exit_body = NULL;
    r->exit_body_len = 0;
    if (len) {
        r->exit_body = gw_xmalloc(len);
        memcpy(r->exit_body, body, len);
        r->exit_body_len = len;
    }
    r->exit_status = status;
    return GW_OK;
}

GW_PDK int gw_pdk_resp_status(void)
{
    return gw_lua_current->status;
}

/* Bytes written to the client so far: the response head and body, or
 * everything an upgraded connection's tunnel wrote. */
GW_PDK double gw_pdk_resp_bytes_sent(void)
{
    return (double)gw_lua_current->bytes_sent;
}

GW_PDK int gw_pdk_resp_set_status(int status, char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (r->lua_phase != GW_LUA_HEADER_FILTER)
        return gw_pdk_fail(err, errlen, "not allowed in %s: only in header_filter",
                           gw_pdk_phase_name());
    if (status < 200 || status > 599)
        return gw_pdk_fail(err, errlen, "invalid status %d", status);
    if ((status == 204 || status == 304) && r->rbody_mode != GW_BODY_NONE)
        return gw_pdk_fail(err, errlen, "%d has no body, but this response has one", status);
    r->status = status;
    return GW_OK;
}

GW_PDK int gw_pdk_resp_header_count(void)
{
    gw_req_t *r = gw_lua_current;
    return r->rhead_done || r->lua_phase == GW_LUA_HEADER_FILTER ? (int)r->nrheaders : 0;
}

/* Header i (0-based) of the upstream's response, as the upstream sent it. */
GW_PDK int gw_pdk_resp_header(int i, gw_str_t *name, gw_str_t *value)
{
    gw_req_t *r = gw_lua_current;
    if (i < 0 || i >= gw_pdk_resp_header_count())
        return GW_DECLINED;
    *name = r->rheaders[i].name;
    *value = r->rheaders[i].value;
    return GW_OK;
}

/*
 * The first header at index `from` or after of the request (resp 0) or of
 * the upstream's response (resp 1) named `name` in any case: its index,
 * with its value in *value, or -1. Comparing in C spares the Lua side a
 * string per header looked at.
 */
GW_PDK int gw_pdk_header_find(int resp, int from, const char *name, size_t len, gw_str_t *value)
{
    gw_str_t want = {name, len}, hn;
    for (int i = from < 0 ? 0 : from;; i++) {
        int rc = resp ? gw_pdk_resp_header(i, &hn, value) : gw_pdk_req_header(i, &hn, value);
        if (rc != GW_OK)
            return -1;
        if (gw_str_caseeq(hn, want))
            return i;
    }
}

/* ---- waiting ---- */

static void gw_pdk_sleep_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_lua_wakeup(t->data, 0);
}

/* Start a wait of `seconds`; the Lua wrapper yields on GW_AGAIN. */
GW_PDK int gw_pdk_sleep(double seconds, char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (!r || !r->lua_co)
        return gw_pdk_fail(err, errlen, "needs a request phase or a timer");
    if (!(seconds >= 0))
        return gw_pdk_fail(err, errlen, "invalid time");
    ev_timer_init(&r->lua_timer, gw_pdk_sleep_cb, seconds, 0.);
    r->lua_timer.data = r;
    ev_timer_start(r->w->loop, &r->lua_timer);
    r->lua_waiting = true;
    return GW_AGAIN;
}

/* ---- timers ---- */

/* Schedule the Lua timer `id` (see gw_lua_timer_start). */
GW_PDK int gw_pdk_timer_start(int id, double delay, double interval, char *err, size_t errlen)
{
    if (!(delay >= 0) || !(interval >= 0))
        return gw_pdk_fail(err, errlen, "invalid time");
    if (gw_lua_timer_start(id, delay, interval) != GW_OK)
        return gw_pdk_fail(err, errlen, "timers need a running worker (create them from a phase)");
    return GW_OK;
}

GW_PDK void gw_pdk_timer_cancel(int id)
{
    gw_lua_timer_cancel(id);
}

/* ---- HTTP calls (moongate.http) ---- */

typedef struct gw_pdk_batch_s gw_pdk_batch_t;

/* The context of one call: its batch and its place in it. */
typedef struct {
    gw_pdk_batch_t *b;
    int i;
} gw_pdk_slot_t;

/* HTTP calls a coroutine makes at once and waits for together. */
struct gw_pdk_batch_s {
    gw_req_t *r;
    int n, pending;
    bool waiting;
    gw_httpc_call_t **calls;
    gw_httpc_res_t **res;
    gw_pdk_slot_t *slots;
};

/* Release every call (cancelling those still running) and free b. */
GW_PDK void gw_pdk_http_end(gw_pdk_batch_t *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->n; i++)
        if (b->calls[i])
            gw_httpc_release(b->calls[i]);
    if (b->r && b->r->lua_wait == b) {
        b->r->lua_wait = NULL;
        b->r->lua_cancel = NULL;
    }
    free(b->calls);
    free(b->res);
    free(b->slots);
    free(b);
}

/* The request or timer went away while it waited: drop its calls. */
static void gw_pdk_batch_cancel(gw_req_t *r)
{
    gw_pdk_http_end(r->lua_wait);
}

static void gw_pdk_batch_wake_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_lua_wakeup(t->data, 0);
}

/* One call ended. When all have and the coroutine waits, resume it from a
 * fresh loop callback rather than from inside the HTTP client's. */
static void gw_pdk_batch_cb(void *ud, gw_httpc_res_t *res)
{
    gw_pdk_slot_t *slot = ud;
    gw_pdk_batch_t *b = slot->b;
    b->res[slot->i] = res;
    if (--b->pending == 0 && b->waiting) {
        gw_req_t *r = b->r;
        ev_timer_init(&r->lua_timer, gw_pdk_batch_wake_cb, 0., 0.);
        r->lua_timer.data = r;
        ev_timer_start(r->w->loop, &r->lua_timer);
    }
}

/*
 * Prepare n HTTP calls for the running coroutine (a request phase or a
 * timer): start each with gw_pdk_http_add, then wait with gw_pdk_http_wait,
 * read the results with gw_pdk_http_result and free with gw_pdk_http_end.
 * NULL with a message in err outside a coroutine.
 */
GW_PDK gw_pdk_batch_t *gw_pdk_http_begin(int n, char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (!r || !r->lua_co || r->lua_wait || n < 1 || n > 1024) {
        gw_pdk_fail(err, errlen, "%s",
                    !r || !r->lua_co ? "moongate.http needs a request phase or a timer"
                                     : "between 1 and 1024 requests at once, one batch at a time");
        return NULL;
    }
    if (!gw_pdk_httpc)
        gw_pdk_httpc = gw_httpc_new(r->w->loop, 32, 60);
    gw_pdk_batch_t *b = gw_xcalloc(1, sizeof *b);
    b->r = r;
    b->n = n;
    b->calls = gw_xcalloc((size_t)n, sizeof *b->calls);
    b->res = gw_xcalloc((size_t)n, sizeof *b->res);
    b->slots = gw_xcalloc((size_t)n, sizeof *b->slots);
    r->lua_wait = b;
    r->lua_cancel = gw_pdk_batch_cancel;
    return b;
}

/* Start call i of b; everything is copied. GW_OK, or GW_ERROR (bad URL or
 * header) with a message. */
GW_PDK int gw_pdk_http_add(gw_pdk_batch_t *b, int i, const gw_httpc_req_t *req, char *err,
                           size_t errlen)
{
    if (i < 0 || i >= b->n || b->calls[i])
        return gw_pdk_fail(err, errlen, "bad request index");
    b->slots[i] = (gw_pdk_slot_t){b, i};
    b->calls[i] = gw_httpc_request(gw_pdk_httpc, req, gw_pdk_batch_cb, &b->slots[i]);
    if (!b->calls[i])
        return gw_pdk_fail(err, errlen, "invalid request (url or headers): %s", req->url);
    b->pending++;
    return GW_OK;
}

/* GW_AGAIN: the Lua side yields until every call of b ended. GW_OK when
 * there is nothing to wait for. */
GW_PDK int gw_pdk_http_wait(gw_pdk_batch_t *b)
{
    if (b->pending == 0)
        return GW_OK;
    b->waiting = true;
    b->r->lua_waiting = true;
    return GW_AGAIN;
}

/* The result of call i (after the wait), or NULL for a call never started. */
GW_PDK gw_httpc_res_t *gw_pdk_http_result(gw_pdk_batch_t *b, int i)
{
    return i >= 0 && i < b->n ? b->res[i] : NULL;
}

/* ---- Redis calls (moongate.redis) ---- */

/* Push a reply as Lua values onto the waiting coroutine: strings, numbers,
 * tables; a nil element as the lightuserdata NULL (cjson.null); an error
 * element inside an array as { error = "..." }. */
static void gw_pdk_push_reply(lua_State *co, const gw_redis_reply_t *rep, bool top)
{
    luaL_checkstack(co, 4, "redis reply too deep");
    switch (rep->type) {
    case GW_REDIS_STRING:
    case GW_REDIS_STATUS:
        lua_pushlstring(co, rep->str, rep->len);
        break;
    case GW_REDIS_INTEGER:
        lua_pushnumber(co, (lua_Number)rep->integer);
        break;
    case GW_REDIS_ARRAY:
        lua_createtable(co, (int)rep->elements, 0);
        for (size_t i = 0; i < rep->elements; i++) {
            gw_pdk_push_reply(co, &rep->element[i], false);
            lua_rawseti(co, -2, (int)i + 1);
        }
        break;
    case GW_REDIS_ERROR:
        if (top) {
            lua_pushlstring(co, rep->str, rep->len);
        } else {
            lua_createtable(co, 0, 1);
            lua_pushlstring(co, rep->str, rep->len);
            lua_setfield(co, -2, "error");
        }
        break;
    default:
        if (top)
            lua_pushnil(co);
        else
            lua_pushlightuserdata(co, NULL);
        break;
    }
}

static void gw_pdk_redis_wake_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_lua_wakeup(t->data, 2);
}

/* The call ended: leave (value, nil) or (nil, error) on the coroutine's
 * stack and resume it from a fresh loop callback. */
static void gw_pdk_redis_cb(void *ud, const gw_redis_reply_t *reply, const char *error)
{
    gw_req_t *r = ud;
    lua_State *co = r->lua_co;
    r->lua_wait = NULL;
    r->lua_cancel = NULL;
    if (error) {
        lua_pushnil(co);
        lua_pushstring(co, error);
    } else if (reply->type == GW_REDIS_ERROR) {
        lua_pushnil(co);
        lua_pushlstring(co, reply->str, reply->len);
    } else {
        gw_pdk_push_reply(co, reply, true);
        lua_pushnil(co);
    }
    ev_timer_init(&r->lua_timer, gw_pdk_redis_wake_cb, 0., 0.);
    r->lua_timer.data = r;
    ev_timer_start(r->w->loop, &r->lua_timer);
}

static void gw_pdk_redis_cancel(gw_req_t *r)
{
    gw_redis_cancel(r->lua_wait);
    r->lua_wait = NULL;
}

/* The running coroutine and the worker's Redis client, or NULL with a
 * message. */
static gw_req_t *gw_pdk_redis_begin(char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (!r || !r->lua_co || r->lua_wait) {
        gw_pdk_fail(err, errlen, "needs a request phase or a timer");
        return NULL;
    }
    if (!gw_pdk_redis) {
        const char *url = r->w->cfg->redis_url;
        if (!url) {
            gw_pdk_fail(err, errlen, "no redis.url in the config");
            return NULL;
        }
        gw_pdk_redis = gw_redis_new(r->w->loop, url, 8, err, errlen);
        if (!gw_pdk_redis)
            return NULL;
    }
    return r;
}

/* Wait for call c (NULL: invalid arguments). GW_AGAIN, or GW_ERROR. */
static int gw_pdk_redis_wait(gw_req_t *r, gw_redis_call_t *c, char *err, size_t errlen)
{
    if (!c)
        return gw_pdk_fail(err, errlen, "invalid command");
    r->lua_wait = c;
    r->lua_cancel = gw_pdk_redis_cancel;
    r->lua_waiting = true;
    return GW_AGAIN;
}

/* One command; on GW_AGAIN the Lua side yields and gets (value, err). */
GW_PDK int gw_pdk_redis_command(int argc, const char **argv, const size_t *lens, double timeout,
                                char *err, size_t errlen)
{
    gw_req_t *r = gw_pdk_redis_begin(err, errlen);
    if (!r)
        return GW_ERROR;
    return gw_pdk_redis_wait(
        r, gw_redis_command(gw_pdk_redis, argc, argv, lens, timeout, gw_pdk_redis_cb, r), err,
        errlen);
}

/* Several commands on one connection; the value is a list of replies. */
GW_PDK int gw_pdk_redis_pipeline(int ncmds, const int *argcs, const char **argv, const size_t *lens,
                                 double timeout, char *err, size_t errlen)
{
    gw_req_t *r = gw_pdk_redis_begin(err, errlen);
    if (!r)
        return GW_ERROR;
    return gw_pdk_redis_wait(
        r, gw_redis_pipeline(gw_pdk_redis, ncmds, argcs, argv, lens, timeout, gw_pdk_redis_cb, r),
        err, errlen);
}

/* A Lua script by its SHA1, loaded into Redis when missing. */
GW_PDK int gw_pdk_redis_script(const char *script, size_t len, int nkeys, int argc,
                               const char **argv, const size_t *lens, double timeout, char *err,
                               size_t errlen)
{
    gw_req_t *r = gw_pdk_redis_begin(err, errlen);
    if (!r)
        return GW_ERROR;
    return gw_pdk_redis_wait(r,
                             gw_redis_script(gw_pdk_redis, script, len, nkeys, argc, argv, lens,
                                             timeout, gw_pdk_redis_cb, r),
                             err, errlen);
}

/* ---- logging ---- */

GW_PDK void gw_pdk_log(int level, const char *msg, size_t len)
{
    if (level < GW_LOG_ERROR || level > GW_LOG_DEBUG || level > (int)gw_log_level)
        return;
    gw_req_t *r = gw_lua_current;
    if (r && r->match.route)
        gw_log_write((gw_log_level_t)level, "[lua] route %s: %.*s (request %s)",
                     r->match.route->name, (int)len, msg, r->request_id);
    else
        gw_log_write((gw_log_level_t)level, "[lua] %.*s", (int)len, msg);
}
