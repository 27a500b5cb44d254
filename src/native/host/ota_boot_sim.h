/*
 * ota_boot_sim.h — a simulated ESP-IDF second-stage bootloader with its selection and rollback rules
 * (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE), over otadata (core/ota_otadata.h) and the image verifier. Host
 * only: the host flash layer "reboots" through it; on the ESP32 the real bootloader runs, and this file
 * is not linked there.
 */
#ifndef OTA_BOOT_SIM_H
#define OTA_BOOT_SIM_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/ota_hal.h"
#include "../core/ota_image.h"

#ifdef __cplusplus
extern "C" {
#endif

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
 * The second-stage bootloader with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE, without anti-rollback, as
 * bootloader_utility.c does it:
 *   bootloader_utility_get_selected_boot_partition
 *   - reads both otadata entries; every entry whose state is PENDING_VERIFY (either sector, selected or
 *     not, whatever its CRC) is rewritten as ABORTED: its app never confirmed itself;
 *   - both entries invalid (seq 0xFFFFFFFF, INVALID or ABORTED; CRC not looked at) or no OTA slot: the
 *     factory app, or without one ota_0 (and when both entries are blank, i.e. seq 0xFFFFFFFF or a wrong
 *     CRC, the slot that boots gets entry 0 = seq index + 1, VALID: set_actual_ota_seq);
 *   - else the valid entry with the highest seq (ota_otadata_select) selects slot (seq - 1) % count; if its
 *     state is NEW it is rewritten as PENDING_VERIFY now, before the image is loaded; no valid entry: factory;
 *   bootloader_utility_load_boot_image
 *   - loads (verifies: header, chip, checksum, SHA-256 when appended) from the selected index down to the
 *     factory app, then the OTA slots above the selected one; the first that verifies boots. Nothing is
 *     written for an image that does not verify.
 * result: `entry` is the active entry when the selected slot booted (0 after set_actual_ota_seq), else -1;
 * `state` is what esp_ota_get_state_partition reads for the booted slot afterwards (UNDEFINED for factory or
 * no entry); `rolled_back` is set when an entry was ABORTED or an image on the way did not verify.
 * A power cut during one of its otadata writes stops it (OTA_ERR_SIM_POWER_LOST): the torn entry is what the
 * next boot reads (ESP-IDF's CRC covers only the seq, so a torn state word can pass; docs/native-ota.md).
 * Errors: OTA_ERR_SIM_NO_BOOTABLE_APP (bricked: no app verifies; also otadata smaller than two sectors,
 * where ESP-IDF resets forever), ESP_ERR_NOT_FOUND (no app partitions at all), flash errors (e.g.
 * OTA_ERR_SIM_POWER_LOST).
 */
esp_err_t ota_bootloader_run(const ota_hal_t *hal, uint16_t chip_id, ota_boot_result_t *out);

#ifdef __cplusplus
}
#endif

#endif /* OTA_BOOT_SIM_H */
