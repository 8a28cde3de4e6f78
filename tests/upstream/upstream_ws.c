/*
 * The test upstream's WebSocket echo (see upstream_ws.h). One structure per
 * connection on the server's libev loop; frames are parsed from a growing
 * input buffer, answers queue in an output buffer, and reading stops while
 * too much output waits, so a client that does not read is not buffered
 * without bound. Bytes move through upstream_tls.h, so the echo works the
 * same over a TLS connection.
 */
#include "upstream_ws.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define GWT_WS_MAX_MESSAGE (16u * 1024 * 1024) /* larger messages: close 1009 */
#define GWT_WS_OUT_HIGH    (4u * 1024 * 1024)  /* stop reading above this */
#define GWT_WS_READ        (64 * 1024)

enum { WS_CONT = 0, WS_TEXT = 1, WS_BINARY = 2, WS_CLOSE = 8, WS_PING = 9, WS_PONG = 10 };

typedef struct {
    char *data;
    size_t off, len, cap; /* bytes [off, len) are pending */
} gwt_ws_buf_t;

typedef struct gwt_ws_s gwt_ws_t;
struct gwt_ws_s {
    struct ev_loop *loop;
    gwt_ws_t *prev, *next;
    int fd;
    gwt_tls_t *tls; /* NULL for a plain connection */
    ev_io rio, wio;
    gwt_ws_buf_t in, out;
    gwt_ws_buf_t msg; /* a fragmented message being assembled */
    int msg_opcode;   /* its opcode; 0 when none */
    bool close_sent, close_received, peer_eof, failed;
};

static gwt_ws_t *gwt_ws_list;
static unsigned long gwt_ws_open_n, gwt_ws_total_n;

static void gwt_ws_reserve(gwt_ws_buf_t *b, size_t n)
{
    if (b->off > 0 && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + n <= b->cap)
        return;
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + n <= b->cap)
            return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n)
        cap *= 2;
    b->data = realloc(b->data, cap);
    if (!b->data) {
        fprintf(stderr, "moongate-test-upstream: out of memory\n");
        abort();
    }
    b->cap = cap;
}

static void gwt_ws_append(gwt_ws_buf_t *b, const void *p, size_t n)
{
    gwt_ws_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

bool gwt_ws_accept_key(const char *key, size_t keylen, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char decoded[32], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char joined[128];
    if (keylen != 24 || EVP_DecodeBlock(decoded, (const unsigned char *)key, 24) != 18)
        return false;
    memcpy(joined, key, keylen);
    memcpy(joined + keylen, guid, sizeof guid - 1);
    if (!EVP_Digest(joined, keylen + sizeof guid - 1, md, &mdlen, EVP_sha1(), NULL))
        return false;
    return EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen) == 28;
}

/* Queue one unmasked frame (the server never masks). */
static void gwt_ws_frame(gwt_ws_t *ws, int opcode, const char *p, size_t n)
{
    unsigned char h[10];
    size_t hl = 2;
    h[0] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        h[1] = (unsigned char)n;
    } else if (n <= 0xffff) {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    gwt_ws_append(&ws->out, h, hl);
    gwt_ws_append(&ws->out, p, n);
}

/* Start or answer the close handshake with status `code`. */
static void gwt_ws_send_close(gwt_ws_t *ws, unsigned code, const char *reason)
{
    if (ws->close_sent)
        return;
    char body[125];
    size_t n = strlen(reason);
    body[0] = (char)(code >> 8);
    body[1] = (char)code;
    memcpy(body + 2, reason, n);
    gwt_ws_frame(ws, WS_CLOSE, body, 2 + n);
    ws->close_sent = true;
}

/* A complete text or binary message. */
static void gwt_ws_message(gwt_ws_t *ws, int opcode, const char *p, size_t n)
{
    if (opcode == WS_TEXT && n == 9 && memcmp(p, "__close__", 9) == 0)
        gwt_ws_send_close(ws, 1000, "bye");
    else if (!ws->close_sent)
        gwt_ws_frame(ws, opcode, p, n);
}

