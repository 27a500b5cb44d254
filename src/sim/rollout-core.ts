/**
 * The rollout's decisions, pure: which devices come next, has the wave converged, must the rollout stop.
 * No I/O, no clock, no timers: the engine (rollout.ts) reads the devices' reported state, calls `step` with
 * what it saw and the time, and then does what the returned record asks for — set desired on the devices
 * that are `pending` without `desiredSet`, put desired back on those that are `reverted` without
 * `revertDone` — and stores the record. Because those two lists are derived from the record and each
 * action is idempotent, a process that dies between any two steps resumes by doing the same again.
 *
 * Waves (`parseWaves`): cumulative targets, item by item a device count (`10`) or a share of the fleet
 * (`10%`, rounded up), strictly increasing after rounding (duplicates are dropped). `1,10,50,100%` on 1,000
 * devices: waves of 1, 9, 40 and 950. Targets past the fleet's size are clamped; a list that stops short of
 * the fleet leaves the rest untouched (a canary only). Membership comes from the device list as given
 * (the engine sorts it), so the same inputs give the same waves.
 *
 * Failure rate: failed devices / devices whose wave has started. While a wave runs its pending devices count
 * in the denominator, so the rate is a lower bound of the final one and cannot stop a rollout too early;
 * the rollout stops as soon as the rate is above `maxFailure` (mid-wave included: no need to wait for the
 * wave's stragglers to know it failed). RolledBack and Failed reports count as failures, and so does a
 * device still pending when the wave's deadline passes (error ROLLOUT_DEVICE_TIMEOUT).
 *
 * States: running → (waiting-window ↔ running) → done; paused (no new wave starts; the running wave is still
 * watched and can still abort the rollout); aborted (threshold passed); cancelled (by the operator).
 * Aborted and cancelled put desired back on the devices of the running wave that had not finished and on
 * the failed ones (a device that rolled back keeps running the old version; desired should say so).
 * A device that was already Staged when desired went back cannot stop (its boot partition is switched): it
 * boots the new version and its self-test decides. So the reverted devices stay watched after the stop
 * (`toSettle`, `settle`) until they report how their update ended, and are then listed truthfully:
 * `reverted` (it stopped), `installedAfterCancel` (it runs the version anyway) or `failed`.
 *
 * Not here: reading or writing the cloud (rollout.ts), the store, the HTTP routes (rollout-http.ts).
 */
import { ShadowOtaError } from "../core/errors";
import type { Json } from "../core/json";
import { ROLLOUT_CODES } from "./rollout-errors";

export type RolloutState = "running" | "paused" | "waiting-window" | "done" | "aborted" | "cancelled";
export type WaveState = "waiting" | "running" | "done" | "aborted" | "cancelled";
/** waiting: its wave has not started; pending: desired is (being) set, no verdict yet; updated: Valid on the
 *  version; failed: RolledBack, Failed or timed out (also after a stop, when the device was past the point of
 *  no return and its self-test failed); reverted: desired put back before it finished, and the device did
 *  not install the version; installedAfterCancel: desired was put back (abort or cancel) but the device was
 *  already past the point of no return (Staged: boot partition switched) and now runs the version. */
export type DeviceOutcome = "waiting" | "pending" | "updated" | "failed" | "reverted" | "installedAfterCancel";

export interface RolloutDevice {
  id: string;
  cloud: "aws" | "azure";
  wave: number;
  outcome: DeviceOutcome;
  /** Desired has been written (pending devices only need it). */
  desiredSet: boolean;
  /** The desired firmware value before the rollout set it (null: none), read just before; what a revert restores. */
  previous?: Json;
  /** Desired is to be put back (set when the rollout stops: the unfinished and the failed devices). */
  revert?: boolean;
  revertDone?: boolean;
  /** Reverted while its update was under way: the engine keeps reading it after the stop until it reports
   *  how that update ended (`settle`): still `reverted`, or `installedAfterCancel`, or `failed`. */
  watch?: boolean;
  /** The device's last reported update state (reported.firmwareUpdate.state), and error code if any. */
  status?: string;
  error?: string;
}

