/*
 * Loading the config declared in gw_config.h: read the file, parse it into a
 * generic tree (gw_config_node.h), substitute ${VAR} and ${VAR:-default} in
 * scalar values, then decode the tree into gw_config_t with defaults. Every
 * problem is recorded as an error with its file, line and document path, and
 * decoding goes on after an error so that all of them are reported at once.
 */
#define _POSIX_C_SOURCE 200809L
#include "gw_config.h"
#include "gw_config_node.h"
#include "gw_tls_conf.h"
#include "gw_tls_upstream.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#define GW_CONFIG_FILE_MAX    (16 * 1024 * 1024)
#define GW_CONFIG_MAX_WORKERS 64

static const char *const gw_balance_names[] = {"round_robin", "least_conn", "hash", "ewma", NULL};
static const char *const gw_hash_on_names[] = {"ip", "header", "cookie", NULL};
static const char *const gw_level_names[] = {"error", "warn", "info", "debug", NULL};

/* Stable sort of errs->items[from..] by line, so errors read top to bottom. */
static void gw_config_sort_errors(gw_config_errors_t *errs, size_t from)
{
    for (size_t i = from + 1; i < errs->count; i++) {
        gw_config_error_t e = errs->items[i];
        size_t j = i;
        while (j > from && errs->items[j - 1].line > e.line) {
            errs->items[j] = errs->items[j - 1];
            j--;
        }
        errs->items[j] = e;
    }
}

/* ---- addresses ---- */

typedef struct {
    const char *host; /* not NUL-terminated */
    size_t hostlen;
    const char *port; /* NULL when there is no ":port" */
    bool bracketed;   /* "[v6]" */
} gw_hostport_t;

/*
 * Split "host:port", "[v6]:port", ":port" or "host". Returns false on a
 * malformed bracket or an unbracketed host holding a colon (bare IPv6).
 */
static bool gw_split_hostport(const char *s, gw_hostport_t *hp)
{
    memset(hp, 0, sizeof(*hp));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end)
            return false;
        hp->host = s + 1;
        hp->hostlen = (size_t)(end - s - 1);
        hp->bracketed = true;
        if (end[1] == '\0')
            return true;
        if (end[1] != ':')
            return false;
        hp->port = end + 2;
        return true;
    }
    const char *colon = strrchr(s, ':');
    hp->host = s;
    hp->hostlen = colon ? (size_t)(colon - s) : strlen(s);
    if (colon && memchr(s, ':', hp->hostlen))
        return false;
    hp->port = colon ? colon + 1 : NULL;
    return true;
}

/* A port 1..65535 from decimal digits; 0 when invalid. */
static uint16_t gw_parse_port(const char *s)
{
    int64_t v;
    if (!s || !*s || *s == '+' || *s == '-' || strlen(s) > 5 || !gw_cnode_parse_int(s, &v))
        return 0;
    return (v >= 1 && v <= 65535) ? (uint16_t)v : 0;
}

static bool gw_all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* True when host[0..len) parses as a numeric address of the given family. */
static bool gw_is_ip(const char *host, size_t len, int family)
{
    char tmp[64];
    unsigned char bin[16];
    if (len == 0 || len >= sizeof tmp)
        return false;
    memcpy(tmp, host, len);
    tmp[len] = '\0';
    return inet_pton(family, tmp, bin) == 1;
}

/*
 * Decode a listen address ("host:port", "[v6]:port", ":port" or a port) into
 * *a. The host must be numeric or "localhost" (stored as "127.0.0.1"); an
 * omitted host is "0.0.0.0".
 */
static bool gw_caddr(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_addr_conf_t *a)
{
    const char *what = "address \"host:port\"";
    const char *s = gw_cnode_scalar(c, n, what);
    gw_hostport_t hp = {0};
    if (!s)
        return false;
    if (gw_all_digits(s))
        hp.port = s;
    else if (!gw_split_hostport(s, &hp) || !hp.port) {
        bool bare_v6 = s[0] != '[' && strchr(s, ':') != strrchr(s, ':');
        gw_cnode_expect(
            c, n, bare_v6 ? "address \"host:port\" with IPv6 in brackets (\"[::1]:80\")" : what);
        return false;
    }
    uint16_t port = gw_parse_port(hp.port);
    if (!port) {
        gw_cnode_expect(c, n, "port between 1 and 65535");
        return false;
    }
    const char *host = NULL;
    if (hp.hostlen == 0 && !hp.bracketed)
        host = "0.0.0.0";
    else if (!hp.bracketed && hp.hostlen == 9 && !strncasecmp(hp.host, "localhost", 9))
        host = "127.0.0.1";
    else if (!gw_is_ip(hp.host, hp.hostlen, hp.bracketed ? AF_INET6 : AF_INET)) {
        gw_cnode_expect(c, n, "numeric IP address or localhost");
        return false;
    }
    free(a->host);
    a->host = host ? gw_xstrdup(host) : gw_xstrndup(hp.host, hp.hostlen);
    a->port = port;
    a->line = n->line;
    return true;
}

/* A host name: letters, digits, '-', '_' and '.', starting with a letter or digit. */
static bool gw_is_hostname(const char *s, size_t len)
{
    if (len == 0 || !isalnum((unsigned char)s[0]))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && ch != '-' && ch != '_' && ch != '.')
            return false;
    }
    return true;
}

/* Decode a target "host:port" (host a name, IPv4 or "[v6]") into *t. */
static bool gw_ctarget_addr(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_target_conf_t *t)
{
    const char *s = gw_cnode_scalar(c, n, "address \"host:port\"");
    gw_hostport_t hp;
    if (!s)
        return false;
    if (!gw_split_hostport(s, &hp) || !hp.port || hp.hostlen == 0) {
        gw_cnode_expect(c, n, "address \"host:port\"");
        return false;
    }
    uint16_t port = gw_parse_port(hp.port);
    if (!port) {
        gw_cnode_expect(c, n, "port between 1 and 65535");
        return false;
    }
    if (hp.bracketed ? !gw_is_ip(hp.host, hp.hostlen, AF_INET6)
                     : !gw_is_hostname(hp.host, hp.hostlen)) {
        gw_cnode_expect(c, n, "host name or IP address");
        return false;
    }
    free(t->host);
    t->host = gw_xstrndup(hp.host, hp.hostlen);
    t->port = port;
    return true;
}

