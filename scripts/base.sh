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
# Hyperparameters (chosen by measurement on a 2-core CPU, README "A base model"):
#   CPU: lstm 2 x 256, embedding 128, batch 32 x 16, Adam 0.0005, bfloat16 matmuls where
#        the CPU has them natively; the 6,000 most frequent characters (99.8 % of the
#        text; the softmax over 11 k was most of a step: 1.5x the characters an hour),
#        fine-tuning adds the characters of your lyrics the base lacks.  At this size Adam
#        0.001 and 0.002 left the loss stuck at the unigram level (6.7 nats) for 5,000+
#        steps; 0.0005 leaves it within ~800 steps, and batches of 32 x 16 (4x the
#        updates of 64 x 32) cost only 15 % throughput.  The state is reset at random
#        (train.py --reset_chars, on by default), so the model starts well from zero, and
#        the rate falls along a cosine to a tenth over the hour (--anneal).
#   GPU: lstm 2 x 512, embedding 256, batch 256 x 64 (GPUs want big batches), every
#        character kept.
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
kind=$("$py" -c 'import utils; tf = utils.import_tensorflow()
print("gpu" if tf.config.list_physical_devices("GPU") else
      "cpu-bf16" if utils.cpu_has_bf16() else "cpu")')
case "$kind" in
  gpu) model=(--rnn_size 512 --embedding_size 256 --batch_size 256 --seq_length 64) ;;
  cpu-bf16) model=(--rnn_size 256 --embedding_size 128 --batch_size 32 --seq_length 16
            --max_vocab 6000 --bf16) ;;
  *) model=(--rnn_size 256 --embedding_size 128 --batch_size 32 --seq_length 16
     --max_vocab 6000) ;;
esac
echo "base: training on the $kind for at most $minutes minutes into $save" \
     "(checkpoints on the way; Ctrl-C saves and 'bash scripts/base.sh --keep' goes on)"
"$py" train.py --rnncell lstm --num_layers 2 "${model[@]}" --learning_rate 0.0005 --anneal \
    --num_epochs 20 --patience 2 --save_every 1000 --max_minutes "$minutes" \
    --data_dir "$data" --save_dir "$save" "$@"
echo "base: done, the base model is in $save. Fine-tune it on your lyrics (data/lyrics.txt):"
echo "  $py train.py --init_from $save --data_dir data --save_dir save"
