/*
 * The client side of the proxy: accept, read and parse request heads in
 * place (llhttp; header names and values are slices of the connection's
 * buffer), validate and route them, read request bodies for the upstream,
 * write responses, and keep connections alive between requests. An idle
 * keep-alive connection gives its buffer back to the pool.
 */
#include "gw_accesslog.h"
#include "gw_http.h"
#include "gw_io.h"
#include "gw_log.h"
#include "gw_lua.h"
#include "gw_metrics.h"
#include "gw_net.h"
#include "gw_path.h"
#include "gw_tls.h"
#include "gw_tunnel.h"
#include "gw_worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static void gw_conn_io_cb(struct ev_loop *loop, ev_io *io, int revents);
static void gw_conn_on_timer(struct ev_loop *loop, ev_timer *t, int revents);
static void gw_conn_parse_head(gw_conn_t *c);
static void gw_conn_next_request(gw_conn_t *c);
static void gw_conn_detach_for_log(gw_conn_t *c, gw_req_t *r, size_t leftover_at);

/* ---- request head parsing (llhttp callbacks) ---- */

static int gw_on_url(llhttp_t *p, const char *at, size_t len)
{
    gw_req_t *r = p->data;
    if (r->url.len == 0)
        r->url.p = at;
    r->url.len += len;
    if (r->url.len > r->c->w->cfg->limits.max_uri_size) {
        r->parse_status = 414;
        return -1;
    }
    return 0;
}

static int gw_on_url_complete(llhttp_t *p)
{
    ((gw_req_t *)p->data)->url_done = true;
    return 0;
}

static int gw_on_method(llhttp_t *p, const char *at, size_t len)
{
    gw_req_t *r = p->data;
    if (r->method.len == 0)
        r->method.p = at;
    r->method.len += len;
    return 0;
}

static int gw_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    gw_req_t *r = p->data;
    if (!r->in_name) {
        r->in_name = true;
        r->cur_name.p = at;
        r->cur_name.len = 0;
        r->cur_value.p = NULL;
        r->cur_value.len = 0;
    }
    r->cur_name.len += len;
    return 0;
}

static int gw_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    gw_req_t *r = p->data;
    if (!r->in_value) {
        r->in_value = true;
        r->cur_value.p = at;
        r->cur_value.len = 0;
    }
    r->cur_value.len += len;
    return 0;
}

/* A header is complete: store its slices, rejecting obs-fold (a value that
 * spans lines), a name that is not a token, and too many headers. */
static int gw_on_header_value_complete(llhttp_t *p)
{
    gw_req_t *r = p->data;
    const gw_config_t *cfg = r->c->w->cfg;
    if (r->nheaders >= (size_t)cfg->limits.max_headers) {
        r->parse_status = 431;
        return -1;
    }
    if (!gw_http_is_token(r->cur_name) || !gw_http_valid_value(r->cur_value)) {
        r->parse_status = 400;
        return -1;
    }
    gw_header_t *h = &r->headers[r->nheaders++];
    h->name = r->cur_name;
    h->value = gw_http_trim(r->cur_value);
    r->in_name = r->in_value = false;
    return 0;
}

static int gw_on_headers_complete(llhttp_t *p)
{
    return HPE_PAUSED;
}

static int gw_on_body(llhttp_t *p, const char *at, size_t len)
{
    gw_req_t *r = p->data;
    r->body_received += (int64_t)len;
    if (r->body_limit > 0 && r->body_received > r->body_limit) {
        r->parse_status = 413;
        return -1;
    }
    return 0;
}

static int gw_on_message_complete(llhttp_t *p)
{
    ((gw_req_t *)p->data)->body_done = true;
    return HPE_PAUSED;
}

static llhttp_settings_t gw_req_settings = {
    .on_url = gw_on_url,
    .on_url_complete = gw_on_url_complete,
    .on_method = gw_on_method,
    .on_header_field = gw_on_header_field,
    .on_header_value = gw_on_header_value,
    .on_header_value_complete = gw_on_header_value_complete,
    .on_headers_complete = gw_on_headers_complete,
    .on_body = gw_on_body,
    .on_message_complete = gw_on_message_complete,
};

/* ---- connection lifetime ---- */

static gw_req_t *gw_req_get(gw_worker_t *w)
{
    gw_req_t *r = w->free_reqs;
    gw_header_t *headers, *rheaders;
    gw_hdr_op_t *hdr_ops = NULL;
    char *path;
    int slot;
    if (r) {
        w->free_reqs = r->next_free;
        slot = r->lua_slot;
        headers = r->headers;
        rheaders = r->rheaders;
        path = r->path;
        hdr_ops = r->hdr_ops; /* made on first use by a plugin, then kept */
    } else {
        r = gw_xmalloc(sizeof *r);
        headers = gw_xmalloc(sizeof(gw_header_t) * (size_t)w->cfg->limits.max_headers);
        rheaders = gw_xmalloc(sizeof(gw_header_t) * (size_t)w->cfg->limits.max_headers);
        path = gw_xmalloc(w->cfg->limits.max_uri_size + 1);
        slot = ++w->nreq_slots;
    }
    memset(r, 0, sizeof *r);
    r->headers = headers;
    r->rheaders = rheaders;
    r->path = path;
    r->hdr_ops = hdr_ops;
    r->lua_slot = slot;
    r->route_slot = -1;
    return r;
}

