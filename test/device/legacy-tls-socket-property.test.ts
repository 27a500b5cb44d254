/**
 * Property test of src/device/legacy-tls-socket.ts's inbound framing (fast-check): any stream of MQTT packets
 * the broker sends a client — PUBLISH with empty and non-empty payloads at QoS 0 and 1, topics around 127/128
 * bytes (where the remaining length goes from one varint byte to two), PUBACK, SUBACK, PINGRESP — cut into
 * SecureSocket pieces at arbitrary boundaries (inside the fixed header and the remaining-length varint
 * included), comes out as exactly the same packets in the same order, as bytes the client reads: each
 * empty-payload PUBLISH with one zero byte of payload, named padded by onPublishFramed (every other PUBLISH
 * named as is) before the reader could see any byte of it.
 * A fake SecureSocket as in legacy-tls-socket.test.ts (a piece must be read inside its callback).
 */
import fc from "fast-check";

jest.mock("securesocket", () => ({ __esModule: true, default: class SecureSocket {} }), { virtual: true });
jest.mock("timer", () => ({ __esModule: true, default: { set: () => 0, clear: () => undefined } }), { virtual: true });

/** Declared here, as legacy-tls-socket.test.ts does (the root tsconfig must not follow device sources). */
interface SocketLike {
  format: "buffer" | "number";
  readonly readable: number;
  read(into?: number | ArrayBuffer | ArrayBufferView): number | ArrayBuffer | undefined;
}
const { LegacyTlsSocket } = require("../../src/device/legacy-tls-socket") as {
  LegacyTlsSocket: new (o: object) => SocketLike;
};

class PieceSocket {
  static last: PieceSocket | undefined;
  callback: (message: number, value?: number) => void = () => undefined;
  piece: Uint8Array | undefined;
  constructor() { PieceSocket.last = this; }
  read(): ArrayBuffer | undefined { const p = this.piece; this.piece = undefined; return p?.slice().buffer; }
  write(): number { return 1024; }
  close(): void { /* nothing */ }
  deliver(bytes: Uint8Array): void { this.piece = bytes; this.callback(2, bytes.length); this.piece = undefined; }
}

type Packet =
  | { kind: "publish"; qos: 0 | 1; topic: string; id: number; payload: number[] }
  | { kind: "puback"; id: number }
  | { kind: "suback"; id: number; granted: number }
  | { kind: "pingresp" };

function varint(n: number): number[] {
  const out: number[] = [];
  do { let b = n % 128; n = Math.floor(n / 128); if (n > 0) b |= 0x80; out.push(b); } while (n > 0);
  return out;
}

function encode(p: Packet): number[] {
  switch (p.kind) {
    case "publish": {
      const topic = [...Buffer.from(p.topic, "utf8")];
      const body = [topic.length >> 8, topic.length & 0xff, ...topic, ...(p.qos ? [p.id >> 8, p.id & 0xff] : []), ...p.payload];
      return [0x30 | (p.qos << 1), ...varint(body.length), ...body];
    }
    case "puback": return [0x40, 2, p.id >> 8, p.id & 0xff];
    case "suback": return [0x90, 3, p.id >> 8, p.id & 0xff, p.granted];
    case "pingresp": return [0xd0, 0];
  }
}

/** Whole packets from `bytes`, each with its offset; throws on a partial one. */
function decodeAll(bytes: number[]): Array<{ packet: Packet; at: number }> {
  const out: Array<{ packet: Packet; at: number }> = [];
  let i = 0;
  while (i < bytes.length) {
    const first = bytes[i]!;
    let rl = 0, mul = 1, j = i + 1;
    for (;;) { const b = bytes[j++]; if (b === undefined) throw new Error(`partial fixed header at ${i}`); rl += (b & 0x7f) * mul; mul *= 128; if ((b & 0x80) === 0) break; }
    const end = j + rl;
    if (end > bytes.length) throw new Error(`partial packet at ${i}: ${bytes.length - j} of ${rl}`);
    const body = bytes.slice(j, end);
    const type = first >> 4;
    let packet: Packet;
    if (type === 3) {
      const qos = ((first >> 1) & 3) as 0 | 1;
      const tl = (body[0]! << 8) | body[1]!;
      const topic = Buffer.from(body.slice(2, 2 + tl)).toString("utf8");
      const pid = qos ? (body[2 + tl]! << 8) | body[3 + tl]! : 0;
      packet = { kind: "publish", qos, topic, id: pid, payload: body.slice(2 + tl + (qos ? 2 : 0)) };
    } else if (type === 4) packet = { kind: "puback", id: (body[0]! << 8) | body[1]! };
    else if (type === 9) packet = { kind: "suback", id: (body[0]! << 8) | body[1]!, granted: body[2]! };
    else if (type === 13) packet = { kind: "pingresp" };
    else throw new Error(`unexpected type ${type}`);
    out.push({ packet, at: i });
    i = end;
  }
  return out;
}

