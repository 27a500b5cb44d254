/**
 * ShadowSync (src/core/shadow-sync.ts) transitions that shadow-sync.test.ts reaches without pinning what
 * follows them: which refusals re-get and which only move the queue on, what a report timeout or a failed
 * publish does next, which versions later reports carry, the words of each refusal, Azure's 404, the
 * persisted version's grammar, the configured limits, and handlers the application left out. The test plays
 * the cloud on the fake transport. Jest subset only (runs on XS too).
 */
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { ShadowSync, SYNC_KV_KEYS, syncIdentity, type DesiredChange, type ShadowSyncConfig } from "../../src/core/shadow-sync";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";

const P = "$aws/things/esp32-01/shadow";

function device(config: Partial<ShadowSyncConfig> = {}, kv = new MemoryKv(), withHandlers = true) {
  const mqtt = new FakeMqtt();
  const log = new MemoryLog();
  const clock = new ManualClock();
  const changes: DesiredChange[] = [];
  const errors: ShadowOtaError[] = [];
  const handlers = withHandlers
    ? { onDesired: (c: DesiredChange) => { changes.push(c); }, onError: (e: ShadowOtaError) => { errors.push(e); } }
    : { onDesired: (c: DesiredChange) => { changes.push(c); } };
  const sync = new ShadowSync({ mqtt, kv, clock, log }, { cloud: "aws", thingName: "esp32-01", firmwareVersionPath: ["fw"], ...config }, handlers);
  sync.start();
  return { mqtt, kv, log, clock, changes, errors, sync };
}
type Dev = ReturnType<typeof device>;

async function synced(d: Dev, state: JsonObject = { reported: {} }, version = 5): Promise<void> {
  d.mqtt.connect();
  await settle();
  const get = d.mqtt.take().pop()!;
  d.mqtt.deliver(`${P}/get/accepted`, { state, metadata: {}, version, timestamp: 1, clientToken: JSON.parse(get.payload).clientToken });
  await settle();
}
function sent(d: Dev): Array<{ topic: string; json: any }> {
  return d.mqtt.take().map((m) => ({ topic: m.topic.slice(P.length + 1), json: m.payload === "" ? undefined : JSON.parse(m.payload) }));
}
function track(p: Promise<void>): { result?: string } {
  const out: { result?: string } = {};
  p.then(() => { out.result = "resolved"; }, (e: ShadowOtaError) => { out.result = `${e.code}: ${e.message}`; });
  return out;
}

describe("refusals of a report", () => {
  it("a 400 settles that report with the service's words and sends the next; no re-get", async () => {
    const d = device();
    await synced(d);
    const a = track(d.sync.report({ a: 1 }));
    const b = track(d.sync.report({ b: 2 }));
    await settle();
    const first = sent(d);
    expect(first.map((m) => m.topic)).toEqual(["update"]);
    d.mqtt.deliver(`${P}/update/rejected`, { code: 400, message: "Invalid JSON" + "x".repeat(300), clientToken: first[0]!.json.clientToken });
    await settle();
    expect(a.result).toBe(`SYNC_REJECTED: report refused: 400 Invalid JSON${"x".repeat(300)}`);
    const next = sent(d);
    expect(next.map((m) => [m.topic, m.json.state.reported])).toEqual([["update", { b: 2 }]]);
    expect(b.result).toBeUndefined();
  });

  it("the refusal's detail carries the status and the service's message, cut to 200 characters", async () => {
    const d = device();
    await synced(d);
    let err: ShadowOtaError | undefined;
    d.sync.report({ a: 1 }).catch((e: ShadowOtaError) => { err = e; });
    await settle();
    d.mqtt.deliver(`${P}/update/rejected`, { code: 413, message: "m".repeat(250), clientToken: sent(d)[0]!.json.clientToken });
    await settle();
    expect(err!.detail).toEqual({ status: 413, serviceMessage: "m".repeat(200) });
  });

  it("a 409 re-gets before anything else is sent", async () => {
    const d = device();
    await synced(d);
    void d.sync.report({ a: 1 }).catch(() => undefined);
    void d.sync.report({ b: 2 }).catch(() => undefined);
    await settle();
    const token = sent(d)[0]!.json.clientToken;
    d.mqtt.deliver(`${P}/update/rejected`, { code: 409, message: "Version conflict", clientToken: token });
    await settle();
    expect(sent(d).map((m) => m.topic)).toEqual(["get"]);
  });

  it("a rejected get is raised with its words and retried after the request timeout", async () => {
    const d = device({ requestTimeoutMs: 2_000 });
    d.mqtt.connect();
    await settle();
    const get = sent(d).pop()!;
    d.mqtt.deliver(`${P}/get/rejected`, { code: 500, message: "e".repeat(250), clientToken: get.json.clientToken });
    await settle();
    expect(d.errors.map((e) => [e.code, e.message.slice(0, 20), e.detail])).toEqual([["SYNC_REJECTED", "get refused: 500 eee", { status: 500, serviceMessage: "e".repeat(200) }]]);
    d.clock.advance(1_999);
    await settle();
    expect(sent(d)).toEqual([]);
    d.clock.advance(1);
    await settle();
    expect(sent(d).map((m) => m.topic)).toEqual(["get"]);
  });

  it("an accepted report with an unknown token settles nothing and is only logged", async () => {
    const d = device();
    await synced(d);
    const a = track(d.sync.report({ a: 1 }));
    await settle();
    sent(d);
    d.mqtt.deliver(`${P}/update/accepted`, { state: {}, version: 6, timestamp: 1, clientToken: "r999" });
    await settle();
    expect(a.result).toBeUndefined();
    expect(d.log.lines.filter((l) => l.event === "sync.accepted.unrequested").map((l) => l.fields)).toEqual([{ token: "r999" }]);
    expect(sent(d)).toEqual([]);
  });
});

