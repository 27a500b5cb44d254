#!/usr/bin/env node
/**
 * test-mcsim.mjs — `npm run test:mcsim`: the core's unit tests on the Moddable SDK's own XS, in its Linux
 * simulator. The same test files `npm run test:xs` runs on xsnap (test/core/**\/*.test.ts and
 * test/xs/**\/*.test.ts, bundled the same way by scripts/xs-bundle.mjs: esbuild, ESM, test/xs/jest-shim.ts
 * injected for the Jest globals), built into ONE release app with `mcconfig -m -p lin`, then run in mcsim
 * once per file, headless (one Xvfb for the whole run), one after the other.
 *
 * Why this shape:
 * - Release, not debug (`-d`): in a release build `trace` is printf to the simulator's stdout
 *   (xs/sources/xsDebug.c, fxReport), read here from a pipe; a debug build sends every line through the
 *   xsbug protocol, which made the run many times slower (docs/moddable.md, test:mcsim).
 * - One simulator process per file, like xsnap: a file that crashes the simulator, aborts XS or changes the
 *   built-ins (frozen-builtins.test.ts freezes them, as Moddable's preload does) cannot break the others,
 *   and a crash is reported against its own file (with the test it was in and the signal). The app reads
 *   which file to run from $MCSIM_TEST.
 * - `setImmediate` runs after the promise job queue is empty, as on xsnap: a GLib idle source of
 *   G_PRIORITY_DEFAULT_IDLE (scripts/mcsim-tests/host.c), below XS's promise jobs and the timers. The
 *   shim counts these turns to call a test stuck; a `Timer.set(…, 1)` turn is 1 ms of wall-clock time
 *   whether or not jobs are still running, so a long but busy test was called stuck.
 *
 * The app (written to build/mcsim-tests/shadow-ota-mcsim-tests, never committed): main.js installs `print` (over `trace`) and
 * `setImmediate`, imports the bundle named by $MCSIM_TEST (each bundle runs its tests at import and prints
 * one `##xs-test-summary##` line), prints `##mcsim-test-done##` and ends the simulator. The manifest keeps
 * every built-in (`"strip": []`): the linker's default strips what the app's own code does not use.
 *
 * Guards (no wall-clock assertion): each simulator's CPU time is limited (RLIMIT_CPU, --cpu-limit, default
 * 300 s a file, set with the shell's `ulimit -t` before exec'ing mcsim); a far larger wall-clock limit
 * (--timeout, default 900 s a file) only stops a simulator that hangs without using CPU.
 *
 * Output: one line per file (PASS/FAIL, counts, seconds, and why when it did not finish), the failing tests'
 * lines, the XS version, and as the LAST line exactly `N passed, N failed`. A file that prints no summary (it
 * crashed, was stopped by a limit, failed to load) counts one failure on top of the tests it reported.
 * Exit status 1 on any failure or when no test passed.
 *
 * Without an SDK ($MODDABLE unset, or no built Linux tools under it, or no Xvfb) it prints that the run was
 * SKIPPED and why, and exits 0 without a count line: nothing was tested, nothing passed.
 *
 * A FILE argument naming an existing .ts file outside test/core and test/xs is run as given (the runner's
 * own tests use fixtures that way).
 *
 * Usage: node scripts/test-mcsim.mjs [--cpu-limit=SECONDS] [--timeout=SECONDS] [--build-dir=DIR] [FILE-OR-SUBSTRING…]
 *   --cpu-limit  CPU seconds one file's simulator may use (default 300)
 *   --timeout    wall-clock seconds one file may take, a backstop only (default 900)
 *   --build-dir  where the app and the build go (default build/mcsim-tests; the runner's own test uses another)
 */
