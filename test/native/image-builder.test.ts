/**
 * The ESP32 app image builder (src/tools/esp-image.ts): header fields, the descriptor at offset 32, the
 * checksum position and value, the appended SHA-256, exact sizes, determinism, option errors; every
 * corruption class checked to be exactly the defect its name says (recomputed here independently); the
 * builder cross-checked against the native tests' second image writer (test/native/fixtures.ts); and —
 * when the N-API module is built — every corruption streamed through the C core, refused with its
 * `expect` code while the good image installs.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import fc from "fast-check";

import { OTA_CODES } from "../../src/native/ota-errors";
import {
  CORRUPTION_KINDS,
  Corruption,
  CorruptionKind,
  ESP_IMAGE_CODES,
  allCorruptions,
  buildImage,
  checkImage,
  chipId,
  corrupt,
  imageLayout,
  main as imageCli,
  parseImageHeader,
  readAppDescriptor,
} from "../../src/tools/esp-image";
import { TEST_SMALL_CSV, TEST_SMALL_FLASH_SIZE, createFlashFile } from "../../src/tools/flash-file";
import { buildImage as fixtureImage, imageBoundaries } from "./fixtures";

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as { code?: string }).code ?? `not a coded error: ${String(e)}`;
  }
  return "no error";
}

/** Independent re-implementation of the layout walk and checks (kept deliberately naive). */
function walk(img: Uint8Array): { segs: { hdr: number; len: number }[]; end: number; checksumAt: number } {
  const dv = new DataView(img.buffer, img.byteOffset, img.byteLength);
  const segs: { hdr: number; len: number }[] = [];
  let off = 24;
  for (let i = 0; i < img[1]!; i++) {
    const len = dv.getUint32(off + 4, true);
    segs.push({ hdr: off, len });
    off += 8 + len;
  }
  let checksumAt = off;
  while ((checksumAt + 1) % 16 !== 0) checksumAt++;
  return { segs, end: off, checksumAt };
}
function xorOf(img: Uint8Array): number {
  let c = 0xef;
  for (const s of walk(img).segs) for (let k = 0; k < s.len; k++) c ^= img[s.hdr + 8 + k]!;
  return c;
}
function sha(bytes: Uint8Array): Buffer {
  return createHash("sha256").update(bytes).digest();
}
function cstr(img: Uint8Array, off: number, len: number): string {
  const b = Buffer.from(img.subarray(off, off + len));
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? len : nul).toString("latin1");
}

