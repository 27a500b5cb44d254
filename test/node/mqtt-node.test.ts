/**
 * NodeMqttTransport against the real aedes broker over mutual TLS on loopback, clause by clause of the
 * MqttTransport contract (src/ports/mqtt-transport.ts): `connected` once per CONNACK, `disconnected` with
 * an Error per ended attempt, automatic reconnect after a broker restart on the same port, typed
 * rejections (SYNC_NOT_CONNECTED / SYNC_TRANSPORT), whole payloads as plain Uint8Array, close() twice.
 * Every wait is bounded.
 */
import * as path from "node:path";

import { isShadowOtaError, ShadowOtaError } from "../../src/core/errors";
import { backoffDelay } from "../../src/core/backoff";
import { NodeMqttTransport, connectTimeoutFor, type NodeMqttOptions } from "../../src/node/mqtt-node";
import type { MqttTransportEvents } from "../../src/ports/mqtt-transport";
import { AedesBroker } from "../../src/sim/broker-aedes";
import { MqttFaultProxy, pkiTls } from "../../src/sim/mqtt-fault-proxy";
import { CLOUD_SERVICE_IDENTITY, LocalPki } from "../../src/sim/pki";
import { MemoryLog } from "../core/fake-ports";
import { connectClient, publish, sleep, subscribe, testPki, waitFor, type TestClient } from "../sim/broker-fixtures";

type Event =
  | { type: "connected" }
  | { type: "disconnected"; reason: Error }
  | { type: "message"; topic: string; payload: Uint8Array };

class Recorder implements MqttTransportEvents {
  readonly events: Event[] = [];
  connected(): void { this.events.push({ type: "connected" }); }
  disconnected(reason: Error): void { this.events.push({ type: "disconnected", reason }); }
  message(topic: string, payload: Uint8Array): void { this.events.push({ type: "message", topic, payload }); }
  count(type: Event["type"]): number { return this.events.filter((e) => e.type === type).length; }
  of<T extends Event["type"]>(type: T): Array<Extract<Event, { type: T }>> {
    return this.events.filter((e): e is Extract<Event, { type: T }> => e.type === type);
  }
}

const { pki, dir, cleanup } = testPki("mqtt-node");
let broker: AedesBroker;
const transports: NodeMqttTransport[] = [];
const clients: TestClient[] = [];

function make(port: number, name = "dev-a", extra: Partial<NodeMqttOptions> = {}): { t: NodeMqttTransport; rec: Recorder } {
  const creds = pki.client(name);
  const t = new NodeMqttTransport({
    host: "127.0.0.1", port, clientId: name, ca: creds.caPem, cert: creds.certPem, key: creds.keyPem,
    keepaliveSec: 30, connectTimeoutMs: 3_000, backoff: { initialMs: 50, maxMs: 400 }, ...extra,
  });
  const rec = new Recorder();
  t.setHandlers(rec);
  transports.push(t);
  return { t, rec };
}

async function service(port = broker.port): Promise<TestClient> {
  const c = await connectClient(port, pki.client(CLOUD_SERVICE_IDENTITY), `svc-${clients.length}`);
  clients.push(c);
  return c;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error("expected a rejection");
}

beforeAll(async () => {
  broker = await AedesBroker.start({ pki });
});
afterEach(async () => {
  await Promise.all(transports.splice(0).map((t) => t.close()));
  await Promise.all(clients.splice(0).map((c) => c.end()));
});
afterAll(async () => {
  await broker.close();
  cleanup();
});

