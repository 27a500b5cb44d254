/**
 * FileKvStore, the simulator's NVS: persistence across instances (a new store over the same file is what a
 * reboot or power cut looks like), the NVS limits with typed errors, the log (one appended entry per write,
 * a torn or damaged tail ignored, entries that do not parse refused, compaction), migration from the old
 * whole-JSON format, refusal of a damaged file without touching it, a failed write that loses nothing, and
 * a process killed with SIGKILL while it writes.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { crc32 } from "node:zlib";

import { isShadowOtaError } from "../../src/core/errors";
import { KV_VALUE_MAX_BYTES } from "../../src/core/shadow-sync";
import { FileKvStore, KV_CODES, KV_LOG_MAGIC, type KvWriteAt } from "../../src/node/file-kv";
import { tempDir } from "../sim/broker-fixtures";

const dir = tempDir("file-kv");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => path.join(dir, `kv-${n++}`, "state.json");

function codeOf(fn: () => void): string | undefined {
  try {
    fn();
  } catch (e) {
    return isShadowOtaError(e) ? e.code : `untyped ${String(e)}`;
  }
  return undefined;
}

test("values survive a reopen; delete too; a missing file is an empty store", () => {
  const file = fresh();
  const a = new FileKvStore(file);
  expect(a.get("rep")).toBeUndefined();
  expect(fs.existsSync(file)).toBe(false);
  a.set("rep", '{"firmware_version":"1.0.0"}');
  a.set("ver", "7");
  a.set("unicode", "é✓😀");
  a.delete("ver");
  a.delete("never-there");
  const b = new FileKvStore(file);
  expect(b.get("rep")).toBe('{"firmware_version":"1.0.0"}');
  expect(b.get("ver")).toBeUndefined();
  expect(b.get("unicode")).toBe("é✓😀");
  expect(b.keys().sort()).toEqual(["rep", "unicode"]);
  expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  expect(fs.existsSync(`${file}.tmp`)).toBe(false);
});

test("keys: 1..15 UTF-8 bytes (NVS), else KV_KEY_INVALID", () => {
  const kv = new FileKvStore(fresh());
  kv.set("k".repeat(15), "ok");
  expect(codeOf(() => kv.set("k".repeat(16), "x"))).toBe(KV_CODES.KV_KEY_INVALID);
  expect(codeOf(() => kv.set("", "x"))).toBe(KV_CODES.KV_KEY_INVALID);
  expect(codeOf(() => kv.set("ééééééééé", "x"))).toBe(KV_CODES.KV_KEY_INVALID); // 9 characters, 18 bytes
  expect(codeOf(() => kv.delete("k".repeat(16)))).toBe(KV_CODES.KV_KEY_INVALID);
  expect(kv.keys()).toEqual(["k".repeat(15)]);
});

test("values: at most KV_VALUE_MAX_BYTES UTF-8 bytes, else SYNC_PAYLOAD_TOO_LARGE with the sizes; the old value stays", () => {
  const file = fresh();
  const kv = new FileKvStore(file);
  kv.set("rep", "x".repeat(KV_VALUE_MAX_BYTES));
  let err: unknown;
  try {
    kv.set("rep", "é".repeat(2000)); // 2000 characters, 4000 bytes: one more than NVS holds with its NUL
  } catch (e) {
    err = e;
  }
  expect(isShadowOtaError(err, "SYNC_PAYLOAD_TOO_LARGE")).toBe(true);
  expect((err as { detail?: unknown }).detail).toEqual({ key: "rep", size: 4000, max: 3999 });
  expect(new FileKvStore(file).get("rep")).toBe("x".repeat(KV_VALUE_MAX_BYTES));
  expect(() => kv.set("rep", 5 as unknown as string)).toThrow(TypeError);
});

test.each([
  ["not JSON", "{oops"],
  ["an array", "[]"],
  ["a non-string value", '{"ver":7}'],
  ["null", "null"],
])("a file holding %s is refused with KV_FILE_INVALID and left as it was", (_what, content) => {
  const file = fresh();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
  expect(codeOf(() => new FileKvStore(file))).toBe(KV_CODES.KV_FILE_INVALID);
  expect(fs.readFileSync(file, "utf8")).toBe(content);
});

test("a failed rewrite (first write, compaction) throws KV_WRITE_FAILED and keeps the previous contents in memory and on disk", () => {
  const file = fresh();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify({ rep: "old" })); // the old format: the first write is a rewrite
  const kv = new FileKvStore(file);
  fs.mkdirSync(`${file}.tmp`); // the temporary file cannot be created (works for root too)
  expect(codeOf(() => kv.set("rep", "new"))).toBe(KV_CODES.KV_WRITE_FAILED);
  expect(codeOf(() => kv.delete("rep"))).toBe(KV_CODES.KV_WRITE_FAILED);
  expect(kv.get("rep")).toBe("old");
  expect(new FileKvStore(file).get("rep")).toBe("old");
  fs.rmdirSync(`${file}.tmp`);
  kv.set("rep", "new");
  expect(new FileKvStore(file).get("rep")).toBe("new");
});

test("a failed append throws KV_WRITE_FAILED, keeps the old value, and the next write rewrites the file", () => {
  const file = fresh();
  let failing = false;
  const writeAt: KvWriteAt = (fd, data, pos) => {
    if (!failing) return fs.writeSync(fd, data, 0, data.length, pos);
    fs.writeSync(fd, data, 0, data.length >> 1, pos); // half the entry reaches the file, then ENOSPC
    throw Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" });
  };
  const kv = new FileKvStore(file, { writeAt });
  kv.set("rep", "old");
  kv.set("ver", "1");
  failing = true;
  let err: unknown;
  try { kv.set("rep", "new"); } catch (e) { err = e; }
  expect(isShadowOtaError(err, KV_CODES.KV_WRITE_FAILED)).toBe(true);
  expect((err as { cause?: { code?: string } }).cause?.code).toBe("ENOSPC");
  expect(kv.get("rep")).toBe("old");
  // The process dies now: the half entry is a torn tail, the old value stands.
  const after = new FileKvStore(file);
  expect(after.get("rep")).toBe("old");
  expect(after.droppedBytes).toBeGreaterThan(0);
  // Or it lives on: its next write is a rewrite (no entry is ever appended behind a torn one).
  failing = false;
  const ino = fs.statSync(file).ino;
  kv.set("ver", "2");
  expect(fs.statSync(file).ino).not.toBe(ino);
  const again = new FileKvStore(file);
  expect(again.droppedBytes).toBe(0);
  expect([again.get("rep"), again.get("ver")]).toEqual(["old", "2"]);
});

test("a short write is a failed append", () => {
  const file = fresh();
  let short = false;
  const kv = new FileKvStore(file, { writeAt: (fd, data, pos) => fs.writeSync(fd, data, 0, short ? data.length - 1 : data.length, pos) });
  kv.set("a", "1");
  kv.set("a", "2");
  short = true;
  expect(codeOf(() => kv.set("a", "3"))).toBe(KV_CODES.KV_WRITE_FAILED);
  expect(kv.get("a")).toBe("2");
  expect(new FileKvStore(file).get("a")).toBe("2");
});

test("an interrupted write (a stale temporary file) leaves the committed value readable", () => {
  const file = fresh();
  new FileKvStore(file).set("ver", "1");
  fs.writeFileSync(`${file}.tmp`, '{"ver":"2"'); // a crash before the rename
  const kv = new FileKvStore(file);
  expect(kv.get("ver")).toBe("1");
  kv.set("ver", "3");
  expect(new FileKvStore(file).get("ver")).toBe("3");
});

test("setting the same value again writes nothing", () => {
  const file = fresh();
  const kv = new FileKvStore(file);
  kv.set("ver", "1");
  const before = fs.readFileSync(file);
  kv.set("ver", "1");
  kv.delete("absent");
  expect(fs.readFileSync(file).equals(before)).toBe(true);
});

// ---- the log ------------------------------------------------------------------------------------------

/** Every entry's [start, end) in a log file, in order (up to the free space). */
function entries(file: string): Array<[number, number]> {
  const b = fs.readFileSync(file);
  const out: Array<[number, number]> = [];
  for (let pos = KV_LOG_MAGIC.length; pos + 8 <= b.length && b.readUInt32LE(pos + 4) !== 0;) {
    const end = pos + 8 + b.readUInt32LE(pos + 4);
    out.push([pos, end]);
    pos = end;
  }
  return out;
}

