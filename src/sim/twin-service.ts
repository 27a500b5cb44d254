/**
 * The local cloud's Azure IoT Hub twin and direct-method service: an MQTT client that serves device twin
 * requests (GET, reported PATCH) through twin-engine.ts, stores twins (cloud-store.ts), and gives the
 * cloud side's admin API: getTwin, updateDesired (→ desired PATCH notification) and invokeMethod (→ the
 * device's reply, or 504 after the timeout, like IoT Hub's gateway timeout).
 *
 * Azure device topics carry no device id, so the service reaches devices two ways, both at once if needed:
 * - shared broker (`start(client)`): the broker rewrites each device's `$iothub/…` topics to
 *   `devices/{deviceId}/$iothub/…` both ways; the service subscribes TWIN_SHARED_SUBSCRIPTIONS and
 *   publishes scoped topics (twin-engine.ts scopeDeviceTopic/splitDeviceTopic).
 * - a dedicated broker per device (`attachDeviceLink(deviceId, client)`, for brokers that cannot rewrite,
 *   such as mosquitto): raw `$iothub/…` topics on that client are that device's.
 * A device with a link is reached through its link; any other device through the shared broker.
 *
 * Order of work per request: engine → store the record → publish. A device's requests (and admin patches
 * of its twin) run one at a time in arrival order, each once the previous one's record is durable;
 * different devices' overlap and share the store's group commits; answers still leave in arrival order.
 * What the service serves is the store's durable state only; a failed commit is answered 500 and the twin
 * stays as it was. Engine runs and publishes are TickBudget steps (tick-budget.ts). Pending direct methods
 * live in memory only.
 *
 * Redelivered requests: MQTT 3.1.1 QoS 1 is at-least-once, so a reported PATCH can arrive twice (a PUBACK
 * lost, the device resending it with DUP after a reconnect, a duplicating network). A copy — same `$rid`,
 * same body, and no reported change applied since the first — is answered with the first answer (204 and
 * the same `$version`) and not applied again; applying it again would leave the same properties and only
 * move `$version` (docs/local-cloud.md, "Redelivered reported PATCHes").
 *
 * Throttling (TwinThrottle): devices' twin GETs and reported PATCHes count against hub-wide rates, IoT Hub's
 * "Twin (device and module) reads" and "Twin updates" throttles ("IoT Hub quotas and throttling"), with a
 * burst allowance standing for its traffic shaping, and optionally a per-device rate; over them the
 * request is answered 429 on its response topic and nothing changes.
 *
 * What it is not: no connection management (the caller connects and ends every client), no
 * authorization, no twin rules, no device registry (any valid device id has a twin).
 */
import type { MqttClient } from "mqtt";
import type { TwinDocument } from "../core/azure-twin";
import type { OutgoingMessage } from "../core/cloud-protocol";
import { ShadowOtaError } from "../core/errors";
import { jsonClone, type Json, type JsonObject } from "../core/json";
import { NodeClock } from "../node/node-clock";
import type { Clock } from "../ports/clock";
import { silentLog, type Log } from "../ports/log";
import { CLOUD_CODES } from "./cloud-errors";
import { twinResponseTopic } from "./azure-twin-cloud";
import type { CloudStore } from "./cloud-store";
import { bytesOf, keepNoDelay, publishAll, publishAndLog, subscribeChecked } from "./service-link";
import { sharedTickBudget, type TickBudget } from "./tick-budget";
import {
  applyDesiredPatch,
  handleTwinRequest,
  methodRequestMessage,
  methodTimeoutResult,
  matchTwinRequestTopic,
  readTwin,
  scopeDeviceTopic,
  splitDeviceTopic,
  TWIN_LINK_SUBSCRIPTIONS,
  TWIN_SHARED_SUBSCRIPTIONS,
  validateDeviceId,
  type StoredTwin,
  type TwinOutcome,
} from "./twin-engine";

export interface TwinServiceOptions {
  /** Where twins persist; loaded at start. */
  store: CloudStore;
  /** Timers for direct-method timeouts. Default: a NodeClock (src/node/node-clock.ts). */
  clock?: Clock;
  log?: Log;
  /** How long invokeMethod waits for the device's reply. Default 30 000 ms (IoT Hub's default). */
  methodTimeoutMs?: number;
  /** QoS of the service's publishes and subscriptions. Default 1. */
  qos?: 0 | 1;
  /** Where engine runs and publishes take turns (default: the process's sharedTickBudget). */
  budget?: TickBudget;
  /** Rate limits on devices' twin requests (default DEFAULT_TWIN_THROTTLE); `false` turns them off. */
  throttle?: Partial<TwinThrottle> | false;
}

