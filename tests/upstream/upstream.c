/*
 * moongate-test-upstream: the HTTP/1.1 server that the end-to-end specs and
 * the benchmark proxy to.
 *
 *     moongate-test-upstream --listen HOST:PORT [--name NAME]
 *         [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
 *
 * Prints "ready" on stdout once listening and exits on SIGTERM or SIGINT.
 * One libev loop, non-blocking sockets, keep-alive and pipelining (answers
 * in order: the parser pauses after each request until its answer is fully
 * produced). Request bodies come in Content-Length or chunked framing and
 * are counted, never stored, except the first GWT_BODY_KEEP bytes for the
 * echo endpoints. Output is produced with backpressure, so streaming a
 * gigabyte either way uses bounded memory.
 *
 * Every response carries "X-Upstream: NAME" (and, over TLS, the X-TLS-*
 * headers of upstream_tls.h, except the few raw answers). A request with
 * "Expect: 100-continue" gets "100 Continue" before its body is read. HEAD
 * gets the headers of the GET answer only. The endpoints are listed in
 * gwt_dispatch().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <llhttp.h>

#include "upstream_tls.h"
#include "upstream_ws.h"

#define GWT_IN_SIZE         (64 * 1024)   /* read buffer per connection */
#define GWT_OUT_HIGH        (1024 * 1024) /* stop parsing while this much is unsent */
#define GWT_OUT_LOW         (64 * 1024)   /* refill a stream below this */
#define GWT_FILL            (64 * 1024)   /* bytes of pattern produced per step */
#define GWT_BODY_KEEP       (1024 * 1024) /* request body bytes kept for /echo */
#define GWT_HEAD_MAX        (1024 * 1024) /* request target + headers, bytes */
#define GWT_CHUNK_MAX       (1024 * 1024) /* largest chunk /bytes produces */
#define GWT_QUERY_VALUE_MAX 1024

#define GWT_OK    0
#define GWT_AGAIN (-2)
#define GWT_ERROR (-1)

static const char gwt_pattern_unit[] = "0123456789abcdef";
static char gwt_pattern[GWT_FILL + 16];

typedef struct {
    char *data;
    size_t off; /* bytes consumed from the front */
    size_t len; /* bytes in use, including the consumed ones */
    size_t cap;
} gwt_buf_t;

typedef struct {
    gwt_buf_t name;
    gwt_buf_t value;
} gwt_header_t;

typedef struct {
    gwt_buf_t url;
    gwt_header_t *headers;
    size_t nheaders;
    size_t capheaders;
    size_t head_bytes;
    bool in_value; /* the last header callback was for a value */
    bool keep_body;
    gwt_buf_t body; /* at most GWT_BODY_KEEP bytes */
    uint64_t body_length;
    int method;
    int http_major;
    int http_minor;
    bool keep_alive;
} gwt_req_t;

typedef enum {
    GWT_IDLE = 0,  /* ready for the next request */
    GWT_SLOW,      /* /slow: the answer waits for the timer */
    GWT_SLOW_BODY, /* /slow-body: the second half waits for the timer */
    GWT_STREAM,    /* /bytes: producing as the socket drains */
    GWT_WS,        /* /ws: handed to upstream_ws.c once earlier output is sent */
    GWT_TICKET,    /* /tls-ticket: a session ticket waits for the timer */
} gwt_state_t;

typedef struct gwt_server_s gwt_server_t;
typedef struct gwt_conn_s gwt_conn_t;

struct gwt_conn_s {
    gwt_server_t *srv;
    gwt_conn_t *prev;
    gwt_conn_t *next;
    int fd;
    gwt_tls_t *tls; /* NULL without --tls-cert */
    unsigned long id;
    unsigned long requests;
    ev_io rio;
    ev_io wio;
    ev_timer timer;
    llhttp_t parser;
    gwt_req_t req;
    char in[GWT_IN_SIZE];
    size_t in_off;
    size_t in_len;
    gwt_buf_t out;
    gwt_state_t state;
    uint64_t stream_left;
    uint64_t stream_pos;
    size_t chunk_size;
    bool chunked;
    bool close_after; /* close once everything produced is sent */
    bool reset_after; /* ... and close with RST */
    bool peer_eof;
    char ws_accept[29]; /* /ws: the Sec-WebSocket-Accept value */
};

struct gwt_server_s {
    struct ev_loop *loop;
    const char *name;
    int lfd;
    ev_io accept_io;
    ev_signal sigterm;
    ev_signal sigint;
    llhttp_settings_t settings;
    gwt_conn_t *conns;
    unsigned long next_conn_id;
    unsigned long requests; /* complete requests, /stats excluded */
    int health_status;
};

static void gwt_conn_run(gwt_conn_t *c);

/* ---- buffers ---- */

static void *gwt_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "moongate-test-upstream: out of memory\n");
        abort();
    }
    return q;
}

