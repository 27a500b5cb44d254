/*
 * ota_xs.c — the xsmc binding of the OTA slot module for Moddable/XS: thin C functions xs_ota_<verb> over
 * the C core (src/native/core/) and a hardware layer: ESP-IDF's (src/native/esp32/) on the ESP32, the
 * file-backed host flash (src/native/host/) in Moddable's desktop simulator. The JavaScript class is
 * ota-slot-xs.ts beside this file.
 *
 * Shape (after Moddable's modules/io/update, minus its "write failed" habit):
 *   - State lives in host DATA (malloc'd), not a host chunk: the writer holds pointers into the state itself
 *     (writer.hal -> the hal, hal.ctx -> the ESP32 layer), and XS may move chunks during a collection.
 *   - Every method starts with xs_ota_self(), which validates that `this` is a host object made with
 *     xs_ota_destructor and not closed.
 *   - Arguments are validated (TypeError / RangeError) before any side effect.
 *   - Device failures throw an Error whose `platformCode` is the raw esp_err_t (or the host simulator's
 *     number) and whose message names the verb; nothing is translated or lost here. src/native/ota-errors.ts
 *     maps the number to the stable OTA_* code.
 *   - close() is safe twice; the destructor frees whatever close() did not.
 * Not here: policy, retries, JSON, timers.
 *
 * Ownership: the host data is owned by the JS object; the destructor (GC) or close() frees it. Buffers
 * passed to write() are only read during the call (XS may relocate them afterwards).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xsmc.h"

#include "../core/ota_errors.h"
#include "../core/ota_image.h"
#include "../core/ota_running.h"
#include "../core/ota_sign.h"
#include "../core/ota_writer.h"
#if defined(ESP_PLATFORM)
#include "sdkconfig.h"
#include "../esp32/ota_esp32.h"
#else
#include "../host/ota_host.h"
#endif

typedef struct xs_ota {
    ota_writer_t writer;
    ota_sign_key_t sign_key; /* the trusted key of the current session (borrowed by the writer's config) */
    uint16_t chip_id;
#if defined(ESP_PLATFORM)
    ota_esp32_t esp;
#else
    ota_host_flash_t *flash;
#endif
} xs_ota_t;

void xs_ota_destructor(void *data);

static const ota_hal_t *hal_of(xs_ota_t *o)
{
#if defined(ESP_PLATFORM)
    return ota_esp32_hal(&o->esp);
#else
    return ota_host_hal(o->flash);
#endif
}

/* Drops any OTA session (core writer and, on the ESP32, ESP-IDF's handle). Never fails. */
static void drop_session(xs_ota_t *o)
{
    ota_writer_abort(&o->writer);
#if defined(ESP_PLATFORM)
    ota_esp32_abort_session(&o->esp);
#endif
}

static void release(xs_ota_t *o)
{
    drop_session(o);
#if !defined(ESP_PLATFORM)
    ota_host_close(o->flash);
    o->flash = NULL;
#endif
}

void xs_ota_destructor(void *data)
{
    if (data == NULL) return; /* closed already */
    release((xs_ota_t *)data);
    free(data);
}

/* Throws Error(`${verb}: NAME (0xNNNN)`) (ota_err_format, the message both bindings throw) with
 * .platformCode = err. */
static void throw_esp(xsMachine *the, const char *verb, esp_err_t err) XS_FUNCTION_NORETURN;
static void throw_esp(xsMachine *the, const char *verb, esp_err_t err)
{
    char message[96];
    ota_err_format(message, sizeof(message), verb, err);
    xsmcVars(2);
    xsVar(0) = xsNew1(xsGlobal, xsID("Error"), xsString(message));
    xsmcSetInteger(xsVar(1), err);
    xsmcSet(xsVar(0), xsID("platformCode"), xsVar(1));
    xsThrow(xsVar(0));
}

/* Like throw_esp for the writer's verbs; a size refusal (ESP_ERR_INVALID_SIZE, OTA_ERR_IMAGE_TOO_LARGE,
 * OTA_ERR_IMAGE_PAST_END) also carries .neededBytes, .imageSize (declared) and .slotSize, each only when
 * known (ota_size_refusal_t); ota-errors.ts puts them into the error's detail and message. */
