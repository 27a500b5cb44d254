/**
 * The OtaSlot port (src/ports/ota-slot.ts) on Moddable/XS: the ESP32 (ESP-IDF layer) and Moddable's
 * desktop simulator (host flash layer), over the xsmc binding ota_xs.c beside this file. Built by mcconfig
 * through manifest.json here; never by tsc for Node (the root tsconfig does not include src/native/xs/).
 * Type-checked on its own with `npx tsc -p src/native/xs/tsconfig.json`.
 *
 * Thin: the port's verbs, the error translation and the descriptor gate are OtaSlotSession's
 * (src/native/ota-slot-session.ts), shared with the Node binding (src/native/ota-slot.ts); this file only
 * binds the xsmc functions of ota_xs.c and opens them.
 *
 * Not here: policy, HTTP, retries. markInvalidAndReboot() restarts the ESP32 and does not return there.
 */
import type { AppDescriptor, OtaPartitionInfo } from "../../ports/ota-slot";
import { OtaSlotSession } from "../ota-slot-session";

export interface XsOtaSlotOptions {
  /** esp_image_header_t.chip_id images must carry (default: the chip ESP-IDF was configured for; 0 in the simulator). */
  chipId?: number;
  /** Simulator only: the flash file (src/tools/flash-file.ts). Opening it runs the simulated bootloader. */
  flashPath?: string;
}

/** The host object (xs_ota_destructor frees its C state when collected; close() frees it at once). */
class NativeOta extends Native("xs_ota_destructor") {
  constructor(options: XsOtaSlotOptions) {
    super();
    native("xs_ota").call(this, options);
  }
  close(): void {
    native("xs_ota_close").call(this);
  }
  begin(imageSize: number, requireHash: boolean, minSecureVersion: number, signingKey: Uint8Array | null): OtaPartitionInfo {
    return native("xs_ota_begin").call(this, imageSize, requireHash, minSecureVersion, signingKey);
  }
  resume(offset: number, imageSize: number, requireHash: boolean, minSecureVersion: number, signingKey: Uint8Array | null): number {
    return native("xs_ota_resume").call(this, offset, imageSize, requireHash, minSecureVersion, signingKey);
  }
  write(chunk: Uint8Array): number {
    return native("xs_ota_write").call(this, chunk);
  }
  accept(): void {
    native("xs_ota_accept").call(this);
  }
  end(): void {
    native("xs_ota_end").call(this);
  }
  abort(): void {
    native("xs_ota_abort").call(this);
  }
  setBoot(): void {
    native("xs_ota_set_boot").call(this);
  }
  running(): OtaPartitionInfo {
    return native("xs_ota_running").call(this);
  }
  runningState(): number | null {
    return native("xs_ota_running_state").call(this);
  }
  markValid(): void {
    native("xs_ota_mark_valid").call(this);
  }
  markInvalidAndReboot(): void {
    native("xs_ota_mark_invalid_and_reboot").call(this);
  }
  candidateDescriptor(): AppDescriptor | null {
    return native("xs_ota_candidate_descriptor").call(this);
  }
  runningDescriptor(): AppDescriptor | null {
    return native("xs_ota_running_descriptor").call(this);
  }
}

export class XsOtaSlot extends OtaSlotSession<NativeOta> {
  /** Throws OTA_FLASH_FILE_ERROR / OTA_PARTITION_TABLE_INVALID / OTA_NO_BOOTABLE_APP (simulator),
   *  OTA_NO_MEMORY; TypeError / RangeError for bad options. */
  constructor(options: XsOtaSlotOptions = {}) {
    super(() => new NativeOta(options));
  }
}