static size_t gwt_buf_pending(const gwt_buf_t *b)
{
    return b->len - b->off;
}

static void gwt_buf_reset(gwt_buf_t *b)
{
    b->off = 0;
    b->len = 0;
}

static void gwt_buf_free(gwt_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* Make room for n more bytes; moves pending bytes to the front first. */
static void gwt_buf_reserve(gwt_buf_t *b, size_t n)
{
    if (b->off > 0 && b->len + n > b->cap) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->len + n <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
        cap *= 2;
    b->data = gwt_xrealloc(b->data, cap);
    b->cap = cap;
}

static void gwt_buf_append(gwt_buf_t *b, const void *p, size_t n)
{
    gwt_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void gwt_buf_puts(gwt_buf_t *b, const char *s)
{
    gwt_buf_append(b, s, strlen(s));
}

static void gwt_buf_printf(gwt_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    gwt_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Append p as a JSON string literal, quotes included. */
static void gwt_buf_json_string(gwt_buf_t *b, const char *p, size_t n)
{
    gwt_buf_reserve(b, n + 2);
    b->data[b->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '"' || ch == '\\') {
            char esc[2] = {'\\', (char)ch};
            gwt_buf_append(b, esc, 2);
        } else if (ch < 0x20 || ch == 0x7f) {
            gwt_buf_printf(b, "\\u%04x", ch);
        } else {
            gwt_buf_append(b, &p[i], 1);
        }
    }
    gwt_buf_append(b, "\"", 1);
}

/* ---- request target helpers ---- */

/* Split the request target at the first '?'. */
static void gwt_split_target(const gwt_buf_t *url, size_t *path_len, const char **query,
                             size_t *query_len)
{
    const char *p = url->data ? url->data : "";
    const char *q = memchr(p, '?', url->len);
    *path_len = q ? (size_t)(q - p) : url->len;
    *query = q ? q + 1 : "";
    *query_len = q ? url->len - *path_len - 1 : 0;
}

static int gwt_hex(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/*
 * Find the next parameter named key in query, starting at *pos, and write
 * its percent-decoded value as a C string into out. Returns false when there
 * is none left; *pos moves past the parameter found.
 */
static bool gwt_query_next(const char *query, size_t len, size_t *pos, const char *key, char *out,
                           size_t outsize)
{
    size_t klen = strlen(key);
    while (*pos < len) {
        size_t start = *pos;
        const char *amp = memchr(query + start, '&', len - start);
        size_t end = amp ? (size_t)(amp - query) : len;
        *pos = amp ? end + 1 : len;
        if (end - start < klen + 1 || memcmp(query + start, key, klen) != 0 ||
            query[start + klen] != '=')
            continue;
        size_t o = 0;
        for (size_t i = start + klen + 1; i < end && o + 1 < outsize; i++) {
            if (query[i] == '%' && i + 2 < end && gwt_hex(query[i + 1]) >= 0 &&
                gwt_hex(query[i + 2]) >= 0) {
                out[o++] = (char)(gwt_hex(query[i + 1]) * 16 + gwt_hex(query[i + 2]));
                i += 2;
            } else {
                out[o++] = query[i];
            }
        }
        out[o] = '\0';
        return true;
    }
    return false;
}

static bool gwt_query_get(const gwt_conn_t *c, const char *key, char *out, size_t outsize)
{
    size_t path_len, query_len, pos = 0;
    const char *query;
    gwt_split_target(&c->req.url, &path_len, &query, &query_len);
    return gwt_query_next(query, query_len, &pos, key, out, outsize);
}

static uint64_t gwt_query_u64(const gwt_conn_t *c, const char *key, uint64_t dflt)
{
    char v[32];
    if (!gwt_query_get(c, key, v, sizeof v) || v[0] < '0' || v[0] > '9')
        return dflt;
    return strtoull(v, NULL, 10);
}

static bool gwt_path_is(const gwt_conn_t *c, const char *path)
{
    size_t path_len, query_len;
    const char *query;
    gwt_split_target(&c->req.url, &path_len, &query, &query_len);
    return path_len == strlen(path) && memcmp(c->req.url.data, path, path_len) == 0;
}

static bool gwt_path_has_prefix(const gwt_conn_t *c, const char *prefix)
{
    size_t n = strlen(prefix);
    return c->req.url.len >= n && memcmp(c->req.url.data, prefix, n) == 0;
}

/* The first value of request header `name` (case-insensitive), or NULL. */
static const gwt_buf_t *gwt_req_header(const gwt_req_t *r, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < r->nheaders; i++)
        if (r->headers[i].name.len == n && strncasecmp(r->headers[i].name.data, name, n) == 0)
            return &r->headers[i].value;
    return NULL;
}

/* ---- responses ---- */

static const char *gwt_reason(int status)
{
    static const struct {
        int status;
        const char *reason;
    } reasons[] = {
        {100, "Continue"},
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {304, "Not Modified"},
        {400, "Bad Request"},
        {404, "Not Found"},
        {500, "Internal Server Error"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
    };
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].status == status)
            return reasons[i].reason;
    return "Status";
}

static bool gwt_status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

enum {
    GWT_HEAD_CHUNKED = 1,      /* Transfer-Encoding: chunked */
    GWT_HEAD_CLOSE = 2,        /* close after the response, say so */
    GWT_HEAD_NO_CONNECTION = 4 /* the caller writes its own Connection header */
};

/*
 * Append a status line and headers to the output. length < 0 means no
 * Content-Length (chunked, bodiless or read-until-close). `extra` holds more
 * header lines, each ending in CRLF, or is NULL.
 */
static void gwt_head(gwt_conn_t *c, int status, const char *ctype, int64_t length, int flags,
                     const char *extra)
{
    gwt_buf_t *o = &c->out;
    gwt_buf_printf(o, "HTTP/1.1 %d %s\r\nX-Upstream: %s\r\n", status, gwt_reason(status),
                   c->srv->name);
    if (ctype)
        gwt_buf_printf(o, "Content-Type: %s\r\n", ctype);
    if (length >= 0)
        gwt_buf_printf(o, "Content-Length: %" PRId64 "\r\n", length);
    if (flags & GWT_HEAD_CHUNKED)
        gwt_buf_puts(o, "Transfer-Encoding: chunked\r\n");
    if ((flags & GWT_HEAD_CLOSE) || !c->req.keep_alive)
        c->close_after = true;
    if (!(flags & GWT_HEAD_NO_CONNECTION)) {
        if (c->close_after)
            gwt_buf_puts(o, "Connection: close\r\n");
        else if (c->req.http_major == 1 && c->req.http_minor == 0)
            gwt_buf_puts(o, "Connection: keep-alive\r\n");
    }
    if (extra)
        gwt_buf_puts(o, extra);
    gwt_buf_puts(o, gwt_tls_headers(c->tls));
    gwt_buf_puts(o, "\r\n");
}

static bool gwt_is_head(const gwt_conn_t *c)
{
    return c->req.method == HTTP_HEAD;
}

/* A complete response with a Content-Length body (none for 1xx/204/304). */
static void gwt_respond(gwt_conn_t *c, int status, const char *ctype, const char *body, size_t n,
                        const char *extra)
{
    bool has_body = gwt_status_has_body(status);
    gwt_head(c, status, has_body ? ctype : NULL, has_body ? (int64_t)n : -1, 0, extra);
    if (has_body && !gwt_is_head(c))
        gwt_buf_append(&c->out, body, n);
}

static void gwt_respond_text(gwt_conn_t *c, int status, const char *text)
{
    gwt_respond(c, status, "text/plain", text, strlen(text), NULL);
}

/* A 200 response whose JSON body is formatted from fmt (at most 255 bytes). */
static void gwt_respond_json(gwt_conn_t *c, const char *fmt, ...)
{
    char json[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(json, sizeof json, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof json)
        n = 0;
    gwt_respond(c, 200, "application/json", json, (size_t)n, NULL);
}

/* Append pattern bytes starting at stream offset pos. */
static void gwt_append_pattern(gwt_buf_t *b, uint64_t pos, size_t n)
{
    while (n > 0) {
        size_t k = n < GWT_FILL ? n : GWT_FILL;
        gwt_buf_append(b, gwt_pattern + pos % 16, k);
        pos += k;
        n -= k;
    }
}

/* Produce the next piece of a /bytes stream into the output buffer. */
static void gwt_stream_fill(gwt_conn_t *c)
{
    if (c->chunked) {
        if (c->stream_left == 0) {
            gwt_buf_puts(&c->out, "0\r\n\r\n");
            c->state = GWT_IDLE;
            return;
        }
        size_t n = c->stream_left < c->chunk_size ? (size_t)c->stream_left : c->chunk_size;
        gwt_buf_printf(&c->out, "%zx\r\n", n);
        gwt_append_pattern(&c->out, c->stream_pos, n);
        gwt_buf_puts(&c->out, "\r\n");
        c->stream_pos += n;
        c->stream_left -= n;
        return;
    }
    size_t n = c->stream_left < GWT_FILL ? (size_t)c->stream_left : GWT_FILL;
    gwt_append_pattern(&c->out, c->stream_pos, n);
    c->stream_pos += n;
    c->stream_left -= n;
    if (c->stream_left == 0)
        c->state = GWT_IDLE;
}

/* ---- endpoints ---- */

/*
 * The /echo answer: {"name", "method", "path" (the raw target), "http_version",
 * "headers" ([name, value] pairs as received), "body" (null past
 * GWT_BODY_KEEP bytes), "body_length"}, with ?status= and ?header= applied.
 */
static void gwt_echo(gwt_conn_t *c)
{
    gwt_req_t *r = &c->req;
    gwt_buf_t body = {0};
    gwt_buf_t extra = {0};

    gwt_buf_puts(&body, "{\"name\":");
    gwt_buf_json_string(&body, c->srv->name, strlen(c->srv->name));
    gwt_buf_puts(&body, ",\"method\":");
    const char *method = llhttp_method_name((llhttp_method_t)r->method);
    gwt_buf_json_string(&body, method, strlen(method));
    gwt_buf_puts(&body, ",\"path\":");
    gwt_buf_json_string(&body, r->url.data ? r->url.data : "", r->url.len);
    gwt_buf_printf(&body, ",\"http_version\":\"%d.%d\",\"headers\":[", r->http_major,
                   r->http_minor);
    for (size_t i = 0; i < r->nheaders; i++) {
        gwt_buf_puts(&body, i ? ",[" : "[");
        gwt_buf_json_string(&body, r->headers[i].name.data, r->headers[i].name.len);
        gwt_buf_puts(&body, ",");
        gwt_buf_json_string(&body, r->headers[i].value.data ? r->headers[i].value.data : "",
                            r->headers[i].value.len);
        gwt_buf_puts(&body, "]");
    }
    gwt_buf_puts(&body, "],\"body\":");
    if (r->body_length <= GWT_BODY_KEEP)
        gwt_buf_json_string(&body, r->body.data ? r->body.data : "", r->body.len);
    else
        gwt_buf_puts(&body, "null");
    gwt_buf_printf(&body, ",\"body_length\":%" PRIu64 "}", r->body_length);

    int status = (int)gwt_query_u64(c, "status", 200);
    if (status < 200 || status > 599)
        status = 200;

    size_t path_len, query_len, pos = 0;
    const char *query;
    char value[GWT_QUERY_VALUE_MAX];
    gwt_split_target(&r->url, &path_len, &query, &query_len);
    while (gwt_query_next(query, query_len, &pos, "header", value, sizeof value)) {
        char *colon = strchr(value, ':');
        if (!colon || colon == value || strpbrk(value, "\r\n"))
            continue;
        *colon = '\0';
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        gwt_buf_printf(&extra, "%s: %s\r\n", value, v);
    }
    if (extra.len)
        gwt_buf_append(&extra, "", 1);

    gwt_respond(c, status, "application/json", body.data, body.len, extra.len ? extra.data : NULL);
    gwt_buf_free(&body);
    gwt_buf_free(&extra);
}

static void gwt_bytes(gwt_conn_t *c)
{
    uint64_t n = gwt_query_u64(c, "n", 0);
    bool chunked = gwt_query_u64(c, "chunked", 0) != 0;
    uint64_t chunk = gwt_query_u64(c, "chunk", 16384);
    if (chunk == 0)
        chunk = 16384;
    if (chunk > GWT_CHUNK_MAX)
        chunk = GWT_CHUNK_MAX;

    int flags = 0;
    int64_t length = (int64_t)n;
    if (chunked && c->req.http_major == 1 && c->req.http_minor == 0) {
        /* No chunked framing for HTTP/1.0: the body ends when we close. */
        chunked = false;
        length = -1;
        flags |= GWT_HEAD_CLOSE;
    } else if (chunked) {
        length = -1;
        flags |= GWT_HEAD_CHUNKED;
    }
    gwt_head(c, 200, "application/octet-stream", length, flags, NULL);
    if (gwt_is_head(c))
        return;
    c->chunked = chunked;
    c->chunk_size = (size_t)chunk;
    c->stream_left = n;
    c->stream_pos = 0;
    c->state = GWT_STREAM;
}

static void gwt_status_endpoint(gwt_conn_t *c)
{
    int status = atoi(c->req.url.data + strlen("/status/"));
    if (status < 200 || status > 599)
        status = 400;
    gwt_respond(c, status, NULL, "", 0, NULL);
}

/* /ws: a WebSocket handshake hands the connection over to upstream_ws.c
 * (see gwt_conn_run); anything else gets 426. */
static void gwt_ws_endpoint(gwt_conn_t *c)
{
    const gwt_buf_t *upgrade = gwt_req_header(&c->req, "Upgrade");
    const gwt_buf_t *key = gwt_req_header(&c->req, "Sec-WebSocket-Key");
    if (!upgrade || upgrade->len != 9 || strncasecmp(upgrade->data, "websocket", 9) != 0 || !key ||
        !gwt_ws_accept_key(key->data, key->len, c->ws_accept)) {
        gwt_respond_text(c, 426, "websocket handshake expected");
        return;
    }
    c->state = GWT_WS;
}

static void gwt_start_timer(gwt_conn_t *c, gwt_state_t state, uint64_t ms)
{
    c->state = state;
    ev_timer_set(&c->timer, (double)ms / 1000.0, 0.0);
    ev_timer_start(c->srv->loop, &c->timer);
}

static void gwt_on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    gwt_conn_t *c = w->data;
    if (c->state == GWT_SLOW)
        gwt_echo(c);
    else if (c->state == GWT_SLOW_BODY)
        gwt_buf_puts(&c->out, "world");
    else if (c->state == GWT_TICKET)
        gwt_tls_send_ticket(c->tls);
    c->state = GWT_IDLE;
    gwt_conn_run(c);
}

/*
 * Answer the request just parsed. Paths:
 *   /echo (and any path not below)  the request as JSON; ?status= ?header=N:V
 *   /bytes?n=N[&chunked=1][&chunk=S] N bytes of "0123456789abcdef"...
 *   /sink             {"body_length": N}
 *   /slow?ms=N        /echo after N ms
 *   /slow-body?ms=N   Content-Length 10, "hello" now, "world" after N ms
 *   /status/NNN       status NNN, empty body
 *   /truncate         Content-Length 1000, 10 bytes, close
 *   /close, /reset    close (FIN or RST) without answering
 *   /no-length        body delimited by closing the connection
 *   /chunked          "hello world" in three chunks
 *   /health           200 "ok", or the status set by /set-health?status=N
 *   /conn             {"conn_id": N, "requests_on_conn": M}
 *   /tls-ticket?ms=N  as /conn, then a TLS 1.3 session ticket N ms later
 *                     on the idle connection (next requests wait for it)
 *   /stats            {"requests": N, "connections": M, "ws_open": W,
 *                     "ws_total": T} (not counted itself)
 *   /hop              hop-by-hop response headers, then close
 *   /ws[?hello=1]     WebSocket echo (upstream_ws.h); 426 without a handshake
 * Any of them with ?only=NAME behaves as /echo unless this server is NAME.
 */
static void gwt_dispatch(gwt_conn_t *c)
{
    gwt_server_t *srv = c->srv;
    char only[256];

    c->requests++;
    if (!gwt_path_is(c, "/stats"))
        srv->requests++;

    if (gwt_query_get(c, "only", only, sizeof only) && strcmp(only, srv->name) != 0) {
        gwt_echo(c);
    } else if (gwt_path_is(c, "/bytes")) {
        gwt_bytes(c);
    } else if (gwt_path_is(c, "/sink")) {
        gwt_respond_json(c, "{\"body_length\":%" PRIu64 "}", c->req.body_length);
    } else if (gwt_path_is(c, "/slow")) {
        gwt_start_timer(c, GWT_SLOW, gwt_query_u64(c, "ms", 1000));
    } else if (gwt_path_is(c, "/slow-body")) {
        gwt_head(c, 200, "text/plain", 10, 0, NULL);
        if (!gwt_is_head(c)) {
            gwt_buf_puts(&c->out, "hello");
            gwt_start_timer(c, GWT_SLOW_BODY, gwt_query_u64(c, "ms", 1000));
        }
    } else if (gwt_path_has_prefix(c, "/status/")) {
        gwt_status_endpoint(c);
    } else if (gwt_path_is(c, "/truncate")) {
        gwt_buf_printf(&c->out,
                       "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\nContent-Length: 1000\r\n\r\n"
                       "0123456789",
                       srv->name);
        c->close_after = true;
    } else if (gwt_path_is(c, "/close")) {
        c->close_after = true;
    } else if (gwt_path_is(c, "/reset")) {
        c->close_after = true;
        c->reset_after = true;
    } else if (gwt_path_is(c, "/no-length")) {
        gwt_buf_printf(&c->out,
                       "HTTP/1.1 200 OK\r\nX-Upstream: %s\r\n"
                       "Content-Type: text/plain\r\n\r\nno length body",
                       srv->name);
        c->close_after = true;
    } else if (gwt_path_is(c, "/chunked")) {
        gwt_head(c, 200, "text/plain", -1, GWT_HEAD_CHUNKED, NULL);
        if (!gwt_is_head(c))
            gwt_buf_puts(&c->out, "5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n");
    } else if (gwt_path_is(c, "/health")) {
        gwt_respond_text(c, srv->health_status, srv->health_status == 200 ? "ok" : "unhealthy");
    } else if (gwt_path_is(c, "/set-health")) {
        srv->health_status = (int)gwt_query_u64(c, "status", 200);
        gwt_respond_json(c, "{\"health_status\":%d}", srv->health_status);
    } else if (gwt_path_is(c, "/conn") || gwt_path_is(c, "/tls-ticket")) {
        gwt_respond_json(c, "{\"conn_id\":%lu,\"requests_on_conn\":%lu}", c->id, c->requests);
        if (gwt_path_is(c, "/tls-ticket"))
            gwt_start_timer(c, GWT_TICKET, gwt_query_u64(c, "ms", 100));
    } else if (gwt_path_is(c, "/stats")) {
        gwt_respond_json(
            c, "{\"requests\":%lu,\"connections\":%lu,\"ws_open\":%lu,\"ws_total\":%lu}",
            srv->requests, srv->next_conn_id, gwt_ws_open_count(), gwt_ws_total_count());
    } else if (gwt_path_is(c, "/ws")) {
        gwt_ws_endpoint(c);
    } else if (gwt_path_is(c, "/hop")) {
        gwt_head(c, 200, "text/plain", 3, GWT_HEAD_CLOSE | GWT_HEAD_NO_CONNECTION,
                 "Connection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
                 "Proxy-Connection: x\r\n");
        if (!gwt_is_head(c))
            gwt_buf_puts(&c->out, "hop");
    } else {
        gwt_echo(c);
    }
}

/* ---- request parsing (llhttp callbacks) ---- */

static void gwt_req_reset(gwt_req_t *r)
{
    gwt_buf_reset(&r->url);
    for (size_t i = 0; i < r->nheaders; i++) {
        gwt_buf_free(&r->headers[i].name);
        gwt_buf_free(&r->headers[i].value);
    }
    r->nheaders = 0;
    r->head_bytes = 0;
    r->in_value = false;
    r->keep_body = false;
    gwt_buf_reset(&r->body);
    r->body_length = 0;
    r->method = 0;
    r->http_major = 1;
    r->http_minor = 1;
    r->keep_alive = true;
}

static void gwt_req_free(gwt_req_t *r)
{
    gwt_req_reset(r);
    free(r->headers);
    gwt_buf_free(&r->url);
    gwt_buf_free(&r->body);
}

static int gwt_count_head(gwt_req_t *r, size_t n)
{
    r->head_bytes += n;
    return r->head_bytes > GWT_HEAD_MAX ? -1 : 0;
}

static int gwt_on_message_begin(llhttp_t *p)
{
    gwt_conn_t *c = p->data;
    gwt_req_reset(&c->req);
    return 0;
}

static int gwt_on_url(llhttp_t *p, const char *at, size_t n)
{
    gwt_conn_t *c = p->data;
    gwt_buf_append(&c->req.url, at, n);
    return gwt_count_head(&c->req, n);
}

static int gwt_on_header_field(llhttp_t *p, const char *at, size_t n)
{
    gwt_req_t *r = &((gwt_conn_t *)p->data)->req;
    if (r->nheaders == 0 || r->in_value) {
        if (r->nheaders == r->capheaders) {
            r->capheaders = r->capheaders ? r->capheaders * 2 : 16;
            r->headers = gwt_xrealloc(r->headers, r->capheaders * sizeof *r->headers);
        }
        memset(&r->headers[r->nheaders++], 0, sizeof *r->headers);
        r->in_value = false;
    }
    gwt_buf_append(&r->headers[r->nheaders - 1].name, at, n);
    return gwt_count_head(r, n);
}

static int gwt_on_header_value(llhttp_t *p, const char *at, size_t n)
{
    gwt_req_t *r = &((gwt_conn_t *)p->data)->req;
    r->in_value = true;
    if (r->nheaders > 0)
        gwt_buf_append(&r->headers[r->nheaders - 1].value, at, n);
    return gwt_count_head(r, n);
}

static int gwt_on_header_value_complete(llhttp_t *p)
{
    gwt_req_t *r = &((gwt_conn_t *)p->data)->req;
    /* An empty value gets no on_header_value call: mark the field done. */
    r->in_value = true;
    return 0;
}

static int gwt_on_headers_complete(llhttp_t *p)
{
    gwt_conn_t *c = p->data;
    gwt_req_t *r = &c->req;
    r->method = llhttp_get_method(p);
    r->http_major = llhttp_get_http_major(p);
    r->http_minor = llhttp_get_http_minor(p);
    gwt_buf_reserve(&r->url, 1);
    r->url.data[r->url.len] = '\0';
    r->keep_body = !gwt_path_is(c, "/sink");

    const gwt_buf_t *expect = gwt_req_header(r, "Expect");
    if (expect && expect->len == 12 && strncasecmp(expect->data, "100-continue", 12) == 0 &&
        r->http_major == 1 && r->http_minor >= 1)
        gwt_buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
    return 0;
}

static int gwt_on_body(llhttp_t *p, const char *at, size_t n)
{
    gwt_req_t *r = &((gwt_conn_t *)p->data)->req;
    r->body_length += n;
    if (r->keep_body && r->body.len < GWT_BODY_KEEP) {
        size_t keep = GWT_BODY_KEEP - r->body.len;
        gwt_buf_append(&r->body, at, n < keep ? n : keep);
    }
    return 0;
}

static int gwt_on_message_complete(llhttp_t *p)
{
    gwt_conn_t *c = p->data;
    c->req.keep_alive = llhttp_should_keep_alive(p) != 0;
    /* Stop here: the next pipelined request waits until this one is answered. */
    return HPE_PAUSED;
}

/* Parse buffered input; dispatches at most one complete request. */
static void gwt_conn_parse(gwt_conn_t *c)
{
    const char *start = c->in + c->in_off;
    llhttp_errno_t err = llhttp_execute(&c->parser, start, c->in_len - c->in_off);
    if (err == HPE_OK) {
        c->in_off = c->in_len = 0;
        return;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        const char *pos = llhttp_get_error_pos(&c->parser);
        c->in_off = (size_t)(pos - c->in);
        if (err == HPE_PAUSED)
            llhttp_resume(&c->parser);
        else
            llhttp_resume_after_upgrade(&c->parser);
        gwt_dispatch(c);
        return;
    }
    c->in_off = c->in_len = 0;
    c->req.keep_alive = false;
    const char *reason = llhttp_get_error_reason(&c->parser);
    gwt_respond_text(c, 400, reason ? reason : "bad request");
}

/* ---- connections ---- */

static void gwt_conn_close(gwt_conn_t *c)
{
    gwt_server_t *srv = c->srv;
    ev_io_stop(srv->loop, &c->rio);
    ev_io_stop(srv->loop, &c->wio);
    ev_timer_stop(srv->loop, &c->timer);
    if (c->reset_after) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    } else if (c->fd >= 0) {
        /* Unread input would turn the close into a reset: drain it first. */
        char drain[4096];
        for (int i = 0; i < 16 && gwt_tls_recv(c->tls, c->fd, drain, sizeof drain) > 0; i++)
            ;
    }
    gwt_tls_free(c->tls); /* NULL: plain, or handed over with fd */
    if (c->fd >= 0)       /* -1: handed over to the WebSocket echo */
        close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    gwt_req_free(&c->req);
    gwt_buf_free(&c->out);
    free(c);
}

