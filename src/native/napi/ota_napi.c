/*
 * ota_napi.c — the N-API binding of the OTA core over the host flash (plain node_api.h, no
 * node-addon-api). Thin: argument checks, then one core call per method, then the result as plain JS
 * values. Device/core failures are thrown as Error objects carrying `.platformCode` (the raw esp_err_t or
 * simulator number, never replaced by a generic message); src/native/ota-errors.ts maps them to stable
 * codes. TypeError / RangeError only for bad arguments. No policy, no retries, no JSON.
 *
 * JS surface (typed in src/native/ota-slot.ts):
 *   new OtaHost(path: string, chipId: number)   opens the flash file (nothing boots yet)
 *   close(); boot(); running(); runningState(); slotState(slot); partitions(); nextUpdatePartition()
 *   begin(imageSize, requireHash, minSecureVersion, signingKey); resume(offset, imageSize, requireHash,
 *   minSecureVersion, signingKey) -> resumeAt (signingKey: null or a P-256 DER SubjectPublicKeyInfo); write(chunk) -> consumed; accept(); end(); abort(); setBoot();
 *   writerState(); written(); candidateDescriptor(); runningDescriptor(); markValid(); markInvalidAndReboot()
 *   armPowerCut(budget, seed); disarmPowerCut(); powerLost(); opCount(); trace(on?); cutOperation()
 * and, beside OtaHost: sha256Backend ("openssl": napi/sha256-openssl), mapFile(path, length) ->
 *   ArrayBuffer and unmapFile(buffer) (the simulator's NVS log, src/node/file-kv.ts; see js_map_file)
 * Ownership: the JS object owns the flash handle and the writer; close() releases them (safe twice) and
 * the finalizer does so if close() was never called.
 */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif
#define _DEFAULT_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/ota_errors.h"
#include "../core/ota_image.h"
#include "../core/ota_layout.h"
#include "../core/ota_otadata.h"
#include "../core/ota_running.h"
#include "../core/ota_sign.h"
#include "../core/ota_writer.h"
#include "../host/ota_host.h"

typedef struct {
    ota_host_flash_t *flash;
    ota_writer_t writer;
    ota_sign_key_t sign_key; /* the trusted key of the current session (borrowed by the writer's config) */
} ota_napi_t;

#define CHECK(call)                                                                                 \
    do {                                                                                            \
        if ((call) != napi_ok) return throw_napi_failure(env, #call);                               \
    } while (0)

static napi_value throw_napi_failure(napi_env env, const char *what)
{
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) napi_throw_error(env, "OTA_NAPI", what);
    return NULL;
}

/* Throws Error(`${what}: NAME (0xNNNN)`) (ota_err_format, the message both bindings throw) with .platformCode = err (and .errno when given). */
static napi_value throw_esp(napi_env env, const char *what, esp_err_t err, int sys_errno)
{
    char msg[160];
    ota_err_format(msg, sizeof(msg), what, err);
    napi_value text, error, code;
    if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text) != napi_ok ||
        napi_create_error(env, NULL, text, &error) != napi_ok ||
        napi_create_int32(env, err, &code) != napi_ok ||
        napi_set_named_property(env, error, "platformCode", code) != napi_ok) {
        return throw_napi_failure(env, msg);
    }
    if (sys_errno != 0) {
        napi_value e;
        if (napi_create_int32(env, sys_errno, &e) == napi_ok) napi_set_named_property(env, error, "errno", e);
    }
    napi_throw(env, error);
    return NULL;
}

/* Like throw_esp for the writer's verbs; a size refusal also carries its numbers as .neededBytes (what the
 * image's headers need at least), .imageSize (the declared size) and .slotSize, each only when known.
 * ota-errors.ts puts them into the error's detail and message. */
