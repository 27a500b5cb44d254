/**
 * The host's otadata and simulated bootloader against ESP-IDF's own rules, one test per rule, each through
 * the real native module over a host flash file (issue 7, "Bootloader and otadata: ESP-IDF's rules, bit for
 * bit"). The ESP-IDF function each rule comes from is named in the test; the rules table with the same
 * names is in docs/native-ota.md. Rollback is enabled (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE), anti-rollback
 * is not.
 *
 * Also the host flash's programming model: a page program cut by the power leaves any subset of the bits it
 * was clearing (not a prefix of bytes), and a cut erase leaves a mix of old and erased bits.
 *
 * otadata is laid out by hand here (32-byte esp_ota_select_entry_t at +0 and +0x1000: seq, 20-byte label,
 * state, crc32_le(0xFFFFFFFF, seq)) so each rule starts from exactly the state it is about.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { OTA_CODES } from "../../src/native/ota-errors";
import { FlashOperation, HostOtaSlot } from "../../src/native/ota-slot";
import { espCrc32Le, OTA_STATE, otaSelectEntry } from "../../src/tools/flash-file";
import { buildImage, makeFlashFile, partition, PartitionSpec, SMALL_TWO_OTA, tempDir, writeAt } from "./fixtures";
import { Device, install, outcome } from "./harness";

const dir = tempDir("ota-bootloader-rules");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const V100 = buildImage({ version: "1.0.0", seed: 1 });
const V110 = buildImage({ version: "1.1.0", seed: 2 });
const V120 = buildImage({ version: "1.2.0", seed: 3 });
const V121 = buildImage({ version: "1.2.1", seed: 4 });
const NO_FACTORY: PartitionSpec[] = SMALL_TWO_OTA.filter((p) => p.label !== "factory");
const OTADATA = partition("otadata").offset;

let n = 0;
function flashFile(images: Record<string, Uint8Array>, parts: PartitionSpec[] = SMALL_TWO_OTA): string {
  return makeFlashFile(path.join(dir, `flash-${n++}.bin`), images, parts);
}

interface Entry { seq: number; state: number; crc: number; crcOk: boolean; label: Buffer }

function entries(file: string): [Entry, Entry] {
  const b = fs.readFileSync(file);
  const one = (off: number): Entry => {
    const seq = b.readUInt32LE(off);
    const crc = b.readUInt32LE(off + 28);
    return { seq, state: b.readUInt32LE(off + 24), crc, crcOk: crc === espCrc32Le(b.subarray(off, off + 4)), label: b.subarray(off + 4, off + 24) };
  };
  return [one(OTADATA), one(OTADATA + 0x1000)];
}

/** Writes entry `i` (0/1) as ESP-IDF would (erased sector, 32 bytes at its start). */
function putEntry(file: string, i: 0 | 1, bytes: Uint8Array): void {
  const sector = new Uint8Array(0x1000).fill(0xff);
  sector.set(bytes, 0);
  writeAt(file, OTADATA + i * 0x1000, sector);
}

function entryWithCrc(seq: number, state: number, crc: number): Uint8Array {
  const e = otaSelectEntry(seq, state);
  new DataView(e.buffer).setUint32(28, crc >>> 0, true);
  return e;
}

/** Flips one payload byte of the image stored in `label` (its checksum and SHA-256 no longer match). */
function corrupt(file: string, label: string): void {
  const at = partition(label).offset + 600;
  const b = fs.readFileSync(file);
  writeAt(file, at, Buffer.from([b[at]! ^ 0x5a]));
}

/** Boots a fresh HostOtaSlot over `file` and returns it with the flash operations the boot did. */
function tracedBoot(file: string): { slot: HostOtaSlot; ops: FlashOperation[]; boot: ReturnType<HostOtaSlot["boot"]> } {
  const slot = new HostOtaSlot({ flashPath: file });
  slot.trace(true);
  const boot = slot.boot();
  return { slot, ops: slot.trace(false), boot };
}

