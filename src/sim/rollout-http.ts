/**
 * The rollout routes of the admin API (mounted by admin-http.ts; same bearer token, same {"code","message"}
 * errors). JSON in, JSON out:
 *
 *   GET  /rollouts                    {"rollouts":[Rollout]}  (oldest first)
 *   POST /rollouts                    body {"version", "devices":[ids] | "all":true, "waves":"1,10,50,100%",
 *                                           "maxFailure":"5%" | 5, "window"?:"02:00-04:00", "waveDeadlineMs"?}
 *                                     → Rollout (its first wave already started unless outside its window)
 *   GET  /rollouts/{id}               Rollout
 *   POST /rollouts/{id}/pause         Rollout   (no new wave starts; the running one is still watched)
 *   POST /rollouts/{id}/resume        Rollout
 *   POST /rollouts/{id}/cancel        Rollout   (desired put back on the running wave's unfinished devices)
 *   POST /devices/{id}/install        {"id","accepted":"1.1.0"}: the operator accepts the update the device
 *                                     reports as WaitingConsent (desired firmwareUpdatePolicy.accept)
 *
 *   Rollout = {
 *     id: "r-1a2b3c4d", version: "1.1.0",
 *     state: "running" | "paused" | "waiting-window" | "done" | "aborted" | "cancelled",
 *     waves: [{index, size, devices:[ids], state: "waiting"|"running"|"done"|"aborted"|"cancelled",
 *              updated, failed, pending, reverted, installedAfterCancel}],
 *     failureRate: 0..1 (failed / devices whose wave started), maxFailure: 0..1,
 *     window?: "02:00-04:00", createdAt: epoch seconds, reason?: why it stopped,
 *     wavesSpec: "1,10,50,100%", waveDeadlineMs,
 *     devices: {id: {cloud, wave, outcome: "waiting"|"pending"|"updated"|"failed"|"reverted"|"installedAfterCancel",
 *                    status: reported.firmwareUpdate.state | null, error: code | null,
 *                    watched: still read after a stop, until its update's end is seen (rollout-core.ts settle)}}
 *   }
 *
 * Statuses: 400 ROLLOUT_REQUEST_INVALID (and the admin API's body errors), 404 ROLLOUT_NOT_FOUND, 409
 * ROLLOUT_CONFLICT, 404/409 ROLLOUT_NOTHING_TO_ACCEPT (unknown device / nothing waiting).
 *
 * Not here: the engine (rollout.ts), the fleet access (rollout-fleet.ts).
 */
import * as path from "node:path";
import { ShadowOtaError } from "../core/errors";
import type { Json, JsonObject } from "../core/json";
import type { Log } from "../ports/log";
import type { LocalCloud } from "./local-cloud";
import { rolloutView } from "./rollout-core";
import { ROLLOUT_CODES } from "./rollout-errors";
import { RolloutEngine, type RolloutEngineOptions, type StartRequest } from "./rollout";
import { sdkFleet, serviceFleet, type FleetAccess } from "./rollout-fleet";

/** The HTTP status for a rollout error, undefined for any other error. */
export function rolloutStatus(e: unknown): number | undefined {
  if (!(e instanceof ShadowOtaError)) return undefined;
  switch (e.code) {
    case ROLLOUT_CODES.ROLLOUT_REQUEST_INVALID: return 400;
    case ROLLOUT_CODES.ROLLOUT_NOT_FOUND: return 404;
    case ROLLOUT_CODES.ROLLOUT_CONFLICT: return 409;
    case ROLLOUT_CODES.ROLLOUT_NOTHING_TO_ACCEPT: return e.detail?.["known"] === false ? 404 : 409;
    default: return undefined;
  }
}

/** The fleet access of a running local cloud: its AWS data-plane endpoint through the AWS SDK and its IoT
 *  Hub API through azure-iothub when it runs them, else its services in process. */
export function cloudFleet(cloud: LocalCloud): FleetAccess {
  let fleet: FleetAccess | undefined;
  // Built at first use: the cloud's endpoints are all up by then, and a cloud that never rolls out pays nothing.
  const get = (): FleetAccess => {
    if (fleet !== undefined) return fleet;
    const info = cloud.info();
    const local = serviceFleet(cloud);
    fleet = info.awsDataPlane === undefined ? local : sdkFleet({
      aws: info.awsDataPlane, caFile: path.join(cloud.certsDir, "ca.cert.pem"), azureFallback: local,
      ...(info.iothub === undefined ? {} : { iothubConnectionString: info.iothub.connectionString }),
    });
    return fleet;
  };
  return {
    read: (devices) => get().read(devices),
    patch: (entries) => get().patch(entries),
    close: () => fleet?.close(),
  };
}

