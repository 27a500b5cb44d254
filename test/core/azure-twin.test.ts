/**
 * Tests of src/core/azure-twin.ts from data (test/vectors/azure-twin.json): the device's topic building and
 * matching (including hostile query strings), GET bodies, desired notifications, reported-patch limits,
 * direct methods and their replies, the `firmwareUpdate` trigger (the hub's builders and its reading of
 * reported patches: test/sim/azure-twin-cloud.test.ts). Plus bad input: a 100 KB payload, deep nesting,
 * oversize keys and strings. Jest subset only (runs on XS).
 */
import v from "../vectors/azure-twin.json";
import type { Json, JsonObject } from "../../src/core/json";
import { utf8Encode } from "../../src/core/utf8";
import { SYNC_CODES } from "../../src/core/sync-errors";
import {
  AZURE_TWIN_LIMITS,
  QUERY_MAX_LENGTH,
  azureSubscriptions,
  buildMethodResponse,
  buildReportedPatch,
  matchAzureTopic,
  matchAzureTopicOrThrow,
  methodResponseTopic,
  parseDesiredPatchBody,
  parseFirmwareUpdatePayload,
  parseMethodRequest,
  parseQuery,
  parseTwinErrorBody,
  parseTwinGetBody,
  reportedPatchTopic,
  twinGetTopic,
} from "../../src/core/azure-twin";
import { errorOf } from "./error-of";

type BuildVector = { fn: string; rid?: string; status?: number; version?: number; name?: string; topic?: string; code?: string };
/** The topics a device builds; the hub's (twinResponse, desiredPatch, methodRequest) are test/sim/azure-twin-cloud.test.ts's. */
const HUB_BUILDERS = ["twinResponse", "desiredPatch", "methodRequest"];
function build(b: BuildVector): string {
  switch (b.fn) {
    case "twinGet": return twinGetTopic(b.rid!);
    case "reportedPatch": return reportedPatchTopic(b.rid!);
    case "methodResponse": return methodResponseTopic(b.status!, b.rid!);
    default: throw new Error(`unknown builder ${b.fn}`);
  }
}

describe("topics", () => {
  it("subscriptions", () => {
    expect(azureSubscriptions()).toEqual(v.subscriptions);
  });
  for (const b of (v.build as BuildVector[]).filter((b) => !HUB_BUILDERS.includes(b.fn))) {
    it(`builds ${b.topic}`, () => {
      expect(build(b)).toBe(b.topic);
    });
  }
  for (const b of (v.buildInvalid as BuildVector[]).filter((b) => !HUB_BUILDERS.includes(b.fn))) {
    it(`refuses to build ${b.fn} from ${JSON.stringify(b)}`, () => {
      expect(errorOf(() => build(b)).code).toBe(b.code);
    });
  }
  for (const m of v.match as Array<{ topic: string; expect: object }>) {
    it(`matches ${m.topic}`, () => {
      expect(matchAzureTopic(m.topic)).toStrictEqual(m.expect);
      expect(matchAzureTopicOrThrow(m.topic)).toStrictEqual(m.expect);
    });
  }
  for (const f of v.fail as Array<{ topic: string; status: string }>) {
    it(`refuses ${JSON.stringify(f.topic.slice(0, 80))} with ${f.status}`, () => {
      expect(matchAzureTopic(f.topic)).toStrictEqual({ ok: false, status: f.status });
      const e = errorOf(() => matchAzureTopicOrThrow(f.topic));
      expect(e.code).toBe(SYNC_CODES.SYNC_TOPIC_INVALID);
      expect(e.detail).toEqual({ status: f.status });
    });
  }
  it("bounds hostile query strings", () => {
    const long = "$iothub/twin/res/200/?$rid=1&x=" + "a".repeat(QUERY_MAX_LENGTH);
    expect(matchAzureTopic(long)).toStrictEqual({ ok: false, status: "QUERY_INVALID" });
    const many = "$iothub/twin/res/200/?$rid=1" + Array.from({ length: 20 }, (_, i) => `&p${i}=1`).join("");
    expect(matchAzureTopic(many)).toStrictEqual({ ok: false, status: "QUERY_INVALID" });
    const entries = (q: string): unknown => { const m = parseQuery(q); return typeof m === "string" ? m : Array.from(m); };
    expect(entries("a=1&b=&c==")).toEqual([["a", "1"], ["b", ""], ["c", "="]]);
    expect(entries("__proto__=1")).toEqual([["__proto__", "1"]]);
    expect(entries("a=1&a=2")).toBe("QUERY_INVALID");
  });
});

