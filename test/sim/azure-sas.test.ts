/**
 * Azure devices that authenticate with SAS tokens instead of a client certificate (IoT Hub's connection-
 * string flow), end to end on the local cloud's aedes broker: the cloud's device connection string, a
 * token minted by the core (src/core/sas-token.ts) as MQTT password with no certificate, the twin served as
 * to an X.509 device; every refusal IoT Hub makes (wrong key, expired, another device's token, another hub,
 * client id ≠ device id, a device without a key, nothing at all, an X.509 device without its certificate or
 * with one another CA signed) as CONNACK 5 — with SAS on, the TLS handshake no longer asks for a certificate,
 * so CONNECT is where they are refused (without SAS, test/sim/broker-aedes.test.ts refuses them in the
 * handshake); the broker dropping a device
 * whose token expires; and NodeMqttTransport renewing its token by reconnecting before expiry
 * (src/node/sas-credentials.ts). Loopback only; certificates are made at test time.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import mqtt, { type MqttClient } from "mqtt";

import { buildSasToken, deviceResourceUri, deviceSasCredentials, parseConnectionString } from "../../src/core/sas-token";
import { NodeMqttTransport } from "../../src/node/mqtt-node";
import { sasCredentialSource } from "../../src/node/sas-credentials";
import { SimDevice } from "../../src/sim/device";
import { LocalCloud } from "../../src/sim/local-cloud";
import { LocalPki } from "../../src/sim/pki";
import { MemoryLog } from "../core/fake-ports";
import { waitUntil } from "./wait-until";

jest.setTimeout(60_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki");
const log = new MemoryLog();
let dir: string;
let cloud: LocalCloud;
const open: MqttClient[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-sas-"));
  cloud = await LocalCloud.start({ dataDir: path.join(dir, "cloud"), certsDir: PKI, blobPort: false, log, devices: [{ id: "az-sas", cloud: "azure" }, { id: "az-other", cloud: "azure" }, { id: "az-dev", cloud: "azure" }, { id: "esp32-01", cloud: "aws" }] });
});
afterAll(async () => {
  for (const c of open) await c.endAsync(true);
  await cloud.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const now = (): number => Date.now() / 1000;

function connect(clientId: string, username: string | undefined, password: string | undefined, extra: Partial<mqtt.IClientOptions> = {}): Promise<MqttClient> {
  const p = mqtt.connectAsync({
    protocol: "mqtts", host: "127.0.0.1", port: cloud.mqttPort, clientId, ca: cloud.pki.caPem, protocolVersion: 4,
    reconnectPeriod: 0, connectTimeout: 10_000, ...(username === undefined ? {} : { username }), ...(password === undefined ? {} : { password }), ...extra,
  });
  return p.then((c) => { open.push(c); return c; });
}

test("the device connection string: the cloud's host, the device id and a 32-byte key, kept 0600 in the data directory", () => {
  const cs = cloud.deviceConnectionString("az-sas");
  expect(cs).toMatch(/^HostName=127\.0\.0\.1;DeviceId=az-sas;SharedAccessKey=[A-Za-z0-9+/]{43}=$/);
  expect(fs.statSync(path.join(dir, "cloud", "iothub-device-keys.json")).mode & 0o777).toBe(0o600);
  expect(() => cloud.deviceConnectionString("esp32-01")).toThrow(/not an Azure device/);
});

test("a SAS device without a certificate connects and gets its twin", async () => {
  const c = deviceSasCredentials(parseConnectionString(cloud.deviceConnectionString("az-sas")), now());
  const client = await connect("az-sas", c.username, c.password);
  const got = new Promise<string>((resolve) => client.on("message", (topic) => resolve(topic)));
  await client.subscribeAsync("$iothub/twin/res/#", { qos: 0 });
  await client.publishAsync("$iothub/twin/GET/?$rid=1", "", { qos: 0 });
  expect(await got).toBe("$iothub/twin/res/200/?$rid=1");
  await client.endAsync();
});

describe("what IoT Hub refuses is refused with CONNACK 5", () => {
  const cs = (): ReturnType<typeof parseConnectionString> => parseConnectionString(cloud.deviceConnectionString("az-sas"));
  const user = "127.0.0.1/az-sas/?api-version=2021-04-12";
  test.each([
    ["a token signed with another key", () => ["az-sas", user, buildSasToken(deviceResourceUri("127.0.0.1", "az-sas"), Buffer.alloc(32, 1).toString("base64"), Math.ceil(now()) + 600)]],
    ["an expired token", () => ["az-sas", user, buildSasToken(deviceResourceUri("127.0.0.1", "az-sas"), cs().sharedAccessKey, Math.floor(now()) - 1)]],
    ["another device's token", () => ["az-sas", user, deviceSasCredentials(parseConnectionString(cloud.deviceConnectionString("az-other")), now()).password]],
    ["a user name naming another hub", () => ["az-sas", "myhub.azure-devices.net/az-sas/?api-version=2021-04-12", deviceSasCredentials(cs(), now()).password]],
    ["a client id that is not the device id", () => ["az-other", "127.0.0.1/az-other/?api-version=2021-04-12", deviceSasCredentials(cs(), now()).password]],
    ["an AWS thing (no symmetric key)", () => ["esp32-01", "127.0.0.1/esp32-01/?api-version=2021-04-12", buildSasToken(deviceResourceUri("127.0.0.1", "esp32-01"), cs().sharedAccessKey, Math.ceil(now()) + 600)]],
    ["neither certificate nor password", () => ["az-sas", undefined, undefined]],
    ["an X.509 device (an AWS thing) with neither certificate nor password", () => ["esp32-01", undefined, undefined]],
  ])("%s", async (_what, args) => {
    const [id, u, p] = (args as () => [string, string | undefined, string | undefined])();
    await expect(connect(id, u, p)).rejects.toThrow(/Not authorized/i);
  });

  test("a certificate another CA signed, naming an X.509 device, passes the handshake (no certificate is required there any more) and is refused at CONNECT", async () => {
    const stranger = LocalPki.open(path.join(dir, "other-ca")).client("esp32-01");
    const before = log.lines.length;
    await expect(connect("esp32-01", undefined, undefined, { cert: stranger.certPem, key: stranger.keyPem })).rejects.toThrow(/Not authorized/i);
    expect(log.lines.slice(before).filter((l) => l.event === "broker.connect-refused").map((l) => l.fields?.["clientId"])).toEqual(["esp32-01"]);
  });

  test("the refusals are logged with their reason; none was a broker bug", () => {
    const reasons = log.lines.filter((l) => l.event === "broker.connect-refused").map((l) => String(l.fields?.["reason"]));
    expect(reasons.some((r) => /bad-signature/.test(r))).toBe(true);
    expect(reasons.some((r) => /expired/.test(r))).toBe(true);
    expect(reasons.some((r) => /wrong-resource/.test(r))).toBe(true);
    expect(log.lines.filter((l) => l.event === "broker.callback-failed")).toEqual([]);
  });
});

test("X.509 devices still connect with their certificate", async () => {
  const c = cloud.credentials("esp32-01");
  const client = await connect("esp32-01", undefined, undefined, { cert: c.cert, key: c.key });
  expect(client.connected).toBe(true);
  await client.endAsync();
});

test("the broker closes a SAS session when its token expires", async () => {
  const expiry = Math.ceil(now()) + 2;
  const token = buildSasToken(deviceResourceUri("127.0.0.1", "az-other"), parseConnectionString(cloud.deviceConnectionString("az-other")).sharedAccessKey, expiry);
  const client = await connect("az-other", "127.0.0.1/az-other/?api-version=2021-04-12", token);
  let closed = false;
  client.on("close", () => { closed = true; });
  await waitUntil(() => (closed ? true : undefined), 15_000, "the broker closing the expired session");
  expect(log.lines.some((l) => l.event === "broker.sas-expired" && l.fields?.["clientId"] === "az-other")).toBe(true);
});

test("NodeMqttTransport renews its token by reconnecting before the broker would drop it", async () => {
  const transport = new NodeMqttTransport({
    host: "127.0.0.1", port: cloud.mqttPort, clientId: "az-sas", ca: cloud.pki.caPem, backoff: { initialMs: 50, maxMs: 200 },
    credentials: sasCredentialSource(cloud.deviceConnectionString("az-sas"), { ttlSeconds: 4, marginSeconds: 3 }),
  });
  let connects = 0;
  transport.setHandlers({ connected: () => { connects++; }, disconnected: () => undefined, message: () => undefined });
  const expiredBefore = log.lines.filter((l) => l.event === "broker.sas-expired" && l.fields?.["clientId"] === "az-sas").length;
  transport.start();
  try {
    await waitUntil(() => (connects >= 3 ? true : undefined), 20_000, "three sessions, each with a fresh token");
  } finally {
    await transport.close();
  }
  // Every session ended by the device's renewal, none by the broker's expiry check.
  expect(log.lines.filter((l) => l.event === "broker.sas-expired" && l.fields?.["clientId"] === "az-sas").length).toBe(expiredBefore);
});

test("the simulated device configured with a connection string (no certificate) syncs its twin", async () => {
  const c = cloud.credentials("az-dev");
  const d = SimDevice.start({ ...c, cert: "", key: "", connectionString: cloud.deviceConnectionString("az-dev"), dataDir: path.join(dir, "devices", "az-dev"), log: { log() {} } });
  try {
    const reported = await waitUntil(async () => {
      const r = (await cloud.twins.getTwin("az-dev")).reported;
      return typeof r["firmwareVersion"] === "string" ? r : undefined;
    }, 30_000, "the SAS device's first report");
    expect(reported["firmwareVersion"]).toBe("1.0.0");
    await cloud.twins.updateDesired("az-dev", { telemetryInterval: 17 });
    await waitUntil(async () => ((await cloud.twins.getTwin("az-dev")).reported["telemetryInterval"] === 17 ? true : undefined), 30_000, "the desired change applied over SAS");
  } finally {
    await d.close();
  }
});
