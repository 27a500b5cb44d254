/**
 * The local brokers behave like AWS IoT Core and Azure IoT Hub where those differ from a general MQTT broker
 * (src/sim/broker-fidelity.ts; docs/local-cloud.md "Fidelity"), on aedes and on mosquitto (AWS instance and
 * an Azure device's instance), with real mutual-TLS clients on loopback:
 * - a SUBSCRIBE at QoS 2 is granted QoS 1;
 * - a device's retained PUBLISH on its `$aws/...` shadow topic closes its connection and nothing is retained;
 * - on `$iothub/...` the flag is cleared and the publish goes through (aedes), or the connection is closed
 *   (mosquitto: it cannot clear the flag; documented as a difference).
 */
import * as path from "node:path";

import { grantedQos, retainedPublish } from "../../src/sim/broker-fidelity";
import { AedesBroker } from "../../src/sim/broker-aedes";
import { MosquittoBroker } from "../../src/sim/broker-mosquitto";
import { CLOUD_SERVICE_IDENTITY, type Credentials } from "../../src/sim/pki";
import { connectClient, publish, sleep, subscribe, testPki, waitFor, type TestClient } from "./broker-fixtures";
import { describeEachBroker, noteMosquittoSkipped, type TestBroker } from "./mosquitto-gate";

jest.setTimeout(30_000);
noteMosquittoSkipped(`test/sim/${path.basename(__filename)}`);

describe("broker-fidelity rules", () => {
  it("grants QoS 1 for 1 and 2, 0 for 0", () => {
    expect([0, 1, 2].map(grantedQos)).toEqual([0, 1, 1]);
  });
  it("refuses a device's RETAIN on $aws topics, clears it elsewhere and for the services", () => {
    expect(retainedPublish({ kind: "device", name: "d" }, "$aws/things/d/shadow/update")).toBe("refuse");
    expect(retainedPublish({ kind: "device", name: "d" }, "devices/d/$iothub/twin/PATCH/properties/reported/?$rid=1")).toBe("clear");
    expect(retainedPublish({ kind: "service", name: CLOUD_SERVICE_IDENTITY }, "$aws/things/d/shadow/update/delta")).toBe("clear");
  });
});

describeEachBroker("fidelity to AWS IoT Core and IoT Hub on %s", (kind: TestBroker) => {
  const { pki, cleanup } = testPki(`broker-fidelity-${kind}`);
  const open: TestClient[] = [];
  /** AWS devices' broker, and the broker the Azure device "az-1" uses (the same one on aedes). */
  let awsPort: number;
  let azurePort: number;
  const closers: Array<() => Promise<void>> = [];
  let dev: Credentials, az: Credentials, svc: Credentials;

  beforeAll(async () => {
    dev = pki.client("dev-a");
    az = pki.client("az-1");
    svc = pki.client(CLOUD_SERVICE_IDENTITY);
    if (kind === "aedes") {
      const b = await AedesBroker.start({ pki });
      awsPort = azurePort = b.port;
      closers.push(() => b.close());
    } else {
      const a = await MosquittoBroker.start({ pki, mode: "aws" });
      const z = await MosquittoBroker.start({ pki, mode: { azureDeviceId: "az-1" } });
      awsPort = a.port;
      azurePort = z.port;
      closers.push(() => a.close(), () => z.close());
    }
  });
  afterEach(async () => { await Promise.all(open.splice(0).map((c) => c.end())); });
  afterAll(async () => {
    for (const c of closers) await c();
    cleanup();
  });

  async function client(port: number, creds: Credentials, clientId = creds.name): Promise<TestClient> {
    const c = await connectClient(port, creds, clientId);
    open.push(c);
    return c;
  }

  it("a SUBSCRIBE at QoS 2 is granted QoS 1 (AWS shadow and IoT Hub twin filters)", async () => {
    const a = await client(awsPort, dev);
    expect(await subscribe2(a, "$aws/things/dev-a/shadow/update/delta")).toEqual([1]);
    const z = await client(azurePort, az);
    expect(await subscribe2(z, "$iothub/twin/res/#")).toEqual([1]);
    // And what was granted is what is delivered: QoS 1.
    const s = await client(awsPort, svc, "svc-1");
    const got: number[] = [];
    a.client.on("message", (_t, _p, packet) => got.push(packet.qos));
    await publish(s, "$aws/things/dev-a/shadow/update/delta", "{}", { qos: 1 });
    expect(await waitFor(() => got.length > 0)).toBe(true);
    expect(got).toEqual([1]);
  });

  it("a device's retained PUBLISH on its shadow topic closes its connection, and nothing is retained", async () => {
    const a = await client(awsPort, dev);
    a.client.publish("$aws/things/dev-a/shadow/update", '{"state":{"reported":{"x":1}}}', { qos: 1, retain: true });
    expect(await waitFor(() => a.closed, 5_000)).toBe(true);
    const s = await client(awsPort, svc, "svc-2");
    await subscribe(s, "$aws/things/dev-a/shadow/update");
    await sleep(100);
    expect(s.received).toEqual([]); // no retained message handed to a new subscriber
  });

  it(`a device's retained PUBLISH on $iothub: ${kind === "aedes" ? "the flag is cleared, the publish goes through" : "the connection is closed (mosquitto cannot clear the flag)"}`, async () => {
    const s = await client(azurePort, svc, "svc-3");
    await subscribe(s, kind === "aedes" ? "devices/az-1/$iothub/twin/PATCH/properties/reported/#" : "$iothub/twin/PATCH/properties/reported/#");
    const z = await client(azurePort, az);
    z.client.publish("$iothub/twin/PATCH/properties/reported/?$rid=7", '{"x":1}', { qos: 1, retain: true });
    if (kind === "aedes") {
      expect(await waitFor(() => s.received.length > 0, 5_000)).toBe(true);
      expect(s.received[0]).toMatchObject({ payload: '{"x":1}', retain: false });
      expect(z.closed).toBe(false);
    } else {
      expect(await waitFor(() => z.closed, 5_000)).toBe(true);
      await sleep(100);
      expect(s.received).toEqual([]);
    }
    // Nothing retained either way: a new subscriber gets nothing.
    const late = await client(azurePort, svc, "svc-4");
    await subscribe(late, kind === "aedes" ? "devices/az-1/$iothub/#" : "$iothub/#");
    await sleep(100);
    expect(late.received).toEqual([]);
  });
});

/** SUBSCRIBE at QoS 2; resolves with the granted QoS of each filter. */
function subscribe2(c: TestClient, topic: string): Promise<number[]> {
  return new Promise((resolve, reject) => {
    c.client.subscribe(topic, { qos: 2 }, (err, granted) => (err ? reject(err) : resolve((granted ?? []).map((g) => g.qos))));
  });
}
