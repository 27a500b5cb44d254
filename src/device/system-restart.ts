/**
 * Restart (src/ports/restart.ts) over the SDK's `System.restart()` (modules/io/system: esp_restart() on the
 * ESP32). The `System` global is installed by the "system" module that manifest.json preloads on esp32.
 *
 * Moddable's desktop simulator has no restart (its System, modules/io/manifests/lin/system.js, defines
 * none, and the app's lin build does not load it at all): there `restart` logs and throws
 * DEVICE_RESTART_UNSUPPORTED instead of pretending. Not here: deciding when to restart.
 */
import { ShadowOtaError } from "../core/errors";
import type { Log } from "../ports/log";
import type { Restart } from "../ports/restart";
import { DEVICE_CODES } from "./device-errors";

export class SystemRestart implements Restart {
  readonly #log: Log;
  constructor(log: Log) {
    this.#log = log;
  }
  restart(reason: string): void {
    const system = (globalThis as { System?: { restart?: () => void } }).System;
    if (typeof system?.restart !== "function") {
      this.#log.log("error", "device.restart.unsupported", { reason });
      throw new ShadowOtaError(DEVICE_CODES.DEVICE_RESTART_UNSUPPORTED, "this platform cannot restart (no System.restart)");
    }
    this.#log.log("warn", "device.restart", { reason });
    system.restart();
  }
}
