/**
 * The native OTA slot over the host flash: otadata format and CRC vectors, the multi-stage reboot
 * scenario of esp-idf's app_update tests (factory → ota_0 → ota_1 → rollback → ota_0, corrupt otadata,
 * corrupt image), the descriptor gate, the pending-verify rule and resume after a disconnect or reboot.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";

import { isShadowOtaError } from "../../src/core/errors";
import { OTA_CODES, otaCodeFor } from "../../src/native/ota-errors";
import { buildImage, makeFlashFile, partition, readPartition, SECTOR, tempDir, writeAt } from "./fixtures";
import { Device, install, outcome } from "./harness";

const dir = tempDir("ota-slot-test");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
function freshDevice(images: Record<string, Uint8Array> = { factory: buildImage({ version: "1.0.0" }) }): Device {
  const file = makeFlashFile(path.join(dir, `flash-${n++}.bin`), images);
  const d = new Device(file);
  d.reboot();
  return d;
}

interface Entry {
  seq: number;
  state: number;
  crc: number;
  label: Buffer;
}
function otadata(file: string): [Entry, Entry] {
  const b = readPartition(file, "otadata");
  const e = (o: number): Entry => ({
    seq: b.readUInt32LE(o),
    label: b.subarray(o + 4, o + 24),
    state: b.readUInt32LE(o + 24),
    crc: b.readUInt32LE(o + 28),
  });
  return [e(0), e(0x1000)];
}

describe("otadata CRC (crc32_le(0xFFFFFFFF, seq))", () => {
  const vectors: [number, number][] = [
    [1, 0x4743989a],
    [2, 0x55f63774],
    [3, 0xed4a5011],
  ];
  it.each(vectors)("zlib agrees: seq %i -> %s", (seq, crc) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(seq);
    // binascii.crc32(data, 0xFFFFFFFF) == zlib's crc32 with the same initial value
    expect(zlib.crc32(b, 0xffffffff) >>> 0).toBe(crc);
  });

  it("set boot writes entries with seq 1, 2, 3 and exactly those CRCs, alternating sectors", () => {
    const d = freshDevice();
    const file = d.file;
    install(d.slot, buildImage({ version: "1.1.0" }));
    let [a, b] = otadata(file);
    expect(a).toMatchObject({ seq: 1, state: 0 /* NEW */, crc: 0x4743989a });
    expect(a.label.equals(Buffer.alloc(20, 0xff))).toBe(true);
    expect(b.seq).toBe(0xffffffff);
    d.reboot();
    d.slot.markValid();
    install(d.slot, buildImage({ version: "1.2.0" }));
    [a, b] = otadata(file);
    expect(a).toMatchObject({ seq: 1, state: 2 /* VALID */, crc: 0x4743989a });
    expect(b).toMatchObject({ seq: 2, state: 0, crc: 0x55f63774 });
    d.reboot();
    d.slot.markValid();
    install(d.slot, buildImage({ version: "1.3.0" }));
    [a, b] = otadata(file);
    expect(a).toMatchObject({ seq: 3, state: 0, crc: 0xed4a5011 });
    expect(b).toMatchObject({ seq: 2, state: 2 });
    expect(d.reboot()).toMatchObject({ slot: 0, state: "PENDING_VERIFY", entry: 0 });
    d.close();
  });
});

