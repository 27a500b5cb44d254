/*
 * ota_image.c — streaming validator of ESP32 app images (esp_image_header_t, segments, esp_app_desc_t,
 * XOR checksum, appended SHA-256). Pure: no flash access except ota_image_verify_partition, which reads
 * through the hal. Not here: the ECDSA check of the signature block (ota_sign.c), ESP-IDF's secure-boot
 * signatures, flash encryption, segment load-address checks.
 *
 * Image grammar (docs/formats.md, "App image"; ESP-IDF esp_app_format.h):
 *   image    = header(24) segment{segment_count} padding checksum(1) [sha256(32) if hash_appended]
 *   segment  = load_addr(u32) data_len(u32) data(data_len)      ; data_len % 4 == 0
 *   padding  = zero bytes so that the checksum byte ends a 16-byte block
 *   checksum = 0xEF XOR every segment data byte
 *   sha256   = SHA-256 of every byte from the header through the checksum
 *   the first segment's data starts with the 256-byte app descriptor (magic 0xABCD5432)
 *   stream   = image [sigblock(152)]   ; docs/signing.md; a block only after an image with a sha256
 * The parser is a byte-position state machine, so any split of the stream gives the same result.
 */
#include <string.h>

#include "ota_image.h"
#include "ota_sha256_compat.h"

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

static void copy_field(char *dst, const uint8_t *src, size_t n)
{
    size_t i = 0;
    while (i < n && src[i] != 0) {
        dst[i] = (char)src[i];
        i++;
    }
    dst[i] = '\0';
}

void ota_app_desc_decode(const uint8_t raw[OTA_APP_DESC_LEN], ota_app_desc_t *out)
{
    memset(out, 0, sizeof(*out));
    out->magic_word = le32(raw + 0);
    out->secure_version = le32(raw + 4);
    copy_field(out->version, raw + 16, 32);
    copy_field(out->project_name, raw + 48, 32);
    copy_field(out->time, raw + 80, 16);
    copy_field(out->date, raw + 96, 16);
    copy_field(out->idf_ver, raw + 112, 32);
    memcpy(out->app_elf_sha256, raw + 144, 32);
}

void ota_app_desc_set_header(const uint8_t header[OTA_IMAGE_HEADER_LEN], ota_app_desc_t *out)
{
    out->chip_id = (uint16_t)(header[12] | (header[13] << 8));
    out->min_chip_rev_full = (uint16_t)(header[15] | (header[16] << 8));
    out->max_chip_rev_full = (uint16_t)(header[17] | (header[18] << 8));
}

void ota_app_desc_decode_head(const uint8_t head[OTA_IMAGE_HEAD_LEN], ota_app_desc_t *out)
{
    ota_app_desc_decode(head + OTA_IMAGE_HEADER_LEN + OTA_IMAGE_SEGMENT_HEADER_LEN, out);
    ota_app_desc_set_header(head, out);
}

static esp_err_t fail(ota_image_parser_t *p, esp_err_t err)
{
    p->phase = OTA_IMAGE_PHASE_FAILED;
    p->error = err;
    return err;
}

static void enter(ota_image_parser_t *p, ota_image_phase_t phase, uint32_t len)
{
    p->phase = phase;
    p->phase_have = 0;
    p->phase_len = len;
}

void ota_image_init(ota_image_parser_t *p, const ota_image_config_t *cfg)
{
    memset(p, 0, sizeof(*p));
    p->cfg = *cfg;
    p->error = ESP_OK;
    p->checksum = OTA_IMAGE_CHECKSUM_SEED;
    enter(p, OTA_IMAGE_PHASE_HEADER, OTA_IMAGE_HEADER_LEN);
    mbedtls_sha256_init(&p->sha);
    /* Cannot fail for SHA-256 in software (mbedTLS only fails for hardware accelerators); a failure would
     * surface as OTA_ERR_IMAGE_HASH at the end because the digest could not match. */
    (void)OTA_SHA256_STARTS(&p->sha);
}

void ota_image_free(ota_image_parser_t *p)
{
    mbedtls_sha256_free(&p->sha);
}

/* The segment after the current one, or the padding + checksum when it was the last. */
static void next_segment(ota_image_parser_t *p)
{
    p->segment++;
    if (p->segment < p->segments) {
        enter(p, OTA_IMAGE_PHASE_SEGMENT_HEADER, OTA_IMAGE_SEGMENT_HEADER_LEN);
    } else {
        uint32_t pad = 15u - (p->offset % 16u);
        enter(p, OTA_IMAGE_PHASE_PADDING, pad + 1u);
    }
}