describe("a report that times out or cannot be published", () => {
  it("a timeout settles it with SYNC_TIMEOUT and re-gets; the next report waits for that get", async () => {
    const d = device({ requestTimeoutMs: 1_000 });
    await synced(d);
    const a = track(d.sync.report({ a: 1 }));
    void d.sync.report({ b: 2 }).catch(() => undefined);
    await settle();
    const token = sent(d)[0]!.json.clientToken;
    d.clock.advance(1_000);
    await settle();
    expect(a.result).toBe(`SYNC_TIMEOUT: no answer to report ${token} within 1000 ms`);
    const after = sent(d);
    expect(after.map((m) => m.topic)).toEqual(["get"]);
    expect(d.sync.synced).toBe(false);
    d.mqtt.deliver(`${P}/get/accepted`, { state: { reported: { a: 1 } }, metadata: {}, version: 6, timestamp: 1, clientToken: after[0]!.json.clientToken });
    await settle();
    expect(sent(d).map((m) => m.json.state.reported)).toEqual([{ b: 2 }]);
  });

  it("a publish that fails settles that report with the transport's error and sends the next", async () => {
    const d = device();
    await synced(d);
    d.mqtt.failPublishes = new ShadowOtaError("SYNC_TRANSPORT", "socket gone");
    const a = track(d.sync.report({ a: 1 }));
    await settle();
    d.mqtt.failPublishes = undefined;
    const b = track(d.sync.report({ b: 2 }));
    await settle();
    expect(a.result).toBe("SYNC_TRANSPORT: socket gone");
    expect(sent(d).map((m) => m.json.state.reported)).toEqual([{ b: 2 }]);
    expect(b.result).toBeUndefined();
  });

  it("disconnected: reports in flight and queued are settled with SYNC_NOT_CONNECTED saying they are kept", async () => {
    const d = device();
    await synced(d);
    const a = track(d.sync.report({ a: 1 }));
    await settle();
    d.mqtt.disconnect();
    await settle();
    expect(a.result).toBe("SYNC_NOT_CONNECTED: disconnected before the report was accepted; it stays persisted and is sent after the next connect");
    const b = track(d.sync.report({ b: 2 }));
    await settle();
    expect(b.result).toBe("SYNC_NOT_CONNECTED: not connected; the report is persisted and sent after the next connect");
    expect(d.log.lines.filter((l) => l.event === "sync.disconnected").map((l) => l.fields)).toEqual([{ reason: "fake: connection lost" }]);
  });
});

