/**
 * `npm run image -- <command>`: the ESP32 app image tool (a build/test tool, Node only).
 *
 *   stamp in.bin --version 1.1.0 [--project NAME] -o out.bin
 *       Writes version (and project_name) into an existing app image's esp_app_desc_t, then recomputes the
 *       XOR checksum and, when a SHA-256 is appended, the SHA-256. Every other byte stays as it was.
 *       Refuses (exit 1, one clear line): a value longer than its 32-byte field (31 bytes + NUL) or not
 *       printable ASCII, a file that is not an ESP32 image or not an app image (no descriptor), an input
 *       whose own checksum / SHA-256 does not match.
 *   inspect in.bin [--json]
 *       Every header field, every segment, checksum and SHA-256 (stored vs computed), every descriptor
 *       field, the simulation marker if any.
 *   build --version 1.1.0 --out x.bin [...]
 *       The image generator of src/tools/esp-image.ts (its main(), same options).
 *   keygen --out key.pem [--force]
 *       A new ECDSA P-256 signing key: key.pem (PKCS#8, mode 0600), key.pub.pem and key.pub.der (the DER
 *       SubjectPublicKeyInfo a device is given). Refuses a path inside a git working tree unless it is under
 *       that tree's build/ (ignored) or the system's temp folder: a private key never enters a repository.
 *   sign in.bin --key key.pem -o out.bin
 *       Appends the signature block (src/tools/image-sign.ts; docs/signing.md); re-signs a signed image.
 *   verify in.bin --key key.pub.pem|key.pub.der|key.pem
 *       The device's signature checks; exit 1 with OTA_SIGNATURE_MISSING / OTA_SIGNATURE_INVALID.
 *
 * Works on real ESP-IDF output of every chip the project lists (see docs/native-ota.md for what was
 * checked by hand). Formats: docs/formats.md; ESP-IDF esp_app_format.h.
 * Not here: ESP-IDF's Secure Boot signatures (bytes after the image are kept and reported), flash
 * encryption, ELF conversion, anything the device runs (the device validates with the C core).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import { ShadowOtaError } from "../core/errors";
import {
  APP_DESC_LEN,
  APP_DESC_MAGIC,
  CHIP_IDS,
  computeChecksum,
  ESP_IMAGE_CODES,
  HASH_LEN,
  IMAGE_HEADER_LEN,
  ImageLayout,
  imageLayout,
  main as buildMain,
  readImageMarker,
  SEGMENT_HEADER_LEN,
} from "./esp-image";
import { generateSigningKey, IMAGE_SIGN_CODES, publicKeyDer, readPrivateKeyFile, readSignatureBlock, signImage, verifyImageSignature } from "./image-sign";

/** esp_app_desc_t offsets inside the image (the descriptor starts at image offset 32). */
const DESC_AT = IMAGE_HEADER_LEN + SEGMENT_HEADER_LEN;
const VERSION_AT = DESC_AT + 16;
const PROJECT_AT = DESC_AT + 48;
const FIELD_LEN = 32;

function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(bytes).digest());
}
function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}
function cString(bytes: Uint8Array, offset: number, size: number): string {
  let end = offset;
  while (end < offset + size && bytes[end] !== 0) end++;
  return Buffer.from(bytes.subarray(offset, end)).toString("latin1");
}

// ------------------------------------------------------------------------------------------------- names

const CHIP_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(CHIP_IDS).map(([name, id]) => [id, name.replace(/^esp32/, "ESP32-").replace(/-$/, "").toUpperCase()]),
);
/** esp_image_spi_mode_t. */
const SPI_MODES = ["QIO", "QOUT", "DIO", "DOUT", "FAST_READ", "SLOW_READ"];
/** spi_speed nibble -> frequency, per chip (esptool's tables); ESP32-S2/S3/C3 share the ESP32's. */
const ESP32_FREQ: Record<number, string> = { 0x0: "40m", 0x1: "26m", 0x2: "20m", 0xf: "80m" };
const SPI_FREQ: Readonly<Record<number, Record<number, string>>> = {
  [CHIP_IDS.esp32]: ESP32_FREQ,
  [CHIP_IDS.esp32s2]: ESP32_FREQ,
  [CHIP_IDS.esp32s3]: ESP32_FREQ,
  [CHIP_IDS.esp32c3]: ESP32_FREQ,
  [CHIP_IDS.esp32c2]: { 0x0: "30m", 0x1: "20m", 0x2: "15m", 0xf: "60m" },
  [CHIP_IDS.esp32c6]: { 0x0: "40m or 80m", 0x2: "20m" },
  [CHIP_IDS.esp32h2]: { 0x0: "24m", 0x1: "16m", 0x2: "12m", 0xf: "48m" },
};

