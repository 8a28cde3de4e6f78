/*
 * Unit tests for gw_redis against a real redis-server, started here on a
 * free loopback port and a unix socket, and always stopped at the end (it
 * also dies with this process). Skipped when redis-server is not installed.
 */
#include "gw_redis.h"
#include "gw_core.h"
#include "gw_log.h"
#include "gw_test.h"

#include <arpa/inet.h>
#include <ev.h>
#include <fcntl.h>
#include <math.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ARGS 16

static pid_t server_pid = -1;
static int server_port;
static char server_sock[64];
static char tcp_url[128];
static char unix_url[128];

/* ---- the server --------------------------------------------------------- */

/* A port on 127.0.0.1 nobody listens on (bound by the kernel, then closed). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        perror("free_port");
        exit(2);
    }
    close(fd);
    return ntohs(sa.sin_port);
}

static bool have_redis_server(void)
{
    const char *path = getenv("PATH");
    char buf[4096];
    while (path && *path) {
        size_t n = strcspn(path, ":");
        snprintf(buf, sizeof buf, "%.*s/redis-server", (int)n, path);
        if (access(buf, X_OK) == 0)
            return true;
        path += n + (path[n] == ':');
    }
    return false;
}

/* Whether the server answers PING within `seconds`. */
static bool server_wait_ready(double seconds)
{
    double end = gw_now() + seconds;
    while (gw_now() < end) {
        struct timeval tv = {0, 200000};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", server_port, tv);
        redisReply *rr = c && !c->err ? redisCommand(c, "PING") : NULL;
        bool ok = rr && rr->type == REDIS_REPLY_STATUS && strcmp(rr->str, "PONG") == 0;
        if (rr)
            freeReplyObject(rr);
        if (c)
            redisFree(c);
        if (ok)
            return true;
        usleep(20000);
    }
    return false;
}

/* Starts redis-server on server_port and server_sock; false if it does not answer. */
static bool server_start(void)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        char port[16];
        snprintf(port, sizeof port, "%d", server_port);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
               "--unixsocket", server_sock, "--save", "", "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    server_pid = pid;
    return server_wait_ready(5.0);
}

/* Stops the server (SIGTERM, then SIGKILL after 3 s) and reaps it. */
static void server_stop(void)
{
    if (server_pid <= 0)
        return;
    kill(server_pid, SIGTERM);
    double end = gw_now() + 3.0;
    while (waitpid(server_pid, NULL, WNOHANG) == 0) {
        if (gw_now() > end) {
            kill(server_pid, SIGKILL);
            waitpid(server_pid, NULL, 0);
            break;
        }
        usleep(10000);
    }
    server_pid = -1;
    unlink(server_sock);
}

/* Runs one command on a blocking connection (for setup and checks); NULL on failure. */
static redisReply *sync_command(const char *password, int db, const char *fmt, ...)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", server_port, tv);
    redisReply *rr = NULL;
    if (!c || c->err)
        goto out;
    if (password)
        freeReplyObject(redisCommand(c, "AUTH %s", password));
    if (db)
        freeReplyObject(redisCommand(c, "SELECT %d", db));
    va_list ap;
    va_start(ap, fmt);
    rr = redisvCommand(c, fmt, ap);
    va_end(ap);
out:
    if (c)
        redisFree(c);
    return rr;
}

/* ---- the loop and results ----------------------------------------------- */

typedef struct {
    int calls; /* times the callback ran */
    const char *error;
    int type;
    long long integer;
    char str[512];
    size_t len;
    size_t elements;
    int etype[8];
    long long eint[8];
    char estr[8][64];
    size_t elements0; /* element 0's own element count, when it is an array */
    double at;        /* gw_now() when called */
} result_t;

