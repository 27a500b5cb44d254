/**
 * ShadowSync (src/core/shadow-sync.ts) when its ports or the application fail: a transport that refuses a
 * subscribe or a reply, a key-value store that throws, a persisted state that is not what was written,
 * Azure direct-method handlers that throw or reject, answers to requests the device never made, and the
 * configuration knobs (request timeout, firmware method name). What the cloud receives and what the device
 * raises and logs. Jest subset only (runs on XS too).
 */
import { ShadowOtaError } from "../../src/core/errors";
import type { Json } from "../../src/core/json";
import { ShadowSync, SYNC_KV_KEYS, type DesiredChange, type MethodResult, type ShadowSyncConfig } from "../../src/core/shadow-sync";
import { SYNC_CODES } from "../../src/core/sync-errors";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";

const P = "$aws/things/esp32-01/shadow";

function device(cloud: "aws" | "azure", opts: { kv?: MemoryKv; config?: Partial<ShadowSyncConfig>; onMethod?: (r: { name: string; payload: Json }) => MethodResult | Promise<MethodResult> } = {}) {
  const mqtt = new FakeMqtt();
  const kv = opts.kv ?? new MemoryKv();
  const log = new MemoryLog();
  const clock = new ManualClock();
  const changes: DesiredChange[] = [];
  const errors: ShadowOtaError[] = [];
  const handlers = {
    onDesired: (c: DesiredChange) => { changes.push(c); },
    onError: (e: ShadowOtaError) => { errors.push(e); },
    ...(opts.onMethod === undefined ? {} : { onMethod: opts.onMethod }),
  };
  const sync = new ShadowSync({ mqtt, kv, clock, log }, {
    cloud, thingName: "esp32-01", firmwareVersionPath: cloud === "aws" ? ["config", "firmware_version"] : ["updateVersion"], ...opts.config,
  }, handlers);
  return { mqtt, kv, log, clock, changes, errors, sync };
}

async function azureSynced(d: ReturnType<typeof device>): Promise<void> {
  d.sync.start();
  d.mqtt.connect();
  await settle();
  const get = d.mqtt.take().pop()!;
  const rid = /\$rid=(.+)$/.exec(get.topic)![1];
  d.mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, { desired: { $version: 3 }, reported: { $version: 1 } });
  await settle();
  d.mqtt.take();
}

describe("a transport that fails", () => {
  it("a refused subscribe is raised as SYNC_TRANSPORT (cause kept); a ShadowOtaError from it as is", async () => {
    const d = device("aws");
    const boom = new Error("socket closed");
    d.mqtt.subscribe = () => Promise.reject(boom);
    d.sync.start();
    d.mqtt.connect();
    await settle();
    expect(d.errors.map((e) => [e.code, e.message])).toEqual([[SYNC_CODES.SYNC_TRANSPORT, "subscribe failed"]]);
    expect(d.errors[0]!.cause).toBe(boom);

    const e = device("aws");
    e.mqtt.subscribe = () => Promise.reject(new ShadowOtaError(SYNC_CODES.SYNC_NOT_CONNECTED, "gone"));
    e.sync.start();
    e.mqtt.connect();
    await settle();
    expect(e.errors.map((x) => [x.code, x.message])).toEqual([[SYNC_CODES.SYNC_NOT_CONNECTED, "gone"]]);
  });

  it("a method reply the transport refuses is raised (there is no request to fail)", async () => {
    const d = device("azure", { onMethod: () => ({ status: 200 }) });
    await azureSynced(d);
    d.mqtt.publish = () => Promise.reject(new Error("write EPIPE"));
    d.mqtt.deliver("$iothub/methods/POST/ping/?$rid=1", "{}");
    await settle();
    expect(d.errors.map((e) => [e.code, e.message])).toEqual([[SYNC_CODES.SYNC_TRANSPORT, "publish failed"]]);
  });
});

describe("the key-value store", () => {
  it("a store that throws a plain error is logged; the report still goes out", async () => {
    const d = device("aws");
    d.kv.set = () => { throw new Error("nvs: no space"); };
    d.sync.start();
    d.mqtt.connect();
    await settle();
    const get = d.mqtt.take().pop()!;
    d.mqtt.deliver(`${P}/get/accepted`, { state: {}, metadata: {}, version: 2, timestamp: 1, clientToken: JSON.parse(get.payload).clientToken });
    await settle();
    void d.sync.report({ a: 1 }).catch(() => undefined);
    await settle();
    expect(d.mqtt.take().map((m) => JSON.parse(m.payload).state.reported)).toEqual([{ a: 1 }]);
    expect(d.log.lines.filter((l) => l.event === "sync.persist-failed").map((l) => l.fields)).toEqual([
      { key: SYNC_KV_KEYS.VERSION, message: "nvs: no space" },
      { key: SYNC_KV_KEYS.REPORTED, message: "nvs: no space" },
    ]);
    expect(d.errors).toEqual([]);
  });

  it("a store that throws a ShadowOtaError is logged and raised", async () => {
    const d = device("aws");
    d.kv.set = () => { throw new ShadowOtaError("KV_FULL", "full"); };
    d.sync.start();
    void d.sync.report({ a: 1 }).catch(() => undefined);
    await settle();
    expect(d.errors.map((e) => e.code)).toEqual(["KV_FULL"]);
    expect(d.log.lines.some((l) => l.event === "sync.persist-failed")).toBe(true);
  });

  it("a persisted reported state that is JSON but not an object is raised at start; the device starts clean", () => {
    const kv = new MemoryKv();
    kv.set(SYNC_KV_KEYS.IDENTITY, '["aws","esp32-01",""]');
    kv.set(SYNC_KV_KEYS.REPORTED, "[1,2]");
    const d = device("aws", { kv });
    d.sync.start();
    expect(d.errors.map((e) => [e.code, e.message])).toEqual([[SYNC_CODES.SYNC_DOCUMENT_INVALID, "persisted reported state is not an object"]]);
    expect(d.sync.getState().reported).toEqual({});
  });
});