export interface RolloutWave {
  index: number;
  size: number;
  state: WaveState;
  /** Wall-clock ms when the wave started (its deadline counts from here). */
  startedAtMs?: number;
}

/** The stored record of one rollout (rollouts.json). */
export interface RolloutRecord {
  id: string;
  version: string;
  state: RolloutState;
  /** 0..1. */
  maxFailure: number;
  /** "HH:MM-HH:MM" in the cloud's local time: new waves start only inside it. */
  window?: string;
  /** Per-wave deadline in ms: a device still pending then counts as failed. */
  waveDeadlineMs: number;
  /** The wave specification as given (e.g. "1,10,50,100%"). */
  wavesSpec: string;
  waves: RolloutWave[];
  devices: RolloutDevice[];
  /** Epoch seconds. */
  createdAt: number;
  reason?: string;
  /** The wave that is running or last ran (-1 before the first). */
  current: number;
  /** Wall-clock ms when it was aborted or cancelled: its reverted devices are watched until this plus
   *  waveDeadlineMs at most. */
  stoppedAtMs?: number;
}

/** What the engine saw of one pending device. */
export interface Observation {
  outcome: "pending" | "updated" | "failed";
  status?: string;
  error?: string;
  /** The reported update state is one of IN_FLIGHT (only meaningful for outcome "pending"). */
  inFlight?: boolean;
}

/** Update states that mean "not finished yet" (ota-controller.ts states plus the update policy's waits). */
export const IN_FLIGHT: ReadonlySet<string> = new Set(["Downloading", "Verifying", "Staged", "PendingVerify", "WaitingWindow", "WaitingConsent"]);

export type WaveTarget = { count: number } | { percent: number };

function invalid(field: string, message: string): ShadowOtaError {
  return new ShadowOtaError(ROLLOUT_CODES.ROLLOUT_REQUEST_INVALID, message, { detail: { field } });
}

/** "1,10,50,100%" → targets. Throws ROLLOUT_REQUEST_INVALID. */
export function parseWaves(spec: string): WaveTarget[] {
  if (typeof spec !== "string" || spec.length === 0 || spec.length > 200) throw invalid("waves", "waves must be a list such as 1,10,50,100%");
  const out: WaveTarget[] = [];
  for (const item of spec.split(",")) {
    const m = /^\s*([0-9]{1,6}(?:\.[0-9]{1,3})?)(%?)\s*$/.exec(item);
    if (m === null) throw invalid("waves", `wave ${JSON.stringify(item.slice(0, 20))} is neither a device count (10) nor a share of the fleet (10%)`);
    const n = Number(m[1]);
    if (m[2] === "%") {
      if (!(n > 0 && n <= 100)) throw invalid("waves", `wave ${item.trim()} must be a share in (0, 100]%`);
      out.push({ percent: n });
    } else {
      if (!Number.isInteger(n) || n < 1) throw invalid("waves", `wave ${item.trim()} must be a whole number of devices ≥ 1`);
      out.push({ count: n });
    }
  }
  if (out.length > 100) throw invalid("waves", "at most 100 waves");
  return out;
}

/** Wave sizes for a fleet of `n`: cumulative targets rounded up, clamped to n, empty waves dropped.
 *  Throws ROLLOUT_REQUEST_INVALID when the targets decrease. */
export function waveSizes(targets: readonly WaveTarget[], n: number): number[] {
  const sizes: number[] = [];
  let done = 0;
  let last = 0;
  for (const t of targets) {
    const raw = "count" in t ? t.count : Math.ceil((t.percent * n) / 100 - 1e-9);
    if (raw < last) throw invalid("waves", "wave targets are cumulative and must not decrease (1,10,50,100%)");
    last = raw;
    const target = Math.min(n, raw);
    if (target > done) { sizes.push(target - done); done = target; }
  }
  return sizes;
}

