/**
 * What the AWS shadow codec (src/core/aws-shadow.ts) says when it refuses something: the code, the message
 * the device logs and reports in `reported.lastError`, and `detail` — for the state rules a device checks
 * before it reports, the status and message the service itself would answer on …/rejected. One row per
 * rule, plus the inputs just inside each limit, which must pass. Jest subset only (runs on XS too).
 * The service's half (parsing requests) is tested in test/sim/aws-shadow-cloud.test.ts.
 */
import * as A from "../../src/core/aws-shadow";
import { ShadowOtaError } from "../../src/core/errors";
import { utf8Encode } from "../../src/core/utf8";

const b = (v: unknown) => utf8Encode(typeof v === "string" ? v : JSON.stringify(v));
const ok = { state: {}, version: 1 };

function refusal(f: () => unknown): { code: string; message: string; detail: unknown } {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ShadowOtaError);
    const err = e as ShadowOtaError;
    return { code: err.code, message: err.message, detail: err.detail };
  }
  throw new Error("accepted");
}

const REFUSALS: Array<[string, () => unknown, { code: string; message: string; detail: unknown }]> = [
  ["payload that is not bytes", () => A.decodePayload("{}" as unknown as Uint8Array),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "payload is not bytes", "detail": {"field": "payload"}}],
  ["payload one byte over the limit", () => A.decodePayload(b("[1,2,3]"), { maxPayloadBytes: 6 }),
    {"code": "SYNC_PAYLOAD_TOO_LARGE", "message": "payload of 7 bytes exceeds 6", "detail": {"size": 7, "max": 6, "status": 413}}],
  ["document that is not an object", () => A.parseGetAccepted(b("[1]")),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "document is not a JSON object", "detail": {"field": "document"}}],
  ["version 0", () => A.parseGetAccepted(b({ state: {}, version: 0 })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "version must be a positive integer", "detail": {"field": "version", "status": 400, "awsMessage": "Invalid version"}}],
  ["version not an integer", () => A.parseGetAccepted(b({ state: {}, version: 1.5 })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "version must be a positive integer", "detail": {"field": "version", "status": 400, "awsMessage": "Invalid version"}}],
  ["negative timestamp", () => A.parseGetAccepted(b({ ...ok, timestamp: -1 })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "timestamp must be a non-negative integer", "detail": {"field": "timestamp"}}],
  ["metadata not an object", () => A.parseGetAccepted(b({ ...ok, metadata: "m" })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "metadata must be an object", "detail": {"field": "metadata"}}],
  ["missing state", () => A.parseGetAccepted(b({ version: 1 })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "missing state", "detail": {"field": "state", "status": 400, "awsMessage": "Missing required node: state"}}],
  ["state not an object", () => A.parseGetAccepted(b({ state: 1, version: 1 })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "state must be an object", "detail": {"field": "state", "status": 400, "awsMessage": "State node must be an object"}}],
  ["state.desired not an object", () => A.parseGetAccepted(b({ state: { desired: 1 }, version: 1 })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "state.desired must be an object", "detail": {"field": "state.desired", "status": 400, "awsMessage": "Desired node must be an object"}}],
  ["state.delta null in a get", () => A.parseGetAccepted(b({ state: { delta: null }, version: 1 })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "state.delta must be an object", "detail": {"field": "state.delta", "status": 400, "awsMessage": "Delta node must be an object"}}],
  ["documents: current not an object", () => A.parseDocuments(b({ current: 1 })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "current must be an object", "detail": {"field": "current"}}],
  ["documents: previous not an object", () => A.parseDocuments(b({ current: { state: {}, version: 1 }, previous: 2 })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "previous must be an object", "detail": {"field": "previous"}}],
  ["documents: current version missing", () => A.parseDocuments(b({ current: { state: {} } })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "current.version must be a positive integer", "detail": {"field": "current.version", "status": 400, "awsMessage": "Invalid version"}}],
  ["error code 99", () => A.parseErrorDocument(b({ code: 99, message: "m" })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "error code must be an integer 100..599", "detail": {"field": "code"}}],
  ["error code 600", () => A.parseErrorDocument(b({ code: 600, message: "m" })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "error code must be an integer 100..599", "detail": {"field": "code"}}],
  ["error message not a string", () => A.parseErrorDocument(b({ code: 400, message: 5 })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "error message must be a string", "detail": {"field": "message"}}],
  ["a request type is not a response", () => A.parseResponse("update", b(ok)),
    {"code": "SYNC_TOPIC_INVALID", "message": "update is not a response topic", "detail": {"status": "MESSAGE_TYPE_PARSE_FAILED"}}],
  ["reported that is not an object", () => A.buildReportedUpdate(5 as unknown as null),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "reported must be an object or null", "detail": {"field": "reported"}}],
  ["report nested too deep", () => A.buildReportedUpdate({ a: { b: { c: { d: { e: { f: { g: 1 } } } } } } }),
    {"code": "SYNC_DEPTH_EXCEEDED", "message": "state.reported nests 7 levels; the maximum is 6", "detail": {"status": 400, "awsMessage": "JSON contains too many levels of nesting; maximum is 6", "depth": 7, "maxDepth": 6}}],
  ["report with an array holding null", () => A.buildReportedUpdate({ a: [1, [null]] }),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "state.reported holds an array with null", "detail": {"field": "state.reported", "status": 400, "awsMessage": "Invalid JSON"}}],
  ["report over a configured state limit", () => A.buildReportedUpdate({ a: "x".repeat(20) }, { limits: { maxStateBytes: 20 } }),
    {"code": "SYNC_PAYLOAD_TOO_LARGE", "message": "state of 28 bytes exceeds 20", "detail": {"size": 28, "max": 20, "status": 413, "awsMessage": "The payload exceeds the maximum size allowed"}}],
  ["report deeper than a configured depth", () => A.buildReportedUpdate({ a: { b: 1 } }, { limits: { maxStateDepth: 1 } }),
    {"code": "SYNC_DEPTH_EXCEEDED", "message": "state.reported nests 2 levels; the maximum is 1", "detail": {"status": 400, "awsMessage": "JSON contains too many levels of nesting; maximum is 1", "depth": 2, "maxDepth": 1}}],
  ["report with version 0", () => A.buildReportedUpdate({ a: 1 }, { version: 0 }),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "version must be a positive integer", "detail": {"field": "version", "status": 400, "awsMessage": "Invalid version"}}],
  ["empty thing name", () => A.validateThingName(""),
    {"code": "SYNC_NAME_INVALID", "message": "thing name must be 1..128 characters of [a-zA-Z0-9:_-]", "detail": {"kind": "thing", "length": 0}}],
  ["thing name not a string", () => A.validateThingName(7),
    {"code": "SYNC_NAME_INVALID", "message": "thing name must be 1..128 characters of [a-zA-Z0-9:_-]", "detail": {"kind": "thing", "length": null}}],
  ["thing name of 129 characters", () => A.validateThingName("t".repeat(129)),
    {"code": "SYNC_NAME_INVALID", "message": "thing name must be 1..128 characters of [a-zA-Z0-9:_-]", "detail": {"kind": "thing", "length": 129}}],
  ["shadow name with a slash", () => A.validateShadowName("a/b"),
    {"code": "SYNC_NAME_INVALID", "message": "shadow name must be 1..64 characters of [a-zA-Z0-9:_-]", "detail": {"kind": "shadow", "length": 3}}],
  ["shadow name of 65 characters", () => A.validateShadowName("s".repeat(65)),
    {"code": "SYNC_NAME_INVALID", "message": "shadow name must be 1..64 characters of [a-zA-Z0-9:_-]", "detail": {"kind": "shadow", "length": 65}}],
  ["clientToken of 65 characters", () => A.validateClientToken("c".repeat(65)),
    {"code": "SYNC_CLIENT_TOKEN_INVALID", "message": "clientToken must be a string of 1..64 UTF-8 bytes", "detail": {"status": 400, "awsMessage": "Invalid clientToken"}}],
  ["clientToken of 33 two-byte characters", () => A.validateClientToken("é".repeat(33)),
    {"code": "SYNC_CLIENT_TOKEN_INVALID", "message": "clientToken must be a string of 1..64 UTF-8 bytes", "detail": {"status": 400, "awsMessage": "Invalid clientToken"}}],
  ["clientToken not a string", () => A.validateClientToken(1),
    {"code": "SYNC_CLIENT_TOKEN_INVALID", "message": "clientToken must be a string of 1..64 UTF-8 bytes", "detail": {"status": 400, "awsMessage": "Invalid clientToken"}}],
  ["topic not a shadow topic", () => A.matchTopicOrThrow("$aws/jobs/x"),
    {"code": "SYNC_TOPIC_INVALID", "message": "not a shadow topic (NOT_SHADOW_TOPIC)", "detail": {"status": "NOT_SHADOW_TOPIC"}}],
  ["topic not a string", () => A.matchTopicOrThrow(5 as unknown as string),
    {"code": "SYNC_TOPIC_INVALID", "message": "not a shadow topic (NOT_SHADOW_TOPIC)", "detail": {"status": "NOT_SHADOW_TOPIC"}}],
];

