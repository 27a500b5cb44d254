/**
 * An attacker's review of the release tool's signing (docs/signing.md, "Threat model and what is checked"):
 * the private key file's permissions, a key that is never printed back (also when someone passes the key
 * itself instead of its file), and a signature made over the stamped bytes, not the input. Through the CLI
 * entry points a user runs (`npm run release` = release.ts main, `npm run image -- sign` = image-cli.ts
 * main); no upload is reached here (the checks come first), the uploads are release*.test.ts's.
 */
import { createHash, createPrivateKey } from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";

import { LocalCloud } from "../../src/sim/local-cloud";
import { buildImage } from "../../src/tools/esp-image";
import { main as imageMain } from "../../src/tools/image-cli";
import { generateSigningKey, readSignatureBlock, verifyImageSignature } from "../../src/tools/image-sign";
import { formatRelease, main, prepareRelease } from "../../src/tools/release";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "image-sign-release-test-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const k = generateSigningKey();
const image = buildImage({ version: "0.0.0-dev", size: 64 * 1024 });
const imageFile = path.join(dir, "in.bin");
fs.writeFileSync(imageFile, image);
const noCloud = path.join(dir, "no-cloud"); // --data-dir without cloud.json: the upload step refuses

function keyFile(name: string, mode: number): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, k.privateKeyPem, { mode });
  fs.chmodSync(p, mode); // the umask may have taken bits away
  return p;
}

async function release(argv: string[]): Promise<{ status: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const status = await main(argv, { print: (l) => out.push(l), error: (l) => err.push(l), env: {} });
  return { status, out: out.join("\n"), err: err.join("\n") };
}

/** Every 12-character piece of the private key's base64 and of its scalar: none may be printed. */
function keyPieces(): string[] {
  const b64 = k.privateKeyPem.replace(/-----[A-Z ]+-----|\s/g, "");
  const d = createPrivateKey(k.privateKeyPem).export({ format: "jwk" }).d!;
  const hexD = Buffer.from(d, "base64url").toString("hex");
  const pieces: string[] = [];
  for (const s of [b64, d, hexD]) for (let i = 0; i + 12 <= s.length; i += 6) pieces.push(s.slice(i, i + 12));
  return pieces;
}
function expectNoKey(text: string): void {
  const leaked = keyPieces().filter((p) => text.includes(p));
  expect(leaked).toEqual([]);
}

// The check reads the mode bits, so it holds for root too; Windows has no such bits.
const skipMode = process.platform === "win32" ? it.skip : it;

describe("npm run release --sign: the private key file", () => {
  (process.platform === "win32" ? it.skip : it).each([0o644, 0o640, 0o604, 0o660].map((m) => [m.toString(8), m] as const))("mode 0%s (group or others may read it) is refused before anything else, one line", async (_octal, mode) => {
    const r = await release([imageFile, "--version", "1.1.0", "--sign", keyFile(`k-${mode.toString(8)}.pem`, mode), "--data-dir", noCloud]);
    expect(r.status).toBe(1);
    expect(r.err).toBe(`error IMAGE_SIGN_KEY_UNPROTECTED: the --sign key file is open to group or others (mode 0${mode.toString(8)}); chmod 600 it`);
    expect(r.out).toBe("");
  });

  it.each([0o600, 0o400].map((m) => [m.toString(8), m] as const))("mode 0%s passes the key check (and goes on to the upload, refused here: no cloud)", async (_octal, mode) => {
    const r = await release([imageFile, "--version", "1.1.0", "--sign", keyFile(`ok-${mode.toString(8)}.pem`, mode), "--data-dir", noCloud]);
    expect(r.err).toMatch(/^error RELEASE_TARGET_UNREACHABLE: /);
    expect(r.status).toBe(1);
  });

  it("a directory or a missing file is refused without printing the argument", async () => {
    const missing = path.join(dir, "no-such-key.pem");
    const r = await release([imageFile, "--version", "1.1.0", "--sign", missing, "--data-dir", noCloud]);
    expect(r.err).toBe("error RELEASE_BAD_OPTION: signing key (--sign) cannot be read (ENOENT)");
    const d = await release([imageFile, "--version", "1.1.0", "--sign", dir, "--data-dir", noCloud]);
    expect(d.err).toBe("error RELEASE_BAD_OPTION: signing key (--sign) is not a regular file");
  });

  it("the key itself passed instead of its file (PKCS#8 base64, or the PEM text) is never printed back", async () => {
    const b64 = k.privateKeyPem.replace(/-----[A-Z ]+-----|\s/g, "");
    const asText = await release([imageFile, "--version", "1.1.0", "--sign", b64, "--data-dir", noCloud]);
    expect(asText.status).toBe(1);
    expectNoKey(asText.out + asText.err);
    const asPem = await release([imageFile, "--version", "1.1.0", "--sign", k.privateKeyPem, "--data-dir", noCloud]);
    expect(asPem.status).toBe(2); // "--sign needs a value": a PEM starts with dashes
    expectNoKey(asPem.out + asPem.err);
  });

  it("what a signed release prints (text and JSON) carries the public key id and the signature, nothing of the private key", () => {
    const p = prepareRelease({ image, version: "1.1.0", signingKey: k.privateKeyPem });
    const lines = formatRelease({ ...p, seed: "aws", target: "local", object: "local:firmware/1.1.0.bin", name: "1.1.0.bin",
      url: "https://127.0.0.1:1/firmware/1.1.0.bin", baseUrl: "https://127.0.0.1:1/firmware/", status: "uploaded" });
    expect(lines.join("\n")).toContain(k.keyId);
    expectNoKey(lines.join("\n"));
  });
});