function chipName(id: number): string {
  return CHIP_NAMES.get(id) ?? `unknown chip ${id}`;
}
function rev(full: number): string {
  return full === 0xffff ? "no limit" : `v${Math.floor(full / 100)}.${full % 100}`;
}

// --------------------------------------------------------------------------------------------- inspect

export interface SegmentReport {
  index: number;
  loadAddr: number;
  /** File offset of the segment's data (its 8-byte header is just before). */
  fileOffset: number;
  length: number;
}

export interface ImageReport {
  file?: string;
  size: number;
  header: {
    magic: number;
    segmentCount: number;
    spiMode: number;
    spiModeName: string;
    spiSpeed: number;
    spiSpeedName: string;
    spiSize: number;
    spiSizeName: string;
    entryAddr: number;
    wpPin: number;
    spiPinDrv: [number, number, number];
    chipId: number;
    chipName: string;
    minChipRev: number;
    minChipRevFull: number;
    maxChipRevFull: number;
    reserved: number[];
    hashAppended: number;
  };
  segments: SegmentReport[];
  checksum: { offset: number; stored: number; computed: number; ok: boolean };
  sha256: { offset: number; stored: string; computed: string; ok: boolean } | undefined;
  imageLength: number;
  /** Bytes in the file after the image (e.g. a signature block, docs/signing.md). */
  trailingBytes: number;
  /** The signature block after the image (docs/signing.md), decoded and unchecked; undefined when none. */
  signature?: { keyId: string; digest: string; signatureLength: number; digestMatches: boolean };
  /** undefined when the first segment does not hold a descriptor with the right magic. */
  descriptor:
    | {
        magicWord: number;
        secureVersion: number;
        reserv1: number[];
        version: string;
        projectName: string;
        time: string;
        date: string;
        idfVer: string;
        appElfSha256: string;
        minEfuseBlkRevFull: number;
        maxEfuseBlkRevFull: number;
        mmuPageSize: number;
        reserv3: number[];
        reserv2: number[];
      }
    | undefined;
  /** The simulation marker at offset 288 (see esp-image.ts readImageMarker), if any. */
  marker: string | undefined;
}

function descriptorOf(image: Uint8Array, l: ImageLayout): ImageReport["descriptor"] {
  const first = l.segments[0];
  if (first === undefined || first.dataLength < APP_DESC_LEN) return undefined;
  const d = image.subarray(DESC_AT, DESC_AT + APP_DESC_LEN);
  const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
  if (dv.getUint32(0, true) !== APP_DESC_MAGIC) return undefined;
  const words = (from: number, count: number): number[] => Array.from({ length: count }, (_, i) => dv.getUint32(from + 4 * i, true));
  return {
    magicWord: dv.getUint32(0, true),
    secureVersion: dv.getUint32(4, true),
    reserv1: words(8, 2),
    version: cString(d, 16, 32),
    projectName: cString(d, 48, 32),
    time: cString(d, 80, 16),
    date: cString(d, 96, 16),
    idfVer: cString(d, 112, 32),
    appElfSha256: hex(d.subarray(144, 176)),
    minEfuseBlkRevFull: dv.getUint16(176, true),
    maxEfuseBlkRevFull: dv.getUint16(178, true),
    mmuPageSize: d[180]!,
    reserv3: Array.from(d.subarray(181, 184)),
    reserv2: words(184, 18),
  };
}

