/**
 * The device's update policy from desired state: when an update that desired asks for may start.
 * Platform-neutral (runs unchanged on XS and Node); pure helpers plus a small gate that sits between the
 * device agent and the OTA controller (device-app.ts wires it).
 *
 * Desired (both seeds, beside the seed's firmware version):
 *
 *   "firmwareUpdatePolicy": {
 *     "window": "02:00-04:00",     an update starts only between these local times (end exclusive; a window
 *                                  may wrap midnight: "22:00-02:00"); absent or null: any time
 *     "requireConsent": true,      an update waits until the operator accepts that very version
 *     "accept": "1.1.0"            the operator's consent (set by `npm run cloud -- install ID` / the fleet page)
 *   }
 *
 * Local time is the wall clock (Clock.epochSeconds: SNTP on the device, the system clock on Node) plus the
 * clock's UTC offset (Clock.utcOffsetMinutes, optional: UTC without it). Before the wall clock is set
 * (epoch seconds before 2020, the ESP32's state before SNTP) no window is open: the update waits.
 *
 * While an update waits, `reported.firmwareUpdate` says so — state "WaitingConsent" or "WaitingWindow", `to`
 * the version, `window` the window — and the gate reports the OTA controller's own document again when the
 * wait ends (desired went back to the running version) or hands the version on when it may start.
 *
 * Not here: the update itself (ota-controller.ts), timers of its own (the Clock port).
 */
import { getPath } from "./config-diff";
import { ShadowOtaError } from "./errors";
import { isJsonObject, type Json, type JsonObject } from "./json";
import type { Clock } from "../ports/clock";
import type { Log } from "../ports/log";

export const POLICY_CODES = {
  /** `firmwareUpdatePolicy.window` is not "HH:MM-HH:MM" (24-hour, start ≠ end). Refused like any config
   *  leaf: reported in `reported.lastError`, and the update does not start while it stands. */
  POLICY_WINDOW_INVALID: "POLICY_WINDOW_INVALID",
  /** `firmwareUpdatePolicy` holds something other than window / requireConsent / accept of the right types. */
  POLICY_INVALID: "POLICY_INVALID",
} as const;

/** Minutes since local midnight: [start, end). */
export interface UpdateWindow {
  start: number;
  end: number;
}

/** "02:00-04:00" → {start: 120, end: 240}. Throws POLICY_WINDOW_INVALID. */
export function parseWindow(text: string): UpdateWindow {
  const m = typeof text === "string" ? /^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$/.exec(text) : null;
  if (m === null) throw new ShadowOtaError(POLICY_CODES.POLICY_WINDOW_INVALID, `update window ${JSON.stringify(String(text).slice(0, 40))} is not HH:MM-HH:MM`);
  const start = Number(m[1]) * 60 + Number(m[2]);
  const end = Number(m[3]) * 60 + Number(m[4]);
  if (start === end) throw new ShadowOtaError(POLICY_CODES.POLICY_WINDOW_INVALID, `update window ${text} is empty (start = end)`);
  return { start, end };
}

/** Whether `minute` (0..1439) is inside the window (wrapping midnight when end < start). */
export function inWindow(w: UpdateWindow, minute: number): boolean {
  // Stryker disable next-line EqualityOperator: `<` and `<=` differ only when start = end, which parseWindow refuses
  const plain = w.start < w.end;
  return plain ? minute >= w.start && minute < w.end : minute >= w.start || minute < w.end;
}

/** Minutes until the window opens (0 when inside). */
export function minutesUntilOpen(w: UpdateWindow, minute: number): number {
  if (inWindow(w, minute)) return 0;
  return (w.start - minute + 1440) % 1440;
}

/** 2020-01-01T00:00:00Z: a wall clock earlier than this has not been set (no SNTP yet). */
export const CLOCK_SET_AFTER = 1577836800;

/** Local minute of the day, or undefined when the wall clock is not set. */
export function localMinute(epochSeconds: number, utcOffsetMinutes: number): number | undefined {
  if (!(epochSeconds >= CLOCK_SET_AFTER)) return undefined;
  const m = Math.floor(epochSeconds / 60) + utcOffsetMinutes;
  return ((m % 1440) + 1440) % 1440;
}

export interface UpdatePolicy {
  window?: UpdateWindow;
  windowText?: string;
  requireConsent: boolean;
  accept?: string;
}

