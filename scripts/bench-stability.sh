#!/usr/bin/env bash
# How steady are virtmark's workloads next to the reference tools they stand for?
#
#   scripts/bench-stability.sh                      # every pair below
#   scripts/bench-stability.sh cpu-fp mem-bw        # some of them
#   scripts/bench-stability.sh cpu-fp:matrixprod    # a pair with a second reference
#
# For each workload, RUNS (default 10) executions of virtmark's workload (through
# `virtmark agent`, quick preset sizes, 1 s like the references, where `virtmark run`
# gives cpu-int, cpu-fp, mem-bw, dd-zero and dbench 200 ms samples and pairs them) and
# RUNS executions of the reference tool with the same work, alternated (virtmark first
# in odd rounds, the reference first in even ones) so that load from other processes
# falls on both alike, after one warm-up round of both that is discarded. Prints the coefficient of variation (sample standard deviation
# / mean) of each, and the goal of issue 10: virtmark's CoV at most 1.5 x the
# reference's, and at most 2% for cpu-int, cpu-fp, mem-bw and compress, with a 90%
# bootstrap interval of the ratio of the two CoVs (each tool's runs resampled: ten
# runs give a CoV to about a quarter of its value, so two tools equally steady show
# a ratio above 1.5 about one pair in eight). Exits 1 when a goal is missed.
#
# | workload   | reference                                                         |
# | ---------- | ----------------------------------------------------------------- |
# | cpu-int    | sysbench cpu --threads=1 --time=1 (events/s)                      |
# | cpu-fp     | sysbench cpu --threads=1 --time=1 (events/s)                      |
# | cpu-fp:matrixprod | stress-ng --cpu 1 --cpu-method matrixprod -t 1 (bogo ops/s) |
# | mem-bw     | STREAM-style triad in C (bench-peers.d/stream_ref.c, gcc -O3)     |
# | compress   | bzip2 -9 of the same corpus (wall time)                           |
# | fileio     | fio 64 KiB sequential write of 64 MiB, end_fsync=1                |
# | dd-zero    | dd if=/dev/zero of=/dev/null bs=512                               |
# | dd-copy    | dd bs=512 conv=fsync copy of a 32 MiB file                         |
# | net-stream | iperf3 -c 127.0.0.1 -t 1 (receiver figure)                         |
# | net-rr     | the C ping-pong (bench-peers.d/rr-pingpong.c), same pinning       |
# | rsync-tree | rsync -a of the same generated tree (8,000 files, 100 MB)         |
# | rsync-file | rsync -a of a 128 MiB file                                        |
#
# sysbench's prime search is integer division; cpu-fp's variation comes from its
# neural-net and LU kernels (floating-point multiply-adds over small matrices), so
# `cpu-fp:matrixprod` also sets it next to a floating-point matrix product of the
# same kind, the reference a host whose FP units other tenants share moves alike.
#
# Environment: VIRTMARK (binary; default: build and use the release build), RUNS
# (default 10), SCRATCH (directory for files, default /var/tmp: a real file system).
set -euo pipefail
cd "$(dirname "$0")/.."
HERE=$PWD/scripts/bench-peers.d
RUNS=${RUNS:-10}
if [[ -z ${VIRTMARK:-} ]]; then
    nice -n 10 cargo build --release --locked --quiet
    VIRTMARK=$PWD/target/x86_64-unknown-linux-gnu/release/virtmark
fi
[[ -x $VIRTMARK ]] || { echo "bench-stability: $VIRTMARK is not executable" >&2; exit 1; }

need() { # need <command> <debian package>
    if ! command -v "$1" >/dev/null 2>&1; then
        if [[ $(id -u) -eq 0 ]]; then
            echo "# installing $2" >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y "$2" >/dev/null
        else
            echo "bench-stability: $1 is missing (apt-get install $2)" >&2
            exit 1
        fi
    fi
}
need sysbench sysbench
need gcc gcc
need bzip2 bzip2
need fio fio
need iperf3 iperf3
need rsync rsync
need python3 python3
need stress-ng stress-ng

