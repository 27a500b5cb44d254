/**
 * The rollout engine: runs the decisions of rollout-core.ts against the fleet. At most one rollout is active
 * (running, paused or waiting for its window) at a time; each tick it
 *
 *   1. reads the reported state of the running wave's pending devices (GetThingShadow / get twin through
 *      FleetAccess, rollout-fleet.ts) and classifies each one (`classify`),
 *   2. takes one decision (`step`: converged? abort? next wave?) and stores the record,
 *   3. puts desired back on reverted devices, then sets desired (AWS seed `config.firmware_version`, Azure
 *      seed `updateVersion`) on the pending devices that lack it — after reading and storing what desired
 *      held before, which is what a revert restores — and stores the record again.
 *
 * A stopped (aborted or cancelled) rollout is still worked on by each tick until its reverts are written
 * and its reverted devices have settled: a device that was Staged when desired went back installs the
 * version anyway, and the record says so (`installedAfterCancel`, rollout-core.ts `settle`).
 *
 * The store is `{dataDir}/rollouts.json`, replaced atomically (writeFileAtomic) after every change, so a
 * restarted engine resumes where it was: steps 1–3 are derived from the record and idempotent.
 * Operator actions (start, pause, resume, cancel, install) and ticks run one at a time.
 *
 * Reads. Without `changes` every tick reads every device it watches (GetThingShadow / getTwin): a wave of N
 * devices costs N reads a second for as long as it runs. With `changes` (the local cloud passes its store's
 * records: every accepted shadow and twin change, whoever made it — rollout-http.ts) a device's report is
 * classified from the change itself, a change that settles a device (a verdict, or a stopped update) runs a
 * tick at once, and a device is read only when nothing was heard of it for `rereadMs` (default 30 s: the
 * fallback for a change the engine missed). What desired held before is still read once per device.
 *
 * Knobs: pollMs (between ticks, default 1 s; a tick also checks deadlines and the window), rereadMs,
 * waveDeadlineMs (per rollout, default 30 min: a device still pending then counts as failed), the clock
 * (wall ms; the local minute of the day for `--window`).
 *
 * Not here: the decisions (rollout-core.ts), HTTP (rollout-http.ts), how twins are reached (rollout-fleet.ts).
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { CloudKind } from "../core/cloud-protocol";
import { getPath, setPath } from "../core/config-diff";
import { ShadowOtaError } from "../core/errors";
import { isJsonObject, type Json, type JsonObject } from "../core/json";
import { parseSemver } from "../core/semver";
import { inWindow, parseWindow } from "../core/update-policy";
import { writeFileAtomic } from "../node/atomic-file";
import type { Log } from "../ports/log";
import { SEED_PATHS } from "./device";
import {
  cancel, createRollout, IN_FLIGHT, isFinished, needsDesired, needsRevert, parseMaxFailure, pause, resume, settle, step,
  toObserve, toSettle, type Observation, type RolloutDevice, type RolloutRecord,
} from "./rollout-core";
import { ROLLOUT_CODES } from "./rollout-errors";
import type { FleetAccess, FleetDoc } from "./rollout-fleet";

export const ROLLOUT_STORE_FILE = "rollouts.json";
export const DEFAULT_WAVE_DEADLINE_MS = 30 * 60_000;
export const DEFAULT_POLL_MS = 1000;
export const DEFAULT_REREAD_MS = 30_000;
/** A change that settles a device runs a tick this much later (a burst of them: one tick). */
const KICK_MS = 50;

/** What a device's reported state says about an update to `version`. */
export function classify(reported: JsonObject, cloud: CloudKind, version: string): Observation {
  const fu = reported["firmwareUpdate"];
  const f = isJsonObject(fu ?? null) ? (fu as JsonObject) : {};
  const state = typeof f["state"] === "string" ? f["state"] : undefined;
  const err = isJsonObject(f["lastError"] ?? null) ? (f["lastError"] as JsonObject)["code"] : undefined;
  const code = typeof err === "string" ? err : undefined;
  const running = getPath(reported, SEED_PATHS[cloud].reported);
  const base = { ...(state === undefined ? {} : { status: state }), ...(code === undefined ? {} : { error: code }) };
  if (f["to"] === version && (state === "RolledBack" || state === "Failed")) return { outcome: "failed", ...base };
  if (running === version && (state === undefined || !IN_FLIGHT.has(state))) return { outcome: "updated", ...base };
  return { outcome: "pending", ...base, inFlight: state !== undefined && IN_FLIGHT.has(state) };
}

