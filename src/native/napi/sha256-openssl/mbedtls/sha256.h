/*
 * sha256-openssl/mbedtls/sha256.h — mbedTLS's SHA-256 API over the OpenSSL that Node carries, for the
 * N-API build only (binding.gyp puts this folder first on the include path, so the C core's
 * `#include <mbedtls/sha256.h>` finds this header instead of Debian's). The ESP32 does the same thing one
 * level down: ESP-IDF's mbedTLS hashes with the chip's SHA accelerator behind this same API.
 *
 * Why: the core hashes every image three times on the host (while streaming, in end()'s read-back, in
 * set_boot's verification, as ESP-IDF does); mbedTLS's portable C runs at about 360 MB/s here, OpenSSL's
 * SHA256_* (SHA-NI / AVX2 code, chosen at run time) at about 1,500 MB/s. The symbols are the node
 * executable's own (or its shared libcrypto's); the module is only ever loaded into Node.
 * Not used by: the fuzz target and the xsmc/ESP32 builds (they link mbedTLS), the strict syntax check of
 * scripts/build-native.sh (it compiles the core against mbedTLS's header).
 *
 * Only what the core and its compat header (core/ota_sha256_compat.h) call: init, free, starts, update,
 * finish, in both spellings (mbedTLS 2.28's *_ret and 3.x's). Same contract: 0 on success; SHA-224
 * (is224 != 0) is not offered and fails with -1, as mbedTLS does when it is compiled out.
 */
#ifndef OTA_SHA256_OPENSSL_SHIM_H
#define OTA_SHA256_OPENSSL_SHIM_H
/* The real header's include guards (2.28 and 3.x): should it be reached some other way, it is a no-op. */
#define MBEDTLS_SHA256_H
#define OTA_SHA256_BACKEND "openssl"

#include <stddef.h>
#include <string.h>

/* SHA256_Init/Update/Final are deprecated in OpenSSL 3 in favour of EVP, which allocates a context per
 * hash; the plain struct keeps the parser free of allocations. They are still built and exported. */
#ifndef OPENSSL_SUPPRESS_DEPRECATED
#define OPENSSL_SUPPRESS_DEPRECATED
#endif
#include <openssl/sha.h>

typedef struct mbedtls_sha256_context {
    SHA256_CTX ctx;
} mbedtls_sha256_context;

static inline void mbedtls_sha256_init(mbedtls_sha256_context *c)
{
    memset(c, 0, sizeof(*c));
}

static inline void mbedtls_sha256_free(mbedtls_sha256_context *c)
{
    if (c != NULL) memset(c, 0, sizeof(*c));
}

static inline int mbedtls_sha256_starts_ret(mbedtls_sha256_context *c, int is224)
{
    if (is224 != 0) return -1;
    return SHA256_Init(&c->ctx) == 1 ? 0 : -1;
}

static inline int mbedtls_sha256_update_ret(mbedtls_sha256_context *c, const unsigned char *in, size_t len)
{
    return SHA256_Update(&c->ctx, in, len) == 1 ? 0 : -1;
}

static inline int mbedtls_sha256_finish_ret(mbedtls_sha256_context *c, unsigned char out[32])
{
    return SHA256_Final(out, &c->ctx) == 1 ? 0 : -1;
}

static inline int mbedtls_sha256_starts(mbedtls_sha256_context *c, int is224)
{
    return mbedtls_sha256_starts_ret(c, is224);
}

static inline int mbedtls_sha256_update(mbedtls_sha256_context *c, const unsigned char *in, size_t len)
{
    return mbedtls_sha256_update_ret(c, in, len);
}

static inline int mbedtls_sha256_finish(mbedtls_sha256_context *c, unsigned char out[32])
{
    return mbedtls_sha256_finish_ret(c, out);
}

#endif /* OTA_SHA256_OPENSSL_SHIM_H */
