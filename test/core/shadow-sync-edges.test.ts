/**
 * ShadowSync (src/core/shadow-sync.ts) at the edges the other shadow-sync tests reach without pinning: the
 * time between a connect and the get response, a get the transport cannot publish, report tokens that
 * interleave with the sync's own reports, the state-depth limits of each cloud (AWS 8, Azure 10) for the
 * desired state and for the re-sent reported state, a persisted reported state that is not JSON, a desired
 * value the device is reporting away, the sync's own reports refused, handlers that throw, the words of an
 * overlong invalid version, and the pure step before any connect. The test plays AWS and Azure on the fake
 * transport. Jest subset only (runs on XS too).
 */
import { cloudProtocol } from "../../src/core/cloud-protocol";
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import {
  DEFAULT_THROTTLE_RETRY, initialSyncState, ShadowSync, step, SYNC_KV_KEYS, syncIdentity, type DesiredChange, type ShadowSyncConfig,
} from "../../src/core/shadow-sync";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle, track } from "./fake-ports";

const P = "$aws/things/esp32-01/shadow";

function device(config: Partial<ShadowSyncConfig> = {}, kv = new MemoryKv(), extra: { onSynced?: () => void; onErrorThrows?: boolean } = {}) {
  const mqtt = new FakeMqtt();
  const log = new MemoryLog();
  const clock = new ManualClock();
  const changes: DesiredChange[] = [];
  const errors: ShadowOtaError[] = [];
  const sync = new ShadowSync({ mqtt, kv, clock, log }, { cloud: "aws", thingName: "esp32-01", firmwareVersionPath: ["fw"], ...config }, {
    onDesired: (c) => { changes.push(c); },
    onError: (e) => { errors.push(e); if (extra.onErrorThrows === true) throw new Error("app bug in onError"); },
    ...(extra.onSynced !== undefined ? { onSynced: extra.onSynced } : {}),
  });
  sync.start();
  return { mqtt, kv, log, clock, changes, errors, sync };
}
type Dev = ReturnType<typeof device>;

function sent(d: Dev): Array<{ topic: string; json: any }> {
  return d.mqtt.take().map((m) => ({ topic: m.topic.startsWith(P) ? m.topic.slice(P.length + 1) : m.topic, json: m.payload === "" ? undefined : JSON.parse(m.payload) }));
}
async function connect(d: Dev): Promise<string> {
  d.mqtt.connect();
  await settle();
  return sent(d).filter((m) => m.topic === "get").pop()!.json.clientToken;
}
async function answer(d: Dev, token: string, state: JsonObject, version = 5): Promise<void> {
  d.mqtt.deliver(`${P}/get/accepted`, { state, metadata: {}, version, timestamp: 1, clientToken: token });
  await settle();
}
/** Azure: connect and answer the twin GET with an empty desired state at $version 2. */
async function azureSynced(d: Dev): Promise<void> {
  d.mqtt.connect();
  await settle();
  const get = d.mqtt.take().find((m) => m.topic.startsWith("$iothub/twin/GET/"))!;
  const rid = /\$rid=([^&]+)/.exec(get.topic)![1];
  d.mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, { desired: { $version: 2 }, reported: { $version: 1 } });
  await settle();
}
/** An object nested `levels` deep (jsonDepth), its leaf `value`. */
function nest(levels: number, value: number | string = 1): JsonObject {
  let o: JsonObject = { l: value };
  for (let i = 1; i < levels; i++) o = { l: o };
  return o;
}

