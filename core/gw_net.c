/* Socket helpers declared in gw_net.h. */
#include "gw_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <unistd.h>

int gw_net_listen(const gw_addr_conf_t *addr, int backlog, bool reuseport, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (gw_net_resolve(addr->host, addr->port, &ss, &len) != GW_OK) {
        snprintf(err, errlen, "cannot resolve %s", addr->host);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket(): %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0) {
        snprintf(err, errlen, "cannot listen on %s:%u: %s", addr->host, addr->port,
                 strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int gw_net_check_free(const gw_addr_conf_t *addr, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (gw_net_resolve(addr->host, addr->port, &ss, &len) != GW_OK) {
        snprintf(err, errlen, "cannot resolve %s", addr->host);
        return GW_ERROR;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket(): %s", strerror(errno));
        return GW_ERROR;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    int rc = bind(fd, (struct sockaddr *)&ss, len);
    int e = errno;
    close(fd);
    if (rc < 0) {
        snprintf(err, errlen, "cannot listen on %s:%u: %s", addr->host, addr->port, strerror(e));
        return GW_ERROR;
    }
    return GW_OK;
}

int gw_net_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        *len = sizeof *in4;
        return GW_OK;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *len = sizeof *in6;
        return GW_OK;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return GW_ERROR;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    if (ss->ss_family == AF_INET)
        in4->sin_port = htons(port);
    else
        in6->sin6_port = htons(port);
    freeaddrinfo(res);
    return GW_OK;
}

int gw_net_connect(const struct sockaddr_storage *ss, socklen_t len, bool *in_progress)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *in_progress = false;
    if (connect(fd, (const struct sockaddr *)ss, len) < 0) {
        if (errno != EINPROGRESS) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        *in_progress = true;
    }
    return fd;
}

/* Dotted-quad text of the IPv4 address at a (network order) into buf,
 * which has room for 16 bytes; returns its length. inet_ntop formats with
 * sprintf, which costs more than the rest of a proxied request's head. */
static size_t gw_net_ntop4(const unsigned char *a, char *buf)
{
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        unsigned v = a[i];
        if (v >= 100)
            buf[n++] = (char)('0' + v / 100);
        if (v >= 10)
            buf[n++] = (char)('0' + v / 10 % 10);
        buf[n++] = (char)('0' + v % 10);
        buf[n++] = i < 3 ? '.' : '\0';
    }
    return n - 1;
}

size_t gw_net_ntop(const struct sockaddr_storage *ss, char *buf, size_t size)
{
    if (size >= 16 && ss->ss_family == AF_INET)
        return gw_net_ntop4((const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr,
                            buf);
    if (size >= 16 && ss->ss_family == AF_INET6 &&
        IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)ss)->sin6_addr))
        return gw_net_ntop4(
            ((const unsigned char *)&((const struct sockaddr_in6 *)ss)->sin6_addr) + 12, buf);
    const void *a = ss->ss_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)ss)->sin_addr;
    if (!inet_ntop(ss->ss_family, a, buf, (socklen_t)size)) {
        buf[0] = '\0';
        return 0;
    }
    return strlen(buf);
}
