/* The status listener declared in gw_status.h. */
#include "gw_status.h"
#include "gw_log.h"
#include "gw_metrics.h"

#include <errno.h>
#include <ev.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define GW_ST_READ_SIZE    4096
#define GW_ST_LINGER       2.0 /* seconds to drain input before closing */
#define GW_ST_ACCEPT_RETRY 1.0 /* pause after running out of descriptors */
#define GW_ST_UNSET        UINT64_MAX

typedef struct gw_st_conn_s gw_st_conn_t;

struct gw_status_s {
    struct ev_loop *loop;
    int listen_fd;
    ev_io accept_w;
    ev_timer accept_retry;
    gw_status_ready_fn ready;
    void *ud;
    double timeout;
    gw_st_conn_t *conns;
    int nconns;
};

struct gw_st_conn_s {
    gw_status_t *srv;
    gw_st_conn_t *prev, *next;
    int fd;
    ev_io io;
    int watching; /* EV_READ or EV_WRITE: the events io is started for */
    ev_timer timer;
    llhttp_t parser;

    /* input: in[in_off..in_len) is read but not yet parsed */
    char in[GW_ST_READ_SIZE];
    size_t in_off, in_len;

    /* the request being parsed */
    uint64_t consumed;   /* bytes handed to llhttp before `chunk` */
    const char *chunk;   /* the data of the running llhttp_execute */
    uint64_t head_start; /* offset of the request's first byte, or GW_ST_UNSET */
    bool in_head, too_large;
    bool complete; /* the request is parsed and waits for its answer */
    int refuse;    /* 400 or 405: the request is refused after its head */
    char url[GW_STATUS_HEAD_MAX];
    size_t url_len;

    /* output: out[out_off..out_len) is still to be sent */
    char *out;
    size_t out_off, out_len, out_cap;

    bool closing;   /* close once the output is sent */
    bool lingering; /* output sent, write side shut, draining input */
};

static void gw_st_conn_close(gw_st_conn_t *c)
{
    gw_status_t *s = c->srv;
    ev_io_stop(s->loop, &c->io);
    ev_timer_stop(s->loop, &c->timer);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    free(c->out);
    free(c);
}

