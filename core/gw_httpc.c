/*
 * The HTTP/1.1 client declared in gw_httpc.h.
 *
 * A call goes through three phases, each with its own deadline on the
 * call's timer: CONNECT (until the socket is writable), SEND (between
 * writes of the request) and READ (between reads of the response). The
 * response is parsed by llhttp; its callbacks only copy bytes into the
 * call. The completion callback runs from the io or timer watcher once
 * llhttp_execute has returned, after the connection went back to the pool
 * or was closed and the call was unlinked from the client, so the callback
 * may start new requests, release the call or free the client.
 *
 * An https:// call adds a HANDSHAKE phase after CONNECT, under the same
 * deadline (the connect timeout covers the TCP connect and the TLS
 * handshake); its bytes then go through the connection's SSL object
 * (gw_httpc_tls.c), whose wants (a read waiting for writability or the
 * reverse) decide the events watched.
 *
 * Hosts are kept in a list with their cached address and their pool of
 * idle connections; the key is the host, the port and the TLS settings
 * (TLS or not, verification, CA file), so a connection is only reused by
 * calls that would have accepted its handshake. An idle connection is
 * watched for readability: the peer closing it (or sending anything
 * unasked) drops it from the pool; on TLS, records that carry no data
 * (session tickets) are consumed and keep it.
 */
#include "gw_httpc.h"
#include "gw_core.h"
#include "gw_httpc_tls.h"
#include "gw_net.h"

#include <errno.h>
#include <ev.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

const char gw_httpc_error_tls[] = "tls handshake failed";
const char gw_httpc_error_resolve[] = "resolve failed";
const char gw_httpc_error_refused[] = "connection refused";
const char gw_httpc_error_connect[] = "connect failed";
const char gw_httpc_error_timeout[] = "timeout";
const char gw_httpc_error_closed[] = "connection closed";
const char gw_httpc_error_reset[] = "connection reset";
const char gw_httpc_error_io[] = "i/o error";
const char gw_httpc_error_invalid[] = "invalid response";
const char gw_httpc_error_head_large[] = "response header too large";
const char gw_httpc_error_too_large[] = "response too large";

/*
 * Name resolution calls getaddrinfo, which blocks the worker's loop; its
 * result (success or failure) is cached per host:port for this long so a
 * busy worker resolves each host at most once per period.
 */
#define GW_HTTPC_DNS_TTL     10.0
#define GW_HTTPC_MAX_HEAD    (64 * 1024) /* bytes of header names and values */
#define GW_HTTPC_MAX_HEADERS 100
#define GW_HTTPC_READ_SIZE   16384

typedef struct gw_httpc_host_s gw_httpc_host_t;
typedef struct gw_httpc_conn_s gw_httpc_conn_t;

/* A host:port with its TLS settings: its cached address and its idle
 * connections. Unreferenced entries are dropped once their cached address
 * is stale. */
struct gw_httpc_host_s {
    gw_httpc_t *h;
    gw_httpc_host_t *next;
    char *name; /* lower-case, IPv6 without brackets */
    uint16_t port;
    bool tls;
    bool verify;            /* tls: check the certificate and the name */
    char *ca;               /* tls: CA file, NULL for the system's */
    struct ssl_ctx_st *ctx; /* tls: the context of ca, owned by h->tls */
    bool cached;            /* addr/resolved_ok hold a lookup made at resolved_at */
    bool resolved_ok;
    double resolved_at;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    gw_httpc_conn_t *idle; /* most recently used first */
    size_t nidle;
    size_t refs; /* calls and connections using the entry */
};

/* A connection: used by one call, or idle in its host's pool. */
struct gw_httpc_conn_s {
    gw_httpc_host_t *host;
    gw_httpc_conn_t *prev, *next; /* idle list */
    ev_io io;                     /* data: the call, or the conn while idle */
    ev_timer idle_timer;
    int fd;
    struct ssl_st *ssl; /* https: created with the socket */
    int rwant, wwant;   /* https: the event a read or write waits for */
    unsigned requests;  /* responses completed on it */
};

typedef enum {
    GW_HTTPC_CONNECT,
    GW_HTTPC_HANDSHAKE,
    GW_HTTPC_SEND,
    GW_HTTPC_READ,
} gw_httpc_phase_t;

struct gw_httpc_call_s {
    gw_httpc_t *h; /* NULL once finished */
    gw_httpc_call_t *prev, *next;
    gw_httpc_cb cb;
    void *ud;
    gw_httpc_host_t *host;
    gw_httpc_conn_t *conn;
    gw_httpc_phase_t phase;
    ev_timer timer;       /* the phase's deadline, or a deferred failure */
    const char *deferred; /* failure reported by the deferred timer */
    char errbuf[256];     /* a failure with details (TLS), when error points here */

    char *out; /* request head and body */
    size_t out_len, out_sent;
    double connect_timeout, send_timeout, read_timeout;
    size_t max_body;
    bool idempotent, head, keep_alive;
    bool reused;    /* the connection came from the pool */
    bool retried;   /* a stale pooled connection was replaced once */
    bool got_bytes; /* some response byte arrived on this connection */

    /* Response, filled by the parser callbacks. */
    llhttp_t parser;
    const char *perr; /* why a callback stopped the parser */
    char *hbuf;       /* "name\0value\0name\0value\0..." */
    size_t hlen, hcap, value_start, nheaders;
    bool headers_done, interim, complete, reusable;
    int status;
    char *body;
    size_t body_len, body_cap;
    gw_httpc_res_t res;
};

