/**
 * An attacker's review of signed-image verification (docs/signing.md, "Threat model and what is checked"),
 * through the native slot on the host flash: an attacker who controls the image server but not the signing
 * key, and power cuts. Each case tries to get an image booted without a valid signature while a key is
 * configured, and checks which version runs after the reboot. The cases already covered by
 * signed-images.test.ts (unsigned, other key, flipped bits, truncated, trailing and second blocks) are not
 * repeated here.
 */
import { createHash, createPublicKey, generateKeyPairSync } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import { OTA_CODES } from "../../src/native/ota-errors";
import { generateSigningKey, publicKeyDer, signImage, SIGNATURE_BLOCK_LEN, verifyImageSignature } from "../../src/tools/image-sign";
import type { OtaHardwareLayer } from "../../src/native/ota-slot";
import { buildImage, makeFlashFile, partition, readPartition, SECTOR, tempDir, writeAt } from "./fixtures";
import { Device, install, outcome } from "./harness";

const dir = tempDir("signed-review-test");
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const trusted = generateSigningKey();
const trustedDer = publicKeyDer(trusted.publicKeyPem);
const key = { signingKey: trustedDer };
/** An image of several sectors, so that a cut and a resume leave a re-read prefix. */
const image = buildImage({ version: "1.1.0", segments: [6000, 5000] });
const at = image.length; // the signature block's offset

/** A signature whose DER does not end in a zero byte (ECDSA is randomised), so moving the length by one shows,
 *  and is at most 71 bytes, so that one more leading zero still fits the block. */
function signNonZeroTail(img: Uint8Array): Uint8Array {
  for (let k = 0; k < 64; k++) {
    const s = signImage(img, trusted.privateKeyPem).bytes;
    const len = s[img.length + 6]!;
    if (s[img.length + 80 + len - 1] !== 0 && len <= 71) return s;
  }
  throw new Error("64 signatures in a row ended in a zero byte");
}
const signed = signNonZeroTail(image);
const derLen = signed[at + 6]!;

let n = 0;
function device(): Device {
  const file = makeFlashFile(path.join(dir, `flash-${n++}.bin`), { factory: buildImage({ version: "1.0.0" }) });
  const d = new Device(file);
  d.reboot();
  return d;
}

function tryInstall(img: Uint8Array, o: Parameters<typeof install>[2] = key): { result: string; runs: string | undefined } {
  const d = device();
  try {
    const result = outcome(() => install(d.slot, img, o));
    d.reboot();
    return { result, runs: d.slot.runningDescriptor()?.version };
  } finally {
    d.close();
  }
}

function withBlockField(bytes: Uint8Array, offset: number, value: number[]): Uint8Array {
  const out = new Uint8Array(bytes);
  out.set(value, at + offset);
  return out;
}

// ---- DER ECDSA-Sig-Value helpers (SEQUENCE { INTEGER r, INTEGER s }, short lengths only: P-256) ----
const N = BigInt("0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551"); // P-256's group order
function parseSig(der: Uint8Array): { r: bigint; s: bigint } {
  const r0 = 2, rl = der[r0 + 1]!;
  const s0 = r0 + 2 + rl, sl = der[s0 + 1]!;
  const big = (b: Uint8Array): bigint => BigInt("0x" + (Buffer.from(b).toString("hex") || "0"));
  return { r: big(der.subarray(r0 + 2, r0 + 2 + rl)), s: big(der.subarray(s0 + 2, s0 + 2 + sl)) };
}
function intBytes(v: bigint, extraZeros = 0): number[] {
  let hex = v.toString(16);
  if (hex.length % 2) hex = "0" + hex;
  const b = [...Buffer.from(hex, "hex")];
  if (b[0]! & 0x80) b.unshift(0);
  for (let k = 0; k < extraZeros; k++) b.unshift(0);
  return b;
}
function encodeSig(r: number[], s: number[]): Uint8Array {
  const body = [0x02, r.length, ...r, 0x02, s.length, ...s];
  return Uint8Array.of(0x30, body.length, ...body);
}
/** `signed` with its DER signature replaced (length field and zero padding kept consistent). */
function withSignature(der: Uint8Array): Uint8Array {
  const out = new Uint8Array(signed);
  out.fill(0, at + 80, at + SIGNATURE_BLOCK_LEN);
  out.set(der, at + 80);
  out[at + 6] = der.length;
  out[at + 7] = 0;
  return out;
}
const sig = parseSig(signed.subarray(at + 80, at + 80 + derLen));

