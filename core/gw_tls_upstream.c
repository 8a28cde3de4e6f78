/*
 * TLS on upstream connections (see gw_tls_upstream.h). Every OpenSSL call
 * starts with an empty error queue, so that SSL_get_error and the reasons
 * logged are about that call only. A connection whose TLS failed is never
 * sent close_notify (OpenSSL forbids SSL_shutdown after a fatal error).
 */
#include "gw_tls_upstream.h"

#include "gw_log.h"
#include "gw_tls_client.h"
#include "gw_worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>

/* Whether host is an IPv4 or IPv6 literal. */
static bool gw_tls_is_ip(const char *host)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

/* Forget t's saved session (it led to a failure, or the worker ends). */
static void gw_tls_forget_session(gw_target_t *t)
{
    if (t->tls_session) {
        SSL_SESSION_free(t->tls_session);
        t->tls_session = NULL;
    }
}

int gw_tls_upstream_new_session(SSL *ssl, SSL_SESSION *sess)
{
    gw_upconn_t *uc = SSL_get_app_data(ssl);
    if (!uc || !SSL_SESSION_is_resumable(sess))
        return 0;
    gw_tls_forget_session(uc->target);
    uc->target->tls_session = sess;
    return 1;
}

void gw_tls_upstream_target_free(gw_target_t *t)
{
    gw_tls_forget_session(t);
}

