/**
 * Flash files for the host simulator (a build/test tool): a file the size of the ESP32's SPI flash, all
 * 0xFF (erased), with the binary partition table at 0x8000 generated from a `partitions/*.csv`, and
 * optionally app images already in their partitions (as `esptool.py write_flash` would leave them) and an
 * otadata entry choosing the boot slot. The host OTA layer (src/native/host/) opens such a file.
 *
 * otadata entry (esp_ota_select_entry_t, 32 bytes): ota_seq u32, seq_label u8[20] (0xFF), ota_state u32,
 * crc u32 = crc32_le(0xFFFFFFFF, ota_seq as 4 LE bytes) — docs/formats.md §3.
 *
 * Not here: a bootloader image at 0x1000 (the simulated bootloader is C code, not flash content), NVS
 * contents, flash encryption. Not for the device.
 *
 * CLI: tsx src/tools/flash-file.ts --out build/flash.bin [--csv partitions/test-small.csv] [--size 1M]
 *        [--image factory=build/images/a.bin] [--image ota_0=b.bin] [--boot-slot 0 [--boot-state VALID]]
 *      tsx src/tools/flash-file.ts --csv partitions/partitions.csv --print
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { ShadowOtaError } from "../core/errors";
import {
  DATA_SUBTYPE,
  PARTITION_TABLE_OFFSET,
  PARTITION_TYPE,
  PartitionEntry,
  loadPartitionCsv,
  otaSlots,
  parseSize,
  partitionTableBinary,
  partitionsToCsv,
  validatePartitions,
} from "./partition-table";

/** Error codes of this tool. */
export const FLASH_FILE_CODES = {
  /** Size is not a positive multiple of 4 KiB, or too small for the table. */
  FLASH_FILE_BAD_SIZE: "FLASH_FILE_BAD_SIZE",
  /** An image names a partition that does not exist, is not an app partition, or does not fit it. */
  FLASH_FILE_BAD_IMAGE: "FLASH_FILE_BAD_IMAGE",
  /** boot option without otadata or with a slot that does not exist. */
  FLASH_FILE_BAD_BOOT: "FLASH_FILE_BAD_BOOT",
} as const;

export const DEFAULT_FLASH_SIZE = 4 * 1024 * 1024;
/** The repository's partitions/ folder. */
export const PARTITIONS_DIR = path.resolve(__dirname, "..", "..", "partitions");
export const DEFAULT_CSV = path.join(PARTITIONS_DIR, "partitions.csv");
/** 1 MiB layout with 256 KiB slots for fast tests. */
export const TEST_SMALL_CSV = path.join(PARTITIONS_DIR, "test-small.csv");
export const TEST_SMALL_FLASH_SIZE = 1024 * 1024;

export const OTA_STATE = { NEW: 0, PENDING_VERIFY: 1, VALID: 2, INVALID: 3, ABORTED: 4, UNDEFINED: 0xffffffff } as const;
export type OtaStateName = keyof typeof OTA_STATE;

export interface FlashFileOptions {
  /** Flash size in bytes (default 4 MiB). */
  size?: number;
  /** Partition table: entries, or a CSV file path (default partitions/partitions.csv). */
  partitions?: readonly PartitionEntry[] | string;
  /** App images by partition name, e.g. { factory: img } or { ota_0: img }. */
  images?: Readonly<Record<string, Uint8Array>>;
  /** Write one otadata entry (sector 0) selecting OTA slot `slot` (ota_seq = slot + 1), state default VALID. */
  boot?: { slot: number; state?: OtaStateName };
}

/** crc32_le(0xFFFFFFFF, bytes) as ESP-IDF's ROM computes it (= Python binascii.crc32(bytes, 0xFFFFFFFF)). */
export function espCrc32Le(bytes: Uint8Array, init = 0xffffffff): number {
  let crc = ~init >>> 0;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return ~crc >>> 0;
}

/** The 32-byte esp_ota_select_entry_t. */
export function otaSelectEntry(seq: number, state: number): Uint8Array {
  const e = new Uint8Array(32).fill(0xff);
  const dv = new DataView(e.buffer);
  dv.setUint32(0, seq >>> 0, true);
  dv.setUint32(24, state >>> 0, true);
  dv.setUint32(28, espCrc32Le(e.subarray(0, 4)), true);
  return e;
}

function resolvePartitions(p: FlashFileOptions["partitions"], size: number): PartitionEntry[] {
  if (p === undefined || typeof p === "string") return loadPartitionCsv(p ?? DEFAULT_CSV, { flashSize: size });
  validatePartitions(p, { flashSize: size });
  return [...p];
}

