/*
 * TLS for gw_httpc: contexts and per-connection operations (see
 * gw_httpc_tls.h).
 */
#include "gw_httpc_tls.h"
#include "gw_core.h"
#include "gw_httpc.h"
#include "gw_tls_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct gw_httpc_tls_ca_s gw_httpc_tls_ca_t;

/* A context made for one CA file. */
struct gw_httpc_tls_ca_s {
    gw_httpc_tls_ca_t *next;
    char *path;
    SSL_CTX *ctx;
};

struct gw_httpc_tls_s {
    SSL_CTX *dflt; /* the system CA bundle; NULL until first used */
    gw_httpc_tls_ca_t *cas;
};

void gw_httpc_tls_free(gw_httpc_tls_t *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->dflt);
    while (t->cas) {
        gw_httpc_tls_ca_t *ca = t->cas;
        t->cas = ca->next;
        SSL_CTX_free(ca->ctx);
        free(ca->path);
        free(ca);
    }
    free(t);
}

/* OpenSSL's reason for the oldest error queued, or dflt; empties the
 * queue. */
static void gw_httpc_tls_reason(char *buf, size_t len, const char *dflt)
{
    const char *reason = ERR_reason_error_string(ERR_peek_error());
    snprintf(buf, len, "%s", reason ? reason : dflt);
    ERR_clear_error();
}

/* A new client context trusting ca (NULL: the default paths). NULL with
 * the reason in err. */
static SSL_CTX *gw_httpc_tls_ctx_new(const char *ca, char *err, size_t errlen)
{
    char why[200];
    ERR_clear_error();
    if (ca && access(ca, R_OK) != 0) {
        snprintf(err, errlen, "ssl_ca: cannot load %s: %s", ca, strerror(errno));
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    bool ok = ctx && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1;
    if (ok) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        /* Writes report progress; a close without close_notify ends the
         * stream (the HTTP framing tells whether the response is whole). */
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
        SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
        ok = ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) == 1
                : SSL_CTX_set_default_verify_paths(ctx) == 1;
    }
    if (!ok) {
        gw_httpc_tls_reason(why, sizeof why, "cannot create a TLS context");
        if (ca)
            snprintf(err, errlen, "ssl_ca: cannot load %s: %s", ca, why);
        else
            snprintf(err, errlen, "tls: %s", why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

SSL_CTX *gw_httpc_tls_ctx(gw_httpc_tls_t **t, const char *ca, char *err, size_t errlen)
{
    if (!*t)
        *t = gw_xcalloc(1, sizeof **t);
    gw_httpc_tls_t *tls = *t;
    if (!ca) {
        if (!tls->dflt)
            tls->dflt = gw_httpc_tls_ctx_new(NULL, err, errlen);
        return tls->dflt;
    }
    for (gw_httpc_tls_ca_t *x = tls->cas; x; x = x->next)
        if (strcmp(x->path, ca) == 0)
            return x->ctx;
    SSL_CTX *ctx = gw_httpc_tls_ctx_new(ca, err, errlen);
    if (!ctx)
        return NULL;
    gw_httpc_tls_ca_t *x = gw_xcalloc(1, sizeof *x);
    x->path = gw_xstrdup(ca);
    x->ctx = ctx;
    x->next = tls->cas;
    tls->cas = x;
    return ctx;
}

/* Whether host is an IPv4 or IPv6 literal. */
static bool gw_httpc_tls_is_ip(const char *host)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

SSL *gw_httpc_tls_new(SSL_CTX *ctx, int fd, const char *host, bool verify, char *err, size_t errlen)
{
    ERR_clear_error();
    SSL *ssl = SSL_new(ctx);
    bool ip = gw_httpc_tls_is_ip(host);
    bool ok = ssl && SSL_set_fd(ssl, fd) == 1;
    if (ok) {
        SSL_set_connect_state(ssl);
        if (!ip)
            ok = SSL_set_tlsext_host_name(ssl, host) == 1;
    }
    if (ok && verify)
        ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1
                : SSL_set1_host(ssl, host) == 1;
    if (ok && !verify)
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    if (!ok) {
        char why[200];
        gw_httpc_tls_reason(why, sizeof why, "cannot create a TLS session");
        snprintf(err, errlen, "%s: %s", gw_httpc_error_tls, why);
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

int gw_httpc_tls_handshake(SSL *ssl, int *events, char *err, size_t errlen)
{
    return gw_tls_client_handshake(ssl, events, gw_httpc_error_tls, "the server", err, errlen);
}

/* One SSL_read_ex (write false) or SSL_write_ex (write true): see
 * gw_httpc_tls_read. */
static ssize_t gw_httpc_tls_io(SSL *ssl, bool write, void *buf, size_t len, int *events)
{
    size_t n = 0;
    ERR_clear_error();
    errno = 0;
    int ok = write ? SSL_write_ex(ssl, buf, len, &n) : SSL_read_ex(ssl, buf, len, &n);
    if (ok == 1)
        return (ssize_t)n;
    int saved = errno;
    int e = SSL_get_error(ssl, 0);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *events = e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE;
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN && !write)
        return 0;
    SSL_set_quiet_shutdown(ssl, 1);
    errno = e == SSL_ERROR_SYSCALL && saved ? saved : EIO;
    return -1;
}

ssize_t gw_httpc_tls_read(SSL *ssl, void *buf, size_t len, int *events)
{
    return gw_httpc_tls_io(ssl, false, buf, len, events);
}

ssize_t gw_httpc_tls_write(SSL *ssl, const void *buf, size_t len, int *events)
{
    return gw_httpc_tls_io(ssl, true, (void *)buf, len, events);
}

bool gw_httpc_tls_pending(SSL *ssl)
{
    return SSL_has_pending(ssl) == 1;
}

bool gw_httpc_tls_idle_alive(SSL *ssl)
{
    return gw_tls_client_idle_alive(ssl);
}

void gw_httpc_tls_close(SSL *ssl)
{
    gw_tls_client_free(ssl);
}