describe("valid images", () => {
  const img = buildImage({ version: "1.1.0", projectName: "shadow-ota", secureVersion: 3, seed: 42 });

  it("header fields", () => {
    expect(Array.from(img.subarray(0, 4))).toEqual([0xe9, 3, 2, 0x20]);
    const h = parseImageHeader(img);
    expect(h).toMatchObject({ magic: 0xe9, segmentCount: 3, spiMode: 2, spiSpeed: 0, spiSize: 2, wpPin: 0xee, chipId: 0, hashAppended: true });
    expect(img[23]).toBe(1);
    expect(Array.from(img.subarray(19, 23))).toEqual([0, 0, 0, 0]);
  });

  it("app descriptor at image offset 32 (after the 24-byte header and the first 8-byte segment header)", () => {
    const dv = new DataView(img.buffer);
    expect(dv.getUint32(32, true)).toBe(0xabcd5432);
    expect(dv.getUint32(36, true)).toBe(3);
    expect(cstr(img, 32 + 16, 32)).toBe("1.1.0");
    expect(cstr(img, 32 + 48, 32)).toBe("shadow-ota");
    expect(readAppDescriptor(img)).toMatchObject({ magicWord: 0xabcd5432, secureVersion: 3, version: "1.1.0", projectName: "shadow-ota", mmuPageSize: 16 });
    expect(readAppDescriptor(img).appElfSha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("zero padding, checksum byte ending a 16-byte block, SHA-256 of everything before it", () => {
    const w = walk(img);
    expect((w.checksumAt + 1) % 16).toBe(0);
    expect(img.subarray(w.end, w.checksumAt).every((b) => b === 0)).toBe(true);
    expect(img[w.checksumAt]).toBe(xorOf(img));
    expect(img.length).toBe(w.checksumAt + 1 + 32);
    expect(Buffer.from(img.subarray(w.checksumAt + 1))).toEqual(sha(img.subarray(0, w.checksumAt + 1)));
    expect(checkImage(img)).toEqual({ ok: true, magicOk: true, descriptorOk: true, paddingZero: true, checksumOk: true, hashOk: true, trailingBytes: 0 });
  });

  it("without hash: no SHA-256, flag 0, the image ends with the checksum", () => {
    const nh = buildImage({ hashAppended: false });
    const w = walk(nh);
    expect(nh[23]).toBe(0);
    expect(nh.length).toBe(w.checksumAt + 1);
    expect(checkImage(nh)).toMatchObject({ ok: true, hashOk: undefined });
  });

  it("chip by name or id", () => {
    expect(parseImageHeader(buildImage({ chip: "esp32s3" })).chipId).toBe(9);
    expect(parseImageHeader(buildImage({ chip: "ESP32-C3" })).chipId).toBe(5);
    expect(parseImageHeader(buildImage({ chip: 0x0d })).chipId).toBe(0x0d);
    expect(chipId("esp32h2")).toBe(0x10);
    expect(codeOf(() => chipId("esp8266"))).toBe(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION);
  });

  it("deterministic per seed", () => {
    expect(Buffer.from(buildImage({ seed: 5 }))).toEqual(Buffer.from(buildImage({ seed: 5 })));
    expect(Buffer.from(buildImage({ seed: 5 }))).not.toEqual(Buffer.from(buildImage({ seed: 6 })));
  });

  it("property: any size (multiple of 16) and segment count gives exactly that size and a valid image", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 16 }), fc.boolean(), fc.integer({ min: 0, max: 4096 }), (count, hash, extra16) => {
        const min = 24 + 8 * count + 256 + 4 * (count - 1) + 16 + (hash ? 32 : 0);
        const size = Math.ceil(min / 16) * 16 + extra16 * 16;
        const im = buildImage({ size, segmentCount: count, hashAppended: hash, seed: extra16 });
        expect(im.length).toBe(size);
        expect(im[1]).toBe(count);
        const l = imageLayout(im);
        expect(l.segments.every((s) => s.dataLength % 4 === 0)).toBe(true);
        expect(l.segments[0]!.dataLength).toBeGreaterThanOrEqual(256);
        expect(checkImage(im).ok).toBe(true);
      }),
      { numRuns: 150 },
    );
  });

  it("a 1 MiB image is built exactly", () => {
    const big = buildImage({ size: 0x100000 });
    expect(big.length).toBe(0x100000);
    expect(checkImage(big).ok).toBe(true);
  });

  it.each([
    ["version longer than 31 bytes", { version: "1.0.0-" + "x".repeat(26) }],
    ["project longer than 31 bytes", { projectName: "p".repeat(32) }],
    ["unaligned segment", { segments: [1024, 1023] }],
    ["first segment cannot hold the descriptor", { segments: [252, 1024] }],
    ["17 segments", { segments: new Array<number>(17).fill(256) }],
    ["size not a multiple of 16", { size: 10008 }],
    ["size too small", { size: 304 }],
    ["negative secure version", { secureVersion: -1 }],
    ["segmentCount disagrees with segments", { segments: [1024], segmentCount: 2 }],
  ])("refuses %s", (_what, options) => {
    expect(codeOf(() => buildImage(options))).toBe(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION);
  });

  it("agrees with the native tests' independent image writer (fixtures.ts) in both directions", () => {
    const theirs = fixtureImage({ version: "2.0.0", projectName: "other", segments: [2048, 1024, 512], secureVersion: 7 });
    expect(checkImage(theirs).ok).toBe(true);
    expect(readAppDescriptor(theirs)).toMatchObject({ version: "2.0.0", projectName: "other", secureVersion: 7 });
    const ours = buildImage({ segments: [2048, 1024, 512] });
    const b = imageBoundaries(ours);
    const l = imageLayout(ours);
    expect(b.segmentHeaders).toEqual(l.segments.map((s) => s.headerOffset));
    expect(b.checksumAt).toBe(l.checksumOffset);
    expect(ours.length).toBe(theirs.length);
  });
});

