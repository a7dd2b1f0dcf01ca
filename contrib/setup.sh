#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks for nftnet, its tests and its demo:
# Debian packages (nftables, libnftables, iptables, iproute2; the container runtimes the driver
# tests run: containernetworking-plugins, docker.io with busybox-static for its image, podman)
# and a virtualenv in .venv. Installing docker.io or podman starts no daemon where no init
# system runs (as in CI); on a host with systemd, mask docker.service first.
# Idempotent: a second run installs nothing. Needs root (apt-get, network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(nftables libnftables1 iptables iproute2 util-linux python3-venv
          containernetworking-plugins busybox-static)
if [ -d /run/systemd/system ]; then
  # the packages would start dockerd and podman's units on this host: install them yourself
  # (units masked) to run the driver tests; without them those tests skip
  echo "setup: systemd runs here: not installing docker.io and podman" >&2
else
  packages+=(docker.io podman)
fi
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
