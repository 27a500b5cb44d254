/**
 * The held magic byte (src/native/core/ota_writer.h) through the path a device takes: the local cloud (broker
 * over mutual TLS, shadow service, the HTTPS blob server with its fault injection), a simulated device whose
 * firmware trusts one signing key, the OTA controller, the HTTPS byte source and the native slot on a flash
 * file. The blob server sends the whole image of a signed release, then stalls before its signature block;
 * the device times out and gives the update up. Later its running image is damaged (a flash fault), and the
 * bootloader, which tries every other app slot when the selected one does not load, must not boot the
 * image whose signature was never checked. Before the held byte it did: ota_0 held the whole image, header
 * included, and booted as 1.1.0. Runs on aedes; every wait is bounded (waitUntil times out).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { getPath } from "../../src/core/config-diff";
import { awsBlobName } from "../../src/core/firmware-url";
import type { JsonObject } from "../../src/core/json";
import { OTA_CODES } from "../../src/native/ota-errors";
import { HostOtaSlot } from "../../src/native/ota-slot";
import { SimDevice } from "../../src/sim/device";
import { LocalCloud } from "../../src/sim/local-cloud";
import { buildImage } from "../../src/tools/esp-image";
import { generateSigningKey, signImage } from "../../src/tools/image-sign";
import { waitUntil } from "../sim/wait-until";
import { outcome } from "./harness";

jest.setTimeout(120_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki"); // shared with the other suites: RSA keys take time
const IMAGE_SIZE = 128 * 1024;
const trusted = generateSigningKey();

let dir = "";
const open: Array<{ close(): Promise<void> }> = [];
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-held-magic-")); });
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function reported(cloud: LocalCloud, id: string): Promise<JsonObject> {
  const doc = await cloud.shadows.getShadow(id);
  return ((doc?.["state"] as JsonObject | undefined)?.["reported"] as JsonObject | undefined) ?? {};
}

function readAt(file: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(file, "r");
  try {
    const b = Buffer.alloc(length);
    fs.readSync(fd, b, 0, length, offset);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

it("a signed release whose download stalls before the signature block: after the running image is damaged, the bootloader's fall-back does not boot it", async () => {
  const keyFile = path.join(dir, "fw.pub.pem");
  fs.writeFileSync(keyFile, trusted.publicKeyPem);
  const cloud = await LocalCloud.start({
    broker: "aedes", dataDir: path.join(dir, "cloud"), certsDir: PKI, methodTimeoutMs: 5_000,
    devices: [{ id: "esp32-01", cloud: "aws" }],
  });
  open.push(cloud);
  const img = buildImage({ version: "1.1.0", projectName: "shadow-ota", size: IMAGE_SIZE, seed: 17 });
  cloud.blobs.publish("firmware", awsBlobName("1.1.0"), signImage(img, trusted.privateKeyPem).bytes);
  // Every byte of the image, then nothing: the signature block never comes and the response never ends.
  cloud.blobs.setFault(`firmware/${awsBlobName("1.1.0")}`, { stallAtByte: img.length }, { times: "always" });

  const c = cloud.credentials("esp32-01");
  const d = SimDevice.start({
    id: "esp32-01", cloud: c.cloud, host: c.host, port: c.port, ca: c.ca, cert: c.cert, key: c.key,
    dataDir: path.join(dir, "device"), log: { log() {} }, signingKeyFile: keyFile,
    firmware: { baseUrl: cloud.blobBaseUrl, ca: c.ca, idleTimeoutMs: 300 },
    ota: { retry: { initialMs: 100, maxMs: 100, maxAttempts: 1 }, selfTestWindowMs: 20_000 },
    powerOffMs: 50,
  });
  open.push(d);
  await waitUntil(async () => (getPath(await reported(cloud, "esp32-01"), ["config", "firmware_version"]) === "1.0.0" ? true : undefined), 30_000, "1.0.0 reported");
  await cloud.shadows.updateDesired("esp32-01", { config: { firmware_version: "1.1.0" } });
  const failed = await waitUntil(async () => {
    const u = (await reported(cloud, "esp32-01"))["firmwareUpdate"] as JsonObject | undefined;
    return u?.["to"] === "1.1.0" && u["state"] === "Failed" ? u : undefined;
  }, 60_000, "firmwareUpdate 1.1.0 Failed");
  expect((failed["lastError"] as JsonObject)["code"]).toBe("OTA_RETRIES_EXHAUSTED"); // one attempt, timed out
  expect(d.bytesDownloaded).toBe(img.length); // the whole image came; end() never ran
  expect(d.runningVersion).toBe("1.0.0");
  await d.close(); // power off

  const probe = new HostOtaSlot({ flashPath: d.flashPath });
  const parts = probe.partitions();
  probe.close();
  const factory = parts.find((p) => p.label === "factory")!;
  const ota0 = parts.find((p) => p.label === "ota_0")!;
  const slot = readAt(d.flashPath, ota0.address, img.length);
  expect(slot.subarray(1).equals(Buffer.from(img.subarray(1)))).toBe(true); // the image is in ota_0 ...
  expect(slot[0]).toBe(0xff); // ... all but its magic byte

  // A flash fault in the running image: one byte of its first segment's data.
  const at = factory.address + 600;
  const fd = fs.openSync(d.flashPath, "r+");
  try {
    fs.writeSync(fd, Buffer.from([readAt(d.flashPath, at, 1)[0]! ^ 0x5a]), 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
  const slotAfter = new HostOtaSlot({ flashPath: d.flashPath });
  try {
    // The factory app no longer loads, ota_0 is refused at its first byte, nothing else is there.
    expect(outcome(() => slotAfter.boot())).toBe(OTA_CODES.OTA_NO_BOOTABLE_APP);
  } finally {
    slotAfter.close();
  }
});
