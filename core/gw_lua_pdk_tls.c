/*
 * The PDK's view of a request's TLS connection: whether it came over TLS
 * and the client certificate of its handshake (recorded on the request by
 * gw_tls_req_begin, so it is there in every phase, log included). Called
 * from lua/moongate/init.lua through the FFI, like gw_lua_pdk.c.
 */
#include "gw_lua.h"
#include "gw_tls.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define GW_PDK __attribute__((visibility("default"), used))

/* Fields of gw_pdk_client_cert_field; keep in step with init.lua. */
enum {
    GW_CERT_SUBJECT = 1,
    GW_CERT_ISSUER,
    GW_CERT_CN,
    GW_CERT_SERIAL,
    GW_CERT_SHA256,
    GW_CERT_NOT_BEFORE,
    GW_CERT_NOT_AFTER,
    GW_CERT_SAN_DNS,
    GW_CERT_SAN_EMAIL,
    GW_CERT_SAN_URI,
    GW_CERT_PEM,
};

/* Referenced by gw_lua_pdk.c so that the linker keeps this file. */
void gw_lua_pdk_tls_link(void)
{
}

GW_PDK int gw_pdk_req_tls(void)
{
    return gw_lua_current && gw_lua_current->tls;
}

/*
 * The request's client certificate: 1 when one was presented (*verify is
 * X509_V_OK when it verified, else the reason, written to err), 0 when none
 * was, -1 when the request did not come over TLS.
 */
GW_PDK int gw_pdk_client_cert(long *verify, char *err, size_t errlen)
{
    gw_req_t *r = gw_lua_current;
    if (!r || !r->tls)
        return -1;
    if (!r->client_cert)
        return 0;
    *verify = r->client_verify;
    snprintf(err, errlen, "%s", X509_verify_cert_error_string(r->client_verify));
    return 1;
}

static int gw_cert_name(const X509_NAME *name, char *buf, size_t size)
{
    BIO *b = BIO_new(BIO_s_mem());
    X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
    char *p;
    long len = BIO_get_mem_data(b, &p);
    memcpy(buf, p, (size_t)len < size ? (size_t)len : size);
    BIO_free(b);
    return (int)len;
}

static int gw_cert_copy(const void *p, size_t len, char *buf, size_t size)
{
    memcpy(buf, p, len < size ? len : size);
    return (int)len;
}

static int gw_cert_time(const ASN1_TIME *t, char *buf, size_t size)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    return snprintf(buf, size, "%lld", (long long)timegm(&tm));
}

/* The index-th SAN of `type` (GEN_DNS, GEN_EMAIL, GEN_URI), or -1. */
static int gw_cert_san(X509 *x, int type, int index, char *buf, size_t size)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int found = -1, seen = 0;
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && found < 0; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != type || seen++ != index)
            continue;
        const ASN1_IA5STRING *s = g->d.ia5; /* dNSName, rfc822Name and URI alike */
        found = gw_cert_copy(ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s), buf, size);
    }
    GENERAL_NAMES_free(sans);
    return found;
}

static int gw_cert_hex(const unsigned char *p, size_t len, char *buf, size_t size)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len && 2 * i + 1 < size; i++) {
        buf[2 * i] = digits[p[i] >> 4];
        buf[2 * i + 1] = digits[p[i] & 15];
    }
    return (int)(2 * len);
}

static int gw_cert_serial(X509 *x, char *buf, size_t size)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    int n = hex ? gw_cert_copy(hex, strlen(hex), buf, size) : -1;
    OPENSSL_free(hex);
    BN_free(bn);
    return n;
}

static int gw_cert_pem(X509 *x, char *buf, size_t size)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *p;
    long len = BIO_get_mem_data(b, &p);
    int n = gw_cert_copy(p, (size_t)len, buf, size);
    BIO_free(b);
    return n;
}

/*
 * One field of the request's client certificate (see the enum above),
 * index-th for SANs, written to buf. Returns its full length (larger than
 * size: call again with a bigger buffer), or -1 when absent.
 */
GW_PDK int gw_pdk_client_cert_field(int field, int index, char *buf, size_t size)
{
    gw_req_t *r = gw_lua_current;
    X509 *x = r ? r->client_cert : NULL;
    if (!x)
        return -1;
    switch (field) {
    case GW_CERT_SUBJECT:
        return gw_cert_name(X509_get_subject_name(x), buf, size);
    case GW_CERT_ISSUER:
        return gw_cert_name(X509_get_issuer_name(x), buf, size);
    case GW_CERT_CN: {
        int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, NULL, 0);
        if (n < 0 || (size_t)n >= size)
            return n;
        return X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, (int)size);
    }
    case GW_CERT_SERIAL:
        return gw_cert_serial(x, buf, size);
    case GW_CERT_SHA256: {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        if (X509_digest(x, EVP_sha256(), md, &len) != 1)
            return -1;
        return gw_cert_hex(md, len, buf, size);
    }
    case GW_CERT_NOT_BEFORE:
        return gw_cert_time(X509_get0_notBefore(x), buf, size);
    case GW_CERT_NOT_AFTER:
        return gw_cert_time(X509_get0_notAfter(x), buf, size);
    case GW_CERT_SAN_DNS:
        return gw_cert_san(x, GEN_DNS, index, buf, size);
    case GW_CERT_SAN_EMAIL:
        return gw_cert_san(x, GEN_EMAIL, index, buf, size);
    case GW_CERT_SAN_URI:
        return gw_cert_san(x, GEN_URI, index, buf, size);
    case GW_CERT_PEM:
        return gw_cert_pem(x, buf, size);
    default:
        return -1;
    }
}
