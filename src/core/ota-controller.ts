/**
 * The OTA update controller: the device's firmware update from a desired version to a confirmed new
 * image, in ESP-IDF's words. Platform-neutral (runs unchanged on XS and Node): it talks only to ports —
 * OtaSlot (the inactive slot, src/ports/ota-slot.ts), ByteSource (the download, src/ports/byte-source.ts),
 * KeyValueStore (its record), Clock (backoff waits, the self-test window), Restart and Log — and reports
 * through a callback (the app assembly, device-app.ts, sends it as `reported.firmwareUpdate`).
 *
 * One state field, one handler per input, like the C writer (src/native/core/ota_writer.c):
 *
 *   input            state                        -> next state
 *   request(v)       Idle|Valid|RolledBack|Failed -> Downloading   (policy passed: SemVer, not the running
 *                                                                   version, no downgrade unless allowed,
 *                                                                   URL on the allow-list; attempt 1)
 *   request(v)       PendingVerify                -> PendingVerify (refused: OTA_UPDATE_WHILE_PENDING;
 *                                                                   taken up again once Valid)
 *   request(v')      Downloading(v)               -> Downloading(v') (the running download is aborted)
 *   cancel(v)        Downloading(v)|Verifying(v)  -> Idle (OTA_UPDATE_CANCELLED; slot aborted, boot partition
 *                                                                   untouched); Staged: too late, the self-test decides
 *   chunk            Downloading                  -> Downloading   (record persisted at every 4 KiB sector)
 *   descriptor       Downloading                  -> Downloading | Failed (checkCandidate, before any erase)
 *   error            Downloading                  -> Downloading (retryable, attempts left: backoff, resume)
 *                                                 |  Failed (anything else; OTA_RETRIES_EXHAUSTED wraps the last)
 *   end of body      Downloading                  -> Verifying -> Staged (end() re-reads and verifies the
 *                                                                   image; setBootPartition) -> restart
 *   boot             Downloading|Verifying|Staged|PendingVerify, runs the new version (record.to)
 *                                                 -> PendingVerify, whatever otadata's state word says
 *                                                   (PENDING_VERIFY, or VALID / UNDEFINED / garbage after a
 *                                                   torn otadata write, or a build without rollback)
 *   boot             Staged|PendingVerify, runs the old version  -> RolledBack (the self-test's error, or
 *                                                                   OTA_ROLLED_BACK: the bootloader chose it)
 *   boot             Downloading|Verifying        -> Downloading (resumed from the durable bytes on start())
 *   synced           PendingVerify                -> Valid (application check passed; markValid)
 *   synced/window    PendingVerify                -> (error persisted) markInvalidAndReboot -> restart ->
 *                                                   boot: RolledBack
 *
 * What is unconfirmed is this record's to say, not otadata's. ESP-IDF's otadata entry protects only its
 * sequence number with a CRC (bootloader_common_ota_select_crc), so a power cut while an entry is written
 * (set boot, the bootloader's NEW -> PENDING_VERIFY or PENDING_VERIFY -> ABORTED rewrite, mark invalid) can
 * leave a valid-looking entry whose state word is garbage: the bootloader then boots the new image as if it
 * were confirmed (no PENDING_VERIFY, no rollback on the next reset). So whenever the version this record
 * was installing runs and the record has not reached Valid, the image goes through the self-test, and a
 * failure marks it invalid (esp_ota_mark_app_invalid_rollback_and_reboot rewrites the active entry whatever
 * its state) and restarts into the previous app. docs/native-ota.md, "Power cuts".
 *
 * A version that failed for good or rolled back is not tried again in the same state: desired must name
 * another version first (or, for a failure a retry could cure, the device restarts). This stops an
 * endless update → self-test failure → rollback loop while desired still names the bad version.
 *
 * Persistence: the record (OTA_KV_KEY) is written at every transition, and the durable offset alone
 * (OTA_PROGRESS_KEY) at every sector boundary, so a power cut at any moment leaves enough to resume
 * (slot.resume(durable) with the ETag as If-Range) or clean up.
 *
 * Not here: HTTP (the ByteSource adapter), image parsing (the C core behind OtaSlot), MQTT, timers of its
 * own (the Clock port), the reported document's path (device-app.ts).
 */
import { backoffDelay, mayRetry, type BackoffPolicy, type RandomSource } from "./backoff";
import { DOWNLOAD_CODES, isRetryableDownloadError } from "./download-errors";
import { ShadowOtaError } from "./errors";
import { firmwareUrl, urlHost } from "./firmware-url";
import { isJsonObject, parseJsonBounded, type JsonObject } from "./json";
import { compareSemver, parseSemver } from "./semver";
import { UPDATE_CODES } from "./update-errors";
import type { ByteSource, ByteSourceResponse } from "../ports/byte-source";
import type { Clock } from "../ports/clock";
import type { KeyValueStore } from "../ports/kv-store";
import type { Log } from "../ports/log";
import type { AppDescriptor, OtaBeginOptions, OtaSlot } from "../ports/ota-slot";
import type { Restart } from "../ports/restart";

// ---------------------------------------------------------------------------------------------------------
// States, record, configuration

export const OTA_STATES = ["Idle", "Downloading", "Verifying", "Staged", "PendingVerify", "Valid", "RolledBack", "Failed"] as const;
export type OtaState = (typeof OTA_STATES)[number];

/** The last error as reported: stable code, message, the platform's number, epoch seconds. */
export interface OtaReportedError {
  code: string;
  message: string;
  platformCode?: number;
  time: number;
}

