/*
 * The router declared in gw_router.h. Routes are scanned linearly; each
 * matching route gets a 64-bit score whose numeric order is the precedence
 * order of the header, so the best route is the one with the highest score
 * (the first one on a tie). Bits, high to low:
 *
 *   61..60  host kind: 3 exact, 2 wildcard, 1 no hosts
 *   59..44  wildcard suffix length
 *   42..40  path kind: 4 exact, 3 regex, 2 prefix, 1 no paths
 *   39..8   prefix length
 *   1       the route has methods
 *   0       the route has header matches
 *
 * A route whose best possible score cannot beat the current best is skipped
 * before its headers and paths (regexes) are looked at.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "gw_router.h"
#include "gw_path.h"

#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define GW_SCORE_HOST_EXACT    (3ull << 60)
#define GW_SCORE_HOST_WILDCARD (2ull << 60)
#define GW_SCORE_HOST_ANY      (1ull << 60)
#define GW_SCORE_HOST_LEN_MAX  0xffffull
#define GW_SCORE_PATH_EXACT    (4ull << 40)
#define GW_SCORE_PATH_REGEX    (3ull << 40)
#define GW_SCORE_PATH_PREFIX   (2ull << 40)
#define GW_SCORE_PATH_ANY      (1ull << 40)
#define GW_SCORE_PATH_LEN_MAX  0xffffffffull
#define GW_SCORE_METHODS       (1ull << 1)
#define GW_SCORE_HEADERS       (1ull << 0)

typedef struct {
    char *name; /* lower-case; for "*.example.org" the suffix ".example.org" */
    size_t len;
    bool wildcard;
} gw_rhost_t;

typedef struct {
    gw_path_kind_t kind;
    char *pattern;    /* exact and prefix: normalised pattern */
    size_t len;       /* exact and prefix: bytes compared */
    size_t strip_len; /* prefix: len without a trailing '/' */
    uint64_t score;   /* this path's part of the score */
    pcre2_code *re;   /* regex */
    size_t index;     /* position in the route's paths[] */
} gw_rpath_t;

typedef struct {
    const gw_route_conf_t *conf;
    gw_rhost_t *hosts;
    size_t nhosts;
    gw_rpath_t *paths; /* exact, then regex (config order), then prefix (longest first) */
    size_t npaths;
    gw_str_t *methods;
    size_t nmethods;
    gw_str_t *header_names;
    gw_str_t *header_values;
    size_t nheaders;
    uint64_t flags;    /* the methods and headers bits of the score */
    uint64_t path_max; /* the best path part this route can score */
} gw_rroute_t;

struct gw_router_s {
    gw_rroute_t *routes;
    size_t nroutes;
    pcre2_match_data *md; /* shared by all regexes; the router is single-threaded */
};

