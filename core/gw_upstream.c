/*
 * Upstreams of a worker: resolved targets, their balancer and health checks,
 * and the per-target keep-alive pools of idle connections. An idle
 * connection holds no buffer; it watches for the upstream closing it and
 * for its idle timeout.
 */
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_net.h"
#include "gw_tls_upstream.h"
#include "gw_worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int gw_upstreams_init(gw_worker_t *w, char *err, size_t errlen)
{
    const gw_config_t *cfg = w->cfg;
    w->nupstreams = cfg->nupstreams;
    w->upstreams = gw_xcalloc(cfg->nupstreams, sizeof(gw_upstream_t));
    for (size_t i = 0; i < cfg->nupstreams; i++) {
        const gw_upstream_conf_t *uc = &cfg->upstreams[i];
        gw_upstream_t *up = &w->upstreams[i];
        up->conf = uc;
        up->ntargets = uc->ntargets;
        up->targets = gw_xcalloc(uc->ntargets, sizeof(gw_target_t));
        up->balancer = gw_balancer_new(uc);
        up->metrics_slot = gw_metrics_upstream_slot(uc->name);
        for (size_t j = 0; j < uc->ntargets; j++) {
            gw_target_t *t = &up->targets[j];
            t->up = up;
            t->index = (int)j;
            const char *host = uc->targets[j].host;
            snprintf(t->name, sizeof t->name, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
                     uc->targets[j].port);
            t->resolved = gw_net_resolve(uc->targets[j].host, uc->targets[j].port, &t->addr,
                                         &t->addrlen) == GW_OK;
            if (!t->resolved)
                gw_log_warn("upstream %s: cannot resolve target %s", uc->name, t->name);
        }
        up->health = gw_health_start(w->loop, uc, up->balancer);
    }
    (void)err;
    (void)errlen;
    return GW_OK;
}

void gw_upstreams_free(gw_worker_t *w)
{
    gw_upstream_pools_close(w);
    while (w->direct) {
        gw_target_t *t = w->direct;
        w->direct = t->next_direct;
        gw_upstream_direct_free(t);
    }
    w->ndirect = 0;
    for (size_t i = 0; i < w->nupstreams; i++) {
        gw_upstream_t *up = &w->upstreams[i];
        gw_health_stop(up->health);
        gw_balancer_free(up->balancer);
        for (size_t j = 0; j < up->ntargets; j++)
            gw_tls_upstream_target_free(&up->targets[j]);
        free(up->targets);
    }
    free(w->upstreams);
    w->upstreams = NULL;
    w->nupstreams = 0;
}

static void gw_pool_unlink(gw_upconn_t *uc)
{
    gw_target_t *t = uc->target;
    if (uc->prev)
        uc->prev->next = uc->next;
    else
        t->idle = uc->next;
    if (uc->next)
        uc->next->prev = uc->prev;
    uc->prev = uc->next = NULL;
    t->nidle--;
    gw_metrics_idle_connections(t->up->metrics_slot, -1);
}

/* An idle connection became readable (the upstream closed it or sent
 * garbage; over TLS, records that are not data are consumed) or its idle
 * timeout passed: either way it is closed. */
static void gw_idle_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    gw_upconn_t *uc = io->data;
    if (uc->ssl) {
        if (gw_tls_upstream_idle_alive(uc))
            return;
        gw_pool_unlink(uc);
        gw_upconn_close(uc);
        return;
    }
    char b;
    ssize_t n = recv(uc->fd, &b, 1, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    gw_pool_unlink(uc);
    gw_upconn_close(uc);
}

static void gw_idle_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_upconn_t *uc = t->data;
    gw_pool_unlink(uc);
    gw_upconn_close(uc);
}

gw_upconn_t *gw_upstream_pool_get(gw_target_t *t)
{
    gw_upconn_t *uc = t->idle;
    if (!uc)
        return NULL;
    gw_pool_unlink(uc);
    gw_worker_t *w = uc->w;
    ev_io_stop(w->loop, &uc->io);
    ev_timer_stop(w->loop, &uc->timer);
    return uc;
}

