/**
 * The local cloud's firmware blob server: HTTPS on loopback (server certificate from the local CA, like the
 * brokers'), serving `{dir}/{container}/{name}` at `https://{host}:{port}/{container}/{name}` — the stand-in
 * for an S3 bucket behind the AWS seed's `{base URL}1.0.5.bin` and for the Azure seed's blob container
 * `{container URL}/v1_1_0.bin` (names from src/core/firmware-url.ts).
 *
 * HTTP (RFC 9110): GET and HEAD; a strong ETag (the quoted first 32 hex digits of the content's SHA-256);
 * Content-Length, or chunked transfer when configured; Accept-Ranges: bytes; one range per request
 * (`bytes=N-`, `bytes=N-M`, `bytes=-K`) answered 206 with Content-Range, 416 with `Content-Range: bytes
 * *\/size` when it starts at or past the end; several ranges or a malformed Range header are ignored (200,
 * §14.2); `If-Range` with anything other than the current ETag (a date, a weak or an old tag) sends the
 * whole blob (200). Other methods get 405, other paths 404.
 *
 * Faults, for testing download adapters and the OTA controller: `setFault(path, fault, when)` arms a
 * BlobFault for requests (GET or HEAD) to one blob path ("firmware/1.0.5.bin"): by default the next one;
 * `when.after` lets that many through first, `when.times` applies it to that many ("always": every one).
 * Rules are checked in the order they were set; the first whose window covers a request applies, and
 * every rule counts every request to its path. A BlobFault can cut the connection or stall after N body
 * bytes of the response, answer a status or a captive-portal HTML page, redirect, send bytes past the
 * announced length, serve another blob's bytes (and ETag), switch to chunked, or throttle. Throttling can
 * also be set for the whole server (`bytesPerSecond`).
 *
 * Observers: `onPublish(listener)` calls the listener with each blob's BlobInfo once publish() has stored it
 * (renamed into place), never for a refused one; a listener that throws is logged (`blobs.listener-threw`)
 * and publish() still returns. The fleet view (fleet-events.ts) sees new releases this way.
 *
 * Not here: authentication (the blobs are public, like a release bucket; publishing goes through the
 * admin API, src/sim/admin-http.ts), SAS tokens, multi-range bodies, compression.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import type { Socket } from "node:net";
import { listenOn } from "./listen";
import * as path from "node:path";
import { ShadowOtaError } from "../core/errors";
import { writeFileAtomic } from "../node/atomic-file";
import { silentLog, type Log } from "../ports/log";
import { CLOUD_CODES } from "./cloud-errors";

/** Container and blob names: one path segment, no leading dot (so never "." or ".."). */
export const BLOB_NAME_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._+-]{0,127}$/;

/** Largest blob accepted (16 MiB: the largest ESP32 app partition). */
export const MAX_BLOB_SIZE = 16 * 1024 * 1024;

/** What a fault does to a response. Fields combine where that makes sense (e.g. `serve` + `cutAtByte`);
 *  `redirect` wins over `status`, which wins over `html`, which wins over everything about the body. */
export interface BlobFault {
  /** Answer this status (100-599 except 200, 206, 416 and 3xx; a short text body). */
  status?: number;
  /** Answer 200 text/html with this page (true: a stock captive-portal page), like a hotel Wi-Fi portal. */
  html?: boolean | string;
  /** Answer `redirectStatus` (default 302) with this Location. */
  redirect?: string;
  redirectStatus?: 301 | 302 | 303 | 307 | 308;
  /** Serve this other blob ("container/name"), with its ETag, under the requested path. */
  serve?: string;
  /** Send this many body bytes of the response, then close the connection (TLS close and FIN, no more). */
  cutAtByte?: number;
  /** Send this many body bytes of the response, then nothing; the connection stays open (until the client
   *  or `close()` ends it). */
  stallAtByte?: number;
  /** After the whole body, this many bytes more than Content-Length (or Content-Range) announced; they go
   *  out in the same write as the body's last bytes. */
  extraBytes?: number;
  /** Chunked transfer encoding, no Content-Length. */
  chunked?: boolean;
  /** Throttle this response to about this many body bytes per second. */
  bytesPerSecond?: number;
}

