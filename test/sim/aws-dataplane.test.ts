/**
 * The local cloud's AWS IoT data-plane shadow API driven by the unchanged AWS SDK
 * (`@aws-sdk/client-iot-data-plane`), configured as a user configures it for AWS: an endpoint, the access key
 * from cloud.json, and an HTTPS agent that trusts the local CA (@smithy/node-http-handler). Then what AWS
 * refuses: a wrong secret, an unknown key, a stale date (a request signed 20 minutes ago with the SDK's own
 * signer), a missing signature — each 403 with AWS's message — and the SDK's exception classes for the
 * shadow service's own refusals (404, 409, 400). Loopback only; certificates are made at test time.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import {
  DeleteThingShadowCommand,
  GetThingShadowCommand,
  IoTDataPlaneClient,
  ListNamedShadowsForThingCommand,
  UpdateThingShadowCommand,
} from "@aws-sdk/client-iot-data-plane";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { SignatureV4 } from "@smithy/signature-v4";
import mqtt from "mqtt";

import { CLOUD_INFO_FILE } from "../../src/sim/device";
import { LocalCloud, type CloudInfo } from "../../src/sim/local-cloud";
import { MemoryLog } from "../core/fake-ports";
import { waitUntil } from "./wait-until";

jest.setTimeout(60_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki");
let dir: string;
let cloud: LocalCloud;
let info: Required<CloudInfo>["awsDataPlane"];
let agent: https.Agent;
const log = new MemoryLog();

function client(credentials: { accessKeyId: string; secretAccessKey: string } = info): IoTDataPlaneClient {
  return new IoTDataPlaneClient({
    endpoint: info.endpoint, region: info.region, credentials, maxAttempts: 1,
    requestHandler: new NodeHttpHandler({ httpsAgent: agent }),
  });
}

const bytes = (d: string | ArrayBuffer | ArrayBufferView): string | Uint8Array =>
  typeof d === "string" ? d : d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(d.buffer, d.byteOffset, d.byteLength);

/** SHA-256 / HMAC-SHA256 for the SDK's signer (its Checksum shape) from node:crypto. */
class Sha256 {
  readonly #h: crypto.Hash | crypto.Hmac;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.#h = secret === undefined ? crypto.createHash("sha256") : crypto.createHmac("sha256", bytes(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void { this.#h.update(bytes(data)); }
  async digest(): Promise<Uint8Array> { return new Uint8Array(this.#h.digest()); }
  reset(): void { throw new Error("not used"); }
}

const text = (payload: Uint8Array | undefined): unknown => JSON.parse(Buffer.from(payload ?? new Uint8Array()).toString("utf8"));

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-dataplane-"));
  cloud = await LocalCloud.start({ dataDir: path.join(dir, "cloud"), certsDir: PKI, blobPort: false, log, devices: [{ id: "esp32-01", cloud: "aws" }] });
  const fromFile = JSON.parse(fs.readFileSync(path.join(dir, "cloud", CLOUD_INFO_FILE), "utf8")) as CloudInfo;
  info = fromFile.awsDataPlane!;
  agent = new https.Agent({ ca: cloud.pki.caPem });
});
afterAll(async () => {
  expect(log.lines.filter((l) => l.level === "error")).toEqual([]); // a 500 here would be the local cloud's bug
  agent?.destroy();
  await cloud?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("the AWS SDK against the local cloud", () => {
  test("cloud.json holds the endpoint and an AWS-shaped access key; the file is 0600", () => {
    expect(info.endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(info.accessKeyId).toMatch(/^AKIA[A-Z2-7]{16}$/);
    expect(info.secretAccessKey).toHaveLength(40);
    expect(fs.statSync(path.join(dir, "cloud", CLOUD_INFO_FILE)).mode & 0o777).toBe(0o600);
  });

  test("Update, Get, ListNamedShadowsForThing, Delete; the device sees the delta over MQTT", async () => {
    const c = client();
    const creds = cloud.credentials("esp32-01");
    const device = await mqtt.connectAsync({ protocol: "mqtts", host: creds.host, port: creds.port, clientId: "esp32-01", ca: creds.ca, cert: creds.cert, key: creds.key, protocolVersion: 4 });
    const deltas: unknown[] = [];
    device.on("message", (_t, p) => deltas.push(JSON.parse(p.toString("utf8"))));
    await device.subscribeAsync("$aws/things/esp32-01/shadow/update/delta", { qos: 1 });
    try {
      const u = await c.send(new UpdateThingShadowCommand({
        thingName: "esp32-01", payload: Buffer.from(JSON.stringify({ state: { desired: { config: { interval: 30 } } }, clientToken: "sdk-1" })),
      }));
      const accepted = text(u.payload) as { version: number; clientToken: string; state: unknown };
      expect(accepted).toMatchObject({ version: 1, clientToken: "sdk-1", state: { desired: { config: { interval: 30 } } } });
      await waitUntil(() => (deltas.length > 0 ? true : undefined), 10_000, "the delta of the SDK's update");
      expect(deltas[0]).toMatchObject({ version: 1, state: { config: { interval: 30 } }, clientToken: "sdk-1" });

      // UpdateThingShadow may write reported too (AWS's HTTP API is not limited to desired).
      await c.send(new UpdateThingShadowCommand({ thingName: "esp32-01", payload: Buffer.from('{"state":{"reported":{"config":{"interval":30}}}}') }));
      const g = text((await c.send(new GetThingShadowCommand({ thingName: "esp32-01" }))).payload) as { version: number; state: Record<string, unknown> };
      expect(g.version).toBe(2);
      expect(g.state).toEqual({ desired: { config: { interval: 30 } }, reported: { config: { interval: 30 } } });

      for (const name of ["ota", "config", "b-side"]) {
        await c.send(new UpdateThingShadowCommand({ thingName: "esp32-01", shadowName: name, payload: Buffer.from('{"state":{"desired":{"on":true}}}') }));
      }
      const named = text((await c.send(new GetThingShadowCommand({ thingName: "esp32-01", shadowName: "ota" }))).payload);
      expect(named).toMatchObject({ version: 1, state: { desired: { on: true } } });
      const all = await c.send(new ListNamedShadowsForThingCommand({ thingName: "esp32-01" }));
      expect(all.results).toEqual(["b-side", "config", "ota"]);
      expect(typeof all.timestamp).toBe("number");
      const page1 = await c.send(new ListNamedShadowsForThingCommand({ thingName: "esp32-01", pageSize: 2 }));
      expect(page1.results).toEqual(["b-side", "config"]);
      const page2 = await c.send(new ListNamedShadowsForThingCommand({ thingName: "esp32-01", pageSize: 2, nextToken: page1.nextToken! }));
      expect(page2).toMatchObject({ results: ["ota"] });
      expect(page2.nextToken).toBeUndefined();

      const d = text((await c.send(new DeleteThingShadowCommand({ thingName: "esp32-01", shadowName: "config" }))).payload);
      expect(d).toMatchObject({ version: 1 });
      expect((await c.send(new ListNamedShadowsForThingCommand({ thingName: "esp32-01" }))).results).toEqual(["b-side", "ota"]);
    } finally {
      await device.endAsync(true);
      c.destroy();
    }
  });

  test.each([
    ["GetThingShadow on a shadow that does not exist", "ResourceNotFoundException", 404, "No shadow exists with name: 'nobody'", () => new GetThingShadowCommand({ thingName: "nobody" })],
    ["DeleteThingShadow on a shadow that does not exist", "ResourceNotFoundException", 404, "No shadow exists with name: 'never'", () => new DeleteThingShadowCommand({ thingName: "esp32-01", shadowName: "never" })],
    ["UpdateThingShadow at a stale version", "ConflictException", 409, "Version conflict", () => new UpdateThingShadowCommand({ thingName: "esp32-01", payload: Buffer.from('{"state":{"desired":{"a":1}},"version":1}') })],
    ["UpdateThingShadow with a body that is not JSON", "InvalidRequestException", 400, "Invalid JSON", () => new UpdateThingShadowCommand({ thingName: "esp32-01", payload: Buffer.from("{") })],
    ["UpdateThingShadow without state", "InvalidRequestException", 400, "Missing required node: state", () => new UpdateThingShadowCommand({ thingName: "esp32-01", payload: Buffer.from("{}") })],
  ])("%s → %s (%d)", async (_what, name, status, message, command) => {
    const c = client();
    try {
      await expect(c.send(command() as GetThingShadowCommand)).rejects.toMatchObject({ name, message, $metadata: { httpStatusCode: status } });
    } finally {
      c.destroy();
    }
  });
});

describe("signatures are checked as AWS checks them", () => {
  test("a wrong secret → 403 with AWS's signature-mismatch message", async () => {
    const c = client({ accessKeyId: info.accessKeyId, secretAccessKey: `x${info.secretAccessKey.slice(1)}` });
    try {
      await expect(c.send(new GetThingShadowCommand({ thingName: "esp32-01" }))).rejects.toMatchObject({
        name: "InvalidSignatureException", $metadata: { httpStatusCode: 403 },
        message: expect.stringMatching(/^The request signature we calculated does not match the signature you provided/),
      });
    } finally {
      c.destroy();
    }
  });

  test("an unknown access key → 403 'The security token included in the request is invalid.'", async () => {
    const c = client({ accessKeyId: "AKIAAAAAAAAAAAAAAAAA", secretAccessKey: info.secretAccessKey });
    try {
      await expect(c.send(new GetThingShadowCommand({ thingName: "esp32-01" }))).rejects.toMatchObject({
        name: "UnrecognizedClientException", message: "The security token included in the request is invalid.", $metadata: { httpStatusCode: 403 },
      });
    } finally {
      c.destroy();
    }
  });

  async function raw(headers: Record<string, string>, pathAndQuery = "/things/esp32-01/shadow"): Promise<{ status: number; body: string; type: string | undefined }> {
    const u = new URL(info.endpoint);
    return new Promise((resolve, reject) => {
      const req = https.request({ host: u.hostname, port: Number(u.port), path: pathAndQuery, method: "GET", headers, ca: cloud.pki.caPem }, (res) => {
        let body = "";
        res.on("data", (d: Buffer) => { body += d.toString("utf8"); });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, type: res.headers["x-amzn-errortype"] as string | undefined }));
      });
      req.on("error", reject);
      req.end();
    });
  }

  async function signed(at: Date, pathAndQuery = "/things/esp32-01/shadow"): Promise<Record<string, string>> {
    const u = new URL(info.endpoint);
    const signer = new SignatureV4({ service: "iotdata", region: info.region, credentials: info, sha256: Sha256 });
    const [p, q] = pathAndQuery.split("?");
    const query = Object.fromEntries(new URLSearchParams(q ?? ""));
    const r = await signer.sign({ method: "GET", protocol: "https:", hostname: u.hostname, port: Number(u.port), path: p!, query, headers: { host: u.host } }, { signingDate: at });
    return r.headers as Record<string, string>;
  }

  test("a request signed by the SDK's own signer now is accepted (the control for the next one)", async () => {
    const r = await raw(await signed(new Date(), "/things/esp32-01/shadow?name=ota"), "/things/esp32-01/shadow?name=ota");
    expect(r.status).toBe(200);
  });

  test("a request signed 20 minutes ago → 403 'Signature expired'", async () => {
    const r = await raw(await signed(new Date(Date.now() - 20 * 60_000)));
    expect(r.status).toBe(403);
    expect(r.type).toBe("InvalidSignatureException");
    expect(JSON.parse(r.body).message).toMatch(/^Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z/);
  });

  test("a signed query that was changed on the way → signature mismatch", async () => {
    const headers = await signed(new Date(), "/things/esp32-01/shadow?name=ota");
    const r = await raw(headers, "/things/esp32-01/shadow?name=b-side");
    expect(r).toMatchObject({ status: 403, type: "InvalidSignatureException" });
  });

  test("no Authorization header → 403 'Missing Authentication Token'", async () => {
    const r = await raw({});
    expect(r).toMatchObject({ status: 403, type: "MissingAuthenticationTokenException" });
    expect(JSON.parse(r.body)).toEqual({ message: "Missing Authentication Token" });
  });

  test("a signature for another service → 403", async () => {
    const u = new URL(info.endpoint);
    const signer = new SignatureV4({ service: "iot", region: info.region, credentials: info, sha256: Sha256 });
    const r0 = await signer.sign({ method: "GET", protocol: "https:", hostname: u.hostname, port: Number(u.port), path: "/things/esp32-01/shadow", headers: { host: u.host } });
    const r = await raw(r0.headers as Record<string, string>);
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body).message).toBe("Credential should be scoped to correct service: 'iotdata'.");
  });
});
