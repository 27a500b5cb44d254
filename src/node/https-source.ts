/**
 * The Node adapter of the ByteSource port (src/ports/byte-source.ts): a firmware image pulled over HTTPS
 * with node:https, for the simulator and the host tools. It only translates between HTTP and the port; its
 * failures are the DOWNLOAD_* codes of src/core/download-errors.ts, and it never retries (the OTA
 * controller does, asking `isRetryableDownloadError`).
 *
 * What it enforces, before a byte reaches the caller:
 * - the URL is an absolute https URL that src/core/firmware-url.ts's `urlHost` and Node's URL parser read
 *   the same way (DOWNLOAD_URL_INVALID), and its host — and every redirect's — is exactly on `allowedHosts`
 *   (DOWNLOAD_HOST_NOT_ALLOWED, checked before connecting);
 * - TLS 1.2 or 1.3, the server certificate chains to `ca` only (the system store only with
 *   `useSystemCa: true`), host name checked by Node's default checkServerIdentity (DOWNLOAD_TLS,
 *   `detail.reason` = Node's error code, e.g. UNABLE_TO_VERIFY_LEAF_SIGNATURE, CERT_HAS_EXPIRED,
 *   ERR_TLS_CERT_ALTNAME_INVALID);
 * - at most `maxRedirects` redirects (301/302/303/307/308), https only (DOWNLOAD_REDIRECT_REFUSED);
 * - 200 or 206, else DOWNLOAD_HTTP_STATUS with `detail.status`; a 206's `Content-Range: bytes N-M/T` (or
 *   `/*`) must start at the requested offset and match its Content-Length (DOWNLOAD_RANGE_INVALID);
 * - a body that starts at byte 0 must start with 0xE9 (the ESP32 image magic), and a text/html answer is
 *   never an image (DOWNLOAD_NOT_AN_IMAGE: from `open` for the Content-Type or an empty body, from the
 *   first `read` for the first byte).
 *
 * Request: `Range: bytes={offset}-` when offset > 0, with `If-Range: {etag}` when an etag is given (RFC 9110
 * §13.1.5: never If-Range without Range); `Accept-Encoding: identity`; `Connection: close` (one connection
 * per open, no pool, so abort() leaves nothing behind).
 *
 * Timeouts: `connectTimeoutMs` covers TCP connect + TLS handshake + response headers (per hop of a
 * redirect); `idleTimeoutMs` the wait for the next body byte while the adapter is reading from the socket
 * (not while it holds the response paused because the caller is slow). Both → DOWNLOAD_TIMEOUT with
 * `detail.phase` ("connect", "tls", "headers", "body").
 *
 * Backpressure: the response is paused while its buffer holds more than `highWaterMark` bytes (64 KiB) and
 * resumed when a read() brings it back under. `read(maxBytes)` returns at most that many bytes (the rest of
 * a network chunk stays buffered), so the controller can stop each read at a flash sector boundary.
 *
 * Ends of a body: the announced length reached and the message complete → read() resolves undefined;
 * the connection closed early → DOWNLOAD_TRUNCATED (after the bytes already buffered were read, so the
 * caller keeps as much as it can); bytes past the announced length → DOWNLOAD_TOO_LONG. Node's HTTP parser
 * frames a Content-Length body itself, so extra bytes show up as a parse error on the connection: they are
 * caught when they arrive with the body's last bytes (the completion is held back one event-loop turn for
 * that); ones a server sends after a pause are dropped with the connection (we asked for Connection: close).
 *
 * Not here: retries, resume bookkeeping, the allow-list policy of which hosts to trust (the controller's and
 * the device configuration's), proxies, HTTP/2, content encodings.
 */
import * as https from "node:https";
import type { ClientRequest, IncomingMessage } from "node:http";
import * as tls from "node:tls";
import { DOWNLOAD_CODES } from "../core/download-errors";
import { ShadowOtaError } from "../core/errors";
import { urlHost } from "../core/firmware-url";
import type { ByteSource, ByteSourceRequest, ByteSourceResponse } from "../ports/byte-source";

