/**
 * The service's half of the AWS IoT Device Shadow codec: parsing and validating the requests a device (or a
 * tool) publishes on `…/get`, `…/update` and `…/delete` as the service does, building the error documents
 * the service publishes on `…/rejected`, and building desired updates (tools, tests). Pure, like
 * src/core/aws-shadow.ts, whose helpers it uses.
 *
 * It lives with the local cloud, not in src/core, because the device never receives a request: manifest.json
 * maps core/* into the firmware, and nothing here belongs on the ESP32.
 *
 * Source of the rules: docs/protocols.md §1 (documents §1.2–1.6). The error codes and the service's words are
 * those of aws-shadow.ts (SYNC_CODES, `detail.status`, `detail.awsMessage`).
 */
import {
  AWS_SHADOW_LIMITS,
  buildStateUpdate,
  checkUpdateState,
  decodePayload,
  documentInvalid,
  readSection,
  readState,
  readVersion,
  validateClientToken,
  type PayloadLimits,
  type StateLimits,
  type UpdateOptions,
} from "../core/aws-shadow";
import { ShadowOtaError } from "../core/errors";
import { isJsonObject, type JsonObject } from "../core/json";
import { SYNC_CODES } from "../core/sync-errors";

/** A parsed update request. A section set to `null` clears it. */
export interface UpdateRequest {
  state: { desired?: JsonObject | null; reported?: JsonObject | null };
  version?: number;
  clientToken?: string;
}

function has(o: JsonObject, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k);
}

/**
 * Parses and validates an update request as the service does. Errors carry `detail.status` and
 * `detail.awsMessage` (the error document the service would publish on update/rejected): the decodePayload
 * codes (an empty payload is SYNC_JSON_INVALID), SYNC_DOCUMENT_INVALID (missing/mistyped state, a node other
 * than desired/reported under state, desired/reported not an object or null, bad version, array with null),
 * SYNC_CLIENT_TOKEN_INVALID, SYNC_DEPTH_EXCEEDED, SYNC_PAYLOAD_TOO_LARGE (state over 8 KB).
 */
export function parseUpdateRequest(bytes: Uint8Array, limits: PayloadLimits & StateLimits = {}): UpdateRequest {
  const v = decodePayload(bytes, { maxPayloadBytes: limits.maxPayloadBytes ?? AWS_SHADOW_LIMITS.PUBLISH_MAX_BYTES, maxDepth: limits.maxDepth ?? 64 });
  if (v === undefined) throw new ShadowOtaError(SYNC_CODES.SYNC_JSON_INVALID, "empty update", { detail: { status: 400, awsMessage: "Invalid JSON" } });
  if (!isJsonObject(v)) throw documentInvalid("document", "update is not a JSON object", "Invalid JSON");
  const state = readState(v);
  for (const k of Object.keys(state)) {
    if (k !== "desired" && k !== "reported") throw documentInvalid(`state.${k}`, `state holds ${k}`, "State contains an invalid node");
  }
  const req: UpdateRequest = { state: {} };
  for (const k of ["desired", "reported"] as const) {
    const s = readSection(state, k, true);
    if (s !== undefined) req.state[k] = s;
  }
  if (has(v, "version")) req.version = readVersion(v);
  if (has(v, "clientToken")) req.clientToken = validateClientToken(v.clientToken);
  checkUpdateState(req.state, limits);
  return req;
}

/** A get (or delete) request: an empty payload or `{"clientToken":"…"}`. Errors as parseUpdateRequest. */
export function parseGetRequest(bytes: Uint8Array, limits: PayloadLimits = {}): { clientToken?: string } {
  const v = decodePayload(bytes, limits);
  if (v === undefined) return {};
  if (!isJsonObject(v)) throw documentInvalid("document", "get request is not a JSON object", "Invalid JSON");
  return has(v, "clientToken") ? { clientToken: validateClientToken(v.clientToken) } : {};
}

/** `{"state":{"desired":…}}` for P/update, sent by the cloud side (tools, tests). Checked as the device's
 *  buildReportedUpdate (src/core/aws-shadow.ts). */
export function buildDesiredUpdate(desired: JsonObject | null, options: UpdateOptions = {}): string {
  return buildStateUpdate("desired", desired, options);
}

/** An error document as the service publishes it on …/rejected. */
export function buildErrorDocument(code: number, message: string, extra: { timestamp?: number; clientToken?: string } = {}): string {
  const doc: JsonObject = { code, message };
  if (extra.timestamp !== undefined) doc.timestamp = extra.timestamp;
  if (extra.clientToken !== undefined) doc.clientToken = extra.clientToken;
  return JSON.stringify(doc);
}
