/**
 * Tests of src/core/semver.ts: literal vectors (test/vectors/semver.json), hostile inputs, and property
 * tests cross-checked against the npm `semver` package (only semver.parse / semver.compare are used, so
 * the file bundles and runs on XS too). Runs on Node (Jest) and on XS (the Jest shim): only the Jest
 * subset from the brief is used.
 */
import fc from "fast-check";
import semver from "semver";
import vectors from "../vectors/semver.json";
import { ShadowOtaError } from "../../src/core/errors";
import {
  MAX_VERSION_LENGTH,
  SEMVER_CODES,
  compareSemver,
  formatSemver,
  isNewer,
  parseSemver,
  trySemver,
  type SemVer,
} from "../../src/core/semver";

/** The error parseSemver throws for `input` (fails the test when it does not throw). */
function errorOf(input: unknown): ShadowOtaError {
  try {
    parseSemver(input);
  } catch (e) {
    if (e instanceof ShadowOtaError) return e;
    throw e;
  }
  throw new Error(`expected ${JSON.stringify(input)} to be refused`);
}

function fields(v: SemVer): unknown {
  return { major: v.major, minor: v.minor, patch: v.patch, prerelease: [...v.prerelease], build: [...v.build] };
}

describe("semver vectors", () => {
  it("parses every valid vector to the expected fields and formats it back", () => {
    for (const v of vectors.valid) {
      const p = parseSemver(v.text);
      expect(fields(p)).toStrictEqual({ major: v.major, minor: v.minor, patch: v.patch, prerelease: v.prerelease, build: v.build });
      expect(p.raw).toBe(v.text);
      expect(formatSemver(p)).toBe(v.text);
      expect(trySemver(v.text)).toStrictEqual(p);
    }
  });

  it("refuses every invalid vector with VERSION_INVALID and the expected reason", () => {
    for (const v of vectors.invalid) {
      const e = errorOf(v.text);
      expect({ text: v.text, code: e.code, reason: e.detail?.reason }).toStrictEqual({ text: v.text, code: "VERSION_INVALID", reason: v.reason });
      expect(e.message.length).toBeGreaterThan(0);
      expect(trySemver(v.text)).toBeUndefined();
    }
  });

  it("orders the precedence list strictly (every pair, both directions)", () => {
    const list = vectors.ordered;
    for (let i = 0; i < list.length; i++) {
      for (let j = 0; j < list.length; j++) {
        const expected = i < j ? -1 : i > j ? 1 : 0;
        expect([list[i], list[j], compareSemver(list[i]!, list[j]!)]).toStrictEqual([list[i], list[j], expected]);
      }
    }
  });

  it("ignores build metadata for precedence", () => {
    for (const [a, b] of vectors.equal) {
      expect(compareSemver(a!, b!)).toBe(0);
      expect(isNewer(a!, b!)).toBe(false);
      expect(isNewer(b!, a!)).toBe(false);
    }
  });
});

describe("parseSemver", () => {
  it("accepts exactly MAX_VERSION_LENGTH (31, the ESP32 app descriptor's char[32]) characters", () => {
    expect(MAX_VERSION_LENGTH).toBe(31);
    const ok = "1.0.0-" + "a".repeat(MAX_VERSION_LENGTH - 6);
    expect(ok).toHaveLength(31);
    expect(parseSemver(ok).prerelease).toStrictEqual(["a".repeat(25)]);
    expect(errorOf(ok + "a").detail).toStrictEqual({ reason: "too_long" });
  });

  it("refuses non-strings with VERSION_INVALID", () => {
    for (const v of [undefined, null, 1, 1.2, true, {}, [], ["1.0.0"], { toString: () => "1.0.0" }]) {
      const e = errorOf(v);
      expect(e.code).toBe(SEMVER_CODES.VERSION_INVALID);
      expect(e.detail).toStrictEqual({ reason: "not_string" });
    }
    expect(trySemver(123)).toBeUndefined();
  });

  it("refuses a megabyte of text on the length check alone", () => {
    const huge = "1".repeat(1 << 20);
    expect(errorOf(huge).detail).toStrictEqual({ reason: "too_long" });
    expect(errorOf("1.0.0-" + "a.".repeat(1 << 18)).detail).toStrictEqual({ reason: "too_long" });
  });

  it("refuses every hostile character class at every position of a valid version", () => {
    const base = "1.2.3-rc.1+b.7";
    const hostile: Array<[string, string]> = [
      [" ", "whitespace"], ["\t", "whitespace"], ["\r", "whitespace"], ["\n", "whitespace"], ["\u00a0", "whitespace"],
      ["\ufeff", "whitespace"], ["\u2028", "whitespace"], ["\u0000", "control_char"], ["\u0001", "control_char"],
      ["\u001f", "control_char"], ["\u007f", "control_char"], ["/", "invalid_char"], ["\\", "invalid_char"],
      ["?", "invalid_char"], ["%", "invalid_char"], ["#", "invalid_char"], ["_", "invalid_char"], ["~", "invalid_char"],
      ["*", "invalid_char"], ["^", "invalid_char"], [":", "invalid_char"], ["\"", "invalid_char"],
      ["\u00e9", "non_ascii"], ["\u0661", "non_ascii"], ["\uff0e", "non_ascii"], ["\ud800", "non_ascii"],
    ];
    for (const [ch, reason] of hostile) {
      for (let pos = 0; pos <= base.length; pos++) {
        const s = base.slice(0, pos) + ch + base.slice(pos);
        const e = errorOf(s);
        expect([s, e.code, e.detail?.reason]).toStrictEqual([s, "VERSION_INVALID", reason]);
      }
    }
  });

  it("refuses '..' anywhere and a doubled separator", () => {
    const base = "1.2.3-rc.1+b.7";
    for (let pos = 0; pos < base.length; pos++) {
      if (base[pos] !== ".") continue;
      const s = base.slice(0, pos) + "." + base.slice(pos);
      expect(trySemver(s)).toBeUndefined();
    }
    expect(trySemver("1.2.3--rc")).toBeDefined(); // "-rc" is a legal identifier: hyphens are identifier characters
    expect(trySemver("1.2.3++b")).toBeUndefined();
  });

  it("keeps numbers exact up to MAX_SAFE_INTEGER and refuses one more", () => {
    expect(parseSemver("1.9007199254740991.0").minor).toBe(9007199254740991);
    expect(errorOf("0.9007199254740992.0").detail).toStrictEqual({ reason: "number_too_large" });
    expect(errorOf("0.0.10000000000000000000000").detail).toStrictEqual({ reason: "number_too_large" });
  });

  it("throws only ShadowOtaError VERSION_INVALID for arbitrary strings", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 40 }), (s) => {
        const r = trySemver(s); // trySemver rethrows anything that is not VERSION_INVALID
        if (r !== undefined) expect(formatSemver(r)).toBe(s);
      }),
      { numRuns: 1000 },
    );
  });
});

