/**
 * Azure IoT Hub device twin and direct methods over MQTT as pure functions: the topics a device
 * subscribes to and publishes on, matching of received topics (status, `$rid` and `$version` from the
 * query string), parsing of the GET body, of desired-property notifications and of direct-method
 * requests, and building of reported patches and method replies, with Azure's twin limits checked first.
 * The Azure seed starts an update from desired `updateVersion` or from the direct method `firmwareUpdate`
 * with `{"version":"1.1.0"}` (see parseFirmwareUpdatePayload).
 *
 * Like aws-shadow.ts it never does I/O and keeps no state. Failures are ShadowOtaError with SYNC_CODES;
 * matchAzureTopic returns its failure as data (an AzureTopicStatus).
 *
 * Source of the rules: docs/protocols.md §3 ("Azure IoT Hub device twin over MQTT").
 * Not here: SAS tokens and the MQTT connect username (connection adapters), version bookkeeping
 * (shadow-sync.ts), semver checks of firmware versions (shadow-sync.ts uses semver.ts), and the hub's half —
 * the topics and bodies only the service builds (responses, desired notifications, method requests) and
 * parsing reported patches as the hub does — which stays out of the device build: src/sim/azure-twin-cloud.ts.
 */
import { ShadowOtaError } from "./errors";
import { isJsonObject, jsonDepth, parseJsonBounded, type Json, type JsonObject } from "./json";
import { SYNC_CODES } from "./sync-errors";
import { utf8Decode, utf8Encode } from "./utf8";

/** Azure IoT Hub twin limits. */
export const AZURE_TWIN_LIMITS = {
  /** Property names: at most 1 KB of UTF-8, without `.`, `$`, space or control characters. */
  KEY_MAX_BYTES: 1024,
  /** String values: at most 4 KB of UTF-8. */
  STRING_MAX_BYTES: 4096,
  /** Nesting of desired and of reported, counted as IoT Hub counts it: the levels of objects (and arrays)
   *  inside the section, the section itself not counted — jsonDepth(section) - 1. IoT Hub's own example at
   *  the limit ("Understand and use device twins in IoT Hub", Depth) nests objects `one` … `ten` under the
   *  section, the last holding a plain value: depth 10, accepted; one more level is refused. */
  MAX_DEPTH: 10,
  /** desired and reported: at most 32 KB each. */
  SECTION_MAX_BYTES: 32 * 1024,
} as const;

/** Limits for parsing a received payload. */
export interface AzurePayloadLimits {
  /** Default 66 KB: a GET body holds desired and reported of up to 32 KB each. */
  maxPayloadBytes?: number;
  /** Default 14 (jsonDepth of the whole body): the body, `desired`, `$metadata` mirroring a section at
   *  depth 10 (11 levels) with `$lastUpdated` objects at its leaves. */
  maxDepth?: number;
}
export const DEFAULT_AZURE_PAYLOAD_LIMITS = { maxPayloadBytes: 66 * 1024, maxDepth: 14 } as const;

// ---------------------------------------------------------------------------------------------------------
// Topics

export const AZURE_TOPICS = {
  /** Responses to GET and reported PATCH (subscribe before publishing either). */
  TWIN_RESPONSES: "$iothub/twin/res/#",
  /** Desired-property notifications. */
  DESIRED_PATCHES: "$iothub/twin/PATCH/properties/desired/#",
  /** Direct-method requests. */
  METHOD_REQUESTS: "$iothub/methods/POST/#",
} as const;

/** What a device subscribes to. */
export function azureSubscriptions(): string[] {
  return [AZURE_TOPICS.TWIN_RESPONSES, AZURE_TOPICS.DESIRED_PATCHES, AZURE_TOPICS.METHOD_REQUESTS];
}

/** [A-Za-z0-9._~:-] — safe in a topic and a query string without escaping. */
function isIdChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) ||
    c === 0x2e || c === 0x5f || c === 0x7e || c === 0x3a || c === 0x2d;
}

function isId(s: string, max: number): boolean {
  if (s.length === 0 || s.length > max) return false;
  for (let i = 0; i < s.length; i++) if (!isIdChar(s.charCodeAt(i))) return false;
  return true;
}