static void gw_st_watch(gw_st_conn_t *c, int events)
{
    if (c->watching == events)
        return;
    ev_io_stop(c->srv->loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(c->srv->loop, &c->io);
    c->watching = events;
}

/* (Re)start the connection's deadline: `seconds` from now. */
static void gw_st_deadline(gw_st_conn_t *c, double seconds)
{
    c->timer.repeat = seconds;
    ev_timer_again(c->srv->loop, &c->timer);
}

static void gw_st_out(gw_st_conn_t *c, const char *p, size_t n)
{
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 1024;
        while (cap < c->out_len + n)
            cap *= 2;
        c->out = gw_xrealloc(c->out, cap);
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
}

static const char *gw_st_reason(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

/* Queue one response; c->closing decides the Connection header. */
static void gw_st_respond(gw_st_conn_t *c, int code, const char *type, const char *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n%sConnection: %s\r\n\r\n",
                     code, gw_st_reason(code), type, len, code == 405 ? "Allow: GET\r\n" : "",
                     c->closing ? "close" : "keep-alive");
    gw_st_out(c, head, (size_t)n);
    gw_st_out(c, body, len);
}

static void gw_st_json(gw_st_conn_t *c, int code, const char *body)
{
    gw_st_respond(c, code, "application/json", body, strlen(body));
}

/* Answer an unusable request and close after sending. */
static void gw_st_fail(gw_st_conn_t *c, int code)
{
    c->closing = true;
    if (code == 405)
        gw_st_json(c, 405, "{\"error\":\"method not allowed\"}");
    else if (code == 431)
        gw_st_json(c, 431, "{\"error\":\"request header fields too large\"}");
    else
        gw_st_json(c, 400, "{\"error\":\"bad request\"}");
}

/* Answer a complete GET request according to its path. */
static void gw_st_route(gw_st_conn_t *c)
{
    gw_status_t *s = c->srv;
    const char *q = memchr(c->url, '?', c->url_len);
    gw_str_t path = {c->url, q ? (size_t)(q - c->url) : c->url_len};

    if (gw_str_eq(path, GW_STR("/health"))) {
        gw_st_json(c, 200, "{\"status\":\"ok\"}");
    } else if (gw_str_eq(path, GW_STR("/ready"))) {
        if (!s->ready || s->ready(s->ud))
            gw_st_json(c, 200, "{\"status\":\"ready\"}");
        else
            gw_st_json(c, 503, "{\"status\":\"not ready\"}");
    } else if (gw_str_eq(path, GW_STR("/metrics"))) {
        char *body = NULL;
        size_t len = gw_metrics_render(&body);
        gw_st_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
        free(body);
    } else {
        gw_st_json(c, 404, "{\"error\":\"not found\"}");
    }
}

/* ---- llhttp callbacks ---- */

/* Account for head bytes up to at+len; -1 once the head is too large. */
static int gw_st_head(llhttp_t *p, const char *at, size_t len)
{
    gw_st_conn_t *c = p->data;
    uint64_t pos = c->consumed + (uint64_t)(at - c->chunk);
    if (c->head_start == GW_ST_UNSET)
        c->head_start = pos;
    if (pos + len - c->head_start > GW_STATUS_HEAD_MAX) {
        c->too_large = true;
        return -1;
    }
    return 0;
}

static int gw_st_on_message_begin(llhttp_t *p)
{
    gw_st_conn_t *c = p->data;
    c->in_head = true;
    c->too_large = false;
    c->complete = false;
    c->refuse = 0;
    c->head_start = GW_ST_UNSET;
    c->url_len = 0;
    return 0;
}

static int gw_st_on_url(llhttp_t *p, const char *at, size_t len)
{
    gw_st_conn_t *c = p->data;
    if (gw_st_head(p, at, len) < 0 || len > sizeof c->url - c->url_len)
        return -1;
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    return 0;
}

/* Pauses on a request it will refuse: no need to read further. */
static int gw_st_on_headers_complete(llhttp_t *p)
{
    gw_st_conn_t *c = p->data;
    c->in_head = false;
    if (llhttp_get_method(p) != HTTP_GET)
        c->refuse = 405;
    else if ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length))
        c->refuse = 400;
    return c->refuse ? HPE_PAUSED : 0;
}

/* Pauses after each request so that its response goes out first. */
static int gw_st_on_message_complete(llhttp_t *p)
{
    gw_st_conn_t *c = p->data;
    if (!llhttp_should_keep_alive(p) || p->upgrade)
        c->closing = true;
    c->complete = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t gw_st_settings = {
    .on_message_begin = gw_st_on_message_begin,
    .on_method = gw_st_head,
    .on_url = gw_st_on_url,
    .on_version = gw_st_head,
    .on_header_field = gw_st_head,
    .on_header_value = gw_st_head,
    .on_headers_complete = gw_st_on_headers_complete,
    .on_message_complete = gw_st_on_message_complete,
};

/* ---- connection I/O ---- */

/*
 * Parse buffered input up to the end of the next request head or request
 * (or all of it) and queue the answer once there is one. llhttp pauses
 * right after the head of a refused request and right after a complete
 * request, which has no body here: the pause position is the end of the
 * head, so its size is exact.
 */
static void gw_st_parse(gw_st_conn_t *c)
{
    const char *data = c->in + c->in_off;
    size_t len = c->in_len - c->in_off;
    c->chunk = data;
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    size_t used = len;
    if (err == HPE_PAUSED) {
        used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
        llhttp_resume(&c->parser);
    } else if (err != HPE_OK) {
        gw_st_fail(c, c->too_large ? 431 : 400);
        return;
    }
    c->consumed += used;
    c->in_off += used;
    if (c->in_off == c->in_len)
        c->in_off = c->in_len = 0;

    bool head_done = c->refuse || c->complete;
    if ((head_done || c->in_head) && c->head_start != GW_ST_UNSET &&
        c->consumed - c->head_start > GW_STATUS_HEAD_MAX)
        gw_st_fail(c, 431);
    else if (c->refuse)
        gw_st_fail(c, c->refuse);
    else if (c->complete)
        gw_st_route(c);
    c->complete = false;
    c->refuse = 0;
}

/* Send queued output. Returns -1 on a write error, else 0 (maybe partial). */
static int gw_st_send(gw_st_conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        }
        c->out_off += (size_t)n;
    }
    free(c->out);
    c->out = NULL;
    c->out_off = c->out_len = c->out_cap = 0;
    return 0;
}

