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
# | fileio   | fio 64 KiB sequential write of 64 MiB with end_fsync=1 (MB/s)      |
# | dd-zero  | dd if=/dev/zero of=/dev/null bs=512, about 1 s of blocks (MB/s)    |
# | net-stream | netperf -t TCP_STREAM -l 1 -- -m 524288 (Mbit/s; ns only)        |
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
# - oci:runc, oci:crun: `<runtime> run` of a bundle whose read-only root holds the
#   host's /usr (and /etc) bound in, as virtmark's OCI targets bind the host's
#   toolchain, with new pid, ipc, uts, mount and network namespaces and a 2 GiB
#   memory limit (virtmark's default for every target); the files directory is
#   bound read-write at /work;
# - lxc: `lxc-execute` of the same root, binds and limit.
# - net-stream, native and ns only: netperf, the tool net-stream stands for, with
#   net-stream's 512 KiB writes, against a netserver. Native's netserver is on
#   loopback, as virtmark's peer is for native. For ns, the script builds what
#   virtmark's ns target builds: the client in a network namespace of its own,
#   joined by a veth pair to a second one where the netserver runs (10.254.77.1 and
#   .2, both made here and removed at exit), and runs it there under the `unshare`
#   above. The other targets' networks are made by their runtimes (docker's
#   bridge, gVisor's netstack, ...), which the script does not rebuild: their
#   net-stream is not compared. netperf is in Debian's non-free component.
#   iperf3 is not the reference here: on this topology `iperf3 -l 512K` read 0.56-0.61
#   of loopback, where netperf with 512 KiB messages read 0.79, a C sender and
#   receiver (blocking writes; non-blocking reads after select, as iperf3's
#   server) 0.74-0.75 and virtmark 0.71-0.72 (12-16 alternated 1 s rounds each,
#   2026-12-02, docs/workloads.md).
# The VMs (UML, QEMU) have their own kernels and root file systems, reached only
# through the agent, which runs no other program: they are listed as not compared.
#
# Files are written under SCRATCH (default /var/tmp), on the same file system as
# virtmark's scratch (its default, $VIRTMARK_SCRATCH, is /var/tmp too). ROUNDS
# (default 5) runs of each reference per target, alternated between targets; virtmark
# runs `virtmark run` on the same targets with ROUNDS+1 repetitions (first
# discarded). virtmark's ratio is the one it reports (results.json's ratio_to_native:
# each target sample paired with native's next to it). The reference's is estimated
# the same way: each round's sample in the target paired with native's of the same
# round, the Hodges–Lehmann estimate of their log-ratios. Goal: virtmark's ratio within
# ±15% of the reference's (virtmark / reference between 0.85 and 1.15). Exits 1 when
# one misses.
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
for t in sysbench:sysbench gcc:gcc fio:fio python3:python3 unshare:util-linux ip:iproute2; do
    if ! command -v "${t%%:*}" >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${t#*:}" >/dev/null
    fi
done

if ! command -v netperf >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y netperf >/dev/null 2>&1 || {
        echo "bench-fidelity: netperf is missing and could not be installed: it is in Debian's non-free component (add non-free to apt's sources, then apt-get install netperf)" >&2
        exit 1
    }
fi

T=$(mktemp -d "${SCRATCH:-/var/tmp}/bench-fidelity.XXXXXX")
# crun's memory cgroup on a hybrid host (see oci_run), removed at exit.
CRUN_CG=/sys/fs/cgroup/memory$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)/bench-fidelity-$$
CRUN_CG=${CRUN_CG//\/\//\/}
# net-stream's namespaces (client, server) and netservers, removed at exit.
NS_C=bench-fidelity-$$-c NS_S=bench-fidelity-$$-s NS_C_IP=10.254.77.1 NS_S_IP=10.254.77.2
NETSERVERS=()
cleanup() {
    for p in "${NETSERVERS[@]}"; do kill "$p" 2>/dev/null || true; done
    for n in "$NS_C" "$NS_S"; do [[ -e /run/netns/$n ]] && ip netns del "$n"; done
    rm -rf "$T"
    [[ -d $CRUN_CG ]] && rmdir "$CRUN_CG"
    return 0
}
trap cleanup EXIT
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
        fio --name=fid --filename="$dir/fio.tmp" --rw=write --bs=64k --size=64m --ioengine=psync \
            --end_fsync=1 --fallocate=none --output-format=terse --terse-version=3 |
            awk -F';' '{ print $47 * 1024 / ($50 / 1000) / 1e6 }' # write KiB over runtime (fsync included)
        rm -f "$dir/fio.tmp"
        ;;
    net-stream)
        netperf -P 0 -H "$NP_HOST" -p "$NP_PORT" -t TCP_STREAM -l 1 -- -m 524288 |
            awk 'NF { v = $NF } END { if (v == "") exit 1; print v }' # 10^6 bit/s
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