/* The image end if the segment data known so far ended at `data_end` and every segment header still to
 * come were empty: remaining headers, zero padding, the checksum byte, the hash when appended. */
static uint64_t end_after(const ota_image_parser_t *p, uint64_t data_end, uint32_t headers_to_come)
{
    uint64_t e = data_end + (uint64_t)OTA_IMAGE_SEGMENT_HEADER_LEN * headers_to_come;
    e += (15u - (uint32_t)(e % 16u)) + 1u;
    if (p->hash_appended) e += OTA_IMAGE_HASH_LEN;
    return e;
}

/* Refuses when the image's end as known so far (a lower bound) passes the slot or the declared size. */
static esp_err_t check_end(ota_image_parser_t *p, uint64_t end)
{
    p->need_end = end;
    if (p->cfg.max_size != 0 && end > p->cfg.max_size) return fail(p, OTA_ERR_IMAGE_TOO_LARGE);
    if (p->cfg.image_size != 0 && end > p->cfg.image_size) return fail(p, OTA_ERR_IMAGE_PAST_END);
    return ESP_OK;
}

static esp_err_t header_done(ota_image_parser_t *p)
{
    const uint8_t *h = p->header;
    p->segments = h[1];
    if (p->segments == 0 || p->segments > OTA_IMAGE_MAX_SEGMENTS) return fail(p, OTA_ERR_IMAGE_SEGMENT_COUNT);
    uint16_t chip = (uint16_t)(h[12] | (h[13] << 8));
    if (chip != p->cfg.chip_id) return fail(p, OTA_ERR_IMAGE_CHIP);
    /* ESP-IDF's rule: any non-zero hash_appended byte means a SHA-256 follows the checksum
     * (components/bootloader_support/src/esp_image_format.c, process_appended_hash():
     * `if (data->image.hash_appended)`). src/tools/esp-image.ts applies the same rule. */
    p->hash_appended = h[23] != 0;
    if (p->cfg.require_hash && !p->hash_appended) return fail(p, OTA_ERR_IMAGE_HASH_MISSING);
    /* The smallest image this header allows: every segment header, the descriptor, the tail. */
    esp_err_t err = check_end(p, end_after(p, (uint64_t)OTA_IMAGE_HEADER_LEN + OTA_IMAGE_SEGMENT_HEADER_LEN +
                                                  OTA_APP_DESC_LEN, p->segments - 1u));
    if (err != ESP_OK) return err;
    p->segment = 0;
    enter(p, OTA_IMAGE_PHASE_SEGMENT_HEADER, OTA_IMAGE_SEGMENT_HEADER_LEN);
    return ESP_OK;
}

static esp_err_t segment_header_done(ota_image_parser_t *p)
{
    uint32_t data_len = le32(p->small + 4);
    if (data_len % 4u != 0) return fail(p, OTA_ERR_IMAGE_SEGMENT_UNALIGNED);
    if (p->segment == 0 && data_len < OTA_APP_DESC_LEN) return fail(p, OTA_ERR_IMAGE_DESC_MAGIC);
    uint64_t seg_end = (uint64_t)p->offset + data_len;
    /* Early size refusal: before any byte of this segment's data is taken, the end as known so far
     * (this segment, the headers still to come, padding, checksum, hash) must fit. Exact for the last
     * segment. */
    uint32_t to_come = p->segments - p->segment - 1u;
    esp_err_t err = check_end(p, end_after(p, seg_end, to_come));
    if (err != ESP_OK) return err;
    if (to_come == 0) p->image_len = (uint32_t)p->need_end;
    if (data_len == 0) {
        next_segment(p);
    } else {
        enter(p, OTA_IMAGE_PHASE_SEGMENT_DATA, data_len);
    }
    return ESP_OK;
}

static esp_err_t desc_done(ota_image_parser_t *p)
{
    ota_app_desc_decode(p->desc_raw, &p->desc);
    ota_app_desc_set_header(p->header, &p->desc);
    if (p->desc.magic_word != OTA_APP_DESC_MAGIC) return fail(p, OTA_ERR_IMAGE_DESC_MAGIC);
    if (p->desc.secure_version < p->cfg.min_secure_version) return fail(p, ESP_ERR_OTA_SMALL_SEC_VER);
    p->desc_ready = true;
    return ESP_OK;
}

static const uint8_t SIG_MAGIC[4] = {0x53, 0x4F, 0x53, 0x47}; /* "SOSG" */

static uint16_t le16(const uint8_t *b)
{
    return (uint16_t)(b[0] | (b[1] << 8));
}

