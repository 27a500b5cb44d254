/**
 * The device's side of the twin, above ShadowSync: what a shadow-ota device reports and how it answers a
 * desired change. Platform-neutral (runs unchanged on XS and Node); the Moddable entry point
 * (src/device/main.ts) and the Node simulated device (src/sim/device.ts) both run it.
 *
 * - At start it reports the running firmware version at `reportedFirmwarePath` (AWS seed:
 *   `config.firmware_version`, so the delta clears once the device runs the desired version; Azure seed:
 *   `firmwareVersion`, the seed's reported key) unless the reported state already says so.
 * - Desired configuration leaves (everything but the firmware version) are offered to `acceptConfig`; the
 *   accepted ones are applied by reporting them (reported then equals desired and the delta clears), a
 *   refused one is reported in `reported.lastError` with the refusal's code and left out.
 * - A desired firmware version equal to the running one is reported as running; any other one is handed to
 *   `onFirmwareRequested` (the OTA module decides on downgrades and policy) once (until withdrawn, below): AWS republishes
 *   the delta after every accepted report, the device's own included, and a second hand-over of the same
 *   version must not start a second download. Without the hook the agent logs `agent.firmware.unhandled`
 *   and changes nothing.
 * - Withdrawal (a rollout's revert): when desired, after a version was handed on, names the running version
 *   or no version any more, `onFirmwareWithdrawn` gets the handed-on version (device-app cancels its download
 *   or its wait in the update gate) and the hand-over is forgotten, so the same version named again later
 *   is handed on again. The agent looks at the whole desired document for this (`onDesiredDocument`, from
 *   ShadowSync whenever its desired copy changes): on AWS, desired going back to the value the device
 *   reports produces no delta. A desired value that has not changed since the hand-over withdraws nothing
 *   (an Azure direct method's version is never in desired).
 * - Errors that the cloud should see (malformed documents or topics, refused values, rejected reports) go to
 *   `reported.lastError = {code, message, platformCode?}`, once per distinct error; transport-level ones
 *   (not connected, timeout, stale version) are only logged, since reporting them could never succeed or
 *   would repeat forever.
 *
 * Not here: MQTT, OTA, persistence (ShadowSync persists the reported state), timers.
 */
import { getPath, setPath } from "./config-diff";
import { ShadowOtaError } from "./errors";
import { jsonEqual, type Json, type JsonObject } from "./json";
import { compareSemver, parseSemver } from "./semver";
import type { DesiredChange, ShadowSyncHandlers } from "./shadow-sync";
import { SYNC_CODES } from "./sync-errors";
import type { Log } from "../ports/log";

/** What the agent needs of ShadowSync (an interface, so tests and other drivers can stand in). */
export interface SyncLike {
  report(patch: JsonObject): Promise<void>;
  getState(): { reported: JsonObject };
}

export interface DeviceAgentOptions {
  /** The running image's version (its app descriptor's `version`); strict SemVer. */
  firmwareVersion: string;
  /** Where desired holds the firmware version (the same path ShadowSync is configured with). */
  firmwareVersionPath: readonly string[];
  /** Where the device reports its running version. Default: firmwareVersionPath. */
  reportedFirmwarePath?: readonly string[];
  /** Policy for a desired configuration leaf: return an error to refuse it. Default: accept everything. */
  acceptConfig?(path: readonly string[], value: Json): ShadowOtaError | undefined;
  /** A desired firmware version other than the running one (strict SemVer, already checked). */
  onFirmwareRequested?(request: { version: string; running: string; newer: boolean; change: DesiredChange }): void;
  /** Desired no longer asks for a version handed on before: it names the running version (`desired`) or none
   *  (`desired` undefined or null). */
  onFirmwareWithdrawn?(withdrawal: { version: string; running: string; desired: Json | undefined }): void;
}

/** Codes that are logged but never reported (reporting them could not succeed, or would repeat forever). */
const NOT_REPORTED: ReadonlySet<string> = new Set([
  SYNC_CODES.SYNC_NOT_CONNECTED,
  SYNC_CODES.SYNC_TRANSPORT,
  SYNC_CODES.SYNC_TIMEOUT,
  SYNC_CODES.SYNC_VERSION_STALE,
  SYNC_CODES.SYNC_VERSION_CONFLICT,
]);

function pathStartsWith(p: readonly string[], prefix: readonly string[]): boolean {
  // Stryker disable next-line ConditionalExpression: without the length check every() still fails a path shorter than the prefix (p[i] is undefined, never equal to a key).
  return prefix.length <= p.length && prefix.every((k, i) => p[i] === k);
}

export class DeviceAgent implements ShadowSyncHandlers {
  readonly #options: DeviceAgentOptions;
  readonly #reportedFirmwarePath: readonly string[];
  readonly #log: Log;
  #sync: SyncLike | undefined;
  /** The firmware version last handed to onFirmwareRequested in this boot (cleared when desired withdraws it). */
  #handedOn: string | undefined;
  /** What desired held at the firmware path when #handedOn was handed on. */
  #handedDesired: Json | undefined;

