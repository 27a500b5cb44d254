/**
 * An ECMA-419-shaped TLS socket over the SDK's legacy SecureSocket, so that the SDK's ECMA-419 MQTT client
 * (`embedded:network/mqtt/client`, examples/io/tcp/mqttclient/mqttclient.js) can run over the same TLS stack
 * as the HTTPS download (src/device/https-moddable.ts). Used only by src/device/mqtt-419.ts.
 *
 * Why not the SDK's own ECMA-419 TLS socket (examples/io/tcp/tlssocket over `embedded:io/socket/tcp`): it
 * needs `ssl/session` to be `modules/crypt/ssl/session_419` (modules/crypt/tls_419.json), while
 * SecureSocket needs `ssl/session` to be `session_original` (modules/crypt/tls.json). Both import the bare
 * name "ssl/session", so one app cannot hold both stacks, and the legacy `http` Request the download uses
 * only works with SecureSocket (docs/moddable.md, "MQTT on the device").
 *
 * What the MQTT client needs from its socket (read from mqttclient.js, SDK 8.2.3), and what this gives it:
 * - constructed as `new io({...options.socket, address, host, port, onReadable, onWritable, onError})`;
 *   `secure` (SecureSocket's TLS options) arrives through `options.socket`. Nothing is called back from
 *   inside the constructor.
 * - `onWritable(count)` first when the TLS handshake is done (the client then sends CONNECT), and again
 *   whenever queued output has gone to SecureSocket;
 * - `onReadable(count)` with the number of decrypted bytes buffered here, which the client then reads with
 *   `read()` one byte at a time (`format = "number"`) or as `read(count)` → ArrayBuffer / `read(view)` →
 *   bytes copied (`format = "buffer"`). SecureSocket hands decrypted data over in pieces of at most 1 KiB and
 *   drops what its callback did not read, so every piece is copied here at once;
 * - `write(bytes, {more: true, byteLength})` … `write(bytes)`: one MQTT packet in fragments, sent when the
 *   last fragment (no `more`) arrives. It returns the bytes still free in the output queue; a packet larger
 *   than what is free throws RangeError (the client checks the count it was given before writing, so this
 *   only guards against a caller that does not);
 * - `onError()` once, when the connection fails or closes (SecureSocket's negative messages, or a throw
 *   inside its handshake); after `close()` nothing is called back.
 * - With `onPublishFramed`, one correction of the inbound stream: the client's parser (state 0x36) never
 *   finishes a PUBLISH whose payload is EMPTY — it neither resets its state nor answers it, so every later
 *   byte of the session is left unread (keepalive then ends it). Azure IoT Hub answers every
 *   reported-properties PATCH with exactly such a message ($iothub/twin/res/204/?$rid=…). So this socket
 *   frames the inbound MQTT packets (fixed header and remaining length, MQTT 3.1.1 §2.2.3), passes every
 *   packet through untouched but an empty-payload PUBLISH, which it passes on with ONE zero byte of payload
 *   added (remaining length + 1), and calls `onPublishFramed(padded)` once per PUBLISH, in stream order,
 *   before the client can see its bytes — so the owner of the client (src/device/mqtt-419.ts) knows which
 *   delivered message to hand on empty. The client then parses, delivers and acknowledges that PUBLISH like
 *   any other: its PUBACK (QoS 1) or PUBREC (QoS 2) joins the client's own queue in arrival order, as MQTT
 *   3.1.1 §4.6 requires [MQTT-4.6.0-2, -3]. (Before, the socket took the packet out and the adapter wrote
 *   the PUBACK at once, ahead of the PUBACKs the client still held in its queue.) A PUBLISH the framing
 *   cannot pass on consistently — QoS 3 (§3.3.1.2 [MQTT-3.3.1-4]), a remaining length under the 2 bytes of
 *   the topic length, or a topic longer than the packet — is a protocol violation: the socket closes and
 *   reports it through `onError` (§4.8: close the network connection).
 * Output is queued (at most `capacity` bytes, default 4 KiB) and handed to SecureSocket in records no larger
 * than it says it can take (its `write()` count: the raw socket's free space minus 128 bytes of TLS overhead;
 * 1 KiB send buffer on the Linux simulator), the rest on its next writable message.
 */
