/**
 * Power-cut campaign for the OTA slot on the host flash (`npm run test:powercut`; a plain tsx script, not
 * Jest). For three starting points (factory → ota_0, ota_0 → ota_1 with otadata sector 1, ota_1 → ota_0
 * with otadata sector 0) it records every flash operation of a complete update — stream (erase +
 * program), end, set boot, the reboot's NEW → PENDING_VERIFY rewrite, and the confirm (mark valid) — and
 * then cuts the power once per run: at every operation boundary (each erase starts at a sector boundary),
 * inside every erase at sector quarter points, at the first/middle/last byte of every program and at every
 * sector boundary a program crosses, and at seeded-random bytes. After each cut the device "reboots"
 * (reopen the file, run the simulated bootloader) and must:
 *   - boot, and boot either the old or the new image, byte-identical to what was installed, from the
 *     slot it was installed in (never the factory fallback when the old image was an OTA one);
 *   - have consistent otadata: the booted OTA slot is the one the selected entry names, in state
 *     PENDING_VERIFY (new image, first boot) or VALID;
 *   - still be able to finish: confirm the new image, or redo the whole update, and end on the new
 *     image VALID after one more reboot.
 * Any failure counts the device as bricked. Reproducible (seeded), bounded in time (stops at 100 s).
 * Last line, always: `N cuts, N bricked`; exit 1 if any device is bricked or fewer than 2,000 cuts ran.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { ShadowOtaError } from "../../src/core/errors";
import { OTA_CODES } from "../../src/native/ota-errors";
import { FlashOperation, HostOtaSlot } from "../../src/native/ota-slot";
import { buildImage, makeFlashFile, partition, SECTOR, tempDir } from "./fixtures";

const MIN_CUTS = 2000;
const RANDOM_CUTS_PER_PHASE = 520;
const TIME_LIMIT_MS = 100_000;
const SEED = 0x5eed2026;

let rng = SEED;
function random(): number {
  rng ^= rng << 13;
  rng >>>= 0;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  rng >>>= 0;
  return rng;
}

const dir = tempDir("ota-powercut");
const work = path.join(dir, "work.bin");
const chunks = [1000, 333, 4096, 17];

function open(): HostOtaSlot {
  return new HostOtaSlot({ flashPath: work });
}

/** begin → write (chunked) → accept → end → set boot. */
function install(slot: HostOtaSlot, img: Uint8Array): void {
  slot.begin({ imageSize: img.length });
  let off = 0;
  for (let k = 0; off < img.length; k++) {
    const n = chunks[k % chunks.length]!;
    if (slot.write(img.subarray(off, off + n)) !== undefined) slot.accept();
    off += n;
  }
  slot.end();
  slot.setBootPartition();
}

function isPowerLost(e: unknown): boolean {
  return e instanceof ShadowOtaError && e.code === OTA_CODES.OTA_POWER_LOST;
}

interface Scenario {
  name: string;
  base: Buffer; // flash bytes before the update
  oldLabel: string;
  oldImage: Uint8Array;
  newLabel: string;
  newImage: Uint8Array;
}

/** Builds the starting flash for each scenario by running updates without cuts. */
function scenarios(): Scenario[] {
  const v100 = buildImage({ version: "1.0.0", segments: [2048, 1024], seed: 1 });
  const v110 = buildImage({ version: "1.1.0", segments: [6000, 3000, 800], seed: 2 });
  const v120 = buildImage({ version: "1.2.0", segments: [5000, 4000, 1200], seed: 3 });
  const v130 = buildImage({ version: "1.3.0", segments: [7000, 2000, 400], seed: 4 });
  makeFlashFile(work, { factory: v100 });
  const out: Scenario[] = [];
  out.push({ name: "factory→ota_0", base: fs.readFileSync(work), oldLabel: "factory", oldImage: v100, newLabel: "ota_0", newImage: v110 });
  let s = open();
  s.boot();
  install(s, v110);
  s.close();
  s = open();
  s.boot();
  s.markValid();
  s.close();
  out.push({ name: "ota_0→ota_1", base: fs.readFileSync(work), oldLabel: "ota_0", oldImage: v110, newLabel: "ota_1", newImage: v120 });
  s = open();
  s.boot();
  install(s, v120);
  s.close();
  s = open();
  s.boot();
  s.markValid();
  s.close();
  out.push({ name: "ota_1→ota_0", base: fs.readFileSync(work), oldLabel: "ota_1", oldImage: v120, newLabel: "ota_0", newImage: v130 });
  return out;
}

