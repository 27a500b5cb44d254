/**
 * The AWS shadow service (src/sim/shadow-service.ts) over real MQTT: every scenario of
 * test/vectors/shadow-service.json through an aedes broker on 127.0.0.1 (devices publish the requests;
 * "cloud" steps go through the admin API) with exact texts, the vectors of docs/protocols.md §1.8 once more through an
 * independent mosquitto, restart persistence on the same data directory, malformed payloads that must be
 * rejected without stopping the service, the admin API's errors, and a failing store write (500, nothing
 * changed). "Nothing else was published" is checked with a sentinel request answered after the step's
 * messages (one service client publishes in order, and the broker keeps that order).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { MqttClient } from "mqtt";

import { matchTopic, shadowTopic } from "../../src/core/aws-shadow";
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { CLOUD_CODES } from "../../src/sim/cloud-errors";
import { CloudStore, type CloudStoreIo } from "../../src/sim/cloud-store";
import { ShadowService } from "../../src/sim/shadow-service";
import { ManualClock, MemoryLog } from "../core/fake-ports";
import { connectPlain, endClient, Inbox, startPlainAedes, startPlainMosquitto, tempDir, type PlainBroker } from "./cloud-fixtures";
import { itMosquitto, noteMosquittoSkipped } from "./mosquitto-gate";
import { expectedMessages, scenarios, stepBytes, type VectorScenario, type VectorStep } from "./shadow-vectors";

const SENTINEL = "zz-sentinel";

let aedes: PlainBroker;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  aedes = await startPlainAedes();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(async () => {
  await aedes.close();
});

interface Rig {
  disk: { full: boolean };
  service: ShadowService;
  serviceClient: MqttClient;
  device: MqttClient;
  inbox: Inbox;
  clock: ManualClock;
  store: CloudStore;
  dir: string;
  log: MemoryLog;
}

/** The store's I/O port over the real file, with a switch that makes the disk full (ENOSPC), which a test
 *  cannot make a real disk do on demand. */