describe("multi-stage reboot scenario (esp-idf app_update style)", () => {
  it("factory → ota_0 → ota_1 → rollback → ota_0, invalid-and-reboot, corrupt otadata, corrupt image", () => {
    const d = freshDevice();
    const factory = readPartition(d.file, "factory");
    expect(d.lastBoot).toMatchObject({ slot: -1, state: undefined, rolledBack: false });
    expect(d.lastBoot!.partition.label).toBe("factory");
    expect(d.slot.runningState()).toBeUndefined();
    expect(d.slot.nextUpdatePartition().label).toBe("ota_0");

    // factory → ota_0 (1.1.0), confirmed
    install(d.slot, buildImage({ version: "1.1.0" }));
    expect(d.lastBoot!.partition.label).toBe("factory"); // nothing changes before the reboot
    let boot = d.reboot();
    expect(boot).toMatchObject({ slot: 0, state: "PENDING_VERIFY", rolledBack: false });
    expect(boot.descriptor.version).toBe("1.1.0");
    // a new update is refused while the running image is unconfirmed
    expect(outcome(() => d.slot.begin())).toBe(OTA_CODES.OTA_PENDING_VERIFY);
    d.slot.markValid();
    expect(d.slot.runningState()).toBe("VALID");
    d.slot.markValid(); // idempotent
    expect(d.slot.runningState()).toBe("VALID");

    // ota_0 → ota_1 (1.2.0), never confirmed: the next boot rolls back to ota_0
    expect(d.slot.nextUpdatePartition().label).toBe("ota_1");
    install(d.slot, buildImage({ version: "1.2.0" }));
    boot = d.reboot();
    expect(boot).toMatchObject({ slot: 1, state: "PENDING_VERIFY" });
    boot = d.reboot();
    expect(boot).toMatchObject({ slot: 0, state: "VALID", rolledBack: true });
    expect(boot.descriptor.version).toBe("1.1.0");
    expect(d.slot.slotState(1)).toBe("ABORTED");

    // ota_0 → ota_1 (1.3.0), the app gives up: INVALID and back to ota_0
    install(d.slot, buildImage({ version: "1.3.0" }));
    boot = d.reboot();
    expect(boot.descriptor.version).toBe("1.3.0");
    d.slot.markInvalidAndReboot();
    boot = d.slot.lastBoot()!;
    expect(boot).toMatchObject({ slot: 0, state: "VALID" });
    expect(d.slot.slotState(1)).toBe("INVALID");
    expect(d.reboot()).toMatchObject({ slot: 0, state: "VALID" }); // and it stays there

    // ota_0 → ota_1 (1.4.0) confirmed; ota_1 → ota_0 (1.5.0) confirmed: slots alternate
    install(d.slot, buildImage({ version: "1.4.0" }));
    expect(d.reboot()).toMatchObject({ slot: 1, state: "PENDING_VERIFY" });
    d.slot.markValid();
    install(d.slot, buildImage({ version: "1.5.0" }));
    expect(d.reboot()).toMatchObject({ slot: 0, state: "PENDING_VERIFY" });
    d.slot.markValid();
    expect(d.reboot().descriptor.version).toBe("1.5.0");

    // the running image's flash gets corrupted: the bootloader walks down from ota_0 to the factory app
    // (bootloader_utility_load_boot_image: lower slots, then factory, then the slots above), writing nothing
    const ota0 = partition("ota_0");
    writeAt(d.file, ota0.offset + 600, Buffer.from([0x00, 0x00, 0x00, 0x00]));
    boot = d.reboot();
    expect(boot).toMatchObject({ slot: -1, rolledBack: true });
    expect(boot.descriptor.version).toBe("1.0.0");
    expect(d.slot.slotState(0)).toBe("VALID");

    // corrupt otadata (both sectors): no valid entry → factory
    const od = partition("otadata");
    writeAt(d.file, od.offset + 0x1c, Buffer.from([1, 2, 3, 4]));
    writeAt(d.file, od.offset + 0x101c, Buffer.from([1, 2, 3, 4]));
    boot = d.reboot();
    expect(boot).toMatchObject({ slot: -1, entry: -1 });
    expect(boot.partition.label).toBe("factory");
    expect(readPartition(d.file, "factory").equals(factory)).toBe(true);

    // and from the factory app an update works again (seq restarts from the garbage-free sector 0)
    install(d.slot, buildImage({ version: "2.0.0" }));
    expect(d.reboot()).toMatchObject({ slot: 0, state: "PENDING_VERIFY" });
    d.close();
  });

  it("markInvalidAndReboot and markValid from the factory app with no otadata entry fail as ESP-IDF's do (ESP_FAIL)", () => {
    const d = freshDevice();
    expect(outcome(() => d.slot.markInvalidAndReboot())).toBe(OTA_CODES.OTA_PLATFORM_ERROR);
    expect(outcome(() => d.slot.markValid())).toBe(OTA_CODES.OTA_PLATFORM_ERROR);
    d.close();
  });

  it("no factory app and no otadata: boots ota_0; nothing valid at all: OTA_NO_BOOTABLE_APP", () => {
    const d1 = freshDevice({ ota_0: buildImage({ version: "1.0.0" }) });
    expect(d1.lastBoot!.partition.label).toBe("ota_0");
    expect(d1.slot.runningState()).toBeUndefined();
    expect(d1.slot.nextUpdatePartition().label).toBe("ota_1");
    d1.close();
    const file = makeFlashFile(path.join(dir, `flash-${n++}.bin`), {});
    const d2 = new Device(file);
    let code = "";
    try {
      d2.reboot();
    } catch (e) {
      if (isShadowOtaError(e)) code = e.code;
      if (isShadowOtaError(e)) expect(e.platformCode).toBe(0x7204);
    }
    expect(code).toBe(OTA_CODES.OTA_NO_BOOTABLE_APP);
    d2.close();
  });
});