/** The whole flash content in memory. Throws FLASH_FILE_* or partition-table codes. */
export function buildFlash(options: FlashFileOptions = {}): { flash: Uint8Array; partitions: PartitionEntry[] } {
  const size = options.size ?? DEFAULT_FLASH_SIZE;
  if (!Number.isSafeInteger(size) || size <= 0 || size % 4096 !== 0 || size < PARTITION_TABLE_OFFSET + 0x1000) {
    throw new ShadowOtaError(FLASH_FILE_CODES.FLASH_FILE_BAD_SIZE, `flash size ${size} is not a multiple of 4 KiB of at least 0x9000`);
  }
  const partitions = resolvePartitions(options.partitions, size);
  const flash = new Uint8Array(size).fill(0xff);
  flash.set(partitionTableBinary(partitions, { flashSize: size }), PARTITION_TABLE_OFFSET);
  for (const [name, image] of Object.entries(options.images ?? {})) {
    const p = partitions.find((e) => e.name === name);
    if (p === undefined || p.type !== PARTITION_TYPE.app) {
      throw new ShadowOtaError(FLASH_FILE_CODES.FLASH_FILE_BAD_IMAGE, `no app partition "${name}"`);
    }
    if (image.length > p.size) {
      throw new ShadowOtaError(FLASH_FILE_CODES.FLASH_FILE_BAD_IMAGE, `image of ${image.length} bytes does not fit "${name}" (${p.size})`);
    }
    flash.set(image, p.offset);
  }
  if (options.boot !== undefined) {
    const otadata = partitions.find((e) => e.type === PARTITION_TYPE.data && e.subtype === DATA_SUBTYPE.ota);
    const slots = otaSlots(partitions);
    const { slot } = options.boot;
    if (otadata === undefined || !Number.isInteger(slot) || slot < 0 || slot >= slots.length) {
      throw new ShadowOtaError(FLASH_FILE_CODES.FLASH_FILE_BAD_BOOT, `cannot select OTA slot ${slot} (${slots.length} slots, otadata ${otadata ? "present" : "missing"})`);
    }
    flash.set(otaSelectEntry(slot + 1, OTA_STATE[options.boot.state ?? "VALID"]), otadata.offset);
  }
  return { flash, partitions };
}

/** Writes the flash file (creating parent folders). Returns the partitions it holds. */
export function createFlashFile(file: string, options: FlashFileOptions = {}): PartitionEntry[] {
  const { flash, partitions } = buildFlash(options);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, flash);
  return partitions;
}

const USAGE = `usage: tsx src/tools/flash-file.ts --out FILE [--csv partitions/partitions.csv] [--size 4M]
       [--image NAME=IMAGE.bin]... [--boot-slot N [--boot-state VALID|NEW|PENDING_VERIFY|...]]
       tsx src/tools/flash-file.ts [--csv FILE] --print`;

/** Runs the CLI; returns the exit status. */
export function main(argv: string[], print: (line: string) => void = console.log): number {
  let out: string | undefined;
  let csv = DEFAULT_CSV;
  let size: number | undefined;
  let printOnly = false;
  let bootSlot: number | undefined;
  let bootState: OtaStateName = "VALID";
  const images: Record<string, Uint8Array> = {};
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new ShadowOtaError(FLASH_FILE_CODES.FLASH_FILE_BAD_SIZE, `${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--out": out = value(); break;
      case "--csv": csv = value(); break;
      case "--size": {
        const v = value();
        size = parseSize(v);
        if (size === undefined) { print(`bad --size ${v}`); return 2; }
        break;
      }
      case "--image": {
        const v = value();
        const eq = v.indexOf("=");
        if (eq <= 0) { print(`--image wants NAME=FILE, got ${v}`); return 2; }
        images[v.slice(0, eq)] = new Uint8Array(fs.readFileSync(v.slice(eq + 1)));
        break;
      }
      case "--boot-slot": bootSlot = Number(value()); break;
      case "--boot-state": {
        const v = value().toUpperCase();
        if (!(v in OTA_STATE)) { print(`unknown state ${v}`); return 2; }
        bootState = v as OtaStateName;
        break;
      }
      case "--print": printOnly = true; break;
      case "--help": case "-h": print(USAGE); return 0;
      default: print(`unknown option ${flag}\n${USAGE}`); return 2;
    }
  }
  if (printOnly) {
    print(partitionsToCsv(loadPartitionCsv(csv, size === undefined ? {} : { flashSize: size })).trimEnd());
    return 0;
  }
  if (out === undefined) { print(`--out is required\n${USAGE}`); return 2; }
  const options: FlashFileOptions = { partitions: csv, images };
  if (size !== undefined) options.size = size;
  if (bootSlot !== undefined) options.boot = { slot: bootSlot, state: bootState };
  const parts = createFlashFile(out, options);
  print(`${out}: ${size ?? DEFAULT_FLASH_SIZE} bytes, ${parts.length} partitions, images: ${Object.keys(images).join(", ") || "none"}`);
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
