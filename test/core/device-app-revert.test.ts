/**
 * A rollout's revert as the device app sees it (src/core/device-app.ts, device-agent.ts, update-policy.ts,
 * OtaController.cancel): desired goes back to the running version while an update downloads or waits in the
 * update gate, and later names the same version again. The test plays the AWS shadow service on the fake
 * transport the way AWS behaves: desired going back to the value the device reports publishes no delta, so
 * the device learns it from a get response (after a 409 on its next report, or after a reconnect). Jest
 * subset only (runs on XS too).
 */
import { DeviceApp, type DeviceAppConfig } from "../../src/core/device-app";
import type { JsonObject } from "../../src/core/json";
import { UPDATE_CODES } from "../../src/core/update-errors";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";
import { FakeFlash, FakeSlot, FakeSource, fakeImage, RecordingRestart } from "./ota-fakes";

const P = "$aws/things/esp32-01/shadow";
const FW = ["config", "firmware_version"];

class Device {
  readonly kv = new MemoryKv();
  readonly flash = new FakeFlash(fakeImage({ version: "1.0.0", size: 9_000 }));
  readonly source = new FakeSource(fakeImage({ version: "1.1.0" }));
  readonly restart = new RecordingRestart();
  readonly log = new MemoryLog();
  readonly mqtt = new FakeMqtt();
  readonly clock = new ManualClock();
  readonly app: DeviceApp;
  version = 1;
  /** Every firmwareUpdate reported, as "State to CODE". */
  readonly updates: string[] = [];

  constructor(extra: Partial<DeviceAppConfig> = {}) {
    this.flash.boot();
    const config: DeviceAppConfig = {
      cloud: "aws", thingName: "esp32-01", firmwareVersionPath: FW,
      ota: { source: { naming: "aws", baseUrl: "https://blobs.example/fw/", allowedHosts: ["blobs.example"] }, projectName: "shadow-ota", chipId: 0 },
      ...extra,
    };
    this.app = DeviceApp.start({ mqtt: this.mqtt, kv: this.kv, clock: this.clock, log: this.log, slot: new FakeSlot(this.flash), source: this.source, restart: this.restart, random: () => 0.5 }, config);
  }

  /** Answers the get in flight with this desired state (the device reports 1.0.0). */
  async answerGet(desired: JsonObject): Promise<void> {
    const get = this.mqtt.take().filter((m) => m.topic === `${P}/get`).pop();
    expect(get).toBeDefined();
    this.mqtt.deliver(`${P}/get/accepted`, { state: { desired, reported: { config: { firmware_version: "1.0.0" } } }, metadata: {}, version: this.version++, timestamp: 1, clientToken: JSON.parse(get!.payload).clientToken });
    await this.turns();
  }

  async connectWith(desired: JsonObject): Promise<void> {
    this.mqtt.connect();
    await settle();
    await this.answerGet(desired);
  }

  async delta(state: JsonObject): Promise<void> {
    this.mqtt.deliver(`${P}/update/delta`, { version: this.version++, timestamp: 1, state, metadata: {} });
    await this.turns();
  }

  /** Accepts the reports in flight (bounded), collecting their firmwareUpdate states. */
  async acceptReports(): Promise<void> {
    for (let i = 0; i < 60; i++) {
      const sent = this.mqtt.take().filter((m) => m.topic === `${P}/update`);
      if (sent.length === 0) return;
      for (const m of sent) {
        this.#collect(m.payload);
        this.mqtt.deliver(`${P}/update/accepted`, { state: JSON.parse(m.payload).state, metadata: {}, version: this.version++, timestamp: 1, clientToken: JSON.parse(m.payload).clientToken });
      }
      await this.turns();
    }
  }

  /** Refuses the report in flight with 409 (desired changed since the device's version: AWS's conditional
   *  update), as the cloud does after a revert; the sync then re-gets. */
  async conflictOnNextReport(): Promise<void> {
    const sent = this.mqtt.take();
    const report = sent.filter((m) => m.topic === `${P}/update`).pop();
    expect(report).toBeDefined();
    this.#collect(report!.payload);
    this.mqtt.deliver(`${P}/update/rejected`, { code: 409, message: "Version conflict", timestamp: 1, clientToken: JSON.parse(report!.payload).clientToken });
    await this.turns();
  }

