/**
 * Strict Semantic Versioning 2.0.0 (https://semver.org): parse, compare by precedence, format.
 *
 * Firmware versions travel from the cloud (desired `firmware_version`, Azure `updateVersion`) into
 * download URLs (`{base URL}1.0.5.bin`), into the ESP32 app descriptor and into the reported state, so
 * this parser is deliberately strict: exactly the semver.org grammar, nothing the npm `semver` package
 * tolerates on top of it (no leading `v` or `=`, no surrounding whitespace), at most MAX_VERSION_LENGTH
 * characters, and numbers no larger than Number.MAX_SAFE_INTEGER. Characters such as `/`, `?`, `%`, `#`
 * or `..` can therefore never reach a URL or a file name through a version.
 *
 * Not here: version ranges (`^1.2`, `>=1.0.0`), loose parsing, coercion, downgrade policy (the OTA
 * decision lives with the OTA state machine; it calls `isNewer`).
 */
import { ShadowOtaError } from "./errors";

/** The error codes of this module (see docs/error-codes.md). */
export const SEMVER_CODES = {
  /** The text is not a strict SemVer 2.0.0 version of at most MAX_VERSION_LENGTH characters
   *  (or is not a string at all). `detail.reason` names the rule that failed (a SemverInvalidReason). */
  VERSION_INVALID: "VERSION_INVALID",
} as const;

/**
 * Longest accepted version text. The ESP32 app descriptor (`esp_app_desc_t.version`) is `char[32]`,
 * NUL-terminated, so a version that the running image can report about itself holds at most 31 bytes;
 * a longer one could never be compared with what the device later boots. Valid versions are ASCII, so
 * characters = bytes.
 */
export const MAX_VERSION_LENGTH = 31;

export interface SemVer {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
  /** Dot-separated pre-release identifiers; numeric ones as numbers (`1.0.0-rc.1` → `["rc", 1]`). */
  readonly prerelease: readonly (string | number)[];
  /** Build metadata identifiers, kept as text (leading zeros are allowed there); ignored by precedence. */
  readonly build: readonly string[];
  /** The text that was parsed (equal to formatSemver of this value). */
  readonly raw: string;
}

/** Why a text was refused; goes into `detail.reason` of VERSION_INVALID. */
export type SemverInvalidReason =
  | "not_string"
  | "empty"
  | "too_long"
  | "leading_prefix"
  | "whitespace"
  | "control_char"
  | "non_ascii"
  | "invalid_char"
  | "empty_identifier"
  | "missing_component"
  | "leading_zero"
  | "number_too_large";

function invalid(reason: SemverInvalidReason, message: string): ShadowOtaError {
  return new ShadowOtaError(SEMVER_CODES.VERSION_INVALID, message, { detail: { reason } });
}

