/* Unit tests for the shared-memory metrics (gw_metrics.c). */
#include "gw_log.h"
#include "gw_metrics.h"
#include "gw_test.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* A config with only the names set, as gw_metrics_register reads it. */
typedef struct {
    gw_config_t cfg;
    gw_route_conf_t routes[4];
    gw_upstream_conf_t upstreams[4];
} test_cfg_t;

static void test_cfg(test_cfg_t *t, const char **routes, size_t nroutes, const char **ups,
                     size_t nups)
{
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < nroutes; i++)
        t->routes[i].name = (char *)routes[i];
    for (size_t i = 0; i < nups; i++)
        t->upstreams[i].name = (char *)ups[i];
    t->cfg.routes = t->routes;
    t->cfg.nroutes = nroutes;
    t->cfg.upstreams = t->upstreams;
    t->cfg.nupstreams = nups;
}

/* True when `line` is a whole line of text. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

#define CHECK_LINE(text, line)                                                                     \
    do {                                                                                           \
        CHECK(has_line((text), (line)));                                                           \
        if (!has_line((text), (line)))                                                             \
            fprintf(stderr, "  missing line: %s\n", (line));                                       \
    } while (0)

/* Run fn in a child process as worker `index`; wait for it to finish. */
static void in_worker(int index, void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        gw_metrics_set_worker(index);
        fn();
        _exit(0);
    }
    int st = 0;
    CHECK(pid > 0);
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void worker1_traffic(void)
{
    int r = gw_metrics_route_slot("r");
    int u = gw_metrics_upstream_slot("u1");
    gw_metrics_request(r, 200);
    gw_metrics_request(r, 200);
    gw_metrics_request(r, 503);
    gw_metrics_request(GW_METRICS_NO_ROUTE, 404);
    gw_metrics_upstream_latency(u, 0.004);
    gw_metrics_upstream_latency(u, 0.005); /* le is inclusive */
    gw_metrics_upstream_latency(u, 0.25);
    gw_metrics_upstream_latency(u, 30);
    gw_metrics_active_connections(3);
    gw_metrics_active_connections(-1);
    gw_metrics_open_tunnels(2);
    gw_metrics_open_tunnels(-1);
    gw_metrics_idle_connections(u, 4);
}

