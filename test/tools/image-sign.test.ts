/**
 * Image signing (src/tools/image-sign.ts) and its CLI (`npm run image -- keygen|sign|verify`): the block's
 * bytes, the round trip, every refusal with its code, re-signing, keys of the wrong kind, and the rule that
 * a private key is never written into the repository. The device side (the C core verifying the same
 * blocks) is test/native/signed-images.test.ts; end to end through the local cloud, test/sim/ota-signed.test.ts.
 */
import { generateKeyPairSync, verify } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { isShadowOtaError } from "../../src/core/errors";
import { OTA_CODES } from "../../src/native/ota-errors";
import { buildImage, ESP_IMAGE_CODES, imageLayout } from "../../src/tools/esp-image";
import { checkKeyPath, main } from "../../src/tools/image-cli";
import {
  generateSigningKey,
  IMAGE_SIGN_CODES,
  keyIdOf,
  publicKeyDer,
  readSignatureBlock,
  SIGNATURE_BLOCK_LEN,
  signImage,
  verifyImageSignature,
} from "../../src/tools/image-sign";

const ROOT = path.resolve(__dirname, "..", "..");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "image-sign-test-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const key = generateSigningKey();
const other = generateSigningKey();
const image = buildImage({ version: "1.1.0", size: 32 * 1024 });

function codeOf(f: () => unknown): string {
  try {
    f();
    return "ok";
  } catch (e) {
    if (isShadowOtaError(e)) return e.code;
    throw e;
  }
}

