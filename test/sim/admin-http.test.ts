/**
 * The admin HTTP API against bad input (issue 8, "Hardening"): every malformed request gets a 4xx with a
 * code and a message that says what is wrong — never a 500, which is kept for the local cloud's own bugs.
 * The cases from the issue first (a POST with an invalid thing or shadow name, a malformed percent-escape,
 * a document nested 10,000 levels, the service identity registered as a device), then a table of other
 * bad requests and a bounded, seeded fuzz of paths and bodies. Loopback only; no blob server needed except
 * for the /firmware rows, which run against the one the cloud starts.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { CLOUD_CODES } from "../../src/sim/cloud-errors";
import { LocalCloud } from "../../src/sim/local-cloud";
import { CLOUD_SERVICE_IDENTITY } from "../../src/sim/pki";
import { MemoryLog } from "../core/fake-ports";

jest.setTimeout(60_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki");
const log = new MemoryLog();
let dir: string;
let cloud: LocalCloud;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-admin-"));
  cloud = await LocalCloud.start({ dataDir: path.join(dir, "cloud"), certsDir: PKI, log, devices: [{ id: "esp32-01", cloud: "aws" }, { id: "az-01", cloud: "azure" }] });
});
afterAll(async () => {
  await cloud.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Answer { status: number; code?: string; message?: string }

async function call(method: string, route: string, body?: string | Buffer): Promise<Answer> {
  const r = await fetch(cloud.adminUrl + route, { method, headers: { authorization: `Bearer ${cloud.adminToken}` }, ...(body === undefined ? {} : { body }) });
  const text = await r.text();
  let json: { code?: string; message?: string } = {};
  try { json = JSON.parse(text) as typeof json; } catch { /* a non-JSON answer fails the shape checks below */ }
  return { status: r.status, ...json };
}

const deep = (n: number): string => '{"a":'.repeat(n) + "1" + "}".repeat(n);

describe("the cases of issue 8", () => {
  test.each([
    ["POST", "/things/bad%20name/shadow", "SYNC_NAME_INVALID", '{"state":{"desired":{"a":1}}}', /thing name/],
    ["POST", "/things/esp32-01/shadow?name=bad%20name", "SYNC_NAME_INVALID", '{"state":{"desired":{"a":1}}}', /shadow name/],
    ["DELETE", "/things/bad%20name/shadow", "SYNC_NAME_INVALID", undefined, /thing name/],
    ["DELETE", "/things/esp32-01/shadow?name=x%2Fy", "SYNC_NAME_INVALID", undefined, /shadow name/],
    ["GET", "/things/bad%20name/shadow", "SYNC_NAME_INVALID", undefined, /thing name/],
    ["GET", "/things/%E0%A4%A/shadow", CLOUD_CODES.CLOUD_ADMIN_URL_INVALID, undefined, /percent-escape/],
    ["PATCH", "/twins/%ZZ", CLOUD_CODES.CLOUD_ADMIN_URL_INVALID, '{"properties":{"desired":{}}}', /percent-escape/],
    ["POST", "/things/esp32-01/shadow", "SYNC_DEPTH_EXCEEDED", `{"state":{"desired":${deep(10_000)}}}`, /10002 levels.*at most 64/],
    ["PATCH", "/twins/az-01", "SYNC_DEPTH_EXCEEDED", `{"properties":{"desired":${deep(10_000)}}}`, /at most 64/],
    ["POST", "/twins/az-01/methods", "SYNC_DEPTH_EXCEEDED", `{"methodName":"m","payload":${deep(10_000)}}`, /at most 64/],
    ["POST", "/devices", CLOUD_CODES.CLOUD_DEVICE_ID_RESERVED, JSON.stringify({ id: CLOUD_SERVICE_IDENTITY, cloud: "aws" }), /reserved/],
    ["POST", "/devices", CLOUD_CODES.CLOUD_DEVICE_ID_RESERVED, JSON.stringify({ id: `${CLOUD_SERVICE_IDENTITY}-${process.pid}`, cloud: "azure" }), /reserved/],
  ])("%s %s → 400 %s", async (method, route, code, body, message) => {
    const a = await call(method, route, body);
    expect(a).toMatchObject({ status: 400, code });
    expect(a.message).toMatch(message);
  });

  test("the reserved identity was not registered, and addDevice refuses it too", async () => {
    expect(cloud.devices.has(CLOUD_SERVICE_IDENTITY)).toBe(false);
    await expect(cloud.addDevice(CLOUD_SERVICE_IDENTITY, "aws")).rejects.toMatchObject({ code: CLOUD_CODES.CLOUD_DEVICE_ID_RESERVED });
  });

  test("a desired document just over the shadow's depth still gets the service's own message", async () => {
    const a = await call("POST", "/things/esp32-01/shadow", `{"state":{"desired":${deep(20)}}}`);
    expect(a).toMatchObject({ status: 400, code: "CLOUD_REQUEST_REJECTED" });
    expect(a.message).toMatch(/levels of nesting/);
  });
});