static void test_render_sums_workers(void)
{
    CHECK_INT(gw_metrics_init(2), GW_OK);
    test_cfg_t t;
    const char *routes[] = {"r", "s"};
    const char *ups[] = {"u1", "u2"};
    test_cfg(&t, routes, 2, ups, 2);
    gw_metrics_register(&t.cfg);
    gw_metrics_set_workers(2);
    CHECK_INT(gw_metrics_route_slot("r"), 0);
    CHECK_INT(gw_metrics_route_slot("s"), 1);
    CHECK_INT(gw_metrics_route_slot("nope"), GW_METRICS_ROUTE_OTHER);
    CHECK_INT(gw_metrics_upstream_slot("u2"), 1);

    in_worker(1, worker1_traffic);
    gw_metrics_set_worker(0);
    gw_metrics_request(gw_metrics_route_slot("r"), 200);
    gw_metrics_request(gw_metrics_route_slot("s"), 101);
    gw_metrics_request(gw_metrics_route_slot("s"), 599);
    gw_metrics_request(gw_metrics_route_slot("s"), 600); /* ignored */
    gw_metrics_request(gw_metrics_route_slot("s"), 99);  /* ignored */
    gw_metrics_upstream_latency(gw_metrics_upstream_slot("u1"), 0.5);
    gw_metrics_active_connections(1);
    gw_metrics_open_tunnels(1);
    gw_metrics_idle_connections(gw_metrics_upstream_slot("u1"), 1);

    char *out = NULL;
    size_t len = gw_metrics_render(&out);
    CHECK_INT(len, strlen(out));
    CHECK_LINE(out, "# HELP moongate_requests_total Requests answered, by route and status code.");
    CHECK_LINE(out, "# TYPE moongate_requests_total counter");
    CHECK_LINE(out, "moongate_requests_total{route=\"r\",status=\"200\"} 3");
    CHECK_LINE(out, "moongate_requests_total{route=\"r\",status=\"503\"} 1");
    CHECK_LINE(out, "moongate_requests_total{route=\"s\",status=\"101\"} 1");
    CHECK_LINE(out, "moongate_requests_total{route=\"s\",status=\"599\"} 1");
    CHECK_LINE(out, "moongate_requests_total{route=\"\",status=\"404\"} 1");
    CHECK(!strstr(out, "status=\"600\""));
    CHECK(!strstr(out, "status=\"404\"} 0"));
    CHECK(!strstr(out, "route=\"other\""));

    CHECK_LINE(out, "# TYPE moongate_upstream_latency_seconds histogram");
    const char *buckets[] = {
        "moongate_upstream_latency_seconds_bucket{upstream=\"u1\",le=\"0.005\"} 2",
        "moongate_upstream_latency_seconds_bucket{upstream=\"u1\",le=\"0.01\"} 2",
        "moongate_upstream_latency_seconds_bucket{upstream=\"u1\",le=\"0.025\"} 2",
        "moongate_upstream_latency_seconds_bucket{upstream=\"u1\",le=\"0.05\"} 2",
        "moongate_upstream_latency_seconds_bucket{upstream=\"u1\",le=\"0.1\"} 2",
        "moongate_upstream_latency_seconds_bucket{upstream=\"u1\",le=\"0.25\"} 3",
        "moongate_upstream_latency_seconds_bucket{upstream=\"u1\",le=\"0.5\"} 4",
        "moongate_upstream_latency_seconds_bucket{upstream=\"u1\",le=\"1\"} 4",
        "moongate_upstream_latency_seconds_bucket{upstream=\"u1\",le=\"2.5\"} 4",
        "moongate_upstream_latency_seconds_bucket{upstream=\"u1\",le=\"5\"} 4",
        "moongate_upstream_latency_seconds_bucket{upstream=\"u1\",le=\"10\"} 4",
        "moongate_upstream_latency_seconds_bucket{upstream=\"u1\",le=\"+Inf\"} 5",
    };
    for (size_t i = 0; i < GW_ARRAY_LEN(buckets); i++)
        CHECK_LINE(out, buckets[i]);
    CHECK_LINE(out, "moongate_upstream_latency_seconds_sum{upstream=\"u1\"} 30.759");
    CHECK_LINE(out, "moongate_upstream_latency_seconds_count{upstream=\"u1\"} 5");
    CHECK(!strstr(out, "latency_seconds_count{upstream=\"u2\"}"));

    CHECK_LINE(out, "# TYPE moongate_active_connections gauge");
    CHECK_LINE(out, "moongate_active_connections 3");
    CHECK_LINE(out, "# TYPE moongate_open_tunnels gauge");
    CHECK_LINE(out, "moongate_open_tunnels 2");
    CHECK_LINE(out, "moongate_upstream_idle_connections{upstream=\"u1\"} 5");
    CHECK_LINE(out, "moongate_upstream_idle_connections{upstream=\"u2\"} 0");
    CHECK_LINE(out, "# TYPE moongate_workers gauge");
    CHECK_LINE(out, "moongate_workers 2");
    CHECK(out[len - 1] == '\n');
    free(out);
    gw_metrics_free();
}

