/**
 * AWS IoT Device Shadow over MQTT as pure functions: build and match the topics of classic and named
 * shadows, validate thing names, shadow names and client tokens, parse and type-check every document the
 * service sends, and build the request documents a device sends.
 *
 * Like aws/Device-Shadow-for-AWS-IoT-embedded-sdk it does not wrap MQTT: it never publishes, subscribes or
 * keeps state. Failures are ShadowOtaError with SYNC_CODES (sync-errors.ts); `matchTopic` returns its
 * failure as data (a TopicMatchStatus) because a non-shadow topic is an answer, not an error.
 *
 * Source of the rules: docs/protocols.md §1 (topics §1.1, documents §1.2–1.6, topic grammar §1.7).
 * Not here: delta/merge rules (config-diff.ts), request correlation and versions (shadow-sync.ts), and the
 * service's half — parsing requests, building error documents and desired updates — which only the local
 * cloud needs and which stays out of the device build: src/sim/aws-shadow-cloud.ts.
 */
import { ShadowOtaError } from "./errors";
import { isJsonObject, jsonDepth, parseJsonBounded, type Json, type JsonObject } from "./json";
import { SYNC_CODES } from "./sync-errors";
import { utf8Decode, utf8Encode } from "./utf8";

/** The service's limits that the device checks before sending and the local cloud enforces. */
export const AWS_SHADOW_LIMITS = {
  /** Thing names are 1..128 characters of [a-zA-Z0-9:_-]. */
  THING_NAME_MAX: 128,
  /** Shadow names are 1..64 characters of [a-zA-Z0-9:_-]. */
  SHADOW_NAME_MAX: 64,
  /** clientToken: at most 64 bytes of UTF-8 (400 "Invalid clientToken"). */
  CLIENT_TOKEN_MAX_BYTES: 64,
  /** desired + reported together: 8 KB (413). */
  STATE_MAX_BYTES: 8 * 1024,
  /** Nesting of desired and of reported (AWS sources say 5, 6 or 8; the service message says 6). */
  STATE_MAX_DEPTH: 6,
  /** Largest MQTT publish AWS IoT Core accepts. */
  PUBLISH_MAX_BYTES: 128 * 1024,
} as const;

/** Limits for parsing a received payload. */
export interface PayloadLimits {
  /** Largest payload in bytes. Default 32 KB (8 KB of state plus its delta, metadata and echo). */
  maxPayloadBytes?: number;
  /** Deepest nesting of the whole document (jsonDepth). Default 10: a state section of depth 6 sits
   *  under `previous.state` (+3) in update/documents and its metadata adds one level. */
  maxDepth?: number;
}

export const DEFAULT_AWS_PAYLOAD_LIMITS = { maxPayloadBytes: 32 * 1024, maxDepth: 10 } as const;

// ---------------------------------------------------------------------------------------------------------
// Names and tokens

/** Only [a-zA-Z0-9:_-]. A regular expression, not a `charCodeAt(i)` loop: XS keeps strings as UTF-8, so
 *  indexing is O(i) there and such a loop is quadratic (a 64 K-character name: about 1 s on XS on a desktop
 *  machine, against 2 ms for the regular expression; the 1 MB topic test in aws-shadow.test.ts guards it). */
const NAME_CHARS = /^[a-zA-Z0-9:_-]*$/;

function nameCharsValid(name: string): boolean {
  return NAME_CHARS.test(name);
}

function checkName(kind: "thing" | "shadow", name: unknown, max: number): string {
  if (typeof name !== "string" || name.length === 0 || name.length > max || !nameCharsValid(name)) {
    throw new ShadowOtaError(SYNC_CODES.SYNC_NAME_INVALID,
      `${kind} name must be 1..${max} characters of [a-zA-Z0-9:_-]`,
      { detail: { kind, length: typeof name === "string" ? name.length : null } });
  }
  return name;
}

/** Returns the thing name or throws SYNC_NAME_INVALID (not a string of 1..128 of [a-zA-Z0-9:_-]). */
export function validateThingName(name: unknown): string {
  return checkName("thing", name, AWS_SHADOW_LIMITS.THING_NAME_MAX);
}

/** Returns the shadow name or throws SYNC_NAME_INVALID (not a string of 1..64 of [a-zA-Z0-9:_-]). */
export function validateShadowName(name: unknown): string {
  return checkName("shadow", name, AWS_SHADOW_LIMITS.SHADOW_NAME_MAX);
}