  /** Throws VERSION_INVALID when `firmwareVersion` is not strict SemVer (a build error, not a cloud one). */
  constructor(options: DeviceAgentOptions, log: Log) {
    parseSemver(options.firmwareVersion);
    if (options.firmwareVersionPath.length === 0) throw new RangeError("firmwareVersionPath must not be empty");
    this.#options = options;
    this.#reportedFirmwarePath = options.reportedFirmwarePath ?? options.firmwareVersionPath;
    this.#log = log;
  }

  /** Connects the agent to its sync (call before sync.start()); reports the running version if needed. */
  attach(sync: SyncLike): void {
    this.#sync = sync;
    const reported = sync.getState().reported;
    if (getPath(reported, this.#reportedFirmwarePath) !== this.#options.firmwareVersion) {
      this.#report(setPath({}, this.#reportedFirmwarePath, this.#options.firmwareVersion), "agent.report.firmware");
    }
  }

  onDesired(change: DesiredChange): void {
    this.onDesiredDocument(change.desired);
    const fwPath = this.#options.firmwareVersionPath;
    let patch: JsonObject = {};
    let applied = 0;
    for (const p of change.changed) {
      if (pathStartsWith(p, fwPath)) continue;
      const value = getPath(change.delta, p);
      if (value === undefined) continue;
      const refusal = this.#options.acceptConfig?.(p, value);
      if (refusal !== undefined) {
        this.#log.log("warn", "agent.config.refused", { path: p.join("."), code: refusal.code });
        this.onError(refusal);
        continue;
      }
      patch = setPath(patch, p, value);
      applied++;
    }
    if (applied > 0) this.#report(patch, "agent.report.config");

    const requested = change.firmwareVersion;
    if (requested === undefined) return;
    const running = this.#options.firmwareVersion;
    if (compareSemver(requested, running) === 0) {
      // Same precedence: nothing to install. Say what runs, so the delta clears (AWS seed).
      const reportedNow = getPath(this.#sync?.getState().reported ?? {}, this.#reportedFirmwarePath);
      if (reportedNow !== running) this.#report(setPath({}, this.#reportedFirmwarePath, running), "agent.report.firmware");
      return;
    }
    const hook = this.#options.onFirmwareRequested;
    if (hook === undefined) {
      this.#log.log("warn", "agent.firmware.unhandled", { requested, running });
      return;
    }
    if (requested === this.#handedOn) {
      this.#log.log("debug", "agent.firmware.already-requested", { requested });
      return;
    }
    this.#handedOn = requested;
    this.#handedDesired = getPath(change.desired, fwPath);
    // Stryker disable next-line EqualityOperator: equal precedence returned above, so `> 0` and `>= 0` cannot differ here.
    hook({ version: requested, running, newer: compareSemver(requested, running) > 0, change });
  }

  /** The whole desired document as the sync now knows it (whether or not it left a delta): withdraws a
   *  handed-on version when desired has changed to the running version or to none. */
  onDesiredDocument(desired: JsonObject): void {
    const version = this.#handedOn;
    if (version === undefined) return;
    const wanted = getPath(desired, this.#options.firmwareVersionPath);
    if (jsonEqual(wanted ?? null, this.#handedDesired ?? null)) return;
    const running = this.#options.firmwareVersion;
    let back = wanted === undefined || wanted === null;
    if (!back && typeof wanted === "string") {
      try { back = compareSemver(wanted, running) === 0; } catch { /* not a version, so no revert: ShadowSync reports it */ }
    }
    if (!back) return;
    this.#handedOn = undefined;
    this.#handedDesired = undefined;
    this.#log.log("info", "agent.firmware.withdrawn", { version, desired: typeof wanted === "string" ? wanted : null });
    this.#options.onFirmwareWithdrawn?.({ version, running, desired: wanted });
  }

  onError(err: ShadowOtaError): void {
    if (NOT_REPORTED.has(err.code)) {
      this.#log.log("info", "agent.error.not-reported", { code: err.code });
      return;
    }
    const lastError: JsonObject = { ...err.toReported() };
    // Once per repetition: not when the reported state already holds this error, whoever reported it
    // (ShadowSync reports an invalid desired firmware version itself). The reported state, not a memory of
    // the agent's own last report, so an error that comes back after another one is reported again.
    const already = this.#sync?.getState().reported["lastError"];
    if (already !== undefined && jsonEqual(already, lastError)) return;
    this.#report({ lastError }, "agent.report.error");
  }

  /** Sends a report; a refusal is logged (ShadowSync keeps it persisted and re-sends it after reconnect). */
  #report(patch: JsonObject, event: string): void {
    const sync = this.#sync;
    if (sync === undefined) throw new ShadowOtaError(SYNC_CODES.SYNC_NOT_CONNECTED, "DeviceAgent.attach() was not called");
    this.#log.log("info", event, { keys: Object.keys(patch) });
    sync.report(patch).catch((e: unknown) => {
      const code = e instanceof ShadowOtaError ? e.code : "UNKNOWN";
      this.#log.log(NOT_REPORTED.has(code) ? "info" : "warn", "agent.report.failed", { event, code });
    });
  }
}
