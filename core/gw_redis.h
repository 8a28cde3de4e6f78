/*
 * A non-blocking Redis client on a worker's libev loop, for the PDK's
 * moongate.redis: hiredis's async API with its libev adapter, a small pool
 * of connections per server and a timer per command.
 *
 * Connections are opened lazily: a command goes to an idle open connection,
 * else to a connection not yet open (which is opened then), else to the open
 * connection with the fewest commands in flight. AUTH and SELECT are sent
 * first on every new connection. A connection that fails fails the commands
 * in flight on it and is replaced by the next command that needs it.
 *
 * Callbacks are never called from inside hiredis nor from inside a gw_redis_*
 * call: a finished call (its reply tree copied into the call's own memory)
 * is queued and delivered by an ev_check watcher on the loop, while an
 * ev_idle watcher keeps the loop from blocking until the queue is empty. In
 * a callback the caller may issue commands, cancel other calls and free the
 * client. The reply tree and the call handle are valid until the callback
 * returns; afterwards the handle must not be used (not even cancelled).
 *
 * The API is meant for the LuaJIT FFI: plain C types, no varargs, no macros.
 * hiredis writes with write(2): the process must ignore SIGPIPE (workers do).
 */
#ifndef GW_REDIS_H
#define GW_REDIS_H

#include <stddef.h>

struct ev_loop;

typedef struct gw_redis_s gw_redis_t;           /* one per worker per server */
typedef struct gw_redis_call_s gw_redis_call_t; /* one command, pipeline or script */

/* Reply types; the values are those of hiredis's REDIS_REPLY_*. */
enum {
    GW_REDIS_STRING = 1,
    GW_REDIS_ARRAY = 2,
    GW_REDIS_INTEGER = 3,
    GW_REDIS_NIL = 4,
    GW_REDIS_STATUS = 5,
    GW_REDIS_ERROR = 6,
};

/*
 * A reply tree owned by the call. STRING, STATUS and ERROR have `str` and
 * `len` (binary-safe; str[len] is a NUL byte); INTEGER has `integer`; ARRAY
 * has `elements` nodes at `element` (NULL when empty). A Redis error reply
 * (WRONGTYPE, NOSCRIPT, ...) is an ERROR reply, not a callback error.
 */
typedef struct gw_redis_reply_s {
    int type;
    long long integer;
    const char *str;
    size_t len;
    size_t elements;
    struct gw_redis_reply_s *element;
} gw_redis_reply_t;

/*
 * Called once per call, unless the call is cancelled or the client freed.
 * Exactly one of `reply` and `error` is non-NULL; `error` is one of the
 * constant strings below (compare the pointers or the text).
 */
typedef void (*gw_redis_cb)(void *ud, const gw_redis_reply_t *reply, const char *error);

extern const char gw_redis_err_timeout[];            /* "timeout": the call's deadline passed */
extern const char gw_redis_err_connection_lost[];    /* "connection lost" */
extern const char gw_redis_err_connection_refused[]; /* "connection refused" (or no socket) */
extern const char gw_redis_err_connect_failed[];     /* "connect failed": resolving, routing... */
extern const char gw_redis_err_connect_timeout[];    /* "connect timeout" */
extern const char gw_redis_err_auth_failed[];        /* "authentication failed": AUTH refused */
extern const char gw_redis_err_select_failed[];      /* "select failed": SELECT refused */

/*
 * A client for the server at `url`:
 *   redis://[[user]:password@]host[:port][/db]   (host may be [IPv6]; port 6379)
 *   unix:///path/to/socket[?db=N][&user=U][&password=P]
 * The user and password may be percent-encoded. No connection is opened
 * until the first command; at most `pool_size` (1 to 1024) are open at
 * once. A host name is resolved with getaddrinfo when a connection opens,
 * which blocks: prefer an address or a name in /etc/hosts.
 * Returns NULL and writes a message to `err` (never containing the password)
 * when an argument is invalid.
 */
gw_redis_t *gw_redis_new(struct ev_loop *loop, const char *url, size_t pool_size, char *err,
                         size_t errlen);

/* How long a connection may take to be established (default 2 s). */
void gw_redis_set_connect_timeout(gw_redis_t *r, double seconds);

/* Connections currently open or being opened (for status pages and tests). */
size_t gw_redis_open_connections(const gw_redis_t *r);

/*
 * Closes the connections and frees the client. Pending calls are cancelled:
 * their callbacks are not called. Safe inside a callback (the client is
 * then freed when the callback returns, and no other callback runs).
 */
void gw_redis_free(gw_redis_t *r);

/*
 * Sends one command: `argc` arguments, binary-safe (`argvlen` may be NULL
 * for NUL-terminated arguments). `timeout` (seconds) bounds the whole
 * call, connecting included. Returns NULL only for invalid arguments: no
 * client, argc < 1, a NULL argument or callback, a timeout not finite and
 * positive, or a command that changes the connection's reply model
 * (SUBSCRIBE and the other pub/sub subscriptions, MONITOR). Commands that
 * change a pooled connection's state (SELECT, AUTH, CLIENT REPLY...)
 * affect later calls.
 */
gw_redis_call_t *gw_redis_command(gw_redis_t *r, int argc, const char **argv, const size_t *argvlen,
                                  double timeout, gw_redis_cb cb, void *ud);

/*
 * Sends `ncmds` commands on one connection, in order: command i has
 * argcs[i] arguments, taken in turn from the flat `argv` / `argvlen`.
 * The callback gets an ARRAY with one element per command (an ERROR element
 * for a command Redis refused), or an error if the connection failed or the
 * deadline passed. Same rules as gw_redis_command otherwise.
 */
gw_redis_call_t *gw_redis_pipeline(gw_redis_t *r, int ncmds, const int *argcs, const char **argv,
                                   const size_t *argvlen, double timeout, gw_redis_cb cb, void *ud);

/*
 * Runs a Lua script by its SHA1: sends EVALSHA sha nkeys argv..., where the
 * first `nkeys` of the `argc` arguments are keys. When the server answers
 * NOSCRIPT, sends SCRIPT LOAD and EVALSHA again on the same connection; the
 * callback gets the final reply once (the SCRIPT LOAD error if the script
 * does not compile). The script and arguments are copied.
 */
gw_redis_call_t *gw_redis_script(gw_redis_t *r, const char *script, size_t len, int nkeys, int argc,
                                 const char **argv, const size_t *argvlen, double timeout,
                                 gw_redis_cb cb, void *ud);

/*
 * Cancels a call whose callback has not started: the callback is not
 * called. A reply that arrives later is read and dropped.
 */
void gw_redis_cancel(gw_redis_call_t *c);

#endif