/** What survives a restart (KV key OTA_KV_KEY, compact JSON). */
export interface OtaRecord {
  state: OtaState;
  /** The version that ran when the update started. */
  from?: string;
  /** The version being installed. */
  to?: string;
  url?: string;
  /** The object's strong ETag from the first response (If-Range on resume). */
  etag?: string;
  /** Bytes handed to the slot and confirmed written (the resume offset; the slot rounds it down to a sector). */
  durable: number;
  /** The image's length when the server said it. */
  total?: number;
  /** Attempts made for this version (1 on the first). */
  attempt: number;
  lastError?: OtaReportedError;
}

export const OTA_KV_KEY = "ota";
/** The durable offset alone, written at every sector boundary while downloading (a few bytes instead of the
 *  whole record: on the device each NVS write of a long string spans many 32-byte entries, so this is
 *  what keeps per-sector persistence cheap and NVS wear low). Deleted before every full record write, so
 *  when present it belongs to the record beside it. */
export const OTA_PROGRESS_KEY = "otap";
export const SECTOR_SIZE = 4096;
const MAX_MESSAGE = 200;

/** Where firmware comes from: the seed's naming convention under a base URL, only from allowed hosts. */
export interface FirmwareSourceConfig {
  /** "aws": `{base}1.0.5.bin`; "azure": `{base}v1_0_5.bin` (the seeds' conventions). */
  naming: "aws" | "azure";
  /** https base URL ending with "/", e.g. the blob container. */
  baseUrl: string;
  /** Exact host names (lowercase) the device may contact; the base URL's host must be one. */
  allowedHosts: readonly string[];
}

export interface OtaControllerConfig {
  source: FirmwareSourceConfig;
  /** esp_app_desc_t.project_name every candidate must carry. */
  projectName: string;
  /** The device's chip (esp_image_header_t.chip_id) and revision (major*100+minor); undefined = unchecked. */
  chipId?: number;
  chipRevFull?: number;
  /** Allow a desired version older than the running one. Default false. */
  allowDowngrade?: boolean;
  /** Refuse images without an appended SHA-256. Default true. */
  requireHash?: boolean;
  /** The trusted ECDSA P-256 public key (91-byte DER SubjectPublicKeyInfo; a resource on the device, a file
   *  on the simulator). With it the slot refuses unsigned or wrongly signed images before the boot switch
   *  (OTA_SIGNATURE_MISSING / OTA_SIGNATURE_INVALID, docs/signing.md). Default: none, no signature needed. */
  signingKey?: Uint8Array;
  /** Download retries. Default: 1 s doubling to 30 s, 6 attempts. */
  retry?: BackoffPolicy;
  /** Time after a restart into a new image for the self-test (connected and a twin get). Default 60 s. */
  selfTestWindowMs?: number;
  /** Progress reports at most every `progressPercent` % or `progressIntervalMs`, whichever comes later. */
  progressPercent?: number;
  progressIntervalMs?: number;
  /** The version to assume when the running descriptor's is not SemVer (the factory app, an unstamped
   *  build). Without it such a device refuses every update with OTA_VERSION_NOT_SEMVER. */
  fallbackVersion?: string;
}

/** An application check run during the self-test: resolve true to confirm, or a reason to roll back. */
export type AppCheck = () => Promise<true | string> | true | string;

export interface OtaControllerPorts {
  slot: OtaSlot;
  source: ByteSource;
  kv: KeyValueStore;
  clock: Clock;
  log: Log;
  restart: Restart;
  random?: RandomSource;
}

export interface OtaControllerHooks {
  /** Sends `reported.firmwareUpdate`; the promise settles when the cloud accepted (or refused) it. */
  report(update: JsonObject): Promise<void>;
  /** Optional application check for the self-test. */
  appCheck?: AppCheck;
}

export const DEFAULT_RETRY: BackoffPolicy = { initialMs: 1_000, maxMs: 30_000, maxAttempts: 6 };
export const DEFAULT_SELF_TEST_WINDOW_MS = 60_000;
/** How long a restart waits for the state report to be accepted before it goes ahead anyway. */
export const REPORT_BEFORE_RESTART_MS = 5_000;

// ---------------------------------------------------------------------------------------------------------
// Pure policy

/** The descriptor fields the controller checks (esp_app_desc_t plus the header's chip fields). */
export type CandidateInfo = Pick<AppDescriptor, "version" | "projectName" | "chipId" | "minChipRevFull" | "maxChipRevFull">;

function isSemver(v: string): boolean {
  try { parseSemver(v); return true; } catch { return false; }
}

/** Printable form of a descriptor string for messages (control characters escaped, bounded). */
function shown(s: string): string {
  let out = "";
  for (const ch of s.length > 40 ? s.slice(0, 40) + "…" : s) {
    const c = ch.charCodeAt(0);
    out += c < 0x20 || c === 0x7f ? `\\x${c.toString(16).padStart(2, "0")}` : ch;
  }
  return out;
}

/**
 * Checks a candidate's descriptor against the desired version and the device, before the first erase.
 * Returns the refusal, undefined when the candidate may be written. ESP-IDF's chip revision rule
 * (bootloader_common_check_chip_validity): refuse when the chip is below min_chip_rev_full, or above a
 * max_chip_rev_full that is set (neither 0 nor 0xFFFF).
 */
