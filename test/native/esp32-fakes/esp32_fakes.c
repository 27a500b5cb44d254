/*
 * esp32_fakes.c — RAM-backed fakes of exactly the ESP-IDF functions src/native/esp32/ota_esp32.c calls
 * (esp_partition_find_first/read/write/erase_range, esp_ota_begin/resume/write/end/abort,
 * esp_ota_set_boot_partition, esp_ota_get_running_partition, esp_ota_get_next_update_partition,
 * esp_ota_get_state_partition, esp_ota_mark_app_valid_cancel_rollback,
 * esp_ota_mark_app_invalid_rollback_and_reboot), and the ota_host.h interface over them, so that the
 * unchanged N-API binding (src/native/napi/ota_napi.c) drives the ESP32 layer: the same JavaScript tests
 * run against the host layer and against ota_esp32.c (build/Release/ota_slot_esp32_fakes.node, test-only).
 *
 * The rules each fake follows, from ESP-IDF's API reference (docs.espressif.com, "Partitions API" =
 * esp_partition.h, "Over The Air Updates (OTA)" = esp_ota_ops.h, "SPI Flash API") and, where the reference
 * leaves it open, from ESP-IDF's components/app_update/esp_ota_ops.c (cited by function):
 *   - Flash: 4 KiB erase sectors that read 0xFF after an erase; a program only clears bits (1 -> 0): "the
 *     flash must be erased before writing" (SPI Flash API, esp_flash_write). Writes to an unencrypted
 *     partition have no alignment requirement (esp_partition_write); encrypted partitions are not modelled
 *     (the ESP32 layer refuses flash encryption, see ota_esp32.h).
 *   - esp_partition_erase_range: offset and size must be multiples of the partition's erase_size
 *     (ESP_ERR_INVALID_ARG), and the range must lie inside the partition (ESP_ERR_INVALID_SIZE).
 *     esp_partition_read / esp_partition_write: a range past the partition is ESP_ERR_INVALID_SIZE, an
 *     offset past it ESP_ERR_INVALID_ARG, NULL buffers ESP_ERR_INVALID_ARG.
 *   - esp_ota_begin: NULL arguments ESP_ERR_INVALID_ARG; a partition not in the table ESP_ERR_NOT_FOUND;
 *     not an OTA app slot ESP_ERR_INVALID_ARG; the running partition ESP_ERR_OTA_PARTITION_CONFLICT; with
 *     rollback enabled, a PENDING_VERIFY running app ESP_ERR_OTA_ROLLBACK_INVALID_STATE. Image size
 *     OTA_WITH_SEQUENTIAL_WRITES erases nothing up front; 0 / OTA_SIZE_UNKNOWN erases the partition, any
 *     other size that size rounded up to the erase size. Then, rollback enabled, the inactive otadata entry
 *     is erased unless it names the running slot (esp_ota_invalidate_inactive_ota_data_slot; its result is
 *     ignored, as esp_ota_begin ignores it).
 *   - esp_ota_resume: like begin (offset past the partition ESP_ERR_INVALID_ARG) without the
 *     PENDING_VERIFY check, the up-front erase and the invalidation; writing continues at the offset.
 *   - esp_ota_write: NULL data ESP_ERR_INVALID_ARG; size 0 ESP_OK; unknown handle ESP_ERR_INVALID_ARG; in
 *     sequential mode it first erases every sector the data reaches that it has not reached before; the
 *     first byte of the image must be 0xE9 (ESP_ERR_OTA_VALIDATE_FAILED); flash errors come back unchanged.
 *   - esp_ota_end: unknown handle ESP_ERR_NOT_FOUND; nothing written ESP_ERR_INVALID_ARG; the image in the
 *     partition must verify (ESP_ERR_OTA_VALIDATE_FAILED); the handle is freed whatever the result.
 *     esp_ota_abort: unknown handle ESP_ERR_NOT_FOUND, else the handle is freed.
 *   - esp_ota_set_boot_partition: the image must verify (ESP_ERR_OTA_VALIDATE_FAILED); factory: otadata is
 *     erased; an OTA slot: otadata is rewritten (esp_rewrite_ota_data); anything else ESP_ERR_INVALID_ARG.
 *     The otadata rules themselves (which sector, which seq, state NEW, get state, mark valid, mark invalid
 *     with its rollback-possible check) are core/ota_otadata.c, which follows esp_ota_ops.c rule by rule
 *     and is tested on its own (test/native/bootloader-rules.test.ts); the ESP32 build does not link it, so
 *     here it plays ESP-IDF, not the code under test.
 *   - esp_ota_mark_app_invalid_rollback_and_reboot: on success ESP-IDF restarts and never returns; the fake
 *     reboots the device (the simulated bootloader, host/ota_boot_sim.c) and returns ESP_OK.
 *   - esp_ota_get_running_partition: the partition the last boot chose (NULL before the first boot: the
 *     real one cannot be called before boot).
 * Images are verified with the core's own validator (ESP-IDF's esp_image_verify checks the same header,
 * chip, checksum and SHA-256). The device's flash is RAM; every erase and program is also written through
 * to the flash file at once (pwrite of the changed bytes) so that tests can read the file and a "power
 * cycle" (close, reopen) keeps the flash, as on the chip. Power cuts: the operation that exhausts the
 * budget is cut (an erase leaves the sector half erased, a program its first half programmed) and it and
 * every later operation return OTA_ERR_SIM_POWER_LOST.
 *
 * What only silicon can show: timing, the real SPI flash driver (block erases, suspend), flash encryption,
 * the ROM and second-stage bootloader themselves, esp_restart, cache/MMU effects, ESP-IDF's own bugs.
 */
