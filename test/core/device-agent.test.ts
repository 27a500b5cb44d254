/**
 * DeviceAgent (src/core/device-agent.ts) driven through a real ShadowSync on the fake transport: the test
 * plays the AWS shadow service and the Azure twin. Jest subset only (runs on XS too).
 */
import { DeviceAgent, type DeviceAgentOptions } from "../../src/core/device-agent";
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { ShadowSync } from "../../src/core/shadow-sync";
import { SYNC_CODES } from "../../src/core/sync-errors";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";

const P = "$aws/things/esp32-01/shadow";
const FW = ["config", "firmware_version"];

function awsDevice(options: Partial<DeviceAgentOptions> = {}, kv = new MemoryKv()) {
  const mqtt = new FakeMqtt();
  const log = new MemoryLog();
  const requests: Array<{ version: string; newer: boolean }> = [];
  const agent = new DeviceAgent({
    firmwareVersion: "1.0.0",
    firmwareVersionPath: FW,
    onFirmwareRequested: (r) => { requests.push({ version: r.version, newer: r.newer }); },
    ...options,
  }, log);
  const sync = new ShadowSync({ mqtt, kv, clock: new ManualClock(), log }, { cloud: "aws", thingName: "esp32-01", firmwareVersionPath: FW }, agent);
  agent.attach(sync);
  sync.start();
  return { mqtt, log, kv, agent, sync, requests };
}

/** Connects, answers the get with `state` at `version`, and returns what the device published after that. */
async function connectWith(mqtt: FakeMqtt, state: JsonObject, version: number) {
  mqtt.connect();
  await settle();
  const get = mqtt.take().pop()!;
  expect(get.topic).toBe(`${P}/get`);
  mqtt.deliver(`${P}/get/accepted`, { state, metadata: {}, version, timestamp: 1, clientToken: JSON.parse(get.payload).clientToken });
  await settle();
  return mqtt.take().map((m) => ({ topic: m.topic, json: JSON.parse(m.payload) }));
}

/** Accepts the in-flight report (the last update published) at `version`. */
async function accept(mqtt: FakeMqtt, version: number): Promise<void> {
  const last = mqtt.last();
  mqtt.deliver(`${P}/update/accepted`, { state: last.json.state, metadata: {}, version, timestamp: 1, clientToken: last.json.clientToken });
  await settle();
}