static napi_value throw_writer(napi_env env, const char *what, esp_err_t err, const ota_writer_t *w)
{
    const ota_size_refusal_t *r = &w->refusal;
    bool sized = (err == ESP_ERR_INVALID_SIZE || err == OTA_ERR_IMAGE_TOO_LARGE || err == OTA_ERR_IMAGE_PAST_END) &&
                 r->slot != 0;
    throw_esp(env, what, err, 0);
    if (!sized) return NULL;
    napi_value error, v;
    if (napi_get_and_clear_last_exception(env, &error) != napi_ok) return NULL;
    if (r->needed != 0 && napi_create_double(env, (double)r->needed, &v) == napi_ok) {
        napi_set_named_property(env, error, "neededBytes", v);
    }
    if (r->declared != 0 && napi_create_uint32(env, r->declared, &v) == napi_ok) {
        napi_set_named_property(env, error, "imageSize", v);
    }
    if (napi_create_uint32(env, r->slot, &v) == napi_ok) napi_set_named_property(env, error, "slotSize", v);
    napi_throw(env, error);
    return NULL;
}

static napi_value undefined(napi_env env)
{
    napi_value u;
    napi_get_undefined(env, &u);
    return u;
}

static napi_value null_value(napi_env env)
{
    napi_value u;
    napi_get_null(env, &u);
    return u;
}

/* Fetches `this` and up to `max` arguments; refuses calls after close(). */
static ota_napi_t *self(napi_env env, napi_callback_info info, size_t max, napi_value *argv, size_t *argc,
                        bool need_open)
{
    napi_value thisv;
    size_t n = max;
    if (napi_get_cb_info(env, info, &n, argv, &thisv, NULL) != napi_ok) return NULL;
    if (argc) *argc = n;
    for (size_t i = n; i < max; i++) argv[i] = undefined(env);
    ota_napi_t *s = NULL;
    if (napi_unwrap(env, thisv, (void **)&s) != napi_ok || s == NULL) {
        napi_throw_type_error(env, "ERR_INVALID_THIS", "not an OtaHost");
        return NULL;
    }
    if (need_open && s->flash == NULL) {
        throw_esp(env, "closed", ESP_ERR_INVALID_STATE, 0);
        return NULL;
    }
    return s;
}

/* Reads an integer argument in [lo, hi]; throws TypeError/RangeError. */
static bool arg_u32(napi_env env, napi_value v, const char *name, double lo, double hi, uint32_t *out)
{
    napi_valuetype t;
    if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
        char m[96];
        snprintf(m, sizeof(m), "%s must be a number", name);
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", m);
        return false;
    }
    double d;
    napi_get_value_double(env, v, &d);
    if (!(d >= lo && d <= hi) || d != (double)(uint64_t)d) {
        char m[96];
        snprintf(m, sizeof(m), "%s must be an integer in [%.0f, %.0f]", name, lo, hi);
        napi_throw_range_error(env, "ERR_OUT_OF_RANGE", m);
        return false;
    }
    *out = (uint32_t)d;
    return true;
}

static bool arg_bool(napi_env env, napi_value v, const char *name, bool *out)
{
    napi_valuetype t;
    if (napi_typeof(env, v, &t) != napi_ok || t != napi_boolean) {
        char m[96];
        snprintf(m, sizeof(m), "%s must be a boolean", name);
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", m);
        return false;
    }
    return napi_get_value_bool(env, v, out) == napi_ok;
}

static napi_value make_u32(napi_env env, uint32_t v)
{
    napi_value r;
    napi_create_uint32(env, v, &r);
    return r;
}

static napi_value make_i32(napi_env env, int32_t v)
{
    napi_value r;
    napi_create_int32(env, v, &r);
    return r;
}

static napi_value make_str(napi_env env, const char *s)
{
    napi_value r;
    napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &r);
    return r;
}

static napi_value make_bool(napi_env env, bool b)
{
    napi_value r;
    napi_get_boolean(env, b, &r);
    return r;
}

