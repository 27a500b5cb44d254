/**
 * The ESP32 layer (src/native/esp32/ota_esp32.c) run on the host against RAM-backed fakes of the ESP-IDF
 * functions it calls (test/native/esp32-fakes/esp32_fakes.c), through the same binding and HostOtaSlot
 * calls as the host layer: a whole update life (install, first boot, confirm, a second update rejected
 * by its self-test and rolled back), a download resumed after a power cut (esp_ota_resume), and the one
 * place where ESP-IDF and the host layer differ: esp_ota_begin erases the inactive otadata entry
 * (esp_ota_invalidate_inactive_ota_data_slot), so after an abandoned download the rollback target is the
 * factory app; the host layer keeps the entry, which then names a slot holding half an image. (test/native/ota-slot-contract.test.ts runs the whole contract over both layers.)
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { OTA_CODES } from "../../src/native/ota-errors";
import { type OtaHardwareLayer } from "../../src/native/ota-slot";
import { buildImage, makeFlashFile, partition, readPartition, tempDir } from "./fixtures";
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

describe("where ESP-IDF differs from the host layer", () => {
  /** 1.1.0 in ota_0 (entry 0, seq 1), 1.2.0 in ota_1 (entry 1, seq 2), both confirmed; then a third
   *  download starts (its first flash write) and is abandoned. */
  function abandonedThirdUpdate(layer: OtaHardwareLayer): Device {
    const d = device(layer);
    install(d.slot, buildImage({ version: "1.1.0" }));
    d.reboot();
    d.slot.markValid();
    install(d.slot, buildImage({ version: "1.2.0" }));
    expect(d.reboot()).toMatchObject({ slot: 1 });
    d.slot.markValid();
    expect([otadataSeq(d, 0), otadataSeq(d, 1)]).toEqual([1, 2]);
    const img = buildImage({ version: "1.3.0", segments: [20000, 8000] }); // far more than the first 4 KiB
    d.slot.begin();
    expect(d.slot.write(img.subarray(0, 4096))).toBeDefined();
    d.slot.accept(); // the first flash write: on the ESP32 it opens the esp_ota session
    d.slot.abort();
    return d;
  }

  it("ESP32: esp_ota_begin erases the inactive otadata entry; a later rollback goes to factory", () => {
    const d = abandonedThirdUpdate("esp32-fakes");
    expect([otadataSeq(d, 0), otadataSeq(d, 1)]).toEqual([undefined, 2]);
    d.slot.markInvalidAndReboot();
    expect(d.slot.runningDescriptor()?.version).toBe("1.0.0");
    expect(d.slot.lastBoot()).toMatchObject({ slot: -1 });
    d.close();
  });

  it("host: the inactive entry stays and names a slot with half an image: no rollback is possible", () => {
    const d = abandonedThirdUpdate("host");
    expect([otadataSeq(d, 0), otadataSeq(d, 1)]).toEqual([1, 2]);
    expect(outcome(() => d.slot.markInvalidAndReboot())).toBe(OTA_CODES.OTA_ROLLBACK_FAILED);
    expect(d.slot.runningDescriptor()?.version).toBe("1.2.0");
    d.close();
  });

  it("ESP32: the otadata sector is erased only by a real flash write, never by begin() alone", () => {
    const d = device("esp32-fakes");
    install(d.slot, buildImage({ version: "1.1.0" }));
    d.reboot();
    d.slot.markValid();
    install(d.slot, buildImage({ version: "1.2.0" }));
    d.reboot();
    d.slot.markValid();
    d.slot.begin();
    d.slot.write(buildImage({ version: "1.3.0" }).subarray(0, 100));
    d.slot.abort(); // refused before the head was complete: nothing reached flash, no esp_ota session
    expect([otadataSeq(d, 0), otadataSeq(d, 1)]).toEqual([1, 2]);
    expect(partition("otadata").offset).toBeGreaterThan(0);
    d.close();
  });
});