/** Returns the token or throws SYNC_CLIENT_TOKEN_INVALID (not a string of 1..64 UTF-8 bytes). */
export function validateClientToken(token: unknown): string {
  if (typeof token !== "string" || token.length === 0 || token.length > AWS_SHADOW_LIMITS.CLIENT_TOKEN_MAX_BYTES ||
      utf8Encode(token).length > AWS_SHADOW_LIMITS.CLIENT_TOKEN_MAX_BYTES) {
    throw new ShadowOtaError(SYNC_CODES.SYNC_CLIENT_TOKEN_INVALID, "clientToken must be a string of 1..64 UTF-8 bytes",
      { detail: { status: 400, awsMessage: "Invalid clientToken" } });
  }
  return token;
}

// ---------------------------------------------------------------------------------------------------------
// Topics

export type ShadowOperation = "get" | "update" | "delete";
export type ShadowResponseSuffix = "accepted" | "rejected" | "delta" | "documents";
/** The topic tail after the shadow prefix. The first three are requests (device or cloud → service). */
export type ShadowMessageType =
  | "get" | "update" | "delete"
  | "get/accepted" | "get/rejected"
  | "update/accepted" | "update/rejected" | "update/delta" | "update/documents"
  | "delete/accepted" | "delete/rejected";

export const SHADOW_RESPONSE_TYPES: readonly ShadowMessageType[] = [
  "get/accepted", "get/rejected", "update/accepted", "update/rejected", "update/delta", "update/documents",
  "delete/accepted", "delete/rejected",
];
export const SHADOW_REQUEST_TYPES: readonly ShadowMessageType[] = ["get", "update", "delete"];

/** `$aws/things/{thing}/shadow` or `$aws/things/{thing}/shadow/name/{shadow}`. Throws SYNC_NAME_INVALID. */
export function shadowTopicPrefix(thingName: string, shadowName?: string): string {
  const p = `$aws/things/${validateThingName(thingName)}/shadow`;
  return shadowName === undefined ? p : `${p}/name/${validateShadowName(shadowName)}`;
}

/** The full topic, e.g. `$aws/things/esp32-01/shadow/name/ota/update/delta`. Throws SYNC_NAME_INVALID. */
export function shadowTopic(thingName: string, shadowName: string | undefined, messageType: ShadowMessageType): string {
  return `${shadowTopicPrefix(thingName, shadowName)}/${messageType}`;
}

/**
 * What a device subscribes to (5 topics; AWS allows 8 per SUBSCRIBE): get/accepted, get/rejected,
 * update/accepted, update/rejected, update/delta. Not update/documents (large, not needed by a device)
 * and not delete/* (the device never deletes its shadow).
 */
export function deviceSubscriptions(thingName: string, shadowName?: string): string[] {
  const p = shadowTopicPrefix(thingName, shadowName);
  return ["get/accepted", "get/rejected", "update/accepted", "update/rejected", "update/delta"].map((t) => `${p}/${t}`);
}

/**
 * Why matchTopic refused a topic; the order of the checks and the statuses mirror
 * Shadow_MatchTopicString in aws/Device-Shadow-for-AWS-IoT-embedded-sdk (shadow.c).
 */