describe("corruptions", () => {
  const good = buildImage({ version: "1.1.0", segments: [0x1000, 0x800, 0x600] });
  const gl = imageLayout(good);
  const slotSize = 0x40000;
  const all = allCorruptions(good, { slotSize });

  it("at least 20 classes, unique names, truncation at every segment boundary", () => {
    expect(CORRUPTION_KINDS.length).toBeGreaterThanOrEqual(20);
    expect(new Set(all.map((c) => c.name)).size).toBe(all.length);
    expect(new Set(all.map((c) => c.kind)).size).toBe(CORRUPTION_KINDS.length);
    const cuts = all.filter((c) => c.kind === "truncated-at-segment" || c.kind === "truncated-at-offset").map((c) => c.bytes.length);
    for (const s of gl.segments) {
      if (s.index > 0) expect(cuts).toContain(s.headerOffset);
      expect(cuts).toContain(s.dataOffset);
    }
  });

  it("never modifies the input image", () => {
    const before = Buffer.from(good);
    allCorruptions(good, { slotSize });
    expect(Buffer.from(good)).toEqual(before);
  });

  /** What each class must be, checked with the naive helpers above (not with esp-image's readers). */
  const claims: Record<CorruptionKind, (bad: Uint8Array, c: Corruption) => void> = {
    "zero-length": (bad) => expect(bad.length).toBe(0),
    "html-error-page": (bad) => expect(Buffer.from(bad).toString("latin1")).toMatch(/<html>.*404 Not Found/s),
    "json-error-body": (bad) => expect(JSON.parse(Buffer.from(bad).toString("latin1"))).toHaveProperty("message"),
    "erased-flash": (bad) => expect(bad.length > 0 && bad.every((b) => b === 0xff)).toBe(true),
    "bad-magic": (bad) => {
      expect(bad[0]).not.toBe(0xe9);
      expect(Buffer.from(bad.subarray(1))).toEqual(Buffer.from(good.subarray(1)));
    },
    "segment-count-zero": (bad) => {
      expect(bad[1]).toBe(0);
      expect(Buffer.from(bad.subarray(2))).toEqual(Buffer.from(good.subarray(2)));
    },
    "segment-count-too-many": (bad) => expect(bad[1]).toBe(17),
    "wrong-chip": (bad) => {
      expect(new DataView(bad.buffer).getUint16(12, true)).toBe(9);
      expect(checkImage(bad).ok).toBe(true); // otherwise intact: only the chip check can refuse it
    },
    "header-truncated": (bad) => expect(bad.length).toBeLessThan(24),
    "descriptor-truncated": (bad) => {
      expect(bad.length).toBeGreaterThan(32);
      expect(bad.length).toBeLessThan(288);
    },
    "bad-descriptor-magic": (bad) => {
      expect(new DataView(bad.buffer).getUint32(32, true)).not.toBe(0xabcd5432);
      expect(bad[bad.length - 33]).toBe(xorOf(bad));
      expect(Buffer.from(bad.subarray(bad.length - 32))).toEqual(sha(bad.subarray(0, bad.length - 32)));
    },
    "first-segment-too-short": (bad) => {
      expect(walk(bad).segs[0]!.len).toBeLessThan(256);
      expect(bad[walk(bad).checksumAt]).toBe(xorOf(bad));
    },
    "hash-missing": (bad) => {
      expect(bad[23]).toBe(0);
      expect(bad.length).toBe(walk(bad).checksumAt + 1);
      expect(bad[bad.length - 1]).toBe(xorOf(bad));
    },
    "secure-version-too-low": (bad) => {
      expect(new DataView(bad.buffer).getUint32(36, true)).toBe(1);
      expect(checkImage(bad).ok).toBe(true);
    },
    "wrong-project": (bad) => {
      expect(cstr(bad, 80, 32)).toBe("other-firmware");
      expect(checkImage(bad).ok).toBe(true);
    },
    downgrade: (bad) => {
      expect(cstr(bad, 48, 32)).toBe("0.0.1");
      expect(checkImage(bad).ok).toBe(true);
    },
    "segment-length-unaligned": (bad) => {
      expect(walk(bad).segs.some((s) => s.len % 4 !== 0)).toBe(true);
      expect(bad[walk(bad).checksumAt]).toBe(xorOf(bad));
    },
    "segment-length-past-end": (bad) => {
      const w = walk(bad);
      expect(w.end).toBeGreaterThan(bad.length);
      expect(w.end).toBeLessThan(slotSize);
      expect(bad.length).toBe(good.length);
    },
    "segment-length-huge": (bad) => expect(walk(bad).segs.at(-1)!.len).toBe(0xfffffff0),
    oversize: (bad) => {
      expect(bad.length).toBeGreaterThan(slotSize);
      expect(checkImage(bad).ok).toBe(true); // a valid image, just too big
    },
    "truncated-at-segment": (bad) => {
      expect(walk(good).segs.map((s) => s.hdr)).toContain(bad.length);
      expect(Buffer.from(bad)).toEqual(Buffer.from(good.subarray(0, bad.length)));
    },
    "truncated-at-offset": (bad) => {
      expect(bad.length).toBeLessThan(good.length);
      expect(Buffer.from(bad)).toEqual(Buffer.from(good.subarray(0, bad.length)));
    },
    "truncated-before-checksum": (bad) => expect(bad.length).toBe(walk(good).checksumAt),
    "hash-truncated": (bad) => expect(bad.length).toBe(walk(good).checksumAt + 1 + 16),
    "hash-flag-without-hash": (bad) => {
      expect(bad[23]).toBe(1);
      expect(bad.length).toBe(walk(good).checksumAt + 1);
    },
    "bad-checksum": (bad) => {
      const at = walk(bad).checksumAt;
      expect(bad[at]).not.toBe(xorOf(bad));
      expect(Buffer.from(bad.subarray(at + 1))).toEqual(sha(bad.subarray(0, at + 1))); // hash is right
    },
    "bit-flip": (bad) => {
      const diff = [...bad].filter((b, i) => b !== good[i]);
      expect(diff).toHaveLength(1);
      expect(bad[walk(bad).checksumAt]).not.toBe(xorOf(bad));
    },
    "checksum-preserving-flip": (bad) => {
      expect([...bad].filter((b, i) => b !== good[i])).toHaveLength(2);
      expect(bad[walk(bad).checksumAt]).toBe(xorOf(bad)); // the XOR cannot see it
      expect(Buffer.from(bad.subarray(bad.length - 32))).not.toEqual(sha(bad.subarray(0, bad.length - 32)));
    },
    "bad-sha256": (bad) => {
      expect(bad[walk(bad).checksumAt]).toBe(xorOf(bad));
      expect(Buffer.from(bad.subarray(bad.length - 32))).not.toEqual(sha(bad.subarray(0, bad.length - 32)));
    },
    "trailing-garbage": (bad) => {
      expect(Buffer.from(bad.subarray(0, good.length))).toEqual(Buffer.from(good));
      expect(bad.length).toBeGreaterThan(good.length);
    },
    "two-images": (bad) => expect(Buffer.from(bad)).toEqual(Buffer.concat([good, good])),
  };

  it.each(all.map((c) => [c.name, c] as const))("%s is what its name says", (_name, c) => {
    claims[c.kind](c.bytes, c);
  });

  it("refusals inside the head are flagged as such", () => {
    for (const c of all) {
      if (c.kind === "truncated-at-offset") expect(c.refusedInHead).toBe(c.bytes.length < 288);
    }
    expect(corrupt(good, "bad-magic").refusedInHead).toBe(true);
    expect(corrupt(good, "bad-sha256").refusedInHead).toBe(false);
  });

  it("refuses corruptions the image cannot carry and unknown kinds", () => {
    const noHash = buildImage({ hashAppended: false });
    expect(codeOf(() => corrupt(noHash, "bad-sha256"))).toBe(ESP_IMAGE_CODES.ESP_IMAGE_CORRUPTION_UNAVAILABLE);
    expect(codeOf(() => corrupt(good, "truncated-at-segment", { segment: 9 }))).toBe(ESP_IMAGE_CODES.ESP_IMAGE_CORRUPTION_UNAVAILABLE);
    expect(codeOf(() => corrupt(good, "nonsense" as CorruptionKind))).toBe(ESP_IMAGE_CODES.ESP_IMAGE_CORRUPTION_UNAVAILABLE);
    expect(allCorruptions(noHash).some((c) => c.kind === "bad-sha256")).toBe(false);
  });
});