static void throw_writer(xsMachine *the, const char *verb, esp_err_t err, const ota_writer_t *w) XS_FUNCTION_NORETURN;
static void throw_writer(xsMachine *the, const char *verb, esp_err_t err, const ota_writer_t *w)
{
    const ota_size_refusal_t r = w->refusal;
    bool sized = (err == ESP_ERR_INVALID_SIZE || err == OTA_ERR_IMAGE_TOO_LARGE || err == OTA_ERR_IMAGE_PAST_END) &&
                 r.slot != 0;
    if (!sized) throw_esp(the, verb, err);
    char message[96];
    ota_err_format(message, sizeof(message), verb, err);
    xsmcVars(2);
    xsVar(0) = xsNew1(xsGlobal, xsID("Error"), xsString(message));
    xsmcSetInteger(xsVar(1), err);
    xsmcSet(xsVar(0), xsID("platformCode"), xsVar(1));
    if (r.needed != 0) {
        xsmcSetNumber(xsVar(1), (xsNumberValue)r.needed);
        xsmcSet(xsVar(0), xsID("neededBytes"), xsVar(1));
    }
    if (r.declared != 0) {
        xsmcSetNumber(xsVar(1), r.declared);
        xsmcSet(xsVar(0), xsID("imageSize"), xsVar(1));
    }
    xsmcSetNumber(xsVar(1), r.slot);
    xsmcSet(xsVar(0), xsID("slotSize"), xsVar(1));
    xsThrow(xsVar(0));
}

static xs_ota_t *xs_ota_self(xsMachine *the)
{
    xs_ota_t *o = xsmcGetHostDataValidate(xsThis, (void *)xs_ota_destructor);
    if (o == NULL) throw_esp(the, "closed", ESP_ERR_INVALID_STATE);
    return o;
}

/* ---- argument checks (before any side effect) ------------------------------------------------------- */

static uint32_t arg_u32(xsMachine *the, xsIntegerValue index, const char *name)
{
    if (xsmcArgc <= index) xsTypeError("%s is missing", name);
    xsType t = xsmcTypeOf(xsArg(index));
    if (t != xsIntegerType && t != xsNumberType) xsTypeError("%s must be a number", name);
    xsNumberValue v = xsmcToNumber(xsArg(index));
    if (!(v >= 0 && v <= 4294967295.0) || (xsNumberValue)(uint32_t)v != v) {
        xsRangeError("%s must be an integer in 0..0xFFFFFFFF", name);
    }
    return (uint32_t)v;
}

static bool arg_bool(xsMachine *the, xsIntegerValue index, const char *name)
{
    if (xsmcArgc <= index || xsmcTypeOf(xsArg(index)) != xsBooleanType) xsTypeError("%s must be a boolean", name);
    return xsmcToBoolean(xsArg(index));
}

/* (imageSize, requireHash, minSecureVersion) starting at argument `first`. */
static void arg_config(xsMachine *the, xsIntegerValue first, uint16_t chip_id, ota_image_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->chip_id = chip_id;
    cfg->image_size = arg_u32(the, first, "imageSize");
    cfg->require_hash = arg_bool(the, first + 1, "requireHash");
    cfg->min_secure_version = arg_u32(the, first + 2, "minSecureVersion");
}

/* Argument `index`: null/undefined, or the trusted P-256 key as DER SubjectPublicKeyInfo (an ArrayBuffer or
 * a Uint8Array; on the device the firmware's signing-key resource). Parsed into `key`; true when given. */
static bool arg_sign_key(xsMachine *the, xsIntegerValue index, ota_sign_key_t *key)
{
    if (xsmcArgc <= index) return false;
    xsType t = xsmcTypeOf(xsArg(index));
    if (t == xsNullType || t == xsUndefinedType) return false;
    void *data = NULL;
    xsUnsignedValue size = 0;
    xsmcGetBufferReadable(xsArg(index), &data, &size); /* TypeError when not a buffer */
    if (ota_sign_key_set(key, data, size) != ESP_OK) {
        xsRangeError("signingKey must be an ECDSA P-256 public key, 91-byte DER SubjectPublicKeyInfo");
    }
    return true;
}