/* Copies what the tests look at: the reply is only valid during the callback. */
static void on_result(void *ud, const gw_redis_reply_t *reply, const char *error)
{
    result_t *res = ud;
    res->calls++;
    res->error = error;
    res->at = gw_now();
    if (!reply)
        return;
    res->type = reply->type;
    res->integer = reply->integer;
    res->len = reply->len;
    if (reply->str)
        memcpy(res->str, reply->str, reply->len < sizeof res->str ? reply->len + 1 : 0);
    res->elements = reply->elements;
    for (size_t i = 0; i < reply->elements && i < 8; i++) {
        const gw_redis_reply_t *e = &reply->element[i];
        res->etype[i] = e->type;
        res->eint[i] = e->integer;
        if (e->str)
            snprintf(res->estr[i], sizeof res->estr[i], "%s", e->str);
        if (i == 0)
            res->elements0 = e->elements;
    }
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
}

/* Runs the loop until *count reaches `want` or `seconds` pass; true if reached. */
static bool run_until(struct ev_loop *loop, const int *count, int want, double seconds)
{
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.01, 0.01);
    ev_timer_start(loop, &tick);
    double end = gw_now() + seconds;
    while ((!count || *count < want) && gw_now() < end)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
    return !count || *count >= want;
}

static void run_for(struct ev_loop *loop, double seconds)
{
    run_until(loop, NULL, 0, seconds);
}

/* Sends a command of NUL-terminated arguments (list ends with NULL). */
static gw_redis_call_t *cmd(gw_redis_t *r, result_t *res, double timeout, ...)
{
    const char *argv[MAX_ARGS];
    int argc = 0;
    va_list ap;
    va_start(ap, timeout);
    for (const char *a; argc < MAX_ARGS && (a = va_arg(ap, const char *));)
        argv[argc++] = a;
    va_end(ap);
    return gw_redis_command(r, argc, argv, NULL, timeout, on_result, res);
}

/* Sends a command and waits (at most 3 s) for its callback. */
static void cmd_wait(struct ev_loop *loop, gw_redis_t *r, result_t *res, ...)
{
    const char *argv[MAX_ARGS];
    int argc = 0;
    va_list ap;
    va_start(ap, res);
    for (const char *a; argc < MAX_ARGS && (a = va_arg(ap, const char *));)
        argv[argc++] = a;
    va_end(ap);
    memset(res, 0, sizeof *res);
    CHECK(gw_redis_command(r, argc, argv, NULL, 2.0, on_result, res) != NULL);
    CHECK(run_until(loop, &res->calls, 1, 3.0));
}

static gw_redis_t *client(struct ev_loop *loop, const char *url, size_t pool)
{
    char err[256] = "";
    gw_redis_t *r = gw_redis_new(loop, url, pool, err, sizeof err);
    if (!r)
        fprintf(stderr, "gw_redis_new(%s): %s\n", url, err);
    return r;
}

/* ---- tests -------------------------------------------------------------- */

static void test_url(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *bad[] = {
        "http://127.0.0.1",     "redis://",         "redis://:6379",
        "redis://h:0",          "redis://h:65536",  "redis://h:x",
        "redis://h/db",         "redis://pw@h",     "redis://:%zz@h",
        "redis://[::1",         "redis://h?x=1",    "rediss://h",
        "unix://relative.sock", "unix:///s?db=x",   "unix:///s?foo=1",
        "unix:///s?password=%", "unix:///s?user=u", "unix:///" /* no path */,
    };
    for (size_t i = 0; i < GW_ARRAY_LEN(bad); i++) {
        char err[256] = "";
        gw_redis_t *r = gw_redis_new(loop, bad[i], 1, err, sizeof err);
        CHECK(r == NULL);
        CHECK(strncmp(err, "invalid redis url: ", 19) == 0);
        gw_redis_free(r);
    }
    const char *good[] = {
        "redis://127.0.0.1",
        "redis://127.0.0.1:6380/2",
        "redis://:p%40ss@h:1/",
        "redis://u:p@[::1]:7/1",
        "unix:///tmp/x.sock?db=3&password=pw",
        "REDIS://localhost:1",
    };
    for (size_t i = 0; i < GW_ARRAY_LEN(good); i++) {
        gw_redis_t *r = client(loop, good[i], 2);
        CHECK(r != NULL);
        CHECK_INT(gw_redis_open_connections(r), 0); /* lazily */
        gw_redis_free(r);
    }
    char err[256] = "";
    CHECK(gw_redis_new(loop, "redis://h", 0, err, sizeof err) == NULL);
    ev_loop_destroy(loop);
}

