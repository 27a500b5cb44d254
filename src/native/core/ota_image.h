/*
 * ota_image.h — a streaming ESP32 app-image parser (ota_image_*): header, segment walk, chip id, app
 * descriptor, XOR checksum and appended SHA-256, checked incrementally as bytes arrive, and the
 * descriptor decoder. Pure (no I/O) except ota_image_verify_partition, which reads through a hal.
 * It also takes the optional signature block that may follow the image (docs/signing.md) and checks its
 * structure; the ECDSA check against a key is ota_sign.h's.
 * What it is not: no policy (which project or version to accept is decided in JavaScript from the
 * descriptor), no allocation (every struct is caller-owned).
 *
 * Formats: docs/formats.md (ESP-IDF's esp_app_format.h).
 * Threading: none of these functions is re-entrant on the same parser.
 */
#ifndef OTA_IMAGE_H
#define OTA_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mbedtls/sha256.h>

#include "ota_hal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Image format constants. */
#define OTA_IMAGE_MAGIC 0xE9u
#define OTA_IMAGE_HEADER_LEN 24u
#define OTA_IMAGE_SEGMENT_HEADER_LEN 8u
#define OTA_IMAGE_MAX_SEGMENTS 16u
#define OTA_APP_DESC_MAGIC 0xABCD5432u
#define OTA_APP_DESC_LEN 256u
/* Header + first segment header + app descriptor: what must be in before the descriptor is known. */
#define OTA_IMAGE_HEAD_LEN (OTA_IMAGE_HEADER_LEN + OTA_IMAGE_SEGMENT_HEADER_LEN + OTA_APP_DESC_LEN) /* 288 */
#define OTA_IMAGE_CHECKSUM_SEED 0xEFu
#define OTA_IMAGE_HASH_LEN 32u

/* The signature block that may follow the image (docs/signing.md, "Signature block"); little-endian:
 *   0 magic "SOSG" | 4 version (1) | 5 alg (1 = ECDSA P-256, SHA-256) | 6 u16 signature length (DER)
 *   8 u32 image length | 12 u32 reserved (0) | 16 digest[32] = the image's appended SHA-256
 *   48 key id[32] = SHA-256 of the signer's DER SubjectPublicKeyInfo | 80 DER signature, zero padded to 72 */
#define OTA_SIG_BLOCK_LEN 152u
#define OTA_SIG_VERSION 1u
#define OTA_SIG_ALG_ECDSA_P256_SHA256 1u
#define OTA_SIG_DER_MIN 8u
#define OTA_SIG_DER_MAX 72u
#define OTA_SIG_AT_DIGEST 16u
#define OTA_SIG_AT_KEY_ID 48u
#define OTA_SIG_AT_DER 80u

/* Chip ids (esp_image_header_t.chip_id). */
#define OTA_CHIP_ESP32 0x0000u
#define OTA_CHIP_ESP32S2 0x0002u
#define OTA_CHIP_ESP32C3 0x0005u
#define OTA_CHIP_ESP32S3 0x0009u
#define OTA_CHIP_ESP32C2 0x000Cu
#define OTA_CHIP_ESP32C6 0x000Du
#define OTA_CHIP_ESP32H2 0x0010u

/* ------------------------------------------------------------------------------------------------------
 * App descriptor (esp_app_desc_t, image offset 32), decoded. Strings are copied from the fixed-size
 * fields and always NUL-terminated (a 32-byte field without a NUL yields 32 characters).
 * ---------------------------------------------------------------------------------------------------- */
typedef struct ota_app_desc {
    uint32_t magic_word;
    uint32_t secure_version;
    char version[33];
    char project_name[33];
    char time[17];
    char date[17];
    char idf_ver[33];
    uint8_t app_elf_sha256[32];
    /* From the image header (esp_image_header_t), returned with the descriptor: chip_id (bytes 12-13),
     * min_chip_rev_full (15-16) and max_chip_rev_full (17-18), little-endian; rev = major * 100 + minor. */
    uint16_t chip_id;
    uint16_t min_chip_rev_full;
    uint16_t max_chip_rev_full;
} ota_app_desc_t;