describe("versions", () => {
  it("a delta's newer version is the one the next report carries", async () => {
    const d = device();
    await synced(d, { reported: {} }, 5);
    d.mqtt.deliver(`${P}/update/delta`, { version: 9, timestamp: 1, state: { x: 1 }, metadata: {} });
    await settle();
    void d.sync.report({ x: 1 });
    await settle();
    expect(sent(d).map((m) => m.json.version)).toEqual([9]);
  });

  it("the persisted version must be 1 to 15 decimal digits", () => {
    for (const bad of ["x5", "5x", "1234567890123456", "", "-1", "1.5"]) {
      const kv = new MemoryKv();
      kv.set(SYNC_KV_KEYS.IDENTITY, syncIdentity({ cloud: "aws", thingName: "esp32-01" }));
      kv.set(SYNC_KV_KEYS.VERSION, bad);
      const d = device({}, kv);
      expect(d.errors.map((e) => [e.code, e.message])).toEqual([["SYNC_DOCUMENT_INVALID", "persisted version is not a number"]]);
      expect(d.sync.getState().version).toBe(0);
    }
    const kv = new MemoryKv();
    kv.set(SYNC_KV_KEYS.IDENTITY, syncIdentity({ cloud: "aws", thingName: "esp32-01" }));
    kv.set(SYNC_KV_KEYS.VERSION, "123456789012345");
    const ok = device({}, kv);
    expect(ok.errors).toEqual([]);
    expect(ok.sync.getState().version).toBe(123456789012345);
  });
});

describe("Azure specifics", () => {
  it("a get answered 404 is an error to retry, not a missing shadow", async () => {
    const d = device({ cloud: "azure", requestTimeoutMs: 1_000 });
    d.mqtt.connect();
    await settle();
    const get = d.mqtt.take().pop()!;
    const rid = /\$rid=(.+)$/.exec(get.topic)![1];
    d.mqtt.deliver(`$iothub/twin/res/404/?$rid=${rid}`, { message: "not found" });
    await settle();
    expect(d.errors.map((e) => [e.code, e.message])).toEqual([["SYNC_REJECTED", "get refused: 404 not found"]]);
    expect(d.sync.synced).toBe(false);
    void d.sync.report({ a: 1 }).catch(() => undefined);
    await settle();
    expect(d.mqtt.take()).toEqual([]);
  });

  it("a firmwareUpdate method with a version that is not SemVer is answered 400 saying so", async () => {
    const d = device({ cloud: "azure" });
    d.mqtt.connect();
    await settle();
    d.mqtt.take();
    d.mqtt.deliver("$iothub/methods/POST/firmwareUpdate/?$rid=3", { version: "1.2" });
    await settle();
    const reply = d.mqtt.take().find((m) => m.topic.startsWith("$iothub/methods/res/"))!;
    expect(reply.topic).toBe("$iothub/methods/res/400/?$rid=3");
    expect(JSON.parse(reply.payload)).toEqual({ code: "SYNC_FIRMWARE_VERSION_INVALID", message: "version is not strict SemVer" });
  });

  it("nests up to 10 levels in a desired change (AWS: 8)", async () => {
    const deep = (n: number): JsonObject => { let o: JsonObject = { v: 1 }; for (let i = 1; i < n; i++) o = { k: o }; return o; };
    const az = device({ cloud: "azure" });
    az.mqtt.connect();
    await settle();
    const rid = /\$rid=(.+)$/.exec(az.mqtt.take().pop()!.topic)![1];
    az.mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, { desired: { ...deep(10), $version: 2 }, reported: { $version: 1 } });
    await settle();
    expect(az.changes).toHaveLength(1);
    expect(az.errors).toEqual([]);
    const aws = device();
    await synced(aws, { desired: deep(9), reported: {} }, 2);
    expect(aws.changes).toHaveLength(0);
    expect(aws.errors.map((e) => e.code)).toEqual(["SYNC_DEPTH_EXCEEDED"]);
    const aws8 = device();
    await synced(aws8, { desired: deep(8), reported: {} }, 2);
    expect(aws8.changes).toHaveLength(1);
  });
});

