#!/usr/bin/env bash
# Sets up, builds and runs `virtmark run` (its built-in default unless arguments are given).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --quiet
exec target/x86_64-unknown-linux-gnu/release/virtmark run "$@"
