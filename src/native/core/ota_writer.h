/*
 * ota_writer.h — the streaming OTA writer (ota_writer_*): begin/resume, write, accept, end, abort, set
 * boot, over the hardware layer (ota_hal.h). It erases the target slot sector by sector as data arrives
 * (never the whole slot up front), and writes NOTHING (not even an erase) until the first
 * OTA_IMAGE_HEAD_LEN bytes have been validated and the caller has accepted the app descriptor, so a policy
 * refusal (wrong project, downgrade) leaves the flash untouched. No retries, no policy, no allocation.
 *
 * Threading: not re-entrant on the same writer; use one writer per thread.
 *
 * Resume design (why re-hash and not a checkpoint): ota_writer_resume() rounds the caller's offset DOWN
 * to a 4 KiB sector boundary and re-reads the already written prefix [0, that boundary) from flash through
 * a fresh parser. That rebuilds the running SHA-256 and XOR checksum exactly, re-checks the header and
 * descriptor, and needs no persistent state besides the offset the caller keeps anyway. A checkpoint would
 * have to store an mbedTLS context (its layout differs between mbedTLS 2.28 and 3.x) in a second flash
 * area that itself needs power-cut-safe writes. Rounding down to a sector matters: a power cut during the
 * last write may have programmed some bytes after the caller's offset; the next write re-erases the sector
 * it starts in, so those bytes never AND into new data. The cost is one read of the prefix (flash reads
 * are an order of magnitude faster than programming). A prefix that still parses but whose data bytes
 * were damaged is caught by the SHA-256 at ota_writer_end(), which also re-reads the whole image.
 * A signature block after the image is part of the stream: written, resumed and re-read like image bytes.
 *
 * The held magic byte (why nothing unverified is ever bootable): the ESP-IDF bootloader, when the app
 * otadata selects does not load, tries every other app slot (bootloader_utility_load_boot_image), and it
 * refuses a slot whose first byte is not the image magic 0xE9 before anything else, even when it skips
 * validation (verify_image_header in esp_image_format.c). So the writer never programs slot offset 0
 * during the stream: it stays erased (0xFF) and the slot is refused by the bootloader until
 * ota_writer_end() has verified the whole image (read-back hash, and the signature when a key is
 * configured); only then is 0xE9 programmed there (NOR programming clears bits, 0xFF -> 0xE9 needs no
 * erase) and read back. A download that stalls or dies after its last byte, or any time before end(),
 * leaves a slot no fallback boots. Nothing new must survive a power cut: the held byte is always 0xE9
 * (the parser refuses anything else), so ota_writer_resume() and the read-back put it back in what they
 * read from flash when offset 0 holds 0xFF or a byte torn by a cut during end()'s program (every bit of
 * 0xE9 still set); any other value stays as read and is refused as OTA_ERR_IMAGE_MAGIC.
 * Flash encryption (not supported, see ota_esp32.h) would need a whole 16-byte block held, whose bytes
 * are not constant: its resume would have to fetch them again.
 */
#ifndef OTA_WRITER_H
#define OTA_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ota_hal.h"
#include "ota_image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------------------
 * Streaming writer: esp_ota_begin / esp_ota_resume / esp_ota_write / esp_ota_end / esp_ota_abort /
 * esp_ota_set_boot_partition, with the descriptor gate.
 *
 * States: IDLE -(begin)-> HEAD -(288 valid bytes)-> HEAD_READY -(accept)-> WRITING -(end ok)-> ENDED
 *         -(set_boot)-> IDLE.  resume goes IDLE -> WRITING (prefix already in flash = accepted before).
 *         Any error in HEAD/WRITING -> FAILED (sticky; only abort or a new begin leaves it).
 *         abort goes anywhere -> IDLE.
 * ---------------------------------------------------------------------------------------------------- */