/* Decodes 256 descriptor bytes. Does not check the magic (the parser does). Never fails. The header
 * fields are zeroed; ota_app_desc_set_header fills them. */
void ota_app_desc_decode(const uint8_t raw[OTA_APP_DESC_LEN], ota_app_desc_t *out);
/* Copies chip_id, min_chip_rev_full and max_chip_rev_full from the 24-byte image header. Never fails. */
void ota_app_desc_set_header(const uint8_t header[OTA_IMAGE_HEADER_LEN], ota_app_desc_t *out);
/* Decodes the image head (header + first segment header + descriptor): ota_app_desc_decode of bytes
 * 32..287 plus ota_app_desc_set_header. Checks nothing. Never fails. */
void ota_app_desc_decode_head(const uint8_t head[OTA_IMAGE_HEAD_LEN], ota_app_desc_t *out);

/* ------------------------------------------------------------------------------------------------------
 * Streaming image parser. Feed bytes in any chunking; the result is the same for every split.
 * ---------------------------------------------------------------------------------------------------- */
struct ota_sign_key; /* ota_sign.h */

typedef struct ota_image_config {
    uint16_t chip_id;            /* OTA_CHIP_*: the image's chip_id must equal it */
    uint32_t max_size;           /* the slot size: a larger image fails with OTA_ERR_IMAGE_TOO_LARGE */
    uint32_t image_size;         /* declared length (HTTP Content-Length), 0 = unknown */
    bool require_hash;           /* refuse images without an appended SHA-256 (OTA_ERR_IMAGE_HASH_MISSING) */
    uint32_t min_secure_version; /* anti-rollback floor: lower secure_version -> ESP_ERR_OTA_SMALL_SEC_VER */
    /* Borrowed, may be NULL: the key a signature block must verify against. The parser never looks at it;
     * ota_writer_end does (ota_sign_check) before the image may be booted. NULL = no signature required. */
    const struct ota_sign_key *sign_key;
} ota_image_config_t;

typedef enum ota_image_phase {
    OTA_IMAGE_PHASE_HEADER = 0,
    OTA_IMAGE_PHASE_SEGMENT_HEADER,
    OTA_IMAGE_PHASE_SEGMENT_DATA,
    OTA_IMAGE_PHASE_PADDING,  /* zero padding, up to and including the checksum byte */
    OTA_IMAGE_PHASE_HASH,
    OTA_IMAGE_PHASE_DONE,     /* a complete, verified image has been fed (and its signature block, if any) */
    OTA_IMAGE_PHASE_SIGNATURE, /* after DONE: collecting a signature block; finish() here is TRUNCATED */
    OTA_IMAGE_PHASE_FAILED,   /* `error` holds the reason; sticky */
} ota_image_phase_t;

typedef struct ota_image_parser {
    ota_image_config_t cfg;
    ota_image_phase_t phase;
    esp_err_t error;          /* sticky first error, ESP_OK while fine */
    uint32_t offset;          /* bytes consumed so far */
    uint32_t phase_have;      /* bytes of the current phase consumed */
    uint32_t phase_len;       /* length of the current phase */
    uint32_t segments;        /* segment_count from the header */
    uint32_t segment;         /* index of the current segment */
    uint32_t image_len;       /* total image length; known once the last segment header is in, else 0 */
    uint64_t need_end;        /* the image's end as known so far: a lower bound from the segment headers
                                 read (remaining headers, padding, checksum and hash included); exact once
                                 the last segment header is in. On OTA_ERR_IMAGE_TOO_LARGE / _PAST_END it
                                 is the bound that passed the limit. */
    uint8_t checksum;         /* running XOR over segment data, from 0xEF */
    bool hash_appended;
    bool desc_ready;
    uint8_t header[OTA_IMAGE_HEADER_LEN];
    uint8_t small[OTA_IMAGE_HASH_LEN]; /* segment header / checksum / hash bytes being collected */
    uint8_t desc_raw[OTA_APP_DESC_LEN];
    ota_app_desc_t desc;
    mbedtls_sha256_context sha;
    uint32_t image_end;       /* the image's length once DONE was first reached (the block starts there) */
    bool sig_present;         /* a complete, well-formed signature block followed the image */
    uint8_t image_hash[OTA_IMAGE_HASH_LEN]; /* the verified appended SHA-256 (when hash_appended) */
    uint8_t sig_raw[OTA_SIG_BLOCK_LEN];
} ota_image_parser_t;

