/**
 * The AWS IoT Device Shadow service's rules as pure functions over plain data, for the local cloud: given
 * the stored shadows, one request (thing, optional shadow name, get/update/delete, the payload bytes and
 * the time) it returns the new stored state and the messages the service publishes — accepted, rejected,
 * delta and documents — exactly as docs/protocols.md §1 ("AWS IoT Device Shadow")
 * describes them, with AWS's error messages. It also gives the cloud side's admin operations (read a
 * shadow, update desired, delete) through the same function, so they publish the same messages.
 *
 * What it is not: no MQTT, no files, no clock, no timers (shadow-service.ts does the I/O; cloud-store.ts
 * persists `ShadowEngineState.shadows`). Topic grammar, request parsing and validation are
 * src/core/aws-shadow.ts; merge and delta are src/core/config-diff.ts — this file only decides.
 *
 * Choices where AWS's sources are vague (each one is pinned by a test vector in
 * test/vectors/shadow-service.json):
 * - Error documents carry `timestamp` except 404, as vectors 1 and 4 of docs/protocols.md §1.8 show; `clientToken` is
 *   echoed whenever the payload holds a valid one, even when the request is rejected.
 * - A 404 names the classic shadow by its thing name and a named shadow by its shadow name.
 * - `update/documents.previous` is `null` when the shadow did not exist before the update (Greengrass does this).
 * - The delta, documents and accepted messages are published in that order: accepted, delta, documents.
 * - A section that an update leaves empty (`{"desired":{"a":null}}` deleting the last key) is dropped.
 * - The 8 KB limit applies to the request's state and to the merged desired + reported (like Greengrass).
 * - The rate limit counts every request (get, update, delete) per shadow in whole-second windows of the
 *   injected time; 429 "Too Many Requests". AWS's other 429 (10 requests in flight per connection)
 *   cannot happen here: requests are answered one at a time.
 * - Metadata mirrors the state: every scalar (and every `null` in an accepted update) becomes
 *   `{"timestamp":T}`, an array becomes an array with one entry per element, an object an object.
 */
import {
  AWS_SHADOW_LIMITS,
  decodePayload,
  matchTopic,
  shadowTopic,
  validateClientToken,
  validateShadowName,
  validateThingName,
  type ShadowMessageType,
  type ShadowOperation,
} from "../core/aws-shadow";
import { parseGetRequest, parseUpdateRequest, type UpdateRequest } from "./aws-shadow-cloud";
import type { OutgoingMessage } from "../core/cloud-protocol";
import { applyPatch, computeDelta, isDeltaEmpty } from "../core/config-diff";
import { ShadowOtaError } from "../core/errors";
import { isJsonObject, type Json, type JsonObject } from "../core/json";
import { SYNC_CODES } from "../core/sync-errors";
import { utf8Encode } from "../core/utf8";

// ---------------------------------------------------------------------------------------------------------
// Data

/** One shadow as stored. Plain JSON, so cloud-store.ts writes it as it is. */
export interface StoredShadow {
  /** False after a delete: the document is gone (get answers 404) but `version` is kept, because a delete
   *  does not reset the version (the next update gets version + 1). */
  exists: boolean;
  /** 0 before the first update; +1 per accepted update. */
  version: number;
  state: { desired?: JsonObject; reported?: JsonObject };
  /** Mirrors `state` leaf by leaf with `{"timestamp": T}` (arrays: one entry per element). */
  metadata: { desired?: JsonObject; reported?: JsonObject };
}

/** All shadows, by shadowKey(thing, shadow). */
export type ShadowTable = Record<string, StoredShadow>;

/** Requests counted in the current whole second (not persisted: a restart starts a new window). */
export interface RateWindow {
  second: number;
  counts: Record<string, number>;
}

export interface ShadowEngineState {
  shadows: ShadowTable;
  rate: RateWindow;
}

