/**
 * The byte and JSON layer every payload goes through (src/core/utf8.ts, src/core/json.ts), as vectors: the
 * exact byte a malformed UTF-8 payload is refused at (the message reaches reported.lastError), every
 * boundary of the encoding, and JSON equality, depth and the bounded parser at and just past their limits.
 * xs-smoke.test.ts checks the engines agree and the big inputs; this checks the edges. Jest subset only.
 */
import { ShadowOtaError } from "../../src/core/errors";
import { isJsonObject, jsonClone, jsonDepth, jsonEqual, parseJsonBounded, type Json } from "../../src/core/json";
import { utf8Decode, utf8Encode } from "../../src/core/utf8";

function refusal(f: () => unknown): { code: string; message: string } {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ShadowOtaError);
    return { code: (e as ShadowOtaError).code, message: (e as ShadowOtaError).message };
  }
  throw new Error("accepted");
}

const bytes = (...b: number[]) => Uint8Array.from(b);

describe("utf8Decode refuses malformed input at the offending byte", () => {
  const cases: Array<[string, number[], number]> = [
    ["a lone continuation byte", [0x41, 0x80], 1],
    ["overlong lead C0", [0xc0, 0x80], 0],
    ["overlong lead C1", [0xc1, 0xbf], 0],
    ["lead F5 (past U+10FFFF)", [0xf5, 0x80, 0x80, 0x80], 0],
    ["lead FF", [0xff], 0],
    ["a two-byte sequence cut short", [0x41, 0xc3], 1],
    ["a three-byte sequence cut short", [0xe2, 0x82], 0],
    ["a four-byte sequence cut short", [0xf0, 0x9f, 0x98], 0],
    ["a bad second byte", [0xc3, 0x41], 1],
    ["a bad third byte", [0xe2, 0x82, 0x41], 2],
    ["a bad fourth byte", [0xf0, 0x9f, 0x98, 0xc0], 3],
    ["an overlong three-byte form", [0xe0, 0x80, 0x80], 0],
    ["the last overlong three-byte form (U+07FF)", [0xe0, 0x9f, 0xbf], 0],
    ["a surrogate (U+D800)", [0x41, 0xed, 0xa0, 0x80], 1],
    ["the last surrogate (U+DFFF)", [0xed, 0xbf, 0xbf], 0],
    ["an overlong four-byte form", [0xf0, 0x80, 0x80, 0x80], 0],
    ["the last overlong four-byte form (U+FFFF)", [0xf0, 0x8f, 0xbf, 0xbf], 0],
    ["past U+10FFFF", [0xf4, 0x90, 0x80, 0x80], 0],
  ];
  it.each(cases)("%s", (_name, input, at) => {
    expect(refusal(() => utf8Decode(bytes(...input)))).toEqual({ code: "SYNC_ENCODING_INVALID", message: `invalid UTF-8 at byte ${at}` });
  });
});

describe("utf8 boundaries", () => {
  const points: Array<[number, number[]]> = [
    [0x00, [0x00]], [0x7f, [0x7f]], [0x80, [0xc2, 0x80]], [0x7ff, [0xdf, 0xbf]], [0x800, [0xe0, 0xa0, 0x80]],
    [0xd7ff, [0xed, 0x9f, 0xbf]], [0xe000, [0xee, 0x80, 0x80]], [0xffff, [0xef, 0xbf, 0xbf]],
    [0x10000, [0xf0, 0x90, 0x80, 0x80]], [0x10ffff, [0xf4, 0x8f, 0xbf, 0xbf]],
  ];
  it.each(points)("U+%s encodes and decodes", (cp, enc) => {
    const s = String.fromCodePoint(cp);
    expect(Array.from(utf8Encode(s))).toEqual(enc);
    expect(utf8Decode(Uint8Array.from(enc))).toBe(s);
  });

  it("lone surrogates encode as U+FFFD", () => {
    expect(Array.from(utf8Encode("\ud800"))).toEqual([0xef, 0xbf, 0xbd]);
    expect(Array.from(utf8Encode("a\udfff"))).toEqual([0x61, 0xef, 0xbf, 0xbd]);
  });

  it("decodes across its internal batches (63, 64, 65 and 129 characters, astral ones at the seams)", () => {
    for (const n of [63, 64, 65, 129]) {
      const s = "é".repeat(n - 1) + "😀";
      expect(utf8Decode(utf8Encode(s))).toBe(s);
    }
    expect(utf8Decode(new Uint8Array(0))).toBe("");
  });
});

