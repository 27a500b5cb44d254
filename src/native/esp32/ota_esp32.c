/*
 * ota_esp32.c — the ESP32 hardware layer of the OTA core over ESP-IDF's partition and OTA APIs.
 * See ota_esp32.h for what maps to what and why. Built by mcconfig with ESP-IDF (never on the host; the
 * host only syntax-checks it against declaration stubs, test/native/esp32-stubs/).
 *
 * Every function returns ESP-IDF's esp_err_t unchanged, or ESP_ERR_INVALID_ARG / ESP_ERR_INVALID_STATE for
 * calls the core's contract (ota_hal.h, ota_hal_t) forbids.
 */
#include <string.h>

#include "ota_esp32.h"

static ota_esp32_t *self(void *ctx)
{
    return (ota_esp32_t *)ctx;
}

static void to_partition(const esp_partition_t *p, ota_partition_t *out)
{
    memset(out, 0, sizeof(*out));
    out->type = (uint8_t)p->type;
    out->subtype = (uint8_t)p->subtype;
    out->address = p->address;
    out->size = p->size;
    memcpy(out->label, p->label, sizeof(out->label) - 1); /* both are char[17], NUL-terminated */
    out->label[sizeof(out->label) - 1] = '\0';
    out->handle = p;
}

/* The ESP-IDF partition behind an ota_partition_t (its handle; NULL for structs not made by this layer). */
static const esp_partition_t *esp_partition_of(const ota_partition_t *part)
{
    return part == NULL ? NULL : (const esp_partition_t *)part->handle;
}

static esp_err_t check_range(const ota_partition_t *part, uint32_t offset, size_t len)
{
    if (esp_partition_of(part) == NULL) return ESP_ERR_INVALID_ARG;
    if (offset > part->size || len > (size_t)(part->size - offset)) return ESP_ERR_INVALID_ARG;
    return ESP_OK;
}

static bool is_ota_slot(const esp_partition_t *p)
{
    return p->type == ESP_PARTITION_TYPE_APP && p->subtype >= ESP_PARTITION_SUBTYPE_APP_OTA_MIN &&
           p->subtype < ESP_PARTITION_SUBTYPE_APP_OTA_MAX;
}

static bool is_session(const ota_esp32_t *e, const esp_partition_t *p)
{
    return e->session_open && e->session != NULL && e->session->address == p->address;
}

void ota_esp32_abort_session(ota_esp32_t *e)
{
    if (e == NULL || !e->session_open) return;
    /* ESP_ERR_NOT_FOUND only means ESP-IDF already freed the handle (esp_ota_end frees it whatever the
     * result); nothing else can come back, and there is nothing to undo either way. */
    (void)esp_ota_abort(e->handle);
    e->session_open = false;
    e->handle = 0;
    e->session = NULL;
    e->session_next = 0;
}

/* The core and ESP-IDF must agree on the target, or something is badly wrong. */
static esp_err_t check_next_update(const esp_partition_t *p)
{
    const esp_partition_t *next = esp_ota_get_next_update_partition(NULL);
    if (next == NULL) return ESP_ERR_NOT_FOUND;
    if (next->address != p->address) return ESP_ERR_OTA_PARTITION_CONFLICT;
    return ESP_OK;
}

/*
 * Opens the esp_ota session on `p` at `offset` (a sector boundary past the first sector, which this layer
 * writes by hand: see ota_esp32.h) with esp_ota_resume in sequential-writes mode (nothing erased up front).
 * Refuses a partition that is not ESP-IDF's next update partition.
 */
static esp_err_t open_session(ota_esp32_t *e, const esp_partition_t *p, uint32_t offset)
{
    ota_esp32_abort_session(e);
    esp_err_t err = check_next_update(p);
    if (err != ESP_OK) return err;
    if (offset % OTA_SECTOR_SIZE != 0 || offset < OTA_SECTOR_SIZE) return ESP_ERR_INVALID_ARG;
    esp_ota_handle_t handle = 0;
    err = esp_ota_resume(p, OTA_WITH_SEQUENTIAL_WRITES, offset, &handle);
    if (err != ESP_OK) return err;
    e->session_open = true;
    e->handle = handle;
    e->session = p;
    e->session_next = offset;
    return ESP_OK;
}