export const TOPIC_MATCH_STATUS = {
  /** The topic does not start with `$aws/things/` (for example `$aws/jobs/…`); C: SHADOW_FAIL. */
  NOT_SHADOW_TOPIC: "NOT_SHADOW_TOPIC",
  /** The thing name is empty, not followed by `/`, or holds a character outside [a-zA-Z0-9:_-]
   *  (`$aws/things/`, `$aws/things//`, `$aws/things/X`); C: SHADOW_THINGNAME_PARSE_FAILED. */
  THING_NAME_PARSE_FAILED: "THING_NAME_PARSE_FAILED",
  /** The thing name is longer than 128 characters; C: SHADOW_THINGNAME_LENGTH_EXCEEDED. */
  THING_NAME_LENGTH_EXCEEDED: "THING_NAME_LENGTH_EXCEEDED",
  /** The thing name is not followed by `/shadow` (`$aws/things/X/`, `$aws/things/X/invalid`);
   *  C: SHADOW_ROOT_PARSE_FAILED. */
  ROOT_PARSE_FAILED: "ROOT_PARSE_FAILED",
  /** `/shadow/name/` is followed by an empty name or one with a character outside [a-zA-Z0-9:_-];
   *  C: SHADOW_SHADOWNAME_PARSE_FAILED. */
  SHADOW_NAME_PARSE_FAILED: "SHADOW_NAME_PARSE_FAILED",
  /** The shadow name is longer than 64 characters; C: SHADOW_SHADOWNAME_LENGTH_EXCEEDED. */
  SHADOW_NAME_LENGTH_EXCEEDED: "SHADOW_NAME_LENGTH_EXCEEDED",
  /** Nothing or something unknown after the shadow root (`…/shadow`, `…/shadow/invalid/invalid`,
   *  `…/get/rejected/extra`), or a request topic when only responses are asked for;
   *  C: SHADOW_MESSAGE_TYPE_PARSE_FAILED. */
  MESSAGE_TYPE_PARSE_FAILED: "MESSAGE_TYPE_PARSE_FAILED",
} as const;
export type TopicMatchStatus = (typeof TOPIC_MATCH_STATUS)[keyof typeof TOPIC_MATCH_STATUS];

export interface TopicMatch {
  ok: true;
  thingName: string;
  /** Absent for the classic shadow. */
  shadowName?: string;
  operation: ShadowOperation;
  /** Absent for request topics (get, update, delete). */
  suffix?: ShadowResponseSuffix;
  messageType: ShadowMessageType;
}
export interface TopicMismatch { ok: false; status: TopicMatchStatus }

export interface MatchOptions {
  /** Also match the request topics get, update and delete (the local cloud receives those). Default false:
   *  response topics only, like Shadow_MatchTopicString. */
  requests?: boolean;
}

const THINGS_PREFIX = "$aws/things/";

/*
 * Grammar of the topics matchTopic accepts (response topics; request topics with `requests: true`):
 *
 *   topic         = "$aws/things/" thing-name "/shadow" [ "/name/" shadow-name ] "/" message-type
 *   thing-name    = 1*128 name-char
 *   shadow-name   = 1*64 name-char
 *   name-char     = ALPHA / DIGIT / ":" / "_" / "-"
 *   message-type  = response / request
 *   response      = ( "get" / "update" / "delete" ) "/" ( "accepted" / "rejected" )
 *                 / "update/delta" / "update/documents"
 *   request       = "get" / "update" / "delete"
 *
 * Checked in this order (the first failure wins): prefix, thing name, "/shadow" root, shadow name,
 * message type. Runs in one pass over the text and allocates only the returned slices.
 */
export function matchTopic(topic: string, options: MatchOptions = {}): TopicMatch | TopicMismatch {
  const fail = (status: TopicMatchStatus): TopicMismatch => ({ ok: false, status });
  if (typeof topic !== "string" || !topic.startsWith(THINGS_PREFIX)) return fail(TOPIC_MATCH_STATUS.NOT_SHADOW_TOPIC);

  const thingStart = THINGS_PREFIX.length;
  const thingEnd = topic.indexOf("/", thingStart);
  if (thingEnd < 0 || thingEnd === thingStart) return fail(TOPIC_MATCH_STATUS.THING_NAME_PARSE_FAILED);
  const thingName = topic.slice(thingStart, thingEnd);
  if (!nameCharsValid(thingName)) return fail(TOPIC_MATCH_STATUS.THING_NAME_PARSE_FAILED);
  if (thingName.length > AWS_SHADOW_LIMITS.THING_NAME_MAX) return fail(TOPIC_MATCH_STATUS.THING_NAME_LENGTH_EXCEEDED);

  const rootStart = thingEnd + 1;
  if (!topic.startsWith("shadow", rootStart)) return fail(TOPIC_MATCH_STATUS.ROOT_PARSE_FAILED);
  const afterRoot = rootStart + "shadow".length;
  if (afterRoot === topic.length) return fail(TOPIC_MATCH_STATUS.MESSAGE_TYPE_PARSE_FAILED);
  if (topic.charCodeAt(afterRoot) !== 0x2f) return fail(TOPIC_MATCH_STATUS.ROOT_PARSE_FAILED);

  let typeStart = afterRoot + 1;
  let shadowName: string | undefined;
  if (topic.startsWith("name/", typeStart)) {
    const nameStart = typeStart + "name/".length;
    let nameEnd = topic.indexOf("/", nameStart);
    if (nameEnd < 0) nameEnd = topic.length;
    shadowName = topic.slice(nameStart, nameEnd);
    if (shadowName.length === 0 || !nameCharsValid(shadowName)) return fail(TOPIC_MATCH_STATUS.SHADOW_NAME_PARSE_FAILED);
    if (shadowName.length > AWS_SHADOW_LIMITS.SHADOW_NAME_MAX) return fail(TOPIC_MATCH_STATUS.SHADOW_NAME_LENGTH_EXCEEDED);
    typeStart = nameEnd + 1;
  }

  const tail = typeStart <= topic.length ? topic.slice(typeStart) : "";
  const isResponse = SHADOW_RESPONSE_TYPES.includes(tail as ShadowMessageType);
  const isRequest = options.requests === true && SHADOW_REQUEST_TYPES.includes(tail as ShadowMessageType);
  if (!isResponse && !isRequest) return fail(TOPIC_MATCH_STATUS.MESSAGE_TYPE_PARSE_FAILED);

  const messageType = tail as ShadowMessageType;
  const slash = messageType.indexOf("/");
  const match: TopicMatch = {
    ok: true,
    thingName,
    operation: (slash < 0 ? messageType : messageType.slice(0, slash)) as ShadowOperation,
    messageType,
  };
  if (shadowName !== undefined) match.shadowName = shadowName;
  if (slash >= 0) match.suffix = messageType.slice(slash + 1) as ShadowResponseSuffix;
  return match;
}

