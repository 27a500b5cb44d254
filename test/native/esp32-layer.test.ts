/**
 * The ESP32 layer (src/native/esp32/ota_esp32.c) run on the host against RAM-backed fakes of the ESP-IDF
 * functions it calls (test/native/esp32-fakes/esp32_fakes.c), through the same binding and HostOtaSlot
 * calls as the host layer, with the same expectations on both: a whole update life (install, first boot,
 * confirm, a second update rejected by its self-test and rolled back), a download resumed after a power cut
 * (esp_ota_resume), and esp_ota_begin's erase of the inactive otadata entry
 * (esp_ota_invalidate_inactive_ota_data_slot, ESP-IDF >= 5.5): after an abandoned download, complete or not,
 * the rollback target is the factory app, never the slot the download went into. The host layer used to keep
 * that entry (no rollback possible, or a rollback into an image that never passed end() + set boot); it now
 * erases it at the same moment, through its own flash calls. (test/native/ota-slot-contract.test.ts runs the
 * whole contract over both layers.)
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { OTA_CODES } from "../../src/native/ota-errors";
import { type OtaHardwareLayer } from "../../src/native/ota-slot";
import { OTA_STATE, otaSelectEntry } from "../../src/tools/flash-file";
import { buildImage, makeFlashFile, partition, readPartition, tempDir, writeAt } from "./fixtures";
import { Device, install, outcome } from "./harness";

const dir = tempDir("esp32-layer-test");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
function device(layer: OtaHardwareLayer): Device {
  const file = makeFlashFile(path.join(dir, `flash-${n++}.bin`), { factory: buildImage({ version: "1.0.0" }) });
  const d = new Device(file, 0, layer);
  d.reboot();
  return d;
}

/** seq of otadata entry `i` (0/1), undefined when the sector is erased. */
function otadataSeq(d: Device, i: number): number | undefined {
  const od = readPartition(d.file, "otadata");
  const seq = od.readUInt32LE(i * 0x1000);
  return seq === 0xffffffff ? undefined : seq;
}

describe.each<OtaHardwareLayer>(["host", "esp32-fakes"])("%s layer: the same life of a device", (layer) => {
  it("install, first boot PENDING_VERIFY, confirm; a second update that fails its self-test rolls back", () => {
    const d = device(layer);
    install(d.slot, buildImage({ version: "1.1.0" }));
    expect(d.reboot()).toMatchObject({ slot: 0, state: "PENDING_VERIFY" });
    expect(d.slot.runningDescriptor()?.version).toBe("1.1.0");
    expect(outcome(() => d.slot.begin())).toBe(OTA_CODES.OTA_PENDING_VERIFY);
    d.slot.markValid();
    expect(d.slot.runningState()).toBe("VALID");

    install(d.slot, buildImage({ version: "1.2.0" }));
    expect(d.reboot()).toMatchObject({ slot: 1, state: "PENDING_VERIFY" });
    d.slot.markInvalidAndReboot(); // the self-test failed
    expect(d.slot.lastBoot()).toMatchObject({ slot: 0 });
    expect(d.slot.runningDescriptor()?.version).toBe("1.1.0");
    expect(d.slot.slotState(1)).toBe("INVALID");
    d.close();
  });

  it("a download cut by a power loss resumes (esp_ota_resume on the ESP32) and boots", () => {
    const d = device(layer);
    const img = buildImage({ version: "1.1.0", segments: [20000, 12000, 800] });
    const write = (from: number, to: number) => {
      for (let off = from; off < to; off += 1000) {
        if (d.slot.write(img.subarray(off, Math.min(to, off + 1000))) !== undefined) d.slot.accept();
      }
    };
    d.slot.begin();
    write(0, 9000);
    d.slot.armPowerCut(1500, 7);
    expect(outcome(() => write(9000, 20000))).toBe(OTA_CODES.OTA_POWER_LOST);
    expect(d.reboot().partition.label).toBe("factory");
    const at = d.slot.resume(9000);
    expect(at).toBe(8192);
    write(at, img.length);
    d.slot.end();
    d.slot.setBootPartition();
    expect(d.reboot()).toMatchObject({ slot: 0, state: "PENDING_VERIFY" });
    expect(readPartition(d.file, "ota_0").subarray(0, img.length).equals(Buffer.from(img))).toBe(true);
    d.close();
  });
});

/** esp_ota_begin's rollback step (ESP-IDF >= 5.5, the v6.0 Moddable SDK 8.2 builds with): when the session's
 *  first flash write happens, esp_ota_invalidate_inactive_ota_data_slot() → erase_last_boot_app_partition(true)
 *  erases the inactive otadata entry unless it names the running slot. The host layer does the same through
 *  its own flash calls (ota_host.c h_begin_session → ota_otadata_invalidate_inactive), so both layers agree. */
