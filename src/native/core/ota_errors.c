/*
 * ota_errors.c — the name, meaning and message of an error number, from the one table ota_errors.def.
 * Shared by both bindings (napi/ota_napi.c, xs/ota_xs.c) so they throw the same message. Every case is a
 * number, so a number listed twice in the table does not compile.
 */
#include <stdio.h>

#include "ota_errors.h"

#define OTA_CODE(code, doc)
#define OTA_CODE_RANGE(first, last, code)

const char *ota_err_name(esp_err_t err)
{
#define OTA_ENTRY(name, number, code, meaning) case (number): return #name;
#define OTA_ESP_ERR OTA_ENTRY
#define OTA_ESP_NUM OTA_ENTRY
#define OTA_CORE_ERR OTA_ENTRY
    switch (err) {
#include "ota_errors.def"
    default: return "esp_err_t";
    }
#undef OTA_ESP_ERR
#undef OTA_ESP_NUM
#undef OTA_CORE_ERR
#undef OTA_ENTRY
}

const char *ota_err_meaning(esp_err_t err)
{
#define OTA_ENTRY(name, number, code, meaning) case (number): return meaning;
#define OTA_ESP_ERR OTA_ENTRY
#define OTA_ESP_NUM OTA_ENTRY
#define OTA_CORE_ERR OTA_ENTRY
    switch (err) {
#include "ota_errors.def"
    default: return "";
    }
#undef OTA_ESP_ERR
#undef OTA_ESP_NUM
#undef OTA_CORE_ERR
#undef OTA_ENTRY
}

int ota_err_format(char *out, size_t size, const char *verb, esp_err_t err)
{
    return snprintf(out, size, "%s: %s (0x%X)", verb, ota_err_name(err), (unsigned)err);
}
