/*
 * fake_rules.c — checks that the ESP-IDF fakes (esp32_fakes.c) keep the documented rules the ESP32 layer
 * relies on, by calling them directly: erase granularity, program semantics and write ranges
 * (esp_partition.h), esp_ota_begin/write/end/abort's argument and state rules and the set boot / mark valid /
 * mark invalid state rules (esp_ota_ops.h). Built and run by test/native/esp32-fakes.test.ts with a flash
 * file holding a factory app (1.0.0) and an image in ota_0 (1.1.0), partitions factory, ota_0, ota_1 and
 * otadata. Prints one line per check and last `N passed, N failed`; exit 1 if any failed.
 */
#include <stdio.h>
#include <string.h>

#include "esp_ota_ops.h"
#include "esp_partition.h"

#include "../../../src/native/host/ota_host.h"

static int passed, failed;

#define CHECK(name, cond, ...)                   \
    do {                                         \
        if (cond) {                              \
            passed++;                            \
            printf("ok - %s\n", name);           \
        } else {                                 \
            failed++;                            \
            printf("not ok - %s: ", name);       \
            printf(__VA_ARGS__);                 \
            printf("\n");                        \
        }                                        \
    } while (0)

static const esp_partition_t *app(esp_partition_subtype_t subtype)
{
    return esp_partition_find_first(ESP_PARTITION_TYPE_APP, subtype, NULL);
}

