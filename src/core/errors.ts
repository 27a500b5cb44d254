/**
 * The one error type of shadow-ota.
 *
 * Every failure the firmware can report carries a stable SCREAMING_SNAKE `code` (a contract: codes reach
 * the cloud in the reported state and are never renamed), optionally the platform's own error number
 * (`esp_err_t` on the device, the host simulator's equal on Node) and the cause. Each area keeps its codes
 * beside its code (for example `SYNC_CODES` in sync-errors.ts, `OTA_CODES` in src/native/ota-errors.ts);
 * docs/error-codes.md lists them all.
 *
 * Not here: no logging, no retry policy.
 */

export interface ErrorDetails {
  /** Platform error number (`esp_err_t` or the host simulator's equal). */
  platformCode?: number;
  /** The error (or value) that caused this one. */
  cause?: unknown;
  /** Extra data for the reported state (kept small and JSON-safe). */
  detail?: Record<string, string | number | boolean | null>;
}

export class ShadowOtaError extends Error {
  readonly code: string;
  readonly platformCode: number | undefined;
  readonly detail: Record<string, string | number | boolean | null> | undefined;
  override readonly cause: unknown;

  constructor(code: string, message: string, details: ErrorDetails = {}) {
    super(message);
    // Not `this.name = …`: the Moddable SDK freezes Error.prototype after preload, and assigning a property
    // that a frozen prototype holds throws in strict code. defineProperty makes an own property instead.
    Object.defineProperty(this, "name", { value: "ShadowOtaError", writable: true, configurable: true, enumerable: false });
    this.code = code;
    this.platformCode = details.platformCode;
    this.cause = details.cause;
    this.detail = details.detail;
  }

  /** The JSON-safe form that goes into the reported state (`{"code", "message", "platformCode"?}`). */
  toReported(): { code: string; message: string; platformCode?: number } {
    const out: { code: string; message: string; platformCode?: number } = { code: this.code, message: this.message };
    if (this.platformCode !== undefined) out.platformCode = this.platformCode;
    return out;
  }
}

export function isShadowOtaError(e: unknown, code?: string): e is ShadowOtaError {
  return e instanceof ShadowOtaError && (code === undefined || e.code === code);
}