describe("compareSemver / isNewer", () => {
  it("is newer only on strictly higher precedence", () => {
    expect(isNewer("1.2.0", "1.1.0")).toBe(true);
    expect(isNewer("1.1.0", "1.2.0")).toBe(false);
    expect(isNewer("1.2.0", "1.2.0")).toBe(false);
    expect(isNewer("1.2.0", "1.2.0-rc.1")).toBe(true);
    expect(isNewer(parseSemver("1.10.0"), parseSemver("1.9.0"))).toBe(true);
  });

  it("refuses invalid strings", () => {
    expect(() => compareSemver("v1.0.0", "1.0.0")).toThrow(ShadowOtaError);
    expect(() => isNewer("1.0.0", "1.0")).toThrow("patch version is missing");
  });
});

// ---------------------------------------------------------------------------------------------------------
// Cross-check with npm `semver` 7.
//
// npm semver is looser than SemVer 2.0.0 as written: SemVer's constructor trims whitespace and accepts a
// leading "v" (semver.parse(" v1.2.3 ") gives 1.2.3), formats `version` without build metadata, allows 256
// characters, and keeps a pre-release identifier of MAX_SAFE_INTEGER or more as a string instead of
// refusing it. So the oracle for "strict-valid" is:
//   p = semver.parse(s) is not null, AND s is exactly p's canonical text (p.version plus "+build" when
//   there is build metadata — this rules out trimmed whitespace and a leading v/=), AND s.length <= 31,
//   AND every all-digit pre-release identifier is <= MAX_SAFE_INTEGER.
// Ours must accept iff the oracle does, with equal fields (pre-release compared as text, because npm
// keeps large numeric identifiers as strings), and compare with the same sign as semver.compare.
// ---------------------------------------------------------------------------------------------------------

function npmCanonical(p: semver.SemVer): string {
  return p.version + (p.build.length > 0 ? "+" + p.build.join(".") : "");
}

function npmStrict(s: string): semver.SemVer | undefined {
  if (s.length > MAX_VERSION_LENGTH) return undefined;
  const p = semver.parse(s);
  if (p === null || npmCanonical(p) !== s) return undefined;
  for (const id of p.prerelease) {
    if (typeof id === "string" && /^[0-9]+$/.test(id) && Number(id) > Number.MAX_SAFE_INTEGER) return undefined;
  }
  return p;
}

function sameFields(ours: SemVer, npm: semver.SemVer): boolean {
  return ours.major === npm.major && ours.minor === npm.minor && ours.patch === npm.patch &&
    ours.prerelease.map(String).join("\u0000") === npm.prerelease.map(String).join("\u0000") &&
    ours.prerelease.length === npm.prerelease.length &&
    ours.build.join("\u0000") === npm.build.join("\u0000") && ours.build.length === npm.build.length;
}

const ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-".split("");

