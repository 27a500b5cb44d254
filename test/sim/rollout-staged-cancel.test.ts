/**
 * A rollout cancelled while one device is already Staged (image written and verified, boot partition
 * switched, restart pending) and another is still downloading, end to end: `npm run cloud -- rollout
 * start|cancel|status` (runCli) against a running local cloud; simulated devices run the device app over the
 * native OTA slot on flash files and HTTPS downloads from the blob server.
 *
 * The AWS device's restart is held (its `onRestart` records the request, as a device process's supervisor
 * would before starting it again), so it is Staged whatever the machine's load when the cancel puts desired
 * back; the Azure device's blob stalls before its end, so it is mid-download. After the cancel the AWS device
 * is started again from its flash and NVS files: it boots the new image (too late to cancel, docs/ota-update.md)
 * and its self-test passes (then it refuses desired's 1.0.0 as a downgrade). The rollout must say so — `installedAfterCancel`, not `reverted` — in the CLI's
 * status (the admin API's view, which the fleet page also reads), while the downloading device, which did
 * stop, stays `reverted`. Every wait is bounded (waitUntil); nothing is timed.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { getPath } from "../../src/core/config-diff";
import type { JsonObject } from "../../src/core/json";
import { awsBlobName, azureBlobName } from "../../src/core/firmware-url";
import { runCli } from "../../src/sim/cli";
import { SimDevice, type SimDeviceOptions } from "../../src/sim/device";
import { LocalCloud } from "../../src/sim/local-cloud";
import { buildImage } from "../../src/tools/esp-image";
import { waitUntil } from "./wait-until";

jest.setTimeout(240_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki"); // shared across tests: RSA keys take time
const SIZE = 128 * 1024;
const STALL = 64 * 1024;

let dir = "";
const open: Array<{ close(): Promise<void> }> = [];
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-staged-cancel-")); });
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

type View = {
  id: string; state: string;
  waves: Array<{ updated: number; failed: number; pending: number; reverted: number; installedAfterCancel: number }>;
  devices: Record<string, { outcome: string; status: string | null; error: string | null }>;
};

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

describe("a rollout cancelled while a device is Staged", () => {
  it("lists the Staged device as installedAfterCancel once it runs the new version, the stopped download as reverted", async () => {
    const cloud = await LocalCloud.start({ dataDir: path.join(dir, "cloud"), certsDir: PKI, devices: [{ id: "sc-aws", cloud: "aws" }, { id: "sc-az", cloud: "azure" }] });
    open.push(cloud);
    const img = buildImage({ version: "1.1.0", projectName: "shadow-ota", size: SIZE, seed: 11 });
    cloud.blobs.publish("firmware", awsBlobName("1.1.0"), img);
    cloud.blobs.publish("firmware", azureBlobName("1.1.0"), img);
    // Only the Azure device's blob stalls: it stays mid-download; the AWS device downloads in full.
    cloud.blobs.setFault(`firmware/${azureBlobName("1.1.0")}`, { bytesPerSecond: 32 * 1024, stallAtByte: STALL }, { times: "always" });
    await cloud.shadows.updateDesired("sc-aws", { config: { firmware_version: "1.0.0" } });

    const held: string[] = [];
    const options = (id: string, extra: Partial<SimDeviceOptions> = {}): SimDeviceOptions => {
      const c = cloud.credentials(id);
      return {
        id, cloud: c.cloud, host: c.host, port: c.port, ca: c.ca, cert: c.cert, key: c.key,
        dataDir: path.join(dir, "devices", id), log: { log() {} }, firmware: { baseUrl: cloud.blobBaseUrl, ca: c.ca },
        ota: { retry: { initialMs: 100, maxMs: 400, maxAttempts: 4 }, selfTestWindowMs: 30_000, progressIntervalMs: 200 }, powerOffMs: 50, logs: false,
        ...extra,
      };
    };
    const aws = SimDevice.start(options("sc-aws", { onRestart: (reason) => { held.push(reason); } }));
    open.push(aws);
    const az = SimDevice.start(options("sc-az"));
    open.push(az);
    for (const id of ["sc-aws", "sc-az"]) {
      await waitUntil(async () => (getPath((await docOf(cloud, id)).reported, RUNNING[cloud.devices.get(id)!]!) === "1.0.0" ? true : undefined), 60_000, `${id} reports 1.0.0`);
    }

    expect((await cli(["rollout", "start", "--version", "1.1.0", "--devices", "sc-aws,sc-az", "--waves", "100%", "--max-failure", "50%"])).code).toBe(0);
    await waitUntil(async () => (held.length > 0 && update(await docOf(cloud, "sc-aws"))["state"] === "Staged" ? true : undefined), 120_000, "sc-aws Staged, its restart held");
    await waitUntil(async () => {
      const u = update(await docOf(cloud, "sc-az"));
      return u["state"] === "Downloading" && typeof u["bytes"] === "number" && u["bytes"] > 0 ? true : undefined;
    }, 120_000, "sc-az downloading");
    expect(aws.ota.state).toBe("Staged");

    expect((await cli(["rollout", "cancel"])).code).toBe(0);
    // The revert reached both: the AWS device's desired names 1.0.0 again, the Azure device's none.
    await waitUntil(() => (aws.state().desired["config"] as JsonObject | undefined)?.["firmware_version"] === "1.0.0" ? true : undefined, 60_000, "sc-aws sees the revert");
    await waitUntil(async () => (update(await docOf(cloud, "sc-az"))["state"] === "Idle" ? true : undefined), 120_000, "sc-az reports the cancel");
    expect(aws.ota.state).toBe("Staged"); // too late to cancel: the restart is under way

    // The supervisor starts the AWS device again from its flash: the switched boot partition boots 1.1.0.
    open.splice(open.indexOf(aws), 1);
    await aws.close();
    const again = SimDevice.start(options("sc-aws"));
    open.push(again);
    expect(again.runningVersion).toBe("1.1.0");
    // Its self-test passes (PendingVerify → Valid); then desired's 1.0.0 is a downgrade, refused: the record
    // ends Failed with OTA_DOWNGRADE_REFUSED while 1.1.0 keeps running (docs/ota-update.md).
    await waitUntil(async () => {
      const u = update(await docOf(cloud, "sc-aws"));
      return u["state"] === "Failed" && (u["lastError"] as JsonObject | undefined)?.["code"] === "OTA_DOWNGRADE_REFUSED" ? true : undefined;
    }, 120_000, "sc-aws confirms 1.1.0 and refuses the downgrade to 1.0.0");
    expect(again.lastBoot.state).toBe("PENDING_VERIFY"); // it booted the new image unconfirmed, then confirmed it

    const v = await waitUntil(async () => {
      const r = await cli(["rollout", "status"]);
      const view = r.code === 0 ? JSON.parse(r.out) as View : undefined;
      return view !== undefined && view.devices["sc-aws"]!.outcome !== "reverted" ? view : undefined;
    }, 60_000, "the rollout's status no longer lists sc-aws as reverted");
    expect(v.state).toBe("cancelled");
    expect(v.devices["sc-aws"]).toMatchObject({ outcome: "installedAfterCancel", status: "Failed", error: "OTA_DOWNGRADE_REFUSED" });
    expect(v.devices["sc-az"]).toMatchObject({ outcome: "reverted", status: "Idle", error: "OTA_UPDATE_CANCELLED" });
    expect(v.waves[0]).toMatchObject({ updated: 0, failed: 0, pending: 0, reverted: 1, installedAfterCancel: 1 });
    expect(again.runningVersion).toBe("1.1.0");
    expect(az.runningVersion).toBe("1.0.0");
    // The same through the admin API's list, which the fleet page reads.
    const list = await fetch(`${cloud.adminUrl}/rollouts`, { headers: { authorization: `Bearer ${cloud.adminToken}` } });
    const listed = ((await list.json()) as { rollouts: View[] }).rollouts.find((r) => r.id === v.id)!;
    expect(listed.devices["sc-aws"]!.outcome).toBe("installedAfterCancel");
  });
});
