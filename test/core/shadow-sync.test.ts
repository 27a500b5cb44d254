/**
 * Tests of src/core/shadow-sync.ts through the fake ports (test/core/fake-ports.ts): the test plays the
 * cloud (AWS shadow topics and Azure twin topics), drives time with a manual clock and reboots the device
 * by building a new ShadowSync on the same key-value store. Covers: subscribe-then-get on connect, acting
 * on the get response, stale and duplicate versions, report accepted / conflict → re-get / rejected /
 * timeout / disconnected, restart with persisted state, hostile firmware versions, malformed messages,
 * Azure direct methods, and the pure `step` function on its own. Jest subset only (runs on XS).
 */
import { ShadowOtaError } from "../../src/core/errors";
import type { Json, JsonObject } from "../../src/core/json";
import { SYNC_CODES } from "../../src/core/sync-errors";
import { awsProtocol } from "../../src/core/cloud-protocol";
import {
  ShadowSync,
  initialSyncState,
  step,
  syncIdentity,
  type DesiredChange,
  type MethodResult,
  type ShadowSyncConfig,
  type StepContext,
} from "../../src/core/shadow-sync";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";
import { rejection } from "./error-of";

const P = "$aws/things/esp32-01/shadow";
const T = 1700000000;

function setup(cloud: "aws" | "azure", opts: { kv?: MemoryKv; config?: Partial<ShadowSyncConfig>; onMethod?: (r: { name: string; payload: Json }) => MethodResult | Promise<MethodResult> } = {}) {
  const mqtt = new FakeMqtt();
  const kv = opts.kv ?? new MemoryKv();
  const clock = new ManualClock();
  const log = new MemoryLog();
  const changes: DesiredChange[] = [];
  const errors: ShadowOtaError[] = [];
  const config: ShadowSyncConfig = {
    cloud,
    thingName: "esp32-01",
    firmwareVersionPath: cloud === "aws" ? ["config", "firmware_version"] : ["updateVersion"],
    ...opts.config,
  };
  const handlers = {
    onDesired: (c: DesiredChange) => { changes.push(c); },
    onError: (e: ShadowOtaError) => { errors.push(e); },
    ...(opts.onMethod === undefined ? {} : { onMethod: opts.onMethod }),
  };
  const sync = new ShadowSync({ mqtt, kv, clock, log }, config, handlers);
  sync.start();
  return { mqtt, kv, clock, log, changes, errors, sync };
}

/** Connects and returns the get request's token (clientToken for AWS, $rid for Azure). */
async function connect(mqtt: FakeMqtt, cloud: "aws" | "azure"): Promise<string> {
  mqtt.connect();
  await settle();
  const get = mqtt.take().pop()!;
  if (cloud === "aws") {
    expect(get.topic).toBe(`${P}/get`);
    return JSON.parse(get.payload).clientToken;
  }
  expect(get.payload).toBe("");
  const m = /^\$iothub\/twin\/GET\/\?\$rid=(.+)$/.exec(get.topic);
  expect(m).not.toBeNull();
  return m![1]!;
}

function awsDocument(mqtt: FakeMqtt, token: string, state: JsonObject, version: number): void {
  mqtt.deliver(`${P}/get/accepted`, { state, metadata: {}, version, timestamp: T, clientToken: token });
}

function awsDelta(mqtt: FakeMqtt, state: JsonObject, version: number): void {
  mqtt.deliver(`${P}/update/delta`, { version, timestamp: T, state, metadata: {} });
}

/** The reported update just published: its token, reported state and version. */
function lastAwsReport(mqtt: FakeMqtt): { token: string; reported: JsonObject; version?: number } {
  const m = mqtt.last();
  expect(m.topic).toBe(`${P}/update`);
  return { token: m.json.clientToken, reported: m.json.state.reported, version: m.json.version };
}

