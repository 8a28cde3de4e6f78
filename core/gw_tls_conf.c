/* A listener's `tls` section: decoding, files, SSL contexts (gw_tls_conf.h). */
#include "gw_tls_conf.h"

#include "gw_log.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Mozilla's "intermediate" TLS 1.2 list (ECDHE only: no DH parameters). */
#define GW_TLS_DEFAULT_CIPHERS                                                                     \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define GW_TLS_DEFAULT_SUITES                                                                      \
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

static const unsigned char gw_tls_alpn[] = "\x08http/1.1";

/* The reason of OpenSSL's last error, or `fallback`; clears the queue. */
static const char *gw_tls_reason(const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : fallback;
}

/* ---- certificates ---- */

static void gw_tls_report_file(gw_cnode_ctx_t *c, int line, const char *key, const char *file,
                               const char *what)
{
    char msg[1200];
    snprintf(msg, sizeof msg, "%s: %s", file, what);
    gw_cnode_report_key(c, line, key, msg);
}

static void gw_tls_add_name(gw_tls_cert_t *tc, const char *s, size_t len)
{
    char *name = gw_xstrndup(s, len);
    for (char *p = name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    tc->names = gw_xrealloc(tc->names, (tc->nnames + 1) * sizeof *tc->names);
    tc->names[tc->nnames++] = name;
}

/* The names a certificate serves: its SAN DNS names, else its CN. */
static void gw_tls_cert_names(gw_tls_cert_t *tc)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(tc->x509, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_DNS)
            gw_tls_add_name(tc, (const char *)ASN1_STRING_get0_data(g->d.dNSName),
                            (size_t)ASN1_STRING_length(g->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
    if (tc->nnames > 0)
        return;
    X509_NAME *subject = X509_get_subject_name(tc->x509);
    int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (i >= 0) {
        ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
        gw_tls_add_name(tc, (const char *)ASN1_STRING_get0_data(cn),
                        (size_t)ASN1_STRING_length(cn));
    }
}

/* Read a PEM certificate file: the leaf, then its chain. */
static bool gw_tls_read_cert(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_tls_cert_t *tc)
{
    BIO *b = BIO_new_file(tc->cert, "r");
    if (!b) {
        gw_tls_report_file(c, n->line, "cert", tc->cert, strerror(errno ? errno : ENOENT));
        ERR_clear_error();
        return false;
    }
    tc->x509 = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL);
    if (!tc->x509) {
        char msg[300];
        snprintf(msg, sizeof msg, "not a PEM certificate (%s)", gw_tls_reason("unreadable"));
        gw_tls_report_file(c, n->line, "cert", tc->cert, msg);
        BIO_free(b);
        return false;
    }
    tc->chain = sk_X509_new_null();
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        sk_X509_push(tc->chain, x);
    ERR_clear_error(); /* the end of the file reads as "no start line" */
    BIO_free(b);
    gw_tls_cert_names(tc);
    return true;
}

static bool gw_tls_read_key(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_tls_cert_t *tc)
{
    BIO *b = BIO_new_file(tc->key, "r");
    if (!b) {
        gw_tls_report_file(c, n->line, "key", tc->key, strerror(errno ? errno : ENOENT));
        ERR_clear_error();
        return false;
    }
    tc->pkey = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!tc->pkey) {
        char msg[300];
        snprintf(msg, sizeof msg, "not a PEM private key (%s)", gw_tls_reason("unreadable"));
        gw_tls_report_file(c, n->line, "key", tc->key, msg);
        return false;
    }
    if (tc->x509 && X509_check_private_key(tc->x509, tc->pkey) != 1) {
        char msg[600];
        snprintf(msg, sizeof msg, "does not match the certificate %s (%s)", tc->cert,
                 gw_tls_reason("key mismatch"));
        gw_tls_report_file(c, n->line, "key", tc->key, msg);
        return false;
    }
    return true;
}

/* Read an OCSP response file (DER) to staple. */
static bool gw_tls_read_ocsp(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_tls_cert_t *tc)
{
    FILE *f = fopen(tc->ocsp, "rb");
    if (!f) {
        gw_tls_report_file(c, n->line, "ocsp", tc->ocsp, strerror(errno));
        return false;
    }
    size_t cap = 4096, len = 0;
    unsigned char *p = gw_xmalloc(cap);
    size_t got;
    while ((got = fread(p + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap)
            p = gw_xrealloc(p, cap *= 2);
    }
    fclose(f);
    const unsigned char *q = p;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &q, (long)len);
    if (!resp || len == 0) {
        gw_tls_report_file(c, n->line, "ocsp", tc->ocsp, "not a DER OCSP response");
        ERR_clear_error();
        free(p);
        return false;
    }
    OCSP_RESPONSE_free(resp);
    tc->ocsp_der = p;
    tc->ocsp_len = len;
    return true;
}

