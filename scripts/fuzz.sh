#!/usr/bin/env bash
# Fuzzes the link's parsers with cargo-fuzz (libFuzzer): scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# Not part of the test suite; results go in docs/testing.md. cargo-fuzz needs nightly features,
# which RUSTC_BOOTSTRAP enables on the stable toolchain this machine has.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(cadu_decoder packet_parsers product_decode telecommand)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cd "$root/link"
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  echo "== $target: ${seconds}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 2>&1 | grep -E "^(Done|stat::|==|SUMMARY|.*panicked|.*Crash|.*deadly)" || true
done