static void test_invalid_args(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    gw_redis_t *r = client(loop, tcp_url, 1);
    result_t res = {0};
    const char *ping[] = {"PING"}, *sub[] = {"subscribe", "ch"}, *null_arg[] = {"GET", NULL};
    CHECK(gw_redis_command(r, 0, ping, NULL, 1.0, on_result, &res) == NULL);
    CHECK(gw_redis_command(r, 1, ping, NULL, 0, on_result, &res) == NULL);
    CHECK(gw_redis_command(r, 1, ping, NULL, HUGE_VAL, on_result, &res) == NULL);
    CHECK(gw_redis_command(r, 1, ping, NULL, 1.0, NULL, &res) == NULL);
    CHECK(gw_redis_command(NULL, 1, ping, NULL, 1.0, on_result, &res) == NULL);
    CHECK(gw_redis_command(r, 2, sub, NULL, 1.0, on_result, &res) == NULL);
    CHECK(gw_redis_command(r, 2, null_arg, NULL, 1.0, on_result, &res) == NULL);
    int argcs[2] = {1, 2};
    const char *pv[3] = {"PING", "MONITOR", "x"};
    CHECK(gw_redis_pipeline(r, 2, argcs, pv, NULL, 1.0, on_result, &res) == NULL);
    CHECK(gw_redis_script(r, "return 1", 8, 2, 1, ping, NULL, 1.0, on_result, &res) == NULL);
    run_for(loop, 0.05);
    CHECK_INT(res.calls, 0);
    CHECK_INT(gw_redis_open_connections(r), 0);
    gw_redis_free(r);
    ev_loop_destroy(loop);
}

static void test_set_get(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    gw_redis_t *r = client(loop, tcp_url, 2);
    result_t res = {0};
    CHECK(cmd(r, &res, 2.0, "SET", "greeting", "hello", NULL) != NULL);
    CHECK_INT(res.calls, 0); /* never synchronous */
    CHECK(run_until(loop, &res.calls, 1, 3.0));
    CHECK(res.error == NULL);
    CHECK_INT(res.type, GW_REDIS_STATUS);
    CHECK_STR(res.str, "OK");

    cmd_wait(loop, r, &res, "GET", "greeting", NULL);
    CHECK(res.error == NULL);
    CHECK_INT(res.type, GW_REDIS_STRING);
    CHECK_INT(res.len, 5);
    CHECK_STR(res.str, "hello");
    CHECK_INT(res.calls, 1);
    gw_redis_free(r);
    ev_loop_destroy(loop);
}

static void test_unix_socket(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    gw_redis_t *r = client(loop, unix_url, 1);
    result_t res;
    cmd_wait(loop, r, &res, "PING", NULL);
    CHECK(res.error == NULL);
    CHECK_STR(res.str, "PONG");
    gw_redis_free(r);
    ev_loop_destroy(loop);
}

static void test_binary_values(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    gw_redis_t *r = client(loop, tcp_url, 1);
    static const char key[] = "bin\0key", val[] = "a\0b\0\r\nc";
    const char *set[] = {"SET", key, val}, *get[] = {"GET", key};
    size_t setlen[] = {3, sizeof key - 1, sizeof val - 1}, getlen[] = {3, sizeof key - 1};
    result_t res = {0};
    CHECK(gw_redis_command(r, 3, set, setlen, 2.0, on_result, &res) != NULL);
    CHECK(run_until(loop, &res.calls, 1, 3.0));
    CHECK_STR(res.str, "OK");
    memset(&res, 0, sizeof res);
    CHECK(gw_redis_command(r, 2, get, getlen, 2.0, on_result, &res) != NULL);
    CHECK(run_until(loop, &res.calls, 1, 3.0));
    CHECK_INT(res.type, GW_REDIS_STRING);
    CHECK_INT(res.len, sizeof val - 1);
    CHECK(memcmp(res.str, val, sizeof val) == 0); /* with the terminating NUL */
    cmd_wait(loop, r, &res, "GET", "bin", NULL);  /* the key stops at its NUL in C */
    CHECK_INT(res.type, GW_REDIS_NIL);
    gw_redis_free(r);
    ev_loop_destroy(loop);
}

