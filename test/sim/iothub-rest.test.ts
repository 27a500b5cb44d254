/**
 * The local cloud's IoT Hub service API driven by the unchanged `azure-iothub` SDK (Registry.getTwin,
 * Registry.updateTwin, Client.invokeDeviceMethod) the way a user runs it: a script given only the service
 * connection string from cloud.json, in a process whose NODE_EXTRA_CA_CERTS names the local CA
 * (src/sim/iothub-sdk-steps.cjs). The SDK always connects to port 443 of its HostName, so the API
 * listens on 443 of a loopback address of its own (127.x.y.z, certificate issued for it at test time); that
 * needs root or CAP_NET_BIND_SERVICE, which this machine and CI have — elsewhere the test says so and skips.
 *
 * A real Azure device (mqtt.js over mutual TLS) answers the direct method and receives the desired patch;
 * a registered device that is not connected gets IoT Hub's 404 DeviceNotOnline; a wrong key, an unknown
 * device and a stale etag get IoT Hub's errors; without the CA the SDK refuses the certificate.
 */
import { execFile } from "node:child_process";
import * as https from "node:https";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import mqtt, { type MqttClient } from "mqtt";

import { buildSasToken, parseConnectionString } from "../../src/core/sas-token";
import { runCli } from "../../src/sim/cli";
import { CLOUD_INFO_FILE } from "../../src/sim/device";
import { LocalCloud, type CloudInfo } from "../../src/sim/local-cloud";
import { MemoryLog } from "../core/fake-ports";
import { waitUntil } from "./wait-until";

jest.setTimeout(120_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki");
const STEPS = path.join(__dirname, "..", "..", "src", "sim", "iothub-sdk-steps.cjs");
const log = new MemoryLog();
let dir: string;
let cloud: LocalCloud | undefined;
let hub: Required<CloudInfo>["iothub"];
let caFile: string;
let device: MqttClient | undefined;
const desiredSeen: unknown[] = [];
let skipped: string | undefined;

type Step = { ok: true; value: Record<string, unknown> } | { ok: false; name: string; message: string; statusCode: number | null; body: string | null };

function runSteps(steps: unknown[], connectionString = hub.connectionString, env: NodeJS.ProcessEnv = { ...process.env, NODE_EXTRA_CA_CERTS: caFile }): Promise<Step[]> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [STEPS, JSON.stringify({ connectionString, steps })], { env, timeout: 90_000 }, (err, stdout, stderr) => {
      if (err) { reject(new Error(`${err.message}\n${stderr}`)); return; }
      resolve(JSON.parse(stdout) as Step[]);
    });
  });
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-iothub-"));
  // A loopback address of this test's own, so port 443 is free whatever else runs.
  const hubHost = `127.${10 + (process.pid % 200)}.${Math.floor(Math.random() * 250) + 1}.${Math.floor(Math.random() * 250) + 1}`;
  try {
    cloud = await LocalCloud.start({
      dataDir: path.join(dir, "cloud"), certsDir: PKI, blobPort: false, log, iothub: { host: hubHost, port: 443 },
      devices: [{ id: "az-01", cloud: "azure" }, { id: "az-02", cloud: "azure" }, { id: "esp32-01", cloud: "aws" }],
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EACCES") {
      skipped = `binding ${hubHost}:443 needs root or CAP_NET_BIND_SERVICE`;
      console.log(`${skipped}: the azure-iothub tests of test/sim/iothub-rest.test.ts are skipped`);
      return;
    }
    throw e;
  }
  hub = (JSON.parse(fs.readFileSync(path.join(dir, "cloud", CLOUD_INFO_FILE), "utf8")) as CloudInfo).iothub!;
  caFile = path.join(dir, "ca.pem");
  fs.writeFileSync(caFile, cloud.pki.caPem);
  const c = cloud.credentials("az-01");
  device = await mqtt.connectAsync({ protocol: "mqtts", host: c.host, port: c.port, clientId: "az-01", ca: c.ca, cert: c.cert, key: c.key, protocolVersion: 4 });
  device.on("message", (topic, payload) => {
    const m = /^\$iothub\/methods\/POST\/([^/]+)\/\?\$rid=(.+)$/.exec(topic);
    if (m !== null && m[1] === "silent") return; // a device that never answers this method
    if (m !== null) {
      void device!.publishAsync(`$iothub/methods/res/200/?$rid=${m[2]}`, JSON.stringify({ method: m[1], got: JSON.parse(payload.toString("utf8")) }), { qos: 0 });
    } else if (topic.startsWith("$iothub/twin/PATCH/properties/desired/")) desiredSeen.push(JSON.parse(payload.toString("utf8")));
  });
  await device.subscribeAsync(["$iothub/methods/POST/#", "$iothub/twin/PATCH/properties/desired/#"], { qos: 0 });
  await waitUntil(() => (cloud!.deviceOnline("az-01") === true ? true : undefined), 10_000, "az-01 online");
});
afterAll(async () => {
  await device?.endAsync(true);
  await cloud?.close();
  fs.rmSync(dir, { recursive: true, force: true });
  expect(log.lines.filter((l) => l.level === "error")).toEqual([]);
});

