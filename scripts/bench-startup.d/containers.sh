#!/usr/bin/env bash
# Start-up time of the container targets (ns, oci:crun, oci:runc, gvisor):
# virtmark's "start target → agent answers hello" (startup_s in results.json,
# median of RUNS runs of `virtmark run -w dd-zero`, each followed by a run of the
# bare tool, so that both see the same drift of the machine) against the bare tool doing
# the same: `unshare --pid --mount --uts --ipc --net --fork true`, `crun run` /
# `runc run` of a busybox `true` bundle, `runsc do true`.
# Prints: STARTUP <target> virtmark_ms=<v> bare_ms=<v> ratio=<v> goal_ms=<g>
set -euo pipefail

cd "$(dirname "$0")/../.."
VIRTMARK="${VIRTMARK:-target/x86_64-unknown-linux-gnu/release/virtmark}"
RUNS="${RUNS:-7}"
TARGETS="${TARGETS:-ns oci:crun oci:runc gvisor}"
if [ ! -x "$VIRTMARK" ]; then
  echo "# building the release binary"
  cargo build --release -q
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "# needs root (namespaces, cgroups, container runtimes)" >&2
  exit 1
fi
for p in crun runc busybox-static iproute2; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || apt-get install -y "$p" >/dev/null
done

WORK="$(mktemp -d /tmp/virtmark-bench-startup.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
export VIRTMARK_DB="$WORK/db"
export VIRTMARK_REGISTRY="$WORK/registry"

python3 - "$VIRTMARK" "$RUNS" "$WORK" $TARGETS <<'PY'
import json, os, shutil, statistics, subprocess, sys, time, glob

exe, runs, work, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
GOAL = {"ns": 20, "oci:crun": 100, "oci:runc": 100, "gvisor": 400}

def timed(cmd, **kw):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return (time.perf_counter() - t) * 1000

def virtmark_once(target, i):
    out = os.path.join(work, f"out-{target.replace(':', '_')}-{i}")
    subprocess.run([exe, "run", "-t", target, "-w", "dd-zero", "--reps", "2",
                    "--duration", "50ms", "--out", out], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = json.load(open(glob.glob(os.path.join(out, "*", "results.json"))[0]))
    shutil.rmtree(out)
    return r["targets"][0]["startup_s"] * 1000

def bundle(name):
    b = os.path.join(work, name)
    root = os.path.join(b, "rootfs")
    os.makedirs(os.path.join(root, "bin"))
    for d in ("proc", "sys", "dev", "tmp"):
        os.makedirs(os.path.join(root, d))
    shutil.copy("/bin/busybox", os.path.join(root, "bin", "true"))
    subprocess.run(["runc", "spec", "--bundle", b], check=True)
    spec = json.load(open(os.path.join(b, "config.json")))
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    spec["root"] = {"path": os.path.realpath(root), "readonly": True}
    json.dump(spec, open(os.path.join(b, "config.json"), "w"))
    return b

# crun refuses the hybrid cgroup layout: its bare runs happen in a helper process
# living in a mount namespace where the v2 tree is hidden (as virtmark runs crun),
# which times one `crun run` per line it reads.
CRUN_HELPER = """
import subprocess, sys, time, os
if os.path.ismount('/sys/fs/cgroup/unified'):
    subprocess.run(['mount', '--make-rprivate', '/'], check=True)
    subprocess.run(['mount', '-t', 'tmpfs', 'tmpfs', '/sys/fs/cgroup/unified'], check=True)
state, bundle = sys.argv[1], sys.argv[2]
for n, _ in enumerate(sys.stdin):
    t = time.perf_counter()
    subprocess.run(['crun', '--root', state, 'run', '--bundle', bundle, 'bare%d' % n],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print((time.perf_counter() - t) * 1000, flush=True)
"""

def bare_runner(target):
    """A function timing one run of the bare tool doing the same as `target`."""
    if target == "ns":
        return lambda: timed(["unshare", "--pid", "--mount", "--uts", "--ipc", "--net", "--fork", "true"])
    if target == "oci:runc":
        b = bundle("bare-runc")
        n = iter(range(10**6))
        return lambda: timed(["runc", "--root", os.path.join(work, "runc-state"), "run",
                              "--bundle", b, f"bare{next(n)}"])
    if target == "oci:crun":
        b = bundle("bare-crun")
        helper = subprocess.Popen(["unshare", "--mount", "python3", "-c", CRUN_HELPER,
                                   os.path.join(work, "crun-state"), b],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        def once():
            helper.stdin.write("run\n")
            helper.stdin.flush()
            return float(helper.stdout.readline())
        return once
    if target == "gvisor":
        return lambda: timed(["runsc", "--root", os.path.join(work, "runsc-state"),
                              "--platform=ptrace", "--network=none", "do", "true"])
    raise SystemExit(f"unknown target {target}")

# virtmark and the bare tool alternate, so that drift of the machine falls on both;
# each run is followed by a pause, so that the kernel's deferred clean-up of the last
# one (namespaces, cgroups: RCU callbacks) does not fall on the next; the first pair
# warms caches and is not counted.
def settled(f, *a):
    v = f(*a)
    time.sleep(0.3)
    return v

for t in targets:
    try:
        bare = bare_runner(t)
        vs, bs = [], []
        for i in range(runs + 1):
            v, b = settled(virtmark_once, t, i), settled(bare)
            if i > 0:
                vs.append(v)
                bs.append(b)
    except subprocess.CalledProcessError as e:
        print(f"# {t}: failed: {e}")
        continue
    print(f"# {t}: virtmark startup_ms runs: {' '.join(f'{v:.1f}' for v in vs)}")
    print(f"# {t}: bare ms runs: {' '.join(f'{b:.1f}' for b in bs)}")
    v, b = statistics.median(vs), statistics.median(bs)
    print(f"STARTUP {t} virtmark_ms={v:.1f} bare_ms={b:.1f} ratio={v / b:.2f} goal_ms={GOAL[t]}")
PY
