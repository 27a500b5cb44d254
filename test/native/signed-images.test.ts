/**
 * Signed images through the native slot (docs/signing.md): the C core's signature block parsing while the
 * image streams and its ECDSA P-256 check at end(), before setBootPartition can run, on both hardware
 * layers (the host flash, and the ESP32 layer over ESP-IDF fakes), with keys and signatures made by the
 * release tool's signer (src/tools/image-sign.ts). Each refusal leaves the device on its running image.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { OTA_CODES } from "../../src/native/ota-errors";
import type { OtaHardwareLayer } from "../../src/native/ota-slot";
import { generateSigningKey, publicKeyDer, signImage, SIGNATURE_BLOCK_LEN } from "../../src/tools/image-sign";
import { buildImage, makeFlashFile, SECTOR, tempDir } from "./fixtures";
import { Device, install, outcome } from "./harness";

const dir = tempDir("signed-images-test");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const trusted = generateSigningKey();
const other = generateSigningKey();
const trustedDer = publicKeyDer(trusted.publicKeyPem);
const image = buildImage({ version: "1.1.0" });
/** A signed image whose DER signature is shorter than its 72-byte field, so the block ends in padding (ECDSA
 *  signatures are 70 to 72 bytes at random: about one in four fills the field, leaving no padding to test). */
function signedWithPadding(): Uint8Array {
  for (let i = 0; i < 200; i++) {
    const bytes = signImage(image, trusted.privateKeyPem).bytes;
    if (bytes[image.length + 6]! < 72) return bytes;
  }
  throw new Error("200 signatures in a row filled the whole field");
}
const signed = signedWithPadding();
const signedByOther = signImage(image, other.privateKeyPem).bytes;

let n = 0;
function device(layer: OtaHardwareLayer): Device {
  const file = makeFlashFile(path.join(dir, `flash-${n++}.bin`), { factory: buildImage({ version: "1.0.0" }) });
  const d = new Device(file, 0, layer);
  d.reboot();
  return d;
}

/** Installs, reboots, and returns the install's outcome and the version that runs after the reboot. */
function tryInstall(layer: OtaHardwareLayer, img: Uint8Array, o: Parameters<typeof install>[2] = {}): { result: string; runs: string | undefined } {
  const d = device(layer);
  try {
    const result = outcome(() => install(d.slot, img, o));
    d.reboot();
    return { result, runs: d.slot.runningDescriptor()?.version };
  } finally {
    d.close();
  }
}

function flip(bytes: Uint8Array, at: number): Uint8Array {
  const out = new Uint8Array(bytes);
  out[at]! ^= 0x01;
  return out;
}

describe.each<OtaHardwareLayer>(["host", "esp32-fakes"])("%s layer", (layer) => {
  describe("with the trusted key configured", () => {
    const key = { signingKey: trustedDer };
    it("installs an image signed by that key", () => {
      expect(tryInstall(layer, signed, key)).toEqual({ result: "ok", runs: "1.1.0" });
    });
    it("refuses an unsigned image with OTA_SIGNATURE_MISSING and stays on its image", () => {
      expect(tryInstall(layer, image, key)).toEqual({ result: OTA_CODES.OTA_SIGNATURE_MISSING, runs: "1.0.0" });
    });
    it("refuses an image signed by another key with OTA_SIGNATURE_INVALID", () => {
      expect(tryInstall(layer, signedByOther, key)).toEqual({ result: OTA_CODES.OTA_SIGNATURE_INVALID, runs: "1.0.0" });
    });
    it("refuses another key's signature under the trusted key's id (the ECDSA check itself)", () => {
      const forged = new Uint8Array(signedByOther);
      forged.set(signed.subarray(image.length + 48, image.length + 80), image.length + 48);
      expect(tryInstall(layer, forged, key)).toEqual({ result: OTA_CODES.OTA_SIGNATURE_INVALID, runs: "1.0.0" });
    });
    it("refuses a signature with one bit flipped", () => {
      const sigLen = signed[image.length + 6]!;
      expect(tryInstall(layer, flip(signed, image.length + 80 + sigLen - 1), key).result).toBe(OTA_CODES.OTA_SIGNATURE_INVALID);
    });
    it("end() refuses and setBootPartition stays impossible after the refusal", () => {
      const d = device(layer);
      try {
        expect(outcome(() => install(d.slot, image, { ...key, noSetBoot: true }))).toBe(OTA_CODES.OTA_SIGNATURE_MISSING);
        expect(outcome(() => d.slot.setBootPartition())).toBe(OTA_CODES.OTA_INVALID_STATE);
      } finally {
        d.close();
      }
    });
  });

  describe("the block's structure (checked while streaming, with or without a key)", () => {
    const at = image.length;
    it.each<[string, Uint8Array, string]>([
      ["digest byte", flip(signed, at + 16), OTA_CODES.OTA_SIGNATURE_INVALID],
      ["image length", flip(signed, at + 8), OTA_CODES.OTA_SIGNATURE_INVALID],
      ["version", flip(signed, at + 4), OTA_CODES.OTA_SIGNATURE_INVALID],
      ["reserved byte", flip(signed, at + 12), OTA_CODES.OTA_SIGNATURE_INVALID],
      ["padding after the signature", flip(signed, at + SIGNATURE_BLOCK_LEN - 1), OTA_CODES.OTA_SIGNATURE_INVALID],
      ["magic (trailing data)", flip(signed, at + 2), OTA_CODES.OTA_IMAGE_TRAILING_DATA],
      ["a byte after the block", Uint8Array.of(...signed, 0), OTA_CODES.OTA_IMAGE_TRAILING_DATA],
      ["a truncated block", signed.subarray(0, signed.length - 1), OTA_CODES.OTA_IMAGE_TRUNCATED],
      ["a second block", Uint8Array.of(...signed, ...signed.subarray(at)), OTA_CODES.OTA_IMAGE_TRAILING_DATA],
    ])("%s", (_what, img, code) => {
      expect(tryInstall(layer, img).result).toBe(code);
      expect(tryInstall(layer, img, { signingKey: trustedDer }).result).toBe(code);
    });
    it("a block after an image without appended SHA-256 is invalid", () => {
      const noHash = buildImage({ version: "1.1.0", hash: false });
      const withBlock = Uint8Array.of(...noHash, ...signed.subarray(image.length));
      expect(tryInstall(layer, withBlock, { requireHash: false }).result).toBe(OTA_CODES.OTA_SIGNATURE_INVALID);
      expect(tryInstall(layer, noHash, { requireHash: false }).result).toBe("ok");
    });
  });

  it("without a key: signed and unsigned images install as before", () => {
    expect(tryInstall(layer, signed)).toEqual({ result: "ok", runs: "1.1.0" });
    expect(tryInstall(layer, image)).toEqual({ result: "ok", runs: "1.1.0" });
    expect(tryInstall(layer, Uint8Array.of(...image, 0x00)).result).toBe(OTA_CODES.OTA_IMAGE_TRAILING_DATA);
  });
});

