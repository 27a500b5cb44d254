/**
 * Fakes for the OTA controller's ports, platform-neutral (the controller's tests run on XS too):
 * - fakeImage(): bytes shaped like an ESP32 app image where the controller looks (magic, chip fields of the
 *   header, app descriptor at 32) with a length and an XOR trailer the fake slot verifies at end();
 * - FakeFlash + FakeSlot: two OTA slots with ESP-IDF's rules as the controller meets them (descriptor gate
 *   before any write, resume rounded down to a sector, PENDING_VERIFY after a restart into a new image,
 *   rollback on a restart while pending or on markInvalidAndReboot);
 * - FakeSource: a ByteSource serving an object from memory, with Range/ETag and scripted faults.
 * The real slot (C core, host flash) and the real HTTPS adapter are tested in test/native and test/node;
 * the end-to-end tests in test/sim run the controller over them.
 */
import { ShadowOtaError } from "../../src/core/errors";
import type { ByteSource, ByteSourceRequest, ByteSourceResponse } from "../../src/ports/byte-source";
import type { AppDescriptor, OtaBeginOptions, OtaImageState, OtaPartitionInfo, OtaSlot } from "../../src/ports/ota-slot";
import type { Restart } from "../../src/ports/restart";

export interface FakeImageOptions {
  version?: string;
  projectName?: string;
  chipId?: number;
  minChipRevFull?: number;
  maxChipRevFull?: number;
  secureVersion?: number;
  size?: number;
  magic?: number;
}

function putString(b: Uint8Array, at: number, s: string, max: number): void {
  for (let i = 0; i < s.length && i < max - 1; i++) b[at + i] = s.charCodeAt(i) & 0xff;
}

function getString(b: Uint8Array, at: number, max: number): string {
  let s = "";
  for (let i = 0; i < max && b[at + i] !== 0; i++) s += String.fromCharCode(b[at + i]!);
  return s;
}

function u32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

function put32(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff; b[at + 1] = (v >>> 8) & 0xff; b[at + 2] = (v >>> 16) & 0xff; b[at + 3] = (v >>> 24) & 0xff;
}

/** A fake image: header magic 0xE9, chip fields at 12/15/17, the descriptor at 32, total length at 4, XOR last. */
export function fakeImage(o: FakeImageOptions = {}): Uint8Array {
  const size = o.size ?? 20_000;
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + 7) & 0xff;
  b[0] = o.magic ?? 0xe9;
  put32(b, 4, size);
  b[12] = (o.chipId ?? 0) & 0xff; b[13] = ((o.chipId ?? 0) >> 8) & 0xff;
  b[15] = (o.minChipRevFull ?? 0) & 0xff; b[16] = ((o.minChipRevFull ?? 0) >> 8) & 0xff;
  b[17] = (o.maxChipRevFull ?? 0xffff) & 0xff; b[18] = ((o.maxChipRevFull ?? 0xffff) >> 8) & 0xff;
  b.fill(0, 32, 288);
  put32(b, 32, 0xabcd5432);
  put32(b, 36, o.secureVersion ?? 0);
  putString(b, 48, o.version ?? "1.1.0", 32);
  putString(b, 80, o.projectName ?? "shadow-ota", 32);
  let x = 0;
  for (let i = 0; i < size - 1; i++) x ^= b[i]!;
  b[size - 1] = x;
  return b;
}

export function fakeDescriptor(b: Uint8Array): AppDescriptor {
  return {
    magicWord: u32(b, 32), secureVersion: u32(b, 36), version: getString(b, 48, 32), projectName: getString(b, 80, 32),
    time: "", date: "", idfVer: "", appElfSha256: "0".repeat(64),
    chipId: b[12]! | (b[13]! << 8), minChipRevFull: b[15]! | (b[16]! << 8), maxChipRevFull: b[17]! | (b[18]! << 8),
  };
}

const SLOT_SIZE = 1 << 20;
const PART = (i: number): OtaPartitionInfo => ({ label: `ota_${i}`, type: 0, subtype: 0x10 + i, address: 0x110000 + i * SLOT_SIZE, size: SLOT_SIZE });

/** The flash that survives restarts: two slots, which one boots, and its state. */
export class FakeFlash {
  slots: [Uint8Array, Uint8Array];
  /** Bytes of each slot that hold data (anything after is erased). */
  lengths: [number, number];
  running = 0;
  runningState: OtaImageState | undefined = "VALID";
  /** The slot set to boot next (after setBootPartition), undefined = keep. */
  next: number | undefined;
  erasedBytes = 0;
  rollbackEnabled = true;

