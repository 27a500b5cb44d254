/**
 * Keeps the device in step with its cloud twin (AWS IoT Device Shadow or Azure IoT Hub device twin) through
 * one state machine behind the CloudProtocol interface (cloud-protocol.ts).
 *
 * Two layers, as STYLE.md #2 asks:
 * - `step(state, input, ctx)` is pure: given the sync state and one input (connected, disconnected, a
 *   classified message, a report request, a timeout, a failed send) it returns the next state and the
 *   actions to take as data (subscribe, publish, start/cancel a timer, persist, settle a report, hand a
 *   desired change or a direct method to the application, raise an error, log).
 * - `ShadowSync` is the thin driver: it feeds port events into `step` and carries out the actions through
 *   the ports (MqttTransport, KeyValueStore, Clock, Log). It holds the promises of `report()` and the timer
 *   handles, nothing else.
 *
 * Behaviour (docs/protocols.md §1.3, §1.4 and §3.3):
 * - On every `connected`: subscribe, then get. The get response is the baseline: its version becomes the
 *   last seen version, and the device acts on the delta between desired and its reported state (computed
 *   here with config-diff.ts for both clouds, since Azure has no delta topic).
 * - Notifications (AWS update/delta, Azure desired PATCH) whose version is not newer than the last seen are
 *   ignored (SYNC_VERSION_STALE, logged). Notifications before the get response are ignored too: the
 *   response covers them — unless it is older than one of them (it was produced before the change and
 *   overtaken by its notification), in which case the get is sent again. A notification whose resulting delta equals the last one handed out is not
 *   handed out again (AWS republishes the delta after every accepted update, the device's own included).
 * - Persisted state belongs to one identity: "rep" and "ver" are read only when KV "sid" names this cloud,
 *   thing and shadow (syncIdentity). State of another identity, or of none (written before "sid"
 *   existed), is deleted at construction with a `sync.persisted.discarded` warning, so a device
 *   re-provisioned without erasing NVS (or the Moddable simulator, whose preferences outlive builds) never
 *   reports one twin's state into another. The OTA controller's record is not stamped: it describes this
 *   flash's slots whoever the device is, and dropping it would let an unconfirmed image skip its self-test.
 * - `report(patch)` merges the patch into the device's reported state and persists it at once (KV "rep"),
 *   then sends it with a clientToken/$rid from a counter, one report at a time; it resolves on accepted and
 *   rejects with SYNC_VERSION_CONFLICT (409; the sync then re-gets), SYNC_REJECTED, SYNC_TIMEOUT (the
 *   sync re-gets too: the cloud may or may not have it) or SYNC_NOT_CONNECTED (the patch stays persisted
 *   and is sent after the next get).
 * - A report the cloud throttles (429) is not failed: it goes again (same token) after a full-jitter backoff
 *   wait (backoff.ts, DEFAULT_THROTTLE_RETRY), ahead of the reports queued behind it, until accepted or the
 *   policy's attempts are spent (then SYNC_REJECTED with `detail.attempts`). The jitter is drawn by the driver
 *   (ShadowSyncPorts.random), so `step` stays pure. A get the cloud throttles goes again after the same
 *   policy's wait, growing with each 429 in a row (no attempt limit: the device needs its document), where
 *   other refused gets wait the request timeout. A get response that comes first (another get, sent after a
 *   report's timeout or 409) cancels that wait.
 * - After each get response the device re-sends every reported leaf the cloud lacks or holds differently,
 *   so a rebooted device reports truthfully. Keys deleted locally while offline are not re-deleted.
 * - AWS reports carry the last seen shadow `version` (conditionalReports, default on): a report based on a
 *   stale view fails with 409 instead of overwriting, and the re-get brings the newer desired state.
 * - A desired firmware version that is not strict SemVer is never handed on as `firmwareVersion`: it is
 *   dropped from the delta, reported as `reported.lastError = {code: "SYNC_FIRMWARE_VERSION_INVALID", …}`
 *   and raised through onError.
 * - Azure direct method `firmwareUpdate` `{"version":"x.y.z"}` is handed on like a desired firmware
 *   version and answered 200 (or 400 with the error); other methods go to onMethod (404 without one).
 *
 * Not here: OTA decisions (the application acts on onDesired), MQTT sessions, timers (the Clock port).
 */
import { backoffDelay, mayRetry, type BackoffPolicy, type RandomSource } from "./backoff";
import { applyPatch, changedPaths, computeDelta, getPath, isDeltaEmpty, setPath } from "./config-diff";
import { cloudProtocol, type CloudKind, type CloudEvent, type CloudProtocol, type OutgoingMessage } from "./cloud-protocol";
import { ShadowOtaError } from "./errors";
import { isJsonObject, jsonClone, jsonEqual, parseJsonBounded, type Json, type JsonObject } from "./json";
import { FIRMWARE_METHOD_NAME, parseFirmwareUpdatePayload } from "./azure-twin";
import { parseSemver } from "./semver";
import { SYNC_CODES } from "./sync-errors";
import { utf8Encode } from "./utf8";
import type { Clock } from "../ports/clock";
import type { KeyValueStore } from "../ports/kv-store";
import type { Log, LogLevel } from "../ports/log";
import type { MqttTransport } from "../ports/mqtt-transport";

// ---------------------------------------------------------------------------------------------------------
// Configuration, handlers, state

