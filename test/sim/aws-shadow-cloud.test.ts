/**
 * The service's half of the AWS shadow codec (src/sim/aws-shadow-cloud.ts): every request vector in
 * test/vectors/aws-shadow-documents.json parsed or refused as the service would (code, and the status and
 * words the local cloud sends back on …/rejected), get requests, the desired builder's vectors, every text
 * the device's builders produce accepted by the service, error documents, and the state limits at their
 * edges.
 */
import docs from "../vectors/aws-shadow-documents.json";
import * as A from "../../src/core/aws-shadow";
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { SYNC_CODES } from "../../src/core/sync-errors";
import { utf8Encode } from "../../src/core/utf8";
import * as C from "../../src/sim/aws-shadow-cloud";
import { buildDesiredUpdate, buildErrorDocument, parseGetRequest, parseUpdateRequest } from "../../src/sim/aws-shadow-cloud";
import { errorOf } from "../core/error-of";

const b = (v: unknown) => utf8Encode(typeof v === "string" ? v : JSON.stringify(v));

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
  ["empty update", () => C.parseUpdateRequest(new Uint8Array(0)),
    {"code": "SYNC_JSON_INVALID", "message": "empty update", "detail": {"status": 400, "awsMessage": "Invalid JSON"}}],
  ["update that is not an object", () => C.parseUpdateRequest(b("[1]")),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "update is not a JSON object", "detail": {"field": "document", "status": 400, "awsMessage": "Invalid JSON"}}],
  ["update with state.delta", () => C.parseUpdateRequest(b({ state: { delta: {} } })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "state holds delta", "detail": {"field": "state.delta", "status": 400, "awsMessage": "State contains an invalid node"}}],
  ["update nested too deep", () => C.parseUpdateRequest(b({ state: { reported: { a: { b: { c: { d: { e: { f: { g: { h: { i: 1 } } } } } } } } } } })),
    {"code": "SYNC_DEPTH_EXCEEDED", "message": "state.reported nests 9 levels; the maximum is 6", "detail": {"status": 400, "awsMessage": "JSON contains too many levels of nesting; maximum is 6", "depth": 9, "maxDepth": 6}}],
  ["update with an array holding null", () => C.parseUpdateRequest(b({ state: { desired: { a: [1, [null]] } } })),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "state.desired holds an array with null", "detail": {"field": "state.desired", "status": 400, "awsMessage": "Invalid JSON"}}],
  ["update state over the limit", () => C.parseUpdateRequest(b({ state: { reported: { a: "x".repeat(20) } } }), { maxStateBytes: 20 }),
    {"code": "SYNC_PAYLOAD_TOO_LARGE", "message": "state of 28 bytes exceeds 20", "detail": {"size": 28, "max": 20, "status": 413, "awsMessage": "The payload exceeds the maximum size allowed"}}],
  ["get request that is not an object", () => C.parseGetRequest(b("1")),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "get request is not a JSON object", "detail": {"field": "document", "status": 400, "awsMessage": "Invalid JSON"}}],
  ["desired that is not an object", () => C.buildDesiredUpdate("x" as unknown as null),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "desired must be an object or null", "detail": {"field": "desired"}}],
];

describe("AWS shadow service refusals", () => {
  it.each(REFUSALS)("%s", (_name, f, expected) => {
    expect(refusal(f)).toEqual(expected);
  });
});

describe("just inside the service's limits", () => {
  it("a state of exactly the limit is accepted; null sections count nothing", () => {
    expect(C.parseUpdateRequest(b({ state: { reported: { a: "x".repeat(12) } } }), { maxStateBytes: 20 }).state.reported).toEqual({ a: "x".repeat(12) });
    expect(C.parseUpdateRequest(b({ state: { desired: null, reported: { a: 1 } } }), { maxStateBytes: 7 }).state).toEqual({ desired: null, reported: { a: 1 } });
    expect(C.parseUpdateRequest(b({ state: { reported: { a: { b: { c: { d: { e: { f: 1 } } } } } } } })).state.reported).toBeDefined();
  });

  it("an update request's default limits are the service's, not the device's payload limit", () => {
    const big = { state: { reported: { a: "x".repeat(7000) } } };
    expect(C.parseUpdateRequest(b(big)).state.reported).toEqual(big.state.reported);
    const deepArrays = { state: { reported: { a: [[[[[[[[[[[[1]]]]]]]]]]]] } } };
    // Decoded with the service's depth (64), so the state rule is the one that answers.
    expect(refusal(() => C.parseUpdateRequest(b(deepArrays))).message).toBe("state.reported nests 13 levels; the maximum is 6");
    // A 40 KB update (an unknown top-level member) is within the service's 128 KB publish limit.
    expect(C.parseUpdateRequest(b({ state: { reported: { a: 1 } }, x: "y".repeat(40_000) })).state).toEqual({ reported: { a: 1 } });
  });

  it("arrays without null pass, however nested; objects inside arrays are searched", () => {
    expect(C.parseUpdateRequest(b({ state: { reported: { a: [1, [2, [3]]] } } })).state.reported).toEqual({ a: [1, [2, [3]]] });
    expect(refusal(() => C.parseUpdateRequest(b({ state: { reported: { a: [{ b: [null] }] } } }))).message).toBe("state.reported holds an array with null");
  });

});

