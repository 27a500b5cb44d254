/**
 * The local cloud's persistent state: the AWS shadows (documents, metadata, versions, deleted shadows'
 * versions) and the Azure twins (sections and `$version`s) of one data directory, so both survive a restart
 * — and a kill -9 — of the local cloud.
 *
 * Layout (format 2): a snapshot `{dataDir}/cloud-store.json` plus an append-only log
 * `{dataDir}/cloud-store.log` of the changes made since that snapshot. A write costs what the change costs:
 * one record (the thing's whole new shadow, or the device's whole new twin) appended to the log, not the
 * whole store rewritten (format 1 rewrote the file on every update: O(N) per write, O(N²) per fleet change).
 *
 *   log    = *record
 *   record = crc SP json LF      ; crc: the CRC-32 of the json bytes, 8 lowercase hex digits
 *   json   = ["s", shadowKey, StoredShadow] / ["t", deviceId, StoredTwin]     ; UTF-8, one line
 *
 * Durability by group commit: `putShadow`/`putTwin` queue a record and resolve only once it is durable;
 * every record queued while one write + fdatasync is in flight goes into the next one, so a burst of 1,000
 * updates costs a few fsyncs, not 1,000. The services publish an accepted response only after its record
 * resolved, and apply the change to what they serve only then (`shadows`/`twins` hold durable records only),
 * so a device never sees an update that a crash could take back. A failed write is undone (the log is
 * truncated back to its last durable length) and rejects that batch with CLOUD_STORE_IO; a failed fdatasync
 * rejects it and fails the store for good (after a failed fsync the page cache's state is unknown; restart
 * the cloud), as does a failed undo.
 *
 * Compaction: once the log is larger than the snapshot (and than `compactAfterBytes`), the snapshot is
 * rewritten whole (temporary file, fsync, rename, directory fsync) and the log truncated — O(N) every O(N)
 * writes, so O(1) per write amortized. A crash between the rename and the truncation only replays records
 * the snapshot already holds: a record is a whole value, so replaying it again changes nothing. `close()`
 * compacts too, so a cleanly stopped cloud leaves everything in cloud-store.json.
 *
 * Loading never guesses about what was acknowledged: a missing snapshot is an empty store; an unreadable,
 * non-JSON or wrongly shaped snapshot, or a log record whose CRC holds but whose content is not a shadow or
 * twin, throws CLOUD_STORE_CORRUPT naming the file and leaves it untouched. A log that ends in a torn
 * record (no LF, or a CRC that does not match) ends in the one batch that was being written when the
 * process died, never acknowledged: from that record on it is dropped (`droppedTailBytes` says how much;
 * the writer truncates it). Format 1 stores (one JSON file, no log) are read and migrated: the writer
 * rewrites the snapshot as format 2 at open, so an older cloud refuses it instead of missing the log.
 *
 * One writer per directory, enforced: `open` takes `{dataDir}/cloud-store.lock` (created whole with
 * link(2), so it is never seen half-written; it holds {pid, hostname, since}) and `close` (or the process's
 * normal exit) removes it. A second open — from another process or from this one — throws
 * CLOUD_STORE_LOCKED naming the holder's pid. A lock whose pid is no longer running on this host is stale
 * (a killed cloud) and is taken over: renamed away, then checked to be the stale one that was read (if a
 * live process re-created the lock in between, it is put back and the open fails). A lock from another
 * host, or whose pid was reused by an unrelated process, is never taken over: the message says which file
 * to delete. `CloudStore.read` loads snapshot and log without the lock, for inspection while a cloud runs
 * (the snapshot is replaced by rename and a torn log tail is ignored, so a reader sees a consistent store).
 *
 * Why a log and not SQLite: no native dependency (node:sqlite needs Node 22.5+, the project supports 20.19),
 * records are whole JSON values the engines already produce, and the crash rules above fit in this file.
 *
 * Observers: `onRecord(listener)` calls the listener with each record once it is durable and applied (after
 * the fdatasync, in commit order, before the code awaiting the put goes on), never for a
 * write that failed or was refused; a listener that throws is logged (`cloud-store.listener-threw`) and the
 * store and the other listeners go on. The fleet view (fleet-events.ts) watches the store this way.
 *
 * Not here: the shadow and twin rules (shadow-engine.ts, twin-engine.ts), rate-limit windows, pending
 * direct methods (not persisted: a restart starts them over), ordering between requests (the services).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { syncDirectory, writeFileAtomic } from "../node/atomic-file";
import { ShadowOtaError } from "../core/errors";
import { isJsonObject, type JsonObject } from "../core/json";
import { silentLog, type Log } from "../ports/log";
import { CLOUD_CODES } from "./cloud-errors";
import { checkShadowTable, type ShadowTable, type StoredShadow } from "./shadow-engine";
import { checkTwinTable, type StoredTwin, type TwinTable } from "./twin-engine";

/** The snapshot. */
export const CLOUD_STORE_FILE = "cloud-store.json";
/** The log of changes since the snapshot. */
export const CLOUD_STORE_LOG_FILE = "cloud-store.log";
/** The writer's lock beside the store file. */
export const CLOUD_STORE_LOCK_FILE = "cloud-store.lock";
export const CLOUD_STORE_FORMAT = "shadow-ota-cloud-store";
/** 2: snapshot + log. 1 (read and migrated): the snapshot alone, rewritten on every update. */
export const CLOUD_STORE_FORMAT_VERSION = 2;

