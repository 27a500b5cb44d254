/**
 * The signing key reaches the C core through the xsmc binding as it does through N-API: the same argument
 * position, the same check. This machine cannot run ota_xs.c (it needs XS linked with the host flash), so
 * the test reads the sources:
 * - src/native/xs/ota-slot-xs.ts (TypeScript compiler API): every NativeOta method declares the parameters
 *   of NativeOtaVerbs (src/native/ota-slot-session.ts), same names, same order, and passes exactly those
 *   parameters, in that order, to its native("xs_ota_…") function. TypeScript alone does not catch a
 *   method with fewer parameters, nor a call that drops one: the class once dropped signingKey that way.
 * - src/native/xs/ota_xs.c and src/native/napi/ota_napi.c: the index each reads the key from (and the
 *   offset of the config arguments) is the key's position in the TypeScript verb, and both parse it with
 *   ota_sign_key_set and throw a RangeError with the same message.
 * Controls: the checks refuse the old bug (a call without signingKey), a method without the parameter and
 * a C binding that reads the key from another index.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import ts from "typescript";

const ROOT = path.resolve(__dirname, "..", "..");
const read = (p: string): string => fs.readFileSync(path.join(ROOT, p), "utf8");
const XS_TS = read("src/native/xs/ota-slot-xs.ts");
const SESSION_TS = read("src/native/ota-slot-session.ts");
const XS_C = read("src/native/xs/ota_xs.c");
const NAPI_C = read("src/native/napi/ota_napi.c");

function parse(text: string): ts.SourceFile {
  return ts.createSourceFile("x.ts", text, ts.ScriptTarget.ES2022, true);
}

/** Parameter names of each method of the interface NativeOtaVerbs. */
function verbParams(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  parse(text).forEachChild(function visit(n): void {
    if (ts.isInterfaceDeclaration(n) && n.name.text === "NativeOtaVerbs") {
      for (const m of n.members) {
        if (ts.isMethodSignature(m) && ts.isIdentifier(m.name)) out.set(m.name.text, m.parameters.map((p) => p.name.getText()));
      }
    }
    n.forEachChild(visit);
  });
  return out;
}

/** Problems of class NativeOta in `text` against the verbs: declared parameters and what is passed to native(). */
function xsClassProblems(text: string, verbs: Map<string, string[]>): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  parse(text).forEachChild(function visit(n): void {
    if (ts.isClassDeclaration(n) && n.name?.text === "NativeOta") {
      for (const m of n.members) {
        if (!ts.isMethodDeclaration(m) || !ts.isIdentifier(m.name)) continue;
        const name = m.name.text;
        const want = verbs.get(name);
        if (want === undefined) continue;
        seen.add(name);
        const declared = m.parameters.map((p) => p.name.getText());
        if (declared.join(",") !== want.join(",")) problems.push(`${name}(${declared.join(", ")}) declares other parameters than NativeOtaVerbs.${name}(${want.join(", ")})`);
        let calls = 0;
        m.forEachChild(function find(c): void {
          // native("xs_ota_…").call(this, a, b, …)
          if (ts.isCallExpression(c) && ts.isPropertyAccessExpression(c.expression) && c.expression.name.text === "call" &&
              ts.isCallExpression(c.expression.expression) && c.expression.expression.expression.getText() === "native") {
            calls++;
            const passed = c.arguments.slice(1).map((a) => a.getText());
            if (c.arguments[0]?.getText() !== "this") problems.push(`${name}: native call without this`);
            if (passed.join(",") !== want.join(",")) problems.push(`${name} passes (${passed.join(", ")}) to native, not (${want.join(", ")})`);
          }
          c.forEachChild(find);
        });
        if (calls !== 1) problems.push(`${name}: ${calls} native calls`);
      }
    }
    n.forEachChild(visit);
  });
  for (const v of verbs.keys()) if (!seen.has(v)) problems.push(`NativeOta has no ${v}`);
  return problems;
}

/** The body of a C function `void name(` / `static napi_value name(` up to its closing brace at column 0. */
function cBody(text: string, name: string): string {
  const start = text.search(new RegExp(`^[a-z_ ]*\\b${name}\\(`, "m"));
  if (start < 0) throw new Error(`no function ${name}`);
  const end = text.indexOf("\n}\n", start);
  return text.slice(start, end);
}

