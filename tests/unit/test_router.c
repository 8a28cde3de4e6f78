/* Unit tests for gw_router.c: precedence, filters, strip length, errors. */
#include "gw_router.h"
#include "gw_test.h"

#include <stdlib.h>

/*
 * A route written compactly: paths carry their marker ("=/x", "~^/x", "/x"),
 * headers are name/value pairs. Lists end at the first NULL.
 */
typedef struct {
    const char *name;
    const char *hosts[4];
    const char *paths[4];
    const char *methods[4];
    const char *headers[4][2];
} rdef_t;

static char **dup_list(const char *const *src, size_t max, size_t *n)
{
    char **out = calloc(max, sizeof(char *));
    for (*n = 0; *n < max && src[*n]; (*n)++)
        out[*n] = gw_xstrdup(src[*n]);
    return out;
}

/* Build a config the way the loader would leave it, from rdef_t rows. */
static gw_config_t *make_config(const rdef_t *defs, size_t n)
{
    gw_config_t *cfg = calloc(1, sizeof(*cfg));
    cfg->routes = calloc(n ? n : 1, sizeof(gw_route_conf_t));
    cfg->nroutes = n;
    for (size_t i = 0; i < n; i++) {
        const rdef_t *d = &defs[i];
        gw_route_conf_t *rc = &cfg->routes[i];
        rc->name = d->name ? gw_xstrdup(d->name) : NULL;
        rc->index = (int)i;
        rc->hosts = dup_list(d->hosts, 4, &rc->nhosts);
        rc->methods = dup_list(d->methods, 4, &rc->nmethods);
        rc->paths = calloc(4, sizeof(gw_path_conf_t));
        for (; rc->npaths < 4 && d->paths[rc->npaths]; rc->npaths++) {
            const char *p = d->paths[rc->npaths];
            gw_path_conf_t *pc = &rc->paths[rc->npaths];
            pc->kind = p[0] == '=' ? GW_PATH_EXACT : p[0] == '~' ? GW_PATH_REGEX : GW_PATH_PREFIX;
            pc->pattern = gw_xstrdup(pc->kind == GW_PATH_PREFIX ? p : p + 1);
        }
        rc->headers = calloc(4, sizeof(gw_header_match_t));
        for (; rc->nheaders < 4 && d->headers[rc->nheaders][0]; rc->nheaders++) {
            rc->headers[rc->nheaders].name = gw_xstrdup(d->headers[rc->nheaders][0]);
            rc->headers[rc->nheaders].value = gw_xstrdup(d->headers[rc->nheaders][1]);
        }
        rc->max_body_size = -1;
        rc->preserve_host = true;
    }
    return cfg;
}

static void free_strings(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static void free_config(gw_config_t *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        gw_route_conf_t *rc = &cfg->routes[i];
        free(rc->name);
        free_strings(rc->hosts, rc->nhosts);
        free_strings(rc->methods, rc->nmethods);
        for (size_t k = 0; k < rc->npaths; k++)
            free(rc->paths[k].pattern);
        free(rc->paths);
        for (size_t k = 0; k < rc->nheaders; k++) {
            free(rc->headers[k].name);
            free(rc->headers[k].value);
        }
        free(rc->headers);
    }
    free(cfg->routes);
    free(cfg);
}

/* Request headers for the lookup callback: name/value pairs, NULL-terminated. */
static bool lookup_header(void *ud, gw_str_t name, gw_str_t *value)
{
    for (const char *const *h = ud; h && h[0]; h += 2) {
        if (gw_str_caseeq(name, (gw_str_t){h[0], strlen(h[0])})) {
            *value = (gw_str_t){h[1], strlen(h[1])};
            return true;
        }
    }
    return false;
}

static size_t last_strip;

/* The name of the route chosen for the request, or "(none)". */
static const char *route_hdr(const gw_router_t *r, const char *method, const char *host,
                             const char *path, const char *const *headers)
{
    gw_route_query_t q = {
        .method = {method, strlen(method)},
        .host = {host, strlen(host)},
        .path = {path, strlen(path)},
        .header = lookup_header,
        .header_ud = (void *)headers,
    };
    gw_route_match_t m = {NULL, 12345};
    int rc = gw_router_match(r, &q, &m);
    last_strip = m.strip_len;
    if (rc == GW_DECLINED) {
        CHECK(m.route == NULL);
        return "(none)";
    }
    CHECK_INT(rc, GW_OK);
    return m.route ? m.route->name : "(null route)";
}

