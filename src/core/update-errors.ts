/**
 * The error codes of the OTA update controller (src/core/ota-controller.ts): its policy refusals, the
 * self-test and rollback, and its own bookkeeping. They reach `reported.firmwareUpdate.lastError`, so they
 * are a contract: never renamed, never reused with another meaning.
 *
 * OTA_DOWNGRADE_REFUSED and OTA_PROJECT_MISMATCH are also listed in OTA_CODES (src/native/ota-errors.ts),
 * which takes them from here: one code, one meaning, whoever raises it.
 *
 * Not here: the slot's own codes (OTA_IMAGE_*, OTA_PENDING_VERIFY, and OTA_SECURE_VERSION_TOO_LOW for
 * anti-rollback, which the controller asks the slot to enforce, in OTA_CODES), the download's
 * (DOWNLOAD_* in download-errors.ts).
 */
export const UPDATE_CODES = {
  /** The desired version is older than the running one and configuration does not allow downgrades. */
  OTA_DOWNGRADE_REFUSED: "OTA_DOWNGRADE_REFUSED",
  /** The candidate's descriptor names another project than the configured one. */
  OTA_PROJECT_MISMATCH: "OTA_PROJECT_MISMATCH",
  /** The candidate's descriptor version is not the desired version. `detail`: {found, expected}. */
  OTA_VERSION_MISMATCH: "OTA_VERSION_MISMATCH",
  /** The candidate's descriptor version is not strict SemVer (an ESP-IDF `git describe` string, or
   *  empty): the message says what was found and how to stamp a version (`npm run image -- stamp`). */
  OTA_VERSION_NOT_SEMVER: "OTA_VERSION_NOT_SEMVER",
  /** The candidate is built for another chip than the device's. `detail`: {found, expected}. */
  OTA_CHIP_MISMATCH: "OTA_CHIP_MISMATCH",
  /** The candidate needs a newer chip revision than the device has (or refuses the device's as too new).
   *  `detail`: {minChipRevFull, maxChipRevFull, chipRevFull}. */
  OTA_CHIP_REVISION: "OTA_CHIP_REVISION",
  /** A new update was requested while the running image is still pending verification. */
  OTA_UPDATE_WHILE_PENDING: "OTA_UPDATE_WHILE_PENDING",
  /** The firmware URL cannot be built (no base URL configured, or the version gives no valid name). */
  OTA_URL_UNAVAILABLE: "OTA_URL_UNAVAILABLE",
  /** The new image did not pass its self-test: no twin get completed within the window. */
  OTA_SELF_TEST_TIMEOUT: "OTA_SELF_TEST_TIMEOUT",
  /** The new image's application check failed. `detail.reason` when the check gave one. */
  OTA_SELF_TEST_FAILED: "OTA_SELF_TEST_FAILED",
  /** The device runs the previous image again: the new one was marked invalid, or the bootloader rolled
   *  it back (a restart before it was confirmed, or it did not boot). `detail`: {from, to}. */
  OTA_ROLLED_BACK: "OTA_ROLLED_BACK",
  /** The update was given up after the configured number of attempts; the last failure is the cause. */
  OTA_RETRIES_EXHAUSTED: "OTA_RETRIES_EXHAUSTED",
  /** After a restart into the new image, the running version is neither the old nor the new one. */
  OTA_UNEXPECTED_VERSION: "OTA_UNEXPECTED_VERSION",
  /** The update was cancelled while downloading: desired no longer names its version (put back to the
   *  running version or removed, e.g. a rollout's revert). Reported with state Idle; the slot was aborted and
   *  the boot partition never switched. A later desired change to the same version starts it again. */
  OTA_UPDATE_CANCELLED: "OTA_UPDATE_CANCELLED",
  /** An unexpected failure inside the controller (a programming error); the message carries the cause's. */
  OTA_INTERNAL: "OTA_INTERNAL",
} as const;

export type UpdateCode = (typeof UPDATE_CODES)[keyof typeof UPDATE_CODES];