describe("AWS shadow codec refusals", () => {
  it.each(REFUSALS)("%s", (_name, f, expected) => {
    expect(refusal(f)).toEqual(expected);
  });
});

describe("just inside the limits", () => {
  it("a payload of exactly the limit is decoded", () => {
    expect(A.decodePayload(b("[1,2,3]"), { maxPayloadBytes: 7 })).toEqual([1, 2, 3]);
    expect(A.decodePayload(new Uint8Array(0))).toBeUndefined();
  });

  it("error codes 100 and 599 are read, with clientToken and timestamp", () => {
    expect(A.parseErrorDocument(b({ code: 100, message: "m" }))).toEqual({ code: 100, message: "m" });
    expect(A.parseErrorDocument(b({ code: 599, message: "m", clientToken: "t", timestamp: 0 }))).toEqual({ code: 599, message: "m", clientToken: "t", timestamp: 0 });
  });

  it("names and tokens at their maximum lengths", () => {
    expect(A.validateThingName("t".repeat(128))).toHaveLength(128);
    expect(A.validateShadowName("s".repeat(64))).toHaveLength(64);
    expect(A.validateClientToken("c".repeat(64))).toHaveLength(64);
    expect(A.validateClientToken("é".repeat(32))).toHaveLength(32);
  });

  it("get/accepted keeps desired, reported and delta; update/accepted keeps null sections", () => {
    expect(A.parseGetAccepted(b({ state: { desired: { a: 1 }, reported: { b: 2 }, delta: { a: 1 } }, version: 3, metadata: {}, timestamp: 5, clientToken: "g1" })))
      .toEqual({ state: { desired: { a: 1 }, reported: { b: 2 }, delta: { a: 1 } }, version: 3, metadata: {}, timestamp: 5, clientToken: "g1" });
    expect(A.parseUpdateAccepted(b({ state: { desired: null }, version: 4 }))).toEqual({ state: { desired: null }, version: 4 });
    expect(A.parseResponse("update/accepted", b({ state: { reported: null }, version: 4 }))).toEqual({ type: "update/accepted", doc: { state: { reported: null }, version: 4 } });
  });

  it("update/documents: previous may be null or absent; snapshots keep their sections", () => {
    const cur = { state: { desired: { a: 1 }, reported: { a: 2 } }, version: 2, metadata: {} };
    expect(A.parseDocuments(b({ current: cur, previous: null }))).toEqual({ current: cur, previous: null });
    expect(A.parseDocuments(b({ current: { state: {}, version: 2 } }))).toEqual({ current: { state: {}, version: 2 } });
  });

  it("a report of exactly the state limit and depth is built; a null report counts nothing", () => {
    expect(JSON.parse(A.buildReportedUpdate({ a: "x".repeat(12) }, { limits: { maxStateBytes: 20 } }))).toEqual({ state: { reported: { a: "x".repeat(12) } } });
    expect(JSON.parse(A.buildReportedUpdate({ a: { b: { c: { d: { e: { f: 1 } } } } } }))).toEqual({ state: { reported: { a: { b: { c: { d: { e: { f: 1 } } } } } } } });
    expect(JSON.parse(A.buildReportedUpdate(null, { limits: { maxStateBytes: 0 } }))).toEqual({ state: { reported: null } });
    expect(JSON.parse(A.buildReportedUpdate({ a: [1, [2, [3]]] }))).toEqual({ state: { reported: { a: [1, [2, [3]]] } } });
    expect(refusal(() => A.buildReportedUpdate({ a: [{ b: [null] }] })).message).toBe("state.reported holds an array with null");
  });

  it("a report with a version and a clientToken carries both", () => {
    expect(JSON.parse(A.buildReportedUpdate({ a: 1 }, { version: 1, clientToken: "r1" }))).toEqual({ state: { reported: { a: 1 } }, version: 1, clientToken: "r1" });
  });
});

