/**
 * Power-cut campaign for the OTA slot on the host flash (`npm run test:powercut`; a plain tsx script, not
 * Jest). For three starting points (factory → ota_0, ota_0 → ota_1 with otadata sector 1, ota_1 → ota_0
 * with otadata sector 0) it records every flash operation of each phase of an update:
 *   update          esp_ota_begin's erase of the inactive otadata entry (at accept, ota_1 → ota_0 only: the
 *                   other two start with that entry blank), stream (erase + program), end (after the
 *                   read-back verification, its one program: the held magic byte at the slot's offset 0,
 *                   src/native/core/ota_writer.h), set boot (the new entry, state NEW)
 *   first boot      the bootloader's NEW → PENDING_VERIFY rewrite
 *   confirm         mark valid (PENDING_VERIFY → VALID)
 *   rollback boot   a reset before the confirm: the bootloader's PENDING_VERIFY → ABORTED rewrite
 *   mark invalid    the self-test failed: INVALID, then the bootloader runs again
 * and cuts the power once per run: at every operation boundary, a few bytes into every erase (where a torn
 * erase leaves most bits as they were), at its quarter points, at the first/middle/last byte of every
 * program and every sector boundary a program crosses, and at seeded-random (budget, seed) pairs until the
 * plan holds the requested number of cuts; half of the random cuts land in otadata's operations, where the
 * torn states are. The seed also decides which bits a cut program or erase leaves (src/native/host/
 * ota_host.c: a cut page program leaves any subset of the bits it was clearing, a cut erase a mix).
 *
 * After a cut in the update between the new slot's first-sector erase and end()'s held-byte program, that
 * slot must not start with the magic byte 0xE9 (else the bootloader's fall-back could load it unverified).
 * After each cut the device reboots (reopen the file, run the simulated bootloader) and must:
 *   - boot the old or the new image, byte-identical to what was installed, from the slot it was installed
 *     in; the old image VALID (or the factory app);
 *   - if the new image runs and was not confirmed (the cut came before mark valid returned): have a path
 *     back. The OTA controller (src/core/ota-controller.ts) is booted over this flash with the record it
 *     would hold at that point; it must go to PendingVerify (self-test) whatever otadata's state word says,
 *     and mark invalid must then boot the old image. A new image running unconfirmed with no self-test
 *     ahead (e.g. booted as UNDEFINED after a torn entry while the controller trusts otadata) is bricked;
 *   - be able to finish from there: confirm the new image, or, from the old one, finish the update — after
 *     every other cut in the update phase the OTA controller's way (resume from the bytes written before
 *     the cut operation, all of them once end() began; the slot re-reads the prefix with the held byte put
 *     back), after the others by a new begin — and end on the new image VALID after one more reboot.
 * Any failure counts the device as bricked. Reproducible (seeded), bounded by count, not by time.
 * Signed images (docs/signing.md): the ota_0 → ota_1 and ota_1 → ota_0 updates carry a signature block
 * and install with the signing key configured, so the block's writes, its re-read on resume and the
 * ECDSA check at end() run under the same cuts; factory → ota_0 stays unsigned and keyless. The signature
 * bytes differ from run to run (ECDSA's random k); the cut plan does not depend on them.
 *
 * Size: POWERCUT_CUTS=N (default 12000, at least 10000 by default) sets how many cuts the plan holds;
 * POWERCUT_SEED=N another seed. Prints the time it took. Last line, always: `N cuts, N bricked`; exit 1 if
 * any device is bricked or fewer cuts ran than planned.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { ShadowOtaError } from "../../src/core/errors";
import { OTA_KV_KEY, OtaController, type OtaRecord, type OtaState } from "../../src/core/ota-controller";
import { UPDATE_CODES } from "../../src/core/update-errors";
import { OTA_CODES } from "../../src/native/ota-errors";
import { FlashOperation, HostOtaSlot } from "../../src/native/ota-slot";
import { ManualClock, MemoryKv, MemoryLog } from "../core/fake-ports";
import { buildImage, makeFlashFile, partition, SECTOR, tempDir } from "./fixtures";
import { generateSigningKey, publicKeyDer, signImage } from "../../src/tools/image-sign";

const DEFAULT_CUTS = 12_000;
const CUTS = Number(process.env["POWERCUT_CUTS"] ?? DEFAULT_CUTS);
const SEED = Number(process.env["POWERCUT_SEED"] ?? 0x5eed2026) >>> 0 || 1;
if (!Number.isSafeInteger(CUTS) || CUTS < 1) throw new Error(`POWERCUT_CUTS must be a positive integer, got ${process.env["POWERCUT_CUTS"]}`);

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
const OTADATA = partition("otadata");

function open(): HostOtaSlot {
  return new HostOtaSlot({ flashPath: work });
}

const SIGNER = generateSigningKey();
const SIGNING_KEY = publicKeyDer(SIGNER.publicKeyPem);
/** The images that carry a signature block; they install with SIGNING_KEY configured. */
const SIGNED = new Set<Uint8Array>();
function signed(img: Uint8Array): Uint8Array {
  const out = signImage(img, SIGNER.privateKeyPem).bytes;
  SIGNED.add(out);
  return out;
}