/** "5%" or "0.05"-style input already turned into a number of percent → 0..1. Throws ROLLOUT_REQUEST_INVALID. */
export function parseMaxFailure(text: string | number): number {
  const s = String(text).trim();
  const m = /^([0-9]{1,3}(?:\.[0-9]{1,4})?)%?$/.exec(s);
  const p = m === null ? NaN : Number(m[1]);
  if (!(p >= 0 && p <= 100)) throw invalid("maxFailure", `maxFailure must be a share of 0..100%, not ${JSON.stringify(s.slice(0, 20))}`);
  return p / 100;
}

export interface NewRollout {
  id: string;
  version: string;
  devices: ReadonlyArray<{ id: string; cloud: "aws" | "azure" }>;
  waves: string;
  maxFailure: number;
  window?: string;
  waveDeadlineMs: number;
  createdAt: number;
}

/** A new record in state running, no wave started (the first `step` starts one). Devices sorted by id. */
export function createRollout(n: NewRollout): RolloutRecord {
  const ids = new Set<string>();
  for (const d of n.devices) {
    if (ids.has(d.id)) throw invalid("devices", `device ${d.id} is listed twice`);
    ids.add(d.id);
  }
  if (n.devices.length === 0) throw invalid("devices", "a rollout needs at least one device");
  const sorted = [...n.devices].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const sizes = waveSizes(parseWaves(n.waves), sorted.length);
  const devices: RolloutDevice[] = [];
  let k = 0;
  sizes.forEach((size, w) => {
    for (let i = 0; i < size; i++, k++) devices.push({ id: sorted[k]!.id, cloud: sorted[k]!.cloud, wave: w, outcome: "waiting", desiredSet: false });
  });
  const r: RolloutRecord = {
    id: n.id, version: n.version, state: "running", maxFailure: n.maxFailure, waveDeadlineMs: n.waveDeadlineMs, wavesSpec: n.waves,
    waves: sizes.map((size, index) => ({ index, size, state: "waiting" })), devices, createdAt: n.createdAt, current: -1,
  };
  if (n.window !== undefined) r.window = n.window;
  return r;
}

/** Devices whose wave has started. */
export function startedCount(r: RolloutRecord): number {
  return r.devices.filter((d) => d.outcome !== "waiting").length;
}

export function failedCount(r: RolloutRecord): number {
  return r.devices.filter((d) => d.outcome === "failed").length;
}

/** failed / started (0 before any wave). */
export function failureRate(r: RolloutRecord): number {
  const started = startedCount(r);
  return started === 0 ? 0 : failedCount(r) / started;
}

/** The most devices the waves up to and including `wave` allow. */
export function allowedThrough(r: RolloutRecord, wave: number): number {
  let n = 0;
  for (let i = 0; i <= wave && i < r.waves.length; i++) n += r.waves[i]!.size;
  return n;
}

export function isFinished(state: RolloutState): boolean {
  return state === "done" || state === "aborted" || state === "cancelled";
}

/** Devices that need desired set now. */
export function needsDesired(r: RolloutRecord): RolloutDevice[] {
  return isFinished(r.state) ? [] : r.devices.filter((d) => d.outcome === "pending" && !d.desiredSet);
}

/** Devices that need desired put back now. */
export function needsRevert(r: RolloutRecord): RolloutDevice[] {
  return r.devices.filter((d) => d.revert === true && d.desiredSet && d.revertDone !== true);
}

/** Devices whose reported state the engine should read now. */
export function toObserve(r: RolloutRecord): RolloutDevice[] {
  return r.devices.filter((d) => d.outcome === "pending" && d.desiredSet);
}

/** Reverted devices of a stopped rollout still watched for how their update ends (once the revert is written). */
export function toSettle(r: RolloutRecord): RolloutDevice[] {
  return r.devices.filter((d) => d.watch === true && d.revertDone === true);
}

