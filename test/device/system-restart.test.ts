/** SystemRestart (src/device/system-restart.ts): logs the reason before the platform's restart; a mechanism
 *  that throws becomes DEVICE_RESTART_UNSUPPORTED with the cause and a log line. */
import { ShadowOtaError } from "../../src/core/errors";
import type { Log, LogLevel } from "../../src/ports/log";
import { SystemRestart } from "../../src/device/system-restart";

function recordingLog(): { log: Log; lines: Array<[string, string, unknown]> } {
  const lines: Array<[string, string, unknown]> = [];
  return { lines, log: { log: (level: LogLevel, event: string, data?: Record<string, unknown>) => { lines.push([level, event, data]); } } };
}

test("logs the reason, then calls the platform's restart once", () => {
  const { log, lines } = recordingLog();
  const order: string[] = [];
  const r = new SystemRestart({ log: (l, e, d) => { order.push(e); log.log(l, e, d); } }, () => { order.push("restart"); });
  r.restart("staged 1.1.0");
  expect(order).toEqual(["device.restart", "restart"]);
  expect(lines).toEqual([["warn", "device.restart", { reason: "staged 1.1.0" }]]);
});

test("a restart that throws is DEVICE_RESTART_UNSUPPORTED with the cause, logged", () => {
  const { log, lines } = recordingLog();
  const cause = new Error("restart: exec /x: No such file or directory");
  const r = new SystemRestart(log, () => { throw cause; });
  let caught: unknown;
  try { r.restart("self-test failed"); } catch (e) { caught = e; }
  expect(caught).toBeInstanceOf(ShadowOtaError);
  expect((caught as ShadowOtaError).code).toBe("DEVICE_RESTART_UNSUPPORTED");
  expect((caught as ShadowOtaError).cause).toBe(cause);
  expect(lines[1]).toEqual(["error", "device.restart.failed", { reason: "self-test failed", message: cause.message }]);
});
