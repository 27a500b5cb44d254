/**
 * The error codes of the local cloud (the AWS shadow and Azure twin services in src/sim, their store, and
 * the firmware blob server).
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
  /** Another local cloud holds the store's lock (`{dataDir}/cloud-store.lock`): one writer per data
   *  directory, or they overwrite each other's sections. The message names the holder's pid (and says when
   *  it is this very process). A lock whose process is gone is taken over; if the message names a pid that
   *  is not a local cloud (reused after a crash), delete the lock file. `detail`: {path, pid, hostname}. */
  CLOUD_STORE_LOCKED: "CLOUD_STORE_LOCKED",
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
  /** A firmware blob's container or name outside `[A-Za-z0-9_-][A-Za-z0-9._+-]{0,127}` (no "/", no leading
   *  dot, so no ".." and no hidden file), or a fault's blob path not of the form `container/name`.
   *  `detail.name`. The admin API answers 400. */
  CLOUD_BLOB_NAME_INVALID: "CLOUD_BLOB_NAME_INVALID",
  /** No firmware blob at that container/name (delete through the admin API, the CLI or BlobServer.remove). `detail.path`.
   *  The admin API answers 404. */
  CLOUD_BLOB_NOT_FOUND: "CLOUD_BLOB_NOT_FOUND",
  /** A blob fault (src/sim/blob-server.ts, BlobFault) with an unknown field or a value of the wrong type or
   *  range. `detail.reason`. The admin API answers 400. */
  CLOUD_BLOB_FAULT_INVALID: "CLOUD_BLOB_FAULT_INVALID",
  /** A firmware upload over the blob size limit (16 MiB, the largest ESP32 app partition). `detail.limit`.
   *  The admin API answers 413. */
  CLOUD_BLOB_TOO_LARGE: "CLOUD_BLOB_TOO_LARGE",
  /** The local cloud was started without its blob server (`blobPort: false`). */
  CLOUD_BLOB_SERVER_DISABLED: "CLOUD_BLOB_SERVER_DISABLED",
  /** A device id reserved for the cloud itself: the services' certificate name `shadow-ota-cloud` (it would
   *  get the services' broker rights) or `shadow-ota-cloud-*` (the services' client ids). Nothing is issued.
   *  `detail.id`. The admin API answers 400. */
  CLOUD_DEVICE_ID_RESERVED: "CLOUD_DEVICE_ID_RESERVED",
  /** An admin API request whose path or query is not a valid URL: a malformed percent-escape such as `%E0%A4%A`.
   *  The admin API answers 400. */
  CLOUD_ADMIN_URL_INVALID: "CLOUD_ADMIN_URL_INVALID",
  /** A local cloud service option out of range (a twin throttle rate that is negative or not a number, a
   *  burst of 0). Thrown at start, before anything listens. */
  CLOUD_OPTION_INVALID: "CLOUD_OPTION_INVALID",
} as const;

export type CloudCode = (typeof CLOUD_CODES)[keyof typeof CLOUD_CODES];

/**
 * The admin HTTP API's own codes (src/sim/admin-http.ts and the fleet page's data routes,
 * src/sim/fleet-page/fleet-http.ts): what is wrong with a request itself, before or apart from any service.
 * They reach the caller only as the `code` of an HTTP error body `{"code","message"}` (the CLI prints it);
 * the services' and the rollout engine's refusals keep their own codes (CLOUD_*, SYNC_*, ROLLOUT_*).
 */
export const ADMIN_CODES = {
  /** No `Authorization: Bearer {token}` header, or not the token of this start (cloud.json holds it). 401. */
  ADMIN_UNAUTHORIZED: "ADMIN_UNAUTHORIZED",
  /** No route for that method and path (a cloud without its blob server answers /firmware… with 404
   *  CLOUD_BLOB_SERVER_DISABLED instead). 404. */
  ADMIN_NOT_FOUND: "ADMIN_NOT_FOUND",
  /** A JSON request body over 64 KB (firmware uploads have their own limit: CLOUD_BLOB_TOO_LARGE). 413. */
  ADMIN_BODY_TOO_LARGE: "ADMIN_BODY_TOO_LARGE",
  /** A query parameter or header that must be a non-negative integer and is not (`/devices/{id}/logs?after=`, `limit=`;
   *  `/events?after=` and `Last-Event-ID`, given more than once included): refused, never read as 0. 400. */
  ADMIN_QUERY_INVALID: "ADMIN_QUERY_INVALID",
  /** The fleet page's event stream (`GET /events`) already has its 32 clients. 503. */
  ADMIN_TOO_MANY_STREAMS: "ADMIN_TOO_MANY_STREAMS",
  /** A failure that is a bug in the local cloud (an unexpected exception, a response that cannot be
   *  encoded); logged as `admin.failed`. 500. */
  ADMIN_INTERNAL: "ADMIN_INTERNAL",
} as const;