/** The snapshot's content. */
export interface CloudStoreData {
  format: typeof CLOUD_STORE_FORMAT;
  formatVersion: typeof CLOUD_STORE_FORMAT_VERSION;
  aws: { shadows: ShadowTable };
  azure: { twins: TwinTable };
}

/**
 * The two file operations of a commit, as a port so a test can make them fail the way a full or failing
 * disk does (ENOSPC, EIO), which cannot be produced on demand here. Default: node:fs.
 */
export interface CloudStoreIo {
  /** Writes all of `data` at `position`. */
  write(fd: number, data: Buffer, position: number): Promise<void>;
  datasync(fd: number): Promise<void>;
  truncate(fd: number, length: number): Promise<void>;
}

export interface CloudStoreOptions {
  /** Compact once the log exceeds this many bytes and the snapshot's size. Default 1 MiB. */
  compactAfterBytes?: number;
  /** The commit's file operations (tests). */
  io?: Partial<CloudStoreIo>;
  /** Where a throwing onRecord listener is logged (default: nowhere). */
  log?: Log;
}

/** A record the store made durable: a shadow by its shadowKey (`thing` or `thing~name`), or a twin. */
export type CloudStoreRecord =
  | { kind: "shadow"; key: string; shadow: StoredShadow }
  | { kind: "twin"; deviceId: string; twin: StoredTwin };

const nodeIo: CloudStoreIo = {
  async write(fd, data, position) {
    let done = 0;
    while (done < data.length) {
      const n = await new Promise<number>((resolve, reject) =>
        fs.write(fd, data, done, data.length - done, position + done, (e, written) => (e ? reject(e) : resolve(written))));
      done += n;
    }
  },
  datasync: (fd) => new Promise<void>((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve()))),
  truncate: (fd, length) => new Promise<void>((resolve, reject) => fs.ftruncate(fd, length, (e) => (e ? reject(e) : resolve()))),
};

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

/** Sets an own data property (a key such as "__proto__" must not reach the prototype). */
function put<T>(table: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(table, key, { value, writable: true, enumerable: true, configurable: true });
}

/** Checks a parsed snapshot (format 1 or 2); returns the data or a reason. */
function checkData(v: unknown): { data: CloudStoreData; formatVersion: number } | string {
  if (!isJsonObject(v)) return "not a JSON object";
  if (v.format !== CLOUD_STORE_FORMAT) return `format is not ${JSON.stringify(CLOUD_STORE_FORMAT)}`;
  if (v.formatVersion !== 1 && v.formatVersion !== CLOUD_STORE_FORMAT_VERSION) {
    return `formatVersion ${JSON.stringify(v.formatVersion)} is not 1 or ${CLOUD_STORE_FORMAT_VERSION}`;
  }
  if (!isJsonObject(v.aws) || !isJsonObject(v.azure)) return "aws or azure section missing";
  const shadows = checkShadowTable((v.aws as JsonObject).shadows);
  if (typeof shadows === "string") return shadows;
  const twins = checkTwinTable((v.azure as JsonObject).twins);
  if (typeof twins === "string") return twins;
  return { data: { format: CLOUD_STORE_FORMAT, formatVersion: CLOUD_STORE_FORMAT_VERSION, aws: { shadows }, azure: { twins } }, formatVersion: v.formatVersion };
}

const LF = 0x0a;