  constructor(runningImage: Uint8Array) {
    this.slots = [new Uint8Array(SLOT_SIZE).fill(0xff), new Uint8Array(SLOT_SIZE).fill(0xff)];
    this.slots[0].set(runningImage);
    this.lengths = [runningImage.length, 0];
  }

  /** Power on / restart: ESP-IDF's bootloader rules with rollback enabled. */
  boot(): void {
    if (this.next !== undefined) {
      this.running = this.next;
      this.next = undefined;
      this.runningState = this.rollbackEnabled ? "PENDING_VERIFY" : "VALID";
    } else if (this.runningState === "PENDING_VERIFY") {
      // A restart before confirmation: the bootloader marks it ABORTED and goes back.
      this.running = 1 - this.running;
      this.runningState = "VALID";
    }
  }
}

export class FakeSlot implements OtaSlot {
  written = 0;
  #target = -1;
  #declared: number | undefined;
  #headDone = false;
  #accepted = false;
  #pending: Uint8Array | undefined;
  #ended = false;
  restarts: string[] = [];
  /** Throws this error from the next write (once). */
  failNextWrite: ShadowOtaError | undefined;
  /** Throws this error from the next end() (once). */
  failNextEnd: ShadowOtaError | undefined;

  constructor(readonly flash: FakeFlash) {}

  #targetSlot(): number { return 1 - this.flash.running; }