# The containers' root: mount points for the binds, and the host's merged-/usr
# links (/bin -> usr/bin, ...) where the host has them.
mkroot() {
    local root=$T/root d
    mkdir -p "$root"/{usr,etc,work,proc,dev,sys,tmp}
    for d in bin sbin lib lib64; do
        if [[ -L /$d ]]; then
            ln -sfn "$(readlink "/$d")" "$root/$d"
        elif [[ -d /$d ]]; then
            echo "bench-fidelity: /$d is a directory, not a link into /usr: containers would miss it" >&2
            exit 1
        fi
    done
}

oci_run() { # oci_run <runtime> <tool>: the reference in a container of <runtime>
    local b=$T/bundle id
    mkdir -p "$b"
    python3 - "$T" "$2" >"$b/config.json" <<'PY'
import json, sys
t, tool = sys.argv[1], sys.argv[2]
# The capabilities virtmark's OCI targets give the agent (src/targets/oci.rs).
caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_SYS_CHROOT"]
bind = lambda src, dst, mode: {"destination": dst, "type": "bind", "source": src,
                               "options": ["rbind", mode, "nosuid", "nodev"]}
print(json.dumps({
    "ociVersion": "1.0.2",
    "process": {"terminal": False, "user": {"uid": 0, "gid": 0},
                "args": ["/bin/sh", "/work/ref.sh", tool, "/work"], "cwd": "/work",
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "capabilities": {k: caps for k in ["bounding", "effective", "permitted"]},
                "noNewPrivileges": True},
    "root": {"path": t + "/root", "readonly": True},
    "hostname": "bench-fidelity",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "mode=1777"]},
        bind("/usr", "/usr", "ro"), bind("/etc", "/etc", "ro"), bind(t, "/work", "rw"),
    ],
    "linux": {
        "namespaces": [{"type": n} for n in ["pid", "ipc", "uts", "mount", "network"]],
        # The runtime's default devices (null, zero, full, random, urandom, tty)
        # and nothing else.
        "resources": {"devices": [{"allow": False, "access": "rwm"}],
                      "memory": {"limit": 2 << 30}},
    },
}))
PY
    id=bench-fidelity-$$
    if [[ $1 == crun && -d /sys/fs/cgroup/unified && -d /sys/fs/cgroup/memory ]]; then
        # crun refuses a hybrid cgroup host unless the v2 tree is hidden, and then
        # cannot make the cgroups itself: as virtmark's oci:crun does, the
        # container runs in a memory cgroup made here, crun told to leave cgroups
        # alone.
        (
            echo "$BASHPID" >"$CRUN_CG/cgroup.procs"
            exec unshare --mount sh -c 'mount -t tmpfs none /sys/fs/cgroup/unified &&
                exec crun --cgroup-manager=disabled run --bundle "$1" "$2"' sh "$b" "$id"
        ) 2>>"$T/oci.err"
    else
        "$1" run --bundle "$b" "$id" 2>>"$T/oci.err"
    fi
}

lxc_run() { # lxc_run <tool>: the reference in an LXC application container
    local name=bench-fidelity-$$ conf=$T/lxc.conf
    cat >"$conf" <<CONF
lxc.uts.name = $name
lxc.rootfs.path = dir:$T/root
lxc.apparmor.profile = unconfined
lxc.environment = PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
lxc.net.0.type = empty
lxc.mount.auto = proc:mixed sys:ro
lxc.autodev = 1
lxc.mount.entry = /usr usr none bind,ro 0 0
lxc.mount.entry = /etc etc none bind,ro 0 0
lxc.mount.entry = $T work none bind,rw 0 0
$(if [[ -d /sys/fs/cgroup/memory ]]; then echo "lxc.cgroup.memory.limit_in_bytes = $((2 << 30))"; else echo "lxc.cgroup2.memory.max = $((2 << 30))"; fi)
lxc.log.level = ERROR
CONF
    mkdir -p "$T/lxcpath"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin lxc-execute -P "$T/lxcpath" -n "$name" -f "$conf" -- \
        /bin/sh /work/ref.sh "$1" /work 2>>"$T/lxc.err"
}

in_target() { # in_target <target> <tool>
    case $1.$2 in
    native.*) NP_HOST=127.0.0.1 NP_PORT=$NP_LO "$T/ref.sh" "$2" "$T" ;;
    ns.net-stream)
        NP_HOST=$NS_S_IP NP_PORT=$NP_VETH ip netns exec "$NS_C" \
            unshare --mount --pid --uts --ipc --fork --mount-proc "$T/ref.sh" "$2" "$T"
        ;;
    ns.*) unshare --mount --pid --uts --ipc --fork --mount-proc "$T/ref.sh" "$2" "$T" ;;
    gvisor.*) (cd "$T" && runsc --platform=ptrace --network=none do -force-overlay=false "$T/ref.sh" "$2" "$T" 2>>"$T/runsc.err") ;;
    oci:runc.*) oci_run runc "$2" ;;
    oci:crun.*) oci_run crun "$2" ;;
    lxc.*) lxc_run "$2" ;;
    esac
}
compared() { # compared <target> <workload>: whether a reference runs for the pair
    [[ $2 != net-stream || $1 == native || $1 == ns ]]
}

