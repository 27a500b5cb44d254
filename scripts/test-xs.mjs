#!/usr/bin/env node
/**
 * test-xs.mjs — runs the unit tests of the platform-neutral core on the real XS engine (xsnap), the same
 * test files Jest runs on Node: test/core/**\/*.test.ts, plus the shim's own conformance tests in
 * test/xs/**\/*.test.ts.
 *
 * For each test file: esbuild bundles it (ESM, platform neutral, ES2022, JSON imports) with
 * test/xs/jest-shim.ts injected for the Jest globals, into build/xs-tests/<pid>/<name>.mjs; a two-line loader
 * (<name>.run.mjs) imports the bundle and reports what it throws (xsnap itself stays silent about a module
 * that fails to load); then `xsnap -m <loader>` runs it under a CPU-time limit. The shim prints one line per
 * test and a `##xs-test-summary## {json}` line, which this script parses.
 *
 * The guard against endless loops is the CPU time xsnap itself uses (RLIMIT_CPU, set with the shell's
 * `ulimit -t` before exec'ing xsnap; the kernel sends SIGXCPU at the soft limit and SIGKILL 5 s of CPU
 * later), not the wall clock: on a loaded machine (load average 6 on 2 cores) protocol-fuzz took over 60 s
 * of wall time for about 17 s of CPU and failed a wall-clock limit. The default CPU limit (120 s a file) is
 * some 7 times what the heaviest file uses. A far larger wall-clock limit remains only as a backstop for a
 * process that hangs without using CPU. xsnap's own metering (`-l`) is not used: its counter is 32 bits
 * wide and protocol-fuzz alone needs between 1e9 and 4e9 of its 4.29e9 units.
 *
 * Output: one line per file (PASS/FAIL, counts, time), the failing tests' messages, and as the LAST line
 * exactly `N passed, N failed` (individual tests; a file that fails to bundle, crashes, times out, prints no
 * summary or holds no test counts one more failed test, on top of the tests it reported before it stopped). Exit status 1 on any failure or when no test passed.
 *
 * Not here: no Node-specific aliases. A bundle that needs a Node built-in (node:fs, Buffer from "buffer", …)
 * fails to bundle and is reported; a runtime use of Node globals (Buffer, process) fails its test on XS.
 *
 * A FILE argument that names an existing .ts file outside test/core and test/xs is run as given (the runner's
 * own test, test/tools/test-xs-runner.test.ts, runs an endless-loop fixture that way).
 *
 * Usage: node scripts/test-xs.mjs [-v|--verbose] [--cpu-limit=SECONDS] [--timeout=SECONDS] [--jobs=N] [FILE-OR-SUBSTRING…]
 *   --cpu-limit  CPU seconds one test file may use (default 120)
 *   --timeout    wall-clock seconds one test file may take, a backstop only (default 900)
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { bundleTestFile, findTests, TEST_DIRS } from "./xs-bundle.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const XSNAP = join(ROOT, "build/xsnap/bin/xsnap");
// One folder per run (build/xs-tests/<pid>), so two runs at once (a developer's and a test's) never delete
// each other's bundles; the folders of runs whose process is gone are removed at the next start.
const OUT_ROOT = join(ROOT, "build/xs-tests");
const OUT_DIR = join(OUT_ROOT, String(process.pid));
const SHIM = join(ROOT, "test/xs/jest-shim.ts");
const SUMMARY_PREFIX = "##xs-test-summary## "; // keep in step with SUMMARY_PREFIX in test/xs/jest-shim.ts
const CRASH_PREFIX = "##xs-test-crash## ";
const START_PREFIX = "▶ "; // START_PREFIX in test/xs/jest-shim.ts
const MAX_OUTPUT = 4 * 1024 * 1024;
const STDBUF = ["/usr/bin/stdbuf", "/bin/stdbuf"].find((p) => existsSync(p));

// ------------------------------------------------------------------------------------------------ options

const options = { verbose: false, cpuLimitSec: 120, timeoutSec: 900, jobs: 2, filters: [] };
for (const arg of process.argv.slice(2)) {
  if (arg === "-v" || arg === "--verbose") options.verbose = true;
  else if (arg.startsWith("--cpu-limit=")) options.cpuLimitSec = Number(arg.slice("--cpu-limit=".length));
  else if (arg.startsWith("--timeout=")) options.timeoutSec = Number(arg.slice("--timeout=".length));
  else if (arg.startsWith("--jobs=")) options.jobs = Number(arg.slice("--jobs=".length));
  else if (arg.startsWith("-")) usage(`unknown option ${arg}`);
  else options.filters.push(arg);
}
if (!(options.timeoutSec > 0)) usage("--timeout must be a positive number of seconds");
if (!(Number.isInteger(options.cpuLimitSec) && options.cpuLimitSec >= 1)) usage("--cpu-limit must be a positive whole number of seconds");
if (!(Number.isInteger(options.jobs) && options.jobs >= 1)) usage("--jobs must be a positive integer");

function usage(problem) {
  console.error(`test-xs: ${problem}\nusage: node scripts/test-xs.mjs [-v|--verbose] [--cpu-limit=SECONDS] [--timeout=SECONDS] [--jobs=N] [FILE-OR-SUBSTRING…]`);
  process.exit(2);
}

// ------------------------------------------------------------------------------------------------ files

function selectTests() {
  const all = TEST_DIRS.flatMap((dir) => findTests(ROOT, dir)).sort();
  if (options.filters.length === 0) return all;
  const wanted = options.filters.map((f) => relative(ROOT, resolve(f)).split(sep).join("/"));
  const selected = all.filter((file) => options.filters.some((f, i) => file === wanted[i] || file.includes(f)));
  // Files named explicitly outside the test folders (fixtures of the runner's own test).
  const extra = wanted.filter((w) => w.endsWith(".ts") && !w.startsWith("..") && !all.includes(w) && existsSync(join(ROOT, w)));
  return [...selected, ...extra];
}

// ------------------------------------------------------------------------------------------------ bundling

function bundleName(file) {
  return file.replace(/\.ts$/, "").replace(/[^A-Za-z0-9._-]+/g, "-");
}

/** Bundles one test file; returns { bundle, loader } paths or { error } text. */
async function bundle(file) {
  const name = bundleName(file);
  const outfile = join(OUT_DIR, `${name}.mjs`);
  const loader = join(OUT_DIR, `${name}.run.mjs`);
  try {
    const result = await bundleTestFile({ root: ROOT, shim: SHIM, file, outfile, label: "xs" });
    const warnings = result.warnings.map((w) => `warning: ${w.text}`);
    writeFileSync(
      loader,
      `import(${JSON.stringify(`./${basename(outfile)}`)}).then(undefined, (e) => {\n` +
        `  print(${JSON.stringify(CRASH_PREFIX)} + (e instanceof Error ? e.name + ": " + e.message : String(e)));\n` +
        `});\n`,
    );
    return { bundle: outfile, loader, warnings };
  } catch (e) {
    const messages = Array.isArray(e.errors) && e.errors.length > 0
      ? e.errors.map((m) => `${m.location ? `${m.location.file}:${m.location.line}: ` : ""}${m.text}`)
      : [String(e)];
    return { error: messages.join("\n") };
  }
}

