/**
 * Signed images end to end (docs/signing.md), through the path a device takes: the local cloud (broker over
 * mutual TLS, shadow and twin services, the HTTPS blob server), a simulated device whose firmware trusts one
 * ECDSA P-256 key (SimDeviceOptions.signingKeyFile, the simulator's stand-in for the key resource built into
 * the ESP32 firmware), the OTA controller and the native slot verifying the signature in C before the boot
 * switch. An unsigned image and one signed by another key are refused with their stable codes in
 * `reported.firmwareUpdate.lastError`, the device stays on its running image without a restart; an image
 * signed with the trusted key installs, restarts, passes its self-test and is confirmed. A device without a
 * key takes the signed image as before. Runs on aedes; every wait is bounded (waitUntil times out).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { getPath } from "../../src/core/config-diff";
import { awsBlobName, azureBlobName } from "../../src/core/firmware-url";
import type { JsonObject } from "../../src/core/json";
import { OTA_CODES } from "../../src/native/ota-errors";
import { SimDevice, type SimDeviceOptions } from "../../src/sim/device";
import { LocalCloud } from "../../src/sim/local-cloud";
import { buildImage } from "../../src/tools/esp-image";
import { generateSigningKey, publicKeyDer, signImage } from "../../src/tools/image-sign";
import { waitUntil } from "./wait-until";

jest.setTimeout(120_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki"); // shared with the other suites: RSA keys take time
const IMAGE_SIZE = 128 * 1024;
const image = (version: string): Uint8Array => buildImage({ version, projectName: "shadow-ota", size: IMAGE_SIZE, seed: 13 });
const trusted = generateSigningKey();
const other = generateSigningKey();

let dir = "";
const open: Array<{ close(): Promise<void> }> = [];
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-signed-")); });
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function startCloud(): Promise<LocalCloud> {
  const cloud = await LocalCloud.start({
    broker: "aedes", dataDir: path.join(dir, "cloud"), certsDir: PKI, methodTimeoutMs: 5_000,
    devices: [{ id: "esp32-01", cloud: "aws" }, { id: "esp32-az-01", cloud: "azure" }],
  });
  open.push(cloud);
  return cloud;
}

function startDevice(cloud: LocalCloud, id: string, extra: Partial<SimDeviceOptions> = {}): SimDevice {
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
}

async function reportedOf(cloud: LocalCloud, id: string): Promise<JsonObject> {
  if (cloud.devices.get(id) === "azure") return (await cloud.twins.getTwin(id)).reported;
  const doc = await cloud.shadows.getShadow(id);
  return ((doc?.["state"] as JsonObject | undefined)?.["reported"] as JsonObject | undefined) ?? {};
}

/** Waits for `reported.firmwareUpdate` of `version` in state `want`. */
async function updateOf(cloud: LocalCloud, id: string, version: string, want: string): Promise<JsonObject> {
  return waitUntil(async () => {
    const u = (await reportedOf(cloud, id))["firmwareUpdate"] as JsonObject | undefined;
    return u?.["to"] === version && u["state"] === want ? u : undefined;
  }, 60_000, `${id}: firmwareUpdate ${version} ${want}`);
}

async function setDesired(cloud: LocalCloud, id: string, version: string): Promise<void> {
  if (cloud.devices.get(id) === "azure") await cloud.twins.updateDesired(id, { updateVersion: version });
  else await cloud.shadows.updateDesired(id, { config: { firmware_version: version } });
}

