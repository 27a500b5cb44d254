/**
 * Where a firmware version is downloaded from: the two seeds' blob naming conventions, the URL built from
 * a base URL and a version, and the host of a URL (for the allow-list check), all pure and platform
 * neutral (XS has no URL class, so the host is parsed here by hand).
 *
 * Naming (docs/protocols.md §4, the seeds' conventions):
 * - AWS seed: desired `config.firmware_version` "1.0.5" → `{base URL}1.0.5.bin`
 * - Azure seed: desired `updateVersion` "1.1.0" → `{container URL}/v1_1_0.bin` (every "." of the version
 *   becomes "_", so "1.1.0-rc.1" → `v1_1_0-rc_1.bin`)
 * The version must be strict SemVer (src/core/semver.ts), so no "/", "?", "%", "#" or ".." reaches a URL.
 *
 * URL grammar accepted by `urlHost` (a strict subset of RFC 3986 §3.2):
 *   scheme "://" host [":" port] [("/" | "?" | "#") rest]
 *   scheme = ALPHA *(ALPHA / DIGIT / "+" / "-" / ".")
 *   host   = "[" IPv6 hex digits, ":" and "." "]" / 1*(ALPHA / DIGIT / "-" / ".")
 *   port   = 1*5DIGIT, at most 65535
 * User info ("user@host"), percent-encoded or other characters in the host, and a backslash or whitespace
 * anywhere in the URL make it undefined: a URL two parsers could read differently is refused outright.
 *
 * Not here: fetching, the allow-list policy itself (the OTA controller's), TLS.
 */
import { DOWNLOAD_CODES } from "./download-errors";
import { ShadowOtaError } from "./errors";
import { formatSemver, parseSemver } from "./semver";

export type FirmwareSeed = "aws" | "azure";

/** The AWS seed's blob name of `version`: "1.0.5" → "1.0.5.bin". Throws VERSION_INVALID for a non-SemVer. */
export function awsBlobName(version: string): string {
  return `${formatSemver(parseSemver(version))}.bin`;
}

/** The Azure seed's blob name of `version`: "1.1.0" → "v1_1_0.bin". Throws VERSION_INVALID for a non-SemVer. */
export function azureBlobName(version: string): string {
  return `v${formatSemver(parseSemver(version)).split(".").join("_")}.bin`;
}

/** Characters never accepted in a URL here (controls, space, backslash and RFC 3986's excluded set). */
const BAD_URL_CHAR = /[\u0000-\u0020\u007f-\uffff"<>\\^`{|}]/;

/**
 * The host of an absolute URL, lowercase, without the brackets of an IPv6 literal
 * ("https://[::1]:8443/x" → "::1"); undefined when the URL does not follow the grammar above.
 */
export function urlHost(url: string): string | undefined {
  if (typeof url !== "string" || BAD_URL_CHAR.test(url)) return undefined;
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(url);
  if (scheme === null) return undefined;
  const rest = url.slice(scheme[0].length);
  let end = rest.length;
  for (const stop of ["/", "?", "#"]) {
    const i = rest.indexOf(stop);
    // Stryker disable next-line EqualityOperator: a stop at index 0 leaves it in a one-character-longer authority that no host rule accepts either way; two stops never share an index, so "<=" changes nothing.
    if (i >= 0 && i < end) end = i;
  }
  const authority = rest.slice(0, end);
  // Defence in depth: neither host rule below accepts "@" either (so Stryker's "false" here is equivalent).
  // Stryker disable next-line ConditionalExpression: see the line above.
  if (authority.includes("@")) return undefined;
  let host: string;
  let portText: string;
  if (authority.startsWith("[")) {
    const close = authority.indexOf("]");
    // Stryker disable next-line ConditionalExpression,EqualityOperator: close is never 0 (authority[0] is "["); without "]" the text after the "missing" bracket is the whole authority, which starts with "[" and is refused below anyway.
    if (close < 0) return undefined;
    host = authority.slice(1, close);
    if (!/^[0-9A-Fa-f:.]+$/.test(host) || !host.includes(":")) return undefined;
    const after = authority.slice(close + 1);
    if (after !== "" && !after.startsWith(":")) return undefined;
    portText = after;
  } else {
    const colon = authority.indexOf(":");
    // Stryker disable next-line EqualityOperator: a colon at 0 leaves an empty host, refused below whichever branch takes it.
    host = colon < 0 ? authority : authority.slice(0, colon);
    // Stryker disable next-line EqualityOperator: as above.
    portText = colon < 0 ? "" : authority.slice(colon);
    if (!/^[A-Za-z0-9.-]+$/.test(host)) return undefined;
  }
  if (portText !== "") {
    const digits = portText.slice(1);
    if (!/^[0-9]{1,5}$/.test(digits) || Number(digits) > 65535) return undefined;
  }
  return host.toLowerCase();
}

/**
 * The download URL of `version` under `base` for a seed: `base` + awsBlobName / azureBlobName.
 * `base` must be an absolute https URL ending with "/" and without query or fragment
 * (e.g. "https://127.0.0.1:8443/firmware/"); otherwise DOWNLOAD_URL_INVALID (`detail.base`).
 * A non-SemVer version throws VERSION_INVALID.
 */
export function firmwareUrl(base: string, seed: FirmwareSeed, version: string): string {
  if (typeof base !== "string" || !/^https:\/\//i.test(base) || !base.endsWith("/") || base.includes("?") ||
    base.includes("#") || urlHost(base) === undefined) {
    throw new ShadowOtaError(DOWNLOAD_CODES.DOWNLOAD_URL_INVALID,
      `firmware base URL must be an absolute https URL ending with "/", without query or fragment: ${String(base)}`,
      { detail: { base: typeof base === "string" ? base.slice(0, 200) : null } });
  }
  if (seed !== "aws" && seed !== "azure") throw new TypeError(`seed must be "aws" or "azure", not ${String(seed)}`);
  return base + (seed === "aws" ? awsBlobName(version) : azureBlobName(version));
}
