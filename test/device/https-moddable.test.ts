/**
 * The Moddable HTTPS byte source (src/device/https-moddable.ts) on Node, with the SDK modules it imports
 * ("http", "securesocket", "timer") replaced by fakes that behave as the SDK's sources say (8.2.3):
 * the fake Request builds its `Socket` from the whole dictionary, calls back (1, status), (2, name, value),
 * (3), (4, count) with the bytes readable through read(ArrayBuffer, count) — and read() giving what is left
 * in the delivery —, (5) or a negative message; the fake SecureSocket has a raw `sock` with a callback and
 * a `handshaking` flag; the fake Timer records waits the test fires by hand.
 *
 * What this is not: a test of the SDK's parser, TLS or sockets (docs/moddable.md says what is left for a
 * real build). The adapter is loaded with require(), so the root tsconfig does not follow it into the SDK
 * imports it cannot resolve; tsconfig.device.json type-checks it.
 */
import { isShadowOtaError } from "../../src/core/errors";
import type { ByteSource, ByteSourceResponse } from "../../src/ports/byte-source";

interface FakeRequest {
  dictionary: Record<string, unknown> & { headers: string[]; secure: Record<string, unknown>; host: string; port: number; path: string };
  socket: { sock: { callback: (m: number, v?: number) => void }; handshaking?: boolean };
  callback?: (message: number, value?: unknown, value2?: unknown) => void;
  closed: boolean;
  /** Bytes of the current delivery not read yet. */
  pending: Uint8Array;
  read(type?: unknown, count?: number): unknown;
  close(): void;
}
interface FakeTimer { id: number; ms: number; fn: () => void; cleared: boolean }
interface FakeSdk { requests: FakeRequest[]; timers: FakeTimer[] }

jest.mock("http", () => {
  const sdk: FakeSdk = { requests: [], timers: [] };
  (globalThis as { __fakeHttpSdk?: FakeSdk }).__fakeHttpSdk = sdk;
  class Request {
    closed = false;
    pending = new Uint8Array(0);
    socket: unknown;
    callback?: (message: number, value?: unknown, value2?: unknown) => void;
    constructor(readonly dictionary: Record<string, unknown>) {
      const S = dictionary.Socket as new (d: unknown) => unknown;
      this.socket = new S(dictionary);
      sdk.requests.push(this as unknown as FakeRequest);
    }
    read(type?: unknown, count?: number): unknown {
      if (type === undefined) return this.pending.length;
      const n = Math.min(count ?? this.pending.length, this.pending.length);
      if (n === 0) return undefined;
      const out = this.pending.slice(0, n);
      this.pending = this.pending.subarray(n);
      return out.buffer;
    }
    close(): void { this.closed = true; }
  }
  return { __esModule: true, Request };
}, { virtual: true });
jest.mock("securesocket", () => ({
  __esModule: true,
  default: class SecureSocket {
    handshaking = true;
    sock = { callback: (_m: number, _v?: number): void => undefined };
    constructor(readonly dictionary: unknown) {}
  },
}), { virtual: true });
jest.mock("timer", () => {
  const sdk = (): FakeSdk => (globalThis as unknown as { __fakeHttpSdk: FakeSdk }).__fakeHttpSdk;
  let next = 1;
  return {
    __esModule: true,
    default: {
      set(fn: () => void, ms: number): number {
        const id = next++;
        sdk().timers.push({ id, ms, fn, cleared: false });
        return id;
      },
      clear(id: number): void {
        const t = sdk().timers.find((x) => x.id === id);
        if (t) t.cleared = true;
      },
    },
  };
}, { virtual: true });

type Options = { ca: ArrayBuffer; allowedHosts: string[]; maxRedirects?: number; maxBufferedBytes?: number; connectTimeoutMs?: number; idleTimeoutMs?: number };
const { ModdableHttpsSource } = require("../../src/device/https-moddable") as { ModdableHttpsSource: new (o: Options) => ByteSource };
const sdk = (globalThis as unknown as { __fakeHttpSdk: FakeSdk }).__fakeHttpSdk;

const CA = new Uint8Array([0x30, 0x82]).buffer;
const URL0 = "https://fw.example.test/firmware/1.0.5.bin";

