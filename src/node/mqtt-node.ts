/**
 * MqttTransport (src/ports/mqtt-transport.ts) over mqtt.js v5: MQTT 3.1.1 over TLS with a client
 * certificate, clean session, keepalive, and reconnect with the project's one backoff policy
 * (src/core/backoff.ts: capped exponential backoff with full jitter).
 *
 * Like the Moddable adapter, it builds a new mqtt.js client for every attempt (mqtt.js's own reconnect is
 * off: its period is fixed, and its resubscribe and offline queue would hide from the core what the
 * contract says the core must redo). Per the contract:
 * - `connected` fires once per CONNACK; `disconnected(reason)` fires once per ended attempt (a refused or
 *   failed connect as well as a lost session) with a ShadowOtaError SYNC_TRANSPORT whose `cause` is what
 *   mqtt.js or TLS reported. Nothing fires after `close()`.
 * - `publish`/`subscribe` reject with SYNC_NOT_CONNECTED while no session is up and with SYNC_TRANSPORT
 *   when mqtt.js fails them, the broker refuses a subscription (SUBACK 0x80), or the session ends before
 *   the acknowledgement; they never throw synchronously. A SUBACK or PUBACK missing for `ackTimeoutMs` ends
 *   the session (MQTT 3.1.1 resends only on a new connection), which rejects them with SYNC_TRANSPORT.
 * - Messages arrive as whole payloads in plain Uint8Array copies.
 * - TCP_NODELAY is set on every connection (Nagle's algorithm would hold each small publish back until the
 *   broker's delayed ACK: ~40 ms per request/response round trip on loopback).
 * - Storms: the first connect may wait a random `startJitterMs`; reconnects wait the backoff's full jitter;
 *   a reconnect offers the last TLS session ticket, so the broker resumes instead of signing again; and an
 *   attempt's connect timeout doubles with every attempt in a row that got no CONNACK, up to
 *   `maxConnectTimeoutMs` (connectTimeoutFor), so a cloud too slow to finish handshakes within the first
 *   timeout is not hit by a retry storm of attempts it has paid for and the device has abandoned.
 * - The reconnect backoff is reset by a session's first acknowledgement (a SUBACK, or a QoS 1 PUBLISH's
 *   PUBACK), not by its CONNACK, as in the ECMA-419 adapter (src/device/mqtt-419.ts): a broker that accepts
 *   the connection but never answers the subscribe and get the core sends on `connected` (or drops the
 *   connection at them) is retried at growing waits instead of every `initialMs`.
 *
 * Not here: queueing while offline, persistent sessions, MQTT 5, WebSocket transport.
 */
import mqtt from "mqtt";
import type { IClientOptions, MqttClient } from "mqtt";

import { backoffDelay, type RandomSource } from "../core/backoff";
import { ShadowOtaError } from "../core/errors";
import type { Log } from "../ports/log";
import { silentLog } from "../ports/log";
import type { MqttTransport, MqttTransportEvents } from "../ports/mqtt-transport";