test("connects once, subscribes and publishes; payloads arrive whole as plain Uint8Array", async () => {
  const { t, rec } = make(broker.port);
  const s = await service();
  await subscribe(s, "$aws/things/+/shadow/#");
  t.start();
  t.start(); // a second start does nothing
  expect(await waitFor(() => rec.count("connected") === 1)).toBe(true);
  expect(t.isConnected).toBe(true);

  await t.subscribe(["$aws/things/dev-a/shadow/update/accepted", "$aws/things/dev-a/shadow/update/delta"]);
  await t.subscribe([]);
  const binary = Buffer.from([0, 255, 1, 128, 10, 13, 0]);
  await new Promise<void>((r, j) => s.client.publish("$aws/things/dev-a/shadow/update/delta", binary, { qos: 1 }, (e) => (e ? j(e) : r())));
  const big = "x".repeat(100_000);
  await publish(s, "$aws/things/dev-a/shadow/update/accepted", big);
  expect(await waitFor(() => rec.count("message") === 2)).toBe(true);
  const [m1, m2] = rec.of("message");
  expect(m1!.topic).toBe("$aws/things/dev-a/shadow/update/delta");
  expect(Object.getPrototypeOf(m1!.payload)).toBe(Uint8Array.prototype);
  expect(Array.from(m1!.payload)).toEqual(Array.from(binary));
  expect(m2!.payload.byteLength).toBe(100_000);

  await t.publish("$aws/things/dev-a/shadow/update", '{"state":{"reported":{"v":"é"}}}');
  const backing = new Uint8Array([9, 9, 1, 2, 3, 9]);
  await t.publish("$aws/things/dev-a/shadow/get", backing.subarray(2, 5), 0);
  const fromDevice = (): typeof s.received => s.received.filter((m) => /\/(update|get)$/.test(m.topic));
  expect(await waitFor(() => fromDevice().length === 2)).toBe(true);
  expect(fromDevice().map((m) => m.topic)).toEqual(["$aws/things/dev-a/shadow/update", "$aws/things/dev-a/shadow/get"]);
  expect(fromDevice()[0]!.payload).toBe('{"state":{"reported":{"v":"é"}}}');
  expect(fromDevice()[1]!.payload).toBe("\u0001\u0002\u0003");
  expect(fromDevice().every((m) => !m.retain)).toBe(true);
  expect(rec.count("connected")).toBe(1);
  expect(rec.count("disconnected")).toBe(0);
});

test("before the session is up, publish and subscribe reject SYNC_NOT_CONNECTED without throwing", async () => {
  const { t } = make(broker.port);
  let p1: Promise<void> | undefined;
  let p2: Promise<void> | undefined;
  expect(() => { p1 = t.publish("$aws/things/dev-a/shadow/get", ""); }).not.toThrow();
  expect(() => { p2 = t.subscribe(["$aws/things/dev-a/shadow/get/accepted"]); }).not.toThrow();
  expect(isShadowOtaError(await rejection(p1!), "SYNC_NOT_CONNECTED")).toBe(true);
  expect(isShadowOtaError(await rejection(p2!), "SYNC_NOT_CONNECTED")).toBe(true);
});

test("a refused subscription rejects SYNC_TRANSPORT naming the filter; the session stays up", async () => {
  const { t, rec } = make(broker.port);
  t.start();
  expect(await waitFor(() => rec.count("connected") === 1)).toBe(true);
  const e = await rejection(t.subscribe(["$aws/things/dev-b/shadow/update/accepted"]));
  expect(isShadowOtaError(e, "SYNC_TRANSPORT")).toBe(true);
  expect((e as ShadowOtaError).message).toMatch(/subscription refused: \$aws\/things\/dev-b/);
  await t.subscribe(["$aws/things/dev-a/shadow/get/accepted"]);
  expect(rec.count("disconnected")).toBe(0);
});

test("a publish the broker answers by disconnecting rejects SYNC_TRANSPORT; disconnected(reason), then connected again", async () => {
  const { t, rec } = make(broker.port);
  t.start();
  expect(await waitFor(() => rec.count("connected") === 1)).toBe(true);
  const e = await rejection(t.publish("$aws/things/dev-b/shadow/update", "{}"));
  expect(isShadowOtaError(e, "SYNC_TRANSPORT")).toBe(true);
  expect(await waitFor(() => rec.count("disconnected") === 1)).toBe(true);
  const reason = rec.of("disconnected")[0]!.reason;
  expect(reason).toBeInstanceOf(ShadowOtaError);
  expect((reason as ShadowOtaError).code).toBe("SYNC_TRANSPORT");
  expect(reason.message).toMatch(/^connection lost/);
  expect(await waitFor(() => rec.count("connected") === 2)).toBe(true);
  await t.publish("$aws/things/dev-a/shadow/get", "");
});

