/**
 * Test fixtures for the native OTA slot: a minimal ESP32 app-image builder, a binary partition table
 * writer and a flash-file maker, all in temp dirs. Deliberately independent of src/tools/ (G2's
 * esp-image / partition-table / flash-file tools), so the C core is checked against a second, small
 * implementation of the same format (docs/formats.md).
 *
 * Not a general tool: no CSV parsing, no Secure Boot; images are generated in memory, never committed.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export const SECTOR = 4096;

export interface ImageOptions {
  version?: string;
  projectName?: string;
  chipId?: number;
  secureVersion?: number;
  /** Data lengths of the segments (multiples of 4; the first >= 256 holds the descriptor). */
  segments?: number[];
  /** Append the SHA-256 (default true). */
  hash?: boolean;
  /** Seed of the segment payload bytes. */
  seed?: number;
}

function writeCString(buf: Uint8Array, offset: number, size: number, text: string): void {
  for (let i = 0; i < size; i++) buf[offset + i] = i < text.length ? text.charCodeAt(i) & 0xff : 0;
}

/** Builds a valid image: header, segments (descriptor first), zero padding, checksum, optional SHA-256. */
export function buildImage(o: ImageOptions = {}): Uint8Array {
  const segments = o.segments ?? [1024, 512];
  const hash = o.hash ?? true;
  let seed = (o.seed ?? 1) >>> 0 || 1;
  const rand = (): number => {
    seed ^= seed << 13;
    seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    seed >>>= 0;
    return seed & 0xff;
  };
  let bodyLen = 24;
  for (const len of segments) bodyLen += 8 + len;
  const padded = bodyLen + (15 - (bodyLen % 16)) + 1;
  const total = padded + (hash ? 32 : 0);
  const img = new Uint8Array(total);
  const dv = new DataView(img.buffer);
  img[0] = 0xe9;
  img[1] = segments.length;
  img[2] = 2; // DIO
  img[3] = 0x20; // 40 MHz, 4 MB
  dv.setUint32(4, 0x400d0000 + 0x18, true);
  img[8] = 0xee;
  dv.setUint16(12, o.chipId ?? 0, true);
  img[23] = hash ? 1 : 0;
  let off = 24;
  let checksum = 0xef;
  segments.forEach((len, i) => {
    dv.setUint32(off, 0x3f400020 + i * 0x10000, true);
    dv.setUint32(off + 4, len, true);
    off += 8;
    const data = img.subarray(off, off + len);
    for (let k = 0; k < len; k++) data[k] = rand();
    if (i === 0 && len >= 256) {
      const d = new DataView(img.buffer, off, 256);
      d.setUint32(0, 0xabcd5432, true);
      d.setUint32(4, o.secureVersion ?? 0, true);
      d.setUint32(8, 0, true);
      d.setUint32(12, 0, true);
      writeCString(data, 16, 32, o.version ?? "1.0.0");
      writeCString(data, 48, 32, o.projectName ?? "shadow-ota");
      writeCString(data, 80, 16, "12:00:00");
      writeCString(data, 96, 16, "Nov 22 2026");
      writeCString(data, 112, 32, "v5.3");
      for (let k = 176; k < 256; k++) data[k] = 0;
    }
    for (let k = 0; k < len; k++) checksum ^= data[k]!;
    off += len;
  });
  img[padded - 1] = checksum;
  if (hash) img.set(createHash("sha256").update(img.subarray(0, padded)).digest(), padded);
  return img;
}

/** Recomputes checksum and SHA-256 after a test edited segment data (layout must be intact). */
export function resealImage(img: Uint8Array): Uint8Array {
  const dv = new DataView(img.buffer, img.byteOffset, img.byteLength);
  let off = 24;
  let checksum = 0xef;
  for (let s = 0; s < img[1]!; s++) {
    const len = dv.getUint32(off + 4, true);
    off += 8;
    for (let k = 0; k < len; k++) checksum ^= img[off + k]!;
    off += len;
  }
  const padded = off + (15 - (off % 16)) + 1;
  img[padded - 1] = checksum;
  if (img[23]) img.set(createHash("sha256").update(img.subarray(0, padded)).digest(), padded);
  return img;
}

