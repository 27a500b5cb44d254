/**
 * The error codes of a firmware download (the ByteSource port, src/ports/byte-source.ts, and its
 * adapters). They travel in a ShadowOtaError and reach `reported.firmwareUpdate.lastError`, so they are a
 * contract: never renamed, never reused with another meaning.
 *
 * `isRetryableDownloadError` is the one place that says which failures the OTA controller retries (with
 * backoff, resuming where the durable bytes end) and which end the update at once.
 *
 * Not here: image validation (OTA_IMAGE_* from the slot), update policy (OTA_* in update-errors.ts).
 */
import { ShadowOtaError } from "./errors";

export const DOWNLOAD_CODES = {
  /** The firmware URL is not an absolute https URL, or holds characters a URL must not. */
  DOWNLOAD_URL_INVALID: "DOWNLOAD_URL_INVALID",
  /** The URL's host (or a redirect's) is not on the configured allow-list. `detail.host`. */
  DOWNLOAD_HOST_NOT_ALLOWED: "DOWNLOAD_HOST_NOT_ALLOWED",
  /** TCP connect failed (refused, unreachable, DNS). Retried. `detail.errno`. */
  DOWNLOAD_CONNECT: "DOWNLOAD_CONNECT",
  /** TLS failed: certificate not from the pinned CA, host name mismatch, expired, protocol. Not retried.
   *  `detail.reason` (Node: the OpenSSL/Node error code). */
  DOWNLOAD_TLS: "DOWNLOAD_TLS",
  /** No connection, headers or body bytes within the connect/idle timeout. Retried. `detail.phase`. */
  DOWNLOAD_TIMEOUT: "DOWNLOAD_TIMEOUT",
  /** A status other than 200/206. `detail.status`; 408, 429 and 5xx are retried, the rest are not. */
  DOWNLOAD_HTTP_STATUS: "DOWNLOAD_HTTP_STATUS",
  /** A redirect without a usable Location, to a non-https URL, or more than the allowed number. */
  DOWNLOAD_REDIRECT_REFUSED: "DOWNLOAD_REDIRECT_REFUSED",
  /** A 206 whose Content-Range does not start at the requested offset, or that is malformed. Retried
   *  (from 0: the controller drops what it cannot trust). */
  DOWNLOAD_RANGE_INVALID: "DOWNLOAD_RANGE_INVALID",
  /** The body does not start like an ESP32 app image (first byte not 0xE9, an HTML error page, ...).
   *  Nothing was written. `detail.contentType`. */
  DOWNLOAD_NOT_AN_IMAGE: "DOWNLOAD_NOT_AN_IMAGE",
  /** The connection ended before the announced length (or was reset mid-body). Retried with resume. */
  DOWNLOAD_TRUNCATED: "DOWNLOAD_TRUNCATED",
  /** The server sent more bytes than it announced. Not retried. */
  DOWNLOAD_TOO_LONG: "DOWNLOAD_TOO_LONG",
  /** The response's status line or headers are malformed, too many or too long (Node: an HPE_* parser
   *  error). Retried: a proxy or load balancer in between may have garbled one answer. `detail.reason`. */
  DOWNLOAD_BAD_RESPONSE: "DOWNLOAD_BAD_RESPONSE",
  /** The adapter had to drop the connection because the reader fell too far behind a socket it cannot
   *  pause (Moddable's SecureSocket). Retried with resume. `detail`: {buffered, limit}. */
  DOWNLOAD_OVERRUN: "DOWNLOAD_OVERRUN",
  /** The download was aborted by the device (a newer request, shutdown). */
  DOWNLOAD_ABORTED: "DOWNLOAD_ABORTED",
} as const;

export type DownloadCode = (typeof DOWNLOAD_CODES)[keyof typeof DOWNLOAD_CODES];

const RETRYABLE: ReadonlySet<string> = new Set([
  DOWNLOAD_CODES.DOWNLOAD_CONNECT,
  DOWNLOAD_CODES.DOWNLOAD_TIMEOUT,
  DOWNLOAD_CODES.DOWNLOAD_TRUNCATED,
  DOWNLOAD_CODES.DOWNLOAD_RANGE_INVALID,
  DOWNLOAD_CODES.DOWNLOAD_BAD_RESPONSE,
  DOWNLOAD_CODES.DOWNLOAD_OVERRUN,
]);

/** True for failures worth another attempt: network trouble and 408/429/5xx answers. */
export function isRetryableDownloadError(e: unknown): boolean {
  if (!(e instanceof ShadowOtaError)) return false;
  if (RETRYABLE.has(e.code)) return true;
  if (e.code === DOWNLOAD_CODES.DOWNLOAD_HTTP_STATUS) {
    const status = e.detail?.["status"];
    return typeof status === "number" && (status === 408 || status === 429 || status >= 500);
  }
  return false;
}
