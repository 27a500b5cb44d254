/**
 * The twin service's rate limits (src/sim/twin-service.ts TwinThrottle, IoT Hub's "Twin reads" and "Twin
 * updates" throttles): over a real broker (plain-TCP aedes on 127.0.0.1, the shared `devices/{id}/` topics),
 * a device's GET or reported PATCH over the hub's rate, or over its own, is answered 429 on its response
 * topic and changes nothing; the rate comes back as time passes; an Azure device's ShadowSync (src/core)
 * sends a throttled report again after its backoff until the twin holds every report. Clocks are manual:
 * the service's buckets refill only when the test moves its clock, so nothing depends on the machine's speed.
 */
import type { MqttClient } from "mqtt";

import type { JsonObject } from "../../src/core/json";
import { ShadowSync } from "../../src/core/shadow-sync";
import type { MqttTransport, MqttTransportEvents } from "../../src/ports/mqtt-transport";
import { CLOUD_CODES } from "../../src/sim/cloud-errors";
import { CloudStore } from "../../src/sim/cloud-store";
import { DEFAULT_TWIN_THROTTLE, TwinService, twinThrottle, type TwinThrottle } from "../../src/sim/twin-service";
import { ManualClock, MemoryKv, MemoryLog } from "../core/fake-ports";
import { connectPlain, endClient, Inbox, startPlainAedes, tempDir, type PlainBroker } from "./cloud-fixtures";
import { waitUntil } from "./wait-until";

let broker: PlainBroker;
const cleanups: Array<() => Promise<void> | void> = [];
beforeAll(async () => { broker = await startPlainAedes(); });
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c(); });
afterAll(async () => { await broker.close(); });

let seq = 0;

async function rig(throttle: Partial<TwinThrottle> | false): Promise<{ service: TwinService; clock: ManualClock; log: MemoryLog; device(id: string): Promise<{ ask(topic: string, body?: string): Promise<string> }> }> {
  const clock = new ManualClock();
  const log = new MemoryLog();
  const store = CloudStore.open(tempDir("twin-throttle"));
  const serviceClient = await connectPlain(broker.url, `cloud-throttle-${++seq}`);
  const service = await TwinService.start(serviceClient, { store, clock, log, throttle });
  cleanups.push(async () => { await service.close(); await endClient(serviceClient); await store.close(); });
  return {
    service, clock, log,
    async device(id: string) {
      const client = await connectPlain(broker.url, `${id}-${seq}`);
      cleanups.push(() => endClient(client));
      const inbox = new Inbox(client);
      await client.subscribeAsync(`devices/${id}/$iothub/twin/res/#`, { qos: 1 });
      let rid = 0;
      return {
        /** Publishes a request and resolves with the status of its answer. */
        async ask(topic: string, body = ""): Promise<string> {
          const r = `${id}-${++rid}`;
          const from = inbox.messages.length;
          await client.publishAsync(`devices/${id}/${topic}?$rid=${r}`, body, { qos: 1 });
          const m = await inbox.next((x) => x.topic.includes(`?$rid=${r}`), from);
          return /\/res\/(\d+)\//.exec(m.topic)![1]!;
        },
      };
    },
  };
}

const GET = "$iothub/twin/GET/";
const PATCH = "$iothub/twin/PATCH/properties/reported/";

test("the defaults are IoT Hub S1's twin rates (reads 100/s, updates 50/s per hub) with a one-minute burst; a bad rate is CLOUD_OPTION_INVALID", async () => {
  expect(DEFAULT_TWIN_THROTTLE).toEqual({ readsPerSecond: 100, updatesPerSecond: 50, perDevicePerSecond: 0, burstSeconds: 60 });
  expect(twinThrottle({ updatesPerSecond: -1 })).toBe("twin throttle updatesPerSecond must be a finite number >= 0, not -1");
  expect(twinThrottle({ burstSeconds: 0 })).toBe("twin throttle burstSeconds must be > 0");
  await expect(TwinService.start(null, { store: CloudStore.open(tempDir("twin-throttle-bad")), throttle: { readsPerSecond: Number.NaN } }))
    .rejects.toMatchObject({ code: CLOUD_CODES.CLOUD_OPTION_INVALID });
});

test("reported PATCHes over the hub's update rate get 429 and change nothing; the rate comes back with time", async () => {
  const r = await rig({ readsPerSecond: 0, updatesPerSecond: 2, burstSeconds: 1 });
  const d = await r.device("az-t1");
  expect([await d.ask(PATCH, "{\"a\":1}"), await d.ask(PATCH, "{\"b\":2}"), await d.ask(PATCH, "{\"c\":3}")]).toEqual(["204", "204", "429"]);
  expect(await r.service.getTwin("az-t1")).toMatchObject({ reported: { a: 1, b: 2 }, reportedVersion: 3 });
  expect(await d.ask(GET)).toBe("200"); // reads are another throttle (off here)
  r.clock.advance(500); // one update's worth
  expect([await d.ask(PATCH, "{\"c\":3}"), await d.ask(PATCH, "{\"d\":4}")]).toEqual(["204", "429"]);
  expect(await r.service.getTwin("az-t1")).toMatchObject({ reported: { a: 1, b: 2, c: 3 }, reportedVersion: 4 });
  expect(r.log.lines.filter((l) => l.event === "twin.rejected").map((l) => l.fields!["status"])).toEqual([429, 429]);
});

