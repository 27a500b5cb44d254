/**
 * The OtaSlot port over the N-API binding (src/native/napi/ota_napi.c) and the host flash: a file that
 * behaves like the ESP32's SPI flash, with the partition table at 0x8000, otadata, a simulated
 * bootloader and power-cut injection. Used by the Node simulator and the tests.
 *
 * Thin: the port's verbs, the error translation (OTA_CODES, raw number in `platformCode`) and the
 * descriptor gate are OtaSlotSession's (ota-slot-session.ts), shared with the xsmc binding; this file
 * loads the module, opens the flash file and adds the host-only extras.
 *
 * Host-only extras (not in the port): boot() (run the simulated bootloader, i.e. power on / reboot),
 * power-cut arming, slot states, the partition list, close().
 * Not here: policy (which image to accept), HTTP, retries.
 */
import * as path from "node:path";

import { ShadowOtaError } from "../core/errors";
import { AppDescriptor, ESP_CHIP_ID, OtaImageState, OtaPartitionInfo, otaStateName } from "../ports/ota-slot";
import { OTA_CODES } from "./ota-errors";
import { OtaSlotSession, type NativeOtaVerbs } from "./ota-slot-session";

/** What the simulated bootloader did (ota_boot_result_t). */
export interface BootResult {
  readonly partition: OtaPartitionInfo;
  /** OTA slot index (ota_N -> N), -1 for the factory app. */
  readonly slot: number;
  /** otadata state after boot; undefined when no entry applies (factory, fallback boot). */
  readonly state: OtaImageState | undefined;
  /** otadata sector (0/1) that chose the app, -1 if none. */
  readonly entry: number;
  /** A PENDING_VERIFY entry was ABORTED or the chosen image failed to verify. */
  readonly rolledBack: boolean;
  readonly descriptor: AppDescriptor;
}

/** One byte-level flash operation of the host flash (see ota_host_op_t). */
export interface FlashOperation {
  readonly kind: "erase" | "program";
  /** Absolute flash address. */
  readonly address: number;
  readonly length: number;
  /** opCount() when it began: arming a power cut with this budget cuts it before its first byte. */
  readonly start: number;
}

/** The raw binding (typed here; implemented in ota_napi.c). */
interface NativeBootResult {
  partition: OtaPartitionInfo;
  slot: number;
  state: number | null;
  entry: number;
  rolledBack: boolean;
  descriptor: AppDescriptor;
}
/** ota_napi.c's OtaHost: the shared verbs (ota-slot-session.ts) plus the host flash's extras. */
interface NativeOtaHost extends NativeOtaVerbs {
  boot(): NativeBootResult;
  lastBoot(): NativeBootResult | null;
  slotState(slot: number): number | null;
  partitions(): OtaPartitionInfo[];
  nextUpdatePartition(): OtaPartitionInfo;
  writerState(): { state: string; written: number; error: number };
  markInvalidAndReboot(): NativeBootResult | null;
  armPowerCut(budget: number, seed: number): void;
  disarmPowerCut(): void;
  powerLost(): boolean;
  opCount(): number;
  trace(on?: boolean): FlashOperation[];
  cutOperation(): FlashOperation | null;
}
interface NativeModule {
  OtaHost: new (flashPath: string, chipId: number) => NativeOtaHost;
}

/** Where scripts/build-native.sh puts the module. */
export const NATIVE_MODULE_PATH = path.join(__dirname, "build", "Release", "ota_slot.node");

/**
 * Which hardware layer the binding runs on: "host" (src/native/host/, the file-backed flash: the simulator
 * and the tests) or "esp32-fakes" (test-only: src/native/esp32/ota_esp32.c over RAM-backed fakes of the
 * ESP-IDF functions it calls, test/native/esp32-fakes/; same flash file, same simulated bootloader).
 */
export type OtaHardwareLayer = "host" | "esp32-fakes";

const MODULE_FILES: Record<OtaHardwareLayer, string> = {
  host: NATIVE_MODULE_PATH,
  "esp32-fakes": path.join(__dirname, "build", "Release", "ota_slot_esp32_fakes.node"),
};

const loaded = new Map<OtaHardwareLayer, NativeModule>();