/** First byte of an ESP32 app image (esp_image_header_t.magic, ESP_IMAGE_HEADER_MAGIC). */
export const ESP_IMAGE_MAGIC = 0xe9;

export interface HttpsByteSourceOptions {
  /** The CA certificate(s) (PEM) the server must chain to. Only these are trusted unless `useSystemCa`. */
  ca?: string | Buffer | ReadonlyArray<string | Buffer>;
  /** Also trust Node's bundled root store (default false). */
  useSystemCa?: boolean;
  /** Exact host names or IP literals (IPv6 without brackets) the URL and every redirect may name. */
  allowedHosts: readonly string[];
  /** TCP connect + TLS + response headers, per request (default 15000 ms). */
  connectTimeoutMs?: number;
  /** Longest wait for the next body byte (default 20000 ms). */
  idleTimeoutMs?: number;
  /** Redirects followed (default 3). */
  maxRedirects?: number;
  /** Bytes buffered before the response is paused (default 64 KiB). */
  highWaterMark?: number;
  /** User-Agent header (default "shadow-ota"). */
  userAgent?: string;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** A strong entity tag (RFC 9110 §8.8.3): quoted etagc characters, no W/ prefix. */
const STRONG_ETAG = /^"[\x21\x23-\x7e\x80-\xff]*"$/;
const MAX_URL = 2048;

function fail(code: string, message: string, detail: Record<string, string | number | boolean | null>, cause?: unknown): ShadowOtaError {
  return new ShadowOtaError(code, message, cause === undefined ? { detail } : { detail, cause });
}

function errnoOf(e: unknown): string {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : e instanceof Error ? e.message : String(e);
}

function stripBrackets(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

function positive(name: string, v: number | undefined, dflt: number, min = 1): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${name} must be an integer >= ${min}, not ${v}`);
  return v;
}

type Phase = "connect" | "tls" | "headers";

/** One request on its own connection, resolved with the response once its headers are in. */
interface Exchange {
  readonly req: ClientRequest;
  readonly res: IncomingMessage;
  /** Where the request's later 'error' events go (the body reader sets it). */
  onError: (e: unknown) => void;
}

export class HttpsByteSource implements ByteSource {
  readonly #ca: Array<string | Buffer>;
  readonly #allowed: ReadonlySet<string>;
  readonly #connectTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  readonly #maxRedirects: number;
  readonly #highWaterMark: number;
  readonly #userAgent: string;

  /** Throws TypeError/RangeError for options that would trust nothing or make no sense. */
  constructor(options: HttpsByteSourceOptions) {
    const own = options.ca === undefined ? [] : Array.isArray(options.ca) ? [...(options.ca as Array<string | Buffer>)] : [options.ca as string | Buffer];
    if (own.length === 0 && options.useSystemCa !== true) throw new TypeError("HttpsByteSource needs `ca` (or useSystemCa: true): it would trust nothing");
    this.#ca = options.useSystemCa === true ? [...tls.rootCertificates, ...own] : own;
    if (!Array.isArray(options.allowedHosts)) throw new TypeError("allowedHosts must be an array of host names");
    this.#allowed = new Set(options.allowedHosts.map((h) => {
      if (typeof h !== "string" || h.length === 0) throw new TypeError("allowedHosts holds a non-string or empty entry");
      return stripBrackets(h).toLowerCase();
    }));
    this.#connectTimeoutMs = positive("connectTimeoutMs", options.connectTimeoutMs, 15_000);
    this.#idleTimeoutMs = positive("idleTimeoutMs", options.idleTimeoutMs, 20_000);
    this.#maxRedirects = positive("maxRedirects", options.maxRedirects, 3, 0);
    this.#highWaterMark = positive("highWaterMark", options.highWaterMark, 64 * 1024);
    this.#userAgent = options.userAgent ?? "shadow-ota";
  }

  async open(request: ByteSourceRequest): Promise<ByteSourceResponse> {
    const offset = request.offset;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`offset must be a non-negative integer, not ${offset}`);
    if (request.etag !== undefined && (typeof request.etag !== "string" || !STRONG_ETAG.test(request.etag))) {
      throw new TypeError(`etag must be a strong entity tag ("..."), not ${String(request.etag)}`);
    }
    let url = this.#check(request.url);
    for (let hop = 0; ; hop++) { // bounded: at most maxRedirects + 1 turns
      const ex = await this.#exchange(url, offset, request.etag);
      const status = ex.res.statusCode ?? 0;
      if (!REDIRECT_STATUSES.has(status)) return this.#response(ex, url, offset);
      ex.res.destroy();
      ex.req.destroy();
      const location = ex.res.headers.location;
      if (location === undefined || location === "") {
        throw fail(DOWNLOAD_CODES.DOWNLOAD_REDIRECT_REFUSED, `${status} without a Location from ${url.href}`, { status, location: null });
      }
      if (hop >= this.#maxRedirects) {
        throw fail(DOWNLOAD_CODES.DOWNLOAD_REDIRECT_REFUSED, `more than ${this.#maxRedirects} redirects`, { status, location: location.slice(0, 200) });
      }
      let next: URL;
      try {
        next = new URL(location, url);
      } catch (cause) {
        throw fail(DOWNLOAD_CODES.DOWNLOAD_REDIRECT_REFUSED, `unusable Location ${JSON.stringify(location.slice(0, 200))}`, { status, location: location.slice(0, 200) }, cause);
      }
      if (next.protocol !== "https:") {
        throw fail(DOWNLOAD_CODES.DOWNLOAD_REDIRECT_REFUSED, `redirect to a non-https URL ${next.href.slice(0, 200)}`, { status, location: next.href.slice(0, 200) });
      }
      url = this.#check(next.href);
    }
  }

  /** The URL checks of the header comment; returns the parsed URL. */
  #check(text: unknown): URL {
    const shown = typeof text === "string" ? text.slice(0, 200) : null;
    const invalid = (why: string): ShadowOtaError => fail(DOWNLOAD_CODES.DOWNLOAD_URL_INVALID, `firmware URL ${why}: ${String(shown)}`, { url: shown, reason: why });
    if (typeof text !== "string" || text.length > MAX_URL) throw invalid("is not a string of at most 2048 characters");
    const host = urlHost(text);
    let u: URL;
    try {
      u = new URL(text);
    } catch {
      throw invalid("does not parse");
    }
    if (u.protocol !== "https:") throw invalid("is not https");
    if (host === undefined || host !== stripBrackets(u.hostname).toLowerCase()) throw invalid("has a host this adapter does not read unambiguously");
    if (!this.#allowed.has(host)) {
      throw fail(DOWNLOAD_CODES.DOWNLOAD_HOST_NOT_ALLOWED, `host ${host} is not on the download allow-list`, { host });
    }
    return u;
  }

  #exchange(url: URL, offset: number, etag: string | undefined): Promise<Exchange> {
    return new Promise<Exchange>((resolve, reject) => {
      const headers: Record<string, string> = {
        accept: "application/octet-stream", "accept-encoding": "identity", connection: "close", "user-agent": this.#userAgent,
      };
      if (offset > 0) {
        headers["range"] = `bytes=${offset}-`;
        if (etag !== undefined) headers["if-range"] = etag;
      }
      let phase: Phase = "connect";
      let settled = false;
      const req = https.request({
        protocol: "https:", hostname: stripBrackets(url.hostname), port: url.port === "" ? 443 : Number(url.port),
        path: url.pathname + url.search, method: "GET", headers, agent: false,
        ca: this.#ca, minVersion: "TLSv1.2", maxVersion: "TLSv1.3", rejectUnauthorized: true,
      });
      const ex: { req: ClientRequest; res?: IncomingMessage; onError: (e: unknown) => void } = { req, onError: () => undefined };
      const settle = (e: ShadowOtaError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        reject(e);
      };
      const timer = setTimeout(() => {
        settle(fail(DOWNLOAD_CODES.DOWNLOAD_TIMEOUT, `no ${phase === "headers" ? "response headers" : phase} within ${this.#connectTimeoutMs} ms from ${url.host}`, { phase, timeoutMs: this.#connectTimeoutMs }));
      }, this.#connectTimeoutMs);
      req.on("socket", (socket) => {
        socket.once("connect", () => { if (phase === "connect") phase = "tls"; });
        socket.once("secureConnect", () => { phase = "headers"; });
      });
      req.on("error", (e: unknown) => {
        if (settled) { ex.onError(e); return; }
        const errno = errnoOf(e);
        // Before the TCP connection, and for socket-level errno codes during the handshake, the network
        // failed; anything else during the handshake (certificate checks, alerts, protocol) is TLS's.
        const network = /^E[A-Z]+$/.test(errno) && errno !== "EPROTO";
        if (errno.startsWith("HPE_")) {
          settle(fail(DOWNLOAD_CODES.DOWNLOAD_BAD_RESPONSE, `malformed response from ${url.host}: ${errno}`, { reason: errno }, e));
        } else if (phase === "tls" && !network) {
          settle(fail(DOWNLOAD_CODES.DOWNLOAD_TLS, `TLS with ${url.host} failed: ${errno}`, { reason: errno }, e));
        } else {
          settle(fail(DOWNLOAD_CODES.DOWNLOAD_CONNECT, `connection to ${url.host} failed (${phase}): ${errno}`, { errno, phase }, e));
        }
      });
      req.on("response", (res: IncomingMessage) => {
        if (settled) { res.destroy(); return; }
        settled = true;
        clearTimeout(timer);
        ex.res = res;
        resolve(ex as Exchange);
      });
      req.end();
    });
  }

  #response(ex: Exchange, url: URL, offset: number): ByteSourceResponse {
    const { req, res } = ex;
    const close = (): void => { res.destroy(); req.destroy(); };
    const status = res.statusCode ?? 0;
    if (status !== 200 && status !== 206) {
      close();
      throw fail(DOWNLOAD_CODES.DOWNLOAD_HTTP_STATUS, `HTTP ${status} from ${url.host}${url.pathname}`, { status });
    }
    const contentType = res.headers["content-type"] ?? null;
    if (contentType !== null && /^\s*text\/html\b/i.test(contentType)) {
      close();
      throw fail(DOWNLOAD_CODES.DOWNLOAD_NOT_AN_IMAGE, `${url.host} answered an HTML page, not a firmware image`, { contentType, status });
    }
    const lengthHeader = res.headers["content-length"];
    const length = lengthHeader === undefined ? undefined : Number(lengthHeader);
    let start = 0;
    let total: number | undefined;
    let expected: number | undefined;
    if (status === 206) {
      const cr = res.headers["content-range"];
      const m = cr === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(cr.trim());
      const first = m === null ? NaN : Number(m[1]);
      const last = m === null ? NaN : Number(m[2]);
      const whole = m === null || m[3] === "*" ? undefined : Number(m[3]);
      const ok = m !== null && first === offset && last >= first && (whole === undefined || last < whole) &&
        (length === undefined || length === last - first + 1);
      if (!ok) {
        close();
        throw fail(DOWNLOAD_CODES.DOWNLOAD_RANGE_INVALID, `206 with Content-Range ${JSON.stringify(cr ?? null)} for offset ${offset}`,
          { contentRange: cr ?? null, offset, contentLength: length ?? null });
      }
      start = first;
      total = whole;
      expected = last - first + 1;
    } else {
      total = length;
      expected = length;
    }
    if (start === 0 && expected === 0) {
      close();
      throw fail(DOWNLOAD_CODES.DOWNLOAD_NOT_AN_IMAGE, `empty body from ${url.host}${url.pathname}`, { contentType, status });
    }
    const etagHeader = res.headers.etag;
    const etag = typeof etagHeader === "string" && STRONG_ETAG.test(etagHeader) ? etagHeader : undefined;
    return new HttpsBody(ex, { status, start, total, etag, expected, checkMagic: start === 0, contentType },
      this.#idleTimeoutMs, this.#highWaterMark);
  }
}

interface BodyMeta {
  status: number;
  start: number;
  total: number | undefined;
  etag: string | undefined;
  /** Body bytes announced (Content-Length or the 206 range); undefined for chunked without a range. */
  expected: number | undefined;
  checkMagic: boolean;
  contentType: string | null;
}

/** The body of one response, pulled through read(). */
class HttpsBody implements ByteSourceResponse {
  readonly status: number;
  readonly start: number;
  readonly total: number | undefined;
  readonly etag: string | undefined;
  readonly #ex: Exchange;
  readonly #expected: number | undefined;
  readonly #contentType: string | null;
  readonly #idleMs: number;
  readonly #hwm: number;
  readonly #queue: Buffer[] = [];
  #buffered = 0;
  #received = 0;
  #checkMagic: boolean;
  /** The response's 'end' came with the whole announced body. */
  #endSeen = false;
  /** The message is complete (no error seen one turn after its end). */
  #complete = false;
  /** read() has resolved undefined. */
  #delivered = false;
  /** The failure reads report once the queue is empty (or at once, see #fail). */
  #error: ShadowOtaError | undefined;
  #pending: { resolve(v: Uint8Array | undefined): void; reject(e: unknown): void } | undefined;
  #idle: ReturnType<typeof setTimeout> | undefined;
  #paused = false;
  /** The bound of the pending (or last) read. */
  #max: number | undefined;

  constructor(ex: Exchange, meta: BodyMeta, idleMs: number, hwm: number) {
    this.#ex = ex;
    this.status = meta.status;
    this.start = meta.start;
    this.total = meta.total;
    this.etag = meta.etag;
    this.#expected = meta.expected;
    this.#checkMagic = meta.checkMagic;
    this.#contentType = meta.contentType;
    this.#idleMs = idleMs;
    this.#hwm = hwm;
    const res = ex.res;
    ex.onError = (e) => this.#onConnectionError(e);
    res.on("data", (chunk: Buffer) => this.#onData(chunk));
    res.on("end", () => this.#onEnd());
    res.on("error", (e: unknown) => this.#onConnectionError(e));
    res.on("close", () => {
      if (!this.#endSeen && this.#error === undefined) this.#truncated("the connection closed");
    });
    this.#armIdle();
  }

  read(maxBytes?: number): Promise<Uint8Array | undefined> {
    if (this.#pending !== undefined) return Promise.reject(new TypeError("read() while another read() is pending"));
    if (maxBytes !== undefined && !(Number.isSafeInteger(maxBytes) && maxBytes > 0)) {
      return Promise.reject(new RangeError(`read(maxBytes): maxBytes must be a positive integer, not ${maxBytes}`));
    }
    this.#max = maxBytes;
    let chunk = this.#queue.shift();
    if (chunk !== undefined) {
      if (maxBytes !== undefined && chunk.length > maxBytes) {
        this.#queue.unshift(chunk.subarray(maxBytes));
        chunk = chunk.subarray(0, maxBytes);
      }
      this.#buffered -= chunk.length;
      if (this.#paused && this.#buffered <= this.#hwm && this.#error === undefined) {
        this.#paused = false;
        this.#ex.res.resume();
        this.#armIdle();
      }
      return Promise.resolve(chunk);
    }
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#complete) {
      this.#delivered = true;
      return Promise.resolve(undefined);
    }
    return new Promise((resolve, reject) => { this.#pending = { resolve, reject }; });
  }

  abort(): void {
    if (this.#error === undefined && !this.#delivered) {
      this.#fail(fail(DOWNLOAD_CODES.DOWNLOAD_ABORTED, "download aborted", {}), true);
    }
    this.#close();
  }

  #onData(chunk: Buffer): void {
    if (this.#error !== undefined || this.#complete || chunk.length === 0) return;
    if (this.#checkMagic) {
      if (chunk[0] !== ESP_IMAGE_MAGIC) {
        this.#fail(fail(DOWNLOAD_CODES.DOWNLOAD_NOT_AN_IMAGE, `the body does not start with the ESP32 image magic 0xE9 (0x${chunk[0]!.toString(16).padStart(2, "0")})`,
          { contentType: this.#contentType, firstByte: chunk[0]! }), true);
        return;
      }
      this.#checkMagic = false;
    }
    this.#received += chunk.length;
    if (this.#expected !== undefined && this.#received > this.#expected) {
      this.#tooLong();
      return;
    }
    this.#armIdle();
    const pending = this.#pending;
    if (pending !== undefined) {
      this.#pending = undefined;
      const max = this.#max;
      if (max === undefined || chunk.length <= max) {
        pending.resolve(chunk);
        return;
      }
      pending.resolve(chunk.subarray(0, max));
      chunk = chunk.subarray(max); // the rest waits in the queue for the next read
    }
    this.#queue.push(chunk);
    this.#buffered += chunk.length;
    if (this.#buffered > this.#hwm && !this.#paused) {
      this.#paused = true;
      this.#ex.res.pause();
      this.#disarmIdle(); // the caller is slow, not the server
    }
  }

  #onEnd(): void {
    if (this.#error !== undefined || this.#complete) return;
    if (!this.#ex.res.complete || (this.#expected !== undefined && this.#received < this.#expected)) {
      this.#truncated("the body ended early");
      return;
    }
    if (this.#checkMagic) {
      this.#fail(fail(DOWNLOAD_CODES.DOWNLOAD_NOT_AN_IMAGE, "empty body", { contentType: this.#contentType }), true);
      return;
    }
    this.#endSeen = true;
    this.#disarmIdle();
    // Bytes past the announced length that came with the last ones fail Node's parser right after the
    // message completes: give that error one turn before calling the body complete.
    setImmediate(() => {
      if (this.#error !== undefined) return;
      this.#complete = true;
      const pending = this.#pending;
      if (pending !== undefined && this.#queue.length === 0) {
        this.#pending = undefined;
        this.#delivered = true;
        pending.resolve(undefined);
      }
    });
  }

  #onConnectionError(e: unknown): void {
    if (this.#error !== undefined || this.#delivered) return;
    const errno = errnoOf(e);
    if (errno.startsWith("HPE_") && this.#expected !== undefined && this.#received >= this.#expected) {
      this.#tooLong(errno);
      return;
    }
    if (this.#endSeen) return; // the body was whole; a late socket error changes nothing
    this.#truncated(`the connection failed: ${errno}`, errno);
  }

  #tooLong(errno?: string): void {
    this.#fail(fail(DOWNLOAD_CODES.DOWNLOAD_TOO_LONG, `the server sent more than the ${this.#expected} bytes it announced`,
      { expected: this.#expected ?? null, received: this.#received, ...(errno === undefined ? {} : { errno }) }), true);
  }

  #truncated(why: string, errno?: string): void {
    this.#fail(fail(DOWNLOAD_CODES.DOWNLOAD_TRUNCATED, `${why} after ${this.#received} of ${this.#expected ?? "an unknown number of"} bytes`,
      { expected: this.#expected ?? null, received: this.#received, ...(errno === undefined ? {} : { errno }) }), false);
  }

  /** Records the failure and closes the connection. `now`: drop buffered bytes (they cannot be trusted);
   *  otherwise reads return them first. */
  #fail(e: ShadowOtaError, now: boolean): void {
    if (this.#error !== undefined) return;
    this.#error = e;
    if (now) {
      this.#queue.length = 0;
      this.#buffered = 0;
    }
    const pending = this.#pending;
    if (pending !== undefined) {
      this.#pending = undefined;
      pending.reject(e); // a pending read means the queue was empty
    }
    this.#close();
  }

  #close(): void {
    this.#disarmIdle();
    this.#ex.res.destroy();
    this.#ex.req.destroy();
  }

  #armIdle(): void {
    this.#disarmIdle();
    this.#idle = setTimeout(() => {
      this.#idle = undefined;
      this.#fail(fail(DOWNLOAD_CODES.DOWNLOAD_TIMEOUT, `no body byte for ${this.#idleMs} ms after ${this.#received} bytes`,
        { phase: "body", timeoutMs: this.#idleMs, received: this.#received }), false);
    }, this.#idleMs);
  }

  #disarmIdle(): void {
    if (this.#idle !== undefined) clearTimeout(this.#idle);
    this.#idle = undefined;
  }
}