/** matchTopic that throws SYNC_TOPIC_INVALID (`detail.status` = the TopicMatchStatus) instead. */
export function matchTopicOrThrow(topic: string, options: MatchOptions = {}): TopicMatch {
  const m = matchTopic(topic, options);
  if (!m.ok) {
    throw new ShadowOtaError(SYNC_CODES.SYNC_TOPIC_INVALID, `not a shadow topic (${m.status})`, { detail: { status: m.status } });
  }
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// Documents the service sends

/** state of get/accepted: each section present only when the shadow has it. */
export interface ShadowState {
  desired?: JsonObject;
  reported?: JsonObject;
  delta?: JsonObject;
}

/** get/accepted. */
export interface ShadowDocument {
  state: ShadowState;
  metadata?: JsonObject;
  version: number;
  timestamp?: number;
  clientToken?: string;
}

/** update/accepted: the request's state echoed; a section may be `null` when the request cleared it. */
export interface UpdateAcceptedDocument {
  state: { desired?: JsonObject | null; reported?: JsonObject | null };
  metadata?: JsonObject;
  version: number;
  timestamp?: number;
  clientToken?: string;
}

/** update/delta: `state` is the delta itself. */
export interface DeltaDocument {
  state: JsonObject;
  metadata?: JsonObject;
  version: number;
  timestamp?: number;
  clientToken?: string;
}

/** One side of update/documents. */
export interface ShadowSnapshot {
  state: { desired?: JsonObject; reported?: JsonObject };
  metadata?: JsonObject;
  version: number;
}

/** update/documents. `previous` is absent (or null) before the first version. */
export interface DocumentsDocument {
  previous?: ShadowSnapshot | null;
  current: ShadowSnapshot;
  timestamp?: number;
  clientToken?: string;
}

/** delete/accepted. */
export interface DeleteAcceptedDocument {
  version: number;
  timestamp?: number;
  clientToken?: string;
}

/** {get,update,delete}/rejected. `code` is the HTTP-like status (400, 404, 409, 413, …). */
export interface ErrorDocument {
  code: number;
  message: string;
  timestamp?: number;
  clientToken?: string;
}

export type AwsShadowMessage =
  | { type: "get/accepted"; doc: ShadowDocument }
  | { type: "update/accepted"; doc: UpdateAcceptedDocument }
  | { type: "update/delta"; doc: DeltaDocument }
  | { type: "update/documents"; doc: DocumentsDocument }
  | { type: "delete/accepted"; doc: DeleteAcceptedDocument }
  | { type: "get/rejected" | "update/rejected" | "delete/rejected"; doc: ErrorDocument };

/** SYNC_DOCUMENT_INVALID naming the field; with `awsMessage`, also the service's 400 and its words (the
 *  local cloud's half, src/sim/aws-shadow-cloud.ts, answers with them). */
export function documentInvalid(field: string, message: string, awsMessage?: string): ShadowOtaError {
  const detail: Record<string, string | number> = { field };
  if (awsMessage !== undefined) { detail.status = 400; detail.awsMessage = awsMessage; }
  return new ShadowOtaError(SYNC_CODES.SYNC_DOCUMENT_INVALID, message, { detail });
}

/**
 * bytes → JSON value, with the payload limits. Errors: SYNC_PAYLOAD_TOO_LARGE (before decoding),
 * SYNC_ENCODING_INVALID, SYNC_DEPTH_EXCEEDED, SYNC_JSON_INVALID. An empty payload is `undefined`.
 */
export function decodePayload(bytes: Uint8Array, limits: PayloadLimits = {}): Json | undefined {
  const maxBytes = limits.maxPayloadBytes ?? DEFAULT_AWS_PAYLOAD_LIMITS.maxPayloadBytes;
  if (!(bytes instanceof Uint8Array)) throw documentInvalid("payload", "payload is not bytes");
  if (bytes.length > maxBytes) {
    throw new ShadowOtaError(SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE, `payload of ${bytes.length} bytes exceeds ${maxBytes}`,
      { detail: { size: bytes.length, max: maxBytes, status: 413 } });
  }
  if (bytes.length === 0) return undefined;
  const text = utf8Decode(bytes);
  return parseJsonBounded(text, { maxLength: maxBytes, maxDepth: limits.maxDepth ?? DEFAULT_AWS_PAYLOAD_LIMITS.maxDepth });
}

function decodeObject(bytes: Uint8Array, limits: PayloadLimits): JsonObject {
  const v = decodePayload(bytes, limits);
  if (!isJsonObject(v)) throw documentInvalid("document", "document is not a JSON object");
  return v;
}

function has(o: JsonObject, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k);
}

