#!/usr/bin/env bash
# Start-up of `libvirt`: virtmark's start → agent hello (`startup_s` of
# results.json: a private libvirtd, then `virtmark create` of its domain, then
# the boot) against the bare tool: `virsh create` of the same domain XML (the
# one virtmark wrote, copied during a run) on a libvirtd already running,
# until the agent answers hello on the domain's channel.
# Prints:
#   STARTUP libvirt virtmark_ms=<v> bare_ms=<v> ratio=<v> goal_ms=<g>
# (medians of $RUNS runs, default 5). Other lines start with "# ".
set -euo pipefail

VIRTMARK=${VIRTMARK:-target/x86_64-unknown-linux-gnu/release/virtmark}
RUNS=${RUNS:-5}
CACHE=${VIRTMARK_CACHE:-$HOME/.cache/virtmark}

if [ ! -x "$VIRTMARK" ]; then
  echo "# $VIRTMARK not found: cargo build --release (or set VIRTMARK)" >&2
  exit 1
fi
# Short: the private daemon's socket paths lie under it.
work=$(mktemp -d /var/tmp/vmk-lv.XXXXXX)
daemon=
cleanup() {
  if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# virtmark: start → hello, from results.json; the first run's domain XML is kept.
mkdir -p "$work/scr"
for i in $(seq "$RUNS"); do
  rm -rf "$work/out"
  VIRTMARK_SCRATCH="$work/scr" "$VIRTMARK" run -t libvirt -w dd-zero --reps 1 --discard 0 \
    --duration 100ms --out "$work/out" >/dev/null 2>"$work/err" &
  run=$!
  if [ ! -f "$work/domain.xml" ]; then
    for _ in $(seq 600); do
      x=$(ls "$work"/scr/virtmark-*/libvirt/domain.xml 2>/dev/null | head -1 || true)
      if [ -n "$x" ]; then
        sleep 0.2
        cp "$x" "$work/domain.xml"
        echo "$(dirname "$x")" >"$work/instance-dir"
        break
      fi
      sleep 0.05
    done
  fi
  wait "$run" || { sed 's/^/# /' "$work/err"; exit 1; }
  python3 - "$work/out" <<'PY'
import json, pathlib, sys
d = next(pathlib.Path(sys.argv[1]).iterdir())
j = json.loads((d / "results.json").read_text())
t = next(t for t in j["targets"] if t["name"] == "libvirt")
print(round(t["startup_s"] * 1000))
PY
done | median >"$work/virtmark_ms"

# Bare: the same XML, its scratch disk, console and channel moved to $work/bare.
inst=$(cat "$work/instance-dir")
mkdir -p "$work/bare" "$work/etc" "$work/lib" "$work/log" "$work/sock"
sed -e "s|$inst/|$work/bare/|g" \
  -e "s|<serial type='file'><source path='[^']*'/>|<serial type='file'><source path='$work/bare/console.log'/>|" \
  "$work/domain.xml" >"$work/bare.xml"
cat >"$work/etc/libvirtd.conf" <<EOF
unix_sock_dir = "$work/sock"
auth_unix_rw = "none"
auth_unix_ro = "none"
EOF
cat >"$work/etc/qemu.conf" <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
EOF
# The daemon as virtmark runs it (own mount and network namespaces, one CPU,
# virtmark's capabilities cache), started once.
unshare -m -n taskset -c 0 sh -c "
  mount --make-rprivate / && mount -t tmpfs tmpfs /run &&
  mount --bind '$work/etc' /etc/libvirt && mount --bind '$work/lib' /var/lib/libvirt &&
  mount --bind '$CACHE/libvirt' /var/cache/libvirt && mount --bind '$work/log' /var/log/libvirt &&
  exec libvirtd" >"$work/libvirtd.log" 2>&1 &
daemon=$!
uri="qemu:///system?socket=$work/sock/libvirt-sock"
for _ in $(seq 300); do [ -S "$work/sock/libvirt-sock" ] && break; sleep 0.05; done
virsh -q -c "$uri" version >/dev/null

hello() {
  python3 - "$1" <<'PY'
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX)
t = time.time()
while True:
    try:
        s.connect(sys.argv[1]); break
    except OSError:
        if time.time() - t > 10: raise
        time.sleep(0.01)
s.sendall(b'{"v":1,"type":"hello"}\n')
f = s.makefile("rb")
for line in f:
    try:
        if json.loads(line).get("type") == "hello":
            break
    except ValueError:
        pass
else:
    sys.exit("no hello")
PY
}

name=$(sed -n 's|.*<name>\(.*\)</name>.*|\1|p' "$work/bare.xml")
for i in $(seq "$RUNS"); do
  rm -f "$work/bare/scratch.img" "$work/bare/agent.sock"
  truncate -s 16G "$work/bare/scratch.img"
  mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1,nodiscard -J size=64 -L scratch \
    "$work/bare/scratch.img"
  t0=$(now_ms)
  virsh -q -c "$uri" create "$work/bare.xml" >/dev/null
  hello "$work/bare/agent.sock"
  t1=$(now_ms)
  echo $((t1 - t0))
  virsh -q -c "$uri" destroy "$name" >/dev/null 2>&1 || true
done | median >"$work/bare_ms"

v=$(cat "$work/virtmark_ms")
b=$(cat "$work/bare_ms")
ratio=$(awk -v v="$v" -v b="$b" 'BEGIN { printf "%.2f", v / b }')
# Goal: the bare start plus a private daemon's start (about 0.2 s) and the
# scratch image (0.1 s), within 30%.
goal=$(awk -v b="$b" 'BEGIN { printf "%d", (b + 300) * 1.3 }')
echo "STARTUP libvirt virtmark_ms=$v bare_ms=$b ratio=$ratio goal_ms=$goal"