#define _GNU_SOURCE /* pread, pwrite, O_CLOEXEC */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/md5.h>
#include <mbedtls/version.h>

#include "esp_ota_ops.h"
#include "esp_partition.h"
#include "sdkconfig.h"

#include "../../../src/native/core/ota_image.h"
#include "../../../src/native/core/ota_layout.h"
#include "../../../src/native/core/ota_otadata.h"
#include "../../../src/native/esp32/ota_esp32.h"
#include "../../../src/native/host/ota_boot_sim.h"
#include "../../../src/native/host/ota_host.h"

#if MBEDTLS_VERSION_MAJOR < 3
#define FAKE_MD5(in, len, out) mbedtls_md5_ret((in), (len), (out))
#else
#define FAKE_MD5(in, len, out) mbedtls_md5((in), (len), (out))
#endif

#define MAX_PARTS (OTA_PARTITION_TABLE_MAX_LEN / 32u)
#define MAX_HANDLES 4

typedef struct {
    bool used;
    esp_ota_handle_t handle;
    const esp_partition_t *part;
    bool need_erase;
    uint32_t wrote_size;
} fake_ota_entry_t;

struct ota_host_flash {
    int fd;
    uint8_t *mem;
    uint32_t size;
    uint16_t chip_id;
    esp_partition_t parts[MAX_PARTS];
    ota_partition_t oparts[MAX_PARTS];
    size_t part_count;
    const esp_partition_t *running;
    fake_ota_entry_t entries[MAX_HANDLES];
    esp_ota_handle_t last_handle;
    ota_esp32_t esp;  /* the code under test */
    ota_hal_t wrap;   /* what the binding gets: selects this device, then the ESP32 layer's hal */
    ota_hal_t raw;    /* the flash chip itself, for the fakes (otadata, verification, bootloader) */
    bool booted;
    ota_boot_result_t boot;
    /* power cuts and the operation trace (same meaning as host/ota_host.h) */
    bool armed;
    bool lost;
    uint64_t budget;
    uint64_t ops;
    bool cut_done;
    ota_host_op_t cut;
    bool tracing;
    ota_host_op_t *trace;
    size_t trace_len, trace_cap;
};

/* ESP-IDF's API is global (one flash, one running app): the device the current call is about. */
static ota_host_flash_t *g_dev;

/* ---- the flash chip ------------------------------------------------------------------------------- */

static void record(ota_host_flash_t *f, char kind, uint32_t address, uint32_t len)
{
    if (!f->tracing) return;
    if (f->trace_len == f->trace_cap) {
        size_t cap = f->trace_cap ? f->trace_cap * 2 : 256;
        ota_host_op_t *t = realloc(f->trace, cap * sizeof(*t));
        if (t == NULL) {
            f->tracing = false;
            return;
        }
        f->trace = t;
        f->trace_cap = cap;
    }
    f->trace[f->trace_len++] = (ota_host_op_t){ .start = f->ops, .address = address, .len = len, .kind = kind };
}

static void write_through(ota_host_flash_t *f, uint32_t address, uint32_t len)
{
    /* The file mirrors the chip; a failed pwrite only makes a later reopen see older bytes. */
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(f->fd, f->mem + address + done, len - done, (off_t)(address + done));
        if (n <= 0) return;
        done += (size_t)n;
    }
}