/** Longest request id (`$rid`) accepted or built. */
export const RID_MAX = 64;
/** Longest direct-method name accepted. */
export const METHOD_NAME_MAX = 128;

/** Returns the request id or throws SYNC_NAME_INVALID (not 1..64 characters of [A-Za-z0-9._~:-]). */
export function validateRid(rid: unknown): string {
  if (typeof rid !== "string" || !isId(rid, RID_MAX)) {
    throw new ShadowOtaError(SYNC_CODES.SYNC_NAME_INVALID, `request id must be 1..${RID_MAX} characters of [A-Za-z0-9._~:-]`);
  }
  return rid;
}

/** `$iothub/twin/GET/?$rid={rid}` (publish an empty payload). Throws SYNC_NAME_INVALID. */
export function twinGetTopic(rid: string): string {
  return `$iothub/twin/GET/?$rid=${validateRid(rid)}`;
}

/** `$iothub/twin/PATCH/properties/reported/?$rid={rid}`. Throws SYNC_NAME_INVALID. */
export function reportedPatchTopic(rid: string): string {
  return `$iothub/twin/PATCH/properties/reported/?$rid=${validateRid(rid)}`;
}

/** `$iothub/methods/res/{status}/?$rid={rid}`. Throws SYNC_NAME_INVALID / SYNC_DOCUMENT_INVALID. */
export function methodResponseTopic(status: number, rid: string): string {
  checkStatus(status);
  return `$iothub/methods/res/${status}/?$rid=${validateRid(rid)}`;
}

/** Returns the name or throws SYNC_NAME_INVALID (not 1..128 characters of [A-Za-z0-9._~:-]). */
export function validateMethodName(name: unknown): string {
  if (typeof name !== "string" || !isId(name, METHOD_NAME_MAX)) {
    throw new ShadowOtaError(SYNC_CODES.SYNC_NAME_INVALID, `method name must be 1..${METHOD_NAME_MAX} characters of [A-Za-z0-9._~:-]`);
  }
  return name;
}

/** The status, an integer 100..599, or SYNC_DOCUMENT_INVALID (field `status`). */
export function checkStatus(status: number): number {
  if (!Number.isInteger(status) || status < 100 || status > 599) {
    throw new ShadowOtaError(SYNC_CODES.SYNC_DOCUMENT_INVALID, "status must be an integer 100..599", { detail: { field: "status" } });
  }
  return status;
}

/** Why matchAzureTopic refused a topic. */
export const AZURE_TOPIC_STATUS = {
  /** Not one of `$iothub/twin/res/`, `$iothub/twin/PATCH/properties/desired/`, `$iothub/methods/POST/`. */
  NOT_TWIN_TOPIC: "NOT_TWIN_TOPIC",
  /** The response status is not three digits in 100..599. */
  STATUS_INVALID: "STATUS_INVALID",
  /** The `/?` before the query is missing, or the query is too long, has too many or duplicated
   *  parameters, or a parameter without `=`. */
  QUERY_INVALID: "QUERY_INVALID",
  /** `$rid` is missing (responses and method requests need it) or not 1..64 of [A-Za-z0-9._~:-]. */
  RID_INVALID: "RID_INVALID",
  /** `$version` is present but not a non-negative decimal integer. */
  VERSION_INVALID: "VERSION_INVALID",
  /** The direct-method name is empty, too long or holds a character outside [A-Za-z0-9._~:-]. */
  METHOD_NAME_INVALID: "METHOD_NAME_INVALID",
} as const;
export type AzureTopicStatus = (typeof AZURE_TOPIC_STATUS)[keyof typeof AZURE_TOPIC_STATUS];

export type AzureTopicMatch =
  | { ok: true; kind: "twin-response"; status: number; rid: string; version?: number }
  | { ok: true; kind: "desired-patch"; version?: number }
  | { ok: true; kind: "method-request"; name: string; rid: string };
export interface AzureTopicMismatch { ok: false; status: AzureTopicStatus }

/** Longest query string accepted and most parameters in it (hostile topics cost at most this much). */
export const QUERY_MAX_LENGTH = 512;
export const QUERY_MAX_PARAMS = 16;