export interface ShadowEngineOptions {
  /** Deepest nesting of desired and of reported (jsonDepth). Default 6, the number in AWS's error message. */
  maxStateDepth?: number;
  /** desired + reported, in bytes of JSON text, for the request and for the merged shadow. Default 8 KB. */
  maxStateBytes?: number;
  /** Largest request payload. Default 128 KB (AWS IoT Core's largest publish). */
  maxPayloadBytes?: number;
  /** Requests per second per shadow before 429; 0 turns the limit off. Default 20. */
  rateLimitPerSecond?: number;
}

export const DEFAULT_SHADOW_ENGINE_OPTIONS = {
  maxStateDepth: AWS_SHADOW_LIMITS.STATE_MAX_DEPTH,
  maxStateBytes: AWS_SHADOW_LIMITS.STATE_MAX_BYTES,
  maxPayloadBytes: AWS_SHADOW_LIMITS.PUBLISH_MAX_BYTES,
  rateLimitPerSecond: 20,
} as const;

/** The messages of AWS's error documents ("Device Shadow error messages"). */
export const SHADOW_ERROR_MESSAGES = {
  INVALID_JSON: "Invalid JSON",
  MISSING_STATE: "Missing required node: state",
  STATE_NOT_OBJECT: "State node must be an object",
  DESIRED_NOT_OBJECT: "Desired node must be an object",
  REPORTED_NOT_OBJECT: "Reported node must be an object",
  INVALID_VERSION: "Invalid version",
  INVALID_CLIENT_TOKEN: "Invalid clientToken",
  INVALID_STATE_NODE: "State contains an invalid node",
  VERSION_CONFLICT: "Version conflict",
  PAYLOAD_TOO_LARGE: "The payload exceeds the maximum size allowed",
  UNSUPPORTED_ENCODING: "Unsupported documented encoding; supported encoding is UTF-8",
  TOO_MANY_REQUESTS: "Too Many Requests",
  INTERNAL_FAILURE: "Internal service failure",
} as const;

/** "JSON contains too many levels of nesting; maximum is 6" (with the configured maximum). */
export function tooDeepMessage(maxDepth: number): string {
  return `JSON contains too many levels of nesting; maximum is ${maxDepth}`;
}

/** "No shadow exists with name: 'esp32-01'" — the thing name for the classic shadow, else the shadow name. */
export function notFoundMessage(thingName: string, shadowName?: string): string {
  return `No shadow exists with name: '${shadowName ?? thingName}'`;
}

/** The table key: the thing name for the classic shadow, `thing~shadow` for a named one (`~` is not a name
 *  character, so keys cannot collide). Throws SYNC_NAME_INVALID. */
export function shadowKey(thingName: string, shadowName?: string): string {
  validateThingName(thingName);
  return shadowName === undefined ? thingName : `${thingName}~${validateShadowName(shadowName)}`;
}

export function emptyShadowState(shadows: ShadowTable = {}): ShadowEngineState {
  return { shadows, rate: { second: -1, counts: {} } };
}

/** Topics the service subscribes to: get, update and delete of classic and named shadows of every thing.
 *  Written out with `$aws/…` first because `+`/`#` at the start of a filter never match `$` topics. */
export const SHADOW_SERVICE_SUBSCRIPTIONS: readonly string[] = [
  "$aws/things/+/shadow/get",
  "$aws/things/+/shadow/update",
  "$aws/things/+/shadow/delete",
  "$aws/things/+/shadow/name/+/get",
  "$aws/things/+/shadow/name/+/update",
  "$aws/things/+/shadow/name/+/delete",
];

// ---------------------------------------------------------------------------------------------------------
// Requests and outcomes

export interface ShadowRequest {
  thingName: string;
  /** Absent for the classic shadow. */
  shadowName?: string;
  operation: ShadowOperation;
  payload: Uint8Array;
  /** Epoch seconds (may be fractional); timestamps are its floor. */
  now: number;
  /** "device": a request received over MQTT (rejections are published on …/rejected). "admin": the cloud
   *  side's API, like AWS's HTTP API, which publishes no MQTT error message (accepted ones are published).
   *  Default "device". */
  origin?: "device" | "admin";
}