describe("between a connect and the get response", () => {
  it("a report made then waits for the response; onSynced comes with the response, not the connect", async () => {
    let syncedCalls = 0;
    const d = device({}, new MemoryKv(), { onSynced: () => { syncedCalls += 1; } });
    const token = await connect(d);
    expect(syncedCalls).toBe(0);
    expect(d.sync.synced).toBe(false);
    const r = track(d.sync.report({ a: 1 }));
    await settle();
    expect(sent(d)).toEqual([]);
    await answer(d, token, { reported: {} });
    expect(syncedCalls).toBe(1);
    expect(sent(d).map((m) => [m.topic, m.json.state.reported])).toEqual([["update", { a: 1 }]]);
    expect(r.result).toBeUndefined();
  });

  it("a get the transport refuses to publish is raised and tried again after the request timeout, not at once", async () => {
    const d = device({ requestTimeoutMs: 4_000 });
    d.mqtt.failPublishes = new ShadowOtaError("SYNC_TRANSPORT", "fake: socket closed");
    d.mqtt.connect();
    await settle();
    expect(d.errors.map((e) => `${e.code}: ${e.message}`)).toEqual(["SYNC_TRANSPORT: fake: socket closed"]);
    d.mqtt.failPublishes = undefined;
    d.clock.advance(3_999);
    await settle();
    expect(sent(d)).toEqual([]);
    d.clock.advance(1);
    await settle();
    expect(sent(d).map((m) => m.topic)).toEqual(["get"]);
    expect(d.errors).toHaveLength(1);
  });
});

describe("tokens", () => {
  it("reports of the application and of the sync never share a token: every report() settles, each once", async () => {
    const d = device();
    await answer(d, await connect(d), { reported: {} });
    const a = track(d.sync.report({ a: 1 }));
    await settle();
    // An invalid desired firmware version: the sync queues its own lastError report behind `a`.
    d.mqtt.deliver(`${P}/update/delta`, { state: { fw: "1.x" }, metadata: {}, version: 6, timestamp: 2 });
    await settle();
    const b = track(d.sync.report({ b: 2 }));
    await settle();
    const tokens: string[] = [];
    for (let i = 0; i < 5; i++) {
      const out = sent(d).filter((m) => m.topic === "update");
      if (out.length === 0) break;
      for (const m of out) {
        tokens.push(m.json.clientToken);
        d.mqtt.deliver(`${P}/update/accepted`, { state: { reported: m.json.state.reported }, metadata: {}, version: 7 + i, timestamp: 3, clientToken: m.json.clientToken });
      }
      await settle();
    }
    expect(tokens).toHaveLength(3);
    expect(new Set(tokens).size).toBe(3);
    expect([a.result, b.result]).toEqual(["resolved", "resolved"]);
  });
});

describe("state depth", () => {
  it("AWS: desired nested 9 levels is refused with AWS's limit of 8 even when the document limit allows it; 8 is handed on", async () => {
    const d = device({ maxDepth: 20 });
    const token = await connect(d);
    await answer(d, token, { desired: { cfg: nest(8) }, reported: {} });
    expect(d.errors.map((e) => [e.code, e.detail])).toEqual([["SYNC_DEPTH_EXCEEDED", { which: "desired", depth: 9, maxDepth: 8 }]]);
    expect(d.changes).toEqual([]);
    const e = device({ maxDepth: 20 });
    await answer(e, await connect(e), { desired: { cfg: nest(7) }, reported: {} });
    expect(e.errors).toEqual([]);
    expect(e.changes.map((c) => c.delta)).toEqual([{ cfg: nest(7) }]);
  });

  it("Azure: a reported state 8 levels deep made offline is re-sent after the get (Azure allows 10)", async () => {
    const d = device({ cloud: "azure", thingName: "esp32-az-01", firmwareVersionPath: ["updateVersion"] });
    const r = track(d.sync.report({ cfg: nest(7) }));
    await settle();
    expect(r.result).toBe("SYNC_NOT_CONNECTED");
    await azureSynced(d);
    expect(d.errors).toEqual([]);
    const patches = d.mqtt.take().filter((m) => m.topic.startsWith("$iothub/twin/PATCH/properties/reported/"));
    expect(patches.map((m) => JSON.parse(m.payload))).toEqual([{ cfg: nest(7) }]);
  });

  it("Azure: a persisted reported state deeper than 10 is raised, not re-sent, and the sync stays up", async () => {
    const config = { cloud: "azure" as const, thingName: "esp32-az-01", firmwareVersionPath: ["updateVersion"] };
    const kv = new MemoryKv();
    kv.set(SYNC_KV_KEYS.IDENTITY, syncIdentity(config));
    kv.set(SYNC_KV_KEYS.REPORTED, JSON.stringify({ cfg: nest(11) }));
    const d = device(config, kv);
    await azureSynced(d);
    expect(d.errors.map((e) => [e.code, e.detail?.["which"], e.detail?.["maxDepth"]])).toEqual([
      // The resync compares the device's reported state (computeDelta's first argument, named "desired" in
      // its error) with the cloud's; then the delta of desired against it.
      ["SYNC_DEPTH_EXCEEDED", "desired", 10],
      ["SYNC_DEPTH_EXCEEDED", "reported", 10],
    ]);
    expect(d.mqtt.take()).toEqual([]);
    expect(d.sync.synced).toBe(true);
  });
});