static const char *route_for(const gw_router_t *r, const char *method, const char *host,
                             const char *path)
{
    return route_hdr(r, method, host, path, NULL);
}

/* Build a router from rows; the config is freed by finish(). */
static gw_router_t *build(const rdef_t *defs, size_t n, gw_config_t **cfg)
{
    char err[256];
    *cfg = make_config(defs, n);
    gw_router_t *r = gw_router_build(*cfg, err, sizeof(err));
    CHECK(r != NULL);
    if (!r)
        fprintf(stderr, "gw_router_build: %s\n", err);
    return r;
}

static void finish(gw_router_t *r, gw_config_t *cfg)
{
    gw_router_free(r);
    free_config(cfg);
}

#define BUILD(defs) build((defs), GW_ARRAY_LEN(defs), &cfg)

static void test_hosts(void)
{
    static const rdef_t defs[] = {
        {.name = "none", .paths = {"/"}},
        {.name = "wild", .hosts = {"*.example.org"}, .paths = {"/"}},
        {.name = "exact", .hosts = {"api.example.org", "api.example.net"}, .paths = {"/"}},
    };
    gw_config_t *cfg;
    gw_router_t *r = BUILD(defs);
    if (!r)
        return;
    CHECK_STR(route_for(r, "GET", "api.example.org", "/"), "exact");
    CHECK_STR(route_for(r, "GET", "API.Example.ORG", "/x"), "exact");
    CHECK_STR(route_for(r, "GET", "api.example.net", "/"), "exact");
    CHECK_STR(route_for(r, "GET", "api.example.org.", "/"), "exact");
    CHECK_STR(route_for(r, "GET", "x.example.org", "/"), "wild");
    CHECK_STR(route_for(r, "GET", "a.b.EXAMPLE.org", "/"), "wild");
    CHECK_STR(route_for(r, "GET", "example.org", "/"), "none");
    CHECK_STR(route_for(r, "GET", ".example.org", "/"), "none");
    CHECK_STR(route_for(r, "GET", "xexample.org", "/"), "none");
    CHECK_STR(route_for(r, "GET", "api.example.org.evil", "/"), "none");
    CHECK_STR(route_for(r, "GET", "other.com", "/"), "none");
    CHECK_STR(route_for(r, "GET", "", "/"), "none");
    finish(r, cfg);
}

static void test_hosts_required(void)
{
    static const rdef_t defs[] = {
        {.name = "wild", .hosts = {"*.example.org"}},
        {.name = "exact", .hosts = {"api.example.org"}},
    };
    gw_config_t *cfg;
    gw_router_t *r = BUILD(defs);
    if (!r)
        return;
    CHECK_STR(route_for(r, "GET", "api.example.org", "/any"), "exact");
    CHECK_STR(route_for(r, "GET", "b.example.org", "/any"), "wild");
    CHECK_STR(route_for(r, "GET", "", "/any"), "(none)");
    CHECK_STR(route_for(r, "GET", "example.org", "/any"), "(none)");
    finish(r, cfg);
}

static void test_longer_wildcard_wins(void)
{
    static const rdef_t defs[] = {
        {.name = "org", .hosts = {"*.example.org"}, .paths = {"/"}},
        {.name = "eu", .hosts = {"*.eu.example.org"}, .paths = {"/"}},
        {.name = "both", .hosts = {"*.org", "*.x.example.org"}, .paths = {"/"}},
    };
    gw_config_t *cfg;
    gw_router_t *r = BUILD(defs);
    if (!r)
        return;
    CHECK_STR(route_for(r, "GET", "a.eu.example.org", "/"), "eu");
    CHECK_STR(route_for(r, "GET", "a.us.example.org", "/"), "org");
    CHECK_STR(route_for(r, "GET", "eu.example.org", "/"), "org");
    /* A route scores with its best matching host. */
    CHECK_STR(route_for(r, "GET", "a.x.example.org", "/"), "both");
    CHECK_STR(route_for(r, "GET", "other.org", "/"), "both");
    finish(r, cfg);
}

