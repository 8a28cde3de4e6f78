/*
 * Byte transport of the gateway's sockets. Every read and write on a client
 * connection or an upstream connection goes through these functions, so
 * that a transport other than a plain socket (TLS) can sit underneath the
 * HTTP code without it knowing.
 *
 * Contract (the same as read(2)/writev(2)): a positive count of bytes moved;
 * 0 from a recv at end of stream; -1 with errno set otherwise. EAGAIN means
 * "wait for the socket and call again"; EINTR has been retried already.
 */
#ifndef GW_IO_H
#define GW_IO_H

#include "gw_worker.h"

#include <sys/types.h>
#include <sys/uio.h>

ssize_t gw_conn_recv(gw_conn_t *c, void *buf, size_t len);
ssize_t gw_conn_sendv(gw_conn_t *c, const struct iovec *iov, int n);
ssize_t gw_upconn_recv(gw_upconn_t *uc, void *buf, size_t len);
ssize_t gw_upconn_sendv(gw_upconn_t *uc, const struct iovec *iov, int n);

/* End the writing direction of the stream (a half-close: the peer reads an
 * end of stream, reading goes on; over TLS, a close_notify first). 0, or -1
 * with errno set: EAGAIN when the socket is full (call again once it is
 * writable). */
int gw_conn_shutdown(gw_conn_t *c);
int gw_upconn_shutdown(gw_upconn_t *uc);

/*
 * Wait for `events` on an upstream connection. Bytes a TLS connection has
 * already decrypted make a read event at once, since the socket will not
 * announce them.
 */
void gw_upconn_watch(gw_upconn_t *uc, int events);

/* The events to act on for an io event on uc: a TLS read waiting for the
 * socket to be writable, or a write waiting for it to be readable, is
 * retried on that event. */
int gw_upconn_revents(gw_upconn_t *uc, int revents);

#endif
