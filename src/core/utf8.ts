/**
 * Strict UTF-8 encode/decode in plain JavaScript, so the core needs neither TextDecoder (absent from a
 * stock Moddable build) nor Buffer. Decoding refuses overlong forms, surrogates and truncated sequences
 * (AWS answers such payloads with 415) by throwing SYNC_ENCODING_INVALID.
 */
import { ShadowOtaError } from "./errors";

export function utf8Encode(s: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) { c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00); i++; }
    }
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd; // lone surrogate
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Uint8Array.from(out);
}

export function utf8Decode(bytes: Uint8Array): string {
  let out = "";
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
    if (chunk.length >= 4096) { out += String.fromCharCode.apply(null, chunk); chunk.length = 0; }
    i += n;
  }
  return out + String.fromCharCode.apply(null, chunk);
}