it("AWS seed, a device with a signing key: unsigned → OTA_SIGNATURE_MISSING, other key → OTA_SIGNATURE_INVALID, both without a restart; then the signed image installs", async () => {
  const keyFile = path.join(dir, "fw.pub.pem");
  fs.writeFileSync(keyFile, trusted.publicKeyPem);
  const cloud = await startCloud();
  cloud.blobs.publish("firmware", awsBlobName("1.1.0"), image("1.1.0"));
  cloud.blobs.publish("firmware", awsBlobName("1.2.0"), signImage(image("1.2.0"), other.privateKeyPem).bytes);
  const signed = signImage(image("1.3.0"), trusted.privateKeyPem).bytes;
  cloud.blobs.publish("firmware", awsBlobName("1.3.0"), signed);
  const d = startDevice(cloud, "esp32-01", { signingKeyFile: keyFile });
  await waitUntil(async () => (getPath(await reportedOf(cloud, "esp32-01"), ["config", "firmware_version"]) === "1.0.0" ? true : undefined), 30_000, "1.0.0 reported");

  await setDesired(cloud, "esp32-01", "1.1.0");
  const missing = await updateOf(cloud, "esp32-01", "1.1.0", "Failed");
  expect(missing["lastError"]).toMatchObject({ code: OTA_CODES.OTA_SIGNATURE_MISSING, platformCode: 0x710f });
  expect(d.bytesDownloaded).toBe(IMAGE_SIZE); // the whole image came and was written; end() refused it
  expect(d.runningVersion).toBe("1.0.0");
  expect(d.boots).toBe(1);

  await setDesired(cloud, "esp32-01", "1.2.0");
  const invalid = await updateOf(cloud, "esp32-01", "1.2.0", "Failed");
  expect(invalid["lastError"]).toMatchObject({ code: OTA_CODES.OTA_SIGNATURE_INVALID, platformCode: 0x7110 });
  expect(d.runningVersion).toBe("1.0.0");
  expect(d.boots).toBe(1);
  expect(d.ota.state).toBe("Failed");

  await setDesired(cloud, "esp32-01", "1.3.0");
  const ok = await updateOf(cloud, "esp32-01", "1.3.0", "Valid");
  expect(ok).toMatchObject({ from: "1.0.0", bytes: signed.length, total: signed.length, percent: 100 });
  expect(d.runningVersion).toBe("1.3.0");
  expect(d.boots).toBe(2);
  expect(d.lastBoot.partition.label).toBe("ota_0");
});

it("Azure seed: a device with a DER key installs the signed v1_1_0.bin; a device without a key takes it too", async () => {
  const keyFile = path.join(dir, "fw.pub.der");
  fs.writeFileSync(keyFile, publicKeyDer(trusted.publicKeyPem));
  const cloud = await startCloud();
  const signed = signImage(image("1.1.0"), trusted.privateKeyPem).bytes;
  cloud.blobs.publish("firmware", azureBlobName("1.1.0"), signed);
  cloud.blobs.publish("firmware", awsBlobName("1.1.0"), signed);
  const az = startDevice(cloud, "esp32-az-01", { signingKeyFile: keyFile });
  const aws = startDevice(cloud, "esp32-01"); // no key: behaviour as without signing
  await waitUntil(async () => ((await reportedOf(cloud, "esp32-az-01"))["firmwareVersion"] === "1.0.0" ? true : undefined), 30_000, "az 1.0.0 reported");
  await waitUntil(async () => (getPath(await reportedOf(cloud, "esp32-01"), ["config", "firmware_version"]) === "1.0.0" ? true : undefined), 30_000, "aws 1.0.0 reported");
  await setDesired(cloud, "esp32-az-01", "1.1.0");
  await setDesired(cloud, "esp32-01", "1.1.0");
  await updateOf(cloud, "esp32-az-01", "1.1.0", "Valid");
  await updateOf(cloud, "esp32-01", "1.1.0", "Valid");
  expect(az.runningVersion).toBe("1.1.0");
  expect(aws.runningVersion).toBe("1.1.0");
});

it("a key file that is not a P-256 public key stops the device at power-on with IMAGE_SIGN_BAD_KEY", async () => {
  const keyFile = path.join(dir, "bad.pem");
  fs.writeFileSync(keyFile, "not a key");
  const cloud = await startCloud();
  expect(() => startDevice(cloud, "esp32-01", { signingKeyFile: keyFile })).toThrow(expect.objectContaining({ code: "IMAGE_SIGN_BAD_KEY" }));
});
