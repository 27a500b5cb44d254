/**
 * The Azure twin service (src/sim/twin-service.ts) over real MQTT, in both ways it reaches devices:
 * - a dedicated link (raw `$iothub/…` topics; the broker stands for the device's own broker), on aedes and
 *   on an independent mosquitto;
 * - a shared broker with `devices/{id}/$iothub/…` topics: a test client publishing the scoped topics on
 *   plain aedes, and a real device behind the TLS aedes broker of broker-aedes.ts, which does the
 *   rewriting (the path a simulated device takes).
 * Each runs the vectors of test/vectors/twin-service.json with exact texts; then direct methods (round
 * trip, 504 timeout with an injected clock, late and unreadable replies, close while waiting, no route),
 * restart persistence, 100 KB payloads, a failing store, and a twin + shadow service sharing one client.
 * "Nothing else was published" is checked with a sentinel GET answered after the step's messages.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { MqttClient } from "mqtt";

import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { AedesBroker } from "../../src/sim/broker-aedes";
import { decidePublish } from "../../src/sim/broker-policy";
import { CLOUD_CODES } from "../../src/sim/cloud-errors";
import { CloudStore, type CloudStoreIo } from "../../src/sim/cloud-store";
import { CLOUD_SERVICE_IDENTITY } from "../../src/sim/pki";
import { ShadowService } from "../../src/sim/shadow-service";
import { TwinService } from "../../src/sim/twin-service";
import { ManualClock, MemoryLog } from "../core/fake-ports";
import { connectClient, testPki } from "./broker-fixtures";
import { connectPlain, endClient, Inbox, startPlainAedes, startPlainMosquitto, tempDir, type PlainBroker } from "./cloud-fixtures";
import { itMosquitto, noteMosquittoSkipped } from "./mosquitto-gate";
import { deviceId, expectedTwinMessages, mqttTwinSteps, twinStepBytes, type TwinVectorStep } from "./twin-vectors";
import { rejection } from "../core/error-of";

const DEVICE_SUBSCRIPTIONS = ["$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#", "$iothub/methods/POST/#"];

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

/** How the test's device talks: `prefix` is put before every device topic it publishes and subscribes. */
interface Rig {
  disk: { full: boolean };
  service: TwinService;
  serviceClient: MqttClient;
  device: MqttClient;
  inbox: Inbox;
  prefix: string;
  clock: ManualClock;
  log: MemoryLog;
  store: CloudStore;
  dir: string;
}

let seq = 0;

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

async function rig(broker: PlainBroker, mode: "link" | "shared", dir = tempDir("twin-service"), methodTimeoutMs?: number): Promise<Rig> {
  const clock = new ManualClock();
  const log = new MemoryLog();
  const disk = diskWithSwitch();
  const store = CloudStore.open(dir, { io: disk.io });
  const serviceClient = await connectPlain(broker.url, `cloud-twin-${++seq}`);
  const options = methodTimeoutMs === undefined ? { store, clock, log } : { store, clock, log, methodTimeoutMs };
  const service = await TwinService.start(mode === "shared" ? serviceClient : null, options);
  if (mode === "link") await service.attachDeviceLink(deviceId, serviceClient);
  const prefix = mode === "shared" ? `devices/${deviceId}/` : "";
  const device = await connectPlain(broker.url, `${deviceId}-${seq}`);
  const inbox = new Inbox(device);
  await device.subscribeAsync(DEVICE_SUBSCRIPTIONS.map((t) => prefix + t), { qos: 1 });
  cleanups.push(async () => {
    await service.close();
    await endClient(serviceClient);
    await endClient(device);
    await store.close(); // as LocalCloud.close does: the directory's lock is released
  });
  return { service, serviceClient, device, inbox, prefix, clock, log, store, dir, disk };
}

let sentinel = 0;

