/**
 * Debian's mosquitto launched with the generated mutual-TLS config and ACL: who may connect, that a device
 * can neither send into nor read from another device's shadow (mosquitto drops a denied publish silently
 * and filters deliveries by the read rules, so non-delivery is asserted after a sentinel on the same path
 * has arrived), QoS 2, the dedicated-instance Azure mode, start failures and close().
 * Runs whenever mosquitto is installed; otherwise Jest reports these suites as skipped (test/sim/mosquitto-gate.ts).
 */
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";

import { isShadowOtaError } from "../../src/core/errors";
import { BROKER_CODES } from "../../src/sim/broker-policy";
import { AzureMosquittoInstances, MosquittoBroker, MosquittoNotInstalledError } from "../../src/sim/broker-mosquitto";
import { CLOUD_SERVICE_IDENTITY, LocalPki, type Credentials } from "../../src/sim/pki";
import { connectClient, publish, sleep, subscribe, testPki, tryConnect, waitFor, type TestClient } from "./broker-fixtures";
import { describeMosquitto, noteMosquittoSkipped } from "./mosquitto-gate";

noteMosquittoSkipped(`test/sim/${path.basename(__filename)}`);

describeMosquitto("mosquitto, AWS mode", () => {
  const { pki, dir, cleanup } = testPki("broker-mosquitto");
  let broker: MosquittoBroker;
  let devA: Credentials, devB: Credentials, svc: Credentials;
  const open: TestClient[] = [];
  async function client(creds: Credentials, clientId = creds.name): Promise<TestClient> {
    const c = await connectClient(broker.port, creds, clientId);
    open.push(c);
    return c;
  }

  beforeAll(async () => {
    devA = pki.client("dev-a");
    devB = pki.client("dev-b");
    svc = pki.client(CLOUD_SERVICE_IDENTITY);
    broker = await MosquittoBroker.start({ pki, mode: "aws" });
  });
  afterEach(async () => { await Promise.all(open.splice(0).map((c) => c.end())); });
  afterAll(async () => {
    await broker?.close();
    cleanup();
  });

  test("runs, as the mosquitto user when started as root, with its config and key out of reach of others", () => {
    expect(broker.running).toBe(true);
    expect(broker.logLines().join("\n")).toMatch(/mosquitto version 2\.\d+\.\d+ running/);
    // Persistent sessions expire after AWS's default hour (an hour cannot be waited for here: the setting is
    // checked in the config this process runs with).
    expect(fs.readFileSync(path.join(broker.runtimeDir, "mosquitto.conf"), "utf8")).toMatch(/^persistent_client_expiration 1h$/m);
    const st = fs.statSync(path.join(broker.runtimeDir, "server.key.pem"));
    expect(st.mode & 0o777).toBe(0o600);
    if (process.getuid?.() === 0) {
      const owner = fs.readFileSync(`/proc/${broker.pid}/status`, "utf8").match(/^Uid:\s+(\d+)/m)?.[1];
      expect(Number(owner)).toBe(st.uid);
      expect(st.uid).not.toBe(0);
    }
  });

  test("a device certificate connects; certificates from another CA and no certificate do not", async () => {
    expect((await tryConnect(broker.port, devA, "dev-a")).connected).toBe(true);
    const stranger = LocalPki.open(path.join(dir, "other-ca")).client("dev-a");
    expect((await tryConnect(broker.port, { caPem: devA.caPem, certPem: stranger.certPem, keyPem: stranger.keyPem }, "dev-a")).connected).toBe(false);
    expect((await tryConnect(broker.port, { caPem: devA.caPem }, "dev-a")).connected).toBe(false);
  });

  test("the client id is replaced by the CN, so a device cannot take over another's session", async () => {
    const a = await client(devA);
    const spoof = await client(devB, "dev-a");
    await sleep(200);
    expect(a.closed).toBe(false);
    expect(spoof.closed).toBe(false);
    expect(broker.logLines().some((l) => / as dev-b \(.*u'dev-b'\)/.test(l))).toBe(true);
    // and the same certificate twice: the first is dropped (the id is the CN)
    const again = await client(devA, "dev-a-2");
    expect(await waitFor(() => a.closed)).toBe(true);
    expect(again.closed).toBe(false);
  });

  test("device and service exchange messages on the device's own shadow", async () => {
    const s = await client(svc);
    const a = await client(devA);
    await subscribe(s, "$aws/things/+/shadow/#");
    await subscribe(a, "$aws/things/dev-a/shadow/update/accepted");
    await publish(a, "$aws/things/dev-a/shadow/update", "u1");
    await publish(a, "$aws/things/dev-a/shadow/name/cfg/get", "g1");
    expect(await waitFor(() => s.received.length === 2)).toBe(true);
    expect(s.received.map((m) => `${m.topic}=${m.payload}`)).toEqual(["$aws/things/dev-a/shadow/update=u1", "$aws/things/dev-a/shadow/name/cfg/get=g1"]);
    await publish(s, "$aws/things/dev-a/shadow/update/accepted", "a1");
    expect(await waitFor(() => a.received.length === 1)).toBe(true);
    expect(a.received[0]!.payload).toBe("a1");
  });

  test("device A cannot publish to B's shadow (dropped silently) nor to its own response topics", async () => {
    const s = await client(svc);
    const b = await client(devB);
    const a = await client(devA);
    await subscribe(s, "$aws/things/+/shadow/#");
    await subscribe(b, "$aws/things/dev-b/shadow/#");
    await publish(a, "$aws/things/dev-b/shadow/update", "evil"); // PUBACK arrives all the same
    await publish(a, "$aws/things/dev-a/shadow/update/accepted", "evil-own");
    await publish(a, "$aws/things/dev-a/shadow/update", "sentinel-a");
    await publish(s, "$aws/things/dev-b/shadow/update/accepted", "sentinel-b");
    expect(await waitFor(() => s.received.some((m) => m.payload === "sentinel-a") && b.received.some((m) => m.payload === "sentinel-b"))).toBe(true);
    await sleep(100);
    expect(s.received.filter((m) => m.payload.startsWith("evil"))).toEqual([]);
    expect(b.received.filter((m) => m.payload.startsWith("evil"))).toEqual([]);
    expect(a.closed).toBe(false);
  });

  test("device A receives nothing of B's even when subscribed to B's topics, $aws/things/+/... or #", async () => {
    const s = await client(svc);
    const b = await client(devB);
    const a = await client(devA);
    await subscribe(a, ["$aws/things/dev-b/shadow/#", "$aws/things/+/shadow/#", "#", "$aws/#"]); // granted: mosquitto filters on delivery
    await subscribe(b, "$aws/things/dev-b/shadow/#");
    await publish(s, "$aws/things/dev-b/shadow/update/delta", "for-b");
    await publish(s, "plain/topic", "for-nobody");
    await publish(s, "$aws/things/dev-a/shadow/update/delta", "sentinel-a");
    expect(await waitFor(() => a.received.length > 0 && b.received.length > 0)).toBe(true);
    await sleep(100);
    expect([...new Set(a.received.map((m) => m.payload))]).toEqual(["sentinel-a"]);
    expect(b.received.map((m) => m.payload)).toEqual(["for-b"]);
  });

  test("a QoS 2 publish closes the connection (max_qos 1)", async () => {
    const a = await client(devA);
    a.client.publish("$aws/things/dev-a/shadow/update", "{}", { qos: 2 });
    expect(await waitFor(() => a.closed)).toBe(true);
  });
});