describe("JSON helpers", () => {
  it("isJsonObject: objects only", () => {
    expect([{}, { a: 1 }].map(isJsonObject)).toEqual([true, true]);
    expect([null, [], "x", 1, true].map((v) => isJsonObject(v))).toEqual([false, false, false, false, false]);
  });

  it("jsonEqual: structure, not identity or key order", () => {
    const t: Array<[Json, Json, boolean]> = [
      [{ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 }, true],
      [[1, 2], [2, 1], false],
      [[1, 2], [1, 2, 3], false],
      [[1], { 0: 1 }, false],
      [{ 0: 1 }, [1], false],
      [{ a: 1 }, { a: 1, b: 2 }, false],
      [{ a: 1, b: 2 }, { a: 1, c: 2 }, false],
      [{ a: null }, { a: null }, true],
      [{ a: null }, {}, false],
      [null, {}, false],
      [{}, null, false],
      [1, "1", false],
      [[[]], [[]], true],
      [[[1]], [[2]], false],
    ];
    for (const [a, b, eq] of t) expect(jsonEqual(a, b)).toBe(eq);
  });

  it("jsonDepth: scalars 0, every object or array a level, empty ones included", () => {
    const t: Array<[Json, number]> = [[1, 0], [null, 0], [{}, 1], [[], 1], [{ a: 1 }, 1], [{ a: {} }, 2], [[[1]], 2], [{ a: [1, { b: [] }] }, 4], [[1, [2, [3]], 4], 3]];
    for (const [v, d] of t) expect(jsonDepth(v)).toBe(d);
  });

  it("jsonClone copies deeply", () => {
    const a = { x: [1, { y: 2 }] };
    const c = jsonClone(a);
    expect(c).toEqual(a);
    (c.x[1] as { y: number }).y = 3;
    expect((a.x[1] as { y: number }).y).toBe(2);
  });
});

describe("parseJsonBounded at its limits", () => {
  it("length: exactly the limit parses, one more is refused with both numbers", () => {
    expect(parseJsonBounded("[1,2]", { maxLength: 5, maxDepth: 4 })).toEqual([1, 2]);
    expect(refusal(() => parseJsonBounded("[1,22]", { maxLength: 5, maxDepth: 4 }))).toEqual({ code: "SYNC_PAYLOAD_TOO_LARGE", message: "payload of 6 exceeds 5" });
  });

  it("depth: exactly the limit parses, one more is refused; closed brackets no longer count", () => {
    expect(parseJsonBounded('{"a":[1]}', { maxLength: 100, maxDepth: 2 })).toEqual({ a: [1] });
    expect(refusal(() => parseJsonBounded('{"a":[[1]]}', { maxLength: 100, maxDepth: 2 }))).toEqual({ code: "SYNC_DEPTH_EXCEEDED", message: "JSON nesting exceeds 2 levels" });
    expect(parseJsonBounded("[[],[],{},[[]]]", { maxLength: 100, maxDepth: 3 })).toEqual([[], [], {}, [[]]]);
    expect(parseJsonBounded('[{"a":{}},{"b":{}}]', { maxLength: 100, maxDepth: 3 })).toEqual([{ a: {} }, { b: {} }]);
  });

  it("brackets inside strings, after escaped quotes and after escaped backslashes", () => {
    expect(parseJsonBounded('["[[[{{{"]', { maxLength: 100, maxDepth: 1 })).toEqual(["[[[{{{"]);
    expect(parseJsonBounded('["\\"[[["]', { maxLength: 100, maxDepth: 1 })).toEqual(['"[[[']);
    // An escaped backslash ends the escape: the quote after it closes the string, so the bracket counts.
    expect(refusal(() => parseJsonBounded('["\\\\",[1]]', { maxLength: 100, maxDepth: 1 })).code).toBe("SYNC_DEPTH_EXCEEDED");
    expect(parseJsonBounded('["\\\\",[1]]', { maxLength: 100, maxDepth: 2 })).toEqual(["\\", [1]]);
  });

  it("invalid JSON is SYNC_JSON_INVALID", () => {
    expect(refusal(() => parseJsonBounded("{", { maxLength: 10, maxDepth: 4 }))).toEqual({ code: "SYNC_JSON_INVALID", message: "payload is not valid JSON" });
  });
});