/**
 * Parses `k1=v1&k2=v2` into a map. Refuses (returns a status) more than QUERY_MAX_LENGTH characters or
 * QUERY_MAX_PARAMS parameters, an empty key, a parameter without `=` and a key given twice (so that
 * `$rid=1&$rid=2` cannot make two readers disagree). Values are taken literally (no percent-decoding: Azure
 * sends `$rid` and `$version` unencoded, and the callers validate them as plain tokens).
 */
export function parseQuery(query: string): Map<string, string> | AzureTopicStatus {
  const out = new Map<string, string>();
  if (query.length === 0) return out;
  if (query.length > QUERY_MAX_LENGTH) return AZURE_TOPIC_STATUS.QUERY_INVALID;
  const parts = query.split("&");
  if (parts.length > QUERY_MAX_PARAMS) return AZURE_TOPIC_STATUS.QUERY_INVALID;
  for (const p of parts) {
    const eq = p.indexOf("=");
    if (eq <= 0) return AZURE_TOPIC_STATUS.QUERY_INVALID;
    const k = p.slice(0, eq);
    if (out.has(k)) return AZURE_TOPIC_STATUS.QUERY_INVALID;
    out.set(k, p.slice(eq + 1));
  }
  return out;
}

/** Decimal digits only, no sign, at most 15 digits (exact as a JS number). */
function parseVersionText(s: string): number | undefined {
  if (s.length === 0 || s.length > 15) return undefined;
  // Stryker disable next-line EqualityOperator: at i === s.length charCodeAt is NaN, which passes both comparisons below, so "<=" reads one NaN more and changes nothing.
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return undefined;
  }
  return Number(s);
}

const RES_PREFIX = "$iothub/twin/res/";
const DESIRED_PREFIX = "$iothub/twin/PATCH/properties/desired/";
const METHOD_PREFIX = "$iothub/methods/POST/";

/*
 * Grammar of the topics a device receives:
 *
 *   twin-response  = "$iothub/twin/res/" status "/?" query          ; query holds $rid, may hold $version
 *   desired-patch  = "$iothub/twin/PATCH/properties/desired/?" query ; query may hold $version
 *   method-request = "$iothub/methods/POST/" method-name "/?" query ; query holds $rid
 *   status         = 3DIGIT                                         ; 100..599
 *   query          = [ param *( "&" param ) ]                       ; see parseQuery
 *   param          = key "=" value
 *   $rid           = 1*64 ( ALPHA / DIGIT / "." / "_" / "~" / ":" / "-" )
 *   $version       = 1*15 DIGIT
 *   method-name    = 1*128 ( ALPHA / DIGIT / "." / "_" / "~" / ":" / "-" )
 *
 * Unknown query parameters are ignored. The work is linear in the topic length up to the query, and the
 * query itself is bounded by QUERY_MAX_LENGTH.
 */