export interface StartRequest {
  version: string;
  /** Device ids; or `all: true` for every known device. */
  devices?: string[];
  all?: boolean;
  waves: string;
  maxFailure: string | number;
  window?: string;
  waveDeadlineMs?: number;
}

export interface RolloutEngineOptions {
  dataDir: string;
  fleet: FleetAccess;
  /** Known devices (id → cloud). */
  devices: () => ReadonlyMap<string, CloudKind>;
  log: Log;
  pollMs?: number;
  /**
   * The devices' twins as they change (a subscription; returns its unsubscribe function). With it a device is
   * read only when nothing was heard of it for `rereadMs`; without it, at every tick.
   */
  changes?: (listener: (id: string, doc: FleetDoc) => void) => () => void;
  /** With `changes`: how long a device may stay silent before it is read anyway (default 30 s). */
  rereadMs?: number;
  /** Wall-clock ms (default Date.now). */
  now?: () => number;
  /** Local minute of the day for rollout windows (default: the process's local time). */
  localMinute?: () => number;
  /** Default per-wave deadline for new rollouts. */
  waveDeadlineMs?: number;
}

function invalid(field: string, message: string): ShadowOtaError {
  return new ShadowOtaError(ROLLOUT_CODES.ROLLOUT_REQUEST_INVALID, message, { detail: { field } });
}

export class RolloutEngine {
  readonly #o: RolloutEngineOptions;
  readonly #file: string;
  #rollouts: RolloutRecord[];
  #queue: Promise<unknown> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** With `changes`: when each device was last heard of (read, written, or changed), and its newest change
   *  not yet looked at by a tick. */
  readonly #heard = new Map<string, { atMs: number; doc?: FleetDoc }>();
  /** The devices ticks look at (pending, or watched after a stop), with the version they are judged by. */
  #watching = new Map<string, { cloud: CloudKind; version: string; stopped: boolean }>();
  #kickQueued = false;
  #unsubscribe: (() => void) | undefined;
  /** Devices read so far (every FleetAccess.read entry: the engine's cost in shadow/twin reads). */
  #reads = 0;

  private constructor(o: RolloutEngineOptions, rollouts: RolloutRecord[]) {
    this.#o = o;
    this.#file = path.join(o.dataDir, ROLLOUT_STORE_FILE);
    this.#rollouts = rollouts;
    if (o.changes !== undefined) this.#unsubscribe = o.changes((id, doc) => this.#changed(id, doc));
  }

  /** Loads the store (ROLLOUT_STORE_CORRUPT when it is not one) and resumes an active rollout. */
  static open(o: RolloutEngineOptions): RolloutEngine {
    const file = path.join(o.dataDir, ROLLOUT_STORE_FILE);
    let rollouts: RolloutRecord[] = [];
    if (fs.existsSync(file)) {
      let v: unknown;
      try {
        v = JSON.parse(fs.readFileSync(file, "utf8"));
      } catch {
        v = undefined;
      }
      const list = (v as { format?: unknown; rollouts?: unknown } | undefined);
      if (list?.format !== 1 || !Array.isArray(list.rollouts)) {
        throw new ShadowOtaError(ROLLOUT_CODES.ROLLOUT_STORE_CORRUPT, `${file} is not a rollout store`, { detail: { path: file } });
      }
      rollouts = list.rollouts as RolloutRecord[];
    }
    const engine = new RolloutEngine(o, rollouts);
    const current = engine.#current();
    if (current !== undefined) {
      o.log.log("info", "rollout.resumed", { id: current.id, state: current.state });
      engine.#schedule(0);
    }
    return engine;
  }

  /** How many device reads (GetThingShadow / getTwin) the engine has made since it opened. */
  get reads(): number {
    return this.#reads;
  }

