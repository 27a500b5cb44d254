/**
 * The ECMA-419-shaped socket over SecureSocket (src/device/legacy-tls-socket.ts) on Node, with a fake
 * SecureSocket that behaves as securesocket.js + modsecuresocket.c do: messages through `callback`
 * (1 connected after the handshake, 2 a decrypted piece that must be read inside the call, 3 writable,
 * negative = closed/error), `read(ArrayBuffer)` the rest of the current piece, `write()` the room left
 * (the raw socket's free space minus TLS overhead) and `write(bytes)` one record, throwing when it does not fit.
 *
 * What this is not: a test of TLS or of the SDK's MQTT client (the simulator runs in docs/moddable.md).
 */
jest.mock("securesocket", () => ({ __esModule: true, default: class SecureSocket {} }), { virtual: true });
jest.mock("timer", () => ({ __esModule: true, default: { set: () => 0, clear: () => undefined } }), { virtual: true });

/** The socket as the test drives it (declared here: the root tsconfig must not follow the device sources into
 *  the SDK imports it cannot resolve; tsconfig.device.json type-checks them). */
interface LegacyTlsSocketOptions {
  host: string; port: number; secure?: Record<string, unknown>; capacity?: number;
  onReadable?: (count: number) => void; onWritable?: (count: number) => void; onError?: (error?: unknown) => void;
  onPublishFramed?: (padded: boolean) => void;
  SecureSocket?: new (dictionary: { host: string; port: number; secure?: object }) => object;
}
interface LegacyTlsSocketLike {
  format: "buffer" | "number";
  readonly readable: number;
  read(into?: number | ArrayBuffer | ArrayBufferView): number | ArrayBuffer | undefined;
  write(data: ArrayBuffer | ArrayBufferView, options?: { more?: boolean; byteLength?: number }): number;
  close(): void;
}
const { LegacyTlsSocket, LEGACY_TLS_DEFAULT_CAPACITY } = require("../../src/device/legacy-tls-socket") as {
  LegacyTlsSocket: new (o: LegacyTlsSocketOptions) => LegacyTlsSocketLike; LEGACY_TLS_DEFAULT_CAPACITY: number;
};

class FakeSecureSocket {
  static last: FakeSecureSocket | undefined;
  callback: (message: number, value?: number) => void = () => { throw new Error("no callback installed"); };
  piece: Uint8Array | undefined;
  room = 896;
  records: Uint8Array[] = [];
  closed = false;
  constructor(readonly dictionary: { host: string; port: number; secure?: object }) {
    FakeSecureSocket.last = this;
  }
  read(_type: typeof ArrayBuffer): ArrayBuffer | undefined {
    const p = this.piece;
    this.piece = undefined;
    return p === undefined ? undefined : p.slice().buffer;
  }
  write(...data: Uint8Array[]): number {
    if (data.length === 0) return this.room;
    const bytes = data[0]!;
    if (bytes.byteLength > this.room) throw new Error("can't write all data");
    this.records.push(bytes.slice());
    this.room -= bytes.byteLength;
    return this.room;
  }
  close(): void { this.closed = true; }
  /** Delivers a decrypted piece as securesocket.js does (the callback must read it now). */
  deliver(bytes: number[]): void {
    this.piece = Uint8Array.from(bytes);
    this.callback(2, bytes.length);
    this.piece = undefined; // what was not read is gone
  }
}

interface Events { readable: number[]; writable: number[]; errors: number }

function open(extra: Partial<LegacyTlsSocketOptions> = {}) {
  const ev: Events = { readable: [], writable: [], errors: 0 };
  const socket = new LegacyTlsSocket({
    host: "broker.local", port: 8883, secure: { protocolVersion: 0x303 },
    onReadable: (n) => ev.readable.push(n), onWritable: (n) => ev.writable.push(n), onError: () => { ev.errors++; },
    SecureSocket: FakeSecureSocket, ...extra,
  });
  return { socket, ss: FakeSecureSocket.last!, ev };
}

const bytes = (...b: number[]) => Uint8Array.from(b);
const all = (records: Uint8Array[]) => records.flatMap((r) => [...r]);

