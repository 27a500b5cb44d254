/**
 * A small Jest-compatible test API, so the unit tests of the platform-neutral core (test/core/*.test.ts)
 * also run on the XS engine (xsnap). scripts/test-xs.mjs bundles each test file with esbuild, injecting
 * this module for the Jest globals (`describe`, `it`, `expect`, …), then calls `runTests`.
 *
 * What it is:
 * - describe (nested, `.skip`, `.only`, `.each`), it/test (sync, async, `done` callback, `.skip`, `.only`,
 *   `.todo`, `.each` over arrays of arrays / objects / values with %s %d %i %f %j %o %p %# and $name titles),
 *   beforeAll/afterAll/beforeEach/afterEach (afterEach and afterAll run even when the test or a hook fails).
 * - expect with the Jest matchers listed in MATCHERS below, `.not`, `.resolves`, `.rejects`, the asymmetric
 *   matchers expect.any/anything/objectContaining/arrayContaining/stringContaining/stringMatching, and
 *   expect.assertions(n)/hasAssertions(). Equality follows Jest 29 (see `equals`): toEqual uses Object.is on
 *   primitives, ignores properties whose value is undefined and the classes of objects, compares Errors by
 *   message; toStrictEqual also checks undefined properties, array lengths and holes, and constructors.
 * - Output, per test: `▶ <file> › <describe> › <test>` when it starts, then `✓ …` (passed), `○ …`
 *   (skipped/todo) or `✕ …` followed by the message indented by 4 spaces; a test slower than SLOW_MS shows
 *   its time, e.g. `✓ … (250 ms)`; last, `##xs-test-summary## {"file","passed","failed","skipped","todo"}`,
 *   the line scripts/test-xs.mjs parses.
 *
 * What it is not: no jest.fn/jest.mock/spies, no fake timers, no snapshots, no per-test timeouts (xsnap has
 * no timers; the runner bounds each file's CPU time). An async test or hook that is still pending once the
 * job queue is empty can never finish (nothing else can wake it): after IDLE_TICKS turns of setImmediate it
 * fails with a message saying so, rather than hanging. Unknown matchers are missing properties, so calling
 * one fails the test with a TypeError.
 */
import "./prelude";

// ---------------------------------------------------------------------------------------------------------
// Output

type Printer = (...values: unknown[]) => void;
const print = (globalThis as unknown as { print: Printer }).print;

export const SUMMARY_PREFIX = "##xs-test-summary## ";
/** Printed before each test runs, so a run that dies (stack overflow, out of memory) shows where. */
export const START_PREFIX = "▶ ";

// ---------------------------------------------------------------------------------------------------------
// Registration

type Callback = (done: (error?: unknown) => void) => unknown;
type Mode = "run" | "skip" | "only" | "todo";

interface TestCase {
  kind: "test";
  name: string;
  fn: Callback | undefined;
  mode: Mode;
}

interface Suite {
  kind: "suite";
  name: string;
  mode: Mode;
  children: Array<Suite | TestCase>;
  beforeAll: Callback[];
  afterAll: Callback[];
  beforeEach: Callback[];
  afterEach: Callback[];
  /** Errors thrown by the describe callback itself (reported as failures of this suite). */
  errors: unknown[];
}

function newSuite(name: string, mode: Mode): Suite {
  return { kind: "suite", name, mode, children: [], beforeAll: [], afterAll: [], beforeEach: [], afterEach: [], errors: [] };
}

const root = newSuite("", "run");
let current: Suite = root;
let started = false;

function checkRegistering(what: string): void {
  if (started) throw new Error(`${what} called while tests are running: register tests at the top level or inside describe`);
}

function addSuite(name: string, fn: () => unknown, mode: Mode): void {
  checkRegistering("describe");
  const suite = newSuite(String(name), mode);
  current.children.push(suite);
  const parent = current;
  current = suite;
  try {
    const r = fn();
    if (isThenable(r)) suite.errors.push(new Error("a describe callback must not return a promise (Jest does not support async describe)"));
  } catch (e) {
    suite.errors.push(e);
  } finally {
    current = parent;
  }
}

function addTest(name: string, fn: Callback | undefined, mode: Mode): void {
  checkRegistering("it/test");
  if (mode !== "todo" && typeof fn !== "function") throw new TypeError(`test "${String(name)}": missing test function`);
  current.children.push({ kind: "test", name: String(name), fn, mode });
}

// ---------------------------------------------------------------------------------------------------------
// .each

type Row = unknown;

/** Jest's .each titles: printf-style placeholders over the row's values, or $name paths into an object row. */
function formatTitle(title: string, row: Row, index: number): string {
  if (isObject(row) && !Array.isArray(row)) {
    return title.replace(/%#/g, String(index)).replace(/\$([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)/g, (m, path: string) => {
      let v: unknown = row;
      for (const part of path.split(".")) {
        if (!isObject(v) || !(part in v)) return m;
        v = (v as Record<string, unknown>)[part];
      }
      return pretty(v);
    });
  }
  const values = Array.isArray(row) ? row : [row];
  let k = 0;
  return title.replace(/%([sdifjop#%])/g, (m, c: string) => {
    if (c === "%") return "%";
    if (c === "#") return String(index);
    if (k >= values.length) return m;
    const v = values[k++];
    switch (c) {
      case "s": return typeof v === "string" ? v : pretty(v);
      case "d": case "i": return typeof v === "bigint" ? String(v) : String(c === "i" ? Math.trunc(Number(v)) : Number(v));
      case "f": return String(Number(v));
      case "j": return safeJson(v);
      default: return pretty(v);
    }
  });
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch (e) {
    return `[not JSON: ${String(e)}]`;
  }
}

