/**
 * The error codes of cloud-twin sync: topic and document parsing (aws-shadow.ts, azure-twin.ts), the
 * common cloud interface (cloud-protocol.ts) and the state machine (shadow-sync.ts). They travel in a
 * ShadowOtaError (src/core/errors.ts) and, where the device reports them, into `reported.lastError`, so
 * they are a contract: never renamed, never reused with another meaning.
 *
 * json.ts and utf8.ts throw SYNC_JSON_INVALID, SYNC_ENCODING_INVALID, SYNC_PAYLOAD_TOO_LARGE and
 * SYNC_DEPTH_EXCEEDED with these same strings; config-diff.ts throws SYNC_DEPTH_EXCEEDED.
 *
 * Not here: the codes of other areas (OTA_*, VERSION_INVALID from semver.ts, CONFIG_PATH_INVALID).
 */

export const SYNC_CODES = {
  /** The payload is not JSON (AWS answers such a request with 400 "Invalid JSON"). */
  SYNC_JSON_INVALID: "SYNC_JSON_INVALID",
  /** The payload is not strict UTF-8 (AWS: 415 "Unsupported documented encoding"). */
  SYNC_ENCODING_INVALID: "SYNC_ENCODING_INVALID",
  /** The payload or a document section is larger than the configured limit (AWS 413; Azure 32 KB per
   *  section; the KV store's 3999 bytes). `detail`: {size, max} where known. */
  SYNC_PAYLOAD_TOO_LARGE: "SYNC_PAYLOAD_TOO_LARGE",
  /** JSON nesting deeper than the limit (AWS 400 "JSON contains too many levels of nesting"; Azure 10). */
  SYNC_DEPTH_EXCEEDED: "SYNC_DEPTH_EXCEEDED",
  /** Valid JSON of the wrong shape: missing or mistyped `state`, `desired`, `reported`, `version`,
   *  `timestamp`, error `code`/`message`, an array holding null, an Azure key with `.`, `$` or space.
   *  `detail.field` names the offending member; `detail.status`/`detail.awsMessage` give the answer the
   *  service would send for a request document. */
  SYNC_DOCUMENT_INVALID: "SYNC_DOCUMENT_INVALID",
  /** A topic that is not a well-formed shadow/twin topic (see the grammar in aws-shadow.ts and
   *  azure-twin.ts). `detail.status` is the TopicMatchStatus / AzureTopicStatus. */
  SYNC_TOPIC_INVALID: "SYNC_TOPIC_INVALID",
  /** A thing name, shadow name, request id or method name outside its allowed characters or length. */
  SYNC_NAME_INVALID: "SYNC_NAME_INVALID",
  /** A clientToken that is not a string of 1..64 UTF-8 bytes (AWS 400 "Invalid clientToken"). */
  SYNC_CLIENT_TOKEN_INVALID: "SYNC_CLIENT_TOKEN_INVALID",
  /** A message whose version is not newer than the last one seen; logged and not acted on. */
  SYNC_VERSION_STALE: "SYNC_VERSION_STALE",
  /** The service refused an update because its `version` is not the current one (AWS 409); the
   *  sync re-gets the document. */
  SYNC_VERSION_CONFLICT: "SYNC_VERSION_CONFLICT",
  /** The service rejected a request for another reason. `detail`: {status, serviceMessage} as sent by
   *  the service (AWS error document code/message, Azure response status). */
  SYNC_REJECTED: "SYNC_REJECTED",
  /** No response to a request within `requestTimeoutMs` (measured with the Clock port). */
  SYNC_TIMEOUT: "SYNC_TIMEOUT",
  /** The MQTT session is down: the request was not sent (reports are still persisted and sent on the
   *  next connect). Also thrown by transports. */
  SYNC_NOT_CONNECTED: "SYNC_NOT_CONNECTED",
  /** The transport failed to publish or subscribe (thrown by transports; `cause` holds their error). */
  SYNC_TRANSPORT: "SYNC_TRANSPORT",
  /** The desired firmware version (or a firmware direct method's `version`) is not strict SemVer
   *  2.0.0; it is reported in `reported.lastError` and never handed on as a firmware version.
   *  `detail.reason` is semver.ts's reason. */
  SYNC_FIRMWARE_VERSION_INVALID: "SYNC_FIRMWARE_VERSION_INVALID",
} as const;

export type SyncCode = (typeof SYNC_CODES)[keyof typeof SYNC_CODES];