import { spawn, spawnSync } from "node:child_process";
import { constants as osConstants } from "node:os";
import { copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { bundleTestFile, findTests, TEST_DIRS } from "./xs-bundle.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const APP_NAME = "shadow-ota-mcsim-tests";
const SHIM = join(ROOT, "test/xs/jest-shim.ts");
const HOST = join(ROOT, "scripts/mcsim-tests/host");
const SUMMARY_PREFIX = "##xs-test-summary## "; // test/xs/jest-shim.ts
const START_PREFIX = "▶ "; // START_PREFIX in test/xs/jest-shim.ts
const DONE = "##mcsim-test-done##";
const CRASH_PREFIX = "##mcsim-test-crash## ";
const VERSION_PREFIX = "##mcsim-xs-version## ";
const MAX_OUTPUT = 4 * 1024 * 1024;
const CPU_HARD_EXTRA_SEC = 5;
const CPU_PREFIX = "##mcsim-cpu## ";

// ------------------------------------------------------------------------------------------------ options

const USAGE = "usage: node scripts/test-mcsim.mjs [--cpu-limit=SECONDS] [--timeout=SECONDS] [--build-dir=DIR] [FILE-OR-SUBSTRING…]";
const options = { cpuLimitSec: 300, timeoutSec: 900, buildDir: "build/mcsim-tests", filters: [] };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const value = (name) => (a.startsWith(`${name}=`) ? a.slice(name.length + 1) : argv[++i]);
  if (a === "--cpu-limit" || a.startsWith("--cpu-limit=")) options.cpuLimitSec = Number(value("--cpu-limit"));
  else if (a === "--timeout" || a.startsWith("--timeout=")) options.timeoutSec = Number(value("--timeout"));
  else if (a === "--build-dir" || a.startsWith("--build-dir=")) options.buildDir = value("--build-dir");
  else if (a.startsWith("-")) usage(`unknown option ${a}`);
  else options.filters.push(a);
}
if (!(Number.isInteger(options.cpuLimitSec) && options.cpuLimitSec >= 1)) usage("--cpu-limit must be a positive whole number of seconds");
if (!(options.timeoutSec > 0)) usage("--timeout must be a positive number of seconds");

const APP = join(resolve(ROOT, options.buildDir), APP_NAME);
const OUT = join(resolve(ROOT, options.buildDir), "out");

function usage(problem) {
  console.error(`test-mcsim: ${problem}\n${USAGE}`);
  process.exit(2);
}

// ------------------------------------------------------------------------------------------------ the SDK

/** Why the run cannot happen here, or undefined when the SDK's Linux tools and Xvfb are in place. */
function missingSdk(env) {
  const m = env.MODDABLE;
  if (!m) return "$MODDABLE is not set (no Moddable SDK installed)";
  for (const rel of ["build/bin/lin/release/mcconfig", "build/bin/lin/release/mcsim"]) {
    if (!existsSync(join(m, rel))) return `${join(m, rel)} does not exist (install the SDK's Linux tools by its Getting Started guide)`;
  }
  const xvfb = spawnSync("sh", ["-c", "command -v Xvfb"], { encoding: "utf8" });
  if (xvfb.status !== 0) return "Xvfb is not installed (the simulator needs an X display)";
  return undefined;
}

const why = missingSdk(process.env);
if (why !== undefined) {
  console.log(`test:mcsim: SKIPPED — ${why}. No test ran on the SDK's XS; npm run test:xs runs the same files on xsnap.`);
  process.exit(0);
}
const MODDABLE = process.env.MODDABLE;

// ------------------------------------------------------------------------------------------------ files

function selectTests() {
  const all = TEST_DIRS.flatMap((dir) => findTests(ROOT, dir)).sort();
  if (options.filters.length === 0) return all;
  const wanted = options.filters.map((f) => relative(ROOT, resolve(f)).split(sep).join("/"));
  const selected = all.filter((file) => options.filters.some((f, i) => file === wanted[i] || file.includes(f)));
  const extra = wanted.filter((w) => w.endsWith(".ts") && !w.startsWith("..") && !all.includes(w) && existsSync(join(ROOT, w)));
  return [...selected, ...extra];
}

const files = selectTests();
if (files.length === 0) {
  console.log(`test:mcsim: no test file matches ${options.filters.join(" ")}`);
  console.log("0 passed, 1 failed");
  process.exit(1);
}

