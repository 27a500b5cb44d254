/*
 * ota_layout.c — the OTA view of the partition table and the next update slot
 * (esp_ota_get_next_update_partition's rule). See ota_layout.h for every function's contract.
 */
#include <string.h>

#include "ota_layout.h"

void ota_layout_load(const ota_hal_t *hal, ota_layout_t *out)
{
    memset(out, 0, sizeof(*out));
    out->has_otadata = hal->find_partition(hal->ctx, OTA_PART_TYPE_DATA, OTA_PART_SUBTYPE_DATA_OTA, &out->otadata) == ESP_OK;
    out->has_factory = hal->find_partition(hal->ctx, OTA_PART_TYPE_APP, OTA_PART_SUBTYPE_FACTORY, &out->factory) == ESP_OK;
    /* ESP-IDF counts ota_0, ota_1, ... up to the first missing subtype. */
    for (uint32_t i = 0; i < 16; i++) {
        if (hal->find_partition(hal->ctx, OTA_PART_TYPE_APP, (uint8_t)(OTA_PART_SUBTYPE_OTA_MIN + i), &out->slots[i]) != ESP_OK) break;
        out->slot_count = i + 1;
    }
}

int ota_layout_slot_index(const ota_layout_t *l, const ota_partition_t *part)
{
    for (uint32_t i = 0; i < l->slot_count; i++) {
        if (l->slots[i].address == part->address) return (int)i;
    }
    return -1;
}

esp_err_t ota_next_update_partition(const ota_hal_t *hal, const ota_partition_t *running, ota_partition_t *out)
{
    ota_layout_t l;
    ota_layout_load(hal, &l);
    if (l.slot_count == 0) return ESP_ERR_NOT_FOUND;
    int idx = running ? ota_layout_slot_index(&l, running) : -1;
    *out = l.slots[idx < 0 ? 0 : ((uint32_t)idx + 1) % l.slot_count];
    return ESP_OK;
}