/* A control frame (FIN set, at most 125 bytes, checked). */
static void gwt_ws_control(gwt_ws_t *ws, int opcode, const char *p, size_t n)
{
    if (opcode == WS_PING) {
        if (!ws->close_sent)
            gwt_ws_frame(ws, WS_PONG, p, n);
    } else if (opcode == WS_CLOSE) {
        ws->close_received = true;
        if (!ws->close_sent) { /* echo the status code, as RFC 6455 suggests */
            gwt_ws_frame(ws, WS_CLOSE, p, n >= 2 ? 2 : 0);
            ws->close_sent = true;
        }
    }
}

/* One data frame: a whole message, or a fragment of one. Returns false
 * after queueing a close for a protocol error. */
static bool gwt_ws_data(gwt_ws_t *ws, bool fin, int opcode, const char *p, size_t n)
{
    if (opcode != WS_CONT && ws->msg_opcode) {
        gwt_ws_send_close(ws, 1002, "expected a continuation");
        return false;
    }
    if (opcode == WS_CONT && !ws->msg_opcode) {
        gwt_ws_send_close(ws, 1002, "unexpected continuation");
        return false;
    }
    if (opcode != WS_CONT && fin) {
        gwt_ws_message(ws, opcode, p, n);
        return true;
    }
    if (opcode != WS_CONT)
        ws->msg_opcode = opcode;
    if (ws->msg.len - ws->msg.off + n > GWT_WS_MAX_MESSAGE) {
        gwt_ws_send_close(ws, 1009, "message too big");
        return false;
    }
    gwt_ws_append(&ws->msg, p, n);
    if (fin) {
        gwt_ws_message(ws, ws->msg_opcode, ws->msg.data + ws->msg.off, ws->msg.len - ws->msg.off);
        ws->msg.off = ws->msg.len = 0;
        ws->msg_opcode = 0;
    }
    return true;
}

/*
 * Parse one frame at the front of ws->in. Returns its size when it was
 * complete and handled, 0 when more bytes are needed, -1 after a protocol
 * error (a close is queued).
 */
static long gwt_ws_parse_frame(gwt_ws_t *ws)
{
    unsigned char *b = (unsigned char *)ws->in.data + ws->in.off;
    size_t avail = ws->in.len - ws->in.off, hl = 2;
    if (avail < 2)
        return 0;
    bool fin = b[0] & 0x80, masked = b[1] & 0x80;
    int opcode = b[0] & 0x0f;
    uint64_t n = b[1] & 0x7f;
    if (n == 126) {
        hl = 4;
        if (avail < hl)
            return 0;
        n = (uint64_t)b[2] << 8 | b[3];
    } else if (n == 127) {
        hl = 10;
        if (avail < hl)
            return 0;
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | b[2 + i];
    }
    if ((b[0] & 0x70) || !masked || (opcode >= 3 && opcode <= 7) || opcode > 10 ||
        (opcode >= 8 && (!fin || n > 125))) {
        gwt_ws_send_close(ws, 1002, "protocol error");
        return -1;
    }
    if (n > GWT_WS_MAX_MESSAGE) {
        gwt_ws_send_close(ws, 1009, "message too big");
        return -1;
    }
    if (avail < hl + 4 + n)
        return 0;
    const unsigned char *mask = b + hl;
    char *p = (char *)b + hl + 4;
    for (uint64_t i = 0; i < n; i++)
        p[i] = (char)(p[i] ^ mask[i & 3]);
    if (opcode >= 8)
        gwt_ws_control(ws, opcode, p, (size_t)n);
    else if (!gwt_ws_data(ws, fin, opcode, p, (size_t)n))
        return -1;
    return (long)(hl + 4 + n);
}

static void gwt_ws_free(gwt_ws_t *ws)
{
    ev_io_stop(ws->loop, &ws->rio);
    ev_io_stop(ws->loop, &ws->wio);
    gwt_tls_free(ws->tls);
    close(ws->fd);
    if (ws->prev)
        ws->prev->next = ws->next;
    else
        gwt_ws_list = ws->next;
    if (ws->next)
        ws->next->prev = ws->prev;
    free(ws->in.data);
    free(ws->out.data);
    free(ws->msg.data);
    free(ws);
    gwt_ws_open_n--;
}