T=$(mktemp -d "${SCRATCH:-/var/tmp}/bench-stability.XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_line() { # wait_line <file>: the server's "listening host:port"
    for _ in $(seq 100); do
        if grep -q '^listening ' "$1" 2>/dev/null; then
            sed -n 's/^listening //p' "$1" | head -n1
            return
        fi
        sleep 0.05
    done
    echo "bench-stability: no listening line in $1" >&2
    exit 1
}

# One agent per pair, kept for all of the pair's executions as `virtmark run` keeps
# its agents: an agent removes its samples' small files when it ends, and on an
# ext4 without a journal every file created in the next minute or so pays for them
# (docs/workloads.md, "Steady samples"). With a new agent per execution (and
# rsync's copy removed after each), virtmark's rsync-tree rose from 0.07 to 0.47 s
# over ten rounds, and rsync's from 0.11 to 0.35 s.
start_agent() {
    rm -f "$T/agent.in" "$T/agent.out"
    mkfifo "$T/agent.in" "$T/agent.out"
    "$VIRTMARK" agent --scratch "$T/scratch" <"$T/agent.in" >"$T/agent.out" 2>>"$T/agent.err" &
    AGENT_PID=$!
    PIDS+=("$AGENT_PID")
    exec {AGENT_IN}>"$T/agent.in" {AGENT_OUT}<"$T/agent.out"
}
stop_agent() {
    exec {AGENT_IN}>&-
    wait "$AGENT_PID" || true
    exec {AGENT_OUT}<&-
}

# vm <workload> <metric> [params JSON]: one execution through the pair's agent, the metric.
vm() {
    local params=${3:-"{}"} line
    # A new id for every request: the agent names each sample's scratch after it.
    printf '{"v":1,"type":"run_workload","id":%s,"workload":"%s","preset":"quick","duration":"1s","peer":"%s","params":%s}\n' \
        "$(date +%s%N)" "$1" "$PEER" "$params" >&"$AGENT_IN"
    while IFS= read -r line <&"$AGENT_OUT"; do
        case $line in
        *'"type":"sample"'*)
            python3 -c '
import json, sys
m = json.loads(sys.stdin.read())
print(next(x["value"] for x in m["metrics"] if x["name"] == sys.argv[1]))
' "$2" <<<"$line"
            return
            ;;
        *'"type":"error"'*)
            echo "virtmark: $line" >&2
            return 1
            ;;
        esac
    done
    echo "virtmark: the agent ended without a sample (see $T/agent.err)" >&2
    return 1
}

# --- references ---
ref_sysbench() {
    sysbench cpu --threads=1 --time=1 run | awk '/events per second:/ { print $4 }'
}
ref_matrixprod() {
    stress-ng --cpu 1 --cpu-method matrixprod -t 1 --metrics-brief 2>&1 |
        awk '$4 == "cpu" { v = $9 } END { if (v == "") exit 1; print v }'
}
ref_stream() { "$T/stream_ref" | awk '$1 == "triad" { print $2 }'; }
ref_bzip2() {
    local s e
    s=$(date +%s.%N)
    bzip2 -9 -c "$T/corpus" >"$T/corpus.bz2"
    e=$(date +%s.%N)
    rm -f "$T/corpus.bz2"
    python3 -c "print($e - $s)"
}
ref_fio() {
    rm -f "$T/fio.tmp"
    fio --name=stab --filename="$T/fio.tmp" --rw=write --bs=64k --size=64m --ioengine=psync \
        --end_fsync=1 --fallocate=none --output-format=json |
        python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]["write"]; print(j["io_bytes"]/(j["runtime"]/1000)/1e6)'
    rm -f "$T/fio.tmp"
}
dd_rate() { # dd_rate <dd args...>: MB/s from dd's own summary line
    LC_ALL=C dd "$@" 2>&1 >/dev/null | python3 -c '
import re, sys
for line in sys.stdin:
    m = re.match(r"(\d+) bytes .* copied, ([0-9.e-]+) s", line)
    if m:
        print(int(m.group(1)) / float(m.group(2)) / 1e6)
        sys.exit(0)
sys.exit("dd: no summary line")'
}
ref_dd_zero() { dd_rate if=/dev/zero of=/dev/null bs=512 count=1500000; }
ref_dd_copy() {
    local r
    r=$(dd_rate if="$T/dd.src" of="$T/dd.dst" bs=512 conv=fsync)
    rm -f "$T/dd.dst"
    echo "$r"
}
ref_iperf3() {
    iperf3 -c 127.0.0.1 -p "$IPORT" -t 1 -J |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6)'
}
ref_rr() { "$T/rr-pingpong" client "$RRPORT" "$PIN" 1; }
ref_rsync() { # ref_rsync <src> : seconds of rsync -a into a fresh directory
    # Kept until the pair ends, as the agent keeps its samples' files.
    local dst
    dst=$(mktemp -d "$T/rsync.dst.XXXXXX")
    # Untimed, as the agent syncs the scratch file system before each window:
    # rsync fsyncs nothing, so without it each copy would pay for the writeback of
    # the ones before it.
    sync -f "$T"
    python3 - "$1" "$dst/copy" <<'PY'
import subprocess, sys, time
t = time.monotonic()
subprocess.run(["rsync", "-a", sys.argv[1], sys.argv[2]], check=True)
print(time.monotonic() - t)
PY
}

