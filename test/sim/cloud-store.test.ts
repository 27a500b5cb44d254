/**
 * Tests of src/sim/cloud-store.ts: a new directory starts empty, saves round-trip through a reopen, a
 * corrupt or foreign file is refused with CLOUD_STORE_CORRUPT naming the file (and left untouched), I/O
 * failures are CLOUD_STORE_IO and change nothing, stale temporaries are cleaned up, one writer per
 * directory (the lock: another open in this process or in another one is CLOUD_STORE_LOCKED naming the
 * pid, a dead holder's lock is taken over), and — through the services on a real broker — an update a
 * device has seen accepted is already in the file.
 */
import { spawn } from "node:child_process";
import * as os from "node:os";
import * as fs from "node:fs";
import * as path from "node:path";

import { CLOUD_CODES } from "../../src/sim/cloud-errors";
import { CLOUD_STORE_FILE, CLOUD_STORE_LOCK_FILE, CloudStore } from "../../src/sim/cloud-store";
import { LocalCloud } from "../../src/sim/local-cloud";
import { ShadowService } from "../../src/sim/shadow-service";
import type { StoredShadow } from "../../src/sim/shadow-engine";
import { TwinService } from "../../src/sim/twin-service";
import { ManualClock } from "../core/fake-ports";
import { connectPlain, endClient, Inbox, startPlainAedes, tempDir } from "./cloud-fixtures";
import { errorOf } from "../core/error-of";

const shadow: StoredShadow = { exists: true, version: 3, state: { desired: { a: [1, 2] } }, metadata: { desired: { a: [{ timestamp: 1 }, { timestamp: 1 }] } } };
const twin = { desired: { u: "1.1.0" }, desiredVersion: 4, reported: {}, reportedVersion: 1 };

describe("open and save", () => {
  it("a missing directory is created and the store starts empty, writing nothing until a save", () => {
    const dir = path.join(tempDir("store"), "a", "b");
    const s = CloudStore.open(dir);
    expect([s.shadows, s.twins, s.writes]).toEqual([{}, {}, 0]);
    expect(fs.existsSync(path.join(dir, CLOUD_STORE_FILE))).toBe(false);
    expect(s.path).toBe(path.join(dir, CLOUD_STORE_FILE));
  });

  it("saves round-trip through a reopen, sections independent, no temporary left behind", () => {
    const dir = tempDir("store");
    const s = CloudStore.open(dir);
    s.saveShadows({ "esp32-01": shadow, "esp32-01~ota": { ...shadow, exists: false, version: 9, state: {}, metadata: {} } });
    s.saveTwins({ "esp32-01": twin });
    expect(s.writes).toBe(2);
    s.close();
    const again = CloudStore.open(dir);
    expect(again.shadows).toEqual(s.shadows);
    expect(again.twins).toEqual({ "esp32-01": twin });
    expect(fs.readdirSync(dir).sort()).toEqual([CLOUD_STORE_FILE, CLOUD_STORE_LOCK_FILE]);
    again.close();
    const file = JSON.parse(fs.readFileSync(s.path, "utf8"));
    expect([file.format, file.formatVersion]).toEqual(["shadow-ota-cloud-store", 1]);
  });

  it("removes temporaries a crashed writer left, never anything else", () => {
    const dir = tempDir("store");
    fs.writeFileSync(path.join(dir, `${CLOUD_STORE_FILE}.12345.tmp`), "half a file");
    fs.writeFileSync(path.join(dir, "notes.tmp"), "not ours");
    CloudStore.open(dir).close();
    expect(fs.readdirSync(dir).sort()).toEqual(["notes.tmp"]);
  });
});

describe("a corrupt or foreign file is refused, named, and left as it is", () => {
  const cases: Array<[string, Buffer | string, RegExp]> = [
    ["not JSON", "{\"format\":", /JSON/],
    ["empty", "", /JSON/],
    ["not UTF-8", Buffer.from([0x7b, 0xff, 0x7d]), /./],
    ["a JSON array", "[]", /not a JSON object/],
    ["another format", JSON.stringify({ format: "x", formatVersion: 1, aws: { shadows: {} }, azure: { twins: {} } }), /format is not/],
    ["a newer format version", JSON.stringify({ format: "shadow-ota-cloud-store", formatVersion: 2, aws: { shadows: {} }, azure: { twins: {} } }), /formatVersion 2/],
    ["no azure section", JSON.stringify({ format: "shadow-ota-cloud-store", formatVersion: 1, aws: { shadows: {} } }), /section missing/],
    ["a bad shadow", JSON.stringify({ format: "shadow-ota-cloud-store", formatVersion: 1, aws: { shadows: { x: { version: "1" } } }, azure: { twins: {} } }), /aws\.shadows\["x"\]/],
    ["a bad twin", JSON.stringify({ format: "shadow-ota-cloud-store", formatVersion: 1, aws: { shadows: {} }, azure: { twins: { "a b": twin } } }), /bad device id/],
  ];
  for (const [name, content, reason] of cases) {
    it(name, () => {
      const dir = tempDir("store");
      const file = path.join(dir, CLOUD_STORE_FILE);
      fs.writeFileSync(file, content);
      const e = errorOf(() => CloudStore.open(dir));
      expect(e.code).toBe(CLOUD_CODES.CLOUD_STORE_CORRUPT);
      expect(e.message).toContain(file);
      expect(e.detail?.path).toBe(file);
      expect(String(e.detail?.reason)).toMatch(reason);
      expect(fs.readFileSync(file)).toEqual(Buffer.from(content));
    });
  }
});

