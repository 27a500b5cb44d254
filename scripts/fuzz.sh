#!/usr/bin/env bash
# Builds and runs the libFuzzer target of the OTA C core (src/native/fuzz/ota_fuzz.c: the streaming image
# parser and writer on the host flash layer, the simulated bootloader, power cuts) with AddressSanitizer
# and UBSan (errors fatal), for a bounded time, from a seed corpus generated now from src/tools/esp-image.ts
# images (scripts/fuzz-seeds.ts). Everything it writes is under build/fuzz/ (gitignored).
#
#   bash scripts/fuzz.sh [SECONDS]      npm run fuzz       default 60 s (or FUZZ_SECONDS); keeps build/fuzz/corpus
#   bash scripts/fuzz.sh --ci           npm run fuzz:ci    25 s (or FUZZ_SECONDS), fresh corpus, fixed -seed
#   bash scripts/fuzz.sh --repro FILE   reruns one input (a crash file) and prints the sanitizer report
#   bash scripts/fuzz.sh --selftest     builds with a planted bug and checks it is found, saved and reproduced
#
# Last line of a run: `fuzz: N execs, K crashes`; exit 1 on any crash, sanitizer report, invariant failure
# or a run that does not stop in time. Without clang + libFuzzer it fails (exit 1): nothing is skipped.
# Env: CLANG (default clang), FUZZ_SECONDS, FUZZ_SEED (libFuzzer -seed), FUZZ_MAX_LEN (default 32768).
# Not here: the power-cut campaign (npm run test:powercut) and the Jest tests of the same code.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=build/fuzz
BIN="$OUT/ota_fuzz"
CC="${CLANG:-clang}"
MAX_LEN="${FUZZ_MAX_LEN:-32768}"
SRCS=(src/native/core/ota_errors.c src/native/core/ota_image.c src/native/core/ota_writer.c src/native/core/ota_sign.c
      src/native/core/ota_layout.c src/native/core/ota_otadata.c src/native/host/ota_boot_sim.c src/native/host/ota_host.c
      src/native/fuzz/ota_fuzz.c)
