#!/usr/bin/env bash
# The test command of the README: set up (see setup.sh), then every test: unit, kernel (real
# rulesets in throwaway network namespaces) and end-to-end (real traffic). Extra arguments go
# to pytest, e.g. `contrib/test.sh -m "not e2e"`.
set -euo pipefail
cd "$(dirname "$0")/.."
contrib/setup.sh
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