/* Write "routes[i] (name): " followed by the formatted message into err. */
static void gw_router_err(char *err, size_t errlen, size_t i, const gw_route_conf_t *rc,
                          const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void gw_router_err(char *err, size_t errlen, size_t i, const gw_route_conf_t *rc,
                          const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    int n;
    if (rc->name)
        n = snprintf(err, errlen, "routes[%zu] (%s): ", i, rc->name);
    else
        n = snprintf(err, errlen, "routes[%zu]: ", i);
    if (n < 0 || (size_t)n >= errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/* Lower-cased copies of the route's hosts, wildcards kept as their suffix. */
static void gw_router_build_hosts(gw_rroute_t *rr, const gw_route_conf_t *rc)
{
    rr->nhosts = rc->nhosts;
    rr->hosts = gw_xcalloc(rc->nhosts, sizeof(gw_rhost_t));
    for (size_t i = 0; i < rc->nhosts; i++) {
        const char *h = rc->hosts[i];
        gw_rhost_t *rh = &rr->hosts[i];
        rh->wildcard = h[0] == '*' && h[1] == '.';
        if (rh->wildcard)
            h++; /* keep the dot: the suffix is ".example.org" */
        rh->len = strlen(h);
        rh->name = gw_xstrndup(h, rh->len);
        for (size_t k = 0; k < rh->len; k++)
            rh->name[k] = gw_lower(rh->name[k]);
    }
}

/* Compile one regex path. Returns GW_ERROR with err filled on a bad pattern. */
static int gw_router_compile(gw_rpath_t *rp, const char *pattern, size_t ri, size_t pi,
                             const gw_route_conf_t *rc, char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE off;

    rp->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &code, &off, NULL);
    if (!rp->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof(msg));
        gw_router_err(err, errlen, ri, rc, "paths[%zu]: bad regex \"~%s\": %s at offset %zu", pi,
                      pattern, (const char *)msg, (size_t)off);
        return GW_ERROR;
    }
    /* Without JIT support pcre2_match falls back to the interpreter. */
    pcre2_jit_compile(rp->re, PCRE2_JIT_COMPLETE);
    rp->score = GW_SCORE_PATH_REGEX;
    return GW_OK;
}

/*
 * Prepare an exact or prefix path: the pattern is normalised like request
 * paths are, so "/caf%C3%A9" or "/a//b" still match. Returns GW_ERROR with
 * err filled when the pattern is not a valid path.
 */
static int gw_router_literal(gw_rpath_t *rp, const char *pattern, size_t ri, size_t pi,
                             const gw_route_conf_t *rc, char *err, size_t errlen)
{
    size_t plen = strlen(pattern);
    char *buf = gw_xmalloc(plen + 1);
    ssize_t n = gw_path_normalize((gw_str_t){pattern, plen}, buf, plen + 1);
    if (n < 0) {
        free(buf);
        gw_router_err(err, errlen, ri, rc, "paths[%zu]: invalid path \"%s%s\"", pi,
                      rp->kind == GW_PATH_EXACT ? "=" : "", pattern);
        return GW_ERROR;
    }
    rp->pattern = buf;
    rp->len = (size_t)n;
    if (rp->kind == GW_PATH_EXACT) {
        rp->score = GW_SCORE_PATH_EXACT;
        return GW_OK;
    }
    rp->strip_len = rp->len;
    if (rp->strip_len > 0 && buf[rp->strip_len - 1] == '/')
        rp->strip_len--;
    size_t slen = rp->len < GW_SCORE_PATH_LEN_MAX ? rp->len : GW_SCORE_PATH_LEN_MAX;
    rp->score = GW_SCORE_PATH_PREFIX | (uint64_t)slen << 8;
    return GW_OK;
}

/* Order within a route: higher path score first, config order on a tie. */
static int gw_rpath_cmp(const void *a, const void *b)
{
    const gw_rpath_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Prepare the route's paths, sorted best first. GW_ERROR with err filled on a bad one. */
static int gw_router_build_paths(gw_rroute_t *rr, const gw_route_conf_t *rc, size_t ri, char *err,
                                 size_t errlen)
{
    rr->npaths = rc->npaths;
    rr->paths = gw_xcalloc(rc->npaths, sizeof(gw_rpath_t));
    rr->path_max = rc->npaths ? 0 : GW_SCORE_PATH_ANY;
    for (size_t i = 0; i < rc->npaths; i++) {
        gw_rpath_t *rp = &rr->paths[i];
        int st;
        rp->kind = rc->paths[i].kind;
        rp->index = i;
        if (rp->kind == GW_PATH_REGEX)
            st = gw_router_compile(rp, rc->paths[i].pattern, ri, i, rc, err, errlen);
        else
            st = gw_router_literal(rp, rc->paths[i].pattern, ri, i, rc, err, errlen);
        if (st != GW_OK)
            return GW_ERROR;
        if (rp->score > rr->path_max)
            rr->path_max = rp->score;
    }
    qsort(rr->paths, rr->npaths, sizeof(gw_rpath_t), gw_rpath_cmp);
    return GW_OK;
}

/* Slices of the route's methods and headers (pointing into the config). */
static void gw_router_build_filters(gw_rroute_t *rr, const gw_route_conf_t *rc)
{
    rr->nmethods = rc->nmethods;
    rr->methods = gw_xcalloc(rc->nmethods, sizeof(gw_str_t));
    for (size_t i = 0; i < rc->nmethods; i++)
        rr->methods[i] = (gw_str_t){rc->methods[i], strlen(rc->methods[i])};

    rr->nheaders = rc->nheaders;
    rr->header_names = gw_xcalloc(rc->nheaders, sizeof(gw_str_t));
    rr->header_values = gw_xcalloc(rc->nheaders, sizeof(gw_str_t));
    for (size_t i = 0; i < rc->nheaders; i++) {
        const gw_header_match_t *h = &rc->headers[i];
        rr->header_names[i] = (gw_str_t){h->name, strlen(h->name)};
        rr->header_values[i] = (gw_str_t){h->value, strlen(h->value)};
    }
    rr->flags = (rc->nmethods ? GW_SCORE_METHODS : 0) | (rc->nheaders ? GW_SCORE_HEADERS : 0);
}

gw_router_t *gw_router_build(const gw_config_t *cfg, char *err, size_t errlen)
{
    gw_router_t *r = gw_xcalloc(1, sizeof(*r));

    if (err && errlen)
        err[0] = '\0';
    r->routes = gw_xcalloc(cfg->nroutes, sizeof(gw_rroute_t));
    r->nroutes = cfg->nroutes;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const gw_route_conf_t *rc = &cfg->routes[i];
        gw_rroute_t *rr = &r->routes[i];
        rr->conf = rc;
        gw_router_build_hosts(rr, rc);
        gw_router_build_filters(rr, rc);
        if (gw_router_build_paths(rr, rc, i, err, errlen) != GW_OK) {
            gw_router_free(r);
            return NULL;
        }
    }
    /* One ovector pair is enough: only the whole match's offsets are read. */
    r->md = pcre2_match_data_create(1, NULL);
    if (!r->md) {
        fprintf(stderr, "moongate: out of memory creating regex match data\n");
        abort();
    }
    return r;
}

void gw_router_free(gw_router_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nroutes; i++) {
        gw_rroute_t *rr = &r->routes[i];
        for (size_t k = 0; k < rr->nhosts; k++)
            free(rr->hosts[k].name);
        for (size_t k = 0; k < rr->npaths; k++) {
            free(rr->paths[k].pattern);
            pcre2_code_free(rr->paths[k].re);
        }
        free(rr->hosts);
        free(rr->paths);
        free(rr->methods);
        free(rr->header_names);
        free(rr->header_values);
    }
    free(r->routes);
    pcre2_match_data_free(r->md);
    free(r);
}

