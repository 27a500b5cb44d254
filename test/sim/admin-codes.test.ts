/**
 * The admin API's own error codes (ADMIN_CODES in src/sim/cloud-errors.ts) are a table like every other
 * code family: every ADMIN_* code the sources or the docs name is a member, no module writes one as a bare
 * string literal (they come from the table), every member is used and is listed in docs/error-codes.md; and
 * a running local cloud's admin API answers the refusals a user can cause with those codes and the HTTP
 * status each member's comment gives.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ADMIN_CODES } from "../../src/sim/cloud-errors";
import { LocalCloud } from "../../src/sim/local-cloud";
import { DOC_PATH, readCodeTable } from "../../src/tools/error-codes-doc";

jest.setTimeout(60_000);

const ROOT = path.resolve(__dirname, "..", "..");
const TABLE_FILE = path.join(ROOT, "src", "sim", "cloud-errors.ts");
const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki"); // shared across tests: RSA keys take time

function files(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) { if (name !== "build" && name !== "node_modules") out.push(...files(p, ext)); }
    else if (ext.test(name)) out.push(p);
  }
  return out;
}

const members = new Set<string>(Object.values(ADMIN_CODES));
/** ADMIN_* as a whole word (CLOUD_ADMIN_URL_INVALID is a CLOUD code, not one of these). */
const WORD = /(?<![A-Z0-9_])ADMIN_[A-Z0-9_]+/g;

describe("ADMIN_CODES", () => {
  const sources = files(path.join(ROOT, "src"), /\.(ts|js|cjs)$/).filter((f) => !f.endsWith(".d.ts"));

  it("holds every ADMIN_* code the sources and the docs name", () => {
    const unknown: string[] = [];
    let seen = 0;
    for (const f of [...sources, ...files(path.join(ROOT, "docs"), /\.md$/), path.join(ROOT, "README.md")]) {
      for (const m of readFileSync(f, "utf8").matchAll(WORD)) {
        if (m[0] === "ADMIN_CODES") continue;
        seen++;
        if (!members.has(m[0])) unknown.push(`${path.relative(ROOT, f)}: ${m[0]}`);
      }
    }
    expect(seen).toBeGreaterThan(members.size); // the scan found the table and its uses
    expect(unknown).toEqual([]);
  });

  it("is the only place a code is spelled out: modules use ADMIN_CODES.X, never a string literal", () => {
    const literals: string[] = [];
    for (const f of sources) {
      if (f === TABLE_FILE) continue;
      for (const m of readFileSync(f, "utf8").matchAll(/["'`](ADMIN_[A-Z0-9_]+)["'`]/g)) {
        if (m[1] !== "ADMIN_CODES") literals.push(`${path.relative(ROOT, f)}: ${m[1]}`); // the table's name (error-codes-doc.ts)
      }
    }
    expect(literals).toEqual([]);
  });

  it("has no member that nothing uses, and every member is documented in docs/error-codes.md with its status", () => {
    const used = new Set<string>();
    for (const f of sources) {
      if (f === TABLE_FILE) continue;
      for (const m of readFileSync(f, "utf8").matchAll(/ADMIN_CODES\.(ADMIN_[A-Z0-9_]+)/g)) used.add(m[1]!);
    }
    expect([...members].filter((c) => !used.has(c))).toEqual([]);
    const doc = readFileSync(DOC_PATH, "utf8");
    for (const c of members) expect(doc).toMatch(new RegExp(`^\\| \`${c}\` \\| .* [1-5][0-9][0-9]\\. \\|$`, "m"));
  });
});

describe("the admin API's refusals", () => {
  let dir = "";
  let cloud: LocalCloud | undefined;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-admin-codes-")); });
  afterEach(async () => {
    await cloud?.close();
    cloud = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("answer with a code of the table and the status its comment gives", async () => {
    cloud = await LocalCloud.start({ dataDir: path.join(dir, "cloud"), certsDir: PKI, devices: [{ id: "ac-1", cloud: "aws" }] });
    const statusOf = new Map(readCodeTable(readFileSync(TABLE_FILE, "utf8"), "ADMIN_CODES").map((e) => [e.code, Number(/([1-5][0-9][0-9])\.$/.exec(e.doc)?.[1])]));
    const base = cloud.adminUrl!;
    const auth = { authorization: `Bearer ${cloud.adminToken!}` };
    const cases: Array<[string, string, RequestInit]> = [
      ["ADMIN_UNAUTHORIZED", "/things/ac-1/shadow", {}],
      ["ADMIN_UNAUTHORIZED", "/things/ac-1/shadow", { headers: { authorization: "Bearer wrong" } }],
      ["ADMIN_NOT_FOUND", "/no-such-route", { headers: auth }],
      ["ADMIN_BODY_TOO_LARGE", "/things/ac-1/shadow", { method: "POST", headers: auth, body: JSON.stringify({ state: { desired: { x: "y".repeat(70 * 1024) } } }) }],
      ["ADMIN_QUERY_INVALID", "/devices/ac-1/logs?after=x", { headers: auth }],
      ["ADMIN_QUERY_INVALID", "/events?after=-1", { headers: auth }],
    ];
    const seen: Array<[string, number, string]> = [];
    for (const [, p, init] of cases) {
      const r = await fetch(base + p, init);
      const body = (await r.json()) as { code: string; message: string };
      expect(typeof body.message).toBe("string");
      seen.push([body.code, r.status, p]);
    }
    expect(seen).toEqual(cases.map(([code, p]) => [code, statusOf.get(code), p]));
    expect(seen.every(([code]) => members.has(code))).toBe(true);
  });
});