/* Counts `len` byte-level operations; returns how many may happen before the power fails (len = all). */
static uint32_t allowance(ota_host_flash_t *f, char kind, uint32_t address, uint32_t len)
{
    record(f, kind, address, len);
    if (!f->armed || f->budget >= len) {
        if (f->armed) f->budget -= len;
        f->ops += len;
        return len;
    }
    uint32_t ok = (uint32_t)f->budget;
    f->ops += ok;
    f->budget = 0;
    f->lost = true;
    f->cut_done = true;
    f->cut = (ota_host_op_t){ .start = f->ops - ok, .address = address, .len = len, .kind = kind };
    return ok;
}

static esp_err_t chip_erase_sector(ota_host_flash_t *f, uint32_t address)
{
    if (f->lost) return OTA_ERR_SIM_POWER_LOST;
    uint32_t ok = allowance(f, 'E', address, OTA_SECTOR_SIZE);
    /* A cut erase: the first part of the sector reads 0xFF, the rest keeps its bytes. */
    memset(f->mem + address, 0xFF, ok == OTA_SECTOR_SIZE ? OTA_SECTOR_SIZE : ok / 2);
    write_through(f, address, OTA_SECTOR_SIZE);
    if (ok != OTA_SECTOR_SIZE) return OTA_ERR_SIM_POWER_LOST;
    if (f->armed && f->budget == 0) f->lost = true;
    return ESP_OK;
}

static esp_err_t chip_program(ota_host_flash_t *f, uint32_t address, const uint8_t *src, uint32_t len)
{
    if (f->lost) return OTA_ERR_SIM_POWER_LOST;
    uint32_t ok = allowance(f, 'P', address, len);
    uint32_t n = ok == len ? len : ok / 2;
    for (uint32_t i = 0; i < n; i++) f->mem[address + i] &= src[i]; /* bits only go 1 -> 0 */
    write_through(f, address, n);
    if (ok != len) return OTA_ERR_SIM_POWER_LOST;
    if (f->armed && f->budget == 0) f->lost = true;
    return ESP_OK;
}

/* ---- the raw hal (the chip, by ota_partition_t) for the fakes' own use ---------------------------- */

static ota_host_flash_t *dev_of(void *ctx)
{
    return (ota_host_flash_t *)ctx;
}

static esp_err_t raw_find(void *ctx, uint8_t type, uint8_t subtype, ota_partition_t *out)
{
    ota_host_flash_t *f = dev_of(ctx);
    for (size_t i = 0; i < f->part_count; i++) {
        if (f->oparts[i].type == type && (subtype == OTA_PART_SUBTYPE_ANY || f->oparts[i].subtype == subtype)) {
            *out = f->oparts[i];
            return ESP_OK;
        }
    }
    return ESP_ERR_NOT_FOUND;
}

static esp_err_t raw_range(const ota_partition_t *part, uint32_t offset, size_t len)
{
    if (part == NULL || offset > part->size || len > (size_t)(part->size - offset)) return ESP_ERR_INVALID_ARG;
    return ESP_OK;
}

static esp_err_t raw_read(void *ctx, const ota_partition_t *part, uint32_t offset, void *dst, size_t len)
{
    ota_host_flash_t *f = dev_of(ctx);
    esp_err_t err = raw_range(part, offset, len);
    if (err != ESP_OK) return err;
    if (f->lost) return OTA_ERR_SIM_POWER_LOST;
    memcpy(dst, f->mem + part->address + offset, len);
    return ESP_OK;
}

static esp_err_t raw_erase(void *ctx, const ota_partition_t *part, uint32_t offset)
{
    if (offset % OTA_SECTOR_SIZE != 0) return ESP_ERR_INVALID_ARG;
    esp_err_t err = raw_range(part, offset, OTA_SECTOR_SIZE);
    if (err != ESP_OK) return err;
    return chip_erase_sector(dev_of(ctx), part->address + offset);
}

static esp_err_t raw_write(void *ctx, const ota_partition_t *part, uint32_t offset, const void *src, size_t len)
{
    esp_err_t err = raw_range(part, offset, len);
    if (err != ESP_OK) return err;
    return chip_program(dev_of(ctx), part->address + offset, src, (uint32_t)len);
}

static ota_layout_t layout(ota_host_flash_t *f)
{
    ota_layout_t l;
    ota_layout_load(&f->raw, &l);
    return l;
}

static const ota_partition_t *opart_of(ota_host_flash_t *f, const esp_partition_t *p)
{
    return &f->oparts[p - f->parts];
}

/* esp_partition_verify: the table's own entry for `p`, NULL when it is not one. */
static const esp_partition_t *verify_part(ota_host_flash_t *f, const esp_partition_t *p)
{
    for (size_t i = 0; i < f->part_count; i++) {
        if (p == &f->parts[i] || (p->address == f->parts[i].address && p->size == f->parts[i].size)) return &f->parts[i];
    }
    return NULL;
}