/* Decode a required address field `key` of `map` into *a. */
static void gw_cget_addr(gw_cnode_ctx_t *c, const gw_cnode_t *map, const char *key,
                         gw_addr_conf_t *a)
{
    const gw_cnode_t *v = gw_cnode_get(map, key);
    if (!v || v->kind == GW_CNODE_NULL) {
        gw_cnode_report_key(c, v ? v->line : map->line, key, "required field missing");
        return;
    }
    size_t m = gw_cnode_path_key(c, key);
    gw_caddr(c, v, a);
    gw_cnode_path_pop(c, m);
}

/* ---- top-level sections ---- */

/* One `listen` entry: an address, or { address, backlog }. */
static void gw_cdecode_listen(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_listen_conf_t *l)
{
    static const char *const fields[] = {"address", "backlog", "tls", NULL};
    l->backlog = 511;
    if (n->kind != GW_CNODE_MAP) {
        gw_caddr(c, n, &l->addr);
        return;
    }
    if (!gw_cnode_check_map(c, n, fields, "field"))
        return;
    gw_cget_addr(c, n, "address", &l->addr);
    gw_cnode_field_int(c, n, "backlog", 1, 65535, &l->backlog);
    const gw_cnode_t *tls = gw_cnode_field(n, "tls");
    if (tls) {
        size_t m = gw_cnode_path_key(c, "tls");
        gw_tls_conf_decode(c, tls, &l->tls);
        gw_cnode_path_pop(c, m);
    }
}

/* `listen`: one entry or a list of them; duplicates are errors. */
static void gw_cdecode_listens(gw_cnode_ctx_t *c, const gw_cnode_t *root, gw_config_t *cfg)
{
    const gw_cnode_t *v = gw_cnode_field(root, "listen");
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "listen");
    bool list = v->kind == GW_CNODE_LIST;
    size_t n = list ? v->nitems : 1;
    if (list && n == 0)
        gw_cnode_expect(c, v, "at least one address");
    cfg->listens = gw_xcalloc(n, sizeof(*cfg->listens));
    for (size_t i = 0; i < n; i++) {
        const gw_cnode_t *item = list ? v->items[i] : v;
        size_t mi = list ? gw_cnode_path_index(c, i) : c->plen;
        gw_listen_conf_t *l = &cfg->listens[cfg->nlistens++];
        gw_cdecode_listen(c, item, l);
        for (size_t j = 0; l->addr.host && j + 1 < cfg->nlistens; j++) {
            const gw_addr_conf_t *o = &cfg->listens[j].addr;
            if (o->host && o->port == l->addr.port && strcmp(o->host, l->addr.host) == 0) {
                gw_cnode_report(c, item->line, "duplicate listen address %s:%u (first at line %d)",
                                l->addr.host, l->addr.port, o->line);
                break;
            }
        }
        gw_cnode_path_pop(c, mi);
    }
    gw_cnode_path_pop(c, m);
}

/* `workers`: "auto" or 0 (cores, at most 64) or 1..64. */
static void gw_cdecode_workers(gw_cnode_ctx_t *c, const gw_cnode_t *root, gw_config_t *cfg)
{
    const gw_cnode_t *v = gw_cnode_field(root, "workers");
    int64_t n = 0;
    if (v && !v->bad) {
        size_t m = gw_cnode_path_key(c, "workers");
        bool ok = v->kind == GW_CNODE_SCALAR &&
                  (strcasecmp(v->str, "auto") == 0 ||
                   (gw_cnode_parse_int(v->str, &n) && n >= 0 && n <= GW_CONFIG_MAX_WORKERS));
        if (!ok) {
            gw_cnode_expect(c, v, "\"auto\" or an integer between 1 and 64");
            n = 0;
        }
        gw_cnode_path_pop(c, m);
    }
    if (n == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores < 1 ? 1 : cores > GW_CONFIG_MAX_WORKERS ? GW_CONFIG_MAX_WORKERS : cores;
    }
    cfg->workers = (int)n;
}

/* `status` and `admin`: a listen address, plus a token for admin. */
static void gw_cdecode_status_admin(gw_cnode_ctx_t *c, const gw_cnode_t *root, gw_config_t *cfg)
{
    static const char *const status_fields[] = {"listen", NULL};
    static const char *const admin_fields[] = {"listen", "token", NULL};
    const gw_cnode_t *v = gw_cnode_field(root, "status");
    if (v) {
        size_t m = gw_cnode_path_key(c, "status");
        cfg->status_enabled = true;
        if (gw_cnode_check_map(c, v, status_fields, "field"))
            gw_cget_addr(c, v, "listen", &cfg->status_listen);
        gw_cnode_path_pop(c, m);
    }
    v = gw_cnode_field(root, "admin");
    if (v) {
        size_t m = gw_cnode_path_key(c, "admin");
        cfg->admin_enabled = true;
        if (gw_cnode_check_map(c, v, admin_fields, "field")) {
            gw_cget_addr(c, v, "listen", &cfg->admin_listen);
            /* An empty token (e.g. "${TOKEN:-}") means no token. */
            const gw_cnode_t *t = gw_cnode_field(v, "token");
            if (t && !(t->kind == GW_CNODE_SCALAR && t->len == 0))
                gw_cnode_field_str(c, v, "token", &cfg->admin_token);
        }
        gw_cnode_path_pop(c, m);
    }
}

/* `redis: { url }`: a redis:// or unix:// URL; an empty url means no Redis. */
static void gw_cdecode_redis(gw_cnode_ctx_t *c, const gw_cnode_t *root, gw_config_t *cfg)
{
    static const char *const fields[] = {"url", NULL};
    const gw_cnode_t *v = gw_cnode_field(root, "redis");
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "redis");
    if (gw_cnode_check_map(c, v, fields, "field")) {
        const gw_cnode_t *u = gw_cnode_field(v, "url");
        size_t mu = gw_cnode_path_key(c, "url");
        const char *s = u ? gw_cnode_scalar(c, u, "URL") : NULL;
        if (!u)
            gw_cnode_report(c, v->line, "required field missing");
        else if (s && *s && strncmp(s, "redis://", 8) != 0 && strncmp(s, "unix://", 7) != 0)
            gw_cnode_expect(c, u, "URL starting with redis:// or unix://");
        else if (s && *s)
            cfg->redis_url = gw_xstrdup(s);
        gw_cnode_path_pop(c, mu);
    }
    gw_cnode_path_pop(c, m);
}