static void gw_req_put(gw_worker_t *w, gw_req_t *r)
{
    gw_lua_req_release(r);
    gw_tls_req_end(r);
    gw_bfilter_release(r);
    if (r->direct_owned)
        gw_upstream_direct_free(r->target);
    gw_buf_put(&w->bufs, r->out);
    gw_buf_put(&w->bufs, r->rin);
    r->out = r->rin = NULL;
    r->next_free = w->free_reqs;
    w->free_reqs = r;
}

void gw_io_set(struct ev_loop *loop, ev_io *io, int events)
{
    if ((io->events & (EV_READ | EV_WRITE)) == events && (events == 0 || ev_is_active(io)))
        return;
    /* ev_io_modify, unlike ev_io_set, does not force an epoll_ctl when the
     * fd's mask ends up unchanged. */
    ev_io_stop(loop, io);
    ev_io_modify(io, events);
    if (events)
        ev_io_start(loop, io);
}

static void gw_conn_timer_set(gw_conn_t *c, double after)
{
    c->timer.repeat = after;
    ev_timer_again(c->w->loop, &c->timer);
}

void gw_conn_accept(gw_worker_t *w, int fd, const struct sockaddr *sa, socklen_t len,
                    const gw_listen_conf_t *l)
{
    gw_conn_t *c = gw_xcalloc(1, sizeof *c);
    c->w = w;
    c->fd = fd;
    memcpy(&c->peer, sa, len < sizeof c->peer ? len : sizeof c->peer);
    ev_io_init(&c->io, gw_conn_io_cb, fd, EV_READ);
    c->io.data = c;
    ev_io_start(w->loop, &c->io);
    ev_init(&c->timer, gw_conn_on_timer);
    c->timer.data = c;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    gw_metrics_active_connections(1);
    c->state = GW_CONN_IDLE;
    if (l->tls && gw_tls_conn_start(c, l->tls) != GW_OK) {
        gw_conn_close(c);
        return;
    }
    gw_conn_timer_set(c, c->ssl ? w->cfg->timeouts.tls_handshake : w->cfg->timeouts.client_header);
}

void gw_conn_close(gw_conn_t *c)
{
    gw_worker_t *w = c->w;
    if (c->state == GW_CONN_TUNNEL && c->req) {
        gw_tunnel_close(c->req); /* logs the tunnel, then comes back here */
        return;
    }
    if (c->req) {
        gw_proxy_abort(c->req);
        gw_req_put(w, c->req);
        c->req = NULL;
    }
    ev_io_stop(w->loop, &c->io);
    ev_timer_stop(w->loop, &c->timer);
    gw_tls_conn_free(c);
    close(c->fd);
    gw_buf_put(&w->bufs, c->in);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    gw_metrics_active_connections(-1);
    free(c);
}

/* How long a connection accepted just before a stop may take to send its
 * first request. */
#define GW_CONN_STOP_GRACE 1.0

void gw_conn_close_idle(gw_worker_t *w)
{
    gw_conn_t *c = w->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->state != GW_CONN_IDLE && !(c->state == GW_CONN_HEAD && c->req == NULL))
            continue;
        if (c->requests > 0) {
            gw_conn_close(c); /* keep-alive between requests */
        } else if (!c->closing) {
            /* Accepted, request not read yet: it may be on its way. */
            c->closing = true;
            if (w->cfg->timeouts.client_header > GW_CONN_STOP_GRACE)
                gw_conn_timer_set(c, GW_CONN_STOP_GRACE);
        }
    }
}

/* ---- responses ---- */

/* Count the finished request in the metrics and write its access log. */
static void gw_conn_log(gw_conn_t *c, gw_req_t *r)
{
    gw_worker_t *w = c->w;
    double now = ev_now(w->loop);
    gw_metrics_request(r->route_slot, r->status);
    if (r->t_upstream > 0 && r->up && r->t_upstream_done > 0)
        gw_metrics_upstream_latency(r->up->metrics_slot, r->t_upstream_done - r->t_upstream);
    if (!w->cfg->access_log.enabled)
        return;
    char client[INET6_ADDRSTRLEN];
    size_t clen = gw_net_ntop((const struct sockaddr_storage *)&c->peer, client, sizeof client);
    double up_end = r->t_upstream_done > 0 ? r->t_upstream_done : now;
    gw_access_entry_t e = {
        .time = gw_wall_now(),
        .request_id = {r->request_id, strlen(r->request_id)},
        .client = {client, clen},
        .tls = c->ssl != NULL,
        .method = r->method,
        .path = r->url,
        .route = r->match.route ? (gw_str_t){r->match.route->name, strlen(r->match.route->name)}
                                : (gw_str_t){"", 0},
        .upstream =
            r->target ? (gw_str_t){r->target->name, strlen(r->target->name)} : (gw_str_t){"", 0},
        .status = r->status,
        .bytes_sent = r->bytes_sent,
        .bytes_received = gw_req_bytes_received(r),
        .request_time = now - r->t_start,
        .upstream_time = r->t_upstream > 0 ? up_end - r->t_upstream : -1,
    };
    gw_accesslog_write(&e);
}

void gw_conn_abort(gw_conn_t *c)
{
    if (c->req) {
        if (!c->req->status)
            c->req->status = 502;
        gw_conn_log(c, c->req);
    }
    gw_conn_close(c);
}