describe("request documents (local cloud side)", () => {
  for (const v of docs.requests.valid as Array<{ name: string; payload: string; expect: object }>) {
    it(`parses ${v.name}`, () => {
      expect(parseUpdateRequest(utf8Encode(v.payload))).toStrictEqual(v.expect);
    });
  }
  for (const v of docs.requests.invalid as Array<{ name: string; payload: string; code: string; status?: number; awsMessage?: string }>) {
    it(`refuses ${v.name} as the service would`, () => {
      const e = errorOf(() => parseUpdateRequest(utf8Encode(v.payload)));
      expect(e.code).toBe(v.code);
      if (v.status !== undefined) expect(e.detail).toMatchObject({ status: v.status, awsMessage: v.awsMessage });
    });
  }
  it("get requests: empty or a clientToken", () => {
    expect(parseGetRequest(new Uint8Array(0))).toEqual({});
    expect(parseGetRequest(utf8Encode('{"clientToken":"g1"}'))).toEqual({ clientToken: "g1" });
    expect(errorOf(() => parseGetRequest(utf8Encode('{"clientToken":1}'))).code).toBe(SYNC_CODES.SYNC_CLIENT_TOKEN_INVALID);
    expect(errorOf(() => parseGetRequest(utf8Encode("[]"))).code).toBe(SYNC_CODES.SYNC_DOCUMENT_INVALID);
  });
});

describe("builders: what the device and the cloud side build, the service accepts", () => {
  type B = { name: string; fn: string; state?: JsonObject; options?: A.UpdateOptions; clientToken?: string; payload?: string; code?: string };
  const run = (v: B): string =>
    v.fn === "get" ? A.buildGetRequest(v.clientToken!)
      : v.fn === "desired" ? buildDesiredUpdate(v.state!, v.options)
        : A.buildReportedUpdate(v.state!, v.options);
  for (const v of docs.build as B[]) {
    it(`builds ${v.name} exactly and the service accepts it`, () => {
      const text = run(v);
      expect(text).toBe(v.payload);
      if (v.fn === "get") expect(parseGetRequest(utf8Encode(text))).toEqual({ clientToken: v.clientToken });
      else expect(parseUpdateRequest(utf8Encode(text))).toBeDefined();
    });
  }
  for (const v of (docs.buildInvalid as B[]).filter((v) => v.fn === "desired")) {
    it(`refuses to build ${v.name}`, () => {
      expect(errorOf(() => run(v)).code).toBe(v.code);
    });
  }
  it("a desired update clearing the section, and one with a version and a clientToken", () => {
    expect(JSON.parse(buildDesiredUpdate(null))).toEqual({ state: { desired: null } });
    expect(JSON.parse(buildDesiredUpdate({ a: 1 }, { version: 2, clientToken: "d1" }))).toEqual({ state: { desired: { a: 1 } }, version: 2, clientToken: "d1" });
  });
  it("builds error documents as the service sends them", () => {
    expect(buildErrorDocument(409, "Version conflict", { timestamp: 1700000000, clientToken: "d2" }))
      .toBe('{"code":409,"message":"Version conflict","timestamp":1700000000,"clientToken":"d2"}');
    expect(buildErrorDocument(404, "No shadow exists with name: 'x'")).toBe(`{"code":404,"message":"No shadow exists with name: 'x'"}`);
    expect(A.parseErrorDocument(utf8Encode(buildErrorDocument(429, "Rate limit exceeded", { clientToken: "r1" }))))
      .toEqual({ code: 429, message: "Rate limit exceeded", clientToken: "r1" });
  });
});