const MODES = [["mapped", {}], ["pwrite", { mapped: false }]] as const;

test("the native module is built, so entries go through a mapping of the file", () => {
  const kv = new FileKvStore(fresh());
  expect(kv.writeMode).toBe("mapped");
  expect(new FileKvStore(fresh(), { mapped: false }).writeMode).toBe("pwrite");
  expect(new FileKvStore(fresh(), { writeAt: () => 0 }).writeMode).toBe("pwrite");
});

test.each(MODES)("%s: a write is one entry in the free space of the same file: no new file, no growth, readable at once", (_mode, options) => {
  const file = fresh();
  const kv = new FileKvStore(file, options);
  kv.set("ota", '{"state":"Idle"}'); // creates the file (a rewrite)
  const { ino, size } = fs.statSync(file);
  expect(size).toBe(1024 * 1024); // the default capacity, zero-filled after the log
  const before = kv.logSize;
  const value = '{"state":"Downloading","durable":4096}';
  kv.set("ota", value);
  expect(fs.statSync(file).ino).toBe(ino); // no temporary file and rename per write
  expect(fs.statSync(file).size).toBe(size);
  // crc(4) len(4) op(1) keyLen(1) "ota"(3) value
  expect(kv.logSize).toBe(before + 8 + 2 + 3 + value.length);
  const bytes = fs.readFileSync(file); // another reader sees the entry as soon as set() returned
  expect(bytes.subarray(before + 10, before + 13).toString()).toBe("ota");
  expect(bytes.subarray(before + 13, kv.logSize).toString()).toBe(value);
  expect(bytes.subarray(kv.logSize).every((b) => b === 0)).toBe(true);
  kv.delete("ota");
  expect(kv.logSize).toBe(before + 8 + 2 + 3 + value.length + 8 + 2 + 3);
  expect(bytes.subarray(0, KV_LOG_MAGIC.length).equals(KV_LOG_MAGIC)).toBe(true);
  expect(new FileKvStore(file).get("ota")).toBeUndefined();
  kv.close();
  kv.close(); // safe twice
  kv.set("ota", "again"); // maps (opens) again
  expect(new FileKvStore(file).get("ota")).toBe("again");
  expect(fs.statSync(file).ino).toBe(ino);
});