static void gw_req_begin(gw_conn_t *c)
{
    gw_worker_t *w = c->w;
    gw_req_t *r = c->req = gw_req_get(w);
    r->c = c;
    r->w = w;
    memcpy(&r->peer, &c->peer, sizeof r->peer);
    if (c->ssl)
        gw_tls_req_begin(r, c);
    r->t_start = ev_now(w->loop);
    gw_worker_request_id(w, r->request_id);
    llhttp_init(&r->parser, HTTP_REQUEST, &gw_req_settings);
    r->parser.data = r;
}

/*
 * Answer the current request with a gateway-generated JSON error. The
 * connection is closed afterwards unless the request was read completely
 * and the client can keep it alive.
 */
void gw_conn_error(gw_conn_t *c, int status, const char *message)
{
    gw_worker_t *w = c->w;
    if (!c->req) {
        gw_req_begin(c);
        c->req->close_after = true;
    }
    gw_req_t *r = c->req;
    if (r->head_to_client) {
        /* Part of a response is out already: only closing is honest. */
        r->status = r->status ? r->status : status;
        gw_conn_abort(c);
        return;
    }
    gw_proxy_abort(r);
    r->bfilter = false; /* the gateway's own answer */
    if (!r->body_done || status == 400 || status == 408 || status == 413 || status == 431 ||
        status == 414 || w->stopping)
        r->close_after = true;
    if (!r->out)
        r->out = gw_buf_get(&w->bufs);
    r->out->start = r->out->end = 0;
    r->out_sent = 0;
    r->rsend_start = r->rsend_end = 0;
    r->rdone = true;
    r->status = status;
    bool head_only = r->method.len == 4 && memcmp(r->method.p, "HEAD", 4) == 0;
    r->out->end = gw_http_error_response(r->out->data, r->out->cap, status, message, r->request_id,
                                         r->close_after, head_only);
    c->state = GW_CONN_RESPOND;
    ev_timer_stop(w->loop, &c->timer);
    gw_conn_flush_response(c);
}

/*
 * Write the response head (r->out) and body bytes (r->rin range) pending
 * for the client. When all is written and the response is complete, end
 * the request; when all is written but more is to come, resume the
 * upstream; when the socket is full, wait for it (send timeout).
 * Returns GW_OK while the request goes on, or GW_DONE when it ended (the
 * connection may be closed: do not touch c or its request again).
 */
int gw_conn_flush_response(gw_conn_t *c)
{
    gw_req_t *r = c->req;
    gw_worker_t *w = c->w;
    for (;;) {
        struct iovec iov[2];
        int n = 0;
        if (r->out && r->out_sent < r->out->end) {
            iov[n].iov_base = r->out->data + r->out_sent;
            iov[n++].iov_len = r->out->end - r->out_sent;
        }
        if (r->bfilter && r->bf_len > r->bf_sent) {
            iov[n].iov_base = r->bf_data + r->bf_sent;
            iov[n++].iov_len = r->bf_len - r->bf_sent;
        } else if (r->rsend_end > r->rsend_start) {
            iov[n].iov_base = r->rin->data + r->rsend_start;
            iov[n++].iov_len = r->rsend_end - r->rsend_start;
        }
        if (n == 0)
            break;
        ssize_t wr = gw_conn_sendv(c, iov, n);
        if (wr < 0) {
            if (errno == EAGAIN) {
                gw_io_set(w->loop, &c->io, EV_WRITE);
                gw_conn_timer_set(c, w->cfg->timeouts.send);
                return GW_OK;
            }
            gw_log_debug("client write failed: %s", strerror(errno));
            if (r->status == 0)
                r->status = 499;
            gw_conn_log(c, r);
            gw_conn_close(c);
            return GW_DONE;
        }
        r->bytes_sent += (uint64_t)wr;
        r->head_to_client = true;
        size_t left = (size_t)wr;
        if (r->out && r->out_sent < r->out->end) {
            size_t k = r->out->end - r->out_sent;
            k = k < left ? k : left;
            r->out_sent += k;
            left -= k;
        }
        if (r->bfilter)
            r->bf_sent += left;
        else
            r->rsend_start += left;
    }
    /* Everything pending was written. */
    if (r->bfilter)
        gw_bfilter_sent(r);
    if (r->rdone && (!r->bfilter || r->bf_eof_done)) {
        ev_timer_stop(w->loop, &c->timer);
        gw_conn_request_done(c);
        return GW_DONE;
    }
    /* Read interest stays on: a read event while the request needs no more
     * input switches it off then (see gw_conn_read_body). */
    gw_io_set(w->loop, &c->io, EV_READ);
    if (r->body_done)
        ev_timer_stop(w->loop, &c->timer);
    else
        gw_conn_timer_set(c, w->cfg->timeouts.client_body);
    return gw_proxy_resume_response(r);
}

/*
 * The response is fully written: log the request, then close the
 * connection or start on the next request (pipelined bytes first).
 */