import SecureSocket from "securesocket";
import { NoDelaySecureSocket } from "./no-delay-secure-socket";

/** SecureSocket's callback messages (modules/network/socket/socket.js, securesocket.js). */
const MSG_CONNECTED = 1; // handshake done
const MSG_READABLE = 2; // a piece of decrypted data, read it now
const MSG_WRITABLE = 3; // the raw socket can take more

/** Free output space this socket reports by default; an MQTT packet must fit in it whole. */
export const LEGACY_TLS_DEFAULT_CAPACITY = 4096;

export interface LegacyTlsSocketOptions {
  host: string;
  port: number;
  /** SecureSocket's TLS options (protocolVersion, certificate, clientCertificates, clientKey, ALPN, …). */
  secure?: Record<string, unknown>;
  /** Output queue size in bytes (default 4096). */
  capacity?: number;
  onReadable?: (count: number) => void;
  onWritable?: (count: number) => void;
  onError?: (error?: unknown) => void;
  /** Frames the inbound stream: called once per PUBLISH in stream order, `true` when its empty payload was
   *  padded with one zero byte (see the header). */
  onPublishFramed?: (padded: boolean) => void;
  /** The SecureSocket class (tests pass a fake; default NoDelaySecureSocket: Nagle off on the ESP32). */
  SecureSocket?: new (dictionary: { host: string; port: number; secure?: Record<string, unknown> }) => object;
}

/** The part of SecureSocket this uses (securesocket.js, modsecuresocket.c). */
interface SecureSocketLike {
  callback: (message: number, value?: number) => void;
  /** With ArrayBuffer: the rest of the current decrypted piece. */
  read(type: typeof ArrayBuffer): ArrayBuffer | undefined;
  /** No argument: bytes it can take now. With data: sends it as one record (throws when it does not fit). */
  write(...data: Uint8Array[]): number;
  close(): void;
}

export class LegacyTlsSocket {
  #ss: SecureSocketLike | undefined;
  #onReadable: ((count: number) => void) | undefined;
  #onWritable: ((count: number) => void) | undefined;
  #onError: ((error?: unknown) => void) | undefined;
  #capacity: number;
  #ready = false;
  #closed = false;
  /** Received, not yet read: whole pieces; the first one from `#inAt`. */
  #in: Uint8Array[] = [];
  #inAt = 0;
  #inBytes = 0;
  /** Fragments of the packet being written (`more`), then whole packets waiting for SecureSocket. */
  #fragments: Uint8Array[] = [];
  #fragmentBytes = 0;
  #out: Uint8Array[] = [];
  #outBytes = 0;
  #numberFormat = false;
  #onPublishFramed: ((padded: boolean) => void) | undefined;
  /** Inbound framing (only with onPublishFramed): the start of the current packet held back until it is
   *  classified, and how many bytes of a packet already passed on are still to come. */
  #head: number[] = [];
  #passLeft = 0;

  constructor(options: LegacyTlsSocketOptions) {
    this.#onReadable = options.onReadable;
    this.#onWritable = options.onWritable;
    this.#onError = options.onError;
    this.#onPublishFramed = options.onPublishFramed;
    this.#capacity = options.capacity ?? LEGACY_TLS_DEFAULT_CAPACITY;
    const dictionary: { host: string; port: number; secure?: Record<string, unknown> } = { host: options.host, port: options.port };
    if (options.secure !== undefined) dictionary.secure = options.secure;
    const Socket = options.SecureSocket ?? (NoDelaySecureSocket as unknown as typeof SecureSocket);
    // Throws synchronously when the CA is outside its dates or the socket cannot be made: the MQTT client
    // builds its socket inside a try and reports that through its onError.
    const ss = new (Socket as unknown as new (d: object) => SecureSocketLike)(dictionary);
    this.#ss = ss;
    ss.callback = (message, value) => this.#callback(ss, message, value);
  }

  get format(): "buffer" | "number" {
    return this.#numberFormat ? "number" : "buffer";
  }

  set format(value: "buffer" | "number") {
    if (value !== "buffer" && value !== "number") throw new RangeError(`format ${String(value)}`);
    this.#numberFormat = value === "number";
  }

