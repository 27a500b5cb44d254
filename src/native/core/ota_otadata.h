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
/* seq != 0xFFFFFFFF and CRC ok (state not considered). */
bool ota_select_entry_crc_ok(const ota_select_entry_t *e);
/* crc_ok and state is neither INVALID nor ABORTED: what the bootloader may pick. */
bool ota_select_entry_bootable(const ota_select_entry_t *e);
/* Index (0/1) of the bootable entry with the highest seq, -1 if none. On equal seqs entry 0 wins. */
int ota_otadata_select(const ota_select_entry_t e[2]);

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

#ifdef __cplusplus
}
#endif

#endif /* OTA_OTADATA_H */
