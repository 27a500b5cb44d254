/**
 * `npm run release` (src/tools/release.ts) to the local cloud, through the path an operator takes: the CLI's
 * main() on a real image file, the running local cloud found through its cloud.json, the admin API and the
 * HTTPS blob server; then a simulated device (device app, HTTPS byte source, native OTA slot on a flash
 * file) updates from the URL the release printed. Also: what is stamped and signed, and every refusal
 * (bad version, not an app image, a key that cannot sign, no cloud, other bytes already published).
 * The S3 and Azure Blob targets against real servers: release-servers.test.ts.
 */
import { spawnSync } from "node:child_process";
import { createHash, generateKeyPairSync } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { getPath } from "../../src/core/config-diff";
import type { JsonObject } from "../../src/core/json";
import { SimDevice } from "../../src/sim/device";
import { LocalCloud } from "../../src/sim/local-cloud";
import { assembleImage, buildImage, pseudoRandomBytes } from "../../src/tools/esp-image";
import { inspectImage } from "../../src/tools/image-cli";
import { generateSigningKey, readSignatureBlock, signImage, verifyImageSignature } from "../../src/tools/image-sign";
import { main, prepareRelease } from "../../src/tools/release";
import { parseTarget } from "../../src/tools/release-targets";
import { waitUntil } from "../sim/wait-until";

jest.setTimeout(120_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki"); // shared across tests: RSA keys take time
const SIZE = 128 * 1024;
/** What mcconfig leaves: ESP-IDF's `git describe` string in the descriptor, not the release version. */
const built = (seed = 5): Uint8Array => buildImage({ version: "v5.2.1-dirty", projectName: "shadow-ota", size: SIZE, seed });

let dir = "";
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-release-")); });
afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }); });

async function run(argv: string[]): Promise<{ status: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const status = await main(argv, { print: (l) => out.push(...l.split("\n")), error: (l) => err.push(...l.split("\n")), env: {} });
  return { status, out, err };
}
const lastJson = (out: string[]): JsonObject => JSON.parse(out[out.length - 1]!) as JsonObject;
function file(name: string, bytes: Uint8Array | string, mode = 0o644): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  fs.chmodSync(p, mode); // a private key open to group or others is refused (IMAGE_SIGN_KEY_UNPROTECTED)
  return p;
}

describe("prepareRelease: stamp and sign in memory", () => {
  it("stamps the version into a copy (checksum and SHA-256 resealed); the input is untouched", () => {
    const input = built();
    const before = Buffer.from(input);
    const r = prepareRelease({ image: input, version: "1.1.0" });
    expect(Buffer.from(input).equals(before)).toBe(true);
    const report = inspectImage(r.bytes);
    expect(report.descriptor?.version).toBe("1.1.0");
    expect(report.checksum.ok).toBe(true);
    expect(report.sha256?.ok).toBe(true);
    expect(r.bytes.length).toBe(SIZE);
    expect(r.signature).toBeUndefined();
    expect(r.imageDigest).toBe(report.sha256?.stored);
  });

  it("signs the stamped image: the block verifies with the public key and covers the new version", () => {
    const k = generateSigningKey();
    const r = prepareRelease({ image: built(), version: "2.0.0-rc.1", signingKey: k.privateKeyPem });
    expect(r.bytes.length).toBe(SIZE + 152);
    expect(verifyImageSignature(r.bytes, k.publicKeyPem)).toMatchObject({ keyId: k.keyId, digest: r.imageDigest });
    expect(r.signature).toMatchObject({ keyId: k.keyId });
    expect(inspectImage(r.bytes).descriptor?.version).toBe("2.0.0-rc.1");
  });

  it("drops a stale signature block when releasing unsigned (it would not match the stamped image)", () => {
    const k = generateSigningKey();
    const signedOld = signImage(built(), k.privateKeyPem).bytes;
    const r = prepareRelease({ image: signedOld, version: "1.1.0" });
    expect(r.droppedStaleSignature).toBe(true);
    expect(r.bytes.length).toBe(SIZE);
    expect(readSignatureBlock(r.bytes)).toBeUndefined();
  });

  it.each([
    ["1.1", "VERSION_INVALID"],
    ["v1.1.0", "VERSION_INVALID"],
    ["1.1.0/../x", "VERSION_INVALID"],
    ["1.1.0-" + "a".repeat(30), "VERSION_INVALID"],
  ])("refuses version %j with %s", (version, code) => {
    expect(() => prepareRelease({ image: built(), version })).toThrow(expect.objectContaining({ code }));
  });

  it("refuses what is not an ESP32 app image, and keys that cannot sign", () => {
    expect(() => prepareRelease({ image: new Uint8Array(4096).fill(0x55), version: "1.1.0" })).toThrow(expect.objectContaining({ code: "ESP_IMAGE_MALFORMED" }));
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const pub = generateSigningKey().publicKeyPem;
    for (const key of [rsa, pub, "not a key"]) {
      expect(() => prepareRelease({ image: built(), version: "1.1.0", signingKey: key })).toThrow(expect.objectContaining({ code: "IMAGE_SIGN_BAD_KEY" }));
    }
    const noHash = buildImage({ version: "x", size: SIZE, hashAppended: false });
    expect(() => prepareRelease({ image: noHash, version: "1.1.0", signingKey: generateSigningKey().privateKeyPem }))
      .toThrow(expect.objectContaining({ code: "IMAGE_SIGN_NO_HASH" }));
  });
});