describe("topic matching at the edges of its grammar", () => {
  const status = (t: string, requests = false) => {
    const m = A.matchTopic(t, { requests });
    return m.ok ? m : m.status;
  };
  it("thing names: empty, not followed by /, too long, at the maximum", () => {
    expect(status("$aws/things/")).toBe("THING_NAME_PARSE_FAILED");
    expect(status("$aws/things/x")).toBe("THING_NAME_PARSE_FAILED");
    expect(status("$aws/things//shadow/get/accepted")).toBe("THING_NAME_PARSE_FAILED");
    expect(status(`$aws/things/${"t".repeat(129)}/shadow/get/accepted`)).toBe("THING_NAME_LENGTH_EXCEEDED");
    expect(status(`$aws/things/${"t".repeat(128)}/shadow/get/accepted`)).toEqual({ ok: true, thingName: "t".repeat(128), operation: "get", suffix: "accepted", messageType: "get/accepted" });
    expect(status("$aws/things/a/shadow/get/accepted")).toEqual({ ok: true, thingName: "a", operation: "get", suffix: "accepted", messageType: "get/accepted" });
  });

  it("shadow names: at the end of the topic, empty, too long", () => {
    expect(status("$aws/things/t/shadow/name/n")).toBe("MESSAGE_TYPE_PARSE_FAILED");
    expect(status("$aws/things/t/shadow/name/")).toBe("SHADOW_NAME_PARSE_FAILED");
    expect(status(`$aws/things/t/shadow/name/${"n".repeat(65)}/get/accepted`)).toBe("SHADOW_NAME_LENGTH_EXCEEDED");
    expect(status("$aws/things/t/shadow/name/n/update/delta")).toEqual({ ok: true, thingName: "t", shadowName: "n", operation: "update", suffix: "delta", messageType: "update/delta" });
  });

  it("request topics only when asked for, and without a suffix", () => {
    expect(status("$aws/things/t/shadow/update")).toBe("MESSAGE_TYPE_PARSE_FAILED");
    expect(status("$aws/things/t/shadow/update", true)).toEqual({ ok: true, thingName: "t", operation: "update", messageType: "update" });
    expect(status("$aws/things/t/shadow/name/n/get", true)).toEqual({ ok: true, thingName: "t", shadowName: "n", operation: "get", messageType: "get" });
  });
});