want=${TARGETS:-ns,gvisor,oci:runc,oci:crun,lxc}
targets=(native)
have() { # have <target> <command>
    if command -v "$2" >/dev/null; then targets+=("$1"); else echo "# $1: $2 is not installed, not compared"; fi
}
for t in ${want//,/ }; do
    case $t in
    ns) targets+=(ns) ;;
    gvisor) have gvisor runsc ;;
    oci:runc) have oci:runc runc ;;
    oci:crun) have oci:crun crun ;;
    lxc) have lxc lxc-execute ;;
    *) echo "# $t: the reference tools cannot run inside it (its own kernel and root file system, reached only through the agent), not compared" ;;
    esac
done
mkroot
if [[ " ${targets[*]} " == *" oci:crun "* && -d /sys/fs/cgroup/unified && -d /sys/fs/cgroup/memory ]]; then
    mkdir "$CRUN_CG"
    echo $((2 << 30)) >"$CRUN_CG/memory.limit_in_bytes"
fi
workloads=(cpu-int mem-bw fileio dd-zero net-stream)

# net-stream's netservers: one on loopback (native), one in a namespace joined by a
# veth pair to the client's (ns), as virtmark's ns target joins the agent to its peer.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
NP_LO=$(free_port) NP_VETH=$(free_port)
netserver -D -4 -L 127.0.0.1 -p "$NP_LO" >"$T/netserver.lo.log" 2>&1 &
NETSERVERS+=($!)
if [[ " ${targets[*]} " == *" ns "* ]]; then
    ip netns add "$NS_C"
    ip netns add "$NS_S"
    ip link add bfid$$c netns "$NS_C" type veth peer name bfid$$s netns "$NS_S"
    ip -n "$NS_C" addr add "$NS_C_IP/30" dev bfid$$c
    ip -n "$NS_S" addr add "$NS_S_IP/30" dev bfid$$s
    for n in "$NS_C" "$NS_S"; do ip -n "$n" link set lo up; done
    ip -n "$NS_C" link set bfid$$c up
    ip -n "$NS_S" link set bfid$$s up
    ip netns exec "$NS_S" netserver -D -4 -L "$NS_S_IP" -p "$NP_VETH" >"$T/netserver.veth.log" 2>&1 &
    NETSERVERS+=($!)
fi
sleep 0.5
echo "# bench-fidelity: targets ${targets[*]}, $ROUNDS rounds, files in $T, load $(cut -d' ' -f1-3 /proc/loadavg)"

# --- references ---
declare -A ref=()
for ((r = 1; r <= ROUNDS; r++)); do
    for w in "${workloads[@]}"; do
        for t in "${targets[@]}"; do
            compared "$t" "$w" || continue
            sync
            v=$(in_target "$t" "$w") || true
            if [[ -z $v ]]; then
                echo "bench-fidelity: $w gave no figure in $t" >&2
                for e in runsc oci lxc; do [[ -s $T/$e.err ]] && tail -5 "$T/$e.err" >&2; done
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
import json, math, statistics, sys
run = json.load(open(sys.argv[1]))
refs = {}
for line in open(sys.argv[2]):
    k, *vals = line.split()
    refs[k] = [float(v) for v in vals]
targets, workloads = sys.argv[3].split(), sys.argv[4].split()
vm = {(e["target"], e["workload"]): e for e in run["results"] if e.get("headline")}
def walsh_median(xs):
    # One-sample Hodges–Lehmann estimate: the median of the Walsh averages.
    return statistics.median([(xs[i] + xs[j]) / 2 for i in range(len(xs)) for j in range(i, len(xs))])
def ref_ratio(t, b):
    # The reference's samples alternate between targets round by round, as virtmark's
    # do: pair each round's sample in the target with native's of the same round and
    # take the Hodges–Lehmann estimate of the log-ratios, as virtmark's paired ratio.
    return math.exp(walsh_median([math.log(x / y) for x, y in zip(t, b)]))
print(f"\n{'target':8} {'workload':9} {'reference ratio':>16} {'virtmark ratio':>15} {'vm/ref':>7}  goal 0.85-1.15")
fail = False
for t in targets[1:]:
    for w in workloads:
        if f"{t}.{w}" not in refs:  # the script ran no reference there (compared())
            print(f"{t:8} {w:9} {'not compared (its network is made by its runtime)':>16}")
            continue
        try:
            rr = ref_ratio(refs[f"{t}.{w}"], refs[f"native.{w}"])
            vr = vm[(t, w)]["ratio_to_native"]
            if vr is None:
                raise KeyError(w)
        except (KeyError, statistics.StatisticsError, ZeroDivisionError, ValueError):
            print(f"{t:8} {w:9} {'missing samples':>16}")
            fail = True
            continue
        q = vr / rr
        ok = 0.85 <= q <= 1.15
        fail |= not ok
        print(f"{t:8} {w:9} {rr:16.3f} {vr:15.3f} {q:7.3f}  {'ok' if ok else 'MISSED'}")
sys.exit(1 if fail else 0)
PY
