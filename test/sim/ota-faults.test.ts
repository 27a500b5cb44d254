/**
 * Random faults against the whole stack (local cloud on aedes, HTTPS blob server, simulated device on its
 * flash file): for seeded random sequences of power cuts (at a download byte, or after a random number of
 * flash operations), connections cut by the server
 * and restarts at random moments, the device always ends on the old or the new version with a bootable
 * flash, its reported state converges on what it runs, and it downloads at most one sector again per
 * interruption. The same property over fake ports, with many more sequences, is in
 * test/core/ota-controller-property.test.ts; this one shows it holds for the real parts.
 * Bounded: 4 sequences, a few events each, every wait with a limit.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { getPath } from "../../src/core/config-diff";
import type { JsonObject } from "../../src/core/json";
import { SimDevice } from "../../src/sim/device";
import { LocalCloud } from "../../src/sim/local-cloud";
import { buildImage } from "../../src/tools/esp-image";
import { xorshift32 as rng } from "../core/ota-fakes";
import { waitUntil } from "./wait-until";

jest.setTimeout(180_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki");
const SIZE = 192 * 1024;


describe("OTA under random faults (aedes, HTTPS, native slot)", () => {
  let dir = "";
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-faults-")); });
  afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }); });

  for (const seed of [101, 202, 303, 404]) {
    it(`seed ${seed}: ends on 1.0.0 or 1.1.0, reported state converges, ≤ 1 sector again per interruption`, async () => {
      const rand = rng(seed);
      const cloud = await LocalCloud.start({ broker: "aedes", dataDir: path.join(dir, "cloud"), certsDir: PKI, devices: [{ id: "esp32-01", cloud: "aws" }], blobs: { bytesPerSecond: 400 * 1024 } });
      const c = cloud.credentials("esp32-01");
      const d = SimDevice.start({
        id: c.id, cloud: c.cloud, host: c.host, port: c.port, ca: c.ca, cert: c.cert, key: c.key,
        dataDir: path.join(dir, "device"), log: { log() {} }, powerOffMs: 20,
        firmware: { baseUrl: cloud.blobBaseUrl, ca: c.ca },
        ota: { retry: { initialMs: 100, maxMs: 400, maxAttempts: 20 }, selfTestWindowMs: 15_000 },
      });
      try {
        cloud.blobs.publish("firmware", "1.1.0.bin", buildImage({ version: "1.1.0", projectName: "shadow-ota", size: SIZE, seed }));
        await d.waitFor((s) => s.connected, 30_000, "connected");
        let interruptions = 0;
        const events = 2 + Math.floor(rand() * 3);
        for (let i = 0; i < events; i++) {
          const pick = rand();
          if (pick < 0.3) { d.powerCutAtByte(Math.floor(rand() * SIZE), i + 1); interruptions++; }
          else if (pick < 0.45) { d.powerCutAfterOps(1 + Math.floor(rand() * 100), i + 1); interruptions++; }
          else if (pick < 0.7) { cloud.blobs.setFault("firmware/1.1.0.bin", { cutAtByte: Math.floor(rand() * SIZE) }); interruptions++; }
        }
        await cloud.shadows.updateDesired("esp32-01", { config: { firmware_version: "1.1.0" } });
        // A restart at a random moment (perhaps mid-download, perhaps while pending verification).
        if (rand() < 0.7) {
          await new Promise((r) => setTimeout(r, Math.floor(rand() * 800)));
          d.restart("test: restart at a random moment");
          interruptions++;
        }
        const final = await waitUntil(async () => {
          const doc = await cloud.shadows.getShadow("esp32-01");
          const reported = ((doc?.["state"] as JsonObject | undefined)?.["reported"] ?? {}) as JsonObject;
          const u = reported["firmwareUpdate"] as JsonObject | undefined;
          const state = u?.["state"];
          const running = getPath(reported, ["config", "firmware_version"]);
          if ((state === "Valid" && running === "1.1.0") || (state === "RolledBack" && running === "1.0.0")) return { state, running };
          return undefined;
        }, 120_000, "a final state");
        expect(["1.0.0", "1.1.0"]).toContain(d.runningVersion);
        expect(final.running).toBe(d.runningVersion);
        expect(final.state).toBe(d.ota.state);
        expect(d.bytesDownloaded - SIZE).toBeLessThanOrEqual(interruptions * 4096);
        expect(d.bytesDownloaded).toBeGreaterThanOrEqual(SIZE);
      } finally {
        await d.close();
        await cloud.close();
      }
    });
  }
});