/** One log record's line. */
function encodeRecord(kind: "s" | "t", key: string, value: StoredShadow | StoredTwin): Buffer {
  const json = Buffer.from(JSON.stringify([kind, key, value]), "utf8");
  const crc = Buffer.from(`${zlib.crc32(json).toString(16).padStart(8, "0")} `, "latin1");
  return Buffer.concat([crc, json, Buffer.from([LF])]);
}

/**
 * Replays the log onto `data`; returns the length of its valid part (the rest is a torn tail). Throws
 * CLOUD_STORE_CORRUPT for a record whose CRC holds but whose content is not a record.
 */
function replayLog(file: string, bytes: Buffer, data: CloudStoreData): number {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let at = 0;
  while (at < bytes.length) {
    const end = bytes.indexOf(LF, at);
    if (end < 0) break; // no LF: torn
    const line = bytes.subarray(at, end);
    if (line.length < 10 || line[8] !== 0x20) break;
    const crc = Number.parseInt(line.subarray(0, 8).toString("latin1"), 16);
    const json = line.subarray(9);
    if (!/^[0-9a-f]{8}$/.test(line.subarray(0, 8).toString("latin1")) || zlib.crc32(json) !== crc) break; // torn
    let rec: unknown;
    try {
      rec = JSON.parse(decoder.decode(json));
    } catch (e) {
      throw corrupt(file, `record at byte ${at} is not UTF-8 JSON`, e);
    }
    const bad = (why: string): ShadowOtaError => corrupt(file, `record at byte ${at} ${why}`);
    if (!Array.isArray(rec) || rec.length !== 3 || typeof rec[1] !== "string") throw bad("is not [kind, key, value]");
    const [kind, key, value] = rec as [unknown, string, unknown];
    const one: Record<string, unknown> = {};
    put(one, key, value);
    if (kind === "s") {
      const t = checkShadowTable(one);
      if (typeof t === "string") throw bad(t);
      put(data.aws.shadows, key, t[key]!);
    } else if (kind === "t") {
      const t = checkTwinTable(one);
      if (typeof t === "string") throw bad(t);
      put(data.azure.twins, key, t[key]!);
    } else {
      throw bad(`has kind ${JSON.stringify(kind)}`);
    }
    at = end + 1;
  }
  return at;
}

