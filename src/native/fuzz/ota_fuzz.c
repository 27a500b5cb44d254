/*
 * ota_fuzz.c — libFuzzer target over the C core's streaming image parser and writer, run on the real host
 * flash layer (src/native/host/ota_host.c over an in-memory file, memfd_create) and the simulated
 * bootloader. Built and run by scripts/fuzz.sh with clang -fsanitize=fuzzer,address,undefined
 * -fno-sanitize-recover=all; a crash file reruns with `build/fuzz/ota_fuzz <file>`.
 *
 * What it is not: a unit test of each function (test/native/ does that through N-API), and not built into
 * the product. It links the core and the host layer exactly as the N-API module does.
 *
 * Input grammar (so libFuzzer mutates the chunking and the scenario along with the image bytes):
 *   input   = control(8) payload
 *   control[0] flags   bit0 require_hash      bit1 declare image_size      bit2 min_secure_version = 2
 *                      bits3-5 mode: 0 plain install, 1 refuse at the descriptor gate, 2 disconnect +
 *                              resume, 3 disconnect + reboot + resume, 4 power cut, 5 garbage otadata
 *                              then a known-good update, 6 plain install with the signing key configured
 *                              (docs/signing.md), 7 plain install
 *                      bit6 start from ota_0 running (VALID, target ota_1) instead of the factory app
 *                      bit7 declared size = payload length + (int8)control[7] instead of exact
 *   control[1] chunks  low nibble k: chunk lengths are 1 + rng % 2^k; high nibble 0xF: always 2^k
 *   control[2..5]      u32 seed of the chunk generator (also the power-cut budget/seed and resume slack)
 *   control[6]         where the disconnect / cut happens: payload length * control[6] / 256
 *   control[7]         int8 declared-size delta (with bit7)
 *   payload            the image bytes streamed (mode 5: the first 64 bytes are the two otadata entries);
 *                      may end with a signature block
 * The signing key (mode 6): the P-256 public key (DER) in the file $OTA_FUZZ_SIGNING_KEY, which scripts/fuzz.sh
 * sets to the key scripts/fuzz-seeds.ts signs the signed seeds with; without it, the curve's generator
 * point as the key (nothing verifies, MISSING and INVALID still run).
 *
 * Invariants checked (abort() = a crash libFuzzer saves), beyond ASan/UBSan:
 *   - the parser gives the same verdict (code; length and descriptor on success) for one chunk, for the
 *     input's random chunking, and for chunks of exactly ota_image_wanted() bytes; with a key, the verdict
 *     includes ota_sign_check's (so the writer's must equal it); bytes after a complete image are a
 *     signature block (then exactly 152 of them) or refused;
 *   - slot offset 0 (the image's magic) is programmed only by end(), as its last step, once the image
 *     verified; a download cut before end(), or refused, leaves it unprogrammed (the bootloader's
 *     fall-back over all app slots cannot load it);
 *   - the writer's verdict equals the parser's; nothing is erased or programmed before accept; the hal's
 *     begin_session (esp_ota_begin's otadata step) comes once, at accept, before the slot's first erase; every
 *     program lands on erased (0xFF) bytes inside the target slot; each sector is erased at most once per
 *     session and only when data goes into it (never the whole slot up front);
 *   - on success the slot holds the payload, set boot works and the reboot boots it PENDING_VERIFY;
 *     on refusal set boot is refused, otadata and every byte outside the target slot are unchanged and
 *     the device boots the old app; abort is safe twice;
 *   - resume after a disconnect or a reboot gives the same verdict as an uninterrupted stream;
 *   - after a power cut at any byte of erase/program (stream, set boot, the boot's otadata rewrite, mark
 *     valid) the device boots the old app or, only if it verifies, the new one, with consistent otadata;
 *     after a cut mid-download, resume from the reported offset completes with the uninterrupted verdict;
 *   - from any otadata content that still boots, a good update takes effect on the next boot.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../core/ota_image.h"
#include "../core/ota_layout.h"
#include "../core/ota_otadata.h"
#include "../core/ota_sign.h"
#include "../core/ota_writer.h"
#include "../core/ota_sha256_compat.h"
#include "../host/ota_host.h"

/* ---- invariant failures ------------------------------------------------------------------------- */

