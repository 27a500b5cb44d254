/**
 * KeyValueStore (src/ports/kv-store.ts) in one file, for the Node simulator of the device: the stand-in for
 * NVS, and built the way NVS is — a log. ESP-IDF's NVS appends each write as a new entry in a flash page
 * (with a CRC) and marks the old one erased; a write torn by a power cut fails its CRC and the previous
 * value stands. Here every `set`/`delete` adds one entry to the file, and opening the file replays them.
 *
 * File format (little-endian; only this file reads or writes it):
 *
 *   file    = MAGIC entry* free                    MAGIC = "NVSLOG1\n" (8 bytes)
 *   entry   = crc:u32 len:u32 payload[len]          crc = CRC-32 (IEEE, zlib's) of len and payload
 *   payload = op:u8 keyLen:u8 key[keyLen] value     op 1 = set (value = the UTF-8 rest), 2 = delete (no value)
 *   free    = zero bytes up to the file's size      (NVS: erased entries; a zero len ends the log)
 *
 * The file has a fixed size, its capacity; each entry goes into the free space after the last one.
 * Replay stops at a zero length (the end), or at the first entry that is incomplete or whose CRC does not
 * match: that entry and anything after it are ignored (`droppedBytes` counts them: the bytes up to the last
 * non-zero one within one largest entry after the end, where a torn entry can be), so the values before it
 * stand. The process can only tear the last entry (see durability); a
 * failed write, or a dropped tail found when opening, makes the next write a compaction, so no garbage is
 * ever followed by entries. An entry whose CRC matches but which does not parse (unknown op, key length,
 * not UTF-8) was not written by this code: KV_FILE_INVALID.
 *
 * Compaction: when an entry does not fit in the free space, the live values are written instead as a new
 * file (MAGIC, one set per key, free space as a hole) through writeFileAtomic (temporary file, fsync,
 * rename, directory fsync). Its capacity is `compactBytes` (default 1 MiB) or twice the live values plus one
 * largest entry, whichever is larger. The first write after opening a file in the old format, or one with
 * a dropped tail, is such a rewrite too.
 *
 * Durability, decided: an entry is stored into a MAP_SHARED mapping of the file (mapFile of the native
 * module, src/native/napi/ota_napi.c) or, when that module is not built or `mapped: false`, written with
 * one pwrite(2) — without msync or fsync (`writeMode` says which). When `set` returns, the entry is in the
 * kernel's page cache, so it survives the death of the process at any instant (SIGKILL, a crash, the
 * simulator's power cut — an in-process cut after which a new FileKvStore opens the same file; the host
 * flash file is likewise a MAP_SHARED mapping without msync). It does not survive a crash or power loss of
 * the host machine (an fsync per entry costs about 1 ms, and the OTA controller writes an entry per 4 KiB
 * sector: 1,954 for an 8 MB image); after one, the log may end early or in garbage, and the replay still
 * yields the values of a prefix of the writes. Compactions are fsync'd. Measured on the development
 * machine: a mapped entry about 1.2 µs, a pwrite entry about 5 µs, a compaction 3 to 10 ms (its fsync).
 *
 * Old format: a file that holds a JSON object of strings (what this store wrote before the log) is read
 * as is, and rewritten in the log format at the first write. Anything else is refused with
 * KV_FILE_INVALID and left untouched.
 *
 * The device's limits are enforced here so that the simulator refuses what NVS would: keys of 1..15 bytes
 * (NVS_KEY_NAME_MAX_SIZE is 16 with the NUL), values up to KV_VALUE_MAX_BYTES (3999) UTF-8 bytes (NVS:
 * 4000 with the NUL), strings only. When a write fails the store keeps its previous contents in memory and
 * throws KV_WRITE_FAILED.
 *
 * Ownership: the store holds the file mapped (or open) for writing; `close()` releases it (safe twice; a
 * later write maps it again), and a store that is garbage-collected releases it too. One store writes a
 * file at a time: a new store over the same file (a reboot) takes over, the old one must not write any
 * more. Nothing may truncate the file while a store has it mapped (the process would get SIGBUS); the store
 * itself only ever replaces it by rename.
 * Not here: namespaces, concurrent writers, NVS's total capacity.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { crc32 } from "node:zlib";
import { writeFileAtomic } from "./atomic-file";

import { ShadowOtaError } from "../core/errors";
import { KV_VALUE_MAX_BYTES } from "../core/shadow-sync";
import { SYNC_CODES } from "../core/sync-errors";
import { loadNativeOtaModule } from "../native/ota-slot";
import type { KeyValueStore } from "../ports/kv-store";

/** Stable codes of the key-value adapters (a contract). A value that is too large is SYNC_PAYLOAD_TOO_LARGE
 *  (see sync-errors.ts), with `detail` {key, size, max}. */