export interface ShadowSyncConfig {
  cloud: CloudKind;
  /** AWS thing name (also used in logs for Azure, where the device id is the MQTT client id). */
  thingName: string;
  /** AWS named shadow; absent for the classic shadow. */
  shadowName?: string;
  /** Where desired holds the firmware version: ["config","firmware_version"] (AWS seed), ["updateVersion"] (Azure seed). */
  firmwareVersionPath: string[];
  /** Time allowed for a get or report response. Default 10,000 ms. */
  requestTimeoutMs?: number;
  /** Largest received payload. Default: 32 KB (AWS), 66 KB (Azure). */
  maxPayloadBytes?: number;
  /** Deepest received document. Default: 10 (AWS), 13 (Azure). */
  maxDepth?: number;
  /** AWS: send the last seen shadow version with reports (409 → re-get). Default true. */
  conditionalReports?: boolean;
  /** Azure direct method that starts an update. Default "firmwareUpdate". */
  firmwareMethod?: string;
  /** Retries of a report the cloud throttled (429). Default DEFAULT_THROTTLE_RETRY. */
  throttleRetry?: BackoffPolicy;
}

/**
 * A report refused with 429 (AWS: more than 20 requests per second per shadow, or 10 in flight per
 * connection; IoT Hub: its per-unit throttles) is sent again after a full-jitter backoff wait (backoff.ts):
 * caps of 1, 2, 4, 8, 16 and then 30 s, at most 10 attempts in all (about 2 to 3 minutes at worst); then it
 * fails with SYNC_REJECTED as other refusals do.
 */
export const DEFAULT_THROTTLE_RETRY: BackoffPolicy = { initialMs: 1_000, maxMs: 30_000, maxAttempts: 10 };

/** What onDesired receives. */
export interface DesiredChange {
  /** The whole desired state as far as the device knows it. */
  desired: JsonObject;
  /** Desired leaves that the device's reported state lacks or holds differently (an invalid firmware version removed). */
  delta: JsonObject;
  /** The leaf paths of `delta`, sorted. */
  changed: string[][];
  /** The desired firmware version when `delta` holds a strict SemVer one at firmwareVersionPath. */
  firmwareVersion?: string;
  /** The version of the document or notification this came from. */
  version: number;
}

export interface MethodResult {
  status: number;
  payload?: Json;
}

export interface ShadowSyncHandlers {
  onDesired(change: DesiredChange): void;
  onError?(err: ShadowOtaError): void;
  /** Azure direct methods other than the firmware method. Without it they are answered 404. */
  onMethod?(request: { name: string; payload: Json }): MethodResult | Promise<MethodResult>;
  /** A get response arrived after a connect: the device and its twin are in step again (called after the
   *  response's onDesired, once per connect). The OTA self-test waits for it. */
  onSynced?(): void;
  /** The desired document the sync holds has changed (a get response, a notification), whether or not it
   *  left a delta: AWS sends no delta when desired goes back to what the device reports (a rollout's
   *  revert), and the device still has to hear of it. Called after that input's onDesired. */
  onDesiredDocument?(desired: JsonObject): void;
}

export interface ShadowSyncPorts {
  mqtt: MqttTransport;
  kv: KeyValueStore;
  clock: Clock;
  log: Log;
  /** Draws the jitter of throttled-report retries. Default Math.random. */
  random?: RandomSource;
}

/** The persisted keys (NVS keys are at most 15 characters). */
export const SYNC_KV_KEYS = {
  /** The device's reported state, JSON. */
  REPORTED: "rep",
  /** The last seen desired-side version, decimal. */
  VERSION: "ver",
  /** Whose "rep" and "ver" these are: syncIdentity() of the configuration that wrote them. */
  IDENTITY: "sid",
} as const;

/** Whose persisted state this is: the cloud, the thing (Azure: device id) and the shadow name, as JSON so
 *  that no two configurations give the same text (`["aws","esp32-01",""]`). */
export function syncIdentity(config: { cloud: CloudKind; thingName: string; shadowName?: string }): string {
  return JSON.stringify([config.cloud, config.thingName, config.shadowName ?? ""]);
}

/** Largest value the KV store holds, in UTF-8 bytes: ESP-IDF's nvs_set_str takes at most 4000 bytes
 *  *including* the terminating NUL, so 3999 of text (see src/ports/kv-store.ts). */
export const KV_VALUE_MAX_BYTES = 3999;

export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

/** Timer token for the delayed re-get after a refused get. */
// Stryker disable next-line StringLiteral: the name only has to differ from the other timer tokens (g<n>, r<n>, RETRY_REPORT_TOKEN); "" does too.
export const RETRY_GET_TOKEN = "retry-get";

/** Timer token for the wait before a throttled report is sent again. */
// Stryker disable next-line StringLiteral: as RETRY_GET_TOKEN.
export const RETRY_REPORT_TOKEN = "retry-report";

export interface QueuedReport {
  token: string;
  patch: JsonObject;
  /** Times the cloud throttled this report (429) so far; absent for none. */
  throttled?: number;
}

/** The whole sync state; plain data, replaced (never mutated) by `step`. */
export interface SyncState {
  readonly connected: boolean;
  /** A get response arrived since the last connect (reports wait for it). Only while connected: a get is
   *  pending, and a report in flight, only while connected too (`disconnected` clears all three). */
  readonly synced: boolean;
  readonly desired: JsonObject;
  /** The device's truth (persisted as "rep"). */
  readonly reported: JsonObject;
  /** What the cloud holds as reported, as far as the device knows. */
  readonly cloudReported: JsonObject;
  /** Last seen desired-side version: AWS shadow version of a document or delta, Azure desired $version. */
  readonly version: number;
  /** AWS: last seen shadow version of any message (sent with conditional reports). */
  readonly shadowVersion: number;
  readonly nextId: number;
  readonly pendingGet: string | undefined;
  readonly inFlight: QueuedReport | undefined;
  readonly queue: readonly QueuedReport[];
  /** The last delta handed to onDesired (not handed out twice in a row from notifications). */
  readonly lastDelta: JsonObject | undefined;
  /** The newest desired-side version notified while no get response had arrived yet (0: none): a get
   *  response older than it is not acted on, the get is sent again. */
  readonly notifiedBeforeGet: number;
  /** A throttled report waits at the head of the queue for the RETRY_REPORT_TOKEN timer. */
  readonly throttleWait: boolean;
  /** Gets refused with 429 in a row (sets the backoff wait before the next; a document resets it). */
  readonly getThrottled: number;
}

