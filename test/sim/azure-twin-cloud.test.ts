/**
 * The hub's half of the Azure twin codec (src/sim/azure-twin-cloud.ts): the hub's topic vectors of
 * test/vectors/azure-twin.json built (and refused), each matched back by the device's matcher, GET bodies and
 * desired notifications read back by the device's parsers, every reported-patch vector read as the hub reads
 * it (and refused with the device's codes), the refusals with their messages, and random input to the
 * parsers the local cloud runs on what devices send (AWS update and get requests, Azure reported patches):
 * a result or a ShadowOtaError, never anything else.
 */
import fc from "fast-check";
import awsDocs from "../vectors/aws-shadow-documents.json";
import v from "../vectors/azure-twin.json";
import * as Z from "../../src/core/azure-twin";
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { utf8Encode } from "../../src/core/utf8";
import { parseGetRequest, parseUpdateRequest } from "../../src/sim/aws-shadow-cloud";
import * as C from "../../src/sim/azure-twin-cloud";
import { errorOf } from "../core/error-of";

const b = (x: unknown) => utf8Encode(typeof x === "string" ? x : JSON.stringify(x));
const deep = (n: number): Record<string, unknown> => { let o: Record<string, unknown> = { v: 1 }; for (let i = 1; i < n; i++) o = { k: o }; return o; };

function refusal(f: () => unknown): { code: string; message: string; detail?: unknown } {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ShadowOtaError);
    const err = e as ShadowOtaError;
    return err.detail === undefined ? { code: err.code, message: err.message } : { code: err.code, message: err.message, detail: err.detail };
  }
  throw new Error("accepted");
}

type BuildVector = { fn: string; rid?: string; status?: number; version?: number; name?: string; topic?: string; code?: string };
function build(x: BuildVector): string {
  switch (x.fn) {
    case "twinResponse": return C.twinResponseTopic(x.status!, x.rid!, x.version);
    case "desiredPatch": return C.desiredPatchTopic(x.version!);
    case "methodRequest": return C.methodRequestTopic(x.name!, x.rid!);
    default: throw new Error(`unknown builder ${x.fn}`);
  }
}
const HUB = (x: BuildVector) => ["twinResponse", "desiredPatch", "methodRequest"].includes(x.fn);

describe("hub topics", () => {
  for (const x of (v.build as BuildVector[]).filter(HUB)) {
    it(`builds ${x.topic}, which the device matches`, () => {
      expect(build(x)).toBe(x.topic);
      expect(Z.matchAzureTopic(build(x)).ok).toBe(true);
    });
  }
  for (const x of (v.buildInvalid as BuildVector[]).filter(HUB)) {
    it(`refuses to build ${x.fn} from ${JSON.stringify(x)}`, () => {
      expect(errorOf(() => build(x)).code).toBe(x.code);
    });
  }
  it("round-trips built topics through the device's matcher; the version only when given", () => {
    expect(Z.matchAzureTopic(C.twinResponseTopic(204, "r9", 77))).toStrictEqual({ ok: true, kind: "twin-response", status: 204, rid: "r9", version: 77 });
    expect(Z.matchAzureTopic(C.desiredPatchTopic(3))).toStrictEqual({ ok: true, kind: "desired-patch", version: 3 });
    expect(Z.matchAzureTopic(C.methodRequestTopic("firmwareUpdate", "m1"))).toStrictEqual({ ok: true, kind: "method-request", name: "firmwareUpdate", rid: "m1" });
    expect(C.twinResponseTopic(200, "1")).toBe("$iothub/twin/res/200/?$rid=1");
    expect(C.twinResponseTopic(200, "1", 0)).toBe("$iothub/twin/res/200/?$rid=1&$version=0");
    expect(C.twinResponseTopic(429, "1")).toBe("$iothub/twin/res/429/?$rid=1");
  });
});