/* Send pending output, refilling a stream as it drains. */
static int gwt_conn_write(gwt_conn_t *c)
{
    for (;;) {
        if (c->state == GWT_STREAM && gwt_buf_pending(&c->out) < GWT_OUT_LOW)
            gwt_stream_fill(c);
        size_t n = gwt_buf_pending(&c->out);
        if (n == 0)
            return GWT_OK;
        ssize_t w = gwt_tls_send(c->tls, c->fd, c->out.data + c->out.off, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return GWT_AGAIN;
            return GWT_ERROR;
        }
        c->out.off += (size_t)w;
        if (c->out.off == c->out.len)
            gwt_buf_reset(&c->out);
    }
}

static void gwt_conn_watch(gwt_conn_t *c)
{
    struct ev_loop *loop = c->srv->loop;
    bool want_write = gwt_buf_pending(&c->out) > 0;
    bool want_read = !c->peer_eof && !c->close_after && c->in_len < GWT_IN_SIZE;
    if (want_write && !ev_is_active(&c->wio))
        ev_io_start(loop, &c->wio);
    else if (!want_write && ev_is_active(&c->wio))
        ev_io_stop(loop, &c->wio);
    if (want_read && !ev_is_active(&c->rio))
        ev_io_start(loop, &c->rio);
    else if (!want_read && ev_is_active(&c->rio))
        ev_io_stop(loop, &c->rio);
    if (want_read && gwt_tls_pending(c->tls))
        ev_feed_event(loop, &c->rio, EV_READ); /* bytes TLS already decrypted */
}

