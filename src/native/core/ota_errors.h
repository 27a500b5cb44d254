/*
 * ota_errors.h — the error numbers of the OTA C core, made from the one table ota_errors.def: ESP-IDF's
 * (on the ESP32 ESP-IDF's own esp_err.h / esp_ota_ops.h define them and the build checks they equal the
 * table's; elsewhere the same numbers are defined here), the image validator's (0x7100..) and the host
 * simulator's (0x7200..). Every number is stable: docs/error-codes.md and src/native/ota-errors.ts (both
 * generated from the same table) map them to the OTA_* codes. Also the name lookup and the one message
 * format both bindings throw with.
 */
#ifndef OTA_ERRORS_H
#define OTA_ERRORS_H

#include <stddef.h>
#include <stdint.h>

#if defined(ESP_PLATFORM)
#include "esp_err.h"
#include "esp_ota_ops.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if !defined(ESP_PLATFORM)
typedef int esp_err_t;
#define ESP_OK 0
#endif

/* The ranges of this module's own numbers (ota_errors.def): 0x7101.. the image validator (ota_image_feed,
 * ota_image_finish and everything that runs the parser), 0x7201.. the host flash and simulated bootloader
 * (never returned on the ESP32). Code tells "the image is bad" from "the flash failed" by these. */
#define OTA_ERR_IMAGE_BASE 0x7100
#define OTA_ERR_SIM_BASE 0x7200

#define OTA_CODE(code, doc)
#define OTA_CODE_RANGE(first, last, code)
#define OTA_ESP_NUM(name, number, code, meaning)
#if defined(ESP_PLATFORM)
/* ESP-IDF defines the OTA_ESP_ERR names; the table must agree with it. */
#define OTA_CORE_ERR(name, number, code, meaning)
#define OTA_ESP_ERR(name, number, code, meaning) \
    _Static_assert((name) == (number), "ota_errors.def: " #name " differs from the ESP-IDF value");
#include "ota_errors.def"
#undef OTA_CORE_ERR
#undef OTA_ESP_ERR
#define OTA_ESP_ERR(name, number, code, meaning)
#else
#define OTA_ESP_ERR(name, number, code, meaning) name = (number),
#endif
#define OTA_CORE_ERR(name, number, code, meaning) name = (number),
enum ota_err_number {
#include "ota_errors.def"
};
#undef OTA_CODE
#undef OTA_CODE_RANGE
#undef OTA_ESP_NUM
#undef OTA_CORE_ERR
#undef OTA_ESP_ERR

/* The C name of a number in ota_errors.def ("OTA_ERR_IMAGE_MAGIC"); "esp_err_t" for any other. Never NULL. */
const char *ota_err_name(esp_err_t err);

/* What a number in ota_errors.def means ("XOR checksum mismatch"); "" for any other. Never NULL. */
const char *ota_err_meaning(esp_err_t err);

/* The message both bindings throw for a platform failure: "<verb>: <NAME> (0x<HEX>)", e.g.
 * "write: OTA_ERR_IMAGE_MAGIC (0x7101)" (a number outside the table: "write: esp_err_t (0x1234)").
 * Writes at most `size` bytes, always NUL-terminated when size > 0; returns snprintf's count. */
int ota_err_format(char *out, size_t size, const char *verb, esp_err_t err);

#ifdef __cplusplus
}
#endif

#endif /* OTA_ERRORS_H */
