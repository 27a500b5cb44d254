/**
 * Keeps the local cloud's event loop turning under a burst: synchronous steps (a shadow or twin engine
 * run, building and handing a response to mqtt.js) go through `run`, which executes them in arrival order
 * but at most `sliceMs` of them per turn of the loop, then yields with setImmediate so the broker's
 * sockets, timers and file-system callbacks get their turn before the next slice; a slice also ends after
 * `maxSteps` steps, whatever the clock says. A burst of 1,000 requests arriving in one tick then costs many
 * short slices instead of one long block.
 *
 * One budget is shared by the shadow and twin services of a process (`sharedTickBudget`), so together
 * they cannot hold the loop longer than one slice either. A step that throws rejects its own promise only.
 *
 * Not here: ordering between requests of one shadow or twin (the services chain those), I/O.
 */
import { performance } from "node:perf_hooks";

interface Step {
  fn: () => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export class TickBudget {
  readonly sliceMs: number;
  readonly maxSteps: number;
  readonly #steps: Step[] = [];
  #head = 0;
  #scheduled = false;
  /** Slices run so far (turns of the loop that ran at least one step). */
  slices = 0;
  /** Steps run so far. */
  steps = 0;
  /** The most steps one slice ran, and the longest slice in ms (what the loop was held for). */
  longestSliceSteps = 0;
  longestSliceMs = 0;

  /** A slice runs at least one step and yields after `sliceMs` (default 8) or `maxSteps` (default 64) steps. */
  constructor(sliceMs = 8, maxSteps = 64) {
    if (!(sliceMs > 0) || !Number.isFinite(sliceMs)) throw new RangeError("sliceMs must be a positive number of milliseconds");
    if (!Number.isSafeInteger(maxSteps) || maxSteps < 1) throw new RangeError("maxSteps must be a positive integer");
    this.sliceMs = sliceMs;
    this.maxSteps = maxSteps;
  }

  /** Runs `fn` in a later slice, after every step queued before it; resolves with its result. */
  run<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#steps.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#slice());
      }
    });
  }

  /** Steps waiting for a slice. */
  get waiting(): number {
    return this.#steps.length - this.#head;
  }

  #slice(): void {
    this.#scheduled = false;
    this.slices++;
    const start = performance.now();
    let n = 0;
    let elapsed = 0;
    do {
      const step = this.#steps[this.#head++]!;
      this.steps++;
      n++;
      try {
        step.resolve(step.fn());
      } catch (e) {
        step.reject(e);
      }
      elapsed = performance.now() - start;
    } while (this.#head < this.#steps.length && n < this.maxSteps && elapsed < this.sliceMs);
    if (n > this.longestSliceSteps) this.longestSliceSteps = n;
    if (elapsed > this.longestSliceMs) this.longestSliceMs = elapsed;
    if (this.#head === this.#steps.length) {
      this.#steps.length = 0;
      this.#head = 0;
    } else {
      if (this.#head > 1024) { this.#steps.splice(0, this.#head); this.#head = 0; }
      this.#scheduled = true;
      setImmediate(() => this.#slice());
    }
  }
}

/** The budget the local cloud's services share unless given their own. */
export const sharedTickBudget = new TickBudget();