/*
 * Make all the progress possible: send, answer buffered requests in order,
 * close when done. May free c.
 */
static void gwt_conn_run(gwt_conn_t *c)
{
    for (;;) {
        int rc = gwt_conn_write(c);
        if (rc == GWT_ERROR) {
            gwt_conn_close(c);
            return;
        }
        bool flushed = rc == GWT_OK && gwt_buf_pending(&c->out) == 0;
        if (c->state == GWT_WS) {
            char hello[8];
            gwt_ws_adopt(c->srv->loop, c->fd, c->tls, c->ws_accept,
                         gwt_query_get(c, "hello", hello, sizeof hello), c->out.data + c->out.off,
                         gwt_buf_pending(&c->out), c->in + c->in_off, c->in_len - c->in_off);
            c->fd = -1; /* both now the echo's */
            c->tls = NULL;
            gwt_conn_close(c);
            return;
        }
        if (c->state != GWT_IDLE)
            break;
        if (c->close_after) {
            if (flushed) {
                gwt_conn_close(c);
                return;
            }
            break;
        }
        if (gwt_buf_pending(&c->out) >= GWT_OUT_HIGH)
            break;
        if (c->in_off == c->in_len) {
            if (c->peer_eof && flushed) {
                gwt_conn_close(c);
                return;
            }
            break;
        }
        gwt_conn_parse(c);
    }
    gwt_conn_watch(c);
}

