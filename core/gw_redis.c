/*
 * The Redis client declared in gw_redis.h: hiredis meets the libev loop here.
 *
 * A call is in one of three states. PENDING: its commands are on a
 * connection and its timer runs. READY: its outcome (replies copied into the
 * call, or an error) is decided and it waits in r->ready for the ev_check
 * watcher to deliver it. DONE: delivered or cancelled; the call is freed as
 * soon as hiredis has called back for every command it was given
 * (`outstanding`), since hiredis calls back for each one, with a NULL reply
 * when the connection goes away. Every live call is on r->calls so that
 * gw_redis_free can reach them all.
 */
#include "gw_redis.h"
#include "gw_core.h"
#include "gw_log.h"

#include <errno.h>
#include <ev.h>
#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <math.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/un.h>

_Static_assert(GW_REDIS_STRING == REDIS_REPLY_STRING && GW_REDIS_ARRAY == REDIS_REPLY_ARRAY &&
                   GW_REDIS_INTEGER == REDIS_REPLY_INTEGER && GW_REDIS_NIL == REDIS_REPLY_NIL &&
                   GW_REDIS_STATUS == REDIS_REPLY_STATUS && GW_REDIS_ERROR == REDIS_REPLY_ERROR,
               "reply types mirror hiredis");

const char gw_redis_err_timeout[] = "timeout";
const char gw_redis_err_connection_lost[] = "connection lost";
const char gw_redis_err_connection_refused[] = "connection refused";
const char gw_redis_err_connect_failed[] = "connect failed";
const char gw_redis_err_connect_timeout[] = "connect timeout";
const char gw_redis_err_auth_failed[] = "authentication failed";
const char gw_redis_err_select_failed[] = "select failed";

#define GW_REDIS_DEFAULT_PORT            6379
#define GW_REDIS_DEFAULT_CONNECT_TIMEOUT 2.0

enum { CALL_PENDING, CALL_READY, CALL_DONE };
enum { CALL_COMMAND, CALL_PIPELINE, CALL_SCRIPT };

typedef struct gw_redis_link_s {
    struct gw_redis_link_s *prev, *next;
} gw_redis_link_t;

/* Where the server is, parsed from the URL. */
typedef struct {
    char *host; /* TCP; NULL for a unix socket */
    int port;
    char *path; /* unix socket */
    char *user; /* NULL: AUTH password, for the default user */
    char *password;
    int db;
    char *name; /* "host:port" or the socket path, for logs */
} gw_redis_addr_t;

typedef struct {
    gw_redis_t *r;
    redisAsyncContext *ac;   /* NULL when closed */
    size_t inflight;         /* callers' commands hiredis has not answered */
    const char *fail_reason; /* what the commands in flight fail with when ac goes */
    ev_timer connect_timer;
} gw_redis_conn_t;

struct gw_redis_s {
    struct ev_loop *loop;
    gw_redis_addr_t addr;
    double connect_timeout;
    gw_redis_conn_t *conns;
    size_t nconns;
    size_t next; /* round-robin start of the connection scan */
    gw_redis_link_t calls;
    gw_redis_link_t ready;
    ev_check deliver;
    ev_idle wake;
    bool delivering;     /* inside deliver_cb */
    bool free_requested; /* gw_redis_free was called from a callback */
};

/* What a script call needs to resend after NOSCRIPT: preformatted commands. */
typedef struct {
    char *evalsha;
    size_t evalsha_len;
    char *load;
    size_t load_len;
} gw_redis_script_t;

struct gw_redis_call_s {
    gw_redis_link_t link;  /* on r->calls while allocated */
    gw_redis_link_t ready; /* on r->ready or a delivery batch while READY */
    gw_redis_t *r;
    gw_redis_cb cb;
    void *ud;
    ev_timer timer;
    int state;
    int kind;
    int stage;       /* CALL_SCRIPT: 0 EVALSHA sent, 1 SCRIPT LOAD + EVALSHA sent */
    int expected;    /* replies expected in the current stage */
    int received;    /* replies received in the current stage */
    int outstanding; /* hiredis callbacks still to come */
    const char *error;
    gw_redis_script_t script;
    gw_redis_reply_t top;    /* CALL_PIPELINE: the ARRAY delivered */
    gw_redis_reply_t *elems; /* its elements, shallow copies of parts[] */
    int nparts;
    gw_redis_reply_t *parts[]; /* one copied reply tree per command */
};