void gw_conn_request_done(gw_conn_t *c)
{
    gw_worker_t *w = c->w;
    gw_req_t *r = c->req;
    gw_conn_log(c, r);
    bool close_now =
        r->close_after || w->stopping || !r->body_done || w->cfg->timeouts.keepalive <= 0;
    size_t leftover_at = r->msg_end;
    gw_proxy_abort(r); /* releases the upstream connection if still held */
    c->req = NULL;
    if (r->match.route && (gw_lua_route_phases(w, r->match.route->index) & GW_LUA_LOG)) {
        gw_conn_detach_for_log(c, r, leftover_at);
        leftover_at = 0;
    } else {
        gw_req_put(w, r);
    }
    c->requests++;
    if (close_now) {
        gw_conn_close(c);
        return;
    }
    gw_buf_t *in = c->in;
    if (in && leftover_at < in->end) {
        memmove(in->data, in->data + leftover_at, in->end - leftover_at);
        in->end -= leftover_at;
        in->start = 0;
    } else if (in) {
        gw_buf_put(&w->bufs, in);
        c->in = NULL;
    }
    gw_conn_next_request(c);
}

/* r becomes a task of the worker, no longer tied to a connection: counted
 * and listed until gw_conn_task_done. */
static void gw_task_link(gw_worker_t *w, gw_req_t *r)
{
    r->detached = true;
    r->task_prev = NULL;
    r->task_next = w->tasks;
    if (w->tasks)
        w->tasks->task_prev = r;
    w->tasks = r;
    w->ntasks++;
}

/*
 * Run the log phase of r, which no longer belongs to c: r keeps c's buffer
 * (its header slices point into it) and c gets a fresh one holding the
 * pipelined bytes after leftover_at, if any.
 */
static void gw_conn_detach_for_log(gw_conn_t *c, gw_req_t *r, size_t leftover_at)
{
    gw_worker_t *w = c->w;
    gw_buf_t *in = c->in;
    c->in = NULL;
    if (in && leftover_at < in->end) {
        c->in = gw_buf_get(&w->bufs);
        memcpy(c->in->data, in->data + leftover_at, in->end - leftover_at);
        c->in->end = in->end - leftover_at;
    }
    r->held_in = in;
    r->c = NULL;
    gw_task_link(w, r);
    if (gw_lua_run(r, GW_LUA_LOG) != GW_AGAIN)
        gw_conn_task_done(r);
}

gw_req_t *gw_conn_task_new(gw_worker_t *w)
{
    gw_req_t *r = gw_req_get(w);
    r->w = w;
    r->t_start = ev_now(w->loop);
    gw_worker_request_id(w, r->request_id);
    gw_task_link(w, r);
    return r;
}

void gw_conn_task_done(gw_req_t *r)
{
    gw_worker_t *w = r->w;
    if (r->task_prev)
        r->task_prev->task_next = r->task_next;
    else
        w->tasks = r->task_next;
    if (r->task_next)
        r->task_next->task_prev = r->task_prev;
    w->ntasks--;
    gw_req_put(w, r);
}

/* Wait for (or parse already buffered) the next request on c. */
static void gw_conn_next_request(gw_conn_t *c)
{
    gw_worker_t *w = c->w;
    gw_io_set(w->loop, &c->io, EV_READ);
    gw_tls_conn_kick(c);
    if (c->in && c->in->end > 0) {
        c->state = GW_CONN_HEAD;
        gw_conn_timer_set(c, w->cfg->timeouts.client_header);
        gw_conn_parse_head(c);
        return;
    }
    c->state = GW_CONN_IDLE;
    gw_conn_timer_set(c, w->cfg->timeouts.keepalive);
}

/* ---- reading ---- */

/* Read into c->in; returns bytes read, 0 on EOF, -1 on error, -2 on EAGAIN. */
static ssize_t gw_conn_read(gw_conn_t *c)
{
    gw_buf_t *in = c->in;
    ssize_t n = gw_conn_recv(c, in->data + in->end, in->cap - in->end);
    if (n > 0) {
        in->end += (size_t)n;
        return n;
    }
    if (n == 0)
        return 0;
    return errno == EAGAIN ? -2 : -1;
}

static void gw_conn_head_too_large(gw_conn_t *c)
{
    bool uri = c->req && !c->req->url_done;
    gw_conn_error(c, uri ? 414 : 431, uri ? "request URI too long" : "request header too large");
}

static void gw_conn_read_head(gw_conn_t *c)
{
    gw_worker_t *w = c->w;
    if (!c->in)
        c->in = gw_buf_get(&w->bufs);
    if (c->in->end == c->in->cap) {
        gw_conn_head_too_large(c);
        return;
    }
    ssize_t n = gw_conn_read(c);
    if (n == -2) {
        if (c->in->end == 0) {
            gw_buf_put(&w->bufs, c->in);
            c->in = NULL;
        }
        return;
    }
    if (n <= 0) {
        /* EOF or error between or inside request heads: just close. */
        gw_conn_close(c);
        return;
    }
    if (c->state == GW_CONN_IDLE) {
        c->state = GW_CONN_HEAD;
        gw_conn_timer_set(c, w->cfg->timeouts.client_header);
    }
    gw_conn_parse_head(c);
}

/* The parser rejected the request: answer with the status a callback
 * chose (413, 414, 431) or 400, and close. */
static void gw_conn_reject_parse(gw_conn_t *c, llhttp_errno_t err)
{
    gw_req_t *r = c->req;
    int status = r->parse_status ? r->parse_status : 400;
    const char *msg = status == 414   ? "request URI too long"
                      : status == 431 ? "request header too large"
                      : status == 413 ? "request body too large"
                                      : "bad request";
    const char *reason = llhttp_get_error_reason(&r->parser);
    gw_log_info("bad request from client: %s (%s)", llhttp_errno_name(err), reason ? reason : "");
    r->close_after = true;
    gw_conn_error(c, status, msg);
}