function diskWithSwitch(): { full: boolean; io: Partial<CloudStoreIo> } {
  const disk = {
    full: false,
    io: {
      write: (fd: number, data: Buffer, position: number): Promise<void> => new Promise<void>((resolve, reject) => {
        if (disk.full) { reject(Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" })); return; }
        fs.write(fd, data, 0, data.length, position, (e) => (e ? reject(e) : resolve()));
      }),
    },
  };
  return disk;
}

let clientSeq = 0;

async function rig(broker: PlainBroker, dir = tempDir("shadow-service")): Promise<Rig> {
  const clock = new ManualClock();
  const log = new MemoryLog();
  const disk = diskWithSwitch();
  const store = CloudStore.open(dir, { io: disk.io });
  const serviceClient = await connectPlain(broker.url, `cloud-${++clientSeq}`);
  const service = await ShadowService.start(serviceClient, { store, clock, log });
  const device = await connectPlain(broker.url, `device-${clientSeq}`);
  const inbox = new Inbox(device);
  await device.subscribeAsync("$aws/things/+/shadow/#", { qos: 1 });
  cleanups.push(async () => {
    await service.close();
    await endClient(serviceClient);
    await endClient(device);
    await store.close(); // as LocalCloud.close does: the directory's lock is released
  });
  return { service, serviceClient, device, inbox, clock, store, dir, log, disk };
}

/** Sends one request (or the admin equivalent) and returns every answer published before the sentinel's. */
async function exchange(r: Rig, thingName: string, s: Pick<VectorStep, "op" | "shadowName" | "by"> & { bytes: Uint8Array }): Promise<Array<{ topic: string; payload: string }>> {
  const from = r.inbox.messages.length;
  if (s.by === "cloud") {
    const body = JSON.parse(Buffer.from(s.bytes).toString("utf8")) as { state: { desired: JsonObject | null }; clientToken?: string; version?: number };
    const options: { shadowName?: string; clientToken?: string; version?: number } = {};
    if (s.shadowName !== undefined) options.shadowName = s.shadowName;
    if (body.clientToken !== undefined) options.clientToken = body.clientToken;
    if (body.version !== undefined) options.version = body.version;
    await r.service.updateDesired(thingName, body.state.desired, options);
  } else {
    await r.device.publishAsync(shadowTopic(thingName, s.shadowName, s.op), Buffer.from(s.bytes), { qos: 1 });
  }
  await r.device.publishAsync(shadowTopic(SENTINEL, undefined, "get"), "", { qos: 1 });
  await r.inbox.next((m) => m.topic === shadowTopic(SENTINEL, undefined, "get/rejected"), from);
  return r.inbox.messages.slice(from)
    .filter((m) => { const t = matchTopic(m.topic, { requests: true }); return t.ok && t.suffix !== undefined && t.thingName !== SENTINEL; })
    .map((m) => ({ topic: m.topic, payload: m.payload }));
}

/** Topics of the service's answers (not requests, not the sentinel's) received since index `from`. */
function responses(r: Rig, from: number): string[] {
  return r.inbox.messages.slice(from)
    .filter((m) => { const t = matchTopic(m.topic, { requests: true }); return t.ok && t.suffix !== undefined && t.thingName !== SENTINEL; })
    .map((m) => m.topic);
}

async function runScenario(broker: PlainBroker, sc: VectorScenario): Promise<void> {
  const r = await rig(broker);
  for (const s of sc.steps) {
    r.clock.now = (s.t ?? 0) * 1000;
    const got = await exchange(r, sc.thingName, { ...s, bytes: stepBytes(s) });
    expect({ step: s.name, messages: got }).toEqual({ step: s.name, messages: expectedMessages(sc.thingName, s) });
  }
}

describe("vectors through aedes", () => {
  for (const sc of scenarios) {
    it(sc.name, async () => {
      await runScenario(aedes, sc);
    });
  }
});

noteMosquittoSkipped("test/sim/shadow-service.test.ts");

describe("vectors through an independent mosquitto", () => {
  itMosquitto("vectors 1-5 (docs/protocols.md §1.8) and the named-shadow scenario", async () => {
    const mosquitto = await startPlainMosquitto();
    cleanups.push(() => mosquitto.close()); // runs after the rig's cleanup (reverse order)
    await runScenario(mosquitto, scenarios[0]!);
    await cleanups.pop()!(); // stop the first rig's service before the second one starts
    await runScenario(mosquitto, scenarios[2]!);
  });
});

describe("persistence", () => {
  it("after a restart on the same data directory, get returns the same document and version; versions continue", async () => {
    const dir = tempDir("shadow-restart");
    const a = await rig(aedes, dir);
    const upd = (desired: JsonObject, extra = ""): Uint8Array => Buffer.from(`{"state":{"desired":${JSON.stringify(desired)}}${extra}}`);
    await exchange(a, "esp32-09", { op: "update", bytes: upd({ firmware_version: "1.2.0", list: [1, 2] }) });
    await exchange(a, "esp32-09", { op: "update", bytes: Buffer.from("{\"state\":{\"reported\":{\"firmware_version\":\"1.1.0\"}}}") });
    await exchange(a, "gone", { op: "update", bytes: upd({ a: 1 }) });
    await exchange(a, "gone", { op: "delete", bytes: new Uint8Array(0) });
    await exchange(a, "esp32-09", { op: "update", shadowName: "ota", bytes: upd({ url: "u" }) });
    a.clock.now = 7000;
    const before = await exchange(a, "esp32-09", { op: "get", bytes: Buffer.from("{\"clientToken\":\"before\"}") });
    const writes = a.store.writes;
    expect(writes).toBe(5);
    // Stop the service and its client, then start a new store + service on the same directory.
    await cleanups.pop()!();
    const b = await rig(aedes, dir);
    b.clock.now = 7000;
    const after = await exchange(b, "esp32-09", { op: "get", bytes: Buffer.from("{\"clientToken\":\"before\"}") });
    expect(after).toEqual(before);
    expect(JSON.parse(after[0]!.payload).version).toBe(2);
    expect(await b.service.getShadow("esp32-09", "ota")).toMatchObject({ state: { desired: { url: "u" } }, version: 1 });
    // A deleted shadow stays deleted and keeps its version: the next update gets version 2.
    expect(await exchange(b, "gone", { op: "get", bytes: new Uint8Array(0) })).toEqual([
      { topic: "$aws/things/gone/shadow/get/rejected", payload: "{\"code\":404,\"message\":\"No shadow exists with name: 'gone'\"}" }]);
    const next = await exchange(b, "gone", { op: "update", bytes: upd({ b: 2 }) });
    expect(JSON.parse(next[0]!.payload).version).toBe(2);
    const cont = await exchange(b, "esp32-09", { op: "update", bytes: upd({ firmware_version: "1.3.0" }) });
    expect(JSON.parse(cont[0]!.payload).version).toBe(3);
  });
});

describe("malformed input never stops the service", () => {
  it("invalid JSON, non-UTF-8, 100 KB, over-deep nesting and response topics get the right answer (or none), and the service keeps serving", async () => {
    const r = await rig(aedes);
    const T = 1700000000;
    const cases: Array<[string, Uint8Array, string]> = [
      ["invalid JSON", Buffer.from("{\"state\":"), `{"code":400,"message":"Invalid JSON","timestamp":${T}}`],
      ["not UTF-8", Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]), `{"code":415,"message":"Unsupported documented encoding; supported encoding is UTF-8","timestamp":${T}}`],
      ["100 KB of garbage", Buffer.alloc(100 * 1024, 0x41), `{"code":400,"message":"Invalid JSON","timestamp":${T}}`],
      ["100 KB state", Buffer.from(JSON.stringify({ state: { reported: { s: "x".repeat(100 * 1024) } }, clientToken: "big" })),
        `{"code":413,"message":"The payload exceeds the maximum size allowed","timestamp":${T},"clientToken":"big"}`],
      ["100 KB of [", Buffer.alloc(100 * 1024, 0x5b), `{"code":400,"message":"JSON contains too many levels of nesting; maximum is 6","timestamp":${T}}`],
      ["200 KB (over the publish limit)", Buffer.alloc(200 * 1024, 0x20), `{"code":413,"message":"The payload exceeds the maximum size allowed","timestamp":${T}}`],
    ];
    for (const [name, bytes, answer] of cases) {
      const got = await exchange(r, "esp32-01", { op: "update", bytes });
      expect({ name, got }).toEqual({ name, got: [{ topic: "$aws/things/esp32-01/shadow/update/rejected", payload: answer }] });
    }
    // A device publishing on a response topic is not a request: no answer at all (the device, subscribed
    // to its whole shadow tree, gets its own message back and nothing else before the get's answer).
    await r.device.publishAsync("$aws/things/esp32-01/shadow/update/accepted", "{}", { qos: 1 });
    expect(await exchange(r, "esp32-01", { op: "get", bytes: new Uint8Array(0) })).toEqual([
      { topic: "$aws/things/esp32-01/shadow/update/accepted", payload: "{}" },
      { topic: "$aws/things/esp32-01/shadow/get/rejected", payload: "{\"code\":404,\"message\":\"No shadow exists with name: 'esp32-01'\"}" }]);
    // Still serving, and nothing was stored by the rejected requests.
    const ok = await exchange(r, "esp32-01", { op: "update", bytes: Buffer.from("{\"state\":{\"reported\":{\"ok\":true}}}") });
    expect(JSON.parse(ok[0]!.payload)).toMatchObject({ version: 1 });
    expect(r.service.handled).toBe(cases.length + cases.length + 2 + 2); // each exchange also sent a sentinel get
    expect(r.log.lines.filter((l) => l.event === "shadow.rejected").length).toBeGreaterThanOrEqual(cases.length);
  });
});

