#!/usr/bin/env bash
# Start-up time of the lxc target: virtmark's start → agent hello (startup_s in
# results.json) against a bare `lxc-execute` of a trivial command (`/virtmark
# --version`, the binary's equivalent of `true`) with the very configuration the
# driver wrote (the copy it keeps in the run directory), in a fresh root with the
# same mount points. Median of RUNS (default 7) runs each, alternating.
# Prints: STARTUP lxc virtmark_ms=<v> bare_ms=<v> ratio=<v> goal_ms=100
set -euo pipefail

cd "$(dirname "$0")/../.."
VIRTMARK=${VIRTMARK:-target/x86_64-unknown-linux-gnu/release/virtmark}
RUNS=${RUNS:-7}
if [ ! -x "$VIRTMARK" ]; then
  echo "# building $VIRTMARK" >&2
  cargo build --release --quiet
fi
VIRTMARK=$(readlink -f "$VIRTMARK")
work=$(mktemp -d /tmp/virtmark-bench-lxc.XXXXXX)
# The bare containers leave their cgroup parents behind, like the driver's (which
# records them in its ledger): remove them, leaves first.
remove_cgroups() {
  [ -n "${1:-}" ] || return 0
  find /sys/fs/cgroup -depth -type d -name "$1" 2>/dev/null | while read -r d; do
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}
cleanup() {
  [ -f "$work/bare.conf" ] && remove_cgroups "$(awk -F' = ' '$1=="lxc.cgroup.dir"{print $2}' "$work/bare.conf")"
  rm -rf "$work"
}
trap cleanup EXIT

virtmark_once() {
  local out="$work/out-$1"
  "$VIRTMARK" run -t lxc -w dd-zero --reps 2 --duration 100ms --out "$out" \
    --db "$work/db.sqlite" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; return 1; }
  local dir
  dir=$(ls -d "$out"/*/)
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]+"/results.json")); print(r["targets"][0]["startup_s"]*1000)' "$dir"
  cp "$dir/agent-lxc.lxc.conf" "$work/lxc.conf"
}

bare_once() {
  local root="$work/bare-root" lxcpath="$work/bare-lxcpath"
  rm -rf "$root" "$lxcpath"
  mkdir -p "$root"/{proc,sys,dev,tmp,scratch,etc,run} "$lxcpath"
  # The same configuration with this root; mount points as the driver makes them.
  sed "s|^lxc.rootfs.path = .*|lxc.rootfs.path = dir:$root|" "$work/lxc.conf" >"$work/bare.conf"
  grep '^lxc.mount.entry' "$work/bare.conf" | awk '{print $4}' | while read -r inside; do
    mkdir -p "$root/$(dirname "$inside")"
    : >"$root/$inside"
  done
  local t0 t1
  t0=$(date +%s%N)
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin lxc-execute -P "$lxcpath" -n virtmark-bench \
    -f "$work/bare.conf" -- /virtmark --version >/dev/null 2>>"$work/bare.err"
  t1=$(date +%s%N)
  remove_cgroups "$(awk -F' = ' '$1=="lxc.cgroup.dir"{print $2}' "$work/bare.conf")" >&2
  echo "scale=3; ($t1 - $t0) / 1000000" | bc
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

command -v lxc-execute >/dev/null || { echo "# lxc-execute missing (Debian package lxc)"; exit 1; }
command -v bc >/dev/null || { echo "# bc missing"; exit 1; }
vm=()
bare=()
virtmark_once warm >/dev/null # page cache, and the configuration to compare with
bare_once >/dev/null
for i in $(seq "$RUNS"); do
  vm+=("$(virtmark_once "$i")")
  bare+=("$(bare_once)")
done
echo "# virtmark ms: ${vm[*]}"
echo "# bare lxc-execute ms: ${bare[*]}"
v=$(printf '%s\n' "${vm[@]}" | median)
b=$(printf '%s\n' "${bare[@]}" | median)
ratio=$(echo "scale=2; $v / $b" | bc)
printf 'STARTUP lxc virtmark_ms=%.1f bare_ms=%.1f ratio=%s goal_ms=100\n' "$v" "$b" "$ratio"
