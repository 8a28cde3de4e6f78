/*
 * Unit tests for gw_health: a real libev loop checks tiny HTTP servers on
 * 127.0.0.1 (healthy, failing, flapping, silent) and a closed port.
 */
#include "gw_health.h"
#include "gw_log.h"
#include "gw_test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

typedef enum {
    SRV_OK,     /* 200 */
    SRV_ERROR,  /* 500 */
    SRV_FLAPPY, /* 500 for the first two requests, then 200 */
    SRV_SILENT, /* never accepts: the check times out */
} srv_mode_t;

typedef struct {
    srv_mode_t mode;
    int fd;
    uint16_t port;
    ev_io w;
    int requests;
    int bad_requests;
} test_server_t;

typedef struct {
    ev_io w;
    int fd; /* -1 when the slot is free */
    test_server_t *srv;
    char buf[1024];
    size_t len;
} test_conn_t;

static test_conn_t conns[32];

/* A listening socket on 127.0.0.1 with a kernel-chosen port. */
static int listen_any(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        perror("listen_any");
        exit(2);
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static void conn_close(struct ev_loop *loop, test_conn_t *c)
{
    ev_io_stop(loop, &c->w);
    close(c->fd);
    c->fd = -1;
}

static void conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    test_conn_t *c = w->data;
    ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
    if (n <= 0) {
        conn_close(loop, c);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    if (!strstr(c->buf, "\r\n\r\n"))
        return;
    test_server_t *s = c->srv;
    s->requests++;
    const char *expect = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "User-Agent: moongate-health\r\nConnection: close\r\n\r\n";
    if (strcmp(c->buf, expect) != 0)
        s->bad_requests++;
    bool ok = s->mode == SRV_OK || (s->mode == SRV_FLAPPY && s->requests > 2);
    const char *resp = ok ? "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                          : "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";
    ssize_t wr = write(c->fd, resp, strlen(resp));
    (void)wr;
    conn_close(loop, c);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    test_server_t *s = w->data;
    int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    for (size_t i = 0; i < GW_ARRAY_LEN(conns); i++) {
        test_conn_t *c = &conns[i];
        if (c->fd >= 0)
            continue;
        c->fd = fd;
        c->srv = s;
        c->len = 0;
        ev_io_init(&c->w, conn_cb, fd, EV_READ);
        c->w.data = c;
        ev_io_start(loop, &c->w);
        return;
    }
    close(fd);
}

static void server_start(struct ev_loop *loop, test_server_t *s, srv_mode_t mode)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->fd = listen_any(&s->port);
    ev_io_init(&s->w, accept_cb, s->fd, EV_READ);
    s->w.data = s;
    if (mode != SRV_SILENT)
        ev_io_start(loop, &s->w);
}

static void server_stop(struct ev_loop *loop, test_server_t *s)
{
    ev_io_stop(loop, &s->w);
    close(s->fd);
}

typedef struct {
    gw_balancer_t *b;
    size_t n;
    bool seen_down[8];
} sampler_t;

static void sample_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    sampler_t *s = w->data;
    for (size_t i = 0; i < s->n; i++)
        if (!gw_balancer_is_up(s->b, (int)i, gw_now()))
            s->seen_down[i] = true;
}

static void stop_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