/** Printable form of one character for an error message (never echoes control or non-ASCII raw). */
function describeChar(code: number): string {
  if (code >= 0x21 && code <= 0x7e) return `'${String.fromCharCode(code)}'`;
  return `U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
}

/** Character codes the scanner looks for. */
const Ch = { Zero: 0x30, Nine: 0x39, Dot: 0x2e, Hyphen: 0x2d, Plus: 0x2b } as const;

function isDigit(c: number): boolean {
  return c >= Ch.Zero && c <= Ch.Nine;
}

/** [0-9A-Za-z-] */
function isIdentChar(c: number): boolean {
  return isDigit(c) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === Ch.Hyphen;
}

/** The error for a character that the grammar does not allow at `index`. */
function badChar(text: string, index: number): ShadowOtaError {
  const c = text.charCodeAt(index);
  const at = `${describeChar(c)} at index ${index}`;
  if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0b || c === 0x0c || c === 0x0d || c === 0xa0 ||
      c === 0xfeff || c === 0x2028 || c === 0x2029 || (c >= 0x2000 && c <= 0x200a) || c === 0x3000) {
    return invalid("whitespace", `version contains whitespace (${at})`);
  }
  if (c < 0x20 || c === 0x7f) return invalid("control_char", `version contains a control character (${at})`);
  if (c > 0x7f) return invalid("non_ascii", `version contains a non-ASCII character (${at})`);
  return invalid("invalid_char", `version contains ${at}, not allowed by SemVer 2.0.0`);
}

/*
 * Grammar (semver.org, "Backus–Naur Form Grammar for Valid SemVer Versions"), applied to the whole text:
 *
 *   <valid semver> ::= <version core>
 *                    | <version core> "-" <pre-release>
 *                    | <version core> "+" <build>
 *                    | <version core> "-" <pre-release> "+" <build>
 *   <version core> ::= <major> "." <minor> "." <patch>
 *   <major>, <minor>, <patch> ::= <numeric identifier>
 *   <pre-release> ::= <dot-separated pre-release identifiers>
 *   <dot-separated pre-release identifiers> ::= <pre-release identifier>
 *                                             | <pre-release identifier> "." <dot-separated pre-release identifiers>
 *   <build> ::= <dot-separated build identifiers>
 *   <dot-separated build identifiers> ::= <build identifier>
 *                                       | <build identifier> "." <dot-separated build identifiers>
 *   <pre-release identifier> ::= <alphanumeric identifier> | <numeric identifier>
 *   <build identifier> ::= <alphanumeric identifier> | <digits>
 *   <alphanumeric identifier> ::= <non-digit> | <non-digit> <identifier characters>
 *                               | <identifier characters> <non-digit>
 *                               | <identifier characters> <non-digit> <identifier characters>
 *   <numeric identifier> ::= "0" | <positive digit> | <positive digit> <digits>
 *   <identifier characters> ::= <identifier character> | <identifier character> <identifier characters>
 *   <identifier character> ::= <digit> | <non-digit>
 *   <non-digit> ::= <letter> | "-"
 *   <digits> ::= <digit> | <digit> <digits>
 *   <digit> ::= "0" | <positive digit>
 *   <positive digit> ::= "1" | ... | "9"
 *   <letter> ::= "A" | ... | "Z" | "a" | ... | "z"
 *
 * Added limits: length <= MAX_VERSION_LENGTH; every numeric identifier (core and pre-release) <=
 * Number.MAX_SAFE_INTEGER, so it is exact as a JS number.
 *
 * The scanner below reads each character once (O(n), no backtracking); the length is checked before
 * anything else, so a megabyte of hostile text costs one comparison.
 */

/** Scans one identifier starting at `start`; returns its end (index of the first non-identifier char). */
function scanIdentifier(text: string, start: number): number {
  let i = start;
  while (i < text.length && isIdentChar(text.charCodeAt(i))) i++;
  return i;
}

/**
 * Checks that text[start, end) is a numeric identifier (all digits, no leading zero, <= MAX_SAFE_INTEGER)
 * and returns its value. `what` names it in messages ("major", "pre-release identifier 2").
 */
function numericIdentifier(text: string, start: number, end: number, what: string): number {
  const s = text.slice(start, end);
  if (s.length > 1 && s.charCodeAt(0) === Ch.Zero) {
    throw invalid("leading_zero", `${what} "${s}" has a leading zero`);
  }
  // 16 digits is the most MAX_SAFE_INTEGER (9007199254740991) has; Number() of longer text is inexact.
  const value = s.length > 16 ? Infinity : Number(s);
  if (value > Number.MAX_SAFE_INTEGER) {
    throw invalid("number_too_large", `${what} "${s}" is larger than ${Number.MAX_SAFE_INTEGER}`);
  }
  return value;
}

function allDigits(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (!isDigit(text.charCodeAt(i))) return false;
  return true;
}

/**
 * Parses a strict SemVer 2.0.0 version. Accepts `unknown` so that values straight from a shadow
 * document can be passed in; anything but a string is refused.
 *
 * Errors: VERSION_INVALID (with `detail.reason`) for non-strings, empty or overlong text, a leading `v`
 * or `=`, whitespace, control or non-ASCII characters, any character outside `[0-9A-Za-z.+-]`, empty
 * identifiers (`1..0`, `1.0.0-`, `1.0.0-a..b`), missing components, leading zeros in numeric
 * identifiers and numbers above Number.MAX_SAFE_INTEGER.
 */
export function parseSemver(text: unknown): SemVer {
  if (typeof text !== "string") {
    throw invalid("not_string", `version must be a string, got ${text === null ? "null" : typeof text}`);
  }
  if (text.length === 0) throw invalid("empty", "version is empty");
  if (text.length > MAX_VERSION_LENGTH) {
    throw invalid("too_long", `version is ${text.length} characters long; at most ${MAX_VERSION_LENGTH} are allowed`);
  }
  const first = text.charCodeAt(0);
  if (first === 0x76 || first === 0x56 || first === 0x3d) {
    throw invalid("leading_prefix", `version starts with ${describeChar(first)}; write the bare number (1.2.3)`);
  }

  // <version core>
  const core: number[] = [];
  const names = ["major", "minor", "patch"];
  let i = 0;
  for (let part = 0; part < 3; part++) {
    const start = i;
    while (i < text.length && isDigit(text.charCodeAt(i))) i++;
    if (i === start) {
      const c = text.charCodeAt(i); // NaN at the end of the text
      if (c === Ch.Dot) throw invalid("empty_identifier", `${names[part]} version is empty`);
      if (i < text.length && c !== Ch.Hyphen && c !== Ch.Plus) throw badChar(text, i);
      throw invalid("missing_component", `${names[part]} version is missing (expected MAJOR.MINOR.PATCH)`);
    }
    core.push(numericIdentifier(text, start, i, names[part]!));
    if (part < 2) {
      const c = text.charCodeAt(i);
      if (i >= text.length || c === Ch.Hyphen || c === Ch.Plus) {
        throw invalid("missing_component", `${names[part + 1]} version is missing (expected MAJOR.MINOR.PATCH)`);
      }
      if (c !== Ch.Dot) throw badChar(text, i);
      i++;
    }
  }

  // "-" <pre-release>
  const prerelease: (string | number)[] = [];
  if (i < text.length && text.charCodeAt(i) === Ch.Hyphen) {
    i++;
    for (;;) {
      const start = i;
      i = scanIdentifier(text, start);
      const n = prerelease.length + 1;
      if (i === start) {
        if (i < text.length && text.charCodeAt(i) !== Ch.Dot && text.charCodeAt(i) !== Ch.Plus) throw badChar(text, i);
        throw invalid("empty_identifier", `pre-release identifier ${n} is empty`);
      }
      if (allDigits(text, start, i)) prerelease.push(numericIdentifier(text, start, i, `pre-release identifier ${n}`));
      else prerelease.push(text.slice(start, i));
      if (i < text.length && text.charCodeAt(i) === Ch.Dot) { i++; continue; }
      break;
    }
  }

  // "+" <build>
  const build: string[] = [];
  if (i < text.length && text.charCodeAt(i) === Ch.Plus) {
    i++;
    for (;;) {
      const start = i;
      i = scanIdentifier(text, start);
      if (i === start) {
        if (i < text.length && text.charCodeAt(i) !== Ch.Dot) throw badChar(text, i);
        throw invalid("empty_identifier", `build identifier ${build.length + 1} is empty`);
      }
      build.push(text.slice(start, i));
      if (i < text.length && text.charCodeAt(i) === Ch.Dot) { i++; continue; }
      break;
    }
  }

  if (i < text.length) throw badChar(text, i);
  return { major: core[0]!, minor: core[1]!, patch: core[2]!, prerelease, build, raw: text };
}

/** parseSemver, but `undefined` instead of an error. */
export function trySemver(text: unknown): SemVer | undefined {
  try {
    return parseSemver(text);
  } catch (e) {
    if (e instanceof ShadowOtaError && e.code === SEMVER_CODES.VERSION_INVALID) return undefined;
    throw e;
  }
}

/** The canonical text of a version (the same text it was parsed from: strict parsing has one spelling). */
export function formatSemver(v: SemVer): string {
  let s = `${v.major}.${v.minor}.${v.patch}`;
  if (v.prerelease.length > 0) s += "-" + v.prerelease.join(".");
  if (v.build.length > 0) s += "+" + v.build.join(".");
  return s;
}

function sign(a: number, b: number): -1 | 0 | 1 {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Compares two identifiers (semver.org §11.4.1–11.4.3). Strings compare by ASCII code units. */
function compareIdentifier(a: string | number, b: string | number): -1 | 0 | 1 {
  const an = typeof a === "number";
  const bn = typeof b === "number";
  if (an && bn) return sign(a, b);
  if (an) return -1; // numeric identifiers have lower precedence than alphanumeric ones
  if (bn) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function toSemver(v: SemVer | string): SemVer {
  return typeof v === "string" ? parseSemver(v) : v;
}

/**
 * SemVer precedence (semver.org §11): major, minor, patch numerically; a version with a pre-release is
 * lower than the same version without; pre-release identifiers left to right, numeric < alphanumeric,
 * and a longer set wins when all preceding identifiers are equal. Build metadata is ignored, so
 * `1.0.0+a` and `1.0.0+b` compare equal. Strings are parsed first (VERSION_INVALID if not strict).
 */
export function compareSemver(a: SemVer | string, b: SemVer | string): -1 | 0 | 1 {
  const x = toSemver(a);
  const y = toSemver(b);
  const core = sign(x.major, y.major) || sign(x.minor, y.minor) || sign(x.patch, y.patch);
  if (core !== 0) return core;
  const xp = x.prerelease;
  const yp = y.prerelease;
  if (xp.length === 0 || yp.length === 0) return sign(yp.length, xp.length) as -1 | 0 | 1;
  const n = Math.min(xp.length, yp.length);
  for (let k = 0; k < n; k++) {
    const c = compareIdentifier(xp[k]!, yp[k]!);
    if (c !== 0) return c;
  }
  return sign(xp.length, yp.length);
}

/** True when `candidate` has strictly higher precedence than `current` (equal precedence is not newer). */
export function isNewer(candidate: SemVer | string, current: SemVer | string): boolean {
  return compareSemver(candidate, current) > 0;
}
