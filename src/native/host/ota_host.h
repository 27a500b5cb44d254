/*
 * ota_host.h — the host hardware layer of the OTA core: a flash chip backed by a file, with the
 * partition table read from offset 0x8000, ESP-IDF's boot control done by the core's otadata functions,
 * a simulated bootloader, and power-cut fault injection.
 *
 * Flash model (docs/formats.md, "Flash behaviour"): 4 KiB erase sectors that read 0xFF
 * after erase; programming ANDs data into what is there (bits only go 1 -> 0). The file is mapped
 * MAP_SHARED, so every operation is in the file as soon as it returns; "rebooting" = closing and reopening
 * the file, then ota_host_boot(). The process does not keep what it touched: it holds one 256 KiB window of
 * the mapping at a time and releases the previous one (MADV_DONTNEED; the data stays in the file's page
 * cache) before touching another, so its resident memory does not grow with the image.
 *
 * Power cuts: ota_host_arm_power_cut(budget, seed) lets `budget` more byte-level operations happen (an
 * erase counts 4096, a program counts its length; reads count nothing). The operation that exhausts the
 * budget is cut (seeded, reproducible): an erase raises each bit that is still 0 to 1 with a probability
 * that grows with its progress (a mix of old, erased and in-between bytes; no bit goes 1 -> 0); a program,
 * done as 256-byte page programs, completes the pages before the one in progress, leaves the pages after it
 * untouched, and leaves ANY subset of the bits the page in progress was clearing, anywhere in that page (not
 * a prefix of bytes: a CRC at the end of a record is no commit marker). It returns OTA_ERR_SIM_POWER_LOST,
 * and so does every later operation (reads included) until the file is reopened.
 * An operation that ends exactly on the budget completes, then reports the power loss.
 *
 * Not here: flash encryption, wear, timing. Not thread-safe: one owner at a time.
 */
#ifndef OTA_HOST_H
#define OTA_HOST_H

#include "../core/ota_hal.h"
#include "ota_boot_sim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ota_host_flash ota_host_flash_t;

/*
 * Opens (never creates) a flash file: its size must be a non-zero multiple of 4096 and hold a partition
 * table at 0x8000 (entries magic 0x50AA, optional MD5 entry checked when present). `chip_id` is the chip
 * the simulated bootloader and set_boot verify images against. Nothing runs until ota_host_boot().
 * Ownership: *out belongs to the caller; free it with ota_host_close.
 * Errors: ESP_ERR_INVALID_ARG (NULL), OTA_ERR_SIM_IO (open/fstat/mmap failed; *sys_errno, when not NULL,
 * receives errno), ESP_ERR_INVALID_SIZE (file size), OTA_ERR_SIM_PARTITION_TABLE, ESP_ERR_NO_MEM.
 */
esp_err_t ota_host_open(const char *path, uint16_t chip_id, ota_host_flash_t **out, int *sys_errno);

/* Unmaps and closes. NULL is allowed. Never fails (the mapping is MAP_SHARED: data is already in the
 * file's pages). */
void ota_host_close(ota_host_flash_t *f);

/* The hal over this flash (valid until ota_host_close). Boot-control members:
 *   begin_session: esp_ota_begin's otadata step, ota_otadata_invalidate_inactive (the inactive entry erased
 *             unless it names the running slot; nothing to erase is ESP_OK, as esp_ota_begin ignores it);
 *             ESP_ERR_INVALID_ARG for a partition that is not an OTA slot.
 *   get_state: ESP_ERR_NOT_SUPPORTED for non-OTA partitions, else ota_otadata_get_state.
 *   set_boot: OTA slot -> verifies the image (ESP_ERR_OTA_VALIDATE_FAILED) then ota_otadata_set_boot;
 *             factory -> erases otadata (as esp_ota_set_boot_partition does); other -> ESP_ERR_INVALID_ARG.
 *   mark_valid: ESP_ERR_NOT_FOUND when not booted; ESP_OK no-op for factory or nothing pending.
 *   mark_invalid_and_reboot: ESP_ERR_OTA_ROLLBACK_FAILED when running factory/nothing or when no other app
 *             verifies; else writes INVALID and runs the simulated bootloader (the "reboot") before it
 *             returns ESP_OK; ota_host_last_boot() then describes the new boot. */
const ota_hal_t *ota_host_hal(ota_host_flash_t *f);

/* Runs the simulated bootloader (ota_bootloader_run) and makes its choice the running partition.
 * Errors: those of ota_bootloader_run; on error nothing runs (running_partition -> ESP_ERR_NOT_FOUND). */
esp_err_t ota_host_boot(ota_host_flash_t *f, ota_boot_result_t *out);

/* The result of the last successful boot, NULL if none. */
const ota_boot_result_t *ota_host_last_boot(const ota_host_flash_t *f);

void ota_host_arm_power_cut(ota_host_flash_t *f, uint64_t budget, uint32_t seed);
void ota_host_disarm_power_cut(ota_host_flash_t *f);
bool ota_host_power_lost(const ota_host_flash_t *f);
/* Byte-level operations (erase 4096 each, program = length) since open. */
uint64_t ota_host_op_count(const ota_host_flash_t *f);
uint32_t ota_host_flash_size(const ota_host_flash_t *f);
uint16_t ota_host_chip_id(const ota_host_flash_t *f);
/* One byte-level flash operation, for tests that place power cuts at operation boundaries. */
typedef struct ota_host_op {
    uint64_t start;   /* ota_host_op_count() when it began */
    uint32_t address; /* absolute flash address */
    uint32_t len;     /* bytes (4096 for an erase) */
    char kind;        /* 'E' erase, 'P' program */
} ota_host_op_t;
/* Starts (clearing) or stops recording operations. Recording allocates; on allocation failure it stops
 * silently and ota_host_trace_ops returns what it has (tests compare counts, so a short trace shows). */
void ota_host_trace(ota_host_flash_t *f, bool on);
const ota_host_op_t *ota_host_trace_ops(const ota_host_flash_t *f, size_t *count);
/* The operation the power cut interrupted (false when no cut happened). */
bool ota_host_cut_op(const ota_host_flash_t *f, ota_host_op_t *out);
/* Copies up to max partition entries in table order; returns the number in the table. */
size_t ota_host_partitions(const ota_host_flash_t *f, ota_partition_t *out, size_t max);

#ifdef __cplusplus
}
#endif

#endif /* OTA_HOST_H */
