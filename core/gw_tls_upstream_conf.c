/*
 * An upstream's `tls` settings (see gw_tls_upstream.h): decoding, and the
 * SSL_CTX built from them at load time so that unreadable or invalid files
 * are config errors with the line of the setting that names them.
 */
#include "gw_tls_upstream.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Lines of the settings naming files, for errors found while loading them. */
typedef struct {
    int tls, ca, cert, key, ciphers;
    bool ca_set;
} gw_tls_lines_t;

/* OpenSSL's reason for the oldest queued error (the most specific one),
 * with its detail when there is one, or `dflt`, into buf; returns buf. The
 * queue is left as it is. */
static const char *gw_tls_reason(char *buf, size_t len, const char *dflt)
{
    const char *data = NULL;
    int flags = 0;
    unsigned long e = ERR_peek_error_all(NULL, NULL, NULL, &data, &flags);
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r && data && *data && (flags & ERR_TXT_STRING))
        snprintf(buf, len, "%s (%s)", r, data);
    else
        snprintf(buf, len, "%s", r ? r : dflt);
    return buf;
}

/* Report a file that could not be used: why the system refused it when it
 * cannot be read, else `reason` or OpenSSL's queued reason. */
static void gw_tls_report_file(gw_cnode_ctx_t *c, int line, const char *key, const char *what,
                               const char *path, const char *reason)
{
    char q[160], msg[768], buf[256];
    const char *why = access(path, R_OK) != 0 ? strerror(errno)
                      : reason                ? reason
                                              : gw_tls_reason(buf, sizeof buf, "invalid file");
    ERR_clear_error();
    snprintf(msg, sizeof msg, "cannot load %s %s: %s", what, gw_cnode_quote(path, q, sizeof q),
             why);
    gw_cnode_report_key(c, line, key, msg);
}

/* `protocols`: one name or a list of "TLSv1.2" and "TLSv1.3". */
static void gw_tls_decode_protocols(gw_cnode_ctx_t *c, const gw_cnode_t *v, unsigned *out)
{
    static const char *const names[] = {"TLSv1.2", "TLSv1.3", NULL};
    size_t m = gw_cnode_path_key(c, "protocols");
    const gw_cnode_t *const *items = (const gw_cnode_t *const *)&v;
    size_t n = 1;
    if (v->kind == GW_CNODE_LIST) {
        items = (const gw_cnode_t *const *)v->items;
        n = v->nitems;
    }
    unsigned protocols = 0;
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        size_t mi = v->kind == GW_CNODE_LIST ? gw_cnode_path_index(c, i) : c->plen;
        int idx;
        if (gw_cnode_enum(c, items[i], names, &idx))
            protocols |= idx == 0 ? GW_TLS_PROTO_TLS12 : GW_TLS_PROTO_TLS13;
        else
            ok = false;
        gw_cnode_path_pop(c, mi);
    }
    if (ok && protocols == 0)
        gw_cnode_report(c, v->line, "expected at least one of \"TLSv1.2\", \"TLSv1.3\"");
    else if (ok)
        *out = protocols;
    gw_cnode_path_pop(c, m);
}

/* The line of field `key` of map `n`, or `dflt` when it is absent. */
static int gw_tls_line(const gw_cnode_t *n, const char *key, int dflt)
{
    const gw_cnode_t *v = gw_cnode_field(n, key);
    return v ? v->line : dflt;
}

/* Decode the fields of a `tls` map. */
static void gw_tls_decode_map(gw_cnode_ctx_t *c, const gw_cnode_t *v, gw_upstream_tls_conf_t *tls,
                              gw_tls_lines_t *lines)
{
    static const char *const fields[] = {"verify", "ca",        "sni",     "cert",
                                         "key",    "protocols", "ciphers", NULL};
    if (!gw_cnode_check_map(c, v, fields, "field"))
        return;
    gw_cnode_field_bool(c, v, "verify", &tls->verify);
    gw_cnode_field_str(c, v, "ca", &tls->ca);
    gw_cnode_field_str(c, v, "sni", &tls->sni);
    gw_cnode_field_str(c, v, "cert", &tls->cert);
    gw_cnode_field_str(c, v, "key", &tls->key);
    gw_cnode_field_str(c, v, "ciphers", &tls->ciphers);
    const gw_cnode_t *p = gw_cnode_field(v, "protocols");
    if (p)
        gw_tls_decode_protocols(c, p, &tls->protocols);
    lines->ca_set = gw_cnode_field(v, "ca") != NULL;
    lines->ca = gw_tls_line(v, "ca", v->line);
    lines->cert = gw_tls_line(v, "cert", v->line);
    lines->key = gw_tls_line(v, "key", v->line);
    lines->ciphers = gw_tls_line(v, "ciphers", v->line);
    if (tls->cert && !tls->key)
        gw_cnode_report_key(c, lines->cert, "key", "required with cert");
    else if (tls->key && !tls->cert)
        gw_cnode_report_key(c, lines->key, "cert", "required with key");
}

