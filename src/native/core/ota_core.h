/*
 * ota_core.h — the C core of the OTA slot module: one header for the ESP32 and the host.
 *
 * What it is: mechanism only (STYLE.md #7), in ESP-IDF's words and with ESP-IDF's error numbers.
 *   1. A streaming ESP32 app-image parser (ota_image_*): header, segment walk, chip id, app descriptor,
 *      XOR checksum and appended SHA-256, checked incrementally as bytes arrive. Pure: no I/O.
 *   2. A streaming writer (ota_writer_*): begin/resume, write, accept, end, abort, set boot, over the
 *      hardware layer below. It erases the target slot sector by sector as data arrives (never the whole
 *      slot up front), and writes NOTHING (not even an erase) until the first OTA_IMAGE_HEAD_LEN bytes
 *      have been validated and the caller has accepted the app descriptor, so a policy refusal (wrong
 *      project, downgrade) leaves the flash untouched.
 *   3. otadata in ESP-IDF's exact format (ota_otadata_*) and a simulated bootloader with ESP-IDF's
 *      selection and rollback rules (ota_bootloader_run). On the ESP32 the real bootloader and
 *      esp_ota_ops do this; the host layer (src/native/host/) uses these functions instead.
 * What it is not: no XS, no Node, no JSON, no retries, no policy (which project or version to accept is
 *   decided in JavaScript from the descriptor), no allocation (every struct is caller-owned).
 *
 * Formats: docs/formats.md (ESP-IDF's esp_app_format.h, esp_flash_partitions.h).
 *
 * Threading: none of these functions is re-entrant on the same object; use one writer per thread.
 *
 * Resume design (why re-hash and not a checkpoint): ota_writer_resume() rounds the caller's offset DOWN
 * to a 4 KiB sector boundary and re-reads the already written prefix [0, that boundary) from flash through
 * a fresh parser. That rebuilds the running SHA-256 and XOR checksum exactly, re-checks the header and
 * descriptor, and needs no persistent state besides the offset the caller keeps anyway. A checkpoint would
 * have to store an mbedTLS context (its layout differs between mbedTLS 2.28 and 3.x) in a second flash
 * area that itself needs power-cut-safe writes. Rounding down to a sector matters: a power cut during the
 * last write may have programmed some bytes after the caller's offset; the next write re-erases the sector
 * it starts in, so those bytes never AND into new data. The cost is one read of the prefix (flash reads
 * are an order of magnitude faster than programming). A prefix that still parses but whose data bytes
 * were damaged is caught by the SHA-256 at ota_writer_end(), which also re-reads the whole image.
 */
#ifndef OTA_CORE_H
#define OTA_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mbedtls/sha256.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------------
 * Error numbers. On the ESP32 they come from esp_err.h (ESP-IDF); elsewhere the same numbers are
 * defined here. The host simulator's own failures and the image validator's failures have their own
 * stable ranges (0x7100.., 0x7200..) that do not collide with ESP-IDF's.
 * ---------------------------------------------------------------------------------------------------- */