describeMosquitto("mosquitto, one dedicated instance per Azure device", () => {
  const { pki, cleanup } = testPki("broker-mosquitto-azure");
  const instances = new AzureMosquittoInstances({ pki });
  const open: TestClient[] = [];
  afterEach(async () => { await Promise.all(open.splice(0).map((c) => c.end())); });
  afterAll(async () => {
    await instances.close();
    cleanup();
  });

  test("twin GET and response on dev-a's instance; dev-b's instance is another process; dev-b gets nothing on dev-a's", async () => {
    const [ia, ia2, ib] = await Promise.all([instances.ensure("dev-a"), instances.ensure("dev-a"), instances.ensure("dev-b")]);
    expect(ia2).toBe(ia);
    expect(ib.port).not.toBe(ia.port);
    expect(ib.pid).not.toBe(ia.pid);
    expect(instances.entries().map(([id]) => id).sort()).toEqual(["dev-a", "dev-b"]);

    const svc = pki.client(CLOUD_SERVICE_IDENTITY);
    const sA = await connectClient(ia.port, svc, "twin-link-a");
    const a = await connectClient(ia.port, pki.client("dev-a"), "dev-a");
    const bOnA = await connectClient(ia.port, pki.client("dev-b"), "dev-b");
    const b = await connectClient(ib.port, pki.client("dev-b"), "dev-b");
    open.push(sA, a, bOnA, b);
    await subscribe(sA, ["$iothub/twin/GET/#", "$iothub/twin/PATCH/properties/reported/#"]);
    await subscribe(a, "$iothub/twin/res/#");
    await subscribe(bOnA, "$iothub/#");
    await subscribe(b, "$iothub/twin/res/#");

    await publish(a, "$iothub/twin/GET/?$rid=1", "");
    await publish(bOnA, "$iothub/twin/GET/?$rid=66", "intruder");
    await publish(a, "$iothub/twin/PATCH/properties/reported/?$rid=2", '{"firmwareVersion":"1.0.0"}');
    expect(await waitFor(() => sA.received.length >= 2)).toBe(true);
    await sleep(100);
    expect(sA.received.map((m) => m.topic)).toEqual(["$iothub/twin/GET/?$rid=1", "$iothub/twin/PATCH/properties/reported/?$rid=2"]);

    await publish(sA, "$iothub/twin/res/200/?$rid=1", '{"desired":{"$version":1},"reported":{"$version":1}}');
    expect(await waitFor(() => a.received.length === 1)).toBe(true);
    expect(a.received[0]).toEqual({ topic: "$iothub/twin/res/200/?$rid=1", payload: '{"desired":{"$version":1},"reported":{"$version":1}}', retain: false });
    await sleep(100);
    expect(bOnA.received).toEqual([]);
    expect(b.received).toEqual([]);
  });

  test("a device may not publish twin responses on its own instance", async () => {
    const ia = await instances.ensure("dev-a");
    const sA = await connectClient(ia.port, pki.client(CLOUD_SERVICE_IDENTITY), "twin-link-a");
    const a = await connectClient(ia.port, pki.client("dev-a"), "dev-a");
    open.push(sA, a);
    await subscribe(sA, "$iothub/#");
    await publish(a, "$iothub/twin/res/200/?$rid=1", "spoof");
    await publish(a, "$iothub/twin/GET/?$rid=2", "sentinel");
    expect(await waitFor(() => sA.received.length > 0)).toBe(true);
    await sleep(100);
    expect(sA.received.map((m) => m.payload)).toEqual(["sentinel"]);
  });
});

