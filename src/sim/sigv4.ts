/**
 * AWS Signature Version 4 verification, for the local cloud's AWS IoT data-plane endpoint
 * (aws-dataplane.ts): given what arrived (method, raw path and query, headers, body) and the locally
 * configured access keys, decide whether the `Authorization: AWS4-HMAC-SHA256 …` header is a valid signature,
 * the way AWS does — so that an unchanged AWS SDK signs for the local cloud exactly as it signs for AWS.
 *
 * The algorithm, per AWS's "Signature Version 4 signing process" (General Reference, "Create a canonical
 * request", "Create a string to sign", "Calculate the signature"):
 *
 *   canonical request = METHOD \n canonical-path \n canonical-query \n canonical-headers \n \n
 *                       signed-headers \n hex(SHA-256(body))
 *   canonical-path    = the path as sent, `.`/`..` and empty segments removed, URI-encoded again
 *                       (every service but S3 encodes twice); "/" kept
 *   canonical-query   = name=value pairs, both URI-encoded (RFC 3986 unreserved characters kept), sorted
 *   canonical-headers = lower-case name ":" value trimmed with inner runs of white space made one space,
 *                       one per line, for the headers `SignedHeaders` names, sorted
 *   string to sign    = "AWS4-HMAC-SHA256" \n X-Amz-Date \n {date}/{region}/{service}/aws4_request \n
 *                       hex(SHA-256(canonical request))
 *   signing key       = HMAC("AWS4" + secret, date) → region → service → "aws4_request"
 *   signature         = hex(HMAC(signing key, string to sign))
 *
 * The request must be signed within 5 minutes of the server's clock ("the request must reach AWS within
 * five minutes of the time stamp in the request"), for the expected service, with a credential scope whose
 * date is X-Amz-Date's, and `host` and `x-amz-date` (or `date`) among the signed headers.
 *
 * Refusals come back as data with the status, AWS error type and message the real endpoint answers with
 * (403 ForbiddenException carrying AWS's own sentences), never as an exception.
 * Not here: HTTP (aws-dataplane.ts), session tokens (the local cloud issues none), presigned query strings.
 */
import * as crypto from "node:crypto";

export const SIGV4_ALGORITHM = "AWS4-HMAC-SHA256";
/** How far X-Amz-Date may be from the server's clock. */
export const SIGV4_MAX_SKEW_SECONDS = 5 * 60;

export interface SigV4Key {
  accessKeyId: string;
  secretAccessKey: string;
}

export interface SigV4Request {
  method: string;
  /** The request target as it arrived (`req.url`: raw path and query, still percent-encoded). */
  url: string;
  /** Lower-case names (Node's IncomingMessage.headers). */
  headers: Readonly<Record<string, string | string[] | undefined>>;
  body: Uint8Array;
}

export type SigV4Result =
  | { ok: true; accessKeyId: string; region: string }
  | { ok: false; status: number; errorType: string; message: string };

/** The messages AWS answers with (AWS's wording; the SDKs show them as the error's message). */
export const SIGV4_MESSAGES = {
  MISSING: "Missing Authentication Token",
  INCOMPLETE: "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
  UNKNOWN_KEY: "The security token included in the request is invalid.",
  MISMATCH: "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
} as const;

