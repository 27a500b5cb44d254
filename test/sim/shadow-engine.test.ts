/**
 * Tests of src/sim/shadow-engine.ts (the local cloud's AWS shadow rules, no I/O): every scenario of
 * test/vectors/shadow-service.json run step by step against the engine with exact message texts, the admin
 * path giving the same messages as an MQTT update, the limits (8 KB, payload size, configurable depth,
 * rate limit with injected time), hostile input (100 KB payloads, deep nesting, `__proto__` keys, random
 * bytes), loading checks, and properties over generated documents: the published delta is core's
 * computeDelta and n accepted updates give versions 1..n.
 * The same vectors go through a real broker in shadow-service.test.ts.
 */
import fc from "fast-check";
import { shadowTopic, type ShadowOperation } from "../../src/core/aws-shadow";
import { applyPatch, computeDelta, isDeltaEmpty } from "../../src/core/config-diff";
import { ShadowOtaError } from "../../src/core/errors";
import { isJsonObject, jsonEqual, type Json, type JsonObject } from "../../src/core/json";
import { utf8Encode } from "../../src/core/utf8";
import {
  adminDeleteRequest,
  adminUpdateRequest,
  checkShadowTable,
  emptyShadowState,
  handleShadowRequest,
  readShadow,
  shadowKey,
  shadowRequestFromTopic,
  SHADOW_ERROR_MESSAGES,
  type ShadowEngineOptions,
  type ShadowEngineState,
  type ShadowOutcome,
  type ShadowRequest,
} from "../../src/sim/shadow-engine";
import { expectedMessages, scenarios, stepBytes, T } from "./shadow-vectors";

function request(thingName: string, operation: ShadowOperation, payload: string | Uint8Array, now: number, shadowName?: string): ShadowRequest {
  const req: ShadowRequest = { thingName, operation, payload: typeof payload === "string" ? utf8Encode(payload) : payload, now };
  if (shadowName !== undefined) req.shadowName = shadowName;
  return req;
}

function run(state: ShadowEngineState, req: ShadowRequest, options?: ShadowEngineOptions): ShadowOutcome {
  return handleShadowRequest(state, req, options);
}

describe("vectors (test/vectors/shadow-service.json) against the engine", () => {
  for (const sc of scenarios) {
    it(sc.name, () => {
      let state = emptyShadowState();
      for (const s of sc.steps) {
        const out = run(state, request(sc.thingName, s.op, stepBytes(s), T + (s.t ?? 0), s.shadowName));
        state = out.state;
        expect({ step: s.name, messages: out.messages }).toEqual({ step: s.name, messages: expectedMessages(sc.thingName, s) });
        // The response is the first message's document, and `accepted` agrees with its topic.
        expect(JSON.stringify(out.response)).toBe(out.messages[0]!.payload);
        expect(out.accepted).toBe(!out.messages[0]!.topic.endsWith("/rejected"));
      }
    });
  }

  it("the vector file carries every error message of docs/protocols.md §1.6 except 413 (tested below with generated payloads)", () => {
    const texts = scenarios.flatMap((sc) => sc.steps.flatMap((s) => s.expect.map((e) => e.payload ?? "")));
    for (const m of ["Invalid JSON", "Missing required node: state", "State node must be an object", "Desired node must be an object",
      "Reported node must be an object", "Invalid version", "Invalid clientToken", "JSON contains too many levels of nesting; maximum is 6",
      "State contains an invalid node", "No shadow exists with name:", "Version conflict", "Unsupported documented encoding; supported encoding is UTF-8"]) {
      expect(texts.some((t) => t.includes(`"message":"${m}`))).toBe(true);
    }
  });
});