struct gw_httpc_s {
    struct ev_loop *loop;
    size_t max_idle;
    double idle_timeout;
    gw_httpc_host_t *hosts;
    gw_httpc_call_t *calls; /* in flight */
    size_t ncalls, nidle;
    gw_httpc_tls_t *tls; /* contexts, made on the first https call */
};

static void gw_httpc_io_cb(struct ev_loop *loop, ev_io *io, int revents);
static void gw_httpc_finish(gw_httpc_call_t *c, const char *err);

/* ---- hosts and the address cache ---- */

static void gw_httpc_host_free(gw_httpc_host_t *x)
{
    free(x->name);
    free(x->ca);
    free(x);
}

/* Whether x is the entry of name:port with these TLS settings (verify and
 * ca only count with tls). */
static bool gw_httpc_host_is(const gw_httpc_host_t *x, const char *name, uint16_t port, bool tls,
                             bool verify, const char *ca)
{
    if (x->port != port || x->tls != tls || strcmp(x->name, name) != 0)
        return false;
    if (!tls)
        return true;
    return x->verify == verify && (x->ca && ca ? strcmp(x->ca, ca) == 0 : x->ca == ca);
}

/* The entry for name:port with these TLS settings, created when missing.
 * Unreferenced entries whose cached address is stale are freed on the
 * way. */
static gw_httpc_host_t *gw_httpc_host_get(gw_httpc_t *h, const char *name, uint16_t port, bool tls,
                                          bool verify, const char *ca)
{
    double now = ev_now(h->loop);
    gw_httpc_host_t *found = NULL, **pp = &h->hosts;
    while (*pp) {
        gw_httpc_host_t *x = *pp;
        if (gw_httpc_host_is(x, name, port, tls, verify, ca)) {
            found = x;
        } else if (x->refs == 0 && (!x->cached || now - x->resolved_at >= GW_HTTPC_DNS_TTL)) {
            *pp = x->next;
            gw_httpc_host_free(x);
            continue;
        }
        pp = &x->next;
    }
    if (found)
        return found;
    gw_httpc_host_t *x = gw_xcalloc(1, sizeof *x);
    x->h = h;
    x->name = gw_xstrdup(name);
    x->port = port;
    x->tls = tls;
    x->verify = verify;
    x->ca = tls && ca ? gw_xstrdup(ca) : NULL;
    x->next = h->hosts;
    h->hosts = x;
    return x;
}

/* Resolve the host unless the cached result is fresh. NULL, or
 * gw_httpc_error_resolve. Blocking: see GW_HTTPC_DNS_TTL. */
static const char *gw_httpc_resolve(gw_httpc_host_t *x)
{
    double now = ev_now(x->h->loop);
    if (!x->cached || now - x->resolved_at >= GW_HTTPC_DNS_TTL) {
        x->resolved_ok = gw_net_resolve(x->name, x->port, &x->addr, &x->addrlen) == GW_OK;
        x->cached = true;
        x->resolved_at = now;
    }
    return x->resolved_ok ? NULL : gw_httpc_error_resolve;
}

/* ---- connections and the keep-alive pool ---- */

/* Close a connection that is not in the pool and free it. */
static void gw_httpc_conn_close(gw_httpc_conn_t *conn)
{
    struct ev_loop *loop = conn->host->h->loop;
    ev_io_stop(loop, &conn->io);
    ev_timer_stop(loop, &conn->idle_timer);
    gw_httpc_tls_close(conn->ssl);
    close(conn->fd);
    conn->host->refs--;
    free(conn);
}

static void gw_httpc_pool_unlink(gw_httpc_conn_t *conn)
{
    gw_httpc_host_t *x = conn->host;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        x->idle = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    conn->prev = conn->next = NULL;
    x->nidle--;
    x->h->nidle--;
}

/* Whether an idle connection is still usable: nothing to read, no EOF
 * (on TLS: nothing but records without data, consumed here). */
static bool gw_httpc_conn_quiet(gw_httpc_conn_t *conn)
{
    if (conn->ssl)
        return gw_httpc_tls_idle_alive(conn->ssl);
    char b;
    ssize_t n = recv(conn->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

/* An idle connection became readable: the peer closed it or sent bytes
 * nobody asked for, and it leaves the pool; or, on TLS, it sent a session
 * ticket, and it stays. */
static void gw_httpc_idle_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    gw_httpc_conn_t *conn = io->data;
    if (gw_httpc_conn_quiet(conn))
        return;
    gw_httpc_pool_unlink(conn);
    gw_httpc_conn_close(conn);
}

static void gw_httpc_idle_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_httpc_conn_t *conn = t->data;
    gw_httpc_pool_unlink(conn);
    gw_httpc_conn_close(conn);
}

/* Put a connection whose last response completed cleanly into its host's
 * pool, most recent first, or close it when the pool is full. */