export function initialSyncState(reported: JsonObject = {}, version = 0): SyncState {
  return {
    connected: false, synced: false, desired: {}, reported, cloudReported: {}, version, shadowVersion: 0,
    nextId: 1, pendingGet: undefined, inFlight: undefined, queue: [], lastDelta: undefined, throttleWait: false,
    notifiedBeforeGet: 0, getThrottled: 0,
  };
}

/** The next request token (`prefix` + counter) and the state that has used it. */
export function allocateToken(state: SyncState, prefix: "g" | "r"): [string, SyncState] {
  return [`${prefix}${state.nextId}`, { ...state, nextId: state.nextId + 1 }];
}

// ---------------------------------------------------------------------------------------------------------
// Inputs and actions

export type SyncInput =
  | { type: "connected" }
  | { type: "disconnected" }
  | { type: "message"; event: CloudEvent }
  /** A report request; `token` from allocateToken. */
  | { type: "report"; token: string; patch: JsonObject }
  /** A timer started by a start-timer action fired. */
  | { type: "timeout"; token: string }
  /** The transport refused to publish the request carrying `token`. */
  | { type: "send-failed"; token: string; error: ShadowOtaError };

export type SyncAction =
  | { type: "subscribe"; topics: string[] }
  | { type: "publish"; message: OutgoingMessage; token?: string }
  | { type: "start-timer"; token: string; ms: number }
  /** Start the timer `token` for a backoff wait after `failures` failures (the driver draws the jitter). */
  | { type: "start-backoff"; token: string; failures: number; policy: BackoffPolicy }
  | { type: "cancel-timer"; token: string }
  | { type: "persist"; key: string; value: string }
  /** Resolve (no error) or reject the report whose token is `token` (no-op for internal reports). */
  | { type: "settle"; token: string; error?: ShadowOtaError }
  | { type: "desired"; change: DesiredChange }
  /** A direct method for the application; reply with protocol.methodReply(rid, …). */
  | { type: "method"; name: string; rid: string; payload: Json }
  | { type: "error"; error: ShadowOtaError }
  | { type: "log"; level: LogLevel; event: string; fields?: Record<string, unknown> };

export interface StepContext {
  protocol: CloudProtocol;
  firmwareVersionPath: readonly string[];
  requestTimeoutMs: number;
  conditionalReports: boolean;
  firmwareMethod: string;
  /** computeDelta depth limit: 8 (AWS), 10 (Azure). */
  maxStateDepth: number;
  /** Retries of throttled (429) reports. */
  throttleRetry: BackoffPolicy;
}

/** A ShadowOtaError as is; anything else is a programming error and is rethrown. */
function asSyncError(e: unknown): ShadowOtaError {
  if (e instanceof ShadowOtaError) return e;
  throw e;
}

/** A mutable working copy used inside `step` only. */
type Draft = { -readonly [K in keyof SyncState]: SyncState[K] } & { queue: QueuedReport[] };

/**
 * The state machine: the next state and the actions for one input. Pure: no ports, no clock, no
 * randomness; the same state and input always give the same result.
 */
