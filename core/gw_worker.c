/*
 * A worker process: accepts on its own listening sockets, serves
 * connections on one libev loop, and on SIGTERM or SIGQUIT stops accepting,
 * lets requests in flight finish (up to timeouts.drain) and exits.
 */
#include "gw_worker.h"

#include "gw_accesslog.h"
#include "gw_log.h"
#include "gw_lua.h"
#include "gw_metrics.h"
#include "gw_watchdog.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

/* Accept every pending connection on a listening socket. */
static void gw_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    gw_worker_t *w = io->data;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(io->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                gw_log_error("accept(): %s", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        gw_conn_accept(w, fd, (struct sockaddr *)&ss, len, &w->cfg->listens[io - w->listeners]);
    }
}

static uint64_t gw_rng_next(uint64_t s[2])
{
    uint64_t s1 = s[0];
    const uint64_t s0 = s[1];
    s[0] = s0;
    s1 ^= s1 << 23;
    s[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return s[1] + s0;
}

void gw_worker_request_id(gw_worker_t *w, char out[17])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v = gw_rng_next(w->rng);
    for (int i = 15; i >= 0; i--) {
        out[i] = hex[v & 15];
        v >>= 4;
    }
    out[16] = '\0';
}

/* Stop accepting and let connections finish; the loop ends when none is
 * left or when timeouts.drain passes. */
static void gw_worker_stop(gw_worker_t *w)
{
    if (w->stopping)
        return;
    w->stopping = true;
    gw_log_info("worker %d: shutting down, %zu connection(s) open", w->index, w->nconns);
    for (size_t i = 0; i < w->nlisteners; i++) {
        ev_io_stop(w->loop, &w->listeners[i]);
        close(w->listen_fds[i]);
    }
    w->nlisteners = 0;
    gw_conn_close_idle(w);
    gw_upstream_pools_close(w);
    gw_lua_timers_stop(w);
    ev_timer_start(w->loop, &w->drain_timer);
}

static void gw_signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    gw_worker_stop(s->data);
}

static void gw_drain_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_worker_t *w = t->data;
    gw_log_warn("worker %d: drain timeout, closing %zu connection(s)", w->index, w->nconns);
    while (w->conns)
        gw_conn_close(w->conns);
    ev_break(loop, EVBREAK_ALL);
}

/* Every 100 ms: write the buffered access log; end the loop once a
 * stopping worker has no connection left. */
static void gw_tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_worker_t *w = t->data;
    gw_watchdog_beat(w->area);
    gw_accesslog_flush();
    if (w->stopping) {
        gw_conn_close_idle(w);
        if (w->nconns == 0 && w->ntasks == 0)
            ev_break(loop, EVBREAK_ALL);
    }
}

static void gw_worker_free(gw_worker_t *w)
{
    while (w->conns)
        gw_conn_close(w->conns);
    /* Log phases and timer runs still waiting when the drain time ran out:
     * cancel their waits and free them before their VM goes. */
    while (w->tasks)
        gw_conn_task_done(w->tasks);
    gw_lua_close(w);
    gw_upstreams_free(w);
    gw_router_free(w->router);
    while (w->free_reqs) {
        gw_req_t *r = w->free_reqs;
        w->free_reqs = r->next_free;
        free(r->headers);
        free(r->rheaders);
        free(r->path);
        free(r->hdr_ops);
        free(r);
    }
    gw_buf_pool_destroy(&w->bufs);
    free(w->listeners);
    free(w->route_slots);
}

int gw_worker_run(gw_config_t *cfg, int index, int metrics_area, int *listen_fds)
{
    gw_worker_t w;
    memset(&w, 0, sizeof w);
    w.cfg = cfg;
    w.index = index;
    w.area = metrics_area;
    w.loop = ev_default_loop(EVFLAG_AUTO);
    if (getrandom(w.rng, sizeof w.rng, 0) != sizeof w.rng || (w.rng[0] | w.rng[1]) == 0) {
        w.rng[0] = (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
        w.rng[1] = (uint64_t)(gw_wall_now() * 1e6) | 1;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    gw_metrics_set_worker(metrics_area);
    if (cfg->access_log.enabled && gw_accesslog_open(cfg->access_log.path) != GW_OK)
        gw_log_error("cannot open access log %s: %s", cfg->access_log.path, strerror(errno));

    char err[512];
    w.router = gw_router_build(cfg, err, sizeof err);
    if (!w.router) {
        gw_log_error("worker %d: %s", index, err);
        return 1;
    }
    if (gw_lua_init(&w, err, sizeof err) != GW_OK) {
        gw_log_error("worker %d: %s", index, err);
        gw_router_free(w.router);
        return 1;
    }
    w.route_slots = gw_xcalloc(cfg->nroutes, sizeof(int));
    for (size_t i = 0; i < cfg->nroutes; i++)
        w.route_slots[i] = gw_metrics_route_slot(cfg->routes[i].name);
    /* Buffers hold a whole request head, or a response head, plus room. */
    size_t bufsize = cfg->limits.max_header_size + 4096;
    if (bufsize < 16384)
        bufsize = 16384;
    gw_buf_pool_init(&w.bufs, bufsize, 1024);
    gw_upstreams_init(&w, err, sizeof err);

    w.nlisteners = cfg->nlistens;
    w.listen_fds = listen_fds;
    w.listeners = gw_xcalloc(cfg->nlistens, sizeof(ev_io));
    for (size_t i = 0; i < cfg->nlistens; i++) {
        ev_io_init(&w.listeners[i], gw_accept_cb, listen_fds[i], EV_READ);
        w.listeners[i].data = &w;
        ev_io_start(w.loop, &w.listeners[i]);
    }
    ev_signal_init(&w.sig_term, gw_signal_cb, SIGTERM);
    ev_signal_init(&w.sig_quit, gw_signal_cb, SIGQUIT);
    w.sig_term.data = w.sig_quit.data = &w;
    ev_signal_start(w.loop, &w.sig_term);
    ev_signal_start(w.loop, &w.sig_quit);
    ev_timer_init(&w.flush_timer, gw_tick_cb, 0.1, 0.1);
    w.flush_timer.data = &w;
    ev_timer_start(w.loop, &w.flush_timer);
    ev_timer_init(&w.drain_timer, gw_drain_cb, cfg->timeouts.drain, 0.);
    w.drain_timer.data = &w;

    gw_log_debug("worker %d started", index);
    gw_watchdog_beat(w.area);
    ev_run(w.loop, 0);

    gw_accesslog_flush();
    gw_accesslog_close();
    gw_worker_free(&w);
    gw_log_debug("worker %d exiting", index);
    return 0;
}