SSL *gw_tls_upstream_ssl_new(const gw_upstream_conf_t *conf, size_t index, int fd)
{
    const char *host = conf->targets[index].host;
    const char *sni = conf->tls.sni ? conf->tls.sni : gw_tls_is_ip(host) ? NULL : host;
    const char *name = conf->tls.sni ? conf->tls.sni : host; /* what the certificate must name */
    ERR_clear_error();
    SSL *ssl = SSL_new(conf->tls.ctx);
    if (!ssl)
        return NULL;
    bool ok = SSL_set_fd(ssl, fd) == 1;
    SSL_set_connect_state(ssl);
    if (ok && sni)
        ok = SSL_set_tlsext_host_name(ssl, sni) == 1;
    if (ok && conf->tls.verify)
        ok = gw_tls_is_ip(name) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1
                                : SSL_set1_host(ssl, name) == 1;
    ERR_clear_error();
    if (!ok) {
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

int gw_tls_upstream_attach(gw_upconn_t *uc)
{
    gw_target_t *t = uc->target;
    SSL *ssl = gw_tls_upstream_ssl_new(t->up->conf, (size_t)t->index, uc->fd);
    if (!ssl)
        return GW_ERROR;
    SSL_set_app_data(ssl, uc);
    if (t->tls_session && SSL_set_session(ssl, t->tls_session) != 1) {
        ERR_clear_error();
        gw_tls_forget_session(t);
    }
    uc->ssl = ssl;
    return GW_OK;
}

int gw_tls_upstream_ssl_handshake(SSL *ssl, int *events, char *err, size_t errlen)
{
    return gw_tls_client_handshake(ssl, events, "TLS handshake failed", "the upstream", err,
                                   errlen);
}

int gw_tls_upstream_handshake(gw_upconn_t *uc, int *events, char *err, size_t errlen)
{
    int rc = gw_tls_upstream_ssl_handshake(uc->ssl, events, err, errlen);
    if (rc == GW_ERROR)
        gw_tls_forget_session(uc->target); /* it may be what the upstream refused */
    return rc;
}

/*
 * One SSL_read_ex (write: false) or SSL_write_ex (write: true) of up to len
 * bytes. Returns the count moved; 0 at the end of the stream (reads);
 * -1 with errno EAGAIN and *events set to the socket event to wait for;
 * -1 with another errno after a fatal error, its reason in why.
 */
static ssize_t gw_tls_io(SSL *ssl, bool write, void *buf, size_t len, int *events, char *why,
                         size_t whylen)
{
    size_t n = 0;
    ERR_clear_error();
    errno = 0;
    int ok = write ? SSL_write_ex(ssl, buf, len, &n) : SSL_read_ex(ssl, buf, len, &n);
    if (ok == 1)
        return (ssize_t)n;
    int saved = errno;
    int e = SSL_get_error(ssl, 0);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *events = e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE;
        ERR_clear_error();
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN && !write) {
        /* close_notify, or the TCP end (SSL_OP_IGNORE_UNEXPECTED_EOF) */
        ERR_clear_error();
        return 0;
    }
    gw_tls_client_why(ssl, e, saved, "the upstream", why, whylen);
    SSL_set_quiet_shutdown(ssl, 1);
    errno = e == SSL_ERROR_SYSCALL && saved ? saved : ECONNRESET;
    return -1;
}

ssize_t gw_tls_upstream_ssl_read(SSL *ssl, void *buf, size_t len, int *events, char *why,
                                 size_t whylen)
{
    return gw_tls_io(ssl, false, buf, len, events, why, whylen);
}

ssize_t gw_tls_upstream_ssl_write(SSL *ssl, const void *buf, size_t len, int *events, char *why,
                                  size_t whylen)
{
    return gw_tls_io(ssl, true, (void *)buf, len, events, why, whylen);
}

/* A read or write of uc failed for good: log OpenSSL's reason with the
 * target (errno is kept for the caller). */
static void gw_tls_log_fatal(gw_upconn_t *uc, const char *what, const char *why)
{
    int saved = errno;
    gw_log_warn("upstream %s target %s: TLS %s failed: %s", uc->target->up->conf->name,
                uc->target->name, what, why);
    errno = saved;
}

ssize_t gw_tls_upstream_recv(gw_upconn_t *uc, void *buf, size_t len)
{
    int events = 0;
    char why[256];
    uc->tls_rwant = 0;
    ssize_t n = gw_tls_io(uc->ssl, false, buf, len, &events, why, sizeof why);
    if (n >= 0)
        return n;
    if (errno != EAGAIN) {
        gw_tls_log_fatal(uc, "read", why);
    } else if (events == EV_WRITE) {
        /* The read goes on once the socket takes bytes. */
        uc->tls_rwant = EV_WRITE;
        gw_io_set(uc->w->loop, &uc->io, (uc->io.events & (EV_READ | EV_WRITE)) | EV_WRITE);
    }
    return -1;
}

/*
 * Each iovec is one SSL_write_ex (partial writes allowed). A write that
 * must wait is retried by the caller with the same bytes first, as OpenSSL
 * requires: the bytes of earlier iovecs are reported as written, so the
 * next call starts where the waiting write started.
 */
ssize_t gw_tls_upstream_sendv(gw_upconn_t *uc, const struct iovec *iov, int n)
{
    size_t total = 0;
    char why[256];
    uc->tls_wwant = 0;
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len == 0)
            continue;
        int events = 0;
        ssize_t done =
            gw_tls_io(uc->ssl, true, iov[i].iov_base, iov[i].iov_len, &events, why, sizeof why);
        if (done > 0) {
            total += (size_t)done;
            if ((size_t)done < iov[i].iov_len)
                break;
            continue;
        }
        if (errno != EAGAIN) {
            gw_tls_log_fatal(uc, "write", why);
            return -1;
        }
        uc->tls_wwant = (uint8_t)events;
        if (total > 0)
            break;
        return -1;
    }
    return (ssize_t)total;
}

bool gw_tls_upstream_pending(gw_upconn_t *uc)
{
    return uc->ssl && SSL_pending(uc->ssl) > 0;
}

int gw_tls_upstream_revents(gw_upconn_t *uc, int revents)
{
    if (!uc->ssl)
        return revents;
    if (uc->tls_rwant == EV_WRITE && (revents & EV_WRITE))
        revents |= EV_READ;
    if (uc->tls_wwant == EV_READ && (revents & EV_READ))
        revents |= EV_WRITE;
    return revents;
}

bool gw_tls_upstream_idle_alive(gw_upconn_t *uc)
{
    return gw_tls_client_idle_alive(uc->ssl);
}

void gw_tls_upstream_ssl_free(SSL *ssl)
{
    gw_tls_client_free(ssl);
}

void gw_tls_upstream_detach(gw_upconn_t *uc)
{
    gw_tls_upstream_ssl_free(uc->ssl);
    uc->ssl = NULL;
}
