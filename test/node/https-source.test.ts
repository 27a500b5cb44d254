/**
 * HttpsByteSource (src/node/https-source.ts) against the local cloud's blob server (src/sim/blob-server.ts)
 * over real TLS on 127.0.0.1, with certificates from a local CA made at test time: whole and resumed
 * downloads, If-Range after a change, chunked bodies, every TLS refusal (other CA, other host name,
 * expired), URL and redirect rules, statuses, HTML pages, truncated / too long / stalled bodies, abort.
 * A few malformed answers no honest server gives (bad Content-Range, weak ETag, silent TCP peer) come from
 * a raw TLS or TCP server in this file. Each test asserts the DOWNLOAD_* code. No wall-clock assertions:
 * the adapter's own timeouts are set short where a test waits for one.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as tls from "node:tls";
import { DOWNLOAD_CODES, isRetryableDownloadError } from "../../src/core/download-errors";
import type { ShadowOtaError } from "../../src/core/errors";
import { HttpsByteSource, type HttpsByteSourceOptions } from "../../src/node/https-source";
import type { ByteSourceResponse } from "../../src/ports/byte-source";
import { BlobServer } from "../../src/sim/blob-server";
import { LocalPki } from "../../src/sim/pki";
import { rejection } from "../core/error-of";

jest.setTimeout(60_000);

let dir: string;
let pki: LocalPki;
let server: BlobServer;
const extra: Array<{ close(): Promise<void> | void }> = [];
/** 300 000 bytes that start like an ESP32 image. */
const IMAGE = crypto.randomBytes(300_000);
IMAGE[0] = 0xe9;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-https-"));
  pki = LocalPki.open(path.join(dir, "pki"));
  const s = pki.server();
  server = await BlobServer.start({ dir: path.join(dir, "blobs"), cert: s.certPem, key: s.keyPem, ca: pki.caPem });
});
afterAll(async () => {
  for (const e of extra.reverse()) await e.close();
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  server.clearFaults();
  server.publish("firmware", "1.0.5.bin", IMAGE);
});

function source(o: Partial<HttpsByteSourceOptions> = {}): HttpsByteSource {
  return new HttpsByteSource({ ca: pki.caPem, allowedHosts: ["127.0.0.1"], ...o });
}

const url = (name = "1.0.5.bin"): string => `${server.baseUrl()}${name}`;
const sha = (b: Uint8Array): string => crypto.createHash("sha256").update(b).digest("hex");

/** Reads the body to its end (bounded by the body's length: each read returns at least one byte). */
async function readAll(r: ByteSourceResponse): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for (;;) {
    const c = await r.read();
    if (c === undefined) return Buffer.concat(parts);
    expect(c.length).toBeGreaterThan(0);
    parts.push(c);
  }
}

/** Reads until read() rejects; returns the bytes read before and the error. */
async function readUntilError(r: ByteSourceResponse): Promise<{ bytes: Buffer; error: ShadowOtaError }> {
  const parts: Uint8Array[] = [];
  for (;;) {
    let c: Uint8Array | undefined;
    try {
      c = await r.read();
    } catch (e) {
      return { bytes: Buffer.concat(parts), error: e as ShadowOtaError };
    }
    if (c === undefined) throw new Error(`body ended normally after ${Buffer.concat(parts).length} bytes`);
    parts.push(c);
  }
}

