/*
 * ota_running.c — the running app's state and descriptor over a hal (see ota_running.h).
 */
#include <string.h>

#include "ota_running.h"

esp_err_t ota_running_state(const ota_hal_t *hal, bool *known, uint32_t *state)
{
    *known = false;
    *state = OTA_STATE_UNDEFINED;
    ota_partition_t p;
    esp_err_t err = hal->running_partition(hal->ctx, &p);
    if (err != ESP_OK) return err;
    uint32_t s = OTA_STATE_UNDEFINED;
    err = hal->get_state(hal->ctx, &p, &s);
    if (err == ESP_ERR_NOT_SUPPORTED || err == ESP_ERR_NOT_FOUND) return ESP_OK;
    if (err != ESP_OK) return err;
    *known = true;
    *state = s;
    return ESP_OK;
}

esp_err_t ota_running_descriptor(const ota_hal_t *hal, bool *found, ota_app_desc_t *out)
{
    *found = false;
    memset(out, 0, sizeof(*out));
    ota_partition_t p;
    esp_err_t err = hal->running_partition(hal->ctx, &p);
    if (err == ESP_ERR_NOT_FOUND) return ESP_OK;
    if (err != ESP_OK) return err;
    uint8_t head[OTA_IMAGE_HEAD_LEN]; /* header (chip id, chip revisions) + segment header + descriptor */
    err = hal->read(hal->ctx, &p, 0, head, sizeof(head));
    if (err != ESP_OK) return err;
    ota_app_desc_decode_head(head, out);
    if (out->magic_word != OTA_APP_DESC_MAGIC) {
        memset(out, 0, sizeof(*out));
        return ESP_OK;
    }
    *found = true;
    return ESP_OK;
}
