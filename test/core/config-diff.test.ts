/**
 * Tests of src/core/config-diff.ts: literal vectors (test/vectors/config-diff.json, including vectors 2
 * and 3 of docs/protocols.md §1.8 and the lights/color example), the depth limit, no mutation of inputs, hostile
 * keys, and property tests over generated JSON objects (depth <= 5). Runs on Node (Jest) and on XS (the
 * Jest shim): only the Jest subset from the brief is used.
 */
import fc from "fast-check";
import vectors from "../vectors/config-diff.json";
import { ShadowOtaError } from "../../src/core/errors";
import { jsonDepth, jsonEqual, isJsonObject, type Json, type JsonObject } from "../../src/core/json";
import {
  CONFIG_DIFF_CODES,
  DEFAULT_MAX_DEPTH,
  applyPatch,
  changedPaths,
  computeDelta,
  getPath,
  isDeltaEmpty,
  setPath,
} from "../../src/core/config-diff";
import { errorOf } from "./error-of";

interface DeltaVector { name: string; desired: JsonObject; reported: JsonObject; delta: JsonObject }
interface PatchVector { name: string; target: JsonObject; patch: JsonObject; result: JsonObject }
interface PathsVector { delta: JsonObject; paths: string[][] }

const deltaVectors = vectors.delta as unknown as DeltaVector[];
const patchVectors = vectors.patch as unknown as PatchVector[];
const pathsVectors = vectors.paths as unknown as PathsVector[];

/** `{"a":{"a":…{"a":1}}}` with `depth` levels (jsonDepth === depth). */
function nested(depth: number): JsonObject {
  let v: Json = 1;
  for (let i = 0; i < depth; i++) v = { a: v };
  return v as JsonObject;
}

describe("config-diff vectors", () => {
  it("computeDelta matches every delta vector", () => {
    for (const v of deltaVectors) {
      expect([v.name, computeDelta(v.desired, v.reported)]).toStrictEqual([v.name, v.delta]);
      expect(isDeltaEmpty(computeDelta(v.desired, v.reported))).toBe(Object.keys(v.delta).length === 0);
    }
  });

  it("applyPatch matches every patch vector", () => {
    for (const v of patchVectors) {
      expect([v.name, applyPatch(v.target, v.patch)]).toStrictEqual([v.name, v.result]);
    }
  });

  it("changedPaths matches every paths vector", () => {
    for (const v of pathsVectors) expect(changedPaths(v.delta)).toStrictEqual(v.paths);
  });

  it("vectors 2 → 3 (docs/protocols.md §1.8): the report shrinks the delta to the firmware version", () => {
    const desired = { firmware_version: "1.2.0", config: { interval: 60 } };
    let reported: JsonObject = {};
    expect(computeDelta(desired, reported)).toStrictEqual({ firmware_version: "1.2.0", config: { interval: 60 } });
    reported = applyPatch(reported, { firmware_version: "1.1.0", config: { interval: 60 } });
    const delta = computeDelta(desired, reported);
    expect(delta).toStrictEqual({ firmware_version: "1.2.0" });
    expect(changedPaths(delta)).toStrictEqual([["firmware_version"]]);
    reported = applyPatch(reported, delta);
    expect(isDeltaEmpty(computeDelta(desired, reported))).toBe(true);
  });
});

