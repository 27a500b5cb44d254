/**
 * The descriptor objects of the native binding carry three image-header fields next to esp_app_desc_t:
 * chipId, minChipRevFull and maxChipRevFull (esp_image_header_t bytes 12-13, 15-16, 17-18), in every place
 * a descriptor comes out: write()'s return at the gate, candidateDescriptor(), runningDescriptor() and the
 * boot results. Also ESP-IDF's hash_appended rule (any non-zero byte) as the C core applies it.
 * The xsmc binding returns the same fields; it cannot run here (native-syntax.test.ts compiles it).
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { HostOtaSlot } from "../../src/native/ota-slot";
import { buildImage, CHIP_IDS, ChipName, CHIP_LOAD_ADDRS, imageLayout, assembleImage } from "../../src/tools/esp-image";
import { createFlashFile, TEST_SMALL_CSV, TEST_SMALL_FLASH_SIZE } from "../../src/tools/flash-file";
import { tempDir } from "./fixtures";
import { install } from "./harness";

const dir = tempDir("ota-desc-header-test");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;

function flashWith(factory: Uint8Array): string {
  const file = path.join(dir, `flash-${n++}.bin`);
  createFlashFile(file, { size: TEST_SMALL_FLASH_SIZE, partitions: TEST_SMALL_CSV, images: { factory } });
  return file;
}

describe("chipId, minChipRevFull, maxChipRevFull travel with every descriptor", () => {
  it.each(Object.keys(CHIP_IDS) as ChipName[])("%s", (chip) => {
    const id = CHIP_IDS[chip];
    const common = { chip, loadAddrs: [...CHIP_LOAD_ADDRS[chip]], segments: [0x2000, 0x800, 0x1800, 0x100, 0x3000].slice(0, CHIP_LOAD_ADDRS[chip].length) };
    const factory = buildImage({ ...common, version: "1.0.0", minChipRevFull: 3, maxChipRevFull: 199 });
    const next = buildImage({ ...common, version: "1.1.0", minChipRevFull: 101, maxChipRevFull: 0xffff });
    const file = flashWith(factory);
    let slot = new HostOtaSlot({ flashPath: file, chipId: id });
    try {
      const boot0 = slot.boot();
      expect(boot0.descriptor).toMatchObject({ version: "1.0.0", chipId: id, minChipRevFull: 3, maxChipRevFull: 199 });
      expect(slot.runningDescriptor()).toMatchObject({ chipId: id, minChipRevFull: 3, maxChipRevFull: 199 });
      expect(slot.lastBoot()?.descriptor).toMatchObject({ chipId: id, minChipRevFull: 3, maxChipRevFull: 199 });

      slot.begin();
      const gate = slot.write(next);
      expect(gate).toMatchObject({ version: "1.1.0", chipId: id, minChipRevFull: 101, maxChipRevFull: 0xffff });
      expect(slot.candidateDescriptor()).toMatchObject({ chipId: id, minChipRevFull: 101, maxChipRevFull: 0xffff });
      slot.abort();

      install(slot, next);
      slot.close();
      slot = new HostOtaSlot({ flashPath: file, chipId: id });
      const boot1 = slot.boot();
      expect(boot1.partition.label).toBe("ota_0");
      expect(boot1.descriptor).toMatchObject({ version: "1.1.0", chipId: id, minChipRevFull: 101, maxChipRevFull: 0xffff });
      expect(slot.runningDescriptor()).toMatchObject({ chipId: id, minChipRevFull: 101, maxChipRevFull: 0xffff });
      slot.markInvalidAndReboot();
      expect(slot.lastBoot()?.descriptor).toMatchObject({ version: "1.0.0", chipId: id, minChipRevFull: 3, maxChipRevFull: 199 });
    } finally {
      slot.close();
    }
  });
});

describe("hash_appended: ESP-IDF's rule (any non-zero byte) in the C core", () => {
  it("a hash_appended byte of 2 with a SHA-256 after the checksum installs and boots", () => {
    const base = buildImage({ version: "1.1.0" });
    const header = new Uint8Array(base.subarray(0, 24));
    header[23] = 2;
    const l = imageLayout(base);
    const segs = l.segments.map((s) => ({ loadAddr: s.loadAddr, data: base.slice(s.dataOffset, s.dataOffset + s.dataLength) }));
    const img = assembleImage(header, segs);
    expect(img[23]).toBe(2);
    expect(img.length).toBe(base.length); // the hash is there
    const file = flashWith(buildImage({ version: "1.0.0" }));
    let slot = new HostOtaSlot({ flashPath: file });
    try {
      slot.boot();
      install(slot, img, { requireHash: true });
      slot.close();
      slot = new HostOtaSlot({ flashPath: file });
      expect(slot.boot().descriptor.version).toBe("1.1.0");
    } finally {
      slot.close();
    }
  });
});
