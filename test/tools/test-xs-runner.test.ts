/**
 * scripts/test-xs.mjs's guard against endless loops: a test file that never ends is stopped by its CPU-time
 * limit (--cpu-limit; RLIMIT_CPU on the xsnap process), reported as a failure naming the test it was in, and
 * the run exits 1 — with the wall-clock backstop (--timeout) far away, so the CPU limit is what fired. The
 * CPU limit, unlike the wall clock, is not used up by a busy machine. 5 s, not 1: xsnap alone uses about
 * 1.2 s of CPU to start (it maps a large heap), and the test must be seen to start. Needs the xsnap that
 * scripts/build-xsnap.sh builds (bootstrap does it for `npm test`).
 */
import { spawnSync } from "node:child_process";
import * as path from "node:path";

const ROOT = path.resolve(__dirname, "..", "..");

test("an endless loop is stopped by the CPU-time limit and reported as a failure of its test", () => {
  const run = spawnSync(process.execPath, ["scripts/test-xs.mjs", "--cpu-limit=5", "--timeout=600", "test/tools/fixtures/endless-loop.xs.ts"],
    { cwd: ROOT, encoding: "utf8", timeout: 300_000 });
  const lines = run.stdout.trimEnd().split("\n");
  expect(run.status).toBe(1);
  expect(lines[lines.length - 1]).toBe("0 passed, 1 failed");
  const verdict = lines.find((l) => l.includes("endless-loop.xs.ts"));
  expect(verdict).toMatch(/^FAIL {2}test\/tools\/fixtures\/endless-loop\.xs\.ts .* stopped after 5 s of CPU time \(--cpu-limit; an endless loop\?\); last test started: .*spins forever/);
}, 320_000);
