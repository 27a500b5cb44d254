/**
 * The AWS IoT Device Shadow document rules as pure functions: the delta between desired and reported
 * state, the update merge (with `null` deleting a key), and small path helpers. The device uses them to
 * decide what to apply and what to report; the local cloud uses the same functions to publish deltas,
 * so the two cannot disagree about the rules.
 *
 * Rules (docs/protocols.md §1.2 and §1.3):
 * - Delta = every desired leaf that is missing from reported or different there; reported-only keys are
 *   left out; nested objects keep their path; arrays are leaves compared as whole values.
 * - Update merges: only named keys change; objects merge deeply; arrays are replaced whole; a key set to
 *   `null` is deleted.
 *
 * Not here: topics, versions, metadata, clientToken, request validation (the "array holding null",
 * "State contains an invalid node" and size checks belong to the shadow document handling in
 * aws-shadow.ts / the local cloud), Azure's `$version` keys.
 *
 * Every function returns new objects and never mutates its inputs. Keys are written as own data
 * properties, so a hostile `"__proto__"` key in a document is just a key here.
 */
import { ShadowOtaError } from "./errors";
import { isJsonObject, jsonClone, jsonDepth, jsonEqual, type Json, type JsonObject } from "./json";

/** The error codes of this module (see docs/error-codes.md). */
export const CONFIG_DIFF_CODES = {
  /** desired or reported nests deeper than the allowed depth (jsonDepth counting; AWS answers 400
   *  "JSON contains too many levels of nesting; maximum is 6"). `detail`: {which, depth, maxDepth}. */
  SYNC_DEPTH_EXCEEDED: "SYNC_DEPTH_EXCEEDED",
  /** setPath was given an empty path with a value that is not an object (the root must stay an object). */
  CONFIG_PATH_INVALID: "CONFIG_PATH_INVALID",
} as const;

/**
 * Default nesting limit for computeDelta: 6, the maximum AWS IoT names in its error message
 * ("JSON contains too many levels of nesting; maximum is 6"). AWS sources disagree (5, 6 or 8), so the
 * local cloud passes its own configured `maxDepth`; firmware config should stay within 5.
 */
export const DEFAULT_MAX_DEPTH = 6;

export interface DeltaOptions {
  /** Deepest accepted nesting of desired and of reported, counted as jsonDepth does. Default DEFAULT_MAX_DEPTH. */
  maxDepth?: number;
}

/** Sets an own, enumerable data property (plain `o[k] = v` with k === "__proto__" would change the prototype). */
function put(o: JsonObject, key: string, value: Json): void {
  Object.defineProperty(o, key, { value, writable: true, enumerable: true, configurable: true });
}

function has(o: JsonObject, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, key);
}

/**
 * A copy of `o` without `null` members (at any depth of nested objects) and without the objects that
 * become empty by that; `undefined` when nothing is left. Arrays are copied as they are.
 */
function withoutNulls(o: JsonObject): JsonObject | undefined {
  const out: JsonObject = {};
  let dropped = false;
  for (const k of Object.keys(o)) {
    const v = o[k]!;
    if (v === null) { dropped = true; continue; }
    if (isJsonObject(v)) {
      const sub = withoutNulls(v);
      if (sub === undefined) { dropped = true; continue; }
      put(out, k, sub);
    } else put(out, k, jsonClone(v));
  }
  return dropped && Object.keys(out).length === 0 ? undefined : out;
}

function checkDepth(which: "desired" | "reported", doc: JsonObject, maxDepth: number): void {
  const depth = jsonDepth(doc);
  if (depth > maxDepth) {
    throw new ShadowOtaError(CONFIG_DIFF_CODES.SYNC_DEPTH_EXCEEDED,
      `${which} state nests ${depth} levels deep; the maximum is ${maxDepth}`,
      { detail: { which, depth, maxDepth } });
  }
}

function deltaOf(desired: JsonObject, reported: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const k of Object.keys(desired)) {
    const d = desired[k]!;
    if (d === null) continue; // null means "delete", never a wanted value
    const r = has(reported, k) ? reported[k] : undefined;
    if (isJsonObject(d)) {
      if (isJsonObject(r)) {
        const sub = deltaOf(d, r);
        if (Object.keys(sub).length > 0) put(out, k, sub);
      } else {
        // Reported lacks the key or holds a scalar/array there: every desired leaf below differs.
        // An object without leaves (`{}`) wants nothing, so it adds nothing to the delta.
        const whole = withoutNulls(d);
        if (whole !== undefined && hasLeaf(whole)) put(out, k, whole);
      }
    } else if (r === undefined || !jsonEqual(d, r)) {
      put(out, k, jsonClone(d));
    }
  }
  return out;
}

/** True when the object holds at least one scalar or array somewhere (empty objects are not leaves). */
function hasLeaf(o: JsonObject): boolean {
  for (const k of Object.keys(o)) {
    const v = o[k]!;
    if (!isJsonObject(v) || hasLeaf(v)) return true;
  }
  return false;
}

/**
 * The delta of a shadow: every desired leaf that reported lacks or holds a different value for.
 *
 * - Reported-only keys are left out; nested objects keep their path:
 *   desired `{"lights":{"color":{"r":0,"g":255}}}`, reported `{"lights":{"color":{"r":0,"g":0}}}` →
 *   `{"lights":{"color":{"g":255}}}`.
 * - Arrays are leaves compared as whole values (jsonEqual; order matters).
 * - An object in desired against a scalar or array in reported: the whole desired object is in the delta.
 * - Desired `null` leaves are ignored (null means delete); desired objects without any leaf (`{}`) add
 *   nothing.
 * - Nothing differs → `{}` (see isDeltaEmpty).
 *
 * Errors: SYNC_DEPTH_EXCEEDED when desired or reported nests deeper than `options.maxDepth`
 * (default DEFAULT_MAX_DEPTH). The check runs before the (recursive) diff.
 */