export function matchAzureTopic(topic: string): AzureTopicMatch | AzureTopicMismatch {
  const fail = (status: AzureTopicStatus): AzureTopicMismatch => ({ ok: false, status });
  if (typeof topic !== "string") return fail(AZURE_TOPIC_STATUS.NOT_TWIN_TOPIC);

  /** The query after `/?` at `at`, or a failure. */
  const queryAt = (at: number): Map<string, string> | AzureTopicStatus => {
    if (!topic.startsWith("/?", at)) return AZURE_TOPIC_STATUS.QUERY_INVALID;
    return parseQuery(topic.slice(at + 2));
  };
  const ridOf = (q: Map<string, string>): string | undefined => {
    const rid = q.get("$rid");
    return rid !== undefined && isId(rid, RID_MAX) ? rid : undefined;
  };
  /** undefined when absent, null when malformed. */
  const versionOf = (q: Map<string, string>): number | undefined | null => {
    const v = q.get("$version");
    if (v === undefined) return undefined;
    return parseVersionText(v) ?? null;
  };

  if (topic.startsWith(RES_PREFIX)) {
    const s = RES_PREFIX.length;
    let e = topic.indexOf("/", s);
    // Stryker disable next-line EqualityOperator: indexOf from s > 0 is -1 or at least s, never 0, so "<= 0" is the same test.
    if (e < 0) e = topic.length;
    const statusText = topic.slice(s, e);
    const status = parseVersionText(statusText);
    if (statusText.length !== 3 || status === undefined || status < 100 || status > 599) return fail(AZURE_TOPIC_STATUS.STATUS_INVALID);
    const q = queryAt(e);
    if (typeof q === "string") return fail(q);
    const rid = ridOf(q);
    if (rid === undefined) return fail(AZURE_TOPIC_STATUS.RID_INVALID);
    const version = versionOf(q);
    if (version === null) return fail(AZURE_TOPIC_STATUS.VERSION_INVALID);
    return version === undefined ? { ok: true, kind: "twin-response", status, rid } : { ok: true, kind: "twin-response", status, rid, version };
  }
  if (topic.startsWith(DESIRED_PREFIX)) {
    if (topic.charCodeAt(DESIRED_PREFIX.length) !== 0x3f) return fail(AZURE_TOPIC_STATUS.QUERY_INVALID); // "?"
    const q = parseQuery(topic.slice(DESIRED_PREFIX.length + 1));
    if (typeof q === "string") return fail(q);
    const version = versionOf(q);
    if (version === null) return fail(AZURE_TOPIC_STATUS.VERSION_INVALID);
    return version === undefined ? { ok: true, kind: "desired-patch" } : { ok: true, kind: "desired-patch", version };
  }
  if (topic.startsWith(METHOD_PREFIX)) {
    const s = METHOD_PREFIX.length;
    let e = topic.indexOf("/", s);
    // Stryker disable next-line EqualityOperator: indexOf from s > 0 is -1 or at least s, never 0, so "<= 0" is the same test.
    if (e < 0) e = topic.length;
    const name = topic.slice(s, e);
    if (!isId(name, METHOD_NAME_MAX)) return fail(AZURE_TOPIC_STATUS.METHOD_NAME_INVALID);
    const q = queryAt(e);
    if (typeof q === "string") return fail(q);
    const rid = ridOf(q);
    if (rid === undefined) return fail(AZURE_TOPIC_STATUS.RID_INVALID);
    return { ok: true, kind: "method-request", name, rid };
  }
  return fail(AZURE_TOPIC_STATUS.NOT_TWIN_TOPIC);
}

/** matchAzureTopic that throws SYNC_TOPIC_INVALID (`detail.status` = the AzureTopicStatus) instead. */
export function matchAzureTopicOrThrow(topic: string): AzureTopicMatch {
  const m = matchAzureTopic(topic);
  if (!m.ok) throw new ShadowOtaError(SYNC_CODES.SYNC_TOPIC_INVALID, `not a twin topic (${m.status})`, { detail: { status: m.status } });
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// Bodies

/** SYNC_DOCUMENT_INVALID naming the field. */
export function twinDocumentInvalid(field: string, message: string): ShadowOtaError {
  return new ShadowOtaError(SYNC_CODES.SYNC_DOCUMENT_INVALID, message, { detail: { field } });
}

/**
 * bytes → JSON value with the payload limits; an empty payload is `undefined`. Errors:
 * SYNC_PAYLOAD_TOO_LARGE (checked before decoding), SYNC_ENCODING_INVALID, SYNC_DEPTH_EXCEEDED,
 * SYNC_JSON_INVALID.
 */
export function decodeAzurePayload(bytes: Uint8Array, limits: AzurePayloadLimits = {}): Json | undefined {
  const maxBytes = limits.maxPayloadBytes ?? DEFAULT_AZURE_PAYLOAD_LIMITS.maxPayloadBytes;
  if (!(bytes instanceof Uint8Array)) throw twinDocumentInvalid("payload", "payload is not bytes");
  if (bytes.length > maxBytes) {
    throw new ShadowOtaError(SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE, `payload of ${bytes.length} bytes exceeds ${maxBytes}`,
      { detail: { size: bytes.length, max: maxBytes } });
  }
  if (bytes.length === 0) return undefined;
  return parseJsonBounded(utf8Decode(bytes), { maxLength: maxBytes, maxDepth: limits.maxDepth ?? DEFAULT_AZURE_PAYLOAD_LIMITS.maxDepth });
}

/** A copy of `o` without its top-level `$`-keys (`$version`, `$metadata`). */
function withoutDollarKeys(o: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const k of Object.keys(o)) {
    if (k.startsWith("$")) continue;
    Object.defineProperty(out, k, { value: o[k], writable: true, enumerable: true, configurable: true });
  }
  return out;
}

