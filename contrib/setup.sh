#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks for nftnet, its tests and its demo:
# Debian packages (nftables, libnftables, iptables, iproute2; containernetworking-plugins for
# nftnet-cni's chain tests) and a virtualenv in .venv.
# Idempotent: a second run installs nothing. Needs root (apt-get, network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(nftables libnftables1 iptables iproute2 util-linux python3-venv
          containernetworking-plugins)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$python" -m venv .venv
fi
if ! .venv/bin/python -c "import nftnet, compat, pytest, hypothesis" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch .venv/.installed
fi