// ------------------------------------------------------------------------------------------------ the app

/*
 * fast-check under frozen built-ins. A Moddable app's built-ins are frozen after preload (Object.prototype
 * among them), so `obj.valueOf = v` on an ordinary object throws in strict code ("set valueOf: not
 * writable", the override mistake). fast-check's dictionary builder (fc.dictionary, fc.object,
 * fc.jsonValue…) assigns generated keys that way, and its string arbitraries like to produce "valueOf",
 * "toString", "constructor"… so a property test failed inside fast-check's own generator, at random, before
 * the core saw the value. This plugin makes that one line define the property instead, as fast-check
 * already does for "__proto__": the generated object is the same own, writable, enumerable, configurable
 * data property it is on Node. It fails the bundle if the line is not found (a fast-check upgrade), rather
 * than silently running unpatched. test:xs (xsnap, built-ins not frozen) bundles fast-check unchanged.
 */
const FAST_CHECK_ASSIGN = "else obj[key] = keyValues[idx][1];";
const FAST_CHECK_DEFINE = "else safeObjectDefineProperty$2(obj, key, { enumerable: true, configurable: true, writable: true, value: keyValues[idx][1] });";
const fastCheckUnderFrozenBuiltins = {
  name: "fast-check-frozen-builtins",
  setup(build) {
    build.onLoad({ filter: /[\\/]fast-check[\\/]lib[\\/]fast-check\.js$/ }, async (args) => {
      const text = await readFile(args.path, "utf8");
      const at = text.indexOf(FAST_CHECK_ASSIGN);
      if (at < 0 || text.indexOf(FAST_CHECK_ASSIGN, at + 1) >= 0 || !text.includes("function safeObjectDefineProperty$2(") && !text.includes("safeObjectDefineProperty$2 =")) {
        return { errors: [{ text: `test-mcsim: ${args.path} no longer holds exactly one "${FAST_CHECK_ASSIGN}" (fast-check changed): update the patch in scripts/test-mcsim.mjs` }] };
      }
      return { contents: text.replace(FAST_CHECK_ASSIGN, FAST_CHECK_DEFINE), loader: "js" };
    });
  },
};

const moduleName = (file) => `tests/${file.replace(/\.ts$/, "").replace(/[^A-Za-z0-9]+/g, "_")}`;

rmSync(APP, { recursive: true, force: true });
mkdirSync(join(APP, "tests"), { recursive: true });
mkdirSync(OUT, { recursive: true });
const bundled = [];
const failedToBundle = [];
for (const file of files) {
  try {
    await bundleTestFile({ root: ROOT, shim: SHIM, file, outfile: join(APP, `${moduleName(file)}.js`), label: "mcsim", plugins: [fastCheckUnderFrozenBuiltins] });
    bundled.push(file);
  } catch (e) {
    failedToBundle.push({ file, error: (e.errors ?? []).map((m) => m.text).join("; ") || String(e) });
  }
}
copyFileSync(`${HOST}.c`, join(APP, "mcsim-host.c"));
copyFileSync(`${HOST}.js`, join(APP, "mcsim-host.js"));
copyFileSync(join(dirname(HOST), "version.c"), join(APP, "mcsim-version.c"));