/** The cloud store's records as the engine's `changes`: every accepted shadow (classic only) and twin change. */
export function storeChanges(cloud: LocalCloud): NonNullable<RolloutEngineOptions["changes"]> {
  return (listener) => cloud.store.onRecord((rec) => {
    if (rec.kind === "twin") listener(rec.deviceId, { desired: rec.twin.desired, reported: rec.twin.reported });
    else if (!rec.key.includes("~")) listener(rec.key, { desired: rec.shadow.state.desired ?? {}, reported: rec.shadow.state.reported ?? {} });
  });
}

export interface RolloutRoutesOptions {
  cloud: LocalCloud;
  log: Log;
  /** Engine knobs (tests). */
  pollMs?: number;
  rereadMs?: number;
  waveDeadlineMs?: number;
  /** Default: the cloud's own (cloudFleet), with its store's records as the engine's `changes`. */
  fleet?: FleetAccess;
}

export class RolloutRoutes {
  readonly engine: RolloutEngine;

  private constructor(engine: RolloutEngine) {
    this.engine = engine;
  }

  /** Opens the engine on the cloud's data dir (resuming an active rollout). Throws ROLLOUT_STORE_CORRUPT. */
  static open(o: RolloutRoutesOptions): RolloutRoutes {
    const engine = RolloutEngine.open({
      dataDir: o.cloud.dataDir, fleet: o.fleet ?? cloudFleet(o.cloud), devices: () => o.cloud.devices, log: o.log,
      // The store holds what both fleet paths read (the SDK's endpoints and the services serve it), so its
      // records are the twins' changes; a fleet given from outside may read something else: polled.
      ...(o.fleet === undefined ? { changes: storeChanges(o.cloud) } : {}),
      ...(o.pollMs === undefined ? {} : { pollMs: o.pollMs }),
      ...(o.rereadMs === undefined ? {} : { rereadMs: o.rereadMs }),
      ...(o.waveDeadlineMs === undefined ? {} : { waveDeadlineMs: o.waveDeadlineMs }),
    });
    return new RolloutRoutes(engine);
  }

  /** Whether this module serves the path. */
  static handles(parts: readonly string[]): boolean {
    return parts[0] === "rollouts" || (parts.length === 3 && parts[0] === "devices" && parts[2] === "install");
  }

  /** Serves one request (`body` reads the JSON body the admin API's way). */
  async route(method: string, parts: readonly string[], body: () => Promise<JsonObject>): Promise<Json | undefined> {
    const e = this.engine;
    if (parts[0] === "devices" && method === "POST") return (await e.install(parts[1]!)) as unknown as Json;
    if (parts.length === 1) {
      if (method === "GET") return { rollouts: e.list().map(rolloutView) };
      if (method === "POST") {
        const b = await body();
        const req: StartRequest = { version: b["version"] as string, waves: b["waves"] as string, maxFailure: b["maxFailure"] as string };
        if (b["all"] === true) req.all = true;
        if (b["devices"] !== undefined) req.devices = b["devices"] as string[];
        if (typeof b["window"] === "string") req.window = b["window"];
        else if (b["window"] !== undefined && b["window"] !== null) throw new ShadowOtaError(ROLLOUT_CODES.ROLLOUT_REQUEST_INVALID, "window must be a string HH:MM-HH:MM", { detail: { field: "window" } });
        if (b["waveDeadlineMs"] !== undefined) req.waveDeadlineMs = b["waveDeadlineMs"] as number;
        if (typeof req.waves !== "string") throw new ShadowOtaError(ROLLOUT_CODES.ROLLOUT_REQUEST_INVALID, 'waves must be a string such as "1,10,50,100%"', { detail: { field: "waves" } });
        if (typeof req.maxFailure !== "string" && typeof req.maxFailure !== "number") throw new ShadowOtaError(ROLLOUT_CODES.ROLLOUT_REQUEST_INVALID, 'maxFailure must be "5%" or 5', { detail: { field: "maxFailure" } });
        return rolloutView(await e.start(req));
      }
    }
    if (parts.length === 2 && method === "GET") return rolloutView(e.get(parts[1]!));
    if (parts.length === 3 && method === "POST") {
      const id = parts[1]!;
      if (parts[2] === "pause") return rolloutView(await e.pause(id));
      if (parts[2] === "resume") return rolloutView(await e.resume(id));
      if (parts[2] === "cancel") return rolloutView(await e.cancel(id));
    }
    return undefined;
  }

  close(): Promise<void> {
    return this.engine.close();
  }
}
