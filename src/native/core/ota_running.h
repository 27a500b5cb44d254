/*
 * ota_running.h — what both bindings report about the running app, over any hal: its otadata state and
 * its app descriptor (read from its partition). One implementation for napi/ota_napi.c and xs/ota_xs.c.
 */
#ifndef OTA_RUNNING_H
#define OTA_RUNNING_H

#include <stdbool.h>
#include <stdint.h>

#include "ota_hal.h"
#include "ota_image.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The running app's state (esp_ota_get_state_partition of esp_ota_get_running_partition). *known is false
 * when there is none to report: the factory app (ESP_ERR_NOT_SUPPORTED) or a slot without an otadata entry
 * (ESP_ERR_NOT_FOUND); then *state is OTA_STATE_UNDEFINED and the result is ESP_OK.
 * Errors: those of hal->running_partition (ESP_ERR_NOT_FOUND: nothing runs, host before boot) and flash
 * errors of hal->get_state.
 */
esp_err_t ota_running_state(const ota_hal_t *hal, bool *known, uint32_t *state);

/*
 * The running app's descriptor, decoded from the first OTA_IMAGE_HEAD_LEN bytes of its partition (header
 * fields included). *found is false (result ESP_OK) when nothing runs (running_partition says
 * ESP_ERR_NOT_FOUND) or the partition holds no descriptor (magic mismatch).
 * Errors: flash errors of hal->read, other errors of hal->running_partition.
 */
esp_err_t ota_running_descriptor(const ota_hal_t *hal, bool *found, ota_app_desc_t *out);

#ifdef __cplusplus
}
#endif

#endif /* OTA_RUNNING_H */
