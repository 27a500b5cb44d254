/**
 * HMAC-SHA256 (src/core/hmac-sha256.ts) at the block size, where RFC 4231's cases (sas-token.test.ts) do not
 * reach: keys of 63, 64 and 65 bytes (RFC 2104 §2 hashes only a key LONGER than the 64-byte block; one of
 * exactly 64 bytes is used as it is) and an empty message. The expected digests were computed once with
 * OpenSSL's HMAC (Node's crypto.createHmac("sha256", key)) and are kept as literals, so the test runs on XS
 * too, where no other implementation exists.
 */
import { hmacSha256, toHex } from "../../src/core/hmac-sha256";

function ascii(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

/** Key byte i = (7i + 1) mod 256. */
function key(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + 1) & 0xff);
}

describe("HMAC-SHA256 at the block size", () => {
  test.each([
    [63, "1abdbb60150a8b9b5e6a13fd7fadb73ec0940c6b06f43e216ac85a7d07801cf4"],
    [64, "0bf146a9c2c1cafe6b95e671873fe620d43cd4da572970b36821fa79c9098d23"],
    [65, "2e15d4a9a108a19413a78ea53432013357c9df80ff1089c67556864b1290984c"],
  ])("a key of %d bytes", (n, hex) => {
    expect(toHex(hmacSha256(key(n), ascii("a key at the block size")))).toBe(hex);
  });

  it("an empty message", () => {
    expect(toHex(hmacSha256(ascii("key"), new Uint8Array(0)))).toBe("5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0");
  });
});