describe("admin path", () => {
  it("an admin desired update publishes exactly what the same MQTT update publishes (docs/protocols.md §1.8 vector 2)", () => {
    const desired = { firmware_version: "1.2.0", config: { interval: 60 } };
    const viaMqtt = run(emptyShadowState(), request("esp32-01", "update", JSON.stringify({ state: { desired }, clientToken: "c1" }), T));
    const viaAdmin = run(emptyShadowState(), adminUpdateRequest("esp32-01", "desired", desired, T, { clientToken: "c1" }));
    expect(viaAdmin.messages).toEqual(viaMqtt.messages);
    expect(viaAdmin.messages.map((m) => m.topic.split("/").slice(-2).join("/"))).toEqual(["update/accepted", "update/delta", "update/documents"]);
  });

  it("an admin rejection publishes nothing (AWS's HTTP API sends no MQTT error) but says why", () => {
    const out = run(emptyShadowState(), adminUpdateRequest("esp32-01", "desired", { a: 1 }, T, { version: 4 }));
    expect(out.accepted).toBe(false);
    expect(out.status).toBe(409);
    expect(out.messages).toEqual([]);
    expect(out.response).toEqual({ code: 409, message: "Version conflict", timestamp: T });
    const del = run(emptyShadowState(), adminDeleteRequest("esp32-01", T));
    expect([del.status, del.messages]).toEqual([404, []]);
  });

  it("readShadow returns the get/accepted document without counting a request, undefined when missing or deleted", () => {
    let state = emptyShadowState();
    expect(readShadow(state, "esp32-01")).toBeUndefined();
    state = run(state, adminUpdateRequest("esp32-01", "desired", { a: 1 }, T)).state;
    expect(readShadow(state, "esp32-01", undefined, T + 1)).toEqual({
      state: { desired: { a: 1 }, delta: { a: 1 } }, metadata: { desired: { a: { timestamp: T } } }, version: 1, timestamp: T + 1,
    });
    expect(readShadow(state, "esp32-01", "ota")).toBeUndefined();
    state = run(state, adminDeleteRequest("esp32-01", T)).state;
    expect(readShadow(state, "esp32-01")).toBeUndefined();
    expect(state.shadows[shadowKey("esp32-01")]).toEqual({ exists: false, version: 1, state: {}, metadata: {} });
  });

  it("names are the caller's responsibility: bad ones throw SYNC_NAME_INVALID, a bad clock RangeError", () => {
    expect(() => run(emptyShadowState(), request("bad/name", "get", "", T))).toThrow(ShadowOtaError);
    expect(() => run(emptyShadowState(), request("ok", "get", "", T, "x".repeat(65)))).toThrow(ShadowOtaError);
    expect(() => run(emptyShadowState(), request("ok", "get", "", Number.NaN))).toThrow(RangeError);
    expect(() => run(emptyShadowState(), request("ok", "get", "", -1))).toThrow(RangeError);
  });
});

describe("topics", () => {
  it("only request topics become requests", () => {
    const p = new Uint8Array(0);
    expect(shadowRequestFromTopic("$aws/things/esp32-01/shadow/update", p, T)).toEqual({ thingName: "esp32-01", operation: "update", payload: p, now: T });
    expect(shadowRequestFromTopic("$aws/things/esp32-01/shadow/name/ota/delete", p, T)).toEqual({ thingName: "esp32-01", shadowName: "ota", operation: "delete", payload: p, now: T });
    for (const t of ["$aws/things/esp32-01/shadow/update/accepted", "$aws/things/esp32-01/shadow/get/rejected", "$aws/things/esp32-01/shadow",
      "$aws/things//shadow/get", "$aws/jobs/x/get", "devices/x/$iothub/twin/GET/?$rid=1", "$aws/things/a b/shadow/get",
      `$aws/things/${"t".repeat(129)}/shadow/get`, "$aws/things/x/shadow/name//get"]) {
      expect(shadowRequestFromTopic(t, p, T)).toBeUndefined();
    }
  });
});

