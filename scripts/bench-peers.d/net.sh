#!/usr/bin/env bash
# Compare virtmark's network workloads with reference tools over loopback:
#   net-stream vs iperf3 single stream (receiver figure), same duration;
#   net-rr     vs a C ping-pong (rr-pingpong.c, netperf TCP_RR's shape), same pinning;
#   rsync-tree vs `rsync -a` (local) of the very tree the peer serves, fetched once
#              into a temporary directory; compared as MB/s (higher is better).
# Runs are interleaved in ABBA order (virtmark first in odd rounds, the reference
# first in even ones) so that drifting load from other processes hits both alike;
# ROUNDS of each, medians compared.
# Env: VIRTMARK (binary), NET_BENCH_SECS (default 2), NET_BENCH_ROUNDS (default 7),
#      NET_RR_PIN (CPU for both RR ends; default: the first CPU we may use).
set -euo pipefail

VIRTMARK=${VIRTMARK:-target/x86_64-unknown-linux-gnu/release/virtmark}
SECS=${NET_BENCH_SECS:-2}
ROUNDS=${NET_BENCH_ROUNDS:-7}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

need() { # need <command> <debian package>
    if ! command -v "$1" >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
            echo "# installing $2"
            DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null
        else
            echo "# $1 is missing (apt-get install $2)" >&2
            exit 1
        fi
    fi
}
need iperf3 iperf3
need gcc gcc
need python3 python3
need rsync rsync
need /usr/bin/time time
[ -x "$VIRTMARK" ] || { echo "# $VIRTMARK not found (cargo build --release)" >&2; exit 1; }

T=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_line <file>: wait until the server wrote its "listening host:port" line.
wait_line() {
    for _ in $(seq 100); do
        if grep -q '^listening ' "$1" 2>/dev/null; then
            sed -n 's/^listening //p' "$1" | head -n1
            return
        fi
        sleep 0.05
    done
    echo "# no listening line in $1" >&2
    exit 1
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

# virtmark_metric <workload> <metric index>: run through the agent, print the value.
virtmark_metric() {
    printf '{"v":1,"type":"run_workload","id":1,"workload":"%s","duration":"%ss","peer":"%s"}\n' \
        "$1" "$SECS" "$PEER" | /usr/bin/time -o "$T/cpu" -f "%U %S" "$VIRTMARK" agent >"$T/agent.out"
    python3 - "$T/agent.out" "$2" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("type") == "sample":
        print(m["metrics"][int(sys.argv[2])]["value"]); sys.exit(0)
    if m.get("type") == "error":
        sys.exit("virtmark error: " + m["message"])
sys.exit("no sample")
PY
}

# CPU seconds (user + system) a server process has used so far.
server_cpu() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
# efficiency <rate> <server pid> <server cpu before> [<divisor>]: work done (rate x
# duration / divisor) per CPU-second of client ($T/cpu) and server together, a
# figure that other load on the machine barely moves.
efficiency() {
    python3 -c 'import sys; r,a,b,d=map(float,sys.argv[1:5]); u,s=map(float,open(sys.argv[5]).read().split()[-2:]); print(r*float(sys.argv[6])/d/(u+s+b-a))' \
        "$1" "$3" "$(server_cpu "$2")" "${4:-1000}" "$T/cpu" "$SECS"
}

ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1])/float(sys.argv[2]):.3f}")' "$1" "$2"; }

# --- servers ---
"$VIRTMARK" serve --listen 127.0.0.1:0 >"$T/peer.out" 2>"$T/peer.err" &
PEER_PID=$!
PIDS+=($!)
PEER=$(wait_line "$T/peer.out")
IPORT=$(free_port)
iperf3 -s -B 127.0.0.1 -p "$IPORT" >"$T/iperf3-server.out" 2>&1 &
IPERF_PID=$!
PIDS+=($!)
sleep 0.3
gcc -O2 -o "$T/rr-pingpong" "$HERE/rr-pingpong.c"
PIN=${NET_RR_PIN:-$(python3 -c 'import os; print(min(os.sched_getaffinity(0)))')}
"$T/rr-pingpong" server "$PIN" >"$T/rr.out" &
RR_PID=$!
PIDS+=($!)
RRPORT=$(wait_line "$T/rr.out" | sed 's/.*://')
echo "# peer $PEER, iperf3 127.0.0.1:$IPORT, rr-pingpong 127.0.0.1:$RRPORT; ${SECS}s x $ROUNDS rounds; RR pinned to cpu $PIN"