  list(): readonly RolloutRecord[] {
    return this.#rollouts;
  }

  get(id: string): RolloutRecord {
    const r = this.#rollouts.find((x) => x.id === id);
    if (r === undefined) throw new ShadowOtaError(ROLLOUT_CODES.ROLLOUT_NOT_FOUND, `no rollout ${id.slice(0, 64)}`, { detail: { id: id.slice(0, 64) } });
    return r;
  }

  /** The one rollout that is not finished, if any. */
  active(): RolloutRecord | undefined {
    return this.#rollouts.find((r) => !isFinished(r.state));
  }

  /** Validates and stores a new rollout and runs its first step. Throws ROLLOUT_REQUEST_INVALID / ROLLOUT_CONFLICT. */
  start(req: StartRequest): Promise<RolloutRecord> {
    return this.#serial(async () => {
      if (typeof req.version !== "string") throw invalid("version", "version must be a string");
      try {
        parseSemver(req.version);
      } catch (e) {
        throw invalid("version", `version: ${(e as Error).message}`);
      }
      const known = this.#o.devices();
      let ids: string[];
      if (req.all === true) {
        if (req.devices !== undefined) throw invalid("devices", "give devices or all, not both");
        ids = [...known.keys()];
      } else {
        if (!Array.isArray(req.devices) || req.devices.some((d) => typeof d !== "string")) throw invalid("devices", "devices must be a list of device ids (or all: true)");
        ids = req.devices;
      }
      const unknown = ids.filter((id) => !known.has(id));
      if (unknown.length > 0) throw invalid("devices", `unknown device(s): ${unknown.slice(0, 5).join(", ")}${unknown.length > 5 ? ", …" : ""}`);
      if (req.window !== undefined) {
        try {
          parseWindow(req.window);
        } catch (e) {
          throw invalid("window", (e as Error).message);
        }
      }
      const deadline = req.waveDeadlineMs ?? this.#o.waveDeadlineMs ?? DEFAULT_WAVE_DEADLINE_MS;
      if (!Number.isInteger(deadline) || deadline < 1 || deadline > 7 * 86_400_000) throw invalid("waveDeadlineMs", "waveDeadlineMs must be a whole number of ms, 1 ms to 7 days");
      const a = this.active();
      if (a !== undefined) {
        throw new ShadowOtaError(ROLLOUT_CODES.ROLLOUT_CONFLICT, `rollout ${a.id} is still ${a.state}: cancel it first`, { detail: { id: a.id, state: a.state } });
      }
      const r = createRollout({
        id: `r-${crypto.randomBytes(4).toString("hex")}`, version: req.version,
        devices: ids.map((id) => ({ id, cloud: known.get(id)! })), waves: String(req.waves), maxFailure: parseMaxFailure(req.maxFailure),
        ...(req.window === undefined ? {} : { window: req.window }), waveDeadlineMs: deadline, createdAt: Math.floor(this.#now() / 1000),
      });
      // A device this rollout takes over is no longer watched for an older, stopped one: what it does from now
      // on answers this rollout (it stays listed there as it was last seen).
      const taken = new Set(ids);
      for (const old of this.#stopped()) {
        if (old.devices.some((d) => d.watch === true && taken.has(d.id))) {
          this.#replace({ ...old, devices: old.devices.map((d) => { if (d.watch !== true || !taken.has(d.id)) return d; const { watch: _w, ...rest } = d; return rest; }) });
        }
      }
      this.#rollouts.push(r);
      this.#save();
      this.#o.log.log("info", "rollout.started", { id: r.id, version: r.version, devices: r.devices.length, waves: r.waves.map((w) => w.size) });
      await this.#tick();
      this.#schedule(this.#o.pollMs ?? DEFAULT_POLL_MS);
      return this.get(r.id);
    });
  }

  pause(id: string): Promise<RolloutRecord> {
    return this.#serial(async () => this.#replace(pause(this.get(id))));
  }

  resume(id: string): Promise<RolloutRecord> {
    return this.#serial(async () => {
      this.#replace(resume(this.get(id)));
      await this.#tick();
      this.#schedule(this.#o.pollMs ?? DEFAULT_POLL_MS);
      return this.get(id);
    });
  }

  /** Cancels and puts desired back on the running wave's unfinished devices. */
  cancel(id: string): Promise<RolloutRecord> {
    return this.#serial(async () => {
      const r = this.#replace(cancel(this.get(id), this.#now()));
      await this.#apply(r);
      if (this.#o.changes !== undefined) this.#rewatch();
      this.#schedule(this.#o.pollMs ?? DEFAULT_POLL_MS); // reverts that failed are retried
      return this.get(id);
    });
  }

  /**
   * The operator's consent for a device's waiting update: desired `firmwareUpdatePolicy.accept` = the
   * version the device reports waiting for. Throws ROLLOUT_NOTHING_TO_ACCEPT (unknown device, or nothing
   * waiting for consent).
   */
  install(deviceId: string): Promise<{ id: string; accepted: string }> {
    return this.#serial(async () => {
      const cloud = this.#o.devices().get(deviceId);
      if (cloud === undefined) throw new ShadowOtaError(ROLLOUT_CODES.ROLLOUT_NOTHING_TO_ACCEPT, `unknown device ${deviceId.slice(0, 128)}`, { detail: { id: deviceId.slice(0, 128), known: false } });
      const doc = (await this.#read([{ id: deviceId, cloud }])).get(deviceId);
      if (doc === undefined || doc instanceof Error) throw doc ?? new Error(`no answer for ${deviceId}`);
      const fu = doc.reported["firmwareUpdate"];
      const f = isJsonObject(fu ?? null) ? (fu as JsonObject) : {};
      if (f["state"] !== "WaitingConsent" || typeof f["to"] !== "string") {
        throw new ShadowOtaError(ROLLOUT_CODES.ROLLOUT_NOTHING_TO_ACCEPT, `${deviceId} has no update waiting for consent (its update state is ${JSON.stringify(f["state"] ?? null)})`, { detail: { id: deviceId, known: true } });
      }
      const version = f["to"];
      if (getPath(doc.desired, SEED_PATHS[cloud].desired) !== version) {
        throw new ShadowOtaError(ROLLOUT_CODES.ROLLOUT_NOTHING_TO_ACCEPT, `${deviceId} waits for consent to ${version}, but desired no longer names it (reverted?)`, { detail: { id: deviceId, known: true } });
      }
      const res = (await this.#o.fleet.patch([{ id: deviceId, cloud, desired: { firmwareUpdatePolicy: { accept: version } } }])).get(deviceId);
      if (res !== undefined) throw res;
      this.#o.log.log("info", "rollout.install", { id: deviceId, version });
      return { id: deviceId, accepted: version };
    });
  }

  /** One tick now (tests; the timer calls the same). */
  tick(): Promise<void> {
    return this.#serial(() => this.#tick());
  }

  /** Stops the timer; waits for the action or tick in progress. Safe twice. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#queue.catch(() => undefined);
    this.#o.fleet.close();
  }

  // ---------------------------------------------------------------------------------------------------

  #now(): number {
    return (this.#o.now ?? Date.now)();
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#queue.then(fn, fn);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  #schedule(ms: number): void {
    if (this.#closed || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#serial(() => this.#tick())
        .catch((e: unknown) => this.#o.log.log("error", "rollout.tick-failed", { message: e instanceof Error ? e.message : String(e) }))
        .then(() => { if (this.#current() !== undefined) this.#schedule(this.#o.pollMs ?? DEFAULT_POLL_MS); });
    }, ms);
  }

  #replace(r: RolloutRecord): RolloutRecord {
    const i = this.#rollouts.findIndex((x) => x.id === r.id);
    this.#rollouts[i] = r;
    this.#save();
    return r;
  }

  #save(): void {
    writeFileAtomic(this.#file, JSON.stringify({ format: 1, rollouts: this.#rollouts }) + "\n", { mode: 0o600 });
  }

  #inWindow(r: RolloutRecord): boolean {
    if (r.window === undefined) return true;
    const minute = this.#o.localMinute?.() ?? (() => { const d = new Date(this.#now()); return d.getHours() * 60 + d.getMinutes(); })();
    return inWindow(parseWindow(r.window), minute);
  }

  /** Stopped rollouts that still owe reverts or watch reverted devices. */
  #stopped(): RolloutRecord[] {
    return this.#rollouts.filter((r) => isFinished(r.state) && (needsRevert(r).length > 0 || r.devices.some((d) => d.watch === true)));
  }

  /** Whether ticks have work: an active rollout, or a stopped one with reverts or watches left. */
  #current(): RolloutRecord | undefined {
    return this.active() ?? this.#stopped()[0];
  }

  async #read(devices: readonly { id: string; cloud: CloudKind }[]): Promise<Map<string, FleetDoc | Error>> {
    this.#reads += devices.length;
    const docs = await this.#o.fleet.read(devices);
    for (const [id, doc] of docs) if (!(doc instanceof Error)) this.#heardNow(id);
    return docs;
  }

  /** A device was written or read now: with `changes`, its silence counts from here. */
  #heardNow(id: string): void {
    if (this.#o.changes === undefined) return;
    const h = this.#heard.get(id);
    if (h === undefined) this.#heard.set(id, { atMs: this.#now() });
    else h.atMs = this.#now();
  }

  /** A twin changed (`changes`): kept for the next tick; a tick runs at once when it settles the device. */
  #changed(id: string, doc: FleetDoc): void {
    const w = this.#watching.get(id);
    if (this.#closed || w === undefined) return;
    this.#heard.set(id, { atMs: this.#now(), doc });
    const o = classify(doc.reported, w.cloud, w.version);
    if (o.outcome !== "pending" || (w.stopped && o.inFlight === false)) this.#kick();
  }

  /** A tick soon (KICK_MS, so a burst of verdicts costs one tick, not one each). */
  #kick(): void {
    if (this.#closed || this.#kickQueued) return;
    this.#kickQueued = true;
    setTimeout(() => {
      void this.#serial(() => { this.#kickQueued = false; return this.#tick(); })
        .catch((e: unknown) => this.#o.log.log("error", "rollout.tick-failed", { message: e instanceof Error ? e.message : String(e) }));
    }, KICK_MS);
  }

  /**
   * What the devices report now about an update to `version` (a device that cannot be read is left out).
   * With `changes`: from the newest change heard of each device, and by a read only for a device silent
   * for `rereadMs` (or never heard of since the engine opened); a device heard of recently with no new
   * change is left out (nothing new to see).
   */
  async #observe(devices: readonly RolloutDevice[], version: string): Promise<Map<string, Observation>> {
    const observed = new Map<string, Observation>();
    const toRead: RolloutDevice[] = [];
    const now = this.#now();
    for (const d of devices) {
      const h = this.#o.changes === undefined ? undefined : this.#heard.get(d.id);
      if (h?.doc !== undefined) {
        observed.set(d.id, classify(h.doc.reported, d.cloud, version));
        delete h.doc;
      } else if (h === undefined || now - h.atMs >= (this.#o.rereadMs ?? DEFAULT_REREAD_MS)) {
        toRead.push(d);
      }
    }
    if (toRead.length === 0) return observed;
    const docs = await this.#read(toRead);
    for (const d of toRead) {
      const doc = docs.get(d.id);
      if (doc === undefined || doc instanceof Error) continue; // unreadable now: still pending (the deadline decides)
      observed.set(d.id, classify(doc.reported, d.cloud, version));
    }
    return observed;
  }

  /** The devices the next tick looks at, for `changes` (called after every tick). */
  #rewatch(): void {
    const w = new Map<string, { cloud: CloudKind; version: string; stopped: boolean }>();
    for (const r of this.#rollouts) {
      const stopped = isFinished(r.state);
      for (const d of r.devices) {
        if ((d.outcome === "pending" && !stopped) || d.watch === true) w.set(d.id, { cloud: d.cloud, version: r.version, stopped });
      }
    }
    this.#watching = w;
    for (const id of [...this.#heard.keys()]) if (!w.has(id)) this.#heard.delete(id);
  }

  /** A stopped rollout: reverts still owed, then how the watched reverted devices' updates ended. */
  async #settle(r0: RolloutRecord): Promise<void> {
    let r = await this.#apply(r0);
    const watched = toSettle(r);
    if (watched.length === 0 && !r.devices.some((d) => d.watch === true)) return;
    const observed = await this.#observe(watched, r.version);
    const before = new Map(r.devices.map((d) => [d.id, d.outcome]));
    r = this.#replace(settle(r, { nowMs: this.#now(), observed }));
    for (const d of r.devices) {
      if (before.get(d.id) !== d.outcome) this.#o.log.log(d.outcome === "reverted" ? "info" : "warn", "rollout.settled", { id: r.id, device: d.id, outcome: d.outcome, status: d.status ?? null });
    }
  }

  async #tick(): Promise<void> {
    try {
      await this.#tickOnce();
    } finally {
      if (this.#o.changes !== undefined) this.#rewatch();
    }
  }

  async #tickOnce(): Promise<void> {
    if (this.#closed) return;
    for (const s of this.#stopped()) await this.#settle(s);
    const a = this.active();
    if (a === undefined) return;
    // Reverts and desired left over from an interrupted tick (or a restart) first.
    let r = await this.#apply(a);
    const observed = await this.#observe(toObserve(r), r.version);
    const before = r.state;
    r = this.#replace(step(r, { nowMs: this.#now(), inWindow: this.#inWindow(r), observed }));
    if (r.state !== before) this.#o.log.log(r.state === "aborted" ? "warn" : "info", "rollout.state", { id: r.id, from: before, to: r.state, reason: r.reason ?? null, wave: r.current });
    await this.#apply(r);
  }

  /** Reverts, then sets desired where the record asks for it; stores the record. */
  async #apply(r0: RolloutRecord): Promise<RolloutRecord> {
    let r = r0;
    const reverts = needsRevert(r);
    if (reverts.length > 0) {
      const res = await this.#o.fleet.patch(reverts.map((d) => ({ id: d.id, cloud: d.cloud, desired: setPath({}, SEED_PATHS[d.cloud].desired, d.previous ?? null) })));
      for (const [id, e] of res) if (e === undefined) this.#heardNow(id);
      r = { ...r, devices: r.devices.map((d) => (reverts.includes(d) && res.has(d.id) && res.get(d.id) === undefined ? { ...d, revertDone: true } : d)) };
      r = this.#replace(r);
      this.#o.log.log("info", "rollout.reverted", { id: r.id, devices: reverts.length });
    }
    const todo = needsDesired(r);
    if (todo.length === 0) return r;
    // What desired held before, read once per device and stored before anything is written.
    const unknownPrev = todo.filter((d) => d.previous === undefined);
    if (unknownPrev.length > 0) {
      const docs = await this.#read(unknownPrev);
      const prev = new Map<string, Json>();
      for (const d of unknownPrev) {
        const doc = docs.get(d.id) as FleetDoc | Error | undefined;
        if (doc !== undefined && !(doc instanceof Error)) prev.set(d.id, getPath(doc.desired, SEED_PATHS[d.cloud].desired) ?? null);
      }
      r = this.#replace({ ...r, devices: r.devices.map((d) => (prev.has(d.id) ? { ...d, previous: prev.get(d.id)! } : d)) });
    }
    const ready = needsDesired(r).filter((d) => d.previous !== undefined);
    // Watched from the write on: the write's own change may already show the device running the version.
    if (this.#o.changes !== undefined) for (const d of ready) this.#watching.set(d.id, { cloud: d.cloud, version: r.version, stopped: false });
    const res = await this.#o.fleet.patch(ready.map((d) => ({ id: d.id, cloud: d.cloud, desired: setPath({}, SEED_PATHS[d.cloud].desired, r.version) })));
    for (const [id, e] of res) if (e === undefined) this.#heardNow(id);
    const failed = [...res].filter(([, e]) => e !== undefined);
    if (failed.length > 0) this.#o.log.log("warn", "rollout.desired-failed", { id: r.id, devices: failed.length, first: failed[0]![1]!.message });
    r = this.#replace({ ...r, devices: r.devices.map((d) => (res.has(d.id) && res.get(d.id) === undefined ? { ...d, desiredSet: true } : d)) });
    return r;
  }
}
