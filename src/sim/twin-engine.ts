/**
 * The Azure IoT Hub device twin and direct methods, service side, as pure functions over plain data for
 * the local cloud: given the stored twins, a device id, the topic a device published on and the payload,
 * return the new stored state and what to publish (GET → res/200 with the twin, reported PATCH → res/204
 * with the new reported `$version`, anything malformed → res/400), plus the admin operations (read a twin,
 * patch desired → desired notification, build a direct-method request) — per
 * docs/protocols.md §3 ("Azure IoT Hub device twin over MQTT").
 *
 * Topic scoping: Azure device topics carry no device id (IoT Hub scopes them per connection). The local
 * cloud sees them either raw on a dedicated broker per device, or on a shared broker that rewrites them
 * to `devices/{deviceId}/$iothub/…` in both directions; scopeDeviceTopic/splitDeviceTopic are the one
 * definition of that prefix, shared with the broker that does the rewriting. This engine always works
 * with raw device topics; twin-service.ts adds or strips the prefix.
 *
 * What it is not: no MQTT, no files, no timers, no pending-method bookkeeping (twin-service.ts). Parsing,
 * building and the twin limits are src/core/azure-twin.ts, the device topics src/core/azure-topics.ts; the merge is src/core/config-diff.ts.
 *
 * Choices (Azure documents no more than this): a twin that was never written reads as empty desired and
 * reported, both at `$version` 1, and each accepted patch adds 1; every refusal of a device request is
 * status 400 with body `{"message":"<SYNC code>: <reason>"}`; `$metadata` is not kept; properties emptied
 * by null-deletes are dropped, as config-diff's applyPatch does.
 */
import {
  AZURE_TOPIC_STATUS,
  checkTwinSection,
  decodeAzurePayload,
  type TwinDocument,
} from "../core/azure-twin";
import { matchTwinRequestTopic } from "../core/azure-topics";
import {
  buildDesiredNotification,
  buildTwinGetBody,
  desiredPatchTopic,
  methodRequestTopic,
  parseReportedPatchBody,
  twinResponseTopic,
} from "./azure-twin-cloud";
import type { OutgoingMessage } from "../core/cloud-protocol";
import { applyPatch } from "../core/config-diff";
import { ShadowOtaError } from "../core/errors";
import { isJsonObject, type Json, type JsonObject } from "../core/json";
import { SYNC_CODES } from "../core/sync-errors";
import { CLOUD_CODES } from "./cloud-errors";
import { AZURE_DEVICE_TOPIC_PREFIX, AZURE_TOPIC_ROOT } from "./broker-policy";

// ---------------------------------------------------------------------------------------------------------
// Data

/** One device twin as stored (plain JSON for cloud-store.ts). Sections hold no `$` keys. */
export interface StoredTwin {
  desired: JsonObject;
  desiredVersion: number;
  reported: JsonObject;
  reportedVersion: number;
}

/** All twins, by device id. */
export type TwinTable = Record<string, StoredTwin>;

export interface TwinEngineState {
  twins: TwinTable;
}

/** `$version` of both sections of a twin that was never written. */
export const INITIAL_TWIN_VERSION = 1;

export function emptyTwinState(twins: TwinTable = {}): TwinEngineState {
  return { twins };
}

// ---------------------------------------------------------------------------------------------------------
// Device ids and topic scoping

/** Longest device id IoT Hub accepts. */
export const DEVICE_ID_MAX = 128;

/** IoT Hub's device-id characters (letters, digits, `- . % _ * ? ! ( ) , : = @ $ '`) without `+` and `#`,
 *  which Azure allows but an MQTT topic name cannot hold; `/` is excluded by Azure too. */