function isCount(v: Json | undefined, min: number): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= min;
}

/** `o.version`, a positive safe integer, or SYNC_DOCUMENT_INVALID (400 "Invalid version"). */
export function readVersion(o: JsonObject, where = "version"): number {
  const v = o.version;
  if (!isCount(v, 1)) throw documentInvalid(where, `${where} must be a positive integer`, "Invalid version");
  return v;
}

/** Copies the optional timestamp and clientToken members after checking their types. */
function readCommon(o: JsonObject, out: { timestamp?: number; clientToken?: string }): void {
  if (has(o, "timestamp")) {
    if (!isCount(o.timestamp, 0)) throw documentInvalid("timestamp", "timestamp must be a non-negative integer");
    out.timestamp = o.timestamp;
  }
  if (has(o, "clientToken")) out.clientToken = validateClientToken(o.clientToken);
}

function readMetadata(o: JsonObject, out: { metadata?: JsonObject }): void {
  if (!has(o, "metadata")) return;
  if (!isJsonObject(o.metadata)) throw documentInvalid("metadata", "metadata must be an object");
  out.metadata = o.metadata;
}

/** `o.state`, an object, or SYNC_DOCUMENT_INVALID with the service's words for a missing or mistyped node. */
export function readState(o: JsonObject): JsonObject {
  if (!has(o, "state")) throw documentInvalid("state", "missing state", "Missing required node: state");
  if (!isJsonObject(o.state)) throw documentInvalid("state", "state must be an object", "State node must be an object");
  return o.state;
}

/** A desired/reported/delta section that must be an object when present. */
export function readSection(state: JsonObject, key: "desired" | "reported" | "delta", allowNull: false): JsonObject | undefined;
export function readSection(state: JsonObject, key: "desired" | "reported", allowNull: true): JsonObject | null | undefined;
export function readSection(state: JsonObject, key: string, allowNull: boolean): JsonObject | null | undefined {
  if (!has(state, key)) return undefined;
  const v = state[key]!;
  if (v === null && allowNull) return null;
  if (!isJsonObject(v)) {
    const node = key.charAt(0).toUpperCase() + key.slice(1);
    throw documentInvalid(`state.${key}`, `state.${key} must be an object`, `${node} node must be an object`);
  }
  return v;
}

function readSnapshot(v: Json | undefined, where: string): ShadowSnapshot {
  if (!isJsonObject(v)) throw documentInvalid(where, `${where} must be an object`);
  const state = readState(v);
  const out: ShadowSnapshot = { state: {}, version: readVersion(v, `${where}.version`) };
  const d = readSection(state, "desired", false);
  const r = readSection(state, "reported", false);
  if (d !== undefined) out.state.desired = d;
  if (r !== undefined) out.state.reported = r;
  readMetadata(v, out);
  return out;
}

