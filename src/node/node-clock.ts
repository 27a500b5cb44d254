/**
 * Clock (src/ports/clock.ts) on Node: performance.now() for monotonic time, Date.now() for the wall clock,
 * setTimeout/clearTimeout for timers. With `unref`, pending timers do not keep the process alive (for
 * tools that should exit when their work is done; the device simulator keeps them referenced).
 *
 * Not here: a controllable clock (tests use ManualClock in test/core/fake-ports.ts).
 */
import type { Clock } from "../ports/clock";

export interface NodeClockOptions {
  /** Do not let pending timers keep Node running (default false). */
  unref?: boolean;
}

export class NodeClock implements Clock {
  readonly #unref: boolean;

  constructor(options: NodeClockOptions = {}) {
    this.#unref = options.unref === true;
  }

  monotonicMs(): number {
    return performance.now();
  }

  /** Whole seconds since the Unix epoch (AWS and Azure timestamps are whole seconds). */
  epochSeconds(): number {
    return Math.floor(Date.now() / 1000);
  }

  /** The system's local time zone (TZ), daylight saving included, at this moment. */
  utcOffsetMinutes(): number {
    return -new Date().getTimezoneOffset();
  }

  /** `fn` runs once after `ms` (negative or NaN = as soon as possible). */
  setTimer(ms: number, fn: () => void): unknown {
    const t = setTimeout(fn, Number.isFinite(ms) && ms > 0 ? ms : 0);
    if (this.#unref) t.unref();
    return t;
  }

  /** Safe with a handle that fired, was cancelled, or is not a timer at all. */
  cancel(handle: unknown): void {
    if (handle !== undefined && handle !== null) clearTimeout(handle as ReturnType<typeof setTimeout>);
  }
}
