/**
 * `npm start` runs src/sim/demo.ts; this runs the same file as a process (on aedes, and on mosquitto when
 * it is installed; reported as skipped when not) and checks that it walked through every step and exited 0. The demo bounds each of its
 * steps itself; the process is killed after 90 s at the latest.
 */
import { spawn } from "node:child_process";
import * as path from "node:path";
import { itEachBroker, noteMosquittoSkipped } from "./mosquitto-gate";

jest.setTimeout(120_000);
const ROOT = path.resolve(__dirname, "..", "..");

function runDemo(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(path.join(ROOT, "node_modules", ".bin", "tsx"), ["src/sim/demo.ts", ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => { out += d.toString(); });
    child.stderr.on("data", (d: Buffer) => { out += d.toString(); });
    const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
    child.once("exit", (code) => { clearTimeout(timer); resolve({ code, out }); });
  });
}

noteMosquittoSkipped("test/sim/demo.test.ts");

itEachBroker("npm start's demo completes every step on %s", async (broker) => {
  const { code, out } = await runDemo(["--broker", broker]);
  expect(out).not.toMatch(/FAILED/);
  for (const n of [1, 2, 3, 4, 5]) expect(out).toMatch(new RegExp(`^\\[${n}\\] `, "m"));
  expect(out).toMatch(/reported\.lastError \{"code":"SYNC_FIRMWARE_VERSION_INVALID"/);
  expect(out).toMatch(/done in [0-9.]+ s: 3 firmware requests handed to the OTA hook \(esp32-01@1\.1\.0, esp32-az-01@1\.1\.0, esp32-az-01@1\.2\.0\)/);
  expect(code).toBe(0);
});