  #collect(payload: string): void {
    const fu = (JSON.parse(payload).state.reported as JsonObject)["firmwareUpdate"] as JsonObject | undefined;
    if (fu === undefined) return;
    const code = (fu["lastError"] as JsonObject | null)?.["code"];
    this.updates.push(`${String(fu["state"])} ${String(fu["to"])}${typeof code === "string" ? ` ${code}` : ""}`);
  }

  async turns(n = 40): Promise<void> {
    for (let i = 0; i < n; i++) await settle();
  }
}

describe("a revert while downloading (AWS: no delta for it)", () => {
  it("the 409 on the next report re-gets desired: the download is cancelled, nothing is staged, Idle OTA_UPDATE_CANCELLED is reported", async () => {
    const d = new Device();
    d.source.faults.push({ kind: "stall", at: 8192 });
    await d.connectWith({ config: { firmware_version: "1.1.0" } });
    expect(d.app.ota.state).toBe("Downloading");
    expect(d.source.stalled).toBe(1);
    // The operator's revert: desired 1.0.0 again. AWS sends no delta (it equals reported); the device's next
    // report carries a stale version and is refused with 409, and the get that follows brings desired.
    await d.conflictOnNextReport();
    await d.answerGet({ config: { firmware_version: "1.0.0" } });
    await d.acceptReports();
    expect(d.app.ota.state).toBe("Idle");
    expect(d.app.ota.record.lastError?.code).toBe(UPDATE_CODES.OTA_UPDATE_CANCELLED);
    expect(d.updates[d.updates.length - 1]).toBe("Idle 1.1.0 OTA_UPDATE_CANCELLED");
    expect(d.app.ota.record.lastError?.message).toBe("update to 1.1.0 cancelled: desired names 1.0.0");
    expect(d.flash.next).toBeUndefined();
    expect(d.restart.reasons).toEqual([]);
  });

  it("desired that names no version at all cancels too, and the reported error says so", async () => {
    const d = new Device();
    d.source.faults.push({ kind: "stall", at: 8192 });
    await d.connectWith({ config: { firmware_version: "1.1.0" } });
    expect(d.app.ota.state).toBe("Downloading");
    await d.conflictOnNextReport();
    await d.answerGet({ config: {} });
    await d.acceptReports();
    expect(d.app.ota.state).toBe("Idle");
    expect(d.updates[d.updates.length - 1]).toBe("Idle 1.1.0 OTA_UPDATE_CANCELLED");
    expect(d.app.ota.record.lastError?.message).toBe("update to 1.1.0 cancelled: desired names no version");
  });

  it("the same version named again after the revert is handed on again and installed (no restart of the device needed)", async () => {
    const d = new Device();
    d.source.faults.push({ kind: "stall", at: 8192 });
    await d.connectWith({ config: { firmware_version: "1.1.0" } });
    await d.conflictOnNextReport();
    await d.answerGet({ config: { firmware_version: "1.0.0" } });
    await d.acceptReports();
    expect(d.app.ota.state).toBe("Idle");
    const opens = d.source.opens.length;
    await d.delta({ config: { firmware_version: "1.1.0" } });
    await d.acceptReports();
    await d.turns(200);
    await d.acceptReports();
    expect(d.source.opens.length).toBe(opens + 1);
    expect(d.source.opens[opens]).toMatchObject({ offset: 0 });
    expect(d.app.ota.state).toBe("Staged");
    expect(d.flash.next).toBe(1);
  });

  it("a reconnect's get that shows the revert cancels as well; a desired change of another leaf cancels nothing", async () => {
    const d = new Device();
    d.source.faults.push({ kind: "stall", at: 8192 });
    await d.connectWith({ config: { firmware_version: "1.1.0" } });
    await d.acceptReports();
    await d.delta({ config: { interval: 30 } });
    await d.acceptReports();
    expect(d.app.ota.state).toBe("Downloading");
    d.mqtt.disconnect();
    await d.turns();
    await d.connectWith({ config: { firmware_version: "1.0.0", interval: 30 } });
    await d.acceptReports();
    expect(d.app.ota.state).toBe("Idle");
    expect(d.updates[d.updates.length - 1]).toBe("Idle 1.1.0 OTA_UPDATE_CANCELLED");
  });
});

