/**
 * ESP32 partition tables (a build/test tool): the CSV form that ESP-IDF's gen_esp32part.py and Moddable's
 * `build.PARTITIONS_FILE` read, validation, the binary form the bootloader and esp_partition read at flash
 * offset 0x8000, and parsing that binary back. Written from the format description in
 * docs/formats.md §2 and ESP-IDF's "Partition Tables" guide, cross-checked against the
 * behaviour of gen_esp32part.py (not a port of it).
 *
 * CSV grammar (one partition per line; `#` starts a comment line; blank lines ignored; fields trimmed;
 * missing trailing fields are empty):
 *
 *   line    = name "," type "," subtype "," [offset] "," size ["," flags]
 *   type    = "app" | "data" | integer (0x40..0xFE for custom types)
 *   subtype = app: "factory" | "test" | "ota_0".."ota_15"; data: "ota" | "phy" | "nvs" | "coredump" |
 *             "nvs_keys" | "efuse" | "undefined" | "esphttpd" | "fat" | "spiffs" | "littlefs"; or integer
 *   integer = decimal | 0x-hex, optionally followed by K (x1024) or M (x1048576), case-insensitive
 *   flags   = flag (":" flag)*  with flag = "encrypted" (bit 0) | "readonly" (bit 1)
 *
 * An empty offset is placed right after the previous partition (the first one after the table's sector,
 * 0x9000), rounded up to 64 KiB for app partitions and 4 KiB for data partitions, as gen_esp32part does.
 *
 * Binary form (0xC00 bytes): 32-byte entries {magic AA 50, type u8, subtype u8, offset u32, size u32,
 * label char[16] NUL-padded, flags u32}, then the MD5 entry {EB EB, 14 x FF, MD5 of all entries before it},
 * then 0xFF up to 0xC00.
 *
 * Stricter than gen_esp32part.py on purpose (these tables feed a power-cut-safe OTA writer): every
 * offset and size must be a multiple of the 4 KiB erase sector, app offsets of 64 KiB, and a table with
 * OTA app slots must have exactly one otadata partition of 0x2000 bytes. Not here: Secure Boot signed
 * tables, `$VARIABLE` expansion, negative (end-address) sizes.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";

import { ShadowOtaError } from "../core/errors";

/** Error codes of this tool. `detail.line` (CSV) or `detail.entry` (binary) says where. */
export const PARTITION_TABLE_CODES = {
  /** A CSV line cannot be parsed (unknown type/subtype/flag, bad number, missing field). */
  PARTITION_CSV_SYNTAX: "PARTITION_CSV_SYNTAX",
  /** A name is empty, longer than 16 bytes, not ASCII, or used twice. */
  PARTITION_BAD_NAME: "PARTITION_BAD_NAME",
  /** An offset or size breaks an alignment rule (app 64 KiB, everything 4 KiB), or a size is 0. */
  PARTITION_MISALIGNED: "PARTITION_MISALIGNED",
  /** Two partitions overlap, or one starts inside the partition table's sector. */
  PARTITION_OVERLAP: "PARTITION_OVERLAP",
  /** A partition ends past the flash size. */
  PARTITION_OUT_OF_FLASH: "PARTITION_OUT_OF_FLASH",
  /** OTA slots without exactly one otadata of 0x2000 bytes, two otadata, or one app subtype twice. */
  PARTITION_OTA_LAYOUT: "PARTITION_OTA_LAYOUT",
  /** More entries than fit into 0xC00 bytes with the MD5 entry. */
  PARTITION_TABLE_TOO_LONG: "PARTITION_TABLE_TOO_LONG",
  /** A binary table is malformed: bad entry magic, MD5 mismatch, no end marker, wrong length. */
  PARTITION_BINARY_INVALID: "PARTITION_BINARY_INVALID",
} as const;

export const PARTITION_TABLE_OFFSET = 0x8000;
export const PARTITION_TABLE_MAX_LEN = 0xc00;
/** The table occupies a whole sector: the first partition starts at 0x8000 + 0x1000 at the earliest. */
export const PARTITION_TABLE_SECTOR = 0x1000;
export const ENTRY_LEN = 32;
export const SECTOR_SIZE = 0x1000;
export const APP_ALIGNMENT = 0x10000;
export const OTADATA_SIZE = 0x2000;
export const MAX_LABEL_LEN = 16;