function beginOptions(img: Uint8Array): { imageSize: number; signingKey?: Uint8Array } {
  return SIGNED.has(img) ? { imageSize: img.length, signingKey: SIGNING_KEY } : { imageSize: img.length };
}

/** write (chunked, from `from`) → accept at the gate → end → set boot. */
function finish(slot: HostOtaSlot, img: Uint8Array, from: number): void {
  let off = from;
  for (let k = 0; off < img.length; k++) {
    const n = chunks[k % chunks.length]!;
    if (slot.write(img.subarray(off, off + n)) !== undefined) slot.accept();
    off += n;
  }
  slot.end();
  slot.setBootPartition();
}

/** begin → write (chunked) → accept → end → set boot. */
function install(slot: HostOtaSlot, img: Uint8Array): void {
  slot.begin(beginOptions(img));
  finish(slot, img, 0);
}

/** The OTA controller's way back after a cut in the update: resume from the bytes it knew were written
 *  (the slot rounds down to a sector and re-reads the prefix, the held magic byte put back), fetch the rest,
 *  end, set boot; a refused prefix means a new begin. Returns how it went. */
function resumeInstall(slot: HostOtaSlot, img: Uint8Array, durable: number): "resumed" | "began again" {
  let at: number;
  try {
    at = slot.resume(durable, beginOptions(img));
  } catch (e) {
    if (!(e instanceof ShadowOtaError && e.code === OTA_CODES.OTA_RESUME_MISMATCH)) throw e;
    install(slot, img);
    return "began again";
  }
  finish(slot, img, at);
  return at > 0 ? "resumed" : "began again";
}

function isPowerLost(e: unknown): boolean {
  return e instanceof ShadowOtaError && e.code === OTA_CODES.OTA_POWER_LOST;
}

interface Scenario {
  name: string;
  base: Buffer; // flash bytes before the update
  staged: Buffer; // after install (set boot done), before the reboot
  oldLabel: string;
  oldImage: Uint8Array;
  oldVersion: string;
  newLabel: string;
  newImage: Uint8Array;
  newVersion: string;
}

/** Builds the starting flash for each scenario by running updates without cuts. */
function scenarios(): Scenario[] {
  const images = [
    { v: "1.0.0", img: buildImage({ version: "1.0.0", segments: [2048, 1024], seed: 1 }) },
    { v: "1.1.0", img: buildImage({ version: "1.1.0", segments: [6000, 3000, 800], seed: 2 }) },
    { v: "1.2.0", img: signed(buildImage({ version: "1.2.0", segments: [5000, 4000, 1200], seed: 3 })) },
    { v: "1.3.0", img: signed(buildImage({ version: "1.3.0", segments: [7000, 2000, 400], seed: 4 })) },
  ];
  const labels = ["factory", "ota_0", "ota_1", "ota_0"];
  makeFlashFile(work, { factory: images[0]!.img });
  const out: Scenario[] = [];
  for (let i = 0; i < 3; i++) {
    const base = fs.readFileSync(work);
    let s = open();
    s.boot();
    install(s, images[i + 1]!.img);
    s.close();
    const staged = fs.readFileSync(work);
    out.push({
      name: `${labels[i]}→${labels[i + 1]}`, base, staged,
      oldLabel: labels[i]!, oldImage: images[i]!.img, oldVersion: images[i]!.v,
      newLabel: labels[i + 1]!, newImage: images[i + 1]!.img, newVersion: images[i + 1]!.v,
    });
    s = open();
    s.boot();
    s.markValid();
    s.close();
  }
  return out;
}