static void set(napi_env env, napi_value obj, const char *key, napi_value v)
{
    napi_set_named_property(env, obj, key, v);
}

/* ota_app_desc_t -> { magicWord, secureVersion, version, projectName, time, date, idfVer, appElfSha256,
 * chipId, minChipRevFull, maxChipRevFull } (the last three from the image header).
 * Strings from an image are arbitrary bytes; they are passed as Latin-1 so no byte is lost or rejected. */
static napi_value make_desc(napi_env env, const ota_app_desc_t *d)
{
    napi_value o, s;
    napi_create_object(env, &o);
    set(env, o, "magicWord", make_u32(env, d->magic_word));
    set(env, o, "secureVersion", make_u32(env, d->secure_version));
    napi_create_string_latin1(env, d->version, NAPI_AUTO_LENGTH, &s);
    set(env, o, "version", s);
    napi_create_string_latin1(env, d->project_name, NAPI_AUTO_LENGTH, &s);
    set(env, o, "projectName", s);
    napi_create_string_latin1(env, d->time, NAPI_AUTO_LENGTH, &s);
    set(env, o, "time", s);
    napi_create_string_latin1(env, d->date, NAPI_AUTO_LENGTH, &s);
    set(env, o, "date", s);
    napi_create_string_latin1(env, d->idf_ver, NAPI_AUTO_LENGTH, &s);
    set(env, o, "idfVer", s);
    char hex[65];
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d->app_elf_sha256[i]);
    set(env, o, "appElfSha256", make_str(env, hex));
    set(env, o, "chipId", make_u32(env, d->chip_id));
    set(env, o, "minChipRevFull", make_u32(env, d->min_chip_rev_full));
    set(env, o, "maxChipRevFull", make_u32(env, d->max_chip_rev_full));
    return o;
}

static napi_value make_partition(napi_env env, const ota_partition_t *p)
{
    napi_value o;
    napi_create_object(env, &o);
    set(env, o, "label", make_str(env, p->label));
    set(env, o, "type", make_u32(env, p->type));
    set(env, o, "subtype", make_u32(env, p->subtype));
    set(env, o, "address", make_u32(env, p->address));
    set(env, o, "size", make_u32(env, p->size));
    return o;
}

static napi_value make_boot(napi_env env, const ota_boot_result_t *b)
{
    napi_value o;
    napi_create_object(env, &o);
    set(env, o, "partition", make_partition(env, &b->partition));
    set(env, o, "slot", make_i32(env, b->slot));
    set(env, o, "state", b->state == OTA_STATE_UNDEFINED ? null_value(env) : make_u32(env, b->state));
    set(env, o, "entry", make_i32(env, b->entry));
    set(env, o, "rolledBack", make_bool(env, b->rolled_back));
    set(env, o, "descriptor", make_desc(env, &b->desc));
    return o;
}

static void finalize(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)hint;
    ota_napi_t *s = data;
    ota_writer_abort(&s->writer);
    ota_host_close(s->flash);
    free(s);
}

/* new OtaHost(path, chipId) */
static napi_value js_construct(napi_env env, napi_callback_info info)
{
    napi_value argv[2], thisv;
    size_t argc = 2;
    CHECK(napi_get_cb_info(env, info, &argc, argv, &thisv, NULL));
    napi_valuetype t = napi_undefined;
    if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_string) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "path must be a string");
        return NULL;
    }
    char path[4096];
    size_t len = 0;
    CHECK(napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &len));
    if (len == 0 || len >= sizeof(path) - 1 || strlen(path) != len) {
        napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "path must be 1..4094 bytes without NUL");
        return NULL;
    }
    if (argc < 2) argv[1] = undefined(env);
    uint32_t chip;
    if (!arg_u32(env, argv[1], "chipId", 0, 0xFFFF, &chip)) return NULL;
    ota_napi_t *s = calloc(1, sizeof(*s));
    if (s == NULL) return throw_esp(env, "OtaHost", ESP_ERR_NO_MEM, 0);
    ota_writer_init(&s->writer);
    int sys_errno = 0;
    esp_err_t err = ota_host_open(path, (uint16_t)chip, &s->flash, &sys_errno);
    if (err != ESP_OK) {
        free(s);
        return throw_esp(env, "OtaHost open", err, sys_errno);
    }
    if (napi_wrap(env, thisv, s, finalize, NULL, NULL) != napi_ok) {
        ota_host_close(s->flash);
        free(s);
        return throw_napi_failure(env, "napi_wrap");
    }
    return thisv;
}

