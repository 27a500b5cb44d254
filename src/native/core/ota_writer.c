/*
 * ota_writer.c — the streaming OTA writer (esp_ota_begin/resume/write/end/abort/set_boot_partition) with
 * the descriptor gate: nothing reaches flash until the first OTA_IMAGE_HEAD_LEN bytes validated and the
 * caller accepted the descriptor. Erases sector by sector as data arrives. Holds back the image's first
 * byte (the magic) until end() has verified the whole image, so nothing unverified is ever bootable.
 * Mechanism only: which image to accept is the caller's decision. See ota_writer.h for the contract of every function.
 */
#include <string.h>

#include "ota_layout.h"
#include "ota_sign.h"
#include "ota_writer.h"

void ota_writer_init(ota_writer_t *w)
{
    memset(w, 0, sizeof(*w));
    w->state = OTA_WRITER_IDLE;
}

static bool has_parser(const ota_writer_t *w)
{
    return w->state != OTA_WRITER_IDLE;
}

void ota_writer_abort(ota_writer_t *w)
{
    if (has_parser(w)) ota_image_free(&w->parser);
    const ota_hal_t *hal = w->hal;
    ota_writer_init(w);
    w->hal = hal;
}

static esp_err_t writer_fail(ota_writer_t *w, esp_err_t err)
{
    w->state = OTA_WRITER_FAILED;
    w->error = err;
    if (err == OTA_ERR_IMAGE_TOO_LARGE || err == OTA_ERR_IMAGE_PAST_END) {
        w->refusal.needed = w->parser.need_end;
        w->refusal.declared = w->parser.cfg.image_size;
        w->refusal.slot = w->target.size;
    }
    return err;
}

/* esp_ota_begin's size rule: a declared size larger than the slot is refused before anything else. */
static esp_err_t check_declared_size(ota_writer_t *w, const ota_image_config_t *cfg, const ota_partition_t *target)
{
    if (cfg->image_size <= target->size) return ESP_OK;
    w->refusal.needed = 0;
    w->refusal.declared = cfg->image_size;
    w->refusal.slot = target->size;
    return ESP_ERR_INVALID_SIZE;
}

/* Shared by begin and resume: target selection and the rollback-state rule of esp_ota_begin. */
static esp_err_t pick_target(const ota_hal_t *hal, ota_partition_t *target)
{
    ota_partition_t running;
    esp_err_t err = hal->running_partition(hal->ctx, &running);
    if (err != ESP_OK) return err;
    err = ota_next_update_partition(hal, &running, target);
    if (err != ESP_OK) return err;
    if (target->address == running.address) return ESP_ERR_OTA_PARTITION_CONFLICT;
    if (running.type == OTA_PART_TYPE_APP && running.subtype >= OTA_PART_SUBTYPE_OTA_MIN &&
        running.subtype <= OTA_PART_SUBTYPE_OTA_MAX) {
        uint32_t state = OTA_STATE_UNDEFINED;
        err = hal->get_state(hal->ctx, &running, &state);
        if (err == ESP_OK && state == OTA_STATE_PENDING_VERIFY) return ESP_ERR_OTA_ROLLBACK_INVALID_STATE;
        if (err != ESP_OK && err != ESP_ERR_NOT_FOUND && err != ESP_ERR_NOT_SUPPORTED) return err;
    }
    return ESP_OK;
}

static void start_parser(ota_writer_t *w, const ota_image_config_t *cfg)
{
    ota_image_config_t c = *cfg;
    c.max_size = w->target.size;
    ota_image_init(&w->parser, &c);
}

/* The held byte (see ota_writer.h, "The held magic byte"): slot offset 0, the image's magic, never programmed
 * before ota_writer_end has verified the image. A byte there is the held one, unprogrammed or torn by a cut
 * while end() programmed it, when every bit the magic has set is still set (NOR programming only clears
 * bits); then 0xE9 is what belongs there. Any other value is not ours and stays as read, so the parser
 * refuses it (OTA_ERR_IMAGE_MAGIC). */
