/**
 * Property test of the ECMA-419 path's reassembly (fast-check), with the SDK's OWN client (mqttclient.js from
 * the SDK at $MODDABLE; skipped without one, as mqtt-419-sdk.test.ts is):
 * src/device/mqtt-419.ts over src/device/legacy-tls-socket.ts over a fake SecureSocket that hands the
 * broker's bytes over in pieces cut at arbitrary points (inside fixed headers and remaining-length varints
 * included). Any stream of PUBLISH packets (empty and non-empty payloads, QoS 0 and 1, topics around the
 * 127/128-byte remaining-length boundary, payloads past one 1 KiB piece) mixed with PINGRESP must reach the
 * application as exactly the same (topic, payload) messages in order, with one PUBACK written for each QoS 1
 * PUBLISH, in the order the PUBLISHes arrived (MQTT 3.1.1 §4.6; before the socket padded empty PUBLISHes
 * for the client, the adapter answered those itself, ahead of the client's queue, and this failed).
 * The socket's framing alone: legacy-tls-socket-property.test.ts (runs without the SDK).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import fc from "fast-check";
import type { MqttTransport } from "../../src/ports/mqtt-transport";

const SDK_CLIENT = process.env.MODDABLE ? path.join(process.env.MODDABLE, "examples/io/tcp/mqttclient/mqttclient.js") : "";
const haveSdk = SDK_CLIENT !== "" && fs.existsSync(SDK_CLIENT);
if (!haveSdk) console.log("mqtt-419-property: SKIPPED — no $MODDABLE/examples/io/tcp/mqttclient/mqttclient.js (the SDK's ECMA-419 client)");

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

/** mqttclient.js as a class (as mqtt-419-sdk.test.ts loads it). */
function loadSdkClient(): unknown {
  const g = globalThis as Record<string, unknown>;
  (ArrayBuffer as unknown as { fromString: (s: string) => ArrayBuffer }).fromString ??= (s: string) => { const b = Buffer.from(s, "utf8"); return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength); };
  (String as unknown as { fromArrayBuffer: (b: ArrayBuffer) => string }).fromArrayBuffer ??= (b: ArrayBuffer) => Buffer.from(b).toString("utf8");
  g.trace ??= () => undefined;
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

/** SecureSocket as legacy-tls-socket.ts expects it; the test hands the broker's bytes over with deliver(). */
class PieceSocket {
  static last: PieceSocket | undefined;
  callback: (message: number, value?: number) => void = () => undefined;
  piece: Uint8Array | undefined;
  written: number[] = [];
  constructor() {
    PieceSocket.last = this;
    setTimeout(() => this.callback(1), 0); // the handshake is done
  }
  read(): ArrayBuffer | undefined { const p = this.piece; this.piece = undefined; return p?.slice().buffer; }
  write(...data: Uint8Array[]): number { if (data.length > 0) this.written.push(...data[0]!); return 4096; }
  close(): void { /* nothing */ }
  deliver(bytes: Uint8Array): void { this.piece = bytes; this.callback(2, bytes.length); this.piece = undefined; }
}

interface Pub { qos: 0 | 1; topic: string; id: number; payload: number[] }
function varint(n: number): number[] {
  const out: number[] = [];
  do { let b = n % 128; n = Math.floor(n / 128); if (n > 0) b |= 0x80; out.push(b); } while (n > 0);
  return out;
}
function encode(p: Pub | "ping"): number[] {
  if (p === "ping") return [0xd0, 0];
  const topic = [...Buffer.from(p.topic, "utf8")];
  const body = [topic.length >> 8, topic.length & 0xff, ...topic, ...(p.qos ? [p.id >> 8, p.id & 0xff] : []), ...p.payload];
  return [0x30 | (p.qos << 1), ...varint(body.length), ...body];
}

const pub: fc.Arbitrary<Pub> = fc.record({
  qos: fc.constantFrom(0 as const, 1 as const),
  tl: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 118, max: 132 })),
  id: fc.integer({ min: 1, max: 0xffff }),
  len: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 120, max: 140 }), fc.integer({ min: 1000, max: 1100 })),
  fill: fc.integer({ min: 0, max: 255 }),
}).map(({ qos, tl, id, len, fill }) => ({ qos, topic: "t".repeat(tl - 1) + String.fromCharCode(97 + (fill % 26)), id: qos ? id : 0, payload: Array.from({ length: len }, (_, k) => (fill + k) & 0xff) }));
const item = fc.oneof({ weight: 5, arbitrary: pub }, { weight: 1, arbitrary: fc.constant("ping" as const) });