export interface StepInput {
  /** Wall-clock ms. */
  nowMs: number;
  /** Whether the rollout's window is open now (true without a window). */
  inWindow: boolean;
  /** What was seen of pending devices, by id (others ignored). */
  observed?: ReadonlyMap<string, Observation>;
}

function clone(r: RolloutRecord): RolloutRecord {
  return { ...r, waves: r.waves.map((w) => ({ ...w })), devices: r.devices.map((d) => ({ ...d })) };
}

/** Stops the rollout: desired goes back on the running wave's unfinished devices (now "reverted", and
 *  watched when desired had been written: `settle` says how their update ended) and on every failed one
 *  (still counted as failed), later waves are cancelled. */
function stop(r: RolloutRecord, state: "aborted" | "cancelled", reason: string, nowMs: number | undefined): void {
  r.state = state;
  r.reason = reason;
  if (nowMs !== undefined) r.stoppedAtMs = nowMs;
  for (const d of r.devices) {
    if (d.outcome === "pending") {
      d.outcome = "reverted";
      if (d.desiredSet) d.watch = true;
    }
    if (d.outcome === "reverted" || d.outcome === "failed") d.revert = true;
  }
  for (const w of r.waves) {
    if (w.state === "running") w.state = state;
    else if (w.state === "waiting") w.state = "cancelled";
  }
}

/**
 * One decision: apply what was seen, time out devices past the wave's deadline, stop when the failure
 * rate is above the threshold, close a converged wave and start the next one when the state and window
 * allow. Returns a new record (the input is not changed).
 */
export function step(prev: RolloutRecord, input: StepInput): RolloutRecord {
  const r = clone(prev);
  if (isFinished(r.state)) return r;
  const wave = r.current >= 0 ? r.waves[r.current] : undefined;
  for (const d of r.devices) {
    if (d.outcome !== "pending") continue;
    const o = input.observed?.get(d.id);
    if (o !== undefined && d.desiredSet) {
      if (o.status !== undefined) d.status = o.status;
      if (o.error !== undefined) d.error = o.error;
      if (o.outcome !== "pending") d.outcome = o.outcome;
    }
    if (d.outcome === "pending" && wave?.startedAtMs !== undefined && input.nowMs - wave.startedAtMs >= r.waveDeadlineMs) {
      d.outcome = "failed";
      d.error = ROLLOUT_CODES.ROLLOUT_DEVICE_TIMEOUT;
    }
  }
  const rate = failureRate(r);
  if (rate > r.maxFailure) {
    stop(r, "aborted", `failure rate ${formatPercent(rate)} (${failedCount(r)} of ${startedCount(r)}) is above the threshold ${formatPercent(r.maxFailure)}`, input.nowMs);
    return r;
  }
  if (wave !== undefined && wave.state === "running" && !r.devices.some((d) => d.wave === wave.index && d.outcome === "pending")) {
    wave.state = "done";
  }
  const running = wave !== undefined && wave.state === "running";
  if (running) return r;
  const next = r.current + 1;
  if (next >= r.waves.length) {
    r.state = "done";
    return r;
  }
  if (r.state === "paused") return r;
  if (!input.inWindow) {
    r.state = "waiting-window";
    return r;
  }
  r.state = "running";
  r.current = next;
  const w = r.waves[next]!;
  w.state = "running";
  w.startedAtMs = input.nowMs;
  for (const d of r.devices) if (d.wave === next) d.outcome = "pending";
  return r;
}

/** Operator actions. Throw ROLLOUT_CONFLICT when the state does not allow them. */
export function pause(prev: RolloutRecord): RolloutRecord {
  if (prev.state !== "running" && prev.state !== "waiting-window") throw conflict(prev, "pause");
  return { ...clone(prev), state: "paused" };
}