/** factory 1.0.0 → ota_0 1.1.0 (confirmed): entry 0 = seq 1 VALID, entry 1 erased. */
function onOta0(): Device {
  const d = new Device(flashFile({ factory: V100 }));
  d.reboot();
  install(d.slot, V110);
  d.reboot();
  d.slot.markValid();
  d.reboot();
  return d;
}

/** onOta0, then ota_0 → ota_1 1.2.0 (confirmed): entry 0 = seq 1 VALID, entry 1 = seq 2 VALID, runs ota_1. */
function onOta1(): Device {
  const d = onOta0();
  install(d.slot, V120);
  d.reboot();
  d.slot.markValid();
  d.reboot();
  return d;
}

describe("set boot (esp_ota_set_boot_partition → esp_rewrite_ota_data)", () => {
  it("set boot twice without a reboot: the second rewrites the active entry in place, the VALID entry a rollback needs survives", () => {
    const d = onOta0();
    install(d.slot, V120); // entry 1: seq 2, NEW, ota_1
    expect(entries(d.file)[1]).toMatchObject({ seq: 2, state: OTA_STATE.NEW });
    install(d.slot, V121); // the active entry (1) already names ota_1: rewritten in place
    const [e0, e1] = entries(d.file);
    expect(e0).toMatchObject({ seq: 1, state: OTA_STATE.VALID, crcOk: true });
    expect(e1).toMatchObject({ seq: 2, state: OTA_STATE.NEW, crcOk: true });
    expect(d.reboot()).toMatchObject({ slot: 1, state: "PENDING_VERIFY" });
    expect(d.slot.runningDescriptor()?.version).toBe("1.2.1");
    d.slot.markInvalidAndReboot(); // the way back is still there
    expect(d.slot.lastBoot()).toMatchObject({ slot: 0, state: "VALID" });
    expect(d.slot.runningDescriptor()?.version).toBe("1.1.0");
    d.close();
  });

  it("a new entry keeps the label bytes of the sector it is written into (rewrite_ota_seq changes only seq, state, crc)", () => {
    const file = flashFile({ factory: V100, ota_0: V110 });
    const e = otaSelectEntry(1, OTA_STATE.VALID);
    e.fill(0x11, 4, 24);
    putEntry(file, 0, e);
    const old = otaSelectEntry(7, OTA_STATE.INVALID); // an old, retired entry in sector 1
    old.fill(0x22, 4, 24);
    putEntry(file, 1, old);
    const d = new Device(file);
    expect(d.reboot()).toMatchObject({ slot: 0, state: "VALID" });
    install(d.slot, V120);
    const [e0, e1] = entries(file);
    expect(e0.label.equals(Buffer.alloc(20, 0x11))).toBe(true);
    expect(e1).toMatchObject({ seq: 2, state: OTA_STATE.NEW, crcOk: true });
    expect(e1.label.equals(Buffer.alloc(20, 0x22))).toBe(true);
    d.close();
  });
});