static void test_host_beats_path(void)
{
    static const rdef_t defs[] = {
        {.name = "any-exact", .paths = {"=/users"}},
        {.name = "wild-prefix", .hosts = {"*.example.org"}, .paths = {"/"}},
        {.name = "host-prefix", .hosts = {"api.example.org"}, .paths = {"/"}},
    };
    gw_config_t *cfg;
    gw_router_t *r = BUILD(defs);
    if (!r)
        return;
    CHECK_STR(route_for(r, "GET", "api.example.org", "/users"), "host-prefix");
    CHECK_STR(route_for(r, "GET", "w.example.org", "/users"), "wild-prefix");
    CHECK_STR(route_for(r, "GET", "other.com", "/users"), "any-exact");
    CHECK_STR(route_for(r, "GET", "other.com", "/users/1"), "(none)");
    finish(r, cfg);
}

static void test_path_kinds(void)
{
    static const rdef_t defs[] = {
        {.name = "prefix", .paths = {"/api"}},
        {.name = "regex", .paths = {"~^/api/v[0-9]+/"}},
        {.name = "exact", .paths = {"=/api/v1/users"}},
        {.name = "anypath"},
    };
    gw_config_t *cfg;
    gw_router_t *r = BUILD(defs);
    if (!r)
        return;
    CHECK_STR(route_for(r, "GET", "", "/api/v1/users"), "exact");
    CHECK_STR(route_for(r, "GET", "", "/api/v1/users/"), "regex");
    CHECK_STR(route_for(r, "GET", "", "/api/v2/x"), "regex");
    CHECK_STR(route_for(r, "GET", "", "/api/other"), "prefix");
    CHECK_STR(route_for(r, "GET", "", "/api"), "prefix");
    CHECK_STR(route_for(r, "GET", "", "/elsewhere"), "anypath");
    finish(r, cfg);
}

/* Within one route, the best of its own paths decides its rank. */
static void test_path_kinds_one_route(void)
{
    static const rdef_t defs[] = {
        {.name = "other", .paths = {"~^/a"}},
        {.name = "multi", .paths = {"/a", "=/a/b", "~^/z"}},
    };
    gw_config_t *cfg;
    gw_router_t *r = BUILD(defs);
    if (!r)
        return;
    CHECK_STR(route_for(r, "GET", "", "/a/b"), "multi");
    CHECK_INT(last_strip, 4);
    CHECK_STR(route_for(r, "GET", "", "/a/c"), "other");
    CHECK_STR(route_for(r, "GET", "", "/z"), "multi");
    finish(r, cfg);
}

static void test_longest_prefix(void)
{
    static const rdef_t defs[] = {
        {.name = "root", .paths = {"/"}},       {.name = "api", .paths = {"/api"}},
        {.name = "v1", .paths = {"/api/v1"}},   {.name = "users", .paths = {"/users"}},
        {.name = "slash", .paths = {"/docs/"}},
    };
    gw_config_t *cfg;
    gw_router_t *r = BUILD(defs);
    if (!r)
        return;
    CHECK_STR(route_for(r, "GET", "", "/api/v1/x"), "v1");
    CHECK_STR(route_for(r, "GET", "", "/api/v1"), "v1");
    CHECK_STR(route_for(r, "GET", "", "/api/v10"), "api");
    CHECK_STR(route_for(r, "GET", "", "/api/x"), "api");
    CHECK_STR(route_for(r, "GET", "", "/apix"), "root");
    CHECK_STR(route_for(r, "GET", "", "/x"), "root");
    CHECK_STR(route_for(r, "GET", "", "/"), "root");
    CHECK_STR(route_for(r, "GET", "", "/users"), "users");
    CHECK_STR(route_for(r, "GET", "", "/users/"), "users");
    CHECK_STR(route_for(r, "GET", "", "/users/x"), "users");
    CHECK_STR(route_for(r, "GET", "", "/usersx"), "root");
    /* A pattern with a trailing slash needs it in the path. */
    CHECK_STR(route_for(r, "GET", "", "/docs/a"), "slash");
    CHECK_STR(route_for(r, "GET", "", "/docs/"), "slash");
    CHECK_STR(route_for(r, "GET", "", "/docs"), "root");
    finish(r, cfg);
}