#define CHECK(cond, ...)                                                                                   \
    do {                                                                                                   \
        if (!(cond)) {                                                                                     \
            fprintf(stderr, "\nota_fuzz: invariant failed at %s:%d: %s\n  ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                                                  \
            fprintf(stderr, "\n");                                                                         \
            abort();                                                                                       \
        }                                                                                                  \
    } while (0)

/* ---- the simulated device: a small two-OTA layout ------------------------------------------------- */

#define FLASH_SIZE 0x1A000u
#define OTADATA_ADDR 0x9000u
#define FACTORY_ADDR 0xB000u
#define SLOT_SIZE 0x5000u /* 20 KiB: large enough for the seeds, small enough that "oversize" is reachable */
#define OTA0_ADDR 0x10000u
#define OTA1_ADDR 0x15000u
#define SLOT_SECTORS (SLOT_SIZE / OTA_SECTOR_SIZE)
#define CHIP OTA_CHIP_ESP32

static uint8_t pristine[2][FLASH_SIZE]; /* [0]: factory runs; [1]: ota_0 runs (VALID), ota_1 holds junk */
static uint8_t good_update[2048];       /* a valid image "9.9.9" used by mode 5 */
static size_t good_update_len;
static int flash_fd = -1;
static ota_sign_key_t sign_key; /* mode 6 */

/* The generator point of P-256 as a DER SubjectPublicKeyInfo: a valid key nobody holds the private half of. */
static const uint8_t P256_G_SPKI[91] = {
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48,
    0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04, 0x6B, 0x17, 0xD1, 0xF2, 0xE1, 0x2C, 0x42, 0x47, 0xF8,
    0xBC, 0xE6, 0xE5, 0x63, 0xA4, 0x40, 0xF2, 0x77, 0x03, 0x7D, 0x81, 0x2D, 0xEB, 0x33, 0xA0, 0xF4, 0xA1, 0x39,
    0x45, 0xD8, 0x98, 0xC2, 0x96, 0x4F, 0xE3, 0x42, 0xE2, 0xFE, 0x1A, 0x7F, 0x9B, 0x8E, 0xE7, 0xEB, 0x4A, 0x7C,
    0x0F, 0x9E, 0x16, 0x2B, 0xCE, 0x33, 0x57, 0x6B, 0x31, 0x5E, 0xCE, 0xCB, 0xB6, 0x40, 0x68, 0x37, 0xBF, 0x51,
    0xF5,
};

static void load_sign_key(void)
{
    uint8_t der[OTA_SIGN_KEY_DER_LEN];
    const char *file = getenv("OTA_FUZZ_SIGNING_KEY");
    if (file != NULL && *file != 0) {
        FILE *f = fopen(file, "rb");
        CHECK(f != NULL, "OTA_FUZZ_SIGNING_KEY=%s cannot be opened", file);
        size_t n = fread(der, 1, sizeof(der), f);
        fclose(f);
        CHECK(ota_sign_key_set(&sign_key, der, n) == ESP_OK, "OTA_FUZZ_SIGNING_KEY=%s is not a P-256 DER public key", file);
        return;
    }
    CHECK(ota_sign_key_set(&sign_key, P256_G_SPKI, sizeof(P256_G_SPKI)) == ESP_OK, "the generator point key");
}
static char flash_path[64];

static void put32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)v;
    b[1] = (uint8_t)(v >> 8);
    b[2] = (uint8_t)(v >> 16);
    b[3] = (uint8_t)(v >> 24);
}

static void table_entry(uint8_t *e, uint8_t type, uint8_t subtype, uint32_t addr, uint32_t size, const char *label)
{
    memset(e, 0, 32);
    e[0] = 0xAA;
    e[1] = 0x50;
    e[2] = type;
    e[3] = subtype;
    put32(e + 4, addr);
    put32(e + 8, size);
    strncpy((char *)e + 12, label, 16);
}

/* A valid one-segment image with the given version (header, descriptor, filler, checksum, SHA-256). */
static size_t build_image(uint8_t *out, size_t cap, const char *version, uint32_t seg_len, uint8_t fill)
{
    size_t body = OTA_IMAGE_HEADER_LEN + OTA_IMAGE_SEGMENT_HEADER_LEN + seg_len;
    size_t padded = body + (15u - body % 16u) + 1u;
    size_t total = padded + OTA_IMAGE_HASH_LEN;
    CHECK(total <= cap && seg_len >= OTA_APP_DESC_LEN && seg_len % 4 == 0, "build_image: bad size");
    memset(out, 0, total);
    out[0] = OTA_IMAGE_MAGIC;
    out[1] = 1;
    out[2] = 2;
    out[3] = 0x20;
    put32(out + 4, 0x400D0018u);
    out[12] = (uint8_t)CHIP;
    out[13] = (uint8_t)(CHIP >> 8);
    out[23] = 1;
    uint8_t *seg = out + OTA_IMAGE_HEADER_LEN;
    put32(seg, 0x3F400020u);
    put32(seg + 4, seg_len);
    uint8_t *data = seg + OTA_IMAGE_SEGMENT_HEADER_LEN;
    for (uint32_t i = 0; i < seg_len; i++) data[i] = (uint8_t)(fill + i * 7u);
    memset(data, 0, OTA_APP_DESC_LEN);
    put32(data, OTA_APP_DESC_MAGIC);
    strncpy((char *)data + 16, version, 31);
    strncpy((char *)data + 48, "shadow-ota", 31);
    uint8_t x = OTA_IMAGE_CHECKSUM_SEED;
    for (uint32_t i = 0; i < seg_len; i++) x ^= data[i];
    out[padded - 1] = x;
    mbedtls_sha256_context sha;
    mbedtls_sha256_init(&sha);
    CHECK(OTA_SHA256_STARTS(&sha) == 0 && OTA_SHA256_UPDATE(&sha, out, padded) == 0 &&
              OTA_SHA256_FINISH(&sha, out + padded) == 0,
          "sha256 failed");
    mbedtls_sha256_free(&sha);
    return total;
}

static void build_pristine(void)
{
    for (int s = 0; s < 2; s++) {
        uint8_t *f = pristine[s];
        memset(f, 0xFF, FLASH_SIZE);
        uint8_t *t = f + OTA_PARTITION_TABLE_OFFSET; /* entries then 0xFF (the MD5 entry is optional) */
        table_entry(t + 0, OTA_PART_TYPE_DATA, OTA_PART_SUBTYPE_DATA_OTA, OTADATA_ADDR, 0x2000, "otadata");
        table_entry(t + 32, OTA_PART_TYPE_APP, OTA_PART_SUBTYPE_FACTORY, FACTORY_ADDR, SLOT_SIZE, "factory");
        table_entry(t + 64, OTA_PART_TYPE_APP, OTA_PART_SUBTYPE_OTA_MIN, OTA0_ADDR, SLOT_SIZE, "ota_0");
        table_entry(t + 96, OTA_PART_TYPE_APP, OTA_PART_SUBTYPE_OTA_MIN + 1, OTA1_ADDR, SLOT_SIZE, "ota_1");
        build_image(f + FACTORY_ADDR, SLOT_SIZE, "1.0.0", 1024, 0x11);
        if (s == 1) {
            build_image(f + OTA0_ADDR, SLOT_SIZE, "1.1.0", 1536, 0x22);
            ota_select_entry_t e = { .ota_seq = 1, .ota_state = OTA_STATE_VALID, .crc = ota_otadata_crc(1) };
            memset(e.seq_label, 0xFF, sizeof(e.seq_label));
            ota_select_entry_encode(&e, f + OTADATA_ADDR);
            for (uint32_t i = 0; i < SLOT_SIZE; i++) f[OTA1_ADDR + i] = (uint8_t)(i * 13u + 5u); /* old junk */
        }
    }
    good_update_len = build_image(good_update, sizeof(good_update), "9.9.9", 1200, 0x33);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    build_pristine();
    load_sign_key();
    /* An anonymous in-memory file: nothing is left behind, not even after a crash. The host layer opens it
     * by path, like any flash file, through /proc/self/fd. */
    flash_fd = memfd_create("ota-fuzz-flash", MFD_CLOEXEC);
    CHECK(flash_fd >= 0, "memfd_create failed");
    CHECK(ftruncate(flash_fd, FLASH_SIZE) == 0, "ftruncate failed");
    snprintf(flash_path, sizeof(flash_path), "/proc/self/fd/%d", flash_fd);
    return 0;
}

static void flash_restore(int start)
{
    CHECK(pwrite(flash_fd, pristine[start], FLASH_SIZE, 0) == (ssize_t)FLASH_SIZE, "pwrite failed");
}

static void flash_snapshot(uint8_t *out)
{
    CHECK(pread(flash_fd, out, FLASH_SIZE, 0) == (ssize_t)FLASH_SIZE, "pread failed");
}

static void flash_poke(uint32_t addr, const uint8_t *bytes, size_t len)
{
    CHECK(pwrite(flash_fd, bytes, len, addr) == (ssize_t)len, "pwrite failed");
}

static ota_host_flash_t *flash_open(void)
{
    ota_host_flash_t *f = NULL;
    int e = 0;
    esp_err_t err = ota_host_open(flash_path, CHIP, &f, &e);
    CHECK(err == ESP_OK, "ota_host_open: 0x%x errno %d", (unsigned)err, e);
    return f;
}

/* ---- a checking hal in front of the host hal: what the writer may do to the flash ----------------- */

typedef struct {
    const ota_hal_t *inner;
    const ota_writer_t *w;
    bool gate_open;           /* accept() was called in this session (or it is a resume past the head) */
    uint32_t ops;             /* erase/program calls in this session */
    bool begun;               /* begin_session was called in this session */
    bool erased[SLOT_SECTORS];
    bool programmed[SLOT_SECTORS];
} guard_t;

static guard_t guard;

static void guard_session(bool gate_open)
{
    guard.gate_open = gate_open;
    guard.ops = 0;
    guard.begun = false;
    memset(guard.erased, 0, sizeof(guard.erased));
    memset(guard.programmed, 0, sizeof(guard.programmed));
}

static esp_err_t g_find(void *c, uint8_t t, uint8_t s, ota_partition_t *out)
{
    (void)c;
    return guard.inner->find_partition(guard.inner->ctx, t, s, out);
}

static esp_err_t g_read(void *c, const ota_partition_t *p, uint32_t off, void *dst, size_t len)
{
    (void)c;
    return guard.inner->read(guard.inner->ctx, p, off, dst, len);
}

static void check_target(const ota_partition_t *p, uint32_t off, size_t len, const char *what)
{
    CHECK(guard.gate_open, "%s before accept (offset %u)", what, off);
    CHECK(p->address == guard.w->target.address && p->size == SLOT_SIZE, "%s outside the target slot (0x%x)", what,
          p->address);
    CHECK((uint64_t)off + len <= SLOT_SIZE, "%s past the slot end", what);
}

static esp_err_t g_erase(void *c, const ota_partition_t *p, uint32_t off)
{
    (void)c;
    check_target(p, off, OTA_SECTOR_SIZE, "erase");
    CHECK(off % OTA_SECTOR_SIZE == 0, "misaligned erase %u", off);
    uint32_t s = off / OTA_SECTOR_SIZE;
    /* The one allowed second erase: end() takes the header of an image refused for its signature. */
    bool sig_refusal = guard.w->state == OTA_WRITER_FAILED && s == 0 &&
                       (guard.w->error == OTA_ERR_SIGNATURE_MISSING || guard.w->error == OTA_ERR_SIGNATURE_INVALID);
    CHECK(!guard.erased[s] || sig_refusal, "sector %u erased twice in one session", s);
    guard.erased[s] = true;
    guard.ops++;
    return guard.inner->erase_sector(guard.inner->ctx, p, off);
}

static esp_err_t g_write(void *c, const ota_partition_t *p, uint32_t off, const void *src, size_t len)
{
    (void)c;
    check_target(p, off, len, "program");
    /* The held byte (ota_writer.h): slot offset 0 is programmed by end() alone, after the image verified,
     * as one byte, over its erased or (after a cut and a resume) torn self; after a resume its sector was
     * erased by an earlier session. No other program touches it. */
    bool held = off < OTA_WRITER_HELD_LEN && len > 0;
    if (held) {
        CHECK(off == 0 && len == OTA_WRITER_HELD_LEN && guard.w->state == OTA_WRITER_WRITING &&
                  guard.w->parser.phase == OTA_IMAGE_PHASE_DONE,
              "slot offset 0 programmed before end() verified (offset %u, %zu bytes, state %d)", off, len,
              (int)guard.w->state);
        CHECK(((const uint8_t *)src)[0] == OTA_IMAGE_MAGIC, "held byte programmed with 0x%02x",
              ((const uint8_t *)src)[0]);
        uint8_t b = 0;
        if (guard.inner->read(guard.inner->ctx, p, 0, &b, 1) == ESP_OK) {
            CHECK((b & OTA_IMAGE_MAGIC) == OTA_IMAGE_MAGIC && b != OTA_IMAGE_MAGIC,
                  "held byte programmed over 0x%02x", b);
        }
    } else if (len > 0) {
        for (uint32_t s = off / OTA_SECTOR_SIZE; s <= (off + len - 1) / OTA_SECTOR_SIZE; s++) {
            CHECK(guard.erased[s], "program into sector %u that this session did not erase", s);
            guard.programmed[s] = true;
        }
        static uint8_t before[SLOT_SIZE];
        if (guard.inner->read(guard.inner->ctx, p, off, before, len) == ESP_OK) {
            for (size_t i = 0; i < len; i++) CHECK(before[i] == 0xFF, "program over non-erased byte at %zu", off + i);
        }
    }
    guard.ops++;
    return guard.inner->write(guard.inner->ctx, p, off, src, len);
}

static esp_err_t g_begin_session(void *c, const ota_partition_t *p)
{
    (void)c;
    /* esp_ota_begin's moment: after accept, before the session's first erase or program of the slot. */
    check_target(p, 0, 0, "begin_session");
    CHECK(guard.ops == 0, "begin_session after %u flash operations of the session", guard.ops);
    CHECK(guard.w->written == 0, "begin_session at offset %u", guard.w->written);
    CHECK(!guard.begun, "begin_session twice in one session");
    guard.begun = true;
    return guard.inner->begin_session(guard.inner->ctx, p);
}

static esp_err_t g_running(void *c, ota_partition_t *out)
{
    (void)c;
    return guard.inner->running_partition(guard.inner->ctx, out);
}

static esp_err_t g_get_state(void *c, const ota_partition_t *p, uint32_t *st)
{
    (void)c;
    return guard.inner->get_state(guard.inner->ctx, p, st);
}

static esp_err_t g_set_boot(void *c, const ota_partition_t *p)
{
    (void)c;
    return guard.inner->set_boot(guard.inner->ctx, p);
}

static esp_err_t g_mark_valid(void *c)
{
    (void)c;
    return guard.inner->mark_valid(guard.inner->ctx);
}

static esp_err_t g_mark_invalid(void *c)
{
    (void)c;
    return guard.inner->mark_invalid_and_reboot(guard.inner->ctx);
}

static const ota_hal_t guard_hal = {
    .ctx = &guard,
    .find_partition = g_find,
    .read = g_read,
    .erase_sector = g_erase,
    .write = g_write,
    .begin_session = g_begin_session,
    .running_partition = g_running,
    .get_state = g_get_state,
    .set_boot = g_set_boot,
    .mark_valid = g_mark_valid,
    .mark_invalid_and_reboot = g_mark_invalid,
};

/* Sectors erased in a session must all have received data: the writer never erases ahead. */
static void guard_check_no_speculative_erase(void)
{
    for (uint32_t s = 0; s < SLOT_SECTORS; s++) {
        CHECK(!guard.erased[s] || guard.programmed[s], "sector %u erased but never programmed", s);
    }
}

/* ---- chunking ----------------------------------------------------------------------------------- */

typedef struct {
    uint32_t rng;
    uint32_t max;
    bool fixed;
} chunker_t;

static void chunker_init(chunker_t *c, uint8_t spec, uint32_t seed)
{
    c->rng = seed ? seed : 0x9E3779B9u;
    c->max = 1u << (spec & 0x0F);
    c->fixed = (spec >> 4) == 0x0F;
}

static uint32_t rng_next(uint32_t *r)
{
    uint32_t x = *r;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *r = x;
    return x;
}

static size_t chunk_len(chunker_t *c, size_t remaining)
{
    size_t n = c->fixed ? c->max : 1u + rng_next(&c->rng) % c->max;
    return n < remaining ? n : remaining;
}

/* ---- the parser alone: the reference verdict --------------------------------------------------- */

typedef struct {
    esp_err_t code;
    uint32_t len;        /* bytes consumed on success */
    bool has_desc;
    ota_app_desc_t desc;
    uint32_t done_at;    /* where a complete image ended (0: never completed) */
} verdict_t;

static void parse_chunked(const ota_image_config_t *cfg, const uint8_t *d, size_t n, chunker_t *ch, verdict_t *v)
{
    ota_image_parser_t p;
    ota_image_init(&p, cfg);
    esp_err_t err = ESP_OK;
    size_t off = 0;
    while (off < n && err == ESP_OK) {
        size_t k = ch ? chunk_len(ch, n - off) : n - off;
        err = ota_image_feed(&p, d + off, k);
        off += k;
    }
    if (err == ESP_OK) err = ota_image_finish(&p);
    if (err == ESP_OK && cfg->sign_key != NULL) err = ota_sign_check(cfg->sign_key, &p);
    memset(v, 0, sizeof(*v));
    v->code = err;
    v->len = p.offset;
    const ota_app_desc_t *desc = ota_image_descriptor(&p);
    v->has_desc = desc != NULL;
    if (desc) v->desc = *desc;
    ota_image_free(&p);
}

/* Feeds exactly what ota_image_wanted() asks for, as the bootloader and end() do. */
static void parse_wanted(const ota_image_config_t *cfg, const uint8_t *d, size_t n, verdict_t *v)
{
    ota_image_parser_t p;
    ota_image_init(&p, cfg);
    esp_err_t err = ESP_OK;
    size_t off = 0;
    memset(v, 0, sizeof(*v));
    while (off < n && err == ESP_OK) {
        uint32_t want = ota_image_wanted(&p);
        if (p.phase == OTA_IMAGE_PHASE_DONE) {
            CHECK(want == 0, "wanted %u after DONE", want);
            if (v->done_at == 0) v->done_at = p.offset;
            want = 1; /* the next byte is trailing data */
        }
        CHECK(want > 0, "wanted 0 in phase %d", (int)p.phase);
        size_t k = want < n - off ? want : n - off;
        err = ota_image_feed(&p, d + off, k);
        off += k;
    }
    if (p.phase == OTA_IMAGE_PHASE_DONE && v->done_at == 0) v->done_at = p.offset;
    if (err == ESP_OK) err = ota_image_finish(&p);
    if (err == ESP_OK && cfg->sign_key != NULL) err = ota_sign_check(cfg->sign_key, &p);
    v->code = err;
    v->len = p.offset;
    const ota_app_desc_t *desc = ota_image_descriptor(&p);
    v->has_desc = desc != NULL;
    if (desc) v->desc = *desc;
    ota_image_free(&p);
}

static void same_verdict(const verdict_t *a, const verdict_t *b, const char *what)
{
    CHECK(a->code == b->code, "%s: code 0x%x vs 0x%x", what, (unsigned)a->code, (unsigned)b->code);
    if (a->code == ESP_OK) {
        CHECK(a->len == b->len, "%s: length %u vs %u", what, a->len, b->len);
        CHECK(a->has_desc && b->has_desc && memcmp(&a->desc, &b->desc, sizeof(a->desc)) == 0, "%s: descriptors differ",
              what);
    }
}

/* ---- one run ------------------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *payload;
    size_t len;
    ota_image_config_t cfg;
    int mode;
    int start;
    uint32_t seed;
    uint8_t chunk_spec;
    size_t point; /* disconnect position in the payload */
    uint8_t cut;  /* where in the operation span the power cut falls (x/256) */
    verdict_t ref;
} run_t;