describe("limits", () => {
  const big = (n: number): string => "x".repeat(n);

  it("413 when the request's state is over 8 KB, and when the merged desired + reported would be", () => {
    let state = emptyShadowState();
    let out = run(state, request("t1", "update", JSON.stringify({ state: { desired: { s: big(8200) } }, clientToken: "b1" }), T));
    expect(out.response).toEqual({ code: 413, message: SHADOW_ERROR_MESSAGES.PAYLOAD_TOO_LARGE, timestamp: T, clientToken: "b1" });
    out = run(state, request("t1", "update", JSON.stringify({ state: { desired: { s: big(5000) } } }), T));
    expect(out.accepted).toBe(true);
    state = out.state;
    out = run(state, request("t1", "update", JSON.stringify({ state: { reported: { s: big(5000) } }, clientToken: "b2" }), T));
    expect(out.response).toEqual({ code: 413, message: SHADOW_ERROR_MESSAGES.PAYLOAD_TOO_LARGE, timestamp: T, clientToken: "b2" });
    expect(out.state.shadows).toBe(state.shadows);
    // Replacing the big value instead fits.
    out = run(state, request("t1", "update", JSON.stringify({ state: { desired: { s: null }, reported: { s: big(5000) } } }), T));
    expect([out.accepted, (out.response as { version: number }).version]).toEqual([true, 2]);
  });

  it("413 for a payload over the publish limit, checked before it is decoded", () => {
    const payload = new Uint8Array(128 * 1024 + 1).fill(0xff); // not UTF-8 either: size wins
    const out = run(emptyShadowState(), request("t1", "update", payload, T));
    expect(out.response).toEqual({ code: 413, message: SHADOW_ERROR_MESSAGES.PAYLOAD_TOO_LARGE, timestamp: T });
  });

  it("100 KB payloads: garbage is 400 Invalid JSON, a 100 KB bracket tower is 400 too deep, a 100 KB state is 413", () => {
    const garbage = run(emptyShadowState(), request("t1", "update", "x".repeat(100 * 1024), T));
    expect(garbage.response).toEqual({ code: 400, message: "Invalid JSON", timestamp: T });
    const tower = run(emptyShadowState(), request("t1", "update", "[".repeat(100 * 1024), T));
    expect(tower.response).toEqual({ code: 400, message: "JSON contains too many levels of nesting; maximum is 6", timestamp: T });
    const deepObj = "{\"state\":{\"reported\":" + "{\"a\":".repeat(15_000) + "1" + "}".repeat(15_000) + "}}";
    expect(run(emptyShadowState(), request("t1", "update", deepObj, T)).status).toBe(400);
    const large = run(emptyShadowState(), request("t1", "update", JSON.stringify({ state: { reported: { s: big(100 * 1024) } }, clientToken: "L" }), T));
    expect(large.response).toEqual({ code: 413, message: SHADOW_ERROR_MESSAGES.PAYLOAD_TOO_LARGE, timestamp: T, clientToken: "L" });
    const deepGet = run(emptyShadowState(), request("t1", "get", "[".repeat(100 * 1024), T));
    expect([deepGet.status, deepGet.messages[0]!.topic]).toEqual([400, "$aws/things/t1/shadow/get/rejected"]);
  });

  it("the nesting limit is configurable and the message names it", () => {
    const seven = JSON.stringify({ state: { reported: { a: { b: { c: { d: { e: { f: { g: 1 } } } } } } } } });
    expect(run(emptyShadowState(), request("t1", "update", seven, T)).status).toBe(400);
    expect(run(emptyShadowState(), request("t1", "update", seven, T), { maxStateDepth: 8 }).accepted).toBe(true);
    const out = run(emptyShadowState(), request("t1", "update", seven, T), { maxStateDepth: 5 });
    expect(out.response.message).toBe("JSON contains too many levels of nesting; maximum is 5");
  });

  it("429 after 20 requests in one second on one shadow; other shadows and the next second are not affected", () => {
    let state = emptyShadowState();
    for (let i = 0; i < 20; i++) {
      const out = run(state, request("t1", i % 2 === 0 ? "get" : "update", i % 2 === 0 ? "" : "{\"state\":{\"reported\":{\"n\":1}}}", T + 0.5));
      expect(out.status === 200 || out.status === 404).toBe(true);
      state = out.state;
    }
    let out = run(state, request("t1", "update", "{\"state\":{\"reported\":{\"n\":2}},\"clientToken\":\"r\"}", T + 0.9));
    expect(out.response).toEqual({ code: 429, message: "Too Many Requests", timestamp: T, clientToken: "r" });
    expect(out.messages[0]!.topic).toBe("$aws/things/t1/shadow/update/rejected");
    state = out.state;
    expect(run(state, request("t1", "get", "", T + 0.9, "ota")).status).toBe(404); // a named shadow counts apart
    expect(run(state, request("t2", "get", "", T + 0.9)).status).toBe(404);
    out = run(state, request("t1", "get", "", T + 1));
    expect([out.status, (out.response as { version: number }).version]).toEqual([200, 10]);
    // Configurable, and 0 turns it off.
    state = emptyShadowState();
    for (let i = 0; i < 25; i++) state = run(state, request("t1", "get", "", T), { rateLimitPerSecond: 0 }).state;
    expect(run(state, request("t1", "get", "", T), { rateLimitPerSecond: 0 }).status).toBe(404);
    expect(run(emptyShadowState(), request("t1", "get", "", T), { rateLimitPerSecond: 1 }).status).toBe(404);
    const two = run(run(emptyShadowState(), request("t1", "get", "", T), { rateLimitPerSecond: 1 }).state, request("t1", "get", "", T), { rateLimitPerSecond: 1 });
    expect(two.status).toBe(429);
  });
});

