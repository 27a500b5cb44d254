/**
 * KeyValueStore (src/ports/kv-store.ts) in one JSON file, for the Node simulator of the device: the stand-in
 * for NVS. Every `set`/`delete` rewrites the whole file through a temporary file, fsync and rename (then
 * fsyncs the directory), so a crash or power cut leaves the old file or the new one, never a mix; when the
 * write fails the store keeps its previous contents in memory and on disk and throws KV_WRITE_FAILED.
 *
 * The device's limits are enforced here so that the simulator refuses what NVS would: keys of 1..15 bytes
 * (NVS_KEY_NAME_MAX_SIZE is 16 with the NUL), values up to KV_VALUE_MAX_BYTES (3999) UTF-8 bytes (NVS: 4000 with the NUL), strings only.
 * A file that is not such a JSON object is refused with KV_FILE_INVALID and left untouched.
 *
 * Not here: namespaces, concurrent writers (one process owns the file), NVS's total capacity.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { writeFileAtomic } from "./atomic-file";

import { ShadowOtaError } from "../core/errors";
import { KV_VALUE_MAX_BYTES } from "../core/shadow-sync";
import { SYNC_CODES } from "../core/sync-errors";
import type { KeyValueStore } from "../ports/kv-store";

/** Stable codes of the key-value adapters (a contract). A value that is too large is SYNC_PAYLOAD_TOO_LARGE
 *  (see sync-errors.ts), with `detail` {key, size, max}. */
export const KV_CODES = {
  /** A key that is empty or longer than 15 UTF-8 bytes (the NVS limit). `detail`: {key, size, max}. */
  KV_KEY_INVALID: "KV_KEY_INVALID",
  /** The file exists but is not a JSON object of strings; nothing was changed. `detail.path`; `cause`. */
  KV_FILE_INVALID: "KV_FILE_INVALID",
  /** The file could not be written; the previous contents are kept. `detail.path`; `cause` = the fs error. */
  KV_WRITE_FAILED: "KV_WRITE_FAILED",
} as const;

export const KV_KEY_MAX_BYTES = 15;

function utf8Length(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

export class FileKvStore implements KeyValueStore {
  readonly file: string;
  #data: Map<string, string>;

  /** Loads `file` (absent = empty store). Throws KV_FILE_INVALID for a file that is not a JSON object of strings. */
  constructor(file: string) {
    this.file = path.resolve(file);
    this.#data = FileKvStore.#load(this.file);
  }

  static #load(file: string): Map<string, string> {
    let text: string;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return new Map();
      throw new ShadowOtaError(KV_CODES.KV_FILE_INVALID, `cannot read ${file}`, { cause: e, detail: { path: file } });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (cause) {
      throw new ShadowOtaError(KV_CODES.KV_FILE_INVALID, `${file} is not JSON`, { cause, detail: { path: file } });
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new ShadowOtaError(KV_CODES.KV_FILE_INVALID, `${file} is not a JSON object`, { detail: { path: file } });
    }
    const m = new Map<string, string>();
    for (const [k, v] of Object.entries(parsed)) {
      if (typeof v !== "string") throw new ShadowOtaError(KV_CODES.KV_FILE_INVALID, `${file}: value of ${JSON.stringify(k)} is not a string`, { detail: { path: file, key: k } });
      m.set(k, v);
    }
    return m;
  }

  get(key: string): string | undefined {
    return this.#data.get(key);
  }

  /** Stores `value` durably. Throws KV_KEY_INVALID, SYNC_PAYLOAD_TOO_LARGE, KV_WRITE_FAILED; TypeError for a non-string. */
  set(key: string, value: string): void {
    checkKey(key);
    if (typeof value !== "string") throw new TypeError(`value for ${key} must be a string`);
    const size = utf8Length(value);
    if (size > KV_VALUE_MAX_BYTES) {
      throw new ShadowOtaError(SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE, `value for ${key} is ${size} bytes; the store holds at most ${KV_VALUE_MAX_BYTES}`,
        { detail: { key, size, max: KV_VALUE_MAX_BYTES } });
    }
    if (this.#data.get(key) === value) return;
    const next = new Map(this.#data);
    next.set(key, value);
    this.#commit(next);
  }

  /** Removes `key` durably (nothing is written when it is absent). Throws KV_KEY_INVALID, KV_WRITE_FAILED. */
  delete(key: string): void {
    checkKey(key);
    if (!this.#data.has(key)) return;
    const next = new Map(this.#data);
    next.delete(key);
    this.#commit(next);
  }

  /** The stored keys (for tools and tests). */
  keys(): string[] {
    return [...this.#data.keys()];
  }

  #commit(next: Map<string, string>): void {
    const text = JSON.stringify(Object.fromEntries(next), null, 1) + "\n";
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      writeFileAtomic(this.file, text, { tmp: `${this.file}.tmp` });
    } catch (cause) {
      throw new ShadowOtaError(KV_CODES.KV_WRITE_FAILED, `cannot write ${this.file}`, { cause, detail: { path: this.file } });
    }
    this.#data = next;
    fsyncDir(path.dirname(this.file));
  }
}

function checkKey(key: string): void {
  if (typeof key !== "string") throw new TypeError("key must be a string");
  const size = utf8Length(key);
  if (size === 0 || size > KV_KEY_MAX_BYTES) {
    throw new ShadowOtaError(KV_CODES.KV_KEY_INVALID, `key ${JSON.stringify(key)} must be 1..${KV_KEY_MAX_BYTES} bytes (NVS)`, { detail: { key, size, max: KV_KEY_MAX_BYTES } });
  }
}

/** Makes the rename durable. Some file systems refuse fsync on a directory; the rename itself is done. */
function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, "r");
    fs.fsyncSync(fd);
  } catch {
    // EISDIR/EINVAL on file systems without directory fsync: nothing more can be done from Node
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
