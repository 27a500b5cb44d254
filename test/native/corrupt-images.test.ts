/**
 * Corrupt and unwanted images: every class is refused with a stable code before any boot switch, the
 * running slot (ota_0), the factory app and otadata stay byte-identical, the device still boots the
 * running image, and refusals that happen within the first 288 bytes (or by policy on the descriptor)
 * leave the whole flash byte-identical. Each class is streamed in three chunkings with the same result.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { OTA_CODES } from "../../src/native/ota-errors";
import { SEMVER_CODES } from "../../src/core/semver";
import { OtaBeginOptions } from "../../src/ports/ota-slot";
import { buildImage, imageBoundaries, makeFlashFile, readPartition, resealImage, tempDir } from "./fixtures";
import { Device, install, outcome } from "./harness";

const dir = tempDir("ota-corrupt-test");
let device: Device;

beforeAll(() => {
  const file = makeFlashFile(path.join(dir, "flash.bin"), { factory: buildImage({ version: "1.0.0" }) });
  device = new Device(file);
  device.reboot();
  install(device.slot, buildImage({ version: "1.1.0" }));
  expect(device.reboot()).toMatchObject({ slot: 0, state: "PENDING_VERIFY" });
  device.slot.markValid();
});
afterAll(() => {
  device.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const good = (): Uint8Array => buildImage({ version: "1.2.0", segments: [2048, 1024, 512] });
const ascii = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "latin1"));
function edit(fn: (img: Uint8Array, dv: DataView) => void, reseal = false): Uint8Array {
  const img = good();
  fn(img, new DataView(img.buffer));
  return reseal ? resealImage(img) : img;
}
function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

interface Case {
  name: string;
  image: Uint8Array;
  code: string;
  /** Refused within the first 288 bytes or by policy: the whole flash must stay identical. */
  untouched: boolean;
  options?: OtaBeginOptions;
}

const b = imageBoundaries(good());
const cases: Case[] = [
  { name: "zero length", image: new Uint8Array(0), code: OTA_CODES.OTA_IMAGE_EMPTY, untouched: true },
  {
    name: "an HTML error page",
    image: ascii("<!DOCTYPE html><html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n".repeat(20)),
    code: OTA_CODES.OTA_IMAGE_BAD_MAGIC,
    untouched: true,
  },
  { name: "a JSON error body", image: ascii('{"message":"Forbidden"}'), code: OTA_CODES.OTA_IMAGE_BAD_MAGIC, untouched: true },
  { name: "bad magic byte", image: edit((i) => (i[0] = 0xe8)), code: OTA_CODES.OTA_IMAGE_BAD_MAGIC, untouched: true },
  { name: "erased flash (all 0xFF)", image: new Uint8Array(8192).fill(0xff), code: OTA_CODES.OTA_IMAGE_BAD_MAGIC, untouched: true },
  { name: "wrong chip (ESP32-S3 image)", image: buildImage({ version: "1.2.0", chipId: 9 }), code: OTA_CODES.OTA_IMAGE_WRONG_CHIP, untouched: true },
  { name: "segment count 0", image: edit((i) => (i[1] = 0)), code: OTA_CODES.OTA_IMAGE_BAD_SEGMENT_COUNT, untouched: true },
  { name: "segment count 17", image: edit((i) => (i[1] = 17)), code: OTA_CODES.OTA_IMAGE_BAD_SEGMENT_COUNT, untouched: true },
  { name: "bad descriptor magic", image: edit((i) => (i[32] ^= 0x01), true), code: OTA_CODES.OTA_IMAGE_BAD_DESCRIPTOR, untouched: true },
  {
    name: "first segment shorter than the descriptor",
    image: buildImage({ version: "1.2.0", segments: [128, 1024] }),
    code: OTA_CODES.OTA_IMAGE_BAD_DESCRIPTOR,
    untouched: true,
  },
  {
    name: "no SHA-256 appended (required)",
    image: buildImage({ version: "1.2.0", hash: false }),
    code: OTA_CODES.OTA_IMAGE_HASH_MISSING,
    untouched: true,
  },
  {
    name: "unaligned segment length",
    image: buildImage({ version: "1.2.0", segments: [2048, 1023] }),
    code: OTA_CODES.OTA_IMAGE_SEGMENT_UNALIGNED,
    untouched: false,
  },
  {
    name: "segment length past the end (declared size)",
    image: edit((i, dv) => dv.setUint32(b.segmentHeaders[1]! + 4, 1024 + 4096, true)),
    options: { imageSize: good().length },
    code: OTA_CODES.OTA_IMAGE_PAST_END,
    untouched: false,
  },
  {
    name: "segment length past the end (stream ends)",
    image: edit((i, dv) => dv.setUint32(b.segmentHeaders[2]! + 4, 512 + 4096, true)),
    code: OTA_CODES.OTA_IMAGE_TRUNCATED,
    untouched: false,
  },
  {
    name: "segment length past the slot",
    image: edit((i, dv) => dv.setUint32(b.segmentHeaders[1]! + 4, 0x20000, true)),
    code: OTA_CODES.OTA_IMAGE_TOO_LARGE,
    untouched: false,
  },
  { name: "header only", image: good().subarray(0, 24), code: OTA_CODES.OTA_IMAGE_TRUNCATED, untouched: true },
  { name: "cut inside the descriptor", image: good().subarray(0, 200), code: OTA_CODES.OTA_IMAGE_TRUNCATED, untouched: true },
  { name: "bad checksum", image: edit((i) => (i[b.checksumAt] ^= 0xff)), code: OTA_CODES.OTA_IMAGE_BAD_CHECKSUM, untouched: false },
  { name: "one payload bit flipped", image: edit((i) => (i[1500] ^= 0x10)), code: OTA_CODES.OTA_IMAGE_BAD_CHECKSUM, untouched: false },
  {
    name: "checksum-preserving corruption (same bit flipped twice)",
    image: edit((i) => {
      i[1500] ^= 0x10;
      i[2600] ^= 0x10;
    }),
    code: OTA_CODES.OTA_IMAGE_BAD_HASH,
    untouched: false,
  },
  { name: "bad SHA-256", image: edit((i) => (i[i.length - 1] ^= 0x01)), code: OTA_CODES.OTA_IMAGE_BAD_HASH, untouched: false },
  {
    name: "oversize for the slot",
    image: buildImage({ version: "1.2.0", segments: [60000, 8000] }),
    code: OTA_CODES.OTA_IMAGE_TOO_LARGE,
    untouched: false,
  },
  {
    name: "declared size larger than the slot",
    image: good(),
    options: { imageSize: 0x20000 },
    code: OTA_CODES.OTA_INVALID_SIZE,
    untouched: true,
  },
  {
    name: "declared size smaller than the image",
    image: good(),
    options: { imageSize: good().length - 100 },
    code: OTA_CODES.OTA_IMAGE_PAST_END,
    untouched: false,
  },
  { name: "trailing garbage", image: concat(good(), ascii("garbage!")), code: OTA_CODES.OTA_IMAGE_TRAILING_DATA, untouched: false },
  { name: "two images back to back", image: concat(good(), good()), code: OTA_CODES.OTA_IMAGE_TRAILING_DATA, untouched: false },
  {
    name: "wrong project",
    image: buildImage({ version: "1.2.0", projectName: "other-firmware" }),
    code: OTA_CODES.OTA_PROJECT_MISMATCH,
    untouched: true,
  },
  { name: "a downgrade", image: buildImage({ version: "1.0.5" }), code: OTA_CODES.OTA_DOWNGRADE_REFUSED, untouched: true },
  { name: "the same version again", image: buildImage({ version: "1.1.0" }), code: OTA_CODES.OTA_DOWNGRADE_REFUSED, untouched: true },
  {
    name: "a pre-release of the running version",
    image: buildImage({ version: "1.1.0-rc.1" }),
    code: OTA_CODES.OTA_DOWNGRADE_REFUSED,
    untouched: true,
  },
  { name: "version that is not SemVer", image: buildImage({ version: "latest" }), code: SEMVER_CODES.VERSION_INVALID, untouched: true },
  {
    name: "secure_version below the anti-rollback floor",
    image: buildImage({ version: "1.2.0", secureVersion: 1 }),
    options: { minSecureVersion: 2 },
    code: OTA_CODES.OTA_SECURE_VERSION_TOO_LOW,
    untouched: true,
  },
];