describeMosquitto("mosquitto launcher", () => {
  const { pki, cleanup } = testPki("broker-mosquitto-launch");
  afterAll(cleanup);

  test("a taken port fails the start with BROKER_START_FAILED and the log tail", async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()));
    const port = (blocker.address() as net.AddressInfo).port;
    let caught: unknown;
    try {
      await MosquittoBroker.start({ pki, mode: "aws", port });
    } catch (e) {
      caught = e;
    }
    await new Promise<void>((r) => blocker.close(() => r()));
    expect(isShadowOtaError(caught, BROKER_CODES.BROKER_START_FAILED)).toBe(true);
    expect(String((caught as { detail?: { log?: string } }).detail?.log)).toMatch(/Address already in use/);
  });

  test("close() stops the process, removes the runtime directory, and is safe twice", async () => {
    const b = await MosquittoBroker.start({ pki, mode: "aws" });
    const pid = b.pid!;
    await b.close();
    await b.close();
    expect(b.running).toBe(false);
    expect(fs.existsSync(b.runtimeDir)).toBe(false);
    expect(() => process.kill(pid, 0)).toThrow();
    expect((await tryConnect(b.port, pki.client("dev-a"), "dev-a")).connected).toBe(false);
  });

  test("a restarted instance on the same port accepts the same device certificate", async () => {
    const first = await MosquittoBroker.start({ pki, mode: "aws" });
    await first.close();
    const second = await MosquittoBroker.start({ pki, mode: "aws", port: first.port });
    try {
      expect((await tryConnect(second.port, pki.client("dev-a"), "dev-a")).connected).toBe(true);
    } finally {
      await second.close();
    }
  });

  test("invalid identities are refused before anything starts", async () => {
    await expect(MosquittoBroker.start({ pki, mode: { azureDeviceId: "a/b" } })).rejects.toMatchObject({ code: BROKER_CODES.BROKER_OPTION_INVALID });
  });
});

test("MosquittoNotInstalledError carries BROKER_NOT_INSTALLED", () => {
  const e = new MosquittoNotInstalledError(["/nowhere"]);
  expect(isShadowOtaError(e, BROKER_CODES.BROKER_NOT_INSTALLED)).toBe(true);
  expect(e.message).toMatch(/mosquitto not installed/);
});