/** Decodes everything. Throws ESP_IMAGE_MALFORMED when the bytes are not a well-formed image. */
export function inspectImage(image: Uint8Array): ImageReport {
  const l = imageLayout(image);
  const h = l.header;
  const computed = computeChecksum(image, l);
  const stored = image[l.checksumOffset]!;
  let sha: ImageReport["sha256"];
  if (l.hashOffset !== undefined) {
    const want = hex(sha256(image.subarray(0, l.checksumOffset + 1)));
    const have = hex(image.subarray(l.hashOffset, l.hashOffset + HASH_LEN));
    sha = { offset: l.hashOffset, stored: have, computed: want, ok: want === have };
  }
  const desc = descriptorOf(image, l);
  return {
    size: image.length,
    header: {
      magic: h.magic,
      segmentCount: h.segmentCount,
      spiMode: h.spiMode,
      spiModeName: SPI_MODES[h.spiMode] ?? "unknown",
      spiSpeed: h.spiSpeed,
      spiSpeedName: SPI_FREQ[h.chipId]?.[h.spiSpeed] ?? "unknown",
      spiSize: h.spiSize,
      spiSizeName: h.spiSize <= 7 ? `${1 << h.spiSize}MB` : "unknown",
      entryAddr: h.entryAddr,
      wpPin: h.wpPin,
      spiPinDrv: h.spiPinDrv,
      chipId: h.chipId,
      chipName: chipName(h.chipId),
      minChipRev: h.minChipRev,
      minChipRevFull: h.minChipRevFull,
      maxChipRevFull: h.maxChipRevFull,
      reserved: Array.from(image.subarray(19, 23)),
      hashAppended: h.hashAppendedByte,
    },
    segments: l.segments.map((s) => ({ index: s.index, loadAddr: s.loadAddr, fileOffset: s.dataOffset, length: s.dataLength })),
    checksum: { offset: l.checksumOffset, stored, computed, ok: stored === computed },
    sha256: sha,
    imageLength: l.length,
    trailingBytes: image.length - l.length,
    ...signatureOf(image, sha?.stored),
    descriptor: desc,
    marker: desc === undefined ? undefined : readImageMarker(image),
  };
}

function signatureOf(image: Uint8Array, stored: string | undefined): Pick<ImageReport, "signature"> {
  let b;
  try {
    b = readSignatureBlock(image);
  } catch (e) {
    if (e instanceof ShadowOtaError) return {}; // trailing bytes of another kind: reported as trailingBytes
    throw e;
  }
  if (b === undefined) return {};
  return { signature: { keyId: b.keyId, digest: b.digest, signatureLength: b.signature.length, digestMatches: b.digest === stored } };
}

const h8 = (n: number): string => `0x${n.toString(16).padStart(8, "0")}`;
const h2 = (n: number): string => `0x${n.toString(16).padStart(2, "0")}`;

/** The report as text, one field per line. */
export function formatReport(r: ImageReport): string[] {
  const h = r.header;
  const out = [
    `${r.file ?? "image"}: ${r.size} bytes (image ${r.imageLength}${r.trailingBytes > 0 ? `, ${r.trailingBytes} bytes after it` : ""})`,
    "header",
    `  magic              ${h2(h.magic)}${h.magic === 0xe9 ? "" : " (not 0xe9)"}`,
    `  segment_count      ${h.segmentCount}`,
    `  spi_mode           ${h.spiMode} (${h.spiModeName})`,
    `  spi_speed          ${h2(h.spiSpeed)} (${h.spiSpeedName})`,
    `  spi_size           ${h2(h.spiSize)} (${h.spiSizeName})`,
    `  entry_addr         ${h8(h.entryAddr)}`,
    `  wp_pin             ${h2(h.wpPin)}${h.wpPin === 0xee ? " (disabled)" : ""}`,
    `  spi_pin_drv        ${h.spiPinDrv.map(h2).join(" ")}`,
    `  chip_id            ${h.chipId} (${h.chipName})`,
    `  min_chip_rev       ${h.minChipRev} (legacy)`,
    `  min_chip_rev_full  ${h.minChipRevFull} (${rev(h.minChipRevFull)})`,
    `  max_chip_rev_full  ${h.maxChipRevFull} (${rev(h.maxChipRevFull)})`,
    `  reserved           ${h.reserved.map(h2).join(" ")}`,
    `  hash_appended      ${h.hashAppended} (${h.hashAppended !== 0 ? "SHA-256 appended" : "no SHA-256"})`,
    "segments (load address, file offset of the data, length)",
    ...r.segments.map((s) => `  ${String(s.index).padStart(2)}  ${h8(s.loadAddr)}  ${h8(s.fileOffset)}  ${s.length} (0x${s.length.toString(16)})`),
    `checksum  at ${r.checksum.offset}: stored ${h2(r.checksum.stored)}, computed ${h2(r.checksum.computed)} ${r.checksum.ok ? "OK" : "MISMATCH"}`,
    r.sha256 === undefined
      ? "sha256    none appended"
      : `sha256    at ${r.sha256.offset}: stored ${r.sha256.stored}\n          computed ${r.sha256.computed} ${r.sha256.ok ? "OK" : "MISMATCH"}`,
  ];
  const d = r.descriptor;
  if (d === undefined) {
    out.push("descriptor  none (first segment does not start with magic 0xabcd5432: not an app image)");
  } else {
    out.push(
      "descriptor (esp_app_desc_t at offset 32)",
      `  magic_word             ${h8(d.magicWord)}`,
      `  secure_version         ${d.secureVersion}`,
      `  reserv1                ${d.reserv1.map(h8).join(" ")}`,
      `  version                ${JSON.stringify(d.version)}`,
      `  project_name           ${JSON.stringify(d.projectName)}`,
      `  time                   ${JSON.stringify(d.time)}`,
      `  date                   ${JSON.stringify(d.date)}`,
      `  idf_ver                ${JSON.stringify(d.idfVer)}`,
      `  app_elf_sha256         ${d.appElfSha256}`,
      `  min_efuse_blk_rev_full ${d.minEfuseBlkRevFull}`,
      `  max_efuse_blk_rev_full ${d.maxEfuseBlkRevFull}`,
      `  mmu_page_size          ${d.mmuPageSize}${d.mmuPageSize > 0 && d.mmuPageSize < 32 ? ` (${2 ** d.mmuPageSize} bytes)` : ""}`,
      `  reserv3                ${d.reserv3.map(h2).join(" ")}`,
      `  reserv2                ${d.reserv2.every((w) => w === 0) ? "18 words, all zero" : d.reserv2.map(h8).join(" ")}`,
    );
    if (r.marker !== undefined) out.push(`marker (offset 288)  ${JSON.stringify(r.marker)}`);
  }
  if (r.signature !== undefined) {
    const g = r.signature;
    out.push(
      `signature block (offset ${r.imageLength}, docs/signing.md; not verified here: npm run image -- verify)`,
      `  key id             ${g.keyId}`,
      `  digest             ${g.digest}${g.digestMatches ? "" : " (not the image's SHA-256)"}`,
      `  signature          ${g.signatureLength} bytes DER`,
    );
  }
  return out;
}

