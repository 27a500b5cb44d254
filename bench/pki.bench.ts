/**
 * Benchmark (`npx tsx bench/pki.bench.ts`): why src/sim/pki.ts makes keys and signatures with Node's
 * crypto and uses node-forge only for the X.509 layout. In one run, repetitions interleaved (alternating
 * which side goes first), printed as medians and their ratio:
 *
 *   sign: one sha256WithRSAEncryption signature over a certificate-sized TBS (~1 KB) with an RSA 2048
 *     key — node-forge's pure-JavaScript RSA against node:crypto (OpenSSL).
 *   issue: a whole client certificate from LocalPki (Node RSA 2048 key generation + forge layout + Node
 *     signature), against key generation alone, to show where the time of a test-time certificate goes.
 *
 * It checks that both signatures verify, never how fast: no timing asserts.
 * Not here: forge's own key generation (node-forge hands it to node:crypto when it can, so there is no
 * pure-JS figure to compare in Node).
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import forge from "node-forge";

import { LocalPki } from "../src/sim/pki";

const REPS = Number(process.env.BENCH_REPS ?? 21);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function time(fn: () => void): number {
  const t = performance.now();
  fn();
  return performance.now() - t;
}

const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048, privateKeyEncoding: { type: "pkcs8", format: "pem" }, publicKeyEncoding: { type: "spki", format: "pem" } });
const forgeKey = forge.pki.privateKeyFromPem(privateKey);
const publicKey = crypto.createPublicKey(privateKey);
const tbs = crypto.randomBytes(1024);

const forgeMs: number[] = [];
const nodeMs: number[] = [];
for (let i = 0; i < REPS; i++) {
  const runForge = (): void => {
    forgeMs.push(time(() => {
      const md = forge.md.sha256.create();
      md.update(tbs.toString("binary"));
      const sig = Buffer.from(forgeKey.sign(md), "binary");
      if (!crypto.verify("sha256", tbs, publicKey, sig)) throw new Error("forge signature does not verify");
    }));
  };
  const runNode = (): void => {
    nodeMs.push(time(() => {
      const sig = crypto.sign("sha256", tbs, privateKey);
      if (!crypto.verify("sha256", tbs, publicKey, sig)) throw new Error("node signature does not verify");
    }));
  };
  if (i % 2 === 0) { runForge(); runNode(); } else { runNode(); runForge(); }
}
console.log(`RSA 2048 sign+verify, ${REPS} reps: node-forge ${median(forgeMs).toFixed(2)} ms, node:crypto ${median(nodeMs).toFixed(2)} ms; ratio forge/node ${(median(forgeMs) / median(nodeMs)).toFixed(1)}`);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pki-bench-"));
try {
  const pki = LocalPki.open(dir);
  const issueMs: number[] = [];
  const keygenMs: number[] = [];
  const reps = Math.min(REPS, 11);
  for (let i = 0; i < reps; i++) {
    const issue = (): void => { issueMs.push(time(() => pki.client(`bench-${i}`))); };
    const keygen = (): void => { keygenMs.push(time(() => crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }))); };
    if (i % 2 === 0) { issue(); keygen(); } else { keygen(); issue(); }
  }
  console.log(`client certificate, ${reps} reps: LocalPki.client ${median(issueMs).toFixed(1)} ms, RSA 2048 key generation alone ${median(keygenMs).toFixed(1)} ms; ratio ${(median(issueMs) / median(keygenMs)).toFixed(2)}`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