/** A TLS server (certificate from the test CA) that answers every request with `raw`. */
async function rawTlsServer(raw: string | Buffer): Promise<number> {
  const s = pki.server();
  const srv = tls.createServer({ cert: s.certPem, key: s.keyPem }, (sock) => {
    sock.once("data", () => sock.end(raw));
    sock.on("error", () => undefined);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  extra.push({ close: () => new Promise<void>((r) => srv.close(() => r())) });
  return (srv.address() as net.AddressInfo).port;
}

async function blobServerWith(cert: { certPem: string; keyPem: string }, ca = pki.caPem): Promise<BlobServer> {
  const b = await BlobServer.start({ dir: path.join(dir, "blobs"), cert: cert.certPem, key: cert.keyPem, ca });
  extra.push(b);
  return b;
}

describe("downloads", () => {
  it("reads the whole image; its SHA-256 matches and the metadata is the server's", async () => {
    const r = await source().open({ url: url(), offset: 0 });
    expect(r.status).toBe(200);
    expect(r.start).toBe(0);
    expect(r.total).toBe(IMAGE.length);
    expect(r.etag).toBe(server.info("firmware", "1.0.5.bin")!.etag);
    expect(sha(await readAll(r))).toBe(sha(IMAGE));
    expect(await r.read()).toBeUndefined(); // stays at the end
  });

  it("resumes from an offset with Range and If-Range (206)", async () => {
    const etag = server.info("firmware", "1.0.5.bin")!.etag;
    const r = await source().open({ url: url(), offset: 123_456, etag });
    expect(r.status).toBe(206);
    expect(r.start).toBe(123_456);
    expect(r.total).toBe(IMAGE.length);
    expect(sha(await readAll(r))).toBe(sha(IMAGE.subarray(123_456)));
    const seen = server.requestsFor("firmware/1.0.5.bin").at(-1)!;
    expect(seen.range).toBe("bytes=123456-");
    expect(seen.ifRange).toBe(etag);
  });

  it("gets the whole changed object from 0 when the ETag no longer matches (200)", async () => {
    const oldEtag = server.info("firmware", "1.0.5.bin")!.etag;
    const changed = Buffer.from(IMAGE);
    changed[1000] ^= 0xff;
    server.publish("firmware", "1.0.5.bin", changed);
    const r = await source().open({ url: url(), offset: 5000, etag: oldEtag });
    expect(r.status).toBe(200);
    expect(r.start).toBe(0);
    expect(r.etag).not.toBe(oldEtag);
    expect(sha(await readAll(r))).toBe(sha(changed));
  });

  it("reads a chunked body without a length (total undefined)", async () => {
    server.setFault("firmware/1.0.5.bin", { chunked: true });
    const r = await source().open({ url: url(), offset: 0 });
    expect(r.total).toBeUndefined();
    expect(sha(await readAll(r))).toBe(sha(IMAGE));
  });

  it("a truncated body rejects with DOWNLOAD_TRUNCATED after the bytes that came, and resuming completes it", async () => {
    server.setFault("firmware/1.0.5.bin", { cutAtByte: 100_000 });
    const r = await source().open({ url: url(), offset: 0 });
    const { bytes, error } = await readUntilError(r);
    expect(error.code).toBe(DOWNLOAD_CODES.DOWNLOAD_TRUNCATED);
    expect(isRetryableDownloadError(error)).toBe(true);
    expect(bytes.length).toBe(100_000);
    const rest = await source().open({ url: url(), offset: bytes.length, etag: r.etag! });
    expect(rest.status).toBe(206);
    expect(sha(Buffer.concat([bytes, await readAll(rest)]))).toBe(sha(IMAGE));
  });

  it("a chunked body cut short is DOWNLOAD_TRUNCATED too", async () => {
    server.setFault("firmware/1.0.5.bin", { chunked: true, cutAtByte: 50_000 });
    const r = await source().open({ url: url(), offset: 0 });
    expect((await readUntilError(r)).error.code).toBe(DOWNLOAD_CODES.DOWNLOAD_TRUNCATED);
  });

  it("more bytes than announced is DOWNLOAD_TOO_LONG (not retryable)", async () => {
    server.setFault("firmware/1.0.5.bin", { extraBytes: 10 });
    const r = await source().open({ url: url(), offset: 0 });
    const { error } = await readUntilError(r);
    expect(error.code).toBe(DOWNLOAD_CODES.DOWNLOAD_TOO_LONG);
    expect(isRetryableDownloadError(error)).toBe(false);
  });

  it("a stalled server is DOWNLOAD_TIMEOUT after idleTimeoutMs (phase body)", async () => {
    server.setFault("firmware/1.0.5.bin", { stallAtByte: 40_000 });
    const r = await source({ idleTimeoutMs: 300 }).open({ url: url(), offset: 0 });
    const { bytes, error } = await readUntilError(r);
    expect(error.code).toBe(DOWNLOAD_CODES.DOWNLOAD_TIMEOUT);
    expect(error.detail?.["phase"]).toBe("body");
    expect(bytes.length).toBe(40_000);
    expect(isRetryableDownloadError(error)).toBe(true);
  });

  it("abort() rejects a pending read with DOWNLOAD_ABORTED; later reads too; abort twice is safe", async () => {
    server.setFault("firmware/1.0.5.bin", { stallAtByte: 0 });
    const r = await source().open({ url: url(), offset: 0 });
    const pending = r.read();
    r.abort();
    expect((await rejection(pending)).code).toBe(DOWNLOAD_CODES.DOWNLOAD_ABORTED);
    expect((await rejection(r.read())).code).toBe(DOWNLOAD_CODES.DOWNLOAD_ABORTED);
    r.abort();
  });

  it("read(maxBytes) never returns more than asked, and the bytes add up", async () => {
    const r = await source().open({ url: url(), offset: 0 });
    const parts: Uint8Array[] = [];
    for (let i = 0; i <= IMAGE.length; i++) { // bounded: every read returns at least one byte
      const c = await r.read(4096 - (i % 7)); // odd bounds so network chunks get split anywhere
      if (c === undefined) break;
      expect(c.length).toBeGreaterThan(0);
      expect(c.length).toBeLessThanOrEqual(4096 - (i % 7));
      parts.push(c);
    }
    expect(sha(Buffer.concat(parts))).toBe(sha(IMAGE));
    await expect(r.read(0)).rejects.toThrow(RangeError);
  });

  it("refuses a second read while one is pending", async () => {
    server.setFault("firmware/1.0.5.bin", { stallAtByte: 0 });
    const r = await source().open({ url: url(), offset: 0 });
    const first = r.read();
    await expect(r.read()).rejects.toThrow(TypeError);
    r.abort();
    await rejection(first);
  });
});

describe("backpressure", () => {
  it("pauses the response while nobody reads, so the server cannot push the whole image", async () => {
    const big = crypto.randomBytes(16 * 1024 * 1024);
    big[0] = 0xe9;
    server.publish("firmware", "big.bin", big);
    const r = await source().open({ url: url("big.bin"), offset: 0 });
    const entry = server.requestsFor("firmware/big.bin").at(-1)!;
    // Wait (bounded: at most 100 polls) until the server stops making progress, i.e. it is blocked on a
    // full connection. Without the pause the client would swallow all 16 MiB and the server would finish.
    let last = -1;
    for (let i = 0, still = 0; i < 100 && still < 4 && entry.bytesSent < big.length; i++) {
      await new Promise((res) => setTimeout(res, 50));
      still = entry.bytesSent === last ? still + 1 : 0;
      last = entry.bytesSent;
    }
    expect(entry.bytesSent).toBeLessThan(big.length);
    expect(sha(await readAll(r))).toBe(sha(big)); // and reading resumes it to the end
    server.remove("firmware", "big.bin");
  });
});

describe("not an image", () => {
  it("an HTML page (captive portal, 200 text/html) is DOWNLOAD_NOT_AN_IMAGE from open", async () => {
    server.setFault("firmware/1.0.5.bin", { html: true });
    const e = await rejection(source().open({ url: url(), offset: 0 }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_NOT_AN_IMAGE);
    expect(e.detail?.["contentType"]).toMatch(/text\/html/);
  });

  it("a body whose first byte is not 0xE9 is refused before a byte is returned", async () => {
    server.publish("firmware", "junk.bin", Buffer.alloc(5000, 0x7f));
    const r = await source().open({ url: url("junk.bin"), offset: 0 });
    const { bytes, error } = await readUntilError(r);
    expect(error.code).toBe(DOWNLOAD_CODES.DOWNLOAD_NOT_AN_IMAGE);
    expect(bytes.length).toBe(0);
  });

  it("a resumed body (start > 0) is not checked for the magic", async () => {
    const r = await source().open({ url: url(), offset: 1, etag: server.info("firmware", "1.0.5.bin")!.etag });
    expect((await readAll(r)).length).toBe(IMAGE.length - 1);
  });
});

describe("statuses", () => {
  it("404 is DOWNLOAD_HTTP_STATUS, not retryable", async () => {
    const e = await rejection(source().open({ url: url("9.9.9.bin"), offset: 0 }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_HTTP_STATUS);
    expect(e.detail?.["status"]).toBe(404);
    expect(isRetryableDownloadError(e)).toBe(false);
  });

  it("503 is DOWNLOAD_HTTP_STATUS, retryable", async () => {
    server.setFault("firmware/1.0.5.bin", { status: 503 });
    const e = await rejection(source().open({ url: url(), offset: 0 }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_HTTP_STATUS);
    expect(e.detail?.["status"]).toBe(503);
    expect(isRetryableDownloadError(e)).toBe(true);
  });

  it("416 (offset past the end) is DOWNLOAD_HTTP_STATUS", async () => {
    const e = await rejection(source().open({ url: url(), offset: IMAGE.length, etag: server.info("firmware", "1.0.5.bin")!.etag }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_HTTP_STATUS);
    expect(e.detail?.["status"]).toBe(416);
  });
});

describe("URLs and redirects", () => {
  it("a plain http URL is DOWNLOAD_URL_INVALID (nothing is connected)", async () => {
    const before = server.requests.length;
    const e = await rejection(source().open({ url: `http://127.0.0.1:${server.port}/firmware/1.0.5.bin`, offset: 0 }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_URL_INVALID);
    expect(server.requests.length).toBe(before);
  });

  it("URLs two parsers could read differently are DOWNLOAD_URL_INVALID", async () => {
    for (const u of [`https://127.0.0.1:${server.port}\\@evil.example/x`, `https://u@127.0.0.1:${server.port}/x`, "not a url"]) {
      expect((await rejection(source().open({ url: u, offset: 0 }))).code).toBe(DOWNLOAD_CODES.DOWNLOAD_URL_INVALID);
    }
  });

  it("a host not on the allow-list is DOWNLOAD_HOST_NOT_ALLOWED before connecting", async () => {
    const before = server.requests.length;
    const e = await rejection(source({ allowedHosts: ["updates.example.com"] }).open({ url: url(), offset: 0 }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_HOST_NOT_ALLOWED);
    expect(e.detail?.["host"]).toBe("127.0.0.1");
    expect(server.requests.length).toBe(before);
  });

  it("a redirect to a host not on the allow-list is refused", async () => {
    server.setFault("firmware/1.0.5.bin", { redirect: "https://evil.example/firmware/1.0.5.bin" });
    const e = await rejection(source().open({ url: url(), offset: 0 }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_HOST_NOT_ALLOWED);
    expect(e.detail?.["host"]).toBe("evil.example");
  });

  it("a redirect to an allowed host is followed, keeping Range and If-Range", async () => {
    server.publish("firmware", "v1_0_5.bin", IMAGE);
    server.setFault("firmware/1.0.5.bin", { redirect: url("v1_0_5.bin"), redirectStatus: 307 });
    const full = await source().open({ url: url(), offset: 0 });
    expect(sha(await readAll(full))).toBe(sha(IMAGE));
    server.setFault("firmware/1.0.5.bin", { redirect: "/firmware/v1_0_5.bin" }); // relative Location
    const part = await source().open({ url: url(), offset: 10, etag: full.etag! });
    expect(part.status).toBe(206);
    expect(server.requestsFor("firmware/v1_0_5.bin").at(-1)!.range).toBe("bytes=10-");
    await readAll(part);
  });

  it("a redirect to http, or too many redirects, is DOWNLOAD_REDIRECT_REFUSED", async () => {
    server.setFault("firmware/1.0.5.bin", { redirect: `http://127.0.0.1:${server.port}/firmware/1.0.5.bin` });
    expect((await rejection(source().open({ url: url(), offset: 0 }))).code).toBe(DOWNLOAD_CODES.DOWNLOAD_REDIRECT_REFUSED);
    server.setFault("firmware/1.0.5.bin", { redirect: url() }, { times: "always" });
    const e = await rejection(source({ maxRedirects: 2 }).open({ url: url(), offset: 0 }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_REDIRECT_REFUSED);
    expect(server.requestsFor("firmware/1.0.5.bin").slice(-3).every((r) => r.status === 302)).toBe(true);
  });
});

describe("TLS and connections", () => {
  it("a server certificate from another CA is DOWNLOAD_TLS (not retryable)", async () => {
    const other = LocalPki.open(path.join(dir, "other-pki"));
    const e = await rejection(source({ ca: other.caPem }).open({ url: url(), offset: 0 }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_TLS);
    expect(e.detail?.["reason"]).toBe("UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    expect(isRetryableDownloadError(e)).toBe(false);
  });

  it("a certificate without the URL's host is DOWNLOAD_TLS (ERR_TLS_CERT_ALTNAME_INVALID)", async () => {
    const b = await blobServerWith(pki.issueServerCertificate({ dns: ["localhost"], ip: [] }));
    const e = await rejection(source().open({ url: `${b.baseUrl()}1.0.5.bin`, offset: 0 }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_TLS);
    expect(e.detail?.["reason"]).toBe("ERR_TLS_CERT_ALTNAME_INVALID");
  });

  it("an expired server certificate is DOWNLOAD_TLS (CERT_HAS_EXPIRED)", async () => {
    const now = Date.now();
    const b = await blobServerWith(pki.issueServerCertificate({ notBefore: new Date(now - 10 * 86_400_000), notAfter: new Date(now - 86_400_000) }));
    const e = await rejection(source().open({ url: `${b.baseUrl()}1.0.5.bin`, offset: 0 }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_TLS);
    expect(e.detail?.["reason"]).toBe("CERT_HAS_EXPIRED");
  });

  it("an IPv6 literal URL ([::1]) is on the allow-list as ::1 and passes the host-name check (SAN IP ::1)", async () => {
    const s = pki.server(); // SAN IP ::1
    const b = await BlobServer.start({ dir: path.join(dir, "blobs"), cert: s.certPem, key: s.keyPem, ca: pki.caPem, host: "::1" });
    extra.push(b);
    expect(b.baseUrl()).toBe(`https://[::1]:${b.port}/firmware/`);
    const r = await source({ allowedHosts: ["::1"] }).open({ url: `${b.baseUrl()}1.0.5.bin`, offset: 0 });
    expect(sha(await readAll(r))).toBe(sha(IMAGE));
    const e = await rejection(source().open({ url: `${b.baseUrl()}1.0.5.bin`, offset: 0 }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_HOST_NOT_ALLOWED);
    expect(e.detail?.["host"]).toBe("::1");
  });

  it("a refused connection is DOWNLOAD_CONNECT (retryable)", async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", () => r()));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const e = await rejection(source().open({ url: `https://127.0.0.1:${port}/firmware/1.0.5.bin`, offset: 0 }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_CONNECT);
    expect(e.detail?.["errno"]).toBe("ECONNREFUSED");
    expect(isRetryableDownloadError(e)).toBe(true);
  });

  it("a peer that never completes the handshake is DOWNLOAD_TIMEOUT after connectTimeoutMs", async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => { sockets.push(s); s.on("error", () => undefined); });
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    extra.push({ close: () => { for (const s of sockets) s.destroy(); return new Promise<void>((r) => silent.close(() => r())); } });
    const port = (silent.address() as net.AddressInfo).port;
    const e = await rejection(source({ connectTimeoutMs: 300 }).open({ url: `https://127.0.0.1:${port}/x.bin`, offset: 0 }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_TIMEOUT);
    expect(e.detail?.["phase"]).toBe("tls");
  });
});

describe("malformed answers (raw server)", () => {
  it("a 206 whose Content-Range does not start at the offset is DOWNLOAD_RANGE_INVALID", async () => {
    const port = await rawTlsServer("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-3/10\r\nContent-Length: 4\r\n\r\n\xe9abc");
    const e = await rejection(source().open({ url: `https://127.0.0.1:${port}/x.bin`, offset: 5, etag: '"e"' }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_RANGE_INVALID);
    expect(isRetryableDownloadError(e)).toBe(true);
  });

  it("a garbled status line is DOWNLOAD_BAD_RESPONSE (retried)", async () => {
    const port = await rawTlsServer("HTTP/1.1 2xx Whatever\r\nContent-Length: 4\r\n\r\n\xe9abc");
    const e = await rejection(source().open({ url: `https://127.0.0.1:${port}/x.bin`, offset: 0 }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_BAD_RESPONSE);
    expect(String(e.detail?.["reason"])).toMatch(/^HPE_/);
    expect(isRetryableDownloadError(e)).toBe(true);
  });

  it("a 206 without Content-Range is DOWNLOAD_RANGE_INVALID", async () => {
    const port = await rawTlsServer("HTTP/1.1 206 Partial Content\r\nContent-Length: 4\r\n\r\nabcd");
    expect((await rejection(source().open({ url: `https://127.0.0.1:${port}/x.bin`, offset: 5 }))).code).toBe(DOWNLOAD_CODES.DOWNLOAD_RANGE_INVALID);
  });

  it("a weak ETag is reported as undefined", async () => {
    const body = Buffer.from([0xe9, 1, 2, 3]);
    const port = await rawTlsServer(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nETag: W/"abc"\r\nContent-Length: 4\r\n\r\n'), body]));
    const r = await source().open({ url: `https://127.0.0.1:${port}/x.bin`, offset: 0 });
    expect(r.etag).toBeUndefined();
    expect(await readAll(r)).toEqual(body);
  });

  it("a chunked 206 longer than its Content-Range is DOWNLOAD_TOO_LONG", async () => {
    const port = await rawTlsServer("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 5-6/10\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n");
    const r = await source().open({ url: `https://127.0.0.1:${port}/x.bin`, offset: 5 });
    expect(r.total).toBe(10);
    expect((await readUntilError(r)).error.code).toBe(DOWNLOAD_CODES.DOWNLOAD_TOO_LONG);
  });
});

describe("options", () => {
  it("refuses to trust nothing, and bad numbers", () => {
    expect(() => new HttpsByteSource({ allowedHosts: [] })).toThrow(TypeError);
    expect(() => new HttpsByteSource({ ca: pki.caPem, allowedHosts: [], idleTimeoutMs: 0 })).toThrow(RangeError);
  });

  it("useSystemCa alone does not trust the local CA", async () => {
    const e = await rejection(new HttpsByteSource({ useSystemCa: true, allowedHosts: ["127.0.0.1"] }).open({ url: url(), offset: 0 }));
    expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_TLS);
  });
});