static void gwt_on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    gwt_conn_t *c = w->data;
    if (c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    ssize_t n = gwt_tls_recv(c->tls, c->fd, c->in + c->in_len, GWT_IN_SIZE - c->in_len);
    if (n > 0) {
        c->in_len += (size_t)n;
    } else if (n == 0) {
        c->peer_eof = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        gwt_conn_close(c);
        return;
    }
    gwt_conn_run(c);
}

static void gwt_on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    gwt_conn_run(w->data);
}

static void gwt_conn_new(gwt_server_t *srv, int fd)
{
    gwt_conn_t *c = gwt_xrealloc(NULL, sizeof *c);
    memset(c, 0, sizeof *c);
    c->srv = srv;
    c->fd = fd;
    c->id = ++srv->next_conn_id;
    c->tls = gwt_tls_new(fd);
    llhttp_init(&c->parser, HTTP_REQUEST, &srv->settings);
    c->parser.data = c;
    gwt_req_reset(&c->req);
    ev_io_init(&c->rio, gwt_on_readable, fd, EV_READ);
    ev_io_init(&c->wio, gwt_on_writable, fd, EV_WRITE);
    ev_timer_init(&c->timer, gwt_on_timer, 0.0, 0.0);
    c->rio.data = c->wio.data = c->timer.data = c;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    ev_io_start(srv->loop, &c->rio);
}

