#!/usr/bin/env bash
# Installs what virtmark's workloads, targets and tests use on a Debian machine.
# Idempotent; does nothing when everything is present. Needs root for apt-get.
set -euo pipefail

# Debian packages, by what needs them:
#   build workload: gcc, make;  peers: iperf3, fio, sysbench, stress-ng, virt-what
#   targets: iproute2 (namespaces, veth, taps), crun, runc, runsc (gvisor), lxc,
#   openssh (ssh: and its test), user-mode-linux (uml), qemu-system-x86 (qemu, from
#   bookworm-backports on Debian 12), linux-image-cloud-amd64 (the QEMU guest kernel),
#   e2fsprogs (scratch images); docker.io (docker, docker:runsc: virtmark starts a
#   private dockerd of its own; a host daemon the package may start is never used),
#   systemd-container (nspawn), podman (with crun and conmon); libvirt-daemon-system
#   (libvirt: libvirtd, its QEMU driver and virsh; virtmark starts a private libvirtd
#   of its own, a host daemon the package may start is never used);
#   bochs, bochsbios, vgabios, syslinux, mtools (bochs: its BIOSes, the boot loader
#   of its boot disk, which mtools fills without mounting);
#   busybox-static and cpio for scripts/bench-startup.d
#   report browser test and screenshots: chromium (headless), fonts-dejavu-core (chart text)
pkgs=(gcc make iperf3 fio sysbench stress-ng virt-what iproute2 crun runc runsc lxc
  openssh-server openssh-client user-mode-linux qemu-system-x86 linux-image-cloud-amd64
  e2fsprogs docker.io systemd-container podman conmon libvirt-daemon-system bochs bochsbios
  vgabios syslinux mtools busybox-static cpio chromium fonts-dejavu-core)
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
# Debian 12's qemu-system-x86 (7.2) conflicts with qemu-utils from backports:
# take QEMU from bookworm-backports there.
backports=()
if [[ " ${missing[*]} " == *" qemu-system-x86 "* ]] && grep -qs 'VERSION_CODENAME=bookworm' /etc/os-release; then
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # The mirror this machine already uses for bookworm itself (one-line or
    # deb822 sources, any host name, a proxy or a local mirror alike).
    mirror=$(apt-get indextargets --no-release-info --format '$(TARGET_OF) $(RELEASE) $(REPO_URI)' |
      awk '$1 == "deb" && $2 == "bookworm" { print $3; exit }')
    if [ -z "$mirror" ]; then
      echo "setup: no apt source for bookworm is configured: cannot add bookworm-backports for qemu-system-x86" >&2
      exit 1
    fi
    echo "deb ${mirror%/} bookworm-backports main" >/etc/apt/sources.list.d/bookworm-backports.list
  fi
  backports=(qemu-system-x86)
  rest=()
  for p in "${missing[@]}"; do [ "$p" = qemu-system-x86 ] || rest+=("$p"); done
  missing=("${rest[@]}")
fi
apt-get update -qq
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "${#backports[@]}" -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends -t bookworm-backports "${backports[@]}" >/dev/null
fi