static uint8_t byte_at(const esp_partition_t *p, size_t off)
{
    uint8_t b = 0;
    esp_partition_read(p, off, &b, 1);
    return b;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fake_rules FLASH_FILE\n");
        return 2;
    }
    ota_host_flash_t *f = NULL;
    int sys_errno = 0;
    esp_err_t err = ota_host_open(argv[1], 0, &f, &sys_errno);
    if (err != ESP_OK) {
        fprintf(stderr, "open: 0x%x errno %d\n", (unsigned)err, sys_errno);
        return 2;
    }
    ota_boot_result_t boot;
    err = ota_host_boot(f, &boot); /* factory: otadata is blank */
    CHECK("boot: factory runs", err == ESP_OK && esp_ota_get_running_partition() == app(ESP_PARTITION_SUBTYPE_APP_FACTORY),
          "0x%x", (unsigned)err);

    const esp_partition_t *ota0 = app(ESP_PARTITION_SUBTYPE_APP_OTA_0);
    const esp_partition_t *ota1 = app(ESP_PARTITION_SUBTYPE_APP_OTA_1);
    const esp_partition_t *factory = app(ESP_PARTITION_SUBTYPE_APP_FACTORY);

    /* esp_partition_erase_range: offset and size multiples of erase_size, inside the partition. */
    CHECK("erase: misaligned offset is ESP_ERR_INVALID_ARG", esp_partition_erase_range(ota1, 100, 4096) == ESP_ERR_INVALID_ARG, "-");
    CHECK("erase: size not a multiple of 4096 is ESP_ERR_INVALID_SIZE",
          esp_partition_erase_range(ota1, 0, 100) == ESP_ERR_INVALID_SIZE, "-");
    CHECK("erase: past the partition is ESP_ERR_INVALID_SIZE",
          esp_partition_erase_range(ota1, 0, ota1->size + 4096) == ESP_ERR_INVALID_SIZE, "-");
    CHECK("erase: a sector reads 0xFF", esp_partition_erase_range(ota1, 4096, 4096) == ESP_OK &&
          byte_at(ota1, 4096) == 0xFF && byte_at(ota1, 8191) == 0xFF, "-");

    /* esp_partition_write: programs only clear bits; no alignment on an unencrypted partition. */
    uint8_t a = 0x0F, b = 0xF3;
    CHECK("write: one byte at an odd offset", esp_partition_write(ota1, 4097, &a, 1) == ESP_OK && byte_at(ota1, 4097) == 0x0F, "-");
    CHECK("write: over programmed bits it ANDs (no erase)", esp_partition_write(ota1, 4097, &b, 1) == ESP_OK &&
          byte_at(ota1, 4097) == 0x03, "got 0x%02x", byte_at(ota1, 4097));
    CHECK("write: past the end is ESP_ERR_INVALID_SIZE", esp_partition_write(ota1, ota1->size - 1, "ab", 2) == ESP_ERR_INVALID_SIZE, "-");
    CHECK("write: offset past the end is ESP_ERR_INVALID_ARG", esp_partition_write(ota1, ota1->size + 1, "a", 1) == ESP_ERR_INVALID_ARG, "-");
    CHECK("read: past the end is ESP_ERR_INVALID_SIZE", esp_partition_read(ota1, ota1->size - 1, &a, 2) == ESP_ERR_INVALID_SIZE, "-");

    /* esp_ota_begin. */
    esp_ota_handle_t h = 0;
    CHECK("begin: NULL handle is ESP_ERR_INVALID_ARG", esp_ota_begin(ota1, OTA_WITH_SEQUENTIAL_WRITES, NULL) == ESP_ERR_INVALID_ARG, "-");
    CHECK("begin: the factory app is not an OTA slot (ESP_ERR_INVALID_ARG)",
          esp_ota_begin(factory, OTA_WITH_SEQUENTIAL_WRITES, &h) == ESP_ERR_INVALID_ARG, "-");
    CHECK("begin: sequential writes erase nothing up front",
          esp_ota_begin(ota1, OTA_WITH_SEQUENTIAL_WRITES, &h) == ESP_OK && byte_at(ota1, 4097) == 0x03, "-");
    CHECK("write: a first byte other than 0xE9 is ESP_ERR_OTA_VALIDATE_FAILED", esp_ota_write(h, "x", 1) == ESP_ERR_OTA_VALIDATE_FAILED, "-");
    CHECK("write: size 0 is ESP_OK", esp_ota_write(h, "", 0) == ESP_OK, "-");
    CHECK("write: an unknown handle is ESP_ERR_INVALID_ARG", esp_ota_write(h + 100, "\xE9", 1) == ESP_ERR_INVALID_ARG, "-");
    CHECK("end: nothing written is ESP_ERR_INVALID_ARG", esp_ota_end(h) == ESP_ERR_INVALID_ARG, "-");
    CHECK("end: the handle is freed whatever the result", esp_ota_end(h) == ESP_ERR_NOT_FOUND, "-");
    CHECK("abort: an unknown handle is ESP_ERR_NOT_FOUND", esp_ota_abort(h) == ESP_ERR_NOT_FOUND, "-");
    CHECK("begin: a known size erases that size rounded up to sectors, no more",
          esp_ota_begin(ota1, 5000, &h) == ESP_OK && byte_at(ota1, 4097) == 0xFF && esp_ota_abort(h) == ESP_OK, "-");
    uint8_t e9 = 0xE9;
    CHECK("write: sequential mode erases the sector it reaches", esp_ota_begin(ota1, OTA_WITH_SEQUENTIAL_WRITES, &h) == ESP_OK &&
          esp_partition_write(ota1, 0, &a, 1) == ESP_OK && esp_ota_write(h, &e9, 1) == ESP_OK && byte_at(ota1, 0) == 0xE9, "-");
    CHECK("end: an image that does not verify is ESP_ERR_OTA_VALIDATE_FAILED", esp_ota_end(h) == ESP_ERR_OTA_VALIDATE_FAILED, "-");

    /* esp_ota_set_boot_partition and the state rules. */
    CHECK("set boot: an image that does not verify is ESP_ERR_OTA_VALIDATE_FAILED",
          esp_ota_set_boot_partition(ota1) == ESP_ERR_OTA_VALIDATE_FAILED, "-");
    esp_ota_img_states_t st = ESP_OTA_IMG_UNDEFINED;
    CHECK("state: of the factory app is ESP_ERR_NOT_SUPPORTED", esp_ota_get_state_partition(factory, &st) == ESP_ERR_NOT_SUPPORTED, "-");
    CHECK("state: a slot without an entry is ESP_ERR_NOT_FOUND", esp_ota_get_state_partition(ota0, &st) == ESP_ERR_NOT_FOUND, "-");
    CHECK("mark valid: no active entry (factory runs) is ESP_FAIL", esp_ota_mark_app_valid_cancel_rollback() == ESP_FAIL, "-");
    CHECK("next update partition: factory runs -> ota_0", esp_ota_get_next_update_partition(NULL) == ota0, "-");
    CHECK("set boot: ota_0 (a valid image) writes its entry NEW",
          esp_ota_set_boot_partition(ota0) == ESP_OK && esp_ota_get_state_partition(ota0, &st) == ESP_OK && st == ESP_OTA_IMG_NEW,
          "state %u", (unsigned)st);

    err = ota_host_boot(f, &boot);
    CHECK("boot: ota_0 runs PENDING_VERIFY", err == ESP_OK && esp_ota_get_running_partition() == ota0 &&
          esp_ota_get_state_partition(ota0, &st) == ESP_OK && st == ESP_OTA_IMG_PENDING_VERIFY, "0x%x", (unsigned)err);
    CHECK("next update partition: ota_0 runs -> ota_1", esp_ota_get_next_update_partition(NULL) == ota1, "-");
    CHECK("begin: the running slot is ESP_ERR_OTA_PARTITION_CONFLICT",
          esp_ota_begin(ota0, OTA_WITH_SEQUENTIAL_WRITES, &h) == ESP_ERR_OTA_PARTITION_CONFLICT, "-");
    CHECK("begin: while the running app is PENDING_VERIFY is ESP_ERR_OTA_ROLLBACK_INVALID_STATE",
          esp_ota_begin(ota1, OTA_WITH_SEQUENTIAL_WRITES, &h) == ESP_ERR_OTA_ROLLBACK_INVALID_STATE, "-");
    CHECK("resume: no PENDING_VERIFY check (esp_ota_resume)",
          esp_ota_resume(ota1, OTA_WITH_SEQUENTIAL_WRITES, 4096, &h) == ESP_OK && esp_ota_abort(h) == ESP_OK, "-");
    CHECK("resume: an offset past the partition is ESP_ERR_INVALID_ARG",
          esp_ota_resume(ota1, OTA_WITH_SEQUENTIAL_WRITES, ota1->size + 1, &h) == ESP_ERR_INVALID_ARG, "-");
    CHECK("mark valid: PENDING_VERIFY -> VALID", esp_ota_mark_app_valid_cancel_rollback() == ESP_OK &&
          esp_ota_get_state_partition(ota0, &st) == ESP_OK && st == ESP_OTA_IMG_VALID, "-");
    uint64_t before = ota_host_op_count(f);
    CHECK("mark valid: already VALID writes nothing", esp_ota_mark_app_valid_cancel_rollback() == ESP_OK &&
          ota_host_op_count(f) == before, "-");
    CHECK("mark invalid: rollback to factory (the other entry is blank, factory verifies), then the restart",
          esp_ota_mark_app_invalid_rollback_and_reboot() == ESP_OK && esp_ota_get_running_partition() == factory &&
          esp_ota_get_state_partition(ota0, &st) == ESP_OK && st == ESP_OTA_IMG_INVALID, "state %u", (unsigned)st);

    ota_host_close(f);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