static napi_value js_close(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, false);
    if (s == NULL) return NULL;
    ota_writer_abort(&s->writer);
    ota_host_close(s->flash);
    s->flash = NULL;
    return undefined(env);
}

static napi_value js_boot(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    ota_writer_abort(&s->writer); /* a reboot loses any RAM state */
    ota_boot_result_t r;
    esp_err_t err = ota_host_boot(s->flash, &r);
    if (err != ESP_OK) return throw_esp(env, "boot", err, 0);
    return make_boot(env, &r);
}

static napi_value js_last_boot(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    const ota_boot_result_t *b = ota_host_last_boot(s->flash);
    return b ? make_boot(env, b) : null_value(env);
}

static napi_value js_running(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    const ota_hal_t *hal = ota_host_hal(s->flash);
    ota_partition_t p;
    esp_err_t err = hal->running_partition(hal->ctx, &p);
    if (err != ESP_OK) return throw_esp(env, "running", err, 0);
    return make_partition(env, &p);
}

/* State of the running app: a number, or null for the factory app / a slot without otadata entry. */
static napi_value js_running_state(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    bool known;
    uint32_t state;
    esp_err_t err = ota_running_state(ota_host_hal(s->flash), &known, &state);
    if (err != ESP_OK) return throw_esp(env, "runningState", err, 0);
    return known ? make_u32(env, state) : null_value(env);
}

static napi_value js_slot_state(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    ota_napi_t *s = self(env, info, 1, argv, NULL, true);
    if (s == NULL) return NULL;
    uint32_t slot;
    if (!arg_u32(env, argv[0], "slot", 0, 15, &slot)) return NULL;
    const ota_hal_t *hal = ota_host_hal(s->flash);
    ota_layout_t l;
    ota_layout_load(hal, &l);
    if (slot >= l.slot_count) return throw_esp(env, "slotState", ESP_ERR_NOT_FOUND, 0);
    uint32_t state;
    esp_err_t err = ota_otadata_get_state(hal, &l, slot, &state);
    if (err == ESP_ERR_NOT_FOUND) return null_value(env);
    if (err != ESP_OK) return throw_esp(env, "slotState", err, 0);
    return make_u32(env, state);
}

static napi_value js_partitions(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    ota_partition_t parts[OTA_PARTITION_TABLE_MAX_LEN / 32];
    size_t n = ota_host_partitions(s->flash, parts, sizeof(parts) / sizeof(parts[0]));
    napi_value arr;
    CHECK(napi_create_array_with_length(env, n, &arr));
    for (size_t i = 0; i < n; i++) CHECK(napi_set_element(env, arr, (uint32_t)i, make_partition(env, &parts[i])));
    return arr;
}

static napi_value js_next_update(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    const ota_hal_t *hal = ota_host_hal(s->flash);
    ota_partition_t running, next;
    bool has_running = hal->running_partition(hal->ctx, &running) == ESP_OK;
    esp_err_t err = ota_next_update_partition(hal, has_running ? &running : NULL, &next);
    if (err != ESP_OK) return throw_esp(env, "nextUpdatePartition", err, 0);
    return make_partition(env, &next);
}

