/**
 * Staged rollouts end to end, the way an operator runs them: `npm run cloud -- rollout …` (runCli) against
 * a running local cloud, whose engine sets desired through the AWS SDK against the cloud's data-plane
 * endpoint (Azure devices through the twin service: no IoT Hub API here, it needs port 443) and watches the
 * reported state of simulated devices — the device app over the native OTA slot on flash files, real ESP32
 * image bytes, real restarts and rollbacks.
 *
 * - 10 devices, waves 1,3,100%, one device of the second wave gets an image whose self-test fails: it rolls
 *   back, the failure rate (1 of 3) passes --max-failure 20 %, the rollout aborts, the third wave is never
 *   touched (desired unchanged, nothing downloaded) and desired is put back where it had been.
 * - 4 devices, one requiring consent: the rollout waits for it, survives a restart of the cloud (store
 *   file), and finishes once `install` gives the consent.
 *
 * Every wait is bounded (waitUntil); nothing is timed.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { getPath } from "../../src/core/config-diff";
import type { JsonObject } from "../../src/core/json";
import { awsBlobName, azureBlobName } from "../../src/core/firmware-url";
import { runCli } from "../../src/sim/cli";
import { SELFTEST_FAIL_MARKER, SimDevice } from "../../src/sim/device";
import { LocalCloud } from "../../src/sim/local-cloud";
import { buildImage } from "../../src/tools/esp-image";
import { waitUntil } from "./wait-until";

jest.setTimeout(240_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki"); // shared across tests: RSA keys take time
const SIZE = 64 * 1024;
const image = (version: string, marker?: string): Uint8Array =>
  buildImage({ version, projectName: "shadow-ota", size: SIZE, seed: 5, ...(marker === undefined ? {} : { marker }) });

let dir = "";
const open: Array<{ close(): Promise<void> }> = [];
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-rollout-")); });
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close().catch(() => undefined);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function startCloud(devices: Array<{ id: string; cloud: "aws" | "azure" }>, ports: { port?: number; blobPort?: number } = {}): Promise<LocalCloud> {
  const cloud = await LocalCloud.start({ dataDir: path.join(dir, "cloud"), certsDir: PKI, devices, ...ports });
  open.push(cloud);
  return cloud;
}

function publish(cloud: LocalCloud): void {
  cloud.blobs.publish("firmware", awsBlobName("1.1.0"), image("1.1.0"));
  cloud.blobs.publish("firmware", azureBlobName("1.1.0"), image("1.1.0"));
  cloud.blobs.publish("bad", awsBlobName("1.1.0"), image("1.1.0", SELFTEST_FAIL_MARKER));
}

function device(cloud: LocalCloud, id: string, baseUrl = cloud.blobBaseUrl): SimDevice {
  const c = cloud.credentials(id);
  const d = SimDevice.start({
    id, cloud: c.cloud, host: c.host, port: c.port, ca: c.ca, cert: c.cert, key: c.key,
    dataDir: path.join(dir, "devices", id), log: { log() {} }, firmware: { baseUrl, ca: c.ca },
    ota: { retry: { initialMs: 100, maxMs: 400, maxAttempts: 4 }, selfTestWindowMs: 30_000 }, powerOffMs: 50, logs: false,
  });
  open.push(d);
  return d;
}

async function docOf(cloud: LocalCloud, id: string): Promise<{ desired: JsonObject; reported: JsonObject }> {
  if (cloud.devices.get(id) === "azure") {
    const t = await cloud.twins.getTwin(id);
    return { desired: t.desired, reported: t.reported };
  }
  const state = ((await cloud.shadows.getShadow(id))?.["state"] ?? {}) as JsonObject;
  return { desired: (state["desired"] ?? {}) as JsonObject, reported: (state["reported"] ?? {}) as JsonObject };
}

const RUNNING: Record<string, string[]> = { aws: ["config", "firmware_version"], azure: ["firmwareVersion"] };
const DESIRED: Record<string, string[]> = { aws: ["config", "firmware_version"], azure: ["updateVersion"] };

async function allReport(cloud: LocalCloud, ids: string[], version: string): Promise<void> {
  for (const id of ids) {
    await waitUntil(async () => (getPath((await docOf(cloud, id)).reported, RUNNING[cloud.devices.get(id)!]!) === version ? true : undefined), 60_000, `${id} reports ${version}`);
  }
}

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli([...args, "--data-dir", path.join(dir, "cloud")], { print: (l) => out.push(l), error: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

type View = { id: string; state: string; reason?: string; failureRate: number; waves: Array<{ state: string; devices: string[]; updated: number; failed: number; pending: number }>; devices: Record<string, { outcome: string; status: string | null; error: string | null }> };

async function statusUntil(states: string[], what: string): Promise<View> {
  return waitUntil(async () => {
    const r = await cli(["rollout", "status"]);
    const v = r.code === 0 ? JSON.parse(r.out) as View : undefined;
    return v !== undefined && states.includes(v.state) ? v : undefined;
  }, 180_000, what);
}

describe("staged rollout over the local cloud", () => {
  it("aborts when a rolled-back device takes the failure rate past --max-failure; the last wave is never touched", async () => {
    const ids = Array.from({ length: 10 }, (_, i) => `rd-${String(i).padStart(2, "0")}`);
    const cloud = await startCloud(ids.map((id, i) => ({ id, cloud: i >= 7 ? "azure" : "aws" })));
    publish(cloud);
    const devices = new Map(ids.map((id) => [id, device(cloud, id, id === "rd-02" ? cloud.blobs.baseUrl("bad") : cloud.blobBaseUrl)]));
    await allReport(cloud, ids, "1.0.0");

    // Usage errors are caught before the cloud is asked; the cloud's refusals keep their code.
    expect((await cli(["rollout", "start", "--version", "1.1.0", "--waves", "1,3,100%", "--max-failure", "20%"])).code).toBe(2);
    const bad = await cli(["rollout", "start", "--version", "1.1.0", "--all", "--waves", "5,3", "--max-failure", "20%"]);
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.err).code).toBe("ROLLOUT_REQUEST_INVALID");

    const started = await cli(["rollout", "start", "--version", "1.1.0", "--all", "--waves", "1,3,100%", "--max-failure", "20%"]);
    expect(started.code).toBe(0);
    const first = JSON.parse(started.out) as View;
    expect(first.waves.map((w) => w.devices)).toEqual([["rd-00"], ["rd-01", "rd-02"], ids.slice(3)]);
    expect(first.state).toBe("running");
    // A second rollout while one is active is refused.
    const second = await cli(["rollout", "start", "--version", "1.1.0", "--all", "--waves", "100%", "--max-failure", "20%"]);
    expect(second.code).toBe(1);
    expect(JSON.parse(second.err).code).toBe("ROLLOUT_CONFLICT");

    const v = await statusUntil(["aborted", "done"], "the rollout stops");
    expect(v.state).toBe("aborted");
    expect(v.reason).toMatch(/above the threshold 20%/);
    expect(v.devices["rd-00"]!.outcome).toBe("updated");
    expect(v.devices["rd-02"]).toMatchObject({ outcome: "failed", status: "RolledBack", error: "OTA_SELF_TEST_FAILED" });
    expect(v.waves.map((w) => w.state)).toEqual(["done", "aborted", "cancelled"]);
    expect(devices.get("rd-02")!.runningVersion).toBe("1.0.0");
    // The third wave: desired never set, nothing downloaded, still on 1.0.0.
    for (const id of ids.slice(3)) {
      expect(v.devices[id]!.outcome).toBe("waiting");
      const doc = await docOf(cloud, id);
      expect(getPath(doc.desired, DESIRED[cloud.devices.get(id)!]!)).toBeUndefined();
      expect(devices.get(id)!.downloadRequests).toBe(0);
      expect(devices.get(id)!.runningVersion).toBe("1.0.0");
    }
    // The rolled-back device's desired is put back where it was (none).
    await waitUntil(async () => (getPath((await docOf(cloud, "rd-02")).desired, DESIRED["aws"]!) === undefined ? true : undefined), 30_000, "rd-02's desired put back");
    // rd-01 finished before the abort (updated) or had its desired put back (reverted: none before; or, when it
    // was already Staged, it is watched after the abort and may end installedAfterCancel).
    expect(["updated", "reverted", "installedAfterCancel"]).toContain(v.devices["rd-01"]!.outcome);
    if (v.devices["rd-01"]!.outcome !== "updated") {
      await waitUntil(async () => (getPath((await docOf(cloud, "rd-01")).desired, DESIRED["aws"]!) === undefined ? true : undefined), 30_000, "rd-01's desired put back");
    }
    expect(fs.existsSync(path.join(dir, "cloud", "rollouts.json"))).toBe(true);
  });

  it("waits for consent, survives a restart of the cloud, and finishes after `install`", async () => {
    const ids = ["c-0", "c-1", "c-2", "c-3"];
    const kinds: Array<"aws" | "azure"> = ["aws", "aws", "aws", "azure"];
    let cloud = await startCloud(ids.map((id, i) => ({ id, cloud: kinds[i]! })));
    publish(cloud);
    await cloud.shadows.updateDesired("c-1", { firmwareUpdatePolicy: { requireConsent: true } });
    const devices = ids.map((id) => device(cloud, id));
    await allReport(cloud, ids, "1.0.0");
    expect((await cli(["install", "c-1"])).code).toBe(1); // nothing waits for consent yet

    expect((await cli(["rollout", "start", "--version", "1.1.0", "--devices", ids.join(","), "--waves", "1,100%", "--max-failure", "0%"])).code).toBe(0);
    // The engine sees c-1 waiting for consent and the others updated.
    const before = await waitUntil(async () => {
      const v = JSON.parse((await cli(["rollout", "status"])).out) as View;
      return v.devices["c-1"]!.status === "WaitingConsent" && v.devices["c-2"]!.outcome === "updated" && v.devices["c-3"]!.outcome === "updated" ? v : undefined;
    }, 180_000, "c-1 waits for consent, c-2 and c-3 updated");
    expect(before.state).toBe("running");
    expect(before.devices["c-1"]!.outcome).toBe("pending");
    expect(devices[1]!.downloadRequests).toBe(0);

    // The cloud process restarts on the same data directory and ports: the rollout resumes where it was.
    const ports = { port: cloud.mqttPort, blobPort: Number(new URL(cloud.blobBaseUrl).port) };
    open.splice(open.indexOf(cloud), 1);
    await cloud.close();
    cloud = await startCloud(ids.map((id, i) => ({ id, cloud: kinds[i]! })), ports);
    const resumed = JSON.parse((await cli(["rollout", "status", before.id])).out) as View;
    expect(resumed.state).toBe("running");
    expect(resumed.devices["c-1"]!.outcome).toBe("pending");
    expect(resumed.waves.map((w) => w.state)).toEqual(["done", "running"]);

    const install = await cli(["install", "c-1"]);
    expect(install.code).toBe(0);
    expect(JSON.parse(install.out)).toEqual({ id: "c-1", accepted: "1.1.0" });
    const v = await statusUntil(["done", "aborted"], "the rollout finishes");
    expect(v.state).toBe("done");
    expect(Object.values(v.devices).map((d) => d.outcome)).toEqual(["updated", "updated", "updated", "updated"]);
    expect(v.failureRate).toBe(0);
    expect(devices.map((d) => d.runningVersion)).toEqual(["1.1.0", "1.1.0", "1.1.0", "1.1.0"]);
    expect((await cli(["rollout", "pause"])).code).toBe(1); // finished: ROLLOUT_CONFLICT
  });
});
