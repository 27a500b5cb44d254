/**
 * The one interface shadow-sync.ts talks to, whichever cloud holds the twin: what to subscribe to, how a
 * get and a reported update look on the wire, and `classify`, which turns any received message into one
 * normalized CloudEvent. Two adapters implement it from the pure modules: `awsProtocol` (aws-shadow.ts) and
 * `azureProtocol` (azure-twin.ts). Everything here is pure: no I/O, no state, no clock.
 *
 * How the clouds map onto the events:
 *
 *   event            AWS IoT Device Shadow                 Azure IoT Hub device twin
 *   document         get/accepted (token = clientToken)    res/200 of a GET (token = $rid, version = desired.$version)
 *   desired-delta    update/delta  (`delta`)               desired PATCH notification (`patch`, null deletes)
 *   report-accepted  update/accepted (shadow version)      res/204 of a reported PATCH (reported $version)
 *   rejected         get|update/rejected (error document)  res/4xx|5xx (status; body read leniently)
 *   method           —                                     methods/POST/{name}
 *   ignored          other shadows, non-shadow topics,     non-twin topics, 1xx/other 2xx statuses
 *                    update/documents, delete/*
 *   invalid          a malformed payload or a malformed topic in the cloud's namespace (the error says why)
 *
 * `classify` never throws for bad input: malformed messages come back as `{kind:"invalid", error}`.
 * Not here: correlation of tokens, versions, timeouts and what to do about an event (shadow-sync.ts).
 */
import {
  buildGetRequest,
  buildReportedUpdate,
  deviceSubscriptions,
  matchTopic,
  parseResponse,
  shadowTopic,
  validateShadowName,
  validateThingName,
  TOPIC_MATCH_STATUS,
  type PayloadLimits,
  type StateLimits,
} from "./aws-shadow";
import {
  AZURE_TOPIC_STATUS,
  azureSubscriptions,
  buildMethodResponse,
  buildReportedPatch,
  decodeAzurePayload,
  matchAzureTopic,
  parseDesiredPatchBody,
  parseTwinErrorBody,
  parseTwinGetBody,
  reportedPatchTopic,
  twinGetTopic,
  type AzurePayloadLimits,
} from "./azure-twin";
import { ShadowOtaError } from "./errors";
import type { Json, JsonObject } from "./json";
import { SYNC_CODES } from "./sync-errors";

export type CloudKind = "aws" | "azure";

/** A message to publish. */
export interface OutgoingMessage {
  topic: string;
  payload: string;
}

/** A received message, normalized. */
export type CloudEvent =
  /** The whole twin, answering the get whose token is `token` (absent when the service sent none). */
  | { kind: "document"; token?: string; desired: JsonObject; reported: JsonObject; version: number }
  /** Desired changed: AWS gives `delta` (desired leaves that differ from reported), Azure a `patch`
   *  of desired (null deletes). `version`: the shadow version (AWS) or desired `$version` (Azure). */
  | { kind: "desired-delta"; version: number; delta?: JsonObject; patch?: JsonObject }
  /** An update was accepted. `version`: the new shadow version (AWS) or reported `$version` (Azure; may be absent).
   *  `desired`: AWS's update/accepted echoed a desired state (an update by someone else: the service's API). */
  | { kind: "report-accepted"; token?: string; version?: number; desired?: true }
  /** A request was refused. `code`: SYNC_VERSION_CONFLICT for 409 (and Azure 412), else SYNC_REJECTED;
   *  `status` and `message` as the service sent them. */
  | { kind: "rejected"; token?: string; status: number; code: string; message: string }
  /** An Azure direct-method request; reply with `methodReply(rid, …)`. */
  | { kind: "method"; name: string; rid: string; payload: Json }
  /** Not for the sync (another shadow, another namespace, an event the device does not use). */
  | { kind: "ignored"; reason: string }
  /** Malformed: `error` says why (SYNC_TOPIC_INVALID, SYNC_JSON_INVALID, SYNC_DOCUMENT_INVALID, …). */
  | { kind: "invalid"; error: ShadowOtaError };