describe("computeDelta depth limit", () => {
  it("defaults to 6 levels, the limit in AWS's error message", () => {
    expect(DEFAULT_MAX_DEPTH).toBe(6);
    expect(computeDelta(nested(6), {})).toStrictEqual(nested(6));
    const e = errorOf(() => computeDelta(nested(7), {}));
    expect(e.code).toBe(CONFIG_DIFF_CODES.SYNC_DEPTH_EXCEEDED);
    expect(e.detail).toStrictEqual({ which: "desired", depth: 7, maxDepth: 6 });
  });

  it("checks reported too, even when the deep part is reported-only", () => {
    const e = errorOf(() => computeDelta({ x: 1 }, { junk: nested(6) }));
    expect(e.code).toBe("SYNC_DEPTH_EXCEEDED");
    expect(e.detail).toStrictEqual({ which: "reported", depth: 7, maxDepth: 6 });
  });

  it("counts arrays as a level and honours a configured maxDepth", () => {
    expect(() => computeDelta({ a: { b: [1] } }, {}, { maxDepth: 3 })).not.toThrow();
    expect(() => computeDelta({ a: { b: [[1]] } }, {}, { maxDepth: 3 })).toThrow(ShadowOtaError);
    expect(() => computeDelta(nested(8), nested(8), { maxDepth: 8 })).not.toThrow();
    expect(() => computeDelta({}, {}, { maxDepth: 1 })).not.toThrow(); // jsonDepth({}) is 1
    expect(() => computeDelta({ a: 1 }, {}, { maxDepth: 0 })).toThrow("nests 1 levels deep; the maximum is 0");
  });

  it("refuses a 10,000-level document without overflowing the stack", () => {
    expect(() => computeDelta(nested(10000), {})).toThrow(ShadowOtaError);
  });
});

