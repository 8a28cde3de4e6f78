/*
 * The typed configuration: what a config file (YAML or JSON) becomes after
 * loading, environment substitution, validation and defaults. Durations are
 * seconds (double), sizes are bytes. Every string is owned by the config and
 * freed by gw_config_free(). Each element remembers the line it came from.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include "gw_core.h"

struct gw_cnode_s; /* the parsed document (gw_config_node.h) */

/* A listening address, from "host:port", "[v6]:port" or ":port". */
typedef struct {
    char *host; /* numeric address; "0.0.0.0" when omitted */
    uint16_t port;
    int line;
} gw_addr_conf_t;

typedef struct {
    gw_addr_conf_t addr;
    int backlog;               /* default 511 */
    struct gw_tls_conf_s *tls; /* `tls` (gw_tls.h); NULL: plain HTTP */
} gw_listen_conf_t;

typedef struct {
    char *host; /* name or address as written */
    uint16_t port;
    int weight; /* default 1, range 1..1000 */
    int line;
} gw_target_conf_t;

typedef enum {
    GW_BALANCE_ROUND_ROBIN = 0, /* smooth weighted round robin */
    GW_BALANCE_LEAST_CONN,
    GW_BALANCE_HASH,
    GW_BALANCE_EWMA,
} gw_balance_t;

typedef enum {
    GW_HASH_ON_IP = 0,
    GW_HASH_ON_HEADER,
    GW_HASH_ON_COOKIE,
} gw_hash_on_t;

/* TLS versions an upstream connection may use (`tls.protocols`). */
enum { GW_TLS_PROTO_TLS12 = 1, GW_TLS_PROTO_TLS13 = 2 };

#define GW_TLS_DEFAULT_CA "/etc/ssl/certs/ca-certificates.crt"

struct ssl_ctx_st; /* OpenSSL's SSL_CTX */

/* An upstream's `tls`: TLS to its targets (gw_tls_upstream.c). */
typedef struct {
    bool enabled;           /* `tls` present and not false */
    bool verify;            /* default true */
    char *ca;               /* CA file; default GW_TLS_DEFAULT_CA */
    char *sni;              /* NULL: the target's host when it is a name */
    char *cert, *key;       /* client certificate and key (mTLS), or NULL */
    unsigned protocols;     /* GW_TLS_PROTO_* bits; default both */
    char *ciphers;          /* TLS 1.2 cipher list; NULL: OpenSSL's default */
    struct ssl_ctx_st *ctx; /* built when the config is loaded */
} gw_upstream_tls_conf_t;

typedef struct {
    char *name;
    gw_target_conf_t *targets;
    size_t ntargets;
    gw_balance_t balance;
    gw_hash_on_t hash_on;   /* with balance: hash; `hash: { on: header, name: X-User }` */
    char *hash_name;        /* header or cookie name, NULL for ip */
    unsigned max_idle;      /* keepalive.max_idle, default 64 */
    double idle_timeout;    /* keepalive.idle_timeout, default 60 */
    double connect_timeout; /* timeouts.connect, default 5 */
    double send_timeout;    /* timeouts.send, default 60 */
    double read_timeout;    /* timeouts.read, default 60 */
    int retries;            /* default 1 */
    struct {
        bool enabled;    /* true when health.active is present */
        char *path;      /* default "/health" */
        double interval; /* default 5 */
        double timeout;  /* default 2 */
        int healthy;     /* consecutive successes to mark up, default 2 */
        int unhealthy;   /* consecutive failures to mark down, default 3 */
    } active;
    struct {
        int failures;    /* 0 disables; default 0 */
        double down_for; /* seconds a target stays down, default 10 */
    } passive;
    gw_upstream_tls_conf_t tls;
    int line;
} gw_upstream_conf_t;

typedef struct {
    char *name;  /* header name as written */
    char *value; /* exact value (case-sensitive) */
} gw_header_match_t;

typedef enum {
    GW_PATH_PREFIX = 0, /* "/users" */
    GW_PATH_EXACT,      /* "=/users" */
    GW_PATH_REGEX,      /* "~^/v[0-9]+/" (PCRE2) */
} gw_path_kind_t;

typedef struct {
    gw_path_kind_t kind;
    char *pattern; /* without the "=" or "~" marker */
} gw_path_conf_t;

