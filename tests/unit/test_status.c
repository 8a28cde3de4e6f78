/*
 * Unit tests for the status listener (gw_status.c): the server runs on a
 * real libev loop in a forked child; this process is a blocking client.
 */
#include "gw_metrics.h"
#include "gw_status.h"
#include "gw_test.h"

#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define TIMEOUT 0.5 /* the server's connection timeout in these tests */

static volatile int *ready_flag; /* shared with the server child */
static uint16_t port;
static pid_t server_pid;

static bool is_ready(void *ud)
{
    return *(volatile int *)ud != 0;
}

static void on_sigterm(struct ev_loop *loop, ev_signal *w, int revents)
{
    gw_status_stop(w->data);
    ev_break(loop, EVBREAK_ALL);
}

/* The server child: serve on fd until SIGTERM, then clean up and exit. */
static void run_server(int fd)
{
    struct ev_loop *loop = ev_default_loop(0);
    gw_status_t *s = gw_status_start(loop, fd, is_ready, (void *)ready_flag);
    gw_status_set_timeout(s, TIMEOUT);
    ev_signal sig;
    ev_signal_init(&sig, on_sigterm, SIGTERM);
    sig.data = s;
    ev_signal_start(loop, &sig);
    ev_run(loop, 0);
    ev_signal_stop(loop, &sig);
    ev_loop_destroy(loop);
    close(fd);
    gw_metrics_free();
    exit(0);
}

static int listen_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        perror("listen socket");
        exit(1);
    }
    port = ntohs(a.sin_port);
    return fd;
}

/* A blocking client socket; rcvbuf > 0 sets a small receive buffer. */
static int connect_client_buf(int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    return fd;
}

static int connect_client(void)
{
    return connect_client_buf(0);
}