DEPS=("${SRCS[@]}" src/native/core/*.h src/native/core/*.def src/native/host/*.h scripts/fuzz.sh)
CFLAGS=(-g -O1 -std=c11 -Wall -Wextra -Werror -fno-omit-frame-pointer
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)

say() { printf 'fuzz: %s\n' "$*"; }
die() { printf 'fuzz: ERROR: %s\n' "$*" >&2; printf 'fuzz: 0 execs, not run (error above)\n'; exit 1; }

mode=run
seconds="${FUZZ_SECONDS:-60}"
repro=""
case "${1:-}" in
  --ci) mode=ci; seconds="${FUZZ_SECONDS:-25}" ;;
  --repro) mode=repro; repro="${2:-}"; [ -n "$repro" ] && [ -f "$repro" ] || die "--repro needs an input file" ;;
  --selftest) mode=selftest; seconds="${FUZZ_SECONDS:-120}" ;;
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) [[ "$1" =~ ^[0-9]+$ ]] || die "unknown argument $1 (see --help)"; seconds="$1" ;;
esac
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -gt 0 ] || die "time must be a positive number of seconds"

# ---- toolchain: fail loudly, never skip ---------------------------------------------------------------
command -v "$CC" >/dev/null 2>&1 \
  || die "$CC not found: the fuzz target needs clang with libFuzzer (apt-get install clang libclang-rt-14-dev; scripts/bootstrap.sh installs them)"
mkdir -p "$OUT"
probe="$OUT/probe"
printf '#include <stdint.h>\n#include <stddef.h>\n#include <mbedtls/sha256.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n){(void)d;(void)n;return 0;}\n' > "$probe.c"
if ! "$CC" -fsanitize=fuzzer,address,undefined "$probe.c" -lmbedcrypto -o "$probe" 2> "$probe.log"; then
  cat "$probe.log" >&2
  die "$CC cannot link -fsanitize=fuzzer,address,undefined with -lmbedcrypto (install libclang-rt-14-dev and libmbedtls-dev)"
fi
rm -f "$probe" "$probe.c" "$probe.log"

# ---- build (only when a source, this script or the flags changed) -------------------------------------
build() { # $1 = output binary, rest = extra flags
  local bin="$1"; shift
  local flags="${CFLAGS[*]} $*"
  local stale=0
  [ -f "$bin" ] && [ -f "$bin.flags" ] && [ "$(cat "$bin.flags")" = "$flags" ] || stale=1
  if [ "$stale" = 0 ]; then for f in "${DEPS[@]}"; do [ "$f" -nt "$bin" ] && { stale=1; break; }; done; fi
  if [ "$stale" = 1 ]; then
    say "building $bin ($CC ${CFLAGS[*]} $*)"
    "$CC" "${CFLAGS[@]}" "$@" "${SRCS[@]}" -lmbedcrypto -o "$bin"
    printf '%s' "$flags" > "$bin.flags"
  fi
}

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:symbolize=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# The key the signed seeds are signed with (scripts/fuzz-seeds.ts makes it once); mode 6 of the target trusts it.
KEY_DER="$OUT/signing-key.pub.der"
if [ "$mode" = repro ]; then
  build "$BIN"
  [ -f "$KEY_DER" ] && export OTA_FUZZ_SIGNING_KEY="$KEY_DER"
  say "rerunning $repro"
  set +e
  "$BIN" "$repro"
  status=$?
  set -e
  if [ "$status" = 0 ]; then say "$repro: no crash (exit 0)"; else say "$repro: crashed (exit $status)"; fi
  exit "$status"
fi

if [ "$mode" = selftest ]; then
  BIN="$OUT/ota_fuzz_selftest"
  build "$BIN" -DOTA_FUZZ_SELFTEST
else
  build "$BIN"
fi

# ---- seeds (generated now, never committed) -----------------------------------------------------------
SEEDS="$OUT/seeds"
TSX=node_modules/.bin/tsx
[ -x "$TSX" ] || die "node_modules/.bin/tsx missing: run npm ci"
"$TSX" scripts/fuzz-seeds.ts "$SEEDS" | sed 's/^/fuzz: /'
[ -f "$KEY_DER" ] || die "scripts/fuzz-seeds.ts did not write $KEY_DER"
export OTA_FUZZ_SIGNING_KEY="$KEY_DER"

case "$mode" in
  run) CORPUS="$OUT/corpus"; ARTIFACTS="$OUT/crashes"; SEED_ARG=() ;;
  ci) CORPUS="$OUT/ci-corpus"; ARTIFACTS="$OUT/crashes"; SEED_ARG=(-seed="${FUZZ_SEED:-1}") ;;
  selftest) CORPUS="$OUT/selftest-corpus"; ARTIFACTS="$OUT/selftest-crashes"; SEED_ARG=(-seed="${FUZZ_SEED:-1}") ;;
esac
[ -n "${FUZZ_SEED:-}" ] && [ "$mode" = run ] && SEED_ARG=(-seed="$FUZZ_SEED")
if [ "$mode" != run ]; then rm -rf "$CORPUS"; fi
[ "$mode" = selftest ] && rm -rf "$ARTIFACTS"
mkdir -p "$CORPUS" "$ARTIFACTS"
LOG="$OUT/last-run.log"
before="$(ls -1 "$ARTIFACTS" 2>/dev/null | sort)"

say "running $BIN for ${seconds} s (corpus $CORPUS, seeds $SEEDS, log $LOG)"
: > "$LOG"
set +e
timeout --signal=INT "$((seconds + 60))" "$BIN" "$CORPUS" "$SEEDS" \
  -max_total_time="$seconds" -max_len="$MAX_LEN" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$ARTIFACTS/" "${SEED_ARG[@]}" > "$LOG" 2>&1 &
fuzz_pid=$!
# Progress while it runs: libFuzzer's pulse lines and anything that looks like a finding.
tail -n +1 --pid="$fuzz_pid" -f "$LOG" 2>/dev/null \
  | grep --line-buffered -E '^#[0-9]+[[:space:]]+(INITED|pulse|DONE)|ERROR|runtime error|invariant failed' \
  | sed -u 's/^/fuzz:   /'
wait "$fuzz_pid"
status=$?
set -e

execs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$LOG" | tail -1)"
[ -n "$execs" ] || execs="$(grep -oE '^#[0-9]+' "$LOG" | tail -1 | tr -d '#')"
[ -n "$execs" ] || execs=0
after="$(ls -1 "$ARTIFACTS" 2>/dev/null | sort)"
new_files="$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | sed '/^$/d')"
crashes="$(printf '%s\n' "$new_files" | sed '/^$/d' | wc -l | tr -d ' ')"
report=0
grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|runtime error:|invariant failed' "$LOG" && report=1
if [ "$status" = 124 ]; then say "the fuzzer did not stop within $((seconds + 60)) s"; fi
if [ "$status" != 0 ] && [ "$crashes" = 0 ]; then crashes=1; fi
if [ "$report" = 1 ] && [ "$crashes" = 0 ]; then crashes=1; fi

corpus_n="$(ls -1 "$CORPUS" | wc -l | tr -d ' ')"
if [ "$crashes" != 0 ]; then
  say "---- report (from $LOG) ----"
  awk '/ERROR: |runtime error:|invariant failed/ {p=1} p' "$LOG" | head -60 | sed 's/^/fuzz: | /'
  for f in $new_files; do
    path="$ARTIFACTS/$f"
    say "crash file: $path"
    if [ "$mode" = selftest ]; then say "rerun:      $BIN $path"
    else say "rerun:      $BIN $path      (or: bash scripts/fuzz.sh --repro $path)"; fi
    set +e
    "$BIN" "$path" > "$OUT/repro.log" 2>&1
    rs=$?
    set -e
    if [ "$rs" != 0 ]; then say "reproduces: yes (exit $rs)"; else say "reproduces: NO (flaky; see $LOG)"; fi
  done
fi

if [ "$mode" = selftest ]; then
  # The planted out-of-bounds read (ota_fuzz.c, OTA_FUZZ_SELFTEST) must be the finding, in the run and in the rerun.
  planted='ota_fuzz.c:[0-9]+:[0-9]+: runtime error: index [0-9]+ out of bounds|stack-buffer-overflow'
  if [ "$crashes" != 0 ] && grep -qE "$planted" "$LOG" && grep -qE "$planted" "$OUT/repro.log" 2>/dev/null; then
    say "selftest: the planted bug was found after $execs execs, saved and reproduced"
    exit 0
  fi
  say "selftest: FAILED: the planted bug was not found and reproduced in ${seconds} s"
  exit 1
fi

say "corpus: $corpus_n inputs in $CORPUS"
say "$execs execs, $crashes crashes"
[ "$crashes" = 0 ] || exit 1