static void test_integers_nil_arrays(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    gw_redis_t *r = client(loop, tcp_url, 2);
    result_t res;
    cmd_wait(loop, r, &res, "DEL", "counter", "list", "missing", NULL);
    cmd_wait(loop, r, &res, "INCR", "counter", NULL);
    CHECK_INT(res.type, GW_REDIS_INTEGER);
    CHECK_INT(res.integer, 1);
    cmd_wait(loop, r, &res, "INCRBY", "counter", "41", NULL);
    CHECK_INT(res.integer, 42);
    cmd_wait(loop, r, &res, "GET", "missing", NULL);
    CHECK(res.error == NULL);
    CHECK_INT(res.type, GW_REDIS_NIL);
    CHECK_INT(res.len, 0);
    cmd_wait(loop, r, &res, "RPUSH", "list", "a", "bb", "", NULL);
    CHECK_INT(res.integer, 3);
    cmd_wait(loop, r, &res, "LRANGE", "list", "0", "-1", NULL);
    CHECK_INT(res.type, GW_REDIS_ARRAY);
    CHECK_INT(res.elements, 3);
    CHECK_INT(res.etype[0], GW_REDIS_STRING);
    CHECK_STR(res.estr[0], "a");
    CHECK_STR(res.estr[1], "bb");
    CHECK_STR(res.estr[2], "");
    cmd_wait(loop, r, &res, "LRANGE", "missing", "0", "-1", NULL);
    CHECK_INT(res.type, GW_REDIS_ARRAY);
    CHECK_INT(res.elements, 0);
    cmd_wait(loop, r, &res, "MGET", "counter", "missing", NULL);
    CHECK_INT(res.elements, 2);
    CHECK_STR(res.estr[0], "42");
    CHECK_INT(res.etype[1], GW_REDIS_NIL);
    gw_redis_free(r);
    ev_loop_destroy(loop);
}

static void test_error_reply(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    gw_redis_t *r = client(loop, tcp_url, 1);
    result_t res;
    cmd_wait(loop, r, &res, "SET", "plain", "v", NULL);
    cmd_wait(loop, r, &res, "LPUSH", "plain", "x", NULL);
    CHECK(res.error == NULL);
    CHECK_INT(res.type, GW_REDIS_ERROR);
    CHECK(strncmp(res.str, "WRONGTYPE", 9) == 0);
    cmd_wait(loop, r, &res, "NOSUCHCOMMAND", NULL);
    CHECK_INT(res.type, GW_REDIS_ERROR);
    cmd_wait(loop, r, &res, "PING", NULL); /* the connection is fine */
    CHECK_STR(res.str, "PONG");
    gw_redis_free(r);
    ev_loop_destroy(loop);
}