test.each(MODES)("%s: a power cut is a new store over the same file: after every write it reads what was written last", (_mode, options) => {
  const file = fresh();
  let kv = new FileKvStore(file, { ...options, compactBytes: 4096 });
  const model = new Map<string, string>();
  for (let i = 0; i < 300; i++) {
    const key = `k${i % 4}`;
    if (i % 7 === 6) { kv.delete(key); model.delete(key); } else { kv.set(key, `v${i}é`.repeat(1 + (i % 5))); model.set(key, `v${i}é`.repeat(1 + (i % 5))); }
    if (i % 3 === 0) kv = new FileKvStore(file, { ...options, compactBytes: 4096 }); // the old one is dropped without close(), as at a cut
    const reopened = new FileKvStore(file);
    expect(new Map(reopened.keys().map((k) => [k, reopened.get(k)!]))).toEqual(model);
    expect(reopened.droppedBytes).toBe(0);
  }
});

/** Bytes from `from` to the last non-zero byte before `to`. */
const nonZeroSpan = (b: Buffer, from: number, to: number): number => {
  let end = to;
  while (end > from && b[end - 1] === 0) end--;
  return end - from;
};

test.each(MODES)("%s: a torn last entry (the process killed while writing it, at every byte) is ignored: the previous value stands", (_mode, options) => {
  const file = fresh();
  const kv = new FileKvStore(file, options);
  kv.set("ota", "durable=4096");
  kv.set("other", "x");
  kv.set("ota", "durable=8192");
  kv.close();
  const whole = fs.readFileSync(file);
  const [start, end] = entries(file).at(-1)!;
  for (let cut = start; cut < end; cut++) {
    const torn = Buffer.from(whole);
    torn.fill(0, cut, end); // only the first bytes of the entry reached the file
    fs.writeFileSync(file, torn);
    const s = new FileKvStore(file, options);
    expect(s.get("ota")).toBe("durable=4096");
    expect(s.get("other")).toBe("x");
    expect(s.droppedBytes).toBe(nonZeroSpan(torn, start, end));
    expect(fs.readFileSync(file).equals(torn)).toBe(true); // opening writes nothing
    s.set("ota", "durable=12288"); // the first write after a dropped tail rewrites the file
    s.close();
    const t = new FileKvStore(file);
    expect([t.get("ota"), t.get("other"), t.droppedBytes]).toEqual(["durable=12288", "x", 0]);
  }
});

