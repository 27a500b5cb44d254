/**
 * LogMirror (src/core/log-mirror.ts) bookkeeping that log-mirror.test.ts reaches without pinning: drops of
 * several kinds summed into the next line, drops a failed publish carried put back, the in-flight count
 * after a failed publish, uptime from the mirror's own start, the fields of its own log lines, and what a
 * closed mirror, a repeated `connected`, an unknown level and an empty token bucket do. The test plays the
 * transport with the fake MQTT client on a hand-driven clock. Jest subset only (runs on XS too).
 */
import { ShadowOtaError } from "../../src/core/errors";
import { LogMirror, type LogMirrorConfig } from "../../src/core/log-mirror";
import { FakeMqtt, ManualClock, MemoryLog, settle } from "./fake-ports";

function rig(config: Partial<LogMirrorConfig> = {}, startMs = 0, health: () => { ota?: string } = () => ({ ota: "Idle" })) {
  const clock = new ManualClock();
  clock.now = startMs;
  const inner = new MemoryLog();
  const mqtt = new FakeMqtt();
  const mirror = new LogMirror(
    { clock, heap: { sample: () => ({ freeHeap: 100_000, usedBytes: 40_000 }) }, log: inner, mqtt, health },
    { cloud: "aws", thingName: "esp32-01", healthEveryMs: 0, ...config },
  );
  mirror.watch(mqtt).setHandlers({ connected() {}, disconnected() {}, message() {} });
  const lines = (): Array<Record<string, any>> => mqtt.take().map((p) => JSON.parse(p.payload) as Record<string, any>);
  return { clock, inner, mqtt, mirror, lines };
}

describe("drops", () => {
  it("busy and offline drops are summed into the line a reconnect sends", async () => {
    const r = rig({ maxInFlight: 1 });
    r.mqtt.connect();
    r.mirror.log("warn", "a"); // in flight
    r.mirror.log("warn", "b"); // busy
    r.mirror.log("warn", "c"); // busy
    await settle();
    r.mqtt.disconnect();
    r.mirror.log("warn", "d"); // offline
    r.mqtt.connect();
    await settle();
    const lines = r.lines();
    expect(lines.map((l) => l.event)).toEqual(["a", "log-mirror.dropped"]);
    expect(lines[1]).toMatchObject({ message: 'log-mirror.dropped {"dropped":3}', dropped: 3, droppedBy: { offline: 1, rateLimited: 0, busy: 2, failed: 0 } });
  });

  it("a failed publish of that line puts the drops it carried back; the next line sent reports them all", async () => {
    const r = rig();
    r.mirror.log("warn", "lost-1");
    r.mirror.log("warn", "lost-2");
    r.mqtt.failPublishes = new ShadowOtaError("SYNC_TRANSPORT", "fake: write failed");
    r.mqtt.connect(); // the reconnect's dropped line carries the 2 offline drops, and fails
    await settle();
    expect(r.inner.lines.filter((l) => l.event === "log-mirror.publish-failed").map((l) => l.fields)).toEqual([{ seq: 1, message: "fake: write failed" }]);
    expect(r.mirror.stats.pendingDropped).toBe(3);
    r.mqtt.failPublishes = undefined;
    r.mirror.log("warn", "works");
    await settle();
    expect(r.lines()).toEqual([expect.objectContaining({ event: "works", seq: 2, dropped: 3, droppedBy: { offline: 2, rateLimited: 0, busy: 0, failed: 1 } })]);
  });

  it("a failed publish frees its place: with one in flight at most, the next line is sent, not dropped as busy", async () => {
    const r = rig({ maxInFlight: 1 });
    r.mqtt.connect();
    r.mqtt.failPublishes = new ShadowOtaError("SYNC_TRANSPORT", "fake: write failed");
    r.mirror.log("warn", "fails");
    await settle();
    r.mqtt.failPublishes = undefined;
    for (const e of ["one", "two"]) {
      r.mirror.log("warn", e);
      await settle();
    }
    expect(r.lines().map((l) => l.event)).toEqual(["one", "two"]);
    expect(r.mirror.stats.droppedBy).toEqual({ offline: 0, rateLimited: 0, busy: 0, failed: 1 });
  });
});

describe("lines and the mirror's own log", () => {
  it("uptime counts from the mirror's start, not from the clock's zero", async () => {
    const r = rig({}, 7_000);
    r.mqtt.connect();
    r.clock.now = 12_500;
    r.mirror.log("warn", "x");
    await settle();
    expect(r.lines()[0]).toMatchObject({ uptimeMs: 5_500 });
  });

  it("a throwing health port is logged with its message, and the health line still goes", async () => {
    const r = rig({}, 0, () => { throw new Error("probe broke"); });
    r.mqtt.connect();
    r.mirror.health();
    await settle();
    expect(r.inner.lines.filter((l) => l.event === "log-mirror.health-failed")).toEqual([
      { level: "warn", event: "log-mirror.health-failed", fields: { message: "probe broke" } }]);
    expect(r.lines().map((l) => [l.event, l.ota])).toEqual([["device.health", null]]);
  });
});

describe("closed, and a repeated connected", () => {
  it("after close: no health line, and a reconnect sends no dropped line", async () => {
    const r = rig();
    r.mirror.log("warn", "lost");
    r.mirror.close();
    r.mqtt.connect();
    r.mirror.health();
    await settle();
    expect(r.mqtt.published).toEqual([]);
  });

  it("connected twice without a disconnect counts no reconnect", async () => {
    const r = rig();
    r.mqtt.connect();
    r.mqtt.handlers!.connected();
    expect(r.mirror.stats.reconnects).toBe(0);
    r.mirror.health();
    await settle();
    const [line] = r.lines();
    expect(line).toMatchObject({ event: "device.health", reconnects: 0 });
    expect("largestFreeBlock" in line!).toBe(false); // the heap probe does not know it: no member, not null
  });
});

describe("levels and tokens", () => {
  it("a level the mirror does not know is logged inside only, never mirrored", async () => {
    const r = rig({ minLevel: "debug" });
    r.mqtt.connect();
    r.mirror.log("trace" as never, "odd");
    await settle();
    expect(r.mqtt.published).toEqual([]);
    expect(r.inner.lines.map((l) => l.event)).toEqual(["odd"]);
  });

  it("the dropped line a reconnect sends takes a token like any line: with none left it is counted too", async () => {
    const r = rig({ burst: 1, ratePerMin: 1 });
    r.mqtt.connect();
    r.mirror.log("warn", "takes-the-token");
    await settle();
    r.mqtt.disconnect();
    r.mirror.log("warn", "offline");
    r.mqtt.connect(); // no token left: the dropped line is rate-limited
    await settle();
    expect(r.lines().map((l) => l.event)).toEqual(["takes-the-token"]);
    expect(r.mirror.stats.droppedBy).toEqual({ offline: 1, rateLimited: 1, busy: 0, failed: 0 });
  });
});
