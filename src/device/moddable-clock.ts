/**
 * Clock (src/ports/clock.ts) over Moddable's Timer and Time modules. `Time.ticks` is the monotonic
 * millisecond counter; the wall clock is only meaningful after SNTP has set it. The local time of an update
 * window (src/core/update-policy.ts) is UTC plus `Time.timezone` and `Time.dst` (seconds each; the SDK's
 * base `time` module, documentation/base/base.md). main.ts sets the time zone from the config's
 * `utcOffsetMinutes` (src/device/device-config.ts); both are 0 until set, so windows are then in UTC.
 */
import Timer from "timer";
import Time from "time";
import type { Clock } from "../ports/clock";

export const moddableClock: Clock = {
  monotonicMs: () => Time.ticks,
  epochSeconds: () => Math.floor(Date.now() / 1000),
  setTimer: (ms, fn) => Timer.set(() => fn(), ms),
  cancel: (handle) => { if (handle) Timer.clear(handle as Timer); },
  utcOffsetMinutes: () => Math.round(((Time.timezone || 0) + (Time.dst || 0)) / 60),
};

/** Sets the SDK's time zone (Time.timezone, seconds east of UTC) from minutes; daylight saving stays as it is. */
export function setUtcOffsetMinutes(minutes: number): void {
  Time.timezone = minutes * 60;
}
