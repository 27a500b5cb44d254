/**
 * MqttTransport (src/ports/mqtt-transport.ts) over the Moddable SDK's ECMA-419 MQTT client, module
 * `embedded:network/mqtt/client` (examples/io/tcp/mqttclient/mqttclient.js, SDK 8.2.3), running over the
 * legacy SecureSocket through src/device/legacy-tls-socket.ts (why not the SDK's ECMA-419 TLS socket: there).
 * The second MQTT adapter of the device app; `mqttClient` in the manifest's config picks it or the legacy
 * one (src/device/mqtt-moddable.ts). Decision and the simulator runs: docs/moddable.md, "MQTT on the device".
 *
 * What the SDK client does, read from its source: MQTT 3.1.1 over any ECMA-419-shaped socket
 * (`socket.io`), host names through `dns.io` (here HostNameResolver: the legacy socket resolves names
 * itself); every control packet reaches `onControl(msg)` with `msg.operation` (CONNACK, PUBACK, SUBACK with
 * the granted QoS bytes in `msg.payload`, …) and the packet id in `msg.id`; it answers a QoS 1 PUBLISH with
 * PUBACK itself; a PUBLISH's payload is pulled with `read()` inside `onReadable(count, {topic, byteLength,
 * more})`, possibly over several calls; `write(data, {topic, QoS, id})` publishes, `write(null,
 * {operation: SUBSCRIBE, items, id})` subscribes, and both throw when the socket cannot take the packet
 * whole. It never calls `onClose`: every end (socket error, refused CONNACK, keepalive timeout, a parse
 * error) is `onError()` without a reason, after which the client closes itself. No reconnect, no resend.
 *
 * So this adapter: builds a new client after every error, waiting as src/core/backoff.ts says; subscribes at
 * QoS 1 and resolves on SUBACK (rejecting when the broker granted 0x80, failure); publishes at QoS 1 and
 * resolves on the PUBACK of its packet id; rejects what is unacknowledged when the session ends (the core
 * re-gets and re-reports after `connected`, it does not need resends); assembles a PUBLISH's payload from its
 * fragments into one buffer of the announced size, up to `maxMessageBytes` (a larger one ends the session
 * with that reason rather than being cut).
 *
 * Three protocol rules it keeps that the client alone does not (docs/moddable.md, "MQTT on the device"):
 * - PUBACKs leave in the order the PUBLISHes arrived (MQTT 3.1.1 §4.6). The client acknowledges every QoS 1
 *   PUBLISH itself from one queue; the one kind it cannot parse, an empty payload, reaches it padded with one
 *   byte by the socket (legacy-tls-socket.ts, `onPublishFramed`) and is handed on here empty. The adapter
 *   writes no acknowledgement of its own.
 * - No acknowledgement is awaited for ever: a SUBACK or PUBACK missing for `ackTimeoutMs` (default 10 s) ends
 *   the session (log `mqtt.ack-timeout`), which rejects every awaited publish and subscribe with
 *   SYNC_TRANSPORT and reconnects. Nothing is resent in the session: MQTT 3.1.1 resends only on a new
 *   connection of a kept session (§4.4), and this one is clean; the core re-gets and re-reports instead.
 * - The reconnect backoff is reset by the first acknowledgement of a session, not by its CONNACK: a broker
 *   that accepts the connection but never answers the subscribe and get the core sends on `connected` (or
 *   drops the connection on them) is retried at growing waits instead of every `initialMs`.
 *
 * Tested on Node with fakes of the client and SecureSocket (test/device/mqtt-419.test.ts,
 * test/device/legacy-tls-socket.test.ts); run in the Linux simulator against the local cloud (docs).
 */
