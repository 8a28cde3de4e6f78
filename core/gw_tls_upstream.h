/*
 * TLS from the gateway to upstream targets (OpenSSL 3, client side).
 *
 * gw_tls_upstream_conf.c decodes an upstream's `tls` settings and builds
 * their SSL_CTX when the config is loaded, so that a bad CA, certificate
 * or key file is a config error (in `moongate check`, at start-up and on
 * reload). Workers inherit the context.
 *
 * gw_tls_upstream.c runs the connections: one SSL object per upstream
 * connection, created with the socket, handshaking once the TCP connect is
 * done, and carrying the bytes of gw_upconn_recv/gw_upconn_sendv (gw_io.c).
 * The SSL object stays with its connection in the keep-alive pool. Each
 * target keeps the last session the upstream gave, offered to the next new
 * connection for resumption.
 */
#ifndef GW_TLS_UPSTREAM_H
#define GW_TLS_UPSTREAM_H

#include "gw_config_node.h"

#include <sys/types.h>
#include <sys/uio.h>

typedef struct gw_upconn_s gw_upconn_t; /* gw_worker.h */
typedef struct gw_target_s gw_target_t;

/* ---- gw_tls_upstream_conf.c ---- */

/*
 * Decode the `tls` field of upstream map `n` (absent, false, true or a map)
 * into *tls and build its SSL_CTX, reporting every problem under the
 * current path (e.g. "upstreams.api.tls.ca").
 */
void gw_tls_upstream_decode(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_upstream_tls_conf_t *tls);

/* Free what gw_tls_upstream_decode allocated (the context included). */
void gw_tls_upstream_conf_free(gw_upstream_tls_conf_t *tls);

/* ---- gw_tls_upstream.c ---- */

struct ssl_st;
struct ssl_session_st;

/* The contexts' new-session callback: keeps the session as its target's
 * last one (returns 1: the reference is taken). */
int gw_tls_upstream_new_session(struct ssl_st *ssl, struct ssl_session_st *sess);

/*
 * A client SSL object on socket fd for target `index` of upstream `conf`
 * (whose TLS is enabled): connect state, SNI (`tls.sni`, else the target's
 * host when it is a name) and, with `tls.verify`, the name or address the
 * certificate must carry (`tls.sni`, else the target's host). NULL on
 * failure.
 */
struct ssl_st *gw_tls_upstream_ssl_new(const gw_upstream_conf_t *conf, size_t index, int fd);

/*
 * Drive a handshake. GW_OK when it is complete; GW_AGAIN with *events set
 * to the socket event to wait for (EV_READ or EV_WRITE); GW_ERROR with
 * "TLS handshake failed: <OpenSSL's reason>" in err (a refused certificate
 * says why it was refused).
 */
int gw_tls_upstream_ssl_handshake(struct ssl_st *ssl, int *events, char *err, size_t errlen);

/*
 * One read or write: the count of bytes moved; 0 at the end of the stream
 * (reads); -1 with errno EAGAIN and *events the socket event to wait for;
 * -1 with another errno after a fatal error, OpenSSL's reason in why.
 */
ssize_t gw_tls_upstream_ssl_read(struct ssl_st *ssl, void *buf, size_t len, int *events, char *why,
                                 size_t whylen);
ssize_t gw_tls_upstream_ssl_write(struct ssl_st *ssl, const void *buf, size_t len, int *events,
                                  char *why, size_t whylen);

/* Send close_notify when the handshake completed, nothing failed and it
 * does not block, then free; NULL is allowed. */
void gw_tls_upstream_ssl_free(struct ssl_st *ssl);

/*
 * Attach a new client SSL object to uc (its target's upstream has TLS):
 * SNI, host name verification and the target's last session are set; the
 * handshake starts with gw_tls_upstream_handshake. GW_OK, or GW_ERROR.
 */
int gw_tls_upstream_attach(gw_upconn_t *uc);

/* gw_tls_upstream_ssl_handshake for uc, once its TCP connect is done; a
 * failure also forgets the target's saved session. */
int gw_tls_upstream_handshake(gw_upconn_t *uc, int *events, char *err, size_t errlen);

/* read(2)- and writev(2)-like transfers over uc's TLS (see gw_io.h). */
ssize_t gw_tls_upstream_recv(gw_upconn_t *uc, void *buf, size_t len);
ssize_t gw_tls_upstream_sendv(gw_upconn_t *uc, const struct iovec *iov, int n);

/* Whether decrypted bytes wait in uc's TLS buffer (no socket event will
 * announce them). */
bool gw_tls_upstream_pending(gw_upconn_t *uc);

/*
 * The events the HTTP code should act on for an io event `revents` on uc:
 * a read that waits for the socket to be writable (or a write that waits
 * for it to be readable) is retried on that event.
 */
int gw_tls_upstream_revents(gw_upconn_t *uc, int revents);

/*
 * An idle pooled connection became readable: consume TLS records that are
 * not data (session tickets, key updates). Returns true when the
 * connection is still usable, false when the upstream closed it, failed or
 * sent data nobody asked for.
 */
bool gw_tls_upstream_idle_alive(gw_upconn_t *uc);

/* Send close_notify when it does not block, then free uc's SSL object. */
void gw_tls_upstream_detach(gw_upconn_t *uc);

/* Forget the target's saved session (worker shutdown). */
void gw_tls_upstream_target_free(gw_target_t *t);

#endif