  begin(o: OtaBeginOptions = {}): OtaPartitionInfo {
    if (this.flash.runningState === "PENDING_VERIFY") throw new ShadowOtaError("OTA_PENDING_VERIFY", "running app is pending verification");
    if (o.imageSize !== undefined && o.imageSize > SLOT_SIZE) throw new ShadowOtaError("OTA_INVALID_SIZE", `image of ${o.imageSize} bytes does not fit the slot (${SLOT_SIZE})`);
    this.#target = this.#targetSlot();
    this.#declared = o.imageSize;
    this.written = 0;
    this.#headDone = false; this.#accepted = false; this.#pending = undefined; this.#ended = false;
    this.flash.lengths[this.#target] = 0;
    return PART(this.#target);
  }

  resume(offset: number, o: OtaBeginOptions = {}): number {
    const have = this.flash.lengths[this.#targetSlot()]!;
    this.begin(o);
    const at = Math.floor(offset / 4096) * 4096;
    if (at < 4096) return 0;
    const stored = this.flash.slots[this.#target]!;
    if (stored[0] !== 0xe9 || have < at) throw new ShadowOtaError("OTA_RESUME_MISMATCH", "flash prefix is not an image prefix");
    this.written = at;
    this.flash.lengths[this.#target] = at;
    this.#headDone = true; this.#accepted = true;
    return at;
  }

  write(chunk: Uint8Array): AppDescriptor | undefined {
    if (this.failNextWrite !== undefined) { const e = this.failNextWrite; this.failNextWrite = undefined; throw e; }
    if (this.#target < 0) throw new ShadowOtaError("OTA_INVALID_STATE", "write before begin");
    if (this.#headDone && !this.#accepted) throw new ShadowOtaError("OTA_INVALID_STATE", "accept or abort first");
    const slot = this.flash.slots[this.#target]!;
    if (this.written === 0 && chunk[0] !== 0xe9) throw new ShadowOtaError("OTA_IMAGE_BAD_MAGIC", "not an image", { platformCode: 0x7101 });
    if (!this.#headDone && this.written + chunk.length >= 288) {
      const take = 288 - this.written;
      slot.set(chunk.subarray(0, take), this.written); // kept in RAM on the real slot; nothing erased yet
      this.written = 288;
      this.#headDone = true;
      this.#pending = chunk.subarray(take);
      return fakeDescriptor(slot);
    }
    this.#put(chunk);
    return undefined;
  }

  #put(chunk: Uint8Array): void {
    if (this.written + chunk.length > SLOT_SIZE) throw new ShadowOtaError("OTA_IMAGE_TOO_LARGE", "past the slot");
    this.flash.slots[this.#target]!.set(chunk, this.written);
    this.written += chunk.length;
    this.flash.lengths[this.#target] = this.written;
    this.flash.erasedBytes += chunk.length;
  }

  accept(): void {
    this.#accepted = true;
    this.flash.lengths[this.#target] = this.written;
    const p = this.#pending;
    this.#pending = undefined;
    if (p !== undefined && p.length > 0) this.#put(p);
  }

  end(): void {
    if (this.failNextEnd !== undefined) { const e = this.failNextEnd; this.failNextEnd = undefined; throw e; }
    const b = this.flash.slots[this.#target]!;
    const size = u32(b, 4);
    if (this.written !== size) throw new ShadowOtaError("OTA_IMAGE_TRUNCATED", `have ${this.written} of ${size} bytes`);
    if (this.#declared !== undefined && this.#declared !== size) throw new ShadowOtaError("OTA_IMAGE_INVALID", "length differs from the declared one");
    let x = 0;
    for (let i = 0; i < size - 1; i++) x ^= b[i]!;
    if (x !== b[size - 1]) throw new ShadowOtaError("OTA_IMAGE_BAD_CHECKSUM", "checksum mismatch", { platformCode: 0x7106 });
    this.#ended = true;
  }

  abort(): void {
    this.#target = -1; this.#pending = undefined; this.#headDone = false; this.#accepted = false; this.#ended = false;
  }

  setBootPartition(): void {
    if (!this.#ended) throw new ShadowOtaError("OTA_INVALID_STATE", "setBootPartition before end");
    this.flash.next = this.#target;
  }

  runningPartition(): OtaPartitionInfo { return PART(this.flash.running); }
  runningState(): OtaImageState | undefined { return this.flash.runningState; }
  markValid(): void { if (this.flash.runningState === "PENDING_VERIFY") this.flash.runningState = "VALID"; }
  markInvalidAndReboot(): void {
    if (this.flash.lengths[1 - this.flash.running] === 0) throw new ShadowOtaError("OTA_ROLLBACK_FAILED", "no previous app");
    this.flash.running = 1 - this.flash.running;
    this.flash.runningState = "VALID";
    this.flash.next = undefined;
  }
  runningDescriptor(): AppDescriptor | undefined { return fakeDescriptor(this.flash.slots[this.flash.running]!); }
  candidateDescriptor(): AppDescriptor | undefined {
    return this.#target >= 0 && this.written >= 288 ? fakeDescriptor(this.flash.slots[this.#target]!) : undefined;
  }
}

export class RecordingRestart implements Restart {
  readonly reasons: string[] = [];
  restart(reason: string): void { this.reasons.push(reason); }
}

/** A scripted fault for the next open(): fail the open, or cut/stall the body after `at` bytes. */
export type SourceFault =
  | { kind: "open-error"; error: ShadowOtaError }
  | { kind: "cut"; at: number; error?: ShadowOtaError }
  | { kind: "stall"; at: number }
  | { kind: "whole" };

export class FakeSource implements ByteSource {
  readonly opens: ByteSourceRequest[] = [];
  readonly faults: SourceFault[] = [];
  /** Bytes served, all requests together. */
  served = 0;
  chunkSize = 1460;
  etag = '"v1"';
  /** Reads pending on a stalled body (resolved by nothing; aborted by the controller). */
  stalled = 0;

  constructor(public object: Uint8Array) {}

  async open(req: ByteSourceRequest): Promise<ByteSourceResponse> {
    this.opens.push(req);
    const fault = this.faults.shift();
    if (fault?.kind === "open-error") throw fault.error;
    const whole = fault?.kind === "whole" || req.offset === 0 || (req.etag !== undefined && req.etag !== this.etag);
    const start = whole ? 0 : req.offset;
    const object = this.object;
    let pos = start;
    let aborted = false;
    let wake: ((e: ShadowOtaError) => void) | undefined;
    const self = this;
    return {
      status: start === 0 ? 200 : 206,
      start,
      total: object.length,
      etag: this.etag,
      read(maxBytes?: number): Promise<Uint8Array | undefined> {
        if (aborted) return Promise.reject(new ShadowOtaError("DOWNLOAD_ABORTED", "aborted"));
        if ((fault?.kind === "cut") && pos - start >= fault.at) {
          return Promise.reject(fault.error ?? new ShadowOtaError("DOWNLOAD_TRUNCATED", `connection closed at byte ${pos}`));
        }
        if (fault?.kind === "stall" && pos - start >= fault.at) {
          self.stalled++;
          return new Promise((_, reject) => { wake = reject; });
        }
        if (pos >= object.length) return Promise.resolve(undefined);
        let n = Math.min(self.chunkSize, object.length - pos, maxBytes ?? Infinity);
        if (fault?.kind === "cut" || fault?.kind === "stall") n = Math.min(n, start + fault.at - pos);
        const chunk = object.slice(pos, pos + n);
        pos += n;
        self.served += n;
        return Promise.resolve(chunk);
      },
      abort(): void {
        aborted = true;
        const w = wake;
        wake = undefined;
        w?.(new ShadowOtaError("DOWNLOAD_ABORTED", "aborted"));
      },
    };
  }
}

/** xorshift32 in [0, 1): the same seed gives the same sequence on every engine (the OTA fault tests). */
export function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 0x100000000;
  };
}
