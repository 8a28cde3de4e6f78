/*
 * Upgrade tunnels: relaying bytes both ways between a client connection and
 * an upstream connection after a 101 Switching Protocols (see gw_tunnel.h).
 * Every read and write goes through gw_io.h, so a tunnel works over any
 * transport the connections use.
 */
#include "gw_tunnel.h"

#include "gw_http.h"
#include "gw_io.h"
#include "gw_tls.h"
#include "gw_log.h"
#include "gw_metrics.h"

#include <errno.h>
#include <stdlib.h>

/* A direction whose head buffer leaves less room than this relays through
 * a buffer of its own. */
#define GW_TUNNEL_MIN_ROOM 4096

/* Read and write rounds per event before yielding to other connections. */
#define GW_TUNNEL_ROUNDS 16

/* One direction: bytes read from one side wait in buf[start, end) until
 * the other side takes them. */
typedef struct {
    gw_buf_t *buf;
    gw_buf_t *own; /* buf, when taken for the tunnel (returned at the end) */
    size_t base;   /* first byte of buf the tunnel may use */
    size_t start, end;
    bool eof;  /* the reading side ended its stream */
    bool shut; /* ... and that end was passed on to the writing side */
} gw_pipe_t;

struct gw_tunnel_s {
    gw_req_t *r;
    gw_pipe_t up;   /* client -> upstream */
    gw_pipe_t down; /* upstream -> client; r->out (the 101 head) goes first */
    ev_timer idle;
    double idle_timeout;
    double last; /* when a byte last moved */
};

/* The result of one read or write attempt. */
enum { GW_PIPE_MOVED, GW_PIPE_IDLE, GW_PIPE_BLOCKED, GW_PIPE_FAILED };

static void gw_tunnel_end(gw_tunnel_t *t, const char *why);

bool gw_tunnel_wanted(const gw_req_t *r)
{
    const gw_route_conf_t *route = r->match.route;
    if (!route || !route->websocket || r->parser.method != HTTP_GET || r->parser.http_major != 1 ||
        r->parser.http_minor != 1 || r->body_mode != GW_BODY_NONE)
        return false;
    bool conn = false, upgrade = false;
    for (size_t i = 0; i < r->nheaders; i++) {
        const gw_header_t *h = &r->headers[i];
        if (gw_str_caseeq_lit(h->name, "connection"))
            conn = conn || gw_http_connection_lists(h->value, GW_STR("upgrade"));
        else if (gw_str_caseeq_lit(h->name, "upgrade"))
            upgrade = upgrade || gw_http_connection_lists(h->value, GW_STR("websocket"));
    }
    return conn && upgrade;
}

gw_str_t gw_tunnel_upgrade_value(const gw_req_t *r)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (gw_str_caseeq_lit(r->headers[i].name, "upgrade"))
            return r->headers[i].value;
    return GW_STR("websocket");
}

/* Set up p over buf from `base`, holding the bytes [base, end) already
 * read; a buffer of its own when buf has too little room left. */
static void gw_pipe_init(gw_worker_t *w, gw_pipe_t *p, gw_buf_t *buf, size_t base, size_t end)
{
    p->buf = buf;
    p->base = p->start = base;
    p->end = end;
    if (buf->cap - base >= GW_TUNNEL_MIN_ROOM)
        return;
    p->own = p->buf = gw_buf_get(&w->bufs);
    memcpy(p->buf->data, buf->data + base, end - base);
    p->base = p->start = 0;
    p->end = end - base;
}

static bool gw_pipe_done(const gw_pipe_t *p)
{
    return p->eof && p->shut;
}

/* Whether the reading side of p should be read: not ended, and room. */
static bool gw_pipe_wants_read(const gw_pipe_t *p)
{
    return !p->eof && (p->end < p->buf->cap || p->start > p->base);
}