type Phase = "update" | "reboot+confirm";

/** Operation trace of an uncut update (phase "update": power-on boot, install) and of the reboot and
 *  confirm (phase "reboot+confirm"). */
function traces(sc: Scenario): Record<Phase, FlashOperation[]> {
  fs.writeFileSync(work, sc.base);
  let s = open();
  s.boot();
  s.trace(true);
  install(s, sc.newImage);
  const update = s.trace(false);
  s.close();
  s = open();
  s.trace(true);
  s.boot();
  s.markValid();
  const confirm = s.trace(false);
  s.close();
  return { update, "reboot+confirm": confirm };
}

function budgets(ops: FlashOperation[]): number[] {
  const set = new Set<number>();
  const end = ops.length > 0 ? ops[ops.length - 1]!.start + ops[ops.length - 1]!.length : 0;
  for (const op of ops) {
    const s = op.start;
    set.add(s); // boundary: before the operation's first byte
    set.add(s + 1);
    if (op.kind === "erase") for (const q of [1024, 2048, 3072, 4095]) set.add(s + q);
    else {
      for (const q of [Math.floor(op.length / 2), op.length - 1]) set.add(s + q);
      // a program that crosses sector boundaries: cut right at each boundary byte too
      for (let a = Math.ceil((op.address + 1) / SECTOR) * SECTOR; a < op.address + op.length; a += SECTOR) {
        set.add(s + (a - op.address));
      }
    }
  }
  for (let i = 0; i < RANDOM_CUTS_PER_PHASE; i++) set.add(random() % end);
  return [...set].filter((b) => b >= 0 && b < end).sort((a, b) => a - b);
}

/** Names where the cut landed, for the summary: the reference trace tells which step an operation is. */
function where(op: FlashOperation | undefined, phase: Phase, trace: FlashOperation[], otadataAddr: number): string {
  if (op === undefined) return "none";
  const inOtadata = op.address >= otadataAddr && op.address < otadataAddr + 0x2000;
  if (phase === "update") return inOtadata ? `set-boot ${op.kind}` : `stream ${op.kind}`;
  // reboot+confirm: the bootloader's NEW -> PENDING_VERIFY rewrite comes first, then mark valid
  const firstConfirm = trace.filter((o) => o.kind === "erase")[1]?.start ?? Infinity;
  return op.start < firstConfirm ? `bootloader NEW→PENDING_VERIFY ${op.kind}` : `confirm (mark valid) ${op.kind}`;
}

/** Checks the device after the cut; returns undefined when fine, else why it counts as bricked. */
function check(sc: Scenario): string | undefined {
  const s = open();
  try {
    let boot;
    try {
      boot = s.boot();
    } catch (e) {
      return `no boot: ${(e as Error).message}`;
    }
    const label = boot.partition.label;
    const isNew = label === sc.newLabel;
    if (!isNew && label !== sc.oldLabel) return `booted ${label}, expected ${sc.oldLabel} or ${sc.newLabel}`;
    const expected = isNew ? sc.newImage : sc.oldImage;
    const fd = fs.openSync(work, "r");
    const bytes = Buffer.alloc(expected.length);
    fs.readSync(fd, bytes, 0, bytes.length, partition(label).offset);
    fs.closeSync(fd);
    if (!bytes.equals(Buffer.from(expected))) return `${label} does not hold the installed image`;
    if (label !== "factory") {
      if (boot.entry < 0) return `${label} booted without an otadata entry`;
      if (isNew && boot.state !== "PENDING_VERIFY" && boot.state !== "VALID") return `new image in state ${boot.state}`;
      if (!isNew && boot.state !== "VALID") return `old image in state ${boot.state}`;
      if (s.runningState() !== boot.state) return "otadata disagrees with the boot";
    }
    // It must be able to finish: confirm the new image, or redo the update from the old one.
    if (isNew) {
      s.markValid();
    } else {
      install(s, sc.newImage);
      s.close();
      const again = open();
      const b2 = again.boot();
      if (b2.partition.label !== sc.newLabel || b2.state !== "PENDING_VERIFY") {
        again.close();
        return `retry booted ${b2.partition.label} in ${b2.state}`;
      }
      again.markValid();
      again.close();
    }
    s.close();
    const fin = open();
    const b3 = fin.boot();
    fin.close();
    if (b3.partition.label !== sc.newLabel || b3.state !== "VALID") return `final boot ${b3.partition.label} ${b3.state}`;
    return undefined;
  } catch (e) {
    return `recovery failed: ${(e as Error).message}`;
  } finally {
    s.close();
  }
}