static bool held_byte_pending(uint8_t b)
{
    return (b & OTA_IMAGE_MAGIC) == OTA_IMAGE_MAGIC;
}

/* Puts the held byte into a buffer read from the target at `offset` (only offset 0 holds it). */
static void restore_held(uint32_t offset, uint8_t *buf, size_t len)
{
    if (offset == 0 && len > 0 && held_byte_pending(buf[0])) buf[0] = OTA_IMAGE_MAGIC;
}

/* A read-only view of the hal that shows the held byte in place: what ota_image_verify_partition reads in
 * ota_writer_end before the byte is programmed. Only `read` is set; the verifier calls nothing else. */
typedef struct held_view {
    ota_hal_t hal;
    const ota_hal_t *inner;
    uint32_t target_address;
} held_view_t;

static esp_err_t held_view_read(void *ctx, const ota_partition_t *part, uint32_t offset, void *dst, size_t len)
{
    const held_view_t *v = (const held_view_t *)ctx;
    esp_err_t err = v->inner->read(v->inner->ctx, part, offset, dst, len);
    if (err == ESP_OK && part->address == v->target_address) restore_held(offset, (uint8_t *)dst, len);
    return err;
}

esp_err_t ota_writer_begin(ota_writer_t *w, const ota_hal_t *hal, const ota_image_config_t *cfg)
{
    if (w == NULL || hal == NULL || cfg == NULL) return ESP_ERR_INVALID_ARG;
    ota_writer_abort(w);
    ota_partition_t target;
    esp_err_t err = pick_target(hal, &target);
    if (err == ESP_OK) err = check_declared_size(w, cfg, &target);
    if (err != ESP_OK) return err;
    w->hal = hal;
    w->target = target;
    start_parser(w, cfg);
    w->state = OTA_WRITER_HEAD;
    return ESP_OK;
}

esp_err_t ota_writer_resume(ota_writer_t *w, const ota_hal_t *hal, const ota_image_config_t *cfg,
                            uint32_t offset, uint32_t *resume_at)
{
    if (w == NULL || hal == NULL || cfg == NULL || resume_at == NULL) return ESP_ERR_INVALID_ARG;
    *resume_at = 0;
    ota_writer_abort(w);
    ota_partition_t target;
    esp_err_t err = pick_target(hal, &target);
    if (err == ESP_OK) err = check_declared_size(w, cfg, &target);
    if (err != ESP_OK) return err;
    if (offset > target.size) return ESP_ERR_INVALID_ARG;
    w->hal = hal;
    w->target = target;
    start_parser(w, cfg);
    w->state = OTA_WRITER_HEAD;
    uint32_t at = offset - offset % OTA_SECTOR_SIZE;
    if (at == 0) return ESP_OK; /* nothing worth keeping: a fresh begin, head gate included */

    uint8_t buf[512];
    uint32_t pos = 0;
    while (pos < at) {
        uint32_t n = at - pos;
        if (n > sizeof(buf)) n = sizeof(buf);
        err = hal->read(hal->ctx, &w->target, pos, buf, n);
        if (err != ESP_OK) {
            ota_writer_abort(w);
            return err;
        }
        restore_held(pos, buf, n); /* the held byte is not in flash yet: it is always the magic */
        err = ota_image_feed(&w->parser, buf, n);
        if (err != ESP_OK) {
            ota_writer_abort(w);
            return OTA_ERR_IMAGE_RESUME_MISMATCH;
        }
        pos += n;
    }
    /* A prefix of >= 4096 bytes that parsed holds a valid descriptor; it was accepted when first written. */
    if (w->parser.phase == OTA_IMAGE_PHASE_DONE || ota_image_descriptor(&w->parser) == NULL) {
        /* DONE: the whole image fitted below `at`; resuming would only add trailing data. Start over. */
        ota_writer_abort(w);
        return OTA_ERR_IMAGE_RESUME_MISMATCH;
    }
    w->written = at;
    w->erased_end = at;
    w->state = OTA_WRITER_WRITING;
    *resume_at = at;
    return ESP_OK;
}