export function resume(prev: RolloutRecord): RolloutRecord {
  if (prev.state !== "paused") throw conflict(prev, "resume");
  return { ...clone(prev), state: "running" };
}

/** `nowMs` (wall-clock ms) starts the watch of the reverted devices (without it they are watched until they settle). */
export function cancel(prev: RolloutRecord, nowMs?: number): RolloutRecord {
  if (isFinished(prev.state)) throw conflict(prev, "cancel");
  const r = clone(prev);
  stop(r, "cancelled", "cancelled by the operator", nowMs);
  return r;
}

export interface SettleInput {
  /** Wall-clock ms. */
  nowMs: number;
  /** What was seen of watched devices, by id (others ignored). */
  observed?: ReadonlyMap<string, Observation>;
}

/**
 * After a stop: how the update of each watched reverted device ended. Running the version (the device was
 * Staged, too late to cancel, and its self-test passed) → `installedAfterCancel`; RolledBack or Failed on it
 * → `failed`; a state that is no longer in flight (Idle after OTA_UPDATE_CANCELLED, a wait that ended, an
 * update that never started) → stays `reverted`. Each of these ends the watch, as does `waveDeadlineMs`
 * after the stop (still `reverted`: its end was not seen). Returns a new record.
 */
export function settle(prev: RolloutRecord, input: SettleInput): RolloutRecord {
  const r = clone(prev);
  for (const d of r.devices) {
    if (d.watch !== true || d.revertDone !== true) continue;
    const o = input.observed?.get(d.id);
    if (o !== undefined) {
      if (o.status !== undefined) d.status = o.status;
      if (o.error !== undefined) d.error = o.error;
      if (o.outcome === "updated") d.outcome = "installedAfterCancel";
      else if (o.outcome === "failed") d.outcome = "failed";
      if (o.outcome !== "pending" || o.inFlight !== true) delete d.watch;
    }
    if (d.watch === true && r.stoppedAtMs !== undefined && input.nowMs - r.stoppedAtMs >= r.waveDeadlineMs) delete d.watch;
  }
  return r;
}

function conflict(r: RolloutRecord, action: string): ShadowOtaError {
  return new ShadowOtaError(ROLLOUT_CODES.ROLLOUT_CONFLICT, `cannot ${action} rollout ${r.id}: it is ${r.state}`, { detail: { id: r.id, state: r.state } });
}

export function formatPercent(x: number): string {
  return `${Math.round(x * 1000) / 10}%`;
}

/** The API's view of a rollout (GET /rollouts/{id}; rollout-http.ts documents it). */
export function rolloutView(r: RolloutRecord): Json {
  const waves = r.waves.map((w) => {
    const ds = r.devices.filter((d) => d.wave === w.index);
    return {
      index: w.index, size: w.size, state: w.state, devices: ds.map((d) => d.id),
      updated: ds.filter((d) => d.outcome === "updated").length,
      failed: ds.filter((d) => d.outcome === "failed").length,
      pending: ds.filter((d) => d.outcome === "pending").length,
      reverted: ds.filter((d) => d.outcome === "reverted").length,
      installedAfterCancel: ds.filter((d) => d.outcome === "installedAfterCancel").length,
    };
  });
  const devices: Record<string, Json> = {};
  for (const d of r.devices) {
    devices[d.id] = { cloud: d.cloud, wave: d.wave, outcome: d.outcome, status: d.status ?? null, error: d.error ?? null, watched: d.watch === true };
  }
  const view: Record<string, Json> = {
    id: r.id, version: r.version, state: r.state, waves, failureRate: failureRate(r), maxFailure: r.maxFailure,
    wavesSpec: r.wavesSpec, waveDeadlineMs: r.waveDeadlineMs, createdAt: r.createdAt, devices,
  };
  if (r.window !== undefined) view["window"] = r.window;
  if (r.reason !== undefined) view["reason"] = r.reason;
  return view;
}
