/**
 * An image that never reaches end() is not bootable (src/native/core/ota_writer.h, "The held magic byte"),
 * on both hardware layers (the host flash, and the ESP32 layer over ESP-IDF fakes), through the same
 * HostOtaSlot calls the OTA controller makes. The ESP-IDF bootloader, when the app otadata selects does not
 * load, tries every other app slot (bootloader_utility_load_boot_image; the simulated bootloader,
 * src/native/host/ota_boot_sim.c, does the same): a download that stops after its last byte used to leave a
 * complete image there, header and all, that such a fall-back would boot unverified — unsigned too, when a
 * key is configured, since the signature is checked only in end(). Now the slot's first byte (the magic
 * 0xE9) is programmed only by end(), after verification.
 *
 * Covered: a stalled download (every byte, no end()) and a signed image whose signature block never came are
 * skipped by the fall-back, which boots the factory app instead (it booted the stalled image before);
 * after end() the verified image is a valid fall-back again; a power cut right before, inside and right after
 * the held byte's program: the old image boots, the resume (which puts the byte back from what it reads)
 * and a second end() finish the update and the slot then holds the image exactly.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { OTA_CODES } from "../../src/native/ota-errors";
import type { OtaHardwareLayer } from "../../src/native/ota-slot";
import { generateSigningKey, publicKeyDer, signImage, SIGNATURE_BLOCK_LEN } from "../../src/tools/image-sign";
import { buildImage, makeFlashFile, partition, readPartition, SECTOR, tempDir, writeAt } from "./fixtures";
import { Device, install, outcome } from "./harness";

const dir = tempDir("held-magic-test");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const signer = generateSigningKey();
const KEY = publicKeyDer(signer.publicKeyPem);
const IMG = buildImage({ version: "1.3.0", segments: [20000, 8000] }); // several sectors
const OTA0 = partition("ota_0").offset;

let n = 0;
/** factory 1.0.0, 1.1.0 in ota_0 and 1.2.0 in ota_1, both confirmed; ota_1 runs, so ota_0 is the target and
 *  the fall-back order from ota_1 is ota_0, then the factory app. */
function onOta1(layer: OtaHardwareLayer): Device {
  const file = makeFlashFile(path.join(dir, `flash-${n++}.bin`), { factory: buildImage({ version: "1.0.0" }) });
  const d = new Device(file, 0, layer);
  d.reboot();
  install(d.slot, buildImage({ version: "1.1.0" }));
  d.reboot();
  d.slot.markValid();
  install(d.slot, buildImage({ version: "1.2.0" }));
  expect(d.reboot()).toMatchObject({ slot: 1 });
  d.slot.markValid();
  return d;
}

/** Streams img[from, to) into the open session in 1000-byte chunks, accepting at the descriptor gate. */
function stream(d: Device, img: Uint8Array, from: number, to: number): void {
  for (let off = from; off < to; off += 1000) {
    if (d.slot.write(img.subarray(off, Math.min(to, off + 1000))) !== undefined) d.slot.accept();
  }
}

/** The running image (ota_1) no longer verifies: one data byte flipped. */
function damageOta1(d: Device): void {
  const at = partition("ota_1").offset + 600;
  writeAt(d.file, at, Buffer.from([readPartition(d.file, "ota_1")[600]! ^ 0x5a]));
}