static void link_init(gw_redis_link_t *h)
{
    h->prev = h->next = h;
}

static bool link_empty(const gw_redis_link_t *h)
{
    return h->next == h;
}

static void link_append(gw_redis_link_t *h, gw_redis_link_t *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static void link_remove(gw_redis_link_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    link_init(n);
}

/* Moves every node of `from` to the empty list `to`. */
static void link_move_all(gw_redis_link_t *from, gw_redis_link_t *to)
{
    link_init(to);
    if (link_empty(from))
        return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    link_init(from);
}

static gw_redis_call_t *call_of_link(gw_redis_link_t *l)
{
    return (gw_redis_call_t *)((char *)l - offsetof(gw_redis_call_t, link));
}

static gw_redis_call_t *call_of_ready(gw_redis_link_t *l)
{
    return (gw_redis_call_t *)((char *)l - offsetof(gw_redis_call_t, ready));
}

/* ---- URL ---------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = gw_lower(c);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* A NUL-terminated copy of s[0..n) with %XX decoded; NULL if an escape is bad. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = gw_xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        int hi = i + 2 < n ? hexval(s[i + 1]) : -1, lo = i + 2 < n ? hexval(s[i + 2]) : -1;
        if (hi < 0 || lo < 0) {
            free(out);
            return NULL;
        }
        *o++ = (char)(hi << 4 | lo);
        i += 2;
    }
    *o = '\0';
    return out;
}

/* Parses decimal digits s[0..n) into *v (at most `max`); empty fails. */
static bool parse_uint(const char *s, size_t n, long max, long *v)
{
    if (n == 0 || n > 10)
        return false;
    long long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (s[i] - '0');
    }
    if (x > max)
        return false;
    *v = (long)x;
    return true;
}

static const char *find_last(const char *s, const char *end, char c)
{
    for (const char *p = end; p > s; p--)
        if (p[-1] == c)
            return p - 1;
    return NULL;
}

/* Fills user and password from "[user]:password" in s[0..n). */
static const char *parse_userinfo(const char *s, size_t n, gw_redis_addr_t *a)
{
    const char *colon = memchr(s, ':', n);
    if (!colon)
        return "credentials must be [user]:password";
    if (colon > s && !(a->user = pct_decode(s, (size_t)(colon - s))))
        return "bad percent-encoding in the user";
    if (!(a->password = pct_decode(colon + 1, n - (size_t)(colon + 1 - s))))
        return "bad percent-encoding in the password";
    return NULL;
}

/* Parses what follows "redis://"; returns NULL or what is wrong. */
static const char *parse_tcp(const char *s, gw_redis_addr_t *a)
{
    const char *end = s + strlen(s);
    const char *auth_end = s + strcspn(s, "/?#");
    long v = 0;
    if (*auth_end == '?' || *auth_end == '#')
        return "query and fragment are not supported";
    if (*auth_end == '/' && auth_end + 1 < end) {
        if (!parse_uint(auth_end + 1, (size_t)(end - auth_end - 1), INT_MAX, &v))
            return "the database must be a number";
        a->db = (int)v;
    }
    const char *h = s, *at = find_last(s, auth_end, '@');
    if (at) {
        const char *msg = parse_userinfo(s, (size_t)(at - s), a);
        if (msg)
            return msg;
        h = at + 1;
    }
    const char *host_end, *rest;
    if (*h == '[') {
        host_end = memchr(h, ']', (size_t)(auth_end - h));
        if (!host_end)
            return "unterminated [IPv6] host";
        rest = host_end + 1;
        h++;
    } else {
        host_end = find_last(h, auth_end, ':');
        host_end = host_end ? host_end : auth_end;
        rest = host_end;
    }
    if (host_end == h)
        return "missing host";
    a->host = gw_xstrndup(h, (size_t)(host_end - h));
    a->port = GW_REDIS_DEFAULT_PORT;
    if (rest < auth_end) {
        if (*rest != ':' || !parse_uint(rest + 1, (size_t)(auth_end - rest - 1), 65535, &v) ||
            v == 0)
            return "the port must be 1 to 65535";
        a->port = (int)v;
    }
    return NULL;
}

