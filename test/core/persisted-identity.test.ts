/**
 * Persisted device state belongs to one identity (cloud, thing, shadow name): a device that was AWS thing A
 * and restarts, with the same key-value store and flash, as Azure device B (an ESP32 re-provisioned without
 * erasing NVS, or the Moddable simulator, whose preferences outlive builds) reports nothing of A into B's
 * twin, and says in its log that it dropped A's state. The whole DeviceApp on fake ports, seen as the clouds
 * see it; then ShadowSync alone for the stamp's rules. Jest subset only (runs on XS too).
 */
import { DeviceApp, type DeviceAppConfig } from "../../src/core/device-app";
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { ShadowSync, SYNC_KV_KEYS, syncIdentity, type ShadowSyncConfig } from "../../src/core/shadow-sync";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";
import { FakeFlash, FakeSlot, FakeSource, fakeImage, RecordingRestart } from "./ota-fakes";

const A = "$aws/things/thing-a/shadow";
const OTA: DeviceAppConfig["ota"] = {
  source: { naming: "aws", baseUrl: "https://blobs.example/fw/", allowedHosts: ["blobs.example"] },
  projectName: "shadow-ota",
  chipId: 0,
  retry: { initialMs: 1_000, maxMs: 8_000, maxAttempts: 3 },
  selfTestWindowMs: 60_000,
};
const AWS_A: DeviceAppConfig = { cloud: "aws", thingName: "thing-a", firmwareVersionPath: ["config", "firmware_version"], ota: OTA };
const AZURE_B: DeviceAppConfig = {
  cloud: "azure", thingName: "device-b", firmwareVersionPath: ["updateVersion"], reportedFirmwarePath: ["firmwareVersion"],
  ota: { ...OTA, source: { naming: "azure", baseUrl: "https://blobs.example/fw/", allowedHosts: ["blobs.example"] } },
};

/** One board: NVS and flash survive power cycles; each power-on may run another configuration. */
class Board {
  readonly kv = new MemoryKv();
  readonly flash = new FakeFlash(fakeImage({ version: "1.0.0", size: 9_000 }));
  log = new MemoryLog();
  mqtt = new FakeMqtt();
  app: DeviceApp | undefined;

  async powerOn(config: DeviceAppConfig): Promise<void> {
    await this.app?.close();
    this.flash.boot();
    this.mqtt = new FakeMqtt();
    this.log = new MemoryLog();
    this.app = DeviceApp.start({
      mqtt: this.mqtt, kv: this.kv, clock: new ManualClock(), log: this.log, slot: new FakeSlot(this.flash),
      source: new FakeSource(fakeImage({ version: "1.1.0" })), restart: new RecordingRestart(), random: () => 0.5,
    }, config);
  }
}

async function turns(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await settle();
}

/** Plays AWS for thing A: answers the get with `desired`, accepts every report; returns the reported patches. */
async function runAsAwsA(b: Board, desired: JsonObject): Promise<JsonObject[]> {
  b.mqtt.connect();
  await settle();
  const get = b.mqtt.take().pop()!;
  expect(get.topic).toBe(`${A}/get`);
  b.mqtt.deliver(`${A}/get/accepted`, { state: { desired }, metadata: {}, version: 3, clientToken: JSON.parse(get.payload).clientToken });
  const sent: JsonObject[] = [];
  for (let v = 4; v < 30; v++) {
    await turns();
    const reports = b.mqtt.take().filter((m) => m.topic === `${A}/update`);
    if (reports.length === 0) break;
    for (const r of reports) {
      const doc = JSON.parse(r.payload);
      sent.push(doc.state.reported);
      b.mqtt.deliver(`${A}/update/accepted`, { state: doc.state, metadata: {}, version: v, clientToken: doc.clientToken });
    }
  }
  return sent;
}

/** Plays IoT Hub for device B: answers the GET with an empty twin, accepts every PATCH; returns the patches. */
async function runAsAzureB(b: Board): Promise<JsonObject[]> {
  b.mqtt.connect();
  await settle();
  const get = b.mqtt.take().pop()!;
  const rid = /^\$iothub\/twin\/GET\/\?\$rid=(.+)$/.exec(get.topic)![1];
  b.mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, { desired: { $version: 1 }, reported: { $version: 1 } });
  const sent: JsonObject[] = [];
  for (let v = 2; v < 30; v++) {
    await turns();
    const patches = b.mqtt.take().filter((m) => m.topic.startsWith("$iothub/twin/PATCH/properties/reported/"));
    if (patches.length === 0) break;
    for (const p of patches) {
      sent.push(JSON.parse(p.payload));
      const prid = /\$rid=(.+)$/.exec(p.topic)![1];
      b.mqtt.deliver(`$iothub/twin/res/204/?$rid=${prid}&$version=${v}`, "");
    }
  }
  return sent;
}

