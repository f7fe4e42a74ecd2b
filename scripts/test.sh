#!/usr/bin/env bash
# Install everything (in .venv) and run the whole test suite. No network needed by the
# tests themselves, no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-dev.txt
exec .venv/bin/python -m pytest -q tests "$@"
