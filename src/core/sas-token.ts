/**
 * Azure IoT Hub shared access signatures (SAS) for devices that authenticate with a symmetric key — the
 * Azure seed's connection-string flow — in the platform-neutral core: parse a device connection string,
 * build the MQTT user name and the SAS token that goes in the password, decide when to renew it, and (for
 * the local cloud) parse and verify a token. Pure functions: the caller passes the time (epoch seconds)
 * and does the reconnecting; HMAC-SHA256 is hmac-sha256.ts (no node:*, runs on XS).
 *
 * Per IoT Hub's "Control access to IoT Hub with shared access signatures" and "Communicate with an IoT hub
 * using the MQTT protocol" (docs/protocols.md §3.4 and §3.6):
 *
 *   connection string = "HostName=" host ";DeviceId=" id ";SharedAccessKey=" base64-key   (any order;
 *                       service strings have SharedAccessKeyName instead of DeviceId)
 *   user name         = host "/" deviceId "/?api-version=" version
 *   token             = "SharedAccessSignature sr=" sr "&sig=" sig "&se=" expiry [ "&skn=" policy ]
 *   sr                = URL-encoded resource URI (a device: host "/devices/" deviceId; the service: host)
 *   sig               = URL-encoded base64 of HMAC-SHA256(base64-decoded key, sr "\n" expiry)
 *
 * URL encoding is encodeURIComponent plus `!'()*` (what the IoT Hub SDKs do). The signed string holds sr
 * exactly as it appears in the token. A token is good for a resource when its decoded sr is that resource
 * or a prefix of it ending at a `/` boundary, compared without regard to case (host names are).
 *
 * Not here: MQTT (the transport adapters put user name and password in CONNECT), the clock, X.509.
 */
import { ShadowOtaError } from "./errors";
import { hmacSha256 } from "./hmac-sha256";
import { utf8Encode } from "./utf8";

/** Stable codes of SAS handling (a contract). */
export const SAS_CODES = {
  /** A connection string lacks HostName, DeviceId (or SharedAccessKeyName) or SharedAccessKey, repeats a
   *  key or has a part without `=`. `detail.missing` names what is missing; the key is never echoed. */
  SAS_CONNECTION_STRING_INVALID: "SAS_CONNECTION_STRING_INVALID",
  /** A shared access key is not base64 (or is empty). */
  SAS_KEY_INVALID: "SAS_KEY_INVALID",
  /** A SAS token is not `SharedAccessSignature sr=…&sig=…&se=…[&skn=…]`, or an expiry is not a whole
   *  number of seconds. */
  SAS_TOKEN_INVALID: "SAS_TOKEN_INVALID",
} as const;

/** The MQTT api-version the project's devices announce (docs/protocols.md §3.4). */
export const AZURE_MQTT_API_VERSION = "2021-04-12";
/** Default token lifetime and how long before its end a device renews it: one hour, renewed with a quarter
 *  of it left, so a device reconnects with a fresh token well before IoT Hub would disconnect it. */
export const SAS_DEFAULT_TTL_SECONDS = 3600;
export const SAS_DEFAULT_RENEW_MARGIN_SECONDS = 900;

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

export function base64Encode(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const a = bytes[i]!, b = bytes[i + 1], c = bytes[i + 2];
    const n = (a << 16) | ((b ?? 0) << 8) | (c ?? 0);
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + (b === undefined ? "=" : B64[(n >> 6) & 63]!) + (c === undefined ? "=" : B64[n & 63]!);
  }
  return out;
}

/** Strict base64 (padding required, no white space); throws SAS_KEY_INVALID. */
export function base64Decode(text: string): Uint8Array {
  if (typeof text !== "string" || text.length === 0 || text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw new ShadowOtaError(SAS_CODES.SAS_KEY_INVALID, "the shared access key is not base64", { detail: { length: typeof text === "string" ? text.length : null } });
  }
  const pad = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let o = 0;
  // Stryker disable next-line EqualityOperator: one more pass reads past the text and writes nothing (every write is guarded by o < out.length).
  for (let i = 0; i < text.length; i += 4) {
    let n = 0;
    for (let j = 0; j < 4; j++) {
      const ch = text[i + j]!;
      n = (n << 6) | (ch === "=" ? 0 : B64.indexOf(ch));
    }
    // Stryker disable next-line ConditionalExpression,EqualityOperator: out is a Uint8Array, so a write past its end is dropped.
    if (o < out.length) out[o++] = (n >> 16) & 0xff;
    // Stryker disable next-line ConditionalExpression,EqualityOperator: as above.
    if (o < out.length) out[o++] = (n >> 8) & 0xff;
    // Stryker disable next-line ConditionalExpression,EqualityOperator: as above.
    if (o < out.length) out[o++] = n & 0xff;
  }
  return out;
}

