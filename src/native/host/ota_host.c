/*
 * ota_host.c — file-backed flash, partition table, boot control and power-cut injection for the host.
 * See ota_host.h for the model and every function's contract. Not here: any image or otadata logic of its
 * own (that is the core's); this file only moves bytes and keeps the "running partition".
 */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/md5.h>
#include <mbedtls/version.h>

#include "ota_host.h"
#include "../core/ota_image.h"
#include "../core/ota_layout.h"
#include "../core/ota_otadata.h"

#if MBEDTLS_VERSION_MAJOR < 3
#define OTA_MD5(in, len, out) mbedtls_md5_ret((in), (len), (out))
#else
#define OTA_MD5(in, len, out) mbedtls_md5((in), (len), (out))
#endif

#define MAX_PARTITIONS (OTA_PARTITION_TABLE_MAX_LEN / 32u)

/* The process keeps one window of the mapping at a time: before an operation touches bytes outside the
 * current 256 KiB-aligned window, the pages of that window are released from the process with
 * MADV_DONTNEED. On a MAP_SHARED file mapping that drops only the process's page-table entries: the data
 * stays in the file's page cache (dirty pages included) and the next access maps it again. Without it
 * every page an update writes and verifies stays resident, and the process grows with the image (8 MB
 * image: +8 MB). Releasing before the access, not after, matters when the page cache holds large folios
 * (a 2 MiB folio is mapped whole on the first touch): then at most one folio is mapped at a time. */
#define WINDOW_BYTES (256u * 1024u)

/* SPI NOR page program size: a program command never crosses a 256-byte page boundary. */
#define OTA_PAGE_SIZE 256u

struct ota_host_flash {
    int fd;
    uint8_t *mem;
    uint32_t size;
    uint16_t chip_id;
    ota_hal_t hal;
    ota_partition_t parts[MAX_PARTITIONS];
    size_t part_count;
    bool booted;
    ota_boot_result_t boot;
    /* power-cut injection */
    bool armed;
    bool lost;
    uint64_t budget;
    uint32_t rng;
    uint64_t ops;
    bool cut_done;
    ota_host_op_t cut;
    /* the part of the mapping the process may hold now (see WINDOW_BYTES) */
    uint64_t win_lo, win_hi;
    /* operation trace (tests) */
    bool tracing;
    ota_host_op_t *trace;
    size_t trace_len, trace_cap;
};

static void record(ota_host_flash_t *f, char kind, uint32_t address, size_t len)
{
    ota_host_op_t op = { .start = f->ops, .address = address, .len = (uint32_t)len, .kind = kind };
    if (f->armed && !f->lost && f->budget <= len) {
        f->cut = op;
        f->cut_done = true;
    }
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
    f->trace[f->trace_len++] = op;
}

/* Releases the current window's pages (see WINDOW_BYTES), then makes the window the one(s) holding
 * [address, address + len). Call before touching those bytes. */
static void will_touch(ota_host_flash_t *f, uint32_t address, size_t len)
{
    if (len == 0) return;
    uint64_t lo = address - address % WINDOW_BYTES;
    uint64_t hi = (uint64_t)address + len;
    hi += (WINDOW_BYTES - hi % WINDOW_BYTES) % WINDOW_BYTES;
    if (hi > f->size) hi = f->size;
    if (f->win_hi > f->win_lo && lo >= f->win_lo && hi <= f->win_hi) return;
    if (f->win_hi > f->win_lo) {
        /* Only a memory hint: if it fails the pages stay resident; the data is unaffected either way. */
        (void)madvise(f->mem + f->win_lo, (size_t)(f->win_hi - f->win_lo), MADV_DONTNEED);
    }
    f->win_lo = lo;
    f->win_hi = hi;
}

static uint32_t next_rand(ota_host_flash_t *f)
{
    /* xorshift32: reproducible from the seed, good enough to scatter bits */
    uint32_t x = f->rng ? f->rng : 0x9E3779B9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    f->rng = x;
    return x;
}

/* A byte whose bits are each 1 with probability p / 65536. */
static uint8_t random_bits(ota_host_flash_t *f, uint32_t p)
{
    uint8_t b = 0;
    for (int k = 0; k < 8; k++) {
        if ((next_rand(f) & 0xFFFFu) < p) b = (uint8_t)(b | (1u << k));
    }
    return b;
}

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

