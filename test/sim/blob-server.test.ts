/**
 * The local cloud's blob server (src/sim/blob-server.ts) on its own, seen by a plain node:https client over
 * TLS with the test CA: names and URLs of both seeds, ETag, HEAD, ranges (206, 416, ignored ones),
 * If-Range, chunked mode, throttling, every fault (cut, stall, status, HTML, extra bytes, redirect, another
 * blob on the Nth request), fault windows, publishing/listing/removing and the name rules. The adapter's
 * view of the same faults is test/node/https-source.test.ts.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import { awsBlobName, azureBlobName, firmwareUrl } from "../../src/core/firmware-url";
import { BlobServer, blobEtag, parseRange } from "../../src/sim/blob-server";
import { CLOUD_CODES } from "../../src/sim/cloud-errors";
import { LocalPki } from "../../src/sim/pki";
import { errorOf } from "../core/error-of";

jest.setTimeout(60_000);

let dir: string;
let pki: LocalPki;
let server: BlobServer;
const IMAGE = crypto.randomBytes(100_000);
IMAGE[0] = 0xe9;
const OTHER = crypto.randomBytes(5_000);
OTHER[0] = 0xe9;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-blobs-"));
  pki = LocalPki.open(path.join(dir, "pki"));
  const s = pki.server();
  server = await BlobServer.start({ dir: path.join(dir, "blobs"), cert: s.certPem, key: s.keyPem, ca: pki.caPem });
});
afterAll(async () => {
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => {
  server.clearFaults();
  server.chunked = false;
  server.bytesPerSecond = undefined;
  server.publish("firmware", "1.0.5.bin", IMAGE);
  server.publish("firmware", "other.bin", OTHER);
});

interface Got { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer; error?: string }

/** One request; resolves when the response ends or its connection fails (error then holds the code). */
function get(p: string, headers: Record<string, string> = {}, method = "GET", onFirstData?: (req: import("node:http").ClientRequest) => void): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: "127.0.0.1", port: server.port, path: p, method, headers, ca: pki.caPem, agent: false }, (res) => {
      const parts: Buffer[] = [];
      let first = true;
      const done = (error?: string): void => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts), ...(error === undefined ? {} : { error }) });
      res.on("data", (d: Buffer) => { parts.push(d); if (first) { first = false; onFirstData?.(req); } });
      res.on("end", () => done());
      res.on("error", (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
    });
    req.on("error", (e: NodeJS.ErrnoException) => (e.code?.startsWith("HPE_") ? resolve({ status: -1, headers: {}, body: Buffer.alloc(0), error: e.code }) : reject(e)));
    req.end();
  });
}

