/*
 * A non-blocking HTTP/1.1 client on a worker's libev loop, for the Lua PDK's
 * moongate.http. One gw_httpc_t per worker holds the settings and the
 * keep-alive pools (per host:port, most recently used first). Each request
 * is a call with its own completion callback, so many calls can run at once.
 *
 * The callback always runs from a libev watcher callback, never from inside
 * gw_httpc_request and never from inside the response parser, with the whole
 * response already read. Plain C types only, so the API can be declared
 * through the LuaJIT FFI.
 *
 * http:// and https:// URLs are served; name resolution is blocking
 * (cached per host:port for 10 seconds, see gw_httpc.c). https:// verifies
 * the server's certificate and name by default against the system's CA
 * bundle (or a CA file per request); the TLS contexts are made on the
 * first https call and freed with the client.
 */
#ifndef GW_HTTPC_H
#define GW_HTTPC_H

#include <stdbool.h>
#include <stddef.h>

struct ev_loop;

typedef struct gw_httpc_s gw_httpc_t;
typedef struct gw_httpc_call_s gw_httpc_call_t;

/* Used when a timeout in gw_httpc_req_t is 0 (or negative), in seconds. */
#define GW_HTTPC_DEFAULT_TIMEOUT 60.0
/* Used when max_body is 0. */
#define GW_HTTPC_DEFAULT_MAX_BODY ((size_t)8 * 1024 * 1024)
/* Used when idle_timeout is 0 (or negative), in seconds. */
#define GW_HTTPC_DEFAULT_IDLE_TIMEOUT 60.0

/*
 * The error strings a response can carry. Callers may compare pointers or
 * contents; the strings never change while the process runs. Two failures
 * carry details in a string owned by the call instead (valid until
 * gw_httpc_release): a TLS handshake that failed ("tls handshake failed:
 * REASON", beginning with gw_httpc_error_tls) and a CA file that could not
 * be loaded ("ssl_ca: cannot load PATH: REASON").
 */
extern const char gw_httpc_error_tls[];        /* "tls handshake failed" */
extern const char gw_httpc_error_resolve[];    /* "resolve failed" */
extern const char gw_httpc_error_refused[];    /* "connection refused" */
extern const char gw_httpc_error_connect[];    /* "connect failed" */
extern const char gw_httpc_error_timeout[];    /* "timeout" (connect, send or read) */
extern const char gw_httpc_error_closed[];     /* "connection closed" before the end */
extern const char gw_httpc_error_reset[];      /* "connection reset" */
extern const char gw_httpc_error_io[];         /* "i/o error" */
extern const char gw_httpc_error_invalid[];    /* "invalid response" */
extern const char gw_httpc_error_head_large[]; /* "response header too large" */
extern const char gw_httpc_error_too_large[];  /* "response too large" */

/*
 * A request. Everything is copied by gw_httpc_request, so the caller may
 * free it as soon as that returns.
 *   method   NULL means "GET"; must be an HTTP token.
 *   url      http(s)://host[:port]/path?query ("[v6addr]" hosts allowed;
 *            a #fragment is dropped; the port defaults to 80 or 443).
 *   headers  name, value, name, value, ..., NULL (or NULL for none). Host,
 *            User-Agent and Connection given here replace the defaults
 *            (Host from the URL, "moongate", "keep-alive");
 *            Content-Length and Transfer-Encoding are ignored: the client
 *            frames the body itself with Content-Length.
 *   body     body_len bytes (body may be NULL when body_len is 0).
 *   timeouts seconds: connect, send (between writes), read (between
 *            reads); 0 means GW_HTTPC_DEFAULT_TIMEOUT.
 *   max_body response body limit in bytes; 0 means 8 MiB.
 *   ssl_ca   https: a PEM file of the CAs to trust instead of the system's
 *            bundle, loaded on its first use and kept by the client (a
 *            file that cannot be loaded fails the call); NULL for the
 *            system's bundle.
 *   ssl_no_verify  https: accept any certificate for any name.
 * The connect timeout covers the TCP connect and the TLS handshake. Pooled
 * connections are only reused by calls with the same host, port, scheme
 * and (https) ssl_ca and ssl_no_verify.
 */
typedef struct {
    const char *method;
    const char *url;
    const char *const *headers;
    const char *body;
    size_t body_len;
    double connect_timeout, send_timeout, read_timeout;
    size_t max_body;
    const char *ssl_ca;
    bool ssl_no_verify;
} gw_httpc_req_t;

/*
 * A finished request, owned by its call and valid until gw_httpc_release.
 * On success status is the final status (interim 1xx responses are
 * skipped), error is NULL, headers holds nheaders name/value pairs as
 * received (headers[2*i] is a name, headers[2*i+1] its value, values
 * trimmed, NUL-terminated, the array itself NULL-terminated) and body is
 * the decoded body, never NULL, NUL-terminated after body_len bytes.
 * On failure status is 0, error one of the gw_httpc_error_* strings (or a
 * detailed TLS message, see above), headers and body NULL and the counts
 * 0.
 */
typedef struct {
    int status;
    const char *error;
    char **headers;
    size_t nheaders;
    char *body;
    size_t body_len;
} gw_httpc_res_t;

typedef void (*gw_httpc_cb)(void *ud, gw_httpc_res_t *res);

/* Counters for status pages and tests. */
typedef struct {
    size_t in_flight; /* calls started and not finished or cancelled */
    size_t idle;      /* pooled keep-alive connections */
} gw_httpc_stats_t;

/*
 * A client on loop. Up to max_idle_per_host idle connections are kept per
 * host:port and TLS settings (0 disables keep-alive pooling), each closed after
 * idle_timeout seconds (0 means GW_HTTPC_DEFAULT_IDLE_TIMEOUT). Never NULL.
 */
gw_httpc_t *gw_httpc_new(struct ev_loop *loop, size_t max_idle_per_host, double idle_timeout);

/*
 * Close every connection and free h. Calls in flight are cancelled (their
 * callbacks are not called, their handles become invalid); calls already
 * finished stay valid until gw_httpc_release. May be called from a
 * completion callback.
 */
void gw_httpc_free(gw_httpc_t *h);

/*
 * Start a request. Returns the call, or NULL with errno EINVAL when an
 * argument is invalid (NULL h, req, url or cb; a URL that is not
 * http(s)://host[:port][/...]; a method that is not a token; a header
 * name that is not a token or a value with a control character other
 * than tab, such as CR or LF). Every other failure, even an immediate one,
 * is reported through cb later from the loop: cb is never called before
 * gw_httpc_request returns. cb is called exactly once unless the call is
 * cancelled or h is freed first.
 */
gw_httpc_call_t *gw_httpc_request(gw_httpc_t *h, const gw_httpc_req_t *req, gw_httpc_cb cb,
                                  void *ud);

/*
 * Abandon a call before its callback ran: the callback will not be called,
 * the connection is closed and everything the call holds is freed. On a
 * call whose callback already ran this is the same as gw_httpc_release.
 */
void gw_httpc_cancel(gw_httpc_call_t *c);

/*
 * Free a finished call and its response: after its callback ran, or from
 * inside it. On an unfinished call this is the same as gw_httpc_cancel.
 * Either way the call handle is invalid afterwards.
 */
void gw_httpc_release(gw_httpc_call_t *c);

/* Fill st with the current counters of h. */
void gw_httpc_stats(const gw_httpc_t *h, gw_httpc_stats_t *st);

#endif
