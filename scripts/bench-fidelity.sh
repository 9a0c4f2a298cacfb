#!/usr/bin/env bash
# Do virtmark's ratios mean what the reference tools' ratios mean?
#
#   scripts/bench-fidelity.sh                 # every target below that is available
#   TARGETS=ns,gvisor scripts/bench-fidelity.sh
#
# For each local target where the reference tool can run inside it, the reference's
# ratio to native next to virtmark's, in one run:
#
# | workload | reference inside the target                                        |
# | -------- | ------------------------------------------------------------------ |
# | cpu-int  | sysbench cpu --threads=1 --time=1 (events/s)                       |
# | mem-bw   | STREAM-style triad in C (bench-peers.d/stream_ref.c, gcc -O3)      |
# | fileio   | fio 64 KiB sequential write of 256 MiB with end_fsync=1 (MB/s)     |
# | dd-zero  | dd if=/dev/zero of=/dev/null bs=512, about 1 s of blocks (MB/s)    |
#
# How the reference runs inside each target (the target's own runtime, with the
# host's tools):
# - native: directly;
# - ns: `unshare --mount --pid --uts --ipc --fork --mount-proc` (virtmark's ns adds a
#   network namespace and cgroup limits, which these tools do not feel);
# - gvisor: `runsc --platform=ptrace --network=none do -force-overlay=false`: runsc
#   do's default overlay keeps every write in the sandbox's memory (fio's end_fsync
#   then reaches no disk), which is not what virtmark's gvisor target measures — its
#   scratch is a bind mount of a host directory served by the gofer, so both write
#   through gVisor to the same host file system here.
# The containers run by crun, runc and LXC and the VMs (UML, QEMU) have their own
# root file systems without these tools: they are listed as not compared.
#
# Files are written under SCRATCH (default /var/tmp), on the same file system as
# virtmark's scratch (its default, $VIRTMARK_SCRATCH, is /var/tmp too). ROUNDS
# (default 5) runs of each reference per target, alternated between targets; virtmark
# runs `virtmark run` on the same targets with ROUNDS+1 repetitions (first
# discarded). Ratios are of medians. Goal: virtmark's ratio within ±15% of the
# reference's (virtmark / reference between 0.85 and 1.15). Exits 1 when one misses.
#
# The machine must be otherwise idle for the figures to mean much: disk ratios on a
# shared virtual disk move by tens of percent between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
HERE=$PWD/scripts/bench-peers.d
ROUNDS=${ROUNDS:-5}
if [[ -z ${VIRTMARK:-} ]]; then
    nice -n 10 cargo build --release --locked --quiet
    VIRTMARK=$PWD/target/x86_64-unknown-linux-gnu/release/virtmark
fi
[[ -x $VIRTMARK ]] || { echo "bench-fidelity: $VIRTMARK is not executable" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "bench-fidelity: needs root (namespaces, gVisor)" >&2; exit 1; }
for t in sysbench:sysbench gcc:gcc fio:fio python3:python3 unshare:util-linux; do
    if ! command -v "${t%%:*}" >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${t#*:}" >/dev/null
    fi
done

T=$(mktemp -d "${SCRATCH:-/var/tmp}/bench-fidelity.XXXXXX")
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
gcc -O3 -DSTREAM_ARRAY_SIZE=10000000 -DNTIMES=30 -o "$T/stream_ref" "$HERE/stream_ref.c" -lm

# The references, as one script run inside each target: `ref.sh <tool> <dir>`. Each
# runs its tool twice in the same process tree and prints the second figure, as
# virtmark discards its first repetition: a fresh gVisor sandbox's first fio ran at
# 274-296 MB/s and the next two, in the same sandbox, at 390-544 (native: 650-1356
# then 1193-1309), so a cold reference measured the sandbox's start, not its I/O.
cat >"$T/ref.sh" <<'EOF'
#!/bin/sh
set -eu
dir=$2
once() {
    case $1 in
    cpu-int) sysbench cpu --threads=1 --time=1 run | awk '/events per second:/ { print $4 }' ;;
    mem-bw) "$dir/stream_ref" | awk '$1 == "triad" { print $2 }' ;;
    fileio)
        rm -f "$dir/fio.tmp"
        fio --name=fid --filename="$dir/fio.tmp" --rw=write --bs=64k --size=256m --ioengine=psync \
            --end_fsync=1 --fallocate=none --output-format=terse --terse-version=3 |
            awk -F';' '{ print $47 * 1024 / ($50 / 1000) / 1e6 }' # write KiB over runtime (fsync included)
        rm -f "$dir/fio.tmp"
        ;;
    dd-zero)
        # About one second of blocks: a short run sizes the real one.
        rate() { LC_ALL=C dd if=/dev/zero of=/dev/null bs=512 count="$1" 2>&1 |
            awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "copied,") s = $(i + 1); print $1 / s / 1e6 }'; }
        r=$(rate 20000)
        rate "$(awk -v r="$r" 'BEGIN { n = int(r * 1e6 / 512); print (n < 20000) ? 20000 : n }')"
        ;;
    esac
}
once "$1" >/dev/null # warm-up, discarded
once "$1"
EOF
chmod +x "$T/ref.sh"