static void gw_httpc_pool_put(gw_httpc_conn_t *conn)
{
    gw_httpc_host_t *x = conn->host;
    gw_httpc_t *h = x->h;
    if (x->nidle >= h->max_idle) {
        gw_httpc_conn_close(conn);
        return;
    }
    ev_io_stop(h->loop, &conn->io);
    ev_set_cb(&conn->io, gw_httpc_idle_io_cb);
    conn->io.data = conn;
    ev_io_modify(&conn->io, EV_READ);
    ev_io_start(h->loop, &conn->io);
    ev_timer_set(&conn->idle_timer, h->idle_timeout, 0.);
    ev_timer_start(h->loop, &conn->idle_timer);
    conn->prev = NULL;
    conn->next = x->idle;
    if (x->idle)
        x->idle->prev = conn;
    x->idle = conn;
    x->nidle++;
    h->nidle++;
}

/* The most recently used idle connection of x that still looks alive
 * (the dead ones met on the way are closed), or NULL. */
static gw_httpc_conn_t *gw_httpc_pool_get(gw_httpc_host_t *x)
{
    gw_httpc_conn_t *conn;
    while ((conn = x->idle) != NULL) {
        gw_httpc_pool_unlink(conn);
        ev_io_stop(x->h->loop, &conn->io);
        ev_timer_stop(x->h->loop, &conn->idle_timer);
        if (gw_httpc_conn_quiet(conn))
            return conn;
        gw_httpc_conn_close(conn);
    }
    return NULL;
}

/* ---- response parsing (llhttp callbacks: they only copy bytes) ---- */

/* Append header bytes to the call's head buffer. 0, or -1 (perr set) past
 * GW_HTTPC_MAX_HEAD bytes. */
static int gw_httpc_head_add(gw_httpc_call_t *c, const char *at, size_t len)
{
    if (len > GW_HTTPC_MAX_HEAD - c->hlen) {
        c->perr = gw_httpc_error_head_large;
        return -1;
    }
    if (c->hlen + len > c->hcap) {
        c->hcap = c->hcap ? c->hcap * 2 : 1024;
        while (c->hcap < c->hlen + len)
            c->hcap *= 2;
        c->hbuf = gw_xrealloc(c->hbuf, c->hcap);
    }
    memcpy(c->hbuf + c->hlen, at, len);
    c->hlen += len;
    return 0;
}

static int gw_httpc_on_header_data(llhttp_t *p, const char *at, size_t len)
{
    gw_httpc_call_t *c = p->data;
    if (c->headers_done)
        return 0; /* trailers are not kept */
    return gw_httpc_head_add(c, at, len);
}

static int gw_httpc_on_header_field_complete(llhttp_t *p)
{
    gw_httpc_call_t *c = p->data;
    if (c->headers_done)
        return 0;
    if (c->nheaders >= GW_HTTPC_MAX_HEADERS) {
        c->perr = gw_httpc_error_head_large;
        return -1;
    }
    int rc = gw_httpc_head_add(c, "", 1);
    c->value_start = c->hlen;
    return rc;
}

static int gw_httpc_on_header_value_complete(llhttp_t *p)
{
    gw_httpc_call_t *c = p->data;
    if (c->headers_done)
        return 0;
    while (c->hlen > c->value_start &&
           (c->hbuf[c->hlen - 1] == ' ' || c->hbuf[c->hlen - 1] == '\t'))
        c->hlen--;
    if (gw_httpc_head_add(c, "", 1) != 0)
        return -1;
    c->nheaders++;
    return 0;
}

/*
 * The head is parsed. Interim (1xx) responses are skipped, 101 is refused
 * (no upgrade was asked for). Returns 1 ("no body") for interim responses,
 * HEAD, 204 and 304 whatever their Content-Length says, -1 when the
 * announced length exceeds max_body.
 */
static int gw_httpc_on_headers_complete(llhttp_t *p)
{
    gw_httpc_call_t *c = p->data;
    int status = llhttp_get_status_code(p);
    if (status < 100 || status == 101) {
        c->perr = gw_httpc_error_invalid;
        return -1;
    }
    if (status < 200) {
        c->interim = true;
        return 1;
    }
    c->headers_done = true;
    c->status = status;
    if (c->head || status == 204 || status == 304)
        return 1;
    if ((p->flags & F_CONTENT_LENGTH) && !(p->flags & F_CHUNKED)) {
        if (p->content_length > c->max_body) {
            c->perr = gw_httpc_error_too_large;
            return -1;
        }
        if (p->content_length + 1 > c->body_cap) {
            c->body_cap = (size_t)p->content_length + 1;
            c->body = gw_xrealloc(c->body, c->body_cap);
        }
    }
    return 0;
}

/* Body bytes, already de-chunked by llhttp; the buffer always keeps room
 * for a terminating NUL. */
