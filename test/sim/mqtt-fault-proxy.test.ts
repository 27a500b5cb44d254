/**
 * The fault-injecting MQTT proxy on its own (src/sim/mqtt-fault-proxy.ts): literal MQTT 3.1.1 packets fed to
 * one direction's pipe, split at every byte, and what comes out under each action; the rule checker; the
 * topic-filter matcher; and the proxy as a real TCP hop between mqtt.js and aedes on loopback.
 * The device-side convergence under these faults is test/sim/mqtt-faults.test.ts.
 */
import mqtt from "mqtt";
import mqttPacket from "mqtt-packet";

import { ShadowOtaError } from "../../src/core/errors";
import { FaultPipe, FaultPlan, MqttFaultProxy, PROXY_CODES, parseFaultRules, topicMatches, type FaultEvent, type FaultRule } from "../../src/sim/mqtt-fault-proxy";
import { startPlainAedes, type PlainBroker } from "./cloud-fixtures";
import { waitUntil } from "./wait-until";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");

/** MQTT 3.1.1 packets, written out by hand from the spec's figures. */
const P = {
  connect: hex("10 0e 0004 4d515454 04 02 003c 0002 6431"), // client id "d1", clean session, keepalive 60
  connack: hex("20 02 00 00"),
  publish1: hex("32 09 0003 612f62 0001 6869"), // QoS 1, topic "a/b", id 1, payload "hi"
  publish2: hex("32 09 0003 612f63 0002 686f"), // QoS 1, topic "a/c", id 2, payload "ho"
  puback1: hex("40 02 0001"),
  subscribe: hex("82 08 0002 0003 612f23 01"), // id 2, "a/#" at QoS 1
  suback: hex("90 03 0002 01"),
  pingreq: hex("c0 00"),
};

interface Rig { pipe: FaultPipe; out: Buffer[]; killed: string[]; events: FaultEvent[] }

function rig(direction: "up" | "down", rules: FaultRule[] = [], seed = 1): Rig {
  const out: Buffer[] = [];
  const killed: string[] = [];
  const events: FaultEvent[] = [];
  const pipe = new FaultPipe({
    direction, plan: new FaultPlan(rules, seed), onEvent: (e) => events.push(e),
    sink: { write: (b) => out.push(Buffer.from(b)), destroy: (r) => killed.push(r) },
  });
  return { pipe, out, killed, events };
}

async function run(r: Rig, ...packets: Buffer[]): Promise<Buffer[]> {
  for (const p of packets) r.pipe.feed(p);
  await r.pipe.drained();
  return r.out;
}

