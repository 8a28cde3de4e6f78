/*
 * HTTP/1.1 grammar helpers (RFC 9110/9112) used when checking requests and
 * rewriting heads: tokens, field values, hosts, hop-by-hop headers, reason
 * phrases, and the gateway's own JSON error responses.
 */
#ifndef GW_HTTP_H
#define GW_HTTP_H

#include "gw_core.h"

/* Whether s is a non-empty token (tchar*). */
bool gw_http_is_token(gw_str_t s);

/* Whether s is a valid field value: no CR, LF, NUL or other control
 * characters except horizontal tab (so obs-fold is rejected). */
bool gw_http_valid_value(gw_str_t s);

/* s without leading and trailing spaces and tabs. */
gw_str_t gw_http_trim(gw_str_t s);

/* Whether s is a plausible Host value: reg-name, IPv4 or [IPv6], optional
 * :port; empty is allowed (HTTP/1.0 without Host). */
bool gw_http_valid_host(gw_str_t s);

/* The host of a Host value without ":port"; lower-casing is left to the
 * router. */
gw_str_t gw_http_host_without_port(gw_str_t host);

/* Split an absolute-form target "http://auth/path?q" into its authority
 * and origin-form ("/path?q", or "/" when empty). GW_OK or GW_ERROR. */
int gw_http_absolute_target(gw_str_t target, gw_str_t *authority, gw_str_t *origin);

/* Whether a header (by name) is hop-by-hop and never forwarded:
 * Connection, Keep-Alive, TE, Trailer, Proxy-Connection, Upgrade. */
bool gw_http_is_hop_by_hop(gw_str_t name);

/* Whether `name` is listed in the comma-separated Connection value. */
bool gw_http_connection_lists(gw_str_t connection, gw_str_t name);

/* The standard reason phrase for status ("Unknown" if none). */
const char *gw_http_reason(int status);

/*
 * Format a complete gateway-generated response into buf: status line,
 * Content-Type: application/json, Content-Length, X-Request-Id, Connection
 * close when `close` is set, and the body
 * {"status":N,"error":"message","request_id":"id"} (omitted for HEAD).
 * Returns the length (truncated to size).
 */
size_t gw_http_error_response(char *buf, size_t size, int status, const char *message,
                              const char *request_id, bool close, bool head_only);

#endif
