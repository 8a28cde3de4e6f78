/*
 * A worker process: one libev loop serving client connections accepted on
 * its own SO_REUSEPORT sockets, proxying them to upstream targets. The
 * structures here are shared by the worker's files: gw_worker.c (loop,
 * accept, shutdown), gw_conn.c (client side), gw_proxy.c (upstream side),
 * gw_upstream.c (targets and keep-alive pools).
 */
#ifndef GW_WORKER_H
#define GW_WORKER_H

#include "gw_balancer.h"
#include "gw_buf.h"
#include "gw_config.h"
#include "gw_health.h"
#include "gw_router.h"

#include <ev.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <sys/socket.h>

typedef struct gw_worker_s gw_worker_t;
typedef struct gw_conn_s gw_conn_t;
typedef struct gw_req_s gw_req_t;
typedef struct gw_upconn_s gw_upconn_t;
typedef struct gw_target_s gw_target_t;
typedef struct gw_upstream_s gw_upstream_t;

/* One header of a parsed message: slices of the connection's buffer. */
typedef struct {
    gw_str_t name;
    gw_str_t value;
} gw_header_t;

/* A header change made by a plugin, applied when a head is written. */
enum { GW_HDR_SET = 0, GW_HDR_ADD = 1, GW_HDR_CLEAR = 2 };
enum { GW_SIDE_UPSTREAM = 0, GW_SIDE_RESPONSE = 1, GW_SIDE_EXIT = 2 };
typedef struct {
    gw_str_t name, value; /* bytes in the request's Lua arena */
    uint8_t op, side;
} gw_hdr_op_t;

#define GW_MAX_HDR_OPS 64

struct lua_State;
struct gw_lua_s;
struct gw_tunnel_s;
struct ssl_st;
struct ssl_session_st;

/* An upstream connection; idle ones wait in their target's pool. */
struct gw_upconn_s {
    gw_worker_t *w;
    gw_target_t *target;
    gw_req_t *req;            /* the request using it; NULL while idle */
    gw_upconn_t *prev, *next; /* idle list */
    ev_io io;
    ev_timer timer;
    int fd;
    unsigned requests; /* requests served on this connection */
    bool connecting;   /* TCP connect, then TLS handshake, in progress */
    bool handshaking;  /* connected, TLS handshake in progress */
    /* TLS upstreams (gw_tls_upstream.c): the connection's SSL object, and
     * the socket event the last TLS read / write waits for (0: none). */
    struct ssl_st *ssl;
    uint8_t tls_rwant, tls_wwant;
};

struct gw_target_s {
    gw_upstream_t *up;
    int index;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    bool resolved;
    char name[80];     /* "host:port" */
    gw_upconn_t *idle; /* most recently used first */
    unsigned nidle;
    struct ssl_session_st *tls_session; /* last TLS session, offered again */
    gw_target_t *next_direct;           /* the worker's list of set_target targets */
    double resolved_at;                 /* set_target targets: when the name was resolved */
};

struct gw_upstream_s {
    const gw_upstream_conf_t *conf;
    gw_balancer_t *balancer;
    gw_health_t *health;
    gw_target_t *targets;
    size_t ntargets;
    int metrics_slot;
};

typedef enum {
    GW_BODY_NONE = 0,
    GW_BODY_LENGTH,  /* Content-Length */
    GW_BODY_CHUNKED, /* Transfer-Encoding: chunked */
    GW_BODY_EOF,     /* response delimited by the upstream closing */
} gw_body_mode_t;

/* Per-request state; recycled through the worker's free list. */
struct gw_req_s {
    gw_conn_t *c;
    gw_req_t *next_free;

    /* Client request, parsed in place in c->in. */
    llhttp_t parser;
    gw_header_t *headers; /* capacity: limits.max_headers */
    size_t nheaders;
    gw_str_t method, url, host;
    gw_str_t host_header; /* Host as received (or from an absolute-form target) */
    gw_str_t cur_name, cur_value;
    bool in_name, in_value, url_done;
    int parse_status; /* status to answer when a callback rejects */
    size_t head_len;  /* bytes of the head at the start of c->in */
    char *path;       /* normalised path, capacity limits.max_uri_size + 1 */
    size_t path_len;
    gw_str_t query;
    bool has_query;
    char request_id[65]; /* ours, or the client's X-Request-Id */