describe("the descriptor gate", () => {
  it("nothing reaches flash before accept; abort after the descriptor leaves the flash byte-identical", () => {
    const d = freshDevice();
    const before = d.snapshot();
    const img = buildImage({ version: "1.1.0" });
    d.slot.begin();
    expect(d.slot.write(img.subarray(0, 100))).toBeUndefined();
    expect(d.slot.candidateDescriptor()).toBeUndefined();
    const desc = d.slot.write(img.subarray(100, 1000));
    expect(desc).toMatchObject({ version: "1.1.0", projectName: "shadow-ota", magicWord: 0xabcd5432 });
    expect(d.slot.writerState()).toMatchObject({ state: "headReady", written: 0 });
    expect(outcome(() => d.slot.write(img.subarray(1000)))).toBe(OTA_CODES.OTA_INVALID_STATE);
    expect(d.snapshot().equals(before)).toBe(true);
    d.slot.abort();
    d.slot.abort(); // twice is fine
    expect(d.snapshot().equals(before)).toBe(true);
    expect(d.reboot().partition.label).toBe("factory");
    d.close();
  });

  it("accept writes the buffered head plus the rest of the chunk; only touched sectors are erased", () => {
    // ota_0 starts full of an old image's bytes (0x00 here) to see which sectors get erased
    const d = freshDevice({ factory: buildImage({ version: "1.0.0" }), ota_0: new Uint8Array(0x10000) });
    const img = buildImage({ version: "1.1.0", segments: [3000, 2000] });
    d.slot.begin();
    expect(d.slot.write(img.subarray(0, 2000))).toBeDefined();
    d.slot.accept();
    expect(d.slot.writerState()).toMatchObject({ state: "writing", written: 2000 });
    expect(outcome(() => d.slot.accept())).toBe(OTA_CODES.OTA_INVALID_STATE);
    expect(d.slot.write(img.subarray(2000))).toBeUndefined();
    d.slot.end();
    expect(readPartition(d.file, "ota_0").subarray(0, img.length).equals(Buffer.from(img))).toBe(true);
    // erased sector by sector as data arrived: the image covers 2 sectors; the slot's rest is untouched
    const slot = readPartition(d.file, "ota_0");
    expect(img.length).toBeGreaterThan(SECTOR);
    expect(img.length).toBeLessThan(2 * SECTOR);
    expect(slot.subarray(img.length, 2 * SECTOR).equals(Buffer.alloc(2 * SECTOR - img.length, 0xff))).toBe(true);
    expect(slot.subarray(2 * SECTOR).equals(Buffer.alloc(0x10000 - 2 * SECTOR, 0x00))).toBe(true);
    d.slot.setBootPartition();
    expect(outcome(() => d.slot.setBootPartition())).toBe(OTA_CODES.OTA_INVALID_STATE);
    d.close();
  });

  it("writes before begin and set boot before end are refused with OTA_INVALID_STATE", () => {
    const d = freshDevice();
    expect(outcome(() => d.slot.write(new Uint8Array(4)))).toBe(OTA_CODES.OTA_INVALID_STATE);
    expect(outcome(() => d.slot.end())).toBe(OTA_CODES.OTA_INVALID_STATE);
    expect(outcome(() => d.slot.setBootPartition())).toBe(OTA_CODES.OTA_INVALID_STATE);
    d.close();
  });

  it("bad arguments are TypeError / RangeError, not device errors", () => {
    const d = freshDevice();
    d.slot.begin();
    // (the native module throws the main realm's TypeError/RangeError, so compare names, not classes)
    const nameOf = (fn: () => void): string => {
      try {
        fn();
        return "none";
      } catch (e) {
        return (e as Error).name;
      }
    };
    expect(nameOf(() => d.slot.write("abc" as unknown as Uint8Array))).toBe("TypeError");
    expect(nameOf(() => d.slot.write(new Uint16Array(4) as unknown as Uint8Array))).toBe("TypeError");
    expect(nameOf(() => d.slot.begin({ imageSize: -1 }))).toBe("RangeError");
    expect(nameOf(() => d.slot.resume(2 ** 33))).toBe("RangeError");
    expect(nameOf(() => d.slot.armPowerCut(1.5, 0))).toBe("RangeError");
    d.close();
  });

  it("error numbers map to stable codes", () => {
    expect(otaCodeFor(0x7101)).toBe("OTA_IMAGE_BAD_MAGIC");
    expect(otaCodeFor(0x1506)).toBe("OTA_PENDING_VERIFY");
    expect(otaCodeFor(0x6003)).toBe("OTA_FLASH_ERROR");
    expect(otaCodeFor(0x9999)).toBe("OTA_PLATFORM_ERROR");
  });
});

