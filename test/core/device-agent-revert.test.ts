/**
 * DeviceAgent (src/core/device-agent.ts) and a revert: after a version was handed on, desired naming the
 * running version or none withdraws it (onFirmwareWithdrawn) and forgets the hand-over, so the same version
 * named again is handed on again. Driven through a real ShadowSync on the fake transport playing the Azure
 * twin (a desired PATCH back to the running version reaches onDesired) and the AWS shadow (no delta: the
 * desired document of a get response reaches onDesiredDocument). Jest subset only (runs on XS too).
 */
import { DeviceAgent } from "../../src/core/device-agent";
import type { JsonObject } from "../../src/core/json";
import { ShadowSync } from "../../src/core/shadow-sync";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";

function device(cloud: "aws" | "azure") {
  const mqtt = new FakeMqtt();
  const log = new MemoryLog();
  const events: string[] = [];
  const fw = cloud === "aws" ? ["config", "firmware_version"] : ["updateVersion"];
  const agent = new DeviceAgent({
    firmwareVersion: "1.0.0",
    firmwareVersionPath: fw,
    ...(cloud === "azure" ? { reportedFirmwarePath: ["firmwareVersion"] } : {}),
    onFirmwareRequested: (r) => { events.push(`request ${r.version}`); },
    onFirmwareWithdrawn: (w) => { events.push(`withdrawn ${w.version} (desired ${w.desired === undefined ? "absent" : JSON.stringify(w.desired)})`); },
  }, log);
  const sync = new ShadowSync({ mqtt, kv: new MemoryKv(), clock: new ManualClock(), log }, { cloud, thingName: "esp32-01", firmwareVersionPath: fw }, {
    onDesired: (c) => agent.onDesired(c),
    onError: (e) => agent.onError(e),
    onDesiredDocument: (d) => agent.onDesiredDocument(d),
  });
  agent.attach(sync);
  sync.start();
  return { mqtt, log, agent, sync, events };
}

async function turns(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await settle();
}

/** Azure: connect and answer the twin GET with `desired` at $version `v`. */
async function azureConnect(d: ReturnType<typeof device>, desired: JsonObject, v: number): Promise<void> {
  d.mqtt.connect();
  await turns();
  const get = d.mqtt.take().filter((m) => m.topic.startsWith("$iothub/twin/GET/")).pop()!;
  const rid = /\$rid=([^&]+)/.exec(get.topic)![1];
  d.mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, { desired: { ...desired, $version: v }, reported: { firmwareVersion: "1.0.0", $version: 1 } });
  await turns();
}

function azurePatch(d: ReturnType<typeof device>, patch: JsonObject, v: number): Promise<void> {
  d.mqtt.deliver(`$iothub/twin/PATCH/properties/desired/?$version=${v}`, { ...patch, $version: v });
  return turns();
}

/** AWS: connect and answer the get with `desired` at `v` (the device reports 1.0.0). */
async function awsConnect(d: ReturnType<typeof device>, desired: JsonObject, v: number): Promise<void> {
  d.mqtt.connect();
  await turns();
  const get = d.mqtt.take().filter((m) => m.topic.endsWith("/get")).pop()!;
  d.mqtt.deliver("$aws/things/esp32-01/shadow/get/accepted", { state: { desired, reported: { config: { firmware_version: "1.0.0" } } }, metadata: {}, version: v, timestamp: 1, clientToken: JSON.parse(get.payload).clientToken });
  await turns();
}

describe("a revert withdraws the handed-on version", () => {
  it("Azure: desired back to the running version withdraws; the same version again is handed on again", async () => {
    const d = device("azure");
    await azureConnect(d, { updateVersion: "1.1.0" }, 2);
    await azurePatch(d, { updateVersion: "1.0.0" }, 3);
    await azurePatch(d, { updateVersion: "1.1.0" }, 4);
    expect(d.events).toEqual(["request 1.1.0", 'withdrawn 1.1.0 (desired "1.0.0")', "request 1.1.0"]);
    await d.sync.close();
  });

  it("Azure: desired version removed (null) withdraws too", async () => {
    const d = device("azure");
    await azureConnect(d, { updateVersion: "1.1.0" }, 2);
    await azurePatch(d, { updateVersion: null }, 3);
    expect(d.events).toEqual(["request 1.1.0", "withdrawn 1.1.0 (desired absent)"]);
    await d.sync.close();
  });

  it("AWS: a get response whose desired names the running version (no delta) withdraws", async () => {
    const d = device("aws");
    await awsConnect(d, { config: { firmware_version: "1.1.0" } }, 2);
    d.mqtt.disconnect();
    await turns();
    await awsConnect(d, { config: { firmware_version: "1.0.0" } }, 5);
    expect(d.events).toEqual(["request 1.1.0", 'withdrawn 1.1.0 (desired "1.0.0")']);
    expect(d.log.lines.filter((l) => l.event === "agent.firmware.withdrawn")).toHaveLength(1);
    await d.sync.close();
  });
});