/* ---- results --------------------------------------------------------------------------------------- */

/* Latin-1 bytes -> UTF-8, so that no byte of a hostile descriptor is lost or breaks XS's strings. */
static void set_latin1(xsMachine *the, xsSlot *slot, const char *text)
{
    char utf8[2 * 33 + 1];
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p != 0 && n + 2 < sizeof(utf8); p++) {
        if (*p < 0x80) {
            utf8[n++] = (char)*p;
        } else {
            utf8[n++] = (char)(0xC0 | (*p >> 6));
            utf8[n++] = (char)(0x80 | (*p & 0x3F));
        }
    }
    utf8[n] = 0;
    xsmcSetString(*slot, utf8);
}

static void set_property_string(xsMachine *the, xsSlot *object, const char *name, const char *latin1)
{
    set_latin1(the, &xsVar(1), latin1);
    xsmcSet(*object, xsID(name), xsVar(1));
}

static void set_property_number(xsMachine *the, xsSlot *object, const char *name, double value)
{
    xsmcSetNumber(xsVar(1), value);
    xsmcSet(*object, xsID(name), xsVar(1));
}

/* xsResult = {magicWord, secureVersion, version, projectName, time, date, idfVer, appElfSha256, chipId,
 * minChipRevFull, maxChipRevFull} (the last three from the image header). */
static void result_descriptor(xsMachine *the, const ota_app_desc_t *d)
{
    static const char hex[] = "0123456789abcdef";
    char sha[65];
    for (int i = 0; i < 32; i++) {
        sha[2 * i] = hex[d->app_elf_sha256[i] >> 4];
        sha[2 * i + 1] = hex[d->app_elf_sha256[i] & 0xF];
    }
    sha[64] = 0;
    xsmcVars(2);
    xsmcSetNewObject(xsVar(0));
    set_property_number(the, &xsVar(0), "magicWord", d->magic_word);
    set_property_number(the, &xsVar(0), "secureVersion", d->secure_version);
    set_property_string(the, &xsVar(0), "version", d->version);
    set_property_string(the, &xsVar(0), "projectName", d->project_name);
    set_property_string(the, &xsVar(0), "time", d->time);
    set_property_string(the, &xsVar(0), "date", d->date);
    set_property_string(the, &xsVar(0), "idfVer", d->idf_ver);
    set_property_string(the, &xsVar(0), "appElfSha256", sha);
    set_property_number(the, &xsVar(0), "chipId", d->chip_id);
    set_property_number(the, &xsVar(0), "minChipRevFull", d->min_chip_rev_full);
    set_property_number(the, &xsVar(0), "maxChipRevFull", d->max_chip_rev_full);
    xsResult = xsVar(0);
}

/* xsResult = {label, type, subtype, address, size}. */
static void result_partition(xsMachine *the, const ota_partition_t *p)
{
    xsmcVars(2);
    xsmcSetNewObject(xsVar(0));
    set_property_string(the, &xsVar(0), "label", p->label);
    set_property_number(the, &xsVar(0), "type", p->type);
    set_property_number(the, &xsVar(0), "subtype", p->subtype);
    set_property_number(the, &xsVar(0), "address", p->address);
    set_property_number(the, &xsVar(0), "size", p->size);
    xsResult = xsVar(0);
}

/* ---- construction and teardown ---------------------------------------------------------------------- */

/*
 * new NativeOta({chipId?, flashPath}) — flashPath only in the simulator (the host flash file, see
 * src/tools/flash-file.ts); the simulator then runs its bootloader, as a power-on would.
 * chipId defaults to the chip ESP-IDF was configured for (ESP32: CONFIG_IDF_FIRMWARE_CHIP_ID; simulator: 0).
 */