/* Parses one "key=value" of a unix URL's query. */
static const char *parse_unix_param(const char *s, size_t n, gw_redis_addr_t *a)
{
    const char *eq = memchr(s, '=', n);
    size_t klen = eq ? (size_t)(eq - s) : n;
    const char *val = eq ? eq + 1 : s + n;
    size_t vlen = (size_t)(s + n - val);
    long v;
    char **dst = NULL;
    if (klen == 2 && memcmp(s, "db", 2) == 0) {
        if (!parse_uint(val, vlen, INT_MAX, &v))
            return "the database must be a number";
        a->db = (int)v;
        return NULL;
    }
    if (klen == 4 && memcmp(s, "user", 4) == 0)
        dst = &a->user;
    else if (klen == 8 && memcmp(s, "password", 8) == 0)
        dst = &a->password;
    else
        return "unknown parameter (db, user, password)";
    free(*dst);
    if (!(*dst = pct_decode(val, vlen)))
        return "bad percent-encoding";
    return NULL;
}

/* Parses what follows "unix://"; returns NULL or what is wrong. */
static const char *parse_unix(const char *s, gw_redis_addr_t *a)
{
    size_t plen = strcspn(s, "?");
    if (plen < 2 || s[0] != '/')
        return "the socket path must be absolute (unix:///path)";
    if (plen >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return "the socket path is too long";
    a->path = gw_xstrndup(s, plen);
    for (const char *q = s + plen; *q;) {
        q++;
        size_t n = strcspn(q, "&");
        const char *msg = parse_unix_param(q, n, a);
        if (msg)
            return msg;
        q += n;
    }
    return NULL;
}

static void addr_free(gw_redis_addr_t *a)
{
    free(a->host);
    free(a->path);
    free(a->user);
    free(a->password);
    free(a->name);
    memset(a, 0, sizeof *a);
}

/* Parses `url` into *a; returns NULL or what is wrong (a is then freed). */
static const char *addr_parse(const char *url, gw_redis_addr_t *a)
{
    const char *msg;
    memset(a, 0, sizeof *a);
    if (strncasecmp(url, "redis://", 8) == 0)
        msg = parse_tcp(url + 8, a);
    else if (strncasecmp(url, "unix://", 7) == 0)
        msg = parse_unix(url + 7, a);
    else if (strncasecmp(url, "rediss://", 9) == 0)
        msg = "TLS (rediss://) is not supported";
    else
        msg = "expected redis:// or unix://";
    if (msg) {
        addr_free(a);
        return msg;
    }
    if (a->user && !a->password) {
        addr_free(a);
        return "a user needs a password";
    }
    char name[512];
    if (a->path)
        snprintf(name, sizeof name, "%s", a->path);
    else
        snprintf(name, sizeof name, strchr(a->host, ':') ? "[%s]:%d" : "%s:%d", a->host, a->port);
    a->name = gw_xstrdup(name);
    return NULL;
}

/* ---- reply trees -------------------------------------------------------- */

/* The GW_REDIS_* type of a hiredis reply (NULL reads as NIL). */
static int reply_type(const redisReply *rr)
{
    if (!rr)
        return GW_REDIS_NIL;
    switch (rr->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_ARRAY:
    case REDIS_REPLY_INTEGER:
    case REDIS_REPLY_NIL:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        return rr->type;
    default:
        return rr->element ? GW_REDIS_ARRAY : rr->str ? GW_REDIS_STRING : GW_REDIS_NIL;
    }
}

/* Adds the nodes below rr and the string bytes of its tree to the counts. */
static void reply_measure(const redisReply *rr, size_t *nodes, size_t *bytes)
{
    int type = reply_type(rr);
    if (type == GW_REDIS_ARRAY) {
        *nodes += rr->elements;
        for (size_t i = 0; i < rr->elements; i++)
            reply_measure(rr->element[i], nodes, bytes);
    } else if (type != GW_REDIS_INTEGER && type != GW_REDIS_NIL) {
        *bytes += rr->len + 1;
    }
}

typedef struct {
    gw_redis_reply_t *nodes; /* next free node */
    char *bytes;             /* next free string byte */
} gw_redis_arena_t;

static void reply_fill(gw_redis_reply_t *dst, const redisReply *rr, gw_redis_arena_t *a)
{
    memset(dst, 0, sizeof *dst);
    dst->type = reply_type(rr);
    if (dst->type == GW_REDIS_ARRAY) {
        dst->elements = rr->elements;
        dst->element = rr->elements ? a->nodes : NULL;
        a->nodes += rr->elements;
        for (size_t i = 0; i < rr->elements; i++)
            reply_fill(&dst->element[i], rr->element[i], a);
    } else if (dst->type == GW_REDIS_INTEGER) {
        dst->integer = rr->integer;
    } else if (dst->type != GW_REDIS_NIL) {
        if (rr->len)
            memcpy(a->bytes, rr->str, rr->len);
        a->bytes[rr->len] = '\0';
        dst->str = a->bytes;
        dst->len = rr->len;
        a->bytes += rr->len + 1;
    }
}

/* A copy of a hiredis reply tree in one block (nodes, then strings): free() it. */
static gw_redis_reply_t *reply_copy(const redisReply *rr)
{
    size_t nodes = 1, bytes = 0;
    reply_measure(rr, &nodes, &bytes);
    gw_redis_reply_t *root = gw_xmalloc(nodes * sizeof *root + bytes);
    gw_redis_arena_t a = {root + 1, (char *)(root + nodes)};
    reply_fill(root, rr, &a);
    return root;
}

/* ---- calls -------------------------------------------------------------- */

static void call_free(gw_redis_call_t *c)
{
    for (int i = 0; i < c->nparts; i++)
        free(c->parts[i]);
    free(c->elems);
    redisFreeCommand(c->script.evalsha);
    redisFreeCommand(c->script.load);
    link_remove(&c->link);
    free(c);
}

/* After delivery or cancel: drops the results, frees c unless hiredis still owes callbacks. */
static void call_release(gw_redis_call_t *c)
{
    if (c->outstanding == 0) {
        call_free(c);
        return;
    }
    for (int i = 0; i < c->nparts; i++) {
        free(c->parts[i]);
        c->parts[i] = NULL;
    }
    free(c->elems);
    c->elems = NULL;
    redisFreeCommand(c->script.evalsha);
    redisFreeCommand(c->script.load);
    memset(&c->script, 0, sizeof c->script);
}

/* Decides a PENDING call's outcome (error NULL: the replies are in parts[]) and queues it. */
static void call_finish(gw_redis_call_t *c, const char *error)
{
    gw_redis_t *r = c->r;
    if (c->state != CALL_PENDING)
        return;
    ev_timer_stop(r->loop, &c->timer);
    c->state = CALL_READY;
    c->error = error;
    link_append(&r->ready, &c->ready);
    if (!ev_is_active(&r->deliver)) {
        ev_check_start(r->loop, &r->deliver);
        ev_idle_start(r->loop, &r->wake);
    }
}

static void on_call_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    call_finish(w->data, gw_redis_err_timeout);
}

