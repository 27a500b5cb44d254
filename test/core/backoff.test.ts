/**
 * Tests of src/core/backoff.ts, the one retry policy (capped exponential backoff with full jitter): every
 * delay lies in [0, min(maxMs, initialMs * 2^failures)], the cap grows by doubling up to maxMs, out-of-range
 * inputs are clamped or refused, maxAttempts bounds a retry loop, and draws from a seeded PRNG spread
 * evenly over the whole range (full jitter, not the "equal jitter" [cap/2, cap] the adapters used before).
 *
 * Runs on Node (Jest) and on XS (`node scripts/test-xs.mjs backoff`): no Node APIs, only the Jest subset
 * the shim (test/xs/jest-shim.ts) implements. The PRNG is seeded, so every run draws the same numbers.
 */
import fc from "fast-check";
import { backoffDelay, mayRetry, type BackoffPolicy } from "../../src/core/backoff";

const POLICY: BackoffPolicy = { initialMs: 100, maxMs: 10_000 };

/** mulberry32: a small seeded PRNG with values in [0, 1), so the distribution checks are reproducible. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const always = (r: number) => () => r;

describe("backoffDelay bounds", () => {
  it("is an integer in [0, min(maxMs, initialMs * 2^failures)] for any policy, failure count and draw", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100_000 }),
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.integer({ min: 0, max: 200 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (initialMs, extra, failures, r) => {
          const policy = { initialMs, maxMs: initialMs + extra };
          const d = backoffDelay(failures, policy, always(r));
          const cap = Math.min(policy.maxMs, initialMs * 2 ** Math.min(failures, 30));
          expect(Number.isInteger(d)).toBe(true);
          expect(d).toBeGreaterThanOrEqual(0);
          expect(d).toBeLessThanOrEqual(cap);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("reaches both ends: 0 for a draw of 0, the cap for a draw of 1", () => {
    expect(backoffDelay(0, POLICY, always(0))).toBe(0);
    expect(backoffDelay(0, POLICY, always(1))).toBe(100);
    expect(backoffDelay(3, POLICY, always(0))).toBe(0);
    expect(backoffDelay(3, POLICY, always(1))).toBe(800);
    expect(backoffDelay(3, POLICY, always(0.5))).toBe(400);
  });

  it("gives whole milliseconds for tiny draws too (XS's Math.round keeps a subnormal as it is)", () => {
    expect(backoffDelay(0, POLICY, always(5e-324))).toBe(0);
    expect(backoffDelay(0, POLICY, always(1e-310))).toBe(0);
  });

  it("draws exactly once per call", () => {
    let calls = 0;
    backoffDelay(2, POLICY, () => { calls++; return 0.25; });
    expect(calls).toBe(1);
  });
});

describe("backoffDelay growth and cap", () => {
  it("doubles the cap per failure from initialMs until maxMs, then stays there", () => {
    const caps = Array.from({ length: 10 }, (_, f) => backoffDelay(f, POLICY, always(1)));
    expect(caps).toEqual([100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
  });

  it("never exceeds maxMs, however many failures (huge counts and Infinity included)", () => {
    for (const failures of [30, 31, 64, 1_000, 1e9, Number.MAX_SAFE_INTEGER, Infinity]) {
      expect(backoffDelay(failures, POLICY, always(1))).toBe(10_000);
      expect(backoffDelay(failures, { initialMs: 1, maxMs: 2 ** 40 }, always(1))).toBe(2 ** 30);
    }
  });

  it("is non-decreasing in failures for a fixed draw", () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1, noNaN: true }), (r) => {
        let previous = -1;
        for (let f = 0; f < 40; f++) {
          const d = backoffDelay(f, POLICY, always(r));
          expect(d).toBeGreaterThanOrEqual(previous);
          previous = d;
        }
      }),
      { numRuns: 100 },
    );
  });

  it("with initialMs === maxMs every cap is that value (a fixed window)", () => {
    for (let f = 0; f < 5; f++) expect(backoffDelay(f, { initialMs: 250, maxMs: 250 }, always(1))).toBe(250);
  });
});

describe("backoffDelay clamping and refusals", () => {
  it("clamps draws outside [0, 1]; a NaN draw counts as 0", () => {
    expect(backoffDelay(2, POLICY, always(-0.5))).toBe(0);
    expect(backoffDelay(2, POLICY, always(-Infinity))).toBe(0);
    expect(backoffDelay(2, POLICY, always(1.5))).toBe(400);
    expect(backoffDelay(2, POLICY, always(Infinity))).toBe(400);
    expect(backoffDelay(2, POLICY, always(NaN))).toBe(0);
  });

  it("counts negative failures as 0 and rounds fractional ones down", () => {
    expect(backoffDelay(-1, POLICY, always(1))).toBe(100);
    expect(backoffDelay(-Infinity, POLICY, always(1))).toBe(100);
    expect(backoffDelay(2.9, POLICY, always(1))).toBe(400);
  });

  it("refuses a NaN failure count and policies outside 0 < initialMs <= maxMs < Infinity with RangeError", () => {
    expect(() => backoffDelay(NaN, POLICY, always(0.5))).toThrow(RangeError);
    for (const bad of [
      { initialMs: 0, maxMs: 100 },
      { initialMs: -1, maxMs: 100 },
      { initialMs: NaN, maxMs: 100 },
      { initialMs: 200, maxMs: 100 },
      { initialMs: 100, maxMs: NaN },
      { initialMs: 100, maxMs: Infinity },
    ]) {
      expect(() => backoffDelay(0, bad, always(0.5))).toThrow(RangeError);
    }
  });
});

describe("mayRetry", () => {
  it("allows attempts while fewer than maxAttempts were made", () => {
    const policy = { ...POLICY, maxAttempts: 3 };
    expect([0, 1, 2, 3, 4].map((n) => mayRetry(n, policy))).toEqual([true, true, true, false, false]);
    expect(mayRetry(0, { ...POLICY, maxAttempts: 0 })).toBe(false);
  });

  it("is unbounded without maxAttempts", () => {
    for (const n of [0, 1, 100, 1e9]) expect(mayRetry(n, POLICY)).toBe(true);
  });

  it("bounds a retry loop to exactly maxAttempts attempts, with a wait between each two", () => {
    for (const maxAttempts of [1, 2, 5]) {
      const policy = { ...POLICY, maxAttempts };
      const random = seeded(maxAttempts);
      let attempts = 0;
      const waits: number[] = [];
      // The caller's loop: attempt, fail, and wait only when another attempt is allowed.
      for (;;) {
        attempts++;
        if (!mayRetry(attempts, policy)) break;
        waits.push(backoffDelay(attempts - 1, policy, random));
      }
      expect(attempts).toBe(maxAttempts);
      expect(waits.length).toBe(maxAttempts - 1);
      waits.forEach((w, i) => expect(w).toBeLessThanOrEqual(100 * 2 ** i));
    }
  });
});

describe("full jitter distribution (seeded PRNG)", () => {
  const N = 20_000;

  it("spreads delays evenly over [0, cap]: mean near cap/2, every eighth of the range about equally full", () => {
    const random = seeded(0x5eed);
    const cap = 800; // failures 3 with POLICY
    const buckets = new Array<number>(8).fill(0);
    let sum = 0;
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < N; i++) {
      const d = backoffDelay(3, POLICY, random);
      sum += d;
      min = Math.min(min, d);
      max = Math.max(max, d);
      buckets[Math.min(Math.floor((d / cap) * 8), 7)]!++;
    }
    // Uniform on [0, 800]: mean 400, standard error of the mean 800 / sqrt(12 N) ≈ 1.6.
    expect(Math.abs(sum / N - cap / 2)).toBeLessThan(10);
    // The low half is used too (equal jitter would never go below cap/2).
    expect(min).toBeLessThan(cap * 0.01);
    expect(max).toBeGreaterThan(cap * 0.99);
    // Chi-square against the uniform expectation; 7 degrees of freedom, 0.1 % critical value 24.3.
    const expected = N / 8;
    const chi2 = buckets.reduce((acc, b) => acc + ((b - expected) ** 2) / expected, 0);
    expect(chi2).toBeLessThan(24.3);
  });

  it("keeps the spread when capped: at maxMs the draws cover [0, maxMs]", () => {
    const random = seeded(42);
    let below = 0;
    for (let i = 0; i < N; i++) if (backoffDelay(50, POLICY, random) < POLICY.maxMs / 2) below++;
    expect(Math.abs(below / N - 0.5)).toBeLessThan(0.02);
  });
});
