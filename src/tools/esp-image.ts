/**
 * ESP32 app image builder (a build/test tool, Node only): valid images exactly as ESP-IDF lays them out,
 * the helpers to read them back, and a generator of corrupted variants for the OTA tests, the demo and
 * the benchmarks. Images are generated on demand, never committed.
 *
 * Format (docs/formats.md; ESP-IDF esp_app_format.h, "App Image Format"):
 *
 *   image   = header(24) segment{segment_count} padding checksum(1) [sha256(32) if hash_appended]
 *   header  = magic 0xE9 | segment_count u8 | spi_mode u8 | spi_speed:4 spi_size:4 | entry_addr u32 |
 *             wp_pin u8 | spi_pin_drv u8[3] | chip_id u16 | min_chip_rev u8 | min_chip_rev_full u16 |
 *             max_chip_rev_full u16 | reserved u8[4] | hash_appended u8
 *   segment = load_addr u32 | data_len u32 | data[data_len]     (data_len a multiple of 4)
 *   padding = zero bytes so that the checksum byte is the last byte of a 16-byte block
 *   checksum = 0xEF XOR every segment DATA byte (not the headers, not the padding)
 *   sha256  = SHA-256 of every byte from the header through the checksum
 *   The first segment's data starts with esp_app_desc_t (256 bytes, image offset 32).
 *   hash_appended: ESP-IDF treats ANY non-zero byte as "a SHA-256 follows" (esp_image_format.c,
 *   process_appended_hash(): `if (data->image.hash_appended)`); so do this tool and the C core.
 *
 * Simulation marker (this project's convention, not ESP-IDF's): `ImageOptions.marker` puts up to 64 ASCII
 * bytes, NUL-terminated, at image offset 288 (first segment data, right after the descriptor); the
 * simulated device reads them with readImageMarker() (e.g. "SHADOW-OTA-SIM:selftest=fail").
 *
 * Not here: Secure Boot signature blocks, ELF conversion, flash encryption. Not for the device (uses
 * node:crypto and Buffer); the device validates images with the C core (src/native/core/).
 *
 * CLI (also `npm run image -- build ...`, see image-cli.ts):
 *       tsx src/tools/esp-image.ts --version 1.1.0 --project shadow-ota --out build/images/x.bin
 *       [--chip esp32s3] [--secure-version N] [--size BYTES] [--segments 4096,2048] [--no-hash]
 *       [--seed N] [--marker TEXT] [--corrupt KIND]   (KIND from CORRUPTION_KINDS; `--list-corruptions`)
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import { ShadowOtaError } from "../core/errors";
import { OTA_CODES, OtaCode } from "../native/ota-errors";
import { AppDescriptor, ESP_CHIP_ID } from "../ports/ota-slot";

/** Error codes of this tool (bad options or an input that is not an image). */
export const ESP_IMAGE_CODES = {
  /** An option is out of range (size too small for the segments, a string too long for its field...). */
  ESP_IMAGE_BAD_OPTION: "ESP_IMAGE_BAD_OPTION",
  /** The bytes given to a reader are not a well-formed image (`detail.offset` says where it broke). */
  ESP_IMAGE_MALFORMED: "ESP_IMAGE_MALFORMED",
  /** corrupt(): unknown kind, or the image has no place for that defect (e.g. no hash to damage). */
  ESP_IMAGE_CORRUPTION_UNAVAILABLE: "ESP_IMAGE_CORRUPTION_UNAVAILABLE",
  /** stamp: the file is an image but not an app image (no esp_app_desc_t: a bootloader, a RAM-only image). */
  ESP_IMAGE_NOT_APP: "ESP_IMAGE_NOT_APP",
  /** stamp: the input's own checksum or SHA-256 does not match (stamping would hide the damage). */
  ESP_IMAGE_INPUT_CORRUPT: "ESP_IMAGE_INPUT_CORRUPT",
} as const;

export const IMAGE_MAGIC = 0xe9;
export const IMAGE_HEADER_LEN = 24;
export const SEGMENT_HEADER_LEN = 8;
export const APP_DESC_MAGIC = 0xabcd5432;
export const APP_DESC_LEN = 256;
/** Header + first segment header + descriptor: what a validator needs before it knows the descriptor. */
export const IMAGE_HEAD_LEN = IMAGE_HEADER_LEN + SEGMENT_HEADER_LEN + APP_DESC_LEN;
export const CHECKSUM_SEED = 0xef;
export const HASH_LEN = 32;
/** esp_image_format.c refuses more than ESP_IMAGE_MAX_SEGMENTS (16). */
export const MAX_SEGMENTS = 16;

export type ChipName = "esp32" | "esp32s2" | "esp32c3" | "esp32s3" | "esp32c2" | "esp32c6" | "esp32h2";
export const CHIP_IDS: Readonly<Record<ChipName, number>> = {
  esp32: ESP_CHIP_ID.ESP32,
  esp32s2: ESP_CHIP_ID.ESP32S2,
  esp32c3: ESP_CHIP_ID.ESP32C3,
  esp32s3: ESP_CHIP_ID.ESP32S3,
  esp32c2: ESP_CHIP_ID.ESP32C2,
  esp32c6: ESP_CHIP_ID.ESP32C6,
  esp32h2: ESP_CHIP_ID.ESP32H2,
};

/** Chip name ("esp32s3", case-insensitive, "-" ignored) or numeric id to the header's chip_id. */
export function chipId(chip: ChipName | string | number): number {
  if (typeof chip === "number") {
    if (!Number.isInteger(chip) || chip < 0 || chip > 0xffff) throw badOption(`chip id ${chip} is not a u16`);
    return chip;
  }
  const id = (CHIP_IDS as Record<string, number>)[chip.toLowerCase().replace(/-/g, "")];
  if (id === undefined) throw badOption(`unknown chip "${chip}" (known: ${Object.keys(CHIP_IDS).join(", ")})`);
  return id;
}