describe("serving", () => {
  it("serves both seeds' names under the base URL, with a strong ETag and Content-Length", async () => {
    server.publish("firmware", azureBlobName("1.1.0"), OTHER);
    expect(firmwareUrl(server.baseUrl(), "aws", "1.0.5")).toBe(`https://127.0.0.1:${server.port}/firmware/1.0.5.bin`);
    const aws = await get(`/firmware/${awsBlobName("1.0.5")}`);
    expect(aws.status).toBe(200);
    expect(aws.body.equals(IMAGE)).toBe(true);
    expect(aws.headers["etag"]).toBe(blobEtag(IMAGE));
    expect(aws.headers["etag"]).toMatch(/^"[0-9a-f]{32}"$/);
    expect(aws.headers["content-length"]).toBe(String(IMAGE.length));
    expect(aws.headers["accept-ranges"]).toBe("bytes");
    const az = await get("/firmware/v1_1_0.bin");
    expect(az.body.equals(OTHER)).toBe(true);
  });

  it("HEAD sends the headers only", async () => {
    const h = await get("/firmware/1.0.5.bin", {}, "HEAD");
    expect(h.status).toBe(200);
    expect(h.headers["content-length"]).toBe(String(IMAGE.length));
    expect(h.body.length).toBe(0);
  });

  it("404 for a missing blob or a path that is not container/name; 405 for other methods", async () => {
    expect((await get("/firmware/9.9.9.bin")).status).toBe(404);
    expect((await get("/firmware/../pki/ca.key.pem")).status).toBe(404);
    expect((await get("/firmware/%2e%2e/x")).status).toBe(404);
    expect((await get("/a/b/c")).status).toBe(404);
    expect((await get("/firmware/1.0.5.bin", {}, "POST")).status).toBe(405);
  });

  it("answers single ranges with 206 and Content-Range", async () => {
    const from = await get("/firmware/1.0.5.bin", { range: "bytes=1000-" });
    expect(from.status).toBe(206);
    expect(from.headers["content-range"]).toBe(`bytes 1000-${IMAGE.length - 1}/${IMAGE.length}`);
    expect(from.body.equals(IMAGE.subarray(1000))).toBe(true);
    const mid = await get("/firmware/1.0.5.bin", { range: "bytes=10-19" });
    expect(mid.headers["content-range"]).toBe(`bytes 10-19/${IMAGE.length}`);
    expect(mid.body.equals(IMAGE.subarray(10, 20))).toBe(true);
    const suffix = await get("/firmware/1.0.5.bin", { range: "bytes=-5" });
    expect(suffix.body.equals(IMAGE.subarray(IMAGE.length - 5))).toBe(true);
  });

  it("416 for a range that starts at or past the end; several or malformed ranges are ignored (200)", async () => {
    const past = await get("/firmware/1.0.5.bin", { range: `bytes=${IMAGE.length}-` });
    expect(past.status).toBe(416);
    expect(past.headers["content-range"]).toBe(`bytes */${IMAGE.length}`);
    expect((await get("/firmware/1.0.5.bin", { range: "bytes=0-1,5-6" })).status).toBe(200);
    expect((await get("/firmware/1.0.5.bin", { range: "items=0-1" })).status).toBe(200);
    expect((await get("/firmware/1.0.5.bin", { range: "bytes=9-3" })).status).toBe(200);
  });

  it("If-Range: the current ETag honours the range, any other validator sends the whole blob", async () => {
    const etag = blobEtag(IMAGE);
    expect((await get("/firmware/1.0.5.bin", { range: "bytes=50-", "if-range": etag })).status).toBe(206);
    const stale = await get("/firmware/1.0.5.bin", { range: "bytes=50-", "if-range": '"0000"' });
    expect(stale.status).toBe(200);
    expect(stale.body.length).toBe(IMAGE.length);
    expect((await get("/firmware/1.0.5.bin", { range: "bytes=50-", "if-range": `W/${etag}` })).status).toBe(200);
    expect((await get("/firmware/1.0.5.bin", { range: "bytes=50-", "if-range": "Tue, 01 Jan 2030 00:00:00 GMT" })).status).toBe(200);
  });

  it("chunked mode sends no Content-Length", async () => {
    server.chunked = true;
    const r = await get("/firmware/1.0.5.bin", { range: "bytes=7-" });
    expect(r.headers["content-length"]).toBeUndefined();
    expect(r.headers["transfer-encoding"]).toBe("chunked");
    expect(r.body.equals(IMAGE.subarray(7))).toBe(true);
  });

  it("throttling holds the body back (the server has sent little when the first bytes arrive)", async () => {
    server.bytesPerSecond = 1000; // 100 s for the whole image
    const r = await get("/firmware/1.0.5.bin", {}, "GET", (req) => req.destroy());
    expect(r.body.length).toBeLessThan(IMAGE.length);
    expect(server.requestsFor("firmware/1.0.5.bin").at(-1)!.bytesSent).toBeLessThan(IMAGE.length / 10);
  });
});