static void gw_req_start(gw_conn_t *c);
static int gw_conn_parse_body(gw_conn_t *c);

/* Parse what is buffered of a request head; start the request once the
 * head is complete. */
static void gw_conn_parse_head(gw_conn_t *c)
{
    if (!c->req)
        gw_req_begin(c);
    gw_req_t *r = c->req;
    gw_buf_t *in = c->in;
    size_t from = r->body_parsed; /* during the head: bytes parsed so far */
    llhttp_errno_t err = llhttp_execute(&r->parser, in->data + from, in->end - from);
    size_t limit = c->w->cfg->limits.max_header_size;
    if (err == HPE_PAUSED) {
        r->head_len = (size_t)(llhttp_get_error_pos(&r->parser) - in->data);
        if (r->head_len > limit) {
            gw_conn_head_too_large(c);
            return;
        }
        llhttp_resume(&r->parser);
        gw_req_start(c);
        return;
    }
    if (err != HPE_OK) {
        gw_conn_reject_parse(c, err);
        return;
    }
    r->body_parsed = in->end;
    if (in->end > limit || in->end == in->cap)
        gw_conn_head_too_large(c);
}

static bool gw_req_header_lookup(void *ud, gw_str_t name, gw_str_t *value)
{
    gw_req_t *r = ud;
    for (size_t i = 0; i < r->nheaders; i++)
        if (gw_str_caseeq(r->headers[i].name, name)) {
            *value = r->headers[i].value;
            return true;
        }
    return false;
}

/*
 * Check the parsed head: HTTP/1.x, one Host, a usable target. Sets r->host
 * (without port) and r->path (normalised). Returns 0 or the status to
 * answer with.
 */
static int gw_req_validate(gw_req_t *r)
{
    llhttp_t *p = &r->parser;
    if (p->http_major != 1)
        return 400;
    if (p->method == HTTP_CONNECT)
        return 405;
    gw_str_t host = {NULL, 0};
    int nhost = 0;
    for (size_t i = 0; i < r->nheaders; i++)
        if (gw_str_caseeq_lit(r->headers[i].name, "host")) {
            host = r->headers[i].value;
            nhost++;
        }
    if (nhost > 1 || (nhost == 0 && p->http_minor >= 1))
        return 400;
    gw_str_t target = r->url, path, query;
    if (target.len == 1 && target.p[0] == '*')
        target = GW_STR("/");
    if (target.len > 0 && target.p[0] != '/') {
        /* absolute-form: http://host[:port]/path */
        gw_str_t auth;
        if (gw_http_absolute_target(target, &auth, &target) != GW_OK)
            return 400;
        host = auth;
    }
    if (!gw_http_valid_host(host))
        return 400;
    r->host_header = host;
    r->host = gw_http_host_without_port(host);
    gw_path_split(target, &path, &query);
    r->query = query;
    r->has_query = query.p != NULL;
    ssize_t n = gw_path_normalize(path, r->path, r->c->w->cfg->limits.max_uri_size + 1);
    if (n < 0)
        return 400;
    r->path_len = (size_t)n;
    r->url = target;
    return 0;
}

/* Decide how the request body is framed and whether it fits the limit.
 * Returns 0 or the status to answer with. */
static int gw_req_body_setup(gw_req_t *r)
{
    const gw_config_t *cfg = r->c->w->cfg;
    const gw_route_conf_t *route = r->match.route;
    r->body_limit =
        route && route->max_body_size >= 0 ? route->max_body_size : cfg->limits.max_body_size;
    if (r->parser.flags & F_CHUNKED)
        r->body_mode = GW_BODY_CHUNKED;
    else if ((r->parser.flags & F_CONTENT_LENGTH) && r->parser.content_length > 0)
        r->body_mode = GW_BODY_LENGTH;
    else
        r->body_mode = GW_BODY_NONE;
    r->body_parsed = r->body_sent = r->head_len;
    if (r->body_mode == GW_BODY_NONE) {
        r->body_done = true;
        r->msg_end = r->head_len;
    }
    if (r->body_mode == GW_BODY_LENGTH && r->body_limit > 0 &&
        r->parser.content_length > (uint64_t)r->body_limit)
        return 413;
    return 0;
}

/* The head is complete: validate, route, and hand the request to the
 * proxy. */
