/**
 * The cloud side of device logs without a broker: which topics the broker policy lets a device publish its
 * lines on (aedes decision and the mosquitto ACL text), which received topics the log service takes as log
 * lines, and what it keeps (ring bound, cloud sequence numbers, stand-ins for bad payloads, the file and its
 * rotation). A fake service client delivers the messages; the real brokers are in device-logs.test.ts.
 */
import { EventEmitter } from "node:events";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { MqttClient } from "mqtt";
import { decidePublish, logsTopic, mosquittoAcl, payloadLimitOf, telemetryRoot } from "../../src/sim/broker-policy";
import { runCli } from "../../src/sim/cli";
import { LOG_SUBSCRIPTIONS, LogService, classifyLogTopic, formatLogRecord } from "../../src/sim/log-service";

const dev = (name: string) => ({ kind: "device" as const, name });

describe("broker policy: a device's logs topics", () => {
  it("AWS: exactly its own shadow-ota/things/{CN}/logs; nobody else's, no wildcard, no sub-topic", () => {
    expect(logsTopic("esp32-01")).toBe("shadow-ota/things/esp32-01/logs");
    expect(decidePublish(dev("esp32-01"), "shadow-ota/things/esp32-01/logs")).toEqual({ allow: true, topic: "shadow-ota/things/esp32-01/logs" });
    for (const t of ["shadow-ota/things/esp32-02/logs", "shadow-ota/things/esp32-01/logs/x", "shadow-ota/things/esp32-01", "shadow-ota/things/+/logs", "x/things/esp32-01/logs", "$aws/things/esp32-01/logs"]) {
      expect({ t, allow: decidePublish(dev("esp32-01"), t).allow }).toEqual({ t, allow: false });
    }
    expect(payloadLimitOf("shadow-ota/things/esp32-01/logs")).toBe(128 * 1024);
  });

  it("Azure: its own devices/{CN}/messages/events/ with any property bag; not another device's", () => {
    expect(telemetryRoot("esp32-az-01")).toBe("devices/esp32-az-01/messages/events/");
    const own = "devices/esp32-az-01/messages/events/$.ct=application%2Fjson&$.ce=utf-8&kind=log&level=warn";
    expect(decidePublish(dev("esp32-az-01"), own)).toEqual({ allow: true, topic: own });
    expect(decidePublish(dev("esp32-az-01"), "devices/esp32-az-02/messages/events/kind=log").allow).toBe(false);
    expect(decidePublish(dev("esp32-az-01"), "devices/esp32-az-01/messages/devicebound/x").allow).toBe(false);
    expect(decidePublish(dev("esp32-az-01"), "devices/esp32-az-01/messages/events/#").allow).toBe(false);
    expect(payloadLimitOf(own)).toBe(256 * 1024);
  });

  it("mosquitto ACLs: the AWS instance lets each device write its own logs topic (%u); an Azure instance its telemetry", () => {
    const aws = mosquittoAcl("aws").split("\n");
    expect(aws).toContain("pattern write shadow-ota/things/%u/logs");
    expect(aws.filter((l) => l.includes("logs"))).toEqual(["pattern write shadow-ota/things/%u/logs"]);
    const az = mosquittoAcl({ azureDeviceId: "esp32-az-01" }).split("\n");
    const device = az.slice(az.indexOf("user esp32-az-01"), az.indexOf("user shadow-ota-cloud"));
    expect(device).toContain("topic write devices/esp32-az-01/messages/events/#");
    expect(az.slice(az.indexOf("user shadow-ota-cloud"))).toContain("topic read devices/esp32-az-01/messages/events/#");
  });
});