static ota_host_flash_t *flash;
static ota_writer_t writer;

static void reopen_and_boot(ota_boot_result_t *boot)
{
    ota_host_close(flash);
    flash = flash_open();
    guard.inner = ota_host_hal(flash);
    esp_err_t err = ota_host_boot(flash, boot);
    CHECK(err == ESP_OK, "reboot failed: 0x%x (bricked)", (unsigned)err);
}

static bool is_old_app(const run_t *r, const ota_boot_result_t *b)
{
    uint32_t want = r->start == 0 ? FACTORY_ADDR : OTA0_ADDR;
    return b->partition.address == want;
}

static uint32_t target_addr(const run_t *r)
{
    return r->start == 0 ? OTA0_ADDR : OTA1_ADDR;
}

/* Everything but the target slot (and otadata when `otadata_may_change`) equals the pristine flash. */
static void check_untouched(const run_t *r, bool otadata_may_change)
{
    static uint8_t now[FLASH_SIZE];
    flash_snapshot(now);
    const uint8_t *p = pristine[r->start];
    uint32_t t = target_addr(r);
    for (uint32_t a = 0; a < FLASH_SIZE; a += OTA_SECTOR_SIZE) {
        if (a >= t && a < t + SLOT_SIZE) continue;
        if (otadata_may_change && a >= OTADATA_ADDR && a < OTADATA_ADDR + 0x2000) continue;
        CHECK(memcmp(now + a, p + a, OTA_SECTOR_SIZE) == 0, "sector 0x%x changed", a);
    }
}

