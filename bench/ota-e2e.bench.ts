/**
 * Benchmark (`npm run bench`): the OTA update end to end on loopback, against baselines measured in the
 * same run. Every figure in README.md and docs/ota.md comes from this command. It checks that every side
 * produced the right bytes, never how fast (no timing asserts); a missed target is printed, not hidden.
 *
 * 1. Throughput, 1, 4 and 8 MB images (MB = 10^6 bytes; real ESP32 app images from src/tools/esp-image.ts),
 *    repetitions interleaved (the order of the variants rotates every repetition), medians:
 *    - OTA: the product path — the local cloud's HTTPS blob server → HttpsByteSource → OtaController →
 *      the native OTA slot on a 16 MiB flash file (two 0x7D0000-byte OTA slots), with the controller's
 *      record in a FileKvStore (the simulator's NVS; the file kept between runs, as a device keeps its
 *      NVS, the record cleared before each), from request() until the controller asks for the
 *      restart (image verified by end(), boot partition set: Staged);
 *    - (a) a plain HTTPS GET of the same blob (node:https, the same CA, one connection) + SHA-256;
 *    - (b) the same plus writing the bytes to a file and hashing the file again from disk;
 *    - diagnostic: the OTA path with the record kept in memory (no file write) — NOT the product, it only
 *      shows where the time goes; next to it the measured cost of one FileKvStore.set (one log entry
 *      stored into the mapped file, no fsync: src/node/file-kv.ts), which the controller does at every
 *      4 KiB sector.
 *    Targets: OTA ≥ 0.9 of (b) at 8 MB; (a) is stated.
 * 2. Peak resident memory of a device process updating a 1 MB and an 8 MB image: a child process per size,
 *    started with the device process's Node flags (DEVICE_NODE_FLAGS in src/sim/device.ts, as
 *    `npm run cloud -- device` starts one), runs the OTA path once and reports
 *    process.resourceUsage().maxRSS; target: growth under 2 MB. The
 *    host flash is a MAP_SHARED mapping of the flash file, so the pages it holds count in maxRSS (it holds
 *    one 256 KiB window at a time, or the page-cache folio holding it); the child also samples RssAnon
 *    (heap and native allocations) and RssFile (mostly the mapped flash) to tell the two apart. A
 *    diagnostic repeats the runs with Node's default flags: the download's array buffers are garbage that
 *    V8's young generation (16 MB semi-spaces by default) collects late.
 * 3. Desired-state update → first byte requested: the real local cloud (aedes) and a simulated device; the
 *    cloud sets desired config.firmware_version to a new version and the clock stops when the blob server
 *    records the device's GET (N runs, median). The blob does not exist, so each run ends in a quick 404
 *    (DOWNLOAD_HTTP_STATUS, retries off for this device) instead of a download.
 * 4. Bytes downloaded after a power cut: simulated devices update 1.0.0 → 1.1.0 (1 MB image) and lose power
 *    at 25 %, 50 % and 75 % of the download; extra = bytes downloaded − image size; target ≤ 4096.
 *
 * Output: a table, then as the LAST line one JSON object (otaVsWriteRatio, otaVsGetRatio, rssGrowthMB,
 * firstByteMedianMs, resumeExtraBytes and the rest). BENCH_REPS (default 5), BENCH_RSS_RUNS (default 3) and BENCH_FIRST_BYTE_RUNS
 * (default 20) change the counts. The whole run takes about two minutes on a 2-core machine.
 *
 * Not here: the C write path alone (bench/ota-write.bench.ts, `npm run bench:write`), a real ESP32's flash
 * or Wi-Fi speed.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";

import { getPath } from "../src/core/config-diff";
import { awsBlobName } from "../src/core/firmware-url";
import type { JsonObject } from "../src/core/json";
import { OtaController, type OtaControllerConfig } from "../src/core/ota-controller";
import { HostOtaSlot, loadNativeOtaModule } from "../src/native/ota-slot";
import { FileKvStore } from "../src/node/file-kv";
import { HttpsByteSource } from "../src/node/https-source";
import { NodeClock } from "../src/node/node-clock";
import type { KeyValueStore } from "../src/ports/kv-store";
import type { Log } from "../src/ports/log";
import type { OtaSlot } from "../src/ports/ota-slot";
import { DEVICE_NODE_FLAGS, SimDevice } from "../src/sim/device";
import { LocalCloud } from "../src/sim/local-cloud";
import { buildImage } from "../src/tools/esp-image";
import { createFlashFile } from "../src/tools/flash-file";
import { APP_SUBTYPE, DATA_SUBTYPE, PARTITION_TYPE, type PartitionEntry } from "../src/tools/partition-table";

const MB = 1_000_000;
const SIZES = [1 * MB, 4 * MB, 8 * MB];
const REPS = Number(process.env.BENCH_REPS ?? 5);
const FIRST_BYTE_RUNS = Number(process.env.BENCH_FIRST_BYTE_RUNS ?? 20);
const RSS_RUNS = Number(process.env.BENCH_RSS_RUNS ?? 3);
const SECTOR = 4096;
const VERSION = "2.0.0";
const PROJECT = "shadow-ota";
const PKI_DIR = path.join(os.tmpdir(), "shadow-ota-bench-pki"); // kept between runs: RSA keys take time

/** 16 MiB flash: factory (256 KiB) and two 0x7D0000-byte (8.19 MB) OTA slots. */
const FLASH_SIZE = 16 * 1024 * 1024;
const OTADATA = { offset: 0xd000, size: 0x2000 };
const PARTITIONS: PartitionEntry[] = [
  { name: "nvs", type: PARTITION_TYPE.data, subtype: DATA_SUBTYPE["nvs"]!, offset: 0x9000, size: 0x4000, flags: 0 },
  { name: "otadata", type: PARTITION_TYPE.data, subtype: DATA_SUBTYPE["ota"]!, offset: OTADATA.offset, size: OTADATA.size, flags: 0 },
  { name: "phy_init", type: PARTITION_TYPE.data, subtype: DATA_SUBTYPE["phy"]!, offset: 0xf000, size: 0x1000, flags: 0 },
  { name: "factory", type: PARTITION_TYPE.app, subtype: APP_SUBTYPE["factory"]!, offset: 0x10000, size: 0x40000, flags: 0 },
  { name: "ota_0", type: PARTITION_TYPE.app, subtype: APP_SUBTYPE["ota_0"]!, offset: 0x50000, size: 0x7d0000, flags: 0 },
  { name: "ota_1", type: PARTITION_TYPE.app, subtype: APP_SUBTYPE["ota_1"]!, offset: 0x820000, size: 0x7d0000, flags: 0 },
];