describe("hub bodies", () => {
  it("a GET body and a desired notification read back by the device", () => {
    const doc = { desired: { updateVersion: "1.1.0" }, desiredVersion: 12, reported: { firmwareVersion: "1.0.0" }, reportedVersion: 123 };
    expect(Z.parseTwinGetBody(utf8Encode(C.buildTwinGetBody(doc)))).toStrictEqual(doc);
    expect(Z.parseDesiredPatchBody(utf8Encode(C.buildDesiredNotification({ route: null }, 8)))).toStrictEqual({ patch: { route: null }, version: 8 });
    expect(errorOf(() => C.buildTwinGetBody({ ...doc, reportedVersion: -1 })).code).toBe("SYNC_DOCUMENT_INVALID");
    expect(errorOf(() => C.buildTwinGetBody({ ...doc, desiredVersion: 0.5 })).code).toBe("SYNC_DOCUMENT_INVALID");
  });
  for (const p of v.reportedPatches as unknown as Array<{ patch: JsonObject; payload: string }>) {
    it(`reads the reported patch ${p.payload} as the device built it`, () => {
      expect(C.parseReportedPatchBody(utf8Encode(p.payload))).toStrictEqual(p.patch);
    });
  }
  for (const p of v.reportedPatchesInvalid as unknown as Array<{ name: string; patch: JsonObject; code: string }>) {
    it(`refuses a reported patch with ${p.name}, with the device's code`, () => {
      expect(errorOf(() => C.parseReportedPatchBody(utf8Encode(JSON.stringify(p.patch)))).code).toBe(p.code);
    });
  }
  it("a reported patch within the limits", () => {
    expect(C.parseReportedPatchBody(b({ a: 1 }))).toEqual({ a: 1 });
    expect(C.parseReportedPatchBody(b(deep(11)))).toEqual(deep(11)); // the section and 10 levels inside it
  });
});

const REFUSALS: Array<[string, () => unknown, { code: string; message: string; detail?: unknown }]> = [
  ["response status 600", () => C.twinResponseTopic(600, "1"),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "status must be an integer 100..599", "detail": {"field": "status"}}],
  ["$version -1 in a response topic", () => C.twinResponseTopic(200, "1", -1),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "$version must be a non-negative integer", "detail": {"field": "$version"}}],
  ["$version not an integer", () => C.desiredPatchTopic(1.5),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "$version must be a non-negative integer", "detail": {"field": "$version"}}],
  ["reported patch body that is not an object", () => C.parseReportedPatchBody(b("\"x\"")),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "reported patch is not a JSON object", "detail": {"field": "document"}}],
  ["desired nested 11 levels (12 objects, the section's own included)", () => C.buildDesiredNotification(deep(12) as never, 2),
    {"code": "SYNC_DEPTH_EXCEEDED", "message": "desired nests 11 levels; the maximum is 10", "detail": {"depth": 11, "maxDepth": 10}}],
  ["desired notification with a negative version", () => C.buildDesiredNotification({ a: 1 }, -1),
    {"code": "SYNC_DOCUMENT_INVALID", "message": "$version must be a non-negative integer", "detail": {"field": "$version"}}],
];

describe("hub refusals", () => {
  it.each(REFUSALS)("%s", (_name, f, expected) => {
    expect(refusal(f)).toEqual(expected);
  });
});

/** Runs fn; a ShadowOtaError is an accepted outcome, anything else fails the property. */
function typedOnly(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (e instanceof ShadowOtaError) return;
    throw e;
  }
}

function serviceParsers(bytes: Uint8Array): void {
  typedOnly(() => parseUpdateRequest(bytes));
  typedOnly(() => parseGetRequest(bytes));
  typedOnly(() => C.parseReportedPatchBody(bytes));
}

describe("the service's parsers on random input", () => {
  it("random bytes", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 256 }), (bytes) => { serviceParsers(bytes); }), { numRuns: 1000, seed: 7 });
  });
  it("random JSON, bare and under state/reported", () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 12 }), (j) => {
      serviceParsers(b(JSON.stringify(j)));
      serviceParsers(b({ state: { reported: j } }));
      serviceParsers(b({ state: { desired: j }, version: j, clientToken: j }));
    }), { numRuns: 1000, seed: 11 });
  });
  it("byte mutations of the request vectors", () => {
    const seeds = (awsDocs.requests.valid as Array<{ payload: string }>).map((x) => utf8Encode(x.payload))
      .concat((v.reportedPatches as unknown as Array<{ payload: string }>).map((x) => utf8Encode(x.payload)));
    fc.assert(fc.property(fc.nat(seeds.length - 1), fc.nat(), fc.integer({ min: 0, max: 255 }), (k, at, byte) => {
      const s = seeds[k]!.slice();
      if (s.length > 0) s[at % s.length] = byte;
      serviceParsers(s);
    }), { numRuns: 1000, seed: 13 });
  });
});