/* Streams payload[from..) into the writer. Returns the first error (ESP_OK when the stream was consumed).
 * Handles the descriptor gate (accept, or abort in mode 1) and, once, the disconnect of modes 2/3. */
static esp_err_t stream(run_t *r, chunker_t *ch, size_t from, bool *refused_at_gate, bool *disconnected)
{
    size_t off = from;
    while (off < r->len) {
        size_t n = chunk_len(ch, r->len - off);
        size_t consumed = 0;
        esp_err_t err = ota_writer_write(&writer, r->payload + off, n, &consumed);
        if (err != ESP_OK) return err;
        CHECK(consumed <= n, "consumed %zu of %zu", consumed, n);
        if (writer.state == OTA_WRITER_HEAD_READY) {
            CHECK(guard.ops == 0, "flash touched before the descriptor gate");
            CHECK(off + consumed == OTA_IMAGE_HEAD_LEN, "head ready at %zu", off + consumed);
            const ota_app_desc_t *d = ota_writer_descriptor(&writer);
            CHECK(d != NULL && r->ref.has_desc && memcmp(d, &r->ref.desc, sizeof(*d)) == 0,
                  "gate descriptor differs from the parser's");
            if (r->mode == 1) {
                *refused_at_gate = true;
                return ESP_OK;
            }
            guard.gate_open = true;
            err = ota_writer_accept(&writer);
            if (err != ESP_OK) return err;
        } else {
            CHECK(consumed == n, "consumed %zu of %zu outside the head", consumed, n);
        }
        off += consumed;
        if ((r->mode == 2 || r->mode == 3) && !*disconnected && off >= r->point && writer.state == OTA_WRITER_WRITING) {
            *disconnected = true;
            uint32_t written = writer.written;
            CHECK(written == off, "written %u, streamed %zu", written, off);
            guard_check_no_speculative_erase();
            ota_partition_t target = writer.target;
            ota_writer_abort(&writer);
            uint8_t b0 = 0;
            CHECK(guard.inner->read(guard.inner->ctx, &target, 0, &b0, 1) == ESP_OK && b0 == 0xFF,
                  "a download cut before end() left 0x%02x at slot offset 0 (bootable)", b0);
            if (r->mode == 3) {
                ota_boot_result_t b;
                reopen_and_boot(&b);
                CHECK(is_old_app(r, &b), "reboot mid-download booted 0x%x", b.partition.address);
            }
            /* The caller may know less than was written; resume must cope with any lower offset. */
            uint32_t slack = (r->seed >> 20) % 6000u;
            uint32_t claim = written > slack ? written - slack : 0;
            uint32_t at = 0;
            guard_session(false);
            err = ota_writer_resume(&writer, &guard_hal, &r->cfg, claim, &at);
            if (err == OTA_ERR_IMAGE_RESUME_MISMATCH) {
                /* Legitimate only when a complete image ends at or below the resume point. */
                CHECK(r->ref.done_at > 0 && r->ref.done_at <= claim - claim % OTA_SECTOR_SIZE,
                      "resume refused a good prefix (claim %u, image end %u)", claim, r->ref.done_at);
                return err;
            }
            CHECK(err == ESP_OK, "resume(%u): 0x%x", claim, (unsigned)err);
            CHECK(at == claim - claim % OTA_SECTOR_SIZE, "resume_at %u for claim %u", at, claim);
            if (at > 0) {
                guard.gate_open = true;
                CHECK(writer.state == OTA_WRITER_WRITING, "resume state %d", (int)writer.state);
                const ota_app_desc_t *d = ota_writer_descriptor(&writer);
                CHECK(d != NULL && memcmp(d, &r->ref.desc, sizeof(*d)) == 0, "resumed descriptor differs");
            } else {
                CHECK(writer.state == OTA_WRITER_HEAD, "resume at 0 state %d", (int)writer.state);
            }
            off = at;
        }
    }
    return ESP_OK;
}