describe("configuration and handlers", () => {
  it("maxPayloadBytes and maxDepth bound what is received", async () => {
    const small = device({ maxPayloadBytes: 100 });
    await synced(small);
    small.mqtt.deliver(`${P}/update/delta`, { version: 6, timestamp: 1, state: { x: "y".repeat(100) }, metadata: {} });
    await settle();
    expect(small.errors.map((e) => e.code)).toEqual(["SYNC_PAYLOAD_TOO_LARGE"]);
    const shallow = device({ maxDepth: 3 });
    await synced(shallow);
    shallow.mqtt.deliver(`${P}/update/delta`, { version: 6, timestamp: 1, state: { x: { y: { z: 1 } } }, metadata: {} });
    await settle();
    expect(shallow.errors.map((e) => e.code)).toEqual(["SYNC_DEPTH_EXCEEDED"]);
    const plain = device();
    await synced(plain);
    plain.mqtt.deliver(`${P}/update/delta`, { version: 6, timestamp: 1, state: { x: { y: { z: 1 } } }, metadata: {} });
    await settle();
    expect(plain.errors).toEqual([]);
  });

  it("the firmware path is copied: changing the caller's array later changes nothing", async () => {
    const path = ["fw"];
    const d = device({ firmwareVersionPath: path });
    path[0] = "other";
    await synced(d, { desired: { fw: "1.2.3" }, reported: {} });
    expect(d.changes.map((c) => c.firmwareVersion)).toEqual(["1.2.3"]);
  });

  it("a change without a firmware version has none", async () => {
    const d = device();
    await synced(d, { desired: { a: 1 }, reported: {} });
    expect("firmwareVersion" in d.changes[0]!).toBe(false);
    expect(d.log.lines.filter((l) => l.event === "sync.desired").map((l) => l.fields)).toEqual([{ version: 5, changed: 1, firmwareVersion: null }]);
  });

  it("handlers the application left out are not called (nothing logged as thrown), errors still logged", async () => {
    const d = device({}, new MemoryKv(), false);
    await synced(d);
    d.mqtt.deliver(`${P}/update/delta`, "{bad");
    await settle();
    expect(d.log.lines.some((l) => l.event === "sync.handler-threw")).toBe(false);
    expect(d.log.lines.filter((l) => l.event === "SYNC_JSON_INVALID")).toEqual([{ level: "warn", event: "SYNC_JSON_INVALID", fields: { message: "payload is not valid JSON" } }]);
  });

  it("a throwing handler is logged with its name and message", async () => {
    const mqtt = new FakeMqtt();
    const log = new MemoryLog();
    const sync = new ShadowSync({ mqtt, kv: new MemoryKv(), clock: new ManualClock(), log }, { cloud: "aws", thingName: "esp32-01", firmwareVersionPath: ["fw"] },
      { onDesired: () => { throw new Error("app bug"); }, onSynced: () => { throw "not an error"; } });
    sync.start();
    mqtt.connect();
    await settle();
    const get = mqtt.take().pop()!;
    mqtt.deliver(`${P}/get/accepted`, { state: { desired: { a: 1 } }, metadata: {}, version: 2, timestamp: 1, clientToken: JSON.parse(get.payload).clientToken });
    await settle();
    expect(log.lines.filter((l) => l.event === "sync.handler-threw").map((l) => l.fields)).toEqual([
      { handler: "onDesired", message: "app bug" }, { handler: "onSynced", message: "not an error" },
    ]);
  });

  it("a method nobody implements is answered 404 naming it", async () => {
    const d = device({ cloud: "azure" });
    d.mqtt.connect();
    await settle();
    d.mqtt.take();
    d.mqtt.deliver("$iothub/methods/POST/reboot/?$rid=4", "");
    await settle();
    const reply = d.mqtt.take().find((m) => m.topic.startsWith("$iothub/methods/res/"))!;
    expect(JSON.parse(reply.payload)).toEqual({ message: "method reboot is not implemented" });
  });

  it("subscribes with the protocol's topics and logs how many", async () => {
    const d = device();
    d.mqtt.connect();
    await settle();
    expect(d.log.lines.filter((l) => l.event === "sync.subscribed").map((l) => l.fields)).toEqual([{ topics: d.mqtt.subscribed[0]!.length }]);
  });
});
