#!/usr/bin/env node
/**
 * test-mcsim.mjs — `npm run test:mcsim`: the core's unit tests on the Moddable SDK's own XS, in its Linux
 * simulator. The same test files `npm run test:xs` runs on xsnap (test/core/**\/*.test.ts and
 * test/xs/**\/*.test.ts, bundled the same way: esbuild, ESM, test/xs/jest-shim.ts injected for the Jest
 * globals), built into one debug app with `mcconfig -d -m -p lin` and run headless in mcsim
 * (scripts/mcsim-run.mjs: Xvfb, the xsbug protocol read with the SDK's xsbug-log parser).
 *
 * The app (written to build/mcsim-tests/app, never committed): main.js gives the shim what xsnap has and
 * Moddable does not — `print` over `trace`, `setImmediate` over `Timer.set(…, 1)` — then imports the test
 * bundles one after the other (each bundle runs its tests at import and prints one `##xs-test-summary##`
 * line) and prints `##mcsim-tests-done##`. The manifest keeps every built-in (`"strip": []`): the linker's
 * default strips what the app's own code does not use, and tests use more of the language than that.
 *
 * Output: one line per file (PASS/FAIL and counts), the failing tests' lines, and as the LAST line exactly
 * `N passed, N failed`. A file that prints no summary (the run stopped, XS aborted) counts one failure.
 * Exit status 1 on any failure.
 *
 * Without an SDK ($MODDABLE unset, or no built Linux tools under it) it prints that the run was SKIPPED and
 * why, and exits 0 without a count line: nothing was tested, nothing passed.
 *
 * Usage: node scripts/test-mcsim.mjs [--timeout SECONDS] [FILE-SUBSTRING…]
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { bundleTestFile, findTests, TEST_DIRS } from "./xs-bundle.mjs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const APP = join(ROOT, "build/mcsim-tests/app");
const OUT = join(ROOT, "build/mcsim-tests/out");
const SHIM = join(ROOT, "test/xs/jest-shim.ts");
const SUMMARY_PREFIX = "##xs-test-summary## "; // test/xs/jest-shim.ts
const DONE = "##mcsim-tests-done##";
const CRASH_PREFIX = "##mcsim-test-crash## ";

// ------------------------------------------------------------------------------------------------ options

let timeoutSec = 1800;
const filters = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--timeout") timeoutSec = Number(argv[++i]);
  else if (a.startsWith("-")) { console.error(`test-mcsim: unknown option ${a}\nusage: node scripts/test-mcsim.mjs [--timeout SECONDS] [FILE-SUBSTRING…]`); process.exit(2); }
  else filters.push(a);
}

// ------------------------------------------------------------------------------------------------ the SDK

/** Why the run cannot happen here, or undefined when the SDK and its Linux tools are in place. */
export function missingSdk(env = process.env) {
  const m = env.MODDABLE;
  if (!m) return "$MODDABLE is not set (no Moddable SDK installed)";
  for (const rel of ["build/bin/lin/release/mcconfig", "build/bin/lin/release/mcsim"]) {
    if (!existsSync(join(m, rel))) return `${join(m, rel)} does not exist (install the SDK's Linux tools by its Getting Started guide)`;
  }
  if (!existsSync(join(m, "tools/xsbug-log/node_modules"))) return "the SDK's xsbug-log has no node_modules (cd $MODDABLE/tools/xsbug-log && npm install)";
  const xvfb = spawnSync("sh", ["-c", "command -v Xvfb"], { encoding: "utf8" });
  if (xvfb.status !== 0) return "Xvfb is not installed (the simulator needs an X display)";
  return undefined;
}

const why = missingSdk();
if (why !== undefined) {
  console.log(`test:mcsim: SKIPPED — ${why}. No test ran on the SDK's XS; npm run test:xs runs the same files on xsnap.`);
  process.exit(0);
}

// ------------------------------------------------------------------------------------------------ files

// All files run in one XS machine, one after the other (xsnap gets a fresh machine per file). A file that
// freezes the built-ins (frozen-builtins.test.ts, as Moddable's preload does) changes the machine for every
// later file, so such files run last.
const RUN_LAST = ["frozen-builtins"];
const last = (f) => RUN_LAST.some((n) => f.includes(n));
const files = TEST_DIRS.flatMap((dir) => findTests(ROOT, dir)).filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort((a, b) => Number(last(a)) - Number(last(b)) || (a < b ? -1 : a > b ? 1 : 0));
if (files.length === 0) { console.log("test:mcsim: no test file matches"); console.log("0 passed, 1 failed"); process.exit(1); }

// ------------------------------------------------------------------------------------------------ bundles

const moduleName = (file) => file.replace(/\.test\.ts$/, "").replace(/[^A-Za-z0-9]+/g, "_");

rmSync(APP, { recursive: true, force: true });
mkdirSync(join(APP, "tests"), { recursive: true });
mkdirSync(OUT, { recursive: true });
const bundled = [];
const failedToBundle = [];
for (const file of files) {
  try {
    await bundleTestFile({ root: ROOT, shim: SHIM, file, outfile: join(APP, "tests", `${moduleName(file)}.js`), label: "mcsim" });
    bundled.push(file);
  } catch (e) {
    failedToBundle.push({ file, error: (e.errors ?? []).map((m) => m.text).join("; ") || String(e) });
  }
}

