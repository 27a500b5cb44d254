/**
 * The rollout's decision core (src/sim/rollout-core.ts) under random fleets, wave lists, thresholds and
 * failure patterns (fast-check, seeded, a fixed number of runs): it never has more devices started than its
 * waves allow, it stops as soon as the failure rate is above the threshold and starts nobody after that,
 * every started device ends with a verdict or reverted (devices that never answer fail at the wave's
 * deadline, itself random), and a rollout that never passes the threshold
 * reaches every device its waves cover. Plus the wave grammar and the deadline, by example.
 */
import fc from "fast-check";
import {
  allowedThrough, cancel, createRollout, failureRate, needsDesired, needsRevert, parseMaxFailure, parseWaves, pause, resume,
  rolloutView, settle, step, toObserve, toSettle, waveSizes, type Observation, type RolloutRecord,
} from "../../src/sim/rollout-core";
import { isShadowOtaError } from "../../src/core/errors";

const HOUR = 3_600_000;

function fleet(n: number): Array<{ id: string; cloud: "aws" | "azure" }> {
  return Array.from({ length: n }, (_, i) => ({ id: `dev-${String(i).padStart(4, "0")}`, cloud: i % 3 === 0 ? "azure" : "aws" }));
}

/** Marks desired as written on what the record asks for (what the engine does after each step). */
function written(r: RolloutRecord): RolloutRecord {
  const need = new Set([...needsDesired(r), ...needsRevert(r)].map((d) => d.id));
  return { ...r, devices: r.devices.map((d) => (need.has(d.id) ? (d.revert === true ? { ...d, revertDone: true } : { ...d, desiredSet: true, previous: null }) : d)) };
}

const waveItem = fc.oneof(
  fc.integer({ min: 1, max: 60 }).map((n) => ({ text: String(n), count: n })),
  fc.integer({ min: 1, max: 100 }).map((p) => ({ text: `${p}%`, percent: p })),
);

