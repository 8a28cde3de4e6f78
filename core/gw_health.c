/*
 * Active health checks declared in gw_health.h.
 *
 * Each target has a repeating timer; on each tick, unless the previous
 * check is still in flight, a check runs as a small state machine on the
 * loop: non-blocking connect, a TLS handshake when the upstream has `tls`
 * (with the same verification as proxied requests), write the GET, read
 * until the status line is complete, close. One timer bounds the whole
 * check. Addresses are resolved once, at start.
 */
#include "gw_health.h"

#include "gw_log.h"
#include "gw_tls_upstream.h"

#include <errno.h>
#include <ev.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

typedef enum {
    GW_HC_IDLE = 0,
    GW_HC_CONNECTING,
    GW_HC_HANDSHAKE,
    GW_HC_WRITING,
    GW_HC_READING,
} gw_hc_state_t;

typedef struct {
    gw_health_t *h;
    int index;
    const gw_target_conf_t *conf;
    struct sockaddr_storage addr;
    socklen_t addrlen; /* 0 when the host could not be resolved */
    ev_timer tick;     /* every interval */
    ev_timer deadline; /* timeout of the check in flight */
    ev_io io;
    int fd;             /* -1 when no check is in flight */
    struct ssl_st *ssl; /* TLS upstreams, while a check is in flight */
    gw_hc_state_t state;
    char *req;
    size_t req_len, req_sent;
    char buf[512];
    size_t buf_len;
    int successes, failures; /* consecutive */
    bool up;
} gw_hc_target_t;

struct gw_health_s {
    struct ev_loop *loop;
    const gw_upstream_conf_t *conf;
    gw_balancer_t *b;
    gw_hc_target_t *targets;
    size_t n;
    double timeout;
};

/* Host without the brackets of an IPv6 literal, into buf. */
static const char *gw_hc_bare_host(const char *host, char *buf, size_t size)
{
    size_t len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < size) {
        memcpy(buf, host + 1, len - 2);
        buf[len - 2] = '\0';
        return buf;
    }
    return host;
}

/* Resolve the target's host once; on failure log it and leave addrlen 0. */
static void gw_hc_resolve(gw_hc_target_t *t)
{
    char bare[256], port[8];
    const char *host = gw_hc_bare_host(t->conf->host ? t->conf->host : "", bare, sizeof bare);
    snprintf(port, sizeof port, "%u", (unsigned)t->conf->port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res) {
        gw_log_error("upstream %s: health check cannot resolve target %s:%u: %s", t->h->conf->name,
                     host, (unsigned)t->conf->port, rc ? gai_strerror(rc) : "no address");
        if (res)
            freeaddrinfo(res);
        return;
    }
    memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
    t->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
}

/* The check request for one target, malloc'ed; IPv6 literals get brackets. */
static char *gw_hc_request(const gw_upstream_conf_t *conf, const gw_target_conf_t *tc, size_t *len)
{
    const char *path = conf->active.path && conf->active.path[0] ? conf->active.path : "/health";
    const char *host = tc->host ? tc->host : "";
    bool brackets = strchr(host, ':') && host[0] != '[';
    const char *fmt = "GET %s HTTP/1.1\r\nHost: %s%s%s\r\nUser-Agent: moongate-health\r\n"
                      "Connection: close\r\n\r\n";
    int n = snprintf(NULL, 0, fmt, path, brackets ? "[" : "", host, brackets ? "]" : "");
    char *req = gw_xmalloc((size_t)n + 1);
    snprintf(req, (size_t)n + 1, fmt, path, brackets ? "[" : "", host, brackets ? "]" : "");
    *len = (size_t)n;
    return req;
}

/* End the check in flight, if any: stop its watchers and close its socket. */
static void gw_hc_close(gw_hc_target_t *t)
{
    struct ev_loop *loop = t->h->loop;
    ev_io_stop(loop, &t->io);
    ev_timer_stop(loop, &t->deadline);
    gw_tls_upstream_ssl_free(t->ssl);
    t->ssl = NULL;
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    t->state = GW_HC_IDLE;
}

/*
 * Close the check and count its result: `reason` is NULL on success, else
 * why it failed. Marks the target up or down when a threshold is reached.
 */