describe("other bad requests", () => {
  test.each([
    ["POST", "/things/esp32-01/shadow", 400, "{"],
    ["POST", "/things/esp32-01/shadow", 400, "[]"],
    ["POST", "/things/esp32-01/shadow", 400, '{"state":{"reported":{"a":1}}}'],
    ["POST", "/things/esp32-01/shadow", 400, '{"state":{"desired":[1]}}'],
    ["POST", "/things/esp32-01/shadow", 400, '{"state":{"desired":{"a":1}},"version":"x"}'],
    ["POST", "/things/esp32-01/shadow", 400, Buffer.from([0xff, 0xfe])],
    ["POST", "/things/esp32-01/shadow", 413, "x".repeat(70 * 1024)],
    ["DELETE", "/things/never-created/shadow", 404, undefined],
    ["GET", `/things/${"a".repeat(129)}/shadow`, 400, undefined],
    ["PATCH", "/twins/az-01", 400, '{"properties":{"desired":{"$bad":1}}}'],
    ["PATCH", "/twins/az-01", 400, '{"properties":{}}'],
    ["PATCH", "/twins/a%2Fb", 400, '{"properties":{"desired":{}}}'],
    ["POST", "/twins/az-01/methods", 400, '{"methodName":7}'],
    ["POST", "/twins/az-01/methods", 400, '{"methodName":"a/b"}'],
    ["POST", "/devices", 400, '{"id":"x"}'],
    ["POST", "/devices", 400, '{"id":"a b","cloud":"aws"}'],
    ["POST", "/devices", 400, '{"id":"esp32-01","cloud":"azure"}'],
    ["PUT", "/firmware/..%2F/x.bin", 400, "bytes"],
    ["PUT", "/firmware/firmware/.hidden", 400, "bytes"],
    ["DELETE", "/firmware/firmware/missing.bin", 404, undefined],
    ["POST", "/firmware/firmware/x.bin/faults", 400, '{"fault":{"nope":1}}'],
    ["POST", "/firmware/firmware/x.bin/faults", 400, '{"fault":{},"times":"sometimes"}'],
    ["GET", "/nowhere", 404, undefined],
  ])("%s %s → %d", async (method, route, status, body) => {
    const a = await call(method, route, body);
    expect(a.status).toBe(status);
    expect(typeof a.code).toBe("string");
    expect(typeof a.message).toBe("string");
  });
});

test("seeded fuzz: 300 random paths and bodies never get a 5xx", async () => {
  let x = 0x9e3779b9;
  const next = (n: number): number => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x % n;
  };
  const pieces = ["things", "twins", "devices", "firmware", "shadow", "methods", "faults", "esp32-01", "az-01", "%", "%2", "%E0%A4%A", "%00", "..", "a%2Fb", "?name=", "?name=%", "&", "#", "x".repeat(300)];
  const bodies = ["", "{", "{}", "null", '{"state":{"desired":{"a":1}}}', '{"properties":{"desired":{"a":1}}}', '{"methodName":"m","responseTimeoutInSeconds":0.001}',
    '{"id":"fz","cloud":"aws"}', '{"fault":{"cutAtByte":-1}}', deep(100), '{"__proto__":{"x":1}}', "\u0000"];
  const methods = ["GET", "POST", "PATCH", "PUT", "DELETE"];
  for (let i = 0; i < 300; i++) {
    const route = "/" + Array.from({ length: 1 + next(4) }, () => pieces[next(pieces.length)]).join("/");
    const method = methods[next(methods.length)]!;
    const a = await call(method, route, method === "GET" ? undefined : bodies[next(bodies.length)]);
    if (a.status >= 500) throw new Error(`${method} ${route} answered ${a.status} ${a.code} ${a.message}`);
  }
  expect(log.lines.filter((l) => l.event === "admin.failed")).toEqual([]);
});
