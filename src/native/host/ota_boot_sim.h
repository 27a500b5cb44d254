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

#ifdef __cplusplus
}
#endif

#endif /* OTA_BOOT_SIM_H */