describe.each<OtaHardwareLayer>(["host", "esp32-fakes"])("%s layer: esp_ota_begin invalidates the inactive otadata entry", (layer) => {
  /** 1.1.0 in ota_0 (entry 0, seq 1), 1.2.0 in ota_1 (entry 1, seq 2), both confirmed; runs ota_1. */
  function onOta1(): Device {
    const d = device(layer);
    install(d.slot, buildImage({ version: "1.1.0" }));
    d.reboot();
    d.slot.markValid();
    install(d.slot, buildImage({ version: "1.2.0" }));
    expect(d.reboot()).toMatchObject({ slot: 1 });
    d.slot.markValid();
    expect([otadataSeq(d, 0), otadataSeq(d, 1)]).toEqual([1, 2]);
    return d;
  }

  /** Streams img[from, to) into the open session, accepting at the descriptor gate. */
  function stream(d: Device, img: Uint8Array, from: number, to: number): void {
    for (let off = from; off < to; off += 1000) {
      if (d.slot.write(img.subarray(off, Math.min(to, off + 1000))) !== undefined) d.slot.accept();
    }
  }

  it("a download started and abandoned: the entry naming ota_0 is gone, so a later rollback goes to factory", () => {
    const d = onOta1();
    const img = buildImage({ version: "1.3.0", segments: [20000, 8000] }); // far more than the first 4 KiB
    d.slot.begin();
    expect(d.slot.write(img.subarray(0, 4096))).toBeDefined();
    d.slot.accept(); // the first flash write: esp_ota_begin runs here on the ESP32
    d.slot.abort();
    expect([otadataSeq(d, 0), otadataSeq(d, 1)]).toEqual([undefined, 2]);
    d.slot.markInvalidAndReboot();
    expect(d.slot.runningDescriptor()?.version).toBe("1.0.0");
    expect(d.slot.lastBoot()).toMatchObject({ slot: -1 });
    d.close();
  });

  it.each([
    ["aborted before end()", false],
    ["ended but never set to boot", true],
  ])("a complete download %s is never a rollback target: mark invalid boots the factory app, not it", (_what, ended) => {
    const d = onOta1();
    const img = buildImage({ version: "1.3.0", segments: [20000, 8000] });
    d.slot.begin();
    stream(d, img, 0, img.length); // every byte in ota_0, the magic byte held back until end() verifies
    if (ended) d.slot.end();
    d.slot.abort();
    const slot = readPartition(d.file, "ota_0").subarray(0, img.length);
    expect(slot.subarray(1).equals(Buffer.from(img.subarray(1)))).toBe(true);
    expect(slot[0]).toBe(ended ? 0xe9 : 0xff); // after end() the slot verifies
    d.slot.markInvalidAndReboot(); // the running 1.2.0 fails a later check
    expect(d.slot.runningDescriptor()?.version).toBe("1.0.0");
    expect(d.slot.lastBoot()).toMatchObject({ slot: -1 });
    d.close();
  });

  it("nothing reaches otadata before the first flash write: begin() alone, a refusal at the descriptor gate", () => {
    const d = onOta1();
    const img = buildImage({ version: "1.3.0" });
    const before = d.snapshot();
    d.slot.begin();
    d.slot.write(img.subarray(0, 100));
    d.slot.abort(); // nothing reached flash, no esp_ota session
    d.slot.begin();
    expect(d.slot.write(img.subarray(0, 2000))).toBeDefined(); // the descriptor, at byte 288
    d.slot.abort(); // refused at the gate (a policy refusal)
    expect(d.snapshot().equals(before)).toBe(true);
    d.close();
  });

  it("an inactive entry that names the running slot stays (erase_last_boot_app_partition: ESP_FAIL, nothing erased)", () => {
    const file = makeFlashFile(path.join(dir, `flash-${n++}.bin`), {
      factory: buildImage({ version: "1.0.0" }),
      ota_0: buildImage({ version: "1.1.0" }),
    });
    const od = partition("otadata").offset;
    writeAt(file, od, otaSelectEntry(3, OTA_STATE.VALID)); // active: seq 3 → ota_0
    writeAt(file, od + 0x1000, otaSelectEntry(1, OTA_STATE.VALID)); // inactive: seq 1 → ota_0 too
    const d = new Device(file, 0, layer);
    expect(d.reboot()).toMatchObject({ slot: 0, entry: 0 });
    install(d.slot, buildImage({ version: "1.2.0" }), { noSetBoot: true }); // into ota_1
    d.slot.abort();
    expect([otadataSeq(d, 0), otadataSeq(d, 1)]).toEqual([3, 1]);
    d.close();
  });

  it("the erase is the session's first flash operation and power cuts hit it: cut inside it, the old app boots VALID", () => {
    const od = partition("otadata").offset;
    const ota0 = partition("ota_0").offset;
    const img = buildImage({ version: "1.3.0", segments: [20000, 8000] });
    const d = onOta1();
    d.slot.begin();
    expect(d.slot.write(img.subarray(0, 4096))).toBeDefined();
    d.slot.trace(true);
    d.slot.accept();
    const ops = d.slot.trace(false).map((op) => `${op.kind}@${op.address.toString(16)}`);
    // The head is programmed from byte 1: byte 0, the magic, waits for end() (ota_writer.h, the held byte).
    expect(ops.slice(0, 3)).toEqual([`erase@${od.toString(16)}`, `erase@${ota0.toString(16)}`, `program@${(ota0 + 1).toString(16)}`]);
    d.slot.abort();
    for (const budget of [1, 100, 4095]) {
      const c = onOta1();
      c.slot.begin();
      c.slot.write(img.subarray(0, 4096));
      c.slot.armPowerCut(budget, 3);
      expect(outcome(() => c.slot.accept())).toBe(OTA_CODES.OTA_POWER_LOST);
      expect(c.slot.cutOperation()).toMatchObject({ kind: "erase", address: od });
      expect(c.reboot()).toMatchObject({ slot: 1, state: "VALID" });
      expect(c.slot.runningDescriptor()?.version).toBe("1.2.0");
      install(c.slot, img); // the update can be done again
      expect(c.reboot()).toMatchObject({ slot: 0, state: "PENDING_VERIFY" });
      c.close();
    }
    d.close();
  });

  it("esp_ota_resume does not invalidate: a resumed session leaves otadata as it finds it", () => {
    const d = onOta1();
    const img = buildImage({ version: "1.3.0", segments: [20000, 12000, 800] });
    d.slot.begin();
    stream(d, img, 0, 9000);
    d.slot.armPowerCut(1500, 7);
    expect(outcome(() => stream(d, img, 9000, 20000))).toBe(OTA_CODES.OTA_POWER_LOST);
    expect(d.reboot()).toMatchObject({ slot: 1 });
    expect([otadataSeq(d, 0), otadataSeq(d, 1)]).toEqual([undefined, 2]); // erased by the begin
    // Put an entry back (as if an older ESP-IDF had begun this download): resume must not touch it.
    writeAt(d.file, partition("otadata").offset, otaSelectEntry(1, OTA_STATE.VALID));
    d.reboot();
    const at = d.slot.resume(9000);
    expect(at).toBe(8192);
    stream(d, img, at, img.length);
    d.slot.end();
    expect([otadataSeq(d, 0), otadataSeq(d, 1)]).toEqual([1, 2]);
    d.slot.setBootPartition();
    expect(d.reboot()).toMatchObject({ slot: 0, state: "PENDING_VERIFY" });
    d.close();
  });
});

