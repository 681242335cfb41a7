#!/bin/sh
# Run one fuzz target for a fixed time on one core and keep its log:
#   ./run.sh TARGET SECONDS
# Stable Rust: cargo-fuzz's nightly flags are accepted with RUSTC_BOOTSTRAP=1.
# Builds with AddressSanitizer (cargo-fuzz's default) and debug assertions (-a: integer
# overflow panics). Crash reproducers land in artifacts/TARGET/ (gitignored).
set -eu
target=$1
secs=$2
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
./seed-corpora.sh >/dev/null
mkdir -p logs
rev=$(git rev-parse --short HEAD)
dirty=$(git status --porcelain -- ../src | wc -l)
log="logs/$target-$(date -u +%Y%m%dT%H%M%SZ).log"
echo "target $target, $secs s, commit $rev, $dirty uncommitted files in crates/netfilter/src" | tee "$log"
cargo fuzz run -a "$target" -- -jobs=1 -workers=1 -max_total_time="$secs" -max_len=32768 \
    -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 >>"$log" 2>&1 || true
cat fuzz-0.log >>"$log" 2>/dev/null || true
rm -f fuzz-0.log
grep -E "^Done|stat::number_of_executed_units|ERROR|panicked|Test unit written" "$log" || true