describe("signImage / verifyImageSignature", () => {
  const s = signImage(image, key.privateKeyPem);

  it("appends one 152-byte block in the documented layout", () => {
    expect(s.bytes.length).toBe(image.length + SIGNATURE_BLOCK_LEN);
    expect(Buffer.from(s.bytes.subarray(0, image.length)).equals(Buffer.from(image))).toBe(true);
    const b = Buffer.from(s.bytes.subarray(image.length));
    expect(b.subarray(0, 4).toString("latin1")).toBe("SOSG");
    expect([b[4], b[5]]).toEqual([1, 1]);
    expect(b.readUInt32LE(8)).toBe(image.length);
    expect(b.readUInt32LE(12)).toBe(0);
    const hashAt = imageLayout(image).hashOffset!;
    expect(b.subarray(16, 48).toString("hex")).toBe(Buffer.from(image.subarray(hashAt, hashAt + 32)).toString("hex"));
    expect(b.subarray(48, 80).toString("hex")).toBe(key.keyId);
    const sig = b.subarray(80, 80 + b.readUInt16LE(6));
    expect(sig[0]).toBe(0x30); // DER SEQUENCE
    expect(b.subarray(80 + sig.length).every((x) => x === 0)).toBe(true);
    // An independent check with node:crypto: ECDSA over the bytes the image's SHA-256 covers.
    expect(verify("sha256", image.subarray(0, hashAt), key.publicKeyPem, sig)).toBe(true);
    expect(s.digest).toBe(b.subarray(16, 48).toString("hex"));
    expect(Buffer.from(s.signatureBase64, "base64").equals(sig)).toBe(true);
  });

  it("verifies with the public key, the private key, PEM or DER", () => {
    for (const k of [key.publicKeyPem, key.privateKeyPem, publicKeyDer(key.publicKeyPem)]) {
      expect(verifyImageSignature(s.bytes, k)).toEqual({ imageLength: image.length, digest: s.digest, keyId: key.keyId });
    }
  });

  it("key id = SHA-256 of the DER SubjectPublicKeyInfo, the same from every form of the key", () => {
    expect(keyIdOf(key.privateKeyPem)).toBe(key.keyId);
    expect(keyIdOf(publicKeyDer(key.publicKeyPem))).toBe(key.keyId);
    expect(publicKeyDer(key.publicKeyPem).length).toBe(91);
    expect(other.keyId).not.toBe(key.keyId);
  });

  it("refuses: no block, another key, a flipped bit anywhere in image or block", () => {
    expect(codeOf(() => verifyImageSignature(image, key.publicKeyPem))).toBe(OTA_CODES.OTA_SIGNATURE_MISSING);
    expect(codeOf(() => verifyImageSignature(s.bytes, other.publicKeyPem))).toBe(OTA_CODES.OTA_SIGNATURE_INVALID);
    for (const at of [40, image.length - 1, image.length + 4, image.length + 8, image.length + 16, image.length + 50, image.length + 90, s.bytes.length - 1]) {
      const t = new Uint8Array(s.bytes);
      t[at]! ^= 1;
      expect([at, codeOf(() => verifyImageSignature(t, key.publicKeyPem))]).toEqual([at, OTA_CODES.OTA_SIGNATURE_INVALID]);
    }
  });

  it("re-signs a signed image (the old block is replaced) and refuses foreign trailing bytes", () => {
    const again = signImage(s.bytes, other.privateKeyPem);
    expect(again.bytes.length).toBe(s.bytes.length);
    expect(readSignatureBlock(again.bytes)!.keyId).toBe(other.keyId);
    expect(codeOf(() => signImage(Uint8Array.of(...image, 0xe7, 0x02), key.privateKeyPem))).toBe(IMAGE_SIGN_CODES.IMAGE_SIGN_TRAILING_DATA);
    expect(codeOf(() => verifyImageSignature(Uint8Array.of(...s.bytes, 0), key.publicKeyPem))).toBe(IMAGE_SIGN_CODES.IMAGE_SIGN_TRAILING_DATA);
  });

  it("refuses an image without appended SHA-256, a non-image, and keys that are not P-256", () => {
    expect(codeOf(() => signImage(buildImage({ version: "1.1.0", hashAppended: false }), key.privateKeyPem))).toBe(IMAGE_SIGN_CODES.IMAGE_SIGN_NO_HASH);
    expect(codeOf(() => signImage(new Uint8Array(64), key.privateKeyPem))).toBe(ESP_IMAGE_CODES.ESP_IMAGE_MALFORMED);
    const p384 = generateKeyPairSync("ec", { namedCurve: "secp384r1" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    for (const k of [p384, rsa, key.publicKeyPem, "not a key"]) {
      expect(codeOf(() => signImage(image, k))).toBe(IMAGE_SIGN_CODES.IMAGE_SIGN_BAD_KEY);
    }
    expect(codeOf(() => verifyImageSignature(s.bytes, p384))).toBe(IMAGE_SIGN_CODES.IMAGE_SIGN_BAD_KEY);
  });
});

describe("npm run image -- keygen | sign | verify", () => {
  const run = (...argv: string[]): { status: number; out: string[]; err: string[] } => {
    const out: string[] = [];
    const err: string[] = [];
    const status = main(argv, (l) => out.push(l), (l) => err.push(l));
    return { status, out, err };
  };

  it("keygen writes the private key 0600 and the public key as PEM and DER; sign and verify use them", () => {
    const k = path.join(dir, "keys", "fw.pem");
    const g = run("keygen", "--out", k);
    expect(g.status).toBe(0);
    expect(fs.statSync(k).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(k, "utf8")).toContain("BEGIN PRIVATE KEY");
    expect(fs.readFileSync(path.join(dir, "keys", "fw.pub.der")).length).toBe(91);
    const id = keyIdOf(fs.readFileSync(k, "utf8"));
    expect(g.out).toContain(`key id ${id}`);
    expect(run("keygen", "--out", k)).toMatchObject({ status: 1 }); // exists: --force needed

    const inFile = path.join(dir, "in.bin");
    const outFile = path.join(dir, "out.bin");
    fs.writeFileSync(inFile, image);
    const s = run("sign", inFile, "--key", k, "-o", outFile);
    expect(s.status).toBe(0);
    expect(s.out).toContain(`key id ${id}`);
    expect(fs.statSync(outFile).size).toBe(image.length + SIGNATURE_BLOCK_LEN);
    expect(run("verify", outFile, "--key", path.join(dir, "keys", "fw.pub.der")).status).toBe(0);
    expect(run("verify", outFile, "--key", path.join(dir, "keys", "fw.pub.pem")).status).toBe(0);
    const bad = run("verify", inFile, "--key", path.join(dir, "keys", "fw.pub.pem"));
    expect(bad.status).toBe(1);
    expect(bad.err[0]).toMatch(/^error OTA_SIGNATURE_MISSING: /);
    expect(run("sign", inFile, "--key", k).status).toBe(1); // no -o
    const shown = run("inspect", outFile);
    expect(shown.out).toContain(`  key id             ${id}`);
    expect(shown.out.some((l) => l.startsWith("signature block (offset "))).toBe(true);
    expect(run("inspect", inFile).out.some((l) => l.startsWith("signature block"))).toBe(false);
  });

  it("refuses to write a private key inside the git tree, except under build/ and the temp folder", () => {
    expect(codeOf(() => checkKeyPath(path.join(ROOT, "key.pem")))).toBe(IMAGE_SIGN_CODES.IMAGE_SIGN_KEY_IN_REPO);
    expect(codeOf(() => checkKeyPath(path.join(ROOT, "certs", "generated", "key.pem")))).toBe(IMAGE_SIGN_CODES.IMAGE_SIGN_KEY_IN_REPO);
    expect(codeOf(() => checkKeyPath(path.join(ROOT, "build", "keys", "key.pem")))).toBe("ok");
    expect(codeOf(() => checkKeyPath(path.join(os.tmpdir(), "x", "key.pem")))).toBe("ok");
    // A clone that itself lies in the temp folder (as CI's may) is still a git tree.
    const clone = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-clone-"));
    try {
      fs.mkdirSync(path.join(clone, ".git"));
      expect(codeOf(() => checkKeyPath(path.join(clone, "key.pem")))).toBe(IMAGE_SIGN_CODES.IMAGE_SIGN_KEY_IN_REPO);
      expect(codeOf(() => checkKeyPath(path.join(clone, "build", "key.pem")))).toBe("ok");
    } finally {
      fs.rmSync(clone, { recursive: true, force: true });
    }
    const r = run("keygen", "--out", path.join(ROOT, "src", "never-here.pem"));
    expect(r.status).toBe(1);
    expect(r.err[0]).toMatch(/^error IMAGE_SIGN_KEY_IN_REPO: /);
    expect(fs.existsSync(path.join(ROOT, "src", "never-here.pem"))).toBe(false);
  });
});
