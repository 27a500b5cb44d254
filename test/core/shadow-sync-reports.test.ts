/**
 * ShadowSync (src/core/shadow-sync.ts), what the cloud receives and when, in the cases shadow-sync.test.ts
 * leaves open: no report before the first get completes, which reports carry the shadow `version`, a
 * reported state too large for the key-value store, and which desired changes are handed to the
 * application again (get responses always, notifications only when the delta changed). The test plays the
 * AWS shadow service on the fake transport. Jest subset only (runs on XS too).
 */
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { KV_VALUE_MAX_BYTES, ShadowSync, SYNC_KV_KEYS, type DesiredChange, type ShadowSyncConfig } from "../../src/core/shadow-sync";
import { SYNC_CODES } from "../../src/core/sync-errors";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";

const P = "$aws/things/esp32-01/shadow";
const FW = ["config", "firmware_version"];

function device(config: Partial<ShadowSyncConfig> = {}, kv = new MemoryKv()) {
  const mqtt = new FakeMqtt();
  const log = new MemoryLog();
  const clock = new ManualClock();
  const changes: DesiredChange[] = [];
  const errors: ShadowOtaError[] = [];
  let synced = 0;
  const sync = new ShadowSync({ mqtt, kv, clock, log }, { cloud: "aws", thingName: "esp32-01", firmwareVersionPath: FW, ...config }, {
    onDesired: (c) => { changes.push(c); },
    onError: (e) => { errors.push(e); },
    onSynced: () => { synced++; },
  });
  sync.start();
  return { mqtt, kv, log, clock, changes, errors, sync, synced: () => synced };
}

type Dev = ReturnType<typeof device>;

async function connect(d: Dev): Promise<string> {
  d.mqtt.connect();
  await settle();
  const get = d.mqtt.take().pop()!;
  expect(get.topic).toBe(`${P}/get`);
  return JSON.parse(get.payload).clientToken as string;
}

async function answerGet(d: Dev, token: string, state: JsonObject, version: number): Promise<void> {
  d.mqtt.deliver(`${P}/get/accepted`, { state, metadata: {}, version, timestamp: 1, clientToken: token });
  await settle();
}

/** Update documents published since the last take. */
function updates(d: Dev): Array<{ clientToken: string; state: { reported: JsonObject }; version?: number }> {
  return d.mqtt.take().filter((m) => m.topic === `${P}/update`).map((m) => JSON.parse(m.payload));
}

async function accept(d: Dev, token: string, version: number): Promise<void> {
  d.mqtt.deliver(`${P}/update/accepted`, { state: {}, metadata: {}, version, timestamp: 1, clientToken: token });
  await settle();
}

describe("reports wait for the first get of each connection", () => {
  it("a report made while connected but before the get response goes out only after it", async () => {
    const d = device();
    const token = await connect(d);
    const done = d.sync.report({ config: { interval: 30 } });
    await settle();
    expect(updates(d)).toEqual([]);
    expect(d.sync.synced).toBe(false);
    // The device's state is merged at once; the cloud's get shows it lacks it (re-sent first), then the report.
    await answerGet(d, token, { reported: {} }, 5);
    expect(d.sync.synced).toBe(true);
    const resync = updates(d);
    expect(resync.map((u) => u.state.reported)).toEqual([{ config: { interval: 30 } }]);
    await accept(d, resync[0]!.clientToken, 6);
    const sent = updates(d);
    expect(sent.map((u) => u.state.reported)).toEqual([{ config: { interval: 30 } }]);
    await accept(d, sent[0]!.clientToken, 7);
    let settled = false;
    void done.then(() => { settled = true; });
    await settle();
    expect(d.errors.map((e) => e.message)).toEqual([]);
    expect(settled).toBe(true);
  });

  it("after a reconnect, reports wait for that connection's get again", async () => {
    const d = device();
    await answerGet(d, await connect(d), { reported: {} }, 5);
    d.mqtt.disconnect();
    await settle();
    expect(d.sync.synced).toBe(false);
    const token = await connect(d);
    void d.sync.report({ mode: "eco" }).catch(() => undefined);
    await settle();
    expect(updates(d)).toEqual([]);
    await answerGet(d, token, { reported: { mode: "eco" } }, 7);
    expect(updates(d).map((u) => u.state.reported)).toEqual([{ mode: "eco" }]);
    expect(d.synced()).toBe(2);
  });
});

describe("the shadow version in reports", () => {
  it("conditional reports (default) carry the last version seen", async () => {
    const d = device();
    await answerGet(d, await connect(d), { reported: {} }, 5);
    void d.sync.report({ a: 1 });
    await settle();
    expect(updates(d)[0]!.version).toBe(5);
  });

  it("without conditional reports no version is sent", async () => {
    const d = device({ conditionalReports: false });
    await answerGet(d, await connect(d), { reported: {} }, 5);
    void d.sync.report({ a: 1 });
    await settle();
    const u = updates(d)[0]!;
    expect(u.state.reported).toEqual({ a: 1 });
    expect("version" in u).toBe(false);
  });

  it("while no shadow exists (get answered 404) reports go without a version", async () => {
    const d = device();
    const token = await connect(d);
    d.mqtt.deliver(`${P}/get/rejected`, { code: 404, message: "No shadow exists with name: 'esp32-01'", timestamp: 1, clientToken: token });
    await settle();
    void d.sync.report({ a: 1 });
    await settle();
    const u = updates(d)[0]!;
    expect("version" in u).toBe(false);
  });

  it("an accepted report's newer version is sent with the next report", async () => {
    const d = device();
    await answerGet(d, await connect(d), { reported: {} }, 5);
    void d.sync.report({ a: 1 });
    await settle();
    const first = updates(d)[0]!;
    await accept(d, first.clientToken, 9);
    void d.sync.report({ a: 2 });
    await settle();
    expect(updates(d)[0]!.version).toBe(9);
  });
});