static void test_no_match(void)
{
    static const rdef_t defs[] = {
        {.name = "users", .paths = {"/users"}},
        {.name = "exact", .paths = {"=/x"}},
        {.name = "host", .hosts = {"a.example.org"}},
    };
    gw_config_t *cfg;
    gw_router_t *r = BUILD(defs);
    if (!r)
        return;
    CHECK_STR(route_for(r, "GET", "", "/usersx"), "(none)");
    CHECK_STR(route_for(r, "GET", "", "/x/"), "(none)");
    CHECK_STR(route_for(r, "GET", "b.example.org", "/"), "(none)");
    CHECK_INT(last_strip, 0);
    finish(r, cfg);

    gw_config_t empty = {0};
    char err[64];
    r = gw_router_build(&empty, err, sizeof(err));
    CHECK(r != NULL);
    CHECK_STR(route_for(r, "GET", "a", "/"), "(none)");
    gw_router_free(r);
    gw_router_free(NULL);
}

static void test_methods(void)
{
    static const rdef_t defs[] = {
        {.name = "any", .paths = {"/items"}},
        {.name = "read", .paths = {"/items"}, .methods = {"GET", "HEAD"}},
        {.name = "only-delete", .paths = {"/admin"}, .methods = {"DELETE"}},
    };
    gw_config_t *cfg;
    gw_router_t *r = BUILD(defs);
    if (!r)
        return;
    CHECK_STR(route_for(r, "GET", "", "/items"), "read");
    CHECK_STR(route_for(r, "HEAD", "", "/items/1"), "read");
    CHECK_STR(route_for(r, "POST", "", "/items"), "any");
    CHECK_STR(route_for(r, "get", "", "/items"), "any");
    CHECK_STR(route_for(r, "GETX", "", "/items"), "any");
    CHECK_STR(route_for(r, "DELETE", "", "/admin"), "only-delete");
    CHECK_STR(route_for(r, "GET", "", "/admin"), "(none)");
    finish(r, cfg);
}

static void test_headers(void)
{
    static const rdef_t defs[] = {
        {.name = "plain", .paths = {"/svc"}},
        /* Before "v2": the number of headers does not rank, order does. */
        {.name = "v2-beta",
         .paths = {"/svc"},
         .headers = {{"X-Version", "2"}, {"X-Channel", "beta"}}},
        {.name = "v2", .paths = {"/svc"}, .headers = {{"X-Version", "2"}}},
    };
    gw_config_t *cfg;
    gw_router_t *r = BUILD(defs);
    if (!r)
        return;
    static const char *const h_v2[] = {"x-version", "2", NULL};
    static const char *const h_v3[] = {"X-Version", "3", NULL};
    static const char *const h_beta[] = {"X-CHANNEL", "beta", "X-Version", "2", NULL};
    static const char *const h_beta_case[] = {"X-Channel", "Beta", "X-Version", "2", NULL};
    static const char *const h_v2_space[] = {"X-Version", "2 ", NULL};
    CHECK_STR(route_hdr(r, "GET", "", "/svc", h_v2), "v2");
    CHECK_STR(route_hdr(r, "GET", "", "/svc", h_v3), "plain");
    CHECK_STR(route_hdr(r, "GET", "", "/svc", h_beta), "v2-beta");
    CHECK_STR(route_hdr(r, "GET", "", "/svc", h_beta_case), "v2");
    CHECK_STR(route_hdr(r, "GET", "", "/svc", h_v2_space), "plain");
    CHECK_STR(route_for(r, "GET", "", "/svc"), "plain");

    /* Without a lookup callback, header routes cannot match. */
    gw_route_query_t q = {.method = GW_STR("GET"), .host = GW_STR(""), .path = GW_STR("/svc")};
    gw_route_match_t m;
    CHECK_INT(gw_router_match(r, &q, &m), GW_OK);
    CHECK_STR(m.route->name, "plain");
    finish(r, cfg);
}