const mainJs = `// Generated by scripts/test-mcsim.mjs: runs the test file named by $MCSIM_TEST, then ends the simulator.
import { exit, getenv, idle, lineBuffered, version } from "mcsim-host";
lineBuffered();
globalThis.print = (...values) => trace(values.map((v) => String(v)).join(" ") + "\\n");
// The shim times tests with performance.now() (durations only, to show slow tests); Moddable has Date.now.
if (globalThis.performance === undefined) globalThis.performance = { now: () => Date.now() };
// xsnap's setImmediate: after the promise job queue is empty (scripts/mcsim-tests/host.c).
const immediates = [];
function runImmediates() {
  for (const f of immediates.splice(0)) {
    try { f(); } catch (e) { print(${JSON.stringify(CRASH_PREFIX)} + "setImmediate callback threw " + String(e)); }
  }
}
globalThis.setImmediate = (f, ...args) => { immediates.push(() => f(...args)); idle(runImmediates); };
const files = {
${bundled.map((f) => `  ${JSON.stringify(f)}: () => import(${JSON.stringify(moduleName(f))}),`).join("\n")}
};
export default function main() {
  print(${JSON.stringify(VERSION_PREFIX)} + version());
  const file = getenv("MCSIM_TEST");
  const load = files[file];
  if (load === undefined) { print(${JSON.stringify(CRASH_PREFIX)} + "no test file " + file + " in this app"); exit(2); }
  load().then(
    () => { print(${JSON.stringify(DONE)}); exit(0); },
    (e) => { print(${JSON.stringify(CRASH_PREFIX)} + (e instanceof Error ? e.name + ": " + e.message : String(e))); exit(1); },
  );
}
`;
writeFileSync(join(APP, "main.js"), mainJs);
writeFileSync(join(APP, "manifest.json"), JSON.stringify({
  include: ["$(MODDABLE)/examples/manifest_base.json"],
  // xsnap's own sizes (xsnap.c's xsCreation): the simulator's defaults (a 32 KB chunk heap growing by 1 KB,
  // 2048 slots growing by 64) made XS collect garbage every few allocations, and the 400 KB UTF-8 test of
  // xs-smoke took minutes.
  creation: {
    chunk: { initial: 32 * 1024 * 1024, incremental: 4 * 1024 * 1024 },
    heap: { initial: 256 * 1024, incremental: 128 * 1024 },
    stack: 4096,
    keys: { initial: 32000, incremental: 8000, name: 1993, symbol: 127 },
    parser: { buffer: 8192 * 1024, table: 1993 },
  },
  modules: { "*": ["./main", "./mcsim-host", "./mcsim-version"], "tests/*": "./tests/*" },
  strip: [],
}, null, "\t"));

// ------------------------------------------------------------------------------------------------ build

