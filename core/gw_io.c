/* Byte transport of client and upstream sockets (see gw_io.h). */
#include "gw_io.h"

#include "gw_tls.h"
#include "gw_tls_upstream.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static ssize_t gw_io_read(int fd, void *buf, size_t len)
{
    ssize_t n;
    do
        n = read(fd, buf, len);
    while (n < 0 && errno == EINTR);
    return n;
}

static ssize_t gw_io_writev(int fd, const struct iovec *iov, int cnt)
{
    ssize_t n;
    do
        n = writev(fd, iov, cnt);
    while (n < 0 && errno == EINTR);
    return n;
}

ssize_t gw_conn_recv(gw_conn_t *c, void *buf, size_t len)
{
    if (c->ssl)
        return gw_tls_recv(c, buf, len);
    return gw_io_read(c->fd, buf, len);
}

ssize_t gw_conn_sendv(gw_conn_t *c, const struct iovec *iov, int n)
{
    if (c->ssl)
        return gw_tls_sendv(c, iov, n);
    return gw_io_writev(c->fd, iov, n);
}

ssize_t gw_upconn_recv(gw_upconn_t *uc, void *buf, size_t len)
{
    if (uc->ssl)
        return gw_tls_upstream_recv(uc, buf, len);
    return gw_io_read(uc->fd, buf, len);
}

ssize_t gw_upconn_sendv(gw_upconn_t *uc, const struct iovec *iov, int n)
{
    if (uc->ssl)
        return gw_tls_upstream_sendv(uc, iov, n);
    return gw_io_writev(uc->fd, iov, n);
}

/*
 * Send a TLS connection's close_notify. GW_AGAIN while the socket is full:
 * call again once it is writable, and OpenSSL goes on with the alert it
 * holds. GW_OK once it is out, and also after a TLS error (the TCP
 * half-close then ends the stream without it).
 */
static int gw_io_close_notify(SSL *ssl)
{
    ERR_clear_error();
    int rc = SSL_shutdown(ssl);
    if (rc < 0 && SSL_get_error(ssl, rc) == SSL_ERROR_WANT_WRITE)
        return GW_AGAIN;
    return GW_OK;
}

int gw_conn_shutdown(gw_conn_t *c)
{
    if (c->ssl && gw_io_close_notify(c->ssl) == GW_AGAIN) {
        errno = EAGAIN;
        return -1;
    }
    return shutdown(c->fd, SHUT_WR);
}

int gw_upconn_shutdown(gw_upconn_t *uc)
{
    if (uc->ssl && gw_io_close_notify(uc->ssl) == GW_AGAIN) {
        errno = EAGAIN;
        return -1;
    }
    return shutdown(uc->fd, SHUT_WR);
}

void gw_upconn_watch(gw_upconn_t *uc, int events)
{
    gw_io_set(uc->w->loop, &uc->io, events);
    if ((events & EV_READ) && gw_tls_upstream_pending(uc))
        ev_feed_event(uc->w->loop, &uc->io, EV_READ);
}

int gw_upconn_revents(gw_upconn_t *uc, int revents)
{
    return gw_tls_upstream_revents(uc, revents);
}