function source(extra: Partial<Options> = {}): ByteSource {
  return new ModdableHttpsSource({ ca: CA, allowedHosts: ["fw.example.test", "cdn.example.test"], ...extra });
}
function last(): FakeRequest {
  const r = sdk.requests[sdk.requests.length - 1];
  if (r === undefined) throw new Error("no request");
  return r;
}
/** The SDK's callback sequence for a status line and headers. */
function head(r: FakeRequest, status: number, headers: Record<string, string>): void {
  r.socket.sock.callback(1); // TCP connected
  delete r.socket.handshaking; // handshake done
  r.callback!(1, status);
  for (const [k, v] of Object.entries(headers)) r.callback!(2, k, v);
  r.callback!(3);
}
/** One body delivery: `bytes` readable, the callback told about the first `count` (default all). */
function fragment(r: FakeRequest, bytes: number[], count = bytes.length): void {
  r.pending = new Uint8Array(bytes);
  r.callback!(4, count);
}
function liveTimers(): FakeTimer[] {
  return sdk.timers.filter((t) => !t.cleared);
}
async function rejection(p: Promise<unknown>): Promise<{ code: string; detail: Record<string, unknown> | undefined }> {
  try {
    await p;
  } catch (e) {
    if (isShadowOtaError(e)) return { code: e.code, detail: e.detail };
    throw e;
  }
  throw new Error("did not reject");
}
async function readAll(resp: ByteSourceResponse): Promise<number[]> {
  const out: number[] = [];
  for (;;) {
    const c = await resp.read();
    if (c === undefined) return out;
    out.push(...c);
  }
}
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

beforeEach(() => {
  sdk.requests.length = 0;
  sdk.timers.length = 0;
});

describe("ModdableHttpsSource: requests", () => {
  it("GETs the whole object over SecureSocket with the pinned CA and the host name checked", async () => {
    const p = source().open({ url: URL0, offset: 0 });
    const r = last();
    expect(r.dictionary).toMatchObject({ host: "fw.example.test", port: 443, path: "/firmware/1.0.5.bin", method: "GET" });
    expect(r.dictionary.secure).toEqual({ protocolVersion: 0x303, certificate: CA, verify: true, serverName: "fw.example.test" });
    expect(r.dictionary.headers).not.toContain("Range");
    head(r, 200, { "content-length": "5", etag: '"v1"' });
    const resp = await p;
    expect([resp.status, resp.start, resp.total, resp.etag]).toEqual([200, 0, 5, '"v1"']);
    fragment(r, [0xe9, 1, 2]);
    fragment(r, [3, 4]);
    r.callback!(5);
    expect(await readAll(resp)).toEqual([0xe9, 1, 2, 3, 4]);
    expect(liveTimers()).toEqual([]);
    resp.abort(); // the controller always aborts at the end: harmless
    expect(await resp.read()).toBeUndefined();
  });

  it("resumes with Range and If-Range and takes the 206 from the offset without the magic check", async () => {
    const p = source().open({ url: "https://fw.example.test:8443/f.bin?sig=a", offset: 4096, etag: '"v1"' });
    const r = last();
    expect(r.dictionary).toMatchObject({ port: 8443, path: "/f.bin?sig=a" });
    expect(r.dictionary.headers).toEqual(expect.arrayContaining(["Host", "fw.example.test:8443", "Range", "bytes=4096-", "If-Range", '"v1"']));
    head(r, 206, { "content-range": "bytes 4096-4098/4099", "content-length": "3", etag: '"v1"' });
    const resp = await p;
    expect([resp.status, resp.start, resp.total]).toEqual([206, 4096, 4099]);
    fragment(r, [7, 8, 9]);
    r.callback!(5);
    expect(await readAll(resp)).toEqual([7, 8, 9]);
  });

  it("takes a 200 to a resume as the whole object again (start 0, magic checked)", async () => {
    const p = source().open({ url: URL0, offset: 4096, etag: '"old"' });
    head(last(), 200, { "content-length": "2", etag: '"new"' });
    const resp = await p;
    expect([resp.start, resp.total, resp.etag]).toEqual([0, 2, '"new"']);
    fragment(last(), [0x00, 1]);
    expect((await rejection(resp.read())).code).toBe("DOWNLOAD_NOT_AN_IMAGE");
    expect(last().closed).toBe(true);
  });

  it("reports only strong ETags", async () => {
    const p = source().open({ url: URL0, offset: 0 });
    head(last(), 200, { "content-length": "1", etag: 'W/"weak"' });
    expect((await p).etag).toBeUndefined();
  });

  it("refuses before connecting: a host off the allow-list, a non-https URL, a weak etag, a bad offset", async () => {
    expect((await rejection(source().open({ url: "https://evil.example.test/x.bin", offset: 0 })))).toEqual({ code: "DOWNLOAD_HOST_NOT_ALLOWED", detail: { host: "evil.example.test" } });
    expect((await rejection(source().open({ url: "http://fw.example.test/x.bin", offset: 0 }))).code).toBe("DOWNLOAD_URL_INVALID");
    await expect(source().open({ url: URL0, offset: 10, etag: 'W/"x"' })).rejects.toThrow(TypeError);
    await expect(source().open({ url: URL0, offset: -1 })).rejects.toThrow(RangeError);
    expect(sdk.requests).toHaveLength(0);
  });

  it("refuses options that would trust nothing", () => {
    expect(() => new ModdableHttpsSource({ ca: undefined as unknown as ArrayBuffer, allowedHosts: [] })).toThrow(TypeError);
    expect(() => new ModdableHttpsSource({ ca: CA, allowedHosts: [""] })).toThrow(TypeError);
    expect(() => new ModdableHttpsSource({ ca: CA, allowedHosts: [], maxBufferedBytes: 10 })).toThrow(RangeError);
  });
});