/** Publishes (device step) or patches desired (admin step), then returns what arrived before the sentinel's answer. */
async function exchange(r: Pick<Rig, "device" | "inbox" | "prefix" | "service">, step: { topic: string; bytes: Uint8Array } | { desired: JsonObject }): Promise<Array<{ topic: string; payload: string }>> {
  const from = r.inbox.messages.length;
  if ("desired" in step) await r.service.updateDesired(deviceId, step.desired);
  else await r.device.publishAsync(r.prefix + step.topic, Buffer.from(step.bytes), { qos: 1 });
  const rid = `sentinel-${++sentinel}`;
  await r.device.publishAsync(`${r.prefix}$iothub/twin/GET/?$rid=${rid}`, "", { qos: 1 });
  const answer = `${r.prefix}$iothub/twin/res/200/?$rid=${rid}`;
  await r.inbox.next((m) => m.topic === answer, from);
  return r.inbox.messages.slice(from).filter((m) => !m.topic.includes("$rid=sentinel-")).map((m) => ({ topic: m.topic, payload: m.payload }));
}

async function runVectors(r: Pick<Rig, "device" | "inbox" | "prefix" | "service">, steps: TwinVectorStep[] = mqttTwinSteps): Promise<void> {
  for (const s of steps) {
    const got = await exchange(r, "desired" in s ? { desired: s.desired } : { topic: s.topic, bytes: twinStepBytes(s) });
    expect({ step: s.name, messages: got }).toEqual({ step: s.name, messages: expectedTwinMessages(s, r.prefix) });
  }
}

noteMosquittoSkipped("test/sim/twin-service.test.ts");

describe("vectors", () => {
  it("over a dedicated link (raw $iothub topics) on aedes", async () => {
    await runVectors(await rig(aedes, "link"));
  });

  it("over a shared broker with devices/{id}/ topics (a test client publishing them)", async () => {
    await runVectors(await rig(aedes, "shared"));
  });

  itMosquitto("over a dedicated link on an independent mosquitto", async () => {
    const mosquitto = await startPlainMosquitto();
    cleanups.push(() => mosquitto.close());
    await runVectors(await rig(mosquitto, "link"));
  });

  it("through the TLS aedes broker that rewrites a real device's $iothub topics (the simulator's path)", async () => {
    const { pki, cleanup } = testPki("twin-service-tls");
    cleanups.push(cleanup);
    const broker = await AedesBroker.start({ pki });
    cleanups.push(() => broker.close());
    const svc = await connectClient(broker.port, pki.client(CLOUD_SERVICE_IDENTITY), "cloud-twin-tls");
    const dev = await connectClient(broker.port, pki.client(deviceId), deviceId);
    cleanups.push(async () => { await svc.end(); await dev.end(); });
    const service = await TwinService.start(svc.client, { store: CloudStore.open(tempDir("twin-tls")), clock: new ManualClock() });
    cleanups.push(() => service.close());
    const inbox = new Inbox(dev.client);
    await dev.client.subscribeAsync(DEVICE_SUBSCRIPTIONS, { qos: 1 });
    // The broker closes a device's connection when it publishes outside its policy (as AWS does), so every
    // step sent here must be one the policy allows.
    for (const s of mqttTwinSteps) if ("topic" in s) expect({ s: s.name, allow: decidePublish({ kind: "device", name: deviceId }, s.topic).allow }).toEqual({ s: s.name, allow: true });
    await runVectors({ device: dev.client, inbox, prefix: "", service });
    expect(dev.closed).toBe(false);
    // And a direct method through the rewriting broker.
    dev.client.on("message", (topic) => {
      const m = /^\$iothub\/methods\/POST\/([^/]+)\/\?\$rid=(.+)$/.exec(topic);
      if (m) void dev.client.publishAsync(`$iothub/methods/res/200/?$rid=${m[2]}`, JSON.stringify({ method: m[1] }), { qos: 1 });
    });
    expect(await service.invokeMethod(deviceId, "firmwareUpdate", { version: "1.1.0" })).toEqual({ status: 200, payload: { method: "firmwareUpdate" } });
  });
});

