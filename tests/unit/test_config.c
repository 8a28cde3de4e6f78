/* Unit tests for the config loader (core/gw_config.c, core/gw_config_node.c). */
#define _POSIX_C_SOURCE 200809L
#include "gw_config.h"
#include "gw_test.h"

#include <stdlib.h>
#include <unistd.h>

/* Load `text` as "t.yaml"; the caller frees the config and errs. */
static gw_config_t *load(const char *text, gw_config_errors_t *errs)
{
    return gw_config_load_string("t.yaml", text, strlen(text), errs);
}

static void print_errors(const gw_config_errors_t *errs)
{
    char buf[512];
    for (size_t i = 0; i < errs->count; i++) {
        gw_config_error_format(&errs->items[i], buf, sizeof buf);
        fprintf(stderr, "  error: %s\n", buf);
    }
}

/* Load `text`, expecting success; prints the errors otherwise. */
static gw_config_t *load_ok(const char *text)
{
    gw_config_errors_t errs = {0};
    gw_config_t *cfg = load(text, &errs);
    CHECK(cfg != NULL);
    CHECK_INT(errs.count, 0);
    print_errors(&errs);
    gw_config_errors_free(&errs);
    return cfg;
}

/* Load `text`, expecting exactly the `n` formatted errors in `want`, in order. */
static void check_errors(const char *text, const char *const *want, size_t n)
{
    gw_config_errors_t errs = {0};
    char buf[512];
    gw_config_t *cfg = load(text, &errs);
    CHECK(cfg == NULL);
    CHECK_INT(errs.count, n);
    for (size_t i = 0; i < n && i < errs.count; i++) {
        gw_config_error_format(&errs.items[i], buf, sizeof buf);
        CHECK_STR(buf, want[i]);
    }
    if (errs.count != n)
        print_errors(&errs);
    gw_config_free(cfg);
    gw_config_errors_free(&errs);
}

#define CHECK_ERRORS(text, ...)                                                                    \
    do {                                                                                           \
        static const char *const want_[] = {__VA_ARGS__};                                          \
        check_errors((text), want_, GW_ARRAY_LEN(want_));                                          \
    } while (0)

