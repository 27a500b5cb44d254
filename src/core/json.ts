/**
 * JSON values as the shadow and twin documents use them, with the few pure helpers every module needs:
 * structural equality, nesting depth, deep copy, and a bounded parse that refuses oversize or over-deep
 * input with a typed error before anything else looks at it.
 *
 * Not here: shadow rules (see config-diff.ts, aws-shadow.ts, azure-twin.ts).
 */
import { ShadowOtaError } from "./errors";

export type Json = null | boolean | number | string | Json[] | JsonObject;
export interface JsonObject { [key: string]: Json }

export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Structural equality; object key order does not matter, array order does. */
export function jsonEqual(a: Json, b: Json): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i]!, b[i]!)) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k) || !jsonEqual(a[k]!, b[k]!)) return false;
  }
  return true;
}

/**
 * Nesting depth in the AWS sense: a scalar is 0, `{"a":1}` is 1, `{"a":{"b":1}}` is 2; arrays count as a
 * level too. Iterative, so hostile input cannot overflow the (small, on a device) native stack.
 */
export function jsonDepth(value: Json): number {
  let max = 0;
  const stack: Array<[Json, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (typeof v !== "object" || v === null) { if (d > max) max = d; continue; }
    const children = Array.isArray(v) ? v : Object.values(v);
    if (children.length === 0 && d + 1 > max) max = d + 1;
    for (const c of children) stack.push([c, d + 1]);
  }
  return max;
}

export function jsonClone<T extends Json>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

export interface ParseLimits {
  /** Largest accepted text, in UTF-16 code units (JSON text is ASCII-heavy; callers that know bytes check bytes). */
  maxLength: number;
  /** Deepest accepted nesting (see jsonDepth). */
  maxDepth: number;
}

/**
 * JSON.parse with limits. The depth is checked on the raw text first (a bracket counter that skips strings),
 * so a 100 KB `[[[[…` never reaches the recursive parser. Errors: SYNC_PAYLOAD_TOO_LARGE,
 * SYNC_DEPTH_EXCEEDED, SYNC_JSON_INVALID.
 */
export function parseJsonBounded(text: string, limits: ParseLimits): Json {
  if (text.length > limits.maxLength) {
    throw new ShadowOtaError("SYNC_PAYLOAD_TOO_LARGE", `payload of ${text.length} exceeds ${limits.maxLength}`);
  }
  // `for…of` walks the string once. An index loop with charCodeAt(i) would be quadratic on XS, whose
  // strings are UTF-8 inside (charCodeAt(i) is O(i)): 0.3 s for a 32 KB payload on a desktop, far more on
  // an ESP32.
  let depth = 0;
  let inString = false;
  let escaped = false;
  for (const ch of text) {
    if (inString) {
      if (escaped) escaped = false;
      else if (ch === "\\") escaped = true;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === "{" || ch === "[") {
      if (++depth > limits.maxDepth) {
        throw new ShadowOtaError("SYNC_DEPTH_EXCEEDED", `JSON nesting exceeds ${limits.maxDepth} levels`);
      }
    } else if (ch === "}" || ch === "]") depth--;
  }
  try {
    return JSON.parse(text) as Json;
  } catch (e) {
    throw new ShadowOtaError("SYNC_JSON_INVALID", "payload is not valid JSON", { cause: e });
  }
}