static void test_pipeline(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    gw_redis_t *r = client(loop, tcp_url, 2);
    int argcs[] = {3, 2, 3};
    const char *argv[] = {"SET", "p", "1", "INCR", "p", "LPUSH", "p", "x"};
    result_t res = {0};
    CHECK(gw_redis_pipeline(r, 3, argcs, argv, NULL, 2.0, on_result, &res) != NULL);
    CHECK(run_until(loop, &res.calls, 1, 3.0));
    CHECK(res.error == NULL);
    CHECK_INT(res.type, GW_REDIS_ARRAY);
    CHECK_INT(res.elements, 3);
    CHECK_INT(res.etype[0], GW_REDIS_STATUS);
    CHECK_STR(res.estr[0], "OK");
    CHECK_INT(res.etype[1], GW_REDIS_INTEGER);
    CHECK_INT(res.eint[1], 2);
    CHECK_INT(res.etype[2], GW_REDIS_ERROR);
    CHECK(strncmp(res.estr[2], "WRONGTYPE", 9) == 0);

    /* Nested arrays, and a MULTI/EXEC transaction kept on one connection. */
    int argcs2[] = {1, 4, 2, 1};
    const char *argv2[] = {"MULTI", "LRANGE", "nolist", "0", "-1", "INCR", "p", "EXEC"};
    memset(&res, 0, sizeof res);
    CHECK(gw_redis_pipeline(r, 4, argcs2, argv2, NULL, 2.0, on_result, &res) != NULL);
    CHECK(run_until(loop, &res.calls, 1, 3.0));
    CHECK_INT(res.elements, 4);
    CHECK_STR(res.estr[1], "QUEUED");
    CHECK_INT(res.etype[3], GW_REDIS_ARRAY);
    gw_redis_free(r);
    ev_loop_destroy(loop);
}

static void test_script(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    gw_redis_t *r = client(loop, tcp_url, 2);
    result_t res;
    cmd_wait(loop, r, &res, "SCRIPT", "FLUSH", NULL);
    cmd_wait(loop, r, &res, "CONFIG", "RESETSTAT", NULL);
    static const char script[] = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}";
    const char *argv[] = {"k1", "v1", "41"};
    for (int round = 0; round < 2; round++) {
        memset(&res, 0, sizeof res);
        CHECK(gw_redis_script(r, script, sizeof script - 1, 1, 3, argv, NULL, 2.0, on_result,
                              &res) != NULL);
        CHECK(run_until(loop, &res.calls, 1, 3.0));
        CHECK(res.error == NULL);
        CHECK_INT(res.type, GW_REDIS_ARRAY);
        CHECK_INT(res.elements, 3);
        CHECK_STR(res.estr[0], "k1");
        CHECK_STR(res.estr[1], "v1");
        CHECK_INT(res.eint[2], 42);
    }
    /* Loaded once, by the first call; the second found it cached. */
    redisReply *info = sync_command(NULL, 0, "INFO commandstats");
    CHECK(info && info->type == REDIS_REPLY_STRING);
    CHECK(info && strstr(info->str, "cmdstat_script|load:calls=1,") != NULL);
    CHECK(info && strstr(info->str, "cmdstat_evalsha:calls=3,") != NULL);
    if (info)
        freeReplyObject(info);

    /* A script that does not compile: the SCRIPT LOAD error. */
    static const char broken[] = "return (";
    memset(&res, 0, sizeof res);
    CHECK(gw_redis_script(r, broken, sizeof broken - 1, 0, 0, NULL, NULL, 2.0, on_result, &res) !=
          NULL);
    CHECK(run_until(loop, &res.calls, 1, 3.0));
    CHECK_INT(res.calls, 1);
    CHECK_INT(res.type, GW_REDIS_ERROR);
    CHECK(strstr(res.str, "compil") != NULL);
    gw_redis_free(r);
    ev_loop_destroy(loop);
}

static void test_timeout(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    gw_redis_t *r = client(loop, tcp_url, 1);
    result_t res;
    cmd_wait(loop, r, &res, "PING", NULL); /* connected */
    memset(&res, 0, sizeof res);
    double start = gw_now();
    CHECK(cmd(r, &res, 0.2, "BLPOP", "nothing-here", "1", NULL) != NULL);
    CHECK(run_until(loop, &res.calls, 1, 3.0));
    CHECK(res.error == gw_redis_err_timeout);
    CHECK_STR(res.error, "timeout");
    CHECK(res.at - start > 0.15 && res.at - start < 0.8);
    run_for(loop, 1.0); /* the late nil reply arrives and is dropped */
    CHECK_INT(res.calls, 1);
    cmd_wait(loop, r, &res, "PING", NULL);
    CHECK(res.error == NULL);
    CHECK_STR(res.str, "PONG");
    gw_redis_free(r);
    ev_loop_destroy(loop);
}

