/**
 * Conformance tests of test/xs/jest-shim.ts. They run twice: under Jest (`npx jest test/xs`), which proves
 * each expectation below is what real Jest does, and on XS (`node scripts/test-xs.mjs`), which proves the
 * shim does the same. A matcher that must fail is checked as `expect(() => expect(…).toX(…)).toThrow()`.
 *
 * Not here: output format and the runner (checked by running scripts/test-xs.mjs), the idle-queue
 * watchdog (real Jest would wait for its own timeout instead).
 */

class Point {
  constructor(public x: number, public y: number) {}
}

class CodedError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    // Defined, not assigned: in a Moddable app Error.prototype is frozen after preload, and assigning an
    // inherited read-only `name` throws (as src/core/errors.ts does for ShadowOtaError).
    Object.defineProperty(this, "name", { value: "CodedError", writable: true, configurable: true });
  }
}

function fails(f: () => void): void {
  expect(f).toThrow();
}

describe("toBe / toEqual / toStrictEqual", () => {
  it("toBe is Object.is", () => {
    expect(NaN).toBe(NaN);
    fails(() => expect(0).toBe(-0));
    fails(() => expect({}).toBe({}));
    const o = {};
    expect(o).toBe(o);
  });

  it("toEqual ignores undefined properties and classes, not array length", () => {
    expect({ a: 1, b: undefined }).toEqual({ a: 1 });
    expect({ a: 1 }).toEqual({ a: 1, b: undefined });
    expect(new Point(1, 2)).toEqual({ x: 1, y: 2 });
    expect([1, [2, { c: 3 }]]).toEqual([1, [2, { c: 3 }]]);
    expect([1]).toEqual([1, undefined]);
    fails(() => expect([1]).toStrictEqual([1, undefined]));
    fails(() => expect([1, 2]).toEqual([1]));
    fails(() => expect({ a: 1 }).toEqual({ a: 2 }));
    fails(() => expect({ a: null }).toEqual({}));
    fails(() => expect(0).toEqual(-0));
    expect(NaN).toEqual(NaN);
  });

  it("toStrictEqual checks undefined properties, classes and holes", () => {
    expect({ a: [1, { b: "x" }] }).toStrictEqual({ a: [1, { b: "x" }] });
    fails(() => expect({ a: 1, b: undefined }).toStrictEqual({ a: 1 }));
    fails(() => expect(new Point(1, 2)).toStrictEqual({ x: 1, y: 2 }));
    // eslint-disable-next-line no-sparse-arrays
    fails(() => expect([, 1]).toStrictEqual([undefined, 1]));
    expect(new Point(1, 2)).toStrictEqual(new Point(1, 2));
  });

  it("compares typed arrays, Maps, Sets, Dates, RegExps and Errors", () => {
    expect(Uint8Array.from([1, 2, 3])).toEqual(Uint8Array.from([1, 2, 3]));
    fails(() => expect(Uint8Array.from([1, 2, 3])).toEqual(Uint8Array.from([1, 2, 4])));
    fails(() => expect(Uint8Array.from([1])).toEqual(Uint16Array.from([1])));
    fails(() => expect(Uint8Array.from([1])).toEqual([1]));
    expect(new Map([["a", { b: 1 }]])).toEqual(new Map([["a", { b: 1 }]]));
    fails(() => expect(new Map([["a", 1]])).toEqual(new Map([["a", 2]])));
    expect(new Set([1, { a: 2 }])).toEqual(new Set([{ a: 2 }, 1]));
    fails(() => expect(new Set([1])).toEqual(new Set([2])));
    expect(new Date(5)).toEqual(new Date(5));
    fails(() => expect(new Date(5)).toEqual(new Date(6)));
    fails(() => expect(new Date(NaN)).toEqual(new Date(NaN)));
    fails(() => expect(new Float64Array([0])).toEqual(new Float64Array([-0])));
    expect(/a/g).toEqual(/a/g);
    fails(() => expect(/a/g).toEqual(/a/i));
    expect(new Error("same")).toEqual(new Error("same"));
    fails(() => expect(new Error("one")).toEqual(new Error("two")));
    expect(new TypeError("same")).toEqual(new Error("same"));
    fails(() => expect(new TypeError("same")).toStrictEqual(new Error("same")));
  });

  it("handles cycles", () => {
    const a: Record<string, unknown> = { n: 1 };
    a["self"] = a;
    const b: Record<string, unknown> = { n: 1 };
    b["self"] = b;
    expect(a).toEqual(b);
  });
});