/** desired.firmwareUpdatePolicy → policy. Absent/null → no constraint. Throws POLICY_INVALID / POLICY_WINDOW_INVALID. */
export function parsePolicy(v: Json | undefined): UpdatePolicy {
  if (v === undefined || v === null) return { requireConsent: false };
  if (!isJsonObject(v)) throw new ShadowOtaError(POLICY_CODES.POLICY_INVALID, "firmwareUpdatePolicy must be an object");
  const o = v as JsonObject;
  const p: UpdatePolicy = { requireConsent: false };
  for (const [k, val] of Object.entries(o)) {
    if (k === "window") {
      if (val === null) continue;
      if (typeof val !== "string") throw new ShadowOtaError(POLICY_CODES.POLICY_WINDOW_INVALID, "firmwareUpdatePolicy.window must be a string HH:MM-HH:MM");
      p.window = parseWindow(val);
      p.windowText = val;
    } else if (k === "requireConsent") {
      if (val === null) continue;
      if (typeof val !== "boolean") throw new ShadowOtaError(POLICY_CODES.POLICY_INVALID, "firmwareUpdatePolicy.requireConsent must be true or false");
      p.requireConsent = val;
    } else if (k === "accept") {
      if (val === null) continue;
      if (typeof val !== "string" || val.length > 64) throw new ShadowOtaError(POLICY_CODES.POLICY_INVALID, "firmwareUpdatePolicy.accept must be a version string");
      p.accept = val;
    } else {
      throw new ShadowOtaError(POLICY_CODES.POLICY_INVALID, `firmwareUpdatePolicy has an unknown member ${JSON.stringify(k.slice(0, 40))}`);
    }
  }
  return p;
}

export type PolicyVerdict =
  | { go: true }
  | { go: false; state: "WaitingConsent" }
  | { go: false; state: "WaitingWindow"; inMinutes?: number };

/** May an update to `version` start now? Consent first (an operator's yes does not open a window). */
export function decide(policy: UpdatePolicy, version: string, minute: number | undefined): PolicyVerdict {
  if (policy.requireConsent && policy.accept !== version) return { go: false, state: "WaitingConsent" };
  if (policy.window !== undefined) {
    if (minute === undefined) return { go: false, state: "WaitingWindow" };
    if (!inWindow(policy.window, minute)) return { go: false, state: "WaitingWindow", inMinutes: minutesUntilOpen(policy.window, minute) };
  }
  return { go: true };
}

// ---------------------------------------------------------------------------------------------------------
// The gate between the device agent and the OTA controller

/** What the gate needs: the wall clock (and its UTC offset) and timers, a log. */
export interface UpdateGatePorts {
  clock: Clock;
  log: Log;
}

export interface UpdateGateOptions {
  /** The running version (the gate's waiting report says `from`). */
  running: string;
  /** Where desired holds the firmware version (to see it go back to the running one). */
  firmwareVersionPath: readonly string[];
  /** Where desired holds the policy. Default ["firmwareUpdatePolicy"]. */
  policyPath?: readonly string[];
  /** Hands a version on to the OTA controller. */
  start(version: string, baseUrl: string | undefined): void;
  /** Sends `reported.firmwareUpdate`. */
  report(update: JsonObject): void;
  /** The OTA controller's own reported document (sent again when a wait ends without an update). */
  otaReported(): JsonObject;
  /** Desired as the sync knows it now (ShadowSync.getState().desired). A change that leaves no delta — desired
   *  going back to the version the device reports, a rollout's revert — reaches the gate's onDesired only
   *  through ShadowSync's onDesiredDocument (device-app.ts wires it); the gate also looks here before it lets
   *  a waiting version start, in case a revert has not been handed to it yet. */
  desired?(): JsonObject | undefined;
}

/** How often a wait for a wall clock that is not set yet looks again. */
export const CLOCK_UNSET_RECHECK_MS = 60_000;

export class UpdateGate {
  readonly #ports: UpdateGatePorts;
  readonly #o: UpdateGateOptions;
  /** The held version; `desiredVersion` is what desired named at the request (a direct method's version is
   *  not in desired): the wait ends when desired names something else. */
  #pending: { version: string; baseUrl: string | undefined; desired: JsonObject; desiredVersion: Json | undefined } | undefined;
  #reportedState: string | undefined;
  /** State, version and error of the last waiting report (not sent twice). */
  #lastKey: string | undefined;
  #timer: unknown;
  #closed = false;

