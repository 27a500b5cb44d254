/**
 * The OtaSlot port (src/ports/ota-slot.ts) on Moddable/XS: the ESP32 (ESP-IDF layer) and Moddable's
 * desktop simulator (host flash layer), over the xsmc binding ota_xs.c beside this file. Built by mcconfig
 * through manifest.json here; never by tsc for Node (the root tsconfig does not include src/native/xs/).
 * Type-checked on its own with `npx tsc -p src/native/xs/tsconfig.json`.
 *
 * Thin: each method is one native call; a native failure (an Error with `platformCode`, the raw esp_err_t)
 * becomes ShadowOtaError with the OTA_CODES code (src/native/ota-errors.ts) and the number kept. The only
 * state here is the rest of the chunk that completed the image head, held until accept() (the descriptor
 * gate of the port), exactly as the Node binding (src/native/ota-slot.ts) does.
 *
 * Not here: policy, HTTP, retries. markInvalidAndReboot() restarts the ESP32 and does not return there.
 */
import { ShadowOtaError } from "../../core/errors";
import { AppDescriptor, OtaBeginOptions, OtaImageState, OtaPartitionInfo, OtaSlot, otaStateName } from "../../ports/ota-slot";
import { OTA_CODES, otaErrorFromNative } from "../ota-errors";

/** ESP_ERR_INVALID_STATE: the port's own "accept or abort first" refusal carries ESP-IDF's number. */
const ESP_ERR_INVALID_STATE = 0x103;

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
  begin(imageSize: number, requireHash: boolean, minSecureVersion: number): OtaPartitionInfo {
    return native("xs_ota_begin").call(this, imageSize, requireHash, minSecureVersion);
  }
  resume(offset: number, imageSize: number, requireHash: boolean, minSecureVersion: number): number {
    return native("xs_ota_resume").call(this, offset, imageSize, requireHash, minSecureVersion);
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

export class XsOtaSlot implements OtaSlot {
  private readonly native: NativeOta;
  /** Rest of the chunk that completed the head; written by accept(). */
  private pending: Uint8Array | undefined;
  /** The head gate has been reported for the current session. */
  private headReported = false;
  private closed = false;

  /** Throws OTA_FLASH_FILE_ERROR / OTA_PARTITION_TABLE_INVALID / OTA_NO_BOOTABLE_APP (simulator),
   *  OTA_NO_MEMORY; TypeError / RangeError for bad options. */
  constructor(options: XsOtaSlotOptions = {}) {
    this.native = this.call("open", () => new NativeOta(options));
  }

  private call<T>(operation: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw otaErrorFromNative(e, operation);
    }
  }

  private resetSession(): void {
    this.pending = undefined;
    this.headReported = false;
  }

  begin(options: OtaBeginOptions = {}): OtaPartitionInfo {
    this.resetSession();
    return this.call("begin", () =>
      this.native.begin(options.imageSize ?? 0, options.requireHash ?? true, options.minSecureVersion ?? 0),
    );
  }

  resume(offset: number, options: OtaBeginOptions = {}): number {
    this.resetSession();
    const at = this.call("resume", () =>
      this.native.resume(offset, options.imageSize ?? 0, options.requireHash ?? true, options.minSecureVersion ?? 0),
    );
    if (at > 0) this.headReported = true; // the stored image was accepted when it was first written
    return at;
  }

  write(chunk: Uint8Array): AppDescriptor | undefined {
    if (this.pending !== undefined) {
      throw new ShadowOtaError(OTA_CODES.OTA_INVALID_STATE, "write: accept() or abort() the candidate first", {
        platformCode: ESP_ERR_INVALID_STATE,
      });
    }
    const consumed = this.call("write", () => this.native.write(chunk));
    if (this.headReported) return undefined;
    const desc = this.call("candidateDescriptor", () => this.native.candidateDescriptor());
    if (desc === null) return undefined;
    this.headReported = true;
    if (consumed < chunk.length) this.pending = chunk.subarray(consumed);
    return desc;
  }

  accept(): void {
    this.call("accept", () => this.native.accept());
    const rest = this.pending;
    this.pending = undefined;
    if (rest !== undefined) this.call("write", () => this.native.write(rest));
  }

  end(): void {
    this.call("end", () => this.native.end());
  }

  abort(): void {
    this.resetSession();
    if (!this.closed) this.native.abort();
  }

  setBootPartition(): void {
    this.call("setBoot", () => this.native.setBoot());
  }

  runningPartition(): OtaPartitionInfo {
    return this.call("running", () => this.native.running());
  }

  runningState(): OtaImageState | undefined {
    const s = this.call("runningState", () => this.native.runningState());
    return s === null ? undefined : otaStateName(s);
  }

  markValid(): void {
    this.call("markValid", () => this.native.markValid());
  }

  markInvalidAndReboot(): void {
    this.resetSession();
    this.call("markInvalidAndReboot", () => this.native.markInvalidAndReboot());
  }

  runningDescriptor(): AppDescriptor | undefined {
    return this.call("runningDescriptor", () => this.native.runningDescriptor()) ?? undefined;
  }

  candidateDescriptor(): AppDescriptor | undefined {
    return this.call("candidateDescriptor", () => this.native.candidateDescriptor()) ?? undefined;
  }

  /** Frees the native state now (else the GC does). Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.resetSession();
    this.native.close();
  }
}