/* The block is complete: its structure must describe this image. The key and the ECDSA signature are
 * ota_sign_check's (only when a key is configured). */
static esp_err_t sig_done(ota_image_parser_t *p)
{
    const uint8_t *b = p->sig_raw;
    uint32_t der_len = le16(b + 6);
    bool ok = p->hash_appended && b[4] == OTA_SIG_VERSION && b[5] == OTA_SIG_ALG_ECDSA_P256_SHA256 &&
              der_len >= OTA_SIG_DER_MIN && der_len <= OTA_SIG_DER_MAX && le32(b + 8) == p->image_end &&
              le32(b + 12) == 0 && memcmp(b + OTA_SIG_AT_DIGEST, p->image_hash, OTA_IMAGE_HASH_LEN) == 0;
    for (uint32_t k = OTA_SIG_AT_DER + der_len; ok && k < OTA_SIG_BLOCK_LEN; k++) ok = b[k] == 0;
    if (!ok) return fail(p, OTA_ERR_SIGNATURE_INVALID);
    p->sig_present = true;
    enter(p, OTA_IMAGE_PHASE_DONE, 0);
    return ESP_OK;
}

/* Bytes after the image: the signature block (once), byte by byte against the magic, else trailing data. */
static esp_err_t feed_after_image(ota_image_parser_t *p, const uint8_t *d, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        if (p->phase == OTA_IMAGE_PHASE_DONE) {
            if (p->sig_present || p->offset != p->image_end) return fail(p, OTA_ERR_IMAGE_TRAILING_DATA);
            enter(p, OTA_IMAGE_PHASE_SIGNATURE, OTA_SIG_BLOCK_LEN);
        }
        if (p->phase_have < sizeof(SIG_MAGIC) && d[k] != SIG_MAGIC[p->phase_have]) {
            return fail(p, OTA_ERR_IMAGE_TRAILING_DATA);
        }
        p->sig_raw[p->phase_have++] = d[k];
        p->offset++;
        if (p->phase_have == p->phase_len) return sig_done(p);
    }
    return ESP_OK;
}

esp_err_t ota_image_feed(ota_image_parser_t *p, const uint8_t *data, size_t len)
{
    if (len > 0 && data == NULL) return ESP_ERR_INVALID_ARG;
    if (p->phase == OTA_IMAGE_PHASE_FAILED) return p->error;
    size_t i = 0;
    while (i < len) {
        /* The structure checks keep every byte within the limits; these two are a second line of defence
         * (the header's bytes before its own check). */
        if (p->offset >= p->cfg.max_size && p->cfg.max_size != 0) return check_end(p, (uint64_t)p->offset + 1u);
        if (p->offset >= p->cfg.image_size && p->cfg.image_size != 0) return check_end(p, (uint64_t)p->offset + 1u);
        size_t n = p->phase_len - p->phase_have;
        if (p->phase == OTA_IMAGE_PHASE_DONE) n = 1; /* the first byte after the image */
        if (n > len - i) n = len - i;
        if (p->cfg.max_size != 0 && n > p->cfg.max_size - p->offset) n = p->cfg.max_size - p->offset;
        if (p->cfg.image_size != 0 && n > p->cfg.image_size - p->offset) n = p->cfg.image_size - p->offset;
        const uint8_t *d = data + i;
        if (p->phase == OTA_IMAGE_PHASE_DONE || p->phase == OTA_IMAGE_PHASE_SIGNATURE) {
            esp_err_t e = feed_after_image(p, d, n);
            if (e != ESP_OK) return e;
            i += n;
            continue;
        }
        esp_err_t err = ESP_OK;
        switch (p->phase) {
        case OTA_IMAGE_PHASE_HEADER:
            if (p->phase_have == 0 && d[0] != OTA_IMAGE_MAGIC) return fail(p, OTA_ERR_IMAGE_MAGIC);
            memcpy(p->header + p->phase_have, d, n);
            break;
        case OTA_IMAGE_PHASE_SEGMENT_HEADER:
            memcpy(p->small + p->phase_have, d, n);
            break;
        case OTA_IMAGE_PHASE_SEGMENT_DATA: {
            uint8_t x = p->checksum;
            for (size_t k = 0; k < n; k++) x ^= d[k];
            p->checksum = x;
            if (p->segment == 0 && p->phase_have < OTA_APP_DESC_LEN) {
                size_t m = OTA_APP_DESC_LEN - p->phase_have;
                if (m > n) m = n;
                memcpy(p->desc_raw + p->phase_have, d, m);
            }
            break;
        }
        case OTA_IMAGE_PHASE_PADDING:
            break;
        case OTA_IMAGE_PHASE_HASH:
            memcpy(p->small + p->phase_have, d, n);
            break;
        default:
            return fail(p, ESP_ERR_INVALID_STATE); /* unreachable: DONE/FAILED handled above */
        }
        if (p->phase != OTA_IMAGE_PHASE_HASH) (void)OTA_SHA256_UPDATE(&p->sha, d, n);
        uint32_t before = p->phase_have;
        p->phase_have += (uint32_t)n;
        p->offset += (uint32_t)n;
        i += n;

        switch (p->phase) {
        case OTA_IMAGE_PHASE_HEADER:
            if (p->phase_have == p->phase_len) err = header_done(p);
            break;
        case OTA_IMAGE_PHASE_SEGMENT_HEADER:
            if (p->phase_have == p->phase_len) err = segment_header_done(p);
            break;
        case OTA_IMAGE_PHASE_SEGMENT_DATA:
            if (p->segment == 0 && before < OTA_APP_DESC_LEN && p->phase_have >= OTA_APP_DESC_LEN) {
                err = desc_done(p);
                if (err != ESP_OK) return err;
            }
            if (p->phase_have == p->phase_len) next_segment(p);
            break;
        case OTA_IMAGE_PHASE_PADDING:
            if (p->phase_have == p->phase_len) {
                if (d[n - 1] != p->checksum) return fail(p, OTA_ERR_IMAGE_CHECKSUM);
                if (p->hash_appended) {
                    enter(p, OTA_IMAGE_PHASE_HASH, OTA_IMAGE_HASH_LEN);
                } else {
                    p->image_end = p->offset;
                    enter(p, OTA_IMAGE_PHASE_DONE, 0);
                }
            }
            break;
        case OTA_IMAGE_PHASE_HASH:
            if (p->phase_have == p->phase_len) {
                uint8_t digest[32];
                if (OTA_SHA256_FINISH(&p->sha, digest) != 0) return fail(p, OTA_ERR_IMAGE_HASH);
                if (memcmp(digest, p->small, 32) != 0) return fail(p, OTA_ERR_IMAGE_HASH);
                memcpy(p->image_hash, digest, OTA_IMAGE_HASH_LEN);
                p->image_end = p->offset;
                enter(p, OTA_IMAGE_PHASE_DONE, 0);
            }
            break;
        default:
            break;
        }
        if (err != ESP_OK) return err;
    }
    return ESP_OK;
}

