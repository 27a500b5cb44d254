/*
 * ota_layout.h — the OTA view of the partition table (otadata, factory, ota_0..ota_15, found through
 * hal->find_partition) and the next update slot as esp_ota_get_next_update_partition picks it. Used by
 * the writer on every platform and by the host's otadata code.
 */
#ifndef OTA_LAYOUT_H
#define OTA_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

#include "ota_hal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The OTA app slots of the partition table, in subtype order (ota_0, ota_1, ...). */
typedef struct ota_layout {
    ota_partition_t otadata;
    bool has_otadata;
    ota_partition_t factory;
    bool has_factory;
    ota_partition_t slots[16];
    uint32_t slot_count;
} ota_layout_t;

/* Fills the layout from hal->find_partition. Errors: none (missing partitions give has_* false and
 * slot_count 0). */
void ota_layout_load(const ota_hal_t *hal, ota_layout_t *out);
/* Slot index of an app partition (ota_N -> N), -1 for factory/test/other. */
int ota_layout_slot_index(const ota_layout_t *l, const ota_partition_t *part);

/* Slot the running app's next update goes to (esp_ota_get_next_update_partition): running ota_N ->
 * ota_(N+1 mod count), factory/none -> ota_0. Errors: ESP_ERR_NOT_FOUND (no OTA slot). */
esp_err_t ota_next_update_partition(const ota_hal_t *hal, const ota_partition_t *running, ota_partition_t *out);

#ifdef __cplusplus
}
#endif

#endif /* OTA_LAYOUT_H */
