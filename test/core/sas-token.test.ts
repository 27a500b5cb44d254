/**
 * Tests of src/core/hmac-sha256.ts and src/core/sas-token.ts from literal vectors: SHA-256 against FIPS
 * 180's examples, HMAC-SHA256 against RFC 4231's test cases 1–4, 6 and 7, and SAS tokens against tokens
 * the Azure IoT SDK's own SharedAccessSignature.create produced for the same key, resource and expiry
 * (copied here as text, so this file needs no SDK and runs on XS too: `node scripts/test-xs.mjs sas-token`).
 * Then parsing (connection strings, tokens), verification (expired, wrong resource, unknown policy, one
 * flipped character) and the renewal arithmetic.
 */
import { hmacSha256, sha256, toHex } from "../../src/core/hmac-sha256";
import {
  azureMqttUsername,
  base64Decode,
  base64Encode,
  buildSasToken,
  deviceResourceUri,
  deviceSasCredentials,
  parseConnectionString,
  parseSasToken,
  SAS_CODES,
  sasExpiryFrom,
  sasRenewAt,
  verifySasToken,
} from "../../src/core/sas-token";
import { utf8Encode } from "../../src/core/utf8";
import { errorOf } from "./error-of";

const fill = (n: number, byte: number): Uint8Array => new Uint8Array(n).fill(byte);
const ascii = (s: string): Uint8Array => utf8Encode(s);