describe("applyPatch / setPath / getPath", () => {
  it("never mutates its inputs and shares nothing with them", () => {
    const target: JsonObject = { a: { b: [1, { c: 2 }] }, d: 1, gone: { x: 1 } };
    const patch: JsonObject = { a: { e: { f: [3] } }, d: null, gone: { x: null }, n: { m: 1 } };
    const t0 = JSON.stringify(target);
    const p0 = JSON.stringify(patch);
    const out = applyPatch(target, patch);
    expect(out).toStrictEqual({ a: { b: [1, { c: 2 }], e: { f: [3] } }, n: { m: 1 } });
    expect(JSON.stringify(target)).toBe(t0);
    expect(JSON.stringify(patch)).toBe(p0);
    ((out.a as JsonObject).b as Json[]).push(99);
    ((out.a as JsonObject).e as JsonObject).f = 0;
    (out.n as JsonObject).m = 2;
    expect(JSON.stringify(target)).toBe(t0);
    expect(JSON.stringify(patch)).toBe(p0);
  });

  it("computeDelta returns copies too", () => {
    const desired: JsonObject = { a: { b: [1] }, c: { d: 1 } };
    const delta = computeDelta(desired, {});
    ((delta.a as JsonObject).b as Json[]).push(2);
    (delta.c as JsonObject).d = 5;
    expect(desired).toStrictEqual({ a: { b: [1] }, c: { d: 1 } });
  });

  it("treats __proto__ as an ordinary key (no prototype pollution)", () => {
    const hostile = JSON.parse('{"__proto__":{"polluted":true},"a":{"__proto__":{"x":1}}}') as JsonObject;
    const delta = computeDelta(hostile, {});
    expect(Object.getPrototypeOf(delta)).toBe(Object.prototype);
    expect(Object.keys(delta)).toStrictEqual(["__proto__", "a"]);
    expect(JSON.stringify(delta)).toBe('{"__proto__":{"polluted":true},"a":{"__proto__":{"x":1}}}');
    const merged = applyPatch({}, hostile);
    expect(Object.getPrototypeOf(merged)).toBe(Object.prototype);
    expect(JSON.stringify(merged)).toBe(JSON.stringify(hostile));
    expect(getPath(merged, ["__proto__", "polluted"])).toBe(true);
    expect(getPath({}, ["__proto__"])).toBeUndefined();
    expect(getPath({}, ["toString"])).toBeUndefined();
    const set = setPath({}, ["__proto__", "y"], 2);
    expect(Object.getPrototypeOf(set)).toBe(Object.prototype);
    expect(JSON.stringify(set)).toBe('{"__proto__":{"y":2}}');
    expect(JSON.stringify(applyPatch(merged, JSON.parse('{"__proto__":null}') as JsonObject)))
      .toBe('{"a":{"__proto__":{"x":1}}}');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).x).toBeUndefined();
    expect(({} as Record<string, unknown>).y).toBeUndefined();
  });

  it("getPath walks objects only", () => {
    const doc: JsonObject = { a: { b: { c: 1 } }, arr: [{ x: 1 }], n: null };
    expect(getPath(doc, [])).toBe(doc);
    expect(getPath(doc, ["a", "b", "c"])).toBe(1);
    expect(getPath(doc, ["a", "b"])).toStrictEqual({ c: 1 });
    expect(getPath(doc, ["a", "x"])).toBeUndefined();
    expect(getPath(doc, ["a", "b", "c", "d"])).toBeUndefined();
    expect(getPath(doc, ["arr", "0"])).toBeUndefined();
    expect(getPath(doc, ["n"])).toBeNull();
    expect(getPath(undefined, ["a"])).toBeUndefined();
    expect(getPath(undefined, [])).toBeUndefined();
    expect(getPath(5, [])).toBe(5);
  });

  it("setPath returns a new object and creates or replaces intermediates", () => {
    const doc: JsonObject = { a: 1, b: { c: 2 } };
    expect(setPath(doc, ["a", "x"], 3)).toStrictEqual({ a: { x: 3 }, b: { c: 2 } });
    expect(setPath(doc, ["b", "d"], [1])).toStrictEqual({ a: 1, b: { c: 2, d: [1] } });
    expect(setPath(doc, ["b", "c"], null)).toStrictEqual({ a: 1, b: { c: null } });
    expect(setPath(doc, ["z", "y", "x"], "deep")).toStrictEqual({ a: 1, b: { c: 2 }, z: { y: { x: "deep" } } });
    expect(setPath(doc, [], { only: true })).toStrictEqual({ only: true });
    expect(doc).toStrictEqual({ a: 1, b: { c: 2 } });
    const value: JsonObject = { k: [1] };
    const out = setPath(doc, ["v"], value);
    ((out.v as JsonObject).k as Json[]).push(2);
    expect(value).toStrictEqual({ k: [1] });
    const e = errorOf(() => setPath(doc, [], 5));
    expect(e.code).toBe(CONFIG_DIFF_CODES.CONFIG_PATH_INVALID);
  });

  it("isDeltaEmpty", () => {
    expect(isDeltaEmpty({})).toBe(true);
    expect(isDeltaEmpty({ a: null })).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Property tests over generated documents. Keys come from a small pool (with "__proto__") so desired and
// reported overlap often; objects nest at most 4 levels with arrays of scalars as leaves (jsonDepth <= 5).
// Objects are built with defineProperty-style JSON.parse so "__proto__" is an own key, as it is in parsed
// shadow documents.
// ---------------------------------------------------------------------------------------------------------

const KEYS = ["a", "b", "c", "d", "cfg", "__proto__"];
const scalarArb = fc.oneof(
  fc.integer({ min: -2, max: 3 }),
  fc.constantFrom("x", "y", "", "1"),
  fc.boolean(),
);
const leafArb: fc.Arbitrary<Json> = fc.oneof(
  { weight: 4, arbitrary: scalarArb },
  { weight: 1, arbitrary: fc.array(scalarArb, { maxLength: 3 }) },
);

function objectArb(depth: number, withNulls: boolean): fc.Arbitrary<JsonObject> {
  const value: fc.Arbitrary<Json> = depth <= 1
    ? (withNulls ? fc.oneof({ weight: 5, arbitrary: leafArb }, { weight: 1, arbitrary: fc.constant(null) }) : leafArb)
    : fc.oneof(
      { weight: 3, arbitrary: leafArb },
      { weight: 2, arbitrary: objectArb(depth - 1, withNulls) as fc.Arbitrary<Json> },
      { weight: withNulls ? 1 : 0, arbitrary: fc.constant(null) },
    );
  return fc
    .uniqueArray(fc.tuple(fc.constantFrom(...KEYS), value), { maxLength: 4, selector: (e) => e[0] })
    .map((entries) => {
      // JSON.parse makes "__proto__" an own data property, exactly as in a parsed shadow document.
      const text = "{" + entries.map(([k, v]) => JSON.stringify(k) + ":" + JSON.stringify(v)).join(",") + "}";
      return JSON.parse(text) as JsonObject;
    });
}

const docArb = objectArb(4, false);
const docWithNullsArb = objectArb(4, true);

/** Paths of desired leaves a delta must carry: changedPaths minus empty objects (they hold no leaf). */
function wantedPaths(desired: JsonObject): string[][] {
  return changedPaths(desired).filter((p) => {
    const v = getPath(desired, p);
    return !(isJsonObject(v) && Object.keys(v).length === 0);
  });
}

describe("config-diff properties (generated documents, depth <= 5)", () => {
  it("generated documents stay within depth 5", () => {
    fc.assert(fc.property(docWithNullsArb, (d) => { expect(jsonDepth(d)).toBeLessThanOrEqual(5); }), { numRuns: 200 });
  });

  it("computeDelta(a, a) is {} (1,000)", () => {
    fc.assert(
      fc.property(docWithNullsArb, (a) => {
        expect(computeDelta(a, a)).toStrictEqual({});
        expect(computeDelta(a, JSON.parse(JSON.stringify(a)) as JsonObject)).toStrictEqual({});
      }),
      { numRuns: 1000 },
    );
  });

  it("applying the delta to reported yields every desired leaf, keeps reported-only keys, and leaves no delta (1,500)", () => {
    let nonEmpty = 0;
    fc.assert(
      fc.property(docArb, docWithNullsArb, (desired, reported) => {
        const d0 = JSON.stringify(desired);
        const r0 = JSON.stringify(reported);
        const delta = computeDelta(desired, reported);
        if (!isDeltaEmpty(delta)) nonEmpty++;
        const merged = applyPatch(reported, delta);
        for (const p of wantedPaths(desired)) {
          expect([p, jsonEqual(getPath(merged, p)!, getPath(desired, p)!)]).toStrictEqual([p, true]);
        }
        // Every delta leaf is a desired leaf that reported did not already have.
        for (const p of changedPaths(delta)) {
          const want = getPath(desired, p);
          expect(want).toBeDefined();
          expect(jsonEqual(getPath(delta, p)!, want!)).toBe(true);
          const had = getPath(reported, p);
          expect(had !== undefined && jsonEqual(had, want!)).toBe(false);
        }
        // Keys desired does not name are untouched.
        for (const k of Object.keys(reported)) {
          if (!Object.prototype.hasOwnProperty.call(desired, k)) {
            expect(jsonEqual(merged[k]!, reported[k]!)).toBe(true);
          }
        }
        expect(computeDelta(desired, merged)).toStrictEqual({});
        expect(JSON.stringify(desired)).toBe(d0);
        expect(JSON.stringify(reported)).toBe(r0);
      }),
      { numRuns: 1500 },
    );
    expect(nonEmpty).toBeGreaterThan(500); // the generator must produce real differences
  });

  it("a null in a patch deletes exactly that key (1,000)", () => {
    fc.assert(
      fc.property(docArb.filter((d) => changedPaths(d).length > 0), fc.nat(), (target, n) => {
        const paths = changedPaths(target);
        const path = paths[n % paths.length]!;
        const t0 = JSON.stringify(target);
        const out = applyPatch(target, setPath({}, path, null));
        expect(getPath(out, path)).toBeUndefined();
        // Every other leaf is still there, unchanged.
        for (const p of paths) {
          if (p.join("\u0000") === path.join("\u0000")) continue;
          expect([p, jsonEqual(getPath(out, p)!, getPath(target, p)!)]).toStrictEqual([p, true]);
        }
        expect(JSON.stringify(target)).toBe(t0);
      }),
      { numRuns: 1000 },
    );
  });

  it("applyPatch(t, {}) and applyPatch(t, t) give t back for null-free t (500)", () => {
    fc.assert(
      fc.property(docArb, (t) => {
        expect(applyPatch(t, {})).toStrictEqual(t);
        expect(jsonEqual(applyPatch(t, t), t)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it("changedPaths is sorted and every path ends at a leaf (500)", () => {
    fc.assert(
      fc.property(docWithNullsArb, (d) => {
        const paths = changedPaths(d);
        for (let i = 1; i < paths.length; i++) {
          const a = paths[i - 1]!.join("\u0000");
          const b = paths[i]!.join("\u0000");
          expect(a < b).toBe(true);
        }
        for (const p of paths) {
          const v = getPath(d, p);
          expect(v).toBeDefined();
          expect(isJsonObject(v) && Object.keys(v).length > 0).toBe(false);
        }
      }),
      { numRuns: 500 },
    );
  });
});
