/**
 * The pure checks of the Moddable HTTPS byte source (src/device/http-range.ts): URL → target, redirects,
 * request headers, Content-Range grammar, ETag strength and the response-head verdicts, with literal
 * vectors and a few generated ones. Runs on Node; the module imports nothing from the SDK.
 */
import fc from "fast-check";
import { isShadowOtaError } from "../../src/core/errors";
import {
  checkResponseHead, httpsTarget, isStrongEtag, parseContentRange, redirectUrl, requestHeaders, type ResponseHeaders,
} from "../../src/device/http-range";

function codeOf(fn: () => unknown): { code: string; detail: Record<string, unknown> | undefined } {
  try {
    fn();
  } catch (e) {
    if (isShadowOtaError(e)) return { code: e.code, detail: e.detail };
    throw e;
  }
  throw new Error("did not throw");
}

describe("httpsTarget", () => {
  it.each([
    ["https://fw.example.test/firmware/1.0.5.bin", { host: "fw.example.test", port: 443, path: "/firmware/1.0.5.bin" }],
    ["https://FW.Example.test:8443/a/b.bin?sig=x%2F1", { host: "fw.example.test", port: 8443, path: "/a/b.bin?sig=x%2F1" }],
    ["https://10.0.0.7", { host: "10.0.0.7", port: 443, path: "/" }],
    ["https://h.example?q=1", { host: "h.example", port: 443, path: "/?q=1" }],
    ["https://h.example/x.bin#frag", { host: "h.example", port: 443, path: "/x.bin" }],
  ])("reads %s", (url, target) => {
    expect(httpsTarget(url)).toEqual(target);
  });

  it.each([
    ["http://fw.example.test/x.bin", "is not https"],
    ["ftp://fw.example.test/x.bin", "is not https"],
    ["https://user@fw.example.test/x.bin", "has a host this adapter does not read unambiguously"],
    ["https://fw.example.test\\@evil.test/x.bin", "has a host this adapter does not read unambiguously"],
    ["https://[::1]:8443/x.bin", "names an IPv6 literal, which the SDK's socket does not take"],
    ["https://fw.example.test:0/x.bin", "has port 0"],
    ["https://fw.example.test:99999/x.bin", "has a host this adapter does not read unambiguously"],
    ["https://fw.example.test/" + "a".repeat(2048), "is not a string of at most 2048 characters"],
  ])("refuses %s (%s)", (url, reason) => {
    expect(codeOf(() => httpsTarget(url))).toEqual({ code: "DOWNLOAD_URL_INVALID", detail: { url: url.slice(0, 200), reason } });
  });

  it("refuses a non-string", () => {
    expect(codeOf(() => httpsTarget(7)).code).toBe("DOWNLOAD_URL_INVALID");
  });
});

describe("redirectUrl", () => {
  const from = { host: "a.example", port: 8443, path: "/x" };
  it("keeps an https URL and puts a path on the same host and port", () => {
    expect(redirectUrl("https://b.example/y.bin", from)).toBe("https://b.example/y.bin");
    expect(redirectUrl("/y.bin?s=1", from)).toBe("https://a.example:8443/y.bin?s=1");
    expect(redirectUrl("/y.bin", { ...from, port: 443 })).toBe("https://a.example/y.bin");
  });
  it.each(["http://b.example/y.bin", "//b.example/y.bin", "y.bin", "../y.bin", "javascript:1"])("refuses %s", (loc) => {
    expect(redirectUrl(loc, from)).toBeUndefined();
  });
});

describe("requestHeaders", () => {
  const t = { host: "fw.example.test", port: 443, path: "/x.bin" };
  it("asks for the whole object without Range at offset 0 (and never If-Range alone)", () => {
    expect(requestHeaders(t, 0, '"e1"', "ua")).toEqual([
      "Host", "fw.example.test", "Accept", "application/octet-stream", "Accept-Encoding", "identity", "User-Agent", "ua",
    ]);
  });
  it("resumes with Range and If-Range, and names a non-default port in Host", () => {
    expect(requestHeaders({ ...t, port: 8443 }, 4096, '"e1"', "ua")).toEqual([
      "Host", "fw.example.test:8443", "Accept", "application/octet-stream", "Accept-Encoding", "identity", "User-Agent", "ua",
      "Range", "bytes=4096-", "If-Range", '"e1"',
    ]);
    expect(requestHeaders(t, 10, undefined, "ua").slice(-2)).toEqual(["Range", "bytes=10-"]);
  });
  it("refuses a weak or malformed etag", () => {
    expect(() => requestHeaders(t, 10, 'W/"e1"', "ua")).toThrow(TypeError);
    expect(() => requestHeaders(t, 10, "e1", "ua")).toThrow(TypeError);
  });
});

describe("isStrongEtag", () => {
  it.each([['"abc"', true], ['""', true], ['"a-b_c.d"', true], ['W/"abc"', false], ["abc", false], ['"a"b"', false], ['"a b"', false], [7, false]])(
    "%j → %s", (v, strong) => { expect(isStrongEtag(v)).toBe(strong); });
});