/** Numeric identifiers: mostly small (so versions stay short and collide), sometimes huge. */
const numArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 12 }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 99999 }) },
  { weight: 1, arbitrary: fc.constantFrom(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER - 1, 4294967295) },
);
const alnumIdArb = fc
  .string({ unit: fc.constantFrom(...ALNUM), minLength: 1, maxLength: 6 })
  .filter((s) => !/^[0-9]+$/.test(s));
const preIdArb = fc.oneof(numArb.map(String), alnumIdArb);
const buildIdArb = fc.string({ unit: fc.constantFrom(...ALNUM), minLength: 1, maxLength: 5 });

const versionArb = fc
  .tuple(numArb, numArb, numArb, fc.array(preIdArb, { maxLength: 4 }), fc.array(buildIdArb, { maxLength: 3 }))
  .map(([a, b, c, pre, build]) =>
    `${a}.${b}.${c}` + (pre.length > 0 ? "-" + pre.join(".") : "") + (build.length > 0 ? "+" + build.join(".") : ""));

/** Versions from tiny pools, so that pairs often share a prefix and the §11 rules are exercised. */
const closeVersionArb = fc
  .tuple(
    fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }),
    fc.array(fc.constantFrom("0", "1", "2", "10", "a", "b", "alpha", "A", "-", "1a", "a1"), { maxLength: 3 }),
    fc.array(fc.constantFrom("x", "y", "01"), { maxLength: 2 }),
  )
  .map(([a, b, c, pre, build]) =>
    `${a}.${b}.${c}` + (pre.length > 0 ? "-" + pre.join(".") : "") + (build.length > 0 ? "+" + build.join(".") : ""));

const MUTATION_CHARS = ["0", "1", "9", ".", "-", "+", "v", "=", "a", "Z", " ", "\t", "/", "_", "\u00e9", "\u0000", "~", "^"];
const mutatedArb = fc
  .tuple(
    fc.oneof(versionArb, closeVersionArb),
    fc.array(
      fc.tuple(fc.constantFrom("insert", "delete", "replace", "duplicate"), fc.nat(), fc.constantFrom(...MUTATION_CHARS)),
      { minLength: 1, maxLength: 3 },
    ),
  )
  .map(([s, edits]) => {
    let out = s;
    for (const [op, n, ch] of edits) {
      const pos = out.length === 0 ? 0 : n % (out.length + (op === "insert" ? 1 : 0));
      if (op === "insert") out = out.slice(0, pos) + ch + out.slice(pos);
      else if (op === "delete") out = out.slice(0, pos) + out.slice(pos + 1);
      else if (op === "replace") out = out.slice(0, pos) + ch + out.slice(pos + 1);
      else out = out.slice(0, pos) + out.charAt(pos) + out.slice(pos);
    }
    return out;
  });
const soupArb = fc.string({ unit: fc.constantFrom("0", "1", "2", "01", ".", "-", "+", "a", "v", " ", "/"), maxLength: 12 });

describe("semver cross-checked with npm semver (>= 10,000 generated cases)", () => {
  it("generated valid versions parse to the same fields as npm semver (3,000)", () => {
    fc.assert(
      fc.property(versionArb, (s) => {
        const ours = trySemver(s);
        if (s.length > MAX_VERSION_LENGTH) {
          expect(ours).toBeUndefined();
          expect(errorOf(s).detail).toStrictEqual({ reason: "too_long" });
          return;
        }
        const npm = semver.parse(s);
        expect(ours).toBeDefined();
        expect(npm).not.toBeNull();
        expect(sameFields(ours!, npm!)).toBe(true);
        expect(formatSemver(ours!)).toBe(s);
        expect(npmStrict(s)).toBeDefined();
      }),
      { numRuns: 3000 },
    );
  });

  it("generated pairs compare with the same sign as semver.compare (3,000)", () => {
    const shortArb = fc.oneof(closeVersionArb, versionArb.filter((s) => s.length <= MAX_VERSION_LENGTH));
    fc.assert(
      fc.property(shortArb, shortArb, (a, b) => {
        const ours = compareSemver(a, b);
        expect(ours).toBe(semver.compare(a, b));
        expect(compareSemver(b, a)).toBe(0 - ours);
        expect(isNewer(a, b)).toBe(ours === 1);
      }),
      { numRuns: 3000 },
    );
  });

  it("mutated versions: accepted exactly when the strict npm oracle accepts, with equal fields (4,000)", () => {
    let accepted = 0;
    let refused = 0;
    fc.assert(
      fc.property(fc.oneof({ weight: 3, arbitrary: mutatedArb }, { weight: 1, arbitrary: soupArb }), (s) => {
        const ours = trySemver(s);
        const npm = npmStrict(s);
        if (ours === undefined) refused++;
        else accepted++;
        expect([s, ours !== undefined]).toStrictEqual([s, npm !== undefined]);
        if (ours !== undefined && npm !== undefined) expect(sameFields(ours, npm)).toBe(true);
      }),
      { numRuns: 4000 },
    );
    // The generator must exercise both sides of the oracle, or the property says little.
    expect(accepted).toBeGreaterThan(200);
    expect(refused).toBeGreaterThan(200);
  });
});
