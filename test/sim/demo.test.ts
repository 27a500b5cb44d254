/**
 * `npm start` runs src/sim/demo.ts; this runs the same file as a process (on aedes, and on mosquitto when
 * it is installed; reported as skipped when not) with stdout a pipe — so the plain-lines view, not the
 * progress bars — and checks that it walked through every step, that the summary table says what each
 * device ended as (three on 1.1.0 Valid, the power-cut one resumed within one sector, the rollback one back
 * on 1.0.0 with OTA_SELF_TEST_FAILED) and that it exited 0. The demo bounds each of its steps itself; the
 * process is killed after 110 s at the latest. No timing assertions: the table's seconds are not checked.
 */
import { spawn } from "node:child_process";
import * as path from "node:path";
import { itEachBroker, noteMosquittoSkipped } from "./mosquitto-gate";

jest.setTimeout(130_000);
const ROOT = path.resolve(__dirname, "..", "..");

function runDemo(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(path.join(ROOT, "node_modules", ".bin", "tsx"), ["src/sim/demo.ts", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => { out += d.toString(); });
    child.stderr.on("data", (d: Buffer) => { out += d.toString(); });
    const timer = setTimeout(() => child.kill("SIGKILL"), 110_000);
    child.once("exit", (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
}

/** The summary row of `id`, split into its cells (two or more spaces between cells). */
function row(out: string, id: string): string[] {
  const line = out.split("\n").find((l) => l.trimStart().startsWith(`${id} `));
  if (line === undefined) throw new Error(`no summary row for ${id} in:\n${out}`);
  return line.trim().split(/ {2,}/);
}

noteMosquittoSkipped("test/sim/demo.test.ts");

itEachBroker("npm start's fleet update ends as expected on %s", async (broker) => {
  const { code, out } = await runDemo(["--broker", broker]);
  expect(out).not.toMatch(/^FAILED/m);
  expect(out).toMatch(/^fleet page \(.*\): http:\/\/127\.0\.0\.1:\d+\/fleet#token=[0-9a-f]{48}$/m);
  for (const n of [1, 2, 3, 4, 5]) expect(out).toMatch(new RegExp(`^\\[${n}\\] `, "m"));
  expect(out).toMatch(/reported\.lastError \{"code":"SYNC_FIRMWARE_VERSION_INVALID"/);
  // Plain progress lines (stdout is not a terminal) and the resume after the power cut.
  expect(out).toMatch(/^ {4}esp32-01: 50% \(\d+\/524288 bytes in the slot\)$/m);
  expect(out).toMatch(/^ {4}esp32-02: restarts \(power cut\)$/m);
  expect(out).toMatch(/^ {4}esp32-02: GET 1\.1\.0 → 206, resuming at byte \d+/m);
  expect(out).toMatch(/^ {4}esp32-az-02: self-test of 1\.1\.0 failed \(OTA_SELF_TEST_FAILED\)/m);

  // device, cloud, from, to, runs, result, seconds, KiB/s, downloaded / image
  const image = 512 * 1024;
  expect(row(out, "esp32-01").slice(0, 6)).toEqual(["esp32-01", "aws", "1.0.0", "1.1.0", "1.1.0", "Valid"]);
  expect(row(out, "esp32-01")[8]).toBe(`${image} / ${image}`);
  expect(row(out, "esp32-az-01").slice(0, 6)).toEqual(["esp32-az-01", "azure", "1.0.0", "1.1.0", "1.1.0", "Valid"]);
  expect(row(out, "esp32-az-02").slice(0, 6)).toEqual(["esp32-az-02", "azure", "1.0.0", "1.1.0", "1.0.0", "RolledBack OTA_SELF_TEST_FAILED"]);
  const cut = row(out, "esp32-02");
  expect(cut.slice(0, 6)).toEqual(["esp32-02", "aws", "1.0.0", "1.1.0", "1.1.0", "Valid (power cut, resumed)"]);
  const m = /^(\d+) \/ (\d+)/.exec(cut[8]!);
  expect(m).not.toBeNull();
  expect(out).toMatch(/bound: one sector, 4096; largest read \d+ bytes/);
  expect(Number(m![1]) - image).toBeGreaterThanOrEqual(0);
  expect(Number(m![1]) - image).toBeLessThanOrEqual(4096); // reads stop at sector boundaries

  expect(out).toMatch(/done in [0-9.]+ s: all 4 devices ended as expected/);
  expect(code).toBe(0);
});