static bool read_cfg(napi_env env, napi_value *argv, ota_napi_t *s, ota_image_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->chip_id = ota_host_chip_id(s->flash);
    bool require_hash;
    if (!arg_u32(env, argv[0], "imageSize", 0, 4294967295.0, &cfg->image_size)) return false;
    if (!arg_bool(env, argv[1], "requireHash", &require_hash)) return false;
    if (!arg_u32(env, argv[2], "minSecureVersion", 0, 4294967295.0, &cfg->min_secure_version)) return false;
    cfg->require_hash = require_hash;
    /* signingKey: null, or the trusted P-256 key as DER SubjectPublicKeyInfo (docs/signing.md). */
    napi_valuetype t;
    if (napi_typeof(env, argv[3], &t) != napi_ok) return false;
    if (t == napi_null || t == napi_undefined) return true;
    bool is_typed = false;
    napi_is_typedarray(env, argv[3], &is_typed);
    napi_typedarray_type type = napi_int8_array;
    size_t length = 0;
    void *data = NULL;
    if (is_typed && napi_get_typedarray_info(env, argv[3], &type, &length, &data, NULL, NULL) != napi_ok) return false;
    if (!is_typed || type != napi_uint8_array) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "signingKey must be a Uint8Array or null");
        return false;
    }
    ota_sign_key_t key;
    if (ota_sign_key_set(&key, data, length) != ESP_OK) {
        napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                               "signingKey must be an ECDSA P-256 public key, 91-byte DER SubjectPublicKeyInfo");
        return false;
    }
    s->sign_key = key;
    cfg->sign_key = &s->sign_key;
    return true;
}

static napi_value js_begin(napi_env env, napi_callback_info info)
{
    napi_value argv[4];
    ota_napi_t *s = self(env, info, 4, argv, NULL, true);
    if (s == NULL) return NULL;
    ota_image_config_t cfg;
    if (!read_cfg(env, argv, s, &cfg)) return NULL;
    esp_err_t err = ota_writer_begin(&s->writer, ota_host_hal(s->flash), &cfg);
    if (err != ESP_OK) return throw_writer(env, "begin", err, &s->writer);
    return make_partition(env, &s->writer.target);
}

static napi_value js_resume(napi_env env, napi_callback_info info)
{
    napi_value argv[5];
    ota_napi_t *s = self(env, info, 5, argv, NULL, true);
    if (s == NULL) return NULL;
    uint32_t offset;
    if (!arg_u32(env, argv[0], "offset", 0, 4294967295.0, &offset)) return NULL;
    ota_image_config_t cfg;
    if (!read_cfg(env, argv + 1, s, &cfg)) return NULL;
    uint32_t at = 0;
    esp_err_t err = ota_writer_resume(&s->writer, ota_host_hal(s->flash), &cfg, offset, &at);
    if (err != ESP_OK) return throw_writer(env, "resume", err, &s->writer);
    return make_u32(env, at);
}

static napi_value js_write(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    ota_napi_t *s = self(env, info, 1, argv, NULL, true);
    if (s == NULL) return NULL;
    bool is_typed = false;
    napi_is_typedarray(env, argv[0], &is_typed);
    if (!is_typed) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "chunk must be a Uint8Array");
        return NULL;
    }
    napi_typedarray_type type;
    size_t length;
    void *data;
    CHECK(napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL));
    if (type != napi_uint8_array) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "chunk must be a Uint8Array");
        return NULL;
    }
    size_t consumed = 0;
    esp_err_t err = ota_writer_write(&s->writer, data, length, &consumed);
    if (err != ESP_OK) return throw_writer(env, "write", err, &s->writer);
    return make_u32(env, (uint32_t)consumed);
}

static napi_value js_accept(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    esp_err_t err = ota_writer_accept(&s->writer);
    if (err != ESP_OK) return throw_writer(env, "accept", err, &s->writer);
    return undefined(env);
}

static napi_value js_end(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    esp_err_t err = ota_writer_end(&s->writer);
    if (err != ESP_OK) return throw_writer(env, "end", err, &s->writer);
    return make_u32(env, s->writer.written);
}