static void gw_cdecode_limits(gw_cnode_ctx_t *c, const gw_cnode_t *root, gw_config_t *cfg)
{
    static const char *const fields[] = {"max_header_size", "max_uri_size", "max_body_size",
                                         "max_headers", NULL};
    const gw_cnode_t *v = gw_cnode_field(root, "limits");
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "limits");
    if (gw_cnode_check_map(c, v, fields, "field")) {
        int64_t header = (int64_t)cfg->limits.max_header_size;
        int64_t uri = (int64_t)cfg->limits.max_uri_size;
        gw_cnode_field_size(c, v, "max_header_size", 1, &header);
        gw_cnode_field_size(c, v, "max_uri_size", 1, &uri);
        gw_cnode_field_size(c, v, "max_body_size", 0, &cfg->limits.max_body_size);
        gw_cnode_field_int(c, v, "max_headers", 1, 10000, &cfg->limits.max_headers);
        cfg->limits.max_header_size = (size_t)header;
        cfg->limits.max_uri_size = (size_t)uri;
    }
    gw_cnode_path_pop(c, m);
}

static void gw_cdecode_timeouts(gw_cnode_ctx_t *c, const gw_cnode_t *root, gw_config_t *cfg)
{
    static const char *const fields[] = {"client_header", "client_body", "keepalive",     "send",
                                         "drain",         "watchdog",    "tls_handshake", NULL};
    const gw_cnode_t *v = gw_cnode_field(root, "timeouts");
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "timeouts");
    if (gw_cnode_check_map(c, v, fields, "field")) {
        gw_cnode_field_duration(c, v, "client_header", true, &cfg->timeouts.client_header);
        gw_cnode_field_duration(c, v, "client_body", true, &cfg->timeouts.client_body);
        gw_cnode_field_duration(c, v, "keepalive", false, &cfg->timeouts.keepalive);
        gw_cnode_field_duration(c, v, "send", true, &cfg->timeouts.send);
        gw_cnode_field_duration(c, v, "drain", false, &cfg->timeouts.drain);
        gw_cnode_field_duration(c, v, "watchdog", false, &cfg->timeouts.watchdog);
        gw_cnode_field_duration(c, v, "tls_handshake", true, &cfg->timeouts.tls_handshake);
    }
    gw_cnode_path_pop(c, m);
}

/*
 * A log destination that can be switched off (`access_log`, `pid_file`):
 * off/false/no clears *enabled and frees *path, on/true/yes keeps the default
 * path, anything else is the path.
 */
static void gw_cdecode_switchable_path(gw_cnode_ctx_t *c, const gw_cnode_t *root, const char *key,
                                       bool *enabled, char **path)
{
    const gw_cnode_t *v = gw_cnode_field(root, key);
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, key);
    const char *s = gw_cnode_scalar(c, v, "\"off\" or a file path");
    int b = s ? gw_cnode_parse_bool(s) : -1;
    if (b == 0) {
        *enabled = false;
        free(*path);
        *path = NULL;
    } else if (s && b < 0) {
        gw_cnode_str(c, v, path);
    }
    gw_cnode_path_pop(c, m);
}

/* `error_log`: a path, or { path, level }. */
static void gw_cdecode_error_log(gw_cnode_ctx_t *c, const gw_cnode_t *root, gw_config_t *cfg)
{
    static const char *const fields[] = {"path", "level", NULL};
    const gw_cnode_t *v = gw_cnode_field(root, "error_log");
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "error_log");
    if (v->kind != GW_CNODE_MAP) {
        gw_cnode_str(c, v, &cfg->error_log.path);
    } else if (gw_cnode_check_map(c, v, fields, "field")) {
        int level = (int)cfg->error_log.level;
        gw_cnode_field_str(c, v, "path", &cfg->error_log.path);
        gw_cnode_field_enum(c, v, "level", gw_level_names, &level);
        cfg->error_log.level = (gw_log_level_t)level;
    }
    gw_cnode_path_pop(c, m);
}

/* ---- upstreams ---- */

static void gw_upstream_defaults(gw_upstream_conf_t *u)
{
    u->balance = GW_BALANCE_ROUND_ROBIN;
    u->hash_on = GW_HASH_ON_IP;
    u->max_idle = 64;
    u->idle_timeout = 60;
    u->connect_timeout = 5;
    u->send_timeout = 60;
    u->read_timeout = 60;
    u->retries = 1;
    u->active.path = gw_xstrdup("/health");
    u->active.interval = 5;
    u->active.timeout = 2;
    u->active.healthy = 2;
    u->active.unhealthy = 3;
    u->passive.failures = 0;
    u->passive.down_for = 10;
}

/* One target: "host:port" or { address, weight }. */
static void gw_cdecode_target(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_target_conf_t *t)
{
    static const char *const fields[] = {"address", "weight", NULL};
    t->weight = 1;
    t->line = n->line;
    if (n->kind != GW_CNODE_MAP) {
        gw_ctarget_addr(c, n, t);
        return;
    }
    if (!gw_cnode_check_map(c, n, fields, "field"))
        return;
    const gw_cnode_t *a = gw_cnode_field(n, "address");
    if (!a) {
        gw_cnode_report_key(c, n->line, "address", "required field missing");
    } else {
        size_t m = gw_cnode_path_key(c, "address");
        gw_ctarget_addr(c, a, t);
        gw_cnode_path_pop(c, m);
    }
    gw_cnode_field_int(c, n, "weight", 1, 1000, &t->weight);
}