export interface ShadowOutcome {
  /** The new state (a new object: the rate window changes with every request). */
  state: ShadowEngineState;
  /** The stored shadows changed: persist `state.shadows` before publishing `messages`. */
  changed: boolean;
  accepted: boolean;
  /** 200 when accepted, else the error document's code. */
  status: number;
  /** The accepted document (get/accepted, update/accepted, delete/accepted) or the error document. */
  response: JsonObject;
  /** What to publish, in order. */
  messages: OutgoingMessage[];
}

/**
 * A request received on `topic`, or undefined when the topic is not a shadow request topic
 * (responses such as …/update/accepted and anything outside `$aws/things/…/shadow` are not requests).
 */
export function shadowRequestFromTopic(topic: string, payload: Uint8Array, now: number): ShadowRequest | undefined {
  const m = matchTopic(topic, { requests: true });
  if (!m.ok || m.suffix !== undefined) return undefined;
  const req: ShadowRequest = { thingName: m.thingName, operation: m.operation, payload, now };
  if (m.shadowName !== undefined) req.shadowName = m.shadowName;
  return req;
}

/** Sets an own data property (`o[k] = v` with k === "__proto__" would change the prototype instead). */
function put(o: JsonObject, key: string, value: Json): void {
  Object.defineProperty(o, key, { value, writable: true, enumerable: true, configurable: true });
}

function has(o: JsonObject, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, key);
}

/** An object built in the given key order, skipping undefined members. */
function doc(entries: Array<[string, Json | undefined]>): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of entries) if (v !== undefined) put(out, k, v);
  return out;
}

/** The metadata of a value: scalars and nulls → {"timestamp":T}; arrays → one entry per element. */
export function metadataOf(value: Json, timestamp: number): Json {
  if (Array.isArray(value)) return value.map((e) => metadataOf(e, timestamp));
  if (isJsonObject(value)) {
    const out: JsonObject = {};
    for (const k of Object.keys(value)) put(out, k, metadataOf(value[k]!, timestamp));
    return out;
  }
  return { timestamp };
}

/**
 * The stored metadata of a section after a merge: keys the patch did not name keep their old metadata;
 * named keys get `timestamp`, object into object recursing (so untouched siblings keep theirs). Walks the
 * merged value, so deleted keys and emptied objects drop out of the metadata with them.
 */
function mergeMetadata(merged: JsonObject, old: JsonObject | undefined, oldMeta: JsonObject | undefined, patch: JsonObject, timestamp: number): JsonObject {
  const out: JsonObject = {};
  for (const k of Object.keys(merged)) {
    const v = merged[k]!;
    if (!has(patch, k)) {
      put(out, k, oldMeta !== undefined && has(oldMeta, k) ? oldMeta[k]! : metadataOf(v, timestamp));
      continue;
    }
    const p = patch[k]!;
    if (isJsonObject(p) && isJsonObject(v)) {
      const ov = old !== undefined && has(old, k) ? old[k] : undefined;
      const om = oldMeta !== undefined && has(oldMeta, k) ? oldMeta[k] : undefined;
      // Old metadata only describes an old object; a scalar's {"timestamp"} must not be merged into.
      const keep = isJsonObject(ov) && isJsonObject(om);
      put(out, k, mergeMetadata(v, keep ? ov : undefined, keep ? om : undefined, p, timestamp));
    } else {
      put(out, k, metadataOf(v, timestamp));
    }
  }
  return out;
}

/** The desired metadata of the delta's leaves (the delta's objects keep their path). */
function deltaMetadata(delta: JsonObject, desiredMeta: JsonObject | undefined): JsonObject {
  const out: JsonObject = {};
  for (const k of Object.keys(delta)) {
    const m = desiredMeta !== undefined && has(desiredMeta, k) ? desiredMeta[k]! : undefined;
    const d = delta[k]!;
    if (isJsonObject(d)) put(out, k, deltaMetadata(d, isJsonObject(m) ? m : undefined));
    else if (m !== undefined) put(out, k, m);
  }
  return out;
}

