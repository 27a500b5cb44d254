/**
 * Strict UTF-8 encode/decode in plain JavaScript, so the core needs neither TextDecoder (absent from a
 * stock Moddable build) nor Buffer. Decoding refuses overlong forms, surrogates and truncated sequences
 * (AWS answers such payloads with 415) by throwing SYNC_ENCODING_INVALID.
 */
import { ShadowOtaError } from "./errors";

/** UTF-8 bytes of `s`; a lone surrogate becomes U+FFFD. Walks the string with `for…of` (one code point at a
 *  time): an index loop with charCodeAt(i) is quadratic on XS, whose strings are UTF-8 inside. */
export function utf8Encode(s: string): Uint8Array {
  const out: number[] = [];
  for (const ch of s) {
    let c = ch.codePointAt(0)!;
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd; // lone surrogate (a pair arrives as one code point)
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Uint8Array.from(out);
}

/**
 * Code units handed to one `String.fromCharCode.apply` call. Every argument takes a slot of the XS stack,
 * which holds only a few hundred slots on a device (xsnap's 4096 already overflowed at 4096 arguments), so
 * the batches stay small; they are joined once at the end because `out += piece` copies the whole string
 * each time on XS.
 */
const DECODE_BATCH = 64;

export function utf8Decode(bytes: Uint8Array): string {
  const parts: string[] = [];
  const bad = (i: number): never => {
    throw new ShadowOtaError("SYNC_ENCODING_INVALID", `invalid UTF-8 at byte ${i}`);
  };
  const chunk: number[] = [];
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i]!;
    let cp: number;
    let n: number;
    if (b < 0x80) { cp = b; n = 1; }
    else if (b >= 0xc2 && b <= 0xdf) { cp = b & 0x1f; n = 2; }
    else if (b >= 0xe0 && b <= 0xef) { cp = b & 0x0f; n = 3; }
    else if (b >= 0xf0 && b <= 0xf4) { cp = b & 0x07; n = 4; }
    else return bad(i);
    if (i + n > bytes.length) bad(i);
    for (let k = 1; k < n; k++) {
      const cb = bytes[i + k]!;
      if ((cb & 0xc0) !== 0x80) bad(i + k);
      cp = (cp << 6) | (cb & 0x3f);
    }
    if ((n === 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n === 4 && (cp < 0x10000 || cp > 0x10ffff))) bad(i);
    if (cp >= 0x10000) { cp -= 0x10000; chunk.push(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff)); }
    else chunk.push(cp);
    if (chunk.length >= DECODE_BATCH) { parts.push(String.fromCharCode.apply(null, chunk)); chunk.length = 0; }
    i += n;
  }
  parts.push(String.fromCharCode.apply(null, chunk));
  return parts.join("");
}
