/**
 * The N-API build's host-side costs: the C core hashes through Node's OpenSSL (the mbedTLS API shim in
 * src/native/napi/sha256-openssl) and gets the same answers; mapFile, which the simulator's NVS log stores
 * its entries through, shares every store with the file; and the host flash does not keep the pages it
 * touched — a process that installs a multi-megabyte image keeps one window of the mapped flash file
 * resident, not the image (Linux: read from /proc/self/smaps).
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { isShadowOtaError } from "../../src/core/errors";
import { OTA_CODES } from "../../src/native/ota-errors";
import { loadNativeOtaModule } from "../../src/native/ota-slot";
import { buildImage, makeFlashFile, readPartition, tempDir, type PartitionSpec } from "./fixtures";
import { Device, install } from "./harness";

const dir = tempDir("host-flash-memory");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Two 4 MiB OTA slots. */
const BIG: PartitionSpec[] = [
  { label: "nvs", type: 1, subtype: 2, offset: 0x9000, size: 0x4000 },
  { label: "otadata", type: 1, subtype: 0, offset: 0xd000, size: 0x2000 },
  { label: "phy_init", type: 1, subtype: 1, offset: 0xf000, size: 0x1000 },
  { label: "factory", type: 0, subtype: 0x00, offset: 0x10000, size: 0x10000 },
  { label: "ota_0", type: 0, subtype: 0x10, offset: 0x20000, size: 0x400000 },
  { label: "ota_1", type: 0, subtype: 0x11, offset: 0x420000, size: 0x400000 },
];
const BIG_SIZE = 0x820000;

/** Resident KiB of this process's mappings of `file` (sum over its smaps entries). */
function residentKiB(file: string): number {
  const real = fs.realpathSync(file);
  let total = 0;
  let inFile = false;
  for (const line of fs.readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head !== null) { inFile = head[1] === real; continue; }
    const rss = /^Rss:\s+(\d+) kB$/.exec(line);
    if (inFile && rss !== null) total += Number(rss[1]);
  }
  return total;
}

function bigDevice(name: string): Device {
  const file = makeFlashFile(path.join(dir, name), { factory: buildImage({ version: "1.0.0" }) }, BIG, BIG_SIZE);
  const d = new Device(file);
  d.reboot();
  return d;
}

/** A ~3.6 MB image: segment lengths are multiples of 4, the first holds the descriptor. */
const bigImage = (seed: number): Uint8Array => buildImage({ version: "2.0.0", segments: [1024, 1_200_000, 1_200_000, 1_200_000], seed });

test("the N-API build hashes SHA-256 with the OpenSSL inside Node", () => {
  // Exported by ota_napi.c next to OtaHost: the backend its C core was compiled against.
  expect((loadNativeOtaModule() as unknown as { sha256Backend: string }).sha256Backend).toBe("openssl");
});

test("through the OpenSSL shim, a multi-megabyte image verifies under any chunking, and a wrong appended hash is refused", () => {
  const img = bigImage(3);
  for (const chunks of [[1460], [4096], [1, 63, 4097, 65536], [img.length]]) {
    const d = bigDevice(`sha-${chunks.join("-")}.bin`);
    install(d.slot, img, { chunks });
    expect(d.reboot().partition.label).toBe("ota_0");
    expect(readPartition(d.file, "ota_0", BIG).subarray(0, img.length).equals(img)).toBe(true);
    d.close();
  }
  const bad = Uint8Array.from(img);
  bad[bad.length - 1]! ^= 0x01;
  const d = bigDevice("sha-bad.bin");
  let err: unknown;
  try { install(d.slot, bad, { chunks: [4096] }); } catch (e) { err = e; }
  expect(isShadowOtaError(err, OTA_CODES.OTA_IMAGE_BAD_HASH)).toBe(true);
  d.close();
});

const linux = process.platform === "linux" && fs.existsSync("/proc/self/smaps");
// The host flash holds one 256 KiB window of its mapping at a time; the kernel may map the page-cache folio
// holding it whole (2 MiB on ext4 with large folios), so the bound is the larger of the two, plus a window.
(linux ? test : test.skip)("installing a 3.6 MB image keeps at most one window (or the 2 MiB folio holding it) of the flash mapping resident", () => {
  const d = bigDevice("resident.bin");
  const img = bigImage(4);
  d.slot.begin({});
  let peak = 0;
  for (let off = 0; off < img.length; off += 4096) {
    const desc = d.slot.write(img.subarray(off, Math.min(off + 4096, img.length)));
    if (desc !== undefined) d.slot.accept();
    if (off % (64 * 4096) === 0) peak = Math.max(peak, residentKiB(d.file));
  }
  peak = Math.max(peak, residentKiB(d.file));
  d.slot.end(); // reads the whole image back
  peak = Math.max(peak, residentKiB(d.file));
  d.slot.setBootPartition(); // verifies it again
  peak = Math.max(peak, residentKiB(d.file));
  expect(peak).toBeGreaterThan(0); // the mapping is found
  expect(peak).toBeLessThanOrEqual(2048 + 256); // without the release: the whole image, about 4 MiB
  expect(d.reboot().descriptor.version).toBe("2.0.0"); // the data went to the file, not away with the pages
  expect(readPartition(d.file, "ota_0", BIG).subarray(0, img.length).equals(Buffer.from(img))).toBe(true);
  d.close();
});

interface Mapper { mapFile(path: string, length: number): ArrayBuffer; unmapFile(buffer: ArrayBuffer): void }

test("mapFile (the NVS log's stores): shared with the file at once, unmapFile detaches (twice is safe), errors carry the platform code", () => {
  const m = loadNativeOtaModule() as unknown as Mapper;
  const file = path.join(dir, "mapped.bin");
  fs.writeFileSync(file, Buffer.alloc(8192));
  const ab = m.mapFile(file, 8192);
  expect(ab.byteLength).toBe(8192);
  new Uint8Array(ab).set([1, 2, 3], 4096);
  expect([...fs.readFileSync(file).subarray(4096, 4099)]).toEqual([1, 2, 3]); // no write(2), no msync
  m.unmapFile(ab);
  expect(ab.byteLength).toBe(0);
  m.unmapFile(ab);
  const code = (fn: () => unknown): unknown => { try { fn(); } catch (e) { return [(e as { platformCode?: number }).platformCode, (e as { errno?: number }).errno]; } return undefined; };
  expect(code(() => m.mapFile(path.join(dir, "absent.bin"), 4096))).toEqual([0x7202, 2]); // OTA_ERR_SIM_IO, ENOENT
  expect(code(() => m.mapFile(file, 8193))).toEqual([0x104, undefined]); // ESP_ERR_INVALID_SIZE: shorter than asked
  // (the native errors come from Node's realm, not Jest's: compared by name)
  const name = (fn: () => unknown): unknown => { try { fn(); } catch (e) { return (e as Error).name; } return undefined; };
  expect(name(() => m.mapFile(file, 0))).toBe("RangeError");
  expect(name(() => m.unmapFile(new Uint8Array(4) as unknown as ArrayBuffer))).toBe("TypeError");
});
