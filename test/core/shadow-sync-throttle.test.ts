/**
 * ShadowSync when the cloud throttles a report (429: AWS's rate limit per shadow or requests in flight, IoT
 * Hub's throttles): the same report (same clientToken / $rid) goes again after a full-jitter backoff wait,
 * reports behind it keep their order, the waits grow to the policy's cap, and after the policy's attempts the
 * report fails as other refusals do. What the cloud receives and when, on the manual clock. Jest subset only
 * (runs on XS too).
 */
import { ShadowOtaError } from "../../src/core/errors";
import type { JsonObject } from "../../src/core/json";
import { DEFAULT_THROTTLE_RETRY, ShadowSync, type ShadowSyncConfig } from "../../src/core/shadow-sync";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle, track } from "./fake-ports";

const P = "$aws/things/esp32-01/shadow";

function device(cloud: "aws" | "azure", config: Partial<ShadowSyncConfig> = {}, random = () => 0.5) {
  const mqtt = new FakeMqtt();
  const log = new MemoryLog();
  const clock = new ManualClock();
  const errors: ShadowOtaError[] = [];
  const sync = new ShadowSync({ mqtt, kv: new MemoryKv(), clock, log, random },
    { cloud, thingName: "esp32-01", firmwareVersionPath: ["fw"], ...config },
    { onDesired: () => undefined, onError: (e) => { errors.push(e); } });
  sync.start();
  return { mqtt, log, clock, errors, sync };
}
type Dev = ReturnType<typeof device>;

async function awsSynced(d: Dev, version = 5): Promise<void> {
  d.mqtt.connect();
  await settle();
  const get = d.mqtt.take().pop()!;
  d.mqtt.deliver(`${P}/get/accepted`, { state: { reported: {} }, metadata: {}, version, clientToken: JSON.parse(get.payload).clientToken });
  await settle();
}

/** The AWS updates published since the last call: [clientToken, reported, version]. */
function updates(d: Dev): Array<[string, JsonObject, number | undefined]> {
  return d.mqtt.take().filter((m) => m.topic === `${P}/update`).map((m) => {
    const j = JSON.parse(m.payload);
    return [j.clientToken, j.state.reported, j.version];
  });
}


const throttle = (d: Dev, token: string) => d.mqtt.deliver(`${P}/update/rejected`, { code: 429, message: "Too Many Requests", clientToken: token });
const accept = (d: Dev, token: string, reported: JsonObject, version: number) =>
  d.mqtt.deliver(`${P}/update/accepted`, { state: { reported }, metadata: {}, version, clientToken: token });

