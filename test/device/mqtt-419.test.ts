/**
 * The ECMA-419 MQTT adapter (src/device/mqtt-419.ts) on Node, with the SDK modules it imports replaced by
 * fakes: a client shaped as examples/io/tcp/mqttclient/mqttclient.js (SDK 8.2.3) is — its options, its
 * callbacks called with the client as `this` (`onControl(msg)` with `operation`, `id`, SUBACK `payload`;
 * `onReadable(count, {topic, byteLength, more})` with the payload pulled by `read(view)`; `onError()` before
 * it closes itself), `write(data, options)` recorded and throwing "overflow" on demand — and a Timer that
 * records each wait instead of waiting.
 *
 * Checks the QoS 1 contract (subscribe resolved on SUBACK, refused on 0x80; publish resolved on the PUBACK
 * of its own packet id; both rejected when the session ends first), reassembly of a payload delivered in
 * fragments and its size limit, reconnect with the shared backoff policy (reset by a session's first
 * acknowledgement, not by its CONNACK), the acknowledgement timeout (fake Timer: no wall clock), empty PUBLISH
 * packets padded by the socket handed on empty, close(), and the resolver.
 * What this is not: a test of the SDK's client itself or of TLS (docs/moddable.md has the simulator runs).
 */
import { backoffDelay } from "../../src/core/backoff";
import { isShadowOtaError } from "../../src/core/errors";
import type { MqttTransport, MqttTransportEvents } from "../../src/ports/mqtt-transport";

interface Timers { list: Array<{ id: number; ms: number; fn: () => void; cleared: boolean }> }
jest.mock("timer", () => {
  const timers: Timers = { list: [] };
  (globalThis as { __timers?: Timers }).__timers = timers;
  let next = 1;
  return {
    __esModule: true,
    default: {
      set(fn: () => void, ms: number): number { const id = next++; timers.list.push({ id, ms, fn, cleared: false }); return id; },
      clear(id: number): void { const t = timers.list.find((x) => x.id === id); if (t) t.cleared = true; },
    },
  };
}, { virtual: true });
jest.mock("embedded:network/mqtt/client", () => ({ __esModule: true, default: class Unused {} }), { virtual: true });
jest.mock("securesocket", () => ({ __esModule: true, default: class SecureSocket {} }), { virtual: true });

/** The adapter's types as the test uses them (declared here: the root tsconfig must not follow the device
 *  sources into the SDK imports it cannot resolve; tsconfig.device.json type-checks them). */
// eslint-disable-next-line @typescript-eslint/no-namespace
declare namespace Mqtt419 {
  interface ControlMessage { operation: number; id?: number; payload?: number[]; returnCode?: number }
  interface ReadableOptions { more: boolean; topic?: string; byteLength?: number; QoS?: number }
  interface Mqtt419Client {
    read(into: ArrayBufferView): number;
    write(data: ArrayBufferView | ArrayBuffer | null, options: Record<string, unknown>): number;
    close(): void;
  }
  interface Mqtt419ClientOptions {
    host: string; port: number; id: string; clean: boolean; keepalive: number; user?: string; password?: string;
    dns: { io: unknown } & Record<string, unknown>;
    socket: { io: unknown } & Record<string, unknown>;
    onControl(this: Mqtt419Client, msg: ControlMessage): void;
    onReadable(this: Mqtt419Client, count: number, options: ReadableOptions): void;
    onWritable(this: Mqtt419Client, count: number): void;
    onError(this: Mqtt419Client, error?: unknown): void;
  }
  interface Mqtt419Options {
    host: string; port: number; clientId: string; ca: Uint8Array; clientCertificate?: Uint8Array; clientKey?: Uint8Array;
    user?: string; password?: string; keepaliveMs?: number; alpn?: string; backoff?: { initialMs: number; maxMs: number };
    random?: () => number; maxMessageBytes?: number; maxInFlight?: number; Client?: unknown; Socket?: unknown;
    ackTimeoutMs?: number; log?: { log(level: string, event: string, fields?: Record<string, unknown>): void };
  }
}
interface ResolverLike { resolve(r: { host: string; onResolved(host: string, address: string): void; onError(): void }): void; cancel(): void }
const { Mqtt419Transport, HostNameResolver, MQTT_OP } = require("../../src/device/mqtt-419") as {
  Mqtt419Transport: new (o: Mqtt419.Mqtt419Options) => MqttTransport;
  HostNameResolver: new (o: { register?: (r: ResolverLike) => void }) => ResolverLike;
  MQTT_OP: { CONNACK: number; PUBLISH: number; PUBACK: number; SUBSCRIBE: number; SUBACK: number };
};
const { LegacyTlsSocket } = require("../../src/device/legacy-tls-socket") as { LegacyTlsSocket: unknown };

