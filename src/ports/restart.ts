/** Port: restart the device (System.restart() on the ESP32; the simulator re-runs its boot sequence). */
export interface Restart {
  restart(reason: string): void;
}
