/**
 * Port: a byte source the OTA controller pulls a firmware image from (HTTPS on every platform today).
 *
 * Pull, not push: the controller asks for the next chunk only when it has written the previous one into
 * the OTA slot, so a fast server never makes the device buffer more than one chunk (backpressure by
 * construction; the adapter reads from the socket only while a `read()` is pending or its small buffer
 * has room).
 *
 * Contract
 * - `open({url, offset, etag})` connects, sends the request (with `Range: bytes={offset}-` and, when `etag`
 *   is given, `If-Range: {etag}` so a changed object is sent whole) and resolves once the status line and
 *   headers are in. Only 200 and 206 are accepted. `start` says where the body begins: `offset` when the
 *   server honoured the range, 0 when it sent the whole object (a changed ETag, or a server without
 *   ranges). `total` is the whole object's length when the server said it (Content-Length of a 200,
 *   the total of a 206's Content-Range), undefined for a chunked body without a length.
 * - `read()` resolves with the next chunk (never empty), or undefined when the body is complete; it
 *   rejects with a ShadowOtaError carrying a DOWNLOAD_* code (src/core/download-errors.ts): the
 *   connection dropped before the announced length (DOWNLOAD_TRUNCATED), the server sent more than it
 *   announced (DOWNLOAD_TOO_LONG), nothing arrived for the idle timeout (DOWNLOAD_TIMEOUT). At most one
 *   `read()` is pending at a time.
 * - `abort()` closes the connection; safe in any state and twice; a pending read rejects with
 *   DOWNLOAD_ABORTED.
 * - The adapter owns TLS (only the configured CA, host name checked), timeouts, redirects (only to
 *   allowed hosts) and the check that a body from offset 0 starts like an ESP32 image (DOWNLOAD_NOT_AN_IMAGE
 *   before a byte reaches the caller). It never retries: retries are the controller's, with one backoff
 *   policy (src/core/backoff.ts).
 *
 * Adapters: src/node/https-source.ts (node:https). The Moddable one is the device issue's.
 */
export interface ByteSourceRequest {
  /** https URL (the controller has already checked it against the allow-list). */
  readonly url: string;
  /** First byte wanted; 0 = the whole object. */
  readonly offset: number;
  /** The validator the bytes before `offset` came from; sent as If-Range. */
  readonly etag?: string;
}

export interface ByteSourceResponse {
  /** HTTP status: 200 (whole object) or 206 (the range asked for). */
  readonly status: number;
  /** Offset of the body's first byte in the object: the request's offset, or 0. */
  readonly start: number;
  /** Length of the whole object when known. */
  readonly total: number | undefined;
  /** The object's ETag when the server sent one (strong validators only; a weak one is undefined). */
  readonly etag: string | undefined;
  /** The next chunk (at most `maxBytes` long when given, > 0), or undefined at the end of the body. A
   *  bound lets the caller stop each read at a flash sector boundary, so the bytes it holds never run past
   *  the next point it persists. */
  read(maxBytes?: number): Promise<Uint8Array | undefined>;
  /** Closes the connection; safe twice. */
  abort(): void;
}

export interface ByteSource {
  open(request: ByteSourceRequest): Promise<ByteSourceResponse>;
}
