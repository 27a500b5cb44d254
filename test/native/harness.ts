/**
 * A simulated device for the native OTA tests: a flash file, a HostOtaSlot over it, reboots (close,
 * reopen, run the simulated bootloader) and a full install (begin → write → descriptor gate → accept →
 * end → set boot) with the policy the OTA state machine applies (right project, strictly newer version),
 * written here in a few lines so the tests can show that policy refusals leave the flash untouched.
 *
 * Not the product's OTA state machine (that lives in src/core); no HTTP, no timers.
 */
import * as fs from "node:fs";

import { ShadowOtaError } from "../../src/core/errors";
import { isNewer } from "../../src/core/semver";
import { OTA_CODES } from "../../src/native/ota-errors";
import { BootResult, HostOtaSlot, type OtaHardwareLayer } from "../../src/native/ota-slot";
import { AppDescriptor, OtaBeginOptions } from "../../src/ports/ota-slot";

export class Device {
  slot: HostOtaSlot;
  lastBoot: BootResult | undefined;

  /** `layer`: the hardware layer under the binding (the host flash, or the ESP32 layer over ESP-IDF fakes). */
  constructor(readonly file: string, readonly chipId = 0, readonly layer: OtaHardwareLayer = "host") {
    this.slot = new HostOtaSlot({ flashPath: file, chipId, layer });
  }

  /** Power on (the first time) or reboot: reopen the flash file and run the bootloader. */
  reboot(): BootResult {
    this.slot.close();
    this.slot = new HostOtaSlot({ flashPath: this.file, chipId: this.chipId, layer: this.layer });
    this.lastBoot = this.slot.boot();
    return this.lastBoot;
  }

  close(): void {
    this.slot.close();
  }

  snapshot(): Buffer {
    return fs.readFileSync(this.file);
  }
}

/** The policy: same project, strictly newer version (semver precedence). Throws ShadowOtaError. */
export function checkCandidate(candidate: AppDescriptor, running: AppDescriptor | undefined): void {
  if (running === undefined) return;
  if (candidate.projectName !== running.projectName) {
    throw new ShadowOtaError(OTA_CODES.OTA_PROJECT_MISMATCH, `image is for "${candidate.projectName}"`);
  }
  if (!isNewer(candidate.version, running.version)) {
    throw new ShadowOtaError(OTA_CODES.OTA_DOWNGRADE_REFUSED, `${candidate.version} is not newer than ${running.version}`);
  }
}

export interface InstallOptions extends OtaBeginOptions {
  /** Chunk sizes to cut the image into, cycled (default one chunk of 1460 bytes). */
  chunks?: number[];
  /** Apply checkCandidate against the running descriptor (default true). */
  policy?: boolean;
  /** Stop after end() without set boot. */
  noSetBoot?: boolean;
}

/** Streams `img` into the next slot and sets it to boot. Aborts and rethrows on any error. */
export function install(slot: HostOtaSlot, img: Uint8Array, o: InstallOptions = {}): void {
  const chunks = o.chunks ?? [1460];
  slot.begin(o);
  try {
    let off = 0;
    let k = 0;
    while (off < img.length) {
      const n = Math.max(1, chunks[k++ % chunks.length]!);
      const desc = slot.write(img.subarray(off, off + n));
      off += n;
      if (desc !== undefined) {
        if (o.policy ?? true) checkCandidate(desc, slot.runningDescriptor());
        slot.accept();
      }
    }
    slot.end();
    if (!o.noSetBoot) slot.setBootPartition();
  } catch (e) {
    slot.abort();
    throw e;
  }
}

/** "ok" or the code of what was thrown (non-ShadowOtaError errors are rethrown). */
export function outcome(fn: () => void): string {
  try {
    fn();
    return "ok";
  } catch (e) {
    if (e instanceof ShadowOtaError) return e.code;
    throw e;
  }
}
