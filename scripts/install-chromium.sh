#!/usr/bin/env bash
# Installs Debian's chromium (for the status page's headless-browser tests, driven by
# playwright-core) when /usr/bin/chromium is missing, and prints its path on stdout.
#   scripts/install-chromium.sh            install when missing (apt-get, as root), print the path
#   scripts/install-chromium.sh --check    print the path only if already installed
set -euo pipefail
bin=/usr/bin/chromium

if [[ ! -x "$bin" ]]; then
  [[ "${1:-}" == "--check" ]] && { echo "chromium is not installed (run scripts/install-chromium.sh)" >&2; exit 1; }
  command -v apt-get >/dev/null || { echo "apt-get is needed to install Debian's chromium" >&2; exit 1; }
  echo "installing chromium from Debian ..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
  [[ -x "$bin" ]] || { echo "chromium installed, but $bin is missing" >&2; exit 1; }
fi
echo "$bin"
