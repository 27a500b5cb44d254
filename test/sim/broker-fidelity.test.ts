/**
 * The local brokers behave like AWS IoT Core and Azure IoT Hub where those differ from a general MQTT broker
 * (src/sim/broker-fidelity.ts; docs/local-cloud.md "Fidelity"), on aedes and on mosquitto (AWS instance and
 * an Azure device's instance), with real mutual-TLS clients on loopback:
 * - a SUBSCRIBE at QoS 2 is granted QoS 1;
 * - a device's retained PUBLISH on its `$aws/...` shadow topic closes its connection and nothing is retained;
 * - on `$iothub/...` the flag is cleared and the publish goes through (aedes), or the connection is closed
 *   (mosquitto: it cannot clear the flag; documented as a difference);
 * - AWS's subscription quotas (8 filters per SUBSCRIBE, 50 per connection: SUBACK 0x80 beyond them) and
 *   each cloud's keepalive range (AWS 30–1200 s, IoT Hub at most 1177 s) on aedes; mosquitto has no setting
 *   for either (documented as a difference).
 */
import * as path from "node:path";

import * as tls from "node:tls";

import { appliedKeepalive, grantedQos, retainedPublish, subscribeQuota } from "../../src/sim/broker-fidelity";
import { AedesBroker } from "../../src/sim/broker-aedes";
import { MosquittoBroker } from "../../src/sim/broker-mosquitto";
import { CLOUD_SERVICE_IDENTITY, type Credentials } from "../../src/sim/pki";
import { MemoryLog } from "../core/fake-ports";
import { connectClient, publish, sleep, subscribe, testPki, waitFor, type TestClient } from "./broker-fixtures";
import { describeEachBroker, noteMosquittoSkipped, type TestBroker } from "./mosquitto-gate";

jest.setTimeout(30_000);
noteMosquittoSkipped(`test/sim/${path.basename(__filename)}`);

describe("broker-fidelity rules", () => {
  it("grants QoS 1 for 1 and 2, 0 for 0", () => {
    expect([0, 1, 2].map(grantedQos)).toEqual([0, 1, 1]);
  });
  it("refuses a device's RETAIN on $aws topics, clears it elsewhere and for the services", () => {
    expect(retainedPublish({ kind: "device", name: "d" }, "$aws/things/d/shadow/update")).toBe("refuse");
    expect(retainedPublish({ kind: "device", name: "d" }, "devices/d/$iothub/twin/PATCH/properties/reported/?$rid=1")).toBe("clear");
    expect(retainedPublish({ kind: "service", name: CLOUD_SERVICE_IDENTITY }, "$aws/things/d/shadow/update/delta")).toBe("clear");
  });
  it("AWS's subscription quotas: the 9th $aws filter of one SUBSCRIBE, and the 51st held by a connection, are refused", () => {
    const f = (i: number): string => `$aws/things/d/shadow/name/s${i}/get/accepted`;
    const nine = Array.from({ length: 9 }, (_, i) => f(i));
    expect(subscribeQuota(nine, new Set())).toEqual([...Array(8).fill(undefined), "filters-per-subscribe"]);
    expect(subscribeQuota([...nine.slice(0, 8), "$iothub/twin/res/#"], new Set())).toEqual(Array(9).fill(undefined)); // IoT Hub filters do not count
    const held = new Set(Array.from({ length: 48 }, (_, i) => f(100 + i)));
    expect(subscribeQuota([f(1), f(1), f(100), f(2), f(3)], held)).toEqual([undefined, undefined, undefined, undefined, "subscriptions-per-connection"]);
  });
  it("keepalive: AWS 30–1200 s (0 → 1200), IoT Hub at most 1177 s (0 → 1177), unknown clients unchanged", () => {
    expect([0, 1, 29, 30, 60, 1200, 1201, 65535].map((k) => appliedKeepalive(k, "aws"))).toEqual([1200, 30, 30, 30, 60, 1200, 1200, 1200]);
    expect([0, 1, 60, 1177, 1178].map((k) => appliedKeepalive(k, "azure"))).toEqual([1177, 1, 60, 1177, 1177]);
    expect([0, 5, 5000].map((k) => appliedKeepalive(k, undefined))).toEqual([0, 5, 5000]);
  });
});