const timers = (): Timers => (globalThis as unknown as { __timers: Timers }).__timers;
/** Fires the oldest pending timer (not cleared); returns its delay. */
function fireTimer(): number {
  const t = timers().list.find((x) => !x.cleared);
  if (t === undefined) throw new Error("no pending timer");
  t.cleared = true;
  t.fn();
  return t.ms;
}
const pendingTimers = () => timers().list.filter((x) => !x.cleared);

class FakeClient implements Mqtt419.Mqtt419Client {
  static all: FakeClient[] = [];
  writes: Array<{ data: Uint8Array | null; options: Record<string, unknown> }> = [];
  closed = false;
  /** When set, the next write throws it (the client's "overflow" when the socket cannot take the packet). */
  throwOnWrite: Error | undefined;
  /** The payload bytes the next read() hands out, from the front. */
  inbound: number[] = [];
  constructor(readonly options: Mqtt419.Mqtt419ClientOptions) { FakeClient.all.push(this); }
  read(into: ArrayBufferView): number {
    const view = new Uint8Array(into.buffer, into.byteOffset, into.byteLength);
    const n = Math.min(view.byteLength, this.inbound.length);
    view.set(this.inbound.splice(0, n));
    return n;
  }
  write(data: ArrayBufferView | ArrayBuffer | null, options: Record<string, unknown>): number {
    if (this.throwOnWrite) { const e = this.throwOnWrite; this.throwOnWrite = undefined; throw e; }
    const bytes = data === null ? null : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
    this.writes.push({ data: bytes, options });
    return 4000;
  }
  close(): void { this.closed = true; }
  // What the SDK client does on the wire, as callbacks with the client as `this`:
  connack(): void { this.options.onControl.call(this, { operation: MQTT_OP.CONNACK, returnCode: 0 }); }
  control(operation: number, id: number, payload?: number[]): void {
    this.options.onControl.call(this, payload ? { operation, id, payload } : { operation, id });
  }
  fail(): void { this.options.onError.call(this); this.closed = true; }
  publishIn(topic: string, payload: number[], fragments: number[]): void {
    this.inbound.push(...payload);
    let sent = 0;
    fragments.forEach((n, i) => {
      const first = i === 0;
      sent += n;
      this.options.onReadable.call(this, n, first
        ? { topic, byteLength: payload.length, QoS: 1, more: sent < payload.length }
        : { more: sent < payload.length });
    });
  }
}

function setup(extra: Partial<Mqtt419.Mqtt419Options> = {}) {
  FakeClient.all = [];
  timers().list.length = 0;
  const events: string[] = [];
  const reasons: Error[] = [];
  const messages: Array<[string, number[]]> = [];
  const handlers: MqttTransportEvents = {
    connected: () => events.push("connected"),
    disconnected: (r) => { events.push(`disconnected ${r.message}`); reasons.push(r); },
    message: (t, p) => messages.push([t, [...p]]),
  };
  const transport: MqttTransport = new Mqtt419Transport({
    host: "broker.local", port: 8883, clientId: "esp32-az-01", ca: new Uint8Array([1]),
    clientCertificate: new Uint8Array([2]), clientKey: new Uint8Array([3]), keepaliveMs: 30_000,
    user: "broker.local/esp32-az-01/?api-version=2021-04-12", random: () => 0.5, Client: FakeClient, ...extra,
  });
  transport.setHandlers(handlers);
  transport.start();
  return { transport, events, reasons, messages, client: () => FakeClient.all.at(-1)! };
}