// ------------------------------------------------------------------------------------------------ running

/** Extra CPU seconds between SIGXCPU (soft limit) and SIGKILL (hard limit). */
const CPU_HARD_EXTRA_SEC = 5;

function runXsnap(loader) {
  return new Promise((resolvePromise) => {
    const started = Date.now();
    // xsnap's stdout is block-buffered into a pipe: unbuffer it (stdbuf) so a run stopped by a limit still
    // shows which test it was in. Unbuffered, not line-buffered: with -oL a killed xsnap's last lines were
    // still lost (checked with a print-then-spin module).
    const xsnap = STDBUF ? [STDBUF, "-o0", "-e0", XSNAP] : [XSNAP];
    // The CPU-time limit (RLIMIT_CPU) is set by the shell, which then becomes xsnap (exec): the limit
    // counts xsnap's own CPU time only, whatever else the machine is doing.
    // Soft first: a hard limit below the current soft one (unlimited) is refused.
    const limited = ["-c", 'ulimit -S -t "$1" && ulimit -H -t "$2" && shift 2 && exec "$@"', "test-xs",
      String(options.cpuLimitSec), String(options.cpuLimitSec + CPU_HARD_EXTRA_SEC), ...xsnap, "-m", loader];
    const child = spawn("/bin/sh", limited, { cwd: OUT_DIR, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    const take = (which) => (chunk) => {
      if (which === "out" && stdout.length < MAX_OUTPUT) stdout += chunk;
      if (which === "err" && stderr.length < MAX_OUTPUT) stderr += chunk;
    };
    child.stdout.setEncoding("utf8").on("data", take("out"));
    child.stderr.setEncoding("utf8").on("data", take("err"));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, options.timeoutSec * 1000);
    child.on("error", (err) => {
      clearTimeout(timer);
      resolvePromise({ status: null, signal: null, stdout, stderr: `${stderr}\ncannot start xsnap: ${err.message}`, timedOut, ms: Date.now() - started });
    });
    child.on("close", (status, signal) => {
      clearTimeout(timer);
      resolvePromise({ status, signal, stdout, stderr, timedOut, ms: Date.now() - started });
    });
  });
}

/** Turns a finished run into { passed, failed, skipped, ok, problem, output }. */
function judge(file, run) {
  const lines = run.stdout.split("\n");
  const crash = lines.find((l) => l.startsWith(CRASH_PREFIX));
  const summaryLine = lines.filter((l) => l.startsWith(SUMMARY_PREFIX)).pop();
  let summary;
  if (summaryLine !== undefined) {
    try {
      summary = JSON.parse(summaryLine.slice(SUMMARY_PREFIX.length));
    } catch (e) {
      summary = undefined;
    }
  }
  const valid = summary && summary.file === file && ["passed", "failed", "skipped", "todo"].every((k) => Number.isInteger(summary[k]) && summary[k] >= 0);
  // Without a summary, count what the file printed before it died, plus one failure for the death itself.
  const count = (prefix) => lines.filter((l) => l.startsWith(prefix)).length;
  const base = { passed: count("✓ "), failed: count("✕ ") + 1, skipped: count("○ "), todo: 0 };
  const lastStarted = lines.filter((l) => l.startsWith(START_PREFIX)).pop();
  const where = lastStarted === undefined ? "" : `; last test started: ${lastStarted.slice(START_PREFIX.length)}`;
  if (run.timedOut) {
    return { ...base, problem: `still running after ${options.timeoutSec} s of wall-clock time without using up its CPU limit (blocked?)${where}` };
  }
  if (run.signal === "SIGXCPU") {
    return { ...base, problem: `stopped after ${options.cpuLimitSec} s of CPU time (--cpu-limit; an endless loop?)${where}` };
  }
  if (run.signal === "SIGKILL") {
    return { ...base, problem: `killed by SIGKILL (the CPU hard limit, ${options.cpuLimitSec + CPU_HARD_EXTRA_SEC} s, or out of memory)${where}` };
  }
  if (crash !== undefined) return { ...base, problem: `the bundle failed to load or run: ${crash.slice(CRASH_PREFIX.length)}` };
  if (!valid) {
    const why = run.signal ? `xsnap killed by ${run.signal}` : `xsnap exited with status ${run.status}`;
    return { ...base, problem: `no valid summary line (${why}): the test file crashed or stopped early${where}` };
  }
  if (run.status !== 0) return { ...summary, failed: summary.failed + 1, problem: `xsnap exited with status ${run.status} after its summary` };
  if (summary.passed + summary.failed === 0 && summary.skipped + summary.todo === 0) {
    return { ...summary, failed: 1, problem: "the file holds no test" };
  }
  return { ...summary, problem: undefined };
}

/** The lines worth showing for a failing file: each ✕ line and its indented message. */
function failureBlocks(stdout) {
  const out = [];
  let inBlock = false;
  for (const line of stdout.split("\n")) {
    if (line.startsWith("✕ ")) inBlock = true;
    else if (!line.startsWith("    ")) inBlock = false;
    if (inBlock) out.push(line);
  }
  return out;
}

function tail(text, n) {
  const lines = text.trimEnd().split("\n");
  return (lines.length > n ? [`… (${lines.length - n} earlier lines)`, ...lines.slice(-n)] : lines).join("\n");
}

function indent(text) {
  return text.split("\n").map((l) => `    ${l}`).join("\n");
}

function report(file, result) {
  const { bundled, run, verdict } = result;
  const failed = verdict.failed > 0;
  const counts = `${verdict.passed} passed, ${verdict.failed} failed${verdict.skipped ? `, ${verdict.skipped} skipped` : ""}${verdict.todo ? `, ${verdict.todo} todo` : ""}`;
  const time = run ? ` (${(run.ms / 1000).toFixed(2)} s)` : "";
  console.log(`${failed ? "FAIL" : "PASS"}  ${file}  ${counts}${time}${verdict.problem ? ` — ${verdict.problem}` : ""}`);
  if (bundled.error) {
    console.log(indent(`bundle failed:\n${bundled.error}`));
    return;
  }
  for (const w of bundled.warnings) console.log(indent(w));
  if (options.verbose) {
    const shown = run.stdout.split("\n").filter((l) => !l.startsWith(START_PREFIX)).join("\n");
    if (shown.trim()) console.log(indent(shown.trimEnd()));
    if (run.stderr.trim()) console.log(indent(`stderr:\n${run.stderr.trimEnd()}`));
    return;
  }
  if (!failed) {
    if (/unhandled (rejection|exception)/i.test(run.stderr)) console.log(indent(`note: xsnap reported on stderr:\n${tail(run.stderr, 10)}`));
    return;
  }
  const blocks = failureBlocks(run.stdout);
  if (blocks.length > 0) console.log(indent(blocks.join("\n")));
  if (verdict.problem) {
    // Whatever the file printed besides the per-test lines (console output, engine messages).
    const other = run.stdout.split("\n").filter((l) => !/^(▶|✓|○|✕) |^##xs-test-/.test(l) && !l.startsWith("    ")).join("\n");
    if (other.trim()) console.log(indent(`other output (last lines):\n${tail(other, 30)}`));
    if (run.stderr.trim()) console.log(indent(`stderr (last lines):\n${tail(run.stderr, 30)}`));
  }
}

// ------------------------------------------------------------------------------------------------ main

async function main() {
  const t0 = Date.now();
  const build = spawnSync("bash", [join(ROOT, "scripts/build-xsnap.sh")], { stdio: "inherit" });
  if (build.status !== 0 || !existsSync(XSNAP)) {
    console.log("test-xs: cannot build xsnap (see above); no test ran");
    console.log("0 passed, 0 failed");
    process.exit(1);
  }

  const files = selectTests();
  if (files.length === 0) {
    console.log(`test-xs: no test file found${options.filters.length ? ` for ${options.filters.join(" ")}` : ""}`);
    console.log("0 passed, 0 failed");
    process.exit(1);
  }

  mkdirSync(OUT_ROOT, { recursive: true });
  for (const entry of readdirSync(OUT_ROOT)) {
    const pid = /^\d+$/.test(entry) ? Number(entry) : undefined;
    if (pid !== undefined && pid !== process.pid && processAlive(pid)) continue;
    rmSync(join(OUT_ROOT, entry), { recursive: true, force: true });
  }
  mkdirSync(OUT_DIR, { recursive: true });
  const bundles = await Promise.all(files.map(bundle));

  const results = new Array(files.length);
  let nextToPrint = 0;
  const flush = () => {
    while (nextToPrint < files.length && results[nextToPrint] !== undefined) {
      report(files[nextToPrint], results[nextToPrint]);
      nextToPrint++;
    }
  };
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < files.length; i = next++) {
      const bundled = bundles[i];
      if (bundled.error) {
        results[i] = { bundled, run: undefined, verdict: { passed: 0, failed: 1, skipped: 0, todo: 0, problem: "cannot bundle for XS" } };
      } else {
        const run = await runXsnap(bundled.loader);
        results[i] = { bundled, run, verdict: judge(files[i], run) };
      }
      flush();
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.jobs, files.length) }, worker));
  flush();

  const total = results.reduce((acc, r) => ({ passed: acc.passed + r.verdict.passed, failed: acc.failed + r.verdict.failed }), { passed: 0, failed: 0 });
  const badFiles = results.filter((r) => r.verdict.failed > 0).length;
  console.log(`xs: ${files.length} files, ${badFiles} failing, ${((Date.now() - t0) / 1000).toFixed(1)} s (xsnap ${relative(ROOT, XSNAP)})`);
  console.log(`${total.passed} passed, ${total.failed} failed`);
  process.exit(total.failed > 0 || total.passed === 0 ? 1 : 0);
}

main().catch((e) => {
  console.log(`test-xs: internal error: ${e && e.stack ? e.stack : e}`);
  console.log("0 passed, 1 failed");
  process.exit(1);
});

function processAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}