function eachOf<F extends (...args: never[]) => unknown>(
  register: (name: string, fn: F) => void,
  wrap: (fn: (...args: unknown[]) => unknown, args: unknown[]) => F,
) {
  return (table: readonly Row[]) => {
    if (!Array.isArray(table)) throw new TypeError(".each: only an array table is supported here (not the tagged-template form)");
    return (title: string, fn: (...args: unknown[]) => unknown): void => {
      table.forEach((row, index) => {
        const args = Array.isArray(row) ? row : [row];
        register(formatTitle(String(title), row, index), wrap(fn, args));
      });
    };
  };
}

type TestFn = Callback | (() => unknown);

interface TestApi {
  (name: string, fn: TestFn, timeout?: number): void;
  skip(name: string, fn?: TestFn, timeout?: number): void;
  only(name: string, fn: TestFn, timeout?: number): void;
  todo(name: string): void;
  each(table: readonly Row[]): (title: string, fn: (...args: any[]) => unknown, timeout?: number) => void;
}

function makeTest(): TestApi {
  const wrapTest = (fn: (...args: unknown[]) => unknown, args: unknown[]): Callback => () => fn(...args);
  const api = ((name: string, fn: TestFn) => addTest(name, fn as Callback, "run")) as TestApi;
  api.skip = (name, fn) => addTest(name, (fn ?? (() => undefined)) as Callback, "skip");
  api.only = (name, fn) => addTest(name, fn as Callback, "only");
  api.todo = (name) => addTest(name, undefined, "todo");
  api.each = eachOf<Callback>((n, f) => addTest(n, f, "run"), wrapTest);
  return api;
}

interface DescribeApi {
  (name: string, fn: () => unknown): void;
  skip(name: string, fn: () => unknown): void;
  only(name: string, fn: () => unknown): void;
  each(table: readonly Row[]): (title: string, fn: (...args: any[]) => unknown) => void;
}

function makeDescribe(): DescribeApi {
  const api = ((name: string, fn: () => unknown) => addSuite(name, fn, "run")) as DescribeApi;
  api.skip = (name, fn) => addSuite(name, fn, "skip");
  api.only = (name, fn) => addSuite(name, fn, "only");
  api.each = eachOf<() => unknown>((n, f) => addSuite(n, f, "run"), (fn, args) => () => fn(...args));
  return api;
}

export const describe = makeDescribe();
export const it = makeTest();
export const test = it;
export const xdescribe = describe.skip;
export const fdescribe = describe.only;
export const xit = it.skip;
export const xtest = it.skip;
export const fit = it.only;

export function beforeAll(fn: TestFn): void { checkRegistering("beforeAll"); current.beforeAll.push(fn as Callback); }
export function afterAll(fn: TestFn): void { checkRegistering("afterAll"); current.afterAll.push(fn as Callback); }
export function beforeEach(fn: TestFn): void { checkRegistering("beforeEach"); current.beforeEach.push(fn as Callback); }
export function afterEach(fn: TestFn): void { checkRegistering("afterEach"); current.afterEach.push(fn as Callback); }

// ---------------------------------------------------------------------------------------------------------
// Running

/** Turns of the setImmediate queue a pending test may take before it is declared stuck. */
const IDLE_TICKS = 1000;

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (typeof v === "object" || typeof v === "function") && v !== null && typeof (v as { then?: unknown }).then === "function";
}

type Immediate = (fn: () => void) => unknown;

/** Resolves like `p`, or rejects once the job queue has been idle for IDLE_TICKS turns with `p` still pending. */
function watchdog<T>(p: PromiseLike<T>, what: string): Promise<T> {
  const setImmediate = (globalThis as unknown as { setImmediate?: Immediate }).setImmediate;
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    p.then(
      (v) => { settled = true; resolve(v); },
      (e: unknown) => { settled = true; reject(e); },
    );
    if (typeof setImmediate !== "function") return;
    let ticks = 0;
    const tick = (): void => {
      if (settled) return;
      if (++ticks >= IDLE_TICKS) {
        settled = true;
        reject(new Error(`${what} never settled: it is still pending with an empty job queue (after ${IDLE_TICKS} setImmediate turns); ` +
          "xsnap has no timers or I/O, so it waits on something that cannot happen (a timer? a promise nobody resolves?)"));
        return;
      }
      setImmediate(tick);
    };
    setImmediate(tick);
  });
}

async function call(fn: Callback, what: string): Promise<void> {
  if (fn.length >= 1) {
    await watchdog(new Promise<void>((resolve, reject) => {
      const done = (error?: unknown): void => {
        if (error === undefined || error === null) resolve();
        else reject(error instanceof Error ? error : new Error(`done() called with ${pretty(error)}`));
      };
      const r = fn(done);
      if (isThenable(r)) reject(new Error(`${what}: a test function must either take a done callback or return a promise, not both`));
    }), what);
    return;
  }
  const r = (fn as () => unknown)();
  if (isThenable(r)) await watchdog(r, what);
}

interface Counts { passed: number; failed: number; skipped: number; todo: number }

/** Tests slower than this show their time (hooks included), to find what is slow on XS. */
const SLOW_MS = 100;

/** Milliseconds from the host's clock, for durations only (xsnap and Node both have performance.now). */
function now(): number {
  const perf = (globalThis as unknown as { performance?: { now(): number } }).performance;
  return perf ? perf.now() : 0;
}

let assertionCalls = 0;
let expectedAssertions: number | undefined;
let requireAssertions = false;

function hasOnly(s: Suite): boolean {
  return s.children.some((c) => c.mode === "only" || (c.kind === "suite" && hasOnly(c)));
}

/** Whether anything in `s` will run, given the `only` filter. */
function willRun(node: Suite | TestCase, onlyMode: boolean, inOnly: boolean): boolean {
  if (node.mode === "skip" || node.mode === "todo") return false;
  const only = inOnly || node.mode === "only";
  if (node.kind === "test") return !onlyMode || only;
  return node.errors.length > 0 || node.children.some((c) => willRun(c, onlyMode, only));
}