async function settled(p: Promise<void>): Promise<string> {
  let state = "pending";
  p.then(() => { state = "resolved"; }, (e) => { state = `rejected ${isShadowOtaError(e) ? e.code : "?"}: ${(e as Error).message}`; });
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return state;
}

describe("Mqtt419Transport", () => {
  test("builds the SDK client with the session options and TLS over SecureSocket (pinned CA, client certificate)", () => {
    const { client } = setup({ alpn: "x-amzn-mqtt-ca" });
    const o = client().options;
    expect(o).toMatchObject({ host: "broker.local", port: 8883, id: "esp32-az-01", clean: true, keepalive: 30_000, user: "broker.local/esp32-az-01/?api-version=2021-04-12" });
    expect(o.password).toBeUndefined();
    expect(o.socket.io).toBe(LegacyTlsSocket);
    expect(o.socket.secure).toEqual({
      protocolVersion: 0x0303, certificate: new Uint8Array([1]), verify: true,
      clientCertificates: [new Uint8Array([2])], clientKey: new Uint8Array([3]), applicationLayerProtocolNegotiation: ["x-amzn-mqtt-ca"],
    });
    expect(o.dns.io).toBe(HostNameResolver);
  });

  test("connected on CONNACK; subscribe asks QoS 1 for every topic and resolves on the SUBACK of its packet id", async () => {
    const { transport, events, client } = setup();
    expect(await settled(transport.subscribe(["a"]))).toBe("rejected SYNC_NOT_CONNECTED: MQTT session is down");
    client().connack();
    expect(events).toEqual(["connected"]);
    const sub = transport.subscribe(["$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#"]);
    const w = client().writes[0]!;
    expect(w.data).toBeNull();
    expect(w.options).toMatchObject({ operation: MQTT_OP.SUBSCRIBE, items: [{ topic: "$iothub/twin/res/#", QoS: 1 }, { topic: "$iothub/twin/PATCH/properties/desired/#", QoS: 1 }] });
    const id = w.options.id as number;
    client().control(MQTT_OP.SUBACK, id + 1, [1, 1]); // someone else's id
    client().control(MQTT_OP.PUBACK, id); // a PUBACK with this id is not a SUBACK
    expect(await settled(sub)).toBe("pending");
    client().control(MQTT_OP.SUBACK, id, [1, 0]); // a downgrade to QoS 0 is still a subscription
    expect(await settled(sub)).toBe("resolved");
  });

  test("a SUBACK that refuses a topic (0x80) rejects the subscribe with SYNC_TRANSPORT", async () => {
    const { transport, client } = setup();
    client().connack();
    const sub = transport.subscribe(["x", "y"]);
    client().control(MQTT_OP.SUBACK, client().writes[0]!.options.id as number, [1, 0x80]);
    expect(await settled(sub)).toBe("rejected SYNC_TRANSPORT: subscription refused by the broker (SUBACK 0x80)");
  });

  test("publish is QoS 1 by default and resolves on its PUBACK only; QoS 0 resolves at once; text goes out as UTF-8", async () => {
    const { transport, client } = setup();
    client().connack();
    const p1 = transport.publish("t/1", "é{}");
    const p2 = transport.publish("t/2", new Uint8Array([9, 8]));
    const p0 = transport.publish("t/0", "x", 0);
    const [w1, w2, w0] = client().writes;
    expect(w1!.options).toMatchObject({ topic: "t/1", QoS: 1 });
    expect([...w1!.data!]).toEqual([0xc3, 0xa9, 0x7b, 0x7d]);
    expect([...w2!.data!]).toEqual([9, 8]);
    expect(w0!.options).toMatchObject({ topic: "t/0", QoS: 0 });
    expect(new Set([w1!.options.id, w2!.options.id, w0!.options.id]).size).toBe(3);
    expect(await settled(p0)).toBe("resolved");
    client().control(MQTT_OP.PUBACK, w2!.options.id as number);
    expect(await settled(p2)).toBe("resolved");
    expect(await settled(p1)).toBe("pending");
    client().control(MQTT_OP.PUBACK, w1!.options.id as number);
    expect(await settled(p1)).toBe("resolved");
  });

  test("what is unacknowledged when the session ends is rejected; disconnected says whether it had been up; reconnect waits by backoff, reset by an acknowledgement", async () => {
    const { transport, events, reasons, client } = setup();
    client().connack();
    const pub = transport.publish("t", "x");
    const sub = transport.subscribe(["s"]);
    client().fail();
    expect(await settled(pub)).toBe("rejected SYNC_TRANSPORT: PUBACK not received: connection lost");
    expect(await settled(sub)).toBe("rejected SYNC_TRANSPORT: SUBACK not received: connection lost");
    expect(events).toEqual(["connected", "disconnected connection lost"]);
    expect(isShadowOtaError(reasons[0]) && reasons[0].code).toBe("SYNC_TRANSPORT");
    expect(await settled(transport.publish("t", "y"))).toBe("rejected SYNC_NOT_CONNECTED: MQTT session is down");
    // Backoff from src/core/backoff.ts with the injected random source: 0, 1, 2 failures in a row.
    const policy = { initialMs: 1_000, maxMs: 60_000 };
    expect(fireTimer()).toBe(backoffDelay(0, policy, () => 0.5));
    expect(FakeClient.all).toHaveLength(2);
    client().fail(); // refused before CONNACK
    expect(events.at(-1)).toBe("disconnected connect failed");
    expect(fireTimer()).toBe(backoffDelay(1, policy, () => 0.5));
    client().fail();
    expect(fireTimer()).toBe(backoffDelay(2, policy, () => 0.5));
    client().connack(); // a CONNACK alone does not reset the count: nothing was acknowledged in the session
    client().fail();
    expect(fireTimer()).toBe(backoffDelay(3, policy, () => 0.5));
    client().connack(); // an acknowledgement does
    const ok = transport.subscribe(["s"]);
    client().control(MQTT_OP.SUBACK, client().writes[0]!.options.id as number, [1]);
    expect(await settled(ok)).toBe("resolved");
    client().fail();
    expect(fireTimer()).toBe(backoffDelay(0, policy, () => 0.5));
    // Late callbacks from a client already dropped change nothing.
    const before = events.length;
    FakeClient.all[0]!.connack();
    FakeClient.all[0]!.fail();
    expect(events.length).toBe(before);
  });

  test("a PUBLISH delivered in fragments arrives as one message of the announced size; the next one starts afresh", () => {
    const { messages, client } = setup();
    client().connack();
    client().publishIn("$iothub/twin/res/200/?$rid=1", [1, 2, 3, 4, 5, 6, 7], [3, 1, 3]);
    client().publishIn("$iothub/twin/res/204/?$rid=2", [], [0]); // an empty payload, as a client without the stall would deliver it
    client().publishIn("d", [42], [1]);
    expect(messages).toEqual([["$iothub/twin/res/200/?$rid=1", [1, 2, 3, 4, 5, 6, 7]], ["$iothub/twin/res/204/?$rid=2", []], ["d", [42]]]);
  });

  test("a PUBLISH over maxMessageBytes ends the session with a reason naming the limit; nothing is delivered", async () => {
    const { messages, events, client } = setup({ maxMessageBytes: 4 });
    client().connack();
    const c = client();
    c.publishIn("big", [1, 2, 3, 4, 5], [5]);
    expect(messages).toEqual([]);
    expect(c.closed).toBe(true);
    expect(events.at(-1)).toBe("disconnected PUBLISH of 5 bytes on big is over the 4-byte limit");
    expect(pendingTimers()).toHaveLength(1); // the reconnect
  });

  test("a write the client refuses (its socket cannot take the packet) rejects with SYNC_TRANSPORT and the cause", async () => {
    const { transport, client } = setup();
    client().connack();
    client().throwOnWrite = new Error("overflow");
    const p = transport.publish("t", "x");
    let caught: unknown;
    await p.catch((e) => { caught = e; });
    expect(isShadowOtaError(caught) && caught.code).toBe("SYNC_TRANSPORT");
    expect(((caught as Error).cause as Error).message).toBe("overflow");
  });

  test("no more than maxInFlight acknowledgements are awaited at once", async () => {
    const { transport, client } = setup({ maxInFlight: 2 });
    client().connack();
    void transport.publish("a", "1").catch(() => undefined);
    void transport.publish("b", "2").catch(() => undefined);
    expect(await settled(transport.publish("c", "3"))).toBe("rejected SYNC_TRANSPORT: 2 acknowledgements already awaited");
    expect(await settled(transport.publish("q0", "3", 0))).toBe("rejected SYNC_TRANSPORT: 2 acknowledgements already awaited");
  });

  test("close() rejects what is awaited, closes the client and stops reconnecting", async () => {
    const { transport, events, client } = setup();
    client().connack();
    const pub = transport.publish("t", "x");
    const c = client();
    await transport.close();
    expect(c.closed).toBe(true);
    expect(await settled(pub)).toBe("rejected SYNC_TRANSPORT: PUBACK not received: transport closed");
    c.fail();
    expect(events).toEqual(["connected"]);
    expect(pendingTimers()).toHaveLength(0);
    await transport.close();
  });
});

