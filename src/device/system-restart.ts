/**
 * Restart (src/ports/restart.ts) over the platform's mechanism, given as a function: on the device that is
 * `platformRestart` (src/device/restart/platform-restart.ts → restart_xs.c): esp_restart() on the ESP32, a
 * re-exec of the simulator on Linux, so the app boots again from the flash file as after a reset.
 *
 * Logs the restart and its reason first (the last line before the reset). A mechanism that throws (the
 * simulator could not re-execute itself) becomes DEVICE_RESTART_UNSUPPORTED with the cause; the OTA
 * controller logs it and leaves its persisted state to the next boot. Pure apart from the injected
 * function, so Jest tests it (test/device/system-restart.test.ts). Not here: deciding when to restart.
 */
import { ShadowOtaError } from "../core/errors";
import type { Log } from "../ports/log";
import type { Restart } from "../ports/restart";
import { DEVICE_CODES } from "./device-errors";

export class SystemRestart implements Restart {
  readonly #log: Log;
  readonly #restart: () => void;
  constructor(log: Log, restart: () => void) {
    this.#log = log;
    this.#restart = restart;
  }
  restart(reason: string): void {
    this.#log.log("warn", "device.restart", { reason });
    try {
      this.#restart();
    } catch (e) {
      this.#log.log("error", "device.restart.failed", { reason, message: e instanceof Error ? e.message : String(e) });
      throw new ShadowOtaError(DEVICE_CODES.DEVICE_RESTART_UNSUPPORTED, "the platform could not restart", { cause: e });
    }
  }
}