  /** Buffered bytes not read yet. */
  get readable(): number {
    return this.#inBytes;
  }

  /**
   * "number" format: the next byte (undefined when none). "buffer" format: no argument → every buffered
   * byte as an ArrayBuffer; a count → that many (RangeError when fewer are buffered); a view or ArrayBuffer
   * → filled with as many as are buffered, returning how many.
   */
  read(into?: number | ArrayBuffer | ArrayBufferView): number | ArrayBuffer | undefined {
    if (this.#numberFormat) {
      if (this.#inBytes === 0) return undefined;
      const piece = this.#in[0]!;
      const byte = piece[this.#inAt]!;
      this.#consume(1);
      return byte;
    }
    if (into === undefined || typeof into === "number") {
      const count = into ?? this.#inBytes;
      if (count > this.#inBytes) throw new RangeError(`read ${count} of ${this.#inBytes} buffered bytes`);
      const out = new Uint8Array(count);
      this.#copyInto(out);
      return out.buffer;
    }
    const view = ArrayBuffer.isView(into)
      ? new Uint8Array(into.buffer, into.byteOffset, into.byteLength)
      : new Uint8Array(into);
    const count = Math.min(view.byteLength, this.#inBytes);
    this.#copyInto(view.subarray(0, count));
    return count;
  }

  #copyInto(out: Uint8Array): void {
    let at = 0;
    while (at < out.byteLength) {
      const piece = this.#in[0]!;
      const n = Math.min(piece.byteLength - this.#inAt, out.byteLength - at);
      out.set(piece.subarray(this.#inAt, this.#inAt + n), at);
      at += n;
      this.#consume(n);
    }
  }

  #consume(n: number): void {
    this.#inBytes -= n;
    this.#inAt += n;
    if (this.#inAt === this.#in[0]!.byteLength) {
      this.#in.shift();
      this.#inAt = 0;
    }
  }

  /** Queues bytes; a packet goes out when its last fragment (no `more`) arrives. Returns the free space. */
  write(data: ArrayBuffer | ArrayBufferView, options?: { more?: boolean; byteLength?: number }): number {
    if (this.#closed || !this.#ready) throw new Error("socket not connected");
    const bytes = ArrayBuffer.isView(data)
      ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      : new Uint8Array(data);
    if (this.#outBytes + this.#fragmentBytes + bytes.byteLength > this.#capacity) {
      throw new RangeError(`write of ${bytes.byteLength} bytes with ${this.#free()} free`);
    }
    // Copied: the client reuses nothing, but a caller's view may be of a buffer it changes later.
    this.#fragments.push(bytes.slice());
    this.#fragmentBytes += bytes.byteLength;
    if (!options?.more) {
      const packet = concat(this.#fragments, this.#fragmentBytes);
      this.#fragments = [];
      this.#fragmentBytes = 0;
      this.#out.push(packet);
      this.#outBytes += packet.byteLength;
      this.#flush();
    }
    return this.#free();
  }

  #free(): number {
    return Math.max(0, this.#capacity - this.#outBytes - this.#fragmentBytes);
  }

  /** Hands queued bytes to SecureSocket, as many as it can take now (one TLS record per call). */
  #flush(): void {
    const ss = this.#ss;
    while (ss !== undefined && this.#outBytes > 0 && !this.#closed) {
      const room = ss.write();
      if (room <= 0) return; // the next writable message continues
      const first = this.#out[0]!;
      let chunk: Uint8Array;
      if (first.byteLength <= room) {
        chunk = first;
        this.#out.shift();
      } else {
        chunk = first.subarray(0, room);
        this.#out[0] = first.subarray(room);
      }
      this.#outBytes -= chunk.byteLength;
      ss.write(chunk);
    }
  }

  #push(bytes: Uint8Array): void {
    if (bytes.byteLength === 0) return;
    this.#in.push(bytes);
    this.#inBytes += bytes.byteLength;
  }

  /** Passes inbound bytes on, padding empty-payload PUBLISH packets (see the header). */
  #frame(piece: Uint8Array): void {
    let i = 0;
    while (i < piece.byteLength && !this.#closed) {
      if (this.#passLeft > 0) {
        const n = Math.min(this.#passLeft, piece.byteLength - i);
        this.#push(piece.subarray(i, i + n));
        this.#passLeft -= n;
        i += n;
        continue;
      }
      const head = this.#head;
      head.push(piece[i++]!);
      const rl = remainingLength(head);
      if (rl === undefined) {
        if (head.length < 5) continue;
        this.#release(0); // malformed length: let the client's parser say so
        continue;
      }
      const [remaining, lengthBytes] = rl;
      const fixed = 1 + lengthBytes;
      const type = head[0]! >> 4;
      const qos = (head[0]! >> 1) & 3;
      if (type !== 3) { this.#release(fixed + remaining - head.length); continue; }
      if (qos === 3) return this.#violation("PUBLISH with QoS 3");
      if (remaining < 2) return this.#violation(`PUBLISH of ${remaining} bytes, shorter than its topic length`);
      if (head.length < fixed + 2) continue;
      const topicLength = (head[fixed]! << 8) | head[fixed + 1]!;
      const payload = remaining - 2 - topicLength - (qos ? 2 : 0);
      if (payload < 0) return this.#violation(`PUBLISH of ${remaining} bytes with a ${topicLength}-byte topic`);
      if (payload > 0) {
        this.#onPublishFramed!(false);
        if (!this.#closed) this.#release(fixed + remaining - head.length);
        continue;
      }
      if (head.length < fixed + remaining) continue; // the whole (small) packet first
      // Empty: passed on with one zero byte of payload, under a remaining length one larger.
      const padded = [head[0]!, ...encodeRemainingLength(remaining + 1), ...head.slice(fixed), 0];
      this.#head = [];
      this.#onPublishFramed!(true);
      if (!this.#closed) this.#push(Uint8Array.from(padded));
    }
  }

  /** A PUBLISH the framing cannot pass on consistently: close, then say why (MQTT 3.1.1 §4.8). */
  #violation(why: string): void {
    const onError = this.#onError;
    this.close();
    onError?.(new Error(`MQTT protocol violation from the server: ${why}`));
  }

  /** Passes the held-back start of a packet on; `left` more bytes of it follow untouched. */
  #release(left: number): void {
    this.#push(Uint8Array.from(this.#head));
    this.#head = [];
    this.#passLeft = Math.max(0, left);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#in = [];
    this.#inBytes = 0;
    this.#out = [];
    this.#outBytes = 0;
    const ss = this.#ss;
    this.#ss = undefined;
    ss?.close();
  }

  #callback(ss: SecureSocketLike, message: number, value?: number): void {
    if (this.#closed || ss !== this.#ss) return;
    if (message === MSG_CONNECTED) {
      this.#ready = true;
      this.#onWritable?.(this.#free());
    } else if (message === MSG_READABLE) {
      const piece = ss.read(ArrayBuffer);
      if (piece === undefined || piece.byteLength === 0) return;
      if (this.#onPublishFramed === undefined) this.#push(new Uint8Array(piece));
      else this.#frame(new Uint8Array(piece));
      if (this.#inBytes > 0 && !this.#closed) this.#onReadable?.(this.#inBytes);
    } else if (message === MSG_WRITABLE) {
      if (!this.#ready) return;
      const before = this.#outBytes;
      this.#flush();
      if (before > 0 || value !== undefined) this.#onWritable?.(this.#free());
    } else if (message < 0) {
      // Socket.disconnected (-1) or Socket.error (-2); SecureSocket closes itself after this callback.
      this.#ss = undefined;
      this.#closed = true;
      this.#onError?.(new Error(message === -1 ? "connection closed by the peer" : "socket error"));
    }
  }
}

/** MQTT's remaining length (§2.2.3) from `head[1..]`: [value, bytes] or undefined while incomplete. */
function remainingLength(head: readonly number[]): [number, number] | undefined {
  let value = 0;
  for (let i = 1; i < head.length && i <= 4; i++) {
    value += (head[i]! & 0x7f) * 128 ** (i - 1);
    if ((head[i]! & 0x80) === 0) return [value, i];
  }
  return undefined; // a fifth continuation byte is malformed: the client's parser reports it
}

/** MQTT's remaining length (§2.2.3) as its 1..4 bytes. */
function encodeRemainingLength(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return out;
}

function concat(parts: readonly Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
