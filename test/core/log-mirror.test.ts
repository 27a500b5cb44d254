/**
 * LogMirror (src/core/log-mirror.ts): which lines reach the cloud, on which topic, in which shape; the
 * token bucket by count on a hand-driven clock; drops counted while offline, rate-limited, busy or failed
 * and reported by the next line sent; the health line; the configuration's refusals. Jest subset only
 * (runs on XS too).
 */
import { ShadowOtaError } from "../../src/core/errors";
import {
  LOG_CODES, LogMirror, TokenBucket, formatMessage, logTopic, resolveLogMirrorConfig, type LogMirrorConfig,
} from "../../src/core/log-mirror";
import type { HeapSample } from "../../src/ports/heap-probe";
import { FakeMqtt, ManualClock, MemoryLog, settle } from "./fake-ports";

class Rig {
  readonly clock = new ManualClock();
  readonly inner = new MemoryLog();
  readonly mqtt = new FakeMqtt();
  heap: HeapSample = { freeHeap: 100_000, usedBytes: 40_000 };
  health = { ota: "Idle", otaError: null as string | null };
  readonly mirror: LogMirror;
  constructor(config: Partial<LogMirrorConfig> = {}) {
    this.mirror = new LogMirror(
      { clock: this.clock, heap: { sample: () => this.heap }, log: this.inner, mqtt: this.mqtt, health: () => this.health },
      { cloud: "aws", thingName: "esp32-01", healthEveryMs: 0, ...config },
    );
    this.mirror.watch(this.mqtt).setHandlers({ connected() {}, disconnected() {}, message() {} });
  }
  /** The lines published since the last call, parsed. */
  lines(): Array<Record<string, any>> {
    return this.mqtt.take().map((p) => JSON.parse(p.payload) as Record<string, any>);
  }
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof ShadowOtaError ? `${e.code}:${String(e.detail?.["key"])}` : "not a ShadowOtaError";
  }
  return undefined;
}

describe("log mirror: topics and line shape", () => {
  it("AWS: {prefix}/things/{thing}/logs; Azure: the D2C telemetry topic with content type, encoding, kind and level", () => {
    const aws = resolveLogMirrorConfig({ cloud: "aws", thingName: "esp32-01" });
    expect(logTopic(aws)).toBe("shadow-ota/things/esp32-01/logs");
    expect(logTopic({ ...aws, topicPrefix: "fleet/eu" })).toBe("fleet/eu/things/esp32-01/logs");
    const az = resolveLogMirrorConfig({ cloud: "azure", thingName: "esp32-az-01" });
    expect(logTopic(az, "log", "warn")).toBe("devices/esp32-az-01/messages/events/$.ct=application%2Fjson&$.ce=utf-8&kind=log&level=warn");
    expect(logTopic(az, "health", "info")).toBe("devices/esp32-az-01/messages/events/$.ct=application%2Fjson&$.ce=utf-8&kind=health&level=info");
  });

  it("mirrors lines at or above minLevel with heap figures; every line also reaches the inner log", async () => {
    const r = new Rig({ minLevel: "warn" });
    r.clock.now = 5_000;
    r.mqtt.connect();
    r.mirror.log("info", "sync.connected");
    r.mirror.log("warn", "ota.retry", { attempt: 2 });
    r.mirror.log("error", "ota.failed", { code: "OTA_IMAGE_INVALID" });
    await settle();
    const published = r.mqtt.published;
    expect(published.map((p) => [p.topic, p.qos])).toEqual([["shadow-ota/things/esp32-01/logs", 0], ["shadow-ota/things/esp32-01/logs", 0]]);
    const [a, b] = published.map((p) => JSON.parse(p.payload));
    expect(a).toEqual({
      timestamp: "2023-11-14T22:13:25.000Z", uptimeMs: 5_000, seq: 1, level: "warn", kind: "log", event: "ota.retry",
      message: 'ota.retry {"attempt":2}', thingName: "esp32-01", freeHeap: 100_000, usedBytes: 40_000,
    });
    expect(b.level).toBe("error");
    expect(b.seq).toBe(2);
    expect(r.inner.lines.map((l) => l.event)).toEqual(["sync.connected", "ota.retry", "ota.failed"]);
    expect(r.mirror.stats.sent).toBe(2);
  });

  it("minLevel debug mirrors everything; unknown heap figures are null; no timestamp before the clock is set", async () => {
    const r = new Rig({ minLevel: "debug" });
    r.heap = { freeHeap: undefined, usedBytes: Number.NaN };
    r.clock.epochSeconds = () => 0;
    r.mqtt.connect();
    r.mirror.log("debug", "x");
    await settle();
    const [line] = r.lines();
    expect(line).toMatchObject({ level: "debug", timestamp: null, freeHeap: null, usedBytes: null, message: "x" });
  });

  it("cuts a long message to maxMessageChars and never throws on fields JSON cannot print", async () => {
    const r = new Rig({ maxMessageChars: 20 });
    r.mqtt.connect();
    r.mirror.log("warn", "long", { text: "a".repeat(100) });
    const cyclic: Record<string, unknown> = {};
    cyclic["self"] = cyclic;
    r.mirror.log("warn", "cyclic", cyclic);
    await settle();
    const lines = r.lines();
    expect(lines[0]!.message).toBe('long {"text":"aaaaa…');
    expect((lines[0]!.message as string).length).toBe(20);
    expect(lines[1]!.message).toBe("cyclic [unprintable]");
    expect(formatMessage("e", undefined, 16)).toBe("e");
  });

  it("Azure lines go to the telemetry topic with the line's level in the property bag", async () => {
    const r = new Rig({ cloud: "azure", thingName: "esp32-az-01" });
    r.mqtt.connect();
    r.mirror.log("error", "boom");
    await settle();
    expect(r.mqtt.published[0]!.topic).toBe("devices/esp32-az-01/messages/events/$.ct=application%2Fjson&$.ce=utf-8&kind=log&level=error");
    expect(JSON.parse(r.mqtt.published[0]!.payload).thingName).toBe("esp32-az-01");
  });
});

