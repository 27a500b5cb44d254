/**
 * The device's update policy (src/core/update-policy.ts): the window grammar and arithmetic, the policy
 * document, and the gate inside DeviceApp as the cloud sees it — an update held for consent until the
 * operator's `accept` arrives, one held until its window opens on the wall clock, a wait that ends when
 * desired goes back to the running version (a rollout's revert), an invalid policy reported with its code.
 * Jest subset only (runs on XS too).
 */
import { DeviceApp, type DeviceAppConfig } from "../../src/core/device-app";
import type { JsonObject } from "../../src/core/json";
import {
  decide, inWindow, localMinute, minutesUntilOpen, parsePolicy, parseWindow, CLOCK_SET_AFTER, UpdateGate,
} from "../../src/core/update-policy";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";
import { FakeFlash, FakeSlot, FakeSource, fakeImage, RecordingRestart } from "./ota-fakes";

const P = "$aws/things/esp32-01/shadow";
const FW = ["config", "firmware_version"];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

describe("update windows", () => {
  it("parses HH:MM-HH:MM and refuses anything else with POLICY_WINDOW_INVALID", () => {
    expect(parseWindow("02:00-04:00")).toEqual({ start: 120, end: 240 });
    expect(parseWindow("22:30-01:15")).toEqual({ start: 1350, end: 75 });
    for (const bad of ["", "2:00-4:00", "02:00-24:00", "02:60-03:00", "02:00", "02:00-02:00", "02:00 - 04:00", "aa:bb-cc:dd"]) {
      expect(codeOf(() => parseWindow(bad))).toBe("POLICY_WINDOW_INVALID");
    }
  });

  it("is open from start (inclusive) to end (exclusive), also across midnight", () => {
    const w = parseWindow("02:00-04:00");
    expect([119, 120, 239, 240].map((m) => inWindow(w, m))).toEqual([false, true, true, false]);
    const night = parseWindow("22:00-02:00");
    expect([1319, 1320, 1439, 0, 119, 120].map((m) => inWindow(night, m))).toEqual([false, true, true, true, true, false]);
    expect(minutesUntilOpen(w, 60)).toBe(60);
    expect(minutesUntilOpen(w, 240)).toBe(1320);
    expect(minutesUntilOpen(w, 130)).toBe(0);
  });

  it("takes local time from the wall clock and its offset; an unset clock (before SNTP) has none", () => {
    expect(localMinute(CLOCK_SET_AFTER + 3600, 0)).toBe(60);
    expect(localMinute(CLOCK_SET_AFTER + 3600, 120)).toBe(180);
    expect(localMinute(CLOCK_SET_AFTER + 30, -60)).toBe(1380);
    expect(localMinute(0, 0)).toBeUndefined();
    expect(localMinute(CLOCK_SET_AFTER - 1, 0)).toBeUndefined();
  });
});

describe("policy documents and decisions", () => {
  it("reads window, requireConsent and accept; refuses other members and types with a stable code", () => {
    expect(parsePolicy(undefined)).toEqual({ requireConsent: false });
    expect(parsePolicy(null)).toEqual({ requireConsent: false });
    expect(parsePolicy({ window: "02:00-04:00", requireConsent: true, accept: "1.1.0" }))
      .toEqual({ window: { start: 120, end: 240 }, windowText: "02:00-04:00", requireConsent: true, accept: "1.1.0" });
    expect(parsePolicy({ window: null, requireConsent: null, accept: null })).toEqual({ requireConsent: false });
    expect(codeOf(() => parsePolicy("x"))).toBe("POLICY_INVALID");
    expect(codeOf(() => parsePolicy({ requireConsent: "yes" }))).toBe("POLICY_INVALID");
    expect(codeOf(() => parsePolicy({ accept: 7 }))).toBe("POLICY_INVALID");
    expect(codeOf(() => parsePolicy({ other: 1 }))).toBe("POLICY_INVALID");
    expect(codeOf(() => parsePolicy({ window: 7 }))).toBe("POLICY_WINDOW_INVALID");
  });

  it("consent first, then the window; consent for another version is no consent", () => {
    const both = parsePolicy({ window: "02:00-04:00", requireConsent: true });
    expect(decide(both, "1.1.0", 150)).toEqual({ go: false, state: "WaitingConsent" });
    expect(decide({ ...both, accept: "1.2.0" }, "1.1.0", 150)).toEqual({ go: false, state: "WaitingConsent" });
    expect(decide({ ...both, accept: "1.1.0" }, "1.1.0", 60)).toEqual({ go: false, state: "WaitingWindow", inMinutes: 60 });
    expect(decide({ ...both, accept: "1.1.0" }, "1.1.0", undefined)).toEqual({ go: false, state: "WaitingWindow" });
    expect(decide({ ...both, accept: "1.1.0" }, "1.1.0", 150)).toEqual({ go: true });
    expect(decide(parsePolicy(undefined), "1.1.0", undefined)).toEqual({ go: true });
  });
});