/** Every test under `node` with its title path (`path` is the path of node's parent). */
function testsIn(node: Suite | TestCase, path: string[]): Array<{ t: TestCase; path: string[] }> {
  if (node.kind === "test") return [{ t: node, path: [...path, node.name] }];
  const here = node === root ? path : [...path, node.name];
  return node.children.flatMap((c) => testsIn(c, here));
}

class Runner {
  readonly counts: Counts = { passed: 0, failed: 0, skipped: 0, todo: 0 };
  constructor(private readonly file: string, private readonly onlyMode: boolean) {}

  private title(path: string[]): string {
    return [this.file, ...path].join(" › ");
  }

  fail(path: string[], errors: unknown[], ms = 0): void {
    this.counts.failed++;
    print(`✕ ${this.title(path)}${ms >= SLOW_MS ? ` (${Math.round(ms)} ms)` : ""}`);
    for (const e of errors) print(indent(describeError(e)));
  }

  private pass(path: string[], ms: number): void {
    this.counts.passed++;
    print(`✓ ${this.title(path)}${ms >= SLOW_MS ? ` (${Math.round(ms)} ms)` : ""}`);
  }

  private skip(path: string[], todo: boolean): void {
    if (todo) this.counts.todo++;
    else this.counts.skipped++;
    print(`○ ${this.title(path)}${todo ? " (todo)" : " (skipped)"}`);
  }

  async suite(s: Suite, path: string[], chain: Suite[], inOnly: boolean): Promise<void> {
    const only = inOnly || s.mode === "only";
    const here = s === root ? path : [...path, s.name];
    const lineage = [...chain, s];
    if (!willRun(s, this.onlyMode, inOnly)) {
      for (const { t, path: p } of testsIn(s, path)) this.skip(p, t.mode === "todo");
      return;
    }
    if (s.errors.length > 0) {
      this.fail([...here, "(describe callback)"], s.errors);
    }
    const setupErrors: unknown[] = [];
    for (const hook of s.beforeAll) {
      try {
        await call(hook, `beforeAll in "${here.join(" › ") || this.file}"`);
      } catch (e) {
        setupErrors.push(e);
        break;
      }
    }
    for (const child of s.children) {
      if (setupErrors.length > 0) {
        for (const { t, path: p } of testsIn(child, here)) {
          if (willRun(t, this.onlyMode, only)) this.fail(p, [prefixError("beforeAll hook failed: ", setupErrors[0])]);
          else this.skip(p, t.mode === "todo");
        }
      } else if (child.kind === "test") {
        await this.test(child, [...here, child.name], lineage, only);
      } else {
        await this.suite(child, here, lineage, only);
      }
    }
    const teardownErrors: unknown[] = [];
    for (const hook of s.afterAll) {
      try {
        await call(hook, `afterAll in "${here.join(" › ") || this.file}"`);
      } catch (e) {
        teardownErrors.push(e);
      }
    }
    if (teardownErrors.length > 0) this.fail([...here, "(afterAll hook)"], teardownErrors);
  }

  private async test(t: TestCase, path: string[], lineage: Suite[], inOnly: boolean): Promise<void> {
    if (!willRun(t, this.onlyMode, inOnly)) {
      this.skip(path, t.mode === "todo");
      return;
    }
    const errors: unknown[] = [];
    const name = `test "${path.join(" › ")}"`;
    print(`${START_PREFIX}${this.title(path)}`);
    const t0 = now();
    assertionCalls = 0;
    expectedAssertions = undefined;
    requireAssertions = false;
    let setupOk = true;
    for (const s of lineage) {
      for (const hook of s.beforeEach) {
        if (!setupOk) break;
        try {
          await call(hook, `beforeEach of ${name}`);
        } catch (e) {
          errors.push(prefixError("beforeEach hook failed: ", e));
          setupOk = false;
        }
      }
    }
    if (setupOk) {
      try {
        await call(t.fn as Callback, name);
        if (expectedAssertions !== undefined && assertionCalls !== expectedAssertions) {
          errors.push(new AssertionError(`expect.assertions(${expectedAssertions})\n\nExpected ${expectedAssertions} assertion(s) to be called but received ${assertionCalls}.`));
        } else if (requireAssertions && assertionCalls === 0) {
          errors.push(new AssertionError("expect.hasAssertions()\n\nExpected at least one assertion to be called but received none."));
        }
      } catch (e) {
        errors.push(e);
      }
    }
    for (const s of [...lineage].reverse()) {
      for (const hook of s.afterEach) {
        try {
          await call(hook, `afterEach of ${name}`);
        } catch (e) {
          errors.push(prefixError("afterEach hook failed: ", e));
        }
      }
    }
    if (errors.length === 0) this.pass(path, now() - t0);
    else this.fail(path, errors, now() - t0);
  }
}

/**
 * Runs every registered test and prints the summary line. `loadError`: what importing the test file threw
 * (the file then counts one failure and none of its tests run, as in Jest).
 */
export async function runTests(file: string, loadError?: unknown): Promise<Counts> {
  started = true;
  const runner = new Runner(file, hasOnly(root));
  if (loadError !== undefined) {
    runner.fail(["(loading the test file)"], [loadError]);
  } else {
    try {
      await runner.suite(root, [], [], false);
    } catch (e) {
      runner.fail(["(test runner)"], [e]);
    }
  }
  print(SUMMARY_PREFIX + JSON.stringify({ file, ...runner.counts }));
  return runner.counts;
}

// ---------------------------------------------------------------------------------------------------------
// Errors and formatting

/**
 * Sets an error's `name` as an own property. Not `e.name = …`: in a Moddable app (npm run test:mcsim) the
 * built-ins are frozen after preload, so assigning the `name` that Error.prototype holds throws
 * "set name: not writable" in strict code, and every failed assertion reported that instead of itself.
 */