describe("faults", () => {
  const P = "firmware/1.0.5.bin";

  it("cutAtByte closes the connection after exactly N body bytes", async () => {
    server.setFault(P, { cutAtByte: 12_345 });
    const r = await get(`/${P}`);
    expect(r.error).toBe("ECONNRESET");
    expect(r.body.length).toBe(12_345);
    expect((await get(`/${P}`)).body.length).toBe(IMAGE.length); // only the next request
  });

  it("stallAtByte sends N bytes and keeps the connection open until close()", async () => {
    const pki2 = pki.server();
    const s2 = await BlobServer.start({ dir: path.join(dir, "blobs"), cert: pki2.certPem, key: pki2.keyPem, ca: pki.caPem });
    s2.setFault(P, { stallAtByte: 3000 });
    const pending = new Promise<Got>((resolve, reject) => {
      const req = https.request({ host: "127.0.0.1", port: s2.port, path: `/${P}`, ca: pki.caPem, agent: false }, (res) => {
        const parts: Buffer[] = [];
        res.on("data", (d: Buffer) => {
          parts.push(d);
          if (Buffer.concat(parts).length === 3000) void s2.close(); // only close() ends it
        });
        res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts) }));
        res.on("error", (e: NodeJS.ErrnoException) => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts), error: e.code ?? "" }));
      });
      req.on("error", reject);
      req.end();
    });
    const r = await pending;
    expect(r.body.length).toBe(3000);
    expect(r.error).toBe("ECONNRESET");
    expect(s2.requestsFor(P)[0]!.bytesSent).toBe(3000);
  });

  it("status, HTML page and redirect answers", async () => {
    server.setFault(P, { status: 503 });
    expect((await get(`/${P}`)).status).toBe(503);
    server.setFault(P, { html: true });
    const html = await get(`/${P}`);
    expect(html.status).toBe(200);
    expect(html.headers["content-type"]).toMatch(/^text\/html/);
    expect(html.body.toString()).toMatch(/<html>/);
    server.setFault(P, { redirect: "https://elsewhere.example/x.bin" });
    const moved = await get(`/${P}`);
    expect(moved.status).toBe(302);
    expect(moved.headers["location"]).toBe("https://elsewhere.example/x.bin");
    expect((await get(`/${P}`)).status).toBe(200);
  });

  it("extraBytes sends more than Content-Length announces (the client's parser trips on them)", async () => {
    server.setFault(P, { extraBytes: 7 });
    const r = await get(`/${P}`);
    expect(r.error).toMatch(/^HPE_/);
  });

  it("serve: another blob (with its ETag) on the 2nd request only", async () => {
    server.setFault(P, { serve: "firmware/other.bin" }, { after: 1 });
    expect((await get(`/${P}`)).body.equals(IMAGE)).toBe(true);
    const second = await get(`/${P}`);
    expect(second.body.equals(OTHER)).toBe(true);
    expect(second.headers["etag"]).toBe(blobEtag(OTHER));
    expect((await get(`/${P}`)).body.equals(IMAGE)).toBe(true);
    expect(server.requestsFor(P).slice(-3).map((r) => r.faulted)).toEqual([false, true, false]);
  });

  it("times: N and always; clearFaults drops them", async () => {
    server.setFault(P, { status: 500 }, { times: 2 });
    expect((await get(`/${P}`)).status).toBe(500);
    expect((await get(`/${P}`)).status).toBe(500);
    expect((await get(`/${P}`)).status).toBe(200);
    server.setFault(P, { status: 429 }, { times: "always" });
    for (let i = 0; i < 3; i++) expect((await get(`/${P}`)).status).toBe(429);
    server.clearFaults(P);
    expect((await get(`/${P}`)).status).toBe(200);
  });

  it("refuses malformed faults and paths with CLOUD_BLOB_FAULT_INVALID / CLOUD_BLOB_NAME_INVALID", () => {
    expect(errorOf(() => server.setFault(P, { bogus: 1 } as never)).code).toBe(CLOUD_CODES.CLOUD_BLOB_FAULT_INVALID);
    expect(errorOf(() => server.setFault(P, { status: 200 })).code).toBe(CLOUD_CODES.CLOUD_BLOB_FAULT_INVALID);
    expect(errorOf(() => server.setFault(P, { cutAtByte: -1 })).code).toBe(CLOUD_CODES.CLOUD_BLOB_FAULT_INVALID);
    expect(errorOf(() => server.setFault(P, {})).code).toBe(CLOUD_CODES.CLOUD_BLOB_FAULT_INVALID);
    expect(errorOf(() => server.setFault(P, { status: 500 }, { times: 0 })).code).toBe(CLOUD_CODES.CLOUD_BLOB_FAULT_INVALID);
    expect(errorOf(() => server.setFault("1.0.5.bin", { status: 500 })).code).toBe(CLOUD_CODES.CLOUD_BLOB_NAME_INVALID);
    expect(errorOf(() => server.setFault(P, { serve: "../x" })).code).toBe(CLOUD_CODES.CLOUD_BLOB_NAME_INVALID);
  });
});