static void gw_hc_finish(gw_hc_target_t *t, const char *reason)
{
    gw_hc_close(t);
    const gw_upstream_conf_t *conf = t->h->conf;
    int healthy = conf->active.healthy > 0 ? conf->active.healthy : 1;
    int unhealthy = conf->active.unhealthy > 0 ? conf->active.unhealthy : 1;
    if (!reason) {
        t->failures = 0;
        if (t->successes < healthy)
            t->successes++;
        if (!t->up && t->successes >= healthy) {
            t->up = true;
            gw_balancer_set_up(t->h->b, t->index, true);
            gw_log_warn("upstream %s target %s:%u is up", conf->name, t->conf->host,
                        (unsigned)t->conf->port);
        }
        return;
    }
    t->successes = 0;
    if (t->failures < unhealthy)
        t->failures++;
    if (t->up && t->failures >= unhealthy) {
        t->up = false;
        gw_balancer_set_up(t->h->b, t->index, false);
        gw_log_warn("upstream %s target %s:%u is down (%s)", conf->name, t->conf->host,
                    (unsigned)t->conf->port, reason);
    }
}

/* Fail the check with "<what>: <strerror(err)>". */
static void gw_hc_fail_errno(gw_hc_target_t *t, const char *what, int err)
{
    char reason[128];
    snprintf(reason, sizeof reason, "%s: %s", what, strerror(err));
    gw_hc_finish(t, reason);
}

/* Switch the io watcher to `events` (EV_READ or EV_WRITE). */
static void gw_hc_watch(gw_hc_target_t *t, int events)
{
    ev_io_stop(t->h->loop, &t->io);
    ev_io_set(&t->io, t->fd, events);
    ev_io_start(t->h->loop, &t->io);
}

/*
 * With the status line (or a full buffer) read, finish the check: success
 * for "HTTP/1.x NNN" with NNN in 200..399. Returns false when more bytes
 * are needed.
 */
static bool gw_hc_parse(gw_hc_target_t *t)
{
    const char *b = t->buf;
    size_t len = t->buf_len;
    if (!memchr(b, '\n', len) && len < sizeof t->buf)
        return false;
    bool valid = len >= 12 && memcmp(b, "HTTP/1.", 7) == 0 && b[7] >= '0' && b[7] <= '9' &&
                 b[8] == ' ' && b[9] >= '1' && b[9] <= '9' && b[10] >= '0' && b[10] <= '9' &&
                 b[11] >= '0' && b[11] <= '9' &&
                 (len == 12 || b[12] == ' ' || b[12] == '\r' || b[12] == '\n');
    if (!valid) {
        gw_hc_finish(t, "invalid status line");
        return true;
    }
    int status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
    if (status >= 200 && status < 400) {
        gw_hc_finish(t, NULL);
    } else {
        char reason[32];
        snprintf(reason, sizeof reason, "status %d", status);
        gw_hc_finish(t, reason);
    }
    return true;
}

/*
 * Move bytes over the check's connection, TLS or plain, like send(2) or
 * recv(2); with TLS, EAGAIN also switches the watcher to the event the
 * connection waits for, and a fatal error ends the check with its reason
 * (then errno is 0 and nothing is left to do).
 */
static ssize_t gw_hc_io(gw_hc_target_t *t, bool write, void *buf, size_t len)
{
    if (!t->ssl)
        return write ? send(t->fd, buf, len, MSG_NOSIGNAL) : recv(t->fd, buf, len, 0);
    int events = 0;
    char why[256], reason[300];
    ssize_t n = write ? gw_tls_upstream_ssl_write(t->ssl, buf, len, &events, why, sizeof why)
                      : gw_tls_upstream_ssl_read(t->ssl, buf, len, &events, why, sizeof why);
    if (n < 0 && errno == EAGAIN) {
        gw_hc_watch(t, events);
    } else if (n < 0) {
        snprintf(reason, sizeof reason, "TLS %s failed: %s", write ? "write" : "read", why);
        gw_hc_finish(t, reason);
        errno = 0;
    }
    return n;
}

/* Send what is left of the request; then wait for the answer. */
static void gw_hc_write(gw_hc_target_t *t)
{
    while (t->req_sent < t->req_len) {
        ssize_t n = gw_hc_io(t, true, t->req + t->req_sent, t->req_len - t->req_sent);
        if (n < 0) {
            if (errno == 0)
                return; /* failed and finished */
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            gw_hc_fail_errno(t, "send", errno);
            return;
        }
        t->req_sent += (size_t)n;
    }
    t->state = GW_HC_READING;
    gw_hc_watch(t, EV_READ);
}