function stateOf(s: StoredShadow): JsonObject {
  return doc([["desired", s.state.desired], ["reported", s.state.reported]]);
}

function metadataDoc(s: StoredShadow): JsonObject {
  return doc([["desired", s.metadata.desired], ["reported", s.metadata.reported]]);
}

function snapshot(s: StoredShadow): JsonObject {
  return doc([["state", stateOf(s)], ["metadata", metadataDoc(s)], ["version", s.version]]);
}

function deltaOf(s: StoredShadow, maxDepth: number): JsonObject {
  return computeDelta(s.state.desired ?? {}, s.state.reported ?? {}, { maxDepth });
}

function byteLength(v: Json): number {
  return utf8Encode(JSON.stringify(v)).length;
}

/** A rejection on its way out: status and AWS message. */
class Rejection {
  constructor(readonly status: number, readonly message: string) {}
}

/**
 * The status and AWS message for an error thrown by the core parsers (aws-shadow.ts puts them in
 * `detail.status` / `detail.awsMessage` for request documents; the decoding errors carry only a code).
 */
export function rejectionFor(error: unknown, maxStateDepth: number = DEFAULT_SHADOW_ENGINE_OPTIONS.maxStateDepth): { status: number; message: string } {
  if (error instanceof Rejection) return { status: error.status, message: error.message };
  if (!(error instanceof ShadowOtaError)) return { status: 500, message: SHADOW_ERROR_MESSAGES.INTERNAL_FAILURE };
  const d = error.detail;
  if (d !== undefined && typeof d.status === "number" && typeof d.awsMessage === "string") {
    return { status: d.status, message: d.awsMessage };
  }
  switch (error.code) {
    case SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE: return { status: 413, message: SHADOW_ERROR_MESSAGES.PAYLOAD_TOO_LARGE };
    case SYNC_CODES.SYNC_ENCODING_INVALID: return { status: 415, message: SHADOW_ERROR_MESSAGES.UNSUPPORTED_ENCODING };
    case SYNC_CODES.SYNC_DEPTH_EXCEEDED: return { status: 400, message: tooDeepMessage(maxStateDepth) };
    case SYNC_CODES.SYNC_CLIENT_TOKEN_INVALID: return { status: 400, message: SHADOW_ERROR_MESSAGES.INVALID_CLIENT_TOKEN };
    case SYNC_CODES.SYNC_JSON_INVALID:
    case SYNC_CODES.SYNC_DOCUMENT_INVALID:
      return { status: 400, message: SHADOW_ERROR_MESSAGES.INVALID_JSON };
    default: return { status: 500, message: SHADOW_ERROR_MESSAGES.INTERNAL_FAILURE };
  }
}

/** The request's clientToken when the payload is a JSON object holding a valid one (for echoing it in a
 *  rejection whose cause lies elsewhere in the document); undefined otherwise. Never throws. */
function tokenOf(payload: Uint8Array, maxPayloadBytes: number): string | undefined {
  try {
    const v = decodePayload(payload, { maxPayloadBytes, maxDepth: 64 });
    if (!isJsonObject(v) || !has(v, "clientToken")) return undefined;
    return validateClientToken(v.clientToken);
  } catch {
    return undefined; // the rejection being built already says what is wrong with the payload
  }
}

// ---------------------------------------------------------------------------------------------------------
// The service

interface Options { maxStateDepth: number; maxStateBytes: number; maxPayloadBytes: number; rateLimitPerSecond: number }

function withDefaults(o: ShadowEngineOptions): Options {
  return {
    maxStateDepth: o.maxStateDepth ?? DEFAULT_SHADOW_ENGINE_OPTIONS.maxStateDepth,
    maxStateBytes: o.maxStateBytes ?? DEFAULT_SHADOW_ENGINE_OPTIONS.maxStateBytes,
    maxPayloadBytes: o.maxPayloadBytes ?? DEFAULT_SHADOW_ENGINE_OPTIONS.maxPayloadBytes,
    rateLimitPerSecond: o.rateLimitPerSecond ?? DEFAULT_SHADOW_ENGINE_OPTIONS.rateLimitPerSecond,
  };
}