describe("parseContentRange (RFC 9110 §14.4)", () => {
  it.each([
    ["bytes 0-99/100", { first: 0, last: 99, complete: 100 }],
    ["bytes 4096-8191/*", { first: 4096, last: 8191, complete: undefined }],
    [" bytes 5-5/6 ", { first: 5, last: 5, complete: 6 }],
  ])("%j", (v, r) => { expect(parseContentRange(v)).toEqual(r); });
  it.each(["bytes 5-4/10", "bytes 0-10/10", "bytes */100", "items 0-1/2", "bytes 0-1", "bytes -1-2/3", "bytes 0-1/2, bytes 3-4/5", "bytes 1234567890123456-1234567890123457/*"])(
    "refuses %j", (v) => { expect(parseContentRange(v)).toBeUndefined(); });
  it("round-trips every well-formed range", () => {
    fc.assert(fc.property(fc.nat(1e12), fc.nat(1e6), fc.option(fc.nat(1e6)), (first, len, extra) => {
      const last = first + len;
      const complete = extra === null ? undefined : last + 1 + extra;
      expect(parseContentRange(`bytes ${first}-${last}/${complete ?? "*"}`)).toEqual({ first, last, complete });
    }));
  });
});

describe("checkResponseHead", () => {
  const h = (o: Record<string, string | string[]>): ResponseHeaders =>
    Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Array.isArray(v) ? v : [v]]));

  it("takes a 200 as the whole object from 0 with its length and strong ETag", () => {
    expect(checkResponseHead(200, h({ "content-length": "1000", etag: '"v1"', "content-type": "application/octet-stream" }), 0, "w")).toEqual({
      status: 200, start: 0, total: 1000, expected: 1000, etag: '"v1"', checkMagic: true, contentType: "application/octet-stream", chunked: false,
    });
  });

  it("takes a 200 to a resume as a restart from 0 (If-Range did not match)", () => {
    expect(checkResponseHead(200, h({ "content-length": "10" }), 4096, "w")).toMatchObject({ start: 0, total: 10, checkMagic: true });
  });

  it("takes a 206 at the asked offset, without the magic check", () => {
    expect(checkResponseHead(206, h({ "content-range": "bytes 4096-9999/10000", "content-length": "5904", etag: 'W/"weak"' }), 4096, "w")).toEqual({
      status: 206, start: 4096, total: 10000, expected: 5904, etag: undefined, checkMagic: false, contentType: null, chunked: false,
    });
    expect(checkResponseHead(206, h({ "content-range": "bytes 10-19/*", "transfer-encoding": "chunked" }), 10, "w"))
      .toMatchObject({ total: undefined, expected: 10, chunked: true });
  });

  it("takes a chunked 200 without a length", () => {
    expect(checkResponseHead(200, h({ "transfer-encoding": "Chunked" }), 0, "w")).toMatchObject({ total: undefined, expected: undefined, chunked: true });
  });

  it.each([
    [206, { "content-range": "bytes 0-9/10" }, 4096, "DOWNLOAD_RANGE_INVALID"],
    [206, { "content-range": "bytes 4096-4105/10000", "content-length": "11" }, 4096, "DOWNLOAD_RANGE_INVALID"],
    [206, {}, 4096, "DOWNLOAD_RANGE_INVALID"],
    [206, { "content-range": ["bytes 4096-4105/10000", "bytes 4096-4105/10000"] }, 4096, "DOWNLOAD_RANGE_INVALID"],
    [206, { "content-range": "bytes */10000" }, 4096, "DOWNLOAD_RANGE_INVALID"],
    [404, {}, 0, "DOWNLOAD_HTTP_STATUS"],
    [416, { "content-range": "bytes */10" }, 10, "DOWNLOAD_HTTP_STATUS"],
    [304, {}, 0, "DOWNLOAD_HTTP_STATUS"],
    [200, { "content-type": "text/html; charset=utf-8" }, 0, "DOWNLOAD_NOT_AN_IMAGE"],
    [200, { "content-length": "0" }, 0, "DOWNLOAD_NOT_AN_IMAGE"],
    [200, { "content-length": "1x" }, 0, "DOWNLOAD_CONNECT"],
    [200, { "content-length": ["10", "11"] }, 0, "DOWNLOAD_CONNECT"],
    [200, { "content-length": "10", "transfer-encoding": "chunked" }, 0, "DOWNLOAD_CONNECT"],
    [200, { "transfer-encoding": "gzip, chunked" }, 0, "DOWNLOAD_CONNECT"],
  ])("%d %j for offset %d → %s", (status, headers, offset, code) => {
    expect(codeOf(() => checkResponseHead(status, h(headers as Record<string, string | string[]>), offset, "w")).code).toBe(code);
  });

  it("names the status, and the malformed-response reason in phase headers", () => {
    expect(codeOf(() => checkResponseHead(503, {}, 0, "w")).detail).toEqual({ status: 503 });
    expect(codeOf(() => checkResponseHead(200, h({ "content-length": "-1" }), 0, "w")).detail)
      .toEqual({ errno: "MALFORMED_RESPONSE", phase: "headers", reason: "Content-Length -1" });
  });

  it("accepts a repeated identical Content-Length", () => {
    expect(checkResponseHead(200, h({ "content-length": ["10", " 10"] }), 0, "w").expected).toBe(10);
  });
});
