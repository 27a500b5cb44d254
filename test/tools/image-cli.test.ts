/**
 * The image tool (src/tools/image-cli.ts: stamp, inspect, build) and the builder features it relies on
 * (src/tools/esp-image.ts: realistic per-chip layouts, ESP-IDF's hash_appended rule, the simulation
 * marker). Real ESP-IDF images cannot be committed, so every chip's image is built here with a realistic
 * layout (DROM first at the chip's address with the descriptor at its start, several segments, SHA-256
 * appended) and the round trip ends in the C core: the stamped image installs and boots through
 * HostOtaSlot, a tampered one is refused. What was checked by hand on real images: docs/native-ota.md.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { ShadowOtaError } from "../../src/core/errors";
import { OTA_CODES } from "../../src/native/ota-errors";
import { HostOtaSlot } from "../../src/native/ota-slot";
import {
  assembleImage,
  buildImage,
  CHIP_IDS,
  CHIP_LOAD_ADDRS,
  ChipName,
  checkImage,
  ESP_IMAGE_CODES,
  imageLayout,
  parseImageHeader,
  pseudoRandomBytes,
  readAppDescriptor,
  readImageMarker,
} from "../../src/tools/esp-image";
import { createFlashFile, TEST_SMALL_CSV, TEST_SMALL_FLASH_SIZE } from "../../src/tools/flash-file";
import { formatReport, inspectImage, main, stampImage } from "../../src/tools/image-cli";
import { tempDir } from "../native/fixtures";
import { install, outcome } from "../native/harness";

const dir = tempDir("image-cli-test");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;
const CHIPS = Object.keys(CHIP_IDS) as ChipName[];

/** A realistic image for `chip`: its load addresses, 4-5 segments, the hash appended. */
function realistic(chip: ChipName, version = "1.0.0", extra: Parameters<typeof buildImage>[0] = {}): Uint8Array {
  const addrs = CHIP_LOAD_ADDRS[chip];
  const lens = [0x1de0, 0x1010, 0x8b1c, 0x46bc, 0xefa8].slice(0, addrs.length);
  return buildImage({ chip, version, projectName: "hello_world", loadAddrs: [...addrs], segments: lens, minChipRevFull: chip === "esp32c2" ? 100 : 0, maxChipRevFull: 199, ...extra });
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof ShadowOtaError) return e.code;
    throw e;
  }
  return "ok";
}

/** Installs `img` over a factory image of the same chip; returns what the install threw (or "ok") and the boot. */
function installOn(chip: ChipName, img: Uint8Array): { result: string; bootVersion: string; bootLabel: string } {
  const file = path.join(dir, `flash-${n++}.bin`);
  createFlashFile(file, { size: TEST_SMALL_FLASH_SIZE, partitions: TEST_SMALL_CSV, images: { factory: realistic(chip, "1.0.0") } });
  let slot = new HostOtaSlot({ flashPath: file, chipId: CHIP_IDS[chip] });
  try {
    slot.boot();
    const result = outcome(() => install(slot, img, { policy: false }));
    slot.close();
    slot = new HostOtaSlot({ flashPath: file, chipId: CHIP_IDS[chip] });
    const b = slot.boot();
    return { result, bootVersion: b.descriptor.version, bootLabel: b.partition.label };
  } finally {
    slot.close();
  }
}

describe("stamp → the C core accepts the stamped image, refuses a tampered one (every chip)", () => {
  it.each(CHIPS)("%s", (chip) => {
    const original = realistic(chip);
    expect(readAppDescriptor(original).version).toBe("1.0.0");
    const { bytes } = stampImage(original, { version: "1.1.0", projectName: "shadow-ota" });
    const r = inspectImage(bytes);
    expect(r.header.chipId).toBe(CHIP_IDS[chip]);
    expect(r.segments[0]!.loadAddr).toBe(CHIP_LOAD_ADDRS[chip][0]);
    expect(r.descriptor).toMatchObject({ version: "1.1.0", projectName: "shadow-ota" });
    expect(r.checksum.ok).toBe(true);
    expect(r.sha256?.ok).toBe(true);
    // Only the two fields, the checksum byte and the SHA-256 changed.
    const l = imageLayout(bytes);
    const changedElsewhere: number[] = [];
    for (let i = 0; i < bytes.length; i++) {
      const inField = (i >= 48 && i < 112) || i === l.checksumOffset || i >= l.hashOffset!;
      if (!inField && bytes[i] !== original[i]) changedElsewhere.push(i);
    }
    expect(changedElsewhere).toEqual([]);
    expect(installOn(chip, bytes)).toEqual({ result: "ok", bootVersion: "1.1.0", bootLabel: "ota_0" });

    const flipped = new Uint8Array(bytes);
    const last = l.segments[l.segments.length - 1]!;
    flipped[last.dataOffset + 100]! ^= 0x20;
    expect(installOn(chip, flipped)).toEqual({ result: OTA_CODES.OTA_IMAGE_BAD_CHECKSUM, bootVersion: "1.0.0", bootLabel: "factory" });
    const twice = new Uint8Array(flipped);
    twice[last.dataOffset + 200]! ^= 0x20; // the XOR checksum matches again; only the SHA-256 can tell
    expect(installOn(chip, twice).result).toBe(OTA_CODES.OTA_IMAGE_BAD_HASH);
    // Stamped without recomputing (the version edited by hand): refused too.
    const unsealed = new Uint8Array(original);
    unsealed.set(bytes.subarray(48, 80), 48);
    expect(installOn(chip, unsealed).result).toBe(OTA_CODES.OTA_IMAGE_BAD_CHECKSUM);
  });
});

