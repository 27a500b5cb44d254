/**
 * One table of OTA error numbers (src/native/core/ota_errors.def) feeds everything:
 *   - the generated regions (OTA_CODES and the number → code map in src/native/ota-errors.ts, the error
 *     table in docs/native-ota.md) are exactly what scripts/gen-ota-errors.ts renders from it now;
 *   - the C side, compiled here from the same file: every number's name and meaning and the one message
 *     format both bindings throw (ota_err_format), and, against ESP-IDF-shaped headers, the build refuses a
 *     table that disagrees with ESP-IDF's value;
 *   - the TypeScript map gives every number the table's code;
 *   - the generator refuses a table it would render wrongly (duplicate number, unknown code, stray line).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { DEF_PATH, hex, parseOtaErrorsDef, renderTargets } from "../../scripts/gen-ota-errors";
import { OTA_CODES, otaCodeFor } from "../../src/native/ota-errors";

const ROOT = path.resolve(__dirname, "..", "..");
const CORE = path.join(ROOT, "src", "native", "core");
const STUBS = path.join(ROOT, "test", "native", "esp32-stubs");
const table = parseOtaErrorsDef(fs.readFileSync(DEF_PATH, "utf8"));
const CC = process.env.CC ?? "cc";

let dir = "";
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ota-errors-"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function compile(name: string, source: string, args: string[]): { status: number | null; out: string; bin: string } {
  const file = path.join(dir, `${name}.c`);
  const bin = path.join(dir, name);
  fs.writeFileSync(file, source);
  const r = spawnSync(CC, ["-std=c11", "-Wall", "-Wextra", "-Werror", ...args, file, "-o", bin], { encoding: "utf8" });
  return { status: r.status, out: r.stdout + r.stderr, bin };
}

describe("the generated TypeScript and docs", () => {
  it.each(renderTargets().map((t) => [path.relative(ROOT, t.file), t] as const))(
    "%s is what `npx tsx scripts/gen-ota-errors.ts --write` renders",
    (_f, t) => {
      expect(t.now).toBe(t.want);
    },
  );

  it("docs/native-ota.md mentions every OTA code", () => {
    const doc = fs.readFileSync(path.join(ROOT, "docs", "native-ota.md"), "utf8");
    for (const code of Object.values(OTA_CODES)) expect(doc).toContain(`\`${code}\``);
  });
});

describe("the table", () => {
  it("keeps the published numbers (docs/error-codes.md) and one code per number", () => {
    expect(table.numbers.length).toBeGreaterThanOrEqual(34);
    const byName = new Map(table.numbers.map((n) => [n.name, n.number]));
    // A sample of the contract: renumbering any of these breaks devices in the field.
    expect(byName.get("OTA_ERR_IMAGE_MAGIC")).toBe(0x7101);
    expect(byName.get("OTA_ERR_IMAGE_RESUME_MISMATCH")).toBe(0x710e);
    expect(byName.get("OTA_ERR_SIM_NO_BOOTABLE_APP")).toBe(0x7204);
    expect(byName.get("ESP_ERR_OTA_ROLLBACK_INVALID_STATE")).toBe(0x1506);
    expect(Object.keys(OTA_CODES)).toEqual(table.codes.map((c) => c.code));
  });

  it.each(table.numbers.map((n) => [hex(n.number), n] as const))("%s maps to the table's code in TypeScript", (_h, n) => {
    expect(otaCodeFor(n.number)).toBe(n.code);
  });

  it("ranges and unknown numbers", () => {
    expect(otaCodeFor(0x6000)).toBe(OTA_CODES.OTA_FLASH_ERROR);
    expect(otaCodeFor(0x60ff)).toBe(OTA_CODES.OTA_FLASH_ERROR);
    expect(otaCodeFor(0x6100)).toBe(OTA_CODES.OTA_PLATFORM_ERROR);
    expect(otaCodeFor(0x7205)).toBe(OTA_CODES.OTA_PLATFORM_ERROR);
  });
});

describe("the C side of the same table", () => {
  it("names, meanings and the one message format (ota_err_format) for every number, compiled from ota_errors.def", () => {
    const numbers = table.numbers.map((n) => String(n.number)).join(", ");
    const src = `#include <stdio.h>
#include "ota_errors.h"
static const int numbers[] = { ${numbers} };
int main(void) {
  char msg[96];
  for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
    ota_err_format(msg, sizeof(msg), "write", numbers[i]);
    printf("%d\\t%s\\t%s\\t%s\\n", numbers[i], ota_err_name(numbers[i]), ota_err_meaning(numbers[i]), msg);
  }
  ota_err_format(msg, sizeof(msg), "begin", 0x1234);
  printf("unknown\\t%s\\t[%s]\\t%s\\n", ota_err_name(0x1234), ota_err_meaning(0x1234), msg);
  printf("enum\\t%d\\t%d\\t%d\\n", OTA_ERR_IMAGE_MAGIC, OTA_ERR_SIM_POWER_LOST, ESP_ERR_OTA_VALIDATE_FAILED);
  return 0;
}
`;
    const c = compile("names", src, [`-I${CORE}`, path.join(CORE, "ota_errors.c")]);
    expect(c.out).toBe("");
    expect(c.status).toBe(0);
    const lines = spawnSync(c.bin, { encoding: "utf8" }).stdout.trim().split("\n");
    const rows = lines.slice(0, table.numbers.length).map((l) => l.split("\t"));
    expect(rows).toEqual(
      table.numbers.map((n) => [String(n.number), n.name, n.meaning, `write: ${n.name} (0x${(n.number >>> 0).toString(16).toUpperCase()})`]),
    );
    expect(lines.at(-2)).toBe("unknown\tesp_err_t\t[]\tbegin: esp_err_t (0x1234)");
    expect(lines.at(-1)).toBe(`enum\t${0x7101}\t${0x7201}\t${0x1503}`);
  });

  it("the ESP32 build checks the table against ESP-IDF's own values (control: a stub that disagrees is refused)", () => {
    const src = '#include "ota_errors.h"\nint main(void) { return OTA_ERR_IMAGE_MAGIC == 0x7101 ? 0 : 1; }\n';
    const ok = compile("esp-ok", src, ["-fsyntax-only", "-DESP_PLATFORM", `-I${CORE}`, `-I${STUBS}`]);
    expect(ok.out).toBe("");
    expect(ok.status).toBe(0);
    const wrong = path.join(dir, "wrong-stubs");
    fs.mkdirSync(wrong, { recursive: true });
    for (const f of fs.readdirSync(STUBS)) fs.copyFileSync(path.join(STUBS, f), path.join(wrong, f));
    const errH = path.join(wrong, "esp_err.h");
    fs.writeFileSync(errH, fs.readFileSync(errH, "utf8").replace(/#define ESP_ERR_NO_MEM 0x101/, "#define ESP_ERR_NO_MEM 0x111"));
    const bad = compile("esp-bad", src, ["-fsyntax-only", "-DESP_PLATFORM", `-I${CORE}`, `-I${wrong}`]);
    expect(bad.status).not.toBe(0);
    expect(bad.out).toContain("ota_errors.def: ESP_ERR_NO_MEM differs from the ESP-IDF value");
  });

  it("a number listed twice does not compile (every lookup case is a number)", () => {
    const def = fs.readFileSync(DEF_PATH, "utf8") + 'OTA_CORE_ERR(OTA_ERR_TWICE, 0x7101, OTA_IMAGE_BAD_MAGIC, "again")\n';
    const copy = path.join(dir, "dup");
    fs.mkdirSync(copy, { recursive: true });
    for (const f of ["ota_errors.h", "ota_errors.c"]) fs.copyFileSync(path.join(CORE, f), path.join(copy, f));
    fs.writeFileSync(path.join(copy, "ota_errors.def"), def);
    const r = compile("dup", "int main(void) { return 0; }\n", ["-fsyntax-only", path.join(copy, "ota_errors.c")]);
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/duplicate case value/);
  });
});

describe("the generator refuses a table it would render wrongly", () => {
  const head = 'OTA_CODE(OTA_A, "a")\nOTA_CORE_ERR(OTA_ERR_A, 0x7101, OTA_A, "a")\n';
  it.each([
    ["a number listed twice", `${head}OTA_CORE_ERR(OTA_ERR_B, 0x7101, OTA_A, "b")\n`, /number 0x7101 listed twice/],
    ["a number whose code has no OTA_CODE line", `${head}OTA_CORE_ERR(OTA_ERR_B, 0x7102, OTA_B, "b")\n`, /OTA_B has no OTA_CODE line/],
    ["a code defined twice", `${head}OTA_CODE(OTA_A, "again")\n`, /code OTA_A defined twice/],
    ["a line it does not understand", `${head}OTA_CORE_ERR(OTA_ERR_B, 0x7102, OTA_A)\n`, /not an entry/],
  ])("%s", (_n, text, message) => {
    expect(() => parseOtaErrorsDef(text)).toThrow(message);
    expect(() => parseOtaErrorsDef(head)).not.toThrow();
  });
});