test("a CRC mismatch ends the log there: the entry and everything after it are ignored", () => {
  const file = fresh();
  const kv = new FileKvStore(file);
  kv.set("a", "1");
  kv.set("a", "2");
  kv.set("b", "3");
  kv.close();
  const [, [s2, e2], [s3, e3]] = entries(file).slice(-3) as Array<[number, number]>;
  const whole = fs.readFileSync(file);
  // A flipped bit in the value of the last entry.
  const last = Buffer.from(whole);
  last[e3 - 1]! ^= 0x01;
  fs.writeFileSync(file, last);
  let s = new FileKvStore(file);
  expect([s.get("a"), s.get("b"), s.droppedBytes]).toEqual(["2", undefined, e3 - s3]);
  // A flipped bit in the stored CRC of the middle entry: "a" stays 1, and "b" (after it) is not trusted.
  const mid = Buffer.from(whole);
  mid[s2]! ^= 0x80;
  fs.writeFileSync(file, mid);
  s = new FileKvStore(file);
  expect([s.get("a"), s.get("b"), s.droppedBytes]).toEqual(["1", undefined, e3 - s2]);
  // A length that runs past the end of the file is a torn entry too.
  const long = Buffer.from(whole);
  long.writeUInt32LE(4000, s3 + 4); // past the data, into the free space: the CRC does not match
  fs.writeFileSync(file, long);
  expect(new FileKvStore(file).get("b")).toBeUndefined();
  long.writeUInt32LE(long.length, s3 + 4); // past the end of the file
  fs.writeFileSync(file, long);
  expect(new FileKvStore(file).get("b")).toBeUndefined();
  expect(e2).toBe(s3);
});

test("an entry whose CRC matches but which does not parse was not written by the store: KV_FILE_INVALID, file untouched", () => {
  const file = fresh();
  const kv = new FileKvStore(file);
  kv.set("a", "1");
  kv.close();
  const good = fs.readFileSync(file);
  const end = kv.logSize;
  const forge = (payload: Buffer): Buffer => {
    const head = Buffer.alloc(8);
    head.writeUInt32LE(payload.length, 4);
    head.writeUInt32LE(crc32(Buffer.concat([head.subarray(4), payload])), 0);
    const b = Buffer.from(good);
    Buffer.concat([head, payload]).copy(b, end); // the next entry's place
    return b;
  };
  for (const payload of [
    Buffer.from([9, 1, 0x61, 0x31]), // unknown op
    Buffer.from([1, 16, ...Buffer.from("k".repeat(16)), 0x31]), // a 16-byte key
    Buffer.from([1, 1, 0x61, 0xff]), // not UTF-8
    Buffer.from([2, 1, 0x61, 0x31]), // a delete with a value
  ]) {
    const bytes = forge(payload);
    fs.writeFileSync(file, bytes);
    expect(codeOf(() => new FileKvStore(file))).toBe(KV_CODES.KV_FILE_INVALID);
    expect(fs.readFileSync(file).equals(bytes)).toBe(true);
  }
});

test("a compaction writes and flushes only the live values: the free space is a hole until entries are stored", () => {
  const file = fresh();
  const kv = new FileKvStore(file, { mapped: false });
  kv.set("ota", "x".repeat(100)); // creates the file: a compaction
  const st = fs.statSync(file);
  expect(st.size).toBe(1024 * 1024);
  expect(st.blocks * 512).toBeLessThan(64 * 1024); // ext4, tmpfs, btrfs, xfs: a hole reads as zeros
  expect(new FileKvStore(file).get("ota")).toBe("x".repeat(100));
  const mapped = new FileKvStore(file);
  mapped.set("ota", "y"); // mapFile reserves the blocks (no SIGBUS on a full disk), then stores
  expect(fs.statSync(file).blocks * 512).toBeGreaterThanOrEqual(1024 * 1024);
  expect(new FileKvStore(file).get("ota")).toBe("y");
});

test("compaction: past the threshold the live values are rewritten atomically; the file stays bounded", () => {
  const file = fresh();
  const kv = new FileKvStore(file, { compactBytes: 4096 });
  kv.set("cfg", "c".repeat(100));
  let renames = 0;
  let ino = fs.statSync(file).ino;
  let maxSize = 0;
  for (let i = 0; i < 500; i++) {
    kv.set("ota", JSON.stringify({ state: "Downloading", durable: i * 4096 }));
    const st = fs.statSync(file);
    if (st.ino !== ino) { renames++; ino = st.ino; }
    maxSize = Math.max(maxSize, st.size);
  }
  // capacity max(4096, 2 × live + one largest entry) = 8 KiB: about 150 of these entries between compactions
  expect(renames).toBeGreaterThanOrEqual(2);
  expect(renames).toBeLessThan(20);
  expect(maxSize).toBeLessThanOrEqual(8192);
  expect(fs.existsSync(`${file}.tmp`)).toBe(false);
  const s = new FileKvStore(file);
  expect(s.get("ota")).toBe(JSON.stringify({ state: "Downloading", durable: 499 * 4096 }));
  expect(s.get("cfg")).toBe("c".repeat(100));
  // Live values larger than the threshold: compaction leaves room (twice the live size), not a rewrite per write.
  const big = new FileKvStore(fresh(), { compactBytes: 4096 });
  for (let i = 0; i < 3; i++) big.set(`big${i}`, "b".repeat(3000));
  const bigFile = big.file;
  let bigRenames = 0;
  let bigIno = fs.statSync(bigFile).ino;
  for (let i = 0; i < 20; i++) {
    big.set("small", String(i));
    if (fs.statSync(bigFile).ino !== bigIno) { bigRenames++; bigIno = fs.statSync(bigFile).ino; }
  }
  expect(bigRenames).toBeLessThanOrEqual(1);
});