describe("AWS subscription quotas and the clouds' keepalive on aedes", () => {
  const { pki, cleanup } = testPki("broker-fidelity-quotas");
  const log = new MemoryLog();
  let broker: AedesBroker;
  const open: TestClient[] = [];
  beforeAll(async () => {
    broker = await AedesBroker.start({ pki, log, cloudOf: (id) => (id.startsWith("az-") ? "azure" : id.startsWith("dev-") ? "aws" : undefined) });
  });
  afterEach(async () => { await Promise.all(open.splice(0).map((c) => c.end())); });
  afterAll(async () => { await broker.close(); cleanup(); });

  const shadow = (i: number): string => `$aws/things/dev-q/shadow/name/s${i}/update/delta`;
  /** SUBSCRIBE at QoS 1; resolves with the SUBACK's return code per filter (128 = refused). */
  const granted = (c: TestClient, topics: string[]): Promise<number[]> => new Promise((resolve, reject) => {
    c.client.subscribe(topics, { qos: 1 }, (err, g) => {
      const suback = (err as { packet?: { granted?: number[] } } | null)?.packet?.granted;
      if (suback !== undefined) resolve(suback);
      else if (err) reject(err);
      else resolve((g ?? []).map((x) => x.qos));
    });
  });

  it("a SUBSCRIBE of 9 shadow filters: 8 granted, the 9th refused (0x80); the connection stays up", async () => {
    const c = await connectClient(broker.port, pki.client("dev-q"), "dev-q");
    open.push(c);
    expect(await granted(c, Array.from({ length: 9 }, (_, i) => shadow(i)))).toEqual([...Array(8).fill(1), 128]);
    expect(c.closed).toBe(false);
    expect(log.lines.filter((l) => l.event === "broker.limit" && l.fields?.rule === "filters-per-subscribe").map((l) => l.fields?.topic)).toEqual([shadow(8)]);
  });

  it("50 subscriptions per connection: the 51st is refused; resubscribing a held filter is not a new one; a new connection starts from 0", async () => {
    const c = await connectClient(broker.port, pki.client("dev-q"), "dev-q");
    open.push(c);
    for (let i = 0; i < 50; i += 5) expect(await granted(c, Array.from({ length: 5 }, (_, j) => shadow(i + j)))).toEqual([1, 1, 1, 1, 1]);
    expect(await granted(c, [shadow(50), shadow(3)])).toEqual([128, 1]);
    await new Promise<void>((r, j) => c.client.unsubscribe(shadow(0), (e) => (e ? j(e) : r())));
    expect(await granted(c, [shadow(50)])).toEqual([1]);
    await c.end();
    const d = await connectClient(broker.port, pki.client("dev-q"), "dev-q");
    open.push(d);
    expect(await granted(d, [shadow(60)])).toEqual([1]);
  });

  /** A raw CONNECT with `keepalive` seconds, then silence (no PINGREQ); resolves with the socket. */
  async function silentConnect(name: string, keepalive: number): Promise<tls.TLSSocket> {
    const creds = pki.client(name);
    const s = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const x = tls.connect({ host: "127.0.0.1", port: broker.port, ca: creds.caPem, cert: creds.certPem, key: creds.keyPem }, () => resolve(x));
      x.once("error", reject);
    });
    s.on("error", () => undefined);
    const id = Buffer.from(name, "utf8");
    const rest = Buffer.concat([Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, keepalive >> 8, keepalive & 0xff, id.length >> 8, id.length & 0xff]), id]);
    s.write(Buffer.concat([Buffer.from([0x10, rest.length]), rest]));
    return s;
  }

  it("a device asking for keepalive 1 s is held to its cloud's minimum (AWS: 30 s): not dropped after 1.5 s of silence", async () => {
    const s = await silentConnect("dev-k", 1);
    let closed = false;
    s.on("close", () => { closed = true; });
    expect(await waitFor(() => log.lines.some((l) => l.event === "broker.keepalive-applied" && l.fields?.clientId === "dev-k"), 5_000)).toBe(true);
    expect(log.lines.find((l) => l.event === "broker.keepalive-applied" && l.fields?.clientId === "dev-k")!.fields).toEqual({ clientId: "dev-k", requested: 1, applied: 30 });
    await sleep(2_500); // aedes alone would have dropped it after 1.5 s
    expect(closed).toBe(false);
    s.destroy();
  });

  it("keepalive 0 (none) becomes AWS's 1200 s and IoT Hub's 1177 s; a client of no known cloud keeps its own", async () => {
    const sockets = [await silentConnect("dev-z", 0), await silentConnect("az-z", 0), await silentConnect("other-z", 7)];
    expect(await waitFor(() => log.lines.filter((l) => l.event === "broker.keepalive-applied" && /-z$/.test(String(l.fields?.clientId))).length >= 2, 5_000)).toBe(true);
    await sleep(200);
    expect(log.lines.filter((l) => l.event === "broker.keepalive-applied" && /-z$/.test(String(l.fields?.clientId))).map((l) => l.fields).sort((a, b) => String(a!.clientId).localeCompare(String(b!.clientId))))
      .toEqual([{ clientId: "az-z", requested: 0, applied: 1177 }, { clientId: "dev-z", requested: 0, applied: 1200 }]);
    for (const s of sockets) s.destroy();
  });
});

