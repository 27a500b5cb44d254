/**
 * The local cloud's persistent state: one JSON file per cloud data directory (`{dataDir}/cloud-store.json`)
 * holding the AWS shadows (documents, metadata, versions, deleted shadows' versions) and the Azure twins
 * (sections and `$version`s), so both survive a restart of the local cloud.
 *
 * Every write is synchronous and atomic: the whole file is written to a temporary file in the same
 * directory, fsynced, renamed over the old one and the directory fsynced. A service writes before it
 * publishes an accepted response, so an update a device saw accepted is on disk. Writes are not batched
 * (a write per accepted update; the services' own rate limits keep that small).
 *
 * Loading never guesses: a missing file is an empty store; an unreadable, non-JSON or wrongly shaped file
 * throws CLOUD_STORE_CORRUPT naming the file and is left untouched.
 *
 * One writer per directory, enforced: `open` takes `{dataDir}/cloud-store.lock` (created whole with
 * link(2), so it is never seen half-written; it holds {pid, hostname, since}) and `close` (or the process's
 * normal exit) removes it. A second open — from another process or from this one — throws
 * CLOUD_STORE_LOCKED naming the holder's pid. A lock whose pid is no longer running on this host is stale
 * (a killed cloud) and is taken over: renamed away, then checked to be the stale one that was read (if a
 * live process re-created the lock in between, it is put back and the open fails). A lock from another
 * host, or whose pid was reused by an unrelated process, is never taken over: the message says which file
 * to delete. `CloudStore.read` loads without the lock, for inspection while a cloud runs (the file is
 * replaced by rename, so a reader sees the old or the new file, never a mix).
 *
 * Not here: the shadow and twin rules (shadow-engine.ts, twin-engine.ts), rate-limit windows, pending
 * direct methods (not persisted: a restart starts them over).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { writeFileAtomic } from "../node/atomic-file";
import * as path from "node:path";
import { ShadowOtaError } from "../core/errors";
import { isJsonObject, type JsonObject } from "../core/json";
import { CLOUD_CODES } from "./cloud-errors";
import { checkShadowTable, type ShadowTable } from "./shadow-engine";
import { checkTwinTable, type TwinTable } from "./twin-engine";

export const CLOUD_STORE_FILE = "cloud-store.json";
/** The writer's lock beside the store file. */
export const CLOUD_STORE_LOCK_FILE = "cloud-store.lock";
export const CLOUD_STORE_FORMAT = "shadow-ota-cloud-store";
export const CLOUD_STORE_FORMAT_VERSION = 1;

/** The file's content. */
export interface CloudStoreData {
  format: typeof CLOUD_STORE_FORMAT;
  formatVersion: typeof CLOUD_STORE_FORMAT_VERSION;
  aws: { shadows: ShadowTable };
  azure: { twins: TwinTable };
}

function ioError(file: string, operation: string, cause: unknown): ShadowOtaError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new ShadowOtaError(CLOUD_CODES.CLOUD_STORE_IO, `cloud store ${operation} failed for ${file}: ${reason}`,
    { cause, detail: { path: file, operation } });
}

function corrupt(file: string, reason: string, cause?: unknown): ShadowOtaError {
  return new ShadowOtaError(CLOUD_CODES.CLOUD_STORE_CORRUPT, `cloud store ${file} is corrupt: ${reason}`,
    { cause, detail: { path: file, reason } });
}

/** Removes `cloud-store.json.<pid>.tmp` files a crashed writer left behind (never the store itself). */
function removeStaleTemporaries(dataDir: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dataDir);
  } catch (e) {
    throw ioError(dataDir, "list", e);
  }
  for (const n of names) {
    if (/^cloud-store\.json\.[0-9]+\.tmp$/.test(n)) {
      try {
        fs.rmSync(path.join(dataDir, n), { force: true });
      } catch (e) {
        throw ioError(path.join(dataDir, n), "remove stale temporary", e);
      }
    }
  }
}

/** What the lock file holds. */
export interface CloudStoreLockOwner {
  pid: number;
  hostname: string;
  /** ISO time the lock was taken. */
  since: string;
}

/** Locks held by this process, by lock path: a second open in the same process is refused too. */
const heldLocks = new Set<string>();
let exitHookInstalled = false;

function readLockOwner(file: string): CloudStoreLockOwner | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(file, "utf8")) as Partial<CloudStoreLockOwner>;
    if (typeof v.pid === "number" && Number.isSafeInteger(v.pid) && v.pid > 0 && typeof v.hostname === "string") {
      return { pid: v.pid, hostname: v.hostname, since: String(v.since ?? "") };
    }
  } catch {
    // missing (released meanwhile) or not ours: the caller decides
  }
  return undefined;
}

