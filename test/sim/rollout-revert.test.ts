/**
 * A rollout cancelled while its devices download, end to end through the local cloud: `npm run cloud --
 * rollout start|cancel` (runCli) against a running cloud whose engine writes desired through the AWS SDK
 * (AWS device) and the twin service (Azure device); simulated devices run the device app over the native OTA
 * slot on flash files and HTTPS downloads from the blob server.
 *
 * The firmware blob is throttled and stalls before its end, so both devices are mid-download whatever the
 * machine's load when the cancel puts desired back — to 1.0.0 on the AWS device (the value it reports: AWS
 * sends no delta; the device learns it from the update/accepted the service publishes for the engine's update,
 * and gets the document) and to none on the Azure device (a desired PATCH). Both stop, report Idle with OTA_UPDATE_CANCELLED, and after a power cycle
 * still boot the factory 1.0.0 (ota_0 never selected). Then, without restarting them, the same 1.1.0 is
 * rolled out again and both install it. Every wait is bounded (waitUntil); nothing is timed.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { getPath } from "../../src/core/config-diff";
import type { JsonObject } from "../../src/core/json";
import { awsBlobName, azureBlobName } from "../../src/core/firmware-url";
import { runCli } from "../../src/sim/cli";
import { SimDevice } from "../../src/sim/device";
import { LocalCloud } from "../../src/sim/local-cloud";
import { buildImage } from "../../src/tools/esp-image";
import { waitUntil } from "./wait-until";

jest.setTimeout(240_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki"); // shared across tests: RSA keys take time
const SIZE = 256 * 1024;
const STALL = 160 * 1024;

let dir = "";
const open: Array<{ close(): Promise<void> }> = [];
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-revert-")); });
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli([...args, "--data-dir", path.join(dir, "cloud")], { print: (l) => out.push(l), error: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

type View = { id: string; state: string; devices: Record<string, { outcome: string; status: string | null; error: string | null }> };

async function docOf(cloud: LocalCloud, id: string): Promise<{ desired: JsonObject; reported: JsonObject }> {
  if (cloud.devices.get(id) === "azure") {
    const t = await cloud.twins.getTwin(id);
    return { desired: t.desired, reported: t.reported };
  }
  const state = ((await cloud.shadows.getShadow(id))?.["state"] ?? {}) as JsonObject;
  return { desired: (state["desired"] ?? {}) as JsonObject, reported: (state["reported"] ?? {}) as JsonObject };
}

const RUNNING: Record<string, string[]> = { aws: ["config", "firmware_version"], azure: ["firmwareVersion"] };

function update(doc: { reported: JsonObject }): JsonObject {
  return (doc.reported["firmwareUpdate"] ?? {}) as JsonObject;
}

describe("a rollout cancelled mid-download", () => {
  it("stops the downloads (nothing staged, the factory image still boots) and the same version rolls out again", async () => {
    const ids = ["rv-aws", "rv-az"];
    const cloud = await LocalCloud.start({ dataDir: path.join(dir, "cloud"), certsDir: PKI, devices: [{ id: "rv-aws", cloud: "aws" }, { id: "rv-az", cloud: "azure" }] });
    open.push(cloud);
    const img = buildImage({ version: "1.1.0", projectName: "shadow-ota", size: SIZE, seed: 9 });
    cloud.blobs.publish("firmware", awsBlobName("1.1.0"), img);
    cloud.blobs.publish("firmware", azureBlobName("1.1.0"), img);
    // Every download of the first rollout: about 32 KiB/s (progress reports go out), and never past STALL.
    for (const name of [awsBlobName("1.1.0"), azureBlobName("1.1.0")]) {
      cloud.blobs.setFault(`firmware/${name}`, { bytesPerSecond: 32 * 1024, stallAtByte: STALL }, { times: "always" });
    }
    // The AWS device's desired already names what it runs, so the revert writes 1.0.0 back (no delta).
    await cloud.shadows.updateDesired("rv-aws", { config: { firmware_version: "1.0.0" } });

    const devices = new Map(ids.map((id) => {
      const c = cloud.credentials(id);
      const d = SimDevice.start({
        id, cloud: c.cloud, host: c.host, port: c.port, ca: c.ca, cert: c.cert, key: c.key,
        dataDir: path.join(dir, "devices", id), log: { log() {} }, firmware: { baseUrl: cloud.blobBaseUrl, ca: c.ca },
        ota: { retry: { initialMs: 100, maxMs: 400, maxAttempts: 4 }, selfTestWindowMs: 30_000, progressIntervalMs: 200 }, powerOffMs: 50, logs: false,
      });
      open.push(d);
      return [id, d] as const;
    }));
    for (const id of ids) {
      await waitUntil(async () => (getPath((await docOf(cloud, id)).reported, RUNNING[cloud.devices.get(id)!]!) === "1.0.0" ? true : undefined), 60_000, `${id} reports 1.0.0`);
    }

    expect((await cli(["rollout", "start", "--version", "1.1.0", "--devices", ids.join(","), "--waves", "100%", "--max-failure", "50%"])).code).toBe(0);
    // Both mid-download: some bytes reported, fewer than the image (the blob stalls before its end).
    for (const id of ids) {
      await waitUntil(async () => {
        const u = update(await docOf(cloud, id));
        return u["state"] === "Downloading" && typeof u["bytes"] === "number" && u["bytes"] > 0 ? true : undefined;
      }, 120_000, `${id} downloading`);
    }
    const cancelled = await cli(["rollout", "cancel"]);
    expect(cancelled.code).toBe(0);

    for (const id of ids) {
      const u = await waitUntil(async () => {
        const v = update(await docOf(cloud, id));
        return v["state"] === "Idle" ? v : undefined;
      }, 120_000, `${id} reports the cancel`);
      expect(u).toMatchObject({ to: "1.1.0", lastError: { code: "OTA_UPDATE_CANCELLED" } });
      expect(devices.get(id)!.ota.state).toBe("Idle");
    }
    expect(getPath((await docOf(cloud, "rv-aws")).desired, ["config", "firmware_version"])).toBe("1.0.0");
    expect(getPath((await docOf(cloud, "rv-az")).desired, ["updateVersion"])).toBeUndefined();
    const view = JSON.parse((await cli(["rollout", "status"])).out) as View;
    expect(view.state).toBe("cancelled");
    for (const id of ids) expect(view.devices[id]!.outcome).toBe("reverted");

    // A power cycle: the boot partition was never switched, the factory 1.0.0 boots, no ota_0 entry chosen.
    for (const id of ids) {
      const d = devices.get(id)!;
      const boots = d.boots;
      d.restart("test: power cycle after the cancel");
      await waitUntil(() => (d.boots > boots && d.connected ? true : undefined), 60_000, `${id} powered on again`);
      expect(d.lastBoot.slot).toBe(-1);
      expect(d.lastBoot.entry).toBe(-1);
      expect(d.runningVersion).toBe("1.0.0");
      expect(d.ota.state).toBe("Idle");
    }

    // The same version again, the blob served in full: both install it.
    cloud.blobs.clearFaults();
    const again = await cli(["rollout", "start", "--version", "1.1.0", "--devices", ids.join(","), "--waves", "100%", "--max-failure", "50%"]);
    expect(again.code).toBe(0);
    const done = await waitUntil(async () => {
      const v = JSON.parse((await cli(["rollout", "status"])).out) as View;
      return v.state === "done" || v.state === "aborted" ? v : undefined;
    }, 180_000, "the second rollout finishes");
    expect(done.state).toBe("done");
    for (const id of ids) {
      expect(done.devices[id]!.outcome).toBe("updated");
      expect(devices.get(id)!.runningVersion).toBe("1.1.0");
      expect(devices.get(id)!.ota.state).toBe("Valid");
    }
  });
});