/** get/accepted. Errors: the decodePayload codes, SYNC_DOCUMENT_INVALID, SYNC_CLIENT_TOKEN_INVALID. */
export function parseGetAccepted(bytes: Uint8Array, limits: PayloadLimits = {}): ShadowDocument {
  const o = decodeObject(bytes, limits);
  const state = readState(o);
  const doc: ShadowDocument = { state: {}, version: readVersion(o) };
  for (const k of ["desired", "reported", "delta"] as const) {
    const s = readSection(state, k, false);
    if (s !== undefined) doc.state[k] = s;
  }
  readMetadata(o, doc);
  readCommon(o, doc);
  return doc;
}

/** update/accepted. Errors as parseGetAccepted. */
export function parseUpdateAccepted(bytes: Uint8Array, limits: PayloadLimits = {}): UpdateAcceptedDocument {
  const o = decodeObject(bytes, limits);
  const state = readState(o);
  const doc: UpdateAcceptedDocument = { state: {}, version: readVersion(o) };
  for (const k of ["desired", "reported"] as const) {
    const s = readSection(state, k, true);
    if (s !== undefined) doc.state[k] = s;
  }
  readMetadata(o, doc);
  readCommon(o, doc);
  return doc;
}

/** update/delta. Errors as parseGetAccepted. */
export function parseDelta(bytes: Uint8Array, limits: PayloadLimits = {}): DeltaDocument {
  const o = decodeObject(bytes, limits);
  const doc: DeltaDocument = { state: readState(o), version: readVersion(o) };
  readMetadata(o, doc);
  readCommon(o, doc);
  return doc;
}

/** update/documents. Errors as parseGetAccepted. */
export function parseDocuments(bytes: Uint8Array, limits: PayloadLimits = {}): DocumentsDocument {
  const o = decodeObject(bytes, limits);
  const doc: DocumentsDocument = { current: readSnapshot(o.current, "current") };
  if (has(o, "previous")) doc.previous = o.previous === null ? null : readSnapshot(o.previous, "previous");
  readCommon(o, doc);
  return doc;
}

/** delete/accepted. Errors as parseGetAccepted. */
export function parseDeleteAccepted(bytes: Uint8Array, limits: PayloadLimits = {}): DeleteAcceptedDocument {
  const o = decodeObject(bytes, limits);
  const doc: DeleteAcceptedDocument = { version: readVersion(o) };
  readCommon(o, doc);
  return doc;
}

/** {get,update,delete}/rejected: `code` an integer 100..599, `message` a string. Errors as parseGetAccepted. */
export function parseErrorDocument(bytes: Uint8Array, limits: PayloadLimits = {}): ErrorDocument {
  const o = decodeObject(bytes, limits);
  if (!isCount(o.code, 100) || o.code > 599) throw documentInvalid("code", "error code must be an integer 100..599");
  if (typeof o.message !== "string") throw documentInvalid("message", "error message must be a string");
  const doc: ErrorDocument = { code: o.code, message: o.message };
  readCommon(o, doc);
  return doc;
}

/** Parses a payload received on a response topic by its message type. */
export function parseResponse(messageType: ShadowMessageType, bytes: Uint8Array, limits: PayloadLimits = {}): AwsShadowMessage {
  switch (messageType) {
    case "get/accepted": return { type: messageType, doc: parseGetAccepted(bytes, limits) };
    case "update/accepted": return { type: messageType, doc: parseUpdateAccepted(bytes, limits) };
    case "update/delta": return { type: messageType, doc: parseDelta(bytes, limits) };
    case "update/documents": return { type: messageType, doc: parseDocuments(bytes, limits) };
    case "delete/accepted": return { type: messageType, doc: parseDeleteAccepted(bytes, limits) };
    case "get/rejected":
    case "update/rejected":
    case "delete/rejected":
      return { type: messageType, doc: parseErrorDocument(bytes, limits) };
    default:
      throw new ShadowOtaError(SYNC_CODES.SYNC_TOPIC_INVALID, `${messageType} is not a response topic`,
        { detail: { status: TOPIC_MATCH_STATUS.MESSAGE_TYPE_PARSE_FAILED } });
  }
}