static void gwt_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    gwt_server_t *srv = w->data;
    for (;;) {
        int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        gwt_conn_new(srv, fd);
    }
}

static void gwt_on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

/* ---- startup ---- */

/* Listen on "host:port" or "[v6]:port"; returns the socket or -1. */
static int gwt_listen(const char *spec)
{
    char host[256];
    const char *port;
    if (spec[0] == '[') {
        const char *end = strchr(spec, ']');
        if (!end || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof host)
            return -1;
        memcpy(host, spec + 1, (size_t)(end - spec - 1));
        host[end - spec - 1] = '\0';
        port = end + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (!colon || (size_t)(colon - spec) >= sizeof host)
            return -1;
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port = colon + 1;
    }

    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    if (getaddrinfo(host[0] ? host : NULL, port, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static void gwt_usage(void)
{
    fprintf(stderr, "usage: moongate-test-upstream --listen HOST:PORT [--name NAME]\n"
                    "           [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]\n");
}

int main(int argc, char **argv)
{
    const char *listen_on = NULL;
    const char *tls_cert = NULL, *tls_key = NULL, *tls_client_ca = NULL;
    gwt_server_t srv = {.name = "upstream", .health_status = 200};

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_on = argv[++i];
        } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            srv.name = argv[++i];
        } else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc) {
            tls_cert = argv[++i];
        } else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc) {
            tls_key = argv[++i];
        } else if (strcmp(argv[i], "--tls-client-ca") == 0 && i + 1 < argc) {
            tls_client_ca = argv[++i];
        } else {
            gwt_usage();
            return 2;
        }
    }
    if (!listen_on || !tls_cert != !tls_key || (tls_client_ca && !tls_cert)) {
        gwt_usage();
        return 2;
    }
    if (tls_cert && !gwt_tls_init(tls_cert, tls_key, tls_client_ca))
        return 1;
    for (size_t i = 0; i < sizeof gwt_pattern; i++)
        gwt_pattern[i] = gwt_pattern_unit[i % 16];

    signal(SIGPIPE, SIG_IGN);
    srv.lfd = gwt_listen(listen_on);
    if (srv.lfd < 0) {
        fprintf(stderr, "moongate-test-upstream: cannot listen on %s: %s\n", listen_on,
                strerror(errno));
        return 1;
    }

    llhttp_settings_init(&srv.settings);
    srv.settings.on_message_begin = gwt_on_message_begin;
    srv.settings.on_url = gwt_on_url;
    srv.settings.on_header_field = gwt_on_header_field;
    srv.settings.on_header_value = gwt_on_header_value;
    srv.settings.on_header_value_complete = gwt_on_header_value_complete;
    srv.settings.on_headers_complete = gwt_on_headers_complete;
    srv.settings.on_body = gwt_on_body;
    srv.settings.on_message_complete = gwt_on_message_complete;

    srv.loop = ev_default_loop(EVFLAG_AUTO);
    ev_io_init(&srv.accept_io, gwt_on_accept, srv.lfd, EV_READ);
    srv.accept_io.data = &srv;
    ev_io_start(srv.loop, &srv.accept_io);
    ev_signal_init(&srv.sigterm, gwt_on_signal, SIGTERM);
    ev_signal_start(srv.loop, &srv.sigterm);
    ev_signal_init(&srv.sigint, gwt_on_signal, SIGINT);
    ev_signal_start(srv.loop, &srv.sigint);

    printf("ready\n");
    fflush(stdout);
    ev_run(srv.loop, 0);

    while (srv.conns)
        gwt_conn_close(srv.conns);
    gwt_ws_close_all();
    close(srv.lfd);
    ev_loop_destroy(srv.loop);
    return 0;
}