const maybe = (name: string, fn: () => Promise<void>): void => test(name, async () => { if (skipped === undefined) await fn(); });

maybe("cloud.json has a service connection string naming the hub's loopback host and the iothubowner policy", async () => {
  expect(hub.connectionString).toMatch(new RegExp(`^HostName=${hub.hostName.replace(/\./g, "\\.")};SharedAccessKeyName=iothubowner;SharedAccessKey=[A-Za-z0-9+/]{43}=$`));
  expect(hub.url).toBe(`https://${hub.hostName}:443`);
});

maybe("getTwin, updateTwin (the device gets the patch), a stale etag, invokeDeviceMethod on an online and an offline device", async () => {
  const r = await runSteps([
    { op: "getTwin", id: "az-01" },
    { op: "updateTwin", id: "az-01", patch: { properties: { desired: { updateVersion: "1.1.0" } } }, etag: "*" },
    { op: "getTwin", id: "az-01" },
    { op: "updateTwin", id: "az-01", patch: { properties: { desired: { updateVersion: "1.2.0" } } }, etag: "AAAAAAAAAAE=" },
    { op: "invoke", id: "az-01", methodName: "firmwareUpdate", payload: { version: "1.1.0" } },
    { op: "invoke", id: "az-02", methodName: "firmwareUpdate", payload: null },
    { op: "getTwin", id: "nobody" },
    { op: "getTwin", id: "esp32-01" },
  ]);
  expect(r[0]).toEqual({ ok: true, value: { deviceId: "az-01", etag: "AAAAAAAAAAE=", status: 200, properties: { desired: { $version: 1 }, reported: { $version: 1 } } } });
  expect(r[1]).toMatchObject({ ok: true, value: { etag: "AAAAAAAAAAI=", status: 200, properties: { desired: { updateVersion: "1.1.0", $version: 2 } } } });
  expect(r[2]).toMatchObject({ ok: true, value: { etag: "AAAAAAAAAAI=", properties: { desired: { updateVersion: "1.1.0", $version: 2 } } } });
  expect(r[3]).toMatchObject({ ok: false, name: "InvalidEtagError", statusCode: 412 });
  expect(r[4]).toEqual({ ok: true, value: { status: 200, payload: { method: "firmwareUpdate", got: { version: "1.1.0" } } } });
  expect(r[5]).toMatchObject({ ok: false, statusCode: 404 });
  expect(JSON.parse((r[5] as { body: string }).body)).toMatchObject({ Message: "ErrorCode:DeviceNotOnline;Timed out waiting for device to connect." });
  expect(r[6]).toMatchObject({ ok: false, name: "DeviceNotFoundError", statusCode: 404, message: "Device nobody not registered" });
  expect(r[7]).toMatchObject({ ok: false, name: "DeviceNotFoundError", statusCode: 404 }); // an AWS thing is no IoT Hub device
  await waitUntil(() => (desiredSeen.length > 0 ? true : undefined), 10_000, "the desired patch on the device");
  expect(desiredSeen[0]).toEqual({ updateVersion: "1.1.0", $version: 2 });
  expect(desiredSeen).toHaveLength(1); // the refused 1.2.0 patch never reached it
});