describe("persisted state", () => {
  it("a persisted reported state that is not JSON is raised at start and not used", async () => {
    const config = { cloud: "aws" as const, thingName: "esp32-01", firmwareVersionPath: ["fw"] };
    const kv = new MemoryKv();
    kv.set(SYNC_KV_KEYS.IDENTITY, syncIdentity(config));
    kv.set(SYNC_KV_KEYS.REPORTED, '{"a":');
    const d = device(config, kv);
    expect(d.errors.map((e) => e.code)).toEqual(["SYNC_JSON_INVALID"]);
    expect(d.sync.getState().reported).toEqual({});
  });
});

describe("the cloud's view of reported", () => {
  it("a desired value the device is reporting away is acted on once the cloud has taken the deletion", async () => {
    const d = device();
    await answer(d, await connect(d), { reported: {} });
    void d.sync.report({ a: 1 });
    await settle();
    let m = sent(d)[0]!;
    d.mqtt.deliver(`${P}/update/accepted`, { state: { reported: { a: 1 } }, metadata: {}, version: 6, timestamp: 2, clientToken: m.json.clientToken });
    await settle();
    void d.sync.report({ a: null });
    await settle();
    m = sent(d)[0]!;
    // Desired names a:1 while the deletion is on its way: the cloud still holds a:1, nothing to do yet.
    d.mqtt.deliver(`${P}/update/delta`, { state: { b: 2 }, metadata: {}, version: 7, timestamp: 3 });
    await settle();
    expect(d.changes.map((c) => c.delta)).toEqual([{ b: 2 }]);
    d.mqtt.deliver(`${P}/update/delta`, { state: { a: 1, b: 2 }, metadata: {}, version: 8, timestamp: 3 });
    await settle();
    expect(d.changes.map((c) => c.delta)).toEqual([{ b: 2 }]);
    d.mqtt.deliver(`${P}/update/accepted`, { state: { reported: { a: null } }, metadata: {}, version: 9, timestamp: 4, clientToken: m.json.clientToken });
    await settle();
    // AWS sends the delta again once reported lacks a.
    d.mqtt.deliver(`${P}/update/delta`, { state: { a: 1, b: 2 }, metadata: {}, version: 10, timestamp: 4 });
    await settle();
    expect(d.changes.map((c) => c.delta)).toEqual([{ b: 2 }, { a: 1, b: 2 }]);
  });
});

