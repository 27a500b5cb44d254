/**
 * Tests of src/core/firmware-url.ts: the seeds' blob names, firmwareUrl's joining and refusals, and
 * urlHost over literal vectors (hosts, ports, IPv6 literals, user info, odd characters). Runs on Node
 * (Jest) and on XS (`npm run test:xs firmware-url`): no Node APIs here.
 */
import { DOWNLOAD_CODES } from "../../src/core/download-errors";
import { awsBlobName, azureBlobName, firmwareUrl, urlHost } from "../../src/core/firmware-url";
import { SEMVER_CODES } from "../../src/core/semver";
import { errorOf } from "./error-of";

describe("blob names", () => {
  it("follow the AWS seed: {version}.bin", () => {
    expect(awsBlobName("1.0.5")).toBe("1.0.5.bin");
    expect(awsBlobName("10.20.30-rc.1")).toBe("10.20.30-rc.1.bin");
  });

  it("follow the Azure seed: v{version with _ for .}.bin", () => {
    expect(azureBlobName("1.1.0")).toBe("v1_1_0.bin");
    expect(azureBlobName("1.1.0-rc.1")).toBe("v1_1_0-rc_1.bin");
  });

  it("refuse a version that is not strict SemVer (nothing of it reaches a URL)", () => {
    for (const bad of ["1.3.0/../../x", "v1.0.0", "1.0", "", "1.0.0?x=1", "1.0.0#f"]) {
      expect(errorOf(() => awsBlobName(bad)).code).toBe(SEMVER_CODES.VERSION_INVALID);
      expect(errorOf(() => azureBlobName(bad)).code).toBe(SEMVER_CODES.VERSION_INVALID);
    }
  });
});

describe("firmwareUrl", () => {
  it("joins the base and the seed's name", () => {
    expect(firmwareUrl("https://127.0.0.1:8443/firmware/", "aws", "1.0.5")).toBe("https://127.0.0.1:8443/firmware/1.0.5.bin");
    expect(firmwareUrl("https://127.0.0.1:8443/firmware/", "azure", "1.1.0")).toBe("https://127.0.0.1:8443/firmware/v1_1_0.bin");
    expect(firmwareUrl("https://[::1]/", "aws", "2.0.0")).toBe("https://[::1]/2.0.0.bin");
  });

  it("refuses a base that is not https, lacks the final slash, or has a query or fragment", () => {
    for (const base of ["http://127.0.0.1/firmware/", "https://127.0.0.1/firmware", "https://h/f/?sig=1/", "https://h/#/",
      "https://user@h/f/", "https://h h/", "ftp://h/", "", "https:///"]) {
      const e = errorOf(() => firmwareUrl(base, "aws", "1.0.0"));
      expect(e.code).toBe(DOWNLOAD_CODES.DOWNLOAD_URL_INVALID);
      expect(e.detail?.["base"]).toBe(base);
    }
  });

  it("refuses a bad version with VERSION_INVALID", () => {
    expect(errorOf(() => firmwareUrl("https://h/", "azure", "1.0.0/../x")).code).toBe(SEMVER_CODES.VERSION_INVALID);
  });
});

describe("urlHost", () => {
  const vectors: Array<[string, string | undefined]> = [
    ["https://127.0.0.1:8443/firmware/1.0.5.bin", "127.0.0.1"],
    ["https://Updates.Example.COM/x", "updates.example.com"],
    ["https://example.com", "example.com"],
    ["https://example.com?x=1", "example.com"],
    ["https://example.com#frag", "example.com"],
    ["https://example.com:443", "example.com"],
    ["HTTPS://EXAMPLE.com/", "example.com"],
    ["http://10.0.0.1/", "10.0.0.1"],
    ["https://[::1]:8443/x", "::1"],
    ["https://[::1]/x", "::1"],
    ["https://[FE80::1]/", "fe80::1"],
    ["https://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1"],
    // refused
    ["https://user:pw@example.com/", undefined],
    ["https://example.com@evil.com/", undefined],
    ["https://example.com\\@evil.com/", undefined],
    ["https://exa mple.com/", undefined],
    ["https://example.com:99999/", undefined],
    ["https://example.com:/", undefined],
    ["https://example.com:12a/", undefined],
    ["https://[::1/", undefined],
    ["https://[::1]x/", undefined],
    ["https://[example.com]/", undefined],
    ["https://::1/", undefined],
    ["https:///path", undefined],
    ["https://exam%70le.com/", undefined],
    ["https://exämple.com/", undefined],
    ["example.com/x", undefined],
    ["//example.com/x", undefined],
    ["https:/example.com", undefined],
    ["https://example.com/\n", undefined],
    ["", undefined],
  ];
  it.each(vectors)("%j → %j", (url, host) => {
    expect(urlHost(url)).toBe(host);
  });

  it("returns undefined for a non-string", () => {
    expect(urlHost(42 as unknown as string)).toBeUndefined();
  });
});

