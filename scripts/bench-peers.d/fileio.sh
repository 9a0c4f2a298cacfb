#!/usr/bin/env bash
# Peer check for `fileio` (IOZone -i 0 -i 1 -r 64k -e): sequential write and read
# against fio with the same file size, record size, buffered I/O and fsync at the end.
#
# Fairness:
# - both write a new file (fio with --fallocate=none: iozone does not preallocate,
#   and fio's default layout step would fallocate the file outside its timing);
# - both include the final fsync in the write time (fio --end_fsync=1 counts it in
#   its runtime, iozone -e in its);
# - both read a file they have just written, still in the page cache (fio
#   --invalidate=0; by default fio drops the file's cache before a job);
# - before every measurement the caches are flushed (sync) and, as root, dropped;
#   runs alternate which side goes first; the median of RUNS runs is compared.
#
# - both write incompressible data (fio's default random buffers; virtmark's random
#   records stamped per 4 KiB block): a host that compresses or deduplicates the
#   virtual disk must treat both alike.
#
# The default size is 1 GiB rather than the quick preset's 256 MiB: a cached 256 MiB
# read lasts ~60 ms, too short to measure on a busy machine.
#
# Environment: VIRTMARK (binary, default target/x86_64-unknown-linux-gnu/release/virtmark), RUNS (default 7),
# FILEIO_SIZE (bytes, default 1073741824), FILEIO_DIR (default /var/tmp),
# FILEIO_DIRECT=1 adds O_DIRECT checks (fio --direct=1).
set -euo pipefail

VIRTMARK=${VIRTMARK:-target/x86_64-unknown-linux-gnu/release/virtmark}
RUNS=${RUNS:-7}
SIZE=${FILEIO_SIZE:-1073741824}
BS=65536
GOAL=0.95

if [[ ! -x $VIRTMARK ]]; then
    echo "# $VIRTMARK not found: build it with cargo build --release" >&2
    exit 1
fi
if ! command -v fio >/dev/null; then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get install -y fio >/dev/null
    else
        echo "# fio is missing (apt-get install fio)" >&2
        exit 1
    fi
fi

DIR=$(mktemp -d "${FILEIO_DIR:-/var/tmp}/fileio-peer.XXXXXX")
trap 'rm -rf "$DIR"' EXIT

settle() {
    sync
    if [[ -w /proc/sys/vm/drop_caches ]]; then
        echo 3 >/proc/sys/vm/drop_caches
    fi
}

# ours DIRECT -> "write_MBps read_MBps"
ours() {
    local direct=$1
    printf '{"v":1,"type":"run_workload","id":1,"workload":"fileio","params":{"size":%s,"block-size":%s,"fsync":true,"direct":%s}}\n' \
        "$SIZE" "$BS" "$direct" |
        "$VIRTMARK" agent --scratch "$DIR" |
        python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("type") == "sample":
        v = {x["name"]: x["value"] for x in m["metrics"]}
        print(v["write"], v["read"])
        sys.exit(0)
    if m.get("type") == "error":
        sys.exit("virtmark: " + m.get("message", line))
sys.exit("virtmark: no sample")
'
}

# fio_bw RW DIRECT -> MB/s (1e6 B/s)
fio_bw() {
    local rw=$1 direct=$2
    fio --name=peer --filename="$DIR/fio.tmp" --rw="$rw" --bs=$BS --size="$SIZE" \
        --ioengine=psync --direct="$direct" --end_fsync=$([[ $rw == write ]] && echo 1 || echo 0) \
        --fallocate=none --invalidate=0 --output-format=json |
        python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
rw = sys.argv[1]
print(j[rw]["io_bytes"] / (j[rw]["runtime"] / 1000.0) / 1e6)
' "$rw"
}

theirs() {
    local direct=$1 w r
    rm -f "$DIR/fio.tmp"
    w=$(fio_bw write "$direct")
    r=$(fio_bw read "$direct")
    rm -f "$DIR/fio.tmp"
    echo "$w $r"
}

median() { python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

compare() {
    local label=$1 direct=$2 fio_direct=$3
    local ow=() orr=() tw=() tr=() o t i
    for ((i = 0; i < RUNS; i++)); do
        if ((i % 2 == 0)); then
            settle; o=$(ours "$direct")
            settle; t=$(theirs "$fio_direct")
        else
            settle; t=$(theirs "$fio_direct")
            settle; o=$(ours "$direct")
        fi
        echo "# run $i $label: virtmark write/read $o, fio write/read $t"
        ow+=("${o% *}"); orr+=("${o#* }"); tw+=("${t% *}"); tr+=("${t#* }")
    done
    local mw mr fw fr
    mw=$(median "${ow[@]}"); mr=$(median "${orr[@]}")
    fw=$(median "${tw[@]}"); fr=$(median "${tr[@]}")
    python3 - "$label" "$mw" "$fw" "$mr" "$fr" "$GOAL" <<'PY'
import sys
label, mw, fw, mr, fr, goal = sys.argv[1], *map(float, sys.argv[2:])
for check, v, r in ((f"{label}-write", mw, fw), (f"{label}-read", mr, fr)):
    print(f"PEER {check} virtmark={v:.1f} reference={r:.1f} unit=MB/s ratio={v / r:.3f} goal={goal}")
PY
}

echo "# fileio vs fio: size $SIZE B, bs $BS B, psync, fsync at end, $RUNS runs, dir $DIR"
compare fileio false 0
if [[ ${FILEIO_DIRECT:-0} == 1 ]]; then
    compare fileio-direct true 1
fi
