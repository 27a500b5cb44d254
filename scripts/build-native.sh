#!/usr/bin/env bash
# Builds the N-API OTA slot module (src/native/build/Release/ota_slot.node) from the C core, the host
# flash layer and the N-API binding, with the node-gyp that ships inside npm, offline, against this
# machine's Node headers (no download). Idempotent: does nothing when the module is newer than every
# source. Also compiles the C core and host layer alone with -Wall -Wextra -Werror.
# Also builds, for the tests, the same binding over the ESP32 layer and RAM fakes of ESP-IDF
# (test/native/esp32-fakes): build/Release/ota_slot_esp32_fakes.node.
# Not here: the xsmc binding and the device build (mcconfig), the fuzz target (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[build-native] %s\n' "$*"; }
die() { printf '[build-native] error: %s\n' "$*" >&2; exit 1; }

NATIVE=src/native
OUT="$NATIVE/build/Release/ota_slot.node"
OUT_FAKES="$NATIVE/build/Release/ota_slot_esp32_fakes.node" # test-only: the ESP32 layer over ESP-IDF fakes
CC="${CC:-cc}"

command -v "$CC" >/dev/null 2>&1 || die "no C compiler ($CC); install build-essential or clang"
command -v node >/dev/null 2>&1 || die "node is not on PATH"

# mbedTLS (SHA-256, MD5) comes from Debian's libmbedtls-dev.
if ! printf '#include <mbedtls/sha256.h>\n#include <mbedtls/md5.h>\nint main(void){return 0;}\n' \
    | "$CC" -x c - -o /dev/null -lmbedcrypto >/dev/null 2>&1; then
  die "mbedTLS headers or libmbedcrypto not found: install libmbedtls-dev (apt-get install libmbedtls-dev)"
fi

sources=("$NATIVE"/core/*.c "$NATIVE"/core/*.h "$NATIVE"/core/*.def "$NATIVE"/esp32/*.c "$NATIVE"/esp32/*.h test/native/esp32-fakes/*.c test/native/esp32-stubs/*.h "$NATIVE"/host/*.c "$NATIVE"/host/*.h "$NATIVE"/napi/*.c "$NATIVE"/napi/sha256-openssl/mbedtls/*.h "$NATIVE/binding.gyp")
if [ -f "$OUT" ] && [ -f "$OUT_FAKES" ] && [ "${1:-}" != "--force" ]; then
  stale=0
  for f in "${sources[@]}"; do [ "$f" -nt "$OUT" ] && { stale=1; break; }; done
  if [ "$stale" = 0 ]; then say "up to date: $OUT"; exit 0; fi
fi

say "strict compile of the C core and host layer (-Wall -Wextra -Werror)"
for f in "$NATIVE"/core/*.c "$NATIVE"/host/*.c; do
  "$CC" -std=c11 -Wall -Wextra -Werror -fsyntax-only "$f"
done

# The node-gyp bundled with npm (npm exec node-gyp may want the network).
npm_bin="$(command -v npm || true)"
[ -n "$npm_bin" ] || die "npm is not on PATH (node-gyp ships inside npm)"
NODE_GYP="${NODE_GYP:-$(dirname "$(readlink -f "$npm_bin")")/../node_modules/node-gyp/bin/node-gyp.js}"
[ -f "$NODE_GYP" ] || die "node-gyp not found at $NODE_GYP (set NODE_GYP=/path/to/node-gyp.js)"

# Node's own headers: <prefix>/include/node next to the node binary (Debian/NodeSource: /usr).
NODEDIR="${NODEDIR:-$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")}"
[ -f "$NODEDIR/include/node/node_api.h" ] && [ -f "$NODEDIR/include/node/common.gypi" ] \
  || die "Node headers not found under $NODEDIR/include/node (install the nodejs headers or set NODEDIR)"

gyp() { node "$NODE_GYP" "$@" --directory "$NATIVE" --nodedir="$NODEDIR" --loglevel=warn; }
if [ ! -f "$NATIVE/build/Makefile" ] || [ "$NATIVE/binding.gyp" -nt "$NATIVE/build/Makefile" ]; then
  say "configuring (node-gyp, nodedir $NODEDIR)"
  gyp configure
fi
say "building"
gyp build --jobs 2
[ -f "$OUT" ] || die "node-gyp finished but $OUT is missing"
[ -f "$OUT_FAKES" ] || die "node-gyp finished but $OUT_FAKES is missing"
touch "$OUT" "$OUT_FAKES"
say "built $OUT and $OUT_FAKES"