/** ManualClock's wall clock starts at 1700000000 = 22:13:20 UTC; no UTC offset (local = UTC). */
const START_MINUTE = 22 * 60 + 13;

class Device {
  readonly kv = new MemoryKv();
  readonly flash = new FakeFlash(fakeImage({ version: "1.0.0", size: 9_000 }));
  readonly source = new FakeSource(fakeImage({ version: "1.1.0" }));
  readonly mqtt = new FakeMqtt();
  readonly clock = new ManualClock();
  readonly log = new MemoryLog();
  readonly app: DeviceApp;
  #version = 10;

  constructor() {
    this.flash.boot();
    const config: DeviceAppConfig = {
      cloud: "aws", thingName: "esp32-01", firmwareVersionPath: FW,
      ota: { source: { naming: "aws", baseUrl: "https://blobs.example/fw/", allowedHosts: ["blobs.example"] }, projectName: "shadow-ota", chipId: 0 },
    };
    this.app = DeviceApp.start({ mqtt: this.mqtt, kv: this.kv, clock: this.clock, log: this.log, slot: new FakeSlot(this.flash), source: this.source, restart: new RecordingRestart(), random: () => 0.5 }, config);
  }

  async connectWith(desired: JsonObject): Promise<void> {
    this.mqtt.connect();
    await settle();
    const get = this.mqtt.take().pop()!;
    this.mqtt.deliver(`${P}/get/accepted`, { state: { desired, reported: { config: { firmware_version: "1.0.0" } } }, metadata: {}, version: this.#version++, timestamp: 1, clientToken: JSON.parse(get.payload).clientToken });
    await this.turns();
  }

  async delta(state: JsonObject): Promise<void> {
    this.mqtt.deliver(`${P}/update/delta`, { version: this.#version++, timestamp: 1, state, metadata: {} });
    await this.turns();
  }

  /** Accepts reports until none is in flight; returns every firmwareUpdate state reported, in order. */
  async updates(): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < 60; i++) {
      const sent = this.mqtt.take().filter((m) => m.topic === `${P}/update`);
      if (sent.length === 0) break;
      for (const m of sent) {
        const fu = (JSON.parse(m.payload).state.reported as JsonObject)["firmwareUpdate"] as JsonObject | undefined;
        const code = (fu?.["lastError"] as JsonObject | null | undefined)?.["code"];
        if (fu !== undefined) out.push(`${String(fu["state"])}${fu["to"] === null ? "" : ` ${String(fu["to"])}`}${typeof code === "string" ? ` ${code}` : ""}`);
        this.mqtt.deliver(`${P}/update/accepted`, { state: JSON.parse(m.payload).state, metadata: {}, version: this.#version++, timestamp: 1, clientToken: JSON.parse(m.payload).clientToken });
      }
      await this.turns();
    }
    return out;
  }

  async turns(n = 30): Promise<void> {
    for (let i = 0; i < n; i++) await settle();
  }
}

describe("the update gate in the device app", () => {
  it("without a policy the update starts at once, as before", async () => {
    const d = new Device();
    await d.connectWith({ config: { firmware_version: "1.1.0" } });
    expect(d.source.opens).toHaveLength(1);
    expect((await d.updates())[0]).toBe("Downloading 1.1.0");
  });

  it("requireConsent: reports WaitingConsent and downloads nothing until desired accepts that version", async () => {
    const d = new Device();
    await d.connectWith({ config: { firmware_version: "1.1.0" }, firmwareUpdatePolicy: { requireConsent: true } });
    expect(await d.updates()).toEqual(["WaitingConsent 1.1.0"]);
    expect(d.source.opens).toHaveLength(0);
    expect(d.app.gate.waiting).toBe("WaitingConsent");
    await d.delta({ firmwareUpdatePolicy: { accept: "1.0.9" } }); // consent for another version: still waiting
    expect(d.source.opens).toHaveLength(0);
    expect(await d.updates()).toEqual([]);
    await d.delta({ firmwareUpdatePolicy: { accept: "1.1.0" } });
    expect(d.source.opens).toHaveLength(1);
    expect((await d.updates())[0]).toBe("Downloading 1.1.0");
    expect(d.app.gate.waiting).toBeUndefined();
  });

  it("window: reports WaitingWindow, and starts when the wall clock enters the window", async () => {
    const d = new Device();
    const open = (START_MINUTE + 30) % 1440;
    const hhmm = (m: number): string => `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
    await d.connectWith({ config: { firmware_version: "1.1.0" }, firmwareUpdatePolicy: { window: `${hhmm(open)}-${hhmm((open + 60) % 1440)}` } });
    expect(await d.updates()).toEqual(["WaitingWindow 1.1.0"]);
    d.clock.advance(29 * 60_000);
    await d.turns();
    expect(d.source.opens).toHaveLength(0);
    d.clock.advance(60_000);
    await d.turns();
    expect(d.source.opens).toHaveLength(1);
    expect((await d.updates())[0]).toBe("Downloading 1.1.0");
  });

  it("a wait ends when desired goes back to the running version: the controller's state is reported again", async () => {
    const d = new Device();
    await d.connectWith({ config: { firmware_version: "1.1.0" }, firmwareUpdatePolicy: { requireConsent: true } });
    expect(await d.updates()).toEqual(["WaitingConsent 1.1.0"]);
    // Back to the version the device reports: no delta for the application (ShadowSync's desired has it).
    await d.delta({ config: { firmware_version: "1.0.0" } });
    expect(d.app.sync.getState().desired).toMatchObject({ config: { firmware_version: "1.0.0" } });
    // The next desired change (here a late consent) ends the wait instead of starting the old version.
    await d.delta({ firmwareUpdatePolicy: { accept: "1.1.0" } });
    expect(await d.updates()).toEqual(["Idle"]);
    expect(d.app.gate.waiting).toBeUndefined();
    expect(d.source.opens).toHaveLength(0);
  });

  it("a window that opens after desired went back starts nothing", async () => {
    const d = new Device();
    await d.connectWith({ config: { firmware_version: "1.1.0" }, firmwareUpdatePolicy: { window: "23:00-23:30" } });
    expect(await d.updates()).toEqual(["WaitingWindow 1.1.0"]);
    await d.delta({ config: { firmware_version: "1.0.0" } });
    d.clock.advance(50 * 60_000);
    await d.turns();
    expect(d.source.opens).toHaveLength(0);
    expect(await d.updates()).toEqual(["Idle"]);
  });

  it("an invalid policy holds the update and is reported with its code", async () => {
    const d = new Device();
    await d.connectWith({ config: { firmware_version: "1.1.0" }, firmwareUpdatePolicy: { window: "2-4" } });
    expect(await d.updates()).toEqual(["Failed 1.1.0 POLICY_WINDOW_INVALID"]);
    expect(d.source.opens).toHaveLength(0);
    await d.delta({ firmwareUpdatePolicy: { window: null } }); // fixed: the update starts
    expect(d.source.opens).toHaveLength(1);
  });

  it("a version from a direct method (not in desired) is not taken for a revert; a later desired version ends its wait", () => {
    const clock = new ManualClock();
    const started: string[] = [];
    const reports: string[] = [];
    let desired: JsonObject = { updateVersion: "1.0.0" };
    const gate = new UpdateGate({ clock, log: new MemoryLog() }, {
      running: "1.0.0", firmwareVersionPath: ["updateVersion"], start: (v) => started.push(v),
      report: (u) => reports.push(String(u["state"])), otaReported: () => ({ state: "Idle" }), desired: () => desired,
    });
    gate.request("1.1.0", undefined, desired); // Azure direct method firmwareUpdate {"version":"1.1.0"}
    expect(started).toEqual(["1.1.0"]);
    desired = { updateVersion: "1.0.0", firmwareUpdatePolicy: { requireConsent: true } };
    gate.request("1.2.0", undefined, desired);
    expect(reports).toEqual(["WaitingConsent"]);
    desired = { ...desired, firmwareUpdatePolicy: { requireConsent: true, accept: "1.2.0" } };
    gate.onDesired(desired);
    expect(started).toEqual(["1.1.0", "1.2.0"]);
    gate.request("1.3.0", undefined, desired);
    desired = { updateVersion: "1.4.0", firmwareUpdatePolicy: { requireConsent: true } }; // desired moves on
    gate.onDesired(desired);
    expect(reports).toEqual(["WaitingConsent", "WaitingConsent", "Idle"]);
    expect(gate.waiting).toBeUndefined();
  });
});
