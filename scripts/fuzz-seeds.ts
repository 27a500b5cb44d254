/**
 * Writes the seed corpus of the libFuzzer target (src/native/fuzz/ota_fuzz.c) into a directory, at run
 * time, from images built by src/tools/esp-image.ts: valid images, every corruption class, and otadata
 * entry pairs, each behind the target's 8-byte control header (flags, chunking, seed, cut point, size
 * delta; the grammar is in ota_fuzz.c), and signed images (docs/signing.md) in every mode, with the key
 * configured (mode 6) and without. Called by scripts/fuzz.sh; the seeds are never committed.
 *
 * The signing key: <dir>/../signing-key.pem (made once, mode 0600, under build/; a fuzzing key nothing
 * trusts) and its public half <dir>/../signing-key.pub.der, which scripts/fuzz.sh hands to the target.
 * Not here: any fuzzing logic. Deterministic: the same files every run, except the signature bytes
 * (ECDSA's random k).
 * Usage: tsx scripts/fuzz-seeds.ts <dir>     (the directory is emptied first)
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { allCorruptions, buildImage } from "../src/tools/esp-image";
import { OTA_STATE, otaSelectEntry } from "../src/tools/flash-file";
import { generateSigningKey, publicKeyDer, signImage } from "../src/tools/image-sign";

/** The harness's slot size (SLOT_SIZE in ota_fuzz.c): "oversize" variants must exceed it. */
const FUZZ_SLOT_SIZE = 0x5000;

const MODE = { plain: 0, gateRefuse: 1, resume: 2, rebootResume: 3, powerCut: 4, garbageOtadata: 5, signedInstall: 6 } as const;

interface Control {
  requireHash?: boolean;
  declareSize?: boolean;
  minSecureVersion2?: boolean;
  mode?: number;
  fromOta0?: boolean;
  sizeDelta?: number;
  /** Low nibble: log2 of the largest chunk; high nibble 0xF: fixed chunks. */
  chunks?: number;
  seed?: number;
  point?: number;
}

function control(c: Control): Uint8Array {
  const out = new Uint8Array(8);
  out[0] =
    (c.requireHash ? 1 : 0) |
    (c.declareSize ? 2 : 0) |
    (c.minSecureVersion2 ? 4 : 0) |
    (((c.mode ?? 0) & 7) << 3) |
    (c.fromOta0 ? 0x40 : 0) |
    (c.sizeDelta !== undefined ? 0x80 : 0);
  out[1] = c.chunks ?? 0x0b;
  new DataView(out.buffer).setUint32(2, (c.seed ?? 0x12345678) >>> 0, true);
  out[6] = c.point ?? 128;
  out[7] = (c.sizeDelta ?? 0) & 0xff;
  return out;
}

function seed(c: Control, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + payload.length);
  out.set(control(c));
  out.set(payload, 8);
  return out;
}

/** `signingKey`: the PEM private key the signed seeds are signed with (the target trusts its public half in
 *  mode 6). Without it, no signed seeds. */
