/**
 * `npm run release` against real storage servers that run here, never a hand-written mock:
 * - S3: s3rver (an S3-compatible server in Node, from npm), in this process on 127.0.0.1 over HTTPS with a
 *   certificate of the test's local CA, data in a tmp dir; the upload goes through `@aws-sdk/client-s3`
 *   (path-style, --endpoint, --ca, keys from the given environment);
 * - Azure Blob: Azurite (Microsoft's storage emulator, from npm) as a child process on 127.0.0.1 over HTTPS
 *   (--cert/--key from the same CA), telemetry off, data in a tmp dir; the upload goes through
 *   `@azure/storage-blob` with a connection string, a SAS URL, or an account key.
 * After each publish a simulated device (device app, HTTPS byte source with the CA pinned, native OTA slot
 * on a flash file) updates from the published URL: AWS seed from the bucket, Azure seed from the container.
 * Also: same bytes again, other bytes refused and --force, objects uploaded without this tool's metadata,
 * a missing bucket, a closed port, missing or mismatched credentials.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as net from "node:net";

import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { BlobServiceClient, ContainerSASPermissions, type ContainerClient } from "@azure/storage-blob";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import * as https from "node:https";
// s3rver ships no type declarations.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require("s3rver") as new (o: Record<string, unknown>) => { run(): Promise<{ port: number }>; close(): Promise<void> };

import { getPath } from "../../src/core/config-diff";
import type { JsonObject } from "../../src/core/json";
import { SimDevice } from "../../src/sim/device";
import { LocalCloud } from "../../src/sim/local-cloud";
import { LocalPki } from "../../src/sim/pki";
import { buildImage } from "../../src/tools/esp-image";
import { generateSigningKey, verifyImageSignature } from "../../src/tools/image-sign";
import { main } from "../../src/tools/release";
import { openTarget, parseTarget } from "../../src/tools/release-targets";
import { waitUntil } from "../sim/wait-until";

jest.setTimeout(180_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki"); // shared across tests: RSA keys take time
const SIZE = 128 * 1024;
const built = (seed = 5): Uint8Array => buildImage({ version: "v5.2.1-dirty", projectName: "shadow-ota", size: SIZE, seed });
const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

let dir = "";
let pki: LocalPki;
let caFile = "";
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-release-servers-"));
  pki = LocalPki.open(PKI);
  caFile = path.join(dir, "ca.pem");
  fs.writeFileSync(caFile, pki.caPem);
});
afterAll(() => { fs.rmSync(dir, { recursive: true, force: true }); });

async function run(argv: string[], env: Record<string, string>): Promise<{ status: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const status = await main(argv, { print: (l) => out.push(...l.split("\n")), error: (l) => err.push(...l.split("\n")), env });
  return { status, out, err };
}
const lastJson = (out: string[]): JsonObject => JSON.parse(out[out.length - 1]!) as JsonObject;
function file(name: string, bytes: Uint8Array | string, mode = 0o644): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  fs.chmodSync(p, mode); // a private key open to group or others is refused (IMAGE_SIGN_KEY_UNPROTECTED)
  return p;
}

/** A port nothing listens on (bound, read, closed). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Starts a device on 1.0.0, sets the desired version, waits until it runs it (Valid). */
async function deviceUpdates(id: string, cloudKind: "aws" | "azure", baseUrl: string, version: string, signingKeyFile?: string): Promise<SimDevice> {
  const cloud = await LocalCloud.start({ dataDir: path.join(dir, `cloud-${id}`), certsDir: PKI, devices: [{ id, cloud: cloudKind }] });
  const c = cloud.credentials(id);
  const d = SimDevice.start({
    id, cloud: c.cloud, host: c.host, port: c.port, ca: c.ca, cert: c.cert, key: c.key,
    dataDir: path.join(dir, "devices", id), log: { log() {} },
    firmware: { baseUrl, ca: pki.caPem }, powerOffMs: 50,
    ota: { retry: { initialMs: 100, maxMs: 400, maxAttempts: 4 }, selfTestWindowMs: 20_000 },
    ...(signingKeyFile === undefined ? {} : { signingKeyFile }),
  });
  try {
    const reported = async (): Promise<JsonObject> => cloudKind === "azure"
      ? (await cloud.twins.getTwin(id)).reported
      : (((await cloud.shadows.getShadow(id))?.["state"] as JsonObject | undefined)?.["reported"] as JsonObject | undefined) ?? {};
    await waitUntil(async () => ((await reported())["firmwareUpdate"] !== undefined || getPath(await reported(), ["config", "firmware_version"]) !== undefined ||
      (await reported())["firmwareVersion"] !== undefined ? true : undefined), 30_000, `${id} reported`);
    if (cloudKind === "azure") await cloud.twins.updateDesired(id, { updateVersion: version });
    else await cloud.shadows.updateDesired(id, { config: { firmware_version: version } });
    const u = await waitUntil(async () => {
      const f = (await reported())["firmwareUpdate"] as JsonObject | undefined;
      return f?.["state"] === "Valid" || f?.["state"] === "Failed" || f?.["state"] === "RolledBack" ? f : undefined;
    }, 90_000, `${id} update finished`);
    expect(u).toMatchObject({ state: "Valid", to: version });
    expect(d.runningVersion).toBe(version);
    return d;
  } finally {
    await d.close().catch(() => undefined);
    await cloud.close().catch(() => undefined);
  }
}