export interface ImageOptions {
  /** esp_app_desc_t.version, at most 31 bytes (default "1.0.0"). */
  version?: string;
  /** esp_app_desc_t.project_name, at most 31 bytes (default "shadow-ota"). */
  projectName?: string;
  /** Target chip (default "esp32"). */
  chip?: ChipName | string | number;
  /** esp_app_desc_t.secure_version (default 0). */
  secureVersion?: number;
  /** Append the SHA-256 (default true, as ESP-IDF builds do). */
  hashAppended?: boolean;
  /**
   * Data lengths of the segments, each a multiple of 4; the first must hold the 256-byte descriptor.
   * Default [0x2000, 0x800, 0x1800]. With `size`, only the count is taken from here and the lengths are
   * chosen to reach the size.
   */
  segments?: number[];
  /** With `size`: number of segments (default: segments.length, else 3). */
  segmentCount?: number;
  /** Exact total image length in bytes (a multiple of 16); segment data is grown to reach it. */
  size?: number;
  /** Seed of the pseudo-random segment data (default 1): same options + seed = same bytes. */
  seed?: number;
  /** esp_app_desc_t.time / date / idf_ver (defaults are fixed so images are reproducible). */
  time?: string;
  date?: string;
  idfVer?: string;
  /** Load addresses of the segments, by index (default: typical ESP32 addresses; CHIP_LOAD_ADDRS holds
   *  realistic ones per chip). Missing entries fall back to the default. */
  loadAddrs?: number[];
  /** Simulation marker: ASCII, at most 64 bytes, written NUL-terminated at image offset 288 (first segment
   *  data after the descriptor; the first segment is grown to hold it). See readImageMarker(). */
  marker?: string;
  /** Header fields (defaults: DIO, 40 MHz, 4 MB, 0x40080000 + 0x400, rev 0..3.99). */
  spiMode?: number;
  spiSpeed?: number;
  spiSize?: number;
  entryAddr?: number;
  minChipRevFull?: number;
  maxChipRevFull?: number;
}

/** esp_image_header_t, decoded. */
export interface ImageHeader {
  magic: number;
  segmentCount: number;
  spiMode: number;
  spiSpeed: number;
  spiSize: number;
  entryAddr: number;
  wpPin: number;
  spiPinDrv: [number, number, number];
  chipId: number;
  minChipRev: number;
  minChipRevFull: number;
  maxChipRevFull: number;
  /** ESP-IDF's rule: the hash_appended byte is non-zero (see `hashAppendedByte` for the byte itself). */
  hashAppended: boolean;
  /** The raw hash_appended byte (ESP-IDF images carry 1). */
  hashAppendedByte: number;
}

export interface SegmentInfo {
  index: number;
  /** Offset of the segment's 8-byte header in the image. */
  headerOffset: number;
  loadAddr: number;
  dataOffset: number;
  dataLength: number;
}

/** Where everything sits in a well-formed image. */
export interface ImageLayout {
  header: ImageHeader;
  segments: SegmentInfo[];
  /** First padding byte (= end of the last segment's data). */
  paddingOffset: number;
  checksumOffset: number;
  /** Offset of the appended SHA-256 (= checksumOffset + 1), undefined when not appended. */
  hashOffset: number | undefined;
  /** Total image length: end of the hash, else checksumOffset + 1. */
  length: number;
}

function badOption(message: string): ShadowOtaError {
  return new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, message);
}
function malformed(message: string, offset: number): ShadowOtaError {
  return new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_MALFORMED, message, { detail: { offset } });
}

/** xorshift32: deterministic bytes from a seed (0 is mapped to a fixed non-zero state). */
export function pseudoRandomBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let s = (seed >>> 0) ^ 0x9e3779b9 || 0x2545f491;
  for (let i = 0; i < length; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = s >>> 24;
  }
  return out;
}

function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(bytes).digest());
}

function putCString(buf: Uint8Array, offset: number, size: number, text: string, field: string): void {
  const bytes = Buffer.from(text, "latin1");
  if (bytes.length > size - 1) throw badOption(`${field} "${text}" is longer than ${size - 1} bytes`);
  buf.fill(0, offset, offset + size);
  buf.set(bytes, offset);
}

function getCString(buf: Uint8Array, offset: number, size: number): string {
  let end = offset;
  while (end < offset + size && buf[end] !== 0) end++;
  return Buffer.from(buf.subarray(offset, end)).toString("latin1");
}

/** Typical ESP32 load addresses (DROM with the descriptor first, then DRAM, IRAM, IROM, ...). */
const LOAD_ADDRS = [0x3f400020, 0x3ffb0000, 0x40080000, 0x400d0020, 0x3ffbe000, 0x40090000];
function loadAddr(index: number, addrs: readonly number[] = []): number {
  const given = addrs[index];
  if (given !== undefined) return given >>> 0;
  return (LOAD_ADDRS[index % LOAD_ADDRS.length]! + Math.floor(index / LOAD_ADDRS.length) * 0x10000) >>> 0;
}

/**
 * Segment load addresses as ESP-IDF v5.2 lays out a small app for each chip: DROM first (the descriptor
 * at its start), then DRAM, IRAM, a padding segment (load address 0) that aligns the flash-mapped code,
 * and IROM; ESP32-C6 and ESP32-H2 map DROM and IROM into one 0x42000000 window. Read from real
 * hello_world images (esp-serial-flasher's prebuilt examples, see docs/native-ota.md); for tests that
 * want realistic images, not a rule the C core enforces.
 */
export const CHIP_LOAD_ADDRS: Readonly<Record<ChipName, readonly number[]>> = {
  esp32: [0x3f400020, 0x3ffb0000, 0x40080000, 0x00000000, 0x400d0020],
  esp32s2: [0x3f000020, 0x3ffbcb20, 0x40024000, 0x00000000, 0x40080020],
  esp32s3: [0x3c020020, 0x3fc8eb00, 0x40374000, 0x00000000, 0x42000020],
  esp32c3: [0x3c010020, 0x3fc87c00, 0x40380000, 0x00000000, 0x42000020],
  esp32c2: [0x3c008020, 0x3fca70a0, 0x40380000, 0x00000000, 0x42000020],
  esp32c6: [0x42008020, 0x40800000, 0x40807490, 0x42000020, 0x40807728],
  esp32h2: [0x42008020, 0x40800000, 0x42000020, 0x40807628],
};

/** Image offset of the simulation marker (first segment data, right after the 256-byte descriptor). */
export const MARKER_OFFSET = IMAGE_HEAD_LEN;
/** At most this many marker bytes (plus the NUL). */
export const MARKER_MAX_LEN = 64;
/** Only a marker with this prefix is reported by readImageMarker(). */
export const MARKER_PREFIX = "SHADOW-OTA-SIM:";
/** First-segment length that holds the descriptor and the longest marker with its NUL (4-byte aligned). */
const MARKER_SEGMENT_MIN = APP_DESC_LEN + Math.ceil((MARKER_MAX_LEN + 1) / 4) * 4;

