#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run it.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh || echo "system packages unavailable: deployment/browser tests will skip"
python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
export MPLBACKEND=Agg
exec python -m pytest "$@"