/** The accepted part of a request: new stored shadow (undefined when unchanged) and the messages. */
interface Accepted { shadow?: StoredShadow; response: JsonObject; messages: OutgoingMessage[] }

function handleGet(stored: StoredShadow | undefined, req: ShadowRequest, topic: (t: ShadowMessageType) => string, o: Options, timestamp: number): Accepted {
  const { clientToken } = parseGetRequest(req.payload, { maxPayloadBytes: o.maxPayloadBytes });
  if (stored === undefined || !stored.exists) throw new NotFound(clientToken);
  const delta = deltaOf(stored, o.maxStateDepth);
  const state = stateOf(stored);
  if (!isDeltaEmpty(delta)) put(state, "delta", delta);
  const response = doc([
    ["state", state], ["metadata", metadataDoc(stored)], ["version", stored.version],
    ["timestamp", timestamp], ["clientToken", clientToken],
  ]);
  return { response, messages: [{ topic: topic("get/accepted"), payload: JSON.stringify(response) }] };
}

function handleDelete(stored: StoredShadow | undefined, req: ShadowRequest, topic: (t: ShadowMessageType) => string, o: Options, timestamp: number): Accepted {
  const { clientToken } = parseGetRequest(req.payload, { maxPayloadBytes: o.maxPayloadBytes });
  if (stored === undefined || !stored.exists) throw new NotFound(clientToken);
  const shadow: StoredShadow = { exists: false, version: stored.version, state: {}, metadata: {} };
  const response = doc([["version", stored.version], ["timestamp", timestamp], ["clientToken", clientToken]]);
  return { shadow, response, messages: [{ topic: topic("delete/accepted"), payload: JSON.stringify(response) }] };
}

function handleUpdate(stored: StoredShadow | undefined, req: ShadowRequest, topic: (t: ShadowMessageType) => string, o: Options, timestamp: number): Accepted {
  const update: UpdateRequest = parseUpdateRequest(req.payload, {
    maxPayloadBytes: o.maxPayloadBytes, maxStateBytes: o.maxStateBytes, maxStateDepth: o.maxStateDepth,
  });
  const current = stored ?? { exists: false, version: 0, state: {}, metadata: {} };
  if (update.version !== undefined && update.version !== current.version) {
    throw new Rejection(409, SHADOW_ERROR_MESSAGES.VERSION_CONFLICT);
  }
  const base: StoredShadow = current.exists ? current : { exists: false, version: current.version, state: {}, metadata: {} };
  const next: StoredShadow = { exists: true, version: base.version + 1, state: { ...base.state }, metadata: { ...base.metadata } };
  const acceptedMeta: JsonObject = {};
  for (const section of ["desired", "reported"] as const) {
    const patch = update.state[section];
    if (patch === undefined) continue;
    put(acceptedMeta, section, metadataOf(patch, timestamp));
    if (patch === null) {
      delete next.state[section];
      delete next.metadata[section];
      continue;
    }
    const old = base.state[section];
    const merged = applyPatch(old ?? {}, patch);
    if (Object.keys(merged).length === 0) {
      delete next.state[section];
      delete next.metadata[section];
    } else {
      next.state[section] = merged;
      next.metadata[section] = mergeMetadata(merged, old, base.metadata[section], patch, timestamp);
    }
  }
  const size = (next.state.desired === undefined ? 0 : byteLength(next.state.desired)) +
    (next.state.reported === undefined ? 0 : byteLength(next.state.reported));
  if (size > o.maxStateBytes) throw new Rejection(413, SHADOW_ERROR_MESSAGES.PAYLOAD_TOO_LARGE);
  const delta = deltaOf(next, o.maxStateDepth);

  const { clientToken } = update;
  const accepted = doc([
    ["state", update.state as JsonObject], ["metadata", acceptedMeta], ["version", next.version],
    ["timestamp", timestamp], ["clientToken", clientToken],
  ]);
  const messages: OutgoingMessage[] = [{ topic: topic("update/accepted"), payload: JSON.stringify(accepted) }];
  if (!isDeltaEmpty(delta)) {
    const deltaDoc = doc([
      ["version", next.version], ["timestamp", timestamp], ["state", delta],
      ["metadata", deltaMetadata(delta, next.metadata.desired)], ["clientToken", clientToken],
    ]);
    messages.push({ topic: topic("update/delta"), payload: JSON.stringify(deltaDoc) });
  }
  const documents = doc([
    ["previous", current.exists ? snapshot(current) : null], ["current", snapshot(next)],
    ["timestamp", timestamp], ["clientToken", clientToken],
  ]);
  messages.push({ topic: topic("update/documents"), payload: JSON.stringify(documents) });
  return { shadow: next, response: accepted, messages };
}

