/**
 * The platform's restart, bound from C (restart_xs.c, listed by ./manifest.json): esp_restart() on the
 * ESP32; in the Linux simulator a re-exec of mcsim with its own arguments, so the app boots again from the
 * flash file and NVS (Preference) file like a device after a reset. Does not return when it works; throws
 * an Error when the simulator cannot re-execute itself.
 */
const binding = {
  // A method of the `native(...).call(this)` shape, which XS binds straight to the C function.
  restart(): void {
    native("xs_device_restart").call(this);
  },
};

export function platformRestart(): void {
  binding.restart();
}
