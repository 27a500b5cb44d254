/**
 * Device logs end to end on loopback, on aedes and on mosquitto (skipped, and said so, without it): simulated
 * devices on each cloud mirror their log lines (src/core/log-mirror.ts) over mutual TLS, the local cloud
 * records them (src/sim/log-service.ts) and the CLI tails them through the admin API (`logs tail`, and
 * `--follow`), the path a user takes. Also: the health line; an offline period (a network cut through the
 * fault proxy) is dropped with a count that the first line after the reconnect carries; the rate limit holds
 * by count, the device's clock stepped by the test (no wall-clock assertion); the broker lets a device
 * publish only on its own logs topic. Every wait is bounded.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import mqtt from "mqtt";
import type { CloudKind } from "../../src/core/cloud-protocol";
import { getPath } from "../../src/core/config-diff";
import type { JsonObject } from "../../src/core/json";
import { NodeClock } from "../../src/node/node-clock";
import type { Clock } from "../../src/ports/clock";
import { runCli } from "../../src/sim/cli";
import { SimDevice, type SimDeviceOptions } from "../../src/sim/device";
import { LocalCloud, type BrokerKind } from "../../src/sim/local-cloud";
import type { LogRecord } from "../../src/sim/log-service";
import { MqttFaultProxy, pkiTls } from "../../src/sim/mqtt-fault-proxy";
import { describeEachBroker, noteMosquittoSkipped } from "./mosquitto-gate";
import { waitUntil } from "./wait-until";

jest.setTimeout(90_000);

const PKI = path.join(os.tmpdir(), "shadow-ota-test-pki"); // shared across tests: RSA keys take time
noteMosquittoSkipped("test/sim/device-logs.test.ts");

const IDS: Record<CloudKind, string> = { aws: "esp32-01", azure: "esp32-az-01" };
const FIRMWARE: Record<CloudKind, string[]> = { aws: ["config", "firmware_version"], azure: ["updateVersion"] };

/** Node's timers and wall clock, with a monotonic time that moves only when the test says so. */
class SteppedClock implements Clock {
  now = 0;
  readonly #real = new NodeClock();
  monotonicMs(): number { return this.now; }
  epochSeconds(): number { return this.#real.epochSeconds(); }
  setTimer(ms: number, fn: () => void): unknown { return this.#real.setTimer(ms, fn); }
  cancel(handle: unknown): void { this.#real.cancel(handle); }
}

describeEachBroker("device logs on %s", (broker: BrokerKind) => {
  let dir: string;
  let cloud: LocalCloud;
  const open: Array<{ close(): Promise<void> }> = [];

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `shadow-ota-logs-${broker}-`));
    cloud = await LocalCloud.start({
      broker, dataDir: path.join(dir, "cloud"), certsDir: PKI, deviceLogs: { files: true },
      devices: [{ id: IDS.aws, cloud: "aws" }, { id: IDS.azure, cloud: "azure" }, { id: "esp32-02", cloud: "aws" }],
    });
  });
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.close();
    await cloud.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function startDevice(kind: CloudKind, extra: Partial<SimDeviceOptions> = {}): SimDevice {
    const c = cloud.credentials(IDS[kind]);
    const d = SimDevice.start({ ...c, dataDir: path.join(dir, "devices", c.id), log: { log() {} }, ...extra });
    open.push(d);
    return d;
  }

  async function setDesired(kind: CloudKind, desired: JsonObject): Promise<void> {
    if (kind === "aws") await cloud.shadows.updateDesired(IDS.aws, desired);
    else await cloud.twins.updateDesired(IDS.azure, desired);
  }

  async function cloudReported(kind: CloudKind): Promise<JsonObject> {
    if (kind === "azure") return (await cloud.twins.getTwin(IDS.azure)).reported;
    return (((await cloud.shadows.getShadow(IDS.aws))?.["state"] as JsonObject | undefined)?.["reported"] as JsonObject | undefined) ?? {};
  }

  /** Sets desired `probe.n = n` and waits until the cloud holds it as reported: everything the device
   *  published before that report (its log lines included) has been recorded by then. */
  async function roundTrip(kind: CloudKind, n: number): Promise<void> {
    await setDesired(kind, { probe: { n } });
    await waitUntil(async () => (getPath(await cloudReported(kind), ["probe", "n"]) === n ? true : undefined), 30_000, `${kind}: probe.n = ${n} reported`);
  }

  const lines = (kind: CloudKind): LogRecord[] => cloud.logs.tail(IDS[kind]).lines;