describe("log mirror: rate limit (token bucket, by count)", () => {
  it("sends `burst` lines at once, then one per refill interval; the next line sent counts the rest", async () => {
    const r = new Rig({ ratePerMin: 60, burst: 5 });
    r.mqtt.connect();
    for (let i = 0; i < 20; i++) r.mirror.log("warn", `line-${i}`);
    await settle();
    expect(r.lines().map((l) => l.event)).toEqual(["line-0", "line-1", "line-2", "line-3", "line-4"]);
    expect(r.mirror.stats).toMatchObject({ pendingDropped: 15, droppedBy: { rateLimited: 15 } });

    r.clock.advance(999); // not yet a whole token (60 per minute = one per 1000 ms)
    r.mirror.log("warn", "early");
    r.clock.advance(1);
    r.mirror.log("warn", "on-time");
    r.mirror.log("warn", "too-soon");
    await settle();
    const lines = r.lines();
    expect(lines.map((l) => l.event)).toEqual(["on-time"]);
    expect(lines[0]!.dropped).toBe(16);
    expect(lines[0]!.droppedBy).toEqual({ offline: 0, rateLimited: 16, busy: 0, failed: 0 });

    r.clock.advance(60_000); // a quiet minute refills at most `burst`
    for (let i = 0; i < 8; i++) r.mirror.log("warn", `later-${i}`);
    await settle();
    const later = r.lines();
    expect(later.length).toBe(5);
    expect(later[0]!.dropped).toBe(1); // "too-soon"
    expect(later[1]!.dropped).toBeUndefined();
  });

  it("over 10 simulated minutes at 6 lines a second, exactly burst + rate x minutes lines are sent", async () => {
    const r = new Rig({ ratePerMin: 12, burst: 3 });
    r.mqtt.connect();
    let offered = 0;
    for (let t = 0; t < 600_000; t += 1_000 / 6) {
      r.clock.now = Math.floor(t);
      r.mirror.log("error", "flood");
      offered++;
      if (offered % 50 === 0) await settle();
    }
    await settle();
    const sent = r.mqtt.published.length;
    expect(sent).toBe(3 + 12 * 10 - 1); // the last refill lands at 600,000 ms, just after the loop
    expect(r.mirror.stats.droppedBy.rateLimited).toBe(offered - sent);
  });

  it("TokenBucket: whole tokens only, capped at burst, time going backwards adds nothing", () => {
    const b = new TokenBucket(30, 2, 1_000);
    expect(b.take(1_000)).toBe(true);
    expect(b.take(1_000)).toBe(true);
    expect(b.take(1_000)).toBe(false);
    expect(b.available(2_999)).toBe(0);
    expect(b.available(3_000)).toBe(1);
    expect(b.available(500)).toBe(1);
    expect(b.available(1_000_000)).toBe(2);
  });

  it("health lines take no token: a flooding device still reports its health", async () => {
    const r = new Rig({ ratePerMin: 1, burst: 1, healthEveryMs: 10_000 });
    r.mirror.start();
    r.mqtt.connect();
    r.mirror.log("warn", "a");
    r.mirror.log("warn", "b");
    r.clock.advance(10_000);
    await settle();
    const lines = r.lines();
    expect(lines.map((l) => l.kind)).toEqual(["log", "health"]);
    expect(lines[1]!.dropped).toBe(1);
  });
});