interface Pending {
  line: Buffer | undefined;
  /** What onRecord listeners see once it is durable (undefined for a flush marker). */
  record: CloudStoreRecord | undefined;
  apply: () => void;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class CloudStore {
  /** The snapshot file. */
  readonly path: string;
  /** The log file. */
  readonly logPath: string;
  readonly #data: CloudStoreData;
  readonly #io: CloudStoreIo;
  readonly #compactAfter: number;
  #writes = 0;
  #commits = 0;
  #compactions = 0;
  #droppedTailBytes = 0;
  #directorySyncError: Error | undefined;
  /** The lock file while this store holds it (undefined for a read-only load and after close). */
  #lock: string | undefined;
  #fd: number | undefined;
  #logBytes = 0;
  #snapshotBytes = 0;
  #nextCompactAt: number;
  #queue: Pending[] = [];
  #draining: Promise<void> | undefined;
  #failed: ShadowOtaError | undefined;
  #closing: Promise<void> | undefined;
  readonly #listeners = new Set<(r: CloudStoreRecord) => void>();
  readonly #log: Log;

  private constructor(file: string, data: CloudStoreData, options: CloudStoreOptions) {
    this.path = file;
    this.logPath = path.join(path.dirname(file), CLOUD_STORE_LOG_FILE);
    this.#data = data;
    this.#io = { ...nodeIo, ...options.io };
    this.#compactAfter = options.compactAfterBytes ?? 1024 * 1024;
    this.#nextCompactAt = this.#compactAfter;
    this.#log = options.log ?? silentLog;
  }

  /**
   * Opens (creating the directory when missing) the store of `dataDir` for writing: takes its lock, loads
   * the snapshot and replays the log (truncating a torn tail), migrates a format-1 snapshot. Call close()
   * when done (the lock is also released when the process exits normally).
   * Errors: CLOUD_STORE_LOCKED (another cloud, or another CloudStore of this process, holds the directory),
   * CLOUD_STORE_CORRUPT (the snapshot or a log record is not a store's: invalid UTF-8/JSON, wrong format or
   * shape), CLOUD_STORE_IO (the directory cannot be created, a file cannot be read or written, the lock
   * cannot be written). On error no lock is held.
   */
  static open(dataDir: string, options: CloudStoreOptions = {}): CloudStore {
    const file = path.join(dataDir, CLOUD_STORE_FILE);
    try {
      fs.mkdirSync(dataDir, { recursive: true });
    } catch (e) {
      throw ioError(file, "mkdir", e);
    }
    const lock = path.join(dataDir, CLOUD_STORE_LOCK_FILE);
    acquireLock(lock);
    let store: CloudStore | undefined;
    try {
      removeStaleTemporaries(dataDir); // safe now: no other writer can be mid-write
      const loaded = CloudStore.#load(file, options);
      store = loaded.store;
      store.#lock = lock;
      store.#openLog(loaded.validLogBytes, loaded.logSize);
      if (loaded.formatVersion === 1) {
        store.#compactNow(); // migration: format 2 on disk before anything is appended
      }
      return store;
    } catch (e) {
      if (store !== undefined && store.#fd !== undefined) fs.closeSync(store.#fd);
      releaseLock(lock);
      throw e;
    }
  }

  /**
   * Loads the store of `dataDir` (snapshot and log) without its lock, to look at it (tests, tools) while a
   * cloud may run. It cannot be written: putShadow/putTwin reject with CLOUD_STORE_IO. Errors as open's
   * except CLOUD_STORE_LOCKED.
   */
  static read(dataDir: string): CloudStore {
    return CloudStore.#load(path.join(dataDir, CLOUD_STORE_FILE), {}).store;
  }

  static #load(file: string, options: CloudStoreOptions): { store: CloudStore; validLogBytes: number; logSize: number; formatVersion: number; snapshotExists: boolean } {
    let data: CloudStoreData = { format: CLOUD_STORE_FORMAT, formatVersion: CLOUD_STORE_FORMAT_VERSION, aws: { shadows: {} }, azure: { twins: {} } };
    let formatVersion = CLOUD_STORE_FORMAT_VERSION;
    let snapshotBytes = 0;
    let snapshotExists = false;
    let bytes: Buffer | undefined;
    try {
      bytes = fs.readFileSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw ioError(file, "read", e);
    }
    if (bytes !== undefined) {
      snapshotExists = true;
      snapshotBytes = bytes.length;
      let parsed: unknown;
      try {
        parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
      } catch (e) {
        throw corrupt(file, e instanceof Error ? e.message : "not UTF-8 JSON", e);
      }
      const checked = checkData(parsed);
      if (typeof checked === "string") throw corrupt(file, checked);
      data = checked.data;
      formatVersion = checked.formatVersion;
    }
    const logFile = path.join(path.dirname(file), CLOUD_STORE_LOG_FILE);
    let log: Buffer | undefined;
    try {
      log = fs.readFileSync(logFile);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw ioError(logFile, "read", e);
    }
    const validLogBytes = log === undefined ? 0 : replayLog(logFile, log, data);
    const store = new CloudStore(file, data, options);
    store.#snapshotBytes = snapshotBytes;
    store.#logBytes = validLogBytes;
    store.#droppedTailBytes = (log?.length ?? 0) - validLogBytes;
    return { store, validLogBytes, logSize: log?.length ?? 0, formatVersion, snapshotExists };
  }

  /** Opens the log for writing, creating it (and making its name durable) when missing; cuts a torn tail. */
  #openLog(validBytes: number, size: number): void {
    const created = !fs.existsSync(this.logPath);
    try {
      this.#fd = fs.openSync(this.logPath, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
      if (size > validBytes) {
        fs.ftruncateSync(this.#fd, validBytes);
        fs.fdatasyncSync(this.#fd);
      }
    } catch (e) {
      throw ioError(this.logPath, "open log", e);
    }
    if (created) this.#directorySyncError = syncDirectory(path.dirname(this.logPath));
    this.#logBytes = validBytes;
  }

  /** The stored shadows: durable records only (the object itself; nobody may mutate it). */
  get shadows(): ShadowTable {
    return this.#data.aws.shadows;
  }

  /** The stored twins: durable records only (the object itself; nobody may mutate it). */
  get twins(): TwinTable {
    return this.#data.azure.twins;
  }

  /** Records made durable since open (one per accepted change). */
  get writes(): number {
    return this.#writes;
  }

  /** Group commits (log write + fdatasync) since open; `writes / commits` is the batching achieved. */
  get commits(): number {
    return this.#commits;
  }

  /** Snapshot rewrites since open (compactions and the migration of a format-1 store). */
  get compactions(): number {
    return this.#compactions;
  }

  /** Bytes of torn log tail dropped at load (an unacknowledged batch a crash cut short). */
  get droppedTailBytes(): number {
    return this.#droppedTailBytes;
  }

  /** Bytes in the log now. */
  get logBytes(): number {
    return this.#logBytes;
  }

  /**
   * Stores a shadow (by shadowKey) and resolves once it is durable; only then does `shadows` show it.
   * Rejects with CLOUD_STORE_IO when the commit fails (nothing is applied) or the store is closed,
   * read-only or failed.
   */
  putShadow(key: string, shadow: StoredShadow): Promise<void> {
    return this.#append({ kind: "shadow", key, shadow }, () => put(this.#data.aws.shadows, key, shadow));
  }

  /** Stores a twin (by device id); as putShadow. */
  putTwin(deviceId: string, twin: StoredTwin): Promise<void> {
    return this.#append({ kind: "twin", deviceId, twin }, () => put(this.#data.azure.twins, deviceId, twin));
  }

  /**
   * Calls `listener` with every record made durable from now on (see the header: after the fdatasync, in
   * commit order, never for a failed or refused write; a throw is logged). Returns the unsubscribe function.
   */
  onRecord(listener: (record: CloudStoreRecord) => void): () => void {
    const own = (r: CloudStoreRecord): void => listener(r); // one entry per call, even for the same function
    this.#listeners.add(own);
    return () => { this.#listeners.delete(own); };
  }

  /** Resolves once everything queued before it is durable (or has failed). */
  flush(): Promise<void> {
    if (this.#queue.length === 0 && this.#draining === undefined) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#queue.push({ line: undefined, record: undefined, apply: () => undefined, resolve, reject: () => resolve() });
      this.#kick();
    });
  }

  /** True while this store holds its directory's lock (from open until close). */
  get locked(): boolean {
    return this.#lock !== undefined;
  }

  /**
   * Waits for queued records, compacts (so cloud-store.json holds everything), closes the log and releases
   * the lock; the store can no longer be written. A failed compaction leaves the log in place (nothing is
   * lost). Safe to call twice; never rejects.
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    if (this.#lock === undefined) return (this.#closing = Promise.resolve());
    if (this.#queue.length === 0 && this.#draining === undefined) {
      // Nothing in flight (the usual case once the services are closed): done before close() returns.
      if (this.#failed === undefined && this.#logBytes > 0) {
        try { this.#compactNow(); } catch { /* the log keeps every record: the next open replays it */ }
      }
      this.#release();
      return (this.#closing = Promise.resolve());
    }
    this.#closing = (async () => {
      await this.flush();
      while (this.#draining !== undefined) await this.#draining; // a compaction the last commit started
      if (this.#failed === undefined && this.#logBytes > 0) {
        try { await this.#compact(); } catch { /* the log keeps every record: the next open replays it */ }
      }
      this.#release();
    })();
    return this.#closing;
  }

  #release(): void {
    if (this.#fd !== undefined) {
      try { fs.closeSync(this.#fd); } catch { /* nothing left to write through it */ }
      this.#fd = undefined;
    }
    const failure = new Error("the store is closed");
    for (const p of this.#queue.splice(0)) p.reject(ioError(this.logPath, "write", failure));
    if (this.#lock !== undefined) releaseLock(this.#lock);
    this.#lock = undefined;
  }

  #append(record: CloudStoreRecord, apply: () => void): Promise<void> {
    if (this.#lock === undefined || this.#closing !== undefined) {
      return Promise.reject(ioError(this.logPath, "write", new Error("the store is not open for writing (read-only load, or closed)")));
    }
    if (this.#failed !== undefined) return Promise.reject(this.#failed);
    let line: Buffer;
    try {
      line = record.kind === "shadow" ? encodeRecord("s", record.key, record.shadow) : encodeRecord("t", record.deviceId, record.twin);
    } catch (e) {
      return Promise.reject(ioError(this.logPath, "encode", e));
    }
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ line, record, apply, resolve, reject });
      this.#kick();
    });
  }

  /** Starts the commit loop unless it runs: the first batch goes out on the next turn of the event loop. */
  #kick(): void {
    if (this.#draining !== undefined) return;
    this.#draining = new Promise<void>((r) => setImmediate(r)).then(() => this.#drain()).finally(() => {
      this.#draining = undefined;
      if (this.#queue.length > 0) this.#kick();
    });
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0); // everything queued while the last commit was in flight
      await this.#commit(batch);
      if (this.#failed === undefined && this.#logBytes >= this.#nextCompactAt && this.#logBytes >= this.#snapshotBytes) {
        try {
          await this.#compact();
        } catch {
          this.#nextCompactAt = this.#logBytes * 2; // the log keeps working; try again when it has doubled
        }
      }
    }
  }

  async #commit(batch: Pending[]): Promise<void> {
    const lines = batch.flatMap((p) => (p.line === undefined ? [] : [p.line]));
    const fail = (e: ShadowOtaError): void => { for (const p of batch) p.reject(e); };
    if (this.#failed !== undefined) return fail(this.#failed);
    if (lines.length > 0) {
      const fd = this.#fd!;
      const data = lines.length === 1 ? lines[0]! : Buffer.concat(lines);
      const at = this.#logBytes;
      try {
        await this.#io.write(fd, data, at);
      } catch (e) {
        const error = ioError(this.logPath, "write", e);
        try {
          await this.#io.truncate(fd, at);
        } catch (e2) {
          this.#failed = ioError(this.logPath, "undo a failed write", e2);
        }
        return fail(error);
      }
      try {
        await this.#io.datasync(fd);
      } catch (e) {
        this.#failed = ioError(this.logPath, "fsync", e);
        return fail(this.#failed);
      }
      this.#logBytes = at + data.length;
      this.#commits++;
      this.#writes += lines.length;
    }
    for (const p of batch) p.apply();
    for (const p of batch) p.resolve();
    if (this.#listeners.size > 0) for (const p of batch) if (p.record !== undefined) this.#notify(p.record);
  }

  #notify(record: CloudStoreRecord): void {
    for (const l of [...this.#listeners]) {
      try {
        l(record);
      } catch (e) {
        this.#log.log("error", "cloud-store.listener-threw", { kind: record.kind, message: e instanceof Error ? e.message : String(e) });
      }
    }
  }

  #snapshotText(): string {
    return JSON.stringify(this.#data, null, 1);
  }

  /** Snapshot rewritten whole, then the log emptied (async: used by the commit loop and close). */
  async #compact(): Promise<void> {
    const text = this.#snapshotText();
    const tmp = `${this.path}.${process.pid}.tmp`;
    const fh = await fs.promises.open(tmp, "w", 0o600);
    try {
      await fh.writeFile(text);
      await fh.sync();
    } catch (e) {
      await fh.close().catch(() => undefined);
      await fs.promises.rm(tmp, { force: true });
      throw ioError(this.path, "write snapshot", e);
    }
    await fh.close();
    try {
      await fs.promises.rename(tmp, this.path);
    } catch (e) {
      await fs.promises.rm(tmp, { force: true });
      throw ioError(this.path, "write snapshot", e);
    }
    this.#directorySyncError = syncDirectory(path.dirname(this.path));
    await this.#emptyLog(Buffer.byteLength(text));
  }

  /** The synchronous compaction of open (the migration): nothing is queued yet. */
  #compactNow(): void {
    const text = this.#snapshotText();
    try {
      this.#directorySyncError = writeFileAtomic(this.path, text);
    } catch (e) {
      throw ioError(this.path, "write snapshot", e);
    }
    try {
      fs.ftruncateSync(this.#fd!, 0);
      fs.fdatasyncSync(this.#fd!);
    } catch (e) {
      throw ioError(this.logPath, "truncate log", e);
    }
    this.#logBytes = 0;
    this.#snapshotBytes = Buffer.byteLength(text);
    this.#compactions++;
  }

  async #emptyLog(snapshotBytes: number): Promise<void> {
    try {
      await this.#io.truncate(this.#fd!, 0);
      await this.#io.datasync(this.#fd!);
    } catch (e) {
      // The snapshot holds every record, so replaying the old log later changes nothing; but appending
      // after a log of unknown length is not safe.
      this.#failed = ioError(this.logPath, "truncate log", e);
      throw this.#failed;
    }
    this.#logBytes = 0;
    this.#snapshotBytes = snapshotBytes;
    this.#nextCompactAt = Math.max(this.#compactAfter, snapshotBytes);
    this.#compactions++;
  }

  /** The last failure to fsync the directory after creating the log or renaming the snapshot (undefined
   *  when the last one worked). The data is in place by then, so it does not fail the write; a file system
   *  that cannot fsync directories (some return EINVAL) only loses the power-cut guarantee of the rename. */
  get directorySyncError(): Error | undefined {
    return this.#directorySyncError;
  }
}
