/**
 * The Moddable clock's local time for update windows: UTC plus the SDK's Time.timezone and Time.dst
 * (seconds), which main.ts sets from the config's utcOffsetMinutes. The SDK's `time` and `timer` modules
 * are replaced by objects of the same shape (documentation/base/base.md).
 */
import { describe, expect, jest, test } from "@jest/globals";

const fakeTime = { ticks: 0, timezone: 0, dst: 0, set: (_s: number): void => undefined };
jest.mock("time", () => ({ __esModule: true, default: fakeTime }), { virtual: true });
jest.mock("timer", () => ({ __esModule: true, default: { set: () => 1, clear: () => undefined } }), { virtual: true });

import type { Clock } from "../../src/ports/clock";
// Loaded with require(), so the root tsconfig does not follow it into the SDK's modules (as mqtt-moddable.test.ts).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { moddableClock, setUtcOffsetMinutes } = require("../../src/device/moddable-clock") as { moddableClock: Clock; setUtcOffsetMinutes: (m: number) => void };
import { parseDeviceConfig } from "../../src/device/device-config";
import { localMinute } from "../../src/core/update-policy";

const base = { cloud: "aws", thing: "t1", host: "h", port: 8883, firmwareVersion: "1.0.0" };

describe("moddableClock.utcOffsetMinutes", () => {
  test("UTC until the time zone is set; then the zone plus daylight saving", () => {
    expect(moddableClock.utcOffsetMinutes!()).toBe(0);
    setUtcOffsetMinutes(-300);
    expect(fakeTime.timezone).toBe(-18_000);
    expect(moddableClock.utcOffsetMinutes!()).toBe(-300);
    fakeTime.dst = 3600;
    expect(moddableClock.utcOffsetMinutes!()).toBe(-240);
    // 2026-12-02 07:30 UTC is 03:30 local at UTC-4: inside a 02:00-04:00 window.
    expect(localMinute(Date.UTC(2026, 11, 2, 7, 30) / 1000, moddableClock.utcOffsetMinutes!())).toBe(3 * 60 + 30);
    fakeTime.dst = 0;
    setUtcOffsetMinutes(0);
  });
});

describe("config.utcOffsetMinutes", () => {
  test("absent: not configured", () => {
    expect(parseDeviceConfig(base).utcOffsetMinutes).toBeUndefined();
  });
  test("numbers and strings (mcconfig passes strings), negative ones included", () => {
    expect(parseDeviceConfig({ ...base, utcOffsetMinutes: 540 }).utcOffsetMinutes).toBe(540);
    expect(parseDeviceConfig({ ...base, utcOffsetMinutes: "-300" }).utcOffsetMinutes).toBe(-300);
    expect(parseDeviceConfig({ ...base, utcOffsetMinutes: "840" }).utcOffsetMinutes).toBe(840);
    expect(parseDeviceConfig({ ...base, utcOffsetMinutes: -720 }).utcOffsetMinutes).toBe(-720);
  });
  test.each([["841"], ["-721"], ["+60"], ["1.5"], [""], [1.5], [true]])("refused: %p", (v) => {
    expect(() => parseDeviceConfig({ ...base, utcOffsetMinutes: v })).toThrow(expect.objectContaining({ code: "DEVICE_CONFIG_INVALID" }));
  });
});