/*
 * Move the connection on: send output, then parse buffered input, then
 * wait for more. c may be freed on return.
 */
static void gw_st_drive(gw_st_conn_t *c)
{
    for (;;) {
        if (c->out_len) {
            if (gw_st_send(c) < 0) {
                gw_st_conn_close(c);
                return;
            }
            if (c->out_len) {
                gw_st_watch(c, EV_WRITE);
                return;
            }
            if (!c->closing)
                gw_st_deadline(c, c->srv->timeout);
        }
        if (c->closing) {
            /* Drain what the client still sends so that close() sends no RST
             * that could destroy the response before the client reads it. */
            shutdown(c->fd, SHUT_WR);
            c->lingering = true;
            gw_st_deadline(c, GW_ST_LINGER);
            gw_st_watch(c, EV_READ);
            return;
        }
        if (c->in_off == c->in_len) {
            gw_st_watch(c, EV_READ);
            return;
        }
        gw_st_parse(c);
    }
}

static void gw_st_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    gw_st_conn_t *c = w->data;
    if (c->watching == EV_WRITE) {
        gw_st_drive(c);
        return;
    }
    ssize_t n = read(c->fd, c->in, sizeof c->in);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        gw_st_conn_close(c);
        return;
    }
    if (c->lingering)
        return;
    c->in_off = 0;
    c->in_len = (size_t)n;
    gw_st_drive(c);
}

static void gw_st_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    gw_st_conn_close(w->data);
}

static void gw_st_conn_new(gw_status_t *s, int fd)
{
    gw_st_conn_t *c = gw_xcalloc(1, sizeof *c);
    c->srv = s;
    c->fd = fd;
    llhttp_init(&c->parser, HTTP_REQUEST, &gw_st_settings);
    c->parser.data = c;
    c->head_start = GW_ST_UNSET;
    ev_io_init(&c->io, gw_st_io_cb, fd, EV_READ);
    c->io.data = c;
    ev_init(&c->timer, gw_st_timer_cb);
    c->timer.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    gw_st_deadline(c, s->timeout);
    ev_io_start(s->loop, &c->io);
    c->watching = EV_READ;
}

static void gw_st_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    gw_status_t *s = w->data;
    for (;;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                gw_log_error("status: accept: %s", strerror(errno));
                ev_io_stop(loop, &s->accept_w);
                ev_timer_set(&s->accept_retry, GW_ST_ACCEPT_RETRY, 0);
                ev_timer_start(loop, &s->accept_retry);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                gw_log_error("status: accept: %s", strerror(errno));
            }
            return;
        }
        if (s->nconns >= GW_STATUS_MAX_CONNS)
            close(fd);
        else
            gw_st_conn_new(s, fd);
    }
}

static void gw_st_accept_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    gw_status_t *s = w->data;
    ev_io_start(loop, &s->accept_w);
}

gw_status_t *gw_status_start(struct ev_loop *loop, int listen_fd, gw_status_ready_fn ready,
                             void *ud)
{
    if (!loop || listen_fd < 0)
        return NULL;
    gw_status_t *s = gw_xcalloc(1, sizeof *s);
    s->loop = loop;
    s->listen_fd = listen_fd;
    s->ready = ready;
    s->ud = ud;
    s->timeout = GW_STATUS_TIMEOUT;
    ev_io_init(&s->accept_w, gw_st_accept_cb, listen_fd, EV_READ);
    s->accept_w.data = s;
    ev_init(&s->accept_retry, gw_st_accept_retry_cb);
    s->accept_retry.data = s;
    ev_io_start(loop, &s->accept_w);
    return s;
}

void gw_status_set_timeout(gw_status_t *s, double seconds)
{
    if (seconds > 0)
        s->timeout = seconds;
}

void gw_status_stop(gw_status_t *s)
{
    if (!s)
        return;
    ev_io_stop(s->loop, &s->accept_w);
    ev_timer_stop(s->loop, &s->accept_retry);
    while (s->conns)
        gw_st_conn_close(s->conns);
    free(s);
}