describe("HostNameResolver", () => {
  test("passes the host name on as the address from a later turn, and not at all once cancelled", () => {
    timers().list.length = 0;
    let registered: unknown;
    const seen: string[] = [];
    const r = new HostNameResolver({ register: (x) => { registered = x; } });
    expect(registered).toBe(r);
    r.resolve({ host: "localhost", onResolved: (h, a) => seen.push(`${h}=${a}`), onError: () => seen.push("error") });
    expect(seen).toEqual([]);
    fireTimer();
    expect(seen).toEqual(["localhost=localhost"]);
    const r2 = new HostNameResolver({});
    r2.resolve({ host: "h", onResolved: () => seen.push("late"), onError: () => seen.push("error") });
    r2.cancel();
    expect(pendingTimers()).toHaveLength(0);
    expect(seen).toEqual(["localhost=localhost"]);
  });
});

describe("Mqtt419Transport and the empty PUBLISH the socket pads (legacy-tls-socket.ts onPublishFramed)", () => {
  const framedOf = (c: FakeClient) => c.options.socket.onPublishFramed as (padded: boolean) => void;

  test("a PUBLISH named padded is delivered with no payload; the others as they are; the adapter writes no PUBACK of its own (the client acknowledges all, in order)", () => {
    const { messages, client } = setup();
    client().connack();
    const framed = framedOf(client());
    for (const padded of [false, true, true, false]) framed(padded);
    client().publishIn("a", [1, 2], [1, 1]);
    client().publishIn("$iothub/twin/res/204/?$rid=3", [0], [1]);
    client().publishIn("t/0", [0], [1]);
    client().publishIn("d", [0], [1]); // a real one-byte payload
    expect(messages).toEqual([["a", [1, 2]], ["$iothub/twin/res/204/?$rid=3", []], ["t/0", []], ["d", [0]]]);
    expect(client().writes).toEqual([]);
  });

  test("a PUBLISH named padded that is not one byte ends the session: the socket and the adapter lost step", () => {
    const { messages, events, client } = setup();
    client().connack();
    const c = client();
    framedOf(c)(true);
    c.publishIn("x", [1, 2], [2]);
    expect(messages).toEqual([]);
    expect(c.closed).toBe(true);
    expect(events.at(-1)).toBe("disconnected PUBLISH on x of 2 bytes where the socket padded an empty one");
  });

  test("names from a client already dropped are ignored, and a new session starts with none", () => {
    const { messages, client } = setup();
    client().connack();
    const stale = client();
    framedOf(stale)(true); // named, never delivered
    stale.fail();
    framedOf(stale)(true);
    fireTimer(); // reconnect
    client().connack();
    client().publishIn("x", [0], [1]);
    expect(messages).toEqual([["x", [0]]]);
  });
});