#if defined(ESP_PLATFORM)
#include "esp_err.h"
#include "esp_ota_ops.h"
#else
typedef int esp_err_t;
#endif
/* Each number is defined only when ESP-IDF's headers have not defined it already (same values). */
#ifndef ESP_OK
#define ESP_OK 0
#endif
#ifndef ESP_FAIL
#define ESP_FAIL -1
#endif
#ifndef ESP_ERR_NO_MEM
#define ESP_ERR_NO_MEM 0x101        /* out of memory (host: mmap/malloc failed) */
#endif
#ifndef ESP_ERR_INVALID_ARG
#define ESP_ERR_INVALID_ARG 0x102   /* an argument is out of range or misaligned */
#endif
#ifndef ESP_ERR_INVALID_STATE
#define ESP_ERR_INVALID_STATE 0x103 /* the call is not allowed in the object's current state */
#endif
#ifndef ESP_ERR_INVALID_SIZE
#define ESP_ERR_INVALID_SIZE 0x104  /* a size is wrong (declared image larger than the slot, ...) */
#endif
#ifndef ESP_ERR_NOT_FOUND
#define ESP_ERR_NOT_FOUND 0x105     /* no such partition / no otadata entry for the slot */
#endif
#ifndef ESP_ERR_NOT_SUPPORTED
#define ESP_ERR_NOT_SUPPORTED 0x106 /* e.g. asking the OTA state of the factory partition */
#endif
#ifndef ESP_ERR_INVALID_CRC
#define ESP_ERR_INVALID_CRC 0x109   /* CRC mismatch */
#endif
#ifndef ESP_ERR_OTA_BASE
#define ESP_ERR_OTA_BASE 0x1500
#endif
#ifndef ESP_ERR_OTA_PARTITION_CONFLICT
#define ESP_ERR_OTA_PARTITION_CONFLICT (ESP_ERR_OTA_BASE + 0x01)     /* target is the running slot */
#endif
#ifndef ESP_ERR_OTA_SELECT_INFO_INVALID
#define ESP_ERR_OTA_SELECT_INFO_INVALID (ESP_ERR_OTA_BASE + 0x02)    /* otadata unreadable */
#endif
#ifndef ESP_ERR_OTA_VALIDATE_FAILED
#define ESP_ERR_OTA_VALIDATE_FAILED (ESP_ERR_OTA_BASE + 0x03)        /* image in the slot does not verify */
#endif
#ifndef ESP_ERR_OTA_SMALL_SEC_VER
#define ESP_ERR_OTA_SMALL_SEC_VER (ESP_ERR_OTA_BASE + 0x04)          /* secure_version below the minimum */
#endif
#ifndef ESP_ERR_OTA_ROLLBACK_FAILED
#define ESP_ERR_OTA_ROLLBACK_FAILED (ESP_ERR_OTA_BASE + 0x05)        /* no other bootable app */
#endif
#ifndef ESP_ERR_OTA_ROLLBACK_INVALID_STATE
#define ESP_ERR_OTA_ROLLBACK_INVALID_STATE (ESP_ERR_OTA_BASE + 0x06) /* running app is PENDING_VERIFY */
#endif
#ifndef ESP_ERR_IMAGE_BASE
#define ESP_ERR_IMAGE_BASE 0x2000
#endif
#ifndef ESP_ERR_IMAGE_FLASH_FAIL
#define ESP_ERR_IMAGE_FLASH_FAIL (ESP_ERR_IMAGE_BASE + 1)
#endif
#ifndef ESP_ERR_IMAGE_INVALID
#define ESP_ERR_IMAGE_INVALID (ESP_ERR_IMAGE_BASE + 2)
#endif
#ifndef ESP_ERR_FLASH_BASE
#define ESP_ERR_FLASH_BASE 0x6000
#endif
#ifndef ESP_ERR_FLASH_OP_FAIL
#define ESP_ERR_FLASH_OP_FAIL (ESP_ERR_FLASH_BASE + 1)    /* a flash read/erase/program failed */
#endif
#ifndef ESP_ERR_FLASH_OP_TIMEOUT
#define ESP_ERR_FLASH_OP_TIMEOUT (ESP_ERR_FLASH_BASE + 2)
#endif

/* Image validator failures (ota_image_feed / ota_image_finish and everything that runs the parser). */
#define OTA_ERR_IMAGE_BASE 0x7100
#define OTA_ERR_IMAGE_MAGIC (OTA_ERR_IMAGE_BASE + 0x01)             /* first byte is not 0xE9 */
#define OTA_ERR_IMAGE_SEGMENT_COUNT (OTA_ERR_IMAGE_BASE + 0x02)     /* segment_count is 0 or > 16 */
#define OTA_ERR_IMAGE_CHIP (OTA_ERR_IMAGE_BASE + 0x03)              /* chip_id differs from the target */
#define OTA_ERR_IMAGE_DESC_MAGIC (OTA_ERR_IMAGE_BASE + 0x04)        /* app descriptor magic is not
                                                                       0xABCD5432, or the first segment is
                                                                       shorter than the 256-byte descriptor */
#define OTA_ERR_IMAGE_SEGMENT_UNALIGNED (OTA_ERR_IMAGE_BASE + 0x05) /* a segment length is not a multiple
                                                                       of 4 (esp_image_format.c refuses) */
