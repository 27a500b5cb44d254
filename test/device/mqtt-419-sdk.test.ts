/**
 * The ECMA-419 adapter (src/device/mqtt-419.ts + legacy-tls-socket.ts) with the SDK's OWN client — the
 * source file examples/io/tcp/mqttclient/mqttclient.js of the installed SDK ($MODDABLE), evaluated on Node —
 * against the local cloud (aedes, mutual TLS on loopback). Only SecureSocket is replaced: by node:tls behind
 * SecureSocket's callback interface (1 connected after the handshake, 2 a decrypted piece of at most 1 KiB,
 * 3 writable, -1 closed, -2 error; write() = room, write(bytes) = one record). So the client's parser, its
 * QoS 1 handling and the adapter's framing run on the very bytes the broker sends.
 *
 * One test puts the MQTT fault proxy (src/sim/mqtt-fault-proxy.ts) between the adapter and the broker to drop
 * a PUBACK (the adapter's ackTimeoutMs). Without an SDK (CI) the suite says so and is skipped; the fakes-based suites (mqtt-419.test.ts,
 * legacy-tls-socket.test.ts) always run. The simulator runs are in docs/moddable.md.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tls from "node:tls";
import { LocalCloud } from "../../src/sim/local-cloud";
import { MqttFaultProxy, pkiTls } from "../../src/sim/mqtt-fault-proxy";
import type { MqttTransport } from "../../src/ports/mqtt-transport";

const SDK_CLIENT = process.env.MODDABLE ? path.join(process.env.MODDABLE, "examples/io/tcp/mqttclient/mqttclient.js") : "";
const haveSdk = SDK_CLIENT !== "" && fs.existsSync(SDK_CLIENT);
if (!haveSdk) console.log("mqtt-419-sdk: SKIPPED — no $MODDABLE/examples/io/tcp/mqttclient/mqttclient.js (the SDK's ECMA-419 client)");

// The SDK modules the adapter imports: Timer on Node's timers; the client from the SDK's source.
jest.mock("timer", () => ({
  __esModule: true,
  default: {
    set: (fn: () => void, ms = 0) => setTimeout(fn, ms),
    repeat: (fn: () => void, ms: number) => setInterval(fn, ms),
    clear: (t: unknown) => { if (t !== undefined) clearTimeout(t as NodeJS.Timeout); },
  },
}), { virtual: true });
jest.mock("embedded:network/mqtt/client", () => ({ __esModule: true, default: undefined }), { virtual: true });
jest.mock("securesocket", () => ({ __esModule: true, default: class SecureSocket {} }), { virtual: true });

/** mqttclient.js as a class: its two imports become parameters; XS's ArrayBuffer/String helpers polyfilled. */
function loadSdkClient(): unknown {
  const g = globalThis as Record<string, unknown>;
  (ArrayBuffer as unknown as { fromString: (s: string) => ArrayBuffer }).fromString ??= (s: string) => { const b = Buffer.from(s, "utf8"); return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength); };
  (String as unknown as { fromArrayBuffer: (b: ArrayBuffer) => string }).fromArrayBuffer ??= (b: ArrayBuffer) => Buffer.from(b).toString("utf8");
  g.trace ??= (...parts: unknown[]) => { traced.push(parts.join("")); };
  const src = fs.readFileSync(SDK_CLIENT, "utf8")
    .replace(/^import Timer from "timer";$/m, "")
    .replace(/^import Time from "time";$/m, "")
    .replace(/^export default MQTTClient;$/m, "return MQTTClient;");
  const Timer = {
    set: (fn: () => void, ms = 0) => setTimeout(fn, ms),
    repeat: (fn: () => void, ms: number) => setInterval(fn, ms),
    clear: (t: unknown) => { if (t !== undefined) clearTimeout(t as NodeJS.Timeout); },
  };
  const Time = { get ticks() { return Math.floor(performance.now()); }, delta: (a: number, b: number) => b - a };
  return new Function("Timer", "Time", src)(Timer, Time);
}
const traced: string[] = [];