  async function cli(argv: string[], signal?: AbortSignal): Promise<{ code: number; out: string[]; err: string[] }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli([...argv, "--data-dir", path.join(dir, "cloud")], { print: (l) => out.push(l), error: (l) => err.push(l), ...(signal === undefined ? {} : { signal }) });
    return { code, out, err };
  }

  it("warn lines of an AWS and an Azure device reach the cloud with heap figures, a health line follows, the CLI tails and follows them", async () => {
    for (const kind of ["aws", "azure"] as const) startDevice(kind, { logs: { minLevel: "warn", healthEveryMs: 1_000 } });
    for (const kind of ["aws", "azure"] as const) {
      await waitUntil(async () => ((await cloudReported(kind))[kind === "aws" ? "config" : "firmwareVersion"] !== undefined ? true : undefined), 30_000, `${kind} reported`);
      await setDesired(kind, kind === "aws" ? { config: { firmware_version: "0.9.0" } } : { updateVersion: "0.9.0" }); // a downgrade: refused
    }
    for (const kind of ["aws", "azure"] as const) {
      const refused = await waitUntil(() => lines(kind).find((r) => r.line["event"] === "ota.request.refused"), 30_000, `${kind}: refusal logged to the cloud`);
      expect(refused.cloud).toBe(kind);
      expect(refused.line).toMatchObject({ level: "warn", kind: "log", thingName: IDS[kind] });
      expect(refused.line["message"]).toContain("OTA_DOWNGRADE_REFUSED");
      expect(refused.line["freeHeap"]).toBeGreaterThan(0);
      expect(refused.line["usedBytes"]).toBeGreaterThan(0);
      expect(lines(kind).some((r) => r.line["level"] === "info" && r.line["kind"] === "log")).toBe(false);
      const health = await waitUntil(() => lines(kind).find((r) => r.line["kind"] === "health"), 30_000, `${kind}: health line`);
      expect(health.line).toMatchObject({ event: "device.health", ota: "Failed", otaError: "OTA_DOWNGRADE_REFUSED", reconnects: 0 });
      expect(typeof health.line["uptimeMs"]).toBe("number");
      expect(health.line["largestFreeBlock"]).toBeUndefined(); // Node does not tell it
    }
    // The cloud's file has them too.
    const file = fs.readFileSync(path.join(dir, "cloud", "logs", `${IDS.azure}.jsonl`), "utf8");
    expect(file).toContain("ota.request.refused");

    // The CLI: the last lines, one per line; --json gives the records.
    const tail = await cli(["logs", "tail", IDS.aws, "--lines", "50"]);
    expect(tail.code).toBe(0);
    expect(tail.out.find((l) => l.includes("ota.request.refused"))).toMatch(/^\S+ esp32-01 WARN +ota\.request\.refused .*\[free \d+ used \d+\]$/);
    const json = await cli(["logs", "tail", IDS.azure, "--json", "--lines", "1"]);
    expect(json.out.length).toBe(1);
    expect(JSON.parse(json.out[0]!).deviceId).toBe(IDS.azure);
    const unknown = await cli(["logs", "tail", "esp32-nobody"]);
    expect(unknown.code).toBe(1);
    expect(JSON.parse(unknown.err.join("\n")).code).toBe("CLOUD_DEVICE_ID_INVALID");

    // --follow: the last line at once, then what arrives, until stopped.
    const stop = new AbortController();
    const followed: string[] = [];
    const following = runCli(["logs", "tail", IDS.aws, "--lines", "1", "--follow", "--data-dir", path.join(dir, "cloud")],
      { print: (l) => followed.push(l), error: () => undefined, signal: stop.signal });
    await waitUntil(() => (followed.length === 1 ? true : undefined), 10_000, "follower printed the last line");
    await setDesired("aws", { config: { firmware_version: "0.8.0" } });
    await waitUntil(() => (followed.some((l) => l.includes("ota.request.refused") && l.includes("0.8.0")) ? true : undefined), 30_000, "follower printed the 0.8.0 refusal");
    stop.abort();
    expect(await following).toBe(0);
    expect(followed.slice(1).some((l) => l.includes("0.9.0"))).toBe(false); // nothing printed twice
  });

  it("an offline period is dropped with a count: the first line after the reconnect says how many", async () => {
    for (const kind of ["aws", "azure"] as const) {
      const c = cloud.credentials(IDS[kind]);
      const { downstreamTls, upstreamTls } = pkiTls(cloud.pki);
      const proxy = await MqttFaultProxy.start({ upstream: { host: c.host, port: c.port, tls: upstreamTls }, downstreamTls });
      open.push(proxy);
      const device = startDevice(kind, { port: proxy.port, logs: { minLevel: "info", healthEveryMs: 0, ratePerMin: 6_000, burst: 1_000 } });
      await device.waitFor(() => device.sync.synced, 30_000, "synced");
      await roundTrip(kind, 1);
      // The lines dropped before the first connect (boot, at info) were counted on that connect.
      expect(lines(kind)[0]!.line).toMatchObject({ event: "log-mirror.dropped", droppedBy: { offline: expect.any(Number) } });
      const base = cloud.logs.tail(IDS[kind]).next;
      // The network goes away: the next two CONNECTs are cut, the third gets through.
      proxy.addRule({ action: "cut", type: "connect", direction: "up", times: 2 });
      proxy.cutAll();
      const dropped = await waitUntil(() => lines(kind).find((r) => r.cloudSeq > base && r.line["event"] === "log-mirror.dropped"), 30_000, `${kind}: dropped-count line`);
      const by = dropped.line["droppedBy"] as Record<string, number>;
      expect(by["offline"]).toBeGreaterThanOrEqual(1); // at least the sync's own "sync.disconnected"
      expect(dropped.line["dropped"]).toBe(by["offline"]! + by["rateLimited"]! + by["busy"]! + by["failed"]!);
      expect(proxy.events.filter((e) => e.action === "cut").length).toBe(2);
      const stats = device.app.logs!.stats;
      expect(stats.droppedBy.offline).toBeGreaterThanOrEqual(by["offline"]!);
      expect(stats.reconnects).toBeGreaterThanOrEqual(1);
      await roundTrip(kind, 2);
      expect(lines(kind).at(-1)!.line["dropped"]).toBeUndefined(); // counted once, not again
    }
  });

  it("the rate limit holds by count: `burst` lines, then one per token as the device's clock is stepped", async () => {
    for (const kind of ["aws", "azure"] as const) {
      const clock = new SteppedClock();
      const device = startDevice(kind, { clock, logs: { minLevel: "debug", healthEveryMs: 0, ratePerMin: 60, burst: 5 } });
      await device.waitFor(() => device.sync.synced, 30_000, "synced");
      await roundTrip(kind, 1); // a round trip logs well over 5 debug and info lines
      expect(lines(kind).length).toBe(5);
      await roundTrip(kind, 2);
      expect(lines(kind).length).toBe(5);
      const pending = device.app.logs!.stats.pendingDropped;
      expect(pending).toBeGreaterThan(0);
      clock.now += 1_000; // one token (60 a minute)
      await roundTrip(kind, 3);
      const all = lines(kind);
      expect(all.length).toBe(6);
      expect(all[5]!.line).toMatchObject({ dropped: pending, droppedBy: { rateLimited: pending, offline: 0 } });
      await roundTrip(kind, 4);
      expect(lines(kind).length).toBe(6);
      expect(device.app.logs!.stats.sent).toBe(6);
    }
  });

  it("a device may publish log lines only on its own logs topic", async () => {
    const c = cloud.credentials(IDS.aws);
    const connect = () => mqtt.connectAsync({
      protocol: "mqtts", host: c.host, port: c.port, clientId: c.id, ca: c.ca, cert: c.cert, key: c.key,
      rejectUnauthorized: true, reconnectPeriod: 0, protocolVersion: 4, connectTimeout: 10_000,
    });
    const intruder = await connect();
    intruder.on("error", () => undefined); // aedes closes the connection of a refused publish, as AWS does
    intruder.publish("shadow-ota/things/esp32-02/logs", JSON.stringify({ message: "forged" }), { qos: 0 });
    intruder.publish("devices/esp32-az-01/messages/events/kind=log", JSON.stringify({ message: "forged" }), { qos: 0 });
    await intruder.endAsync();
    const own = await connect();
    await own.publishAsync("shadow-ota/things/esp32-01/logs", JSON.stringify({ message: "genuine", level: "warn" }), { qos: 1 });
    await own.endAsync();
    await waitUntil(() => (cloud.logs.tail(IDS.aws).lines.some((r) => r.line["message"] === "genuine") ? true : undefined), 15_000, "own line recorded");
    expect(cloud.logs.tail("esp32-02").lines).toEqual([]);
    expect(cloud.logs.tail(IDS.azure).lines).toEqual([]);
  });
});