describe("AWS shadow sync", () => {
  it("subscribes, then gets, then acts on the delta of the get response", async () => {
    const { mqtt, changes, sync } = setup("aws");
    mqtt.connect();
    await settle();
    expect(mqtt.subscribed).toEqual([[
      `${P}/get/accepted`, `${P}/get/rejected`, `${P}/update/accepted`, `${P}/update/rejected`, `${P}/update/delta`,
    ]]);
    const [get] = mqtt.take();
    expect(get).toEqual({ topic: `${P}/get`, payload: '{"clientToken":"g1"}', qos: 1 });

    awsDocument(mqtt, "g1", {
      desired: { config: { firmware_version: "1.0.5", interval: 60 } },
      reported: { config: { interval: 60 } },
      delta: { config: { firmware_version: "1.0.5" } },
    }, 3);
    expect(changes).toHaveLength(1);
    expect(changes[0]).toEqual({
      desired: { config: { firmware_version: "1.0.5", interval: 60 } },
      delta: { config: { firmware_version: "1.0.5" } },
      changed: [["config", "firmware_version"]],
      firmwareVersion: "1.0.5",
      version: 3,
    });
    expect(sync.getState()).toEqual({
      desired: { config: { firmware_version: "1.0.5", interval: 60 } }, reported: {}, version: 3, connected: true,
    });
  });

  it("ignores stale and duplicated versions, acts on newer ones", async () => {
    const { mqtt, changes, log, kv } = setup("aws");
    const g = await connect(mqtt, "aws");
    awsDocument(mqtt, g, { desired: { config: { interval: 60 } }, reported: { config: { interval: 60 } } }, 5);
    expect(changes).toHaveLength(0); // nothing differs

    awsDelta(mqtt, { config: { interval: 30 } }, 5); // same version as the document
    awsDelta(mqtt, { config: { interval: 10 } }, 4); // older
    expect(changes).toHaveLength(0);
    expect(log.lines.filter((l) => l.event === SYNC_CODES.SYNC_VERSION_STALE)).toHaveLength(2);

    awsDelta(mqtt, { config: { interval: 30 } }, 6);
    awsDelta(mqtt, { config: { interval: 30 } }, 6); // duplicate delivery
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ delta: { config: { interval: 30 } }, changed: [["config", "interval"]], version: 6 });
    expect(changes[0]!.firmwareVersion).toBeUndefined();
    expect(kv.get("ver")).toBe("6");

    // AWS republishes the same delta after an unrelated accepted update: not handed out again.
    awsDelta(mqtt, { config: { interval: 30 } }, 7);
    expect(changes).toHaveLength(1);
  });

  it("ignores deltas that arrive before the get response (the response covers them)", async () => {
    const { mqtt, changes } = setup("aws");
    const g = await connect(mqtt, "aws");
    awsDelta(mqtt, { config: { interval: 30 } }, 9);
    expect(changes).toHaveLength(0);
    awsDocument(mqtt, g, { desired: { config: { interval: 30 } } }, 9);
    expect(changes).toHaveLength(1);
  });

  it("reports with a clientToken and the shadow version, resolves on accepted, persists", async () => {
    const { mqtt, kv, sync } = setup("aws");
    const g = await connect(mqtt, "aws");
    awsDocument(mqtt, g, { desired: {}, reported: {} }, 2);
    const p = sync.report({ firmware_version: "1.1.0", config: { interval: 60 } });
    await settle();
    const r = lastAwsReport(mqtt);
    expect(r.reported).toEqual({ firmware_version: "1.1.0", config: { interval: 60 } });
    expect(r.version).toBe(2);
    expect(JSON.parse(kv.get("rep")!)).toEqual({ firmware_version: "1.1.0", config: { interval: 60 } });

    mqtt.deliver(`${P}/update/accepted`, { state: { reported: r.reported }, version: 3, timestamp: T, clientToken: "someone-else" });
    let done = false;
    void p.then(() => { done = true; });
    await settle();
    expect(done).toBe(false); // another client's token does not settle ours

    mqtt.deliver(`${P}/update/accepted`, { state: { reported: r.reported }, version: 4, timestamp: T, clientToken: r.token });
    await p;
    // The next report carries the newest version seen.
    void sync.report({ x: 1 });
    await settle();
    expect(lastAwsReport(mqtt).version).toBe(4);
  });

  it("sends one report at a time, in order", async () => {
    const { mqtt, sync } = setup("aws");
    const g = await connect(mqtt, "aws");
    awsDocument(mqtt, g, {}, 1);
    const p1 = sync.report({ a: 1 });
    const p2 = sync.report({ b: 2 });
    await settle();
    expect(mqtt.take()).toHaveLength(1);
    const r1 = lastAwsReport(mqtt);
    mqtt.deliver(`${P}/update/accepted`, { state: {}, version: 2, clientToken: r1.token });
    await p1;
    await settle();
    const r2 = lastAwsReport(mqtt);
    expect(r2.reported).toEqual({ b: 2 });
    expect(r2.version).toBe(2);
    mqtt.deliver(`${P}/update/accepted`, { state: {}, version: 3, clientToken: r2.token });
    await p2;
  });

  it("409 version conflict: rejects with SYNC_VERSION_CONFLICT, re-gets and re-sends the truth", async () => {
    const { mqtt, sync, changes } = setup("aws");
    const g = await connect(mqtt, "aws");
    awsDocument(mqtt, g, { desired: { config: { interval: 60 } }, reported: { config: { interval: 60 } } }, 1);
    const p = sync.report({ status: "ok" });
    await settle();
    const r = lastAwsReport(mqtt);
    expect(r.version).toBe(1);
    mqtt.take();
    mqtt.deliver(`${P}/update/rejected`, { code: 409, message: "Version conflict", timestamp: T, clientToken: r.token });
    const e = await rejection(p);
    expect(e.code).toBe(SYNC_CODES.SYNC_VERSION_CONFLICT);
    expect(e.detail).toMatchObject({ status: 409, serviceMessage: "Version conflict" });

    await settle();
    const [get] = mqtt.take();
    expect(get!.topic).toBe(`${P}/get`);
    const g2 = JSON.parse(get!.payload).clientToken;
    // Meanwhile the cloud changed desired (that is why the version moved on).
    awsDocument(mqtt, g2, { desired: { config: { interval: 15 } }, reported: { config: { interval: 60 } } }, 2);
    expect(changes[changes.length - 1]).toMatchObject({ delta: { config: { interval: 15 } }, version: 2 });
    await settle();
    const resync = lastAwsReport(mqtt);
    expect(resync.reported).toEqual({ status: "ok" });
    expect(resync.version).toBe(2);
  });

  it("other rejections: SYNC_REJECTED with the service's code and message", async () => {
    const { mqtt, sync } = setup("aws");
    const g = await connect(mqtt, "aws");
    awsDocument(mqtt, g, {}, 1);
    const p = sync.report({ a: 1 });
    await settle();
    mqtt.deliver(`${P}/update/rejected`, { code: 400, message: "Invalid JSON", clientToken: lastAwsReport(mqtt).token });
    const e = await rejection(p);
    expect(e.code).toBe(SYNC_CODES.SYNC_REJECTED);
    expect(e.detail).toMatchObject({ status: 400, serviceMessage: "Invalid JSON" });
  });

  it("refuses, before merging, a report the service would refuse", async () => {
    const { mqtt, sync, kv } = setup("aws");
    const g = await connect(mqtt, "aws");
    awsDocument(mqtt, g, {}, 1);
    const e = await rejection(sync.report({ a: { b: { c: { d: { e: { f: { g: { h: { i: 1 } } } } } } } } }));
    expect(e.code).toBe(SYNC_CODES.SYNC_DEPTH_EXCEEDED);
    const e2 = await rejection(sync.report({ list: [1, null] }));
    expect(e2.code).toBe(SYNC_CODES.SYNC_DOCUMENT_INVALID);
    expect(sync.getState().reported).toEqual({});
    expect(kv.get("rep")).toBeUndefined();
  });

  it("timeouts: a report rejects with SYNC_TIMEOUT; an unanswered get is raised and re-sent", async () => {
    const { mqtt, sync, clock, errors } = setup("aws", { config: { requestTimeoutMs: 5000 } });
    const g = await connect(mqtt, "aws");
    clock.advance(4999);
    expect(errors).toHaveLength(0);
    clock.advance(1);
    expect(errors.map((e) => e.code)).toEqual([SYNC_CODES.SYNC_TIMEOUT]);
    await settle();
    const [again] = mqtt.take();
    expect(again!.topic).toBe(`${P}/get`);
    const g2 = JSON.parse(again!.payload).clientToken;
    expect(g2).not.toBe(g);
    awsDocument(mqtt, g, {}, 1); // the late answer to the first get is not taken
    expect(sync.getState().version).toBe(0);
    awsDocument(mqtt, g2, {}, 1);
    expect(sync.getState().version).toBe(1);

    const p = sync.report({ a: 1 });
    clock.advance(5000);
    const e = await rejection(p);
    expect(e.code).toBe(SYNC_CODES.SYNC_TIMEOUT);
  });

  it("after a report times out it re-gets, and re-sends what the cloud turns out to lack", async () => {
    const { mqtt, sync, clock } = setup("aws", { config: { requestTimeoutMs: 5000 } });
    const g = await connect(mqtt, "aws");
    awsDocument(mqtt, g, {}, 1);
    const p = sync.report({ a: 1 });
    await settle();
    expect(lastAwsReport(mqtt).reported).toEqual({ a: 1 });
    mqtt.take();
    clock.advance(5000);
    expect((await rejection(p)).code).toBe(SYNC_CODES.SYNC_TIMEOUT);
    await settle();
    const [get] = mqtt.take();
    expect(get!.topic).toBe(`${P}/get`);
    awsDocument(mqtt, JSON.parse(get!.payload).clientToken, { reported: { b: 2 } }, 2); // the update was lost
    await settle();
    expect(lastAwsReport(mqtt).reported).toEqual({ a: 1 });
  });

  it("a publish the transport refuses fails the report with the transport's error", async () => {
    const { mqtt, sync } = setup("aws");
    const g = await connect(mqtt, "aws");
    awsDocument(mqtt, g, {}, 1);
    mqtt.failPublishes = new ShadowOtaError(SYNC_CODES.SYNC_TRANSPORT, "socket closed");
    const e = await rejection(sync.report({ a: 1 }));
    expect(e.code).toBe(SYNC_CODES.SYNC_TRANSPORT);
  });

  it("get/rejected 404 (no shadow yet, docs/protocols.md §1.8 vector 1) creates the shadow from the device's state", async () => {
    const kv = new MemoryKv();
    kv.set("sid", syncIdentity({ cloud: "aws", thingName: "esp32-01" }));
    kv.set("rep", JSON.stringify({ firmware_version: "1.0.0" }));
    kv.set("ver", "5"); // e.g. the shadow was deleted since: the update must not carry a version
    const { mqtt, errors } = setup("aws", { kv });
    const g = await connect(mqtt, "aws");
    mqtt.deliver(`${P}/get/rejected`, { code: 404, message: "No shadow exists with name: 'esp32-01'", clientToken: g });
    await settle();
    const r = lastAwsReport(mqtt);
    expect(r.reported).toEqual({ firmware_version: "1.0.0" });
    expect(r.version).toBeUndefined();
    expect(errors).toHaveLength(0);
    mqtt.deliver(`${P}/update/accepted`, { state: { reported: r.reported }, version: 6, clientToken: r.token });
    awsDelta(mqtt, { config: { firmware_version: "1.0.1" } }, 5); // not newer than what the device saw before
    awsDelta(mqtt, { config: { firmware_version: "1.0.1" } }, 7);
    expect(errors).toHaveLength(0);
  });

  it("get/rejected 500: raised, and the get is retried after the timeout", async () => {
    const { mqtt, clock, errors } = setup("aws");
    const g = await connect(mqtt, "aws");
    mqtt.deliver(`${P}/get/rejected`, { code: 500, message: "Internal service failure", clientToken: g });
    expect(errors.map((e) => e.code)).toEqual([SYNC_CODES.SYNC_REJECTED]);
    await settle();
    expect(mqtt.take()).toHaveLength(0);
    clock.advance(10_000);
    await settle();
    expect(mqtt.take().map((m) => m.topic)).toEqual([`${P}/get`]);
  });

  it("disconnect rejects pending reports with SYNC_NOT_CONNECTED; offline reports are sent after reconnect", async () => {
    const { mqtt, sync, clock } = setup("aws");
    const g = await connect(mqtt, "aws");
    awsDocument(mqtt, g, { reported: {} }, 1);
    const p = sync.report({ a: 1 });
    await settle();
    mqtt.disconnect();
    expect((await rejection(p)).code).toBe(SYNC_CODES.SYNC_NOT_CONNECTED);
    expect((await rejection(sync.report({ b: 2 }))).code).toBe(SYNC_CODES.SYNC_NOT_CONNECTED);
    expect(sync.getState()).toMatchObject({ reported: { a: 1, b: 2 }, connected: false });
    expect(clock.pending).toBe(0);

    const g2 = await connect(mqtt, "aws");
    expect(mqtt.subscribed).toHaveLength(2); // re-subscribed on reconnect
    awsDocument(mqtt, g2, { reported: { a: 1 } }, 2);
    await settle();
    expect(lastAwsReport(mqtt).reported).toEqual({ b: 2 });
  });

  it("restart: a rebooted device reports its persisted state and keeps its last seen version", async () => {
    const kv = new MemoryKv();
    {
      const { mqtt, sync } = setup("aws", { kv });
      const g = await connect(mqtt, "aws");
      awsDocument(mqtt, g, { desired: { config: { firmware_version: "1.1.0" } }, reported: { firmware_version: "1.0.0" } }, 7);
      void sync.report({ firmware_version: "1.1.0", ota: { state: "Valid" } }).catch(() => undefined);
      await settle();
      // Power cut before update/accepted arrives.
    }
    expect(kv.get("ver")).toBe("7");
    const { mqtt, sync, changes } = setup("aws", { kv });
    expect(sync.getState()).toEqual({ desired: {}, reported: { firmware_version: "1.1.0", ota: { state: "Valid" } }, version: 7, connected: false });
    const g = await connect(mqtt, "aws");
    awsDocument(mqtt, g, { desired: { config: { firmware_version: "1.1.0" } }, reported: { firmware_version: "1.0.0" } }, 7);
    await settle();
    const r = lastAwsReport(mqtt);
    expect(r.reported).toEqual({ firmware_version: "1.1.0", ota: { state: "Valid" } });
    expect(r.version).toBe(7);
    mqtt.deliver(`${P}/update/accepted`, { state: { reported: r.reported }, version: 8, clientToken: r.token });
    awsDelta(mqtt, { config: { firmware_version: "1.1.0" } }, 7);
    expect(changes).toHaveLength(1); // from the document only; the stale delta is ignored
  });

  it("hostile firmware version: reported as SYNC_FIRMWARE_VERSION_INVALID, never handed on", async () => {
    const { mqtt, changes, errors, sync } = setup("aws");
    const g = await connect(mqtt, "aws");
    awsDocument(mqtt, g, { desired: { config: { firmware_version: "1.0.5/../../evil", interval: 30 } }, reported: { config: { interval: 60 } } }, 4);
    expect(changes).toHaveLength(1);
    expect(changes[0]!.firmwareVersion).toBeUndefined();
    expect(changes[0]!.delta).toEqual({ config: { interval: 30 } });
    expect(changes[0]!.changed).toEqual([["config", "interval"]]);
    expect(errors.map((e) => e.code)).toEqual([SYNC_CODES.SYNC_FIRMWARE_VERSION_INVALID]);
    expect(errors[0]!.detail).toEqual({ reason: "invalid_char" });
    await settle();
    const r = lastAwsReport(mqtt);
    expect(r.reported.lastError).toMatchObject({ code: "SYNC_FIRMWARE_VERSION_INVALID" });
    expect(sync.getState().reported.lastError).toMatchObject({ code: "SYNC_FIRMWARE_VERSION_INVALID" });

    // The same bad value again: no second report, the error is still raised.
    mqtt.deliver(`${P}/update/accepted`, { state: {}, version: 5, clientToken: r.token });
    mqtt.take();
    awsDelta(mqtt, { config: { firmware_version: "1.0.5/../../evil" } }, 6);
    await settle();
    expect(mqtt.take()).toHaveLength(0);
    expect(errors).toHaveLength(2);
    expect(changes).toHaveLength(1); // nothing else to do

    // A different bad value arriving as a delta: a new lastError report goes out.
    awsDelta(mqtt, { config: { firmware_version: "1.0.5-" } }, 7);
    await settle();
    expect(lastAwsReport(mqtt).reported.lastError).toMatchObject({ code: "SYNC_FIRMWARE_VERSION_INVALID" });
    expect(lastAwsReport(mqtt).reported.lastError).not.toEqual(r.reported.lastError);

    for (const bad of [7, "v1.0.0", "1.0", " 1.0.0", "1.0.0\n", null, { major: 1 }]) {
      awsDelta(mqtt, { config: { firmware_version: bad } }, 100 + errors.length);
    }
    expect(changes).toHaveLength(1);
    expect(errors.every((e) => e.code === SYNC_CODES.SYNC_FIRMWARE_VERSION_INVALID)).toBe(true);
  });

  it("malformed messages are raised through onError and change nothing", async () => {
    const { mqtt, errors, sync, changes } = setup("aws");
    const g = await connect(mqtt, "aws");
    awsDocument(mqtt, g, { desired: { a: 1 }, reported: { a: 1 } }, 3);
    const before = sync.getState();
    mqtt.deliver(`${P}/update/delta`, "{not json");
    mqtt.deliver(`${P}/update/delta`, { state: [], version: 4 });
    mqtt.deliver(`${P}/update/delta`, { state: { a: 2 }, version: "4" });
    mqtt.deliver(`${P}/update/delta`, Uint8Array.from([0xc0, 0x80]));
    mqtt.deliver(`${P}/update/delta`, "[".repeat(100_000));
    mqtt.deliver(`${P}/update/delta`, JSON.stringify({ state: { blob: "x".repeat(100 * 1024) }, version: 9 }));
    mqtt.deliver("$aws/things/esp32-01/shadow/get/accepted/extra", "{}");
    expect(errors.map((e) => e.code)).toEqual([
      SYNC_CODES.SYNC_JSON_INVALID, SYNC_CODES.SYNC_DOCUMENT_INVALID, SYNC_CODES.SYNC_DOCUMENT_INVALID,
      SYNC_CODES.SYNC_ENCODING_INVALID, SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE, SYNC_CODES.SYNC_PAYLOAD_TOO_LARGE,
      SYNC_CODES.SYNC_TOPIC_INVALID,
    ]);
    // Topics that are not ours are ignored silently.
    mqtt.deliver("$aws/things/other-thing/shadow/update/delta", { state: { a: 5 }, version: 50 });
    mqtt.deliver("$aws/jobs/notify", "{}");
    mqtt.deliver("random/topic", Uint8Array.from([0xff]));
    expect(errors).toHaveLength(7);
    expect(sync.getState()).toEqual(before);
    expect(changes).toHaveLength(0);
  });

  it("a throwing application handler does not break the sync", async () => {
    const mqtt = new FakeMqtt();
    const log = new MemoryLog();
    const sync = new ShadowSync({ mqtt, kv: new MemoryKv(), clock: new ManualClock(), log },
      { cloud: "aws", thingName: "esp32-01", firmwareVersionPath: ["fw"] },
      { onDesired: () => { throw new Error("app bug"); } });
    sync.start();
    const g = await connect(mqtt, "aws");
    awsDocument(mqtt, g, { desired: { fw: "1.0.0" } }, 1);
    expect(log.has("sync.handler-threw")).toBe(true);
    expect(sync.getState().version).toBe(1);
  });

  it("named shadows use their own topics and ignore the classic shadow", async () => {
    const { mqtt, changes } = setup("aws", { config: { shadowName: "ota" } });
    mqtt.connect();
    await settle();
    const NP = `${P}/name/ota`;
    expect(mqtt.subscribed[0]![0]).toBe(`${NP}/get/accepted`);
    const get = mqtt.take()[0]!;
    expect(get.topic).toBe(`${NP}/get`);
    mqtt.deliver(`${NP}/get/accepted`, { state: { desired: { config: { firmware_version: "2.0.0" } } }, version: 1, clientToken: JSON.parse(get.payload).clientToken });
    mqtt.deliver(`${P}/update/delta`, { state: { config: { firmware_version: "9.9.9" } }, version: 5 });
    expect(changes.map((c) => c.firmwareVersion)).toEqual(["2.0.0"]);
  });

  it("close() is safe twice and rejects pending reports", async () => {
    const { mqtt, sync } = setup("aws");
    const g = await connect(mqtt, "aws");
    awsDocument(mqtt, g, {}, 1);
    const p = sync.report({ a: 1 });
    await sync.close();
    await sync.close();
    expect(mqtt.closed).toBe(1);
    expect((await rejection(p)).code).toBe(SYNC_CODES.SYNC_NOT_CONNECTED);
  });
});