/* esp_flash_partitions.h: 32-byte esp_partition_info_t entries, then the MD5 entry, then 0xFF. */
static esp_err_t load_table(ota_host_flash_t *f)
{
    if (f->size < OTA_PARTITION_TABLE_OFFSET + OTA_PARTITION_TABLE_MAX_LEN) return OTA_ERR_SIM_PARTITION_TABLE;
    const uint8_t *t = f->mem + OTA_PARTITION_TABLE_OFFSET;
    size_t n = 0;
    for (uint32_t off = 0; off + 32 <= OTA_PARTITION_TABLE_MAX_LEN; off += 32) {
        const uint8_t *e = t + off;
        if (e[0] == 0xAA && e[1] == 0x50) {
            ota_partition_t *p = &f->parts[n++];
            memset(p, 0, sizeof(*p));
            p->type = e[2];
            p->subtype = e[3];
            p->address = le32(e + 4);
            p->size = le32(e + 8);
            memcpy(p->label, e + 12, 16);
            p->label[16] = '\0';
            p->handle = NULL;
            if (p->address % OTA_SECTOR_SIZE != 0 || p->size == 0 || (uint64_t)p->address + p->size > f->size) {
                return OTA_ERR_SIM_PARTITION_TABLE;
            }
            continue;
        }
        if (e[0] == 0xEB && e[1] == 0xEB) {
            uint8_t md5[16];
            if (OTA_MD5(t, off, md5) != 0 || memcmp(md5, e + 16, 16) != 0) return OTA_ERR_SIM_PARTITION_TABLE;
            break;
        }
        if (e[0] == 0xFF && e[1] == 0xFF) break;
        return OTA_ERR_SIM_PARTITION_TABLE;
    }
    if (n == 0) return OTA_ERR_SIM_PARTITION_TABLE;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            const ota_partition_t *a = &f->parts[i], *b = &f->parts[j];
            if (a->address < b->address + b->size && b->address < a->address + a->size) return OTA_ERR_SIM_PARTITION_TABLE;
        }
    }
    f->part_count = n;
    return ESP_OK;
}

/* ---- flash operations ---------------------------------------------------------------------------- */

static esp_err_t range_ok(ota_host_flash_t *f, const ota_partition_t *part, uint32_t offset, size_t len)
{
    if (part == NULL) return ESP_ERR_INVALID_ARG;
    if ((uint64_t)offset + len > part->size) return ESP_ERR_INVALID_ARG;
    if ((uint64_t)part->address + part->size > f->size) return ESP_ERR_INVALID_ARG;
    return ESP_OK;
}

/* How many of `n` byte operations may happen before the cut; sets `lost` when the budget runs out. */
static size_t spend(ota_host_flash_t *f, size_t n)
{
    f->ops += n;
    if (!f->armed) return n;
    if (f->budget > n) {
        f->budget -= n;
        return n;
    }
    size_t done = (size_t)f->budget;
    f->budget = 0;
    f->lost = true;
    return done;
}

static esp_err_t h_read(void *ctx, const ota_partition_t *part, uint32_t offset, void *dst, size_t len)
{
    ota_host_flash_t *f = ctx;
    if (f->lost) return OTA_ERR_SIM_POWER_LOST;
    esp_err_t err = range_ok(f, part, offset, len);
    if (err != ESP_OK) return err;
    will_touch(f, part->address + offset, len);
    if (len > 0) memcpy(dst, f->mem + part->address + offset, len);
    return ESP_OK;
}