describeEachBroker("fidelity to AWS IoT Core and IoT Hub on %s", (kind: TestBroker) => {
  const { pki, cleanup } = testPki(`broker-fidelity-${kind}`);
  const open: TestClient[] = [];
  /** AWS devices' broker, and the broker the Azure device "az-1" uses (the same one on aedes). */
  let awsPort: number;
  let azurePort: number;
  const closers: Array<() => Promise<void>> = [];
  let dev: Credentials, az: Credentials, svc: Credentials;

  beforeAll(async () => {
    dev = pki.client("dev-a");
    az = pki.client("az-1");
    svc = pki.client(CLOUD_SERVICE_IDENTITY);
    if (kind === "aedes") {
      const b = await AedesBroker.start({ pki });
      awsPort = azurePort = b.port;
      closers.push(() => b.close());
    } else {
      const a = await MosquittoBroker.start({ pki, mode: "aws" });
      const z = await MosquittoBroker.start({ pki, mode: { azureDeviceId: "az-1" } });
      awsPort = a.port;
      azurePort = z.port;
      closers.push(() => a.close(), () => z.close());
    }
  });
  afterEach(async () => { await Promise.all(open.splice(0).map((c) => c.end())); });
  afterAll(async () => {
    for (const c of closers) await c();
    cleanup();
  });

  async function client(port: number, creds: Credentials, clientId = creds.name): Promise<TestClient> {
    const c = await connectClient(port, creds, clientId);
    open.push(c);
    return c;
  }

  it("a SUBSCRIBE at QoS 2 is granted QoS 1 (AWS shadow and IoT Hub twin filters)", async () => {
    const a = await client(awsPort, dev);
    expect(await subscribe2(a, "$aws/things/dev-a/shadow/update/delta")).toEqual([1]);
    const z = await client(azurePort, az);
    expect(await subscribe2(z, "$iothub/twin/res/#")).toEqual([1]);
    // And what was granted is what is delivered: QoS 1.
    const s = await client(awsPort, svc, "svc-1");
    const got: number[] = [];
    a.client.on("message", (_t, _p, packet) => got.push(packet.qos));
    await publish(s, "$aws/things/dev-a/shadow/update/delta", "{}", { qos: 1 });
    expect(await waitFor(() => got.length > 0)).toBe(true);
    expect(got).toEqual([1]);
  });

  it("a device's retained PUBLISH on its shadow topic closes its connection, and nothing is retained", async () => {
    const a = await client(awsPort, dev);
    a.client.publish("$aws/things/dev-a/shadow/update", '{"state":{"reported":{"x":1}}}', { qos: 1, retain: true });
    expect(await waitFor(() => a.closed, 5_000)).toBe(true);
    const s = await client(awsPort, svc, "svc-2");
    await subscribe(s, "$aws/things/dev-a/shadow/update");
    await sleep(100);
    expect(s.received).toEqual([]); // no retained message handed to a new subscriber
  });

  it(`a device's retained PUBLISH on $iothub: ${kind === "aedes" ? "the flag is cleared, the publish goes through" : "the connection is closed (mosquitto cannot clear the flag)"}`, async () => {
    const s = await client(azurePort, svc, "svc-3");
    await subscribe(s, kind === "aedes" ? "devices/az-1/$iothub/twin/PATCH/properties/reported/#" : "$iothub/twin/PATCH/properties/reported/#");
    const z = await client(azurePort, az);
    z.client.publish("$iothub/twin/PATCH/properties/reported/?$rid=7", '{"x":1}', { qos: 1, retain: true });
    if (kind === "aedes") {
      expect(await waitFor(() => s.received.length > 0, 5_000)).toBe(true);
      expect(s.received[0]).toMatchObject({ payload: '{"x":1}', retain: false });
      expect(z.closed).toBe(false);
    } else {
      expect(await waitFor(() => z.closed, 5_000)).toBe(true);
      await sleep(100);
      expect(s.received).toEqual([]);
    }
    // Nothing retained either way: a new subscriber gets nothing.
    const late = await client(azurePort, svc, "svc-4");
    await subscribe(late, kind === "aedes" ? "devices/az-1/$iothub/#" : "$iothub/#");
    await sleep(100);
    expect(late.received).toEqual([]);
  });
});

