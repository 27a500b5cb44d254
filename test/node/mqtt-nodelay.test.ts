/**
 * TCP_NODELAY on the real connections, seen from the kernel's side: a child process runs the aedes broker
 * and a NodeMqttTransport over mutual TLS on loopback under `strace -yy -e trace=setsockopt`, and the trace
 * must show `setsockopt(…, SOL_TCP, TCP_NODELAY, [1], …)` on the device's socket (to the broker's port)
 * and on the broker's accepted socket (from that port). Not a timing test: what the round trip gains is
 * measured by `npm run bench:fleet` ("one device's round trip").
 * Skipped, saying so, where strace is missing or may not trace (no ptrace in the container).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { tempDir } from "../sim/broker-fixtures";

function straceWorks(): boolean {
  const r = spawnSync("strace", ["-o", "/dev/null", "true"], { stdio: "ignore" });
  return r.status === 0;
}

const STRACE = straceWorks();
if (!STRACE) console.warn("mqtt-nodelay.test.ts: strace is missing or cannot trace here; the kernel-side check is skipped");

(STRACE ? test : test.skip)("the device's socket and the broker's accepted socket both set TCP_NODELAY", () => {
  const dir = tempDir("nodelay");
  try {
    const trace = path.join(dir, "trace");
    const r = spawnSync("strace", [
      "-f", "-yy", "-e", "trace=setsockopt", "-o", trace,
      process.execPath, "--require", require.resolve("tsx/cjs"), path.join(__dirname, "fixtures", "nodelay-child.ts"), path.join(dir, "certs"),
    ], { encoding: "utf8", timeout: 60_000 });
    expect(r.status).toBe(0);
    const port = /port (\d+)/.exec(r.stdout)?.[1];
    expect(port).toBeDefined();
    const lines = fs.readFileSync(trace, "utf8").split("\n").filter((l) => /TCP_NODELAY, \[1\]/.test(l) && l.endsWith("= 0"));
    // -yy names each socket by its endpoints: local->remote.
    const device = lines.filter((l) => new RegExp(`<TCP:\\[127\\.0\\.0\\.1:\\d+->127\\.0\\.0\\.1:${port}\\]>`).test(l));
    const broker = lines.filter((l) => new RegExp(`<TCP:\\[127\\.0\\.0\\.1:${port}->127\\.0\\.0\\.1:\\d+\\]>`).test(l));
    expect(device.length).toBeGreaterThanOrEqual(1);
    expect(broker.length).toBeGreaterThanOrEqual(1);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
