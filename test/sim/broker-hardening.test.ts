/**
 * The brokers against hostile clients (issue 8, "Hardening"), each attack as an attacker would make it, on
 * loopback and bounded in count and time:
 * - a valid device certificate followed by CONNECT + junk (or random bytes) must not end the process;
 * - TCP connections that never start TLS, and TLS connections that never send CONNECT, are closed by the
 *   configured deadlines, and a well-behaved device still connects;
 * - a per-address connection cap (configured low here; the default is sized for a loopback fleet);
 * - oversize packets are refused from their fixed header (a 100 MB PUBLISH header alone is enough) and at
 *   the clouds' payload limits (AWS 128 KB, IoT Hub 256 KB); the mosquitto config carries the same cap.
 * Deadlines inside the broker are short on purpose; the test only waits for their effect, with bounds.
 */
import * as net from "node:net";
import * as tls from "node:tls";
import * as path from "node:path";

import { AedesBroker } from "../../src/sim/broker-aedes";
import { MosquittoBroker } from "../../src/sim/broker-mosquitto";
import {
  AWS_MAX_PAYLOAD_BYTES, AZURE_MAX_PAYLOAD_BYTES, BROKER_CODES, DEFAULT_BROKER_LIMITS, MQTT_HEADER_ALLOWANCE, brokerLimits,
  payloadLimitOf,
} from "../../src/sim/broker-policy";
import { MqttFrameScanner } from "../../src/sim/mqtt-frame-guard";
import { CLOUD_SERVICE_IDENTITY, type Credentials } from "../../src/sim/pki";
import { MemoryLog } from "../core/fake-ports";
import { connectClient, publish, subscribe, testPki, tryConnect, waitFor, type TestClient } from "./broker-fixtures";
import { describeMosquitto, noteMosquittoSkipped } from "./mosquitto-gate";

jest.setTimeout(60_000);
noteMosquittoSkipped(`test/sim/${path.basename(__filename)}`);

const { pki, cleanup } = testPki("broker-hardening");
let devA: Credentials, svc: Credentials;
beforeAll(() => {
  devA = pki.client("dev-a");
  svc = pki.client(CLOUD_SERVICE_IDENTITY);
});
afterAll(() => cleanup());

// ---- raw MQTT bytes (MQTT 3.1.1 §2.2, §3.1, §3.3) --------------------------------------------------------

function remainingLength(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

function connectPacket(clientId: string): Buffer {
  const id = Buffer.from(clientId, "utf8");
  const variable = [0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 30]; // "MQTT", level 4, clean, keepalive 30
  const rest = Buffer.concat([Buffer.from(variable), Buffer.from([id.length >> 8, id.length & 0xff]), id]);
  return Buffer.concat([Buffer.from([0x10, ...remainingLength(rest.length)]), rest]);
}

/** Only the fixed header and topic of a QoS 0 PUBLISH that announces `payloadBytes` more bytes. */
function publishHeader(topic: string, payloadBytes: number): Buffer {
  const t = Buffer.from(topic, "utf8");
  return Buffer.concat([Buffer.from([0x30, ...remainingLength(2 + t.length + payloadBytes), t.length >> 8, t.length & 0xff]), t]);
}

/** A TLS connection with a client certificate; resolves once the handshake is done. */
function tlsConnect(port: number, creds: Credentials): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, ca: creds.caPem, cert: creds.certPem, key: creds.keyPem }, () => resolve(s));
    s.once("error", reject);
  });
}

/** Resolves when the socket is closed (by either side). */
function closed(s: net.Socket): Promise<void> {
  return new Promise((r) => { if (s.destroyed) r(); else s.once("close", () => r()); });
}

