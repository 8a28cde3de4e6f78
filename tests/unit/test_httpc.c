/*
 * Unit tests for gw_httpc: a real libev loop runs the client against a tiny
 * HTTP server on 127.0.0.1 in the same loop. The server answers by path
 * with canned responses (Content-Length, chunked, close-delimited, slow,
 * trickling, never, huge, keep-alive counters) and counts connections, so
 * reuse can be checked.
 */
#include "gw_core.h"
#include "gw_httpc.h"
#include "gw_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the test server ---- */

typedef struct srv_s srv_t;
typedef struct sconn_s sconn_t;

struct sconn_s {
    srv_t *srv;
    sconn_t *next;
    ev_io io;
    ev_timer timer;
    int fd; /* -1 once closed */
    int id; /* 1, 2, ... in accept order */
    int requests;
    llhttp_t parser;
    bool complete;
    char url[256];
    size_t url_len;
    char *raw; /* the request as received: head and body */
    size_t raw_len;
    char *out; /* response bytes not written yet */
    size_t out_len, out_sent;
    bool close_after; /* close once out is written */
    int trickle;      /* chunks left to send for /trickle */
};

struct srv_s {
    struct ev_loop *loop;
    int fd;
    uint16_t port;
    ev_io io;
    int nconns;
    sconn_t *conns;
};

/* A listening socket on 127.0.0.1 with a kernel-chosen port. */
static int listen_any(uint16_t *port, int backlog)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, backlog) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        perror("listen_any");
        exit(2);
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static void sconn_close(sconn_t *sc)
{
    if (sc->fd < 0)
        return;
    ev_io_stop(sc->srv->loop, &sc->io);
    ev_timer_stop(sc->srv->loop, &sc->timer);
    close(sc->fd);
    sc->fd = -1;
}

/* Write pending output; close afterwards when asked. */
static void sconn_flush(sconn_t *sc)
{
    struct ev_loop *loop = sc->srv->loop;
    while (sc->out_sent < sc->out_len) {
        ssize_t n = send(sc->fd, sc->out + sc->out_sent, sc->out_len - sc->out_sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            ev_io_stop(loop, &sc->io);
            ev_io_set(&sc->io, sc->fd, EV_READ | EV_WRITE);
            ev_io_start(loop, &sc->io);
            return;
        }
        if (n < 0) {
            sconn_close(sc);
            return;
        }
        sc->out_sent += (size_t)n;
    }
    sc->out_len = sc->out_sent = 0;
    if (sc->close_after) {
        sconn_close(sc);
        return;
    }
    if (sc->io.events & EV_WRITE) {
        ev_io_stop(loop, &sc->io);
        ev_io_set(&sc->io, sc->fd, EV_READ);
        ev_io_start(loop, &sc->io);
    }
}

static void sconn_queue(sconn_t *sc, const char *data, size_t len)
{
    sc->out = realloc(sc->out, sc->out_len + len);
    memcpy(sc->out + sc->out_len, data, len);
    sc->out_len += len;
    sconn_flush(sc);
}

static void sconn_queue_str(sconn_t *sc, const char *s)
{
    sconn_queue(sc, s, strlen(s));
}

/* A keep-alive response naming the connection and its request count. */
static void respond_count(sconn_t *sc)
{
    char body[64], head[128];
    int n = snprintf(body, sizeof body, "conn=%d req=%d", sc->id, sc->requests);
    int m = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n);
    sconn_queue(sc, head, (size_t)m);
    sconn_queue(sc, body, (size_t)n);
}

/* Send n bytes of 'x' as the body of a Content-Length response. */
static void respond_huge(sconn_t *sc, size_t n)
{
    char head[128];
    int m = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
    char *body = malloc(n);
    memset(body, 'x', n);
    sconn_queue(sc, head, (size_t)m);
    sconn_queue(sc, body, n);
    free(body);
}

static void slow_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    respond_count(t->data);
}

static void trickle_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    sconn_t *sc = t->data;
    if (sc->trickle-- > 0) {
        sconn_queue_str(sc, "3\r\nabc\r\n");
        return;
    }
    ev_timer_stop(loop, t);
    sconn_queue_str(sc, "0\r\n\r\n");
}

/* Echo the raw request (head and body) as the response body. */
static void respond_echo(sconn_t *sc)
{
    char head[128];
    int m =
        snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", sc->raw_len);
    sconn_queue(sc, head, (size_t)m);
    sconn_queue(sc, sc->raw, sc->raw_len);
}