export const PARTITION_TYPE = { app: 0x00, data: 0x01 } as const;
export const APP_SUBTYPE: Readonly<Record<string, number>> = {
  factory: 0x00,
  test: 0x20,
  ...Object.fromEntries(Array.from({ length: 16 }, (_, n) => [`ota_${n}`, 0x10 + n])),
};
export const DATA_SUBTYPE: Readonly<Record<string, number>> = {
  ota: 0x00,
  phy: 0x01,
  nvs: 0x02,
  coredump: 0x03,
  nvs_keys: 0x04,
  efuse: 0x05,
  undefined: 0x06,
  esphttpd: 0x80,
  fat: 0x81,
  spiffs: 0x82,
  littlefs: 0x83,
};
export const PARTITION_FLAGS: Readonly<Record<string, number>> = { encrypted: 1 << 0, readonly: 1 << 1 };

export interface PartitionEntry {
  name: string;
  type: number;
  subtype: number;
  /** Absolute flash offset. */
  offset: number;
  size: number;
  /** Bit 0 encrypted, bit 1 readonly. */
  flags: number;
}

export interface PartitionTableOptions {
  /** Where the table itself lives (default 0x8000). */
  tableOffset?: number;
  /** Flash size; when given, every partition must end within it. */
  flashSize?: number;
}

function fail(code: string, message: string, detail?: Record<string, string | number>): ShadowOtaError {
  return detail === undefined ? new ShadowOtaError(code, message) : new ShadowOtaError(code, message, { detail });
}

/** `integer` of the grammar above; undefined for anything else. */
export function parseSize(text: string): number | undefined {
  const m = /^(0x[0-9a-f]+|[0-9]+)([km]?)$/i.exec(text.trim());
  if (m === null) return undefined;
  const unit = m[2]!.toLowerCase() === "k" ? 1024 : m[2]!.toLowerCase() === "m" ? 1024 * 1024 : 1;
  const value = Number(m[1]) * unit;
  return Number.isSafeInteger(value) && value <= 0xffffffff ? value : undefined;
}

function parseType(text: string, line: number): number {
  const t = text.toLowerCase();
  if (t === "app" || t === "data") return PARTITION_TYPE[t];
  const n = parseSize(text);
  if (n === undefined || /[km]$/i.test(text) || n > 0xfe) {
    throw fail(PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, `line ${line}: unknown partition type "${text}"`, { line });
  }
  return n;
}

function parseSubtype(text: string, type: number, line: number): number {
  const names = type === PARTITION_TYPE.app ? APP_SUBTYPE : type === PARTITION_TYPE.data ? DATA_SUBTYPE : {};
  if (text === "") {
    if (type === PARTITION_TYPE.app) {
      throw fail(PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, `line ${line}: an app partition needs a subtype`, { line });
    }
    return DATA_SUBTYPE.undefined!;
  }
  const named = names[text.toLowerCase()];
  if (named !== undefined) return named;
  const n = parseSize(text);
  if (n === undefined || /[km]$/i.test(text) || n > 0xfe) {
    throw fail(PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, `line ${line}: unknown subtype "${text}"`, { line });
  }
  return n;
}

function parseFlags(text: string, line: number): number {
  let flags = 0;
  for (const f of text.split(":").map((s) => s.trim())) {
    if (f === "") continue;
    const bit = PARTITION_FLAGS[f.toLowerCase()];
    if (bit === undefined) throw fail(PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, `line ${line}: unknown flag "${f}"`, { line });
    flags |= bit;
  }
  return flags;
}

