/**
 * A property of the OTA controller over fake ports (runs on Node and XS): for random sequences of power
 * cuts, network cuts, stalls, restarts while pending verification and self-test outcomes, every device
 * ends on the old or the new version (never without a bootable image), its record and report agree with
 * what runs, and nothing is downloaded again beyond one sector per interruption.
 * Bounded: a fixed number of sequences from a seeded generator, each with a bounded number of events.
 */
import type { JsonObject } from "../../src/core/json";
import { OtaController, type OtaControllerConfig } from "../../src/core/ota-controller";
import { FakeFlash, FakeSlot, FakeSource, fakeImage, RecordingRestart, xorshift32 as rng } from "./ota-fakes";
import { ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";

const CONFIG: OtaControllerConfig = {
  source: { naming: "aws", baseUrl: "https://blobs.example/fw/", allowedHosts: ["blobs.example"] },
  projectName: "shadow-ota",
  retry: { initialMs: 100, maxMs: 800, maxAttempts: 50 },
  selfTestWindowMs: 10_000,
};
const SIZE = 48 * 1024;


async function turns(n = 60): Promise<void> {
  for (let i = 0; i < n; i++) await settle();
}

async function scenario(seed: number): Promise<{ running: string; state: string; extra: number; interruptions: number; report: JsonObject }> {
  const rand = rng(seed);
  const kv = new MemoryKv();
  const clock = new ManualClock();
  const flash = new FakeFlash(fakeImage({ version: "1.0.0", size: 9_000 }));
  const source = new FakeSource(fakeImage({ version: "1.1.0", size: SIZE }));
  source.chunkSize = 1000 + Math.floor(rand() * 3000);
  const restart = new RecordingRestart();
  const selfTestPasses = rand() < 0.7;
  let ota: OtaController | undefined;
  let reports: JsonObject[] = [];
  /** The cloud's copy of reported.firmwareUpdate: every report merged in, across power-ons. */
  let twin: JsonObject = {};
  let interruptions = 0;
  const powerOn = (): void => {
    if (ota !== undefined) interruptions++;
    ota?.close();
    flash.boot();
    reports = [];
    ota = new OtaController({ slot: new FakeSlot(flash), source, kv, clock, log: new MemoryLog(), restart, random: rand },
      CONFIG, { report: (u) => { reports.push(u); twin = { ...twin, ...u }; return Promise.resolve(); }, appCheck: () => (selfTestPasses ? true : "fails") });
    ota.boot();
    ota.start();
  };
  powerOn();
  ota!.request("1.1.0");
  const events = 3 + Math.floor(rand() * 6);
  for (let e = 0; e < events; e++) {
    const pick = rand();
    if (pick < 0.3) {
      source.faults.push({ kind: "stall", at: Math.floor(rand() * SIZE) });
      await turns();
      powerOn(); // power cut while stalled mid-body
    } else if (pick < 0.55) {
      source.faults.push({ kind: "cut", at: Math.floor(rand() * SIZE) });
      interruptions++;
      await turns();
      clock.advance(1_000);
    } else if (pick < 0.7) {
      await turns();
      powerOn(); // a plain restart, at whatever point the device is
    } else if (pick < 0.85) {
      ota!.onSynced();
      await turns();
    } else {
      clock.advance(CONFIG.selfTestWindowMs!);
      await turns();
    }
    if (restart.reasons.length > 0) { restart.reasons.length = 0; powerOn(); }
  }
  // Then no more faults: let it finish (bounded rounds).
  source.faults.length = 0;
  for (let i = 0; i < 20; i++) {
    await turns();
    clock.advance(1_000);
    if (restart.reasons.length > 0) { restart.reasons.length = 0; powerOn(); }
    if (ota!.state === "PendingVerify") ota!.onSynced();
    ota!.request("1.1.0"); // desired keeps naming it (DeviceAgent hands it on after every boot)
  }
  await turns();
  if (restart.reasons.length > 0) { restart.reasons.length = 0; powerOn(); await turns(); }
  return { running: ota!.runningVersion, state: ota!.state, extra: source.served - SIZE, interruptions, report: twin };
}

describe("OtaController under random power cuts, network cuts and restarts", () => {
  test("ends on the old or the new version, consistent, within the resume bound (60 sequences)", async () => {
    const ended: Record<string, number> = {};
    for (let seed = 1; seed <= 60; seed++) {
      const r = await scenario(seed * 7919);
      ended[`${r.running}/${r.state}`] = (ended[`${r.running}/${r.state}`] ?? 0) + 1;
      const where = `seed ${seed * 7919}: ${JSON.stringify(r)}`;
      expect([where, ["1.0.0", "1.1.0"].includes(r.running)]).toEqual([where, true]);
      if (r.running === "1.1.0") expect([where, r.state]).toEqual([where, "Valid"]);
      else expect([where, ["RolledBack", "Failed"].includes(r.state)]).toEqual([where, true]);
      // The cloud's view converged on what the device knows.
      expect([where, r.report["state"], r.report["to"]]).toEqual([where, r.state, "1.1.0"]);
      // Each interruption (power-on, cut connection) may cost what came after the last persisted sector
      // boundary: at most one sector. Never the image again.
      expect([where, r.extra <= r.interruptions * 4096]).toEqual([where, true]);
    }
    expect(Object.keys(ended).length).toBeGreaterThan(1);
  });
});