test("migration: a file in the old format (one JSON object) is read, left as it is until the first write, then rewritten as a log", () => {
  const file = fresh();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const old = JSON.stringify({ rep: '{"firmware_version":"1.0.0"}', ota: '{"state":"Valid"}', unicode: "é✓😀" }, null, 1) + "\n";
  fs.writeFileSync(file, old);
  const kv = new FileKvStore(file);
  expect(kv.openedFormat).toBe("json");
  expect(kv.get("unicode")).toBe("é✓😀");
  expect(fs.readFileSync(file, "utf8")).toBe(old); // opening writes nothing
  kv.set("ver", "7");
  const bytes = fs.readFileSync(file);
  expect(bytes.subarray(0, KV_LOG_MAGIC.length).equals(KV_LOG_MAGIC)).toBe(true);
  const s = new FileKvStore(file);
  expect(s.openedFormat).toBe("log");
  expect(Object.fromEntries(s.keys().map((k) => [k, s.get(k)]))).toEqual({ rep: '{"firmware_version":"1.0.0"}', ota: '{"state":"Valid"}', unicode: "é✓😀", ver: "7" });
  const { ino } = fs.statSync(file);
  const at = kv.logSize;
  kv.set("ver", "8"); // and from then on, entries in the free space
  expect(fs.statSync(file).ino).toBe(ino);
  expect(kv.logSize).toBeGreaterThan(at);
  expect(new FileKvStore(file).get("ver")).toBe("8");
});

test("migration refuses an old file with a key or value beyond the NVS limits (KV_FILE_INVALID, untouched)", () => {
  for (const content of [JSON.stringify({ ["k".repeat(16)]: "x" }), JSON.stringify({ k: "x".repeat(KV_VALUE_MAX_BYTES + 1) }), JSON.stringify({ "": "x" })]) {
    const file = fresh();
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content);
    expect(codeOf(() => new FileKvStore(file))).toBe(KV_CODES.KV_FILE_INVALID);
    expect(fs.readFileSync(file, "utf8")).toBe(content);
  }
});

test("the largest value and key round-trip through the log", () => {
  const file = fresh();
  const kv = new FileKvStore(file);
  const value = "é".repeat((KV_VALUE_MAX_BYTES - 1) / 2) + "x"; // 3999 bytes
  kv.set("k".repeat(15), value);
  kv.set("k".repeat(15), value + ""); // same value: nothing written
  kv.set("z", value);
  expect(new FileKvStore(file).get("k".repeat(15))).toBe(value);
  expect(new FileKvStore(file).get("z")).toBe(value);
});

test("killed with SIGKILL while writing, the process leaves a log that reads as one of the values it wrote", async () => {
  const file = fresh();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const script = `
    const { FileKvStore } = require(${JSON.stringify(path.resolve(__dirname, "../../src/node/file-kv.ts"))});
    const kv = new FileKvStore(${JSON.stringify(file)}, { compactBytes: 8192 });
    for (let i = 1; ; i++) { kv.set("ota", JSON.stringify({ durable: i * 4096, pad: "p".repeat(i % 300) })); if (i === 50) process.stdout.write("go\\n"); }
  `;
  const child = spawn(process.execPath, ["--require", require.resolve("tsx/cjs"), "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
  await new Promise((r) => setTimeout(r, 150));
  child.kill("SIGKILL");
  await new Promise((r) => child.once("exit", r));
  const kv = new FileKvStore(file);
  const rec = JSON.parse(kv.get("ota")!) as { durable: number; pad: string };
  expect(rec.durable).toBeGreaterThanOrEqual(50 * 4096);
  expect(rec.pad).toBe("p".repeat((rec.durable / 4096) % 300));
}, 20_000);