skipMode("npm run image -- sign --key: the same file check (mode 0644 refused, 0600 signs)", () => {
  const out: string[] = [];
  const err: string[] = [];
  const signedFile = path.join(dir, "signed.bin");
  const refused = imageMain(["sign", imageFile, "--key", keyFile("cli-644.pem", 0o644), "-o", signedFile], (l) => out.push(l), (l) => err.push(l));
  expect(refused).toBe(1);
  expect(err.join("\n")).toContain("IMAGE_SIGN_KEY_UNPROTECTED");
  expect(fs.existsSync(signedFile)).toBe(false);
  expect(imageMain(["sign", imageFile, "--key", keyFile("cli-600.pem", 0o600), "-o", signedFile], (l) => out.push(l), (l) => err.push(l))).toBe(0);
  expect(verifyImageSignature(fs.readFileSync(signedFile), k.publicKeyPem).keyId).toBe(k.keyId);
});

describe("the signature covers the stamped bytes, not the input", () => {
  it("the block's digest is the SHA-256 of the stamped image; moved onto the input it does not verify", () => {
    const p = prepareRelease({ image, version: "1.1.0", signingKey: k.privateKeyPem });
    const block = readSignatureBlock(p.bytes)!;
    const stamped = p.bytes.subarray(0, p.imageLength);
    const stampedHash = createHash("sha256").update(stamped.subarray(0, stamped.length - 32)).digest("hex");
    const inputHash = createHash("sha256").update(image.subarray(0, image.length - 32)).digest("hex");
    expect(block.digest).toBe(stampedHash);
    expect(stampedHash).not.toBe(inputHash);
    expect(verifyImageSignature(p.bytes, k.publicKeyPem).keyId).toBe(k.keyId);
    const onInput = Uint8Array.of(...image, ...p.bytes.subarray(p.imageLength));
    expect(() => verifyImageSignature(onInput, k.publicKeyPem)).toThrow(expect.objectContaining({ code: "OTA_SIGNATURE_INVALID" }));
  });
});

describe("an upload to the local cloud cut midway", () => {
  let cloud: LocalCloud | undefined;
  afterAll(async () => {
    await cloud?.close().catch(() => undefined);
  });

  it("publishes nothing: no object under the name, the next release uploads it whole", async () => {
    const dataDir = path.join(dir, "cloud");
    cloud = await LocalCloud.start({ dataDir, certsDir: path.join(os.tmpdir(), "shadow-ota-test-pki"), devices: [] });
    const info = JSON.parse(fs.readFileSync(path.join(dataDir, "cloud.json"), "utf8")) as { adminUrl: string; adminToken: string };
    const url = new URL(info.adminUrl + "/firmware/firmware/1.1.0.bin");
    const body = prepareRelease({ image, version: "1.1.0" }).bytes;
    // The release tool's request, cut after half of the body (the connection dies).
    await new Promise<void>((resolve) => {
      const req = http.request(url, { method: "PUT", headers: { authorization: `Bearer ${info.adminToken}`, "content-type": "application/octet-stream", "content-length": body.length } });
      req.on("error", () => resolve());
      req.on("response", (res) => { res.resume(); resolve(); });
      req.write(body.subarray(0, body.length >> 1), () => setImmediate(() => { req.destroy(); resolve(); }));
    });
    // Bounded wait for the server to have seen the cut (a count of turns, not a time).
    for (let k = 0; k < 50; k++) await new Promise((r) => setImmediate(r));
    const list = await (await fetch(info.adminUrl + "/firmware", { headers: { authorization: `Bearer ${info.adminToken}` } })).json() as { blobs: Array<{ name: string }> };
    expect(list.blobs.map((b) => b.name)).not.toContain("1.1.0.bin");
    const container = path.join(dataDir, "blobs", "firmware");
    expect(fs.existsSync(container) ? fs.readdirSync(container).filter((f) => f.includes("1.1.0")) : []).toEqual([]); // no temp file either

    const r = await release([imageFile, "--version", "1.1.0", "--data-dir", dataDir]);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.out.split("\n").at(-1)!)).toMatchObject({ status: "uploaded", size: body.length });
  });
});
