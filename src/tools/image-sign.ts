/**
 * Signed firmware images (Node only: a build and release tool): the signature block appended to an ESP32 app
 * image, made with an ECDSA P-256 key and checked the way the device's C core checks it
 * (src/native/core/ota_sign.c). The format and why it is an appended block: docs/signing.md.
 *
 *   generateSigningKey()            a new P-256 key pair (PEM) and its key id
 *   signImage(image, privateKey)    image + a 152-byte block (an existing block of this format is replaced)
 *   verifyImageSignature(signed, publicKey)   the device's checks, in TypeScript (tests, `npm run image -- verify`)
 *   readSignatureBlock(bytes)       the block after the image, decoded, or undefined
 *   keyIdOf(publicKey)              SHA-256 of the key's DER SubjectPublicKeyInfo (hex)
 *
 * What is signed: the image's own SHA-256, the one ESP-IDF appends (SHA-256 of every image byte before it,
 * already checked by the device's parser), so signing needs an image with hash_appended set. The ECDSA
 * input is exactly that digest (node:crypto's sign("sha256", bytes) hashes the same bytes the digest
 * covers), so the device verifies with one mbedtls_pk_verify and no second SHA-256 pass.
 * Not here: key storage (the private key stays in a file outside the repository), the release upload.
 */
import * as fs from "node:fs";
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, KeyObject, sign, verify } from "node:crypto";

import { ShadowOtaError } from "../core/errors";
import { OTA_CODES } from "../native/ota-errors";
import { ESP_IMAGE_CODES, HASH_LEN, imageLayout } from "./esp-image";

/** Error codes of the signing tool (keys and inputs); a signature that does not verify is OTA_SIGNATURE_*. */
export const IMAGE_SIGN_CODES = {
  /** The key is not an ECDSA P-256 key of the expected kind (private for signing, public or private for verify), or not PEM/DER. */
  IMAGE_SIGN_BAD_KEY: "IMAGE_SIGN_BAD_KEY",
  /** The image has no appended SHA-256 (hash_appended is 0): there is no image digest to sign. */
  IMAGE_SIGN_NO_HASH: "IMAGE_SIGN_NO_HASH",
  /** Bytes after the image that are not a signature block of this format (e.g. a Secure Boot V2 block). */
  IMAGE_SIGN_TRAILING_DATA: "IMAGE_SIGN_TRAILING_DATA",
  /** keygen: refusing to write a private key inside the git working tree (outside build/ and tmp folders). */
  IMAGE_SIGN_KEY_IN_REPO: "IMAGE_SIGN_KEY_IN_REPO",
  /** A private key file that group or others may read, write or run (mode & 0o077 is not 0; `chmod 600` it). */
  IMAGE_SIGN_KEY_UNPROTECTED: "IMAGE_SIGN_KEY_UNPROTECTED",
} as const;

/** "SOSG": the block's first four bytes (not 0xE7, Secure Boot V2's magic byte, so the two never mix). */
export const SIGNATURE_MAGIC = Uint8Array.of(0x53, 0x4f, 0x53, 0x47);
export const SIGNATURE_BLOCK_VERSION = 1;
/** ECDSA over NIST P-256 (secp256r1) with SHA-256. */
export const SIGNATURE_ALG_ECDSA_P256_SHA256 = 1;
export const SIGNATURE_BLOCK_LEN = 152;
/** Largest DER ECDSA-Sig-Value for P-256 (two 33-byte INTEGERs with their headers, in a SEQUENCE). */
export const SIGNATURE_DER_MAX = 72;

/** Offsets inside the block (little-endian numbers). */
const AT = { magic: 0, version: 4, alg: 5, sigLen: 6, imageLen: 8, reserved: 12, digest: 16, keyId: 48, sig: 80 } as const;