export interface CloudProtocol {
  readonly cloud: CloudKind;
  /** Topics to subscribe to after every connect, before the first get. */
  subscriptions(): string[];
  /** The get request carrying `token` (AWS clientToken, Azure $rid). */
  getRequest(token: string): OutgoingMessage;
  /**
   * A reported update carrying `token`. `version` (AWS only) makes the service refuse the update with 409
   * unless the shadow is still at that version; a version below 1 (no shadow yet: AWS numbers from 1) is
   * not sent. Azure ignores it. Throws (before anything is sent) what the service would refuse:
   * SYNC_DEPTH_EXCEEDED, SYNC_PAYLOAD_TOO_LARGE, SYNC_DOCUMENT_INVALID, SYNC_CLIENT_TOKEN_INVALID /
   * SYNC_NAME_INVALID for a bad token.
   */
  reportRequest(reportedPatch: JsonObject, token: string, version?: number): OutgoingMessage;
  /** The reply to a direct method (Azure); undefined for a cloud without direct methods (AWS). */
  methodReply(rid: string, status: number, payload: Json): OutgoingMessage | undefined;
  /** Normalizes a received message; never throws for bad input (see CloudEvent "invalid"). */
  classify(topic: string, payload: Uint8Array): CloudEvent;
}

/** Wraps a parser so that a ShadowOtaError becomes an "invalid" event; anything else is a bug and is rethrown. */
function guarded(fn: () => CloudEvent): CloudEvent {
  try {
    return fn();
  } catch (e) {
    if (e instanceof ShadowOtaError) return { kind: "invalid", error: e };
    throw e;
  }
}

function conflictCode(status: number): string {
  return status === 409 || status === 412 ? SYNC_CODES.SYNC_VERSION_CONFLICT : SYNC_CODES.SYNC_REJECTED;
}

export interface AwsProtocolOptions {
  thingName: string;
  /** A named shadow; absent for the classic shadow. */
  shadowName?: string;
  /** Limits for received payloads (see aws-shadow.ts PayloadLimits). */
  limits?: PayloadLimits;
  /** Limits checked before a reported update is sent. */
  stateLimits?: StateLimits;
}

/** The AWS IoT Device Shadow adapter. Throws SYNC_NAME_INVALID for a bad thing or shadow name. */
export function awsProtocol(options: AwsProtocolOptions): CloudProtocol {
  const thingName = validateThingName(options.thingName);
  const shadowName = options.shadowName === undefined ? undefined : validateShadowName(options.shadowName);
  const limits = options.limits ?? {};
  return {
    cloud: "aws",
    subscriptions: () => deviceSubscriptions(thingName, shadowName),
    getRequest: (token) => ({ topic: shadowTopic(thingName, shadowName, "get"), payload: buildGetRequest(token) }),
    reportRequest: (patch, token, version) => ({
      topic: shadowTopic(thingName, shadowName, "update"),
      payload: buildReportedUpdate(patch, version === undefined || version < 1
        ? { clientToken: token, limits: options.stateLimits ?? {} }
        : { clientToken: token, version, limits: options.stateLimits ?? {} }),
    }),
    methodReply: () => undefined,
    classify(topic, payload) {
      const m = matchTopic(topic);
      if (!m.ok) {
        if (m.status === TOPIC_MATCH_STATUS.NOT_SHADOW_TOPIC) return { kind: "ignored", reason: "not a shadow topic" };
        return { kind: "invalid", error: new ShadowOtaError(SYNC_CODES.SYNC_TOPIC_INVALID, `malformed shadow topic (${m.status})`, { detail: { status: m.status } }) };
      }
      if (m.thingName !== thingName || m.shadowName !== shadowName) return { kind: "ignored", reason: "another shadow" };
      return guarded(() => {
        const msg = parseResponse(m.messageType, payload, limits);
        switch (msg.type) {
          case "get/accepted": {
            const ev: CloudEvent = { kind: "document", desired: msg.doc.state.desired ?? {}, reported: msg.doc.state.reported ?? {}, version: msg.doc.version };
            if (msg.doc.clientToken !== undefined) ev.token = msg.doc.clientToken;
            return ev;
          }
          case "update/accepted": {
            const ev: CloudEvent = { kind: "report-accepted", version: msg.doc.version };
            if (msg.doc.clientToken !== undefined) ev.token = msg.doc.clientToken;
            if (msg.doc.state.desired !== undefined) ev.desired = true;
            return ev;
          }
          case "update/delta":
            return { kind: "desired-delta", delta: msg.doc.state, version: msg.doc.version };
          case "get/rejected":
          case "update/rejected": {
            const ev: CloudEvent = { kind: "rejected", status: msg.doc.code, code: conflictCode(msg.doc.code), message: msg.doc.message };
            if (msg.doc.clientToken !== undefined) ev.token = msg.doc.clientToken;
            return ev;
          }
          default:
            return { kind: "ignored", reason: `${msg.type} is not used by the device` };
        }
      });
    },
  };
}

