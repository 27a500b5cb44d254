/**
 * The pure half of the Moddable HTTPS byte source (src/device/https-moddable.ts): which URL it may fetch,
 * the request headers it sends, and what it accepts of a response's status line and headers. No I/O and no
 * Moddable import, so Jest tests it on Node (test/device/http-range.test.ts) and XS runs it unchanged.
 * Failures are ShadowOtaErrors with the DOWNLOAD_* codes of src/core/download-errors.ts, the same codes and
 * detail keys the Node adapter (src/node/https-source.ts) gives for the same answers.
 *
 * Grammars (RFC 9110):
 *   Content-Range  = "bytes" SP first-pos "-" last-pos "/" ( complete-length / "*" )      §14.4
 *                    (the unsatisfied-range form, "*" before the slash, is not a body: refused)
 *   Content-Length = 1*DIGIT                                                              §8.6
 *   entity-tag     = [ "W/" ] DQUOTE *etagc DQUOTE ; etagc = %x21 / %x23-7E / obs-text    §8.8.3
 *   If-Range       = entity-tag / HTTP-date; only a strong entity tag is sent here       §13.1.5
 * Digit strings are limited to 15 digits so every number stays a safe integer.
 *
 * URLs (a strict subset; XS has no URL class): `https://host[:port][/path][?query][#fragment]`, where host
 * is what src/core/firmware-url.ts `urlHost` reads (no user info, no percent-encoding) and is not an IPv6
 * literal (the SDK's socket takes host names and IPv4 addresses). The fragment is never sent.
 *
 * Not here: sockets, TLS, timers (the adapter), retries (the OTA controller).
 */
import { DOWNLOAD_CODES } from "../core/download-errors";
import { ShadowOtaError } from "../core/errors";
import { urlHost } from "../core/firmware-url";

/** First byte of an ESP32 app image (esp_image_header_t.magic, ESP_IMAGE_HEADER_MAGIC). */
export const ESP_IMAGE_MAGIC = 0xe9;

/** A strong entity tag: quoted etagc characters, no W/ prefix. */
const STRONG_ETAG = /^"[\x21\x23-\x7e\x80-\xff]*"$/;
const DIGITS = /^[0-9]{1,15}$/;
const CONTENT_RANGE = /^bytes ([0-9]{1,15})-([0-9]{1,15})\/([0-9]{1,15}|\*)$/;
const MAX_URL = 2048;
/** Redirect statuses followed (with a Location to an allowed https host). */
export const REDIRECT_STATUSES: readonly number[] = [301, 302, 303, 307, 308];

type Detail = Record<string, string | number | boolean | null>;

function fail(code: string, message: string, detail: Detail): ShadowOtaError {
  return new ShadowOtaError(code, message, { detail });
}

function clip(s: string, n = 200): string {
  return s.length > n ? s.slice(0, n) : s;
}

/** True for a strong entity tag (`"abc"`); false for a weak one (`W/"abc"`) or anything else. */
export function isStrongEtag(value: unknown): value is string {
  return typeof value === "string" && STRONG_ETAG.test(value);
}

/** Where one request goes. */
export interface HttpsTarget {
  /** Lowercase host name or IPv4 address (what SecureSocket connects to and checks the certificate against). */
  readonly host: string;
  readonly port: number;
  /** Path and query, starting with "/". */
  readonly path: string;
}