const PHASES = ["update", "first boot", "confirm", "rollback boot", "mark invalid"] as const;
type Phase = (typeof PHASES)[number];

/** The OTA controller's record while each phase runs (what it persisted before the phase began). */
function recordFor(sc: Scenario, phase: Phase): OtaRecord {
  const state: OtaState = phase === "update" ? "Verifying" : phase === "first boot" ? "Staged" : "PendingVerify";
  const r: OtaRecord = { state, from: sc.oldVersion, to: sc.newVersion, url: `https://blobs.example/fw/${sc.newVersion}.bin`, durable: sc.newImage.length, total: sc.newImage.length, attempt: 1 };
  if (phase === "mark invalid") r.lastError = { code: UPDATE_CODES.OTA_SELF_TEST_FAILED, message: "application check failed", time: 0 };
  return r;
}

/** Restores the phase's starting flash and runs the phase; `arm` is called right before the phase's own
 *  flash operations (after any boot that belongs to the set-up). Returns the slot (still open) and what the
 *  phase threw, if anything. */
function runPhase(sc: Scenario, phase: Phase, arm: (s: HostOtaSlot) => void): { slot: HostOtaSlot; error?: unknown } {
  fs.writeFileSync(work, phase === "update" ? sc.base : sc.staged);
  let slot = open();
  try {
    switch (phase) {
      case "update":
        slot.boot();
        arm(slot);
        install(slot, sc.newImage);
        break;
      case "first boot":
        arm(slot);
        slot.boot();
        break;
      case "confirm":
        slot.boot();
        arm(slot);
        slot.markValid();
        break;
      case "rollback boot":
        slot.boot(); // first boot: PENDING_VERIFY
        slot.close();
        slot = open(); // a reset before the confirm
        arm(slot);
        slot.boot();
        break;
      case "mark invalid":
        slot.boot();
        arm(slot);
        slot.markInvalidAndReboot();
        break;
    }
  } catch (error) {
    return { slot, error };
  }
  return { slot };
}

/** Operation trace of each phase, uncut; `start` made relative to the arming point. */
function traces(sc: Scenario): Record<Phase, FlashOperation[]> {
  const out = {} as Record<Phase, FlashOperation[]>;
  for (const phase of PHASES) {
    let base = 0;
    const { slot, error } = runPhase(sc, phase, (s) => { base = s.opCount(); s.trace(true); });
    if (error !== undefined) throw error;
    out[phase] = slot.trace(false).map((op) => ({ ...op, start: op.start - base }));
    slot.close();
  }
  return out;
}

function inOtadata(op: FlashOperation): boolean {
  return op.address >= OTADATA.offset && op.address < OTADATA.offset + OTADATA.size;
}

/** The fixed cut points of a phase: boundaries, a few bytes into erases, quarter points, program edges. */
function fixedBudgets(ops: FlashOperation[]): number[] {
  const set = new Set<number>();
  for (const op of ops) {
    const s = op.start;
    set.add(s); // boundary: before the operation's first byte
    set.add(s + 1);
    if (op.kind === "erase") for (const q of [4, 16, 64, 256, 1024, 2048, 3072, 4095]) set.add(s + q);
    else {
      for (const q of [Math.floor(op.length / 2), op.length - 1]) set.add(s + q);
      // a program that crosses sector boundaries: cut right at each boundary byte too
      for (let a = Math.ceil((op.address + 1) / SECTOR) * SECTOR; a < op.address + op.length; a += SECTOR) {
        set.add(s + (a - op.address));
      }
    }
  }
  return [...set];
}

