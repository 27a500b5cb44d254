/**
 * The fleet view (src/sim/fleet-events.ts) through the real local cloud on aedes: devices with their own
 * certificates publish reported states over MQTT (the AWS shadow update topic, the Azure twin reported PATCH),
 * the services accept and store them, and the fleet view, its Server-Sent Events (GET /events) and an
 * operator's webhook (a local HTTP server in this file) see the result. Releases are published through the
 * admin API as a release tool would. Bounded waits only (waitUntil); nothing on the wall clock.
 */
import { spawn } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

import { ShadowOtaError } from "../../src/core/errors";
import type { BlobInfo } from "../../src/sim/blob-server";
import { runCli } from "../../src/sim/cli";
import { deviceOfTopic, FLEET_CODES, FleetEvents, MAX_TEXT, releaseOfBlob, verifyWebhookSignature, webhookSignature, WEBHOOK_SIGNATURE_HEADER, type FleetEvent } from "../../src/sim/fleet-events";
import { serveFleetData } from "../../src/sim/fleet-page/fleet-http";
import { LocalCloud } from "../../src/sim/local-cloud";
import { MemoryLog } from "../core/fake-ports";
import { connectClient, publish, type TestClient } from "./broker-fixtures";
import { describeMosquitto, noteMosquittoSkipped } from "./mosquitto-gate";
import { waitUntil } from "./wait-until";

