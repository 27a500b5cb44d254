/**
 * The Moddable adapter of the ByteSource port (src/ports/byte-source.ts): a firmware image pulled over
 * HTTPS with the SDK's legacy `http` Request (modules/network/http/http.js) on SecureSocket
 * (modules/crypt/securesocket, JavaScript TLS). It only translates between the SDK and the port; its
 * failures are the DOWNLOAD_* codes of src/core/download-errors.ts with the Node adapter's meanings
 * (src/node/https-source.ts), and it never retries (the OTA controller does).
 *
 * Read from the SDK's sources (8.2.3, commit 48ee02d8), which decide the shape of this file:
 * - Request always sends `Connection: close`; one request per connection, so abort() leaves nothing behind.
 * - Its callback gets (1, status), (2, name lowercased, value) per header, (3) headers complete, then with
 *   no `response` type (4, count) per body fragment — the callback reads the bytes with
 *   `request.read(ArrayBuffer, count)` — and (5) at the end; any negative message is an error (-2, or -1
 *   when the peer closed). It frames the body by Content-Length, by chunks, or until the close; a
 *   close-delimited body that is cut short looks complete (the slot's end() still verifies the image).
 * - SecureSocket decrypts a TLS record and hands it over in pieces of at most 1 KiB, each through one
 *   callback, and drops what the callback did not read (securesocket.js deletes `this.data`); in a chunked
 *   body http.js itself skips unread bytes. Neither can be paused. So every fragment is read inside the
 *   callback into ONE queue here: there is no other way to keep the bytes. The queue stays small because
 *   the OTA controller writes each chunk to flash synchronously and asks for the next one in the same
 *   promise job (XS runs promise jobs after every host callback), so it is drained before the next socket
 *   event; what can pile up is one socket event's worth (at most the TCP window plus one 16 KiB record).
 *   `maxBufferedBytes` (32 KiB) is the safety net: beyond it the connection is closed and reads end with
 *   DOWNLOAD_OVERRUN (retried) after the queued bytes, so the controller resumes
 *   from what it wrote.
 * - SecureSocket options (ssl_cert.js, session_original.js): `protocolVersion: 0x303` (TLS 1.2),
 *   `certificate` (the pinned CA, DER), `verify: true` (chain, validity dates — the clock must be set — and
 *   the host name against the leaf's subjectAltName dNSName / IPv4 entries; no CN fallback), `serverName`
 *   (the name checked and sent as SNI; SecureSocket defaults it to `host`, set here explicitly). The SDK
 *   also trusts any `ca<N>.der` resource of the build: the app's manifest adds none, which is what makes
 *   the CA pinned.
 * - The SDK does not say why a connection failed. The raw socket's "connected" message (observed by
 *   wrapping its callback, below) and SecureSocket's `handshaking` flag tell the phases apart: an error
 *   before TCP connected is DOWNLOAD_CONNECT (retried), during the handshake DOWNLOAD_TLS (not retried:
 *   wrong CA, name mismatch, expired, unsupported protocol), after it DOWNLOAD_CONNECT (phase "headers").
 *   Should SDK internals change so the phases cannot be seen, everything is DOWNLOAD_CONNECT: retried, never
 *   wrongly final.
 *
 * `read(maxBytes)` returns at most that many bytes; the rest of the fragment stays at the queue's front (a
 * view on the same bytes, counted against `maxBufferedBytes`).
 *
 * What it enforces, before a byte reaches the caller (pure checks in src/device/http-range.ts): an https URL
 * whose host — and every redirect's — is exactly on `allowedHosts` (DOWNLOAD_URL_INVALID,
 * DOWNLOAD_HOST_NOT_ALLOWED, before connecting); at most `maxRedirects` redirects (DOWNLOAD_REDIRECT_REFUSED);
 * 200 or 206 only; a 206's Content-Range against the requested offset; a strong ETag only; a body from
 * offset 0 starting with 0xE9 (DOWNLOAD_NOT_AN_IMAGE); no more bytes than announced (DOWNLOAD_TOO_LONG:
 * caught when they arrive with the last announced ones — later ones are dropped with the connection).
 *
 * Timeouts (Timer): `connectTimeoutMs` covers DNS + TCP + the TLS handshake (seconds of RSA in JavaScript on
 * an ESP32) + the response headers, per hop; `idleTimeoutMs` the wait for the next body byte. Both →
 * DOWNLOAD_TIMEOUT with `detail.phase` ("connect", "tls", "headers", "body").
 *
 * Type-checked by tsconfig.device.json and mcconfig; its logic runs on Node with faked SDK modules
 * (test/device/https-moddable.test.ts). Not run against a server on the device or in mcsim yet (docs/moddable.md).
 */
