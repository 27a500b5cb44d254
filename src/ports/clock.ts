/**
 * Port: time and timers. The core never calls Date.now() or setTimeout itself; it asks this port, so tests
 * drive time by hand and the device uses Moddable's Timer and Time.
 */
export interface Clock {
  /** Monotonic milliseconds (never goes backwards; origin unspecified). */
  monotonicMs(): number;
  /** Wall clock, seconds since the Unix epoch (only for timestamps in reports; may be 0 before SNTP). */
  epochSeconds(): number;
  /** Calls `fn` once after `ms`; returns a handle for `cancel`. */
  setTimer(ms: number, fn: () => void): unknown;
  /** Cancels a timer; safe with a handle that already fired or was cancelled. */
  cancel(handle: unknown): void;
  /** Local time's offset from UTC in minutes (east positive), for update windows (src/core/update-policy.ts).
   *  Optional: without it local time is UTC. */
  utcOffsetMinutes?(): number;
}