jest.setTimeout(60_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki");
noteMosquittoSkipped("test/sim/fleet-events.test.ts");

interface Hook { url: string; received: Array<{ body: FleetEvent; raw: string; headers: http.IncomingHttpHeaders }>; answers: number[]; close(): Promise<void> }

/** A webhook receiver on loopback: answers each POST with the next status of `answers` (then 200). */
async function webhookReceiver(answers: number[] = []): Promise<Hook> {
  const hook: Omit<Hook, "url" | "close"> = { received: [], answers };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      hook.received.push({ body: JSON.parse(raw) as FleetEvent, raw, headers: req.headers });
      res.writeHead(hook.answers.shift() ?? 200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return { ...hook, url: `http://127.0.0.1:${port}/hook`, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

/** The blob server's publish side without its HTTPS server (the webhook tests need only the events). */
function fakeBlobs(): { list(): BlobInfo[]; onPublish(l: (b: BlobInfo) => void): () => void; publish(container: string, name: string, bytes: Uint8Array): BlobInfo } {
  const listeners = new Set<(b: BlobInfo) => void>();
  return {
    list: () => [],
    onPublish: (l) => { listeners.add(l); return () => { listeners.delete(l); }; },
    publish: (container, name, bytes) => {
      const info = { container, name, path: `${container}/${name}`, size: bytes.length, etag: '"e"', url: `https://x/${container}/${name}` };
      for (const l of listeners) l(info);
      return info;
    },
  };
}

/**
 * A receiver's check written from the documented scheme alone (docs/fleet-page.md), with node:crypto, not with
 * the module's own verifier: `t=T,v1=HEX`, HEX = HMAC-SHA256(secret, "T." + the raw body).
 */
function receiverVerifies(secret: string, header: string | string[] | undefined, raw: string): boolean {
  const m = typeof header === "string" ? /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header) : null;
  if (m === null) return false;
  const mac = crypto.createHmac("sha256", secret).update(`${m[1]!}.${raw}`, "utf8").digest();
  return crypto.timingSafeEqual(mac, Buffer.from(m[2]!, "hex"));
}

describe("pure parts", () => {
  it("names releases in the seeds' conventions and nothing else", () => {
    expect(releaseOfBlob("firmware", "1.1.0.bin")).toEqual({ version: "1.1.0", cloud: "aws" });
    expect(releaseOfBlob("firmware", "v1_1_0.bin")).toEqual({ version: "1.1.0", cloud: "azure" });
    expect(releaseOfBlob("firmware", "v2_0_0-rc_1.bin")).toEqual({ version: "2.0.0-rc.1", cloud: "azure" });
    for (const [c, n] of [["canary", "1.1.0.bin"], ["firmware", "1.1.bin"], ["firmware", "v1.1.0.bin"], ["firmware", "1.1.0.img"], ["firmware", "x.bin"], ["firmware", "v1_1.bin"]] as const) {
      expect(releaseOfBlob(c, n)).toBeUndefined();
    }
  });
  it("tells device-to-cloud topics from the rest", () => {
    expect(deviceOfTopic("$aws/things/t1/shadow/update")).toEqual({ deviceId: "t1", cloud: "aws" });
    expect(deviceOfTopic("shadow-ota/things/t1/logs")).toEqual({ deviceId: "t1", cloud: "aws" });
    expect(deviceOfTopic("devices/a1/$iothub/twin/PATCH/properties/reported/?$rid=3")).toEqual({ deviceId: "a1", cloud: "azure" });
    expect(deviceOfTopic("devices/a1/messages/events/kind=log")).toEqual({ deviceId: "a1", cloud: "azure" });
    expect(deviceOfTopic("devices/a1/$iothub/twin/res/204/?$rid=3")).toBeUndefined();
    expect(deviceOfTopic("$aws/rules/x")).toBeUndefined();
  });
  it("refuses a bad webhook with a stable code", () => {
    const code = (f: () => unknown): string | undefined => { try { f(); } catch (e) { return e instanceof ShadowOtaError ? e.code : String(e); } return undefined; };
    expect(code(() => new FleetEvents({ webhook: { url: "ftp://x/" } }))).toBe(FLEET_CODES.FLEET_WEBHOOK_URL_INVALID);
    expect(code(() => new FleetEvents({ webhook: { url: "not a url" } }))).toBe(FLEET_CODES.FLEET_WEBHOOK_URL_INVALID);
    expect(code(() => new FleetEvents({ webhook: { url: "http://127.0.0.1/", attempts: 0 } }))).toBe(FLEET_CODES.FLEET_WEBHOOK_OPTION_INVALID);
    expect(code(() => new FleetEvents({ webhook: { url: "http://127.0.0.1/", secret: "" } }))).toBe(FLEET_CODES.FLEET_WEBHOOK_OPTION_INVALID);
    expect(code(() => new FleetEvents({ webhook: { url: "http://127.0.0.1/", secret: "s".repeat(1025) } }))).toBe(FLEET_CODES.FLEET_WEBHOOK_OPTION_INVALID);
  });
  it("verifies a signature only with the right secret, the exact body and a recent timestamp", () => {
    const body = '{"seq":1,"type":"updated"}';
    const header = webhookSignature("s3cret", body, 1_800_000_000);
    expect(header).toMatch(/^t=1800000000,v1=[0-9a-f]{64}$/);
    expect(receiverVerifies("s3cret", header, body)).toBe(true);
    expect(verifyWebhookSignature("s3cret", header, body, 1_800_000_000)).toBe(true);
    expect(verifyWebhookSignature("s3cret", header, Buffer.from(body), 1_800_000_000 + 300)).toBe(true);
    expect(verifyWebhookSignature("wrong", header, body, 1_800_000_000)).toBe(false);
    expect(verifyWebhookSignature("s3cret", header, body.replace("1", "2"), 1_800_000_000)).toBe(false);
    expect(verifyWebhookSignature("s3cret", header, body, 1_800_000_000 + 301)).toBe(false); // a replay, 5 min later
    expect(verifyWebhookSignature("s3cret", header.replace("t=1800000000", "t=1800000100"), body, 1_800_000_100)).toBe(false); // t is signed
    expect(verifyWebhookSignature("s3cret", undefined, body, 1_800_000_000)).toBe(false);
    expect(verifyWebhookSignature("s3cret", "v1=00", body, 1_800_000_000)).toBe(false);
  });
});

describe("through the local cloud", () => {
  const log = new MemoryLog();
  let dir: string;
  let cloud: LocalCloud;
  let hook: Hook;
  const open: TestClient[] = [];

  async function device(id: string): Promise<TestClient> {
    const c = cloud.credentials(id);
    const t = await connectClient(c.port, { caPem: c.ca, certPem: c.cert, keyPem: c.key }, id);
    open.push(t);
    return t;
  }
  const awsReport = (t: TestClient, id: string, reported: unknown): Promise<void> => publish(t, `$aws/things/${id}/shadow/update`, JSON.stringify({ state: { reported } }));
  let rid = 0;
  const azureReport = (t: TestClient, reported: unknown): Promise<void> => publish(t, `$iothub/twin/PATCH/properties/reported/?$rid=${++rid}`, JSON.stringify(reported));
  const fu = (state: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ state, from: "1.0.0", to: "1.1.0", bytes: null, total: null, percent: null, attempt: 1, lastError: null, ...extra });

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-fleet-"));
    hook = await webhookReceiver();
    cloud = await LocalCloud.start({
      dataDir: path.join(dir, "cloud"), certsDir: PKI, log, shadowEngine: { rateLimitPerSecond: 0 },
      devices: [{ id: "fl-aws", cloud: "aws" }, { id: "fl-az", cloud: "azure" }], webhook: { url: hook.url, backoffMs: 10 },
    });
  });
  afterAll(async () => {
    await Promise.all(open.splice(0).map((c) => c.end()));
    await cloud.close();
    await hook.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("lists known devices before they report", () => {
    expect(cloud.fleet.devices().map((d) => [d.id, d.cloud, d.version, d.lastSeen])).toEqual([["fl-aws", "aws", null, null], ["fl-az", "azure", null, null]]);
  });

  it("follows an AWS device's update to Valid: progress, last seen, one 'updated' event, webhook and stream", async () => {
    const stream = await fetch(`${cloud.adminUrl}/events`, { headers: { authorization: `Bearer ${cloud.adminToken}` } });
    expect(stream.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reader = stream.body!.getReader();
    let streamed = "";
    const pump = (async () => { for (;;) { const r = await reader.read(); if (r.done) return; streamed += Buffer.from(r.value).toString("utf8"); } })().catch(() => undefined);

    const t = await device("fl-aws");
    await awsReport(t, "fl-aws", { config: { firmware_version: "1.0.0" }, firmwareUpdate: fu("Downloading", { bytes: 4096, total: 10240, percent: 40 }) });
    const d = await waitUntil(() => { const x = cloud.fleet.device("fl-aws"); return x?.update?.percent === 40 ? x : undefined; }, 10_000, "progress 40");
    expect(d).toMatchObject({ version: "1.0.0", update: { state: "Downloading", bytes: 4096, total: 10240, to: "1.1.0" } });
    expect(d.lastSeen).not.toBeNull();
    await awsReport(t, "fl-aws", { config: { firmware_version: "1.1.0" }, firmwareUpdate: fu("Valid", { bytes: 10240, total: 10240, percent: 100 }) });
    const e = await waitUntil(() => cloud.fleet.events().find((x) => x.deviceId === "fl-aws" && x.type === "updated"), 10_000, "updated event");
    expect(e).toMatchObject({ cloud: "aws", from: "1.0.0", to: "1.1.0", version: "1.1.0", error: null });
    const got = await waitUntil(() => hook.received.find((r) => r.body.seq === e.seq), 10_000, "webhook delivery");
    expect(got.body).toEqual(e);
    expect(got.headers["content-type"]).toBe("application/json");
    expect(got.headers["x-shadow-ota-event"]).toBe("updated");
    expect(got.headers["x-shadow-ota-delivery"]).toBe(`${e.seq}.1`);
    await waitUntil(() => (streamed.includes(`id: ${e.seq}\nevent: fleet\ndata: ${JSON.stringify(e)}\n\n`) && streamed.includes('"percent":40') ? true : undefined), 10_000, "the event on the stream");
    await reader.cancel();
    await pump;

    // The same Valid again (a restarted device re-reports it): no second event.
    const before = cloud.fleet.events().length;
    await awsReport(t, "fl-aws", { config: { firmware_version: "1.1.0" }, firmwareUpdate: fu("Valid", { bytes: 10240, total: 10240, percent: 100 }), x: 1 });
    await waitUntil(() => (cloud.fleet.device("fl-aws")!.lastSeen !== d.lastSeen ? true : undefined), 10_000, "seen again");
    await cloud.store.flush();
    expect(cloud.fleet.events().length).toBe(before);
  });

  it("an Azure device's rollback is a 'rolled-back' event with its error", async () => {
    const t = await device("fl-az");
    await azureReport(t, { firmwareVersion: "1.0.0", firmwareUpdate: fu("PendingVerify") });
    await azureReport(t, { firmwareVersion: "1.0.0", firmwareUpdate: fu("RolledBack", { lastError: { code: "OTA_SELF_TEST_FAILED", message: "self-test failed", time: 1 } }) });
    const e = await waitUntil(() => cloud.fleet.events().find((x) => x.deviceId === "fl-az"), 10_000, "rolled-back event");
    expect(e).toMatchObject({ type: "rolled-back", cloud: "azure", to: "1.1.0", version: "1.0.0", error: { code: "OTA_SELF_TEST_FAILED", message: "self-test failed" } });
    expect(cloud.fleet.device("fl-az")!.lastError).toEqual({ code: "OTA_SELF_TEST_FAILED", message: "self-test failed" });
    await waitUntil(() => hook.received.find((r) => r.body.seq === e.seq), 10_000, "webhook delivery");
  });

  it("a published release shows as available on the devices it applies to, and is an event", async () => {
    const put = (name: string): Promise<Response> => fetch(`${cloud.adminUrl}/firmware/firmware/${name}`, { method: "PUT", headers: { authorization: `Bearer ${cloud.adminToken}` }, body: Buffer.alloc(64, 1) });
    expect((await put("1.2.0.bin")).status).toBe(200);
    const e = await waitUntil(() => cloud.fleet.events().find((x) => x.type === "release-published" && x.release?.cloud === "aws"), 5_000, "release event");
    expect(e.release).toMatchObject({ version: "1.2.0", name: "1.2.0.bin", size: 64, devices: ["fl-aws"] });
    expect(cloud.fleet.device("fl-aws")!.available?.version).toBe("1.2.0");
    expect(cloud.fleet.device("fl-az")!.available).toBeNull(); // its seed names v1_2_0.bin
    expect((await put("v1_2_0.bin")).status).toBe(200);
    expect(cloud.fleet.device("fl-az")!.available).toEqual({ version: "1.2.0", url: `${cloud.blobBaseUrl}v1_2_0.bin` });
    // An older release than what a device runs applies to none.
    expect((await put("1.0.5.bin")).status).toBe(200);
    expect(cloud.fleet.events().at(-1)!.release).toMatchObject({ version: "1.0.5", devices: [] });
    expect(cloud.fleet.device("fl-aws")!.available?.version).toBe("1.2.0");
  });

  it("takes nothing from a device's report as markup or without bounds", async () => {
    const t = await device("fl-aws");
    const evil = `<img src=x onerror="alert(1)">${"x".repeat(1_000)}`;
    await awsReport(t, "fl-aws", { config: { firmware_version: "<b>9</b>" }, firmwareUpdate: { state: 5, percent: "50" }, lastError: { code: "<script>", message: evil } });
    const d = await waitUntil(() => { const x = cloud.fleet.device("fl-aws"); return x?.lastError?.code === "<script>" ? x : undefined; }, 10_000, "evil report");
    expect(d.version).toBe("<b>9</b>"); // kept as text; the page puts it in with textContent (test:browser)
    expect(d.update).toBeNull(); // a state that is no string: no update
    expect(d.lastError!.message.length).toBe(MAX_TEXT);
    expect(d.available).toBeNull(); // no SemVer running: nothing to compare
  });

  it("a stream resumes after the event it names, and at most 32 streams are open at once", async () => {
    const auth = { authorization: `Bearer ${cloud.adminToken}` };
    const all = cloud.fleet.events();
    expect(all.length).toBeGreaterThanOrEqual(3);
    const last = all.at(-1)!.seq;
    const read = async (res: Response, until: (text: string) => boolean): Promise<string> => {
      const reader = res.body!.getReader();
      let text = "";
      for (let i = 0; i < 1000 && !until(text); i++) { const r = await reader.read(); if (r.done) break; text += Buffer.from(r.value).toString("utf8"); }
      await reader.cancel();
      return text;
    };
    const resumed = await read(await fetch(`${cloud.adminUrl}/events`, { headers: { ...auth, "last-event-id": String(last - 1) } }), (t) => t.includes(`id: ${last}\n`));
    expect([...resumed.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]))).toEqual([last]);
    expect(resumed).toContain('event: device\ndata: {"id":"fl-aws"');

    const open: Response[] = [];
    try {
      for (let i = 0; i < 32; i++) {
        const r = await fetch(`${cloud.adminUrl}/events?after=${last}`, { headers: auth });
        expect(r.status).toBe(200);
        open.push(r);
      }
      const refused = await fetch(`${cloud.adminUrl}/events`, { headers: auth });
      expect(refused.status).toBe(503);
      expect(await refused.json()).toMatchObject({ code: "ADMIN_TOO_MANY_STREAMS" });
      await open.shift()!.body!.cancel();
      const again = await waitUntil(async () => { const r = await fetch(`${cloud.adminUrl}/events?after=${last}`, { headers: auth }); if (r.status === 200) return r; await r.body?.cancel(); return undefined; }, 10_000, "a stream once one closed");
      open.push(again);
    } finally {
      for (const r of open) await r.body!.cancel().catch(() => undefined);
    }
  });

  it("refuses an 'after' or Last-Event-ID that is not one sequence number with 400 ADMIN_QUERY_INVALID", async () => {
    const auth = { authorization: `Bearer ${cloud.adminToken}` };
    for (const q of ["after=abc", "after=-1", "after=1.5", "after=", "after=1&after=2", "after=9999999999999999"]) {
      const r = await fetch(`${cloud.adminUrl}/events?${q}`, { headers: auth });
      expect([q, r.status]).toEqual([q, 400]);
      expect(await r.json()).toMatchObject({ code: "ADMIN_QUERY_INVALID", message: expect.stringContaining("after must be one event sequence number") });
    }
    const r = await fetch(`${cloud.adminUrl}/events`, { headers: { ...auth, "last-event-id": "x1" } });
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ code: "ADMIN_QUERY_INVALID", message: expect.stringContaining("Last-Event-ID") });
  });

  it("the static page needs no token, its data does", async () => {
    const page = await fetch(`${cloud.adminUrl}/fleet`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(await page.text()).toContain('<script src="/fleet/fleet.js"');
    expect((await fetch(`${cloud.adminUrl}/fleet/state`)).status).toBe(401);
    expect((await fetch(`${cloud.adminUrl}/events`)).status).toBe(401);
    const state = await (await fetch(`${cloud.adminUrl}/fleet/state`, { headers: { authorization: `Bearer ${cloud.adminToken}` } })).json() as { devices: unknown[]; events: unknown[]; webhook: { delivered: number } };
    expect(state.devices).toHaveLength(2);
    expect(state.webhook.delivered).toBeGreaterThanOrEqual(2);
  });
});