/* Write `text` to a new temporary file; returns its malloc'd path. */
static char *write_temp(const char *text)
{
    char *path = gw_xstrdup("/tmp/gw_test_config_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return path;
    size_t len = strlen(text);
    CHECK(write(fd, text, len) == (ssize_t)len);
    close(fd);
    return path;
}

static const char full_yaml[] =
    "listen:\n"                                                             /* 1 */
    "  - 0.0.0.0:8080\n"                                                    /* 2 */
    "  - { address: 127.0.0.1:8081, backlog: 1024 }\n"                      /* 3 */
    "  - \"[::1]:8082\"\n"                                                  /* 4 */
    "  - :8083\n"                                                           /* 5 */
    "  - 8084\n"                                                            /* 6 */
    "workers: 4\n"                                                          /* 7 */
    "status: { listen: 127.0.0.1:9145 }\n"                                  /* 8 */
    "admin: { listen: localhost:9180, token: \"s3cret\" }\n"                /* 9 */
    "redis: { url: \"redis://127.0.0.1:6379/0\" }\n"                        /* 10 */
    "limits: { max_header_size: 16k, max_uri_size: 4K, max_body_size: 10m," /* 11 */
    " max_headers: 50 }\n"
    "timeouts: { client_header: 500ms, client_body: 1.5m, keepalive: 1h," /* 12 */
    " send: 2, drain: 0.25 }\n"
    "access_log: logs/access.log\n"                                            /* 13 */
    "error_log: { path: logs/error.log, level: debug }\n"                      /* 14 */
    "pid_file: /run/moongate.pid\n"                                            /* 15 */
    "upstreams:\n"                                                             /* 16 */
    "  users:\n"                                                               /* 17 */
    "    targets: [ { address: 127.0.0.1:9001, weight: 2 }, 127.0.0.1:9002,\n" /* 18 */
    "               \"[::1]:9003\", backend.internal:80 ]\n"                   /* 19 */
    "    balance: hash\n"                                                      /* 20 */
    "    hash: { on: header, name: X-User }\n"                                 /* 21 */
    "    keepalive: { max_idle: 32, idle_timeout: 30s }\n"                     /* 22 */
    "    timeouts: { connect: 2s, send: 30s, read: 31s }\n"                    /* 23 */
    "    retries: 3\n"                                                         /* 24 */
    "    health:\n"                                                            /* 25 */
    "      active: { path: /healthz, interval: 10s, timeout: 1s,"              /* 26 */
    " healthy: 4, unhealthy: 5 }\n"
    "      passive: { failures: 3, down_for: 20s }\n"       /* 27 */
    "  orders:\n"                                           /* 28 */
    "    targets: [ 10.0.0.1:80 ]\n"                        /* 29 */
    "routes:\n"                                             /* 30 */
    "  - name: users\n"                                     /* 31 */
    "    hosts: [ API.Example.com, \"*.example.org\" ]\n"   /* 32 */
    "    paths: [ /users, \"=/exact\", \"~^/v[0-9]+/\" ]\n" /* 33 */
    "    methods: [ get, POST ]\n"                          /* 34 */
    "    headers: { X-Version: \"2\", X-Num: 3 }\n"         /* 35 */
    "    upstream: users\n"                                 /* 36 */
    "    strip_path: yes\n"                                 /* 37 */
    "    preserve_host: false\n"                            /* 38 */
    "    host: internal.example\n"                          /* 39 */
    "    max_body_size: 1g\n"                               /* 40 */
    "  - upstream: orders\n";                               /* 41 */

static void test_full_file_top_level(void)
{
    gw_config_t *cfg = load_ok(full_yaml);
    if (!cfg)
        return;
    CHECK_STR(cfg->file, "t.yaml");
    CHECK_INT(cfg->nlistens, 5);
    if (cfg->nlistens == 5) {
        CHECK_STR(cfg->listens[0].addr.host, "0.0.0.0");
        CHECK_INT(cfg->listens[0].addr.port, 8080);
        CHECK_INT(cfg->listens[0].addr.line, 2);
        CHECK_INT(cfg->listens[0].backlog, 511);
        CHECK_STR(cfg->listens[1].addr.host, "127.0.0.1");
        CHECK_INT(cfg->listens[1].addr.port, 8081);
        CHECK_INT(cfg->listens[1].backlog, 1024);
        CHECK_STR(cfg->listens[2].addr.host, "::1");
        CHECK_INT(cfg->listens[2].addr.port, 8082);
        CHECK_STR(cfg->listens[3].addr.host, "0.0.0.0");
        CHECK_INT(cfg->listens[3].addr.port, 8083);
        CHECK_STR(cfg->listens[4].addr.host, "0.0.0.0");
        CHECK_INT(cfg->listens[4].addr.port, 8084);
        CHECK_INT(cfg->listens[4].addr.line, 6);
    }
    CHECK_INT(cfg->workers, 4);
    CHECK(cfg->status_enabled);
    CHECK_STR(cfg->status_listen.host, "127.0.0.1");
    CHECK_INT(cfg->status_listen.port, 9145);
    CHECK(cfg->admin_enabled);
    CHECK_STR(cfg->admin_listen.host, "127.0.0.1");
    CHECK_INT(cfg->admin_listen.port, 9180);
    CHECK_STR(cfg->admin_token, "s3cret");
    CHECK_STR(cfg->redis_url, "redis://127.0.0.1:6379/0");
    CHECK_INT(cfg->limits.max_header_size, 16384);
    CHECK_INT(cfg->limits.max_uri_size, 4096);
    CHECK_INT(cfg->limits.max_body_size, 10485760);
    CHECK_INT(cfg->limits.max_headers, 50);
    CHECK(cfg->timeouts.client_header == 0.5);
    CHECK(cfg->timeouts.client_body == 90);
    CHECK(cfg->timeouts.keepalive == 3600);
    CHECK(cfg->timeouts.send == 2);
    CHECK(cfg->timeouts.drain == 0.25);
    CHECK(cfg->access_log.enabled);
    CHECK_STR(cfg->access_log.path, "logs/access.log");
    CHECK_STR(cfg->error_log.path, "logs/error.log");
    CHECK_INT(cfg->error_log.level, GW_LOG_DEBUG);
    CHECK_STR(cfg->pid_file, "/run/moongate.pid");
    gw_config_free(cfg);
}

static void test_full_file_upstreams(void)
{
    gw_config_t *cfg = load_ok(full_yaml);
    if (!cfg)
        return;
    CHECK_INT(cfg->nupstreams, 2);
    const gw_upstream_conf_t *u = gw_config_upstream(cfg, "users");
    CHECK(u == &cfg->upstreams[0]);
    CHECK(gw_config_upstream(cfg, "orders") == &cfg->upstreams[1]);
    CHECK(gw_config_upstream(cfg, "nope") == NULL);
    if (!u)
        goto done;
    CHECK_INT(u->line, 17);
    CHECK_INT(u->ntargets, 4);
    if (u->ntargets == 4) {
        CHECK_STR(u->targets[0].host, "127.0.0.1");
        CHECK_INT(u->targets[0].port, 9001);
        CHECK_INT(u->targets[0].weight, 2);
        CHECK_INT(u->targets[0].line, 18);
        CHECK_STR(u->targets[1].host, "127.0.0.1");
        CHECK_INT(u->targets[1].port, 9002);
        CHECK_INT(u->targets[1].weight, 1);
        CHECK_STR(u->targets[2].host, "::1");
        CHECK_INT(u->targets[2].port, 9003);
        CHECK_INT(u->targets[2].line, 19);
        CHECK_STR(u->targets[3].host, "backend.internal");
        CHECK_INT(u->targets[3].port, 80);
    }
    CHECK_INT(u->balance, GW_BALANCE_HASH);
    CHECK_INT(u->hash_on, GW_HASH_ON_HEADER);
    CHECK_STR(u->hash_name, "X-User");
    CHECK_INT(u->max_idle, 32);
    CHECK(u->idle_timeout == 30);
    CHECK(u->connect_timeout == 2);
    CHECK(u->send_timeout == 30);
    CHECK(u->read_timeout == 31);
    CHECK_INT(u->retries, 3);
    CHECK(u->active.enabled);
    CHECK_STR(u->active.path, "/healthz");
    CHECK(u->active.interval == 10);
    CHECK(u->active.timeout == 1);
    CHECK_INT(u->active.healthy, 4);
    CHECK_INT(u->active.unhealthy, 5);
    CHECK_INT(u->passive.failures, 3);
    CHECK(u->passive.down_for == 20);
done:
    gw_config_free(cfg);
}

static void test_full_file_routes(void)
{
    gw_config_t *cfg = load_ok(full_yaml);
    if (!cfg)
        return;
    CHECK_INT(cfg->nroutes, 2);
    if (cfg->nroutes != 2)
        goto done;
    const gw_route_conf_t *r = &cfg->routes[0];
    CHECK_STR(r->name, "users");
    CHECK_INT(r->index, 0);
    CHECK_INT(r->line, 31);
    CHECK_INT(r->nhosts, 2);
    CHECK_STR(r->hosts[0], "api.example.com");
    CHECK_STR(r->hosts[1], "*.example.org");
    CHECK_INT(r->npaths, 3);
    CHECK_INT(r->paths[0].kind, GW_PATH_PREFIX);
    CHECK_STR(r->paths[0].pattern, "/users");
    CHECK_INT(r->paths[1].kind, GW_PATH_EXACT);
    CHECK_STR(r->paths[1].pattern, "/exact");
    CHECK_INT(r->paths[2].kind, GW_PATH_REGEX);
    CHECK_STR(r->paths[2].pattern, "^/v[0-9]+/");
    CHECK_INT(r->nmethods, 2);
    CHECK_STR(r->methods[0], "GET");
    CHECK_STR(r->methods[1], "POST");
    CHECK_INT(r->nheaders, 2);
    CHECK_STR(r->headers[0].name, "X-Version");
    CHECK_STR(r->headers[0].value, "2");
    CHECK_STR(r->headers[1].name, "X-Num");
    CHECK_STR(r->headers[1].value, "3");
    CHECK_STR(r->upstream, "users");
    CHECK_INT(r->upstream_index, 0);
    CHECK(r->strip_path);
    CHECK(!r->preserve_host);
    CHECK_STR(r->host_header, "internal.example");
    CHECK_INT(r->max_body_size, 1073741824);

    r = &cfg->routes[1];
    CHECK_STR(r->name, "route-1");
    CHECK_INT(r->index, 1);
    CHECK_INT(r->line, 41);
    CHECK_INT(r->nhosts + r->npaths + r->nmethods + r->nheaders, 0);
    CHECK_STR(r->upstream, "orders");
    CHECK_INT(r->upstream_index, 1);
    CHECK(!r->strip_path);
    CHECK(r->preserve_host);
    CHECK(r->host_header == NULL);
    CHECK_INT(r->max_body_size, -1);
done:
    gw_config_free(cfg);
}

static void test_defaults(void)
{
    gw_config_t *cfg = load_ok("upstreams: { u: { targets: [ 127.0.0.1:1 ] } }\n"
                               "routes: [ { upstream: u } ]\n");
    if (!cfg)
        return;
    CHECK_INT(cfg->nlistens, 1);
    CHECK_STR(cfg->listens[0].addr.host, "0.0.0.0");
    CHECK_INT(cfg->listens[0].addr.port, 8080);
    CHECK_INT(cfg->listens[0].backlog, 511);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK_INT(cfg->workers, cores < 1 ? 1 : cores > 64 ? 64 : cores);
    CHECK(!cfg->status_enabled);
    CHECK(!cfg->admin_enabled);
    CHECK(cfg->admin_token == NULL);
    CHECK(cfg->redis_url == NULL);
    CHECK_INT(cfg->limits.max_header_size, 16384);
    CHECK_INT(cfg->limits.max_uri_size, 8192);
    CHECK_INT(cfg->limits.max_body_size, 10485760);
    CHECK_INT(cfg->limits.max_headers, 100);
    CHECK(cfg->timeouts.client_header == 60);
    CHECK(cfg->timeouts.client_body == 60);
    CHECK(cfg->timeouts.keepalive == 75);
    CHECK(cfg->timeouts.send == 60);
    CHECK(cfg->timeouts.drain == 30);
    CHECK(cfg->access_log.enabled);
    CHECK_STR(cfg->access_log.path, "stdout");
    CHECK_STR(cfg->error_log.path, "stderr");
    CHECK_INT(cfg->error_log.level, GW_LOG_INFO);
    CHECK_STR(cfg->pid_file, "logs/moongate.pid");

    const gw_upstream_conf_t *u = &cfg->upstreams[0];
    CHECK_INT(u->targets[0].weight, 1);
    CHECK_INT(u->balance, GW_BALANCE_ROUND_ROBIN);
    CHECK_INT(u->hash_on, GW_HASH_ON_IP);
    CHECK(u->hash_name == NULL);
    CHECK_INT(u->max_idle, 64);
    CHECK(u->idle_timeout == 60);
    CHECK(u->connect_timeout == 5);
    CHECK(u->send_timeout == 60);
    CHECK(u->read_timeout == 60);
    CHECK_INT(u->retries, 1);
    CHECK(!u->active.enabled);
    CHECK_STR(u->active.path, "/health");
    CHECK(u->active.interval == 5);
    CHECK(u->active.timeout == 2);
    CHECK_INT(u->active.healthy, 2);
    CHECK_INT(u->active.unhealthy, 3);
    CHECK_INT(u->passive.failures, 0);
    CHECK(u->passive.down_for == 10);
    CHECK_STR(cfg->routes[0].name, "route-0");
    gw_config_free(cfg);

    cfg = load_ok("");
    if (cfg) {
        CHECK_INT(cfg->nlistens, 1);
        CHECK_INT(cfg->nroutes + cfg->nupstreams, 0);
        gw_config_free(cfg);
    }
}

static void test_scalar_forms(void)
{
    gw_config_t *cfg = load_ok("listen: 9000\n"
                               "workers: auto\n"
                               "access_log: off\n"
                               "pid_file: false\n"
                               "error_log: /var/log/moongate.log\n"
                               "admin: { listen: \"[::]:9180\" }\n"
                               "upstreams:\n"
                               "  u:\n"
                               "    targets: [ localhost:9001 ]\n"
                               "    hash: { on: cookie, name: sid }\n"
                               "    health: { active: {} }\n"
                               "routes:\n"
                               "  - { upstream: u, hosts: Example.COM, methods: delete,"
                               " paths: /a, strip_path: on, preserve_host: NO }\n");
    if (!cfg)
        return;
    CHECK_INT(cfg->nlistens, 1);
    CHECK_STR(cfg->listens[0].addr.host, "0.0.0.0");
    CHECK_INT(cfg->listens[0].addr.port, 9000);
    CHECK(cfg->workers >= 1 && cfg->workers <= 64);
    CHECK(!cfg->access_log.enabled);
    CHECK(cfg->pid_file == NULL);
    CHECK_STR(cfg->error_log.path, "/var/log/moongate.log");
    CHECK_INT(cfg->error_log.level, GW_LOG_INFO);
    CHECK_STR(cfg->admin_listen.host, "::");
    CHECK(cfg->admin_token == NULL);
    CHECK_STR(cfg->upstreams[0].targets[0].host, "localhost");
    CHECK_INT(cfg->upstreams[0].hash_on, GW_HASH_ON_COOKIE);
    CHECK_STR(cfg->upstreams[0].hash_name, "sid");
    CHECK(cfg->upstreams[0].active.enabled);
    CHECK_STR(cfg->upstreams[0].active.path, "/health");
    const gw_route_conf_t *r = &cfg->routes[0];
    CHECK_STR(r->hosts[0], "example.com");
    CHECK_STR(r->methods[0], "DELETE");
    CHECK_STR(r->paths[0].pattern, "/a");
    CHECK(r->strip_path);
    CHECK(!r->preserve_host);
    gw_config_free(cfg);

    cfg = load_ok("access_log: \"stderr\"\nworkers: 64\n");
    if (cfg) {
        CHECK(cfg->access_log.enabled);
        CHECK_STR(cfg->access_log.path, "stderr");
        CHECK_INT(cfg->workers, 64);
        gw_config_free(cfg);
    }
    cfg = load_ok("workers: 0\naccess_log: on\n");
    if (cfg) {
        CHECK(cfg->workers >= 1 && cfg->workers <= 64);
        CHECK(cfg->access_log.enabled);
        CHECK_STR(cfg->access_log.path, "stdout");
        gw_config_free(cfg);
    }
}

static void test_json(void)
{
    static const char json[] =
        "{\n"
        "\t\"listen\": [\"127.0.0.1:8080\", {\"address\": \":8443\", \"backlog\": 64}],\n"
        "\t\"workers\": 2,\n"
        "\t\"limits\": {\"max_body_size\": 0},\n"
        "\t\"upstreams\": {\n"
        "\t\t\"api\": {\"targets\": [{\"address\": \"127.0.0.1:9001\", \"weight\": 3}],\n"
        "\t\t        \"balance\": \"least_conn\"}\n"
        "\t},\n"
        "\t\"routes\": [{\"name\": \"api\", \"paths\": [\"/api\"], \"upstream\": \"api\",\n"
        "\t             \"strip_path\": true, \"headers\": {\"X-V\": \"1\"}}]\n"
        "}\n";
    gw_config_t *cfg = load_ok(json);
    if (!cfg)
        return;
    CHECK_INT(cfg->nlistens, 2);
    CHECK_STR(cfg->listens[0].addr.host, "127.0.0.1");
    CHECK_INT(cfg->listens[1].addr.port, 8443);
    CHECK_INT(cfg->listens[1].backlog, 64);
    CHECK_INT(cfg->workers, 2);
    CHECK_INT(cfg->limits.max_body_size, 0);
    CHECK_INT(cfg->upstreams[0].balance, GW_BALANCE_LEAST_CONN);
    CHECK_INT(cfg->upstreams[0].targets[0].weight, 3);
    CHECK_INT(cfg->upstreams[0].line, 6);
    CHECK_STR(cfg->routes[0].name, "api");
    CHECK_INT(cfg->routes[0].line, 9);
    CHECK(cfg->routes[0].strip_path);
    CHECK_STR(cfg->routes[0].headers[0].value, "1");
    gw_config_free(cfg);

    CHECK_ERRORS("{\n  \"workers\": \"two\",\n  \"routes\": {}\n}\n",
                 "t.yaml:2: workers: expected \"auto\" or an integer between 1 and 64, got \"two\"",
                 "t.yaml:3: routes: expected a list of routes, got a map");
    CHECK_ERRORS("{\n \"listen\": 8080,\n \"workers\": 2\n \"routes\": []\n}\n",
                 "t.yaml:4: syntax error: did not find expected ',' or '}'"
                 " (while parsing a flow mapping)");
}

static void test_env_substitution(void)
{
    setenv("GW_TEST_PORT", "9090", 1);
    setenv("GW_TEST_EMPTY", "", 1);
    unsetenv("GW_TEST_UNSET");
    gw_config_t *cfg = load_ok("listen: 127.0.0.1:${GW_TEST_PORT}\n"
                               "workers: ${GW_TEST_UNSET:-3}\n"
                               "admin: { listen: \":${GW_TEST_PORT}\","
                               " token: \"${GW_TEST_EMPTY:-fallback}\" }\n"
                               "error_log: \"${GW_TEST_EMPTY}/x-${GW_TEST_PORT}$HOME.log\"\n"
                               "pid_file: ${GW_TEST_UNSET:-}run/${GW_TEST_UNSET:-a b}.pid\n");
    if (!cfg)
        return;
    CHECK_INT(cfg->listens[0].addr.port, 9090);
    CHECK_INT(cfg->workers, 3);
    CHECK_INT(cfg->admin_listen.port, 9090);
    CHECK_STR(cfg->admin_token, "fallback");
    CHECK_STR(cfg->error_log.path, "/x-9090$HOME.log");
    CHECK_STR(cfg->pid_file, "run/a b.pid");
    gw_config_free(cfg);

    /* An unset variable is reported once; the value is not decoded again. */
    CHECK_ERRORS("workers: ${GW_TEST_UNSET}\n"
                 "admin:\n"
                 "  listen: \":${GW_TEST_PORT}\"\n"
                 "  token: \"${GW_TEST_UNSET}-${GW_TEST_UNSET_TOO}\"\n"
                 "pid_file: ${1BAD}\n"
                 "access_log: \"${GW_TEST_PORT\"\n",
                 "t.yaml:1: workers: environment variable \"GW_TEST_UNSET\" is not set",
                 "t.yaml:4: admin.token: environment variable \"GW_TEST_UNSET\" is not set",
                 "t.yaml:4: admin.token: environment variable \"GW_TEST_UNSET_TOO\" is not set",
                 "t.yaml:5: pid_file: invalid variable reference \"${1BAD}\"",
                 "t.yaml:6: access_log: unterminated \"${\" (expected ${VAR} or ${VAR:-default})");
    unsetenv("GW_TEST_PORT");
    unsetenv("GW_TEST_EMPTY");
}

static void test_many_errors(void)
{
    CHECK_ERRORS("listen: 0.0.0.0:99999\n"      /* 1 */
                 "workers: ten\n"               /* 2 */
                 "upstreams:\n"                 /* 3 */
                 "  users:\n"                   /* 4 */
                 "    targets: [ 127.0.0.1 ]\n" /* 5 */
                 "    balance: random\n"        /* 6 */
                 "    retries: ten\n"           /* 7 */
                 "routes:\n"                    /* 8 */
                 "  - upstream: users\n"        /* 9 */
                 "    methods: [ \"GE T\" ]\n"  /* 10 */
                 "  - name: second\n"           /* 11 */
                 "    upstream: nope\n"         /* 12 */
                 "    paths: [ users ]\n"       /* 13 */
                 "  - name: third\n"            /* 14 */
                 "    timeout: 5s\n",           /* 15 */
                 "t.yaml:1: listen: expected port between 1 and 65535, got \"0.0.0.0:99999\"",
                 "t.yaml:2: workers: expected \"auto\" or an integer between 1 and 64,"
                 " got \"ten\"",
                 "t.yaml:5: upstreams.users.targets[0]: expected address \"host:port\","
                 " got \"127.0.0.1\"",
                 "t.yaml:6: upstreams.users.balance: expected one of round_robin, least_conn,"
                 " hash, ewma, got \"random\"",
                 "t.yaml:7: upstreams.users.retries: expected integer, got \"ten\"",
                 "t.yaml:10: routes[0].methods[0]: expected HTTP method (a token such as GET),"
                 " got \"GE T\"",
                 "t.yaml:12: routes[1].upstream: upstream \"nope\" is not defined",
                 "t.yaml:13: routes[1].paths[0]: expected path starting with \"/\", \"=/\""
                 " or \"~\", got \"users\"",
                 "t.yaml:14: routes[2].upstream: required field missing",
                 "t.yaml:15: routes[2]: unknown field \"timeout\"");
}

static void test_unknown_fields(void)
{
    CHECK_ERRORS("listn: 8080\n"
                 "limits: { max_body: 1m }\n"
                 "upstreams:\n"
                 "  u:\n"
                 "    targets: [ { address: 127.0.0.1:1, wieght: 2 } ]\n"
                 "    health: { active: { path: /h, intervl: 1s } }\n"
                 "routes:\n"
                 "  - upstream: u\n"
                 "    upstream: u\n"
                 "    [a]: b\n",
                 "t.yaml:1: unknown field \"listn\"",
                 "t.yaml:2: limits: unknown field \"max_body\"",
                 "t.yaml:5: upstreams.u.targets[0]: unknown field \"wieght\"",
                 "t.yaml:6: upstreams.u.health.active: unknown field \"intervl\"",
                 "t.yaml:9: routes[0]: duplicate field \"upstream\" (first at line 8)",
                 "t.yaml:10: routes[0]: expected a string key, got a list");
}

static void test_bad_durations_and_sizes(void)
{
    CHECK_ERRORS("timeouts:\n"
                 "  client_header: 5x\n"
                 "  client_body: -1s\n"
                 "  keepalive: 1.s\n"
                 "  send: 0\n"
                 "  drain: [ 1 ]\n"
                 "limits:\n"
                 "  max_header_size: 16kb\n"
                 "  max_body_size: -5\n"
                 "  max_uri_size: 0\n"
                 "  max_headers: 1.5\n"
                 "routes: [ { upstream: u, max_body_size: 99999999999g } ]\n"
                 "upstreams: { u: { targets: [ a:1 ], timeouts: { read: 1.5 hours } } }\n",
                 "t.yaml:2: timeouts.client_header: expected duration (e.g. 500ms, 2s, 1.5m),"
                 " got \"5x\"",
                 "t.yaml:3: timeouts.client_body: expected duration (e.g. 500ms, 2s, 1.5m),"
                 " got \"-1s\"",
                 "t.yaml:4: timeouts.keepalive: expected duration (e.g. 500ms, 2s, 1.5m),"
                 " got \"1.s\"",
                 "t.yaml:5: timeouts.send: expected duration greater than 0, got \"0\"",
                 "t.yaml:6: timeouts.drain: expected duration (e.g. 500ms, 2s, 1.5m),"
                 " got a list",
                 "t.yaml:8: limits.max_header_size: expected size (e.g. 1024, 16k, 10m, 1g),"
                 " got \"16kb\"",
                 "t.yaml:9: limits.max_body_size: expected size (e.g. 1024, 16k, 10m, 1g),"
                 " got \"-5\"",
                 "t.yaml:10: limits.max_uri_size: expected size greater than 0, got \"0\"",
                 "t.yaml:11: limits.max_headers: expected integer, got \"1.5\"",
                 "t.yaml:12: routes[0].max_body_size: expected size (e.g. 1024, 16k, 10m, 1g),"
                 " got \"99999999999g\"",
                 "t.yaml:13: upstreams.u.timeouts.read: expected duration (e.g. 500ms, 2s,"
                 " 1.5m), got \"1.5 hours\"");
}

static void test_bad_addresses(void)
{
    CHECK_ERRORS("listen:\n"
                 "  - example.com:80\n"
                 "  - 127.0.0.1:0\n"
                 "  - \"::1:8080\"\n"
                 "  - 127.0.0.1\n"
                 "  - \"[::1]:65536\"\n"
                 "  - { address: 127.0.0.1:80, backlog: 0 }\n"
                 "  - { backlog: 5 }\n"
                 "  - 0.0.0.0:80\n"
                 "  - :80\n"
                 "status: {}\n"
                 "upstreams:\n"
                 "  u:\n"
                 "    targets: [ \"bad host:80\", \"h:abc\", \":80\", { weight: 2000 } ]\n",
                 "t.yaml:2: listen[0]: expected numeric IP address or localhost,"
                 " got \"example.com:80\"",
                 "t.yaml:3: listen[1]: expected port between 1 and 65535, got \"127.0.0.1:0\"",
                 "t.yaml:4: listen[2]: expected address \"host:port\" with IPv6 in brackets"
                 " (\"[::1]:80\"), got \"::1:8080\"",
                 "t.yaml:5: listen[3]: expected address \"host:port\", got \"127.0.0.1\"",
                 "t.yaml:6: listen[4]: expected port between 1 and 65535, got \"[::1]:65536\"",
                 "t.yaml:7: listen[5].backlog: expected integer between 1 and 65535, got \"0\"",
                 "t.yaml:8: listen[6].address: required field missing",
                 "t.yaml:10: listen[8]: duplicate listen address 0.0.0.0:80 (first at line 9)",
                 "t.yaml:11: status.listen: required field missing",
                 "t.yaml:14: upstreams.u.targets[0]: expected host name or IP address,"
                 " got \"bad host:80\"",
                 "t.yaml:14: upstreams.u.targets[1]: expected port between 1 and 65535,"
                 " got \"h:abc\"",
                 "t.yaml:14: upstreams.u.targets[2]: expected address \"host:port\", got \":80\"",
                 "t.yaml:14: upstreams.u.targets[3].address: required field missing",
                 "t.yaml:14: upstreams.u.targets[3].weight: expected integer between 1 and 1000,"
                 " got \"2000\"");
}

static void test_route_rules(void)
{
    CHECK_ERRORS("upstreams: { u: { targets: [ a:1 ] } }\n"
                 "routes:\n"
                 "  - { name: a, upstream: u }\n"
                 "  - { name: b, upstream: u }\n"
                 "  - name: a\n"
                 "    upstream: u\n"
                 "    hosts: [ \"api.*.com\", \"*\", \"a b\" ]\n"
                 "    paths: [ \"~\", \"=x\" ]\n"
                 "    headers: { \"X Y\": 1, X-Z: ~, X-W: [ 1 ] }\n"
                 "    strip_path: maybe\n"
                 "    host: \"\"\n"
                 "  - { upstream: u, name: route-4 }\n"
                 "  - upstream: u\n",
                 "t.yaml:5: routes[2].name: duplicate route name \"a\" (first at line 3)",
                 "t.yaml:7: routes[2].hosts[0]: expected host name (\"api.example.com\" or"
                 " \"*.example.org\"), got \"api.*.com\"",
                 "t.yaml:7: routes[2].hosts[1]: expected host name (\"api.example.com\" or"
                 " \"*.example.org\"), got \"*\"",
                 "t.yaml:7: routes[2].hosts[2]: expected host name (\"api.example.com\" or"
                 " \"*.example.org\"), got \"a b\"",
                 "t.yaml:8: routes[2].paths[0]: expected path starting with \"/\", \"=/\" or"
                 " \"~\", got \"~\"",
                 "t.yaml:8: routes[2].paths[1]: expected path starting with \"/\", \"=/\" or"
                 " \"~\", got \"=x\"",
                 "t.yaml:9: routes[2].headers.X Y: invalid header name \"X Y\"",
                 "t.yaml:9: routes[2].headers.X-Z: expected string, got null",
                 "t.yaml:9: routes[2].headers.X-W: expected string, got a list",
                 "t.yaml:10: routes[2].strip_path: expected boolean, got \"maybe\"",
                 "t.yaml:11: routes[2].host: expected non-empty string, got \"\"",
                 "t.yaml:13: routes[4].name: duplicate route name \"route-4\" (first at line 12)");
}

static void test_route_websocket(void)
{
    gw_config_t *cfg =
        load_ok("upstreams: { u: { targets: [ a:1 ] } }\n"
                "routes:\n"
                "  - { name: off, upstream: u }\n"
                "  - { name: on, upstream: u, websocket: true }\n"
                "  - { name: tuned, upstream: u, websocket: { idle_timeout: 90s } }\n"
                "  - { name: no, upstream: u, websocket: false }\n");
    if (cfg) {
        CHECK(!cfg->routes[0].websocket);
        CHECK(cfg->routes[0].websocket_idle == 300);
        CHECK(cfg->routes[1].websocket);
        CHECK(cfg->routes[1].websocket_idle == 300);
        CHECK(cfg->routes[2].websocket);
        CHECK(cfg->routes[2].websocket_idle == 90);
        CHECK(!cfg->routes[3].websocket);
    }
    gw_config_free(cfg);
    CHECK_ERRORS("upstreams: { u: { targets: [ a:1 ] } }\n"
                 "routes:\n"
                 "  - { upstream: u, websocket: sometimes }\n"
                 "  - upstream: u\n"
                 "    websocket: { idle_timeout: 0s, ping: 5s }\n"
                 "  - { upstream: u, websocket: [ true ] }\n",
                 "t.yaml:3: routes[0].websocket: expected boolean, got \"sometimes\"",
                 "t.yaml:5: routes[1].websocket: unknown field \"ping\"",
                 "t.yaml:5: routes[1].websocket.idle_timeout: expected duration greater than 0,"
                 " got \"0s\"",
                 "t.yaml:6: routes[2].websocket: expected boolean, got a list");
}

static void test_upstream_rules(void)
{
    CHECK_ERRORS("upstreams:\n"
                 "  a: { targets: [] }\n"
                 "  b: { targets: [ x:1 ], hash: { on: header } }\n"
                 "  c: { targets: [ x:1 ], hash: { name: X } }\n"
                 "  d: { targets: [ x:1 ], hash: { on: body } }\n"
                 "  e:\n"
                 "  a: { targets: [ x:1 ] }\n"
                 "  f: { targets: [ x:1 ], health: { active: { path: health } } }\n"
                 "  g: [ x:1 ]\n"
                 "redis: { url: \"http://x\" }\n"
                 "error_log: { level: verbose }\n",
                 "t.yaml:2: upstreams.a.targets: expected a non-empty list of targets,"
                 " got a list",
                 "t.yaml:3: upstreams.b.hash.name: required field missing",
                 "t.yaml:4: upstreams.c.hash.name: not used with on: ip",
                 "t.yaml:5: upstreams.d.hash.on: expected one of ip, header, cookie,"
                 " got \"body\"",
                 "t.yaml:6: upstreams.e.targets: required field missing",
                 "t.yaml:7: upstreams: duplicate upstream \"a\" (first at line 2)",
                 "t.yaml:8: upstreams.f.health.active.path: must start with \"/\"",
                 "t.yaml:9: upstreams.g: expected a map, got a list",
                 "t.yaml:10: redis.url: expected URL starting with redis:// or unix://,"
                 " got \"http://x\"",
                 "t.yaml:11: error_log.level: expected one of error, warn, info, debug,"
                 " got \"verbose\"");
}

static void test_upstream_tls(void)
{
    gw_config_t *cfg = load_ok("upstreams:\n"
                               "  plain: { targets: [ x:1 ] }\n"
                               "  short: { targets: [ x:1 ], tls: true }\n"
                               "  off: { targets: [ x:1 ], tls: false }\n"
                               "  full:\n"
                               "    targets: [ x:1 ]\n"
                               "    tls: { verify: false, sni: api.internal, protocols: TLSv1.3,\n"
                               "           ciphers: ECDHE-ECDSA-AES128-GCM-SHA256 }\n");
    if (!cfg)
        return;
    const gw_upstream_tls_conf_t *plain = &gw_config_upstream(cfg, "plain")->tls;
    const gw_upstream_tls_conf_t *tls = &gw_config_upstream(cfg, "short")->tls;
    const gw_upstream_tls_conf_t *off = &gw_config_upstream(cfg, "off")->tls;
    const gw_upstream_tls_conf_t *full = &gw_config_upstream(cfg, "full")->tls;
    CHECK(!plain->enabled && plain->ctx == NULL);
    CHECK(!off->enabled && off->ctx == NULL);
    CHECK(tls->enabled && tls->verify && tls->ctx != NULL);
    CHECK_STR(tls->ca, GW_TLS_DEFAULT_CA);
    CHECK(tls->sni == NULL && tls->cert == NULL && tls->key == NULL);
    CHECK_INT(tls->protocols, GW_TLS_PROTO_TLS12 | GW_TLS_PROTO_TLS13);
    CHECK(full->enabled && !full->verify && full->ctx != NULL);
    CHECK_STR(full->sni, "api.internal");
    CHECK_INT(full->protocols, GW_TLS_PROTO_TLS13);
    gw_config_free(cfg);

    CHECK_ERRORS("upstreams:\n"
                 "  a: { targets: [ x:1 ], tls: maybe }\n"
                 "  b: { targets: [ x:1 ], tls: { key: /k.pem } }\n"
                 "  c: { targets: [ x:1 ], tls: { protocols: [ ] } }\n"
                 "  d: { targets: [ x:1 ], tls: { ca: /nonexistent/ca.pem } }\n"
                 "  e: { targets: [ x:1 ], tls: { verfy: false } }\n",
                 "t.yaml:2: upstreams.a.tls: expected true, false or a map, got \"maybe\"",
                 "t.yaml:3: upstreams.b.tls.cert: required with key",
                 "t.yaml:4: upstreams.c.tls.protocols: expected at least one of \"TLSv1.2\", "
                 "\"TLSv1.3\"",
                 "t.yaml:5: upstreams.d.tls.ca: cannot load CA file \"/nonexistent/ca.pem\": No "
                 "such file or directory",
                 "t.yaml:6: upstreams.e.tls: unknown field \"verfy\"");
}

static void test_syntax_errors(void)
{
    CHECK_ERRORS("listen: 8080\n"
                 "routes:\n"
                 "  - name: a\n"
                 "   upstream: b\n",
                 "t.yaml:4: syntax error: did not find expected '-' indicator"
                 " (while parsing a block collection)");
    CHECK_ERRORS("a: *missing\n", "t.yaml:1: syntax error: found undefined alias");
    CHECK_ERRORS("workers: 1\n---\nworkers: 2\n",
                 "t.yaml:3: only one document is allowed in a config file");
    CHECK_ERRORS("- 1\n", "t.yaml:1: expected a map, got a list");
}

static void test_aliases(void)
{
    /* Aliases are copies; a recursive alias or an alias bomb is refused. */
    gw_config_t *cfg = load_ok("upstreams:\n"
                               "  a: &up { targets: [ 127.0.0.1:1 ], retries: 2 }\n"
                               "  b: *up\n");
    if (cfg) {
        CHECK_INT(cfg->nupstreams, 2);
        CHECK_INT(cfg->upstreams[1].retries, 2);
        gw_config_free(cfg);
    }
    CHECK_ERRORS("x: &a [ *a ]\n",
                 "t.yaml:1: document is nested too deeply or expands to too many nodes");
    CHECK_ERRORS("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                 "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                 "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                 "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                 "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                 "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                 "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
                 "t.yaml:1: document is nested too deeply or expands to too many nodes");
}

static void test_load_file(void)
{
    char *path = write_temp("{\"listen\": \":7000\", \"routes\": []}\n");
    gw_config_errors_t errs = {0};
    gw_config_t *cfg = gw_config_load(path, &errs);
    CHECK(cfg != NULL);
    CHECK_INT(errs.count, 0);
    if (cfg) {
        CHECK_STR(cfg->file, path);
        CHECK_INT(cfg->listens[0].addr.port, 7000);
    }
    gw_config_free(cfg);
    unlink(path);
    free(path);

    path = write_temp("workers: 1\nrouters: []\n");
    cfg = gw_config_load(path, &errs);
    CHECK(cfg == NULL);
    CHECK_INT(errs.count, 1);
    if (errs.count == 1) {
        char want[256], got[256];
        snprintf(want, sizeof want, "%s:2: unknown field \"routers\"", path);
        gw_config_error_format(&errs.items[0], got, sizeof got);
        CHECK_STR(got, want);
        CHECK_STR(errs.items[0].file, path);
        CHECK_STR(errs.items[0].path, "");
    }
    gw_config_errors_free(&errs);
    CHECK(errs.items == NULL && errs.count == 0);
    unlink(path);
    free(path);
}

static void test_missing_file(void)
{
    gw_config_errors_t errs = {0};
    gw_config_t *cfg = gw_config_load("/nonexistent/moongate.yaml", &errs);
    char buf[256];
    CHECK(cfg == NULL);
    CHECK_INT(errs.count, 1);
    if (errs.count == 1) {
        gw_config_error_format(&errs.items[0], buf, sizeof buf);
        CHECK_STR(buf, "/nonexistent/moongate.yaml:0: cannot open: No such file or directory");
    }
    gw_config_errors_free(&errs);
}

static void test_error_format(void)
{
    gw_config_error_t e = {"conf/moongate.yaml", 14, "routes[2].upstream", "bad"};
    char buf[64];
    gw_config_error_format(&e, buf, sizeof buf);
    CHECK_STR(buf, "conf/moongate.yaml:14: routes[2].upstream: bad");
    e.path = "";
    gw_config_error_format(&e, buf, sizeof buf);
    CHECK_STR(buf, "conf/moongate.yaml:14: bad");
    gw_config_error_format(&e, buf, 8);
    CHECK_STR(buf, "conf/mo");

    /* Errors from several loads accumulate until freed. */
    gw_config_errors_t errs = {0};
    CHECK(load("workers: 0.5\n", &errs) == NULL);
    CHECK(load("bogus: 1\n", &errs) == NULL);
    CHECK_INT(errs.count, 2);
    gw_config_errors_free(&errs);
}

int main(void)
{
    static const gw_test_case_t cases[] = {
        GW_TEST(test_full_file_top_level),
        GW_TEST(test_full_file_upstreams),
        GW_TEST(test_full_file_routes),
        GW_TEST(test_defaults),
        GW_TEST(test_scalar_forms),
        GW_TEST(test_json),
        GW_TEST(test_env_substitution),
        GW_TEST(test_many_errors),
        GW_TEST(test_unknown_fields),
        GW_TEST(test_bad_durations_and_sizes),
        GW_TEST(test_bad_addresses),
        GW_TEST(test_route_rules),
        GW_TEST(test_route_websocket),
        GW_TEST(test_upstream_rules),
        GW_TEST(test_upstream_tls),
        GW_TEST(test_syntax_errors),
        GW_TEST(test_aliases),
        GW_TEST(test_load_file),
        GW_TEST(test_missing_file),
        GW_TEST(test_error_format),
    };
    return GW_TEST_RUN(cases);
}
