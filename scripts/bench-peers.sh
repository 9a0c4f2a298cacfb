#!/usr/bin/env bash
# Measures virtmark's workload generators against the reference tools they stand for,
# side by side on this machine, and prints the ratios (virtmark / reference).
#
#   scripts/bench-peers.sh            # every check
#   scripts/bench-peers.sh net mem    # only scripts/bench-peers.d/{net,mem}.sh
#
# Each check prints `PEER <name> virtmark=… reference=… unit=… ratio=… goal=…`; this
# script collects them into a table and exits 1 when a ratio misses its goal.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked --quiet
export VIRTMARK="${VIRTMARK:-$PWD/target/x86_64-unknown-linux-gnu/release/virtmark}"

checks=("$@")
if [ "${#checks[@]}" -eq 0 ]; then
  for f in scripts/bench-peers.d/*.sh; do checks+=("$(basename "$f" .sh)"); done
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for c in "${checks[@]}"; do
  echo "== $c" >&2
  bash "scripts/bench-peers.d/$c.sh" | tee -a "$out" >&2
done

echo
printf '%-22s %14s %14s %-8s %7s %6s %s\n' check virtmark reference unit ratio goal verdict
fail=0
while read -r _ name rest; do
  declare -A f=()
  for kv in $rest; do f[${kv%%=*}]=${kv#*=}; done
  ok=$(awk -v r="${f[ratio]}" -v g="${f[goal]}" 'BEGIN { print (r >= g) ? "ok" : "MISSED" }')
  [ "$ok" = ok ] || fail=1
  printf '%-22s %14s %14s %-8s %7s %6s %s\n' "$name" "${f[virtmark]}" "${f[reference]}" "${f[unit]}" "${f[ratio]}" "${f[goal]}" "$ok"
  unset f
done < <(grep '^PEER ' "$out")
exit $fail