// ---------------------------------------------------------------------------------------------------------
// Request documents: built by the device (parsed by the local cloud: src/sim/aws-shadow-cloud.ts)

export interface StateLimits {
  /** desired + reported bytes (JSON text). Default AWS_SHADOW_LIMITS.STATE_MAX_BYTES. */
  maxStateBytes?: number;
  /** Nesting of each section (jsonDepth). Default AWS_SHADOW_LIMITS.STATE_MAX_DEPTH. */
  maxStateDepth?: number;
}

/** True when some array (at any depth) holds `null`; AWS rejects such updates. Iterative. */
function hasNullInArray(v: Json): boolean {
  const stack: Json[] = [v];
  while (stack.length > 0) {
    const x = stack.pop()!;
    if (Array.isArray(x)) {
      for (const e of x) { if (e === null) return true; stack.push(e); }
    } else if (isJsonObject(x)) {
      for (const k of Object.keys(x)) stack.push(x[k]!);
    }
  }
  return false;
}

/** Checks the state sections of an update against the service rules; throws the error it would answer.
 *  The device checks what it builds; the local cloud what it receives. */
export function checkUpdateState(state: { desired?: JsonObject | null; reported?: JsonObject | null }, limits: StateLimits): void {
  const maxDepth = limits.maxStateDepth ?? AWS_SHADOW_LIMITS.STATE_MAX_DEPTH;
  const maxBytes = limits.maxStateBytes ?? AWS_SHADOW_LIMITS.STATE_MAX_BYTES;
  let bytes = 0;
  for (const k of ["desired", "reported"] as const) {
    const s = state[k];
    if (s === undefined || s === null) continue;
    const depth = jsonDepth(s);
    if (depth > maxDepth) {
      throw new ShadowOtaError(SYNC_CODES.SYNC_DEPTH_EXCEEDED, `state.${k} nests ${depth} levels; the maximum is ${maxDepth}`,
        { detail: { status: 400, awsMessage: `JSON contains too many levels of nesting; maximum is ${maxDepth}`, depth, maxDepth } });
    }
    if (hasNullInArray(s)) throw documentInvalid(`state.${k}`, `state.${k} holds an array with null`, "Invalid JSON");
    bytes += utf8Encode(JSON.stringify(s)).length;
  }
  if (bytes > maxBytes) {
    throw new ShadowOtaError(SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE, `state of ${bytes} bytes exceeds ${maxBytes}`,
      { detail: { size: bytes, max: maxBytes, status: 413, awsMessage: "The payload exceeds the maximum size allowed" } });
  }
}

/** `{"clientToken":"…"}` for P/get (or P/delete). Throws SYNC_CLIENT_TOKEN_INVALID. */
export function buildGetRequest(clientToken: string): string {
  return JSON.stringify({ clientToken: validateClientToken(clientToken) });
}

export interface UpdateOptions {
  clientToken?: string;
  /** Only apply when the shadow is at this version (else 409 "Version conflict"). */
  version?: number;
  limits?: StateLimits;
}

/** `{"state":{section:…},"version"?,"clientToken"?}`, checked as the service would check it. The device
 *  builds reported updates (buildReportedUpdate); the cloud side's tools build desired ones. */
export function buildStateUpdate(section: "desired" | "reported", value: JsonObject | null, options: UpdateOptions = {}): string {
  if (value !== null && !isJsonObject(value)) throw documentInvalid(section, `${section} must be an object or null`);
  const state = { [section]: value } as { desired?: JsonObject | null; reported?: JsonObject | null };
  checkUpdateState(state, options.limits ?? {});
  const doc: JsonObject = { state: state as JsonObject };
  if (options.version !== undefined) {
    if (!isCount(options.version, 1)) throw documentInvalid("version", "version must be a positive integer", "Invalid version");
    doc.version = options.version;
  }
  if (options.clientToken !== undefined) doc.clientToken = validateClientToken(options.clientToken);
  return JSON.stringify(doc);
}

/**
 * `{"state":{"reported":…},"clientToken"?,"version"?}` for P/update, checked against the service rules
 * first (depth, arrays with null, 8 KB) so the device does not send what the service would reject.
 */
export function buildReportedUpdate(reported: JsonObject | null, options: UpdateOptions = {}): string {
  return buildStateUpdate("reported", reported, options);
}
