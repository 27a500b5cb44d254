/*
 * ota_boot_sim.c — a simulated second-stage bootloader with ESP-IDF's selection and rollback rules
 * (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE) over otadata (core/ota_otadata.c), step by step as
 * components/bootloader_support/src/bootloader_utility.c does it (each function names its original).
 * Host only: on the ESP32 the real bootloader runs. Not here: anti-rollback eFuses, the test partition,
 * the factory-reset GPIO, deep-sleep fast boot. See ota_boot_sim.h for the contract.
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

/* index_to_partition: FACTORY_INDEX (-1) is the factory app, 0.. the OTA slots; NULL when absent. */
static const ota_partition_t *index_to_partition(const ota_layout_t *l, int index)
{
    if (index == -1) return l->has_factory ? &l->factory : NULL;
    if (index >= 0 && (uint32_t)index < l->slot_count) return &l->slots[index];
    return NULL;
}

/* write_otadata. ESP-IDF logs a failed write and boots on; on the host the only way a write fails is the
 * power going (OTA_ERR_SIM_POWER_LOST), and then nothing boots: the error is returned. */
static esp_err_t write_otadata(const ota_hal_t *hal, const ota_layout_t *l, int index, const ota_select_entry_t *e)
{
    return ota_otadata_write_entry(hal, l, index, e);
}

/* bootloader_utility_get_selected_boot_partition (rollback enabled, no anti-rollback): the index to start
 * from (-1 = factory), with its otadata writes. *initial: otadata holds nothing (set_actual_ota_seq applies). */
static esp_err_t selected_boot_partition(const ota_hal_t *hal, const ota_layout_t *l, int *index, int *active,
                                         bool *initial, bool *aborted)
{
    *index = -1;
    *active = -1;
    *initial = false;
    *aborted = false;
    if (!l->has_otadata) return ESP_OK; /* bs->ota_info.offset == 0: FACTORY_INDEX */
    ota_select_entry_t e[2];
    esp_err_t err = ota_otadata_read(hal, l, e);
    /* An otadata partition under two sectors: ESP-IDF returns INVALID_INDEX and resets, forever. */
    if (err == ESP_ERR_INVALID_SIZE) return OTA_ERR_SIM_NO_BOOTABLE_APP;
    if (err != ESP_OK) return err;

    /* Every PENDING_VERIFY entry, in both sectors, selected or not, CRC good or not, becomes ABORTED: its app
     * never confirmed itself before this reset. Written as read (its CRC is not recomputed). */
    for (int i = 0; i < 2; i++) {
        if (e[i].ota_state != OTA_STATE_PENDING_VERIFY) continue;
        e[i].ota_state = OTA_STATE_ABORTED;
        *aborted = true;
        err = write_otadata(hal, l, i, &e[i]);
        if (err != ESP_OK) return err;
    }

    if ((ota_select_entry_invalid(&e[0]) && ota_select_entry_invalid(&e[1])) || l->slot_count == 0) {
        if (l->has_factory) return ESP_OK; /* "Defaulting to factory image" */
        *index = 0;                        /* "No factory image, trying OTA 0" */
        bool blank0 = e[0].ota_seq == 0xFFFFFFFFu || !ota_select_entry_crc_ok(&e[0]);
        bool blank1 = e[1].ota_seq == 0xFFFFFFFFu || !ota_select_entry_crc_ok(&e[1]);
        *initial = blank0 && blank1;
        return ESP_OK;
    }
    int a = ota_otadata_select(e);
    if (a == -1) return ESP_OK; /* "ota data partition invalid": factory, or every partition from index -1 */
    *active = a;
    *index = (int)ota_otadata_slot_of(e[a].ota_seq, l->slot_count);
    if (e[a].ota_state == OTA_STATE_NEW) {
        /* Written here, BEFORE the image is loaded: if the image then fails to verify, the entry stays
         * PENDING_VERIFY and the next reset aborts it. */
        e[a].ota_state = OTA_STATE_PENDING_VERIFY;
        err = write_otadata(hal, l, a, &e[a]);
        if (err != ESP_OK) return err;
    }
    return ESP_OK;
}

/* Loaded: fill the result; set_actual_ota_seq when otadata held nothing and an OTA slot boots. */
static esp_err_t booted(const ota_hal_t *hal, const ota_layout_t *l, int index, int start, int active, bool initial,
                        ota_boot_result_t *out)
{
    out->partition = *index_to_partition(l, index);
    out->slot = index;
    out->entry = index == start ? active : -1;
    if (index > -1 && initial) {
        ota_select_entry_t n;
        memset(&n, 0xFF, sizeof(n));
        n.ota_seq = (uint32_t)index + 1;
        n.ota_state = OTA_STATE_VALID;
        n.crc = ota_otadata_crc(n.ota_seq);
        esp_err_t err = write_otadata(hal, l, 0, &n);
        if (err != ESP_OK) return err;
        out->entry = 0;
    }
    uint32_t st;
    if (index > -1 && ota_otadata_get_state(hal, l, (uint32_t)index, &st) == ESP_OK) out->state = st;
    return ESP_OK;
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

    int start, active;
    bool initial, aborted;
    esp_err_t err = selected_boot_partition(hal, &l, &start, &active, &initial, &aborted);
    if (err != ESP_OK) return err;
    out->rolled_back = aborted;

    /* bootloader_utility_load_boot_image: from the selected index down to the factory app, then up through
     * the OTA slots above it; nothing is written on the way (an image that does not verify is skipped, its
     * entry keeps its state). The test app is not modelled. */
    bool ok = false;
    for (int index = start; index >= -1; index--) {
        const ota_partition_t *part = index_to_partition(&l, index);
        if (part == NULL) continue;
        err = try_app(hal, part, chip_id, &out->desc, &ok);
        if (err != ESP_OK) return err;
        if (ok) return booted(hal, &l, index, start, active, initial, out);
        out->rolled_back = true;
    }
    for (int index = start + 1; index < (int)l.slot_count; index++) {
        const ota_partition_t *part = index_to_partition(&l, index);
        if (part == NULL) continue;
        err = try_app(hal, part, chip_id, &out->desc, &ok);
        if (err != ESP_OK) return err;
        if (ok) return booted(hal, &l, index, start, active, initial, out);
        out->rolled_back = true;
    }
    memset(&out->desc, 0, sizeof(out->desc));
    return OTA_ERR_SIM_NO_BOOTABLE_APP;
}