describe("the webhook", () => {
  it("retries a failing receiver with backoff and gives up after its attempts, never holding up the cloud", async () => {
    const hook = await webhookReceiver([500, 503]);
    const fleet = new FleetEvents({ webhook: { url: hook.url, attempts: 3, backoffMs: 5 } });
    const blobs = fakeBlobs();
    fleet.watchBlobs(blobs);
    blobs.publish("firmware", "1.0.0.bin", new Uint8Array(1));
    await waitUntil(() => (fleet.webhookStats()!.delivered === 1 ? true : undefined), 10_000, "delivered on the third try");
    expect(hook.received.map((r) => r.headers["x-shadow-ota-delivery"])).toEqual(["1.1", "1.2", "1.3"]);

    hook.answers.push(500, 500, 500, 400);
    blobs.publish("firmware", "1.0.1.bin", new Uint8Array(1)); // three 500s: given up
    blobs.publish("firmware", "1.0.2.bin", new Uint8Array(1)); // a 400 is final
    await waitUntil(() => (fleet.webhookStats()!.failed === 2 ? true : undefined), 10_000, "two given up");
    expect(hook.received.slice(3).map((r) => r.headers["x-shadow-ota-delivery"])).toEqual(["2.1", "2.2", "2.3", "3.1"]);
    expect(fleet.webhookStats()).toMatchObject({ delivered: 1, failed: 2, dropped: 0, queued: 0, lastError: "HTTP 400" });
    fleet.close();
    await hook.close();
  });

  it("a receiver that is not there: publishing returns at once, the event is given up after its tries", async () => {
    const gone = await webhookReceiver();
    const url = gone.url;
    await gone.close();
    const fleet = new FleetEvents({ webhook: { url, attempts: 2, backoffMs: 5, maxQueue: 2 } });
    const blobs = fakeBlobs();
    fleet.watchBlobs(blobs);
    for (let i = 0; i < 5; i++) blobs.publish("firmware", `1.0.${i}.bin`, new Uint8Array(1));
    expect(fleet.events()).toHaveLength(5); // recorded at once, whatever the webhook does
    await waitUntil(() => { const s = fleet.webhookStats()!; return s.queued === 0 && s.failed + s.dropped === 5 ? s : undefined; }, 10_000, "all given up or dropped");
    expect(fleet.webhookStats()).toMatchObject({ delivered: 0, failed: 3, dropped: 2 });
    expect(fleet.webhookStats()!.lastError).toMatch(/fetch failed|ECONNREFUSED/);
    fleet.close();
  });
});