/** A deterministic byte generator (xorshift32), so a failing fuzz case can be replayed. */
function randomBytes(seed: number, n: number): Buffer {
  let x = seed >>> 0 || 1;
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

describe("MqttFrameScanner", () => {
  const packets = Buffer.concat([connectPacket("dev-a"), publishHeader("t", 3), Buffer.from("abc"), Buffer.from([0xc0, 0x00])]);

  test("a stream of packets under the cap passes, split at every byte", () => {
    for (let cut = 0; cut <= packets.length; cut++) {
      const s = new MqttFrameScanner(64);
      expect(s.feed(packets.subarray(0, cut))).toBeUndefined();
      expect(s.feed(packets.subarray(cut))).toBeUndefined();
    }
  });

  test("a packet over the cap is refused from its header, split at every byte", () => {
    const huge = publishHeader("$aws/things/dev-a/shadow/update", 100 * 1024 * 1024);
    for (let cut = 0; cut <= huge.length; cut++) {
      const s = new MqttFrameScanner(1024);
      const v = s.feed(huge.subarray(0, cut)) ?? s.feed(huge.subarray(cut));
      expect(v).toMatchObject({ reason: "too-large", limit: 1024 });
      expect(v?.declaredBytes).toBeGreaterThan(100 * 1024 * 1024);
    }
  });

  test("the cap is on the whole packet; a fifth length byte is malformed", () => {
    const exact = Buffer.concat([publishHeader("t", 10), Buffer.alloc(10)]); // 2 + 3 + 10 = 15 bytes
    expect(new MqttFrameScanner(15).feed(exact)).toBeUndefined();
    expect(new MqttFrameScanner(14).feed(exact)).toMatchObject({ reason: "too-large", declaredBytes: 15 });
    expect(new MqttFrameScanner(1 << 30).feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).toMatchObject({ reason: "malformed-length" });
  });

  test("random bytes never throw and stop at the first violation", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const s = new MqttFrameScanner(256);
      const bytes = randomBytes(seed, 512);
      let v;
      for (let i = 0; i < bytes.length; i += 7) v = s.feed(bytes.subarray(i, i + 7)) ?? v;
      if (v !== undefined) expect(s.violation).toBe(v);
    }
  });
});

describe("limits", () => {
  test("the defaults and the payload limits are the clouds' numbers", () => {
    expect(AWS_MAX_PAYLOAD_BYTES).toBe(128 * 1024);
    expect(AZURE_MAX_PAYLOAD_BYTES).toBe(256 * 1024);
    expect(DEFAULT_BROKER_LIMITS.maxPacketBytes).toBe(256 * 1024 + MQTT_HEADER_ALLOWANCE);
    expect(payloadLimitOf("$aws/things/a/shadow/update")).toBe(128 * 1024);
    expect(payloadLimitOf("devices/a/$iothub/twin/GET/?$rid=1")).toBe(256 * 1024);
    expect(payloadLimitOf("other")).toBeUndefined();
    expect(brokerLimits({ connectTimeoutMs: 0 })).toMatch(/connectTimeoutMs/);
    expect(brokerLimits({ maxPacketBytes: 10 })).toMatch(/at least 20/);
  });

  test("an invalid limit is refused at start with BROKER_OPTION_INVALID", async () => {
    await expect(AedesBroker.start({ pki, limits: { maxConnectionsPerAddress: -1 } })).rejects.toMatchObject({ code: BROKER_CODES.BROKER_OPTION_INVALID });
  });
});

