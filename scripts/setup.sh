#!/usr/bin/env bash
# Installs what virtmark's workloads, targets and tests use on a Debian machine.
# Idempotent; does nothing when everything is present. Needs root for apt-get.
set -euo pipefail

# Debian packages, by what needs them:
#   build workload: gcc, make;  peers: iperf3, fio, sysbench, stress-ng, virt-what
#   report browser test and screenshots: chromium (headless), fonts-dejavu-core (chart text)
pkgs=(gcc make iperf3 fio sysbench stress-ng virt-what chromium fonts-dejavu-core)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
  exit 0
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