/* `targets`: a required, non-empty list. */
static void gw_cdecode_targets(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_upstream_conf_t *u)
{
    const gw_cnode_t *v = gw_cnode_field(n, "targets");
    if (!v) {
        gw_cnode_report_key(c, n->line, "targets", "required field missing");
        return;
    }
    size_t m = gw_cnode_path_key(c, "targets");
    if (v->kind != GW_CNODE_LIST || v->nitems == 0) {
        if (!v->bad)
            gw_cnode_expect(c, v, "a non-empty list of targets");
        gw_cnode_path_pop(c, m);
        return;
    }
    u->targets = gw_xcalloc(v->nitems, sizeof(*u->targets));
    for (size_t i = 0; i < v->nitems; i++) {
        size_t mi = gw_cnode_path_index(c, i);
        gw_cdecode_target(c, v->items[i], &u->targets[u->ntargets++]);
        gw_cnode_path_pop(c, mi);
    }
    gw_cnode_path_pop(c, m);
}

/* `hash: { on, name }`: on defaults to ip; name is required for header and cookie. */
static void gw_cdecode_hash(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_upstream_conf_t *u)
{
    static const char *const fields[] = {"on", "name", NULL};
    const gw_cnode_t *v = gw_cnode_field(n, "hash");
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "hash");
    if (gw_cnode_check_map(c, v, fields, "field")) {
        int on = (int)u->hash_on;
        bool on_ok = gw_cnode_field_enum(c, v, "on", gw_hash_on_names, &on);
        u->hash_on = (gw_hash_on_t)on;
        const gw_cnode_t *name = gw_cnode_field(v, "name");
        if (on_ok && u->hash_on == GW_HASH_ON_IP && name)
            gw_cnode_report_key(c, name->line, "name", "not used with on: ip");
        else if (on_ok && u->hash_on != GW_HASH_ON_IP && !name)
            gw_cnode_report_key(c, v->line, "name", "required field missing");
        else if (on_ok && name)
            gw_cnode_field_str(c, v, "name", &u->hash_name);
    }
    gw_cnode_path_pop(c, m);
}

/* `keepalive: { max_idle, idle_timeout }` and `timeouts: { connect, send, read }`. */
static void gw_cdecode_pool(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_upstream_conf_t *u)
{
    static const char *const ka_fields[] = {"max_idle", "idle_timeout", NULL};
    static const char *const to_fields[] = {"connect", "send", "read", NULL};
    const gw_cnode_t *v = gw_cnode_field(n, "keepalive");
    if (v) {
        size_t m = gw_cnode_path_key(c, "keepalive");
        if (gw_cnode_check_map(c, v, ka_fields, "field")) {
            int max_idle = (int)u->max_idle;
            gw_cnode_field_int(c, v, "max_idle", 0, 100000, &max_idle);
            u->max_idle = (unsigned)max_idle;
            gw_cnode_field_duration(c, v, "idle_timeout", false, &u->idle_timeout);
        }
        gw_cnode_path_pop(c, m);
    }
    v = gw_cnode_field(n, "timeouts");
    if (v) {
        size_t m = gw_cnode_path_key(c, "timeouts");
        if (gw_cnode_check_map(c, v, to_fields, "field")) {
            gw_cnode_field_duration(c, v, "connect", true, &u->connect_timeout);
            gw_cnode_field_duration(c, v, "send", true, &u->send_timeout);
            gw_cnode_field_duration(c, v, "read", true, &u->read_timeout);
        }
        gw_cnode_path_pop(c, m);
    }
}

/* `health: { active: {...}, passive: {...} }`; active checks run when present. */
static void gw_cdecode_health(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_upstream_conf_t *u)
{
    static const char *const fields[] = {"active", "passive", NULL};
    static const char *const active_fields[] = {"path",    "interval",  "timeout",
                                                "healthy", "unhealthy", NULL};
    static const char *const passive_fields[] = {"failures", "down_for", NULL};
    const gw_cnode_t *h = gw_cnode_field(n, "health");
    if (!h)
        return;
    size_t m = gw_cnode_path_key(c, "health");
    const gw_cnode_t *a =
        gw_cnode_check_map(c, h, fields, "field") ? gw_cnode_field(h, "active") : NULL;
    if (a) {
        size_t ma = gw_cnode_path_key(c, "active");
        u->active.enabled = true;
        if (gw_cnode_check_map(c, a, active_fields, "field")) {
            gw_cnode_field_str(c, a, "path", &u->active.path);
            if (u->active.path[0] != '/')
                gw_cnode_report_key(c, gw_cnode_field(a, "path")->line, "path",
                                    "must start with \"/\"");
            gw_cnode_field_duration(c, a, "interval", true, &u->active.interval);
            gw_cnode_field_duration(c, a, "timeout", true, &u->active.timeout);
            gw_cnode_field_int(c, a, "healthy", 1, 1000, &u->active.healthy);
            gw_cnode_field_int(c, a, "unhealthy", 1, 1000, &u->active.unhealthy);
        }
        gw_cnode_path_pop(c, ma);
    }
    const gw_cnode_t *p = h->kind == GW_CNODE_MAP ? gw_cnode_field(h, "passive") : NULL;
    if (p) {
        size_t mp = gw_cnode_path_key(c, "passive");
        if (gw_cnode_check_map(c, p, passive_fields, "field")) {
            gw_cnode_field_int(c, p, "failures", 0, 1000, &u->passive.failures);
            gw_cnode_field_duration(c, p, "down_for", true, &u->passive.down_for);
        }
        gw_cnode_path_pop(c, mp);
    }
    gw_cnode_path_pop(c, m);
}

/* One upstream; u->name and u->line are already set. */
static void gw_cdecode_upstream(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_upstream_conf_t *u)
{
    static const char *const fields[] = {"targets", "balance", "hash", "keepalive", "timeouts",
                                         "retries", "health",  "tls",  NULL};
    gw_upstream_defaults(u);
    if (n->kind == GW_CNODE_NULL) {
        gw_cnode_report_key(c, n->line, "targets", "required field missing");
        return;
    }
    if (!gw_cnode_check_map(c, n, fields, "field"))
        return;
    gw_cdecode_targets(c, n, u);
    int balance = (int)u->balance;
    gw_cnode_field_enum(c, n, "balance", gw_balance_names, &balance);
    u->balance = (gw_balance_t)balance;
    gw_cdecode_hash(c, n, u);
    gw_cdecode_pool(c, n, u);
    gw_cnode_field_int(c, n, "retries", 0, 100, &u->retries);
    gw_cdecode_health(c, n, u);
    gw_tls_upstream_decode(c, n, &u->tls);
}

