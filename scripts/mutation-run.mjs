#!/usr/bin/env node
/**
 * mutation-run.mjs — `npm run test:mutation`: StrykerJS over the platform-neutral core, one run per file.
 *
 * For each core file named in CORE_TESTS (stryker.config.mjs), or only those whose name contains one of the
 * arguments (in the order given), runs `stryker run` with MUTATION_FILE=<file>: that file is mutated and only its own test files
 * run, incrementally (reports/mutation/incremental/<name>.json), at concurrency 1. Stryker's output goes to
 * reports/mutation/logs/<name>.log; this script prints one line per file (score, counts, wall time), then
 * the per-file table and, as the last line, `mutation score: N%` from scripts/mutation-score.mjs (which
 * reads every reports/mutation/<name>.json, so files not rerun this time keep their last result).
 *
 * Not part of `npm test`: a full run takes tens of minutes on a 2-core machine (docs/mutation.md).
 *
 * Usage: node scripts/mutation-run.mjs [--full] [SUBSTRING…]
 *   --full  forget the incremental files first, so every mutant is tested again
 * Exit status: 1 when a Stryker run failed (its log says why), else 0; scores are reported, not enforced.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, openSync, closeSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CORE_TESTS } from "../stryker.config.mjs";
import { fileScore, formatPercent, printTable } from "./mutation-score.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const REPORTS = join(ROOT, "reports/mutation");
const STRYKER = join(ROOT, "node_modules/@stryker-mutator/core/bin/stryker.js");

const args = process.argv.slice(2);
const full = args.includes("--full");
const filters = args.filter((a) => a !== "--full");
for (const f of filters) if (f.startsWith("-")) { console.error(`mutation-run: unknown option ${f}\nusage: node scripts/mutation-run.mjs [--full] [SUBSTRING…]`); process.exit(2); }

// In the order of the arguments (the first matching file first), else in CORE_TESTS order.
const files = filters.length === 0
  ? Object.keys(CORE_TESTS)
  : [...new Set(filters.flatMap((s) => Object.keys(CORE_TESTS).filter((f) => f.includes(s))))];
if (files.length === 0) { console.error(`mutation-run: no core file matches ${filters.join(" ")}`); process.exit(2); }

mkdirSync(join(REPORTS, "logs"), { recursive: true });
let failed = 0;
const started = Date.now();
for (const file of files) {
  const name = file.replace(/\.ts$/, "");
  if (full) rmSync(join(REPORTS, "incremental", `${name}.json`), { force: true });
  const logPath = join(REPORTS, "logs", `${name}.log`);
  const log = openSync(logPath, "w");
  const t0 = Date.now();
  const run = spawnSync(process.execPath, [STRYKER, "run"], {
    cwd: ROOT,
    env: { ...process.env, MUTATION_FILE: file, FORCE_COLOR: "0" },
    stdio: ["ignore", log, log],
  });
  closeSync(log);
  const seconds = ((Date.now() - t0) / 1000).toFixed(0);
  if (run.status !== 0) {
    failed++;
    console.log(`${file.padEnd(20)} FAILED (exit ${run.status ?? run.signal}) after ${seconds} s, see ${logPath}`);
    continue;
  }
  const s = fileScore(join(REPORTS, `${name}.json`));
  console.log(`${file.padEnd(20)} ${formatPercent(s).padStart(7)}  killed ${s.killed}, timeout ${s.timeout}, survived ${s.survived}, no coverage ${s.noCoverage}, ignored ${s.ignored}  (${seconds} s)`);
}
console.log(`${files.length} file(s) in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
printTable();
process.exit(failed > 0 ? 1 : 0);