/** SUBSCRIBE at QoS 2; resolves with the granted QoS of each filter. */
function subscribe2(c: TestClient, topic: string): Promise<number[]> {
  return new Promise((resolve, reject) => {
    c.client.subscribe(topic, { qos: 2 }, (err, granted) => (err ? reject(err) : resolve((granted ?? []).map((g) => g.qos))));
  });
}

describe("persistent sessions expire on aedes (AWS: an hour after the disconnect; here 400 ms)", () => {
  const { pki, cleanup } = testPki("broker-fidelity-sessions");
  const log = new MemoryLog();
  let broker: AedesBroker;
  const open: TestClient[] = [];
  beforeAll(async () => { broker = await AedesBroker.start({ pki, log, sessionExpiryMs: 400 }); });
  afterEach(async () => { await Promise.all(open.splice(0).map((c) => c.end())); });
  afterAll(async () => { await broker.close(); cleanup(); });

  const delta = "$aws/things/dev-s/shadow/update/delta";
  async function persistent(): Promise<{ c: TestClient; sessionPresent: boolean }> {
    const c = await connectClient(broker.port, pki.client("dev-s"), "dev-s", { clean: false });
    const connack = (c.client as unknown as { connackPacket?: { sessionPresent?: boolean } }).connackPacket;
    expect(connack).toBeDefined();
    const sessionPresent = connack!.sessionPresent === true;
    open.push(c);
    return { c, sessionPresent };
  }

  it("a device back before the expiry finds its session and the QoS 1 message queued meanwhile; after it, nothing", async () => {
    const svc = await connectClient(broker.port, pki.client(CLOUD_SERVICE_IDENTITY), "svc-s");
    open.push(svc);
    const first = await persistent();
    await subscribe(first.c, delta);
    await first.c.end();
    // Back at once; a loaded machine may take longer than 400 ms, so this half is checked only when the
    // expiry has not run yet (the log says).
    await publish(svc, delta, '{"n":1}', { qos: 1 });
    const back = await persistent();
    const expiredEarly = log.lines.some((l) => l.event === "broker.session-expired");
    if (!expiredEarly) {
      expect(back.sessionPresent).toBe(true);
      expect(await waitFor(() => back.c.received.length > 0, 5_000)).toBe(true);
      expect(back.c.received.map((m) => m.payload)).toEqual(['{"n":1}']);
    }
    await back.c.end();
    expect(await waitFor(() => log.lines.some((l) => l.event === "broker.session-expired" && l.fields?.clientId === "dev-s"), 10_000)).toBe(true);
    await publish(svc, delta, '{"n":2}', { qos: 1 });
    const later = await persistent();
    expect(later.sessionPresent).toBe(false);
    await sleep(300);
    expect(later.c.received).toEqual([]); // neither the subscription nor a queued message survived
  });

  it("an Azure device's persistent session keeps its subscriptions, but nothing queued while it was away is delivered (IoT Hub keeps no notification)", async () => {
    const svc = await connectClient(broker.port, pki.client(CLOUD_SERVICE_IDENTITY), "svc-az");
    open.push(svc);
    const connect = async (): Promise<{ c: TestClient; sessionPresent: boolean }> => {
      const c = await connectClient(broker.port, pki.client("az-s"), "az-s", { clean: false });
      open.push(c);
      return { c, sessionPresent: (c.client as unknown as { connackPacket: { sessionPresent: boolean } }).connackPacket.sessionPresent };
    };
    const first = await connect();
    await subscribe(first.c, "$iothub/twin/PATCH/properties/desired/#");
    await first.c.end();
    await publish(svc, "devices/az-s/$iothub/twin/PATCH/properties/desired/?$version=2", '{"a":1,"$version":2}', { qos: 1 });
    const back = await connect();
    expect(back.sessionPresent).toBe(true);
    expect(await waitFor(() => log.lines.some((l) => l.event === "broker.offline-dropped" && l.fields?.clientId === "az-s"), 5_000)).toBe(true);
    // The subscription survived: a notification sent now arrives, and only it.
    await publish(svc, "devices/az-s/$iothub/twin/PATCH/properties/desired/?$version=3", '{"a":2,"$version":3}', { qos: 1 });
    expect(await waitFor(() => back.c.received.length > 0, 5_000)).toBe(true);
    await sleep(200);
    expect(back.c.received.map((m) => [m.topic, m.payload])).toEqual([["$iothub/twin/PATCH/properties/desired/?$version=3", '{"a":2,"$version":3}']]);
  });
});