/** Offsets where each segment header starts, plus the checksum byte and the hash. */
export function imageBoundaries(img: Uint8Array): { segmentHeaders: number[]; checksumAt: number; hashAt: number } {
  const dv = new DataView(img.buffer, img.byteOffset, img.byteLength);
  const segmentHeaders: number[] = [];
  let off = 24;
  for (let s = 0; s < img[1]!; s++) {
    segmentHeaders.push(off);
    off += 8 + dv.getUint32(off + 4, true);
  }
  const checksumAt = off + (15 - (off % 16));
  return { segmentHeaders, checksumAt, hashAt: checksumAt + 1 };
}

export interface PartitionSpec {
  label: string;
  type: number;
  subtype: number;
  offset: number;
  size: number;
}

/** ESP-IDF's two_ota layout, shrunk: 64 KiB app slots in a 256 KiB flash. */
export const SMALL_TWO_OTA: PartitionSpec[] = [
  { label: "nvs", type: 1, subtype: 2, offset: 0x9000, size: 0x4000 },
  { label: "otadata", type: 1, subtype: 0, offset: 0xd000, size: 0x2000 },
  { label: "phy_init", type: 1, subtype: 1, offset: 0xf000, size: 0x1000 },
  { label: "factory", type: 0, subtype: 0x00, offset: 0x10000, size: 0x10000 },
  { label: "ota_0", type: 0, subtype: 0x10, offset: 0x20000, size: 0x10000 },
  { label: "ota_1", type: 0, subtype: 0x11, offset: 0x30000, size: 0x10000 },
];
export const SMALL_FLASH_SIZE = 0x40000;

/** The binary table (0xC00 bytes): 32-byte entries, the MD5 entry, 0xFF fill. */
export function partitionTable(parts: PartitionSpec[]): Uint8Array {
  const t = new Uint8Array(0xc00).fill(0xff);
  const dv = new DataView(t.buffer);
  parts.forEach((p, i) => {
    const o = i * 32;
    t[o] = 0xaa;
    t[o + 1] = 0x50;
    t[o + 2] = p.type;
    t[o + 3] = p.subtype;
    dv.setUint32(o + 4, p.offset, true);
    dv.setUint32(o + 8, p.size, true);
    writeCString(t, o + 12, 16, p.label);
    dv.setUint32(o + 28, 0, true);
  });
  const m = parts.length * 32;
  t[m] = 0xeb;
  t[m + 1] = 0xeb;
  t.set(createHash("md5").update(t.subarray(0, m)).digest(), m + 16);
  return t;
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
}

/** Writes a blank (0xFF) flash file with the table at 0x8000 and the images at their partitions. */
export function makeFlashFile(
  file: string,
  images: Record<string, Uint8Array> = {},
  parts: PartitionSpec[] = SMALL_TWO_OTA,
  size = SMALL_FLASH_SIZE,
): string {
  const flash = new Uint8Array(size).fill(0xff);
  flash.set(partitionTable(parts), 0x8000);
  for (const [label, img] of Object.entries(images)) {
    const p = parts.find((x) => x.label === label);
    if (p === undefined) throw new Error(`no partition ${label}`);
    flash.set(img, p.offset);
  }
  fs.writeFileSync(file, flash);
  return file;
}

export function partition(label: string, parts: PartitionSpec[] = SMALL_TWO_OTA): PartitionSpec {
  const p = parts.find((x) => x.label === label);
  if (p === undefined) throw new Error(`no partition ${label}`);
  return p;
}

/** Bytes of one partition as they are in the file now. */
export function readPartition(file: string, label: string, parts: PartitionSpec[] = SMALL_TWO_OTA): Buffer {
  const p = partition(label, parts);
  const fd = fs.openSync(file, "r");
  try {
    const b = Buffer.alloc(p.size);
    fs.readSync(fd, b, 0, p.size, p.offset);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

export function writeAt(file: string, offset: number, bytes: Uint8Array): void {
  const fd = fs.openSync(file, "r+");
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}
