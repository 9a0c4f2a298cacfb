#!/usr/bin/env bash
# Compares virtmark's `compress` workload with the bzip2 tool it stands for:
# `bzip2 -9` of exactly the same corpus, written to a file on the same file system.
# Both use libbz2 at level 9 in one thread, so throughput and ratio should match.
set -euo pipefail

VIRTMARK=${VIRTMARK:-target/x86_64-unknown-linux-gnu/release/virtmark}
REPS=${REPS:-3}
cd "$(dirname "$0")/../.."

if ! command -v bzip2 >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y bzip2 >/dev/null
    else
        echo "# bzip2 is not installed and we are not root: cannot compare" >&2
        exit 1
    fi
fi
[ -x "$VIRTMARK" ] || { echo "# $VIRTMARK not found: build it with cargo build --release" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The exact corpus the workload generates (quick size), via an ignored unit test.
echo "# writing the corpus (debug test build)"
VIRTMARK_DUMP_CORPUS="$work/corpus" cargo test --quiet --lib workloads::compress::tests::dump_corpus \
    -- --ignored --exact >/dev/null 2>&1
size=$(stat -c %s "$work/corpus")
echo "# corpus: $size bytes"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

vm_tp=()
vm_ratio=""
for _ in $(seq "$REPS"); do
    line=$(printf '{"v":1,"type":"run_workload","id":1,"workload":"compress"}\n' \
        | "$VIRTMARK" agent | grep '"type":"sample"')
    read -r tp ratio < <(python3 -c '
import json, sys
m = {x["name"]: x["value"] for x in json.loads(sys.argv[1])["metrics"]}
print(m["throughput"], m["ratio"])' "$line")
    vm_tp+=("$tp")
    vm_ratio=$ratio
    echo "# virtmark: $tp MB/s, ratio $ratio"
done

ref_tp=()
ref_ratio=""
for _ in $(seq "$REPS"); do
    start=$(date +%s.%N)
    bzip2 -9 -c "$work/corpus" >"$work/corpus.bz2"
    end=$(date +%s.%N)
    out=$(stat -c %s "$work/corpus.bz2")
    tp=$(python3 -c "print($size / ($end - $start) / 1e6)")
    ref_ratio=$(python3 -c "print($size / $out)")
    ref_tp+=("$tp")
    echo "# bzip2 -9: $tp MB/s, ratio $ref_ratio"
    rm -f "$work/corpus.bz2"
done

vm=$(printf '%s\n' "${vm_tp[@]}" | median)
ref=$(printf '%s\n' "${ref_tp[@]}" | median)
python3 - "$vm" "$ref" "$vm_ratio" "$ref_ratio" <<'PY'
import sys
vm, ref, vr, rr = map(float, sys.argv[1:])
print(f"PEER compress-throughput virtmark={vm:.3f} reference={ref:.3f} unit=MB/s ratio={vm/ref:.3f} goal=0.95")
print(f"PEER compress-ratio virtmark={vr:.3f} reference={rr:.3f} unit=x ratio={vr/rr:.3f} goal=0.99")
PY
