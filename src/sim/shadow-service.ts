/**
 * The local cloud's AWS IoT Device Shadow service: an MQTT client of any broker (embedded aedes or an
 * independent mosquitto) that subscribes to every thing's shadow request topics, runs each request
 * through shadow-engine.ts, stores the result (cloud-store.ts) and publishes the engine's messages at
 * QoS 1; plus the cloud side's admin API (getShadow, updateDesired, deleteShadow), which goes through the
 * same engine path, so an admin update publishes update/accepted, delta and documents like a device's.
 *
 * Order of work per request: engine → store the record → publish. Requests for one shadow run one at a
 * time in arrival order, each starting once the previous one's record is durable; requests for different
 * shadows overlap, so their records share the store's group commits (cloud-store.ts). Answers are
 * published in arrival order all the same (a get waits for an earlier request's commit). An accepted update is
 * on disk before anyone can see it accepted, and what the service serves (`getShadow`, the engine's input)
 * is the store's durable state only; if the commit fails the request is answered 500 "Internal service
 * failure" and the shadow stays as it was. Engine runs and publishes are steps of a TickBudget
 * (tick-budget.ts), so a burst of requests never holds the event loop for more than a slice.
 *
 * What it is not: no connection management (the caller connects the client, keeps it, ends it; mqtt.js
 * reconnects and resubscribes on its own), no authorization (the broker's ACLs), no shadow rules.
 */
import type { MqttClient } from "mqtt";
import { shadowTopic, validateShadowName, validateThingName } from "../core/aws-shadow";
import type { OutgoingMessage } from "../core/cloud-protocol";
import { ShadowOtaError } from "../core/errors";
import type { JsonObject } from "../core/json";
import { NodeClock } from "../node/node-clock";
import type { Clock } from "../ports/clock";
import { silentLog, type Log } from "../ports/log";
import { CLOUD_CODES } from "./cloud-errors";
import { buildErrorDocument } from "./aws-shadow-cloud";
import type { CloudStore } from "./cloud-store";
import { bytesOf, keepNoDelay, publishAll, publishAndLog, subscribeChecked } from "./service-link";
import { sharedTickBudget, type TickBudget } from "./tick-budget";
import {
  adminDeleteRequest,
  adminUpdateRequest,
  handleShadowRequest,
  readShadow,
  shadowRequestFromTopic,
  SHADOW_ERROR_MESSAGES,
  SHADOW_SERVICE_SUBSCRIPTIONS,
  shadowKey,
  type AdminUpdateOptions,
  type ShadowEngineOptions,
  type ShadowOutcome,
  type ShadowRequest,
  type RateWindow,
  type StoredShadow,
} from "./shadow-engine";

export interface ShadowServiceOptions {
  /** Where shadows persist; loaded at start. */
  store: CloudStore;
  /** Timestamps and the rate window come from `epochSeconds()`. Default: a NodeClock (src/node/node-clock.ts). */
  clock?: Clock;
  /** Limits: nesting depth, 8 KB, payload size, requests per second per shadow. */
  engine?: ShadowEngineOptions;
  log?: Log;
  /** QoS of the service's publishes and subscriptions. Default 1. */
  qos?: 0 | 1;
  /** Where engine runs and publishes take turns (default: the process's sharedTickBudget). */
  budget?: TickBudget;
}

type MessageListener = (topic: string, payload: Buffer) => void;

/** Throws SYNC_NAME_INVALID for a bad thing or shadow name, before the request reaches the engine (which
 *  treats a bad name as its caller's bug and would answer 500). */
function checkNames(thingName: string, shadowName: string | undefined): void {
  validateThingName(thingName);
  if (shadowName !== undefined) validateShadowName(shadowName);
}

/** A table holding one entry (an own property even for a key like "__proto__"). */
function single<T>(key: string, value: T | undefined): Record<string, T> {
  const t: Record<string, T> = {};
  if (value !== undefined) Object.defineProperty(t, key, { value, writable: true, enumerable: true, configurable: true });
  return t;
}