static void run_install(run_t *r)
{
    chunker_t ch;
    chunker_init(&ch, r->chunk_spec, r->seed);
    guard_session(false);
    esp_err_t err = ota_writer_begin(&writer, &guard_hal, &r->cfg);
    if (err != ESP_OK) {
        CHECK(err == ESP_ERR_INVALID_SIZE && r->cfg.image_size > SLOT_SIZE, "begin: 0x%x", (unsigned)err);
        check_untouched(r, false);
        return;
    }
    CHECK(writer.target.address == target_addr(r), "begin picked 0x%x", writer.target.address);
    bool gate = false, disconnected = false;
    err = stream(r, &ch, 0, &gate, &disconnected);
    if (gate) {
        ota_writer_abort(&writer);
        ota_writer_abort(&writer);
        static uint8_t now[FLASH_SIZE];
        flash_snapshot(now);
        CHECK(memcmp(now, pristine[r->start], FLASH_SIZE) == 0, "refusal at the gate changed the flash");
        return;
    }
    if (err == OTA_ERR_IMAGE_RESUME_MISMATCH && disconnected) {
        ota_writer_abort(&writer);
        check_untouched(r, false);
        return;
    }
    if (err == ESP_OK) err = ota_writer_end(&writer);
    if (!guard.gate_open) CHECK(guard.ops == 0, "flash touched although the gate never opened");
    guard_check_no_speculative_erase();
    if (err != ESP_OK) {
        CHECK(err == r->ref.code, "writer 0x%x, parser 0x%x", (unsigned)err, (unsigned)r->ref.code);
        if (guard.gate_open) {
            /* Refused or never ended: the bootloader's fall-back over all app slots must not load it. */
            uint8_t b0 = 0;
            CHECK(guard.inner->read(guard.inner->ctx, &writer.target, 0, &b0, 1) == ESP_OK &&
                      b0 != OTA_IMAGE_MAGIC,
                  "a refused image has its magic byte in flash");
        }
        CHECK(ota_writer_set_boot(&writer) == ESP_ERR_INVALID_STATE, "set boot after a failed write");
        ota_writer_abort(&writer);
        ota_writer_abort(&writer);
        check_untouched(r, false);
        ota_boot_result_t b;
        reopen_and_boot(&b);
        CHECK(is_old_app(r, &b), "after a refused image the device booted 0x%x", b.partition.address);
        return;
    }
    CHECK(r->ref.code == ESP_OK, "writer accepted what the parser refused (0x%x)", (unsigned)r->ref.code);
    CHECK(writer.written == r->len, "written %u of %zu", writer.written, r->len);
    static uint8_t slot[SLOT_SIZE];
    CHECK(guard.inner->read(guard.inner->ctx, &writer.target, 0, slot, r->len) == ESP_OK, "read back");
    CHECK(memcmp(slot, r->payload, r->len) == 0, "slot differs from the payload");
    err = ota_writer_set_boot(&writer);
    CHECK(err == ESP_OK, "set boot: 0x%x", (unsigned)err);
    ota_writer_abort(&writer); /* after set boot: a no-op, and safe */
    check_untouched(r, true);
    ota_boot_result_t b;
    reopen_and_boot(&b);
    CHECK(b.partition.address == target_addr(r) && b.state == OTA_STATE_PENDING_VERIFY,
          "new image did not boot pending-verify (0x%x, state %u)", b.partition.address, b.state);
    CHECK(memcmp(&b.desc, &r->ref.desc, sizeof(b.desc)) == 0, "booted descriptor differs");
}