/* `upstreams`: a map from name to upstream, kept in document order. */
static void gw_cdecode_upstreams(gw_cnode_ctx_t *c, const gw_cnode_t *root, gw_config_t *cfg)
{
    const gw_cnode_t *v = gw_cnode_field(root, "upstreams");
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "upstreams");
    if (gw_cnode_check_map(c, v, NULL, "upstream")) {
        cfg->upstreams = gw_xcalloc(v->npairs, sizeof(*cfg->upstreams));
        for (size_t i = 0; i < v->npairs; i++) {
            const gw_cnode_t *k = v->pairs[i].key;
            if (k->kind != GW_CNODE_SCALAR || gw_config_upstream(cfg, k->str))
                continue; /* reported by gw_cnode_check_map */
            gw_upstream_conf_t *u = &cfg->upstreams[cfg->nupstreams++];
            u->name = gw_xstrdup(k->str);
            u->line = k->line;
            size_t mu = gw_cnode_path_key(c, k->str);
            if (k->len == 0)
                gw_cnode_report(c, k->line, "upstream name must not be empty");
            gw_cdecode_upstream(c, v->pairs[i].value, u);
            gw_cnode_path_pop(c, mu);
        }
    }
    gw_cnode_path_pop(c, m);
}

/* ---- routes ---- */

/* An RFC 9110 token (method and header names). */
static bool gw_is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (!isalnum(ch) && !strchr("!#$%&'*+-.^_`|~", ch))
            return false;
    }
    return true;
}

/* A route host: a host name, optionally after a leading "*." wildcard. */
static bool gw_is_route_host(const char *s)
{
    if (s[0] == '*') {
        if (s[1] != '.')
            return false;
        s += 2;
    }
    return gw_is_hostname(s, strlen(s));
}

/* The items of a list-valued field; a lone scalar counts as a list of one. */
static const gw_cnode_t *const *gw_citems(const gw_cnode_t *v, const gw_cnode_t **one, size_t *n)
{
    if (v->kind == GW_CNODE_LIST) {
        *n = v->nitems;
        return (const gw_cnode_t *const *)v->items;
    }
    *one = v;
    *n = 1;
    return one;
}

/* `hosts`, `methods`: lists of strings, normalised and validated. */
static void gw_cdecode_names(gw_cnode_ctx_t *c, const gw_cnode_t *n, const char *key, bool hosts,
                             char ***out, size_t *count)
{
    const gw_cnode_t *v = gw_cnode_field(n, key), *one;
    size_t len;
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, key);
    const gw_cnode_t *const *items = gw_citems(v, &one, &len);
    *out = gw_xcalloc(len, sizeof(**out));
    for (size_t i = 0; i < len; i++) {
        size_t mi = v->kind == GW_CNODE_LIST ? gw_cnode_path_index(c, i) : c->plen;
        const char *what = hosts ? "host name (\"api.example.com\" or \"*.example.org\")"
                                 : "HTTP method (a token such as GET)";
        const char *s = gw_cnode_scalar(c, items[i], what);
        if (s && (hosts ? !gw_is_route_host(s) : !gw_is_token(s))) {
            gw_cnode_expect(c, items[i], what);
        } else if (s) {
            char *copy = gw_xstrdup(s);
            for (char *p = copy; *p; p++)
                *p = hosts ? gw_lower(*p) : (char)toupper((unsigned char)*p);
            (*out)[(*count)++] = copy;
        }
        gw_cnode_path_pop(c, mi);
    }
    gw_cnode_path_pop(c, m);
}

/* `paths`: "/prefix", "=/exact" or "~regex". */
static void gw_cdecode_paths(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_route_conf_t *r)
{
    const char *what = "path starting with \"/\", \"=/\" or \"~\"";
    const gw_cnode_t *v = gw_cnode_field(n, "paths"), *one;
    size_t len;
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "paths");
    const gw_cnode_t *const *items = gw_citems(v, &one, &len);
    r->paths = gw_xcalloc(len, sizeof(*r->paths));
    for (size_t i = 0; i < len; i++) {
        size_t mi = v->kind == GW_CNODE_LIST ? gw_cnode_path_index(c, i) : c->plen;
        const char *s = gw_cnode_scalar(c, items[i], what);
        gw_path_kind_t kind = GW_PATH_PREFIX;
        if (s && (s[0] == '=' || s[0] == '~')) {
            kind = s[0] == '=' ? GW_PATH_EXACT : GW_PATH_REGEX;
            s++;
        }
        if (s && (kind == GW_PATH_REGEX ? *s == '\0' : *s != '/')) {
            gw_cnode_expect(c, items[i], what);
        } else if (s) {
            r->paths[r->npaths].kind = kind;
            r->paths[r->npaths++].pattern = gw_xstrdup(s);
        }
        gw_cnode_path_pop(c, mi);
    }
    gw_cnode_path_pop(c, m);
}

/* `headers`: a map from header name to the exact value; values are strings. */
static void gw_cdecode_headers(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_route_conf_t *r)
{
    const gw_cnode_t *v = gw_cnode_field(n, "headers");
    char q[96];
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "headers");
    if (gw_cnode_check_map(c, v, NULL, "header")) {
        r->headers = gw_xcalloc(v->npairs, sizeof(*r->headers));
        for (size_t i = 0; i < v->npairs; i++) {
            const gw_cnode_t *k = v->pairs[i].key, *val = v->pairs[i].value;
            if (k->kind != GW_CNODE_SCALAR)
                continue;
            size_t mh = gw_cnode_path_key(c, k->str);
            const char *s = gw_cnode_scalar(c, val, "string");
            if (!gw_is_token(k->str)) {
                gw_cnode_report(c, k->line, "invalid header name %s",
                                gw_cnode_quote(k->str, q, sizeof q));
            } else if (s) {
                r->headers[r->nheaders].name = gw_xstrdup(k->str);
                r->headers[r->nheaders++].value = gw_xstrdup(s);
            }
            gw_cnode_path_pop(c, mh);
        }
    }
    gw_cnode_path_pop(c, m);
}