const t0 = Date.now();
const seconds = (ms) => (ms / 1000).toFixed(1);
console.log(`test:mcsim: ${bundled.length} test files; building one release app with mcconfig -m -p lin (SDK at ${MODDABLE})`);
const env = { ...process.env, PATH: `${join(MODDABLE, "build/bin/lin/release")}:${join(ROOT, "node_modules/.bin")}:${process.env.PATH}` };
const build = spawnSync("mcconfig", ["-m", "-p", "lin", "-t", "build", "-o", OUT], { cwd: APP, env, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
const so = join(OUT, "bin/lin/mc/release", APP_NAME, "mc.so");
if (build.status !== 0 || !existsSync(so)) {
  const lines = `${build.stdout}${build.stderr}`.split("\n").filter((l) => /error|Error/.test(l)).slice(0, 30);
  console.log(`test:mcsim: mcconfig failed (exit ${build.status}${existsSync(so) ? "" : `, no ${relative(ROOT, so)}`})\n  ${lines.join("\n  ")}`);
  console.log(`0 passed, ${files.length} failed`);
  process.exit(1);
}
console.log(`test:mcsim: built in ${seconds(Date.now() - t0)} s: ${relative(ROOT, so)}`);

// ------------------------------------------------------------------------------------------------ run

const { startXvfb } = await import("./mcsim-run.mjs");
const MCSIM = join(MODDABLE, "build/bin/lin/release/mcsim");
const CONFIG_HOME = join(resolve(ROOT, options.buildDir), "config");
mkdirSync(CONFIG_HOME, { recursive: true });

let child;
let stopped = false;
const onSignal = () => { stopped = true; if (child && child.exitCode === null) killGroup(child); };
process.once("SIGTERM", onSignal);
process.once("SIGINT", onSignal);

/**
 * Runs one test file in its own simulator; resolves { status, signal, stdout, stderr, timedOut, ms, cpuSec }.
 * The shell sets the CPU-time limit (RLIMIT_CPU counts the simulator's own CPU time, whatever else the
 * machine does, as in test-xs.mjs), runs mcsim, then prints the CPU time its child used (`times`), which is
 * the figure to compare on a shared machine; the wall-clock time depends on the load.
 */
function runFile(file, display) {
  return new Promise((resolvePromise) => {
    const started = Date.now();
    const script = 'ulimit -S -t "$1" && ulimit -H -t "$2" && shift 2 && "$@"; s=$?; echo "' + CPU_PREFIX + '" >&2; times >&2; exit $s';
    const limited = ["-c", script, "test-mcsim", String(options.cpuLimitSec), String(options.cpuLimitSec + CPU_HARD_EXTRA_SEC), MCSIM, so];
    // XDG_CONFIG_HOME of its own: mcsim copies the app's mc.so to $XDG_CONFIG_HOME/tech.moddable.mcsim/mc.so
    // (default ~/.config; `cp -p`, which rewrites the file in place, tools/mcsim/main.js launchScreen and
    // modules/piu/PC/lin/piuFiles.c) and loads that copy, so a simulator started elsewhere on the machine
    // (a device app, another run) overwrote the library under a running one: SIGSEGV.
    const env = { ...process.env, DISPLAY: display, MCSIM_TEST: file, XDG_CONFIG_HOME: CONFIG_HOME };
    child = spawn("/bin/sh", limited, { cwd: OUT, stdio: ["ignore", "pipe", "pipe"], env, detached: true });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout.setEncoding("utf8").on("data", (c) => { if (stdout.length < MAX_OUTPUT) stdout += c; });
    child.stderr.setEncoding("utf8").on("data", (c) => { if (stderr.length < MAX_OUTPUT) stderr += c; });
    const timer = setTimeout(() => { timedOut = true; killGroup(child); }, options.timeoutSec * 1000);
    child.on("error", (err) => { clearTimeout(timer); resolvePromise({ status: null, signal: null, stdout, stderr: `${stderr}\ncannot start mcsim: ${err.message}`, timedOut, ms: Date.now() - started }); });
    child.on("close", (status) => {
      clearTimeout(timer);
      // The shell reports a child killed by signal N as status 128 + N.
      const signal = status > 128 ? Object.keys(osConstants.signals).find((k) => osConstants.signals[k] === status - 128) ?? `signal ${status - 128}` : null;
      // After the marker, `times` prints the shell's own user and system time, then its children's (mcsim).
      const errLines = stderr.split("\n");
      const at = errLines.map((l) => l.trimEnd()).lastIndexOf(CPU_PREFIX.trimEnd());
      const m = at >= 0 ? /^(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s$/.exec(errLines[at + 2] ?? "") : null;
      const cpuSec = m ? Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4]) : undefined;
      if (at >= 0) stderr = errLines.slice(0, at).join("\n");
      resolvePromise({ status: signal ? null : status, signal, stdout, stderr, timedOut, ms: Date.now() - started, cpuSec });
    });
  });
}

/** Kills the shell and the simulator it started (their own process group: spawned detached). */
function killGroup(c) {
  try { process.kill(-c.pid, "SIGKILL"); } catch { /* already gone */ }
}

/** Turns a finished run into { passed, failed, skipped, todo, problem }. */
function judge(file, run) {
  const lines = run.stdout.split("\n");
  const crash = lines.find((l) => l.startsWith(CRASH_PREFIX));
  const summaryLine = lines.filter((l) => l.startsWith(SUMMARY_PREFIX)).pop();
  let summary;
  try { summary = summaryLine === undefined ? undefined : JSON.parse(summaryLine.slice(SUMMARY_PREFIX.length)); } catch { summary = undefined; }
  const valid = summary && summary.file === file && ["passed", "failed", "skipped", "todo"].every((k) => Number.isInteger(summary[k]) && summary[k] >= 0);
  const count = (prefix) => lines.filter((l) => l.startsWith(prefix)).length;
  const base = { passed: count("✓ "), failed: count("✕ ") + 1, skipped: count("○ "), todo: 0 };
  const lastStarted = lines.filter((l) => l.startsWith(START_PREFIX)).pop();
  const where = lastStarted === undefined ? "" : `; last test started: ${lastStarted.slice(START_PREFIX.length)}`;
  if (stopped) return { ...base, problem: `the run was stopped by a signal${where}` };
  if (run.timedOut) return { ...base, problem: `still running after ${options.timeoutSec} s of wall-clock time without using up its CPU limit (blocked?)${where}` };
  if (run.signal === "SIGXCPU") return { ...base, problem: `stopped after ${options.cpuLimitSec} s of CPU time (--cpu-limit; an endless loop?)${where}` };
  if (run.signal) return { ...base, problem: `mcsim killed by ${run.signal}${where}` };
  if (crash !== undefined) return { ...base, problem: `the bundle failed to load or run: ${crash.slice(CRASH_PREFIX.length)}${where}` };
  if (!valid) return { ...base, problem: `no valid summary line (mcsim exited with status ${run.status}): the file crashed or stopped early${where}` };
  if (run.status !== 0 || !lines.includes(DONE)) return { ...summary, failed: summary.failed + 1, problem: `mcsim exited with status ${run.status} after its summary` };
  if (summary.passed + summary.failed + summary.skipped + summary.todo === 0) return { ...summary, failed: 1, problem: "the file holds no test" };
  return { ...summary, problem: undefined };
}

function failureLines(run, verdict) {
  const out = [];
  let inBlock = false;
  for (const line of run.stdout.split("\n")) {
    if (line.startsWith("✕ ")) inBlock = true;
    else if (!line.startsWith("    ")) inBlock = false;
    if (inBlock) out.push(line);
  }
  if (verdict.problem) {
    const other = run.stdout.split("\n").filter((l) => l && !/^(▶|✓|○|✕) |^##/.test(l) && !l.startsWith("    "));
    if (other.length > 0) out.push("other output (last lines):", ...other.slice(-20));
    const err = run.stderr.split("\n").filter((l) => l.trim());
    if (err.length > 0) out.push("mcsim stderr (last lines):", ...err.slice(-20));
  }
  return out;
}

let passed = 0;
let failed = 0;
for (const { file, error } of failedToBundle) {
  failed++;
  console.log(`FAIL  ${file}  0 passed, 1 failed — cannot bundle for XS: ${error}`);
}
const xvfb = await startXvfb();
let xsVersion;
let cpuTotal = 0;
const ran = new Set();
try {
  for (const file of bundled) {
    if (stopped) break;
    ran.add(file);
    const run = await runFile(file, xvfb.display);
    xsVersion ??= run.stdout.split("\n").find((l) => l.startsWith(VERSION_PREFIX))?.slice(VERSION_PREFIX.length);
    const v = judge(file, run);
    passed += v.passed;
    failed += v.failed;
    const counts = `${v.passed} passed, ${v.failed} failed${v.skipped ? `, ${v.skipped} skipped` : ""}${v.todo ? `, ${v.todo} todo` : ""}`;
    if (run.cpuSec !== undefined) cpuTotal += run.cpuSec;
    const time = `${seconds(run.ms)} s${run.cpuSec === undefined ? "" : `, ${run.cpuSec.toFixed(1)} s CPU`}`;
    console.log(`${v.failed > 0 ? "FAIL" : "PASS"}  ${file}  ${counts} (${time})${v.problem ? ` — ${v.problem}` : ""}`);
    if (v.failed > 0) for (const l of failureLines(run, v).slice(0, 60)) console.log(`    ${l}`);
  }
} finally {
  xvfb.stop();
}
for (const file of bundled.filter((f) => !ran.has(f))) {
  failed++;
  console.log(`FAIL  ${file}  0 passed, 1 failed — not run: the run was stopped by a signal`);
}
console.log(`test:mcsim: XS ${xsVersion ?? "(version not printed)"} in the SDK's simulator; ${ran.size} files, ${cpuTotal.toFixed(1)} s of simulator CPU; ${seconds(Date.now() - t0)} s in all (build and runs)`);
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
