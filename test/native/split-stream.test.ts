/**
 * Splitting the stream changes nothing: the same image gives the same outcome (success and the same
 * bytes in the slot, or the same error code) whether it arrives in one chunk, split in two at every
 * byte, or cut into random chunkings (fast-check). Run through the N-API binding and the host flash,
 * i.e. the whole write path including the descriptor gate.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import fc from "fast-check";

import { OTA_CODES } from "../../src/native/ota-errors";
import { buildImage, makeFlashFile, partition, readPartition, resealImage, tempDir, writeAt } from "./fixtures";
import { Device, outcome } from "./harness";

const dir = tempDir("ota-split-test");
let device: Device;
beforeAll(() => {
  device = new Device(makeFlashFile(path.join(dir, "flash.bin"), { factory: buildImage({ version: "1.0.0" }) }));
  device.reboot();
});
afterAll(() => {
  device.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Streams `img` cut at `cuts` (sorted offsets) and ends; returns "ok" or the error code. */
function streamWithCuts(img: Uint8Array, cuts: number[]): string {
  const slot = device.slot;
  const bounds = [0, ...cuts.filter((c) => c > 0 && c < img.length), img.length];
  return outcome(() => {
    slot.begin();
    try {
      for (let i = 0; i + 1 < bounds.length; i++) {
        // accept() writes the rest of the chunk that completed the head itself
        if (slot.write(img.subarray(bounds[i]!, bounds[i + 1]!)) !== undefined) slot.accept();
      }
      slot.end();
    } finally {
      slot.abort();
    }
  });
}

const good = buildImage({ version: "1.2.0", segments: [1024, 256, 300 + 4] });

describe("split the stream anywhere: same result", () => {
  it("a good image split in two at every byte installs identically", () => {
    expect(streamWithCuts(good, [])).toBe("ok");
    const reference = readPartition(device.file, "ota_0").subarray(0, good.length);
    const ota0 = partition("ota_0").offset;
    expect(reference.equals(Buffer.from(good))).toBe(true);
    for (let at = 1; at < good.length; at++) {
      // scribble over the slot around the cut so each run must really erase and rewrite those bytes
      writeAt(device.file, ota0 + Math.max(0, at - 8), new Uint8Array(16));
      expect(streamWithCuts(good, [at])).toBe("ok");
      expect(readPartition(device.file, "ota_0").subarray(0, good.length).equals(reference)).toBe(true);
    }
  });

  it("a corrupt image split in two at every byte fails with the same code", () => {
    const bad = resealImage(new Uint8Array(good));
    bad[bad.length - 5] ^= 0x40; // SHA-256 mismatch: found at the very last byte
    const bad2 = new Uint8Array(good);
    bad2[700] ^= 1; // checksum mismatch
    for (const [img, code] of [
      [bad, OTA_CODES.OTA_IMAGE_BAD_HASH],
      [bad2, OTA_CODES.OTA_IMAGE_BAD_CHECKSUM],
    ] as const) {
      expect(streamWithCuts(img, [])).toBe(code);
      for (let at = 1; at < img.length; at++) expect(streamWithCuts(img, [at])).toBe(code);
    }
  });

  it("random chunkings of good, truncated and padded images agree with the one-chunk result", () => {
    const variants = [
      good,
      good.subarray(0, 290),
      good.subarray(0, good.length - 1),
      new Uint8Array(Buffer.concat([good, Buffer.from([0])])),
      buildImage({ version: "1.2.0", chipId: 5, segments: [512] }),
    ];
    const expected = variants.map((v) => streamWithCuts(v, []));
    expect(expected).toEqual([
      "ok",
      OTA_CODES.OTA_IMAGE_TRUNCATED,
      OTA_CODES.OTA_IMAGE_TRUNCATED,
      OTA_CODES.OTA_IMAGE_TRAILING_DATA,
      OTA_CODES.OTA_IMAGE_WRONG_CHIP,
    ]);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: variants.length - 1 }),
        fc.uniqueArray(fc.integer({ min: 1, max: good.length + 1 }), { maxLength: 40 }),
        (which, cuts) => {
          cuts.sort((a, b) => a - b);
          expect(streamWithCuts(variants[which]!, cuts)).toBe(expected[which]);
        },
      ),
      { numRuns: 300, seed: 20261122 },
    );
  });
});