// ----------------------------------------------------------------------------------------------- stamp

export interface StampOptions {
  /** New esp_app_desc_t.version: printable ASCII, at most 31 bytes. */
  version: string;
  /** New esp_app_desc_t.project_name: printable ASCII, at most 31 bytes. */
  projectName?: string;
}

export interface StampResult {
  bytes: Uint8Array;
  /** Bytes after the image that were copied unchanged (a Secure Boot signature would no longer match). */
  trailingBytes: number;
}

function fieldBytes(value: string, field: string): Uint8Array {
  if (!/^[\x20-\x7e]*$/.test(value)) {
    throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `${field} ${JSON.stringify(value)} is not printable ASCII`);
  }
  if (value.length > FIELD_LEN - 1) {
    throw new ShadowOtaError(
      ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION,
      `${field} "${value}" is ${value.length} bytes; esp_app_desc_t.${field} holds at most ${FIELD_LEN - 1} (32 with the NUL)`,
      { detail: { field, length: value.length, max: FIELD_LEN - 1 } },
    );
  }
  const out = new Uint8Array(FIELD_LEN);
  out.set(Buffer.from(value, "latin1"));
  return out;
}

/**
 * Writes version (and project name) into a copy of an app image and reseals it (checksum; SHA-256 when
 * appended). Throws ESP_IMAGE_BAD_OPTION (value too long / not ASCII), ESP_IMAGE_MALFORMED (not an image),
 * ESP_IMAGE_NOT_APP (no app descriptor), ESP_IMAGE_INPUT_CORRUPT (the input does not verify).
 */
export function stampImage(input: Uint8Array, o: StampOptions): StampResult {
  const version = fieldBytes(o.version, "version");
  const project = o.projectName === undefined ? undefined : fieldBytes(o.projectName, "project_name");
  const before = inspectImage(input);
  if (before.descriptor === undefined) {
    throw new ShadowOtaError(
      ESP_IMAGE_CODES.ESP_IMAGE_NOT_APP,
      `not an app image: no esp_app_desc_t (magic 0xabcd5432) at offset 32 (a bootloader or RAM-only image?)`,
    );
  }
  if (!before.checksum.ok || before.sha256?.ok === false) {
    throw new ShadowOtaError(
      ESP_IMAGE_CODES.ESP_IMAGE_INPUT_CORRUPT,
      `the input does not verify (checksum ${before.checksum.ok ? "ok" : "mismatch"}, sha256 ${before.sha256 === undefined ? "none" : before.sha256.ok ? "ok" : "mismatch"}); refusing to reseal it`,
    );
  }
  const out = new Uint8Array(input);
  out.set(version, VERSION_AT);
  if (project !== undefined) out.set(project, PROJECT_AT);
  const l = imageLayout(out);
  out[l.checksumOffset] = computeChecksum(out, l);
  if (l.hashOffset !== undefined) out.set(sha256(out.subarray(0, l.checksumOffset + 1)), l.hashOffset);
  return { bytes: out, trailingBytes: before.trailingBytes };
}

