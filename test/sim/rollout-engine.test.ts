/**
 * The rollout engine (src/sim/rollout.ts) over an in-memory fleet, for what the end-to-end test cannot make
 * happen on purpose: a process that stops between reading desired and writing it and resumes from its store,
 * a write that fails and is retried, a device that never answers before the wave's deadline, a store that
 * is not one; the admin API's refusals for the rollout routes on a real local cloud (status and code); and
 * the fleet access through the vendors' SDKs alone (AWS SDK data plane, azure-iothub against the IoT Hub API
 * on port 443 of a loopback address: skipped, and said so, without root or CAP_NET_BIND_SERVICE).
 * Time is a number the test moves; nothing waits on the clock.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { CloudKind } from "../../src/core/cloud-protocol";
import { setPath } from "../../src/core/config-diff";
import type { JsonObject } from "../../src/core/json";
import { LocalCloud } from "../../src/sim/local-cloud";
import { RolloutEngine, ROLLOUT_STORE_FILE, classify } from "../../src/sim/rollout";
import { sdkFleet, type FleetAccess, type FleetDoc } from "../../src/sim/rollout-fleet";

jest.setTimeout(60_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki");
const silent = { log() {} };

/** Twins in memory; `failPatch` makes the next writes for those ids fail once. */
class MemoryFleet implements FleetAccess {
  readonly docs = new Map<string, FleetDoc>();
  readonly failPatch = new Set<string>();
  patches = 0;
  read(devices: ReadonlyArray<{ id: string }>): Promise<Map<string, FleetDoc | Error>> {
    return Promise.resolve(new Map(devices.map((d) => [d.id, structuredClone(this.docs.get(d.id) ?? { desired: {}, reported: {} })])));
  }
  patch(entries: ReadonlyArray<{ id: string; desired: JsonObject }>): Promise<Map<string, Error | undefined>> {
    const out = new Map<string, Error | undefined>();
    for (const e of entries) {
      this.patches++;
      if (this.failPatch.delete(e.id)) { out.set(e.id, new Error("503 from the service")); continue; }
      const doc = this.docs.get(e.id) ?? { desired: {}, reported: {} };
      doc.desired = merge(doc.desired, e.desired);
      this.docs.set(e.id, doc);
      out.set(e.id, undefined);
    }
    return Promise.resolve(out);
  }
  report(id: string, reported: JsonObject): void {
    const doc = this.docs.get(id) ?? { desired: {}, reported: {} };
    doc.reported = merge(doc.reported, reported);
    this.docs.set(id, doc);
  }
  close(): void { /* nothing */ }
}

function merge(a: JsonObject, b: JsonObject): JsonObject {
  const out: JsonObject = { ...a };
  for (const [k, v] of Object.entries(b)) {
    if (v === null) delete out[k];
    else if (typeof v === "object" && !Array.isArray(v) && typeof out[k] === "object" && out[k] !== null && !Array.isArray(out[k])) out[k] = merge(out[k] as JsonObject, v as JsonObject);
    else out[k] = v;
  }
  return out;
}

