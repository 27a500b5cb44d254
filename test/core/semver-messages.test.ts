/**
 * What a refused version says (src/core/semver.ts). The message reaches the cloud in `reported.lastError`
 * (SYNC_FIRMWARE_VERSION_INVALID carries it) and `detail.reason` names the rule, so both are part of what
 * an operator sees: the character and where it is, printed safely (never a raw control or non-ASCII
 * character), for every kind of whitespace, control character and boundary of the printable range.
 * semver.test.ts checks the reasons from the vectors; this checks the words. Jest subset only (runs on XS).
 */
import { ShadowOtaError } from "../../src/core/errors";
import { compareSemver, formatSemver, isNewer, parseSemver, SEMVER_CODES, trySemver } from "../../src/core/semver";

function refusal(text: unknown): { reason: unknown; message: string } {
  try {
    parseSemver(text);
  } catch (e) {
    expect(e).toBeInstanceOf(ShadowOtaError);
    const err = e as ShadowOtaError;
    expect(err.code).toBe(SEMVER_CODES.VERSION_INVALID);
    return { reason: err.detail?.["reason"], message: err.message };
  }
  throw new Error(`${JSON.stringify(text)} was accepted`);
}

const at = (ch: string, index: number) => `${ch} at index ${index}`;

describe("whitespace in a version", () => {
  const cases: Array<[string, number, string]> = [
    ["space", 0x20, "U+0020"], ["tab", 0x09, "U+0009"], ["line feed", 0x0a, "U+000A"], ["vertical tab", 0x0b, "U+000B"],
    ["form feed", 0x0c, "U+000C"], ["carriage return", 0x0d, "U+000D"], ["no-break space", 0xa0, "U+00A0"],
    ["byte order mark", 0xfeff, "U+FEFF"], ["line separator", 0x2028, "U+2028"], ["paragraph separator", 0x2029, "U+2029"],
    ["en quad (first of U+2000..U+200A)", 0x2000, "U+2000"], ["hair space (last of U+2000..U+200A)", 0x200a, "U+200A"],
    ["ideographic space", 0x3000, "U+3000"],
  ];
  it.each(cases)("%s is refused as whitespace, named by its code point and index", (_name, code, shown) => {
    const c = String.fromCharCode(code);
    expect(refusal(`1.2.3${c}`)).toEqual({ reason: "whitespace", message: `version contains whitespace (${at(shown, 5)})` });
    expect(refusal(`${c}1.2.3`)).toEqual({ reason: "whitespace", message: `version contains whitespace (${at(shown, 0)})` });
    expect(refusal(`1.2.3-a${c}b`)).toEqual({ reason: "whitespace", message: `version contains whitespace (${at(shown, 7)})` });
  });
});

describe("control characters", () => {
  it.each([[0x00, "U+0000"], [0x01, "U+0001"], [0x08, "U+0008"], [0x0e, "U+000E"], [0x1b, "U+001B"], [0x1f, "U+001F"], [0x7f, "U+007F"]])(
    "U+%s is refused as a control character, never echoed raw", (code, shown) => {
      const r = refusal(`1.2.3+b${String.fromCharCode(code as number)}`);
      expect(r).toEqual({ reason: "control_char", message: `version contains a control character (${at(shown as string, 7)})` });
    });
});

