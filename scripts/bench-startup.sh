#!/usr/bin/env bash
# Time from "start target" to "agent answers hello" for every local target, against
# the bare tool doing the same (`unshare … true`, `crun run`, `runsc do true`, a bare
# `linux` / qemu boot to an init that exits), as a table.
#
#   scripts/bench-startup.sh              # every group: containers, lxc, vm
#   RUNS=9 scripts/bench-startup.sh vm    # one group, more runs
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --quiet
export VIRTMARK="${VIRTMARK:-$PWD/target/x86_64-unknown-linux-gnu/release/virtmark}"

groups=("$@")
if [ "${#groups[@]}" -eq 0 ]; then
  for f in scripts/bench-startup.d/*.sh; do groups+=("$(basename "$f" .sh)"); done
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for g in "${groups[@]}"; do
  echo "== $g" >&2
  bash "scripts/bench-startup.d/$g.sh" | tee -a "$out" >&2
done

echo
printf '%-10s %12s %10s %7s %8s %s\n' target virtmark_ms bare_ms ratio goal_ms verdict
fail=0
while read -r _ name rest; do
  declare -A f=()
  for kv in $rest; do f[${kv%%=*}]=${kv#*=}; done
  ok=$(awk -v v="${f[virtmark_ms]}" -v g="${f[goal_ms]}" -v r="${f[ratio]}" \
    'BEGIN { print (v <= g && r <= 1.3) ? "ok" : "MISSED" }')
  [ "$ok" = ok ] || fail=1
  printf '%-10s %12s %10s %7s %8s %s\n' "$name" "${f[virtmark_ms]}" "${f[bare_ms]}" "${f[ratio]}" "${f[goal_ms]}" "$ok"
  unset f
done < <(grep '^STARTUP ' "$out")
exit $fail