const DEVICE_ID_RE = /^[A-Za-z0-9\-.%_*?!(),:=@$']+$/;

/** True when `id` is 1..128 of the device-id characters above. */
export function isDeviceId(id: unknown): id is string {
  return typeof id === "string" && id.length > 0 && id.length <= DEVICE_ID_MAX && DEVICE_ID_RE.test(id);
}

/** Returns the id or throws CLOUD_DEVICE_ID_INVALID. */
export function validateDeviceId(id: unknown): string {
  if (!isDeviceId(id)) {
    throw new ShadowOtaError(CLOUD_CODES.CLOUD_DEVICE_ID_INVALID,
      `device id must be 1..${DEVICE_ID_MAX} characters of [A-Za-z0-9-.%_*?!(),:=@$']`,
      { detail: { length: typeof id === "string" ? id.length : null } });
  }
  return id;
}

/** The first level of a device's topics on a shared broker: `devices/{deviceId}/$iothub/…`. */
// One definition of the scoping, shared with the aedes broker that applies it (broker-policy.ts).
export { AZURE_DEVICE_TOPIC_PREFIX };
const IOTHUB_PREFIX = AZURE_TOPIC_ROOT;

/** `devices/{deviceId}/{deviceTopic}`; `deviceTopic` must start with `$iothub/`. Throws CLOUD_DEVICE_ID_INVALID,
 *  or SYNC_TOPIC_INVALID for a topic outside `$iothub/`. */
export function scopeDeviceTopic(deviceId: string, deviceTopic: string): string {
  validateDeviceId(deviceId);
  if (typeof deviceTopic !== "string" || !deviceTopic.startsWith(IOTHUB_PREFIX)) {
    throw new ShadowOtaError(SYNC_CODES.SYNC_TOPIC_INVALID, "only $iothub/… topics are scoped to a device",
      { detail: { status: AZURE_TOPIC_STATUS.NOT_TWIN_TOPIC } });
  }
  return `${AZURE_DEVICE_TOPIC_PREFIX}${deviceId}/${deviceTopic}`;
}

/**
 * `devices/{deviceId}/$iothub/…` → {deviceId, deviceTopic: "$iothub/…"}; undefined for anything else
 * (another prefix, an empty or invalid id, a rest that is not under `$iothub/`).
 */
export function splitDeviceTopic(topic: string): { deviceId: string; deviceTopic: string } | undefined {
  if (typeof topic !== "string" || !topic.startsWith(AZURE_DEVICE_TOPIC_PREFIX)) return undefined;
  const start = AZURE_DEVICE_TOPIC_PREFIX.length;
  const end = topic.indexOf("/", start);
  if (end < 0) return undefined;
  const deviceId = topic.slice(start, end);
  const deviceTopic = topic.slice(end + 1);
  if (!isDeviceId(deviceId) || !deviceTopic.startsWith(IOTHUB_PREFIX)) return undefined;
  return { deviceId, deviceTopic };
}

/** What the service subscribes to on a device's dedicated broker (raw device topics). Precise filters, so
 *  the service never receives its own responses back. */
export const TWIN_LINK_SUBSCRIPTIONS: readonly string[] = [
  "$iothub/twin/GET/#",
  "$iothub/twin/PATCH/properties/reported/#",
  "$iothub/methods/res/#",
];

/** What the service subscribes to on a shared broker that prefixes device topics with `devices/{id}/`. */
export const TWIN_SHARED_SUBSCRIPTIONS: readonly string[] = TWIN_LINK_SUBSCRIPTIONS.map((t) => `${AZURE_DEVICE_TOPIC_PREFIX}+/${t}`);

// ---------------------------------------------------------------------------------------------------------
// Topics devices publish

// The grammar and the matcher of the topics devices publish live in the core (src/core/azure-topics.ts),
// shared with anything else that reads them; re-exported here for the engine's callers.
export { matchTwinRequestTopic, type TwinRequestMismatch, type TwinRequestTopic } from "../core/azure-topics";

// ---------------------------------------------------------------------------------------------------------
// Device requests

export interface MethodResponse {
  rid: string;
  status: number;
  /** The reply's JSON payload; `null` for an empty payload or when `error` is set. */
  payload: Json;
  /** Why the payload could not be read (SYNC_JSON_INVALID, SYNC_ENCODING_INVALID, …). */
  error?: ShadowOtaError;
}

export interface TwinOutcome {
  state: TwinEngineState;
  /** The stored twins changed: persist `state.twins` before publishing. */
  changed: boolean;
  /** What to publish to the device, on raw device topics (the service scopes them). */
  messages: OutgoingMessage[];
  /** The status answered (200, 204, 400), when the request was answered. */
  status?: number;
  /** The request id answered (with `status`). */
  rid?: string;
  /** A device's reply to a direct method, for the service to hand to the waiting caller. */
  methodResponse?: MethodResponse;
  /** Why nothing was answered (no readable `$rid`), for the log. */
  ignored?: string;
}

/** The twin of a device; a never-written twin reads as empty with both `$version`s at 1. Not a copy. */
export function readTwin(state: TwinEngineState, deviceId: string): TwinDocument {
  const t = Object.prototype.hasOwnProperty.call(state.twins, deviceId) ? state.twins[deviceId] : undefined;
  if (t === undefined) return { desired: {}, desiredVersion: INITIAL_TWIN_VERSION, reported: {}, reportedVersion: INITIAL_TWIN_VERSION };
  return { desired: t.desired, desiredVersion: t.desiredVersion, reported: t.reported, reportedVersion: t.reportedVersion };
}

function withTwin(state: TwinEngineState, deviceId: string, twin: StoredTwin): TwinEngineState {
  const twins = { ...state.twins };
  Object.defineProperty(twins, deviceId, { value: twin, writable: true, enumerable: true, configurable: true });
  return { twins };
}

function errorBody(e: unknown): string {
  const text = e instanceof ShadowOtaError ? `${e.code}: ${e.message}` : "internal error";
  return JSON.stringify({ message: text });
}

/**
 * Serves one message a device published (raw device topic). Never throws for anything in the topic or
 * payload: malformed requests are answered with 400 (or ignored when there is no `$rid` to answer to).
 * Throws CLOUD_DEVICE_ID_INVALID for a bad `deviceId` (the caller's mistake).
 */
export function handleTwinRequest(state: TwinEngineState, deviceId: string, topic: string, payload: Uint8Array): TwinOutcome {
  validateDeviceId(deviceId);
  const m = matchTwinRequestTopic(topic);
  if (!m.ok) {
    if (m.rid === undefined) return { state, changed: false, messages: [], ignored: `${m.status} on ${topic.slice(0, 128)}` };
    const body = errorBody(new ShadowOtaError(SYNC_CODES.SYNC_TOPIC_INVALID, "the service does not serve this topic", { detail: { status: m.status } }));
    return { state, changed: false, status: 400, rid: m.rid, messages: [{ topic: twinResponseTopic(400, m.rid), payload: body }] };
  }
  if (m.kind === "method-response") {
    try {
      const v = decodeAzurePayload(payload);
      return { state, changed: false, messages: [], methodResponse: { rid: m.rid, status: m.status, payload: v === undefined ? null : v } };
    } catch (e) {
      const error = e instanceof ShadowOtaError ? e : new ShadowOtaError(SYNC_CODES.SYNC_JSON_INVALID, "unreadable method reply", { cause: e });
      return { state, changed: false, messages: [], methodResponse: { rid: m.rid, status: m.status, payload: null, error } };
    }
  }
  if (m.kind === "get") {
    return { state, changed: false, status: 200, rid: m.rid, messages: [{ topic: twinResponseTopic(200, m.rid), payload: buildTwinGetBody(readTwin(state, deviceId)) }] };
  }
  try {
    const patch = parseReportedPatchBody(payload);
    const twin = readTwin(state, deviceId);
    const reported = applyPatch(twin.reported, patch);
    checkTwinSection(reported, "reported");
    const next: StoredTwin = { desired: twin.desired, desiredVersion: twin.desiredVersion, reported, reportedVersion: twin.reportedVersion + 1 };
    return {
      state: withTwin(state, deviceId, next), changed: true, status: 204, rid: m.rid,
      messages: [{ topic: twinResponseTopic(204, m.rid, next.reportedVersion), payload: "" }],
    };
  } catch (e) {
    return { state, changed: false, status: 400, rid: m.rid, messages: [{ topic: twinResponseTopic(400, m.rid), payload: errorBody(e) }] };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Admin operations

function rejected(e: unknown): ShadowOtaError {
  const message = e instanceof Error ? e.message : String(e);
  return new ShadowOtaError(CLOUD_CODES.CLOUD_REQUEST_REJECTED, `desired patch refused: ${message}`,
    { cause: e, detail: { status: 400, serviceMessage: message } });
}

/**
 * Merges a desired patch (`null` deletes) into the twin: desired `$version` + 1, and the notification
 * `$iothub/twin/PATCH/properties/desired/?$version=N` whose body is the patch plus `$version`.
 * Errors: CLOUD_DEVICE_ID_INVALID; CLOUD_REQUEST_REJECTED (status 400, `cause` the SYNC_* error) when the
 * patch or the merged section breaks the twin limits (keys, 4 KB strings, depth 10, 32 KB).
 */
export function applyDesiredPatch(state: TwinEngineState, deviceId: string, patch: JsonObject): { state: TwinEngineState; version: number; messages: OutgoingMessage[] } {
  validateDeviceId(deviceId);
  try {
    if (!isJsonObject(patch)) throw new ShadowOtaError(SYNC_CODES.SYNC_DOCUMENT_INVALID, "desired patch must be an object", { detail: { field: "desired" } });
    checkTwinSection(patch, "desired");
    const twin = readTwin(state, deviceId);
    const desired = applyPatch(twin.desired, patch);
    checkTwinSection(desired, "desired");
    const version = twin.desiredVersion + 1;
    const next: StoredTwin = { desired, desiredVersion: version, reported: twin.reported, reportedVersion: twin.reportedVersion };
    return { state: withTwin(state, deviceId, next), version, messages: [{ topic: desiredPatchTopic(version), payload: buildDesiredNotification(patch, version) }] };
  } catch (e) {
    throw rejected(e);
  }
}

/** A direct-method request: `$iothub/methods/POST/{name}/?$rid={rid}` with the JSON payload (`null` when none).
 *  Throws SYNC_NAME_INVALID for a bad method name or rid. */
export function methodRequestMessage(name: string, rid: string, payload: Json = null): OutgoingMessage {
  return { topic: methodRequestTopic(name, rid), payload: JSON.stringify(payload) };
}

/** The answer Azure's service API gives when the device does not reply in time (HTTP 504, gateway timeout). */
export function methodTimeoutResult(timeoutMs: number): { status: number; payload: JsonObject } {
  return { status: 504, payload: { message: `Timed out waiting for the response from device (${timeoutMs} ms)` } };
}

// ---------------------------------------------------------------------------------------------------------
// Loading (for cloud-store.ts)

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Checks that `value` has the shape of a TwinTable; returns it, or a string saying where it is wrong. */
export function checkTwinTable(value: unknown): TwinTable | string {
  if (!isJsonObject(value)) return "azure.twins is not an object";
  for (const id of Object.keys(value)) {
    const t = value[id];
    if (!isDeviceId(id)) return `azure.twins has a bad device id ${JSON.stringify(String(id).slice(0, 200))}`;
    if (!isJsonObject(t) || !isJsonObject(t.desired) || !isJsonObject(t.reported) ||
        !isCount(t.desiredVersion) || !isCount(t.reportedVersion)) {
      return `azure.twins[${JSON.stringify(id)}] is not a stored twin`;
    }
  }
  return value as unknown as TwinTable;
}
