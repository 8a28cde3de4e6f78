/*
 * TLS for moongate-test-upstream (upstream_tls.c): when started with
 * --tls-cert and --tls-key, every connection is TLS; with --tls-client-ca
 * too, a client certificate signed by that CA is required. Responses then
 * tell what the server saw of the handshake (see gwt_tls_headers).
 */
#ifndef GWT_UPSTREAM_TLS_H
#define GWT_UPSTREAM_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct gwt_tls_s gwt_tls_t;

/* Set up the server context; false after printing why to stderr. */
bool gwt_tls_init(const char *cert, const char *key, const char *client_ca);

/* A TLS session for accepted socket fd, or NULL when TLS is off. */
gwt_tls_t *gwt_tls_new(int fd);

/* recv(2)/send(2) over tls, or plainly on fd when tls is NULL. -1 with
 * errno EAGAIN means "wait for the socket"; the handshake runs inside. */
ssize_t gwt_tls_recv(gwt_tls_t *tls, int fd, void *buf, size_t len);
ssize_t gwt_tls_send(gwt_tls_t *tls, int fd, const void *buf, size_t len);

/* Whether decrypted bytes wait in tls's buffer (no socket event will
 * announce them); false when tls is NULL. */
bool gwt_tls_pending(gwt_tls_t *tls);

/*
 * Header lines (each ending in CRLF) describing the connection's TLS, or
 * "" when tls is NULL: X-TLS-SNI (the server name the client sent, "-"
 * for none), X-TLS-Session-Reused (yes/no), X-TLS-Protocol and
 * X-TLS-Client-Cert (the client certificate's subject, "-" for none).
 */
const char *gwt_tls_headers(gwt_tls_t *tls);

/* Send a new TLS 1.3 session ticket now, outside any answer (as a server
 * may on an idle connection); false when tls is NULL, not TLS 1.3 or the
 * ticket could not be sent at once. */
bool gwt_tls_send_ticket(gwt_tls_t *tls);

/* Send close_notify when possible and free; NULL is allowed. */
void gwt_tls_free(gwt_tls_t *tls);

#endif