/* `upstream`: required; must name an upstream of cfg, whose index is recorded. */
static void gw_cdecode_route_upstream(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_route_conf_t *r,
                                      const gw_config_t *cfg)
{
    const gw_cnode_t *v = gw_cnode_get(n, "upstream");
    char q[96];
    if (!v || v->kind == GW_CNODE_NULL) {
        gw_cnode_report_key(c, v ? v->line : n->line, "upstream", "required field missing");
        return;
    }
    size_t m = gw_cnode_path_key(c, "upstream");
    if (gw_cnode_str(c, v, &r->upstream)) {
        const gw_upstream_conf_t *u = gw_config_upstream(cfg, r->upstream);
        if (u)
            r->upstream_index = (size_t)(u - cfg->upstreams);
        else
            gw_cnode_report(c, v->line, "upstream %s is not defined",
                            gw_cnode_quote(r->upstream, q, sizeof q));
    }
    gw_cnode_path_pop(c, m);
}

/*
 * A `plugins` map under `parent`: plugin names (letters, digits, '-' and
 * '_') to a config map or null. Returns the map node, or NULL when absent
 * or malformed (reported). The contents are left to the plugins' schemas.
 */
static const gw_cnode_t *gw_cdecode_plugins(gw_cnode_ctx_t *c, const gw_cnode_t *parent)
{
    const gw_cnode_t *v = gw_cnode_field(parent, "plugins");
    if (!v)
        return NULL;
    size_t m = gw_cnode_path_key(c, "plugins");
    bool ok = gw_cnode_check_map(c, v, NULL, "plugin");
    for (size_t i = 0; ok && i < v->npairs; i++) {
        const gw_cnode_pair_t *p = &v->pairs[i];
        if (p->key->kind != GW_CNODE_SCALAR)
            continue; /* reported by gw_cnode_check_map */
        size_t mk = gw_cnode_path_key(c, p->key->str);
        bool name_ok = p->key->len > 0 && p->key->len <= 64;
        for (size_t k = 0; k < p->key->len; k++) {
            char ch = p->key->str[k];
            name_ok = name_ok && ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_');
        }
        if (!name_ok) {
            gw_cnode_report(c, p->key->line, "invalid plugin name");
            ok = false;
        } else if (p->value->kind != GW_CNODE_MAP && p->value->kind != GW_CNODE_NULL) {
            gw_cnode_expect(c, p->value, "a map of plugin settings");
            ok = false;
        }
        gw_cnode_path_pop(c, mk);
    }
    gw_cnode_path_pop(c, m);
    return ok ? v : NULL;
}

/* A list of non-empty strings (or a single one) under `key`. */
static void gw_cdecode_strings(gw_cnode_ctx_t *c, const gw_cnode_t *parent, const char *key,
                               char ***out, size_t *count)
{
    const gw_cnode_t *v = gw_cnode_field(parent, key);
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, key);
    const gw_cnode_t *one;
    size_t n;
    const gw_cnode_t *const *items = gw_citems(v, &one, &n);
    *out = gw_xcalloc(n, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        size_t mi = v->kind == GW_CNODE_LIST ? gw_cnode_path_index(c, i) : c->plen;
        char *s = NULL;
        if (gw_cnode_str(c, items[i], &s))
            (*out)[(*count)++] = s;
        gw_cnode_path_pop(c, mi);
    }
    gw_cnode_path_pop(c, m);
}

/* `consumers`: a list of maps with only `username` (required), `credentials`
 * and `plugins`; their contents are checked by the plugin runtime. */
static void gw_cdecode_consumers(gw_cnode_ctx_t *c, const gw_cnode_t *root, gw_config_t *cfg)
{
    static const char *const fields[] = {"username", "credentials", "plugins", NULL};
    const gw_cnode_t *v = gw_cnode_field(root, "consumers");
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "consumers");
    bool ok = v->kind == GW_CNODE_LIST;
    if (!ok)
        gw_cnode_expect(c, v, "a list of consumers");
    for (size_t i = 0; v->kind == GW_CNODE_LIST && i < v->nitems; i++) {
        size_t mi = gw_cnode_path_index(c, i);
        const gw_cnode_t *item = v->items[i];
        if (!gw_cnode_check_map(c, item, fields, "field")) {
            ok = false;
        } else if (!gw_cnode_field(item, "username")) {
            gw_cnode_report_key(c, item->line, "username", "required field missing");
            ok = false;
        } else if (!gw_cdecode_plugins(c, item) && gw_cnode_field(item, "plugins")) {
            ok = false;
        }
        gw_cnode_path_pop(c, mi);
    }
    gw_cnode_path_pop(c, m);
    if (ok)
        cfg->consumers = v;
}

/* `shared_dicts`: a map from dictionary name to its size (at least 64k). */
static void gw_cdecode_shared_dicts(gw_cnode_ctx_t *c, const gw_cnode_t *root, gw_config_t *cfg)
{
    const gw_cnode_t *v = gw_cnode_field(root, "shared_dicts");
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "shared_dicts");
    if (gw_cnode_check_map(c, v, NULL, "dictionary")) {
        cfg->shared_dicts = gw_xcalloc(v->npairs, sizeof(*cfg->shared_dicts));
        for (size_t i = 0; i < v->npairs; i++) {
            const gw_cnode_pair_t *p = &v->pairs[i];
            if (p->key->kind != GW_CNODE_SCALAR)
                continue;
            size_t mk = gw_cnode_path_key(c, p->key->str);
            int64_t size = 0;
            if (gw_cnode_size(c, p->value, 65536, &size)) {
                cfg->shared_dicts[cfg->nshared_dicts].name = gw_xstrdup(p->key->str);
                cfg->shared_dicts[cfg->nshared_dicts].size = size;
                cfg->shared_dicts[cfg->nshared_dicts].line = p->key->line;
                cfg->nshared_dicts++;
            }
            gw_cnode_path_pop(c, mk);
        }
    }
    gw_cnode_path_pop(c, m);
}