/**
 * Rates of devices' twin operations, per second (0: no limit of that kind). IoT Hub ("IoT Hub quotas and
 * throttling", operation throttles, Free and S1 tiers): twin reads 100/s and twin updates 50/s per hub,
 * "applied in minute ranges", and subject to traffic shaping — requests above the rate are accepted for a
 * while, then answered 429. Here each rate is a token bucket holding `burstSeconds` seconds' worth: a
 * quiet hub takes a burst of that many requests at once, a sustained excess gets 429.
 */
export interface TwinThrottle {
  /** Device twin GETs per second, hub-wide. */
  readsPerSecond: number;
  /** Reported PATCHes per second, hub-wide. */
  updatesPerSecond: number;
  /** GETs and PATCHes per second of one device (IoT Hub documents no such rate: 0 by default). */
  perDevicePerSecond: number;
  /** How many seconds' worth of each rate may be taken at once (IoT Hub's traffic shaping). */
  burstSeconds: number;
}

/** IoT Hub S1's twin rates with a one-minute burst allowance (its throttles are applied in minute ranges). */
export const DEFAULT_TWIN_THROTTLE: Readonly<TwinThrottle> = { readsPerSecond: 100, updatesPerSecond: 50, perDevicePerSecond: 0, burstSeconds: 60 };

/** The throttle with `overrides` applied, or why it is invalid (every member a finite number ≥ 0, burst > 0). */
export function twinThrottle(overrides: Partial<TwinThrottle> = {}): TwinThrottle | string {
  const out: TwinThrottle = { ...DEFAULT_TWIN_THROTTLE };
  for (const key of Object.keys(DEFAULT_TWIN_THROTTLE) as Array<keyof TwinThrottle>) {
    const v = overrides[key];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) return `twin throttle ${key} must be a finite number >= 0, not ${String(v)}`;
    out[key] = v;
  }
  if (!(out.burstSeconds > 0)) return "twin throttle burstSeconds must be > 0";
  return out;
}

/** A token bucket over a monotonic clock: `rate` tokens a second, at most `capacity` held; starts full. */
class TokenBucket {
  #tokens: number;
  #at: number;
  constructor(readonly rate: number, readonly capacity: number, now: number) {
    this.#tokens = capacity;
    this.#at = now;
  }
  /** Takes one token if there is one. */
  take(now: number): boolean {
    if (now > this.#at) {
      this.#tokens = Math.min(this.capacity, this.#tokens + ((now - this.#at) / 1000) * this.rate);
      this.#at = now;
    }
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
  /** True once the bucket is full again (a per-device bucket can then be forgotten). */
  full(now: number): boolean {
    return this.#tokens + ((now - this.#at) / 1000) * this.rate >= this.capacity;
  }
}

/** The answer to a device's last applied reported PATCH, for recognising a redelivered copy. */
interface AppliedPatch {
  rid: string;
  body: string;
  /** The reported `$version` it produced (a copy is recognised only while it is still the twin's). */
  version: number;
  messages: OutgoingMessage[];
}

/** A table holding one twin (an own property whatever the id). */
function single(deviceId: string, twin: StoredTwin | undefined): Record<string, StoredTwin> {
  const t: Record<string, StoredTwin> = {};
  if (twin !== undefined) Object.defineProperty(t, deviceId, { value: twin, writable: true, enumerable: true, configurable: true });
  return t;
}

function own(table: Record<string, StoredTwin>, deviceId: string): StoredTwin | undefined {
  return Object.prototype.hasOwnProperty.call(table, deviceId) ? table[deviceId] : undefined;
}

/** What invokeMethod resolves with: the device's status and JSON payload, 504 on timeout, 404 with no route. */
export interface MethodResult {
  status: number;
  payload: Json;
}

interface Route {
  client: MqttClient;
  /** True on the shared broker: topics carry `devices/{id}/`. */
  scoped: boolean;
}

interface PendingMethod {
  method: string;
  resolve(r: MethodResult): void;
  reject(e: unknown): void;
  timer: unknown;
}

type MessageListener = (topic: string, payload: Buffer) => void;

/** A request body as compared for redelivery (the bytes, as latin1 so any bytes round-trip). */
function bodyKey(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
}

/** The 429 answer to a throttled GET or reported PATCH (IoT Hub's status for a throttle). */
function throttledOutcome(topic: string): TwinOutcome | undefined {
  const m = matchTwinRequestTopic(topic);
  if (!m.ok || m.kind === "method-response") return undefined;
  const body = JSON.stringify({ message: "ThrottlingException: the hub's twin operation rate is exceeded; retry with backoff" });
  return { state: { twins: {} }, changed: false, status: 429, rid: m.rid, messages: [{ topic: twinResponseTopic(429, m.rid), payload: body }] };
}

export class TwinService {
  readonly #store: CloudStore;
  readonly #clock: Clock;
  readonly #log: Log;
  readonly #qos: 0 | 1;
  readonly #methodTimeoutMs: number;
  readonly #budget: TickBudget;
  /** The last queued request of each device with work in flight. */
  readonly #chains = new Map<string, Promise<unknown>>();
  /** The last answer queued for publishing. */
  #outbox: Promise<unknown> = Promise.resolve();
  /** The last answer's publish step. */
  #published: Promise<unknown> = Promise.resolve();
  #closed = false;
  #shared: { client: MqttClient; listener: MessageListener } | undefined;
  readonly #links = new Map<string, { client: MqttClient; listener: MessageListener }>();
  readonly #pending = new Map<string, PendingMethod>();
  #nextRid = 1;
  /** Each device's last applied reported PATCH (memory only: a restart forgets them, as redeliveries are short-lived). */
  readonly #applied = new Map<string, AppliedPatch>();
  readonly #throttle: TwinThrottle | undefined;
  readonly #reads: TokenBucket | undefined;
  readonly #updates: TokenBucket | undefined;
  readonly #perDevice = new Map<string, TokenBucket>();