describe("ModdableHttpsSource: statuses and heads", () => {
  it.each([[404, false], [503, true]])("HTTP %d → DOWNLOAD_HTTP_STATUS and the connection closed", async (status) => {
    const p = source().open({ url: URL0, offset: 0 });
    head(last(), status, { "content-length": "0" });
    expect(await rejection(p)).toEqual({ code: "DOWNLOAD_HTTP_STATUS", detail: { status } });
    expect(last().closed).toBe(true);
    expect(liveTimers()).toEqual([]);
  });

  it("a 206 that does not start at the offset → DOWNLOAD_RANGE_INVALID", async () => {
    const p = source().open({ url: URL0, offset: 4096, etag: '"v1"' });
    head(last(), 206, { "content-range": "bytes 0-9/10" });
    expect((await rejection(p)).code).toBe("DOWNLOAD_RANGE_INVALID");
  });

  it("a response the SDK ends inside its headers (unknown Transfer-Encoding) → DOWNLOAD_BAD_RESPONSE", async () => {
    const p = source().open({ url: URL0, offset: 0 });
    const r = last();
    r.socket.sock.callback(1);
    delete r.socket.handshaking;
    r.callback!(1, 200);
    r.callback!(2, "transfer-encoding", "gzip");
    r.callback!(5);
    expect(await rejection(p)).toMatchObject({ code: "DOWNLOAD_BAD_RESPONSE", detail: { phase: "headers", errno: "MALFORMED_RESPONSE" } });
  });

  it("too many headers → DOWNLOAD_BAD_RESPONSE", async () => {
    const p = source().open({ url: URL0, offset: 0 });
    const r = last();
    r.socket.sock.callback(1);
    delete r.socket.handshaking;
    r.callback!(1, 200);
    for (let i = 0; i < 70; i++) r.callback!(2, `x-h${i}`, "v");
    expect(await rejection(p)).toMatchObject({ code: "DOWNLOAD_BAD_RESPONSE", detail: { reason: "headers too large" } });
    expect(r.closed).toBe(true);
  });
});

describe("ModdableHttpsSource: connection failures tell the phase", () => {
  it("before TCP connected → DOWNLOAD_CONNECT (retried)", async () => {
    const p = source().open({ url: URL0, offset: 0 });
    last().callback!(-2);
    expect(await rejection(p)).toEqual({ code: "DOWNLOAD_CONNECT", detail: { errno: "SOCKET_ERROR", phase: "connect" } });
  });

  it("during the handshake → DOWNLOAD_TLS (not retried)", async () => {
    const p = source().open({ url: URL0, offset: 0 });
    last().socket.sock.callback(1);
    last().callback!(-2);
    expect(await rejection(p)).toEqual({ code: "DOWNLOAD_TLS", detail: { reason: "HANDSHAKE_FAILED" } });
  });

  it("after the handshake, before the status line → DOWNLOAD_CONNECT, phase headers", async () => {
    const p = source().open({ url: URL0, offset: 0 });
    last().socket.sock.callback(1);
    delete last().socket.handshaking;
    last().callback!(-1);
    expect(await rejection(p)).toEqual({ code: "DOWNLOAD_CONNECT", detail: { errno: "SOCKET_CLOSED", phase: "headers" } });
  });

  it.each([
    [() => undefined, "connect"],
    [() => { last().socket.sock.callback(1); }, "tls"],
    [() => { last().socket.sock.callback(1); delete last().socket.handshaking; }, "headers"],
  ])("the connect timeout → DOWNLOAD_TIMEOUT in its phase (%#)", async (advance, phase) => {
    const p = source({ connectTimeoutMs: 1234 }).open({ url: URL0, offset: 0 });
    advance();
    const t = liveTimers();
    expect(t.map((x) => x.ms)).toEqual([1234]);
    t[0]!.fn();
    expect(await rejection(p)).toEqual({ code: "DOWNLOAD_TIMEOUT", detail: { phase, timeoutMs: 1234 } });
    expect(last().closed).toBe(true);
  });
});