/* `websocket`: a boolean, or a map of settings (which enables it). */
static void gw_cdecode_websocket(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_route_conf_t *r)
{
    static const char *const fields[] = {"idle_timeout", NULL};
    const gw_cnode_t *v = gw_cnode_field(n, "websocket");
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "websocket");
    if (v->kind != GW_CNODE_MAP) {
        gw_cnode_bool(c, v, &r->websocket);
    } else if (gw_cnode_check_map(c, v, fields, "field")) {
        r->websocket = true;
        gw_cnode_field_duration(c, v, "idle_timeout", true, &r->websocket_idle);
    }
    gw_cnode_path_pop(c, m);
}

/* One route; r->index and r->line are already set. */
static void gw_cdecode_route(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_route_conf_t *r,
                             const gw_config_t *cfg)
{
    static const char *const fields[] = {
        "name",     "hosts",        "paths",         "methods", "headers",
        "upstream", "strip_path",   "preserve_host", "host",    "max_body_size",
        "plugins",  "plugin_order", "websocket",     NULL};
    r->preserve_host = true;
    r->max_body_size = -1;
    r->websocket_idle = 300;
    if (gw_cnode_check_map(c, n, fields, "field")) {
        gw_cnode_field_str(c, n, "name", &r->name);
        gw_cdecode_names(c, n, "hosts", true, &r->hosts, &r->nhosts);
        gw_cdecode_paths(c, n, r);
        gw_cdecode_names(c, n, "methods", false, &r->methods, &r->nmethods);
        gw_cdecode_headers(c, n, r);
        gw_cdecode_route_upstream(c, n, r, cfg);
        gw_cnode_field_bool(c, n, "strip_path", &r->strip_path);
        gw_cnode_field_bool(c, n, "preserve_host", &r->preserve_host);
        gw_cnode_field_str(c, n, "host", &r->host_header);
        gw_cnode_field_size(c, n, "max_body_size", 0, &r->max_body_size);
        gw_cdecode_websocket(c, n, r);
        r->plugins = gw_cdecode_plugins(c, n);
        gw_cdecode_strings(c, n, "plugin_order", &r->plugin_order, &r->nplugin_order);
    }
    if (!r->name) {
        char name[32];
        snprintf(name, sizeof name, "route-%d", r->index);
        r->name = gw_xstrdup(name);
    }
}

/* `routes`: a list; decoded after upstreams so references can be resolved. */
static void gw_cdecode_routes(gw_cnode_ctx_t *c, const gw_cnode_t *root, gw_config_t *cfg)
{
    const gw_cnode_t *v = gw_cnode_field(root, "routes");
    char q[96];
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "routes");
    if (v->kind != GW_CNODE_LIST) {
        if (!v->bad)
            gw_cnode_expect(c, v, "a list of routes");
        gw_cnode_path_pop(c, m);
        return;
    }
    cfg->routes = gw_xcalloc(v->nitems, sizeof(*cfg->routes));
    for (size_t i = 0; i < v->nitems; i++) {
        gw_route_conf_t *r = &cfg->routes[cfg->nroutes++];
        r->index = (int)i;
        r->line = v->items[i]->line;
        size_t mi = gw_cnode_path_index(c, i);
        gw_cdecode_route(c, v->items[i], r, cfg);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg->routes[j].name, r->name) == 0) {
                const gw_cnode_t *name = gw_cnode_field(v->items[i], "name");
                size_t mn = gw_cnode_path_key(c, "name");
                gw_cnode_report(c, name ? name->line : r->line,
                                "duplicate route name %s (first at line %d)",
                                gw_cnode_quote(r->name, q, sizeof q), cfg->routes[j].line);
                gw_cnode_path_pop(c, mn);
                break;
            }
        }
        gw_cnode_path_pop(c, mi);
    }
    gw_cnode_path_pop(c, m);
}

/* ---- loading ---- */

/* Numeric defaults and default strings, before anything is decoded. */
static void gw_config_defaults(gw_config_t *cfg)
{
    cfg->limits.max_header_size = 16384;
    cfg->limits.max_uri_size = 8192;
    cfg->limits.max_body_size = 10485760;
    cfg->limits.max_headers = 100;
    cfg->timeouts.client_header = 60;
    cfg->timeouts.client_body = 60;
    cfg->timeouts.keepalive = 75;
    cfg->timeouts.send = 60;
    cfg->timeouts.drain = 30;
    cfg->timeouts.watchdog = 1;
    cfg->timeouts.tls_handshake = 10;
    cfg->access_log.enabled = true;
    cfg->access_log.path = gw_xstrdup("stdout");
    cfg->error_log.path = gw_xstrdup("stderr");
    cfg->error_log.level = GW_LOG_INFO;
    cfg->pid_file = gw_xstrdup("logs/moongate.pid");
}

/* Decode the whole document (NULL for an empty one) into cfg. */
static void gw_cdecode(gw_cnode_ctx_t *c, const gw_cnode_t *root, gw_config_t *cfg)
{
    static const char *const fields[] = {
        "listen",   "workers",      "status",       "admin",     "redis",     "limits",
        "timeouts", "access_log",   "error_log",    "pid_file",  "upstreams", "routes",
        "plugins",  "plugin_paths", "shared_dicts", "consumers", NULL};
    bool pid_enabled = true;
    gw_config_defaults(cfg);
    if (root && root->kind != GW_CNODE_NULL && gw_cnode_check_map(c, root, fields, "field")) {
        gw_cdecode_listens(c, root, cfg);
        gw_cdecode_workers(c, root, cfg);
        gw_cdecode_status_admin(c, root, cfg);
        gw_cdecode_redis(c, root, cfg);
        gw_cdecode_limits(c, root, cfg);
        gw_cdecode_timeouts(c, root, cfg);
        gw_cdecode_switchable_path(c, root, "access_log", &cfg->access_log.enabled,
                                   &cfg->access_log.path);
        gw_cdecode_error_log(c, root, cfg);
        gw_cdecode_switchable_path(c, root, "pid_file", &pid_enabled, &cfg->pid_file);
        gw_cdecode_upstreams(c, root, cfg);
        gw_cdecode_routes(c, root, cfg);
        cfg->plugins = gw_cdecode_plugins(c, root);
        gw_cdecode_strings(c, root, "plugin_paths", &cfg->plugin_paths, &cfg->nplugin_paths);
        gw_cdecode_shared_dicts(c, root, cfg);
        gw_cdecode_consumers(c, root, cfg);
    } else {
        gw_cdecode_workers(c, NULL, cfg);
    }
    if (cfg->nlistens == 0 && !gw_cnode_field(root, "listen")) {
        /* No `listen`: serve on every IPv4 address, port 8080. */
        cfg->listens = gw_xcalloc(1, sizeof(*cfg->listens));
        cfg->listens[0].addr.host = gw_xstrdup("0.0.0.0");
        cfg->listens[0].addr.port = 8080;
        cfg->listens[0].backlog = 511;
        cfg->nlistens = 1;
    }
}

