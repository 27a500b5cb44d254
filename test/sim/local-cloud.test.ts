/**
 * End to end on loopback: the local cloud (local CA, broker over mutual TLS, AWS shadow and Azure twin
 * services, store, admin HTTP API) and simulated devices running the platform-neutral core (ShadowSync +
 * DeviceAgent) over the Node adapters. The same scenarios run on the embedded aedes broker and on Debian's
 * mosquitto (skipped, and said so, when mosquitto is not installed).
 *
 * Covered: a device reports its running firmware version; desired configuration set through the admin
 * API reaches the device and comes back as reported; a desired firmware version is handed to the OTA hook;
 * a hostile firmware version ends up in reported.lastError; a device rebooted with its NVS file reports
 * nothing twice; the cloud restarted on the same data keeps shadows and twins and devices reconnect; the
 * Azure direct method round trip; the admin HTTP API and its token; the firmware blob server started with
 * the cloud (cloud.json, publishing, the /firmware admin routes, faults) and a cloud without one.
 * Every wait is bounded (SimDevice.waitFor / waitUntil time out).
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import { getPath } from "../../src/core/config-diff";
import type { JsonObject } from "../../src/core/json";
import { describeEachBroker, noteMosquittoSkipped } from "./mosquitto-gate";
import { SimDevice } from "../../src/sim/device";
import { LocalCloud, type BrokerKind } from "../../src/sim/local-cloud";
import { waitUntil } from "./wait-until";

jest.setTimeout(60_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki"); // shared across tests: RSA keys take time
noteMosquittoSkipped("test/sim/local-cloud.test.ts");

describeEachBroker("local cloud on %s", (broker: BrokerKind) => {
  let dir: string;
  const open: Array<{ close(): Promise<void> }> = [];

  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), `shadow-ota-cloud-${broker}-`)); });
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function startCloud(port?: number): Promise<LocalCloud> {
    const cloud = await LocalCloud.start({
      broker, dataDir: path.join(dir, "cloud"), certsDir: PKI, methodTimeoutMs: 5_000,
      devices: [{ id: "esp32-01", cloud: "aws" }, { id: "esp32-az-01", cloud: "azure" }],
      ...(port === undefined ? {} : { port }),
    });
    open.push(cloud);
    return cloud;
  }

  function startDevice(cloud: LocalCloud, id: string, extra: Partial<Parameters<typeof SimDevice.start>[0]> = {}): SimDevice {
    const c = cloud.credentials(id);
    const d = SimDevice.start({
      id, cloud: c.cloud, host: c.host, port: c.port, ca: c.ca, cert: c.cert, key: c.key,
      dataDir: path.join(dir, "devices", id), log: { log() {} }, ...extra,
    });
    open.push(d);
    return d;
  }

  const reportedOf = async (cloud: LocalCloud, id: string): Promise<JsonObject | undefined> => {
    if (cloud.devices.get(id) === "azure") return (await cloud.twins.getTwin(id)).reported;
    const doc = await cloud.shadows.getShadow(id);
    return (doc?.["state"] as JsonObject | undefined)?.["reported"] as JsonObject | undefined;
  };

  it("AWS: reports the running version, applies desired config, hands the firmware version on, survives reboots", async () => {
    const cloud = await startCloud();
    const requests: string[] = [];
    let device = startDevice(cloud, "esp32-01", { onFirmwareRequested: (r) => { requests.push(r.version); } });
    await waitUntil(async () => (getPath(await reportedOf(cloud, "esp32-01") ?? {}, ["config", "firmware_version"]) === "1.0.0" ? true : undefined), 15_000, "firmware version reported");

    await cloud.shadows.updateDesired("esp32-01", { config: { interval: 30, firmware_version: "1.1.0" } });
    await waitUntil(async () => (getPath(await reportedOf(cloud, "esp32-01") ?? {}, ["config", "interval"]) === 30 ? true : undefined), 10_000, "interval reported");
    expect(requests).toEqual(["1.1.0"]);
    // This device has no firmware source configured (no allowed host): the controller refuses and says so.
    const update = await waitUntil(async () => (await reportedOf(cloud, "esp32-01"))?.["firmwareUpdate"] as JsonObject | undefined, 10_000, "firmwareUpdate reported");
    expect(update["state"]).toBe("Failed");
    expect((update["lastError"] as JsonObject)["code"]).toBe("DOWNLOAD_HOST_NOT_ALLOWED");
    const doc = (await cloud.shadows.getShadow("esp32-01"))!;
    expect((doc["state"] as JsonObject)["delta"]).toEqual({ config: { firmware_version: "1.1.0" } });

    // Reboot: a new device on the same NVS file. It re-syncs and hands the pending firmware version on again.
    await device.close();
    const before = (await cloud.shadows.getShadow("esp32-01"))!["version"];
    device = startDevice(cloud, "esp32-01", { onFirmwareRequested: (r) => { requests.push(r.version); } });
    await device.waitFor((s) => s.connected && s.version === before, 10_000, "re-synced after reboot");
    await waitUntil(async () => (requests.length === 2 ? true : undefined), 5_000, "firmware request after reboot");
    expect((await cloud.shadows.getShadow("esp32-01"))!["version"]).toBe(before); // nothing reported twice
  });

  it("AWS: a hostile desired firmware version is reported in lastError, never handed on", async () => {
    const cloud = await startCloud();
    const requests: string[] = [];
    startDevice(cloud, "esp32-01", { onFirmwareRequested: (r) => { requests.push(r.version); } });
    await waitUntil(async () => ((await reportedOf(cloud, "esp32-01")) !== undefined ? true : undefined), 15_000, "first report");
    await cloud.shadows.updateDesired("esp32-01", { config: { firmware_version: "1.2.0/../../etc" } });
    const err = await waitUntil(async () => (await reportedOf(cloud, "esp32-01"))?.["lastError"] as JsonObject | undefined, 10_000, "lastError reported");
    expect(err["code"]).toBe("SYNC_FIRMWARE_VERSION_INVALID");
    expect(requests).toEqual([]);
  });

  it("Azure: reports firmwareVersion, applies a desired patch, answers a direct method", async () => {
    const cloud = await startCloud();
    const requests: string[] = [];
    startDevice(cloud, "esp32-az-01", { onFirmwareRequested: (r) => { requests.push(r.version); } });
    await waitUntil(async () => ((await reportedOf(cloud, "esp32-az-01"))?.["firmwareVersion"] === "1.0.0" ? true : undefined), 15_000, "firmwareVersion reported");

    await cloud.twins.updateDesired("esp32-az-01", { updateVersion: "1.1.0", telemetry: { interval: 15 } });
    await waitUntil(async () => (getPath(await reportedOf(cloud, "esp32-az-01") ?? {}, ["telemetry", "interval"]) === 15 ? true : undefined), 10_000, "telemetry reported");
    expect(requests).toEqual(["1.1.0"]);

    const reply = await cloud.twins.invokeMethod("esp32-az-01", "firmwareUpdate", { version: "1.2.0" });
    expect(reply.status).toBe(200);
    expect(requests).toEqual(["1.1.0", "1.2.0"]);
    const unknown = await cloud.twins.invokeMethod("esp32-az-01", "selfDestruct", {});
    expect(unknown.status).toBe(404);
  });

  it("keeps shadows and twins across a cloud restart; devices reconnect by themselves", async () => {
    let cloud = await startCloud();
    const port = cloud.mqttPort;
    const aws = startDevice(cloud, "esp32-01");
    await cloud.shadows.updateDesired("esp32-01", { config: { interval: 45 } });
    await waitUntil(async () => (getPath(await reportedOf(cloud, "esp32-01") ?? {}, ["config", "interval"]) === 45 ? true : undefined), 15_000, "interval reported");
    const version = (await cloud.shadows.getShadow("esp32-01"))!["version"];

    await cloud.close();
    open.splice(open.indexOf(cloud), 1);
    await aws.waitFor((s) => !s.connected, 10_000, "disconnect noticed");
    cloud = await startCloud(port);
    expect((await cloud.shadows.getShadow("esp32-01"))!["version"]).toBe(version);
    await aws.waitFor((s) => s.connected, 15_000, "reconnected");
    await cloud.shadows.updateDesired("esp32-01", { config: { interval: 60 } });
    await waitUntil(async () => (getPath(await reportedOf(cloud, "esp32-01") ?? {}, ["config", "interval"]) === 60 ? true : undefined), 15_000, "interval 60 reported");
  });
});

describe("admin HTTP API", () => {
  let dir: string;
  let cloud: LocalCloud;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-admin-"));
    cloud = await LocalCloud.start({ dataDir: dir, certsDir: PKI, devices: [{ id: "esp32-01", cloud: "aws" }, { id: "esp32-az-01", cloud: "azure" }] });
  });
  afterAll(async () => {
    await cloud.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const call = async (method: string, p: string, body?: unknown, token = cloud.adminToken) => {
    const res = await fetch(`${cloud.adminUrl}${p}`, {
      method, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
    });
    return { status: res.status, json: (await res.json()) as JsonObject };
  };

  it("writes cloud.json (0600) with the admin URL and token", () => {
    const file = path.join(dir, "cloud.json");
    const info = JSON.parse(fs.readFileSync(file, "utf8"));
    expect(info.adminUrl).toBe(cloud.adminUrl);
    expect(info.devices).toEqual({ "esp32-01": "aws", "esp32-az-01": "azure" });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });

  it("refuses a wrong token", async () => {
    expect((await call("GET", "/things/esp32-01/shadow", undefined, "nope")).status).toBe(401);
  });

  it("updates and reads a shadow with AWS statuses", async () => {
    expect((await call("GET", "/things/esp32-01/shadow")).status).toBe(404);
    const up = await call("POST", "/things/esp32-01/shadow", { state: { desired: { config: { interval: 5 } } } });
    expect(up.status).toBe(200);
    expect(up.json["version"]).toBe(1);
    const got = await call("GET", "/things/esp32-01/shadow");
    expect((got.json["state"] as JsonObject)["desired"]).toEqual({ config: { interval: 5 } });
    expect((await call("POST", "/things/esp32-01/shadow", { state: { desired: { a: 1 } }, version: 7 })).status).toBe(409);
    expect((await call("POST", "/things/esp32-01/shadow", { state: { reported: { a: 1 } } })).status).toBe(400);
    expect((await call("POST", "/things/esp32-01/shadow", "{nope")).status).toBe(400);
  });

  it("patches and reads a twin", async () => {
    const p = await call("PATCH", "/twins/esp32-az-01", { properties: { desired: { updateVersion: "1.1.0" } } });
    expect(p.status).toBe(200);
    const t = await call("GET", "/twins/esp32-az-01");
    expect(((t.json["properties"] as JsonObject)["desired"] as JsonObject)["updateVersion"]).toBe("1.1.0");
  });

  it("answers 504 when the device does not reply to a method in time", async () => {
    const r = await call("POST", "/twins/esp32-az-01/methods", { methodName: "firmwareUpdate", payload: { version: "1.1.0" }, responseTimeoutInSeconds: 1 });
    expect(r.status).toBe(200);
    expect(r.json["status"]).toBe(504);
  });

  describe("firmware blobs", () => {
    const image = Buffer.concat([Buffer.from([0xe9]), crypto.randomBytes(20_000)]);
    const put = async (p: string, body: Uint8Array, token = cloud.adminToken) => {
      const res = await fetch(`${cloud.adminUrl}${p}`, { method: "PUT", headers: { authorization: `Bearer ${token}`, "content-type": "application/octet-stream" }, body });
      return { status: res.status, json: (await res.json()) as JsonObject };
    };
    /** GET over HTTPS from the blob server, trusting only the local CA. */
    const fetchBlob = (url: string): Promise<{ status: number; body: Buffer }> => new Promise((resolve, reject) => {
      https.get(url, { ca: cloud.blobCa, agent: false }, (res) => {
        const parts: Buffer[] = [];
        res.on("data", (d: Buffer) => parts.push(d));
        res.on("end", () => resolve({ status: res.statusCode!, body: Buffer.concat(parts) }));
        res.on("error", reject);
      }).on("error", reject);
    });

    it("the blob server runs with the cloud: base URL in cloud.json, served over TLS from the local CA", async () => {
      expect(cloud.blobBaseUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/firmware\/$/);
      expect(JSON.parse(fs.readFileSync(path.join(dir, "cloud.json"), "utf8")).blobUrl).toBe(cloud.blobBaseUrl);
      const info = cloud.publishFirmware("firmware", "1.0.5.bin", image);
      expect(info.url).toBe(`${cloud.blobBaseUrl}1.0.5.bin`);
      const got = await fetchBlob(info.url);
      expect(got.status).toBe(200);
      expect(got.body.equals(image)).toBe(true);
      expect(fs.existsSync(path.join(dir, "blobs", "firmware", "1.0.5.bin"))).toBe(true);
    });

    it("PUT publishes, GET lists name, size and ETag, DELETE removes", async () => {
      const up = await put("/firmware/firmware/v1_1_0.bin", image);
      expect(up.status).toBe(200);
      expect(up.json).toMatchObject({ container: "firmware", name: "v1_1_0.bin", size: image.length, url: `${cloud.blobBaseUrl}v1_1_0.bin` });
      expect((await fetchBlob(`${cloud.blobBaseUrl}v1_1_0.bin`)).body.equals(image)).toBe(true);
      const list = await call("GET", "/firmware");
      expect(list.status).toBe(200);
      const entry = (list.json["blobs"] as JsonObject[]).find((b) => b["name"] === "v1_1_0.bin");
      expect(entry).toMatchObject({ size: image.length, etag: up.json["etag"] });
      expect((await call("DELETE", "/firmware/firmware/v1_1_0.bin")).status).toBe(200);
      expect((await fetchBlob(`${cloud.blobBaseUrl}v1_1_0.bin`)).status).toBe(404);
      const again = await call("DELETE", "/firmware/firmware/v1_1_0.bin");
      expect(again.status).toBe(404);
      expect(again.json["code"]).toBe("CLOUD_BLOB_NOT_FOUND");
    });

    it("refuses bad names (400), a missing token (401) and bad faults (400)", async () => {
      expect((await put("/firmware/firmware/.hidden", image)).status).toBe(400);
      expect((await put("/firmware/firmware/x.bin", image, "nope")).status).toBe(401);
      const bad = await call("POST", "/firmware/firmware/1.0.5.bin/faults", { fault: { explode: true } });
      expect(bad.status).toBe(400);
      expect(bad.json["code"]).toBe("CLOUD_BLOB_FAULT_INVALID");
    });

    it("arms and clears faults through the API", async () => {
      cloud.publishFirmware("firmware", "1.0.5.bin", image);
      expect((await call("POST", "/firmware/firmware/1.0.5.bin/faults", { fault: { status: 503 }, times: "always" })).status).toBe(200);
      expect((await fetchBlob(`${cloud.blobBaseUrl}1.0.5.bin`)).status).toBe(503);
      expect((await fetchBlob(`${cloud.blobBaseUrl}1.0.5.bin`)).status).toBe(503);
      expect((await call("DELETE", "/firmware/firmware/1.0.5.bin/faults")).status).toBe(200);
      expect((await fetchBlob(`${cloud.blobBaseUrl}1.0.5.bin`)).status).toBe(200);
    });
  });
});

describe("local cloud without a blob server", () => {
  it("blobPort: false starts none; blob calls say so and cloud.json has no blobUrl", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-noblobs-"));
    const cloud = await LocalCloud.start({ dataDir: dir, certsDir: PKI, blobPort: false });
    try {
      expect(cloud.hasBlobServer).toBe(false);
      expect(() => cloud.blobBaseUrl).toThrow(expect.objectContaining({ code: "CLOUD_BLOB_SERVER_DISABLED" }));
      expect(JSON.parse(fs.readFileSync(path.join(dir, "cloud.json"), "utf8")).blobUrl).toBeUndefined();
      const res = await fetch(`${cloud.adminUrl}/firmware`, { headers: { authorization: `Bearer ${cloud.adminToken}` } });
      expect(res.status).toBe(404);
    } finally {
      await cloud.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
