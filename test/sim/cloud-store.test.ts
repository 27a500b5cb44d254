/**
 * Tests of src/sim/cloud-store.ts: a new directory starts empty, puts round-trip through a reopen (snapshot
 * + log replay), one record per put and group commits, compaction, a torn log tail dropped, a writer killed
 * -9 mid-burst loses no acknowledged update, a format-1 store is migrated, a corrupt or foreign file is
 * refused with CLOUD_STORE_CORRUPT naming the file (and left untouched), I/O failures (a disk that fills up
 * or fails fsync, through the store's I/O port) are CLOUD_STORE_IO and change nothing, stale temporaries
 * are cleaned up, one writer per
 * directory (the lock: another open in this process or in another one is CLOUD_STORE_LOCKED naming the
 * pid, a dead holder's lock is taken over), and — through the services on a real broker — an update a
 * device has seen accepted is already in the file.
 */
import { spawn } from "node:child_process";
import * as os from "node:os";
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";

import { CLOUD_CODES } from "../../src/sim/cloud-errors";
import { CLOUD_STORE_FILE, CLOUD_STORE_LOCK_FILE, CLOUD_STORE_LOG_FILE, CloudStore } from "../../src/sim/cloud-store";
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
  it("a missing directory is created and the store starts empty, writing nothing until a put", async () => {
    const dir = path.join(tempDir("store"), "a", "b");
    const s = CloudStore.open(dir);
    expect([s.shadows, s.twins, s.writes]).toEqual([{}, {}, 0]);
    expect(fs.existsSync(path.join(dir, CLOUD_STORE_FILE))).toBe(false);
    expect(fs.statSync(s.logPath).size).toBe(0);
    expect(s.path).toBe(path.join(dir, CLOUD_STORE_FILE));
    await s.close();
  });

  it("puts round-trip through a reopen (log replayed), sections independent, no temporary left behind", async () => {
    const dir = tempDir("store");
    const s = CloudStore.open(dir);
    await Promise.all([
      s.putShadow("esp32-01", shadow),
      s.putShadow("esp32-01~ota", { ...shadow, exists: false, version: 9, state: {}, metadata: {} }),
      s.putTwin("esp32-01", twin),
    ]);
    expect(s.writes).toBe(3);
    expect(s.commits).toBe(1); // one group commit for the three
    // Read while the writer runs: the snapshot does not exist yet, the log has all three.
    expect(fs.existsSync(s.path)).toBe(false);
    expect(CloudStore.read(dir).shadows).toEqual(s.shadows);
    const again = await reopenAfterKill(dir);
    expect(again.shadows).toEqual(s.shadows);
    expect(again.twins).toEqual({ "esp32-01": twin });
    await again.close();
    await s.close(); // compacts: everything in cloud-store.json, the log empty
    expect(fs.readdirSync(dir).sort()).toEqual([CLOUD_STORE_FILE, CLOUD_STORE_LOG_FILE]);
    expect(fs.statSync(path.join(dir, CLOUD_STORE_LOG_FILE)).size).toBe(0);
    const file = JSON.parse(fs.readFileSync(s.path, "utf8"));
    expect([file.format, file.formatVersion, file.azure.twins]).toEqual(["shadow-ota-cloud-store", 2, { "esp32-01": twin }]);
  });

  it("a write costs what the change costs: one record per put, whatever the store's size", async () => {
    const dir = tempDir("store");
    const s = CloudStore.open(dir, { compactAfterBytes: 1 << 30 });
    const many = Array.from({ length: 2000 }, (_, i) => s.putShadow(`thing-${i}`, shadow));
    await Promise.all(many);
    const before = s.logBytes;
    await s.putShadow("thing-7", { ...shadow, version: 4 });
    const record = s.logBytes - before;
    expect(record).toBeLessThan(200); // one record, not 2,000 shadows
    expect(record).toBe(Buffer.byteLength(JSON.stringify(["s", "thing-7", { ...shadow, version: 4 }])) + 10);
    expect(s.commits).toBeLessThan(2000 / 10); // group commit: far fewer fsyncs than records
    await s.close();
  });

  it("compacts once the log outgrows the snapshot; a reopen sees the same data", async () => {
    const dir = tempDir("store");
    const s = CloudStore.open(dir, { compactAfterBytes: 4096 });
    for (let i = 0; i < 200; i++) await s.putShadow(`t${i % 10}`, { ...shadow, version: i });
    expect(s.compactions).toBeGreaterThanOrEqual(1);
    expect(s.logBytes).toBeLessThan(200 * 100);
    const seen = CloudStore.read(dir).shadows;
    expect(seen).toEqual(s.shadows);
    expect(seen.t9?.version).toBe(199);
    await s.close();
  });

  it("removes temporaries a crashed writer left, never anything else", async () => {
    const dir = tempDir("store");
    fs.writeFileSync(path.join(dir, `${CLOUD_STORE_FILE}.12345.tmp`), "half a file");
    fs.writeFileSync(path.join(dir, "notes.tmp"), "not ours");
    await CloudStore.open(dir).close();
    expect(fs.readdirSync(dir).sort()).toEqual([CLOUD_STORE_LOG_FILE, "notes.tmp"]);
  });
});

