/**
 * scripts/test-mcsim.mjs, the core's tests in the Moddable SDK's simulator.
 *
 * Without an SDK (CI has none) it must say so and count as skipped: exit 0, no `N passed, N failed` line.
 * With one ($MODDABLE pointing at an SDK whose Linux tools are built, and Xvfb), fixtures check the runner
 * itself in one build: a file stopped by its CPU-time limit is a failure naming the test it was in, a test
 * waiting on a promise nobody resolves is called stuck by the shim, and the next file still runs in a
 * simulator of its own. Those need the SDK and are skipped without one.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";

const ROOT = path.resolve(__dirname, "..", "..");
const SCRIPT = "scripts/test-mcsim.mjs";
const COUNT_LINE = /^\d+ passed, \d+ failed$/;

function run(args: string[], env: NodeJS.ProcessEnv, timeout = 60_000) {
  return spawnSync(process.execPath, [SCRIPT, ...args], { cwd: ROOT, env, encoding: "utf8", timeout });
}

function withoutModdable(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env["MODDABLE"];
  return env;
}

describe("without an SDK", () => {
  it("says SKIPPED because $MODDABLE is not set, exits 0 and prints no count line", () => {
    const r = run([], withoutModdable());
    expect(r.status).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^test:mcsim: SKIPPED — \$MODDABLE is not set \(no Moddable SDK installed\)\. No test ran on the SDK's XS; /);
    expect(lines.some((l) => COUNT_LINE.test(l))).toBe(false);
  });

  it("names the missing tool when $MODDABLE points at a folder without the SDK's Linux tools", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "no-sdk-"));
    try {
      const r = run([], { ...withoutModdable(), MODDABLE: dir });
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`test:mcsim: SKIPPED — ${path.join(dir, "build/bin/lin/release/mcconfig")} does not exist`);
      expect(r.stdout.split("\n").some((l) => COUNT_LINE.test(l))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const MODDABLE = process.env["MODDABLE"];
const hasSdk = MODDABLE !== undefined && existsSync(path.join(MODDABLE, "build/bin/lin/release/mcsim"));

(hasSdk ? describe : describe.skip)("with the SDK ($MODDABLE set)", () => {
  it("stops an endless loop by CPU time, calls a never-settling test stuck, and still runs the next file", () => {
    const r = run(["--cpu-limit=5", "--timeout=600", "--build-dir=build/mcsim-tests-runner-test",
      "test/tools/fixtures/endless-loop.xs.ts", "test/tools/fixtures/mcsim-pending.xs.ts", "test/tools/fixtures/mcsim-pass.xs.ts"],
    process.env, 1_500_000);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines[lines.length - 1]).toBe("1 passed, 2 failed");
    expect(r.status).toBe(1);
    expect(lines.find((l) => l.includes("endless-loop.xs.ts"))).toMatch(
      /^FAIL {2}test\/tools\/fixtures\/endless-loop\.xs\.ts {2}0 passed, 1 failed \([\d.]+ s, [\d.]+ s CPU\) — stopped after 5 s of CPU time \(--cpu-limit; an endless loop\?\); last test started: .*spins forever$/);
    expect(lines.find((l) => l.includes("mcsim-pending.xs.ts"))).toMatch(/^FAIL {2}test\/tools\/fixtures\/mcsim-pending\.xs\.ts {2}0 passed, 1 failed \(/);
    expect(r.stdout).toMatch(/✕ test\/tools\/fixtures\/mcsim-pending\.xs\.ts › waits on a promise nobody resolves[^\n]*\n {8}Error: test "waits on a promise nobody resolves" never settled/);
    expect(lines.find((l) => l.includes("mcsim-pass.xs.ts"))).toMatch(/^PASS {2}test\/tools\/fixtures\/mcsim-pass\.xs\.ts {2}1 passed, 0 failed \(/);
    expect(r.stdout).toMatch(/^test:mcsim: XS \d+\.\d+\.\d+ in the SDK's simulator/m);
  }, 1_600_000);
});