describe("S3 target on s3rver (HTTPS, path-style, @aws-sdk/client-s3)", () => {
  let server: InstanceType<typeof S3rver>;
  let endpoint = "";
  let s3: S3Client;
  const env = { AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_REGION: "us-east-1" };
  beforeAll(async () => {
    const tls = pki.server();
    server = new S3rver({
      address: "127.0.0.1", port: 0, silent: true, directory: path.join(dir, "s3"), key: tls.keyPem, cert: tls.certPem,
      configureBuckets: [{ name: "fw-releases" }],
    });
    const { port } = await server.run();
    endpoint = `https://127.0.0.1:${port}`;
    s3 = new S3Client({
      endpoint, forcePathStyle: true, region: "us-east-1", credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
      requestHandler: new NodeHttpHandler({ httpsAgent: new https.Agent({ ca: pki.caPem }) }),
    });
  });
  afterAll(async () => {
    s3?.destroy();
    await server?.close();
  });
  const stored = async (key: string): Promise<Uint8Array> =>
    (await s3.send(new GetObjectCommand({ Bucket: "fw-releases", Key: key }))).Body!.transformToByteArray();

  it("publishes {version}.bin under the prefix with its SHA-256 in the metadata; an AWS-seed device updates from it", async () => {
    const r = await run([file("a.bin", built()), "--version", "1.1.0", "--to", "s3://fw-releases/esp32", "--endpoint", endpoint, "--ca", caFile], env);
    expect(r.err).toEqual([]);
    expect(r.status).toBe(0);
    const j = lastJson(r.out);
    expect(j).toMatchObject({ target: "s3", seed: "aws", name: "1.1.0.bin", object: "s3://fw-releases/esp32/1.1.0.bin",
      url: `${endpoint}/fw-releases/esp32/1.1.0.bin`, baseUrl: `${endpoint}/fw-releases/esp32/`, size: SIZE, status: "uploaded", signature: null });
    const bytes = await stored("esp32/1.1.0.bin");
    expect(sha(bytes)).toBe(j["sha256"]);
    const head = await s3.send(new HeadObjectCommand({ Bucket: "fw-releases", Key: "esp32/1.1.0.bin" }));
    expect(head.Metadata).toMatchObject({ sha256: j["sha256"], version: "1.1.0" });
    expect(head.ContentType).toBe("application/octet-stream");
    await deviceUpdates("esp32-s3-01", "aws", j["baseUrl"] as string, "1.1.0");
  });

  it("same bytes again: unchanged (also for an object put without the metadata); other bytes: refused, --force replaces; signed", async () => {
    const img = file("b.bin", built(7));
    const args = ["--to", "s3://fw-releases/b", "--endpoint", endpoint, "--ca", caFile];
    expect(lastJson((await run([img, "--version", "1.2.0", ...args], env)).out)["status"]).toBe("uploaded");
    expect(lastJson((await run([img, "--version", "1.2.0", ...args], env)).out)["status"]).toBe("unchanged");

    // Someone uploaded these exact bytes with another tool (no sha256 metadata): read back and hashed.
    const same = await stored("b/1.2.0.bin");
    await s3.send(new PutObjectCommand({ Bucket: "fw-releases", Key: "b/1.2.0.bin", Body: same }));
    expect((await s3.send(new HeadObjectCommand({ Bucket: "fw-releases", Key: "b/1.2.0.bin" }))).Metadata?.["sha256"]).toBeUndefined();
    expect(lastJson((await run([img, "--version", "1.2.0", ...args], env)).out)["status"]).toBe("unchanged");

    const other = file("c.bin", built(8));
    const refused = await run([other, "--version", "1.2.0", ...args], env);
    expect(refused.status).toBe(1);
    expect(refused.err).toEqual([expect.stringMatching(/^error RELEASE_OBJECT_EXISTS: s3:\/\/fw-releases\/b\/1\.2\.0\.bin already exists with other bytes/)]);
    expect(sha(await stored("b/1.2.0.bin"))).toBe(sha(same));

    const k = generateSigningKey();
    const forced = await run([other, "--version", "1.2.0", ...args, "--force", "--sign", file("k.pem", k.privateKeyPem, 0o600)], env);
    expect(lastJson(forced.out)).toMatchObject({ status: "replaced", size: SIZE + 152, signature: { keyId: k.keyId } });
    expect(verifyImageSignature(await stored("b/1.2.0.bin"), k.publicKeyPem).keyId).toBe(k.keyId);
  });

  it("a missing bucket is the server's refusal; a closed port is unreachable; each one line, exit 1", async () => {
    const img = file("d.bin", built());
    const noBucket = await run([img, "--version", "1.1.0", "--to", "s3://no-such-bucket", "--endpoint", endpoint, "--ca", caFile], env);
    expect(noBucket.status).toBe(1);
    expect(noBucket.err).toEqual([expect.stringMatching(/^error RELEASE_UPLOAD_FAILED: s3:\/\/no-such-bucket\/1\.1\.0\.bin at https:\/\/127\.0\.0\.1:\d+ answered 404 NoSuchBucket/)]);
    const port = await closedPort();
    const closed = await run([img, "--version", "1.1.0", "--to", "s3://fw-releases", "--endpoint", `https://127.0.0.1:${port}`, "--ca", caFile], env);
    expect(closed.status).toBe(1);
    expect(closed.err).toEqual([expect.stringMatching(/^error RELEASE_TARGET_UNREACHABLE: s3:\/\/fw-releases\/1\.1\.0\.bin at https:\/\/127\.0\.0\.1:\d+ is not reachable: .*ECONNREFUSED/)]);
    // No keys in the environment and nothing else the SDK's chain looks at (no profile files; instance
    // metadata disabled, so no request leaves loopback): RELEASE_CREDENTIALS_MISSING before any upload.
    const saved = { ...process.env };
    try {
      for (const k of Object.keys(process.env)) if (k.startsWith("AWS_")) delete process.env[k];
      Object.assign(process.env, { AWS_EC2_METADATA_DISABLED: "true", AWS_CONFIG_FILE: path.join(dir, "no-config"), AWS_SHARED_CREDENTIALS_FILE: path.join(dir, "no-credentials") });
      const noKeys = await run([img, "--version", "1.1.0", "--to", "s3://fw-releases/nokeys", "--endpoint", endpoint, "--ca", caFile, "--region", "us-east-1"], {});
      expect(noKeys.status).toBe(1);
      expect(noKeys.err).toEqual([expect.stringMatching(/^error RELEASE_CREDENTIALS_MISSING: no AWS credentials for s3:\/\/fw-releases\/nokeys\/1\.1\.0\.bin/)]);
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
    // Without --ca the emulator's certificate is not trusted: a TLS failure, not an upload.
    const untrusted = await run([img, "--version", "1.1.0", "--to", "s3://fw-releases/untrusted", "--endpoint", endpoint], env);
    expect(untrusted.status).toBe(1);
    expect(untrusted.err).toEqual([expect.stringMatching(/^error RELEASE_TARGET_UNREACHABLE: .*(certificate|self.signed|issuer)/i)]);
  });
});

/** The emulator's well-known development account (published in Microsoft's Azurite documentation; not a secret). */
const AZURITE_ACCOUNT = "devstoreaccount1";
const AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

describe("Azure Blob target on Azurite (HTTPS, @azure/storage-blob)", () => {
  let child: ChildProcess | undefined;
  let blobEndpoint = "";
  let container: ContainerClient;
  let connectionString = "";
  beforeAll(async () => {
    const tls = pki.server();
    const certFile = tls.certPath;
    const keyFile = tls.keyPath;
    const bin = require.resolve("azurite/dist/src/blob/main.js");
    child = spawn(process.execPath, [bin, "--blobHost", "127.0.0.1", "--blobPort", "0", "--location", path.join(dir, "azurite"),
      "--cert", certFile, "--key", keyFile, "--disableTelemetry", "--silent", "--skipApiVersionCheck"], { stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    child.stdout!.on("data", (b: Buffer) => { text += b.toString(); });
    child.stderr!.on("data", (b: Buffer) => { text += b.toString(); });
    const port = await waitUntil(() => /listens on https:\/\/127\.0\.0\.1:(\d+)/.exec(text)?.[1], 90_000, `Azurite to listen (output: ${text})`);
    blobEndpoint = `https://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
    connectionString = `DefaultEndpointsProtocol=https;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${blobEndpoint};`;
    const service = BlobServiceClient.fromConnectionString(connectionString, { tlsOptions: { ca: pki.caPem } } as never);
    container = service.getContainerClient("firmware");
    // Devices download anonymously, as from a public release container.
    await container.create({ access: "blob" });
  });
  afterAll(async () => {
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((r) => child!.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
  });

  it("publishes a signed v1_1_0.bin with a connection string; an Azure-seed device with the public key built in updates from the container over HTTPS", async () => {
    const env = { AZURE_STORAGE_CONNECTION_STRING: connectionString };
    const k = generateSigningKey();
    const r = await run([file("a.bin", built()), "--version", "1.1.0", "--to", `${blobEndpoint}/firmware`, "--ca", caFile, "--sign", file("az.pem", k.privateKeyPem, 0o600)], env);
    expect(r.err).toEqual([]);
    const j = lastJson(r.out);
    expect(j).toMatchObject({ target: "azure", seed: "azure", name: "v1_1_0.bin", url: `${blobEndpoint}/firmware/v1_1_0.bin`,
      baseUrl: `${blobEndpoint}/firmware/`, size: SIZE + 152, status: "uploaded", signature: { keyId: k.keyId } });
    const blob = container.getBlockBlobClient("v1_1_0.bin");
    expect(sha(await blob.downloadToBuffer())).toBe(j["sha256"]);
    expect((await blob.getProperties()).metadata).toMatchObject({ sha256: j["sha256"], version: "1.1.0", keyid: k.keyId });
    await deviceUpdates("esp32-az-01", "azure", j["baseUrl"] as string, "1.1.0", file("az.pub.pem", k.publicKeyPem));
  });

  it("with a SAS URL (never printed) and with an account key; same bytes: unchanged; other bytes refused; --force", async () => {
    const sasUrl = await container.generateSasUrl({ permissions: ContainerSASPermissions.parse("racw"), expiresOn: new Date(Date.now() + 3_600_000) });
    const sas = new URL(sasUrl).search;
    expect(sas).toContain("sig=");
    const img = file("b.bin", built(7));
    const bySas = await run([img, "--version", "1.2.0", "--to", `${blobEndpoint}/firmware/canary${sas}`, "--ca", caFile], {});
    expect(bySas.err).toEqual([]);
    expect(lastJson(bySas.out)).toMatchObject({ name: "v1_2_0.bin", url: `${blobEndpoint}/firmware/canary/v1_2_0.bin`, status: "uploaded" });
    expect(bySas.out.join("\n")).not.toContain("sig=");

    const keyEnv = { AZURE_STORAGE_ACCOUNT: AZURITE_ACCOUNT, AZURE_STORAGE_KEY: AZURITE_KEY };
    const to = ["--to", `${blobEndpoint}/firmware/canary`, "--ca", caFile];
    expect(lastJson((await run([img, "--version", "1.2.0", ...to], keyEnv)).out)["status"]).toBe("unchanged");
    const other = file("c.bin", built(8));
    const refused = await run([other, "--version", "1.2.0", ...to], keyEnv);
    expect(refused.status).toBe(1);
    expect(refused.err).toEqual([expect.stringMatching(/^error RELEASE_OBJECT_EXISTS: https:\/\/127\.0\.0\.1:\d+\/devstoreaccount1\/firmware\/canary\/v1_2_0\.bin already exists with other bytes/)]);
    const forced = await run([other, "--version", "1.2.0", ...to, "--force"], keyEnv);
    expect(lastJson(forced.out)["status"]).toBe("replaced");
    expect(sha(await container.getBlockBlobClient("canary/v1_2_0.bin").downloadToBuffer())).toBe(lastJson(forced.out)["sha256"]);
  });

  it("a blob that appears between the check and the upload is not overwritten (If-None-Match: *)", async () => {
    const t = await openTarget(parseTarget(`${blobEndpoint}/firmware/race`), {
      dataDir: dir, container: "firmware", endpoint: undefined, region: undefined, caPem: pki.caPem, env: { AZURE_STORAGE_CONNECTION_STRING: connectionString },
    });
    expect(await t.existing("v9_0_0.bin")).toBeUndefined();
    const theirs = Buffer.from("someone else's upload");
    await container.getBlockBlobClient("race/v9_0_0.bin").uploadData(theirs);
    const ours = built(9);
    await expect(t.put("v9_0_0.bin", ours, { sha256: sha(ours), version: "9.0.0", onlyIfAbsent: true }))
      .rejects.toMatchObject({ code: "RELEASE_OBJECT_EXISTS", message: expect.stringContaining("was created by someone else while this release was uploading") });
    expect((await container.getBlockBlobClient("race/v9_0_0.bin").downloadToBuffer()).equals(theirs)).toBe(true);
    await t.put("v9_0_0.bin", ours, { sha256: sha(ours), version: "9.0.0", onlyIfAbsent: false }); // what --force does
    expect(sha(await container.getBlockBlobClient("race/v9_0_0.bin").downloadToBuffer())).toBe(sha(ours));
    t.close();
  });

  it("no credentials, a connection string for another endpoint, a missing container, a closed port: one line, exit 1", async () => {
    const img = file("d.bin", built());
    const to = `${blobEndpoint}/firmware`;
    const none = await run([img, "--version", "1.1.0", "--to", to, "--ca", caFile], {});
    expect(none.err).toEqual([expect.stringMatching(/^error RELEASE_CREDENTIALS_MISSING: no credentials for https:\/\/127\.0\.0\.1:\d+\/devstoreaccount1\/firmware/)]);
    const port = await closedPort();
    const elsewhere = await run([img, "--version", "1.1.0", "--to", `https://127.0.0.1:${port}/${AZURITE_ACCOUNT}/firmware`, "--ca", caFile],
      { AZURE_STORAGE_CONNECTION_STRING: connectionString });
    expect(elsewhere.err).toEqual([expect.stringMatching(/^error RELEASE_TARGET_INVALID: AZURE_STORAGE_CONNECTION_STRING is for https:\/\/127\.0\.0\.1:\d+\/devstoreaccount1\/firmware, but --to names/)]);
    const noContainer = await run([img, "--version", "1.1.0", "--to", `${blobEndpoint}/no-such-container`, "--ca", caFile], { AZURE_STORAGE_CONNECTION_STRING: connectionString });
    expect(noContainer.err).toEqual([expect.stringMatching(/^error RELEASE_UPLOAD_FAILED: .*no-such-container\/v1_1_0\.bin answered 404 ContainerNotFound/)]);
    const closed = await run([img, "--version", "1.1.0", "--to", `https://127.0.0.1:${port}/${AZURITE_ACCOUNT}/firmware`, "--ca", caFile],
      { AZURE_STORAGE_ACCOUNT: AZURITE_ACCOUNT, AZURE_STORAGE_KEY: AZURITE_KEY });
    expect(closed.status).toBe(1);
    expect(closed.err).toEqual([expect.stringMatching(/^error RELEASE_TARGET_UNREACHABLE: .*ECONNREFUSED/)]);
  });
});
