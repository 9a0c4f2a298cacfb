#!/usr/bin/env bash
# Fuzzes the parsers that read outside input (agent protocol, plans,
# results.json, ledgers) with libFuzzer, on the stable toolchain: coverage
# instrumentation through stable -C flags (no sanitizer: the code under test is
# safe Rust; debug assertions and overflow checks are on).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 15)
#
# Seeds come from fuzz/corpus/<target>/ (kept in the repository); inputs that
# find new coverage go to target/fuzz-corpus/<target>/ (not committed unless
# worth keeping: copy them into fuzz/corpus/). A crash stops the script with the
# input in fuzz/artifacts/<target>/ and a non-zero exit status.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-15}"
targets=(protocol plan results ledger)
export CARGO_TARGET_DIR="$PWD/target/fuzz"
export RUSTFLAGS="-Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --manifest-path fuzz/Cargo.toml --release --locked --bins --quiet
total=0
for t in "${targets[@]}"; do
  work="target/fuzz-corpus/$t"
  mkdir -p "$work" "fuzz/artifacts/$t"
  log="target/fuzz-corpus/$t.log"
  # .cargo/config.toml may name a build target: the binary is under it then.
  bin=$(ls "$CARGO_TARGET_DIR"/*/release/"$t" "$CARGO_TARGET_DIR"/release/"$t" 2>/dev/null | head -1 || true)
  "$bin" "$work" "fuzz/corpus/$t" \
    -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 || {
    echo "fuzz: $t: crash or error, see $log and fuzz/artifacts/$t/" >&2
    tail -40 "$log" >&2
    exit 1
  }
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  echo "fuzz: $t: $runs executions in ${secs}s, $cov, no crash"
  total=$((total + runs))
done
echo "fuzz: $total executions over ${#targets[@]} targets, no crash"