function named<E extends Error>(e: E, name: string): E {
  Object.defineProperty(e, "name", { value: name, writable: true, configurable: true, enumerable: false });
  return e;
}

class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    named(this, "AssertionError");
  }
}

function prefixError(prefix: string, e: unknown): Error {
  return named(new Error(prefix + describeError(e)), "HookError");
}

function indent(text: string): string {
  return text.split("\n").map((l) => "    " + l).join("\n");
}

function describeError(e: unknown): string {
  if (e instanceof AssertionError) return e.message;
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    let text = `${e.name}: ${e.message}${code !== undefined ? ` [code ${pretty(code)}]` : ""}`;
    const cause = (e as { cause?: unknown }).cause;
    if (cause !== undefined) text += `\ncaused by: ${describeError(cause)}`;
    return text;
  }
  return `thrown non-Error value: ${pretty(e)}`;
}

const MAX_PRETTY = 2000;

/** A compact, bounded, cycle-safe rendering of any value for failure messages. */
export function pretty(v: unknown): string {
  const text = prettyAt(v, 0, []);
  return text.length > MAX_PRETTY ? text.slice(0, MAX_PRETTY) + "…" : text;
}

function prettyAt(v: unknown, depth: number, seen: unknown[]): string {
  switch (typeof v) {
    case "undefined": return "undefined";
    case "string": return JSON.stringify(v);
    case "number": return Object.is(v, -0) ? "-0" : String(v);
    case "bigint": return `${String(v)}n`;
    case "boolean": return String(v);
    case "symbol": return v.toString();
    case "function": return `[Function ${(v as { name?: string }).name || "anonymous"}]`;
    default: break;
  }
  if (v === null) return "null";
  if (isAsymmetric(v)) return v.toString();
  if (seen.includes(v)) return "[Circular]";
  if (depth > 6) return Array.isArray(v) ? "[Array]" : "[Object]";
  const inner = [...seen, v];
  const item = (x: unknown): string => prettyAt(x, depth + 1, inner);
  const list = (xs: unknown[], f: (x: unknown) => string): string => {
    const shown = xs.slice(0, 50).map(f);
    if (xs.length > 50) shown.push(`… ${xs.length - 50} more`);
    return shown.join(", ");
  };
  if (v instanceof Error) return `[${v.name}: ${v.message}]`;
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? "Date(Invalid)" : `Date(${v.toISOString()})`;
  if (v instanceof RegExp) return String(v);
  if (Array.isArray(v)) return `[${list(v, item)}]`;
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
    return `${v.constructor.name} [${list(Array.from(v as unknown as ArrayLike<unknown>), item)}]`;
  }
  if (v instanceof ArrayBuffer) return `ArrayBuffer [${list(Array.from(new Uint8Array(v)), item)}]`;
  if (v instanceof Map) return `Map {${list([...v.entries()], (e) => { const [k, x] = e as [unknown, unknown]; return `${item(k)} => ${item(x)}`; })}}`;
  if (v instanceof Set) return `Set {${list([...v.values()], item)}}`;
  const obj = v as Record<string | symbol, unknown>;
  const proto = Object.getPrototypeOf(obj) as { constructor?: { name?: string } } | null;
  const cls = proto === null ? "[null prototype] " : proto.constructor && proto.constructor.name && proto.constructor.name !== "Object" ? `${proto.constructor.name} ` : "";
  const keys: Array<string | symbol> = [...Object.keys(obj), ...Object.getOwnPropertySymbols(obj).filter((s) => Object.prototype.propertyIsEnumerable.call(obj, s))];
  return `${cls}{${list(keys, (k) => `${typeof k === "symbol" ? `[${k.toString()}]` : JSON.stringify(k)}: ${item(obj[k as string])}`)}}`;
}

// ---------------------------------------------------------------------------------------------------------
// Equality (Jest 29 semantics)

function isObject(v: unknown): v is object {
  return typeof v === "object" && v !== null;
}

interface Asymmetric {
  asymmetricMatch(other: unknown): boolean;
  toString(): string;
}

const ASYMMETRIC = Symbol("xs-jest-shim.asymmetric");

function isAsymmetric(v: unknown): v is Asymmetric {
  return isObject(v) && (v as Record<symbol, unknown>)[ASYMMETRIC] === true;
}

function asymmetric(describeIt: string, match: (other: unknown) => boolean): Asymmetric {
  return { [ASYMMETRIC]: true, asymmetricMatch: match, toString: () => describeIt } as Asymmetric;
}

function ownKeys(o: object, strict: boolean): Array<string | symbol> {
  const rec = o as Record<string | symbol, unknown>;
  const keys: Array<string | symbol> = Object.keys(o);
  for (const s of Object.getOwnPropertySymbols(o)) {
    if (Object.prototype.propertyIsEnumerable.call(o, s)) keys.push(s);
  }
  return strict ? keys : keys.filter((k) => rec[k as string] !== undefined);
}

/**
 * Jest 29's `equals` with the testers toEqual (`strict` false) and toStrictEqual (`strict` true) add:
 * asymmetric matchers first; under strict, constructors must be the same (arrays excepted), then Errors
 * compare by message, primitives by Object.is, boxed primitives by value, Dates by time (invalid Dates are
 * unequal), RegExps by source and flags; typed arrays, Maps and Sets by content; other objects (arrays
 * included) by own enumerable keys: without strict a key whose value is undefined counts as absent (so
 * `[1]` equals `[1, undefined]`), with strict array lengths and holes must match too.
 * One deliberate difference: ArrayBuffers and DataViews compare by content here also without strict,
 * where Jest 29's toEqual finds any two equal (an assertion that cannot fail).
 */