export interface NodeMqttOptions {
  host: string;
  port: number;
  clientId: string;
  /** PEM of the CA the server certificate must chain to. */
  ca: string | Uint8Array;
  /** Client certificate and key (PEM) for mutual TLS; omit for username/password (Azure SAS). */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  username?: string;
  password?: string;
  /** Asked before every connection attempt, wins over username/password (Azure SAS: a fresh token each
   *  time, src/core/sas-token.ts). With `renewInMs` the session is ended that long after its CONNACK, so the
   *  next attempt brings a new token before the broker would drop the old one at its expiry. */
  credentials?: () => { username: string; password: string; renewInMs?: number };
  /** TLS server name to verify and send as SNI (default: `host`; not sent for an IP address). */
  servername?: string;
  /** ALPN protocols to offer, e.g. ["x-amzn-mqtt-ca"] for AWS IoT on port 443. */
  alpn?: string[];
  /** Keepalive in seconds (default 60; AWS allows 30..1200, Azure up to 1177). */
  keepaliveSec?: number;
  /** How long one attempt may take from TCP connect to CONNACK, when the last attempt got its CONNACK
   *  (default 10 s); doubled for each attempt in a row since that got none, up to maxConnectTimeoutMs. */
  connectTimeoutMs?: number;
  /** The longest an attempt may wait for its CONNACK after failed attempts (default 60 s; at least
   *  connectTimeoutMs). */
  maxConnectTimeoutMs?: number;
  /** How long a SUBACK or PUBACK may take (default 10 s). MQTT 3.1.1 resends an unacknowledged packet only
   *  on a new connection, so a missing acknowledgement ends the session (the core then subscribes and gets
   *  again on the next one); without this a lost SUBACK or PUBACK held every later publish back forever. */
  ackTimeoutMs?: number;
  /** Reconnect delays (src/core/backoff.ts): after n failed attempts in a row the next one waits a random
   *  time in [0, min(maxMs, initialMs * 2^n)]. An attempt counts as failed unless its session got an
   *  acknowledgement (SUBACK or PUBACK): that resets n, a CONNACK alone does not. Default 1 s .. 60 s. */
  backoff?: { initialMs: number; maxMs: number };
  /** The first connect waits a random time in [0, startJitterMs] (default 0), so a fleet powered on at once
   *  does not reach the broker in the same instant; reconnects are spread by the backoff's full jitter. */
  startJitterMs?: number;
  /** Resume the TLS session of the last connection on the next one (default true): a reconnect then costs
   *  the server no RSA signature. The session is kept in memory only. */
  resumeTls?: boolean;
  /** Random source for the jitter, values in [0, 1) (default Math.random). */
  random?: RandomSource;
  log?: Log;
}

/** One mqtt.js client = one connection attempt and, if it gets a CONNACK, one session. */
interface Attempt {
  readonly client: MqttClient;
  ready: boolean;
  /** The broker has acknowledged a SUBSCRIBE or PUBLISH of this session (the backoff was reset). */
  acked: boolean;
  ended: boolean;
  lastError: Error | undefined;
  /** Rejecters of publishes/subscribes waiting for their acknowledgement. */
  readonly pending: Set<(e: Error) => void>;
  /** Ends the session when its SAS token is due for renewal (credentials().renewInMs). */
  renewTimer?: ReturnType<typeof setTimeout>;
}

const DEFAULT_BACKOFF = { initialMs: 1_000, maxMs: 60_000 };
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_CONNECT_TIMEOUT_MS = 60_000;

/**
 * The connect timeout of an attempt after `failedInARow` attempts without a CONNACK: `baseMs * 2^n`,
 * capped at `maxMs` (and never below `baseMs`). A slow cloud (a connection storm, a loaded broker) then gets
 * the time it needs instead of an attempt abandoned — and begun again — every `baseMs`.
 */
export function connectTimeoutFor(failedInARow: number, baseMs: number, maxMs: number): number {
  const n = Math.min(Math.max(Math.floor(failedInARow), 0), 30);
  return Math.max(baseMs, Math.min(maxMs, baseMs * 2 ** n));
}

export class NodeMqttTransport implements MqttTransport {
  readonly #o: NodeMqttOptions;
  readonly #log: Log;
  #handlers: MqttTransportEvents | undefined;
  #attempt: Attempt | undefined;
  /** Attempts in a row whose session got no SUBACK or PUBACK (the reconnect backoff's step). */
  #failures = 0;
  /** Attempts in a row that ended without a CONNACK (a CONNACK resets it; sets the connect timeout). */
  #connectFailures = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #started = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** The last TLS session the server gave (a ticket), offered on the next connect. */
  #tlsSession: Buffer | undefined;
  #resumed = 0;

  constructor(options: NodeMqttOptions) {
    this.#o = options;
    this.#log = options.log ?? silentLog;
  }