describe("a block whose fields lie", () => {
  it.each<[string, Uint8Array, string]>([
    ["signature length + 1 (a padding zero joins the DER)", withBlockField(signed, 6, [derLen + 1, 0]), OTA_CODES.OTA_SIGNATURE_INVALID],
    ["signature length - 1 (the DER's last byte becomes padding)", withBlockField(signed, 6, [derLen - 1, 0]), OTA_CODES.OTA_SIGNATURE_INVALID],
    ["signature length 7", withBlockField(signed, 6, [7, 0]), OTA_CODES.OTA_SIGNATURE_INVALID],
    ["signature length 73", withBlockField(signed, 6, [73, 0]), OTA_CODES.OTA_SIGNATURE_INVALID],
    ["signature length 0xFFFF", withBlockField(signed, 6, [0xff, 0xff]), OTA_CODES.OTA_SIGNATURE_INVALID],
    ["image length + 4", withBlockField(signed, 8, [...new Uint8Array(new Uint32Array([at + 4]).buffer)]), OTA_CODES.OTA_SIGNATURE_INVALID],
    ["algorithm 2", withBlockField(signed, 5, [2]), OTA_CODES.OTA_SIGNATURE_INVALID],
  ])("%s: refused, the device stays on 1.0.0", (_what, img, code) => {
    expect(tryInstall(img)).toEqual({ result: code, runs: "1.0.0" });
  });
});

describe("replay: a signature made for another image", () => {
  const older = buildImage({ version: "1.1.0", segments: [6000, 5000], seed: 7 }); // same version, other bytes
  const olderSigned = signImage(older, trusted.privateKeyPem).bytes;
  const olderBlock = olderSigned.subarray(older.length);

  it("another image's block, as it is (its digest), is refused while streaming, with or without a key", () => {
    const img = Uint8Array.of(...image, ...olderBlock);
    expect(tryInstall(img)).toEqual({ result: OTA_CODES.OTA_SIGNATURE_INVALID, runs: "1.0.0" });
    expect(tryInstall(img, {})).toEqual({ result: OTA_CODES.OTA_SIGNATURE_INVALID, runs: "1.0.0" });
  });

  it("another image's signature under this image's digest is refused by the ECDSA check", () => {
    const img = Uint8Array.of(...image, ...olderBlock);
    img.set(signed.subarray(at + 16, at + 48), at + 16); // this image's digest, the other image's signature
    expect(tryInstall(img)).toEqual({ result: OTA_CODES.OTA_SIGNATURE_INVALID, runs: "1.0.0" });
  });

  it("a whole older signed release served for a newer version is the policy's: refused as a downgrade before any write", () => {
    const old = signImage(buildImage({ version: "0.9.0" }), trusted.privateKeyPem).bytes;
    const d = device();
    try {
      const before = d.snapshot();
      expect(outcome(() => install(d.slot, old, key))).toBe(OTA_CODES.OTA_DOWNGRADE_REFUSED);
      expect(d.snapshot().equals(before)).toBe(true);
    } finally {
      d.close();
    }
  });
});