function markerBytes(marker: string): Uint8Array {
  if (!/^[\x20-\x7e]*$/.test(marker)) throw badOption(`marker "${marker}" is not printable ASCII`);
  if (marker.length > MARKER_MAX_LEN) throw badOption(`marker is ${marker.length} bytes (at most ${MARKER_MAX_LEN})`);
  const out = new Uint8Array(marker.length + 1);
  out.set(Buffer.from(marker, "latin1"));
  return out;
}

/**
 * The simulation marker at image offset 288, or undefined when there is none: the bytes there must be
 * printable ASCII starting with "SHADOW-OTA-SIM:" and end with a NUL within 64 characters.
 */
export function readImageMarker(bytes: Uint8Array): string | undefined {
  const end = Math.min(bytes.length, MARKER_OFFSET + MARKER_MAX_LEN + 1);
  let text = "";
  for (let i = MARKER_OFFSET; i < end; i++) {
    const b = bytes[i]!;
    if (b === 0) return text.startsWith(MARKER_PREFIX) ? text : undefined;
    if (b < 0x20 || b > 0x7e) return undefined;
    text += String.fromCharCode(b);
  }
  return undefined;
}

/** The 256-byte esp_app_desc_t. */
export function buildAppDescriptor(o: ImageOptions = {}): Uint8Array {
  const d = new Uint8Array(APP_DESC_LEN);
  const dv = new DataView(d.buffer);
  const version = o.version ?? "1.0.0";
  const project = o.projectName ?? "shadow-ota";
  const secureVersion = o.secureVersion ?? 0;
  if (!Number.isInteger(secureVersion) || secureVersion < 0 || secureVersion > 0xffffffff) {
    throw badOption(`secureVersion ${secureVersion} is not a u32`);
  }
  dv.setUint32(0, APP_DESC_MAGIC, true);
  dv.setUint32(4, secureVersion, true);
  putCString(d, 16, 32, version, "version");
  putCString(d, 48, 32, project, "projectName");
  putCString(d, 80, 16, o.time ?? "12:00:00", "time");
  putCString(d, 96, 16, o.date ?? "Nov 22 2026", "date");
  putCString(d, 112, 32, o.idfVer ?? "v5.3.1", "idfVer");
  // app_elf_sha256: a stand-in derived from what the image claims to be (there is no ELF here).
  d.set(sha256(Buffer.from(`${project}\0${version}\0${o.seed ?? 1}`, "latin1")), 144);
  dv.setUint16(176, 0, true); // min_efuse_blk_rev_full
  dv.setUint16(178, 0xffff, true); // max_efuse_blk_rev_full
  d[180] = 16; // mmu_page_size: log2(64 KiB)
  return d;
}

/** Segment data lengths that make an image of exactly `size` bytes with `count` segments. */
function lengthsForSize(size: number, count: number, hash: boolean, firstMin = APP_DESC_LEN): number[] {
  if (!Number.isInteger(size) || size % 16 !== 0) throw badOption(`size ${size} is not a multiple of 16`);
  if (!Number.isInteger(count) || count < 1 || count > MAX_SEGMENTS) throw badOption(`segment count ${count} is not 1..16`);
  // size = padded + hash; padded = (floor(L / 16) + 1) * 16 with L = 24 + sum(8 + len): take L = padded - 16.
  const body = size - (hash ? HASH_LEN : 0) - 16 - IMAGE_HEADER_LEN - SEGMENT_HEADER_LEN * count;
  const min = firstMin + 4 * (count - 1);
  if (body < min) throw badOption(`size ${size} is too small for ${count} segments (minimum ${size - body + min})`);
  if (count === 1) return [body];
  const first = Math.max(firstMin, Math.floor(body / count / 4) * 4);
  const rest = body - first; // >= 4 * (count - 1), a multiple of 4
  const each = Math.floor(rest / (count - 1) / 4) * 4;
  const lens = [first, ...new Array<number>(count - 1).fill(each)];
  lens[count - 1]! += rest - each * (count - 1);
  return lens;
}

interface RawSegment {
  loadAddr: number;
  data: Uint8Array;
}

/**
 * Lays out header + segments, then padding, checksum (computed) and SHA-256 (computed when the header's
 * hash_appended byte is non-zero, ESP-IDF's rule). The header's segment_count is written from `segments.length`.
 * Exposed for corrupt(); callers normally use buildImage().
 */
export function assembleImage(header: Uint8Array, segments: RawSegment[], hashAppended = header[23] !== 0): Uint8Array {
  let bodyLen = IMAGE_HEADER_LEN;
  for (const s of segments) bodyLen += SEGMENT_HEADER_LEN + s.data.length;
  const padded = (Math.floor(bodyLen / 16) + 1) * 16;
  const img = new Uint8Array(padded + (hashAppended ? HASH_LEN : 0));
  const dv = new DataView(img.buffer);
  img.set(header.subarray(0, IMAGE_HEADER_LEN), 0);
  img[1] = segments.length & 0xff;
  img[23] = hashAppended ? header[23] || 1 : 0; // a non-zero byte other than 1 is kept (ESP-IDF's rule)
  let off = IMAGE_HEADER_LEN;
  let checksum = CHECKSUM_SEED;
  for (const s of segments) {
    dv.setUint32(off, s.loadAddr >>> 0, true);
    dv.setUint32(off + 4, s.data.length, true);
    img.set(s.data, off + SEGMENT_HEADER_LEN);
    off += SEGMENT_HEADER_LEN;
    for (let k = 0; k < s.data.length; k++) checksum ^= s.data[k]!;
    off += s.data.length;
  }
  img[padded - 1] = checksum;
  if (hashAppended) img.set(sha256(img.subarray(0, padded)), padded);
  return img;
}

