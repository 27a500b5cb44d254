/**
 * The Clock port (src/ports/clock.ts) on Node's clocks and timers, for the local cloud's services when no
 * test clock is injected. Not for the device (src/device has Moddable's) and not for tests that assert
 * timestamps (they inject a fixed clock).
 */
import type { Clock } from "../ports/clock";

export const systemClock: Clock = {
  monotonicMs: () => performance.now(),
  epochSeconds: () => Date.now() / 1000,
  setTimer: (ms, fn) => setTimeout(fn, ms),
  cancel: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};
