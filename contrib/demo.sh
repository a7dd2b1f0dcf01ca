#!/usr/bin/env bash
# The demo of the README: nftnet doing its main job inside throwaway network namespaces (a
# "host" and a "LAN" machine); nothing on this machine's own network changes.
set -euo pipefail
cd "$(dirname "$0")/.."
contrib/setup.sh
exec .venv/bin/python contrib/demo.py