describe("Azure twin sync", () => {
  const GET_BODY = '{"desired":{"updateVersion":"1.1.0","$version":12},"reported":{"firmwareVersion":"1.0.0","$version":123}}';

  it("subscribes, GETs, and acts on desired minus reported (no delta topic on Azure)", async () => {
    const { mqtt, changes, sync } = setup("azure");
    mqtt.connect();
    await settle();
    expect(mqtt.subscribed).toEqual([["$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#", "$iothub/methods/POST/#"]]);
    expect(mqtt.take()).toEqual([{ topic: "$iothub/twin/GET/?$rid=g1", payload: "", qos: 1 }]);
    mqtt.deliver("$iothub/twin/res/200/?$rid=g1", GET_BODY);
    expect(changes).toEqual([{
      desired: { updateVersion: "1.1.0" }, delta: { updateVersion: "1.1.0" }, changed: [["updateVersion"]],
      firmwareVersion: "1.1.0", version: 12,
    }]);
    expect(sync.getState()).toMatchObject({ version: 12, desired: { updateVersion: "1.1.0" } });
  });

  it("drops desired notifications whose $version is not newer than the GET's", async () => {
    const { mqtt, changes, log } = setup("azure");
    const rid = await connect(mqtt, "azure");
    mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, GET_BODY);
    mqtt.deliver("$iothub/twin/PATCH/properties/desired/?$version=12", '{"updateVersion":"9.0.0","$version":12}');
    mqtt.deliver("$iothub/twin/PATCH/properties/desired/?$version=8", '{"updateVersion":"1.1.0","route":null,"$version":8}');
    expect(changes).toHaveLength(1);
    expect(log.lines.filter((l) => l.event === SYNC_CODES.SYNC_VERSION_STALE)).toHaveLength(2);
    mqtt.deliver("$iothub/twin/PATCH/properties/desired/?$version=13", '{"updateVersion":"1.2.0","route":"blue","$version":13}');
    expect(changes).toHaveLength(2);
    expect(changes[1]).toMatchObject({ firmwareVersion: "1.2.0", version: 13, desired: { updateVersion: "1.2.0", route: "blue" } });
    // A null deletes from desired.
    mqtt.deliver("$iothub/twin/PATCH/properties/desired/?$version=14", '{"route":null,"$version":14}');
    expect(changes[2]).toEqual({ desired: { updateVersion: "1.2.0" }, delta: { updateVersion: "1.2.0" }, changed: [["updateVersion"]], firmwareVersion: "1.2.0", version: 14 });
    // A patch that changes nothing the device lacks is not handed out again.
    mqtt.deliver("$iothub/twin/PATCH/properties/desired/?$version=15", '{"updateVersion":"1.2.0","$version":15}');
    expect(changes).toHaveLength(3);
  });

  it("reports with a $rid, resolves on 204, rejects on 4xx", async () => {
    const { mqtt, sync, kv } = setup("azure");
    const rid = await connect(mqtt, "azure");
    mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, GET_BODY);
    const p = sync.report({ firmwareVersion: "1.1.0" });
    await settle();
    const [msg] = mqtt.take();
    const m = /^\$iothub\/twin\/PATCH\/properties\/reported\/\?\$rid=(.+)$/.exec(msg!.topic);
    expect(m).not.toBeNull();
    expect(JSON.parse(msg!.payload)).toEqual({ firmwareVersion: "1.1.0" });
    mqtt.deliver(`$iothub/twin/res/204/?$rid=${m![1]}&$version=124`, "");
    await p;
    expect(JSON.parse(kv.get("rep")!)).toEqual({ firmwareVersion: "1.1.0" });

    const p2 = sync.report({ x: 1 });
    await settle();
    const rid2 = /\$rid=(.+)$/.exec(mqtt.take()[0]!.topic)![1];
    mqtt.deliver(`$iothub/twin/res/400/?$rid=${rid2}`, '{"errorCode":400004,"message":"malformed"}');
    const e = await rejection(p2);
    expect(e.code).toBe(SYNC_CODES.SYNC_REJECTED);
    expect(e.detail).toMatchObject({ status: 400, serviceMessage: "malformed" });
  });

  it("refuses keys Azure forbids before sending", async () => {
    const { mqtt, sync } = setup("azure");
    const rid = await connect(mqtt, "azure");
    mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, GET_BODY);
    expect((await rejection(sync.report({ "a.b": 1 }))).code).toBe(SYNC_CODES.SYNC_DOCUMENT_INVALID);
    expect((await rejection(sync.report({ $x: 1 }))).code).toBe(SYNC_CODES.SYNC_DOCUMENT_INVALID);
    await settle();
    expect(mqtt.take()).toHaveLength(0);
  });

  it("restart: reports the persisted state after the GET", async () => {
    const kv = new MemoryKv();
    kv.set("sid", syncIdentity({ cloud: "azure", thingName: "esp32-01" }));
    kv.set("rep", '{"firmwareVersion":"1.1.0"}');
    kv.set("ver", "12");
    const { mqtt, changes } = setup("azure", { kv });
    const rid = await connect(mqtt, "azure");
    mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, GET_BODY);
    await settle();
    const [msg] = mqtt.take();
    expect(msg!.topic.startsWith("$iothub/twin/PATCH/properties/reported/?$rid=")).toBe(true);
    expect(JSON.parse(msg!.payload)).toEqual({ firmwareVersion: "1.1.0" });
    // desired updateVersion 1.1.0 vs the device's own reported firmwareVersion: different keys, so the
    // delta still names updateVersion (the application compares with its running version).
    expect(changes).toHaveLength(1);
  });

  it("a corrupt persisted state is raised and the device starts clean", async () => {
    const kv = new MemoryKv();
    kv.set("sid", '["azure","esp32-01",""]');
    kv.set("rep", "{broken");
    kv.set("ver", "12abc");
    const { errors, sync } = setup("azure", { kv });
    expect(errors.map((e) => e.code)).toEqual([SYNC_CODES.SYNC_DOCUMENT_INVALID]);
    expect(sync.getState()).toEqual({ desired: {}, reported: {}, version: 0, connected: false });
  });

  it("direct method firmwareUpdate starts an update and is answered 200", async () => {
    const { mqtt, changes } = setup("azure");
    const rid = await connect(mqtt, "azure");
    mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, '{"desired":{"$version":3},"reported":{"$version":1}}');
    mqtt.deliver("$iothub/methods/POST/firmwareUpdate/?$rid=7", '{"version":"1.1.0"}');
    expect(changes).toEqual([{ desired: {}, delta: { updateVersion: "1.1.0" }, changed: [["updateVersion"]], firmwareVersion: "1.1.0", version: 3 }]);
    await settle();
    expect(mqtt.take()).toEqual([{ topic: "$iothub/methods/res/200/?$rid=7", payload: '{"accepted":true,"version":"1.1.0"}', qos: 1 }]);
  });

  it("direct method firmwareUpdate with a hostile version: 400, lastError reported, not handed on", async () => {
    const { mqtt, changes, errors } = setup("azure");
    const rid = await connect(mqtt, "azure");
    mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, '{"desired":{"$version":3},"reported":{"$version":1}}');
    mqtt.deliver("$iothub/methods/POST/firmwareUpdate/?$rid=8", '{"version":"../../1.1.0"}');
    mqtt.deliver("$iothub/methods/POST/firmwareUpdate/?$rid=9", '{"ver":"1.1.0"}');
    expect(changes).toHaveLength(0);
    expect(errors.map((e) => e.code)).toEqual([SYNC_CODES.SYNC_FIRMWARE_VERSION_INVALID, SYNC_CODES.SYNC_DOCUMENT_INVALID]);
    await settle();
    const out = mqtt.take();
    expect(out.map((m) => m.topic)).toEqual([
      "$iothub/methods/res/400/?$rid=8",
      "$iothub/twin/PATCH/properties/reported/?$rid=r2",
      "$iothub/methods/res/400/?$rid=9",
    ]);
    expect(JSON.parse(out[0]!.payload).code).toBe("SYNC_FIRMWARE_VERSION_INVALID");
    expect(JSON.parse(out[1]!.payload).lastError.code).toBe("SYNC_FIRMWARE_VERSION_INVALID");
  });

  it("other methods go to onMethod (sync or async); without one they are answered 404", async () => {
    const { mqtt } = setup("azure", { onMethod: async (r) => ({ status: 200, payload: { echo: r.payload } }) });
    await connect(mqtt, "azure");
    mqtt.deliver("$iothub/methods/POST/ping/?$rid=1", '{"n":1}');
    await settle();
    expect(mqtt.take()).toEqual([{ topic: "$iothub/methods/res/200/?$rid=1", payload: '{"echo":{"n":1}}', qos: 1 }]);

    const other = setup("azure");
    await connect(other.mqtt, "azure");
    other.mqtt.deliver("$iothub/methods/POST/reboot/?$rid=2", "");
    await settle();
    expect(other.mqtt.take().map((m) => m.topic)).toEqual(["$iothub/methods/res/404/?$rid=2"]);
  });

  it("malformed twin messages are raised, not fatal", async () => {
    const { mqtt, errors, sync } = setup("azure");
    const rid = await connect(mqtt, "azure");
    mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, '{"desired":{},"reported":{"$version":1}}'); // no desired.$version
    mqtt.deliver("$iothub/twin/res/200/?$rid=1&$rid=2", GET_BODY);
    mqtt.deliver("$iothub/twin/PATCH/properties/desired/?$version=5", '{"a":1,"$version":6}'); // topic and body disagree
    mqtt.deliver("$iothub/twin/PATCH/properties/desired/?$version=x", "{}");
    expect(errors.map((e) => e.code)).toEqual([
      SYNC_CODES.SYNC_DOCUMENT_INVALID, SYNC_CODES.SYNC_TOPIC_INVALID, SYNC_CODES.SYNC_DOCUMENT_INVALID, SYNC_CODES.SYNC_TOPIC_INVALID,
    ]);
    expect(sync.getState().version).toBe(0);
  });
});