/** Makes the device answer every direct method with `reply(name, payload)`. */
function answerMethods(r: Rig, reply: (name: string, payload: string) => { status: number; body: string | Buffer } | undefined): void {
  r.device.on("message", (topic, payload) => {
    const m = new RegExp(`^${r.prefix.replace(/[$/]/g, "\\$&")}\\$iothub/methods/POST/([^/]+)/\\?\\$rid=(.+)$`).exec(topic);
    if (!m) return;
    const out = reply(m[1]!, payload.toString("utf8"));
    if (out !== undefined) void r.device.publishAsync(`${r.prefix}$iothub/methods/res/${out.status}/?$rid=${m[2]}`, out.body, { qos: 1 });
  });
}

describe("direct methods", () => {
  for (const mode of ["link", "shared"] as const) {
    it(`round trip over the ${mode === "link" ? "dedicated link" : "shared broker"}: request topic and payload, the device's status and payload`, async () => {
      const r = await rig(aedes, mode);
      // The device answers firmwareUpdate with 200 and anything else with 404; in `reverse` mode it holds
      // two requests and answers the second one first.
      let reverse = false;
      const held: Array<() => void> = [];
      r.device.on("message", (topic, payload) => {
        const m = /\$iothub\/methods\/POST\/([^/]+)\/\?\$rid=(.+)$/.exec(topic);
        if (!m) return;
        const status = m[1] === "firmwareUpdate" || reverse ? 200 : 404;
        const body = JSON.stringify({ name: m[1], got: JSON.parse(payload.toString("utf8")) });
        const send = (): void => void r.device.publishAsync(`${r.prefix}$iothub/methods/res/${status}/?$rid=${m[2]}`, body, { qos: 1 });
        if (!reverse) send();
        else if (held.push(send) === 2) { held[1]!(); held[0]!(); }
      });
      expect(await r.service.invokeMethod(deviceId, "firmwareUpdate", { version: "1.1.0" })).toEqual({ status: 200, payload: { name: "firmwareUpdate", got: { version: "1.1.0" } } });
      expect(await r.service.invokeMethod(deviceId, "unknown")).toEqual({ status: 404, payload: { name: "unknown", got: null } });
      expect(r.inbox.messages.filter((m) => m.topic.includes("/methods/POST/")).map((m) => [m.topic, m.payload])).toEqual([
        [`${r.prefix}$iothub/methods/POST/firmwareUpdate/?$rid=1`, "{\"version\":\"1.1.0\"}"],
        [`${r.prefix}$iothub/methods/POST/unknown/?$rid=2`, "null"],
      ]);
      // Two calls in flight are matched by $rid, whatever order the replies come in.
      reverse = true;
      const [a, b] = await Promise.all([r.service.invokeMethod(deviceId, "first", 1), r.service.invokeMethod(deviceId, "second", 2)]);
      expect([a, b]).toEqual([{ status: 200, payload: { name: "first", got: 1 } }, { status: 200, payload: { name: "second", got: 2 } }]);
    });
  }

  it("no reply within the timeout gives 504; a late reply is logged and dropped", async () => {
    const r = await rig(aedes, "link", undefined, 2_000);
    const from = r.inbox.messages.length;
    const call = r.service.invokeMethod(deviceId, "slow", { n: 1 });
    const req = await r.inbox.next((m) => m.topic.startsWith("$iothub/methods/POST/slow/"), from);
    r.clock.advance(1_999);
    let settled = false;
    void call.then(() => { settled = true; });
    await new Promise((res) => setImmediate(res));
    expect(settled).toBe(false);
    r.clock.advance(1);
    expect(await call).toEqual({ status: 504, payload: { message: "Timed out waiting for the response from device (2000 ms)" } });
    const rid = /\$rid=(.+)$/.exec(req.topic)![1]!;
    await r.device.publishAsync(`$iothub/methods/res/200/?$rid=${rid}`, "{}", { qos: 1 });
    await exchange(r, { topic: "$iothub/twin/GET/?$rid=after", bytes: new Uint8Array() }); // the late reply has been handled by now
    expect(r.log.lines.find((l) => l.event === "twin.method_reply_unexpected")?.fields).toEqual({ deviceId, rid, status: 200 });
    // A per-call timeout overrides the service's default.
    const quick = r.service.invokeMethod(deviceId, "slow", null, { timeoutMs: 10 });
    await r.inbox.next((m) => m.topic.startsWith("$iothub/methods/POST/slow/") && !m.topic.endsWith(`=${rid}`), from);
    r.clock.advance(10);
    expect((await quick).status).toBe(504);
  });

  it("an unreadable reply rejects with the decoding error; bad names and ids are refused before publishing", async () => {
    const r = await rig(aedes, "shared");
    answerMethods(r, () => ({ status: 200, body: Buffer.from([0x7b, 0xff]) }));
    expect((await rejection(r.service.invokeMethod(deviceId, "x"))).code).toBe("SYNC_ENCODING_INVALID");
    expect((await rejection(r.service.invokeMethod(deviceId, "bad name"))).code).toBe("SYNC_NAME_INVALID");
    expect((await rejection(r.service.invokeMethod("bad/id", "x"))).code).toBe(CLOUD_CODES.CLOUD_DEVICE_ID_INVALID);
  });

  it("close() rejects a waiting call with CLOUD_SERVICE_CLOSED; a device without a route gets 404", async () => {
    const r = await rig(aedes, "link");
    const call = r.service.invokeMethod(deviceId, "wait");
    await r.inbox.next((m) => m.topic.includes("/methods/POST/wait/"));
    const closed = rejection(call);
    await r.service.close();
    const e = await closed;
    expect([e.code, e.detail]).toEqual([CLOUD_CODES.CLOUD_SERVICE_CLOSED, { method: "wait", deviceId }]);
    expect(r.clock.pending).toBe(0);
    expect((await rejection(r.service.getTwin(deviceId))).code).toBe(CLOUD_CODES.CLOUD_SERVICE_CLOSED);
    const lonely = await TwinService.start(null, { store: CloudStore.open(tempDir("twin-lonely")) });
    expect(await lonely.invokeMethod("esp32-77", "x")).toEqual({ status: 404, payload: { message: "device esp32-77 is not connected to the local cloud" } });
    expect(await lonely.updateDesired("esp32-77", { a: 1 })).toEqual({ version: 2 }); // stored, nobody to notify
    await lonely.close();
  });
});

