/**
 * Smoke tests of the two shared core helpers every other module leans on, src/core/utf8.ts and
 * src/core/json.ts, written to run both under Jest (Node) and on XS (scripts/test-xs.mjs): the first file
 * to check when the XS run breaks. They pin what differs most often between engines: string/code-unit
 * handling, typed arrays, JSON.parse errors and deep structures.
 *
 * Not here: shim behaviour (test/xs/jest-shim.test.ts), protocol rules (their own test files).
 */
import fc from "fast-check";
import { ShadowOtaError } from "../../src/core/errors";
import { isJsonObject, jsonClone, jsonDepth, jsonEqual, parseJsonBounded, type Json } from "../../src/core/json";
import { utf8Decode, utf8Encode } from "../../src/core/utf8";

function bytes(...b: number[]): Uint8Array {
  return Uint8Array.from(b);
}

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof ShadowOtaError ? e.code : `not a ShadowOtaError: ${String(e)}`;
  }
  return undefined;
}

describe("utf8Encode", () => {
  it.each([
    ["", []],
    ["A", [0x41]],
    ["é", [0xc3, 0xa9]],
    ["€", [0xe2, 0x82, 0xac]],
    ["😀", [0xf0, 0x9f, 0x98, 0x80]],
    ["\u0000\u007f\u0080\u07ff\u0800\uffff", [0x00, 0x7f, 0xc2, 0x80, 0xdf, 0xbf, 0xe0, 0xa0, 0x80, 0xef, 0xbf, 0xbf]],
  ] as Array<[string, number[]]>)("encodes %j", (text, expected) => {
    const out = utf8Encode(text);
    expect(out).toBeInstanceOf(Uint8Array);
    expect(Array.from(out)).toEqual(expected);
  });

  it("replaces a lone surrogate with U+FFFD", () => {
    expect(Array.from(utf8Encode("a\ud800b"))).toEqual([0x61, 0xef, 0xbf, 0xbd, 0x62]);
    expect(Array.from(utf8Encode("\udc00"))).toEqual([0xef, 0xbf, 0xbd]);
  });
});

describe("utf8Decode", () => {
  it("decodes every boundary code point", () => {
    const text = "\u0000\u007f\u0080\u07ff\u0800\ud7ff\ue000\uffff\u{10000}\u{10ffff}";
    expect(utf8Decode(utf8Encode(text))).toBe(text);
  });

  it("decodes a long input (more than one internal chunk)", () => {
    const text = "ü€😀x".repeat(3000);
    expect(utf8Decode(utf8Encode(text))).toBe(text);
  });

  it.each([
    ["overlong 2-byte", [0xc0, 0x80]],
    ["overlong 3-byte", [0xe0, 0x80, 0x80]],
    ["overlong 4-byte", [0xf0, 0x80, 0x80, 0x80]],
    ["surrogate D800", [0xed, 0xa0, 0x80]],
    ["above U+10FFFF", [0xf4, 0x90, 0x80, 0x80]],
    ["truncated", [0xe2, 0x82]],
    ["lone continuation", [0x80]],
    ["bad continuation", [0xc3, 0x41]],
    ["0xFF", [0xff]],
  ] as Array<[string, number[]]>)("refuses %s", (_name, input) => {
    expect(codeOf(() => utf8Decode(bytes(...input)))).toBe("SYNC_ENCODING_INVALID");
  });

  // unit "binary": any code point but a lone surrogate. Not "grapheme": fast-check builds those with
  // String.prototype.normalize, which the Moddable SDK's XS builds without (a RangeError "not built-in"
  // for anything past Latin-1; xsnap has it), so on the device's XS the generator threw before utf8 ran.
  it("round-trips any well-formed string (property)", () => {
    fc.assert(fc.property(fc.string({ unit: "binary" }), (s) => utf8Decode(utf8Encode(s)) === s), { numRuns: 200 });
  });
});

/*
 * Size tests: on XS, strings are UTF-8 inside and `charCodeAt(i)` is O(i), so a character loop written with
 * an index is quadratic there (1 MB would take minutes). These inputs finish in well under a second when the
 * code walks strings linearly, and trip scripts/test-xs.mjs's per-file time limit when it does not. They
 * assert results, not times.
 */