static napi_value js_abort(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, false);
    if (s == NULL) return NULL;
    ota_writer_abort(&s->writer);
    return undefined(env);
}

static napi_value js_set_boot(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    esp_err_t err = ota_writer_set_boot(&s->writer);
    if (err != ESP_OK) return throw_esp(env, "setBoot", err, 0);
    return undefined(env);
}

static napi_value js_writer_state(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, false);
    if (s == NULL) return NULL;
    static const char *names[] = { "idle", "head", "headReady", "writing", "ended", "failed" };
    napi_value o;
    napi_create_object(env, &o);
    set(env, o, "state", make_str(env, names[s->writer.state]));
    set(env, o, "written", make_u32(env, s->writer.written));
    set(env, o, "error", make_i32(env, s->writer.error));
    return o;
}

static napi_value js_candidate_desc(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    const ota_app_desc_t *d = ota_writer_descriptor(&s->writer);
    return d ? make_desc(env, d) : null_value(env);
}

static napi_value js_running_desc(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    bool found;
    ota_app_desc_t d;
    esp_err_t err = ota_running_descriptor(ota_host_hal(s->flash), &found, &d);
    if (err != ESP_OK) return throw_esp(env, "runningDescriptor", err, 0);
    return found ? make_desc(env, &d) : null_value(env);
}

static napi_value js_mark_valid(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    const ota_hal_t *hal = ota_host_hal(s->flash);
    esp_err_t err = hal->mark_valid(hal->ctx);
    if (err != ESP_OK) return throw_esp(env, "markValid", err, 0);
    return undefined(env);
}

static napi_value js_mark_invalid(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    ota_writer_abort(&s->writer);
    const ota_hal_t *hal = ota_host_hal(s->flash);
    esp_err_t err = hal->mark_invalid_and_reboot(hal->ctx);
    if (err != ESP_OK) return throw_esp(env, "markInvalidAndReboot", err, 0);
    const ota_boot_result_t *b = ota_host_last_boot(s->flash);
    return b ? make_boot(env, b) : null_value(env);
}

static napi_value js_arm(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    ota_napi_t *s = self(env, info, 2, argv, NULL, true);
    if (s == NULL) return NULL;
    uint32_t seed;
    napi_valuetype t;
    if (napi_typeof(env, argv[0], &t) != napi_ok || t != napi_number) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "budget must be a number");
        return NULL;
    }
    double budget;
    napi_get_value_double(env, argv[0], &budget);
    if (!(budget >= 0 && budget <= 9007199254740991.0) || budget != (double)(uint64_t)budget) {
        napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "budget must be a non-negative safe integer");
        return NULL;
    }
    if (!arg_u32(env, argv[1], "seed", 0, 4294967295.0, &seed)) return NULL;
    ota_host_arm_power_cut(s->flash, (uint64_t)budget, seed);
    return undefined(env);
}

static napi_value js_disarm(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    ota_host_disarm_power_cut(s->flash);
    return undefined(env);
}

static napi_value js_power_lost(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    return make_bool(env, ota_host_power_lost(s->flash));
}

static napi_value js_op_count(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    napi_value r;
    napi_create_double(env, (double)ota_host_op_count(s->flash), &r);
    return r;
}

static napi_value make_op(napi_env env, const ota_host_op_t *op)
{
    napi_value o, start;
    char kind[2] = { op->kind, 0 };
    napi_create_object(env, &o);
    set(env, o, "kind", make_str(env, kind[0] == 'E' ? "erase" : "program"));
    set(env, o, "address", make_u32(env, op->address));
    set(env, o, "length", make_u32(env, op->len));
    napi_create_double(env, (double)op->start, &start);
    set(env, o, "start", start);
    return o;
}

