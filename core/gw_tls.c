/*
 * TLS client connections (gw_tls.h): the handshake driven by the event
 * loop, then reads and writes over the SSL with the read(2)/writev(2)
 * contract of gw_io.h. The HTTP code sets the socket interest it needs
 * (EV_READ to read, EV_WRITE to write); when OpenSSL needs the other
 * direction (a read that must write, a write that must read) the wait is
 * recorded in c->tls_flags and the event is translated back here.
 */
#include "gw_tls.h"

#include "gw_log.h"
#include "gw_net.h"

#include <errno.h>
#include <openssl/err.h>
#include <string.h>
#include <sys/socket.h>

enum {
    GW_TLS_DONE = 1,             /* handshake complete */
    GW_TLS_READ_WANTS_WRITE = 2, /* an SSL read waits for the socket to be writable */
    GW_TLS_WRITE_WANTS_READ = 4, /* an SSL write waits for the socket to be readable */
    GW_TLS_ADDED_WRITE = 8,      /* EV_WRITE was added for a read, not by the HTTP code */
    GW_TLS_FAILED = 16,          /* a fatal error: no close_notify */
    GW_TLS_PEEKED = 32,          /* the first byte was checked for plain HTTP */
    GW_TLS_REMOVED_READ = 64,    /* EV_READ was taken off while a read waits to write */
};

static const char *gw_tls_peer(gw_conn_t *c, char *buf, size_t size)
{
    gw_net_ntop((const struct sockaddr_storage *)&c->peer, buf, size);
    return buf;
}

int gw_tls_conn_start(gw_conn_t *c, gw_tls_conf_t *t)
{
    SSL *ssl = t->nctxs ? SSL_new(t->ctxs[0]) : NULL;
    if (!ssl || SSL_set_fd(ssl, c->fd) != 1) {
        gw_log_error("cannot start TLS on a connection: %s",
                     ERR_reason_error_string(ERR_peek_last_error()));
        ERR_clear_error();
        SSL_free(ssl);
        return GW_ERROR;
    }
    SSL_set_accept_state(ssl);
    c->ssl = ssl;
    c->tls_flags = 0;
    return GW_OK;
}

/* Why a handshake or an I/O call failed, for the log. */
static const char *gw_tls_error_reason(int err, char *buf, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    if (err == SSL_ERROR_SSL && e) {
        const char *r = ERR_reason_error_string(e);
        snprintf(buf, size, "%s", r ? r : "TLS error");
    } else if (err == SSL_ERROR_SYSCALL && errno) {
        snprintf(buf, size, "%s", strerror(errno));
    } else {
        snprintf(buf, size, "connection closed by the client");
    }
    ERR_clear_error();
    return buf;
}

/*
 * Look at the first byte before the handshake: plain HTTP (a method's
 * upper-case letter instead of a TLS handshake record) turns c into a
 * plain connection whose request is answered with 400. GW_OK to go on,
 * GW_AGAIN to wait, GW_DONE after closing c.
 */
static int gw_tls_check_plain(gw_conn_t *c)
{
    unsigned char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return GW_AGAIN;
    if (n <= 0) {
        gw_log_debug("TLS client closed before the handshake");
        c->tls_flags |= GW_TLS_FAILED;
        gw_conn_close(c);
        return GW_DONE;
    }
    c->tls_flags |= GW_TLS_PEEKED;
    if (b >= 'A' && b <= 'Z') {
        char peer[64];
        gw_log_info("plain HTTP request from %s on a TLS listener",
                    gw_tls_peer(c, peer, sizeof peer));
        SSL_free(c->ssl);
        c->ssl = NULL;
        c->tls_flags = 0;
        c->plain_on_tls = true;
    }
    return GW_OK;
}