/** In ota_xs.c: the argument index of the key (arg_sign_key) and of imageSize (arg_config) in a verb. */
function xsIndexes(text: string, fn: string): { config: number; key: number } {
  const b = cBody(text, fn);
  const config = /arg_config\(the, (\d+),/.exec(b);
  const key = /arg_sign_key\(the, (\d+),/.exec(b);
  if (config === null || key === null) throw new Error(`${fn}: no arg_config / arg_sign_key`);
  return { config: Number(config[1]), key: Number(key[1]) };
}

/** In ota_napi.c: read_cfg reads imageSize at argv[c] and the key at argv[k] of what it is given; a verb
 *  passes `argv` or `argv + n`. */
function napiIndexes(text: string, fn: string): { config: number; key: number } {
  const rc = cBody(text, "read_cfg");
  const c = /arg_u32\(env, argv\[(\d+)\], "imageSize"/.exec(rc);
  const k = /napi_typeof\(env, argv\[(\d+)\], &t\)/.exec(rc);
  const shift = /read_cfg\(env, argv(?: \+ (\d+))?, s, &cfg\)/.exec(cBody(text, fn));
  if (c === null || k === null || shift === null) throw new Error(`${fn}: read_cfg's shape changed`);
  const by = Number(shift[1] ?? 0);
  return { config: Number(c[1]) + by, key: Number(k[1]) + by };
}

const verbs = verbParams(SESSION_TS);

describe("the xsmc binding takes the signing key where the N-API binding does", () => {
  it("NativeOtaVerbs declares signingKey on begin and resume", () => {
    expect(verbs.get("begin")).toEqual(["imageSize", "requireHash", "minSecureVersion", "signingKey"]);
    expect(verbs.get("resume")).toEqual(["offset", "imageSize", "requireHash", "minSecureVersion", "signingKey"]);
  });

  it("ota-slot-xs.ts: every NativeOta method declares and passes on exactly the verb's parameters", () => {
    expect(xsClassProblems(XS_TS, verbs)).toEqual([]);
  });

  it.each([["begin", "xs_ota_begin", "js_begin"], ["resume", "xs_ota_resume", "js_resume"]])(
    "%s: ota_xs.c and ota_napi.c read imageSize and signingKey at their TypeScript positions",
    (verb, xsFn, napiFn) => {
      const params = verbs.get(verb)!;
      const want = { config: params.indexOf("imageSize"), key: params.indexOf("signingKey") };
      expect(xsIndexes(XS_C, xsFn)).toEqual(want);
      expect(napiIndexes(NAPI_C, napiFn)).toEqual(want);
    },
  );

  it("both parse the key with ota_sign_key_set and refuse it with the same RangeError, before the session is dropped", () => {
    const message = "signingKey must be an ECDSA P-256 public key, 91-byte DER SubjectPublicKeyInfo";
    expect(cBody(XS_C, "arg_sign_key")).toContain("ota_sign_key_set(key, data, size) != ESP_OK");
    expect(cBody(XS_C, "arg_sign_key")).toContain(`xsRangeError("${message}")`);
    expect(cBody(NAPI_C, "read_cfg")).toContain("ota_sign_key_set(&key, data, length) != ESP_OK");
    expect(cBody(NAPI_C, "read_cfg")).toContain(`"${message}"`);
    for (const fn of ["xs_ota_begin", "xs_ota_resume"]) {
      const b = cBody(XS_C, fn);
      expect(b.indexOf("arg_sign_key(")).toBeGreaterThan(-1);
      expect(b.indexOf("arg_sign_key(")).toBeLessThan(b.indexOf("drop_session(o)"));
    }
  });

  describe("controls: the checks see the mismatches they are for", () => {
    it("the old bug: begin declared without signingKey and a call that drops it", () => {
      const old = XS_TS
        .replace("begin(imageSize: number, requireHash: boolean, minSecureVersion: number, signingKey: Uint8Array | null)", "begin(imageSize: number, requireHash: boolean, minSecureVersion: number)")
        .replace("call(this, imageSize, requireHash, minSecureVersion, signingKey)", "call(this, imageSize, requireHash, minSecureVersion)");
      expect(old).not.toBe(XS_TS);
      expect(xsClassProblems(old, verbs)).toEqual([
        "begin(imageSize, requireHash, minSecureVersion) declares other parameters than NativeOtaVerbs.begin(imageSize, requireHash, minSecureVersion, signingKey)",
        "begin passes (imageSize, requireHash, minSecureVersion) to native, not (imageSize, requireHash, minSecureVersion, signingKey)",
      ]);
    });

    it("a call that passes the key in another position", () => {
      const swapped = XS_TS.replace(
        "call(this, offset, imageSize, requireHash, minSecureVersion, signingKey)",
        "call(this, offset, imageSize, requireHash, signingKey, minSecureVersion)",
      );
      expect(swapped).not.toBe(XS_TS);
      expect(xsClassProblems(swapped, verbs)).toHaveLength(1);
    });

    it("a C binding reading the key from another index", () => {
      const moved = XS_C.replace("arg_sign_key(the, 4, &key)", "arg_sign_key(the, 5, &key)");
      expect(moved).not.toBe(XS_C);
      expect(xsIndexes(moved, "xs_ota_resume").key).toBe(5);
      expect(xsIndexes(moved, "xs_ota_resume")).not.toEqual({ config: 1, key: 4 });
    });
  });
});
