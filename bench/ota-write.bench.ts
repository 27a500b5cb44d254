/**
 * Benchmark (`npm run bench:write`): the C write path of the OTA slot on the host flash against a plain Node
 * file write + SHA-256 of the same bytes, in the same run, repetitions interleaved (alternating which
 * goes first), printed as medians and their ratio.
 *
 *   host OTA write+verify: HostOtaSlot begin → write (4 KiB chunks) → accept → end over a 1 MiB ESP32
 *     app image (src/tools/esp-image.ts) into ota_0 of the 4 MB partitions/partitions.csv flash file:
 *     N-API call per chunk, streaming validation (header, segments, XOR checksum, SHA-256 through the
 *     mbedTLS API: in the N-API build over Node's OpenSSL, src/native/napi/sha256-openssl),
 *     sector-by-sector erase to 0xFF, AND-programming, and end()'s full read-back re-verification.
 *   file write+sha256: the same chunks written to a fresh file with fs.writeSync and hashed with
 *     node:crypto's SHA-256 (OpenSSL).
 * Both write to the page cache of the same temp directory (the host flash is a MAP_SHARED mapping; neither
 * side fsyncs). It checks that both produced the right bytes, never how fast: no timing asserts.
 * Not here: set boot / reboot (otadata, a few KiB), a real ESP32's flash speed (see
 * docs/formats.md §7 for figures reported from the field).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { HostOtaSlot, loadNativeOtaModule } from "../src/native/ota-slot";
import { buildImage } from "../src/tools/esp-image";
import { DEFAULT_CSV, createFlashFile } from "../src/tools/flash-file";

const IMAGE_SIZE = 1024 * 1024;
const CHUNK = 4096;
const WARMUP = 3;
const REPS = Number(process.env.BENCH_REPS ?? 61);
const TIME_LIMIT_MS = 25_000;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function mbPerS(bytes: number, ns: bigint): number {
  return bytes / 1e6 / (Number(ns) / 1e9);
}

function main(): number {
  try {
    loadNativeOtaModule();
  } catch (e) {
    console.error(`bench: ${(e as Error).message}`);
    return 1;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ota-bench-"));
  try {
    const image = buildImage({ version: "2.0.0", size: IMAGE_SIZE, segmentCount: 5, seed: 42 });
    const factory = buildImage({ version: "1.0.0", segments: [4096, 1024], seed: 1 });
    const flashPath = path.join(dir, "flash.bin");
    const partitions = createFlashFile(flashPath, { partitions: DEFAULT_CSV, images: { factory } });
    const ota0 = partitions.find((p) => p.name === "ota_0")!;
    const plainPath = path.join(dir, "plain.bin");
    const expectedDigest = createHash("sha256").update(image).digest("hex");
    const chunks: Uint8Array[] = [];
    for (let off = 0; off < image.length; off += CHUNK) chunks.push(image.subarray(off, off + CHUNK));

    const slot = new HostOtaSlot({ flashPath });
    slot.boot();

    const hostOta = (): bigint => {
      const t0 = process.hrtime.bigint();
      slot.begin({ imageSize: image.length });
      for (const c of chunks) if (slot.write(c) !== undefined) slot.accept();
      slot.end();
      const t1 = process.hrtime.bigint();
      slot.abort(); // no set boot: every repetition writes the same slot from the same state
      return t1 - t0;
    };
    let digest = "";
    const plainFile = (): bigint => {
      const t0 = process.hrtime.bigint();
      const fd = fs.openSync(plainPath, "w");
      const h = createHash("sha256");
      let pos = 0;
      for (const c of chunks) {
        fs.writeSync(fd, c, 0, c.length, pos);
        h.update(c);
        pos += c.length;
      }
      fs.closeSync(fd);
      digest = h.digest("hex");
      const t1 = process.hrtime.bigint();
      return t1 - t0;
    };

    const started = Date.now();
    const ota: number[] = [];
    const plain: number[] = [];
    const paired: number[] = []; // OTA / file within one repetition: robust against machine-wide drift
    for (let i = 0; i < WARMUP + REPS; i++) {
      if (Date.now() - started > TIME_LIMIT_MS) break;
      const order = i % 2 === 0 ? [hostOta, plainFile] : [plainFile, hostOta];
      const speed = new Map<() => bigint, number>();
      for (const run of order) speed.set(run, mbPerS(image.length, run()));
      if (i < WARMUP) continue;
      ota.push(speed.get(hostOta)!);
      plain.push(speed.get(plainFile)!);
      paired.push(speed.get(hostOta)! / speed.get(plainFile)!);
    }
    slot.close();

    // The bytes must be right on both sides, or the numbers mean nothing.
    const fd = fs.openSync(flashPath, "r");
    const inSlot = Buffer.alloc(image.length);
    fs.readSync(fd, inSlot, 0, inSlot.length, ota0.offset);
    fs.closeSync(fd);
    if (!inSlot.equals(Buffer.from(image))) throw new Error("bench: ota_0 does not hold the image");
    if (digest !== expectedDigest || !fs.readFileSync(plainPath).equals(Buffer.from(image))) {
      throw new Error("bench: the plain file or its SHA-256 is wrong");
    }

    const x = median(ota);
    const y = median(plain);
    console.log(
      `bench: ${image.length} byte ESP32 image in ${CHUNK} B chunks, ${ota.length} interleaved repetitions ` +
        `(+${WARMUP} warm-up), medians; MB = 10^6 bytes; node ${process.version}, ${os.cpus()[0]?.model ?? "cpu"}`,
    );
    console.log(`  host OTA write+verify: min ${Math.min(...ota).toFixed(1)}, max ${Math.max(...ota).toFixed(1)} MB/s`);
    console.log(`  file write+sha256:     min ${Math.min(...plain).toFixed(1)}, max ${Math.max(...plain).toFixed(1)} MB/s`);
    console.log(`  median of the per-repetition ratios: ${median(paired).toFixed(2)}`);
    console.log(`host OTA write+verify: ${x.toFixed(1)} MB/s; file write+sha256: ${y.toFixed(1)} MB/s; ratio ${(x / y).toFixed(2)}`);
    return 0;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

process.exitCode = main();