/* Read until the status line is complete. */
static void gw_hc_read(gw_hc_target_t *t)
{
    for (;;) {
        ssize_t n = gw_hc_io(t, false, t->buf + t->buf_len, sizeof t->buf - t->buf_len);
        if (n < 0) {
            if (errno == 0)
                return; /* failed and finished */
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                gw_hc_fail_errno(t, "recv", errno);
            return;
        }
        if (n == 0) {
            gw_hc_finish(t, "connection closed before the status line");
            return;
        }
        t->buf_len += (size_t)n;
        if (gw_hc_parse(t))
            return;
    }
}

static void gw_hc_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    gw_hc_target_t *t = w->data;
    if (t->state == GW_HC_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            gw_hc_fail_errno(t, "connect", err);
            return;
        }
        t->state = GW_HC_WRITING;
        if (t->h->conf->tls.enabled) {
            t->ssl = gw_tls_upstream_ssl_new(t->h->conf, (size_t)t->index, t->fd);
            if (!t->ssl) {
                gw_hc_finish(t, "cannot set up TLS");
                return;
            }
            t->state = GW_HC_HANDSHAKE;
        }
    }
    if (t->state == GW_HC_HANDSHAKE) {
        char err[320];
        int events = 0;
        int rc = gw_tls_upstream_ssl_handshake(t->ssl, &events, err, sizeof err);
        if (rc == GW_AGAIN) {
            gw_hc_watch(t, events);
            return;
        }
        if (rc != GW_OK) {
            gw_hc_finish(t, err);
            return;
        }
        t->state = GW_HC_WRITING;
    }
    if (t->state == GW_HC_WRITING)
        gw_hc_write(t);
    else if (t->state == GW_HC_READING)
        gw_hc_read(t);
}

static void gw_hc_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    gw_hc_finish(w->data, "timeout");
}

/* Start one check: open the socket and connect without blocking. */
static void gw_hc_begin(gw_hc_target_t *t)
{
    if (t->addrlen == 0) {
        gw_hc_finish(t, "cannot resolve host");
        return;
    }
    int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        gw_hc_fail_errno(t, "socket", errno);
        return;
    }
    t->fd = fd;
    t->req_sent = 0;
    t->buf_len = 0;
    if (connect(fd, (struct sockaddr *)&t->addr, t->addrlen) < 0 && errno != EINPROGRESS) {
        gw_hc_fail_errno(t, "connect", errno);
        return;
    }
    t->state = GW_HC_CONNECTING;
    gw_hc_watch(t, EV_WRITE);
    ev_timer_set(&t->deadline, t->h->timeout, 0.);
    ev_timer_start(t->h->loop, &t->deadline);
}

static void gw_hc_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    gw_hc_target_t *t = w->data;
    if (t->fd < 0)
        gw_hc_begin(t);
}

gw_health_t *gw_health_start(struct ev_loop *loop, const gw_upstream_conf_t *conf, gw_balancer_t *b)
{
    if (!conf->active.enabled)
        return NULL;
    gw_health_t *h = gw_xcalloc(1, sizeof *h);
    h->loop = loop;
    h->conf = conf;
    h->b = b;
    h->n = conf->ntargets;
    h->timeout = conf->active.timeout > 0 ? conf->active.timeout : 2;
    double interval = conf->active.interval > 0 ? conf->active.interval : 5;
    h->targets = gw_xcalloc(h->n ? h->n : 1, sizeof *h->targets);
    for (size_t i = 0; i < h->n; i++) {
        gw_hc_target_t *t = &h->targets[i];
        t->h = h;
        t->index = (int)i;
        t->conf = &conf->targets[i];
        t->fd = -1;
        t->up = true;
        gw_balancer_set_up(b, (int)i, true);
        t->req = gw_hc_request(conf, t->conf, &t->req_len);
        gw_hc_resolve(t);
        ev_io_init(&t->io, gw_hc_io_cb, -1, EV_WRITE);
        t->io.data = t;
        ev_timer_init(&t->deadline, gw_hc_deadline_cb, h->timeout, 0.);
        t->deadline.data = t;
        /* Spread the targets' checks over one interval. */
        ev_timer_init(&t->tick, gw_hc_tick_cb, interval * (double)i / (double)h->n, interval);
        t->tick.data = t;
        ev_timer_start(loop, &t->tick);
    }
    return h;
}

void gw_health_stop(gw_health_t *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++) {
        gw_hc_target_t *t = &h->targets[i];
        ev_timer_stop(h->loop, &t->tick);
        gw_hc_close(t);
        free(t->req);
    }
    free(h->targets);
    free(h);
}
