#!/usr/bin/env bash
# Compile checks (clang -fsyntax-only, -Wall -Wextra -Werror) of the native code that cannot be built on
# this machine:
#   - src/native/esp32/ (and the C core) with -DESP_PLATFORM against the declaration stubs in
#     test/native/esp32-stubs/ (the exact ESP-IDF signatures, no behaviour; no ESP-IDF here);
#   - src/native/xs/ota_xs.c against the XS headers of @agoric/xsnap (xs/includes), once for the ESP32
#     (ESP_PLATFORM + stubs) and once for the desktop simulator (host flash layer).
# Not a build: nothing is linked or run. Without clang it says so and exits 0 (nothing was checked).
set -euo pipefail
cd "$(dirname "$0")/.."

CC="${CLANG:-clang}"
if ! command -v "$CC" >/dev/null 2>&1; then
  echo "check-native-syntax: SKIPPED — $CC not found (apt-get install clang); nothing was checked"
  exit 0
fi
XS=node_modules/@agoric/xsnap/moddable/xs
[ -f "$XS/includes/xsmc.h" ] || { echo "check-native-syntax: missing $XS/includes/xsmc.h (npm ci)" >&2; exit 1; }

FLAGS=(-std=c11 -Wall -Wextra -Werror -fsyntax-only)
ESP=(-DESP_PLATFORM -Itest/native/esp32-stubs)
XSI=(-I"$XS/includes" -I"$XS/platforms")
failed=0
check() {
  local label="$1"; shift
  if "$CC" "${FLAGS[@]}" "$@"; then echo "ok   $label"; else echo "FAIL $label"; failed=1; fi
}
for f in src/native/esp32/*.c src/native/core/*.c; do
  check "$f (ESP_PLATFORM, ESP-IDF declaration stubs)" "${ESP[@]}" "$f"
done
check "src/native/xs/ota_xs.c (ESP_PLATFORM, XS headers)" "${ESP[@]}" "${XSI[@]}" src/native/xs/ota_xs.c
check "src/native/xs/ota_xs.c (simulator, XS headers)" "${XSI[@]}" src/native/xs/ota_xs.c
if [ "$failed" != 0 ]; then echo "check-native-syntax: FAILED"; exit 1; fi
echo "check-native-syntax: all passed"