export function equals(a: unknown, b: unknown, strict: boolean, seenA: unknown[] = [], seenB: unknown[] = []): boolean {
  if (isAsymmetric(a)) return a.asymmetricMatch(b);
  if (isAsymmetric(b)) return b.asymmetricMatch(a);
  if (strict && isObject(a) && isObject(b) && !(Array.isArray(a) && Array.isArray(b)) &&
      (a as { constructor?: unknown }).constructor !== (b as { constructor?: unknown }).constructor) {
    return false;
  }
  if (a instanceof Error && b instanceof Error) return a.message === b.message;
  if (Object.is(a, b)) return true;
  if (!isObject(a) || !isObject(b)) return false;
  const tag = Object.prototype.toString.call(a);
  if (tag !== Object.prototype.toString.call(b)) return false;
  switch (tag) {
    case "[object Boolean]":
    case "[object String]":
    case "[object Number]":
      return Object.is((a as { valueOf(): unknown }).valueOf(), (b as { valueOf(): unknown }).valueOf());
    case "[object Date]":
      return (a as Date).getTime() === (b as Date).getTime();
    case "[object RegExp]":
      return (a as RegExp).source === (b as RegExp).source && (a as RegExp).flags === (b as RegExp).flags;
    default:
      break;
  }
  for (let i = seenA.length - 1; i >= 0; i--) {
    if (seenA[i] === a) return seenB[i] === b;
    if (seenB[i] === b) return false;
  }
  seenA.push(a);
  seenB.push(b);
  try {
    return containersEqual(a, b, strict, seenA, seenB);
  } finally {
    seenA.pop();
    seenB.pop();
  }
}

function containersEqual(a: object, b: object, strict: boolean, seenA: unknown[], seenB: unknown[]): boolean {
  if (a instanceof ArrayBuffer && b instanceof ArrayBuffer) {
    return bytesEqual(new Uint8Array(a), new Uint8Array(b));
  }
  if (a instanceof DataView && b instanceof DataView) {
    return bytesEqual(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
  }
  if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) {
    if ((a as { constructor?: unknown }).constructor !== (b as { constructor?: unknown }).constructor) return false;
    const x = a as unknown as ArrayLike<unknown>;
    const y = b as unknown as ArrayLike<unknown>;
    if (x.length !== y.length) return false;
    for (let k = 0; k < x.length; k++) if (!Object.is(x[k], y[k])) return false;
    return true;
  }
  if (a instanceof Map && b instanceof Map) {
    if (a.size !== b.size) return false;
    for (const [k, v] of a) {
      if (b.has(k) && equals(v, b.get(k), strict, seenA, seenB)) continue;
      let found = false;
      for (const [k2, v2] of b) {
        if (equals(k, k2, strict, seenA, seenB) && equals(v, v2, strict, seenA, seenB)) { found = true; break; }
      }
      if (!found) return false;
    }
    return true;
  }
  if (a instanceof Set && b instanceof Set) {
    if (a.size !== b.size) return false;
    for (const v of a) {
      if (b.has(v)) continue;
      let found = false;
      for (const v2 of b) if (equals(v, v2, strict, seenA, seenB)) { found = true; break; }
      if (!found) return false;
    }
    return true;
  }
  if (strict && Array.isArray(a)) {
    const b2 = b as unknown[];
    if (a.length !== b2.length) return false;
    for (let k = 0; k < a.length; k++) if ((k in a) !== (k in b2)) return false;
  }
  return propsEqual(a, b, ownKeys(a, strict), ownKeys(b, strict), strict, seenA, seenB);
}

function propsEqual(a: object, b: object, ka: Array<string | symbol>, kb: Array<string | symbol>, strict: boolean, seenA: unknown[], seenB: unknown[]): boolean {
  if (ka.length !== kb.length) return false;
  const ra = a as Record<string | symbol, unknown>;
  const rb = b as Record<string | symbol, unknown>;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!strict && rb[k as string] === undefined) return false;
    if (!equals(ra[k as string], rb[k as string], strict, seenA, seenB)) return false;
  }
  return true;
}

function bytesEqual(x: Uint8Array, y: Uint8Array): boolean {
  if (x.length !== y.length) return false;
  for (let k = 0; k < x.length; k++) if (x[k] !== y[k]) return false;
  return true;
}

/** Jest's toMatchObject: every property of `expected` is in `received` (own or inherited) and matches recursively. */
function matchesObject(received: unknown, expected: unknown, seen: unknown[] = []): boolean {
  if (isAsymmetric(expected)) return expected.asymmetricMatch(received);
  if (Array.isArray(expected)) {
    if (!Array.isArray(received) || received.length !== expected.length) return false;
    return expected.every((e, k) => matchesObject(received[k], e, seen));
  }
  if (!isObject(expected) || expected instanceof Date || expected instanceof RegExp || expected instanceof Map ||
      expected instanceof Set || ArrayBuffer.isView(expected) || expected instanceof ArrayBuffer || expected instanceof Error) {
    return equals(received, expected, false);
  }
  if (!isObject(received)) return false;
  if (seen.includes(expected)) return true;
  const inner = [...seen, expected];
  const re = received as Record<string | symbol, unknown>;
  const ex = expected as Record<string | symbol, unknown>;
  return ownKeys(expected, true).every((k) => k in received && matchesObject(re[k as string], ex[k as string], inner));
}