export interface SignatureBlock {
  /** Offset of the block in the file (= the image length). */
  offset: number;
  version: number;
  alg: number;
  imageLength: number;
  /** Hex: the image's appended SHA-256 the signature covers. */
  digest: string;
  /** Hex: SHA-256 of the signer's DER SubjectPublicKeyInfo. */
  keyId: string;
  /** The DER signature (sigLen bytes). */
  signature: Uint8Array;
  /** Reserved bytes and the signature's zero padding are all zero. */
  reservedZero: boolean;
}

export interface SignResult {
  /** The image followed by its signature block. */
  bytes: Uint8Array;
  imageLength: number;
  /** Hex SHA-256 the signature covers (the image's appended hash). */
  digest: string;
  keyId: string;
  /** DER ECDSA signature, base64 (what the release tool prints). */
  signatureBase64: string;
}

export interface VerifyResult {
  imageLength: number;
  digest: string;
  keyId: string;
}

type KeyInput = string | Uint8Array | KeyObject;

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

function badKey(message: string, cause?: unknown): ShadowOtaError {
  return new ShadowOtaError(IMAGE_SIGN_CODES.IMAGE_SIGN_BAD_KEY, message, { cause });
}

function checkP256(key: KeyObject, what: string): KeyObject {
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw badKey(`${what} is not an ECDSA P-256 key (type ${key.asymmetricKeyType ?? "?"}, curve ${key.asymmetricKeyDetails?.namedCurve ?? "none"})`);
  }
  return key;
}

function toPrivateKey(k: KeyInput): KeyObject {
  if (k instanceof KeyObject) {
    if (k.type !== "private") throw badKey(`signing needs a private key, got a ${k.type} key`);
    return checkP256(k, "the signing key");
  }
  try {
    const text = typeof k === "string" ? k : Buffer.from(k);
    return checkP256(createPrivateKey(typeof text === "string" || text.includes("-----BEGIN") ? { key: text } : { key: text, format: "der", type: "pkcs8" }), "the signing key");
  } catch (e) {
    if (e instanceof ShadowOtaError) throw e;
    throw badKey(`cannot read the signing key as a PEM or PKCS#8 DER private key: ${(e as Error).message}`, e);
  }
}

/** A public key from PEM/DER public key (SPKI) text or bytes, or from a private key (its public half). */
export function toPublicKey(k: KeyInput): KeyObject {
  if (k instanceof KeyObject) return checkP256(k.type === "private" ? createPublicKey(k) : k, "the key");
  try {
    const text = typeof k === "string" ? k : Buffer.from(k);
    const pem = typeof text === "string" || text.includes("-----BEGIN");
    return checkP256(createPublicKey(pem ? { key: text } : { key: text, format: "der", type: "spki" }), "the key");
  } catch (e) {
    if (e instanceof ShadowOtaError) throw e;
    throw badKey(`cannot read the key as a PEM or SPKI DER public key (or a PEM private key): ${(e as Error).message}`, e);
  }
}

/** The DER SubjectPublicKeyInfo of a key: what the device is given (src/native: `signingKey`). */
export function publicKeyDer(k: KeyInput): Uint8Array {
  return new Uint8Array(toPublicKey(k).export({ type: "spki", format: "der" }));
}

/** Key id: hex SHA-256 of the public key's DER SubjectPublicKeyInfo (the C core computes the same). */
export function keyIdOf(k: KeyInput): string {
  return createHash("sha256").update(publicKeyDer(k)).digest("hex");
}

/** A new P-256 key pair, PEM (private: PKCS#8; public: SPKI), with its key id. */
/**
 * Reads a private signing key file for `--sign` / `--key`, as OpenSSH reads an identity file: refused with
 * IMAGE_SIGN_KEY_UNPROTECTED when group or others have any access to it (mode & 0o077; `chmod 600` fixes
 * it; not checked on Windows, which has no such bits). A file that cannot be read or is not a regular file
 * is `unreadable`'s error (default ESP_IMAGE_BAD_OPTION). The messages name the option, never the
 * argument: someone who passes the key itself instead of its file must not see it printed back.
 */