#define OTA_ERR_IMAGE_CHECKSUM (OTA_ERR_IMAGE_BASE + 0x06)          /* XOR checksum mismatch */
#define OTA_ERR_IMAGE_HASH (OTA_ERR_IMAGE_BASE + 0x07)              /* appended SHA-256 mismatch */
#define OTA_ERR_IMAGE_TRUNCATED (OTA_ERR_IMAGE_BASE + 0x08)         /* stream ended inside the image */
#define OTA_ERR_IMAGE_TOO_LARGE (OTA_ERR_IMAGE_BASE + 0x09)         /* image (as its headers say, or as
                                                                       streamed) does not fit the slot */
#define OTA_ERR_IMAGE_TRAILING_DATA (OTA_ERR_IMAGE_BASE + 0x0A)     /* bytes after the image's end */
#define OTA_ERR_IMAGE_HASH_MISSING (OTA_ERR_IMAGE_BASE + 0x0B)      /* hash_appended is 0 but the config
                                                                       requires a SHA-256 */
#define OTA_ERR_IMAGE_PAST_END (OTA_ERR_IMAGE_BASE + 0x0C)          /* a segment or the image end lies past
                                                                       the declared image size */
#define OTA_ERR_IMAGE_EMPTY (OTA_ERR_IMAGE_BASE + 0x0D)             /* zero bytes streamed */
#define OTA_ERR_IMAGE_RESUME_MISMATCH (OTA_ERR_IMAGE_BASE + 0x0E)   /* ota_writer_resume: the prefix in flash
                                                                       does not parse as an image prefix */
/* Simulated bootloader and host flash (never returned on the ESP32). */
#define OTA_ERR_SIM_BASE 0x7200
#define OTA_ERR_SIM_POWER_LOST (OTA_ERR_SIM_BASE + 0x01)      /* host flash: the armed power cut fired; every
                                                                 later operation fails until reopened */
#define OTA_ERR_SIM_IO (OTA_ERR_SIM_BASE + 0x02)              /* host flash: open/stat/mmap/msync failed
                                                                 (errno is kept by the host layer) */
#define OTA_ERR_SIM_PARTITION_TABLE (OTA_ERR_SIM_BASE + 0x03) /* no valid partition table at 0x8000 (bad
                                                                 magic, MD5, overlap or out of flash) */
#define OTA_ERR_SIM_NO_BOOTABLE_APP (OTA_ERR_SIM_BASE + 0x04) /* simulated bootloader: no app verifies:
                                                                 the device is bricked */

/* ------------------------------------------------------------------------------------------------------
 * Constants from the formats.
 * ---------------------------------------------------------------------------------------------------- */
#define OTA_SECTOR_SIZE 4096u
#define OTA_PARTITION_TABLE_OFFSET 0x8000u
#define OTA_PARTITION_TABLE_MAX_LEN 0xC00u
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

/* Chip ids (esp_image_header_t.chip_id). */
#define OTA_CHIP_ESP32 0x0000u
#define OTA_CHIP_ESP32S2 0x0002u
#define OTA_CHIP_ESP32C3 0x0005u
#define OTA_CHIP_ESP32S3 0x0009u
#define OTA_CHIP_ESP32C2 0x000Cu
#define OTA_CHIP_ESP32C6 0x000Du
#define OTA_CHIP_ESP32H2 0x0010u

/* Partition types and subtypes (esp_partition.h). */
#define OTA_PART_TYPE_APP 0x00u
#define OTA_PART_TYPE_DATA 0x01u
#define OTA_PART_SUBTYPE_FACTORY 0x00u
#define OTA_PART_SUBTYPE_OTA_MIN 0x10u /* ota_0; ota_N = 0x10 + N */
#define OTA_PART_SUBTYPE_OTA_MAX 0x1Fu
#define OTA_PART_SUBTYPE_TEST 0x20u
#define OTA_PART_SUBTYPE_DATA_OTA 0x00u /* otadata */
#define OTA_PART_SUBTYPE_ANY 0xFFu      /* for ota_hal_t.find_partition */

