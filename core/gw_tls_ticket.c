/*
 * Session ticket keys shared by every worker (gw_tls_conf.h). The master
 * maps them before forking; workers read them in OpenSSL's ticket callback.
 * The master alone writes, under a sequence counter: odd while it writes,
 * so that a reader that saw it odd or changed reads again.
 */
#include "gw_tls_conf.h"

#include "gw_log.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>
#include <sys/mman.h>

typedef struct {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
} gw_ticket_key_t;

typedef struct {
    unsigned seq;
    gw_ticket_key_t cur, prev;
} gw_ticket_keys_t;

static gw_ticket_keys_t *gw_ticket_keys;

static void gw_ticket_key_new(gw_ticket_key_t *k)
{
    if (RAND_bytes((unsigned char *)k, sizeof *k) != 1)
        gw_log_error("TLS ticket keys: RAND_bytes failed");
}

int gw_tls_tickets_init(void)
{
    if (gw_ticket_keys)
        return GW_OK;
    void *p = mmap(NULL, sizeof *gw_ticket_keys, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) {
        gw_log_error("TLS ticket keys: mmap failed: %s", strerror(errno));
        return GW_ERROR;
    }
    gw_ticket_keys = p;
    gw_ticket_key_new(&gw_ticket_keys->cur);
    gw_ticket_key_new(&gw_ticket_keys->prev);
    return GW_OK;
}

void gw_tls_tickets_rotate(void)
{
    gw_ticket_keys_t *k = gw_ticket_keys;
    if (!k)
        return;
    gw_ticket_key_t fresh;
    gw_ticket_key_new(&fresh);
    __atomic_add_fetch(&k->seq, 1, __ATOMIC_SEQ_CST);
    k->prev = k->cur;
    k->cur = fresh;
    __atomic_add_fetch(&k->seq, 1, __ATOMIC_SEQ_CST);
}

void gw_tls_tickets_free(void)
{
    if (gw_ticket_keys)
        munmap(gw_ticket_keys, sizeof *gw_ticket_keys);
    gw_ticket_keys = NULL;
}

/* A consistent copy of both keys; false when there are none. */
static bool gw_ticket_snapshot(gw_ticket_key_t *cur, gw_ticket_key_t *prev)
{
    gw_ticket_keys_t *k = gw_ticket_keys;
    if (!k)
        return false;
    for (;;) {
        unsigned s1 = __atomic_load_n(&k->seq, __ATOMIC_ACQUIRE);
        if (s1 & 1)
            continue;
        memcpy(cur, &k->cur, sizeof *cur);
        memcpy(prev, &k->prev, sizeof *prev);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&k->seq, __ATOMIC_RELAXED) == s1)
            return true;
    }
}

static int gw_ticket_use(const gw_ticket_key_t *k, unsigned char *iv, EVP_CIPHER_CTX *ectx,
                         EVP_MAC_CTX *hctx, int enc)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof k->hmac),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -1;
    int ok = enc ? EVP_EncryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k->aes, iv)
                 : EVP_DecryptInit_ex(ectx, EVP_aes_256_cbc(), NULL, k->aes, iv);
    return ok == 1 ? 1 : -1;
}

/*
 * Encrypting: the current key, a fresh IV; 1, or 0 (no ticket) without
 * keys. Decrypting: 1 with the current key, 2 with the previous one (the
 * client gets a new ticket), 0 for an unknown key name (full handshake).
 * A TLS 1.3 resumption always gets 2: clients use a TLS 1.3 ticket once,
 * so without a new one their next connection is a full handshake.
 */
int gw_tls_ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *ectx,
                     EVP_MAC_CTX *hctx, int enc)
{
    gw_ticket_key_t cur, prev;
    if (!gw_ticket_snapshot(&cur, &prev))
        return 0;
    int rc;
    if (enc) {
        memcpy(name, cur.name, sizeof cur.name);
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1)
            rc = -1;
        else
            rc = gw_ticket_use(&cur, iv, ectx, hctx, 1);
    } else if (memcmp(name, cur.name, sizeof cur.name) == 0) {
        rc = gw_ticket_use(&cur, iv, ectx, hctx, 0);
        if (rc == 1 && SSL_version(s) >= TLS1_3_VERSION)
            rc = 2;
    } else if (memcmp(name, prev.name, sizeof prev.name) == 0) {
        rc = gw_ticket_use(&prev, iv, ectx, hctx, 0);
        rc = rc == 1 ? 2 : rc;
    } else {
        rc = 0;
    }
    OPENSSL_cleanse(&cur, sizeof cur);
    OPENSSL_cleanse(&prev, sizeof prev);
    return rc;
}
