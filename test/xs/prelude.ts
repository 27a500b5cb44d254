/**
 * Globals the test bundles expect and xsnap lacks, installed before any other module of a bundle runs
 * (jest-shim.ts imports this file first; scripts/test-xs.mjs injects jest-shim.ts into every bundle).
 *
 * - `print` exists on xsnap; elsewhere (running a bundle on Node to check the shim) it falls back to
 *   console.log.
 * - `console` (log/info/warn/error/debug → print): xsnap has none, and it reports an uncaught exception
 *   through `console.error` when that exists.
 * - Timers: xsnap has `setImmediate` but no `setTimeout`/`setInterval`. fast-check reads `setTimeout`
 *   and `clearTimeout` when its module loads (it only calls them for its `timeout`/`interruptAfterTimeLimit`
 *   options), so they must exist. These stand-ins THROW when asked to schedule anything: a test that
 *   waits on a timer fails at once with a clear message instead of hanging. `clear*` ignore their handle
 *   (nothing can have been scheduled).
 *
 * Not here: no real timers, no TextEncoder/Buffer/process polyfills (the core must not need them).
 */

type Printer = (...values: unknown[]) => void;
type Globals = Record<string, unknown>;

const g = globalThis as unknown as Globals;

if (typeof g["print"] !== "function") {
  const log = (g["console"] as { log: Printer }).log;
  g["print"] = (...values: unknown[]): void => log(...values);
}
const print = g["print"] as Printer;

if (typeof g["console"] !== "object" || g["console"] === null) {
  const line: Printer = (...values) => print(values.map((v) => (typeof v === "string" ? v : describeValue(v))).join(" "));
  g["console"] = { log: line, info: line, warn: line, error: line, debug: line };
}

function describeValue(v: unknown): string {
  if (v instanceof Error) return `${v.name}: ${v.message}`;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch (e) {
    return `${String(v)} (not printable as JSON: ${String(e)})`;
  }
}

function noTimer(name: string): () => never {
  return () => {
    throw new Error(`${name} is not available on XS (xsnap has no timers): a core test must not wait on real time; use a fake clock port`);
  };
}

for (const name of ["setTimeout", "setInterval"]) {
  if (typeof g[name] !== "function") g[name] = noTimer(name);
}
for (const name of ["clearTimeout", "clearInterval"]) {
  if (typeof g[name] !== "function") g[name] = (_handle?: unknown): void => undefined;
}

export {};