    /* Request body, forwarded as received (framing preserved). */
    gw_body_mode_t body_mode;
    int64_t body_limit;    /* 0: unlimited */
    int64_t body_received; /* decoded bytes so far */
    size_t body_parsed;    /* offset in c->in up to which llhttp has run */
    size_t body_sent;      /* offset in c->in up to which bytes went upstream */
    size_t msg_end;        /* offset where the request ends, once body_done */
    bool body_done;
    bool body_discarded; /* body bytes were dropped after sending: no replay */
    bool expect_continue;

    /* Routing and upstream. */
    gw_route_match_t match;
    int route_slot;
    gw_upstream_t *up;
    gw_target_t *target;
    gw_upconn_t *uc;
    uint64_t tried;
    int retries_left;
    bool sent_any;     /* request bytes were written to the current upstream */
    bool head_sent_up; /* the whole upstream request head was written */
    gw_buf_t *out;     /* upstream request head, then the client response head */
    size_t out_sent;

    /* Upstream response. */
    llhttp_t rparser;
    gw_buf_t *rin;
    gw_header_t *rheaders;
    size_t nrheaders;
    gw_str_t rstatus_text;
    gw_body_mode_t rbody_mode;
    bool rhead_done, rdone, rdecode;
    bool rgot;          /* a response byte was read on this attempt */
    size_t rparsed;     /* offset in rin parsed so far */
    size_t rsend_start; /* bytes [rsend_start, rsend_end) go to the client */
    size_t rsend_end;
    size_t rdec_end;     /* decoding: end of the compacted body bytes */
    int status;          /* status sent to the client */
    bool head_to_client; /* response head bytes were written to the client */
    bool close_after;    /* close the client connection after this response */
    bool upstream_reusable;

    uint64_t bytes_sent;
    double t_start, t_upstream, t_upstream_done;

    /* Upgrade (gw_tunnel.c). */
    bool upgrade;               /* a WebSocket upgrade its route allows */
    struct gw_tunnel_s *tunnel; /* after a 101: the client <-> upstream tunnel */
    uint64_t tunnel_received;   /* bytes read from the client over the tunnel */

    /* Plugins (gw_lua.c, gw_lua_pdk.c). */
    gw_worker_t *w;
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } peer;                   /* the client, kept for the log phase */
    struct lua_State *lua_co; /* the running or waiting coroutine */
    int lua_co_ref;           /* registry reference; 0 = none */
    int lua_slot; /* key of this structure's ctx in the runtime's ctxs (kept on reuse) */
    bool lua_ctx; /* the request's ctx table may exist */
    int lua_phase;
    bool lua_waiting;
    bool detached;                   /* log phase: the connection went on without it */
    gw_req_t *task_prev, *task_next; /* in w->tasks while detached */
    ev_timer lua_timer;
    void (*lua_cancel)(gw_req_t *r); /* cancels what the coroutine waits on */
    void *lua_wait;                  /* what it waits on (e.g. HTTP calls) */
    gw_buf_t *lua_arena;             /* bytes of header changes and of the exit */
    gw_hdr_op_t *hdr_ops;
    size_t nhdr_ops;
    int exit_status; /* moongate.response.exit */
    char *exit_body;
    size_t exit_body_len;
    gw_str_t up_path;   /* moongate.upstream.set_path, in the arena */
    gw_str_t up_query;  /* moongate.upstream.set_query, in the arena */
    gw_str_t up_method; /* moongate.upstream.set_method, in the arena */
    bool up_query_set;
    /* Per-request upstream settings from plugins; 0 keeps the upstream's. */
    int up_index; /* 1 + index of the upstream to use */
    double to_connect, to_send, to_read;
    int retries; /* with retries_set */
    bool retries_set;
    bool body_waiting; /* a plugin waits for the whole request body */
    char *body_copy;   /* the decoded body, for moongate.request.get_body */
    size_t body_copy_len;
    gw_buf_t *held_in; /* the request head, kept for the log phase */
    int timer_id;      /* the moongate.timer this task runs, or 0 */

    /* Response body filters (gw_bfilter.c): the body goes through the
     * body_filter phase, re-framed (chunked, or close-delimited for 1.0). */
    bool bfilter;     /* this response's body goes through body_filter */
    bool bf_running;  /* the body_filter phase runs or waits */
    bool bf_eof_done; /* the last call (eof) ended */
    bool bf_started;  /* the response head may go out */
    size_t rbase;     /* offset in rin where body bytes start after a refill */
    char *bf_data;    /* filtered bytes, framed, waiting for the client */
    size_t bf_len, bf_cap, bf_sent;

    /* moongate.upstream.set_body: the body sent upstream instead. */
    char *up_body;
    size_t up_body_len, up_body_sent;
    bool up_body_set;
    bool up_body_wait; /* waiting for the client's body to be read */
    /* moongate.upstream.set_target: a target outside the config. */
    char *direct_host;
    uint16_t direct_port;
    bool direct_owned; /* r->target is this request's own (not cached) */
    /* TLS (gw_tls.c): kept with the request for every phase, log included. */
    bool tls;                    /* came over a TLS listener */
    struct x509_st *client_cert; /* the client's certificate (a reference), or NULL */
    long client_verify;          /* its verification result (X509_V_OK...) */
};

