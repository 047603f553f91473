#!/usr/bin/env bash
# Build times of examples/orientation, measured in one run (dev profile, dependencies already
# compiled by a warm-up build):
#   quantize  - `cargo clean -p orientation` and an empty Kenosis cache: calibrate, quantize, validate
#   cached    - `cargo clean -p orientation` again, cache kept: the build script reruns, cache hit
#   no-op     - nothing changed: Cargo skips the build script
#   offline   - `cargo clean -p orientation`, KENOSIS_OFFLINE=1 and no ONNX Runtime: rebuilt from .kenosis/
# and checks that all of them embed the same INT8 bytes. Pass --from-scratch to also time a
# build in an empty target folder (every dependency compiled).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-ort.sh >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export KENOSIS_CACHE_DIR="$work/cache"
unset KENOSIS_OFFLINE KENOSIS_PREPARE KENOSIS_PREPARE_CHECK || true

now() { date +%s.%N; }
int8_sha() {
  local idx
  idx=$(ls -t target/debug/build/orientation-*/out/kenosis/index.json | head -1)
  python3 -c 'import json,sys,hashlib; i=json.load(open(sys.argv[1])); a=next(iter(i["models"].values()))["artifact"]; print(hashlib.sha256(open(a,"rb").read()).hexdigest())' "$idx"
}
timed() { # label, then the command
  local label=$1; shift
  local t0 t1
  t0=$(now); "$@" >"$work/$label.log" 2>&1 || { cat "$work/$label.log"; exit 1; }; t1=$(now)
  printf '%-9s %6.1f s   int8 sha256 %s\n' "$label" "$(echo "$t1 - $t0" | bc)" "$(int8_sha | cut -c1-16)"
}

if [[ "${1:-}" == "--from-scratch" ]]; then
  t0=$(now); CARGO_TARGET_DIR="$work/target" cargo build -p orientation -q; t1=$(now)
  printf '%-9s %6.1f s   (empty target folder: every dependency compiled, then quantized)\n' scratch "$(echo "$t1 - $t0" | bc)"
fi
cargo build -p orientation -q                      # warm-up: dependencies compiled
rm -rf "$KENOSIS_CACHE_DIR"                        # (the warm-up filled it)
cargo clean -p orientation -q
timed quantize cargo build -p orientation
grep -q "calibrated and validated" "$work/quantize.log" || { echo "expected a calibration"; cat "$work/quantize.log"; exit 1; }
cargo clean -p orientation -q
timed cached cargo build -p orientation
grep -q "cache hit" "$work/cached.log" || { echo "expected a cache hit"; cat "$work/cached.log"; exit 1; }
timed no-op cargo build -p orientation
cargo clean -p orientation -q
KENOSIS_OFFLINE=1 ORT_DYLIB_PATH=/nonexistent XDG_CACHE_HOME=/nonexistent timed offline cargo build -p orientation
grep -q "rebuilt from .kenosis/ record" "$work/offline.log" || { echo "expected an offline rebuild"; cat "$work/offline.log"; exit 1; }
grep "kenosis:" "$work/quantize.log" | sed 's/^warning: [^:]*: /  /'