export const KV_CODES = {
  /** A key that is empty or longer than 15 UTF-8 bytes (the NVS limit). `detail`: {key, size, max}. */
  KV_KEY_INVALID: "KV_KEY_INVALID",
  /** The file exists but is neither a key-value log (with every CRC-valid entry well-formed) nor a JSON object of strings (the old format); nothing was changed. `detail.path`; `cause`. */
  KV_FILE_INVALID: "KV_FILE_INVALID",
  /** The file could not be written; the previous contents are kept. `detail.path`; `cause` = the fs error. */
  KV_WRITE_FAILED: "KV_WRITE_FAILED",
} as const;

export const KV_KEY_MAX_BYTES = 15;

/** First bytes of a log file. */
export const KV_LOG_MAGIC = Buffer.from("NVSLOG1\n", "latin1");
/** crc + len. */
const ENTRY_HEAD = 8;
const OP_SET = 1;
const OP_DELETE = 2;
/** The largest payload a valid entry has: op, key length, a 15-byte key, a 3999-byte value. */
const MAX_PAYLOAD = 2 + KV_KEY_MAX_BYTES + KV_VALUE_MAX_BYTES;
const DEFAULT_COMPACT_BYTES = 1024 * 1024;

/** How an entry is written at an offset on the pwrite path (tests inject a failing or short one). */
export type KvWriteAt = (fd: number, data: Uint8Array, position: number) => number;

export interface FileKvStoreOptions {
  /** The capacity of a compacted file, at least (see the header). Default 1 MiB: about 3,000 of the OTA
   *  controller's records (about 330 bytes each), so an 8 MB update (1,954 sectors, 650 KB of entries)
   *  compacts at most once; a compaction costs an fsync (3 to 10 ms here). Larger files take longer to
   *  open (the whole file is read; 4 MiB took 25 to 40 ms here on a loaded machine). */
  compactBytes?: number;
  /** Store entries through a mapping of the file when the native module is built (default true). */
  mapped?: boolean;
  /** Write entries with this instead (implies the pwrite path); returns the bytes written. */
  writeAt?: KvWriteAt;
}

/** The native module's mapped files (src/native/napi/ota_napi.c, js_map_file). */
interface FileMapper {
  mapFile(path: string, length: number): ArrayBuffer;
  unmapFile(buffer: ArrayBuffer): void;
}