import { Request } from "http";
import SecureSocket from "securesocket";
import Timer from "timer";
import { DOWNLOAD_CODES } from "../core/download-errors";
import { ShadowOtaError } from "../core/errors";
import type { ByteSource, ByteSourceRequest, ByteSourceResponse } from "../ports/byte-source";
import {
  checkResponseHead, ESP_IMAGE_MAGIC, httpsTarget, isStrongEtag, redirectUrl, REDIRECT_STATUSES, requestHeaders,
  type HttpsTarget, type ResponseHead,
} from "./http-range";

export interface ModdableHttpsOptions {
  /** DER bytes of the CA the server's chain must end in (pinned); a `Resource` works as is. */
  ca: ByteBuffer;
  /** Exact host names or IPv4 addresses the URL and every redirect may name (case-insensitive). */
  allowedHosts: readonly string[];
  /** DNS + TCP + TLS + response headers, per request (default 30000 ms). */
  connectTimeoutMs?: number;
  /** Longest wait for the next body byte (default 20000 ms). */
  idleTimeoutMs?: number;
  /** Redirects followed (default 3). */
  maxRedirects?: number;
  /** Body bytes held for a slow reader before the download is cut (default 32 KiB; see the header). */
  maxBufferedBytes?: number;
  /** User-Agent header (default "shadow-ota"). */
  userAgent?: string;
}

/** Request callback messages (http.js). Numbers rather than `Request.responseFragment` and friends: the
 *  SDK's typings/http.d.ts types responseFragment as 3 and error as -1, while http.js uses 4 and -2. */
const MSG_STATUS = 1;
const MSG_HEADER = 2;
const MSG_HEADERS_COMPLETE = 3;
const MSG_FRAGMENT = 4;
const MSG_COMPLETE = 5;
/** The raw socket's "connected" message (modules/network/socket: kSocketMsgConnect). */
const SOCKET_CONNECTED = 1;
/** Header lines kept per response; a server sending more is refused (memory, not time, is the limit). */
const MAX_HEADERS = 64;
const MAX_HEADER_BYTES = 8192;

type Detail = Record<string, string | number | boolean | null>;
type Phase = "connect" | "tls" | "headers";

function fail(code: string, message: string, detail: Detail): ShadowOtaError {
  return new ShadowOtaError(code, message, { detail });
}