typedef struct {
    char *name;   /* default "route-<index>" */
    char **hosts; /* lower-case; "*.example.org" wildcard allowed */
    size_t nhosts;
    gw_path_conf_t *paths;
    size_t npaths;
    char **methods; /* upper-case */
    size_t nmethods;
    gw_header_match_t *headers; /* all must match */
    size_t nheaders;
    char *upstream;        /* upstream name */
    size_t upstream_index; /* index into gw_config_t.upstreams */
    bool strip_path;       /* default false */
    bool preserve_host;    /* default true: forward the client's Host */
    char *host_header;     /* `host:`; when set, Host sent upstream */
    int64_t max_body_size; /* -1: inherit limits.max_body_size */
    bool websocket;        /* `websocket`: true or a map; upgrades are tunnelled */
    double websocket_idle; /* websocket.idle_timeout, default 300 */
    /* `plugins`: a map from plugin name to its config (a map or null), in the
     * document; validated by each plugin's schema when the runtime loads. */
    const struct gw_cnode_s *plugins;
    char **plugin_order; /* `plugin_order`: names, run in this order */
    size_t nplugin_order;
    int index; /* position in routes[] */
    int line;
} gw_route_conf_t;

typedef enum { GW_LOG_ERROR = 0, GW_LOG_WARN, GW_LOG_INFO, GW_LOG_DEBUG } gw_log_level_t;

typedef struct {
    char *file; /* the config file path, as given */

    gw_listen_conf_t *listens;
    size_t nlistens;
    int workers; /* 0 in the file means auto; resolved to cores by the loader */

    bool status_enabled;
    gw_addr_conf_t status_listen; /* status.listen */

    bool admin_enabled;
    gw_addr_conf_t admin_listen;
    char *admin_token;

    char *redis_url; /* NULL when absent */

    gw_upstream_conf_t *upstreams;
    size_t nupstreams;
    gw_route_conf_t *routes;
    size_t nroutes;

    struct {
        size_t max_header_size; /* 431 past it; default 16384 */
        size_t max_uri_size;    /* 414 past it; default 8192 */
        int64_t max_body_size;  /* 413 past it; 0 = unlimited; default 10485760 */
        int max_headers;        /* 431 past it; default 100 */
    } limits;

    struct {
        double client_header; /* 408; default 60 */
        double client_body;   /* 408; default 60 */
        double keepalive;     /* idle keep-alive; default 75 */
        double send;          /* writing to the client; default 60 */
        double drain;         /* graceful stop limit; default 30 */
        double watchdog;      /* a worker silent this long is replaced; default 1; 0: off */
        double tls_handshake; /* TLS listeners: accept to handshake done; default 10 */
    } timeouts;

    struct {
        bool enabled; /* access_log: off → false */
        char *path;   /* "stdout", "stderr" or a file; default "stdout" */
    } access_log;

    struct {
        char *path;           /* "stderr" or a file; default "stderr" */
        gw_log_level_t level; /* default info */
    } error_log;

    char *pid_file; /* default "logs/moongate.pid" relative to cwd; NULL when pid_file: off */

    struct {
        char *name;
        int64_t size; /* bytes of entries */
        int line;
    } * shared_dicts; /* `shared_dicts`: name -> size, shared by all workers */
    size_t nshared_dicts;

    const struct gw_cnode_s *plugins; /* global `plugins`, for every route */
    /* `consumers`: a list of { username, credentials, plugins }, checked by
     * the plugin runtime. */
    const struct gw_cnode_s *consumers;
    char **plugin_paths; /* directories searched for plugins */
    size_t nplugin_paths;
    struct gw_cnode_s *doc; /* the whole document, owned */
} gw_config_t;

/* One error found while loading: "file:line: path: message". */
typedef struct {
    char *file;
    int line;
    char *path; /* e.g. "routes[2].upstream"; "" for the document */
    char *message;
} gw_config_error_t;

typedef struct {
    gw_config_error_t *items;
    size_t count;
} gw_config_errors_t;

/*
 * Load, substitute ${VAR} and ${VAR:-default}, validate and default the
 * config in `file`. Returns a config on success (errs->count == 0), or NULL
 * with every error found appended to errs (never only the first one).
 */
gw_config_t *gw_config_load(const char *file, gw_config_errors_t *errs);

/* Same as gw_config_load, from a string; `name` is used in error messages. */
gw_config_t *gw_config_load_string(const char *name, const char *text, size_t len,
                                   gw_config_errors_t *errs);

void gw_config_free(gw_config_t *cfg);

/* Format one error as "file:line: path: message" into buf. */
void gw_config_error_format(const gw_config_error_t *e, char *buf, size_t size);

void gw_config_errors_free(gw_config_errors_t *errs);

/* Look up an upstream by name; NULL when missing. */
const gw_upstream_conf_t *gw_config_upstream(const gw_config_t *cfg, const char *name);

#endif