describe.each<OtaHardwareLayer>(["host", "esp32-fakes"])("%s layer: the magic byte waits for end()", (layer) => {
  it("a download that stops after its last byte (no end()) is skipped by the bootloader's fall-back", () => {
    const d = onOta1(layer);
    d.slot.begin();
    stream(d, IMG, 0, IMG.length); // the server stalls here: end() never runs
    damageOta1(d); // and then the running image is damaged
    const boot = d.reboot();
    expect(boot.slot).toBe(-1); // ota_1 fails, ota_0 (the stalled image) is skipped, the factory app boots
    expect(d.slot.runningDescriptor()?.version).toBe("1.0.0");
    const slot = readPartition(d.file, "ota_0");
    expect(slot[0]).toBe(0xff); // held back
    expect(slot.subarray(1, IMG.length).equals(Buffer.from(IMG.subarray(1)))).toBe(true); // everything else is there
    d.close();
  });

  it("after end() the verified image is a valid fall-back (ESP-IDF's own rule), byte for byte the image", () => {
    const d = onOta1(layer);
    d.slot.begin();
    stream(d, IMG, 0, IMG.length);
    d.slot.end(); // verified: now the magic is programmed
    expect(readPartition(d.file, "ota_0").subarray(0, IMG.length).equals(Buffer.from(IMG))).toBe(true);
    d.slot.abort(); // never set to boot
    damageOta1(d);
    expect(d.reboot().slot).toBe(0);
    expect(d.slot.runningDescriptor()?.version).toBe("1.3.0");
    d.close();
  });

  it("a stalled download, then a reboot: the resume puts the held byte back and the update finishes", () => {
    const d = onOta1(layer);
    d.slot.begin();
    stream(d, IMG, 0, IMG.length); // no end(): the device gives up and restarts
    expect(d.reboot()).toMatchObject({ slot: 1, state: "VALID" });
    const at = d.slot.resume(IMG.length);
    expect(at).toBe(IMG.length - (IMG.length % SECTOR));
    expect(d.slot.candidateDescriptor()?.version).toBe("1.3.0"); // the prefix re-read parses: magic restored
    stream(d, IMG, at, IMG.length);
    d.slot.end();
    d.slot.setBootPartition();
    expect(d.reboot()).toMatchObject({ slot: 0, state: "PENDING_VERIFY" });
    expect(readPartition(d.file, "ota_0").subarray(0, IMG.length).equals(Buffer.from(IMG))).toBe(true);
    d.close();
  });

  it("with a signing key: a signed image whose signature block never came is not bootable either", () => {
    const signed = signImage(IMG, signer.privateKeyPem).bytes;
    expect(signed.length).toBe(IMG.length + SIGNATURE_BLOCK_LEN);
    const d = onOta1(layer);
    d.slot.begin({ signingKey: KEY });
    stream(d, signed, 0, IMG.length); // the whole image, the server stalls before the signature block
    damageOta1(d);
    expect(d.reboot().slot).toBe(-1);
    d.close();
  });

  it("a refused signature leaves no bootable image (the magic never programmed, the first sector erased)", () => {
    const other = generateSigningKey();
    const d = onOta1(layer);
    d.slot.begin({ signingKey: KEY });
    stream(d, signImage(IMG, other.privateKeyPem).bytes, 0, IMG.length + SIGNATURE_BLOCK_LEN);
    expect(outcome(() => d.slot.end())).toBe(OTA_CODES.OTA_SIGNATURE_INVALID);
    d.slot.abort();
    expect(readPartition(d.file, "ota_0").subarray(0, SECTOR).every((b) => b === 0xff)).toBe(true);
    damageOta1(d);
    expect(d.reboot().slot).toBe(-1);
    d.close();
  });

  /** The uncut end()'s flash operations: only the held byte's one-byte program at slot offset 0. */
  it("end() programs exactly one byte, the magic at slot offset 0, and nothing before it verified", () => {
    const d = onOta1(layer);
    d.slot.begin();
    d.slot.trace(true);
    stream(d, IMG, 0, IMG.length);
    const streamOps = d.slot.trace(true);
    expect(streamOps.some((op) => op.kind === "program" && op.address === OTA0)).toBe(false);
    d.slot.end();
    expect(d.slot.trace(false).map((op) => [op.kind, op.address, op.length])).toEqual([["program", OTA0, 1]]);
    d.close();
  });

  // The fakes cut more coarsely than the host flash (a budget of 0 loses the power at once, before end()'s
  // reads; a one-byte program is done or not): there only the cut right after the program is placed.
  const cuts: Array<[string, number, number]> = [
    ["right before the held byte's program (after verification)", 0, 1],
    ["inside it (a torn byte: some of its bits cleared)", 0, 2],
    ["inside it, another tear", 0, 3],
    ["right after it (the byte programmed, then the power went)", 1, 4],
  ];
  it.each(layer === "host" ? cuts : cuts.slice(3))("a power cut %s: the old image boots; resume and end() again finish the update", (_what, extra, seed) => {
    const d = onOta1(layer);
    d.slot.begin();
    stream(d, IMG, 0, IMG.length);
    d.slot.armPowerCut(extra, seed); // end() reads and verifies (no flash operations), then programs 1 byte
    expect(outcome(() => d.slot.end())).toBe(OTA_CODES.OTA_POWER_LOST);
    if (layer === "host") expect(d.slot.cutOperation()).toMatchObject({ kind: "program", address: OTA0, length: 1 });
    const b = readPartition(d.file, "ota_0")[0]!;
    if (extra === 1) expect(b).toBe(0xe9);
    else expect(b & 0xe9).toBe(0xe9); // unprogrammed or torn: every bit of 0xE9 still set
    expect(d.reboot()).toMatchObject({ slot: 1, state: "VALID" }); // the old image, as if nothing happened
    // The controller's restart in Verifying: resume below the end, fetch the rest again, end, set boot.
    const at = d.slot.resume(IMG.length);
    expect(at).toBe(IMG.length - (IMG.length % SECTOR));
    stream(d, IMG, at, IMG.length);
    d.slot.end();
    d.slot.setBootPartition();
    expect(d.reboot()).toMatchObject({ slot: 0, state: "PENDING_VERIFY" });
    expect(d.slot.runningDescriptor()?.version).toBe("1.3.0");
    expect(readPartition(d.file, "ota_0").subarray(0, IMG.length).equals(Buffer.from(IMG))).toBe(true);
    d.close();
  });

  it("resume refuses a slot whose first byte is not the magic's (a bit of 0xE9 cleared): not ours", () => {
    const d = onOta1(layer);
    d.slot.begin();
    stream(d, IMG, 0, 3 * SECTOR);
    d.slot.abort();
    writeAt(d.file, OTA0, Buffer.from([0x69])); // 0xE9 without its top bit: no program of 0xE9 gets there
    d.reboot(); // the fakes read the file when it opens
    expect(outcome(() => d.slot.resume(3 * SECTOR))).toBe(OTA_CODES.OTA_RESUME_MISMATCH);
    d.close();
  });
});