describe("step (pure)", () => {
  const ctx: StepContext = {
    protocol: awsProtocol({ thingName: "esp32-01" }),
    firmwareVersionPath: ["config", "firmware_version"],
    requestTimeoutMs: 1000,
    conditionalReports: true,
    firmwareMethod: "firmwareUpdate",
    maxStateDepth: 8,
    throttleRetry: { initialMs: 1000, maxMs: 8000, maxAttempts: 3 },
  };

  it("connected → subscribe, publish get, start its timer; the input state is untouched", () => {
    const s0 = initialSyncState({ a: 1 }, 4);
    const { state, actions } = step(s0, { type: "connected" }, ctx);
    expect(actions.map((a) => a.type)).toEqual(["subscribe", "publish", "start-timer"]);
    expect(actions[1]).toEqual({ type: "publish", message: { topic: `${P}/get`, payload: '{"clientToken":"g1"}' }, token: "g1" });
    expect(actions[2]).toEqual({ type: "start-timer", token: "g1", ms: 1000 });
    expect(state).toMatchObject({ connected: true, synced: false, pendingGet: "g1", nextId: 2 });
    expect(s0).toEqual(initialSyncState({ a: 1 }, 4));
  });

  it("the same state and input give the same actions", () => {
    const s1 = step(initialSyncState(), { type: "connected" }, ctx).state;
    const input = { type: "message" as const, event: { kind: "document" as const, token: "g1", desired: { config: { firmware_version: "1.2.3" } }, reported: {}, version: 2 } };
    expect(step(s1, input, ctx)).toEqual(step(s1, input, ctx));
    const { actions } = step(s1, input, ctx);
    expect(actions.filter((a) => a.type === "desired")).toHaveLength(1);
    expect(actions.filter((a) => a.type === "persist")).toEqual([{ type: "persist", key: "ver", value: "2" }]);
  });

  it("a stale notification produces only a log line", () => {
    let s = step(initialSyncState(), { type: "connected" }, ctx).state;
    s = step(s, { type: "message", event: { kind: "document", token: "g1", desired: {}, reported: {}, version: 5 } }, ctx).state;
    const { state, actions } = step(s, { type: "message", event: { kind: "desired-delta", delta: { x: 1 }, version: 5 } }, ctx);
    expect(actions).toEqual([{ type: "log", level: "info", event: "SYNC_VERSION_STALE", fields: { version: 5, lastSeen: 5 } }]);
    expect(state).toEqual(s);
  });
});