static bool is_ota_partition(const esp_partition_t *p)
{
    return p != NULL && p->type == ESP_PARTITION_TYPE_APP && p->subtype >= ESP_PARTITION_SUBTYPE_APP_OTA_0 &&
           p->subtype < ESP_PARTITION_SUBTYPE_APP_OTA_MAX;
}

/* esp_image_verify over the partition. */
static esp_err_t image_validate(ota_host_flash_t *f, const esp_partition_t *p)
{
    ota_image_config_t cfg = { .chip_id = f->chip_id, .max_size = 0, .image_size = 0, .require_hash = false,
                               .min_secure_version = 0 };
    esp_err_t err = ota_image_verify_partition(&f->raw, opart_of(f, p), &cfg, NULL, NULL);
    if (err == OTA_ERR_SIM_POWER_LOST) return err;
    return err == ESP_OK ? ESP_OK : ESP_ERR_OTA_VALIDATE_FAILED;
}

/* ---- esp_partition.h ------------------------------------------------------------------------------ */

const esp_partition_t *esp_partition_find_first(esp_partition_type_t type, esp_partition_subtype_t subtype,
                                                const char *label)
{
    ota_host_flash_t *f = g_dev;
    for (size_t i = 0; i < f->part_count; i++) {
        const esp_partition_t *p = &f->parts[i];
        if (type != ESP_PARTITION_TYPE_ANY && p->type != type) continue;
        if (subtype != ESP_PARTITION_SUBTYPE_ANY && p->subtype != subtype) continue;
        if (label != NULL && strncmp(p->label, label, sizeof(p->label)) != 0) continue;
        return p;
    }
    return NULL;
}

esp_err_t esp_partition_read(const esp_partition_t *partition, size_t src_offset, void *dst, size_t size)
{
    ota_host_flash_t *f = g_dev;
    if (partition == NULL || dst == NULL) return ESP_ERR_INVALID_ARG;
    if (src_offset > partition->size) return ESP_ERR_INVALID_ARG;
    if (size > partition->size - src_offset) return ESP_ERR_INVALID_SIZE;
    if (f->lost) return OTA_ERR_SIM_POWER_LOST;
    memcpy(dst, f->mem + partition->address + src_offset, size);
    return ESP_OK;
}

esp_err_t esp_partition_write(const esp_partition_t *partition, size_t dst_offset, const void *src, size_t size)
{
    ota_host_flash_t *f = g_dev;
    if (partition == NULL || src == NULL) return ESP_ERR_INVALID_ARG;
    if (dst_offset > partition->size) return ESP_ERR_INVALID_ARG;
    if (size > partition->size - dst_offset) return ESP_ERR_INVALID_SIZE;
    if (partition->readonly) return ESP_ERR_NOT_ALLOWED;
    if (size == 0) return ESP_OK;
    return chip_program(f, partition->address + (uint32_t)dst_offset, src, (uint32_t)size);
}

esp_err_t esp_partition_erase_range(const esp_partition_t *partition, size_t offset, size_t size)
{
    ota_host_flash_t *f = g_dev;
    if (partition == NULL) return ESP_ERR_INVALID_ARG;
    if (offset > partition->size) return ESP_ERR_INVALID_ARG;
    if (size > partition->size - offset) return ESP_ERR_INVALID_SIZE;
    if (offset % partition->erase_size != 0) return ESP_ERR_INVALID_ARG;
    if (size % partition->erase_size != 0) return ESP_ERR_INVALID_SIZE;
    if (partition->readonly) return ESP_ERR_NOT_ALLOWED;
    for (size_t at = 0; at < size; at += OTA_SECTOR_SIZE) {
        esp_err_t err = chip_erase_sector(f, partition->address + (uint32_t)(offset + at));
        if (err != ESP_OK) return err;
    }
    return ESP_OK;
}

/* ---- esp_ota_ops.h -------------------------------------------------------------------------------- */

const esp_partition_t *esp_ota_get_running_partition(void)
{
    return g_dev->running;
}

const esp_partition_t *esp_ota_get_next_update_partition(const esp_partition_t *start_from)
{
    ota_host_flash_t *f = g_dev;
    start_from = start_from == NULL ? f->running : verify_part(f, start_from);
    const esp_partition_t *first = NULL;
    bool next_is_result = false;
    for (int t = ESP_PARTITION_SUBTYPE_APP_OTA_0; t != ESP_PARTITION_SUBTYPE_APP_OTA_MAX; t++) {
        const esp_partition_t *p = esp_partition_find_first(ESP_PARTITION_TYPE_APP, (esp_partition_subtype_t)t, NULL);
        if (p == NULL) continue;
        if (first == NULL) first = p;
        if (p == start_from) next_is_result = true;
        else if (next_is_result) return p;
    }
    return first;
}