/** Parses a CSV table, places partitions with empty offsets, validates (see validatePartitions). */
export function parsePartitionCsv(text: string, options: PartitionTableOptions = {}): PartitionEntry[] {
  const tableOffset = options.tableOffset ?? PARTITION_TABLE_OFFSET;
  const rows: { entry: Omit<PartitionEntry, "offset"> & { offset: number | undefined }; line: number }[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const trimmed = raw.trim();
    if (trimmed === "" || trimmed.startsWith("#")) return;
    const fields = `${trimmed},,,,,`.split(",").map((f) => f.trim());
    if (trimmed.split(",").slice(6).some((f) => f.trim() !== "")) {
      throw fail(PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, `line ${line}: more than 6 fields`, { line });
    }
    const [name, typeText, subtypeText, offsetText, sizeText, flagsText] = fields as [string, string, string, string, string, string];
    if (typeText === "") throw fail(PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, `line ${line}: the type is empty`, { line });
    const type = parseType(typeText, line);
    const subtype = parseSubtype(subtypeText, type, line);
    let offset: number | undefined;
    if (offsetText !== "") {
      offset = parseSize(offsetText);
      if (offset === undefined) throw fail(PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, `line ${line}: bad offset "${offsetText}"`, { line });
    }
    if (sizeText === "") throw fail(PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, `line ${line}: the size is empty`, { line });
    const size = parseSize(sizeText);
    if (size === undefined) throw fail(PARTITION_TABLE_CODES.PARTITION_CSV_SYNTAX, `line ${line}: bad size "${sizeText}"`, { line });
    rows.push({ entry: { name, type, subtype, offset, size, flags: parseFlags(flagsText, line) }, line });
  });

  // Placement: in file order, after the previous partition's end (the first after the table's sector).
  let lastEnd = tableOffset + PARTITION_TABLE_SECTOR;
  const entries: PartitionEntry[] = rows.map(({ entry, line }) => {
    let offset = entry.offset;
    if (offset === undefined) {
      const align = entry.type === PARTITION_TYPE.app ? APP_ALIGNMENT : SECTOR_SIZE;
      offset = Math.ceil(lastEnd / align) * align;
    } else if (offset < lastEnd) {
      throw fail(
        PARTITION_TABLE_CODES.PARTITION_OVERLAP,
        `line ${line}: "${entry.name}" at 0x${offset.toString(16)} starts before the previous partition ends (0x${lastEnd.toString(16)})`,
        { line },
      );
    }
    lastEnd = offset + entry.size;
    return { ...entry, offset };
  });
  validatePartitions(entries, options);
  return entries;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * Checks a table: names (1..16 ASCII bytes, unique), alignment (app offsets 64 KiB; all offsets and sizes
 * 4 KiB; sizes > 0), no overlap and nothing inside the table's sector, within flashSize, at most one
 * otadata of exactly 0x2000 bytes and exactly one when OTA app slots exist, no app subtype twice, and
 * that the binary form fits 0xC00 bytes. Throws ShadowOtaError with a PARTITION_TABLE_CODES code.
 */
export function validatePartitions(entries: readonly PartitionEntry[], options: PartitionTableOptions = {}): void {
  const tableOffset = options.tableOffset ?? PARTITION_TABLE_OFFSET;
  const names = new Set<string>();
  for (const p of entries) {
    if (p.name === "" || Buffer.byteLength(p.name, "latin1") > MAX_LABEL_LEN || !/^[\x20-\x7e]+$/.test(p.name)) {
      throw fail(PARTITION_TABLE_CODES.PARTITION_BAD_NAME, `partition name "${p.name}" must be 1..16 printable ASCII characters`);
    }
    if (names.has(p.name)) throw fail(PARTITION_TABLE_CODES.PARTITION_BAD_NAME, `partition name "${p.name}" is used twice`);
    names.add(p.name);
    const align = p.type === PARTITION_TYPE.app ? APP_ALIGNMENT : SECTOR_SIZE;
    if (p.offset % align !== 0) {
      throw fail(PARTITION_TABLE_CODES.PARTITION_MISALIGNED, `"${p.name}" offset ${hex(p.offset)} is not aligned to ${hex(align)}`);
    }
    if (p.size === 0 || p.size % SECTOR_SIZE !== 0) {
      throw fail(PARTITION_TABLE_CODES.PARTITION_MISALIGNED, `"${p.name}" size ${hex(p.size)} is not a non-zero multiple of 4 KiB`);
    }
    if (p.offset + p.size > 0x100000000) {
      throw fail(PARTITION_TABLE_CODES.PARTITION_OUT_OF_FLASH, `"${p.name}" ends past 4 GiB`);
    }
    if (options.flashSize !== undefined && p.offset + p.size > options.flashSize) {
      throw fail(
        PARTITION_TABLE_CODES.PARTITION_OUT_OF_FLASH,
        `"${p.name}" ends at ${hex(p.offset + p.size)}, past the ${hex(options.flashSize)}-byte flash`,
      );
    }
  }
  const sorted = [...entries].sort((a, b) => a.offset - b.offset);
  let prev: PartitionEntry | undefined;
  for (const p of sorted) {
    if (p.offset < tableOffset + PARTITION_TABLE_SECTOR && p.offset + p.size > tableOffset) {
      throw fail(PARTITION_TABLE_CODES.PARTITION_OVERLAP, `"${p.name}" at ${hex(p.offset)} overlaps the partition table at ${hex(tableOffset)}`);
    }
    if (prev !== undefined && p.offset < prev.offset + prev.size) {
      throw fail(
        PARTITION_TABLE_CODES.PARTITION_OVERLAP,
        `"${p.name}" at ${hex(p.offset)} overlaps "${prev.name}" (${hex(prev.offset)}..${hex(prev.offset + prev.size - 1)})`,
      );
    }
    prev = p;
  }
  const otadata = entries.filter((p) => p.type === PARTITION_TYPE.data && p.subtype === DATA_SUBTYPE.ota);
  const slots = entries.filter((p) => p.type === PARTITION_TYPE.app && p.subtype >= 0x10 && p.subtype <= 0x1f);
  if (otadata.length > 1) throw fail(PARTITION_TABLE_CODES.PARTITION_OTA_LAYOUT, "more than one otadata partition");
  if (otadata.length === 1 && otadata[0]!.size !== OTADATA_SIZE) {
    throw fail(PARTITION_TABLE_CODES.PARTITION_OTA_LAYOUT, `otadata must be 0x2000 bytes, is ${hex(otadata[0]!.size)}`);
  }
  if (slots.length > 0 && otadata.length === 0) {
    throw fail(PARTITION_TABLE_CODES.PARTITION_OTA_LAYOUT, "OTA app slots need an otadata partition (data, ota, 0x2000)");
  }
  const appSubtypes = new Set<number>();
  for (const p of entries.filter((e) => e.type === PARTITION_TYPE.app)) {
    if (appSubtypes.has(p.subtype)) {
      throw fail(PARTITION_TABLE_CODES.PARTITION_OTA_LAYOUT, `app subtype ${hex(p.subtype)} ("${p.name}") is used twice`);
    }
    appSubtypes.add(p.subtype);
  }
  if ((entries.length + 1) * ENTRY_LEN >= PARTITION_TABLE_MAX_LEN) {
    throw fail(PARTITION_TABLE_CODES.PARTITION_TABLE_TOO_LONG, `${entries.length} entries do not fit 0xC00 bytes with the MD5 entry`);
  }
}