/** A path to the first place where two values differ, for failure messages of toEqual and friends. */
function firstDifference(a: unknown, b: unknown, strict: boolean, path = ""): string | undefined {
  if (equals(a, b, strict)) return undefined;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let k = 0; k < Math.max(a.length, b.length); k++) {
      const d = firstDifference(a[k], b[k], strict, `${path}[${k}]`);
      if (d !== undefined) return d;
    }
    if (a.length !== b.length) return `${path || "(root)"}: length ${a.length}, expected ${b.length}`;
  } else if (isObject(a) && isObject(b) && Object.getPrototypeOf(a) === Object.prototype && Object.getPrototypeOf(b) === Object.prototype) {
    const ra = a as Record<string, unknown>;
    const rb = b as Record<string, unknown>;
    for (const k of new Set([...Object.keys(ra), ...Object.keys(rb)])) {
      const d = firstDifference(ra[k], rb[k], strict, `${path}.${k}`);
      if (d !== undefined) return d;
      if (strict && (k in ra) !== (k in rb)) return `${path}.${k}: present on one side only`;
    }
  }
  return `${path || "(root)"}: expected ${pretty(b)}, received ${pretty(a)}`;
}

// ---------------------------------------------------------------------------------------------------------
// expect

interface MatchResult { pass: boolean; message: string }
interface MatchContext { isNot: boolean; fromPromise: boolean; name: string }
type Matcher = (ctx: MatchContext, received: unknown, ...args: unknown[]) => MatchResult;

function header(ctx: MatchContext, args = "expected"): string {
  return `expect(received)${ctx.isNot ? ".not" : ""}.${ctx.name}(${args})`;
}

function compare(ctx: MatchContext, pass: boolean, expected: unknown, received: unknown, extra = ""): MatchResult {
  const exp = `Expected: ${ctx.isNot ? "not " : ""}${pretty(expected)}`;
  return { pass, message: `${header(ctx)}\n\n${exp}\nReceived: ${pretty(received)}${extra}` };
}

function numeric(ctx: MatchContext, received: unknown, expected: unknown, op: string, test: (a: number | bigint, b: number | bigint) => boolean): MatchResult {
  const ok = (x: unknown): x is number | bigint => typeof x === "number" || typeof x === "bigint";
  if (!ok(received) || !ok(expected)) throw new AssertionError(`${header(ctx)}\n\nreceived and expected must be numbers or bigints; received ${pretty(received)}, expected ${pretty(expected)}`);
  return { pass: test(received, expected), message: `${header(ctx)}\n\nExpected: ${ctx.isNot ? "not " : ""}${op} ${pretty(expected)}\nReceived: ${pretty(received)}` };
}

function lengthOf(v: unknown): number | undefined {
  if ((typeof v === "string" || typeof v === "function" || isObject(v)) && typeof (v as { length?: unknown }).length === "number") {
    return (v as { length: number }).length;
  }
  return undefined;
}

function propertyPath(path: unknown): Array<string | number> {
  if (Array.isArray(path)) return path as Array<string | number>;
  if (typeof path !== "string") throw new TypeError(`toHaveProperty: path must be a string or an array, got ${pretty(path)}`);
  const parts: string[] = [];
  for (const m of path.matchAll(/[^.[\]]+|\[(\d*)\]/g)) parts.push(m[1] !== undefined ? m[1] : m[0]);
  return parts;
}

interface Thrown { value: unknown }

/** Jest's toThrow, over the thrown value (from calling `received`, or the rejection reason with `.rejects`). */
function toThrowMatcher(ctx: MatchContext, received: unknown, expected?: unknown): MatchResult {
  let thrown: Thrown | undefined;
  if (ctx.fromPromise) {
    thrown = { value: received };
  } else {
    if (typeof received !== "function") {
      throw new AssertionError(`${header(ctx)}\n\nReceived value must be a function (wrap the call: expect(() => f()).toThrow()), received ${pretty(received)}`);
    }
    try {
      (received as () => unknown)();
    } catch (e) {
      thrown = { value: e };
    }
  }
  const messageOf = (v: unknown): string => (isObject(v) && typeof (v as { message?: unknown }).message === "string" ? (v as { message: string }).message : String(v));
  const got = thrown === undefined ? "Received function did not throw" : `Thrown: ${describeError(thrown.value)}`;
  const result = (pass: boolean, what: string): MatchResult => ({ pass, message: `${header(ctx)}\n\nExpected ${ctx.isNot ? "no throw matching" : "a throw matching"}: ${what}\n${got}` });
  if (expected === undefined) {
    return { pass: thrown !== undefined, message: `${header(ctx, "")}\n\n${ctx.isNot ? "Expected no throw" : "Expected a throw"}\n${got}` };
  }
  if (thrown === undefined) return result(false, pretty(expected));
  const v = thrown.value;
  if (typeof expected === "function") {
    return result(v instanceof (expected as new () => unknown), `an instance of ${(expected as { name?: string }).name || "the given class"}`);
  }
  if (typeof expected === "string") return result(messageOf(v).includes(expected), `message containing ${JSON.stringify(expected)}`);
  if (expected instanceof RegExp) return result(expected.test(messageOf(v)), `message matching ${String(expected)}`);
  if (isAsymmetric(expected)) return result(expected.asymmetricMatch(v), expected.toString());
  if (isObject(expected) && typeof (expected as { message?: unknown }).message === "string") {
    return result(messageOf(v) === (expected as { message: string }).message, `message equal to ${JSON.stringify((expected as { message: string }).message)}`);
  }
  throw new AssertionError(`${header(ctx)}\n\nexpected must be a string, RegExp, class, error object or asymmetric matcher; got ${pretty(expected)}`);
}