const silent: Log = { log() {} };

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The container of each size's blob: `bench-1mb/2.0.0.bin`, ... */
const containerOf = (size: number): string => `bench-${size / MB}mb`;

// ---------------------------------------------------------------------------------------------------------
// The OTA path, in this process or in a child

interface OtaTarget {
  baseUrl: string;
  ca: string;
  host: string;
  flashPath: string;
  kvPath: string;
}

/** Makes the flash boot the factory app again (otadata erased), so every run writes ota_0 from the same state. */
function resetOtadata(flashPath: string): void {
  const fd = fs.openSync(flashPath, "r+");
  try {
    fs.writeSync(fd, Buffer.alloc(OTADATA.size, 0xff), 0, OTADATA.size, OTADATA.offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** The same store, with the time its set() calls take added to `into.kv`. */
function timedKv(inner: KeyValueStore, into: Spent): KeyValueStore {
  return {
    get: (k) => inner.get(k),
    set: (k, v) => { const t0 = process.hrtime.bigint(); try { inner.set(k, v); } finally { into.kv += process.hrtime.bigint() - t0; } },
    delete: (k) => inner.delete(k),
  };
}

/** Where an OTA run's time went (ns): the record store's set(), the slot's write()/accept(), its end() +
 *  setBootPartition() (the read-back verification and otadata); the rest is the download and the controller. */
interface Spent { kv: bigint; write: bigint; end: bigint }

/** The slot's verbs timed into `into` (called on the slot itself: its private state stays its own). */
function timedSlot(inner: HostOtaSlot, into: Spent): OtaSlot {
  const timed = <T>(key: "write" | "end", fn: () => T): T => {
    const t0 = process.hrtime.bigint();
    try { return fn(); } finally { into[key] += process.hrtime.bigint() - t0; }
  };
  return {
    begin: (o) => inner.begin(o),
    resume: (off, o) => inner.resume(off, o),
    write: (c) => timed("write", () => inner.write(c)),
    accept: () => timed("write", () => inner.accept()),
    end: () => timed("end", () => inner.end()),
    abort: () => inner.abort(),
    setBootPartition: () => timed("end", () => inner.setBootPartition()),
    runningPartition: () => inner.runningPartition(),
    runningState: () => inner.runningState(),
    markValid: () => inner.markValid(),
    markInvalidAndReboot: () => inner.markInvalidAndReboot(),
    runningDescriptor: () => inner.runningDescriptor(),
    candidateDescriptor: () => inner.candidateDescriptor(),
  };
}

function memoryKv(): KeyValueStore {
  const m = new Map<string, string>();
  return { get: (k) => m.get(k), set: (k, v) => { m.set(k, v); }, delete: (k) => { m.delete(k); } };
}

/**
 * One update from request() to the restart the controller asks for once the image is Staged. Returns the
 * elapsed nanoseconds. Throws when the update ends anywhere else.
 */
async function otaOnce(t: OtaTarget, kvKind: "file" | "memory", spent: Spent = { kv: 0n, write: 0n, end: 0n }): Promise<bigint> {
  resetOtadata(t.flashPath);
  // The device's NVS exists before an update (a device formats it once, at its first boot): clear the
  // controller's record in it (a log entry) rather than deleting the file, which would make the first
  // set() of every run create the file (a compaction: write, fsync, rename).
  if (kvKind === "file") {
    const nvs = new FileKvStore(t.kvPath);
    for (const k of nvs.keys()) nvs.delete(k);
    nvs.close();
  }
  const slot = new HostOtaSlot({ flashPath: t.flashPath });
  slot.boot();
  let staged!: () => void;
  let failed!: (e: Error) => void;
  const done = new Promise<void>((resolve, reject) => { staged = resolve; failed = reject; });
  const log: Log = {
    log(_level, event, fields = {}) {
      if (event === "ota.state" && fields["to"] === "Failed") failed(new Error(`bench: the update failed (${JSON.stringify(fields)})`));
      if (event === "ota.download.failed") failed(new Error(`bench: download failed: ${String(fields["code"])} ${String(fields["message"])}`));
    },
  };
  const config: OtaControllerConfig = {
    source: { naming: "aws", baseUrl: t.baseUrl, allowedHosts: [t.host] }, projectName: PROJECT, chipId: 0,
  };
  const source = new HttpsByteSource({ ca: t.ca, allowedHosts: [t.host], connectTimeoutMs: 10_000, idleTimeoutMs: 10_000 });
  const ctl = new OtaController(
    { slot: timedSlot(slot, spent), source, kv: timedKv(kvKind === "file" ? new FileKvStore(t.kvPath) : memoryKv(), spent), clock: new NodeClock(), log, restart: { restart: () => staged() } },
    config, { report: () => Promise.resolve() },
  );
  ctl.boot();
  ctl.start();
  const t0 = process.hrtime.bigint();
  ctl.request(VERSION);
  try {
    await done;
    return process.hrtime.bigint() - t0;
  } finally {
    ctl.close();
    await ctl.idle();
    slot.close();
  }
}

/** (a) and (b): GET the blob over HTTPS (one connection, like HttpsByteSource) and hash it; (b) also writes
 *  it to `file` and hashes the file again from disk. Returns elapsed ns and the digest(s). */
function getOnce(url: string, ca: string, file?: string): Promise<{ ns: bigint; digest: string; again?: string }> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const h = createHash("sha256");
    const fd = file === undefined ? undefined : fs.openSync(file, "w");
    let pos = 0;
    const req = https.request(url, { ca, agent: false, minVersion: "TLSv1.2", headers: { connection: "close", "accept-encoding": "identity" } }, (res) => {
      if (res.statusCode !== 200) { reject(new Error(`bench: GET ${url} → ${String(res.statusCode)}`)); res.resume(); return; }
      res.on("data", (c: Buffer) => {
        h.update(c);
        if (fd !== undefined) { fs.writeSync(fd, c, 0, c.length, pos); pos += c.length; }
      });
      res.on("end", () => {
        const digest = h.digest("hex");
        let again: string | undefined;
        if (fd !== undefined) {
          fs.closeSync(fd);
          const h2 = createHash("sha256");
          const rfd = fs.openSync(file!, "r");
          const buf = Buffer.allocUnsafe(64 * 1024);
          for (let n; (n = fs.readSync(rfd, buf, 0, buf.length, null)) > 0;) h2.update(buf.subarray(0, n));
          fs.closeSync(rfd);
          again = h2.digest("hex");
        }
        const ns = process.hrtime.bigint() - t0;
        resolve(again === undefined ? { ns, digest } : { ns, digest, again });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

/** Current RssAnon (or RssFile) of this process in KiB (Linux), undefined elsewhere. */
function rssAnonKiB(field: "RssAnon" | "RssFile" = "RssAnon"): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(fs.readFileSync("/proc/self/status", "utf8"));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

/** The child of part 2: one OTA run, then its peak RSS as one JSON line. */
async function rssChild(argv: string[]): Promise<number> {
  const t = JSON.parse(argv[argv.indexOf("--rss-child") + 1]!) as OtaTarget;
  let anonPeak = rssAnonKiB() ?? 0;
  const anonAtStart = anonPeak;
  let filePeak = rssAnonKiB("RssFile") ?? 0;
  const peak = { heapUsed: 0, external: 0, arrayBuffers: 0 };
  const sample = (): void => {
    anonPeak = Math.max(anonPeak, rssAnonKiB() ?? 0);
    filePeak = Math.max(filePeak, rssAnonKiB("RssFile") ?? 0);
    const m = process.memoryUsage();
    peak.heapUsed = Math.max(peak.heapUsed, m.heapUsed);
    peak.external = Math.max(peak.external, m.external);
    peak.arrayBuffers = Math.max(peak.arrayBuffers, m.arrayBuffers);
  };
  const timer = setInterval(sample, 10);
  const ns = await otaOnce(t, "file");
  clearInterval(timer);
  sample();
  // After a full collection: what was still referenced (a retained image would show here), not garbage.
  // Array buffers are freed by a background sweep after the collection: collect twice, a moment apart.
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  await new Promise((r) => setTimeout(r, 200));
  gc?.();
  await new Promise((r) => setTimeout(r, 50));
  const afterGc = process.memoryUsage().arrayBuffers;
  process.stdout.write(JSON.stringify({ maxRssKiB: process.resourceUsage().maxRSS, anonPeakKiB: anonPeak, anonAtStartKiB: anonAtStart, filePeakKiB: filePeak, ms: Number(ns) / 1e6, peak, arrayBuffersAfterGc: afterGc }) + "\n");
  return 0;
}

interface ChildResult {
  maxRssKiB: number;
  anonPeakKiB: number;
  /** Peak RssFile (file-backed pages: the mapped flash, the node binary and libraries), sampled. */
  filePeakKiB: number;
  anonAtStartKiB: number;
  ms: number;
  /** Peaks of process.memoryUsage() (bytes), sampled every 10 ms. */
  peak: { heapUsed: number; external: number; arrayBuffers: number };
  /** process.memoryUsage().arrayBuffers after the run and a forced full GC. */
  arrayBuffersAfterGc: number;
}


function runChild(t: OtaTarget, nodeFlags: readonly string[] = []): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--expose-gc", ...nodeFlags, ...process.execArgv, __filename, "--rss-child", JSON.stringify(t)], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => { out += d.toString(); });
    child.once("exit", (code) => {
      const line = out.trim().split("\n").pop() ?? "";
      if (code !== 0) { reject(new Error(`bench: RSS child exited ${String(code)}: ${out}`)); return; }
      try { resolve(JSON.parse(line) as ChildResult); } catch (e) { reject(e as Error); }
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// The run

async function main(): Promise<number> {
  if (process.argv.includes("--rss-child")) return rssChild(process.argv);
  try {
    loadNativeOtaModule();
  } catch (e) {
    console.error(`bench: ${(e as Error).message}`);
    return 1;
  }
  const started = Date.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-bench-"));
  const cloud = await LocalCloud.start({
    dataDir: path.join(dir, "cloud"), certsDir: PKI_DIR, adminPort: false,
    devices: [{ id: "bench-fb", cloud: "aws" }, { id: "bench-pc-1", cloud: "aws" }, { id: "bench-pc-2", cloud: "aws" }, { id: "bench-pc-3", cloud: "aws" }],
  });
  const say = (s: string): void => { console.log(s); };
  try {
    const ca = cloud.blobCa;
    const host = cloud.host;
    const factory = buildImage({ version: "1.0.0", projectName: PROJECT, size: 64 * 1024, seed: 7 });
    const targets = new Map<number, OtaTarget & { url: string; digest: string }>();
    for (const size of SIZES) {
      const image = buildImage({ version: VERSION, projectName: PROJECT, size, seed: 42, segmentCount: 5 });
      const info = cloud.blobs.publish(containerOf(size), awsBlobName(VERSION), image);
      const flashPath = path.join(dir, `flash-${size / MB}mb.bin`);
      createFlashFile(flashPath, { size: FLASH_SIZE, partitions: PARTITIONS, images: { factory } });
      targets.set(size, {
        baseUrl: cloud.blobs.baseUrl(containerOf(size)), ca, host, flashPath, kvPath: path.join(dir, `nvs-${size / MB}mb.json`),
        url: info.url, digest: createHash("sha256").update(image).digest("hex"),
      });
    }
    const plainFile = path.join(dir, "plain.bin");

    // ---- 1. throughput ---------------------------------------------------------------------------
    type Variant = "ota" | "get" | "getWrite" | "otaMemKv";
    const variants: Variant[] = ["ota", "get", "getWrite", "otaMemKv"];
    const speed = new Map<string, number[]>(); // `${variant}:${size}` → MB/s
    const paired = new Map<string, number[]>(); // `${size}:vsGet|vsWrite` → OTA / baseline within a repetition
    const split = new Map<string, number[]>(); // `${variant}:${size}:${kv|write|end}` → share of the run
    const push = (m: Map<string, number[]>, k: string, v: number): void => { m.set(k, [...(m.get(k) ?? []), v]); };
    const runVariant = async (v: Variant, size: number): Promise<number> => {
      const t = targets.get(size)!;
      if (v === "ota" || v === "otaMemKv") {
        const spent: Spent = { kv: 0n, write: 0n, end: 0n };
        const ns = await otaOnce(t, v === "ota" ? "file" : "memory", spent);
        for (const k of ["kv", "write", "end"] as const) push(split, `${v}:${size}:${k}`, Number(spent[k]) / Number(ns));
        return size / MB / (Number(ns) / 1e9);
      }
      const r = await getOnce(t.url, ca, v === "getWrite" ? plainFile : undefined);
      if (r.digest !== t.digest || (v === "getWrite" && r.again !== t.digest)) throw new Error(`bench: ${v} got the wrong bytes`);
      return size / MB / (Number(r.ns) / 1e9);
    };
    // Warm-up: TLS session code paths, the native module, the page cache of every file.
    for (const size of SIZES) for (const v of variants) await runVariant(v, size);
    for (let rep = 0; rep < REPS; rep++) {
      for (const size of SIZES) {
        const order = variants.map((_, i) => variants[(i + rep) % variants.length]!);
        const got = new Map<Variant, number>();
        for (const v of order) got.set(v, await runVariant(v, size));
        for (const [v, s] of got) push(speed, `${v}:${size}`, s);
        push(paired, `${size}:vsGet`, got.get("ota")! / got.get("get")!);
        push(paired, `${size}:vsWrite`, got.get("ota")! / got.get("getWrite")!);
      }
    }
    // The bytes in the slot must be the image, or the numbers mean nothing.
    {
      const t = targets.get(8 * MB)!;
      const fd = fs.openSync(t.flashPath, "r");
      const inSlot = Buffer.alloc(8 * MB);
      fs.readSync(fd, inSlot, 0, inSlot.length, 0x50000);
      fs.closeSync(fd);
      if (createHash("sha256").update(inSlot).digest("hex") !== t.digest) throw new Error("bench: ota_0 does not hold the 8 MB image");
    }

    // The cost of one FileKvStore.set of a record like the controller's (what it does at every sector).
    const kvDir = fs.mkdtempSync(path.join(dir, "kv-"));
    const kv = new FileKvStore(path.join(kvDir, "nvs.json"));
    const setMs: number[] = [];
    for (let i = 0; i < 200; i++) {
      const rec = JSON.stringify({ state: "Downloading", from: "1.0.0", to: VERSION, url: targets.get(8 * MB)!.url, etag: '"0123456789abcdef0123456789abcdef"', durable: i * SECTOR, total: 8 * MB, attempt: 1 });
      const t0 = process.hrtime.bigint();
      kv.set("otap", String(i * SECTOR)); // what the controller writes per sector (OTA_PROGRESS_KEY)
      void rec;
      setMs.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const kvSetUs = median(setMs) * 1000;

    // ---- 2. peak RSS ------------------------------------------------------------------------------
    // One child per run, sizes interleaved; per size the run with the median maxRSS is reported.
    // Runs with the device process's flags (DEVICE_NODE_FLAGS, what `npm run cloud -- device` starts), and
    // the same with Node's default flags as a diagnostic.
    const rssRuns = new Map<string, ChildResult[]>(); // `${size}` or `${size}:young`
    for (let i = 0; i < RSS_RUNS; i++) {
      for (const size of [1 * MB, 8 * MB]) {
        rssRuns.set(`${size}`, [...(rssRuns.get(`${size}`) ?? []), await runChild(targets.get(size)!, DEVICE_NODE_FLAGS)]);
        rssRuns.set(`${size}:young`, [...(rssRuns.get(`${size}:young`) ?? []), await runChild(targets.get(size)!, [])]);
      }
    }
    const rss = new Map<string, ChildResult>();
    for (const [key, runs] of rssRuns) rss.set(key, [...runs].sort((a, b) => a.maxRssKiB - b.maxRssKiB)[runs.length >> 1]!);

    // ---- 3. desired → first byte requested -----------------------------------------------------
    const fbRequests = cloud.blobs.requests;
    let onRequest: ((p: string) => void) | undefined;
    // Bench-only hook: the blob server appends a record to `requests` as soon as it has read a request's
    // headers; wrapping push() stops the clock there without polling.
    const origPush = fbRequests.push.bind(fbRequests);
    fbRequests.push = (...items) => { for (const it of items) onRequest?.(it.path); return origPush(...items); };
    const fbCreds = cloud.credentials("bench-fb");
    const fbDevice = SimDevice.start({
      id: "bench-fb", cloud: "aws", host: fbCreds.host, port: fbCreds.port, ca: fbCreds.ca, cert: fbCreds.cert, key: fbCreds.key,
      dataDir: path.join(dir, "devices", "bench-fb"), log: silent,
      firmware: { baseUrl: cloud.blobs.baseUrl("bench-fb"), ca }, ota: { retry: { initialMs: 10, maxMs: 10, maxAttempts: 1 } },
    });
    const firstByteMs: number[] = [];
    try {
      await fbDevice.waitFor((s) => s.connected && getPath(s.reported, ["config", "firmware_version"]) === "1.0.0", 30_000, "bench-fb reported 1.0.0");
      await sleep(200);
      for (let i = 0; i < FIRST_BYTE_RUNS; i++) {
        const version = `2.0.${i + 1}`;
        const want = `bench-fb/${awsBlobName(version)}`;
        const seen = new Promise<bigint>((resolve) => { onRequest = (p) => { if (p === want) resolve(process.hrtime.bigint()); }; });
        const t0 = process.hrtime.bigint();
        await cloud.shadows.updateDesired("bench-fb", { config: { firmware_version: version } });
        const t1 = await Promise.race([seen, sleep(10_000).then(() => undefined)]);
        if (t1 === undefined) throw new Error(`bench: no request for ${want} within 10 s`);
        firstByteMs.push(Number(t1 - t0) / 1e6);
        const end = Date.now() + 10_000;
        while (!(fbDevice.ota.state === "Failed" && fbDevice.ota.record.to === version)) {
          if (Date.now() > end) throw new Error(`bench: bench-fb did not settle after ${version} (${fbDevice.ota.state})`);
          await sleep(10);
        }
        // Paced: the shadow service allows 20 requests per second per shadow (AWS's limit, 429 beyond), and
        // each run is an update plus the device's reports.
        await sleep(500);
      }
    } finally {
      onRequest = undefined;
      await fbDevice.close();
    }

    // ---- 4. bytes downloaded after a power cut --------------------------------------------------
    const resumeImage = buildImage({ version: "1.1.0", projectName: PROJECT, size: 1 * MB, seed: 5 });
    cloud.blobs.publish("bench-resume", awsBlobName("1.1.0"), resumeImage);
    const resumeExtra: number[] = [];
    for (const [i, fraction] of [0.25, 0.5, 0.75].entries()) {
      const id = `bench-pc-${i + 1}`;
      const c = cloud.credentials(id);
      const d = SimDevice.start({
        id, cloud: "aws", host: c.host, port: c.port, ca: c.ca, cert: c.cert, key: c.key,
        dataDir: path.join(dir, "devices", id), log: silent, powerOffMs: 50,
        firmware: { baseUrl: cloud.blobs.baseUrl("bench-resume"), ca },
      });
      try {
        await d.waitFor((s) => s.connected, 30_000, `${id} connected`);
        d.powerCutAtByte(Math.floor(resumeImage.length * fraction), i + 2);
        await cloud.shadows.updateDesired(id, { config: { firmware_version: "1.1.0" } });
        const end = Date.now() + 60_000;
        while (!(d.runningVersion === "1.1.0" && d.ota.state === "Valid")) {
          if (Date.now() > end) throw new Error(`bench: ${id} did not reach 1.1.0 Valid (${d.ota.state}, runs ${d.runningVersion})`);
          await sleep(50);
        }
        if (!d.restarts.includes("power cut")) throw new Error(`bench: ${id} never lost power`);
        resumeExtra.push(d.bytesDownloaded - resumeImage.length);
      } finally {
        await d.close();
      }
    }

    // ---- report ------------------------------------------------------------------------------------
    const med = (v: Variant, size: number): number => median(speed.get(`${v}:${size}`)!);
    const f1 = (x: number): string => x.toFixed(1);
    const f2 = (x: number): string => x.toFixed(2);
    const col = (s: string): string => s.padStart(9);
    say(`bench ota-e2e: loopback, ${REPS} interleaved repetitions (+1 warm-up) per size, medians; MB = 10^6 bytes; node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}`);
    say("");
    say(`throughput, MB/s                                        ${SIZES.map((s) => col(`${s / MB} MB`)).join("")}`);
    say(`  OTA: blob server → HttpsByteSource → controller → slot ${SIZES.map((s) => col(f1(med("ota", s)))).join("")}`);
    say(`  (a) HTTPS GET + SHA-256                               ${SIZES.map((s) => col(f1(med("get", s)))).join("")}`);
    say(`  (b) HTTPS GET + SHA-256 + file write + re-hash        ${SIZES.map((s) => col(f1(med("getWrite", s)))).join("")}`);
    say(`  diagnostic, not the product: OTA, record in memory    ${SIZES.map((s) => col(f1(med("otaMemKv", s)))).join("")}`);
    say(`  OTA / (b), median of paired ratios  (target ≥ 0.90)   ${SIZES.map((s) => col(f2(median(paired.get(`${s}:vsWrite`)!)))).join("")}`);
    say(`  OTA / (a), median of paired ratios                    ${SIZES.map((s) => col(f2(median(paired.get(`${s}:vsGet`)!)))).join("")}`);
    const sectors8 = Math.ceil(8 * MB / SECTOR);
    const pct = (v: Variant, s: number, k: string): string => `${(median(split.get(`${v}:${s}:${k}`)!) * 100).toFixed(0)} %`;
    const rest = (v: Variant, s: number): string => `${((1 - ["kv", "write", "end"].reduce((a, k) => a + median(split.get(`${v}:${s}:${k}`)!), 0)) * 100).toFixed(0)} %`;
    say(`  where the OTA run's time goes (medians of shares):`);
    say(`    record persisted (FileKvStore.set at every sector)  ${SIZES.map((s) => col(pct("ota", s, "kv"))).join("")}`);
    say(`    slot write + accept (N-API, erase, program, hash)   ${SIZES.map((s) => col(pct("ota", s, "write"))).join("")}`);
    say(`    slot end + setBootPartition (read-back verify)      ${SIZES.map((s) => col(pct("ota", s, "end"))).join("")}`);
    say(`    the rest: TLS download, reads, controller           ${SIZES.map((s) => col(rest("ota", s))).join("")}`);
    say(`  the same for the diagnostic run, record in memory:`);
    say(`    slot write + accept                                 ${SIZES.map((s) => col(pct("otaMemKv", s, "write"))).join("")}`);
    say(`    slot end + setBootPartition                         ${SIZES.map((s) => col(pct("otaMemKv", s, "end"))).join("")}`);
    say(`    the rest: TLS download, reads, controller           ${SIZES.map((s) => col(rest("otaMemKv", s))).join("")}`);
    say(`  where the time goes: the controller persists its durable offset at every sector (${sectors8} sets for 8 MB); one FileKvStore.set`);
    say(`    (one log entry, ${kv.writeMode === "mapped" ? "stored into the mapped file" : "written with pwrite"}, no fsync) takes ${kvSetUs.toFixed(1)} µs on its own (median of 200 outside a download)`);
    const r1 = rss.get(`${1 * MB}`)!;
    const r8 = rss.get(`${8 * MB}`)!;
    const y1 = rss.get(`${1 * MB}:young`)!;
    const y8 = rss.get(`${8 * MB}:young`)!;
    const mbOf = (kib: number): number => (kib * 1024) / MB;
    const rssGrowthMB = mbOf(r8.maxRssKiB - r1.maxRssKiB);
    const anonGrowthMB = mbOf(r8.anonPeakKiB - r1.anonPeakKiB);
    say("");
    say(`peak RSS of the device process (node ${DEVICE_NODE_FLAGS.join(" ")}, as the CLI starts it; a child per run, ${RSS_RUNS} runs per size, the median run)`);
    say(`  maxRSS                                                  1 MB: ${f1(mbOf(r1.maxRssKiB))} MB   8 MB: ${f1(mbOf(r8.maxRssKiB))} MB   growth ${f2(rssGrowthMB)} MB (target < 2)`);
    say(`  anonymous memory (RssAnon peak, sampled every 10 ms)    1 MB: ${f1(mbOf(r1.anonPeakKiB))} MB   8 MB: ${f1(mbOf(r8.anonPeakKiB))} MB   growth ${f2(anonGrowthMB)} MB`);
    say(`  file-backed (RssFile peak: mapped flash, binaries)      1 MB: ${f1(mbOf(r1.filePeakKiB))} MB   8 MB: ${f1(mbOf(r8.filePeakKiB))} MB   growth ${f2(mbOf(r8.filePeakKiB - r1.filePeakKiB))} MB`);
    say(`  JS heap used / external / array buffers, peaks (MB)     1 MB: ${f1(r1.peak.heapUsed / MB)} / ${f1(r1.peak.external / MB)} / ${f1(r1.peak.arrayBuffers / MB)}   8 MB: ${f1(r8.peak.heapUsed / MB)} / ${f1(r8.peak.external / MB)} / ${f1(r8.peak.arrayBuffers / MB)}`);
    say(`  array buffers still referenced after the run and a full GC (MB)  1 MB: ${f1(r1.arrayBuffersAfterGc / MB)}   8 MB: ${f1(r8.arrayBuffersAfterGc / MB)}`);
    say(`  (the host flash keeps one 256 KiB window of its MAP_SHARED mapping, or the page-cache folio holding it;`);
    say(`   array buffers the download allocated are garbage a young-generation GC has not collected yet)`);
    const youngGrowthMB = mbOf(y8.maxRssKiB - y1.maxRssKiB);
    say(`  diagnostic, not how the device process runs: Node's default flags (16 MB semi-spaces)`);
    say(`    maxRSS                                                1 MB: ${f1(mbOf(y1.maxRssKiB))} MB   8 MB: ${f1(mbOf(y8.maxRssKiB))} MB   growth ${f2(youngGrowthMB)} MB`);
    say(`    RssAnon peak / array buffers peak (MB)                1 MB: ${f1(mbOf(y1.anonPeakKiB))} / ${f1(y1.peak.arrayBuffers / MB)}   8 MB: ${f1(mbOf(y8.anonPeakKiB))} / ${f1(y8.peak.arrayBuffers / MB)}   run ${f1(y1.ms)} / ${f1(y8.ms)} ms (device flags: ${f1(r1.ms)} / ${f1(r8.ms)} ms)`);
    const fbMedian = median(firstByteMs);
    say("");
    say(`desired → first byte requested (local cloud on aedes, ${firstByteMs.length} runs)  median ${f1(fbMedian)} ms, min ${f1(Math.min(...firstByteMs))}, max ${f1(Math.max(...firstByteMs))}`);
    const resumeMax = Math.max(...resumeExtra);
    say(`bytes downloaded beyond the 1 MB image after a power cut at 25/50/75 %  ${resumeExtra.join(" / ")} (max ${resumeMax}; target ≤ ${SECTOR})`);
    const misses: string[] = [];
    const otaVsWriteRatio = median(paired.get(`${8 * MB}:vsWrite`)!);
    if (otaVsWriteRatio < 0.9) misses.push(`OTA/(b) at 8 MB ${f2(otaVsWriteRatio)} < 0.90`);
    if (rssGrowthMB >= 2) misses.push(`RSS growth ${f2(rssGrowthMB)} MB ≥ 2`);
    if (resumeMax > SECTOR) misses.push(`resume extra ${resumeMax} > ${SECTOR}`);
    say(`targets missed: ${misses.length === 0 ? "none" : misses.join("; ")}   (bench took ${((Date.now() - started) / 1000).toFixed(0)} s)`);
    const json = {
      otaVsWriteRatio: Number(f2(otaVsWriteRatio)),
      otaVsGetRatio: Number(f2(median(paired.get(`${8 * MB}:vsGet`)!))),
      rssGrowthMB: Number(f2(rssGrowthMB)),
      rssAnonGrowthMB: Number(f2(anonGrowthMB)),
      firstByteMedianMs: Number(f1(fbMedian)),
      resumeExtraBytes: resumeMax,
      otaMBps: Object.fromEntries(SIZES.map((s) => [`${s / MB}MB`, Number(f1(med("ota", s)))])),
      getMBps: Object.fromEntries(SIZES.map((s) => [`${s / MB}MB`, Number(f1(med("get", s)))])),
      getWriteMBps: Object.fromEntries(SIZES.map((s) => [`${s / MB}MB`, Number(f1(med("getWrite", s)))])),
      otaMemoryKvMBps: Object.fromEntries(SIZES.map((s) => [`${s / MB}MB`, Number(f1(med("otaMemKv", s)))])),
      kvSetUs: Number(kvSetUs.toFixed(1)),
      rssFileGrowthMB: Number(f2(mbOf(r8.filePeakKiB - r1.filePeakKiB))),
      rssGrowthDefaultFlagsMB: Number(f2(youngGrowthMB)),
      kvShareOfOta8MB: Number(median(split.get(`ota:${8 * MB}:kv`)!).toFixed(2)),
      reps: REPS,
      targetsMissed: misses,
    };
    console.log(JSON.stringify(json));
    return 0;
  } finally {
    await cloud.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then((code) => { process.exitCode = code; }, (e: unknown) => { console.error(e); process.exitCode = 1; });