export function checkCandidate(c: CandidateInfo, expected: { version: string; projectName: string; chipId?: number; chipRevFull?: number }): ShadowOtaError | undefined {
  if (!isSemver(c.version)) {
    return new ShadowOtaError(UPDATE_CODES.OTA_VERSION_NOT_SEMVER,
      `image version "${shown(c.version)}" is not SemVer (ESP-IDF puts \`git describe\` there when no version is set): ` +
      `stamp it with \`npm run image -- stamp in.bin --version ${expected.version} -o out.bin\``,
      { detail: { found: c.version.slice(0, 32), expected: expected.version } });
  }
  if (c.version !== expected.version) {
    return new ShadowOtaError(UPDATE_CODES.OTA_VERSION_MISMATCH, `image carries version ${c.version}, desired is ${expected.version}`,
      { detail: { found: c.version, expected: expected.version } });
  }
  if (c.projectName !== expected.projectName) {
    return new ShadowOtaError(UPDATE_CODES.OTA_PROJECT_MISMATCH, `image is for project "${shown(c.projectName)}", this device runs "${expected.projectName}"`,
      { detail: { found: c.projectName.slice(0, 32), expected: expected.projectName } });
  }
  if (expected.chipId !== undefined && c.chipId !== undefined && c.chipId !== expected.chipId) {
    return new ShadowOtaError(UPDATE_CODES.OTA_CHIP_MISMATCH, `image is built for chip id ${c.chipId}, this device is chip id ${expected.chipId}`,
      { detail: { found: c.chipId, expected: expected.chipId } });
  }
  const rev = expected.chipRevFull;
  if (rev !== undefined) {
    const min = c.minChipRevFull;
    const max = c.maxChipRevFull;
    const revText = (r: number): string => `v${Math.floor(r / 100)}.${r % 100}`;
    if (min !== undefined && rev < min) {
      return new ShadowOtaError(UPDATE_CODES.OTA_CHIP_REVISION, `image needs chip revision ${revText(min)} or newer, this chip is ${revText(rev)}`,
        { detail: { minChipRevFull: min, maxChipRevFull: max ?? null, chipRevFull: rev } });
    }
    if (max !== undefined && max !== 0 && max !== 0xffff && rev > max) {
      return new ShadowOtaError(UPDATE_CODES.OTA_CHIP_REVISION, `image supports chip revisions up to ${revText(max)}, this chip is ${revText(rev)}`,
        { detail: { minChipRevFull: min ?? null, maxChipRevFull: max, chipRevFull: rev } });
    }
  }
  return undefined;
}

/**
 * Checks a request before anything is downloaded: strict SemVer, not a downgrade unless allowed.
 * Returns "same" when the version already runs, the refusal, or undefined to go ahead.
 */
export function checkRequest(version: string, running: string, allowDowngrade: boolean): "same" | ShadowOtaError | undefined {
  try {
    parseSemver(version);
  } catch (e) {
    // Stryker disable next-line StringLiteral: parseSemver throws only ShadowOtaError, so this fallback error is never made.
    return e instanceof ShadowOtaError ? e : new ShadowOtaError("VERSION_INVALID", "version is not strict SemVer");
  }
  const order = compareSemver(version, running);
  if (order === 0) return "same";
  // Stryker disable next-line EqualityOperator: order 0 has returned "same" on the line above, so "<=" is "<".
  if (order < 0 && !allowDowngrade) {
    return new ShadowOtaError(UPDATE_CODES.OTA_DOWNGRADE_REFUSED, `${version} is older than the running ${running}; downgrades are not allowed by configuration`,
      { detail: { requested: version, running } });
  }
  return undefined;
}

