/**
 * The device side converges through MQTT faults, on both clouds (AWS shadow, Azure twin) and both brokers
 * (aedes; mosquitto where test/sim/mosquitto-gate.ts allows): a simulated device (the same core and Node
 * adapters as the ESP32 build) talks to the local cloud through the fault proxy (src/sim/mqtt-fault-proxy.ts,
 * mutual TLS on both hops with the device's own certificate), and each test injects one fault:
 * a lost QoS 1 PUBLISH (the device's report) or PUBACK, a lost SUBACK, a desired change that arrives before
 * the get response, duplicate deliveries in both directions, a connection cut in the middle of a report, and
 * one cut in the middle of an update's progress report (the update still ends Valid, and the cloud says so).
 * The cloud side is checked by version numbers: every accepted report the proxy saw answered is in the
 * final document, and a duplicated request is not applied twice.
 *
 * Bounded: rules act a fixed number of times (counted over the proxy's life, so a reconnect gets through);
 * every wait has a deadline; nothing asserts on elapsed time. The device's request timeout is 1.5 s here,
 * and SimDevice uses it as the transport's acknowledgement timeout too (NodeMqttTransport's ackTimeoutMs):
 * a lost SUBACK or PUBACK costs about that much before the device gives the session up.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Packet } from "mqtt-packet";

import { getPath } from "../../src/core/config-diff";
import type { JsonObject } from "../../src/core/json";
import type { CloudKind } from "../../src/core/cloud-protocol";
import { awsBlobName, azureBlobName } from "../../src/core/firmware-url";
import { SIM_PROJECT_NAME, SimDevice } from "../../src/sim/device";
import { buildImage } from "../../src/tools/esp-image";
import { LocalCloud, type BrokerKind } from "../../src/sim/local-cloud";
import { MqttFaultProxy, pkiTls, type FaultDirection, type FaultRule } from "../../src/sim/mqtt-fault-proxy";
import { describeEachBroker, noteMosquittoSkipped } from "./mosquitto-gate";
import { waitUntil } from "./wait-until";

jest.setTimeout(90_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki"); // shared with the other sim tests: RSA keys take time
noteMosquittoSkipped("test/sim/mqtt-faults.test.ts");

const DEVICES: Record<CloudKind, string> = { aws: "esp32-01", azure: "esp32-az-01" };
/** Where each seed's desired configuration lives (the device reports it back at the same path). */
const CONFIG_PATH: Record<CloudKind, string[]> = { aws: ["config", "interval"], azure: ["telemetry", "interval"] };
/** The request topics a device publishes its reports on, as filters. */
const REPORT_TOPIC: Record<CloudKind, string> = { aws: "$aws/things/+/shadow/update", azure: "$iothub/twin/PATCH/properties/reported/#" };
/** The topics desired changes reach the device on. */
const DESIRED_TOPIC: Record<CloudKind, string> = { aws: "$aws/things/+/shadow/update/delta", azure: "$iothub/twin/PATCH/properties/desired/#" };
/** The get response. */
const GET_RESPONSE_TOPIC: Record<CloudKind, string> = { aws: "$aws/things/+/shadow/get/accepted", azure: "$iothub/twin/res/200/#" };

interface Seen { direction: FaultDirection; packet: Packet }
interface Logged { event: string; fields: Record<string, unknown> }

