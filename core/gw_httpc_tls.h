/*
 * TLS for gw_httpc (private to gw_httpc.c): the client's OpenSSL contexts
 * and the operations on one connection's SSL object. Nothing here knows
 * about calls, pools or the event loop beyond the EV_READ/EV_WRITE event a
 * non-blocking operation waits for.
 *
 * Every OpenSSL call starts with an empty error queue, so the reasons given
 * are about that call only. An SSL object whose TLS failed is marked for a
 * quiet shutdown: gw_httpc_tls_close then sends no close_notify (OpenSSL
 * forbids SSL_shutdown after a fatal error).
 */
#ifndef GW_HTTPC_TLS_H
#define GW_HTTPC_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct ssl_st;
struct ssl_ctx_st;

/* The contexts of one client: the default one (system CA bundle) and one
 * per CA file, each made on first use. */
typedef struct gw_httpc_tls_s gw_httpc_tls_t;

/* Free every context of t; NULL is allowed. */
void gw_httpc_tls_free(gw_httpc_tls_t *t);

/*
 * The client context verifying against CA file `ca`, or against the
 * system's CA bundle (OpenSSL's default paths, /etc/ssl/certs on Debian)
 * when ca is NULL. *t is created on first use; a context is made once per
 * CA file and kept until gw_httpc_tls_free. A CA file that cannot be read
 * or holds no certificate is not kept: NULL with the reason in err
 * ("ssl_ca: cannot load PATH: REASON").
 */
struct ssl_ctx_st *gw_httpc_tls_ctx(gw_httpc_tls_t **t, const char *ca, char *err, size_t errlen);

/*
 * A client SSL object on socket fd in connect state, for host (a name, or
 * an IPv4/IPv6 literal without brackets): SNI is sent for a name; with
 * verify the peer's certificate must chain to the context's CAs and name
 * host (its DNS name, or its IP address for a literal); without verify
 * nothing is checked. NULL with OpenSSL's reason in err.
 */
struct ssl_st *gw_httpc_tls_new(struct ssl_ctx_st *ctx, int fd, const char *host, bool verify,
                                char *err, size_t errlen);

/*
 * Drive the handshake. GW_OK when it is complete; GW_AGAIN with *events
 * the socket event to wait for (EV_READ or EV_WRITE); GW_ERROR with
 * "tls handshake failed: REASON" in err (a refused certificate says why,
 * e.g. "certificate verify failed (hostname mismatch)").
 */
int gw_httpc_tls_handshake(struct ssl_st *ssl, int *events, char *err, size_t errlen);

/*
 * One SSL_read_ex or SSL_write_ex (partial writes allowed) of up to len
 * bytes: the count moved; 0 at the end of the stream (reads: close_notify
 * or the TCP end); -1 with errno EAGAIN and *events the socket event to
 * wait for (a write must then be retried with the same bytes); -1 with
 * another errno after a fatal error (the system's errno, else EIO).
 */
ssize_t gw_httpc_tls_read(struct ssl_st *ssl, void *buf, size_t len, int *events);
ssize_t gw_httpc_tls_write(struct ssl_st *ssl, const void *buf, size_t len, int *events);

/* Whether bytes OpenSSL already took from the socket wait to be read: no
 * socket event will announce them. */
bool gw_httpc_tls_pending(struct ssl_st *ssl);

/*
 * An idle pooled connection may have become readable: consume the TLS
 * records that are not data (TLS 1.3 session tickets, key updates). True
 * when the connection is still usable (OpenSSL wants more bytes); false
 * when the peer sent data, closed or failed.
 */
bool gw_httpc_tls_idle_alive(struct ssl_st *ssl);

/* Send close_notify when the handshake completed, nothing failed and the
 * socket takes it at once (never waits for the peer's), then free ssl. */
void gw_httpc_tls_close(struct ssl_st *ssl);

#endif
