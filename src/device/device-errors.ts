/**
 * The error codes of the Moddable device app (src/device): its build-time configuration (mc/config) and
 * the device services it needs from the SDK. They travel in a ShadowOtaError (src/core/errors.ts), like
 * every other code, and are a contract: never renamed, never reused with another meaning.
 *
 * Not here: the sync's codes (SYNC_CODES in src/core/sync-errors.ts) and the OTA slot's (OTA_CODES in
 * src/native/ota-errors.ts), which the adapters and the core raise themselves.
 */

export const DEVICE_CODES = {
  /** A key of the app's `config` (manifest.json, or `key=value` on the mcconfig command line) is missing
   *  or malformed. `detail.key` names it, `detail.value` shows what was given (cut to 40 characters). */
  DEVICE_CONFIG_INVALID: "DEVICE_CONFIG_INVALID",
  /** A certificate or key resource the app needs is not in the build (`detail.resource`): the manifest's
   *  SHADOW_OTA_CERTS / SHADOW_OTA_THING did not point at the generated DER files. */
  DEVICE_RESOURCE_MISSING: "DEVICE_RESOURCE_MISSING",
  /** The platform could not restart: the desktop simulator could not re-execute itself (`cause` says why).
   *  The OTA state stays persisted for the next boot. */
  DEVICE_RESTART_UNSUPPORTED: "DEVICE_RESTART_UNSUPPORTED",
} as const;

export type DeviceCode = (typeof DEVICE_CODES)[keyof typeof DEVICE_CODES];
