/**
 * The local cloud's AWS IoT Device Shadow service: an MQTT client of any broker (embedded aedes or an
 * independent mosquitto) that subscribes to every thing's shadow request topics, runs each request
 * through shadow-engine.ts, stores the result (cloud-store.ts) and publishes the engine's messages at
 * QoS 1; plus the cloud side's admin API (getShadow, updateDesired, deleteShadow), which goes through the
 * same engine path, so an admin update publishes update/accepted, delta and documents like a device's.
 *
 * Order of work per request (one at a time, in arrival order): engine → write the store → publish. An
 * accepted update is on disk before anyone can see it accepted; if the write fails the request is
 * answered 500 "Internal service failure" and the shadow stays as it was.
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
import { bytesOf, publishAll, publishAndLog, subscribeChecked } from "./service-link";
import {
  adminDeleteRequest,
  adminUpdateRequest,
  emptyShadowState,
  handleShadowRequest,
  readShadow,
  shadowRequestFromTopic,
  SHADOW_ERROR_MESSAGES,
  SHADOW_SERVICE_SUBSCRIPTIONS,
  type AdminUpdateOptions,
  type ShadowEngineOptions,
  type ShadowEngineState,
  type ShadowOutcome,
  type ShadowRequest,
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
}

type MessageListener = (topic: string, payload: Buffer) => void;

/** Throws SYNC_NAME_INVALID for a bad thing or shadow name, before the request reaches the engine (which
 *  treats a bad name as its caller's bug and would answer 500). */
function checkNames(thingName: string, shadowName: string | undefined): void {
  validateThingName(thingName);
  if (shadowName !== undefined) validateShadowName(shadowName);
}

export class ShadowService {
  readonly #client: MqttClient;
  readonly #store: CloudStore;
  readonly #clock: Clock;
  readonly #engine: ShadowEngineOptions;
  readonly #log: Log;
  readonly #qos: 0 | 1;
  #state: ShadowEngineState;
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
    this.#state = emptyShadowState(options.store.shadows);
    this.#listener = (topic, payload) => this.#onMessage(topic, payload);
  }

  /**
   * Starts serving on an already-connected client: loads nothing itself (the store is loaded), listens,
   * then subscribes to SHADOW_SERVICE_SUBSCRIPTIONS. Errors: CLOUD_SUBSCRIBE_REFUSED; mqtt.js's errors
   * when the client is not connected. On error the listener is removed again.
   */
  static async start(client: MqttClient, options: ShadowServiceOptions): Promise<ShadowService> {
    const service = new ShadowService(client, options);
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

  #onMessage(topic: string, payload: Buffer): void {
    if (this.#closed) return;
    const req = shadowRequestFromTopic(topic, bytesOf(payload), this.#clock.epochSeconds());
    if (req === undefined) return; // not a shadow request (another service's topic on a shared client)
    this.#handled++;
    const out = this.#run(req);
    if (!out.accepted) this.#log.log("info", "shadow.rejected", { topic, status: out.status, message: out.response.message });
    publishAndLog(this.#client, out.messages, this.#qos, this.#log);
  }

  /** Engine, then store; a failed store write turns the outcome into a 500 rejection and keeps the shadow. */
  #run(req: ShadowRequest): ShadowOutcome {
    let out: ShadowOutcome;
    try {
      out = handleShadowRequest(this.#state, req, this.#engine);
    } catch (e) {
      // Only the caller's mistakes throw (names, now); for MQTT requests matchTopic already checked them.
      this.#log.log("error", "shadow.engine_threw", { error: e instanceof Error ? e.message : String(e) });
      return this.#internalFailure(req, undefined, this.#state);
    }
    if (out.changed) {
      try {
        this.#store.saveShadows(out.state.shadows);
      } catch (e) {
        this.#log.log("error", "shadow.store_failed", { error: e instanceof Error ? e.message : String(e) });
        const token = typeof out.response.clientToken === "string" ? out.response.clientToken : undefined;
        return this.#internalFailure(req, token, { shadows: this.#state.shadows, rate: out.state.rate });
      }
    }
    this.#state = out.state;
    return out;
  }

  #internalFailure(req: ShadowRequest, clientToken: string | undefined, state: ShadowEngineState): ShadowOutcome {
    this.#state = state;
    const timestamp = Math.floor(req.now);
    const payload = buildErrorDocument(500, SHADOW_ERROR_MESSAGES.INTERNAL_FAILURE, clientToken === undefined ? { timestamp } : { timestamp, clientToken });
    const messages: OutgoingMessage[] = req.origin === "admin" ? [] : [{ topic: shadowTopic(req.thingName, req.shadowName, `${req.operation}/rejected`), payload }];
    return { state, changed: false, accepted: false, status: 500, response: JSON.parse(payload) as JsonObject, messages };
  }

  #checkOpen(): void {
    if (this.#closed) throw new ShadowOtaError(CLOUD_CODES.CLOUD_SERVICE_CLOSED, "the shadow service is closed");
  }

  /** Runs an admin request: throws CLOUD_REQUEST_REJECTED on rejection, else publishes and returns the response. */
  async #admin(req: ShadowRequest): Promise<JsonObject> {
    const out = this.#run(req);
    if (!out.accepted) {
      const message = String(out.response.message);
      throw new ShadowOtaError(CLOUD_CODES.CLOUD_REQUEST_REJECTED, `${req.operation} refused: ${out.status} ${message}`,
        { detail: { status: out.status, serviceMessage: message } });
    }
    await publishAll(this.#client, out.messages, this.#qos);
    return out.response;
  }

  /**
   * The shadow as get/accepted would return it (state with delta, metadata, version, timestamp), or
   * undefined when it does not exist (never created or deleted). Publishes nothing.
   * Errors: SYNC_NAME_INVALID, CLOUD_SERVICE_CLOSED.
   */
  async getShadow(thingName: string, shadowName?: string): Promise<JsonObject | undefined> {
    this.#checkOpen();
    return readShadow(this.#state, thingName, shadowName, this.#clock.epochSeconds(), this.#engine);
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
    const out = this.#run(req);
    if (out.accepted) await publishAll(this.#client, out.messages, this.#qos);
    return { status: out.status, response: out.response };
  }

  /** The names of a thing's named shadows that exist (not deleted), sorted. Errors: SYNC_NAME_INVALID. */
  namedShadows(thingName: string): string[] {
    validateThingName(thingName);
    const prefix = `${thingName}~`;
    return Object.keys(this.#state.shadows).filter((k) => k.startsWith(prefix) && this.#state.shadows[k]!.exists).map((k) => k.slice(prefix.length)).sort();
  }

  /** Deletes the shadow (its version is kept for the next update); publishes delete/accepted.
   *  Errors: CLOUD_REQUEST_REJECTED (404 when there is no shadow), SYNC_NAME_INVALID, CLOUD_SERVICE_CLOSED. */
  async deleteShadow(thingName: string, shadowName?: string): Promise<JsonObject> {
    this.#checkOpen();
    checkNames(thingName, shadowName);
    return this.#admin(adminDeleteRequest(thingName, this.#clock.epochSeconds(), shadowName));
  }

  /**
   * Stops serving: removes the listener and unsubscribes (when the client is connected). Does not end the
   * client (the caller owns it). Safe to call twice. The store needs no flush: every change was written.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#client.removeListener("message", this.#listener);
    if (this.#client.connected) await this.#client.unsubscribeAsync(SHADOW_SERVICE_SUBSCRIPTIONS.slice());
  }
}