let dir = "";
const engines: RolloutEngine[] = [];
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-rollout-engine-")); });
afterEach(async () => {
  for (const e of engines.splice(0)) await e.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const DEVICES = new Map<string, CloudKind>([["a", "aws"], ["b", "aws"], ["z", "azure"]]);

function open(fleet: FleetAccess, now: { ms: number }): RolloutEngine {
  const e = RolloutEngine.open({ dataDir: dir, fleet, devices: () => DEVICES, log: silent, pollMs: 3_600_000, now: () => now.ms });
  engines.push(e);
  return e;
}

const valid = (cloud: CloudKind, v: string): JsonObject => ({
  ...setPath({}, cloud === "aws" ? ["config", "firmware_version"] : ["firmwareVersion"], v),
  firmwareUpdate: { state: "Valid", from: "1.0.0", to: v, lastError: null },
});

describe("rollout engine", () => {
  it("classifies reported states: Valid on the version, RolledBack/Failed for it, anything in flight", () => {
    expect(classify(valid("aws", "1.1.0"), "aws", "1.1.0").outcome).toBe("updated");
    expect(classify(valid("azure", "1.1.0"), "azure", "1.1.0").outcome).toBe("updated");
    expect(classify({ config: { firmware_version: "1.1.0" } }, "aws", "1.1.0").outcome).toBe("updated"); // already ran it
    expect(classify({ config: { firmware_version: "1.1.0" }, firmwareUpdate: { state: "PendingVerify", to: "1.1.0" } }, "aws", "1.1.0").outcome).toBe("pending");
    expect(classify({ config: { firmware_version: "1.0.0" }, firmwareUpdate: { state: "RolledBack", to: "1.1.0", lastError: { code: "OTA_SELF_TEST_FAILED" } } }, "aws", "1.1.0"))
      .toEqual({ outcome: "failed", status: "RolledBack", error: "OTA_SELF_TEST_FAILED" });
    expect(classify({ firmwareVersion: "1.0.0", firmwareUpdate: { state: "Failed", to: "1.2.0" } }, "azure", "1.1.0").outcome).toBe("pending"); // another version's failure
    expect(classify({ config: { firmware_version: "1.0.0" }, firmwareUpdate: { state: "WaitingWindow", to: "1.1.0" } }, "aws", "1.1.0")).toEqual({ outcome: "pending", status: "WaitingWindow", inFlight: true });
    // Not in flight: the update stopped (a revert cancelled it) or never started.
    expect(classify({ config: { firmware_version: "1.0.0" }, firmwareUpdate: { state: "Idle", to: "1.1.0", lastError: { code: "OTA_UPDATE_CANCELLED" } } }, "aws", "1.1.0"))
      .toEqual({ outcome: "pending", status: "Idle", error: "OTA_UPDATE_CANCELLED", inFlight: false });
    expect(classify({ config: { firmware_version: "1.0.0" } }, "aws", "1.1.0")).toEqual({ outcome: "pending", inFlight: false });
    // Staged, or booted into the version and not yet confirmed: in flight.
    expect(classify({ config: { firmware_version: "1.1.0" }, firmwareUpdate: { state: "PendingVerify", to: "1.1.0" } }, "aws", "1.1.0").inFlight).toBe(true);
    expect(classify({ config: { firmware_version: "1.0.0" }, firmwareUpdate: { state: "Staged", to: "1.1.0" } }, "aws", "1.1.0").inFlight).toBe(true);
  });

  it("stores what desired held before writing, retries a failed write, and a reopened engine resumes without losing it", async () => {
    const fleet = new MemoryFleet();
    fleet.docs.set("a", { desired: { config: { firmware_version: "0.9.0", interval: 5 } }, reported: { config: { firmware_version: "1.0.0" } } });
    fleet.failPatch.add("a");
    const now = { ms: 1_000 };
    const e1 = open(fleet, now);
    const r = await e1.start({ version: "1.1.0", devices: ["a", "b", "z"], waves: "1,100%", maxFailure: "50%" });
    expect(r.devices[0]).toMatchObject({ id: "a", outcome: "pending", desiredSet: false, previous: "0.9.0" });
    await e1.close();
    engines.splice(engines.indexOf(e1), 1);
    // A new process on the same directory: the write is done now, and `previous` is still 0.9.0.
    const e2 = open(fleet, now);
    await e2.tick();
    expect(e2.active()!.devices[0]).toMatchObject({ outcome: "pending", desiredSet: true, previous: "0.9.0" });
    expect(fleet.docs.get("a")!.desired).toEqual({ config: { firmware_version: "1.1.0", interval: 5 } });
    // a fails: 1 of 1 > 50 %: aborted; desired goes back to 0.9.0, b and z untouched.
    fleet.report("a", { firmwareUpdate: { state: "RolledBack", to: "1.1.0", lastError: { code: "OTA_SELF_TEST_FAILED" } } });
    fleet.failPatch.add("a"); // the revert fails once
    await e2.tick();
    const stored = JSON.parse(fs.readFileSync(path.join(dir, ROLLOUT_STORE_FILE), "utf8")) as { rollouts: Array<{ state: string; devices: Array<{ revertDone?: boolean }> }> };
    expect(stored.rollouts[0]!.state).toBe("aborted");
    expect(fleet.docs.get("a")!.desired).toEqual({ config: { firmware_version: "1.1.0", interval: 5 } }); // not yet
    await e2.tick();
    expect(e2.list()[0]!.devices[0]!.revertDone).toBe(true);
    expect(fleet.docs.get("a")!.desired).toEqual({ config: { firmware_version: "0.9.0", interval: 5 } });
    expect(fleet.docs.has("b")).toBe(false);
    expect(fleet.docs.has("z")).toBe(false);
  });

  it("reads: polled, every pending device at every tick; with `changes`, once per device (desired before) plus one per rereadMs of silence", async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `d-${String(i).padStart(2, "0")}`);
    const known = new Map<string, CloudKind>(ids.map((id, i) => [id, i % 4 === 0 ? "azure" : "aws"]));
    const listeners = new Set<(id: string, doc: FleetDoc) => void>();
    const run = async (withChanges: boolean): Promise<{ reads: number; fleetReads: number; state: string }> => {
      const fleet = new MemoryFleet();
      let fleetReads = 0;
      const read = fleet.read.bind(fleet);
      fleet.read = (devices) => { fleetReads += devices.length; return read(devices); };
      // The fleet's writes and the devices' reports reach the engine as changes, as the cloud store's records do.
      const emit = (id: string): void => { for (const l of listeners) l(id, structuredClone(fleet.docs.get(id)!)); };
      const patch = fleet.patch.bind(fleet);
      fleet.patch = async (entries) => { const out = await patch(entries); if (withChanges) for (const e of entries) emit(e.id); return out; };
      const now = { ms: 0 };
      const sub = fs.mkdtempSync(path.join(dir, "e-"));
      const e = RolloutEngine.open({
        dataDir: sub, fleet, devices: () => known, log: silent, pollMs: 3_600_000, rereadMs: 30_000, now: () => now.ms,
        ...(withChanges ? { changes: (l: (id: string, doc: FleetDoc) => void) => { listeners.add(l); return () => listeners.delete(l); } } : {}),
      });
      engines.push(e);
      await e.start({ version: "1.1.0", all: true, waves: "10,100%", maxFailure: "0%" });
      // 10 ticks a second apart in which nobody has finished, then every device of the wave reports Valid.
      for (let t = 0; t < 10; t++) { now.ms += 1000; await e.tick(); }
      const wave = (): string[] => e.active()?.devices.filter((d) => d.outcome === "pending").map((d) => d.id) ?? [];
      for (const id of wave()) { fleet.report(id, valid(known.get(id)!, "1.1.0")); if (withChanges) emit(id); }
      now.ms += 1000;
      await e.tick();
      // Wave 2 (30 devices): all silent for 30 s (one fallback read each), then all report Valid.
      for (let t = 0; t < 30; t++) { now.ms += 1000; await e.tick(); }
      for (const id of wave()) { fleet.report(id, valid(known.get(id)!, "1.1.0")); if (withChanges) emit(id); }
      now.ms += 1000;
      await e.tick();
      const state = e.list()[0]!.state;
      await e.close();
      engines.splice(engines.indexOf(e), 1);
      return { reads: e.reads, fleetReads, state };
    };
    const polled = await run(false);
    const watched = await run(true);
    expect(polled.state).toBe("done");
    expect(watched.state).toBe("done");
    // Polled: 40 reads of desired before; wave 1: 10 ticks × 10 + the verdict tick's 10 = 110; wave 2: 30 ticks
    // × 30 + the verdict tick's 30 = 930 (a wave's first tick writes desired and reads no report yet).
    expect(polled).toEqual({ reads: 40 + 110 + 930, fleetReads: 40 + 110 + 930, state: "done" });
    // With changes: the 40 reads of desired before, and one fallback read of each of wave 2's 30 silent devices.
    expect(watched).toEqual({ reads: 40 + 30, fleetReads: 40 + 30, state: "done" });
  });

  it("a device that never answers fails at the wave's deadline (the knob), and the rollout continues under the threshold", async () => {
    const fleet = new MemoryFleet();
    const now = { ms: 0 };
    const e = open(fleet, now);
    const r = await e.start({ version: "1.1.0", all: true, waves: "2,100%", maxFailure: "50%", waveDeadlineMs: 60_000 });
    expect(r.waves[0]!.size).toBe(2);
    fleet.report("a", valid("aws", "1.1.0"));
    now.ms = 59_999;
    await e.tick();
    expect(e.active()!.devices.find((d) => d.id === "b")!.outcome).toBe("pending");
    now.ms = 60_000;
    await e.tick();
    const v = e.active()!;
    expect(v.devices.find((d) => d.id === "b")).toMatchObject({ outcome: "failed", error: "ROLLOUT_DEVICE_TIMEOUT" });
    expect(v.current).toBe(1);
    expect(fleet.docs.get("z")!.desired).toEqual({ updateVersion: "1.1.0" });
  });

  it("refuses a store that is not one, and leaves it alone", () => {
    fs.writeFileSync(path.join(dir, ROLLOUT_STORE_FILE), "{\"rollouts\": 3}");
    expect(() => RolloutEngine.open({ dataDir: dir, fleet: new MemoryFleet(), devices: () => DEVICES, log: silent }))
      .toThrow(expect.objectContaining({ code: "ROLLOUT_STORE_CORRUPT" }));
    expect(fs.readFileSync(path.join(dir, ROLLOUT_STORE_FILE), "utf8")).toBe("{\"rollouts\": 3}");
  });
});