describe("log mirror: offline, busy and failed publishes are dropped with a count", () => {
  it("drops while offline (nothing queued), and on reconnect one line says how many", async () => {
    const r = new Rig();
    r.mirror.log("error", "before-first-connect");
    r.mqtt.connect();
    await settle();
    let lines = r.lines();
    expect(lines.map((l) => l.event)).toEqual(["log-mirror.dropped"]);
    expect(lines[0]).toMatchObject({ level: "warn", dropped: 1, droppedBy: { offline: 1 }, message: 'log-mirror.dropped {"dropped":1}' });

    r.mqtt.disconnect();
    for (let i = 0; i < 1_000; i++) r.mirror.log("warn", "offline");
    expect(r.mqtt.published.length).toBe(1); // nothing sent, nothing held: only a count
    expect(r.mirror.stats.pendingDropped).toBe(1_000);
    r.mqtt.connect();
    r.mirror.log("warn", "back");
    await settle();
    lines = r.lines();
    expect(lines.map((l) => [l.event, l.dropped])).toEqual([["log-mirror.dropped", 1_000], ["back", undefined]]);
    expect(r.mirror.stats).toMatchObject({ reconnects: 1, droppedBy: { offline: 1_001 } });
  });

  it("no dropped line on a reconnect when nothing was dropped", async () => {
    const r = new Rig();
    r.mqtt.connect();
    r.mqtt.disconnect();
    r.mqtt.connect();
    await settle();
    expect(r.mqtt.published).toEqual([]);
  });

  it("a failed publish puts its line and the drops it carried back into the count", async () => {
    const r = new Rig();
    r.mirror.log("warn", "lost-offline");
    r.mqtt.connect();
    await settle();
    r.lines();
    r.mqtt.failPublishes = new ShadowOtaError("SYNC_TRANSPORT", "fake: write failed");
    r.mirror.log("warn", "fails");
    await settle();
    expect(r.mirror.stats.pendingDropped).toBe(1);
    r.mqtt.failPublishes = undefined;
    r.mirror.log("warn", "works");
    await settle();
    const [line] = r.lines();
    expect(line).toMatchObject({ event: "works", dropped: 1, droppedBy: { failed: 1 } });
    expect(r.inner.has("log-mirror.publish-failed")).toBe(true);
  });

  it("at most maxInFlight publishes pending; the rest are dropped as busy", async () => {
    const r = new Rig({ maxInFlight: 2 });
    const resolvers: Array<() => void> = [];
    const slow = new FakeMqtt();
    const mirror = new LogMirror({ clock: r.clock, heap: { sample: () => ({}) }, log: r.inner, mqtt: { publish: () => new Promise<void>((res) => resolvers.push(res)) } },
      { cloud: "aws", thingName: "esp32-01", maxInFlight: 2, healthEveryMs: 0 });
    mirror.watch(slow).setHandlers({ connected() {}, disconnected() {}, message() {} });
    slow.connect();
    for (let i = 0; i < 5; i++) mirror.log("warn", `l${i}`);
    expect(resolvers.length).toBe(2);
    expect(mirror.stats.droppedBy.busy).toBe(3);
    resolvers.splice(0).forEach((f) => f());
    await settle();
    mirror.log("warn", "after");
    expect(resolvers.length).toBe(1);
    expect(mirror.stats.sent).toBe(2);
  });
});