/* trace(on: boolean): starts (clearing) or stops recording; returns the operations recorded so far. */
static napi_value js_trace(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    ota_napi_t *s = self(env, info, 1, argv, NULL, true);
    if (s == NULL) return NULL;
    napi_valuetype t;
    if (napi_typeof(env, argv[0], &t) == napi_ok && t != napi_undefined) {
        bool on;
        if (!arg_bool(env, argv[0], "on", &on)) return NULL;
        size_t count;
        const ota_host_op_t *ops = ota_host_trace_ops(s->flash, &count);
        napi_value arr;
        CHECK(napi_create_array_with_length(env, count, &arr));
        for (size_t i = 0; i < count; i++) CHECK(napi_set_element(env, arr, (uint32_t)i, make_op(env, &ops[i])));
        ota_host_trace(s->flash, on);
        return arr;
    }
    size_t count;
    const ota_host_op_t *ops = ota_host_trace_ops(s->flash, &count);
    napi_value arr;
    CHECK(napi_create_array_with_length(env, count, &arr));
    for (size_t i = 0; i < count; i++) CHECK(napi_set_element(env, arr, (uint32_t)i, make_op(env, &ops[i])));
    return arr;
}

static napi_value js_cut_op(napi_env env, napi_callback_info info)
{
    ota_napi_t *s = self(env, info, 0, NULL, NULL, true);
    if (s == NULL) return NULL;
    ota_host_op_t op;
    return ota_host_cut_op(s->flash, &op) ? make_op(env, &op) : null_value(env);
}

/* ---- mapped files (the simulator's NVS log, src/node/file-kv.ts) ------------------------------------
 *
 * mapFile(path, length): the first `length` bytes of an existing file of at least that size, mapped
 * MAP_SHARED read-write, as an external ArrayBuffer. A store into it is in the file's page cache at once —
 * what a write(2) gives, without the system call — so it survives the death of the process (not a host
 * crash: nothing here msyncs). Holes in that range are allocated first (posix_fallocate). Ownership: the
 * mapping belongs to the ArrayBuffer; it is unmapped when the buffer is collected or detached
 * (unmapFile). The file must not be truncated while mapped (SIGBUS).
 * Errors: TypeError/RangeError for the arguments; Error with .platformCode OTA_ERR_SIM_IO (.errno) when
 * the file cannot be opened, allocated (ENOSPC) or mapped, ESP_ERR_INVALID_SIZE when it is shorter than
 * `length`. */
typedef struct {
    void *addr;
    size_t len;
} mapped_file_t;

static void unmap_file(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)data;
    mapped_file_t *m = hint;
    munmap(m->addr, m->len);
    free(m);
}

static napi_value js_map_file(napi_env env, napi_callback_info info)
{
    napi_value argv[2];
    size_t argc = 2;
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    napi_valuetype t = napi_undefined;
    if (argc < 2 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_string) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "mapFile(path: string, length: number)");
        return NULL;
    }
    char path[4096];
    size_t plen = 0;
    CHECK(napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &plen));
    if (plen == 0 || plen >= sizeof(path) - 1 || strlen(path) != plen) {
        napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "path must be 1..4094 bytes without NUL");
        return NULL;
    }
    uint32_t len;
    if (!arg_u32(env, argv[1], "length", 1, 0x10000000, &len)) return NULL;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return throw_esp(env, "mapFile", OTA_ERR_SIM_IO, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return throw_esp(env, "mapFile", OTA_ERR_SIM_IO, e);
    }
    if (st.st_size < (off_t)len) {
        close(fd);
        return throw_esp(env, "mapFile", ESP_ERR_INVALID_SIZE, 0);
    }
    /* Reserve the blocks of any hole first: a store into a hole the file system cannot allocate (disk
     * full) would be SIGBUS; this way it is an error here (ENOSPC) instead. */
#if defined(__linux__)
    int ferr = posix_fallocate(fd, 0, (off_t)len);
    if (ferr != 0) {
        close(fd);
        return throw_esp(env, "mapFile", OTA_ERR_SIM_IO, ferr);
    }
