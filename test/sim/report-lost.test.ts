/**
 * A lost report must not leave the twin stale, through the local cloud (aedes, mutual TLS) and the MQTT fault
 * proxy (src/sim/mqtt-fault-proxy.ts) on a SimDevice, AWS and Azure: one desired change makes the device
 * report; the proxy drops that report's PUBLISH on its way to the cloud, or the cloud's answer to it (AWS
 * update/accepted carrying the reported state, Azure's empty `$iothub/twin/res/204`). Nothing else changes
 * afterwards: the device's report times out (SYNC_TIMEOUT), it gets the document again and re-sends what the
 * cloud lacks, and the cloud's reported state ends equal to the device's. The core-level proof, with a
 * PUBLISH whose PUBACK never comes as well, is test/core/shadow-sync-report-lost.test.ts.
 *
 * Bounded: each rule acts once; every wait has a deadline; nothing asserts on elapsed time.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { getPath } from "../../src/core/config-diff";
import type { JsonObject } from "../../src/core/json";
import type { CloudKind } from "../../src/core/cloud-protocol";
import { SimDevice } from "../../src/sim/device";
import { LocalCloud } from "../../src/sim/local-cloud";
import { MqttFaultProxy, pkiTls, type FaultRule } from "../../src/sim/mqtt-fault-proxy";
import { waitUntil } from "./wait-until";

jest.setTimeout(90_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki"); // shared with the other sim tests: RSA keys take time
const DEVICES: Record<CloudKind, string> = { aws: "esp32-01", azure: "esp32-az-01" };
const CONFIG_PATH: Record<CloudKind, string[]> = { aws: ["config", "interval"], azure: ["telemetry", "interval"] };
const REPORT_TOPIC: Record<CloudKind, string> = { aws: "$aws/things/+/shadow/update", azure: "$iothub/twin/PATCH/properties/reported/#" };
/** The answer to a report (AWS: the accepted document carrying `reported`, not the one of a desired update). */
const ANSWER: Record<CloudKind, Omit<FaultRule, "action" | "type">> = {
  aws: { direction: "down", topic: "$aws/things/+/shadow/update/accepted", payload: "\"reported\"" },
  azure: { direction: "down", topic: "$iothub/twin/res/204/#" },
};

describe("a lost report or a lost answer: the cloud converges without a further change (aedes)", () => {
  let dir: string;
  let cloud: LocalCloud;
  let value = 40;
  const open: Array<{ close(): Promise<void> }> = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-report-lost-"));
    cloud = await LocalCloud.start({
      broker: "aedes", dataDir: path.join(dir, "cloud"), certsDir: PKI,
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

  async function device(kind: CloudKind) {
    const id = DEVICES[kind];
    const creds = cloud.credentials(id);
    const { downstreamTls, upstreamTls } = pkiTls(cloud.pki);
    const proxy = await MqttFaultProxy.start({ upstream: { host: creds.host, port: creds.port, tls: upstreamTls }, downstreamTls, rules: [] });
    open.push(proxy);
    const events: string[] = [];
    const dev = SimDevice.start({
      ...creds, port: proxy.port, dataDir: fs.mkdtempSync(path.join(dir, `${id}-`)), requestTimeoutMs: 1_500,
      log: { log: (_level, event) => { events.push(event); } },
    });
    open.push(dev);
    await dev.waitFor(() => dev.sync.synced, 30_000, "get response received");
    const key = kind === "aws" ? ["config", "firmware_version"] : ["firmwareVersion"];
    await waitUntil(async () => (getPath(await cloudReported(kind), key) === "1.0.0" ? true : undefined), 30_000, "running version reported");
    return { dev, proxy, events };
  }

  for (const kind of ["aws", "azure"] as const) {
    for (const lost of ["report", "answer"] as const) {
      it(`${kind}: the ${lost} lost`, async () => {
        const { dev, proxy, events } = await device(kind);
        proxy.addRule(lost === "report"
          ? { action: "drop", type: "publish", direction: "up", topic: REPORT_TOPIC[kind] }
          : { action: "drop", type: "publish", ...ANSWER[kind] });
        const v = ++value;
        await setDesired(kind, v); // the only change: everything after is the device's own doing
        await waitUntil(() => (proxy.events.length > 0 ? true : undefined), 30_000, "the rule acted");
        await waitUntil(async () => (getPath(await cloudReported(kind), CONFIG_PATH[kind]) === v ? true : undefined), 30_000, `cloud reported ${v}`);
        await dev.waitFor((s) => getPath(s.reported, CONFIG_PATH[kind]) === v, 30_000, `device holds ${v}`);
        const mine = dev.sync.getState().reported;
        const theirs = await cloudReported(kind);
        for (const k of Object.keys(mine)) expect([k, theirs[k]]).toEqual([k, mine[k]]);
        expect(proxy.events.map((e) => `${e.direction} ${e.type} ${e.action}`)).toEqual([`${lost === "report" ? "up" : "down"} publish drop`]);
        // How the device noticed. A lost answer: the report fails (SYNC_TIMEOUT, agent.report.failed), the
        // sync gets the document again on the same session. A lost PUBLISH: its PUBACK never comes, and
        // NodeMqttTransport's acknowledgement timeout gives the session up; the reconnect's get resyncs.
        if (lost === "answer") {
          await waitUntil(() => (events.slice(events.lastIndexOf("agent.report.config")).includes("agent.report.failed") ? true : undefined), 30_000, "the report failed");
          expect(events).not.toContain("mqtt.disconnected");
        } else {
          const cut = events.indexOf("mqtt.ack-timeout");
          expect(cut).toBeGreaterThan(events.lastIndexOf("agent.report.config"));
          expect(events.slice(cut)).toContain("sync.resync");
        }
      });
    }
  }
});
