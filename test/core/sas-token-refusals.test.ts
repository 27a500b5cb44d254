/**
 * What src/core/sas-token.ts says and keeps at its edges, where sas-token.test.ts (the SDK's vectors) does
 * not look: the words and detail of every connection-string and token refusal, which members a parsed
 * string or token has (none left undefined), trimming and empty parts, the expiry rule, the token length
 * limit and the `se` digits, the characters encodeURIComponent leaves alone, the verifier's messages (its
 * cut-offs, the floor of a fractional now, an sr ending in "/", a signature one character longer or
 * shorter), and the defaults (lifetime, renewal margin, api-version). Runs on Node and on XS.
 */
import {
  AZURE_MQTT_API_VERSION,
  azureMqttUsername,
  base64Decode,
  buildSasToken,
  deviceSasCredentials,
  encodeUriComponentStrict,
  parseConnectionString,
  parseSasToken,
  SAS_CODES,
  SAS_DEFAULT_RENEW_MARGIN_SECONDS,
  SAS_DEFAULT_TTL_SECONDS,
  sasExpiryFrom,
  sasRenewAt,
  sasSignature,
  verifySasToken,
} from "../../src/core/sas-token";
import { errorOf } from "./error-of";

const KEY = "c2hhZG93LW90YSB0ZXN0IGtleSBmb3IgU0FTIHZlY3RvcnMsIDMyKw==";
const EXPIRY = 1767225600;
const DEVICE = "myhub.azure-devices.net/devices/esp32-az-01";
const keyOf = (): string => KEY;

describe("connection strings: the words of each refusal", () => {
  test.each([
    ["HostName=h;DeviceId;SharedAccessKey=K", "every part of a connection string is Name=value", null],
    ["HostName=h;=d;SharedAccessKey=K", "every part of a connection string is Name=value", null],
    [`HostName=h;DeviceId=d;DeviceId=e;SharedAccessKey=${KEY}`, "the connection string names DeviceId twice", null],
    [`HostName=;DeviceId=d;SharedAccessKey=${KEY}`, "the connection string has no HostName", "HostName"],
    ["HostName=h;DeviceId=d;SharedAccessKey=", "the connection string has no SharedAccessKey", "SharedAccessKey"],
    [`HostName=h;DeviceId=;SharedAccessKey=${KEY}`, "the connection string has neither DeviceId nor SharedAccessKeyName", "DeviceId"],
    [`HostName=h;SharedAccessKeyName=;SharedAccessKey=${KEY}`, "the connection string has neither DeviceId nor SharedAccessKeyName", "DeviceId"],
  ])("%j: %s", (text, message, missing) => {
    const e = errorOf(() => parseConnectionString(text));
    expect(e.code).toBe(SAS_CODES.SAS_CONNECTION_STRING_INVALID);
    expect(e.message).toBe(message);
    expect(e.detail).toEqual({ missing });
  });

  test("not a string", () => {
    const e = errorOf(() => parseConnectionString(42 as unknown as string));
    expect([e.code, e.message]).toEqual([SAS_CODES.SAS_CONNECTION_STRING_INVALID, "a connection string must be a string"]);
    expect(e.detail).toEqual({ missing: null });
  });

  test("a key that is not base64 is refused with its length only", () => {
    const e = errorOf(() => parseConnectionString("HostName=h;DeviceId=d;SharedAccessKey=abc"));
    expect([e.code, e.message]).toEqual([SAS_CODES.SAS_KEY_INVALID, "the shared access key is not base64"]);
    expect(e.detail).toEqual({ length: 3 });
    expect(errorOf(() => base64Decode(7 as unknown as string)).detail).toEqual({ length: null });
  });
});

describe("connection strings: what is kept", () => {
  test("spaces around names and values are trimmed, empty parts skipped, absent members not set", () => {
    expect(parseConnectionString(` HostName = h ;; ; DeviceId = d ; SharedAccessKey = ${KEY} ; `)).toStrictEqual({ hostName: "h", deviceId: "d", sharedAccessKey: KEY });
  });

  test("an empty DeviceId beside a policy name is not kept; both are kept when both are given", () => {
    expect(parseConnectionString(`HostName=h;DeviceId=;SharedAccessKeyName=p;SharedAccessKey=${KEY}`)).toStrictEqual({ hostName: "h", sharedAccessKeyName: "p", sharedAccessKey: KEY });
    expect(parseConnectionString(`HostName=h;DeviceId=d;SharedAccessKeyName=;SharedAccessKey=${KEY}`)).toStrictEqual({ hostName: "h", deviceId: "d", sharedAccessKey: KEY });
    expect(parseConnectionString(`HostName=h;DeviceId=d;SharedAccessKeyName=p;SharedAccessKey=${KEY}`)).toStrictEqual({ hostName: "h", deviceId: "d", sharedAccessKeyName: "p", sharedAccessKey: KEY });
    expect(parseConnectionString(`HostName=h;SharedAccessKeyName=p;SharedAccessKey=${KEY}`)).toStrictEqual({ hostName: "h", sharedAccessKeyName: "p", sharedAccessKey: KEY });
    expect(parseConnectionString(`HostName=h;DeviceId=d;SharedAccessKey=${KEY}`)).toStrictEqual({ hostName: "h", deviceId: "d", sharedAccessKey: KEY });
  });

  test("a device's credentials need a DeviceId: the words and the detail", () => {
    const svc = parseConnectionString(`HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=${KEY}`);
    const e = errorOf(() => deviceSasCredentials(svc, 0));
    expect(e.message).toBe("a device connection string needs DeviceId");
    expect(e.detail).toEqual({ missing: "DeviceId" });
  });
});