test("broker restart on the same port: disconnected with a reason, SYNC_NOT_CONNECTED meanwhile, connected again, usable again", async () => {
  const local = await AedesBroker.start({ pki });
  const port = local.port;
  const { t, rec } = make(port);
  t.start();
  expect(await waitFor(() => rec.count("connected") === 1)).toBe(true);

  await local.close();
  expect(await waitFor(() => rec.count("disconnected") >= 1)).toBe(true);
  expect(rec.of("disconnected")[0]!.reason).toBeInstanceOf(Error);
  expect(t.isConnected).toBe(false);
  expect(isShadowOtaError(await rejection(t.publish("$aws/things/dev-a/shadow/get", "")), "SYNC_NOT_CONNECTED")).toBe(true);
  expect(isShadowOtaError(await rejection(t.subscribe(["$aws/things/dev-a/shadow/get/accepted"])), "SYNC_NOT_CONNECTED")).toBe(true);
  // attempts keep failing while nothing listens, each with its own reason
  expect(await waitFor(() => rec.count("disconnected") >= 3, 5_000)).toBe(true);
  const failed = rec.of("disconnected").slice(1);
  expect(failed.every((d) => d.reason instanceof ShadowOtaError && /^connect failed/.test(d.reason.message))).toBe(true);
  expect(String((failed[0]!.reason as ShadowOtaError).cause)).toMatch(/ECONNREFUSED/);

  const again = await AedesBroker.start({ pki, port });
  try {
    expect(await waitFor(() => rec.count("connected") === 2, 5_000)).toBe(true);
    const s = await service(port);
    await subscribe(s, "$aws/things/dev-a/shadow/#");
    await t.subscribe(["$aws/things/dev-a/shadow/update/delta"]); // the core re-subscribes on every connected
    await publish(s, "$aws/things/dev-a/shadow/update/delta", "after-restart");
    expect(await waitFor(() => rec.count("message") === 1)).toBe(true);
    await t.publish("$aws/things/dev-a/shadow/update", "{}");
    expect(await waitFor(() => s.received.some((m) => m.topic.endsWith("/update")))).toBe(true);
  } finally {
    await t.close();
    await Promise.all(clients.splice(0).map((c) => c.end()));
    await again.close();
  }
});

test("a refused connect reports why, keeps retrying with backoff, and stops for good on close", async () => {
  const { t, rec } = make(broker.port, "dev-b", { clientId: "dev-a" });
  t.start();
  expect(await waitFor(() => rec.count("disconnected") >= 2)).toBe(true);
  const first = rec.of("disconnected")[0]!.reason as ShadowOtaError;
  expect(first.code).toBe("SYNC_TRANSPORT");
  expect(first.message).toMatch(/connect failed: Connection refused: Not authorized/);
  expect(rec.count("connected")).toBe(0);
  await t.close();
  const n = rec.events.length;
  await sleep(600); // longer than the largest backoff (400 ms): no attempt may follow a close
  expect(rec.events.length).toBe(n);
});

test("a server the CA does not vouch for is refused by the transport", async () => {
  const other = LocalPki.open(path.join(dir, "other-ca"));
  const { t, rec } = make(broker.port, "dev-a", { ca: other.caPem });
  t.start();
  expect(await waitFor(() => rec.count("disconnected") >= 1)).toBe(true);
  expect(rec.of("disconnected")[0]!.reason.message).toMatch(/connect failed: .*(self.signed|unable to verify|certificate)/i);
  expect(rec.count("connected")).toBe(0);
});

test("close(): twice is fine, pending requests reject, nothing fires afterwards, start does nothing", async () => {
  const { t, rec } = make(broker.port);
  t.start();
  expect(await waitFor(() => rec.count("connected") === 1)).toBe(true);
  const inFlight = t.publish("$aws/things/dev-a/shadow/get", ""); // its PUBACK cannot arrive before close() runs
  const closing = t.close();
  expect(isShadowOtaError(await rejection(inFlight), "SYNC_NOT_CONNECTED")).toBe(true);
  await Promise.all([closing, t.close()]);
  await t.close();
  expect(isShadowOtaError(await rejection(t.publish("$aws/things/dev-a/shadow/get", "")), "SYNC_NOT_CONNECTED")).toBe(true);
  t.start();
  await sleep(200);
  expect(rec.events).toEqual([{ type: "connected" }]);
});

