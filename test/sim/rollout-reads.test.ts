/**
 * What a rollout costs the cloud in shadow and twin reads, end to end: `npm run cloud -- rollout start|status`
 * (runCli) against a running local cloud whose engine reads AWS shadows through the AWS SDK (the data-plane
 * endpoint, which serves GetThingShadow from ShadowService.getShadow) and Azure twins through the twin
 * service (getTwin); simulated devices update over the native OTA slot. Every getShadow/getTwin call of the
 * services is counted from the moment the rollout starts (the devices' own MQTT gets and the CLI's status
 * calls do not go through them).
 *
 * Polling read every pending device at every tick: what desired held before (one read per device), then at
 * least one read per device at the first tick that looks at its wave, so never fewer than 2 reads per device
 * however fast the devices update. Driven by the cloud store's change records the engine reads what desired
 * held before and nothing else unless a device stays silent for 30 s: the test asserts fewer than 2 reads
 * per device (a count, not a time). Every wait is bounded (waitUntil).
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

let dir = "";
const open: Array<{ close(): Promise<void> }> = [];
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-rollout-reads-")); });
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

type View = { state: string; devices: Record<string, { outcome: string }> };

describe("the rollout engine's reads", () => {
  it("a rollout of N devices in two waves costs fewer than 2 shadow/twin reads per device", async () => {
    const ids = ["rr-aws-0", "rr-aws-1", "rr-aws-2", "rr-aws-3", "rr-az-0", "rr-az-1"];
    const cloud = await LocalCloud.start({ dataDir: path.join(dir, "cloud"), certsDir: PKI, devices: ids.map((id) => ({ id, cloud: id.startsWith("rr-az") ? "azure" as const : "aws" as const })) });
    open.push(cloud);
    const img = buildImage({ version: "1.1.0", projectName: "shadow-ota", size: 64 * 1024, seed: 3 });
    cloud.blobs.publish("firmware", awsBlobName("1.1.0"), img);
    cloud.blobs.publish("firmware", azureBlobName("1.1.0"), img);
    const devices = ids.map((id) => {
      const c = cloud.credentials(id);
      const d = SimDevice.start({
        id, cloud: c.cloud, host: c.host, port: c.port, ca: c.ca, cert: c.cert, key: c.key,
        dataDir: path.join(dir, "devices", id), log: { log() {} }, firmware: { baseUrl: cloud.blobBaseUrl, ca: c.ca },
        ota: { retry: { initialMs: 100, maxMs: 400, maxAttempts: 4 }, selfTestWindowMs: 30_000 }, powerOffMs: 50, logs: false,
      });
      open.push(d);
      return d;
    });
    const RUNNING = { aws: ["config", "firmware_version"], azure: ["firmwareVersion"] };
    for (const d of devices) {
      await waitUntil(() => (d.connected && getPath(d.state().reported, RUNNING[d.cloud]) === "1.0.0" ? true : undefined), 60_000, `${d.id} reports 1.0.0`);
    }

    // Count every read the services serve from here on.
    const reads = { shadow: 0, twin: 0 };
    const getShadow = cloud.shadows.getShadow.bind(cloud.shadows);
    const getTwin = cloud.twins.getTwin.bind(cloud.twins);
    cloud.shadows.getShadow = (thing: string, shadow?: string): Promise<JsonObject | undefined> => { reads.shadow++; return getShadow(thing, shadow); };
    cloud.twins.getTwin = (id: string): ReturnType<typeof getTwin> => { reads.twin++; return getTwin(id); };

    expect((await cli(["rollout", "start", "--version", "1.1.0", "--all", "--waves", "2,100%", "--max-failure", "0%"])).code).toBe(0);
    const v = await waitUntil(async () => {
      const r = await cli(["rollout", "status"]);
      const view = r.code === 0 ? JSON.parse(r.out) as View : undefined;
      return view !== undefined && (view.state === "done" || view.state === "aborted") ? view : undefined;
    }, 180_000, "the rollout finishes");
    expect(v.state).toBe("done");
    expect(Object.values(v.devices).map((d) => d.outcome)).toEqual(ids.map(() => "updated"));
    expect(devices.map((d) => d.runningVersion)).toEqual(ids.map(() => "1.1.0"));

    const total = reads.shadow + reads.twin;
    // At least the one read per device of what desired held before (what a revert would restore) ...
    expect(total).toBeGreaterThanOrEqual(ids.length);
    // ... and fewer than polling's floor of 2 per device.
    expect(total).toBeLessThan(2 * ids.length);
  });
});