/* After a cut mid-download and the reboot: resume from what the writer had reported written and finish.
 * The prefix below that offset must have survived the cut, and the verdict must be the uninterrupted one. */
static void resume_after_cut(run_t *r, uint32_t claim)
{
    guard_session(false);
    uint32_t at = 0;
    esp_err_t err = ota_writer_resume(&writer, &guard_hal, &r->cfg, claim, &at);
    if (err == OTA_ERR_IMAGE_RESUME_MISMATCH) {
        CHECK(r->ref.done_at > 0 && r->ref.done_at <= claim - claim % OTA_SECTOR_SIZE,
              "resume after a cut refused the prefix (claim %u)", claim);
        return;
    }
    CHECK(err == ESP_OK && at == claim - claim % OTA_SECTOR_SIZE && at > 0, "resume after a cut: 0x%x at %u",
          (unsigned)err, at);
    CHECK(memcmp(ota_writer_descriptor(&writer), &r->ref.desc, sizeof(r->ref.desc)) == 0, "resumed descriptor");
    guard.gate_open = true;
    chunker_t ch;
    chunker_init(&ch, r->chunk_spec, r->seed ^ 0x5A5A5A5Au);
    bool gate = false, disc = false;
    err = stream(r, &ch, at, &gate, &disc);
    if (err == ESP_OK) err = ota_writer_end(&writer);
    guard_check_no_speculative_erase();
    if (err != ESP_OK) {
        CHECK(err == r->ref.code, "resumed writer 0x%x, parser 0x%x", (unsigned)err, (unsigned)r->ref.code);
        return;
    }
    CHECK(r->ref.code == ESP_OK && writer.written == r->len, "resumed write accepted a refused image");
    CHECK(ota_writer_set_boot(&writer) == ESP_OK, "set boot after resume");
    ota_boot_result_t b;
    reopen_and_boot(&b);
    CHECK(b.partition.address == target_addr(r) && b.state == OTA_STATE_PENDING_VERIFY &&
              memcmp(&b.desc, &r->ref.desc, sizeof(b.desc)) == 0,
          "resumed image did not boot (0x%x, state %u)", b.partition.address, b.state);
    static uint8_t slot[SLOT_SIZE];
    CHECK(ota_host_hal(flash)->read(ota_host_hal(flash)->ctx, &b.partition, 0, slot, r->len) == ESP_OK, "read");
    CHECK(memcmp(slot, r->payload, r->len) == 0, "resumed slot differs from the payload");
}