/** The binary table (0xC00 bytes) with the MD5 entry. Validates first. */
export function partitionTableBinary(entries: readonly PartitionEntry[], options: PartitionTableOptions = {}): Uint8Array {
  validatePartitions(entries, options);
  const out = new Uint8Array(PARTITION_TABLE_MAX_LEN).fill(0xff);
  const dv = new DataView(out.buffer);
  entries.forEach((p, i) => {
    const o = i * ENTRY_LEN;
    out[o] = 0xaa;
    out[o + 1] = 0x50;
    out[o + 2] = p.type;
    out[o + 3] = p.subtype;
    dv.setUint32(o + 4, p.offset, true);
    dv.setUint32(o + 8, p.size, true);
    out.fill(0, o + 12, o + 28);
    out.set(Buffer.from(p.name, "latin1"), o + 12);
    dv.setUint32(o + 28, p.flags >>> 0, true);
  });
  const m = entries.length * ENTRY_LEN;
  out[m] = 0xeb;
  out[m + 1] = 0xeb; // bytes m+2 .. m+15 stay 0xFF
  out.set(createHash("md5").update(out.subarray(0, m)).digest(), m + 16);
  return out;
}

function isAll(bytes: Uint8Array, value: number): boolean {
  return bytes.every((b) => b === value);
}

/**
 * Parses a binary table (what sits at 0x8000; 0xC00 bytes or more, trailing bytes ignored). Entries run
 * until an all-0xFF entry; an MD5 entry (EB EB) must carry the MD5 of the entries before it and be
 * followed by the end marker. Validates the result. Throws PARTITION_BINARY_INVALID or a validation code.
 */