static gw_redis_call_t *call_new(gw_redis_t *r, int kind, int nparts, double timeout,
                                 gw_redis_cb cb, void *ud)
{
    gw_redis_call_t *c = gw_xcalloc(1, sizeof *c + (size_t)nparts * sizeof c->parts[0]);
    c->r = r;
    c->cb = cb;
    c->ud = ud;
    c->kind = kind;
    c->nparts = nparts;
    c->expected = nparts;
    c->state = CALL_PENDING;
    link_append(&r->calls, &c->link);
    link_init(&c->ready);
    ev_timer_init(&c->timer, on_call_timeout, timeout, 0.);
    c->timer.data = c;
    ev_timer_start(r->loop, &c->timer);
    return c;
}

/* The reply a READY call without error delivers; the call owns it. */
static const gw_redis_reply_t *call_result(gw_redis_call_t *c)
{
    if (c->kind != CALL_PIPELINE)
        return c->parts[0];
    c->elems = gw_xcalloc((size_t)c->nparts, sizeof *c->elems);
    for (int i = 0; i < c->nparts; i++)
        c->elems[i] = *c->parts[i];
    c->top = (gw_redis_reply_t){
        .type = GW_REDIS_ARRAY, .elements = (size_t)c->nparts, .element = c->elems};
    return &c->top;
}

static void redis_destroy(gw_redis_t *r);

/*
 * The ev_check watcher: delivers the calls that were READY when it started
 * (calls finished by the callbacks wait for the next loop iteration). Stops
 * at once when a callback frees the client.
 */
