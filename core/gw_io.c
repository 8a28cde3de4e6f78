/* Byte transport of client and upstream sockets (see gw_io.h). */
#include "gw_io.h"

#include "gw_tls.h"

#include <errno.h>
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
    return gw_io_read(uc->fd, buf, len);
}

ssize_t gw_upconn_sendv(gw_upconn_t *uc, const struct iovec *iov, int n)
{
    return gw_io_writev(uc->fd, iov, n);
}
