/**
 * Contract details of the native OTA slot that the scenario tests do not pin down, each through the same
 * HostOtaSlot path a user takes: the descriptor appears at exactly byte 288; the slot is erased sector by
 * sector as data arrives (never ahead of the data, even with the image size declared); errors carry the
 * platform's own number (esp_err_t / simulator number, errno for file errors); close() and abort() are
 * safe twice and calls after close() are refused with a code; otadata whose active seq is close to 2^32
 * makes set boot fail loudly instead of writing the unused seq 0xFFFFFFFF.
 *
 * The whole suite runs twice: over the host layer (src/native/host/, the file-backed flash) and over the
 * ESP32 layer (src/native/esp32/ota_esp32.c, built on the host against RAM-backed fakes of the ESP-IDF
 * functions it calls: test/native/esp32-fakes/esp32_fakes.c, which cites the ESP-IDF rule each fake
 * follows). Same binding, same calls, same expectations.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { ShadowOtaError } from "../../src/core/errors";
import { OTA_CODES } from "../../src/native/ota-errors";
import { HostOtaSlot, type OtaHardwareLayer } from "../../src/native/ota-slot";
import { OTA_STATE, otaSelectEntry } from "../../src/tools/flash-file";
import { buildImage, makeFlashFile, partition, SECTOR, tempDir, writeAt } from "./fixtures";
import { Device, install, outcome } from "./harness";

const dir = tempDir("ota-contract-test");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
const LAYERS: OtaHardwareLayer[] = ["host", "esp32-fakes"];

describe.each(LAYERS)("%s layer", (layer) => {
  function device(images: Record<string, Uint8Array> = { factory: buildImage({ version: "1.0.0" }) }): Device {
    const d = new Device(makeFlashFile(path.join(dir, `flash-${n++}.bin`), images), 0, layer);
    d.reboot();
    return d;
  }

  /** What a call threw, as { code, platformCode, detail }. */
  function thrown(fn: () => unknown): { code: string; platformCode: number | undefined; message: string; errno?: unknown } {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof ShadowOtaError)) throw e;
      return { code: e.code, platformCode: e.platformCode, message: e.message, errno: e.detail?.errno };
    }
    throw new Error("expected a ShadowOtaError");
  }

  describe("the descriptor gate opens at exactly 288 bytes", () => {
    it("287 bytes: no descriptor, flash untouched; byte 288: the descriptor", () => {
      const d = device();
      const before = d.snapshot();
      const img = buildImage({ version: "1.1.0" });
      d.slot.begin();
      expect(d.slot.write(img.subarray(0, 287))).toBeUndefined();
      expect(d.slot.writerState()).toMatchObject({ state: "head", written: 0 });
      expect(d.slot.write(img.subarray(287, 288))).toMatchObject({ version: "1.1.0", projectName: "shadow-ota" });
      expect(d.slot.writerState()).toMatchObject({ state: "headReady", written: 0 });
      expect(d.snapshot().equals(before)).toBe(true);
      d.slot.abort();
      d.close();
    });
  });

  describe("erase sector by sector as data arrives", () => {
    it.each([
      ["1000-byte chunks", [1000]],
      ["4 KiB chunks", [4096]],
      ["mixed chunks", [4096 * 2 + 5, 17, 333]],
    ])("%s, image size declared: erased sectors always = the sectors the written data reached", (_name, chunks) => {
      const d = device();
      const img = buildImage({ version: "1.1.0", segments: [9000, 7000, 4000] });
      expect(img.length).toBeGreaterThan(4 * SECTOR);
      const base = partition("ota_0").offset;
      d.slot.trace(true);
      d.slot.begin({ imageSize: img.length });
      let off = 0;
      for (let k = 0; off < img.length; k++) {
        const len = chunks[k % chunks.length]!;
        if (d.slot.write(img.subarray(off, off + len)) !== undefined) d.slot.accept();
        off += len;
        const written = d.slot.writerState().written;
        const ops = d.slot.trace();
        const erases = ops.filter((o) => o.kind === "erase").map((o) => o.address - base);
        // each sector once, in order, and only as far as the data has reached
        expect(erases).toEqual(Array.from({ length: erases.length }, (_, i) => i * SECTOR));
        expect(erases.length).toBe(Math.ceil(written / SECTOR));
        for (const p of ops.filter((o) => o.kind === "program")) {
          expect(p.address - base + p.length).toBeLessThanOrEqual(erases.length * SECTOR);
        }
      }
      d.slot.end();
      expect(d.slot.trace(false).filter((o) => o.kind === "erase")).toHaveLength(Math.ceil(img.length / SECTOR));
      d.close();
    });
  });

  describe("errors carry the platform's own number", () => {
    it("image refusals, rollback state, power loss, file and partition-table errors", () => {
      const d = device();
      d.slot.begin();
      let e = thrown(() => d.slot.write(new Uint8Array(Buffer.from("<html>"))));
      expect(e).toMatchObject({ code: OTA_CODES.OTA_IMAGE_BAD_MAGIC, platformCode: 0x7101 });
      expect(e.message).toContain("OTA_ERR_IMAGE_MAGIC (0x7101)");
      d.slot.abort();

      d.slot.begin();
      // refused as soon as the 24-byte header is in; the writer keeps the number, later writes are refused
      e = thrown(() => d.slot.write(buildImage({ version: "1.1.0", chipId: 9 }).subarray(0, 100)));
      expect(e).toMatchObject({ code: OTA_CODES.OTA_IMAGE_WRONG_CHIP, platformCode: 0x7103 });
      expect(d.slot.writerState()).toMatchObject({ state: "failed", error: 0x7103 });
      expect(thrown(() => d.slot.write(new Uint8Array(4)))).toMatchObject({ code: OTA_CODES.OTA_INVALID_STATE, platformCode: 0x103 });
      d.slot.abort();

      install(d.slot, buildImage({ version: "1.1.0" }));
      d.reboot();
      expect(thrown(() => d.slot.begin())).toMatchObject({ code: OTA_CODES.OTA_PENDING_VERIFY, platformCode: 0x1506 });
      d.slot.markValid();

      d.slot.armPowerCut(5000, 3);
      expect(thrown(() => install(d.slot, buildImage({ version: "1.2.0", segments: [8000, 4000] })))).toMatchObject({
        code: OTA_CODES.OTA_POWER_LOST,
        platformCode: 0x7201,
      });
      d.close();

      expect(thrown(() => new HostOtaSlot({ flashPath: path.join(dir, "missing.bin"), layer }))).toMatchObject({
        code: OTA_CODES.OTA_FLASH_FILE_ERROR,
        platformCode: 0x7202,
        errno: 2, // ENOENT
      });
      const noTable = path.join(dir, "no-table.bin");
      fs.writeFileSync(noTable, Buffer.alloc(0x40000, 0xff));
      expect(thrown(() => new HostOtaSlot({ flashPath: noTable, layer }))).toMatchObject({
        code: OTA_CODES.OTA_PARTITION_TABLE_INVALID,
        platformCode: 0x7203,
      });
    });
  });

  describe("close and abort", () => {
    it("are safe twice; every other call after close is OTA_INVALID_STATE (0x103)", () => {
      const d = device();
      d.slot.begin();
      d.slot.close();
      d.slot.close();
      d.slot.abort();
      d.slot.abort();
      for (const call of [
        () => d.slot.begin(),
        () => d.slot.write(new Uint8Array(4)),
        () => d.slot.end(),
        () => d.slot.runningPartition(),
        () => d.slot.markValid(),
        () => d.slot.boot(),
      ]) {
        expect(thrown(call)).toMatchObject({ code: OTA_CODES.OTA_INVALID_STATE, platformCode: 0x103 });
      }
    });
  });

  describe("otadata with an ota_seq close to 2^32 (damaged, CRC still matching)", () => {
    it("set boot picks the next seq at once, and refuses (OTA_SELECT_INFO_INVALID) when no valid seq is left", () => {
      const d = device({ factory: buildImage({ version: "1.0.0" }), ota_0: buildImage({ version: "1.1.0" }) });
      writeAt(d.file, partition("otadata").offset, otaSelectEntry(0xfffffffd, OTA_STATE.VALID));
      expect(d.reboot()).toMatchObject({ slot: 0, state: "VALID" });
      // ota_1 needs seq 0xFFFFFFFE: the closed form finds it without ESP-IDF's 2^31-step loop
      install(d.slot, buildImage({ version: "1.2.0" }));
      expect(d.reboot()).toMatchObject({ slot: 1, state: "PENDING_VERIFY" });
      d.slot.markValid();
      // ota_0 would need seq 0xFFFFFFFF, the "unused" marker: refused instead of silently not switching
      expect(outcome(() => install(d.slot, buildImage({ version: "1.3.0" })))).toBe(OTA_CODES.OTA_SELECT_INFO_INVALID);
      const boot = d.reboot();
      expect(boot).toMatchObject({ slot: 1, state: "VALID" });
      expect(boot.descriptor.version).toBe("1.2.0");
      d.close();
    });
  });
});