export interface FaultWindow {
  /** Requests to the path let through before the fault applies (default 0). */
  after?: number;
  /** How many requests it applies to (default 1; "always": every one from then on). */
  times?: number | "always";
}

export interface BlobInfo {
  readonly container: string;
  readonly name: string;
  /** "container/name", the URL path without its leading "/". */
  readonly path: string;
  readonly size: number;
  /** Strong ETag, quoted. */
  readonly etag: string;
  readonly url: string;
}

/** One request as the server saw it (the last 1000 are kept in `requests`). */
export interface BlobRequestRecord {
  readonly method: string;
  readonly path: string;
  readonly range: string | undefined;
  readonly ifRange: string | undefined;
  readonly status: number;
  /** True when a fault rule applied. */
  readonly faulted: boolean;
  /** Body bytes written to the connection so far (grows while the response is being sent). */
  bytesSent: number;
}

export interface BlobServerOptions {
  /** Root directory: blobs live in `{dir}/{container}/{name}`. Created (0700) when missing. */
  dir: string;
  /** Server certificate and key (PEM), e.g. LocalPki.server(). */
  cert: string;
  key: string;
  /** The CA certificate clients must trust (exposed as `caPem`). */
  ca: string;
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 0: any free port). */
  port?: number;
  /** Throttle every response to about this many body bytes per second (default: unthrottled). */
  bytesPerSecond?: number;
  /** Chunked transfer (no Content-Length) for every response (default false). */
  chunked?: boolean;
  /** A connection whose TLS handshake has not finished by then is closed (default 10 000 ms). */
  handshakeTimeoutMs?: number;
  log?: Log;
}

const MAX_RECORDS = 1000;
const SLICE = 64 * 1024;
/** With extraBytes, the body's last bytes that share one write (so one TLS record) with the extra ones. */
const TAIL = 1024;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

interface FaultRule {
  readonly fault: BlobFault;
  readonly after: number;
  readonly times: number;
  seen: number;
}

interface Loaded {
  readonly bytes: Buffer;
  readonly etag: string;
  readonly key: string;
}