describe("toThrow", () => {
  const thrower = (): never => {
    throw new CodedError("OTA_IMAGE_INVALID", "image is invalid: bad magic");
  };

  it("matches by presence, substring, RegExp, class, message object and asymmetric matcher", () => {
    expect(thrower).toThrow();
    expect(thrower).toThrow("bad magic");
    expect(thrower).toThrow(/^image is invalid/);
    expect(thrower).toThrow(CodedError);
    expect(thrower).toThrow(Error);
    expect(thrower).toThrow(new Error("image is invalid: bad magic"));
    expect(thrower).toThrow(expect.objectContaining({ code: "OTA_IMAGE_INVALID" }));
    fails(() => expect(thrower).toThrow("good magic"));
    fails(() => expect(thrower).toThrow(TypeError));
    fails(() => expect(thrower).toThrow(expect.objectContaining({ code: "OTHER" })));
  });

  it("supports .not and refuses a non-function", () => {
    expect(() => 1).not.toThrow();
    fails(() => expect(thrower).not.toThrow());
    expect(thrower).not.toThrow(TypeError);
    fails(() => expect(() => undefined).toThrow());
    fails(() => expect(42).toThrow());
  });
});

describe("other matchers", () => {
  it("toMatchObject matches a recursive subset", () => {
    expect({ a: 1, b: { c: 2, d: 3 }, e: [1, { f: 1, g: 2 }] }).toMatchObject({ b: { c: 2 }, e: [1, { f: 1 }] });
    fails(() => expect({ a: 1 }).toMatchObject({ a: 1, b: 2 }));
    fails(() => expect({ e: [1, 2] }).toMatchObject({ e: [1] }));
    expect(new Point(1, 2)).toMatchObject({ x: 1 });
    expect([{ a: 1, b: 2 }]).toMatchObject([{ a: 1 }]);
  });

  it("undefined / defined / null / truthy / falsy", () => {
    expect(undefined).toBeUndefined();
    expect(null).toBeDefined();
    expect(null).toBeNull();
    fails(() => expect(undefined).toBeNull());
    expect(1).toBeTruthy();
    expect("").toBeFalsy();
    expect(0).not.toBeTruthy();
    fails(() => expect(undefined).toBeDefined());
  });

  it("toContain / toContainEqual / toHaveLength / toHaveProperty", () => {
    expect([1, 2, 3]).toContain(2);
    expect("shadow/update/delta").toContain("update");
    fails(() => expect([{ a: 1 }]).toContain({ a: 1 }));
    expect([{ a: 1 }]).toContainEqual({ a: 1 });
    expect(new Set(["x"])).toContain("x");
    expect([1, 2]).toHaveLength(2);
    expect("abc").toHaveLength(3);
    fails(() => expect([1]).toHaveLength(2));
    expect({ a: { b: [10, 20] } }).toHaveProperty("a.b");
    expect({ a: { b: [10, 20] } }).toHaveProperty("a.b[1]", 20);
    expect({ a: { b: [10, 20] } }).toHaveProperty(["a", "b"], [10, 20]);
    expect({ a: undefined }).toHaveProperty("a");
    fails(() => expect({ a: 1 }).toHaveProperty("b"));
    fails(() => expect({ a: 1 }).toHaveProperty("a", 2));
  });

  it("numbers, bigints, instances, strings", () => {
    expect(3).toBeGreaterThan(2);
    expect(3).toBeGreaterThanOrEqual(3);
    expect(2).toBeLessThan(3);
    expect(3).toBeLessThanOrEqual(3);
    expect(10n).toBeGreaterThan(9n);
    fails(() => expect(2).toBeGreaterThan(2));
    expect(0.1 + 0.2).toBeCloseTo(0.3);
    expect(new CodedError("X", "m")).toBeInstanceOf(Error);
    fails(() => expect({}).toBeInstanceOf(Point));
    expect("firmware 1.2.3").toMatch(/\d+\.\d+\.\d+/);
    expect("firmware").toMatch("ware");
    expect(NaN).toBeNaN();
  });

  it("asymmetric matchers", () => {
    expect({ n: 1, s: "x", o: {}, f: () => 1 }).toEqual({ n: expect.any(Number), s: expect.any(String), o: expect.anything(), f: expect.any(Function) });
    fails(() => expect({ n: null }).toEqual({ n: expect.anything() }));
    expect([1, 2, 3]).toEqual(expect.arrayContaining([3, 1]));
    expect("a long message").toEqual(expect.stringContaining("long"));
    expect("OTA_IMAGE_INVALID").toEqual(expect.stringMatching(/^OTA_/));
    expect({ a: 1, b: 2 }).toEqual(expect.objectContaining({ b: 2 }));
  });

  it("expect.assertions counts the assertions of the test", () => {
    expect.assertions(2);
    expect(1).toBe(1);
    expect(2).toBe(2);
  });
});

