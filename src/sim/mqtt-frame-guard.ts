/**
 * A size cap for MQTT packets that acts before a packet is buffered: the aedes broker (broker-aedes.ts)
 * hands aedes a FramedConnection instead of the TLS socket, and the connection is destroyed as soon as a
 * packet's fixed header announces more bytes than the cap allows — a 100 MB PUBLISH costs the broker five
 * header bytes, not 100 MB of memory. aedes's parser (mqtt-packet) has no such option.
 *
 * Grammar scanned (MQTT 3.1.1 §2.2 and MQTT 5 §2.1, identical for this purpose):
 *   packet          = fixed-header-byte remaining-length remaining-length-bytes
 *   remaining-length = 1..4 bytes, little-endian base 128, high bit = "more bytes follow"
 *                      (a fifth byte, or a four-byte value with the high bit set, is malformed)
 * Only the packet boundaries are tracked; the content (type, flags, topic, payload) is aedes's business.
 * The cap applies to the whole packet: 1 header byte + the length bytes + the remaining length, the same
 * quantity as mosquitto's `max_packet_size`.
 *
 * MqttFrameScanner is pure (no I/O, no allocation per byte) and survives any split of the stream;
 * FramedConnection is the Duplex around a socket that uses it. Not here: which limit applies (broker-policy.ts).
 */
import { Duplex } from "node:stream";
import type * as net from "node:net";

/** Why a stream was refused: the packet's declared size over the cap, or a malformed remaining length. */
export interface FrameViolation {
  readonly reason: "too-large" | "malformed-length";
  /** Total bytes the packet declared (header + length bytes + remaining length); for "too-large". */
  readonly declaredBytes?: number;
  readonly limit: number;
}

/** Incremental scanner of MQTT packet boundaries. Feed it every byte of the stream in order. */
export class MqttFrameScanner {
  readonly limit: number;
  /** 0: expecting a fixed-header byte; 1: inside the remaining length; 2: inside the packet body. */
  #state: 0 | 1 | 2 = 0;
  #length = 0;
  #multiplier = 1;
  #lengthBytes = 0;
  #remaining = 0;
  #violation: FrameViolation | undefined;

  /** `limit`: the largest whole packet in bytes (at least 2: a PINGREQ). */
  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 2) throw new RangeError(`packet limit ${limit} must be an integer >= 2`);
    this.limit = limit;
  }

  /** The first violation seen (the scanner stays stopped after one). */
  get violation(): FrameViolation | undefined {
    return this.#violation;
  }

  /** Scans `chunk`; returns the violation when the stream broke a rule (now or before), else undefined. */
  feed(chunk: Uint8Array): FrameViolation | undefined {
    let i = 0;
    while (i < chunk.length && this.#violation === undefined) {
      if (this.#state === 2) {
        const step = Math.min(this.#remaining, chunk.length - i);
        this.#remaining -= step;
        i += step;
        if (this.#remaining === 0) this.#state = 0;
        continue;
      }
      const b = chunk[i++]!;
      if (this.#state === 0) {
        this.#state = 1;
        this.#length = 0;
        this.#multiplier = 1;
        this.#lengthBytes = 0;
        continue;
      }
      this.#length += (b & 0x7f) * this.#multiplier;
      this.#multiplier *= 128;
      this.#lengthBytes++;
      if ((b & 0x80) !== 0) {
        if (this.#lengthBytes === 4) this.#violation = { reason: "malformed-length", limit: this.limit };
        continue;
      }
      const total = 1 + this.#lengthBytes + this.#length;
      if (total > this.limit) {
        this.#violation = { reason: "too-large", declaredBytes: total, limit: this.limit };
        continue;
      }
      this.#remaining = this.#length;
      this.#state = this.#remaining === 0 ? 0 : 2;
    }
    return this.#violation;
  }
}

/**
 * The socket as aedes sees it: reads pass through an MqttFrameScanner, writes go straight to the socket.
 * On a violation `onViolation` is called once and the socket is destroyed with an Error naming it (aedes
 * logs it as a connection or client error and cleans up). Destroying this stream destroys the socket and
 * the socket's end/close ends this stream. Owns nothing else; the socket stays the caller's to count.
 */
export class FramedConnection extends Duplex {
  readonly socket: net.Socket;
  readonly #scanner: MqttFrameScanner;
  readonly #onViolation: (v: FrameViolation) => void;

  constructor(socket: net.Socket, limit: number, onViolation: (v: FrameViolation) => void) {
    super({ allowHalfOpen: false });
    this.socket = socket;
    this.#scanner = new MqttFrameScanner(limit);
    this.#onViolation = onViolation;
    socket.on("data", (chunk: Buffer) => {
      const v = this.#scanner.feed(chunk);
      if (v !== undefined) {
        socket.pause();
        this.#onViolation(v);
        const what = v.reason === "too-large" ? `packet of ${v.declaredBytes} bytes over the ${v.limit}-byte limit` : "malformed remaining length";
        this.destroy(new Error(`MQTT ${what}`));
        return;
      }
      if (!this.push(chunk)) socket.pause();
    });
    socket.on("end", () => this.push(null));
    socket.on("error", (err) => this.destroy(err));
    socket.on("close", () => { if (!this.destroyed) this.destroy(); });
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.socket.destroyed) { callback(new Error("socket closed")); return; }
    if (this.socket.write(chunk)) callback();
    else this.socket.once("drain", () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end();
    callback();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.socket.destroyed) this.socket.destroy();
    callback(err);
  }
}