/**
 * Runs `stream` through the socket in pieces cut at `cuts`; the packets as the client and its owner see them
 * together: a PUBLISH named padded by onPublishFramed must carry exactly one zero byte, and is counted empty.
 * Also checks that each PUBLISH was named before the reader could have read any byte of it.
 */
function throughSocket(stream: number[], cuts: number[], format: "buffer" | "number"): Packet[] {
  const got: number[] = [];
  const framed: Array<{ padded: boolean; readBefore: number }> = [];
  let socket: SocketLike | undefined;
  const readAll = (): void => {
    if (socket!.format === "number") {
      for (let n = 0; n < 100_000; n++) { const b = socket!.read(); if (b === undefined) break; got.push(b as number); }
    } else got.push(...new Uint8Array(socket!.read() as ArrayBuffer));
  };
  socket = new LegacyTlsSocket({
    host: "h", port: 1, SecureSocket: PieceSocket,
    onReadable: () => readAll(),
    onPublishFramed: (padded: boolean) => framed.push({ padded, readBefore: got.length }),
  });
  socket.format = format;
  const ss = PieceSocket.last!;
  ss.callback(1);
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
  let at = 0;
  for (const p of [...points, stream.length]) {
    if (p > at) ss.deliver(Uint8Array.from(stream.slice(at, p)));
    at = Math.max(at, p);
  }
  // Plain checks, not expect(): this runs thousands of times per test.
  const decoded = decodeAll(got);
  const publishes = decoded.filter((d) => d.packet.kind === "publish");
  if (framed.length !== publishes.length) throw new Error(`${framed.length} PUBLISH named, ${publishes.length} passed on`);
  publishes.forEach((d, k) => {
    const f = framed[k]!;
    if (f.readBefore > d.at) throw new Error(`PUBLISH ${k} named after ${f.readBefore} bytes were read; it starts at ${d.at}`);
    const p = d.packet as Extract<Packet, { kind: "publish" }>;
    if (f.padded) {
      if (p.payload.length !== 1 || p.payload[0] !== 0) throw new Error(`PUBLISH ${k} named padded carries ${JSON.stringify(p.payload)}`);
      p.payload = [];
    }
  });
  return decoded.map((d) => d.packet);
}

const id = fc.integer({ min: 1, max: 0xffff });
const topicLength = fc.oneof(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 118, max: 132 }), fc.integer({ min: 250, max: 260 }));
const publish = fc.record({
  qos: fc.constantFrom(0 as const, 1 as const),
  topicLength,
  id,
  payloadLength: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 100, max: 300 })),
  fill: fc.integer({ min: 0, max: 255 }),
}).map(({ qos, topicLength: tl, id: pid, payloadLength, fill }): Packet => ({
  kind: "publish", qos, topic: "t".repeat(tl), id: qos ? pid : 0,
  payload: Array.from({ length: payloadLength }, (_, k) => (fill + k) & 0xff),
}));
const packet: fc.Arbitrary<Packet> = fc.oneof(
  { weight: 4, arbitrary: publish },
  { weight: 1, arbitrary: id.map((i): Packet => ({ kind: "puback", id: i })) },
  { weight: 1, arbitrary: fc.record({ id, granted: fc.constantFrom(0, 1, 0x80) }).map((r): Packet => ({ kind: "suback", ...r })) },
  { weight: 1, arbitrary: fc.constant<Packet>({ kind: "pingresp" }) },
);

describe("LegacyTlsSocket framing under every read split (property)", () => {
  test.each(["buffer", "number"] as const)("format %s: the same packets in the same order", (format) => {
    fc.assert(fc.property(fc.array(packet, { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 40 }), (packets, cuts) => {
      const stream = packets.flatMap(encode);
      expect(throughSocket(stream, cuts, format)).toEqual(packets);
    }), { numRuns: 300 });
  });

  test("every single cut of a stream holding each kind, the varint boundary on both sides", () => {
    const packets: Packet[] = [
      { kind: "publish", qos: 1, topic: "t".repeat(123), id: 7, payload: [] }, // remaining 127: one varint byte
      { kind: "publish", qos: 1, topic: "t".repeat(124), id: 8, payload: [] }, // remaining 128: two
      { kind: "publish", qos: 0, topic: "t".repeat(126), id: 0, payload: [] },
      { kind: "publish", qos: 0, topic: "t".repeat(125), id: 0, payload: [1] },
      { kind: "puback", id: 9 },
      { kind: "publish", qos: 0, topic: "x", id: 0, payload: [] },
      { kind: "suback", id: 10, granted: 1 },
      { kind: "pingresp" },
      { kind: "publish", qos: 1, topic: "y", id: 11, payload: [2, 3] },
    ];
    const stream = packets.flatMap(encode);
    for (let cut = 0; cut <= stream.length; cut++) {
      for (let second = cut; second <= Math.min(stream.length, cut + 3); second++) {
        expect(throughSocket(stream, [cut, second], "buffer")).toEqual(packets);
      }
    }
  });
});