export function step(state: SyncState, input: SyncInput, ctx: StepContext): { state: SyncState; actions: SyncAction[] } {
  const s: Draft = { ...state, queue: state.queue.slice() };
  const acts: SyncAction[] = [];
  const log = (level: LogLevel, event: string, fields?: Record<string, unknown>): void => {
    // Stryker disable next-line ConditionalExpression: a log action with `fields: undefined` is carried out exactly as one without (log.log(level, event, undefined)).
    acts.push(fields === undefined ? { type: "log", level, event } : { type: "log", level, event, fields });
  };
  const token = (prefix: "g" | "r"): string => `${prefix}${s.nextId++}`;

  const persistVersion = (): void => {
    acts.push({ type: "persist", key: SYNC_KV_KEYS.VERSION, value: String(s.version) });
  };
  const persistReported = (): void => {
    const value = JSON.stringify(s.reported);
    if (utf8Encode(value).length > KV_VALUE_MAX_BYTES) {
      acts.push({ type: "error", error: new ShadowOtaError(SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE,
        `reported state of ${value.length} characters does not fit the key-value store`, { detail: { max: KV_VALUE_MAX_BYTES } }) });
      return;
    }
    acts.push({ type: "persist", key: SYNC_KV_KEYS.REPORTED, value });
  };

  const sendGet = (): void => {
    const t = token("g");
    s.pendingGet = t;
    acts.push({ type: "publish", message: ctx.protocol.getRequest(t), token: t });
    acts.push({ type: "start-timer", token: t, ms: ctx.requestTimeoutMs });
  };

  const buildReport = (r: QueuedReport): OutgoingMessage =>
    ctx.protocol.reportRequest(r.patch, r.token, ctx.conditionalReports ? s.shadowVersion : undefined); // 0 (no shadow yet): sent without one

  /** Sends the next queued report when connected, synced and none is in flight. */
  const pump = (): void => {
    while (s.connected && s.synced && s.inFlight === undefined && !s.throttleWait && s.queue.length > 0) {
      const r = s.queue.shift()!;
      let message: OutgoingMessage;
      try {
        message = buildReport(r);
      } catch (e) {
        acts.push({ type: "settle", token: r.token, error: asSyncError(e) });
        continue;
      }
      s.inFlight = r;
      acts.push({ type: "publish", message, token: r.token });
      acts.push({ type: "start-timer", token: r.token, ms: ctx.requestTimeoutMs });
    }
  };

  /** Records an error in the reported state (once per distinct error) and queues its report. */
  const reportError = (err: ShadowOtaError): void => {
    acts.push({ type: "error", error: err });
    const lastError: JsonObject = { code: err.code, message: err.message };
    if (jsonEqual(s.reported.lastError ?? null, lastError)) return;
    s.reported = applyPatch(s.reported, { lastError });
    persistReported();
    s.queue.push({ token: token("r"), patch: { lastError } });
  };

  /** Checks a desired firmware version; the version text or undefined (and the error reported). */
  const checkFirmware = (value: Json): string | undefined => {
    try {
      return parseSemver(value).raw;
    } catch (e) {
      const err = asSyncError(e); // parseSemver throws VERSION_INVALID only, with detail.reason
      const shown = typeof value === "string" ? JSON.stringify(value.slice(0, 40)) : typeof value;
      reportError(new ShadowOtaError(SYNC_CODES.SYNC_FIRMWARE_VERSION_INVALID,
        `desired firmware version ${shown} is not strict SemVer: ${err.message}`,
        { cause: err, detail: { reason: String(err.detail?.reason) } }));
      return undefined;
    }
  };

  /** Computes the delta against the device's truth and hands it to the application when there is one. */
  const actOnDesired = (): void => {
    let delta: JsonObject;
    try {
      delta = computeDelta(s.desired, applyPatch(s.cloudReported, s.reported), { maxDepth: ctx.maxStateDepth });
    } catch (e) {
      acts.push({ type: "error", error: asSyncError(e) });
      return;
    }
    let firmwareVersion: string | undefined;
    const fw = getPath(delta, ctx.firmwareVersionPath);
    if (fw !== undefined) {
      firmwareVersion = checkFirmware(fw);
      if (firmwareVersion === undefined) delta = applyPatch(delta, setPath({}, ctx.firmwareVersionPath, null));
    }
    if (isDeltaEmpty(delta)) { log("debug", "sync.desired.nothing-to-do", { version: s.version }); return; }
    // Only notifications can repeat a delta: a get response (and a direct method) resets lastDelta first.
    if (s.lastDelta !== undefined && jsonEqual(s.lastDelta, delta)) {
      log("debug", "sync.desired.unchanged", { version: s.version });
      return;
    }
    s.lastDelta = delta;
    const change: DesiredChange = { desired: jsonClone(s.desired), delta, changed: changedPaths(delta), version: s.version };
    if (firmwareVersion !== undefined) change.firmwareVersion = firmwareVersion;
    acts.push({ type: "desired", change });
  };

  /** A get response: the new baseline. `shadowVersion` 0 means "send reports without a version". */
  const onDocument = (desired: JsonObject, reported: JsonObject, version: number, shadowVersion: number): void => {
    s.synced = true;
    s.getThrottled = 0;
    acts.push({ type: "cancel-timer", token: RETRY_GET_TOKEN }); // a refused get's retry, when another get answered first
    s.desired = desired;
    s.cloudReported = reported;
    s.version = version;
    s.shadowVersion = shadowVersion;
    s.lastDelta = undefined;
    persistVersion();
    // Re-send what the cloud lacks or holds differently (the device's truth survives reboots in "rep").
    try {
      const resync = computeDelta(s.reported, s.cloudReported, { maxDepth: ctx.maxStateDepth });
      if (!isDeltaEmpty(resync)) {
        s.queue.unshift({ token: token("r"), patch: resync });
        log("info", "sync.resync", { paths: changedPaths(resync).length });
      }
    } catch (e) {
      acts.push({ type: "error", error: asSyncError(e) });
    }
    actOnDesired();
    pump();
  };

  /** Retries now, after the request timeout (false), or after the throttle backoff's wait ("backoff"). */
  const failGet = (err: ShadowOtaError, retryNow: boolean | "backoff"): void => {
    acts.push({ type: "cancel-timer", token: s.pendingGet! });
    s.pendingGet = undefined;
    acts.push({ type: "error", error: err });
    if (retryNow === true) sendGet();
    else if (retryNow === "backoff") acts.push({ type: "start-backoff", token: RETRY_GET_TOKEN, failures: s.getThrottled, policy: ctx.throttleRetry });
    else acts.push({ type: "start-timer", token: RETRY_GET_TOKEN, ms: ctx.requestTimeoutMs });
  };

  const finishReport = (err?: ShadowOtaError): void => {
    const r = s.inFlight!;
    s.inFlight = undefined;
    acts.push({ type: "cancel-timer", token: r.token });
    if (err === undefined) {
      s.cloudReported = applyPatch(s.cloudReported, r.patch);
      acts.push({ type: "settle", token: r.token });
    } else {
      acts.push({ type: "settle", token: r.token, error: err });
    }
  };

  switch (input.type) {
    case "connected": {
      s.connected = true;
      s.synced = false;
      s.notifiedBeforeGet = 0;
      acts.push({ type: "subscribe", topics: ctx.protocol.subscriptions() });
      sendGet();
      break;
    }
    case "disconnected": {
      s.connected = false;
      s.synced = false;
      if (s.pendingGet !== undefined) acts.push({ type: "cancel-timer", token: s.pendingGet });
      acts.push({ type: "cancel-timer", token: RETRY_GET_TOKEN });
      acts.push({ type: "cancel-timer", token: RETRY_REPORT_TOKEN });
      s.throttleWait = false;
      s.pendingGet = undefined;
      const dropped = s.inFlight === undefined ? s.queue : [s.inFlight, ...s.queue];
      if (s.inFlight !== undefined) acts.push({ type: "cancel-timer", token: s.inFlight.token });
      s.inFlight = undefined;
      s.queue = [];
      for (const r of dropped) {
        acts.push({ type: "settle", token: r.token, error: new ShadowOtaError(SYNC_CODES.SYNC_NOT_CONNECTED,
          "disconnected before the report was accepted; it stays persisted and is sent after the next connect") });
      }
      break;
    }
    case "report": {
      try {
        buildReport({ token: input.token, patch: input.patch }); // refuse what the cloud would refuse, before merging
      } catch (e) {
        acts.push({ type: "settle", token: input.token, error: asSyncError(e) });
        break;
      }
      s.reported = applyPatch(s.reported, input.patch);
      persistReported();
      if (!s.connected) {
        acts.push({ type: "settle", token: input.token, error: new ShadowOtaError(SYNC_CODES.SYNC_NOT_CONNECTED,
          "not connected; the report is persisted and sent after the next connect") });
        break;
      }
      s.queue.push({ token: input.token, patch: input.patch });
      pump();
      break;
    }
    case "timeout": {
      if (input.token === RETRY_GET_TOKEN) {
        if (s.connected && s.pendingGet === undefined) sendGet();
      } else if (input.token === RETRY_REPORT_TOKEN) {
        s.throttleWait = false;
        pump();
      } else if (input.token === s.pendingGet) {
        failGet(new ShadowOtaError(SYNC_CODES.SYNC_TIMEOUT, `no answer to get ${input.token} within ${ctx.requestTimeoutMs} ms`), true);
      } else if (input.token === s.inFlight?.token) {
        finishReport(new ShadowOtaError(SYNC_CODES.SYNC_TIMEOUT, `no answer to report ${input.token} within ${ctx.requestTimeoutMs} ms`));
        // Whether the cloud applied it is unknown: re-get, and the response re-sends whatever the cloud lacks
        // (as after a 409). Without this the patch stayed only in "rep" until the next reconnect. (A report is
        // in flight only while connected: `disconnected` settles it.)
        s.synced = false;
        if (s.pendingGet === undefined) sendGet();
      }
      break;
    }
    case "send-failed": {
      if (input.token === s.pendingGet) failGet(input.error, false);
      else if (input.token === s.inFlight?.token) { finishReport(input.error); pump(); }
      break;
    }
    case "message": {
      const ev = input.event;
      switch (ev.kind) {
        case "document": {
          if (ev.token === undefined || ev.token !== s.pendingGet) { log("debug", "sync.document.unrequested", { token: ev.token }); break; }
          acts.push({ type: "cancel-timer", token: ev.token });
          s.pendingGet = undefined;
          if (s.notifiedBeforeGet > ev.version) {
            // Older than a change already notified: this answer predates it. Ask again.
            log("info", "sync.document.older-than-notified", { version: ev.version, notified: s.notifiedBeforeGet });
            s.notifiedBeforeGet = 0;
            sendGet();
            break;
          }
          s.notifiedBeforeGet = 0;
          onDocument(ev.desired, ev.reported, ev.version, ev.version);
          break;
        }
        case "desired-delta": {
          if (!s.synced) {
            // Remembered: a get response produced before this change (it can arrive after the notification)
            // does not cover it, and is then asked for again (see "document").
            s.notifiedBeforeGet = Math.max(s.notifiedBeforeGet, ev.version);
            log("debug", "sync.desired.before-get", { version: ev.version });
            break;
          }
          if (ev.version <= s.version) {
            log("info", SYNC_CODES.SYNC_VERSION_STALE, { version: ev.version, lastSeen: s.version });
            break;
          }
          s.version = ev.version;
          s.shadowVersion = Math.max(s.shadowVersion, ev.version);
          persistVersion();
          if (ev.patch !== undefined) s.desired = applyPatch(s.desired, ev.patch);
          if (ev.delta !== undefined) s.desired = applyPatch(s.desired, ev.delta);
          actOnDesired();
          pump(); // a lastError report may be queued
          break;
        }
        case "report-accepted": {
          // AWS: the accepted shadow version (Azure: the reported $version, kept but unused: its reports carry none).
          if (ev.version !== undefined) s.shadowVersion = Math.max(s.shadowVersion, ev.version);
          if (ev.token !== undefined && ev.token === s.inFlight?.token) { finishReport(); pump(); }
          else if (ev.desired === true && ev.version !== undefined && ev.version > s.version && s.synced) {
            // AWS publishes update/accepted for every accepted update, the service API's included, but no
            // delta when desired went back to what the device reports (a rollout's revert): get the document.
            log("info", "sync.desired.changed-elsewhere", { version: ev.version });
            s.synced = false;
            // Stryker disable next-line ConditionalExpression: while synced no get is out (a document ends its get and cancels a refused get's retry).
            if (s.pendingGet === undefined) sendGet();
          } else log("debug", "sync.accepted.unrequested", { token: ev.token });
          break;
        }
        case "rejected": {
          if (ev.token !== undefined && ev.token === s.pendingGet) {
            if (ev.status === 404 && ctx.protocol.cloud === "aws") {
              // No shadow yet (docs/protocols.md §1.8, vector 1): an empty document; the resync report creates it.
              acts.push({ type: "cancel-timer", token: ev.token });
              s.pendingGet = undefined;
              // The version seen so far stays (AWS does not reset versions on delete); reports go without one.
              onDocument({}, {}, s.version, 0);
            } else {
              const err = new ShadowOtaError(ev.code, `get refused: ${ev.status} ${ev.message}`,
                { detail: { status: ev.status, serviceMessage: ev.message.slice(0, 200) } });
              if (ev.status === 429) {
                // Throttled: the get goes again after a full-jitter backoff wait that grows with each 429 in a
                // row (the throttle policy's steps, no attempt limit), not after the fixed request timeout.
                failGet(err, "backoff");
                s.getThrottled += 1;
                log("info", "sync.get.throttled", { attempts: s.getThrottled, status: ev.status });
              } else {
                failGet(err, false);
              }
            }
          } else if (ev.token !== undefined && ev.token === s.inFlight?.token && ev.status === 429 &&
              mayRetry((s.inFlight.throttled ?? 0) + 1, ctx.throttleRetry)) {
            // Throttled: the same report (same token) goes again, first in the queue, after a backoff wait.
            const r = s.inFlight;
            const failures = (r.throttled ?? 0) + 1;
            acts.push({ type: "cancel-timer", token: r.token });
            s.inFlight = undefined;
            s.queue.unshift({ token: r.token, patch: r.patch, throttled: failures });
            s.throttleWait = true;
            acts.push({ type: "start-backoff", token: RETRY_REPORT_TOKEN, failures: failures - 1, policy: ctx.throttleRetry });
            log("info", "sync.report.throttled", { token: r.token, attempts: failures, status: ev.status });
          } else if (ev.token !== undefined && ev.token === s.inFlight?.token) {
            const conflict = ev.code === SYNC_CODES.SYNC_VERSION_CONFLICT;
            const attempts = (s.inFlight.throttled ?? 0) + 1;
            const detail: Record<string, string | number> = { status: ev.status, serviceMessage: ev.message.slice(0, 200) };
            if (attempts > 1) detail.attempts = attempts;
            finishReport(new ShadowOtaError(ev.code, `report refused: ${ev.status} ${ev.message}`, { detail }));
            if (conflict) { // in flight, so connected
              s.synced = false; // reports wait for the fresh document
              if (s.pendingGet === undefined) sendGet();
            } else {
              pump();
            }
          } else {
            log("debug", "sync.rejected.unrequested", { token: ev.token, status: ev.status });
          }
          break;
        }
        case "method": {
          if (ev.name !== ctx.firmwareMethod) { acts.push({ type: "method", name: ev.name, rid: ev.rid, payload: ev.payload }); break; }
          let version: string | undefined;
          let err: ShadowOtaError | undefined;
          try {
            const requested = parseFirmwareUpdatePayload(ev.payload).version;
            version = checkFirmware(requested);
            // Stryker disable next-line ConditionalExpression: `err` is read only when `version` is undefined.
            if (version === undefined) err = new ShadowOtaError(SYNC_CODES.SYNC_FIRMWARE_VERSION_INVALID, "version is not strict SemVer");
          } catch (e) {
            err = asSyncError(e);
            acts.push({ type: "error", error: err });
          }
          const reply = version === undefined
            ? ctx.protocol.methodReply(ev.rid, 400, { code: err!.code, message: err!.message })
            : ctx.protocol.methodReply(ev.rid, 200, { accepted: true, version });
          if (reply !== undefined) acts.push({ type: "publish", message: reply });
          if (version !== undefined) {
            const delta = setPath({}, ctx.firmwareVersionPath, version);
            s.lastDelta = undefined;
            acts.push({ type: "desired", change: { desired: jsonClone(s.desired), delta, changed: changedPaths(delta), firmwareVersion: version, version: s.version } });
          }
          pump();
          break;
        }
        case "invalid":
          acts.push({ type: "error", error: ev.error });
          break;
        case "ignored":
          log("debug", "sync.ignored", { reason: ev.reason });
          break;
      }
      break;
    }
  }
  return { state: s, actions: acts };
}