static void deliver_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    gw_redis_t *r = w->data;
    gw_redis_link_t batch;
    link_move_all(&r->ready, &batch);
    ev_check_stop(loop, &r->deliver);
    ev_idle_stop(loop, &r->wake);
    r->delivering = true;
    while (!link_empty(&batch)) {
        gw_redis_call_t *c = call_of_ready(batch.next);
        link_remove(&c->ready);
        c->state = CALL_DONE;
        c->cb(c->ud, c->error ? NULL : call_result(c), c->error);
        if (r->free_requested) {
            redis_destroy(r);
            return;
        }
        call_release(c);
    }
    r->delivering = false;
}

/* The ev_idle watcher only keeps the loop from blocking while calls are READY. */
static void wake_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
}

/* ---- connections -------------------------------------------------------- */

/* Closes a connection now (or, inside a hiredis callback, when it returns). */
static void conn_close(gw_redis_conn_t *cn, const char *reason)
{
    redisAsyncContext *ac = cn->ac;
    if (!ac)
        return;
    cn->ac = NULL;
    cn->fail_reason = reason;
    ev_timer_stop(cn->r->loop, &cn->connect_timer);
    redisAsyncFree(ac);
}

/* The error for a connection that could not be established. */
static const char *connect_error(const redisContext *c)
{
    if (c->err == REDIS_ERR_IO && (strcmp(c->errstr, strerror(ECONNREFUSED)) == 0 ||
                                   strcmp(c->errstr, strerror(ENOENT)) == 0))
        return gw_redis_err_connection_refused;
    return gw_redis_err_connect_failed;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    gw_redis_conn_t *cn = ac->data;
    if (cn->ac != ac)
        return;
    ev_timer_stop(cn->r->loop, &cn->connect_timer);
    if (status == REDIS_OK)
        return;
    /* hiredis frees ac on return, after failing its commands with fail_reason. */
    cn->fail_reason = connect_error(&ac->c);
    cn->ac = NULL;
    gw_log_warn("redis %s: cannot connect: %s", cn->r->addr.name, ac->c.errstr);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    gw_redis_conn_t *cn = ac->data;
    if (cn->ac != ac)
        return;
    cn->ac = NULL;
    ev_timer_stop(cn->r->loop, &cn->connect_timer);
    if (status != REDIS_OK)
        gw_log_warn("redis %s: connection lost: %s", cn->r->addr.name, ac->c.errstr);
}

static void on_connect_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    gw_redis_conn_t *cn = w->data;
    gw_log_warn("redis %s: connect timed out", cn->r->addr.name);
    conn_close(cn, gw_redis_err_connect_timeout);
}

/* Reply to AUTH or SELECT; privdata is the error the connection fails with if refused. */
static void on_handshake(redisAsyncContext *ac, void *reply, void *privdata)
{
    gw_redis_conn_t *cn = ac->data;
    const redisReply *rr = reply;
    if (!rr || rr->type != REDIS_REPLY_ERROR || cn->ac != ac)
        return;
    gw_log_error("redis %s: %s: %s", cn->r->addr.name, (const char *)privdata, rr->str);
    conn_close(cn, privdata);
}

/* Sends AUTH and SELECT as the connection's first commands. */
static void conn_handshake(gw_redis_conn_t *cn)
{
    const gw_redis_addr_t *a = &cn->r->addr;
    if (a->password) {
        const char *argv[3] = {"AUTH"};
        int argc = 1;
        if (a->user)
            argv[argc++] = a->user;
        argv[argc++] = a->password;
        redisAsyncCommandArgv(cn->ac, on_handshake, (void *)gw_redis_err_auth_failed, argc, argv,
                              NULL);
    }
    if (a->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", a->db);
        const char *argv[2] = {"SELECT", db};
        redisAsyncCommandArgv(cn->ac, on_handshake, (void *)gw_redis_err_select_failed, 2, argv,
                              NULL);
    }
}

