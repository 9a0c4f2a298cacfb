#!/usr/bin/env bash
# Start-up of `bochs`: virtmark's start → agent hello (`startup_s` of results.json:
# the boot disk built, Bochs started, the BIOS, SYSLINUX and the kernel's boot, the
# agent serving on COM1) against a bare Bochs boot of the same disk: the boot image
# and bochsrc virtmark wrote (copied during a run), with `virtmark.probe=1` added to
# the kernel command line, COM1 unconnected, until the guest's init prints its first
# line on the console (COM2). Both at the default memory (2 GiB), one CPU.
# Prints:
#   STARTUP bochs virtmark_ms=<v> bare_ms=<v> ratio=<v> goal_ms=<g>
# (medians of $RUNS runs, default 3: each boot takes tens of seconds).
# Other lines start with "# ".
set -euo pipefail

VIRTMARK=${VIRTMARK:-target/x86_64-unknown-linux-gnu/release/virtmark}
RUNS=${RUNS:-3}

if [ ! -x "$VIRTMARK" ]; then
  echo "# $VIRTMARK not found: cargo build --release (or set VIRTMARK)" >&2
  exit 1
fi
for t in bochs-bin mcopy unshare; do
  command -v "$t" >/dev/null || { echo "# bochs: $t is missing (scripts/setup.sh)"; exit 0; }
done
work=$(mktemp -d /var/tmp/vmk-bochs.XXXXXX)
bochs_pid=
cleanup() {
  if [ -n "$bochs_pid" ]; then kill "$bochs_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# virtmark: start → hello, from results.json. The first run also keeps a copy of
# the boot image and bochsrc it made (its scratch is removed at its end).
virtmark_ms() {
  local i
  for i in $(seq "$RUNS"); do
    rm -rf "$work/out"
    VIRTMARK_SCRATCH=$work/scratch "$VIRTMARK" run -t bochs -w dd-zero --reps 1 --discard 0 \
      --duration 100ms --out "$work/out" >/dev/null 2>"$work/err" &
    local run=$!
    if [ ! -f "$work/boot.img" ]; then
      while kill -0 "$run" 2>/dev/null; do
        local rc
        rc=$(ls "$work"/scratch/virtmark-*/bochs/bochsrc 2>/dev/null | head -1 || true)
        if [ -n "$rc" ] && [ -s "$(dirname "$rc")/boot.img" ]; then
          sleep 1
          cp "$rc" "$work/bochsrc.virtmark"
          cp --sparse=always "$(dirname "$rc")/boot.img" "$work/boot.img"
          break
        fi
        sleep 0.1
      done
    fi
    wait "$run" || { sed 's/^/# /' "$work/err" >&2; return 1; }
    python3 - "$work/out" <<'PY'
import json, pathlib, sys
d = next(pathlib.Path(sys.argv[1]).iterdir())
j = json.loads((d / "results.json").read_text())
t = next(t for t in j["targets"] if t["name"] == "bochs")
print(round(t["startup_s"] * 1000))
PY
  done | median
}

# The same disk, its kernel command line told to stop at once, and a bochsrc
# whose files are in $work and whose COM1 is unconnected.
bare_setup() {
  export MTOOLS_SKIP_CHECK=1
  mcopy -i "$work/boot.img" ::/syslinux.cfg "$work/syslinux.cfg"
  sed -i 's/^\(  APPEND .*\) -- agent --init$/\1 virtmark.probe=1 -- agent --init/' "$work/syslinux.cfg"
  grep -q 'virtmark.probe=1' "$work/syslinux.cfg"
  mcopy -o -i "$work/boot.img" "$work/syslinux.cfg" ::/syslinux.cfg
  sed -e "s#path=[^,]*/boot.img#path=$work/boot.img#" \
    -e 's#^com1: .*#com1: enabled=1, mode=null#' \
    -e "s#^com2: .*#com2: enabled=1, mode=file, dev=$work/console.log#" \
    -e "s#^log: .*#log: $work/bochs.log#" \
    "$work/bochsrc.virtmark" >"$work/bochsrc"
  echo continue >"$work/debugger.rc"
}

# Bochs started (in a network namespace of its own: its display listens on every
# address) → the guest's init prints "virtmark init: started".
bare_ms() {
  local i t0 t1
  for i in $(seq "$RUNS"); do
    rm -f "$work/console.log" "$work/boot.img.lock"
    t0=$(now_ms)
    (cd "$work" && exec unshare -n bochs-bin -q -f bochsrc -rc debugger.rc \
      </dev/null >/dev/null 2>&1) &
    bochs_pid=$!
    until grep -qa 'virtmark init: started' "$work/console.log" 2>/dev/null; do
      kill -0 "$bochs_pid" 2>/dev/null || { echo "# bare bochs exited early" >&2; return 1; }
      sleep 0.05
    done
    t1=$(now_ms)
    kill "$bochs_pid" 2>/dev/null || true
    wait "$bochs_pid" 2>/dev/null || true
    bochs_pid=
    echo $((t1 - t0))
  done | median
}

echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg); $RUNS runs each; medians"
v=$(virtmark_ms)
bare_setup
b=$(bare_ms)
echo "STARTUP bochs virtmark_ms=$v bare_ms=$b ratio=$(awk -v v="$v" -v b="$b" 'BEGIN{printf "%.2f", v/b}') goal_ms=30000"
