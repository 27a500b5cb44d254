/*
 * ota_hal.h — the hardware layer the OTA core runs on (ota_hal_t: partitions, flash read/erase/program,
 * boot control), the partition and OTA-state constants it speaks in (ESP-IDF's esp_partition.h and
 * esp_ota_ops.h values). Implemented by src/native/host/ (file-backed flash, otadata and a simulated
 * bootloader) and src/native/esp32/ (esp_partition_* and esp_ota_* of ESP-IDF).
 * Formats: docs/formats.md.
 */
#ifndef OTA_HAL_H
#define OTA_HAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ota_errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Flash and partition table geometry. */
#define OTA_SECTOR_SIZE 4096u
#define OTA_PARTITION_TABLE_OFFSET 0x8000u
#define OTA_PARTITION_TABLE_MAX_LEN 0xC00u

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
 * The hardware layer the core runs on. Implemented by src/native/host/ (file-backed flash, boot control
 * through core/ota_otadata.h) and src/native/esp32/ (esp_partition_* and esp_ota_* of ESP-IDF).
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
    /* esp_ota_begin's flash side, for a session that starts at offset 0 of OTA slot `part`: called by
     * ota_writer_accept once, right before the first erase of the slot, never by begin() (which writes
     * nothing) nor by a resume past the head (esp_ota_resume does none of it). ESP32: opens the esp_ota
     * session there (esp_ota_begin, OTA_WITH_SEQUENTIAL_WRITES; with rollback enabled it erases the inactive
     * otadata entry unless that entry names the running slot). Host: that erase, the same way
     * (ota_otadata_invalidate_inactive), through this layer's own erase_sector so power cuts hit it.
     * Errors: ESP_ERR_INVALID_ARG (not an OTA slot), the esp_ota_begin errors (ESP32), flash errors. */
    esp_err_t (*begin_session)(void *ctx, const ota_partition_t *part);
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

#ifdef __cplusplus
}
#endif

#endif /* OTA_HAL_H */