function positive(name: string, v: number | undefined, dflt: number, min = 1): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${name} must be an integer >= ${min}, not ${v}`);
  return v;
}

/** What the socket wrapper tells the exchange. */
interface SocketWatch {
  tcpConnected: boolean;
  /** The SecureSocket, for its `handshaking` flag (true until the handshake is done, then deleted). */
  socket: object | undefined;
}

/** The dictionary Request hands to its `Socket` class, with our watch added (the SDK ignores unknown keys). */
type WatchedDictionary = ConstructorParameters<typeof SecureSocket>[0] & { watch?: SocketWatch };

/**
 * SecureSocket that records when its TCP connection is up. It wraps the callback SecureSocket puts on its
 * raw socket (`sock`, securesocket.js): the native socket looks `callback` up on every event
 * (modules/network/socket/lwip/modSocket.c), so the wrapper sees "connected" and passes everything on.
 */
class WatchedSecureSocket extends SecureSocket {
  constructor(dictionary: WatchedDictionary) {
    super(dictionary);
    const watch = dictionary.watch;
    if (watch === undefined) return;
    watch.socket = this;
    const raw = (this as unknown as { sock?: { callback?: unknown } }).sock;
    const inner = raw?.callback;
    if (raw === undefined || typeof inner !== "function") return;
    raw.callback = (message: number, value?: number): unknown => {
      if (message === SOCKET_CONNECTED) watch.tcpConnected = true;
      return (inner as (m: number, v?: number) => unknown).call(raw, message, value);
    };
  }
}

interface Settings {
  readonly ca: ByteBuffer;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxBufferedBytes: number;
  readonly userAgent: string;
}

export class ModdableHttpsSource implements ByteSource {
  readonly #settings: Settings;
  readonly #allowed: ReadonlySet<string>;
  readonly #maxRedirects: number;

  /** Throws TypeError/RangeError for options that would trust nothing or make no sense. */
  constructor(options: ModdableHttpsOptions) {
    if (options.ca === undefined || options.ca === null) throw new TypeError("ModdableHttpsSource needs `ca`: it would trust nothing");
    if (!Array.isArray(options.allowedHosts)) throw new TypeError("allowedHosts must be an array of host names");
    this.#allowed = new Set(options.allowedHosts.map((h) => {
      if (typeof h !== "string" || h.length === 0) throw new TypeError("allowedHosts holds a non-string or empty entry");
      return h.toLowerCase();
    }));
    this.#maxRedirects = positive("maxRedirects", options.maxRedirects, 3, 0);
    this.#settings = {
      ca: options.ca,
      connectTimeoutMs: positive("connectTimeoutMs", options.connectTimeoutMs, 30_000),
      idleTimeoutMs: positive("idleTimeoutMs", options.idleTimeoutMs, 20_000),
      maxBufferedBytes: positive("maxBufferedBytes", options.maxBufferedBytes, 32 * 1024, 1024),
      userAgent: options.userAgent ?? "shadow-ota",
    };
  }

  async open(request: ByteSourceRequest): Promise<ByteSourceResponse> {
    const offset = request.offset;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`offset must be a non-negative integer, not ${offset}`);
    if (request.etag !== undefined && !isStrongEtag(request.etag)) {
      throw new TypeError(`etag must be a strong entity tag ("..."), not ${String(request.etag)}`);
    }
    let target = this.#check(request.url);
    for (let hop = 0; ; hop++) { // bounded: at most maxRedirects + 1 turns
      const result = await new Exchange(target, offset, request.etag, this.#settings).head;
      if (result.kind === "response") return result.response;
      const { status, location } = result;
      if (location === undefined || location === "") {
        throw fail(DOWNLOAD_CODES.DOWNLOAD_REDIRECT_REFUSED, `${status} without a Location from ${target.host}`, { status, location: null });
      }
      if (hop >= this.#maxRedirects) {
        throw fail(DOWNLOAD_CODES.DOWNLOAD_REDIRECT_REFUSED, `more than ${this.#maxRedirects} redirects`, { status, location: location.slice(0, 200) });
      }
      const next = redirectUrl(location, target);
      if (next === undefined) {
        throw fail(DOWNLOAD_CODES.DOWNLOAD_REDIRECT_REFUSED, `redirect to ${JSON.stringify(location.slice(0, 200))} (only https URLs and absolute paths are followed)`,
          { status, location: location.slice(0, 200) });
      }
      target = this.#check(next);
    }
  }

  #check(url: unknown): HttpsTarget {
    const target = httpsTarget(url);
    if (!this.#allowed.has(target.host)) {
      throw fail(DOWNLOAD_CODES.DOWNLOAD_HOST_NOT_ALLOWED, `host ${target.host} is not on the download allow-list`, { host: target.host });
    }
    return target;
  }
}

type HeadResult =
  | { kind: "response"; response: ByteSourceResponse }
  | { kind: "redirect"; status: number; location: string | undefined };

/**
 * One request on its own connection: `head` settles once the headers are in; after a final response the
 * exchange is also the body (ByteSourceResponse), fed by the Request's callback and pulled by read().
 */
class Exchange implements ByteSourceResponse {
  readonly head: Promise<HeadResult>;
  status = 0;
  start = 0;
  total: number | undefined;
  etag: string | undefined;

  readonly #target: HttpsTarget;
  readonly #offset: number;
  readonly #settings: Settings;
  readonly #watch: SocketWatch = { tcpConnected: false, socket: undefined };
  #request: Request | undefined;
  #headResolve!: (r: HeadResult) => void;
  #headReject!: (e: unknown) => void;
  #headSettled = false;
  #statusSeen = false;
  readonly #headers: Record<string, string[]> = {};
  #headerCount = 0;
  #headerBytes = 0;
  #timer: Timer | undefined;