describe("handlers given as a class instance", () => {
  it("calls onError and onMethod as methods, so `this` is the instance", async () => {
    class App {
      errors: string[] = [];
      methods: string[] = [];
      onDesired(): void {}
      onError(e: ShadowOtaError): void { this.errors.push(e.code); }
      onMethod(r: { name: string }): MethodResult { this.methods.push(r.name); return { status: 200 }; }
    }
    const app = new App();
    const mqtt = new FakeMqtt();
    const log = new MemoryLog();
    const sync = new ShadowSync({ mqtt, kv: new MemoryKv(), clock: new ManualClock(), log },
      { cloud: "azure", thingName: "esp32-01", firmwareVersionPath: ["updateVersion"] }, app);
    sync.start();
    mqtt.connect();
    await settle();
    mqtt.deliver("$iothub/twin/PATCH/properties/desired/?$version=2", "{broken");
    mqtt.deliver("$iothub/methods/POST/reboot/?$rid=7", "{}");
    await settle();
    expect(app.errors).toEqual([SYNC_CODES.SYNC_JSON_INVALID]);
    expect(app.methods).toEqual(["reboot"]);
    expect(mqtt.last().topic).toBe("$iothub/methods/res/200/?$rid=7");
    expect(log.has("sync.handler-threw")).toBe(false);
  });
});