static void test_connection_refused(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", free_port());
    gw_redis_t *r = client(loop, url, 2);
    result_t res = {0};
    CHECK(cmd(r, &res, 1.0, "PING", NULL) != NULL);
    CHECK_INT(res.calls, 0);
    CHECK(run_until(loop, &res.calls, 1, 3.0));
    CHECK_STR(res.error, "connection refused");
    int argcs[] = {1, 1};
    const char *argv[] = {"PING", "PING"};
    memset(&res, 0, sizeof res);
    CHECK(gw_redis_pipeline(r, 2, argcs, argv, NULL, 1.0, on_result, &res) != NULL);
    CHECK(run_until(loop, &res.calls, 1, 3.0));
    CHECK(res.error == gw_redis_err_connection_refused);
    gw_redis_free(r);

    r = client(loop, "unix:///nonexistent/redis.sock", 1);
    memset(&res, 0, sizeof res);
    CHECK(cmd(r, &res, 1.0, "PING", NULL) != NULL);
    CHECK(run_until(loop, &res.calls, 1, 3.0));
    CHECK_STR(res.error, "connection refused");
    gw_redis_free(r);
    ev_loop_destroy(loop);
}

/*
 * A listener whose accept queue is full: Linux drops further SYNs, so a new
 * connection stays in progress until the connect timeout.
 */
static void test_connect_timeout(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    int lfd = socket(AF_INET, SOCK_STREAM, 0), cfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(listen(lfd, 0) == 0);
    CHECK(getsockname(lfd, (struct sockaddr *)&sa, &len) == 0);
    CHECK(connect(cfd, (struct sockaddr *)&sa, sizeof sa) == 0); /* fills the queue */
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", ntohs(sa.sin_port));
    gw_redis_t *r = client(loop, url, 1);
    gw_redis_set_connect_timeout(r, 0.2);
    result_t res = {0};
    double start = gw_now();
    CHECK(cmd(r, &res, 2.0, "PING", NULL) != NULL);
    CHECK(run_until(loop, &res.calls, 1, 3.0));
    CHECK_STR(res.error, "connect timeout");
    CHECK(res.at - start > 0.15 && res.at - start < 1.0);
    CHECK_INT(gw_redis_open_connections(r), 0);
    gw_redis_free(r);
    close(cfd);
    close(lfd);
    ev_loop_destroy(loop);
}

static void test_reconnect(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    gw_redis_t *r = client(loop, tcp_url, 1);
    result_t res, blocked = {0};
    cmd_wait(loop, r, &res, "PING", NULL);
    CHECK_STR(res.str, "PONG");
    CHECK(cmd(r, &blocked, 3.0, "BLPOP", "nothing-here", "2", NULL) != NULL);
    run_for(loop, 0.05);
    server_stop();
    CHECK(run_until(loop, &blocked.calls, 1, 2.0));
    CHECK_STR(blocked.error, "connection lost");
    CHECK_INT(gw_redis_open_connections(r), 0);
    cmd_wait(loop, r, &res, "PING", NULL);
    CHECK_STR(res.error, "connection refused");
    CHECK(server_start());
    cmd_wait(loop, r, &res, "PING", NULL);
    CHECK(res.error == NULL);
    CHECK_STR(res.str, "PONG");
    CHECK_INT(gw_redis_open_connections(r), 1);
    gw_redis_free(r);
    ev_loop_destroy(loop);
}

