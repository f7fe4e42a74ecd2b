#!/usr/bin/env bash
# How much a base model helps on lyrics it never saw: README's "Measured" table, again.
#
#   EXCLUDE=yuanqu bash scripts/base.sh        # a base with 元曲 held out -> save/base
#   bash scripts/heldout_genre.sh              # -> save/genre/{scratch,finetuned}, figures
#
# A few hundred 元曲 (works 0-865 of the package, sung text only: about 55 k characters)
# stand in for a user's lyrics; 219 later works (866-1084, about 17 k characters) are the
# held-out text nobody trains on.  The script trains a model from scratch on the first
# (train.py defaults), fine-tunes the base on it (train.py --init_from defaults) and scores
# the three models with analysis/evaluate.py on the held-out text: perplexity, the spread
# from the zero state at 8 places, and the fluency of 10 samples of 200 characters next
# to the training text's.
#
# BASE (save/base), OUT (save/genre), DATA (data/genre), PART (yuanqu), TRAIN_WORKS (0:866),
# HELD_WORKS (866:1085); NO_SETUP=1 and PYTHON as in scripts/base.sh.  The base must not
# have trained on PART (scripts/base.sh with EXCLUDE=PART); nothing checks that for you.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${NO_SETUP:-}" ] || bash scripts/setup.sh requirements.txt
py="${PYTHON:-.venv/bin/python}"
base="${BASE:-save/base}"
out="${OUT:-save/genre}"
data="${DATA:-data/genre}"
part="${PART:-yuanqu}"
mkdir -p "$data/train" "$data/held" "$out"

for which in train held; do
  works=$([ "$which" = train ] && echo "${TRAIN_WORKS:-0:866}" || echo "${HELD_WORKS:-866:1085}")
  # shellcheck disable=SC2086
  "$py" data/fetch_corpus.py --corpus poetry --only "$part" --works "$works" \
      --output "$data/$which/origin.txt" ${FETCH_ARGS:-}
  "$py" data/parse.py --input "$data/$which/origin.txt" --output "$data/$which/lyrics.txt"
done

"$py" train.py --data_dir "$data/train" --save_dir "$out/scratch" --log_dir "$out/log" \
    --overwrite "$@"
"$py" train.py --init_from "$base" --data_dir "$data/train" --save_dir "$out/finetuned" \
    --log_dir "$out/log" --overwrite "$@"
"$py" analysis/evaluate.py --save_dir "$out/scratch" "$out/finetuned" "$base" \
    --text "$data/held/lyrics.txt" | tee "$out/evaluate.txt"
echo "heldout_genre: figures in $out/evaluate.txt"