const MATCHERS: Record<string, Matcher> = {
  toBe(ctx, r, e) {
    const pass = Object.is(r, e);
    const hint = !pass && equals(r, e, true) ? "\n\nIf it should pass with deep equality, replace \"toBe\" with \"toStrictEqual\"" : "";
    return compare(ctx, pass, e, r, hint);
  },
  toEqual(ctx, r, e) {
    const pass = equals(r, e, false);
    const buffers = r instanceof ArrayBuffer || r instanceof DataView || e instanceof ArrayBuffer || e instanceof DataView;
    const note = buffers ? "\n(Jest 29's toEqual does not compare ArrayBuffer/DataView contents; this shim does: compare views, e.g. new Uint8Array(buffer))" : "";
    return compare(ctx, pass, e, r, pass ? "" : `\nFirst difference: ${firstDifference(r, e, false) ?? "?"}${note}`);
  },
  toStrictEqual(ctx, r, e) {
    const pass = equals(r, e, true);
    return compare(ctx, pass, e, r, pass ? "" : `\nFirst difference: ${firstDifference(r, e, true) ?? "(types or constructors differ)"}`);
  },
  toMatchObject(ctx, r, e) {
    if (!isObject(e)) throw new AssertionError(`${header(ctx)}\n\nexpected value must be a non-null object, got ${pretty(e)}`);
    if (!isObject(r)) throw new AssertionError(`${header(ctx)}\n\nreceived value must be a non-null object, got ${pretty(r)}`);
    return compare(ctx, matchesObject(r, e), e, r);
  },
  toBeUndefined: (ctx, r) => compare(ctx, r === undefined, undefined, r),
  toBeDefined: (ctx, r) => ({ pass: r !== undefined, message: `${header(ctx, "")}\n\nReceived: ${pretty(r)}` }),
  toBeNull: (ctx, r) => compare(ctx, r === null, null, r),
  toBeTruthy: (ctx, r) => ({ pass: !!r, message: `${header(ctx, "")}\n\nReceived: ${pretty(r)}` }),
  toBeFalsy: (ctx, r) => ({ pass: !r, message: `${header(ctx, "")}\n\nReceived: ${pretty(r)}` }),
  toBeNaN: (ctx, r) => ({ pass: typeof r === "number" && Number.isNaN(r), message: `${header(ctx, "")}\n\nReceived: ${pretty(r)}` }),
  toBeGreaterThan: (ctx, r, e) => numeric(ctx, r, e, ">", (a, b) => a > b),
  toBeGreaterThanOrEqual: (ctx, r, e) => numeric(ctx, r, e, ">=", (a, b) => a >= b),
  toBeLessThan: (ctx, r, e) => numeric(ctx, r, e, "<", (a, b) => a < b),
  toBeLessThanOrEqual: (ctx, r, e) => numeric(ctx, r, e, "<=", (a, b) => a <= b),
  toBeCloseTo(ctx, r, e, digits) {
    const d = typeof digits === "number" ? digits : 2;
    if (typeof r !== "number" || typeof e !== "number") throw new AssertionError(`${header(ctx)}\n\nreceived and expected must be numbers`);
    const pass = (r === Infinity && e === Infinity) || (r === -Infinity && e === -Infinity) || Math.abs(e - r) < Math.pow(10, -d) / 2;
    return compare(ctx, pass, e, r, `\nPrecision: ${d} digits`);
  },
  toBeInstanceOf(ctx, r, e) {
    if (typeof e !== "function") throw new AssertionError(`${header(ctx)}\n\nexpected value must be a class, got ${pretty(e)}`);
    const got = isObject(r) ? (Object.getPrototypeOf(r) as { constructor?: { name?: string } } | null)?.constructor?.name ?? "?" : pretty(r);
    return { pass: r instanceof (e as new () => unknown), message: `${header(ctx)}\n\nExpected constructor: ${ctx.isNot ? "not " : ""}${(e as { name?: string }).name}\nReceived constructor: ${got}` };
  },
  toContain(ctx, r, e) {
    if (typeof r === "string") {
      if (typeof e !== "string") throw new AssertionError(`${header(ctx)}\n\nexpected must be a string when received is a string, got ${pretty(e)}`);
      return compare(ctx, r.includes(e), e, r);
    }
    if (!isObject(r) || typeof (r as { [Symbol.iterator]?: unknown })[Symbol.iterator] !== "function") {
      throw new AssertionError(`${header(ctx)}\n\nreceived value must be a string or iterable, got ${pretty(r)}`);
    }
    const items = Array.from(r as Iterable<unknown>);
    return compare(ctx, items.some((x) => x === e), e, r);
  },
  toContainEqual(ctx, r, e) {
    if (!isObject(r) || typeof (r as { [Symbol.iterator]?: unknown })[Symbol.iterator] !== "function") {
      throw new AssertionError(`${header(ctx)}\n\nreceived value must be iterable, got ${pretty(r)}`);
    }
    return compare(ctx, Array.from(r as Iterable<unknown>).some((x) => equals(x, e, false)), e, r);
  },
  toHaveLength(ctx, r, e) {
    const n = lengthOf(r);
    if (n === undefined) throw new AssertionError(`${header(ctx)}\n\nreceived value must have a length property whose value is a number, got ${pretty(r)}`);
    return { pass: n === e, message: `${header(ctx)}\n\nExpected length: ${ctx.isNot ? "not " : ""}${pretty(e)}\nReceived length: ${n}\nReceived value: ${pretty(r)}` };
  },
  toHaveProperty(ctx, r, ...args) {
    const [path, value] = args;
    const parts = propertyPath(path);
    let v: unknown = r;
    let found = r !== undefined && r !== null;
    for (const p of parts) {
      if (v === undefined || v === null || !(typeof v === "object" || typeof v === "function" || typeof v === "string") || !(p in Object(v))) {
        found = false;
        break;
      }
      v = (v as Record<string, unknown>)[p];
    }
    const pass = found && (args.length < 2 || equals(v, value, false));
    const what = args.length < 2 ? "" : ` with value ${pretty(value)}`;
    return { pass, message: `${header(ctx, "path")}\n\nExpected ${ctx.isNot ? "no " : ""}property ${pretty(path)}${what}\n${found ? `Received value: ${pretty(v)}` : "Property not found"}\nIn: ${pretty(r)}` };
  },
  toMatch(ctx, r, e) {
    if (typeof r !== "string") throw new AssertionError(`${header(ctx)}\n\nreceived value must be a string, got ${pretty(r)}`);
    const pass = typeof e === "string" ? r.includes(e) : e instanceof RegExp ? e.test(r) : false;
    return compare(ctx, pass, e, r);
  },
  toThrow: toThrowMatcher,
  toThrowError: toThrowMatcher,
};