describe("boot (bootloader_utility_get_selected_boot_partition, bootloader_utility_load_boot_image)", () => {
  it("NEW → PENDING_VERIFY is written before the image is loaded: a new image that does not verify stays PENDING_VERIFY", () => {
    const d = onOta0();
    install(d.slot, V120);
    corrupt(d.file, "ota_1");
    d.close();
    const { slot, ops, boot } = tracedBoot(d.file);
    expect(boot.partition.label).toBe("ota_0");
    expect(slot.slotState(1)).toBe("PENDING_VERIFY");
    // the only writes: the erase and program of entry 1's sector
    expect(ops.map((o) => [o.kind, o.address])).toEqual([["erase", OTADATA + 0x1000], ["program", OTADATA + 0x1000]]);
    slot.close();
    // the next boot aborts it
    const again = new HostOtaSlot({ flashPath: d.file });
    expect(again.boot()).toMatchObject({ slot: 0, state: "VALID" });
    expect(again.slotState(1)).toBe("ABORTED");
    again.close();
  });

  it("the selected image does not verify: lower slots, then factory, writing nothing (ota_0 broken while ota_1 holds the previous app: factory boots)", () => {
    const d = onOta1(); // entry 0 seq 1 (ota_0), entry 1 seq 2 (ota_1), both VALID
    install(d.slot, V121); // ota_1 → ota_0: entry 0 = seq 3, NEW
    d.reboot();
    d.slot.markValid(); // entry 0 = seq 3 VALID
    d.close();
    corrupt(d.file, "ota_0");
    const before = fs.readFileSync(d.file).subarray(OTADATA, OTADATA + 0x2000);
    const { slot, ops, boot } = tracedBoot(d.file);
    expect(boot.partition.label).toBe("factory");
    expect(boot.descriptor.version).toBe("1.0.0");
    expect(ops).toEqual([]);
    expect(fs.readFileSync(d.file).subarray(OTADATA, OTADATA + 0x2000).equals(before)).toBe(true);
    slot.close();
  });

  it("a selected slot above ota_0 that does not verify: ota_0 before factory", () => {
    const d = onOta1();
    d.close();
    corrupt(d.file, "ota_1");
    const { slot, ops, boot } = tracedBoot(d.file);
    expect(boot.partition.label).toBe("ota_0");
    expect(ops).toEqual([]);
    expect(entries(d.file).map((e) => e.state)).toEqual([OTA_STATE.VALID, OTA_STATE.VALID]);
    slot.close();
  });

  it("PENDING_VERIFY entries in both sectors are ABORTED at boot, also one that is not selected and one whose CRC is wrong", () => {
    const file = flashFile({ factory: V100, ota_0: V110, ota_1: V120 });
    putEntry(file, 0, otaSelectEntry(1, OTA_STATE.PENDING_VERIFY)); // ota_0, lower seq: not the selected one
    putEntry(file, 1, otaSelectEntry(2, OTA_STATE.VALID)); // ota_1
    const d = new Device(file);
    expect(d.reboot()).toMatchObject({ slot: 1, state: "VALID" });
    expect(entries(file)[0]).toMatchObject({ seq: 1, state: OTA_STATE.ABORTED, crcOk: true });
    d.close();

    const bad = entryWithCrc(5, OTA_STATE.PENDING_VERIFY, 0x12345678);
    putEntry(file, 1, bad);
    putEntry(file, 0, otaSelectEntry(1, OTA_STATE.VALID));
    const d2 = new Device(file);
    expect(d2.reboot()).toMatchObject({ slot: 0, state: "VALID" });
    // rewritten as read, state ABORTED, its wrong CRC kept (write_otadata does not recompute it)
    expect(entries(file)[1]).toMatchObject({ seq: 5, state: OTA_STATE.ABORTED, crc: 0x12345678 });
    d2.close();
  });

  it("sequence number 0 is a valid entry (bootloader_common_ota_select_valid): (0 - 1) % 2 = slot 1", () => {
    const file = flashFile({ factory: V100, ota_0: V110, ota_1: V120 });
    putEntry(file, 0, otaSelectEntry(0, OTA_STATE.VALID));
    const d = new Device(file);
    expect(d.reboot()).toMatchObject({ slot: 1, entry: 0, state: "VALID" });
    expect(d.slot.runningDescriptor()?.version).toBe("1.2.0");
    d.close();
  });

  it("both entries invalid and no factory app: ota_0 boots, and otadata gets seq 1 VALID (set_actual_ota_seq)", () => {
    const file = flashFile({ ota_0: V110, ota_1: V120 }, NO_FACTORY);
    const d = new Device(file);
    expect(d.reboot()).toMatchObject({ slot: 0 });
    expect(entries(file)[0]).toMatchObject({ seq: 1, state: OTA_STATE.VALID, crcOk: true });
    expect(entries(file)[0].label.equals(Buffer.alloc(20, 0xff))).toBe(true);
    expect(d.slot.runningState()).toBe("VALID");
    d.close();
  });

  it("both entries invalid, no factory, ota_0 does not verify: ota_1 boots and otadata gets seq 2 VALID", () => {
    const file = flashFile({ ota_0: V110, ota_1: V120 }, NO_FACTORY);
    corrupt(file, "ota_0");
    const d = new Device(file);
    expect(d.reboot()).toMatchObject({ slot: 1 });
    expect(entries(file)[0]).toMatchObject({ seq: 2, state: OTA_STATE.VALID, crcOk: true });
    d.close();
  });

  it("both entries retired (ABORTED, CRC good) and no factory: ota_0 boots and nothing is written (not initial contents)", () => {
    const file = flashFile({ ota_0: V110, ota_1: V120 }, NO_FACTORY);
    putEntry(file, 0, otaSelectEntry(3, OTA_STATE.ABORTED));
    putEntry(file, 1, otaSelectEntry(2, OTA_STATE.INVALID));
    const before = fs.readFileSync(file);
    const { slot, ops, boot } = tracedBoot(file);
    expect(boot.partition.label).toBe("ota_0");
    expect(ops).toEqual([]);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
    slot.close();
  });
});

