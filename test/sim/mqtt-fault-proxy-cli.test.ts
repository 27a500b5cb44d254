/**
 * `npm run cloud -- proxy` (src/sim/cli.ts → runProxyCommand in src/sim/mqtt-fault-proxy.ts) in front of a
 * running local cloud (aedes): the printed address, a device reaching the cloud through it and the faults it
 * applies printed as JSON lines; a device process (`npm run cloud -- device --mqtt-port N`) connecting through
 * it; rule and cloud errors with their exit statuses.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { runCli } from "../../src/sim/cli";
import { SimDevice } from "../../src/sim/device";
import { LocalCloud } from "../../src/sim/local-cloud";
import { MqttFaultProxy, pkiTls } from "../../src/sim/mqtt-fault-proxy";
import { waitUntil } from "./wait-until";

jest.setTimeout(60_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki");
const ROOT = path.resolve(__dirname, "../..");

describe("npm run cloud -- proxy", () => {
  let dir: string;
  let cloud: LocalCloud;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-proxy-cli-"));
    cloud = await LocalCloud.start({ broker: "aedes", dataDir: path.join(dir, "cloud"), certsDir: PKI, devices: [{ id: "esp32-01", cloud: "aws" }] });
  });
  afterAll(async () => {
    await cloud.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("prints where it listens, passes a device through and prints each fault as a JSON line", async () => {
    const lines: string[] = [];
    const errors: string[] = [];
    const stop = new AbortController();
    const done = runCli(["proxy", "--data-dir", path.join(dir, "cloud"), "--rules", '[{"action":"drop","type":"suback","direction":"down"}]'],
      { print: (l) => lines.push(l), error: (l) => errors.push(l), signal: stop.signal });
    const port = await waitUntil(() => { const m = /on mqtts:\/\/127\.0\.0\.1:(\d+) /.exec(lines[0] ?? ""); return m ? Number(m[1]) : undefined; }, 10_000, "proxy address printed");
    expect(lines[0]).toContain(`--mqtt-port ${port}`);
    const c = cloud.credentials("esp32-01");
    const device = SimDevice.start({ ...c, port, dataDir: path.join(dir, "device"), requestTimeoutMs: 1_500, log: { log() {} } });
    try {
      await device.waitFor(() => device.sync.synced, 30_000, "synced through the proxy after a lost SUBACK");
    } finally {
      await device.close();
    }
    stop.abort();
    expect(await done).toBe(0);
    expect(errors).toEqual([]);
    const faults = lines.slice(1).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(faults).toEqual([{ connection: 1, direction: "down", type: "suback", action: "drop", rule: 0, messageId: expect.any(Number) }]);
  });

  it("a device process started with --mqtt-port connects through the proxy", async () => {
    const { downstreamTls, upstreamTls } = pkiTls(cloud.pki);
    const clientIds: string[] = [];
    const proxy = await MqttFaultProxy.start({
      upstream: { host: "127.0.0.1", port: cloud.mqttPort, tls: upstreamTls }, downstreamTls,
      onPacket: (direction, p) => { if (direction === "up" && p.cmd === "connect") clientIds.push(p.clientId); },
    });
    const child = spawn(process.execPath, [path.join(ROOT, "node_modules/tsx/dist/cli.mjs"), path.join(ROOT, "src/sim/cli.ts"), "device", "--id", "esp32-01",
      "--cloud-dir", path.join(dir, "cloud"), "--data-dir", path.join(dir, "device-process"), "--mqtt-port", String(proxy.port)],
      { cwd: dir, stdio: "ignore", env: { ...process.env, SHADOW_OTA_DEVICE_CHILD: "1" } });
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    try {
      await waitUntil(() => (proxy.count("down", "connack") > 0 ? true : undefined), 45_000, "the device process's CONNACK through the proxy");
      expect(clientIds[0]).toBe("esp32-01");
    } finally {
      child.kill("SIGTERM");
      await exited;
      await proxy.close();
    }
  });

  it("refuses bad rules as a usage error (exit 2) and says why", async () => {
    const errors: string[] = [];
    const code = await runCli(["proxy", "--data-dir", path.join(dir, "cloud"), "--rules", '[{"action":"explode","type":"any"}]'],
      { print: () => {}, error: (l) => errors.push(l) });
    expect(code).toBe(2);
    expect(errors.join("\n")).toMatch(/PROXY_RULE_INVALID: rule 0: action must be one of/);
    const notJson = await runCli(["proxy", "--data-dir", path.join(dir, "cloud"), "--rules", "drop everything"], { print: () => {}, error: (l) => errors.push(l) });
    expect(notJson).toBe(2);
  });

  it("says so when no cloud runs there (exit 1)", async () => {
    const errors: string[] = [];
    const code = await runCli(["proxy", "--data-dir", path.join(dir, "nothing")], { print: () => {}, error: (l) => errors.push(l) });
    expect(code).toBe(1);
    expect(errors.join("\n")).toMatch(/no running local cloud/);
  });
});