/* One `certificates` entry: { cert, key, ocsp }. */
static void gw_tls_decode_cert(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_tls_cert_t *tc)
{
    static const char *const fields[] = {"cert", "key", "ocsp", NULL};
    tc->line = n->line;
    if (!gw_cnode_check_map(c, n, fields, "field"))
        return;
    gw_cnode_field_str(c, n, "cert", &tc->cert);
    gw_cnode_field_str(c, n, "key", &tc->key);
    gw_cnode_field_str(c, n, "ocsp", &tc->ocsp);
    if (!tc->cert)
        gw_cnode_report_key(c, n->line, "cert", "required field missing");
    if (!tc->key)
        gw_cnode_report_key(c, n->line, "key", "required field missing");
    if (!tc->cert || !tc->key)
        return;
    const gw_cnode_t *cn = gw_cnode_get(n, "cert"), *kn = gw_cnode_get(n, "key");
    if (gw_tls_read_cert(c, cn, tc))
        gw_tls_read_key(c, kn, tc);
    if (tc->ocsp)
        gw_tls_read_ocsp(c, gw_cnode_get(n, "ocsp"), tc);
}

/* ---- contexts ---- */

static int gw_tls_alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, gw_tls_alpn, sizeof gw_tls_alpn - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static bool gw_tls_name_match(const char *pattern, const char *name)
{
    if (pattern[0] != '*')
        return strcasecmp(pattern, name) == 0;
    const char *dot = strchr(name, '.');
    return dot && dot != name && strcasecmp(pattern + 1, dot) == 0;
}

/* SNI: switch to the certificate group serving the name (exact first). */
static int gw_tls_servername_cb(SSL *s, int *alert, void *arg)
{
    const gw_tls_conf_t *t = arg;
    const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    if (!name || t->nctxs < 2)
        return SSL_TLSEXT_ERR_OK;
    SSL_CTX *found = NULL;
    for (size_t i = 0; i < t->nsni && !found; i++)
        if (t->sni[i].name[0] != '*' && strcasecmp(t->sni[i].name, name) == 0)
            found = t->sni[i].ctx;
    for (size_t i = 0; i < t->nsni && !found; i++)
        if (t->sni[i].name[0] == '*' && gw_tls_name_match(t->sni[i].name, name))
            found = t->sni[i].ctx;
    if (found && found != SSL_get_SSL_CTX(s))
        SSL_set_SSL_CTX(s, found);
    return SSL_TLSEXT_ERR_OK;
}