describe("DER encodings of the same signature", () => {
  it("high S (n - s) verifies on the device and in the tool: malleable, but only for this image", () => {
    const highS = withSignature(encodeSig(intBytes(sig.r), intBytes(N - sig.s)));
    expect(tryInstall(highS)).toEqual({ result: "ok", runs: "1.1.0" });
    expect(verifyImageSignature(highS, trusted.publicKeyPem).keyId).toBeDefined();
    // the malleated signature is still a signature over this image's digest only
    const other = buildImage({ version: "1.1.0", segments: [6000, 5000], seed: 9 });
    const moved = Uint8Array.of(...other, ...highS.subarray(at));
    moved.set(other.subarray(other.length - 32), other.length + 16);
    expect(tryInstall(moved).result).toBe(OTA_CODES.OTA_SIGNATURE_INVALID);
  });

  it("a non-minimal INTEGER (an extra leading zero): mbedTLS accepts it, the tool (OpenSSL) refuses it", () => {
    const padded = withSignature(encodeSig(intBytes(sig.r, 1), intBytes(sig.s)));
    expect(tryInstall(padded)).toEqual({ result: "ok", runs: "1.1.0" });
    expect(() => verifyImageSignature(padded, trusted.publicKeyPem)).toThrow(expect.objectContaining({ code: OTA_CODES.OTA_SIGNATURE_INVALID }));
  });

  it.each<[string, Uint8Array]>([
    ["r = 0", encodeSig([0], intBytes(sig.s))],
    ["s = 0", encodeSig(intBytes(sig.r), [0])],
    ["s = n", encodeSig(intBytes(sig.r), intBytes(N))],
    ["s + n", encodeSig(intBytes(sig.r), intBytes(sig.s + N))],
    ["a SET instead of the SEQUENCE", (() => { const e = encodeSig(intBytes(sig.r), intBytes(sig.s)); e[0] = 0x31; return e; })()],
  ])("%s is refused", (_what, der) => {
    expect(tryInstall(withSignature(der))).toEqual({ result: OTA_CODES.OTA_SIGNATURE_INVALID, runs: "1.0.0" });
  });
});

describe("images without an appended SHA-256 (requireHash false)", () => {
  const noHash = buildImage({ version: "1.1.0", hash: false });
  it("with a key: refused as unsigned (no digest, so no block can cover it)", () => {
    expect(tryInstall(noHash, { ...key, requireHash: false })).toEqual({ result: OTA_CODES.OTA_SIGNATURE_MISSING, runs: "1.0.0" });
  });
  it("without a key: installs, as before signing existed", () => {
    expect(tryInstall(noHash, { requireHash: false })).toEqual({ result: "ok", runs: "1.1.0" });
  });
});

describe("the key argument", () => {
  function nameOf(f: () => unknown): string {
    try { f(); return "none"; } catch (e) { return (e as Error).name; }
  }
  it.each<[string, () => Uint8Array]>([
    ["P-384", () => new Uint8Array(generateKeyPairSync("ec", { namedCurve: "secp384r1" }).publicKey.export({ type: "spki", format: "der" }))],
    ["secp256k1", () => new Uint8Array(generateKeyPairSync("ec", { namedCurve: "secp256k1" }).publicKey.export({ type: "spki", format: "der" }))],
    ["Ed25519", () => new Uint8Array(generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "der" }))],
    ["P-256, compressed point", () => new Uint8Array(createPublicKey(trusted.publicKeyPem).export({ type: "spki", format: "der" }).length === 91
      ? Buffer.concat([Buffer.from("3039301306072a8648ce3d020106082a8648ce3d030107032200", "hex"), Buffer.of(0x02 | (trustedDer[90]! & 1)), Buffer.from(trustedDer.subarray(27, 59))])
      : Buffer.alloc(0))],
    ["P-256 DER with a byte appended", () => Uint8Array.of(...trustedDer, 0)],
    ["the P-256 point at infinity / zeros", () => { const z = new Uint8Array(trustedDer); z.fill(0, 27); return z; }],
  ])("%s is a RangeError on begin and on resume, before the session changes", (_what, make) => {
    const d = device();
    try {
      expect(nameOf(() => d.slot.begin({ signingKey: make() }))).toBe("RangeError");
      expect(nameOf(() => d.slot.resume(SECTOR, { signingKey: make() }))).toBe("RangeError");
    } finally {
      d.close();
    }
  });

  it("a wrong key does not end a session under way: it stays bound to its own key", () => {
    const d = device();
    try {
      d.slot.begin(key);
      const desc = d.slot.write(signed.subarray(0, 4096));
      expect(desc?.version).toBe("1.1.0");
      d.slot.accept();
      expect(nameOf(() => d.slot.begin({ signingKey: trustedDer.subarray(0, 90) }))).toBe("RangeError");
      d.slot.write(image.subarray(4096)); // the unsigned rest: the trusted key still applies
      expect(outcome(() => d.slot.end())).toBe(OTA_CODES.OTA_SIGNATURE_MISSING);
    } finally {
      d.close();
    }
  });
});