// ---------------------------------------------------------------------------------------------------------
// The driver

/** What loadPersisted found of another identity (or of none): the stamp it carried and the keys present. */
export interface ForeignState { stored: string | null; keys: string[] }

/**
 * The persisted state of `identity` (syncIdentity), read leniently: anything unreadable counts as absent (and
 * is reported). State stamped with another identity, or not stamped, is not read: it comes back as `foreign`
 * (when any of it is present) for the caller to delete.
 */
export function loadPersisted(kv: KeyValueStore, identity: string): { reported: JsonObject; version: number; error?: ShadowOtaError; foreign?: ForeignState } {
  const stored = kv.get(SYNC_KV_KEYS.IDENTITY);
  if (stored !== identity) {
    const keys = [SYNC_KV_KEYS.REPORTED, SYNC_KV_KEYS.VERSION].filter((k) => kv.get(k) !== undefined);
    return { reported: {}, version: 0, foreign: { stored: stored ?? null, keys } };
  }
  let reported: JsonObject = {};
  let version = 0;
  let error: ShadowOtaError | undefined;
  const rep = kv.get(SYNC_KV_KEYS.REPORTED);
  if (rep !== undefined) {
    try {
      const v = parseJsonBounded(rep, { maxLength: KV_VALUE_MAX_BYTES, maxDepth: 16 });
      if (isJsonObject(v)) reported = v;
      else error = new ShadowOtaError(SYNC_CODES.SYNC_DOCUMENT_INVALID, "persisted reported state is not an object");
    } catch (e) {
      error = asSyncError(e);
    }
  }
  const ver = kv.get(SYNC_KV_KEYS.VERSION);
  if (ver !== undefined) {
    const n = /^[0-9]{1,15}$/.test(ver) ? Number(ver) : NaN;
    if (Number.isSafeInteger(n)) version = n;
    else error = new ShadowOtaError(SYNC_CODES.SYNC_DOCUMENT_INVALID, "persisted version is not a number");
  }
  // Stryker disable next-line ConditionalExpression: `error: undefined` reads as no error (the caller only reads `.error`).
  return error === undefined ? { reported, version } : { reported, version, error };
}