static void gw_req_start(gw_conn_t *c)
{
    gw_worker_t *w = c->w;
    gw_req_t *r = c->req;
    c->state = GW_CONN_PROXY;
    gw_str_t rid;
    if (gw_req_header_lookup(r, GW_STR("x-request-id"), &rid) && rid.len > 0 &&
        rid.len < sizeof r->request_id && gw_http_is_token(rid)) {
        memcpy(r->request_id, rid.p, rid.len);
        r->request_id[rid.len] = '\0';
    }
    if (!llhttp_should_keep_alive(&r->parser))
        r->close_after = true;
    if (c->plain_on_tls) {
        r->close_after = true;
        gw_conn_error(c, 400, "The plain HTTP request was sent to HTTPS port");
        return;
    }
    int status = gw_req_validate(r);
    if (status) {
        r->close_after = true;
        gw_conn_error(c, status, status == 405 ? "method not allowed" : "bad request");
        return;
    }
    gw_route_query_t q = {
        .method = r->method,
        .host = r->host,
        .path = {r->path, r->path_len},
        .header = gw_req_header_lookup,
        .header_ud = r,
    };
    if (gw_router_match(w->router, &q, &r->match) != GW_OK) {
        r->match.route = NULL;
        gw_req_body_setup(r);
        gw_conn_error(c, 404, "no route matched");
        return;
    }
    r->route_slot = w->route_slots[r->match.route->index];
    if (gw_req_body_setup(r) != 0) {
        gw_conn_error(c, 413, "request body too large");
        return;
    }
    r->upgrade = gw_tunnel_wanted(r);
    /* Body bytes that came with the head. */
    if (gw_conn_parse_body(c) != GW_OK)
        return;
    gw_str_t expect;
    if (r->body_mode != GW_BODY_NONE && !r->body_done && r->parser.http_minor >= 1 &&
        gw_req_header_lookup(r, GW_STR("expect"), &expect) &&
        gw_str_caseeq_lit(expect, "100-continue"))
        r->expect_continue = true;
    if (!r->body_done)
        gw_conn_timer_set(c, w->cfg->timeouts.client_body);
    else
        ev_timer_stop(w->loop, &c->timer);
    if (gw_lua_route_phases(w, r->match.route->index) & GW_LUA_ACCESS) {
        if (gw_lua_run(r, GW_LUA_ACCESS) != GW_OK)
            return; /* waiting, or answered */
    }
    gw_conn_access_done(r, GW_OK);
}

/*
 * Drop the client's body bytes parsed so far: a plugin replaced the body
 * sent upstream (moongate.upstream.set_body). The bytes of a pipelined next
 * request stay, right after the head.
 */
static void gw_conn_drop_body(gw_conn_t *c)
{
    gw_req_t *r = c->req;
    gw_buf_t *in = c->in;
    size_t upto = r->body_done ? r->msg_end : r->body_parsed;
    size_t keep = in->end - upto;
    memmove(in->data + r->head_len, in->data + upto, keep);
    in->end = r->head_len + keep;
    r->body_parsed = r->body_sent = r->head_len;
    if (r->body_done)
        r->msg_end = r->head_len;
}

void gw_conn_access_done(gw_req_t *r, int rc)
{
    if (rc != GW_OK)
        return;
    gw_conn_t *c = r->c;
    if (r->up_body_set) {
        /* The client's body is read to its end and dropped before the
         * request goes upstream, so that the connection can go on with its
         * next request. */
        gw_conn_drop_body(c);
        if (!r->body_done) {
            if (r->expect_continue) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                if (write(c->fd, cont, sizeof cont - 1) != (ssize_t)(sizeof cont - 1)) {
                    gw_conn_close(c);
                    return;
                }
                r->expect_continue = false;
            }
            r->up_body_wait = true;
            gw_conn_want_body(c);
            return;
        }
        r->expect_continue = false;
    }
    gw_proxy_start(r);
}

/* Answer r with the status, headers and body of moongate.response.exit. */
void gw_conn_exit(gw_req_t *r)
{
    gw_conn_t *c = r->c;
    gw_worker_t *w = c->w;
    if (!r->body_done)
        r->close_after = true;
    size_t need = 512 + r->exit_body_len + (r->lua_arena ? r->lua_arena->end : 0);
    if (!r->out || r->out->cap < need) {
        gw_buf_put(&w->bufs, r->out);
        r->out = need <= w->bufs.size ? gw_buf_get(&w->bufs) : gw_xmalloc(sizeof(gw_buf_t) + need);
        if (need > w->bufs.size)
            r->out->cap = need;
    }
    r->status = r->exit_status;
    char *p = r->out->data;
    size_t n = (size_t)snprintf(p, 512, "HTTP/1.1 %d %s\r\nServer: moongate\r\n", r->status,
                                gw_http_reason(r->status));
    for (size_t i = 0; i < r->nhdr_ops; i++) {
        const gw_hdr_op_t *o = &r->hdr_ops[i];
        if (o->side != GW_SIDE_EXIT)
            continue;
        memcpy(p + n, o->name.p, o->name.len);
        n += o->name.len;
        memcpy(p + n, ": ", 2);
        memcpy(p + n + 2, o->value.p, o->value.len);
        n += 2 + o->value.len;
        memcpy(p + n, "\r\n", 2);
        n += 2;
    }
    n += (size_t)snprintf(p + n, 128, "Content-Length: %zu\r\nX-Request-Id: %s\r\n%s\r\n",
                          r->exit_body_len, r->request_id,
                          r->close_after ? "Connection: close\r\n" : "");
    if (r->parser.method != HTTP_HEAD && r->exit_body_len) {
        memcpy(p + n, r->exit_body, r->exit_body_len);
        n += r->exit_body_len;
    }
    r->out->start = 0;
    r->out->end = n;
    r->out_sent = 0;
    r->rsend_start = r->rsend_end = 0;
    r->rdone = true;
    c->state = GW_CONN_RESPOND;
    ev_timer_stop(w->loop, &c->timer);
    gw_conn_flush_response(c);
}

/* ---- request body ---- */

/*
 * Run the parser over body bytes received but not parsed yet. Sets
 * body_done and msg_end at the end of the message. Returns GW_OK or
 * GW_ERROR after answering the client.
 */
