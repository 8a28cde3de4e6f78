/* Unit tests for a listener's `tls` section (gw_tls_conf.c): defaults,
 * certificate names and groups, and the errors of the section itself.
 * Certificates are made in-process with OpenSSL into a temp directory. */
#include "gw_config.h"
#include "gw_test.h"
#include "gw_tls_conf.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <unistd.h>

static char gw_dir[64];

/* Write a self-signed certificate and its key: dir/name.pem, dir/name.key.
 * san is "DNS:a,DNS:b" or NULL for a CN-only certificate. */
static void make_cert(const char *name, const char *cn, const char *san, bool rsa)
{
    EVP_PKEY *key = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    if (san) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    X509_sign(x, key, EVP_sha256());
    char path[128];
    snprintf(path, sizeof path, "%s/%s.pem", gw_dir, name);
    FILE *f = fopen(path, "w");
    PEM_write_X509(f, x);
    fclose(f);
    snprintf(path, sizeof path, "%s/%s.key", gw_dir, name);
    f = fopen(path, "w");
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* Load `tls_yaml` (the body of a `tls:` map, indented by 4) as the only
 * listener; "@" in it stands for the temp directory. */
static gw_config_t *load_tls(const char *tls_yaml, gw_config_errors_t *errs)
{
    char body[2048], text[4096];
    size_t o = 0;
    for (const char *p = tls_yaml; *p && o + 64 < sizeof body; p++) {
        if (*p == '@')
            o += (size_t)snprintf(body + o, sizeof body - o, "%s", gw_dir);
        else
            body[o++] = *p;
    }
    body[o] = '\0';
    snprintf(text, sizeof text, "listen:\n  - address: 127.0.0.1:8443\n    tls:\n%s", body);
    return gw_config_load_string("t.yaml", text, strlen(text), errs);
}

static bool has_error(const gw_config_errors_t *errs, const char *want)
{
    char line[2048];
    for (size_t i = 0; i < errs->count; i++) {
        gw_config_error_format(&errs->items[i], line, sizeof line);
        if (strstr(line, want))
            return true;
    }
    for (size_t i = 0; i < errs->count; i++) {
        gw_config_error_format(&errs->items[i], line, sizeof line);
        fprintf(stderr, "  got: %s\n", line);
    }
    return false;
}

static void test_defaults_and_names(void)
{
    gw_config_errors_t errs = {0};
    gw_config_t *cfg = load_tls("      certificates:\n"
                                "        - { cert: @/site-ec.pem, key: @/site-ec.key }\n"
                                "        - { cert: @/site-rsa.pem, key: @/site-rsa.key }\n"
                                "        - { cert: @/wild.pem, key: @/wild.key }\n"
                                "        - { cert: @/cn.pem, key: @/cn.key }\n",
                                &errs);
    CHECK_INT(errs.count, 0);
    if (!cfg)
        return;
    const gw_tls_conf_t *t = cfg->listens[0].tls;
    CHECK(t != NULL);
    CHECK_INT(cfg->timeouts.tls_handshake, 10);
    CHECK_INT(t->min_version, TLS1_2_VERSION);
    CHECK_INT(t->max_version, TLS1_3_VERSION);
    CHECK(t->session_tickets);
    CHECK_INT(t->session_timeout, 300);
    CHECK_INT(t->session_cache, 20480);
    CHECK_INT(t->client_mode, GW_TLS_CLIENT_OFF);
    CHECK_INT(t->ncerts, 4);
    /* The RSA and ECDSA certificates of the same names share a context. */
    CHECK_INT(t->nctxs, 3);
    CHECK(t->certs[0].ctx == t->certs[1].ctx);
    CHECK(t->certs[0].ctx == t->ctxs[0]);
    CHECK_INT(t->certs[0].nnames, 2);
    CHECK_STR(t->certs[0].names[0], "example.test");
    CHECK_STR(t->certs[0].names[1], "www.example.test");
    CHECK_STR(t->certs[2].names[0], "*.wild.test");
    CHECK_INT(t->certs[3].nnames, 1);
    CHECK_STR(t->certs[3].names[0], "cn.test"); /* no SAN: the CN, lower-cased */
    CHECK_INT(t->nsni, 4);
    gw_config_free(cfg);
}

static void test_settings(void)
{
    gw_config_errors_t errs = {0};
    gw_config_t *cfg =
        load_tls("      certificates: [ { cert: @/site-ec.pem, key: @/site-ec.key } ]\n"
                 "      protocols: [ TLSv1.3 ]\n"
                 "      session_tickets: false\n"
                 "      session_timeout: 1h\n"
                 "      session_cache: 0\n"
                 "      client_certificates: { ca: @/site-ec.pem, mode: require }\n",
                 &errs);
    CHECK_INT(errs.count, 0);
    if (!cfg)
        return;
    const gw_tls_conf_t *t = cfg->listens[0].tls;
    CHECK_INT(t->min_version, TLS1_3_VERSION);
    CHECK_INT(t->max_version, TLS1_3_VERSION);
    CHECK(!t->session_tickets);
    CHECK_INT(t->session_timeout, 3600);
    CHECK_INT(t->session_cache, 0);
    CHECK_INT(t->client_mode, GW_TLS_CLIENT_REQUIRE);
    CHECK_INT(SSL_CTX_get_verify_mode(t->ctxs[0]),
              SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
    CHECK(SSL_CTX_get_options(t->ctxs[0]) & SSL_OP_NO_TICKET);
    gw_config_free(cfg);
}

static void test_errors(void)
{
    gw_config_errors_t errs = {0};
    CHECK(load_tls("      protocols: TLSv1.2\n", &errs) == NULL);
    CHECK(has_error(&errs, "t.yaml:4: listen[0].tls.certificates: required field missing"));
    CHECK(has_error(&errs, "t.yaml:4: listen[0].tls.protocols: expected a list of TLSv1.2, "
                           "TLSv1.3, got \"TLSv1.2\""));
    gw_config_errors_free(&errs);

    CHECK(load_tls("      certificates: []\n"
                   "      session_timeout: 0\n"
                   "      bogus: 1\n",
                   &errs) == NULL);
    CHECK(has_error(&errs, "t.yaml:4: listen[0].tls.certificates: expected a list of "
                           "{ cert, key }"));
    CHECK(has_error(&errs, "t.yaml:5: listen[0].tls.session_timeout: "));
    CHECK(has_error(&errs, "t.yaml:6: listen[0].tls: unknown field \"bogus\""));
    gw_config_errors_free(&errs);

    CHECK(load_tls("      certificates:\n"
                   "        - { cert: @/site-ec.pem }\n"
                   "        - { cert: @/site-ec.pem, key: @/site-rsa.key }\n"
                   "      client_certificates: { mode: sometimes }\n",
                   &errs) == NULL);
    CHECK(has_error(&errs, "t.yaml:5: listen[0].tls.certificates[0].key: required field missing"));
    CHECK(has_error(&errs, "t.yaml:6: listen[0].tls.certificates[1].key: "));
    CHECK(has_error(&errs, "site-rsa.key: does not match the certificate"));
    CHECK(has_error(&errs, "t.yaml:7: listen[0].tls.client_certificates.mode: expected one of "
                           "off, request, require, got \"sometimes\""));
    gw_config_errors_free(&errs);
}

int main(void)
{
    snprintf(gw_dir, sizeof gw_dir, "/tmp/gw-tls-test.XXXXXX");
    if (!mkdtemp(gw_dir)) {
        perror("mkdtemp");
        return 1;
    }
    make_cert("site-ec", "example.test", "DNS:example.test,DNS:www.example.test", false);
    make_cert("site-rsa", "example.test", "DNS:example.test,DNS:www.example.test", true);
    make_cert("wild", "wild.test", "DNS:*.wild.test", false);
    make_cert("cn", "CN.test", NULL, false);
    static const gw_test_case_t cases[] = {
        GW_TEST(test_defaults_and_names),
        GW_TEST(test_settings),
        GW_TEST(test_errors),
    };
    int rc = GW_TEST_RUN(cases);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", gw_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", gw_dir);
    return rc;
}