const mainJs = `// Generated by scripts/test-mcsim.mjs: runs the bundled test files in order.
import Timer from "timer";
globalThis.print = (...values) => trace(values.map((v) => String(v)).join(" ") + "\\n");
// 1 ms, not 0: on lin a 0 ms timer is a GLib source of G_PRIORITY_HIGH while XS runs promise jobs from an
// idle source of G_PRIORITY_DEFAULT (xs/platforms/lin_xs.c), so 0 ms "immediates" would all run before any
// promise job and the shim would call every pending async test stuck.
globalThis.setImmediate = (f, ...args) => { Timer.set(() => f(...args), 1); };
const files = [
${bundled.map((f) => `  [${JSON.stringify(f)}, () => import(${JSON.stringify(`tests/${moduleName(f)}`)})],`).join("\n")}
];
export default async function main() {
  for (const [file, load] of files) {
    print("${"\u25b6"} file " + file);
    try { await load(); } catch (e) { print(${JSON.stringify(CRASH_PREFIX)} + file + " " + (e instanceof Error ? e.name + ": " + e.message : String(e))); }
  }
  print(${JSON.stringify(DONE)});
}
`;
writeFileSync(join(APP, "main.js"), mainJs);
writeFileSync(join(APP, "manifest.json"), JSON.stringify({
  include: ["$(MODDABLE)/examples/manifest_base.json"],
  creation: { stack: 4096, keys: { initial: 1024, incremental: 1024, name: 127, symbol: 127 } },
  modules: { "*": "./main", "tests/*": "./tests/*" },
  strip: [],
}, null, "\t"));

// ------------------------------------------------------------------------------------------------ build

console.log(`test:mcsim: ${bundled.length} test files; building with mcconfig -d -m -p lin (SDK at ${process.env.MODDABLE})`);
const env = { ...process.env, PATH: `${join(process.env.MODDABLE, "build/bin/lin/release")}:${join(ROOT, "node_modules/.bin")}:${process.env.PATH}` };
const build = spawnSync("mcconfig", ["-d", "-m", "-p", "lin", "-t", "build", "-o", OUT], { cwd: APP, env, encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
if (build.status !== 0) {
  const lines = `${build.stdout}${build.stderr}`.split("\n").filter((l) => /error|Error/.test(l)).slice(0, 30);
  console.log(`test:mcsim: mcconfig failed (exit ${build.status})\n  ${lines.join("\n  ")}`);
  console.log(`0 passed, ${files.length} failed`);
  process.exit(1);
}
const so = join(OUT, "bin/lin/mc/debug/app/mc.so");
if (!existsSync(so)) { console.log(`test:mcsim: ${so} was not built`); console.log(`0 passed, ${files.length} failed`); process.exit(1); }

// ------------------------------------------------------------------------------------------------ run

const { runMcsim } = await import("./mcsim-run.mjs");
const summaries = new Map();
const crashes = new Map();
const failLines = new Map();
let current;
let sawDone = false;
const t0 = Date.now();
const result = await runMcsim(so, {
  until: new RegExp(DONE),
  timeoutSec,
  onLine(line) {
    if (line.startsWith("\u25b6 file ")) { current = line.slice(7); return; }
    if (line.startsWith(SUMMARY_PREFIX)) {
      try { const s = JSON.parse(line.slice(SUMMARY_PREFIX.length)); summaries.set(s.file, s); } catch { /* counted as missing */ }
      return;
    }
    if (line.startsWith(CRASH_PREFIX)) { const rest = line.slice(CRASH_PREFIX.length); crashes.set(current, rest); return; }
    if (line === DONE) { sawDone = true; return; }
    if (current && (line.startsWith("\u2715") || line.startsWith("  ") || line.startsWith("XS abort") || line.startsWith("#break") || line.startsWith("#mcsim stderr"))) {
      const list = failLines.get(current) ?? [];
      if (list.length < 40) list.push(line);
      failLines.set(current, list);
    }
  },
});

let passed = 0;
let failed = 0;
for (const { file, error } of failedToBundle) {
  failed++;
  console.log(`FAIL ${file} (does not bundle: ${error})`);
}
for (const file of bundled) {
  const s = summaries.get(file);
  if (s === undefined) {
    failed++;
    console.log(`FAIL ${file}: no summary (${crashes.get(file) ?? (sawDone ? "it printed none" : `the run stopped: ${result.reason}`)})`);
    for (const l of failLines.get(file) ?? []) console.log(`  ${l}`);
    continue;
  }
  passed += s.passed;
  failed += s.failed;
  console.log(`${s.failed === 0 ? "PASS" : "FAIL"} ${file}: ${s.passed} passed, ${s.failed} failed${s.skipped ? `, ${s.skipped} skipped` : ""}`);
  if (s.failed > 0) for (const l of failLines.get(file) ?? []) console.log(`  ${l}`);
}
console.log(`test:mcsim: ${Math.round((Date.now() - t0) / 1000)} s in mcsim (${result.reason}); output in ${relative(ROOT, OUT)}`);
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 || passed === 0 ? 1 : 0;
