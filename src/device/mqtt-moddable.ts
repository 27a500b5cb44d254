/**
 * MqttTransport (src/ports/mqtt-transport.ts) over the Moddable SDK's legacy "mqtt" client
 * (modules/network/mqtt/mqtt.js) and SecureSocket (modules/crypt/securesocket: JavaScript TLS 1.2 with a
 * pinned CA and a client certificate).
 *
 * What the SDK client does, read from its source (SDK 8.2.3): QoS 0 only — SUBSCRIBE always asks for QoS 0
 * and PUBACK/SUBACK are parsed and dropped; no reconnect — after `onClose` the client is dead; `publish` and
 * `subscribe` throw while the session is not up; exceptions thrown by `onMessage` are swallowed by the
 * client. So this adapter builds a new client after every close, waiting as the project's one backoff
 * policy says (src/core/backoff.ts: capped exponential backoff with full jitter), and resolves
 * publish/subscribe as soon as the bytes are handed to the socket. What is lost that way is recovered by
 * the core: it re-gets the document on every `connected`, and reports time out.
 *
 * SecureSocket options used (modules/crypt/ssl/ssl_cert.js, session_original.js): `protocolVersion`
 * 0x0303, `certificate` (the pinned CA; with `verify: true` its validity dates are checked against the
 * clock when the socket is built, and the server's name against `host`), `clientCertificates` +
 * `clientKey` (PKCS#8 DER), `applicationLayerProtocolNegotiation`.
 *
 * Type-checked and compiled by mcconfig (see docs/moddable.md); never run against a broker in CI: its
 * reconnect is tested on Node with faked SDK modules (test/device/mqtt-moddable.test.ts). The Node adapter
 * has the same contract and is tested against the local cloud.
 */
import SdkClient, { type ClientOptions } from "mqtt";
import Timer from "timer";
import type { MqttTransport, MqttTransportEvents } from "../ports/mqtt-transport";
import { backoffDelay, type RandomSource } from "../core/backoff";
import { ShadowOtaError } from "../core/errors";
import { NoDelaySecureSocket } from "./no-delay-secure-socket";
import { mqttSecureOptions } from "./mqtt-tls";

/** The SDK parser's state "PUBLISH payload next" and MQTT's PUBLISH packet type (mqtt.js, SDK 8.2.3). */
const PARSE_PUBLISH_PAYLOAD = 0x36;
const MQTT_PUBLISH = 0x30;

/**
 * The SDK client with one workaround. Its parser (`received`) moves to the payload state of a QoS 0
 * PUBLISH only while bytes remain in the buffer it was given, so a PUBLISH with an EMPTY payload that ends
 * a TCP read is not delivered until the next bytes arrive. Azure IoT Hub answers every reported-properties
 * PATCH with exactly that ($iothub/twin/res/204/?$rid=…, no payload), and the report then times out
 * (seen in the Linux simulator against the local cloud). After each read this finishes such a packet the
 * way the SDK's own state 0x36/0x37 does: an empty ArrayBuffer payload, `dispatch`, parser reset. With a
 * fixed SDK the state is never left there and this does nothing.
 */
class Client extends SdkClient {
  override received(buffer: ArrayBuffer): void {
    super.received(buffer);
    const p = this.parse;
    if (p !== undefined && p.state === PARSE_PUBLISH_PAYLOAD && p.code === MQTT_PUBLISH && p.length === 0) {
      p.payload = new ArrayBuffer(0);
      this.parse = { state: 0 };
      this.dispatch(p);
    }
  }
}

// NoDelaySecureSocket (Nagle off on the ESP32) lives in its own module so that the ECMA-419 adapter can use it
// without loading the legacy client; re-exported here for the code and tests that import it from this file.
export { NoDelaySecureSocket } from "./no-delay-secure-socket";

