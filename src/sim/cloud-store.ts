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
 * throws CLOUD_STORE_CORRUPT naming the file and is left untouched. One CloudStore per directory: two
 * processes (or two CloudStore objects) writing the same directory overwrite each other's sections.
 *
 * Not here: the shadow and twin rules (shadow-engine.ts, twin-engine.ts), rate-limit windows, pending
 * direct methods (not persisted: a restart starts them over).
 */
import * as fs from "node:fs";
import { writeFileAtomic } from "../node/atomic-file";
import * as path from "node:path";
import { ShadowOtaError } from "../core/errors";
import { isJsonObject, type JsonObject } from "../core/json";
import { CLOUD_CODES } from "./cloud-errors";
import { checkShadowTable, type ShadowTable } from "./shadow-engine";
import { checkTwinTable, type TwinTable } from "./twin-engine";

export const CLOUD_STORE_FILE = "cloud-store.json";
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

  private constructor(file: string, data: CloudStoreData) {
    this.path = file;
    this.#data = data;
  }

  /**
   * Opens (creating the directory when missing) the store of `dataDir` and loads it.
   * Errors: CLOUD_STORE_CORRUPT (the file is not a store: invalid UTF-8/JSON, wrong format or shape),
   * CLOUD_STORE_IO (the directory cannot be created or the file cannot be read).
   */
  static open(dataDir: string): CloudStore {
    const file = path.join(dataDir, CLOUD_STORE_FILE);
    try {
      fs.mkdirSync(dataDir, { recursive: true });
    } catch (e) {
      throw ioError(file, "mkdir", e);
    }
    removeStaleTemporaries(dataDir);
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

  #save(next: CloudStoreData): void {
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