/** RFC 3986 encoding as SigV4 wants it: encodeURIComponent plus `!'()*`. */
export function sigv4Escape(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The canonical path of a raw (as sent) path, for a service that double-encodes (all but S3). */
export function canonicalPath(rawPath: string): string {
  const segments: string[] = [];
  for (const s of rawPath.split("/")) {
    if (s === "" || s === ".") continue;
    if (s === "..") segments.pop();
    else segments.push(s);
  }
  const normalized = `${rawPath.startsWith("/") ? "/" : ""}${segments.join("/")}${segments.length > 0 && rawPath.endsWith("/") ? "/" : ""}`;
  return sigv4Escape(normalized).replace(/%2F/g, "/");
}

/** The canonical query of a raw query string (without `?`); X-Amz-Signature is left out. Throws URIError
 *  for a malformed percent-escape. */
export function canonicalQuery(rawQuery: string): string {
  const pairs: string[] = [];
  for (const part of rawQuery.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const decode = (s: string): string => decodeURIComponent(s.replace(/\+/g, " "));
    const key = decode(eq < 0 ? part : part.slice(0, eq));
    const value = eq < 0 ? "" : decode(part.slice(eq + 1));
    if (key.toLowerCase() === "x-amz-signature") continue;
    pairs.push(`${sigv4Escape(key)}=${sigv4Escape(value)}`);
  }
  return pairs.sort().join("&");
}

function hmac(key: crypto.BinaryLike, data: string): Buffer {
  return crypto.createHmac("sha256", key).update(data, "utf8").digest();
}

function sha256Hex(data: crypto.BinaryLike): string {
  return crypto.createHash("sha256").update(data).digest("hex");
}

/** The signing key of a secret for one day, region and service. */
export function signingKey(secretAccessKey: string, date: string, region: string, service: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secretAccessKey}`, date), region), service), "aws4_request");
}

function headerValue(h: SigV4Request["headers"], name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v.join(",") : v;
}

/** `20260102T030405Z` → epoch seconds; NaN when malformed. */
export function parseAmzDate(s: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (m === null) return NaN;
  return Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])) / 1000;
}

function formatAmzDate(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}Z$/, "Z");
}

/**
 * Verifies the request's SigV4 signature against `keys` for `service`, at `nowSeconds` (epoch seconds).
 * Any region is accepted (the signature binds it). Never throws.
 */
export function verifySigV4(req: SigV4Request, keys: readonly SigV4Key[], service: string, nowSeconds: number): SigV4Result {
  const refuse = (message: string, errorType = "ForbiddenException"): SigV4Result => ({ ok: false, status: 403, errorType, message });
  const auth = headerValue(req.headers, "authorization");
  if (auth === undefined || auth === "") return refuse(SIGV4_MESSAGES.MISSING, "MissingAuthenticationTokenException");
  if (!auth.startsWith(`${SIGV4_ALGORITHM} `)) return refuse(`Only ${SIGV4_ALGORITHM} signatures are accepted by the local cloud.`, "IncompleteSignatureException");
  const params = new Map<string, string>();
  for (const p of auth.slice(SIGV4_ALGORITHM.length + 1).split(",")) {
    const eq = p.indexOf("=");
    if (eq > 0) params.set(p.slice(0, eq).trim(), p.slice(eq + 1).trim());
  }
  const credential = params.get("Credential");
  const signedHeaders = params.get("SignedHeaders");
  const signature = params.get("Signature");
  if (credential === undefined || signedHeaders === undefined || signature === undefined) return refuse(SIGV4_MESSAGES.INCOMPLETE, "IncompleteSignatureException");
  const scope = credential.split("/");
  if (scope.length !== 5 || scope[4] !== "aws4_request") return refuse(`Credential should be scoped to a valid region. (${credential.slice(0, 200)})`, "IncompleteSignatureException");
  const [accessKeyId, date, region, scopeService] = scope as [string, string, string, string, string];
  if (scopeService !== service) return refuse(`Credential should be scoped to correct service: '${service}'.`, "InvalidSignatureException");
  const key = keys.find((k) => k.accessKeyId === accessKeyId);
  if (key === undefined) return refuse(SIGV4_MESSAGES.UNKNOWN_KEY, "UnrecognizedClientException");

  const names = signedHeaders.split(";");
  if (!names.includes("host")) return refuse("'Host' must be a 'SignedHeader' in the AWS Authorization.", "IncompleteSignatureException");
  const amzDate = headerValue(req.headers, "x-amz-date") ?? "";
  const when = parseAmzDate(amzDate);
  if (!Number.isFinite(when) || !names.includes("x-amz-date")) {
    return refuse("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.", "IncompleteSignatureException");
  }
  if (date !== amzDate.slice(0, 8)) return refuse(`Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${date}' != '${amzDate.slice(0, 8)}'`, "InvalidSignatureException");
  if (Math.abs(when - nowSeconds) > SIGV4_MAX_SKEW_SECONDS) {
    const bound = when < nowSeconds ? `earlier than ${formatAmzDate(nowSeconds - SIGV4_MAX_SKEW_SECONDS)} (${formatAmzDate(nowSeconds)} - 5 min.)` : `later than ${formatAmzDate(nowSeconds + SIGV4_MAX_SKEW_SECONDS)} (${formatAmzDate(nowSeconds)} + 5 min.)`;
    return refuse(`Signature expired: ${amzDate} is now ${bound}`, "InvalidSignatureException");
  }

  const q = req.url.indexOf("?");
  let query: string;
  try {
    query = canonicalQuery(q < 0 ? "" : req.url.slice(q + 1));
  } catch {
    return refuse(SIGV4_MESSAGES.MISMATCH, "InvalidSignatureException");
  }
  const headerLines = [...names].sort().map((n) => `${n}:${(headerValue(req.headers, n) ?? "").trim().replace(/\s+/g, " ")}`);
  const canonical = [
    req.method.toUpperCase(), canonicalPath(q < 0 ? req.url : req.url.slice(0, q)), query,
    headerLines.join("\n"), "", [...names].sort().join(";"), sha256Hex(req.body),
  ].join("\n");
  const scopeText = `${date}/${region}/${service}/aws4_request`;
  const toSign = [SIGV4_ALGORITHM, amzDate, scopeText, sha256Hex(canonical)].join("\n");
  const expected = crypto.createHmac("sha256", signingKey(key.secretAccessKey, date, region, service)).update(toSign, "utf8").digest();
  const given = /^[0-9a-f]{64}$/.test(signature) ? Buffer.from(signature, "hex") : Buffer.alloc(0);
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return refuse(SIGV4_MESSAGES.MISMATCH, "InvalidSignatureException");
  return { ok: true, accessKeyId, region };
}