describe("DeviceAgent on AWS", () => {
  it("reports the running firmware version at start and on connect", async () => {
    const { mqtt } = awsDevice();
    const sent = await connectWith(mqtt, { desired: { config: { firmware_version: "1.0.0" } } }, 3);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.topic).toBe(`${P}/update`);
    expect(sent[0]!.json.state.reported).toEqual({ config: { firmware_version: "1.0.0" } });
  });

  it("applies desired configuration by reporting it, leaving the firmware version to the OTA hook", async () => {
    const { mqtt, requests } = awsDevice();
    const sent = await connectWith(mqtt, {
      desired: { config: { firmware_version: "1.1.0", interval: 60, led: { color: "red" } } },
      reported: { config: { firmware_version: "1.0.0" } },
    }, 5);
    expect(requests).toEqual([{ version: "1.1.0", newer: true }]);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.json.state.reported).toEqual({ config: { interval: 60, led: { color: "red" } } });
  });

  it("hands a firmware version on once, though AWS republishes the delta after the device's own report", async () => {
    const { mqtt, requests } = awsDevice();
    await connectWith(mqtt, { desired: { config: { firmware_version: "1.1.0", interval: 60 } }, reported: { config: { firmware_version: "1.0.0" } } }, 5);
    await accept(mqtt, 6);
    mqtt.deliver(`${P}/update/delta`, { version: 6, timestamp: 1, state: { config: { firmware_version: "1.1.0" } }, metadata: {} });
    await settle();
    expect(requests).toEqual([{ version: "1.1.0", newer: true }]);
    mqtt.deliver(`${P}/update/delta`, { version: 7, timestamp: 1, state: { config: { firmware_version: "1.2.0" } }, metadata: {} });
    await settle();
    expect(requests).toEqual([{ version: "1.1.0", newer: true }, { version: "1.2.0", newer: true }]);
  });

  it("hands a downgrade to the hook as not newer (policy belongs to OTA)", async () => {
    const { mqtt, requests } = awsDevice({ firmwareVersion: "2.0.0" });
    await connectWith(mqtt, { desired: { config: { firmware_version: "1.9.9" } }, reported: { config: { firmware_version: "2.0.0" } } }, 2);
    expect(requests).toEqual([{ version: "1.9.9", newer: false }]);
  });

  it("logs a firmware request it has no hook for, and reports nothing for it", async () => {
    const { mqtt, log } = awsDevice({ onFirmwareRequested: undefined });
    const sent = await connectWith(mqtt, { desired: { config: { firmware_version: "1.1.0" } }, reported: { config: { firmware_version: "1.0.0" } } }, 2);
    expect(sent).toEqual([]);
    expect(log.has("agent.firmware.unhandled")).toBe(true);
  });

  it("reports a refused configuration leaf in lastError and applies the others", async () => {
    const { mqtt } = awsDevice({
      acceptConfig: (p, v) => (p.join(".") === "config.interval" && typeof v === "number" && v < 10
        ? new ShadowOtaError("CONFIG_VALUE_REFUSED", "interval must be at least 10 s") : undefined),
    });
    await connectWith(mqtt, { desired: { config: { interval: 1, mode: "eco" } }, reported: { config: { firmware_version: "1.0.0" } } }, 2);
    const first = mqtt.last();
    expect(first.json.state.reported).toEqual({ lastError: { code: "CONFIG_VALUE_REFUSED", message: "interval must be at least 10 s" } });
    await accept(mqtt, 3);
    expect(mqtt.last().json.state.reported).toEqual({ config: { mode: "eco" } });
  });

  it("reports a malformed delta in lastError once, however often it comes", async () => {
    const { mqtt, log } = awsDevice();
    await connectWith(mqtt, { reported: { config: { firmware_version: "1.0.0" } } }, 2);
    for (let i = 0; i < 3; i++) mqtt.deliver(`${P}/update/delta`, "{not json");
    await settle();
    const all = mqtt.take();
    expect(log.has("sync.handler-threw")).toBe(false);
    const reports = all.filter((m) => m.topic === `${P}/update`).map((m) => JSON.parse(m.payload).state.reported);
    expect(reports).toEqual([{ lastError: { code: SYNC_CODES.SYNC_JSON_INVALID, message: "payload is not valid JSON" } }]);
  });

  it("does not report an invalid desired firmware version twice (ShadowSync reports it)", async () => {
    const { mqtt, requests } = awsDevice();
    const sent = await connectWith(mqtt, { desired: { config: { firmware_version: "1.1.0/../../x" } }, reported: { config: { firmware_version: "1.0.0" } } }, 2);
    expect(requests).toEqual([]);
    const errors = sent.filter((m) => m.json.state?.reported?.lastError !== undefined);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.json.state.reported.lastError.code).toBe(SYNC_CODES.SYNC_FIRMWARE_VERSION_INVALID);
  });

  it("only logs transport-level errors", () => {
    const { agent, log, mqtt } = awsDevice();
    agent.onError(new ShadowOtaError(SYNC_CODES.SYNC_TIMEOUT, "no answer"));
    expect(mqtt.published).toEqual([]);
    expect(log.has("agent.error.not-reported")).toBe(true);
  });

  it("refuses a running version that is not strict SemVer", () => {
    expect(() => new DeviceAgent({ firmwareVersion: "v1", firmwareVersionPath: FW }, new MemoryLog())).toThrow(ShadowOtaError);
  });

  it("keeps the reported version across a reboot (nothing re-sent when the cloud has it)", async () => {
    const kv = new MemoryKv();
    const first = awsDevice({}, kv);
    await connectWith(first.mqtt, {}, 1);
    await accept(first.mqtt, 2);
    await first.sync.close();
    const second = awsDevice({}, kv);
    const sent = await connectWith(second.mqtt, { reported: { config: { firmware_version: "1.0.0" } } }, 2);
    expect(sent).toEqual([]);
  });
});

describe("DeviceAgent on Azure", () => {
  it("reports firmwareVersion and hands updateVersion to the hook", async () => {
    const mqtt = new FakeMqtt();
    const log = new MemoryLog();
    const requests: string[] = [];
    const agent = new DeviceAgent({
      firmwareVersion: "1.0.0", firmwareVersionPath: ["updateVersion"], reportedFirmwarePath: ["firmwareVersion"],
      onFirmwareRequested: (r) => { requests.push(r.version); },
    }, log);
    const sync = new ShadowSync({ mqtt, kv: new MemoryKv(), clock: new ManualClock(), log },
      { cloud: "azure", thingName: "esp32-01", firmwareVersionPath: ["updateVersion"] }, agent);
    agent.attach(sync);
    sync.start();
    mqtt.connect();
    await settle();
    const get = mqtt.take().pop()!;
    const rid = /\$rid=(.+)$/.exec(get.topic)![1];
    mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, { desired: { updateVersion: "1.1.0", $version: 4 }, reported: { $version: 1 } });
    await settle();
    expect(requests).toEqual(["1.1.0"]);
    const patch = mqtt.take().find((m) => m.topic.startsWith("$iothub/twin/PATCH/properties/reported/"));
    expect(JSON.parse(patch!.payload)).toEqual({ firmwareVersion: "1.0.0" });
  });
});