typedef enum ota_writer_state {
    OTA_WRITER_IDLE = 0,
    OTA_WRITER_HEAD,       /* buffering the first OTA_IMAGE_HEAD_LEN bytes in RAM; flash untouched */
    OTA_WRITER_HEAD_READY, /* descriptor known; waiting for ota_writer_accept or ota_writer_abort */
    OTA_WRITER_WRITING,
    OTA_WRITER_ENDED,      /* image complete and verified in flash; ready for ota_writer_set_boot */
    OTA_WRITER_FAILED,
} ota_writer_state_t;

/* The sizes behind a writer's size refusal (ESP_ERR_INVALID_SIZE from begin/resume, OTA_ERR_IMAGE_TOO_LARGE /
 * OTA_ERR_IMAGE_PAST_END from write/end); zeroed by begin, resume and abort, set only by a size refusal, so
 * read it right after one. Plain numbers for the bindings to pass on; the core draws no conclusion. */
/* Bytes at the start of the slot that are programmed only by ota_writer_end, after verification. */
#define OTA_WRITER_HELD_LEN 1u

typedef struct ota_size_refusal {
    uint64_t needed;   /* bytes the image needs at least (ota_image_parser_t.need_end); 0 for begin/resume */
    uint32_t declared; /* the declared image size (cfg.image_size), 0 when not declared */
    uint32_t slot;     /* size of the target slot */
} ota_size_refusal_t;

typedef struct ota_writer {
    const ota_hal_t *hal;          /* borrowed; must outlive the writer */
    ota_writer_state_t state;
    esp_err_t error;               /* why FAILED */
    ota_partition_t target;        /* the slot being written (next update partition) */
    uint32_t written;              /* image bytes in flash (= offset of the next byte) */
    uint32_t erased_end;           /* [0, erased_end) of the target has been erased in this session */
    ota_image_parser_t parser;
    uint8_t head[OTA_IMAGE_HEAD_LEN];
    uint32_t head_len;
    ota_size_refusal_t refusal;    /* set with every size refusal (see ota_size_refusal_t) */
} ota_writer_t;

/* Zeroes the writer (state IDLE). Call once before first use. Never fails. */
void ota_writer_init(ota_writer_t *w);

/*
 * esp_ota_begin: picks the next update partition (the OTA slot after the running one; ota_0 when the
 * factory app runs), checks the declared size, and enters HEAD. Writes nothing.
 * cfg->max_size is ignored (the slot size is used). An unfinished session is aborted first.
 * Errors: ESP_ERR_INVALID_ARG (NULL), ESP_ERR_NOT_FOUND (no running partition or no OTA slot),
 *   ESP_ERR_OTA_PARTITION_CONFLICT (the only OTA slot is the running one),
 *   ESP_ERR_OTA_ROLLBACK_INVALID_STATE (running app is PENDING_VERIFY: mark it valid first),
 *   ESP_ERR_INVALID_SIZE (cfg->image_size larger than the slot; w->refusal holds both sizes), flash errors
 *   from get_state.
 */
esp_err_t ota_writer_begin(ota_writer_t *w, const ota_hal_t *hal, const ota_image_config_t *cfg);

/*
 * esp_ota_resume: continues an interrupted download into the same next update partition. `offset` is the
 * number of bytes the caller knows were written; it is rounded DOWN to a sector boundary and the prefix is
 * re-read and re-parsed (see the header comment). *resume_at receives the offset the caller must restart
 * the stream from (0 means: this is a fresh begin; the head gate applies again). With resume_at > 0 the
 * state is WRITING and ota_writer_descriptor() returns the stored image's descriptor (compare it with
 * what you expect before writing on).
 * Errors: those of ota_writer_begin, ESP_ERR_INVALID_ARG (offset > slot size),
 *   OTA_ERR_IMAGE_RESUME_MISMATCH (the flash prefix is not a valid image prefix, or a whole image already
 *   ends below the rounded offset; start again with begin), flash errors from read.
 */
esp_err_t ota_writer_resume(ota_writer_t *w, const ota_hal_t *hal, const ota_image_config_t *cfg,
                            uint32_t offset, uint32_t *resume_at);