describe("linear on large inputs", () => {
  const big = "ü€😀x\"{[".repeat(1 << 15); // 229,376 code units, 425,984 bytes of UTF-8

  it("encodes and decodes about 400 KB", () => {
    const b = utf8Encode(big);
    expect(b.length).toBe(13 * (1 << 15));
    expect(utf8Decode(b)).toBe(big);
  });

  it("depth-scans a 1 MB JSON string value in one pass", () => {
    const text = JSON.stringify({ s: "[{".repeat(1 << 19) });
    const v = parseJsonBounded(text, { maxLength: 2 * 1024 * 1024, maxDepth: 2 });
    expect(isJsonObject(v) && typeof v["s"] === "string" && v["s"].length).toBe(1 << 20);
  });
});

describe("jsonEqual / jsonClone / jsonDepth", () => {
  it("ignores key order but not array order", () => {
    expect(jsonEqual({ a: 1, b: [1, 2] }, { b: [1, 2], a: 1 })).toBe(true);
    expect(jsonEqual([1, 2], [2, 1])).toBe(false);
    expect(jsonEqual({ a: null }, {})).toBe(false);
    expect(jsonEqual([], {})).toBe(false);
    expect(jsonEqual(0, -0)).toBe(true);
  });

  it("clones deeply", () => {
    const v: Json = { a: [1, { b: "x" }], c: null };
    const c = jsonClone(v);
    expect(c).toStrictEqual(v);
    expect(c).not.toBe(v);
    expect(jsonEqual(c, v)).toBe(true);
  });

  it.each([
    [1, 0],
    [{}, 1],
    [[], 1],
    [{ a: 1 }, 1],
    [{ a: { b: 1 } }, 2],
    [[[[]]], 3],
    [{ a: [1, { b: [] }] }, 4],
  ] as Array<[Json, number]>)("jsonDepth(%j) is %d", (v, d) => {
    expect(jsonDepth(v)).toBe(d);
  });

  it("measures 10 000 levels without recursion", () => {
    let v: Json = 0;
    for (let i = 0; i < 10000; i++) v = [v];
    expect(jsonDepth(v)).toBe(10000);
  });

  it("agrees with JSON text round trips (property)", () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => {
      const j = v as Json;
      return jsonEqual(JSON.parse(JSON.stringify(j)) as Json, jsonClone(j));
    }), { numRuns: 150 });
  });
});

describe("parseJsonBounded", () => {
  const limits = { maxLength: 1000, maxDepth: 4 };

  it("parses valid JSON within the limits", () => {
    const v = parseJsonBounded('{"state":{"desired":{"led":"on","n":[1,2]}}}', limits);
    expect(isJsonObject(v)).toBe(true);
    expect(v).toEqual({ state: { desired: { led: "on", n: [1, 2] } } });
  });

  it("does not count brackets inside strings", () => {
    expect(parseJsonBounded('{"a":"[[[[[[[[{{{{\\"]]"}', limits)).toEqual({ a: '[[[[[[[[{{{{"]]' });
  });

  it("refuses oversize, over-deep and invalid input with typed codes", () => {
    expect(codeOf(() => parseJsonBounded(" ".repeat(1001), limits))).toBe("SYNC_PAYLOAD_TOO_LARGE");
    expect(codeOf(() => parseJsonBounded("[[[[[1]]]]]", limits))).toBe("SYNC_DEPTH_EXCEEDED");
    expect(codeOf(() => parseJsonBounded("[".repeat(900), limits))).toBe("SYNC_DEPTH_EXCEEDED");
    expect(codeOf(() => parseJsonBounded("{\"a\":}", limits))).toBe("SYNC_JSON_INVALID");
    expect(() => parseJsonBounded("nul", limits)).toThrow(ShadowOtaError);
  });

  it("keeps the engine's SyntaxError as the cause", () => {
    let caught: unknown;
    try {
      parseJsonBounded("{", limits);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ShadowOtaError);
    expect((caught as ShadowOtaError).cause).toBeInstanceOf(SyntaxError);
  });
});
