/*
 * ota_boot_sim.c — a simulated second-stage bootloader with ESP-IDF's selection and rollback rules
 * (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE) over otadata (core/ota_otadata.c). Host only: on the ESP32 the
 * real bootloader runs. Not here: anti-rollback eFuses, the test partition, the factory-reset GPIO. See
 * ota_boot_sim.h for the contract.
 */
#include <string.h>

#include "ota_boot_sim.h"
#include "../core/ota_layout.h"
#include "../core/ota_otadata.h"

/* Image errors mean "this app does not verify"; anything else (flash, power) aborts the boot. */
static bool is_image_error(esp_err_t err)
{
    return (err > OTA_ERR_IMAGE_BASE && err < OTA_ERR_SIM_BASE) || err == ESP_ERR_OTA_SMALL_SEC_VER;
}

static esp_err_t try_app(const ota_hal_t *hal, const ota_partition_t *part, uint16_t chip_id, ota_app_desc_t *desc,
                         bool *ok)
{
    ota_image_config_t cfg = { .chip_id = chip_id, .max_size = 0, .image_size = 0, .require_hash = false,
                               .min_secure_version = 0 };
    esp_err_t err = ota_image_verify_partition(hal, part, &cfg, NULL, desc);
    *ok = err == ESP_OK;
    if (err == ESP_OK || is_image_error(err)) return ESP_OK;
    return err;
}

esp_err_t ota_bootloader_run(const ota_hal_t *hal, uint16_t chip_id, ota_boot_result_t *out)
{
    ota_layout_t l;
    ota_layout_load(hal, &l);
    memset(out, 0, sizeof(*out));
    out->slot = -1;
    out->entry = -1;
    out->state = OTA_STATE_UNDEFINED;
    if (l.slot_count == 0 && !l.has_factory) return ESP_ERR_NOT_FOUND;
    bool ok = false;
    esp_err_t err;

    if (l.has_otadata && l.slot_count > 0) {
        /* Each pass either boots or retires one entry (ABORTED/INVALID), so two entries need <= 3 passes. */
        for (int pass = 0; pass < 3; pass++) {
            ota_select_entry_t e[2];
            err = ota_otadata_read(hal, &l, e);
            if (err == ESP_ERR_INVALID_SIZE) break;
            if (err != ESP_OK) return err;
            int sel = ota_otadata_select(e);
            if (sel == -1) break;
            uint32_t slot = (e[sel].ota_seq - 1) % l.slot_count;
            ota_select_entry_t n = e[sel];
            if (e[sel].ota_state == OTA_STATE_PENDING_VERIFY) {
                /* The app never confirmed itself: roll back. */
                n.ota_state = OTA_STATE_ABORTED;
                err = ota_otadata_write_entry(hal, &l, sel, &n);
                if (err != ESP_OK) return err;
                out->rolled_back = true;
                continue;
            }
            err = try_app(hal, &l.slots[slot], chip_id, &out->desc, &ok);
            if (err != ESP_OK) return err;
            if (!ok) {
                n.ota_state = OTA_STATE_INVALID;
                err = ota_otadata_write_entry(hal, &l, sel, &n);
                if (err != ESP_OK) return err;
                out->rolled_back = true;
                continue;
            }
            if (e[sel].ota_state == OTA_STATE_NEW) {
                n.ota_state = OTA_STATE_PENDING_VERIFY;
                err = ota_otadata_write_entry(hal, &l, sel, &n);
                if (err != ESP_OK) return err;
            }
            out->partition = l.slots[slot];
            out->slot = (int)slot;
            out->entry = sel;
            out->state = n.ota_state;
            return ESP_OK;
        }
    }
    /* No bootable otadata entry: factory, then the OTA slots in order (bootloader_utility_load_boot_image). */
    if (l.has_factory) {
        err = try_app(hal, &l.factory, chip_id, &out->desc, &ok);
        if (err != ESP_OK) return err;
        if (ok) {
            out->partition = l.factory;
            return ESP_OK;
        }
    }
    for (uint32_t i = 0; i < l.slot_count; i++) {
        err = try_app(hal, &l.slots[i], chip_id, &out->desc, &ok);
        if (err != ESP_OK) return err;
        if (ok) {
            out->partition = l.slots[i];
            out->slot = (int)i;
            uint32_t st;
            if (ota_otadata_get_state(hal, &l, i, &st) == ESP_OK) out->state = st;
            return ESP_OK;
        }
    }
    memset(&out->desc, 0, sizeof(out->desc));
    return OTA_ERR_SIM_NO_BOOTABLE_APP;
}