static int gw_httpc_on_body(llhttp_t *p, const char *at, size_t len)
{
    gw_httpc_call_t *c = p->data;
    if (len > c->max_body - c->body_len) {
        c->perr = gw_httpc_error_too_large;
        return -1;
    }
    size_t need = c->body_len + len + 1;
    if (need > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap * 2 : 4096;
        if (cap < need)
            cap = need;
        if (cap > c->max_body + 1)
            cap = c->max_body + 1;
        c->body = gw_xrealloc(c->body, cap);
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

/* The end of a message: an interim one is forgotten and parsing goes on;
 * the final one pauses the parser so llhttp_execute returns. */
static int gw_httpc_on_message_complete(llhttp_t *p)
{
    gw_httpc_call_t *c = p->data;
    if (c->interim) {
        c->interim = false;
        c->hlen = c->nheaders = 0;
        return 0;
    }
    c->complete = true;
    c->reusable = c->keep_alive && llhttp_should_keep_alive(p);
    return HPE_PAUSED;
}

static const llhttp_settings_t gw_httpc_settings = {
    .on_header_field = gw_httpc_on_header_data,
    .on_header_value = gw_httpc_on_header_data,
    .on_header_field_complete = gw_httpc_on_header_field_complete,
    .on_header_value_complete = gw_httpc_on_header_value_complete,
    .on_headers_complete = gw_httpc_on_headers_complete,
    .on_body = gw_httpc_on_body,
    .on_message_complete = gw_httpc_on_message_complete,
};

/* ---- call life cycle ---- */

/* Restart the call's timer with a deadline of `after` seconds. */
static void gw_httpc_deadline(gw_httpc_call_t *c, double after)
{
    c->timer.repeat = after;
    ev_timer_again(c->h->loop, &c->timer);
}

/* The events the call's phase waits for. On TLS the handshake waits for
 * what OpenSSL asked; a write that waits for readability (or a read that
 * waits for writability) watches that event instead of (or on top of) its
 * own. */
static int gw_httpc_phase_events(const gw_httpc_call_t *c)
{
    const gw_httpc_conn_t *conn = c->conn;
    switch (c->phase) {
    case GW_HTTPC_CONNECT:
        return EV_WRITE;
    case GW_HTTPC_HANDSHAKE:
        return conn->rwant;
    case GW_HTTPC_SEND:
        return EV_READ | (conn->wwant == EV_READ ? 0 : EV_WRITE);
    default:
        return EV_READ | (conn->rwant == EV_WRITE ? EV_WRITE : 0);
    }
}

/* Watch the events the call's phase waits for now. */
static void gw_httpc_watch(gw_httpc_call_t *c)
{
    struct ev_loop *loop = c->h->loop;
    ev_io *io = &c->conn->io;
    int events = gw_httpc_phase_events(c);
    if (!ev_is_active(io) || (io->events & (EV_READ | EV_WRITE)) != events) {
        ev_io_stop(loop, io);
        ev_io_modify(io, events);
        ev_io_start(loop, io);
    }
}

/* Enter a phase other than HANDSHAKE (which runs under the CONNECT
 * deadline): watch the events it needs and arm its deadline. */
static void gw_httpc_set_phase(gw_httpc_call_t *c, gw_httpc_phase_t phase)
{
    c->phase = phase;
    gw_httpc_watch(c);
    double t[] = {c->connect_timeout, c->connect_timeout, c->send_timeout, c->read_timeout};
    gw_httpc_deadline(c, t[phase]);
}

/* Give conn to the call and start an attempt from the first byte: the
 * request is sent again and the response parsed afresh. */
static void gw_httpc_attach(gw_httpc_call_t *c, gw_httpc_conn_t *conn, gw_httpc_phase_t phase)
{
    c->conn = conn;
    ev_set_cb(&conn->io, gw_httpc_io_cb);
    conn->io.data = c;
    conn->rwant = conn->wwant = 0;
    c->out_sent = 0;
    c->got_bytes = c->headers_done = c->interim = c->complete = c->reusable = false;
    c->perr = NULL;
    c->hlen = c->nheaders = c->body_len = 0;
    c->status = 0;
    llhttp_init(&c->parser, HTTP_RESPONSE, &gw_httpc_settings);
    c->parser.data = c;
    gw_httpc_set_phase(c, phase);
}

/*
 * Get a connection for the call: a pooled one when allow_pool is set and
 * one is there, else a new non-blocking connect (resolving the host first).
 * Does no I/O on the connection and never finishes the call. Returns NULL,
 * or the error to report.
 */
static const char *gw_httpc_connect(gw_httpc_call_t *c, bool allow_pool)
{
    gw_httpc_host_t *x = c->host;
    gw_httpc_conn_t *conn = allow_pool ? gw_httpc_pool_get(x) : NULL;
    if (conn) {
        c->reused = true;
        gw_httpc_attach(c, conn, GW_HTTPC_SEND);
        return NULL;
    }
    const char *err = gw_httpc_resolve(x);
    if (err)
        return err;
    bool in_progress;
    int fd = gw_net_connect(&x->addr, x->addrlen, &in_progress);
    if (fd < 0)
        return errno == ECONNREFUSED ? gw_httpc_error_refused : gw_httpc_error_connect;
    struct ssl_st *ssl = NULL;
    if (x->tls) {
        ssl = gw_httpc_tls_new(x->ctx, fd, x->name, x->verify, c->errbuf, sizeof c->errbuf);
        if (!ssl) {
            close(fd);
            return c->errbuf;
        }
    }
    conn = gw_xcalloc(1, sizeof *conn);
    conn->host = x;
    conn->fd = fd;
    conn->ssl = ssl;
    x->refs++;
    ev_io_init(&conn->io, gw_httpc_io_cb, fd, 0);
    ev_init(&conn->idle_timer, gw_httpc_idle_timer_cb);
    conn->idle_timer.data = conn;
    c->reused = false;
    /* Even a connect that finished at once waits for writability, so the
     * first write happens from the loop. */
    gw_httpc_attach(c, conn, GW_HTTPC_CONNECT);
    return NULL;
}

/* Remove the call from its client: unlinked, host released, h cleared. */
static void gw_httpc_detach(gw_httpc_call_t *c)
{
    gw_httpc_t *h = c->h;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    h->ncalls--;
    if (c->host)
        c->host->refs--;
    c->host = NULL;
    c->h = NULL;
}

/* Free a call that is no longer linked to its client. */
static void gw_httpc_call_free(gw_httpc_call_t *c)
{
    free(c->out);
    free(c->hbuf);
    free(c->body);
    free(c->res.headers);
    free(c);
}

/* Stop an unfinished call without calling back and free it. */
static void gw_httpc_drop(gw_httpc_call_t *c)
{
    ev_timer_stop(c->h->loop, &c->timer);
    if (c->conn)
        gw_httpc_conn_close(c->conn);
    c->conn = NULL;
    gw_httpc_detach(c);
    gw_httpc_call_free(c);
}

/* Fill c->res from the parsed response (err NULL) or with the error. */
static void gw_httpc_fill_result(gw_httpc_call_t *c, const char *err)
{
    gw_httpc_res_t *res = &c->res;
    memset(res, 0, sizeof *res);
    if (err) {
        res->error = err;
        return;
    }
    res->status = c->status;
    res->nheaders = c->nheaders;
    res->headers = gw_xmalloc((2 * c->nheaders + 1) * sizeof *res->headers);
    char *p = c->hbuf;
    for (size_t i = 0; i < 2 * c->nheaders; i++) {
        res->headers[i] = p;
        p += strlen(p) + 1;
    }
    res->headers[2 * c->nheaders] = NULL;
    if (!c->body) {
        c->body = gw_xmalloc(1);
        c->body_cap = 1;
    }
    c->body[c->body_len] = '\0';
    res->body = c->body;
    res->body_len = c->body_len;
}

/*
 * End the call with the response (err NULL) or an error, and call back.
 * The connection goes back to the pool when the exchange ended cleanly,
 * else it is closed; the call is detached from the client first, so the
 * callback may do anything. Nothing touches c or h after the callback.
 */
static void gw_httpc_finish(gw_httpc_call_t *c, const char *err)
{
    ev_timer_stop(c->h->loop, &c->timer);
    gw_httpc_conn_t *conn = c->conn;
    c->conn = NULL;
    if (conn) {
        if (!err && c->reusable && c->out_sent == c->out_len) {
            conn->requests++;
            gw_httpc_pool_put(conn);
        } else {
            gw_httpc_conn_close(conn);
        }
    }
    gw_httpc_detach(c);
    free(c->out);
    c->out = NULL;
    if (err) {
        free(c->hbuf);
        free(c->body);
        c->hbuf = c->body = NULL;
    }
    gw_httpc_fill_result(c, err);
    c->cb(c->ud, &c->res);
}

/*
 * The connection failed with err. A pooled connection that failed before
 * any response byte was probably closed by the peer while idle: an
 * idempotent request is then sent once more on a new connection.
 * Otherwise the call ends with err.
 */
static void gw_httpc_fail_io(gw_httpc_call_t *c, const char *err)
{
    if (c->reused && !c->got_bytes && !c->retried && c->idempotent) {
        c->retried = true;
        gw_httpc_conn_close(c->conn);
        c->conn = NULL;
        err = gw_httpc_connect(c, false);
        if (!err)
            return;
    }
    gw_httpc_finish(c, err);
}

/* send(2), or SSL_write on TLS: -1 with errno EAGAIN means wait (for
 * conn->wwant on TLS; a TLS write is then retried with the same bytes). */
static ssize_t gw_httpc_conn_send(gw_httpc_conn_t *conn, const char *p, size_t n)
{
    if (!conn->ssl)
        return send(conn->fd, p, n, MSG_NOSIGNAL);
    conn->wwant = 0;
    return gw_httpc_tls_write(conn->ssl, p, n, &conn->wwant);
}

/* recv(2), or SSL_read on TLS: -1 with errno EAGAIN means wait (for
 * conn->rwant on TLS). */
static ssize_t gw_httpc_conn_recv(gw_httpc_conn_t *conn, char *buf, size_t n)
{
    if (!conn->ssl)
        return recv(conn->fd, buf, n, 0);
    conn->rwant = 0;
    return gw_httpc_tls_read(conn->ssl, buf, n, &conn->rwant);
}

/* Write what is left of the request. GW_OK when all of it went out (the
 * call is then reading), GW_AGAIN when the socket is full, GW_DONE when
 * the attempt failed (handled: do not touch the call). */
static int gw_httpc_send(gw_httpc_call_t *c)
{
    bool progress = false;
    while (c->out_sent < c->out_len) {
        ssize_t n = gw_httpc_conn_send(c->conn, c->out + c->out_sent, c->out_len - c->out_sent);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (progress)
                    gw_httpc_deadline(c, c->send_timeout);
                gw_httpc_watch(c);
                return GW_AGAIN;
            }
            gw_httpc_fail_io(c, errno == EPIPE || errno == ECONNRESET ? gw_httpc_error_reset
                                                                      : gw_httpc_error_io);
            return GW_DONE;
        }
        c->out_sent += (size_t)n;
        progress = true;
    }
    gw_httpc_set_phase(c, GW_HTTPC_READ);
    return GW_OK;
}

