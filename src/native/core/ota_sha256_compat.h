/*
 * ota_sha256_compat.h — one spelling of mbedTLS SHA-256 for mbedTLS 2.28 (Debian's libmbedtls-dev: the
 * int-returning calls are the *_ret ones) and 3.x (ESP-IDF 5/6: the plain names return int).
 * Private to src/native/core; not part of the core's interface.
 */
#ifndef OTA_SHA256_COMPAT_H
#define OTA_SHA256_COMPAT_H

#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

#if MBEDTLS_VERSION_MAJOR < 3
#define OTA_SHA256_STARTS(ctx) mbedtls_sha256_starts_ret((ctx), 0)
#define OTA_SHA256_UPDATE(ctx, data, len) mbedtls_sha256_update_ret((ctx), (data), (len))
#define OTA_SHA256_FINISH(ctx, out) mbedtls_sha256_finish_ret((ctx), (out))
#else
#define OTA_SHA256_STARTS(ctx) mbedtls_sha256_starts((ctx), 0)
#define OTA_SHA256_UPDATE(ctx, data, len) mbedtls_sha256_update((ctx), (data), (len))
#define OTA_SHA256_FINISH(ctx, out) mbedtls_sha256_finish((ctx), (out))
#endif

#endif /* OTA_SHA256_COMPAT_H */