describe("ModdableHttpsSource: bodies", () => {
  async function opened(headers: Record<string, string>, extra: Partial<Options> = {}, status = 200, offset = 0): Promise<{ r: FakeRequest; resp: ByteSourceResponse }> {
    const p = source(extra).open(offset === 0 ? { url: URL0, offset } : { url: URL0, offset, etag: '"v1"' });
    const r = last();
    head(r, status, headers);
    return { r, resp: await p };
  }

  it("bytes past Content-Length in the same delivery → DOWNLOAD_TOO_LONG, nothing of it delivered", async () => {
    const { r, resp } = await opened({ "content-length": "3" });
    fragment(r, [0xe9, 1, 2, 3, 4], 3);
    expect(await rejection(resp.read())).toEqual({ code: "DOWNLOAD_TOO_LONG", detail: { expected: 3, received: 3 } });
    expect(r.closed).toBe(true);
  });

  it("a chunked 206 longer than its Content-Range → DOWNLOAD_TOO_LONG", async () => {
    const { r, resp } = await opened({ "content-range": "bytes 10-11/12", "transfer-encoding": "chunked" }, {}, 206, 10);
    fragment(r, [1, 2, 3]);
    expect((await rejection(resp.read())).code).toBe("DOWNLOAD_TOO_LONG");
  });

  it("a connection lost mid-body → DOWNLOAD_TRUNCATED after the bytes already received", async () => {
    const { r, resp } = await opened({ "content-length": "10" });
    fragment(r, [0xe9, 1, 2]);
    r.callback!(-2);
    expect(Array.from((await resp.read())!)).toEqual([0xe9, 1, 2]);
    expect(await rejection(resp.read())).toEqual({ code: "DOWNLOAD_TRUNCATED", detail: { expected: 10, received: 3 } });
  });

  it("a chunked 206 that ends short → DOWNLOAD_TRUNCATED", async () => {
    const { r, resp } = await opened({ "content-range": "bytes 10-19/20", "transfer-encoding": "chunked" }, {}, 206, 10);
    fragment(r, [1, 2]);
    r.callback!(5);
    await resp.read();
    expect((await rejection(resp.read())).code).toBe("DOWNLOAD_TRUNCATED");
  });

  it("an empty chunked body from offset 0 → DOWNLOAD_NOT_AN_IMAGE", async () => {
    const { r, resp } = await opened({ "transfer-encoding": "chunked" });
    r.callback!(5);
    expect((await rejection(resp.read())).code).toBe("DOWNLOAD_NOT_AN_IMAGE");
  });

  it("the idle timeout → DOWNLOAD_TIMEOUT phase body, re-armed by every fragment", async () => {
    const { r, resp } = await opened({ "content-length": "10" }, { idleTimeoutMs: 500 });
    const first = liveTimers();
    expect(first.map((t) => t.ms)).toEqual([500]);
    fragment(r, [0xe9]);
    expect(first[0]!.cleared).toBe(true);
    const second = liveTimers();
    expect(second).toHaveLength(1);
    second[0]!.fn();
    expect(Array.from((await resp.read())!)).toEqual([0xe9]);
    expect(await rejection(resp.read())).toEqual({ code: "DOWNLOAD_TIMEOUT", detail: { phase: "body", timeoutMs: 500, received: 1 } });
    expect(r.closed).toBe(true);
  });

  it("a reader that falls behind past maxBufferedBytes → DOWNLOAD_OVERRUN (retried) after the queued bytes", async () => {
    const { r, resp } = await opened({ "content-length": "4000" }, { maxBufferedBytes: 1024 });
    const piece = (first: number): number[] => Array.from({ length: 1000 }, (_, i) => (i === 0 ? first : i & 0xff));
    fragment(r, piece(0xe9));
    fragment(r, piece(1));
    expect(r.closed).toBe(true);
    expect((await resp.read())!.length).toBe(1000);
    expect((await resp.read())!.length).toBe(1000);
    expect(await rejection(resp.read())).toEqual({ code: "DOWNLOAD_OVERRUN", detail: { expected: 4000, received: 2000, buffered: 2000, limit: 1024 } });
  });

  it("a pending read gets the next fragment directly; one read at a time", async () => {
    const { r, resp } = await opened({ "content-length": "2" });
    const p = resp.read();
    await expect(resp.read()).rejects.toThrow(TypeError);
    fragment(r, [0xe9, 5]);
    expect(Array.from((await p)!)).toEqual([0xe9, 5]);
    const end = resp.read();
    r.callback!(5);
    expect(await end).toBeUndefined();
  });

  it("read(maxBytes) returns at most that many bytes and keeps the rest, queued or pending", async () => {
    const { r, resp } = await opened({ "content-length": "10" });
    fragment(r, [0xe9, 1, 2, 3, 4]);
    expect(Array.from((await resp.read(2))!)).toEqual([0xe9, 1]);
    expect(Array.from((await resp.read(2))!)).toEqual([2, 3]);
    expect(Array.from((await resp.read(2))!)).toEqual([4]);
    const p = resp.read(3);
    fragment(r, [5, 6, 7, 8, 9]);
    expect(Array.from((await p)!)).toEqual([5, 6, 7]);
    expect(Array.from((await resp.read())!)).toEqual([8, 9]);
    await expect(resp.read(0)).rejects.toThrow(RangeError);
    await expect(resp.read(1.5)).rejects.toThrow(RangeError);
    r.callback!(5);
    expect(await resp.read(4)).toBeUndefined();
  });

  it("abort() rejects a pending read with DOWNLOAD_ABORTED, closes, and is safe twice", async () => {
    const { r, resp } = await opened({ "content-length": "2" });
    const p = resp.read();
    resp.abort();
    resp.abort();
    expect((await rejection(p)).code).toBe("DOWNLOAD_ABORTED");
    expect(r.closed).toBe(true);
    expect(liveTimers()).toEqual([]);
    r.callback!(4, 1); // a late SDK callback after close changes nothing
    expect((await rejection(resp.read())).code).toBe("DOWNLOAD_ABORTED");
  });
});

