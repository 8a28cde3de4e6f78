/*
 * The upstream side of a request: pick a target, take a pooled keep-alive
 * connection or connect, write the rewritten request head and stream the
 * body (as received, framing preserved), parse the response head, rewrite
 * it for the client, and stream the response body with backpressure: the
 * upstream is read only when the client took everything read before.
 * Failures before any response byte are retried on another target when the
 * request can be replayed; afterwards the client connection is closed, so
 * a truncated response never looks complete.
 */
#include "gw_http.h"
#include "gw_io.h"
#include "gw_log.h"
#include "gw_lua.h"
#include "gw_net.h"
#include "gw_path.h"
#include "gw_tunnel.h"
#include "gw_tls_upstream.h"
#include "gw_worker.h"

#include <errno.h>
#include <stdio.h>
#include <sys/uio.h>
#include <unistd.h>

typedef enum {
    GW_FAIL_CONNECT, /* could not connect */
    GW_FAIL_TIMEOUT, /* connect, send or read timed out */
    GW_FAIL_IO,      /* reset, closed or bad response before a response */
} gw_fail_t;

static void gw_up_io_cb(struct ev_loop *loop, ev_io *io, int revents);
static void gw_up_timer_cb(struct ev_loop *loop, ev_timer *t, int revents);
static void gw_proxy_connect(gw_req_t *r);
static int gw_up_send(gw_req_t *r);
static bool gw_resp_behind(const gw_req_t *r);
static void gw_bf_forward(gw_req_t *r);
static void gw_up_cut(gw_req_t *r);

/* Room for body bytes a response keeps after a head kept for plugins. */
#define GW_BF_MIN_ROOM 4096

/* ---- response parsing (llhttp callbacks) ---- */

static int gw_on_status(llhttp_t *p, const char *at, size_t len)
{
    gw_req_t *r = p->data;
    if (r->rstatus_text.len == 0)
        r->rstatus_text.p = at;
    r->rstatus_text.len += len;
    return 0;
}

static int gw_on_rheader_field(llhttp_t *p, const char *at, size_t len)
{
    gw_req_t *r = p->data;
    if (!r->in_name) {
        r->in_name = true;
        r->cur_name = (gw_str_t){at, 0};
        r->cur_value = (gw_str_t){NULL, 0};
    }
    r->cur_name.len += len;
    return 0;
}

static int gw_on_rheader_value(llhttp_t *p, const char *at, size_t len)
{
    gw_req_t *r = p->data;
    if (!r->in_value) {
        r->in_value = true;
        r->cur_value = (gw_str_t){at, 0};
    }
    r->cur_value.len += len;
    return 0;
}

static int gw_on_rheader_value_complete(llhttp_t *p)
{
    gw_req_t *r = p->data;
    if (r->nrheaders >= (size_t)r->c->w->cfg->limits.max_headers)
        return -1;
    if (!gw_http_is_token(r->cur_name) || !gw_http_valid_value(r->cur_value))
        return -1;
    r->rheaders[r->nrheaders].name = r->cur_name;
    r->rheaders[r->nrheaders].value = gw_http_trim(r->cur_value);
    r->nrheaders++;
    r->in_name = r->in_value = false;
    return 0;
}

static int gw_on_rheaders_complete(llhttp_t *p)
{
    return HPE_PAUSED;
}

/* Decoding a chunked body for an HTTP/1.0 client: move the chunk data
 * down over the chunk framing already parsed, so it stays contiguous. */
static int gw_on_rbody(llhttp_t *p, const char *at, size_t len)
{
    gw_req_t *r = p->data;
    if (r->rdecode) {
        memmove(r->rin->data + r->rdec_end, at, len);
        r->rdec_end += len;
    }
    return 0;
}

static int gw_on_rmessage_complete(llhttp_t *p)
{
    ((gw_req_t *)p->data)->rdone = true;
    return HPE_PAUSED;
}

static llhttp_settings_t gw_resp_settings = {
    .on_status = gw_on_status,
    .on_header_field = gw_on_rheader_field,
    .on_header_value = gw_on_rheader_value,
    .on_header_value_complete = gw_on_rheader_value_complete,
    .on_headers_complete = gw_on_rheaders_complete,
    .on_body = gw_on_rbody,
    .on_message_complete = gw_on_rmessage_complete,
};

/* ---- writing heads ---- */

typedef struct {
    char *p;
    size_t len, cap;
    bool overflow;
} gw_out_t;