  setHandlers(handlers: MqttTransportEvents): void {
    if (this.#handlers !== undefined) throw new TypeError("setHandlers called twice");
    this.#handlers = handlers;
  }

  start(): void {
    if (this.#handlers === undefined) throw new TypeError("setHandlers before start");
    if (this.#started || this.#closed) return;
    this.#started = true;
    const jitter = this.#o.startJitterMs ?? 0;
    if (jitter <= 0) { this.#connect(); return; }
    const delay = backoffDelay(0, { initialMs: jitter, maxMs: jitter }, this.#o.random ?? Math.random);
    this.#log.log("debug", "mqtt.first-connect-scheduled", { delayMs: delay });
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#closed) this.#connect();
    }, delay);
  }

  /** TLS sessions resumed by the server so far (a reconnect that cost it no RSA signature). */
  get resumedSessions(): number {
    return this.#resumed;
  }

  /** True while a session is up (CONNACK received, not yet closed). */
  get isConnected(): boolean {
    return this.#attempt?.ready === true;
  }

  #connect(): void {
    const o = this.#o;
    const baseTimeout = o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const connectTimeout = connectTimeoutFor(this.#connectFailures, baseTimeout, o.maxConnectTimeoutMs ?? Math.max(baseTimeout, DEFAULT_MAX_CONNECT_TIMEOUT_MS));
    this.#log.log("debug", "mqtt.connecting", { timeoutMs: connectTimeout, failedInARow: this.#connectFailures });
    const opts: IClientOptions = {
      protocol: "mqtts",
      host: o.host,
      port: o.port,
      clientId: o.clientId,
      protocolVersion: 4,
      clean: true,
      keepalive: o.keepaliveSec ?? 60,
      connectTimeout,
      reconnectPeriod: 0,
      resubscribe: false,
      queueQoSZero: false,
      rejectUnauthorized: true,
      ca: toPem(o.ca),
    };
    if (o.cert !== undefined) opts.cert = toPem(o.cert);
    if (o.key !== undefined) opts.key = toPem(o.key);
    if (o.username !== undefined) opts.username = o.username;
    if (o.password !== undefined) opts.password = o.password;
    const cred = o.credentials?.();
    if (cred !== undefined) { opts.username = cred.username; opts.password = cred.password; }
    if (o.servername !== undefined) opts.servername = o.servername;
    if (o.alpn !== undefined) opts.ALPNProtocols = o.alpn;
    const resume = o.resumeTls !== false;
    if (resume && this.#tlsSession !== undefined) (opts as IClientOptions & { session?: Buffer }).session = this.#tlsSession;

    let client: MqttClient;
    try {
      client = mqtt.connect(opts);
    } catch (cause) {
      // mqtt.js validates options synchronously; treat that like a failed attempt so backoff applies, and
      // report it from a later turn, never from inside start().
      setTimeout(() => {
        if (this.#closed) return;
        this.#emitDisconnected(new ShadowOtaError("SYNC_TRANSPORT", `connect failed: ${messageOf(cause)}`, { cause }));
        this.#scheduleReconnect();
      }, 0);
      return;
    }
    // Nagle's algorithm off: a report is one small TLS record written while the previous one may still be
    // unacknowledged, and the peer delays its ACK (~40 ms on Linux), so Nagle would hold every report back
    // that long. mqtt.js builds the socket synchronously; set before it connects, Node applies it on connect.
    const stream = client.stream as unknown as { setNoDelay?(on: boolean): unknown; isSessionReused?(): boolean; on?(event: string, f: (...a: unknown[]) => void): unknown } | undefined;
    stream?.setNoDelay?.(true);
    if (resume) {
      stream?.on?.("session", (session) => { if (Buffer.isBuffer(session)) this.#tlsSession = session; });
      stream?.on?.("secureConnect", () => { if (stream.isSessionReused?.() === true) this.#resumed++; });
    }
    const a: Attempt = { client, ready: false, acked: false, ended: false, lastError: undefined, pending: new Set() };
    this.#attempt = a;

    client.on("connect", () => {
      if (a.ended || this.#closed || this.#attempt !== a) return;
      a.ready = true;
      // Not #failures: a CONNACK alone does not show the session works (#acknowledged resets it).
      this.#connectFailures = 0;
      this.#log.log("info", "mqtt.connected", { host: o.host, port: o.port, clientId: o.clientId });
      if (cred?.renewInMs !== undefined) {
        a.renewTimer = setTimeout(() => {
          this.#log.log("info", "mqtt.credentials-renew", { clientId: o.clientId });
          this.#failures = 0;
          a.lastError = new Error("reconnecting with renewed credentials");
          this.#ended(a);
        }, Math.max(0, Math.min(cred.renewInMs, 2 ** 31 - 1)));
      }
      this.#call(() => this.#handlers!.connected());
    });
    client.on("message", (topic, payload) => {
      if (a.ended || this.#closed || !a.ready) return;
      const bytes = new Uint8Array(payload.byteLength);
      bytes.set(payload);
      this.#call(() => this.#handlers!.message(topic, bytes));
    });
    client.on("error", (err) => {
      a.lastError = err;
      this.#log.log("debug", "mqtt.error", { message: err.message });
    });
    client.on("close", () => this.#ended(a));
  }

  /** An attempt's connection is gone: fail what waits on it, tell the core, plan the next attempt. */
  #ended(a: Attempt): void {
    if (a.ended) return;
    a.ended = true;
    if (a.renewTimer !== undefined) clearTimeout(a.renewTimer);
    const wasReady = a.ready;
    a.ready = false;
    const what = wasReady ? "connection lost" : "connect failed";
    if (!wasReady) this.#connectFailures++;
    const reason = new ShadowOtaError("SYNC_TRANSPORT", a.lastError ? `${what}: ${a.lastError.message}` : what,
      a.lastError ? { cause: a.lastError } : {});
    for (const reject of a.pending) reject(new ShadowOtaError("SYNC_TRANSPORT", `${what} before the acknowledgement`, { cause: reason }));
    a.pending.clear();
    a.client.end(true); // releases mqtt.js's stores and timers; the socket is already gone
    if (this.#attempt === a) this.#attempt = undefined;
    if (this.#closed) return;
    this.#log.log("info", "mqtt.disconnected", { reason: reason.message });
    this.#emitDisconnected(reason);
    this.#scheduleReconnect();
  }

  /** The broker answered a SUBSCRIBE or PUBLISH of `a`: the session works, so the next reconnect starts the
   *  backoff afresh. Once per session; not for an attempt already ended. */
  #acknowledged(a: Attempt, what: string): void {
    if (a.acked || a.ended || this.#attempt !== a) return;
    a.acked = true;
    if (this.#failures !== 0) this.#log.log("debug", "mqtt.backoff-reset", { by: what, failures: this.#failures });
    this.#failures = 0;
  }

  #emitDisconnected(reason: Error): void {
    this.#call(() => this.#handlers!.disconnected(reason));
  }

  #scheduleReconnect(): void {
    if (this.#closed) return;
    const failures = this.#failures++;
    const delay = backoffDelay(failures, this.#o.backoff ?? DEFAULT_BACKOFF, this.#o.random ?? Math.random);
    this.#log.log("debug", "mqtt.reconnect-scheduled", { delayMs: delay, failures });
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#closed) this.#connect();
    }, delay);
  }

  /** Runs a handler; an exception in the core's handler is logged, not thrown into mqtt.js's emitter. */
  #call(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.#log.log("error", "mqtt.handler-threw", { message: messageOf(e) });
    }
  }

  /** Ends the attempt when `what` has not been acknowledged within ackTimeoutMs; returns the timer to clear. */
  #ackTimer(a: Attempt, reject: (e: Error) => void, what: string): ReturnType<typeof setTimeout> {
    const ms = this.#o.ackTimeoutMs ?? 10_000;
    return setTimeout(() => {
      if (!a.pending.has(reject) || a.ended) return;
      a.lastError = new Error(`no ${what} within ${ms} ms`);
      this.#log.log("warn", "mqtt.ack-timeout", { what, ms });
      a.client.stream?.destroy(); // "close" follows: #ended fails what waits and plans the next attempt
    }, ms);
  }

  #live(): Attempt | ShadowOtaError {
    const a = this.#attempt;
    if (this.#closed || a === undefined || !a.ready || a.ended) return new ShadowOtaError("SYNC_NOT_CONNECTED", "MQTT session is down");
    return a;
  }

  subscribe(topics: readonly string[]): Promise<void> {
    const a = this.#live();
    if (a instanceof ShadowOtaError) return Promise.reject(a);
    if (topics.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      a.pending.add(reject);
      const timer = this.#ackTimer(a, reject, "SUBACK");
      try {
        const list = topics.slice();
        a.client.subscribe(list, { qos: 1 }, (err, _grants, suback) => {
          clearTimeout(timer);
          if (!a.pending.delete(reject)) return; // already failed by the session's end
          // On a SUBACK failure the SUBACK's `granted` holds one return code per filter, in SUBSCRIBE order.
          const codes = (suback as { granted?: unknown } | undefined)?.granted;
          // A SUBACK, granting or refusing, is the broker answering; an error without one is not.
          if (!err || Array.isArray(codes)) this.#acknowledged(a, "SUBACK");
          if (err) {
            const refused = Array.isArray(codes) ? list.filter((_, i) => typeof codes[i] === "number" && (codes[i] & 0x80) !== 0) : [];
            reject(new ShadowOtaError("SYNC_TRANSPORT", refused.length > 0 ? `subscription refused: ${refused.join(", ")}` : `subscribe failed: ${err.message}`,
              refused.length > 0 ? { cause: err, detail: { refused: refused.join(" ") } } : { cause: err }));
          } else resolve();
        });
      } catch (cause) {
        clearTimeout(timer);
        a.pending.delete(reject);
        reject(new ShadowOtaError("SYNC_TRANSPORT", `subscribe failed: ${messageOf(cause)}`, { cause }));
      }
    });
  }

  publish(topic: string, payload: string | Uint8Array, qos: 0 | 1 = 1): Promise<void> {
    const a = this.#live();
    if (a instanceof ShadowOtaError) return Promise.reject(a);
    return new Promise<void>((resolve, reject) => {
      a.pending.add(reject);
      const timer = this.#ackTimer(a, reject, qos === 1 ? "PUBACK" : "write of a QoS 0 PUBLISH");
      try {
        const body = typeof payload === "string" ? Buffer.from(payload, "utf8") : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
        a.client.publish(topic, body, { qos, retain: false }, (err) => {
          clearTimeout(timer);
          if (!a.pending.delete(reject)) return;
          if (err) reject(new ShadowOtaError("SYNC_TRANSPORT", `publish failed: ${err.message}`, { cause: err }));
          else {
            // QoS 0 completes on the write: only a PUBACK is an answer from the broker.
            if (qos === 1) this.#acknowledged(a, "PUBACK");
            resolve();
          }
        });
      } catch (cause) {
        clearTimeout(timer);
        a.pending.delete(reject);
        reject(new ShadowOtaError("SYNC_TRANSPORT", `publish failed: ${messageOf(cause)}`, { cause }));
      }
    });
  }

  /** Closes for good: no reconnect and no events afterwards; pending requests reject SYNC_NOT_CONNECTED. */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#closed = true;
      if (this.#timer !== undefined) { clearTimeout(this.#timer); this.#timer = undefined; }
      const a = this.#attempt;
      this.#attempt = undefined;
      if (a === undefined) return resolve();
      for (const reject of a.pending) reject(new ShadowOtaError("SYNC_NOT_CONNECTED", "transport closed"));
      a.pending.clear();
      if (a.renewTimer !== undefined) clearTimeout(a.renewTimer);
      // Forced when there is no session or mqtt.js still holds unacknowledged packets (it would wait for them).
      const force = !a.ready || Object.keys(a.client.outgoing).length > 0;
      a.ended = true;
      a.ready = false;
      // A graceful DISCONNECT when the session is up (no will is published); bounded in case the socket is
      // stuck, after which the stream is destroyed.
      const guard = setTimeout(() => { a.client.stream?.destroy(); resolve(); }, 2_000);
      a.client.end(force, () => { clearTimeout(guard); resolve(); });
    });
    return this.#closing;
  }
}

function toPem(v: string | Uint8Array): string | Buffer {
  return typeof v === "string" ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