describe("the running app's calls (esp_ota_mark_app_valid_cancel_rollback, esp_ota_check_rollback_is_possible, esp_ota_get_state_partition)", () => {
  it("mark valid rewrites any state other than VALID (esp_ota_current_ota_is_workable)", () => {
    for (const state of [0x12345678, OTA_STATE.UNDEFINED, OTA_STATE.NEW]) {
      const file = flashFile({ factory: V100, ota_0: V110 });
      putEntry(file, 0, otaSelectEntry(1, state));
      const d = new Device(file);
      const boot = d.reboot();
      expect(boot.slot).toBe(0);
      if (state !== OTA_STATE.NEW) expect(d.slot.runningState()).toBe("UNDEFINED");
      d.slot.markValid();
      expect(entries(file)[0]).toMatchObject({ seq: 1, state: OTA_STATE.VALID, crcOk: true });
      expect(d.slot.runningState()).toBe("VALID");
      d.close();
    }
  });

  it("mark valid with no valid entry (the factory app after an erased otadata) fails like ESP-IDF (ESP_FAIL)", () => {
    const d = new Device(flashFile({ factory: V100 }));
    d.reboot();
    const before = d.snapshot();
    expect(outcome(() => d.slot.markValid())).toBe(OTA_CODES.OTA_PLATFORM_ERROR);
    expect(d.snapshot().equals(before)).toBe(true);
    d.close();
  });

  it("rollback-possible looks only at the other entry's slot: it does not verify, factory does → OTA_ROLLBACK_FAILED", () => {
    const d = onOta0();
    install(d.slot, V120);
    d.reboot(); // ota_1 PENDING_VERIFY; the other entry (0) names ota_0
    corrupt(d.file, "ota_0");
    const before = d.snapshot();
    expect(outcome(() => d.slot.markInvalidAndReboot())).toBe(OTA_CODES.OTA_ROLLBACK_FAILED);
    expect(d.snapshot().equals(before)).toBe(true);
    d.close();
  });

  it("rollback-possible with the other entry invalid looks only at factory: ota_0 verifies, factory does not → OTA_ROLLBACK_FAILED", () => {
    const file = flashFile({ factory: V100, ota_0: V110, ota_1: V120 });
    corrupt(file, "factory");
    putEntry(file, 1, otaSelectEntry(2, OTA_STATE.NEW)); // ota_1; entry 0 erased
    const d = new Device(file);
    expect(d.reboot()).toMatchObject({ slot: 1, state: "PENDING_VERIFY" });
    expect(outcome(() => d.slot.markInvalidAndReboot())).toBe(OTA_CODES.OTA_ROLLBACK_FAILED);
    d.close();
  });

  it("a state read returns the first entry (0, then 1) that names the slot with a good CRC, not the highest seq", () => {
    const file = flashFile({ factory: V100, ota_0: V110, ota_1: V120 });
    putEntry(file, 0, otaSelectEntry(1, OTA_STATE.VALID)); // ota_0
    putEntry(file, 1, otaSelectEntry(3, OTA_STATE.ABORTED)); // ota_0 too ((3 - 1) % 2), retired
    const d = new Device(file);
    expect(d.reboot()).toMatchObject({ slot: 0, entry: 0 });
    expect(d.slot.slotState(0)).toBe("VALID");
    expect(d.slot.runningState()).toBe("VALID");
    d.close();
  });
});