/* Whether OpenSSL's error queue holds an X509 "key values mismatch". */
static bool gw_tls_key_mismatch(void)
{
    unsigned long e;
    bool found = false;
    while ((e = ERR_get_error()) != 0)
        found = found ||
                (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH);
    return found;
}

/* The client certificate (with its chain) and its key, into tls->ctx. */
static void gw_tls_load_client_cert(gw_cnode_ctx_t *c, gw_upstream_tls_conf_t *tls,
                                    const gw_tls_lines_t *lines)
{
    SSL_CTX *ctx = tls->ctx;
    bool cert_ok = SSL_CTX_use_certificate_chain_file(ctx, tls->cert) == 1;
    if (!cert_ok)
        gw_tls_report_file(c, lines->cert, "cert", "certificate file", tls->cert, NULL);
    ERR_clear_error();
    if (SSL_CTX_use_PrivateKey_file(ctx, tls->key, SSL_FILETYPE_PEM) == 1)
        return;
    char reason[256];
    gw_tls_reason(reason, sizeof reason, "invalid file");
    if (access(tls->key, R_OK) == 0 && gw_tls_key_mismatch())
        gw_cnode_report_key(c, lines->key, "key", "the key does not match the certificate");
    else
        gw_tls_report_file(c, lines->key, "key", "key file", tls->key, reason);
}

/*
 * Build tls->ctx: versions, ciphers, verification against the CA file,
 * the client certificate, and a client session cache whose new sessions go
 * to gw_tls_upstream_new_session. Each failure is reported on its setting.
 */
static void gw_tls_build_ctx(gw_cnode_ctx_t *c, gw_upstream_tls_conf_t *tls,
                             const gw_tls_lines_t *lines)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        char buf[256];
        gw_cnode_report(c, lines->tls, "cannot create a TLS context: %s",
                        gw_tls_reason(buf, sizeof buf, "?"));
        return;
    }
    tls->ctx = ctx;
    SSL_CTX_set_min_proto_version(ctx, (tls->protocols & GW_TLS_PROTO_TLS12) ? TLS1_2_VERSION
                                                                             : TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, (tls->protocols & GW_TLS_PROTO_TLS13) ? TLS1_3_VERSION
                                                                             : TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (tls->ciphers && !SSL_CTX_set_cipher_list(ctx, tls->ciphers)) {
        char msg[512], buf[256];
        snprintf(msg, sizeof msg, "no usable cipher: %s",
                 gw_tls_reason(buf, sizeof buf, "invalid cipher list"));
        ERR_clear_error();
        gw_cnode_report_key(c, lines->ciphers, "ciphers", msg);
    }
    SSL_CTX_set_verify(ctx, tls->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if ((tls->verify || lines->ca_set) && !SSL_CTX_load_verify_file(ctx, tls->ca))
        gw_tls_report_file(c, lines->ca, "ca", "CA file", tls->ca, NULL);
    if (tls->cert && tls->key)
        gw_tls_load_client_cert(c, tls, lines);
    ERR_clear_error();
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, gw_tls_upstream_new_session);
}

void gw_tls_upstream_decode(gw_cnode_ctx_t *c, const gw_cnode_t *n, gw_upstream_tls_conf_t *tls)
{
    tls->verify = true;
    tls->protocols = GW_TLS_PROTO_TLS12 | GW_TLS_PROTO_TLS13;
    const gw_cnode_t *v = gw_cnode_field(n, "tls");
    if (!v)
        return;
    size_t m = gw_cnode_path_key(c, "tls");
    size_t errors = c->errs->count;
    gw_tls_lines_t lines = {v->line, v->line, v->line, v->line, v->line, false};
    if (v->kind == GW_CNODE_MAP) {
        tls->enabled = true;
        gw_tls_decode_map(c, v, tls, &lines);
    } else if (v->kind == GW_CNODE_SCALAR && gw_cnode_parse_bool(v->str) >= 0) {
        tls->enabled = gw_cnode_parse_bool(v->str) == 1;
    } else if (!v->bad) {
        gw_cnode_expect(c, v, "true, false or a map");
    }
    if (tls->enabled && !tls->ca)
        tls->ca = gw_xstrdup(GW_TLS_DEFAULT_CA);
    if (tls->enabled && c->errs->count == errors)
        gw_tls_build_ctx(c, tls, &lines);
    gw_cnode_path_pop(c, m);
}

void gw_tls_upstream_conf_free(gw_upstream_tls_conf_t *tls)
{
    SSL_CTX_free(tls->ctx);
    free(tls->ca);
    free(tls->sni);
    free(tls->cert);
    free(tls->key);
    free(tls->ciphers);
    memset(tls, 0, sizeof *tls);
}
