/*
 * ota_sign.h — the signature check of a streamed image (ota_sign_*): the signing key a device trusts, and
 * the ECDSA P-256 verification of the signature block that follows the image (docs/signing.md), with
 * mbedTLS's public-key API (mbedtls_pk_parse_public_key + mbedtls_pk_verify, the same in mbedTLS 2.28 and
 * 3.x). The block's structure (magic, lengths, the image digest) is checked by the parser (ota_image.c)
 * as it streams; this file adds the key: whose key signed it, and does the signature verify.
 * What it is not: key storage or policy (which key to trust is the firmware's configuration), hashing of
 * the image (the signature covers the image's appended SHA-256, already checked by the parser).
 * Threading: ota_sign_key_t is read-only after ota_sign_key_set; any number of checks may share it.
 */
#ifndef OTA_SIGN_H
#define OTA_SIGN_H

#include <stdint.h>

#include "ota_image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An ECDSA P-256 public key as DER SubjectPublicKeyInfo is always this long: SEQUENCE { SEQUENCE { OID
 * id-ecPublicKey, OID prime256v1 }, BIT STRING { 0x04 || X || Y } } (RFC 5480). */
#define OTA_SIGN_KEY_DER_LEN 91u
#define OTA_SIGN_KEY_ID_LEN 32u

/* The trusted key: its DER and its id (SHA-256 of the DER, the block's key id field). Plain data, owned
 * by the caller (a binding keeps it beside its writer; ota_image_config_t.sign_key borrows it). */
typedef struct ota_sign_key {
    uint8_t der[OTA_SIGN_KEY_DER_LEN];
    uint8_t key_id[OTA_SIGN_KEY_ID_LEN];
} ota_sign_key_t;

/* Takes a P-256 public key in DER SubjectPublicKeyInfo form (what `npm run image -- keygen` writes as
 * *.pub.der). Checks the length, the two OIDs and that mbedTLS accepts the point (on the curve).
 * Errors: ESP_ERR_INVALID_ARG (NULL, another length, another curve or algorithm, not a valid point). */
esp_err_t ota_sign_key_set(ota_sign_key_t *key, const uint8_t *der, size_t len);

/* The check ota_writer_end runs when a key is configured, after the image verified: the parser `p` has
 * finished (ota_image_finish ESP_OK).
 * Errors: OTA_ERR_SIGNATURE_MISSING (no signature block followed the image),
 *   OTA_ERR_SIGNATURE_INVALID (the block's key id is not `key`'s, or the ECDSA signature over the image's
 *   SHA-256 does not verify with `key`), ESP_ERR_NO_MEM (mbedTLS could not allocate while parsing the key),
 *   ESP_ERR_INVALID_ARG (NULL). */
esp_err_t ota_sign_check(const ota_sign_key_t *key, const ota_image_parser_t *p);

#ifdef __cplusplus
}
#endif

#endif /* OTA_SIGN_H */