  private constructor(options: TwinServiceOptions) {
    this.#store = options.store;
    this.#clock = options.clock ?? new NodeClock();
    this.#log = options.log ?? silentLog;
    this.#qos = options.qos ?? 1;
    this.#methodTimeoutMs = options.methodTimeoutMs ?? 30_000;
    this.#budget = options.budget ?? sharedTickBudget;
    const throttle = options.throttle === false ? undefined : twinThrottle(options.throttle ?? {});
    if (typeof throttle === "string") throw new ShadowOtaError(CLOUD_CODES.CLOUD_OPTION_INVALID, throttle);
    this.#throttle = throttle;
    const now = this.#clock.monotonicMs();
    if (throttle !== undefined && throttle.readsPerSecond > 0) this.#reads = new TokenBucket(throttle.readsPerSecond, throttle.readsPerSecond * throttle.burstSeconds, now);
    if (throttle !== undefined && throttle.updatesPerSecond > 0) this.#updates = new TokenBucket(throttle.updatesPerSecond, throttle.updatesPerSecond * throttle.burstSeconds, now);
  }

  /**
   * Whether a device's request may go on, counted when it arrives: GETs against the hub's reads, reported
   * PATCHes against its updates, both against the device's own rate. Other topics are not counted.
   */
  #admit(deviceId: string, topic: string): boolean {
    if (this.#throttle === undefined) return true;
    const m = matchTwinRequestTopic(topic);
    if (!m.ok || m.kind === "method-response") return true;
    const now = this.#clock.monotonicMs();
    const per = this.#throttle.perDevicePerSecond;
    if (per > 0) {
      let bucket = this.#perDevice.get(deviceId);
      if (bucket === undefined) {
        // Forget devices whose buckets are full again, so the map holds only recently busy devices.
        if (this.#perDevice.size >= 4096) for (const [id, b] of this.#perDevice) if (b.full(now)) this.#perDevice.delete(id);
        bucket = new TokenBucket(per, Math.max(1, per * this.#throttle.burstSeconds), now);
        this.#perDevice.set(deviceId, bucket);
      }
      if (!bucket.take(now)) return false;
    }
    const hub = m.kind === "get" ? this.#reads : this.#updates;
    return hub === undefined || hub.take(now);
  }

  /**
   * Starts the service; with `sharedClient` (already connected to a broker that scopes device topics as
   * `devices/{id}/$iothub/…`) it subscribes TWIN_SHARED_SUBSCRIPTIONS there. Pass null to serve only
   * dedicated links. Errors: CLOUD_SUBSCRIBE_REFUSED, mqtt.js's when the client is not connected.
   */
  static async start(sharedClient: MqttClient | null, options: TwinServiceOptions): Promise<TwinService> {
    const service = new TwinService(options);
    if (sharedClient !== null) {
      keepNoDelay(sharedClient);
      const listener: MessageListener = (topic, payload) => {
        const split = splitDeviceTopic(topic);
        if (split !== undefined) service.#onDeviceMessage(split.deviceId, split.deviceTopic, payload, { client: sharedClient, scoped: true });
      };
      sharedClient.on("message", listener);
      try {
        await subscribeChecked(sharedClient, TWIN_SHARED_SUBSCRIPTIONS, service.#qos);
      } catch (e) {
        sharedClient.removeListener("message", listener);
        throw e;
      }
      service.#shared = { client: sharedClient, listener };
    }
    return service;
  }

  /**
   * Serves one device over raw `$iothub/…` topics on `client` (already connected to that device's own
   * broker); replaces an earlier link of the same device. Errors: CLOUD_DEVICE_ID_INVALID,
   * CLOUD_SUBSCRIBE_REFUSED, CLOUD_SERVICE_CLOSED.
   */
  async attachDeviceLink(deviceId: string, client: MqttClient): Promise<void> {
    this.#checkOpen();
    validateDeviceId(deviceId);
    await this.detachDeviceLink(deviceId);
    keepNoDelay(client);
    const route: Route = { client, scoped: false };
    const listener: MessageListener = (topic, payload) => this.#onDeviceMessage(deviceId, topic, payload, route);
    client.on("message", listener);
    try {
      await subscribeChecked(client, TWIN_LINK_SUBSCRIPTIONS, this.#qos);
    } catch (e) {
      client.removeListener("message", listener);
      throw e;
    }
    this.#links.set(deviceId, { client, listener });
  }

  /** Stops serving a device's dedicated link (listener removed, unsubscribed when connected). */
  async detachDeviceLink(deviceId: string): Promise<void> {
    const link = this.#links.get(deviceId);
    if (link === undefined) return;
    this.#links.delete(deviceId);
    link.client.removeListener("message", link.listener);
    if (link.client.connected) await link.client.unsubscribeAsync(TWIN_LINK_SUBSCRIPTIONS.slice());
  }

  #route(deviceId: string): Route | undefined {
    const link = this.#links.get(deviceId);
    if (link !== undefined) return { client: link.client, scoped: false };
    return this.#shared === undefined ? undefined : { client: this.#shared.client, scoped: true };
  }

  #outgoing(deviceId: string, route: Route, messages: readonly OutgoingMessage[]): OutgoingMessage[] {
    return route.scoped ? messages.map((m) => ({ topic: scopeDeviceTopic(deviceId, m.topic), payload: m.payload })) : messages.slice();
  }

  /**
   * Runs `decide` after the device's earlier requests (never letting one failure stop the chain), then
   * `publish` with its result as a budget step, in arrival order across all devices.
   */
  #serial<D, T>(deviceId: string, decide: () => Promise<D>, publish: (d: D) => T): Promise<T> {
    const prev = this.#chains.get(deviceId);
    const decided = prev === undefined ? decide() : prev.then(decide, decide);
    const tail = decided.catch(() => undefined);
    this.#chains.set(deviceId, tail);
    void tail.then(() => { if (this.#chains.get(deviceId) === tail) this.#chains.delete(deviceId); });
    // Queued in the budget once the earlier publishes are queued: ready answers share a slice.
    const queued = this.#outbox.then(() => decided).then((d) => ({ step: this.#budget.run(() => publish(d)) }));
    this.#outbox = queued.catch(() => undefined);
    const result = queued.then((q) => q.step);
    this.#published = result.catch(() => undefined);
    return result;
  }

  #onDeviceMessage(deviceId: string, topic: string, payload: Buffer, route: Route): void {
    if (this.#closed) return;
    const bytes = bytesOf(payload);
    const admitted = this.#admit(deviceId, topic);
    void this.#serial(deviceId, async (): Promise<TwinOutcome | undefined> => {
      if (!admitted) return throttledOutcome(topic);
      const copy = this.#redelivered(deviceId, topic, bytes);
      if (copy !== undefined) return copy;
      const out = await this.#budget.run((): TwinOutcome | undefined => {
        try {
          return handleTwinRequest({ twins: single(deviceId, own(this.#store.twins, deviceId)) }, deviceId, topic, bytes);
        } catch (e) {
          // Only a bad device id throws, and both routes pass checked ids; log rather than crash the client.
          this.#log.log("error", "twin.engine_threw", { error: e instanceof Error ? e.message : String(e) });
          return undefined;
        }
      });
      if (out === undefined || !out.changed) return out;
      try {
        const twin = own(out.state.twins, deviceId)!;
        await this.#store.putTwin(deviceId, twin);
        if (out.rid !== undefined) this.#applied.set(deviceId, { rid: out.rid, body: bodyKey(bytes), version: twin.reportedVersion, messages: out.messages });
        return out;
      } catch (e) {
        this.#log.log("error", "twin.store_failed", { deviceId, error: e instanceof Error ? e.message : String(e) });
        const body = JSON.stringify({ message: "CLOUD_STORE_IO: the twin could not be stored" });
        // Only a reported PATCH changes the twin, and the engine answers every PATCH with its rid.
        return { state: { twins: {} }, changed: false, status: 500, messages: out.rid === undefined ? [] : [{ topic: twinResponseTopic(500, out.rid), payload: body }] };
      }
    }, (done) => {
      if (done === undefined) return;
      if (done.ignored !== undefined) this.#log.log("info", "twin.ignored", { deviceId, reason: done.ignored });
      if (done.status !== undefined && done.status >= 400) this.#log.log("info", "twin.rejected", { deviceId, topic: topic.slice(0, 128), status: done.status });
      if (done.methodResponse !== undefined) this.#settleMethod(deviceId, done.methodResponse.rid, done.methodResponse.status, done.methodResponse.payload, done.methodResponse.error);
      publishAndLog(route.client, this.#outgoing(deviceId, route, done.messages), this.#qos, this.#log);
    });
  }

  /**
   * The first answer again when this is a copy of the device's last applied reported PATCH (same `$rid`,
   * same body, the twin's reported `$version` still the one it produced); else undefined.
   */
  #redelivered(deviceId: string, topic: string, bytes: Uint8Array): TwinOutcome | undefined {
    const last = this.#applied.get(deviceId);
    if (last === undefined) return undefined;
    const m = matchTwinRequestTopic(topic);
    if (!m.ok || m.kind !== "patch-reported" || m.rid !== last.rid) return undefined;
    const twin = own(this.#store.twins, deviceId);
    if (twin === undefined || twin.reportedVersion !== last.version || bodyKey(bytes) !== last.body) return undefined;
    this.#log.log("info", "twin.redelivered", { deviceId, rid: last.rid, version: last.version });
    return { state: { twins: {} }, changed: false, status: 204, rid: last.rid, messages: last.messages };
  }

  #settleMethod(deviceId: string, rid: string, status: number, payload: Json, error: ShadowOtaError | undefined): void {
    const key = `${deviceId}\u0000${rid}`;
    const p = this.#pending.get(key);
    if (p === undefined) {
      this.#log.log("info", "twin.method_reply_unexpected", { deviceId, rid, status }); // late (after the timeout) or never asked
      return;
    }
    this.#pending.delete(key);
    this.#clock.cancel(p.timer);
    if (error !== undefined) p.reject(error);
    else p.resolve({ status, payload });
  }

  #checkOpen(): void {
    if (this.#closed) throw new ShadowOtaError(CLOUD_CODES.CLOUD_SERVICE_CLOSED, "the twin service is closed");
  }

  /** The twin (a copy): desired and reported without `$` keys, with their `$version`s. A never-written twin
   *  is empty at version 1. Errors: CLOUD_DEVICE_ID_INVALID, CLOUD_SERVICE_CLOSED. */
  async getTwin(deviceId: string): Promise<TwinDocument> {
    this.#checkOpen();
    validateDeviceId(deviceId);
    return jsonClone(readTwin({ twins: this.#store.twins }, deviceId) as unknown as JsonObject) as unknown as TwinDocument;
  }

  /**
   * Patches desired (`null` deletes): stores it, then publishes the desired notification
   * (`…/properties/desired/?$version=N`, body = patch + `$version`) to the device's route, if it has one,
   * and resolves with the new desired `$version` once the broker acknowledged it.
   * Errors: CLOUD_REQUEST_REJECTED (400: keys, 4 KB strings, depth 10, 32 KB), CLOUD_DEVICE_ID_INVALID,
   * CLOUD_STORE_IO (nothing changed), CLOUD_SERVICE_CLOSED.
   */
  async updateDesired(deviceId: string, patch: JsonObject): Promise<{ version: number }> {
    this.#checkOpen();
    const { version, published } = await this.#serial(deviceId, async () => {
      const out = await this.#budget.run(() => applyDesiredPatch({ twins: single(deviceId, own(this.#store.twins, deviceId)) }, deviceId, patch));
      await this.#store.putTwin(deviceId, own(out.state.twins, deviceId)!);
      return out;
    }, (out) => {
      // The publish starts in the patch's turn, so it goes out before the device's next request is answered.
      const route = this.#route(deviceId);
      return { version: out.version, published: route === undefined ? undefined : publishAll(route.client, this.#outgoing(deviceId, route, out.messages), this.#qos) };
    });
    await published;
    return { version };
  }

  /**
   * Invokes a direct method: publishes `$iothub/methods/POST/{name}/?$rid={rid}` with the JSON payload and
   * resolves with the device's `{status, payload}` from `$iothub/methods/res/{status}/?$rid={rid}`;
   * `{status: 504}` when no reply comes within `timeoutMs` (default the service's methodTimeoutMs);
   * `{status: 404}` when the device has no route (no link and no shared broker).
   * Errors (rejections): SYNC_NAME_INVALID (method name), CLOUD_DEVICE_ID_INVALID, the SYNC_* decode
   * error when the device's reply is not JSON, CLOUD_SERVICE_CLOSED (also when closed while waiting).
   */
  async invokeMethod(deviceId: string, methodName: string, payload: Json = null, options: { timeoutMs?: number } = {}): Promise<MethodResult> {
    this.#checkOpen();
    validateDeviceId(deviceId);
    const rid = (this.#nextRid++).toString(16);
    const request = methodRequestMessage(methodName, rid, payload);
    const route = this.#route(deviceId);
    if (route === undefined) return { status: 404, payload: { message: `device ${deviceId} is not connected to the local cloud` } };
    const timeoutMs = options.timeoutMs ?? this.#methodTimeoutMs;
    const key = `${deviceId}\u0000${rid}`;
    let settle!: { resolve(r: MethodResult): void; reject(e: unknown): void };
    const result = new Promise<MethodResult>((resolve, reject) => { settle = { resolve, reject }; });
    try {
      // In the device's turn: messages it sent before the call are handled first, so a reply that arrived
      // before the request was made (a stale or forged $rid) can never answer it.
      const { published } = await this.#serial(deviceId, async () => undefined, () => {
        const timer = this.#clock.setTimer(timeoutMs, () => {
          if (this.#pending.delete(key)) settle.resolve(methodTimeoutResult(timeoutMs));
        });
        this.#pending.set(key, { method: methodName, resolve: settle.resolve, reject: settle.reject, timer });
        return { published: publishAll(route.client, this.#outgoing(deviceId, route, [request]), this.#qos) };
      });
      await published;
    } catch (e) {
      const p = this.#pending.get(key);
      if (p !== undefined) {
        this.#pending.delete(key);
        this.#clock.cancel(p.timer);
      }
      throw e;
    }
    return result;
  }

  /**
   * Stops serving: listeners removed, subscriptions dropped (on connected clients), waiting direct methods
   * rejected with CLOUD_SERVICE_CLOSED. Does not end any client. Safe to call twice.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Requests already received finish (stored and answered) before anything is unhooked.
    while (this.#chains.size > 0) await Promise.all([...this.#chains.values()]);
    await this.#outbox;
    await this.#published;
    for (const [key, p] of this.#pending) {
      this.#clock.cancel(p.timer);
      p.reject(new ShadowOtaError(CLOUD_CODES.CLOUD_SERVICE_CLOSED, "the twin service closed while a direct method waited", { detail: { method: p.method, deviceId: key.split("\u0000")[0] ?? null } }));
    }
    this.#pending.clear();
    for (const deviceId of [...this.#links.keys()]) await this.detachDeviceLink(deviceId);
    if (this.#shared !== undefined) {
      const { client, listener } = this.#shared;
      this.#shared = undefined;
      client.removeListener("message", listener);
      if (client.connected) await client.unsubscribeAsync(TWIN_SHARED_SUBSCRIPTIONS.slice());
    }
  }
}