describe("log service", () => {
  class FakeClient extends EventEmitter {
    connected = true;
    subscribed: string[] = [];
    refuse = false;
    async subscribeAsync(topics: string[]): Promise<Array<{ topic: string; qos: number }>> {
      this.subscribed.push(...topics);
      return topics.map((topic) => ({ topic, qos: this.refuse ? 128 : 0 }));
    }
    async unsubscribeAsync(): Promise<void> {}
    deliver(topic: string, payload: string | Buffer): void {
      this.emit("message", topic, typeof payload === "string" ? Buffer.from(payload) : payload);
    }
  }
  const asClient = (c: FakeClient): MqttClient => c as unknown as MqttClient;
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-logsvc-")); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("classifies AWS logs topics and Azure telemetry carrying kind=log|health; nothing else", () => {
    expect(classifyLogTopic("shadow-ota/things/esp32-01/logs")).toEqual({ deviceId: "esp32-01", cloud: "aws" });
    expect(classifyLogTopic("devices/esp32-az-01/messages/events/$.ct=application%2Fjson&kind=health&level=info")).toEqual({ deviceId: "esp32-az-01", cloud: "azure" });
    expect(classifyLogTopic("devices/esp32-az-01/messages/events/temperature=21")).toBeUndefined();
    expect(classifyLogTopic("devices/esp32-az-01/messages/events/kind=%E0%A4%A")).toBeUndefined();
    expect(classifyLogTopic("other/things/esp32-01/logs")).toBeUndefined();
    expect(classifyLogTopic("$aws/things/esp32-01/shadow/update")).toBeUndefined();
  });

  it("keeps the last ringSize lines per device with cloud sequence numbers; tail resumes with after and says what it missed", async () => {
    const c = new FakeClient();
    let t = Date.UTC(2026, 0, 1);
    const svc = await LogService.start(asClient(c), { ringSize: 3, now: () => t++ });
    expect(c.subscribed).toEqual([...LOG_SUBSCRIPTIONS]);
    for (let i = 1; i <= 5; i++) c.deliver("shadow-ota/things/esp32-01/logs", JSON.stringify({ seq: i, level: "warn", message: `m${i}` }));
    c.deliver("shadow-ota/things/esp32-02/logs", JSON.stringify({ seq: 1 }));
    const all = svc.tail("esp32-01");
    expect(all.lines.map((r) => [r.cloudSeq, r.line["message"]])).toEqual([[3, "m3"], [4, "m4"], [5, "m5"]]);
    expect(all.missed).toBe(2);
    expect(all.next).toBe(5);
    expect(all.lines[0]!.receivedAt).toBe("2026-01-01T00:00:00.002Z");
    expect(svc.tail("esp32-01", { after: 3, limit: 1 })).toMatchObject({ next: 4, missed: 0, lines: [{ cloudSeq: 4 }] });
    expect(svc.tail("esp32-01", { after: 5 })).toMatchObject({ lines: [], next: 5 });
    expect(svc.tail("nobody")).toEqual({ deviceId: "nobody", lines: [], next: 0, missed: 0 });
    expect(svc.devices().sort()).toEqual(["esp32-01", "esp32-02"]);
    await svc.close();
    c.deliver("shadow-ota/things/esp32-01/logs", "{}");
    expect(svc.tail("esp32-01").next).toBe(5); // not listening any more
  });

  it("records a payload that is not a JSON object, or too large, as a short stand-in; ignores ids that are not certificate names", async () => {
    const c = new FakeClient();
    const svc = await LogService.start(asClient(c), { maxLineBytes: 100 });
    c.deliver("shadow-ota/things/esp32-01/logs", "not json");
    c.deliver("shadow-ota/things/esp32-01/logs", "[1,2]");
    c.deliver("shadow-ota/things/esp32-01/logs", JSON.stringify({ message: "x".repeat(500) }));
    c.deliver("shadow-ota/things/..%2F../logs", "{}");
    const lines = svc.tail("esp32-01").lines.map((r) => r.line);
    expect(lines.map((l) => [l["invalid"], l["bytes"]])).toEqual([["not-a-json-object", 8], ["not-a-json-object", 5], ["too-large", 514]]);
    expect((lines[2]!["message"] as string).length).toBe(200);
    expect(svc.devices()).toEqual(["esp32-01"]);
  });

  it("appends each record to {dir}/{id}.jsonl and rotates it to .1 past maxFileBytes", async () => {
    const c = new FakeClient();
    await LogService.start(asClient(c), { dir, maxFileBytes: 300 });
    for (let i = 0; i < 6; i++) c.deliver("devices/esp32-az-01/messages/events/kind=log&level=warn", JSON.stringify({ message: `line ${i}`, level: "warn" }));
    const cur = fs.readFileSync(path.join(dir, "esp32-az-01.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const old = fs.readFileSync(path.join(dir, "esp32-az-01.jsonl.1"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect([...old, ...cur].map((r) => r.cloudSeq)).toEqual([1, 2, 3, 4, 5, 6].slice(-(old.length + cur.length)));
    expect(cur[0].cloud).toBe("azure");
    expect(fs.statSync(path.join(dir, "esp32-az-01.jsonl")).mode & 0o777).toBe(0o600);
  });

  it("a link for one Azure device hears only that device; a refused subscription is CLOUD_SUBSCRIBE_REFUSED", async () => {
    const svc = await LogService.start(null);
    const link = new FakeClient();
    await svc.attachLink("esp32-az-01", asClient(link));
    expect(link.subscribed).toEqual(["devices/esp32-az-01/messages/events/#"]);
    link.deliver("devices/esp32-az-02/messages/events/kind=log", "{}");
    link.deliver("devices/esp32-az-01/messages/events/kind=log", '{"message":"hi"}');
    expect(svc.devices()).toEqual(["esp32-az-01"]);
    const bad = new FakeClient();
    bad.refuse = true;
    await expect(svc.attachLink("esp32-az-02", asClient(bad))).rejects.toMatchObject({ code: "CLOUD_SUBSCRIBE_REFUSED" });
    expect(bad.listenerCount("message")).toBe(0);
  });

  it("formats a record for the terminal", () => {
    expect(formatLogRecord({
      cloudSeq: 1, receivedAt: "2026-01-01T00:00:00.000Z", deviceId: "esp32-01", cloud: "aws",
      line: { level: "warn", message: "ota.request.refused {}", freeHeap: 10, usedBytes: 20, dropped: 3 },
    })).toBe("2026-01-01T00:00:00.000Z esp32-01 WARN  ota.request.refused {} [free 10 used 20] [dropped 3]");
    expect(formatLogRecord({ cloudSeq: 2, receivedAt: "t", deviceId: "d", cloud: "aws", line: { invalid: "too-large" } })).toBe('t d ?     {"invalid":"too-large"}');
  });
});

describe("logs tail: usage", () => {
  it.each([
    [["logs", "tail"], "unknown or incomplete command"],
    [["logs", "tail", "a", "b"], "unknown or incomplete command"],
    [["logs", "tail", "esp32-01", "--lines", "x"], "--lines must be 0..1000"],
    [["logs", "tail", "esp32-01", "--lines", "1001"], "--lines must be 0..1000"],
  ])("%j exits 2 naming the problem", async (argv, problem) => {
    const err: string[] = [];
    expect(await runCli([...argv, "--data-dir", os.tmpdir()], { print: () => undefined, error: (l) => err.push(l) })).toBe(2);
    expect(err.join("\n")).toContain(problem);
  });

  it("without a running cloud it says so and exits 1", async () => {
    const err: string[] = [];
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), "shadow-ota-nocloud-"));
    expect(await runCli(["logs", "tail", "esp32-01", "--data-dir", empty], { print: () => undefined, error: (l) => err.push(l) })).toBe(1);
    expect(err.join("\n")).toContain("no running local cloud");
    fs.rmSync(empty, { recursive: true, force: true });
  });
});
