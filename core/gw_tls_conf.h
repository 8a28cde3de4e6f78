/*
 * The `tls` section of a listener (see gw_tls.h for the whole design):
 * decoded, with its certificates and keys read and its SSL contexts built
 * while the config loads, so that a bad file is a config error and a reload
 * re-reads every file. Also the shared session ticket keys.
 */
#ifndef GW_TLS_CONF_H
#define GW_TLS_CONF_H

#include "gw_config_node.h"

#include <openssl/ssl.h>

enum { GW_TLS_CLIENT_OFF = 0, GW_TLS_CLIENT_REQUEST, GW_TLS_CLIENT_REQUIRE };

/* One `certificates` entry, loaded. */
typedef struct {
    char *cert, *key, *ocsp; /* file names as written; ocsp may be NULL */
    int line;
    X509 *x509;
    EVP_PKEY *pkey;
    STACK_OF(X509) * chain;  /* intermediates after the leaf in the cert file */
    unsigned char *ocsp_der; /* the stapled OCSP response, DER */
    size_t ocsp_len;
    char **names; /* lower-case SAN DNS names, or the CN when there is none */
    size_t nnames;
    SSL_CTX *ctx; /* its group's context */
} gw_tls_cert_t;

/* A name served by a group of certificates: exact or "*.suffix". */
typedef struct {
    const char *name; /* points into a certificate's names */
    SSL_CTX *ctx;
} gw_tls_sni_t;

typedef struct gw_tls_conf_s {
    gw_tls_cert_t *certs;
    size_t ncerts;
    int min_version, max_version; /* TLS1_2_VERSION... */
    char *ciphers;                /* TLS 1.2 and below */
    char *ciphersuites;           /* TLS 1.3 */
    bool session_tickets;         /* default true */
    double session_timeout;       /* default 300 */
    int session_cache;            /* entries per worker; 0: off; default 20480 */
    char *client_ca;              /* client_certificates.ca */
    int client_mode;              /* GW_TLS_CLIENT_* */
    SSL_CTX **ctxs;               /* one per certificate group; ctxs[0]: default */
    size_t nctxs;
    gw_tls_sni_t *sni;
    size_t nsni;
    int line;
} gw_tls_conf_t;

/* ---- gw_tls_conf.c ---- */

/*
 * Decode a listener's `tls` map (n) into a new *out, reading and checking
 * every file it names and building the SSL contexts. Every problem is
 * reported through c as "file:line: path: message" naming the file; *out
 * is set even then (free it with gw_tls_conf_free).
 */
void gw_tls_conf_decode(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_tls_conf_t **out);
void gw_tls_conf_free(gw_tls_conf_t *t);

/* ---- gw_tls_ticket.c ---- */

/* Create the shared ticket keys (master, before forking). GW_OK or GW_ERROR. */
int gw_tls_tickets_init(void);
/* Make a new current key; the current one becomes the previous one. */
void gw_tls_tickets_rotate(void);
void gw_tls_tickets_free(void);
/* Seconds between two rotations. */
#define GW_TLS_TICKET_ROTATE 3600.0
/* The OpenSSL session ticket key callback using the shared keys. */
int gw_tls_ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *ectx,
                     EVP_MAC_CTX *hctx, int enc);

#endif
