/**
 * config-diff (src/core/config-diff.ts) where its vectors and property tests do not look: a desired object
 * the reported state lacks (or holds a scalar for) arrives whole, without the members `null` deletes and
 * without the objects those deletions empty, while an object the document sets empty stays; the results
 * are plain objects the application may change and delete from; the words of setPath's refusal. Jest subset only (runs on
 * XS too).
 */
import { applyPatch, changedPaths, computeDelta, CONFIG_DIFF_CODES, setPath } from "../../src/core/config-diff";
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";

describe("a desired object where reported holds a scalar or nothing", () => {
  it("arrives whole, without null members and the objects they empty, keeping objects set empty", () => {
    const desired: JsonObject = {
      lights: {
        off: null, // deleted
        night: { until: null }, // emptied by the deletion: gone
        scenes: { evening: { dim: null } }, // emptied two levels down: gone
        groups: {}, // set empty by the document: kept
        level: 40,
      },
    };
    for (const reported of [{ lights: 1 }, {}] as JsonObject[]) {
      const delta = computeDelta(desired, reported);
      expect(delta).toEqual({ lights: { groups: {}, level: 40 } });
      expect(changedPaths(delta)).toEqual([["lights", "groups"], ["lights", "level"]]);
    }
  });

  it("an object with nothing but deletions and emptied objects is no change at all", () => {
    expect(computeDelta({ lights: { off: null, night: { until: null } } }, { lights: "on" })).toEqual({});
  });
});

describe("results are the caller's", () => {
  it("a delta, a patched document and a set path are plain objects the application may change and delete from", () => {
    const delta = computeDelta({ lights: { level: 40, mode: { name: "eco" } } }, {});
    (delta["lights"] as JsonObject)["level"] = 50;
    ((delta["lights"] as JsonObject)["mode"] as JsonObject)["name"] = "max";
    expect(delta).toEqual({ lights: { level: 50, mode: { name: "max" } } });
    delete (delta["lights"] as JsonObject)["mode"];
    expect(delta).toEqual({ lights: { level: 50 } });
    const doc = applyPatch({ a: { b: 1 } }, { a: { c: 2 } });
    (doc["a"] as JsonObject)["c"] = 3;
    expect(doc).toEqual({ a: { b: 1, c: 3 } });
    const set = setPath({}, ["x", "y"], 1);
    (set["x"] as JsonObject)["y"] = 2;
    expect(set).toEqual({ x: { y: 2 } });
  });
});

describe("setPath", () => {
  it("an empty path with a value that is not an object is refused with its words", () => {
    let err: unknown;
    try { setPath({}, [], 5); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(ShadowOtaError);
    expect((err as ShadowOtaError).code).toBe(CONFIG_DIFF_CODES.CONFIG_PATH_INVALID);
    expect((err as ShadowOtaError).message).toBe("setPath with an empty path needs an object value");
  });
});