describe("CLI", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "esp-image-cli-"));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("writes an image and a corrupted one; lists the classes; refuses unknown options", () => {
    const lines: string[] = [];
    const out = path.join(dir, "a", "x.bin");
    expect(imageCli(["--version", "1.1.0", "--project", "shadow-ota", "--chip", "esp32s3", "--size", "64K", "--out", out], (l) => lines.push(l))).toBe(0);
    const img = new Uint8Array(fs.readFileSync(out));
    expect(img.length).toBe(65536);
    expect(parseImageHeader(img).chipId).toBe(9);
    expect(readAppDescriptor(img).version).toBe("1.1.0");
    expect(imageCli(["--out", out, "--corrupt", "bad-sha256"], (l) => lines.push(l))).toBe(0);
    expect(checkImage(new Uint8Array(fs.readFileSync(out))).hashOk).toBe(false);
    const listed: string[] = [];
    expect(imageCli(["--list-corruptions"], (l) => listed.push(l))).toBe(0);
    expect(listed).toHaveLength(CORRUPTION_KINDS.length);
    expect(imageCli(["--bogus"], () => undefined)).toBe(2);
    expect(imageCli(["--out", out, "--corrupt", "nope"], () => undefined)).toBe(2);
  });
});

// ---- the C core agrees with every `expect` (only when the N-API module is built) ---------------------
let nativeReady = false;
try {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require("../../src/native/ota-slot").loadNativeOtaModule();
  nativeReady = true;
} catch (e) {
  console.warn(`image-builder.test: native module not built (npm run build:native), C-core cross-check skipped: ${String(e)}`);
}
const describeNative = nativeReady ? describe : describe.skip;