/** The mapper of the built native module, or undefined (then entries are written with pwrite). */
function nativeMapper(): FileMapper | undefined {
  let mod: Partial<FileMapper>;
  try {
    mod = loadNativeOtaModule() as unknown as Partial<FileMapper>;
  } catch (e) {
    // OTA_NATIVE_UNAVAILABLE: the module is not built. The store works without it (writeMode "pwrite").
    if (e instanceof ShadowOtaError) return undefined;
    throw e;
  }
  return typeof mod.mapFile === "function" && typeof mod.unmapFile === "function" ? (mod as FileMapper) : undefined;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function utf8Length(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

/** Closes the descriptor of a pwrite-path store that was collected without close(). (A mapping goes
 *  with its ArrayBuffer.) */
const fdCloser = new FinalizationRegistry<number>((fd) => {
  try {
    fs.closeSync(fd);
  } catch {
    // Collected after the descriptor was closed some other way: nothing is left to release.
  }
});

export class FileKvStore implements KeyValueStore {
  readonly file: string;
  /** Bytes of an incomplete or damaged tail the replay ignored when the store was opened (0: none). */
  readonly droppedBytes: number;
  /** The format the file was in when opened: "log", "json" (the old whole-file format) or "none" (absent). */
  readonly openedFormat: "log" | "json" | "none";
  /** How entries reach the file: stores into a mapping, or pwrite (see the header). */
  readonly writeMode: "mapped" | "pwrite";
  readonly #compactBytes: number;
  readonly #writeAt: KvWriteAt;
  readonly #mapper: FileMapper | undefined;
  #data: Map<string, string>;
  /** Bytes of valid log in the file: where the next entry goes. */
  #size: number;
  /** The file's size: entries fit up to here. 0 when there is no log file yet. */
  #capacity: number;
  /** The file is not a clean log (absent, old format, dropped tail, a failed write): rewrite it. */
  #rewrite: boolean;
  #map: Uint8Array | undefined;
  #fd: number | undefined;
  readonly #token = {};

  /** Loads `file` (absent = empty store). Throws KV_FILE_INVALID for a file that is neither format. */
  constructor(file: string, options: FileKvStoreOptions = {}) {
    this.file = path.resolve(file);
    const compact = options.compactBytes ?? DEFAULT_COMPACT_BYTES;
    if (!Number.isSafeInteger(compact) || compact < 1) throw new RangeError("compactBytes must be a positive integer");
    this.#compactBytes = compact;
    this.#writeAt = options.writeAt ?? ((fd, data, position) => fs.writeSync(fd, data, 0, data.length, position));
    this.#mapper = options.writeAt === undefined && options.mapped !== false ? nativeMapper() : undefined;
    this.writeMode = this.#mapper === undefined ? "pwrite" : "mapped";
    const loaded = FileKvStore.#load(this.file);
    this.#data = loaded.data;
    this.#size = loaded.size;
    this.#capacity = loaded.capacity;
    this.droppedBytes = loaded.dropped;
    this.openedFormat = loaded.format;
    this.#rewrite = loaded.format !== "log" || loaded.dropped > 0;
  }

  static #load(file: string): { data: Map<string, string>; size: number; capacity: number; dropped: number; format: "log" | "json" | "none" } {
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return { data: new Map(), size: 0, capacity: 0, dropped: 0, format: "none" };
      throw new ShadowOtaError(KV_CODES.KV_FILE_INVALID, `cannot read ${file}`, { cause: e, detail: { path: file } });
    }
    if (bytes.length >= KV_LOG_MAGIC.length && bytes.subarray(0, KV_LOG_MAGIC.length).equals(KV_LOG_MAGIC)) {
      return { ...replay(file, bytes), capacity: bytes.length, format: "log" };
    }
    return { data: loadJson(file, bytes), size: 0, capacity: 0, dropped: 0, format: "json" };
  }

  /** Bytes of valid log (MAGIC and the entries); the next entry goes there. For tools and tests. */
  get logSize(): number {
    return this.#size;
  }

  get(key: string): string | undefined {
    return this.#data.get(key);
  }

  /** Stores `value` (durable as the header says). Throws KV_KEY_INVALID, SYNC_PAYLOAD_TOO_LARGE,
   *  KV_WRITE_FAILED; TypeError for a non-string. */
  set(key: string, value: string): void {
    const keySize = checkKey(key);
    if (typeof value !== "string") throw new TypeError(`value for ${key} must be a string`);
    const size = utf8Length(value);
    if (size > KV_VALUE_MAX_BYTES) {
      throw new ShadowOtaError(SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE, `value for ${key} is ${size} bytes; the store holds at most ${KV_VALUE_MAX_BYTES}`,
        { detail: { key, size, max: KV_VALUE_MAX_BYTES } });
    }
    if (this.#data.get(key) === value) return;
    this.#commit(encodeEntry(OP_SET, key, keySize, value, size), (m) => m.set(key, value));
  }

  /** Removes `key` (nothing is written when it is absent). Throws KV_KEY_INVALID, KV_WRITE_FAILED. */
  delete(key: string): void {
    const keySize = checkKey(key);
    if (!this.#data.has(key)) return;
    this.#commit(encodeEntry(OP_DELETE, key, keySize, "", 0), (m) => m.delete(key));
  }

  /** The stored keys (for tools and tests). */
  keys(): string[] {
    return [...this.#data.keys()];
  }

  /** Releases the mapping or descriptor; safe twice. The store stays usable (the next write maps again). */
  close(): void {
    const map = this.#map;
    this.#map = undefined;
    if (map !== undefined) this.#mapper!.unmapFile(map.buffer as ArrayBuffer);
    if (this.#fd === undefined) return;
    const fd = this.#fd;
    this.#fd = undefined;
    fdCloser.unregister(this.#token);
    fs.closeSync(fd);
  }

  /** Writes `entry` into the free space, or rewrites the file with `change` applied; only then changes the
   *  memory. */
  #commit(entry: Buffer, change: (m: Map<string, string>) => void): void {
    if (this.#rewrite || this.#size + entry.length > this.#capacity) {
      const next = new Map(this.#data);
      change(next);
      this.#compact(next);
      this.#data = next;
      return;
    }
    try {
      if (this.#mapper !== undefined) {
        this.#mapped().set(entry, this.#size);
      } else {
        const n = this.#writeAt(this.#open(), entry, this.#size);
        if (n !== entry.length) throw new Error(`short write: ${n} of ${entry.length} bytes`);
      }
    } catch (cause) {
      // The file may now hold part of the entry past #size: the next write rewrites the file, so no entry
      // ever follows a torn one.
      this.#rewrite = true;
      throw new ShadowOtaError(KV_CODES.KV_WRITE_FAILED, `cannot write to ${this.file}`, { cause, detail: { path: this.file } });
    }
    this.#size += entry.length;
    change(this.#data);
  }

  /** Writes `data` as a fresh log (atomically) and points the store at it. Throws KV_WRITE_FAILED. */
  #compact(data: Map<string, string>): void {
    const live = logBytes(data);
    const want = Math.max(this.#compactBytes, 2 * live.length + ENTRY_HEAD + MAX_PAYLOAD);
    const capacity = Math.ceil(want / 4096) * 4096;
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      this.close(); // the rename replaces the file: entries must go to the new one
      // A failed directory fsync (returned, not thrown) only weakens the host-crash guarantee, which this
      // store does not give for single entries either (see the header).
      // The free space is a hole (zeros nobody writes or flushes): a compaction writes and fsyncs only
      // the live values. mapFile reserves the blocks before storing into them.
      writeFileAtomic(this.file, live, { tmp: `${this.file}.tmp`, size: capacity });
    } catch (cause) {
      throw new ShadowOtaError(KV_CODES.KV_WRITE_FAILED, `cannot write ${this.file}`, { cause, detail: { path: this.file } });
    }
    this.#size = live.length;
    this.#capacity = capacity;
    this.#rewrite = false;
  }

  #mapped(): Uint8Array {
    if (this.#map === undefined) this.#map = new Uint8Array(this.#mapper!.mapFile(this.file, this.#capacity));
    return this.#map;
  }

  #open(): number {
    if (this.#fd === undefined) {
      this.#fd = fs.openSync(this.file, "r+");
      fdCloser.register(this, this.#fd, this.#token);
    }
    return this.#fd;
  }
}

function checkKey(key: string): number {
  if (typeof key !== "string") throw new TypeError("key must be a string");
  const size = utf8Length(key);
  if (size === 0 || size > KV_KEY_MAX_BYTES) {
    throw new ShadowOtaError(KV_CODES.KV_KEY_INVALID, `key ${JSON.stringify(key)} must be 1..${KV_KEY_MAX_BYTES} bytes (NVS)`, { detail: { key, size, max: KV_KEY_MAX_BYTES } });
  }
  return size;
}

/** One entry of the header's grammar. `keySize`/`valueSize` are the UTF-8 lengths. */
function encodeEntry(op: number, key: string, keySize: number, value: string, valueSize: number): Buffer {
  const len = 2 + keySize + valueSize;
  const b = Buffer.allocUnsafe(ENTRY_HEAD + len);
  b.writeUInt32LE(len, 4);
  b[8] = op;
  b[9] = keySize;
  b.write(key, 10, keySize, "utf8");
  if (valueSize > 0) b.write(value, 10 + keySize, valueSize, "utf8");
  b.writeUInt32LE(crc32(b.subarray(4)), 0);
  return b;
}

/** A log holding `data` only: MAGIC and one set per key. */
function logBytes(data: Map<string, string>): Buffer {
  const parts: Buffer[] = [KV_LOG_MAGIC];
  for (const [k, v] of data) parts.push(encodeEntry(OP_SET, k, utf8Length(k), v, utf8Length(v)));
  return Buffer.concat(parts);
}

/** The log's values, its valid length and the bytes of the ignored tail. */
function replay(file: string, bytes: Buffer): { data: Map<string, string>; size: number; dropped: number } {
  // Where each key's last entry is (its value is decoded once, at the end: a log holds thousands of
  // superseded records); -1 = deleted.
  const last = new Map<string, number>();
  let pos = KV_LOG_MAGIC.length;
  while (bytes.length - pos >= ENTRY_HEAD) {
    const len = bytes.readUInt32LE(pos + 4);
    if (len === 0) break; // free space (or an entry torn before its length)
    if (len < 3 || len > MAX_PAYLOAD || pos + ENTRY_HEAD + len > bytes.length) break; // torn or damaged
    if (crc32(bytes.subarray(pos + 4, pos + ENTRY_HEAD + len)) !== bytes.readUInt32LE(pos)) break;
    const op = bytes[pos + ENTRY_HEAD]!;
    const keyLen = bytes[pos + ENTRY_HEAD + 1]!;
    const bad = (why: string, cause?: unknown): ShadowOtaError =>
      new ShadowOtaError(KV_CODES.KV_FILE_INVALID, `${file}: the entry at byte ${pos} ${why}`, cause === undefined ? { detail: { path: file, offset: pos } } : { cause, detail: { path: file, offset: pos } });
    if (keyLen < 1 || keyLen > KV_KEY_MAX_BYTES || 2 + keyLen > len) throw bad(`has a key of ${keyLen} bytes`);
    let key: string;
    try {
      key = utf8.decode(bytes.subarray(pos + ENTRY_HEAD + 2, pos + ENTRY_HEAD + 2 + keyLen));
    } catch (cause) {
      throw bad("has a key that is not UTF-8", cause);
    }
    if (op === OP_SET) last.set(key, pos);
    else if (op === OP_DELETE && len === 2 + keyLen) last.set(key, -1);
    else throw bad(`has op ${op}${op === OP_DELETE ? " with a value" : ""}`);
    pos += ENTRY_HEAD + len;
  }
  const data = new Map<string, string>();
  for (const [key, at] of last) {
    if (at < 0) continue;
    const from = at + ENTRY_HEAD + 2 + bytes[at + ENTRY_HEAD + 1]!;
    try {
      data.set(key, utf8.decode(bytes.subarray(from, at + ENTRY_HEAD + bytes.readUInt32LE(at + 4))));
    } catch (cause) {
      throw new ShadowOtaError(KV_CODES.KV_FILE_INVALID, `${file}: the entry at byte ${at} has a value that is not UTF-8`, { cause, detail: { path: file, offset: at } });
    }
  }
  // A torn entry lies within one largest entry of the end; the writer leaves zeros everywhere else.
  const tail = bytes.subarray(0, Math.min(bytes.length, pos + ENTRY_HEAD + MAX_PAYLOAD));
  return { data, size: pos, dropped: endOfData(tail, pos) - pos };
}

const ZEROS = Buffer.alloc(4096);

/** The offset after the last non-zero byte of `b` at or after `from` (`from` when there is none). */
function endOfData(b: Buffer, from: number): number {
  let end = b.length;
  while (end > from) {
    const start = Math.max(from, end - ZEROS.length);
    if (!b.subarray(start, end).equals(ZEROS.subarray(0, end - start))) {
      for (let i = end - 1; i >= start; i--) if (b[i] !== 0) return i + 1;
    }
    end = start;
  }
  return from;
}

/** The old format: one JSON object of strings. */
function loadJson(file: string, bytes: Buffer): Map<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8.decode(bytes));
  } catch (cause) {
    throw new ShadowOtaError(KV_CODES.KV_FILE_INVALID, `${file} is neither a key-value log nor JSON`, { cause, detail: { path: file } });
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ShadowOtaError(KV_CODES.KV_FILE_INVALID, `${file} is not a JSON object`, { detail: { path: file } });
  }
  const m = new Map<string, string>();
  for (const [k, v] of Object.entries(parsed)) {
    if (typeof v !== "string") throw new ShadowOtaError(KV_CODES.KV_FILE_INVALID, `${file}: value of ${JSON.stringify(k)} is not a string`, { detail: { path: file, key: k } });
    const keySize = utf8Length(k);
    if (keySize === 0 || keySize > KV_KEY_MAX_BYTES || utf8Length(v) > KV_VALUE_MAX_BYTES) {
      throw new ShadowOtaError(KV_CODES.KV_FILE_INVALID, `${file}: key ${JSON.stringify(k)} or its value is beyond the NVS limits`, { detail: { path: file, key: k } });
    }
    m.set(k, v);
  }
  return m;
}