/* Feed bytes read to the parser; finishes the call when the response is
 * complete or invalid. Returns whether it did (c may be gone). */
static bool gw_httpc_parse(gw_httpc_call_t *c, const char *buf, size_t n)
{
    llhttp_errno_t e = llhttp_execute(&c->parser, buf, n);
    if (e == HPE_OK)
        return false;
    if (e == HPE_PAUSED && c->complete) {
        if (llhttp_get_error_pos(&c->parser) != buf + n)
            c->reusable = false; /* bytes after the response */
        gw_httpc_finish(c, NULL);
        return true;
    }
    gw_httpc_finish(c, c->perr ? c->perr : gw_httpc_error_invalid);
    return true;
}

/* The peer closed the connection: the end of a close-delimited response,
 * or a failure. */
static void gw_httpc_eof(gw_httpc_call_t *c)
{
    if (!c->got_bytes) {
        gw_httpc_fail_io(c, gw_httpc_error_closed);
        return;
    }
    llhttp_errno_t e = llhttp_finish(&c->parser);
    if (c->complete && (e == HPE_OK || e == HPE_PAUSED)) {
        c->reusable = false;
        gw_httpc_finish(c, NULL);
        return;
    }
    gw_httpc_finish(c, c->perr ? c->perr : gw_httpc_error_closed);
}