type MatcherFns = Record<string, (...args: unknown[]) => unknown>;

/**
 * What expect(received) returns. The matchers live on the prototype (installed from MATCHERS below), so an
 * expect() call allocates one small object, not a closure per matcher: fast-check properties call expect
 * thousands of times, and XS is an interpreter.
 */
class Expectation {
  constructor(readonly received: unknown, readonly isNot: boolean, readonly fromPromise: boolean) {}
  get not(): Expectation { return new Expectation(this.received, !this.isNot, this.fromPromise); }
  get resolves(): AsyncExpectation { return new AsyncExpectation(this.received, "resolves", false); }
  get rejects(): AsyncExpectation { return new AsyncExpectation(this.received, "rejects", false); }
}

class AsyncExpectation {
  constructor(readonly promise: unknown, readonly kind: "resolves" | "rejects", readonly isNot: boolean) {}
  get not(): AsyncExpectation { return new AsyncExpectation(this.promise, this.kind, !this.isNot); }
}

function runMatcher(name: string, received: unknown, isNot: boolean, fromPromise: boolean, args: unknown[]): void {
  assertionCalls++;
  const result = MATCHERS[name]!({ isNot, fromPromise, name }, received, ...args);
  if (result.pass === isNot) throw new AssertionError(result.message);
}

async function runAsyncMatcher(name: string, e: AsyncExpectation, args: unknown[]): Promise<void> {
  const { kind, isNot } = e;
  const value = typeof e.promise === "function" ? (e.promise as () => unknown)() : e.promise;
  if (!isThenable(value)) {
    assertionCalls++;
    throw new AssertionError(`expect(received).${kind}.${isNot ? "not." : ""}${name}()\n\nreceived value must be a promise or a function returning a promise, got ${pretty(value)}`);
  }
  let outcome: { ok: boolean; value: unknown };
  try {
    outcome = { ok: true, value: await watchdog(value, `the promise given to expect(…).${kind}`) };
  } catch (err) {
    outcome = { ok: false, value: err };
  }
  if (outcome.ok !== (kind === "resolves")) {
    assertionCalls++;
    throw new AssertionError(`expect(received).${kind}.${isNot ? "not." : ""}${name}()\n\nReceived promise ${outcome.ok ? "resolved instead of rejected" : "rejected instead of resolved"}\n${outcome.ok ? "Resolved to value" : "Rejected to value"}: ${outcome.ok ? pretty(outcome.value) : describeError(outcome.value)}`);
  }
  runMatcher(name, outcome.value, isNot, kind === "rejects", args);
}

for (const name of Object.keys(MATCHERS)) {
  Object.defineProperty(Expectation.prototype, name, {
    value: function (this: Expectation, ...args: unknown[]): void {
      runMatcher(name, this.received, this.isNot, this.fromPromise, args);
    },
    writable: true,
    configurable: true,
  });
  Object.defineProperty(AsyncExpectation.prototype, name, {
    value: function (this: AsyncExpectation, ...args: unknown[]): Promise<void> {
      return runAsyncMatcher(name, this, args);
    },
    writable: true,
    configurable: true,
  });
}

interface ExpectApi {
  (received: unknown): Expectation & MatcherFns;
  any(cls: unknown): Asymmetric;
  anything(): Asymmetric;
  objectContaining(o: Record<string, unknown>): Asymmetric;
  arrayContaining(a: unknown[]): Asymmetric;
  stringContaining(s: string): Asymmetric;
  stringMatching(r: string | RegExp): Asymmetric;
  assertions(n: number): void;
  hasAssertions(): void;
}

function makeExpect(): ExpectApi {
  const api = ((received: unknown) => new Expectation(received, false, false)) as ExpectApi;
  api.any = (cls) => {
    if (typeof cls !== "function") throw new TypeError("expect.any() expects a constructor");
    const c = cls as { name?: string };
    return asymmetric(`Any<${c.name ?? "?"}>`, (v) => {
      if (cls === Number) return typeof v === "number" || v instanceof Number;
      if (cls === String) return typeof v === "string" || v instanceof String;
      if (cls === Boolean) return typeof v === "boolean" || v instanceof Boolean;
      if (cls === BigInt) return typeof v === "bigint";
      if (cls === Symbol) return typeof v === "symbol";
      if (cls === Function) return typeof v === "function";
      if (cls === Object) return typeof v === "object" && v !== null;
      return v instanceof (cls as new () => unknown);
    });
  };
  api.anything = () => asymmetric("Anything", (v) => v !== undefined && v !== null);
  api.objectContaining = (o) => asymmetric(`ObjectContaining ${pretty(o)}`, (v) =>
    isObject(v) && Object.keys(o).every((k) => k in v && equals((v as Record<string, unknown>)[k], o[k], false)));
  api.arrayContaining = (a) => asymmetric(`ArrayContaining ${pretty(a)}`, (v) =>
    Array.isArray(v) && a.every((x) => v.some((y) => equals(y, x, false))));
  api.stringContaining = (s) => asymmetric(`StringContaining ${JSON.stringify(s)}`, (v) => typeof v === "string" && v.includes(s));
  api.stringMatching = (r) => asymmetric(`StringMatching ${String(r)}`, (v) => typeof v === "string" && (typeof r === "string" ? new RegExp(r) : r).test(v));
  api.assertions = (n) => { expectedAssertions = n; };
  api.hasAssertions = () => { requireAssertions = true; };
  return api;
}

export const expect = makeExpect();