describe("publishing", () => {
  it("lists, replaces (new ETag) and removes blobs", async () => {
    const before = server.info("firmware", "other.bin")!;
    const changed = Buffer.from(OTHER);
    changed[1] ^= 1;
    const after = server.publish("firmware", "other.bin", changed);
    expect(after.etag).not.toBe(before.etag);
    expect((await get("/firmware/other.bin")).body.equals(changed)).toBe(true);
    expect(server.list().map((b) => b.path)).toEqual(expect.arrayContaining(["firmware/1.0.5.bin", "firmware/other.bin"]));
    expect(server.list().find((b) => b.path === "firmware/other.bin")).toEqual({
      container: "firmware", name: "other.bin", path: "firmware/other.bin", size: OTHER.length, etag: after.etag, url: `${server.url}firmware/other.bin`,
    });
    server.remove("firmware", "other.bin");
    expect((await get("/firmware/other.bin")).status).toBe(404);
    expect(errorOf(() => server.remove("firmware", "other.bin")).code).toBe(CLOUD_CODES.CLOUD_BLOB_NOT_FOUND);
  });

  it("refuses names that are not one safe path segment", () => {
    for (const bad of ["..", ".hidden", "a/b", "", "x".repeat(129), "a b"]) {
      expect(errorOf(() => server.publish("firmware", bad, OTHER)).code).toBe(CLOUD_CODES.CLOUD_BLOB_NAME_INVALID);
      expect(errorOf(() => server.publish(bad, "x.bin", OTHER)).code).toBe(CLOUD_CODES.CLOUD_BLOB_NAME_INVALID);
    }
  });
});

describe("parseRange", () => {
  it.each([
    ["bytes=0-", 10, { start: 0, end: 9 }],
    ["bytes=3-5", 10, { start: 3, end: 5 }],
    ["bytes=3-50", 10, { start: 3, end: 9 }],
    ["bytes=-3", 10, { start: 7, end: 9 }],
    ["bytes=-30", 10, { start: 0, end: 9 }],
    ["bytes=10-", 10, "unsatisfiable"],
    ["bytes=-0", 10, "unsatisfiable"],
    ["bytes=5-3", 10, undefined],
    ["bytes=1-2,4-5", 10, undefined],
    ["bytes=-", 10, undefined],
    [undefined, 10, undefined],
  ] as const)("%s of %d → %j", (header, size, expected) => {
    expect(parseRange(header, size)).toEqual(expected);
  });
});

test("TCP connections that never start TLS are closed by the handshake deadline (20 at 300 ms); downloads still work", async () => {
  const s = pki.server();
  const short = await BlobServer.start({ dir: path.join(dir, "blobs-deadline"), cert: s.certPem, key: s.keyPem, ca: pki.caPem, handshakeTimeoutMs: 300 });
  try {
    const net = await import("node:net");
    const sockets = await Promise.all(Array.from({ length: 20 }, () => new Promise<import("node:net").Socket>((resolve, reject) => {
      const c = net.connect(short.port, "127.0.0.1", () => resolve(c));
      c.once("error", reject);
    })));
    await Promise.all(sockets.map((c) => new Promise<void>((r) => { c.on("error", () => undefined); if (c.destroyed) r(); else c.once("close", () => r()); })));
    short.publish("firmware", "d.bin", OTHER);
    const got = await new Promise<number>((resolve, reject) => {
      https.get(`${short.baseUrl("firmware")}d.bin`, { ca: pki.caPem }, (res) => { res.resume(); res.on("end", () => resolve(res.statusCode ?? 0)); }).on("error", reject);
    });
    expect(got).toBe(200);
  } finally {
    await short.close();
  }
});