/** SecureSocket's interface over node:tls (securesocket.js semantics as legacy-tls-socket.ts expects them). */
function nodeSecureSocket(ca: string, cert: string, key: string) {
  return class NodeSecureSocket {
    static sockets: NodeSecureSocket[] = [];
    callback: (message: number, value?: number) => void = () => undefined;
    #piece: Buffer | undefined;
    #socket: tls.TLSSocket;
    #closed = false;
    constructor(dictionary: { host: string; port: number }) {
      NodeSecureSocket.sockets.push(this);
      this.#socket = tls.connect({
        host: "127.0.0.1", port: dictionary.port, servername: dictionary.host,
        ca, cert, key,
      });
      this.#socket.on("secureConnect", () => { if (!this.#closed) this.callback(1); });
      this.#socket.on("data", (data: Buffer) => {
        for (let at = 0; at < data.length && !this.#closed; at += 1024) {
          this.#piece = data.subarray(at, Math.min(at + 1024, data.length));
          this.callback(2, this.#piece.length);
          this.#piece = undefined;
        }
      });
      this.#socket.on("error", () => { if (!this.#closed) { this.#closed = true; this.callback(-2); } });
      this.#socket.on("close", () => { if (!this.#closed) { this.#closed = true; this.callback(-1); } });
    }
    read(): ArrayBuffer | undefined {
      const p = this.#piece;
      this.#piece = undefined;
      return p === undefined ? undefined : p.buffer.slice(p.byteOffset, p.byteOffset + p.byteLength) as ArrayBuffer;
    }
    write(...data: Uint8Array[]): number {
      if (data.length > 0) this.#socket.write(Buffer.from(data[0]!));
      return 896;
    }
    close(): void { this.#closed = true; this.#socket.destroy(); }
    /** The broker side going away, as a dropped connection. */
    drop(): void { this.#socket.destroy(); }
  };
}

const describeSdk = haveSdk ? describe : describe.skip;