describe("I/O failures", () => {
  it("a data directory that is a file: CLOUD_STORE_IO at open", () => {
    const file = path.join(tempDir("store"), "plain-file");
    fs.writeFileSync(file, "x");
    const e = errorOf(() => CloudStore.open(file));
    expect([e.code, e.detail?.operation]).toEqual([CLOUD_CODES.CLOUD_STORE_IO, "mkdir"]);
  });

  it("a failed write throws CLOUD_STORE_IO and changes nothing in memory", () => {
    const dir = tempDir("store");
    const s = CloudStore.open(dir);
    s.saveShadows({ a: shadow });
    fs.rmSync(s.path);
    fs.mkdirSync(s.path); // the rename onto a non-empty directory fails
    fs.writeFileSync(path.join(s.path, "x"), "x");
    const e = errorOf(() => s.saveShadows({}));
    expect([e.code, e.detail?.operation, e.detail?.path]).toEqual([CLOUD_CODES.CLOUD_STORE_IO, "write", s.path]);
    expect(s.shadows).toEqual({ a: shadow });
    expect(s.writes).toBe(1);
    expect(fs.readdirSync(dir).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });
});

describe("write before publish", () => {
  it("an update a device has seen accepted (shadow) or answered 204 (twin) is already in the file", async () => {
    const broker = await startPlainAedes();
    const dir = tempDir("store-order");
    const store = CloudStore.open(dir);
    const client = await connectPlain(broker.url, "cloud-order");
    const shadows = await ShadowService.start(client, { store, clock: new ManualClock() });
    const twins = await TwinService.start(client, { store, clock: new ManualClock() });
    const device = await connectPlain(broker.url, "dev-order");
    try {
      const inbox = new Inbox(device);
      await device.subscribeAsync(["$aws/things/order/shadow/update/accepted", "devices/order/$iothub/twin/res/#"], { qos: 1 });
      // The check runs in the message handler itself, the moment the answer arrives.
      // Each entry: [version the answer announces, version in the file when it arrived]; the file may be
      // ahead (the service may have handled later requests already) but never behind.
      const seen: Array<[number, number | undefined]> = [];
      device.on("message", (topic, payload) => {
        const s = CloudStore.read(dir);
        if (topic.startsWith("$aws")) seen.push([JSON.parse(payload.toString("utf8")).version, s.shadows.order?.version]);
        else seen.push([Number(/\$version=(\d+)$/.exec(topic)![1]), s.twins.order?.reportedVersion]);
      });
      for (let i = 1; i <= 5; i++) {
        await device.publishAsync("$aws/things/order/shadow/update", JSON.stringify({ state: { reported: { i } } }), { qos: 1 });
        await device.publishAsync(`devices/order/$iothub/twin/PATCH/properties/reported/?$rid=${i}`, JSON.stringify({ i }), { qos: 1 });
      }
      await inbox.next((m) => m.topic === "devices/order/$iothub/twin/res/204/?$rid=5&$version=6");
      await inbox.next((m) => m.topic.endsWith("/update/accepted") && JSON.parse(m.payload).version === 5);
      expect(seen).toHaveLength(10);
      for (const [announced, stored] of seen) expect(stored).toBeGreaterThanOrEqual(announced); // later requests may be stored too
      expect(seen.map((e) => e[0]).sort()).toEqual([1, 2, 2, 3, 3, 4, 4, 5, 5, 6]);
      expect(store.writes).toBe(10);
    } finally {
      await shadows.close();
      await twins.close();
      await endClient(client);
      await endClient(device);
      await broker.close();
    }
  });
});

describe("one writer per directory", () => {
  /** Runs `cmd` and resolves with its pid once it has started; `done` resolves when it exits. */
  function child(cmd: string, args: string[]): { pid: number; done: Promise<void>; kill(): void } {
    const c = spawn(cmd, args, { stdio: "ignore" });
    const done = new Promise<void>((r) => c.once("exit", () => r()));
    return { pid: c.pid!, done, kill: () => { c.kill("SIGKILL"); } };
  }

  it("a second open in this process is CLOUD_STORE_LOCKED until the first is closed", () => {
    const dir = tempDir("store-lock");
    const first = CloudStore.open(dir);
    const e = errorOf(() => CloudStore.open(dir));
    expect(e.code).toBe(CLOUD_CODES.CLOUD_STORE_LOCKED);
    expect(e.message).toMatch(new RegExp(`this process \\(pid ${process.pid}`));
    expect(CloudStore.read(dir).shadows).toEqual({}); // reading needs no lock
    first.close();
    first.close(); // twice is fine
    expect(fs.existsSync(path.join(dir, CLOUD_STORE_LOCK_FILE))).toBe(false);
    expect(errorOf(() => first.saveShadows({})).code).toBe(CLOUD_CODES.CLOUD_STORE_IO); // closed: no more writes
    CloudStore.open(dir).close();
  });

  it("a store held by another running cloud process is refused with its pid; once it is gone the lock is taken over", async () => {
    const dir = tempDir("store-lock");
    // Another cloud process: the real thing, a Node process that opens the store and stays.
    const script = `const { CloudStore } = require(${JSON.stringify(path.resolve("src/sim/cloud-store.ts"))}); CloudStore.open(${JSON.stringify(dir)}); console.log("ready"); setInterval(() => {}, 1000);`;
    const other = spawn(process.execPath, ["--require", require.resolve("tsx/cjs"), "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error("the other process did not open the store within 30 s")), 30_000);
        other.stdout!.on("data", (d: Buffer) => { if (d.toString().includes("ready")) { clearTimeout(t); resolve(); } });
        other.once("exit", (code) => { clearTimeout(t); reject(new Error(`the other process exited (${code})`)); });
      });
      const e = errorOf(() => CloudStore.open(dir));
      expect(e.code).toBe(CLOUD_CODES.CLOUD_STORE_LOCKED);
      expect(e.message).toContain(`pid ${other.pid}`);
      expect(e.detail).toMatchObject({ pid: other.pid, hostname: os.hostname() });
      // So is a whole local cloud on that directory.
      await expect(LocalCloud.start({ dataDir: dir, certsDir: path.join(os.tmpdir(), "shadow-ota-test-pki"), adminPort: false, blobPort: false }))
        .rejects.toMatchObject({ code: CLOUD_CODES.CLOUD_STORE_LOCKED });
    } finally {
      const exited = new Promise<void>((r) => (other.exitCode !== null ? r() : other.once("exit", () => r())));
      other.kill("SIGKILL"); // as a crash would: the lock stays behind
      await exited;
    }
    expect(fs.existsSync(path.join(dir, CLOUD_STORE_LOCK_FILE))).toBe(true);
    const s = CloudStore.open(dir); // its pid is gone: stale, taken over
    expect(JSON.parse(fs.readFileSync(path.join(dir, CLOUD_STORE_LOCK_FILE), "utf8"))).toMatchObject({ pid: process.pid });
    s.close();
  }, 60_000);

  it("a lock naming a live pid is never taken over; a dead pid's is", async () => {
    const dir = tempDir("store-lock");
    const lock = path.join(dir, CLOUD_STORE_LOCK_FILE);
    const sleeper = child("sleep", ["30"]);
    try {
      fs.writeFileSync(lock, JSON.stringify({ pid: sleeper.pid, hostname: os.hostname(), since: "2024-01-01T00:00:00.000Z" }));
      const e = errorOf(() => CloudStore.open(dir));
      expect([e.code, e.detail?.pid]).toEqual([CLOUD_CODES.CLOUD_STORE_LOCKED, sleeper.pid]);
      expect(e.message).toContain(`delete ${lock}`);
    } finally {
      sleeper.kill();
      await sleeper.done;
    }
    CloudStore.open(dir).close(); // the same lock, its pid now gone
  });

  it("a lock from another host, or one that is not a lock, is refused and named", () => {
    const dir = tempDir("store-lock");
    const lock = path.join(dir, CLOUD_STORE_LOCK_FILE);
    fs.writeFileSync(lock, JSON.stringify({ pid: 1, hostname: `not-${os.hostname()}`, since: "" }));
    expect(errorOf(() => CloudStore.open(dir)).message).toMatch(/pid 1 on not-/);
    fs.writeFileSync(lock, "garbage");
    expect(errorOf(() => CloudStore.open(dir)).message).toMatch(/unreadable lock/);
    expect(fs.readFileSync(lock, "utf8")).toBe("garbage");
  });
});