/** A random budget: half the time inside one of otadata's operations (where the torn states are). */
function randomBudget(ops: FlashOperation[]): number {
  const od = ops.filter(inOtadata);
  const pool = od.length > 0 && random() % 2 === 0 ? od : ops;
  const op = pool[random() % pool.length]!;
  if (op.kind === "erase" && random() % 2 === 0) return op.start + (random() % 64); // early: most bits survive
  return op.start + (random() % op.length);
}

/** Where a cut landed. `budget` and `ops` (the phase's uncut trace, relative starts) tell the update's two
 *  otadata steps apart: esp_ota_begin's erase of the inactive entry comes before the stream's first
 *  operation (at accept; only when that entry names another slot than the running one), set boot after it. */
function where(op: FlashOperation | undefined, phase: Phase, budget: number, ops: FlashOperation[], sc: Scenario): string {
  if (op === undefined) return `${phase}: none`;
  if (phase === "update") {
    if (isHeldByte(op, sc)) return "update: end (the held magic byte) program";
    if (!inOtadata(op)) return `update: stream ${op.kind}`;
    const firstStream = ops.find((o) => !inOtadata(o));
    return firstStream !== undefined && budget < firstStream.start ? `update: begin (inactive entry) ${op.kind}` : `update: set-boot ${op.kind}`;
  }
  return `${phase}: ${inOtadata(op) ? "otadata" : "app"} ${op.kind}`;
}

/** end()'s program of the held magic byte: one byte at the new slot's offset 0 (ota_writer.h). */
function isHeldByte(op: FlashOperation, sc: Scenario): boolean {
  return op.kind === "program" && op.address === partition(sc.newLabel).offset && op.length === 1;
}

/** After a cut in the update, between the slot's first-sector erase and end()'s held-byte program: the slot
 *  must not start with the magic (the bootloader's fall-back over all app slots would load it unverified).
 *  Returns why not, or undefined. */