describe("SHA-256 (FIPS 180-4 examples)", () => {
  test.each([
    ["", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],
    ["abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"],
    ["abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"],
  ])("sha256(%j)", (text, hex) => {
    expect(toHex(sha256(ascii(text)))).toBe(hex);
  });

  test("messages of 55, 56 and 64 bytes (the padding's edges) differ from their neighbours", () => {
    const seen = new Set<string>();
    for (const n of [54, 55, 56, 57, 63, 64, 65]) seen.add(toHex(sha256(fill(n, 0x61))));
    expect(seen.size).toBe(7);
    // 'a' x 64: a known value, two blocks after padding
    expect(toHex(sha256(fill(64, 0x61)))).toBe("ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
  });
});

describe("HMAC-SHA256 (RFC 4231)", () => {
  const key4 = Uint8Array.from({ length: 25 }, (_, i) => i + 1);
  test.each([
    ["1", fill(20, 0x0b), ascii("Hi There"), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"],
    ["2", ascii("Jefe"), ascii("what do ya want for nothing?"), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"],
    ["3", fill(20, 0xaa), fill(50, 0xdd), "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"],
    ["4", key4, fill(50, 0xcd), "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"],
    ["6", fill(131, 0xaa), ascii("Test Using Larger Than Block-Size Key - Hash Key First"), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"],
    ["7", fill(131, 0xaa), ascii("This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."), "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"],
  ])("test case %s", (_n, key, data, hex) => {
    expect(toHex(hmacSha256(key, data))).toBe(hex);
  });
});

describe("base64", () => {
  test.each([["", ""], ["f", "Zg=="], ["fo", "Zm8="], ["foo", "Zm9v"], ["foobar", "Zm9vYmFy"]])("RFC 4648 §10: %j ↔ %j", (text, b64) => {
    expect(base64Encode(ascii(text))).toBe(b64);
    if (b64 !== "") expect(Array.from(base64Decode(b64))).toEqual(Array.from(ascii(text)));
  });

  test.each(["", "Zg", "Zg=", "Z===", "Zm9v\n", "Zm9v!A==", "=Zm9"])("refuses %j with SAS_KEY_INVALID", (bad) => {
    expect(errorOf(() => base64Decode(bad)).code).toBe(SAS_CODES.SAS_KEY_INVALID);
  });
});

// Key: base64 of "shadow-ota test key for SAS vectors, 32+". Tokens below: azure-iothub's
// SharedAccessSignature.create(sr, keyName, key, 1767225600).toString() for the same inputs.
const KEY = "c2hhZG93LW90YSB0ZXN0IGtleSBmb3IgU0FTIHZlY3RvcnMsIDMyKw==";
const EXPIRY = 1767225600;
const DEVICE_TOKEN = "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fesp32-az-01&sig=DshcqaWFVjWXTipQPvMZV1cDPFcBiTeWHaRSS5VnAGs%3D&se=1767225600";
const DEVICE = "myhub.azure-devices.net/devices/esp32-az-01";
const SERVICE_TOKEN = "SharedAccessSignature sr=127.0.0.1&sig=r5%2Bl8hcl6lKldBRFrawjGHYgsQAyuxmIDLhI4EZuOGc%3D&skn=iothubowner&se=1767225600";

describe("SAS tokens", () => {
  test("a device token equals the one the Azure IoT SDK builds", () => {
    expect(buildSasToken(deviceResourceUri("myhub.azure-devices.net", "esp32-az-01"), KEY, EXPIRY)).toBe(DEVICE_TOKEN);
  });

  test("a service token (policy iothubowner, sr = the host) signs as the SDK's does", () => {
    const mine = parseSasToken(buildSasToken("127.0.0.1", KEY, EXPIRY, "iothubowner"));
    expect(mine).toEqual(parseSasToken(SERVICE_TOKEN));
    expect(mine).toEqual({ sr: "127.0.0.1", resourceUri: "127.0.0.1", signature: "r5+l8hcl6lKldBRFrawjGHYgsQAyuxmIDLhI4EZuOGc=", expiry: EXPIRY, keyName: "iothubowner" });
  });

  const keyFor = (name: string | undefined): string | undefined => (name === undefined || name === "iothubowner" ? KEY : undefined);

  test.each([
    ["the SDK's device token, a second before expiry", DEVICE_TOKEN, DEVICE, EXPIRY - 1, "ok"],
    ["the same token at its expiry", DEVICE_TOKEN, DEVICE, EXPIRY, "expired"],
    ["the device token for another device", DEVICE_TOKEN, "myhub.azure-devices.net/devices/esp32-az-02", 0, "wrong-resource"],
    ["a device token for a resource that only starts with the same letters", DEVICE_TOKEN, "myhub.azure-devices.net/devices/esp32-az-01x", 0, "wrong-resource"],
    ["a host-wide token for a device's resource (sr is a prefix at a / boundary)", SERVICE_TOKEN, "127.0.0.1/devices/x", 0, "ok"],
    ["the resource in other letter case", DEVICE_TOKEN, "MyHub.Azure-Devices.net/devices/esp32-az-01", 0, "ok"],
    ["an unknown policy", SERVICE_TOKEN.replace("iothubowner", "registryRead"), "127.0.0.1", 0, "unknown-key"],
    ["one character of the signature changed", DEVICE_TOKEN.replace("sig=D", "sig=E"), DEVICE, 0, "bad-signature"],
    ["the expiry moved on (signature no longer covers it)", DEVICE_TOKEN.replace("se=1767225600", "se=1767229200"), DEVICE, 0, "bad-signature"],
    ["no sig", "SharedAccessSignature sr=a&se=1", "a", 0, "malformed"],
    ["se not a number", "SharedAccessSignature sr=a&sig=x&se=soon", "a", 0, "malformed"],
    ["sr twice", "SharedAccessSignature sr=a&sr=b&sig=x&se=1", "a", 0, "malformed"],
    ["a malformed escape", "SharedAccessSignature sr=%E0%A4%A&sig=x&se=1", "a", 0, "malformed"],
    ["not a token at all", "password", "a", 0, "malformed"],
  ])("%s → %s", (_what, token, resource, now, verdict) => {
    const v = verifySasToken(token, resource, now, keyFor);
    expect(v.ok ? "ok" : v.reason).toBe(verdict);
  });
});

describe("connection strings", () => {
  test("a device connection string, in any order, with the key's trailing '='", () => {
    expect(parseConnectionString(`DeviceId=esp32-az-01;SharedAccessKey=${KEY};HostName=127.0.0.1`)).toEqual({
      hostName: "127.0.0.1", deviceId: "esp32-az-01", sharedAccessKey: KEY,
    });
  });

  test("a service connection string", () => {
    expect(parseConnectionString(`HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=${KEY}`)).toEqual({ hostName: "h", sharedAccessKeyName: "iothubowner", sharedAccessKey: KEY });
  });

  test.each([
    [`DeviceId=d;SharedAccessKey=${KEY}`, "HostName"],
    ["HostName=h;DeviceId=d", "SharedAccessKey"],
    [`HostName=h;SharedAccessKey=${KEY}`, "DeviceId"],
    [`HostName=h;HostName=g;DeviceId=d;SharedAccessKey=${KEY}`, null],
    [`HostName=h;DeviceId;SharedAccessKey=${KEY}`, null],
  ])("%j → SAS_CONNECTION_STRING_INVALID (missing %s), never echoing the key", (text, missing) => {
    const e = errorOf(() => parseConnectionString(text));
    expect(e.code).toBe(SAS_CODES.SAS_CONNECTION_STRING_INVALID);
    expect(e.detail).toEqual({ missing });
    expect(e.message).not.toContain(KEY.slice(0, 8));
  });

  test("a key that is not base64 → SAS_KEY_INVALID", () => {
    expect(errorOf(() => parseConnectionString("HostName=h;DeviceId=d;SharedAccessKey=not base64")).code).toBe(SAS_CODES.SAS_KEY_INVALID);
  });
});

describe("a device's credentials and their renewal", () => {
  const cs = parseConnectionString(`HostName=myhub.azure-devices.net;DeviceId=esp32-az-01;SharedAccessKey=${KEY}`);

  test("user name and a token that expires ttl seconds after now (rounded up)", () => {
    const c = deviceSasCredentials(cs, EXPIRY - 3600 - 0.25, 3600);
    expect(c.username).toBe("myhub.azure-devices.net/esp32-az-01/?api-version=2021-04-12");
    expect(c.username).toBe(azureMqttUsername("myhub.azure-devices.net", "esp32-az-01"));
    expect(c.expiry).toBe(EXPIRY);
    expect(c.password).toBe(DEVICE_TOKEN);
  });

  test("renewal falls the margin before expiry; a new token at that time verifies and outlives the old one", () => {
    const first = deviceSasCredentials(cs, 1_000_000, 3600);
    const renewAt = sasRenewAt(first.expiry, 900);
    expect(renewAt).toBe(1_000_000 + 3600 - 900);
    const second = deviceSasCredentials(cs, renewAt, 3600);
    expect(second.expiry).toBe(sasExpiryFrom(renewAt, 3600));
    expect(second.expiry).toBeGreaterThan(first.expiry);
    const keyOf = (): string => KEY;
    expect(verifySasToken(first.password, DEVICE, first.expiry, keyOf).ok).toBe(false);
    expect(verifySasToken(second.password, DEVICE, first.expiry, keyOf).ok).toBe(true);
  });

  test("a service connection string cannot make device credentials", () => {
    const svc = parseConnectionString(`HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=${KEY}`);
    expect(errorOf(() => deviceSasCredentials(svc, 0)).code).toBe(SAS_CODES.SAS_CONNECTION_STRING_INVALID);
  });
});