esp_err_t esp_ota_get_state_partition(const esp_partition_t *partition, esp_ota_img_states_t *ota_state)
{
    ota_host_flash_t *f = g_dev;
    if (partition == NULL || ota_state == NULL) return ESP_ERR_INVALID_ARG;
    if (!is_ota_partition(partition)) return ESP_ERR_NOT_SUPPORTED;
    ota_layout_t l = layout(f);
    if (l.slot_count == 0) return ESP_ERR_NOT_FOUND;
    uint32_t slot = (uint32_t)partition->subtype - ESP_PARTITION_SUBTYPE_APP_OTA_MIN;
    if (slot >= l.slot_count) return ESP_ERR_NOT_FOUND;
    uint32_t s;
    esp_err_t err = ota_otadata_get_state(&f->raw, &l, slot, &s);
    if (err != ESP_OK) return err;
    *ota_state = (esp_ota_img_states_t)s;
    return ESP_OK;
}

static fake_ota_entry_t *entry_of(ota_host_flash_t *f, esp_ota_handle_t handle)
{
    for (int i = 0; i < MAX_HANDLES; i++) {
        if (f->entries[i].used && f->entries[i].handle == handle) return &f->entries[i];
    }
    return NULL;
}

static fake_ota_entry_t *new_entry(ota_host_flash_t *f, const esp_partition_t *p)
{
    for (int i = 0; i < MAX_HANDLES; i++) {
        if (!f->entries[i].used) {
            f->entries[i] = (fake_ota_entry_t){ .used = true, .handle = ++f->last_handle, .part = p };
            return &f->entries[i];
        }
    }
    return NULL;
}

/* esp_ota_invalidate_inactive_ota_data_slot (erase_last_boot_app_partition(skip_app_part_erase = true)): the
 * core's ota_otadata_invalidate_inactive, which follows it step by step (and is also what the host layer
 * runs at the same moment); here it plays ESP-IDF, like the other otadata rules. */
static esp_err_t invalidate_inactive_slot(ota_host_flash_t *f)
{
    ota_layout_t l = layout(f);
    const ota_partition_t *running = f->running != NULL ? &f->oparts[f->running - f->parts] : NULL;
    return ota_otadata_invalidate_inactive(&f->raw, &l, running);
}

esp_err_t esp_ota_begin(const esp_partition_t *partition, size_t image_size, esp_ota_handle_t *out_handle)
{
    ota_host_flash_t *f = g_dev;
    if (partition == NULL || out_handle == NULL) return ESP_ERR_INVALID_ARG;
    partition = verify_part(f, partition);
    if (partition == NULL) return ESP_ERR_NOT_FOUND;
    if (!is_ota_partition(partition)) return ESP_ERR_INVALID_ARG;
    if (partition == f->running) return ESP_ERR_OTA_PARTITION_CONFLICT;
#ifdef CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
    esp_ota_img_states_t running_state;
    if (f->running != NULL && esp_ota_get_state_partition(f->running, &running_state) == ESP_OK &&
        running_state == ESP_OTA_IMG_PENDING_VERIFY) {
        return ESP_ERR_OTA_ROLLBACK_INVALID_STATE;
    }
#endif
    fake_ota_entry_t *it = new_entry(f, partition);
    if (it == NULL) return ESP_ERR_NO_MEM;
    it->need_erase = image_size == OTA_WITH_SEQUENTIAL_WRITES;
    *out_handle = it->handle;
    if (image_size != OTA_WITH_SEQUENTIAL_WRITES) {
        size_t erase = (image_size == 0 || image_size == OTA_SIZE_UNKNOWN)
                           ? partition->size
                           : (image_size + partition->erase_size - 1) / partition->erase_size * partition->erase_size;
        esp_err_t err = esp_partition_erase_range(partition, 0, erase);
        if (err != ESP_OK) return err;
    }
#ifdef CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
    (void)invalidate_inactive_slot(f);
#endif
    return ESP_OK;
}