describe("FaultPipe on literal packets", () => {
  it("forwards every packet byte for byte with no rules, however the stream is split", async () => {
    const stream = Buffer.concat([P.connect, P.publish1, P.subscribe, P.pingreq, P.publish2]);
    for (let cut = 1; cut < stream.length; cut++) {
      const r = rig("up");
      r.pipe.feed(stream.subarray(0, cut));
      r.pipe.feed(stream.subarray(cut));
      await r.pipe.drained();
      expect(Buffer.concat(r.out).equals(stream)).toBe(true);
      expect(r.out).toHaveLength(5); // one write per packet: packets are parsed, not bytes copied
    }
  });

  it("drop: the second PUBLISH matching the filter is not forwarded, the rest is", async () => {
    const r = rig("down", [{ action: "drop", type: "publish", topic: "a/+", skip: 1 }]);
    const out = await run(r, P.connack, P.publish1, P.publish2, P.suback);
    expect(out).toEqual([P.connack, P.publish1, P.suback]);
    expect(r.events).toEqual([{ connection: 1, direction: "down", type: "publish", action: "drop", rule: 0, topic: "a/c", messageId: 2 }]);
  });

  it("drop by payload text: only the PUBLISH whose payload contains it", async () => {
    const r = rig("up", [{ action: "drop", type: "publish", payload: "ho" }]);
    expect(await run(r, P.publish1, P.publish2, P.pingreq)).toEqual([P.publish1, P.pingreq]);
  });

  it("drop by type and direction: a SUBACK going down is dropped, a SUBSCRIBE going up is not matched by it", async () => {
    const down = rig("down", [{ action: "drop", type: "suback", direction: "down" }]);
    expect(await run(down, P.connack, P.suback, P.suback)).toEqual([P.connack, P.suback]); // times defaults to 1
    const up = rig("up", [{ action: "drop", type: "suback", direction: "down" }, { action: "drop", type: "puback", direction: "down" }]);
    expect(await run(up, P.subscribe, P.puback1)).toEqual([P.subscribe, P.puback1]);
  });

  it("duplicate: a QoS 1 PUBLISH is sent again with its packet id and DUP set", async () => {
    const r = rig("down", [{ action: "duplicate", type: "publish", copies: 2 }]);
    const out = await run(r, P.publish1);
    const dup = hex("3a 09 0003 612f62 0001 6869"); // 0x32 | DUP (0x08)
    expect(out).toEqual([P.publish1, dup, dup]);
    const parsed = mqttPacket.parser({ protocolVersion: 4 });
    const seen: mqttPacket.Packet[] = [];
    parsed.on("packet", (p) => seen.push(p));
    parsed.parse(dup);
    expect(seen[0]).toMatchObject({ cmd: "publish", dup: true, messageId: 1, topic: "a/b" });
  });

  it("reorder: the packet is held back and goes out right after the next one", async () => {
    const r = rig("down", [{ action: "reorder", type: "puback" }]);
    expect(await run(r, P.puback1, P.publish1, P.suback)).toEqual([P.publish1, P.puback1, P.suback]);
  });

  it("delay: the delayed packet and everything behind it wait; order is kept", async () => {
    const r = rig("up", [{ action: "delay", type: "publish", delayMs: 30 }]);
    r.pipe.feed(Buffer.concat([P.publish1, P.pingreq]));
    expect(r.out).toEqual([]); // nothing overtakes the delayed packet
    await r.pipe.drained();
    expect(r.out).toEqual([P.publish1, P.pingreq]);
  });

  it("cut: the Nth packet is forwarded, then the connection ends and nothing more goes out", async () => {
    const r = rig("up", [{ action: "cut", type: "any", skip: 2 }]);
    const out = await run(r, P.connect, P.subscribe, P.publish1, P.publish2);
    expect(out).toEqual([P.connect, P.subscribe, P.publish1]);
    expect(r.killed).toEqual(["cut after a packet"]);
  });

  it("cut-mid: half of the packet's bytes, never all, then the connection ends", async () => {
    const r = rig("up", [{ action: "cut-mid", type: "publish" }]);
    const out = await run(r, P.connect, P.publish1, P.pingreq);
    expect(out).toEqual([P.connect, P.publish1.subarray(0, 5)]);
    expect(r.killed).toEqual(["cut in the middle of a packet"]);
    const tiny = rig("up", [{ action: "cut-mid", type: "pingreq" }]);
    expect(await run(tiny, P.pingreq)).toEqual([P.pingreq.subarray(0, 1)]);
  });

  it("corrupt: a PUBLISH keeps its framing, topic and id; its payload differs, the same way for the same seed", async () => {
    const outs: Buffer[] = [];
    for (const seed of [7, 7, 8]) {
      const r = rig("down", [{ action: "corrupt", type: "publish" }], seed);
      const [out] = await run(r, P.publish1);
      outs.push(out!);
      const seen: mqttPacket.IPublishPacket[] = [];
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      parser.on("packet", (p) => seen.push(p as mqttPacket.IPublishPacket));
      parser.parse(out!);
      expect(seen).toHaveLength(1);
      expect(seen[0]).toMatchObject({ topic: "a/b", messageId: 1, qos: 1 });
      expect(Buffer.from(seen[0]!.payload).equals(Buffer.from("hi"))).toBe(false);
      expect(Buffer.from(seen[0]!.payload)).toHaveLength(2);
    }
    expect(outs[0]!.equals(outs[1]!)).toBe(true);
    // Any other packet type is forwarded unchanged.
    const r = rig("down", [{ action: "corrupt", type: "any" }]);
    expect(await run(r, P.suback)).toEqual([P.suback]);
  });

  it("an unparsable stream ends the connection", async () => {
    const r = rig("up");
    await run(r, P.connect, hex("f0 00")); // packet type 15 is reserved in 3.1.1
    expect(r.out).toEqual([P.connect]);
    expect(r.killed[0]).toMatch(/unparsable up stream/);
  });

  it("rules are counted across connections: a times-1 rule acts once in the proxy's life", async () => {
    const plan = new FaultPlan([{ action: "drop", type: "suback" }]);
    const outs: Buffer[][] = [[], []];
    for (const i of [0, 1]) {
      const pipe = new FaultPipe({ direction: "down", plan, connection: i + 1, sink: { write: (b) => outs[i]!.push(b), destroy: () => {} } });
      pipe.feed(P.suback);
      await pipe.drained();
    }
    expect(outs).toEqual([[], [P.suback]]);
    expect(plan.applied()).toEqual([1]);
  });
});