describeEachBroker("the device converges through MQTT faults on %s", (broker: BrokerKind) => {
  let dir: string;
  let cloud: LocalCloud;
  let value = 10;
  const open: Array<{ close(): Promise<void> }> = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `shadow-ota-faults-${broker}-`));
    cloud = await LocalCloud.start({
      broker, dataDir: path.join(dir, "cloud"), certsDir: PKI,
      devices: [{ id: DEVICES.aws, cloud: "aws" }, { id: DEVICES.azure, cloud: "azure" }],
    });
  });
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.close();
  });
  afterAll(async () => {
    await cloud.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function cloudReported(kind: CloudKind): Promise<JsonObject> {
    if (kind === "azure") return (await cloud.twins.getTwin(DEVICES.azure)).reported;
    const doc = await cloud.shadows.getShadow(DEVICES.aws);
    return ((doc?.["state"] as JsonObject | undefined)?.["reported"] as JsonObject | undefined) ?? {};
  }

  async function setDesired(kind: CloudKind, v: number): Promise<void> {
    const [a, b] = CONFIG_PATH[kind] as [string, string];
    if (kind === "azure") await cloud.twins.updateDesired(DEVICES.azure, { [a]: { [b]: v } });
    else await cloud.shadows.updateDesired(DEVICES.aws, { [a]: { [b]: v } });
  }

  /** A fresh device (new flash and NVS) of `kind` connected through a new proxy with `rules`. */
  async function deviceThroughProxy(kind: CloudKind, rules: FaultRule[] = []): Promise<{ device: SimDevice; proxy: MqttFaultProxy; seen: Seen[]; logs: Logged[] }> {
    const id = DEVICES[kind];
    const creds = cloud.credentials(id);
    const { downstreamTls, upstreamTls } = pkiTls(cloud.pki);
    const seen: Seen[] = [];
    const proxy = await MqttFaultProxy.start({
      upstream: { host: creds.host, port: creds.port, tls: upstreamTls }, downstreamTls, rules,
      onPacket: (direction, packet) => seen.push({ direction, packet }),
    });
    open.push(proxy);
    const logs: Logged[] = [];
    const device = SimDevice.start({
      ...creds, port: proxy.port, dataDir: fs.mkdtempSync(path.join(dir, `${id}-`)), requestTimeoutMs: 1_500,
      log: { log: (_level, event, fields) => { logs.push({ event, fields: fields ?? {} }); } },
    });
    open.push(device);
    return { device, proxy, seen, logs };
  }

  /** Resolves once the cloud holds `v` as reported at the seed's config path and the device agrees. */
  async function converged(kind: CloudKind, device: SimDevice, v: number, what: string): Promise<void> {
    await waitUntil(async () => (getPath(await cloudReported(kind), CONFIG_PATH[kind]) === v ? true : undefined), 30_000, `${what}: cloud reported ${v}`);
    await device.waitFor((s) => getPath(s.reported, CONFIG_PATH[kind]) === v && getPath(s.desired, CONFIG_PATH[kind]) === v, 30_000, `${what}: device holds ${v}`);
  }

  /** Resolves once the device has its get response and the cloud holds its running version. */
  async function synced(kind: CloudKind, device: SimDevice): Promise<void> {
    await device.waitFor(() => device.sync.synced, 30_000, "get response received");
    const key = kind === "aws" ? ["config", "firmware_version"] : ["firmwareVersion"];
    await waitUntil(async () => (getPath(await cloudReported(kind), key) === "1.0.0" ? true : undefined), 30_000, "running version reported");
  }

  const topicOf = (p: Packet): string => (p.cmd === "publish" ? p.topic : "");
  const matches = (filter: string, topic: string): boolean => {
    const f = filter.split("/"); const t = topic.split("/");
    for (let i = 0; i < f.length; i++) { if (f[i] === "#") return true; if (f[i] !== "+" && f[i] !== t[i]) return false; }
    return f.length === t.length;
  };

  for (const kind of ["aws", "azure"] as const) {
    describe(kind, () => {
      it("a lost report PUBLISH (device → cloud): the device times out, re-gets and reports again", async () => {
        const { device, proxy } = await deviceThroughProxy(kind);
        await synced(kind, device);
        proxy.addRule({ action: "drop", type: "publish", direction: "up", topic: REPORT_TOPIC[kind] });
        const v = ++value;
        await setDesired(kind, v);
        await converged(kind, device, v, "after a lost report");
        expect(proxy.events.map((e) => `${e.direction} ${e.type} ${e.action}`)).toEqual(["up publish drop"]);
      });

      it("a lost PUBACK of a report: the device gives the session up and reports again on the next one", async () => {
        const { device, proxy } = await deviceThroughProxy(kind);
        await synced(kind, device);
        proxy.addRule({ action: "drop", type: "puback", direction: "down" });
        const v = ++value;
        await setDesired(kind, v);
        await converged(kind, device, v, "after a lost PUBACK");
        // A later change still gets through: the device is not stuck behind the unacknowledged publish.
        const w = ++value;
        await setDesired(kind, w);
        await converged(kind, device, w, "the change after");
        expect(proxy.events.map((e) => `${e.direction} ${e.type} ${e.action}`)).toEqual(["down puback drop"]);
      });

      it("a lost SUBACK: the device does not wait forever for it; it reconnects, subscribes and syncs", async () => {
        const { device, proxy } = await deviceThroughProxy(kind, [{ action: "drop", type: "suback", direction: "down" }]);
        await synced(kind, device);
        const v = ++value;
        await setDesired(kind, v);
        await converged(kind, device, v, "after a lost SUBACK");
        expect(proxy.events.map((e) => `${e.direction} ${e.type} ${e.action}`)).toEqual(["down suback drop"]);
        expect(proxy.connections).toBeGreaterThanOrEqual(2);
      });

      it("a desired change that reaches the device before the get response is not lost", async () => {
        const { device, proxy } = await deviceThroughProxy(kind);
        await synced(kind, device);
        // On the next connect the get response is held back until the next packet to the device has passed,
        // and that packet is the notification of a change made after the cloud answered the get.
        proxy.addRule({ action: "reorder", type: "publish", direction: "down", topic: GET_RESPONSE_TOPIC[kind] });
        proxy.cutAll();
        await waitUntil(() => (proxy.events.length > 0 ? true : undefined), 30_000, "get response held back");
        const v = ++value;
        await setDesired(kind, v);
        await converged(kind, device, v, "after a delta before the get response");
        expect(proxy.events.map((e) => `${e.direction} ${e.type} ${e.action}`)).toEqual(["down publish reorder"]);
      });

      it("duplicate deliveries: a desired change delivered three times is acted on once; a duplicated report is applied once: AWS refuses the copy by its version (409), the twin answers the copy as the original", async () => {
        const { device, proxy, seen, logs } = await deviceThroughProxy(kind);
        await synced(kind, device);
        proxy.addRule({ action: "duplicate", type: "publish", direction: "down", topic: DESIRED_TOPIC[kind], copies: 2 });
        proxy.addRule({ action: "duplicate", type: "publish", direction: "up", topic: REPORT_TOPIC[kind] });
        const from = seen.length;
        const v = ++value;
        await setDesired(kind, v);
        await converged(kind, device, v, "after duplicates");
        const publishes = (): Array<{ direction: FaultDirection; topic: string; body: string }> => seen.slice(from)
          .filter((x) => x.packet.cmd === "publish")
          .map((x) => ({ direction: x.direction, topic: topicOf(x.packet), body: Buffer.from((x.packet as { payload: Buffer }).payload).toString("utf8") }));
        // The copies of the notification are not handed on again: recognised as stale by their version, or (AWS)
        // ignored while the get that the service's update/accepted asked for is pending (sync.desired.changed-elsewhere).
        const notified = Number(getPath(device.state(), ["version"]));
        const ignored = (): number => logs.filter((l) => (l.event === "SYNC_VERSION_STALE" || l.event === "sync.desired.before-get") && l.fields["version"] === notified).length;
        await waitUntil(() => (ignored() >= 2 ? true : undefined), 10_000, "copies seen as stale or ignored before the get");
        expect(logs.filter((l) => l.event === "sync.desired" && l.fields["version"] === notified)).toHaveLength(1);
        const dup = proxy.events.find((e) => e.action === "duplicate" && e.direction === "up");
        expect(dup).toBeDefined();
        if (kind === "aws") {
          // The duplicated report carries the shadow version it was based on: the copy is refused with 409,
          // so the shadow's version moves once for it.
          const report = publishes().find((p) => p.direction === "up" && matches(REPORT_TOPIC.aws, p.topic))!;
          const token = (JSON.parse(report.body) as JsonObject)["clientToken"];
          const answers = await waitUntil(() => {
            const a = publishes().filter((p) => p.direction === "down" && /\/update\/(accepted|rejected)$/.test(p.topic))
              .map((p) => ({ topic: p.topic, doc: JSON.parse(p.body) as JsonObject })).filter((p) => p.doc["clientToken"] === token);
            return a.length >= 2 ? a : undefined;
          }, 10_000, "both answers to the duplicated report");
          expect(answers.map((a) => a.topic.endsWith("/accepted") ? "accepted" : `rejected ${String(a.doc["code"])}`).sort()).toEqual(["accepted", "rejected 409"]);
        } else {
          // Both copies are answered, with the same status and $version: the copy (same $rid, same body,
          // nothing applied since) is recognised and not applied again, so the twin's version moves once.
          const report = publishes().find((p) => p.direction === "up" && matches("$iothub/twin/PATCH/properties/reported/#", p.topic))!;
          const rid = /\$rid=([^&]+)/.exec(report.topic)![1];
          const answers = await waitUntil(() => {
            const a = publishes().filter((p) => p.direction === "down" && p.topic.startsWith("$iothub/twin/res/") && p.topic.includes(`$rid=${rid}&`)).map((p) => p.topic);
            return a.length >= 2 ? a : undefined;
          }, 10_000, "both answers to the duplicated report");
          expect(answers).toHaveLength(2);
          expect(answers[1]).toBe(answers[0]);
          expect(answers[0]).toMatch(/^\$iothub\/twin\/res\/204\//);
        }
        expect(proxy.events.filter((e) => e.action === "duplicate").map((e) => e.direction).sort()).toEqual(["down", "up"]);
      });

      it("a cut in the middle of a report: the device reconnects and the cloud ends with the report once", async () => {
        const { device, proxy } = await deviceThroughProxy(kind);
        await synced(kind, device);
        proxy.addRule({ action: "cut-mid", type: "publish", direction: "up", topic: REPORT_TOPIC[kind] });
        const v = ++value;
        await setDesired(kind, v);
        await converged(kind, device, v, "after a cut mid-report");
        expect(proxy.events.map((e) => `${e.direction} ${e.type} ${e.action}`)).toEqual(["up publish cut-mid"]);
        expect(proxy.connections).toBeGreaterThanOrEqual(2);
      });
    });
  }
});

describeEachBroker("an update's progress reports cut by the network on %s", (broker: BrokerKind) => {
  let dir: string;
  let cloud: LocalCloud;
  const open: Array<{ close(): Promise<void> }> = [];
  const SIZE = 192 * 1024;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `shadow-ota-faults-ota-${broker}-`));
    cloud = await LocalCloud.start({
      broker, dataDir: path.join(dir, "cloud"), certsDir: PKI, blobs: { bytesPerSecond: 128 * 1024 },
      devices: [{ id: DEVICES.aws, cloud: "aws" }, { id: DEVICES.azure, cloud: "azure" }],
    });
    cloud.blobs.publish("firmware", awsBlobName("1.1.0"), buildImage({ version: "1.1.0", projectName: SIM_PROJECT_NAME, size: SIZE, seed: 11 }));
    cloud.blobs.publish("firmware", azureBlobName("1.1.0"), buildImage({ version: "1.1.0", projectName: SIM_PROJECT_NAME, size: SIZE, seed: 12 }));
  });
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.close();
  });
  afterAll(async () => {
    await cloud.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const kind of ["aws", "azure"] as const) {
    it(`${kind}: a cut in the middle of the second "Downloading" report; the update still ends Valid and the cloud says so`, async () => {
      const id = DEVICES[kind];
      const creds = cloud.credentials(id);
      const { downstreamTls, upstreamTls } = pkiTls(cloud.pki);
      const proxy = await MqttFaultProxy.start({
        upstream: { host: creds.host, port: creds.port, tls: upstreamTls }, downstreamTls,
        rules: [{ action: "cut-mid", type: "publish", direction: "up", topic: REPORT_TOPIC[kind], payload: "\"Downloading\"", skip: 1 }],
      });
      open.push(proxy);
      const device = SimDevice.start({
        ...creds, port: proxy.port, dataDir: path.join(dir, id), requestTimeoutMs: 1_500, log: { log() {} }, powerOffMs: 20,
        firmware: { baseUrl: cloud.blobBaseUrl, ca: creds.ca },
        ota: { retry: { initialMs: 100, maxMs: 400, maxAttempts: 20 }, selfTestWindowMs: 20_000, progressPercent: 5, progressIntervalMs: 100 },
      });
      open.push(device);
      await device.waitFor(() => device.sync.synced, 30_000, "get response received");
      if (kind === "azure") await cloud.twins.updateDesired(id, { updateVersion: "1.1.0" });
      else await cloud.shadows.updateDesired(id, { config: { firmware_version: "1.1.0" } });
      const reported = async (): Promise<JsonObject> => (kind === "azure" ? (await cloud.twins.getTwin(id)).reported
        : ((((await cloud.shadows.getShadow(id))?.["state"] as JsonObject | undefined)?.["reported"] as JsonObject | undefined) ?? {}));
      const running = kind === "aws" ? ["config", "firmware_version"] : ["firmwareVersion"];
      const final = await waitUntil(async () => {
        const r = await reported();
        return getPath(r, ["firmwareUpdate", "state"]) === "Valid" && getPath(r, running) === "1.1.0" ? r : undefined;
      }, 60_000, "Valid and 1.1.0 reported");
      expect(device.runningVersion).toBe("1.1.0");
      expect(getPath(final, ["firmwareUpdate", "percent"])).toBe(100);
      expect(proxy.events.map((e) => `${e.direction} ${e.type} ${e.action}`)).toEqual(["up publish cut-mid"]);
      expect(proxy.connections).toBeGreaterThanOrEqual(2);
    });
  }
});