describe("rollout decisions (property)", () => {
  it("never starts more devices than its waves allow and stops once the failure rate passes the threshold", () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 120 }),
      fc.array(waveItem, { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 0, max: 100 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.integer({ min: 1, max: 1 << 30 }),
      fc.integer({ min: 5, max: 3600 }),
      (n, items, maxPct, failP, seed, deadlineS) => {
        // Cumulative targets: sort by what they mean on this fleet so the list is valid.
        const resolve = (i: { count?: number; percent?: number }): number => (i.count ?? Math.ceil(((i.percent ?? 0) * n) / 100 - 1e-9));
        const spec = [...items].sort((a, b) => resolve(a) - resolve(b)).map((i) => i.text).join(",");
        let r = createRollout({ id: "r", version: "1.1.0", devices: fleet(n), waves: spec, maxFailure: maxPct / 100, waveDeadlineMs: deadlineS * 1000, createdAt: 0 });
        const covered = r.waves.reduce((s, w) => s + w.size, 0);
        let x = seed;
        const rand = (): number => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return (x >>> 0) / 2 ** 32; };
        const silent = new Set(r.devices.filter(() => rand() < 0.1).map((d) => d.id)); // never answer
        let now = 0;
        let abortedAt: number | undefined;
        for (let tick = 0; tick < 10 * (r.waves.length + 2) + 4 * n; tick++) {
          const observed = new Map<string, Observation>();
          for (const d of toObserve(r)) {
            if (silent.has(d.id)) continue;
            const u = rand();
            if (u < 0.4) observed.set(d.id, { outcome: rand() < failP ? "failed" : "updated" });
          }
          const before = r;
          r = written(step(r, { nowMs: now, inWindow: true, observed }));
          now += 1000 + Math.floor(rand() * deadlineS * 400); // on average a fifth of the deadline
          const started = r.devices.filter((d) => d.outcome !== "waiting").length;
          // Never more than the waves through the current one allow.
          expect(started).toBeLessThanOrEqual(allowedThrough(r, r.current));
          // Stopped as soon as the rate is above the threshold.
          if (failureRate(r) > r.maxFailure) expect(["aborted", "cancelled"]).toContain(r.state);
          if (r.state === "aborted") {
            abortedAt ??= started;
            // Nobody starts after an abort, nothing is left pending, nothing needs desired.
            expect(started).toBe(abortedAt);
            expect(r.devices.some((d) => d.outcome === "pending")).toBe(false);
            expect(needsDesired(r)).toEqual([]);
            expect(before.state === "aborted" || failureRate(before) <= before.maxFailure || r.state === "aborted").toBe(true);
          }
          if (r.state === "done" || r.state === "aborted") break;
        }
        if (r.state === "done") {
          // A finished rollout reached every device its waves cover, and passed the threshold nowhere.
          expect(r.devices.filter((d) => d.outcome === "updated" || d.outcome === "failed").length).toBe(covered);
          expect(failureRate(r)).toBeLessThanOrEqual(r.maxFailure);
        }
        // Guard only: the loop bound is generous; a stuck rollout is a bug.
        expect(["done", "aborted"]).toContain(r.state);
      },
    ), { numRuns: 300, seed: 20261202 });
  });

  it("an abort puts desired back on the wave's unfinished devices only, once", () => {
    let r = createRollout({ id: "r", version: "1.1.0", devices: fleet(10), waves: "1,3,100%", maxFailure: 0.2, waveDeadlineMs: HOUR, createdAt: 0 });
    r = written(step(r, { nowMs: 0, inWindow: true }));
    expect(r.devices.filter((d) => d.outcome === "pending").map((d) => d.id)).toEqual(["dev-0000"]);
    r = written(step(r, { nowMs: 1, inWindow: true, observed: new Map([["dev-0000", { outcome: "updated" }]]) }));
    expect(r.current).toBe(1);
    expect(r.devices.filter((d) => d.outcome === "pending").map((d) => d.id)).toEqual(["dev-0001", "dev-0002"]);
    // One of three started fails: 33 % > 20 %.
    const s = step(r, { nowMs: 2, inWindow: true, observed: new Map([["dev-0001", { outcome: "failed", status: "RolledBack", error: "OTA_SELF_TEST_FAILED" }]]) });
    expect(s.state).toBe("aborted");
    expect(s.reason).toMatch(/33\.3% \(1 of 3\) is above the threshold 20%/);
    expect(needsRevert(s).map((d) => d.id)).toEqual(["dev-0001", "dev-0002"]); // the failed one and the unfinished one
    expect(s.devices.filter((d) => d.outcome === "reverted").map((d) => d.id)).toEqual(["dev-0002"]);
    expect(s.waves.map((w) => w.state)).toEqual(["done", "aborted", "cancelled"]);
    expect(s.devices.find((d) => d.id === "dev-0001")).toMatchObject({ outcome: "failed", status: "RolledBack", error: "OTA_SELF_TEST_FAILED" });
    expect(needsRevert(written(s))).toEqual([]);
    expect(step(written(s), { nowMs: 3, inWindow: true })).toEqual(written(s));
  });

  it("after a stop, reverted devices are watched until they settle: stopped, installed anyway (Staged), or failed", () => {
    let r = createRollout({ id: "r", version: "1.1.0", devices: fleet(5), waves: "100%", maxFailure: 1, waveDeadlineMs: 60_000, createdAt: 0 });
    r = written(step(r, { nowMs: 0, inWindow: true }));
    const c = cancel(r, 1000);
    expect(c.stoppedAtMs).toBe(1000);
    expect(c.devices.map((d) => [d.outcome, d.watch])).toEqual(Array.from({ length: 5 }, () => ["reverted", true]));
    expect(toSettle(c)).toEqual([]); // not before the revert is written: the device has not been told yet
    let s = written(c);
    expect(toSettle(s)).toHaveLength(5);
    const seen = new Map<string, Observation>([
      ["dev-0000", { outcome: "pending", status: "Idle", error: "OTA_UPDATE_CANCELLED", inFlight: false }], // the download stopped
      ["dev-0001", { outcome: "pending", status: "Staged", inFlight: true }], // too late: restarting into 1.1.0
      ["dev-0002", { outcome: "failed", status: "RolledBack", error: "OTA_SELF_TEST_FAILED" }],
      ["dev-0003", { outcome: "pending", status: "Downloading", inFlight: true }],
    ]);
    s = settle(s, { nowMs: 2000, observed: seen });
    expect(s.devices.map((d) => [d.id, d.outcome, d.watch === true])).toEqual([
      ["dev-0000", "reverted", false], ["dev-0001", "reverted", true], ["dev-0002", "failed", false], ["dev-0003", "reverted", true], ["dev-0004", "reverted", true],
    ]);
    s = settle(s, { nowMs: 3000, observed: new Map([["dev-0001", { outcome: "updated", status: "Valid" }]]) });
    expect(s.devices[1]).toMatchObject({ outcome: "installedAfterCancel", status: "Valid" });
    expect(s.devices[1]!.watch).toBeUndefined();
    // Never heard of again: the watch ends waveDeadlineMs after the stop, still reverted.
    expect(settle(s, { nowMs: 60_999 }).devices.filter((d) => d.watch === true).map((d) => d.id)).toEqual(["dev-0003", "dev-0004"]);
    s = settle(s, { nowMs: 61_000 });
    expect(s.devices.filter((d) => d.watch === true)).toEqual([]);
    expect(s.devices.map((d) => d.outcome)).toEqual(["reverted", "installedAfterCancel", "failed", "reverted", "reverted"]);
    expect((rolloutView(s) as { waves: Array<Record<string, number>> }).waves[0]).toMatchObject({ reverted: 3, installedAfterCancel: 1, failed: 1, pending: 0 });
    // A device whose desired was never written is not watched (it was never told to update).
    const never = cancel(createRollout({ id: "r", version: "1.1.0", devices: fleet(2), waves: "100%", maxFailure: 1, waveDeadlineMs: 1, createdAt: 0 }));
    expect(never.devices.some((d) => d.watch === true)).toBe(false);
  });

  it("a device still pending at the wave's deadline counts as failed", () => {
    let r = createRollout({ id: "r", version: "1.1.0", devices: fleet(4), waves: "2,100%", maxFailure: 0.5, waveDeadlineMs: 60_000, createdAt: 0 });
    r = written(step(r, { nowMs: 1000, inWindow: true }));
    r = written(step(r, { nowMs: 60_999, inWindow: true, observed: new Map([["dev-0000", { outcome: "updated" }]]) }));
    expect(r.devices[1]!.outcome).toBe("pending");
    r = written(step(r, { nowMs: 61_000, inWindow: true }));
    expect(r.devices[1]).toMatchObject({ outcome: "failed", error: "ROLLOUT_DEVICE_TIMEOUT" });
    expect(r.state).toBe("running"); // 1 of 2 = 50 %, not above 50 %
    expect(r.current).toBe(1);
  });

  it("waits for its window, and pause holds the next wave without dropping the running one", () => {
    let r = createRollout({ id: "r", version: "1.1.0", devices: fleet(4), waves: "1,100%", maxFailure: 0, waveDeadlineMs: HOUR, createdAt: 0, window: "02:00-04:00" });
    r = step(r, { nowMs: 0, inWindow: false });
    expect(r.state).toBe("waiting-window");
    expect(r.devices.every((d) => d.outcome === "waiting")).toBe(true);
    r = written(step(r, { nowMs: 1, inWindow: true }));
    expect(r.state).toBe("running");
    r = pause(r);
    r = written(step(r, { nowMs: 2, inWindow: true, observed: new Map([["dev-0000", { outcome: "updated" }]]) }));
    expect(r.state).toBe("paused");
    expect(r.waves[0]!.state).toBe("done");
    expect(r.devices.filter((d) => d.outcome === "pending")).toEqual([]);
    expect(() => resume(resume(r))).toThrow(expect.objectContaining({ code: "ROLLOUT_CONFLICT" }));
    r = written(step(resume(r), { nowMs: 3, inWindow: true }));
    expect(r.devices.filter((d) => d.outcome === "pending")).toHaveLength(3);
    const c = cancel(r);
    expect(c.state).toBe("cancelled");
    expect(needsRevert(c)).toHaveLength(3);
    expect(() => cancel(c)).toThrow(expect.objectContaining({ code: "ROLLOUT_CONFLICT" }));
  });

  it("wave lists: counts and shares, cumulative, clamped, empty waves dropped; bad ones refused with a stable code", () => {
    expect(waveSizes(parseWaves("1,10,50,100%"), 1000)).toEqual([1, 9, 40, 950]);
    expect(waveSizes(parseWaves("1%,10%,50%,100%"), 1000)).toEqual([10, 90, 400, 500]);
    expect(waveSizes(parseWaves("1,3,100%"), 10)).toEqual([1, 2, 7]);
    expect(waveSizes(parseWaves("1%,2%,100%"), 10)).toEqual([1, 9]);
    expect(waveSizes(parseWaves("5,50"), 10)).toEqual([5, 5]);
    expect(waveSizes(parseWaves("2"), 10)).toEqual([2]);
    for (const bad of ["", "0", "1,,2", "x", "101%", "0%", "-1", "1.5", "1;2"]) {
      expect(() => waveSizes(parseWaves(bad), 10)).toThrow(expect.objectContaining({ code: "ROLLOUT_REQUEST_INVALID" }));
    }
    expect(() => waveSizes(parseWaves("5,2"), 10)).toThrow(expect.objectContaining({ code: "ROLLOUT_REQUEST_INVALID" }));
    expect(parseMaxFailure("5%")).toBeCloseTo(0.05);
    expect(parseMaxFailure(5)).toBeCloseTo(0.05);
    expect(parseMaxFailure("0")).toBe(0);
    for (const bad of ["101%", "-1", "five", ""]) {
      let err: unknown;
      try { parseMaxFailure(bad); } catch (e) { err = e; }
      expect(isShadowOtaError(err, "ROLLOUT_REQUEST_INVALID")).toBe(true);
    }
    expect(() => createRollout({ id: "r", version: "1.1.0", devices: [], waves: "100%", maxFailure: 0, waveDeadlineMs: 1, createdAt: 0 }))
      .toThrow(expect.objectContaining({ code: "ROLLOUT_REQUEST_INVALID" }));
  });

  it("the same inputs give the same waves, whatever order the devices come in", () => {
    const a = createRollout({ id: "r", version: "1.1.0", devices: fleet(20), waves: "1,5,100%", maxFailure: 0, waveDeadlineMs: 1, createdAt: 0 });
    const b = createRollout({ id: "r", version: "1.1.0", devices: [...fleet(20)].reverse(), waves: "1,5,100%", maxFailure: 0, waveDeadlineMs: 1, createdAt: 0 });
    expect(b.devices.map((d) => [d.id, d.wave])).toEqual(a.devices.map((d) => [d.id, d.wave]));
  });
});