test("an exception in a handler is logged and does not break the transport", async () => {
  const log = new MemoryLog();
  const creds = pki.client("dev-a");
  const t = new NodeMqttTransport({ host: "127.0.0.1", port: broker.port, clientId: "dev-a", ca: creds.caPem, cert: creds.certPem, key: creds.keyPem, log });
  transports.push(t);
  let messages = 0;
  let up = 0;
  t.setHandlers({
    connected: () => { up++; },
    disconnected: () => {},
    message: () => { messages++; throw new Error("handler bug"); },
  });
  t.start();
  expect(await waitFor(() => up === 1)).toBe(true);
  await t.subscribe(["$aws/things/dev-a/shadow/update/delta"]);
  const s = await service();
  await publish(s, "$aws/things/dev-a/shadow/update/delta", "1");
  await publish(s, "$aws/things/dev-a/shadow/update/delta", "2");
  expect(await waitFor(() => messages === 2)).toBe(true);
  expect(log.lines.filter((l) => l.event === "mqtt.handler-threw").map((l) => l.fields?.message)).toEqual(["handler bug", "handler bug"]);
  expect(t.isConnected).toBe(true);
});

test("an unusable key (mqtt.js throws inside connect) is reported through disconnected from a later turn, not thrown", async () => {
  const { t, rec } = make(broker.port, "dev-a", { key: "not a key" });
  expect(() => t.start()).not.toThrow();
  expect(await waitFor(() => rec.count("disconnected") >= 1)).toBe(true);
  expect(rec.of("disconnected")[0]!.reason).toBeInstanceOf(ShadowOtaError);
  expect(rec.of("disconnected")[0]!.reason.message).toMatch(/^connect failed: /);
  expect(rec.count("connected")).toBe(0);
});

test("setHandlers twice, or start without handlers, is a programming error", () => {
  const creds = pki.client("dev-a");
  const t = new NodeMqttTransport({ host: "127.0.0.1", port: 1, clientId: "dev-a", ca: creds.caPem });
  expect(() => t.start()).toThrow(TypeError);
  t.setHandlers(new Recorder());
  expect(() => t.setHandlers(new Recorder())).toThrow(TypeError);
});

/** The reconnect waits the transport logged (debug event mqtt.reconnect-scheduled), in order. */
function scheduled(log: MemoryLog): Array<{ delayMs: unknown; failures: unknown }> {
  return log.lines.filter((l) => l.event === "mqtt.reconnect-scheduled").map((l) => ({ delayMs: l.fields?.delayMs, failures: l.fields?.failures }));
}

test("reconnect waits follow the shared backoff policy (src/core/backoff.ts) with the injected random source", async () => {
  const log = new MemoryLog();
  const backoff = { initialMs: 40, maxMs: 160 };
  let draws = 0;
  const random = (): number => { draws++; return 0.5; };
  // Refused at CONNACK every time (the certificate names dev-b, the client id says dev-a): failures pile up.
  const { t, rec } = make(broker.port, "dev-b", { clientId: "dev-a", backoff, random, log });
  t.start();
  expect(await waitFor(() => scheduled(log).length >= 4)).toBe(true);
  await t.close();
  const waits = scheduled(log).slice(0, 4);
  expect(waits.map((w) => w.failures)).toEqual([0, 1, 2, 3]);
  // Full jitter: half of caps 40, 80, 160, 160 — never the old [cap/2, cap] window (30, 60, 120, 120).
  expect(waits.map((w) => w.delayMs)).toEqual([20, 40, 80, 80]);
  expect(waits.map((w) => w.delayMs)).toEqual([0, 1, 2, 3].map((f) => backoffDelay(f, backoff, () => 0.5)));
  expect(draws).toBe(scheduled(log).length);
  expect(rec.count("connected")).toBe(0);
});