function readDollarVersion(o: JsonObject, field: string): number {
  const v = Object.prototype.hasOwnProperty.call(o, "$version") ? o.$version : undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw twinDocumentInvalid(field, `${field} must be a non-negative integer`);
  return v;
}

/** The twin as a GET returns it; `$version` and `$metadata` are taken out of the sections. */
export interface TwinDocument {
  desired: JsonObject;
  desiredVersion: number;
  reported: JsonObject;
  reportedVersion: number;
}

/**
 * GET body `{"desired":{…,"$version":12},"reported":{…,"$version":123}}` (status 200).
 * Errors: the decodeAzurePayload codes; SYNC_DOCUMENT_INVALID when the body, desired or reported is not
 * an object or a `$version` is missing or not a non-negative integer.
 */
export function parseTwinGetBody(bytes: Uint8Array, limits: AzurePayloadLimits = {}): TwinDocument {
  const o = decodeAzurePayload(bytes, limits);
  if (!isJsonObject(o)) throw twinDocumentInvalid("document", "twin is not a JSON object");
  if (!isJsonObject(o.desired)) throw twinDocumentInvalid("desired", "desired must be an object");
  if (!isJsonObject(o.reported)) throw twinDocumentInvalid("reported", "reported must be an object");
  return {
    desired: withoutDollarKeys(o.desired),
    desiredVersion: readDollarVersion(o.desired, "desired.$version"),
    reported: withoutDollarKeys(o.reported),
    reportedVersion: readDollarVersion(o.reported, "reported.$version"),
  };
}

/** A desired-property notification: a patch (a `null` member deletes) and the desired `$version`. */
export interface DesiredPatch { patch: JsonObject; version: number }

/**
 * Body of `…/properties/desired/?$version=N`, e.g. `{"updateVersion":"1.1.0","route":null,"$version":8}`.
 * The body's `$version` is required and wins over the topic's. Errors as parseTwinGetBody.
 */
export function parseDesiredPatchBody(bytes: Uint8Array, limits: AzurePayloadLimits = {}): DesiredPatch {
  const o = decodeAzurePayload(bytes, limits);
  if (!isJsonObject(o)) throw twinDocumentInvalid("document", "desired patch is not a JSON object");
  return { patch: withoutDollarKeys(o), version: readDollarVersion(o, "$version") };
}

/**
 * The body of an error response (status >= 400), read leniently: Azure sends `{"errorCode":…,"message":…}`
 * or nothing. Never throws: a body that cannot be read gives `bodyError` with the reason's code.
 */
export function parseTwinErrorBody(bytes: Uint8Array, limits: AzurePayloadLimits = {}): { message?: string; errorCode?: number; bodyError?: string } {
  let v: Json | undefined;
  try {
    v = decodeAzurePayload(bytes, limits);
  } catch (e) {
    return { bodyError: e instanceof ShadowOtaError ? e.code : SYNC_CODES.SYNC_JSON_INVALID };
  }
  const out: { message?: string; errorCode?: number } = {};
  if (isJsonObject(v)) {
    if (typeof v.message === "string") out.message = v.message.slice(0, 256);
    else if (typeof v.Message === "string") out.message = v.Message.slice(0, 256);
    if (typeof v.errorCode === "number" && Number.isSafeInteger(v.errorCode)) out.errorCode = v.errorCode;
  }
  return out;
}

function byteLength(s: string): number {
  return utf8Encode(s).length;
}

/**
 * Checks a reported (or desired) section or patch against the twin limits: every key at most 1 KB and
 * without `.`, `$`, space or control characters; every string at most 4 KB; depth at most 10; the JSON
 * text at most 32 KB. Iterative. Errors: SYNC_DOCUMENT_INVALID (`detail.field` = the key path),
 * SYNC_DEPTH_EXCEEDED, SYNC_PAYLOAD_TOO_LARGE.
 */