describe("power cuts and resume", () => {
  /** Writes `bytes` from 0 with the gate, cut (no end) after `cut` bytes, reboots. */
  function cutAfter(d: Device, bytes: Uint8Array, cut: number, o: Parameters<typeof install>[2] = key): void {
    d.slot.begin(o);
    d.slot.write(bytes.subarray(0, 288));
    d.slot.accept();
    d.slot.write(bytes.subarray(288, cut));
    d.reboot(); // power cut: no end(), no setBoot
    expect(d.slot.runningDescriptor()?.version).toBe("1.0.0");
  }

  it("the bytes written before the cut are covered: another image's prefix + the signed rest is refused", () => {
    // The server sent the first sectors of other bytes, then (after the cut) the signed image's rest.
    const evil = buildImage({ version: "1.1.0", segments: [6000, 5000], seed: 3 });
    const d = device();
    try {
      cutAfter(d, evil, 2 * SECTOR + 100);
      const resumeAt = d.slot.resume(2 * SECTOR + 100, key);
      expect(resumeAt).toBe(2 * SECTOR);
      expect(outcome(() => { d.slot.write(signed.subarray(resumeAt)); d.slot.end(); d.slot.setBootPartition(); })).toBe(OTA_CODES.OTA_IMAGE_BAD_CHECKSUM);
      d.reboot();
      expect(d.slot.runningDescriptor()?.version).toBe("1.0.0");
    } finally {
      d.close();
    }
  });

  it("...and with the appended SHA-256 recomputed over the mix, the block's digest no longer matches", () => {
    const evil = buildImage({ version: "1.1.0", segments: [6000, 5000], seed: 3 });
    const mix = new Uint8Array(signed);
    mix.set(evil.subarray(0, 2 * SECTOR));
    mix.set(createHash("sha256").update(mix.subarray(0, at - 32)).digest(), at - 32);
    // the XOR checksum of the mix is wrong unless it happens to match; fix it so only the signature can object
    let x = 0xef;
    const dv = new DataView(mix.buffer);
    let off = 24;
    for (let s = 0; s < mix[1]!; s++) { const len = dv.getUint32(off + 4, true); off += 8; for (let k = 0; k < len; k++) x ^= mix[off + k]!; off += len; }
    mix[at - 33] = x;
    mix.set(createHash("sha256").update(mix.subarray(0, at - 32)).digest(), at - 32);
    const d = device();
    try {
      cutAfter(d, mix, 2 * SECTOR + 100);
      const resumeAt = d.slot.resume(2 * SECTOR + 100, key);
      expect(outcome(() => { d.slot.write(mix.subarray(resumeAt)); d.slot.end(); })).toBe(OTA_CODES.OTA_SIGNATURE_INVALID);
    } finally {
      d.close();
    }
  });

  it("begun with a key, resumed with the key after a reboot: an unsigned image is still refused", () => {
    const d = device();
    try {
      cutAfter(d, image, 2 * SECTOR + 7);
      const resumeAt = d.slot.resume(2 * SECTOR + 7, key);
      expect(resumeAt).toBe(2 * SECTOR);
      d.slot.write(image.subarray(resumeAt));
      expect(outcome(() => d.slot.end())).toBe(OTA_CODES.OTA_SIGNATURE_MISSING);
      expect(outcome(() => d.slot.setBootPartition())).toBe(OTA_CODES.OTA_INVALID_STATE);
    } finally {
      d.close();
    }
  });

  it("begun WITHOUT a key (firmware before the key), resumed with it: the key applies to the whole image", () => {
    const d = device();
    try {
      cutAfter(d, image, 2 * SECTOR + 7, {});
      const resumeAt = d.slot.resume(2 * SECTOR + 7, key);
      d.slot.write(image.subarray(resumeAt));
      expect(outcome(() => d.slot.end())).toBe(OTA_CODES.OTA_SIGNATURE_MISSING);
    } finally {
      d.close();
    }
  });

  it("a cut after end() and before setBootPartition: the old image boots; the resume below the end verifies again", () => {
    const d = device();
    try {
      expect(outcome(() => install(d.slot, signed, { ...key, noSetBoot: true }))).toBe("ok");
      d.reboot();
      expect(d.slot.runningDescriptor()?.version).toBe("1.0.0");
      // the controller's restart while Verifying: resume(total - 1), the last sector again, end(), setBoot
      const resumeAt = d.slot.resume(signed.length - 1, key);
      expect(resumeAt).toBe(Math.floor((signed.length - 1) / SECTOR) * SECTOR);
      d.slot.write(image.subarray(resumeAt)); // the server now sends the rest without the block
      expect(outcome(() => d.slot.end())).toBe(OTA_CODES.OTA_SIGNATURE_MISSING);
      d.reboot();
      expect(d.slot.runningDescriptor()?.version).toBe("1.0.0");
    } finally {
      d.close();
    }
  });
});