export function readPrivateKeyFile(
  file: string,
  option = "--key",
  unreadable: (why: string) => Error = (why) => new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `the ${option} key file ${why}`),
): Uint8Array {
  const fail = (why: string): ShadowOtaError => new ShadowOtaError(IMAGE_SIGN_CODES.IMAGE_SIGN_KEY_UNPROTECTED, `the ${option} key file ${why}`);
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (e) {
    throw unreadable(`cannot be read (${(e as NodeJS.ErrnoException).code ?? "error"})`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw unreadable("is not a regular file");
    if (process.platform !== "win32" && (st.mode & 0o077) !== 0) {
      throw fail(`is open to group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, "0")}); chmod 600 it`);
    }
    return new Uint8Array(fs.readFileSync(fd));
  } finally {
    fs.closeSync(fd);
  }
}

export function generateSigningKey(): { privateKeyPem: string; publicKeyPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  return {
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

function hasMagicAt(bytes: Uint8Array, at: number): boolean {
  if (bytes.length < at + SIGNATURE_MAGIC.length) return false;
  for (let i = 0; i < SIGNATURE_MAGIC.length; i++) if (bytes[at + i] !== SIGNATURE_MAGIC[i]) return false;
  return true;
}

/**
 * The signature block right after the image, decoded (no checks beyond the magic and the length), or
 * undefined when nothing follows the image. Throws ESP_IMAGE_MALFORMED (not an image) and
 * IMAGE_SIGN_TRAILING_DATA (bytes after the image that are not exactly one block of this format).
 */
export function readSignatureBlock(bytes: Uint8Array): SignatureBlock | undefined {
  const len = imageLayout(bytes).length;
  if (bytes.length === len) return undefined;
  if (!hasMagicAt(bytes, len) || bytes.length !== len + SIGNATURE_BLOCK_LEN) {
    throw new ShadowOtaError(
      IMAGE_SIGN_CODES.IMAGE_SIGN_TRAILING_DATA,
      `${bytes.length - len} bytes after the image are not one ${SIGNATURE_BLOCK_LEN}-byte signature block ("SOSG")`,
      { detail: { imageLength: len, fileLength: bytes.length } },
    );
  }
  const b = bytes.subarray(len, len + SIGNATURE_BLOCK_LEN);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const sigLen = Math.min(dv.getUint16(AT.sigLen, true), SIGNATURE_DER_MAX);
  let reservedZero = dv.getUint32(AT.reserved, true) === 0;
  for (let i = AT.sig + sigLen; i < SIGNATURE_BLOCK_LEN; i++) if (b[i] !== 0) reservedZero = false;
  return {
    offset: len,
    version: b[AT.version]!,
    alg: b[AT.alg]!,
    imageLength: dv.getUint32(AT.imageLen, true),
    digest: hex(b.subarray(AT.digest, AT.digest + 32)),
    keyId: hex(b.subarray(AT.keyId, AT.keyId + 32)),
    signature: new Uint8Array(b.subarray(AT.sig, AT.sig + sigLen)),
    reservedZero,
  };
}

/**
 * Signs an ESP32 app image: returns the image followed by a signature block over its appended SHA-256.
 * An image that already carries a block of this format is re-signed (the old block is dropped).
 * Throws ESP_IMAGE_MALFORMED (not an image), IMAGE_SIGN_NO_HASH (no appended SHA-256; build with
 * hash_appended, as ESP-IDF does for apps), IMAGE_SIGN_TRAILING_DATA, IMAGE_SIGN_BAD_KEY.
 * The image's own checksum and hash are not re-checked here: `npm run image -- inspect` does that, and the
 * device refuses a damaged image before it looks at the signature.
 */
export function signImage(image: Uint8Array, privateKey: KeyInput): SignResult {
  const key = toPrivateKey(privateKey);
  const layout = imageLayout(image);
  if (layout.hashOffset === undefined) {
    throw new ShadowOtaError(IMAGE_SIGN_CODES.IMAGE_SIGN_NO_HASH, "the image has no appended SHA-256 (hash_appended = 0): nothing to sign");
  }
  readSignatureBlock(image); // refuses foreign trailing bytes
  const body = image.subarray(0, layout.hashOffset);
  const digest = image.subarray(layout.hashOffset, layout.hashOffset + HASH_LEN);
  const der = new Uint8Array(sign("sha256", body, { key, dsaEncoding: "der" }));
  const keyId = keyIdOf(key);
  const block = new Uint8Array(SIGNATURE_BLOCK_LEN);
  const dv = new DataView(block.buffer);
  block.set(SIGNATURE_MAGIC, AT.magic);
  block[AT.version] = SIGNATURE_BLOCK_VERSION;
  block[AT.alg] = SIGNATURE_ALG_ECDSA_P256_SHA256;
  dv.setUint16(AT.sigLen, der.length, true);
  dv.setUint32(AT.imageLen, layout.length, true);
  block.set(digest, AT.digest);
  block.set(Buffer.from(keyId, "hex"), AT.keyId);
  block.set(der, AT.sig);
  const bytes = new Uint8Array(layout.length + SIGNATURE_BLOCK_LEN);
  bytes.set(image.subarray(0, layout.length));
  bytes.set(block, layout.length);
  return { bytes, imageLength: layout.length, digest: hex(digest), keyId, signatureBase64: Buffer.from(der).toString("base64") };
}

/**
 * The device's checks in TypeScript. Throws OTA_SIGNATURE_MISSING (no block), OTA_SIGNATURE_INVALID
 * (malformed block, digest or length not the image's, another key's id, a signature that does not verify;
 * the message says which), IMAGE_SIGN_TRAILING_DATA, ESP_IMAGE_MALFORMED, IMAGE_SIGN_BAD_KEY.
 * The image's appended hash itself is checked against its bytes too.
 */
export function verifyImageSignature(signed: Uint8Array, publicKey: KeyInput): VerifyResult {
  const key = toPublicKey(publicKey);
  const block = readSignatureBlock(signed);
  if (block === undefined) throw new ShadowOtaError(OTA_CODES.OTA_SIGNATURE_MISSING, "the image carries no signature block");
  const invalid = (why: string): ShadowOtaError => new ShadowOtaError(OTA_CODES.OTA_SIGNATURE_INVALID, `signature block: ${why}`);
  const layout = imageLayout(signed);
  if (block.version !== SIGNATURE_BLOCK_VERSION || block.alg !== SIGNATURE_ALG_ECDSA_P256_SHA256) {
    throw invalid(`version ${block.version} / algorithm ${block.alg} not supported (want ${SIGNATURE_BLOCK_VERSION} / ${SIGNATURE_ALG_ECDSA_P256_SHA256})`);
  }
  if (!block.reservedZero || block.signature.length < 8) throw invalid("malformed (reserved bytes or signature length)");
  if (block.imageLength !== layout.length) throw invalid(`image length ${block.imageLength} is not the image's ${layout.length}`);
  if (layout.hashOffset === undefined) throw invalid("the image has no appended SHA-256 to sign");
  const body = signed.subarray(0, layout.hashOffset);
  const actual = createHash("sha256").update(body).digest("hex");
  const appended = hex(signed.subarray(layout.hashOffset, layout.hashOffset + HASH_LEN));
  if (appended !== actual || block.digest !== actual) throw invalid("the digest is not the image's SHA-256");
  const keyId = keyIdOf(key);
  if (block.keyId !== keyId) throw invalid(`signed by key ${block.keyId.slice(0, 16)}…, not the configured key ${keyId.slice(0, 16)}…`);
  if (!verify("sha256", body, { key, dsaEncoding: "der" }, block.signature)) throw invalid("the ECDSA signature does not verify");
  return { imageLength: layout.length, digest: actual, keyId };
}