import MQTTClient from "embedded:network/mqtt/client";
import Timer from "timer";
import type { MqttTransport, MqttTransportEvents } from "../ports/mqtt-transport";
import { backoffDelay, type RandomSource } from "../core/backoff";
import { ShadowOtaError } from "../core/errors";
import { utf8Encode } from "../core/utf8";
import type { Log } from "../ports/log";
import { LegacyTlsSocket } from "./legacy-tls-socket";
import { mqttSecureOptions } from "./mqtt-tls";

/** MQTT control packet types (MQTT 3.1.1 §2.2.1), as the client's static members number them. */
export const MQTT_OP = { CONNACK: 2, PUBLISH: 3, PUBACK: 4, SUBSCRIBE: 8, SUBACK: 9 } as const;
/** SUBACK return code for a refused subscription (MQTT 3.1.1 §3.9.3). */
const SUBACK_FAILURE = 0x80;

/** What onControl receives (mqttclient.js `#parsed`: the parse record without length/flags/state). */
export interface ControlMessage {
  operation: number;
  id?: number;
  /** SUBACK: the granted QoS (or 0x80) per topic, in the order of the SUBSCRIBE. */
  payload?: number[];
  /** CONNACK: the return code (0 = accepted; the client closes on any other before calling onControl). */
  returnCode?: number;
}

/** The options of one PUBLISH fragment delivered to onReadable. The first carries topic and byteLength. */
export interface ReadableOptions {
  more: boolean;
  topic?: string;
  byteLength?: number;
  QoS?: number;
}

/** The client as this adapter uses it (declared here because the SDK's typings give onControl two
 *  parameters where the source passes one, and do not allow `write(null, …)`). */
export interface Mqtt419Client {
  read(into: ArrayBufferView): number;
  write(data: ArrayBufferView | ArrayBuffer | null, options: Record<string, unknown>): number;
  close(): void;
}
export interface Mqtt419ClientOptions {
  host: string;
  port: number;
  id: string;
  clean: boolean;
  keepalive: number;
  user?: string;
  password?: string;
  dns: { io: new (options: object) => object } & Record<string, unknown>;
  socket: { io: new (options: never) => object } & Record<string, unknown>;
  onControl(this: Mqtt419Client, msg: ControlMessage): void;
  onReadable(this: Mqtt419Client, count: number, options: ReadableOptions): void;
  onWritable(this: Mqtt419Client, count: number): void;
  onError(this: Mqtt419Client, error?: unknown): void;
}
type Mqtt419ClientClass = new (options: Mqtt419ClientOptions) => Mqtt419Client;

/**
 * The client's `dns.io`: resolves nothing — it passes the host name on as the "address", from a later turn
 * as a resolver would, because the legacy socket under LegacyTlsSocket resolves names itself. The adapter
 * cancels a pending resolution when it drops the client (the client's close() does not, and a late
 * `onResolved` on a closed client throws inside it).
 */
export class HostNameResolver {
  #timer: Timer | undefined;
  #cancelled = false;

  constructor(options: { register?: (resolver: HostNameResolver) => void }) {
    options.register?.(this);
  }

  resolve(request: { host: string; onResolved(host: string, address: string): void; onError(): void }): void {
    this.#timer = Timer.set(() => {
      this.#timer = undefined;
      if (!this.#cancelled) request.onResolved(request.host, request.host);
    }, 0);
  }

  cancel(): void {
    this.#cancelled = true;
    if (this.#timer !== undefined) Timer.clear(this.#timer);
    this.#timer = undefined;
  }
}