  constructor(ports: UpdateGatePorts, options: UpdateGateOptions) {
    this.#ports = ports;
    this.#o = options;
  }

  /** The update state the gate holds the version in ("WaitingConsent" / "WaitingWindow"), if any. */
  get waiting(): string | undefined {
    return this.#reportedState; // set only while a version is held (#send), cleared whenever it is let go
  }

  /** A desired version other than the running one (from DeviceAgent), with the whole desired document. */
  request(version: string, baseUrl: string | undefined, desired: JsonObject): void {
    if (this.#closed) return;
    this.#pending = { version, baseUrl, desired, desiredVersion: getPath(this.#o.desired?.() ?? desired, this.#o.firmwareVersionPath) };
    this.#evaluate();
  }

  /** Any desired change: the policy or consent may have changed, or the version gone back. */
  onDesired(desired: JsonObject): void {
    const p = this.#pending;
    if (p === undefined || this.#closed) return;
    const wanted = getPath(desired, this.#o.firmwareVersionPath);
    if (wanted !== p.desiredVersion) {
      this.#endWait(wanted);
      return;
    }
    p.desired = desired;
    this.#evaluate();
  }

  /** Desired moved on: to another version (the agent hands that one over itself) or back to the running one
   *  (a rollout's revert): the wait ends, and the controller's own state is what the cloud should see. */
  #endWait(wanted: Json | undefined): void {
    const p = this.#pending;
    this.#pending = undefined;
    this.#cancelTimer();
    // A held version has always been reported as waiting (or Failed) by the time its wait can end: request()
    // evaluates at once, and either lets it go (no wait) or reports it.
    this.#reportedState = undefined;
    this.#lastKey = undefined;
    this.#o.report(this.#o.otaReported());
    this.#ports.log.log("info", "policy.wait-ended", { version: p?.version ?? null, desired: typeof wanted === "string" ? wanted : null });
  }

  /** Cancels the window timer. Safe twice. */
  close(): void {
    this.#closed = true;
    this.#cancelTimer();
  }

  #evaluate(): void {
    const p = this.#pending;
    if (p === undefined) return;
    this.#cancelTimer();
    const now = this.#o.desired?.();
    if (now !== undefined) {
      const wanted = getPath(now, this.#o.firmwareVersionPath);
      if (wanted !== p.desiredVersion) {
        this.#endWait(wanted);
        return;
      }
      p.desired = now;
    }
    let policy: UpdatePolicy;
    try {
      policy = parsePolicy(getPath(p.desired, this.#o.policyPath ?? ["firmwareUpdatePolicy"]));
    } catch (e) {
      const err = e as ShadowOtaError;
      this.#ports.log.log("warn", "policy.invalid", { code: err.code, message: err.message });
      this.#send("Failed", p.version, { ...err.toReported(), time: this.#ports.clock.epochSeconds() });
      return;
    }
    const clock = this.#ports.clock;
    const minute = localMinute(clock.epochSeconds(), clock.utcOffsetMinutes?.() ?? 0);
    const verdict = decide(policy, p.version, minute);
    if (verdict.go) {
      this.#pending = undefined;
      this.#reportedState = undefined;
      this.#lastKey = undefined;
      this.#ports.log.log("info", "policy.go", { version: p.version });
      this.#o.start(p.version, p.baseUrl);
      return;
    }
    if (verdict.state === "WaitingWindow") {
      const ms = verdict.inMinutes === undefined ? CLOCK_UNSET_RECHECK_MS
        : Math.max(1000, verdict.inMinutes * 60_000 - (clock.epochSeconds() % 60) * 1000);
      this.#timer = clock.setTimer(ms, () => { this.#timer = undefined; this.#evaluate(); });
    }
    this.#send(verdict.state, p.version, null);
  }

  #send(state: string, version: string, lastError: Json): void {
    const key = `${state} ${version} ${JSON.stringify(lastError)}`;
    if (this.#lastKey === key) return; // the same wait again (a desired change that changed nothing for it)
    this.#lastKey = key;
    this.#reportedState = state;
    this.#ports.log.log("info", "policy.wait", { state, version });
    // Every member the controller reports, so the next controller report replaces all of it.
    this.#o.report({ state, from: this.#o.running, to: version, bytes: null, total: null, percent: null, attempt: null, lastError });
  }

  #cancelTimer(): void {
    if (this.#timer !== undefined) this.#ports.clock.cancel(this.#timer);
    this.#timer = undefined;
  }
}