/* Methods outrank headers; both outrank neither; paths outrank both. */
static void test_methods_then_headers(void)
{
    static const rdef_t defs[] = {
        {.name = "hdr", .paths = {"/p"}, .headers = {{"X-A", "1"}}},
        {.name = "meth", .paths = {"/p"}, .methods = {"GET"}},
        {.name = "longer", .paths = {"/p/q"}},
        {.name = "both", .paths = {"/p"}, .methods = {"GET"}, .headers = {{"X-A", "1"}}},
    };
    gw_config_t *cfg;
    gw_router_t *r = BUILD(defs);
    if (!r)
        return;
    static const char *const h[] = {"X-A", "1", NULL};
    CHECK_STR(route_hdr(r, "GET", "", "/p", h), "both");
    CHECK_STR(route_hdr(r, "POST", "", "/p", h), "hdr");
    CHECK_STR(route_for(r, "GET", "", "/p"), "meth");
    CHECK_STR(route_hdr(r, "GET", "", "/p/q", h), "longer");
    finish(r, cfg);
}

static void test_config_order(void)
{
    static const rdef_t defs[] = {
        {.name = "first", .paths = {"/a"}},
        {.name = "second", .paths = {"/a"}},
        {.name = "re1", .paths = {"~^/r"}},
        {.name = "re2", .paths = {"~^/r/longer"}},
        {.name = "h1", .hosts = {"*.example.org"}, .paths = {"/h"}},
        {.name = "h2", .hosts = {"*.example.org"}, .paths = {"/h"}},
    };
    gw_config_t *cfg;
    gw_router_t *r = BUILD(defs);
    if (!r)
        return;
    CHECK_STR(route_for(r, "GET", "", "/a/x"), "first");
    CHECK_STR(route_for(r, "GET", "", "/r/longer"), "re1");
    CHECK_STR(route_for(r, "GET", "x.example.org", "/h"), "h1");
    finish(r, cfg);
}

static void test_regex(void)
{
    static const rdef_t defs[] = {
        {.name = "unanchored", .paths = {"~/v[0-9]+/"}},
        {.name = "anchored", .paths = {"~^/v[0-9]+"}},
        {.name = "suffix", .paths = {"~\\.json$"}},
        {.name = "groups", .paths = {"~^/(g)(r)(p)"}},
        {.name = "ci", .paths = {"~(?i)^/CaSe"}},
    };
    gw_config_t *cfg;
    gw_router_t *r = BUILD(defs);
    if (!r)
        return;
    CHECK_STR(route_for(r, "GET", "", "/api/v1/x"), "unanchored");
    CHECK_INT(last_strip, 0);
    CHECK_STR(route_for(r, "GET", "", "/v2/x"), "unanchored");
    CHECK_INT(last_strip, 4);
    CHECK_STR(route_for(r, "GET", "", "/v2"), "anchored");
    CHECK_INT(last_strip, 3);
    CHECK_STR(route_for(r, "GET", "", "/x/v2"), "(none)");
    CHECK_STR(route_for(r, "GET", "", "/a/b.json"), "suffix");
    CHECK_INT(last_strip, 0);
    CHECK_STR(route_for(r, "GET", "", "/a/b.json/x"), "(none)");
    CHECK_STR(route_for(r, "GET", "", "/grp/x"), "groups");
    CHECK_INT(last_strip, 4);
    CHECK_STR(route_for(r, "GET", "", "/case/x"), "ci");
    finish(r, cfg);
}

