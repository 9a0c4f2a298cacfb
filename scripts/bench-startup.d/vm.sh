#!/usr/bin/env bash
# Start-up of the VM targets (uml, qemu:tcg): virtmark's start → agent hello
# (`startup_s` of results.json) against the bare tool booting the same kernel to
# an init that exits at once (busybox poweroff -f), same memory and CPUs.
# Prints per target:
#   STARTUP <target> virtmark_ms=<v> bare_ms=<v> ratio=<v> goal_ms=<g>
# (medians of $RUNS runs, default 5). Other lines start with "# ".
set -euo pipefail

VIRTMARK=${VIRTMARK:-target/x86_64-unknown-linux-gnu/release/virtmark}
RUNS=${RUNS:-5}
MEM_MIB=2048
CPUS=$(nproc)
KERNEL=${VIRTMARK_KERNEL:-$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort | tail -1)}
BUSYBOX=$(command -v busybox || true)

if [ ! -x "$VIRTMARK" ]; then
  echo "# $VIRTMARK not found: cargo build --release (or set VIRTMARK)" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  missing=()
  for p in user-mode-linux busybox-static cpio e2fsprogs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
[ -n "$BUSYBOX" ] || BUSYBOX=$(command -v busybox)

work=$(mktemp -d /tmp/virtmark-bench-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# virtmark: start → hello, from results.json.
virtmark_ms() {
  local target=$1 i
  for i in $(seq "$RUNS"); do
    rm -rf "$work/out"
    "$VIRTMARK" run -t "$target" -w dd-zero --reps 1 --discard 0 --duration 100ms \
      --out "$work/out" >/dev/null 2>"$work/err" || { sed 's/^/# /' "$work/err"; return 1; }
    python3 - "$work/out" "$target" <<'PY'
import json, pathlib, sys
d = next(pathlib.Path(sys.argv[1]).iterdir())
j = json.loads((d / "results.json").read_text())
t = next(t for t in j["targets"] if t["name"] == sys.argv[2])
print(round(t["startup_s"] * 1000))
PY
  done | median
}

# A root with busybox as init (hostfs for UML, newc initramfs for QEMU).
mkdir -p "$work/root/proc" "$work/root/sys" "$work/root/dev"
cp "$BUSYBOX" "$work/root/busybox"
(cd "$work/root" && find . | cpio -o -H newc --quiet >"$work/bare.cpio")

bare_uml_ms() {
  local extra=${1:-} i t0 t1
  for i in $(seq "$RUNS"); do
    t0=$(now_ms)
    # shellcheck disable=SC2086
    linux mem=${MEM_MIB}M umid=vmbench$$ uml_dir="$work" root=/dev/root rootfstype=hostfs \
      rootflags="$work/root" ro quiet con=null con0=null,fd:2 $extra \
      init=/busybox -- poweroff -f </dev/null >/dev/null 2>&1
    t1=$(now_ms)
    echo $((t1 - t0))
  done | median
}

bare_qemu_ms() {
  local extra=${1:-} i t0 t1
  for i in $(seq "$RUNS"); do
    t0=$(now_ms)
    # shellcheck disable=SC2086
    qemu-system-x86_64 -nodefaults -no-user-config -nographic -no-reboot \
      -accel tcg,thread=multi -cpu max -smp "$CPUS" -m ${MEM_MIB}M $extra \
      -kernel "${BOOT_KERNEL:-$KERNEL}" -initrd "$work/bare.cpio" -serial null \
      -append "console=ttyS0 reboot=t panic=-1 quiet rdinit=/busybox -- poweroff -f" \
      </dev/null >/dev/null 2>&1
    t1=$(now_ms)
    echo $((t1 - t0))
  done | median
}

report() {
  local target=$1 v=$2 b=$3 goal=$4
  echo "STARTUP $target virtmark_ms=$v bare_ms=$b ratio=$(awk -v v="$v" -v b="$b" 'BEGIN{printf "%.2f", v/b}') goal_ms=$goal"
}

echo "# load average: $(cut -d' ' -f1-3 /proc/loadavg); $RUNS runs each; medians"
if command -v linux >/dev/null; then
  v=$(virtmark_ms uml)
  b=$(bare_uml_ms)
  bt=$(bare_uml_ms initcall_blacklist=raid6_select_algo)
  echo "# uml: bare boot with virtmark's initcall_blacklist=raid6_select_algo: ${bt} ms"
  report uml "$v" "$b" 2000
else
  echo "# uml: linux (user-mode-linux) not installed"
fi
if command -v qemu-system-x86_64 >/dev/null && [ -n "$KERNEL" ]; then
  v=$(virtmark_ms qemu:tcg)
  b=$(bare_qemu_ms)
  bq=$(bare_qemu_ms "-bios /usr/share/qemu/qboot.rom")
  echo "# qemu:tcg: bare boot with qboot firmware (as virtmark uses): ${bq} ms"
  # The uncompressed kernel virtmark boots through PVH (made by the runs above).
  pvh=$(ls -t "${VIRTMARK_CACHE:-$HOME/.cache/virtmark}"/vmlinux-*.elf 2>/dev/null | head -1 || true)
  if [ -n "$pvh" ]; then
    bp=$(BOOT_KERNEL=$pvh bare_qemu_ms "-bios /usr/share/qemu/qboot.rom")
    echo "# qemu:tcg: bare PVH boot of that vmlinux with qboot (as virtmark boots): ${bp} ms"
  fi
  report qemu:tcg "$v" "$b" 2500
else
  echo "# qemu:tcg: qemu-system-x86_64 or the cloud kernel is missing"
fi
