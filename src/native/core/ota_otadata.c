/*
 * ota_otadata.c — otadata (two esp_ota_select_entry_t copies, one per 4 KiB sector) in ESP-IDF's exact
 * format. Used by the host layer; on the ESP32 ESP-IDF's own esp_ota_ops.c does the same (this file is
 * not linked there). The simulated bootloader over it is host/ota_boot_sim.c. Not here: anti-rollback
 * eFuses. See ota_otadata.h for every function's contract.
 */
#include <string.h>

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
    /* seq 0 is never written by esp_ota_ops (seqs start at 1); refusing it avoids (0 - 1) % count. */
    return e->ota_seq != 0xFFFFFFFFu && e->ota_seq != 0 && e->crc == ota_otadata_crc(e->ota_seq);
}

bool ota_select_entry_bootable(const ota_select_entry_t *e)
{
    return ota_select_entry_crc_ok(e) && e->ota_state != OTA_STATE_INVALID && e->ota_state != OTA_STATE_ABORTED;
}

int ota_otadata_select(const ota_select_entry_t e[2])
{
    bool b0 = ota_select_entry_bootable(&e[0]);
    bool b1 = ota_select_entry_bootable(&e[1]);
    if (b0 && b1) return e[1].ota_seq > e[0].ota_seq ? 1 : 0;
    if (b0) return 0;
    if (b1) return 1;
    return -1;
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

static void make_entry(ota_select_entry_t *e, uint32_t seq, uint32_t state)
{
    memset(e->seq_label, 0xFF, sizeof(e->seq_label));
    e->ota_seq = seq;
    e->ota_state = state;
    e->crc = ota_otadata_crc(seq);
}

esp_err_t ota_otadata_set_boot(const ota_hal_t *hal, const ota_layout_t *l, uint32_t slot)
{
    if (slot >= l->slot_count) return ESP_ERR_INVALID_ARG;
    ota_select_entry_t e[2];
    esp_err_t err = ota_otadata_read(hal, l, e);
    if (err != ESP_OK) return err;
    uint32_t count = l->slot_count;
    uint32_t base = (slot + 1) % count; /* esp_rewrite_ota_data's arithmetic */
    int active = ota_otadata_select(e);
    uint32_t seq = slot + 1;
    int next = 0;
    if (active != -1) {
        /* esp_rewrite_ota_data's `while (seq > base + i * count) i++`, in closed form: the smallest
         * base + i * count >= the active seq. ESP-IDF's loop runs up to 2^31 times for a seq near 2^32 (only
         * reachable through damaged otadata whose CRC still matches) and can land on 0xFFFFFFFF, an unused
         * entry: set boot would "succeed" and nothing would switch. Such otadata is refused instead. */
        uint64_t cur = e[active].ota_seq;
        uint64_t i = cur > base ? (cur - base + count - 1u) / count : 0u;
        uint64_t s = base + i * count;
        if (s >= 0xFFFFFFFFu) return ESP_ERR_OTA_SELECT_INFO_INVALID;
        seq = (uint32_t)s;
        next = active ^ 1;
    }
    ota_select_entry_t n;
    make_entry(&n, seq, OTA_STATE_NEW);
    return ota_otadata_write_entry(hal, l, next, &n);
}

esp_err_t ota_otadata_get_state(const ota_hal_t *hal, const ota_layout_t *l, uint32_t slot, uint32_t *state)
{
    if (slot >= l->slot_count || state == NULL) return ESP_ERR_INVALID_ARG;
    ota_select_entry_t e[2];
    esp_err_t err = ota_otadata_read(hal, l, e);
    if (err != ESP_OK) return err;
    int best = -1;
    for (int i = 0; i < 2; i++) {
        if (!ota_select_entry_crc_ok(&e[i]) || (e[i].ota_seq - 1) % l->slot_count != slot) continue;
        if (best == -1 || e[i].ota_seq > e[best].ota_seq) best = i;
    }
    if (best == -1) return ESP_ERR_NOT_FOUND;
    *state = e[best].ota_state;
    return ESP_OK;
}

esp_err_t ota_otadata_set_running_state(const ota_hal_t *hal, const ota_layout_t *l, uint32_t running_slot,
                                        uint32_t new_state)
{
    if (new_state != OTA_STATE_VALID && new_state != OTA_STATE_INVALID && new_state != OTA_STATE_ABORTED) {
        return ESP_ERR_INVALID_ARG;
    }
    if (l->slot_count == 0) return ESP_ERR_NOT_FOUND;
    ota_select_entry_t e[2];
    esp_err_t err = ota_otadata_read(hal, l, e);
    if (err != ESP_OK) return err;
    int sel = ota_otadata_select(e);
    if (sel == -1 || (e[sel].ota_seq - 1) % l->slot_count != running_slot) return ESP_ERR_NOT_FOUND;
    if (new_state == OTA_STATE_VALID && e[sel].ota_state != OTA_STATE_PENDING_VERIFY) return ESP_OK;
    ota_select_entry_t n;
    make_entry(&n, e[sel].ota_seq, new_state);
    memcpy(n.seq_label, e[sel].seq_label, sizeof(n.seq_label));
    return ota_otadata_write_entry(hal, l, sel, &n);
}
