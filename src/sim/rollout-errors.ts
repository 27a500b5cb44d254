/**
 * The error codes of the fleet rollout engine (src/sim/rollout*.ts): a bad request to start one, an action
 * on a rollout that does not exist or cannot take it, and its store. They travel in a ShadowOtaError to the
 * admin API (with the HTTP status named here) and the CLI; they never reach a device. Stable like every
 * other code: never renamed, never reused.
 *
 * ROLLOUT_DEVICE_TIMEOUT is not thrown: it is the `error` a rollout records for a device that did not
 * finish its update within the wave's deadline (it then counts as a failure).
 */
export const ROLLOUT_CODES = {
  /** A start request the engine cannot run: bad version, empty or unknown device list, waves that are not
   *  increasing cumulative targets, a failure threshold outside 0..100 %, a bad window, a bad knob.
   *  `detail`: {field}. The admin API answers 400; the CLI exits 2. */
  ROLLOUT_REQUEST_INVALID: "ROLLOUT_REQUEST_INVALID",
  /** No rollout with that id. The admin API answers 404. */
  ROLLOUT_NOT_FOUND: "ROLLOUT_NOT_FOUND",
  /** The action does not apply in the rollout's state (pause a finished rollout, resume a running one), or a
   *  second rollout was started while one is still active (running, paused or waiting for its window).
   *  `detail`: {id, state}. The admin API answers 409. */
  ROLLOUT_CONFLICT: "ROLLOUT_CONFLICT",
  /** The store file `{dataDir}/rollouts.json` exists but is not one this code wrote. Nothing is loaded and
   *  nothing is overwritten. `detail`: {path}. */
  ROLLOUT_STORE_CORRUPT: "ROLLOUT_STORE_CORRUPT",
  /** A device was still pending when its wave's deadline passed (recorded, not thrown). */
  ROLLOUT_DEVICE_TIMEOUT: "ROLLOUT_DEVICE_TIMEOUT",
  /** Consent could not be given: the device is unknown, or has no update waiting for consent.
   *  The admin API answers 404 for an unknown device, 409 for nothing to accept. */
  ROLLOUT_NOTHING_TO_ACCEPT: "ROLLOUT_NOTHING_TO_ACCEPT",
} as const;