/** Builds a valid app image. Throws ESP_IMAGE_BAD_OPTION for impossible options. */
export function buildImage(o: ImageOptions = {}): Uint8Array {
  const hash = o.hashAppended ?? true;
  const marker = o.marker === undefined ? undefined : markerBytes(o.marker);
  let lens: number[];
  if (o.size !== undefined) {
    lens = lengthsForSize(o.size, o.segmentCount ?? o.segments?.length ?? 3, hash, marker === undefined ? APP_DESC_LEN : MARKER_SEGMENT_MIN);
  } else {
    lens = o.segments ?? [0x2000, 0x800, 0x1800];
    if (o.segmentCount !== undefined && o.segmentCount !== lens.length) {
      throw badOption(`segmentCount ${o.segmentCount} disagrees with ${lens.length} segment lengths`);
    }
  }
  if (lens.length < 1 || lens.length > MAX_SEGMENTS) throw badOption(`${lens.length} segments (must be 1..16)`);
  lens.forEach((len, i) => {
    if (!Number.isInteger(len) || len < 0 || len % 4 !== 0) throw badOption(`segment ${i} length ${len} is not a multiple of 4`);
  });
  if (lens[0]! < APP_DESC_LEN) throw badOption(`segment 0 length ${lens[0]} cannot hold the 256-byte descriptor`);
  if (marker !== undefined && lens[0]! < MARKER_SEGMENT_MIN) {
    throw badOption(`segment 0 length ${lens[0]} cannot hold the descriptor and the marker (needs ${MARKER_SEGMENT_MIN})`);
  }

  const header = new Uint8Array(IMAGE_HEADER_LEN);
  const hv = new DataView(header.buffer);
  header[0] = IMAGE_MAGIC;
  header[2] = o.spiMode ?? 2; // DIO
  header[3] = (((o.spiSize ?? 2) & 0xf) << 4) | ((o.spiSpeed ?? 0) & 0xf); // 4 MB, 40 MHz
  hv.setUint32(4, (o.entryAddr ?? 0x40080400) >>> 0, true);
  header[8] = 0xee; // wp_pin: disabled
  hv.setUint16(12, chipId(o.chip ?? "esp32"), true);
  header[14] = 0;
  hv.setUint16(15, o.minChipRevFull ?? 0, true);
  hv.setUint16(17, o.maxChipRevFull ?? 399, true);
  header[23] = hash ? 1 : 0;

  const seed = o.seed ?? 1;
  const desc = buildAppDescriptor(o);
  const segments: RawSegment[] = lens.map((len, i) => {
    const data = pseudoRandomBytes(len, (seed * 0x1000193 + i) >>> 0);
    if (i === 0) data.set(desc, 0);
    if (i === 0 && marker !== undefined) data.set(marker, MARKER_OFFSET - IMAGE_HEADER_LEN - SEGMENT_HEADER_LEN);
    return { loadAddr: loadAddr(i, o.loadAddrs), data };
  });
  const img = assembleImage(header, segments, hash);
  if (o.size !== undefined && img.length !== o.size) {
    throw new Error(`internal: built ${img.length} bytes for size ${o.size}`); // a bug in lengthsForSize
  }
  return img;
}

/** Decodes the 24-byte header. Throws ESP_IMAGE_MALFORMED when fewer than 24 bytes are given. */
export function parseImageHeader(image: Uint8Array): ImageHeader {
  if (image.length < IMAGE_HEADER_LEN) throw malformed(`${image.length} bytes: header needs 24`, image.length);
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  return {
    magic: image[0]!,
    segmentCount: image[1]!,
    spiMode: image[2]!,
    spiSpeed: image[3]! & 0xf,
    spiSize: image[3]! >> 4,
    entryAddr: dv.getUint32(4, true),
    wpPin: image[8]!,
    spiPinDrv: [image[9]!, image[10]!, image[11]!],
    chipId: dv.getUint16(12, true),
    minChipRev: image[14]!,
    minChipRevFull: dv.getUint16(15, true),
    maxChipRevFull: dv.getUint16(17, true),
    hashAppended: image[23] !== 0, // ESP-IDF's rule, see the file header
    hashAppendedByte: image[23]!,
  };
}

/** Decodes esp_app_desc_t at image offset 32 (magic not checked; see `magicWord`). */
export function readAppDescriptor(image: Uint8Array): AppDescriptor & { mmuPageSize: number } {
  if (image.length < IMAGE_HEAD_LEN) throw malformed(`${image.length} bytes: the descriptor ends at 288`, image.length);
  const d = image.subarray(IMAGE_HEADER_LEN + SEGMENT_HEADER_LEN, IMAGE_HEAD_LEN);
  const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
  return {
    magicWord: dv.getUint32(0, true),
    secureVersion: dv.getUint32(4, true),
    version: getCString(d, 16, 32),
    projectName: getCString(d, 48, 32),
    time: getCString(d, 80, 16),
    date: getCString(d, 96, 16),
    idfVer: getCString(d, 112, 32),
    appElfSha256: Buffer.from(d.subarray(144, 176)).toString("hex"),
    mmuPageSize: d[180]!,
  };
}

/** Walks the segments. Throws ESP_IMAGE_MALFORMED when a structure runs past the given bytes. */
export function imageLayout(image: Uint8Array): ImageLayout {
  const header = parseImageHeader(image);
  if (header.magic !== IMAGE_MAGIC) throw malformed(`magic 0x${header.magic.toString(16)} is not 0xe9`, 0);
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const segments: SegmentInfo[] = [];
  let off = IMAGE_HEADER_LEN;
  for (let i = 0; i < header.segmentCount; i++) {
    if (off + SEGMENT_HEADER_LEN > image.length) throw malformed(`segment ${i} header past the end`, off);
    const dataLength = dv.getUint32(off + 4, true);
    if (off + SEGMENT_HEADER_LEN + dataLength > image.length) throw malformed(`segment ${i} data past the end`, off);
    segments.push({ index: i, headerOffset: off, loadAddr: dv.getUint32(off, true), dataOffset: off + 8, dataLength });
    off += SEGMENT_HEADER_LEN + dataLength;
  }
  const checksumOffset = off + (15 - (off % 16));
  const hashOffset = header.hashAppended ? checksumOffset + 1 : undefined;
  const length = checksumOffset + 1 + (header.hashAppended ? HASH_LEN : 0);
  if (length > image.length) throw malformed(`image needs ${length} bytes, has ${image.length}`, image.length);
  return { header, segments, paddingOffset: off, checksumOffset, hashOffset, length };
}