describe("a throttled AWS report", () => {
  it("is sent again, with the same clientToken, after the backoff wait, and resolves once accepted", async () => {
    const d = device("aws");
    await awsSynced(d);
    const r = track(d.sync.report({ a: 1 }));
    await settle();
    const [[token, reported, version]] = updates(d);
    expect([reported, version]).toEqual([{ a: 1 }, 5]);
    throttle(d, token);
    await settle();
    expect(r.result).toBeUndefined(); // not failed: waiting
    expect(d.log.lines.filter((l) => l.event === "sync.report.throttled")).toEqual([
      { level: "info", event: "sync.report.throttled", fields: { token, attempts: 1, status: 429 } },
    ]);
    // First wait: full jitter under a 1000 ms cap; random 0.5 draws 500 ms.
    d.clock.advance(499);
    await settle();
    expect(updates(d)).toEqual([]);
    d.clock.advance(1);
    await settle();
    expect(updates(d)).toEqual([[token, { a: 1 }, 5]]);
    accept(d, token, { a: 1 }, 6);
    await settle();
    expect(r.result).toBe("resolved");
    expect(d.errors).toEqual([]);
  });

  it("reports behind it wait and keep their order; a retry carries the shadow version seen meanwhile", async () => {
    const d = device("aws");
    await awsSynced(d);
    const a = track(d.sync.report({ a: 1 }));
    const b = track(d.sync.report({ b: 2 }));
    await settle();
    const [[ta]] = updates(d);
    throttle(d, ta);
    await settle();
    // A desired change arrives during the wait (shadow version 9): the retry is conditional on it.
    d.mqtt.deliver(`${P}/update/delta`, { state: { c: 1 }, metadata: {}, version: 9 });
    await settle();
    expect(updates(d)).toEqual([]); // b does not jump the queue
    d.clock.advance(1_000);
    await settle();
    expect(updates(d)).toEqual([[ta, { a: 1 }, 9]]);
    accept(d, ta, { a: 1 }, 10);
    await settle();
    const next = updates(d);
    expect(next.map(([, rep, v]) => [rep, v])).toEqual([[{ b: 2 }, 10]]);
    accept(d, next[0]![0], { b: 2 }, 11);
    await settle();
    expect([a.result, b.result]).toEqual(["resolved", "resolved"]);
  });

  it("waits longer after each 429 up to the cap, and fails after the policy's attempts with the service's words", async () => {
    const d = device("aws", { throttleRetry: { initialMs: 100, maxMs: 400, maxAttempts: 5 } }, () => 0.9999);
    await awsSynced(d);
    const r = track(d.sync.report({ a: 1 }));
    await settle();
    let [[token]] = updates(d);
    const waits: number[] = [];
    for (let attempt = 1; attempt < 5; attempt++) {
      throttle(d, token);
      await settle();
      const start = d.clock.now;
      for (let i = 0; i < 1_000 && updates(d).length === 0; i++) { d.clock.advance(1); await settle(); }
      waits.push(d.clock.now - start);
    }
    expect(waits).toEqual([100, 200, 400, 400]); // random 0.9999: the whole cap each time
    throttle(d, token); // the fifth attempt is throttled too: no more
    await settle();
    expect(r.result).toBe("SYNC_REJECTED");
    expect(r.error!.message).toBe("report refused: 429 Too Many Requests");
    expect(r.error!.detail).toEqual({ status: 429, serviceMessage: "Too Many Requests", attempts: 5 });
    d.clock.advance(10_000);
    await settle();
    expect(updates(d)).toEqual([]);
    // The next report starts with a fresh count.
    const again = track(d.sync.report({ a: 2 }));
    await settle();
    [[token]] = updates(d);
    throttle(d, token);
    await settle();
    expect(again.result).toBeUndefined();
  });

  it("a refusal other than 429 after a throttle is not retried, and names the attempts", async () => {
    const d = device("aws");
    await awsSynced(d);
    const r = track(d.sync.report({ a: 1 }));
    await settle();
    const [[token]] = updates(d);
    throttle(d, token);
    await settle();
    d.clock.advance(1_000);
    await settle();
    expect(updates(d)).toHaveLength(1);
    d.mqtt.deliver(`${P}/update/rejected`, { code: 400, message: "Invalid JSON", clientToken: token });
    await settle();
    expect(r.error!.detail).toEqual({ status: 400, serviceMessage: "Invalid JSON", attempts: 2 });
    const once = device("aws");
    await awsSynced(once);
    const o = track(once.sync.report({ a: 1 }));
    await settle();
    once.mqtt.deliver(`${P}/update/rejected`, { code: 400, message: "Invalid JSON", clientToken: updates(once)[0]![0] });
    await settle();
    expect(o.error!.detail).toEqual({ status: 400, serviceMessage: "Invalid JSON" });
  });

  it("a disconnect during the wait stops it: the report fails as not connected and the timer is gone", async () => {
    const d = device("aws");
    await awsSynced(d);
    const r = track(d.sync.report({ a: 1 }));
    await settle();
    const [[token]] = updates(d);
    throttle(d, token);
    await settle();
    const timers = d.clock.pending;
    d.mqtt.disconnect();
    await settle();
    expect(r.result).toBe("SYNC_NOT_CONNECTED");
    expect(d.clock.pending).toBe(timers - 1);
    // Reconnected, the patch (persisted) goes out after the get, once.
    await awsSynced(d, 7);
    d.clock.advance(5_000);
    await settle();
    expect(updates(d).map(([, rep, v]) => [rep, v])).toEqual([[{ a: 1 }, 7]]);
  });

  it("the default policy: caps from 1 s doubling to 30 s, 10 attempts in all", () => {
    expect(DEFAULT_THROTTLE_RETRY).toEqual({ initialMs: 1_000, maxMs: 30_000, maxAttempts: 10 });
  });
});

describe("a throttled Azure reported PATCH", () => {
  it("is sent again with the same $rid after the wait; a 204 then resolves it", async () => {
    const d = device("azure");
    d.mqtt.connect();
    await settle();
    const get = d.mqtt.take().pop()!;
    const rid = /\$rid=(.+)$/.exec(get.topic)![1];
    d.mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, { desired: { $version: 2 }, reported: { $version: 1 } });
    await settle();
    const r = track(d.sync.report({ a: 1 }));
    await settle();
    const [patch] = d.mqtt.take();
    expect(patch!.topic).toMatch(/^\$iothub\/twin\/PATCH\/properties\/reported\/\?\$rid=/);
    const prid = /\$rid=(.+)$/.exec(patch!.topic)![1];
    d.mqtt.deliver(`$iothub/twin/res/429/?$rid=${prid}`, "");
    await settle();
    expect(r.result).toBeUndefined();
    d.clock.advance(500);
    await settle();
    const [again] = d.mqtt.take();
    expect([again!.topic, again!.payload]).toEqual([patch!.topic, '{"a":1}']);
    d.mqtt.deliver(`$iothub/twin/res/204/?$rid=${prid}&$version=2`, "");
    await settle();
    expect(r.result).toBe("resolved");
  });
});