static void test_strip_len(void)
{
    static const rdef_t defs[] = {
        {.name = "slash", .paths = {"/api/"}},    {.name = "noslash", .paths = {"/svc"}},
        {.name = "exact", .paths = {"=/ex/act"}}, {.name = "regex", .paths = {"~^/v1"}},
        {.name = "root", .paths = {"/"}},         {.name = "anypath", .hosts = {"any.example.org"}},
    };
    gw_config_t *cfg;
    gw_router_t *r = BUILD(defs);
    if (!r)
        return;
    CHECK_STR(route_for(r, "GET", "", "/api/x"), "slash");
    CHECK_INT(last_strip, 4);
    CHECK_STR(route_for(r, "GET", "", "/api/"), "slash");
    CHECK_INT(last_strip, 4);
    CHECK_STR(route_for(r, "GET", "", "/svc/x"), "noslash");
    CHECK_INT(last_strip, 4);
    CHECK_STR(route_for(r, "GET", "", "/svc"), "noslash");
    CHECK_INT(last_strip, 4);
    CHECK_STR(route_for(r, "GET", "", "/ex/act"), "exact");
    CHECK_INT(last_strip, 7);
    CHECK_STR(route_for(r, "GET", "", "/v1/x"), "regex");
    CHECK_INT(last_strip, 3);
    CHECK_STR(route_for(r, "GET", "", "/x"), "root");
    CHECK_INT(last_strip, 0);
    CHECK_STR(route_for(r, "GET", "any.example.org", "/x"), "anypath");
    CHECK_INT(last_strip, 0);
    finish(r, cfg);
}

/* Literal patterns are normalised like request paths. */
static void test_pattern_normalised(void)
{
    static const rdef_t defs[] = {
        {.name = "cafe", .paths = {"/caf%C3%A9"}},
        {.name = "dbl", .paths = {"=/a//b"}},
    };
    gw_config_t *cfg;
    gw_router_t *r = BUILD(defs);
    if (!r)
        return;
    CHECK_STR(route_for(r, "GET", "", "/caf\xc3\xa9/menu"), "cafe");
    CHECK_STR(route_for(r, "GET", "", "/a/b"), "dbl");
    finish(r, cfg);
}

static void test_bad_regex(void)
{
    static const rdef_t defs[] = {
        {.name = "a", .paths = {"~^/ok"}},
        {.name = "b", .paths = {"/b"}},
        {.name = "c", .hosts = {"x.example.org"}},
        {.name = "name", .paths = {"~^/fine", "~(", "~^/never"}},
    };
    gw_config_t *cfg = make_config(defs, GW_ARRAY_LEN(defs));
    char err[256] = "junk";
    CHECK(gw_router_build(cfg, err, sizeof(err)) == NULL);
    CHECK_STR(err, "routes[3] (name): paths[1]: bad regex \"~(\": missing closing parenthesis "
                   "at offset 1");

    /* A short buffer is truncated, never overrun. */
    char small[16];
    CHECK(gw_router_build(cfg, small, sizeof(small)) == NULL);
    CHECK_INT(strlen(small), sizeof(small) - 1);
    CHECK(gw_router_build(cfg, NULL, 0) == NULL);
    free_config(cfg);
}

static void test_bad_literal_path(void)
{
    static const rdef_t defs[] = {
        {.name = "rel", .paths = {"/ok", "=users"}},
    };
    gw_config_t *cfg = make_config(defs, GW_ARRAY_LEN(defs));
    char err[256];
    CHECK(gw_router_build(cfg, err, sizeof(err)) == NULL);
    CHECK_STR(err, "routes[0] (rel): paths[1]: invalid path \"=users\"");
    free_config(cfg);
}

int main(void)
{
    static const gw_test_case_t cases[] = {
        GW_TEST(test_hosts),
        GW_TEST(test_hosts_required),
        GW_TEST(test_longer_wildcard_wins),
        GW_TEST(test_host_beats_path),
        GW_TEST(test_path_kinds),
        GW_TEST(test_path_kinds_one_route),
        GW_TEST(test_longest_prefix),
        GW_TEST(test_no_match),
        GW_TEST(test_methods),
        GW_TEST(test_headers),
        GW_TEST(test_methods_then_headers),
        GW_TEST(test_config_order),
        GW_TEST(test_regex),
        GW_TEST(test_strip_len),
        GW_TEST(test_pattern_normalised),
        GW_TEST(test_bad_regex),
        GW_TEST(test_bad_literal_path),
    };
    return GW_TEST_RUN(cases);
}
