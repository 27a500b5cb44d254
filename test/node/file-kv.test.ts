/**
 * FileKvStore: persistence across instances (a reopen is what a reboot looks like), the NVS limits with
 * typed errors, refusal of a damaged file without touching it, and a failed write that loses nothing.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { isShadowOtaError } from "../../src/core/errors";
import { KV_VALUE_MAX_BYTES } from "../../src/core/shadow-sync";
import { FileKvStore, KV_CODES } from "../../src/node/file-kv";
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

test("a failed write throws KV_WRITE_FAILED and keeps the previous contents in memory and on disk", () => {
  const file = fresh();
  const kv = new FileKvStore(file);
  kv.set("rep", "old");
  fs.mkdirSync(`${file}.tmp`); // the temporary file cannot be created (works for root too)
  expect(codeOf(() => kv.set("rep", "new"))).toBe(KV_CODES.KV_WRITE_FAILED);
  expect(codeOf(() => kv.delete("rep"))).toBe(KV_CODES.KV_WRITE_FAILED);
  expect(kv.get("rep")).toBe("old");
  expect(new FileKvStore(file).get("rep")).toBe("old");
  fs.rmdirSync(`${file}.tmp`);
  kv.set("rep", "new");
  expect(new FileKvStore(file).get("rep")).toBe("new");
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
  const before = fs.statSync(file).ino;
  kv.set("ver", "1");
  expect(fs.statSync(file).ino).toBe(before); // each write renames a new inode into place
  kv.set("ver", "2");
  expect(fs.statSync(file).ino).not.toBe(before);
});