export function checkTwinSection(section: JsonObject, what: "reported" | "desired"): void {
  const depth = jsonDepth(section) - 1; // IoT Hub does not count the section itself (AZURE_TWIN_LIMITS.MAX_DEPTH)
  if (depth > AZURE_TWIN_LIMITS.MAX_DEPTH) {
    throw new ShadowOtaError(SYNC_CODES.SYNC_DEPTH_EXCEEDED, `${what} nests ${depth} levels; the maximum is ${AZURE_TWIN_LIMITS.MAX_DEPTH}`,
      { detail: { depth, maxDepth: AZURE_TWIN_LIMITS.MAX_DEPTH } });
  }
  const stack: Array<[Json, string]> = [[section, what]];
  while (stack.length > 0) {
    const [v, path] = stack.pop()!;
    if (typeof v === "string") {
      if (byteLength(v) > AZURE_TWIN_LIMITS.STRING_MAX_BYTES) throw twinDocumentInvalid(path, `string at ${path} is longer than 4 KB`);
    } else if (Array.isArray(v)) {
      v.forEach((e, i) => stack.push([e, `${path}[${i}]`]));
    } else if (isJsonObject(v)) {
      for (const k of Object.keys(v)) {
        const bad = /[.$ \u0000-\u001f\u007f]/.test(k);
        if (bad || k.length === 0 || byteLength(k) > AZURE_TWIN_LIMITS.KEY_MAX_BYTES) {
          throw twinDocumentInvalid(`${path}.${k.slice(0, 64)}`, `key ${JSON.stringify(k.slice(0, 64))} is empty, longer than 1 KB or holds '.', '$', space or a control character`);
        }
        stack.push([v[k]!, `${path}.${k}`]);
      }
    }
  }
  const size = byteLength(JSON.stringify(section));
  if (size > AZURE_TWIN_LIMITS.SECTION_MAX_BYTES) {
    throw new ShadowOtaError(SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE, `${what} of ${size} bytes exceeds 32 KB`,
      { detail: { size, max: AZURE_TWIN_LIMITS.SECTION_MAX_BYTES } });
  }
}

/** The body of a reported PATCH (a partial document; `null` deletes), checked by checkTwinSection first. */
export function buildReportedPatch(patch: JsonObject): string {
  if (!isJsonObject(patch)) throw twinDocumentInvalid("reported", "reported patch must be an object");
  checkTwinSection(patch, "reported");
  return JSON.stringify(patch);
}

// ---------------------------------------------------------------------------------------------------------
// Direct methods

export interface MethodRequest {
  name: string;
  rid: string;
  /** The JSON payload; `null` for an empty payload. */
  payload: Json;
}

/**
 * A direct-method request from its topic and payload. Errors: SYNC_TOPIC_INVALID (not a well-formed
 * `$iothub/methods/POST/{name}/?$rid=` topic; `detail.status`), the decodeAzurePayload codes.
 */
export function parseMethodRequest(topic: string, bytes: Uint8Array, limits: AzurePayloadLimits = {}): MethodRequest {
  const m = matchAzureTopicOrThrow(topic);
  if (m.kind !== "method-request") {
    throw new ShadowOtaError(SYNC_CODES.SYNC_TOPIC_INVALID, "not a direct-method topic", { detail: { status: AZURE_TOPIC_STATUS.NOT_TWIN_TOPIC } });
  }
  const payload = decodeAzurePayload(bytes, limits);
  return { name: m.name, rid: m.rid, payload: payload === undefined ? null : payload };
}

/** The reply to a direct method: topic `$iothub/methods/res/{status}/?$rid={rid}` and a JSON payload. */
export function buildMethodResponse(status: number, rid: string, payload: Json = null): { topic: string; payload: string } {
  return { topic: methodResponseTopic(status, rid), payload: payload === null ? "" : JSON.stringify(payload) };
}

/** The direct method the Azure seed uses to start an update: payload `{"version":"1.1.0"}`. */
export const FIRMWARE_METHOD_NAME = "firmwareUpdate";

/**
 * The requested version from a `firmwareUpdate` payload, as received: the caller checks it is strict
 * SemVer (shadow-sync.ts reports SYNC_FIRMWARE_VERSION_INVALID otherwise).
 * Errors: SYNC_DOCUMENT_INVALID when the payload is not an object with a `version` member.
 */
export function parseFirmwareUpdatePayload(payload: Json): { version: Json } {
  if (!isJsonObject(payload) || !Object.prototype.hasOwnProperty.call(payload, "version")) {
    throw twinDocumentInvalid("version", `${FIRMWARE_METHOD_NAME} needs a payload {"version": "<semver>"}`);
  }
  return { version: payload.version! };
}