describe("building tokens", () => {
  test("sr, sig and skn are encoded as the SDKs do: encodeURIComponent plus !'()*", () => {
    expect(encodeUriComponentStrict("a b!'()*-_.~/")).toBe("a%20b%21%27%28%29%2a-_.~%2F");
    const token = buildSasToken("h/devices/d(1)", KEY, EXPIRY, "my policy*");
    expect(token.startsWith("SharedAccessSignature sr=h%2Fdevices%2Fd%281%29&sig=")).toBe(true);
    expect(token.endsWith(`&se=${EXPIRY}&skn=my%20policy%2a`)).toBe(true);
    expect(buildSasToken("h", KEY, EXPIRY)).not.toContain("skn");
  });

  test.each([0, -1, 1.5, Number.NaN, 2 ** 53])("expiry %p is refused with SAS_TOKEN_INVALID", (expiry) => {
    const e = errorOf(() => buildSasToken("h", KEY, expiry));
    expect([e.code, e.message]).toEqual([SAS_CODES.SAS_TOKEN_INVALID, "a SAS expiry is a positive whole number of epoch seconds"]);
    expect(e.detail).toEqual({ expiry: String(expiry) });
  });

  test("expiry 1 is the smallest accepted", () => {
    expect(parseSasToken(buildSasToken("h", KEY, 1)).expiry).toBe(1);
  });
});

describe("parsing tokens", () => {
  test("without the prefix, and a value holding '=' keeps it; no keyName member without skn", () => {
    expect(parseSasToken("sr=a&sig=b=&se=1")).toStrictEqual({ sr: "a", resourceUri: "a", signature: "b=", expiry: 1 });
    expect(parseSasToken("sr=a%2Fb&sig=b&se=123456789012345&skn=p%20q")).toStrictEqual({ sr: "a%2Fb", resourceUri: "a/b", signature: "b", expiry: 123456789012345, keyName: "p q" });
  });

  test("at most 4096 characters", () => {
    const base = "SharedAccessSignature sig=x&se=1&sr=";
    const at = base + "a".repeat(4096 - base.length);
    expect(parseSasToken(at).resourceUri.length).toBe(4096 - base.length);
    expect(errorOf(() => parseSasToken(at + "a")).message).toBe("not a SAS token: not a string of at most 4096 characters");
    expect(errorOf(() => parseSasToken(null as unknown as string)).message).toBe("not a SAS token: not a string of at most 4096 characters");
  });

  test.each([
    ["sr=a&sig&se=1", "every field is name=value"],
    ["sr=a&=x&sig=b&se=1", "every field is name=value"],
    ["sr=a&sig=b&sig=c&se=1", "sig appears twice"],
    ["sig=b&se=1", "sr, sig and se are required"],
    ["sr=a&se=1", "sr, sig and se are required"],
    ["sr=a&sig=b", "sr, sig and se are required"],
    ["sr=a&sig=b&se=", "se is not a whole number of seconds"],
    ["sr=a&sig=b&se=1.5", "se is not a whole number of seconds"],
    ["sr=a&sig=b&se=1234567890123456", "se is not a whole number of seconds"],
    ["sr=a&sig=b&se=x1", "se is not a whole number of seconds"],
    ["sr=a&sig=b&se=1x", "se is not a whole number of seconds"],
    ["sr=%E0%A4%A&sig=b&se=1", "a malformed percent-escape"],
    ["sr=a&sig=%E0%A4%A&se=1", "a malformed percent-escape"],
    ["sr=a&sig=b&se=1&skn=%E0%A4%A", "a malformed percent-escape"],
  ])("%j: not a SAS token: %s", (token, why) => {
    const e = errorOf(() => parseSasToken(token));
    expect([e.code, e.message]).toEqual([SAS_CODES.SAS_TOKEN_INVALID, `not a SAS token: ${why}`]);
  });
});