describe("log mirror: health line", () => {
  it("every healthEveryMs: uptime, reconnects, OTA state and error, heap; nothing after close", async () => {
    const r = new Rig({ healthEveryMs: 60_000, minLevel: "error" });
    r.heap = { freeHeap: 90_000, usedBytes: 50_000, largestFreeBlock: 30_000 };
    r.mirror.start();
    r.mirror.start(); // once
    r.mqtt.connect();
    r.mqtt.disconnect();
    r.mqtt.connect();
    r.clock.advance(60_000);
    r.health = { ota: "RolledBack", otaError: "OTA_SELF_TEST_FAILED" };
    r.clock.advance(60_000);
    await settle();
    const lines = r.lines();
    expect(lines.length).toBe(2);
    expect(lines[0]).toMatchObject({
      kind: "health", level: "info", event: "device.health", message: "device.health", uptimeMs: 60_000,
      reconnects: 1, ota: "Idle", otaError: null, freeHeap: 90_000, usedBytes: 50_000, largestFreeBlock: 30_000,
    });
    expect(lines[1]).toMatchObject({ uptimeMs: 120_000, ota: "RolledBack", otaError: "OTA_SELF_TEST_FAILED" });
    r.mirror.close();
    r.mirror.close();
    expect(r.clock.pending).toBe(0);
    r.clock.advance(600_000);
    r.mirror.log("error", "after-close");
    await settle();
    expect(r.mqtt.published.length).toBe(2);
    expect(r.inner.has("after-close")).toBe(true);
  });

  it("offline health lines are dropped and counted; a throwing health port still gives a line", async () => {
    const r = new Rig({ healthEveryMs: 1_000 });
    r.mirror.start();
    r.clock.advance(3_000);
    expect(r.mirror.stats.droppedBy.offline).toBe(3);
    const m = new LogMirror({ clock: r.clock, heap: { sample: () => ({}) }, log: r.inner, mqtt: r.mqtt, health: () => { throw new Error("no"); } },
      { cloud: "aws", thingName: "esp32-01", healthEveryMs: 0 });
    m.watch(new FakeMqtt()).setHandlers({ connected() {}, disconnected() {}, message() {} });
    r.mqtt.connect();
    m.health(); // offline for m: counted
    expect(m.stats.droppedBy.offline).toBe(1);
    expect(r.inner.has("log-mirror.health-failed")).toBe(true);
  });

  it("healthEveryMs 0 arms no timer", () => {
    const r = new Rig({ healthEveryMs: 0 });
    r.mirror.start();
    expect(r.clock.pending).toBe(0);
  });
});

describe("log mirror: configuration", () => {
  const base: LogMirrorConfig = { cloud: "aws", thingName: "esp32-01" };
  it("defaults", () => {
    expect(resolveLogMirrorConfig(base)).toEqual({
      cloud: "aws", thingName: "esp32-01", minLevel: "warn", ratePerMin: 30, burst: 10, healthEveryMs: 300_000,
      topicPrefix: "shadow-ota", maxMessageChars: 512, maxInFlight: 16,
    });
    expect(resolveLogMirrorConfig({ ...base, ratePerMin: 3 }).burst).toBe(3);
  });

  it.each([
    [{ cloud: "gcp" as never }, "cloud"],
    [{ thingName: "a/b" }, "thingName"],
    [{ thingName: "+" }, "thingName"],
    [{ thingName: "" }, "thingName"],
    [{ minLevel: "trace" as never }, "minLevel"],
    [{ ratePerMin: 0 }, "ratePerMin"],
    [{ ratePerMin: 1.5 }, "ratePerMin"],
    [{ ratePerMin: 6001 }, "ratePerMin"],
    [{ burst: 0 }, "burst"],
    [{ healthEveryMs: 999 }, "healthEveryMs"],
    [{ healthEveryMs: -1 }, "healthEveryMs"],
    [{ topicPrefix: "$aws" }, "topicPrefix"],
    [{ topicPrefix: "$aws/things" }, "topicPrefix"],
    [{ topicPrefix: "a/+/b" }, "topicPrefix"],
    [{ topicPrefix: "a//b" }, "topicPrefix"],
    [{ topicPrefix: "a/b/c/d/e/f" }, "topicPrefix"],
    [{ topicPrefix: "" }, "topicPrefix"],
    [{ maxMessageChars: 4097 }, "maxMessageChars"],
    [{ maxInFlight: 0 }, "maxInFlight"],
  ] as Array<[Partial<LogMirrorConfig>, string]>)("refuses %j (%s)", (over, key) => {
    expect(codeOf(() => resolveLogMirrorConfig({ ...base, ...over }))).toBe(`${LOG_CODES.LOG_CONFIG_INVALID}:${key}`);
  });

  it("a prefix whose topic would pass AWS's 256 bytes is refused; 5 levels (7 slashes in all) are fine", () => {
    const level = "p".repeat(64);
    const thing = "t".repeat(60);
    expect(codeOf(() => resolveLogMirrorConfig({ cloud: "aws", thingName: thing, topicPrefix: [level, level, level].join("/") }))).toBe("LOG_CONFIG_INVALID:topicPrefix");
    const ok = resolveLogMirrorConfig({ cloud: "aws", thingName: "esp32-01", topicPrefix: "a/b/c/d/e" });
    expect(logTopic(ok).split("/").length - 1).toBe(7);
  });
});
