/**
 * MqttTransport (src/ports/mqtt-transport.ts) over the Moddable SDK's legacy "mqtt" client and SecureSocket
 * (JavaScript TLS 1.2 with a pinned CA and a client certificate).
 *
 * The SDK client never reconnects and has no acknowledgements, so this adapter builds a new client after
 * every close, with capped exponential backoff and jitter, and resolves publish/subscribe as soon as the
 * bytes are queued (QoS 0). What is lost that way is recovered by the core: it re-gets the document on every
 * `connected`, and reports are retried on timeout.
 *
 * Not tested in CI (needs the SDK); the Node adapter src/node/mqtt-node.ts has the same contract and is.
 */
import Client from "mqtt";
import SecureSocket from "securesocket";
import Timer from "timer";
import type { MqttTransport, MqttTransportEvents } from "../ports/mqtt-transport";
import { ShadowOtaError } from "../core/errors";

export interface ModdableMqttOptions {
  host: string;
  port: number;
  clientId: string;
  /** DER bytes of the CA the server certificate must chain to (pinned). */
  ca: ArrayBuffer;
  /** DER client certificate and PKCS#8 DER key for mutual TLS (AWS IoT); omit for SAS auth (Azure). */
  clientCertificate?: ArrayBuffer;
  clientKey?: ArrayBuffer;
  user?: string;
  password?: string;
  keepaliveMs?: number;
  /** ALPN, e.g. "x-amzn-mqtt-ca" for AWS IoT on port 443. */
  alpn?: string;
  backoff?: { initialMs: number; maxMs: number };
}

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
    const secure: Record<string, unknown> = { protocolVersion: 0x0303, certificate: o.ca, verify: true };
    if (o.clientCertificate && o.clientKey) {
      secure.clientCertificates = [o.clientCertificate];
      secure.clientKey = o.clientKey;
    }
    if (o.alpn) secure.applicationLayerProtocolNegotiation = [o.alpn];
    const client = new Client({
      host: o.host, port: o.port, id: o.clientId, user: o.user, password: o.password,
      timeout: o.keepaliveMs ?? 60_000, Socket: SecureSocket, secure,
    });
    this.#client = client;
    client.onReady = () => {
      this.#ready = true;
      this.#attempt = 0;
      this.#handlers!.connected();
    };
    client.onMessage = (topic, body) => this.#handlers!.message(topic, new Uint8Array(body));
    client.onClose = () => {
      const wasReady = this.#ready;
      this.#ready = false;
      this.#client = undefined;
      this.#handlers!.disconnected(new ShadowOtaError("SYNC_TRANSPORT", wasReady ? "connection lost" : "connect failed"));
      if (!this.#closed) this.#scheduleReconnect();
    };
  }

  #scheduleReconnect(): void {
    const b = this.#options.backoff ?? { initialMs: 1_000, maxMs: 60_000 };
    const base = Math.min(b.maxMs, b.initialMs * 2 ** Math.min(this.#attempt++, 16));
    const delay = base / 2 + Math.random() * (base / 2);
    this.#timer = Timer.set(() => { this.#timer = undefined; if (!this.#closed) this.#connect(); }, delay);
  }

  subscribe(topics: readonly string[]): Promise<void> {
    try {
      const c = this.#live();
      for (const t of topics) c.subscribe(t);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
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