function badFault(reason: string): never {
  throw new ShadowOtaError(CLOUD_CODES.CLOUD_BLOB_FAULT_INVALID, `invalid blob fault: ${reason}`, { detail: { reason } });
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Checks a fault that came from outside (admin API JSON or a test); returns it typed. */
export function parseBlobFault(v: unknown): BlobFault {
  if (typeof v !== "object" || v === null || Array.isArray(v)) badFault("a fault must be an object");
  const o = v as Record<string, unknown>;
  const known = ["status", "html", "redirect", "redirectStatus", "serve", "cutAtByte", "stallAtByte", "extraBytes", "chunked", "bytesPerSecond"];
  for (const k of Object.keys(o)) if (!known.includes(k)) badFault(`unknown field ${k}`);
  if (Object.keys(o).length === 0) badFault("a fault needs at least one field");
  const s = o["status"];
  if (s !== undefined && (!Number.isInteger(s) || (s as number) < 100 || (s as number) > 599 ||
    [200, 206, 416].includes(s as number) || REDIRECTS.has(s as number))) badFault("status must be 100-599, not 200, 206, 416 or a redirect");
  if (o["html"] !== undefined && typeof o["html"] !== "boolean" && typeof o["html"] !== "string") badFault("html must be a boolean or a string");
  if (o["redirect"] !== undefined && (typeof o["redirect"] !== "string" || o["redirect"].length === 0 || /[\r\n]/.test(o["redirect"]))) badFault("redirect must be a URL");
  if (o["redirectStatus"] !== undefined && !REDIRECTS.has(o["redirectStatus"] as number)) badFault("redirectStatus must be 301, 302, 303, 307 or 308");
  if (o["serve"] !== undefined) splitBlobPath(o["serve"]);
  for (const k of ["cutAtByte", "stallAtByte", "extraBytes"]) if (o[k] !== undefined && !isCount(o[k])) badFault(`${k} must be a non-negative integer`);
  if (o["chunked"] !== undefined && typeof o["chunked"] !== "boolean") badFault("chunked must be a boolean");
  const bps = o["bytesPerSecond"];
  if (bps !== undefined && !(isCount(bps) && bps > 0)) badFault("bytesPerSecond must be a positive integer");
  if (o["extraBytes"] !== undefined && o["chunked"] === true) badFault("extraBytes needs a length to exceed: not with chunked");
  return o as BlobFault;
}

function checkName(name: unknown, what: string): string {
  if (typeof name !== "string" || !BLOB_NAME_PATTERN.test(name)) {
    throw new ShadowOtaError(CLOUD_CODES.CLOUD_BLOB_NAME_INVALID, `${what} ${JSON.stringify(name)} is not [A-Za-z0-9_-][A-Za-z0-9._+-]{0,127}`,
      { detail: { name: typeof name === "string" ? name.slice(0, 200) : null } });
  }
  return name;
}

/** "container/name" → [container, name]; throws CLOUD_BLOB_NAME_INVALID. */
export function splitBlobPath(p: unknown): [string, string] {
  const parts = typeof p === "string" ? p.split("/") : [];
  if (parts.length !== 2) {
    throw new ShadowOtaError(CLOUD_CODES.CLOUD_BLOB_NAME_INVALID, `blob path ${JSON.stringify(p)} is not container/name`,
      { detail: { name: typeof p === "string" ? p.slice(0, 200) : null } });
  }
  return [checkName(parts[0], "container"), checkName(parts[1], "blob name")];
}

/** The strong ETag of `bytes`: the quoted first 32 hex digits of its SHA-256. */
export function blobEtag(bytes: Uint8Array): string {
  return `"${crypto.createHash("sha256").update(bytes).digest("hex").slice(0, 32)}"`;
}

type ByteRange = { start: number; end: number } | "unsatisfiable" | undefined;

/** A single `bytes=` range against `size` (RFC 9110 §14.1.2); undefined: ignore the header. */
export function parseRange(header: string | undefined, size: number): ByteRange {
  if (header === undefined) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (m === null) return undefined; // several ranges, another unit, or garbage: ignored
  const [, a, b] = m as unknown as [string, string, string];
  if (a === "" && b === "") return undefined;
  if (a === "") {
    const k = Number(b);
    if (k === 0) return "unsatisfiable";
    return size === 0 ? "unsatisfiable" : { start: Math.max(0, size - k), end: size - 1 };
  }
  const start = Number(a);
  const end = b === "" ? size - 1 : Math.min(Number(b), size - 1);
  if (b !== "" && Number(b) < start) return undefined; // invalid range-spec: ignored
  if (start >= size) return "unsatisfiable";
  return { start, end };
}

const CAPTIVE_PORTAL = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body><h1>Welcome to Hotel Wi-Fi</h1><p>Accept the terms to continue.</p></body></html>\n";

export class BlobServer {
  readonly dir: string;
  readonly host: string;
  readonly port: number;
  /** `https://{host}:{port}/` (IPv6 hosts in brackets). */
  readonly url: string;
  /** The CA that signed the server certificate (what a client must trust). */
  readonly caPem: string;
  /** Default throttle for every response (undefined: none). */
  bytesPerSecond: number | undefined;
  /** Chunked transfer for every response. */
  chunked: boolean;
  /** The last requests, oldest first (at most 1000). */
  readonly requests: BlobRequestRecord[] = [];
  readonly #server: https.Server;
  readonly #sockets = new Set<Socket>();
  readonly #rules = new Map<string, FaultRule[]>();
  readonly #cache = new Map<string, Loaded>();
  readonly #log: Log;
  readonly #listeners = new Set<(info: BlobInfo) => void>();
  #closed = false;

  private constructor(o: BlobServerOptions, server: https.Server, host: string, port: number) {
    this.dir = path.resolve(o.dir);
    this.host = host;
    this.port = port;
    this.url = `https://${host.includes(":") ? `[${host}]` : host}:${port}/`;
    this.caPem = o.ca;
    this.bytesPerSecond = o.bytesPerSecond;
    this.chunked = o.chunked ?? false;
    this.#server = server;
    this.#log = o.log ?? silentLog;
  }

  /** Starts listening. Throws the listen error (EADDRINUSE …) as is. */
  static async start(o: BlobServerOptions): Promise<BlobServer> {
    if (o.bytesPerSecond !== undefined && !(Number.isSafeInteger(o.bytesPerSecond) && o.bytesPerSecond > 0)) {
      throw new RangeError("bytesPerSecond must be a positive integer");
    }
    fs.mkdirSync(o.dir, { recursive: true, mode: 0o700 });
    const host = o.host ?? "127.0.0.1";
    const handshakeTimeout = o.handshakeTimeoutMs ?? 10_000;
    if (!Number.isSafeInteger(handshakeTimeout) || handshakeTimeout <= 0) throw new RangeError("handshakeTimeoutMs must be a positive integer");
    const server = https.createServer({ cert: o.cert, key: o.key, minVersion: "TLSv1.2", handshakeTimeout });
    const self = new BlobServer(o, server, host, (await listenOn(server, o.port ?? 0, host)).port);
    server.on("secureConnection", (socket: Socket) => {
      self.#sockets.add(socket);
      socket.once("close", () => self.#sockets.delete(socket));
    });
    // A client refusing our certificate is that client's failure. The socket must still be destroyed here:
    // with a tlsClientError listener Node leaves it open, even after its handshake timeout, and idle TCP
    // connections would hold their descriptors forever.
    server.on("tlsClientError", (_err, socket) => { socket.destroy(); });
    server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
      self.#handle(req, res).catch((e: unknown) => {
        self.#log.log("error", "blobs.request.failed", { url: req.url ?? "", error: String(e) });
        res.destroy();
      });
    });
    return self;
  }

  /** The base URL of a container, ending with "/": `https://127.0.0.1:PORT/firmware/`. */
  baseUrl(container = "firmware"): string {
    return `${this.url}${checkName(container, "container")}/`;
  }

  /** Stores (or replaces) a blob, atomically. Throws CLOUD_BLOB_NAME_INVALID, CLOUD_BLOB_TOO_LARGE. */
  publish(container: string, name: string, bytes: Uint8Array): BlobInfo {
    checkName(container, "container");
    checkName(name, "blob name");
    if (bytes.length > MAX_BLOB_SIZE) {
      throw new ShadowOtaError(CLOUD_CODES.CLOUD_BLOB_TOO_LARGE, `blob of ${bytes.length} bytes is over ${MAX_BLOB_SIZE}`, { detail: { limit: MAX_BLOB_SIZE, size: bytes.length } });
    }
    const dir = path.join(this.dir, container);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    // The temporary file starts with a dot, so list() and GET never see it (BLOB_NAME_PATTERN).
    writeFileAtomic(path.join(dir, name), bytes, { mode: 0o644, tmp: path.join(dir, `.${name}.${process.pid}.tmp`) });
    const info = this.info(container, name)!;
    for (const l of [...this.#listeners]) {
      try {
        l(info);
      } catch (e) {
        this.#log.log("error", "blobs.listener-threw", { path: info.path, message: e instanceof Error ? e.message : String(e) });
      }
    }
    return info;
  }

  /** Calls `listener` with every blob published from now on (see the header); returns the unsubscribe function. */
  onPublish(listener: (info: BlobInfo) => void): () => void {
    const own = (info: BlobInfo): void => listener(info); // one entry per call, even for the same function
    this.#listeners.add(own);
    return () => { this.#listeners.delete(own); };
  }

  /** A blob's size, ETag and URL; undefined when there is none. */
  info(container: string, name: string): BlobInfo | undefined {
    const loaded = this.#load(`${checkName(container, "container")}/${checkName(name, "blob name")}`);
    if (loaded === undefined) return undefined;
    return { container, name, path: `${container}/${name}`, size: loaded.bytes.length, etag: loaded.etag, url: `${this.url}${container}/${name}` };
  }

  /** Every blob, sorted by path. */
  list(): BlobInfo[] {
    const out: BlobInfo[] = [];
    for (const c of fs.readdirSync(this.dir).sort()) {
      if (!BLOB_NAME_PATTERN.test(c) || !fs.statSync(path.join(this.dir, c)).isDirectory()) continue;
      for (const n of fs.readdirSync(path.join(this.dir, c)).sort()) {
        if (!BLOB_NAME_PATTERN.test(n)) continue;
        const i = this.info(c, n);
        if (i !== undefined) out.push(i);
      }
    }
    return out;
  }

  /** Deletes a blob. Throws CLOUD_BLOB_NOT_FOUND when there is none. */
  remove(container: string, name: string): void {
    const p = `${checkName(container, "container")}/${checkName(name, "blob name")}`;
    const file = path.join(this.dir, container, name);
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) {
      throw new ShadowOtaError(CLOUD_CODES.CLOUD_BLOB_NOT_FOUND, `no blob ${p}`, { detail: { path: p } });
    }
    fs.rmSync(file);
    this.#cache.delete(p);
  }

  /**
   * Arms `fault` for requests to `blobPath` ("container/name"; the blob need not exist yet). Throws
   * CLOUD_BLOB_NAME_INVALID or CLOUD_BLOB_FAULT_INVALID.
   */
  setFault(blobPath: string, fault: BlobFault, when: FaultWindow = {}): void {
    splitBlobPath(blobPath);
    const checked = parseBlobFault(fault);
    const after = when.after ?? 0;
    if (!isCount(after)) badFault("after must be a non-negative integer");
    const times = when.times === "always" ? Number.POSITIVE_INFINITY : when.times ?? 1;
    if (times !== Number.POSITIVE_INFINITY && !(isCount(times) && times > 0)) badFault('times must be a positive integer or "always"');
    const rules = this.#rules.get(blobPath) ?? [];
    rules.push({ fault: { ...checked }, after, times, seen: 0 });
    this.#rules.set(blobPath, rules);
  }

  /** Drops the armed faults of one path, or of every path. */
  clearFaults(blobPath?: string): void {
    if (blobPath === undefined) this.#rules.clear();
    else this.#rules.delete(blobPath);
  }

  /** The recorded requests to one path. */
  requestsFor(blobPath: string): BlobRequestRecord[] {
    return this.requests.filter((r) => r.path === blobPath);
  }

  /** Stops listening and ends every connection (stalled ones too). Safe twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    this.#server.closeAllConnections();
    await closed;
  }

  #load(p: string): Loaded | undefined {
    const file = path.join(this.dir, ...p.split("/"));
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
    if (!st.isFile()) return undefined;
    const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
    const cached = this.#cache.get(p);
    if (cached !== undefined && cached.key === key) return cached;
    const bytes = fs.readFileSync(file);
    const loaded = { bytes, etag: blobEtag(bytes), key };
    this.#cache.set(p, loaded);
    return loaded;
  }

  #takeFault(p: string): BlobFault | undefined {
    const rules = this.#rules.get(p);
    if (rules === undefined) return undefined;
    let chosen: BlobFault | undefined;
    for (const r of rules) {
      r.seen++;
      if (chosen === undefined && r.seen > r.after && r.seen <= r.after + r.times) chosen = r.fault;
    }
    const live = rules.filter((r) => r.seen < r.after + r.times);
    if (live.length === 0) this.#rules.delete(p);
    else this.#rules.set(p, live);
    return chosen;
  }

  #record(r: BlobRequestRecord): void {
    this.requests.push(r);
    if (this.requests.length > MAX_RECORDS) this.requests.splice(0, this.requests.length - MAX_RECORDS);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? "GET";
    const rawPath = (req.url ?? "/").split("?")[0]!;
    let parts: string[];
    try {
      parts = rawPath.split("/").slice(1).map(decodeURIComponent);
    } catch {
      parts = [];
    }
    const p = parts.length === 2 && parts.every((x) => BLOB_NAME_PATTERN.test(x)) ? `${parts[0]}/${parts[1]}` : undefined;
    const range = req.headers.range;
    const ifRange = typeof req.headers["if-range"] === "string" ? req.headers["if-range"] : undefined;
    const fault = p === undefined ? undefined : this.#takeFault(p);
    let entry: BlobRequestRecord | undefined;
    const record = (status: number): void => {
      entry = { method, path: p ?? rawPath, range, ifRange, status, faulted: fault !== undefined, bytesSent: 0 };
      this.#record(entry);
    };
    const text = (status: number, body: string, headers: http.OutgoingHttpHeaders = {}): void => {
      record(status);
      res.writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body), ...headers });
      res.end(method === "HEAD" ? undefined : body);
    };

    if (method !== "GET" && method !== "HEAD") return text(405, "method not allowed\n", { allow: "GET, HEAD" });
    if (p === undefined) return text(404, "not found\n");
    if (fault?.redirect !== undefined) return text(fault.redirectStatus ?? 302, `see ${fault.redirect}\n`, { location: fault.redirect });
    if (fault?.status !== undefined) return text(fault.status, `${fault.status} ${http.STATUS_CODES[fault.status] ?? ""}\n`);
    if (fault?.html !== undefined && fault.html !== false) {
      const page = typeof fault.html === "string" ? fault.html : CAPTIVE_PORTAL;
      return text(200, page, { "content-type": "text/html; charset=utf-8" });
    }

    const loaded = this.#load(fault?.serve ?? p);
    if (loaded === undefined) return text(404, "not found\n");
    const size = loaded.bytes.length;
    const useRange = range !== undefined && (ifRange === undefined || ifRange === loaded.etag);
    const r = useRange ? parseRange(range, size) : undefined;
    const headers: http.OutgoingHttpHeaders = {
      "content-type": "application/octet-stream", etag: loaded.etag, "accept-ranges": "bytes", "cache-control": "no-store",
    };
    if (r === "unsatisfiable") return text(416, "range not satisfiable\n", { "content-range": `bytes */${size}`, etag: loaded.etag });
    const status = r === undefined ? 200 : 206;
    const body = r === undefined ? loaded.bytes : loaded.bytes.subarray(r.start, r.end + 1);
    if (r !== undefined) headers["content-range"] = `bytes ${r.start}-${r.end}/${size}`;
    const chunked = fault?.chunked ?? this.chunked;
    if (!chunked) headers["content-length"] = body.length;
    record(status);
    if (method === "HEAD") {
      res.writeHead(status, headers);
      res.end();
      return;
    }
    const socket = req.socket;
    const bps = fault?.bytesPerSecond ?? this.bytesPerSecond;
    const extra = fault?.extraBytes ?? 0;
    if (extra > 0) {
      // Past Content-Length: Node's ServerResponse refuses that, so this response is written raw.
      let head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n`;
      for (const [k, v] of Object.entries(headers)) head += `${k}: ${String(v)}\r\n`;
      socket.write(`${head}connection: close\r\n\r\n`);
      const tail = Math.min(TAIL, body.length);
      if (!(await this.#pump(socket, socket, body.subarray(0, body.length - tail), bps, entry!))) return;
      socket.end(Buffer.concat([body.subarray(body.length - tail), Buffer.alloc(extra, 0x5a)]));
      return;
    }
    res.writeHead(status, headers);
    res.flushHeaders(); // so a cut or stall at byte 0 still sends the headers
    const cut = fault?.cutAtByte;
    const stall = fault?.stallAtByte;
    const limit = Math.min(body.length, cut ?? body.length, stall ?? body.length);
    if (!(await this.#pump(res, socket, body.subarray(0, limit), bps, entry!))) return;
    if (cut !== undefined && cut < body.length) {
      socket.end(); // flushes (and uncorks) what was written, then closes: the client has exactly `cut` bytes
      return;
    }
    if (stall !== undefined && stall < body.length) return; // nothing more; close() ends the socket
    res.end();
  }

  /** Writes `bytes` in slices (throttled when `bps`), waiting for drain; false when the socket closed. */
  async #pump(out: NodeJS.WritableStream, socket: Socket, bytes: Uint8Array, bps: number | undefined, entry: BlobRequestRecord): Promise<boolean> {
    const slice = bps === undefined ? SLICE : Math.max(1, Math.min(SLICE, Math.floor(bps / 20)));
    for (let sent = 0; sent < bytes.length;) { // ends: `sent` grows by at least 1 each turn
      if (socket.destroyed || this.#closed) return false;
      const n = Math.min(slice, bytes.length - sent);
      const ok = out.write(bytes.subarray(sent, sent + n));
      sent += n;
      entry.bytesSent = sent;
      if (!ok) {
        const open = await new Promise<boolean>((resolve) => {
          const done = (v: boolean): void => { out.removeListener("drain", onDrain); socket.off("close", onClose); resolve(v); };
          const onDrain = (): void => done(true);
          const onClose = (): void => done(false);
          out.once("drain", onDrain);
          socket.once("close", onClose);
        });
        if (!open) return false;
      }
      if (bps !== undefined) await new Promise((r) => setTimeout(r, (n * 1000) / bps));
    }
    return !socket.destroyed;
  }
}
