/**
 * The `npm run cloud` CLI (src/sim/cli.ts) against a running local cloud: commands run in process through
 * runCli, plus the real entry points as child processes (the CLI, and a simulated device process that
 * syncs its shadow), which is the path a user takes. Child processes are killed in afterAll; every wait is
 * bounded.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { getPath } from "../../src/core/config-diff";
import type { JsonObject } from "../../src/core/json";
import { runCli } from "../../src/sim/cli";
import { LocalCloud } from "../../src/sim/local-cloud";
import { buildImage } from "../../src/tools/esp-image";

jest.setTimeout(60_000);

const ROOT = path.resolve(__dirname, "..", "..");
const TSX = path.join(ROOT, "node_modules", ".bin", "tsx");
const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki");

let dir: string;
let cloud: LocalCloud;
const children: ChildProcess[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-cli-"));
  cloud = await LocalCloud.start({ dataDir: dir, certsDir: PKI, devices: [{ id: "esp32-01", cloud: "aws" }, { id: "esp32-az-01", cloud: "azure" }] });
});
afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await cloud.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli([...argv, "--data-dir", dir], { print: (l) => out.push(l), error: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("runCli", () => {
  it("sets and reads desired state of a shadow and a twin", async () => {
    expect((await cli("shadow", "set-desired", "esp32-01", '{"config":{"interval":20}}')).code).toBe(0);
    const got = await cli("shadow", "get", "esp32-01");
    expect(got.code).toBe(0);
    expect(JSON.parse(got.out).state.desired).toEqual({ config: { interval: 20 } });
    expect((await cli("twin", "set-desired", "esp32-az-01", '{"updateVersion":"1.1.0"}')).code).toBe(0);
    expect(JSON.parse((await cli("twin", "get", "esp32-az-01")).out).properties.desired.updateVersion).toBe("1.1.0");
    expect(JSON.parse((await cli("devices")).out).devices).toEqual({ "esp32-01": "aws", "esp32-az-01": "azure" });
  });

  it("prints the cloud's refusal and exits 1", async () => {
    const r = await cli("shadow", "get", "no-such-thing");
    expect(r.code).toBe(1);
    expect(JSON.parse(r.err).message).toBe("No shadow exists with name: 'no-such-thing'");
  });

  it("exits 2 on usage errors, naming the problem", async () => {
    expect((await cli("shadow", "set-desired", "esp32-01", "{not json")).err).toMatch(/JSON is not JSON/);
    expect((await cli("frobnicate")).code).toBe(2);
    expect((await runCli(["shadow", "get"], { print() {}, error() {} }))).toBe(2);
  });

  it("publishes firmware to the blob server, lists it, arms a fault and deletes it", async () => {
    const file = path.join(dir, "build-1.1.0.bin");
    const image = Buffer.concat([Buffer.from([0xe9]), Buffer.alloc(4096, 7)]);
    fs.writeFileSync(file, image);
    const pub = await cli("firmware", "publish", file, "--name", "1.1.0.bin");
    expect(pub.code).toBe(0);
    expect(JSON.parse(pub.out)).toMatchObject({ container: "firmware", name: "1.1.0.bin", size: image.length, url: `${cloud.blobBaseUrl}1.1.0.bin` });
    expect(cloud.blobs.info("firmware", "1.1.0.bin")!.size).toBe(image.length);
    expect((await cli("firmware", "publish", file, "--container", "az")).code).toBe(0); // name from the file
    expect(cloud.blobs.info("az", "build-1.1.0.bin")).toBeDefined();
    const list = JSON.parse((await cli("firmware", "list")).out).blobs as Array<{ path: string; size: number; etag: string }>;
    expect(list.map((b) => b.path)).toEqual(expect.arrayContaining(["firmware/1.1.0.bin", "az/build-1.1.0.bin"]));
    expect(list.find((b) => b.path === "firmware/1.1.0.bin")!.etag).toBe(cloud.blobs.info("firmware", "1.1.0.bin")!.etag);
    expect((await cli("firmware", "fault", "1.1.0.bin", '{"status":503}', "--times", "always")).code).toBe(0);
    expect((await cli("firmware", "clear-faults", "1.1.0.bin")).code).toBe(0);
    expect((await cli("firmware", "delete", "1.1.0.bin")).code).toBe(0);
    expect(cloud.blobs.info("firmware", "1.1.0.bin")).toBeUndefined();
    const missing = await cli("firmware", "delete", "1.1.0.bin");
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.err).code).toBe("CLOUD_BLOB_NOT_FOUND");
    expect((await cli("firmware", "publish", path.join(dir, "no-such.bin"))).code).toBe(1);
    expect((await cli("firmware", "publish")).code).toBe(2);
  });

  it("says plainly when no cloud is running", async () => {
    const out: string[] = [];
    const code = await runCli(["shadow", "get", "x", "--data-dir", path.join(dir, "nothing")], { print() {}, error: (l) => out.push(l) });
    expect(code).toBe(1);
    expect(out.join("")).toMatch(/no running local cloud/);
  });
});

describe("as processes", () => {
  it("the CLI process reads a shadow", async () => {
    // Not spawnSync: the cloud under test runs in this process and must keep answering.
    const child = spawn(TSX, ["src/sim/cli.ts", "shadow", "get", "esp32-01", "--data-dir", dir], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    children.push(child);
    let stdout = "";
    child.stdout!.on("data", (d: Buffer) => { stdout += d.toString(); });
    const status = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(status).toBe(0);
    expect(JSON.parse(stdout).state.desired.config.interval).toBe(20);
  });

  it("a simulated device process syncs its shadow against the running cloud", async () => {
    await cloud.shadows.updateDesired("esp32-01", { config: { interval: 33 } });
    const child = spawn(TSX, ["src/sim/device.ts", "--id", "esp32-01", "--cloud-dir", dir, "--data-dir", path.join(dir, "dev")], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
    children.push(child);
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => { stderr += d.toString(); });
    const end = Date.now() + 30_000;
    let reported: JsonObject | undefined;
    while (Date.now() < end) {
      const doc = await cloud.shadows.getShadow("esp32-01");
      reported = (doc?.["state"] as JsonObject | undefined)?.["reported"] as JsonObject | undefined;
      if (getPath(reported ?? {}, ["config", "interval"]) === 33) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(reported).toEqual({ config: { interval: 33, firmware_version: "1.0.0" } });
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
    expect(stderr).toMatch(/"event":"sync.desired"/); // its JSON-lines log went to stderr
  });

  it("a device process updates itself: the restart into 1.1.0 is a process restart under its supervisor", async () => {
    cloud.publishFirmware("firmware", "1.1.0.bin", buildImage({ version: "1.1.0", projectName: "shadow-ota", size: 128 * 1024, seed: 5 }));
    const child = spawn(TSX, ["src/sim/device.ts", "--id", "esp32-01", "--cloud-dir", dir, "--data-dir", path.join(dir, "dev-ota")], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
    children.push(child);
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => { stderr += d.toString(); });
    await cloud.shadows.updateDesired("esp32-01", { config: { firmware_version: "1.1.0" } });
    const end = Date.now() + 60_000;
    let reported: JsonObject | undefined;
    while (Date.now() < end) {
      const doc = await cloud.shadows.getShadow("esp32-01");
      reported = (doc?.["state"] as JsonObject | undefined)?.["reported"] as JsonObject | undefined;
      if ((reported?.["firmwareUpdate"] as JsonObject | undefined)?.["state"] === "Valid" && getPath(reported ?? {}, ["config", "firmware_version"]) === "1.1.0") break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(getPath(reported ?? {}, ["config", "firmware_version"])).toBe("1.1.0");
    expect((reported?.["firmwareUpdate"] as JsonObject)["state"]).toBe("Valid");
    expect(stderr).toMatch(/device: restarting \(1\)/);
    child.kill("SIGTERM");
    expect(await new Promise((r) => child.once("exit", r))).toBe(0);
  });
});