static void gw_out_add(gw_out_t *o, const char *s, size_t n)
{
    if (o->overflow || o->len + n > o->cap) {
        o->overflow = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void gw_out_str(gw_out_t *o, gw_str_t s)
{
    gw_out_add(o, s.p, s.len);
}

#define GW_OUT_LIT(o, lit) gw_out_add((o), (lit), sizeof(lit) - 1)

static void gw_out_header(gw_out_t *o, gw_str_t name, gw_str_t value)
{
    gw_out_str(o, name);
    GW_OUT_LIT(o, ": ");
    gw_out_str(o, value);
    GW_OUT_LIT(o, "\r\n");
}

/* How many of hs to search for Connection headers: all of them when there
 * is one, none otherwise (the usual case, kept linear). */
static size_t gw_connection_scope(const gw_header_t *hs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (gw_str_caseeq_lit(hs[i].name, "connection"))
            return n;
    return 0;
}

/* Whether the header named `name` must be dropped: hop-by-hop, or listed
 * in one of the Connection headers among hs[0..n). */
static bool gw_drop_header(gw_str_t name, const gw_header_t *hs, size_t n)
{
    if (gw_http_is_hop_by_hop(name))
        return true;
    if (gw_str_caseeq_lit(name, "content-length") || gw_str_caseeq_lit(name, "transfer-encoding"))
        return false; /* framing is never dropped through Connection */
    for (size_t i = 0; i < n; i++)
        if (gw_str_caseeq_lit(hs[i].name, "connection") &&
            gw_http_connection_lists(hs[i].value, name))
            return true;
    return false;
}

/* Whether the method sent upstream (the client's, or the one a plugin
 * set) is idempotent, so that a request already sent may be replayed. */
static bool gw_is_idempotent(const gw_req_t *r)
{
    static const char *const methods[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    gw_str_t m = r->up_method.len ? r->up_method : r->method;
    for (size_t i = 0; i < GW_ARRAY_LEN(methods); i++)
        if (m.len == strlen(methods[i]) && memcmp(m.p, methods[i], m.len) == 0)
            return true;
    return false;
}

/* Append the request target sent upstream: the client's target as
 * received, or the normalised path without the matched prefix. */
static void gw_out_target(gw_out_t *o, gw_req_t *r)
{
    const gw_route_conf_t *route = r->match.route;
    if (r->up_path.len) {
        gw_out_str(o, r->up_path); /* moongate.upstream.set_path */
    } else if (!route->strip_path || r->match.strip_len == 0) {
        const char *q = memchr(r->url.p, '?', r->url.len);
        gw_out_add(o, r->url.p, q ? (size_t)(q - r->url.p) : r->url.len);
    } else {
        gw_str_t rest = {r->path + r->match.strip_len, r->path_len - r->match.strip_len};
        if (rest.len == 0 || rest.p[0] != '/')
            GW_OUT_LIT(o, "/");
        ssize_t n = o->overflow ? -1 : gw_path_encode(rest, o->p + o->len, o->cap - o->len);
        if (n < 0) {
            o->overflow = true;
            return;
        }
        o->len += (size_t)n;
    }
    if (r->up_query_set) {
        if (r->up_query.len) { /* moongate.upstream.set_query */
            GW_OUT_LIT(o, "?");
            gw_out_str(o, r->up_query);
        }
    } else if (r->has_query) {
        GW_OUT_LIT(o, "?");
        gw_out_str(o, r->query);
    }
}

/* Whether a plugin replaced or removed header `name` on `side` (so the
 * original is not sent). */
static bool gw_ops_replace(const gw_req_t *r, int side, gw_str_t name)
{
    for (size_t i = 0; i < r->nhdr_ops; i++) {
        const gw_hdr_op_t *o = &r->hdr_ops[i];
        if (o->side == side && o->op != GW_HDR_ADD && gw_str_caseeq(o->name, name))
            return true;
    }
    return false;
}

/*
 * Append the headers plugins set or added on `side`: an ADD or SET counts
 * unless a later SET or CLEAR of the same name replaced it. Headers in
 * `skip` (the ones the gateway writes itself, like Host) are left out.
 */
static void gw_out_ops(gw_out_t *o, const gw_req_t *r, int side, gw_str_t skip)
{
    for (size_t i = 0; i < r->nhdr_ops; i++) {
        const gw_hdr_op_t *op = &r->hdr_ops[i];
        if (op->side != side || op->op == GW_HDR_CLEAR || gw_str_caseeq(op->name, skip))
            continue;
        bool replaced = false;
        for (size_t j = i + 1; j < r->nhdr_ops && !replaced; j++)
            replaced = r->hdr_ops[j].side == side && r->hdr_ops[j].op != GW_HDR_ADD &&
                       gw_str_caseeq(r->hdr_ops[j].name, op->name);
        if (!replaced)
            gw_out_header(o, op->name, op->value);
    }
}

/* The value a plugin last SET for `name` on `side`, if any. */
static bool gw_ops_value(const gw_req_t *r, int side, gw_str_t name, gw_str_t *value)
{
    bool found = false;
    for (size_t i = 0; i < r->nhdr_ops; i++) {
        const gw_hdr_op_t *o = &r->hdr_ops[i];
        if (o->side == side && gw_str_caseeq(o->name, name)) {
            found = o->op != GW_HDR_CLEAR;
            *value = o->value;
        }
    }
    return found;
}

/* The headers the gateway adds to every upstream request: X-Forwarded-For
 * (every one received, in order, then the client), X-Forwarded-Proto,
 * X-Forwarded-Host and X-Request-Id; each left out when a plugin set or
 * cleared that header itself. */
static void gw_out_forwarded(gw_out_t *o, const gw_req_t *r)
{
    bool ops = r->nhdr_ops > 0;
    if (!ops || !gw_ops_replace(r, GW_SIDE_UPSTREAM, GW_STR("X-Forwarded-For"))) {
        GW_OUT_LIT(o, "X-Forwarded-For: ");
        for (size_t i = 0; i < r->nheaders; i++)
            if (gw_str_caseeq_lit(r->headers[i].name, "x-forwarded-for") &&
                r->headers[i].value.len) {
                gw_out_str(o, r->headers[i].value);
                GW_OUT_LIT(o, ", ");
            }
        char client[INET6_ADDRSTRLEN];
        size_t clen = gw_net_ntop((const struct sockaddr_storage *)&r->peer, client, sizeof client);
        gw_out_add(o, client, clen);
        GW_OUT_LIT(o, "\r\n");
    }
    if (!ops || !gw_ops_replace(r, GW_SIDE_UPSTREAM, GW_STR("X-Forwarded-Proto"))) {
        if (r->tls)
            GW_OUT_LIT(o, "X-Forwarded-Proto: https\r\n");
        else
            GW_OUT_LIT(o, "X-Forwarded-Proto: http\r\n");
    }
    if (r->host_header.len &&
        (!ops || !gw_ops_replace(r, GW_SIDE_UPSTREAM, GW_STR("X-Forwarded-Host"))))
        gw_out_header(o, GW_STR("X-Forwarded-Host"), r->host_header);
    if (!ops || !gw_ops_replace(r, GW_SIDE_UPSTREAM, GW_STR("X-Request-Id")))
        gw_out_header(o, GW_STR("X-Request-Id"), (gw_str_t){r->request_id, strlen(r->request_id)});
}

/*
 * Write the request head for the upstream into r->out: HTTP/1.1, Host per
 * route, hop-by-hop headers dropped, X-Forwarded-* and X-Request-Id set.
 * Returns GW_OK, or GW_ERROR when it does not fit the buffer.
 */
static int gw_build_request_head(gw_req_t *r)
{
    gw_worker_t *w = r->c->w;
    const gw_route_conf_t *route = r->match.route;
    if (!r->out)
        r->out = gw_buf_get(&w->bufs);
    gw_out_t o = {r->out->data, 0, r->out->cap, false};
    gw_out_str(&o, r->up_method.len ? r->up_method : r->method);
    GW_OUT_LIT(&o, " ");
    gw_out_target(&o, r);
    GW_OUT_LIT(&o, " HTTP/1.1\r\nHost: ");
    gw_str_t host_hdr = r->host_header, set_host;
    if (r->nhdr_ops && gw_ops_value(r, GW_SIDE_UPSTREAM, GW_STR("Host"), &set_host))
        gw_out_str(&o, set_host);
    else if (route->host_header)
        gw_out_add(&o, route->host_header, strlen(route->host_header));
    else if (route->preserve_host && host_hdr.len)
        gw_out_str(&o, host_hdr);
    else
        gw_out_add(&o, r->target->name, strlen(r->target->name));
    GW_OUT_LIT(&o, "\r\n");
    size_t nconn = gw_connection_scope(r->headers, r->nheaders);
    for (size_t i = 0; i < r->nheaders; i++) {
        gw_str_t n = r->headers[i].name;
        if (gw_str_caseeq_lit(n, "host") || gw_str_caseeq_lit(n, "expect") ||
            gw_str_caseeq_lit(n, "x-forwarded-proto") || gw_str_caseeq_lit(n, "x-forwarded-host") ||
            gw_str_caseeq_lit(n, "x-request-id") || gw_str_caseeq_lit(n, "x-forwarded-for") ||
            gw_drop_header(n, r->headers, nconn) ||
            (r->nhdr_ops && gw_ops_replace(r, GW_SIDE_UPSTREAM, n)))
            continue;
        if (r->up_body_set &&
            (gw_str_caseeq_lit(n, "content-length") || gw_str_caseeq_lit(n, "transfer-encoding")))
            continue; /* the body a plugin set has its own length */
        gw_out_header(&o, n, r->headers[i].value);
    }
    if (r->up_body_set) {
        char cl[48];
        int k = snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", r->up_body_len);
        gw_out_add(&o, cl, (size_t)k);
    }
    if (r->nhdr_ops)
        gw_out_ops(&o, r, GW_SIDE_UPSTREAM, GW_STR("Host"));
    if (r->upgrade) {
        GW_OUT_LIT(&o, "Connection: upgrade\r\nUpgrade: ");
        gw_out_str(&o, gw_tunnel_upgrade_value(r));
        GW_OUT_LIT(&o, "\r\n");
    }
    gw_out_forwarded(&o, r);
    GW_OUT_LIT(&o, "\r\n");
    if (o.overflow)
        return GW_ERROR;
    r->out->start = 0;
    r->out->end = o.len;
    r->out_sent = 0;
    return GW_OK;
}

/*
 * Write the response head for the client into r->out from the parsed
 * upstream head: hop-by-hop headers dropped, Transfer-Encoding dropped when
 * the body is decoded, Connection set to what the gateway will do.
 */
static int gw_build_response_head(gw_req_t *r)
{
    gw_out_t o = {r->out->data, 0, r->out->cap, false};
    /* llhttp guarantees a three-digit status code. */
    char line[] = "HTTP/1.1 000 ";
    line[9] = (char)('0' + r->status / 100 % 10);
    line[10] = (char)('0' + r->status / 10 % 10);
    line[11] = (char)('0' + r->status % 10);
    gw_out_add(&o, line, sizeof line - 1);
    if (r->rstatus_text.len && r->status == llhttp_get_status_code(&r->rparser))
        gw_out_str(&o, r->rstatus_text);
    else
        gw_out_add(&o, gw_http_reason(r->status), strlen(gw_http_reason(r->status)));
    GW_OUT_LIT(&o, "\r\n");
    size_t nconn = gw_connection_scope(r->rheaders, r->nrheaders);
    for (size_t i = 0; i < r->nrheaders; i++) {
        gw_str_t name = r->rheaders[i].name;
        if (gw_drop_header(name, r->rheaders, nconn))
            continue;
        if (r->rdecode && gw_str_caseeq_lit(name, "transfer-encoding"))
            continue;
        if (r->bfilter && gw_str_caseeq_lit(name, "content-length"))
            continue; /* body filters may change the length */
        if (r->nhdr_ops && gw_ops_replace(r, GW_SIDE_RESPONSE, name))
            continue;
        gw_out_header(&o, name, r->rheaders[i].value);
    }
    if (r->nhdr_ops)
        gw_out_ops(&o, r, GW_SIDE_RESPONSE, GW_STR(""));
    if (r->bfilter && (r->status == 204 || r->status == 304))
        r->bfilter = false; /* a header_filter made it a response without a body */
    if (r->bfilter && r->parser.http_minor >= 1)
        GW_OUT_LIT(&o, "Transfer-Encoding: chunked\r\n");
    if (r->c->w->stopping)
        r->close_after = true;
    if (r->upgrade && r->status == 101) {
        gw_str_t proto = gw_tunnel_upgrade_value(r);
        for (size_t i = 0; i < r->nrheaders; i++)
            if (gw_str_caseeq_lit(r->rheaders[i].name, "upgrade"))
                proto = r->rheaders[i].value;
        GW_OUT_LIT(&o, "Connection: upgrade\r\nUpgrade: ");
        gw_out_str(&o, proto);
        GW_OUT_LIT(&o, "\r\n");
    } else if (r->close_after)
        GW_OUT_LIT(&o, "Connection: close\r\n");
    else if (r->parser.http_minor == 0)
        GW_OUT_LIT(&o, "Connection: keep-alive\r\n");
    GW_OUT_LIT(&o, "\r\n");
    if (o.overflow)
        return GW_ERROR;
    r->out->start = 0;
    r->out->end = o.len;
    r->out_sent = 0;
    return GW_OK;
}

/* ---- connection handling ---- */

/* The read (or send) timeout of r: a plugin's, else its upstream's. */
static double gw_read_or_send(const gw_req_t *r, bool read)
{
    if (read)
        return r->to_read > 0 ? r->to_read : r->up->conf->read_timeout;
    return r->to_send > 0 ? r->to_send : r->up->conf->send_timeout;
}

static void gw_up_watch(gw_req_t *r, int events)
{
    gw_upconn_watch(r->uc, events);
}

static void gw_up_timer(gw_req_t *r, double after)
{
    gw_upconn_t *uc = r->uc;
    if (after <= 0) {
        ev_timer_stop(uc->w->loop, &uc->timer);
        return;
    }
    uc->timer.repeat = after;
    ev_timer_again(uc->w->loop, &uc->timer);
}

/* Whether request bytes received (or set by a plugin) wait to go upstream. */
static bool gw_req_unsent(const gw_req_t *r)
{
    if (r->up_body_set)
        return r->up_body_sent < r->up_body_len;
    return r->body_parsed > r->body_sent;
}

/* Whether the whole request went upstream. */
static bool gw_req_all_sent(const gw_req_t *r)
{
    return r->body_done && r->body_sent >= r->msg_end &&
           (!r->up_body_set || r->up_body_sent == r->up_body_len);
}

/* The client is behind: stop reading the upstream, and stop its read
 * timeout too (the client's send timeout applies meanwhile). */
static void gw_up_pause(gw_req_t *r)
{
    gw_up_watch(r, gw_req_unsent(r) ? EV_WRITE : 0);
    gw_up_timer(r, 0);
}

/* Give up the upstream connection: back to the pool when reusable. */
static void gw_up_release(gw_req_t *r, bool ok)
{
    gw_upconn_t *uc = r->uc;
    if (!uc)
        return;
    gw_upstream_t *up = r->up;
    double now = ev_now(r->c->w->loop);
    if (!r->direct_host) {
        gw_balancer_release(up->balancer, r->target->index);
        gw_balancer_report(up->balancer, r->target->index, ok, now - r->t_upstream, now);
    }
    r->uc = NULL;
    uc->requests++;
    if (ok && r->upstream_reusable && !r->direct_owned) {
        gw_upstream_pool_put(uc);
        return;
    }
    gw_upconn_close(uc);
}

void gw_proxy_abort(gw_req_t *r)
{
    gw_upconn_t *uc = r->uc;
    if (!uc)
        return;
    if (!r->direct_host)
        gw_balancer_release(r->up->balancer, r->target->index);
    r->uc = NULL;
    gw_upconn_close(uc);
}

/*
 * The current attempt failed before a response head arrived. Retry on
 * another target when allowed (nothing sent yet, or an idempotent request
 * that can be replayed), else answer 502 or 504.
 */
static void gw_proxy_fail(gw_req_t *r, gw_fail_t why, const char *detail)
{
    gw_conn_t *c = r->c;
    gw_upconn_t *uc = r->uc;
    bool reused = uc && uc->requests > 0;
    bool replayable = !r->body_discarded && (!r->sent_any || gw_is_idempotent(r));
    gw_log_warn("upstream %s target %s: %s (request %s)", r->up->conf->name, r->target->name,
                detail, r->request_id);
    if (uc) {
        /* A reused keep-alive connection the upstream had closed is not the
         * target's fault and does not use up a retry. */
        bool stale = reused && why == GW_FAIL_IO && !r->rgot;
        r->upstream_reusable = false;
        if (stale) {
            if (!r->direct_host)
                gw_balancer_release(r->up->balancer, r->target->index);
            r->uc = NULL;
            gw_upconn_close(uc);
            if (replayable && (gw_is_idempotent(r) || r->body_mode == GW_BODY_NONE)) {
                if (!r->direct_host)
                    r->tried &= ~((uint64_t)1 << (r->target->index & 63));
                gw_proxy_connect(r);
                return;
            }
        } else {
            gw_up_release(r, false);
        }
    } else if (!r->direct_host) {
        double now = ev_now(c->w->loop);
        gw_balancer_report(r->up->balancer, r->target->index, false, 0, now);
    }
    if (r->rhead_done) {
        gw_conn_error(c, 502, "upstream failed");
        return;
    }
    if (r->retries_left > 0 && replayable) {
        r->retries_left--;
        gw_proxy_connect(r);
        return;
    }
    if (why == GW_FAIL_TIMEOUT)
        gw_conn_error(c, 504, "upstream timed out");
    else
        gw_conn_error(c, 502, "upstream unavailable");
}

/* Compute the hash key for the hash balancer: header, cookie or client. */
static gw_str_t gw_hash_key(gw_req_t *r, char *buf, size_t size)
{
    const gw_upstream_conf_t *conf = r->up->conf;
    if (conf->balance != GW_BALANCE_HASH)
        return (gw_str_t){NULL, 0};
    if (conf->hash_on == GW_HASH_ON_IP) {
        size_t n = gw_net_ntop((const struct sockaddr_storage *)&r->c->peer, buf, size);
        return (gw_str_t){buf, n};
    }
    gw_str_t name = {conf->hash_name, strlen(conf->hash_name)};
    for (size_t i = 0; i < r->nheaders; i++) {
        if (conf->hash_on == GW_HASH_ON_HEADER && gw_str_caseeq(r->headers[i].name, name))
            return r->headers[i].value;
        if (conf->hash_on == GW_HASH_ON_COOKIE && gw_str_caseeq_lit(r->headers[i].name, "cookie")) {
            gw_str_t v = r->headers[i].value;
            const char *p = v.p, *end = v.p + v.len;
            while (p < end) {
                while (p < end && (*p == ' ' || *p == ';'))
                    p++;
                const char *eq = memchr(p, '=', (size_t)(end - p));
                if (!eq)
                    break;
                const char *semi = memchr(eq, ';', (size_t)(end - eq));
                if (!semi)
                    semi = end;
                if ((size_t)(eq - p) == name.len && memcmp(p, name.p, name.len) == 0)
                    return (gw_str_t){eq + 1, (size_t)(semi - eq - 1)};
                p = semi;
            }
        }
    }
    return (gw_str_t){NULL, 0};
}

/* Pick a target and get a connection to it, then start writing. */
static void gw_proxy_connect(gw_req_t *r)
{
    gw_worker_t *w = r->c->w;
    gw_upstream_t *up = r->up;
    double now = ev_now(w->loop);
    char keybuf[INET6_ADDRSTRLEN];
    int idx = -1;
    if (!r->direct_host) {
        idx = gw_balancer_pick(up->balancer, gw_hash_key(r, keybuf, sizeof keybuf), r->tried, now);
        if (idx < 0) {
            gw_conn_error(r->c, 502, "upstream has no targets");
            return;
        }
        r->target = &up->targets[idx];
        r->tried |= (uint64_t)1 << (idx & 63);
    }
    if (gw_build_request_head(r) != GW_OK) {
        gw_conn_error(r->c, 431, "request header too large");
        return;
    }
    r->body_sent = r->head_len;
    r->up_body_sent = 0;
    r->sent_any = false;
    r->head_sent_up = false;
    r->rgot = false;
    if (r->rin) {
        /* A previous attempt's partial response is forgotten. */
        gw_buf_put(&w->bufs, r->rin);
        r->rin = NULL;
    }
    r->t_upstream = now;
    gw_upconn_t *uc = gw_upstream_pool_get(r->target);
    if (!uc) {
        uc = gw_upconn_open(w, r->target);
        if (!uc) {
            char detail[128];
            snprintf(detail, sizeof detail, "connect failed: %s", strerror(errno));
            gw_proxy_fail(r, GW_FAIL_CONNECT, detail);
            return;
        }
    }
    if (idx >= 0)
        gw_balancer_acquire(up->balancer, idx);
    r->uc = uc;
    uc->req = r;
    ev_set_cb(&uc->io, gw_up_io_cb);
    uc->io.data = r;
    ev_io_modify(&uc->io, 0);
    ev_set_cb(&uc->timer, gw_up_timer_cb);
    uc->timer.data = r;
    if (uc->connecting) {
        gw_up_watch(r, EV_WRITE);
        gw_up_timer(r, r->to_connect > 0 ? r->to_connect : up->conf->connect_timeout);
        return;
    }
    gw_up_send(r);
}

void gw_proxy_start(gw_req_t *r)
{
    gw_conn_t *c = r->c;
    gw_worker_t *w = c->w;
    r->up = &w->upstreams[r->up_index ? (size_t)r->up_index - 1 : r->match.route->upstream_index];
    r->retries_left = r->retries_set ? r->retries : r->up->conf->retries;
    if (r->direct_host)
        r->target = gw_upstream_direct(w, r); /* moongate.upstream.set_target */
    if (r->expect_continue) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        struct iovec v = {(void *)cont, sizeof cont - 1};
        if (gw_conn_sendv(c, &v, 1) != (ssize_t)(sizeof cont - 1)) {
            gw_conn_close(c);
            return;
        }
    }
    gw_proxy_connect(r);
}

/*
 * Write the request head and the body bytes received so far. Returns
 * GW_OK, GW_AGAIN when the socket is full, or GW_DONE when the attempt
 * failed (already handled).
 */
static int gw_up_send(gw_req_t *r)
{
    gw_upconn_t *uc = r->uc;
    gw_conn_t *c = r->c;
    for (;;) {
        struct iovec iov[2];
        int n = 0;
        if (r->out_sent < r->out->end && !r->rhead_done) {
            iov[n].iov_base = r->out->data + r->out_sent;
            iov[n++].iov_len = r->out->end - r->out_sent;
        }
        if (r->up_body_set && r->up_body_sent < r->up_body_len) {
            iov[n].iov_base = r->up_body + r->up_body_sent; /* moongate.upstream.set_body */
            iov[n++].iov_len = r->up_body_len - r->up_body_sent;
        } else if (!r->up_body_set && r->body_parsed > r->body_sent) {
            iov[n].iov_base = c->in->data + r->body_sent;
            iov[n++].iov_len = r->body_parsed - r->body_sent;
        }
        if (n == 0)
            break;
        ssize_t wr = gw_upconn_sendv(uc, iov, n);
        if (wr < 0) {
            if (errno == EAGAIN) {
                gw_up_watch(r, EV_READ | EV_WRITE);
                gw_up_timer(r, gw_read_or_send(r, false));
                /* Waiting on the upstream, not on the client. */
                if (!(c->io.events & EV_WRITE))
                    ev_timer_stop(c->w->loop, &c->timer);
                return GW_AGAIN;
            }
            char detail[128];
            snprintf(detail, sizeof detail, "send failed: %s", strerror(errno));
            gw_proxy_fail(r, GW_FAIL_IO, detail);
            return GW_DONE;
        }
        r->sent_any = true;
        size_t left = (size_t)wr;
        if (r->out_sent < r->out->end && !r->rhead_done) {
            size_t k = r->out->end - r->out_sent;
            k = k < left ? k : left;
            r->out_sent += k;
            left -= k;
        }
        if (r->up_body_set)
            r->up_body_sent += left;
        else
            r->body_sent += left;
    }
    r->head_sent_up = true;
    if (r->rhead_done && gw_resp_behind(r)) {
        gw_up_pause(r);
        gw_conn_want_body(c);
        return GW_OK;
    }
    gw_up_watch(r, EV_READ);
    if (gw_req_all_sent(r))
        gw_up_timer(r, r->rhead_done ? 0 : gw_read_or_send(r, true));
    else {
        gw_up_timer(r, 0);
        gw_conn_want_body(c);
    }
    return GW_OK;
}

void gw_proxy_send_body(gw_req_t *r)
{
    if (r->uc && !r->uc->connecting)
        gw_up_send(r);
}

/* The upstream response is complete: release the connection, send the
 * rest to the client. */
static void gw_up_done(gw_req_t *r)
{
    r->t_upstream_done = ev_now(r->c->w->loop);
    r->upstream_reusable =
        r->upstream_reusable && gw_req_all_sent(r) && llhttp_should_keep_alive(&r->rparser);
    gw_up_release(r, true);
    if (r->bfilter) {
        gw_bf_forward(r);
        return;
    }
    gw_conn_flush_response(r->c);
}

/*
 * The upstream failed after its response head arrived. The client
 * connection is closed, so that a cut response never looks complete; but
 * when nothing went out yet (body filters hold the head until their first
 * bytes), the client gets a 502 instead.
 */
static void gw_up_cut(gw_req_t *r)
{
    if (r->bfilter && !r->head_to_client) {
        gw_conn_error(r->c, 502, "upstream failed");
        return;
    }
    gw_conn_abort(r->c);
}

/* Whether response bytes wait for the client, or for the body filters. */
static bool gw_resp_behind(const gw_req_t *r)
{
    return r->rsend_end > r->rsend_start ||
           (r->bfilter && (r->bf_running || r->bf_len > r->bf_sent));
}

/*
 * Hand the body bytes parsed so far (and, once the upstream response is
 * complete, its end) to the body_filter phase. The upstream is not read
 * while the phase runs; the filtered bytes go to the client, whose
 * draining resumes the upstream. The response head waits until the filters
 * produced their first bytes, so that a filter that fails before that (one
 * that buffers the whole body, say) still gets the client a 500.
 */
static void gw_bf_forward(gw_req_t *r)
{
    if (r->bf_running || r->bf_eof_done)
        return;
    if (!r->rdone && r->rsend_end == r->rsend_start) {
        gw_proxy_resume_response(r); /* nothing new: read on */
        return;
    }
    if (r->uc)
        gw_up_pause(r);
    r->bf_running = true;
    int rc = gw_lua_run(r, GW_LUA_BODY_FILTER);
    if (rc != GW_AGAIN)
        gw_proxy_body_filter_done(r, rc);
}

void gw_proxy_body_filter_done(gw_req_t *r, int rc)
{
    if (rc != GW_OK)
        return; /* answered with a 500, or the connection was closed */
    r->bf_running = false;
    if (r->rdone)
        r->bf_eof_done = true;
    r->rsend_start = r->rsend_end; /* the filters took them */
    if (!r->bf_started && r->bf_len == r->bf_sent && !r->bf_eof_done) {
        gw_proxy_resume_response(r); /* nothing to send yet: the head waits */
        return;
    }
    r->bf_started = true;
    gw_conn_flush_response(r->c);
}

/* Decide how the response body is framed for the client. */
static void gw_response_framing(gw_req_t *r)
{
    int status = r->status;
    bool head = r->parser.method == HTTP_HEAD;
    r->upstream_reusable = true;
    if (head || (status >= 100 && status < 200) || status == 204 || status == 304)
        r->rbody_mode = GW_BODY_NONE;
    else if (r->rparser.flags & F_CHUNKED)
        r->rbody_mode = GW_BODY_CHUNKED;
    else if (r->rparser.flags & F_CONTENT_LENGTH)
        r->rbody_mode = r->rparser.content_length > 0 ? GW_BODY_LENGTH : GW_BODY_NONE;
    else
        r->rbody_mode = GW_BODY_EOF;
    if (r->rbody_mode == GW_BODY_CHUNKED && r->parser.http_minor == 0) {
        r->rdecode = true;
        r->close_after = true;
    }
    if (r->rbody_mode == GW_BODY_EOF) {
        r->close_after = true;
        r->upstream_reusable = false;
    }
    gw_bfilter_framing(r);
}

/*
 * Parse response body bytes [rparsed, end) of rin and set the range to send
 * to the client. Returns GW_OK or GW_ERROR (bad framing from upstream).
 */
static int gw_parse_response_body(gw_req_t *r)
{
    gw_buf_t *rin = r->rin;
    if (r->rbody_mode == GW_BODY_EOF) {
        r->rsend_end = rin->end;
        r->rparsed = rin->end;
        return GW_OK;
    }
    if (r->rparsed == rin->end)
        return GW_OK;
    size_t from = r->rparsed;
    llhttp_errno_t err = llhttp_execute(&r->rparser, rin->data + from, rin->end - from);
    size_t upto = rin->end;
    if (err == HPE_PAUSED) {
        upto = (size_t)(llhttp_get_error_pos(&r->rparser) - rin->data);
        if (upto < rin->end)
            r->upstream_reusable = false; /* bytes after the response */
    } else if (err != HPE_OK) {
        return GW_ERROR;
    }
    r->rparsed = upto;
    r->rsend_end = r->rdecode ? r->rdec_end : upto;
    return GW_OK;
}

/* The response head (ending at offset head_end of rin) may go out: write
 * the client's head and start on the body, or on a tunnel after a 101 to
 * an upgrade. GW_OK, or GW_DONE when the request ended (or became a
 * tunnel). */
static int gw_up_head_ready(gw_req_t *r, size_t head_end)
{
    bool switching = r->upgrade && llhttp_get_status_code(&r->rparser) == 101;
    if (switching && r->status != 101)
        r->close_after = true; /* a plugin replaced the 101: what follows is not HTTP */
    if (gw_build_response_head(r) != GW_OK) {
        r->rhead_done = false;
        gw_proxy_fail(r, GW_FAIL_IO, "response head too large");
        return GW_DONE;
    }
    if (switching && r->status == 101) {
        double now = ev_now(r->w->loop);
        gw_balancer_report(r->up->balancer, r->target->index, true, now - r->t_upstream, now);
        gw_tunnel_start(r, head_end);
        return GW_DONE;
    }
    llhttp_resume(&r->rparser);
    r->rparsed = head_end;
    r->rsend_start = r->rsend_end = r->rdec_end = head_end;
    /* body_filter and log plugins may read the response head after body
     * bytes came: the buffer is then refilled after the head, unless that
     * leaves too little room. */
    bool keep = r->bfilter || (gw_lua_route_phases(r->w, r->match.route->index) & GW_LUA_LOG);
    r->rbase = keep && r->rin->cap - head_end >= GW_BF_MIN_ROOM ? head_end : 0;
    return GW_OK;
}

/*
 * The response head is parsed (it ends at offset head_end of rin). Returns
 * GW_DECLINED after skipping an interim (1xx) response, GW_OK when the head
 * is ready to go out, GW_AGAIN while header_filter plugins wait (the
 * upstream is paused until gw_proxy_header_filter_done), GW_DONE when the
 * request ended.
 */
static int gw_up_head_done(gw_req_t *r, size_t head_end)
{
    r->status = llhttp_get_status_code(&r->rparser);
    bool switching = r->status == 101 && r->upgrade;
    if (r->status >= 100 && r->status < 200 && !switching) {
        /* Interim responses (100, 102, 103) are not relayed. */
        gw_buf_t *rin = r->rin;
        memmove(rin->data, rin->data + head_end, rin->end - head_end);
        rin->end -= head_end;
        r->rparsed = 0;
        r->nrheaders = 0;
        r->rstatus_text = (gw_str_t){NULL, 0};
        r->in_name = r->in_value = false;
        llhttp_init(&r->rparser, HTTP_RESPONSE, &gw_resp_settings);
        r->rparser.data = r;
        return GW_DECLINED;
    }
    r->rhead_done = true;
    gw_response_framing(r);
    if (switching)
        r->upstream_reusable = false; /* the connection now speaks another protocol */
    if (gw_lua_route_phases(r->w, r->match.route->index) & GW_LUA_HEADER_FILTER) {
        r->rparsed = head_end; /* kept while the plugins run */
        gw_up_watch(r, 0);
        gw_up_timer(r, 0);
        int rc = gw_lua_run(r, GW_LUA_HEADER_FILTER);
        if (rc != GW_OK)
            return rc;
    }
    return gw_up_head_ready(r, head_end);
}

/* Parse what rin holds: the head first, then body bytes. Returns GW_OK,
 * GW_AGAIN (need more), or GW_DONE when the request was ended here. */
static int gw_up_parse(gw_req_t *r)
{
    gw_buf_t *rin = r->rin;
    while (!r->rhead_done) {
        llhttp_errno_t err =
            llhttp_execute(&r->rparser, rin->data + r->rparsed, rin->end - r->rparsed);
        if (err == HPE_PAUSED) {
            int rc = gw_up_head_done(r, (size_t)(llhttp_get_error_pos(&r->rparser) - rin->data));
            if (rc == GW_DECLINED)
                continue; /* an interim response was skipped */
            if (rc != GW_OK)
                return rc;
            break;
        }
        if (err != HPE_OK) {
            gw_proxy_fail(r, GW_FAIL_IO, "invalid response");
            return GW_DONE;
        }
        r->rparsed = rin->end;
        if (rin->end == rin->cap) {
            gw_proxy_fail(r, GW_FAIL_IO, "response head too large");
            return GW_DONE;
        }
        return GW_AGAIN;
    }
    if (r->rbody_mode == GW_BODY_NONE) {
        if (rin->end > r->rparsed)
            r->upstream_reusable = false;
        r->rdone = true;
        return GW_OK;
    }
    if (gw_parse_response_body(r) != GW_OK) {
        gw_log_warn("upstream %s target %s: invalid response body (request %s)", r->up->conf->name,
                    r->target->name, r->request_id);
        gw_up_release(r, false);
        gw_up_cut(r);
        return GW_DONE;
    }
    return GW_OK;
}

/* The upstream closed or failed while the response was being read. */
static void gw_up_eof(gw_req_t *r, bool error)
{
    if (!r->rhead_done) {
        gw_proxy_fail(r, GW_FAIL_IO, error ? "connection reset" : "connection closed");
        return;
    }
    if (!error && r->rbody_mode == GW_BODY_EOF) {
        r->rdone = true;
        r->upstream_reusable = false;
        gw_up_done(r);
        return;
    }
    gw_log_warn("upstream %s target %s: response truncated (request %s)", r->up->conf->name,
                r->target->name, r->request_id);
    gw_up_release(r, false);
    gw_up_cut(r);
}

/* Send what was parsed to the client: the whole response is there, or
 * part of it (then pause the upstream if the client is behind). */
static void gw_up_forward(gw_req_t *r)
{
    if (r->bfilter && !r->rdone) {
        gw_bf_forward(r);
        return;
    }
    if (r->rdone) {
        gw_up_done(r);
        return;
    }
    if (r->rsend_end > r->rsend_start || r->out_sent < r->out->end) {
        if (gw_conn_flush_response(r->c) == GW_DONE)
            return;
        if (r->uc && (r->rsend_end > r->rsend_start || r->out_sent < r->out->end))
            gw_up_pause(r);
    }
}

/* Read from the upstream and move what was read towards the client. */
static void gw_up_read(gw_req_t *r)
{
    gw_worker_t *w = r->c->w;
    gw_upconn_t *uc = r->uc;
    if (!r->rin) {
        r->rin = gw_buf_get(&w->bufs);
        llhttp_init(&r->rparser, HTTP_RESPONSE, &gw_resp_settings);
        r->rparser.data = r;
        r->in_name = r->in_value = false;
    }
    gw_buf_t *rin = r->rin;
    if (r->rhead_done && gw_resp_behind(r)) {
        gw_up_pause(r); /* the client (or a body filter) has not taken the last bytes yet */
        return;
    }
    ssize_t n = gw_upconn_recv(uc, rin->data + rin->end, rin->cap - rin->end);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0) {
        gw_up_eof(r, n < 0);
        return;
    }
    rin->end += (size_t)n;
    r->rgot = true;
    if (gw_req_all_sent(r))
        gw_up_timer(r, gw_read_or_send(r, true));
    if (gw_up_parse(r) != GW_OK)
        return;
    gw_up_forward(r);
}

void gw_proxy_header_filter_done(gw_req_t *r, int rc)
{
    if (rc != GW_OK || gw_up_head_ready(r, r->rparsed) != GW_OK || gw_up_parse(r) != GW_OK)
        return;
    gw_up_forward(r);
}

int gw_proxy_resume_response(gw_req_t *r)
{
    if (!r->uc || !r->rhead_done || r->bf_running)
        return GW_OK;
    gw_buf_t *rin = r->rin;
    /* All parsed bytes went out: start the buffer over. */
    rin->end = r->rparsed = r->rsend_start = r->rsend_end = r->rdec_end = r->rbase;
    if (r->rbase == 0)
        r->nrheaders = 0; /* the head is overwritten: plugins see no headers */
    bool sending = !gw_req_all_sent(r);
    gw_up_watch(r, EV_READ | (sending && gw_req_unsent(r) ? EV_WRITE : 0));
    if (!sending)
        gw_up_timer(r, gw_read_or_send(r, true));
    return GW_OK;
}

/*
 * r's connection is being set up: finish the TCP connect, then, to a TLS
 * upstream, the handshake (both under the connect timeout; a failure of
 * either is a connect failure), then start sending.
 */
static void gw_up_connect_step(gw_req_t *r)
{
    gw_upconn_t *uc = r->uc;
    char detail[320];
    if (!uc->handshaking) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(uc->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            snprintf(detail, sizeof detail, "connect failed: %s", strerror(err));
            gw_proxy_fail(r, GW_FAIL_CONNECT, detail);
            return;
        }
        uc->handshaking = uc->ssl != NULL;
    }
    if (uc->handshaking) {
        int events = 0;
        int rc = gw_tls_upstream_handshake(uc, &events, detail, sizeof detail);
        if (rc == GW_AGAIN) {
            gw_up_watch(r, events);
            return;
        }
        if (rc != GW_OK) {
            gw_proxy_fail(r, GW_FAIL_CONNECT, detail);
            return;
        }
        uc->handshaking = false;
    }
    uc->connecting = false;
    gw_up_send(r);
}

static void gw_up_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    gw_req_t *r = io->data;
    gw_upconn_t *uc = r->uc;
    if (uc->connecting) {
        gw_up_connect_step(r);
        return;
    }
    revents = gw_upconn_revents(uc, revents);
    if (revents & EV_WRITE) {
        if (gw_up_send(r) == GW_DONE)
            return;
    }
    if (revents & EV_READ)
        gw_up_read(r);
}

static void gw_up_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_req_t *r = t->data;
    if (r->rhead_done) {
        gw_log_warn("upstream %s target %s: read timeout mid-response (request %s)",
                    r->up->conf->name, r->target->name, r->request_id);
        gw_up_release(r, false);
        gw_up_cut(r);
        return;
    }
    const char *what = r->uc->connecting                       ? "connect timeout"
                       : r->head_sent_up && gw_req_all_sent(r) ? "read timeout"
                                                               : "send timeout";
    gw_proxy_fail(r, GW_FAIL_TIMEOUT, what);
}