// ------------------------------------------------------------------------------------------------- CLI

const USAGE = `usage: npm run image -- stamp IN.bin --version X [--project NAME] -o OUT.bin
       npm run image -- inspect IN.bin [--json]
       npm run image -- build --out OUT.bin [--version 1.0.0] [...]   (options: npm run image -- build --help)
       npm run image -- keygen --out KEY.pem [--force]     (outside the repository, or under build/)
       npm run image -- sign IN.bin --key KEY.pem -o OUT.bin
       npm run image -- verify IN.bin --key KEY.pub.pem|KEY.pub.der|KEY.pem`;

function readInput(file: string | undefined): Uint8Array {
  if (file === undefined) throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `an input file is required\n${USAGE}`);
  return new Uint8Array(fs.readFileSync(file));
}

function stampMain(argv: string[], print: (line: string) => void): number {
  let input: string | undefined;
  let out: string | undefined;
  let version: string | undefined;
  let project: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `${a} needs a value`);
      return v;
    };
    if (a === "--version") version = value();
    else if (a === "--project") project = value();
    else if (a === "-o" || a === "--out") out = value();
    else if (a.startsWith("-")) throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `unknown option ${a}\n${USAGE}`);
    else if (input === undefined) input = a;
    else throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `one input file only (got ${input} and ${a})`);
  }
  if (version === undefined || out === undefined) {
    throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `stamp needs --version and -o\n${USAGE}`);
  }
  const r = stampImage(readInput(input), project === undefined ? { version } : { version, projectName: project });
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  fs.writeFileSync(out, r.bytes);
  const d = inspectImage(r.bytes).descriptor!;
  print(`${out}: ${r.bytes.length} bytes, ${d.projectName} ${d.version} (checksum and sha256 recomputed)`);
  if (r.trailingBytes > 0) print(`warning: ${r.trailingBytes} bytes after the image were copied unchanged (a signature over the old image no longer matches)`);
  return 0;
}

function inspectMain(argv: string[], print: (line: string) => void): number {
  const json = argv.includes("--json");
  const files = argv.filter((a) => a !== "--json");
  const bad = files.find((a) => a.startsWith("-"));
  if (bad !== undefined) throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `unknown option ${bad}\n${USAGE}`);
  if (files.length !== 1) throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `inspect takes one file\n${USAGE}`);
  const report = { file: files[0]!, ...inspectImage(readInput(files[0])) };
  if (json) print(JSON.stringify(report, null, 2));
  else for (const line of formatReport(report)) print(line);
  return 0;
}

/** Parses `FILE --opt value ...`: one positional input and the named options (each with a value). */
function parseArgs(argv: string[], names: readonly string[], flags: readonly string[] = []): { input: string | undefined; opts: Record<string, string> } {
  let input: string | undefined;
  const opts: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = a === "-o" ? "--out" : a;
    if (flags.includes(name)) opts[name] = "true";
    else if (names.includes(name)) {
      const v = argv[++i];
      if (v === undefined) throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `${a} needs a value`);
      opts[name] = v;
    } else if (a.startsWith("-")) throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `unknown option ${a}\n${USAGE}`);
    else if (input === undefined) input = a;
    else throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `one input file only (got ${input} and ${a})`);
  }
  return { input, opts };
}

/** The git working tree `p` lies in (the nearest folder above it with a .git), or undefined. */
function gitTreeOf(p: string): string | undefined {
  for (let dir = path.dirname(p); ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, ".git"))) return dir;
    if (path.dirname(dir) === dir) return undefined;
  }
}

function isUnder(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel);
}

/** Where a private key may be written: outside any git tree (the temp folder, normally), or under a tree's
 *  build/. The tree decides first, so a clone that itself lies in the temp folder is still protected. */
