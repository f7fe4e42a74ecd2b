#!/usr/bin/env bash
# Install everything (in .venv) and run the whole test suite. No network needed by the
# tests themselves, no GPU. The browser test of serve.py needs Debian's chromium and
# chromium-driver: installed here with apt-get when run as root (as CI does), otherwise
# that one test is skipped and says why.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements-dev.txt
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing Chromium for the browser test (apt-get install chromium chromium-driver)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        chromium chromium-driver; } >/dev/null 2>&1 \
      || echo "test: could not install Chromium; the browser test will be skipped"
  else
    echo "test: no Chromium here (as root: apt-get install chromium chromium-driver);" \
         "the browser test will be skipped"
  fi
fi
# Two processes (pytest-xdist: the suite is mostly waiting on subprocesses and small
# graphs, and 2 cores), then the tests that measure other programs' CPU use, alone.
.venv/bin/python -m pytest -q -n 2 -m "not serial" tests "$@"
exec .venv/bin/python -m pytest -q -m serial tests "$@"