# --- set-up shared by the pairs ---
mkdir -p "$T/scratch"
"$VIRTMARK" serve --listen 127.0.0.1:0 >"$T/peer.out" 2>"$T/peer.err" &
PIDS+=($!)
PEER=$(wait_line "$T/peer.out")
PIN=$(python3 -c 'import os; print(min(os.sched_getaffinity(0)))')
export VIRTMARK_NET_RR_PIN="$PIN,$PIN"

setup_pair() {
    case $1 in
    mem-bw) gcc -O3 -DSTREAM_ARRAY_SIZE=10000000 -DNTIMES=12 -o "$T/stream_ref" "$HERE/stream_ref.c" -lm ;;
    compress)
        echo "# writing the compress corpus (debug test build)" >&2
        VIRTMARK_DUMP_CORPUS="$T/corpus" nice -n 10 cargo test --quiet --lib \
            workloads::compress::tests::dump_corpus -- --ignored --exact >/dev/null 2>&1
        [[ -s $T/corpus ]] || { echo "bench-stability: the corpus was not written" >&2; exit 1; }
        ;;
    dd-copy) head -c $((32 << 20)) /dev/urandom >"$T/dd.src"; sync ;;
    net-stream)
        IPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        iperf3 -s -B 127.0.0.1 -p "$IPORT" >"$T/iperf3.out" 2>&1 &
        PIDS+=($!)
        sleep 0.3
        ;;
    net-rr)
        gcc -O2 -o "$T/rr-pingpong" "$HERE/rr-pingpong.c"
        "$T/rr-pingpong" server "$PIN" >"$T/rr.out" &
        PIDS+=($!)
        RRPORT=$(wait_line "$T/rr.out" | sed 's/.*://')
        ;;
    rsync-tree)
        # The very tree the peer serves to rsync-tree (frames as in src/peer/mod.rs).
        python3 - "$PEER" "$T/tree" <<'PY'
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
        ;;
    rsync-file) head -c $((128 << 20)) /dev/urandom >"$T/rsync.file"; sync ;;
    esac
}

# pair <workload> -> "name|virtmark values|reference name|reference values"
pair_spec() {
    case $1 in
    cpu-int) echo "index|sysbench cpu|ref_sysbench|{}" ;;
    cpu-fp) echo "index|sysbench cpu|ref_sysbench|{}" ;;
    cpu-fp:matrixprod) echo "index|stress-ng matrixprod|ref_matrixprod|{}" ;;
    mem-bw) echo "triad|STREAM triad (C, gcc -O3)|ref_stream|{\"size\":\"80000000\",\"threads\":1}" ;;
    compress) echo "time|bzip2 -9|ref_bzip2|{}" ;;
    fileio) echo "write|fio seq write + fsync|ref_fio|{\"size\":\"64MiB\",\"block-size\":\"64KiB\",\"fsync\":true}" ;;
    dd-zero) echo "throughput|dd /dev/zero → /dev/null|ref_dd_zero|{}" ;;
    dd-copy) echo "throughput|dd conv=fsync|ref_dd_copy|{\"size\":\"32MiB\"}" ;;
    net-stream) echo "throughput|iperf3|ref_iperf3|{}" ;;
    net-rr) echo "transactions|C ping-pong|ref_rr|{}" ;;
    rsync-tree) echo "time|rsync -a|ref_rsync \"$T/tree/\"|{}" ;;
    rsync-file) echo "time|rsync -a|ref_rsync \"$T/rsync.file\"|{}" ;;
    *) echo "bench-stability: no reference for $1" >&2; exit 1 ;;
    esac
}