test("GETs over the hub's read rate get 429; the hub's rates are shared by every device", async () => {
  const hub = await rig({ readsPerSecond: 1, updatesPerSecond: 0, burstSeconds: 2 });
  const a = await hub.device("az-t2");
  const b = await hub.device("az-t3");
  expect([await a.ask(GET), await b.ask(GET), await b.ask(GET)]).toEqual(["200", "200", "429"]);
  expect(await a.ask(PATCH, "{\"x\":1}")).toBe("204");
});

// (One service per test: every service here serves the shared devices/+/ topics of the one broker.)
test("a per-device rate holds one device back only", async () => {
  const per = await rig({ readsPerSecond: 0, updatesPerSecond: 0, perDevicePerSecond: 1, burstSeconds: 1 });
  const c = await per.device("az-t4");
  const e = await per.device("az-t5");
  expect([await c.ask(GET), await c.ask(PATCH, "{\"y\":1}"), await e.ask(GET)]).toEqual(["200", "429", "200"]);
  per.clock.advance(1_000);
  expect(await c.ask(PATCH, "{\"y\":1}")).toBe("204");
});

test("throttle false: no limit at all", async () => {
  const r = await rig(false);
  const d = await r.device("az-t6");
  const statuses: string[] = [];
  for (let i = 0; i < 30; i++) statuses.push(await d.ask(PATCH, JSON.stringify({ n: i })));
  expect(new Set(statuses)).toEqual(new Set(["204"]));
});

/** The MqttTransport port over an mqtt.js client on the shared broker, adding the `devices/{id}/` scoping
 *  the TLS aedes broker adds for a real device (not needed to meet the throttle). */
class ScopedTransport implements MqttTransport {
  constructor(readonly client: MqttClient, readonly prefix: string) {}
  setHandlers(handlers: MqttTransportEvents): void {
    this.client.on("message", (topic, payload) => { if (topic.startsWith(this.prefix)) handlers.message(topic.slice(this.prefix.length), new Uint8Array(payload)); });
    this.#handlers = handlers;
  }
  #handlers: MqttTransportEvents | undefined;
  start(): void { this.#handlers!.connected(); }
  async subscribe(topics: readonly string[]): Promise<void> { await this.client.subscribeAsync(topics.map((t) => this.prefix + t), { qos: 1 }); }
  async publish(topic: string, payload: string | Uint8Array, qos: 0 | 1 = 1): Promise<void> {
    await this.client.publishAsync(this.prefix + topic, typeof payload === "string" ? payload : Buffer.from(payload), { qos });
  }
  async close(): Promise<void> { await endClient(this.client); }
}

test("an Azure device's throttled reports are sent again after its backoff until the twin holds them all", async () => {
  const r = await rig({ readsPerSecond: 0, updatesPerSecond: 1, burstSeconds: 1 });
  const deviceClock = new ManualClock();
  const log = new MemoryLog();
  const transport = new ScopedTransport(await connectPlain(broker.url, `az-t7-${seq}`), "devices/az-t7/");
  const sync = new ShadowSync(
    { mqtt: transport, kv: new MemoryKv(), clock: deviceClock, log, random: () => 0.5 },
    { cloud: "azure", thingName: "az-t7", firmwareVersionPath: ["fw"], throttleRetry: { initialMs: 500, maxMs: 500, maxAttempts: 10 } },
    { onDesired: () => undefined });
  cleanups.push(async () => { await sync.close(); await transport.close(); });
  sync.start();
  await waitUntil(() => (sync.synced ? true : undefined), 10_000, "the device's get");
  const patches: JsonObject[] = [{ a: 1 }, { b: 2 }, { c: 3 }];
  const results: string[] = [];
  const reports = patches.map((p, i) => sync.report(p).then(() => { results[i] = "accepted"; }, (e: Error) => { results[i] = e.message; }));
  await waitUntil(() => (log.has("sync.report.throttled") ? true : undefined), 10_000, "a 429");
  // Each turn: one update's worth on the service, then the device's clock past its longest backoff wait
  // (the retry goes out), then wait for that retry's answer: accepted, or throttled again. Bounded.
  const settled = (): number => results.filter((x) => x !== undefined).length;
  const answers = (): number => settled() + log.lines.filter((l) => l.event === "sync.report.throttled").length;
  for (let turn = 0; turn < 20 && settled() < 3; turn++) {
    const seen = answers();
    r.clock.advance(1_000);
    deviceClock.advance(1_000);
    await waitUntil(() => (answers() > seen ? true : undefined), 10_000, "the retry answered");
  }
  await Promise.all(reports);
  expect(results).toEqual(["accepted", "accepted", "accepted"]);
  expect((await r.service.getTwin("az-t7")).reported).toEqual({ a: 1, b: 2, c: 3 });
  expect(log.lines.filter((l) => l.event === "sync.report.throttled").length).toBeGreaterThanOrEqual(1);
});
