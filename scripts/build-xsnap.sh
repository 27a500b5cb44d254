#!/usr/bin/env bash
# build-xsnap.sh — builds the standalone `xsnap` command (the XS engine as a shell that runs ES module
# files: `xsnap -m file.mjs`) from the XS sources shipped in node_modules/@agoric/xsnap, so that the
# platform-neutral core and its unit tests can run on the real XS engine (scripts/test-xs.mjs).
#
# It is not the Moddable SDK build (no mcconfig, no ESP32) and it does not use the package's own
# postinstall step (which is not run here). Output goes to build/xsnap/ (gitignored):
#   build/xsnap/bin/lin/release/xsnap   the binary the makefile writes
#   build/xsnap/bin/xsnap               a symlink to it, the path the test runner uses
#   build/xsnap/build.log               the compiler output of the last build
#   build/xsnap/src/                    the xsnap host sources as built (heap sizes raised, see below)
# Cached: does nothing when build/xsnap/bin/xsnap exists, is newer than the package's package.json and
# than this script, and was built in the same mode (build/xsnap/build-mode). Quiet on success; on
# failure prints the build log and exits non-zero.
# Usage: bash scripts/build-xsnap.sh [--force]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="$ROOT/node_modules/@agoric/xsnap"
OUT="$ROOT/build/xsnap"
BIN="$OUT/bin/xsnap"
LOG="$OUT/build.log"
MAKEFILE_DIR="$PKG/xsnap-native/xsnap/makefiles/lin"

if [[ "$(uname -s)" != "Linux" ]]; then
  echo "build-xsnap: only Linux is supported (uname: $(uname -s))" >&2
  exit 1
fi
if [[ ! -f "$PKG/package.json" || ! -f "$MAKEFILE_DIR/xsnap.mk" || ! -d "$PKG/moddable/xs/sources" ]]; then
  echo "build-xsnap: XS sources not found in $PKG (is @agoric/xsnap installed?)" >&2
  exit 1
fi

MODE="raised-heap"
[[ "${XSNAP_STOCK:-0}" == "1" ]] && MODE="stock"
STAMP="$OUT/build-mode"
if [[ "${1:-}" != "--force" && -x "$BIN" && "$BIN" -nt "$PKG/package.json" && "$BIN" -nt "${BASH_SOURCE[0]}" &&
      "$(cat "$STAMP" 2>/dev/null || true)" == "$MODE" ]]; then
  exit 0
fi

mkdir -p "$OUT/bin"

# The xsnap host program (xsnap-native/xsnap/sources, not the engine) is built from a copy whose
# xsCreation sizes are raised: the stock 256 K-slot heap suits Agoric's small vats, but a test bundle
# carries fast-check and generates tens of thousands of values, and with the stock sizes XS spent 75-85 %
# of the run in its garbage collector (protocol-fuzz: 79 s stock, 13 s with these sizes; about 400 MB
# resident instead of 150 MB). The engine sources and the stack size (4096 slots) are left as they are.
# XSNAP_STOCK=1 builds the unmodified host instead.
SRC="$OUT/src"
rm -rf "$SRC"
cp -R "$PKG/xsnap-native/xsnap/sources" "$SRC"
if [[ "$MODE" != "stock" ]]; then
  sed -E -i \
    -e 's|^([[:space:]]*)32 \* 1024 \* 1024,([[:space:]]*/\* initialChunkSize \*/)|\1128 * 1024 * 1024,\2|' \
    -e 's|^([[:space:]]*)4 \* 1024 \* 1024,([[:space:]]*/\* incrementalChunkSize \*/)|\132 * 1024 * 1024,\2|' \
    -e 's|^([[:space:]]*)256 \* 1024,([[:space:]]*/\* initialHeapCount \*/)|\18 * 1024 * 1024,\2|' \
    -e 's|^([[:space:]]*)128 \* 1024,([[:space:]]*/\* incrementalHeapCount \*/)|\12 * 1024 * 1024,\2|' \
    "$SRC/xsnap.c"
  patched="$(grep -cE '^[[:space:]]*(128 \* 1024 \* 1024,[[:space:]]*/\* initialChunkSize|32 \* 1024 \* 1024,[[:space:]]*/\* incrementalChunkSize|8 \* 1024 \* 1024,[[:space:]]*/\* initialHeapCount|2 \* 1024 \* 1024,[[:space:]]*/\* incrementalHeapCount)' "$SRC/xsnap.c" || true)"
  if [[ "$patched" != "4" ]]; then
    echo "build-xsnap: could not raise the xsCreation sizes in $SRC/xsnap.c ($patched of 4 lines matched);" >&2
    echo "  the package's xsnap.c changed: update this script, or run with XSNAP_STOCK=1" >&2
    exit 1
  fi
fi

# BUILD_DIR and TLS_DIR given on the command line override the makefile's $(MODDABLE)/build and
# ../../sources, so nothing is written inside node_modules. CC defaults to cc; the XS sources need
# nothing beyond C99 and libm/libdl/pthread.
if ! make -C "$MAKEFILE_DIR" -f xsnap.mk -j2 \
    GOAL=release \
    MODDABLE="$PKG/moddable" \
    BUILD_DIR="$OUT" \
    TLS_DIR="$SRC" \
    CC="${CC:-cc}" >"$LOG" 2>&1; then
  echo "build-xsnap: build failed; log ($LOG):" >&2
  cat "$LOG" >&2
  exit 1
fi

REAL="$OUT/bin/lin/release/xsnap"
if [[ ! -x "$REAL" ]]; then
  echo "build-xsnap: make succeeded but $REAL is missing; log:" >&2
  cat "$LOG" >&2
  exit 1
fi
ln -sf "lin/release/xsnap" "$BIN"
echo "$MODE" >"$STAMP"
# make leaves the binary untouched when nothing changed: refresh the time stamp the cache check uses.
touch "$REAL"