describe("a revert while the update gate holds the version", () => {
  it("AWS: the wait ends when a get shows the revert, and the same version named again waits for consent again", async () => {
    const d = new Device();
    await d.connectWith({ config: { firmware_version: "1.1.0" }, firmwareUpdatePolicy: { requireConsent: true } });
    await d.acceptReports();
    expect(d.app.gate.waiting).toBe("WaitingConsent");
    d.mqtt.disconnect();
    await d.turns();
    await d.connectWith({ config: { firmware_version: "1.0.0" }, firmwareUpdatePolicy: { requireConsent: true } });
    await d.acceptReports();
    expect(d.app.gate.waiting).toBeUndefined();
    // (the get's reported lacks firmwareUpdate, so the device first re-sends what it holds: WaitingConsent)
    expect(d.updates[0]).toBe("WaitingConsent 1.1.0");
    expect(d.updates[d.updates.length - 1]).toBe("Idle null");
    // Rolled out again: handed on again, so the gate waits (and reports) again; consent then starts it.
    await d.delta({ config: { firmware_version: "1.1.0" } });
    await d.acceptReports();
    expect(d.app.gate.waiting).toBe("WaitingConsent");
    expect(d.updates[d.updates.length - 1]).toBe("WaitingConsent 1.1.0");
    await d.delta({ firmwareUpdatePolicy: { accept: "1.1.0" } });
    await d.acceptReports();
    expect(d.source.opens).toHaveLength(1);
  });

  it("a revert the gate was not handed (the application's config hook threw on the same change) still stops the held version when its window opens", async () => {
    // ManualClock's wall clock starts at 22:13:20 UTC; the window opens at 22:30.
    const d = new Device({ acceptConfig: (path) => { if (path[1] === "mode") throw new Error("application bug"); return undefined; } });
    await d.connectWith({ config: { firmware_version: "1.1.0" }, firmwareUpdatePolicy: { window: "22:30-23:00" } });
    await d.acceptReports();
    expect(d.app.gate.waiting).toBe("WaitingWindow");
    // desired names a build of the running version (a revert) and a leaf the hook throws on, in one delta.
    await d.delta({ config: { firmware_version: "1.0.0+rebuilt", mode: "eco" } });
    expect(d.app.sync.getState().desired).toMatchObject({ config: { firmware_version: "1.0.0+rebuilt" } });
    d.clock.advance(20 * 60_000);
    await d.turns();
    await d.acceptReports();
    expect(d.source.opens).toHaveLength(0);
    expect(d.app.gate.waiting).toBeUndefined();
  });
});

describe("what a revert does not re-arm", () => {
  it("a version that rolled back stays refused when named again after a revert (ota.request.not-again)", async () => {
    const d = new Device();
    await d.connectWith({ config: { firmware_version: "1.1.0" } });
    await d.acceptReports();
    await d.turns(200);
    await d.acceptReports();
    expect(d.app.ota.state).toBe("Staged");
    // The restart into 1.1.0 is never confirmed: the bootloader goes back (as after a failed self-test).
    await d.app.close();
    d.flash.boot();
    d.flash.boot();
    const kv = d.kv;
    const flash = d.flash;
    const mqtt = new FakeMqtt();
    const app = DeviceApp.start({ mqtt, kv, clock: new ManualClock(), log: new MemoryLog(), slot: new FakeSlot(flash), source: d.source, restart: d.restart, random: () => 0.5 }, {
      cloud: "aws", thingName: "esp32-01", firmwareVersionPath: FW,
      ota: { source: { naming: "aws", baseUrl: "https://blobs.example/fw/", allowedHosts: ["blobs.example"] }, projectName: "shadow-ota", chipId: 0 },
    });
    expect(app.boot.state).toBe("RolledBack");
    const opens = d.source.opens.length;
    const deliverGet = async (desired: JsonObject, version: number): Promise<void> => {
      const get = mqtt.take().filter((m) => m.topic === `${P}/get`).pop()!;
      mqtt.deliver(`${P}/get/accepted`, { state: { desired, reported: { config: { firmware_version: "1.0.0" } } }, metadata: {}, version, timestamp: 1, clientToken: JSON.parse(get.payload).clientToken });
      for (let i = 0; i < 40; i++) await settle();
    };
    mqtt.connect();
    await settle();
    await deliverGet({ config: { firmware_version: "1.1.0" } }, 20);
    mqtt.disconnect();
    await settle();
    mqtt.connect();
    await settle();
    await deliverGet({ config: { firmware_version: "1.0.0" } }, 21); // the revert
    mqtt.deliver(`${P}/update/delta`, { version: 22, timestamp: 1, state: { config: { firmware_version: "1.1.0" } }, metadata: {} });
    for (let i = 0; i < 40; i++) await settle();
    expect(app.ota.state).toBe("RolledBack");
    expect(d.source.opens.length).toBe(opens);
    await app.close();
  });
});