describe("Azure direct methods", () => {
  it("a handler that throws is answered 500 and logged", async () => {
    const d = device("azure", { onMethod: () => { throw new Error("handler bug"); } });
    await azureSynced(d);
    d.mqtt.deliver("$iothub/methods/POST/ping/?$rid=4", "{}");
    await settle();
    expect(d.mqtt.take()).toEqual([{ topic: "$iothub/methods/res/500/?$rid=4", payload: '{"message":"method ping failed"}', qos: 1 }]);
    expect(d.log.lines.filter((l) => l.event === "sync.method-threw").map((l) => l.fields)).toEqual([{ name: "ping", message: "handler bug" }]);
  });

  it("a handler that rejects is answered 500 and logged, a non-Error rejection included", async () => {
    const d = device("azure", { onMethod: () => Promise.reject("nope") });
    await azureSynced(d);
    d.mqtt.deliver("$iothub/methods/POST/ping/?$rid=5", "{}");
    await settle();
    expect(d.mqtt.take()).toEqual([{ topic: "$iothub/methods/res/500/?$rid=5", payload: '{"message":"method ping failed"}', qos: 1 }]);
    expect(d.log.lines.filter((l) => l.event === "sync.method-threw").map((l) => l.fields)).toEqual([{ name: "ping", message: "nope" }]);
  });

  it("a handler's answer without a payload is sent with an empty body", async () => {
    const d = device("azure", { onMethod: () => ({ status: 204 }) });
    await azureSynced(d);
    d.mqtt.deliver("$iothub/methods/POST/ping/?$rid=6", "{}");
    await settle();
    expect(d.mqtt.take()).toEqual([{ topic: "$iothub/methods/res/204/?$rid=6", payload: "", qos: 1 }]);
  });

  it("the firmware method's name is configurable; the default name is then an ordinary method", async () => {
    const d = device("azure", { config: { firmwareMethod: "ota" } });
    await azureSynced(d);
    d.mqtt.deliver("$iothub/methods/POST/ota/?$rid=7", '{"version":"1.1.0"}');
    d.mqtt.deliver("$iothub/methods/POST/firmwareUpdate/?$rid=8", '{"version":"1.2.0"}');
    await settle();
    expect(d.changes.map((c) => c.firmwareVersion)).toEqual(["1.1.0"]);
    expect(d.mqtt.take().map((m) => m.topic)).toEqual(["$iothub/methods/res/200/?$rid=7", "$iothub/methods/res/404/?$rid=8"]);
  });
});

describe("answers the device did not ask for", () => {
  it("a rejection with an unknown token changes nothing and is only logged", async () => {
    const d = device("aws");
    d.sync.start();
    d.mqtt.connect();
    await settle();
    const get = d.mqtt.take().pop()!;
    d.mqtt.deliver(`${P}/get/accepted`, { state: {}, metadata: {}, version: 2, timestamp: 1, clientToken: JSON.parse(get.payload).clientToken });
    await settle();
    d.mqtt.deliver(`${P}/update/rejected`, { code: 400, message: "bad", timestamp: 1, clientToken: "r999" });
    d.mqtt.deliver(`${P}/get/rejected`, { code: 500, message: "bad", timestamp: 1, clientToken: "g999" });
    await settle();
    expect(d.errors).toEqual([]);
    expect(d.mqtt.take()).toEqual([]);
    expect(d.log.lines.filter((l) => l.event === "sync.rejected.unrequested").map((l) => l.fields)).toEqual([
      { token: "r999", status: 400 }, { token: "g999", status: 500 },
    ]);
  });
});

describe("configuration", () => {
  it("the default request timeout is 10 s", async () => {
    const d = device("aws");
    d.sync.start();
    d.mqtt.connect();
    await settle();
    d.mqtt.take();
    d.clock.advance(9_999);
    await settle();
    expect(d.mqtt.take()).toEqual([]);
    d.clock.advance(1);
    await settle();
    expect(d.mqtt.take().map((m) => m.topic)).toEqual([`${P}/get`]);
    expect(d.errors.map((e) => [e.code, e.message])).toEqual([[SYNC_CODES.SYNC_TIMEOUT, "no answer to get g1 within 10000 ms"]]);
  });
});