/* Read from the client (the up pipe) or the upstream (the down pipe). */
static int gw_pipe_fill(gw_tunnel_t *t, gw_pipe_t *p)
{
    if (!gw_pipe_wants_read(p))
        return GW_PIPE_IDLE;
    if (p->end == p->buf->cap) {
        /* The writer took the front: move the rest down to make room. */
        memmove(p->buf->data + p->base, p->buf->data + p->start, p->end - p->start);
        p->end -= p->start - p->base;
        p->start = p->base;
    }
    gw_req_t *r = t->r;
    char *at = p->buf->data + p->end;
    size_t room = p->buf->cap - p->end;
    ssize_t n = p == &t->up ? gw_conn_recv(r->c, at, room) : gw_upconn_recv(r->uc, at, room);
    if (n > 0) {
        p->end += (size_t)n;
        if (p == &t->up)
            r->tunnel_received += (uint64_t)n;
        return GW_PIPE_MOVED;
    }
    if (n == 0) {
        p->eof = true;
        return GW_PIPE_MOVED;
    }
    if (errno == EAGAIN)
        return GW_PIPE_BLOCKED;
    gw_log_debug("tunnel %s: %s read failed: %s", r->request_id,
                 p == &t->up ? "client" : "upstream", strerror(errno));
    return GW_PIPE_FAILED;
}

/* Write what p holds to the upstream (the up pipe) or the client (the down
 * pipe, after the rest of the 101 head); once the reading side ended and
 * all is written, half-close the writing side. */
static int gw_pipe_flush(gw_tunnel_t *t, gw_pipe_t *p)
{
    gw_req_t *r = t->r;
    bool to_client = p == &t->down;
    struct iovec iov[2];
    int n = 0;
    size_t head = 0;
    if (to_client && r->out && r->out_sent < r->out->end) {
        head = r->out->end - r->out_sent;
        iov[n].iov_base = r->out->data + r->out_sent;
        iov[n++].iov_len = head;
    }
    if (p->end > p->start) {
        iov[n].iov_base = p->buf->data + p->start;
        iov[n++].iov_len = p->end - p->start;
    }
    if (n == 0) {
        if (!p->eof || p->shut)
            return GW_PIPE_IDLE;
        if ((to_client ? gw_conn_shutdown(r->c) : gw_upconn_shutdown(r->uc)) != 0) {
            if (errno == EAGAIN)
                return GW_PIPE_BLOCKED; /* close_notify waits for room; still watched */
            gw_log_debug("tunnel %s: shutdown failed: %s", r->request_id, strerror(errno));
        }
        p->shut = true;
        return GW_PIPE_MOVED;
    }
    ssize_t wr = to_client ? gw_conn_sendv(r->c, iov, n) : gw_upconn_sendv(r->uc, iov, n);
    if (wr < 0) {
        if (errno == EAGAIN)
            return GW_PIPE_BLOCKED;
        gw_log_debug("tunnel %s: %s write failed: %s", r->request_id,
                     to_client ? "client" : "upstream", strerror(errno));
        return GW_PIPE_FAILED;
    }
    size_t left = (size_t)wr;
    if (to_client) {
        r->bytes_sent += (uint64_t)wr;
        size_t k = head < left ? head : left;
        r->out_sent += k;
        left -= k;
    }
    p->start += left;
    if (p->start == p->end)
        p->start = p->end = p->base;
    return GW_PIPE_MOVED;
}

/* Whether the client side has bytes waiting to be written to it. */
static bool gw_tunnel_client_pending(const gw_tunnel_t *t)
{
    const gw_req_t *r = t->r;
    return t->down.end > t->down.start || (r->out && r->out_sent < r->out->end) ||
           (t->down.eof && !t->down.shut);
}

/*
 * Move all the bytes that can move without waiting, a bounded number of
 * rounds, then watch each socket for what it blocks on. Ends the tunnel
 * when a side failed or both directions are done; t may be gone then.
 */