/** True when `pid` runs on this host (EPERM: it runs, as another user). */
function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

function lockedError(file: string, owner: CloudStoreLockOwner | undefined): ShadowOtaError {
  const who = owner === undefined ? "a process that left an unreadable lock"
    : owner.pid === process.pid && owner.hostname === os.hostname() ? `this process (pid ${owner.pid}; close() the other CloudStore first)`
    : `pid ${owner.pid} on ${owner.hostname}${owner.since ? ` since ${owner.since}` : ""}`;
  return new ShadowOtaError(CLOUD_CODES.CLOUD_STORE_LOCKED,
    `the cloud store in ${path.dirname(file)} is in use by ${who}: one local cloud per data directory (if no cloud runs there, delete ${file})`,
    { detail: { path: file, pid: owner?.pid ?? null, hostname: owner?.hostname ?? null } });
}

/** Takes the lock or throws CLOUD_STORE_LOCKED / CLOUD_STORE_IO. Bounded: at most three attempts. */
function acquireLock(file: string): void {
  if (heldLocks.has(file)) throw lockedError(file, { pid: process.pid, hostname: os.hostname(), since: "" });
  const mine: CloudStoreLockOwner = { pid: process.pid, hostname: os.hostname(), since: new Date().toISOString() };
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, JSON.stringify(mine) + "\n", { mode: 0o600 });
  } catch (e) {
    throw ioError(tmp, "write lock", e);
  }
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        fs.linkSync(tmp, file); // atomic, and fails with EEXIST when the lock is there
        heldLocks.add(file);
        if (!exitHookInstalled) {
          exitHookInstalled = true;
          process.once("exit", () => { for (const f of heldLocks) releaseLock(f); });
        }
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw ioError(file, "lock", e);
      }
      const owner = readLockOwner(file);
      if (owner === undefined && fs.existsSync(file)) throw lockedError(file, undefined);
      if (owner === undefined) continue; // released meanwhile: try again
      if (owner.hostname !== os.hostname() || processAlive(owner.pid)) throw lockedError(file, owner);
      // Stale: move it aside, and make sure what moved is the stale lock that was read.
      const aside = `${file}.stale.${process.pid}`;
      try {
        fs.renameSync(file, aside);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") continue; // someone else took it over first
        throw ioError(file, "take over stale lock", e);
      }
      const moved = readLockOwner(aside);
      if (moved !== undefined && moved.pid !== owner.pid && processAlive(moved.pid)) {
        try { fs.linkSync(aside, file); } catch { /* a third process holds it now; it stays locked either way */ }
        fs.rmSync(aside, { force: true });
        throw lockedError(file, moved);
      }
      fs.rmSync(aside, { force: true });
    }
    throw lockedError(file, readLockOwner(file));
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** Removes the lock if it is still this process's. Never throws (called on exit too). */
function releaseLock(file: string): void {
  heldLocks.delete(file);
  const owner = readLockOwner(file);
  if (owner !== undefined && owner.pid === process.pid && owner.hostname === os.hostname()) {
    try {
      fs.rmSync(file, { force: true });
    } catch {
      // Left behind: the next open sees this pid gone and takes the lock over.
    }
  }
}

/** Checks a parsed file; returns the data or a reason. */
function checkData(v: unknown): CloudStoreData | string {
  if (!isJsonObject(v)) return "not a JSON object";
  if (v.format !== CLOUD_STORE_FORMAT) return `format is not ${JSON.stringify(CLOUD_STORE_FORMAT)}`;
  if (v.formatVersion !== CLOUD_STORE_FORMAT_VERSION) return `formatVersion ${JSON.stringify(v.formatVersion)} is not ${CLOUD_STORE_FORMAT_VERSION}`;
  if (!isJsonObject(v.aws) || !isJsonObject(v.azure)) return "aws or azure section missing";
  const shadows = checkShadowTable((v.aws as JsonObject).shadows);
  if (typeof shadows === "string") return shadows;
  const twins = checkTwinTable((v.azure as JsonObject).twins);
  if (typeof twins === "string") return twins;
  return { format: CLOUD_STORE_FORMAT, formatVersion: CLOUD_STORE_FORMAT_VERSION, aws: { shadows }, azure: { twins } };
}