/* Erases the sectors [erased_end, end) — each sector once, just before data goes into it. */
static esp_err_t erase_up_to(ota_writer_t *w, uint32_t end)
{
    while (w->erased_end < end) {
        esp_err_t err = w->hal->erase_sector(w->hal->ctx, &w->target, w->erased_end);
        if (err != ESP_OK) return err;
        w->erased_end += OTA_SECTOR_SIZE;
    }
    return ESP_OK;
}

/* Programs the stream's next `len` bytes at w->written, except the held byte (offset 0): that one stays
 * erased (0xFF) until ota_writer_end, so the slot never holds a loadable image before it verified. */
static esp_err_t program(ota_writer_t *w, const uint8_t *data, size_t len)
{
    esp_err_t err = erase_up_to(w, w->written + (uint32_t)len);
    if (err != ESP_OK) return err;
    uint32_t at = w->written;
    size_t skip = at < OTA_WRITER_HELD_LEN ? OTA_WRITER_HELD_LEN - at : 0;
    if (skip > len) skip = len;
    if (len > skip) {
        err = w->hal->write(w->hal->ctx, &w->target, at + (uint32_t)skip, data + skip, len - skip);
        if (err != ESP_OK) return err;
    }
    w->written += (uint32_t)len;
    return ESP_OK;
}

/* end()'s last flash step: the held byte, programmed over its erased (or torn) self, then read back.
 * Skipped when it is already 0xE9 (an end() that completed before a cut, then a resume), so every program
 * still lands on bits that can take it. */
static esp_err_t release_held(ota_writer_t *w)
{
    const uint8_t magic = OTA_IMAGE_MAGIC;
    uint8_t b = 0;
    esp_err_t err = w->hal->read(w->hal->ctx, &w->target, 0, &b, 1);
    if (err != ESP_OK || b == magic) return err;
    if (!held_byte_pending(b)) return ESP_ERR_OTA_VALIDATE_FAILED; /* unreachable: end() verified it */
    err = w->hal->write(w->hal->ctx, &w->target, 0, &magic, 1);
    if (err == ESP_OK) err = w->hal->read(w->hal->ctx, &w->target, 0, &b, 1);
    if (err == ESP_OK && b != magic) err = ESP_ERR_OTA_VALIDATE_FAILED; /* the flash did not take it */
    return err;
}

esp_err_t ota_writer_write(ota_writer_t *w, const uint8_t *data, size_t len, size_t *consumed)
{
    if (w == NULL || consumed == NULL || (data == NULL && len > 0)) return ESP_ERR_INVALID_ARG;
    *consumed = 0;
    if (w->state == OTA_WRITER_HEAD) {
        size_t n = OTA_IMAGE_HEAD_LEN - w->head_len;
        if (n > len) n = len;
        esp_err_t err = ota_image_feed(&w->parser, data, n);
        if (err != ESP_OK) return writer_fail(w, err);
        memcpy(w->head + w->head_len, data, n);
        w->head_len += (uint32_t)n;
        *consumed = n;
        if (w->head_len == OTA_IMAGE_HEAD_LEN) w->state = OTA_WRITER_HEAD_READY;
        return ESP_OK;
    }
    if (w->state != OTA_WRITER_WRITING) return ESP_ERR_INVALID_STATE;
    /* Validate first: a refused byte (trailing data, oversize, bad checksum) is never programmed. */
    esp_err_t err = ota_image_feed(&w->parser, data, len);
    if (err != ESP_OK) return writer_fail(w, err);
    err = program(w, data, len);
    if (err != ESP_OK) return writer_fail(w, err);
    *consumed = len;
    return ESP_OK;
}

const ota_app_desc_t *ota_writer_descriptor(const ota_writer_t *w)
{
    if (w->state == OTA_WRITER_IDLE || w->state == OTA_WRITER_HEAD) return NULL;
    return ota_image_descriptor(&w->parser);
}

