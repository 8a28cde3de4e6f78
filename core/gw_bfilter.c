/*
 * Response body filters: a route with body_filter plugins sends the
 * upstream's body through the body_filter phase, piece by piece, and the
 * client gets what the plugins made of it. The body is decoded first (a
 * chunked upstream body arrives as its data), and re-framed for the client:
 * chunked for HTTP/1.1, delimited by closing the connection for HTTP/1.0,
 * since the filters may change its length. gw_proxy.c drives the phase
 * (the upstream is not read while it runs); this file decides which
 * responses are filtered, frames the output, and holds the PDK's C side of
 * moongate.response.get_chunk and friends.
 */
#include "gw_lua.h"
#include "gw_worker.h"

#include <stdio.h>
#include <stdlib.h>

#define GW_PDK __attribute__((visibility("default"), used))

/* Output buffers larger than this are not kept between two pieces. */
#define GW_BF_KEEP (256 * 1024)

void gw_bfilter_framing(gw_req_t *r)
{
    int status = r->status;
    if (!r->match.route || !(gw_lua_route_phases(r->w, r->match.route->index) & GW_LUA_BODY_FILTER))
        return;
    if (r->parser.method == HTTP_HEAD || status < 200 || status == 204 || status == 304)
        return;
    r->bfilter = true;
    if (r->rbody_mode == GW_BODY_CHUNKED)
        r->rdecode = true;
    if (r->parser.http_minor == 0)
        r->close_after = true; /* the end of the body is the end of the connection */
    else if (r->rbody_mode == GW_BODY_EOF && llhttp_should_keep_alive(&r->parser))
        r->close_after = false; /* chunked, its end is marked: the client's connection stays */
}

/* Room for n more bytes after bf_len (bytes already sent are dropped). */
static void gw_bf_reserve(gw_req_t *r, size_t n)
{
    if (r->bf_sent > 0) {
        memmove(r->bf_data, r->bf_data + r->bf_sent, r->bf_len - r->bf_sent);
        r->bf_len -= r->bf_sent;
        r->bf_sent = 0;
    }
    if (r->bf_cap - r->bf_len >= n)
        return;
    size_t cap = r->bf_cap ? r->bf_cap : 4096;
    while (cap - r->bf_len < n)
        cap *= 2;
    r->bf_data = gw_xrealloc(r->bf_data, cap);
    r->bf_cap = cap;
}

void gw_bfilter_output(gw_req_t *r, const char *p, size_t len, bool eof)
{
    bool chunked = r->parser.http_minor >= 1;
    gw_bf_reserve(r, len + 32);
    if (len && chunked)
        r->bf_len += (size_t)snprintf(r->bf_data + r->bf_len, 20, "%zx\r\n", len);
    if (len)
        memcpy(r->bf_data + r->bf_len, p, len);
    r->bf_len += len;
    if (len && chunked) {
        memcpy(r->bf_data + r->bf_len, "\r\n", 2);
        r->bf_len += 2;
    }
    if (eof && chunked) {
        memcpy(r->bf_data + r->bf_len, "0\r\n\r\n", 5);
        r->bf_len += 5;
    }
}

void gw_bfilter_sent(gw_req_t *r)
{
    r->bf_len = r->bf_sent = 0;
    if (r->bf_cap > GW_BF_KEEP)
        gw_bfilter_release(r);
}

void gw_bfilter_release(gw_req_t *r)
{
    free(r->bf_data);
    r->bf_data = NULL;
    r->bf_len = r->bf_cap = r->bf_sent = 0;
}

/* ---- the PDK's C side (called through the FFI) ---- */

/* The name of the running phase (gw_lua_pdk.c). */
const char *gw_pdk_phase_name(void);

static int gw_bf_phase_check(gw_req_t *r, char *err, size_t errlen)
{
    if (r && r->lua_phase == GW_LUA_BODY_FILTER && r->c)
        return GW_OK;
    snprintf(err, errlen, "not allowed in %s: only in body_filter", gw_pdk_phase_name());
    return GW_ERROR;
}

/* The piece of the body the running body_filter phase is for: *p, *len
 * (valid until the phase ends), and *eof when it is the last one. */
GW_PDK int gw_pdk_body_chunk(const char **p, size_t *len, int *eof, char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (gw_bf_phase_check(r, err, errlen) != GW_OK)
        return GW_ERROR;
    *p = r->rin ? r->rin->data + r->rsend_start : "";
    *len = r->rin ? r->rsend_end - r->rsend_start : 0;
    *eof = r->rdone;
    return GW_OK;
}

/* What the body_filter chain made of the piece: it goes to the client. */
GW_PDK int gw_pdk_body_emit(const char *p, size_t len, char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (gw_bf_phase_check(r, err, errlen) != GW_OK)
        return GW_ERROR;
    gw_bfilter_output(r, p, len, r->rdone);
    return GW_OK;
}
