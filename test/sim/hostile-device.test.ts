/**
 * A device with a valid certificate sends the shadow and twin services everything a parser can choke on
 * (issue 8, "Hardening": nothing a client sends may crash the process). Each input goes through the real
 * local cloud on aedes — broker, services, store, admin API — and afterwards the cloud must still answer
 * a well-behaved device and the admin API, with nothing logged as a failure of its own code.
 * Bounded: a fixed list plus 40 seeded random payloads per topic; every wait has a deadline.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { LocalCloud } from "../../src/sim/local-cloud";
import { MemoryLog } from "../core/fake-ports";
import { connectClient, publish, subscribe, waitFor, type TestClient } from "./broker-fixtures";

jest.setTimeout(60_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki");
const log = new MemoryLog();
let dir: string;
let cloud: LocalCloud;
const open: TestClient[] = [];

async function device(id: string): Promise<TestClient> {
  const c = cloud.credentials(id);
  const t = await connectClient(c.port, { caPem: c.ca, certPem: c.cert, keyPem: c.key }, id);
  open.push(t);
  return t;
}

async function admin(method: string, route: string, body?: string): Promise<{ status: number; json: { code?: string; message?: string } & Record<string, unknown> }> {
  const r = await fetch(cloud.adminUrl + route, { method, headers: { authorization: `Bearer ${cloud.adminToken}` }, ...(body === undefined ? {} : { body }) });
  return { status: r.status, json: (await r.json()) as { code?: string; message?: string } };
}

function seeded(seed: number, n: number): Buffer {
  let x = seed >>> 0 || 1;
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

const deep = (n: number): string => '{"a":'.repeat(n) + "1" + "}".repeat(n);
const deepArray = (n: number): string => "[".repeat(n) + "]".repeat(n);

/** Payloads that have broken JSON handling somewhere: depth, encodings, numbers, prototype keys. */
const NASTY: Array<string | Buffer> = [
  "", "{", "null", "[]", "1e400", '"x"', deep(10_000), deepArray(20_000),
  `{"state":{"reported":${deep(10_000)}}}`, `{"state":{"desired":${deep(5_000)}}}`,
  Buffer.from([0xff, 0xfe, 0x00]), Buffer.from([0xef, 0xbb, 0xbf, 0x7b, 0x7d]), Buffer.from([0xed, 0xa0, 0x80]),
  '{"__proto__":{"polluted":1}}', '{"state":{"reported":{"__proto__":{"x":1},"constructor":{"prototype":{"y":1}}}}}',
  '{"state":{"reported":{"a":1}},"version":1e308}', '{"state":{"reported":{"a":1}},"version":-1}',
  '{"state":{"reported":{"a":1}},"clientToken":' + JSON.stringify("x".repeat(100_000)) + "}",
  JSON.stringify({ state: { reported: Object.fromEntries(Array.from({ length: 5_000 }, (_, i) => [`k${i}`, i])) } }),
];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-hostile-"));
  cloud = await LocalCloud.start({
    dataDir: path.join(dir, "cloud"), certsDir: PKI, blobPort: false, log, methodTimeoutMs: 3_000,
    shadowEngine: { rateLimitPerSecond: 0 },
    devices: [{ id: "evil-aws", cloud: "aws" }, { id: "evil-az", cloud: "azure" }, { id: "good-aws", cloud: "aws" }],
  });
});
afterAll(async () => {
  await Promise.all(open.splice(0).map((c) => c.end()));
  await cloud.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Publishes, reconnecting when the broker dropped the device for the previous message. */
async function barrage(id: string, topics: readonly string[], payloads: ReadonlyArray<string | Buffer>): Promise<void> {
  let c = await device(id);
  for (const topic of topics) {
    for (const p of payloads) {
      if (c.closed) c = await device(id);
      await new Promise<void>((resolve) => c.client.publish(topic, p, { qos: 0 }, () => resolve()));
    }
  }
  // The broker handles a connection's packets in order: an answered get after the barrage means the
  // services have seen every message of it (QoS 0 on one connection).
  if (c.closed) c = await device(id);
}

function ownFailures(): unknown[] {
  return log.lines.filter((l) => l.level === "error" || /failed|threw/.test(l.event));
}

async function cloudStillServes(): Promise<void> {
  const good = await device("good-aws");
  await subscribe(good, "$aws/things/good-aws/shadow/update/accepted");
  await publish(good, "$aws/things/good-aws/shadow/update", '{"state":{"reported":{"alive":true}}}');
  expect(await waitFor(() => good.received.length > 0, 10_000)).toBe(true);
  const r = await admin("GET", "/things/good-aws/shadow");
  expect(r.status).toBe(200);
  expect(await admin("GET", "/twins/evil-az")).toMatchObject({ status: 200 });
}

test("shadow request topics: hostile and random payloads are answered or refused, never fatal", async () => {
  const root = "$aws/things/evil-aws/shadow/";
  const topics = [`${root}update`, `${root}get`, `${root}delete`, `${root}name/n1/update`, `${root}name/${"x".repeat(64)}/update`];
  const random = Array.from({ length: 40 }, (_, i) => seeded(i + 1, 1 + ((i * 131) % 2000)));
  const handled = cloud.shadows.handled;
  await barrage("evil-aws", topics, [...NASTY, ...random]);
  await cloudStillServes();
  // Not vacuous: the service saw the barrage (the broker drops the device for nothing here) and refused it.
  expect(cloud.shadows.handled - handled).toBeGreaterThanOrEqual(topics.length * (NASTY.length + random.length));
  expect(log.lines.filter((l) => l.event === "shadow.rejected").length).toBeGreaterThan(50);
  expect(ownFailures()).toEqual([]);
});

test("twin topics: hostile topics, request ids and payloads are answered or ignored, never fatal", async () => {
  const topics = [
    "$iothub/twin/GET/?$rid=1", "$iothub/twin/GET/?", "$iothub/twin/GET/?$rid=", "$iothub/twin/GET/?$rid=%ZZ",
    `$iothub/twin/GET/?$rid=${"9".repeat(5000)}`, "$iothub/twin/PATCH/properties/reported/?$rid=2",
    "$iothub/twin/PATCH/properties/reported/?$rid=2&$rid=3&__proto__=1", "$iothub/twin/PATCH/properties/reported/",
    "$iothub/methods/res/200/?$rid=1", "$iothub/methods/res/999/?$rid=1", "$iothub/methods/res/abc", "$iothub/methods/res/",
    "$iothub/twin/GET/?$rid=1&%", "$iothub/twin/PATCH/properties/reported/?$rid=%E0%A4%A",
  ];
  const random = Array.from({ length: 10 }, (_, i) => seeded(1000 + i, 1 + ((i * 97) % 1000)));
  await barrage("evil-az", topics, [...NASTY.slice(0, 14), ...random]);
  await cloudStillServes();
  expect(log.lines.filter((l) => l.event === "twin.rejected" || l.event === "twin.ignored").length).toBeGreaterThan(50);
  expect(ownFailures()).toEqual([]);
});

test("a direct method answered with a 10,000-level payload gets a 4xx/5xx answer, not a crash", async () => {
  const az = await device("evil-az");
  await subscribe(az, "$iothub/methods/POST/#");
  az.client.on("message", (topic) => {
    const rid = /\$rid=([^&]+)/.exec(topic)?.[1];
    if (rid !== undefined && topic.startsWith("$iothub/methods/POST/")) az.client.publish(`$iothub/methods/res/200/?$rid=${rid}`, deep(10_000), { qos: 0 });
  });
  const r = await admin("POST", "/twins/evil-az/methods", '{"methodName":"m","payload":{}}');
  expect(r.status).toBeGreaterThanOrEqual(400);
  expect(typeof r.json.message).toBe("string");
  await cloudStillServes();
});