# --- net-stream vs iperf3 ---
vs=(); is=(); ve=(); ie=()
iperf() {
    /usr/bin/time -o "$T/cpu" -f "%U %S" iperf3 -c 127.0.0.1 -p "$IPORT" -t "$SECS" -J | python3 -c \
        'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6)'
}
run_v() { c0=$(server_cpu "$PEER_PID"); v=$(virtmark_metric net-stream 0); ve+=("$(efficiency "$v" "$PEER_PID" "$c0")"); }
run_i() { c0=$(server_cpu "$IPERF_PID"); i=$(iperf); ie+=("$(efficiency "$i" "$IPERF_PID" "$c0")"); }
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then run_v; run_i; else run_i; run_v; fi
    echo "# round $r: net-stream $v Mbit/s (${ve[-1]} Gbit/CPU-s), iperf3 $i Mbit/s (${ie[-1]} Gbit/CPU-s)"
    vs+=("$v"); is+=("$i")
done
V=$(median "${vs[@]}"); I=$(median "${is[@]}")
VE=$(median "${ve[@]}"); IE=$(median "${ie[@]}")
echo "# net-stream CPU efficiency (median): virtmark $VE, iperf3 $IE Gbit per CPU-second, ratio $(ratio "$VE" "$IE")"
echo "PEER net-stream virtmark=$V reference=$I unit=Mbit/s ratio=$(ratio "$V" "$I") goal=1.0"

# --- net-rr vs C ping-pong, same pinning ---
export VIRTMARK_NET_RR_PIN="$PIN,$PIN"
vs=(); cs=(); ve=(); ce=()
run_v() { c0=$(server_cpu "$PEER_PID"); v=$(virtmark_metric net-rr 0); ve+=("$(efficiency "$v" "$PEER_PID" "$c0" 1)"); }
run_c() {
    c0=$(server_cpu "$RR_PID")
    c=$(/usr/bin/time -o "$T/cpu" -f "%U %S" "$T/rr-pingpong" client "$RRPORT" "$PIN" "$SECS")
    ce+=("$(efficiency "$c" "$RR_PID" "$c0" 1)")
}
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then run_v; run_c; else run_c; run_v; fi
    echo "# round $r: net-rr $v tx/s (${ve[-1]} tx/CPU-s), rr-pingpong $c tx/s (${ce[-1]} tx/CPU-s)"
    vs+=("$v"); cs+=("$c")
done
VE=$(median "${ve[@]}"); CE=$(median "${ce[@]}")
echo "# net-rr CPU efficiency (median): virtmark $VE, rr-pingpong $CE transactions per CPU-second, ratio $(ratio "$VE" "$CE")"
V=$(median "${vs[@]}"); C=$(median "${cs[@]}")
echo "PEER net-rr virtmark=$V reference=$C unit=tx/s ratio=$(ratio "$V" "$C") goal=0.95"

# --- rsync-tree vs rsync -a of the same tree ---
# Fetch the quick tree from the peer once (VMPEER1 TREE, frames as in src/peer/mod.rs).
python3 - "$PEER" "$T/src" <<'PY'
import os, socket, struct, sys, zlib
host, port = sys.argv[1].rsplit(":", 1)
root = sys.argv[2]
os.makedirs(root)
s = socket.create_connection((host, int(port)))
s.sendall(b"VMPEER1 TREE files=8000 bytes=100000000 seed=1\n")
f = s.makefile("rb", buffering=1 << 20)
ok = f.readline()
assert ok.startswith(b"OK"), ok
while True:
    kind, plen, mode, size, crc = struct.unpack("<BHIQI", f.read(19))
    if kind == ord("E"):
        break
    path = os.path.join(root, f.read(plen).decode())
    if kind == ord("D"):
        os.mkdir(path, mode)
    else:
        data = f.read(size)
        assert zlib.crc32(data) == crc, path
        with open(path, "wb") as out:
            out.write(data)
        os.chmod(path, mode)
PY
sync
vs=(); rs=()
rsync_rate() {
    rm -rf "$T/dst"
    python3 - "$T/src" "$T/dst" <<'PY'
import os, subprocess, sys, time
src, dst = sys.argv[1], sys.argv[2]
total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(src) for f in fs)
t = time.monotonic()
subprocess.run(["rsync", "-a", src + "/", dst + "/"], check=True)
print(total / (time.monotonic() - t) / 1e6)
PY
    rm -rf "$T/dst"
}
for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        v=$(virtmark_metric rsync-tree 2); x=$(rsync_rate)
    else
        x=$(rsync_rate); v=$(virtmark_metric rsync-tree 2)
    fi
    echo "# round $r: rsync-tree $v MB/s, rsync -a $x MB/s"
    vs+=("$v"); rs+=("$x")
done
V=$(median "${vs[@]}"); X=$(median "${rs[@]}")
echo "PEER rsync-tree virtmark=$V reference=$X unit=MB/s ratio=$(ratio "$V" "$X") goal=1.0"
