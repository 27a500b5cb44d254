/**
 * A device's reports against the local cloud's shadow rate limit, over a real broker: the AWS shadow service
 * (src/sim/shadow-service.ts) on a plain-TCP aedes on 127.0.0.1 with a limit of 2 requests per second per
 * shadow answers the device's third request in a second with 429; the device's ShadowSync (src/core) waits
 * its backoff and sends the report again until the shadow holds every report. Both clocks are manual: the
 * service's second moves only when the test moves it, the device's backoff timer fires only when the test
 * advances it, so nothing here depends on how fast the machine is.
 */
import type { MqttClient } from "mqtt";

import type { JsonObject } from "../../src/core/json";
import { ShadowSync } from "../../src/core/shadow-sync";
import type { MqttTransport, MqttTransportEvents } from "../../src/ports/mqtt-transport";
import { CloudStore } from "../../src/sim/cloud-store";
import { ShadowService } from "../../src/sim/shadow-service";
import { ManualClock, MemoryKv, MemoryLog } from "../core/fake-ports";
import { connectPlain, endClient, startPlainAedes, tempDir, type PlainBroker } from "./cloud-fixtures";
import { waitUntil } from "./wait-until";

/** The MqttTransport port over an mqtt.js client already connected in plain TCP (the TLS adapter,
 *  src/node/mqtt-node.ts, is not needed to meet the rate limit). */
class PlainTransport implements MqttTransport {
  #handlers: MqttTransportEvents | undefined;
  /** Publishes made (the test watches the device's retries with it). */
  published = 0;
  constructor(readonly client: MqttClient) {}
  setHandlers(handlers: MqttTransportEvents): void {
    this.#handlers = handlers;
    this.client.on("message", (topic, payload) => handlers.message(topic, new Uint8Array(payload)));
  }
  start(): void { this.#handlers!.connected(); }
  async subscribe(topics: readonly string[]): Promise<void> { await this.client.subscribeAsync(topics.slice(), { qos: 1 }); }
  async publish(topic: string, payload: string | Uint8Array, qos: 0 | 1 = 1): Promise<void> {
    this.published++;
    await this.client.publishAsync(topic, typeof payload === "string" ? payload : Buffer.from(payload), { qos });
  }
  async close(): Promise<void> { await endClient(this.client); }
}

let broker: PlainBroker;
beforeAll(async () => { broker = await startPlainAedes(); });
afterAll(async () => { await broker.close(); });

it("reports throttled by the shadow's rate limit are retried with backoff until the shadow holds them all", async () => {
  const serviceClock = new ManualClock();
  const store = CloudStore.open(tempDir("shadow-throttle"));
  const serviceClient = await connectPlain(broker.url, "cloud-throttle");
  const serviceLog = new MemoryLog();
  const service = await ShadowService.start(serviceClient, { store, clock: serviceClock, log: serviceLog, engine: { rateLimitPerSecond: 2 } });

  const deviceClock = new ManualClock();
  const log = new MemoryLog();
  const transport = new PlainTransport(await connectPlain(broker.url, "esp32-07"));
  const sync = new ShadowSync(
    { mqtt: transport, kv: new MemoryKv(), clock: deviceClock, log, random: () => 0.5 },
    { cloud: "aws", thingName: "esp32-07", firmwareVersionPath: ["fw"], conditionalReports: false },
    { onDesired: () => undefined });
  try {
    sync.start();
    // Request 1 of this second: the get (404: no shadow yet, so the device's first report creates it).
    await waitUntil(() => (sync.synced ? true : undefined), 10_000, "the device's first get");
    const results: string[] = [];
    const patches: JsonObject[] = [{ a: 1 }, { b: 2 }, { c: 3 }, { d: 4 }];
    const reports = patches.map((p, i) =>
      sync.report(p).then(() => { results[i] = "accepted"; }, (e: Error) => { results[i] = e.message; }));

    // Request 2 (a) is accepted; request 3 (b) is throttled and waits for the device's backoff timer.
    await waitUntil(() => (log.has("sync.report.throttled") ? true : undefined), 10_000, "a 429");
    const refusals = () => serviceLog.lines.filter((l) => l.event === "shadow.rejected").map((l) => l.fields!["status"]);
    expect(refusals()).toEqual([404, 429]); // the get (no shadow yet), then b
    expect(results).toEqual(["accepted"]);

    // Each turn: a new second on the service; then the device's clock moves on in 100 ms steps until its
    // backoff wait ends and it sends again (nothing is in flight meanwhile, so no request times out); then the
    // turn ends when the device is waiting again after another 429, or every report is settled. Bounded.
    const done = () => results.filter((r) => r !== undefined).length === 4;
    const throttles = () => log.lines.filter((l) => l.event === "sync.report.throttled").length;
    for (let turn = 0; turn < 20 && !done(); turn++) {
      const seen = throttles();
      serviceClock.advance(1_000);
      const sent = transport.published;
      for (let i = 0; i < 400 && transport.published === sent; i++) {
        deviceClock.advance(100);
        await new Promise((r) => setImmediate(r));
      }
      await waitUntil(() => (done() || throttles() > seen ? true : undefined), 10_000, "the device waiting again or done");
    }
    await Promise.all(reports);
    expect(results).toEqual(["accepted", "accepted", "accepted", "accepted"]);
    const shadow = await service.getShadow("esp32-07");
    expect((shadow!["state"] as JsonObject)["reported"]).toEqual({ a: 1, b: 2, c: 3, d: 4 });
    const throttled = log.lines.filter((l) => l.event === "sync.report.throttled");
    expect(throttled.map((l) => l.fields!["attempts"])).toEqual([1, 1]); // b in the first second, d in the second
    expect(log.lines.filter((l) => l.level === "warn")).toEqual([]); // no timeout, no refusal of a get
    expect(refusals().filter((s) => s === 429).length).toBe(throttled.length);
  } finally {
    await sync.close();
    await service.close();
    await endClient(serviceClient);
    store.close();
  }
});