describe("a signed webhook", () => {
  it("signs every POST (HMAC-SHA256 over t.body): the receiver verifies it with the secret, a wrong secret fails; the secret is shown nowhere", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-fleet-signed-"));
    const hook = await webhookReceiver([503]); // the first try fails: its retry is signed again
    const secret = "whsec-0123456789abcdef";
    const log = new MemoryLog();
    const cloud = await LocalCloud.start({ dataDir: path.join(dir, "cloud"), certsDir: PKI, log, devices: [{ id: "fl-s", cloud: "aws" }], webhook: { url: hook.url, secret, backoffMs: 5 } });
    try {
      cloud.publishFirmware("firmware", "1.1.0.bin", Buffer.alloc(8));
      await waitUntil(() => (hook.received.length === 2 ? true : undefined), 10_000, "two tries");
      for (const r of hook.received) {
        const header = r.headers[WEBHOOK_SIGNATURE_HEADER];
        expect(receiverVerifies(secret, header, r.raw)).toBe(true);
        expect(receiverVerifies("whsec-not-the-secret", header, r.raw)).toBe(false);
        expect(receiverVerifies(secret, header, r.raw.replace('"size":8', '"size":9'))).toBe(false);
        expect(verifyWebhookSignature(secret, header as string, r.raw, Math.floor(Date.now() / 1000), 3600)).toBe(true);
      }
      expect(hook.received.map((r) => r.headers["x-shadow-ota-delivery"])).toEqual(["1.1", "1.2"]);
      const state = await (await fetch(`${cloud.adminUrl}/fleet/state`, { headers: { authorization: `Bearer ${cloud.adminToken}` } })).text();
      expect(JSON.parse(state)).toMatchObject({ webhook: { signed: true, delivered: 1 } });
      expect(state).not.toContain(secret);
      expect(JSON.stringify(log.lines)).not.toContain(secret);
    } finally {
      await cloud.close();
      await hook.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an unsigned webhook sends no signature header", async () => {
    const hook = await webhookReceiver();
    const fleet = new FleetEvents({ webhook: { url: hook.url } });
    const blobs = fakeBlobs();
    fleet.watchBlobs(blobs);
    blobs.publish("firmware", "1.0.0.bin", new Uint8Array(1));
    const got = await waitUntil(() => hook.received[0], 10_000, "the POST");
    expect(got.headers[WEBHOOK_SIGNATURE_HEADER]).toBeUndefined();
    expect(fleet.webhookStats()!.signed).toBe(false);
    fleet.close();
    await hook.close();
  });
});

