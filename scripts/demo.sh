#!/usr/bin/env bash
# Install everything (in .venv) and run the main job on the default corpus:
# fetch Song ci -> parse -> preprocess -> a short training run -> 200 characters from 从前
# -> cost curves.  The demo model goes to save/demo, so a model of yours in save/ is safe.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh requirements.txt
py=.venv/bin/python
if [ -f data/origin.txt ] && [ ! -f data/origin.txt.source ]; then
  echo "demo: using your own data/origin.txt"
else
  $py data/fetch_corpus.py
fi
$py data/parse.py
$py preprocess.py
$py train.py --rnncell lstm --save_dir save/demo --overwrite --num_epochs "${EPOCHS:-2}"
$py sample.py --save_dir save/demo --start 从前 --n 200 --seed 1
$py analysis/plot.py "$(ls -t log/*.txt | head -n 1)"