static esp_err_t h_erase(void *ctx, const ota_partition_t *part, uint32_t offset)
{
    ota_host_flash_t *f = ctx;
    if (f->lost) return OTA_ERR_SIM_POWER_LOST;
    if (offset % OTA_SECTOR_SIZE != 0) return ESP_ERR_INVALID_ARG;
    esp_err_t err = range_ok(f, part, offset, OTA_SECTOR_SIZE);
    if (err != ESP_OK) return err;
    uint8_t *s = f->mem + part->address + offset;
    record(f, 'E', part->address + offset, OTA_SECTOR_SIZE);
    will_touch(f, part->address + offset, OTA_SECTOR_SIZE);
    size_t done = spend(f, OTA_SECTOR_SIZE);
    if (done == OTA_SECTOR_SIZE && !f->lost) {
        memset(s, 0xFF, OTA_SECTOR_SIZE);
        return ESP_OK;
    }
    if (done == OTA_SECTOR_SIZE) {
        memset(s, 0xFF, OTA_SECTOR_SIZE);
        return OTA_ERR_SIM_POWER_LOST;
    }
    /* Interrupted erase: every bit still 0 has been raised to 1 with a probability that grows with how far
     * the erase got (done / 4096), each bit on its own: the sector reads as a mix of old bytes, erased bytes
     * and bytes in between, never depending on address order, and no bit goes 1 -> 0. A cut a few bytes in
     * leaves most of an entry as it was (its seq and CRC, say) while some other bits changed. */
    uint32_t p = (uint32_t)(((uint64_t)done << 16) / OTA_SECTOR_SIZE); /* probability in 1/65536 */
    for (uint32_t i = 0; i < OTA_SECTOR_SIZE; i++) {
        if (s[i] == 0xFF) continue;
        s[i] = (uint8_t)(s[i] | random_bits(f, p));
    }
    return OTA_ERR_SIM_POWER_LOST;
}

static esp_err_t h_write(void *ctx, const ota_partition_t *part, uint32_t offset, const void *src, size_t len)
{
    ota_host_flash_t *f = ctx;
    if (f->lost) return OTA_ERR_SIM_POWER_LOST;
    esp_err_t err = range_ok(f, part, offset, len);
    if (err != ESP_OK) return err;
    if (len > 0 && src == NULL) return ESP_ERR_INVALID_ARG;
    uint8_t *d = f->mem + part->address + offset;
    const uint8_t *s = src;
    record(f, 'P', part->address + offset, len);
    will_touch(f, part->address + offset, len);
    size_t done = spend(f, len);
    if (done == len) {
        for (size_t i = 0; i < len; i++) d[i] &= s[i];
        return f->lost ? OTA_ERR_SIM_POWER_LOST : ESP_OK;
    }
    /* Interrupted program. SPI NOR programs page by page (256-byte pages, page-aligned): the pages before
     * the one holding byte `done` are complete, the pages after it untouched, and the page in progress holds
     * ANY subset of the bits it was clearing (each bit cleared with one probability drawn per cut), anywhere
     * in the page, not a prefix of its bytes. So the CRC at the end of an otadata entry is no commit marker:
     * a torn entry can keep a good seq and CRC with a half-written state word. */
    uint32_t abs = part->address + offset;
    size_t in_page = (size_t)((abs + done) % OTA_PAGE_SIZE); /* byte `done`'s position in its page */
    size_t page_start = done >= in_page ? done - in_page : 0;
    size_t page_end = done + (OTA_PAGE_SIZE - in_page);
    if (page_end > len) page_end = len;
    for (size_t i = 0; i < page_start; i++) d[i] &= s[i];
    uint32_t p = next_rand(f) >> 16; /* this cut's probability that a bit being cleared was cleared, /65536 */
    for (size_t i = page_start; i < page_end; i++) {
        uint8_t clearing = (uint8_t)(d[i] & ~s[i]);
        if (clearing != 0) d[i] = (uint8_t)(d[i] & ~(clearing & random_bits(f, p)));
    }
    return OTA_ERR_SIM_POWER_LOST;
}

static esp_err_t h_find(void *ctx, uint8_t type, uint8_t subtype, ota_partition_t *out)
{
    ota_host_flash_t *f = ctx;
    for (size_t i = 0; i < f->part_count; i++) {
        const ota_partition_t *p = &f->parts[i];
        if (p->type == type && (subtype == OTA_PART_SUBTYPE_ANY || p->subtype == subtype)) {
            if (out) *out = *p;
            return ESP_OK;
        }
    }
    return ESP_ERR_NOT_FOUND;
}

/* ---- boot control -------------------------------------------------------------------------------- */

static esp_err_t h_running(void *ctx, ota_partition_t *out)
{
    ota_host_flash_t *f = ctx;
    if (!f->booted) return ESP_ERR_NOT_FOUND;
    *out = f->boot.partition;
    return ESP_OK;
}