static const struct {
    const char *path;
    const char *response;
    bool close;
} canned[] = {
    {"/hello", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false},
    {"/chunked",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
     "5\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
     false},
    {"/close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close", true},
    {"/404", "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found", false},
    {"/head", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", false},
    {"/204", "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", false},
    {"/304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false},
    {"/100",
     "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
     false},
    {"/headers",
     "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Empty:\r\n"
     "X-Pad:   v  \r\nContent-Length: 0\r\n\r\n",
     false},
    {"/bye", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye", true},
    {"/garbage", "HTTP/1.1 2x0 Broken\r\n\r\n", true},
    {"/hugechunked",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     "400\r\n",
     true},
};

/* Answer a complete request according to its path. */
static void sconn_respond(sconn_t *sc)
{
    srv_t *s = sc->srv;
    sc->requests++;
    char path[256];
    snprintf(path, sizeof path, "%.*s", (int)strcspn(sc->url, "?"), sc->url);
    for (size_t i = 0; i < GW_ARRAY_LEN(canned); i++) {
        if (strcmp(path, canned[i].path) != 0)
            continue;
        sconn_queue_str(sc, canned[i].response);
        if (strcmp(path, "/hugechunked") == 0) {
            char chunk[1024];
            memset(chunk, 'y', sizeof chunk);
            sconn_queue(sc, chunk, sizeof chunk);
            sconn_queue_str(sc, "\r\n0\r\n\r\n");
        }
        /* Closed once everything queued is written. */
        sc->close_after = canned[i].close;
        sconn_flush(sc);
        return;
    }
    if (strcmp(path, "/echo") == 0) {
        respond_echo(sc);
    } else if (strcmp(path, "/count") == 0) {
        respond_count(sc);
    } else if (strcmp(path, "/slow") == 0) {
        ev_timer_init(&sc->timer, slow_cb, 0.05, 0.);
        sc->timer.data = sc;
        ev_timer_start(s->loop, &sc->timer);
    } else if (strcmp(path, "/trickle") == 0) {
        sconn_queue_str(sc, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        sc->trickle = 4;
        ev_timer_init(&sc->timer, trickle_cb, 0.1, 0.1);
        sc->timer.data = sc;
        ev_timer_start(s->loop, &sc->timer);
    } else if (strcmp(path, "/flaky") == 0) {
        /* The second request on a connection is met by a close. */
        if (sc->requests >= 2)
            sconn_close(sc);
        else
            respond_count(sc);
    } else if (strcmp(path, "/huge") == 0) {
        respond_huge(sc, 100000);
    } else if (strcmp(path, "/never") != 0) {
        sc->close_after = true;
        sconn_queue_str(sc, "HTTP/1.1 500 Unknown\r\nContent-Length: 0\r\n\r\n");
    }
}

static int s_on_url(llhttp_t *p, const char *at, size_t len)
{
    sconn_t *sc = p->data;
    size_t room = sizeof sc->url - 1 - sc->url_len;
    len = len < room ? len : room;
    memcpy(sc->url + sc->url_len, at, len);
    sc->url_len += len;
    sc->url[sc->url_len] = '\0';
    return 0;
}

static int s_on_complete(llhttp_t *p)
{
    ((sconn_t *)p->data)->complete = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t s_settings = {
    .on_url = s_on_url,
    .on_message_complete = s_on_complete,
};

static void sconn_reset(sconn_t *sc)
{
    llhttp_init(&sc->parser, HTTP_REQUEST, &s_settings);
    sc->parser.data = sc;
    sc->complete = false;
    sc->url_len = 0;
    sc->url[0] = '\0';
    sc->raw_len = 0;
}

static void sconn_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    sconn_t *sc = io->data;
    if (revents & EV_WRITE) {
        sconn_flush(sc);
        if (sc->fd < 0)
            return;
    }
    if (!(revents & EV_READ))
        return;
    char buf[65536];
    ssize_t n = recv(sc->fd, buf, sizeof buf, 0);
    if (n <= 0) {
        if (n == 0 || errno != EAGAIN)
            sconn_close(sc);
        return;
    }
    sc->raw = realloc(sc->raw, sc->raw_len + (size_t)n);
    memcpy(sc->raw + sc->raw_len, buf, (size_t)n);
    sc->raw_len += (size_t)n;
    llhttp_errno_t e = llhttp_execute(&sc->parser, buf, (size_t)n);
    if (e == HPE_PAUSED && sc->complete) {
        sconn_respond(sc);
        if (sc->fd >= 0)
            sconn_reset(sc);
    } else if (e != HPE_OK) {
        sconn_close(sc);
    }
}

static void srv_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    srv_t *s = io->data;
    int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    sconn_t *sc = calloc(1, sizeof *sc);
    sc->srv = s;
    sc->fd = fd;
    sc->id = ++s->nconns;
    sc->next = s->conns;
    s->conns = sc;
    sconn_reset(sc);
    ev_init(&sc->timer, slow_cb);
    ev_io_init(&sc->io, sconn_io_cb, fd, EV_READ);
    sc->io.data = sc;
    ev_io_start(loop, &sc->io);
}

static void srv_start(srv_t *s, struct ev_loop *loop)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->fd = listen_any(&s->port, 64);
    ev_io_init(&s->io, srv_accept_cb, s->fd, EV_READ);
    s->io.data = s;
    ev_io_start(loop, &s->io);
}

static void srv_stop(srv_t *s)
{
    ev_io_stop(s->loop, &s->io);
    close(s->fd);
    while (s->conns) {
        sconn_t *sc = s->conns;
        s->conns = sc->next;
        sconn_close(sc);
        free(sc->raw);
        free(sc->out);
        free(sc);
    }
}

/* ---- the client side ---- */

typedef struct {
    gw_httpc_call_t *call;
    int calls; /* callbacks received */
    int status;
    const char *error;    /* as given: may belong to the released call */
    char error_text[256]; /* a copy of it */
    char *body;
    size_t body_len;
    char headers[1024]; /* "name=value\n" for each header */
    size_t nheaders;
    bool keep; /* do not release in the callback */
    gw_httpc_res_t *res;
} result_t;

static int finished;           /* callbacks received in the current test */
static gw_httpc_t *free_in_cb; /* freed by the next callback, when set */

static void on_done(void *ud, gw_httpc_res_t *res)
{
    result_t *r = ud;
    finished++;
    r->calls++;
    r->status = res->status;
    r->error = res->error;
    snprintf(r->error_text, sizeof r->error_text, "%s", res->error ? res->error : "");
    r->nheaders = res->nheaders;
    r->headers[0] = '\0';
    size_t len = 0;
    for (size_t i = 0; i < res->nheaders && len < sizeof r->headers; i++)
        len += (size_t)snprintf(r->headers + len, sizeof r->headers - len, "%s=%s\n",
                                res->headers[2 * i], res->headers[2 * i + 1]);
    free(r->body);
    r->body = NULL;
    r->body_len = res->body_len;
    if (res->body) {
        r->body = malloc(res->body_len + 1);
        memcpy(r->body, res->body, res->body_len + 1);
    }
    if (free_in_cb) {
        gw_httpc_free(free_in_cb);
        free_in_cb = NULL;
    }
    if (r->keep)
        r->res = res;
    else
        gw_httpc_release(r->call);
}

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
}

/* Run the loop until `want` callbacks arrived or max seconds passed. */
static void run_until(struct ev_loop *loop, int want, double max)
{
    ev_timer tick;
    ev_timer_init(&tick, tick_cb, 0.01, 0.01);
    ev_timer_start(loop, &tick);
    double end = gw_now() + max;
    while (finished < want && gw_now() < end)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
}

/* Run the loop for a fixed time. */
static void run_for(struct ev_loop *loop, double seconds)
{
    run_until(loop, 1 << 30, seconds);
}

typedef struct {
    struct ev_loop *loop;
    srv_t srv;
    gw_httpc_t *h;
} fixture_t;

static void setup(fixture_t *f, size_t max_idle, double idle_timeout)
{
    f->loop = ev_loop_new(EVFLAG_AUTO);
    srv_start(&f->srv, f->loop);
    f->h = gw_httpc_new(f->loop, max_idle, idle_timeout);
    finished = 0;
}

static void teardown(fixture_t *f)
{
    gw_httpc_free(f->h);
    srv_stop(&f->srv);
    ev_loop_destroy(f->loop);
}

static void url_for(char *buf, size_t size, const fixture_t *f, const char *path)
{
    snprintf(buf, size, "http://127.0.0.1:%u%s", f->srv.port, path);
}

/* Start a request with the given method and body (NULL for GET). */
static void start(fixture_t *f, result_t *r, const char *method, const char *path, const char *body,
                  const char *const *headers)
{
    char url[128];
    url_for(url, sizeof url, f, path);
    gw_httpc_req_t req = {.method = method, .url = url, .headers = headers};
    if (body) {
        req.body = body;
        req.body_len = strlen(body);
    }
    r->call = gw_httpc_request(f->h, &req, on_done, r);
    CHECK(r->call != NULL);
}

/* A GET that runs to completion. */
static void get(fixture_t *f, result_t *r, const char *path)
{
    int before = finished;
    start(f, r, NULL, path, NULL, NULL);
    run_until(f->loop, before + 1, 5);
}

static void result_free(result_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* ---- tests ---- */

static void test_get_content_length(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t r = {0};
    get(&f, &r, "/hello");
    CHECK_INT(r.calls, 1);
    CHECK_INT(r.status, 200);
    CHECK(r.error == NULL);
    CHECK_STR(r.body, "hello");
    CHECK_INT(r.body_len, 5);
    CHECK_STR(r.headers, "Content-Length=5\n");
    result_free(&r);
    teardown(&f);
}

static void test_request_head(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t r = {0};
    const char *hs[] = {"X-Test", "yes", NULL};
    start(&f, &r, NULL, "/echo?a=1#fragment", NULL, hs);
    run_until(f.loop, 1, 5);
    CHECK_INT(r.status, 200);
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%u\r\n", f.srv.port);
    CHECK(r.body && strncmp(r.body, "GET /echo?a=1 HTTP/1.1\r\n", 24) == 0);
    CHECK(r.body && strstr(r.body, host));
    CHECK(r.body && strstr(r.body, "\r\nUser-Agent: moongate\r\n"));
    CHECK(r.body && strstr(r.body, "\r\nConnection: keep-alive\r\n"));
    CHECK(r.body && strstr(r.body, "\r\nX-Test: yes\r\n"));
    CHECK(r.body && !strstr(r.body, "Content-Length"));

    /* Caller headers replace the defaults. */
    const char *own[] = {"Host", "example.com", "User-Agent", "t/1", NULL};
    start(&f, &r, NULL, "/echo", NULL, own);
    run_until(f.loop, 2, 5);
    CHECK(r.body && strstr(r.body, "\r\nHost: example.com\r\n"));
    CHECK(r.body && strstr(r.body, "\r\nUser-Agent: t/1\r\n"));
    CHECK(r.body && !strstr(r.body, "moongate"));
    CHECK_INT(f.srv.nconns, 1);
    result_free(&r);
    teardown(&f);
}

static void test_post_body(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t r = {0};
    const char *hs[] = {"Content-Length", "999", "Content-Type", "text/plain", NULL};
    start(&f, &r, "POST", "/echo", "hello=world", hs);
    run_until(f.loop, 1, 5);
    CHECK_INT(r.status, 200);
    CHECK(r.body && strncmp(r.body, "POST /echo HTTP/1.1\r\n", 21) == 0);
    CHECK(r.body && strstr(r.body, "\r\nContent-Length: 11\r\n"));
    CHECK(r.body && !strstr(r.body, "999"));
    CHECK(r.body && strstr(r.body, "\r\nContent-Type: text/plain\r\n"));
    size_t n = strlen("hello=world");
    CHECK(r.body && r.body_len > n && strcmp(r.body + r.body_len - n, "hello=world") == 0);

    /* An empty POST still says how long its body is. */
    start(&f, &r, "POST", "/echo", NULL, NULL);
    run_until(f.loop, 2, 5);
    CHECK(r.body && strstr(r.body, "\r\nContent-Length: 0\r\n"));
    result_free(&r);
    teardown(&f);
}

static void test_chunked(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t r = {0};
    get(&f, &r, "/chunked");
    CHECK_INT(r.status, 200);
    CHECK_STR(r.body, "hello, world");
    CHECK_INT(r.body_len, 12);
    CHECK_STR(r.headers, "Transfer-Encoding=chunked\nX-A=1\n");
    /* The connection is reusable after a chunked body with trailers. */
    get(&f, &r, "/count");
    CHECK_STR(r.body, "conn=1 req=2");
    result_free(&r);
    teardown(&f);
}

static void test_close_delimited(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t r = {0};
    get(&f, &r, "/close");
    CHECK_INT(r.status, 200);
    CHECK(r.error == NULL);
    CHECK_STR(r.body, "until close");
    gw_httpc_stats_t st;
    gw_httpc_stats(f.h, &st);
    CHECK_INT(st.idle, 0);
    result_free(&r);
    teardown(&f);
}

static void test_status_passthrough(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t r = {0};
    get(&f, &r, "/404");
    CHECK_INT(r.status, 404);
    CHECK(r.error == NULL);
    CHECK_STR(r.body, "not found");
    result_free(&r);
    teardown(&f);
}

/* HEAD, 204 and 304 have no body whatever Content-Length says, and the
 * connection stays usable after each. */
static void test_no_body_responses(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t r = {0};
    start(&f, &r, "HEAD", "/head", NULL, NULL);
    run_until(f.loop, 1, 5);
    CHECK_INT(r.status, 200);
    CHECK_INT(r.body_len, 0);
    CHECK_STR(r.body, "");
    get(&f, &r, "/204");
    CHECK_INT(r.status, 204);
    CHECK_INT(r.body_len, 0);
    get(&f, &r, "/304");
    CHECK_INT(r.status, 304);
    CHECK_INT(r.body_len, 0);
    get(&f, &r, "/count");
    CHECK_STR(r.body, "conn=1 req=4");
    result_free(&r);
    teardown(&f);
}

static void test_interim_and_headers(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t r = {0};
    get(&f, &r, "/100");
    CHECK_INT(r.status, 200);
    CHECK_STR(r.body, "ok");
    CHECK_STR(r.headers, "Content-Length=2\n");
    get(&f, &r, "/headers");
    CHECK_INT(r.status, 200);
    CHECK_INT(r.nheaders, 5);
    CHECK_STR(r.headers, "Set-Cookie=a=1\nSet-Cookie=b=2\nX-Empty=\nX-Pad=v\nContent-Length=0\n");
    get(&f, &r, "/garbage");
    CHECK_INT(r.status, 0);
    CHECK_STR(r.error, "invalid response");
    CHECK(r.body == NULL);
    result_free(&r);
    teardown(&f);
}

static void test_connection_refused(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    uint16_t port;
    close(listen_any(&port, 1));
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", port);
    result_t r = {0};
    gw_httpc_req_t req = {.url = url};
    r.call = gw_httpc_request(f.h, &req, on_done, &r);
    CHECK(r.call != NULL);
    CHECK_INT(r.calls, 0); /* never called back synchronously */
    run_until(f.loop, 1, 5);
    CHECK_INT(r.calls, 1);
    CHECK_INT(r.status, 0);
    CHECK_STR(r.error, "connection refused");
    CHECK(r.error == gw_httpc_error_refused);
    teardown(&f);
}

static void test_connect_timeout(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    /* A listener with a full accept queue drops further SYNs. */
    uint16_t port;
    int lfd = listen_any(&port, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int filler = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int rc = connect(filler, (struct sockaddr *)&sa, sizeof sa);
    (void)rc;
    run_for(f.loop, 0.05);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", port);
    result_t r = {0};
    gw_httpc_req_t req = {.url = url, .connect_timeout = 0.2};
    double t0 = gw_now();
    r.call = gw_httpc_request(f.h, &req, on_done, &r);
    run_until(f.loop, 1, 5);
    double took = gw_now() - t0;
    CHECK_STR(r.error, "timeout");
    CHECK(took >= 0.19 && took < 1.0);
    close(filler);
    close(lfd);
    teardown(&f);
}

static void test_read_timeout(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    char url[64];
    url_for(url, sizeof url, &f, "/never");
    result_t r = {0};
    gw_httpc_req_t req = {.url = url, .read_timeout = 0.2};
    double t0 = gw_now();
    r.call = gw_httpc_request(f.h, &req, on_done, &r);
    run_until(f.loop, 1, 5);
    double took = gw_now() - t0;
    CHECK_STR(r.error, "timeout");
    CHECK(took >= 0.19 && took < 1.0);

    /* The read timeout runs between reads: a body trickling in every
     * 0.1 s for 0.5 s is read in full. */
    url_for(url, sizeof url, &f, "/trickle");
    r.call = gw_httpc_request(f.h, &req, on_done, &r);
    run_until(f.loop, 2, 5);
    CHECK(r.error == NULL);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.body, "abcabcabcabc");
    result_free(&r);
    teardown(&f);
}

static void test_send_timeout(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    /* Never accepted: the kernel completes the connect, nobody reads. */
    uint16_t port;
    int lfd = listen_any(&port, 8);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/upload", port);
    size_t n = 64 * 1024 * 1024;
    char *body = calloc(1, n);
    result_t r = {0};
    gw_httpc_req_t req = {
        .method = "PUT", .url = url, .body = body, .body_len = n, .send_timeout = 0.2};
    r.call = gw_httpc_request(f.h, &req, on_done, &r);
    free(body); /* the request keeps its own copy */
    run_until(f.loop, 1, 10);
    CHECK_STR(r.error, "timeout");
    close(lfd);
    teardown(&f);
}

static void test_too_large(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    char url[64];
    result_t r = {0};
    url_for(url, sizeof url, &f, "/huge");
    gw_httpc_req_t req = {.url = url, .max_body = 1000};
    r.call = gw_httpc_request(f.h, &req, on_done, &r);
    run_until(f.loop, 1, 5);
    CHECK_STR(r.error, "response too large");
    CHECK_INT(r.status, 0);

    /* Without a Content-Length the limit applies while reading. */
    url_for(url, sizeof url, &f, "/hugechunked");
    r.call = gw_httpc_request(f.h, &req, on_done, &r);
    run_until(f.loop, 2, 5);
    CHECK_STR(r.error, "response too large");

    /* Within the (default) limit. */
    get(&f, &r, "/huge");
    CHECK_INT(r.status, 200);
    CHECK_INT(r.body_len, 100000);
    CHECK(r.body && r.body[0] == 'x' && r.body[99999] == 'x' && r.body[100000] == '\0');
    result_free(&r);
    teardown(&f);
}

static void test_parallel(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    enum { N = 20 };
    result_t rs[N];
    memset(rs, 0, sizeof rs);
    for (int i = 0; i < N; i++)
        start(&f, &rs[i], NULL, i % 2 ? "/slow" : "/count", NULL, NULL);
    gw_httpc_stats_t st;
    gw_httpc_stats(f.h, &st);
    CHECK_INT(st.in_flight, N);
    run_until(f.loop, N, 5);
    CHECK_INT(finished, N);
    for (int i = 0; i < N; i++) {
        CHECK_INT(rs[i].calls, 1);
        CHECK_INT(rs[i].status, 200);
        CHECK(rs[i].body && strncmp(rs[i].body, "conn=", 5) == 0);
        result_free(&rs[i]);
    }
    CHECK_INT(f.srv.nconns, N);
    gw_httpc_stats(f.h, &st);
    CHECK_INT(st.in_flight, 0);
    CHECK_INT(st.idle, 4); /* max_idle_per_host */
    teardown(&f);
}

static void test_keepalive_reuse(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t r = {0};
    get(&f, &r, "/count");
    CHECK_STR(r.body, "conn=1 req=1");
    get(&f, &r, "/count");
    CHECK_STR(r.body, "conn=1 req=2");
    start(&f, &r, "POST", "/count", "x", NULL);
    run_until(f.loop, 3, 5);
    CHECK_STR(r.body, "conn=1 req=3");
    CHECK_INT(f.srv.nconns, 1);
    gw_httpc_stats_t st;
    gw_httpc_stats(f.h, &st);
    CHECK_INT(st.idle, 1);

    /* Without pooling every request gets its own connection. */
    gw_httpc_t *nopool = gw_httpc_new(f.loop, 0, 0);
    gw_httpc_t *h = f.h;
    f.h = nopool;
    get(&f, &r, "/count");
    get(&f, &r, "/count");
    CHECK_STR(r.body, "conn=3 req=1");
    f.h = h;
    gw_httpc_free(nopool);
    result_free(&r);
    teardown(&f);
}

/* A pooled connection closed by the peer is noticed and dropped, so a
 * non-idempotent request afterwards does not fail on it. */
static void test_idle_closed_by_peer(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t r = {0};
    get(&f, &r, "/bye");
    CHECK_STR(r.body, "bye");
    run_for(f.loop, 0.1);
    gw_httpc_stats_t st;
    gw_httpc_stats(f.h, &st);
    CHECK_INT(st.idle, 0);
    start(&f, &r, "POST", "/count", "x", NULL);
    run_until(f.loop, 2, 5);
    CHECK(r.error == NULL);
    CHECK_STR(r.body, "conn=2 req=1");
    result_free(&r);
    teardown(&f);
}

static void test_idle_timeout(void)
{
    fixture_t f;
    setup(&f, 4, 0.1);
    result_t r = {0};
    get(&f, &r, "/count");
    gw_httpc_stats_t st;
    gw_httpc_stats(f.h, &st);
    CHECK_INT(st.idle, 1);
    run_for(f.loop, 0.3);
    gw_httpc_stats(f.h, &st);
    CHECK_INT(st.idle, 0);
    get(&f, &r, "/count");
    CHECK_STR(r.body, "conn=2 req=1");
    result_free(&r);
    teardown(&f);
}

/* A pooled connection that fails before any response byte is replaced
 * once for an idempotent request, never for a POST. */
static void test_stale_retry(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t r = {0};
    get(&f, &r, "/flaky");
    CHECK_STR(r.body, "conn=1 req=1");
    get(&f, &r, "/flaky"); /* connection 1 is closed on it: retried */
    CHECK(r.error == NULL);
    CHECK_STR(r.body, "conn=2 req=1");
    start(&f, &r, "POST", "/flaky", "x", NULL); /* connection 2 is closed on it */
    run_until(f.loop, 3, 5);
    CHECK_INT(r.status, 0);
    CHECK_STR(r.error, "connection closed");
    CHECK_INT(f.srv.nconns, 2);
    result_free(&r);
    teardown(&f);
}

static void test_cancel(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t r1 = {0}, r2 = {0}, r3 = {0}, r4 = {0};
    start(&f, &r1, NULL, "/never", NULL, NULL);
    start(&f, &r2, NULL, "/slow", NULL, NULL);
    run_for(f.loop, 0.02);
    gw_httpc_cancel(r1.call);
    gw_httpc_cancel(r2.call);
    /* Cancelled before the loop ran: a pending connect and a deferred
     * failure. */
    start(&f, &r3, NULL, "/hello", NULL, NULL);
    gw_httpc_req_t req = {.url = "https://127.0.0.1/"};
    r4.call = gw_httpc_request(f.h, &req, on_done, &r4);
    gw_httpc_cancel(r3.call);
    gw_httpc_cancel(r4.call);
    run_for(f.loop, 0.2);
    CHECK_INT(finished, 0);
    gw_httpc_stats_t st;
    gw_httpc_stats(f.h, &st);
    CHECK_INT(st.in_flight, 0);
    CHECK_INT(st.idle, 0);
    /* The client still works. */
    get(&f, &r1, "/hello");
    CHECK_STR(r1.body, "hello");
    result_free(&r1);
    teardown(&f);
}

static void test_free_in_flight(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t kept = {.keep = true}, rs[4];
    memset(rs, 0, sizeof rs);
    start(&f, &kept, NULL, "/hello", NULL, NULL);
    run_until(f.loop, 1, 5);
    CHECK_INT(kept.calls, 1);
    start(&f, &rs[0], NULL, "/never", NULL, NULL);
    start(&f, &rs[1], NULL, "/slow", NULL, NULL);
    run_for(f.loop, 0.01); /* both are waiting for their responses */
    start(&f, &rs[2], "POST", "/echo", "body", NULL);
    gw_httpc_req_t req = {.url = "https://127.0.0.1/"};
    rs[3].call = gw_httpc_request(f.h, &req, on_done, &rs[3]);
    gw_httpc_free(f.h);
    f.h = gw_httpc_new(f.loop, 4, 0);
    run_for(f.loop, 0.2);
    CHECK_INT(finished, 1);
    for (size_t i = 0; i < GW_ARRAY_LEN(rs); i++)
        CHECK_INT(rs[i].calls, 0);
    /* A finished call outlives its client until released. */
    CHECK(kept.res && kept.res->body_len == 5 && strcmp(kept.res->body, "hello") == 0);
    gw_httpc_release(kept.call);
    result_free(&kept);
    teardown(&f);
}

static void test_free_from_callback(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t rs[3];
    memset(rs, 0, sizeof rs);
    start(&f, &rs[0], NULL, "/hello", NULL, NULL);
    start(&f, &rs[1], NULL, "/never", NULL, NULL);
    start(&f, &rs[2], NULL, "/slow", NULL, NULL);
    free_in_cb = f.h;
    run_until(f.loop, 1, 5);
    run_for(f.loop, 0.2);
    CHECK_INT(finished, 1);
    CHECK_STR(rs[0].body, "hello");
    CHECK(free_in_cb == NULL);
    result_free(&rs[0]);
    f.h = NULL;
    teardown(&f);
}

static void test_resolve(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t r1 = {0}, r2 = {0};
    gw_httpc_req_t req = {.url = "HTTPS://nonexistent.invalid/x"};
    r1.call = gw_httpc_request(f.h, &req, on_done, &r1);
    CHECK(r1.call != NULL);
    req.url = "http://nonexistent.invalid/";
    r2.call = gw_httpc_request(f.h, &req, on_done, &r2);
    CHECK(r2.call != NULL);
    CHECK_INT(finished, 0);
    run_until(f.loop, 2, 5);
    CHECK_STR(r1.error, "resolve failed");
    CHECK_STR(r2.error, "resolve failed");
    CHECK_INT(r2.status, 0);
    teardown(&f);
}

/* Whether something accepts connections on 127.0.0.1:port. */
static bool port_open(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool open = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return open;
}

/* https:// without a TLS server: port 443 by default; a plain HTTP server
 * fails the handshake; a CA file that cannot be read fails the call. */
static void test_https_failures(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t r = {0};
    char url[64];
    gw_httpc_req_t req = {.url = "https://127.0.0.1/"};
    if (!port_open(443)) {
        r.call = gw_httpc_request(f.h, &req, on_done, &r);
        run_until(f.loop, finished + 1, 5);
        CHECK_STR(r.error_text, "connection refused");
    }
    snprintf(url, sizeof url, "https://127.0.0.1:%u/hello", f.srv.port);
    req.url = url;
    r.call = gw_httpc_request(f.h, &req, on_done, &r);
    CHECK_INT(r.calls, port_open(443) ? 0 : 1); /* never called back synchronously */
    run_until(f.loop, finished + 1, 5);
    CHECK_INT(r.status, 0);
    CHECK(strncmp(r.error_text, "tls handshake failed: ", 22) == 0);

    req.ssl_ca = "/nonexistent/ca.pem";
    r.call = gw_httpc_request(f.h, &req, on_done, &r);
    CHECK(r.call != NULL);
    run_until(f.loop, finished + 1, 5);
    CHECK_STR(r.error_text, "ssl_ca: cannot load /nonexistent/ca.pem: No such file or directory");
    req.ssl_ca = "tests/unit/test_httpc.c"; /* readable, but no certificate */
    r.call = gw_httpc_request(f.h, &req, on_done, &r);
    run_until(f.loop, finished + 1, 5);
    CHECK(strncmp(r.error_text, "ssl_ca: cannot load tests/unit/test_httpc.c: ", 45) == 0);

    /* Plain calls to the same port are not affected. */
    get(&f, &r, "/hello");
    CHECK_STR(r.body, "hello");
    gw_httpc_stats_t st;
    gw_httpc_stats(f.h, &st);
    CHECK_INT(st.in_flight, 0);
    result_free(&r);
    teardown(&f);
}

/* A server that never answers the handshake: the connect timeout covers
 * it. */
static void test_https_handshake_timeout(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    uint16_t port;
    int lfd = listen_any(&port, 8); /* the kernel accepts, nobody reads */
    char url[64];
    snprintf(url, sizeof url, "https://localhost:%u/", port);
    result_t r = {0};
    gw_httpc_req_t req = {.url = url, .connect_timeout = 0.2, .read_timeout = 5};
    double t0 = gw_now();
    r.call = gw_httpc_request(f.h, &req, on_done, &r);
    run_until(f.loop, 1, 5);
    double took = gw_now() - t0;
    CHECK_STR(r.error_text, "timeout");
    CHECK(took >= 0.19 && took < 1.0);
    close(lfd);
    teardown(&f);
}

static void test_invalid_arguments(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    static const char *const bad_urls[] = {
        "ftp://x/",       "http://",         "http:///path",  "http://host:/",
        "http://host:0/", "http://h:70000/", "http://ho st/", "http://u@host/",
        "http://[::1/",   "http://host/a b", "//host/",       "",
    };
    result_t r = {0};
    for (size_t i = 0; i < GW_ARRAY_LEN(bad_urls); i++) {
        gw_httpc_req_t req = {.url = bad_urls[i]};
        errno = 0;
        CHECK(gw_httpc_request(f.h, &req, on_done, &r) == NULL);
        CHECK_INT(errno, EINVAL);
    }
    const char *crlf[] = {"X-A", "a\r\nX-Injected: 1", NULL};
    const char *badname[] = {"X A", "v", NULL};
    const char *novalue[] = {"X-A", NULL};
    gw_httpc_req_t req = {.url = "http://127.0.0.1/", .headers = crlf};
    CHECK(gw_httpc_request(f.h, &req, on_done, &r) == NULL);
    req.headers = badname;
    CHECK(gw_httpc_request(f.h, &req, on_done, &r) == NULL);
    req.headers = novalue;
    CHECK(gw_httpc_request(f.h, &req, on_done, &r) == NULL);
    req.headers = NULL;
    req.method = "GE T";
    CHECK(gw_httpc_request(f.h, &req, on_done, &r) == NULL);
    req.method = "POST";
    req.body_len = 3;
    CHECK(gw_httpc_request(f.h, &req, on_done, &r) == NULL);
    req.body_len = 0;
    CHECK(gw_httpc_request(f.h, &req, NULL, &r) == NULL);
    CHECK(gw_httpc_request(NULL, &req, on_done, &r) == NULL);
    CHECK(gw_httpc_request(f.h, NULL, on_done, &r) == NULL);
    gw_httpc_stats_t st;
    gw_httpc_stats(f.h, &st);
    CHECK_INT(st.in_flight, 0);
    teardown(&f);
}

/* IPv6 literal hosts are accepted when the loopback has IPv6. */
static void test_ipv6_url(void)
{
    fixture_t f;
    setup(&f, 4, 0);
    result_t r = {0};
    gw_httpc_req_t req = {.url = "http://[::1]:1/"};
    r.call = gw_httpc_request(f.h, &req, on_done, &r);
    CHECK(r.call != NULL);
    run_until(f.loop, 1, 5);
    CHECK_INT(r.calls, 1);
    CHECK_INT(r.status, 0);
    CHECK(r.error != NULL);
    teardown(&f);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    static const gw_test_case_t cases[] = {
        GW_TEST(test_get_content_length),
        GW_TEST(test_request_head),
        GW_TEST(test_post_body),
        GW_TEST(test_chunked),
        GW_TEST(test_close_delimited),
        GW_TEST(test_status_passthrough),
        GW_TEST(test_no_body_responses),
        GW_TEST(test_interim_and_headers),
        GW_TEST(test_connection_refused),
        GW_TEST(test_connect_timeout),
        GW_TEST(test_read_timeout),
        GW_TEST(test_send_timeout),
        GW_TEST(test_too_large),
        GW_TEST(test_parallel),
        GW_TEST(test_keepalive_reuse),
        GW_TEST(test_idle_closed_by_peer),
        GW_TEST(test_idle_timeout),
        GW_TEST(test_stale_retry),
        GW_TEST(test_cancel),
        GW_TEST(test_free_in_flight),
        GW_TEST(test_free_from_callback),
        GW_TEST(test_resolve),
        GW_TEST(test_https_failures),
        GW_TEST(test_https_handshake_timeout),
        GW_TEST(test_invalid_arguments),
        GW_TEST(test_ipv6_url),
    };
    return GW_TEST_RUN(cases);
}