describeNative("the C core refuses every corruption with its expected code", () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Device, install, outcome } = require("./harness") as typeof import("./harness");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "esp-image-native-"));
  const file = path.join(dir, "flash.bin");
  createFlashFile(file, { partitions: TEST_SMALL_CSV, size: TEST_SMALL_FLASH_SIZE, images: { factory: buildImage({ version: "1.0.0" }) } });
  const device = new Device(file);
  device.reboot();
  afterAll(() => {
    device.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const good = buildImage({ version: "1.1.0", segments: [0x1000, 0x800, 0x600] });
  const cases = allCorruptions(good, { slotSize: 0x40000, minSecureVersion: 2 });

  it("the good image installs (without switching boot)", () => {
    expect(outcome(() => install(device.slot, good, { noSetBoot: true }))).toBe("ok");
    device.slot.abort();
  });

  it.each(cases.map((c) => [c.name, c.expect, c] as const))("%s -> %s", (_name, code, c) => {
    const options = c.kind === "secure-version-too-low" ? { minSecureVersion: 2 } : {};
    const before = fs.readFileSync(file);
    for (const chunks of [[1460], [7, 4096, 1]]) {
      expect(outcome(() => install(device.slot, c.bytes, { ...options, chunks }))).toBe(code);
    }
    if (c.refusedInHead) expect(fs.readFileSync(file).equals(before)).toBe(true);
    expect(device.reboot()).toMatchObject({ slot: -1, rolledBack: false });
  });

  it("with the image size declared, a length field past the stream is OTA_IMAGE_PAST_END (past the slot stays TOO_LARGE)", () => {
    const past = corrupt(good, "segment-length-past-end");
    expect(outcome(() => install(device.slot, past.bytes, { imageSize: past.bytes.length }))).toBe(OTA_CODES.OTA_IMAGE_PAST_END);
    const huge = corrupt(good, "segment-length-huge");
    expect(outcome(() => install(device.slot, huge.bytes, { imageSize: huge.bytes.length }))).toBe(OTA_CODES.OTA_IMAGE_TOO_LARGE);
  });
});