/* Starts a parse. Never fails. Ownership: the parser holds an mbedTLS context; call ota_image_free
 * when done (also after errors). */
void ota_image_init(ota_image_parser_t *p, const ota_image_config_t *cfg);
void ota_image_free(ota_image_parser_t *p);

/*
 * Feeds len bytes (len 0 is allowed). All of them are consumed unless an error occurs.
 * Returns ESP_OK or the sticky error (every later call returns it again):
 *   OTA_ERR_IMAGE_MAGIC, OTA_ERR_IMAGE_SEGMENT_COUNT, OTA_ERR_IMAGE_CHIP, OTA_ERR_IMAGE_HASH_MISSING
 *     (header, as soon as its bytes are in; the magic already at byte 0),
 *   OTA_ERR_IMAGE_SEGMENT_UNALIGNED, OTA_ERR_IMAGE_DESC_MAGIC, OTA_ERR_IMAGE_TOO_LARGE,
 *   OTA_ERR_IMAGE_PAST_END (segment headers: as soon as a header shows that the image's end, as known so
 *     far, lies past max_size / image_size, before any byte of that segment's data is accepted; the
 *     header itself already checks 24 + 8 * segment_count + 256 + padding + checksum + hash),
 *   ESP_ERR_OTA_SMALL_SEC_VER (descriptor), OTA_ERR_IMAGE_CHECKSUM (checksum byte),
 *   OTA_ERR_IMAGE_HASH (last hash byte), OTA_ERR_IMAGE_TRAILING_DATA (a byte after the end that does not
 *     continue the signature block's magic "SOSG", or any byte after a complete block),
 *   OTA_ERR_SIGNATURE_INVALID (last block byte: version, algorithm, signature length, reserved bytes, image
 *     length or digest are not this image's; a block after an image without appended SHA-256),
 *   ESP_ERR_INVALID_ARG (data NULL with len > 0; not sticky).
 */
esp_err_t ota_image_feed(ota_image_parser_t *p, const uint8_t *data, size_t len);

/* Declares the end of the stream. ESP_OK when a complete image was fed (with or without a complete
 * signature block: p->sig_present tells); else the sticky error, or OTA_ERR_IMAGE_EMPTY (nothing fed),
 * OTA_ERR_IMAGE_TRUNCATED (stream ended inside the image or inside its signature block). */
esp_err_t ota_image_finish(ota_image_parser_t *p);

/* The descriptor once OTA_IMAGE_HEAD_LEN bytes are in and valid; NULL before. */
const ota_app_desc_t *ota_image_descriptor(const ota_image_parser_t *p);

/* How many more bytes can be fed without passing the end of the structure known so far (never 0 before
 * DONE; 0 when DONE or FAILED). Lets a flash reader (bootloader, end-verification) stop at the image end. */
uint32_t ota_image_wanted(const ota_image_parser_t *p);

/* Verifies the image stored at the start of `part` by reading it back (bootloader-style: the partition
 * may hold anything after the image). `cfg->max_size` 0 means the partition size. On ESP_OK, *image_len
 * (optional) is the image length and *desc (optional) its descriptor.
 * Errors: every ota_image_feed error, OTA_ERR_IMAGE_TRUNCATED (partition ends inside the image), flash
 * errors from hal->read. */
esp_err_t ota_image_verify_partition(const ota_hal_t *hal, const ota_partition_t *part,
                                     const ota_image_config_t *cfg, uint32_t *image_len, ota_app_desc_t *desc);

#ifdef __cplusplus
}
#endif

#endif /* OTA_IMAGE_H */