pairs=("$@")
if [[ ${#pairs[@]} -eq 0 ]]; then
    pairs=(cpu-int cpu-fp cpu-fp:matrixprod mem-bw compress fileio dd-zero dd-copy net-stream net-rr rsync-tree rsync-file)
fi
echo "# bench-stability: $RUNS alternated runs per pair, scratch $T, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
results=$T/results
: >"$results"
for key in "${pairs[@]}"; do
    # A pair is a workload, or workload:reference for a second reference.
    w=${key%%:*}
    IFS='|' read -r metric refname refcmd params <<<"$(pair_spec "$key")"
    setup_pair "$w"
    start_agent
    vs=() rs=()
    # A warm-up round, discarded, as virtmark's runs discard their first
    # repetition: the first execution after other work runs on cold memory
    # (fileio: 952 MB/s, then 1,338-1,432 in the nine runs after it).
    vm "$w" "$metric" "$params" >/dev/null
    eval "$refcmd" >/dev/null
    for ((r = 1; r <= RUNS; r++)); do
        if ((r % 2)); then
            v=$(vm "$w" "$metric" "$params"); x=$(eval "$refcmd")
        else
            x=$(eval "$refcmd"); v=$(vm "$w" "$metric" "$params")
        fi
        vs+=("$v"); rs+=("$x")
        echo "# $key round $r: virtmark $metric $v, $refname $x" >&2
    done
    echo "$key|$refname|${vs[*]}|${rs[*]}" >>"$results"
    stop_agent
    rm -rf "$T"/rsync.dst.*
done

python3 - "$results" <<'PY'
import random, statistics, sys
strict = {"cpu-int", "cpu-fp", "mem-bw", "compress"}
def cov(xs):
    return 100 * statistics.stdev(xs) / statistics.mean(xs)
def ratio_interval(v, r, draws=4000, seed=1):
    """90% bootstrap interval of cov(v) / cov(r): each tool's runs resampled apart."""
    rng = random.Random(seed)
    out = []
    for _ in range(draws):
        a = [rng.choice(v) for _ in v]
        b = [rng.choice(r) for _ in r]
        cb = cov(b)
        if cb > 0:
            out.append(cov(a) / cb)
    if not out:
        return float("nan"), float("nan")
    out.sort()
    return out[int(0.05 * len(out))], out[int(0.95 * len(out)) - 1]
print()
print(f"{'workload':17} {'virtmark CoV':>12} {'reference':28} {'ref CoV':>8} {'ratio':>6} {'[90%]':>13}  goal")
fail = False
for line in open(sys.argv[1]):
    w, ref, vs, rs = line.rstrip("\n").split("|")
    v = [float(x) for x in vs.split()]
    r = [float(x) for x in rs.split()]
    cv, cr = cov(v), cov(r)
    # Issue 10's goals: at most 1.5 x the reference's CoV, and at most 2% for the
    # CPU, memory and compression workloads.
    goal = min(1.5 * cr, 2.0) if w.split(":")[0] in strict else 1.5 * cr
    ok = cv <= goal
    fail |= not ok
    ratio = f"{cv / cr:6.2f}" if cr > 0 else "   inf"
    lo, hi = ratio_interval(v, r)
    verdict = "ok" if ok else "MISSED"
    if not ok and goal == 1.5 * cr and lo <= 1.5:
        # A miss the runs cannot tell from noise.
        verdict += " (1.5 inside the interval)"
    print(f"{w:17} {cv:11.2f}% {ref:28} {cr:7.2f}% {ratio} [{lo:5.2f}-{hi:5.2f}]  <= {goal:.2f}% {verdict}")
print()
print("A CoV from a few runs is itself uncertain: the interval resamples each tool's runs")
print("(bootstrap, 4,000 draws). A ratio above 1.5 whose interval holds 1.5 is a miss these")
print("runs cannot tell from noise; RUNS=30 narrows it.")
sys.exit(1 if fail else 0)
PY