describeSdk("Mqtt419Transport over the SDK's own ECMA-419 client, against the local cloud", () => {
  const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki");
  let dir: string;
  let cloud: LocalCloud;
  let transport: MqttTransport | undefined;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-419-"));
    cloud = await LocalCloud.start({ dataDir: dir, certsDir: PKI, blobPort: false, adminPort: false, awsDataPlanePort: false, devices: [{ id: "esp32-az-01", cloud: "azure" }, { id: "esp32-01", cloud: "aws" }] });
  });
  afterEach(async () => { await transport?.close(); transport = undefined; });
  afterAll(async () => {
    await cloud.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function open(id: string, user?: string, via: { port?: number; ackTimeoutMs?: number; log?: object } = {}) {
    const { Mqtt419Transport } = require("../../src/device/mqtt-419") as { Mqtt419Transport: new (o: object) => MqttTransport };
    const { LegacyTlsSocket } = require("../../src/device/legacy-tls-socket") as { LegacyTlsSocket: new (o: object) => object };
    const creds = cloud.pki.client(id);
    const Socket = nodeSecureSocket(creds.caPem, creds.certPem, creds.keyPem);
    const events: string[] = [];
    const messages: Array<{ topic: string; text: string }> = [];
    let onMessage: (() => void) | undefined;
    let onConnected: (() => void) | undefined;
    const t = new Mqtt419Transport({
      host: "localhost", port: via.port ?? cloud.mqttPort, clientId: id, ...(via.ackTimeoutMs === undefined ? {} : { ackTimeoutMs: via.ackTimeoutMs }),
      ...(via.log === undefined ? {} : { log: via.log }), ca: creds.caDer, clientCertificate: creds.certDer, clientKey: creds.keyDer,
      ...(user === undefined ? {} : { user }), keepaliveMs: 60_000, backoff: { initialMs: 50, maxMs: 200 },
      Client: loadSdkClient(),
      Socket: class extends LegacyTlsSocket {
        constructor(o: object) { super({ ...o, SecureSocket: Socket }); }
      },
    });
    t.setHandlers({
      connected: () => { events.push("connected"); onConnected?.(); },
      disconnected: (r) => events.push(`disconnected ${r.message}`),
      message: (topic, payload) => { messages.push({ topic, text: Buffer.from(payload).toString("utf8") }); onMessage?.(); },
    });
    transport = t;
    const next = (pred: (m: { topic: string; text: string }) => boolean) => new Promise<{ topic: string; text: string }>((resolve) => {
      const check = () => { const m = messages.find(pred); if (m) { onMessage = undefined; resolve(m); } };
      onMessage = check;
      check();
    });
    const connected = (n: number) => new Promise<void>((resolve) => {
      const check = () => { if (events.filter((e) => e === "connected").length >= n) resolve(); };
      onConnected = check;
      check();
    });
    t.start();
    return { t, events, messages, next, connected, sockets: Socket.sockets };
  }

  test("Azure: subscribe (SUBACK), twin GET, reported PATCHes answered by empty 204s back to back, PUBACKs; a drop and a reconnect", async () => {
    const s = open("esp32-az-01", `localhost/esp32-az-01/?api-version=2021-04-12`);
    await s.connected(1);
    await s.t.subscribe(["$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#"]);
    await s.t.publish("$iothub/twin/GET/?$rid=g1", "");
    const got = await s.next((m) => m.topic.startsWith("$iothub/twin/res/200/?$rid=g1"));
    expect(JSON.parse(got.text)).toHaveProperty("desired");
    // Three reports in a row, as the app sends its state, progress and result: each answered by an EMPTY 204.
    for (const rid of ["r1", "r2", "r3"]) await s.t.publish(`$iothub/twin/PATCH/properties/reported/?$rid=${rid}`, JSON.stringify({ n: rid }));
    for (const rid of ["r1", "r2", "r3"]) {
      const r = await s.next((m) => m.topic.startsWith(`$iothub/twin/res/204/?$rid=${rid}&`));
      expect(r.text).toBe("");
    }
    expect((await cloud.twins.getTwin("esp32-az-01")).reported).toMatchObject({ n: "r3" });
    // The session goes on after the empty messages: a GET is answered.
    await s.t.publish("$iothub/twin/GET/?$rid=g2", "");
    await s.next((m) => m.topic.startsWith("$iothub/twin/res/200/?$rid=g2"));
    // The connection drops: disconnected, then a new session by backoff, usable again.
    s.sockets.at(-1)!.drop();
    await s.connected(2);
    expect(s.events).toEqual(["connected", "disconnected connection lost", "connected"]);
    await s.t.subscribe(["$iothub/twin/res/#"]);
    await s.t.publish("$iothub/twin/GET/?$rid=g3", "");
    await s.next((m) => m.topic.startsWith("$iothub/twin/res/200/?$rid=g3"));
  });

  test("AWS: QoS 1 subscribe and publish; a shadow get answered on get/accepted", async () => {
    const s = open("esp32-01");
    await s.connected(1);
    await s.t.subscribe(["$aws/things/esp32-01/shadow/get/accepted", "$aws/things/esp32-01/shadow/update/accepted"]);
    await s.t.publish("$aws/things/esp32-01/shadow/update", JSON.stringify({ state: { reported: { fw: "1.0.0" } }, clientToken: "u1" }));
    await s.next((m) => m.topic.endsWith("/update/accepted"));
    await s.t.publish("$aws/things/esp32-01/shadow/get", JSON.stringify({ clientToken: "g1" }));
    const got = await s.next((m) => m.topic.endsWith("/get/accepted"));
    expect(JSON.parse(got.text).state.reported).toMatchObject({ fw: "1.0.0" });
  });

  test("AWS through the MQTT fault proxy: the broker's PUBACK dropped once; the publish fails after ackTimeoutMs, the session ends with that reason and the next one works", async () => {
    const { downstreamTls, upstreamTls } = pkiTls(cloud.pki);
    const proxy = await MqttFaultProxy.start({
      upstream: { host: "127.0.0.1", port: cloud.mqttPort, tls: upstreamTls }, downstreamTls,
      rules: [{ action: "drop", type: "puback", direction: "down", times: 1 }],
    });
    try {
      const logged: string[] = [];
      // 1.5 s: long enough for a PUBACK on loopback under load, short enough for the test.
      const s = open("esp32-01", undefined, { port: proxy.port, ackTimeoutMs: 1_500, log: { log: (level: string, event: string) => logged.push(`${level} ${event}`) } });
      await s.connected(1);
      const update = JSON.stringify({ state: { reported: { fw: "1.0.1" } }, clientToken: "u1" });
      let caught: unknown;
      await s.t.publish("$aws/things/esp32-01/shadow/update", update).catch((e) => { caught = e; });
      expect((caught as { code?: string }).code).toBe("SYNC_TRANSPORT");
      expect((caught as Error).message).toMatch(/^PUBACK not received: no PUBACK for packet \d+ within 1500 ms$/);
      expect(proxy.events.map((e) => `${e.direction} ${e.type} ${e.action}`)).toEqual(["down puback drop"]);
      expect(logged).toEqual(["warn mqtt.ack-timeout"]);
      await s.connected(2);
      expect(s.events).toEqual(["connected", expect.stringMatching(/^disconnected no PUBACK for packet \d+ within 1500 ms$/), "connected"]);
      // The new session's publish is acknowledged.
      await s.t.publish("$aws/things/esp32-01/shadow/update", JSON.stringify({ state: { reported: { fw: "1.0.2" } }, clientToken: "u2" }));
      expect(proxy.count("down", "puback")).toBe(2);
    } finally {
      await transport?.close();
      transport = undefined;
      await proxy.close();
    }
  });
});