describe("Mqtt419Transport acknowledgement timeout", () => {
  test("each QoS 1 publish and subscribe waits ackTimeoutMs (default 10 s); a QoS 0 publish waits nothing; an acknowledgement clears its wait", async () => {
    const { transport, client } = setup();
    client().connack();
    const pub = transport.publish("t", "x");
    void transport.subscribe(["s"]).catch(() => undefined);
    void transport.publish("q0", "x", 0);
    expect(pendingTimers().map((t) => t.ms)).toEqual([10_000, 10_000]);
    client().control(MQTT_OP.PUBACK, client().writes[0]!.options.id as number);
    expect(await settled(pub)).toBe("resolved");
    expect(pendingTimers().map((t) => t.ms)).toEqual([10_000]);
  });

  test("an ackTimeoutMs that is not a positive number is refused at construction (RangeError)", () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => new Mqtt419Transport({ host: "h", port: 1, clientId: "c", ca: new Uint8Array([1]), ackTimeoutMs: bad, Client: FakeClient }))
        .toThrow(new RangeError(`ackTimeoutMs must be a positive number of ms, not ${String(bad)}`));
    }
  });

  test("a PUBACK that never comes ends the session: warn mqtt.ack-timeout, every awaited request rejected SYNC_TRANSPORT, disconnected with the reason, a reconnect by backoff", async () => {
    const logs: unknown[] = [];
    const { transport, events, reasons, client } = setup({ ackTimeoutMs: 5_000, log: { log: (level, event, fields) => logs.push([level, event, fields]) } });
    client().connack();
    const lost = transport.publish("t", "x");
    const answered = transport.publish("u", "y");
    const sub = transport.subscribe(["s"]);
    const [w1, w2] = client().writes;
    client().control(MQTT_OP.PUBACK, w2!.options.id as number);
    expect(await settled(answered)).toBe("resolved");
    const c = client();
    expect(fireTimer()).toBe(5_000); // the lost publish's wait
    const id = w1!.options.id as number;
    expect(logs).toEqual([["warn", "mqtt.ack-timeout", { what: "PUBACK", id, ms: 5_000 }]]);
    expect(c.closed).toBe(true);
    expect(await settled(lost)).toBe(`rejected SYNC_TRANSPORT: PUBACK not received: no PUBACK for packet ${id} within 5000 ms`);
    expect(await settled(sub)).toBe(`rejected SYNC_TRANSPORT: SUBACK not received: no PUBACK for packet ${id} within 5000 ms`);
    expect(events).toEqual(["connected", `disconnected no PUBACK for packet ${id} within 5000 ms`]);
    expect(isShadowOtaError(reasons[0]) && reasons[0].code).toBe("SYNC_TRANSPORT");
    // The subscribe's wait went with the session; what is left is the reconnect, at the first backoff step
    // (the session had an acknowledgement).
    expect(pendingTimers()).toHaveLength(1);
    expect(fireTimer()).toBe(backoffDelay(0, { initialMs: 1_000, maxMs: 60_000 }, () => 0.5));
    expect(FakeClient.all).toHaveLength(2);
    // A late PUBACK from the dropped client changes nothing.
    c.control(MQTT_OP.PUBACK, id);
    expect(events).toHaveLength(2);
  });

  test("sessions whose subscribe is never acknowledged are retried at growing waits, not every initialMs; one SUBACK starts the backoff afresh", async () => {
    const { transport, events, client } = setup({ ackTimeoutMs: 5_000 });
    const policy = { initialMs: 1_000, maxMs: 60_000 };
    const waits: number[] = [];
    for (let session = 0; session < 4; session++) {
      client().connack();
      void transport.subscribe(["$aws/things/esp32-01/shadow/get/accepted"]).catch(() => undefined);
      expect(fireTimer()).toBe(5_000); // no SUBACK
      waits.push(fireTimer()); // the reconnect
    }
    expect(waits).toEqual([0, 1, 2, 3].map((n) => backoffDelay(n, policy, () => 0.5)));
    expect(events.filter((e) => e.startsWith("disconnected no SUBACK"))).toHaveLength(4);
    client().connack();
    const sub = transport.subscribe(["s"]);
    client().control(MQTT_OP.SUBACK, client().writes[0]!.options.id as number, [1]);
    expect(await settled(sub)).toBe("resolved");
    client().fail();
    expect(fireTimer()).toBe(backoffDelay(0, policy, () => 0.5));
  });
});