/** The socket the last connection made (a function: TypeScript would narrow a static read after the reset). */
const current = (): PieceSocket | undefined => PieceSocket.last;

const describeSdk = haveSdk ? describe : describe.skip;

describeSdk("Mqtt419Transport + LegacyTlsSocket + the SDK's client under every read split (property)", () => {
  const Client = haveSdk ? loadSdkClient() : undefined;

  async function run(items: Array<Pub | "ping">, cuts: number[]): Promise<{ got: Array<{ topic: string; payload: number[] }>; pubacks: number[]; events: string[] }> {
    const { Mqtt419Transport } = require("../../src/device/mqtt-419") as { Mqtt419Transport: new (o: object) => MqttTransport };
    const { LegacyTlsSocket } = require("../../src/device/legacy-tls-socket") as { LegacyTlsSocket: new (o: object) => object };
    const got: Array<{ topic: string; payload: number[] }> = [];
    const events: string[] = [];
    let connected!: () => void;
    const up = new Promise<void>((resolve) => { connected = resolve; });
    const t = new Mqtt419Transport({
      host: "localhost", port: 8883, clientId: "dev", ca: new ArrayBuffer(1), keepaliveMs: 600_000, backoff: { initialMs: 60_000, maxMs: 60_000 },
      Client, Socket: class extends LegacyTlsSocket { constructor(o: object) { super({ ...o, SecureSocket: PieceSocket }); } },
    });
    t.setHandlers({
      connected: () => { events.push("connected"); connected(); },
      disconnected: (r) => events.push(`disconnected ${r.message}`),
      message: (topic, payload) => got.push({ topic, payload: [...payload] }),
    });
    PieceSocket.last = undefined;
    t.start();
    // The client resolves the name, opens the socket, sends CONNECT on the handshake: a few turns (bounded).
    for (let i = 0; i < 200 && (current()?.written.length ?? 0) === 0; i++) await new Promise((r) => setTimeout(r, 1));
    const ss = current()!;
    ss.deliver(Uint8Array.from([0x20, 2, 0, 0])); // CONNACK
    await up;
    ss.written = [];
    const stream = items.flatMap(encode);
    const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
    let at = 0;
    for (const p of [...points, stream.length]) {
      if (p > at) ss.deliver(Uint8Array.from(stream.slice(at, p)));
      at = Math.max(at, p);
    }
    await new Promise((r) => setTimeout(r, 0));
    const pubacks: number[] = [];
    const w = ss.written;
    for (let i = 0; i + 3 < w.length; i++) if (w[i] === 0x40 && w[i + 1] === 2) { pubacks.push((w[i + 2]! << 8) | w[i + 3]!); i += 3; }
    await t.close();
    return { got, pubacks, events };
  }

  test("the same messages in the same order, one PUBACK per QoS 1 PUBLISH", async () => {
    await fc.assert(fc.asyncProperty(fc.array(item, { minLength: 1, maxLength: 10 }), fc.array(fc.nat(), { maxLength: 40 }), async (items, cuts) => {
      const { got, pubacks, events } = await run(items, cuts);
      const pubs = items.filter((i): i is Pub => i !== "ping");
      expect(events).toEqual(["connected"]);
      expect(got).toEqual(pubs.map((p) => ({ topic: p.topic, payload: p.payload })));
      // Each QoS 1 PUBLISH acknowledged exactly once, in the order the PUBLISHes arrived (MQTT 3.1.1 §4.6),
      // the empty ones included.
      expect(pubacks).toEqual(pubs.filter((p) => p.qos === 1).map((p) => p.id));
    }), { numRuns: 150 });
  });

  test("an empty QoS 1 PUBLISH right after a non-empty one: PUBACK 1 then 2, whole or cut anywhere", async () => {
    const items: Pub[] = [
      { qos: 1, topic: "$iothub/twin/res/200/?$rid=g1", id: 1, payload: [0x7b, 0x7d] },
      { qos: 1, topic: "$iothub/twin/res/204/?$rid=r2", id: 2, payload: [] },
      { qos: 0, topic: "$iothub/twin/res/204/?$rid=r3", id: 0, payload: [] },
      { qos: 1, topic: "$iothub/twin/res/204/?$rid=r4", id: 3, payload: [] },
    ];
    const length = items.flatMap(encode).length;
    for (let cut = 0; cut <= length; cut++) {
      const { got, pubacks } = await run(items, [cut]);
      expect(pubacks).toEqual([1, 2, 3]);
      expect(got.map((m) => m.payload.length)).toEqual([2, 0, 0, 0]);
    }
  });
});