/** Opens the store again as a cloud restarted after kill -9 would: the old lock is dropped, not released. */
async function reopenAfterKill(dir: string): Promise<CloudStore> {
  const copy = tempDir("store-copy");
  for (const n of fs.readdirSync(dir)) if (n !== CLOUD_STORE_LOCK_FILE) fs.copyFileSync(path.join(dir, n), path.join(copy, n));
  return CloudStore.open(copy);
}

describe("the log after a crash", () => {
  it("a torn last record (an unacknowledged batch) is dropped and cut off; the records before it stay", async () => {
    const dir = tempDir("store");
    const s = CloudStore.open(dir);
    await s.putShadow("a", shadow);
    await s.putShadow("b", { ...shadow, version: 5 });
    const full = fs.readFileSync(s.logPath);
    const copy = tempDir("store-torn");
    for (const cut of [full.length - 1, full.length - 20]) {
      fs.writeFileSync(path.join(copy, CLOUD_STORE_LOG_FILE), full.subarray(0, cut));
      const r = CloudStore.open(copy);
      expect(Object.keys(r.shadows)).toEqual(["a"]);
      expect(r.droppedTailBytes).toBe(cut - full.indexOf(0x0a) - 1);
      expect(fs.statSync(r.logPath).size).toBe(full.indexOf(0x0a) + 1);
      await r.putShadow("c", shadow); // appends after the cut, not after the garbage
      await r.close();
      expect(Object.keys(CloudStore.read(copy).shadows).sort()).toEqual(["a", "c"]);
      fs.rmSync(path.join(copy, CLOUD_STORE_FILE));
    }
    await s.close();
  });

  it("a record whose CRC holds but whose content is not a shadow is CLOUD_STORE_CORRUPT, the file untouched", () => {
    const dir = tempDir("store");
    const json = JSON.stringify(["s", "x", { version: "1" }]);
    const crc = zlib.crc32(Buffer.from(json)).toString(16).padStart(8, "0");
    const log = path.join(dir, CLOUD_STORE_LOG_FILE);
    fs.writeFileSync(log, `${crc} ${json}\n`);
    const e = errorOf(() => CloudStore.open(dir));
    expect([e.code, e.detail?.path]).toEqual([CLOUD_CODES.CLOUD_STORE_CORRUPT, log]);
    expect(String(e.detail?.reason)).toMatch(/record at byte 0/);
    expect(fs.readFileSync(log, "utf8")).toBe(`${crc} ${json}\n`);
    expect(fs.existsSync(path.join(dir, CLOUD_STORE_LOCK_FILE))).toBe(false);
  });

  it("kill -9 in the middle of a burst: every update the writer saw acknowledged is there after a reopen", async () => {
    const dir = tempDir("store-crash");
    const acks = path.join(tempDir("store-acks"), "acks");
    // The writer: puts in bursts of 50 over 20 shadows and appends "key version" to the ack file once each
    // resolves (a file, not a pipe: what reached it survives the kill).
    const script = `
      const { CloudStore } = require(${JSON.stringify(path.resolve("src/sim/cloud-store.ts"))});
      const fs = require("node:fs");
      const out = fs.openSync(${JSON.stringify(acks)}, "a");
      const s = CloudStore.open(${JSON.stringify(dir)}, { compactAfterBytes: 16384 });
      let v = 0;
      const burst = () => {
        const all = [];
        for (let i = 0; i < 50; i++) {
          const key = "t" + (v % 20), version = ++v;
          all.push(s.putShadow(key, { exists: true, version, state: { reported: { v: version } }, metadata: {} })
            .then(() => fs.writeSync(out, key + " " + version + "\\n")));
        }
        Promise.all(all).then(() => setImmediate(burst));
      };
      burst();`;
    const child = spawn(process.execPath, ["--require", require.resolve("tsx/cjs"), "-e", script], { stdio: ["ignore", "ignore", "inherit"] });
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    const lines = (): string[] => { try { return fs.readFileSync(acks, "utf8").split("\n").filter(Boolean); } catch { return []; } };
    try {
      // Polled at most 600 times, 100 ms apart; killed once 3,000 updates (and compactions) went by.
      for (let i = 0; i < 600 && lines().length < 3000 && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
      expect(child.exitCode).toBe(null); // still writing when killed
    } finally {
      child.kill("SIGKILL");
      await exited;
    }
    const acked = new Map<string, number>();
    for (const l of lines()) {
      const [key, v] = l.split(" ");
      acked.set(key!, Math.max(acked.get(key!) ?? 0, Number(v)));
    }
    expect(acked.size).toBe(20);
    const s = CloudStore.open(dir); // the dead writer's lock is taken over
    try {
      for (const [key, v] of acked) expect(s.shadows[key]?.version).toBeGreaterThanOrEqual(v);
    } finally {
      await s.close();
    }
  }, 90_000);
});

describe("format 1 (one JSON file rewritten per update) is migrated", () => {
  it("an old store opens with its data, is rewritten as format 2 at once, and takes records in the log", async () => {
    const dir = tempDir("store-v1");
    const file = path.join(dir, CLOUD_STORE_FILE);
    fs.writeFileSync(file, JSON.stringify({ format: "shadow-ota-cloud-store", formatVersion: 1, aws: { shadows: { "esp32-01": shadow } }, azure: { twins: { "esp32-az-01": twin } } }, null, 1));
    const s = CloudStore.open(dir);
    expect([s.shadows, s.twins, s.compactions]).toEqual([{ "esp32-01": shadow }, { "esp32-az-01": twin }, 1]);
    expect(JSON.parse(fs.readFileSync(file, "utf8")).formatVersion).toBe(2);
    await s.putTwin("esp32-az-01", { ...twin, desiredVersion: 5 });
    expect(fs.statSync(s.logPath).size).toBeGreaterThan(0);
    const again = await reopenAfterKill(dir);
    expect(again.twins["esp32-az-01"]?.desiredVersion).toBe(5);
    expect(again.shadows).toEqual({ "esp32-01": shadow });
    await again.close();
    await s.close();
  });
});

describe("a corrupt or foreign file is refused, named, and left as it is", () => {
  const cases: Array<[string, Buffer | string, RegExp]> = [
    ["not JSON", "{\"format\":", /JSON/],
    ["empty", "", /JSON/],
    ["not UTF-8", Buffer.from([0x7b, 0xff, 0x7d]), /./],
    ["a JSON array", "[]", /not a JSON object/],
    ["another format", JSON.stringify({ format: "x", formatVersion: 1, aws: { shadows: {} }, azure: { twins: {} } }), /format is not/],
    ["a newer format version", JSON.stringify({ format: "shadow-ota-cloud-store", formatVersion: 3, aws: { shadows: {} }, azure: { twins: {} } }), /formatVersion 3/],
    ["no azure section", JSON.stringify({ format: "shadow-ota-cloud-store", formatVersion: 1, aws: { shadows: {} } }), /section missing/],
    ["a bad shadow", JSON.stringify({ format: "shadow-ota-cloud-store", formatVersion: 1, aws: { shadows: { x: { version: "1" } } }, azure: { twins: {} } }), /aws\.shadows\["x"\]/],
    ["a bad twin", JSON.stringify({ format: "shadow-ota-cloud-store", formatVersion: 2, aws: { shadows: {} }, azure: { twins: { "a b": twin } } }), /bad device id/],
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

  it("a failed write rejects its batch with CLOUD_STORE_IO, applies nothing and is undone; later puts work", async () => {
    const dir = tempDir("store");
    let failNext = false;
    const s = CloudStore.open(dir, {
      io: {
        // A disk that fills up in the middle of the batch: part of it written, then ENOSPC.
        write: async (fd, data, position) => {
          if (!failNext) return new Promise<void>((res, rej) => fs.write(fd, data, 0, data.length, position, (e) => (e ? rej(e) : res())));
          failNext = false;
          fs.writeSync(fd, data, 0, Math.floor(data.length / 2), position);
          throw Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" });
        },
      },
    });
    await s.putShadow("a", shadow);
    failNext = true;
    const results = await Promise.allSettled([s.putShadow("a", { ...shadow, version: 4 }), s.putShadow("b", shadow)]);
    for (const r of results) expect(r.status === "rejected" && errorOf(() => { throw r.reason; }).code).toBe(CLOUD_CODES.CLOUD_STORE_IO);
    expect(s.shadows).toEqual({ a: shadow });
    expect(s.writes).toBe(1);
    await s.putShadow("b", shadow);
    expect(CloudStore.read(dir).shadows).toEqual({ a: shadow, b: shadow }); // the half record was cut away
    await s.close();
  });

  it("a failed fsync fails the store for good: later puts reject too", async () => {
    const dir = tempDir("store");
    const s = CloudStore.open(dir, { io: { datasync: async () => { throw Object.assign(new Error("EIO: i/o error"), { code: "EIO" }); } } });
    await expect(s.putShadow("a", shadow)).rejects.toMatchObject({ code: CLOUD_CODES.CLOUD_STORE_IO, detail: { operation: "fsync" } });
    await expect(s.putShadow("b", shadow)).rejects.toMatchObject({ code: CLOUD_CODES.CLOUD_STORE_IO });
    expect(s.shadows).toEqual({});
    await s.close();
  });

  it("a read-only or closed store cannot be written", async () => {
    const dir = tempDir("store");
    await expect(CloudStore.read(dir).putShadow("a", shadow)).rejects.toMatchObject({ code: CLOUD_CODES.CLOUD_STORE_IO });
    const s = CloudStore.open(dir);
    await s.close();
    await expect(s.putShadow("a", shadow)).rejects.toMatchObject({ code: CLOUD_CODES.CLOUD_STORE_IO });
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
      await store.close();
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

  it("a second open in this process is CLOUD_STORE_LOCKED until the first is closed", async () => {
    const dir = tempDir("store-lock");
    const first = CloudStore.open(dir);
    const e = errorOf(() => CloudStore.open(dir));
    expect(e.code).toBe(CLOUD_CODES.CLOUD_STORE_LOCKED);
    expect(e.message).toMatch(new RegExp(`this process \\(pid ${process.pid}`));
    expect(CloudStore.read(dir).shadows).toEqual({}); // reading needs no lock
    first.close();
    first.close(); // twice is fine
    expect(fs.existsSync(path.join(dir, CLOUD_STORE_LOCK_FILE))).toBe(false);
    await expect(first.putShadow("a", shadow)).rejects.toMatchObject({ code: CLOUD_CODES.CLOUD_STORE_IO }); // closed: no more writes
    await CloudStore.open(dir).close();
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
    await CloudStore.open(dir).close(); // the same lock, its pid now gone
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