static void test_exact_output(void)
{
    CHECK_INT(gw_metrics_init(1), GW_OK);
    test_cfg_t t;
    const char *routes[] = {"a"};
    const char *ups[] = {"b"};
    test_cfg(&t, routes, 1, ups, 1);
    gw_metrics_register(&t.cfg);
    gw_metrics_set_workers(1);
    gw_metrics_set_worker(0);
    gw_metrics_request(0, 204);
    gw_metrics_upstream_latency(0, 0.75);
    char *out = NULL;
    gw_metrics_render(&out);
    CHECK_STR(out, "# HELP moongate_requests_total Requests answered, by route and status code.\n"
                   "# TYPE moongate_requests_total counter\n"
                   "moongate_requests_total{route=\"a\",status=\"204\"} 1\n"
                   "# HELP moongate_upstream_latency_seconds Time from starting a request upstream"
                   " to the end of its response, in seconds.\n"
                   "# TYPE moongate_upstream_latency_seconds histogram\n"
                   "moongate_upstream_latency_seconds_bucket{upstream=\"b\",le=\"0.005\"} 0\n"
                   "moongate_upstream_latency_seconds_bucket{upstream=\"b\",le=\"0.01\"} 0\n"
                   "moongate_upstream_latency_seconds_bucket{upstream=\"b\",le=\"0.025\"} 0\n"
                   "moongate_upstream_latency_seconds_bucket{upstream=\"b\",le=\"0.05\"} 0\n"
                   "moongate_upstream_latency_seconds_bucket{upstream=\"b\",le=\"0.1\"} 0\n"
                   "moongate_upstream_latency_seconds_bucket{upstream=\"b\",le=\"0.25\"} 0\n"
                   "moongate_upstream_latency_seconds_bucket{upstream=\"b\",le=\"0.5\"} 0\n"
                   "moongate_upstream_latency_seconds_bucket{upstream=\"b\",le=\"1\"} 1\n"
                   "moongate_upstream_latency_seconds_bucket{upstream=\"b\",le=\"2.5\"} 1\n"
                   "moongate_upstream_latency_seconds_bucket{upstream=\"b\",le=\"5\"} 1\n"
                   "moongate_upstream_latency_seconds_bucket{upstream=\"b\",le=\"10\"} 1\n"
                   "moongate_upstream_latency_seconds_bucket{upstream=\"b\",le=\"+Inf\"} 1\n"
                   "moongate_upstream_latency_seconds_sum{upstream=\"b\"} 0.75\n"
                   "moongate_upstream_latency_seconds_count{upstream=\"b\"} 1\n"
                   "# HELP moongate_active_connections Open client connections.\n"
                   "# TYPE moongate_active_connections gauge\n"
                   "moongate_active_connections 0\n"
                   "# HELP moongate_open_tunnels Upgraded connections (WebSocket) relaying"
                   " bytes.\n"
                   "# TYPE moongate_open_tunnels gauge\n"
                   "moongate_open_tunnels 0\n"
                   "# HELP moongate_upstream_idle_connections Idle keep-alive connections to"
                   " upstreams.\n"
                   "# TYPE moongate_upstream_idle_connections gauge\n"
                   "moongate_upstream_idle_connections{upstream=\"b\"} 0\n"
                   "# HELP moongate_workers Worker processes.\n"
                   "# TYPE moongate_workers gauge\n"
                   "moongate_workers 1\n");
    free(out);
    gw_metrics_free();
}

static void worker_r_200(void)
{
    gw_metrics_request(gw_metrics_route_slot("r"), 200);
    gw_metrics_active_connections(2);
}

static void worker_renamed(void)
{
    gw_metrics_request(gw_metrics_route_slot("r2"), 200);
    gw_metrics_request(gw_metrics_route_slot("keep"), 200);
}

static void test_reload_keeps_slots(void)
{
    CHECK_INT(gw_metrics_init(1), GW_OK);
    test_cfg_t t;
    const char *routes1[] = {"r", "keep"};
    const char *ups[] = {"u"};
    test_cfg(&t, routes1, 2, ups, 1);
    gw_metrics_register(&t.cfg);
    in_worker(0, worker_r_200);
    in_worker(0, worker_r_200);
    gw_metrics_request(0, 200); /* this process has no area: not counted */

    /* Reload: "r" renamed to "r2", "keep" kept but moved, a new first name. */
    const char *routes2[] = {"r2", "keep"};
    test_cfg(&t, routes2, 2, ups, 1);
    gw_metrics_register(&t.cfg);
    gw_metrics_register(&t.cfg); /* idempotent */
    CHECK_INT(gw_metrics_route_slot("r"), 0);
    CHECK_INT(gw_metrics_route_slot("keep"), 1);
    CHECK_INT(gw_metrics_route_slot("r2"), 2);
    in_worker(0, worker_renamed);

    char *out = NULL;
    gw_metrics_render(&out);
    CHECK_LINE(out, "moongate_requests_total{route=\"r\",status=\"200\"} 2");
    CHECK_LINE(out, "moongate_requests_total{route=\"r2\",status=\"200\"} 1");
    CHECK_LINE(out, "moongate_requests_total{route=\"keep\",status=\"200\"} 1");
    /* A restarted worker resets the gauges of its area, not the counters. */
    CHECK_LINE(out, "moongate_active_connections 0");
    free(out);

    gw_metrics_set_worker(0);
    gw_metrics_active_connections(5);
    gw_metrics_reset_gauges(0);
    gw_metrics_render(&out);
    CHECK_LINE(out, "moongate_active_connections 0");
    CHECK_LINE(out, "moongate_requests_total{route=\"r\",status=\"200\"} 2");
    free(out);
    gw_metrics_free();
}