describe("the persisted reported state and the key-value store's limit", () => {
  it("a reported state that would not fit is not persisted: SYNC_PAYLOAD_TOO_LARGE with the limit, the last fitting state kept", async () => {
    const d = device();
    await answerGet(d, await connect(d), { reported: {} }, 5);
    void d.sync.report({ small: "x" }).catch(() => undefined);
    await settle();
    const before = d.kv.get(SYNC_KV_KEYS.REPORTED);
    expect(before).toBe(JSON.stringify({ small: "x" }));
    void d.sync.report({ big: "y".repeat(KV_VALUE_MAX_BYTES) }).catch(() => undefined);
    await settle();
    expect(d.kv.get(SYNC_KV_KEYS.REPORTED)).toBe(before);
    const tooLarge = d.errors.filter((e) => e.code === SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE);
    expect(tooLarge).toHaveLength(1);
    expect(tooLarge[0]!.detail).toEqual({ max: KV_VALUE_MAX_BYTES });
    expect(tooLarge[0]!.message).toBe(`reported state of ${JSON.stringify({ small: "x", big: "y".repeat(KV_VALUE_MAX_BYTES) }).length} characters does not fit the key-value store`);
  });

  it("a reported state of exactly the limit in UTF-8 bytes is persisted; one byte more is not", async () => {
    const d = device();
    await answerGet(d, await connect(d), { reported: {} }, 5);
    const overhead = JSON.stringify({ s: "" }).length;
    // "é" is two bytes in UTF-8: the limit is in bytes, not characters.
    const fits = "é".repeat((KV_VALUE_MAX_BYTES - overhead) / 2 - 1) + "ab";
    expect(new TextEncoderLike().length(JSON.stringify({ s: fits }))).toBe(KV_VALUE_MAX_BYTES - 1);
    void d.sync.report({ s: fits + "c" }).catch(() => undefined);
    await settle();
    expect(d.kv.get(SYNC_KV_KEYS.REPORTED)).toBe(JSON.stringify({ s: fits + "c" }));
    void d.sync.report({ s: fits + "é" }).catch(() => undefined);
    await settle();
    expect(d.kv.get(SYNC_KV_KEYS.REPORTED)).toBe(JSON.stringify({ s: fits + "c" }));
    expect(d.errors.map((e) => e.code)).toEqual([SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE]);
  });
});

/** UTF-8 length without TextEncoder (absent on XS). */
class TextEncoderLike {
  length(s: string): number {
    let n = 0;
    for (const ch of s) { const c = ch.codePointAt(0)!; n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }
    return n;
  }
}

describe("which desired changes reach the application", () => {
  it("a notification whose delta did not change is not handed on again; a changed one is", async () => {
    const d = device();
    await answerGet(d, await connect(d), { desired: { interval: 30 }, reported: {} }, 5);
    expect(d.changes.map((c) => c.delta)).toEqual([{ interval: 30 }]);
    d.mqtt.deliver(`${P}/update/delta`, { version: 6, timestamp: 1, state: { interval: 30 }, metadata: {} });
    await settle();
    expect(d.changes).toHaveLength(1);
    d.mqtt.deliver(`${P}/update/delta`, { version: 7, timestamp: 1, state: { interval: 60 }, metadata: {} });
    await settle();
    expect(d.changes.map((c) => c.delta)).toEqual([{ interval: 30 }, { interval: 60 }]);
  });

  it("every get response hands the delta on, even when it equals the last one (a reconnect re-offers it)", async () => {
    const d = device();
    await answerGet(d, await connect(d), { desired: { interval: 30 }, reported: {} }, 5);
    d.mqtt.disconnect();
    await settle();
    await answerGet(d, await connect(d), { desired: { interval: 30 }, reported: {} }, 5);
    expect(d.changes.map((c) => c.delta)).toEqual([{ interval: 30 }, { interval: 30 }]);
    d.mqtt.deliver(`${P}/update/delta`, { version: 6, timestamp: 1, state: { interval: 30 }, metadata: {} });
    await settle();
    expect(d.changes).toHaveLength(2);
  });

  it("a desired change the device already reports is nothing to do", async () => {
    const d = device();
    await answerGet(d, await connect(d), { desired: { interval: 30 }, reported: { interval: 30 } }, 5);
    expect(d.changes).toEqual([]);
    expect(d.log.lines.some((l) => l.event === "sync.desired.nothing-to-do")).toBe(true);
  });

  it("hands on the change with desired, the changed paths, the version and the firmware version", async () => {
    const d = device();
    await answerGet(d, await connect(d), { desired: { interval: 30, config: { firmware_version: "1.2.0" } }, reported: {} }, 5);
    expect(d.changes).toEqual([{
      desired: { interval: 30, config: { firmware_version: "1.2.0" } },
      delta: { interval: 30, config: { firmware_version: "1.2.0" } },
      changed: [["config", "firmware_version"], ["interval"]],
      version: 5,
      firmwareVersion: "1.2.0",
    }]);
  });
});
