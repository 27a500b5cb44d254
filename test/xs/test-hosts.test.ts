/**
 * What every host the core's tests run on must give the shim and fast-check, checked on each of them: Jest
 * on Node, xsnap (`npm run test:xs`) and the Moddable SDK's simulator (`npm run test:mcsim`).
 *
 * - `setImmediate` runs once the promise job queue is empty, not before: the shim counts these turns to
 *   call a pending test stuck (jest-shim.ts, IDLE_TICKS), so a host whose "immediate" fires while jobs are
 *   still queued (a 1 ms Timer in the simulator did) calls a long but busy test stuck.
 * - A failed assertion reports its own message: with frozen built-ins, the shim's AssertionError could not
 *   assign its `name` and threw "set name: not writable" instead.
 * - fast-check can build objects whose keys name Object.prototype's methods: a Moddable app's built-ins are
 *   frozen after preload, where `obj.valueOf = 1` throws in strict code, and fast-check's dictionary
 *   builder assigns keys that way (scripts/test-mcsim.mjs patches that one line in its bundles).
 *
 * Not here: the shim's matchers (jest-shim.test.ts), the runners' limits (test/tools/).
 */
import fc from "fast-check";

type Immediate = (f: () => void) => void;
const setImmediate = (globalThis as unknown as { setImmediate: Immediate }).setImmediate;

describe("setImmediate and the promise job queue", () => {
  it("does not run while a long promise chain is still queuing jobs", async () => {
    let ran = false;
    setImmediate(() => { ran = true; });
    // Each await queues the next step as a new job, so the queue is never empty until the loop ends.
    let steps = 0;
    for (let i = 0; i < 20000; i++) {
      await null;
      steps++;
      if (ran) break;
    }
    expect(ran).toBe(false);
    expect(steps).toBe(20000);
  });

  it("runs once the queue is empty, in the order the callbacks were given", async () => {
    const order: number[] = [];
    setImmediate(() => order.push(1));
    setImmediate(() => order.push(2));
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(order).toEqual([1, 2]);
  });
});

describe("a failed assertion", () => {
  it("reports its own message, not an error from building it (frozen Error.prototype)", () => {
    expect(() => expect(1).toBe(2)).toThrow(/Expected: 2\n\s*Received: 1/);
  });
});

describe("fast-check", () => {
  it("builds dictionaries whose keys name Object.prototype's methods", () => {
    const names = ["valueOf", "toString", "constructor", "hasOwnProperty", "toLocaleString"];
    fc.assert(fc.property(fc.dictionary(fc.constantFrom(...names), fc.integer(), { minKeys: 1 }), (d) => {
      const keys = Object.keys(d);
      return keys.length >= 1 && keys.every((k) => names.includes(k) && Object.prototype.hasOwnProperty.call(d, k) && typeof (d as Record<string, unknown>)[k] === "number");
    }), { numRuns: 50 });
  });
});
