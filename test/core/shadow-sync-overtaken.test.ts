/**
 * ShadowSync when a desired notification overtakes the get response (the network reordered them, or the
 * cloud answered the get before the change was made): the response is older than the change, so acting on
 * it alone would lose the change on Azure, where nothing republishes it. The sync asks again. Found with the
 * fault proxy (test/sim/mqtt-faults.test.ts); here over fake ports, on Node and XS.
 */
import type { JsonObject } from "../../src/core/json";
import { ShadowSync, type DesiredChange } from "../../src/core/shadow-sync";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";

function setup(cloud: "aws" | "azure") {
  const mqtt = new FakeMqtt();
  const log = new MemoryLog();
  const changes: DesiredChange[] = [];
  const sync = new ShadowSync({ mqtt, kv: new MemoryKv(), clock: new ManualClock(), log },
    { cloud, thingName: "esp32-01", firmwareVersionPath: cloud === "aws" ? ["config", "firmware_version"] : ["updateVersion"] },
    { onDesired: (c) => { changes.push(c); } });
  sync.start();
  return { mqtt, log, changes };
}

/** The token of the get just published (AWS clientToken, Azure $rid). */
function lastGet(mqtt: FakeMqtt, cloud: "aws" | "azure"): string | undefined {
  const gets = mqtt.published.filter((p) => (cloud === "aws" ? p.topic.endsWith("/shadow/get") : p.topic.startsWith("$iothub/twin/GET/")));
  const g = gets[gets.length - 1];
  if (g === undefined) return undefined;
  return cloud === "aws" ? (JSON.parse(g.payload) as { clientToken: string }).clientToken : /\$rid=(.+)$/.exec(g.topic)![1];
}

function azureResponse(mqtt: FakeMqtt, rid: string, desired: JsonObject, version: number): void {
  mqtt.deliver(`$iothub/twin/res/200/?$rid=${rid}`, { desired: { ...desired, $version: version }, reported: { $version: 1 } });
}

function awsResponse(mqtt: FakeMqtt, token: string, desired: JsonObject, version: number): void {
  mqtt.deliver("$aws/things/esp32-01/shadow/get/accepted", { state: { desired }, metadata: {}, version, timestamp: 1, clientToken: token });
}

describe("a desired notification that overtakes the get response", () => {
  it("Azure: the older response is not acted on; the get is sent again and its answer brings the change", async () => {
    const { mqtt, changes, log } = setup("azure");
    mqtt.connect();
    await settle();
    const g1 = lastGet(mqtt, "azure")!;
    mqtt.deliver("$iothub/twin/PATCH/properties/desired/?$version=5", { telemetry: { interval: 30 }, $version: 5 });
    azureResponse(mqtt, g1, { telemetry: { interval: 10 } }, 4); // answered before the change
    await settle();
    expect(changes).toEqual([]);
    expect(log.lines.map((l) => l.event)).toContain("sync.document.older-than-notified");
    const g2 = lastGet(mqtt, "azure")!;
    expect(g2).not.toBe(g1);
    azureResponse(mqtt, g2, { telemetry: { interval: 30 } }, 5);
    await settle();
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ delta: { telemetry: { interval: 30 } }, version: 5 });
  });

  it("AWS: the same, by shadow version", async () => {
    const { mqtt, changes } = setup("aws");
    mqtt.connect();
    await settle();
    const g1 = lastGet(mqtt, "aws")!;
    mqtt.deliver("$aws/things/esp32-01/shadow/update/delta", { version: 8, timestamp: 1, state: { config: { interval: 30 } }, metadata: {} });
    awsResponse(mqtt, g1, { config: { interval: 10 } }, 7);
    await settle();
    expect(changes).toEqual([]);
    const g2 = lastGet(mqtt, "aws")!;
    expect(g2).not.toBe(g1);
    awsResponse(mqtt, g2, { config: { interval: 30 } }, 8);
    await settle();
    expect(changes).toHaveLength(1);
    expect(changes[0]).toMatchObject({ delta: { config: { interval: 30 } }, version: 8 });
  });

  it("a response as new as the notification is acted on at once (one get only)", async () => {
    const { mqtt, changes } = setup("azure");
    mqtt.connect();
    await settle();
    const g1 = lastGet(mqtt, "azure")!;
    mqtt.deliver("$iothub/twin/PATCH/properties/desired/?$version=5", { telemetry: { interval: 30 }, $version: 5 });
    azureResponse(mqtt, g1, { telemetry: { interval: 30 } }, 5);
    await settle();
    expect(changes).toHaveLength(1);
    expect(mqtt.published.filter((p) => p.topic.startsWith("$iothub/twin/GET/"))).toHaveLength(1);
  });
});