function main(): number {
  const started = Date.now();
  let cuts = 0;
  let bricked = 0;
  const byPlace = new Map<string, number>();
  const failures: string[] = [];
  const all = scenarios();
  const plan: { sc: Scenario; phase: Phase; budget: number; seed: number; trace: FlashOperation[] }[] = [];
  for (const sc of all) {
    const t = traces(sc);
    for (const phase of ["update", "reboot+confirm"] as Phase[]) {
      for (const budget of budgets(t[phase])) {
        plan.push({ sc, phase, budget, seed: (random() % 0xfffffffe) + 1, trace: t[phase] });
      }
    }
  }
  console.log(`power-cut plan: ${plan.length} cuts over ${all.length} scenarios (seed 0x${SEED.toString(16)})`);
  const otadataAddr = partition("otadata").offset;
  let timedOut = false;
  for (const { sc, phase, budget, seed, trace } of plan) {
    if (Date.now() - started > TIME_LIMIT_MS) {
      timedOut = true;
      break;
    }
    fs.writeFileSync(work, sc.base);
    let s = open();
    try {
      if (phase === "update") {
        s.boot();
        s.armPowerCut(budget, seed);
        install(s, sc.newImage);
      } else {
        s.boot();
        install(s, sc.newImage);
        s.close();
        s = open();
        s.armPowerCut(budget, seed);
        s.boot();
        s.markValid();
      }
    } catch (e) {
      if (!isPowerLost(e)) {
        bricked++;
        failures.push(`${sc.name} ${phase} budget ${budget}: unexpected ${(e as Error).message}`);
        s.close();
        continue;
      }
    }
    const cutAt = s.cutOperation();
    const lost = s.powerLost();
    s.close();
    if (!lost) {
      failures.push(`${sc.name} ${phase} budget ${budget}: the cut never fired`);
      bricked++;
      continue;
    }
    cuts++;
    const place = where(cutAt, phase, trace, otadataAddr);
    byPlace.set(place, (byPlace.get(place) ?? 0) + 1);
    const why = check(sc);
    if (why !== undefined) {
      bricked++;
      failures.push(`${sc.name} ${phase} budget ${budget} seed ${seed} (${place}): ${why}`);
    }
    if (cuts % 500 === 0) console.log(`  ${cuts} cuts, ${bricked} bricked, ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  for (const [place, count] of [...byPlace].sort()) console.log(`  cut during ${place}: ${count}`);
  for (const f of failures.slice(0, 20)) console.log(`  BRICKED ${f}`);
  if (failures.length > 20) console.log(`  ... ${failures.length - 20} more`);
  if (timedOut) console.log(`  stopped at the ${TIME_LIMIT_MS / 1000} s limit`);
  if (cuts < MIN_CUTS) console.log(`  fewer than ${MIN_CUTS} cuts ran`);
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(`${cuts} cuts, ${bricked} bricked`);
  return bricked > 0 || cuts < MIN_CUTS ? 1 : 0;
}

process.exitCode = main();