/** esp_ota_mark_app_valid_cancel_rollback → esp_ota_current_ota_is_workable(true) (ESP-IDF v6.0 and master
 *  alike) reads otadata only: the active entry becomes VALID; it never asks which partition runs. The host
 *  does the same (ota_otadata_mark_valid), so there is nothing to align; this pins it on both layers. */
describe.each<OtaHardwareLayer>(["host", "esp32-fakes"])("%s layer: mark valid does not check the running partition", (layer) => {
  it("after a fall-back to factory (the new image does not verify), mark valid confirms the active entry anyway", () => {
    const d = device(layer);
    install(d.slot, buildImage({ version: "1.1.0" })); // entry 0: seq 1 NEW → ota_0
    const at = partition("ota_0").offset + 600;
    writeAt(d.file, at, Buffer.from([readPartition(d.file, "ota_0")[600]! ^ 0x5a])); // ota_0 no longer verifies
    expect(d.reboot()).toMatchObject({ slot: -1 }); // NEW → PENDING_VERIFY written, then the fall-back
    expect(d.slot.runningDescriptor()?.version).toBe("1.0.0");
    expect(d.slot.slotState(0)).toBe("PENDING_VERIFY");
    d.slot.markValid(); // the factory app runs; ESP-IDF marks the active entry (ota_0) VALID all the same
    expect(d.slot.slotState(0)).toBe("VALID");
    expect(d.reboot()).toMatchObject({ slot: -1 }); // and the bootloader keeps falling back: nothing bricked
    d.close();
  });
});