describe("bodies", () => {
  for (const b of v.getBodies as Array<{ name: string; payload: string; expect: object }>) {
    it(`parses GET body: ${b.name}`, () => {
      expect(parseTwinGetBody(utf8Encode(b.payload))).toStrictEqual(b.expect);
    });
  }
  for (const b of v.getBodiesInvalid as Array<{ name: string; payload: string; code: string; field?: string }>) {
    it(`refuses GET body: ${b.name}`, () => {
      const e = errorOf(() => parseTwinGetBody(utf8Encode(b.payload)));
      expect(e.code).toBe(b.code);
      if (b.field !== undefined) expect(e.detail?.field).toBe(b.field);
    });
  }
  for (const b of v.desiredPatches as Array<{ name: string; payload: string; expect: object }>) {
    it(`parses desired notification: ${b.name}`, () => {
      expect(parseDesiredPatchBody(utf8Encode(b.payload))).toStrictEqual(b.expect);
    });
  }
  for (const b of v.desiredPatchesInvalid as Array<{ name: string; payload: string; code: string; field?: string }>) {
    it(`refuses desired notification: ${b.name}`, () => {
      const e = errorOf(() => parseDesiredPatchBody(utf8Encode(b.payload)));
      expect(e.code).toBe(b.code);
      if (b.field !== undefined) expect(e.detail?.field).toBe(b.field);
    });
  }
  it("refuses a 100 KB body before decoding it", () => {
    const big = utf8Encode(JSON.stringify({ blob: "x".repeat(100 * 1024), $version: 1 }));
    expect(errorOf(() => parseDesiredPatchBody(big)).code).toBe(SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE);
    expect(errorOf(() => parseTwinGetBody(big)).code).toBe(SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE);
  });
  it("reads error bodies leniently and never throws", () => {
    expect(parseTwinErrorBody(utf8Encode('{"errorCode":400027,"message":"bad"}'))).toEqual({ errorCode: 400027, message: "bad" });
    expect(parseTwinErrorBody(new Uint8Array(0))).toEqual({});
    expect(parseTwinErrorBody(utf8Encode("{nope"))).toEqual({ bodyError: "SYNC_JSON_INVALID" });
    expect(parseTwinErrorBody(Uint8Array.from([0xff]))).toEqual({ bodyError: "SYNC_ENCODING_INVALID" });
  });
});

describe("reported patches", () => {
  for (const p of v.reportedPatches as unknown as Array<{ patch: JsonObject; payload: string }>) {
    it(`builds ${p.payload}`, () => {
      expect(buildReportedPatch(p.patch)).toBe(p.payload);
    });
  }
  for (const p of v.reportedPatchesInvalid as unknown as Array<{ name: string; patch: JsonObject; code: string }>) {
    it(`refuses ${p.name}`, () => {
      expect(errorOf(() => buildReportedPatch(p.patch)).code).toBe(p.code);
    });
  }
  it("enforces the key, string and size limits", () => {
    expect(buildReportedPatch({ ["k".repeat(1024)]: 1 })).toBeDefined();
    expect(errorOf(() => buildReportedPatch({ ["k".repeat(1025)]: 1 })).code).toBe(SYNC_CODES.SYNC_DOCUMENT_INVALID);
    expect(buildReportedPatch({ s: "x".repeat(AZURE_TWIN_LIMITS.STRING_MAX_BYTES) })).toBeDefined();
    expect(errorOf(() => buildReportedPatch({ s: "x".repeat(4097) })).code).toBe(SYNC_CODES.SYNC_DOCUMENT_INVALID);
    expect(errorOf(() => buildReportedPatch({ a: ["ok", "é".repeat(2049)] })).code).toBe(SYNC_CODES.SYNC_DOCUMENT_INVALID);
    const nine: JsonObject = {};
    for (let i = 0; i < 9; i++) nine[`k${i}`] = "x".repeat(4000);
    expect(errorOf(() => buildReportedPatch(nine)).code).toBe(SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE);
  });
});

describe("direct methods", () => {
  for (const m of v.methods as Array<{ topic: string; payload: string; expect: object; firmwareVersion?: string }>) {
    it(`parses ${m.topic}`, () => {
      const req = parseMethodRequest(m.topic, utf8Encode(m.payload));
      expect(req).toStrictEqual(m.expect);
      if (m.firmwareVersion !== undefined) expect(parseFirmwareUpdatePayload(req.payload)).toEqual({ version: m.firmwareVersion });
    });
  }
  for (const m of v.methodsInvalid as Array<{ topic: string; payload: string; code: string }>) {
    it(`refuses ${m.topic} ${m.payload}`, () => {
      expect(errorOf(() => parseMethodRequest(m.topic, utf8Encode(m.payload))).code).toBe(m.code);
    });
  }
  it("refuses firmwareUpdate payloads without a version", () => {
    for (const p of v.firmwarePayloadsInvalid as Json[]) {
      expect(errorOf(() => parseFirmwareUpdatePayload(p)).code).toBe(SYNC_CODES.SYNC_DOCUMENT_INVALID);
    }
  });
  it("passes a non-semver version through for the caller to judge", () => {
    expect(parseFirmwareUpdatePayload({ version: "../../etc" })).toEqual({ version: "../../etc" });
  });
  for (const r of v.methodReplies as Array<{ status: number; rid: string; payload: Json; expect: object }>) {
    it(`builds the reply ${r.expect && JSON.stringify(r.expect)}`, () => {
      expect(buildMethodResponse(r.status, r.rid, r.payload)).toStrictEqual(r.expect);
    });
  }
});
