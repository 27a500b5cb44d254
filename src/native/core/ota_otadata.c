/*
 * ota_otadata.c — otadata (two esp_ota_select_entry_t copies, one per 4 KiB sector) in ESP-IDF's exact
 * format, and what the running app's esp_ota_ops.c calls do with it, rule by rule as ESP-IDF does it (each
 * function names its ESP-IDF original; docs/native-ota.md has the rules table). Used by the host layer; on
 * the ESP32 ESP-IDF's own esp_ota_ops.c does the same (this file is not linked there). The simulated
 * bootloader over it is host/ota_boot_sim.c. Not here: anti-rollback eFuses, flash encryption. See
 * ota_otadata.h for every function's contract.
 */
#include <string.h>

#include "ota_image.h"
#include "ota_otadata.h"

uint32_t ota_otadata_crc(uint32_t seq)
{
    /* crc32_le(0xFFFFFFFF, le_bytes(seq), 4) of the ESP32 ROM == binascii.crc32(bytes, 0xFFFFFFFF):
     * reflected CRC-32, polynomial 0xEDB88320, register starting at ~0xFFFFFFFF = 0, final inversion. */
    uint32_t c = 0;
    for (int i = 0; i < 4; i++) {
        c ^= (seq >> (8 * i)) & 0xFFu;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void put_le32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *b)
{
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

void ota_select_entry_encode(const ota_select_entry_t *e, uint8_t out[OTA_SELECT_ENTRY_LEN])
{
    put_le32(out + 0, e->ota_seq);
    memcpy(out + 4, e->seq_label, 20);
    put_le32(out + 24, e->ota_state);
    put_le32(out + 28, e->crc);
}

void ota_select_entry_decode(const uint8_t in[OTA_SELECT_ENTRY_LEN], ota_select_entry_t *e)
{
    e->ota_seq = get_le32(in + 0);
    memcpy(e->seq_label, in + 4, 20);
    e->ota_state = get_le32(in + 24);
    e->crc = get_le32(in + 28);
}

bool ota_select_entry_crc_ok(const ota_select_entry_t *e)
{
    /* esp_ota_get_state_partition's test: the CRC alone (seq 0xFFFFFFFF is not excluded here). */
    return e->crc == ota_otadata_crc(e->ota_seq);
}

bool ota_select_entry_invalid(const ota_select_entry_t *e)
{
    /* bootloader_common_ota_select_invalid: the CRC is not looked at. */
    return e->ota_seq == 0xFFFFFFFFu || e->ota_state == OTA_STATE_INVALID || e->ota_state == OTA_STATE_ABORTED;
}

bool ota_select_entry_bootable(const ota_select_entry_t *e)
{
    /* bootloader_common_ota_select_valid. Any other state word counts, garbage included, and seq 0 is a valid
     * sequence number: (0 - 1) % count maps it to the slot (0xFFFFFFFF % count). */
    return !ota_select_entry_invalid(e) && ota_select_entry_crc_ok(e);
}

int ota_otadata_select(const ota_select_entry_t e[2])
{
    /* bootloader_common_get_active_otadata -> bootloader_common_select_otadata(max = true). */
    bool b0 = ota_select_entry_bootable(&e[0]);
    bool b1 = ota_select_entry_bootable(&e[1]);
    if (b0 && b1) return e[0].ota_seq >= e[1].ota_seq ? 0 : 1;
    if (b0) return 0;
    if (b1) return 1;
    return -1;
}

uint32_t ota_otadata_slot_of(uint32_t seq, uint32_t slot_count)
{
    return (seq - 1u) % slot_count; /* unsigned: seq 0 -> 0xFFFFFFFF % count */
}

static esp_err_t check_otadata(const ota_layout_t *l)
{
    if (!l->has_otadata) return ESP_ERR_NOT_FOUND;
    if (l->otadata.size < 2 * OTA_SECTOR_SIZE) return ESP_ERR_INVALID_SIZE;
    return ESP_OK;
}

esp_err_t ota_otadata_read(const ota_hal_t *hal, const ota_layout_t *l, ota_select_entry_t out[2])
{
    esp_err_t err = check_otadata(l);
    if (err != ESP_OK) return err;
    uint8_t raw[OTA_SELECT_ENTRY_LEN];
    for (int i = 0; i < 2; i++) {
        err = hal->read(hal->ctx, &l->otadata, (uint32_t)i * OTA_OTADATA_SECOND_OFFSET, raw, sizeof(raw));
        if (err != ESP_OK) return err;
        ota_select_entry_decode(raw, &out[i]);
    }
    return ESP_OK;
}

esp_err_t ota_otadata_write_entry(const ota_hal_t *hal, const ota_layout_t *l, int index, const ota_select_entry_t *e)
{
    /* write_otadata (bootloader) and rewrite_ota_seq (esp_ota_ops): erase the sector, program 32 bytes. */
    esp_err_t err = check_otadata(l);
    if (err != ESP_OK) return err;
    if (index != 0 && index != 1) return ESP_ERR_INVALID_ARG;
    uint32_t off = (uint32_t)index * OTA_OTADATA_SECOND_OFFSET;
    uint8_t raw[OTA_SELECT_ENTRY_LEN];
    ota_select_entry_encode(e, raw);
    err = hal->erase_sector(hal->ctx, &l->otadata, off);
    if (err != ESP_OK) return err;
    return hal->write(hal->ctx, &l->otadata, off, raw, sizeof(raw));
}

/* rewrite_ota_seq: seq and its CRC into entry `index` as read (the label and every other byte stay). */
static esp_err_t rewrite_ota_seq(const ota_hal_t *hal, const ota_layout_t *l, ota_select_entry_t e[2], uint32_t seq,
                                 int index)
{
    e[index].ota_seq = seq;
    e[index].crc = ota_otadata_crc(seq);
    return ota_otadata_write_entry(hal, l, index, &e[index]);
}

esp_err_t ota_otadata_set_boot(const ota_hal_t *hal, const ota_layout_t *l, uint32_t slot)
{
    /* esp_rewrite_ota_data (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE: the new state is NEW). */
    if (slot >= l->slot_count) return ESP_ERR_INVALID_ARG;
    ota_select_entry_t e[2];
    esp_err_t err = ota_otadata_read(hal, l, e);
    if (err != ESP_OK) return err;
    uint32_t count = l->slot_count;
    int active = ota_otadata_select(e);
    uint32_t seq = slot + 1;
    int next = 0;
    if (active != -1 && ota_otadata_slot_of(e[active].ota_seq, count) == slot) {
        /* The active entry already names the slot (set boot twice without a reboot): only its state is
         * rewritten, in place, and the other entry (the app a rollback goes back to) is left alone. */
        next = active;
        seq = e[active].ota_seq;
    } else if (active != -1) {
        /* compute_ota_seq_for_target_slot's `while (seq > base + i * count) i++`, in closed form: the smallest
         * base + i * count >= the active seq. ESP-IDF's loop runs up to 2^31 times for a seq near 2^32 (only
         * reachable through damaged otadata whose CRC still matches) and can land on 0xFFFFFFFF, an unused
         * entry: set boot would "succeed" and nothing would switch. Such otadata is refused instead. */
        uint64_t base = (slot + 1) % count;
        uint64_t cur = e[active].ota_seq;
        uint64_t i = cur > base ? (cur - base + count - 1u) / count : 0u;
        uint64_t s = base + i * count;
        if (s >= 0xFFFFFFFFu) return ESP_ERR_OTA_SELECT_INFO_INVALID;
        seq = (uint32_t)s;
        next = active ^ 1; /* (~active_otadata) & 1 */
    }
    e[next].ota_state = OTA_STATE_NEW;
    return rewrite_ota_seq(hal, l, e, seq, next);
}

esp_err_t ota_otadata_get_state(const ota_hal_t *hal, const ota_layout_t *l, uint32_t slot, uint32_t *state)
{
    /* esp_ota_get_state_partition: the FIRST entry (0, then 1) whose seq maps to the slot and whose CRC
     * matches, whatever its seq or state; not the highest seq. */
    if (slot >= l->slot_count || state == NULL) return ESP_ERR_INVALID_ARG;
    ota_select_entry_t e[2];
    esp_err_t err = ota_otadata_read(hal, l, e);
    if (err != ESP_OK) return err;
    for (int i = 0; i < 2; i++) {
        if (ota_otadata_slot_of(e[i].ota_seq, l->slot_count) == slot && ota_select_entry_crc_ok(&e[i])) {
            *state = e[i].ota_state;
            return ESP_OK;
        }
    }
    return ESP_ERR_NOT_FOUND;
}

esp_err_t ota_otadata_mark_valid(const ota_hal_t *hal, const ota_layout_t *l)
{
    /* esp_ota_mark_app_valid_cancel_rollback -> esp_ota_current_ota_is_workable(true). It does not look at
     * which partition runs: the active entry is the one confirmed. */
    ota_select_entry_t e[2];
    esp_err_t err = ota_otadata_read(hal, l, e);
    if (err != ESP_OK) return err;
    int active = ota_otadata_select(e);
    if (active == -1 || l->slot_count == 0) return ESP_FAIL; /* "Running firmware is factory" */
    if (e[active].ota_state == OTA_STATE_VALID) return ESP_OK;
    e[active].ota_state = OTA_STATE_VALID; /* from any other state: PENDING_VERIFY, NEW, UNDEFINED, garbage */
    return rewrite_ota_seq(hal, l, e, e[active].ota_seq, active);
}

/* Does `part` hold an image the bootloader would load? Flash errors come back as errors. */
static esp_err_t verifies(const ota_hal_t *hal, const ota_partition_t *part, uint16_t chip_id, bool *ok)
{
    ota_image_config_t cfg = { .chip_id = chip_id, .max_size = 0, .image_size = 0, .require_hash = false,
                               .min_secure_version = 0 };
    esp_err_t err = ota_image_verify_partition(hal, part, &cfg, NULL, NULL);
    *ok = err == ESP_OK;
    if (err == ESP_OK || (err > OTA_ERR_IMAGE_BASE && err < OTA_ERR_SIM_BASE) || err == ESP_ERR_OTA_SMALL_SEC_VER) return ESP_OK;
    return err;
}

esp_err_t ota_otadata_rollback_possible(const ota_hal_t *hal, const ota_layout_t *l, uint16_t chip_id, bool *possible)
{
    /* esp_ota_check_rollback_is_possible: only the OTHER entry's slot, or the factory app when the other
     * entry is not valid; never "any other slot that verifies". */
    *possible = false;
    ota_select_entry_t e[2];
    esp_err_t err = ota_otadata_read(hal, l, e);
    if (err != ESP_OK) return err == ESP_ERR_NOT_FOUND || err == ESP_ERR_INVALID_SIZE ? ESP_OK : err;
    if (l->slot_count == 0) return ESP_OK;
    int active = ota_otadata_select(e);
    if (active == -1) return ESP_OK;
    int last = active ^ 1;
    if (!ota_select_entry_bootable(&e[last])) {
        if (!l->has_factory) return ESP_OK;
        return verifies(hal, &l->factory, chip_id, possible);
    }
    uint32_t slot = ota_otadata_slot_of(e[last].ota_seq, l->slot_count);
    return verifies(hal, &l->slots[slot], chip_id, possible);
}

esp_err_t ota_otadata_mark_invalid(const ota_hal_t *hal, const ota_layout_t *l, uint16_t chip_id)
{
    /* esp_ota_mark_app_invalid_rollback -> esp_ota_current_ota_is_workable(false): the active entry becomes
     * INVALID whatever its state, if esp_ota_check_rollback_is_possible. The caller then restarts. */
    ota_select_entry_t e[2];
    esp_err_t err = ota_otadata_read(hal, l, e);
    if (err != ESP_OK) return err;
    int active = ota_otadata_select(e);
    if (active == -1 || l->slot_count == 0) return ESP_FAIL; /* "Running firmware is factory" */
    bool possible = false;
    err = ota_otadata_rollback_possible(hal, l, chip_id, &possible);
    if (err != ESP_OK) return err;
    if (!possible) return ESP_ERR_OTA_ROLLBACK_FAILED;
    e[active].ota_state = OTA_STATE_INVALID;
    return rewrite_ota_seq(hal, l, e, e[active].ota_seq, active);
}

esp_err_t ota_otadata_invalidate_inactive(const ota_hal_t *hal, const ota_layout_t *l, const ota_partition_t *running)
{
    /* erase_last_boot_app_partition(skip_app_part_erase = true), step by step: read_otadata,
     * bootloader_common_get_active_otadata, the other entry must be used and its CRC good, the slot it names
     * must exist and not be the running one; then only that entry's sector is erased. */
    ota_select_entry_t e[2];
    esp_err_t err = ota_otadata_read(hal, l, e);
    if (err == ESP_ERR_NOT_FOUND || err == ESP_ERR_INVALID_SIZE) return ESP_FAIL; /* read_otadata: NULL */
    if (err != ESP_OK) return err;
    int active = ota_otadata_select(e);
    if (active == -1 || l->slot_count == 0) return ESP_FAIL;
    int inactive = active ^ 1; /* (~active_otadata) & 1 */
    if (e[inactive].ota_seq == 0xFFFFFFFFu || !ota_select_entry_crc_ok(&e[inactive])) return ESP_FAIL;
    uint32_t slot = ota_otadata_slot_of(e[inactive].ota_seq, l->slot_count);
    if (running == NULL || l->slots[slot].address == running->address) return ESP_FAIL;
    return hal->erase_sector(hal->ctx, &l->otadata, (uint32_t)inactive * OTA_OTADATA_SECOND_OFFSET);
}
