/* Handshake steps and failure reasons of TLS clients (see gw_tls_client.h). */
#include "gw_tls_client.h"

#include "gw_core.h"

#include <errno.h>
#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

void gw_tls_client_why(SSL *ssl, int e, int sys_errno, const char *peer, char *buf, size_t len)
{
    unsigned long code = ERR_peek_error();
    if (e == SSL_ERROR_SSL && code) {
        const char *reason = ERR_reason_error_string(code);
        long v = SSL_get_verify_result(ssl);
        if (ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED && v != X509_V_OK)
            snprintf(buf, len, "%s (%s)", reason ? reason : "certificate verify failed",
                     X509_verify_cert_error_string(v));
        else
            snprintf(buf, len, "%s", reason ? reason : "protocol error");
    } else if (e == SSL_ERROR_SYSCALL && sys_errno) {
        snprintf(buf, len, "%s", strerror(sys_errno));
    } else {
        snprintf(buf, len, "connection closed by %s", peer);
    }
    ERR_clear_error();
}

int gw_tls_client_handshake(SSL *ssl, int *events, const char *prefix, const char *peer, char *err,
                            size_t errlen)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(ssl);
    if (rc == 1)
        return GW_OK;
    int saved = errno;
    int e = SSL_get_error(ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *events = e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE;
        ERR_clear_error();
        return GW_AGAIN;
    }
    char why[256];
    gw_tls_client_why(ssl, e, saved, peer, why, sizeof why);
    snprintf(err, errlen, "%s: %s", prefix, why);
    SSL_set_quiet_shutdown(ssl, 1);
    return GW_ERROR;
}

bool gw_tls_client_idle_alive(SSL *ssl)
{
    char b;
    size_t n = 0;
    ERR_clear_error();
    if (SSL_read_ex(ssl, &b, 1, &n) == 1)
        return false; /* data nobody asked for */
    int e = SSL_get_error(ssl, 0);
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_READ)
        return true;
    if (e != SSL_ERROR_ZERO_RETURN)
        SSL_set_quiet_shutdown(ssl, 1);
    return false;
}

void gw_tls_client_free(SSL *ssl)
{
    if (!ssl)
        return;
    ERR_clear_error();
    if (SSL_is_init_finished(ssl) && !SSL_get_quiet_shutdown(ssl))
        SSL_shutdown(ssl); /* one non-blocking attempt: close_notify, no wait for the reply */
    ERR_clear_error();
    SSL_free(ssl);
}