describe("a board that was AWS thing A restarts as Azure device B on the same NVS", () => {
  it("B's twin receives nothing of A (config, lastError), and the log says A's state was discarded", async () => {
    const b = new Board();
    await b.powerOn(AWS_A);
    const fromA = await runAsAwsA(b, { config: { interval: 30, firmware_version: "1.3.0/../../x" } });
    // A reported its config and a refused firmware version, and persisted them.
    expect(fromA.some((r) => r["lastError"] !== undefined)).toBe(true);
    expect(JSON.parse(b.kv.get(SYNC_KV_KEYS.REPORTED)!)).toMatchObject({ lastError: { code: "SYNC_FIRMWARE_VERSION_INVALID" } });

    await b.powerOn(AZURE_B);
    const discarded = b.log.lines.filter((l) => l.event === "sync.persisted.discarded");
    expect(discarded).toHaveLength(1);
    expect(discarded[0]!.level).toBe("warn");
    expect(discarded[0]!.fields).toEqual({
      reason: "persisted state belongs to another identity",
      stored: '["aws","thing-a",""]', identity: '["azure","device-b",""]', keys: ["rep", "ver"],
    });
    expect(b.app!.sync.getState()).toMatchObject({ reported: {}, version: 0 });

    const toB = await runAsAzureB(b);
    expect(toB).toEqual([{ firmwareVersion: "1.0.0" }]);
    const text = JSON.stringify(toB);
    for (const a of ["config", "lastError", "interval", "firmware_version", "1.3.0"]) expect(text).not.toContain(a);
    // What B persisted is B's, stamped as B's.
    expect(b.kv.get(SYNC_KV_KEYS.IDENTITY)).toBe('["azure","device-b",""]');
    expect(JSON.parse(b.kv.get(SYNC_KV_KEYS.REPORTED)!)).toEqual({ firmwareVersion: "1.0.0" });
  });

  it("back as A, A's old state is gone too (it was deleted, not hidden), and B's is discarded in turn", async () => {
    const b = new Board();
    await b.powerOn(AWS_A);
    await runAsAwsA(b, { config: { interval: 30 } });
    await b.powerOn(AZURE_B);
    await runAsAzureB(b);
    await b.powerOn(AWS_A);
    expect(b.log.lines.filter((l) => l.event === "sync.persisted.discarded").map((l) => l.fields!["stored"])).toEqual(['["azure","device-b",""]']);
    const again = await runAsAwsA(b, {});
    expect(JSON.stringify(again)).not.toContain("firmwareVersion");
    expect(again).toEqual([{ config: { firmware_version: "1.0.0" } }]);
  });

  it("the same identity after a restart keeps its state and logs no discard", async () => {
    const b = new Board();
    await b.powerOn(AWS_A);
    await runAsAwsA(b, { config: { interval: 30 } });
    await b.powerOn(AWS_A);
    expect(b.log.lines.some((l) => l.event === "sync.persisted.discarded")).toBe(false);
    expect(b.app!.sync.getState()).toMatchObject({ reported: { config: { firmware_version: "1.0.0", interval: 30 } }, version: 3 });
  });
});

