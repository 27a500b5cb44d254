/**
 * TickBudget (src/sim/tick-budget.ts): steps run in arrival order, a throwing step rejects only its own
 * promise, and a slice yields after `maxSteps` steps so the event loop turns in between (counted with a
 * setImmediate heartbeat, not timed).
 */
import { TickBudget } from "../../src/sim/tick-budget";

test("steps run in order; a throwing step rejects only itself", async () => {
  const b = new TickBudget();
  const order: number[] = [];
  const results = await Promise.allSettled([1, 2, 3, 4].map((i) => b.run(() => {
    order.push(i);
    if (i === 2) throw new Error("two");
    return i * 10;
  })));
  expect(order).toEqual([1, 2, 3, 4]);
  expect(results.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as Error).message))).toEqual([10, "two", 30, 40]);
});

test("1,000 steps queued in one tick run in slices of at most maxSteps, with the loop turning between them", async () => {
  const b = new TickBudget(1_000, 50); // the step count ends each slice here, not the clock
  let beats = 0;
  let beating = true;
  const beat = (): void => { beats++; if (beating) setImmediate(beat); };
  setImmediate(beat);
  const maxRunBetweenBeats: number[] = [];
  let lastBeat = -1;
  let run = 0;
  await Promise.all(Array.from({ length: 1000 }, (_, i) => b.run(() => {
    if (beats !== lastBeat) { lastBeat = beats; run = 0; }
    maxRunBetweenBeats.push(++run);
    return i;
  })));
  beating = false;
  expect(b.steps).toBe(1000);
  expect(b.slices).toBe(20);
  expect(b.longestSliceSteps).toBe(50);
  expect(Math.max(...maxRunBetweenBeats)).toBeLessThanOrEqual(50);
  expect(beats).toBeGreaterThanOrEqual(19);
});

test("bad settings are RangeErrors", () => {
  expect(() => new TickBudget(0)).toThrow(RangeError);
  expect(() => new TickBudget(8, 0)).toThrow(RangeError);
});