/* Read from the connection and parse what came: once, and again while
 * TLS holds bytes it already took from the socket. */
static void gw_httpc_read(gw_httpc_call_t *c)
{
    char buf[GW_HTTPC_READ_SIZE];
    do {
        ssize_t n = gw_httpc_conn_recv(c->conn, buf, sizeof buf);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                gw_httpc_watch(c);
                return;
            }
            gw_httpc_fail_io(c, errno == ECONNRESET ? gw_httpc_error_reset : gw_httpc_error_io);
            return;
        }
        if (n == 0) {
            gw_httpc_eof(c);
            return;
        }
        c->got_bytes = true;
        if (c->phase == GW_HTTPC_READ)
            gw_httpc_deadline(c, c->read_timeout);
        if (gw_httpc_parse(c, buf, (size_t)n))
            return;
    } while (c->conn->ssl && gw_httpc_tls_pending(c->conn->ssl));
}

/* Drive the TLS handshake (under the connect deadline), then send. */
static void gw_httpc_handshake(gw_httpc_call_t *c)
{
    gw_httpc_conn_t *conn = c->conn;
    int rc = gw_httpc_tls_handshake(conn->ssl, &conn->rwant, c->errbuf, sizeof c->errbuf);
    if (rc == GW_AGAIN) {
        gw_httpc_watch(c);
        return;
    }
    if (rc != GW_OK) {
        gw_httpc_finish(c, c->errbuf);
        return;
    }
    conn->rwant = 0;
    gw_httpc_set_phase(c, GW_HTTPC_SEND);
    gw_httpc_send(c);
}

/* The non-blocking connect ended: go on sending, or fail. */
static void gw_httpc_connected(gw_httpc_call_t *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->conn->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        gw_httpc_finish(c, err == ECONNREFUSED ? gw_httpc_error_refused : gw_httpc_error_connect);
        return;
    }
    if (c->conn->ssl) {
        c->phase = GW_HTTPC_HANDSHAKE;
        gw_httpc_handshake(c);
        return;
    }
    gw_httpc_set_phase(c, GW_HTTPC_SEND);
    gw_httpc_send(c);
}

static void gw_httpc_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    gw_httpc_call_t *c = io->data;
    gw_httpc_conn_t *conn = c->conn;
    if (c->phase == GW_HTTPC_CONNECT) {
        gw_httpc_connected(c);
        return;
    }
    if (c->phase == GW_HTTPC_HANDSHAKE) {
        gw_httpc_handshake(c);
        return;
    }
    /* A TLS write waiting for readability, or a read waiting for
     * writability, goes on with that event. */
    if (conn->wwant == EV_READ && (revents & EV_READ))
        revents |= EV_WRITE;
    if (conn->rwant == EV_WRITE && (revents & EV_WRITE))
        revents |= EV_READ;
    if ((revents & EV_WRITE) && c->phase == GW_HTTPC_SEND && gw_httpc_send(c) == GW_DONE)
        return;
    if (revents & EV_READ)
        gw_httpc_read(c);
}

static void gw_httpc_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_httpc_finish(t->data, gw_httpc_error_timeout);
}

static void gw_httpc_deferred_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    gw_httpc_call_t *c = t->data;
    gw_httpc_finish(c, c->deferred);
}

/* Report err from the loop's next iteration, never from the caller's
 * stack. */
static void gw_httpc_defer(gw_httpc_call_t *c, const char *err)
{
    c->deferred = err;
    ev_timer_stop(c->h->loop, &c->timer);
    ev_set_cb(&c->timer, gw_httpc_deferred_cb);
    ev_timer_set(&c->timer, 0., 0.);
    ev_timer_start(c->h->loop, &c->timer);
}

/* ---- request validation and serialisation ---- */

static bool gw_httpc_is_token(const char *s)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        bool alnum =
            (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        if (!alnum && !strchr(extra, ch))
            return false;
    }
    return true;
}