/** XOR checksum of the segment data from 0xEF. */
export function computeChecksum(image: Uint8Array, layout: ImageLayout = imageLayout(image)): number {
  let c = CHECKSUM_SEED;
  for (const s of layout.segments) for (let k = 0; k < s.dataLength; k++) c ^= image[s.dataOffset + k]!;
  return c;
}

export interface ImageCheck {
  /** Every check below passed and nothing follows the image. */
  ok: boolean;
  magicOk: boolean;
  descriptorOk: boolean;
  paddingZero: boolean;
  checksumOk: boolean;
  /** undefined when no hash is appended. */
  hashOk: boolean | undefined;
  trailingBytes: number;
}

/** A reference check of a whole image in memory (the C core is what the device trusts; this is for tests). */
export function checkImage(image: Uint8Array): ImageCheck {
  const layout = imageLayout(image);
  const first = layout.segments[0];
  const descriptorOk =
    first !== undefined && first.dataLength >= APP_DESC_LEN && readAppDescriptor(image).magicWord === APP_DESC_MAGIC;
  let paddingZero = true;
  for (let k = layout.paddingOffset; k < layout.checksumOffset; k++) if (image[k] !== 0) paddingZero = false;
  const checksumOk = computeChecksum(image, layout) === image[layout.checksumOffset];
  let hashOk: boolean | undefined;
  if (layout.hashOffset !== undefined) {
    const want = sha256(image.subarray(0, layout.checksumOffset + 1));
    hashOk = Buffer.from(want).equals(Buffer.from(image.subarray(layout.hashOffset, layout.hashOffset + HASH_LEN)));
  }
  const trailingBytes = image.length - layout.length;
  const magicOk = layout.header.magic === IMAGE_MAGIC;
  return {
    ok: magicOk && descriptorOk && paddingZero && checksumOk && hashOk !== false && trailingBytes === 0,
    magicOk,
    descriptorOk,
    paddingZero,
    checksumOk,
    hashOk,
    trailingBytes,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Corruptions
// ---------------------------------------------------------------------------------------------------------

/**
 * The validator configuration the `expect` codes of the corruption classes refer to ("reference config"):
 * target chip = the good image's chip, slot size = `CorruptOptions.slotSize`, SHA-256 required, image
 * size NOT declared, anti-rollback floor = `minSecureVersion`, and the policy of the OTA state machine
 * with a running app of the same project and a version lower than the good image's (not lower than
 * `downgradeVersion`). Classes whose result depends on declaring the size say so in `note`.
 */
export interface CorruptOptions {
  /** Slot size the "oversize" classes exceed (default 0x100000, ESP-IDF's two-OTA ota_N size). */
  slotSize?: number;
  /** Offset for "truncated-at-offset" / "bit-flip-at-offset" (default: middle of the image). */
  offset?: number;
  /** Segment index for "truncated-at-segment" (cut right before that segment's header; default 1). */
  segment?: number;
  /** Version written by "downgrade" (default "0.0.1"). */
  downgradeVersion?: string;
  /** Project written by "wrong-project" (default "other-firmware"). */
  otherProject?: string;
  /** Chip written by "wrong-chip" (default: ESP32-S3, or ESP32 when the image is for the S3). */
  otherChip?: ChipName | number;
  /** The anti-rollback floor "secure-version-too-low" goes below (default 2; written: floor - 1). */
  minSecureVersion?: number;
  /** Seed for inserted bytes. */
  seed?: number;
}

export interface Corruption {
  kind: CorruptionKind;
  /** Unique, human-readable (includes the parameter, e.g. the cut offset). */
  name: string;
  bytes: Uint8Array;
  /** The OTA code the C core or the policy refuses it with under the reference config. */
  expect: OtaCode;
  /** Refused within the first 288 bytes, or by policy on the descriptor: no flash write may happen. */
  refusedInHead: boolean;
  note?: string;
}

interface KindSpec {
  description: string;
  expect: OtaCode;
  refusedInHead: boolean;
  note?: string;
  make: (img: Uint8Array, l: ImageLayout, o: Required<CorruptOptions>) => Uint8Array;
}

function copy(img: Uint8Array): Uint8Array {
  return new Uint8Array(img);
}
function decompose(img: Uint8Array, l: ImageLayout): RawSegment[] {
  return l.segments.map((s) => ({ loadAddr: s.loadAddr, data: copy(img.subarray(s.dataOffset, s.dataOffset + s.dataLength)) }));
}
function withDescriptor(img: Uint8Array, l: ImageLayout, edit: (desc: Uint8Array) => void): Uint8Array {
  const segs = decompose(img, l);
  edit(segs[0]!.data.subarray(0, APP_DESC_LEN));
  return assembleImage(img.subarray(0, IMAGE_HEADER_LEN), segs, l.header.hashAppended);
}
function withHeader(img: Uint8Array, l: ImageLayout, edit: (h: Uint8Array, dv: DataView) => void): Uint8Array {
  const h = copy(img.subarray(0, IMAGE_HEADER_LEN));
  edit(h, new DataView(h.buffer));
  return assembleImage(h, decompose(img, l), l.header.hashAppended);
}
function setSegmentLength(img: Uint8Array, s: SegmentInfo, len: number): Uint8Array {
  const out = copy(img);
  new DataView(out.buffer).setUint32(s.headerOffset + 4, len >>> 0, true);
  return out;
}
function ascii(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, "latin1"));
}
function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))));
}
function needHash(l: ImageLayout, kind: string): number {
  if (l.hashOffset === undefined) {
    throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_CORRUPTION_UNAVAILABLE, `${kind}: the image has no appended hash`);
  }
  return l.hashOffset;
}
/** Two data bytes in the largest segment past the descriptor (so the descriptor stays intact). */
function twoDataBytes(l: ImageLayout): [number, number] {
  const s = [...l.segments].sort((a, b) => b.dataLength - a.dataLength)[0]!;
  const start = s.index === 0 ? s.dataOffset + APP_DESC_LEN : s.dataOffset;
  const len = s.dataOffset + s.dataLength - start;
  if (len < 2) throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_CORRUPTION_UNAVAILABLE, "no segment data to flip");
  return [start + Math.floor(len / 3), start + Math.floor((2 * len) / 3)];
}

const HTML_404 =
  "HTTP/1.1 404 Not Found\r\n\r\n<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n" +
  "<body><h1>Not Found</h1><p>The requested URL was not found on this server.</p></body></html>\n";