void xs_ota(xsMachine *the)
{
    uint16_t chip_id = 0;
#if defined(ESP_PLATFORM) && defined(CONFIG_IDF_FIRMWARE_CHIP_ID)
    chip_id = (uint16_t)CONFIG_IDF_FIRMWARE_CHIP_ID;
#endif
    if (xsmcArgc < 1 || xsmcTypeOf(xsArg(0)) != xsReferenceType) xsTypeError("options must be an object");
    xsmcVars(1);
    xsmcGet(xsVar(0), xsArg(0), xsID("chipId"));
    if (xsmcTypeOf(xsVar(0)) != xsUndefinedType) {
        xsType t = xsmcTypeOf(xsVar(0));
        if (t != xsIntegerType && t != xsNumberType) xsTypeError("chipId must be a number");
        xsNumberValue v = xsmcToNumber(xsVar(0));
        if (!(v >= 0 && v <= 0xFFFF) || (xsNumberValue)(uint16_t)v != v) xsRangeError("chipId must be 0..0xFFFF");
        chip_id = (uint16_t)v;
    }
#if !defined(ESP_PLATFORM)
    xsmcGet(xsVar(0), xsArg(0), xsID("flashPath"));
    if (xsmcTypeOf(xsVar(0)) != xsStringType && xsmcTypeOf(xsVar(0)) != xsStringXType) {
        xsTypeError("flashPath must be a string");
    }
    /* Copied: xsmcToString points into XS memory that a later allocation may move. */
    char path[1024];
    const char *p = xsmcToString(xsVar(0));
    if (strlen(p) >= sizeof(path)) xsRangeError("flashPath is too long");
    strcpy(path, p);
#endif

    xs_ota_t *o = calloc(1, sizeof(*o));
    if (o == NULL) throw_esp(the, "open", ESP_ERR_NO_MEM);
    ota_writer_init(&o->writer);
    o->chip_id = chip_id;
#if defined(ESP_PLATFORM)
    ota_esp32_init(&o->esp);
#else
    int sys_errno = 0;
    esp_err_t err = ota_host_open(path, chip_id, &o->flash, &sys_errno);
    if (err == ESP_OK) {
        ota_boot_result_t boot;
        err = ota_host_boot(o->flash, &boot);
    }
    if (err != ESP_OK) {
        ota_host_close(o->flash);
        free(o);
        throw_esp(the, "open", err);
    }
#endif
    xsmcSetHostData(xsThis, o);
}

/* close(): releases everything; safe to call twice. */
void xs_ota_close(xsMachine *the)
{
    xs_ota_t *o = xsmcGetHostDataValidate(xsThis, (void *)xs_ota_destructor);
    if (o == NULL) return;
    xsmcSetHostData(xsThis, NULL);
    xs_ota_destructor(o);
}

/* ---- the OTA verbs ---------------------------------------------------------------------------------- */

/* begin(imageSize, requireHash, minSecureVersion, signingKey) -> the target partition. */
void xs_ota_begin(xsMachine *the)
{
    xs_ota_t *o = xs_ota_self(the);
    ota_image_config_t cfg;
    arg_config(the, 0, o->chip_id, &cfg);
    ota_sign_key_t key;
    bool keyed = arg_sign_key(the, 3, &key);
    drop_session(o);
    if (keyed) {
        o->sign_key = key;
        cfg.sign_key = &o->sign_key;
    }
    esp_err_t err = ota_writer_begin(&o->writer, hal_of(o), &cfg);
    if (err != ESP_OK) throw_writer(the, "begin", err, &o->writer);
    result_partition(the, &o->writer.target);
}

/* resume(offset, imageSize, requireHash, minSecureVersion, signingKey) -> the offset to restart the stream from. */
void xs_ota_resume(xsMachine *the)
{
    xs_ota_t *o = xs_ota_self(the);
    uint32_t offset = arg_u32(the, 0, "offset");
    ota_image_config_t cfg;
    arg_config(the, 1, o->chip_id, &cfg);
    ota_sign_key_t key;
    bool keyed = arg_sign_key(the, 4, &key);
    drop_session(o);
    if (keyed) {
        o->sign_key = key;
        cfg.sign_key = &o->sign_key;
    }
    uint32_t at = 0;
    esp_err_t err = ota_writer_resume(&o->writer, hal_of(o), &cfg, offset, &at);
    if (err != ESP_OK) throw_writer(the, "resume", err, &o->writer);
    xsmcSetNumber(xsResult, at);
}