gw_config_t *gw_config_load_string(const char *name, const char *text, size_t len,
                                   gw_config_errors_t *errs)
{
    size_t start = errs->count;
    gw_cnode_t *root;
    gw_cnode_error_t perr;
    if (gw_cnode_parse(text, len, &root, &perr) != GW_OK) {
        gw_cnode_add_error(errs, name, perr.line, "", perr.message);
        return NULL;
    }
    gw_cnode_ctx_t c = {.file = name, .errs = errs};
    gw_config_t *cfg = gw_xcalloc(1, sizeof(*cfg));
    cfg->file = gw_xstrdup(name);
    if (root)
        gw_cnode_substitute_env(&c, root);
    gw_cdecode(&c, root, cfg);
    cfg->doc = root; /* plugin settings point into it */
    if (errs->count > start) {
        gw_config_sort_errors(errs, start);
        gw_config_free(cfg);
        return NULL;
    }
    return cfg;
}

/*
 * Read a whole file into a new buffer. Returns 0, or an errno value with
 * *what set to "open" or "read" (EFBIG past GW_CONFIG_FILE_MAX).
 */
static int gw_config_read_file(const char *file, char **text, size_t *len, const char **what)
{
    size_t cap = 4096, n = 0;
    *what = "open";
    FILE *f = fopen(file, "rb");
    if (!f)
        return errno;
    *what = "read";
    char *buf = gw_xmalloc(cap);
    int err = 0;
    for (;;) {
        if (n == cap) {
            if (cap >= GW_CONFIG_FILE_MAX) {
                err = EFBIG;
                break;
            }
            buf = gw_xrealloc(buf, cap *= 2);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            err = ferror(f) ? (errno ? errno : EIO) : 0;
            break;
        }
    }
    fclose(f);
    if (err) {
        free(buf);
        return err;
    }
    *text = buf;
    *len = n;
    return 0;
}

gw_config_t *gw_config_load(const char *file, gw_config_errors_t *errs)
{
    char *text = NULL, msg[256];
    size_t len = 0;
    const char *what;
    int err = gw_config_read_file(file, &text, &len, &what);
    if (err) {
        snprintf(msg, sizeof msg, "cannot %s: %s", what, strerror(err));
        gw_cnode_add_error(errs, file, 0, "", msg);
        return NULL;
    }
    gw_config_t *cfg = gw_config_load_string(file, text, len, errs);
    free(text);
    return cfg;
}

static void gw_upstream_conf_free(gw_upstream_conf_t *u)
{
    free(u->name);
    for (size_t i = 0; i < u->ntargets; i++)
        free(u->targets[i].host);
    free(u->targets);
    free(u->hash_name);
    free(u->active.path);
    gw_tls_upstream_conf_free(&u->tls);
}

static void gw_route_conf_free(gw_route_conf_t *r)
{
    free(r->name);
    for (size_t i = 0; i < r->nhosts; i++)
        free(r->hosts[i]);
    free(r->hosts);
    for (size_t i = 0; i < r->npaths; i++)
        free(r->paths[i].pattern);
    free(r->paths);
    for (size_t i = 0; i < r->nmethods; i++)
        free(r->methods[i]);
    free(r->methods);
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->upstream);
    free(r->host_header);
    for (size_t i = 0; i < r->nplugin_order; i++)
        free(r->plugin_order[i]);
    free(r->plugin_order);
}

void gw_config_free(gw_config_t *cfg)
{
    if (!cfg)
        return;
    free(cfg->file);
    for (size_t i = 0; i < cfg->nlistens; i++) {
        free(cfg->listens[i].addr.host);
        gw_tls_conf_free(cfg->listens[i].tls);
    }
    free(cfg->listens);
    free(cfg->status_listen.host);
    free(cfg->admin_listen.host);
    free(cfg->admin_token);
    free(cfg->redis_url);
    for (size_t i = 0; i < cfg->nupstreams; i++)
        gw_upstream_conf_free(&cfg->upstreams[i]);
    free(cfg->upstreams);
    for (size_t i = 0; i < cfg->nroutes; i++)
        gw_route_conf_free(&cfg->routes[i]);
    free(cfg->routes);
    free(cfg->access_log.path);
    free(cfg->error_log.path);
    free(cfg->pid_file);
    for (size_t i = 0; i < cfg->nshared_dicts; i++)
        free(cfg->shared_dicts[i].name);
    free(cfg->shared_dicts);
    for (size_t i = 0; i < cfg->nplugin_paths; i++)
        free(cfg->plugin_paths[i]);
    free(cfg->plugin_paths);
    gw_cnode_free(cfg->doc);
    free(cfg);
}

void gw_config_error_format(const gw_config_error_t *e, char *buf, size_t size)
{
    if (size == 0)
        return;
    if (e->path && e->path[0])
        snprintf(buf, size, "%s:%d: %s: %s", e->file, e->line, e->path, e->message);
    else
        snprintf(buf, size, "%s:%d: %s", e->file, e->line, e->message);
}

void gw_config_errors_free(gw_config_errors_t *errs)
{
    for (size_t i = 0; i < errs->count; i++) {
        free(errs->items[i].file);
        free(errs->items[i].path);
        free(errs->items[i].message);
    }
    free(errs->items);
    errs->items = NULL;
    errs->count = 0;
}

const gw_upstream_conf_t *gw_config_upstream(const gw_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nupstreams; i++)
        if (strcmp(cfg->upstreams[i].name, name) == 0)
            return &cfg->upstreams[i];
    return NULL;
}
