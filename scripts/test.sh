#!/usr/bin/env bash
# Sets up and runs every check: formatting, lints, docs, unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
cargo test --locked --all-targets -- --test-threads=2
scripts/fuzz.sh "${VIRTMARK_FUZZ_SECONDS:-15}"