describe("AWS: desired changed by someone else, without a delta", () => {
  it("an update/accepted that is not the device's and carries desired makes the sync get the document: the revert withdraws", async () => {
    const d = device("aws");
    await awsConnect(d, { config: { firmware_version: "1.1.0" } }, 2);
    d.mqtt.take();
    // The device's own kind of accepted (reported only, no token of its own): nothing to get.
    d.mqtt.deliver("$aws/things/esp32-01/shadow/update/accepted", { state: { reported: { x: 1 } }, metadata: {}, version: 3, timestamp: 1 });
    await turns();
    expect(d.mqtt.take().filter((m) => m.topic.endsWith("/get"))).toHaveLength(0);
    // The rollout engine puts desired back through the service API: AWS publishes update/accepted, no delta.
    d.mqtt.deliver("$aws/things/esp32-01/shadow/update/accepted", { state: { desired: { config: { firmware_version: "1.0.0" } } }, metadata: {}, version: 4, timestamp: 1 });
    await turns();
    const get = d.mqtt.take().filter((m) => m.topic.endsWith("/get")).pop();
    expect(get).toBeDefined();
    d.mqtt.deliver("$aws/things/esp32-01/shadow/get/accepted", { state: { desired: { config: { firmware_version: "1.0.0" } }, reported: { config: { firmware_version: "1.0.0" } } }, metadata: {}, version: 4, timestamp: 1, clientToken: JSON.parse(get!.payload).clientToken });
    await turns();
    expect(d.events).toEqual(["request 1.1.0", 'withdrawn 1.1.0 (desired "1.0.0")']);
    expect(d.log.lines.filter((l) => l.event === "sync.desired.changed-elsewhere")).toHaveLength(1);
    // An accepted already covered (its version not newer than what the sync has seen) gets nothing.
    d.mqtt.deliver("$aws/things/esp32-01/shadow/update/accepted", { state: { desired: { config: { firmware_version: "1.0.0" } } }, metadata: {}, version: 4, timestamp: 1 });
    await turns();
    expect(d.mqtt.take().filter((m) => m.topic.endsWith("/get"))).toHaveLength(0);
    await d.sync.close();
  });
});

describe("what is not a revert", () => {
  it("another leaf changing, another version, or an invalid version: nothing withdrawn", async () => {
    const d = device("azure");
    await azureConnect(d, { updateVersion: "1.1.0" }, 2);
    await azurePatch(d, { interval: 30 }, 3);
    await azurePatch(d, { updateVersion: "1.1.0-x!" }, 4);
    await azurePatch(d, { updateVersion: "1.2.0" }, 5);
    expect(d.events).toEqual(["request 1.1.0", "request 1.2.0"]);
    await d.sync.close();
  });

  it("a direct method's version (never in desired) is not withdrawn by desired changes that leave the version absent", async () => {
    const d = device("azure");
    await azureConnect(d, {}, 2);
    d.mqtt.deliver("$iothub/methods/POST/firmwareUpdate/?$rid=7", { version: "1.1.0" });
    await turns();
    await azurePatch(d, { interval: 30 }, 3);
    expect(d.events).toEqual(["request 1.1.0"]);
    // An explicit revert in desired still withdraws it.
    await azurePatch(d, { updateVersion: "1.0.0" }, 4);
    expect(d.events).toEqual(["request 1.1.0", 'withdrawn 1.1.0 (desired "1.0.0")']);
    await d.sync.close();
  });

  it("a document handed in with an explicit null version withdraws, and the log names what desired says", () => {
    const d = device("aws");
    const change = (v: string) => ({ desired: { config: { firmware_version: v } }, delta: { config: { firmware_version: v } }, changed: [["config", "firmware_version"]], version: 3, firmwareVersion: v });
    d.agent.onDesired(change("1.1.0"));
    d.agent.onDesiredDocument({ config: { firmware_version: null } });
    d.agent.onDesired(change("1.2.0"));
    d.agent.onDesiredDocument({ config: { firmware_version: "1.0.0+rebuilt" } });
    expect(d.events).toEqual(["request 1.1.0", "withdrawn 1.1.0 (desired null)", "request 1.2.0", 'withdrawn 1.2.0 (desired "1.0.0+rebuilt")']);
    expect(d.log.lines.filter((l) => l.event === "agent.firmware.withdrawn")).toEqual([
      { level: "info", event: "agent.firmware.withdrawn", fields: { version: "1.1.0", desired: null } },
      { level: "info", event: "agent.firmware.withdrawn", fields: { version: "1.2.0", desired: "1.0.0+rebuilt" } },
    ]);
  });

  it("nothing handed on: a desired document naming the running version withdraws nothing", () => {
    const d = device("aws");
    d.agent.onDesiredDocument({ config: { firmware_version: "1.0.0" } });
    d.agent.onDesiredDocument({});
    expect(d.events).toEqual([]);
  });
});