export function parsePartitionTableBinary(bytes: Uint8Array, options: PartitionTableOptions & { requireMd5?: boolean } = {}): PartitionEntry[] {
  if (bytes.length < PARTITION_TABLE_MAX_LEN) {
    throw fail(PARTITION_TABLE_CODES.PARTITION_BINARY_INVALID, `${bytes.length} bytes; a table is 0xC00 bytes`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const entries: PartitionEntry[] = [];
  let md5Seen = false;
  for (let i = 0; i * ENTRY_LEN < PARTITION_TABLE_MAX_LEN; i++) {
    const o = i * ENTRY_LEN;
    const e = bytes.subarray(o, o + ENTRY_LEN);
    if (isAll(e, 0xff)) {
      if ((options.requireMd5 ?? true) && !md5Seen) {
        throw fail(PARTITION_TABLE_CODES.PARTITION_BINARY_INVALID, "no MD5 entry before the end marker", { entry: i });
      }
      validatePartitions(entries, options);
      return entries;
    }
    if (md5Seen) throw fail(PARTITION_TABLE_CODES.PARTITION_BINARY_INVALID, "entries after the MD5 entry", { entry: i });
    if (e[0] === 0xeb && e[1] === 0xeb) {
      if (!isAll(e.subarray(2, 16), 0xff)) {
        throw fail(PARTITION_TABLE_CODES.PARTITION_BINARY_INVALID, "MD5 entry bytes 2..15 are not 0xFF", { entry: i });
      }
      const want = createHash("md5").update(bytes.subarray(0, o)).digest();
      if (!want.equals(Buffer.from(e.subarray(16, 32)))) {
        throw fail(PARTITION_TABLE_CODES.PARTITION_BINARY_INVALID, "MD5 of the entries does not match", { entry: i });
      }
      md5Seen = true;
      continue;
    }
    if (e[0] !== 0xaa || e[1] !== 0x50) {
      throw fail(PARTITION_TABLE_CODES.PARTITION_BINARY_INVALID, `entry ${i}: magic ${e[0]!.toString(16)} ${e[1]!.toString(16)} is not AA 50`, { entry: i });
    }
    const label = e.subarray(12, 28);
    const nul = label.indexOf(0);
    entries.push({
      name: Buffer.from(nul < 0 ? label : label.subarray(0, nul)).toString("latin1"),
      type: e[2]!,
      subtype: e[3]!,
      offset: dv.getUint32(o + 4, true),
      size: dv.getUint32(o + 8, true),
      flags: dv.getUint32(o + 28, true),
    });
  }
  throw fail(PARTITION_TABLE_CODES.PARTITION_BINARY_INVALID, "no end-of-table marker within 0xC00 bytes");
}

function nameOf(table: Readonly<Record<string, number>>, value: number): string | undefined {
  return Object.keys(table).find((k) => table[k] === value);
}

/** The CSV form (explicit offsets, sizes in hex): parsePartitionCsv(partitionsToCsv(t)) equals t. */
export function partitionsToCsv(entries: readonly PartitionEntry[]): string {
  const rows = ["# Name, Type, SubType, Offset, Size, Flags"];
  for (const p of entries) {
    const type = p.type === PARTITION_TYPE.app ? "app" : p.type === PARTITION_TYPE.data ? "data" : hex(p.type);
    const names = p.type === PARTITION_TYPE.app ? APP_SUBTYPE : p.type === PARTITION_TYPE.data ? DATA_SUBTYPE : {};
    const subtype = nameOf(names, p.subtype) ?? hex(p.subtype);
    const flags = Object.keys(PARTITION_FLAGS)
      .filter((k) => (p.flags & PARTITION_FLAGS[k]!) !== 0)
      .join(":");
    rows.push(`${p.name}, ${type}, ${subtype}, ${hex(p.offset)}, ${hex(p.size)},${flags === "" ? "" : ` ${flags}`}`);
  }
  return `${rows.join("\n")}\n`;
}

/** Reads and parses a CSV file. */
export function loadPartitionCsv(file: string, options: PartitionTableOptions = {}): PartitionEntry[] {
  return parsePartitionCsv(fs.readFileSync(file, "utf8"), options);
}

/** The entry of that name; throws PARTITION_BAD_NAME when absent. */
export function findPartition(entries: readonly PartitionEntry[], name: string): PartitionEntry {
  const p = entries.find((e) => e.name === name);
  if (p === undefined) throw fail(PARTITION_TABLE_CODES.PARTITION_BAD_NAME, `no partition "${name}"`);
  return p;
}

/** The OTA app slots (ota_0, ota_1, ...) in subtype order. */
export function otaSlots(entries: readonly PartitionEntry[]): PartitionEntry[] {
  return entries.filter((p) => p.type === PARTITION_TYPE.app && p.subtype >= 0x10 && p.subtype <= 0x1f).sort((a, b) => a.subtype - b.subtype);
}
