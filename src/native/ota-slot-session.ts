/**
 * The OtaSlot port (src/ports/ota-slot.ts) over either native binding: the N-API one on Node
 * (src/native/ota-slot.ts, HostOtaSlot) and the xsmc one on Moddable (src/native/xs/ota-slot-xs.ts,
 * XsOtaSlot). Both bindings expose the same verbs over the same C core, so the session logic lives here once:
 * - every native call goes through `call`, which turns a native failure (an Error with `platformCode`, the
 *   raw esp_err_t or simulator number) into ShadowOtaError with its OTA_CODES code, the number kept;
 * - the descriptor gate: the chunk that completes the 288-byte image head is consumed up to the head only;
 *   its rest waits here until accept() (or is dropped by abort()), so policy runs before the first erase;
 * - resume(): a restart offset above 0 means the stored head was accepted when it was first written.
 *
 * Platform-neutral (imports no Node and no Moddable module), so it runs unchanged on XS.
 * Not here: opening the native object (each binding's constructor), host-only extras (HostOtaSlot), policy.
 */
import { ShadowOtaError } from "../core/errors";
import { otaStateName, type AppDescriptor, type OtaBeginOptions, type OtaImageState, type OtaPartitionInfo, type OtaSlot } from "../ports/ota-slot";
import { OTA_CODES, otaErrorFromNative } from "./ota-errors";

/** ESP_ERR_INVALID_STATE: the port's own "accept or abort first" refusal carries ESP-IDF's number. */
const ESP_ERR_INVALID_STATE = 0x103;

/** The verbs both native bindings provide (ota_napi.c and ota_xs.c). Return values the port ignores are `unknown`. */
export interface NativeOtaVerbs {
  /** `signingKey`: null, or the trusted ECDSA P-256 key as DER SubjectPublicKeyInfo (docs/signing.md). */
  begin(imageSize: number, requireHash: boolean, minSecureVersion: number, signingKey: Uint8Array | null): OtaPartitionInfo;
  resume(offset: number, imageSize: number, requireHash: boolean, minSecureVersion: number, signingKey: Uint8Array | null): number;
  /** Returns how many bytes of `chunk` were consumed (fewer when the chunk completed the image head). */
  write(chunk: Uint8Array): number;
  accept(): void;
  end(): unknown;
  abort(): void;
  setBoot(): void;
  running(): OtaPartitionInfo;
  runningState(): number | null;
  markValid(): void;
  markInvalidAndReboot(): unknown;
  candidateDescriptor(): AppDescriptor | null;
  runningDescriptor(): AppDescriptor | null;
  /** Frees the native state; called once. */
  close(): void;
}

export abstract class OtaSlotSession<N extends NativeOtaVerbs> implements OtaSlot {
  protected readonly native: N;
  /** Rest of the chunk that completed the head; written by accept(). */
  private pending: Uint8Array | undefined;
  /** The head gate has been reported for the current session. */
  private headReported = false;
  private closed = false;

  /** `open` creates the native object; its failure is translated like any other native call's. */
  protected constructor(open: () => N) {
    this.native = this.call("open", open);
  }

  /** Runs a native call, translating what it throws (see ota-errors.ts otaErrorFromNative). */
  protected call<T>(operation: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw otaErrorFromNative(e, operation);
    }
  }

  /** Forgets the current session's gate state (begin, resume, abort, reboots). */
  protected resetSession(): void {
    this.pending = undefined;
    this.headReported = false;
  }

  begin(options: OtaBeginOptions = {}): OtaPartitionInfo {
    this.resetSession();
    return this.call("begin", () =>
      this.native.begin(options.imageSize ?? 0, options.requireHash ?? true, options.minSecureVersion ?? 0, options.signingKey ?? null),
    );
  }

  resume(offset: number, options: OtaBeginOptions = {}): number {
    this.resetSession();
    const at = this.call("resume", () =>
      this.native.resume(offset, options.imageSize ?? 0, options.requireHash ?? true, options.minSecureVersion ?? 0, options.signingKey ?? null),
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

  /** On the ESP32 this restarts and does not return; on the host the simulated reboot happens inside. */
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

  /** Frees the native state now (else the GC or process exit does). Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.resetSession();
    this.native.close();
  }
}