describe("events on disk", () => {
  it("survive a restart of the cloud and their numbers go on", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-fleet-disk-"));
    try {
      let cloud = await LocalCloud.start({ dataDir: path.join(dir, "cloud"), certsDir: PKI, devices: [{ id: "fl-d", cloud: "aws" }] });
      cloud.publishFirmware("firmware", "1.1.0.bin", Buffer.alloc(8));
      expect(cloud.fleet.events().map((e) => e.seq)).toEqual([1]);
      await cloud.close();
      cloud = await LocalCloud.start({ dataDir: path.join(dir, "cloud"), certsDir: PKI, devices: [{ id: "fl-d", cloud: "aws" }] });
      try {
        expect(cloud.fleet.events()).toEqual([expect.objectContaining({ seq: 1, type: "release-published" })]); // the blob read at start is no new event
        cloud.publishFirmware("firmware", "1.2.0.bin", Buffer.alloc(8));
        expect(cloud.fleet.events().map((e) => e.seq)).toEqual([1, 2]);
        expect(cloud.fleet.releases()).toEqual([{ version: "1.2.0", clouds: ["aws"] }, { version: "1.1.0", clouds: ["aws"] }]);
      } finally {
        await cloud.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("npm run cloud -- start --webhook URL", () => {
  const ROOT = path.resolve(__dirname, "..", "..");
  it("prints the fleet page's address and POSTs a release published through the CLI to the webhook, signed with the secret from the environment", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-fleet-cli-"));
    const hook = await webhookReceiver();
    const secret = "cli-secret-5f0e2a";
    const child = spawn(path.join(ROOT, "node_modules", ".bin", "tsx"), ["src/sim/cli.ts", "start", "--data-dir", dir, "--device", "cli-01:aws", "--webhook", hook.url],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, SHADOW_OTA_WEBHOOK_SECRET: secret } });
    let out = "";
    child.stdout!.on("data", (c: Buffer) => { out += c.toString("utf8"); });
    child.stderr!.on("data", (c: Buffer) => { out += c.toString("utf8"); });
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      const page = await waitUntil(() => /fleet page: (http:\/\/127\.0\.0\.1:\d+\/fleet#token=[0-9a-f]+)/.exec(out)?.[1], 30_000, "the fleet page line");
      expect(out).toContain(`fleet events are POSTed to ${hook.url} (signed)`);
      const image = path.join(dir, "1.1.0.bin");
      fs.writeFileSync(image, Buffer.alloc(32, 7));
      const lines: string[] = [];
      expect(await runCli(["firmware", "publish", image, "--data-dir", dir], { print: (l) => lines.push(l), error: (l) => lines.push(l) })).toBe(0);
      const got = await waitUntil(() => hook.received[0], 10_000, "the webhook POST");
      expect(got.body).toMatchObject({ seq: 1, type: "release-published", release: { version: "1.1.0", cloud: "aws", name: "1.1.0.bin", size: 32, devices: [] } });
      expect(receiverVerifies(secret, got.headers[WEBHOOK_SIGNATURE_HEADER], got.raw)).toBe(true);
      expect(receiverVerifies("another-secret", got.headers[WEBHOOK_SIGNATURE_HEADER], got.raw)).toBe(false);
      // The token in the printed address's fragment opens the page's data.
      const [base, token] = page.split("/fleet#token=") as [string, string];
      expect((await fetch(`${base}/fleet/state`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    } finally {
      child.kill("SIGTERM");
      await exited;
      expect(out).not.toContain(secret); // never printed, not even in the cloud's log lines
      await hook.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a webhook that is not an http(s) URL, with the code", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-fleet-cli-"));
    const lines: string[] = [];
    const code = await runCli(["start", "--data-dir", dir, "--webhook", "file:///etc/passwd"], { print: (l) => lines.push(l), error: (l) => lines.push(l) }).catch((e: unknown) => e);
    expect(code instanceof ShadowOtaError ? code.code : lines.join("\n")).toMatch(/FLEET_WEBHOOK_URL_INVALID|not an absolute http/);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("refuses --webhook-secret without --webhook (usage, exit 2) and an empty secret with the code, never echoing it", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-fleet-cli-"));
    const lines: string[] = [];
    const io = { print: (l: string) => lines.push(l), error: (l: string) => lines.push(l) };
    expect(await runCli(["start", "--data-dir", dir, "--webhook-secret", "hush-hush-1"], io)).toBe(2);
    expect(lines[0]).toMatch(/^--webhook-secret needs --webhook URL\nusage:/);
    const code = await runCli(["start", "--data-dir", dir, "--webhook", "http://127.0.0.1:9/", "--webhook-secret", ""], io).catch((e: unknown) => e);
    expect(code instanceof ShadowOtaError ? code.code : lines.join("\n")).toMatch(/FLEET_WEBHOOK_OPTION_INVALID|webhook secret must be/);
    expect(lines.join("\n")).not.toContain("hush-hush-1");
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describeMosquitto("on mosquitto (an Azure device on its own broker instance)", () => {
  it("sees the Azure device's reports and messages through its dedicated link", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-fleet-mq-"));
    const cloud = await LocalCloud.start({ broker: "mosquitto", dataDir: path.join(dir, "cloud"), certsDir: PKI, blobPort: false, devices: [{ id: "fl-mq-az", cloud: "azure" }] });
    let t: TestClient | undefined;
    try {
      const c = cloud.credentials("fl-mq-az");
      t = await connectClient(c.port, { caPem: c.ca, certPem: c.cert, keyPem: c.key }, "fl-mq-az");
      await publish(t, "$iothub/twin/PATCH/properties/reported/?$rid=1", JSON.stringify({ firmwareVersion: "1.0.0", firmwareUpdate: { state: "Failed", from: "1.0.0", to: "1.1.0", lastError: { code: "OTA_DOWNLOAD_FAILED", message: "x" } } }));
      const e = await waitUntil(() => cloud.fleet.events().find((x) => x.deviceId === "fl-mq-az"), 10_000, "failed event");
      expect(e).toMatchObject({ type: "failed", cloud: "azure", error: { code: "OTA_DOWNLOAD_FAILED" } });
      expect(cloud.fleet.device("fl-mq-az")!.lastSeen).not.toBeNull();
    } finally {
      await t?.end();
      await cloud.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a stream whose client stops reading", () => {
  it("is closed once 1 MiB waits for it, instead of buffering without bound", async () => {
    const fleet = new FleetEvents({ devices: () => new Map([["slow-01", "aws" as const]]) });
    let closed = false;
    const server = http.createServer((req, res) => {
      res.on("close", () => { closed = true; });
      if (!serveFleetData(fleet, req, res)) res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const socket = net.connect((server.address() as net.AddressInfo).port, "127.0.0.1");
    await new Promise<void>((r) => socket.once("connect", r));
    socket.pause(); // never reads: the kernel's buffers fill, then the server's
    socket.write("GET /events HTTP/1.1\r\nHost: x\r\n\r\n");
    await waitUntil(() => (fleet.devices().length === 1 ? true : undefined));
    let sent = 0;
    // Bounded by count: each change is ~250 bytes, so 400,000 are ~100 MB, far beyond any socket buffer.
    for (let i = 0; i < 400_000 && !closed; i++) {
      fleet.seen("slow-01", "aws");
      sent++;
      if (i % 2000 === 0) await new Promise((r) => setImmediate(r));
    }
    expect(closed).toBe(true);
    expect(sent).toBeLessThan(400_000);
    socket.destroy();
    fleet.close();
    await new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); });
  });
});
