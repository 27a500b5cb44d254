/**
 * Size refusals come as early as the image allows and say the sizes. ESP32 app images carry no total
 * length: without a declared size, the writer refuses at the first segment header whose end, as known so
 * far (that segment's data, the segment headers still to come, padding, checksum, hash), passes the slot,
 * before any byte of that segment's data is erased or written. With a declared size larger than the slot,
 * begin() refuses before anything. Every refusal carries detail {neededBytes | imageSize, slotSize} and
 * names the numbers in its message. Flash work is counted with the host's trace().
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { ShadowOtaError } from "../../src/core/errors";
import { OTA_CODES } from "../../src/native/ota-errors";
import { FlashOperation, HostOtaSlot } from "../../src/native/ota-slot";
import { buildImage, CHIP_LOAD_ADDRS, imageLayout } from "../../src/tools/esp-image";
import { createFlashFile, TEST_SMALL_CSV, TEST_SMALL_FLASH_SIZE } from "../../src/tools/flash-file";
import { tempDir } from "./fixtures";

const SLOT = 256 * 1024; // partitions/test-small.csv: ota_0 at 0x50000, 256 KiB
const SLOT_BASE = 0x50000;
const dir = tempDir("ota-size-refusal-test");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;

function device(): HostOtaSlot {
  const file = path.join(dir, `flash-${n++}.bin`);
  createFlashFile(file, { size: TEST_SMALL_FLASH_SIZE, partitions: TEST_SMALL_CSV, images: { factory: buildImage({ version: "1.0.0" }) } });
  const slot = new HostOtaSlot({ flashPath: file });
  slot.boot();
  return slot;
}

/** Streams `img` in 1460-byte chunks (accepting the descriptor) until something throws; returns it. */
function streamUntilRefused(slot: HostOtaSlot, img: Uint8Array, imageSize?: number): ShadowOtaError {
  try {
    slot.begin(imageSize === undefined ? {} : { imageSize });
    for (let off = 0; off < img.length; off += 1460) {
      if (slot.write(img.subarray(off, off + 1460)) !== undefined) slot.accept();
    }
    slot.end();
  } catch (e) {
    if (e instanceof ShadowOtaError) return e;
    throw e;
  }
  throw new Error("the image was accepted");
}

function flashWork(ops: FlashOperation[]): { erased: number; programmedEnd: number } {
  let erased = 0;
  let programmedEnd = 0;
  for (const o of ops) {
    expect(o.address).toBeGreaterThanOrEqual(SLOT_BASE);
    if (o.kind === "erase") erased += o.length;
    else programmedEnd = Math.max(programmedEnd, o.address - SLOT_BASE + o.length);
  }
  return { erased, programmedEnd };
}

/** A realistic ESP32 layout of 977,776 bytes: DROM (descriptor first), DRAM, IRAM, padding, IROM. */
function bigRealisticImage(): Uint8Array {
  const lens = [0x38000, 0x4000, 0x12000, 0x3000];
  const fixed = 24 + 8 * 5 + lens.reduce((a, b) => a + b, 0) + 16 + 32;
  const img = buildImage({ version: "2.0.0", loadAddrs: [...CHIP_LOAD_ADDRS.esp32], segments: [...lens, 977776 - fixed] });
  expect(img.length).toBe(977776);
  return img;
}

