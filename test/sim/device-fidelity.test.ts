/**
 * The simulated device (the core and Node adapters the ESP32 build shares) stays within what AWS IoT Core
 * and IoT Hub accept over MQTT, observed on the wire through the fault proxy (no faults) on aedes:
 * client id ≤ 128 bytes (AWS) and equal to the certificate CN; keepalive within AWS's 30..1200 s and IoT
 * Hub's ≤ 1177 s; at most 8 filters per SUBSCRIBE and 50 subscriptions per connection (AWS); no filter or
 * topic with more than 7 slashes (AWS); no QoS 2 and no RETAIN. Sources: docs/local-cloud.md "Fidelity".
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Packet } from "mqtt-packet";

import type { CloudKind } from "../../src/core/cloud-protocol";
import { SimDevice } from "../../src/sim/device";
import { LocalCloud } from "../../src/sim/local-cloud";
import { MqttFaultProxy, pkiTls } from "../../src/sim/mqtt-fault-proxy";

jest.setTimeout(60_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki");

describe("the device's MQTT traffic within the clouds' quotas (aedes)", () => {
  let dir: string;
  let cloud: LocalCloud;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-device-fidelity-"));
    cloud = await LocalCloud.start({ broker: "aedes", dataDir: path.join(dir, "cloud"), certsDir: PKI,
      devices: [{ id: "esp32-01", cloud: "aws" }, { id: "esp32-az-01", cloud: "azure" }] });
  });
  afterAll(async () => {
    await cloud.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const [kind, id] of [["aws", "esp32-01"], ["azure", "esp32-az-01"]] as Array<[CloudKind, string]>) {
    it(`${kind}: CONNECT, SUBSCRIBE and PUBLISH stay within the quotas`, async () => {
      const creds = cloud.credentials(id);
      const { downstreamTls, upstreamTls } = pkiTls(cloud.pki);
      const up: Packet[] = [];
      const proxy = await MqttFaultProxy.start({
        upstream: { host: creds.host, port: creds.port, tls: upstreamTls }, downstreamTls,
        onPacket: (direction, p) => { if (direction === "up") up.push(p); },
      });
      const device = SimDevice.start({ ...creds, port: proxy.port, dataDir: path.join(dir, id), log: { log() {} } });
      try {
        await device.waitFor(() => device.sync.synced, 30_000, "synced");
        await (kind === "aws" ? cloud.shadows.updateDesired(id, { config: { interval: 7 } }) : cloud.twins.updateDesired(id, { telemetry: { interval: 7 } }));
        await device.waitFor((s) => JSON.stringify(s.reported).includes('"interval":7'), 30_000, "reported");
      } finally {
        await device.close();
        await proxy.close();
      }
      const connect = up.find((p) => p.cmd === "connect");
      expect(connect).toBeDefined();
      if (connect?.cmd !== "connect") return;
      expect(Buffer.byteLength(connect.clientId, "utf8")).toBeLessThanOrEqual(128);
      expect(connect.clientId).toBe(id);
      expect(connect.keepalive).toBeGreaterThanOrEqual(kind === "aws" ? 30 : 1);
      expect(connect.keepalive).toBeLessThanOrEqual(kind === "aws" ? 1200 : 1177);
      const subscribes = up.filter((p) => p.cmd === "subscribe");
      expect(subscribes.length).toBeGreaterThan(0);
      const filters = new Set<string>();
      for (const s of subscribes) {
        if (s.cmd !== "subscribe") continue;
        expect(s.subscriptions.length).toBeLessThanOrEqual(8);
        for (const f of s.subscriptions) {
          filters.add(f.topic);
          expect(f.qos).toBeLessThanOrEqual(1);
          expect(f.topic.split("/").length - 1).toBeLessThanOrEqual(7);
        }
      }
      expect(filters.size).toBeLessThanOrEqual(50);
      const publishes = up.filter((p) => p.cmd === "publish");
      expect(publishes.length).toBeGreaterThan(0);
      for (const p of publishes) {
        if (p.cmd !== "publish") continue;
        expect(p.qos).toBeLessThanOrEqual(1);
        expect(p.retain).toBe(false);
        if (kind === "aws") expect(p.topic.split("/").length - 1).toBeLessThanOrEqual(7);
      }
    });
  }
});