const KINDS = {
  "zero-length": {
    description: "an empty body (HTTP 200 with Content-Length 0)",
    expect: OTA_CODES.OTA_IMAGE_EMPTY,
    refusedInHead: true,
    make: () => new Uint8Array(0),
  },
  "html-error-page": {
    description: "an HTML error page served instead of the image",
    expect: OTA_CODES.OTA_IMAGE_BAD_MAGIC,
    refusedInHead: true,
    make: () => ascii(HTML_404.repeat(8)),
  },
  "json-error-body": {
    description: "a JSON error document served instead of the image",
    expect: OTA_CODES.OTA_IMAGE_BAD_MAGIC,
    refusedInHead: true,
    make: () => ascii('{"code":"AccessDenied","message":"Request has expired"}'),
  },
  "erased-flash": {
    description: "8 KiB of 0xFF (a dump of erased flash)",
    expect: OTA_CODES.OTA_IMAGE_BAD_MAGIC,
    refusedInHead: true,
    make: () => new Uint8Array(8192).fill(0xff),
  },
  "bad-magic": {
    description: "first byte 0xE8 instead of 0xE9",
    expect: OTA_CODES.OTA_IMAGE_BAD_MAGIC,
    refusedInHead: true,
    make: (img) => {
      const out = copy(img);
      out[0] = 0xe8;
      return out;
    },
  },
  "segment-count-zero": {
    description: "header segment_count 0",
    expect: OTA_CODES.OTA_IMAGE_BAD_SEGMENT_COUNT,
    refusedInHead: true,
    make: (img) => {
      const out = copy(img);
      out[1] = 0;
      return out;
    },
  },
  "segment-count-too-many": {
    description: "header segment_count 17 (ESP-IDF allows 16)",
    expect: OTA_CODES.OTA_IMAGE_BAD_SEGMENT_COUNT,
    refusedInHead: true,
    make: (img) => {
      const out = copy(img);
      out[1] = MAX_SEGMENTS + 1;
      return out;
    },
  },
  "wrong-chip": {
    description: "a valid image built for another chip (resealed)",
    expect: OTA_CODES.OTA_IMAGE_WRONG_CHIP,
    refusedInHead: true,
    make: (img, l, o) => withHeader(img, l, (_h, dv) => dv.setUint16(12, chipId(o.otherChip), true)),
  },
  "header-truncated": {
    description: "the stream ends inside the 24-byte header",
    expect: OTA_CODES.OTA_IMAGE_TRUNCATED,
    refusedInHead: true,
    make: (img) => img.slice(0, 16),
  },
  "descriptor-truncated": {
    description: "the stream ends inside the app descriptor",
    expect: OTA_CODES.OTA_IMAGE_TRUNCATED,
    refusedInHead: true,
    make: (img) => img.slice(0, 200),
  },
  "bad-descriptor-magic": {
    description: "esp_app_desc_t.magic_word damaged (resealed: checksum and hash match)",
    expect: OTA_CODES.OTA_IMAGE_BAD_DESCRIPTOR,
    refusedInHead: true,
    make: (img, l) => withDescriptor(img, l, (d) => (d[0]! ^= 0x01)),
  },
  "first-segment-too-short": {
    description: "the first segment is shorter than the 256-byte descriptor",
    expect: OTA_CODES.OTA_IMAGE_BAD_DESCRIPTOR,
    refusedInHead: true,
    make: (img, l) => {
      const segs = decompose(img, l);
      segs[0] = { loadAddr: segs[0]!.loadAddr, data: segs[0]!.data.slice(0, 128) };
      return assembleImage(img.subarray(0, IMAGE_HEADER_LEN), segs, l.header.hashAppended);
    },
  },
  "hash-missing": {
    description: "a valid image without the appended SHA-256 (hash_appended 0) where one is required",
    expect: OTA_CODES.OTA_IMAGE_HASH_MISSING,
    refusedInHead: true,
    make: (img, l) => assembleImage(img.subarray(0, IMAGE_HEADER_LEN), decompose(img, l), false),
  },
  "secure-version-too-low": {
    description: "secure_version below the anti-rollback floor (resealed)",
    expect: OTA_CODES.OTA_SECURE_VERSION_TOO_LOW,
    refusedInHead: true,
    note: "refused only when begin() is given minSecureVersion (CorruptOptions.minSecureVersion)",
    make: (img, l, o) =>
      withDescriptor(img, l, (d) => new DataView(d.buffer, d.byteOffset, 8).setUint32(4, Math.max(0, o.minSecureVersion - 1), true)),
  },
  "wrong-project": {
    description: "a valid image of another project (resealed)",
    expect: OTA_CODES.OTA_PROJECT_MISMATCH,
    refusedInHead: true,
    note: "a policy refusal on the descriptor, not a format error",
    make: (img, l, o) => withDescriptor(img, l, (d) => putCString(d, 48, 32, o.otherProject, "otherProject")),
  },
  downgrade: {
    description: "a valid image with an older version (resealed)",
    expect: OTA_CODES.OTA_DOWNGRADE_REFUSED,
    refusedInHead: true,
    note: "a policy refusal on the descriptor, not a format error",
    make: (img, l, o) => withDescriptor(img, l, (d) => putCString(d, 16, 32, o.downgradeVersion, "downgradeVersion")),
  },
  "segment-length-unaligned": {
    description: "a segment length that is not a multiple of 4 (rebuilt consistently)",
    expect: OTA_CODES.OTA_IMAGE_SEGMENT_UNALIGNED,
    refusedInHead: false,
    make: (img, l) => {
      const segs = decompose(img, l);
      const last = segs[segs.length - 1]!;
      segs[segs.length - 1] = { loadAddr: last.loadAddr, data: concat(last.data, new Uint8Array([0x5a])) };
      if (segs.length === 1) throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_CORRUPTION_UNAVAILABLE, "needs 2 segments");
      return assembleImage(img.subarray(0, IMAGE_HEADER_LEN), segs, l.header.hashAppended);
    },
  },
  "segment-length-past-end": {
    description: "the last segment's length field claims 4 KiB more than the stream holds",
    expect: OTA_CODES.OTA_IMAGE_TRUNCATED,
    refusedInHead: false,
    note: "OTA_IMAGE_PAST_END when the image size is declared (begin({imageSize}))",
    make: (img, l) => {
      const s = l.segments[l.segments.length - 1]!;
      if (s.index === 0) throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_CORRUPTION_UNAVAILABLE, "needs 2 segments");
      return setSegmentLength(img, s, s.dataLength + 4096);
    },
  },
  "segment-length-huge": {
    description: "a segment length field of 0xFFFFFFF0 (u32 overflow bait)",
    expect: OTA_CODES.OTA_IMAGE_TOO_LARGE,
    refusedInHead: false,
    note: "the slot check comes first: OTA_IMAGE_TOO_LARGE also when the image size is declared",
    make: (img, l) => {
      const s = l.segments[l.segments.length - 1]!;
      if (s.index === 0) throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_CORRUPTION_UNAVAILABLE, "needs 2 segments");
      return setSegmentLength(img, s, 0xfffffff0);
    },
  },
  oversize: {
    description: "a valid image one sector larger than the slot",
    expect: OTA_CODES.OTA_IMAGE_TOO_LARGE,
    refusedInHead: false,
    make: (img, l, o) => {
      const segs = decompose(img, l);
      const grow = Math.max(0, o.slotSize + 4096 - img.length);
      const last = segs[segs.length - 1]!;
      segs[segs.length - 1] = { loadAddr: last.loadAddr, data: concat(last.data, pseudoRandomBytes(Math.ceil(grow / 4) * 4, o.seed)) };
      return assembleImage(img.subarray(0, IMAGE_HEADER_LEN), segs, l.header.hashAppended);
    },
  },
  "truncated-at-segment": {
    description: "the stream ends right before a segment header (CorruptOptions.segment)",
    expect: OTA_CODES.OTA_IMAGE_TRUNCATED,
    refusedInHead: false,
    make: (img, l, o) => {
      const s = l.segments[o.segment];
      if (s === undefined || o.segment < 1) {
        throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_CORRUPTION_UNAVAILABLE, `no segment ${o.segment} boundary`);
      }
      return img.slice(0, s.headerOffset);
    },
  },
  "truncated-at-offset": {
    description: "the stream ends at CorruptOptions.offset",
    expect: OTA_CODES.OTA_IMAGE_TRUNCATED,
    refusedInHead: false,
    make: (img, l, o) => {
      if (o.offset <= 0 || o.offset >= l.length) {
        throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_CORRUPTION_UNAVAILABLE, `offset ${o.offset} is not inside 1..${l.length - 1}`);
      }
      return img.slice(0, o.offset);
    },
  },
  "truncated-before-checksum": {
    description: "the stream ends in the padding, before the checksum byte",
    expect: OTA_CODES.OTA_IMAGE_TRUNCATED,
    refusedInHead: false,
    make: (img, l) => img.slice(0, l.checksumOffset),
  },
  "hash-truncated": {
    description: "the stream ends in the middle of the appended SHA-256",
    expect: OTA_CODES.OTA_IMAGE_TRUNCATED,
    refusedInHead: false,
    make: (img, l) => img.slice(0, needHash(l, "hash-truncated") + 16),
  },
  "hash-flag-without-hash": {
    description: "hash_appended is 1 but the stream ends after the checksum",
    expect: OTA_CODES.OTA_IMAGE_TRUNCATED,
    refusedInHead: false,
    make: (img, l) => img.slice(0, needHash(l, "hash-flag-without-hash")),
  },
  "bad-checksum": {
    description: "checksum byte wrong; the SHA-256 recomputed over it (only the checksum check can catch it)",
    expect: OTA_CODES.OTA_IMAGE_BAD_CHECKSUM,
    refusedInHead: false,
    make: (img, l) => {
      const out = copy(img);
      out[l.checksumOffset]! ^= 0xff;
      if (l.hashOffset !== undefined) out.set(sha256(out.subarray(0, l.checksumOffset + 1)), l.hashOffset);
      return out;
    },
  },
  "bit-flip": {
    description: "one payload bit flipped (checksum and SHA-256 both wrong; the checksum comes first)",
    expect: OTA_CODES.OTA_IMAGE_BAD_CHECKSUM,
    refusedInHead: false,
    make: (img, l) => {
      const out = copy(img);
      out[twoDataBytes(l)[0]]! ^= 0x10;
      return out;
    },
  },
  "checksum-preserving-flip": {
    description: "the same bit flipped in two payload bytes: the XOR checksum still matches, the SHA-256 not",
    expect: OTA_CODES.OTA_IMAGE_BAD_HASH,
    refusedInHead: false,
    make: (img, l) => {
      const out = copy(img);
      needHash(l, "checksum-preserving-flip");
      const [a, b] = twoDataBytes(l);
      out[a]! ^= 0x04;
      out[b]! ^= 0x04;
      return out;
    },
  },
  "bad-sha256": {
    description: "the last byte of the appended SHA-256 damaged",
    expect: OTA_CODES.OTA_IMAGE_BAD_HASH,
    refusedInHead: false,
    make: (img, l) => {
      const out = copy(img);
      out[needHash(l, "bad-sha256") + HASH_LEN - 1]! ^= 0x01;
      return out;
    },
  },
  "trailing-garbage": {
    description: "a valid image followed by 8 bytes of text",
    expect: OTA_CODES.OTA_IMAGE_TRAILING_DATA,
    refusedInHead: false,
    make: (img) => concat(img, ascii("garbage!")),
  },
  "two-images": {
    description: "the image twice, back to back",
    expect: OTA_CODES.OTA_IMAGE_TRAILING_DATA,
    refusedInHead: false,
    make: (img) => concat(img, img),
  },
} satisfies Record<string, KindSpec>;