typedef enum {
    GW_CONN_IDLE = 0, /* keep-alive, waiting for a request; holds no buffer */
    GW_CONN_HEAD,     /* reading a request head */
    GW_CONN_PROXY,    /* a request is being proxied */
    GW_CONN_RESPOND,  /* writing a response generated by the gateway */
    GW_CONN_TUNNEL,   /* an upgraded connection relaying bytes (gw_tunnel.c) */
} gw_conn_state_t;

/* A client connection. Kept small: idle keep-alive connections are many. */
struct gw_conn_s {
    gw_worker_t *w;
    gw_conn_t *prev, *next; /* the worker's list of connections */
    gw_buf_t *in;
    gw_req_t *req;
    ev_io io;
    ev_timer timer;
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } peer;
    int fd;
    uint16_t requests;
    uint8_t state;
    bool closing;
    uint8_t tls_flags;  /* gw_tls.c: handshake and read/write interest state */
    bool plain_on_tls;  /* plain HTTP came to a TLS listener: answer 400 */
    struct ssl_st *ssl; /* TLS connections (gw_tls.c); NULL: plain socket */
};

struct gw_worker_s {
    struct ev_loop *loop;
    gw_config_t *cfg;
    gw_router_t *router;
    struct gw_lua_s *lua; /* NULL when no route has plugins */
    int *route_slots;     /* metrics slot of each route, by route index */
    gw_upstream_t *upstreams;
    size_t nupstreams;
    gw_target_t *direct; /* targets of moongate.upstream.set_target */
    size_t ndirect;
    int index;
    int area; /* this process's slot in the shared metrics and heartbeats */

    int *listen_fds;
    ev_io *listeners;
    size_t nlisteners;

    gw_buf_pool_t bufs;
    gw_req_t *free_reqs;
    int nreq_slots;   /* request structures made so far (their lua_slot) */
    gw_conn_t *conns; /* every open client connection */
    size_t nconns;
    size_t ntasks;   /* log phases and timer tasks still running */
    gw_req_t *tasks; /* those tasks (linked by task_prev/task_next) */

    ev_signal sig_term, sig_quit, sig_int;
    ev_timer flush_timer;
    ev_timer drain_timer;
    bool stopping;
    uint64_t rng[2];
};

/* ---- gw_worker.c ---- */

/*
 * Run a worker until it is told to stop: cfg is owned by the caller and
 * must outlive the call; listen_fds are this worker's listening sockets, one
 * per cfg->listens entry; metrics_area is this process's own area in the
 * shared metrics. Returns the process exit code.
 */
int gw_worker_run(gw_config_t *cfg, int index, int metrics_area, int *listen_fds);

/* Write a fresh request id (16 hex digits and a NUL) into out. */
void gw_worker_request_id(gw_worker_t *w, char out[17]);

/* Set the events an ev_io waits for, restarting it only on a change. */
void gw_io_set(struct ev_loop *loop, ev_io *io, int events);

/* ---- gw_conn.c (client side) ---- */

/* A connection accepted on listener l (TLS when l->tls is set). */
void gw_conn_accept(gw_worker_t *w, int fd, const struct sockaddr *sa, socklen_t len,
                    const gw_listen_conf_t *l);
/* Close every idle connection; active ones close when their request ends. */
void gw_conn_close_idle(gw_worker_t *w);
/* Close a connection now, aborting its request. */
void gw_conn_close(gw_conn_t *c);
/* Log the current request (response cut short) and close the connection. */
void gw_conn_abort(gw_conn_t *c);
/* Answer the current request with a JSON error and end it. */
void gw_conn_error(gw_conn_t *c, int status, const char *message);
/*
 * Write response bytes pending for the client and resume the upstream.
 * Returns GW_OK while the request goes on, GW_DONE once it ended (c may be
 * closed then).
 */
