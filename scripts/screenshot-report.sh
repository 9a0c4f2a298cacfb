#!/usr/bin/env bash
# Renders a run's report.html in headless Chromium and saves a full-page
# screenshot, so a person can look at what the report shows.
#   scripts/screenshot-report.sh RUN_DIR [OUT.png] [WIDTH]
# RUN_DIR holds report.html (`virtmark report RUN_DIR` writes it); OUT defaults to
# RUN_DIR/report.png. Installs Debian's chromium when run as root and it is absent.
set -euo pipefail
run_dir=${1:?usage: scripts/screenshot-report.sh RUN_DIR [OUT.png] [WIDTH]}
out=${2:-$run_dir/report.png}
width=${3:-1280}
html=$run_dir/report.html
if [ ! -f "$html" ]; then
  echo "screenshot-report: no $html: run \`virtmark report $run_dir\` first" >&2
  exit 2
fi
chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
    chromium=$(command -v chromium)
  else
    echo "screenshot-report: chromium is not installed (apt-get install chromium, as root)" >&2
    exit 2
  fi
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
abs_html=$(cd "$(dirname "$html")" && pwd)/$(basename "$html")
# The page height: ask Chromium for the laid-out DOM height is not possible without
# scripts, so take a tall window; Chromium crops nothing below it.
height=${HEIGHT:-$(( $(grep -c '<figure' "$html") * 420 + $(grep -c '<tr>' "$html") * 32 + 1600 ))}
[ "$height" -gt 16000 ] && height=16000
"$chromium" --headless --no-sandbox --disable-gpu --disable-background-networking \
  --disable-component-update --disable-sync --no-first-run --hide-scrollbars \
  --user-data-dir="$profile" --window-size="$width,$height" \
  --screenshot="$out" "file://$abs_html" >/dev/null 2>&1
echo "$out"