export function computeDelta(desired: JsonObject, reported: JsonObject, options: DeltaOptions = {}): JsonObject {
  const maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH;
  checkDepth("desired", desired, maxDepth);
  checkDepth("reported", reported, maxDepth);
  return deltaOf(desired, reported);
}

/** Merges `patch` into `out` in place (`out` is already a private copy). */
function mergeInto(out: JsonObject, patch: JsonObject): void {
  for (const k of Object.keys(patch)) {
    const p = patch[k]!;
    if (p === null) {
      delete out[k];
      continue;
    }
    if (!isJsonObject(p)) {
      put(out, k, jsonClone(p)); // scalars and arrays replace whatever was there, arrays whole
      continue;
    }
    const current = has(out, k) ? out[k] : undefined;
    const base: JsonObject = isJsonObject(current) ? current : {}; // an object replaces a scalar or array
    mergeInto(base, p);
    if (Object.keys(base).length === 0 && Object.keys(p).length > 0) {
      // Emptied by null-deletes (or a new subtree of nulls only): removed, like Greengrass Shadow Manager
      // drops all-null subtrees and AWS drops a section whose last key was deleted.
      delete out[k];
    } else {
      put(out, k, base);
    }
  }
}

/**
 * The AWS shadow update merge, as a new object (inputs untouched): only the keys named in `patch`
 * change; objects merge deeply; scalars and arrays replace the old value whole (an array is never merged
 * element-wise); an object replaces a scalar and a scalar replaces an object; a key set to `null` is
 * deleted.
 *
 * Empty objects: an object that the patch leaves empty through deletions is removed as well
 * (`{"a":{"x":1}}` + `{"a":{"x":null}}` → `{}`), and so is a new subtree that holds only nulls. A patch
 * value `{}` by itself deletes nothing: it adds an empty object where the key was missing and leaves an
 * existing object as it is. The root is always returned, even when empty; whether an empty section
 * (`desired: {}`) is dropped from a shadow document is the caller's decision.
 *
 * Validation of the patch (arrays holding null, size) is the caller's job; the recursion is as deep as
 * the patch, so parse untrusted patches with parseJsonBounded first.
 */
export function applyPatch(target: JsonObject, patch: JsonObject): JsonObject {
  const out = jsonClone(target);
  mergeInto(out, patch);
  return out;
}

/** Orders two leaf paths of one document. Neither is a prefix of the other (a leaf has no members), so
 *  they differ at an index below both lengths; the length comparison after the loop is never reached. */
function comparePaths(a: readonly string[], b: readonly string[]): number {
  // Stryker disable next-line MethodExpression: the paths differ before the shorter one ends (see above).
  const n = Math.min(a.length, b.length);
  // Stryker disable next-line EqualityOperator: as above, the loop returns before `i` reaches `n`.
  for (let i = 0; i < n; i++) {
    // Stryker disable next-line EqualityOperator: `<=` and `<` agree on segments known to differ.
    if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  }
  // Stryker disable next-line ArithmeticOperator: not reached for leaf paths (see above).
  return a.length - b.length;
}

/**
 * The leaf paths of a delta (or of any patch), sorted by code units segment by segment:
 * `{"b":1,"a":{"y":[1],"x":null}}` → `[["a","x"],["a","y"],["b"]]`. Scalars, `null`s and arrays are
 * leaves; an empty object is a leaf too (it is a value the document sets), a non-empty object is not.
 */
export function changedPaths(delta: JsonObject): string[][] {
  const paths: string[][] = [];
  const walk = (o: JsonObject, prefix: string[]): void => {
    for (const k of Object.keys(o)) {
      const v = o[k]!;
      const path = prefix.concat([k]);
      if (isJsonObject(v) && Object.keys(v).length > 0) walk(v, path);
      else paths.push(path);
    }
  };
  walk(delta, []);
  return paths.sort(comparePaths);
}

/**
 * The value at `path` (object keys only; arrays are not indexed), or `undefined` when a segment is
 * missing or runs into a non-object. The empty path gives `doc` itself. The result is not a copy.
 */
export function getPath(doc: Json | undefined, path: readonly string[]): Json | undefined {
  let cur: Json | undefined = doc;
  for (const key of path) {
    if (!isJsonObject(cur) || !has(cur, key)) return undefined;
    cur = cur[key];
  }
  return cur;
}

/**
 * A copy of `doc` with `value` (copied) at `path`; missing or non-object intermediate values become
 * objects. `null` is stored as a value, not treated as a delete (use applyPatch for deletes).
 * Errors: CONFIG_PATH_INVALID when `path` is empty and `value` is not an object.
 */
export function setPath(doc: JsonObject, path: readonly string[], value: Json): JsonObject {
  if (path.length === 0) {
    if (!isJsonObject(value)) {
      throw new ShadowOtaError(CONFIG_DIFF_CODES.CONFIG_PATH_INVALID, "setPath with an empty path needs an object value");
    }
    return jsonClone(value);
  }
  const out = jsonClone(doc);
  let cur = out;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i]!;
    const next = has(cur, key) ? cur[key] : undefined;
    if (isJsonObject(next)) cur = next;
    else {
      const fresh: JsonObject = {};
      put(cur, key, fresh);
      cur = fresh;
    }
  }
  put(cur, path[path.length - 1]!, jsonClone(value));
  return out;
}

/** True when a delta holds nothing to do (`{}`). */
export function isDeltaEmpty(delta: JsonObject): boolean {
  return Object.keys(delta).length === 0;
}