/** 404 for get and delete; carries the clientToken that parseGetRequest already validated. */
class NotFound {
  constructor(readonly clientToken: string | undefined) {}
}

/**
 * Runs one request against the stored shadows. Never throws for anything in `request.payload`: a bad
 * payload becomes a rejection with AWS's status and message (anything unexpected becomes 500 "Internal
 * service failure" with the state unchanged). Throws only for the caller's own mistakes, never a device's:
 * SYNC_NAME_INVALID for a bad thing or shadow name (the service only passes names matchTopic accepted) and
 * RangeError for a `now` that is not a finite, non-negative number.
 */
export function handleShadowRequest(state: ShadowEngineState, request: ShadowRequest, options: ShadowEngineOptions = {}): ShadowOutcome {
  const o = withDefaults(options);
  const key = shadowKey(request.thingName, request.shadowName);
  if (typeof request.now !== "number" || !Number.isFinite(request.now) || request.now < 0) {
    throw new RangeError("now must be a finite, non-negative number of epoch seconds");
  }
  const timestamp = Math.floor(request.now);
  const topic = (t: ShadowMessageType): string => shadowTopic(request.thingName, request.shadowName, t);

  // Rate window: one whole second of the injected time.
  const counts = state.rate.second === timestamp ? { ...state.rate.counts } : {};
  const count = (counts[key] ?? 0) + 1;
  counts[key] = count;
  const rate: RateWindow = { second: timestamp, counts };

  const stored = Object.prototype.hasOwnProperty.call(state.shadows, key) ? state.shadows[key] : undefined;
  try {
    if (o.rateLimitPerSecond > 0 && count > o.rateLimitPerSecond) {
      throw new Rejection(429, SHADOW_ERROR_MESSAGES.TOO_MANY_REQUESTS);
    }
    const handler = request.operation === "get" ? handleGet : request.operation === "update" ? handleUpdate : handleDelete;
    const result = handler(stored, request, topic, o, timestamp);
    let shadows = state.shadows;
    if (result.shadow !== undefined) {
      shadows = { ...state.shadows };
      Object.defineProperty(shadows, key, { value: result.shadow, writable: true, enumerable: true, configurable: true });
    }
    return { state: { shadows, rate }, changed: result.shadow !== undefined, accepted: true, status: 200, response: result.response, messages: result.messages };
  } catch (e) {
    let status: number;
    let message: string;
    let clientToken: string | undefined;
    if (e instanceof NotFound) {
      status = 404;
      message = notFoundMessage(request.thingName, request.shadowName);
      clientToken = e.clientToken;
    } else {
      ({ status, message } = rejectionFor(e, o.maxStateDepth));
      clientToken = tokenOf(request.payload, o.maxPayloadBytes);
    }
    const response = doc([
      ["code", status], ["message", message], ["timestamp", status === 404 ? undefined : timestamp], ["clientToken", clientToken],
    ]);
    const messages = request.origin === "admin" ? [] : [{ topic: topic(`${request.operation}/rejected`), payload: JSON.stringify(response) }];
    return { state: { shadows: state.shadows, rate }, changed: false, accepted: false, status, response, messages };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Admin operations (the cloud side: tests, the CLI)

/**
 * The shadow as get/accepted would return it (state with delta, metadata, version, and `timestamp` when
 * `now` is given), or undefined when it does not exist. No rate counting, nothing published.
 * Throws SYNC_NAME_INVALID; SYNC_DEPTH_EXCEEDED when the stored state is deeper than `maxStateDepth`.
 */
export function readShadow(state: ShadowEngineState, thingName: string, shadowName?: string, now?: number, options: ShadowEngineOptions = {}): JsonObject | undefined {
  const key = shadowKey(thingName, shadowName);
  const stored = Object.prototype.hasOwnProperty.call(state.shadows, key) ? state.shadows[key] : undefined;
  if (stored === undefined || !stored.exists) return undefined;
  const o = withDefaults(options);
  const s = stateOf(stored);
  const delta = deltaOf(stored, o.maxStateDepth);
  if (!isDeltaEmpty(delta)) put(s, "delta", delta);
  return doc([["state", s], ["metadata", metadataDoc(stored)], ["version", stored.version], ["timestamp", now === undefined ? undefined : Math.floor(now)]]);
}

export interface AdminUpdateOptions {
  shadowName?: string;
  clientToken?: string;
  /** Only apply when the shadow is at this version (else 409). */
  version?: number;
}

/**
 * The request for an admin update of `section` (desired, or reported for tests that play a device),
 * going through handleShadowRequest exactly like an MQTT update. The document is serialized as it is, so
 * the service (not this builder) judges it: a bad value gets the same rejection a device would.
 */
export function adminUpdateRequest(thingName: string, section: "desired" | "reported", value: JsonObject | null, now: number, options: AdminUpdateOptions = {}): ShadowRequest {
  const body: JsonObject = { state: { [section]: value } as JsonObject };
  if (options.version !== undefined) body.version = options.version;
  if (options.clientToken !== undefined) body.clientToken = options.clientToken;
  const req: ShadowRequest = { thingName, operation: "update", payload: utf8Encode(JSON.stringify(body)), now, origin: "admin" };
  if (options.shadowName !== undefined) req.shadowName = options.shadowName;
  return req;
}

/** The request for an admin delete. */
export function adminDeleteRequest(thingName: string, now: number, shadowName?: string): ShadowRequest {
  const req: ShadowRequest = { thingName, operation: "delete", payload: new Uint8Array(0), now, origin: "admin" };
  if (shadowName !== undefined) req.shadowName = shadowName;
  return req;
}

// ---------------------------------------------------------------------------------------------------------
// Loading (for cloud-store.ts)

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Checks that `value` has the shape of a ShadowTable (as loaded from a file) and returns it; on a bad
 * shape returns a string saying where. Does not re-validate the documents against the service limits.
 */
export function checkShadowTable(value: unknown): ShadowTable | string {
  if (!isJsonObject(value)) return "aws.shadows is not an object";
  for (const key of Object.keys(value)) {
    const s = value[key];
    const [thing, shadow, extra] = key.split("~");
    try {
      if (extra !== undefined) throw new Error("two '~'");
      shadowKey(thing!, shadow);
    } catch {
      return `aws.shadows has a bad key ${JSON.stringify(key.slice(0, 200))}`;
    }
    if (!isJsonObject(s) || typeof s.exists !== "boolean" || !isCount(s.version) ||
        !isJsonObject(s.state) || !isJsonObject(s.metadata)) {
      return `aws.shadows[${JSON.stringify(key)}] is not a stored shadow`;
    }
    for (const part of [s.state, s.metadata]) {
      for (const k of Object.keys(part)) {
        if ((k !== "desired" && k !== "reported") || !isJsonObject(part[k])) {
          return `aws.shadows[${JSON.stringify(key)}] has a bad ${JSON.stringify(k)} section`;
        }
      }
    }
  }
  return value as unknown as ShadowTable;
}