export class CloudStore {
  /** The store file. */
  readonly path: string;
  #data: CloudStoreData;
  #writes = 0;
  #directorySyncError: Error | undefined;
  /** The lock file while this store holds it (undefined for a read-only load and after close). */
  #lock: string | undefined;

  private constructor(file: string, data: CloudStoreData) {
    this.path = file;
    this.#data = data;
  }

  /**
   * Opens (creating the directory when missing) the store of `dataDir` for writing: takes its lock, then
   * loads it. Call close() when done (the lock is also released when the process exits normally).
   * Errors: CLOUD_STORE_LOCKED (another cloud, or another CloudStore of this process, holds the directory),
   * CLOUD_STORE_CORRUPT (the file is not a store: invalid UTF-8/JSON, wrong format or shape),
   * CLOUD_STORE_IO (the directory cannot be created, the file cannot be read, the lock cannot be written).
   * On error no lock is held.
   */
  static open(dataDir: string): CloudStore {
    const file = path.join(dataDir, CLOUD_STORE_FILE);
    try {
      fs.mkdirSync(dataDir, { recursive: true });
    } catch (e) {
      throw ioError(file, "mkdir", e);
    }
    const lock = path.join(dataDir, CLOUD_STORE_LOCK_FILE);
    acquireLock(lock);
    try {
      removeStaleTemporaries(dataDir); // safe now: no other writer can be mid-write
      const store = CloudStore.#load(file);
      store.#lock = lock;
      return store;
    } catch (e) {
      releaseLock(lock);
      throw e;
    }
  }

  /**
   * Loads the store of `dataDir` without its lock, to look at it (tests, tools) while a cloud may run.
   * The result must not be saved: saveShadows/saveTwins throw CLOUD_STORE_IO on it. Errors as open's
   * except CLOUD_STORE_LOCKED.
   */
  static read(dataDir: string): CloudStore {
    return CloudStore.#load(path.join(dataDir, CLOUD_STORE_FILE));
  }

  static #load(file: string): CloudStore {
    let bytes: Buffer;
    try {
      bytes = fs.readFileSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") {
        return new CloudStore(file, { format: CLOUD_STORE_FORMAT, formatVersion: CLOUD_STORE_FORMAT_VERSION, aws: { shadows: {} }, azure: { twins: {} } });
      }
      throw ioError(file, "read", e);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    } catch (e) {
      throw corrupt(file, e instanceof Error ? e.message : "not UTF-8 JSON", e);
    }
    const data = checkData(parsed);
    if (typeof data === "string") throw corrupt(file, data);
    return new CloudStore(file, data);
  }

  /** The stored shadows (the object itself; the engine never mutates it). */
  get shadows(): ShadowTable {
    return this.#data.aws.shadows;
  }

  /** The stored twins (the object itself; the engine never mutates it). */
  get twins(): TwinTable {
    return this.#data.azure.twins;
  }

  /** How many times the file was written since open (for tests and the CLI's status line). */
  get writes(): number {
    return this.#writes;
  }

  /** Replaces the shadows and writes the file. On CLOUD_STORE_IO nothing changes, in memory or on disk. */
  saveShadows(shadows: ShadowTable): void {
    this.#save({ ...this.#data, aws: { shadows } });
  }

  /** Replaces the twins and writes the file. On CLOUD_STORE_IO nothing changes, in memory or on disk. */
  saveTwins(twins: TwinTable): void {
    this.#save({ ...this.#data, azure: { twins } });
  }

  /** True while this store holds its directory's lock (from open until close). */
  get locked(): boolean {
    return this.#lock !== undefined;
  }

  /** Releases the lock; the store can no longer be saved. Safe to call twice. */
  close(): void {
    if (this.#lock === undefined) return;
    releaseLock(this.#lock);
    this.#lock = undefined;
  }

  #save(next: CloudStoreData): void {
    if (this.#lock === undefined) throw ioError(this.path, "write", new Error("the store is not open for writing (read-only load, or closed)"));
    const text = JSON.stringify(next, null, 1);
    let dirError: Error | undefined;
    try {
      dirError = writeFileAtomic(this.path, text);
    } catch (e) {
      throw ioError(this.path, "write", e);
    }
    this.#data = next;
    this.#writes++;
    this.#directorySyncError = dirError;
  }

  /** The last failure to fsync the directory after a rename (undefined when the last one worked). The
   *  rename has happened by then and the data is in the file, so it does not fail the write; a file system
   *  that cannot fsync directories (some return EINVAL) only loses the power-cut guarantee of the rename. */
  get directorySyncError(): Error | undefined {
    return this.#directorySyncError;
  }
}