static gw_upstream_conf_t make_conf(gw_target_conf_t *t, size_t n)
{
    gw_upstream_conf_t c;
    memset(&c, 0, sizeof c);
    c.name = "hc";
    c.targets = t;
    c.ntargets = n;
    c.connect_timeout = 1;
    c.active.enabled = true;
    c.active.path = "/healthz";
    c.active.interval = 0.05;
    c.active.timeout = 0.1;
    c.active.healthy = 2;
    c.active.unhealthy = 2;
    return c;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char text[16384];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

static void test_disabled(void)
{
    gw_target_conf_t t[] = {{"127.0.0.1", 1, 1, 0}};
    gw_upstream_conf_t c = make_conf(t, 1);
    c.active.enabled = false;
    gw_balancer_t *b = gw_balancer_new(&c);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    CHECK(gw_health_start(loop, &c, b) == NULL);
    gw_health_stop(NULL);
    ev_loop_destroy(loop);
    gw_balancer_free(b);
}

/* The transitions logged by test_checks; removes the log file. */
static void check_log(const char *logpath, unsigned ok, unsigned err, unsigned flappy,
                      unsigned silent, unsigned closed)
{
    CHECK_INT(gw_log_reopen("stderr", GW_LOG_INFO), GW_OK);
    const char *text = read_file(logpath);
    unlink(logpath);
    CHECK(text != NULL);
    if (!text)
        return;
    char line[128];
    snprintf(line, sizeof line, "upstream hc target 127.0.0.1:%u is down (status 500)", err);
    CHECK(strstr(text, line) != NULL);
    snprintf(line, sizeof line, "upstream hc target 127.0.0.1:%u is up", flappy);
    CHECK(strstr(text, line) != NULL);
    snprintf(line, sizeof line, "upstream hc target 127.0.0.1:%u is down (timeout)", silent);
    CHECK(strstr(text, line) != NULL);
    snprintf(line, sizeof line, "upstream hc target 127.0.0.1:%u is down (connect: ", closed);
    CHECK(strstr(text, line) != NULL);
    CHECK(strstr(text, "cannot resolve target") != NULL);
    CHECK(strstr(text, "target :80 is down (cannot resolve host)") != NULL);
    snprintf(line, sizeof line, "target 127.0.0.1:%u is down", ok);
    CHECK(strstr(text, line) == NULL);
}

static void test_checks(void)
{
    for (size_t i = 0; i < GW_ARRAY_LEN(conns); i++)
        conns[i].fd = -1;
    char logpath[] = "/tmp/moongate-test-health-XXXXXX";
    int logfd = mkstemp(logpath);
    CHECK(logfd >= 0);
    close(logfd);
    CHECK_INT(gw_log_open(logpath, GW_LOG_INFO), GW_OK);

    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    test_server_t ok, err, flappy, silent;
    server_start(loop, &ok, SRV_OK);
    server_start(loop, &err, SRV_ERROR);
    server_start(loop, &flappy, SRV_FLAPPY);
    server_start(loop, &silent, SRV_SILENT);
    uint16_t closed_port;
    close(listen_any(&closed_port));

    gw_target_conf_t t[] = {
        {"127.0.0.1", ok.port, 1, 0},     {"127.0.0.1", err.port, 1, 0},
        {"127.0.0.1", flappy.port, 1, 0}, {"127.0.0.1", silent.port, 1, 0},
        {"127.0.0.1", closed_port, 1, 0}, {"", 80, 1, 0},
    };
    size_t n = GW_ARRAY_LEN(t);
    gw_upstream_conf_t c = make_conf(t, n);
    gw_balancer_t *b = gw_balancer_new(&c);
    gw_health_t *h = gw_health_start(loop, &c, b);
    CHECK(h != NULL);
    for (size_t i = 0; i < n; i++)
        CHECK(gw_balancer_is_up(b, (int)i, gw_now()));

    sampler_t s = {.b = b, .n = n};
    ev_timer sample, stop;
    ev_timer_init(&sample, sample_cb, 0.01, 0.01);
    sample.data = &s;
    ev_timer_start(loop, &sample);
    ev_timer_init(&stop, stop_cb, 1.0, 0.);
    ev_timer_start(loop, &stop);
    ev_run(loop, 0);

    double now = gw_now();
    CHECK(gw_balancer_is_up(b, 0, now));
    CHECK(!s.seen_down[0]);
    CHECK(!gw_balancer_is_up(b, 1, now));
    CHECK(gw_balancer_is_up(b, 2, now));
    CHECK(s.seen_down[2]);
    CHECK(!gw_balancer_is_up(b, 3, now));
    CHECK(!gw_balancer_is_up(b, 4, now));
    CHECK(!gw_balancer_is_up(b, 5, now));
    /* About 20 checks in 1s at a 0.05s interval. */
    CHECK(ok.requests >= 5 && ok.requests <= 25);
    CHECK(err.requests >= 5);
    CHECK_INT(ok.bad_requests + err.bad_requests + flappy.bad_requests, 0);

    /* The silent target's check is likely in flight: stop cancels it. */
    gw_health_stop(h);
    ev_timer_stop(loop, &sample);
    ev_timer_stop(loop, &stop);
    for (size_t i = 0; i < GW_ARRAY_LEN(conns); i++)
        if (conns[i].fd >= 0)
            conn_close(loop, &conns[i]);
    server_stop(loop, &ok);
    server_stop(loop, &err);
    server_stop(loop, &flappy);
    server_stop(loop, &silent);
    /* Nothing of the health checker is left on the loop. */
    CHECK_INT(ev_run(loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(loop);
    gw_balancer_free(b);

    check_log(logpath, ok.port, err.port, flappy.port, silent.port, closed_port);
}

/* Open file descriptors of this process. */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void test_stop_in_flight(void)
{
    int fds = count_fds();
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    test_server_t silent;
    server_start(loop, &silent, SRV_SILENT);
    gw_target_conf_t t[] = {{"127.0.0.1", silent.port, 1, 0}};
    gw_upstream_conf_t c = make_conf(t, 1);
    c.active.timeout = 5;
    c.active.unhealthy = 1;
    gw_balancer_t *b = gw_balancer_new(&c);
    int before = count_fds();
    gw_health_t *h = gw_health_start(loop, &c, b);
    ev_timer stop;
    ev_timer_init(&stop, stop_cb, 0.2, 0.);
    ev_timer_start(loop, &stop);
    ev_run(loop, 0);
    /* The first check waits for an answer that never comes. */
    CHECK(gw_balancer_is_up(b, 0, gw_now()));
    CHECK_INT(count_fds(), before + 1);
    gw_health_stop(h);
    CHECK_INT(count_fds(), before);
    server_stop(loop, &silent);
    CHECK_INT(ev_run(loop, EVRUN_NOWAIT), 0);
    ev_loop_destroy(loop);
    gw_balancer_free(b);
    CHECK_INT(count_fds(), fds);
}

int main(void)
{
    static const gw_test_case_t cases[] = {
        GW_TEST(test_disabled),
        GW_TEST(test_checks),
        GW_TEST(test_stop_in_flight),
    };
    return GW_TEST_RUN(cases);
}
