#!/usr/bin/env bash
# Start-up time of the container targets (ns, oci:crun, oci:runc, gvisor):
# virtmark's "start target → agent answers hello" (startup_s in results.json,
# median of RUNS runs of `virtmark run -w dd-zero`) against the bare tool doing
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

def median_of(f):
    f()  # warm-up
    return statistics.median(f() for _ in range(runs))

def virtmark_startup(target):
    vals = []
    for i in range(runs + 1):
        out = os.path.join(work, f"out-{target.replace(':', '_')}-{i}")
        subprocess.run([exe, "run", "-t", target, "-w", "dd-zero", "--reps", "2",
                        "--duration", "50ms", "--out", out], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = json.load(open(glob.glob(os.path.join(out, "*", "results.json"))[0]))
        if i > 0:  # the first run warms caches
            vals.append(r["targets"][0]["startup_s"] * 1000)
        shutil.rmtree(out)
    print(f"# {target}: virtmark startup_ms runs: {' '.join(f'{v:.1f}' for v in vals)}")
    return statistics.median(vals)

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

def bare(target):
    if target == "ns":
        return median_of(lambda: timed(["unshare", "--pid", "--mount", "--uts", "--ipc", "--net", "--fork", "true"]))
    if target == "oci:runc":
        b = bundle("bare-runc")
        n = iter(range(10**6))
        return median_of(lambda: timed(["runc", "--root", os.path.join(work, "runc-state"), "run",
                                        "--bundle", b, f"bare{next(n)}"]))
    if target == "oci:crun":
        b = bundle("bare-crun")
        # crun refuses the hybrid cgroup layout: time it inside a mount namespace
        # where the v2 tree is hidden (as virtmark runs it).
        script = f"""
import subprocess, time, statistics, os
hybrid = os.path.ismount('/sys/fs/cgroup/unified')
if hybrid:
    subprocess.run(['mount', '--make-rprivate', '/'], check=True)
    subprocess.run(['mount', '-t', 'tmpfs', 'tmpfs', '/sys/fs/cgroup/unified'], check=True)
v = []
for i in range({runs} + 1):
    t = time.perf_counter()
    subprocess.run(['crun', '--root', '{work}/crun-state', 'run', '--bundle', '{b}', 'bare%d' % i],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    v.append((time.perf_counter() - t) * 1000)
print(statistics.median(v[1:]))
"""
        out = subprocess.run(["unshare", "--mount", "python3", "-c", script], check=True,
                             capture_output=True, text=True).stdout
        return float(out.strip())
    if target == "gvisor":
        return median_of(lambda: timed(["runsc", "--root", os.path.join(work, "runsc-state"),
                                        "--platform=ptrace", "--network=none", "do", "true"]))
    raise SystemExit(f"unknown target {target}")

for t in targets:
    try:
        v = virtmark_startup(t)
        b = bare(t)
    except subprocess.CalledProcessError as e:
        print(f"# {t}: failed: {e}")
        continue
    print(f"STARTUP {t} virtmark_ms={v:.1f} bare_ms={b:.1f} ratio={v / b:.2f} goal_ms={GOAL[t]}")
PY
