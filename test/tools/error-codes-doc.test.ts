/**
 * docs/error-codes.md is generated from the code tables (src/tools/error-codes-doc.ts). These tests keep the
 * contract honest: the committed document is exactly what the sources generate, the reader refuses tables
 * it cannot document, and no module throws a ShadowOtaError with a code literal that no table lists.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { DOC_PATH, readCodeTable, renderErrorCodes } from "../../src/tools/error-codes-doc";

const ROOT = path.resolve(__dirname, "..", "..");

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) { if (name !== "build" && name !== "node_modules") out.push(...tsFiles(p)); }
    else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

describe("docs/error-codes.md", () => {
  it("is what `tsx src/tools/error-codes-doc.ts --write` generates from the sources", () => {
    expect(readFileSync(DOC_PATH, "utf8")).toBe(renderErrorCodes());
  });

  it("lists every code literal a module throws", () => {
    const documented = new Set([...readFileSync(DOC_PATH, "utf8").matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]));
    const thrown: string[] = [];
    let literals = 0;
    for (const file of tsFiles(path.join(ROOT, "src"))) {
      for (const m of readFileSync(file, "utf8").matchAll(/new ShadowOtaError\(\s*"([A-Z0-9_]+)"/g)) {
        literals++;
        if (!documented.has(m[1]!)) thrown.push(`${path.relative(ROOT, file)}: ${m[1]}`);
      }
    }
    expect(literals).toBeGreaterThan(5); // the scan found the literal throws json.ts and utf8.ts make
    expect(thrown).toEqual([]);
  });
});

describe("readCodeTable", () => {
  it("reads members with their comments", () => {
    const src = 'export const X_CODES = {\n  /** First line\n   *  second. */\n  X_ONE: "X_ONE",\n  /** Two. */\n  X_TWO: "X_TWO",\n} as const;';
    expect(readCodeTable(src, "X_CODES")).toEqual([{ code: "X_ONE", doc: "First line second." }, { code: "X_TWO", doc: "Two." }]);
  });
  it("refuses a member without a comment, a value that is not the name, and a missing table", () => {
    expect(() => readCodeTable('export const X_CODES = {\n  X_ONE: "X_ONE",\n} as const;', "X_CODES")).toThrow(/no doc comment/);
    expect(() => readCodeTable('export const X_CODES = {\n  /** a */ X_ONE: "X_1",\n} as const;', "X_CODES")).toThrow(/not its name/);
    expect(() => readCodeTable("", "X_CODES")).toThrow(/no 'export const X_CODES/);
  });
});
