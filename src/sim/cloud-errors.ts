/**
 * The error codes of the local cloud (the AWS shadow and Azure twin services in src/sim and their store).
 * They travel in a ShadowOtaError (src/core/errors.ts) to the code that drives the local cloud (tests,
 * the CLI); they never reach a device, which only sees the protocol's own rejections (AWS error
 * documents, Azure status codes). Stable like every other code: never renamed, never reused.
 *
 * Not here: the protocol parsing codes (SYNC_* in src/core/sync-errors.ts), which the admin API passes on
 * unchanged when the caller's own input is malformed.
 */

export const CLOUD_CODES = {
  /** The store file exists but is not a store this code wrote: not UTF-8 JSON, wrong `format`, or a shadow
   *  or twin entry of the wrong shape. Nothing is loaded and nothing is overwritten. `detail`: {path, reason}. */
  CLOUD_STORE_CORRUPT: "CLOUD_STORE_CORRUPT",
  /** Reading or writing the store failed (permissions, disk full, the data directory is a file).
   *  `detail`: {path, operation}; `cause`: the Node error. On a failed write the change is not applied. */
  CLOUD_STORE_IO: "CLOUD_STORE_IO",
  /** The service refused an admin request, with the status and message it would have sent a device
   *  (AWS: 400/404/409/413/415/429/500 and the error document's message; Azure: 400).
   *  `detail`: {status, serviceMessage}. */
  CLOUD_REQUEST_REJECTED: "CLOUD_REQUEST_REJECTED",
  /** The broker refused one of the service's subscriptions (SUBACK 0x80, e.g. an ACL). `detail`: {topic}. */
  CLOUD_SUBSCRIBE_REFUSED: "CLOUD_SUBSCRIBE_REFUSED",
  /** The service was closed: admin calls made after `close()`, and direct methods still waiting when it closed. */
  CLOUD_SERVICE_CLOSED: "CLOUD_SERVICE_CLOSED",
  /** An admin call named a device id that Azure would refuse or that cannot appear in an MQTT topic
   *  (not 1..128 characters of Azure's device-id set without `+`, `#` and `/`). */
  CLOUD_DEVICE_ID_INVALID: "CLOUD_DEVICE_ID_INVALID",
} as const;

export type CloudCode = (typeof CLOUD_CODES)[keyof typeof CLOUD_CODES];
