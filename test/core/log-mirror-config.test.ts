/**
 * The log mirror's settings (src/core/log-mirror.ts, resolveLogMirrorConfig) at their edges, where
 * log-mirror.test.ts checks only the code and key: the words and detail of each refusal (a long value cut
 * to 64 characters, a non-string shown as itself or its type), the inclusive upper bounds, topic prefixes of
 * several characters per level, AWS's 256-byte topic limit exactly at and one past it, and that the AWS
 * topic limit is not applied to Azure. Runs on Node and on XS.
 */
import { LOG_CODES, LogMirror, resolveLogMirrorConfig, type LogMirrorConfig } from "../../src/core/log-mirror";
import { errorOf } from "./error-of";
import { FakeMqtt, ManualClock, MemoryLog } from "./fake-ports";

const base: LogMirrorConfig = { cloud: "aws", thingName: "esp32-01" };

function refusal(over: Partial<Record<keyof LogMirrorConfig, unknown>>): { message: string; detail: unknown } {
  const e = errorOf(() => resolveLogMirrorConfig({ ...base, ...over } as LogMirrorConfig));
  expect(e.code).toBe(LOG_CODES.LOG_CONFIG_INVALID);
  return { message: e.message, detail: e.detail };
}

describe("the words and detail of each refusal", () => {
  test.each([
    [{ cloud: "gcp" }, 'log mirror: cloud must be "aws" or "azure"', { key: "cloud", value: "gcp" }],
    [{ thingName: "a/b" }, "log mirror: thingName must be 1..128 characters a topic level can hold (no '/', '+', '#')", { key: "thingName", value: "a/b" }],
    [{ thingName: 5 }, "log mirror: thingName must be 1..128 characters a topic level can hold (no '/', '+', '#')", { key: "thingName", value: 5 }],
    [{ minLevel: "trace" }, "log mirror: minLevel must be one of debug, info, warn, error", { key: "minLevel", value: "trace" }],
    [{ ratePerMin: 6001 }, "log mirror: ratePerMin must be an integer 1..6000", { key: "ratePerMin", value: 6001 }],
    [{ burst: true }, "log mirror: burst must be an integer 1..1000", { key: "burst", value: "boolean" }],
    [{ healthEveryMs: 999 }, "log mirror: healthEveryMs must be 0 (off) or at least 1000", { key: "healthEveryMs", value: 999 }],
    [{ topicPrefix: "$aws" }, "log mirror: topicPrefix must be 1..5 levels of [A-Za-z0-9_-] (not starting with '$': AWS reserves those topics)", { key: "topicPrefix", value: "$aws" }],
    [{ topicPrefix: 5 }, "log mirror: topicPrefix must be 1..5 levels of [A-Za-z0-9_-] (not starting with '$': AWS reserves those topics)", { key: "topicPrefix", value: 5 }],
  ])("%j: %s", (over, message, detail) => {
    expect(refusal(over)).toEqual({ message, detail });
  });

  test("a long refused value is shown cut to 64 characters", () => {
    expect(refusal({ thingName: "x/" + "y".repeat(100) }).detail).toEqual({ key: "thingName", value: ("x/" + "y".repeat(100)).slice(0, 64) });
  });
});

describe("bounds and topics", () => {
  test("upper bounds are inclusive", () => {
    expect(resolveLogMirrorConfig({ ...base, ratePerMin: 6000, burst: 1000, maxInFlight: 64, maxMessageChars: 4096, healthEveryMs: 86_400_000 })).toMatchObject({ ratePerMin: 6000, burst: 1000, maxInFlight: 64, maxMessageChars: 4096, healthEveryMs: 86_400_000 });
  });

  test("prefix levels of several characters", () => {
    expect(resolveLogMirrorConfig({ ...base, topicPrefix: "fleet/logs-1/a_b" }).topicPrefix).toBe("fleet/logs-1/a_b");
  });

  test("an AWS topic of exactly 256 bytes is accepted, 257 is refused with the limits named", () => {
    const thing = "t".repeat(128);
    const prefix = (n: number): string => "a".repeat(64) + "/" + "b".repeat(n - 65);
    // topic = prefix + "/things/" + thing + "/logs": 115 + 8 + 128 + 5 = 256 bytes
    expect(resolveLogMirrorConfig({ cloud: "aws", thingName: thing, topicPrefix: prefix(115) }).topicPrefix).toBe(prefix(115));
    const e = errorOf(() => resolveLogMirrorConfig({ cloud: "aws", thingName: thing, topicPrefix: prefix(116) }));
    expect(e.message).toBe("log mirror: topicPrefix makes a topic over AWS's 256 bytes or 7 slashes");
    expect(e.detail).toEqual({ key: "topicPrefix", value: prefix(116).slice(0, 64) });
  });

  test("the AWS topic limit does not apply to Azure (its topic does not carry the prefix)", () => {
    const thing = "t".repeat(128);
    const prefix = "a".repeat(64) + "/" + "b".repeat(64);
    expect(resolveLogMirrorConfig({ cloud: "azure", thingName: thing, topicPrefix: prefix }).thingName).toBe(thing);
  });
});

describe("the watched transport and the line's edges", () => {
  /** A clock whose wall time is exactly 2001-01-01T00:00:00Z, the first instant the mirror trusts. */
  class Y2001 extends ManualClock {
    override epochSeconds(): number { return 978_307_200; }
  }

  it("passes start() and incoming messages through to the sync", () => {
    const mqtt = new FakeMqtt();
    const mirror = new LogMirror({ clock: new ManualClock(), heap: { sample: () => ({ freeHeap: 1, usedBytes: 1 }) }, log: new MemoryLog(), mqtt }, { ...base, healthEveryMs: 0 });
    const topics: string[] = [];
    const t = mirror.watch(mqtt);
    t.setHandlers({ connected() {}, disconnected() {}, message(topic) { topics.push(topic); } });
    t.start();
    expect(mqtt.started).toBe(true);
    mqtt.connect();
    mqtt.deliver("$aws/things/esp32-01/shadow/get/accepted", "{}");
    expect(topics).toEqual(["$aws/things/esp32-01/shadow/get/accepted"]);
  });

  it("a wall clock at 2001-01-01 gives a timestamp; 0 free bytes is 0, a negative count is null", () => {
    const mqtt = new FakeMqtt();
    const mirror = new LogMirror({ clock: new Y2001(), heap: { sample: () => ({ freeHeap: 0, usedBytes: -1 }) }, log: new MemoryLog(), mqtt }, { ...base, healthEveryMs: 0 });
    mirror.watch(mqtt).setHandlers({ connected() {}, disconnected() {}, message() {} });
    mqtt.connect();
    mirror.log("warn", "x");
    const line = JSON.parse(mqtt.take()[0]!.payload) as Record<string, unknown>;
    expect([line["timestamp"], line["freeHeap"], line["usedBytes"]]).toEqual(["2001-01-01T00:00:00.000Z", 0, null]);
  });
});