static void test_cancel(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    gw_redis_t *r = client(loop, tcp_url, 1);
    result_t res = {0}, other = {0};
    gw_redis_call_t *c = cmd(r, &res, 2.0, "BLPOP", "nothing-here", "0.2", NULL);
    CHECK(c != NULL);
    CHECK(cmd(r, &other, 2.0, "PING", NULL) != NULL);
    run_for(loop, 0.05);
    gw_redis_cancel(c);
    CHECK(run_until(loop, &other.calls, 1, 2.0));
    run_for(loop, 0.3); /* BLPOP's reply comes and is dropped */
    CHECK_INT(res.calls, 0);
    CHECK_STR(other.str, "PONG");

    /* A pipeline just sent. */
    int argcs[] = {1, 1};
    const char *argv[] = {"PING", "PING"};
    c = gw_redis_pipeline(r, 2, argcs, argv, NULL, 2.0, on_result, &res);
    gw_redis_cancel(c);
    run_for(loop, 0.1);
    CHECK_INT(res.calls, 0);

    /* A call timed out but not delivered yet: libev runs the delivering
     * ev_check in the iteration after the one where the timer fired. */
    c = cmd(r, &res, 0.05, "BLPOP", "nothing-here", "0.2", NULL);
    ev_sleep(0.08);
    ev_run(loop, EVRUN_NOWAIT);
    gw_redis_cancel(c);
    run_for(loop, 0.3);
    CHECK_INT(res.calls, 0);

    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", free_port());
    gw_redis_t *refused = client(loop, url, 1);
    c = cmd(refused, &res, 1.0, "PING", NULL); /* failed at once, queued for delivery */
    gw_redis_cancel(c);
    run_for(loop, 0.05);
    CHECK_INT(res.calls, 0);
    gw_redis_free(refused);
    gw_redis_free(r);
    ev_loop_destroy(loop);
}

typedef struct {
    gw_redis_t *r;
    int calls;
} free_ctx_t;

static void on_free_client(void *ud, const gw_redis_reply_t *reply, const char *error)
{
    free_ctx_t *ctx = ud;
    ctx->calls++;
    gw_redis_free(ctx->r);
}

static void test_free_pending(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    gw_redis_t *r = client(loop, tcp_url, 2);
    result_t res = {0};
    for (int i = 0; i < 4; i++)
        CHECK(cmd(r, &res, 2.0, "BLPOP", "nothing-here", "0.1", NULL) != NULL);
    CHECK(cmd(r, &res, 0.01, "PING", NULL) != NULL);
    run_for(loop, 0.03); /* one timed out, its callback queued */
    CHECK(res.calls <= 1);
    int before = res.calls;
    gw_redis_free(r);
    run_for(loop, 0.2);
    CHECK_INT(res.calls, before);

    /* Freed from inside a callback while more replies wait for delivery. */
    free_ctx_t ctx = {client(loop, tcp_url, 1), 0};
    int argcs[] = {1};
    const char *argv[] = {"PING"};
    for (int i = 0; i < 3; i++)
        CHECK(gw_redis_pipeline(ctx.r, 1, argcs, argv, NULL, 2.0, on_free_client, &ctx) != NULL);
    CHECK(run_until(loop, &ctx.calls, 1, 3.0));
    run_for(loop, 0.1);
    CHECK_INT(ctx.calls, 1);
    ev_loop_destroy(loop);
}

typedef struct {
    int calls;
    int errors;
    bool seen[101];
} parallel_t;

static void on_incr(void *ud, const gw_redis_reply_t *reply, const char *error)
{
    parallel_t *p = ud;
    p->calls++;
    if (error || reply->type != GW_REDIS_INTEGER || reply->integer < 1 || reply->integer > 100 ||
        p->seen[reply->integer])
        p->errors++;
    else
        p->seen[reply->integer] = true;
}

