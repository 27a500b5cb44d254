#!/usr/bin/env node
/**
 * mutation-score.mjs — the mutation score of the core from Stryker's JSON reports (reports/mutation/*.json,
 * one per core file, written by scripts/mutation-run.mjs; the report of a single all-files run, all.json,
 * is used only when there is no per-file report).
 *
 * Score = (killed + timeout) / valid mutants, valid = killed + timeout + survived + no coverage (mutants
 * that do not compile, error at run time or are disabled with a `// Stryker disable` comment are not valid).
 * Prints a markdown table (file, score, killed, timeout, survived, no coverage, ignored) and, as the LAST
 * line, exactly `mutation score: N%` over all files.
 *
 * Usage: node scripts/mutation-score.mjs
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CORE_TESTS } from "../stryker.config.mjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const REPORTS = join(ROOT, "reports/mutation");

/** Counts by status for every source file in one Stryker JSON report. */
function countsByFile(reportPath) {
  const report = JSON.parse(readFileSync(reportPath, "utf8"));
  const out = new Map();
  for (const [path, entry] of Object.entries(report.files)) {
    const c = { killed: 0, timeout: 0, survived: 0, noCoverage: 0, ignored: 0, invalid: 0 };
    for (const m of entry.mutants) {
      switch (m.status) {
        case "Killed": c.killed++; break;
        case "Timeout": c.timeout++; break;
        case "Survived": c.survived++; break;
        case "NoCoverage": c.noCoverage++; break;
        case "Ignored": c.ignored++; break;
        default: c.invalid++; // CompileError, RuntimeError
      }
    }
    // Stale: the file has changed since the run (the report keeps the source it mutated).
    c.stale = existsSync(join(ROOT, path)) && readFileSync(join(ROOT, path), "utf8") !== entry.source;
    out.set(path.replace(/\\/g, "/"), c);
  }
  return out;
}

/** The counts of the one file a per-file report covers. */
export function fileScore(reportPath) {
  const all = [...countsByFile(reportPath).values()];
  return all.reduce(add, zero());
}

function zero() { return { killed: 0, timeout: 0, survived: 0, noCoverage: 0, ignored: 0, invalid: 0 }; }
function add(a, b) { const o = zero(); for (const k of Object.keys(o)) o[k] = a[k] + b[k]; return o; }
function valid(c) { return c.killed + c.timeout + c.survived + c.noCoverage; }

export function formatPercent(c) {
  const v = valid(c);
  return v === 0 ? "n/a" : `${((100 * (c.killed + c.timeout)) / v).toFixed(1)} %`;
}

/** Per-file counts: per-file reports first, then files only the all-files report holds. */
export function collect() {
  const byFile = new Map();
  if (!existsSync(REPORTS)) return byFile;
  const reports = readdirSync(REPORTS).filter((f) => f.endsWith(".json")).sort();
  for (const r of reports.filter((f) => f !== "all.json")) {
    for (const [path, c] of countsByFile(join(REPORTS, r))) byFile.set(path, c);
  }
  if (reports.includes("all.json")) {
    for (const [path, c] of countsByFile(join(REPORTS, "all.json"))) if (!byFile.has(path)) byFile.set(path, c);
  }
  return new Map([...byFile].sort(([a], [b]) => a.localeCompare(b)));
}

export function printTable() {
  const byFile = collect();
  const total = [...byFile.values()].reduce(add, zero());
  console.log("| file | score | killed | timeout | survived | no coverage | ignored (disabled) |");
  console.log("|---|---:|---:|---:|---:|---:|---:|");
  for (const [path, c] of byFile) {
    console.log(`| ${path} | ${formatPercent(c)}${c.stale ? " (stale: source changed since)" : ""} | ${c.killed} | ${c.timeout} | ${c.survived} | ${c.noCoverage} | ${c.ignored} |`);
  }
  console.log(`| **all** | **${formatPercent(total)}** | ${total.killed} | ${total.timeout} | ${total.survived} | ${total.noCoverage} | ${total.ignored} |`);
  const unmeasured = Object.keys(CORE_TESTS).filter((f) => !byFile.has(`src/core/${f}`));
  // A per-file report with no file in it: Stryker found nothing to mutate (a table of constants).
  const noMutants = unmeasured.filter((f) => existsSync(join(REPORTS, f.replace(/\.ts$/, ".json"))));
  const missing = unmeasured.filter((f) => !noMutants.includes(f));
  if (noMutants.length > 0) console.log(`no mutants (nothing for Stryker to change): ${noMutants.join(", ")}`);
  if (missing.length > 0) console.log(`not measured (no report in reports/mutation): ${missing.join(", ")}`);
  const v = valid(total);
  console.log(`mutation score: ${v === 0 ? "n/a" : `${((100 * (total.killed + total.timeout)) / v).toFixed(1)}%`}`);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) printTable();