static void test_label_escaping(void)
{
    CHECK_INT(gw_metrics_init(1), GW_OK);
    test_cfg_t t;
    const char *routes[] = {"a\"b\\c\nd"};
    const char *ups[] = {"u\\"};
    test_cfg(&t, routes, 1, ups, 1);
    gw_metrics_register(&t.cfg);
    gw_metrics_set_worker(0);
    gw_metrics_request(gw_metrics_route_slot("a\"b\\c\nd"), 200);
    gw_metrics_upstream_latency(gw_metrics_upstream_slot("u\\"), 1);
    char *out = NULL;
    gw_metrics_render(&out);
    CHECK_LINE(out, "moongate_requests_total{route=\"a\\\"b\\\\c\\nd\",status=\"200\"} 1");
    CHECK_LINE(out, "moongate_upstream_latency_seconds_count{upstream=\"u\\\\\"} 1");
    CHECK_LINE(out, "moongate_upstream_idle_connections{upstream=\"u\\\\\"} 0");
    free(out);
    gw_metrics_free();
}

static void test_other_slot(void)
{
    CHECK_INT(gw_metrics_init(1), GW_OK);
    enum { N = GW_METRICS_MAX_ROUTES + 10 };
    static char names[N][16];
    gw_route_conf_t *routes = gw_xcalloc(N, sizeof *routes);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "route-%d", i);
        routes[i].name = names[i];
    }
    char long_name[GW_METRICS_NAME_MAX + 1];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    gw_upstream_conf_t ups[2] = {{.name = long_name}, {.name = "other"}};
    gw_config_t cfg = {.routes = routes, .nroutes = N, .upstreams = ups, .nupstreams = 2};
    gw_log_level_t level = gw_log_level;
    gw_log_level = GW_LOG_ERROR; /* the warning about "other" is expected */
    gw_metrics_register(&cfg);
    gw_log_level = level;

    CHECK_INT(gw_metrics_route_slot("route-0"), 0);
    CHECK_INT(gw_metrics_route_slot("route-255"), 255);
    CHECK_INT(gw_metrics_route_slot("route-256"), GW_METRICS_ROUTE_OTHER);
    CHECK_INT(gw_metrics_upstream_slot(long_name), GW_METRICS_UPSTREAM_OTHER);
    CHECK_INT(gw_metrics_upstream_slot("other"), GW_METRICS_UPSTREAM_OTHER);

    gw_metrics_set_worker(0);
    gw_metrics_request(gw_metrics_route_slot("route-256"), 500);
    gw_metrics_request(gw_metrics_route_slot("route-265"), 500);
    gw_metrics_request(9999, 500); /* out of range: "other" */
    gw_metrics_upstream_latency(gw_metrics_upstream_slot(long_name), 0.01);
    gw_metrics_idle_connections(gw_metrics_upstream_slot("other"), 2);
    char *out = NULL;
    gw_metrics_render(&out);
    CHECK_LINE(out, "moongate_requests_total{route=\"other\",status=\"500\"} 3");
    CHECK_LINE(out, "moongate_upstream_latency_seconds_bucket{upstream=\"other\",le=\"0.01\"} 1");
    CHECK_LINE(out, "moongate_upstream_idle_connections{upstream=\"other\"} 2");
    free(out);
    free(routes);
    gw_metrics_free();
}

static void test_without_init(void)
{
    gw_metrics_set_worker(0);
    gw_metrics_request(0, 200);
    gw_metrics_active_connections(1);
    CHECK_INT(gw_metrics_route_slot("x"), GW_METRICS_ROUTE_OTHER);
    CHECK_INT(gw_metrics_init(0), GW_ERROR);
    char *out = NULL;
    size_t len = gw_metrics_render(&out);
    CHECK(len > 0);
    CHECK_LINE(out, "moongate_active_connections 0");
    CHECK(!strstr(out, "moongate_requests_total{"));
    free(out);
}

int main(void)
{
    static const gw_test_case_t cases[] = {
        GW_TEST(test_render_sums_workers), GW_TEST(test_exact_output),
        GW_TEST(test_reload_keeps_slots),  GW_TEST(test_label_escaping),
        GW_TEST(test_other_slot),          GW_TEST(test_without_init),
    };
    return GW_TEST_RUN(cases);
}