export interface Mqtt419Options {
  host: string;
  port: number;
  clientId: string;
  /** DER bytes of the CA the server certificate must chain to (pinned); a `Resource` works as is. */
  ca: ByteBuffer;
  clientCertificate?: ByteBuffer;
  clientKey?: ByteBuffer;
  user?: string;
  password?: string;
  keepaliveMs?: number;
  alpn?: string;
  /** Reconnect delays (src/core/backoff.ts), default 1 s .. 60 s; a session's first SUBACK or PUBACK resets
   *  the count (a CONNACK alone does not). */
  backoff?: { initialMs: number; maxMs: number };
  random?: RandomSource;
  /** Largest PUBLISH payload accepted (default 32 KiB); a larger one ends the session. */
  maxMessageBytes?: number;
  /** Acknowledgements awaited at once (default 16); a publish or subscribe beyond that is refused. */
  maxInFlight?: number;
  /** How long a SUBACK or PUBACK is awaited (default 10 s) before the session is taken as broken. */
  ackTimeoutMs?: number;
  /** Where `mqtt.ack-timeout` (warn) is logged; default none. */
  log?: Log;
  /** Tests: the client class and the socket class (defaults: the SDK's client, LegacyTlsSocket). */
  Client?: Mqtt419ClientClass;
  Socket?: new (options: never) => object;
}

const DEFAULT_BACKOFF = { initialMs: 1_000, maxMs: 60_000 };
/** As src/node/mqtt-node.ts's ackTimeoutMs default. */
export const DEFAULT_ACK_TIMEOUT_MS = 10_000;

interface Pending {
  kind: "PUBACK" | "SUBACK";
  resolve(): void;
  reject(e: Error): void;
  timer: Timer | undefined;
}

interface Incoming {
  topic: string;
  bytes: Uint8Array;
  at: number;
  /** An empty PUBLISH the socket padded with one byte: delivered with no payload. */
  padded: boolean;
}

export class Mqtt419Transport implements MqttTransport {
  #options: Mqtt419Options;
  #handlers: MqttTransportEvents | undefined;
  #client: Mqtt419Client | undefined;
  #resolver: HostNameResolver | undefined;
  #ready = false;
  #closed = false;
  #attempt = 0;
  #timer: Timer | undefined;
  #nextId = 0;
  #pending = new Map<number, Pending>();
  #incoming: Incoming | undefined;
  /** Of the current client's socket, one entry per inbound PUBLISH not delivered yet: padded or not. */
  #framed: boolean[] = [];

  constructor(options: Mqtt419Options) {
    const ack = options.ackTimeoutMs;
    if (ack !== undefined && !(Number.isFinite(ack) && ack > 0)) throw new RangeError(`ackTimeoutMs must be a positive number of ms, not ${String(ack)}`);
    this.#options = options;
  }

  setHandlers(handlers: MqttTransportEvents): void {
    this.#handlers = handlers;
  }