describe("streaming (host layer)", () => {
  it("every split of a signed image gives the same result", () => {
    for (const chunks of [[1], [3, 5], [151, 1], [SIGNATURE_BLOCK_LEN], [4096]]) {
      expect(tryInstall("host", signed, { signingKey: trustedDer, chunks })).toEqual({ result: "ok", runs: "1.1.0" });
    }
  });

  it("a declared size that counts the block is accepted; one without it is OTA_IMAGE_PAST_END", () => {
    expect(tryInstall("host", signed, { signingKey: trustedDer, imageSize: signed.length }).result).toBe("ok");
    expect(tryInstall("host", signed, { signingKey: trustedDer, imageSize: image.length }).result).toBe(OTA_CODES.OTA_IMAGE_PAST_END);
  });

  it("resumes inside the signature block (a power cut or disconnect there) and still verifies", () => {
    // An image whose block straddles a sector boundary, so the re-read prefix ends inside the block.
    let img = image;
    for (let x = 4; ; x += 4) {
      img = buildImage({ version: "1.1.0", segments: [1024, x] });
      const end = img.length % SECTOR;
      if (end > SECTOR - SIGNATURE_BLOCK_LEN + 16 && end < SECTOR - 16) break;
    }
    const s = signImage(img, trusted.privateKeyPem).bytes;
    const boundary = Math.floor(s.length / SECTOR) * SECTOR;
    expect(boundary).toBeGreaterThan(img.length);
    const d = device("host");
    try {
      expect(outcome(() => install(d.slot, s.subarray(0, s.length - 10), { signingKey: trustedDer, noSetBoot: true, policy: false })))
        .toBe(OTA_CODES.OTA_IMAGE_TRUNCATED); // the download was cut inside the block

      const at = d.slot.resume(s.length - 1, { signingKey: trustedDer });
      expect(at).toBe(boundary);
      d.slot.write(s.subarray(at));
      d.slot.end();
      d.slot.setBootPartition();
      d.reboot();
      expect(d.slot.runningDescriptor()?.version).toBe("1.1.0");
    } finally {
      d.close();
    }
  });

  it("refuses a key that is not a P-256 DER SubjectPublicKeyInfo with a RangeError", () => {
    const d = device("host");
    // The native module throws the main realm's RangeError (not jest's): compare names.
    const nameOf = (f: () => unknown): string => { try { f(); return "none"; } catch (e) { return (e as Error).name; } };
    try {
      expect(nameOf(() => d.slot.begin({ signingKey: trustedDer.subarray(1) }))).toBe("RangeError");
      const otherCurve = new Uint8Array(trustedDer);
      otherCurve[22] = 0x08; // prime256v1's OID ends in 07
      expect(nameOf(() => d.slot.begin({ signingKey: otherCurve }))).toBe("RangeError");
      const offCurve = new Uint8Array(trustedDer);
      offCurve[90]! ^= 0x01; // Y no longer on the curve
      expect(nameOf(() => d.slot.begin({ signingKey: offCurve }))).toBe("RangeError");
    } finally {
      d.close();
    }
  });
});