function magicBeforeEnd(sc: Scenario, ops: FlashOperation[], budget: number): string | undefined {
  const slot = partition(sc.newLabel).offset;
  const erase = ops.find((o) => o.kind === "erase" && o.address === slot);
  const held = ops.find((o) => isHeldByte(o, sc));
  if (erase === undefined || held === undefined) return "no first-sector erase or held-byte program in the trace";
  if (budget < erase.start + erase.length || budget >= held.start + held.length) return undefined;
  const fd = fs.openSync(work, "r");
  try {
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, slot);
    return b[0] === 0xe9 ? "the slot held the magic byte before end() verified the image" : undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/** What the OTA controller would know was written when the cut came: the end of the last stream program
 *  that completed before the budget ran out (a write returns after its program; the controller records
 *  such offsets at sector boundaries, and the slot rounds down anyway). `ops`: the phase's uncut trace. */
function durableAt(ops: FlashOperation[], budget: number, sc: Scenario): number {
  const slot = partition(sc.newLabel).offset;
  const size = partition(sc.newLabel).size;
  let durable = 0;
  for (const op of ops) {
    if (op.start + op.length > budget) break;
    if (op.kind === "program" && op.address >= slot && op.address < slot + size) durable = Math.max(durable, op.address + op.length - slot);
  }
  return durable;
}

function holds(label: string, image: Uint8Array): boolean {
  const fd = fs.openSync(work, "r");
  try {
    const bytes = Buffer.alloc(image.length);
    fs.readSync(fd, bytes, 0, bytes.length, partition(label).offset);
    return bytes.equals(Buffer.from(image));
  } finally {
    fs.closeSync(fd);
  }
}

/** Boots the OTA controller over the booted slot with the record it would hold; returns its state. */
function controllerState(slot: HostOtaSlot, record: OtaRecord): OtaState {
  const kv = new MemoryKv();
  kv.set(OTA_KV_KEY, JSON.stringify(record));
  const ota = new OtaController(
    {
      slot, kv, clock: new ManualClock(), log: new MemoryLog(),
      source: { open: () => Promise.reject(new Error("no download in the power-cut campaign")) },
      restart: { restart: () => undefined },
    },
    { source: { naming: "aws", baseUrl: "https://blobs.example/fw/", allowedHosts: ["blobs.example"] }, projectName: "shadow-ota" },
    { report: () => Promise.resolve() },
  );
  const state = ota.boot().state;
  ota.close();
  return state;
}

interface Tally { newUnconfirmedNotPending: number; byState: Map<string, number>; recovery: Map<string, number> }

/** Checks the device after the cut; returns undefined when fine, else why it counts as bricked. After a cut
 *  in the update with the old image running, the cuts given a `durable` offset finish by the controller's
 *  resume from there, the others by a new begin. */
function check(sc: Scenario, phase: Phase, tally: Tally, durable: number | undefined): string | undefined {
  const afterCut = fs.readFileSync(work);
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
    if (!holds(label, isNew ? sc.newImage : sc.oldImage)) return `${label} does not hold the installed image`;
    const state = s.runningState();
    const key = `${isNew ? "new" : "old"} image runs, otadata ${state ?? "none"}`;
    tally.byState.set(key, (tally.byState.get(key) ?? 0) + 1);
    if (!isNew) {
      if (label !== "factory" && state !== "VALID") return `old image in state ${state}`;
      // Finish: resume the update (the controller's way after a cut in the download) or redo it.
      const how = durable !== undefined ? resumeInstall(s, sc.newImage, durable) : "a new update";
      if (how === "a new update") install(s, sc.newImage);
      tally.recovery.set(how, (tally.recovery.get(how) ?? 0) + 1);
      s.close();
      const again = open();
      try {
        const b2 = again.boot();
        if (b2.partition.label !== sc.newLabel || b2.state !== "PENDING_VERIFY") return `retry booted ${b2.partition.label} in ${b2.state}`;
        again.markValid();
      } finally {
        again.close();
      }
    } else {
      // The new image runs unconfirmed (every phase cuts before mark valid returned): a path back must exist.
      if (state !== "PENDING_VERIFY") tally.newUnconfirmedNotPending++;
      const ctl = controllerState(s, recordFor(sc, phase));
      if (ctl !== "PendingVerify") return `an unconfirmed image runs without a path back: otadata ${state ?? "none"}, the controller says ${ctl}`;
      s.markInvalidAndReboot(); // the self-test failed
      const back = s.lastBoot();
      if (back?.partition.label !== sc.oldLabel) return `mark invalid booted ${back?.partition.label ?? "nothing"}, expected ${sc.oldLabel}`;
      if (!holds(sc.oldLabel, sc.oldImage)) return `after mark invalid ${sc.oldLabel} does not hold the old image`;
      s.close();
      // ... or it passed: from the same flash, confirm it.
      fs.writeFileSync(work, afterCut);
      const again = open();
      try {
        const b2 = again.boot();
        if (b2.partition.label !== sc.newLabel) return `second boot of the same flash chose ${b2.partition.label}`;
        again.markValid();
      } finally {
        again.close();
      }
    }
    const fin = open();
    try {
      const b3 = fin.boot();
      if (b3.partition.label !== sc.newLabel || b3.state !== "VALID") return `final boot ${b3.partition.label} ${b3.state}`;
    } finally {
      fin.close();
    }
    return undefined;
  } catch (e) {
    return `recovery failed: ${(e as Error).message}`;
  } finally {
    s.close();
  }
}