describe("other characters", () => {
  it("non-ASCII: just outside the whitespace ranges too", () => {
    expect(refusal("1.2.3-\u0080")).toEqual({ reason: "non_ascii", message: `version contains a non-ASCII character (${at("U+0080", 6)})` });
    expect(refusal("1.2.3-\u00e9")).toEqual({ reason: "non_ascii", message: `version contains a non-ASCII character (${at("U+00E9", 6)})` });
    expect(refusal("1.2.3-\u1fff")).toEqual({ reason: "non_ascii", message: `version contains a non-ASCII character (${at("U+1FFF", 6)})` });
    expect(refusal("1.2.3-\u200b")).toEqual({ reason: "non_ascii", message: `version contains a non-ASCII character (${at("U+200B", 6)})` });
    expect(refusal("1.2.3-\u2027")).toEqual({ reason: "non_ascii", message: `version contains a non-ASCII character (${at("U+2027", 6)})` });
    expect(refusal("1.2.3-\u202a")).toEqual({ reason: "non_ascii", message: `version contains a non-ASCII character (${at("U+202A", 6)})` });
  });

  it("printable ASCII outside the grammar is quoted, at both ends of the printable range", () => {
    expect(refusal("1.2.3!")).toEqual({ reason: "invalid_char", message: "version contains '!' at index 5, not allowed by SemVer 2.0.0" });
    expect(refusal("1.2.3~")).toEqual({ reason: "invalid_char", message: "version contains '~' at index 5, not allowed by SemVer 2.0.0" });
    expect(refusal("1.2.3_x")).toEqual({ reason: "invalid_char", message: "version contains '_' at index 5, not allowed by SemVer 2.0.0" });
    expect(refusal("1/2.3")).toEqual({ reason: "invalid_char", message: "version contains '/' at index 1, not allowed by SemVer 2.0.0" });
    expect(refusal("1.2/3")).toEqual({ reason: "invalid_char", message: "version contains '/' at index 3, not allowed by SemVer 2.0.0" });
    expect(refusal("1.2.3-a/b")).toEqual({ reason: "invalid_char", message: "version contains '/' at index 7, not allowed by SemVer 2.0.0" });
    expect(refusal("1.2.3+a/b")).toEqual({ reason: "invalid_char", message: "version contains '/' at index 7, not allowed by SemVer 2.0.0" });
    expect(refusal("1.2.3-@")).toEqual({ reason: "invalid_char", message: "version contains '@' at index 6, not allowed by SemVer 2.0.0" });
    expect(refusal("1.2.3+@")).toEqual({ reason: "invalid_char", message: "version contains '@' at index 6, not allowed by SemVer 2.0.0" });
    expect(refusal("x.2.3")).toEqual({ reason: "invalid_char", message: "version contains 'x' at index 0, not allowed by SemVer 2.0.0" });
    expect(refusal("1.2.3.4")).toEqual({ reason: "invalid_char", message: "version contains '.' at index 5, not allowed by SemVer 2.0.0" });
  });
});