describe("resume", () => {
  const img = buildImage({ version: "1.1.0", segments: [20000, 12000, 800] });

  function writeRange(d: Device, from: number, to: number, step = 1000): void {
    for (let off = from; off < to; off += step) {
      const desc = d.slot.write(img.subarray(off, Math.min(to, off + step)));
      if (desc !== undefined) d.slot.accept();
    }
  }

  it("after a disconnect: resumes at the sector boundary below the offset and completes", () => {
    const d = freshDevice();
    d.slot.begin({ imageSize: img.length });
    writeRange(d, 0, 13500);
    d.slot.abort(); // connection dropped
    const at = d.slot.resume(13500, { imageSize: img.length });
    expect(at).toBe(12288);
    expect(d.slot.candidateDescriptor()).toMatchObject({ version: "1.1.0" });
    writeRange(d, at, img.length, 777);
    d.slot.end();
    d.slot.setBootPartition();
    expect(d.reboot()).toMatchObject({ slot: 0, state: "PENDING_VERIFY" });
    d.close();
  });

  it("after a reboot in the middle (power cut while writing): resumes and completes", () => {
    const d = freshDevice();
    d.slot.begin();
    writeRange(d, 0, 9000);
    d.slot.armPowerCut(1500, 7); // dies inside the next writes
    expect(outcome(() => writeRange(d, 9000, 20000))).toBe(OTA_CODES.OTA_POWER_LOST);
    expect(d.reboot().partition.label).toBe("factory");
    const at = d.slot.resume(9000);
    expect(at).toBe(8192);
    writeRange(d, at, img.length);
    d.slot.end();
    d.slot.setBootPartition();
    expect(d.reboot().descriptor.version).toBe("1.1.0");
    d.close();
  });

  it("an offset below one sector starts over with the descriptor gate", () => {
    const d = freshDevice();
    expect(d.slot.resume(4000)).toBe(0);
    expect(d.slot.write(img.subarray(0, 4096))).toBeDefined();
    d.close();
  });

  it("a damaged prefix is refused with OTA_RESUME_MISMATCH", () => {
    const d = freshDevice();
    d.slot.begin();
    writeRange(d, 0, 9000);
    d.slot.abort();
    writeAt(d.file, partition("ota_0").offset, Buffer.from([0x00])); // magic byte gone
    d.reboot();
    expect(outcome(() => d.slot.resume(9000))).toBe(OTA_CODES.OTA_RESUME_MISMATCH);
    d.close();
  });

  it("damaged data after the header is caught at end() by the SHA-256", () => {
    const d = freshDevice();
    d.slot.begin();
    writeRange(d, 0, 9000);
    d.slot.abort();
    writeAt(d.file, partition("ota_0").offset + 5000, Buffer.from([0x00, 0x00]));
    const at = d.slot.resume(9000);
    const code = outcome(() => {
      writeRange(d, at, img.length);
      d.slot.end();
    });
    expect([OTA_CODES.OTA_IMAGE_BAD_CHECKSUM, OTA_CODES.OTA_IMAGE_BAD_HASH]).toContain(code);
    expect(d.reboot().partition.label).toBe("factory");
    d.close();
  });
});