static esp_err_t h_get_state(void *ctx, const ota_partition_t *part, uint32_t *state)
{
    ota_host_flash_t *f = ctx;
    if (f->lost) return OTA_ERR_SIM_POWER_LOST;
    ota_layout_t l;
    ota_layout_load(&f->hal, &l);
    int slot = ota_layout_slot_index(&l, part);
    if (slot < 0) return ESP_ERR_NOT_SUPPORTED;
    return ota_otadata_get_state(&f->hal, &l, (uint32_t)slot, state);
}

static esp_err_t verify(ota_host_flash_t *f, const ota_partition_t *part)
{
    ota_image_config_t cfg = { .chip_id = f->chip_id, .max_size = 0, .image_size = 0, .require_hash = false,
                               .min_secure_version = 0 };
    return ota_image_verify_partition(&f->hal, part, &cfg, NULL, NULL);
}

static bool flash_error(esp_err_t err)
{
    return !((err > OTA_ERR_IMAGE_BASE && err < OTA_ERR_SIM_BASE) || err == ESP_ERR_OTA_SMALL_SEC_VER);
}

static esp_err_t h_begin_session(void *ctx, const ota_partition_t *part)
{
    ota_host_flash_t *f = ctx;
    if (f->lost) return OTA_ERR_SIM_POWER_LOST;
    if (part == NULL) return ESP_ERR_INVALID_ARG;
    ota_layout_t l;
    ota_layout_load(&f->hal, &l);
    if (ota_layout_slot_index(&l, part) < 0) return ESP_ERR_INVALID_ARG;
    /* esp_ota_begin (ESP-IDF >= 5.5, CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE, an OTA partition):
     * esp_ota_invalidate_inactive_ota_data_slot() -> erase_last_boot_app_partition(true), through this
     * layer's own erase (power cuts hit it). esp_ota_begin ignores its result: ESP_FAIL only means there was
     * nothing to erase. A flash error is returned: on the host that is a power cut, which every later
     * operation would report anyway. */
    esp_err_t err = ota_otadata_invalidate_inactive(&f->hal, &l, f->booted ? &f->boot.partition : NULL);
    return err == ESP_FAIL ? ESP_OK : err;
}

static esp_err_t h_set_boot(void *ctx, const ota_partition_t *part)
{
    ota_host_flash_t *f = ctx;
    if (f->lost) return OTA_ERR_SIM_POWER_LOST;
    if (part == NULL || part->type != OTA_PART_TYPE_APP) return ESP_ERR_INVALID_ARG;
    ota_layout_t l;
    ota_layout_load(&f->hal, &l);
    esp_err_t err = verify(f, part);
    if (err != ESP_OK) return flash_error(err) ? err : ESP_ERR_OTA_VALIDATE_FAILED;
    if (l.has_factory && l.factory.address == part->address) {
        if (!l.has_otadata) return ESP_ERR_NOT_FOUND;
        for (uint32_t off = 0; off < l.otadata.size; off += OTA_SECTOR_SIZE) {
            err = h_erase(f, &l.otadata, off);
            if (err != ESP_OK) return err;
        }
        return ESP_OK;
    }
    int slot = ota_layout_slot_index(&l, part);
    if (slot < 0) return ESP_ERR_INVALID_ARG;
    return ota_otadata_set_boot(&f->hal, &l, (uint32_t)slot);
}

/* The running slot's state as esp_ota_get_state_partition reads it now, into the boot result. */
static void refresh_boot_state(ota_host_flash_t *f, const ota_layout_t *l)
{
    uint32_t st;
    if (f->boot.slot >= 0 && ota_otadata_get_state(&f->hal, l, (uint32_t)f->boot.slot, &st) == ESP_OK) f->boot.state = st;
}

static esp_err_t h_mark_valid(void *ctx)
{
    ota_host_flash_t *f = ctx;
    if (f->lost) return OTA_ERR_SIM_POWER_LOST;
    if (!f->booted) return ESP_ERR_NOT_FOUND;
    ota_layout_t l;
    ota_layout_load(&f->hal, &l);
    /* esp_ota_mark_app_valid_cancel_rollback: the active entry, from any state but VALID; ESP_FAIL without one. */
    esp_err_t err = ota_otadata_mark_valid(&f->hal, &l);
    if (err == ESP_OK) refresh_boot_state(f, &l);
    return err;
}