esp_err_t esp_ota_resume(const esp_partition_t *partition, const size_t erase_size, const size_t image_offset,
                         esp_ota_handle_t *out_handle)
{
    ota_host_flash_t *f = g_dev;
    if (partition == NULL || out_handle == NULL) return ESP_ERR_INVALID_ARG;
    if (image_offset > partition->size) return ESP_ERR_INVALID_ARG;
    partition = verify_part(f, partition);
    if (partition == NULL) return ESP_ERR_NOT_FOUND;
    if (!is_ota_partition(partition)) return ESP_ERR_INVALID_ARG;
    if (partition == f->running) return ESP_ERR_OTA_PARTITION_CONFLICT;
    fake_ota_entry_t *it = new_entry(f, partition);
    if (it == NULL) return ESP_ERR_NO_MEM;
    it->wrote_size = (uint32_t)image_offset;
    it->need_erase = erase_size == OTA_WITH_SEQUENTIAL_WRITES;
    *out_handle = it->handle;
    return ESP_OK;
}

esp_err_t esp_ota_write(esp_ota_handle_t handle, const void *data, size_t size)
{
    ota_host_flash_t *f = g_dev;
    const uint8_t *bytes = data;
    if (data == NULL) return ESP_ERR_INVALID_ARG;
    if (size == 0) return ESP_OK;
    fake_ota_entry_t *it = entry_of(f, handle);
    if (it == NULL) return ESP_ERR_INVALID_ARG;
    uint32_t es = it->part->erase_size;
    if (it->need_erase) {
        uint32_t first = it->wrote_size / es;
        uint32_t last = (uint32_t)((it->wrote_size + size - 1) / es);
        esp_err_t err = ESP_OK;
        if (it->wrote_size % es == 0) err = esp_partition_erase_range(it->part, it->wrote_size, (last - first + 1) * es);
        else if (first != last) err = esp_partition_erase_range(it->part, (first + 1) * es, (last - first) * es);
        if (err != ESP_OK) return err;
    }
    if (it->wrote_size == 0 && bytes[0] != OTA_IMAGE_MAGIC) return ESP_ERR_OTA_VALIDATE_FAILED;
    esp_err_t err = esp_partition_write(it->part, it->wrote_size, bytes, size);
    if (err == ESP_OK) it->wrote_size += (uint32_t)size;
    return err;
}

esp_err_t esp_ota_abort(esp_ota_handle_t handle)
{
    fake_ota_entry_t *it = entry_of(g_dev, handle);
    if (it == NULL) return ESP_ERR_NOT_FOUND;
    it->used = false;
    return ESP_OK;
}

esp_err_t esp_ota_end(esp_ota_handle_t handle)
{
    ota_host_flash_t *f = g_dev;
    fake_ota_entry_t *it = entry_of(f, handle);
    if (it == NULL) return ESP_ERR_NOT_FOUND;
    esp_err_t err = it->wrote_size == 0 ? ESP_ERR_INVALID_ARG : image_validate(f, it->part);
    it->used = false;
    return err;
}

esp_err_t esp_ota_set_boot_partition(const esp_partition_t *partition)
{
    ota_host_flash_t *f = g_dev;
    if (partition == NULL) return ESP_ERR_INVALID_ARG;
    partition = verify_part(f, partition);
    if (partition == NULL) return ESP_ERR_INVALID_ARG;
    esp_err_t err = image_validate(f, partition);
    if (err != ESP_OK) return err;
    if (partition->type != ESP_PARTITION_TYPE_APP) return ESP_ERR_INVALID_ARG;
    ota_layout_t l = layout(f);
    if (partition->subtype == ESP_PARTITION_SUBTYPE_APP_FACTORY) {
        const esp_partition_t *od = esp_partition_find_first(ESP_PARTITION_TYPE_DATA, ESP_PARTITION_SUBTYPE_DATA_OTA, NULL);
        if (od == NULL) return ESP_ERR_NOT_FOUND;
        return esp_partition_erase_range(od, 0, od->size);
    }
    if (!is_ota_partition(partition)) return ESP_ERR_INVALID_ARG;
    return ota_otadata_set_boot(&f->raw, &l, (uint32_t)partition->subtype - ESP_PARTITION_SUBTYPE_APP_OTA_MIN);
}

esp_err_t esp_ota_mark_app_valid_cancel_rollback(void)
{
    ota_host_flash_t *f = g_dev;
    ota_layout_t l = layout(f);
    return ota_otadata_mark_valid(&f->raw, &l);
}

static esp_err_t reboot(ota_host_flash_t *f);

esp_err_t esp_ota_mark_app_invalid_rollback_and_reboot(void)
{
    ota_host_flash_t *f = g_dev;
    ota_layout_t l = layout(f);
    esp_err_t err = ota_otadata_mark_invalid(&f->raw, &l, f->chip_id);
    if (err != ESP_OK) return err;
    return reboot(f); /* esp_restart(): the chip would not come back here */
}