describe("urlHost at the edges of its grammar", () => {
  const vectors: Array<[string, string | undefined]> = [
    // scheme: a letter first, then letters, digits, "+", "-", "."
    ["git+ssh://h.example/x", "h.example"],
    ["a1.-://h.example/", "h.example"],
    ["1https://h.example/", undefined],
    ["+https://h.example/", undefined],
    ["https:h.example/", undefined],
    // the authority ends at the first "/", "?" or "#", whichever comes first
    ["https://h.example?q=/a@b/c", "h.example"],
    ["https://h.example#f?q=/a@b", "h.example"],
    ["https://h.example/p?q#f@x", "h.example"],
    ["https://h.example?q#f/@x", "h.example"],
    ["https://a@h.example?q", undefined],
    // ports: 1 to 5 digits, at most 65535
    ["https://h.example:65535/", "h.example"],
    ["https://h.example:65536/", undefined],
    ["https://h.example:0/", "h.example"],
    ["https://h.example:000443/", undefined],
    ["https://h.example:+443/", undefined],
    ["https://h.example:443:1/", undefined],
    // IPv6 literals: hex digits, ":" and ".", with at least one ":"; only a port may follow "]"
    ["https://[0:0:0:0:0:0:0:1]/", "0:0:0:0:0:0:0:1"],
    ["https://[abcdef::1]/", "abcdef::1"],
    ["https://[1234]/", undefined],
    ["https://[1.2.3.4]/", undefined],
    ["https://[::g]/", undefined],
    ["https://[]/", undefined],
    ["https://[::1]:/", undefined],
    ["https://[::1]:65536/", undefined],
    ["https://[::1]]/", undefined],
    ["https://[g::1]/", undefined],
    ["https://[::1g]/", undefined],
    ["https://[::1]x80/", undefined],
    ["https://[::1]x/", undefined],
    // the scheme is the URL's start, not somewhere inside it
    ["h.example/a://x/", undefined],
    ["_https://h.example/", undefined],
    ["https://x[::1]/", undefined],
    // host names: letters, digits, "-" and "." only
    ["https://h_x.example/", undefined],
    ["https://h.example./", "h.example."],
    ["https://-/", "-"],
    ["https://:443/", undefined],
    // characters refused anywhere in the URL
    ["https://h.example/\"", undefined],
    ["https://h.example/<", undefined],
    ["https://h.example/>", undefined],
    ["https://h.example/^", undefined],
    ["https://h.example/`", undefined],
    ["https://h.example/{", undefined],
    ["https://h.example/|", undefined],
    ["https://h.example/}", undefined],
    ["https://h.example/\u0000", undefined],
    ["https://h.example/\u001f", undefined],
    ["https://h.example/\u007f", undefined],
    ["https://h.example/\u00a0", undefined],
    ["https://h.example/\uffff", undefined],
    ["https://h.example/\t", undefined],
    // just outside the refused set: accepted in the path
    ["https://h.example/!$&'()*+,;=~_[]", "h.example"],
  ];
  it.each(vectors)("%j → %j", (url, host) => {
    expect(urlHost(url)).toBe(host);
  });
});

describe("firmwareUrl's refusals", () => {
  it("takes the scheme in any case and a port", () => {
    expect(firmwareUrl("HTTPS://H.example:8443/fw/", "aws", "1.0.0")).toBe("HTTPS://H.example:8443/fw/1.0.0.bin");
  });

  it("names the refused base in its message and detail, at most 200 characters of it, null for a non-string", () => {
    const long = "http://h/" + "x".repeat(300) + "/";
    const e = errorOf(() => firmwareUrl(long, "aws", "1.0.0"));
    expect(e.message).toBe(`firmware base URL must be an absolute https URL ending with "/", without query or fragment: ${long}`);
    expect(e.detail).toEqual({ base: long.slice(0, 200) });
    const n = errorOf(() => firmwareUrl(7 as unknown as string, "aws", "1.0.0"));
    expect(n.code).toBe(DOWNLOAD_CODES.DOWNLOAD_URL_INVALID);
    expect(n.detail).toEqual({ base: null });
    expect(n.message.endsWith(": 7")).toBe(true);
  });

  it("refuses a base whose host urlHost refuses even when it looks like https with a slash", () => {
    for (const base of ["https://[::1/", "https://h.example:70000/", "https://h<x/"]) {
      expect(errorOf(() => firmwareUrl(base, "aws", "1.0.0")).code).toBe(DOWNLOAD_CODES.DOWNLOAD_URL_INVALID);
    }
  });

  it("refuses a base whose scheme only ends in https, and a non-string that looks like a URL, without throwing anything else", () => {
    expect(errorOf(() => firmwareUrl("xhttps://h.example/", "aws", "1.0.0")).code).toBe(DOWNLOAD_CODES.DOWNLOAD_URL_INVALID);
    const looksLikeOne = { toString: () => "https://h.example/" } as unknown as string;
    expect(errorOf(() => firmwareUrl(looksLikeOne, "aws", "1.0.0")).code).toBe(DOWNLOAD_CODES.DOWNLOAD_URL_INVALID);
    expect(urlHost(looksLikeOne)).toBeUndefined();
  });

  it("refuses a seed other than aws and azure as a programming error", () => {
    expect(() => firmwareUrl("https://h/", "gcp" as never, "1.0.0")).toThrow(new TypeError('seed must be "aws" or "azure", not gcp'));
  });
});