/* Mode 4: one power cut somewhere in stream / end / set boot / reboot / mark valid; after a cut in the
 * stream, resume (above). */
static void run_power_cut(run_t *r)
{
    uint64_t sectors = (r->len + OTA_SECTOR_SIZE - 1) / OTA_SECTOR_SIZE;
    uint64_t span = sectors * OTA_SECTOR_SIZE + r->len + 3 * (OTA_SECTOR_SIZE + OTA_SELECT_ENTRY_LEN) + 1;
    uint64_t budget = (span * r->cut / 256u + (r->seed & 0xFFFu)) % span;
    ota_host_arm_power_cut(flash, budget, r->seed | 1u);
    chunker_t ch;
    chunker_init(&ch, r->chunk_spec, r->seed);
    guard_session(false);
    bool gate = false, disc = false;
    bool ended = false;
    esp_err_t err = ota_writer_begin(&writer, &guard_hal, &r->cfg);
    if (err == ESP_OK) err = stream(r, &ch, 0, &gate, &disc);
    if (err == ESP_OK) err = ota_writer_end(&writer);
    if (err == ESP_OK) {
        ended = true;
        err = ota_writer_set_boot(&writer);
    }
    if (err == ESP_OK) {
        ota_boot_result_t b;
        err = ota_host_boot(flash, &b); /* the reboot, still on the armed flash */
        if (err == ESP_OK) err = ota_host_hal(flash)->mark_valid(ota_host_hal(flash)->ctx);
    }
    bool lost = ota_host_power_lost(flash);
    uint32_t written_at_cut = writer.written; /* what the writer had reported in flash before the cut */
    ota_writer_abort(&writer);
    if (!lost) {
        CHECK(err == ESP_OK || err == r->ref.code || err == ESP_ERR_INVALID_SIZE, "0x%x without a power cut", (unsigned)err);
        return;
    }
    CHECK(err == OTA_ERR_SIM_POWER_LOST, "a power cut surfaced as 0x%x", (unsigned)err);
    ota_boot_result_t b;
    reopen_and_boot(&b);
    if (is_old_app(r, &b)) {
        if (r->start == 1) CHECK(b.entry >= 0 && b.state == OTA_STATE_VALID, "old ota_0 in state %u", b.state);
        if (!ended && written_at_cut >= OTA_SECTOR_SIZE) resume_after_cut(r, written_at_cut);
        return;
    }
    CHECK(b.partition.address == target_addr(r), "booted 0x%x: neither old nor new", b.partition.address);
    /* A cut inside set boot's last byte may still leave a complete entry (the bits were in): the new
     * image may boot then, but only one that end() verified. */
    CHECK(ended && r->ref.code == ESP_OK, "the new slot booted although end() never verified it");
    /* Its state word may be torn (a cut page program leaves any subset of its bits, and the CRC covers only
     * the seq): the OTA controller's record, not otadata, decides whether it is self-tested
     * (docs/native-ota.md, "Power cuts"). */
    CHECK(b.entry >= 0, "new image booted without an otadata entry");
    static uint8_t slot[SLOT_SIZE];
    CHECK(ota_host_hal(flash)->read(ota_host_hal(flash)->ctx, &b.partition, 0, slot, r->len) == ESP_OK, "read");
    CHECK(memcmp(slot, r->payload, r->len) == 0, "booted slot differs from the payload");
}

/* Mode 5: the payload's first 64 bytes become the two otadata entries; whatever boots must accept a good
 * update that boots next. */
