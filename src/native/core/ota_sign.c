/*
 * ota_sign.c — ECDSA P-256 verification of the signature block after a streamed image, with mbedTLS's
 * public-key layer. See ota_sign.h for the contract and docs/signing.md for the format.
 * Only calls that exist unchanged in mbedTLS 2.28 (Debian's libmbedtls-dev) and 3.x (ESP-IDF 5/6):
 * mbedtls_pk_init / mbedtls_pk_parse_public_key / mbedtls_pk_verify / mbedtls_pk_free, and SHA-256 through
 * ota_sha256_compat.h. The curve is checked on the DER bytes (a fixed prefix) instead of through the key
 * context, whose fields are private in 3.x.
 */
#include <string.h>

#include <mbedtls/pk.h>

#include "ota_sha256_compat.h"
#include "ota_sign.h"

/* DER SubjectPublicKeyInfo of a P-256 key up to the point: SEQUENCE(89) { SEQUENCE(19) { OID
 * 1.2.840.10045.2.1, OID 1.2.840.10045.3.1.7 }, BIT STRING(66) 0 unused bits }, then 0x04 (uncompressed). */
static const uint8_t P256_SPKI_PREFIX[27] = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x06,
    0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
};

/* Parses the DER into a fresh context (mbedTLS allocates inside; the caller frees with mbedtls_pk_free). */
static esp_err_t parse(mbedtls_pk_context *pk, const uint8_t *der, size_t len)
{
    mbedtls_pk_init(pk);
    int rc = mbedtls_pk_parse_public_key(pk, der, len);
    if (rc == MBEDTLS_ERR_PK_ALLOC_FAILED) return ESP_ERR_NO_MEM;
    if (rc != 0 || mbedtls_pk_get_type(pk) != MBEDTLS_PK_ECKEY) return ESP_ERR_INVALID_ARG;
    return ESP_OK;
}

esp_err_t ota_sign_key_set(ota_sign_key_t *key, const uint8_t *der, size_t len)
{
    if (key == NULL || der == NULL || len != OTA_SIGN_KEY_DER_LEN) return ESP_ERR_INVALID_ARG;
    if (memcmp(der, P256_SPKI_PREFIX, sizeof(P256_SPKI_PREFIX)) != 0) return ESP_ERR_INVALID_ARG;
    mbedtls_pk_context pk;
    esp_err_t err = parse(&pk, der, len); /* also checks that the point is on the curve */
    mbedtls_pk_free(&pk);
    if (err != ESP_OK) return err;
    memcpy(key->der, der, OTA_SIGN_KEY_DER_LEN);
    mbedtls_sha256_context sha;
    mbedtls_sha256_init(&sha);
    int rc = OTA_SHA256_STARTS(&sha);
    if (rc == 0) rc = OTA_SHA256_UPDATE(&sha, der, len);
    if (rc == 0) rc = OTA_SHA256_FINISH(&sha, key->key_id);
    mbedtls_sha256_free(&sha);
    return rc == 0 ? ESP_OK : ESP_ERR_INVALID_ARG;
}

esp_err_t ota_sign_check(const ota_sign_key_t *key, const ota_image_parser_t *p)
{
    if (key == NULL || p == NULL) return ESP_ERR_INVALID_ARG;
    if (!p->sig_present) return OTA_ERR_SIGNATURE_MISSING;
    const uint8_t *b = p->sig_raw;
    /* A block for another key: say so before spending a verification on it. */
    if (memcmp(b + OTA_SIG_AT_KEY_ID, key->key_id, OTA_SIGN_KEY_ID_LEN) != 0) return OTA_ERR_SIGNATURE_INVALID;
    size_t der_len = (size_t)(b[6] | (b[7] << 8)); /* 8..72, checked by the parser */
    mbedtls_pk_context pk;
    esp_err_t err = parse(&pk, key->der, OTA_SIGN_KEY_DER_LEN);
    if (err == ESP_OK) {
        /* The ECDSA input is the image's SHA-256 (the block's digest, equal to the parser's image_hash). */
        int rc = mbedtls_pk_verify(&pk, MBEDTLS_MD_SHA256, p->image_hash, OTA_IMAGE_HASH_LEN, b + OTA_SIG_AT_DER, der_len);
        err = rc == 0 ? ESP_OK : OTA_ERR_SIGNATURE_INVALID;
    } else if (err == ESP_ERR_INVALID_ARG) {
        err = OTA_ERR_SIGNATURE_INVALID; /* unreachable: ota_sign_key_set accepted this DER */
    }
    mbedtls_pk_free(&pk);
    return err;
}