/* esp_ota_img_states_t. */
#define OTA_STATE_NEW 0x0u
#define OTA_STATE_PENDING_VERIFY 0x1u
#define OTA_STATE_VALID 0x2u
#define OTA_STATE_INVALID 0x3u
#define OTA_STATE_ABORTED 0x4u
#define OTA_STATE_UNDEFINED 0xFFFFFFFFu

/* ------------------------------------------------------------------------------------------------------
 * The hardware layer the core runs on. Implemented by src/native/host/ (file-backed flash + the
 * simulated boot control below) and src/native/esp32/ (esp_partition_* and esp_ota_* of ESP-IDF).
 * ---------------------------------------------------------------------------------------------------- */

/* One partition table entry. Plain data, copied by value; `handle` is owned by the hardware layer
 * (an `const esp_partition_t *` on the ESP32, NULL on the host) and stays valid as long as the layer. */
typedef struct ota_partition {
    uint8_t type;
    uint8_t subtype;
    uint32_t address; /* absolute flash offset */
    uint32_t size;
    char label[17];   /* NUL-terminated */
    const void *handle;
} ota_partition_t;

/*
 * Every function returns ESP_OK or an error number and never retries. `ctx` is passed back unchanged.
 * Offsets are relative to the partition start; the layer refuses ranges outside the partition with
 * ESP_ERR_INVALID_ARG. Flash failures come back as the platform's own number (ESP_ERR_FLASH_*,
 * OTA_ERR_SIM_POWER_LOST, ...), unchanged by the core.
 */
typedef struct ota_hal {
    void *ctx;
    /* Finds the first partition with this type and subtype (subtype OTA_PART_SUBTYPE_ANY matches any).
     * Errors: ESP_ERR_NOT_FOUND. */
    esp_err_t (*find_partition)(void *ctx, uint8_t type, uint8_t subtype, ota_partition_t *out);
    /* Reads len bytes. Errors: ESP_ERR_INVALID_ARG, flash errors. */
    esp_err_t (*read)(void *ctx, const ota_partition_t *part, uint32_t offset, void *dst, size_t len);
    /* Erases the 4 KiB sector at `offset` (OTA_SECTOR_SIZE aligned) to 0xFF.
     * Errors: ESP_ERR_INVALID_ARG (misaligned or outside), flash errors. */
    esp_err_t (*erase_sector)(void *ctx, const ota_partition_t *part, uint32_t offset);
    /* Programs len bytes (bits can only go 1 -> 0: the data is ANDed into what is there).
     * Errors: ESP_ERR_INVALID_ARG, flash errors. */
    esp_err_t (*write)(void *ctx, const ota_partition_t *part, uint32_t offset, const void *src, size_t len);
    /* The partition the running app was booted from. Errors: ESP_ERR_NOT_FOUND (host: not booted yet). */
    esp_err_t (*running_partition)(void *ctx, ota_partition_t *out);
    /* esp_ota_get_state_partition. Errors: ESP_ERR_NOT_SUPPORTED (not an OTA slot), ESP_ERR_NOT_FOUND
     * (no otadata entry for the slot), flash errors. */
    esp_err_t (*get_state)(void *ctx, const ota_partition_t *part, uint32_t *state);
    /* esp_ota_set_boot_partition: the next boot starts `part`, state NEW. The caller (ota_writer_set_boot)
     * has verified the image. Errors: ESP_ERR_INVALID_ARG (not an app partition),
     * ESP_ERR_OTA_VALIDATE_FAILED (ESP32: ESP-IDF re-verifies), ESP_ERR_NOT_FOUND (no otadata),
     * flash errors. */
    esp_err_t (*set_boot)(void *ctx, const ota_partition_t *part);
    /* esp_ota_mark_app_valid_cancel_rollback: running app PENDING_VERIFY -> VALID; a no-op (ESP_OK)
     * when nothing is pending. Errors: flash errors, ESP_ERR_NOT_FOUND (no running partition). */
    esp_err_t (*mark_valid)(void *ctx);
    /* esp_ota_mark_app_invalid_rollback_and_reboot: running app -> INVALID, then restart into the
     * previous app. On the ESP32 it does not return on success; on the host it runs the simulated
     * bootloader (the reboot) and returns ESP_OK. Errors: ESP_ERR_OTA_ROLLBACK_FAILED (no other app to boot;
     * nothing was changed), flash errors. */
    esp_err_t (*mark_invalid_and_reboot)(void *ctx);
} ota_hal_t;

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
typedef struct ota_image_config {
    uint16_t chip_id;            /* OTA_CHIP_*: the image's chip_id must equal it */
    uint32_t max_size;           /* the slot size: a larger image fails with OTA_ERR_IMAGE_TOO_LARGE */
    uint32_t image_size;         /* declared length (HTTP Content-Length), 0 = unknown */
    bool require_hash;           /* refuse images without an appended SHA-256 (OTA_ERR_IMAGE_HASH_MISSING) */
    uint32_t min_secure_version; /* anti-rollback floor: lower secure_version -> ESP_ERR_OTA_SMALL_SEC_VER */
} ota_image_config_t;