describe("ShadowSync: whose state it reads", () => {
  function sync(kv: MemoryKv, over: Partial<ShadowSyncConfig> = {}) {
    const log = new MemoryLog();
    const errors: string[] = [];
    const s = new ShadowSync({ mqtt: new FakeMqtt(), kv, clock: new ManualClock(), log },
      { cloud: "aws", thingName: "esp32-01", firmwareVersionPath: ["fw"], ...over },
      { onDesired: () => undefined, onError: (e) => { errors.push(e.code); } });
    return { s, log, errors };
  }
  const seeded = (identity: string | undefined): MemoryKv => {
    const kv = new MemoryKv();
    if (identity !== undefined) kv.set(SYNC_KV_KEYS.IDENTITY, identity);
    kv.set(SYNC_KV_KEYS.REPORTED, '{"a":1}');
    kv.set(SYNC_KV_KEYS.VERSION, "7");
    return kv;
  };

  it("the identity names the cloud, the thing and the shadow, so no two configurations share one", () => {
    expect(syncIdentity({ cloud: "aws", thingName: "esp32-01" })).toBe('["aws","esp32-01",""]');
    expect(syncIdentity({ cloud: "aws", thingName: "esp32-01", shadowName: "ota" })).toBe('["aws","esp32-01","ota"]');
    expect(syncIdentity({ cloud: "azure", thingName: "esp32-01" })).not.toBe(syncIdentity({ cloud: "aws", thingName: "esp32-01" }));
  });

  it("its own stamp: the state is read and nothing is written", () => {
    const kv = seeded('["aws","esp32-01",""]');
    const writes = kv.writes;
    const { s, log } = sync(kv);
    expect(s.getState()).toMatchObject({ reported: { a: 1 }, version: 7 });
    expect(kv.writes).toBe(writes);
    expect(log.lines).toEqual([]);
  });

  it("another shadow of the same thing is another identity", () => {
    const kv = seeded('["aws","esp32-01",""]');
    const { s, log } = sync(kv, { shadowName: "ota" });
    expect(s.getState()).toMatchObject({ reported: {}, version: 0 });
    expect(log.lines.map((l) => [l.level, l.event, l.fields!["stored"], l.fields!["identity"]]))
      .toEqual([["warn", "sync.persisted.discarded", '["aws","esp32-01",""]', '["aws","esp32-01","ota"]']]);
    expect([...kv.data.entries()]).toEqual([[SYNC_KV_KEYS.IDENTITY, '["aws","esp32-01","ota"]']]);
  });

  it("state without a stamp (written before stamps existed) is discarded: whose it is cannot be known", () => {
    const kv = seeded(undefined);
    const { s, log } = sync(kv);
    expect(s.getState()).toMatchObject({ reported: {}, version: 0 });
    expect(log.lines[0]!.fields).toEqual({ reason: "persisted state carries no identity", stored: null, identity: '["aws","esp32-01",""]', keys: ["rep", "ver"] });
    expect(kv.get(SYNC_KV_KEYS.REPORTED)).toBeUndefined();
    expect(kv.get(SYNC_KV_KEYS.IDENTITY)).toBe('["aws","esp32-01",""]');
  });

  it("a fresh store is stamped silently; only the keys present are named", () => {
    const fresh = new MemoryKv();
    const { log } = sync(fresh);
    expect(log.lines).toEqual([]);
    expect([...fresh.data.entries()]).toEqual([[SYNC_KV_KEYS.IDENTITY, '["aws","esp32-01",""]']]);

    const onlyVer = new MemoryKv();
    onlyVer.set(SYNC_KV_KEYS.VERSION, "3");
    expect(sync(onlyVer).log.lines[0]!.fields!["keys"]).toEqual(["ver"]);
  });

  it("a store that refuses the delete is not stamped, so the next boot discards again; a coded refusal is raised", () => {
    const kv = seeded('["azure","other",""]');
    const realDelete = kv.delete.bind(kv);
    kv.delete = () => { throw new Error("nvs: write failed"); };
    const first = sync(kv);
    expect(first.s.getState().reported).toEqual({});
    expect(first.log.lines.map((l) => [l.event, l.fields!["key"] ?? null])).toEqual([["sync.persisted.discarded", null], ["sync.persist-failed", "rep"]]);
    expect(kv.get(SYNC_KV_KEYS.IDENTITY)).toBe('["azure","other",""]');
    first.s.start();
    expect(first.errors).toEqual([]); // a plain error is logged, not raised

    kv.delete = realDelete;
    const realSet = kv.set.bind(kv);
    kv.set = () => { throw new ShadowOtaError("KV_FULL", "nvs: no space"); };
    const second = sync(kv);
    expect(second.log.lines.map((l) => [l.event, l.fields!["key"] ?? null])).toEqual([["sync.persisted.discarded", null], ["sync.persist-failed", "sid"]]);
    second.s.start();
    expect(second.errors).toEqual(["KV_FULL"]);
    expect(kv.get(SYNC_KV_KEYS.REPORTED)).toBeUndefined();
    kv.set = realSet;
    const third = sync(kv);
    expect(third.log.lines).toEqual([]); // nothing of the other identity left, so nothing to say
    expect(kv.get(SYNC_KV_KEYS.IDENTITY)).toBe('["aws","esp32-01",""]');
  });
});
