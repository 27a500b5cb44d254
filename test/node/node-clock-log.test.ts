/**
 * NodeClock (monotonic and wall time, one-shot timers, cancel in every state) and JsonLinesLog (one JSON
 * object per line, levels, base fields, reserved names, values JSON cannot hold). No timing asserts: timers
 * are only checked to fire or not, with bounded waits.
 */
import { JsonLinesLog } from "../../src/node/console-log";
import { NodeClock } from "../../src/node/node-clock";
import { ShadowOtaError } from "../../src/core/errors";
import { sleep, waitFor } from "../sim/broker-fixtures";

describe("NodeClock", () => {
  const clock = new NodeClock();

  test("monotonic time does not go back; wall time is whole epoch seconds", () => {
    const a = clock.monotonicMs();
    const b = clock.monotonicMs();
    expect(b).toBeGreaterThanOrEqual(a);
    const s = clock.epochSeconds();
    expect(Number.isInteger(s)).toBe(true);
    expect(Math.abs(s - Date.now() / 1000)).toBeLessThan(2);
  });

  test("a timer fires once; a cancelled one never; cancel is safe after firing, twice, and with junk", async () => {
    let fired = 0;
    let cancelled = 0;
    const h = clock.setTimer(5, () => { fired++; });
    const c = clock.setTimer(5, () => { cancelled++; });
    clock.cancel(c);
    clock.cancel(c);
    expect(await waitFor(() => fired === 1, 1_000)).toBe(true);
    clock.cancel(h);
    clock.cancel(undefined);
    clock.cancel(null);
    clock.cancel(42);
    await sleep(30);
    expect(fired).toBe(1);
    expect(cancelled).toBe(0);
  });

  test("negative and NaN delays run as soon as possible; unref'd timers still fire", async () => {
    let n = 0;
    clock.setTimer(-5, () => { n++; });
    clock.setTimer(Number.NaN, () => { n++; });
    new NodeClock({ unref: true }).setTimer(1, () => { n++; });
    expect(await waitFor(() => n === 3, 1_000)).toBe(true);
  });
});

describe("JsonLinesLog", () => {
  const fixed = (): Date => new Date("2025-01-02T03:04:05.000Z");

  test("one JSON object per line: t, level, event first, then base and fields", () => {
    const lines: string[] = [];
    const log = new JsonLinesLog({ write: (l) => lines.push(l), now: fixed, base: { device: "esp32-01" } });
    log.log("info", "sync.connected", { attempt: 2 });
    log.log("warn", "sync.stale");
    expect(lines).toEqual([
      '{"t":"2025-01-02T03:04:05.000Z","level":"info","event":"sync.connected","device":"esp32-01","attempt":2}',
      '{"t":"2025-01-02T03:04:05.000Z","level":"warn","event":"sync.stale","device":"esp32-01"}',
    ]);
    expect(lines.every((l) => !l.includes("\n"))).toBe(true);
  });

  test("levels below minLevel are dropped (default info)", () => {
    const lines: string[] = [];
    new JsonLinesLog({ write: (l) => lines.push(l) }).log("debug", "noise");
    const warnOnly = new JsonLinesLog({ write: (l) => lines.push(l), minLevel: "warn" });
    warnOnly.log("info", "dropped");
    warnOnly.log("error", "kept");
    expect(lines.map((l) => JSON.parse(l).event)).toEqual(["kept"]);
  });

  test("errors, bigints, bytes, cycles and reserved names are written safely; logging never throws", () => {
    const lines: string[] = [];
    const log = new JsonLinesLog({ write: (l) => lines.push(l), now: fixed });
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    log.log("error", "x", {
      err: new ShadowOtaError("SYNC_TIMEOUT", "no answer"), big: 10n, bytes: new Uint8Array(3), cyclic, event: "spoof", level: "debug",
    });
    const o = JSON.parse(lines[0]!);
    expect(o.event).toBe("x");
    expect(o.level).toBe("error");
    expect(o["field.event"]).toBe("spoof");
    expect(o["field.level"]).toBe("debug");
    expect(o.err).toEqual({ name: "ShadowOtaError", message: "no answer", code: "SYNC_TIMEOUT" });
    expect(o.big).toBe("10");
    expect(o.bytes).toEqual({ bytes: 3 });
    expect(o.cyclic).toEqual({ a: 1, self: "[circular]" });

    const hostile = { toJSON() { throw new Error("boom"); } };
    expect(() => log.log("info", "y", { hostile })).not.toThrow();
    expect(JSON.parse(lines[1]!)).toEqual({ t: "2025-01-02T03:04:05.000Z", level: "info", event: "y", logError: "fields not serialisable: boom" });
  });
});