static esp_err_t hal_find_partition(void *ctx, uint8_t type, uint8_t subtype, ota_partition_t *out)
{
    (void)ctx;
    if (out == NULL) return ESP_ERR_INVALID_ARG;
    /* OTA_PART_SUBTYPE_ANY (0xFF) is ESP_PARTITION_SUBTYPE_ANY. */
    const esp_partition_t *p =
        esp_partition_find_first((esp_partition_type_t)type, (esp_partition_subtype_t)subtype, NULL);
    if (p == NULL) return ESP_ERR_NOT_FOUND;
    to_partition(p, out);
    return ESP_OK;
}

static esp_err_t hal_read(void *ctx, const ota_partition_t *part, uint32_t offset, void *dst, size_t len)
{
    (void)ctx;
    esp_err_t err = check_range(part, offset, len);
    if (err != ESP_OK) return err;
    if (len == 0) return ESP_OK;
    if (dst == NULL) return ESP_ERR_INVALID_ARG;
    return esp_partition_read(esp_partition_of(part), offset, dst, len);
}

static esp_err_t hal_erase_sector(void *ctx, const ota_partition_t *part, uint32_t offset)
{
    ota_esp32_t *e = self(ctx);
    if (offset % OTA_SECTOR_SIZE != 0) return ESP_ERR_INVALID_ARG;
    esp_err_t err = check_range(part, offset, OTA_SECTOR_SIZE);
    if (err != ESP_OK) return err;
    const esp_partition_t *p = esp_partition_of(part);
    if (!is_ota_slot(p)) return esp_partition_erase_range(p, offset, OTA_SECTOR_SIZE);
    if (offset == 0) {
        /* The first sector is this layer's, not esp_ota_write's (it holds the held magic byte). */
        err = check_next_update(p);
        return err != ESP_OK ? err : esp_partition_erase_range(p, 0, OTA_SECTOR_SIZE);
    }

    if (!is_session(e, p)) {
        err = open_session(e, p, offset);
        if (err != ESP_OK) return err;
    }
    /* At or beyond the write position: esp_ota_write erases this sector when the data reaches it. */
    if (offset >= e->session_next) return ESP_OK;
    /* Wholly behind the write position: a real erase (the core never asks for this while writing). */
    if (offset + OTA_SECTOR_SIZE <= e->session_next) return esp_partition_erase_range(p, offset, OTA_SECTOR_SIZE);
    /* The sector being filled: erasing it would lose bytes esp_ota_write has already programmed. */
    return ESP_ERR_INVALID_STATE;
}

static esp_err_t hal_write(void *ctx, const ota_partition_t *part, uint32_t offset, const void *src, size_t len)
{
    ota_esp32_t *e = self(ctx);
    esp_err_t err = check_range(part, offset, len);
    if (err != ESP_OK) return err;
    if (len == 0) return ESP_OK;
    if (src == NULL) return ESP_ERR_INVALID_ARG;
    const esp_partition_t *p = esp_partition_of(part);
    if (!is_ota_slot(p)) return esp_partition_write(p, offset, src, len);
    if (offset < OTA_SECTOR_SIZE) {
        /* The first sector by hand: esp_ota_write would refuse a first chunk that does not start with the
         * magic, and the core programs that byte last, from ota_writer_end (0xFF -> 0xE9, no erase). */
        size_t n = OTA_SECTOR_SIZE - offset;
        if (n > len) n = len;
        err = check_next_update(p);
        if (err == ESP_OK) err = esp_partition_write(p, offset, src, n);
        if (err != ESP_OK || n == len) return err;
        offset += (uint32_t)n;
        src = (const uint8_t *)src + n;
        len -= n;
    }

    if (!is_session(e, p)) {
        err = open_session(e, p, offset);
        if (err != ESP_OK) return err;
    }
    /* The session writes sequentially only (ESP-IDF's erase-as-you-go depends on it). */
    if (offset != e->session_next) return ESP_ERR_INVALID_ARG;
    err = esp_ota_write(e->handle, src, len);
    if (err != ESP_OK) return err;
    e->session_next += (uint32_t)len;
    return ESP_OK;
}

