/**
 * OTA end to end on loopback, through the path a device takes: the local cloud (broker over mutual TLS,
 * shadow and twin services, the HTTPS blob server with the local CA) and simulated devices running the
 * device app (ShadowSync + DeviceAgent + OtaController) over the Node adapters, the HTTPS byte source and
 * the native OTA module on a flash file with ESP-IDF's bootloader rules. Real ESP32 image bytes
 * (src/tools/esp-image.ts), real restarts (the device powers on again from its flash and NVS files).
 *
 * Covered: 1.0.0 → 1.1.0 on the AWS seed and on the Azure seed (restart into the new slot, self-test,
 * confirmation, the new version reported, the delta cleared); an image whose self-test fails rolls back and
 * the old image says why; a power cut mid-download resumes within one sector; a cut connection is
 * retried; a 404, an HTML page, a descriptor with another version and an untrusted server certificate are
 * each refused with their code and leave the device on its verified image. The flows run on aedes; the
 * AWS and Azure updates also on mosquitto (skipped, and said so, without it).
 * Every wait is bounded (SimDevice.waitFor / waitUntil time out).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { getPath } from "../../src/core/config-diff";
import type { JsonObject } from "../../src/core/json";
import { awsBlobName, azureBlobName } from "../../src/core/firmware-url";
import { SELFTEST_FAIL_MARKER, SimDevice, type SimDeviceOptions } from "../../src/sim/device";
import { LocalCloud, type BrokerKind } from "../../src/sim/local-cloud";
import { LocalPki } from "../../src/sim/pki";
import { buildImage } from "../../src/tools/esp-image";
import { describeEachBroker, noteMosquittoSkipped } from "./mosquitto-gate";
import { waitUntil } from "./wait-until";

jest.setTimeout(120_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki"); // shared across tests: RSA keys take time
noteMosquittoSkipped("test/sim/ota-e2e.test.ts");

const IMAGE_SIZE = 256 * 1024;
const image = (version: string, marker?: string): Uint8Array =>
  buildImage({ version, projectName: "shadow-ota", size: IMAGE_SIZE, seed: 11, ...(marker === undefined ? {} : { marker }) });

function harness(broker: BrokerKind) {
  let dir = "";
  const open: Array<{ close(): Promise<void> }> = [];
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), `shadow-ota-e2e-${broker}-`)); });
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.close().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const h = {
    async cloud(): Promise<LocalCloud> {
      const cloud = await LocalCloud.start({
        broker, dataDir: path.join(dir, "cloud"), certsDir: PKI, methodTimeoutMs: 5_000,
        devices: [{ id: "esp32-01", cloud: "aws" }, { id: "esp32-az-01", cloud: "azure" }],
      });
      open.push(cloud);
      return cloud;
    },
    device(cloud: LocalCloud, id: string, extra: Partial<SimDeviceOptions> = {}): SimDevice {
      const c = cloud.credentials(id);
      const d = SimDevice.start({
        id, cloud: c.cloud, host: c.host, port: c.port, ca: c.ca, cert: c.cert, key: c.key,
        dataDir: path.join(dir, "devices", id), log: { log() {} },
        firmware: { baseUrl: cloud.blobBaseUrl, ca: c.ca },
        ota: { retry: { initialMs: 100, maxMs: 400, maxAttempts: 4 }, selfTestWindowMs: 20_000 },
        powerOffMs: 50,
        ...extra,
      });
      open.push(d);
      return d;
    },
    dir: () => dir,
  };
  return h;
}

async function reportedOf(cloud: LocalCloud, id: string): Promise<JsonObject> {
  if (cloud.devices.get(id) === "azure") return (await cloud.twins.getTwin(id)).reported;
  const doc = await cloud.shadows.getShadow(id);
  return ((doc?.["state"] as JsonObject | undefined)?.["reported"] as JsonObject | undefined) ?? {};
}

async function updateState(cloud: LocalCloud, id: string, want: string): Promise<JsonObject> {
  return waitUntil(async () => {
    const u = (await reportedOf(cloud, id))["firmwareUpdate"] as JsonObject | undefined;
    return u?.["state"] === want ? u : undefined;
  }, 60_000, `${id}: firmwareUpdate.state ${want}`);
}

async function setDesiredVersion(cloud: LocalCloud, id: string, version: string): Promise<void> {
  if (cloud.devices.get(id) === "azure") await cloud.twins.updateDesired(id, { updateVersion: version });
  else await cloud.shadows.updateDesired(id, { config: { firmware_version: version } });
}

describeEachBroker("OTA end to end on %s", (broker: BrokerKind) => {
  const h = harness(broker);

  it("AWS seed: 1.0.0 → 1.1.0, restart into ota_0, self-test, confirmed, reported, delta cleared", async () => {
    const cloud = await h.cloud();
    cloud.blobs.publish("firmware", awsBlobName("1.1.0"), image("1.1.0"));
    const d = h.device(cloud, "esp32-01");
    await waitUntil(async () => (getPath(await reportedOf(cloud, "esp32-01"), ["config", "firmware_version"]) === "1.0.0" ? true : undefined), 30_000, "1.0.0 reported");
    await setDesiredVersion(cloud, "esp32-01", "1.1.0");
    const u = await updateState(cloud, "esp32-01", "Valid");
    expect(u).toMatchObject({ from: "1.0.0", to: "1.1.0", bytes: IMAGE_SIZE, total: IMAGE_SIZE, percent: 100 });
    expect(u["lastError"]).toBeUndefined(); // reported as null: the twin drops the member
    expect(d.runningVersion).toBe("1.1.0");
    expect(d.lastBoot.partition.label).toBe("ota_0");
    expect(d.ota.state).toBe("Valid");
    expect(d.boots).toBe(2);
    expect(d.bytesDownloaded).toBe(IMAGE_SIZE);
    await waitUntil(async () => (getPath(await reportedOf(cloud, "esp32-01"), ["config", "firmware_version"]) === "1.1.0" ? true : undefined), 30_000, "1.1.0 reported");
    const doc = (await cloud.shadows.getShadow("esp32-01"))!;
    expect((doc["state"] as JsonObject)["delta"]).toBeUndefined();
  });

  it("Azure seed: updateVersion 1.1.0 from the blob container's v1_1_0.bin; firmwareVersion reported", async () => {
    const cloud = await h.cloud();
    cloud.blobs.publish("firmware", azureBlobName("1.1.0"), image("1.1.0"));
    const d = h.device(cloud, "esp32-az-01");
    await waitUntil(async () => ((await reportedOf(cloud, "esp32-az-01"))["firmwareVersion"] === "1.0.0" ? true : undefined), 30_000, "1.0.0 reported");
    await setDesiredVersion(cloud, "esp32-az-01", "1.1.0");
    await updateState(cloud, "esp32-az-01", "Valid");
    expect(d.runningVersion).toBe("1.1.0");
    await waitUntil(async () => ((await reportedOf(cloud, "esp32-az-01"))["firmwareVersion"] === "1.1.0" ? true : undefined), 30_000, "1.1.0 reported");
  });
});

describe("OTA end to end on aedes", () => {
  const h = harness("aedes");

  it("Azure direct method firmwareUpdate {version} starts the same update", async () => {
    const cloud = await h.cloud();
    cloud.blobs.publish("firmware", azureBlobName("1.1.0"), image("1.1.0"));
    const d = h.device(cloud, "esp32-az-01");
    await d.waitFor((s) => s.connected, 30_000, "connected");
    const reply = await cloud.twins.invokeMethod("esp32-az-01", "firmwareUpdate", { version: "1.1.0" });
    expect(reply.status).toBe(200);
    await updateState(cloud, "esp32-az-01", "Valid");
    expect(d.runningVersion).toBe("1.1.0");
  });

  it("an image whose self-test fails is marked invalid; the old image reports RolledBack and why", async () => {
    const cloud = await h.cloud();
    cloud.blobs.publish("firmware", awsBlobName("1.1.0"), image("1.1.0", SELFTEST_FAIL_MARKER));
    const d = h.device(cloud, "esp32-01");
    await d.waitFor((s) => s.connected, 30_000, "connected");
    await setDesiredVersion(cloud, "esp32-01", "1.1.0");
    const u = await updateState(cloud, "esp32-01", "RolledBack");
    expect(u).toMatchObject({ from: "1.0.0", to: "1.1.0" });
    expect((u["lastError"] as JsonObject)["code"]).toBe("OTA_SELF_TEST_FAILED");
    expect(d.runningVersion).toBe("1.0.0");
    expect(d.boots).toBe(3); // 1.0.0, 1.1.0 (fails), 1.0.0 again
    expect(d.lastBoot.partition.label).toBe("factory");
    expect(getPath(await reportedOf(cloud, "esp32-01"), ["config", "firmware_version"])).toBe("1.0.0");
    // Desired still says 1.1.0; the device does not try it again (no update → rollback loop).
    const requests = d.downloadRequests;
    await cloud.shadows.updateDesired("esp32-01", { config: { interval: 5 } });
    await waitUntil(async () => (getPath(await reportedOf(cloud, "esp32-01"), ["config", "interval"]) === 5 ? true : undefined), 30_000, "interval");
    expect(d.downloadRequests).toBe(requests);
  });

  it("a power cut mid-download: the next power-on resumes from the durable sector (≤ 4 KiB again)", async () => {
    const cloud = await h.cloud();
    cloud.blobs.publish("firmware", awsBlobName("1.1.0"), image("1.1.0"));
    const d = h.device(cloud, "esp32-01");
    await d.waitFor((s) => s.connected, 30_000, "connected");
    d.powerCutAtByte(100_000, 3);
    await setDesiredVersion(cloud, "esp32-01", "1.1.0");
    await updateState(cloud, "esp32-01", "Valid");
    expect(d.restarts[0]).toBe("power cut");
    expect(d.runningVersion).toBe("1.1.0");
    expect(d.bytesDownloaded - IMAGE_SIZE).toBeGreaterThanOrEqual(0);
    expect(d.bytesDownloaded - IMAGE_SIZE).toBeLessThanOrEqual(4096); // reads stop at sector boundaries, the record is persisted there
    const ranged = cloud.blobs.requestsFor("firmware/1.1.0.bin").filter((r) => r.range !== undefined);
    expect(ranged.length).toBe(1);
    expect(ranged[0]!.status).toBe(206);
  });

  it("a cut connection is retried and resumed with If-Range", async () => {
    const cloud = await h.cloud();
    cloud.blobs.publish("firmware", awsBlobName("1.1.0"), image("1.1.0"));
    cloud.blobs.setFault("firmware/1.1.0.bin", { cutAtByte: 70_000 });
    const d = h.device(cloud, "esp32-01");
    await d.waitFor((s) => s.connected, 30_000, "connected");
    await setDesiredVersion(cloud, "esp32-01", "1.1.0");
    await updateState(cloud, "esp32-01", "Valid");
    const reqs = cloud.blobs.requestsFor("firmware/1.1.0.bin");
    expect(reqs.length).toBe(2);
    expect(reqs[1]!.range).toBe("bytes=69632-");
    expect(reqs[1]!.ifRange).toMatch(/^"/);
    expect(d.bytesDownloaded).toBe(IMAGE_SIZE + 70_000 - 69632);
  });

  for (const [name, setup, code] of [
    ["404", (c: LocalCloud) => { void c; }, "DOWNLOAD_HTTP_STATUS"],
    ["an HTML page", (c: LocalCloud) => { c.blobs.publish("firmware", "1.1.0.bin", image("1.1.0")); c.blobs.setFault("firmware/1.1.0.bin", { html: true }, { times: "always" }); }, "DOWNLOAD_NOT_AN_IMAGE"],
    ["another version in the descriptor", (c: LocalCloud) => { c.blobs.publish("firmware", "1.1.0.bin", image("1.2.0")); }, "OTA_VERSION_MISMATCH"],
  ] as const) {
    it(`refused: ${name} → ${code}; the device stays on 1.0.0 with nothing written`, async () => {
      const cloud = await h.cloud();
      setup(cloud);
      const d = h.device(cloud, "esp32-01");
      await d.waitFor((s) => s.connected, 30_000, "connected");
      await setDesiredVersion(cloud, "esp32-01", "1.1.0");
      const u = await updateState(cloud, "esp32-01", "Failed");
      expect((u["lastError"] as JsonObject)["code"]).toBe(code);
      expect(d.runningVersion).toBe("1.0.0");
      expect(d.boots).toBe(1);
      const flash = fs.readFileSync(d.flashPath);
      const ota0 = flash.subarray(0x110000, 0x110000 + 4096); // ota_0 (partitions/partitions.csv)
      expect(ota0.every((b) => b === 0xff)).toBe(true);
    });
  }

  for (const [name, fault, code] of [
    ["a redirect to a host not on the allow-list", { redirect: "https://evil.example/firmware/1.1.0.bin" }, "DOWNLOAD_HOST_NOT_ALLOWED"],
    ["more bytes than announced", { extraBytes: 100 }, "DOWNLOAD_TOO_LONG"],
  ] as const) {
    it(`refused: ${name} → ${code}`, async () => {
      const cloud = await h.cloud();
      cloud.blobs.publish("firmware", "1.1.0.bin", image("1.1.0"));
      cloud.blobs.setFault("firmware/1.1.0.bin", fault, { times: "always" });
      const d = h.device(cloud, "esp32-01");
      await d.waitFor((s) => s.connected, 30_000, "connected");
      await setDesiredVersion(cloud, "esp32-01", "1.1.0");
      const u = await updateState(cloud, "esp32-01", "Failed");
      expect((u["lastError"] as JsonObject)["code"]).toBe(code);
      expect(d.runningVersion).toBe("1.0.0");
      expect(d.boots).toBe(1);
    });
  }

  for (const [name, fault] of [
    ["a stalled server (idle timeout)", { stallAtByte: 50_000 }],
    ["503 Service Unavailable", { status: 503 }],
  ] as const) {
    it(`retried: ${name}; the attempt and the first failure are visible while it retries`, async () => {
      const cloud = await h.cloud();
      cloud.blobs.publish("firmware", "1.1.0.bin", image("1.1.0"));
      // The fault holds until the test has seen the retry in the reported state, so a slow poll on a
      // loaded machine cannot miss it (the attempts are bounded by count, not by the clock).
      cloud.blobs.setFault("firmware/1.1.0.bin", fault, { times: "always" });
      const d = h.device(cloud, "esp32-01", {
        firmware: { baseUrl: cloud.blobBaseUrl, ca: cloud.credentials("esp32-01").ca, idleTimeoutMs: 300 },
        ota: { retry: { initialMs: 500, maxMs: 1_000, maxAttempts: 60 }, selfTestWindowMs: 20_000 },
      });
      await d.waitFor((s) => s.connected, 30_000, "connected");
      await setDesiredVersion(cloud, "esp32-01", "1.1.0");
      const retrying = await waitUntil(async () => {
        const u = (await reportedOf(cloud, "esp32-01"))["firmwareUpdate"] as JsonObject | undefined;
        return typeof u?.["attempt"] === "number" && u["attempt"] >= 2 ? u : undefined;
      }, 30_000, "attempt 2 reported");
      expect(retrying["state"]).toBe("Downloading");
      expect((retrying["lastError"] as JsonObject)["code"]).toBe("status" in fault ? "DOWNLOAD_HTTP_STATUS" : "DOWNLOAD_TIMEOUT");
      cloud.blobs.clearFaults("firmware/1.1.0.bin");
      await updateState(cloud, "esp32-01", "Valid");
      expect(d.runningVersion).toBe("1.1.0");
    });
  }

  it("a plain http:// base URL is refused before any connection: DOWNLOAD_URL_INVALID", async () => {
    const cloud = await h.cloud();
    const d = h.device(cloud, "esp32-01", { firmware: { baseUrl: cloud.blobBaseUrl.replace("https:", "http:"), ca: cloud.credentials("esp32-01").ca, allowedHosts: ["127.0.0.1"] } });
    await d.waitFor((s) => s.connected, 30_000, "connected");
    await setDesiredVersion(cloud, "esp32-01", "1.1.0");
    const u = await updateState(cloud, "esp32-01", "Failed");
    expect((u["lastError"] as JsonObject)["code"]).toBe("DOWNLOAD_URL_INVALID");
    expect(d.downloadRequests).toBe(0);
  });

  it("a blob server whose certificate is not from the pinned CA: DOWNLOAD_TLS", async () => {
    const cloud = await h.cloud();
    cloud.blobs.publish("firmware", "1.1.0.bin", image("1.1.0"));
    const other = LocalPki.open(path.join(h.dir(), "other-ca"));
    const d = h.device(cloud, "esp32-01", { firmware: { baseUrl: cloud.blobBaseUrl, ca: fs.readFileSync(other.caPath, "utf8") } });
    await d.waitFor((s) => s.connected, 30_000, "connected");
    await setDesiredVersion(cloud, "esp32-01", "1.1.0");
    const u = await updateState(cloud, "esp32-01", "Failed");
    expect((u["lastError"] as JsonObject)["code"]).toBe("DOWNLOAD_TLS");
    expect(d.runningVersion).toBe("1.0.0");
  });
});