/* One step of the handshake (see gw_tls_conn_event). */
static int gw_tls_handshake(gw_conn_t *c, int *revents)
{
    gw_worker_t *w = c->w;
    if (!(c->tls_flags & GW_TLS_PEEKED)) {
        int rc = gw_tls_check_plain(c);
        if (rc != GW_OK)
            return rc;
        if (!c->ssl) {
            *revents = EV_READ;
            return GW_OK;
        }
    }
    ERR_clear_error();
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1) {
        c->tls_flags |= GW_TLS_DONE;
        if (gw_log_level >= GW_LOG_DEBUG) {
            char peer[64];
            gw_log_debug("TLS handshake with %s done: %s %s%s", gw_tls_peer(c, peer, sizeof peer),
                         SSL_get_version(c->ssl), SSL_get_cipher_name(c->ssl),
                         SSL_session_reused(c->ssl) ? ", session resumed" : "");
        }
        gw_io_set(w->loop, &c->io, EV_READ);
        c->timer.repeat = w->cfg->timeouts.client_header;
        ev_timer_again(w->loop, &c->timer);
        *revents = EV_READ;
        return GW_OK;
    }
    int err = SSL_get_error(c->ssl, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        gw_io_set(w->loop, &c->io, err == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE);
        return GW_AGAIN;
    }
    char peer[64], why[256];
    gw_tls_error_reason(err, why, sizeof why);
    gw_log_info("TLS handshake with %s failed: %s", gw_tls_peer(c, peer, sizeof peer), why);
    c->tls_flags |= GW_TLS_FAILED;
    gw_conn_close(c);
    return GW_DONE;
}

int gw_tls_conn_event(gw_conn_t *c, int *revents)
{
    if (!(c->tls_flags & GW_TLS_DONE))
        return gw_tls_handshake(c, revents);
    uint8_t f = c->tls_flags;
    if ((f & GW_TLS_READ_WANTS_WRITE) && (*revents & EV_WRITE)) {
        /* The read can go on: give the HTTP code back its own interest. */
        *revents |= EV_READ;
        int events = c->io.events | ((f & GW_TLS_REMOVED_READ) ? EV_READ : 0);
        if (f & GW_TLS_ADDED_WRITE) {
            *revents &= ~EV_WRITE;
            events &= ~EV_WRITE;
        }
        gw_io_set(c->w->loop, &c->io, events);
        c->tls_flags &=
            (uint8_t) ~(GW_TLS_READ_WANTS_WRITE | GW_TLS_ADDED_WRITE | GW_TLS_REMOVED_READ);
    } else if ((f & GW_TLS_READ_WANTS_WRITE) && (*revents & EV_READ)) {
        /* Readable is not what the read waits for: wait for writable only. */
        *revents &= ~EV_READ;
        c->tls_flags |= GW_TLS_REMOVED_READ;
        gw_io_set(c->w->loop, &c->io, (c->io.events & ~EV_READ) | EV_WRITE);
    }
    if (f & GW_TLS_WRITE_WANTS_READ) {
        if (*revents & EV_READ) {
            /* The write can go on: the HTTP code sets its interest again. */
            *revents |= EV_WRITE;
            c->tls_flags &= (uint8_t)~GW_TLS_WRITE_WANTS_READ;
        } else if (*revents & EV_WRITE) {
            /* Writable is not what the write waits for: wait for readable. */
            *revents &= ~EV_WRITE;
            gw_io_set(c->w->loop, &c->io, (c->io.events & ~EV_WRITE) | EV_READ);
        }
    }
    return GW_OK;
}

void gw_tls_conn_timeout(gw_conn_t *c)
{
    if (!(c->tls_flags & GW_TLS_DONE)) {
        char peer[64];
        gw_log_info("TLS handshake with %s timed out", gw_tls_peer(c, peer, sizeof peer));
        c->tls_flags |= GW_TLS_FAILED;
    }
}

void gw_tls_conn_kick(gw_conn_t *c)
{
    if (c->ssl && (c->tls_flags & GW_TLS_DONE) && SSL_has_pending(c->ssl))
        ev_feed_event(c->w->loop, &c->io, EV_READ);
}

/* Map a failed SSL call to the read/writev contract: -1 with errno (EAGAIN
 * after arranging the interest OpenSSL needs), or 0 for a clean end. */