/** The firmware URL for `version`, checked against the allow-list. Throws DOWNLOAD_URL_INVALID / DOWNLOAD_HOST_NOT_ALLOWED. */
export function resolveFirmwareUrl(source: FirmwareSourceConfig, version: string, baseUrl: string = source.baseUrl): string {
  if (!/^https:\/\/[^\s/?#]+\/[^\s?#]*\/?$/.test(baseUrl) || !baseUrl.endsWith("/")) {
    throw new ShadowOtaError(DOWNLOAD_CODES.DOWNLOAD_URL_INVALID, `firmware base URL must be https and end with "/": ${shown(baseUrl)}`);
  }
  const host = urlHost(baseUrl);
  if (host === undefined) throw new ShadowOtaError(DOWNLOAD_CODES.DOWNLOAD_URL_INVALID, `firmware base URL has no host: ${shown(baseUrl)}`);
  if (!source.allowedHosts.includes(host)) {
    throw new ShadowOtaError(DOWNLOAD_CODES.DOWNLOAD_HOST_NOT_ALLOWED, `host ${host} is not on the firmware allow-list`, { detail: { host } });
  }
  return firmwareUrl(baseUrl, source.naming, version);
}

/** The record read back leniently: anything unreadable is a fresh Idle record (and logged by the caller). */
export function loadRecord(kv: KeyValueStore): { record: OtaRecord; error?: string } {
  const raw = kv.get(OTA_KV_KEY);
  const idle: OtaRecord = { state: "Idle", durable: 0, attempt: 0 };
  if (raw === undefined) return { record: idle };
  try {
    const v = parseJsonBounded(raw, { maxLength: 3999, maxDepth: 4 });
    if (!isJsonObject(v) || typeof v["state"] !== "string" || !(OTA_STATES as readonly string[]).includes(v["state"])) {
      return { record: idle, error: "record has no known state" };
    }
    const r: OtaRecord = { state: v["state"] as OtaState, durable: 0, attempt: 0 };
    const str = (k: string): string | undefined => (typeof v[k] === "string" ? (v[k] as string) : undefined);
    const num = (k: string): number | undefined => (typeof v[k] === "number" && Number.isSafeInteger(v[k]) && (v[k] as number) >= 0 ? (v[k] as number) : undefined);
    const from = str("from"); if (from !== undefined) r.from = from;
    const to = str("to"); if (to !== undefined) r.to = to;
    const url = str("url"); if (url !== undefined) r.url = url;
    const etag = str("etag"); if (etag !== undefined) r.etag = etag;
    r.durable = num("durable") ?? 0;
    const total = num("total"); if (total !== undefined) r.total = total;
    r.attempt = num("attempt") ?? 0;
    const le = v["lastError"];
    if (isJsonObject(le) && typeof le["code"] === "string" && typeof le["message"] === "string") {
      const e: OtaReportedError = { code: le["code"], message: le["message"], time: typeof le["time"] === "number" ? le["time"] : 0 };
      if (typeof le["platformCode"] === "number") e.platformCode = le["platformCode"];
      r.lastError = e;
    }
    if (r.state === "Downloading" || r.state === "Verifying") {
      const p = kv.get(OTA_PROGRESS_KEY);
      if (p !== undefined && /^[0-9]{1,12}$/.test(p) && Number(p) > r.durable && (r.total === undefined || Number(p) <= r.total)) r.durable = Number(p);
    }
    return { record: r };
  } catch (e) {
    return { record: idle, error: e instanceof Error ? e.message : String(e) };
  }
}

// ---------------------------------------------------------------------------------------------------------
// The controller

/** What boot() found: the running version and what the controller will do. */
export interface OtaBootInfo {
  runningVersion: string;
  state: OtaState;
  /** The running partition's label ("factory", "ota_0", ...). */
  partition: string;
}

export class OtaController {
  readonly #ports: OtaControllerPorts;
  readonly #config: OtaControllerConfig;
  readonly #hooks: OtaControllerHooks;
  readonly #log: Log;
  #record: OtaRecord;
  #running = "0.0.0";
  /** Bumped to cancel the running download (a newer request, close). */
  #generation = 0;
  #response: ByteSourceResponse | undefined;
  #sleep: { handle: unknown; wake: () => void } | undefined;
  #selfTestTimer: unknown;
  #selfTestDone = false;
  /** A request refused while PendingVerify, taken up once Valid. */
  #deferred: { version: string; baseUrl?: string } | undefined;
  #lastProgress = { at: -Infinity, percent: -Infinity };
  #closed = false;
  /** boot() changed the state: start() reports it. */
  // Stryker disable next-line BooleanLiteral: boot() assigns it before start(), its only reader, runs.
  #bootChanged = false;
  /** The running download (tests and the simulator wait on it). */
  #task: Promise<void> = Promise.resolve();

  constructor(ports: OtaControllerPorts, config: OtaControllerConfig, hooks: OtaControllerHooks) {
    this.#ports = ports;
    this.#config = config;
    this.#hooks = hooks;
    this.#log = ports.log;
    const { record, error } = loadRecord(ports.kv);
    if (error !== undefined) this.#log.log("warn", "ota.record.unreadable", { message: error });
    this.#record = record;
  }

  get state(): OtaState {
    return this.#record.state;
  }

  get record(): Readonly<OtaRecord> {
    return { ...this.#record };
  }

  get runningVersion(): string {
    return this.#running;
  }

  /** Settles when the current download (if any) has ended, one way or another. */
  idle(): Promise<void> {
    return this.#task;
  }

  /**
   * Runs at power-on, before the sync starts: reads the running image (version from its descriptor) and
   * the record, and settles what a restart means (PendingVerify, RolledBack, Valid, resume).
   */
  boot(): OtaBootInfo {
    const slot = this.#ports.slot;
    const partition = slot.runningPartition();
    const desc = slot.runningDescriptor();
    const fromDescriptor = desc?.version;
    if (fromDescriptor !== undefined && isSemver(fromDescriptor)) this.#running = fromDescriptor;
    else if (this.#config.fallbackVersion !== undefined) {
      this.#log.log("warn", "ota.boot.version-from-config", { partition: partition.label, descriptor: fromDescriptor ?? null, version: this.#config.fallbackVersion });
      this.#running = this.#config.fallbackVersion;
    } else {
      this.#running = fromDescriptor ?? "0.0.0";
    }
    const otadataState = slot.runningState();
    const pending = otadataState === "PENDING_VERIFY";
    const r = this.#record;
    const before = r.state;
    this.#log.log("info", "ota.boot", { running: this.#running, partition: partition.label, pending, record: r.state, to: r.to ?? null });

    const installing = r.state === "Downloading" || r.state === "Verifying" || r.state === "Staged" || r.state === "PendingVerify";
    if (installing && r.to !== undefined && r.to !== r.from && this.#running === r.to) {
      // The image this record was installing runs and was never confirmed: it is self-tested (and rolled back
      // on failure) whatever otadata's state word says. Not PENDING_VERIFY means a torn otadata write (a power
      // cut left the CRC-protected sequence number and a garbage or VALID state), a build without rollback,
      // or a confirm whose record write was lost: each gets the self-test again (see the header).
      if (!pending) this.#log.log("warn", "ota.boot.unconfirmed", { version: this.#running, record: r.state, otadata: otadataState ?? null });
      this.#transition("PendingVerify");
    } else if (r.state === "Staged" || r.state === "PendingVerify") {
      if (this.#running === r.from) {
        const err = r.lastError !== undefined && (r.lastError.code === UPDATE_CODES.OTA_SELF_TEST_FAILED || r.lastError.code === UPDATE_CODES.OTA_SELF_TEST_TIMEOUT)
          ? r.lastError
          : this.#reportedError(new ShadowOtaError(UPDATE_CODES.OTA_ROLLED_BACK,
            // Stryker disable next-line ObjectLiteral: the detail never leaves the controller (a reported error carries code, message, platformCode and time).
            `${r.to ?? "the new image"} was not confirmed: the bootloader started ${r.from} again`, { detail: { from: r.from ?? null, to: r.to ?? null } }));
        r.lastError = err;
        this.#transition("RolledBack");
      } else {
        r.lastError = this.#reportedError(new ShadowOtaError(UPDATE_CODES.OTA_UNEXPECTED_VERSION,
          // Stryker disable next-line ObjectLiteral: as above, the detail is not reported.
          `after the update to ${r.to ?? "?"} the device runs ${this.#running}`, { detail: { from: r.from ?? null, to: r.to ?? null, running: this.#running } }));
        this.#transition("Failed");
      }
    } else if (pending) {
      // No record of this image's install (the store was erased): still confirm it through the self-test.
      r.to = this.#running;
      this.#transition("PendingVerify");
    } else if (r.state === "Verifying") {
      // Verification did not finish: resume (the slot re-reads the prefix) and end again.
      this.#transition("Downloading");
    }
    this.#bootChanged = r.state !== before;
    return { runningVersion: this.#running, state: r.state, partition: partition.label };
  }

  /** Starts what boot() left to do: the resumed download, or the self-test window. Reports the state. */
  start(): void {
    const r = this.#record;
    if (r.state === "Downloading") {
      this.#log.log("info", "ota.resume", { to: r.to ?? null, durable: r.durable });
      this.#run(() => this.#download());
    } else if (r.state === "PendingVerify") {
      const ms = this.#config.selfTestWindowMs ?? DEFAULT_SELF_TEST_WINDOW_MS;
      this.#selfTestTimer = this.#ports.clock.setTimer(ms, () => {
        this.#selfTestTimer = undefined;
        this.#failSelfTest(new ShadowOtaError(UPDATE_CODES.OTA_SELF_TEST_TIMEOUT, `no twin get completed within ${ms} ms of the restart into ${this.#running}`));
      });
    }
    // What did not change is in the persisted reported state already (ShadowSync re-sends what the cloud lacks).
    // Stryker disable next-line BooleanLiteral: the first report passes the progress throttle anyway (#lastProgress starts at -Infinity) and records the same time and percent.
    if (this.#bootChanged) this.#report(true);
  }

  /**
   * A desired firmware version (strict SemVer, from DeviceAgent). `baseUrl` may come from desired state;
   * it is used only when its host is on the allow-list. Never throws: refusals are reported.
   */
  request(version: string, baseUrl?: string): void {
    if (this.#closed) return;
    const r = this.#record;
    const verdict = checkRequest(version, this.#running, this.#config.allowDowngrade ?? false);
    if (verdict === "same") {
      this.#log.log("debug", "ota.request.running", { version });
      return;
    }
    if (r.state === "PendingVerify") {
      // Stryker disable next-line ConditionalExpression: { version, baseUrl: undefined } is taken up as request(version, undefined), the same call.
      this.#deferred = baseUrl === undefined ? { version } : { version, baseUrl };
      this.#refuse(version, new ShadowOtaError(UPDATE_CODES.OTA_UPDATE_WHILE_PENDING,
        `${this.#running} is still pending verification; ${version} waits until it is confirmed`));
      return;
    }
    if (r.to === version) {
      if (r.state === "Downloading" || r.state === "Verifying" || r.state === "Staged") return; // already on it
      if (r.state === "RolledBack" || (r.state === "Failed" && !this.#retryable(r.lastError))) {
        this.#log.log("info", "ota.request.not-again", { version, state: r.state, code: r.lastError?.code ?? null });
        return;
      }
    }
    if (verdict !== undefined) {
      this.#refuse(version, verdict);
      return;
    }
    let url: string;
    try {
      url = resolveFirmwareUrl(this.#config.source, version, baseUrl);
    } catch (e) {
      this.#refuse(version, e as ShadowOtaError);
      return;
    }
    if (r.state === "Staged") {
      this.#log.log("info", "ota.request.after-restart", { version, staged: r.to ?? null });
      return; // the restart is under way; desired is looked at again after it
    }
    this.#cancelDownload();
    this.#ports.slot.abort();
    // The new record starts in the old state, so the transition logs where the update came from.
    this.#record = { state: r.state, from: this.#running, to: version, url, durable: 0, attempt: 1 };
    this.#lastProgress = { at: -Infinity, percent: -Infinity };
    this.#transition("Downloading");
    this.#run(() => this.#download());
  }

  /**
   * Desired no longer asks for `version` (put back to the running version or removed: a rollout's revert).
   * While that version downloads (Downloading, or Verifying), the download stops, the slot is aborted —
   * the boot partition is never switched, so nothing half-written can boot — and the record goes back to
   * Idle with OTA_UPDATE_CANCELLED as its lastError (the reported document's schema is unchanged). Once the
   * image is Staged the restart is under way and it is too late: the new image boots and its self-test
   * decides (logged `ota.cancel.too-late`). Any other state or version: nothing to cancel. Never throws;
   * returns whether an update was cancelled. The same version can be requested again afterwards.
   */
  cancel(version: string, reason: string): boolean {
    const r = this.#record;
    if (this.#closed || r.to !== version) return false;
    if (r.state !== "Downloading" && r.state !== "Verifying") {
      if (r.state === "Staged") this.#log.log("warn", "ota.cancel.too-late", { version, state: r.state });
      return false;
    }
    this.#cancelDownload();
    this.#ports.slot.abort();
    r.lastError = this.#reportedError(new ShadowOtaError(UPDATE_CODES.OTA_UPDATE_CANCELLED, `update to ${version} cancelled: ${reason}`));
    r.durable = 0;
    delete r.etag;
    delete r.total;
    this.#transition("Idle");
    this.#log.log("info", "ota.cancelled", { version, reason });
    this.#report(true);
    return true;
  }

  /** The twin is in step again after a connect: the self-test's signal. */
  onSynced(): void {
    if (this.#record.state !== "PendingVerify" || this.#selfTestDone || this.#closed) return;
    this.#selfTestDone = true;
    const check = this.#hooks.appCheck;
    void Promise.resolve()
      .then(() => (check === undefined ? true : check()))
      .then((res) => {
        if (this.#closed || this.#record.state !== "PendingVerify") return;
        if (res === true) this.#confirm();
        // The detail is not reported (Stryker's ObjectLiteral and MethodExpression mutants of this else line are
        // equivalent; a disable comment cannot reach an else branch, docs/mutation.md).
        else this.#failSelfTest(new ShadowOtaError(UPDATE_CODES.OTA_SELF_TEST_FAILED, `application check failed: ${String(res)}`, { detail: { reason: String(res).slice(0, 100) } }));
      }, (e: unknown) => {
        // Stryker disable next-line ConditionalExpression: #failSelfTest returns at once on a closed controller.
        if (this.#closed) return;
        // Stryker disable next-line ObjectLiteral: the cause is not reported.
        this.#failSelfTest(new ShadowOtaError(UPDATE_CODES.OTA_SELF_TEST_FAILED, `application check threw: ${e instanceof Error ? e.message : String(e)}`, { cause: e }));
      });
  }

  /** Stops the download and timers (the record stays as it is). Safe twice. */
  close(): void {
    // Stryker disable next-line ConditionalExpression: a second close() repeats only idempotent steps (no response, no sleep, no timer left).
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelDownload();
    if (this.#selfTestTimer !== undefined) this.#ports.clock.cancel(this.#selfTestTimer);
    this.#selfTestTimer = undefined;
  }

  /** The `reported.firmwareUpdate` object for the current record. */
  reported(): JsonObject {
    // Every member is present (null when it does not apply): reports are merge patches, so a member left
    // out would keep its old value in the twin.
    const r = this.#record;
    const transfer = r.state === "Downloading" || r.state === "Verifying" || r.state === "Staged" || r.state === "Valid";
    const total = transfer && r.total !== undefined ? r.total : null;
    return {
      state: r.state,
      from: r.from ?? null,
      to: r.to ?? null,
      bytes: transfer ? r.durable : null,
      total,
      percent: total === null ? null : total > 0 ? Math.min(100, Math.floor((r.durable * 100) / total)) : 0,
      attempt: r.attempt > 0 ? r.attempt : null,
      lastError: r.lastError === undefined ? null : { ...r.lastError },
    };
  }

  // ---- transitions -------------------------------------------------------------------------------

  #transition(next: OtaState): void {
    const prev = this.#record.state;
    this.#record.state = next;
    this.#persist();
    if (prev !== next) this.#log.log("info", "ota.state", { from: prev, to: next, version: this.#record.to ?? null });
  }

  #persist(): void {
    try {
      // Progress first: a power cut between the two leaves an older record and no progress, never a
      // progress entry that belongs to another download.
      this.#ports.kv.delete(OTA_PROGRESS_KEY);
      this.#ports.kv.set(OTA_KV_KEY, JSON.stringify(this.#record));
    } catch (e) {
      this.#log.log("error", "ota.persist-failed", { message: e instanceof Error ? e.message : String(e) });
    }
  }

  /** The durable offset alone (every sector boundary). */
  #persistProgress(): void {
    try {
      this.#ports.kv.set(OTA_PROGRESS_KEY, String(this.#record.durable));
    } catch (e) {
      this.#log.log("error", "ota.persist-failed", { message: e instanceof Error ? e.message : String(e) });
    }
  }

  #reportedError(e: unknown): OtaReportedError {
    // Stryker disable next-line ObjectLiteral: the cause is not reported.
    const err = e instanceof ShadowOtaError ? e : new ShadowOtaError(UPDATE_CODES.OTA_INTERNAL, e instanceof Error ? e.message : String(e), { cause: e });
    const out: OtaReportedError = { code: err.code, message: err.message.length > MAX_MESSAGE ? err.message.slice(0, MAX_MESSAGE - 1) + "…" : err.message, time: this.#ports.clock.epochSeconds() };
    if (err.platformCode !== undefined) out.platformCode = err.platformCode;
    return out;
  }

  #retryable(e: OtaReportedError | undefined): boolean {
    if (e === undefined) return true;
    if (e.code === UPDATE_CODES.OTA_RETRIES_EXHAUSTED) return true;
    return false;
  }

  /** A refusal of a request: Failed with the error, nothing downloaded, the running download untouched. */
  #refuse(version: string, err: ShadowOtaError): void {
    this.#log.log("warn", "ota.request.refused", { version, code: err.code, message: err.message });
    const r = this.#record;
    if (r.state === "Downloading" || r.state === "Verifying" || r.state === "Staged") {
      // Keep the running download; the refusal is only reported.
      r.lastError = this.#reportedError(err);
      this.#persist();
      this.#report(true);
      return;
    }
    if (r.state === "PendingVerify") {
      r.lastError = this.#reportedError(err);
      this.#persist();
      this.#report(true);
      return;
    }
    this.#record = { state: "Failed", from: this.#running, to: version, durable: 0, attempt: 0, lastError: this.#reportedError(err) };
    this.#persist();
    this.#report(true);
  }

  #report(force: boolean): void {
    const r = this.#record;
    if (!force) {
      const now = this.#ports.clock.monotonicMs();
      const percent = r.total !== undefined && r.total > 0 ? (r.durable * 100) / r.total : 0;
      const p = this.#config.progressPercent ?? 5;
      const ms = this.#config.progressIntervalMs ?? 2_000;
      if (percent - this.#lastProgress.percent < p || now - this.#lastProgress.at < ms) return;
      this.#lastProgress = { at: now, percent };
    } else {
      const percent = r.total !== undefined && r.total > 0 ? (r.durable * 100) / r.total : 0;
      this.#lastProgress = { at: this.#ports.clock.monotonicMs(), percent };
    }
    this.#send();
  }

  #send(): Promise<void> {
    return this.#hooks.report(this.reported()).catch((e: unknown) => {
      this.#log.log("info", "ota.report.failed", { code: e instanceof ShadowOtaError ? e.code : "UNKNOWN" });
    });
  }

  #run(task: () => Promise<void>): void {
    this.#task = this.#task.then(task, task).catch((e: unknown) => {
      this.#log.log("error", "ota.task-threw", { message: e instanceof Error ? e.message : String(e) });
    });
  }

  #cancelDownload(): void {
    // Stryker disable next-line UpdateOperator: generations are only compared for inequality, so counting down cancels as well.
    this.#generation++;
    const resp = this.#response;
    this.#response = undefined;
    resp?.abort();
    const s = this.#sleep;
    this.#sleep = undefined;
    if (s !== undefined) {
      this.#ports.clock.cancel(s.handle);
      s.wake();
    }
  }

  #wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => { this.#sleep = undefined; resolve(); };
      this.#sleep = { handle: this.#ports.clock.setTimer(ms, wake), wake };
    });
  }

  // ---- the download ------------------------------------------------------------------------------

  async #download(): Promise<void> {
    const gen = this.#generation;
    const policy = this.#config.retry ?? DEFAULT_RETRY;
    const random = this.#ports.random ?? Math.random;
    for (;;) {
      if (gen !== this.#generation || this.#closed) return;
      try {
        await this.#attempt(gen);
        return;
      } catch (e) {
        if (gen !== this.#generation || this.#closed) return;
        if (e instanceof ShadowOtaError && e.code === "OTA_POWER_LOST") {
          // The (simulated) power is gone: nothing more runs, nothing more is written.
          this.#log.log("warn", "ota.power-lost", { durable: this.#record.durable });
          this.close();
          return;
        }
        this.#ports.slot.abort();
        const r = this.#record;
        r.lastError = this.#reportedError(e);
        const retry = isRetryableDownloadError(e) && mayRetry(r.attempt, policy);
        this.#log.log(retry ? "warn" : "error", "ota.download.failed", { to: r.to ?? null, attempt: r.attempt, code: r.lastError.code, message: r.lastError.message, retry });
        if (!retry) {
          if (isRetryableDownloadError(e)) {
            r.lastError = this.#reportedError(new ShadowOtaError(UPDATE_CODES.OTA_RETRIES_EXHAUSTED,
              `gave up after ${r.attempt} attempts; last: ${r.lastError.code}: ${r.lastError.message}`, e instanceof ShadowOtaError && e.platformCode !== undefined ? { platformCode: e.platformCode, cause: e } : { cause: e }));
          }
          this.#transition("Failed");
          this.#report(true);
          return;
        }
        const delay = backoffDelay(r.attempt - 1, policy, random);
        r.attempt++;
        this.#persist();
        this.#report(true);
        await this.#wait(delay);
      }
    }
  }

  /** One attempt: resume or begin, stream, verify, stage, restart. Throws what failed. */
  async #attempt(gen: number): Promise<void> {
    const { slot, source } = this.#ports;
    const r = this.#record;
    const url = r.url!;
    const expected = { version: r.to!, projectName: this.#config.projectName } as Parameters<typeof checkCandidate>[1];
    // Stryker disable next-line ConditionalExpression: checkCandidate treats a chipId member that is undefined as absent.
    if (this.#config.chipId !== undefined) expected.chipId = this.#config.chipId;
    // Stryker disable next-line ConditionalExpression: as above, for chipRevFull.
    if (this.#config.chipRevFull !== undefined) expected.chipRevFull = this.#config.chipRevFull;
    const begin: OtaBeginOptions = { requireHash: this.#config.requireHash ?? true, minSecureVersion: slot.runningDescriptor()?.secureVersion ?? 0 };
    if (this.#config.signingKey !== undefined) begin.signingKey = this.#config.signingKey;

    // Resume only what a validator ties to the same object; the slot re-reads and re-checks the prefix.
    let offset = 0;
    if (r.durable > 0 && r.etag !== undefined) {
      // All bytes written (a restart while Verifying): resume below the end, since the slot refuses to
      // resume an image that is already complete, and fetching the last sector again is cheap.
      const want = r.total !== undefined && r.durable >= r.total ? r.total - 1 : r.durable;
      try {
        // Stryker disable next-line ConditionalExpression: an imageSize member that is undefined means no size (OtaBeginOptions), as when it is absent.
        offset = slot.resume(want, r.total === undefined ? begin : { ...begin, imageSize: r.total });
      } catch (e) {
        if (e instanceof ShadowOtaError && (e.code === "OTA_RESUME_MISMATCH" || e.code === "OTA_IMAGE_INVALID")) {
          this.#log.log("warn", "ota.resume.mismatch", { durable: r.durable, code: e.code });
          offset = 0;
        } else throw e;
      }
      // Stryker disable next-line ConditionalExpression,EqualityOperator: after resume() returned 0 the slot holds no candidate (candidateDescriptor() is undefined), so the check finds nothing.
      if (offset > 0) {
        const stored = slot.candidateDescriptor();
        const refusal = stored === undefined ? undefined : checkCandidate(stored, expected);
        if (refusal !== undefined) { slot.abort(); offset = 0; }
      }
    }
    const resp = await source.open(offset > 0 ? { url, offset, etag: r.etag! } : { url, offset: 0 });
    if (gen !== this.#generation) { resp.abort(); return; }
    this.#response = resp;
    try {
      if (resp.start !== offset) {
        this.#log.log("info", "ota.download.restart", { asked: offset, got: resp.start });
        slot.abort();
        offset = 0;
      }
      if (offset === 0) {
        const size = resp.total;
        // Stryker disable next-line ConditionalExpression: as at resume(), imageSize undefined means no size.
        slot.begin(size === undefined ? begin : { ...begin, imageSize: size });
      }
      r.durable = offset;
      if (resp.etag !== undefined) r.etag = resp.etag; else delete r.etag;
      if (resp.total !== undefined) r.total = resp.total;
      this.#persist();
      this.#log.log("info", "ota.download.open", { to: r.to ?? null, status: resp.status, start: resp.start, total: resp.total ?? null, attempt: r.attempt });
      let written = offset;
      for (;;) {
        // Never past the next sector boundary: a cut then costs less than one sector, bytes in hand included.
        const chunk = await resp.read((Math.floor(written / SECTOR_SIZE) + 1) * SECTOR_SIZE - written);
        if (gen !== this.#generation) return;
        if (chunk === undefined) break;
        // Written in pieces that end on sector boundaries, and the record persisted at each boundary, so
        // the durable offset is always a whole sector and a power cut costs less than one sector again.
        for (let off = 0; off < chunk.length;) {
          const boundary = (Math.floor(written / SECTOR_SIZE) + 1) * SECTOR_SIZE;
          const n = Math.min(chunk.length - off, boundary - written);
          const desc = slot.write(off === 0 && n === chunk.length ? chunk : chunk.subarray(off, off + n));
          if (desc !== undefined) {
            const refusal = checkCandidate(desc, expected);
            if (refusal !== undefined) throw refusal;
            slot.accept();
          }
          written += n;
          off += n;
          if (written === boundary) {
            r.durable = written;
            this.#persistProgress();
            this.#report(false);
          }
        }
      }
      r.durable = written;
      this.#transition("Verifying");
      this.#report(true);
      slot.end();
      slot.setBootPartition();
    } finally {
      if (this.#response === resp) this.#response = undefined;
      resp.abort();
    }
    r.lastError = undefined;
    delete r.lastError;
    this.#transition("Staged");
    this.#log.log("info", "ota.staged", { to: r.to ?? null, bytes: r.durable });
    // Stryker disable next-line StringLiteral: r.to is always set when a download stages an image (the "?" is for the type only).
    await this.#reportThenRestart(`update to ${r.to ?? "?"} staged`);
  }

  /** Sends the current state and waits for the cloud's answer, at most REPORT_BEFORE_RESTART_MS. */
  async #sendBounded(): Promise<void> {
    let guard: unknown;
    await Promise.race([
      this.#send(),
      new Promise<void>((resolve) => { guard = this.#ports.clock.setTimer(REPORT_BEFORE_RESTART_MS, resolve); }),
    ]);
    this.#ports.clock.cancel(guard);
  }

  async #reportThenRestart(reason: string): Promise<void> {
    await this.#sendBounded();
    if (this.#closed) return;
    this.#log.log("info", "ota.restart", { reason });
    this.#restart(reason);
  }

  /** Asks the platform to restart. A platform that cannot (the Moddable simulator) leaves the state as it
   *  is — the boot partition is already switched, the next power-on boots the new image — and says so. */
  #restart(reason: string): void {
    try {
      this.#ports.restart.restart(reason);
    } catch (e) {
      this.#log.log("error", "ota.restart-failed", { reason, message: e instanceof Error ? e.message : String(e) });
      this.#record.lastError = this.#reportedError(e);
      this.#persist();
      this.#report(true);
    }
  }

  // ---- self-test ---------------------------------------------------------------------------------

  #confirm(): void {
    if (this.#selfTestTimer !== undefined) this.#ports.clock.cancel(this.#selfTestTimer);
    this.#selfTestTimer = undefined;
    try {
      this.#ports.slot.markValid();
    } catch (e) {
      this.#log.log("error", "ota.mark-valid-failed", { message: e instanceof Error ? e.message : String(e) });
      // Stryker disable next-line ObjectLiteral: the cause is not reported.
      this.#failSelfTest(e instanceof ShadowOtaError ? e : new ShadowOtaError(UPDATE_CODES.OTA_SELF_TEST_FAILED, "markValid failed", { cause: e }));
      return;
    }
    const r = this.#record;
    delete r.lastError;
    r.durable = r.total ?? r.durable;
    this.#transition("Valid");
    this.#log.log("info", "ota.valid", { version: this.#running });
    this.#report(true);
    const next = this.#deferred;
    this.#deferred = undefined;
    if (next !== undefined) this.request(next.version, next.baseUrl);
  }

  #failSelfTest(err: ShadowOtaError): void {
    if (this.#closed || this.#record.state !== "PendingVerify") return;
    if (this.#selfTestTimer !== undefined) this.#ports.clock.cancel(this.#selfTestTimer);
    this.#selfTestTimer = undefined;
    const r = this.#record;
    r.lastError = this.#reportedError(err);
    this.#persist(); // the next boot (the previous image) reports this error
    this.#log.log("error", "ota.self-test.failed", { version: this.#running, code: err.code, message: err.message });
    void this.#sendBounded().then(() => {
      if (this.#closed) return;
      try {
        this.#ports.slot.markInvalidAndReboot();
      } catch (e) {
        // No previous image to go back to: keep running this one, and say so.
        r.lastError = this.#reportedError(e);
        this.#transition("Failed");
        this.#report(true);
        return;
      }
      this.#restart(`self-test of ${this.#running} failed: ${err.code}`);
    });
  }
}
