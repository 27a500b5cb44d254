/**
 * `npm run cloud -- shadow …` goes through the AWS SDK against the cloud's AWS IoT data-plane endpoint
 * (src/sim/aws-dataplane-client.ts), the code path a user's script for AWS takes: with the admin token in
 * cloud.json made useless the shadow commands still work (twin commands, still on the admin API, do not),
 * and with the data-plane secret changed they are refused with AWS's signature error. Loopback only.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { runCli } from "../../src/sim/cli";
import { CLOUD_INFO_FILE } from "../../src/sim/device";
import { LocalCloud } from "../../src/sim/local-cloud";

jest.setTimeout(60_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki");
let dir: string;
let cloud: LocalCloud;
let infoFile: string;
let original: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-cli-sdk-"));
  cloud = await LocalCloud.start({ dataDir: dir, certsDir: PKI, blobPort: false, devices: [{ id: "esp32-01", cloud: "aws" }, { id: "esp32-az-01", cloud: "azure" }] });
  infoFile = path.join(dir, CLOUD_INFO_FILE);
  original = fs.readFileSync(infoFile, "utf8");
});
afterEach(() => fs.writeFileSync(infoFile, original, { mode: 0o600 }));
afterAll(async () => {
  await cloud.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli([...argv, "--data-dir", dir], { print: (l) => out.push(l), error: (l) => err.push(l) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

function editInfo(f: (info: Record<string, unknown>) => void): void {
  const info = JSON.parse(original) as Record<string, unknown>;
  f(info);
  fs.writeFileSync(infoFile, JSON.stringify(info), { mode: 0o600 });
}

test("shadow set-desired, get, list and delete work without the admin token: they use the data plane", async () => {
  editInfo((i) => { i["adminToken"] = "0".repeat(48); });
  expect((await cli("shadow", "set-desired", "esp32-01", '{"config":{"interval":21}}')).code).toBe(0);
  expect((await cli("shadow", "set-desired", "esp32-01", '{"on":true}', "--name", "ota")).code).toBe(0);
  const got = await cli("shadow", "get", "esp32-01");
  expect(got.code).toBe(0);
  expect(JSON.parse(got.out)).toMatchObject({ version: 1, state: { desired: { config: { interval: 21 } } } });
  expect(JSON.parse((await cli("shadow", "list", "esp32-01")).out)).toEqual({ thingName: "esp32-01", results: ["ota"] });
  expect(JSON.parse((await cli("shadow", "delete", "esp32-01", "--name", "ota")).out)).toMatchObject({ version: 1 });
  const missing = await cli("shadow", "get", "esp32-01", "--name", "ota");
  expect(missing.code).toBe(1);
  expect(JSON.parse(missing.err)).toEqual({ code: "ResourceNotFoundException", status: 404, message: "No shadow exists with name: 'ota'" });
  // The twin commands still use the admin API, whose token is now wrong.
  expect(JSON.parse((await cli("twin", "get", "esp32-az-01")).err)).toMatchObject({ code: "ADMIN_UNAUTHORIZED" });
});

test("a wrong data-plane secret in cloud.json → AWS's signature refusal, exit 1", async () => {
  editInfo((i) => { (i["awsDataPlane"] as Record<string, string>)["secretAccessKey"] = "x".repeat(40); });
  const r = await cli("shadow", "get", "esp32-01");
  expect(r.code).toBe(1);
  expect(JSON.parse(r.err)).toMatchObject({ code: "InvalidSignatureException", status: 403, message: expect.stringMatching(/^The request signature we calculated does not match/) });
});

test("without a data-plane endpoint in cloud.json the shadow commands fall back to the admin API", async () => {
  editInfo((i) => { delete i["awsDataPlane"]; });
  const got = await cli("shadow", "get", "esp32-01");
  expect(got.code).toBe(0);
  expect(JSON.parse(got.out)).toMatchObject({ state: { desired: { config: { interval: 21 } } } });
  expect((await cli("shadow", "list", "esp32-01")).code).toBe(2); // list exists only on the data plane
});