/** The URL checks of the header comment. Throws DOWNLOAD_URL_INVALID (`detail.reason`). */
export function httpsTarget(url: unknown): HttpsTarget {
  const shown = typeof url === "string" ? clip(url) : null;
  const invalid = (reason: string): ShadowOtaError =>
    fail(DOWNLOAD_CODES.DOWNLOAD_URL_INVALID, `firmware URL ${reason}: ${String(shown)}`, { url: shown, reason });
  if (typeof url !== "string" || url.length > MAX_URL) throw invalid("is not a string of at most 2048 characters");
  if (!/^https:\/\//i.test(url)) throw invalid("is not https");
  const host = urlHost(url);
  if (host === undefined) throw invalid("has a host this adapter does not read unambiguously");
  if (host.includes(":")) throw invalid("names an IPv6 literal, which the SDK's socket does not take");
  const rest = url.slice("https://".length);
  let end = rest.length;
  for (const stop of ["/", "?", "#"]) {
    const i = rest.indexOf(stop);
    if (i >= 0 && i < end) end = i;
  }
  const authority = rest.slice(0, end);
  const colon = authority.indexOf(":");
  const port = colon < 0 ? 443 : Number(authority.slice(colon + 1)); // urlHost checked 1..5 digits, <= 65535
  if (port === 0) throw invalid("has port 0");
  let path = rest.slice(end);
  const hash = path.indexOf("#");
  if (hash >= 0) path = path.slice(0, hash);
  if (!path.startsWith("/")) path = "/" + path;
  return { host, port, path };
}

/** The absolute URL of a redirect's Location: an https URL as is, a path ("/x") on the same host and
 *  port. Anything else (relative paths, "//host/x", other schemes) is undefined: refused. */
export function redirectUrl(location: string, from: HttpsTarget): string | undefined {
  if (/^https:\/\//i.test(location)) return location;
  if (location.startsWith("/") && !location.startsWith("//")) {
    return `https://${from.host}${from.port === 443 ? "" : `:${from.port}`}${location}`;
  }
  return undefined;
}

/**
 * The request headers, as the SDK's Request takes them (`[name, value, name, value, …]`). The SDK adds
 * `Connection: close` itself, and its own `Host` only when none is given: ours carries the port when it
 * is not 443, which the SDK's would leave out. `Range`/`If-Range` only for a resume (never If-Range
 * without Range, RFC 9110 §13.1.5). Throws TypeError for an etag that is not strong.
 */
export function requestHeaders(target: HttpsTarget, offset: number, etag: string | undefined, userAgent: string): string[] {
  const headers = [
    "Host", target.port === 443 ? target.host : `${target.host}:${target.port}`,
    "Accept", "application/octet-stream",
    "Accept-Encoding", "identity",
    "User-Agent", userAgent,
  ];
  if (offset > 0) {
    headers.push("Range", `bytes=${offset}-`);
    if (etag !== undefined) {
      if (!isStrongEtag(etag)) throw new TypeError(`etag must be a strong entity tag ("..."), not ${String(etag)}`);
      headers.push("If-Range", etag);
    }
  }
  return headers;
}

/** A parsed `Content-Range: bytes first-last/complete` (complete undefined for "*"); undefined when malformed. */
export function parseContentRange(value: string): { first: number; last: number; complete: number | undefined } | undefined {
  const m = CONTENT_RANGE.exec(value.trim());
  if (m === null) return undefined;
  const first = Number(m[1]);
  const last = Number(m[2]);
  const complete = m[3] === "*" ? undefined : Number(m[3]);
  if (last < first || (complete !== undefined && last >= complete)) return undefined;
  return { first, last, complete };
}

/** Response headers by lowercase name, every value a header line gave, in order. */
export type ResponseHeaders = Readonly<Record<string, readonly string[]>>;

/** What the adapter needs to stream a body that passed `checkResponseHead`. */
export interface ResponseHead {
  readonly status: number;
  /** Offset of the body's first byte in the object. */
  readonly start: number;
  /** The whole object's length when known. */
  readonly total: number | undefined;
  /** Body bytes announced (Content-Length or the 206 range); undefined for a chunked body without a range. */
  readonly expected: number | undefined;
  /** The strong ETag, if the server sent exactly one. */
  readonly etag: string | undefined;
  /** The body starts at byte 0: its first byte must be ESP_IMAGE_MAGIC. */
  readonly checkMagic: boolean;
  readonly contentType: string | null;
  /** The SDK frames the body by chunks (Transfer-Encoding: chunked). */
  readonly chunked: boolean;
}

function single(headers: ResponseHeaders, name: string): string | undefined {
  const v = headers[name];
  return v === undefined || v.length === 0 ? undefined : v[0];
}

/** A response the SDK's parser would frame differently from what we check: treated like Node's parser
 *  errors in the Node adapter (DOWNLOAD_CONNECT in phase "headers": retried). */
function malformed(reason: string, where: string): ShadowOtaError {
  return fail(DOWNLOAD_CODES.DOWNLOAD_CONNECT, `malformed response from ${where}: ${reason}`, { errno: "MALFORMED_RESPONSE", phase: "headers", reason });
}

/**
 * Checks a final (non-redirect) response's status and headers against a request for `offset`, before a
 * body byte is read. `where` names the host and path in messages. Throws:
 * - DOWNLOAD_HTTP_STATUS (`detail.status`) for anything but 200 and 206;
 * - DOWNLOAD_NOT_AN_IMAGE for a text/html answer or an empty body from offset 0;
 * - DOWNLOAD_RANGE_INVALID for a 206 whose Content-Range is malformed, does not start at `offset`, or
 *   disagrees with its Content-Length;
 * - DOWNLOAD_CONNECT (phase "headers") when the framing headers are unusable: a Content-Length that is not
 *   digits or given twice with different values, a Transfer-Encoding other than chunked/identity, or
 *   chunked together with a Content-Length (RFC 9112 §6.3: a request smuggling signature).
 */
export function checkResponseHead(status: number, headers: ResponseHeaders, offset: number, where: string): ResponseHead {
  if (status !== 200 && status !== 206) {
    throw fail(DOWNLOAD_CODES.DOWNLOAD_HTTP_STATUS, `HTTP ${status} from ${where}`, { status: Number.isSafeInteger(status) ? status : null });
  }
  const contentType = single(headers, "content-type") ?? null;
  if (contentType !== null && /^\s*text\/html\b/i.test(contentType)) {
    throw fail(DOWNLOAD_CODES.DOWNLOAD_NOT_AN_IMAGE, `${where} answered an HTML page, not a firmware image`, { contentType: clip(contentType, 80), status });
  }

  const encodings = (headers["transfer-encoding"] ?? []).join(",").split(",").map((s) => s.trim().toLowerCase()).filter((s) => s !== "");
  if (encodings.some((e) => e !== "chunked" && e !== "identity")) throw malformed(`Transfer-Encoding ${clip(encodings.join(", "), 60)}`, where);
  const chunked = encodings.includes("chunked");
  const lengths = headers["content-length"] ?? [];
  let length: number | undefined;
  if (lengths.length > 0) {
    const first = lengths[0]!.trim();
    if (!DIGITS.test(first) || lengths.some((l) => l.trim() !== first)) throw malformed(`Content-Length ${clip(lengths.join(", "), 60)}`, where);
    if (chunked) throw malformed("both Transfer-Encoding: chunked and Content-Length", where);
    length = Number(first);
  }

  let start = 0;
  let total: number | undefined;
  let expected: number | undefined;
  if (status === 206) {
    const ranges = headers["content-range"] ?? [];
    const cr = ranges.length === 1 ? ranges[0]! : undefined;
    const r = cr === undefined ? undefined : parseContentRange(cr);
    if (r === undefined || r.first !== offset || (length !== undefined && length !== r.last - r.first + 1)) {
      throw fail(DOWNLOAD_CODES.DOWNLOAD_RANGE_INVALID, `206 with Content-Range ${JSON.stringify(ranges.length === 0 ? null : clip(ranges.join(", "), 80))} for offset ${offset}`,
        { contentRange: ranges.length === 0 ? null : clip(ranges.join(", "), 80), offset, contentLength: length ?? null });
    }
    start = r.first;
    total = r.complete;
    expected = r.last - r.first + 1;
  } else {
    total = length;
    expected = length;
  }
  if (start === 0 && expected === 0) {
    throw fail(DOWNLOAD_CODES.DOWNLOAD_NOT_AN_IMAGE, `empty body from ${where}`, { contentType: contentType === null ? null : clip(contentType, 80), status });
  }
  const etags = headers["etag"] ?? [];
  const etag = etags.length === 1 && isStrongEtag(etags[0]) ? etags[0] : undefined;
  return { status, start, total, expected, etag, checkMagic: start === 0, contentType, chunked };
}