export interface AzureProtocolOptions {
  /** Limits for received payloads (see azure-twin.ts AzurePayloadLimits). */
  limits?: AzurePayloadLimits;
}

/** The Azure IoT Hub device twin adapter. */
export function azureProtocol(options: AzureProtocolOptions = {}): CloudProtocol {
  const limits = options.limits ?? {};
  return {
    cloud: "azure",
    subscriptions: () => azureSubscriptions(),
    getRequest: (token) => ({ topic: twinGetTopic(token), payload: "" }),
    reportRequest: (patch, token) => ({ topic: reportedPatchTopic(token), payload: buildReportedPatch(patch) }),
    methodReply: (rid, status, payload) => buildMethodResponse(status, rid, payload),
    classify(topic, payload) {
      const m = matchAzureTopic(topic);
      if (!m.ok) {
        if (m.status === AZURE_TOPIC_STATUS.NOT_TWIN_TOPIC) return { kind: "ignored", reason: "not a twin topic" };
        return { kind: "invalid", error: new ShadowOtaError(SYNC_CODES.SYNC_TOPIC_INVALID, `malformed twin topic (${m.status})`, { detail: { status: m.status } }) };
      }
      return guarded(() => {
        switch (m.kind) {
          case "twin-response": {
            if (m.status === 200) {
              const twin = parseTwinGetBody(payload, limits);
              return { kind: "document", token: m.rid, desired: twin.desired, reported: twin.reported, version: twin.desiredVersion };
            }
            if (m.status === 204) {
              return m.version === undefined ? { kind: "report-accepted", token: m.rid } : { kind: "report-accepted", token: m.rid, version: m.version };
            }
            if (m.status >= 300) {
              const body = parseTwinErrorBody(payload, limits);
              return { kind: "rejected", token: m.rid, status: m.status, code: conflictCode(m.status), message: body.message ?? `status ${m.status}` };
            }
            return { kind: "ignored", reason: `twin response status ${m.status}` };
          }
          case "desired-patch": {
            const p = parseDesiredPatchBody(payload, limits);
            if (m.version !== undefined && m.version !== p.version) {
              throw new ShadowOtaError(SYNC_CODES.SYNC_DOCUMENT_INVALID, `$version ${p.version} in the body differs from ${m.version} in the topic`,
                { detail: { field: "$version" } });
            }
            return { kind: "desired-delta", patch: p.patch, version: p.version };
          }
          case "method-request": {
            const body = decodeAzurePayload(payload, limits);
            return { kind: "method", name: m.name, rid: m.rid, payload: body === undefined ? null : body };
          }
        }
      });
    },
  };
}

/** The adapter for `cloud`. */
export function cloudProtocol(cloud: CloudKind, options: { thingName: string; shadowName?: string; maxPayloadBytes?: number; maxDepth?: number }): CloudProtocol {
  const limits: { maxPayloadBytes?: number; maxDepth?: number } = {};
  // Stryker disable next-line ConditionalExpression: setting the member to undefined equals leaving it out (the parsers take undefined as the default).
  if (options.maxPayloadBytes !== undefined) limits.maxPayloadBytes = options.maxPayloadBytes;
  // Stryker disable next-line ConditionalExpression: setting the member to undefined equals leaving it out (the parsers take undefined as the default).
  if (options.maxDepth !== undefined) limits.maxDepth = options.maxDepth;
  if (cloud === "aws") {
    const o: AwsProtocolOptions = { thingName: options.thingName, limits };
    // Stryker disable next-line ConditionalExpression: as above (awsProtocol reads an undefined shadowName as the classic shadow).
    if (options.shadowName !== undefined) o.shadowName = options.shadowName;
    return awsProtocol(o);
  }
  return azureProtocol({ limits });
}
