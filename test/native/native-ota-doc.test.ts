/**
 * docs/native-ota.md's error table agrees with the sources: each row's platform number maps to the row's
 * code in src/native/ota-errors.ts, the row's C name has that number in src/native/core/ota_errors.h, and
 * every OTA code is documented. A data check on the doc; it does not test the native module itself.
 */
import * as fs from "node:fs";
import * as path from "node:path";

import { OTA_CODES, otaCodeFor } from "../../src/native/ota-errors";

const ROOT = path.resolve(__dirname, "..", "..");
const doc = fs.readFileSync(path.join(ROOT, "docs", "native-ota.md"), "utf8");
const header = fs.readFileSync(path.join(ROOT, "src", "native", "core", "ota_errors.h"), "utf8");

/** `#define NAME 0x1234` and `#define NAME (BASE + 0x12)` from ota_errors.h, resolved. */
function cDefines(text: string): Map<string, number> {
  const raw = new Map<string, string>();
  for (const m of text.matchAll(/^#define\s+([A-Z0-9_]+)\s+(.+?)\s*(?:\/\*.*)?$/gm)) {
    if (!raw.has(m[1]!)) raw.set(m[1]!, m[2]!);
  }
  const value = (name: string, depth = 0): number | undefined => {
    const e = raw.get(name);
    if (e === undefined || depth > 5) return undefined;
    const lit = /^\(?(-?(?:0x[0-9a-f]+|\d+))u?\)?$/i.exec(e);
    if (lit) return Number(lit[1]);
    const sum = /^\(([A-Z0-9_]+)\s*\+\s*(0x[0-9a-f]+|\d+)\)$/i.exec(e);
    if (sum) {
      const base = value(sum[1]!, depth + 1);
      return base === undefined ? undefined : base + Number(sum[2]);
    }
    return undefined;
  };
  const out = new Map<string, number>();
  for (const name of raw.keys()) {
    const v = value(name);
    if (v !== undefined) out.set(name, v);
  }
  return out;
}

const rows = [...doc.matchAll(/^\| (0x[0-9A-F]+) \| `([A-Z0-9_]+)` \| `([A-Z_]+)` \|/gm)].map((m) => ({
  number: Number(m[1]),
  cName: m[2]!,
  code: m[3]!,
}));
const defines = cDefines(header);

describe("docs/native-ota.md error table", () => {
  it("has a row per platform number", () => {
    expect(rows.length).toBeGreaterThanOrEqual(30);
    expect(new Set(rows.map((r) => r.number)).size).toBe(rows.length);
  });

  it.each(rows.map((r) => [`0x${r.number.toString(16)}`, r] as const))("%s: number → code and C name agree", (_n, r) => {
    expect(otaCodeFor(r.number)).toBe(r.code);
    expect(defines.get(r.cName)).toBe(r.number);
  });

  it("mentions every OTA code", () => {
    for (const code of Object.values(OTA_CODES)) expect(doc).toContain(`\`${code}\``);
  });
});