/* Write what is queued; false on a write error. */
static bool gwt_ws_flush(gwt_ws_t *ws)
{
    while (ws->out.len > ws->out.off) {
        ssize_t w =
            gwt_tls_send(ws->tls, ws->fd, ws->out.data + ws->out.off, ws->out.len - ws->out.off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        ws->out.off += (size_t)w;
    }
    ws->out.off = ws->out.len = 0;
    return true;
}

/* Handle what was read and written; close when the exchange is over. May
 * free ws. */
static void gwt_ws_run(gwt_ws_t *ws)
{
    while (!ws->failed && !ws->close_received && ws->out.len - ws->out.off < GWT_WS_OUT_HIGH) {
        long n = gwt_ws_parse_frame(ws);
        if (n < 0)
            ws->failed = true;
        if (n <= 0)
            break;
        ws->in.off += (size_t)n;
    }
    if (!gwt_ws_flush(ws)) {
        gwt_ws_free(ws);
        return;
    }
    bool pending = ws->out.len > ws->out.off;
    /* Done: both closes exchanged, a protocol error answered, or the
     * client went away. */
    if (!pending && ((ws->close_sent && ws->close_received) || ws->failed || ws->peer_eof)) {
        gwt_ws_free(ws);
        return;
    }
    bool reading = !ws->peer_eof && !ws->close_received && !ws->failed &&
                   ws->out.len - ws->out.off < GWT_WS_OUT_HIGH;
    if (reading && !ev_is_active(&ws->rio))
        ev_io_start(ws->loop, &ws->rio);
    else if (!reading && ev_is_active(&ws->rio))
        ev_io_stop(ws->loop, &ws->rio);
    if (pending && !ev_is_active(&ws->wio))
        ev_io_start(ws->loop, &ws->wio);
    else if (!pending && ev_is_active(&ws->wio))
        ev_io_stop(ws->loop, &ws->wio);
    if (reading && gwt_tls_pending(ws->tls))
        ev_feed_event(ws->loop, &ws->rio, EV_READ); /* decrypted already: no socket event */
}

static void gwt_ws_on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    gwt_ws_t *ws = w->data;
    gwt_ws_reserve(&ws->in, GWT_WS_READ);
    ssize_t n = gwt_tls_recv(ws->tls, ws->fd, ws->in.data + ws->in.len, GWT_WS_READ);
    if (n > 0)
        ws->in.len += (size_t)n;
    else if (n == 0)
        ws->peer_eof = true;
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        ws->peer_eof = ws->failed = true;
    gwt_ws_run(ws);
}

static void gwt_ws_on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    gwt_ws_run(w->data);
}

void gwt_ws_adopt(struct ev_loop *loop, int fd, gwt_tls_t *tls, const char *accept, bool hello,
                  const char *out, size_t outlen, const char *in, size_t inlen)
{
    gwt_ws_t *ws = calloc(1, sizeof *ws);
    if (!ws)
        abort();
    ws->loop = loop;
    ws->fd = fd;
    ws->tls = tls;
    gwt_ws_append(&ws->out, out, outlen);
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    gwt_ws_append(&ws->out, head, (size_t)n);
    if (hello)
        gwt_ws_frame(ws, WS_TEXT, "hello", 5);
    gwt_ws_append(&ws->in, in, inlen);
    ev_io_init(&ws->rio, gwt_ws_on_readable, fd, EV_READ);
    ev_io_init(&ws->wio, gwt_ws_on_writable, fd, EV_WRITE);
    ws->rio.data = ws->wio.data = ws;
    ws->next = gwt_ws_list;
    if (gwt_ws_list)
        gwt_ws_list->prev = ws;
    gwt_ws_list = ws;
    gwt_ws_open_n++;
    gwt_ws_total_n++;
    gwt_ws_run(ws);
}

unsigned long gwt_ws_open_count(void)
{
    return gwt_ws_open_n;
}

unsigned long gwt_ws_total_count(void)
{
    return gwt_ws_total_n;
}

void gwt_ws_close_all(void)
{
    while (gwt_ws_list)
        gwt_ws_free(gwt_ws_list);
}