/* The host part of the score for this route, or 0 when no host matches. */
static uint64_t gw_router_host_score(const gw_rroute_t *rr, gw_str_t host)
{
    if (rr->nhosts == 0)
        return GW_SCORE_HOST_ANY;
    if (host.len == 0)
        return 0;

    uint64_t best = 0;
    for (size_t i = 0; i < rr->nhosts; i++) {
        const gw_rhost_t *h = &rr->hosts[i];
        if (h->wildcard ? host.len <= h->len : host.len != h->len)
            continue;
        const char *s = host.p + host.len - h->len;
        size_t k = 0;
        while (k < h->len && gw_lower(s[k]) == h->name[k])
            k++;
        if (k < h->len)
            continue;
        if (!h->wildcard)
            return GW_SCORE_HOST_EXACT;
        uint64_t len = h->len < GW_SCORE_HOST_LEN_MAX ? h->len : GW_SCORE_HOST_LEN_MAX;
        uint64_t score = GW_SCORE_HOST_WILDCARD | len << 44;
        if (score > best)
            best = score;
    }
    return best;
}

static bool gw_router_method_ok(const gw_rroute_t *rr, gw_str_t method)
{
    if (rr->nmethods == 0)
        return true;
    for (size_t i = 0; i < rr->nmethods; i++)
        if (gw_str_eq(rr->methods[i], method))
            return true;
    return false;
}

static bool gw_router_headers_ok(const gw_rroute_t *rr, const gw_route_query_t *q)
{
    if (rr->nheaders == 0)
        return true;
    if (!q->header)
        return false;
    for (size_t i = 0; i < rr->nheaders; i++) {
        gw_str_t v;
        if (!q->header(q->header_ud, rr->header_names[i], &v) ||
            !gw_str_eq(v, rr->header_values[i]))
            return false;
    }
    return true;
}

/*
 * The path part of the score for the route's best matching path, or 0 when
 * none matches; *strip gets that path's strip length. Paths are sorted best
 * first, so the first match is the best one.
 */
static uint64_t gw_router_path_score(const gw_router_t *r, const gw_rroute_t *rr, gw_str_t path,
                                     size_t *strip)
{
    *strip = 0;
    if (rr->npaths == 0)
        return GW_SCORE_PATH_ANY;

    for (size_t i = 0; i < rr->npaths; i++) {
        const gw_rpath_t *p = &rr->paths[i];
        switch (p->kind) {
        case GW_PATH_EXACT:
            if (path.len == p->len && memcmp(path.p, p->pattern, p->len) == 0) {
                *strip = p->len;
                return p->score;
            }
            break;
        case GW_PATH_PREFIX:
            if (path.len >= p->len && memcmp(path.p, p->pattern, p->len) == 0 &&
                (path.len == p->len || p->pattern[p->len - 1] == '/' || path.p[p->len] == '/')) {
                *strip = p->strip_len;
                return p->score;
            }
            break;
        case GW_PATH_REGEX: {
            PCRE2_SPTR subject = (PCRE2_SPTR)(path.p ? path.p : "");
            if (pcre2_match(p->re, subject, path.len, 0, 0, r->md, NULL) >= 0) {
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(r->md);
                *strip = ov[0] == 0 ? ov[1] : 0;
                return p->score;
            }
            break;
        }
        }
    }
    return 0;
}

int gw_router_match(const gw_router_t *r, const gw_route_query_t *q, gw_route_match_t *m)
{
    gw_str_t host = q->host;
    const gw_rroute_t *best = NULL;
    uint64_t best_score = 0;
    size_t best_strip = 0;

    if (host.len > 0 && host.p[host.len - 1] == '.')
        host.len--; /* "example.com." is "example.com" */

    for (size_t i = 0; i < r->nroutes; i++) {
        const gw_rroute_t *rr = &r->routes[i];
        if (!gw_router_method_ok(rr, q->method))
            continue;
        uint64_t hs = gw_router_host_score(rr, host);
        if (hs == 0 || (hs | rr->path_max | rr->flags) <= best_score)
            continue;
        if (!gw_router_headers_ok(rr, q))
            continue;
        size_t strip;
        uint64_t ps = gw_router_path_score(r, rr, q->path, &strip);
        if (ps == 0)
            continue;
        uint64_t score = hs | ps | rr->flags;
        if (score > best_score) {
            best = rr;
            best_score = score;
            best_strip = strip;
        }
    }

    if (!best) {
        m->route = NULL;
        m->strip_len = 0;
        return GW_DECLINED;
    }
    m->route = best->conf;
    m->strip_len = best_strip;
    return GW_OK;
}