void gw_upstream_pool_put(gw_upconn_t *uc)
{
    gw_target_t *t = uc->target;
    gw_worker_t *w = uc->w;
    uc->req = NULL;
    if (w->stopping || t->nidle >= t->up->conf->max_idle || gw_tls_upstream_pending(uc)) {
        gw_upconn_close(uc);
        return;
    }
    ev_io_stop(w->loop, &uc->io);
    ev_timer_stop(w->loop, &uc->timer);
    ev_set_cb(&uc->io, gw_idle_io_cb);
    uc->io.data = uc;
    ev_io_modify(&uc->io, EV_READ);
    ev_io_start(w->loop, &uc->io);
    ev_set_cb(&uc->timer, gw_idle_timer_cb);
    uc->timer.data = uc;
    ev_timer_set(&uc->timer, t->up->conf->idle_timeout, 0.);
    ev_timer_start(w->loop, &uc->timer);
    uc->prev = NULL;
    uc->next = t->idle;
    if (t->idle)
        t->idle->prev = uc;
    t->idle = uc;
    t->nidle++;
    gw_metrics_idle_connections(t->up->metrics_slot, 1);
}

void gw_upconn_close(gw_upconn_t *uc)
{
    gw_worker_t *w = uc->w;
    ev_io_stop(w->loop, &uc->io);
    ev_timer_stop(w->loop, &uc->timer);
    gw_tls_upstream_detach(uc);
    close(uc->fd);
    free(uc);
}

gw_upconn_t *gw_upconn_open(gw_worker_t *w, gw_target_t *t)
{
    if (!t->resolved) {
        errno = EHOSTUNREACH;
        return NULL;
    }
    bool in_progress;
    int fd = gw_net_connect(&t->addr, t->addrlen, &in_progress);
    if (fd < 0)
        return NULL;
    gw_upconn_t *uc = gw_xcalloc(1, sizeof *uc);
    uc->w = w;
    uc->target = t;
    uc->fd = fd;
    uc->connecting = in_progress;
    ev_io_init(&uc->io, NULL, fd, 0);
    ev_init(&uc->timer, NULL);
    if (t->up->conf->tls.enabled) {
        if (gw_tls_upstream_attach(uc) != GW_OK) {
            gw_upconn_close(uc);
            errno = ENOMEM;
            return NULL;
        }
        uc->connecting = true; /* the handshake follows, even after an immediate connect */
    }
    return uc;
}

void gw_upstream_pools_close(gw_worker_t *w)
{
    for (size_t i = 0; i < w->nupstreams; i++) {
        gw_upstream_t *up = &w->upstreams[i];
        for (size_t j = 0; j < up->ntargets; j++) {
            gw_upconn_t *uc;
            while ((uc = up->targets[j].idle) != NULL) {
                gw_pool_unlink(uc);
                gw_upconn_close(uc);
            }
        }
    }
    for (gw_target_t *t = w->direct; t; t = t->next_direct) {
        gw_upconn_t *uc;
        while ((uc = t->idle) != NULL) {
            gw_pool_unlink(uc);
            gw_upconn_close(uc);
        }
    }
}

/* ---- targets of moongate.upstream.set_target ---- */

/* Targets a worker keeps for set_target (with their keep-alive pools). */
#define GW_DIRECT_MAX 64
/* Seconds after which a kept target's name is resolved again. */
#define GW_DIRECT_TTL 10.0

static void gw_direct_resolve(gw_target_t *t, const char *host, uint16_t port, double now)
{
    t->resolved = gw_net_resolve(host, port, &t->addr, &t->addrlen) == GW_OK;
    t->resolved_at = now;
    if (!t->resolved)
        gw_log_warn("set_target: cannot resolve %s", t->name);
}

gw_target_t *gw_upstream_direct(gw_worker_t *w, gw_req_t *r)
{
    char name[80];
    double now = ev_now(w->loop);
    snprintf(name, sizeof name, strchr(r->direct_host, ':') ? "[%s]:%u" : "%s:%u", r->direct_host,
             r->direct_port);
    for (gw_target_t *t = w->direct; t; t = t->next_direct)
        if (strcmp(t->name, name) == 0) {
            if (now - t->resolved_at >= GW_DIRECT_TTL)
                gw_direct_resolve(t, r->direct_host, r->direct_port, now);
            return t;
        }
    gw_target_t *t = gw_xcalloc(1, sizeof *t);
    t->up = r->up; /* its keep-alive settings apply to the pool */
    t->index = -1;
    memcpy(t->name, name, sizeof name);
    gw_direct_resolve(t, r->direct_host, r->direct_port, now);
    if (w->ndirect < GW_DIRECT_MAX) {
        t->next_direct = w->direct;
        w->direct = t;
        w->ndirect++;
    } else {
        r->direct_owned = true;
    }
    return t;
}

void gw_upstream_direct_free(gw_target_t *t)
{
    gw_upconn_t *uc;
    while ((uc = t->idle) != NULL) {
        gw_pool_unlink(uc);
        gw_upconn_close(uc);
    }
    free(t);
}