describe("LegacyTlsSocket", () => {
  test("hands host, port and the TLS options to SecureSocket and calls nothing back before the handshake ends", () => {
    const { socket, ss, ev } = open();
    expect(ss.dictionary).toEqual({ host: "broker.local", port: 8883, secure: { protocolVersion: 0x303 } });
    expect(ev).toEqual({ readable: [], writable: [], errors: 0 });
    expect(() => socket.write(bytes(1))).toThrow("socket not connected");
    ss.callback(3, 500); // writable during the handshake (securesocket.js does not forward it; nor does this)
    expect(ev.writable).toEqual([]);
    ss.callback(1);
    expect(ev.writable).toEqual([LEGACY_TLS_DEFAULT_CAPACITY]);
  });

  test("a packet written in fragments goes out only with its last fragment, as one stream of bytes", () => {
    const { socket, ss } = open();
    ss.callback(1);
    expect(socket.write(bytes(0x30), { more: true, byteLength: 5 })).toBe(LEGACY_TLS_DEFAULT_CAPACITY - 1);
    socket.write(bytes(3), { more: true });
    expect(ss.records).toEqual([]);
    expect(socket.write(bytes(0, 1, 0x61))).toBe(LEGACY_TLS_DEFAULT_CAPACITY);
    expect(ss.records).toEqual([bytes(0x30, 3, 0, 1, 0x61)]);
  });

  test("output larger than SecureSocket's room is split into records it can take; the rest follows its writable message", () => {
    const { socket, ss, ev } = open({ capacity: 3000 });
    ss.callback(1);
    const packet = Uint8Array.from({ length: 2000 }, (_, i) => i & 0xff);
    expect(socket.write(packet)).toBe(3000 - (2000 - 896));
    expect(ss.records.map((r) => r.byteLength)).toEqual([896]);
    ss.room = 896;
    ss.callback(3, 896);
    expect(ss.records.map((r) => r.byteLength)).toEqual([896, 896]);
    expect(ev.writable.at(-1)).toBe(3000 - 208);
    ss.room = 896;
    ss.callback(3, 896);
    expect(ss.records.map((r) => r.byteLength)).toEqual([896, 896, 208]);
    expect(ev.writable.at(-1)).toBe(3000);
    expect(Uint8Array.from(all(ss.records))).toEqual(packet);
  });

  test("refuses a write larger than the free queue (RangeError), leaving what is queued intact", () => {
    const { socket, ss } = open({ capacity: 10 });
    ss.callback(1);
    ss.room = 0; // nothing leaves
    socket.write(bytes(1, 2, 3, 4, 5, 6));
    expect(() => socket.write(bytes(7, 8, 9, 10, 11))).toThrow(RangeError);
    ss.room = 100;
    ss.callback(3, 100);
    expect(all(ss.records)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  test("copies every decrypted piece at once and reads it back byte by byte, by count, into a view, or whole", () => {
    const { socket, ss, ev } = open();
    ss.callback(1);
    ss.deliver([1, 2, 3]);
    ss.deliver([4, 5, 6, 7]);
    expect(ev.readable).toEqual([3, 7]);
    socket.format = "number";
    expect([socket.read(), socket.read()]).toEqual([1, 2]);
    socket.format = "buffer";
    expect(new Uint8Array(socket.read(2) as ArrayBuffer)).toEqual(bytes(3, 4));
    const view = new Uint8Array(8);
    expect(socket.read(view.subarray(1, 3))).toBe(2);
    expect(view).toEqual(bytes(0, 5, 6, 0, 0, 0, 0, 0));
    expect(socket.readable).toBe(1);
    expect(() => socket.read(2)).toThrow(RangeError);
    expect(new Uint8Array(socket.read() as ArrayBuffer)).toEqual(bytes(7));
    socket.format = "number";
    expect(socket.read()).toBeUndefined();
    expect(() => { socket.format = "text" as "buffer"; }).toThrow(RangeError);
  });

  test("a close or error from SecureSocket is reported once; nothing is called back after it or after close()", () => {
    const { socket, ss, ev } = open();
    ss.callback(1);
    ss.callback(-1);
    expect(ev.errors).toBe(1);
    ss.deliver([1]);
    ss.callback(-2);
    expect(ev).toEqual({ readable: [], writable: [LEGACY_TLS_DEFAULT_CAPACITY], errors: 1 });
    expect(() => socket.write(bytes(1))).toThrow("socket not connected");

    const second = open();
    second.ss.callback(1);
    second.socket.close();
    expect(second.ss.closed).toBe(true);
    second.ss.deliver([1]);
    second.ss.callback(-2);
    expect(second.ev).toEqual({ readable: [], writable: [LEGACY_TLS_DEFAULT_CAPACITY], errors: 0 });
    second.socket.close(); // twice is fine
  });
});

/** MQTT 3.1.1 packets as a broker sends them. */
function publish(topic: string, payload: number[], qos: 0 | 1, id = 0): number[] {
  const t = [...Buffer.from(topic, "utf8")];
  const body = [t.length >> 8, t.length & 0xff, ...t, ...(qos ? [id >> 8, id & 0xff] : []), ...payload];
  return [0x30 | (qos << 1), ...remaining(body.length), ...body];
}
function remaining(n: number): number[] {
  const out: number[] = [];
  do { let b = n % 128; n = Math.floor(n / 128); if (n > 0) b |= 0x80; out.push(b); } while (n > 0);
  return out;
}
const PINGRESP = [0xd0, 0];
const SUBACK = [0x90, 3, 0, 5, 1];

describe("LegacyTlsSocket with onPublishFramed (the ECMA-419 client's empty-PUBLISH stall)", () => {
  const big = Array.from({ length: 300 }, (_, i) => i & 0xff); // a two-byte remaining length
  const first = publish("$iothub/twin/res/200/?$rid=1", big, 1, 0x0102);
  const empty = publish("$iothub/twin/res/204/?$rid=2&$version=3", [], 1, 0x0203);
  const emptyQos0 = publish("t/0", [], 0);
  const stream = [...SUBACK, ...first, ...empty, ...PINGRESP, ...emptyQos0, ...publish("d", [7], 0)];
  // Every packet in place; each empty PUBLISH with one zero byte of payload under a remaining length one larger.
  const passed = [...SUBACK, ...first, ...publish("$iothub/twin/res/204/?$rid=2&$version=3", [0], 1, 0x0203), ...PINGRESP,
    ...publish("t/0", [0], 0), ...publish("d", [7], 0)];

  test("pads each empty-payload PUBLISH with one byte in its place, passes every other byte on unchanged, and names each PUBLISH before its bytes, however the stream is split", () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const log: string[] = [];
      const received: number[] = [];
      const { socket, ss } = open({
        onReadable: () => { received.push(...new Uint8Array(socket.read() as ArrayBuffer)); },
        onPublishFramed: (padded) => log.push(`${padded ? "padded" : "as is"} after ${received.length}`),
      });
      ss.callback(1);
      ss.deliver(stream.slice(0, cut));
      ss.deliver(stream.slice(cut));
      expect(received).toEqual(passed);
      // One call per PUBLISH, in stream order, before the reader has seen any byte of that PUBLISH: the bytes
      // read by then are at most those before its place in `passed`.
      expect(log.map((l) => l.split(" after ")[0])).toEqual(["as is", "padded", "padded", "as is"]);
      const starts = [SUBACK.length, SUBACK.length + first.length, SUBACK.length + first.length + empty.length + 1 + PINGRESP.length, passed.length - 4];
      log.forEach((l, i) => expect(Number(l.split(" after ")[1])).toBeLessThanOrEqual(starts[i]!));
    }
  });

  test("the remaining length grows a byte where the padding crosses 127/128", () => {
    const received: number[] = [];
    const { socket, ss } = open({ onReadable: () => { received.push(...new Uint8Array(socket.read() as ArrayBuffer)); }, onPublishFramed: () => undefined });
    ss.callback(1);
    const p = publish("t".repeat(123), [], 1, 7); // remaining 127: one varint byte
    expect(p.slice(0, 2)).toEqual([0x32, 127]);
    ss.deliver(p);
    expect(received).toEqual(publish("t".repeat(123), [0], 1, 7));
    expect(received.slice(0, 3)).toEqual([0x32, 0x80, 1]);
  });

  test.each([
    ["QoS 3", [0x36, 5, 0, 1, 0x61, 0, 1], "PUBLISH with QoS 3"],
    ["no room for the topic length", [0x30, 1, 0], "PUBLISH of 1 bytes, shorter than its topic length"],
    ["a topic longer than the packet", [0x30, 3, 0, 5, 0x61], "PUBLISH of 3 bytes with a 5-byte topic"],
  ])("a PUBLISH with %s closes the socket and reports the violation once; nothing of it reaches the reader", (_name, packet, why) => {
    const errors: string[] = [];
    const framed: boolean[] = [];
    const received: number[] = [];
    const { socket, ss } = open({
      onReadable: () => { received.push(...new Uint8Array(socket.read() as ArrayBuffer)); },
      onError: (e) => errors.push((e as Error).message),
      onPublishFramed: (padded) => framed.push(padded),
    });
    ss.callback(1);
    ss.deliver([...PINGRESP, ...packet, ...PINGRESP]);
    expect(errors).toEqual([`MQTT protocol violation from the server: ${why}`]);
    expect(ss.closed).toBe(true);
    expect(framed).toEqual([]);
    expect(received).toEqual([]); // the PINGRESP before it was buffered, then dropped with the connection
    ss.deliver(PINGRESP);
    expect(errors).toHaveLength(1);
  });

  test("without onPublishFramed the stream is passed on as it came", () => {
    const { socket, ss } = open();
    ss.callback(1);
    ss.deliver(stream);
    expect([...new Uint8Array(socket.read() as ArrayBuffer)]).toEqual(stream);
  });
});