static void run_garbage_otadata(run_t *r)
{
    uint8_t entries[64];
    memset(entries, 0xFF, sizeof(entries));
    memcpy(entries, r->payload, r->len < 64 ? r->len : 64);
    ota_host_close(flash);
    flash_poke(OTADATA_ADDR, entries, 32);
    flash_poke(OTADATA_ADDR + OTA_OTADATA_SECOND_OFFSET, entries + 32, 32);
    flash = flash_open();
    guard.inner = ota_host_hal(flash);
    ota_boot_result_t b;
    esp_err_t err = ota_host_boot(flash, &b);
    CHECK(err == ESP_OK, "garbage otadata bricked the device: 0x%x", (unsigned)err);
    /* b.state is what esp_ota_get_state_partition reads for the booted slot: the first entry naming it with a
     * good CRC, which may be another, retired one (any state); nothing to check there. */
    const ota_hal_t *hal = ota_host_hal(flash);
    err = hal->mark_valid(hal->ctx);
    /* ESP_FAIL ("Running firmware is factory") exactly when no otadata entry is active. */
    CHECK(err == ESP_OK || (err == ESP_FAIL && b.entry < 0), "mark valid: 0x%x", (unsigned)err);
    uint32_t running = b.partition.address;
    ota_image_config_t cfg = { .chip_id = CHIP, .require_hash = true };
    guard_session(true);
    err = ota_writer_begin(&writer, &guard_hal, &cfg);
    CHECK(err == ESP_OK, "begin after garbage otadata: 0x%x", (unsigned)err);
    uint32_t target = writer.target.address;
    size_t consumed = 0;
    err = ota_writer_write(&writer, good_update, good_update_len, &consumed);
    CHECK(err == ESP_OK && writer.state == OTA_WRITER_HEAD_READY, "head: 0x%x", (unsigned)err);
    err = ota_writer_accept(&writer);
    if (err == ESP_OK) err = ota_writer_write(&writer, good_update + consumed, good_update_len - consumed, &consumed);
    if (err == ESP_OK) err = ota_writer_end(&writer);
    if (err == ESP_OK) err = ota_writer_set_boot(&writer);
    if (err == ESP_ERR_OTA_SELECT_INFO_INVALID) {
        /* Legitimate only when the active seq leaves no valid seq for the target (ota_otadata_set_boot). */
        ota_layout_t l;
        ota_select_entry_t e[2];
        ota_layout_load(hal, &l);
        CHECK(ota_otadata_read(hal, &l, e) == ESP_OK, "otadata read");
        int a = ota_otadata_select(e);
        CHECK(a >= 0 && e[a].ota_seq > 0xFFFFFFFFu - l.slot_count, "set boot refused seq %u", a >= 0 ? e[a].ota_seq : 0);
        return;
    }
    CHECK(err == ESP_OK, "good update after garbage otadata: 0x%x", (unsigned)err);
    reopen_and_boot(&b);
    CHECK(b.partition.address == target && b.state == OTA_STATE_PENDING_VERIFY && strcmp(b.desc.version, "9.9.9") == 0,
          "update did not take effect: booted 0x%x state %u (was running 0x%x)", b.partition.address, b.state, running);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8) return 0;
    run_t r;
    memset(&r, 0, sizeof(r));
    uint8_t flags = data[0];
    r.payload = data + 8;
    r.len = size - 8;
    if (r.len > 4u * SLOT_SIZE) return 0; /* keep runs fast; "oversize" is reachable well below this */
    r.mode = (flags >> 3) & 7;
    r.start = (flags >> 6) & 1;
    r.chunk_spec = data[1];
    r.seed = (uint32_t)data[2] | ((uint32_t)data[3] << 8) | ((uint32_t)data[4] << 16) | ((uint32_t)data[5] << 24);
    r.point = r.len * data[6] / 256u;
    r.cut = data[6];
    r.cfg.chip_id = CHIP;
    r.cfg.require_hash = flags & 1;
    r.cfg.min_secure_version = (flags & 4) ? 2 : 0;
    if (r.mode == 6) r.cfg.sign_key = &sign_key;
    if (flags & 2) {
        int64_t declared = (int64_t)r.len + ((flags & 0x80) ? (int8_t)data[7] : 0);
        r.cfg.image_size = declared > 0 ? (uint32_t)declared : 0;
    }

    /* The parser alone, three ways; all must agree. The writer runs it with max_size = the slot size. */
    ota_image_config_t pc = r.cfg;
    pc.max_size = SLOT_SIZE;
    verdict_t one, chunked, wanted;
    parse_chunked(&pc, r.payload, r.len, NULL, &one);
    chunker_t ch;
    chunker_init(&ch, r.chunk_spec, r.seed);
    parse_chunked(&pc, r.payload, r.len, &ch, &chunked);
    parse_wanted(&pc, r.payload, r.len, &wanted);
    same_verdict(&one, &chunked, "one chunk vs random chunks");
    same_verdict(&one, &wanted, "one chunk vs wanted()-sized chunks");
    bool signed_len = wanted.done_at > 0 && wanted.done_at + OTA_SIG_BLOCK_LEN == r.len;
    if (one.code == ESP_OK) {
        CHECK(one.len == r.len && (wanted.done_at == r.len || signed_len), "image length %u of %zu", one.len, r.len);
    }
    if (wanted.done_at > 0 && wanted.done_at < r.len) {
        /* After the image: a signature block (its structure, its truncation, the key's verdict, or the
         * limits it runs into) or trailing data; nothing else. */
        esp_err_t c = one.code;
        CHECK(c == OTA_ERR_IMAGE_TRAILING_DATA || c == OTA_ERR_SIGNATURE_INVALID || c == OTA_ERR_IMAGE_TRUNCATED ||
                  c == OTA_ERR_IMAGE_TOO_LARGE || c == OTA_ERR_IMAGE_PAST_END ||
                  (c == ESP_OK && signed_len),
              "bytes after a complete image: 0x%x", (unsigned)c);
    }
    if (r.mode == 6) {
        /* The keyless verdict differs only where the key decides. */
        ota_image_config_t kc = pc;
        kc.sign_key = NULL;
        verdict_t keyless;
        parse_chunked(&kc, r.payload, r.len, NULL, &keyless);
        if (keyless.code != one.code) {
            CHECK(keyless.code == ESP_OK && (one.code == OTA_ERR_SIGNATURE_MISSING || one.code == OTA_ERR_SIGNATURE_INVALID),
                  "the key changed the verdict 0x%x -> 0x%x", (unsigned)keyless.code, (unsigned)one.code);
        }
    }
    if (r.len == 0) CHECK(one.code == OTA_ERR_IMAGE_EMPTY, "empty stream: 0x%x", (unsigned)one.code);
    r.ref = one;
    r.ref.done_at = wanted.done_at;
    /* The writer stops at the head: a refusal there is judged on the head only (same code by stickiness). */

    flash_restore(r.start);
    flash = flash_open();
    ota_writer_init(&writer);
    memset(&guard, 0, sizeof(guard));
    guard.inner = ota_host_hal(flash);
    guard.w = &writer;
    ota_boot_result_t b;
    esp_err_t err = ota_host_boot(flash, &b);
    CHECK(err == ESP_OK && is_old_app(&r, &b), "pristine boot: 0x%x", (unsigned)err);

    switch (r.mode) {
    case 4: run_power_cut(&r); break;
    case 5: run_garbage_otadata(&r); break;
    default: run_install(&r); break;
    }
    ota_writer_abort(&writer);
    ota_host_close(flash);
    flash = NULL;

#ifdef OTA_FUZZ_SELFTEST
    /* A planted bug for `scripts/fuzz.sh --selftest`: proves the pipeline finds, saves and reproduces a
     * crash. Never built into a normal run. */
    if (r.len >= 24 && one.code == OTA_ERR_IMAGE_CHIP && r.payload[12] == 0x42) {
        volatile uint8_t small[4] = { 0 };
        volatile size_t i = 4 + r.payload[13];
        (void)small[i];
    }
#endif
    return 0;
}