export function fuzzSeeds(signingKey?: string): { name: string; bytes: Uint8Array }[] {
  const seeds: { name: string; bytes: Uint8Array }[] = [];
  const add = (name: string, c: Control, payload: Uint8Array): void => {
    seeds.push({ name, bytes: seed(c, payload) });
  };

  const small = buildImage({ version: "1.2.0", segments: [1024, 512, 256], seed: 11 });
  const medium = buildImage({ version: "2.0.0", segments: [4096, 2048, 1024, 512], seed: 12 });
  const noHash = buildImage({ version: "1.3.0", segments: [768, 256], hashAppended: false, seed: 13 });
  const secure = buildImage({ version: "1.4.0", segments: [512, 128], secureVersion: 3, seed: 14 });
  const many = buildImage({ version: "1.5.0", segments: [256, ...new Array<number>(15).fill(16)], seed: 15 });
  const s3 = buildImage({ version: "1.2.0", chip: "esp32s3", segments: [512], seed: 16 });

  // Valid images in every scenario the harness knows, with a few chunkings.
  const valid: [string, Uint8Array][] = [
    ["small", small],
    ["medium", medium],
    ["nohash", noHash],
    ["secure", secure],
    ["many-segments", many],
  ];
  for (const [name, img] of valid) {
    add(`${name}-plain`, { requireHash: name !== "nohash", chunks: 0x0b }, img);
    add(`${name}-plain-ota0`, { fromOta0: true, chunks: 0x04, declareSize: true }, img);
    add(`${name}-gate`, { mode: MODE.gateRefuse, chunks: 0x09 }, img);
    add(`${name}-resume`, { mode: MODE.resume, chunks: 0x0a, point: 200, seed: 0x00500001 }, img);
    add(`${name}-reboot-resume`, { mode: MODE.rebootResume, fromOta0: true, chunks: 0xfc, point: 230 }, img);
    add(`${name}-powercut`, { mode: MODE.powerCut, chunks: 0x0c, point: 90, seed: 0x0000_0777 }, img);
    add(`${name}-powercut-late`, { mode: MODE.powerCut, fromOta0: true, chunks: 0x08, point: 250, seed: 0x0000_0123 }, img);
  }
  // Power cuts in the middle of a multi-sector download, then resume (the harness resumes after such a cut).
  const large = buildImage({ version: "2.1.0", segments: [8192, 4096, 2048, 1024], seed: 17 });
  for (const point of [40, 60, 80, 100, 120]) {
    add(`large-powercut-${point}`, { mode: MODE.powerCut, requireHash: true, chunks: 0x0b, point, seed: point * 7 }, large);
  }
  add("small-bytewise", { chunks: 0x00 }, small);
  add("small-size-delta", { declareSize: true, sizeDelta: -16 }, small);
  add("secure-floor", { minSecureVersion2: true }, secure);
  add("s3-wrong-chip", { chunks: 0x05 }, s3);

  // Every corruption class of two images (the harness's slot size makes "oversize" reachable).
  for (const [name, img] of [
    ["small", small],
    ["medium", medium],
  ] as const) {
    for (const c of allCorruptions(img, { slotSize: FUZZ_SLOT_SIZE, minSecureVersion: 2 })) {
      const label = `${name}-${c.name}`.replace(/[^a-z0-9.-]+/gi, "_");
      add(label, { requireHash: true, minSecureVersion2: true, chunks: 0x0b }, c.bytes);
    }
  }

  // Signed images: with the key (mode 6: verifies), with another key, unsigned, a damaged block; and the
  // signed image through the keyless modes (resume and power cuts inside the block's sector).
  if (signingKey !== undefined) {
    const signedSmall = signImage(small, signingKey).bytes;
    const signedMedium = signImage(medium, signingKey).bytes;
    const otherKey = signImage(small, generateSigningKey().privateKeyPem).bytes;
    add("signed-small-key", { mode: MODE.signedInstall, requireHash: true, chunks: 0x0b }, signedSmall);
    add("signed-medium-key-ota0", { mode: MODE.signedInstall, fromOta0: true, declareSize: true, chunks: 0x05 }, signedMedium);
    add("signed-small-key-bytewise", { mode: MODE.signedInstall, chunks: 0x00 }, signedSmall);
    add("signed-other-key", { mode: MODE.signedInstall, chunks: 0x0b }, otherKey);
    add("unsigned-with-key", { mode: MODE.signedInstall, chunks: 0x0b }, small);
    const flipped = new Uint8Array(signedSmall);
    flipped[flipped.length - 80]! ^= 0x40; // inside the DER signature
    add("signed-flipped-sig-key", { mode: MODE.signedInstall, chunks: 0x0b }, flipped);
    add("signed-truncated-block", { mode: MODE.signedInstall, chunks: 0x0b }, signedSmall.subarray(0, signedSmall.length - 7));
    add("signed-small-plain", { chunks: 0x0b }, signedSmall);
    add("signed-medium-resume", { mode: MODE.resume, chunks: 0x0a, point: 250, seed: 0x00500001 }, signedMedium);
    add("signed-medium-reboot-resume", { mode: MODE.rebootResume, fromOta0: true, chunks: 0xfc, point: 252 }, signedMedium);
    add("signed-medium-powercut-late", { mode: MODE.powerCut, chunks: 0x08, point: 254, seed: 0x0000_0321 }, signedMedium);
  }

  // otadata entry pairs for the garbage-otadata mode (payload = entry 0, entry 1).
  const blank = new Uint8Array(32).fill(0xff);
  const pairs: [string, Uint8Array, Uint8Array][] = [
    ["blank", blank, blank],
    ["seq1-valid", otaSelectEntry(1, OTA_STATE.VALID), blank],
    ["seq1-valid-seq2-new", otaSelectEntry(1, OTA_STATE.VALID), otaSelectEntry(2, OTA_STATE.NEW)],
    ["seq2-pending-seq1-valid", otaSelectEntry(1, OTA_STATE.VALID), otaSelectEntry(2, OTA_STATE.PENDING_VERIFY)],
    ["seq3-invalid-seq2-valid", otaSelectEntry(3, OTA_STATE.INVALID), otaSelectEntry(2, OTA_STATE.VALID)],
    ["seq1-undefined", otaSelectEntry(1, OTA_STATE.UNDEFINED), blank],
    ["seq5-aborted-seq4-new", otaSelectEntry(5, OTA_STATE.ABORTED), otaSelectEntry(4, OTA_STATE.NEW)],
  ];
  for (const [name, a, b] of pairs) {
    const payload = new Uint8Array(64);
    payload.set(a, 0);
    payload.set(b, 32);
    add(`otadata-${name}`, { mode: MODE.garbageOtadata }, payload);
    add(`otadata-${name}-ota0`, { mode: MODE.garbageOtadata, fromOta0: true }, payload);
  }
  return seeds;
}

function main(argv: string[]): number {
  const dir = argv[0];
  if (dir === undefined) {
    console.error("usage: tsx scripts/fuzz-seeds.ts <dir>");
    return 2;
  }
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const keyFile = path.join(path.dirname(path.resolve(dir)), "signing-key.pem");
  if (!fs.existsSync(keyFile)) fs.writeFileSync(keyFile, generateSigningKey().privateKeyPem, { mode: 0o600 });
  const key = fs.readFileSync(keyFile, "utf8");
  fs.writeFileSync(path.join(path.dirname(keyFile), "signing-key.pub.der"), publicKeyDer(key));
  const seeds = fuzzSeeds(key);
  seeds.forEach((s, i) => fs.writeFileSync(path.join(dir, `seed-${String(i).padStart(3, "0")}-${s.name}`), s.bytes));
  const largest = Math.max(...seeds.map((s) => s.bytes.length));
  console.log(`fuzz-seeds: ${seeds.length} seeds in ${dir} (largest ${largest} bytes)`);
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