// Truncation at every segment boundary, at the checksum and inside the hash.
const boundaries: [string, number][] = [
  ["after the header", 24],
  ...b.segmentHeaders.slice(1).map((o, i): [string, number] => [`before segment header ${i + 1}`, o]),
  ...b.segmentHeaders.map((o, i): [string, number] => [`after segment header ${i}`, o + 8]),
  ["before the padding", b.segmentHeaders[2]! + 8 + 512],
  ["before the checksum byte", b.checksumAt],
  ["before the SHA-256", b.hashAt],
  ["inside the SHA-256", b.hashAt + 16],
  ["one byte short", good().length - 1],
];
for (const [where, at] of boundaries) {
  cases.push({ name: `truncated ${where} (${at} bytes)`, image: good().subarray(0, at), code: OTA_CODES.OTA_IMAGE_TRUNCATED, untouched: at <= 288 });
}

describe("corrupt and unwanted images", () => {
  it("has at least 20 classes, all distinct by name", () => {
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
    expect(cases.length).toBeGreaterThanOrEqual(20);
  });

  it.each(cases.map((c) => [c.name, c] as const))("%s", (_name, c) => {
    const before = device.snapshot();
    const running = readPartition(device.file, "ota_0");
    const otadata = readPartition(device.file, "otadata");
    const factory = readPartition(device.file, "factory");
    for (const chunks of [[1460], [1], [4096, 7, 333]]) {
      expect(outcome(() => install(device.slot, c.image, { ...c.options, chunks }))).toBe(c.code);
      expect(readPartition(device.file, "ota_0").equals(running)).toBe(true);
      expect(readPartition(device.file, "otadata").equals(otadata)).toBe(true);
      expect(readPartition(device.file, "factory").equals(factory)).toBe(true);
      if (c.untouched) expect(device.snapshot().equals(before)).toBe(true);
    }
    const boot = device.reboot();
    expect(boot).toMatchObject({ slot: 0, state: "VALID", rolledBack: false });
    expect(boot.descriptor.version).toBe("1.1.0");
  });

  it("the good image itself installs (the cases differ from it only by their defect)", () => {
    install(device.slot, good(), { noSetBoot: true });
    device.slot.abort();
    expect(device.reboot()).toMatchObject({ slot: 0, state: "VALID" });
  });
});