esp_err_t ota_writer_accept(ota_writer_t *w)
{
    if (w == NULL) return ESP_ERR_INVALID_ARG;
    if (w->state != OTA_WRITER_HEAD_READY) return ESP_ERR_INVALID_STATE;
    /* The session's first flash write: esp_ota_begin's moment (a resume past the head never gets here, and
     * esp_ota_resume does none of it). HEAD_READY always starts at offset 0. */
    esp_err_t err = w->hal->begin_session(w->hal->ctx, &w->target);
    if (err != ESP_OK) return writer_fail(w, err);
    err = program(w, w->head, w->head_len);
    if (err != ESP_OK) return writer_fail(w, err);
    w->state = OTA_WRITER_WRITING;
    return ESP_OK;
}

esp_err_t ota_writer_end(ota_writer_t *w)
{
    if (w == NULL) return ESP_ERR_INVALID_ARG;
    if (w->state != OTA_WRITER_HEAD && w->state != OTA_WRITER_HEAD_READY && w->state != OTA_WRITER_WRITING) {
        return ESP_ERR_INVALID_STATE;
    }
    esp_err_t err = ota_image_finish(&w->parser);
    if (err != ESP_OK) return writer_fail(w, err);
    if (w->state != OTA_WRITER_WRITING) return writer_fail(w, OTA_ERR_IMAGE_TRUNCATED); /* unreachable: a
        complete image is longer than the head, so HEAD states cannot be DONE */
    /* esp_ota_end re-verifies what is in flash: catches bits the flash did not take. The held byte is not
     * in flash yet; the view shows it in place (it is the magic the stream's parser already checked). */
    held_view_t view;
    memset(&view, 0, sizeof(view));
    view.hal.ctx = &view;
    view.hal.read = held_view_read;
    view.inner = w->hal;
    view.target_address = w->target.address;
    uint32_t len = 0;
    err = ota_image_verify_partition(&view.hal, &w->target, &w->parser.cfg, &len, NULL);
    if (err != ESP_OK) {
        bool flash_error = err < OTA_ERR_IMAGE_BASE || err >= OTA_ERR_SIM_BASE;
        /* Image errors on read-back mean the flash does not hold what was streamed. */
        return writer_fail(w, flash_error && err != ESP_ERR_OTA_SMALL_SEC_VER ? err : ESP_ERR_OTA_VALIDATE_FAILED);
    }
    /* The read-back stops at the image's end; a signature block after it is in flash too (written). */
    if (len != w->parser.image_end) return writer_fail(w, ESP_ERR_OTA_VALIDATE_FAILED);
    /* With a trusted key, the signature decides before anything can switch the boot partition (the block
     * was checked against this image's digest as it streamed; here: whose key, and does it verify). */
    if (w->parser.cfg.sign_key != NULL) {
        err = ota_sign_check(w->parser.cfg.sign_key, &w->parser);
        if (err == OTA_ERR_SIGNATURE_MISSING || err == OTA_ERR_SIGNATURE_INVALID) {
            /* The refused image never had its magic byte programmed (held back until here), so the
             * bootloader, which tries every app slot when the selected one does not load
             * (bootloader_utility_load_boot_image), already refuses it. Erasing the first sector as well
             * takes the rest of its header away: a second barrier that does not depend on the held byte.
             * The signature code is what the caller needs; an erase failure leaves the slot unbootable. */
            writer_fail(w, err);
            (void)w->hal->erase_sector(w->hal->ctx, &w->target, 0);
            return err;
        }
        if (err != ESP_OK) return writer_fail(w, err);
    }
    /* Verified (and signed, with a key): only now the image becomes loadable. A cut before or during this
     * program leaves a slot the bootloader refuses (bad magic); the resume path puts the byte back. */
    err = release_held(w);
    if (err != ESP_OK) return writer_fail(w, err);
    w->state = OTA_WRITER_ENDED;
    return ESP_OK;
}

esp_err_t ota_writer_set_boot(ota_writer_t *w)
{
    if (w == NULL) return ESP_ERR_INVALID_ARG;
    if (w->state != OTA_WRITER_ENDED) return ESP_ERR_INVALID_STATE;
    esp_err_t err = w->hal->set_boot(w->hal->ctx, &w->target);
    if (err != ESP_OK) return err;
    ota_writer_abort(w);
    return ESP_OK;
}