static ssize_t gw_tls_io_error(gw_conn_t *c, int rc, bool reading)
{
    int err = SSL_get_error(c->ssl, rc);
    switch (err) {
    case SSL_ERROR_WANT_READ:
        if (!reading) {
            c->tls_flags |= GW_TLS_WRITE_WANTS_READ;
            gw_io_set(c->w->loop, &c->io, c->io.events | EV_READ);
        }
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        if (reading) {
            c->tls_flags |= GW_TLS_READ_WANTS_WRITE;
            if (!(c->io.events & EV_WRITE)) {
                c->tls_flags |= GW_TLS_ADDED_WRITE;
                gw_io_set(c->w->loop, &c->io, c->io.events | EV_WRITE);
            }
        }
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        if (reading)
            return 0;
        errno = EPIPE;
        return -1;
    default: {
        int saved = errno;
        char why[256];
        gw_tls_error_reason(err, why, sizeof why);
        gw_log_debug("TLS %s failed: %s", reading ? "read" : "write", why);
        c->tls_flags |= GW_TLS_FAILED;
        if (err == SSL_ERROR_SYSCALL && saved == 0 && reading)
            return 0;
        errno = err == SSL_ERROR_SYSCALL && saved ? saved : EPROTO;
        return -1;
    }
    }
}

ssize_t gw_tls_recv(gw_conn_t *c, void *buf, size_t len)
{
    size_t got = 0;
    ERR_clear_error();
    int rc = SSL_read_ex(c->ssl, buf, len, &got);
    if (rc == 1) {
        if (SSL_has_pending(c->ssl))
            ev_feed_event(c->w->loop, &c->io, EV_READ);
        return (ssize_t)got;
    }
    return gw_tls_io_error(c, rc, true);
}

/* Small writes are coalesced into one TLS record; larger ones go in turn. */
#define GW_TLS_COALESCE 16384

ssize_t gw_tls_sendv(gw_conn_t *c, const struct iovec *iov, int n)
{
    static unsigned char scratch[GW_TLS_COALESCE];
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    c->tls_flags &= (uint8_t)~GW_TLS_WRITE_WANTS_READ;
    struct iovec one;
    if (n > 1 && total <= sizeof scratch) {
        size_t off = 0;
        for (int i = 0; i < n; i++) {
            memcpy(scratch + off, iov[i].iov_base, iov[i].iov_len);
            off += iov[i].iov_len;
        }
        one.iov_base = scratch;
        one.iov_len = total;
        iov = &one;
        n = 1;
    }
    size_t done = 0;
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len == 0)
            continue;
        size_t wr = 0;
        ERR_clear_error();
        int rc = SSL_write_ex(c->ssl, iov[i].iov_base, iov[i].iov_len, &wr);
        if (rc != 1) {
            if (done > 0) {
                ERR_clear_error();
                return (ssize_t)done;
            }
            return gw_tls_io_error(c, rc, false);
        }
        done += wr;
        if (wr < iov[i].iov_len)
            break;
    }
    return (ssize_t)done;
}

void gw_tls_conn_free(gw_conn_t *c)
{
    if (!c->ssl)
        return;
    if ((c->tls_flags & GW_TLS_DONE) && !(c->tls_flags & GW_TLS_FAILED)) {
        ERR_clear_error();
        SSL_shutdown(c->ssl); /* close_notify, best effort: the socket closes next */
    }
    ERR_clear_error();
    SSL_free(c->ssl);
    c->ssl = NULL;
}

void gw_tls_req_begin(gw_req_t *r, gw_conn_t *c)
{
    r->tls = true;
    r->client_cert = SSL_get1_peer_certificate(c->ssl);
    r->client_verify = r->client_cert ? SSL_get_verify_result(c->ssl) : X509_V_OK;
}

void gw_tls_req_end(gw_req_t *r)
{
    X509_free(r->client_cert);
    r->client_cert = NULL;
}