describe("without a declared size", () => {
  it("a 977,776-byte image into a 256 KiB slot: refused at the first segment header that passes the slot, none of its data in flash", () => {
    const img = bigRealisticImage();
    const l = imageLayout(img);
    // The first segment whose end passes the slot, counting the headers still to come and the tail.
    const refusing = l.segments.find((s, i) => s.dataOffset + s.dataLength + 8 * (l.segments.length - 1 - i) + 16 + 32 > SLOT)!;
    expect(refusing.index).toBe(2); // IRAM: DROM (224 KiB) and DRAM fit
    const slot = device();
    try {
      slot.trace(true);
      const e = streamUntilRefused(slot, img);
      expect(e.code).toBe(OTA_CODES.OTA_IMAGE_TOO_LARGE);
      const needed = refusing.dataOffset + refusing.dataLength + 8 * 2;
      const neededBytes = needed + (15 - (needed % 16)) + 1 + 32;
      expect(e.detail).toMatchObject({ neededBytes, slotSize: SLOT });
      expect(e.message).toContain(`at least ${neededBytes} bytes`);
      expect(e.message).toContain(`${SLOT}`);
      const { erased, programmedEnd } = flashWork(slot.trace());
      // Only what came before the chunk holding the refusing header reached flash.
      expect(programmedEnd).toBeLessThanOrEqual(refusing.headerOffset);
      expect(erased).toBe(Math.ceil(programmedEnd / 4096) * 4096);
      expect(erased).toBeLessThan(SLOT);
    } finally {
      slot.close();
    }
  });

  it("a segment that fits but leaves no room for the headers after it is refused at its own header, before its data", () => {
    // Segment 1 ends 4 bytes before the slot end; two more segment headers (16 bytes) cannot follow.
    const s0 = 0x2000;
    const s1 = SLOT - 4 - (24 + 8 + s0 + 8);
    const img = buildImage({ version: "2.0.0", segments: [s0, s1, 0x100, 0x100] });
    const l = imageLayout(img);
    expect(l.segments[1]!.dataOffset + l.segments[1]!.dataLength).toBe(SLOT - 4);
    const slot = device();
    try {
      slot.trace(true);
      const e = streamUntilRefused(slot, img);
      expect(e.code).toBe(OTA_CODES.OTA_IMAGE_TOO_LARGE);
      expect(e.detail).toMatchObject({ slotSize: SLOT });
      expect(e.detail!.neededBytes as number).toBeGreaterThan(SLOT);
      const { erased, programmedEnd } = flashWork(slot.trace());
      expect(programmedEnd).toBeLessThanOrEqual(l.segments[1]!.headerOffset);
      expect(erased).toBeLessThanOrEqual(Math.ceil(l.segments[1]!.headerOffset / 4096) * 4096);
    } finally {
      slot.close();
    }
  });

  it("a first segment that leaves no room for the 15 headers after it is refused at its header, inside the descriptor gate: no flash work", () => {
    // 24 + 8 * 16 headers + the first segment + checksum block + hash = SLOT + 16.
    const img = buildImage({ version: "2.0.0", segments: [SLOT - 24 - 8 * 16 - 16 - 32 + 16, ...new Array<number>(15).fill(0)] });
    expect(img.length).toBe(SLOT + 16);
    const slot = device();
    try {
      slot.trace(true);
      const e = streamUntilRefused(slot, img);
      expect(e.code).toBe(OTA_CODES.OTA_IMAGE_TOO_LARGE);
      expect(slot.trace()).toEqual([]);
      expect(slot.writerState().state).toBe("failed");
    } finally {
      slot.close();
    }
  });
});

describe("with a declared size", () => {
  it("larger than the slot: begin() refuses, nothing erased or written, both sizes in detail and message", () => {
    const img = bigRealisticImage();
    const slot = device();
    try {
      slot.trace(true);
      let e: unknown;
      try {
        slot.begin({ imageSize: img.length });
      } catch (x) {
        e = x;
      }
      expect(e).toBeInstanceOf(ShadowOtaError);
      const err = e as ShadowOtaError;
      expect(err.code).toBe(OTA_CODES.OTA_INVALID_SIZE);
      expect(err.platformCode).toBe(0x104);
      expect(err.detail).toMatchObject({ operation: "begin", imageSize: 977776, slotSize: SLOT });
      expect(err.detail).not.toHaveProperty("neededBytes");
      expect(err.message).toBe(`begin: ESP_ERR_INVALID_SIZE (0x104): the declared image size is 977776 bytes, the slot holds ${SLOT}`);
      expect(slot.trace()).toEqual([]);
    } finally {
      slot.close();
    }
  });

  it("the same refusal from resume()", () => {
    const slot = device();
    try {
      let err: ShadowOtaError | undefined;
      try {
        slot.resume(8192, { imageSize: SLOT + 16 });
      } catch (x) {
        err = x as ShadowOtaError;
      }
      expect(err?.code).toBe(OTA_CODES.OTA_INVALID_SIZE);
      expect(err?.detail).toMatchObject({ operation: "resume", imageSize: SLOT + 16, slotSize: SLOT });
    } finally {
      slot.close();
    }
  });

  it("a declared size the headers contradict: OTA_IMAGE_PAST_END at the segment header, with both numbers", () => {
    const img = buildImage({ version: "2.0.0", segments: [0x2000, 0x8000, 0x1000] });
    const l = imageLayout(img);
    const declared = l.segments[1]!.headerOffset + 64; // claims the image ends inside segment 1
    const slot = device();
    try {
      slot.trace(true);
      const e = streamUntilRefused(slot, img, declared);
      expect(e.code).toBe(OTA_CODES.OTA_IMAGE_PAST_END);
      expect(e.detail).toMatchObject({ imageSize: declared, slotSize: SLOT });
      expect(e.detail!.neededBytes as number).toBeGreaterThan(declared);
      expect(flashWork(slot.trace()).programmedEnd).toBeLessThanOrEqual(l.segments[1]!.headerOffset);
    } finally {
      slot.close();
    }
  });
});