  // The body, once the head passed.
  #meta: ResponseHead | undefined;
  readonly #queue: Uint8Array[] = [];
  #buffered = 0;
  #received = 0;
  #checkMagic = false;
  /** The SDK said the body is complete and every check passed. */
  #complete = false;
  /** read() has resolved undefined. */
  #delivered = false;
  /** The failure reads report (after the queue, unless it was dropped). */
  #error: ShadowOtaError | undefined;
  #pending: { resolve(v: Uint8Array | undefined): void; reject(e: unknown): void; maxBytes: number | undefined } | undefined;

  constructor(target: HttpsTarget, offset: number, etag: string | undefined, settings: Settings) {
    this.#target = target;
    this.#offset = offset;
    this.#settings = settings;
    this.head = new Promise<HeadResult>((resolve, reject) => {
      this.#headResolve = resolve;
      this.#headReject = reject;
    });
    const dictionary = {
      host: target.host,
      port: target.port,
      path: target.path,
      method: "GET",
      headers: requestHeaders(target, offset, etag, settings.userAgent),
      Socket: WatchedSecureSocket,
      secure: { protocolVersion: 0x303, certificate: settings.ca, verify: true, serverName: target.host },
      watch: this.#watch,
    };
    this.#timer = Timer.set(() => {
      this.#timer = undefined;
      const phase = this.#phase();
      this.#rejectHead(fail(DOWNLOAD_CODES.DOWNLOAD_TIMEOUT,
        `no ${phase === "headers" ? "response headers" : phase} within ${settings.connectTimeoutMs} ms from ${target.host}`,
        { phase, timeoutMs: settings.connectTimeoutMs }));
    }, settings.connectTimeoutMs);
    try {
      const request = new Request(dictionary);
      request.callback = (message: number, value?: unknown, value2?: unknown): void => this.#onMessage(message, value, value2);
      this.#request = request;
    } catch (e) {
      // The socket or the TLS session refused to start (no socket left, options the SDK rejects).
      this.#rejectHead(fail(DOWNLOAD_CODES.DOWNLOAD_CONNECT, `could not start a connection to ${target.host}: ${e instanceof Error ? e.message : String(e)}`,
        { errno: "START_FAILED", phase: "connect" }));
    }
  }

  // ------------------------------------------------------------------------------------------ the port

  read(maxBytes?: number): Promise<Uint8Array | undefined> {
    if (this.#pending !== undefined) return Promise.reject(new TypeError("read() while another read() is pending"));
    if (maxBytes !== undefined && !(Number.isSafeInteger(maxBytes) && maxBytes > 0)) {
      return Promise.reject(new RangeError(`read(maxBytes): maxBytes must be a positive integer, not ${maxBytes}`));
    }
    const chunk = this.#queue.shift();
    if (chunk !== undefined) {
      this.#buffered -= chunk.length;
      return Promise.resolve(this.#bounded(chunk, maxBytes));
    }
    if (this.#error !== undefined) return Promise.reject(this.#error);
    if (this.#complete) {
      this.#delivered = true;
      return Promise.resolve(undefined);
    }
    return new Promise((resolve, reject) => { this.#pending = { resolve, reject, maxBytes }; });
  }

  /** At most `maxBytes` of `chunk`; the rest goes back to the front of the queue (a view, no copy). */
  #bounded(chunk: Uint8Array, maxBytes: number | undefined): Uint8Array {
    if (maxBytes === undefined || chunk.length <= maxBytes) return chunk;
    const rest = chunk.subarray(maxBytes);
    this.#queue.unshift(rest);
    this.#buffered += rest.length;
    return chunk.subarray(0, maxBytes);
  }

  abort(): void {
    if (this.#error === undefined && !this.#delivered) {
      this.#fail(fail(DOWNLOAD_CODES.DOWNLOAD_ABORTED, "download aborted", {}), true);
    }
    this.#close();
  }

  // ------------------------------------------------------------------------------------------ the SDK's callback

  #onMessage(message: number, value: unknown, value2: unknown): void {
    if (this.#request === undefined) return; // closed
    if (message < 0) { this.#onError(message); return; }
    switch (message) {
      case MSG_STATUS:
        this.#statusSeen = true;
        this.status = typeof value === "number" && Number.isSafeInteger(value) ? value : 0;
        return;
      case MSG_HEADER:
        this.#onHeader(String(value), String(value2));
        return;
      case MSG_HEADERS_COMPLETE:
        this.#onHeadersComplete();
        return;
      case MSG_FRAGMENT:
        this.#onFragment(typeof value === "number" ? value : 0);
        return;
      case MSG_COMPLETE:
        this.#onComplete();
        return;
      default:
        return; // 0 (request body fragment) is never asked for: a GET has no body
    }
  }

  #onHeader(name: string, value: string): void {
    if (this.#headSettled) return;
    this.#headerCount++;
    this.#headerBytes += name.length + value.length;
    if (this.#headerCount > MAX_HEADERS || this.#headerBytes > MAX_HEADER_BYTES) {
      this.#rejectHead(fail(DOWNLOAD_CODES.DOWNLOAD_BAD_RESPONSE, `more than ${MAX_HEADERS} headers or ${MAX_HEADER_BYTES} bytes of them from ${this.#target.host}`,
        { errno: "MALFORMED_RESPONSE", phase: "headers", reason: "headers too large" }));
      return;
    }
    (this.#headers[name] ??= []).push(value);
  }

  #onHeadersComplete(): void {
    if (this.#headSettled) return;
    this.#clearTimer();
    const status = this.status;
    const where = `${this.#target.host}${this.#target.path.split("?")[0]}`;
    if (REDIRECT_STATUSES.includes(status)) {
      const locations = this.#headers["location"] ?? [];
      this.#settleHead({ kind: "redirect", status, location: locations.length === 1 ? locations[0] : undefined });
      this.#close();
      return;
    }
    let meta: ResponseHead;
    try {
      meta = checkResponseHead(status, this.#headers, this.#offset, where);
    } catch (e) {
      this.#rejectHead(e);
      return;
    }
    this.#meta = meta;
    this.start = meta.start;
    this.total = meta.total;
    this.etag = meta.etag;
    this.#checkMagic = meta.checkMagic;
    this.#armIdle();
    this.#settleHead({ kind: "response", response: this });
  }

  #onFragment(count: number): void {
    const request = this.#request;
    if (request === undefined || this.#meta === undefined || this.#error !== undefined || this.#complete || count <= 0) return;
    const got: ArrayBuffer | undefined = request.read(ArrayBuffer, count);
    if (got === undefined || got.byteLength === 0) return;
    const chunk = new Uint8Array(got);
    if (this.#checkMagic) {
      if (chunk[0] !== ESP_IMAGE_MAGIC) {
        this.#fail(fail(DOWNLOAD_CODES.DOWNLOAD_NOT_AN_IMAGE, `the body does not start with the ESP32 image magic 0xE9 (0x${chunk[0]!.toString(16).padStart(2, "0")})`,
          { contentType: this.#meta.contentType, firstByte: chunk[0]! }), true);
        return;
      }
      this.#checkMagic = false;
    }
    this.#received += chunk.length;
    const expected = this.#meta.expected;
    if (expected !== undefined) {
      // More than announced: in this fragment (chunked framing), or still waiting in the same delivery
      // (http.js stops a Content-Length body at its length and drops the rest with the connection).
      if (this.#received > expected || (this.#received === expected && request.read() > 0)) {
        this.#fail(fail(DOWNLOAD_CODES.DOWNLOAD_TOO_LONG, `the server sent more than the ${expected} bytes it announced`,
          { expected, received: this.#received }), true);
        return;
      }
    }
    this.#armIdle();
    const pending = this.#pending;
    if (pending !== undefined) {
      this.#pending = undefined;
      pending.resolve(this.#bounded(chunk, pending.maxBytes)); // a pending read means the queue was empty
      this.#checkBuffer(expected);
      return;
    }
    this.#queue.push(chunk);
    this.#buffered += chunk.length;
    this.#checkBuffer(expected);
  }

  #checkBuffer(expected: number | undefined): void {
    if (this.#buffered > this.#settings.maxBufferedBytes) {
      this.#fail(fail(DOWNLOAD_CODES.DOWNLOAD_OVERRUN,
        `the reader fell ${this.#buffered} bytes behind (limit ${this.#settings.maxBufferedBytes}); the SDK's socket cannot be paused, so the download stops here`,
        { expected: expected ?? null, received: this.#received, buffered: this.#buffered, limit: this.#settings.maxBufferedBytes }), false);
    }
  }

  #onComplete(): void {
    if (!this.#headSettled) {
      // http.js ends a response at once on a Transfer-Encoding it does not know, before headers complete.
      this.#rejectHead(fail(DOWNLOAD_CODES.DOWNLOAD_BAD_RESPONSE, `response from ${this.#target.host} ended before its headers did`,
        { errno: "MALFORMED_RESPONSE", phase: "headers", reason: "ended in the headers" }));
      return;
    }
    if (this.#meta === undefined || this.#error !== undefined || this.#complete) return;
    const expected = this.#meta.expected;
    if (expected !== undefined && this.#received < expected) {
      this.#truncated("the body ended early");
      return;
    }
    if (this.#checkMagic) {
      this.#fail(fail(DOWNLOAD_CODES.DOWNLOAD_NOT_AN_IMAGE, "empty body", { contentType: this.#meta.contentType }), true);
      return;
    }
    this.#complete = true;
    this.#clearTimer();
    this.#request = undefined; // http.js closes it after this callback
    const pending = this.#pending;
    if (pending !== undefined && this.#queue.length === 0) {
      this.#pending = undefined;
      this.#delivered = true;
      pending.resolve(undefined);
    }
  }

  #onError(message: number): void {
    if (!this.#headSettled) {
      const phase = this.#phase();
      const host = this.#target.host;
      if (phase === "tls") {
        this.#rejectHead(fail(DOWNLOAD_CODES.DOWNLOAD_TLS,
          `TLS with ${host} failed (certificate not from the pinned CA, name mismatch, dates or protocol; the SDK does not say which)`,
          { reason: "HANDSHAKE_FAILED" }));
      } else {
        this.#rejectHead(fail(DOWNLOAD_CODES.DOWNLOAD_CONNECT, `connection to ${host} failed (${phase}): socket message ${message}`,
          { errno: `SOCKET_${message === -1 ? "CLOSED" : "ERROR"}`, phase }));
      }
      return;
    }
    if (this.#complete || this.#error !== undefined) return;
    this.#truncated(`the connection failed (socket message ${message})`);
  }

  // ------------------------------------------------------------------------------------------ helpers

  /** Where a connection that has no response head yet stands. */
  #phase(): Phase {
    if (this.#statusSeen) return "headers";
    if (!this.#watch.tcpConnected) return "connect";
    const handshaking = (this.#watch.socket as { handshaking?: unknown } | undefined)?.handshaking;
    return handshaking === true ? "tls" : "headers";
  }

  #settleHead(result: HeadResult): void {
    if (this.#headSettled) return;
    this.#headSettled = true;
    this.#headResolve(result);
  }

  #rejectHead(e: unknown): void {
    if (this.#headSettled) return;
    this.#headSettled = true;
    this.#close();
    this.#headReject(e);
  }

  #truncated(why: string): void {
    const expected = this.#meta?.expected;
    this.#fail(fail(DOWNLOAD_CODES.DOWNLOAD_TRUNCATED, `${why} after ${this.#received} of ${expected ?? "an unknown number of"} bytes`,
      { expected: expected ?? null, received: this.#received }), false);
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
    this.#clearTimer();
    const request = this.#request;
    this.#request = undefined;
    // Request.close() closes the SecureSocket (and its TCP socket); http.js checks for it after every callback.
    request?.close();
  }

  #armIdle(): void {
    this.#clearTimer();
    const ms = this.#settings.idleTimeoutMs;
    this.#timer = Timer.set(() => {
      this.#timer = undefined;
      if (this.#complete || this.#error !== undefined) return;
      this.#fail(fail(DOWNLOAD_CODES.DOWNLOAD_TIMEOUT, `no body byte for ${ms} ms after ${this.#received} bytes`,
        { phase: "body", timeoutMs: ms, received: this.#received }), false);
    }, ms);
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) Timer.clear(this.#timer);
    this.#timer = undefined;
  }
}
