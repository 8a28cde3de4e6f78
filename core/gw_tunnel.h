/*
 * Upgrade tunnels (WebSocket). A route with `websocket` enabled forwards a
 * client's upgrade request with its Connection and Upgrade headers; when the
 * upstream answers 101 Switching Protocols, the client connection and the
 * upstream connection become one bidirectional byte stream, relayed as is
 * until both sides have ended, either side fails, or nothing moved for the
 * route's idle timeout. Then the request is logged (status 101, the bytes of
 * the tunnel's whole life) and its log phase runs.
 *
 * Each direction relays through one bounded buffer (the buffers that held
 * the request and response heads, past the heads): a side is read only
 * while its buffer has room, so a slow reader slows the writer down. An end
 * of stream on one side is passed on as a half-close (shutdown of the
 * writing direction) of the other once its buffer is flushed.
 */
#ifndef GW_TUNNEL_H
#define GW_TUNNEL_H

#include "gw_worker.h"

typedef struct gw_tunnel_s gw_tunnel_t;

/*
 * Whether r (head parsed, route matched, body framing known) is a WebSocket
 * upgrade that its route allows: an HTTP/1.1 GET without a body whose
 * Connection lists "upgrade" and whose Upgrade lists "websocket".
 */
bool gw_tunnel_wanted(const gw_req_t *r);

/* The client's Upgrade header value (for the request sent upstream). */
gw_str_t gw_tunnel_upgrade_value(const gw_req_t *r);

/*
 * Turn r into a tunnel after the upstream's 101. r->out holds the response
 * head for the client; r->rin the upstream's head up to head_end, then bytes
 * the upstream sent after it; c->in the request up to r->msg_end, then bytes
 * the client sent after it. Both leftovers are relayed first. The tunnel
 * takes over the watchers of both connections. r and its connection may be
 * gone when this returns.
 */
void gw_tunnel_start(gw_req_t *r, size_t head_end);

/* End r's tunnel now (worker shutdown): log it, run the log phase and close
 * both connections. r and its connection are gone afterwards. */
void gw_tunnel_close(gw_req_t *r);

#endif