/* A field value: no control characters other than horizontal tab. */
static bool gw_httpc_valid_value(const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

/* Whether the Connection value lists "close". */
static bool gw_httpc_lists_close(const char *v)
{
    while (*v) {
        v += strspn(v, " \t,");
        size_t n = strcspn(v, ",");
        size_t k = n;
        while (k > 0 && (v[k - 1] == ' ' || v[k - 1] == '\t'))
            k--;
        if (k == 5 && strncasecmp(v, "close", 5) == 0)
            return true;
        v += n;
    }
    return false;
}

typedef struct {
    bool https;
    char host[256]; /* lower-case, IPv6 without brackets */
    uint16_t port;
    gw_str_t authority; /* as written, for the Host header */
    gw_str_t target;    /* path and query, without the fragment */
} gw_httpc_url_t;

/* Parse "host" or "[v6]" then an optional ":port" in [p, end). */
static int gw_httpc_parse_authority(const char *p, const char *end, gw_httpc_url_t *u)
{
    const char *hs = p, *he;
    bool v6 = *p == '[';
    if (v6) {
        hs = p + 1;
        he = memchr(hs, ']', (size_t)(end - hs));
        if (!he)
            return GW_ERROR;
        p = he + 1;
    } else {
        he = memchr(p, ':', (size_t)(end - p));
        he = he ? he : end;
        p = he;
    }
    size_t n = (size_t)(he - hs);
    if (n == 0 || n >= sizeof u->host)
        return GW_ERROR;
    for (size_t i = 0; i < n; i++) {
        char ch = gw_lower(hs[i]);
        bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || ch == '-' || ch == '.' ||
                  ch == '_' || (v6 && ch == ':');
        if (!ok)
            return GW_ERROR;
        u->host[i] = ch;
    }
    u->host[n] = '\0';
    u->port = u->https ? 443 : 80;
    if (p == end)
        return GW_OK;
    if (*p++ != ':' || p == end || end - p > 5)
        return GW_ERROR;
    unsigned port = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return GW_ERROR;
        port = port * 10 + (unsigned)(*p - '0');
    }
    if (port == 0 || port > 65535)
        return GW_ERROR;
    u->port = (uint16_t)port;
    return GW_OK;
}

/* Split an http:// or https:// URL. GW_OK or GW_ERROR. */
static int gw_httpc_parse_url(const char *url, gw_httpc_url_t *u)
{
    memset(u, 0, sizeof *u);
    const char *p;
    if (strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        u->https = true;
        p = url + 8;
    } else {
        return GW_ERROR;
    }
    const char *end = p + strcspn(p, "/?#");
    if (gw_httpc_parse_authority(p, end, u) != GW_OK)
        return GW_ERROR;
    u->authority = (gw_str_t){p, (size_t)(end - p)};
    size_t tlen = strcspn(end, "#");
    for (size_t i = 0; i < tlen; i++) {
        unsigned char ch = (unsigned char)end[i];
        if (ch <= 0x20 || ch == 0x7f)
            return GW_ERROR;
    }
    u->target = (gw_str_t){end, tlen};
    return GW_OK;
}

/* Check the caller's headers; note which defaults they replace. */
static int gw_httpc_check_headers(const char *const *hs, bool *host, bool *ua, bool *conn)
{
    *host = *ua = *conn = false;
    for (size_t i = 0; hs && hs[i]; i += 2) {
        if (!hs[i + 1] || !gw_httpc_is_token(hs[i]) || !gw_httpc_valid_value(hs[i + 1]))
            return GW_ERROR;
        *host = *host || strcasecmp(hs[i], "host") == 0;
        *ua = *ua || strcasecmp(hs[i], "user-agent") == 0;
        *conn = *conn || strcasecmp(hs[i], "connection") == 0;
    }
    return GW_OK;
}

typedef struct {
    char *p;
    size_t len, cap;
} gw_httpc_sb_t;