/* write(bytes) -> how many bytes were consumed (fewer only when they completed the head; see the port). */
void xs_ota_write(xsMachine *the)
{
    xs_ota_t *o = xs_ota_self(the);
    if (xsmcArgc < 1) xsTypeError("write needs a buffer");
    void *data = NULL;
    xsUnsignedValue size = 0;
    xsmcGetBufferReadable(xsArg(0), &data, &size); /* TypeError when not a buffer */
    size_t consumed = 0;
    esp_err_t err = ota_writer_write(&o->writer, (const uint8_t *)data, size, &consumed);
    if (err != ESP_OK) throw_writer(the, "write", err, &o->writer);
    xsmcSetNumber(xsResult, (xsNumberValue)consumed);
}

void xs_ota_accept(xsMachine *the)
{
    xs_ota_t *o = xs_ota_self(the);
    esp_err_t err = ota_writer_accept(&o->writer);
    if (err != ESP_OK) throw_writer(the, "accept", err, &o->writer);
}

void xs_ota_end(xsMachine *the)
{
    xs_ota_t *o = xs_ota_self(the);
    esp_err_t err = ota_writer_end(&o->writer);
    if (err != ESP_OK) throw_writer(the, "end", err, &o->writer);
}

/* abort(): never throws, also after close. */
void xs_ota_abort(xsMachine *the)
{
    xs_ota_t *o = xsmcGetHostDataValidate(xsThis, (void *)xs_ota_destructor);
    if (o != NULL) drop_session(o);
}

void xs_ota_set_boot(xsMachine *the)
{
    xs_ota_t *o = xs_ota_self(the);
    esp_err_t err = ota_writer_set_boot(&o->writer);
    if (err != ESP_OK) throw_esp(the, "setBoot", err);
}

void xs_ota_running(xsMachine *the)
{
    xs_ota_t *o = xs_ota_self(the);
    const ota_hal_t *hal = hal_of(o);
    ota_partition_t p;
    esp_err_t err = hal->running_partition(hal->ctx, &p);
    if (err != ESP_OK) throw_esp(the, "running", err);
    result_partition(the, &p);
}

/* The running app's otadata state as a number; null for the factory app or a slot without an entry. */
void xs_ota_running_state(xsMachine *the)
{
    xs_ota_t *o = xs_ota_self(the);
    bool known;
    uint32_t state;
    esp_err_t err = ota_running_state(hal_of(o), &known, &state);
    if (err != ESP_OK) throw_esp(the, "runningState", err);
    if (known) xsmcSetNumber(xsResult, state);
    else xsmcSetNull(xsResult);
}

void xs_ota_mark_valid(xsMachine *the)
{
    xs_ota_t *o = xs_ota_self(the);
    const ota_hal_t *hal = hal_of(o);
    esp_err_t err = hal->mark_valid(hal->ctx);
    if (err != ESP_OK) throw_esp(the, "markValid", err);
}

/* On the ESP32 this does not return when it succeeds (the chip restarts). */
void xs_ota_mark_invalid_and_reboot(xsMachine *the)
{
    xs_ota_t *o = xs_ota_self(the);
    drop_session(o);
    const ota_hal_t *hal = hal_of(o);
    esp_err_t err = hal->mark_invalid_and_reboot(hal->ctx);
    if (err != ESP_OK) throw_esp(the, "markInvalidAndReboot", err);
}

/* The candidate's descriptor (after the head or a resume), else null. */
void xs_ota_candidate_descriptor(xsMachine *the)
{
    xs_ota_t *o = xs_ota_self(the);
    const ota_app_desc_t *d = ota_writer_descriptor(&o->writer);
    if (d == NULL) {
        xsmcSetNull(xsResult);
        return;
    }
    ota_app_desc_t copy = *d; /* result_descriptor allocates; keep no pointer into the writer across it */
    result_descriptor(the, &copy);
}

/* The running image's descriptor, read from its partition; null if nothing runs or it has none. */
void xs_ota_running_descriptor(xsMachine *the)
{
    xs_ota_t *o = xs_ota_self(the);
    bool found;
    ota_app_desc_t d;
    esp_err_t err = ota_running_descriptor(hal_of(o), &found, &d);
    if (err != ESP_OK) throw_esp(the, "runningDescriptor", err);
    if (found) result_descriptor(the, &d);
    else xsmcSetNull(xsResult);
}