describe("npm run release, as a process", () => {
  it("the package.json script runs the tool: a refusal is one line on stderr and exit 1, the usage exit 2", () => {
    const img = file("a.bin", built());
    const npm = (args: string[]) => spawnSync("npm", ["run", "-s", "release", "--", ...args], { cwd: path.resolve(__dirname, "..", ".."), encoding: "utf8", timeout: 120_000 });
    const bad = npm([img, "--version", "1.1"]);
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim().split("\n")).toEqual([expect.stringMatching(/^error VERSION_INVALID: /)]);
    expect(bad.stdout).toBe("");
    const usage = npm([img]);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toContain("usage: npm run release");
  });
});

describe("parseTarget", () => {
  it("reads local, s3:// and Azure container URLs (account in the host, or in the path for IP hosts)", () => {
    expect(parseTarget("local")).toEqual({ kind: "local" });
    expect(parseTarget("s3://fw-bucket")).toEqual({ kind: "s3", bucket: "fw-bucket", prefix: "" });
    expect(parseTarget("s3://fw-bucket/releases//esp32/")).toEqual({ kind: "s3", bucket: "fw-bucket", prefix: "releases/esp32/" });
    expect(parseTarget("https://acct.blob.core.windows.net/firmware")).toEqual(
      { kind: "azure", containerUrl: "https://acct.blob.core.windows.net/firmware", container: "firmware", prefix: "", sas: undefined });
    expect(parseTarget("https://127.0.0.1:10000/devstoreaccount1/fw1/esp32?sv=1&sig=abc")).toEqual(
      { kind: "azure", containerUrl: "https://127.0.0.1:10000/devstoreaccount1/fw1", container: "fw1", prefix: "esp32/", sas: "sv=1&sig=abc" });
  });

  it.each(["ftp://x", "s3://A_B", "s3://b/../x", "https://acct.blob.core.windows.net/", "https://127.0.0.1:1/devstoreaccount1", "https://u:p@acct.blob.core.windows.net/c1x", "s3"])(
    "refuses %j with RELEASE_TARGET_INVALID", (to) => {
      expect(() => parseTarget(to)).toThrow(expect.objectContaining({ code: "RELEASE_TARGET_INVALID" }));
    });
});