static int gw_conn_parse_body(gw_conn_t *c)
{
    gw_req_t *r = c->req;
    gw_buf_t *in = c->in;
    if (r->body_done || r->body_parsed >= in->end)
        return GW_OK;
    llhttp_errno_t err =
        llhttp_execute(&r->parser, in->data + r->body_parsed, in->end - r->body_parsed);
    if (err == HPE_PAUSED) {
        r->msg_end = (size_t)(llhttp_get_error_pos(&r->parser) - in->data);
        r->body_parsed = r->msg_end;
        return GW_OK;
    }
    if (err != HPE_OK) {
        gw_conn_reject_parse(c, err);
        return GW_ERROR;
    }
    r->body_parsed = in->end;
    return GW_OK;
}

/* ---- the body for plugins ---- */

typedef struct {
    char *p;
    size_t len;
} gw_body_acc_t;

static int gw_body_acc_cb(llhttp_t *p, const char *at, size_t len)
{
    gw_body_acc_t *acc = p->data;
    memcpy(acc->p + acc->len, at, len);
    acc->len += len;
    return 0;
}

/* Decode the chunked body bytes [from, to) of c->in (checked already by
 * the request's parser) into a new buffer of at most to - from bytes. */
static void gw_body_dechunk(gw_req_t *r, const char *raw, size_t rawlen)
{
    static const char head[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_body = gw_body_acc_cb;
    gw_body_acc_t acc = {gw_xmalloc(rawlen + 1), 0};
    llhttp_t p;
    llhttp_init(&p, HTTP_REQUEST, &s);
    p.data = &acc;
    llhttp_execute(&p, head, sizeof head - 1);
    llhttp_execute(&p, raw, rawlen);
    r->body_copy = acc.p;
    r->body_copy_len = acc.len;
}

/* Move the head slices of r from buffer `from` to buffer `to` (same
 * offsets). */
static void gw_req_rebase(gw_req_t *r, const char *from, char *to)
{
#define GW_REBASE(s)                                                                               \
    do {                                                                                           \
        if ((s).p)                                                                                 \
            (s).p = to + ((s).p - from);                                                           \
    } while (0)
    GW_REBASE(r->method);
    GW_REBASE(r->url);
    GW_REBASE(r->host);
    GW_REBASE(r->host_header);
    GW_REBASE(r->query);
    for (size_t i = 0; i < r->nheaders; i++) {
        GW_REBASE(r->headers[i].name);
        GW_REBASE(r->headers[i].value);
    }
#undef GW_REBASE
}

/* Give c->in room for `need` bytes: a larger buffer of its own, holding
 * the same bytes. */
static void gw_conn_grow_in(gw_conn_t *c, size_t need)
{
    gw_buf_t *old = c->in;
    if (old->cap >= need)
        return;
    gw_buf_t *b = gw_xmalloc(sizeof(gw_buf_t) + need);
    b->next = NULL;
    b->cap = need;
    b->start = old->start;
    b->end = old->end;
    memcpy(b->data, old->data, old->end);
    gw_req_rebase(c->req, old->data, b->data);
    c->in = b;
    gw_buf_put(&c->w->bufs, old);
}

int gw_conn_request_body(gw_req_t *r, size_t max, const char **p, size_t *len)
{
    gw_conn_t *c = r->c;
    if (r->body_copy) {
        if (r->body_copy_len > max)
            return GW_DECLINED;
        *p = r->body_copy;
        *len = r->body_copy_len;
        return GW_OK;
    }
    if (r->body_mode == GW_BODY_NONE) {
        *p = "";
        *len = 0;
        return GW_OK;
    }
    /* llhttp counts down content_length as the body is parsed. */
    uint64_t total = (uint64_t)r->body_received + r->parser.content_length;
    if ((r->body_mode == GW_BODY_LENGTH && total > max) || (uint64_t)r->body_received > max)
        return GW_DECLINED;
    if (r->body_done) {
        const char *raw = c->in->data + r->head_len;
        size_t rawlen = r->msg_end - r->head_len;
        if (r->body_mode == GW_BODY_LENGTH) {
            *p = raw;
            *len = rawlen;
            return GW_OK;
        }
        gw_body_dechunk(r, raw, rawlen);
        if (r->body_copy_len > max)
            return GW_DECLINED;
        *p = r->body_copy;
        *len = r->body_copy_len;
        return GW_OK;
    }
    /* Room for the body, then wait for it: all of a Content-Length body at
     * once; a chunked one (framing included) by doubling, up to its limit. */
    size_t need =
        r->head_len + 1 + (r->body_mode == GW_BODY_LENGTH ? (size_t)total : max + max / 8 + 4096);
    if (c->in->end == c->in->cap && c->in->cap >= need)
        return GW_DECLINED; /* full of chunk framing */
    size_t grow = r->body_mode == GW_BODY_LENGTH ? need : c->in->cap * 2;
    gw_conn_grow_in(c, grow < need ? grow : need);
    if (r->expect_continue) {
        /* The client waits for this before it sends the body. */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        struct iovec v = {(void *)cont, sizeof cont - 1};
        if (gw_conn_sendv(c, &v, 1) != (ssize_t)(sizeof cont - 1))
            return GW_ERROR;
        r->expect_continue = false;
    }
    r->body_waiting = true;
    gw_io_set(c->w->loop, &c->io, EV_READ | (c->io.events & EV_WRITE));
    gw_tls_conn_kick(c);
    gw_conn_timer_set(c, c->w->cfg->timeouts.client_body);
    return GW_AGAIN;
}

static void gw_conn_body_wake_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_lua_wakeup(t->data, 0);
}