describe("stamp refuses", () => {
  const img = realistic("esp32");
  it("a version longer than the field (31 bytes + NUL); 31 bytes are fine", () => {
    expect(readAppDescriptor(stampImage(img, { version: "v".repeat(31) }).bytes).version).toBe("v".repeat(31));
    expect(codeOf(() => stampImage(img, { version: "v".repeat(32) }))).toBe(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION);
    expect(codeOf(() => stampImage(img, { version: "1.0.0", projectName: "p".repeat(32) }))).toBe(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION);
    expect(codeOf(() => stampImage(img, { version: "1.0.0\u00e9" }))).toBe(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION);
  });

  it("a non-app image (no descriptor: a bootloader or RAM-only image), a non-image, a corrupt input", () => {
    const header = img.slice(0, 24);
    const ramOnly = assembleImage(header, [{ loadAddr: 0x40080000, data: pseudoRandomBytes(1024, 3) }]);
    expect(checkImage(ramOnly).checksumOk).toBe(true);
    expect(codeOf(() => stampImage(ramOnly, { version: "1.1.0" }))).toBe(ESP_IMAGE_CODES.ESP_IMAGE_NOT_APP);
    expect(codeOf(() => stampImage(new TextEncoder().encode("<html>404</html>"), { version: "1.1.0" }))).toBe(ESP_IMAGE_CODES.ESP_IMAGE_MALFORMED);
    const bad = new Uint8Array(img);
    bad[5000]! ^= 1;
    expect(codeOf(() => stampImage(bad, { version: "1.1.0" }))).toBe(ESP_IMAGE_CODES.ESP_IMAGE_INPUT_CORRUPT);
  });

  it("through the CLI: exit 1 and one error line; the output file is not written", () => {
    const input = path.join(dir, "in.bin");
    const out = path.join(dir, "refused.bin");
    fs.writeFileSync(input, img);
    const errors: string[] = [];
    expect(main(["stamp", input, "--version", "x".repeat(40), "-o", out], () => {}, (l) => errors.push(l))).toBe(1);
    expect(errors).toEqual([expect.stringMatching(/^error ESP_IMAGE_BAD_OPTION: version "x{40}" is 40 bytes; esp_app_desc_t.version holds at most 31/)]);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe("the CLI", () => {
  it("build, stamp, inspect (text and --json)", () => {
    const built = path.join(dir, "built.bin");
    const stamped = path.join(dir, "stamped.bin");
    const lines: string[] = [];
    const print = (l: string): void => void lines.push(l);
    expect(main(["build", "--version", "1.0.0", "--chip", "esp32c6", "--out", built], print)).toBe(0);
    expect(main(["stamp", built, "--version", "1.2.3", "--project", "demo", "-o", stamped], print)).toBe(0);
    expect(lines.at(-1)).toBe(`${stamped}: ${fs.statSync(stamped).size} bytes, demo 1.2.3 (checksum and sha256 recomputed)`);
    lines.length = 0;
    expect(main(["inspect", stamped], print)).toBe(0);
    const text = lines.join("\n");
    for (const want of [/chip_id +13 \(ESP32-C6\)/, /hash_appended +1 \(SHA-256 appended\)/, /checksum .*OK/, /computed [0-9a-f]{64} OK/, /version +"1.2.3"/, /project_name +"demo"/, /min_chip_rev_full/, /max_chip_rev_full +399 \(v3.99\)/, /spi_mode +2 \(DIO\)/, /wp_pin +0xee \(disabled\)/]) {
      expect(text).toMatch(want);
    }
    lines.length = 0;
    expect(main(["inspect", stamped, "--json"], print)).toBe(0);
    const json = JSON.parse(lines.join("\n")) as ReturnType<typeof inspectImage>;
    expect(json.header).toMatchObject({ magic: 0xe9, chipId: 13, chipName: "ESP32-C6", hashAppended: 1, segmentCount: 3 });
    expect(json.segments.map((s) => s.fileOffset)).toEqual(imageLayout(fs.readFileSync(stamped)).segments.map((s) => s.dataOffset));
    expect(json.descriptor).toMatchObject({ magicWord: 0xabcd5432, version: "1.2.3", projectName: "demo", mmuPageSize: 16 });
    expect(json.checksum.ok && json.sha256!.ok).toBe(true);
  });

  it("unknown command: exit 2", () => {
    const errors: string[] = [];
    expect(main(["frobnicate"], () => {}, (l) => errors.push(l))).toBe(2);
    expect(errors[0]).toMatch(/^unknown command frobnicate/);
  });

  it("formatReport names every header field", () => {
    const text = formatReport(inspectImage(realistic("esp32h2"))).join("\n");
    for (const f of ["magic", "segment_count", "spi_mode", "spi_speed", "spi_size", "entry_addr", "wp_pin", "spi_pin_drv", "chip_id", "min_chip_rev_full", "max_chip_rev_full", "hash_appended", "secure_version", "idf_ver", "app_elf_sha256", "mmu_page_size"]) {
      expect(text).toContain(f);
    }
  });
});

describe("hash_appended: ESP-IDF's rule (any non-zero byte) in esp-image.ts", () => {
  it("a byte of 2 means a SHA-256 follows; layout, check and stamp agree with the C core", () => {
    const base = buildImage({ version: "1.0.0" });
    const header = base.slice(0, 24);
    header[23] = 2;
    const l0 = imageLayout(base);
    const img = assembleImage(header, l0.segments.map((s) => ({ loadAddr: s.loadAddr, data: base.slice(s.dataOffset, s.dataOffset + s.dataLength) })));
    expect(img[23]).toBe(2);
    expect(parseImageHeader(img)).toMatchObject({ hashAppended: true, hashAppendedByte: 2 });
    expect(imageLayout(img).length).toBe(img.length);
    expect(checkImage(img)).toMatchObject({ ok: true, hashOk: true, trailingBytes: 0 });
    const stamped = stampImage(img, { version: "1.1.0" }).bytes;
    expect(stamped[23]).toBe(2);
    expect(inspectImage(stamped).sha256?.ok).toBe(true);
    expect(installOn("esp32", stamped).result).toBe("ok");
  });
});

describe("the simulation marker", () => {
  it("is written NUL-terminated at offset 288 and read back; the C core accepts the image", () => {
    const img = buildImage({ version: "1.1.0", marker: "SHADOW-OTA-SIM:selftest=fail" });
    expect(Buffer.from(img.subarray(288, 288 + 29)).toString("latin1")).toBe("SHADOW-OTA-SIM:selftest=fail\0");
    expect(readImageMarker(img)).toBe("SHADOW-OTA-SIM:selftest=fail");
    expect(inspectImage(img).marker).toBe("SHADOW-OTA-SIM:selftest=fail");
    expect(readImageMarker(stampImage(img, { version: "1.2.0" }).bytes)).toBe("SHADOW-OTA-SIM:selftest=fail");
    expect(installOn("esp32", img).result).toBe("ok");
  });

  it("only a SHADOW-OTA-SIM: string counts; none, another prefix, no NUL within 64 characters give undefined", () => {
    expect(readImageMarker(buildImage({ version: "1.1.0" }))).toBeUndefined();
    expect(readImageMarker(buildImage({ version: "1.1.0", marker: "hello" }))).toBeUndefined();
    expect(readImageMarker(buildImage({ version: "1.1.0", marker: "" }))).toBeUndefined();
    const longest = `SHADOW-OTA-SIM:${"x".repeat(64 - 15)}`;
    expect(readImageMarker(buildImage({ version: "1.1.0", marker: longest }))).toBe(longest);
    const noNul = buildImage({ version: "1.1.0", marker: longest });
    noNul[288 + 64] = 0x41;
    expect(readImageMarker(noNul)).toBeUndefined();
    expect(readImageMarker(new Uint8Array(100))).toBeUndefined();
  });

  it("at most 64 printable ASCII bytes; the first segment must hold it (grown with `size`)", () => {
    expect(codeOf(() => buildImage({ marker: `SHADOW-OTA-SIM:${"x".repeat(50)}` }))).toBe(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION);
    expect(codeOf(() => buildImage({ marker: "SHADOW-OTA-SIM:\u00e9" }))).toBe(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION);
    expect(codeOf(() => buildImage({ marker: "SHADOW-OTA-SIM:a", segments: [256, 1024] }))).toBe(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION);
    expect(readImageMarker(buildImage({ marker: "SHADOW-OTA-SIM:a", segments: [324, 1024] }))).toBe("SHADOW-OTA-SIM:a");
    const sized = buildImage({ marker: "SHADOW-OTA-SIM:a", size: 4096, segmentCount: 12 });
    expect(imageLayout(sized).segments[0]!.dataLength).toBeGreaterThanOrEqual(324);
    expect(readImageMarker(sized)).toBe("SHADOW-OTA-SIM:a");
  });
});