/* Starts connecting; returns NULL, or the error when it fails at once. */
static const char *conn_open(gw_redis_conn_t *cn)
{
    gw_redis_t *r = cn->r;
    redisAsyncContext *ac = r->addr.path ? redisAsyncConnectUnix(r->addr.path)
                                         : redisAsyncConnect(r->addr.host, r->addr.port);
    if (!ac)
        return gw_redis_err_connect_failed;
    if (ac->err) {
        const char *error = connect_error(&ac->c);
        gw_log_warn("redis %s: cannot connect: %s", r->addr.name, ac->c.errstr);
        redisAsyncFree(ac);
        return error;
    }
    ac->data = cn;
    redisLibevAttach(r->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    cn->ac = ac;
    cn->fail_reason = NULL;
    conn_handshake(cn);
    ev_timer_set(&cn->connect_timer, r->connect_timeout, 0.);
    ev_timer_start(r->loop, &cn->connect_timer);
    return NULL;
}

/*
 * The connection for a new call: an idle open one, else one to open, else
 * the least busy. Scans from a rotating start so that ties spread.
 */
static gw_redis_conn_t *conn_pick(gw_redis_t *r)
{
    gw_redis_conn_t *best = NULL, *closed = NULL;
    for (size_t k = 0; k < r->nconns; k++) {
        gw_redis_conn_t *cn = &r->conns[(r->next + k) % r->nconns];
        if (!cn->ac) {
            closed = closed ? closed : cn;
        } else if (!best || cn->inflight < best->inflight) {
            best = cn;
        }
    }
    r->next = (r->next + 1) % r->nconns;
    if (best && (best->inflight == 0 || !closed))
        return best;
    return closed;
}

/* An open (or opening) connection for call c; NULL after failing c. */
static gw_redis_conn_t *call_conn(gw_redis_call_t *c)
{
    gw_redis_conn_t *cn = conn_pick(c->r);
    const char *error = cn->ac ? NULL : conn_open(cn);
    if (error) {
        call_finish(c, error);
        return NULL;
    }
    return cn;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

/* Queues one command of call c on ac; false if hiredis refuses (connection going away). */
static bool conn_send(redisAsyncContext *ac, gw_redis_call_t *c, int argc, const char **argv,
                      const size_t *argvlen)
{
    if (redisAsyncCommandArgv(ac, on_reply, c, argc, argv, argvlen) != REDIS_OK)
        return false;
    ((gw_redis_conn_t *)ac->data)->inflight++;
    c->outstanding++;
    return true;
}

static bool conn_send_formatted(redisAsyncContext *ac, gw_redis_call_t *c, const char *cmd,
                                size_t len)
{
    if (redisAsyncFormattedCommand(ac, on_reply, c, cmd, len) != REDIS_OK)
        return false;
    ((gw_redis_conn_t *)ac->data)->inflight++;
    c->outstanding++;
    return true;
}

static bool is_noscript(const redisReply *rr)
{
    return rr->type == REDIS_REPLY_ERROR && rr->len >= 8 && memcmp(rr->str, "NOSCRIPT", 8) == 0;
}

/*
 * A reply for a script call. After NOSCRIPT, sends SCRIPT LOAD and EVALSHA
 * again; then keeps the SCRIPT LOAD error if there is one, else the result.
 */
static void script_reply(redisAsyncContext *ac, gw_redis_call_t *c, const redisReply *rr)
{
    if (c->stage == 0 && is_noscript(rr)) {
        c->stage = 1;
        c->expected = 2;
        c->received = 0;
        if (!conn_send_formatted(ac, c, c->script.load, c->script.load_len) ||
            !conn_send_formatted(ac, c, c->script.evalsha, c->script.evalsha_len))
            call_finish(c, gw_redis_err_connection_lost);
        return;
    }
    c->received++;
    if (c->stage == 1 && c->received == 1) {
        if (rr->type == REDIS_REPLY_ERROR)
            c->parts[0] = reply_copy(rr);
        return;
    }
    if (!c->parts[0])
        c->parts[0] = reply_copy(rr);
    call_finish(c, NULL);
}

/* hiredis's callback for every command of every call (reply NULL: connection gone). */
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    gw_redis_conn_t *cn = ac->data;
    gw_redis_call_t *c = privdata;
    cn->inflight--;
    c->outstanding--;
    if (c->state != CALL_PENDING) {
        if (c->state == CALL_DONE && c->outstanding == 0)
            call_free(c);
        return;
    }
    if (!reply) {
        call_finish(c, cn->fail_reason ? cn->fail_reason : gw_redis_err_connection_lost);
        return;
    }
    if (c->kind == CALL_SCRIPT) {
        script_reply(ac, c, reply);
        return;
    }
    c->parts[c->received++] = reply_copy(reply);
    if (c->received == c->expected)
        call_finish(c, NULL);
}

/* ---- API ---------------------------------------------------------------- */

gw_redis_t *gw_redis_new(struct ev_loop *loop, const char *url, size_t pool_size, char *err,
                         size_t errlen)
{
    gw_redis_addr_t addr;
    const char *msg = NULL;
    if (!loop || !url)
        msg = "no loop or url";
    else if (pool_size < 1 || pool_size > 1024)
        msg = "the pool size must be 1 to 1024";
    else
        msg = addr_parse(url, &addr);
    if (msg) {
        if (err && errlen)
            snprintf(err, errlen, "invalid redis url: %s", msg);
        return NULL;
    }
    gw_redis_t *r = gw_xcalloc(1, sizeof *r);
    r->loop = loop;
    r->addr = addr;
    r->connect_timeout = GW_REDIS_DEFAULT_CONNECT_TIMEOUT;
    r->nconns = pool_size;
    r->conns = gw_xcalloc(pool_size, sizeof *r->conns);
    for (size_t i = 0; i < pool_size; i++) {
        r->conns[i].r = r;
        ev_timer_init(&r->conns[i].connect_timer, on_connect_timeout, 1., 0.);
        r->conns[i].connect_timer.data = &r->conns[i];
    }
    link_init(&r->calls);
    link_init(&r->ready);
    ev_check_init(&r->deliver, deliver_cb);
    r->deliver.data = r;
    ev_idle_init(&r->wake, wake_cb);
    return r;
}

void gw_redis_set_connect_timeout(gw_redis_t *r, double seconds)
{
    if (r && seconds > 0)
        r->connect_timeout = seconds;
}

size_t gw_redis_open_connections(const gw_redis_t *r)
{
    size_t n = 0;
    for (size_t i = 0; r && i < r->nconns; i++)
        n += r->conns[i].ac != NULL;
    return n;
}

/*
 * Frees the client: marks every call DONE (no callback), closes the
 * connections (hiredis then calls back for their commands, which frees the
 * calls), and frees what is left.
 */
static void redis_destroy(gw_redis_t *r)
{
    for (gw_redis_link_t *l = r->calls.next; l != &r->calls; l = l->next) {
        gw_redis_call_t *c = call_of_link(l);
        ev_timer_stop(r->loop, &c->timer);
        c->state = CALL_DONE;
    }
    ev_check_stop(r->loop, &r->deliver);
    ev_idle_stop(r->loop, &r->wake);
    for (size_t i = 0; i < r->nconns; i++)
        conn_close(&r->conns[i], NULL);
    while (!link_empty(&r->calls)) {
        gw_redis_call_t *c = call_of_link(r->calls.next);
        c->outstanding = 0;
        call_free(c);
    }
    free(r->conns);
    addr_free(&r->addr);
    free(r);
}

void gw_redis_free(gw_redis_t *r)
{
    if (!r)
        return;
    if (r->delivering) {
        r->free_requested = true;
        return;
    }
    redis_destroy(r);
}

/* Whether argv[0] is a command that would make a connection stop answering one reply per command.
 */
static bool changes_reply_model(const char *name, size_t len)
{
    static const char *const names[] = {"subscribe",    "psubscribe",   "ssubscribe", "unsubscribe",
                                        "punsubscribe", "sunsubscribe", "monitor"};
    gw_str_t s = {name, len};
    for (size_t i = 0; i < GW_ARRAY_LEN(names); i++)
        if (gw_str_caseeq_lit(s, names[i]))
            return true;
    return false;
}

/* Checks one command's arguments. */
static bool args_valid(int argc, const char **argv, const size_t *argvlen)
{
    if (argc < 1 || !argv)
        return false;
    for (int i = 0; i < argc; i++)
        if (!argv[i])
            return false;
    return !changes_reply_model(argv[0], argvlen ? argvlen[0] : strlen(argv[0]));
}

static bool call_args_valid(gw_redis_t *r, double timeout, gw_redis_cb cb)
{
    return r && cb && timeout > 0 && isfinite(timeout) && !r->free_requested;
}

gw_redis_call_t *gw_redis_command(gw_redis_t *r, int argc, const char **argv, const size_t *argvlen,
                                  double timeout, gw_redis_cb cb, void *ud)
{
    if (!call_args_valid(r, timeout, cb) || !args_valid(argc, argv, argvlen))
        return NULL;
    gw_redis_call_t *c = call_new(r, CALL_COMMAND, 1, timeout, cb, ud);
    gw_redis_conn_t *cn = call_conn(c);
    if (cn && !conn_send(cn->ac, c, argc, argv, argvlen))
        call_finish(c, gw_redis_err_connection_lost);
    return c;
}

gw_redis_call_t *gw_redis_pipeline(gw_redis_t *r, int ncmds, const int *argcs, const char **argv,
                                   const size_t *argvlen, double timeout, gw_redis_cb cb, void *ud)
{
    if (!call_args_valid(r, timeout, cb) || ncmds < 1 || !argcs || !argv)
        return NULL;
    size_t off = 0;
    for (int i = 0; i < ncmds; i++) {
        if (!args_valid(argcs[i], argv + off, argvlen ? argvlen + off : NULL))
            return NULL;
        off += (size_t)argcs[i];
    }
    gw_redis_call_t *c = call_new(r, CALL_PIPELINE, ncmds, timeout, cb, ud);
    gw_redis_conn_t *cn = call_conn(c);
    off = 0;
    for (int i = 0; cn && i < ncmds; i++) {
        if (!conn_send(cn->ac, c, argcs[i], argv + off, argvlen ? argvlen + off : NULL)) {
            call_finish(c, gw_redis_err_connection_lost);
            break;
        }
        off += (size_t)argcs[i];
    }
    return c;
}

/* Formats EVALSHA and SCRIPT LOAD for a script call; false on a formatting failure. */
static bool script_format(gw_redis_script_t *s, const char *script, size_t len, int nkeys, int argc,
                          const char **argv, const size_t *argvlen)
{
    unsigned char md[SHA_DIGEST_LENGTH];
    char sha[2 * SHA_DIGEST_LENGTH + 1], nk[16];
    SHA1((const unsigned char *)script, len, md);
    for (size_t i = 0; i < sizeof md; i++)
        snprintf(sha + 2 * i, 3, "%02x", md[i]);
    snprintf(nk, sizeof nk, "%d", nkeys);

    const char **av = gw_xmalloc(((size_t)argc + 3) * sizeof *av);
    size_t *al = gw_xmalloc(((size_t)argc + 3) * sizeof *al);
    av[0] = "EVALSHA", al[0] = 7;
    av[1] = sha, al[1] = strlen(sha);
    av[2] = nk, al[2] = strlen(nk);
    for (int i = 0; i < argc; i++) {
        av[i + 3] = argv[i];
        al[i + 3] = argvlen ? argvlen[i] : strlen(argv[i]);
    }
    int n = redisFormatCommandArgv(&s->evalsha, argc + 3, av, al);
    s->evalsha_len = n > 0 ? (size_t)n : 0;
    const char *lv[3] = {"SCRIPT", "LOAD", script};
    size_t ll[3] = {6, 4, len};
    int m = redisFormatCommandArgv(&s->load, 3, lv, ll);
    s->load_len = m > 0 ? (size_t)m : 0;
    free(av);
    free(al);
    return n > 0 && m > 0;
}

gw_redis_call_t *gw_redis_script(gw_redis_t *r, const char *script, size_t len, int nkeys, int argc,
                                 const char **argv, const size_t *argvlen, double timeout,
                                 gw_redis_cb cb, void *ud)
{
    if (!call_args_valid(r, timeout, cb) || !script || nkeys < 0 || argc < nkeys ||
        (argc > 0 && !argv))
        return NULL;
    for (int i = 0; i < argc; i++)
        if (!argv[i])
            return NULL;
    gw_redis_script_t s = {0};
    if (!script_format(&s, script, len, nkeys, argc, argv, argvlen)) {
        redisFreeCommand(s.evalsha);
        redisFreeCommand(s.load);
        return NULL;
    }
    gw_redis_call_t *c = call_new(r, CALL_SCRIPT, 1, timeout, cb, ud);
    c->script = s;
    gw_redis_conn_t *cn = call_conn(c);
    if (cn && !conn_send_formatted(cn->ac, c, s.evalsha, s.evalsha_len))
        call_finish(c, gw_redis_err_connection_lost);
    return c;
}

void gw_redis_cancel(gw_redis_call_t *c)
{
    if (!c || c->state == CALL_DONE)
        return;
    if (c->state == CALL_READY)
        link_remove(&c->ready);
    ev_timer_stop(c->r->loop, &c->timer);
    c->state = CALL_DONE;
    call_release(c);
}