describe("the sync's own reports and the application's handlers", () => {
  it("the lastError report refused by the cloud is raised through onError; a throwing onError is logged by name", async () => {
    const d = device({}, new MemoryKv(), { onErrorThrows: true });
    await answer(d, await connect(d), { reported: {} });
    d.mqtt.deliver(`${P}/update/delta`, { state: { fw: "x".repeat(100) }, metadata: {}, version: 6, timestamp: 2 });
    await settle();
    const report = sent(d)[0]!;
    expect(report.json.state.reported.lastError.message).toBe(
      `desired firmware version "${"x".repeat(40)}" is not strict SemVer: version is 100 characters long; at most 31 are allowed`);
    d.mqtt.deliver(`${P}/update/rejected`, { code: 400, message: "Missing required node: state", clientToken: report.json.clientToken });
    await settle();
    expect(d.errors.map((e) => e.code)).toEqual(["SYNC_FIRMWARE_VERSION_INVALID", "SYNC_REJECTED"]);
    expect(d.errors[1]!.message).toBe("report refused: 400 Missing required node: state");
    expect(d.log.lines.filter((l) => l.event === "sync.handler-threw").map((l) => l.fields)).toEqual([
      { handler: "onError", message: "app bug in onError" }, { handler: "onError", message: "app bug in onError" }]);
  });

  it("a get response equal to the device's state logs that there is nothing to do, with its version", async () => {
    const d = device();
    await answer(d, await connect(d), { desired: { interval: 10 }, reported: { interval: 10 } }, 12);
    expect(d.log.lines.filter((l) => l.event === "sync.desired.nothing-to-do")).toEqual([
      { level: "debug", event: "sync.desired.nothing-to-do", fields: { version: 12 } }]);
    expect(d.changes).toEqual([]);
  });
});

describe("notifications before the get response", () => {
  it("out of order (v7, then v6): a response at v6 predates v7 and the get is sent again", async () => {
    const d = device();
    const token = await connect(d);
    d.mqtt.deliver(`${P}/update/delta`, { state: { interval: 30 }, metadata: {}, version: 7, timestamp: 2 });
    d.mqtt.deliver(`${P}/update/delta`, { state: { interval: 20 }, metadata: {}, version: 6, timestamp: 2 });
    await settle();
    await answer(d, token, { desired: { interval: 20 }, reported: {} }, 6);
    expect(d.log.lines.filter((l) => l.event === "sync.document.older-than-notified")).toEqual([
      { level: "info", event: "sync.document.older-than-notified", fields: { version: 6, notified: 7 } }]);
    expect(d.changes).toEqual([]);
    const again = sent(d).filter((m) => m.topic === "get");
    expect(again).toHaveLength(1);
    await answer(d, again[0]!.json.clientToken, { desired: { interval: 30 }, reported: {} }, 7);
    expect(d.changes.map((c) => [c.delta, c.version])).toEqual([[{ interval: 30 }, 7]]);
  });
});

describe("the pure step", () => {
  it("a fresh state is not synced: a desired notification fed before any connect is remembered, not handed on", () => {
    const ctx = {
      protocol: cloudProtocol("aws", { thingName: "esp32-01" }), firmwareVersionPath: ["fw"], requestTimeoutMs: 10_000,
      conditionalReports: true, firmwareMethod: "firmwareUpdate", maxStateDepth: 8, throttleRetry: DEFAULT_THROTTLE_RETRY,
    };
    const { state, actions } = step(initialSyncState(), { type: "message", event: { kind: "desired-delta", version: 3, delta: { a: 1 } } }, ctx);
    expect(actions).toEqual([{ type: "log", level: "debug", event: "sync.desired.before-get", fields: { version: 3 } }]);
    expect(state.notifiedBeforeGet).toBe(3);
    expect(state.synced).toBe(false);
  });

  it("a disconnect ends the synced state: a notification fed after it, before the next get response, is not handed on", () => {
    const ctx = {
      protocol: cloudProtocol("aws", { thingName: "esp32-01" }), firmwareVersionPath: ["fw"], requestTimeoutMs: 10_000,
      conditionalReports: true, firmwareMethod: "firmwareUpdate", maxStateDepth: 8, throttleRetry: DEFAULT_THROTTLE_RETRY,
    };
    let s = step(initialSyncState(), { type: "connected" }, ctx).state;
    s = step(s, { type: "message", event: { kind: "document", token: s.pendingGet!, desired: {}, reported: {}, version: 2 } }, ctx).state;
    expect(s.synced).toBe(true);
    s = step(s, { type: "disconnected" }, ctx).state;
    const { actions } = step(s, { type: "message", event: { kind: "desired-delta", version: 3, delta: { a: 1 } } }, ctx);
    expect(actions.map((a) => a.type)).toEqual(["log"]);
  });
});