describe("verifying tokens: the verdicts' words", () => {
  const token = buildSasToken(DEVICE, KEY, EXPIRY);

  test("a good token comes back parsed", () => {
    expect(verifySasToken(token, DEVICE, EXPIRY - 1, keyOf)).toStrictEqual({ ok: true, token: parseSasToken(token) });
  });

  test("expired: the expiry and the whole seconds of now", () => {
    expect(verifySasToken(token, DEVICE, EXPIRY + 0.75, keyOf)).toEqual({ ok: false, reason: "expired", message: `the SAS token expired at ${EXPIRY} (now ${EXPIRY})` });
    expect(verifySasToken(token, DEVICE, EXPIRY - 0.5, keyOf).ok).toBe(true);
  });

  test("malformed: the parser's words", () => {
    expect(verifySasToken("sr=a", DEVICE, 0, keyOf)).toEqual({ ok: false, reason: "malformed", message: "not a SAS token: sr, sig and se are required" });
  });

  test("another resource: both named, each cut at 200 characters", () => {
    expect(verifySasToken(token, "myhub.azure-devices.net/devices/esp32-az-02", 0, keyOf)).toEqual({
      ok: false, reason: "wrong-resource", message: `the SAS token is for ${DEVICE}, not myhub.azure-devices.net/devices/esp32-az-02`,
    });
    const long = "h/" + "x".repeat(300);
    const v = verifySasToken(buildSasToken(long, KEY, EXPIRY), "h/y", 0, keyOf);
    expect(v).toEqual({ ok: false, reason: "wrong-resource", message: `the SAS token is for ${long.slice(0, 200)}, not h/y` });
    const w = verifySasToken(token, "z/" + "y".repeat(300), 0, keyOf);
    expect(w.ok ? "" : w.message).toBe(`the SAS token is for ${DEVICE}, not z/${"y".repeat(198)}`);
  });

  test("an sr ending in '/' covers what lies under it; an sr that stops inside a segment does not", () => {
    expect(verifySasToken(buildSasToken("h/devices/", KEY, EXPIRY), "h/devices/d", 0, keyOf).ok).toBe(true);
    expect(verifySasToken(buildSasToken("h/dev", KEY, EXPIRY), "h/devices", 0, keyOf).ok).toBe(false);
    expect(verifySasToken(buildSasToken("h/devices", KEY, EXPIRY), "h/devices/d", 0, keyOf).ok).toBe(true);
  });

  test("no key: which one was asked for, the policy name cut at 64 characters", () => {
    expect(verifySasToken(token, DEVICE, 0, () => undefined)).toEqual({ ok: false, reason: "unknown-key", message: "no key for this resource" });
    const asked: Array<string | undefined> = [];
    const p = "p".repeat(80);
    expect(verifySasToken(buildSasToken("h", KEY, EXPIRY, p), "h", 0, (name) => { asked.push(name); return undefined; })).toEqual({
      ok: false, reason: "unknown-key", message: `no shared access policy named ${"p".repeat(64)}`,
    });
    expect(asked).toEqual([p]);
  });

  test("a key that is not base64: unknown-key with the decoder's words", () => {
    expect(verifySasToken(token, DEVICE, 0, () => "not base64")).toEqual({ ok: false, reason: "unknown-key", message: "the shared access key is not base64" });
  });

  test("a signature one character longer or shorter, or with its last character changed, does not match", () => {
    const sig = sasSignature(encodeUriComponentStrict(DEVICE), EXPIRY, KEY);
    const withSig = (s: string): string => `SharedAccessSignature sr=${encodeUriComponentStrict(DEVICE)}&sig=${encodeUriComponentStrict(s)}&se=${EXPIRY}`;
    expect(verifySasToken(withSig(sig), DEVICE, 0, keyOf).ok).toBe(true);
    for (const bad of [sig + "A", sig.slice(0, -1), sig.slice(0, -1) + (sig.endsWith("=") ? "A" : "=")]) {
      expect(verifySasToken(withSig(bad), DEVICE, 0, keyOf)).toEqual({ ok: false, reason: "bad-signature", message: "the SAS token's signature does not match" });
    }
  });
});

describe("defaults", () => {
  test("a token lives an hour and is renewed with a quarter hour left; the api-version is 2021-04-12", () => {
    expect([SAS_DEFAULT_TTL_SECONDS, SAS_DEFAULT_RENEW_MARGIN_SECONDS, AZURE_MQTT_API_VERSION]).toEqual([3600, 900, "2021-04-12"]);
    expect(sasExpiryFrom(1000)).toBe(4600);
    expect(sasExpiryFrom(10.2, 5)).toBe(16);
    expect(sasRenewAt(5000)).toBe(4100);
    expect(azureMqttUsername("h", "d")).toBe("h/d/?api-version=2021-04-12");
    expect(azureMqttUsername("h", "d", "2020-09-30")).toBe("h/d/?api-version=2020-09-30");
    const cs = parseConnectionString(`HostName=h;DeviceId=d;SharedAccessKey=${KEY}`);
    expect(deviceSasCredentials(cs, 1000).expiry).toBe(4600);
  });
});