typedef enum ota_image_phase {
    OTA_IMAGE_PHASE_HEADER = 0,
    OTA_IMAGE_PHASE_SEGMENT_HEADER,
    OTA_IMAGE_PHASE_SEGMENT_DATA,
    OTA_IMAGE_PHASE_PADDING,  /* zero padding, up to and including the checksum byte */
    OTA_IMAGE_PHASE_HASH,
    OTA_IMAGE_PHASE_DONE,     /* a complete, verified image has been fed */
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
 *   OTA_ERR_IMAGE_HASH (last hash byte), OTA_ERR_IMAGE_TRAILING_DATA (a byte after the end),
 *   ESP_ERR_INVALID_ARG (data NULL with len > 0; not sticky).
 */
esp_err_t ota_image_feed(ota_image_parser_t *p, const uint8_t *data, size_t len);

/* Declares the end of the stream. ESP_OK when a complete image was fed; else the sticky error, or
 * OTA_ERR_IMAGE_EMPTY (nothing fed), OTA_ERR_IMAGE_TRUNCATED (stream ended inside the image). */
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

/* ------------------------------------------------------------------------------------------------------
 * Streaming writer: esp_ota_begin / esp_ota_resume / esp_ota_write / esp_ota_end / esp_ota_abort /
 * esp_ota_set_boot_partition, with the descriptor gate.
 *
 * States: IDLE -(begin)-> HEAD -(288 valid bytes)-> HEAD_READY -(accept)-> WRITING -(end ok)-> ENDED
 *         -(set_boot)-> IDLE.  resume goes IDLE -> WRITING (prefix already in flash = accepted before).
 *         Any error in HEAD/WRITING -> FAILED (sticky; only abort or a new begin leaves it).
 *         abort goes anywhere -> IDLE.
 * ---------------------------------------------------------------------------------------------------- */
typedef enum ota_writer_state {
    OTA_WRITER_IDLE = 0,
    OTA_WRITER_HEAD,       /* buffering the first OTA_IMAGE_HEAD_LEN bytes in RAM; flash untouched */
    OTA_WRITER_HEAD_READY, /* descriptor known; waiting for ota_writer_accept or ota_writer_abort */
    OTA_WRITER_WRITING,
    OTA_WRITER_ENDED,      /* image complete and verified in flash; ready for ota_writer_set_boot */
    OTA_WRITER_FAILED,
} ota_writer_state_t;

/* The sizes behind a writer's size refusal (ESP_ERR_INVALID_SIZE from begin/resume, OTA_ERR_IMAGE_TOO_LARGE /
 * OTA_ERR_IMAGE_PAST_END from write/end); zeroed by begin, resume and abort, set only by a size refusal, so
 * read it right after one. Plain numbers for the bindings to pass on; the core draws no conclusion. */
typedef struct ota_size_refusal {
    uint64_t needed;   /* bytes the image needs at least (ota_image_parser_t.need_end); 0 for begin/resume */
    uint32_t declared; /* the declared image size (cfg.image_size), 0 when not declared */
    uint32_t slot;     /* size of the target slot */
} ota_size_refusal_t;

typedef struct ota_writer {
    const ota_hal_t *hal;          /* borrowed; must outlive the writer */
    ota_writer_state_t state;
    esp_err_t error;               /* why FAILED */
    ota_partition_t target;        /* the slot being written (next update partition) */
    uint32_t written;              /* image bytes in flash (= offset of the next byte) */
    uint32_t erased_end;           /* [0, erased_end) of the target has been erased in this session */
    ota_image_parser_t parser;
    uint8_t head[OTA_IMAGE_HEAD_LEN];
    uint32_t head_len;
    ota_size_refusal_t refusal;    /* set with every size refusal (see ota_size_refusal_t) */
} ota_writer_t;

/* Zeroes the writer (state IDLE). Call once before first use. Never fails. */
void ota_writer_init(ota_writer_t *w);

/*
 * esp_ota_begin: picks the next update partition (the OTA slot after the running one; ota_0 when the
 * factory app runs), checks the declared size, and enters HEAD. Writes nothing.
 * cfg->max_size is ignored (the slot size is used). An unfinished session is aborted first.
 * Errors: ESP_ERR_INVALID_ARG (NULL), ESP_ERR_NOT_FOUND (no running partition or no OTA slot),
 *   ESP_ERR_OTA_PARTITION_CONFLICT (the only OTA slot is the running one),
 *   ESP_ERR_OTA_ROLLBACK_INVALID_STATE (running app is PENDING_VERIFY: mark it valid first),
 *   ESP_ERR_INVALID_SIZE (cfg->image_size larger than the slot; w->refusal holds both sizes), flash errors
 *   from get_state.
 */
esp_err_t ota_writer_begin(ota_writer_t *w, const ota_hal_t *hal, const ota_image_config_t *cfg);

/*
 * esp_ota_resume: continues an interrupted download into the same next update partition. `offset` is the
 * number of bytes the caller knows were written; it is rounded DOWN to a sector boundary and the prefix is
 * re-read and re-parsed (see the header comment). *resume_at receives the offset the caller must restart
 * the stream from (0 means: this is a fresh begin; the head gate applies again). With resume_at > 0 the
 * state is WRITING and ota_writer_descriptor() returns the stored image's descriptor (compare it with
 * what you expect before writing on).
 * Errors: those of ota_writer_begin, ESP_ERR_INVALID_ARG (offset > slot size),
 *   OTA_ERR_IMAGE_RESUME_MISMATCH (the flash prefix is not a valid image prefix, or a whole image already
 *   ends below the rounded offset; start again with begin), flash errors from read.
 */
esp_err_t ota_writer_resume(ota_writer_t *w, const ota_hal_t *hal, const ota_image_config_t *cfg,
                            uint32_t offset, uint32_t *resume_at);

/*
 * esp_ota_write: consumes up to len bytes. *consumed (required) is how many were taken: all of them,
 * except when this call completed the head: then it stops right after byte OTA_IMAGE_HEAD_LEN, the state
 * is HEAD_READY, and the caller must read ota_writer_descriptor() and call ota_writer_accept() before
 * passing the rest again (or ota_writer_abort()). Nothing reaches flash before accept.
 * In WRITING, bytes are validated first, then the sectors they fall into are erased (each once), then
 * programmed.
 * Errors (all but INVALID_ARG/INVALID_STATE move to FAILED): ESP_ERR_INVALID_ARG (NULL),
 *   ESP_ERR_INVALID_STATE (not HEAD/WRITING, e.g. HEAD_READY or FAILED), every ota_image_feed error
 *   (OTA_ERR_IMAGE_TOO_LARGE / OTA_ERR_IMAGE_PAST_END also fill w->refusal; the chunk that holds the
 *   refusing segment header is not programmed, so nothing of that segment reaches flash),
 *   flash errors from erase_sector/write.
 */
esp_err_t ota_writer_write(ota_writer_t *w, const uint8_t *data, size_t len, size_t *consumed);

/* The candidate image's descriptor (HEAD_READY and later, or after resume); NULL otherwise. */
const ota_app_desc_t *ota_writer_descriptor(const ota_writer_t *w);

/* Accepts the descriptor: erases the first sector and programs the buffered head; state WRITING.
 * Errors: ESP_ERR_INVALID_STATE (not HEAD_READY), flash errors (state FAILED). */
esp_err_t ota_writer_accept(ota_writer_t *w);

/*
 * esp_ota_end: the stream is over. Checks that a complete image was streamed (checksum and SHA-256 were
 * checked as they arrived), then re-reads the whole image from flash and verifies it again. State ENDED.
 * Errors (state FAILED): ESP_ERR_INVALID_STATE (not HEAD/HEAD_READY/WRITING), OTA_ERR_IMAGE_EMPTY,
 *   OTA_ERR_IMAGE_TRUNCATED, a sticky feed error, ESP_ERR_OTA_VALIDATE_FAILED (flash read-back does not
 *   verify), flash errors from read.
 */
esp_err_t ota_writer_end(ota_writer_t *w);

/* esp_ota_abort: drops the session (any state), frees the parser. The partial slot content stays (it is
 * never booted: no set_boot happened). Never fails. Safe to call twice. */
void ota_writer_abort(ota_writer_t *w);

/* esp_ota_set_boot_partition for the ENDED image; state IDLE on success.
 * Errors: ESP_ERR_INVALID_STATE (not ENDED), errors of hal->set_boot (state stays ENDED: retry allowed). */
esp_err_t ota_writer_set_boot(ota_writer_t *w);

/* ------------------------------------------------------------------------------------------------------
 * otadata (esp_ota_select_entry_t) and the simulated bootloader, over the flash functions of a hal
 * (find_partition/read/erase_sector/write; the boot-control members are not used).
 * ---------------------------------------------------------------------------------------------------- */
typedef struct ota_select_entry {
    uint32_t ota_seq;
    uint8_t seq_label[20];
    uint32_t ota_state;
    uint32_t crc;
} ota_select_entry_t; /* 32 bytes on flash, little-endian; use the encode/decode below */

#define OTA_SELECT_ENTRY_LEN 32u
#define OTA_OTADATA_SECOND_OFFSET 0x1000u

/* crc32_le(0xFFFFFFFF, &seq, 4) as ESP-IDF computes it: seq 1 -> 0x4743989A. */
uint32_t ota_otadata_crc(uint32_t seq);
void ota_select_entry_encode(const ota_select_entry_t *e, uint8_t out[OTA_SELECT_ENTRY_LEN]);
void ota_select_entry_decode(const uint8_t in[OTA_SELECT_ENTRY_LEN], ota_select_entry_t *e);
/* seq != 0xFFFFFFFF and CRC ok (state not considered). */
bool ota_select_entry_crc_ok(const ota_select_entry_t *e);
/* crc_ok and state is neither INVALID nor ABORTED: what the bootloader may pick. */
bool ota_select_entry_bootable(const ota_select_entry_t *e);
/* Index (0/1) of the bootable entry with the highest seq, -1 if none. On equal seqs entry 0 wins. */
int ota_otadata_select(const ota_select_entry_t e[2]);

/* The OTA app slots of the partition table, in subtype order (ota_0, ota_1, ...). */
typedef struct ota_layout {
    ota_partition_t otadata;
    bool has_otadata;
    ota_partition_t factory;
    bool has_factory;
    ota_partition_t slots[16];
    uint32_t slot_count;
} ota_layout_t;

/* Fills the layout from hal->find_partition. Errors: none (missing partitions give has_* false and
 * slot_count 0). */
void ota_layout_load(const ota_hal_t *hal, ota_layout_t *out);
/* Slot index of an app partition (ota_N -> N), -1 for factory/test/other. */
int ota_layout_slot_index(const ota_layout_t *l, const ota_partition_t *part);

/* Reads both entries. Errors: ESP_ERR_NOT_FOUND (no otadata partition), ESP_ERR_INVALID_SIZE (otadata
 * smaller than 0x2000), flash errors. */
esp_err_t ota_otadata_read(const ota_hal_t *hal, const ota_layout_t *l, ota_select_entry_t out[2]);

/* Erases sector `index` (0 or 1) of otadata and programs `e` at its start. Errors: ESP_ERR_INVALID_ARG
 * (index), ESP_ERR_NOT_FOUND / ESP_ERR_INVALID_SIZE (as ota_otadata_read), flash errors. */
esp_err_t ota_otadata_write_entry(const ota_hal_t *hal, const ota_layout_t *l, int index, const ota_select_entry_t *e);

/*
 * esp_ota_set_boot_partition's otadata part (esp_rewrite_ota_data): computes the seq that maps to
 * `slot` and is >= the active entry's seq, and writes it with state NEW into the sector that does NOT
 * hold the bootloader's current choice (sector 0 when nothing is bootable), so a power cut leaves the old
 * choice intact. Errors: ESP_ERR_INVALID_ARG (slot >= slot_count), ESP_ERR_NOT_FOUND (no otadata),
 * ESP_ERR_INVALID_SIZE, ESP_ERR_OTA_SELECT_INFO_INVALID (the active seq is so close to 2^32 that no valid
 * seq maps to the slot; ESP-IDF would loop up to 2^31 times and may write the unused seq 0xFFFFFFFF),
 * flash errors.
 */
esp_err_t ota_otadata_set_boot(const ota_hal_t *hal, const ota_layout_t *l, uint32_t slot);

/* State of the highest-seq CRC-valid entry that maps to `slot`. Errors: ESP_ERR_INVALID_ARG,
 * ESP_ERR_NOT_FOUND (no such entry, or no otadata), flash errors. */
esp_err_t ota_otadata_get_state(const ota_hal_t *hal, const ota_layout_t *l, uint32_t slot, uint32_t *state);

/*
 * Rewrites, in place (same sector, as ESP-IDF does), the state of the entry the bootloader selected, if it
 * maps to `running_slot`. mark valid: `new_state` VALID, and only when the entry is PENDING_VERIFY
 * (else ESP_OK, nothing written). mark invalid: `new_state` INVALID or ABORTED, always written.
 * Errors: ESP_ERR_INVALID_ARG (other state values), ESP_ERR_NOT_FOUND (the selected entry is not the
 * running slot's, or no otadata), flash errors.
 */
esp_err_t ota_otadata_set_running_state(const ota_hal_t *hal, const ota_layout_t *l, uint32_t running_slot,
                                        uint32_t new_state);

/* What the simulated bootloader did. */
typedef struct ota_boot_result {
    ota_partition_t partition; /* the app that boots */
    int slot;                  /* its OTA slot index, -1 for factory/test */
    uint32_t state;            /* its otadata state after boot (OTA_STATE_UNDEFINED when none applies) */
    int entry;                 /* otadata entry index (0/1) it was chosen by, -1 if none */
    bool rolled_back;          /* a PENDING_VERIFY entry was ABORTED, or the chosen image failed to verify */
    ota_app_desc_t desc;       /* the booted image's descriptor */
} ota_boot_result_t;

/*
 * The second-stage bootloader with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE (bootloader_utility.c):
 *   - reads otadata; picks the bootable entry with the highest seq (ota_otadata_select);
 *   - NEW -> PENDING_VERIFY (rewritten in place) and boots it;
 *   - PENDING_VERIFY -> ABORTED (in place) and picks again (the previous app);
 *   - verifies the chosen image (header, chip, checksum, SHA-256 when appended); if it does not verify,
 *     the entry is marked INVALID (in place) and the choice repeats;
 *   - no bootable entry: factory, else the OTA slots from ota_0 up, the first that verifies.
 * A power cut during its own otadata rewrites is harmless: the rewritten entry becomes unreadable and the
 * previous choice applies.
 * Errors: OTA_ERR_SIM_NO_BOOTABLE_APP (bricked), ESP_ERR_NOT_FOUND (no app partitions at all), flash
 * errors (e.g. OTA_ERR_SIM_POWER_LOST).
 */
esp_err_t ota_bootloader_run(const ota_hal_t *hal, uint16_t chip_id, ota_boot_result_t *out);

/* Slot the running app's next update goes to (esp_ota_get_next_update_partition): running ota_N ->
 * ota_(N+1 mod count), factory/none -> ota_0. Errors: ESP_ERR_NOT_FOUND (no OTA slot). */
esp_err_t ota_next_update_partition(const ota_hal_t *hal, const ota_partition_t *running, ota_partition_t *out);

#ifdef __cplusplus
}
#endif

#endif /* OTA_CORE_H */