test("a session whose subscribe got its SUBACK resets the backoff: each lost session waits from the first step again", async () => {
  const log = new MemoryLog();
  const { t, rec } = make(broker.port, "dev-a", { backoff: { initialMs: 40, maxMs: 160 }, random: () => 1, log });
  t.start();
  for (let n = 1; n <= 2; n++) {
    expect(await waitFor(() => rec.count("connected") === n)).toBe(true);
    await t.subscribe(["$aws/things/dev-a/shadow/get/accepted"]);
    // The broker answers a publish outside the device's topics by dropping the session.
    await rejection(t.publish("$aws/things/dev-b/shadow/update", "{}"));
    expect(await waitFor(() => rec.count("disconnected") === n)).toBe(true);
  }
  expect(await waitFor(() => rec.count("connected") === 3)).toBe(true);
  expect(scheduled(log)).toEqual([{ delayMs: 40, failures: 0 }, { delayMs: 40, failures: 0 }]);
});

test("a CONNACK alone does not reset the backoff: sessions cut at their first SUBSCRIBE wait growing steps, until one gets its SUBACK", async () => {
  // A broker that accepts and then drops the connection at the subscribe: the fault proxy in front of aedes
  // cuts the first CUTS sessions right after their SUBSCRIBE (the rule is counted over the proxy's life).
  const CUTS = 4;
  const { downstreamTls, upstreamTls } = pkiTls(pki);
  const subscribes: number[] = [];
  const proxy = await MqttFaultProxy.start({
    upstream: { host: "127.0.0.1", port: broker.port, tls: upstreamTls }, downstreamTls,
    rules: [{ action: "cut", type: "subscribe", direction: "up", times: CUTS }],
    onPacket: (direction, packet, connection) => { if (direction === "up" && packet.cmd === "subscribe") subscribes.push(connection); },
  });
  try {
    const log = new MemoryLog();
    const backoff = { initialMs: 20, maxMs: 1_000 };
    const { t, rec } = make(proxy.port, "dev-a", { backoff, random: () => 1, log });
    // As the core does on `connected`: subscribe at once. A transport whose session was cut rejects it.
    const outcomes: Array<"acked" | "failed"> = [];
    const onConnected = rec.connected.bind(rec);
    rec.connected = () => {
      onConnected();
      t.subscribe(["$aws/things/dev-a/shadow/get/accepted"]).then(() => outcomes.push("acked"), () => outcomes.push("failed"));
    };
    t.start();
    expect(await waitFor(() => outcomes.length === CUTS + 1, 20_000)).toBe(true);
    expect(outcomes).toEqual([...Array(CUTS).fill("failed"), "acked"]);
    expect(rec.count("connected")).toBe(CUTS + 1);
    expect(new Set(subscribes).size).toBe(CUTS + 1); // one SUBSCRIBE per session, each on its own connection
    // Every cut session counted as a failed attempt: the waits grew along the backoff's steps.
    const steps = [...Array(CUTS).keys()];
    expect(scheduled(log)).toEqual(steps.map((f) => ({ delayMs: backoffDelay(f, backoff, () => 1), failures: f })));
    expect(scheduled(log).map((w) => w.delayMs)).toEqual([20, 40, 80, 160]);
    expect(log.lines.filter((l) => l.event === "mqtt.backoff-reset").map((l) => l.fields)).toEqual([{ by: "SUBACK", failures: CUTS }]);
    // The session that got its SUBACK reset the count: when it is lost, the next attempt waits the first step.
    await rejection(t.publish("$aws/things/dev-b/shadow/update", "{}"));
    expect(await waitFor(() => scheduled(log).length === CUTS + 1)).toBe(true);
    expect(scheduled(log)[CUTS]).toEqual({ delayMs: backoffDelay(0, backoff, () => 1), failures: 0 });
    expect(await waitFor(() => outcomes.length === CUTS + 2)).toBe(true);
    expect(outcomes[CUTS + 1]).toBe("acked");
  } finally {
    await Promise.all(transports.splice(0).map((x) => x.close()));
    await proxy.close();
  }
});