function own<T>(table: Record<string, T>, key: string): T | undefined {
  return Object.prototype.hasOwnProperty.call(table, key) ? table[key] : undefined;
}

export class ShadowService {
  readonly #client: MqttClient;
  readonly #store: CloudStore;
  readonly #clock: Clock;
  readonly #engine: ShadowEngineOptions;
  readonly #log: Log;
  readonly #qos: 0 | 1;
  readonly #budget: TickBudget;
  /** The rate window (not persisted). */
  #rate: RateWindow = { second: -1, counts: {} };
  /** The last queued request of each shadow with work in flight, by shadowKey. */
  readonly #chains = new Map<string, Promise<unknown>>();
  /** The last answer queued for publishing. */
  #outbox: Promise<unknown> = Promise.resolve();
  /** The last answer's publish step. */
  #published: Promise<unknown> = Promise.resolve();
  #closed = false;
  #handled = 0;
  readonly #listener: MessageListener;

  private constructor(client: MqttClient, options: ShadowServiceOptions) {
    this.#client = client;
    this.#store = options.store;
    this.#clock = options.clock ?? new NodeClock();
    this.#engine = options.engine ?? {};
    this.#log = options.log ?? silentLog;
    this.#qos = options.qos ?? 1;
    this.#budget = options.budget ?? sharedTickBudget;
    this.#listener = (topic, payload) => this.#onMessage(topic, payload);
  }

