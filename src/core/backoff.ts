/**
 * One retry policy for everything that reconnects or retries: capped exponential backoff with full jitter
 * (AWS Architecture Blog, "Exponential Backoff And Jitter": sleep = random(0, min(cap, base * 2^attempt))),
 * with an optional bound on attempts. Pure: the caller's Clock waits, the caller's random source draws.
 *
 * Used by the OTA controller's download retries (src/core/ota-controller.ts) and by both MQTT adapters'
 * reconnect (src/node/mqtt-node.ts, src/device/mqtt-moddable.ts).
 */
export interface BackoffPolicy {
  /** The cap of the first wait, ms (> 0). */
  readonly initialMs: number;
  /** The largest cap, ms (>= initialMs). */
  readonly maxMs: number;
  /** Attempts allowed in all, the first included; undefined = unbounded. */
  readonly maxAttempts?: number;
}

/** A random source: numbers in [0, 1). Math.random on every platform unless a test injects one. */
export type RandomSource = () => number;

/**
 * The wait before retry number `failures + 1` (after `failures` failures, 0-based): uniform in
 * [0, min(maxMs, initialMs * 2^failures)] ("full jitter"), in whole milliseconds. A random value
 * outside [0, 1] is clamped (NaN counts as 0); a negative `failures` counts as 0. Throws RangeError for a
 * policy that breaks 0 < initialMs <= maxMs < Infinity, or a NaN `failures`.
 */
export function backoffDelay(failures: number, policy: BackoffPolicy, random: RandomSource): number {
  if (!(policy.initialMs > 0) || !(policy.maxMs >= policy.initialMs) || !Number.isFinite(policy.maxMs)) {
    throw new RangeError("backoff: need 0 < initialMs <= maxMs < Infinity");
  }
  if (Number.isNaN(failures)) throw new RangeError("backoff: failures is NaN");
  // Negative counts are 0; the doubling stops at 2^30 (about 12 days from 1 ms), so the cap stays finite.
  const n = Math.min(Math.max(Math.floor(failures), 0), 30);
  const cap = Math.floor(Math.min(policy.maxMs, policy.initialMs * 2 ** n));
  const drawn = random();
  // NaN from a broken source counts as 0 (retry at once) rather than poisoning the caller's timer.
  const r = Number.isNaN(drawn) ? 0 : Math.min(Math.max(drawn, 0), 1);
  // Whole milliseconds 0..cap, each equally likely (r = 1 is folded onto cap). Not Math.round: the XS in
  // @agoric/xsnap returns a subnormal argument unchanged from Math.round (Math.round(5e-324) === 5e-324).
  return Math.min(cap, Math.floor(r * (cap + 1)));
}

/** True when another attempt is allowed after `attempts` attempts made so far. */
export function mayRetry(attempts: number, policy: BackoffPolicy): boolean {
  return policy.maxAttempts === undefined || attempts < policy.maxAttempts;
}