int gw_conn_flush_response(gw_conn_t *c);
/* The request's response was fully written: log, then keep-alive or close. */
void gw_conn_request_done(gw_conn_t *c);
/* Read more request body from the client (the upstream drained it). */
void gw_conn_want_body(gw_conn_t *c);
/* The access phase of r ended: GW_OK goes on to the upstream, GW_DONE
 * means the request was answered. */
void gw_conn_access_done(gw_req_t *r, int rc);
/*
 * The whole request body, for a plugin: GW_OK with *p, *len (decoded;
 * valid until the request ends), GW_DECLINED when it is longer than max,
 * or GW_AGAIN after arranging for gw_lua_wakeup once it has arrived.
 */
int gw_conn_request_body(gw_req_t *r, size_t max, const char **p, size_t *len);
/* Answer r with what moongate.response.exit recorded. */
void gw_conn_exit(gw_req_t *r);
/* A detached request's log phase, or a timer task, ended: free it. */
void gw_conn_task_done(gw_req_t *r);
/* A request structure not tied to a connection (timer tasks); counted in
 * w->ntasks until gw_conn_task_done. */
gw_req_t *gw_conn_task_new(gw_worker_t *w);

/* Bytes of r read from the client: the head, the body (decoded), and what
 * came over its tunnel. */
static inline uint64_t gw_req_bytes_received(const gw_req_t *r)
{
    return (uint64_t)r->head_len + (uint64_t)r->body_received + r->tunnel_received;
}

/* ---- gw_proxy.c (upstream side of a request) ---- */

/* Start proxying c->req (head parsed, route chosen). */
void gw_proxy_start(gw_req_t *r);
/* New request body bytes are in c->in: send what can be sent. */
void gw_proxy_send_body(gw_req_t *r);
/* The client drained the response bytes: read more from the upstream.
 * Returns GW_OK, or GW_DONE when the request ended meanwhile. */
int gw_proxy_resume_response(gw_req_t *r);
/* Abort the upstream side (client went away or errored); frees nothing else. */
void gw_proxy_abort(gw_req_t *r);
/* The header_filter phase ended (GW_OK) or answered the request (GW_DONE). */
void gw_proxy_header_filter_done(gw_req_t *r, int rc);
/* The body_filter phase ended (GW_OK), or the request ended (GW_DONE). */
void gw_proxy_body_filter_done(gw_req_t *r, int rc);

/* ---- gw_upstream.c (targets and keep-alive pools) ---- */

int gw_upstreams_init(gw_worker_t *w, char *err, size_t errlen);
void gw_upstreams_free(gw_worker_t *w);
/* An idle pooled connection to t, detached from the pool, or NULL. */
gw_upconn_t *gw_upstream_pool_get(gw_target_t *t);
/* Put uc back into its target's pool (or close it when the pool is full). */
void gw_upstream_pool_put(gw_upconn_t *uc);
/* Close and free an upstream connection (active or idle). */
void gw_upconn_close(gw_upconn_t *uc);
/* Open a new connection to t; NULL with errno on immediate failure. */
gw_upconn_t *gw_upconn_open(gw_worker_t *w, gw_target_t *t);
/* Close every idle pooled connection (shutdown). */
void gw_upstream_pools_close(gw_worker_t *w);
/*
 * The target of moongate.upstream.set_target for r (r->direct_host and
 * r->direct_port): one the worker keeps (with its keep-alive pool; a name
 * is resolved again after 10 s, with a blocking getaddrinfo), or, when
 * the worker keeps too many already, one of r's own (r->direct_owned).
 */
gw_target_t *gw_upstream_direct(gw_worker_t *w, gw_req_t *r);
/* Free a target gw_upstream_direct made for one request. */
void gw_upstream_direct_free(gw_target_t *t);

/* ---- gw_bfilter.c (response body filters) ---- */

/* Decide whether r's response goes through body_filter (called once its
 * framing is known); sets r->bfilter, r->rdecode and r->close_after. */
void gw_bfilter_framing(gw_req_t *r);
/* Append filtered bytes for the client, framed (a chunk for HTTP/1.1,
 * raw for HTTP/1.0); with eof, the end of the body too. */
void gw_bfilter_output(gw_req_t *r, const char *p, size_t len, bool eof);
/* Everything filtered so far went to the client: empty the output. */
void gw_bfilter_sent(gw_req_t *r);
/* Free what the filters of r hold. */
void gw_bfilter_release(gw_req_t *r);

#endif