describe("ModdableHttpsSource: redirects", () => {
  it("follows a Location to an allowed host, and a path on the same host", async () => {
    const p = source().open({ url: URL0, offset: 0 });
    head(last(), 302, { location: "https://cdn.example.test/b/1.0.5.bin" });
    expect(sdk.requests[0]!.closed).toBe(true);
    await flush();
    expect(last().dictionary).toMatchObject({ host: "cdn.example.test", path: "/b/1.0.5.bin" });
    head(last(), 307, { location: "/c/1.0.5.bin" });
    await flush();
    expect(last().dictionary).toMatchObject({ host: "cdn.example.test", path: "/c/1.0.5.bin" });
    head(last(), 200, { "content-length": "1" });
    expect((await p).status).toBe(200);
    expect(sdk.requests).toHaveLength(3);
  });

  it("refuses a redirect off the allow-list, to http, without Location, and past maxRedirects", async () => {
    let p = source().open({ url: URL0, offset: 0 });
    head(last(), 301, { location: "https://evil.example.test/x.bin" });
    expect((await rejection(p)).code).toBe("DOWNLOAD_HOST_NOT_ALLOWED");

    p = source().open({ url: URL0, offset: 0 });
    head(last(), 302, { location: "http://fw.example.test/x.bin" });
    expect((await rejection(p)).code).toBe("DOWNLOAD_REDIRECT_REFUSED");

    p = source().open({ url: URL0, offset: 0 });
    head(last(), 302, {});
    expect(await rejection(p)).toEqual({ code: "DOWNLOAD_REDIRECT_REFUSED", detail: { status: 302, location: null } });

    p = source({ maxRedirects: 1 }).open({ url: URL0, offset: 0 });
    head(last(), 302, { location: "/a" });
    await flush();
    head(last(), 302, { location: "/b" });
    expect((await rejection(p)).code).toBe("DOWNLOAD_REDIRECT_REFUSED");
  });
});
