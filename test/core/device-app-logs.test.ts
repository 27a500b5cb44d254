/**
 * DeviceApp with `config.logs` (src/core/device-app.ts + src/core/log-mirror.ts): the mirror is the Log every
 * part of the app writes to, sees the transport's connects and drops, and its health line carries the OTA
 * controller's state and last error. The test plays the AWS shadow service on the fake transport. Jest subset
 * only (runs on XS too).
 */
import { DeviceApp, type DeviceAppConfig } from "../../src/core/device-app";
import { ShadowOtaError } from "../../src/core/errors";
import { FakeMqtt, ManualClock, MemoryKv, MemoryLog, settle } from "./fake-ports";
import { FakeFlash, FakeSlot, FakeSource, fakeImage, RecordingRestart } from "./ota-fakes";

const P = "$aws/things/esp32-01/shadow";
const LOGS = "shadow-ota/things/esp32-01/logs";

function config(logs: DeviceAppConfig["logs"]): DeviceAppConfig {
  const c: DeviceAppConfig = {
    cloud: "aws",
    thingName: "esp32-01",
    firmwareVersionPath: ["config", "firmware_version"],
    ota: {
      source: { naming: "aws", baseUrl: "https://blobs.example/fw/", allowedHosts: ["blobs.example"] },
      projectName: "shadow-ota",
      chipId: 0,
      selfTestWindowMs: 60_000,
    },
  };
  if (logs !== undefined) c.logs = logs;
  return c;
}

function start(logs: DeviceAppConfig["logs"]): { app: DeviceApp; mqtt: FakeMqtt; clock: ManualClock; log: MemoryLog } {
  const mqtt = new FakeMqtt();
  const clock = new ManualClock();
  const log = new MemoryLog();
  const flash = new FakeFlash(fakeImage({ version: "1.0.0", size: 9_000 }));
  flash.boot();
  const app = DeviceApp.start({
    mqtt, kv: new MemoryKv(), clock, log, slot: new FakeSlot(flash), source: new FakeSource(fakeImage({ version: "1.1.0" })),
    restart: new RecordingRestart(), random: () => 0.5, heap: { sample: () => ({ freeHeap: 123_456, usedBytes: 65_432 }) },
  }, config(logs));
  return { app, mqtt, clock, log };
}

async function connectAndSync(mqtt: FakeMqtt, desired: Record<string, unknown>): Promise<void> {
  mqtt.connect();
  await settle();
  const get = mqtt.published.filter((m) => m.topic === `${P}/get`).pop()!;
  mqtt.deliver(`${P}/get/accepted`, { state: { desired }, metadata: {}, version: 3, timestamp: 1, clientToken: JSON.parse(get.payload).clientToken });
  for (let i = 0; i < 10; i++) await settle();
}

const logLines = (mqtt: FakeMqtt): Array<Record<string, any>> => mqtt.published.filter((m) => m.topic === LOGS).map((m) => JSON.parse(m.payload));

describe("DeviceApp: logs to the cloud", () => {
  it("a refused update's warning reaches the logs topic with heap figures; info lines stay local", async () => {
    const { app, mqtt, log } = start({ minLevel: "warn", healthEveryMs: 0 });
    expect(app.logs).toBeDefined();
    await connectAndSync(mqtt, { config: { firmware_version: "0.9.0" } }); // a downgrade: refused
    const lines = logLines(mqtt);
    expect(lines.map((l) => l.event)).toEqual(["ota.request.refused"]);
    expect(lines[0]).toMatchObject({ level: "warn", thingName: "esp32-01", freeHeap: 123_456, usedBytes: 65_432 });
    expect(lines[0]!.message).toContain("OTA_DOWNGRADE_REFUSED");
    expect(log.lines.some((l) => l.level === "info")).toBe(true); // the inner log still gets everything
    await app.close();
  });

  it("lines logged while the link is down are counted, and the count is sent on reconnect", async () => {
    const { app, mqtt, log } = start({ minLevel: "info", healthEveryMs: 0, ratePerMin: 600, burst: 100 });
    await connectAndSync(mqtt, {});
    const before = logLines(mqtt).length;
    const from = log.lines.length;
    mqtt.disconnect(); // the sync logs sync.disconnected (info): the mirror already knows it is offline
    await settle();
    expect(logLines(mqtt).length).toBe(before);
    const offline = log.lines.slice(from).filter((l) => l.level !== "debug").map((l) => l.event);
    expect(offline).toContain("sync.disconnected");
    mqtt.connect();
    await settle();
    const after = logLines(mqtt).slice(before);
    expect(after[0]).toMatchObject({ event: "log-mirror.dropped", dropped: offline.length, droppedBy: { offline: offline.length } });
    await app.close();
  });

  it("the health line carries the OTA controller's state and last error; close stops it", async () => {
    const { app, mqtt, clock } = start({ minLevel: "error", healthEveryMs: 60_000 });
    await connectAndSync(mqtt, { config: { firmware_version: "0.9.0" } });
    clock.advance(60_000);
    await settle();
    const health = logLines(mqtt).filter((l) => l.kind === "health");
    expect(health.length).toBe(1);
    expect(health[0]).toMatchObject({ event: "device.health", ota: "Failed", otaError: "OTA_DOWNGRADE_REFUSED", reconnects: 0, freeHeap: 123_456 });
    await app.close();
    clock.advance(600_000);
    expect(logLines(mqtt).filter((l) => l.kind === "health").length).toBe(1);
  });

  it("without config.logs nothing is mirrored; a bad setting refuses to start with LOG_CONFIG_INVALID", async () => {
    const { app, mqtt } = start(undefined);
    expect(app.logs).toBeUndefined();
    await connectAndSync(mqtt, { config: { firmware_version: "0.9.0" } });
    expect(logLines(mqtt)).toEqual([]);
    await app.close();
    let err: unknown;
    try {
      start({ ratePerMin: 0 });
    } catch (e) {
      err = e;
    }
    expect(err instanceof ShadowOtaError && err.code).toBe("LOG_CONFIG_INVALID");
  });
});