describe("npm run release to the local cloud", () => {
  let cloud: LocalCloud | undefined;
  let device: SimDevice | undefined;
  afterEach(async () => {
    await device?.close().catch(() => undefined);
    await cloud?.close().catch(() => undefined);
    device = undefined;
    cloud = undefined;
  });
  const start = async (): Promise<LocalCloud> => {
    cloud = await LocalCloud.start({ dataDir: path.join(dir, "cloud"), certsDir: PKI, devices: [{ id: "esp32-01", cloud: "aws" }] });
    return cloud;
  };

  it("publishes {version}.bin through the admin API, prints URL, size, SHA-256, unsigned and a JSON line; a device updates from it", async () => {
    const c = await start();
    const img = file("xs_esp32.bin", built());
    const r = await run([img, "--version", "1.1.0", "--data-dir", path.join(dir, "cloud")]);
    expect(r.err).toEqual([]);
    expect(r.status).toBe(0);
    const j = lastJson(r.out);
    const blob = c.blobs.list().find((b) => b.name === "1.1.0.bin")!;
    expect(blob).toBeDefined();
    const stored = fs.readFileSync(path.join(dir, "cloud", "blobs", "firmware", "1.1.0.bin"));
    expect(j).toMatchObject({ version: "1.1.0", seed: "aws", target: "local", name: "1.1.0.bin", url: blob.url, baseUrl: c.blobBaseUrl,
      size: SIZE, signature: null, status: "uploaded", object: "local:firmware/1.1.0.bin" });
    expect(j["sha256"]).toBe(createHash("sha256").update(stored).digest("hex"));
    expect(r.out).toContain("  signature  unsigned");
    expect(r.out.some((l) => l.includes(blob.url))).toBe(true);
    expect(inspectImage(stored).descriptor?.version).toBe("1.1.0");

    const cr = c.credentials("esp32-01");
    device = SimDevice.start({
      id: "esp32-01", cloud: "aws", host: cr.host, port: cr.port, ca: cr.ca, cert: cr.cert, key: cr.key,
      dataDir: path.join(dir, "devices", "esp32-01"), log: { log() {} },
      firmware: { baseUrl: j["baseUrl"] as string, ca: cr.ca }, powerOffMs: 50,
      ota: { retry: { initialMs: 100, maxMs: 400, maxAttempts: 4 }, selfTestWindowMs: 20_000 },
    });
    const reported = async (): Promise<JsonObject> =>
      (((await c.shadows.getShadow("esp32-01"))?.["state"] as JsonObject | undefined)?.["reported"] as JsonObject | undefined) ?? {};
    await waitUntil(async () => (getPath(await reported(), ["config", "firmware_version"]) === "1.0.0" ? true : undefined), 30_000, "1.0.0 reported");
    await c.shadows.updateDesired("esp32-01", { config: { firmware_version: "1.1.0" } });
    await waitUntil(async () => ((await reported())["firmwareUpdate"] as JsonObject | undefined)?.["state"] === "Valid" ? true : undefined, 60_000, "Valid");
    expect(device.runningVersion).toBe("1.1.0");
    expect(device.bytesDownloaded).toBe(SIZE);
  });

  it("--seed azure names it v1_1_0.bin; --sign appends the block; the same bytes again are 'unchanged', other bytes refused, --force replaces", async () => {
    const c = await start();
    const k = generateSigningKey();
    const keyFile = file("key.pem", k.privateKeyPem, 0o600);
    const img = file("xs_esp32.bin", built());
    const dataDir = path.join(dir, "cloud");
    const first = await run([img, "--version", "1.1.0", "--seed", "azure", "--sign", keyFile, "--data-dir", dataDir, "--out", path.join(dir, "out", "v.bin")]);
    expect(first.err).toEqual([]);
    const j = lastJson(first.out);
    expect(j).toMatchObject({ name: "v1_1_0.bin", seed: "azure", size: SIZE + 152, status: "uploaded", signature: { alg: "ECDSA-P256-SHA256", keyId: k.keyId } });
    const stored = fs.readFileSync(path.join(dataDir, "blobs", "firmware", "v1_1_0.bin"));
    expect(verifyImageSignature(stored, k.publicKeyPem).keyId).toBe(k.keyId);
    expect(fs.readFileSync(path.join(dir, "out", "v.bin")).equals(stored)).toBe(true);
    expect(first.out.some((l) => l.includes(`key id ${k.keyId}`))).toBe(true);

    // ECDSA signatures are randomized: a second signing gives other bytes. Unsigned releases are deterministic.
    const unsigned = await run([img, "--version", "1.2.0", "--data-dir", dataDir]);
    expect(lastJson(unsigned.out)["status"]).toBe("uploaded");
    const again = await run([img, "--version", "1.2.0", "--data-dir", dataDir]);
    expect(again.status).toBe(0);
    expect(lastJson(again.out)["status"]).toBe("unchanged");
    expect(again.out[0]).toMatch(/^already published/);

    const other = file("other.bin", built(99));
    const refused = await run([other, "--version", "1.2.0", "--data-dir", dataDir]);
    expect(refused.status).toBe(1);
    expect(refused.err).toHaveLength(1);
    expect(refused.err[0]).toMatch(/^error RELEASE_OBJECT_EXISTS: local:firmware\/1\.2\.0\.bin already exists with other bytes/);
    const forced = await run([other, "--version", "1.2.0", "--data-dir", dataDir, "--force"]);
    expect(lastJson(forced.out)["status"]).toBe("replaced");
    expect(c.blobs.list().find((b) => b.name === "1.2.0.bin")!.etag).toBe(`"${(lastJson(forced.out)["sha256"] as string).slice(0, 32)}"`);
  });

  it("--container publishes into another container of the blob server", async () => {
    const c = await start();
    const r = await run([file("a.bin", built()), "--version", "1.1.0", "--data-dir", path.join(dir, "cloud"), "--container", "canary"]);
    expect(r.status).toBe(0);
    expect(lastJson(r.out)).toMatchObject({ object: "local:canary/1.1.0.bin", baseUrl: c.blobs.baseUrl("canary") });
  });

  it("refuses with one line and exit 1 when no local cloud runs (no cloud.json, or nothing listening)", async () => {
    const img = file("a.bin", built());
    const none = await run([img, "--version", "1.1.0", "--data-dir", path.join(dir, "nothing")]);
    expect(none.status).toBe(1);
    expect(none.err).toEqual([expect.stringMatching(/^error RELEASE_TARGET_UNREACHABLE: no running local cloud/)]);

    const c = await start();
    const dataDir = path.join(dir, "cloud");
    const info = fs.readFileSync(path.join(dataDir, "cloud.json"), "utf8");
    await c.close();
    cloud = undefined;
    fs.writeFileSync(path.join(dataDir, "cloud.json"), info); // a stale file from a cloud that died
    const gone = await run([img, "--version", "1.1.0", "--data-dir", dataDir]);
    expect(gone.status).toBe(1);
    expect(gone.err).toEqual([expect.stringMatching(/^error RELEASE_TARGET_UNREACHABLE: the local cloud's admin API at http:\/\/127\.0\.0\.1:\d+ does not answer/)]);
  });

  it("refuses bad input before touching the target: version, image, key; usage errors exit 2", async () => {
    const img = file("a.bin", built());
    const dataDir = path.join(dir, "nothing"); // no cloud: a refusal here must come before the upload
    const cases: Array<[string[], RegExp]> = [
      [[img, "--version", "1.1"], /^error VERSION_INVALID: /],
      [[file("junk.bin", new Uint8Array(1000).fill(7)), "--version", "1.1.0"], /^error ESP_IMAGE_MALFORMED: /],
      [[file("ram.bin", assembleImage(built().slice(0, 24), [{ loadAddr: 0x40080000, data: pseudoRandomBytes(1024, 3) }])), "--version", "1.1.0"], /^error ESP_IMAGE_NOT_APP: /],
      [[img, "--version", "1.1.0", "--sign", file("pub.pem", generateSigningKey().publicKeyPem, 0o600)], /^error IMAGE_SIGN_BAD_KEY: /],
      [[img, "--version", "1.1.0", "--sign", path.join(dir, "missing.pem")], /^error RELEASE_BAD_OPTION: signing key .* cannot be read/],
      [[path.join(dir, "missing.bin"), "--version", "1.1.0"], /^error RELEASE_BAD_OPTION: image .* cannot be read/],
      [[img, "--version", "1.1.0", "--to", "ftp://x/y"], /^error RELEASE_TARGET_INVALID: /],
    ];
    for (const [argv, want] of cases) {
      const r = await run([...argv, "--data-dir", dataDir]);
      expect({ argv, status: r.status, err: r.err }).toEqual({ argv, status: 1, err: [expect.stringMatching(want)] });
    }
    for (const argv of [[img], ["--version", "1.1.0"], [img, "--version"], [img, "--version", "1.1.0", "--seed", "gcp"], [img, "--version", "1.1.0", "--bogus"]]) {
      const r = await run(argv);
      expect({ argv, status: r.status }).toEqual({ argv, status: 2 });
      expect(r.err.join("\n")).toContain("usage: npm run release");
    }
  });
});
