/*
 * TLS termination on client-facing listeners (OpenSSL 3).
 *
 * A listener's `tls` section becomes a gw_tls_conf_t while the config loads
 * (gw_tls_conf.c): certificates and keys are read and checked then, so a bad
 * pair is a config error and a reload re-reads them. Certificates sharing the
 * same names are grouped into one SSL_CTX (an RSA and an ECDSA certificate
 * for the same names live side by side, OpenSSL serves the one the client
 * supports); the SNI callback switches a connection to the group whose names
 * match, the first group being the default.
 *
 * A TLS connection (gw_tls.c) runs its handshake from the event loop after
 * accept; then gw_io.c routes the client's reads and writes through
 * gw_tls_recv/gw_tls_sendv, which keep the read(2)/writev(2) contract.
 *
 * Session tickets are encrypted with keys kept in shared memory created by
 * the master before it forks (gw_tls_ticket.c), so that every worker
 * resumes every other worker's sessions; the master rotates them on a timer
 * and the previous key still decrypts.
 */
#ifndef GW_TLS_H
#define GW_TLS_H

#include "gw_tls_conf.h"
#include "gw_worker.h"

/* ---- gw_tls.c (connections) ---- */

/* Make c a TLS connection served with t; GW_OK or GW_ERROR (logged). */
int gw_tls_conn_start(gw_conn_t *c, gw_tls_conf_t *t);

/*
 * Called first by the client connection's event callback with the events
 * that fired. While the handshake runs, advances it: GW_AGAIN (waiting),
 * GW_DONE (failed: c is closed), or GW_OK once complete (*revents then asks
 * for a read). Afterwards, turns a readiness that an SSL read or write was
 * waiting for into the event the HTTP code expects, and returns GW_OK.
 */
int gw_tls_conn_event(gw_conn_t *c, int *revents);

/* c's idle timer expired (it is closed next): log a handshake that did not
 * finish in time. */
void gw_tls_conn_timeout(gw_conn_t *c);

/* Whether decrypted bytes wait inside OpenSSL: if so, feed c a read event. */
void gw_tls_conn_kick(gw_conn_t *c);

/* read(2)/writev(2) over the connection's SSL (see gw_io.h). */
ssize_t gw_tls_recv(gw_conn_t *c, void *buf, size_t len);
ssize_t gw_tls_sendv(gw_conn_t *c, const struct iovec *iov, int n);

/* Send close_notify when the connection is healthy, then free the SSL. */
void gw_tls_conn_free(gw_conn_t *c);

/* Record the client certificate of c's handshake on request r; release it. */
void gw_tls_req_begin(gw_req_t *r, gw_conn_t *c);
void gw_tls_req_end(gw_req_t *r);

#endif