static void gw_httpc_sb_add(gw_httpc_sb_t *b, const char *s, size_t n)
{
    if (b->len + n > b->cap) {
        while (b->len + n > b->cap)
            b->cap = b->cap ? b->cap * 2 : 512;
        b->p = gw_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void gw_httpc_sb_str(gw_httpc_sb_t *b, const char *s)
{
    gw_httpc_sb_add(b, s, strlen(s));
}

/* Serialise the request head and body into c->out. The headers were
 * checked already; the caller's Connection header decides keep_alive. */
static void gw_httpc_build(gw_httpc_call_t *c, const char *method, const gw_httpc_url_t *u,
                           const gw_httpc_req_t *req)
{
    bool has_host, has_ua, has_conn;
    gw_httpc_check_headers(req->headers, &has_host, &has_ua, &has_conn);
    gw_httpc_sb_t b = {NULL, 0, 0};
    gw_httpc_sb_str(&b, method);
    gw_httpc_sb_add(&b, " ", 1);
    if (u->target.len == 0 || u->target.p[0] != '/')
        gw_httpc_sb_add(&b, "/", 1);
    gw_httpc_sb_add(&b, u->target.p, u->target.len);
    gw_httpc_sb_str(&b, " HTTP/1.1\r\n");
    if (!has_host) {
        gw_httpc_sb_str(&b, "Host: ");
        gw_httpc_sb_add(&b, u->authority.p, u->authority.len);
        gw_httpc_sb_str(&b, "\r\n");
    }
    if (!has_ua)
        gw_httpc_sb_str(&b, "User-Agent: moongate\r\n");
    if (!has_conn)
        gw_httpc_sb_str(&b, "Connection: keep-alive\r\n");
    c->keep_alive = true;
    for (size_t i = 0; req->headers && req->headers[i]; i += 2) {
        const char *name = req->headers[i], *value = req->headers[i + 1];
        if (strcasecmp(name, "content-length") == 0 || strcasecmp(name, "transfer-encoding") == 0)
            continue;
        if (strcasecmp(name, "connection") == 0 && gw_httpc_lists_close(value))
            c->keep_alive = false;
        gw_httpc_sb_str(&b, name);
        gw_httpc_sb_add(&b, ": ", 2);
        gw_httpc_sb_str(&b, value);
        gw_httpc_sb_add(&b, "\r\n", 2);
    }
    bool wants_length =
        strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
    if (req->body_len > 0 || wants_length) {
        char line[64];
        int n = snprintf(line, sizeof line, "Content-Length: %zu\r\n", req->body_len);
        gw_httpc_sb_add(&b, line, (size_t)n);
    }
    gw_httpc_sb_add(&b, "\r\n", 2);
    if (req->body_len > 0)
        gw_httpc_sb_add(&b, req->body, req->body_len);
    c->out = b.p;
    c->out_len = b.len;
}

static bool gw_httpc_is_idempotent(const char *m)
{
    static const char *const idempotent[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < GW_ARRAY_LEN(idempotent); i++)
        if (strcmp(m, idempotent[i]) == 0)
            return true;
    return false;
}

/* ---- public API ---- */

gw_httpc_t *gw_httpc_new(struct ev_loop *loop, size_t max_idle_per_host, double idle_timeout)
{
    gw_httpc_t *h = gw_xcalloc(1, sizeof *h);
    h->loop = loop;
    h->max_idle = max_idle_per_host;
    h->idle_timeout = idle_timeout > 0 ? idle_timeout : GW_HTTPC_DEFAULT_IDLE_TIMEOUT;
    return h;
}

void gw_httpc_free(gw_httpc_t *h)
{
    if (!h)
        return;
    while (h->calls)
        gw_httpc_drop(h->calls);
    gw_httpc_host_t *x = h->hosts;
    while (x) {
        gw_httpc_host_t *next = x->next;
        gw_httpc_conn_t *conn;
        while ((conn = x->idle) != NULL) {
            gw_httpc_pool_unlink(conn);
            gw_httpc_conn_close(conn);
        }
        gw_httpc_host_free(x);
        x = next;
    }
    gw_httpc_tls_free(h->tls);
    free(h);
}

static double gw_httpc_timeout_or_default(double t)
{
    return t > 0 ? t : GW_HTTPC_DEFAULT_TIMEOUT;
}

gw_httpc_call_t *gw_httpc_request(gw_httpc_t *h, const gw_httpc_req_t *req, gw_httpc_cb cb,
                                  void *ud)
{
    gw_httpc_url_t u;
    bool has_host, has_ua, has_conn;
    const char *method = req && req->method ? req->method : "GET";
    if (!h || !req || !req->url || !cb || !gw_httpc_is_token(method) ||
        (req->body_len > 0 && !req->body) || gw_httpc_parse_url(req->url, &u) != GW_OK ||
        gw_httpc_check_headers(req->headers, &has_host, &has_ua, &has_conn) != GW_OK) {
        errno = EINVAL;
        return NULL;
    }
    gw_httpc_call_t *c = gw_xcalloc(1, sizeof *c);
    c->h = h;
    c->cb = cb;
    c->ud = ud;
    c->connect_timeout = gw_httpc_timeout_or_default(req->connect_timeout);
    c->send_timeout = gw_httpc_timeout_or_default(req->send_timeout);
    c->read_timeout = gw_httpc_timeout_or_default(req->read_timeout);
    c->max_body = req->max_body ? req->max_body : GW_HTTPC_DEFAULT_MAX_BODY;
    c->idempotent = gw_httpc_is_idempotent(method);
    c->head = strcmp(method, "HEAD") == 0;
    gw_httpc_build(c, method, &u, req);
    ev_init(&c->timer, gw_httpc_timeout_cb);
    c->timer.data = c;
    c->next = h->calls;
    if (h->calls)
        h->calls->prev = c;
    h->calls = c;
    h->ncalls++;
    c->host = gw_httpc_host_get(h, u.host, u.port, u.https, !req->ssl_no_verify, req->ssl_ca);
    c->host->refs++;
    if (u.https) {
        c->host->ctx = gw_httpc_tls_ctx(&h->tls, c->host->ca, c->errbuf, sizeof c->errbuf);
        if (!c->host->ctx) {
            gw_httpc_defer(c, c->errbuf);
            return c;
        }
    }
    const char *err = gw_httpc_connect(c, true);
    if (err)
        gw_httpc_defer(c, err);
    return c;
}

void gw_httpc_cancel(gw_httpc_call_t *c)
{
    gw_httpc_release(c);
}

void gw_httpc_release(gw_httpc_call_t *c)
{
    if (!c)
        return;
    if (c->h)
        gw_httpc_drop(c);
    else
        gw_httpc_call_free(c);
}

void gw_httpc_stats(const gw_httpc_t *h, gw_httpc_stats_t *st)
{
    st->in_flight = h->ncalls;
    st->idle = h->nidle;
}