static void send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void send_str(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

typedef struct {
    int status; /* 0 when no complete response arrived */
    char head[1024];
    char *body; /* malloc'd, NUL-terminated */
} resp_t;

/* Read one response with a Content-Length body. */
static resp_t read_resp(int fd)
{
    resp_t r = {0, "", NULL};
    size_t hl = 0;
    while (hl < sizeof r.head - 1 && !strstr(r.head, "\r\n\r\n")) {
        if (recv(fd, r.head + hl, 1, 0) != 1)
            break;
        r.head[++hl] = '\0';
    }
    char *cl = strstr(r.head, "Content-Length: ");
    if (!strstr(r.head, "\r\n\r\n") || !cl)
        return r;
    size_t len = strtoul(cl + 16, NULL, 10), got = 0;
    r.body = gw_xmalloc(len + 1);
    while (got < len) {
        ssize_t n = recv(fd, r.body + got, len - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    r.body[got] = '\0';
    if (got == len)
        r.status = atoi(r.head + 9);
    return r;
}

/* True when the server closed the connection (EOF, not a timeout). */
static bool at_eof(int fd)
{
    char c;
    return recv(fd, &c, 1, 0) == 0;
}

#define CHECK_RESP(fd, req, code, body_)                                                           \
    do {                                                                                           \
        send_str((fd), (req));                                                                     \
        resp_t r_ = read_resp(fd);                                                                 \
        CHECK_INT(r_.status, (code));                                                              \
        CHECK_STR(r_.body, (body_));                                                               \
        free(r_.body);                                                                             \
    } while (0)

static void test_endpoints(void)
{
    int fd = connect_client();
    send_str(fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    resp_t r = read_resp(fd);
    CHECK_INT(r.status, 200);
    CHECK(strncmp(r.head, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(r.head, "\r\nContent-Type: application/json\r\n") != NULL);
    CHECK(strstr(r.head, "\r\nConnection: keep-alive\r\n") != NULL);
    CHECK_STR(r.body, "{\"status\":\"ok\"}");
    free(r.body);

    /* The same connection, kept alive. */
    CHECK_RESP(fd, "GET /ready HTTP/1.1\r\n\r\n", 503, "{\"status\":\"not ready\"}");
    *ready_flag = 1;
    CHECK_RESP(fd, "GET /ready HTTP/1.1\r\n\r\n", 200, "{\"status\":\"ready\"}");
    CHECK_RESP(fd, "GET /health?verbose=1 HTTP/1.1\r\n\r\n", 200, "{\"status\":\"ok\"}");
    CHECK_RESP(fd, "GET /nope HTTP/1.1\r\n\r\n", 404, "{\"error\":\"not found\"}");
    CHECK_RESP(fd, "GET /health/ HTTP/1.1\r\n\r\n", 404, "{\"error\":\"not found\"}");

    gw_metrics_request(gw_metrics_route_slot("r"), 200);
    gw_metrics_request(gw_metrics_route_slot("r"), 200);
    send_str(fd, "GET /metrics HTTP/1.1\r\n\r\n");
    r = read_resp(fd);
    CHECK_INT(r.status, 200);
    CHECK(strstr(r.head, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    CHECK(r.body && strstr(r.body, "\nmoongate_requests_total{route=\"r\",status=\"200\"} 2\n"));
    CHECK(r.body && strstr(r.body, "\nmoongate_workers 1\n"));
    free(r.body);
    close(fd);
}

static void test_pipelining(void)
{
    int fd = connect_client();
    send_str(fd, "GET /health HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n"
                 "GET /ready HTTP/1.1\r\nConnection: close\r\n\r\nGET /health HTTP/1.1\r\n\r\n");
    resp_t r1 = read_resp(fd), r2 = read_resp(fd), r3 = read_resp(fd);
    CHECK_INT(r1.status, 200);
    CHECK_INT(r2.status, 404);
    CHECK_INT(r3.status, 200);
    CHECK(strstr(r3.head, "\r\nConnection: close\r\n") != NULL);
    CHECK(at_eof(fd)); /* nothing after the request with Connection: close */
    free(r1.body);
    free(r2.body);
    free(r3.body);
    close(fd);
}

/* Many pipelined /metrics without reading: the server must not block. */
static void test_large_output(void)
{
    int fd = connect_client_buf(4096);
    int n = 500;
    for (int i = 0; i < n; i++)
        send_str(fd, "GET /metrics HTTP/1.1\r\n\r\n");
    size_t total = 0;
    int ok = 0;
    for (int i = 0; i < n; i++) {
        resp_t r = read_resp(fd);
        ok += r.status == 200;
        total += r.body ? strlen(r.body) : 0;
        free(r.body);
    }
    CHECK_INT(ok, n);
    CHECK(total > 5 * 1000 * 1000); /* more than the socket buffers hold */
    CHECK_RESP(fd, "GET /health HTTP/1.1\r\n\r\n", 200, "{\"status\":\"ok\"}");
    close(fd);
}

static void test_errors(void)
{
    int fd = connect_client();
    send_str(fd, "POST /health HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    resp_t r = read_resp(fd);
    CHECK_INT(r.status, 405);
    CHECK(strstr(r.head, "\r\nAllow: GET\r\n") != NULL);
    CHECK(strstr(r.head, "\r\nConnection: close\r\n") != NULL);
    CHECK_STR(r.body, "{\"error\":\"method not allowed\"}");
    CHECK(at_eof(fd));
    free(r.body);
    close(fd);

    fd = connect_client();
    CHECK_RESP(fd, "HEAD /health HTTP/1.1\r\n\r\n", 405, "{\"error\":\"method not allowed\"}");
    close(fd);

    fd = connect_client();
    CHECK_RESP(fd, "HELLO THERE\r\n\r\n", 400, "{\"error\":\"bad request\"}");
    CHECK(at_eof(fd));
    close(fd);

    /* A valid request, then garbage: the first is answered, then 400. */
    fd = connect_client();
    send_str(fd, "GET /health HTTP/1.1\r\n\r\n\x01\x02garbage\r\n\r\n");
    r = read_resp(fd);
    CHECK_INT(r.status, 200);
    free(r.body);
    r = read_resp(fd);
    CHECK_INT(r.status, 400);
    free(r.body);
    CHECK(at_eof(fd));
    close(fd);

    fd = connect_client();
    CHECK_RESP(fd, "GET /health HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 400,
               "{\"error\":\"bad request\"}");
    CHECK(at_eof(fd));
    close(fd);

    fd = connect_client();
    CHECK_RESP(fd, "GET /health HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", 200,
               "{\"status\":\"ok\"}");
    CHECK(at_eof(fd));
    close(fd);

    fd = connect_client();
    CHECK_RESP(fd, "GET /health HTTP/1.0\r\n\r\n", 200, "{\"status\":\"ok\"}");
    CHECK(at_eof(fd));
    close(fd);
}

static void test_head_limit(void)
{
    static char req[GW_STATUS_HEAD_MAX + 200];
    /* Just under the limit: accepted. */
    int fd = connect_client();
    const char *start = "GET /health HTTP/1.1\r\nX-Pad: ";
    size_t n = strlen(start);
    memcpy(req, start, n);
    size_t pad = GW_STATUS_HEAD_MAX - n - 4;
    memset(req + n, 'a', pad);
    memcpy(req + n + pad, "\r\n\r\n", 5);
    CHECK_INT(strlen(req), GW_STATUS_HEAD_MAX);
    CHECK_RESP(fd, req, 200, "{\"status\":\"ok\"}");
    close(fd);

    /* One byte over: 431 and close. */
    fd = connect_client();
    memset(req + n, 'a', pad + 1);
    memcpy(req + n + pad + 1, "\r\n\r\n", 5);
    CHECK_RESP(fd, req, 431, "{\"error\":\"request header fields too large\"}");
    CHECK(at_eof(fd));
    close(fd);

    /* A long URL in a slow stream of small pieces: 431 too. */
    fd = connect_client();
    send_str(fd, "GET /");
    memset(req, 'u', sizeof req - 1);
    req[sizeof req - 1] = '\0';
    for (size_t off = 0; off < sizeof req - 1; off += 1000)
        send_all(fd, req + off, sizeof req - 1 - off < 1000 ? sizeof req - 1 - off : 1000);
    resp_t r = read_resp(fd);
    CHECK_INT(r.status, 431);
    free(r.body);
    CHECK(at_eof(fd));
    close(fd);
}

static void test_timeouts(void)
{
    /* Idle connection: closed after the timeout. */
    double t0 = gw_now();
    int fd = connect_client();
    CHECK(at_eof(fd));
    double dt = gw_now() - t0;
    CHECK(dt >= TIMEOUT * 0.9 && dt < TIMEOUT + 2);
    close(fd);

    /* A slow head: closed too. */
    t0 = gw_now();
    fd = connect_client();
    send_str(fd, "GET /hea");
    CHECK(at_eof(fd));
    CHECK(gw_now() - t0 >= TIMEOUT * 0.9);
    close(fd);

    /* Idle after a response: the timeout starts again. */
    fd = connect_client();
    CHECK_RESP(fd, "GET /health HTTP/1.1\r\n\r\n", 200, "{\"status\":\"ok\"}");
    usleep((useconds_t)(TIMEOUT * 0.6 * 1e6));
    CHECK_RESP(fd, "GET /health HTTP/1.1\r\n\r\n", 200, "{\"status\":\"ok\"}");
    usleep((useconds_t)(TIMEOUT * 0.6 * 1e6));
    CHECK_RESP(fd, "GET /health HTTP/1.1\r\n\r\n", 200, "{\"status\":\"ok\"}");
    t0 = gw_now();
    CHECK(at_eof(fd));
    CHECK(gw_now() - t0 >= TIMEOUT * 0.9);
    close(fd);
}

/* Stop with connections open: the child frees everything and exits 0. */
static void test_stop(void)
{
    int a = connect_client();
    int b = connect_client();
    send_str(b, "GET /hea");
    usleep(50 * 1000);
    CHECK(kill(server_pid, SIGTERM) == 0);
    int st = 0;
    CHECK(waitpid(server_pid, &st, 0) == server_pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(at_eof(a));
    CHECK(at_eof(b));
    close(a);
    close(b);
    server_pid = 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    ready_flag = mmap(NULL, sizeof(int), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ready_flag == MAP_FAILED || gw_metrics_init(1) != GW_OK)
        return 1;

    /* Enough routes that one /metrics answer is ~30 KB. */
    static char names[200][16];
    static gw_route_conf_t routes[200];
    for (int i = 0; i < 200; i++) {
        snprintf(names[i], sizeof names[i], i ? "route-%d" : "r", i);
        routes[i].name = names[i];
    }
    gw_config_t cfg = {.routes = routes, .nroutes = 200};
    gw_metrics_register(&cfg);
    gw_metrics_set_workers(1);
    gw_metrics_set_worker(0);
    for (int i = 1; i < 200; i++)
        gw_metrics_request(i, 200 + i % 3);

    int lfd = listen_socket();
    fflush(NULL);
    server_pid = fork();
    if (server_pid == 0)
        run_server(lfd);
    close(lfd);

    static const gw_test_case_t cases[] = {
        GW_TEST(test_endpoints), GW_TEST(test_pipelining), GW_TEST(test_large_output),
        GW_TEST(test_errors),    GW_TEST(test_head_limit), GW_TEST(test_timeouts),
        GW_TEST(test_stop),
    };
    int rc = GW_TEST_RUN(cases);
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
    munmap((void *)ready_flag, sizeof(int));
    gw_metrics_free();
    return rc;
}
