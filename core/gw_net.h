/* Socket helpers: listening sockets, non-blocking connects, addresses. */
#ifndef GW_NET_H
#define GW_NET_H

#include "gw_config.h"

#include <sys/socket.h>

/*
 * A non-blocking listening TCP socket on addr with SO_REUSEADDR and, when
 * reuseport is set, SO_REUSEPORT. Returns the fd, or -1 with a message in
 * err.
 */
int gw_net_listen(const gw_addr_conf_t *addr, int backlog, bool reuseport, char *err,
                  size_t errlen);

/*
 * Whether addr is free: a plain bind (without SO_REUSEPORT) succeeds. This
 * catches another process already serving addr with SO_REUSEPORT sockets,
 * which a SO_REUSEPORT bind would silently share. GW_OK, or GW_ERROR with a
 * message in err.
 */
int gw_net_check_free(const gw_addr_conf_t *addr, char *err, size_t errlen);

/* Resolve host:port (numeric or a name) to a socket address. GW_OK/GW_ERROR. */
int gw_net_resolve(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len);

/*
 * Start a non-blocking connect to ss. Returns the fd with *in_progress set
 * when the connect has not finished yet, or -1 (errno set).
 */
int gw_net_connect(const struct sockaddr_storage *ss, socklen_t len, bool *in_progress);

/* Format the address (without port) into buf; returns its length. */
size_t gw_net_ntop(const struct sockaddr_storage *ss, char *buf, size_t size);

#endif
