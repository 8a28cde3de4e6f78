/*
 * What the gateway's two TLS clients share: the proxy's upstream
 * connections (gw_tls_upstream.c) and the plugins' HTTP client
 * (gw_httpc_tls.c) drive their handshakes and explain their failures the
 * same way.
 */
#ifndef GW_TLS_CLIENT_H
#define GW_TLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

struct ssl_st;

/*
 * Why a TLS call failed with SSL_get_error code `e` (sys_errno: errno right
 * after the call), into buf: OpenSSL's reason, with the verification
 * result when the certificate was refused; the system error; or "connection
 * closed by PEER". Empties the error queue.
 */
void gw_tls_client_why(struct ssl_st *ssl, int e, int sys_errno, const char *peer, char *buf,
                       size_t len);

/*
 * One step of a non-blocking client handshake. GW_OK when it is complete;
 * GW_AGAIN with *events the libev event to wait for (EV_READ or EV_WRITE);
 * GW_ERROR with "PREFIX: reason" in err (see gw_tls_client_why), after
 * which the connection must not send close_notify.
 */
int gw_tls_client_handshake(struct ssl_st *ssl, int *events, const char *prefix, const char *peer,
                            char *err, size_t errlen);

/*
 * Whether a pooled connection that became readable while idle is still
 * good: records without data (TLS 1.3 session tickets) are consumed and
 * keep it; data nobody asked for, close_notify, EOF or an error do not.
 */
bool gw_tls_client_idle_alive(struct ssl_st *ssl);

/* Free ssl (NULL is fine), after one non-blocking close_notify when the
 * handshake completed and nothing failed. */
void gw_tls_client_free(struct ssl_st *ssl);

#endif