  /**
   * Starts serving on an already-connected client: loads nothing itself (the store is loaded), listens,
   * then subscribes to SHADOW_SERVICE_SUBSCRIPTIONS. Errors: CLOUD_SUBSCRIBE_REFUSED; mqtt.js's errors
   * when the client is not connected. On error the listener is removed again.
   */
  static async start(client: MqttClient, options: ShadowServiceOptions): Promise<ShadowService> {
    const service = new ShadowService(client, options);
    keepNoDelay(client);
    client.on("message", service.#listener);
    try {
      await subscribeChecked(client, SHADOW_SERVICE_SUBSCRIPTIONS, service.#qos);
    } catch (e) {
      client.removeListener("message", service.#listener);
      throw e;
    }
    return service;
  }

  /** Requests handled from MQTT since start (accepted or rejected). */
  get handled(): number {
    return this.#handled;
  }

  /** Requests queued or in flight (waiting for their turn, the engine or their commit). */
  get inFlight(): number {
    return this.#chains.size;
  }

  #onMessage(topic: string, payload: Buffer): void {
    if (this.#closed) return;
    const req = shadowRequestFromTopic(topic, bytesOf(payload), this.#clock.epochSeconds());
    if (req === undefined) return; // not a shadow request (another service's topic on a shared client)
    this.#handled++;
    void this.#run(req, (out) => {
      if (!out.accepted) this.#log.log("info", "shadow.rejected", { topic, status: out.status, message: out.response.message });
      publishAndLog(this.#client, out.messages, this.#qos, this.#log);
    });
  }

  /**
   * Runs `req` after the earlier requests of its shadow: engine (a budget step), then the store, then
   * `publish` (a budget step) with the outcome; resolves with the outcome. Never rejects.
   */
  #run<T>(req: ShadowRequest, publish: (out: ShadowOutcome) => T): Promise<{ out: ShadowOutcome; published: T }> {
    let key: string;
    try {
      key = shadowKey(req.thingName, req.shadowName);
    } catch (e) {
      // matchTopic and the admin calls check names first; a bad one here is this code's bug.
      this.#log.log("error", "shadow.engine_threw", { error: e instanceof Error ? e.message : String(e) });
      const out = this.#internalFailure(req, undefined);
      return this.#budget.run(() => ({ out, published: publish(out) }));
    }
    const prev = this.#chains.get(key);
    const job = (): Promise<ShadowOutcome> => this.#decide(key, req);
    const decided = prev === undefined ? job() : prev.then(job, job);
    const tail = decided.catch(() => undefined);
    this.#chains.set(key, tail);
    void tail.then(() => { if (this.#chains.get(key) === tail) this.#chains.delete(key); });
    // Answers leave in arrival order, whichever shadow they are for (a get waits for an earlier commit):
    // each publish is queued in the budget once the earlier ones are queued, so consecutive answers that
    // are ready go out in the same slice.
    const queued = this.#outbox.then(() => decided).then((out) => ({ step: this.#budget.run(() => ({ out, published: publish(out) })) }));
    this.#outbox = queued.catch(() => undefined);
    const result = queued.then((q) => q.step);
    this.#published = result.catch(() => undefined);
    return result;
  }

  /** Engine on the durable shadow, then the store; a failed commit turns the outcome into a 500 rejection. */
  async #decide(key: string, req: ShadowRequest): Promise<ShadowOutcome> {
    const out = await this.#budget.run((): ShadowOutcome => {
      // Only this shadow and its own rate count go in, so the engine's copies stay O(1).
      const counts = this.#rate.second === Math.floor(req.now) ? single(key, own(this.#rate.counts, key)) : {};
      try {
        const o = handleShadowRequest({ shadows: single(key, own(this.#store.shadows, key)), rate: { second: this.#rate.second, counts } }, req, this.#engine);
        if (o.state.rate.second !== this.#rate.second) this.#rate = { second: o.state.rate.second, counts: {} };
        Object.defineProperty(this.#rate.counts, key, { value: o.state.rate.counts[key], writable: true, enumerable: true, configurable: true });
        return o;
      } catch (e) {
        // Only the caller's mistakes throw (names, now); for MQTT requests matchTopic already checked them.
        this.#log.log("error", "shadow.engine_threw", { error: e instanceof Error ? e.message : String(e) });
        return this.#internalFailure(req, undefined);
      }
    });
    if (!out.changed) return out;
    const shadow = own(out.state.shadows, key) as StoredShadow;
    try {
      await this.#store.putShadow(key, shadow);
    } catch (e) {
      this.#log.log("error", "shadow.store_failed", { error: e instanceof Error ? e.message : String(e) });
      const token = typeof out.response.clientToken === "string" ? out.response.clientToken : undefined;
      return this.#internalFailure(req, token);
    }
    return out;
  }

  #internalFailure(req: ShadowRequest, clientToken: string | undefined): ShadowOutcome {
    const timestamp = Math.floor(req.now);
    const payload = buildErrorDocument(500, SHADOW_ERROR_MESSAGES.INTERNAL_FAILURE, clientToken === undefined ? { timestamp } : { timestamp, clientToken });
    const messages: OutgoingMessage[] = req.origin === "admin" ? [] : [{ topic: shadowTopic(req.thingName, req.shadowName, `${req.operation}/rejected`), payload }];
    return { state: { shadows: this.#store.shadows, rate: this.#rate }, changed: false, accepted: false, status: 500, response: JSON.parse(payload) as JsonObject, messages };
  }

  #checkOpen(): void {
    if (this.#closed) throw new ShadowOtaError(CLOUD_CODES.CLOUD_SERVICE_CLOSED, "the shadow service is closed");
  }

  /** Runs an admin request: throws CLOUD_REQUEST_REJECTED on rejection, else publishes and returns the response. */
  async #admin(req: ShadowRequest): Promise<JsonObject> {
    // The publish starts in the request's turn, so it goes out before the shadow's next request is answered.
    const { out, published } = await this.#run(req, (o) => (o.accepted ? publishAll(this.#client, o.messages, this.#qos) : undefined));
    if (!out.accepted) {
      const message = String(out.response.message);
      throw new ShadowOtaError(CLOUD_CODES.CLOUD_REQUEST_REJECTED, `${req.operation} refused: ${out.status} ${message}`,
        { detail: { status: out.status, serviceMessage: message } });
    }
    await published;
    return out.response;
  }

  /**
   * The shadow as get/accepted would return it (state with delta, metadata, version, timestamp), or
   * undefined when it does not exist (never created or deleted). Publishes nothing.
   * Errors: SYNC_NAME_INVALID, CLOUD_SERVICE_CLOSED.
   */
  async getShadow(thingName: string, shadowName?: string): Promise<JsonObject | undefined> {
    this.#checkOpen();
    return readShadow({ shadows: this.#store.shadows, rate: this.#rate }, thingName, shadowName, this.#clock.epochSeconds(), this.#engine);
  }

  /**
   * Updates desired (`null` members delete; `null` clears desired) as the cloud does; publishes
   * update/accepted, update/delta (when the delta is not empty) and update/documents and resolves with the
   * update/accepted document once they are acknowledged by the broker.
   * Errors: CLOUD_REQUEST_REJECTED (detail.status/serviceMessage: 400, 409, 413, 429, …), SYNC_NAME_INVALID,
   * CLOUD_SERVICE_CLOSED.
   */
  async updateDesired(thingName: string, desired: JsonObject | null, options: AdminUpdateOptions = {}): Promise<JsonObject> {
    this.#checkOpen();
    checkNames(thingName, options.shadowName);
    return this.#admin(adminUpdateRequest(thingName, "desired", desired, this.#clock.epochSeconds(), options));
  }

  /**
   * One request as AWS's HTTP data plane takes it (UpdateThingShadow with any body: desired and/or reported,
   * version, clientToken; DeleteThingShadow): through the engine like an MQTT request, but a rejection is
   * returned rather than published. Resolves with the status and the accepted or error document once an
   * accepted request's messages are acknowledged. Errors: SYNC_NAME_INVALID, CLOUD_SERVICE_CLOSED.
   */
  async request(thingName: string, operation: "update" | "delete", payload: Uint8Array, shadowName?: string): Promise<{ status: number; response: JsonObject }> {
    this.#checkOpen();
    checkNames(thingName, shadowName);
    const req: ShadowRequest = { thingName, operation, payload, now: this.#clock.epochSeconds(), origin: "admin" };
    if (shadowName !== undefined) req.shadowName = shadowName;
    const { out, published } = await this.#run(req, (o) => (o.accepted ? publishAll(this.#client, o.messages, this.#qos) : undefined));
    await published;
    return { status: out.status, response: out.response };
  }

  /** The names of a thing's named shadows that exist (not deleted), sorted. Errors: SYNC_NAME_INVALID. */
  namedShadows(thingName: string): string[] {
    validateThingName(thingName);
    const prefix = `${thingName}~`;
    const shadows = this.#store.shadows;
    return Object.keys(shadows).filter((k) => k.startsWith(prefix) && shadows[k]!.exists).map((k) => k.slice(prefix.length)).sort();
  }

  /** Deletes the shadow (its version is kept for the next update); publishes delete/accepted.
   *  Errors: CLOUD_REQUEST_REJECTED (404 when there is no shadow), SYNC_NAME_INVALID, CLOUD_SERVICE_CLOSED. */
  async deleteShadow(thingName: string, shadowName?: string): Promise<JsonObject> {
    this.#checkOpen();
    checkNames(thingName, shadowName);
    return this.#admin(adminDeleteRequest(thingName, this.#clock.epochSeconds(), shadowName));
  }

  /**
   * Stops serving: removes the listener, lets the requests already received finish (each is stored and
   * answered), then unsubscribes (when the client is connected). Does not end the client (the caller owns
   * it) nor close the store. Safe to call twice.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.removeListener("message", this.#listener);
    while (this.#chains.size > 0) await Promise.all([...this.#chains.values()]);
    await this.#outbox;
    await this.#published;
    if (this.#client.connected) await this.#client.unsubscribeAsync(SHADOW_SERVICE_SUBSCRIPTIONS.slice());
  }
}