describe("persistence and failures", () => {
  it("twins survive a restart on the same data directory; versions continue", async () => {
    const dir = tempDir("twin-restart");
    const a = await rig(aedes, "link", dir);
    await exchange(a, { topic: "$iothub/twin/PATCH/properties/reported/?$rid=1", bytes: Buffer.from("{\"fw\":\"1.0.0\"}") });
    await exchange(a, { desired: { updateVersion: "1.1.0" } });
    const before = await a.service.getTwin(deviceId);
    expect(before).toEqual({ desired: { updateVersion: "1.1.0" }, desiredVersion: 2, reported: { fw: "1.0.0" }, reportedVersion: 2 });
    await cleanups.pop()!();
    const b = await rig(aedes, "shared", dir);
    expect(await b.service.getTwin(deviceId)).toEqual(before);
    expect(await exchange(b, { topic: "$iothub/twin/GET/?$rid=g", bytes: new Uint8Array() })).toEqual([{
      topic: `devices/${deviceId}/$iothub/twin/res/200/?$rid=g`, payload: "{\"desired\":{\"updateVersion\":\"1.1.0\",\"$version\":2},\"reported\":{\"fw\":\"1.0.0\",\"$version\":2}}",
    }]);
    expect(await exchange(b, { desired: { updateVersion: "1.2.0" } })).toEqual([{
      topic: `devices/${deviceId}/$iothub/twin/PATCH/properties/desired/?$version=3`, payload: "{\"updateVersion\":\"1.2.0\",\"$version\":3}",
    }]);
  });

  it("100 KB and over-deep payloads get 400 and the service keeps serving", async () => {
    const r = await rig(aedes, "link");
    for (const [rid, bytes] of [["big", Buffer.alloc(100 * 1024, 0x41)], ["deep", Buffer.alloc(100 * 1024, 0x7b)], ["json", Buffer.from(JSON.stringify({ s: "x".repeat(100 * 1024) }))]] as const) {
      const got = await exchange(r, { topic: `$iothub/twin/PATCH/properties/reported/?$rid=${rid}`, bytes });
      expect(got).toEqual([{ topic: `$iothub/twin/res/400/?$rid=${rid}`, payload: expect.stringMatching(/^\{"message":"SYNC_(PAYLOAD_TOO_LARGE|DEPTH_EXCEEDED): /) }]);
    }
    expect((await r.service.getTwin(deviceId)).reportedVersion).toBe(1);
    expect(r.log.lines.filter((l) => l.event === "twin.rejected")).toHaveLength(3);
  });

  it("a redelivered reported PATCH (same $rid and body, nothing applied since) gets the first answer and is not applied again", async () => {
    const r = await rig(aedes, "link");
    const patch = (rid: string, body: string) => exchange(r, { topic: `$iothub/twin/PATCH/properties/reported/?$rid=${rid}`, bytes: Buffer.from(body) });
    const first = [{ topic: "$iothub/twin/res/204/?$rid=7&$version=2", payload: "" }];
    expect(await patch("7", "{\"a\":1}")).toEqual(first);
    expect(await patch("7", "{\"a\":1}")).toEqual(first); // the copy
    expect(await r.service.getTwin(deviceId)).toMatchObject({ reported: { a: 1 }, reportedVersion: 2 });
    expect(r.log.lines.filter((l) => l.event === "twin.redelivered").map((l) => l.fields)).toEqual([{ deviceId, rid: "7", version: 2 }]);
    // Not copies: the same $rid with another body; the same $rid and body after another patch was applied
    // (a device that restarted its $rid counter), so nothing the device sends is ever lost.
    expect(await patch("7", "{\"a\":2}")).toEqual([{ topic: "$iothub/twin/res/204/?$rid=7&$version=3", payload: "" }]);
    expect(await patch("8", "{\"a\":1}")).toEqual([{ topic: "$iothub/twin/res/204/?$rid=8&$version=4", payload: "" }]);
    expect(await patch("7", "{\"a\":2}")).toEqual([{ topic: "$iothub/twin/res/204/?$rid=7&$version=5", payload: "" }]);
    expect(await r.service.getTwin(deviceId)).toMatchObject({ reported: { a: 2 }, reportedVersion: 5 });
    // A desired change between original and copy does not touch reported: still a copy.
    await exchange(r, { desired: { x: 1 } });
    expect(await patch("7", "{\"a\":2}")).toEqual([{ topic: "$iothub/twin/res/204/?$rid=7&$version=5", payload: "" }]);
    // A refused patch is not remembered: its copy is refused again, by the same rules.
    expect(await patch("9", "{\"$bad\":1}")).toEqual([{ topic: "$iothub/twin/res/400/?$rid=9", payload: expect.any(String) }]);
    expect(await patch("9", "{\"$bad\":1}")).toEqual([{ topic: "$iothub/twin/res/400/?$rid=9", payload: expect.any(String) }]);
    expect((await r.service.getTwin(deviceId)).reportedVersion).toBe(5);
  });

  it("nesting depth counted as IoT Hub counts it: its own example at the limit is accepted, one level deeper refused (device and admin)", async () => {
    const r = await rig(aedes, "link");
    // "Understand and use device twins in IoT Hub", Depth: objects one … ten under the section, the last
    // holding a plain value, "is valid" (depth 10).
    const example: JsonObject = { one: { two: { three: { four: { five: { six: { seven: { eight: { nine: { ten: { property: "value" } } } } } } } } } } };
    const deeper = (o: JsonObject): JsonObject => ({ zero: o });
    const patch = (rid: string, o: JsonObject) => exchange(r, { topic: `$iothub/twin/PATCH/properties/reported/?$rid=${rid}`, bytes: Buffer.from(JSON.stringify(o)) });
    expect(await patch("at", example)).toEqual([{ topic: "$iothub/twin/res/204/?$rid=at&$version=2", payload: "" }]);
    expect(await patch("over", deeper(example))).toEqual([{ topic: "$iothub/twin/res/400/?$rid=over",
      payload: "{\"message\":\"SYNC_DEPTH_EXCEEDED: reported nests 11 levels; the maximum is 10\"}" }]);
    expect(await r.service.updateDesired(deviceId, example)).toEqual({ version: 2 });
    const e = await rejection(r.service.updateDesired(deviceId, deeper(example)));
    expect([e.code, e.detail?.status, e.detail?.serviceMessage]).toEqual([CLOUD_CODES.CLOUD_REQUEST_REJECTED, 400, "desired nests 11 levels; the maximum is 10"]);
    expect(await r.service.getTwin(deviceId)).toEqual({ desired: example, desiredVersion: 2, reported: example, reportedVersion: 2 });
  });

  it("a store that cannot be written: 500 for the patch, the twin unchanged; updateDesired throws CLOUD_STORE_IO", async () => {
    const r = await rig(aedes, "link");
    await exchange(r, { topic: "$iothub/twin/PATCH/properties/reported/?$rid=1", bytes: Buffer.from("{\"a\":1}") });
    r.disk.full = true; // every commit's write fails with ENOSPC
    expect(await exchange(r, { topic: "$iothub/twin/PATCH/properties/reported/?$rid=2", bytes: Buffer.from("{\"a\":2}") })).toEqual([
      { topic: "$iothub/twin/res/500/?$rid=2", payload: "{\"message\":\"CLOUD_STORE_IO: the twin could not be stored\"}" }]);
    expect((await rejection(r.service.updateDesired(deviceId, { x: 1 }))).code).toBe(CLOUD_CODES.CLOUD_STORE_IO);
    expect(await r.service.getTwin(deviceId)).toEqual({ desired: {}, desiredVersion: 1, reported: { a: 1 }, reportedVersion: 2 });
    expect(r.log.has("twin.store_failed")).toBe(true);
  });

  it("refused admin patches are typed and publish nothing", async () => {
    const r = await rig(aedes, "link");
    const e = await rejection(r.service.updateDesired(deviceId, { "bad.key": 1 }));
    expect([e.code, e.detail?.status]).toEqual([CLOUD_CODES.CLOUD_REQUEST_REJECTED, 400]);
    expect(await exchange(r, { topic: "$iothub/twin/GET/?$rid=1", bytes: new Uint8Array() })).toEqual([
      { topic: "$iothub/twin/res/200/?$rid=1", payload: "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}" }]);
  });
});

describe("one client for both services", () => {
  it("a shadow service and a twin service share a client without answering each other's topics", async () => {
    const dir = tempDir("both");
    const store = CloudStore.open(dir);
    const client = await connectPlain(aedes.url, "cloud-both");
    const shadows = await ShadowService.start(client, { store, clock: new ManualClock() });
    const twins = await TwinService.start(client, { store, clock: new ManualClock() });
    const device = await connectPlain(aedes.url, "dev-both");
    cleanups.push(async () => { await shadows.close(); await twins.close(); await endClient(client); await endClient(device); });
    const inbox = new Inbox(device);
    await device.subscribeAsync(["$aws/things/both/shadow/#", `devices/${deviceId}/$iothub/twin/res/#`], { qos: 1 });
    await device.publishAsync("$aws/things/both/shadow/update", "{\"state\":{\"reported\":{\"a\":1}}}", { qos: 1 });
    await inbox.next((m) => m.topic.endsWith("/update/documents"));
    await device.publishAsync(`devices/${deviceId}/$iothub/twin/PATCH/properties/reported/?$rid=1`, "{\"b\":2}", { qos: 1 });
    await inbox.next((m) => m.topic.includes("/res/204/"));
    // Both wrote into the one store file, each its own section.
    const reopened = CloudStore.read(dir);
    expect([reopened.shadows.both?.version, reopened.twins[deviceId]?.reported]).toEqual([1, { b: 2 }]);
    expect(inbox.messages.map((m) => m.topic)).toEqual([
      "$aws/things/both/shadow/update", "$aws/things/both/shadow/update/accepted", "$aws/things/both/shadow/update/documents",
      `devices/${deviceId}/$iothub/twin/res/204/?$rid=1&$version=2`,
    ]);
  });
});
