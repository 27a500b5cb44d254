#!/usr/bin/env bash
# Sets up everything `npm start` and `npm test` need on a fresh machine, and does nothing when it is all
# there already: Debian packages (mbedTLS for the native module, clang + libFuzzer for the fuzz target,
# mosquitto for the independent-broker tests), npm packages, the native module and the standalone xsnap.
# Run by the prestart/pretest hooks; safe to run by hand (`npm run bootstrap`).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[bootstrap] %s\n' "$*"; }

# Debian packages: only installs what is missing; needs root (or passwordless sudo).
want=(libmbedtls-dev clang libclang-rt-14-dev llvm mosquitto chromium)
missing=()
for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
      say "could not install ${missing[*]} (need root); tests that need them will say so"
    fi
  else
    say "no apt-get here: please install ${missing[*]} by hand"
  fi
fi
# mosquitto's package starts a system broker on 1883; the tests start their own on loopback ports.

# npm packages (npm ci when node_modules is missing or older than the lockfile).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi

# The native OTA slot module (N-API, host flash) and, for tests, the standalone xsnap.
bash scripts/build-native.sh
if [ "${1:-}" = "test" ]; then bash scripts/build-xsnap.sh; fi
