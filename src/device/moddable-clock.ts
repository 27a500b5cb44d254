/**
 * Clock (src/ports/clock.ts) over Moddable's Timer and Time modules. `Time.ticks` is the monotonic
 * millisecond counter; the wall clock is only meaningful after SNTP has set it.
 */
import Timer from "timer";
import Time from "time";
import type { Clock } from "../ports/clock";

export const moddableClock: Clock = {
  monotonicMs: () => Time.ticks,
  epochSeconds: () => Math.floor(Date.now() / 1000),
  setTimer: (ms, fn) => Timer.set(() => fn(), ms),
  cancel: (handle) => { if (handle) Timer.clear(handle as Timer); },
};
