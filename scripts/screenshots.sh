#!/usr/bin/env bash
# README's pictures of the page (docs/serve-1280.png, docs/serve-375.png, and the
# training panel mid-run: docs/train-1280.png, docs/train-375.png), taken by the browser
# tests: a real headless Chromium driving serve.py on the test's tiny models.
# Needs Debian's chromium and chromium-driver, and a CJK font (without one the page
# shows boxes): apt-get install chromium chromium-driver fonts-noto-cjk
set -euo pipefail
cd "$(dirname "$0")/.."
if ! fc-list :lang=zh 2>/dev/null | grep -q .; then
    echo "screenshots.sh: no Chinese font installed, the pictures would show boxes;" \
         "apt-get install fonts-noto-cjk" >&2
    exit 2
fi
bash scripts/setup.sh requirements-dev.txt
LYRICS_SCREENSHOT="$PWD/docs" .venv/bin/python -m pytest -q -p no:cacheprovider \
    tests/test_serve.py tests/test_pagetrain.py -k "page_in_a_real_browser or training_panel"
ls -l docs/serve-1280.png docs/serve-375.png docs/train-1280.png docs/train-375.png