/* ---- the ota_host.h interface over the fakes (what ota_napi.c calls) ------------------------------ */

static esp_err_t reboot(ota_host_flash_t *f)
{
    ota_esp32_abort_session(&f->esp);
    for (int i = 0; i < MAX_HANDLES; i++) f->entries[i].used = false;
    f->running = NULL;
    f->booted = false;
    esp_err_t err = ota_bootloader_run(&f->raw, f->chip_id, &f->boot);
    if (err != ESP_OK) return err;
    for (size_t i = 0; i < f->part_count; i++) {
        if (f->parts[i].address == f->boot.partition.address) f->running = &f->parts[i];
    }
    f->boot.partition = f->running ? f->oparts[f->running - f->parts] : f->boot.partition;
    f->booted = true;
    return ESP_OK;
}

/* The binding's hal: every call selects this device for the global ESP-IDF API, then runs the ESP32
 * layer's own function. */
#define WRAP(name, args, call)                                    \
    static esp_err_t wrap_##name args                             \
    {                                                             \
        ota_host_flash_t *f = dev_of(ctx);                        \
        g_dev = f;                                                \
        const ota_hal_t *h = ota_esp32_hal(&f->esp);              \
        return h->name call;                                      \
    }
WRAP(find_partition, (void *ctx, uint8_t type, uint8_t subtype, ota_partition_t *out), (h->ctx, type, subtype, out))
WRAP(read, (void *ctx, const ota_partition_t *part, uint32_t offset, void *dst, size_t len), (h->ctx, part, offset, dst, len))
WRAP(erase_sector, (void *ctx, const ota_partition_t *part, uint32_t offset), (h->ctx, part, offset))
WRAP(write, (void *ctx, const ota_partition_t *part, uint32_t offset, const void *src, size_t len),
     (h->ctx, part, offset, src, len))
WRAP(begin_session, (void *ctx, const ota_partition_t *part), (h->ctx, part))
WRAP(running_partition, (void *ctx, ota_partition_t *out), (h->ctx, out))
WRAP(get_state, (void *ctx, const ota_partition_t *part, uint32_t *state), (h->ctx, part, state))
WRAP(set_boot, (void *ctx, const ota_partition_t *part), (h->ctx, part))
WRAP(mark_valid, (void *ctx), (h->ctx))
WRAP(mark_invalid_and_reboot, (void *ctx), (h->ctx))
#undef WRAP

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

/* The partition table at 0x8000 (esp_flash_partitions.h), as the host layer reads it. */
static esp_err_t load_table(ota_host_flash_t *f)
{
    if (f->size < OTA_PARTITION_TABLE_OFFSET + OTA_PARTITION_TABLE_MAX_LEN) return OTA_ERR_SIM_PARTITION_TABLE;
    const uint8_t *t = f->mem + OTA_PARTITION_TABLE_OFFSET;
    size_t n = 0;
    for (uint32_t off = 0; off + 32 <= OTA_PARTITION_TABLE_MAX_LEN; off += 32) {
        const uint8_t *e = t + off;
        if (e[0] == 0xAA && e[1] == 0x50) {
            esp_partition_t *p = &f->parts[n];
            memset(p, 0, sizeof(*p));
            p->type = (esp_partition_type_t)e[2];
            p->subtype = (esp_partition_subtype_t)e[3];
            p->address = le32(e + 4);
            p->size = le32(e + 8);
            p->erase_size = OTA_SECTOR_SIZE;
            memcpy(p->label, e + 12, 16);
            p->label[16] = '\0';
            if (p->address % OTA_SECTOR_SIZE != 0 || p->size == 0 || (uint64_t)p->address + p->size > f->size) {
                return OTA_ERR_SIM_PARTITION_TABLE;
            }
            ota_partition_t *o = &f->oparts[n];
            memset(o, 0, sizeof(*o));
            o->type = e[2];
            o->subtype = e[3];
            o->address = p->address;
            o->size = p->size;
            memcpy(o->label, p->label, sizeof(o->label));
            n++;
            continue;
        }
        if (e[0] == 0xEB && e[1] == 0xEB) {
            uint8_t md5[16];
            if (FAKE_MD5(t, off, md5) != 0 || memcmp(md5, e + 16, 16) != 0) return OTA_ERR_SIM_PARTITION_TABLE;
            break;
        }
        if (e[0] == 0xFF && e[1] == 0xFF) break;
        return OTA_ERR_SIM_PARTITION_TABLE;
    }
    if (n == 0) return OTA_ERR_SIM_PARTITION_TABLE;
    f->part_count = n;
    return ESP_OK;
}