describe("the other refusals say which rule failed", () => {
  it.each([
    [null, "not_string", "version must be a string, got null"],
    [123, "not_string", "version must be a string, got number"],
    [undefined, "not_string", "version must be a string, got undefined"],
    ["", "empty", "version is empty"],
    ["1.2.3-" + "a".repeat(26), "too_long", "version is 32 characters long; at most 31 are allowed"],
    ["v1.2.3", "leading_prefix", "version starts with 'v'; write the bare number (1.2.3)"],
    ["V1.2.3", "leading_prefix", "version starts with 'V'; write the bare number (1.2.3)"],
    ["=1.2.3", "leading_prefix", "version starts with '='; write the bare number (1.2.3)"],
    [".2.3", "empty_identifier", "major version is empty"],
    ["1..3", "empty_identifier", "minor version is empty"],
    ["1.2.", "missing_component", "patch version is missing (expected MAJOR.MINOR.PATCH)"],
    ["1.2", "missing_component", "patch version is missing (expected MAJOR.MINOR.PATCH)"],
    ["1", "missing_component", "minor version is missing (expected MAJOR.MINOR.PATCH)"],
    ["1-rc", "missing_component", "minor version is missing (expected MAJOR.MINOR.PATCH)"],
    ["1.2+b", "missing_component", "patch version is missing (expected MAJOR.MINOR.PATCH)"],
    ["1.2.-rc", "missing_component", "patch version is missing (expected MAJOR.MINOR.PATCH)"],
    ["1.2.+b", "missing_component", "patch version is missing (expected MAJOR.MINOR.PATCH)"],
    ["01.2.3", "leading_zero", "major \"01\" has a leading zero"],
    ["1.2.3-rc.01", "leading_zero", "pre-release identifier 2 \"01\" has a leading zero"],
    ["1.2.3-", "empty_identifier", "pre-release identifier 1 is empty"],
    ["1.2.3-a..b", "empty_identifier", "pre-release identifier 2 is empty"],
    ["1.2.3-+b", "empty_identifier", "pre-release identifier 1 is empty"],
    ["1.2.3+", "empty_identifier", "build identifier 1 is empty"],
    ["1.2.3+a..b", "empty_identifier", "build identifier 2 is empty"],
    ["1.2.3+a.", "empty_identifier", "build identifier 2 is empty"],
    ["9007199254740992.0.0", "number_too_large", "major \"9007199254740992\" is larger than 9007199254740991"],
    ["1.2.12345678901234567", "number_too_large", "patch \"12345678901234567\" is larger than 9007199254740991"],
  ])("%j: %s", (text, reason, message) => {
    expect(refusal(text)).toEqual({ reason, message });
  });

  it("accepts the limits: 31 characters, MAX_SAFE_INTEGER, zero, build digits with leading zeros", () => {
    expect(parseSemver("1.2.3-" + "a".repeat(25)).raw).toHaveLength(31);
    expect(parseSemver("9007199254740991.0.0").major).toBe(9007199254740991);
    expect(parseSemver("0.0.0-0").prerelease).toEqual([0]);
    expect(parseSemver("1.0.0+007").build).toEqual(["007"]);
    expect(parseSemver("1.0.0-0a.-").prerelease).toEqual(["0a", "-"]);
  });
});

describe("trySemver, formatSemver, precedence", () => {
  it("trySemver gives undefined for a refused version and the value otherwise", () => {
    expect(trySemver("1.2")).toBeUndefined();
    expect(trySemver(null)).toBeUndefined();
    expect(trySemver("1.2.3-rc.1+b")?.raw).toBe("1.2.3-rc.1+b");
  });

  it("formatSemver gives back the text for every part", () => {
    for (const t of ["1.2.3", "1.2.3-rc.1", "1.2.3+b.7", "1.2.3-rc.1.x+b.007"]) expect(formatSemver(parseSemver(t))).toBe(t);
  });

  it("precedence by core numbers, then pre-release presence, identifiers and their count", () => {
    expect(compareSemver("1.2.3", "1.2.4")).toBe(-1);
    expect(compareSemver("1.3.0", "1.2.9")).toBe(1);
    expect(compareSemver("2.0.0", "1.9.9")).toBe(1);
    expect(compareSemver("1.0.0-rc.1", "1.0.0")).toBe(-1);
    expect(compareSemver("1.0.0", "1.0.0-rc.1")).toBe(1);
    expect(compareSemver("1.0.0-1", "1.0.0-a")).toBe(-1);
    expect(compareSemver("1.0.0-a", "1.0.0-1")).toBe(1);
    expect(compareSemver("1.0.0-a.b", "1.0.0-a")).toBe(1);
    expect(compareSemver("1.0.0-a", "1.0.0-a.b")).toBe(-1);
    expect(compareSemver("1.0.0-a.2", "1.0.0-a.10")).toBe(-1);
    expect(compareSemver("1.0.0-b", "1.0.0-a")).toBe(1);
    expect(compareSemver("1.0.0-B", "1.0.0-a")).toBe(-1);
    expect(compareSemver("1.0.0-rc.1+x", "1.0.0-rc.1+y")).toBe(0);
    expect(isNewer("1.0.1", "1.0.0")).toBe(true);
    expect(isNewer("1.0.0+b", "1.0.0")).toBe(false);
    expect(isNewer("0.9.9", "1.0.0")).toBe(false);
  });
});