function main(): number {
  const started = Date.now();
  const all = scenarios();
  const plan: { sc: Scenario; phase: Phase; budget: number; seed: number; ops: FlashOperation[] }[] = [];
  const keys = new Set<string>();
  const add = (sc: Scenario, phase: Phase, ops: FlashOperation[], budget: number, seed: number): void => {
    const key = `${sc.name}|${phase}|${budget}|${seed}`;
    if (keys.has(key)) return;
    keys.add(key);
    plan.push({ sc, phase, budget, seed, ops });
  };
  const phaseOps: { sc: Scenario; phase: Phase; ops: FlashOperation[] }[] = [];
  for (const sc of all) {
    const t = traces(sc);
    for (const phase of PHASES) {
      phaseOps.push({ sc, phase, ops: t[phase] });
      for (const budget of fixedBudgets(t[phase])) add(sc, phase, t[phase], budget, (random() % 0xfffffffe) + 1);
      // The held magic byte's program in end(), several times each: right before it (the stream's last
      // program ends on the budget and the power goes: end() never programs the byte) and right after it
      // (the byte in, then the power goes before set boot). A one-byte program is not torn in this plan:
      // every budget ends before or after it; test/native/held-magic.test.ts tears it (a cut armed right
      // before end()).
      for (const op of t[phase].filter((o) => phase === "update" && isHeldByte(o, sc))) {
        for (let k = 0; k < 16; k++) add(sc, phase, t[phase], op.start + (k % 2), (random() % 0xfffffffe) + 1);
      }
    }
  }
  for (let k = 0; plan.length < CUTS; k++) {
    const { sc, phase, ops } = phaseOps[k % phaseOps.length]!;
    add(sc, phase, ops, randomBudget(ops), (random() % 0xfffffffe) + 1);
  }
  console.log(`power-cut plan: ${plan.length} cuts over ${all.length} scenarios × ${PHASES.length} phases (seed 0x${SEED.toString(16)})`);

  let cuts = 0;
  let bricked = 0;
  const byPlace = new Map<string, number>();
  const failures: string[] = [];
  const tally: Tally = { newUnconfirmedNotPending: 0, byState: new Map(), recovery: new Map() };
  for (const { sc, phase, budget, seed, ops } of plan) {
    const { slot, error: err } = runPhase(sc, phase, (s) => s.armPowerCut(budget, seed));
    const cutAt = slot.cutOperation();
    const lost = slot.powerLost();
    slot.close();
    if (err !== undefined && !isPowerLost(err)) {
      bricked++;
      failures.push(`${sc.name} ${phase} budget ${budget}: unexpected ${(err as Error).message}`);
      continue;
    }
    if (!lost) {
      bricked++;
      failures.push(`${sc.name} ${phase} budget ${budget}: the cut never fired`);
      continue;
    }
    cuts++;
    const early = phase === "update" ? magicBeforeEnd(sc, ops, budget) : undefined;
    if (early !== undefined) {
      bricked++;
      failures.push(`${sc.name} ${phase} budget ${budget}: ${early}`);
      continue;
    }
    const place = where(cutAt, phase, budget, ops, sc);
    byPlace.set(place, (byPlace.get(place) ?? 0) + 1);
    const why = check(sc, phase, tally, phase === "update" && cuts % 2 === 0 ? durableAt(ops, budget, sc) : undefined);
    if (why !== undefined) {
      bricked++;
      failures.push(`${sc.name} ${phase} budget ${budget} seed ${seed} (${place}): ${why}`);
    }
    if (cuts % 2000 === 0) console.log(`  ${cuts} cuts, ${bricked} bricked, ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  for (const [place, count] of [...byPlace].sort()) console.log(`  cut during ${place}: ${count}`);
  for (const [state, count] of [...tally.byState].sort()) console.log(`  after the cut: ${state}: ${count}`);
  for (const [how, count] of [...tally.recovery].sort()) console.log(`  old image ran, update finished by ${how}: ${count}`);
  console.log(`  the new image ran unconfirmed without PENDING_VERIFY (a torn otadata entry) ${tally.newUnconfirmedNotPending} times; each went to the controller's self-test and back`);
  for (const f of failures.slice(0, 20)) console.log(`  BRICKED ${f}`);
  if (failures.length > 20) console.log(`  ... ${failures.length - 20} more`);
  if (cuts < plan.length) console.log(`  only ${cuts} of the ${plan.length} planned cuts ran`);
  fs.rmSync(dir, { recursive: true, force: true });
  const cpu = process.cpuUsage();
  console.log(`  time: ${((Date.now() - started) / 1000).toFixed(1)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(1)} s CPU`);
  console.log(`${cuts} cuts, ${bricked} bricked`);
  return bricked > 0 || cuts < plan.length ? 1 : 0;
}

process.exitCode = main();