describe("admin API", () => {
  it("getShadow / updateDesired / deleteShadow, typed errors, nothing published for a rejected admin request", async () => {
    const r = await rig(aedes);
    expect(await r.service.getShadow("esp32-01")).toBeUndefined();
    const accepted = await r.service.updateDesired("esp32-01", { interval: 30 }, { clientToken: "adm" });
    expect(accepted).toEqual({ state: { desired: { interval: 30 } }, metadata: { desired: { interval: { timestamp: 1700000000 } } }, version: 1, timestamp: 1700000000, clientToken: "adm" });
    // The device saw what the admin update published (accepted, delta, documents), in order.
    await r.inbox.next((m) => m.topic.endsWith("/update/documents"));
    expect(r.inbox.messages.map((m) => m.topic)).toEqual(["accepted", "delta", "documents"].map((s) => `$aws/things/esp32-01/shadow/update/${s}`));
    r.clock.now = 3000;
    expect(await r.service.getShadow("esp32-01")).toEqual({
      state: { desired: { interval: 30 }, delta: { interval: 30 } }, metadata: { desired: { interval: { timestamp: 1700000000 } } }, version: 1, timestamp: 1700000003,
    });

    const from = r.inbox.messages.length;
    const reject = async (p: Promise<unknown>): Promise<ShadowOtaError> => {
      try { await p; } catch (e) { if (e instanceof ShadowOtaError) return e; throw e; }
      throw new Error("expected a rejection");
    };
    const conflict = await reject(r.service.updateDesired("esp32-01", { interval: 31 }, { version: 7 }));
    expect([conflict.code, conflict.detail]).toEqual([CLOUD_CODES.CLOUD_REQUEST_REJECTED, { status: 409, serviceMessage: "Version conflict" }]);
    const deep = await reject(r.service.updateDesired("esp32-01", { a: { b: { c: { d: { e: { f: { g: 1 } } } } } } }));
    expect(deep.detail).toEqual({ status: 400, serviceMessage: "JSON contains too many levels of nesting; maximum is 6" });
    const badName = await reject(r.service.getShadow("no/slash"));
    expect(badName.code).toBe("SYNC_NAME_INVALID");
    const missing = await reject(r.service.deleteShadow("esp32-01", "nope"));
    expect(missing.detail).toEqual({ status: 404, serviceMessage: "No shadow exists with name: 'nope'" });

    expect(await r.service.deleteShadow("esp32-01")).toEqual({ version: 1, timestamp: 1700000003 });
    // The rejected admin requests published nothing: after the sentinel, only the delete and the get's answer were seen.
    await exchange(r, "esp32-01", { op: "get", bytes: new Uint8Array(0) });
    expect(responses(r, from)).toEqual(["delete/accepted", "get/rejected"].map((t) => `$aws/things/esp32-01/shadow/${t}`));

    await r.service.close();
    await r.service.close(); // twice is fine
    expect((await reject(r.service.getShadow("esp32-01"))).code).toBe(CLOUD_CODES.CLOUD_SERVICE_CLOSED);
    expect((await reject(r.service.updateDesired("esp32-01", {}))).code).toBe(CLOUD_CODES.CLOUD_SERVICE_CLOSED);
  });
});