esp_err_t ota_host_open(const char *path, uint16_t chip_id, ota_host_flash_t **out, int *sys_errno)
{
    if (path == NULL || out == NULL) return ESP_ERR_INVALID_ARG;
    *out = NULL;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        if (sys_errno) *sys_errno = errno;
        return OTA_ERR_SIM_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        if (sys_errno) *sys_errno = errno;
        close(fd);
        return OTA_ERR_SIM_IO;
    }
    if (st.st_size <= 0 || st.st_size % OTA_SECTOR_SIZE != 0 || st.st_size > 0x40000000) {
        close(fd);
        return ESP_ERR_INVALID_SIZE;
    }
    ota_host_flash_t *f = calloc(1, sizeof(*f));
    uint8_t *mem = f ? malloc((size_t)st.st_size) : NULL;
    if (mem == NULL) {
        free(f);
        close(fd);
        return ESP_ERR_NO_MEM;
    }
    f->fd = fd;
    f->mem = mem;
    f->size = (uint32_t)st.st_size;
    f->chip_id = chip_id;
    size_t got = 0;
    while (got < f->size) {
        ssize_t n = pread(fd, mem + got, f->size - got, (off_t)got);
        if (n <= 0) {
            if (sys_errno) *sys_errno = n < 0 ? errno : EIO;
            ota_host_close(f);
            return OTA_ERR_SIM_IO;
        }
        got += (size_t)n;
    }
    esp_err_t err = load_table(f);
    if (err != ESP_OK) {
        ota_host_close(f);
        return err;
    }
    ota_esp32_init(&f->esp);
    f->raw = (ota_hal_t){ .ctx = f, .find_partition = raw_find, .read = raw_read, .erase_sector = raw_erase,
                          .write = raw_write };
    f->wrap = (ota_hal_t){ .ctx = f,
                           .find_partition = wrap_find_partition,
                           .read = wrap_read,
                           .erase_sector = wrap_erase_sector,
                           .write = wrap_write,
                           .begin_session = wrap_begin_session,
                           .running_partition = wrap_running_partition,
                           .get_state = wrap_get_state,
                           .set_boot = wrap_set_boot,
                           .mark_valid = wrap_mark_valid,
                           .mark_invalid_and_reboot = wrap_mark_invalid_and_reboot };
    *out = f;
    return ESP_OK;
}

void ota_host_close(ota_host_flash_t *f)
{
    if (f == NULL) return;
    if (g_dev == f) g_dev = NULL;
    if (f->fd >= 0) close(f->fd);
    free(f->mem);
    free(f->trace);
    free(f);
}

const ota_hal_t *ota_host_hal(ota_host_flash_t *f)
{
    return &f->wrap;
}

esp_err_t ota_host_boot(ota_host_flash_t *f, ota_boot_result_t *out)
{
    g_dev = f;
    esp_err_t err = reboot(f);
    if (err == ESP_OK && out != NULL) *out = f->boot;
    return err;
}

const ota_boot_result_t *ota_host_last_boot(const ota_host_flash_t *f)
{
    return f->booted ? &f->boot : NULL;
}

void ota_host_arm_power_cut(ota_host_flash_t *f, uint64_t budget, uint32_t seed)
{
    (void)seed; /* the fakes cut deterministically: half of the interrupted operation happens */
    f->armed = true;
    f->budget = budget;
    f->cut_done = false;
    if (budget == 0) f->lost = true;
}

void ota_host_disarm_power_cut(ota_host_flash_t *f)
{
    f->armed = false;
}

bool ota_host_power_lost(const ota_host_flash_t *f)
{
    return f->lost;
}

uint64_t ota_host_op_count(const ota_host_flash_t *f)
{
    return f->ops;
}

uint32_t ota_host_flash_size(const ota_host_flash_t *f)
{
    return f->size;
}

uint16_t ota_host_chip_id(const ota_host_flash_t *f)
{
    return f->chip_id;
}

void ota_host_trace(ota_host_flash_t *f, bool on)
{
    f->tracing = on;
    if (on) f->trace_len = 0;
}

const ota_host_op_t *ota_host_trace_ops(const ota_host_flash_t *f, size_t *count)
{
    *count = f->trace_len;
    return f->trace;
}

bool ota_host_cut_op(const ota_host_flash_t *f, ota_host_op_t *out)
{
    if (!f->cut_done) return false;
    *out = f->cut;
    return true;
}

size_t ota_host_partitions(const ota_host_flash_t *f, ota_partition_t *out, size_t max)
{
    for (size_t i = 0; i < f->part_count && i < max; i++) out[i] = f->oparts[i];
    return f->part_count;
}