export type CorruptionKind = keyof typeof KINDS;
/** Every corruption class, in a stable order. */
export const CORRUPTION_KINDS = Object.keys(KINDS) as CorruptionKind[];

export function describeCorruption(kind: CorruptionKind): { description: string; expect: OtaCode; note?: string } {
  const k: KindSpec = KINDS[kind];
  return k.note === undefined ? { description: k.description, expect: k.expect } : { description: k.description, expect: k.expect, note: k.note };
}

function fillOptions(image: Uint8Array, l: ImageLayout, o: CorruptOptions): Required<CorruptOptions> {
  const s3 = CHIP_IDS.esp32s3;
  return {
    slotSize: o.slotSize ?? 0x100000,
    offset: o.offset ?? Math.floor(image.length / 2),
    segment: o.segment ?? 1,
    downgradeVersion: o.downgradeVersion ?? "0.0.1",
    otherProject: o.otherProject ?? "other-firmware",
    otherChip: o.otherChip ?? (l.header.chipId === s3 ? CHIP_IDS.esp32 : s3),
    minSecureVersion: o.minSecureVersion ?? 2,
    seed: o.seed ?? 7,
  };
}

/**
 * One corrupted variant of a valid image. Throws ESP_IMAGE_CORRUPTION_UNAVAILABLE for an unknown kind
 * or one the image cannot carry (e.g. "bad-sha256" without a hash), ESP_IMAGE_MALFORMED when `image` is
 * not a well-formed image itself.
 */