static esp_err_t h_mark_invalid_and_reboot(void *ctx)
{
    ota_host_flash_t *f = ctx;
    if (f->lost) return OTA_ERR_SIM_POWER_LOST;
    if (!f->booted) return ESP_ERR_NOT_FOUND;
    ota_layout_t l;
    ota_layout_load(&f->hal, &l);
    /* esp_ota_mark_app_invalid_rollback_and_reboot: INVALID (if esp_ota_check_rollback_is_possible), then the
     * restart: the simulated bootloader runs before this returns. */
    esp_err_t err = ota_otadata_mark_invalid(&f->hal, &l, f->chip_id);
    if (err != ESP_OK) return err;
    ota_boot_result_t r;
    return ota_host_boot(f, &r);
}

/* ---- lifecycle ----------------------------------------------------------------------------------- */

esp_err_t ota_host_open(const char *path, uint16_t chip_id, ota_host_flash_t **out, int *sys_errno)
{
    if (sys_errno) *sys_errno = 0;
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
    if (st.st_size <= 0 || st.st_size % OTA_SECTOR_SIZE != 0 || st.st_size > 0x10000000) { /* <= 256 MiB */
        close(fd);
        return ESP_ERR_INVALID_SIZE;
    }
    void *mem = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mem == MAP_FAILED) {
        if (sys_errno) *sys_errno = errno;
        close(fd);
        return OTA_ERR_SIM_IO;
    }
    ota_host_flash_t *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        munmap(mem, (size_t)st.st_size);
        close(fd);
        return ESP_ERR_NO_MEM;
    }
    f->fd = fd;
    f->mem = mem;
    f->size = (uint32_t)st.st_size;
    f->chip_id = chip_id;
    f->hal = (ota_hal_t){
        .ctx = f,
        .find_partition = h_find,
        .read = h_read,
        .erase_sector = h_erase,
        .write = h_write,
        .begin_session = h_begin_session,
        .running_partition = h_running,
        .get_state = h_get_state,
        .set_boot = h_set_boot,
        .mark_valid = h_mark_valid,
        .mark_invalid_and_reboot = h_mark_invalid_and_reboot,
    };
    if (f->size >= OTA_PARTITION_TABLE_OFFSET + OTA_PARTITION_TABLE_MAX_LEN) {
        will_touch(f, OTA_PARTITION_TABLE_OFFSET, OTA_PARTITION_TABLE_MAX_LEN);
    }
    esp_err_t err = load_table(f);
    if (err != ESP_OK) {
        ota_host_close(f);
        return err;
    }
    *out = f;
    return ESP_OK;
}

void ota_host_close(ota_host_flash_t *f)
{
    if (f == NULL) return;
    munmap(f->mem, f->size);
    close(f->fd);
    free(f->trace);
    free(f);
}

const ota_hal_t *ota_host_hal(ota_host_flash_t *f)
{
    return &f->hal;
}

esp_err_t ota_host_boot(ota_host_flash_t *f, ota_boot_result_t *out)
{
    f->booted = false;
    esp_err_t err = ota_bootloader_run(&f->hal, f->chip_id, &f->boot);
    if (err != ESP_OK) return err;
    f->booted = true;
    if (out) *out = f->boot;
    return ESP_OK;
}

const ota_boot_result_t *ota_host_last_boot(const ota_host_flash_t *f)
{
    return f->booted ? &f->boot : NULL;
}

void ota_host_arm_power_cut(ota_host_flash_t *f, uint64_t budget, uint32_t seed)
{
    f->armed = true;
    f->budget = budget;
    /* murmur3's fmix32 first: xorshift32 from a small seed (1, 2, 7...) gives small numbers for a while,
     * which would make every cut with a small seed tear the same way. */
    uint32_t x = seed;
    x ^= x >> 16;
    x *= 0x85EBCA6Bu;
    x ^= x >> 13;
    x *= 0xC2B2AE35u;
    x ^= x >> 16;
    f->rng = x ? x : 1;
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

size_t ota_host_partitions(const ota_host_flash_t *f, ota_partition_t *out, size_t max)
{
    for (size_t i = 0; i < f->part_count && i < max; i++) out[i] = f->parts[i];
    return f->part_count;
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
    if (f->cut_done && out) *out = f->cut;
    return f->cut_done;
}