/* More body arrived: wake the plugin waiting for the whole body once it is
 * complete or the buffer is full. */
static void gw_conn_body_check(gw_conn_t *c)
{
    gw_req_t *r = c->req;
    if (!r->body_waiting || !(r->body_done || c->in->end == c->in->cap))
        return;
    r->body_waiting = false;
    ev_timer_init(&r->lua_timer, gw_conn_body_wake_cb, 0., 0.);
    r->lua_timer.data = r;
    ev_timer_start(c->w->loop, &r->lua_timer);
}

void gw_conn_want_body(gw_conn_t *c)
{
    gw_req_t *r = c->req;
    gw_buf_t *in = c->in;
    if (r->body_done)
        return;
    /* Everything received was sent: reuse the body area of the buffer. */
    if (r->body_sent == in->end && in->end > r->head_len) {
        in->end = r->body_parsed = r->body_sent = r->head_len;
        r->body_discarded = true;
    }
    if (in->end < in->cap) {
        gw_io_set(c->w->loop, &c->io, EV_READ | (c->io.events & EV_WRITE));
        gw_tls_conn_kick(c);
        gw_conn_timer_set(c, c->w->cfg->timeouts.client_body);
    }
}

/*
 * Whether the client closed its side of the connection, told without
 * taking any byte: a read event while the request needs no more input is
 * either the end of the stream or bytes of a pipelined request.
 */
static bool gw_conn_client_gone(gw_conn_t *c)
{
    char b;
    ssize_t n;
    do
        n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    return n == 0 || (n < 0 && errno != EAGAIN);
}

/* The client went away while its request waited (on plugins or on the
 * upstream): cancel what it waits on, log it as 499, close. */
static void gw_conn_client_abort(gw_conn_t *c)
{
    gw_req_t *r = c->req;
    gw_log_debug("client closed the connection before the response (request %s)", r->request_id);
    if (!r->status)
        r->status = 499;
    gw_conn_log(c, r);
    gw_conn_close(c);
}

static void gw_conn_read_body(gw_conn_t *c)
{
    gw_worker_t *w = c->w;
    gw_req_t *r = c->req;
    if (r->body_done || c->in->end == c->in->cap) {
        if (r->body_done && !r->head_to_client && gw_conn_client_gone(c)) {
            gw_conn_client_abort(c);
            return;
        }
        /* Nothing to read now: the upstream has not taken what we have,
         * or the bytes are a pipelined request's, read after this one. */
        gw_io_set(w->loop, &c->io, c->io.events & ~EV_READ);
        return;
    }
    ssize_t n = gw_conn_read(c);
    if (n == -2)
        return;
    if (n <= 0) {
        gw_log_debug("client closed during request body");
        r->status = 499;
        gw_conn_log(c, r);
        gw_conn_close(c);
        return;
    }
    gw_conn_timer_set(c, w->cfg->timeouts.client_body);
    if (gw_conn_parse_body(c) != GW_OK)
        return;
    if (r->body_done || c->in->end == c->in->cap)
        gw_io_set(w->loop, &c->io, c->io.events & ~EV_READ);
    if (r->body_done && !(c->io.events & EV_WRITE))
        ev_timer_stop(w->loop, &c->timer);
    gw_conn_body_check(c);
    if (r->up_body_wait) {
        gw_conn_drop_body(c);
        if (!r->body_done) {
            gw_conn_want_body(c);
            return;
        }
        r->up_body_wait = false;
        gw_proxy_start(r);
        return;
    }
    gw_proxy_send_body(r);
}

/* ---- events ---- */

static void gw_conn_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    gw_conn_t *c = io->data;
    if (c->ssl && gw_tls_conn_event(c, &revents) != GW_OK)
        return;
    if ((revents & EV_WRITE) && c->req &&
        (c->state == GW_CONN_RESPOND || c->state == GW_CONN_PROXY)) {
        /* After GW_DONE the connection may be gone or on its next request;
         * a pending read is reported again by the (level-triggered) loop. */
        if (gw_conn_flush_response(c) == GW_DONE)
            return;
    }
    if (!(revents & EV_READ))
        return;
    switch (c->state) {
    case GW_CONN_IDLE:
    case GW_CONN_HEAD:
        gw_conn_read_head(c);
        break;
    case GW_CONN_PROXY:
        gw_conn_read_body(c);
        break;
    default:
        gw_io_set(loop, io, io->events & ~EV_READ);
        break;
    }
}

/* The client does not take the response: give up on it. */
static void gw_conn_send_timeout(gw_conn_t *c)
{
    gw_log_info("closing client connection: send timeout");
    if (c->req && !c->req->status)
        c->req->status = 408;
    gw_conn_abort(c);
}

static void gw_conn_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_conn_t *c = t->data;
    switch (c->state) {
    case GW_CONN_IDLE:
        if (c->ssl)
            gw_tls_conn_timeout(c);
        gw_conn_close(c);
        break;
    case GW_CONN_HEAD:
        gw_conn_error(c, 408, "request header timeout");
        break;
    case GW_CONN_PROXY:
        if (c->req && !c->req->body_done && !c->req->head_to_client && !(c->io.events & EV_WRITE))
            gw_conn_error(c, 408, "request body timeout");
        else
            gw_conn_send_timeout(c);
        break;
    default:
        gw_conn_send_timeout(c);
        break;
    }
}