describe("async", () => {
  it("awaits async tests through many microtask turns", async () => {
    let n = 0;
    for (let i = 0; i < 100; i++) {
      await Promise.resolve();
      n++;
    }
    expect(n).toBe(100);
  });

  it("supports .resolves and .rejects", async () => {
    await expect(Promise.resolve({ a: 1 })).resolves.toEqual({ a: 1 });
    await expect(Promise.reject(new CodedError("SYNC_TIMEOUT", "timed out"))).rejects.toThrow(CodedError);
    await expect(Promise.reject(new CodedError("SYNC_TIMEOUT", "timed out"))).rejects.toThrow("timed out");
    await expect(Promise.reject(new CodedError("SYNC_TIMEOUT", "timed out"))).rejects.toMatchObject({ code: "SYNC_TIMEOUT" });
    await expect(Promise.resolve(1)).resolves.not.toBe(2);
    await expect(expect(Promise.resolve(1)).rejects.toThrow()).rejects.toThrow();
    await expect(expect(Promise.reject(new Error("x"))).resolves.toBe(1)).rejects.toThrow();
  });

  it("supports a done callback", (done) => {
    Promise.resolve().then(() => done(), done);
  });
});

const order: string[] = [];

describe("hooks", () => {
  beforeAll(() => { order.push("beforeAll"); });
  beforeEach(() => { order.push("beforeEach"); });
  afterEach(() => { order.push("afterEach"); });
  afterAll(() => { order.push("afterAll"); });

  it("first", () => { order.push("first"); });

  describe("nested", () => {
    beforeEach(async () => { await Promise.resolve(); order.push("inner beforeEach"); });
    afterEach(() => { order.push("inner afterEach"); });
    it("second", () => { order.push("second"); });
  });
});

describe("hooks (checked after the block above)", () => {
  it("ran in Jest's order", () => {
    expect(order).toEqual([
      "beforeAll",
      "beforeEach", "first", "afterEach",
      "beforeEach", "inner beforeEach", "second", "inner afterEach", "afterEach",
      "afterAll",
    ]);
  });
});

describe(".each and .skip", () => {
  const seen: unknown[] = [];
  it.each([[1, 2, 3], [2, 3, 5]])("adds %i + %i = %i", (a, b, sum) => {
    expect(a + b).toBe(sum);
    seen.push(sum);
  });
  it.each([{ a: 1, b: 1 }, { a: 2, b: 4 }])("squares $a", ({ a, b }) => {
    expect(a * a).toBe(b);
    seen.push(b);
  });
  it.each(["x", "y"])("single values %s", (v) => {
    seen.push(v);
  });
  it.skip("is skipped", () => {
    throw new Error("a skipped test ran");
  });
  it("ran every row in order", () => {
    expect(seen).toEqual([3, 5, 1, 4, "x", "y"]);
  });
});

describe.each([["aws"], ["azure"]])("describe.each %s", (cloud) => {
  it("gets its row", () => {
    expect(["aws", "azure"]).toContain(cloud);
  });
});