#endif
    void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file */
    if (mem == MAP_FAILED) return throw_esp(env, "mapFile", OTA_ERR_SIM_IO, e);
    mapped_file_t *m = malloc(sizeof(*m));
    napi_value ab;
    if (m == NULL) {
        munmap(mem, len);
        return throw_esp(env, "mapFile", ESP_ERR_NO_MEM, 0);
    }
    m->addr = mem;
    m->len = len;
    if (napi_create_external_arraybuffer(env, mem, len, unmap_file, m, &ab) != napi_ok) {
        munmap(mem, len);
        free(m);
        return throw_napi_failure(env, "napi_create_external_arraybuffer");
    }
    return ab;
}

/* unmapFile(buffer): detaches a buffer from mapFile (its views read as empty from then on); the mapping
 * goes with it. Safe twice. TypeError for anything but an ArrayBuffer. */
static napi_value js_unmap_file(napi_env env, napi_callback_info info)
{
    napi_value argv[1];
    size_t argc = 1;
    CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    bool is_ab = false;
    if (argc < 1 || napi_is_arraybuffer(env, argv[0], &is_ab) != napi_ok || !is_ab) {
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "unmapFile(buffer: ArrayBuffer)");
        return NULL;
    }
    bool detached = false;
    CHECK(napi_is_detached_arraybuffer(env, argv[0], &detached));
    if (!detached) CHECK(napi_detach_arraybuffer(env, argv[0]));
    return undefined(env);
}

static napi_value init(napi_env env, napi_value exports)
{
#define M(name, fn) { name, NULL, fn, NULL, NULL, NULL, napi_default_method, NULL }
    napi_property_descriptor methods[] = {
        M("close", js_close),
        M("boot", js_boot),
        M("lastBoot", js_last_boot),
        M("running", js_running),
        M("runningState", js_running_state),
        M("slotState", js_slot_state),
        M("partitions", js_partitions),
        M("nextUpdatePartition", js_next_update),
        M("begin", js_begin),
        M("resume", js_resume),
        M("write", js_write),
        M("accept", js_accept),
        M("end", js_end),
        M("abort", js_abort),
        M("setBoot", js_set_boot),
        M("writerState", js_writer_state),
        M("candidateDescriptor", js_candidate_desc),
        M("runningDescriptor", js_running_desc),
        M("markValid", js_mark_valid),
        M("markInvalidAndReboot", js_mark_invalid),
        M("armPowerCut", js_arm),
        M("disarmPowerCut", js_disarm),
        M("powerLost", js_power_lost),
        M("opCount", js_op_count),
        M("trace", js_trace),
        M("cutOperation", js_cut_op),
    };
#undef M
    napi_value cls;
    CHECK(napi_define_class(env, "OtaHost", NAPI_AUTO_LENGTH, js_construct, NULL,
                            sizeof(methods) / sizeof(methods[0]), methods, &cls));
    CHECK(napi_set_named_property(env, exports, "OtaHost", cls));
#ifdef OTA_SHA256_BACKEND
    const char *sha = OTA_SHA256_BACKEND; /* napi/sha256-openssl/mbedtls/sha256.h */
#else
    const char *sha = "mbedtls";
#endif
    CHECK(napi_set_named_property(env, exports, "sha256Backend", make_str(env, sha)));
    napi_value fn;
    CHECK(napi_create_function(env, "mapFile", NAPI_AUTO_LENGTH, js_map_file, NULL, &fn));
    CHECK(napi_set_named_property(env, exports, "mapFile", fn));
    CHECK(napi_create_function(env, "unmapFile", NAPI_AUTO_LENGTH, js_unmap_file, NULL, &fn));
    CHECK(napi_set_named_property(env, exports, "unmapFile", fn));
    return exports;
}

NAPI_MODULE_INIT()
{
    return init(env, exports);
}