/** Loads the native module of a layer once. Throws OTA_NATIVE_UNAVAILABLE (with the loader's error as cause). */
export function loadNativeOtaModule(layer: OtaHardwareLayer = "host"): NativeModule {
  const have = loaded.get(layer);
  if (have !== undefined) return have;
  const file = MODULE_FILES[layer];
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(file) as NativeModule;
    loaded.set(layer, mod);
    return mod;
  } catch (cause) {
    throw new ShadowOtaError(OTA_CODES.OTA_NATIVE_UNAVAILABLE, `cannot load ${file}; run \`npm run build:native\``, {
      cause,
    });
  }
}

function toBoot(b: NativeBootResult): BootResult {
  return {
    partition: b.partition,
    slot: b.slot,
    state: b.state === null ? undefined : otaStateName(b.state),
    entry: b.entry,
    rolledBack: b.rolledBack,
    descriptor: b.descriptor,
  };
}

export interface HostOtaSlotOptions {
  /** The flash file (see src/tools/flash-file.ts); it must exist. */
  flashPath: string;
  /** The chip images must be built for (default ESP32). */
  chipId?: number;
  /** The hardware layer under the binding (default "host"; "esp32-fakes" is for tests). */
  layer?: OtaHardwareLayer;
}

export class HostOtaSlot extends OtaSlotSession<NativeOtaHost> {
  /** Opens the flash file (nothing boots: call boot()). Throws OTA_FLASH_FILE_ERROR (detail.errno),
   *  OTA_PARTITION_TABLE_INVALID, OTA_INVALID_SIZE, OTA_NATIVE_UNAVAILABLE. */
  constructor(options: HostOtaSlotOptions) {
    const mod = loadNativeOtaModule(options.layer ?? "host");
    super(() => new mod.OtaHost(options.flashPath, options.chipId ?? ESP_CHIP_ID.ESP32));
  }

  /** Power on / reboot: runs the simulated bootloader and returns what boots. Drops any OTA session.
   *  Throws OTA_NO_BOOTABLE_APP (bricked), OTA_POWER_LOST, OTA_NOT_FOUND. */
  boot(): BootResult {
    this.resetSession();
    return toBoot(this.call("boot", () => this.native.boot()));
  }

  /** The last boot, undefined before the first. */
  lastBoot(): BootResult | undefined {
    const b = this.call("lastBoot", () => this.native.lastBoot());
    return b === null ? undefined : toBoot(b);
  }

  // ---- host-only -------------------------------------------------------------------------------

  /** otadata state of OTA slot `slot` (undefined: no entry). */
  slotState(slot: number): OtaImageState | undefined {
    const s = this.call("slotState", () => this.native.slotState(slot));
    return s === null ? undefined : otaStateName(s);
  }

  partitions(): OtaPartitionInfo[] {
    return this.call("partitions", () => this.native.partitions());
  }

  nextUpdatePartition(): OtaPartitionInfo {
    return this.call("nextUpdatePartition", () => this.native.nextUpdatePartition());
  }

  /** The writer's state: "idle" | "head" | "headReady" | "writing" | "ended" | "failed", bytes in flash,
   *  and the platform number that failed it (0 if none). */
  writerState(): { state: string; written: number; error: number } {
    return this.call("writerState", () => this.native.writerState());
  }

  /** After `budget` more byte-level flash operations the power fails (see src/native/host/ota_host.h).
   *  Reopen the file (a new HostOtaSlot) and boot() to simulate the reboot. */
  armPowerCut(budget: number, seed: number): void {
    this.call("armPowerCut", () => this.native.armPowerCut(budget, seed));
  }

  disarmPowerCut(): void {
    this.call("disarmPowerCut", () => this.native.disarmPowerCut());
  }

  powerLost(): boolean {
    return this.call("powerLost", () => this.native.powerLost());
  }

  /** Byte-level erase/program operations since open (to place power cuts). */
  opCount(): number {
    return this.call("opCount", () => this.native.opCount());
  }

  /** Starts (true, clearing) or stops (false) recording flash operations; returns what was recorded
   *  before this call. Without an argument: the record so far. */
  trace(on?: boolean): FlashOperation[] {
    return this.call("trace", () => this.native.trace(on));
  }

  /** The operation the power cut interrupted, undefined if none did. */
  cutOperation(): FlashOperation | undefined {
    return this.call("cutOperation", () => this.native.cutOperation()) ?? undefined;
  }
}
