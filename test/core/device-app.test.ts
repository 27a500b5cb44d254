/**
 * DeviceApp (src/core/device-app.ts): the assembly every platform runs — OtaController, DeviceAgent and
 * ShadowSync wired together — seen from outside, as the cloud and the flash see it: the test plays the
 * AWS shadow service or the Azure twin on the fake transport, serves images from memory and powers the
 * device off and on over the same flash and key-value store. Jest subset only (runs on XS too).
 */
import { DeviceApp, type DeviceAppConfig, type DeviceAppHooks } from "../../src/core/device-app";
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";
import { FakeFlash, FakeSlot, FakeSource, fakeImage, RecordingRestart } from "./ota-fakes";

const P = "$aws/things/esp32-01/shadow";
const FW = ["config", "firmware_version"];

function awsConfig(over: Partial<DeviceAppConfig> = {}): DeviceAppConfig {
  return {
    cloud: "aws",
    thingName: "esp32-01",
    firmwareVersionPath: FW,
    ota: {
      source: { naming: "aws", baseUrl: "https://blobs.example/fw/", allowedHosts: ["blobs.example", "mirror.example"] },
      projectName: "shadow-ota",
      chipId: 0,
      retry: { initialMs: 1_000, maxMs: 8_000, maxAttempts: 3 },
      selfTestWindowMs: 60_000,
    },
    ...over,
  };
}

/** One device: flash and KV survive power cycles; the transport, clock and app are new at each power-on. */
class Device {
  readonly kv = new MemoryKv();
  readonly flash = new FakeFlash(fakeImage({ version: "1.0.0", size: 9_000 }));
  readonly source = new FakeSource(fakeImage({ version: "1.1.0" }));
  readonly restart = new RecordingRestart();
  readonly log = new MemoryLog();
  mqtt!: FakeMqtt;
  clock!: ManualClock;
  app!: DeviceApp;

  constructor(readonly config: DeviceAppConfig = awsConfig(), readonly hooks: DeviceAppHooks = {}) {
    this.powerOn();
  }

  powerOn(): void {
    this.flash.boot();
    this.mqtt = new FakeMqtt();
    this.clock = new ManualClock();
    const slot = new FakeSlot(this.flash);
    this.app = DeviceApp.start(
      { mqtt: this.mqtt, kv: this.kv, clock: this.clock, log: this.log, slot, source: this.source, restart: this.restart, random: () => 0.5 },
      this.config, this.hooks);
  }

  /** Connects and answers the get with `state` at `version`; returns the reported patches sent after it. */
  async connectWith(state: JsonObject, version: number, prefix = P): Promise<JsonObject[]> {
    this.mqtt.connect();
    await settle();
    const get = this.mqtt.take().pop()!;
    expect(get.topic).toBe(`${prefix}/get`);
    this.mqtt.deliver(`${prefix}/get/accepted`, { state, metadata: {}, version, timestamp: 1, clientToken: JSON.parse(get.payload).clientToken });
    await settle();
    return this.reports();
  }

  /** The reported patches published since the last call. */
  reports(): JsonObject[] {
    return this.mqtt.take().filter((m) => m.topic.endsWith("/update")).map((m) => JSON.parse(m.payload).state.reported as JsonObject);
  }

  /** Accepts the report in flight (the cloud's side), so the next queued one goes out. */
  async acceptLast(version: number, prefix = P): Promise<void> {
    const last = this.mqtt.last();
    this.mqtt.deliver(`${prefix}/update/accepted`, { state: last.json.state, metadata: {}, version, timestamp: 1, clientToken: last.json.clientToken });
    await settle();
  }

  /** Accepts every report until none is in flight, collecting them. */
  async acceptAll(firstVersion: number, sent: JsonObject[] = []): Promise<JsonObject[]> {
    let v = firstVersion;
    for (let i = 0; i < 50; i++) {
      const last = this.mqtt.published[this.mqtt.published.length - 1];
      if (last === undefined || !last.topic.endsWith("/update")) break;
      await this.acceptLast(v++);
      const more = this.reports();
      if (more.length === 0) break;
      sent.push(...more);
    }
    return sent;
  }
}

async function turns(n = 40): Promise<void> {
  for (let i = 0; i < n; i++) await settle();
}