/* esp_ota_begin itself, right before the slot's first erase: its checks (running app PENDING_VERIFY,
 * partition conflict) and, with rollback enabled, its erase of the inactive otadata entry
 * (esp_ota_invalidate_inactive_ota_data_slot; the host layer copies that step). The handle is given back at
 * once: the first sector is written by hand, and the sequential session opens with esp_ota_resume at
 * 4096 when the data gets there (esp_ota_write would refuse a first byte other than 0xE9). */
static esp_err_t hal_begin_session(void *ctx, const ota_partition_t *part)
{
    ota_esp32_t *e = self(ctx);
    const esp_partition_t *p = esp_partition_of(part);
    if (p == NULL || !is_ota_slot(p)) return ESP_ERR_INVALID_ARG;
    ota_esp32_abort_session(e);
    esp_err_t err = check_next_update(p);
    if (err != ESP_OK) return err;
    esp_ota_handle_t handle = 0;
    err = esp_ota_begin(p, OTA_WITH_SEQUENTIAL_WRITES, &handle);
    if (err != ESP_OK) return err;
    (void)esp_ota_abort(handle); /* frees the entry; nothing was written through it */
    return ESP_OK;
}

static esp_err_t hal_running_partition(void *ctx, ota_partition_t *out)
{
    (void)ctx;
    if (out == NULL) return ESP_ERR_INVALID_ARG;
    const esp_partition_t *p = esp_ota_get_running_partition();
    if (p == NULL) return ESP_ERR_NOT_FOUND;
    to_partition(p, out);
    return ESP_OK;
}

static esp_err_t hal_get_state(void *ctx, const ota_partition_t *part, uint32_t *state)
{
    (void)ctx;
    const esp_partition_t *p = esp_partition_of(part);
    if (p == NULL || state == NULL) return ESP_ERR_INVALID_ARG;
    esp_ota_img_states_t s = ESP_OTA_IMG_UNDEFINED;
    esp_err_t err = esp_ota_get_state_partition(p, &s);
    if (err != ESP_OK) return err;
    *state = (uint32_t)s;
    return ESP_OK;
}

static esp_err_t hal_set_boot(void *ctx, const ota_partition_t *part)
{
    ota_esp32_t *e = self(ctx);
    const esp_partition_t *p = esp_partition_of(part);
    if (p == NULL) return ESP_ERR_INVALID_ARG;
    if (is_session(e, p)) {
        esp_ota_handle_t handle = e->handle;
        /* esp_ota_end frees the handle whatever it returns: forget it first. */
        e->session_open = false;
        e->handle = 0;
        e->session = NULL;
        e->session_next = 0;
        esp_err_t err = esp_ota_end(handle);
        if (err != ESP_OK) return err;
    }
    return esp_ota_set_boot_partition(p);
}

static esp_err_t hal_mark_valid(void *ctx)
{
    (void)ctx;
    return esp_ota_mark_app_valid_cancel_rollback();
}

static esp_err_t hal_mark_invalid_and_reboot(void *ctx)
{
    ota_esp32_abort_session(self(ctx));
    /* Returns only when the rollback is impossible (ESP_ERR_OTA_ROLLBACK_FAILED) or failed (ESP_FAIL). */
    return esp_ota_mark_app_invalid_rollback_and_reboot();
}

void ota_esp32_init(ota_esp32_t *e)
{
    memset(e, 0, sizeof(*e));
    e->hal.ctx = e;
    e->hal.find_partition = hal_find_partition;
    e->hal.read = hal_read;
    e->hal.erase_sector = hal_erase_sector;
    e->hal.write = hal_write;
    e->hal.begin_session = hal_begin_session;
    e->hal.running_partition = hal_running_partition;
    e->hal.get_state = hal_get_state;
    e->hal.set_boot = hal_set_boot;
    e->hal.mark_valid = hal_mark_valid;
    e->hal.mark_invalid_and_reboot = hal_mark_invalid_and_reboot;
}

const ota_hal_t *ota_esp32_hal(ota_esp32_t *e)
{
    return &e->hal;
}
