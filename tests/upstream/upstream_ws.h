/*
 * The test upstream's WebSocket echo (RFC 6455), behind GET /ws: after the
 * handshake, text and binary messages come back as they were sent, a ping
 * gets a pong, a close is answered with a close and the connection ends.
 * The text message "__close__" makes the server start the close handshake
 * itself (status 1000, reason "bye"); with ?hello=1 the server sends the
 * text message "hello" right behind its 101 answer.
 */
#ifndef GWT_UPSTREAM_WS_H
#define GWT_UPSTREAM_WS_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#include "upstream_tls.h"

/* The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (NUL-terminated,
 * 28 characters); false when the key is not 16 bytes in base64. */
bool gwt_ws_accept_key(const char *key, size_t keylen, char out[29]);

/*
 * Take over the connection on fd after a valid /ws request: `tls` is its
 * TLS session (NULL for a plain connection), `out` holds bytes still due
 * on it before the handshake answer (earlier pipelined answers), `in` the
 * bytes the client sent after the request. Answers the handshake with
 * `accept`, then echoes, reading and writing through tls when there is
 * one. fd and tls are owned (closed and freed, with close_notify) by the
 * echo from now on.
 */
void gwt_ws_adopt(struct ev_loop *loop, int fd, gwt_tls_t *tls, const char *accept, bool hello,
                  const char *out, size_t outlen, const char *in, size_t inlen);

/* WebSocket connections open now, and ever opened. */
unsigned long gwt_ws_open_count(void);
unsigned long gwt_ws_total_count(void);

/* Close every WebSocket connection (at exit). */
void gwt_ws_close_all(void);

#endif