describe("the host flash's programming model (power cuts)", () => {
  /** factory → ota_0 installed and booted (entry 0 = seq 1 PENDING_VERIFY); mark valid erases entry 0's
   *  sector and programs 32 bytes: cut that program `at` bytes in. Returns the 32 bytes left. */
  function cutMarkValidProgram(at: number, seed: number): Buffer {
    const file = flashFile({ factory: V100 });
    const d = new Device(file);
    d.reboot();
    install(d.slot, V110);
    d.reboot();
    d.slot.armPowerCut(4096 + at, seed);
    expect(outcome(() => d.slot.markValid())).toBe(OTA_CODES.OTA_POWER_LOST);
    d.close();
    return fs.readFileSync(file).subarray(OTADATA, OTADATA + 32);
  }

  it("a cut page program leaves a subset of the bits it was clearing, anywhere in the page, not a prefix of bytes", () => {
    const target = Buffer.from(otaSelectEntry(1, OTA_STATE.VALID));
    let beyondCut = 0;
    let shortBeforeCut = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const at = 16;
      const got = cutMarkValidProgram(at, seed);
      for (let i = 0; i < 32; i++) {
        // bits only go 1 → 0 and only where the target has a 0: every 1 of the target is still 1
        if ((got[i]! & target[i]!) !== target[i]) throw new Error(`seed ${seed} byte ${i}: ${got[i]} is not between the erased byte and ${target[i]}`);
        if (i > at && got[i] !== 0xff) beyondCut++;
        if (i < at && got[i] !== target[i]) shortBeforeCut++;
      }
    }
    expect(beyondCut).toBeGreaterThan(0);
    expect(shortBeforeCut).toBeGreaterThan(0);
  });

  it("a cut erase leaves a mix: only bits set, some bytes old, some erased, some in between", () => {
    const seen = { old: 0, erased: 0, between: 0 };
    const ota0 = partition("ota_0").offset;
    for (let seed = 1; seed <= 10; seed++) {
      // factory runs (otadata erased), so the next slot is ota_0, which holds an old image
      const file = flashFile({ factory: V100, ota_0: V110 });
      const old = Buffer.from(fs.readFileSync(file).subarray(ota0, ota0 + 4096));
      const s = new HostOtaSlot({ flashPath: file });
      s.boot();
      s.begin();
      expect(s.write(V120.subarray(0, 288))).toBeDefined();
      s.armPowerCut(1024, seed); // a quarter into the erase of ota_0's first sector
      expect(outcome(() => s.accept())).toBe(OTA_CODES.OTA_POWER_LOST);
      s.close();
      const got = fs.readFileSync(file).subarray(ota0, ota0 + 4096);
      let cleared = 0;
      for (let i = 0; i < 4096; i++) {
        if ((got[i]! & old[i]!) !== old[i]) cleared++; // an erase only sets bits
        if (got[i] === old[i]) seen.old++;
        else if (got[i] === 0xff) seen.erased++;
        else seen.between++;
      }
      expect(cleared).toBe(0);
    }
    expect(seen.old).toBeGreaterThan(0);
    expect(seen.erased).toBeGreaterThan(0);
    expect(seen.between).toBeGreaterThan(0);
  });
});