export function checkKeyPath(file: string): void {
  const abs = path.resolve(file);
  const tree = gitTreeOf(abs);
  if (tree === undefined || isUnder(abs, path.join(tree, "build"))) return;
  throw new ShadowOtaError(
    IMAGE_SIGN_CODES.IMAGE_SIGN_KEY_IN_REPO,
    `refusing to write a private key inside the git working tree ${tree} (use a path outside it, or under its build/)`,
    { detail: { path: abs } },
  );
}

function keygenMain(argv: string[], print: (line: string) => void): number {
  const { input, opts } = parseArgs(argv, ["--out"], ["--force"]);
  if (input !== undefined || opts["--out"] === undefined) throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `keygen needs --out KEY.pem and nothing else\n${USAGE}`);
  const out = path.resolve(opts["--out"]);
  checkKeyPath(out);
  const base = out.endsWith(".pem") ? out.slice(0, -4) : out;
  const files = [out, `${base}.pub.pem`, `${base}.pub.der`];
  if (opts["--force"] === undefined) {
    const existing = files.find((f) => fs.existsSync(f));
    if (existing !== undefined) throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `${existing} exists (--force replaces it)`);
  }
  const k = generateSigningKey();
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.rmSync(out, { force: true }); // a new file, so that the mode below is the one it gets
  fs.writeFileSync(out, k.privateKeyPem, { mode: 0o600 });
  fs.chmodSync(out, 0o600);
  fs.writeFileSync(files[1]!, k.publicKeyPem);
  fs.writeFileSync(files[2]!, publicKeyDer(k.publicKeyPem));
  print(`${out}: ECDSA P-256 private key (mode 0600; keep it out of the repository)`);
  print(`${files[1]}, ${files[2]}: the public key (give the .der to devices)`);
  print(`key id ${k.keyId}`);
  return 0;
}

function signMain(argv: string[], print: (line: string) => void): number {
  const { input, opts } = parseArgs(argv, ["--key", "--out"]);
  if (opts["--key"] === undefined || opts["--out"] === undefined) throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `sign needs --key and -o\n${USAGE}`);
  const r = signImage(readInput(input), readPrivateKeyFile(opts["--key"], "--key"));
  fs.mkdirSync(path.dirname(path.resolve(opts["--out"])), { recursive: true });
  fs.writeFileSync(opts["--out"], r.bytes);
  print(`${opts["--out"]}: ${r.bytes.length} bytes (image ${r.imageLength} + signature block ${r.bytes.length - r.imageLength})`);
  print(`sha256 ${r.digest}`);
  print(`key id ${r.keyId}`);
  print(`signature ${r.signatureBase64}`);
  return 0;
}

function verifyMain(argv: string[], print: (line: string) => void): number {
  const { input, opts } = parseArgs(argv, ["--key"]);
  if (opts["--key"] === undefined) throw new ShadowOtaError(ESP_IMAGE_CODES.ESP_IMAGE_BAD_OPTION, `verify needs --key\n${USAGE}`);
  const r = verifyImageSignature(readInput(input), fs.readFileSync(opts["--key"]));
  print(`${input}: signature ok (image ${r.imageLength} bytes, sha256 ${r.digest}, key id ${r.keyId})`);
  return 0;
}

/** Runs the CLI with `argv` (without node and script); returns the exit status. Errors print one line. */
export function main(argv: string[], print: (line: string) => void = console.log, printError: (line: string) => void = console.error): number {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case "stamp":
        return stampMain(rest, print);
      case "inspect":
        return inspectMain(rest, print);
      case "build":
        return buildMain(rest, print);
      case "keygen":
        return keygenMain(rest, print);
      case "sign":
        return signMain(rest, print);
      case "verify":
        return verifyMain(rest, print);
      case "--help":
      case "-h":
      case "help":
        print(USAGE);
        return 0;
      default:
        printError(`${command === undefined ? "no command" : `unknown command ${command}`}\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    if (e instanceof ShadowOtaError) {
      printError(`error ${e.code}: ${e.message}`);
      return 1;
    }
    if (e instanceof Error && "code" in e && (e as NodeJS.ErrnoException).syscall !== undefined) {
      printError(`error: ${e.message}`); // a file that cannot be read or written
      return 1;
    }
    throw e;
  }
}

if (require.main === module) {
  // `npm run image -- inspect x.bin | head`: a reader that stops early is not an error.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => { if (e.code === "EPIPE") process.exit(process.exitCode ?? 0); else throw e; });
  process.exitCode = main(process.argv.slice(2));
}
