/* TLS for the test upstream (see upstream_tls.h). */
#include "upstream_tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct gwt_tls_s {
    SSL *ssl;
    char sni[256];
    char headers[1024];
};

static SSL_CTX *gwt_tls_ctx;

/* Record the server name the client sent. */
static int gwt_tls_servername(SSL *ssl, int *alert, void *arg)
{
    gwt_tls_t *tls = SSL_get_app_data(ssl);
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (tls && name)
        snprintf(tls->sni, sizeof tls->sni, "%s", name);
    return SSL_TLSEXT_ERR_OK;
}

static bool gwt_tls_fail(const char *what, const char *file)
{
    char reason[256];
    ERR_error_string_n(ERR_get_error(), reason, sizeof reason);
    fprintf(stderr, "moongate-test-upstream: %s %s: %s\n", what, file ? file : "", reason);
    return false;
}

bool gwt_tls_init(const char *cert, const char *key, const char *client_ca)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return gwt_tls_fail("cannot create a TLS context", NULL);
    gwt_tls_ctx = ctx;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        return gwt_tls_fail("cannot load certificate", cert);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        return gwt_tls_fail("cannot load key", key);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_tlsext_servername_callback(ctx, gwt_tls_servername);
    static const unsigned char sid_ctx[] = "moongate-test-upstream";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    if (client_ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
        if (!names || SSL_CTX_load_verify_file(ctx, client_ca) != 1)
            return gwt_tls_fail("cannot load client CA", client_ca);
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return true;
}

bool gwt_tls_send_ticket(gwt_tls_t *tls)
{
    if (!tls || SSL_version(tls->ssl) != TLS1_3_VERSION || SSL_new_session_ticket(tls->ssl) != 1)
        return false;
    bool ok = SSL_do_handshake(tls->ssl) == 1; /* writes the queued ticket */
    ERR_clear_error();
    return ok;
}

gwt_tls_t *gwt_tls_new(int fd)
{
    if (!gwt_tls_ctx)
        return NULL;
    gwt_tls_t *tls = calloc(1, sizeof *tls);
    if (!tls)
        abort();
    tls->ssl = SSL_new(gwt_tls_ctx);
    if (!tls->ssl || SSL_set_fd(tls->ssl, fd) != 1)
        abort();
    SSL_set_app_data(tls->ssl, tls);
    SSL_set_accept_state(tls->ssl);
    return tls;
}

/* Map a failed SSL_read_ex (write: false) or SSL_write_ex to the recv/send
 * contract. A write after the peer's close_notify that fails is EPIPE, not
 * 0, so that a sender never loops on it. */
static ssize_t gwt_tls_error(gwt_tls_t *tls, bool write)
{
    int e = SSL_get_error(tls->ssl, 0);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_ZERO_RETURN && !write)
        return 0;
    SSL_set_quiet_shutdown(tls->ssl, 1);
    errno = e == SSL_ERROR_ZERO_RETURN ? EPIPE : ECONNRESET;
    return -1;
}

ssize_t gwt_tls_recv(gwt_tls_t *tls, int fd, void *buf, size_t len)
{
    if (!tls)
        return recv(fd, buf, len, 0);
    size_t n = 0;
    ERR_clear_error();
    if (SSL_read_ex(tls->ssl, buf, len, &n) == 1)
        return (ssize_t)n;
    return gwt_tls_error(tls, false);
}

ssize_t gwt_tls_send(gwt_tls_t *tls, int fd, const void *buf, size_t len)
{
    if (!tls)
        return send(fd, buf, len, MSG_NOSIGNAL);
    size_t n = 0;
    ERR_clear_error();
    if (SSL_write_ex(tls->ssl, buf, len, &n) == 1)
        return (ssize_t)n;
    return gwt_tls_error(tls, true);
}

bool gwt_tls_pending(gwt_tls_t *tls)
{
    return tls && SSL_pending(tls->ssl) > 0;
}

const char *gwt_tls_headers(gwt_tls_t *tls)
{
    if (!tls)
        return "";
    char subject[256] = "-";
    X509 *peer = SSL_get1_peer_certificate(tls->ssl);
    if (peer) {
        X509_NAME_oneline(X509_get_subject_name(peer), subject, sizeof subject);
        X509_free(peer);
    }
    snprintf(tls->headers, sizeof tls->headers,
             "X-TLS-SNI: %s\r\nX-TLS-Session-Reused: %s\r\nX-TLS-Protocol: %s\r\n"
             "X-TLS-Client-Cert: %s\r\n",
             tls->sni[0] ? tls->sni : "-", SSL_session_reused(tls->ssl) ? "yes" : "no",
             SSL_get_version(tls->ssl), subject);
    return tls->headers;
}

void gwt_tls_free(gwt_tls_t *tls)
{
    if (!tls)
        return;
    ERR_clear_error();
    if (SSL_is_init_finished(tls->ssl) && !SSL_get_quiet_shutdown(tls->ssl))
        SSL_shutdown(tls->ssl);
    ERR_clear_error();
    SSL_free(tls->ssl);
    free(tls);
}