describe("aedes against hostile clients", () => {
  const log = new MemoryLog();
  let broker: AedesBroker;
  const open: TestClient[] = [];
  beforeAll(async () => {
    broker = await AedesBroker.start({ pki, log, limits: { handshakeTimeoutMs: 300, connectTimeoutMs: 300 } });
  });
  afterEach(async () => { await Promise.all(open.splice(0).map((c) => c.end())); });
  afterAll(async () => { await broker.close(); });

  async function deviceStillConnects(): Promise<void> {
    expect(await tryConnect(broker.port, devA, "dev-a")).toEqual({ connected: true, errors: [] });
  }

  test("a device certificate with a name reserved for the services is refused (CONNACK 5)", async () => {
    const fake = pki.client(`${CLOUD_SERVICE_IDENTITY}-1`);
    const r = await tryConnect(broker.port, fake, fake.name);
    expect(r.connected).toBe(false);
    expect(r.errors.map((e) => e.message).join(" ")).toMatch(/Not authorized/i);
  });

  test("CONNECT followed by two junk bytes from a valid device certificate does not end the process", async () => {
    const s = await tlsConnect(broker.port, devA);
    s.on("error", () => undefined);
    s.write(Buffer.concat([connectPacket("dev-a"), Buffer.from([0xff, 0xff])]));
    await closed(s);
    await deviceStillConnects();
    expect(log.lines.filter((l) => l.event === "broker.callback-failed")).toEqual([]);
  });

  test("random bytes after a valid CONNECT (50 seeded cases) never end the process", async () => {
    for (let seed = 1; seed <= 50; seed++) {
      const s = await tlsConnect(broker.port, devA);
      s.on("error", () => undefined);
      s.write(Buffer.concat([connectPacket("dev-a"), randomBytes(seed, 1 + (seed * 37) % 300)]));
      s.end();
      await closed(s);
    }
    await deviceStillConnects();
    expect(log.lines.filter((l) => l.event === "broker.callback-failed")).toEqual([]);
  });

  test("50 TCP connections that never start TLS are closed by the handshake deadline; a device still connects", async () => {
    const before = log.lines.length;
    const sockets = await Promise.all(Array.from({ length: 50 }, () => new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(broker.port, "127.0.0.1", () => resolve(s));
      s.once("error", reject);
    })));
    for (const s of sockets) s.on("error", () => undefined);
    await Promise.all(sockets.map(closed));
    expect(await waitFor(() => broker.connectionCount === 0, 10_000)).toBe(true);
    expect(log.lines.slice(before).filter((l) => l.event === "broker.limit" && l.fields?.rule === "handshake-timeout").length).toBeGreaterThan(0);
    await deviceStillConnects();
  });

  test("a TLS connection that never sends CONNECT is closed by the CONNECT deadline", async () => {
    const before = log.lines.length;
    const s = await tlsConnect(broker.port, devA);
    s.on("error", () => undefined);
    await closed(s);
    expect(await waitFor(() => log.lines.slice(before).some((l) => l.event === "broker.limit" && l.fields?.rule === "connect-timeout"))).toBe(true);
  });

  test("a PUBLISH header announcing 100 MB closes the connection before any payload is sent", async () => {
    const before = log.lines.length;
    const s = await tlsConnect(broker.port, devA);
    s.on("error", () => undefined);
    s.write(Buffer.concat([connectPacket("dev-a"), publishHeader("$aws/things/dev-a/shadow/update", 100 * 1024 * 1024)]));
    await closed(s); // nothing more is written: the broker must decide from the header alone
    const hit = log.lines.slice(before).find((l) => l.event === "broker.limit" && l.fields?.rule === "packet-size");
    expect(hit?.fields).toMatchObject({ code: "BROKER_LIMIT_EXCEEDED", limit: DEFAULT_BROKER_LIMITS.maxPacketBytes });
    await deviceStillConnects();
  });

  test("a 1 MB publish drops the device and reaches nobody; the broker keeps serving", async () => {
    const s = await connectClient(broker.port, svc, "svc");
    open.push(s);
    await subscribe(s, "$aws/things/+/shadow/#");
    const a = await connectClient(broker.port, devA, "dev-a");
    open.push(a);
    a.client.publish("$aws/things/dev-a/shadow/update", Buffer.alloc(1024 * 1024, 0x20), { qos: 0 });
    expect(await waitFor(() => a.closed, 10_000)).toBe(true);
    const b = await connectClient(broker.port, devA, "dev-a");
    open.push(b);
    await publish(b, "$aws/things/dev-a/shadow/get", "sentinel");
    expect(await waitFor(() => s.received.some((m) => m.payload === "sentinel"))).toBe(true);
    expect(s.received.filter((m) => m.payload.length > 1000)).toEqual([]);
  });

  test("payload limits per cloud: over 128 KB on an AWS topic is refused, the same size on an Azure topic passes", async () => {
    const s = await connectClient(broker.port, svc, "svc");
    open.push(s);
    await subscribe(s, ["$aws/things/+/shadow/#", "devices/+/$iothub/#"]);
    const size = AWS_MAX_PAYLOAD_BYTES + 1;
    const a = await connectClient(broker.port, devA, "dev-a");
    open.push(a);
    await publish(a, "$iothub/twin/PATCH/properties/reported/?$rid=1", "x".repeat(size));
    expect(await waitFor(() => s.received.some((m) => m.payload.length === size))).toBe(true);
    a.client.publish("$aws/things/dev-a/shadow/update", "y".repeat(size), { qos: 0 });
    expect(await waitFor(() => a.closed)).toBe(true);
    expect(log.lines.some((l) => l.event === "broker.limit" && l.fields?.rule === "payload-size" && l.fields?.limit === AWS_MAX_PAYLOAD_BYTES)).toBe(true);
    expect(s.received.some((m) => m.payload.startsWith("yyy"))).toBe(false);
  });
});