export function corrupt(image: Uint8Array, kind: CorruptionKind, options: CorruptOptions = {}): Corruption {
  const spec: KindSpec | undefined = (KINDS as Record<string, KindSpec>)[kind];
  if (spec === undefined) {
    throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_CORRUPTION_UNAVAILABLE, `unknown corruption "${String(kind)}"`);
  }
  const l = imageLayout(image);
  const o = fillOptions(image, l, options);
  const bytes = spec.make(image, l, o);
  let name: string = kind;
  if (kind === "truncated-at-segment") name = `${kind} ${o.segment} (${bytes.length} bytes)`;
  if (kind === "truncated-at-offset") name = `${kind} ${o.offset}`;
  const out: Corruption = { kind, name, bytes, expect: spec.expect, refusedInHead: spec.refusedInHead };
  // A stream that ends at 288 bytes or later has passed the descriptor gate: the first sector was written.
  if (kind === "truncated-at-offset") out.refusedInHead = o.offset < IMAGE_HEAD_LEN;
  if (spec.note !== undefined) out.note = spec.note;
  return out;
}

/**
 * Every class once, plus a truncation at every segment boundary (before each segment header after the
 * first, and right after each segment header) and at the end of the descriptor. Classes the image cannot
 * carry (no hash, one segment) are skipped.
 */
export function allCorruptions(image: Uint8Array, options: CorruptOptions = {}): Corruption[] {
  const l = imageLayout(image);
  const out: Corruption[] = [];
  for (const kind of CORRUPTION_KINDS) {
    if (kind === "truncated-at-segment" || kind === "truncated-at-offset") continue;
    try {
      out.push(corrupt(image, kind, options));
    } catch (e) {
      if (e instanceof ShadowOtaError && e.code === ESP_IMAGE_CODES.ESP_IMAGE_CORRUPTION_UNAVAILABLE) continue;
      throw e;
    }
  }
  for (let i = 1; i < l.segments.length; i++) out.push(corrupt(image, "truncated-at-segment", { ...options, segment: i }));
  const cuts = new Set<number>([IMAGE_HEADER_LEN, IMAGE_HEAD_LEN, ...l.segments.map((s) => s.dataOffset)]);
  for (const at of [...cuts].sort((a, b) => a - b)) out.push(corrupt(image, "truncated-at-offset", { ...options, offset: at }));
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------------------

const USAGE = `usage: tsx src/tools/esp-image.ts --out FILE [--version 1.0.0] [--project shadow-ota] [--chip esp32]
       [--secure-version N] [--size BYTES] [--segments 8192,2048] [--segment-count N] [--no-hash] [--seed N] [--marker TEXT]
       [--corrupt KIND [--slot-size BYTES] [--offset N]]
       tsx src/tools/esp-image.ts --list-corruptions`;

function parseNumber(flag: string, text: string | undefined): number {
  if (text === undefined) throw badOption(`${flag} needs a value`);
  const m = /^(0x[0-9a-f]+|\d+)([km]?)$/i.exec(text.trim());
  if (m === null) throw badOption(`${flag} ${text} is not a number`);
  const unit = m[2]!.toLowerCase() === "k" ? 1024 : m[2]!.toLowerCase() === "m" ? 1024 * 1024 : 1;
  return Number(m[1]) * unit;
}

/** Runs the CLI with `argv` (without node and script); returns the exit status. */
export function main(argv: string[], print: (line: string) => void = console.log): number {
  const o: ImageOptions = {};
  const co: CorruptOptions = {};
  let out: string | undefined;
  let kind: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw badOption(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--version": o.version = value(); break;
      case "--project": o.projectName = value(); break;
      case "--chip": { const c = value(); o.chip = /^\d|^0x/i.test(c) ? parseNumber(flag, c) : c; break; }
      case "--secure-version": o.secureVersion = parseNumber(flag, value()); break;
      case "--size": o.size = parseNumber(flag, value()); break;
      case "--segments": o.segments = value().split(",").map((s) => parseNumber(flag, s)); break;
      case "--segment-count": o.segmentCount = parseNumber(flag, value()); break;
      case "--no-hash": o.hashAppended = false; break;
      case "--marker": o.marker = value(); break;
      case "--seed": o.seed = parseNumber(flag, value()); break;
      case "--out": out = value(); break;
      case "--corrupt": kind = value(); break;
      case "--slot-size": co.slotSize = parseNumber(flag, value()); break;
      case "--offset": co.offset = parseNumber(flag, value()); break;
      case "--list-corruptions":
        for (const k of CORRUPTION_KINDS) print(`${k.padEnd(26)} ${KINDS[k].expect.padEnd(30)} ${KINDS[k].description}`);
        return 0;
      case "--help": case "-h":
        print(USAGE);
        return 0;
      default:
        print(`unknown option ${flag}\n${USAGE}`);
        return 2;
    }
  }
  if (out === undefined) {
    print(`--out is required\n${USAGE}`);
    return 2;
  }
  const image = buildImage(o);
  let bytes = image;
  if (kind !== undefined) {
    if (!(CORRUPTION_KINDS as string[]).includes(kind)) {
      print(`unknown corruption ${kind}; see --list-corruptions`);
      return 2;
    }
    bytes = corrupt(image, kind as CorruptionKind, co).bytes;
  }
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  fs.writeFileSync(out, bytes);
  const d = readAppDescriptor(image);
  print(`${out}: ${bytes.length} bytes, ${d.projectName} ${d.version}${kind === undefined ? "" : `, corrupted: ${kind}`}`);
  return 0;
}

if (require.main === module) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (e) {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 1;
  }
}