describe("a refused image left in the inactive slot", () => {
  it.each<OtaHardwareLayer>(["host", "esp32-fakes"])("%s layer: a signature refusal erases the slot's first sector; other refusals do not", (layer) => {
    const file = makeFlashFile(path.join(dir, `flash-${n++}.bin`), { factory: buildImage({ version: "1.0.0" }) });
    const d = new Device(file, 0, layer);
    d.reboot();
    try {
      expect(outcome(() => install(d.slot, image, key))).toBe(OTA_CODES.OTA_SIGNATURE_MISSING);
      expect([...readPartition(file, "ota_0").subarray(0, SECTOR)].every((b) => b === 0xff)).toBe(true);
      expect(readPartition(file, "ota_0").subarray(SECTOR, 2 * SECTOR).equals(Buffer.from(image.subarray(SECTOR, 2 * SECTOR)))).toBe(true);
      expect(outcome(() => install(d.slot, signed, key))).toBe("ok"); // the slot takes the next image as usual
      d.reboot();
      expect(d.slot.runningDescriptor()?.version).toBe("1.1.0");
    } finally {
      d.close();
    }
  });

  it("is not booted when the running image later fails the bootloader's check (the bootloader tries every slot)", () => {
    const d = device();
    try {
      expect(outcome(() => install(d.slot, signImage(buildImage({ version: "1.1.0" }), trusted.privateKeyPem).bytes, key))).toBe("ok");
      d.reboot();
      d.slot.markValid();
      expect(outcome(() => install(d.slot, signImage(buildImage({ version: "1.2.0" }), trusted.privateKeyPem).bytes, key))).toBe("ok");
      d.reboot();
      d.slot.markValid();
      expect(d.slot.runningPartition().label).toBe("ota_1");
      // The server sends an unsigned 1.3.0: refused at end(), after it was written into ota_0.
      expect(outcome(() => install(d.slot, buildImage({ version: "1.3.0" }), key))).toBe(OTA_CODES.OTA_SIGNATURE_MISSING);
      // The running image becomes unbootable (a flash fault): the bootloader walks down from ota_1.
      writeAt(d.file, partition("ota_1").offset + 100, Uint8Array.of(0x5a));
      d.reboot();
      expect(d.slot.runningDescriptor()?.version).not.toBe("1.3.0");
      expect(d.slot.runningPartition().label).toBe("factory");
    } finally {
      d.close();
    }
  });
});