/* OCSP stapling: the response loaded for the certificate being served. */
static int gw_tls_status_cb(SSL *s, void *arg)
{
    const gw_tls_conf_t *t = arg;
    X509 *x = SSL_get_certificate(s);
    for (size_t i = 0; x && i < t->ncerts; i++) {
        const gw_tls_cert_t *tc = &t->certs[i];
        if (tc->x509 == x || (tc->x509 && X509_cmp(tc->x509, x) == 0)) {
            if (!tc->ocsp_der)
                return SSL_TLSEXT_ERR_NOACK;
            unsigned char *copy = OPENSSL_memdup(tc->ocsp_der, tc->ocsp_len);
            if (!copy || !SSL_set_tlsext_status_ocsp_resp(s, copy, (long)tc->ocsp_len)) {
                OPENSSL_free(copy);
                return SSL_TLSEXT_ERR_NOACK;
            }
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* Request mode: a client certificate that fails verification is recorded
 * (SSL_get_verify_result), not fatal. */
static int gw_tls_verify_request_cb(int ok, X509_STORE_CTX *x)
{
    return 1;
}

/* A context with t's settings (protocols, ciphers, sessions, client
 * certificates), no certificate yet. NULL after reporting. Unusable cipher
 * lists are reported for the listener's first context only. */
static SSL_CTX *gw_tls_ctx_new(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_tls_conf_t *t)
{
    bool report = t->nctxs == 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        gw_cnode_report(c, n->line, "cannot create a TLS context: %s", gw_tls_reason("?"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, t->min_version);
    SSL_CTX_set_max_proto_version(ctx, t->max_version);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read whole socket buffers, not a record header then its body: one
     * read(2) per request instead of two. Bytes read ahead count as
     * pending for gw_tls_conn_kick (SSL_has_pending). */
    SSL_CTX_set_read_ahead(ctx, 1);
    if (SSL_CTX_set_cipher_list(ctx, t->ciphers) != 1 && report) {
        const gw_cnode_t *v = gw_cnode_get(n, "ciphers");
        gw_cnode_report_key(c, v ? v->line : n->line, "ciphers", "no usable cipher in the list");
    }
    if (SSL_CTX_set_ciphersuites(ctx, t->ciphersuites) != 1 && report) {
        const gw_cnode_t *v = gw_cnode_get(n, "ciphersuites");
        gw_cnode_report_key(c, v ? v->line : n->line, "ciphersuites",
                            "no usable TLS 1.3 cipher suite in the list");
    }
    ERR_clear_error();
    static const unsigned char sid[] = "moongate";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
    SSL_CTX_set_timeout(ctx, (long)t->session_timeout);
    if (t->session_cache > 0) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(ctx, t->session_cache);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    if (t->session_tickets)
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, gw_tls_ticket_cb);
    else
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_alpn_select_cb(ctx, gw_tls_alpn_cb, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, gw_tls_servername_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
    SSL_CTX_set_tlsext_status_cb(ctx, gw_tls_status_cb);
    SSL_CTX_set_tlsext_status_arg(ctx, t);
    if (t->client_mode != GW_TLS_CLIENT_OFF) {
        if (t->client_ca) {
            SSL_CTX_load_verify_locations(ctx, t->client_ca, NULL);
            STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca);
            if (names)
                SSL_CTX_set_client_CA_list(ctx, names);
            ERR_clear_error();
        }
        if (t->client_mode == GW_TLS_CLIENT_REQUIRE)
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        else
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, gw_tls_verify_request_cb);
    }
    return ctx;
}

static bool gw_tls_same_names(const gw_tls_cert_t *a, const gw_tls_cert_t *b)
{
    if (a->nnames != b->nnames)
        return false;
    for (size_t i = 0; i < a->nnames; i++)
        if (strcmp(a->names[i], b->names[i]) != 0)
            return false;
    return true;
}

/* Group the loaded certificates by their names (one of each key type per
 * group) into contexts, and index the names for SNI. */
static void gw_tls_build(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_tls_conf_t *t)
{
    t->ctxs = gw_xcalloc(t->ncerts, sizeof *t->ctxs);
    for (size_t i = 0; i < t->ncerts; i++) {
        gw_tls_cert_t *tc = &t->certs[i];
        for (size_t j = 0; j < i && !tc->ctx; j++) {
            gw_tls_cert_t *o = &t->certs[j];
            if (!gw_tls_same_names(o, tc))
                continue;
            bool taken = false;
            for (size_t k = 0; k < i; k++)
                if (t->certs[k].ctx == o->ctx &&
                    EVP_PKEY_get_base_id(t->certs[k].pkey) == EVP_PKEY_get_base_id(tc->pkey))
                    taken = true;
            if (!taken)
                tc->ctx = o->ctx;
        }
        if (!tc->ctx) {
            tc->ctx = gw_tls_ctx_new(c, n, t);
            if (!tc->ctx)
                return;
            t->ctxs[t->nctxs++] = tc->ctx;
            for (size_t k = 0; k < tc->nnames; k++) {
                t->sni = gw_xrealloc(t->sni, (t->nsni + 1) * sizeof *t->sni);
                t->sni[t->nsni++] = (gw_tls_sni_t){tc->names[k], tc->ctx};
            }
        }
        if (SSL_CTX_use_cert_and_key(tc->ctx, tc->x509, tc->pkey, tc->chain, 1) != 1)
            gw_cnode_report(c, tc->line, "certificates: %s: %s", tc->cert,
                            gw_tls_reason("cannot use this certificate"));
    }
}

/* ---- decoding ---- */

static const char *const gw_tls_protocol_names[] = {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", NULL};
static const int gw_tls_protocol_versions[] = {TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION,
                                               TLS1_3_VERSION};

/* `protocols`: a list of versions; the lowest and highest listed bound
 * what is accepted. */
static void gw_tls_decode_protocols(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_tls_conf_t *t)
{
    const gw_cnode_t *v = gw_cnode_field(n, "protocols");
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "protocols");
    if (v->kind != GW_CNODE_LIST || v->nitems == 0) {
        gw_cnode_expect(c, v, "a list of TLSv1.2, TLSv1.3");
    } else {
        int lo = 0, hi = 0;
        for (size_t i = 0; i < v->nitems; i++) {
            size_t mi = gw_cnode_path_index(c, i);
            int k;
            if (gw_cnode_enum(c, v->items[i], gw_tls_protocol_names, &k)) {
                int ver = gw_tls_protocol_versions[k];
                lo = lo == 0 || ver < lo ? ver : lo;
                hi = ver > hi ? ver : hi;
            }
            gw_cnode_path_pop(c, mi);
        }
        if (lo) {
            t->min_version = lo;
            t->max_version = hi;
        }
    }
    gw_cnode_path_pop(c, m);
}

/* `client_certificates: { ca, mode: request | require }`. */
static void gw_tls_decode_client(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_tls_conf_t *t)
{
    static const char *const fields[] = {"ca", "mode", NULL};
    static const char *const modes[] = {"off", "request", "require", NULL};
    const gw_cnode_t *v = gw_cnode_field(n, "client_certificates");
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "client_certificates");
    if (gw_cnode_check_map(c, v, fields, "field")) {
        t->client_mode = GW_TLS_CLIENT_REQUEST;
        gw_cnode_field_enum(c, v, "mode", modes, &t->client_mode);
        gw_cnode_field_str(c, v, "ca", &t->client_ca);
        if (t->client_ca) {
            const gw_cnode_t *ca = gw_cnode_get(v, "ca");
            FILE *f = fopen(t->client_ca, "r");
            STACK_OF(X509_NAME) *names = f ? SSL_load_client_CA_file(t->client_ca) : NULL;
            if (!f) {
                gw_tls_report_file(c, ca->line, "ca", t->client_ca, strerror(errno));
            } else if (!names) {
                char msg[300];
                snprintf(msg, sizeof msg, "no PEM CA certificate (%s)",
                         gw_tls_reason("unreadable"));
                gw_tls_report_file(c, ca->line, "ca", t->client_ca, msg);
            }
            if (f)
                fclose(f);
            sk_X509_NAME_pop_free(names, X509_NAME_free);
        } else if (t->client_mode == GW_TLS_CLIENT_REQUIRE) {
            gw_cnode_report_key(c, v->line, "ca", "required when mode is require");
        }
    }
    gw_cnode_path_pop(c, m);
}

void gw_tls_conf_decode(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_tls_conf_t **out)
{
    static const char *const fields[] = {"certificates",  "protocols",           "ciphers",
                                         "ciphersuites",  "session_tickets",     "session_timeout",
                                         "session_cache", "client_certificates", NULL};
    gw_tls_conf_t *t = *out = gw_xcalloc(1, sizeof *t);
    t->line = n->line;
    t->min_version = TLS1_2_VERSION;
    t->max_version = TLS1_3_VERSION;
    t->ciphers = gw_xstrdup(GW_TLS_DEFAULT_CIPHERS);
    t->ciphersuites = gw_xstrdup(GW_TLS_DEFAULT_SUITES);
    t->session_tickets = true;
    t->session_timeout = 300;
    t->session_cache = 20480;
    if (!gw_cnode_check_map(c, n, fields, "field"))
        return;
    gw_tls_decode_protocols(c, n, t);
    gw_cnode_field_str(c, n, "ciphers", &t->ciphers);
    gw_cnode_field_str(c, n, "ciphersuites", &t->ciphersuites);
    gw_cnode_field_bool(c, n, "session_tickets", &t->session_tickets);
    gw_cnode_field_duration(c, n, "session_timeout", true, &t->session_timeout);
    gw_cnode_field_int(c, n, "session_cache", 0, 10000000, &t->session_cache);
    gw_tls_decode_client(c, n, t);
    const gw_cnode_t *v = gw_cnode_field(n, "certificates");
    size_t errs_before = c->errs->count;
    size_t m = gw_cnode_path_key(c, "certificates");
    if (!v || v->kind != GW_CNODE_LIST || v->nitems == 0) {
        if (v)
            gw_cnode_expect(c, v, "a list of { cert, key }");
        else
            gw_cnode_report(c, n->line, "required field missing");
    } else {
        t->certs = gw_xcalloc(v->nitems, sizeof *t->certs);
        for (size_t i = 0; i < v->nitems; i++) {
            size_t mi = gw_cnode_path_index(c, i);
            gw_tls_decode_cert(c, v->items[i], &t->certs[t->ncerts++]);
            gw_cnode_path_pop(c, mi);
        }
    }
    gw_cnode_path_pop(c, m);
    if (c->errs->count == errs_before)
        gw_tls_build(c, n, t);
}

void gw_tls_conf_free(gw_tls_conf_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->ncerts; i++) {
        gw_tls_cert_t *tc = &t->certs[i];
        free(tc->cert);
        free(tc->key);
        free(tc->ocsp);
        X509_free(tc->x509);
        EVP_PKEY_free(tc->pkey);
        sk_X509_pop_free(tc->chain, X509_free);
        free(tc->ocsp_der);
        for (size_t k = 0; k < tc->nnames; k++)
            free(tc->names[k]);
        free(tc->names);
    }
    for (size_t i = 0; i < t->nctxs; i++)
        SSL_CTX_free(t->ctxs[i]);
    free(t->ctxs);
    free(t->sni);
    free(t->certs);
    free(t->ciphers);
    free(t->ciphersuites);
    free(t->client_ca);
    free(t);
}
