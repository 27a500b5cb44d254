/*
 * ota_errors.h — the error numbers of the OTA C core: ESP-IDF's (esp_err.h, esp_ota_ops.h; on the ESP32
 * ESP-IDF's own headers define them, elsewhere the same numbers are defined here), the image validator's
 * (0x7100..) and the host simulator's (0x7200..). Every number is stable: docs/error-codes.md and
 * src/native/ota-errors.ts map them to the OTA_* codes.
 */
#ifndef OTA_ERRORS_H
#define OTA_ERRORS_H

#include <stdint.h>

#if defined(ESP_PLATFORM)
#include "esp_err.h"
#include "esp_ota_ops.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if !defined(ESP_PLATFORM)
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

#ifdef __cplusplus
}
#endif

#endif /* OTA_ERRORS_H */