describe("a store that cannot be written", () => {
  it("answers 500 Internal service failure and keeps the shadow as it was", async () => {
    const r = await rig(aedes);
    expect(JSON.parse((await exchange(r, "esp32-01", { op: "update", bytes: Buffer.from("{\"state\":{\"reported\":{\"a\":1}}}") }))[0]!.payload).version).toBe(1);
    r.disk.full = true; // the next commit's write fails with ENOSPC
    const got = await exchange(r, "esp32-01", { op: "update", bytes: Buffer.from("{\"state\":{\"reported\":{\"a\":2}},\"clientToken\":\"w\"}") });
    expect(got).toEqual([{ topic: "$aws/things/esp32-01/shadow/update/rejected", payload: "{\"code\":500,\"message\":\"Internal service failure\",\"timestamp\":1700000000,\"clientToken\":\"w\"}" }]);
    expect(r.log.has("shadow.store_failed")).toBe(true);
    expect(await r.service.getShadow("esp32-01")).toMatchObject({ state: { reported: { a: 1 } }, version: 1 });
    expect(CloudStore.read(r.dir).shadows["esp32-01"]).toMatchObject({ version: 1 }); // nothing of it on disk
    // Once the disk has room again, the service goes on from version 1.
    r.disk.full = false;
    const again = await exchange(r, "esp32-01", { op: "update", bytes: Buffer.from("{\"state\":{\"reported\":{\"a\":3}}}") });
    expect(JSON.parse(again[0]!.payload).version).toBe(2);
    expect(CloudStore.read(r.dir).shadows["esp32-01"]).toMatchObject({ version: 2, state: { reported: { a: 3 } } });
  });
});