static void gw_tunnel_pump(gw_tunnel_t *t)
{
    gw_req_t *r = t->r;
    gw_worker_t *w = r->c->w;
    bool moved = true, any = false;
    for (int round = 0; moved && round < GW_TUNNEL_ROUNDS; round++) {
        int rc[4] = {gw_pipe_flush(t, &t->down), gw_pipe_fill(t, &t->up), gw_pipe_flush(t, &t->up),
                     gw_pipe_fill(t, &t->down)};
        moved = false;
        for (int i = 0; i < 4; i++) {
            if (rc[i] == GW_PIPE_FAILED) {
                gw_tunnel_end(t, "connection failed");
                return;
            }
            moved = moved || rc[i] == GW_PIPE_MOVED;
        }
        any = any || moved;
    }
    if (gw_pipe_done(&t->up) && gw_pipe_done(&t->down)) {
        gw_tunnel_end(t, "both sides closed");
        return;
    }
    if (any)
        t->last = ev_now(w->loop);
    int cev =
        (gw_pipe_wants_read(&t->up) ? EV_READ : 0) | (gw_tunnel_client_pending(t) ? EV_WRITE : 0);
    int uev = (gw_pipe_wants_read(&t->down) ? EV_READ : 0) |
              (t->up.end > t->up.start || (t->up.eof && !t->up.shut) ? EV_WRITE : 0);
    gw_io_set(w->loop, &r->c->io, cev);
    if (cev & EV_READ)
        gw_tls_conn_kick(r->c);  /* bytes TLS already decrypted: no socket event */
    gw_upconn_watch(r->uc, uev); /* with TLS: bytes already decrypted count */
    if (moved)                   /* rounds used up with bytes still moving: come back soon */
        ev_feed_event(w->loop, &r->c->io, EV_CUSTOM);
}

static void gw_tunnel_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    gw_tunnel_pump(io->data);
}

static void gw_tunnel_idle_cb(struct ev_loop *loop, ev_timer *timer, int revents)
{
    gw_tunnel_t *t = timer->data;
    double left = t->last + t->idle_timeout - ev_now(loop);
    if (left > 0) {
        timer->repeat = left;
        ev_timer_again(loop, timer);
        return;
    }
    gw_log_info("tunnel %s: idle for %.3gs, closing", t->r->request_id, t->idle_timeout);
    gw_tunnel_end(t, "idle timeout");
}

void gw_tunnel_start(gw_req_t *r, size_t head_end)
{
    gw_conn_t *c = r->c;
    gw_worker_t *w = c->w;
    gw_upconn_t *uc = r->uc;
    gw_tunnel_t *t = gw_xcalloc(1, sizeof *t);
    t->r = r;
    r->tunnel = t;
    r->rdone = true;
    r->rparsed = head_end;
    r->t_upstream_done = ev_now(w->loop);
    c->state = GW_CONN_TUNNEL;
    gw_pipe_init(w, &t->up, c->in, r->msg_end, c->in->end);
    gw_pipe_init(w, &t->down, r->rin, head_end, r->rin->end);
    ev_timer_stop(w->loop, &c->timer);
    ev_timer_stop(w->loop, &uc->timer);
    ev_set_cb(&c->io, gw_tunnel_io_cb);
    c->io.data = t;
    ev_set_cb(&uc->io, gw_tunnel_io_cb);
    uc->io.data = t;
    t->idle_timeout = r->match.route->websocket_idle;
    t->last = ev_now(w->loop);
    ev_init(&t->idle, gw_tunnel_idle_cb);
    t->idle.data = t;
    t->idle.repeat = t->idle_timeout;
    ev_timer_again(w->loop, &t->idle);
    gw_metrics_open_tunnels(1);
    gw_log_debug("tunnel %s: open (route %s, upstream %s)", r->request_id, r->match.route->name,
                 r->target->name);
    gw_tunnel_pump(t);
}

/* Release the tunnel and finish r as a request: logged with status 101,
 * log phase, both connections closed. */
static void gw_tunnel_end(gw_tunnel_t *t, const char *why)
{
    gw_req_t *r = t->r;
    gw_conn_t *c = r->c;
    gw_worker_t *w = c->w;
    gw_log_debug("tunnel %s: closed (%s), %llu bytes in, %llu out", r->request_id, why,
                 (unsigned long long)r->tunnel_received, (unsigned long long)r->bytes_sent);
    ev_timer_stop(w->loop, &t->idle);
    gw_buf_put(&w->bufs, t->up.own);
    gw_buf_put(&w->bufs, t->down.own);
    free(t);
    r->tunnel = NULL;
    gw_metrics_open_tunnels(-1);
    /* The request ends here: nothing after it is parsed or kept. */
    c->in->end = r->msg_end;
    r->close_after = true;
    c->state = GW_CONN_PROXY;
    gw_conn_request_done(c);
}

void gw_tunnel_close(gw_req_t *r)
{
    gw_tunnel_end(r->tunnel, "shutting down");
}
