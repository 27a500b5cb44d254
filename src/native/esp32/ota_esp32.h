/*
 * ota_esp32.h — the ESP32 hardware layer of the OTA core (src/native/core/ota_hal.h): an ota_hal_t over
 * ESP-IDF's partition API (esp_partition_find_first / read / erase_range / write) and OTA API
 * (esp_ota_begin with OTA_WITH_SEQUENTIAL_WRITES, esp_ota_resume, esp_ota_write, esp_ota_end,
 * esp_ota_abort, esp_ota_set_boot_partition, esp_ota_get_state_partition, esp_ota_get_running_partition,
 * esp_ota_get_next_update_partition, esp_ota_mark_app_valid_cancel_rollback,
 * esp_ota_mark_app_invalid_rollback_and_reboot).
 *
 * What it is not: no policy, no retries, no image parsing (the core does that), no XS. Every error is the
 * raw esp_err_t ESP-IDF returned, unchanged. Needs ESP-IDF >= 6.0 (esp_ota_resume), which Moddable SDK 8.2
 * builds with, and CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y (partitions/sdkconfig/sdkconfig.defaults).
 * Flash encryption is not supported: esp_ota_write keeps up to 15 bytes in RAM until esp_ota_end, and the
 * core's read-back at ota_writer_end would not see them.
 *
 * How the core's flash calls map onto an esp_ota session (the "session" is one esp_ota_handle_t):
 *   - begin_session (ota_writer_accept, right before the slot's first erase) runs
 *     esp_ota_begin(part, OTA_WITH_SEQUENTIAL_WRITES) — which refuses while the running app is
 *     PENDING_VERIFY and invalidates the inactive otadata entry, so a half-written slot can never be a
 *     rollback target — and gives the handle back at once (esp_ota_abort): see the first sector below.
 *   - the slot's first sector [0, 4096) is written by hand: erase_sector(0) -> esp_partition_erase_range,
 *     writes there -> esp_partition_write. The core holds the image's first byte (the magic 0xE9) back
 *     until ota_writer_end has verified the image (ota_writer.h, "The held magic byte"), and esp_ota_write
 *     refuses a session whose first byte is not 0xE9; so the sequential session covers the rest only.
 *   - from offset 4096 on, the first erase_sector/write opens the session with
 *     esp_ota_resume(part, OTA_WITH_SEQUENTIAL_WRITES, N) at that sector boundary N (the same call that
 *     continues a download after ota_writer_resume); a write that crosses 4096 is split there.
 *   - write -> esp_ota_write, which erases each sector just before it is first written (the sequential mode
 *     of ESP-IDF), so erase_sector on the session's partition at or beyond the write position is a no-op
 *     here: the sector is erased by the esp_ota_write that reaches it, never the whole slot up front.
 *     (esp_ota_write_with_offset is not used: ESP-IDF asserts when it is called in sequential mode.)
 *   - set_boot -> esp_ota_end when a session is open (ESP-IDF verifies the image once more, magic byte
 *     included: the core programmed it in ota_writer_end; the handle is freed whatever the result) and then
 *     esp_ota_set_boot_partition (which verifies again and writes otadata).
 *   - ota_esp32_abort_session -> esp_ota_abort. The binding calls it on abort/close/new begin.
 * Other partitions (otadata, nvs, ...) get plain esp_partition_erase_range / esp_partition_write.
 *
 * Threading: one ota_esp32_t per task; ESP-IDF's own locking covers the flash.
 */
#ifndef OTA_ESP32_H
#define OTA_ESP32_H

#include <stdbool.h>
#include <stdint.h>

#include "esp_ota_ops.h"
#include "esp_partition.h"

#include "../core/ota_hal.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ota_esp32 {
    ota_hal_t hal;                  /* ctx points back at this struct */
    bool session_open;
    esp_ota_handle_t handle;        /* valid while session_open */
    const esp_partition_t *session; /* the partition the session writes (owned by ESP-IDF) */
    uint32_t session_next;          /* offset the next esp_ota_write goes to */
} ota_esp32_t;

/* Fills in the hal. Never fails. Ownership: caller-owned; must outlive every use of ota_esp32_hal(). */
void ota_esp32_init(ota_esp32_t *e);

/* The hal to pass to ota_writer_* / ota_image_verify_partition. */
const ota_hal_t *ota_esp32_hal(ota_esp32_t *e);

/* esp_ota_abort of an open session (frees ESP-IDF's handle). Safe to call twice and with none open. */
void ota_esp32_abort_session(ota_esp32_t *e);

#ifdef __cplusplus
}
#endif

#endif /* OTA_ESP32_H */