test("aedes: a per-address cap closes connections over it, and frees the place when one closes", async () => {
  const log = new MemoryLog();
  const broker = await AedesBroker.start({ pki, log, limits: { maxConnectionsPerAddress: 5 } });
  try {
    const held = await Promise.all(Array.from({ length: 5 }, () => new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(broker.port, "127.0.0.1", () => resolve(s));
      s.once("error", reject);
    })));
    for (const s of held) s.on("error", () => undefined);
    expect(await waitFor(() => broker.connectionCount === 5)).toBe(true);
    const extra = net.connect(broker.port, "127.0.0.1");
    extra.on("error", () => undefined);
    await closed(extra);
    expect((await tryConnect(broker.port, devA, "dev-a")).connected).toBe(false);
    expect(log.lines.some((l) => l.event === "broker.limit" && l.fields?.rule === "connections-per-address" && l.fields?.limit === 5)).toBe(true);
    held[0]!.destroy();
    expect(await waitFor(() => broker.connectionCount === 4)).toBe(true);
    expect((await tryConnect(broker.port, devA, "dev-a")).connected).toBe(true);
    for (const s of held) s.destroy();
  } finally {
    await broker.close();
  }
});

describeMosquitto("mosquitto against oversize packets", () => {
  test("the AWS instance drops a client whose publish is over 128 KB + headers and keeps running", async () => {
    const broker = await MosquittoBroker.start({ pki, mode: "aws" });
    const open: TestClient[] = [];
    try {
      const s = await connectClient(broker.port, svc, "svc");
      open.push(s);
      await subscribe(s, "$aws/things/+/shadow/#");
      const a = await connectClient(broker.port, devA, "dev-a");
      open.push(a);
      a.client.publish("$aws/things/dev-a/shadow/update", Buffer.alloc(1024 * 1024, 0x20), { qos: 0 });
      expect(await waitFor(() => a.closed, 10_000)).toBe(true);
      expect(broker.running).toBe(true);
      const b = await connectClient(broker.port, devA, "dev-a");
      open.push(b);
      await publish(b, "$aws/things/dev-a/shadow/get", "sentinel");
      expect(await waitFor(() => s.received.some((m) => m.payload === "sentinel"))).toBe(true);
      expect(s.received.filter((m) => m.payload.length > 1000)).toEqual([]);
    } finally {
      await Promise.all(open.map((c) => c.end()));
      await broker.close();
    }
  });
});