export interface ModdableMqttOptions {
  host: string;
  port: number;
  clientId: string;
  /** DER bytes of the CA the server certificate must chain to (pinned); a `Resource` works as is. */
  ca: ByteBuffer;
  /** DER client certificate and PKCS#8 DER key for mutual TLS (AWS IoT, Azure X.509 devices). */
  clientCertificate?: ByteBuffer;
  clientKey?: ByteBuffer;
  user?: string;
  password?: string;
  keepaliveMs?: number;
  /** ALPN, e.g. "x-amzn-mqtt-ca" for AWS IoT on port 443. */
  alpn?: string;
  /** Reconnect delays (src/core/backoff.ts): after n failed attempts in a row the next one waits a random
   *  time in [0, min(maxMs, initialMs * 2^n)]; a CONNACK resets n. Default 1 s .. 60 s. */
  backoff?: { initialMs: number; maxMs: number };
  /** Random source for the jitter, values in [0, 1) (default Math.random: esp_random() on the ESP32). */
  random?: RandomSource;
}

const DEFAULT_BACKOFF = { initialMs: 1_000, maxMs: 60_000 };

export class ModdableMqttTransport implements MqttTransport {
  #options: ModdableMqttOptions;
  #handlers: MqttTransportEvents | undefined;
  #client: Client | undefined;
  #ready = false;
  #closed = false;
  #attempt = 0;
  #timer: unknown;

  constructor(options: ModdableMqttOptions) {
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
    const options: ClientOptions = {
      host: o.host, port: o.port, id: o.clientId,
      timeout: o.keepaliveMs ?? 60_000, Socket: NoDelaySecureSocket, secure,
    };
    if (o.user !== undefined) options.user = o.user;
    if (o.password !== undefined) options.password = o.password;
    let client: Client;
    try {
      // Throws synchronously when the CA is outside its validity dates (clock not set yet) or the socket
      // cannot be created: counted as a failed attempt, retried with backoff.
      client = new Client(options);
    } catch (e) {
      // Reported from a later turn, never from inside start(), like every other disconnect.
      const reason = new ShadowOtaError("SYNC_TRANSPORT", "connect failed", { cause: e });
      this.#timer = Timer.set(() => {
        this.#timer = undefined;
        this.#handlers!.disconnected(reason);
        if (!this.#closed) this.#scheduleReconnect();
      }, 0);
      return;
    }
    this.#client = client;
    client.onReady = () => {
      if (this.#client !== client) return;
      this.#ready = true;
      this.#attempt = 0;
      this.#handlers!.connected();
    };
    client.onMessage = (topic, body) => {
      if (this.#client === client) this.#handlers!.message(topic, new Uint8Array(body));
    };
    // The SDK calls onClose without a reason (it only traces "MQTT FAIL: …"), so the reason says what
    // this adapter knows: whether the session had been up.
    client.onClose = () => {
      if (this.#client !== client) return; // a client this adapter already dropped
      const wasReady = this.#ready;
      this.#ready = false;
      this.#client = undefined;
      this.#handlers!.disconnected(new ShadowOtaError("SYNC_TRANSPORT", wasReady ? "connection lost" : "connect failed"));
      if (!this.#closed) this.#scheduleReconnect();
    };
  }

  #scheduleReconnect(): void {
    const delay = backoffDelay(this.#attempt++, this.#options.backoff ?? DEFAULT_BACKOFF, this.#options.random ?? Math.random);
    this.#timer = Timer.set(() => { this.#timer = undefined; if (!this.#closed) this.#connect(); }, delay);
  }

  subscribe(topics: readonly string[]): Promise<void> {
    try {
      const c = this.#live();
      for (const t of topics) c.subscribe(t);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e instanceof ShadowOtaError ? e : new ShadowOtaError("SYNC_TRANSPORT", "subscribe failed", { cause: e }));
    }
  }

  publish(topic: string, payload: string | Uint8Array, _qos?: 0 | 1): Promise<void> {
    try {
      const c = this.#live();
      const data = typeof payload === "string" ? payload
        : (payload.buffer as ArrayBuffer).slice(payload.byteOffset, payload.byteOffset + payload.byteLength);
      c.publish(topic, data);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e instanceof ShadowOtaError ? e : new ShadowOtaError("SYNC_TRANSPORT", "publish failed", { cause: e }));
    }
  }

  #live(): Client {
    if (!this.#client || !this.#ready) throw new ShadowOtaError("SYNC_NOT_CONNECTED", "MQTT session is down");
    return this.#client;
  }

  close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) { Timer.clear(this.#timer as Timer); this.#timer = undefined; }
    const c = this.#client;
    this.#client = undefined;
    this.#ready = false;
    if (c) c.close();
    return Promise.resolve();
  }
}