/** encodeURIComponent plus `!'()*`, as the IoT Hub SDKs encode sr, sig and skn. */
export function encodeUriComponentStrict(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16)}`);
}

export interface ConnectionString {
  hostName: string;
  /** A device string's device id. */
  deviceId?: string;
  /** A service string's policy name (e.g. iothubowner). */
  sharedAccessKeyName?: string;
  /** Base64, as in the string. */
  sharedAccessKey: string;
}

/** Parses `HostName=…;DeviceId=…;SharedAccessKey=…` (or with SharedAccessKeyName). Throws SAS_CONNECTION_STRING_INVALID,
 *  SAS_KEY_INVALID. The key is checked to be base64 but never appears in an error. */
export function parseConnectionString(text: string): ConnectionString {
  const fail = (message: string, missing?: string): never => {
    throw new ShadowOtaError(SAS_CODES.SAS_CONNECTION_STRING_INVALID, message, { detail: { missing: missing ?? null } });
  };
  if (typeof text !== "string") return fail("a connection string must be a string");
  const fields = new Map<string, string>();
  for (const part of text.split(";")) {
    if (part.trim() === "") continue;
    const eq = part.indexOf("=");
    if (eq <= 0) return fail("every part of a connection string is Name=value");
    const name = part.slice(0, eq).trim();
    if (fields.has(name)) return fail(`the connection string names ${name} twice`);
    fields.set(name, part.slice(eq + 1).trim()); // base64 values end in "=": only the first "=" splits
  }
  const hostName = fields.get("HostName");
  const key = fields.get("SharedAccessKey");
  const deviceId = fields.get("DeviceId");
  const keyName = fields.get("SharedAccessKeyName");
  if (hostName === undefined || hostName === "") return fail("the connection string has no HostName", "HostName");
  if (key === undefined || key === "") return fail("the connection string has no SharedAccessKey", "SharedAccessKey");
  if ((deviceId === undefined || deviceId === "") && (keyName === undefined || keyName === "")) return fail("the connection string has neither DeviceId nor SharedAccessKeyName", "DeviceId");
  base64Decode(key);
  const out: ConnectionString = { hostName, sharedAccessKey: key };
  if (deviceId !== undefined && deviceId !== "") out.deviceId = deviceId;
  if (keyName !== undefined && keyName !== "") out.sharedAccessKeyName = keyName;
  return out;
}

/** `{host}/devices/{deviceId}`: the resource a device's token is for. */
export function deviceResourceUri(hostName: string, deviceId: string): string {
  return `${hostName}/devices/${deviceId}`;
}

/** The MQTT user name of a device: `{host}/{deviceId}/?api-version={version}`. */
export function azureMqttUsername(hostName: string, deviceId: string, apiVersion: string = AZURE_MQTT_API_VERSION): string {
  return `${hostName}/${deviceId}/?api-version=${apiVersion}`;
}

function checkExpiry(expiry: number): number {
  if (!Number.isSafeInteger(expiry) || expiry <= 0) {
    throw new ShadowOtaError(SAS_CODES.SAS_TOKEN_INVALID, "a SAS expiry is a positive whole number of epoch seconds", { detail: { expiry: String(expiry).slice(0, 40) } });
  }
  return expiry;
}

/** The base64 signature (not URL-encoded) of an sr (as it appears in the token) and expiry. Throws SAS_KEY_INVALID. */
export function sasSignature(encodedResourceUri: string, expiry: number, keyBase64: string): string {
  return base64Encode(hmacSha256(base64Decode(keyBase64), utf8Encode(`${encodedResourceUri}\n${checkExpiry(expiry)}`)));
}

/** A token for `resourceUri` valid until `expiry` (epoch seconds). Throws SAS_KEY_INVALID, SAS_TOKEN_INVALID. */
export function buildSasToken(resourceUri: string, keyBase64: string, expiry: number, keyName?: string): string {
  const sr = encodeUriComponentStrict(resourceUri);
  const sig = encodeUriComponentStrict(sasSignature(sr, expiry, keyBase64));
  return `SharedAccessSignature sr=${sr}&sig=${sig}&se=${expiry}${keyName === undefined ? "" : `&skn=${encodeUriComponentStrict(keyName)}`}`;
}

export interface SasToken {
  /** sr as it appears in the token (URL-encoded): what was signed. */
  sr: string;
  /** The resource URI (sr decoded). */
  resourceUri: string;
  /** The base64 signature (sig decoded). */
  signature: string;
  expiry: number;
  /** The policy name (skn decoded), for service tokens. */
  keyName?: string;
}

/** Parses a token (with or without the `SharedAccessSignature ` prefix). Throws SAS_TOKEN_INVALID. */
export function parseSasToken(token: string): SasToken {
  const fail = (why: string): never => { throw new ShadowOtaError(SAS_CODES.SAS_TOKEN_INVALID, `not a SAS token: ${why}`); };
  if (typeof token !== "string" || token.length > 4096) return fail("not a string of at most 4096 characters");
  const body = token.startsWith("SharedAccessSignature ") ? token.slice("SharedAccessSignature ".length) : token;
  const fields = new Map<string, string>();
  for (const part of body.split("&")) {
    const eq = part.indexOf("=");
    if (eq <= 0) return fail("every field is name=value");
    const name = part.slice(0, eq);
    if (fields.has(name)) return fail(`${name} appears twice`);
    fields.set(name, part.slice(eq + 1));
  }
  const sr = fields.get("sr");
  const sig = fields.get("sig");
  const se = fields.get("se");
  if (sr === undefined || sig === undefined || se === undefined) return fail("sr, sig and se are required");
  if (!/^[0-9]{1,15}$/.test(se)) return fail("se is not a whole number of seconds");
  let resourceUri: string, signature: string, keyName: string | undefined;
  try {
    resourceUri = decodeURIComponent(sr);
    signature = decodeURIComponent(sig);
    const skn = fields.get("skn");
    keyName = skn === undefined ? undefined : decodeURIComponent(skn);
  } catch {
    return fail("a malformed percent-escape");
  }
  const out: SasToken = { sr, resourceUri, signature, expiry: Number(se) };
  if (keyName !== undefined) out.keyName = keyName;
  return out;
}

export type SasVerdict =
  | { ok: true; token: SasToken }
  /** Why the token is refused (a stable word, for the log and for error bodies). */
  | { ok: false; reason: "malformed" | "expired" | "wrong-resource" | "unknown-key" | "bad-signature"; message: string };

/**
 * Checks `token` for `resource` (e.g. `host/devices/id`, or the hub host for the service API) at `now`:
 * well formed, not expired (`se` must be later than now), sr covering the resource, and signed with the key
 * `keyFor` returns for its key name (`undefined`: no such key). Never throws.
 */
export function verifySasToken(token: string, resource: string, now: number, keyFor: (keyName: string | undefined) => string | undefined): SasVerdict {
  let t: SasToken;
  try {
    t = parseSasToken(token);
  } catch (e) {
    return { ok: false, reason: "malformed", message: e instanceof Error ? e.message : String(e) };
  }
  if (t.expiry <= now) return { ok: false, reason: "expired", message: `the SAS token expired at ${t.expiry} (now ${Math.floor(now)})` };
  const sr = t.resourceUri.toLowerCase();
  const want = resource.toLowerCase();
  if (!(want === sr || (want.startsWith(sr) && (sr.endsWith("/") || want.charAt(sr.length) === "/")))) {
    return { ok: false, reason: "wrong-resource", message: `the SAS token is for ${t.resourceUri.slice(0, 200)}, not ${resource.slice(0, 200)}` };
  }
  const key = keyFor(t.keyName);
  if (key === undefined) return { ok: false, reason: "unknown-key", message: t.keyName === undefined ? "no key for this resource" : `no shared access policy named ${t.keyName.slice(0, 64)}` };
  let expected: string;
  try {
    expected = sasSignature(t.sr, t.expiry, key);
  } catch (e) {
    return { ok: false, reason: "unknown-key", message: e instanceof Error ? e.message : String(e) };
  }
  // Compared without an early exit, so the time taken does not say how much of a guess was right.
  let diff = expected.length ^ t.signature.length;
  // Stryker disable next-line EqualityOperator: charCodeAt past the end is NaN, and diff |= NaN leaves diff as it was.
  for (let i = 0; i < expected.length; i++) diff |= expected.charCodeAt(i) ^ (t.signature.charCodeAt(i) | 0);
  if (diff !== 0) return { ok: false, reason: "bad-signature", message: "the SAS token's signature does not match" };
  return { ok: true, token: t };
}

/** When a device should mint a new token (and reconnect with it): `margin` seconds before `expiry`. */
export function sasRenewAt(expiry: number, margin: number = SAS_DEFAULT_RENEW_MARGIN_SECONDS): number {
  return expiry - margin;
}

/** The expiry of a token minted at `now` to live `ttl` seconds (rounded up to a whole second). */
export function sasExpiryFrom(now: number, ttl: number = SAS_DEFAULT_TTL_SECONDS): number {
  return Math.ceil(now + ttl);
}

/** The user name and password a device connects with, from its connection string, valid until `now + ttl`. */
export function deviceSasCredentials(cs: ConnectionString, now: number, ttl: number = SAS_DEFAULT_TTL_SECONDS): { username: string; password: string; expiry: number } {
  if (cs.deviceId === undefined) throw new ShadowOtaError(SAS_CODES.SAS_CONNECTION_STRING_INVALID, "a device connection string needs DeviceId", { detail: { missing: "DeviceId" } });
  const expiry = sasExpiryFrom(now, ttl);
  return { username: azureMqttUsername(cs.hostName, cs.deviceId), password: buildSasToken(deviceResourceUri(cs.hostName, cs.deviceId), cs.sharedAccessKey, expiry), expiry };
}