  start(): void {
    if (!this.#handlers) throw new TypeError("setHandlers before start");
    this.#connect();
  }

  #connect(): void {
    const o = this.#options;
    const secure = mqttSecureOptions(o);
    const Client = o.Client ?? (MQTTClient as unknown as Mqtt419ClientClass);
    const self = this;
    let client: Mqtt419Client | undefined;
    const options: Mqtt419ClientOptions = {
      host: o.host, port: o.port, id: o.clientId, clean: true, keepalive: o.keepaliveMs ?? 60_000,
      dns: { io: HostNameResolver as unknown as new (options: object) => object, register: (r: HostNameResolver) => { this.#resolver = r; } },
      socket: {
        io: (o.Socket ?? LegacyTlsSocket) as new (options: never) => object, secure,
        // The client's parser stalls on an empty PUBLISH: the socket pads it (src/device/legacy-tls-socket.ts).
        onPublishFramed: (padded: boolean) => { if (client !== undefined && client === self.#client) self.#framed.push(padded); },
      },
      onControl(msg) { if (client === self.#client) self.#control(msg); },
      onReadable(count, readable) { if (client === self.#client) self.#readable(this, count, readable); },
      onWritable() {},
      onError() { if (client !== undefined && client === self.#client) self.#ended(undefined); },
    };
    if (o.user !== undefined) options.user = o.user;
    if (o.password !== undefined) options.password = o.password;
    try {
      client = new Client(options);
    } catch (e) {
      // Only without a host (the client checks it first); reported from a later turn like every disconnect.
      const reason = new ShadowOtaError("SYNC_TRANSPORT", "connect failed", { cause: e });
      this.#timer = Timer.set(() => {
        this.#timer = undefined;
        this.#handlers!.disconnected(reason);
        if (!this.#closed) this.#scheduleReconnect();
      }, 0);
      return;
    }
    this.#client = client;
  }

  #control(msg: ControlMessage): void {
    if (msg.operation === MQTT_OP.CONNACK) {
      this.#ready = true;
      this.#handlers!.connected();
      return;
    }
    if (msg.operation !== MQTT_OP.PUBACK && msg.operation !== MQTT_OP.SUBACK) return;
    const id = msg.id ?? -1;
    const p = this.#pending.get(id);
    const kind = msg.operation === MQTT_OP.PUBACK ? "PUBACK" : "SUBACK";
    if (p === undefined || p.kind !== kind) return; // not ours, or already settled by a disconnect
    this.#pending.delete(id);
    if (p.timer !== undefined) Timer.clear(p.timer);
    // The broker answers: this session works, so the next reconnect starts the backoff afresh.
    this.#attempt = 0;
    if (kind === "SUBACK" && (msg.payload ?? []).some((granted) => granted === SUBACK_FAILURE)) {
      p.reject(new ShadowOtaError("SYNC_TRANSPORT", "subscription refused by the broker (SUBACK 0x80)", { detail: { granted: (msg.payload ?? []).join(",") } }));
    } else {
      p.resolve();
    }
  }

  #readable(client: Mqtt419Client, count: number, options: ReadableOptions): void {
    const max = this.#options.maxMessageBytes ?? 32 * 1024;
    if (options.topic !== undefined) {
      const size = options.byteLength ?? count;
      const padded = this.#framed.shift() === true;
      if (padded && size !== 1) {
        // The socket padded an empty PUBLISH to one byte; anything else means the two lost step.
        this.#ended(new ShadowOtaError("SYNC_TRANSPORT", `PUBLISH on ${options.topic} of ${size} bytes where the socket padded an empty one`));
        return;
      }
      if (size > max) {
        // Drop the client first so nothing more is delivered from it, then say why.
        this.#ended(new ShadowOtaError("SYNC_TRANSPORT", `PUBLISH of ${size} bytes on ${options.topic} is over the ${max}-byte limit`));
        return;
      }
      this.#incoming = { topic: options.topic, bytes: new Uint8Array(size), at: 0, padded };
    }
    const m = this.#incoming;
    if (m === undefined || m.at + count > m.bytes.byteLength) {
      this.#ended(new ShadowOtaError("SYNC_TRANSPORT", "PUBLISH fragment without its start or past its announced length"));
      return;
    }
    m.at += client.read(m.bytes.subarray(m.at, m.at + count));
    if (!options.more) {
      this.#incoming = undefined;
      const payload = m.padded ? new Uint8Array(0) : m.at === m.bytes.byteLength ? m.bytes : m.bytes.subarray(0, m.at);
      this.#handlers!.message(m.topic, payload);
    }
  }

  /** No acknowledgement of packet `id` within ackTimeoutMs: the session is taken as broken and ended. */
  #ackTimedOut(id: number, p: Pending, ms: number): void {
    p.timer = undefined;
    if (this.#pending.get(id) !== p) return;
    this.#options.log?.log("warn", "mqtt.ack-timeout", { what: p.kind, id, ms });
    this.#ended(new ShadowOtaError("SYNC_TRANSPORT", `no ${p.kind} for packet ${id} within ${ms} ms`, { detail: { ackTimeoutMs: ms } }));
  }

  /** The session ended (the client's onError, or a reason of ours): drop the client, settle, reconnect. */
  #ended(reason: ShadowOtaError | undefined): void {
    const client = this.#client;
    const wasReady = this.#ready;
    this.#drop();
    if (reason !== undefined) {
      try { client?.close(); } catch (e) { reason = new ShadowOtaError("SYNC_TRANSPORT", reason.message, { cause: e }); }
    }
    const why = reason ?? new ShadowOtaError("SYNC_TRANSPORT", wasReady ? "connection lost" : "connect failed");
    this.#rejectPending(why);
    this.#handlers!.disconnected(why);
    if (!this.#closed) this.#scheduleReconnect();
  }

  #drop(): void {
    this.#client = undefined;
    this.#ready = false;
    this.#incoming = undefined;
    this.#framed = [];
    this.#resolver?.cancel();
    this.#resolver = undefined;
  }

  #rejectPending(reason: Error): void {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) if (p.timer !== undefined) { Timer.clear(p.timer); p.timer = undefined; }
    for (const p of pending) p.reject(new ShadowOtaError("SYNC_TRANSPORT", `${p.kind} not received: ${reason.message}`, { cause: reason }));
  }

  #scheduleReconnect(): void {
    // A session that ended before any acknowledgement counts as a failed attempt (see the header).
    const delay = backoffDelay(this.#attempt++, this.#options.backoff ?? DEFAULT_BACKOFF, this.#options.random ?? Math.random);
    this.#timer = Timer.set(() => { this.#timer = undefined; if (!this.#closed) this.#connect(); }, delay);
  }

  /** A packet id not awaited now (1..65535). */
  #packetId(): number {
    for (;;) {
      this.#nextId = this.#nextId >= 65_535 ? 1 : this.#nextId + 1;
      if (!this.#pending.has(this.#nextId)) return this.#nextId;
    }
  }

  #send(kind: Pending["kind"], data: Uint8Array | null, options: Record<string, unknown>): Promise<void> {
    try {
      const c = this.#live();
      if (this.#pending.size >= (this.#options.maxInFlight ?? 16)) {
        throw new ShadowOtaError("SYNC_TRANSPORT", `${this.#pending.size} acknowledgements already awaited`);
      }
      const id = this.#packetId();
      c.write(data, { ...options, id });
      if (kind === "PUBACK" && options.QoS === 0) return Promise.resolve();
      const ms = this.#options.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS;
      return new Promise<void>((resolve, reject) => {
        const p: Pending = { kind, resolve, reject, timer: undefined };
        p.timer = Timer.set(() => this.#ackTimedOut(id, p, ms), ms);
        this.#pending.set(id, p);
      });
    } catch (e) {
      return Promise.reject(e instanceof ShadowOtaError ? e
        : new ShadowOtaError("SYNC_TRANSPORT", kind === "SUBACK" ? "subscribe failed" : "publish failed", { cause: e }));
    }
  }

  subscribe(topics: readonly string[]): Promise<void> {
    if (topics.length === 0) return Promise.resolve();
    return this.#send("SUBACK", null, { operation: MQTT_OP.SUBSCRIBE, items: topics.map((topic) => ({ topic, QoS: 1 })) });
  }

  publish(topic: string, payload: string | Uint8Array, qos: 0 | 1 = 1): Promise<void> {
    const data = typeof payload === "string" ? utf8Encode(payload) : payload;
    return this.#send("PUBACK", data, { topic, QoS: qos });
  }

  #live(): Mqtt419Client {
    if (!this.#client || !this.#ready) throw new ShadowOtaError("SYNC_NOT_CONNECTED", "MQTT session is down");
    return this.#client;
  }

  close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) { Timer.clear(this.#timer); this.#timer = undefined; }
    const c = this.#client;
    this.#drop();
    this.#rejectPending(new ShadowOtaError("SYNC_TRANSPORT", "transport closed"));
    // No DISCONNECT packet: the app sets no will, so closing the socket loses nothing (the legacy client's
    // close sends one; the ECMA-419 client's does not).
    if (c) c.close();
    return Promise.resolve();
  }
}