describe("connection storms", () => {
  test("a reconnect offers the last TLS session ticket and the broker resumes it: no new RSA signature, same identity", async () => {
    const before = broker.handshakes;
    const { t, rec } = make(broker.port, "dev-a", { backoff: { initialMs: 20, maxMs: 40 } });
    t.start();
    expect(await waitFor(() => rec.count("connected") === 1)).toBe(true);
    await rejection(t.publish("$aws/things/dev-b/shadow/update", "{}")); // the broker drops the session
    expect(await waitFor(() => rec.count("connected") === 2)).toBe(true);
    // The resumed session still authenticates as dev-a: it may publish to its own topics.
    await t.publish("$aws/things/dev-a/shadow/update", "{\"state\":{\"reported\":{\"a\":1}}}");
    expect(t.resumedSessions).toBe(1);
    const after = broker.handshakes;
    expect([after.full - before.full, after.resumed - before.resumed]).toEqual([1, 1]);
  });

  test("with resumeTls false every connect is a full handshake", async () => {
    const before = broker.handshakes;
    const { t, rec } = make(broker.port, "dev-a", { backoff: { initialMs: 20, maxMs: 40 }, resumeTls: false });
    t.start();
    expect(await waitFor(() => rec.count("connected") === 1)).toBe(true);
    await rejection(t.publish("$aws/things/dev-b/shadow/update", "{}"));
    expect(await waitFor(() => rec.count("connected") === 2)).toBe(true);
    expect(t.resumedSessions).toBe(0);
    expect(broker.handshakes.full - before.full).toBe(2);
  });

  test("the first connect waits a random time in [0, startJitterMs] drawn from the injected source", async () => {
    const log = new MemoryLog();
    const { t, rec } = make(broker.port, "dev-a", { startJitterMs: 300, random: () => 0.5, log });
    t.start();
    const first = log.lines.find((l) => l.event === "mqtt.first-connect-scheduled");
    expect(first?.fields).toEqual({ delayMs: backoffDelay(0, { initialMs: 300, maxMs: 300 }, () => 0.5) });
    expect(first?.fields?.delayMs).toBe(150);
    expect(await waitFor(() => rec.count("connected") === 1)).toBe(true);
  });
});

test("connect timeouts grow with attempts in a row that got no CONNACK (bounded), and a CONNACK resets them", async () => {
  expect([0, 1, 2, 3, 4, 40].map((n) => connectTimeoutFor(n, 10_000, 60_000))).toEqual([10_000, 20_000, 40_000, 60_000, 60_000, 60_000]);
  expect(connectTimeoutFor(5, 10_000, 1_000)).toBe(10_000); // a max below the base is the base
  // A server that holds its first three connections silent (a cloud too slow to answer), then passes the
  // rest through to the broker.
  const net = await import("node:net");
  const held: import("node:net").Socket[] = [];
  const piped: import("node:net").Socket[] = [];
  const slow = net.createServer((s) => {
    if (held.length < 3) { held.push(s); return; }
    const up = net.connect(broker.port, "127.0.0.1");
    piped.push(s, up);
    s.pipe(up).pipe(s);
    s.on("error", () => up.destroy());
    up.on("error", () => s.destroy());
  });
  await new Promise<void>((r) => slow.listen(0, "127.0.0.1", () => r()));
  try {
    const log = new MemoryLog();
    const { t, rec } = make((slow.address() as import("node:net").AddressInfo).port, "dev-a", { connectTimeoutMs: 150, maxConnectTimeoutMs: 2_400, backoff: { initialMs: 1, maxMs: 1 }, log });
    t.start();
    expect(await waitFor(() => rec.count("connected") === 1, 30_000)).toBe(true);
    const timeouts = (): unknown[] => log.lines.filter((l) => l.event === "mqtt.connecting").map((l) => l.fields!["timeoutMs"]);
    // Three held attempts time out after 150, 300 and 600 ms; the fourth gets 1200 ms (on a loaded machine a
    // handshake can outlast it: each later attempt doubles again, up to 2400).
    const first = timeouts();
    expect(first.slice(0, 4)).toEqual([150, 300, 600, 1_200]);
    expect(first).toEqual(first.map((_, i) => connectTimeoutFor(i, 150, 2_400)));
    expect(rec.of("disconnected")).toHaveLength(first.length - 1);
    for (const s of piped) s.destroy(); // the session is lost: the next attempt starts from the base again
    expect(await waitFor(() => rec.count("connected") === 2 || timeouts().length > first.length + 1, 30_000)).toBe(true);
    expect(timeouts()[first.length]).toBe(150);
  } finally {
    for (const s of [...held, ...piped]) s.destroy();
    await new Promise<void>((r) => slow.close(() => r()));
  }
});