in_target() { # in_target <target> <tool>
    case $1 in
    native) "$T/ref.sh" "$2" "$T" ;;
    ns) unshare --mount --pid --uts --ipc --fork --mount-proc "$T/ref.sh" "$2" "$T" ;;
    gvisor) (cd "$T" && runsc --platform=ptrace --network=none do -force-overlay=false "$T/ref.sh" "$2" "$T" 2>>"$T/runsc.err") ;;
    esac
}

want=${TARGETS:-ns,gvisor}
targets=(native)
for t in ${want//,/ }; do
    case $t in
    ns) targets+=(ns) ;;
    gvisor) command -v runsc >/dev/null && targets+=(gvisor) || echo "# gvisor: runsc is not installed, not compared" ;;
    *) echo "# $t: the reference tools cannot run inside it (own root file system without them), not compared" ;;
    esac
done
workloads=(cpu-int mem-bw fileio dd-zero)
echo "# bench-fidelity: targets ${targets[*]}, $ROUNDS rounds, files in $T, load $(cut -d' ' -f1-3 /proc/loadavg)"

# --- references ---
declare -A ref=()
for ((r = 1; r <= ROUNDS; r++)); do
    for w in "${workloads[@]}"; do
        for t in "${targets[@]}"; do
            sync
            v=$(in_target "$t" "$w") || true
            if [[ -z $v ]]; then
                echo "bench-fidelity: $w gave no figure in $t" >&2
                [[ -s $T/runsc.err ]] && tail -5 "$T/runsc.err" >&2
                exit 1
            fi
            ref[$t.$w]+="$v "
            echo "# round $r: $w in $t: $v" >&2
        done
    done
done

# --- virtmark, same targets ---
tl=$(IFS=,; echo "${targets[*]}")
wl=$(IFS=,; echo "${workloads[*]}")
VIRTMARK_SCRATCH=${SCRATCH:-/var/tmp} "$VIRTMARK" run -t "$tl" -w "$wl" --reps $((ROUNDS + 1)) --discard 1 \
    --out "$T/runs" --db "$T/runs.db" >"$T/run.out" 2>&1 || { cat "$T/run.out" >&2; exit 1; }
results=$(ls "$T"/runs/*/results.json)

refs=$T/refs
: >"$refs"
for k in "${!ref[@]}"; do echo "$k ${ref[$k]}" >>"$refs"; done
python3 - "$results" "$refs" "${targets[*]}" "${workloads[*]}" <<'PY'
import json, statistics, sys
run = json.load(open(sys.argv[1]))
refs = {}
for line in open(sys.argv[2]):
    k, *vals = line.split()
    refs[k] = [float(v) for v in vals]
targets, workloads = sys.argv[3].split(), sys.argv[4].split()
vm = {}
for s in run["samples"]:
    if s["discarded"]:
        continue
    vm.setdefault(f'{s["target"]}.{s["workload"]}', []).append(s["metrics"][0]["value"])
med = statistics.median
print(f"\n{'target':8} {'workload':9} {'reference ratio':>16} {'virtmark ratio':>15} {'vm/ref':>7}  goal 0.85-1.15")
fail = False
for t in targets[1:]:
    for w in workloads:
        try:
            rr = med(refs[f"{t}.{w}"]) / med(refs[f"native.{w}"])
            vr = med(vm[f"{t}.{w}"]) / med(vm[f"native.{w}"])
        except (KeyError, statistics.StatisticsError, ZeroDivisionError):
            print(f"{t:8} {w:9} {'missing samples':>16}")
            fail = True
            continue
        q = vr / rr
        ok = 0.85 <= q <= 1.15
        fail |= not ok
        print(f"{t:8} {w:9} {rr:16.3f} {vr:15.3f} {q:7.3f}  {'ok' if ok else 'MISSED'}")
sys.exit(1 if fail else 0)
PY