describe("parseFaultRules", () => {
  const refused = (v: unknown): ShadowOtaError => {
    try {
      parseFaultRules(v);
    } catch (e) {
      return e as ShadowOtaError;
    }
    throw new Error(`accepted ${JSON.stringify(v)}`);
  };

  it("accepts the documented shape", () => {
    const rules = [{ action: "drop", type: "puback", direction: "down", topic: "$aws/things/+/shadow/#", skip: 0, times: 2 }, { action: "delay", type: "any", delayMs: 10 }];
    expect(parseFaultRules(rules)).toEqual(rules);
  });

  it.each([
    ["not an array", { action: "drop" }, /JSON array/],
    ["unknown action", [{ action: "explode", type: "publish" }], /rule 0: action/],
    ["unknown type", [{ action: "drop", type: "publsh" }], /rule 0: type/],
    ["bad direction", [{ action: "drop", type: "any", direction: "sideways" }], /direction/],
    ["negative count", [{ action: "drop", type: "any" }, { action: "drop", type: "any", skip: -1 }], /rule 1: skip/],
    ["fractional count", [{ action: "drop", type: "any", times: 1.5 }], /times/],
    ["misplaced wildcard", [{ action: "drop", type: "publish", topic: "a/#/b" }], /topic filter/],
    ["unknown member", [{ action: "drop", type: "any", tims: 1 }], /unknown member "tims"/],
    ["empty payload text", [{ action: "drop", type: "publish", payload: "" }], /payload/],
  ])("refuses %s with PROXY_RULE_INVALID", (_what, value, message) => {
    const e = refused(value);
    expect(e).toBeInstanceOf(ShadowOtaError);
    expect(e.code).toBe(PROXY_CODES.PROXY_RULE_INVALID);
    expect(e.message).toMatch(message);
  });
});

describe("topicMatches", () => {
  it.each([
    ["a/b", "a/b", true], ["a/+", "a/b", true], ["a/+", "a/b/c", false], ["a/#", "a", true], ["a/#", "a/b/c", true],
    ["#", "a/b", true], ["#", "$aws/things/x", false], ["+/things/x", "$aws/things/x", false],
    ["$aws/things/+/shadow/#", "$aws/things/esp32-01/shadow/update/delta", true], ["a/b", "a/b/c", false], ["a/b/c", "a/b", false],
  ])("%s against %s: %s", (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected);
  });
});

describe("MqttFaultProxy over loopback TCP (mqtt.js ↔ proxy ↔ aedes)", () => {
  let broker: PlainBroker;
  let proxy: MqttFaultProxy | undefined;
  const clients: mqtt.MqttClient[] = [];
  beforeAll(async () => { broker = await startPlainAedes(); });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync(true);
    await proxy?.close();
    proxy = undefined;
  });
  afterAll(async () => { await broker.close(); });

  const connect = (clientId: string): Promise<mqtt.MqttClient> =>
    mqtt.connectAsync({ host: "127.0.0.1", port: proxy!.port, clientId, protocolVersion: 4, clean: true, reconnectPeriod: 0, connectTimeout: 5_000 })
      .then((c) => { clients.push(c); return c; });

  it("a dropped QoS 1 PUBLISH towards a subscriber never arrives; the next one does; the counters saw both", async () => {
    proxy = await MqttFaultProxy.start({ upstream: { host: "127.0.0.1", port: broker.port }, rules: [{ action: "drop", type: "publish", direction: "down", topic: "t/1" }] });
    const sub = await connect("sub");
    const got: string[] = [];
    sub.on("message", (topic, payload) => got.push(`${topic}=${payload.toString()}`));
    await sub.subscribeAsync("t/#", { qos: 1 });
    const pub = await mqtt.connectAsync(broker.url, { clientId: "pub", protocolVersion: 4, reconnectPeriod: 0 });
    clients.push(pub);
    await pub.publishAsync("t/1", "lost", { qos: 1 });
    await pub.publishAsync("t/2", "kept", { qos: 1 });
    await waitUntil(() => (got.length > 0 ? true : undefined), 5_000, "t/2 delivered");
    expect(got).toEqual(["t/2=kept"]);
    expect(proxy.count("down", "publish")).toBe(2);
    expect(proxy.events.map((e) => `${e.direction} ${e.type} ${e.action} ${e.topic}`)).toEqual(["down publish drop t/1"]);
  });

  it("a cut in the middle of the CONNECT ends the connection before any CONNACK; the rule is spent, so the next connect works", async () => {
    proxy = await MqttFaultProxy.start({ upstream: { host: "127.0.0.1", port: broker.port }, rules: [{ action: "cut-mid", type: "connect" }] });
    // mqtt.js without reconnect: the first attempt closes without a CONNACK.
    const first = mqtt.connect({ host: "127.0.0.1", port: proxy.port, clientId: "c1", protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000 });
    clients.push(first);
    const outcome = await new Promise<string>((resolve) => {
      first.once("connect", () => resolve("connected"));
      first.once("close", () => resolve("closed"));
    });
    expect(outcome).toBe("closed");
    const c = await connect("c1");
    expect(c.connected).toBe(true);
    expect(proxy.connections).toBe(2);
    expect(proxy.count("down", "connack")).toBe(1);
  });

  it("refuses a non-loopback address with PROXY_OPTION_INVALID", async () => {
    await expect(MqttFaultProxy.start({ host: "0.0.0.0", upstream: { host: "127.0.0.1", port: broker.port } }))
      .rejects.toMatchObject({ code: PROXY_CODES.PROXY_OPTION_INVALID });
  });
});