static void test_parallel(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    gw_redis_t *r = client(loop, tcp_url, 4);
    result_t res;
    cmd_wait(loop, r, &res, "DEL", "parallel", NULL);
    parallel_t p = {0};
    const char *argv[] = {"INCR", "parallel"};
    for (int i = 0; i < 100; i++)
        CHECK(gw_redis_command(r, 2, argv, NULL, 3.0, on_incr, &p) != NULL);
    CHECK_INT(gw_redis_open_connections(r), 4);
    CHECK(run_until(loop, &p.calls, 100, 4.0));
    CHECK_INT(p.calls, 100);
    CHECK_INT(p.errors, 0);
    cmd_wait(loop, r, &res, "GET", "parallel", NULL);
    CHECK_STR(res.str, "100");
    gw_redis_free(r);
    ev_loop_destroy(loop);
}

static void test_auth_and_db(void)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    redisReply *rr = sync_command(NULL, 0, "CONFIG SET requirepass p@ss");
    CHECK(rr && rr->type == REDIS_REPLY_STATUS);
    if (rr)
        freeReplyObject(rr);
    char url[256];
    result_t res;

    snprintf(url, sizeof url, "redis://:p%%40ss@127.0.0.1:%d/3", server_port);
    gw_redis_t *r = client(loop, url, 1);
    cmd_wait(loop, r, &res, "SET", "in-db-3", "yes", NULL);
    CHECK(res.error == NULL);
    CHECK_STR(res.str, "OK");
    gw_redis_free(r);
    rr = sync_command("p@ss", 0, "EXISTS in-db-3");
    CHECK(rr && rr->type == REDIS_REPLY_INTEGER && rr->integer == 0);
    if (rr)
        freeReplyObject(rr);

    snprintf(url, sizeof url, "unix://%s?db=3&user=default&password=p%%40ss", server_sock);
    r = client(loop, url, 1);
    cmd_wait(loop, r, &res, "GET", "in-db-3", NULL);
    CHECK_STR(res.str, "yes");
    gw_redis_free(r);

    snprintf(url, sizeof url, "redis://default:wrong@127.0.0.1:%d", server_port);
    r = client(loop, url, 1);
    cmd_wait(loop, r, &res, "PING", NULL);
    CHECK_STR(res.error, "authentication failed");
    gw_redis_free(r);

    snprintf(url, sizeof url, "redis://:p%%40ss@127.0.0.1:%d/100000", server_port);
    r = client(loop, url, 1);
    cmd_wait(loop, r, &res, "PING", NULL);
    CHECK_STR(res.error, "select failed");
    gw_redis_free(r);

    rr = sync_command("p@ss", 0, "CONFIG SET requirepass %s", "");
    CHECK(rr && rr->type == REDIS_REPLY_STATUS);
    if (rr)
        freeReplyObject(rr);
    ev_loop_destroy(loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    gw_log_level = GW_LOG_ERROR; /* connection failures are expected here */
    if (!have_redis_server()) {
        printf("skip test_redis: redis-server not found\n");
        return 0;
    }
    server_port = free_port();
    snprintf(server_sock, sizeof server_sock, "/tmp/moongate-test-redis-%d.sock", (int)getpid());
    snprintf(tcp_url, sizeof tcp_url, "redis://127.0.0.1:%d", server_port);
    snprintf(unix_url, sizeof unix_url, "unix://%s", server_sock);
    atexit(server_stop);
    if (!server_start()) {
        printf("FAIL redis-server did not start\n");
        return 1;
    }
    static const gw_test_case_t cases[] = {
        GW_TEST(test_url),
        GW_TEST(test_invalid_args),
        GW_TEST(test_set_get),
        GW_TEST(test_unix_socket),
        GW_TEST(test_binary_values),
        GW_TEST(test_integers_nil_arrays),
        GW_TEST(test_error_reply),
        GW_TEST(test_pipeline),
        GW_TEST(test_script),
        GW_TEST(test_timeout),
        GW_TEST(test_connection_refused),
        GW_TEST(test_connect_timeout),
        GW_TEST(test_reconnect),
        GW_TEST(test_cancel),
        GW_TEST(test_free_pending),
        GW_TEST(test_parallel),
        GW_TEST(test_auth_and_db),
    };
    int rc = GW_TEST_RUN(cases);
    server_stop();
    return rc;
}
