#!/usr/bin/env bash
# Peer check for the probes: virtmark's getppid, ctx-switch and fork probes
# against lmbench's `lat_syscall null`, `lat_ctx -s 0 2` and `lat_proc fork`
# (both pinned to one CPU with taskset, as the two probes pin themselves), natively, side by
# side, ROUNDS alternating rounds; medians compared. The figure checked is the
# agreement, the smaller of virtmark/lmbench and lmbench/virtmark: goal 0.8,
# that is within 25% either way. A last comment line times the fork probe's own C
# program (src/probes/fork_loop.c, dynamically linked as the probe runs it) built
# statically as well: what the process image alone does to the cost of a fork.
#
# lmbench is in Debian's non-free component: as root this adds it to the apt
# sources (bookworm non-free) and installs the package.
#
# Environment: VIRTMARK (binary, default target/x86_64-unknown-linux-gnu/release/virtmark),
# ROUNDS (default 5).
set -euo pipefail

VIRTMARK="${VIRTMARK:-target/x86_64-unknown-linux-gnu/release/virtmark}"
rounds="${ROUNDS:-5}"
L=/usr/lib/lmbench/bin/x86_64-linux-gnu

if [[ ! -x "$VIRTMARK" ]]; then
    echo "probes.sh: virtmark binary $VIRTMARK not found (cargo build --release, or set VIRTMARK)" >&2
    exit 1
fi
if [[ ! -x "$L/lat_syscall" ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "probes.sh: lmbench is missing (Debian non-free: apt-get install lmbench)" >&2
        exit 1
    fi
    if ! grep -rqsE '^[^#]*non-free( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        # The mirror this machine already uses for its release, as scripts/setup.sh does.
        read -r codename mirror < <(apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' |
            awk '$1 !~ /-/ { print $1, $2; exit }')
        # The same Signed-By as the entry that already names this mirror and release:
        # apt refuses two entries for one source whose keyrings differ.
        signed=$(python3 - "${mirror%/}" "$codename" <<'PY'
import glob, re, sys
mirror, suite = sys.argv[1], sys.argv[2]
for path in glob.glob("/etc/apt/sources.list.d/*.sources"):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        f = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.M))
        if mirror in [u.rstrip("/") for u in f.get("URIs", "").split()] and suite in f.get("Suites", "").split():
            print(f.get("Signed-By", "")); sys.exit()
for path in glob.glob("/etc/apt/sources.list") + glob.glob("/etc/apt/sources.list.d/*.list"):
    for line in open(path):
        m = re.match(r"\s*deb\s+(\[[^]]*\])?\s*(\S+)\s+(\S+)", line)
        if m and m.group(2).rstrip("/") == mirror and m.group(3) == suite:
            o = re.search(r"signed-by=(\S+?)[\s\]]", m.group(1) or "")
            print(o.group(1) if o else ""); sys.exit()
PY
)
        {
            printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: non-free\n' "${mirror%/}" "$codename"
            [[ -z $signed ]] || printf 'Signed-By: %s\n' "$signed"
        } >/etc/apt/sources.list.d/virtmark-non-free.sources
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lmbench >/dev/null
fi

# The fork probe's C program, linked dynamically (as the probe runs it, and as
# lat_proc is) and statically: what the process image alone does to a fork.
if ! command -v gcc >/dev/null; then
    if [[ $(id -u) -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null
    else
        echo "probes.sh: gcc is missing (apt-get install gcc libc6-dev)" >&2
        exit 1
    fi
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/src/probes/fork_loop.c"
gcc -O2 -static -o "$work/fork-static" "$SRC"
gcc -O2 -o "$work/fork-dynamic" "$SRC"
# Median µs per fork of one 0.3 s run (its first line is the CPU it pinned to).
fork_c_us() { "$1" 300000000 | tail -n +2 | median | awk '{ print $1 / 1000 }'; }

probe_us() {
    printf '{"v":1,"type":"run_workload","id":1,"workload":"%s","duration":"300ms"}\n' "$1" |
        "$VIRTMARK" agent | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("type") == "error":
        sys.exit("probe failed: " + m.get("message", ""))
    if m.get("type") == "sample":
        print(m["metrics"][0]["value"] / 1000)
        break
else:
    sys.exit("no sample")
'
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A vm ref c
for _ in $(seq "$rounds"); do
    vm[getppid]+="$(probe_us getppid) "
    ref[getppid]+="$("$L/lat_syscall" null 2>&1 | awk '/Simple syscall/ { print $3 }') "
    vm[ctx-switch]+="$(probe_us ctx-switch) "
    ref[ctx-switch]+="$(taskset -c 0 "$L/lat_ctx" -s 0 2 2>&1 | awk '$1 == 2 { print $2 }') "
    vm[fork]+="$(probe_us fork) "
    ref[fork]+="$(taskset -c 0 "$L/lat_proc" fork 2>&1 | awk '/fork\+exit/ { print $3 }') "
    c[static]+="$(fork_c_us "$work/fork-static") "
    c[dynamic]+="$(fork_c_us "$work/fork-dynamic") "
done

for k in getppid ctx-switch fork; do
    v=$(tr ' ' '\n' <<<"${vm[$k]}" | grep . | median)
    r=$(tr ' ' '\n' <<<"${ref[$k]}" | grep . | median)
    echo "# $k: virtmark ${vm[$k]}; lmbench ${ref[$k]}(µs); virtmark/lmbench $(awk -v v="$v" -v r="$r" 'BEGIN { printf "%.3f", v / r }')"
    agree=$(awk -v v="$v" -v r="$r" 'BEGIN { a = v / r; if (a > 1) a = 1 / a; printf "%.3f", a }')
    echo "PEER probe-$k virtmark=$v reference=$r unit=us ratio=$agree goal=0.8"
done
cs=$(tr ' ' '\n' <<<"${c[static]}" | grep . | median)
cd_=$(tr ' ' '\n' <<<"${c[dynamic]}" | grep . | median)
echo "# the fork probe's C program, 0.3 s a round: static ${c[static]}(median $cs µs); dynamic ${c[dynamic]}(median $cd_ µs); static/dynamic $(awk -v s="$cs" -v d="$cd_" 'BEGIN { printf "%.3f", s / d }')"