/*
 * esp_ota_write: consumes up to len bytes. *consumed (required) is how many were taken: all of them,
 * except when this call completed the head: then it stops right after byte OTA_IMAGE_HEAD_LEN, the state
 * is HEAD_READY, and the caller must read ota_writer_descriptor() and call ota_writer_accept() before
 * passing the rest again (or ota_writer_abort()). Nothing reaches flash before accept.
 * In WRITING, bytes are validated first, then the sectors they fall into are erased (each once), then
 * programmed — all but the held byte at slot offset 0, which only ota_writer_end programs.
 * Errors (all but INVALID_ARG/INVALID_STATE move to FAILED): ESP_ERR_INVALID_ARG (NULL),
 *   ESP_ERR_INVALID_STATE (not HEAD/WRITING, e.g. HEAD_READY or FAILED), every ota_image_feed error
 *   (OTA_ERR_IMAGE_TOO_LARGE / OTA_ERR_IMAGE_PAST_END also fill w->refusal; the chunk that holds the
 *   refusing segment header is not programmed, so nothing of that segment reaches flash),
 *   flash errors from erase_sector/write.
 */
esp_err_t ota_writer_write(ota_writer_t *w, const uint8_t *data, size_t len, size_t *consumed);

/* The candidate image's descriptor (HEAD_READY and later, or after resume); NULL otherwise. */
const ota_app_desc_t *ota_writer_descriptor(const ota_writer_t *w);

/* Accepts the descriptor: hal->begin_session (esp_ota_begin's flash side: on both layers, with rollback
 * enabled, the inactive otadata entry is erased unless it names the running slot), then erases the first
 * sector and programs the buffered head from offset OTA_WRITER_HELD_LEN on; state WRITING.
 * Errors: ESP_ERR_INVALID_STATE (not HEAD_READY), errors of begin_session, flash errors (state FAILED). */
esp_err_t ota_writer_accept(ota_writer_t *w);

/*
 * esp_ota_end: the stream is over. Checks that a complete image was streamed (checksum and SHA-256 were
 * checked as they arrived), then re-reads the whole image from flash and verifies it again; then, when the
 * config carried a signing key (ota_image_config_t.sign_key), checks the signature block (ota_sign_check).
 * State ENDED: only now can ota_writer_set_boot switch the boot partition.
 * Last, and only when all of that passed, it programs the held magic byte at slot offset 0 (skipped when it
 * is already there) and reads it back: before that the slot is not bootable (see "The held magic byte").
 * Errors (state FAILED): ESP_ERR_INVALID_STATE (not HEAD/HEAD_READY/WRITING), OTA_ERR_IMAGE_EMPTY,
 *   OTA_ERR_IMAGE_TRUNCATED, a sticky feed error, ESP_ERR_OTA_VALIDATE_FAILED (flash read-back does not
 *   verify, or the held byte did not take), flash errors from read and from the held byte's program,
 *   OTA_ERR_SIGNATURE_MISSING / OTA_ERR_SIGNATURE_INVALID (key configured; the held byte is never
 *   programmed and the target's first sector is erased as well). After any error the slot is not bootable.
 */
esp_err_t ota_writer_end(ota_writer_t *w);

/* esp_ota_abort: drops the session (any state), frees the parser. The partial slot content stays; it is never
 * booted: no set_boot happened, once accept() ran the inactive otadata entry, the rollback target, no
 * longer names it (begin_session erased it unless it named the running app), and its magic byte is held
 * back, so the bootloader's fallback over all app slots refuses it too.
 * Never fails. Safe to call twice. */
void ota_writer_abort(ota_writer_t *w);

/* esp_ota_set_boot_partition for the ENDED image; state IDLE on success.
 * Errors: ESP_ERR_INVALID_STATE (not ENDED), errors of hal->set_boot (state stays ENDED: retry allowed). */
esp_err_t ota_writer_set_boot(ota_writer_t *w);

#ifdef __cplusplus
}
#endif

#endif /* OTA_WRITER_H */