maybe("a connection string with another key → 401 UnauthorizedError", async () => {
  const wrong = hub.connectionString.replace(/SharedAccessKey=[^;]+$/, `SharedAccessKey=${Buffer.alloc(32, 7).toString("base64")}`);
  const other = hub.connectionString.replace("SharedAccessKeyName=iothubowner", "SharedAccessKeyName=registryRead");
  const [a] = await runSteps([{ op: "getTwin", id: "az-01" }], wrong);
  const [b] = await runSteps([{ op: "getTwin", id: "az-01" }], other);
  expect(a).toMatchObject({ ok: false, name: "UnauthorizedError", statusCode: 401, message: "Unauthorized: the SAS token's signature does not match" });
  expect(b).toMatchObject({ ok: false, name: "UnauthorizedError", statusCode: 401, message: "Unauthorized: no shared access policy named registryRead" });
});

maybe("without the local CA the SDK refuses the certificate (the CA is what NODE_EXTRA_CA_CERTS supplies)", async () => {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  const [a] = await runSteps([{ op: "getTwin", id: "az-01" }], hub.connectionString, env);
  expect(a).toMatchObject({ ok: false });
  expect((a as { message: string }).message).toMatch(/certificate/);
});

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli([...argv, "--data-dir", path.join(dir, "cloud")], { print: (l) => out.push(l), error: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

maybe("the CLI's twin commands go through azure-iothub: they work without the admin token", async () => {
  const infoFile = path.join(dir, "cloud", CLOUD_INFO_FILE);
  const original = fs.readFileSync(infoFile, "utf8");
  fs.writeFileSync(infoFile, JSON.stringify({ ...JSON.parse(original), adminToken: "0".repeat(48) }), { mode: 0o600 });
  try {
    expect((await cli("twin", "set-desired", "az-01", '{"telemetryInterval":9}')).code).toBe(0);
    const got = await cli("twin", "get", "az-01");
    expect(got.code).toBe(0);
    expect(JSON.parse(got.out)).toMatchObject({ deviceId: "az-01", properties: { desired: { telemetryInterval: 9 } } });
    const m = await cli("twin", "method", "az-01", "ping", '{"n":1}');
    expect(JSON.parse(m.out)).toEqual({ status: 200, payload: { method: "ping", got: { n: 1 } } });
    const offline = await cli("twin", "method", "az-02", "ping");
    expect(offline.code).toBe(1);
    expect(JSON.parse(offline.err)).toEqual({ code: "DeviceNotOnline", status: 404, message: "Timed out waiting for device to connect." });
  } finally {
    fs.writeFileSync(infoFile, original, { mode: 0o600 });
  }
});

/** One request with a service token made by the core, for the cases the SDK would retry for minutes. */
function raw(method: string, route: string, body: unknown): Promise<{ status: number; json: { Message?: string } & Record<string, unknown> }> {
  const cs = parseConnectionString(hub.connectionString);
  const token = buildSasToken(cs.hostName, cs.sharedAccessKey, Math.ceil(Date.now() / 1000) + 600, cs.sharedAccessKeyName);
  const text = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request({ host: hub.hostName, port: 443, path: `${route}?api-version=2021-04-12`, method, ca: cloud!.pki.caPem,
      headers: { authorization: token, "content-type": "application/json", "content-length": Buffer.byteLength(text) } }, (res) => {
      let b = "";
      res.on("data", (d: Buffer) => { b += d.toString("utf8"); });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(b) as { Message?: string } }));
    });
    req.on("error", reject);
    req.end(text);
  });
}

maybe("a device that does not answer within responseTimeoutInSeconds → 504 GatewayTimeout; connectTimeoutInSeconds waits for an offline one first", async () => {
  const silent = await raw("POST", "/twins/az-01/methods", { methodName: "silent", payload: null, responseTimeoutInSeconds: 5 });
  expect(silent).toEqual({ status: 504, json: expect.objectContaining({ Message: "ErrorCode:GatewayTimeout;Timed out waiting for the response from device." }) });
  const offline = await raw("POST", "/twins/az-02/methods", { methodName: "m", payload: null, connectTimeoutInSeconds: 1 });
  expect(offline).toEqual({ status: 404, json: expect.objectContaining({ Message: "ErrorCode:DeviceNotOnline;Timed out waiting for device to connect." }) });
  const bad = await raw("POST", "/twins/az-01/methods", { methodName: "m", responseTimeoutInSeconds: 1 });
  expect(bad.status).toBe(400); // 5..300 s
});
