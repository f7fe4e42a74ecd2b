#!/usr/bin/env bash
# The base-model recipe: fetch the public-domain verse corpus (about 20.8 M characters:
# 全唐诗, 全宋诗, 宋词, 元曲, 诗经, 楚辞 ...), clean it and train a base model that already
# knows Chinese verse, into save/base.  Fine-tune it on your lyrics afterwards with
#     python train.py --init_from save/base --data_dir data --save_dir save
#
#   bash scripts/base.sh                       # CPU: one hour; GPU: a bigger model
#   MINUTES=30 bash scripts/base.sh            # another wall-clock budget
#   EXCLUDE=yuanqu bash scripts/base.sh        # hold a genre out (to measure on it)
#   bash scripts/base.sh --keep                # train the base in save/base further
# Extra arguments go to train.py (they win over the recipe's own flags).
#
# Hyperparameters: train.py --preset base-cpu / base-gpu (presets.py, the one place they
# are written, with the measurements behind them; README "A base model"), bfloat16
# matmuls where the CPU has them natively.
# Also: DATA_DIR (data/base), SAVE_DIR (save/base), FETCH_ARGS (more fetch_corpus.py
# flags, e.g. "--tarball file.tgz"), REFETCH=1 (fetch and clean again even if the corpus
# is there), NO_SETUP=1 and PYTHON (use an environment you made yourself).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${NO_SETUP:-}" ] || bash scripts/setup.sh requirements.txt
py="${PYTHON:-.venv/bin/python}"
data="${DATA_DIR:-data/base}"
save="${SAVE_DIR:-save/base}"
minutes="${MINUTES:-60}"

# The corpus is fetched and cleaned once; again only when the parts asked for change.
parts="exclude=${EXCLUDE:-}"
if [ -n "${REFETCH:-}" ] || [ ! -f "$data/lyrics.txt" ] || \
   [ "$(cat "$data/.parts" 2>/dev/null)" != "$parts" ]; then
  fetch=(--corpus poetry --output "$data/origin.txt")
  if [ -n "${EXCLUDE:-}" ]; then fetch+=(--exclude "$EXCLUDE"); fi
  # shellcheck disable=SC2086
  "$py" data/fetch_corpus.py "${fetch[@]}" ${FETCH_ARGS:-}
  "$py" data/parse.py --input "$data/origin.txt" --output "$data/lyrics.txt"
  echo "$parts" > "$data/.parts"
else
  echo "base: using the corpus already in $data/lyrics.txt (REFETCH=1 to fetch it again)"
fi

# GPU or CPU, and does the CPU do bfloat16 natively?
kind=$("$py" -c 'import tfenv; tf = tfenv.import_tensorflow()
print("gpu" if tf.config.list_physical_devices("GPU") else
      "cpu-bf16" if tfenv.cpu_has_bf16() else "cpu")')
case "$kind" in
  gpu) model=(--preset base-gpu) ;;
  cpu-bf16) model=(--preset base-cpu --bf16) ;;
  *) model=(--preset base-cpu) ;;
esac
echo "base: training on the $kind for at most $minutes minutes into $save" \
     "(checkpoints on the way; Ctrl-C saves and 'bash scripts/base.sh --keep' goes on)"
"$py" train.py "${model[@]}" --max_minutes "$minutes" --data_dir "$data" --save_dir "$save" \
    "$@"
echo "base: done, the base model is in $save. Fine-tune it on your lyrics (data/lyrics.txt):"
echo "  $py train.py --init_from $save --data_dir data --save_dir save"