esp_err_t ota_image_finish(ota_image_parser_t *p)
{
    if (p->phase == OTA_IMAGE_PHASE_FAILED) return p->error;
    if (p->phase == OTA_IMAGE_PHASE_DONE) return ESP_OK;
    if (p->offset == 0) return fail(p, OTA_ERR_IMAGE_EMPTY);
    return fail(p, OTA_ERR_IMAGE_TRUNCATED);
}

const ota_app_desc_t *ota_image_descriptor(const ota_image_parser_t *p)
{
    return p->desc_ready ? &p->desc : NULL;
}

uint32_t ota_image_wanted(const ota_image_parser_t *p)
{
    if (p->phase == OTA_IMAGE_PHASE_DONE || p->phase == OTA_IMAGE_PHASE_FAILED) return 0;
    return p->phase_len - p->phase_have;
}

esp_err_t ota_image_verify_partition(const ota_hal_t *hal, const ota_partition_t *part,
                                     const ota_image_config_t *cfg, uint32_t *image_len, ota_app_desc_t *desc)
{
    ota_image_config_t c = *cfg;
    if (c.max_size == 0 || c.max_size > part->size) c.max_size = part->size;
    c.image_size = 0;
    ota_image_parser_t p;
    ota_image_init(&p, &c);
    uint8_t buf[512];
    esp_err_t err = ESP_OK;
    for (;;) {
        uint32_t want = ota_image_wanted(&p);
        if (want == 0) break;
        if (want > sizeof(buf)) want = sizeof(buf);
        if (p.offset >= part->size) break; /* finish reports TRUNCATED */
        if (want > part->size - p.offset) want = part->size - p.offset;
        err = hal->read(hal->ctx, part, p.offset, buf, want);
        if (err != ESP_OK) break;
        err = ota_image_feed(&p, buf, want);
        if (err != ESP_OK) break;
    }
    if (err == ESP_OK) err = ota_image_finish(&p);
    if (err == ESP_OK) {
        if (image_len) *image_len = p.offset;
        if (desc) *desc = p.desc;
    }
    ota_image_free(&p);
    return err;
}