describe("DeviceApp", () => {
  it("boots on the running image's descriptor version and reports it once connected and synced", async () => {
    const d = new Device();
    expect(d.app.boot.runningVersion).toBe("1.0.0");
    expect(d.app.boot.state).toBe("Idle");
    expect(d.mqtt.published).toEqual([]); // nothing goes out before the get completed
    const sent = await d.connectWith({ desired: {} }, 1);
    expect(sent).toEqual([{ config: { firmware_version: "1.0.0" } }]);
  });

  it("reports the running version where the Azure seed wants it, and uses its twin topics", async () => {
    const config = awsConfig({
      cloud: "azure", firmwareVersionPath: ["updateVersion"], reportedFirmwarePath: ["firmwareVersion"],
      ota: { ...awsConfig().ota, source: { naming: "azure", baseUrl: "https://blobs.example/fw/", allowedHosts: ["blobs.example"] } },
    });
    const d = new Device(config);
    d.mqtt.connect();
    await settle();
    const get = d.mqtt.take().pop()!;
    const rid = /\$rid=(.+)$/.exec(get.topic)![1];
    d.mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, { desired: { $version: 2 }, reported: { $version: 1 } });
    await settle();
    const patch = d.mqtt.take().find((m) => m.topic.startsWith("$iothub/twin/PATCH/properties/reported/"));
    expect(JSON.parse(patch!.payload)).toEqual({ firmwareVersion: "1.0.0" });
  });

  it("uses the configured shadow name", async () => {
    const d = new Device(awsConfig({ shadowName: "ota" }));
    const sent = await d.connectWith({}, 1, "$aws/things/esp32-01/shadow/name/ota");
    expect(sent).toEqual([{ config: { firmware_version: "1.0.0" } }]);
  });

  it("asks for the twin again when a get goes unanswered for the configured request timeout", async () => {
    const d = new Device(awsConfig({ requestTimeoutMs: 3_000 }));
    d.mqtt.connect();
    await settle();
    expect(d.mqtt.take().map((m) => m.topic)).toEqual([`${P}/get`]);
    d.clock.advance(2_999);
    await settle();
    expect(d.mqtt.take()).toEqual([]);
    d.clock.advance(1);
    await settle();
    expect(d.mqtt.take().map((m) => m.topic)).toEqual([`${P}/get`]);
  });

  it("updates itself from a desired version: download, restart, self-test after the first get, Valid", async () => {
    const requested: Array<{ version: string; running: string; newer: boolean }> = [];
    const desired: number[] = [];
    const d = new Device(awsConfig(), { onFirmwareRequested: (r) => requested.push(r), onDesired: (c) => desired.push(c.version) });
    const sent = await d.connectWith({ desired: { config: { firmware_version: "1.1.0" } }, reported: { config: { firmware_version: "1.0.0" } } }, 5);
    expect(requested).toEqual([{ version: "1.1.0", running: "1.0.0", newer: true }]);
    expect(desired).toEqual([5]);
    await turns();
    const all = await d.acceptAll(6, sent);
    const states = all.map((r) => (r["firmwareUpdate"] as JsonObject | undefined)?.["state"]).filter((s) => s !== undefined);
    expect(states[0]).toBe("Downloading");
    expect(states[states.length - 1]).toBe("Staged");
    expect(d.source.opens[0]!.url).toBe("https://blobs.example/fw/1.1.0.bin");
    expect(d.restart.reasons).toHaveLength(1);

    await d.app.close();
    d.powerOn();
    expect(d.app.boot).toEqual({ runningVersion: "1.1.0", state: "PendingVerify", partition: "ota_1" });
    const after = await d.connectWith({ desired: { config: { firmware_version: "1.1.0" } }, reported: { config: { firmware_version: "1.0.0" } } }, 20);
    await turns();
    const reported = await d.acceptAll(21, after);
    const last = reported.map((r) => r["firmwareUpdate"] as JsonObject | undefined).filter((u) => u !== undefined).pop()!;
    expect(last["state"]).toBe("Valid");
    expect(reported.some((r) => (r["config"] as JsonObject | undefined)?.["firmware_version"] === "1.1.0")).toBe(true);
    expect(d.flash.runningState).toBe("VALID");
  });

  it("reports the update's progress under the configured key", async () => {
    const d = new Device(awsConfig({ updateReportKey: "ota" }));
    const sent = await d.connectWith({ desired: { config: { firmware_version: "1.1.0" } }, reported: { config: { firmware_version: "1.0.0" } } }, 5);
    await turns();
    const all = await d.acceptAll(6, sent);
    expect(all.some((r) => r["ota"] !== undefined)).toBe(true);
    expect(all.some((r) => r["firmwareUpdate"] !== undefined)).toBe(false);
  });

  it("downloads from a base URL in desired state when firmwareBaseUrlPath is set and its host is allowed", async () => {
    const d = new Device(awsConfig({ firmwareBaseUrlPath: ["config", "firmware_base"] }));
    await d.connectWith({ desired: { config: { firmware_version: "1.1.0", firmware_base: "https://mirror.example/x/" } }, reported: { config: { firmware_version: "1.0.0" } } }, 5);
    await turns();
    expect(d.source.opens[0]!.url).toBe("https://mirror.example/x/1.1.0.bin");
  });

  it("falls back to the configured base URL when the desired one is not a string", async () => {
    const d = new Device(awsConfig({ firmwareBaseUrlPath: ["config", "firmware_base"] }));
    await d.connectWith({ desired: { config: { firmware_version: "1.1.0", firmware_base: 7 } }, reported: { config: { firmware_version: "1.0.0" } } }, 5);
    await turns();
    expect(d.source.opens[0]!.url).toBe("https://blobs.example/fw/1.1.0.bin");
  });

  it("ignores a base URL in desired state when firmwareBaseUrlPath is not configured", async () => {
    const d = new Device(awsConfig());
    await d.connectWith({ desired: { config: { firmware_version: "1.1.0" }, firmware_base: "https://mirror.example/x/" }, reported: { config: { firmware_version: "1.0.0" } } }, 5);
    await turns();
    expect(d.source.opens[0]!.url).toBe("https://blobs.example/fw/1.1.0.bin");
  });

  it("applies the configuration policy: a refused leaf goes to reported.lastError, the others are applied", async () => {
    const d = new Device(awsConfig({
      acceptConfig: (p) => (p.join(".") === "config.mode" ? new ShadowOtaError("CONFIG_VALUE_REFUSED", "mode is fixed") : undefined),
    }));
    const sent = await d.connectWith({ desired: { config: { mode: "eco", interval: 30 } }, reported: { config: { firmware_version: "1.0.0" } } }, 2);
    expect(sent).toEqual([{ lastError: { code: "CONFIG_VALUE_REFUSED", message: "mode is fixed" } }]);
    expect(await d.acceptAll(3)).toEqual([{ config: { interval: 30 } }]);
  });

  it("passes sync errors to the error hook as well as to the agent", async () => {
    const errors: string[] = [];
    const d = new Device(awsConfig(), { onError: (e) => errors.push(e.code) });
    await d.connectWith({ reported: { config: { firmware_version: "1.0.0" } } }, 2);
    d.mqtt.deliver(`${P}/update/delta`, "{not json");
    await settle();
    expect(errors).toEqual(["SYNC_JSON_INVALID"]);
    expect(d.reports()).toEqual([{ lastError: { code: "SYNC_JSON_INVALID", message: "payload is not valid JSON" } }]);
  });

  it("runs the application's check in the self-test and rolls back when it fails", async () => {
    const d = new Device(awsConfig(), { appCheck: () => "sensor missing" });
    const sent = await d.connectWith({ desired: { config: { firmware_version: "1.1.0" } }, reported: { config: { firmware_version: "1.0.0" } } }, 5);
    await turns();
    await d.acceptAll(6, sent);
    await d.app.close();
    d.powerOn();
    const after = await d.connectWith({ desired: { config: { firmware_version: "1.1.0" } } }, 20);
    await turns();
    await d.acceptAll(21, after);
    await turns();
    expect(d.flash.running).toBe(0); // markInvalidAndReboot took it back to the old image
    d.powerOn();
    expect(d.app.boot.runningVersion).toBe("1.0.0");
    expect(d.app.boot.state).toBe("RolledBack");
  });

  it("close() stops the sync and the controller, and is safe twice", async () => {
    const d = new Device();
    await d.connectWith({ desired: {} }, 1);
    await d.app.close();
    await d.app.close();
    expect(d.mqtt.closed).toBe(1);
    d.mqtt.connect();
    await settle();
    expect(d.mqtt.take()).toEqual([]);
  });
});