describe("hostile input", () => {
  it("a __proto__ key is stored as a key, not as a prototype", () => {
    const out = run(emptyShadowState(), request("t1", "update", "{\"state\":{\"reported\":{\"__proto__\":{\"x\":1},\"a\":2}}}", T));
    expect(out.accepted).toBe(true);
    const doc = readShadow(out.state, "t1")!;
    const reported = (doc.state as JsonObject).reported as JsonObject;
    expect(Object.keys(reported)).toEqual(["__proto__", "a"]);
    expect(Object.getPrototypeOf(reported)).toBe(Object.prototype);
    expect(JSON.stringify(doc.metadata)).toBe(`{"reported":{"__proto__":{"x":{"timestamp":${T}}},"a":{"timestamp":${T}}}}`);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it("random bytes on every operation never throw and always get exactly one answer on accepted or rejected", () => {
    fc.assert(fc.property(
      fc.constantFrom<ShadowOperation>("get", "update", "delete"),
      fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.string({ maxLength: 200 }).map((s) => utf8Encode(s)),
        fc.jsonValue({ maxDepth: 8 }).map((v) => utf8Encode(JSON.stringify({ state: { reported: v }, clientToken: "f" })))),
      (op, payload) => {
        const out = run(emptyShadowState(), request("fuzz", op, payload, T));
        const head = out.messages[0]!;
        expect(head.topic).toBe(`$aws/things/fuzz/shadow/${op}/${out.accepted ? "accepted" : "rejected"}`);
        expect(JSON.parse(head.payload)).toEqual(out.response);
        if (!out.accepted) expect(out.messages).toHaveLength(1);
      }), { numRuns: 400 });
  });
});

describe("loading (checkShadowTable)", () => {
  it("accepts the engine's own table and refuses wrong shapes with a reason", () => {
    const state = run(run(emptyShadowState(), request("t1", "update", "{\"state\":{\"desired\":{\"a\":1}}}", T)).state,
      request("t1", "update", "{\"state\":{\"reported\":{\"a\":[1,2]}}}", T, "ota")).state;
    const table = JSON.parse(JSON.stringify(state.shadows)) as unknown;
    expect(checkShadowTable(table)).toEqual(state.shadows);
    expect(checkShadowTable([])).toBe("aws.shadows is not an object");
    expect(checkShadowTable({ "a/b": { exists: true, version: 1, state: {}, metadata: {} } })).toMatch(/bad key/);
    expect(checkShadowTable({ "a~b~c": { exists: true, version: 1, state: {}, metadata: {} } })).toMatch(/bad key/);
    expect(checkShadowTable({ a: { exists: true, version: -1, state: {}, metadata: {} } })).toMatch(/not a stored shadow/);
    expect(checkShadowTable({ a: { exists: true, version: 1, state: { delta: {} }, metadata: {} } })).toMatch(/bad "delta" section/);
    expect(checkShadowTable({ a: { exists: true, version: 1, state: { desired: 5 }, metadata: {} } })).toMatch(/bad "desired" section/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Properties

const KEYS = ["a", "b", "c", "cfg", "__proto__"];
const scalarArb = fc.oneof(fc.integer({ min: -2, max: 3 }), fc.constantFrom("x", "y", ""), fc.boolean());
const leafArb: fc.Arbitrary<Json> = fc.oneof({ weight: 4, arbitrary: scalarArb }, { weight: 1, arbitrary: fc.array(scalarArb, { maxLength: 3 }) });

/** Objects of depth <= `depth`, keys from KEYS, `null` members (deletes) when `withNulls`. */
function objectArb(depth: number, withNulls: boolean): fc.Arbitrary<JsonObject> {
  const value: fc.Arbitrary<Json> = depth <= 1
    ? (withNulls ? fc.oneof({ weight: 5, arbitrary: leafArb }, { weight: 1, arbitrary: fc.constant(null) }) : leafArb)
    : fc.oneof(
      { weight: 3, arbitrary: leafArb },
      { weight: 2, arbitrary: objectArb(depth - 1, withNulls) as fc.Arbitrary<Json> },
      { weight: withNulls ? 1 : 0, arbitrary: fc.constant(null) },
    );
  return fc.uniqueArray(fc.tuple(fc.constantFrom(...KEYS), value), { maxLength: 4, selector: (e) => e[0] })
    .map((entries) => JSON.parse("{" + entries.map(([k, v]) => JSON.stringify(k) + ":" + JSON.stringify(v)).join(",") + "}") as JsonObject);
}

const updateArb = fc.tuple(fc.constantFrom<"desired" | "reported">("desired", "reported"), objectArb(4, true));

/** True when `meta` mirrors `value`: scalars ↔ {"timestamp": number}, arrays element by element. */
function mirrors(value: Json, meta: Json | undefined): boolean {
  if (Array.isArray(value)) return Array.isArray(meta) && meta.length === value.length && value.every((v, i) => mirrors(v, meta[i]));
  if (isJsonObject(value)) {
    return isJsonObject(meta) && jsonEqual(Object.keys(meta), Object.keys(value)) && Object.keys(value).every((k) => mirrors(value[k]!, meta[k]));
  }
  return isJsonObject(meta) && Object.keys(meta).length === 1 && typeof meta.timestamp === "number";
}

describe("properties (fast-check, bounded runs)", () => {
  it("n accepted updates give versions 1..n; state follows applyPatch; the delta is computeDelta; metadata mirrors the state", () => {
    fc.assert(fc.property(fc.array(updateArb, { minLength: 1, maxLength: 8 }), (updates) => {
      let state = emptyShadowState();
      let desired: JsonObject = {};
      let reported: JsonObject = {};
      updates.forEach(([section, patch], i) => {
        const out = run(state, request("prop", "update", JSON.stringify({ state: { [section]: patch } }), T + i));
        expect(out.accepted).toBe(true);
        expect(out.response.version).toBe(i + 1);
        state = out.state;
        if (section === "desired") desired = applyPatch(desired, patch);
        else reported = applyPatch(reported, patch);
        const delta = computeDelta(desired, reported);
        const deltaMessage = out.messages.find((m) => m.topic.endsWith("/update/delta"));
        if (isDeltaEmpty(delta)) expect(deltaMessage).toBeUndefined();
        else {
          const published = JSON.parse(deltaMessage!.payload) as JsonObject;
          expect(published.state).toEqual(delta);
          expect(published.version).toBe(i + 1);
          expect(mirrors(delta, published.metadata)).toBe(true);
        }
        const doc = readShadow(state, "prop")!;
        const s = doc.state as JsonObject;
        expect(s.desired ?? {}).toEqual(desired);
        expect(s.reported ?? {}).toEqual(reported);
        expect(s.delta ?? {}).toEqual(delta);
        const meta = doc.metadata as JsonObject;
        expect(mirrors(desired, meta.desired ?? {})).toBe(true);
        expect(mirrors(reported, meta.reported ?? {})).toBe(true);
      });
    }), { numRuns: 200 });
  });

  it("a rejected update changes nothing (a stale version after random updates)", () => {
    fc.assert(fc.property(fc.array(updateArb, { minLength: 1, maxLength: 5 }), (updates) => {
      let state = emptyShadowState();
      for (const [section, patch] of updates) state = run(state, request("prop", "update", JSON.stringify({ state: { [section]: patch } }), T)).state;
      const before = readShadow(state, "prop");
      const out = run(state, request("prop", "update", JSON.stringify({ state: { reported: { z: 1 } }, version: updates.length + 1 }), T));
      expect(out.status).toBe(409);
      expect(out.state.shadows).toBe(state.shadows);
      expect(readShadow(out.state, "prop")).toEqual(before);
    }), { numRuns: 100 });
  });
});