describe("rollout routes of the admin API", () => {
  it("answers bad requests with 4xx and a stable code", async () => {
    const cloud = await LocalCloud.start({ dataDir: path.join(dir, "cloud"), certsDir: PKI, devices: [{ id: "esp32-01", cloud: "aws" }] });
    try {
      const call = async (method: string, p: string, body?: unknown): Promise<{ status: number; json: { code?: string } & Record<string, unknown> }> => {
        const res = await fetch(cloud.adminUrl! + p, { method, headers: { authorization: `Bearer ${cloud.adminToken!}`, "content-type": "application/json" }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
        return { status: res.status, json: await res.json() as { code?: string } };
      };
      expect(await call("GET", "/rollouts")).toEqual({ status: 200, json: { rollouts: [] } });
      const cases: Array<[unknown, string]> = [
        [{ version: "1.1", all: true, waves: "100%", maxFailure: "5%" }, "version"],
        [{ version: "1.1.0", devices: ["nope"], waves: "100%", maxFailure: "5%" }, "devices"],
        [{ version: "1.1.0", devices: [], waves: "100%", maxFailure: "5%" }, "devices"],
        [{ version: "1.1.0", all: true, waves: 7, maxFailure: "5%" }, "waves"],
        [{ version: "1.1.0", all: true, waves: "100%", maxFailure: "500%" }, "maxFailure"],
        [{ version: "1.1.0", all: true, waves: "100%", maxFailure: "5%", window: "2-4" }, "window"],
        [{ version: "1.1.0", all: true, waves: "100%", maxFailure: "5%", waveDeadlineMs: -1 }, "waveDeadlineMs"],
      ];
      for (const [body] of cases) {
        const r = await call("POST", "/rollouts", body);
        expect([r.status, r.json.code]).toEqual([400, "ROLLOUT_REQUEST_INVALID"]);
      }
      expect((await call("GET", "/rollouts/r-0000")).status).toBe(404);
      expect((await call("POST", "/rollouts/r-0000/pause")).json.code).toBe("ROLLOUT_NOT_FOUND");
      expect(await call("POST", "/devices/ghost/install")).toMatchObject({ status: 404, json: { code: "ROLLOUT_NOTHING_TO_ACCEPT" } });
      expect(await call("POST", "/devices/esp32-01/install")).toMatchObject({ status: 409, json: { code: "ROLLOUT_NOTHING_TO_ACCEPT" } });
      const started = await call("POST", "/rollouts", { version: "1.1.0", all: true, waves: "100%", maxFailure: "5%" });
      expect(started.status).toBe(200);
      const id = started.json["id"] as string;
      expect((await call("POST", `/rollouts/${id}/resume`)).status).toBe(409);
      expect((await call("POST", `/rollouts/${id}/pause`)).json["state"]).toBe("paused");
      expect((await call("POST", `/rollouts/${id}/cancel`)).json["state"]).toBe("cancelled");
      expect((await call("POST", `/rollouts/${id}/cancel`))).toMatchObject({ status: 409, json: { code: "ROLLOUT_CONFLICT" } });
      // The cancel put desired back where it was (no version: removed) through the data plane.
      const doc = await cloud.shadows.getShadow("esp32-01");
      expect(((doc?.["state"] as JsonObject | undefined)?.["desired"] as JsonObject | undefined)?.["config"]).toBeUndefined();
    } finally {
      await cloud.close();
    }
  });
});

describe("fleet access through the SDKs", () => {
  it("reads and patches AWS shadows with the AWS SDK and Azure twins with azure-iothub, no in-process fallback", async () => {
    const hubHost = `127.${10 + (process.pid % 200)}.${Math.floor(Math.random() * 250) + 1}.${Math.floor(Math.random() * 250) + 1}`;
    let cloud: LocalCloud;
    try {
      cloud = await LocalCloud.start({
        dataDir: path.join(dir, "cloud"), certsDir: PKI, blobPort: false, iothub: { host: hubHost, port: 443 },
        devices: [{ id: "esp32-01", cloud: "aws" }, { id: "az-01", cloud: "azure" }],
      });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EACCES") throw e;
      console.log(`binding ${hubHost}:443 needs root or CAP_NET_BIND_SERVICE: the azure-iothub rollout test is skipped`);
      return;
    }
    const info = cloud.info();
    const fleet = sdkFleet({ aws: info.awsDataPlane!, iothubConnectionString: info.iothub!.connectionString, caFile: path.join(PKI, "ca.cert.pem") });
    try {
      const targets = [{ id: "esp32-01", cloud: "aws" as const }, { id: "az-01", cloud: "azure" as const }];
      const before = await fleet.read(targets);
      expect(before.get("esp32-01")).toEqual({ desired: {}, reported: {} }); // no shadow yet: AWS's 404
      expect(before.get("az-01")).toEqual({ desired: {}, reported: {} });
      const res = await fleet.patch([
        { id: "esp32-01", cloud: "aws", desired: { config: { firmware_version: "1.1.0" } } },
        { id: "az-01", cloud: "azure", desired: { updateVersion: "1.1.0" } },
      ]);
      expect([...res.values()]).toEqual([undefined, undefined]);
      expect((await cloud.twins.getTwin("az-01")).desired).toMatchObject({ updateVersion: "1.1.0" });
      const after = await fleet.read(targets);
      expect(after.get("esp32-01")).toEqual({ desired: { config: { firmware_version: "1.1.0" } }, reported: {} });
      expect(after.get("az-01")).toEqual({ desired: { updateVersion: "1.1.0" }, reported: {} });
      // A device the hub does not know: an Error for it alone.
      const unknown = await fleet.read([{ id: "az-ghost", cloud: "azure" }, { id: "esp32-01", cloud: "aws" }]);
      expect(unknown.get("az-ghost")).toBeInstanceOf(Error);
      expect(unknown.get("esp32-01")).not.toBeInstanceOf(Error);
    } finally {
      fleet.close();
      await cloud.close();
    }
  });
});