export class ShadowSync {
  readonly #ports: ShadowSyncPorts;
  readonly #handlers: ShadowSyncHandlers;
  readonly #ctx: StepContext;
  #state: SyncState;
  #bootError: ShadowOtaError | undefined;
  /** report() promises by token; internal reports have none. */
  readonly #waiters = new Map<string, { resolve: () => void; reject: (e: ShadowOtaError) => void }>();
  readonly #timers = new Map<string, unknown>();
  /** Publishes and subscribes are handed to the transport one after another, in the order step asked for
   *  them; a subscribe holds what follows until its SUBACK, a publish only until the transport has taken it. */
  #io: Promise<void> = Promise.resolve();
  #inputs: SyncInput[] = [];
  #dispatching = false;
  #closed = false;

  /** Throws SYNC_NAME_INVALID for a bad thing or shadow name (before touching any port). */
  constructor(ports: ShadowSyncPorts, config: ShadowSyncConfig, handlers: ShadowSyncHandlers) {
    const options: { thingName: string; shadowName?: string; maxPayloadBytes?: number; maxDepth?: number } = { thingName: config.thingName };
    // Stryker disable next-line ConditionalExpression: setting the member to undefined equals leaving it out (cloudProtocol reads undefined as "not given").
    if (config.shadowName !== undefined) options.shadowName = config.shadowName;
    // Stryker disable next-line ConditionalExpression: setting the member to undefined equals leaving it out (cloudProtocol reads undefined as "not given").
    if (config.maxPayloadBytes !== undefined) options.maxPayloadBytes = config.maxPayloadBytes;
    // Stryker disable next-line ConditionalExpression: setting the member to undefined equals leaving it out (cloudProtocol reads undefined as "not given").
    if (config.maxDepth !== undefined) options.maxDepth = config.maxDepth;
    this.#ctx = {
      protocol: cloudProtocol(config.cloud, options),
      firmwareVersionPath: config.firmwareVersionPath.slice(),
      requestTimeoutMs: config.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      conditionalReports: config.conditionalReports ?? true,
      firmwareMethod: config.firmwareMethod ?? FIRMWARE_METHOD_NAME,
      maxStateDepth: config.cloud === "aws" ? 8 : 10,
      throttleRetry: config.throttleRetry ?? DEFAULT_THROTTLE_RETRY,
    };
    this.#ports = ports;
    this.#handlers = handlers;
    const identity = syncIdentity(config);
    const persisted = loadPersisted(ports.kv, identity);
    this.#state = initialSyncState(persisted.reported, persisted.version);
    this.#bootError = persisted.foreign === undefined ? persisted.error : this.#claim(identity, persisted.foreign);
  }

  /** Deletes another identity's state, then stamps the store with ours (in that order: a power cut or a
   *  refused write between them leaves nothing of the other identity under our stamp, and the next boot tries
   *  again). A refusal is logged as a persist failure; a ShadowOtaError from the store is raised at start. */
  #claim(identity: string, foreign: ForeignState): ShadowOtaError | undefined {
    const { kv, log } = this.#ports;
    if (foreign.keys.length > 0) {
      log.log("warn", "sync.persisted.discarded", {
        reason: foreign.stored === null ? "persisted state carries no identity" : "persisted state belongs to another identity",
        stored: foreign.stored, identity, keys: foreign.keys,
      });
    }
    let key: string = SYNC_KV_KEYS.IDENTITY;
    try {
      for (const k of foreign.keys) { key = k; kv.delete(k); }
      key = SYNC_KV_KEYS.IDENTITY;
      kv.set(key, identity);
      return undefined;
    } catch (e) {
      log.log("error", "sync.persist-failed", { key, message: e instanceof Error ? e.message : String(e) });
      return e instanceof ShadowOtaError ? e : undefined;
    }
  }

  /** Installs the transport handlers and starts the session; `connected` then drives the sync. */
  start(): void {
    const mqtt = this.#ports.mqtt;
    mqtt.setHandlers({
      connected: () => this.#dispatch({ type: "connected" }),
      disconnected: (reason) => {
        this.#ports.log.log("info", "sync.disconnected", { reason: reason.message });
        this.#dispatch({ type: "disconnected" });
      },
      message: (topic, payload) => this.#dispatch({ type: "message", event: this.#ctx.protocol.classify(topic, payload) }),
    });
    if (this.#bootError !== undefined) {
      const e = this.#bootError;
      this.#bootError = undefined;
      this.#raise(e);
    }
    mqtt.start();
  }

  /**
   * Merges `patch` into the reported state (persisted at once) and sends it. Resolves when the cloud
   * accepted it; rejects with a ShadowOtaError: the builder's codes (nothing merged), SYNC_VERSION_CONFLICT,
   * SYNC_REJECTED, SYNC_TIMEOUT, SYNC_NOT_CONNECTED (merged and persisted; sent after the next connect).
   */
  report(patch: JsonObject): Promise<void> {
    const [token, next] = allocateToken(this.#state, "r");
    this.#state = next;
    return new Promise<void>((resolve, reject) => {
      this.#waiters.set(token, { resolve, reject });
      this.#dispatch({ type: "report", token, patch: jsonClone(patch) });
    });
  }

  getState(): { desired: JsonObject; reported: JsonObject; version: number; connected: boolean } {
    const s = this.#state;
    return { desired: jsonClone(s.desired), reported: jsonClone(s.reported), version: s.version, connected: s.connected };
  }

  /** True while connected and a get response has arrived since the connect. */
  get synced(): boolean {
    return this.#state.connected && this.#state.synced;
  }

  /** Stops the timers and closes the transport; pending reports reject with SYNC_NOT_CONNECTED. Safe twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#dispatch({ type: "disconnected" });
    this.#closed = true;
    for (const h of this.#timers.values()) this.#ports.clock.cancel(h);
    this.#timers.clear();
    await this.#ports.mqtt.close();
  }

  #dispatch(input: SyncInput): void {
    if (this.#closed) return;
    this.#inputs.push(input);
    if (this.#dispatching) return; // a handler called back into us: run after the current step
    this.#dispatching = true;
    try {
      while (this.#inputs.length > 0) {
        const wasSynced = this.#state.synced;
        const desiredBefore = this.#state.desired;
        const { state, actions } = step(this.#state, this.#inputs.shift()!, this.#ctx);
        this.#state = state;
        for (const a of actions) this.#execute(a);
        const handlers = this.#handlers;
        if (handlers.onDesiredDocument !== undefined && !jsonEqual(state.desired, desiredBefore)) { // same object: true at once
          this.#callHandler("onDesiredDocument", () => handlers.onDesiredDocument!(jsonClone(state.desired)));
        }
        if (!wasSynced && state.synced && handlers.onSynced !== undefined) this.#callHandler("onSynced", () => handlers.onSynced!());
      }
    } finally {
      this.#dispatching = false;
    }
  }

  #execute(a: SyncAction): void {
    const { mqtt, kv, clock, log } = this.#ports;
    switch (a.type) {
      case "subscribe":
        this.#io = this.#io.then(() => mqtt.subscribe(a.topics)).then(
          () => log.log("debug", "sync.subscribed", { topics: a.topics.length }),
          (e: unknown) => this.#raise(this.#transportError(e, "subscribe failed")));
        break;
      case "publish":
        // Not chained on the PUBACK: a QoS 1 PUBLISH lost on the way out is never acknowledged in that session
        // (neither mqtt.js nor the ECMA-419 client resends it), and waiting for it held every later publish —
        // the re-get after the report's timeout included — so the cloud kept the stale reported state.
        this.#io = this.#io.then(() => {
          mqtt.publish(a.message.topic, a.message.payload, 1).then(
            () => undefined,
            (e: unknown) => {
              const err = this.#transportError(e, "publish failed");
              if (a.token !== undefined) this.#dispatch({ type: "send-failed", token: a.token, error: err });
              else this.#raise(err);
            });
        });
        break;
      case "start-timer": {
        this.#execute({ type: "cancel-timer", token: a.token }); // a timer of that token still running is replaced
        this.#timers.set(a.token, clock.setTimer(a.ms, () => {
          this.#timers.delete(a.token);
          this.#dispatch({ type: "timeout", token: a.token });
        }));
        break;
      }
      case "start-backoff":
        this.#execute({ type: "start-timer", token: a.token, ms: backoffDelay(a.failures, a.policy, this.#ports.random ?? Math.random) });
        break;
      case "cancel-timer": {
        const h = this.#timers.get(a.token);
        // Stryker disable next-line ConditionalExpression: cancelling and deleting an absent timer are no-ops.
        if (h !== undefined) { clock.cancel(h); this.#timers.delete(a.token); }
        break;
      }
      case "persist":
        try {
          kv.set(a.key, a.value);
        } catch (e) {
          log.log("error", "sync.persist-failed", { key: a.key, message: e instanceof Error ? e.message : String(e) });
          if (e instanceof ShadowOtaError) this.#raise(e);
        }
        break;
      case "settle": {
        const w = this.#waiters.get(a.token);
        this.#waiters.delete(a.token);
        if (w === undefined) {
          if (a.error !== undefined) this.#raise(a.error); // an internal report (resync, lastError) failed
        } else if (a.error === undefined) w.resolve();
        else w.reject(a.error);
        break;
      }
      case "desired":
        log.log("info", "sync.desired", { version: a.change.version, changed: a.change.changed.length, firmwareVersion: a.change.firmwareVersion ?? null });
        this.#callHandler("onDesired", () => this.#handlers.onDesired(a.change));
        break;
      case "method":
        this.#runMethod(a.name, a.rid, a.payload);
        break;
      case "error":
        this.#raise(a.error);
        break;
      case "log":
        log.log(a.level, a.event, a.fields);
        break;
    }
  }

  #runMethod(name: string, rid: string, payload: Json): void {
    const reply = (status: number, body: Json): void => {
      const msg = this.#ctx.protocol.methodReply(rid, status, body);
      if (msg !== undefined) this.#execute({ type: "publish", message: msg });
    };
    const handlers = this.#handlers;
    if (handlers.onMethod === undefined) { reply(404, { message: `method ${name} is not implemented` }); return; }
    let result: MethodResult | Promise<MethodResult>;
    try {
      result = handlers.onMethod({ name, payload }); // called as a method: handlers may be a class instance
    } catch (e) {
      this.#ports.log.log("error", "sync.method-threw", { name, message: e instanceof Error ? e.message : String(e) });
      reply(500, { message: `method ${name} failed` });
      return;
    }
    Promise.resolve(result).then(
      (r) => reply(r.status, r.payload ?? null),
      (e: unknown) => {
        this.#ports.log.log("error", "sync.method-threw", { name, message: e instanceof Error ? e.message : String(e) });
        reply(500, { message: `method ${name} failed` });
      });
  }

  #transportError(e: unknown, what: string): ShadowOtaError {
    return e instanceof ShadowOtaError ? e : new ShadowOtaError(SYNC_CODES.SYNC_TRANSPORT, what, { cause: e });
  }

  #raise(err: ShadowOtaError): void {
    this.#ports.log.log("warn", err.code, { message: err.message });
    const handlers = this.#handlers;
    if (handlers.onError !== undefined) this.#callHandler("onError", () => handlers.onError!(err)); // as a method
  }

  /** Application handlers must not break the sync: a throw is logged and the sync goes on. */
  #callHandler(name: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.#ports.log.log("error", "sync.handler-threw", { handler: name, message: e instanceof Error ? e.message : String(e) });
    }
  }
}
