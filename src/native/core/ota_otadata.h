/*
 * ota_otadata.h — otadata (two esp_ota_select_entry_t copies, one per 4 KiB sector) in ESP-IDF's exact
 * format, over the flash functions of a hal (find_partition/read/erase_sector/write; the boot-control
 * members are not used). The host layer's boot control; on the ESP32 ESP-IDF's esp_ota_ops.c does this.
 */
#ifndef OTA_OTADATA_H
#define OTA_OTADATA_H

#include <stdbool.h>
#include <stdint.h>

#include "ota_hal.h"
#include "ota_layout.h"

#ifdef __cplusplus
extern "C" {
#endif

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
/* The CRC matches the seq (esp_ota_get_state_partition's test; neither seq nor state is looked at). */
bool ota_select_entry_crc_ok(const ota_select_entry_t *e);
/* bootloader_common_ota_select_invalid: seq 0xFFFFFFFF, or state INVALID or ABORTED (the CRC is not looked at). */
bool ota_select_entry_invalid(const ota_select_entry_t *e);
/* bootloader_common_ota_select_valid: not invalid and the CRC matches. Any other state word counts (NEW,
 * PENDING_VERIFY, VALID, UNDEFINED, garbage), and seq 0 is valid. */
bool ota_select_entry_bootable(const ota_select_entry_t *e);
/* bootloader_common_get_active_otadata: index (0/1) of the valid entry with the highest seq, -1 if none. On
 * equal seqs entry 0 wins. */
int ota_otadata_select(const ota_select_entry_t e[2]);
/* The OTA slot a seq selects: (seq - 1) % slot_count in 32-bit unsigned arithmetic (seq 0 -> 0xFFFFFFFF %
 * count), as bootloader_utility_get_selected_boot_partition computes it. slot_count must be > 0. */
uint32_t ota_otadata_slot_of(uint32_t seq, uint32_t slot_count);

/* Reads both entries. Errors: ESP_ERR_NOT_FOUND (no otadata partition), ESP_ERR_INVALID_SIZE (otadata
 * smaller than 0x2000), flash errors. */
esp_err_t ota_otadata_read(const ota_hal_t *hal, const ota_layout_t *l, ota_select_entry_t out[2]);

/* Erases sector `index` (0 or 1) of otadata and programs `e` at its start. Errors: ESP_ERR_INVALID_ARG
 * (index), ESP_ERR_NOT_FOUND / ESP_ERR_INVALID_SIZE (as ota_otadata_read), flash errors. */
esp_err_t ota_otadata_write_entry(const ota_hal_t *hal, const ota_layout_t *l, int index, const ota_select_entry_t *e);

/*
 * esp_ota_set_boot_partition's otadata part (esp_rewrite_ota_data, rollback enabled: state NEW):
 *   - the active entry (ota_otadata_select) already names `slot` (set boot twice without a reboot): that
 *     entry is rewritten in place with state NEW, same seq; the other entry is not touched;
 *   - another active entry: the smallest seq >= the active one that maps to `slot`
 *     (compute_ota_seq_for_target_slot) goes with state NEW into the OTHER sector, so a power cut leaves
 *     the old choice intact;
 *   - no active entry: seq slot + 1, state NEW, into sector 0.
 * Only seq, state and CRC of the rewritten entry change: its label bytes stay as the sector held them
 * (rewrite_ota_seq). Errors: ESP_ERR_INVALID_ARG (slot >= slot_count), ESP_ERR_NOT_FOUND (no otadata),
 * ESP_ERR_INVALID_SIZE, ESP_ERR_OTA_SELECT_INFO_INVALID (the active seq is so close to 2^32 that no valid seq
 * maps to the slot; ESP-IDF would loop up to 2^31 times and may write the unused seq 0xFFFFFFFF), flash errors.
 */
esp_err_t ota_otadata_set_boot(const ota_hal_t *hal, const ota_layout_t *l, uint32_t slot);

/* esp_ota_get_state_partition: the state of the FIRST entry (0, then 1) whose seq maps to `slot` and whose
 * CRC matches (not the highest seq). Errors: ESP_ERR_INVALID_ARG, ESP_ERR_NOT_FOUND (no such entry, or no
 * otadata), flash errors. */
esp_err_t ota_otadata_get_state(const ota_hal_t *hal, const ota_layout_t *l, uint32_t slot, uint32_t *state);

/* esp_ota_mark_app_valid_cancel_rollback (esp_ota_current_ota_is_workable(true)): the active entry, when its
 * state is anything but VALID, is rewritten in place as VALID; already VALID: nothing is written. It does not
 * check which partition runs (ESP-IDF does not either). Errors: ESP_FAIL (no active entry: "Running firmware
 * is factory"), ESP_ERR_NOT_FOUND / ESP_ERR_INVALID_SIZE (otadata), flash errors. */
esp_err_t ota_otadata_mark_valid(const ota_hal_t *hal, const ota_layout_t *l);

/* esp_ota_check_rollback_is_possible: true when the OTHER entry (not the active one) is valid and the slot it
 * names holds an image that verifies for `chip_id`, or, when the other entry is not valid, when the factory
 * app verifies. Other slots are not looked at. No otadata or no active entry: false. Errors: flash errors
 * while reading or verifying (image errors only mean "does not verify"). */
esp_err_t ota_otadata_rollback_possible(const ota_hal_t *hal, const ota_layout_t *l, uint16_t chip_id, bool *possible);

/* esp_ota_mark_app_invalid_rollback (esp_ota_current_ota_is_workable(false)): the active entry becomes
 * INVALID, in place, whatever its state, when a rollback is possible; the caller restarts. Errors: ESP_FAIL
 * (no active entry), ESP_ERR_OTA_ROLLBACK_FAILED (ota_otadata_rollback_possible says no; nothing written),
 * ESP_ERR_NOT_FOUND / ESP_ERR_INVALID_SIZE (otadata), flash errors. */
esp_err_t ota_otadata_mark_invalid(const ota_hal_t *hal, const ota_layout_t *l, uint16_t chip_id);

/* esp_ota_invalidate_inactive_ota_data_slot -> erase_last_boot_app_partition(skip_app_part_erase = true),
 * which esp_ota_begin calls for an OTA slot when rollback is enabled (ESP-IDF >= 5.5; esp_ota_resume does
 * not): the sector of the INACTIVE entry (the one ota_otadata_select does not pick) is erased, so the slot it
 * named, about to be overwritten, can no longer be a rollback target. The app slot itself is not erased.
 * Nothing is written, and ESP_FAIL comes back, when: no otadata, no OTA slot, no active entry, the inactive
 * entry is blank (seq 0xFFFFFFFF) or its CRC does not match, or it names `running` (NULL: ESP_FAIL too).
 * Errors: ESP_FAIL (the cases above; esp_ota_begin ignores them), flash errors from read and erase_sector. */
esp_err_t ota_otadata_invalidate_inactive(const ota_hal_t *hal, const ota_layout_t *l, const ota_partition_t *running);

#ifdef __cplusplus
}
#endif

#endif /* OTA_OTADATA_H */
